"""pytest-benchmark suite set-up: grid options and the per-case fixtures (see ``cases.py``)."""

from __future__ import annotations

import pytest
import torch

from bench import cases as C
from bench import runner


def pytest_addoption(parser):
    g = parser.getgroup("redge_kernels benchmarks")
    g.addoption("--bench-grid", default="quick", choices=sorted(runner.SETTINGS),
                help="case grid (bench/cases.py: smoke, quick, full); default quick")
    g.addoption("--bench-device", default="auto", help="cpu, cuda or auto (default)")
    g.addoption("--bench-threads", type=int, default=None, help="torch.set_num_threads")
    g.addoption("--bench-max-numel-slow", type=int, default=None,
                help="largest R*K for the pure-PyTorch reference backend on CPU (default 60000; "
                     "it generates Philox noise with tensor ops, ~0.1-0.3 s per call at 5e4)")


def pytest_configure(config):
    threads = config.getoption("--bench-threads")
    if threads:
        torch.set_num_threads(threads)


def pytest_generate_tests(metafunc):
    if "impl_case" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    device = runner.resolve_device(cfg.getoption("--bench-device"))
    size = cfg.getoption("--bench-grid")
    impls = C.implementations(device, compile_for=C.grid(size, device)["compile_for"])
    params, ids = [], []
    if metafunc.function.__name__ == "bench_copy_floor":
        for shape in sorted(C.grid(size, device)["shapes"], key=lambda s: s.numel):
            params.append((device, shape))
            ids.append(f"{shape.name}-{shape.label}")
    else:
        cap = cfg.getoption("--bench-max-numel-slow") or 60000
        for case in C.cases(size, device):
            for impl in impls:
                if impl.kind == "floor" or not impl.supports(case.estimator):
                    continue
                marks = []
                if (impl.name == "rk[reference]" and device.type == "cpu"
                        and case.shape.numel > cap):
                    marks.append(pytest.mark.skip(reason=f"reference on CPU above {cap} logits"))
                params.append(pytest.param((device, case, impl), marks=marks))
                est = case.estimator
                est_id = est.method if est.n_steps is None else f"{est.method}-n{est.n_steps}"
                ids.append(f"{case.shape.name}-{case.shape.label}-{est_id}-{case.pass_}-"
                           f"{impl.name}")
    metafunc.parametrize("impl_case", params, ids=ids)


@pytest.fixture(scope="module")
def inputs_cache():
    cache = {}

    def get(shape, device):
        if (shape, device) not in cache:
            cache.clear()
            cache[(shape, device)] = C.inputs(shape, device)
        return cache[(shape, device)]
    return get
