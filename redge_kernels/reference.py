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
from .noise import gumbel_noise, normal_noise
from .schedule import Schedule

__all__ = ["sample", "masked_softmax", "tempered_softmax"]


def masked_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row softmax that gives exact zeros (not NaN) on a row whose logits are all ``-inf``."""
    m = logits.detach().amax(-1, keepdim=True)
    m = torch.where(m == float("-inf"), torch.zeros_like(m), m)
    e = torch.exp(logits - m)
    s = e.sum(-1, keepdim=True)
    return e / torch.where(s == 0, torch.ones_like(s), s)


def tempered_softmax(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """``masked_softmax(scores / tau)`` with the row max subtracted before the division (softmax
    is shift invariant): for finite scores near the fp32 limit, ``scores / tau`` itself would
    overflow to inf for tau < 1."""
    top = scores.detach().amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return masked_softmax((scores - top) / tau)


class _StraightThrough(torch.autograd.Function):
    """Value ``hard`` (returned exactly), derivative that of ``soft``: the backward passes the
    incoming gradient to ``soft`` unchanged and the forward-mode tangent is ``soft``'s tangent.
    Both are linear maps of the incoming gradient / tangent written with differentiable ops, so
    double backward, forward mode and the ``torch.func`` transforms see the soft path's own
    derivatives (setup_context form, vmap rule generated)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(hard, soft):
        return hard.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return None, g

    @staticmethod
    def jvp(ctx, hard_t, soft_t):
        return soft_t


