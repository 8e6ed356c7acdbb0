"""The eager fast path of ``api.sample`` (``ops.fwd_eager``: the fused op called below autograd
from a plain ``torch.autograd.Function``) against the registered-autograd path it short-cuts
(``torch.ops.redge_kernels.fwd`` through ``torch.library``'s autograd, used under
``torch.compile``): identical samples, indices, gradients, seeds drawn from the generator, graph
checks, and errors."""

import pytest
import torch

import redge_kernels as rk
from redge_kernels import api, ops

pytestmark = pytest.mark.skipif("cpu" not in rk.available_backends(),
                                reason="needs the C++ extension (built by scripts/setup.sh)")

KW = {"st": {}, "gumbel": dict(tau=0.7), "reinmax": dict(tau=1.3), "redge": dict(n_steps=4, t_1=0.4),
      "redge_cov": dict(n_steps=4, t_1=0.6), "redge_max": dict(n_steps=3, t_1=0.5)}
SOFT = ("st", "gumbel", "redge", "redge_cov")


@pytest.fixture
def registered_path(monkeypatch):
    """Switch the fast path off: ``sample`` then takes the ``torch.library`` autograd route."""
    def use(on: bool):
        if on:
            monkeypatch.setattr(ops, "plain_eager", lambda logits: False)
        else:
            monkeypatch.undo()
    return use


def _run(method, x, g, hard=True, **kw):
    xx = x.detach().clone().requires_grad_(True)
    y, index = rk.sample(method, xx, hard=hard, return_index=True, backend="cpu", **_args(method),
                         **kw)
    (y.double() * g).sum().backward()
    return y.detach(), index, xx.grad


def _args(method):
    kw = dict(KW[method])
    if "n_steps" in kw:
        return {"schedule": rk.make_schedule(kw["n_steps"], kw["t_1"])}
    return kw


def _layouts():
    torch.manual_seed(0)
    base = torch.randn(6, 7)
    yield "2d", base
    yield "3d", base.reshape(2, 3, 7)
    yield "1d", base[0]
    yield "colmajor", base.t().contiguous().t()
    yield "expanded", torch.randn(1, 7).expand(6, 7)
    yield "4d-permuted", torch.randn(3, 2, 4, 5).permute(2, 0, 1, 3)  # reshape copies here


