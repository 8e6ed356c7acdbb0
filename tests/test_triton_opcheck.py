"""``torch.library.opcheck`` of the Triton launchers as a custom op, on CPU under the interpreter.

The CPU key of ``redge_kernels::fwd`` belongs to the C++ backend, so this file defines a test-only
library ``redge_kernels_interp`` with the same schema, registers the Triton launchers for CPU
there (plus a fake implementation and autograd, as ``ops.py`` does for the real op), opchecks it
and traces it with ``torch.compile(fullgraph=True)``. On a CUDA machine the same launchers are the
CUDA kernels of the real op (checked there too).
"""

import pytest
import torch

pytest.importorskip("triton")
tk = pytest.importorskip("redge_kernels.triton")
if not tk.available():
    pytest.skip(tk.unavailable_reason(), allow_module_level=True)

from redge_kernels import ops, reference  # noqa: E402
from redge_kernels._constants import METHOD_IDS  # noqa: E402
from redge_kernels.schedule import Schedule, linear_schedule  # noqa: E402

_FWD = ("fwd(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau,"
        " int row_start=0, bool write_y=True) -> (Tensor, Tensor, Tensor)")
_BWD = ("bwd(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats, Tensor index,"
        " int method, bool hard, float tau, int row_start=0) -> Tensor")

LIB = torch.library.Library("redge_kernels_interp", "DEF")
LIB.define(_FWD)
LIB.define(_BWD)
LIB.impl("fwd", lambda *a: tk.fwd(*a), "CPU")
LIB.impl("bwd", lambda *a: tk.bwd(*a), "CPU")
torch.library.register_fake("redge_kernels_interp::fwd", ops._fwd_fake, lib=LIB)
torch.library.register_fake("redge_kernels_interp::bwd", ops._bwd_fake, lib=LIB)


def _backward(ctx, grad_y, grad_stats, grad_index):
    phi, seed, coefs, stats, index = ctx.saved_tensors
    grad_phi = torch.ops.redge_kernels_interp.bwd(grad_y, phi, seed, coefs, stats, index,
                                                 ctx.method, ctx.hard, ctx.tau, ctx.row_start)
    return grad_phi, None, None, None, None, None, None, None


torch.library.register_autograd("redge_kernels_interp::fwd", _backward,
                                setup_context=ops._setup_context, lib=LIB)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BASELINE = Schedule([1.0, 0.0], [0.0, 1.0])


def _args(method, rows=2, k=7, hard=True, tau=0.8):
    sched = linear_schedule(3, 0.5) if method.startswith("redge") else BASELINE
    phi = torch.randn(rows, k, device=DEVICE, requires_grad=True)
    seed = torch.tensor(17, dtype=torch.int64, device=DEVICE)
    return phi, seed, sched.table(DEVICE), METHOD_IDS[method], hard, tau


def test_schema_is_the_real_ops():
    for name in ("fwd", "bwd"):
        real = str(getattr(torch.ops.redge_kernels, name).default._schema)
        ours = str(getattr(torch.ops.redge_kernels_interp, name).default._schema)
        assert ours == real.replace("redge_kernels::", "redge_kernels_interp::")


@pytest.mark.parametrize("method", ["gumbel", "redge_cov"])
def test_opcheck_fwd(method):
    torch.library.opcheck(torch.ops.redge_kernels_interp.fwd.default, _args(method))


def test_opcheck_bwd():
    phi, seed, coefs, method, hard, tau = _args("redge_max")
    with torch.no_grad():
        y, stats, index = torch.ops.redge_kernels_interp.fwd(phi, seed, coefs, method, hard, tau)
    g = torch.randn_like(y)
    torch.library.opcheck(torch.ops.redge_kernels_interp.bwd.default,
                          (g, phi.detach(), seed, coefs, stats, index, method, hard, tau))


def test_compile_fullgraph_matches_reference():
    phi, seed, coefs, method, hard, tau = _args("redge", rows=3, k=9)

    def f(x):
        y, _, index = torch.ops.redge_kernels_interp.fwd(x, seed, coefs, method, hard, tau)
        return y, index

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    y, index = compiled(phi)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    p = phi.detach().clone().requires_grad_(True)
    y_ref, index_ref = reference.sample("redge", p, seed, linear_schedule(3, 0.5), hard, tau)
    (y_ref * g).sum().backward()
    assert torch.equal(index, index_ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(phi.grad, p.grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the real op's CUDA kernel needs a GPU")
def test_opcheck_real_op_cuda():
    torch.library.opcheck(torch.ops.redge_kernels.fwd.default, _args("redge"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the real op's CUDA kernel needs a GPU")
@pytest.mark.parametrize("method", ["redge", "reinmax"])
def test_compile_fullgraph_public_function_cuda(method):
    import redge_kernels as rk
    fn = {"redge": rk.redge, "reinmax": rk.reinmax}[method]
    x = torch.randn(4, 1000, device="cuda")
    seed = torch.tensor(5, dtype=torch.int64, device="cuda")
    compiled = torch.compile(lambda t: fn(t, seed=seed, backend="triton"), fullgraph=True)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    y = compiled(xs[0])
    y_eager = fn(xs[1], seed=seed, backend="triton")
    assert torch.equal(y, y_eager)
    g = torch.randn_like(x)
    (y * g).sum().backward()
    (y_eager * g).sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad)
