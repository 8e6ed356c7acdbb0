"""The estimators' math (reference backend): the authors' code with injected noise, the docs/SPEC.md's
special cases, hand-written backwards against closed forms, and statistics by exact enumeration."""

import itertools
import math

import pytest
import torch

import redge_kernels as rk
from redge_kernels import reference
from redge_kernels.schedule import linear_schedule

redge_pkg = pytest.importorskip("redge", reason="the authors' package is a test dependency")
reinmax_pkg = pytest.importorskip("reinmax")


# --------------------------------------------------------------------------------------------
# The authors' published code, fed our noise and our float64 schedule, gives our numbers.
# --------------------------------------------------------------------------------------------
@pytest.fixture
def authors(monkeypatch):
    """Patch the authors' package so that it draws the noise of ``rk.sample_noise(seed)`` and
    uses the float64 schedule (theirs is float32); returns a setter for the seed."""
    import importlib

    ddim, gumbel_sampling, reindge, st = (importlib.import_module(f"redge.{m}") for m in
                                          ("ddim", "gumbel_sampling", "reindge", "st"))
    state = {}

    real_randn = torch.randn

    def fake_randn(*shape, device=None, requires_grad=False, **kw):
        if "noise" not in state:  # not inside the authors' code yet
            return real_randn(*shape, device=device, requires_grad=requires_grad, **kw)
        z = state["noise"].z.to(state["dtype"])
        assert tuple(z.shape) == tuple(shape)
        return z.clone().requires_grad_(requires_grad)

    def fake_gumbel(shape, device=None):
        return state["noise"].gumbel.to(state["dtype"])

    def fake_schedule(n_steps, t_1):
        s = linear_schedule(n_steps, t_1)
        return (torch.tensor(s.alphas, dtype=torch.float64), torch.tensor(s.sigmas, dtype=torch.float64))

    monkeypatch.setattr(torch, "randn", fake_randn)
    for mod in (ddim, st, gumbel_sampling):
        monkeypatch.setattr(mod, "sample_gumbel", fake_gumbel)
    monkeypatch.setattr(ddim, "mk_schedule", fake_schedule)
    monkeypatch.setattr(reindge, "mk_schedule", fake_schedule)

    def use(shape, seed, dtype=torch.float64):
        state["noise"] = rk.sample_noise(shape, seed)
        state["dtype"] = dtype

    return use


def _value_and_grad(fn, logits, g):
    x = logits.clone().requires_grad_(True)
    y = fn(x)
    (y * g).sum().backward()
    return y.detach(), x.grad


AUTHORS_CASES = [
    ("redge", dict(n_steps=3, t_1=0.5), True),
    ("redge", dict(n_steps=5, t_1=0.2), False),
    ("redge", dict(n_steps=2, t_1=0.7), True),
    ("redge_cov", dict(n_steps=5, t_1=0.5), True),
    ("redge_cov", dict(n_steps=3, t_1=0.9), False),
    ("reindge", dict(n_steps=5, t_1=0.5), True),
    ("reindge", dict(n_steps=3, t_1=0.3), True),
    ("st", {}, True),
    ("st", {}, False),
    ("gumbel", dict(tau=0.5), True),
    ("gumbel", dict(tau=2.0), False),
]


@pytest.mark.parametrize("name,kw,hard", AUTHORS_CASES)
def test_matches_authors_package_with_the_same_noise(authors, name, kw, hard):
    torch.manual_seed(0)
    logits = torch.randn(5, 7, dtype=torch.float64) * 1.5
    g = torch.randn(5, 7, dtype=torch.float64)
    seed = 1234
    authors(logits.shape, seed)
    theirs_fn = redge_pkg.SAMPLERS[name]
    y_theirs, g_theirs = _value_and_grad(lambda x: theirs_fn(x, hard=hard, **kw), logits, g)
    y_ours, g_ours = _value_and_grad(
        lambda x: rk.SAMPLERS[name](x, hard=hard, seed=seed, backend="reference", **kw), logits, g)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


def _reinmax_package_grad(logits, one_hot, g, tau):
    """Gradient of the `reinmax` package's autograd.Function for a given sample."""
    from reinmax.reinmax import ReinMax_Auto

    class Ctx:
        saved_tensors = (one_hot, logits, logits.softmax(-1), torch.tensor([tau], dtype=logits.dtype))

    grad, _ = ReinMax_Auto.backward(Ctx, g, torch.zeros_like(g))
    return grad