@pytest.mark.parametrize("method,hard", [(m, True) for m in KW] + [(m, False) for m in SOFT])
def test_fast_path_equals_registered_path(method, hard, registered_path):
    for label, x in _layouts():
        g = torch.randn(x.shape, dtype=torch.float64)
        fast = _run(method, x, g, hard=hard, seed=21)
        registered_path(True)
        slow = _run(method, x, g, hard=hard, seed=21)
        registered_path(False)
        assert torch.equal(fast[0], slow[0]), label
        assert torch.equal(fast[1], slow[1]), label
        assert torch.equal(fast[2], slow[2]), label  # same kernels on the same inputs: bitwise
        assert fast[0].shape == x.shape and fast[1].shape == x.shape[:-1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_fast_path_dtypes(dtype, registered_path):
    x = torch.randn(5, 3, 11).to(dtype)
    g = torch.randn(5, 3, 11, dtype=torch.float64)
    fast = _run("redge_cov", x, g, seed=4)
    registered_path(True)
    slow = _run("redge_cov", x, g, seed=4)
    registered_path(False)
    assert fast[0].dtype == dtype and fast[2].dtype == dtype
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


def test_drawn_seeds_and_generator_state_match(registered_path):
    x = torch.randn(4, 9)
    out = []
    for slow in (False, True):
        registered_path(slow)
        torch.manual_seed(123)
        a = rk.redge(x, n_steps=5, t_1=0.5, backend="cpu")
        after = torch.randint(0, 1000, (4,))  # the default generator advanced the same way
        gen = torch.Generator().manual_seed(7)
        b = rk.gumbel_softmax(x, generator=gen, backend="cpu")
        out.append((a, after, b, gen.get_state()))
        registered_path(False)
    for u, v in zip(*out):
        assert torch.equal(u, v)


def test_no_grad_and_inference_give_plain_tensors():
    x = torch.randn(3, 4, 6, requires_grad=True)
    y = rk.redge(x, seed=5, backend="cpu")
    with torch.no_grad():
        y0 = rk.redge(x, seed=5, backend="cpu")
    with torch.inference_mode():
        y1 = rk.redge(x.detach(), seed=5, backend="cpu")
    y2 = rk.redge(x.detach(), seed=5, backend="cpu")
    assert y.requires_grad and y.grad_fn is not None
    for t in (y0, y1, y2):
        assert not t.requires_grad and t.grad_fn is None
        assert torch.equal(t, y.detach())


@pytest.mark.parametrize("shape", [(4, 6), (2, 2, 6)])
def test_inplace_change_of_logits_before_backward_is_caught(shape):
    x = torch.randn(shape, requires_grad=True)
    h = x * 1.0
    y = rk.redge(h, seed=1, backend="cpu")
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_retain_graph_and_index_output():
    x = torch.randn(3, 5, requires_grad=True)
    y, index = rk.sample("redge", x, schedule=rk.make_schedule(3, 0.5), seed=2, backend="cpu",
                         return_index=True)
    assert not index.requires_grad and index.dtype == torch.int64
    assert torch.equal(y.argmax(-1), index)
    y.sum().backward(retain_graph=True)
    g1 = x.grad.clone()
    y.sum().backward()
    torch.testing.assert_close(x.grad, 2 * g1)


def test_only_y_used_and_only_index_returned():
    x = torch.randn(4, 6, requires_grad=True)
    y = rk.redge_max(x, seed=8, backend="cpu")
    (y[:2] * 3.0).sum().backward()  # part of y unused: its gradient is zero, not missing
    assert torch.isfinite(x.grad).all()


def test_schedule_cache_keeps_type_checks():
    x = torch.randn(2, 3)
    rk.redge(x, n_steps=2, t_1=1, seed=0, backend="cpu")  # cached under int types
    rk.redge(x, n_steps=2, t_1=1.0, seed=0, backend="cpu")
    with pytest.raises(TypeError, match="n_steps must be an int"):
        rk.redge(x, n_steps=2.0, seed=0)
    with pytest.raises(TypeError, match="n_steps must be an int"):
        rk.redge(x, n_steps=True, seed=0)
    with pytest.raises(TypeError, match="t_1 must be a float"):
        rk.redge(x, n_steps=2, t_1=True, seed=0)
    with pytest.raises(TypeError, match="t_1 must be a float"):
        rk.redge(x, n_steps=2, t_1=[0.5], seed=0)
    assert torch.equal(rk.redge(x, n_steps=2, t_1=1, seed=0),
                       rk.redge(x, n_steps=2, t_1=1.0, seed=0))
    assert api._schedule(5, 0.5, None) == rk.make_schedule(5, 0.5)
    assert api._schedule(4, 0.5, [0.0, 0.1, 0.2]) == rk.grid_schedule([0.0, 0.1, 0.2])


def test_compiled_equals_fast_eager_nd():
    torch._dynamo.reset()
    x = torch.randn(2, 3, 19)
    g = torch.randn(2, 3, 19)

    def run(f):
        xx = x.clone().requires_grad_(True)
        y, index = f(xx)
        (y * g).sum().backward()
        return y.detach(), index, xx.grad

    def f(t):
        return rk.sample("redge_max", t, schedule=rk.make_schedule(4, 0.3), seed=13,
                         backend="cpu", return_index=True)

    eager = run(f)
    compiled = run(torch.compile(f, fullgraph=True))
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)


def test_fast_path_is_off_where_it_must_be():
    x = torch.randn(2, 3)
    assert ops.plain_eager(x)

    class Mode(torch.utils._python_dispatch.TorchDispatchMode):
        seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Mode():
        assert not ops.plain_eager(x)
        rk.redge(x, seed=1, backend="cpu")
    assert "redge_kernels.fwd.default" in Mode.seen
    with torch.overrides.TorchFunctionMode():
        assert not ops.plain_eager(x)
    assert ops.plain_eager(torch.nn.Parameter(x.clone()))

    class Sub(torch.Tensor):
        pass

    s = x.clone().as_subclass(Sub)
    assert not ops.plain_eager(s)  # other subclasses: registered path
    assert torch.equal(rk.redge(s, seed=1, backend="cpu").as_subclass(torch.Tensor),
                       rk.redge(x, seed=1, backend="cpu"))


