"""Timers and memory probes used by the report (device-generic: CPU or CUDA).

Timing: ``time_interleaved`` runs the functions of one case round-robin (one sample of each per
round, order rotated every round), so load from other processes on a shared machine falls on all
of them alike and their ratios stay meaningful. A sample is the mean of ``inner`` back-to-back
calls, ``inner`` chosen so a sample lasts at least ``min_sample_s``. CUDA is synchronised around
each sample.

Peak memory (``peak_extra_bytes``), one function at a time, after a warm-up call:

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the
  allocated bytes before the call (tensor memory only).
* CPU: the process's resident-set high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs``) minus the resident set before the call. glibc is told to serve every
  block of >= 64 KiB by mmap (``mallopt(M_MMAP_THRESHOLD)``), so freed tensors leave the resident
  set at once and neither an earlier call nor another method hides or inflates the peak. Linux
  only; elsewhere the figure is missing.

Both figures exclude the inputs (logits and upstream gradient, allocated before) and include the
outputs (y, and the gradient for forward + backward) and everything saved or temporary.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from typing import Callable

import torch

_M_MMAP_THRESHOLD = -3


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def prepare_cpu_memory_probe() -> bool:
    """Fix glibc's mmap threshold at 64 KiB (see module doc). True when the probe can work."""
    if _LIBC is None:
        return False
    try:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 65536)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError):
        return False
    return True


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_cpu_caches() -> None:
    """Empties redge_kernels' CPU output pool (freed outputs kept for reuse), so that a memory probe
    counts the outputs one call allocates. (The kernels' per-thread scratch, also kept between
    calls, is dropped only at each thread's next call, so the probe does not see it: a few rows of
    K values per thread.)"""
    try:
        torch.ops.redge_kernels_cpu._pool_clear()
    except (AttributeError, RuntimeError):  # the C++ extension is not built / loaded
        pass


def peak_extra_bytes(fn: Callable[[], None], device: torch.device) -> int | None:
    """Peak memory of one call of ``fn`` above what was in use before it (module doc)."""
    if device.type == "cpu":
        release_cpu_caches()
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        return None
    try:
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_bytes("VmRSS:")
        fn()
        return max(0, _status_bytes("VmHWM:") - before)
    except (OSError, KeyError):
        return None


def time_once(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def time_interleaved(fns: dict[str, Callable[[], None]], device: torch.device, *,
                     estimates: dict[str, float], rounds: int, min_sample_s: float,
                     budget_s: float, min_rounds: int = 3) -> dict[str, list[float]]:
    """Per-call seconds, ``{name: [sample, ...]}``; stops after ``rounds`` rounds, or once
    ``budget_s`` is spent and ``min_rounds`` are done. ``estimates``: a prior per-call time
    (from the warm-up) used to choose the calls per sample."""
    names = list(fns)
    inner = {n: max(1, min(1000, int(min_sample_s / max(estimates[n], 1e-7)))) for n in names}
    samples = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, k = fns[n], inner[n]
            sync(device)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync(device)
            samples[n].append((time.perf_counter() - t0) / k)
        if r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return samples


def summary(samples: list[float]) -> dict:
    """median, quartiles (q1, q3; IQR = q3 - q1), min, count, in seconds."""
    s = sorted(samples)
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    return {"median": statistics.median(s), "q1": q1, "q3": q3, "min": s[0], "n": len(s)}


def sync_after(fn: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a device synchronisation (the identity on CPU)."""
    if device.type != "cuda":
        return fn

    def run():
        fn()
        sync(device)
    return run
