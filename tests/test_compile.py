"""torch.compile(fullgraph=True) traces the public functions to the registered op (no graph
breaks), and the compiled call gives the eager samples and gradients."""

import pytest
import torch

import redge_kernels as rk

pytestmark = pytest.mark.skipif("cpu" not in rk.available_backends(),
                                reason="needs the C++ extension (built by scripts/setup.sh)")

# One op path serves every method; three cases keep the (slow) compilation short.
CASES = [(rk.redge, dict(n_steps=3, t_1=0.5)), (rk.redge_cov, dict(n_steps=4, t_1=0.7)),
         (rk.reinmax, dict(tau=1.0))]


@pytest.mark.parametrize("fn,kw", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_fullgraph_compile_matches_eager(fn, kw):
    torch._dynamo.reset()
    x = torch.randn(3, 4, 37)
    g = torch.randn(3, 4, 37)

    def run(f):
        xx = x.clone().requires_grad_(True)
        y = f(xx)
        (y * g).sum().backward()
        return y.detach(), xx.grad

    eager = run(lambda t: fn(t, seed=11, **kw))
    compiled = run(torch.compile(lambda t: fn(t, seed=11, backend="cpu", **kw), fullgraph=True))
    assert torch.equal(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])
