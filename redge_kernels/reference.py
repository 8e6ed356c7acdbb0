"""Pure-PyTorch reference backend: every estimator as plain differentiable ops (docs/SPEC.md, all sections).

This is the independent formulation the fused kernels are tested against: the forward is written
as in the paper (the whole trajectory is kept and autograd differentiates it), and only the two
gradients that are not the derivative of any forward map (the straight-through value and the
ReinMax correction) are small hand-written ``autograd.Function``s.

Entry point: ``sample(method, phi, seed, schedule, hard, tau) -> (y, index)`` on ``phi[R, K]``.
Math runs in float32 (float64 for float64 ``phi``); ``y`` has ``phi``'s dtype.
"""

from __future__ import annotations

import torch

from ._constants import COEF_A, COEF_ALPHA, COEF_B, COEF_C, COEF_SIGMA, V_MIN
from .noise import gumbel_from_bits, noise_bits, normal_from_bits
from .schedule import Schedule

__all__ = ["sample", "masked_softmax"]


def masked_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row softmax that gives exact zeros (not NaN) on a row whose logits are all ``-inf``."""
    m = logits.detach().amax(-1, keepdim=True)
    m = torch.where(m == float("-inf"), torch.zeros_like(m), m)
    e = torch.exp(logits - m)
    s = e.sum(-1, keepdim=True)
    return e / torch.where(s == 0, torch.ones_like(s), s)


class _StraightThrough(torch.autograd.Function):
    """Value ``hard`` (returned exactly), gradient passed unchanged to ``soft``."""

    @staticmethod
    def forward(ctx, hard, soft):
        return hard.clone()

    @staticmethod
    def backward(ctx, g):
        return None, g


class _ReinMaxCorrection(torch.autograd.Function):
    """Value 0; gradient into ``phi`` of ReinMax at tau = 1 (paper eq. 5, docs/SPEC.md "ReDGE-Max"):
    ``gphi = 1/2 (p ⊙ (g - <g, p>) + <g, D> D)`` with ``D = one_hot - p``."""

    @staticmethod
    def forward(ctx, phi, p, d):
        ctx.save_for_backward(p, d)
        return torch.zeros_like(p)

    @staticmethod
    def backward(ctx, g):
        p, d = ctx.saved_tensors
        cov_g = p * (g - (g * p).sum(-1, keepdim=True))
        return 0.5 * (cov_g + (g * d).sum(-1, keepdim=True) * d), None, None


class _ReinMax(torch.autograd.Function):
    """ReinMax with temperature tau (Liu et al. 2023; docs/SPEC.md "Baselines"): value ``D``; gradient

        p1 = (softmax(phi / tau) + D) / 2
        u  = 2 g ⊙ p1 ;   u = u - p1 sum(u)
        w  = -g/2 ⊙ p0 ;  w = w - p0 sum(w)
        gphi = u + w, centred over the unmasked entries (masked entries stay exactly 0).
    """

    @staticmethod
    def forward(ctx, phi, d, tau):
        ctx.save_for_backward(phi, d)
        ctx.tau = tau
        return d.clone()

    @staticmethod
    def backward(ctx, g):
        phi, d = ctx.saved_tensors
        p0 = masked_softmax(phi)
        p1 = 0.5 * (masked_softmax(phi / ctx.tau) + d)
        u = 2.0 * g * p1
        u = u - p1 * u.sum(-1, keepdim=True)
        w = -0.5 * g * p0
        w = w - p0 * w.sum(-1, keepdim=True)
        gphi = u + w
        valid = phi != float("-inf")
        n_valid = valid.sum(-1, keepdim=True).clamp_min(1).to(gphi.dtype)
        mean = torch.where(valid, gphi, torch.zeros_like(gphi)).sum(-1, keepdim=True) / n_valid
        return torch.where(valid, gphi - mean, torch.zeros_like(gphi)), None, None


def _gumbel_argmax(scores: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """``argmax_j (scores_j + G_j)`` per row (the first maximum on ties)."""
    return (scores.detach() + gumbel).argmax(-1)


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    y = torch.zeros_like(like)
    return y.scatter_(-1, index.clamp_min(0)[:, None], 1.0)


def _row_kinds(phi: torch.Tensor):
    """(empty, poisoned) boolean ``[R]`` masks (see ``ops`` module docstring)."""
    empty = (phi == float("-inf")).all(-1)
    poisoned = (torch.isnan(phi) | (phi == float("inf"))).any(-1)
    return empty, poisoned


def _ddim_chain(phi, x, coefs, n, denoiser_logits):
    """Run x_{n-1} -> x_1 (docs/SPEC.md eq. 11) and return (l_1, x_1): the last denoiser's logits."""
    for k in range(n - 1, 1, -1):
        p_k = masked_softmax(denoiser_logits(x, k))
        x = coefs[k, COEF_A] * p_k + coefs[k, COEF_B] * x
    return denoiser_logits(x, 1), x


