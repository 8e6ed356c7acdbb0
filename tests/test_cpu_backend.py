"""C++ CPU kernels (csrc/, ``backend="cpu"``) against the pure-PyTorch reference with identical noise.

Sampled indices must be identical; fp32 values and gradients match with
``torch.testing.assert_close`` defaults; bf16 / fp16 errors against an fp64 reference are at most
twice PyTorch's own error (the reference run in that dtype). Also: awkward shapes (K = 1, 2, 3, odd,
33000), leading dims, non-contiguous and stride-0 inputs, masks, empty and NaN rows, 1 vs 2
threads, ``torch.library.opcheck``, fp64 gradcheck, and ``torch.compile(fullgraph=True)``.
"""

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _cpu_backend, reference
from redge_kernels._constants import METHOD_IDS
from redge_kernels.schedule import linear_schedule

from cpu_cases import CASES, TAU, _compare, _run, _schedule

if not _cpu_backend.available():
    pytest.skip(_cpu_backend.unavailable_reason(), allow_module_level=True)


@pytest.mark.parametrize("method,hard", CASES)
@pytest.mark.parametrize("rows,k", [(5, 1), (6, 2), (7, 3), (9, 17), (4, 250), (3, 33000)])
def test_matches_reference(method, hard, rows, k):
    torch.manual_seed(rows * 1000 + k)
    logits = torch.randn(rows, k) * 2.0
    _compare(method, logits, seed=1234 + k, hard=hard)


@pytest.mark.parametrize("method", ["redge", "redge_cov", "redge_max"])
@pytest.mark.parametrize("n_steps,t_1", [(2, 1.0), (3, 0.1), (7, 0.9)])
def test_schedules(method, n_steps, t_1):
    torch.manual_seed(n_steps)
    _compare(method, torch.randn(6, 40), seed=5, schedule=linear_schedule(n_steps, t_1))


def test_explicit_grid_and_large_c():
    # t_1 near 0 gives c_1 ~ 1e4: no overflow, still the reference's result.
    torch.manual_seed(0)
    sched = rk.grid_schedule([0.0, 0.01, 0.5, 1.0])
    for method in ("redge", "redge_cov", "redge_max"):
        _compare(method, torch.randn(5, 64) * 3, seed=9, schedule=sched)


@pytest.mark.parametrize("method,hard", CASES)
def test_leading_dims_public_api(method, hard):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 41)
    kw = {"tau": TAU} if method in ("gumbel", "reinmax") else {}
    fn = {"st": rk.straight_through, "gumbel": rk.gumbel_softmax, "reinmax": rk.reinmax,
          "redge": rk.redge, "redge_cov": rk.redge_cov, "redge_max": rk.redge_max}[method]
    g = torch.randn_like(x)
    outs = []
    for backend in ("reference", "cpu"):
        xx = x.clone().requires_grad_()
        y = fn(xx, hard=hard, seed=77, backend=backend, **kw)
        y.backward(g)
        outs.append((y.detach(), xx.grad))
    assert outs[1][0].shape == x.shape
    torch.testing.assert_close(outs[1][0], outs[0][0])
    torch.testing.assert_close(outs[1][1], outs[0][1])


@pytest.mark.parametrize("method", ["st", "gumbel", "redge", "redge_cov", "redge_max", "reinmax"])
def test_non_contiguous_and_expanded(method):
    torch.manual_seed(2)
    base = torch.randn(40, 12)
    for logits in (base.t(), base[::3, ::2], torch.randn(1, 31).expand(6, 31),
                   torch.randn(5, 1).expand(5, 9)):
        assert not logits.is_contiguous()
        y_c, _, _ = _compare(method, logits, seed=3)
        assert y_c.is_contiguous()


def test_auto_uses_cpu_backend():
    torch.manual_seed(3)
    x = torch.randn(4, 10)
    y_auto, i_auto = rk.sample("redge", x, schedule=linear_schedule(3, 0.5), seed=4,
                               return_index=True)
    y_cpu, i_cpu = rk.sample("redge", x, schedule=linear_schedule(3, 0.5), seed=4,
                             backend="cpu", return_index=True)
    assert torch.equal(y_auto, y_cpu) and torch.equal(i_auto, i_cpu)


