"""Fused sample-and-embed against the unfused composition: forward + backward, time and peak memory.

    python bench/embed_bench.py                                # the CPU cases, 3 repetitions
    python bench/embed_bench.py --shapes 512x30522x384 --reps 5
    python bench/embed_bench.py --gpu                          # the GPU case (CUDA, Triton)

Per case (R rows, K vocabulary, D embedding width), ReDGE (hard, n_steps=3, t_1=0.5) on fp32
logits that require grad, a frozen fp32 weight ``W [K, D]`` (``--weight-grad``: W requires grad
too), upstream gradient ``G [R, D]``, ``e.backward(G)``:

* ``fused``  : ``rk.sample_embed(x, W, "redge", backend=B)`` (docs/EMBED.md: no R x K sample,
  the backward's ``G W^T`` formed chunk by chunk into the logits' gradient);
* ``unfused``: ``(rk.redge(x, backend=B) @ W)``: the one-hot y [R, K] in the forward, autograd's
  ``dL/dy = G W^T`` [R, K] in the backward.

Same seed, same sample. Times: medians of interleaved repetitions (one call of each per round),
with glibc's default allocator settings. Peak extra memory: CPU, in a child process started with
``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=65536``, the peak resident set of one
forward + backward above the resident set before it (``bench/timing.py`` ``peak_extra_bytes``;
the CPU output pool emptied first); CUDA, ``max_memory_allocated`` above the allocated bytes
before the call. Given in R x K buffers of the logits' dtype; it includes the logits' gradient
(1 buffer) and excludes the inputs. Targets (docs/EMBED.md): fused at most 1.2 buffers against 3
or more unfused; fused time no worse than unfused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import redge_kernels as rk  # noqa: E402
from bench.timing import peak_extra_bytes, prepare_cpu_memory_probe, sync  # noqa: E402

CPU_SHAPES = [(512, 30522, 384), (576, 16384, 256), (2048, 32768, 1024)]
GPU_SHAPES = [(4096, 131072, 4096)]
HP = dict(n_steps=3, t_1=0.5)


def make_case(rows: int, k: int, d: int, device: str, weight_grad: bool = False):
    """``(fns, nbytes)``: ``{"fused": f, "unfused": f}`` running one forward + backward each, and
    the bytes of one R x K buffer of the logits' dtype."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(rows, k, device=device, generator=gen).requires_grad_(True)
    w = (torch.randn(k, d, device=device, generator=gen) / d ** 0.5).requires_grad_(weight_grad)
    g = torch.randn(rows, d, device=device, generator=gen)
    backend = "cpu" if device == "cpu" else "triton"

    def fused():
        e = rk.sample_embed(x, w, "redge", seed=1, backend=backend, **HP)
        e.backward(g)
        x.grad = None
        w.grad = None

    def unfused():
        e = rk.redge(x, seed=1, backend=backend, **HP) @ w
        e.backward(g)
        x.grad = None
        w.grad = None

    return {"fused": fused, "unfused": unfused}, rows * k * x.element_size()


def time_case(fns: dict, device: torch.device, reps: int) -> dict:
    """Median seconds per call, interleaved repetitions after one warm-up call each."""
    for fn in fns.values():
        fn()
    samples = {n: [] for n in fns}
    names = list(fns)
    for r in range(reps):
        for n in names[r % 2:] + names[:r % 2]:
            sync(device)
            t0 = time.perf_counter()
            fns[n]()
            sync(device)
            samples[n].append(time.perf_counter() - t0)
    return {n: statistics.median(s) for n, s in samples.items()}


def memory_case(rows, k, d, device: str, weight_grad: bool) -> dict:
    """Peak extra memory of each function, in R x K buffers."""
    dev = torch.device(device)
    fns, nbytes = make_case(rows, k, d, device, weight_grad)
    out = {}
    for name, fn in fns.items():
        fn()
        fn()
        peak = peak_extra_bytes(fn, dev)
        out[name] = None if peak is None else peak / nbytes
    return out


def _memory_in_child(shape, weight_grad: bool) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child",
           "--shapes", "x".join(map(str, shape)), "--threads", str(torch.get_num_threads())]
    cmd += ["--weight-grad"] if weight_grad else []
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(shapes, device: str, reps: int, weight_grad: bool) -> list[dict]:
    rows_out = []
    for shape in shapes:
        fns, _ = make_case(*shape, device, weight_grad)
        times = time_case(fns, torch.device(device), reps)
        del fns
        mem = (_memory_in_child(shape, weight_grad) if device == "cpu"
               else memory_case(*shape, device, weight_grad))
        rows_out.append({"shape": shape, "time_s": times, "peak_rk_buffers": mem})
        print(format_row(rows_out[-1]), flush=True)
    return rows_out


def format_row(r: dict) -> str:
    (rows, k, d), t, m = r["shape"], r["time_s"], r["peak_rk_buffers"]
    mem = " | ".join("n/a" if m[n] is None else f"{m[n]:.2f}" for n in ("fused", "unfused"))
    return (f"| {rows} x {k} x {d} | {t['fused'] * 1e3:.0f} | {t['unfused'] * 1e3:.0f} | "
            f"{t['fused'] / t['unfused']:.2f} | {mem} |")


HEADER = ("| R x K x D | fused ms | unfused ms | time fused / unfused | peak fused (R x K buffers) "
          "| peak unfused (R x K buffers) |\n|---|---|---|---|---|---|")


def gpu_check(reps: int = 5) -> list[dict]:
    """The GPU case (4096, 131072, 4096) on CUDA with the Triton backend: fused vs unfused
    forward + backward, time and peak memory; also asserts fused == unfused (index and value)."""
    x = torch.randn(64, 4096, device="cuda")
    w = torch.randn(4096, 32, device="cuda")
    a, ia = rk.sample_embed(x, w, "redge", seed=3, backend="triton", return_index=True, **HP)
    b = rk.redge(x, seed=3, backend="triton", **HP) @ w
    assert torch.equal(a, b), "fused and unfused values differ on the GPU"
    print(HEADER)
    return run(GPU_SHAPES, "cuda", reps, False)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="*", help="RxKxD cases (default: the CPU cases)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--gpu", action="store_true", help="the GPU case on CUDA (Triton backend)")
    p.add_argument("--weight-grad", action="store_true", help="W requires grad")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes] if a.shapes else None
    if a.memory_child:
        prepare_cpu_memory_probe()
        print(json.dumps(memory_case(*shapes[0], "cpu", a.weight_grad)))
        return
    if a.gpu:
        gpu_check(a.reps)
        return
    print(f"{datetime.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, reps {a.reps}, "
          f"W requires grad: {a.weight_grad}")
    print(HEADER)
    run(shapes or CPU_SHAPES, "cpu", a.reps, a.weight_grad)


if __name__ == "__main__":
    main()
