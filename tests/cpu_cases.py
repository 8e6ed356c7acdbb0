"""Shared helpers of the CPU-kernel tests (test_cpu_backend.py, test_cpu_lanes.py, ...): one call
of ``rk.sample`` on the reference and on the C++ backend compared with identical noise (identical
indices; values and gradients with ``assert_close`` defaults, fp32 tolerances for fp64 since the
noise itself is float32). The (method, hard) cases are ``CASES`` of tests/conftest.py."""

import torch

import redge_kernels as rk
from redge_kernels.schedule import Schedule, linear_schedule

BASELINE = Schedule([1.0, 0.0], [0.0, 1.0])
TAU = 0.7


def _schedule(method, n_steps=5, t_1=0.5):
    return linear_schedule(n_steps, t_1) if method.startswith("redge") else BASELINE


def _run(backend, method, logits, g, seed, hard=True, schedule=None, tau=TAU):
    """(y, index, grad) of rk.sample on a fresh leaf copy of ``logits``."""
    x = logits.detach().clone().requires_grad_()
    schedule = schedule or _schedule(method)
    y, index = rk.sample(method, x, hard=hard, tau=tau, schedule=schedule, seed=seed,
                         backend=backend, return_index=True)
    y.backward(g)
    return y.detach(), index, x.grad


# The noise is float32 on every backend and may differ from noise.py in the last ulp of log / cos
# (docs/SPEC.md "Randomness"), so fp64 logits agree to fp32 precision: fp32 tolerances there too.
_TOL = {torch.float64: {"rtol": 1.3e-6, "atol": 1e-5}}


def _compare(method, logits, seed, hard=True, schedule=None, g=None, tau=TAU):
    g = torch.randn(logits.shape, dtype=logits.dtype) if g is None else g
    y_r, i_r, g_r = _run("reference", method, logits, g, seed, hard, schedule, tau)
    y_c, i_c, g_c = _run("cpu", method, logits, g, seed, hard, schedule, tau)
    assert torch.equal(i_c, i_r)
    tol = _TOL.get(logits.dtype, {})
    torch.testing.assert_close(y_c, y_r, equal_nan=True, **tol)
    torch.testing.assert_close(g_c, g_r, equal_nan=True, **tol)
    return y_c, i_c, g_c
