"""The AOT compile check (no GPU needed): every kernel configuration the launcher picks at the
quick level compiles for sm_90 with the JIT's runtime specialization and has no stack frame and no
spills (ptxas -v). Configurations that spill today are strict xfails: they turn into failures once
the kernels are fixed, so the marks must then be removed."""

import time

import pytest

import nvidia_tools

nvidia_tools.require("ptxas", "cuobjdump")

from bench import compile_check as cc  # noqa: E402

#: Configurations with a stack frame or spills in today's kernels (bench.compile_check output).
SPILLING = {
    "redge_cov bwd 4096x8192 n=5 fp32": "_diffusion_bwd_kernel: stack 32 B, spill stores 0 B, loads 0 B",
    "redge_cov bwd 4096x32768 n=5 fp32": "_diffusion_bwd_kernel: stack 32 B, spill stores 0 B, loads 0 B",
    "redge_cov bwd 4096x32768 n=5 bf16": "_diffusion_bwd_kernel: stack 32 B, spill stores 0 B, loads 0 B",
    "redge_cov fwd 4096x8192 n=5 fp32": "_diffusion_fwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
    "redge_cov soft fwd 4096x8192 n=5 fp32": "_diffusion_fwd_kernel: stack 24 B, spill stores 28 B, loads 40 B",
    "redge_cov no-y fwd 4096x8192 n=5 fp32": "_diffusion_fwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
    "gumbel bwd 4096x8192 fp32": "_onepass_bwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
    "redge_cov fwd 4096x32768 n=5 fp32": "_diffusion_fwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
    "redge_cov soft fwd 4096x32768 n=5 fp32": "_diffusion_fwd_kernel: stack 24 B, spill stores 28 B, loads 40 B",
    "redge_cov no-y fwd 4096x32768 n=5 fp32": "_diffusion_fwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
    "gumbel bwd 4096x32768 fp32": "_onepass_bwd_kernel: stack 8 B, spill stores 0 B, loads 0 B",
    "redge_cov fwd 4096x32768 n=5 bf16": "_diffusion_fwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
    "redge_cov soft fwd 4096x32768 n=5 bf16": "_diffusion_fwd_kernel: stack 24 B, spill stores 28 B, loads 40 B",
    "gumbel no-y fwd 4096x32768 bf16": "_onepass_fwd_kernel: stack 8 B, spill stores 4 B, loads 4 B",
}

_WORKLOADS = cc.workloads("quick")
_RESULTS = {}


def _results():
    """Compile every quick-level configuration once per test run (2 processes)."""
    if not _RESULTS:
        t0 = time.time()
        for w, rows in cc.check(_WORKLOADS, (90,), jobs=2):
            _RESULTS[w.label()] = rows
        print(f"\ncompile check: {len(_WORKLOADS)} workloads in {time.time() - t0:.0f} s")
    return _RESULTS


def _param(w):
    label = w.label()
    marks = [pytest.mark.xfail(strict=True, reason=SPILLING[label])] if label in SPILLING else []
    return pytest.param(label, id=label.replace(" ", "-"), marks=marks)


@pytest.mark.parametrize("label", [_param(w) for w in _WORKLOADS])
def test_no_stack_frame_and_no_spills(label):
    rows = _results()[label]
    assert rows, f"{label}: the launcher launched no kernel"
    for r in rows:
        assert not r.get("error"), r
        assert r["regs"] > 0, r
        assert cc.failing(r) == "", f"{label}: {r['name']}: {cc.failing(r)}"


def test_failing_reads_ptxas_stack_and_spills():
    ok = {"stack": 0, "spill_stores": 0, "spill_loads": 0, "local": 0, "error": ""}
    assert cc.failing(ok) == ""
    assert "stack 8 B" in cc.failing(dict(ok, stack=8))
    assert cc.failing(dict(ok, spill_loads=4))
    assert cc.failing(dict(ok, error="boom")).startswith("error")


def test_ptxas_report_parsing():
    from bench.kernel_compile import _ptxas_report
    log = ("ptxas info    : Used 255 registers, used 1 barriers, 136 bytes stack frame, "
           "140 bytes spill stores, 216 bytes spill loads")
    assert _ptxas_report(log) == {"regs": 255, "stack": 136, "spill_stores": 140,
                                  "spill_loads": 216}