@pytest.mark.parametrize("method,hard", CASES)
# k = 23: lane kernels / padded scratch rows; k = 64: row kernels reading the rows in place.
@pytest.mark.parametrize("k", [23, 64])
def test_masks_empty_and_nan_rows(method, hard, k):
    torch.manual_seed(4)
    logits = torch.randn(8, k)
    logits[torch.rand(8, k) < 0.4] = float("-inf")
    logits[0, 5] = 0.3  # at least one finite entry in row 0
    logits[2] = float("-inf")        # empty row
    logits[3, 7] = float("nan")      # poisoned rows
    logits[4, 0] = float("inf")
    logits[5, :k - 1] = float("-inf")   # a single valid entry
    g = torch.randn(8, k)
    y_r, i_r, g_r = _run("reference", method, logits, g, 11, hard)
    y_c, i_c, g_c = _run("cpu", method, logits, g, 11, hard)
    assert torch.equal(i_c, i_r)
    assert i_c[2] == -1 and i_c[3] == -1 and i_c[4] == -1
    assert torch.equal(y_c[2], torch.zeros(k)) and torch.equal(g_c[2], torch.zeros(k))
    assert torch.isnan(y_c[3]).all() and torch.isnan(y_c[4]).all()
    assert torch.isnan(g_c[3]).all() and torch.isnan(g_c[4]).all()
    masked = torch.isinf(logits) & (logits < 0)
    ok = torch.ones(8, dtype=torch.bool)
    ok[[3, 4]] = False
    assert (y_c[masked & ok[:, None]] == 0).all()
    assert (g_c[masked & ok[:, None]] == 0).all()  # exactly zero gradient where masked
    torch.testing.assert_close(y_c[ok], y_r[ok])
    torch.testing.assert_close(g_c[ok], g_r[ok])
    assert torch.isfinite(g_c[ok]).all()


@pytest.mark.parametrize("method,hard", CASES)
def test_threads_identical(method, hard):
    torch.manual_seed(5)
    logits = torch.randn(150, 300)  # 3 blocks of 54 rows: the shared row counter is exercised
    g = torch.randn(150, 300)
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


