"""The estimators on one vocabulary shard, with explicit per-step statistics (docs/SPEC.md
"Vocabulary-parallel", "ReDGE", "ReDGE-Cov", "ReDGE-Max", "Baselines").

This is the math of ``reference.py`` re-expressed so that every row reduction is a collective
(``collectives.py``) and everything else is elementwise on the local columns ``[c0, c0 + K_r)``:

* a softmax of logits ``l`` is ``p_j = exp(l_j - M) / S`` with the global ``(M, S)`` of its step,
  the same expression as ``reference.masked_softmax`` (so ``p`` differs from the unsharded one only
  through the rounding of ``S``);
* the noise is the unsharded noise of global columns ``c0 ..`` (docs/SPEC.md "Randomness (noise
  contract, version 2)"), so the Gumbel-max scores of the baselines are bitwise those of the
  unsharded call;
* the forward keeps only ``stats [R, n, 2]`` (the global ``(M, S)`` of every softmax), the sampled
  index and the row kinds; the backward recomputes the trajectory from the seed and these stats with
  the forward's own operations (``run_chain``), so it sees bitwise the forward's ``p_k``.

Collectives per call (W ranks; ``n`` the number of time points): forward one per softmax that
depends on an earlier one, the last softmax and the Gumbel-max sharing one (baselines 1, ReDGE and
ReDGE-Max ``n - 1``, ReDGE-Cov ``n``); backward one per softmax backward (baselines 1, ReDGE and
ReDGE-Max ``n - 1``, ReDGE-Cov ``n``).

Rows: ``empty`` (every logit of every shard ``-inf``) and ``poisoned`` (a NaN or ``+inf`` on any
shard) are decided from ``phi`` alone, as in ``reference._row_kinds``, and forced at the end:
value and gradient 0 / NaN on the whole row, index -1 (``ops`` module docstring).
"""

from __future__ import annotations

import dataclasses

import torch

from .._constants import COEF_A, COEF_ALPHA, COEF_B, COEF_C, COEF_SIGMA, V_MIN
from ..noise import gumbel_noise, normal_noise
from .collectives import (INDEX_DTYPES, Shard, combine_argmax, combine_softmax, gather_rows,
                          local_argmax, local_softmax_stats, rank_sum)

__all__ = ["Plan", "forward", "backward", "probs", "run_chain"]

