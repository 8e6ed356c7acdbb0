"""Fused sample-and-embed (``rk.sample_embed``; docs/SPEC.md section 11) against the unfused
composition ``rk.<estimator>(logits, seed=s) @ W``: identical indices, the values (hard: bitwise)
and both gradients to the dtype's tolerance, on every backend; chunking (chunks that do not divide
R), leading dims, several matrices, -inf tokens, empty and poisoned rows, bf16; the ops'
``row_start`` / ``write_y`` arguments; opcheck; torch.compile; fp64 gradcheck; argument errors."""

import pytest
import torch

import redge_kernels as rk
from redge_kernels import embed, reference
from redge_kernels._constants import METHOD_IDS
from redge_kernels.schedule import linear_schedule

HAS_CPU = "cpu" in rk.available_backends()
HAS_TRITON = "triton" in rk.available_backends()
needs_cpu = pytest.mark.skipif(not HAS_CPU, reason="needs the C++ extension")

HP = {"st": {}, "gumbel": {"tau": 0.7}, "reinmax": {"tau": 1.3}, "redge": {"n_steps": 4, "t_1": 0.6},
      "redge_cov": {"n_steps": 3, "t_1": 0.5}, "redge_max": {"n_steps": 3, "t_1": 0.8}}
UNFUSED = {"st": rk.straight_through, "gumbel": rk.gumbel_softmax, "reinmax": rk.reinmax,
           "redge": rk.redge, "redge_cov": rk.redge_cov, "redge_max": rk.redge_max}
CASES = [(m, h) for m in HP for h in (True, False) if h or m not in ("reinmax", "redge_max")]


def _backends():
    out = ["reference"]
    out += ["cpu"] if HAS_CPU else []
    return out