def sample(method: str, phi: torch.Tensor, seed, schedule: Schedule | None = None,
           hard: bool = True, tau: float = 1.0, row_start: int = 0):
    """Reference estimator on 2-D logits.

    Args:
        method: one of ``st, gumbel, reinmax, redge, redge_cov, redge_max``.
        phi: ``[R, K]`` logits (any float dtype; math in fp32, or fp64 for fp64 input).
        seed: int or 0-dim int64 tensor; noise as in ``noise.py``.
        schedule: the time grid (diffusion methods only).
        hard: one-hot value (straight-through gradient) or the soft sample.
        tau: temperature (gumbel, reinmax).
        row_start: global row of ``phi``'s row 0 (row r draws the noise of row ``row_start + r``;
            a chunk of rows of a bigger matrix samples what the whole call samples there).

    Returns:
        ``(y, index)``: ``y [R, K]`` in ``phi.dtype`` (differentiable), ``index [R]`` int64
        (-1 on empty or poisoned rows).
    """
    rows, k = phi.shape
    cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
    x_phi = phi.to(cdtype)
    r0, r1, r2, _ = noise_bits(seed, rows, k, phi.device, row_start=row_start)
    gumbel = gumbel_from_bits(r2).to(cdtype)

    if method in ("st", "reinmax"):
        p = masked_softmax(x_phi)
        index = _gumbel_argmax(x_phi, gumbel)
        y_hard = _one_hot(index, p.detach())
        if method == "st":
            y = _StraightThrough.apply(y_hard, p) if hard else p
        else:
            y = _ReinMax.apply(x_phi, y_hard, float(tau))
    elif method == "gumbel":
        s = masked_softmax((x_phi + gumbel) / tau)
        index = _gumbel_argmax(x_phi, gumbel)
        y = _StraightThrough.apply(_one_hot(index, s.detach()), s) if hard else s
    elif method in ("redge", "redge_cov", "redge_max"):
        n = schedule.n_steps
        coefs = schedule.table(phi.device, dtype=cdtype)
        z = normal_from_bits(r0, r1).to(cdtype)
        if method == "redge_cov":
            mu = masked_softmax(x_phi)
            v = torch.clamp(mu * (1.0 - mu), min=V_MIN)
            lam = 1.0 / v
            x = mu + torch.sqrt(v) * z

            def denoiser_logits(x_k, kk):
                shift = coefs[kk, COEF_SIGMA] * mu + 0.5 * coefs[kk, COEF_ALPHA]
                return x_phi + coefs[kk, COEF_C] * lam * (x_k - shift)
        else:
            x = z

            def denoiser_logits(x_k, kk):
                return x_phi + coefs[kk, COEF_C] * x_k
        l_1, x_1 = _ddim_chain(x_phi, x, coefs, n, denoiser_logits)
        p_1 = masked_softmax(l_1)
        index = _gumbel_argmax(l_1, gumbel)
        y_hard = _one_hot(index, p_1.detach())
        if method == "redge_max":
            # The path into x_1 keeps straight-through; phi's direct term is ReinMax's.
            p_1x = masked_softmax(x_phi.detach() + coefs[1, COEF_C] * x_1)
            y = _StraightThrough.apply(y_hard, p_1x)
            y = y + _ReinMaxCorrection.apply(x_phi, p_1.detach(), y_hard - p_1.detach())
        else:
            y = _StraightThrough.apply(y_hard, p_1) if hard else p_1
    else:
        raise ValueError(f"unknown method {method!r}")

    empty, poisoned = _row_kinds(phi)
    index = torch.where(empty | poisoned, torch.full_like(index, -1), index)
    if hard or method in ("reinmax", "redge_max"):
        # The one-hot of an empty row is all zeros (y_hard was built at index 0).
        y = y * (~empty).to(y.dtype)[:, None]
    # Poisoned rows: the value becomes NaN, the gradient path is left as it is (NaN there too).
    y = y + torch.where(poisoned, float("nan"), 0.0).to(y.dtype)[:, None]
    return y.to(phi.dtype), index