@pytest.mark.parametrize("tau", [1.0, 0.7, 3.0])
def test_reinmax_backward_matches_reinmax_package(tau):
    torch.manual_seed(1)
    logits = torch.randn(6, 5, dtype=torch.float64)
    g = torch.randn(6, 5, dtype=torch.float64)
    y, grad = _value_and_grad(lambda x: rk.reinmax(x, tau=tau, seed=3, backend="reference"), logits, g)
    want = _reinmax_package_grad(logits, y, g, tau)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def test_reinmax_tau1_is_paper_eq5():
    """gphi = 1/2 (Cov(p) + (D - p)(D - p)^T) g, written with explicit matrices."""
    torch.manual_seed(2)
    logits = torch.randn(4, 6, dtype=torch.float64)
    g = torch.randn(4, 6, dtype=torch.float64)
    y, grad = _value_and_grad(lambda x: rk.reinmax(x, tau=1.0, seed=8, backend="reference"), logits, g)
    p = logits.softmax(-1)
    for r in range(4):
        cov = torch.diag(p[r]) - torch.outer(p[r], p[r])
        d = y[r] - p[r]
        torch.testing.assert_close(grad[r], 0.5 * (cov + torch.outer(d, d)) @ g[r], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# docs/SPEC.md special cases.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hard", [True, False])
def test_redge_two_steps_t1_one_is_straight_through_exactly(hard):
    torch.manual_seed(3)
    logits = torch.randn(8, 11)
    g = torch.randn(8, 11)
    y1, g1 = _value_and_grad(lambda x: rk.redge(x, n_steps=2, t_1=1.0, hard=hard, seed=5,
                                                backend="reference"), logits, g)
    y2, g2 = _value_and_grad(lambda x: rk.straight_through(x, hard=hard, seed=5, backend="reference"),
                             logits, g)
    assert torch.equal(y1, y2)
    assert torch.equal(g1, g2)


def test_redge_max_two_steps_t1_one_is_reinmax_tau_one():
    torch.manual_seed(4)
    logits = torch.randn(8, 11, dtype=torch.float64)
    g = torch.randn(8, 11, dtype=torch.float64)
    y1, g1 = _value_and_grad(lambda x: rk.redge_max(x, n_steps=2, t_1=1.0, seed=6, backend="reference"),
                             logits, g)
    y2, g2 = _value_and_grad(lambda x: rk.reinmax(x, tau=1.0, seed=6, backend="reference"), logits, g)
    assert torch.equal(y1, y2)
    assert g1.abs().sum() > 0  # the authors' code gives no gradient here
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_redge_max_differs_from_redge_only_by_the_reinmax_term():
    """ReDGE-Max grad = ReDGE grad - r_1 + 1/2 (r_1 + <g, D> D) with r_1 = p_1 (g - <g, p_1>)."""
    torch.manual_seed(5)
    logits = torch.randn(6, 9, dtype=torch.float64)
    g = torch.randn(6, 9, dtype=torch.float64)
    kw = dict(n_steps=4, t_1=0.6, seed=21, backend="reference")
    y, g_max = _value_and_grad(lambda x: rk.redge_max(x, **kw), logits, g)
    _, g_redge = _value_and_grad(lambda x: rk.redge(x, **kw), logits, g)
    p1 = rk.redge(logits, hard=False, **kw)
    r1 = p1 * (g - (g * p1).sum(-1, keepdim=True))
    d = y - p1
    want = g_redge - r1 + 0.5 * (r1 + (g * d).sum(-1, keepdim=True) * d)
    torch.testing.assert_close(g_max, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kw", [("redge", dict(n_steps=4, t_1=0.4)),
                                     ("redge_cov", dict(n_steps=4, t_1=0.6)),
                                     ("st", {}), ("gumbel", dict(tau=0.8))])
def test_gradcheck_soft_outputs_fp64(name, kw):
    torch.manual_seed(6)
    x = (torch.randn(3, 5, dtype=torch.float64) * 0.5).requires_grad_(True)
    fn = lambda t: rk.SAMPLERS[name](t, hard=False, seed=17, backend="reference", **kw)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-7)


