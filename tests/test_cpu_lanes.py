"""The "lanes are rows" CPU kernels (csrc/lane_kernels_impl.h, used for K <= LANE_MAX_K).

A block of 16 (fp32) or 8 (fp64) consecutive rows is processed with one SIMD lane per row (two
AVX2 vectors per column), so these tests use row counts that are not multiples of 16, several
blocks, special rows in the middle of a block and K on both sides of the threshold. The fp32
results against the pure-PyTorch reference (K = 1, 2, 3, 9, the threshold and one above, 21 and 70
rows; temperatures; masks, empty and NaN rows in the middle of a block) are the cases of
tests/conftest.py's ``TABLE`` tagged ``lanes``, checked by tests/test_fused_backends.py.
Here: the lane kernels forced beyond the thresholds, long and small-t_1 schedules and bf16 / fp16
against the fp64 reference, fp64 and strided inputs against the reference, a row's result
independent of R and of the thread count (bitwise), agreement with the per-row kernels
(REDGE_KERNELS_LANE_MAX_K=0 switches the lane kernels off for a call), the stats layout of ops.py,
``torch.library.opcheck`` and the portable kernel set.
"""

import os
from contextlib import contextmanager

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _cpu_backend, reference
from redge_kernels._constants import METHOD_IDS
from redge_kernels.schedule import linear_schedule

from conftest import CASES, LANE_MAX_K, METHODS
from cpu_cases import TAU, _compare, _run, _schedule

if not _cpu_backend.available():
    pytest.skip(_cpu_backend.unavailable_reason(), allow_module_level=True)


def _k(method, k):
    """K of a method: ``k``, or "max" (the method's lane threshold ``LANE_MAX_K``), "max+1"."""
    return {"max": LANE_MAX_K[method], "max+1": LANE_MAX_K[method] + 1}.get(k, k)


@contextmanager
def _lane_max_k(value):
    """Sets REDGE_KERNELS_LANE_MAX_K (read by the C++ launcher at every call) for a block."""
    old = os.environ.get("REDGE_KERNELS_LANE_MAX_K")
    os.environ["REDGE_KERNELS_LANE_MAX_K"] = str(value)
    try:
        yield
    finally:
        if old is None:
            del os.environ["REDGE_KERNELS_LANE_MAX_K"]
        else:
            os.environ["REDGE_KERNELS_LANE_MAX_K"] = old


def _error_vs_fp64(method, x, g, seed, hard=True, schedule=None):
    """(kernel error, PyTorch's own error, fp64 magnitudes) of values and gradients against the
    fp64 reference,
    the kernel and the reference both run in x's dtype; indices must all be identical."""
    sched = schedule or _schedule(method)
    x64 = x.double().requires_grad_()
    y64, i64 = reference.sample(method, x64, seed, sched, hard, TAU)
    y64.backward(g.double())
    errs = {}
    for backend in ("reference", "cpu"):
        y, i, gr = _run(backend, method, x, g, seed, hard, sched)
        assert y.dtype == x.dtype and gr.dtype == x.dtype
        assert torch.equal(i, i64)
        errs[backend] = ((y.double() - y64.detach()).abs().max().item(),
                         (gr.double() - x64.grad).abs().max().item())
    scale = (y64.detach().abs().max().item(), x64.grad.abs().max().item())
    return errs["cpu"], errs["reference"], scale


def _assert_error_at_most_twice_torch(ours, torch_own, dtype, scale):
    """``scale``: (max |y|, max |grad|) of the fp64 reference."""
    eps = torch.finfo(dtype).eps
    for e_ours, e_torch, m in zip(ours, torch_own, scale):
        # At most twice PyTorch's own error in that dtype, plus one ulp of the largest value
        # (PyTorch's own error may happen to be far below an ulp on every element); never less
        # than 1/16 ulp of 1, the terms' scale when the result itself cancels to ~0.
        assert e_ours <= 2 * e_torch + eps * max(m, 2**-4), (ours, torch_own, scale)


@pytest.mark.parametrize("method,hard", CASES)
def test_forced_lanes_larger_k(method, hard):
    # The lane kernels forced beyond the default thresholds (odd column counts: the backward's
    # 4-column unrolled chain and its remainder), still the reference.
    with _lane_max_k(256):
        for rows, k in ((19, 33), (11, 70), (5, 250)):
            torch.manual_seed(rows + k)
            _compare(method, torch.randn(rows, k) * 2.0, seed=99 + k, hard=hard)


