"""The CPU kernel sets (csrc/kernels_cap_*.cpp): chosen by REDGE_KERNELS_CPU_KERNELS as asked,
bitwise equal to each other, and the AVX-512 unit free of 512-bit instructions.

The AVX-512 set is the AVX2 code's 256-bit vectors encoded with AVX-512VL; a single zmm
instruction in its hot paths (GCC widens struct copies and auto-vectorized loops to 512 bits
unless told not to: setup.py ``_NO_ZMM``) made its short-row kernels 8-15 % slower than the AVX2
set on an AVX-512 Intel Xeon, so the built unit is checked for zmm registers.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import redge_kernels as rk

pytestmark = pytest.mark.skipif("cpu" not in rk.available_backends(),
                                reason="the C++ extension is not built")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r"""
import sys, torch
import redge_kernels as rk
torch.manual_seed(0)
out = {"set": torch.ops.redge_kernels_cpu._kernel_set()}
for k in (2, 9, 64, 300, 5000):  # lane and row kernels
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = (torch.randn(37, k) * 2).to(dtype).requires_grad_()
        g = torch.randn(37, k).to(dtype)
        for name, fn in (("redge", rk.redge), ("redge_cov", rk.redge_cov),
                         ("redge_max", rk.redge_max), ("gumbel", rk.gumbel_softmax),
                         ("st", rk.straight_through), ("reinmax", rk.reinmax)):
            for hard in ((True, False) if name not in ("reinmax", "redge_max") else (True,)):
                x.grad = None
                y = fn(x, hard=hard, seed=11, backend="cpu")
                y.backward(g)
                out[(k, str(dtype), name, hard)] = (y.detach(), x.grad.clone())
torch.save(out, sys.argv[1])
"""


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _runnable_sets() -> list:
    flags = _cpu_flags()
    sets = ["default"]
    if {"avx2", "fma", "f16c", "bmi2"} <= flags:
        sets.append("avx2")
        if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
            sets.append("avx512")
    return sets


def _run(tmp_path, name):
    path = tmp_path / f"{name or 'unset'}.pt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p))
    env.pop("REDGE_KERNELS_CPU_KERNELS", None)
    if name is not None:
        env["REDGE_KERNELS_CPU_KERNELS"] = name
    res = subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], env=env, cwd=_ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return torch.load(path), res.stderr


def test_x86_sets_are_bitwise_equal_and_chosen_as_asked(tmp_path):
    sets = [s for s in _runnable_sets() if s != "default"]
    if not sets:
        pytest.skip("this CPU runs no x86 kernel set")
    outs = {}
    for name in sets:
        outs[name], _ = _run(tmp_path, name)
        assert outs[name].pop("set") == name
    first = outs[sets[0]]
    for name in sets[1:]:
        assert outs[name].keys() == first.keys()
        for key, (y0, g0) in first.items():
            y1, g1 = outs[name][key]
            assert torch.equal(y0, y1), (name, key)
            assert torch.equal(g0, g1), (name, key)


def test_unknown_set_warns_and_keeps_the_usual_choice(tmp_path):
    usual, _ = _run(tmp_path, None)
    bogus, err = _run(tmp_path, "avx1024")
    assert bogus["set"] == usual["set"]
    assert "REDGE_KERNELS_CPU_KERNELS" in err and "avx1024" in err


def test_avx512_unit_has_no_512_bit_instruction():
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    import redge_kernels._C as ext

    asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", ext.__file__],
                         capture_output=True, text=True, check=True).stdout
    in_unit, functions, offenders = False, 0, set()
    for line in asm.splitlines():
        if line and not line[0].isspace() and line.endswith(">:"):
            in_unit = "::AVX512VL::" in line
            functions += in_unit
            name = line
        elif in_unit and "%zmm" in line:
            offenders.add(name[:160])
    if functions == 0:
        pytest.skip("the extension was built without the AVX-512 unit")
    assert not offenders, sorted(offenders)[:10]
