"""Drop-in use with the authors' call patterns: ``reindge(x, reindge_fn, n_steps, t_1)``,
``reindge_fn=`` anywhere, numpy scalars and 0-dim tensors for numbers, and the soft sample beside
the hard one (``return_soft=``, the authors' ``y.soft``)."""

import numpy as np
import pytest
import torch

import redge_kernels as rk
from conftest import CASES, CASE_KW, device_of, run


def _ddim_mod():
    redge = pytest.importorskip("redge")
    return redge.ddim_mod


def test_reindge_takes_the_authors_reindge_fn_positionally_and_by_keyword():
    fn = _ddim_mod()
    x = torch.randn(4, 6)
    want = rk.redge_max(x, 5, 0.5, seed=3)
    assert torch.equal(rk.reindge(x, fn, 5, 0.5, seed=3), want)
    assert torch.equal(rk.reindge(x, reindge_fn=fn, n_steps=5, t_1=0.5, seed=3), want)
    assert torch.equal(rk.reindge(x, None, 5, 0.5, True, seed=3), want)
    assert torch.equal(rk.SAMPLERS["reindge"](x, reindge_fn=fn, n_steps=5, t_1=0.5, seed=3), want)
    with pytest.raises(TypeError, match="reindge_fn .ignored. must be a callable or None"):
        rk.reindge(x, 5, 0.5, seed=3)  # positional n_steps there would be silently misread


def test_every_sampler_ignores_reindge_fn():
    fn = _ddim_mod()
    x = torch.randn(3, 5)
    for name, f in rk.SAMPLERS.items():
        y = f(x, n_steps=3, t_1=0.5, tau=1.0, reindge_fn=fn, seed=0)
        assert torch.equal(y, f(x, n_steps=3, t_1=0.5, tau=1.0, seed=0)), name


@pytest.mark.parametrize("n_steps,t_1,tau,seed", [
    (np.int64(4), np.float32(0.5), np.float32(0.75), np.int64(9)),
    (np.int32(4), np.float64(0.5), np.float16(0.75), np.uint8(9)),
    (torch.tensor(4), torch.tensor(0.5), torch.tensor(0.75), torch.tensor(9)),
    (torch.tensor(4, dtype=torch.int32), torch.tensor(0.5, dtype=torch.float64),
     torch.tensor(0.75, dtype=torch.float16), torch.tensor(9, dtype=torch.int32)),
], ids=["numpy", "numpy-other-widths", "0-dim-tensors", "0-dim-tensors-other-dtypes"])
def test_numbers_of_any_numeric_type_give_the_python_number_result(n_steps, t_1, tau, seed):
    x = torch.randn(3, 6)
    for name in ("redge", "redge_cov", "redge_max", "reindge"):
        assert torch.equal(rk.SAMPLERS[name](x, n_steps=n_steps, t_1=t_1, seed=seed),
                           rk.SAMPLERS[name](x, n_steps=4, t_1=0.5, seed=9)), name
    for name in ("gumbel", "reinmax"):
        assert torch.equal(rk.SAMPLERS[name](x, tau=tau, seed=seed),
                           rk.SAMPLERS[name](x, tau=0.75, seed=9)), name
    times = [np.float32(0.0), torch.tensor(0.5), 1]
    assert torch.equal(rk.redge(x, times=times, seed=seed), rk.redge(x, times=[0.0, 0.5, 1.0], seed=9))


@pytest.mark.parametrize("arg", ["n_steps", "t_1", "tau", "seed"])
@pytest.mark.parametrize("value", [True, np.bool_(True), torch.tensor(True)], ids=["bool", "np", "tensor"])
def test_bools_are_refused_where_numbers_are_expected(arg, value):
    f = rk.gumbel_softmax if arg == "tau" else rk.redge
    with pytest.raises(TypeError, match=f"{arg} must be"):
        f(torch.randn(2, 3), **{arg: value})


def _soft_reference(method, x, backend, seed):
    """What ``return_soft`` documents: the method's own soft sample, ReDGE's p_1 for ReDGE-Max,
    softmax(logits) for ReinMax."""
    if method == "reinmax":
        return torch.softmax(x, -1)
    if method == "redge_max":  # ReDGE's soft sample on ReDGE-Max's grid
        return rk.redge(x, hard=False, backend=backend, seed=seed, **CASE_KW[method])
    return run(method, x, hard=False, backend=backend, seed=seed)


def test_return_soft_gives_the_soft_sample_of_the_same_call(backend):
    torch.manual_seed(0)
    dev = device_of(backend)
    x = torch.randn(3, 7, device=dev)
    u, w = torch.randn(3, 7, device=dev), torch.randn(3, 7, device=dev)
    for method, hard in CASES:
        xx = x.clone().requires_grad_(True)
        y, soft = run(method, xx, hard=hard, backend=backend, seed=4, return_soft=True)
        assert torch.equal(y, run(method, x, hard=hard, backend=backend, seed=4)), method
        assert soft.shape == x.shape and soft.dtype == x.dtype
        x2 = x.clone().requires_grad_(True)
        want = _soft_reference(method, x2, backend, 4)
        torch.testing.assert_close(soft, want)
        g, = torch.autograd.grad((y * u).sum() + (soft * w).sum(), xx)
        g_y, = torch.autograd.grad((run(method, x2, hard=hard, backend=backend, seed=4) * u).sum(), x2)
        g_s, = torch.autograd.grad((want * w).sum(), x2)
        torch.testing.assert_close(g, g_y + g_s)  # both outputs carry their own gradient


def test_return_soft_draws_one_seed():
    x = torch.randn(4, 6)
    torch.manual_seed(1)
    y, soft = rk.redge(x, return_soft=True)
    after = torch.rand(3)
    torch.manual_seed(1)
    y2 = rk.redge(x)
    assert torch.equal(y, y2) and torch.equal(torch.rand(3), after)
    torch.manual_seed(1)
    assert torch.equal(soft, rk.redge(x, hard=False))