@pytest.mark.parametrize("method", ["redge", "redge_cov", "redge_max"])
@pytest.mark.parametrize("n_steps,t_1", [(2, 1.0), (3, 0.1), (20, 0.9)])
def test_schedules_against_fp64(method, n_steps, t_1):
    # n_steps = 20 is above the row kernels' hoisted-array size (16): the per-lane stats of every
    # step are kept for the whole chain. Small t_1 (large c_1) amplifies fp32 rounding (the fp32
    # reference itself is off by ~3e-5 here), so the yardstick is the fp64 reference: at most
    # twice the error of the fp32 reference.
    torch.manual_seed(n_steps)
    for rows, k, sched in ((19, 5, linear_schedule(n_steps, t_1)),
                           (13, 3, rk.grid_schedule([0.0, 0.01, 0.5, 1.0]))):
        x, g = torch.randn(rows, k), torch.randn(rows, k)
        ours, torch_own, scale = _error_vs_fp64(method, x, g, 5, True, sched)
        _assert_error_at_most_twice_torch(ours, torch_own, torch.float32, scale)
        _compare(method, x.double(), seed=6, schedule=sched)


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_and_expanded(method):
    torch.manual_seed(2)
    base = torch.randn(40, 12)
    for logits in (base.t()[:, :9], base[::3, ::2], torch.randn(1, 5).expand(21, 5),
                   torch.randn(21, 1).expand(21, 9), base[:, :2]):
        assert not logits.is_contiguous()
        y_c, _, _ = _compare(method, logits, seed=3)
        assert y_c.is_contiguous()
    # non-contiguous incoming gradient (stride-0 and transposed)
    logits = torch.randn(19, 4)
    _compare(method, logits, seed=8, g=torch.randn(1, 4).expand(19, 4))
    _compare(method, logits, seed=8, g=torch.randn(4, 19).t())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method,hard", CASES)
def test_low_precision_error(dtype, method, hard):
    # Kernel error against the fp64 reference at most twice PyTorch's own error in that dtype.
    torch.manual_seed(6)
    x = (torch.randn(37, 7) * 2).to(dtype)
    g = torch.randn(37, 7).to(dtype)
    ours, torch_own, scale = _error_vs_fp64(method, x, g, 8, hard)
    _assert_error_at_most_twice_torch(ours, torch_own, dtype, scale)


@pytest.mark.parametrize("method,hard", CASES)
@pytest.mark.parametrize("k", [1, 3, "max"])
def test_float64_matches_reference(method, hard, k):
    k = _k(method, k)
    # fp64 runs 4 rows per vector, blocks of 8 rows: 23 rows = 2 blocks + 7.
    torch.manual_seed(7 + k)
    _compare(method, torch.randn(23, k, dtype=torch.float64), seed=31, hard=hard)


