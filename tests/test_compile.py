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


def test_readme_compile_example_runs_and_matches_eager():
    """The README's torch.compile example, as written, plus its eager twin: same samples,
    gradients to fp32 rounding, one compilation for three seeds."""
    import pathlib
    import re
    torch._dynamo.reset()
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- compile-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    torch._dynamo.utils.counters.clear()
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    logits, gen = scope["logits"], torch.Generator().manual_seed(0)
    grad = logits.grad.clone()
    eager = logits.detach().clone().requires_grad_(True)
    for _ in range(3):
        seed = torch.randint(0, 2**63 - 1, (), generator=gen)
        y = rk.redge(eager, n_steps=3, t_1=0.5, seed=seed)
        (y * torch.linspace(-1, 1, 10)).sum().backward()
    torch.testing.assert_close(grad, eager.grad)