def _logits(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 2.0
    x[..., 3] = float("-inf")  # a masked token in every row
    x[..., -2] = float("-inf")
    return x.to(dtype)


def _weights(k, dims, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(k, d, generator=g).to(dtype) for d in dims]


def _index_of(y):
    """The sampled index of a one-hot sample (-1 where the row is zero or NaN)."""
    ok = (y == 1).sum(-1) == 1
    return torch.where(ok, y.argmax(-1), torch.full_like(y.argmax(-1), -1))


def _run_fused(x, ws, method, hard, backend, **kw):
    xx = x.clone().requires_grad_(True)
    wws = [w.clone().requires_grad_(True) for w in ws]
    outs, index = rk.sample_embed(xx, wws, method, hard, seed=7, backend=backend,
                                  return_index=True, **HP[method], **kw)
    gs = _cotangents(outs)
    torch.autograd.backward(outs, gs)
    return [o.detach() for o in outs], index, xx.grad, [w.grad for w in wws], gs


def _run_unfused(x, ws, method, hard, backend, gs):
    xx = x.clone().requires_grad_(True)
    wws = [w.clone().requires_grad_(True) for w in ws]
    y = UNFUSED[method](xx, hard=hard, seed=7, backend=backend, **HP[method])
    outs = [y @ w for w in wws]
    torch.autograd.backward(outs, gs)
    y_hard = UNFUSED[method](x, hard=True, seed=7, backend=backend, **HP[method])
    return [o.detach() for o in outs], _index_of(y_hard), xx.grad, [w.grad for w in wws]


def _cotangents(outs):
    g = torch.Generator().manual_seed(5)
    return [torch.randn(o.shape, generator=g).to(o.dtype) for o in outs]


def _compare(fused, unfused, hard, **tol):
    outs, index, gx, gws, _ = fused
    outs_u, index_u, gx_u, gws_u = unfused
    assert torch.equal(index, index_u)
    for o, ou in zip(outs, outs_u):
        if hard:
            assert torch.equal(o, ou) or torch.allclose(o, ou, equal_nan=True, rtol=0, atol=0)
        else:
            torch.testing.assert_close(o, ou, equal_nan=True, **tol)
    torch.testing.assert_close(gx, gx_u, equal_nan=True, **tol)
    for g, gu in zip(gws, gws_u):
        torch.testing.assert_close(g, gu, equal_nan=True, **tol)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("n_weights", [1, 2])
@pytest.mark.parametrize("method,hard", CASES)
def test_matches_unfused_composition(backend, n_weights, method, hard):
    x = _logits((3, 5, 37))
    ws = _weights(37, [8, 3][:n_weights])
    # 15 rows in chunks of 4 (the last one 3 rows): the budget is one [4, K] fp32 buffer
    fused = _run_fused(x, ws, method, hard, backend, memory_budget=4 * 37 * 4)
    assert fused[0][0].shape == (3, 5, 8) and fused[1].shape == (3, 5)
    _compare(fused, _run_unfused(x, ws, method, hard, backend, fused[4]), hard)


@pytest.mark.skipif(not HAS_TRITON, reason="needs triton (interpreter or GPU)")
@pytest.mark.parametrize("method,hard", CASES)
def test_triton_matches_unfused_composition(method, hard):
    x = _logits((2, 3, 20), seed=3)
    ws = _weights(20, [5, 2])
    fused = _run_fused(x, ws, method, hard, "triton", memory_budget=4 * 20 * 4)
    _compare(fused, _run_unfused(x, ws, method, hard, "triton", fused[4]), hard)


@needs_cpu
@pytest.mark.parametrize("rows_per_chunk", [1, 7, 16, 1000])
@pytest.mark.parametrize("method,hard", [("redge", True), ("redge_cov", False), ("gumbel", False),
                                         ("reinmax", True)])
def test_chunk_sizes(rows_per_chunk, method, hard):
    x = _logits((16, 300), seed=4)  # K = 300: the row kernels; 16 rows in 1 .. 16 chunks
    ws = _weights(300, [6])
    fused = _run_fused(x, ws, method, hard, "cpu", memory_budget=rows_per_chunk * 300 * 4)
    _compare(fused, _run_unfused(x, ws, method, hard, "cpu", fused[4]), hard)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("method,hard", [("redge", True), ("redge", False), ("st", True),
                                         ("gumbel", False), ("redge_max", True)])
def test_empty_and_poisoned_rows(backend, method, hard):
    x = _logits((7, 19), seed=6)
    x[1] = float("-inf")         # empty
    x[3, 5] = float("nan")       # poisoned
    x[5, 0] = float("inf")       # poisoned
    ws = _weights(19, [4, 2])
    fused = _run_fused(x, ws, method, hard, backend, memory_budget=3 * 19 * 4)
    outs, index, gx, gws, _ = fused
    assert index[[1, 3, 5]].tolist() == [-1, -1, -1]
    assert torch.equal(outs[0][1], torch.zeros(4))
    assert torch.isnan(outs[0][3]).all() and torch.isnan(outs[1][5]).all()
    assert torch.equal(gx[1], torch.zeros(19)) and torch.isnan(gx[3]).all()
    assert torch.isnan(gws[0]).all()  # y^T G with a NaN row of y
    _compare(fused, _run_unfused(x, ws, method, hard, backend, fused[4]), hard)


@needs_cpu
def test_empty_input_rows():
    x = torch.randn(0, 4, 11, requires_grad=True)
    w = torch.randn(11, 3, requires_grad=True)
    e, ix = rk.sample_embed(x, w, "redge", seed=1, backend="cpu", return_index=True)
    assert e.shape == (0, 4, 3) and ix.shape == (0, 4)
    e.sum().backward()
    assert torch.equal(w.grad, torch.zeros(11, 3))


@needs_cpu
@pytest.mark.parametrize("method,hard", [("redge", True), ("redge_cov", False), ("st", True),
                                         ("gumbel", False)])
def test_bf16_weights(method, hard):
    x = _logits((4, 6, 50), seed=8, dtype=torch.bfloat16)
    ws = _weights(50, [16, 4], dtype=torch.bfloat16)
    fused = _run_fused(x, ws, method, hard, "cpu", memory_budget=5 * 50 * 2)
    assert fused[0][0].dtype == torch.bfloat16 and fused[3][0].dtype == torch.bfloat16
    # bf16 tolerance: both sides round G W^T and y^T G to bf16, in different summation orders
    _compare(fused, _run_unfused(x, ws, method, hard, "cpu", fused[4]), hard,
             rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------------- the ops' new arguments
def _op_backends():
    out = []
    if HAS_CPU:
        out.append(("cpu", torch.ops.redge_kernels.fwd.default, torch.ops.redge_kernels.bwd.default))
    if HAS_TRITON:
        from redge_kernels import triton as rkt
        out.append(("triton", rkt.fwd, rkt.bwd))
    return out


@pytest.mark.parametrize("name,fwd,bwd", _op_backends(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("method", list(HP))
def test_row_start_and_write_y(name, fwd, bwd, method):
    """A chunk [r0, r1) run with row_start = r0 reproduces the whole call's rows (stats, index,
    y, grad); write_y=False returns an empty y and the same stats and index."""
    torch.manual_seed(2)
    k = 20 if name == "triton" else 45
    phi = torch.randn(9, k)
    seed = torch.tensor(123, dtype=torch.int64)
    coefs = linear_schedule(4, 0.5).table("cpu")
    m, tau = METHOD_IDS[method], 0.8
    hard = method in ("reinmax", "redge_max")
    y, st, ix = fwd(phi, seed, coefs, m, hard, tau, 0, True)
    g = torch.randn(9, k)
    gp = bwd(g, phi, seed, coefs, st, ix, m, hard, tau, 0)
    r0, r1 = 3, 8
    yc, stc, ixc = fwd(phi[r0:r1], seed, coefs, m, hard, tau, r0, True)
    assert torch.equal(yc, y[r0:r1]) and torch.equal(ixc, ix[r0:r1])
    torch.testing.assert_close(stc, st[r0:r1], rtol=0, atol=0)
    gpc = bwd(g[r0:r1], phi[r0:r1], seed, coefs, stc, ixc, m, hard, tau, r0)
    assert torch.equal(gpc, gp[r0:r1])
    y0, st0, ix0 = fwd(phi, seed, coefs, m, hard, tau, 0, False)
    assert y0.shape == (0, k) and torch.equal(ix0, ix)
    torch.testing.assert_close(st0, st, rtol=0, atol=0)
    if method not in ("st", "reinmax"):  # their stats do not depend on the noise
        # row_start is not ignored: rows 3..7 drawn as rows 0..4 get other stats
        assert not torch.equal(fwd(phi[r0:r1], seed, coefs, m, hard, tau, 0, True)[1], stc)


def test_reference_row_start_is_the_global_rows():
    phi = torch.randn(10, 33)
    sched = linear_schedule(3, 0.5)
    y, ix = reference.sample("redge", phi, 5, sched, False, 1.0)
    yc, ixc = reference.sample("redge", phi[4:9], 5, sched, False, 1.0, row_start=4)
    assert torch.equal(ixc, ix[4:9])
    torch.testing.assert_close(yc, y[4:9], rtol=0, atol=0)


@needs_cpu
def test_opcheck_changed_ops():
    phi = torch.randn(6, 13)
    seed = torch.tensor(9, dtype=torch.int64)
    coefs = linear_schedule(3, 0.5).table("cpu")
    for m in ("redge", "gumbel"):
        mid = METHOD_IDS[m]
        for write_y in (True, False):
            torch.library.opcheck(torch.ops.redge_kernels.fwd.default,
                                  (phi, seed, coefs, mid, True, 0.5, 4, write_y))
        _, st, ix = torch.ops.redge_kernels.fwd(phi, seed, coefs, mid, True, 0.5, 4)
        torch.library.opcheck(torch.ops.redge_kernels.bwd.default,
                              (torch.randn(6, 13), phi, seed, coefs, st, ix, mid, True, 0.5, 4))


@needs_cpu
@pytest.mark.parametrize("hard", [True, False])
def test_opcheck_embed_ops(hard):
    phi = torch.randn(7, 13, requires_grad=True)
    ws = [torch.randn(13, 4, requires_grad=True), torch.randn(13, 2)]
    seed = torch.tensor(4, dtype=torch.int64)
    coefs = linear_schedule(3, 0.5).table("cpu")
    args = (phi, seed, coefs, ws, "cpu", METHOD_IDS["redge"], hard, 1.0, 3)
    torch.library.opcheck(torch.ops.redge_kernels.embed_fwd.default, args)
    outs, st, ix = torch.ops.redge_kernels.embed_fwd(*args)
    bargs = ([torch.randn(7, 4), torch.randn(7, 2)], phi.detach(), seed, coefs,
             [w.detach() for w in ws], st, ix, "cpu", METHOD_IDS["redge"], hard, 1.0, 3, True,
             [True, False])
    torch.library.opcheck(torch.ops.redge_kernels.embed_bwd.default, bargs)


@needs_cpu
@pytest.mark.parametrize("hard", [True, False])
def test_fullgraph_compile_matches_eager(hard):
    torch._dynamo.reset()
    x = torch.randn(3, 4, 37)
    w = torch.randn(37, 6)
    g = torch.randn(3, 4, 6)

    def run(f):
        xx, ww = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        (f(xx, ww) * g).sum().backward()
        return f(xx, ww).detach(), xx.grad, ww.grad

    def call(t, ww):
        return rk.sample_embed(t, ww, "redge", hard, seed=11, backend="cpu", n_steps=3,
                               memory_budget=5 * 37 * 4)

    eager = run(call)
    compiled = run(torch.compile(call, fullgraph=True))
    assert torch.equal(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])
    torch.testing.assert_close(compiled[2], eager[2])


@needs_cpu
@pytest.mark.parametrize("method", ["st", "gumbel", "redge", "redge_cov"])
def test_gradcheck_soft_fp64(method):
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)

    def f(xx, ww, ww2):
        return rk.sample_embed(xx, [ww, ww2], method, False, seed=3, backend="cpu",
                               memory_budget=2 * 7 * 8, **HP[method])

    assert torch.autograd.gradcheck(f, (x, w, w2))


@needs_cpu
@pytest.mark.parametrize("method", ["redge", "reinmax"])
def test_gradcheck_hard_weights_fp64(method):
    """The hard value W[index] is linear in W: its W-gradient is an exact derivative."""
    x = torch.randn(6, 7, dtype=torch.float64)
    w = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda ww: rk.sample_embed(x, ww, method, seed=3, backend="cpu", memory_budget=2 * 7 * 8),
        (w,))


# ------------------------------------------------------------------------------------ arguments
def test_errors_before_any_work():
    x = torch.randn(4, 10)
    bad = [
        (ValueError, dict(weight=torch.randn(9, 3))),                        # first dim != K
        (ValueError, dict(weight=torch.randn(10))),                          # not 2-D
        (TypeError, dict(weight=torch.randn(10, 3, dtype=torch.float64))),   # dtype
        (ValueError, dict(weight=torch.empty(10, 3, device="meta"))),        # device
        (TypeError, dict(weight=[torch.randn(10, 3), "W"])),
        (TypeError, dict(weight=[])),
        (TypeError, dict(weight=torch.randn(10, 3), t_2=0.5)),
        (ValueError, dict(weight=torch.randn(10, 3), sampler="nope")),
        (ValueError, dict(weight=torch.randn(10, 3), memory_budget=0)),
        (ValueError, dict(weight=torch.randn(10, 3), backend="gpu")),
        (NotImplementedError, dict(weight=torch.randn(10, 3), sampler="reinmax", hard=False)),
    ]
    state = torch.get_rng_state()
    for exc, kw in bad:
        with pytest.raises(exc, match="sample_embed"):
            rk.sample_embed(x, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # no seed was drawn


def test_chunk_rows_budget(monkeypatch):
    monkeypatch.delenv(embed.BUDGET_ENV, raising=False)
    assert embed.chunk_rows(512, 30522, 4) == 64      # an eighth of the logits
    assert embed.chunk_rows(10, 100, 4) == 10         # at least 4 MiB: all rows
    assert embed.chunk_rows(4096, 131072, 4) == 128   # at most 64 MiB
    assert embed.chunk_rows(100, 1000, 4, memory_budget=4000 * 7 + 5) == 7
    monkeypatch.setenv(embed.BUDGET_ENV, "1")
    assert embed.chunk_rows(512, 30522, 4) == 8


def test_sampler_config_embed_and_defaults():
    x = torch.randn(6, 21)
    w = torch.randn(21, 5)
    cfg = rk.SamplerConfig("redge", n_steps=4, t_1=0.3)
    a = cfg.embed(x, w, seed=2, backend="reference")
    b = rk.sample_embed(x, w, "redge", seed=2, backend="reference", n_steps=4, t_1=0.3)
    c = rk.redge(x, n_steps=4, t_1=0.3, seed=2, backend="reference") @ w
    assert torch.equal(a, b) and torch.equal(b, c)
    # reindge is redge_max; the other samplers' hyperparameters are ignored, as in the api
    d = rk.sample_embed(x, w, "reindge", seed=2, backend="reference", tau=3.0)
    assert torch.equal(d, rk.redge_max(x, seed=2, backend="reference") @ w)


# ------------------------------------------------------------- forward mode and double backward
def _fd_pair(method, hard, backend, seed=2):
    """fp32 logits (masked tokens, two chunks of 3 rows), two weight matrices, and the fused call
    ``f(x, ws)`` next to the unfused reference composition ``g(x, ws)`` (tolerances: fp32
    rounding, second derivatives as in test_autograd)."""
    x = _logits((6, 9), seed=seed)
    ws = _weights(9, (4, 2))

    def fused(xx, *wws):
        return rk.sample_embed(xx, list(wws), method, hard, seed=7, backend=backend,
                               memory_budget=3 * 9 * 4, **HP[method])

    def unfused(xx, *wws):
        y = UNFUSED[method](xx, hard=hard, seed=7, backend="reference", **HP[method])
        return tuple(y @ w for w in wws)
    return x, ws, fused, unfused


@needs_cpu
@pytest.mark.parametrize("method,hard", CASES)
def test_double_backward_matches_reference(method, hard):
    """create_graph=True: the gradients of the fused call are themselves differentiable, with the
    second derivatives of the unfused reference composition (an independent autograd graph)."""
    x, ws, fused, unfused = _fd_pair(method, hard, "cpu")
    g = torch.Generator().manual_seed(9)
    cot = [torch.randn(6, d, generator=g, dtype=torch.float32) for d in (4, 2)]
    vx = torch.randn(6, 9, generator=g)
    vw = [torch.randn(w.shape, generator=g) for w in ws]

    def second(fn):
        xx = x.clone().requires_grad_(True)
        wws = [w.clone().requires_grad_(True) for w in ws]
        outs = fn(xx, *wws)
        first = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cot)), [xx, *wws],
                                    create_graph=True)
        inner = (first[0] * vx).sum() + sum((f * v).sum() for f, v in zip(first[1:], vw))
        return first, torch.autograd.grad(inner, [xx, *wws], allow_unused=True)

    (f1, f2), (u1, u2) = second(fused), second(unfused)
    for a, b in zip(f1, u1):
        torch.testing.assert_close(a, b)
    for a, b in zip(f2, u2):
        if b is None:  # the reference graph does not reach it: the fused one gives 0 or None
            assert a is None or torch.count_nonzero(a) == 0
        else:
            assert a is not None
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_cpu
@pytest.mark.parametrize("method,hard", CASES)
def test_forward_ad_and_func_jvp_match_reference(method, hard):
    """Forward mode (dual tensors and torch.func.jvp) of the fused call gives the tangent of the
    unfused reference composition, in both arguments; value and index unchanged."""
    x, ws, fused, unfused = _fd_pair(method, hard, "cpu")
    g = torch.Generator().manual_seed(4)
    tx = torch.randn(6, 9, generator=g)
    tw = [torch.randn(w.shape, generator=g) for w in ws]
    out_u, tan_u = torch.func.jvp(unfused, (x, *ws), (tx, *tw))
    out_f, tan_f = torch.func.jvp(fused, (x, *ws), (tx, *tw))
    for a, b in zip(out_f, out_u):
        torch.testing.assert_close(a, b)
    for a, b in zip(tan_f, tan_u):
        torch.testing.assert_close(a, b)
    with torch.autograd.forward_ad.dual_level():
        duals = [torch.autograd.forward_ad.make_dual(t, v) for t, v in zip((x, *ws), (tx, *tw))]
        outs = fused(*duals)
        for o, b in zip(outs, tan_u):
            torch.testing.assert_close(torch.autograd.forward_ad.unpack_dual(o).tangent, b)


