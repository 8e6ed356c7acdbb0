"""The autograd table of the README, cell by cell, on every backend (``conftest.backend``) and
every estimator (``conftest.CASES``): reverse mode, forward mode (``torch.autograd.forward_ad`` and
``torch.func.jvp``), double backward, ``torch.func.grad`` / ``jacrev`` / ``vmap`` / ``hessian``,
``torch.compile(fullgraph=True)`` and in-place modification of the input after the forward.

Oracles: the reference backend (plain autograd over the paper's formulas) on the same seed, the
transpose identity <J v, u> = <v, J^T u> between a backend's own forward and reverse modes, and
fp64 central finite differences of a backend's own gradient map (double backward) and of the
soft samples (forward mode). Same seed: samples compare exactly.
"""

import pytest
import torch
from torch.autograd import forward_ad as fwAD

import redge_kernels as rk
from conftest import CASE_KW, device_of, run

SEED = 5


def _inputs(backend, dtype=torch.float32, rows=3, k=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dev = device_of(backend)
    x, v, u, w = (torch.randn(rows, k, generator=gen, dtype=dtype).to(dev) for _ in range(4))
    return x, v, u, w


def _f(method, hard, backend):
    return lambda t: run(method, t, hard=hard, backend=backend, seed=SEED)


def _vjp(f, x, u):
    xx = x.detach().clone().requires_grad_(True)
    y = f(xx)
    (g,) = torch.autograd.grad(y, xx, u)
    return y.detach(), g


def _fw_tangent(f, x, v):
    with fwAD.dual_level():
        y = f(fwAD.make_dual(x, v))
        t = fwAD.unpack_dual(y).tangent
    assert t is not None, "forward mode gave no tangent"
    return t


def _dot(a, b):
    return float((a.double() * b.double()).sum())


# ----------------------------------------------------------------------------- reverse mode
def test_reverse_mode_matches_reference(backend, case):
    method, hard = case
    x, _, u, _ = _inputs(backend)
    y, g = _vjp(_f(method, hard, backend), x, u)
    y_ref, g_ref = _vjp(_f(method, hard, "reference"), x.cpu(), u.cpu())
    if hard:
        assert torch.equal(y.cpu(), y_ref)  # samples: identical
    else:
        torch.testing.assert_close(y.cpu(), y_ref)
    torch.testing.assert_close(g.cpu(), g_ref)  # gradients: fp32 rounding
    assert float(g.abs().max()) > 0


# ----------------------------------------------------------------------------- forward mode
def test_forward_ad_tangent_is_the_transpose_of_the_backward(backend, case):
    method, hard = case
    x, v, u, _ = _inputs(backend)
    f = _f(method, hard, backend)
    t = _fw_tangent(f, x, v)
    assert t.shape == x.shape and float(t.abs().max()) > 0  # never a silent zero
    _, g = _vjp(f, x, u)
    assert _dot(t, u) == pytest.approx(_dot(v, g), rel=1e-5, abs=1e-6)  # <J v, u> = <v, J^T u>
    t_ref = _fw_tangent(_f(method, hard, "reference"), x.cpu(), v.cpu())
    torch.testing.assert_close(t.cpu(), t_ref)


def test_func_jvp_matches_forward_ad(backend, case):
    method, hard = case
    x, v, _, _ = _inputs(backend)
    f = _f(method, hard, backend)
    y, t = torch.func.jvp(f, (x,), (v,))
    assert torch.equal(y, f(x))
    torch.testing.assert_close(t.cpu(), _fw_tangent(_f(method, hard, "reference"), x.cpu(), v.cpu()))


@pytest.mark.parametrize("method", ["st", "gumbel", "redge", "redge_cov"])
def test_soft_tangent_equals_fp64_finite_differences(method):
    # Independent of autograd: the soft sample is a smooth function of phi at a fixed seed.
    for backend in [b for b in ("reference", "cpu") if b in rk.available_backends()]:
        x, v, _, _ = _inputs(backend, dtype=torch.float64)
        f = _f(method, False, backend)
        eps = 1e-6
        fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
        torch.testing.assert_close(_fw_tangent(f, x, v), fd, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- double backward
def _second_order(f, x, u, w):
    """(d/dx <J(x)^T u, w>, d/du <J(x)^T u, w>) through ``create_graph=True``."""
    xx = x.detach().clone().requires_grad_(True)
    uu = u.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad((f(xx) * uu).sum(), xx, create_graph=True)
    return torch.autograd.grad((g * w).sum(), (xx, uu))


def test_double_backward_matches_reference(backend, case):
    method, hard = case
    x, _, u, w = _inputs(backend)
    hx, hu = _second_order(_f(method, hard, backend), x, u, w)
    hx_ref, hu_ref = _second_order(_f(method, hard, "reference"), x.cpu(), u.cpu(), w.cpu())
    torch.testing.assert_close(hx.cpu(), hx_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hu.cpu(), hu_ref)
    assert float(hx.abs().max()) > 0 and float(hu.abs().max()) > 0  # never a silent zero
    # d/du <J^T u, w> = J w: the forward-mode tangent along w.
    torch.testing.assert_close(hu, _fw_tangent(_f(method, hard, backend), x, w))


@pytest.mark.parametrize("case", [("st", True), ("gumbel", False), ("reinmax", True),
                                  ("redge", True), ("redge_cov", True), ("redge_max", True)],
                         ids=lambda c: f"{c[0]}-{'hard' if c[1] else 'soft'}")
def test_double_backward_is_the_derivative_of_the_gradient_fp64(case):
    """The second derivative is that of the backward's own output: central differences of each
    fused backend's fp64 gradient map (samples unchanged by the perturbation)."""
    method, hard = case
    for backend in [b for b in ("reference", "cpu") if b in rk.available_backends()]:
        x, v, u, w = _inputs(backend, dtype=torch.float64)
        f = _f(method, hard, backend)
        hx, _ = _second_order(f, x, u, w)
        eps = 1e-6
        (yp, gp), (ym, gm) = _vjp(f, x + eps * v, u), _vjp(f, x - eps * v, u)
        if hard:
            assert torch.equal(yp, ym)
        fd = _dot((gp - gm) / (2 * eps), w)
        assert _dot(hx, v) == pytest.approx(fd, rel=1e-6, abs=1e-9), backend


# ----------------------------------------------------------------------------- torch.func
def test_func_grad_jacrev_and_vmap(backend, case):
    method, hard = case
    x, _, u, _ = _inputs(backend, rows=2, k=5)  # jacrev runs one backward per output element
    f = _f(method, hard, backend)
    _, g = _vjp(f, x, u)
    torch.testing.assert_close(torch.func.grad(lambda t: (f(t) * u).sum())(x), g)
    jac = torch.func.jacrev(f)(x)  # [R, K, R, K]
    torch.testing.assert_close(torch.einsum("abij,ab->ij", jac, u), g)
    xs = torch.stack([x, x.flip(-1)])
    ys = torch.func.vmap(f)(xs)
    for b in range(2):  # vmap(f)(X)[b] == f(X[b]): each element keeps its own rows' noise
        assert torch.equal(ys[b], f(xs[b]))


def test_func_hessian_matches_reference(backend):
    """``torch.func.hessian`` (forward over reverse) and ``jacrev`` of ``jacrev`` of a loss."""
    x, _, u, _ = _inputs(backend, rows=2, k=5)

    def loss(be):
        return lambda t: (run("redge", t, hard=True, backend=be, seed=SEED) * u).sum()
    want = torch.func.hessian(loss("reference"))(x.cpu())
    assert float(want.abs().max()) > 0
    torch.testing.assert_close(torch.func.hessian(loss(backend))(x).cpu(), want,
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.func.jacrev(torch.func.jacrev(loss(backend)))(x).cpu(), want,
                               rtol=1e-4, atol=1e-5)


#: Nested transforms with a forward level inside (``hessian`` above is forward over reverse).
_NESTED = {"jacrev-of-jacfwd": lambda f: torch.func.jacrev(torch.func.jacfwd(f)),
           "jacfwd-of-jacfwd": lambda f: torch.func.jacfwd(torch.func.jacfwd(f))}
#: Estimators whose tangent, on every backend, comes from a hand-written first-order rule:
#: forward over forward is refused by name for them.
_FIRST_ORDER_TANGENT = {"reinmax", "redge_max"}


@pytest.mark.parametrize("nest", sorted(_NESTED))
def test_nested_transforms_with_a_forward_level_match_the_reference(backend, case, nest):
    """jacrev of jacfwd and jacfwd of jacfwd of a loss equal the reference's jacrev of jacrev
    (its double backward, itself checked against fp64 finite differences above), with the
    samples unchanged; or, for forward over forward where the tangent rule is first order, a
    clear error naming the feature. Never a silent zero."""
    method, hard = case
    x, v, u, w = _inputs(backend, rows=2, k=4)
    f = _f(method, hard, backend)

    def loss(be):
        return lambda t: (run(method, t, hard=hard, backend=be, seed=SEED) * u).sum()
    want = torch.func.jacrev(torch.func.jacrev(loss("reference")))(x.cpu())
    assert float(want.abs().max()) > 0
    if nest == "jacfwd-of-jacfwd" and method in _FIRST_ORDER_TANGENT:
        with pytest.raises(NotImplementedError,
                           match=f"nested forward mode .* not supported for {method}"):
            _NESTED[nest](loss(backend))(x)
        return
    torch.testing.assert_close(_NESTED[nest](loss(backend))(x).cpu(), want, rtol=1e-4, atol=1e-5)
    if nest == "jacfwd-of-jacfwd":  # the values under two forward levels are the plain call's
        y, _ = torch.func.jvp(lambda a: torch.func.jvp(f, (a,), (v,))[0], (x,), (w,))
        assert torch.equal(y, f(x))


def test_functorch_forward_mode_on_a_direct_op_call_is_a_clear_error():
    if "cpu" not in rk.available_backends():
        pytest.skip("needs the C++ extension")
    from redge_kernels._constants import METHOD_IDS
    coefs = rk.make_schedule(3, 0.5).table("cpu")
    seed = torch.tensor(1)

    def f(t):
        return torch.ops.redge_kernels.fwd(t, seed, coefs, METHOD_IDS["redge"], False, 1.0)[0]
    x = torch.randn(2, 5)
    with pytest.raises(NotImplementedError, match="functorch forward mode"):
        torch.func.jvp(f, (x,), (torch.randn(2, 5),))
    # The same op through the public function: supported.
    torch.func.jvp(lambda t: rk.redge(t, hard=False, seed=1, backend="cpu"), (x,), (x,))


# ----------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("method,hard", [("redge_max", True), ("gumbel", False)])
def test_compile_fullgraph_with_a_seed_tensor(backend, method, hard):
    torch._dynamo.reset()
    x, _, u, _ = _inputs(backend)
    seed = torch.tensor(SEED, device=x.device)

    def f(t, s):
        return run(method, t, hard=hard, backend=backend, seed=s)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    y, g = _vjp(lambda t: compiled(t, seed), x, u)
    y_eager, g_eager = _vjp(lambda t: f(t, seed), x, u)
    assert torch.equal(y, y_eager)
    torch.testing.assert_close(g, g_eager)
    y2 = compiled(x, torch.tensor(SEED + 1, device=x.device))  # a new seed: same graph
    assert torch.equal(y2, f(x, torch.tensor(SEED + 1, device=x.device)))


def test_compile_with_generator_is_a_clear_error(backend):
    """fullgraph=True: dynamo's own error (a RuntimeError) carrying the message that names the
    fix; without fullgraph, dynamo breaks the graph there and the call draws from the generator
    exactly as in eager mode."""
    x, _, _, _ = _inputs(backend, rows=2, k=5)
    gen = torch.Generator(x.device).manual_seed(0)
    torch._dynamo.reset()
    compiled = torch.compile(lambda t: run("redge", t, backend=backend, generator=gen),
                             fullgraph=True, backend="aot_eager")
    with pytest.raises(RuntimeError, match="generator= cannot be used under torch.compile"):
        compiled(x)
    assert torch.equal(gen.get_state(), torch.Generator(x.device).manual_seed(0).get_state())
    torch._dynamo.reset()
    broken = torch.compile(lambda t: run("redge", t, backend=backend, generator=gen) * 2,
                           backend="aot_eager")
    got = [broken(x), broken(x)]
    gen.manual_seed(0)
    assert all(torch.equal(g, run("redge", x, backend=backend, generator=gen) * 2) for g in got)


# ----------------------------------------------------------------------------- in-place input
def test_inplace_change_of_the_input_after_the_forward(backend, case):
    """Fused backends recompute from the saved logits and refuse; the reference keeps what its
    backward needs and gives the gradient of the values seen at the forward. Never silently the
    gradient of other values."""
    method, hard = case
    x, _, u, _ = _inputs(backend)
    _, clean = _vjp(_f(method, hard, backend), x, u)
    xx = x.detach().clone().requires_grad_(True)
    h = xx * 1.0
    y = _f(method, hard, backend)(h)
    h.add_(1.0)
    if backend == "reference":
        try:
            (g,) = torch.autograd.grad(y, xx, u)
        except RuntimeError as e:
            assert "modified by an inplace operation" in str(e)
        else:
            torch.testing.assert_close(g, clean)
    else:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            torch.autograd.grad(y, xx, u)


def test_no_grad_and_inference_mode_give_plain_tensors(backend):
    x, _, _, _ = _inputs(backend)
    x.requires_grad_(True)
    y = run("redge", x, backend=backend, seed=SEED)
    with torch.no_grad():
        y0 = run("redge", x, backend=backend, seed=SEED)
    with torch.inference_mode():
        y1 = run("redge", x.detach(), backend=backend, seed=SEED)
    assert y.requires_grad and y.grad_fn is not None
    for t in (y0, y1):
        assert not t.requires_grad and t.grad_fn is None
        assert torch.equal(t, y.detach())


def test_retain_graph_and_the_index_output(backend):
    x, _, u, _ = _inputs(backend)
    x.requires_grad_(True)
    y, index = rk.sample("redge", x, schedule=rk.make_schedule(3, 0.5), seed=2, backend=backend,
                         return_index=True)
    assert not index.requires_grad and index.dtype == torch.int64
    assert torch.equal(y.argmax(-1), index)
    (y * u).sum().backward(retain_graph=True)
    g1 = x.grad.clone()
    (y * u).sum().backward()
    torch.testing.assert_close(x.grad, 2 * g1)


def test_case_table_covers_every_defined_estimator():
    from conftest import CASES
    assert {m for m, _ in CASES} == set(rk.SAMPLERS) - {"reindge"}
    assert set(CASE_KW) == {m for m, _ in CASES}


def test_vmap_draws_seeds_as_its_randomness_mode_says(backend):
    """Without ``seed=``: 'same' draws one seed for the batch, 'different' one per element (the
    same draws on every backend), 'error' refuses the draw."""
    x, _, _, _ = _inputs(backend, rows=2, k=5)
    xs = torch.stack([x, x, x])

    def f(be):
        return lambda t: run("redge", t, backend=be)
    for mode in ("same", "different"):
        torch.manual_seed(0)
        ys = torch.func.vmap(f(backend), randomness=mode)(xs)
        torch.manual_seed(0)
        assert torch.equal(ys.cpu(), torch.func.vmap(f("reference"), randomness=mode)(xs.cpu()))
        if mode == "same":
            assert torch.equal(ys[0], ys[1]) and torch.equal(ys[1], ys[2])
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(f(backend))(xs)
