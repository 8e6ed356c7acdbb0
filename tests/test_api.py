"""Public API contract: drop-in names, shapes, layouts, dtypes, masking, NaN isolation,
reproducibility, every backend agreeing with the reference, and every error message."""

import inspect
import os
import warnings

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _backends

# REDGE_TEST_BACKENDS=reference,cpu restricts the backends under test (default: all available).
ALL_BACKENDS = [b for b in os.environ.get("REDGE_TEST_BACKENDS", "").split(",") if b] or rk.available_backends()
# Triton on CPU runs in its (slow) interpreter: there it is checked against the reference below and
# in tests/test_triton_*.py, and left out of the wide layout/dtype/mask grids.
INTERPRETED = not torch.cuda.is_available()
BACKENDS = [b for b in ALL_BACKENDS if not (b == "triton" and INTERPRETED)]
HARD_METHODS = ["st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max"]
SOFT_METHODS = ["st", "gumbel", "redge", "redge_cov"]
KW = {"st": {}, "gumbel": dict(tau=0.7), "reinmax": dict(tau=1.3), "redge": dict(n_steps=4, t_1=0.4),
      "redge_cov": dict(n_steps=4, t_1=0.6), "redge_max": dict(n_steps=3, t_1=0.5)}


def call(method, x, hard=True, **kw):
    return rk.SAMPLERS[method](x, hard=hard, **KW[method], **kw)


def value_and_grad(method, x, g, hard=True, **kw):
    x = x.detach().clone().requires_grad_(True)
    y = call(method, x, hard=hard, **kw)
    (y.float() * g).sum().backward()
    return y.detach(), x.grad


# ----------------------------------------------------------------------------- drop-in surface
def test_sampler_names_and_signatures_match_the_authors_package():
    redge = pytest.importorskip("redge")
    assert set(redge.SAMPLERS) <= set(rk.SAMPLERS)
    for name, theirs in redge.SAMPLERS.items():
        if name == "reindge":  # theirs is a functools.partial over a private helper
            theirs = redge.reindge
        ours = rk.SAMPLERS[name]
        their_params = [p for p in inspect.signature(theirs).parameters if p != "kwargs"]
        our_params = list(inspect.signature(ours).parameters)
        assert our_params[:len(their_params)] == their_params, (name, our_params, their_params)
    assert rk.SAMPLERS["reindge"] is rk.reindge


def test_defaults_follow_the_authors_configs():
    d = lambda f, a: inspect.signature(f).parameters[a].default  # noqa: E731
    assert (d(rk.redge, "n_steps"), d(rk.redge, "t_1")) == (3, 0.5)
    assert (d(rk.redge_cov, "n_steps"), d(rk.redge_cov, "t_1")) == (5, 0.5)
    assert (d(rk.redge_max, "n_steps"), d(rk.redge_max, "t_1")) == (5, 0.5)
    assert d(rk.gumbel_softmax, "tau") == 0.5 and d(rk.reinmax, "tau") == 1.0
    assert all(d(f, "hard") is True for f in rk.SAMPLERS.values())


@pytest.mark.parametrize("method", HARD_METHODS)
def test_returns_plain_exact_one_hot_tensors(method):
    x = torch.randn(3, 4, 9)
    y = call(method, x, seed=1)
    assert type(y) is torch.Tensor and not hasattr(y, "soft")  # the soft sample: return_soft=
    assert y.shape == x.shape and y.dtype == x.dtype
    assert bool(((y == 0) | (y == 1)).all()) and bool((y.sum(-1) == 1).all())


def test_one_call_site_drives_every_sampler():
    x = torch.randn(4, 5)
    for name, f in rk.SAMPLERS.items():
        y = f(x, n_steps=3, t_1=0.5, tau=1.0, seed=0)
        assert y.shape == x.shape
    with pytest.raises(TypeError, match="unexpected keyword"):
        rk.redge(x, temperature=1.0)


# ----------------------------------------------------------------------------- layouts and dtypes
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", HARD_METHODS)
def test_leading_dims_and_layouts_see_the_same_noise(backend, method):
    torch.manual_seed(0)
    base = torch.randn(6, 7)
    g = torch.randn(6, 7)
    y0, g0 = value_and_grad(method, base, g, seed=3, backend=backend)
    y1, g1 = value_and_grad(method, base.reshape(2, 3, 7), g.reshape(2, 3, 7), seed=3, backend=backend)
    assert torch.equal(y1.reshape(6, 7), y0)
    torch.testing.assert_close(g1.reshape(6, 7), g0)
    t = base.t().contiguous().t()  # column-major storage, same values
    assert not t.is_contiguous()
    y2, g2 = value_and_grad(method, t, g, seed=3, backend=backend)
    assert torch.equal(y2, y0)
    torch.testing.assert_close(g2, g0)
    row = torch.randn(1, 7)
    e = row.expand(6, 7)  # stride-0 rows: each row still gets its own noise
    y3 = call(method, e, seed=3, backend=backend)
    y4 = call(method, e.contiguous(), seed=3, backend=backend)
    assert torch.equal(y3, y4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["redge", "redge_cov", "gumbel", "st"])