def test_redge_forward_follows_the_ddim_recursion_written_out():
    """Independent re-derivation of docs/SPEC.md eq. 10-11 with explicit alphas/sigmas (no c/a/b table)."""
    torch.manual_seed(7)
    phi = torch.randn(4, 6, dtype=torch.float64)
    n, t1 = 4, 0.35
    alphas = [1.0] + torch.linspace(1 - t1, 1e-4, n - 1, dtype=torch.float64).tolist()
    sigmas = [1 - a for a in alphas]
    x = rk.sample_noise(phi.shape, 99).z.double()
    for k in range(n - 1, 0, -1):
        x0 = torch.softmax(phi + alphas[k] * x / sigmas[k] ** 2, -1)
        if k == 1:
            break
        x = alphas[k - 1] * x0 + sigmas[k - 1] * (x - alphas[k] * x0) / sigmas[k]
    soft = rk.redge(phi, n_steps=n, t_1=t1, hard=False, seed=99, backend="reference")
    torch.testing.assert_close(soft, x0, rtol=1e-12, atol=1e-12)
    y, idx = rk.sample("redge", phi, schedule=linear_schedule(n, t1), seed=99, backend="reference",
                       return_index=True)
    g = rk.sample_noise(phi.shape, 99).gumbel.double()
    assert torch.equal(idx, (torch.log(x0) + g).argmax(-1))
    assert torch.equal(y, torch.nn.functional.one_hot(idx, 6).double())


def test_explicit_time_grid_equals_linear_schedule_when_it_is_the_same_grid():
    s = linear_schedule(4, 0.3)
    times = [1.0 - a for a in s.alphas]
    logits = torch.randn(3, 5)
    a = rk.redge(logits, times=times, seed=1, hard=False, backend="reference")
    b = rk.redge(logits, n_steps=4, t_1=0.3, seed=1, hard=False, backend="reference")
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    paper_grid = [k / 4 for k in range(5)]
    c = rk.redge(logits, times=paper_grid, seed=1, hard=False, backend="reference")
    assert not torch.allclose(a, c)


# --------------------------------------------------------------------------------------------
# Statistics by exact enumeration.
# --------------------------------------------------------------------------------------------
LOGITS_3x3 = torch.tensor([[0.3, -1.2, 0.8], [2.0, 0.0, -0.5], [-0.7, -0.7, 1.5]], dtype=torch.float64)


@pytest.mark.parametrize("name,kw", [("st", {}), ("gumbel", dict(tau=0.5)), ("reinmax", dict(tau=1.0)),
                                     ("redge", dict(n_steps=2, t_1=1.0))])
def test_hard_samples_follow_softmax_chi_square(name, kw):
    from scipy import stats
    n_rep = 20000
    logits = LOGITS_3x3.expand(n_rep, 3, 3)
    _, idx = rk.sample(name if name != "redge" else "redge", logits, seed=2024, backend="reference",
                       return_index=True,
                       **({"schedule": linear_schedule(**kw)} if name == "redge" else kw))
    p = LOGITS_3x3.softmax(-1)
    for r in range(3):
        counts = torch.bincount(idx[:, r], minlength=3).double()
        assert stats.chisquare(counts.numpy(), (n_rep * p[r]).numpy()).pvalue > 1e-3


def test_redge_forward_samples_are_biased_by_design():
    """docs/SPEC.md: few deterministic DDIM steps are a biased sampler (Bernoulli p = 0.18 at n=3, t_1=0.1
    is essentially never drawn)."""
    p = 0.18
    logits = torch.tensor([math.log(1 - p), math.log(p)], dtype=torch.float64).expand(20000, 2)
    _, idx = rk.sample("redge", logits, schedule=linear_schedule(3, 0.1), seed=1, backend="reference",
                       return_index=True)
    freq = idx.double().mean().item()
    assert freq < 0.01  # an exact sampler would give 0.18 +- 0.003


def _exact_grad(logits, f):
    """grad_theta E_{X ~ prod_l Cat(softmax theta_l)}[f(X)] by enumerating all K^L configurations."""
    L, K = logits.shape
    theta = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    total = 0.0
    for cfg in itertools.product(range(K), repeat=L):
        x = torch.nn.functional.one_hot(torch.tensor(cfg), K).to(logits.dtype)
        total = total + f(x) * torch.exp(sum(logp[l, cfg[l]] for l in range(L)))
    (grad,) = torch.autograd.grad(total, theta)
    return grad