def _lowp_error(dtype, method, hard):
    """(kernel error, PyTorch's own error) of values and gradients vs the fp64 reference."""
    torch.manual_seed(6)
    x = (torch.randn(16, 200) * 2).to(dtype)
    g = torch.randn(16, 200).to(dtype)
    sched = _schedule(method)
    x64 = x.double().requires_grad_()
    y64, i64 = reference.sample(method, x64, 8, sched, hard, TAU)
    y64.backward(g.double())
    errs = {}
    for backend in ("reference", "cpu"):
        y, i, gr = _run(backend, method, x, g, 8, hard, sched)
        assert torch.equal(i, i64)
        errs[backend] = ((y.double() - y64.detach()).abs().max().item(),
                         (gr.double() - x64.grad).abs().max().item())
    return errs["cpu"], errs["reference"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method,hard", CASES)
def test_low_precision_error(dtype, method, hard):
    ours, torch_own = _lowp_error(dtype, method, hard)
    eps = torch.finfo(dtype).eps
    for e_ours, e_torch in zip(ours, torch_own):
        # At most twice PyTorch's own error in that dtype (one ulp of slack when that is 0).
        assert e_ours <= 2 * e_torch + eps * 2**-4, (ours, torch_own)


@pytest.mark.parametrize("method,hard", CASES)
@pytest.mark.parametrize("k", [19, 96])  # 96: a multiple of the padding, the gradient row is written in place
def test_float64_matches_reference(method, hard, k):
    torch.manual_seed(7)
    _compare(method, torch.randn(6, k, dtype=torch.float64), seed=31, hard=hard)


@pytest.mark.parametrize("method", ["st", "gumbel", "redge", "redge_cov"])
def test_gradcheck_fp64_soft(method):
    torch.manual_seed(8)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    x.data[1, 2] = float("-inf")  # a masked entry
    kw = {"st": {}, "gumbel": {"tau": 0.8}, "redge": {"n_steps": 4, "t_1": 0.6},
          "redge_cov": {"n_steps": 4, "t_1": 0.6}}[method]
    fn = {"st": rk.straight_through, "gumbel": rk.gumbel_softmax, "redge": rk.redge,
          "redge_cov": rk.redge_cov}[method]
    assert torch.autograd.gradcheck(lambda v: fn(v, hard=False, seed=13, backend="cpu", **kw), (x,))


def _op_samples():
    torch.manual_seed(9)
    out = []
    for method, hard in [("st", False), ("gumbel", True), ("reinmax", True), ("redge", True),
                         ("redge_cov", False), ("redge_max", True)]:
        for dtype in (torch.float32, torch.float64):
            phi = torch.randn(4, 7, dtype=dtype, requires_grad=True)
            coefs = _schedule(method, 4, 0.5).table("cpu", dtype=dtype)
            seed = torch.tensor(17, dtype=torch.int64)
            out.append((phi, seed, coefs, METHOD_IDS[method], hard, TAU))
    return out


@pytest.mark.parametrize("args", _op_samples())
def test_opcheck_fwd(args):
    torch.library.opcheck(torch.ops.redge_kernels.fwd.default, args)


def test_opcheck_bwd():
    torch.manual_seed(10)
    phi = torch.randn(4, 9)
    seed = torch.tensor(3, dtype=torch.int64)
    coefs = linear_schedule(4, 0.5).table("cpu")
    for m in ("redge", "redge_cov", "redge_max", "st", "gumbel", "reinmax"):
        _, stats, index = torch.ops.redge_kernels.fwd(phi, seed, coefs, METHOD_IDS[m], True, TAU)
        torch.library.opcheck(torch.ops.redge_kernels.bwd.default,
                              (torch.randn(4, 9), phi, seed, coefs, stats, index, METHOD_IDS[m],
                               True, TAU))


def test_seed_reproducible_and_generator():
    x = torch.randn(5, 50)
    a = rk.redge(x, seed=3, backend="cpu")
    b = rk.redge(x, seed=3, backend="cpu")
    assert torch.equal(a, b)
    torch.manual_seed(0)
    c = rk.redge(x, backend="cpu")
    torch.manual_seed(0)
    d = rk.redge(x, backend="cpu")
    assert torch.equal(c, d)


def test_torch_compile_fullgraph():
    torch.manual_seed(11)
    x = torch.randn(4, 33)
    g = torch.randn(4, 33)

    def f(v):
        return rk.redge(v, n_steps=4, t_1=0.5, backend="cpu", seed=5)

    compiled = torch.compile(f, fullgraph=True)  # inductor: the op is opaque, the rest is fused
    outs = []
    for fn in (f, compiled):
        xx = x.clone().requires_grad_()
        y = fn(xx)
        y.backward(g)
        outs.append((y.detach(), xx.grad))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


@pytest.mark.parametrize("method", ["st", "redge"])  # the two sampling paths (phi, and l_1)
def test_pruned_gumbel_max_is_exact(method):
    # The float kernels skip the Gumbel logs of columns that provably cannot win (a lower bound of
    # the best score from the columns with the largest words, an exponent bound of G per column);
    # the sampled index must still be exactly the reference's argmax. Logit spreads from narrow
    # (little pruned) to wide (most columns pruned), a K with few columns above the pass-1
    # threshold, and flat rows with masks.
    torch.manual_seed(12)
    flat = torch.zeros(2, 65536)
    flat[:, ::5] = float("-inf")
    cases = [torch.randn(32, 4096) * s for s in (0.3, 2.0, 12.0)]
    cases += [torch.randn(64, 200), flat]
    for logits in cases:
        _, i_r = rk.sample(method, logits, schedule=_schedule(method), seed=99,
                           backend="reference", return_index=True)
        _, i_c = rk.sample(method, logits, schedule=_schedule(method), seed=99, backend="cpu",
                           return_index=True)
        assert torch.equal(i_c, i_r)
