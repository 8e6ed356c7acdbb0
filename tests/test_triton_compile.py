"""The AOT compile check (no GPU needed): every kernel configuration the launcher picks at the
quick level compiles for sm_90 and sm_80 with the JIT's runtime specialization and has no spill
and no stack frame (ptxas -v)."""

import time

import pytest

import nvidia_tools

nvidia_tools.require("ptxas", "cuobjdump")

from bench import compile_check as cc  # noqa: E402

_WORKLOADS = cc.workloads("quick")
_RESULTS = {}


def _results():
    """Compile every quick-level configuration once per test run for each arch (2 processes)."""
    if not _RESULTS:
        t0 = time.time()
        for w, rows in cc.check(_WORKLOADS, (90, 80), jobs=2):
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
        assert cc.failing(r) == "", f"{label}: {r['name']} sm_{r['arch']}: {cc.failing(r)}"


def test_failing_reads_ptxas_stack_and_spills():
    ok = {"stack": 0, "spill_stores": 0, "spill_loads": 0, "local": 0, "error": ""}
    assert cc.failing(ok) == ""
    assert "stack 8 B" in cc.failing(dict(ok, stack=8))
    assert cc.failing(dict(ok, spill_loads=4))
    assert cc.failing(dict(ok, error="boom")).startswith("error")
    assert "stack 32 B" in cc.failing(dict(ok, stack=32))