def test_dtypes_in_and_out(backend, dtype, method):
    torch.manual_seed(1)
    x64 = torch.randn(5, 12, dtype=torch.float64)
    g = torch.randn(5, 12)
    x = x64.to(dtype)
    y, gx = value_and_grad(method, x, g, hard=True, seed=9, backend=backend)
    assert y.dtype == dtype and gx.dtype == dtype
    assert bool(((y == 0) | (y == 1)).all())
    soft = call(method, x, hard=False, seed=9, backend=backend)
    ref = call(method, x.to(torch.float64), hard=False, seed=9, backend="reference")
    assert soft.dtype == dtype
    # Math runs in fp32 or better: the only low-precision error is the final rounding to dtype.
    torch.testing.assert_close(soft.double(), ref, **_tol(dtype))


def _tol(dtype):
    """Low precision: the only error is the final rounding to dtype. fp32 and fp64: the noise is
    float32 on every backend and backends may differ in the last ulp of its log/cos (noise.py), which
    the denoisers amplify by up to c_k: fp32-level tolerances for both."""
    if dtype in (torch.float16, torch.bfloat16):
        eps = torch.finfo(dtype).eps
        return dict(rtol=eps, atol=eps)
    return dict(rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- masks, NaN, extremes
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", HARD_METHODS)
def test_masked_tokens_are_never_sampled_and_get_zero_gradient(backend, method):
    torch.manual_seed(2)
    x = torch.randn(400, 10)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[0, 3, 4, 9]] = True
    x[:, mask] = float("-inf")
    x[:, 5] = 3.0  # masked tokens would win often if they were not masked
    g = torch.randn(400, 10)
    y, gx = value_and_grad(method, x, g, seed=4, backend=backend)
    assert bool((y[:, mask] == 0).all())
    assert bool(torch.isfinite(gx).all()) and bool((gx[:, mask] == 0).all())
    if method in SOFT_METHODS:
        soft = call(method, x, hard=False, seed=4, backend=backend)
        assert bool((soft[:, mask] == 0).all()) and bool(torch.isfinite(soft).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", HARD_METHODS)
def test_empty_and_nan_rows_stay_in_their_row(backend, method):
    torch.manual_seed(3)
    x = torch.randn(5, 8)
    g = torch.randn(5, 8)
    y_clean, g_clean = value_and_grad(method, x, g, seed=6, backend=backend)
    bad = x.clone()
    bad[1] = float("-inf")  # empty row: documented as zeros, zero gradient, index -1
    bad[3, 2] = float("nan")  # poisoned row: NaN there only
    y, gx = value_and_grad(method, bad, g, seed=6, backend=backend)
    _, idx = rk.sample(method, bad, seed=6, backend=backend, return_index=True,
                       **({"schedule": rk.make_schedule(**KW[method])} if "n_steps" in KW[method]
                          else KW[method]))
    keep = [0, 2, 4]
    assert torch.equal(y[keep], y_clean[keep])
    torch.testing.assert_close(gx[keep], g_clean[keep])
    assert bool((y[1] == 0).all()) and bool((gx[1] == 0).all())
    assert bool(torch.isnan(y[3]).all()) and bool(torch.isnan(gx[3]).all())
    assert idx[1] == -1 and idx[3] == -1 and bool((idx[keep] >= 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["redge", "redge_cov", "redge_max"])
def test_tiny_t1_huge_c1_does_not_overflow(backend, method):
    x = torch.randn(16, 50) * 5
    y, gx = value_and_grad(method, x, torch.randn(16, 50), seed=1, backend=backend,
                           **({} if method == "redge_max" else {}))
    y2 = rk.SAMPLERS[method](x, n_steps=5, t_1=1e-4, seed=1, backend=backend)  # c_1 ~ 1e8
    assert bool(torch.isfinite(y2).all()) and bool((y2.sum(-1) == 1).all())
    assert bool(torch.isfinite(gx).all())


def test_single_category_and_empty_batch():
    y = rk.redge(torch.randn(4, 1), seed=0)
    assert torch.equal(y, torch.ones(4, 1))
    e = rk.redge(torch.randn(0, 5), seed=0)
    assert e.shape == (0, 5)


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("method", HARD_METHODS)
def test_seed_generator_and_manual_seed_reproduce(method):
    x = torch.randn(7, 6)
    g = torch.randn(7, 6)
    a = value_and_grad(method, x, g, seed=123)
    b = value_and_grad(method, x, g, seed=123)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.manual_seed(5)
    c = call(method, x)
    torch.manual_seed(5)
    d = call(method, x)
    assert torch.equal(c, d)
    gen = torch.Generator().manual_seed(11)
    e = call(method, x, generator=gen)
    gen.manual_seed(11)
    assert torch.equal(call(method, x, generator=gen), e)
    outs = {tuple(call(method, torch.zeros(50, 6), seed=s).argmax(-1).tolist()) for s in range(4)}
    assert len(outs) == 4  # different seeds give different samples


@pytest.mark.parametrize("backend", [b for b in ALL_BACKENDS if b != "reference"])
@pytest.mark.parametrize("method,hard", [(m, True) for m in HARD_METHODS] +
                         [(m, False) for m in SOFT_METHODS])
def test_fused_backend_agrees_with_reference(backend, method, hard):
    torch.manual_seed(4)
    x = torch.randn(3, 5, 37)
    g = torch.randn(3, 5, 37)
    y_ref, g_ref = value_and_grad(method, x, g, hard=hard, seed=77, backend="reference")
    y, gx = value_and_grad(method, x, g, hard=hard, seed=77, backend=backend)
    if hard:
        assert torch.equal(y, y_ref)
    else:
        torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, g_ref)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call_, match", [
    (lambda x: rk.redge(x, n_steps=1), "n_steps must be >= 2"),
    (lambda x: rk.redge(x, n_steps=2.0), "n_steps must be an int"),
    (lambda x: rk.redge(x, t_1=0.0), r"t_1 must be in \[1e-06, 1\]"),
    (lambda x: rk.redge_cov(x, t_1=1.5), r"t_1 must be in \[1e-06, 1\]"),
    (lambda x: rk.redge(x, t_1=float("nan")), r"t_1 must be in \[1e-06, 1\]"),
    (lambda x: rk.gumbel_softmax(x, tau=0.0), "tau must be a finite float > 0"),
    (lambda x: rk.reinmax(x, tau=-1.0), "tau must be a finite float > 0"),
    (lambda x: rk.redge(x, backend="cuda"), "unknown backend"),
    (lambda x: rk.sample("redge_typo", x), "unknown sampler"),
    (lambda x: rk.redge(x, seed=-3), "seed must be in"),
    (lambda x: rk.redge(x, seed=1, generator=torch.Generator()), "either seed= or generator="),
    (lambda x: rk.redge(x, times=[0.0, 0.5, 0.4]), "strictly increasing"),
    (lambda x: rk.redge(x, times=[0.1, 0.5]), "start at t_0 = 0"),
    (lambda x: rk.SamplerConfig("nope"), "unknown sampler"),
    (lambda x: rk.SamplerConfig("st", tau=1.0), "takes no hyperparameter"),
])
def test_bad_arguments_raise_clear_errors(call_, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call_(torch.randn(2, 3))


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 3, dtype=torch.int64), "logits must be float16, bfloat16, float32 or float64"),
    (torch.zeros(2, 3, dtype=torch.complex64), "logits must be float16"),
    (torch.zeros(2, 0), "K must be >= 1"),
    (torch.tensor(1.0), "at least one dim"),
    ([[0.0, 1.0]], "must be a torch.Tensor"),
])
@pytest.mark.parametrize("method", HARD_METHODS)
def test_bad_logits_raise_clear_errors(bad, match, method):
    with pytest.raises((ValueError, TypeError), match=match):
        call(method, bad)