@needs_cpu
def test_embed_ops_refuse_tangents():
    """The embed ops have no forward-mode rule: a tangent reaching them raises instead of being
    dropped (sample_embed itself takes the unfused path under forward mode)."""
    x = _logits((4, 9), dtype=torch.float64)
    w = _weights(9, (3,), dtype=torch.float64)[0]
    coefs = linear_schedule(3, 0.5).table(x.device, dtype=torch.float64)
    seed = torch.tensor(3)
    with torch.autograd.forward_ad.dual_level():
        xd = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
        with pytest.raises(NotImplementedError, match="forward-mode"):
            torch.ops.redge_kernels.embed_fwd(xd, seed, coefs, [w], "cpu", METHOD_IDS["redge"],
                                              True, 1.0, 2)


@needs_cpu
@pytest.mark.parametrize("method,hard", [("redge", False), ("redge_cov", True), ("gumbel", False)])
def test_op_autograd_of_a_chunk_is_the_whole_calls_rows(method, hard):
    """The op's autograd Functions carry row_start: the gradient, the forward-mode tangent
    (dual tensors and torch.func.jvp) and the double backward of rows [r0, r1) run with
    row_start = r0 equal the whole call's rows r0..r1-1 (and differ from row_start = 0)."""
    from redge_kernels import ops
    pair = ops.PAIRS["native"]
    x = _logits((8, 9), seed=3)
    g = torch.Generator().manual_seed(6)
    u, v, w = (torch.randn(8, 9, generator=g) for _ in range(3))
    m, tau = METHOD_IDS[method], HP[method].get("tau", 1.0)
    n = HP[method].get("n_steps", 2)
    sched = linear_schedule(n, HP[method].get("t_1", 0.5)) if "n_steps" in HP[method] else \
        embed.api._BASELINE_SCHEDULE
    coefs, seed, r0, r1 = sched.table(x.device), torch.tensor(5), 3, 7

    def f(t, start):
        return torch.ops.redge_kernels.fwd(t, seed, coefs, m, hard, tau, start)[0]

    def grads(t, uu, ww, start):
        tt = t.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad((f(tt, start) * uu).sum(), tt, create_graph=True)
        (hx,) = torch.autograd.grad((gx * ww).sum(), tt)
        return gx.detach(), hx

    def tangent(t, vv, start):
        with torch.autograd.forward_ad.dual_level():
            out = f(torch.autograd.forward_ad.make_dual(t, vv), start)
            return torch.autograd.forward_ad.unpack_dual(out).tangent

    gx, hx = grads(x, u, w, 0)
    gc, hc = grads(x[r0:r1], u[r0:r1], w[r0:r1], r0)
    torch.testing.assert_close(gc, gx[r0:r1])
    torch.testing.assert_close(hc, hx[r0:r1], rtol=1e-4, atol=1e-5)
    t_all, t_chunk = tangent(x, v, 0), tangent(x[r0:r1], v[r0:r1], r0)
    torch.testing.assert_close(t_chunk, t_all[r0:r1])
    _, t_func = torch.func.jvp(
        lambda t: ops.call_fwd(pair, t, seed, coefs, m, hard, tau, r0, True)[0],
        (x[r0:r1],), (v[r0:r1],))
    torch.testing.assert_close(t_func, t_all[r0:r1])
    assert not torch.allclose(tangent(x[r0:r1], v[r0:r1], 0), t_chunk)  # row_start is used


@needs_cpu
def test_op_autograd_without_y():
    """write_y=False through the op's autograd: y is [0, K], its (empty) gradient gives the
    logits a zero gradient, its tangent is empty; stats and index are those of write_y=True."""
    x = _logits((5, 9), seed=4).requires_grad_(True)
    coefs = linear_schedule(3, 0.5).table(x.device)
    seed, m = torch.tensor(2), METHOD_IDS["redge"]
    y, st, ix = torch.ops.redge_kernels.fwd(x, seed, coefs, m, True, 1.0, 2, False)
    _, st1, ix1 = torch.ops.redge_kernels.fwd(x, seed, coefs, m, True, 1.0, 2, True)
    assert y.shape == (0, 9) and torch.equal(ix, ix1) and torch.equal(st, st1)
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    with torch.autograd.forward_ad.dual_level():
        xd = torch.autograd.forward_ad.make_dual(x.detach(), torch.ones_like(x))
        yd = torch.ops.redge_kernels.fwd(xd, seed, coefs, m, True, 1.0, 2, False)[0]
        assert torch.autograd.forward_ad.unpack_dual(yd).tangent.shape == (0, 9)
