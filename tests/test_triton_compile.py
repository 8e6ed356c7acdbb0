"""The AOT compile check (no GPU needed): every kernel configuration the launcher picks at the
quick level compiles for sm_90 with the JIT's runtime specialization and has no spill and no stack
frame (ptxas -v), except a stack frame that holds only libdevice's cos / sin slow path, which the
SASS check of ``bench.compile_check.stack_cause`` attributes."""

import time

import pytest

import nvidia_tools

nvidia_tools.require("ptxas", "cuobjdump")

from bench import compile_check as cc  # noqa: E402

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
    return pytest.param(label, id=label.replace(" ", "-"))


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
    # a stack frame only for libdevice's cos / sin slow path passes; with any spill it fails
    trig = dict(ok, stack=32, stack_cause="trig slow path")
    assert cc.failing(trig) == ""
    assert cc.failing(dict(trig, spill_stores=4))
    assert cc.failing(dict(ok, stack=32, stack_cause=""))


def test_stack_cause_reads_the_local_accesses_of_the_sass():
    """The tiled ReDGE-Cov backward (K = 8192; 256 rows, not split into chunks) keeps a 32-byte
    stack frame for the Payne-Hanek array of libdevice's cos / sin: every LDL / STL of its SASS is
    attributed to the Box-Muller line; a kernel without local accesses has no cause."""
    from bench.kernel_compile import Workload, in_compiling_process, interpreting
    items = [(Workload("redge_cov", "bwd", 256, 8192, 5),), (Workload("st", "fwd", 4, 64, 5),)]
    if interpreting():
        reports = in_compiling_process(cc.stack_report, items)
    else:
        reports = [cc.stack_report(*args) for args in items]
    frames = [r for r in reports[0] if r[0] > 0]
    assert frames, reports[0]
    (stack, stores, loads, cause), = frames
    assert stack > 0 and stores == 0 and loads == 0 and cause == "trig slow path"
    assert [r[3] for r in reports[1]] == [""] * len(reports[1])