@pytest.mark.parametrize("method,hard", CASES)
@pytest.mark.parametrize("shape", [(150, 3), (20000, 3)])  # serial; shared row counter (> 1 grab)
def test_threads_identical(method, hard, shape):
    torch.manual_seed(5)
    logits = torch.randn(*shape)
    g = torch.randn(*shape)
    n0 = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _run("cpu", method, logits, g, 21, hard)
        torch.set_num_threads(2)
        b = _run("cpu", method, logits, g, 21, hard)
    finally:
        torch.set_num_threads(n0)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@pytest.mark.parametrize("method,hard", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_do_not_depend_on_R(method, hard, dtype):
    # Noise depends only on row * K + col and lanes never interact: the first R1 rows of a call
    # with R2 > R1 rows are bitwise those of a call with R1 rows (R1 ends inside a block).
    torch.manual_seed(9)
    k, r1, r2 = 5, 13, 45
    logits = torch.randn(r2, k, dtype=dtype)
    logits[3, 1] = float("-inf")
    g = torch.randn(r2, k, dtype=dtype)
    y2, i2, g2 = _run("cpu", method, logits, g, 77, hard)
    for r in (r1, 1, 8):
        y1, i1, g1 = _run("cpu", method, logits[:r], g[:r], 77, hard)
        assert torch.equal(i1, i2[:r])
        assert torch.equal(y1, y2[:r])
        assert torch.equal(g1, g2[:r])
    # a view starting inside a block (its rows are numbered from 0 again): still the reference
    _compare(method, logits[5:], seed=77, hard=hard)


@pytest.mark.parametrize("method,hard", CASES)
@pytest.mark.parametrize("k", [2, 7, "max"])
def test_agrees_with_row_kernels(method, hard, k):
    k = _k(method, k)
    # The same op with the lane kernels switched off: identical indices, close values, gradients
    # and stats (the stats layout of ops.py, read by either backward).
    torch.manual_seed(20 + k)
    phi = torch.randn(53, k) * 2
    phi[4, 0] = float("-inf")
    phi[6] = float("-inf")
    phi[10, k - 1] = float("nan")
    g = torch.randn(53, k)
    seed = torch.tensor(1234, dtype=torch.int64)
    coefs = _schedule(method).table("cpu")
    mid = METHOD_IDS[method]
    y_l, st_l, i_l = torch.ops.redge_kernels.fwd(phi, seed, coefs, mid, hard, TAU)
    gp_l = torch.ops.redge_kernels.bwd(g, phi, seed, coefs, st_l, i_l, mid, hard, TAU)
    with _lane_max_k(0):
        y_r, st_r, i_r = torch.ops.redge_kernels.fwd(phi, seed, coefs, mid, hard, TAU)
        gp_r = torch.ops.redge_kernels.bwd(g, phi, seed, coefs, st_r, i_r, mid, hard, TAU)
        gp_x = torch.ops.redge_kernels.bwd(g, phi, seed, coefs, st_l, i_l, mid, hard, TAU)
    assert torch.equal(i_l, i_r)
    torch.testing.assert_close(y_l, y_r, equal_nan=True)
    torch.testing.assert_close(gp_l, gp_r, equal_nan=True)
    torch.testing.assert_close(gp_x, gp_r, equal_nan=True)  # row backward on lane stats
    # Slots each method defines: 0 for the baselines and cov, 1..n-1 for the chain.
    n = coefs.shape[0]
    slots = [0] if method in ("st", "gumbel", "reinmax") else list(range(1, n))
    if method == "redge_cov":
        slots = [0] + slots
    torch.testing.assert_close(st_l[:, slots], st_r[:, slots], equal_nan=True)
    assert torch.equal(st_l[6], torch.zeros_like(st_l[6]))  # empty row: zeros
    assert torch.isnan(st_l[10]).all()  # poisoned row: NaN


def test_opcheck_small_k():
    torch.manual_seed(10)
    for k, rows in ((2, 11), (5, 9)):
        for m in METHODS:
            hard = m in ("reinmax", "redge_max")
            for dtype in (torch.float32, torch.float64):
                phi = torch.randn(rows, k, dtype=dtype, requires_grad=True)
                seed = torch.tensor(3, dtype=torch.int64)
                coefs = _schedule(m, 4, 0.5).table("cpu", dtype=dtype)
                args = (phi, seed, coefs, METHOD_IDS[m], hard, TAU)
                torch.library.opcheck(torch.ops.redge_kernels.fwd.default, args)
                _, stats, index = torch.ops.redge_kernels.fwd(*args)
                torch.library.opcheck(torch.ops.redge_kernels.bwd.default,
                                      (torch.randn(rows, k, dtype=dtype), phi.detach(), seed,
                                       coefs, stats, index, METHOD_IDS[m], hard, TAU))


@pytest.mark.parametrize("method", ["st", "gumbel", "redge", "redge_cov"])
def test_gradcheck_fp64_soft(method):
    torch.manual_seed(8)
    x = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    x.data[1, 2] = float("-inf")
    kw = {"st": {}, "gumbel": {"tau": 0.8}, "redge": {"n_steps": 4, "t_1": 0.6},
          "redge_cov": {"n_steps": 4, "t_1": 0.6}}[method]
    fn = {"st": rk.straight_through, "gumbel": rk.gumbel_softmax, "redge": rk.redge,
          "redge_cov": rk.redge_cov}[method]
    assert torch.autograd.gradcheck(lambda v: fn(v, hard=False, seed=13, backend="cpu", **kw), (x,))


_DEFAULT_SET_SCRIPT = r"""
import sys, torch
import redge_kernels._C  # noqa: F401  (registers the CPU kernels)
from redge_kernels._constants import METHOD_IDS
from redge_kernels.schedule import Schedule, linear_schedule
torch.manual_seed(0)
out = {}
for dtype in (torch.float32, torch.float64):
    phi = torch.randn(21, 5, dtype=dtype) * 2
    phi[3, 1] = float("-inf")
    g = torch.randn(21, 5, dtype=dtype)
    seed = torch.tensor(5, dtype=torch.int64)
    for m in METHOD_IDS:
        base = Schedule([1.0, 0.0], [0.0, 1.0])
        sched = linear_schedule(4, 0.5) if m.startswith("redge") else base
        coefs = sched.table("cpu", dtype=dtype)
        hard = m in ("reinmax", "redge_max")
        y, st, ix = torch.ops.redge_kernels.fwd(phi, seed, coefs, METHOD_IDS[m], hard, 0.7)
        gp = torch.ops.redge_kernels.bwd(g, phi, seed, coefs, st, ix, METHOD_IDS[m], hard, 0.7)
        out[(str(dtype), m)] = (y, st, ix, gp)
torch.save(out, sys.argv[1])
"""


def test_default_and_avx2_kernel_sets_agree(tmp_path):
    # The lane kernels compiled for ATen's portable vectors (ATEN_CPU_CAPABILITY=default picks
    # them) against this CPU's set: identical indices, values within fp32 / fp64 rounding.
    import subprocess
    import sys

    outs = []
    for cap in ("default", None):
        env = dict(os.environ)
        env.pop("REDGE_KERNELS_LANE_MAX_K", None)
        if cap is None:
            env.pop("ATEN_CPU_CAPABILITY", None)
        else:
            env["ATEN_CPU_CAPABILITY"] = cap
        path = tmp_path / f"out_{cap}.pt"
        subprocess.run([sys.executable, "-c", _DEFAULT_SET_SCRIPT, str(path)], env=env, check=True)
        outs.append(torch.load(path))
    for key, (y0, st0, ix0, g0) in outs[0].items():
        y1, st1, ix1, g1 = outs[1][key]
        assert torch.equal(ix0, ix1), key
        torch.testing.assert_close(y0, y1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g0, g1, rtol=1e-5, atol=1e-6)