def test_generator_on_another_device_is_rejected():
    x = torch.zeros(2, 3, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu but logits are on meta"):
        rk.redge(x, generator=torch.Generator())


def test_soft_reinmax_and_redge_max_are_not_defined():
    for f in (rk.reinmax, rk.redge_max):
        with pytest.raises(NotImplementedError, match="hard=False is not defined"):
            f(torch.randn(2, 3), hard=False)


def test_unavailable_fused_backend_is_an_error_and_auto_warns_once(monkeypatch):
    monkeypatch.setattr(_backends, "_usable", lambda name: (False, "not built in this test"))
    monkeypatch.setattr(_backends, "_warned", set())
    with pytest.raises(RuntimeError, match="backend='cpu' is not available: not built in this test"):
        rk.redge(torch.randn(2, 3), backend="cpu")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rk.redge(torch.randn(2, 3))
        rk.redge(torch.randn(2, 3))
    assert sum("reference backend" in str(x.message) for x in w) == 1


# ----------------------------------------------------------------------------- registry
def test_sampler_config_and_sweep():
    cfg = rk.SamplerConfig("redge", t_1=0.3)
    assert cfg.kwargs == {"n_steps": 3, "t_1": 0.3}
    assert cfg.label == "redge(n_steps=3,t_1=0.3)"
    x = torch.randn(4, 5)
    assert torch.equal(cfg(x, seed=2), rk.redge(x, n_steps=3, t_1=0.3, seed=2))
    grid = rk.sweep("redge_cov", n_steps=[3, 5], t_1=[0.1, 0.5, 0.9])
    assert len(grid) == 6 and len(set(grid)) == 6
    assert rk.SamplerConfig("gumbel").kwargs == {"tau": 0.5}
    assert rk.SamplerConfig("reindge") == rk.SamplerConfig("reindge", n_steps=5, t_1=0.5)
