"""The autograd boundary of a vocabulary-parallel call: forward and backward run their collectives
(``steps.py``); only ``stats``, the index, the row kinds and the seed (in the plan) are kept."""

from __future__ import annotations

import torch

from . import steps

__all__ = ["ShardedSample"]


class ShardedSample(torch.autograd.Function):
    """``(y [R, K_r], index [R])`` of ``steps.forward`` on ``phi [R, K_r]``, with the gradient of
    ``steps.backward``. ``phi`` is converted to the compute dtype (fp32, or fp64 for fp64) inside;
    ``y`` and the gradient have ``phi``'s dtype."""

    @staticmethod
    def forward(ctx, phi, plan):
        cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
        y, index, stats, poisoned, empty = steps.forward(plan, phi.to(cdtype))
        ctx.save_for_backward(phi, stats, index, poisoned, empty)
        ctx.plan = plan
        ctx.mark_non_differentiable(index)
        return y.to(phi.dtype), index

    @staticmethod
    def backward(ctx, grad_y, grad_index):
        phi, stats, index, poisoned, empty = ctx.saved_tensors
        cdtype = stats.dtype
        grad = steps.backward(ctx.plan, grad_y.to(cdtype), phi.to(cdtype), stats, index,
                              poisoned, empty)
        return grad.to(phi.dtype), None
