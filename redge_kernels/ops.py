"""The registered op boundary shared by the fused backends (torch only; no backend imports here).

Two custom ops, defined once here; each backend registers its kernel for its dispatch key
(the C++ extension for ``CPU``, the Triton launcher for ``CUDA``)::

    redge_kernels::fwd(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau)
        -> (Tensor y, Tensor stats, Tensor index)
    redge_kernels::bwd(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats,
                       Tensor index, int method, bool hard, float tau) -> Tensor grad_phi

Arguments (R rows, K vocabulary, n = n_steps):

* ``phi``    ``[R, K]`` logits, fp16/bf16/fp32/fp64, any strides (stride 0 allowed).
* ``seed``   0-dim int64 tensor on ``phi``'s device (read by the kernel: no host sync, no recompile).
* ``coefs``  ``[n, 5]`` float32 (float64 for fp64 ``phi``) on ``phi``'s device: row k is
  ``(c_k, a_k, b_k, alpha_k, sigma_k)`` (``schedule.Schedule.table``). Baselines get a 2-row table.
* ``method`` id from ``_constants.METHOD_IDS``; ``tau`` the temperature (gumbel, reinmax; else unused).
* ``y``      ``[R, K]`` contiguous, ``phi.dtype``: exact one-hot (``hard``) or the soft sample.
* ``stats``  ``[R, n, 2]`` float32 (float64 for fp64 ``phi``): the per-step row statistics, the only
  state kept between forward and backward besides ``seed`` and ``index``.
  ``stats[r, k] = (m, s)`` with ``m`` the row max of the logits of softmax number k and
  ``s = sum_j exp(l_j - m)`` (so ``lse = m + log s``): slot 0 is the base softmax (``phi`` for st,
  reinmax, redge_cov; ``(phi + G) / tau`` for gumbel), slots 1..n-1 the denoisers of step k.
  Slots a method does not define are backend scratch (e.g. the Triton backend keeps
  ``softmax(phi / tau)`` of reinmax in slot 1); their content is not part of the contract. On an
  empty row ``m`` is 0 (a safe max), on a poisoned row ``s`` may be NaN. Vocabulary-parallel
  sampling all-reduces exactly these (max, then the rescaled sum) across ranks.
* ``index``  ``[R]`` int64 sampled category, -1 for a row with no valid sample (see below).
* ``grad_phi`` ``[R, K]`` contiguous, ``phi.dtype``.

Row conventions every backend follows: a row whose logits are all ``-inf`` is *empty*: ``y`` and
``grad_phi`` are 0 there, ``index`` -1. A row holding a NaN or ``+inf`` logit is *poisoned*: ``y`` and
``grad_phi`` are NaN on the whole row, ``index`` -1. Other rows are never affected.
"""

from __future__ import annotations

import torch

__all__ = ["fwd", "bwd", "LIB"]

LIB = torch.library.Library("redge_kernels", "DEF")
LIB.define("fwd(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau)"
           " -> (Tensor, Tensor, Tensor)")
LIB.define("bwd(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats, Tensor index,"
           " int method, bool hard, float tau) -> Tensor")


def _stats_dtype(phi: torch.Tensor) -> torch.dtype:
    return torch.float64 if phi.dtype == torch.float64 else torch.float32


@torch.library.register_fake("redge_kernels::fwd")
def _fwd_fake(phi, seed, coefs, method, hard, tau):
    rows, k = phi.shape
    y = phi.new_empty((rows, k))
    stats = phi.new_empty((rows, coefs.shape[0], 2), dtype=_stats_dtype(phi))
    index = phi.new_empty((rows,), dtype=torch.int64)
    return y, stats, index


@torch.library.register_fake("redge_kernels::bwd")
def _bwd_fake(grad_y, phi, seed, coefs, stats, index, method, hard, tau):
    return phi.new_empty(phi.shape)


def _setup_context(ctx, inputs, output):
    phi, seed, coefs, method, hard, tau = inputs
    _, stats, index = output
    ctx.save_for_backward(phi, seed, coefs, stats, index)
    ctx.method, ctx.hard, ctx.tau = method, hard, tau
    ctx.mark_non_differentiable(stats, index)


def _backward(ctx, grad_y, grad_stats, grad_index):
    phi, seed, coefs, stats, index = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(phi)
    grad_phi = torch.ops.redge_kernels.bwd(grad_y, phi, seed, coefs, stats, index,
                                          ctx.method, ctx.hard, ctx.tau)
    return grad_phi, None, None, None, None, None


torch.library.register_autograd("redge_kernels::fwd", _backward, setup_context=_setup_context)


def fwd(phi, seed, coefs, method: int, hard: bool, tau: float):
    """``torch.ops.redge_kernels.fwd`` (see module docstring)."""
    return torch.ops.redge_kernels.fwd(phi, seed, coefs, method, hard, tau)


def bwd(grad_y, phi, seed, coefs, stats, index, method: int, hard: bool, tau: float):
    """``torch.ops.redge_kernels.bwd`` (see module docstring)."""
    return torch.ops.redge_kernels.bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau)