@pytest.mark.parametrize("shape", [(4, 6), (2, 2, 6)])
def test_inplace_on_outputs_behaves_as_registered_path(shape, registered_path):
    torch.manual_seed(3)
    x = torch.randn(shape)
    g = torch.randn(shape)
    grads = []
    for slow in (False, True):
        registered_path(slow)
        xx = x.clone().requires_grad_(True)
        y, index = rk.sample("redge", xx, schedule=rk.make_schedule(3, 0.5), seed=1,
                             backend="cpu", return_index=True)
        y[..., 0].mul_(2.0)  # in-place on (a view of) the sample is legal
        y.mul_(g)
        y.sum().backward()
        grads.append(xx.grad)
        y, index = rk.sample("redge", xx, schedule=rk.make_schedule(3, 0.5), seed=1,
                             backend="cpu", return_index=True)
        index.add_(1)  # the saved index changed: backward refuses
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
        registered_path(False)
    assert torch.equal(grads[0], grads[1])


def _pool():
    return getattr(ops._POOL, "seeds", [])


def test_seed_buffers_are_reused_only_when_free(registered_path):
    torch.manual_seed(0)
    x = torch.randn(5, 8, requires_grad=True)
    g = torch.randn(5, 8)
    torch.manual_seed(9)
    live = [rk.redge(x, backend="cpu") for _ in range(3)]  # three graphs hold three seeds
    seeds = [y.grad_fn.saved_tensors[1] for y in live]
    assert len({id(s) for s in seeds}) == 3 and len({int(s) for s in seeds}) == 3
    del seeds
    registered_path(True)
    torch.manual_seed(9)
    ref = [rk.redge(x, backend="cpu") for _ in range(3)]
    registered_path(False)
    for y, r in zip(live, ref):  # values and gradients as if every seed were a fresh tensor
        assert torch.equal(y, r)
        gy, = torch.autograd.grad((y * g).sum(), x)
        gr, = torch.autograd.grad((r * g).sum(), x)
        assert torch.equal(gy, gr)
    del live, ref, y, r
    n = len(_pool())
    for _ in range(20):  # backward done, graph gone: the same buffer again
        rk.redge(x, backend="cpu", seed=4).sum().backward()
    assert len(_pool()) == n <= ops._POOL_SIZE


def test_seed_buffer_held_elsewhere_is_not_reused():
    x = torch.randn(3, 4, requires_grad=True)
    y = rk.redge(x, backend="cpu", seed=5)
    held = y.grad_fn.saved_tensors[1]  # a caller holding the saved seed tensor
    y.sum().backward()
    for s in range(ops._POOL_SIZE + 2):
        z = rk.redge(x, backend="cpu", seed=100 + s)
        assert int(held) == 5
        assert z.grad_fn.saved_tensors[1] is not held
        z.sum().backward()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        assert ops.seed_buffer() is None
        rk.redge(x, backend="cpu", seed=7).sum().backward()
    assert int(held) == 5


def test_seed_buffer_and_reference_backend_agree():
    x = torch.randn(4, 6)
    torch.manual_seed(3)
    a = rk.redge(x, backend="reference")
    torch.manual_seed(3)
    b = rk.redge(x, backend="cpu")
    assert torch.equal(a, b)


def test_empty_batch_after_a_cached_fused_decision():
    x = torch.randn(3, 5)
    rk.redge(x, seed=0, backend="cpu")
    rk.redge(x, seed=0)
    for backend in ("cpu", "auto"):
        e = rk.redge(torch.randn(0, 5, requires_grad=True), seed=0, backend=backend)
        assert e.shape == (0, 5)
        y, index = rk.sample("st", torch.randn(2, 0, 5), seed=0, backend=backend, return_index=True)
        assert y.shape == (2, 0, 5) and index.shape == (2, 0)