def _cov_times(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``(diag(p) - p p^T) g`` row-wise: the softmax Jacobian (symmetric) applied to ``g``."""
    return p * (g - (g * p).sum(-1, keepdim=True))


class _ReinMaxCorrection(torch.autograd.Function):
    """Value 0; derivative into ``phi`` the difference between ReinMax at tau = 1 (paper eq. 5,
    docs/SPEC.md "ReDGE-Max") and straight-through at the last denoiser:
    ``J = 1/2 (D D^T - (diag(p) - p p^T))`` with ``D = one_hot - p``, so that added to the
    straight-through output of ``p_1`` the phi-direct term becomes ``1/2 (Cov(p) g + <g, D> D)``.
    ``J`` is symmetric, so the backward ``J g`` and the tangent ``J v`` are one formula. ``p`` and
    ``D`` stay attached to their graph (no first-order gradient of their own: the value is 0), so a
    double backward differentiates ``J g`` through ``p`` as well."""

    generate_vmap_rule = True

    @staticmethod
    def forward(phi, p, d):
        return torch.zeros_like(p)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, p, d = inputs
        ctx.save_for_backward(p, d)
        ctx.save_for_forward(p, d)

    @staticmethod
    def _apply_j(p, d, g):
        return 0.5 * ((g * d).sum(-1, keepdim=True) * d - _cov_times(p, g))

    @staticmethod
    def backward(ctx, g):
        p, d = ctx.saved_tensors
        return _ReinMaxCorrection._apply_j(p, d, g), None, None

    @staticmethod
    def jvp(ctx, phi_t, p_t, d_t):
        p, d = ctx.saved_tensors
        if phi_t is None:
            return torch.zeros_like(p)
        return _ReinMaxCorrection._apply_j(p, d, phi_t)


class _ReinMax(torch.autograd.Function):
    """ReinMax with temperature tau (Liu et al. 2023; docs/SPEC.md "Baselines"): value ``D``;
    gradient ``gphi = C (A + B) g`` with

        p1 = (softmax(phi / tau) + D) / 2,  A g = 2 p1 ⊙ (g - <g, p1>)    (u in docs/SPEC.md)
        p0 = softmax(phi),                  B g = -1/2 p0 ⊙ (g - <g, p0>) (w in docs/SPEC.md)
        C  = centring over the unmasked entries (masked entries stay exactly 0).

    ``A``, ``B`` and ``C`` are symmetric, so the forward-mode tangent is ``(A + B) C v``. Both are
    written with differentiable ops of the saved ``phi`` (double backward differentiates them).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(phi, d, tau):
        return d.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        phi, d, tau = inputs
        ctx.save_for_backward(phi, d)
        ctx.save_for_forward(phi, d)
        ctx.tau = tau

    @staticmethod
    def _parts(phi, d, tau):
        p0 = masked_softmax(phi)
        p1 = 0.5 * (tempered_softmax(phi, tau) + d)
        valid = phi != float("-inf")
        return p0, p1, valid

    @staticmethod
    def _centre(x, valid):
        n_valid = valid.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
        mean = torch.where(valid, x, torch.zeros_like(x)).sum(-1, keepdim=True) / n_valid
        return torch.where(valid, x - mean, torch.zeros_like(x))

    @staticmethod
    def backward(ctx, g):
        phi, d = ctx.saved_tensors
        p0, p1, valid = _ReinMax._parts(phi, d, ctx.tau)
        gphi = 2.0 * _cov_times(p1, g) - 0.5 * _cov_times(p0, g)
        return _ReinMax._centre(gphi, valid), None, None

    @staticmethod
    def jvp(ctx, phi_t, d_t, tau_t):
        phi, d = ctx.saved_tensors
        if phi_t is None:
            return torch.zeros_like(d)
        p0, p1, valid = _ReinMax._parts(phi, d, ctx.tau)
        v = _ReinMax._centre(phi_t, valid)
        return 2.0 * _cov_times(p1, v) - 0.5 * _cov_times(p0, v)


def _traceable(cls):
    """``cls`` without its forward-mode rule: dynamo does not trace a Function that defines
    ``jvp``, and forward-mode AD does not run under ``torch.compile`` anyway."""
    return type(cls.__name__ + "Traced", (cls,), {"jvp": staticmethod(torch.autograd.Function.jvp)})


_StraightThroughTraced = _traceable(_StraightThrough)
_ReinMaxCorrectionTraced = _traceable(_ReinMaxCorrection)
_ReinMaxTraced = _traceable(_ReinMax)


def _jvp_levels() -> int:
    """How many ``torch.func`` forward-mode levels (``jvp`` / ``jacfwd``) are active."""
    if torch.compiler.is_compiling() or not torch._C._are_functorch_transforms_active():
        return 0
    try:
        from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    except ImportError:  # pragma: no cover (other torch versions)
        return 0
    return sum(type(i).__name__ == "JvpInterpreter" for i in retrieve_all_functorch_interpreters())


def _check_tangent_rule_order(method: str) -> None:
    """ReinMax's and ReDGE-Max's tangents come from hand-written rules that an outer forward
    level does not differentiate (``torch.func`` runs a tangent rule with forward mode off), so
    forward over forward would give a silently wrong second derivative: refused by name."""
    if method in ("reinmax", "redge_max") and _jvp_levels() >= 2:
        raise NotImplementedError(
            f"redge_kernels: nested forward mode (e.g. torch.func.jacfwd of jacfwd) is not "
            f"supported for {method} (its tangent rule is first order); use torch.func.hessian "
            "(forward over reverse), jacrev of jacfwd or a double backward")


def _functions():
    """``(straight_through, reinmax_correction, reinmax)`` Functions: the eager ones, or their
    traceable twins under torch.compile."""
    if torch.compiler.is_compiling():
        return _StraightThroughTraced, _ReinMaxCorrectionTraced, _ReinMaxTraced
    return _StraightThrough, _ReinMaxCorrection, _ReinMax


def _gumbel_argmax(scores: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """``argmax_j (scores_j + G_j)`` per row (the first maximum on ties)."""
    return (scores.detach() + gumbel).argmax(-1)


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One-hot of ``index.clamp_min(0)`` in ``like``'s shape and dtype (elementwise: vmap and
    torch.compile see no scatter)."""
    cols = torch.arange(like.shape[-1], device=like.device)
    return (cols == index.clamp_min(0)[:, None]).to(like.dtype)


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
           hard: bool = True, tau: float = 1.0, row_start: int = 0, *,
           coefs: torch.Tensor | None = None, index: torch.Tensor | None = None):
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
        coefs: instead of ``schedule``, its kernel table ``[n, 5]`` (``Schedule.table``) as the
            fused ops receive it; the fused backends' forward-mode and double-backward rules
            (``ops``) re-run this function on exactly their arguments.
        index: optional ``[R]`` int64 sample to use instead of drawing it (the fused forward's
            index, so that those rules differentiate at the kernel's own sample).

    Returns:
        ``(y, index)``: ``y [R, K]`` in ``phi.dtype`` (differentiable), ``index [R]`` int64
        (-1 on empty or poisoned rows).
    """
    rows, k = phi.shape
    _check_tangent_rule_order(method)
    st_fn, correction_fn, reinmax_fn = _functions()
    cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
    x_phi = phi.to(cdtype)
    gumbel = gumbel_noise(seed, rows, k, phi.device, row_start=row_start).to(cdtype)

    if method in ("st", "reinmax"):
        p = masked_softmax(x_phi)
        index = _gumbel_argmax(x_phi, gumbel) if index is None else index
        y_hard = _one_hot(index, p.detach())
        if method == "st":
            y = st_fn.apply(y_hard, p) if hard else p
        else:
            y = reinmax_fn.apply(x_phi, y_hard, float(tau))
    elif method == "gumbel":
        s = tempered_softmax(x_phi + gumbel, tau)
        index = _gumbel_argmax(x_phi, gumbel) if index is None else index
        y = st_fn.apply(_one_hot(index, s.detach()), s) if hard else s
    elif method in ("redge", "redge_cov", "redge_max"):
        if coefs is None:
            coefs = schedule.table(phi.device, dtype=cdtype)
        n = coefs.shape[0]
        z = normal_noise(seed, rows, k, phi.device, row_start=row_start).to(cdtype)
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
        index = _gumbel_argmax(l_1, gumbel) if index is None else index
        y_hard = _one_hot(index, p_1.detach())
        if method == "redge_max":
            # Straight-through at p_1 (the x_1 path and phi's direct term), plus the correction
            # that turns phi's direct term into ReinMax's. p_1 and D stay attached (see
            # _ReinMaxCorrection): a double backward differentiates every term through p_1.
            y = st_fn.apply(y_hard, p_1)
            y = y + correction_fn.apply(x_phi, p_1, y_hard - p_1)
        else:
            y = st_fn.apply(y_hard, p_1) if hard else p_1
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
