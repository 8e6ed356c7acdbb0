"""pytest-benchmark cases: every estimator x our backends and peers x shape x pass (``cases.py``).

Each benchmark's ``extra_info`` holds the case (shape, estimator, pass, implementation), the logit
bytes and the minimal traffic in R x K buffers, and after the run the GB/s of logits; the copy
floor of each shape is its own benchmark (``bench_copy_floor``). Ratios between implementations
and the plot come from ``python -m bench.report`` (same cases, interleaved timing).
"""

from __future__ import annotations

import pytest

from bench import cases as C
from bench import timing


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)
    return getattr(getattr(stats, "stats", None), "median", None)


def bench_estimator(benchmark, impl_case, inputs_cache):
    device, case, impl = impl_case
    x, g = inputs_cache(case.shape, device)
    fn = C.step_fn(impl.make(case.estimator), case, x, g)
    try:
        fn()  # warm-up: torch.compile compiles here, outside the timing
    except Exception as e:  # noqa: BLE001
        if impl.kind != "peer":
            raise  # ours failing is a bug
        # e.g. torch.compile of the authors' reindge fails in backward (its tensor hooks)
        pytest.skip(f"peer {impl.name} fails on this case: {type(e).__name__}: {e}"[:200])
    benchmark.group = f"{case.shape.name} {case.shape.label} {case.estimator.label} {case.pass_}"
    logit_bytes = case.shape.numel * x.element_size()
    benchmark.extra_info.update(
        shape=case.shape.label, estimator=case.estimator.label, pass_=case.pass_,
        impl=impl.name, device=str(device), logit_bytes=logit_bytes,
        min_buffers=C.MIN_BUFFERS[case.pass_])
    benchmark(timing.sync_after(fn, device))
    med = _median(benchmark)
    if med:
        benchmark.extra_info["gbps_logits"] = logit_bytes / med / 1e9


def bench_copy_floor(benchmark, impl_case, inputs_cache):
    device, shape = impl_case
    x, _ = inputs_cache(shape, device)
    fn = C.copy_fn(x)
    benchmark.group = f"copy {shape.name} {shape.label}"
    nbytes = 2 * shape.numel * x.element_size()
    benchmark.extra_info.update(shape=shape.label, impl="copy", device=str(device),
                                bytes_moved=nbytes)
    benchmark(timing.sync_after(fn, device))
    med = _median(benchmark)
    if med:
        benchmark.extra_info["gbps_moved"] = nbytes / med / 1e9