def _estimator_expectation(name, logits, f, n_rep=3000, **kw):
    """E[estimator gradient] exactly: the estimator's gradient is a deterministic function of the
    sampled configuration, so group replicates by configuration and weight by its probability."""
    L, K = logits.shape
    x = logits.expand(n_rep, L, K).clone().requires_grad_(True)
    y, idx = rk.sample(name, x, seed=77, backend="reference", return_index=True, **kw)
    torch.stack([f(y[i]) for i in range(n_rep)]).sum().backward()
    logp = torch.log_softmax(logits, -1)
    expect = torch.zeros_like(logits)
    for cfg in itertools.product(range(K), repeat=L):
        rows = (idx == torch.tensor(cfg)).all(-1)
        assert rows.any(), "every configuration must be drawn at least once"
        grads = x.grad[rows]
        torch.testing.assert_close(grads, grads[:1].expand_as(grads), rtol=1e-9, atol=1e-12)
        expect += torch.exp(sum(logp[l, cfg[l]] for l in range(L))) * grads[0]
    return expect


LOGITS_2x3 = torch.tensor([[0.2, -0.4, 0.5], [-0.3, 0.6, 0.0]], dtype=torch.float64)
W_LIN = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]], dtype=torch.float64)
A_QUAD = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7], [-1.2, 0.8, 0.3]], dtype=torch.float64)


def f_linear(y):
    return (W_LIN * y).sum()


def f_quadratic(y):
    return y[0] @ A_QUAD @ y[1] + (W_LIN * y).sum() + 0.7 * (y[0] * y[1]).sum() ** 2


def test_exact_gradient_by_enumeration_matches_closed_form_for_linear_f():
    p = LOGITS_2x3.softmax(-1)
    cov_w = p * (W_LIN - (W_LIN * p).sum(-1, keepdim=True))
    torch.testing.assert_close(_exact_grad(LOGITS_2x3, f_linear), cov_w, rtol=1e-12, atol=1e-12)


def test_hard_straight_through_is_unbiased_for_linear_f():
    exact = _exact_grad(LOGITS_2x3, f_linear)
    torch.testing.assert_close(_estimator_expectation("st", LOGITS_2x3, f_linear), exact,
                               rtol=1e-10, atol=1e-12)


def test_reinmax_is_unbiased_for_quadratic_f_and_st_is_not():
    exact = _exact_grad(LOGITS_2x3, f_quadratic)
    rm = _estimator_expectation("reinmax", LOGITS_2x3, f_quadratic, tau=1.0)
    torch.testing.assert_close(rm, exact, rtol=1e-10, atol=1e-12)
    st = _estimator_expectation("st", LOGITS_2x3, f_quadratic)
    assert (st - exact).abs().max() > 0.02  # exact expectations: no sampling noise


def test_redge_max_two_steps_is_unbiased_for_quadratic_f():
    exact = _exact_grad(LOGITS_2x3, f_quadratic)
    est = _estimator_expectation("redge_max", LOGITS_2x3, f_quadratic, schedule=linear_schedule(2, 1.0))
    torch.testing.assert_close(est, exact, rtol=1e-10, atol=1e-12)


def test_redge_gradient_vanishes_as_t1_goes_to_zero():
    """Paper Prop. 3.1: as t_1 -> 0 at fixed steps the sampling map becomes piecewise constant, so
    the pathwise gradient is 0 for almost every noise draw: the fraction of draws with a nonzero
    gradient falls to 0 (the mean norm first grows with c_1 = alpha_1 / sigma_1^2, then collapses)."""
    torch.manual_seed(8)
    logits = torch.randn(1, 6, dtype=torch.float64).expand(2000, 6)
    g = torch.randn(2000, 6, dtype=torch.float64)
    alive, norms = [], []
    for t1 in [0.5, 0.1, 0.05, 0.02, 0.01, 0.002]:
        _, grad = _value_and_grad(lambda x: rk.redge(x, n_steps=3, t_1=t1, seed=4, backend="reference"),
                                  logits, g)
        n = grad.norm(dim=-1)
        alive.append((n > 1e-6).double().mean().item())
        norms.append(n.mean().item())
    assert alive[0] == 1.0
    assert all(a >= b for a, b in zip(alive, alive[1:])), alive
    assert alive[-1] == 0.0 and norms[-1] < 1e-12, (alive, norms)