_NEG_INF = float("-inf")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a sharded call fixes before it runs: the estimator, its scalars and the shard.

    ``coefs`` is the ``[n, 5]`` schedule table in the compute dtype (``schedule.Schedule.table``;
    the baselines' unused 2-row table otherwise), ``seed`` the call's int seed.
    """

    method: str
    hard: bool
    tau: float
    coefs: torch.Tensor
    seed: int
    shard: Shard


def probs(logits: torch.Tensor, big: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``exp(l - M) / S`` per row, with ``reference.masked_softmax``'s guards (``M = -inf`` -> 0,
    ``S = 0`` -> 1): exact zeros on masked columns and on all-masked rows."""
    safe_m = torch.where(big == _NEG_INF, torch.zeros_like(big), big)
    safe_s = torch.where(total == 0, torch.ones_like(total), total)
    return torch.exp(logits - safe_m[:, None]) / safe_s[:, None]


def _softmax_stats(logits: torch.Tensor, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
    """The global ``(M, S)`` of ``softmax(logits)`` over the sharded row (one collective)."""
    m, s = local_softmax_stats(logits)
    parts = gather_rows(torch.stack([m, s], 1), shard)
    return combine_softmax(parts[:, :, 0], parts[:, :, 1])


def _final_step(softmaxes: list, score: torch.Tensor, phi: torch.Tensor, shard: Shard):
    """One collective for everything the forward still needs: the ``(M, S)`` of each logits tensor
    in ``softmaxes``, the Gumbel-max of ``score`` and the row kinds of ``phi``.

    Buffer columns: ``(m, s)`` per softmax, the best score, the global index (its bits in the
    float lane), the local "has NaN or +inf" and "all -inf" flags. Returns
    ``(list of (M, S), index [R] int64, poisoned [R] bool, empty [R] bool)``.
    """
    cols = []
    for logits in softmaxes:
        cols.extend(local_softmax_stats(logits))
    best, index = local_argmax(score, shard)
    poisoned = (torch.isnan(phi) | (phi == float("inf"))).any(-1)
    masked = (phi == _NEG_INF).all(-1)
    at = len(cols)
    buf = torch.stack(cols + [best, torch.zeros_like(best), poisoned.to(best.dtype),
                              masked.to(best.dtype)], 1)
    int_dtype = INDEX_DTYPES[buf.dtype]
    buf.view(int_dtype)[:, at + 1] = index.to(int_dtype)
    parts = gather_rows(buf, shard)
    stats = [combine_softmax(parts[:, :, 2 * i], parts[:, :, 2 * i + 1])
             for i in range(len(softmaxes))]
    index = combine_argmax(parts[:, :, at], parts.view(int_dtype)[:, :, at + 1].to(torch.int64))
    return stats, index, (parts[:, :, at + 2] != 0).any(0), (parts[:, :, at + 3] != 0).all(0)


def _noise(plan: Plan, rows: int, device, dtype, kind: str) -> torch.Tensor:
    """The unsharded noise of this shard's global columns: ``z`` (stream 0) or ``G`` (stream 1)."""
    fn = normal_noise if kind == "z" else gumbel_noise
    return fn(plan.seed, rows, plan.shard.k_local, device, col_start=plan.shard.c0).to(dtype)


def _base(plan: Plan, phi: torch.Tensor, stats, z):
    """ReDGE-Cov's base (docs/SPEC.md "ReDGE-Cov"): ``(mu, mu (1 - mu), lam = 1 / v, sqrt(v),
    x_{n-1} = mu + sqrt(v) z)`` from slot 0's stats; ReDGE's ``x_{n-1} = z`` otherwise."""
    if plan.method != "redge_cov":
        return None, None, None, None, z
    mu = probs(phi, *stats)
    pv = mu * (1.0 - mu)
    v = torch.clamp(pv, min=V_MIN)
    sv = torch.sqrt(v)
    return mu, pv, 1.0 / v, sv, mu + sv * z


def _denoiser(plan: Plan, phi: torch.Tensor, mu, lam):
    """``l_k(x_k)``: ``phi + c_k x_k`` (ReDGE) or ``phi + c_k lam (x_k - sigma_k mu - alpha_k / 2)``
    (ReDGE-Cov), written as ``reference.sample`` writes them."""
    coefs = plan.coefs
    if mu is None:
        return lambda x, k: phi + coefs[k, COEF_C] * x

    def cov_logits(x, k):
        shift = coefs[k, COEF_SIGMA] * mu + 0.5 * coefs[k, COEF_ALPHA]
        return phi + coefs[k, COEF_C] * lam * (x - shift)
    return cov_logits


def run_chain(plan: Plan, x: torch.Tensor, denoiser, stats_of, keep: bool):
    """The DDIM chain ``x_{n-1} -> x_1`` (docs/SPEC.md "ReDGE", eq. 11) on the local columns.

    ``stats_of(k, l_k)`` gives the global ``(M_k, S_k)``: a collective in the forward, the saved
    statistics in the backward (same operations both ways, so the backward's ``p_k`` are bitwise
    the forward's). Returns ``(l_1, x_1, traj)`` with ``traj[k] = (x_k, p_k)`` for k = n-1 .. 2
    when ``keep``.
    """
    coefs, traj = plan.coefs, {}
    for k in range(coefs.shape[0] - 1, 1, -1):
        logits = denoiser(x, k)
        p = probs(logits, *stats_of(k, logits))
        if keep:
            traj[k] = (x, p)
        x = coefs[k, COEF_A] * p + coefs[k, COEF_B] * x
    return denoiser(x, 1), x, traj


def local_one_hot(index: torch.Tensor, shard: Shard, like: torch.Tensor) -> torch.Tensor:
    """This shard's columns of ``one_hot(index)`` (all zeros where the index is -1 or on another
    shard); a scatter, so no host sync."""
    out = torch.zeros_like(like)
    if shard.k_local == 0:
        return out
    pos = index - shard.c0
    inside = (pos >= 0) & (pos < shard.k_local)
    return out.scatter_(1, pos.clamp(0, shard.k_local - 1)[:, None],
                        inside.to(out.dtype)[:, None])


def forward(plan: Plan, phi: torch.Tensor):
    """The sharded forward on ``phi [R, K_r]`` (compute dtype).

    Returns ``(y [R, K_r], index [R] int64 global, stats [R, n_slots, 2], poisoned [R],
    empty [R])``.
    Slot 0 of ``stats`` is the base softmax (``phi`` for st, reinmax, redge_cov;
    ``(phi + G) / tau`` for gumbel), slot 1 ``phi / tau`` for reinmax, slots 1 .. n-1 the denoisers.
    """
    method, rows = plan.method, phi.shape[0]
    n_slots = max(plan.coefs.shape[0], 2)
    stats = [(torch.zeros(rows, dtype=phi.dtype, device=phi.device),) * 2] * n_slots
    if method in ("st", "gumbel", "reinmax"):
        gumbel = _noise(plan, rows, phi.device, phi.dtype, "g")
        base = {"st": [phi], "gumbel": [(phi + gumbel) / plan.tau],
                "reinmax": [phi, phi / plan.tau]}[method]
        pairs, index, poisoned, empty = _final_step(base, phi + gumbel, phi, plan.shard)
        stats[: len(pairs)] = pairs
        soft_logits = base[0]
    else:
        z = _noise(plan, rows, phi.device, phi.dtype, "z")
        if method == "redge_cov":
            stats[0] = _softmax_stats(phi, plan.shard)
        mu, _, lam, _, x = _base(plan, phi, stats[0], z)

        def collective(k, logits):
            stats[k] = _softmax_stats(logits, plan.shard)
            return stats[k]
        l_1, _, _ = run_chain(plan, x, _denoiser(plan, phi, mu, lam), collective, keep=False)
        gumbel = _noise(plan, rows, phi.device, phi.dtype, "g")
        (stats[1],), index, poisoned, empty = _final_step([l_1], l_1 + gumbel, phi, plan.shard)
        soft_logits = l_1
    if plan.hard or method in ("reinmax", "redge_max"):
        y = local_one_hot(index, plan.shard, phi)
    else:
        y = probs(soft_logits, *stats[1 if method in ("redge", "redge_cov") else 0])
    index = torch.where(empty | poisoned, torch.full_like(index, -1), index)
    y = torch.where(empty[:, None], torch.zeros_like(y), y)
    y = torch.where(poisoned[:, None], torch.full_like(y, float("nan")), y)
    return y, index, torch.stack([torch.stack(p, -1) for p in stats], 1), poisoned, empty


def _softmax_grad(gp: torch.Tensor, p: torch.Tensor, shard: Shard) -> torch.Tensor:
    """``p ⊙ (gp - <gp, p>)``, the backward of a softmax (one collective for the dot product)."""
    dot = rank_sum(gather_rows((gp * p).sum(-1, keepdim=True), shard))
    return p * (gp - dot)


def _baseline_backward(plan: Plan, g, phi, stats, index):
    """st, gumbel, reinmax (docs/SPEC.md "Baselines"); one collective each."""
    shard = plan.shard
    if plan.method == "st":
        return _softmax_grad(g, probs(phi, stats[:, 0, 0], stats[:, 0, 1]), shard)
    if plan.method == "gumbel":
        gumbel = _noise(plan, phi.shape[0], phi.device, phi.dtype, "g")
        s = probs((phi + gumbel) / plan.tau, stats[:, 0, 0], stats[:, 0, 1])
        return _softmax_grad(g, s, shard) / plan.tau
    # ReinMax: gphi = (u - p1 sum u) + (w - p0 sum w), zero on masked columns. The reference
    # then subtracts the mean of gphi over the unmasked columns, which is 0 in exact arithmetic
    # (sum p0 = sum p1 = 1 gives sum gphi = U (1 - sum p1) + W (1 - sum p0)): it only moves
    # rounding, so it is left out and both sums travel in one collective.
    p0 = probs(phi, stats[:, 0, 0], stats[:, 0, 1])
    p1 = 0.5 * (probs(phi / plan.tau, stats[:, 1, 0], stats[:, 1, 1])
                + local_one_hot(index, shard, p0))
    u = 2.0 * g * p1
    w = -0.5 * g * p0
    sums = rank_sum(gather_rows(torch.stack([u.sum(-1), w.sum(-1)], 1), shard))
    gphi = (u - p1 * sums[:, :1]) + (w - p0 * sums[:, 1:])
    return torch.where(phi != _NEG_INF, gphi, torch.zeros_like(gphi))


def _redge_backward(plan: Plan, g, phi, stats, index):
    """ReDGE and ReDGE-Max (docs/SPEC.md "ReDGE", "ReDGE-Max"); n - 1 collectives."""
    coefs, shard = plan.coefs, plan.shard
    z = _noise(plan, phi.shape[0], phi.device, phi.dtype, "z")
    saved = lambda k, logits: (stats[:, k, 0], stats[:, k, 1])  # noqa: E731
    l_1, _, traj = run_chain(plan, z, _denoiser(plan, phi, None, None), saved, keep=True)
    p_1 = probs(l_1, *saved(1, l_1))
    if plan.method == "redge_max":
        # gphi = 1/2 (p_1 ⊙ (g - <g, p_1>) + <g, D> D), D = one_hot - p_1; x_1 keeps ST.
        d = local_one_hot(index, shard, p_1) - p_1
        dots = rank_sum(gather_rows(torch.stack([(g * p_1).sum(-1), (g * d).sum(-1)], 1), shard))
        r = p_1 * (g - dots[:, :1])
        gphi = 0.5 * (r + dots[:, 1:] * d)
    else:
        r = _softmax_grad(g, p_1, shard)
        gphi = r
    gx = coefs[1, COEF_C] * r
    for k in range(2, coefs.shape[0]):
        r = _softmax_grad(coefs[k, COEF_A] * gx, traj[k][1], shard)
        gphi = gphi + r
        gx = coefs[k, COEF_C] * r + coefs[k, COEF_B] * gx
    return gphi


def _redge_cov_backward(plan: Plan, g, phi, stats):
    """ReDGE-Cov (docs/SPEC.md "ReDGE-Cov"): the ReDGE steps plus the paths through mu and v,
    ending in the softmax backward of mu = softmax(phi); n collectives.

    With ``q_k = x_k - sigma_k mu - alpha_k / 2`` and ``l_k = phi + c_k lam q_k``: each step adds
    ``r_k`` to gphi, ``c_k lam r_k`` to gx_k, ``-sigma_k c_k lam r_k`` to gmu and ``c_k q_k r_k``
    to glam; then ``x_{n-1} = mu + sqrt(v) z`` and ``lam = 1 / v``, ``v = max(mu (1 - mu), V_MIN)``.
    """
    coefs, shard = plan.coefs, plan.shard
    z = _noise(plan, phi.shape[0], phi.device, phi.dtype, "z")
    saved = lambda k, logits: (stats[:, k, 0], stats[:, k, 1])  # noqa: E731
    mu, pv, lam, sv, x = _base(plan, phi, saved(0, phi), z)
    l_1, x_1, traj = run_chain(plan, x, _denoiser(plan, phi, mu, lam), saved, keep=True)
    traj[1] = (x_1, probs(l_1, *saved(1, l_1)))
    gphi, gmu, glam, gx = 0.0, 0.0, 0.0, None
    for k in range(1, coefs.shape[0]):
        x_k, p_k = traj[k]
        r = _softmax_grad(g if k == 1 else coefs[k, COEF_A] * gx, p_k, shard)
        gphi = gphi + r
        t = coefs[k, COEF_C] * r
        gq = t * lam
        glam = glam + t * (x_k - (coefs[k, COEF_SIGMA] * mu + 0.5 * coefs[k, COEF_ALPHA]))
        gmu = gmu - coefs[k, COEF_SIGMA] * gq
        gx = gq if k == 1 else gq + coefs[k, COEF_B] * gx
    gv = gx * z * (0.5 / sv) - glam * lam * lam
    gmu = gmu + gx + gv * (1.0 - 2.0 * mu) * (pv >= V_MIN).to(mu.dtype)
    return gphi + _softmax_grad(gmu, mu, shard)


def backward(plan: Plan, g, phi, stats, index, poisoned, empty) -> torch.Tensor:
    """``grad_phi [R, K_r]`` (compute dtype): this shard of the unsharded gradient for upstream
    ``g [R, K_r]``. ``index`` is the forward's returned index (-1 on empty and poisoned rows)."""
    if plan.method in ("st", "gumbel", "reinmax"):
        gphi = _baseline_backward(plan, g, phi, stats, index)
    elif plan.method == "redge_cov":
        gphi = _redge_cov_backward(plan, g, phi, stats)
    else:
        gphi = _redge_backward(plan, g, phi, stats, index)
    gphi = torch.where(empty[:, None], torch.zeros_like(gphi), gphi)
    return torch.where(poisoned[:, None], torch.full_like(gphi, float("nan")), gphi)
