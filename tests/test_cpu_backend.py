"""C++ CPU kernels (csrc/, ``backend="cpu"``) against the pure-PyTorch reference with identical noise.

The checks shared with the other backends (fp32 results on awkward shapes, K = 1, 2, 3, odd,
33000; schedules; masks, empty and NaN rows) are tests/test_fused_backends.py, on the cases of
tests/conftest.py's ``TABLE`` tagged ``rows``, ``lanes`` and ``small``. Here, the CPU's own:
sampled indices identical and values and gradients close for fp64 and for leading dims,
non-contiguous and stride-0 inputs; bf16 / fp16 errors against an fp64 reference at most twice
PyTorch's own error (the reference run in that dtype); 1 vs 2 threads bitwise; the pruned
Gumbel-max exact; ``torch.library.opcheck``, fp64 gradcheck and ``torch.compile(fullgraph=True)``.
"""

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _cpu_backend, reference
from redge_kernels._constants import METHOD_IDS
from redge_kernels.schedule import linear_schedule

from conftest import CASES
from cpu_cases import TAU, _compare, _run, _schedule

if not _cpu_backend.available():
    pytest.skip(_cpu_backend.unavailable_reason(), allow_module_level=True)


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
            out.append(pytest.param((phi, seed, coefs, METHOD_IDS[method], hard, TAU),
                                    id=f"{method}-{'hard' if hard else 'soft'}-"
                                       f"{str(dtype).split('.')[-1]}"))
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
