"""The estimators on one vocabulary shard, with explicit per-step statistics (docs/SPEC.md
"Vocabulary-parallel", "ReDGE", "ReDGE-Cov", "ReDGE-Max", "Baselines").

The host runs the step loop; every row reduction is a collective (``collectives.py``) and every
step's elementwise part and partial row statistics are one call of a step op
(``redge_kernels.step_ops``: C++ kernels on CPU, Triton on CUDA) on the local columns
``[c0, c0 + K_r)``:

* a softmax of logits ``l`` is ``p_j = exp(l_j - M) / S`` with the global ``(M, S)`` of its step,
  combined from the ops' local ``(m, s)`` (so ``p`` differs from the unsharded one only through
  the rounding of ``S``); a softmax with a temperature, ``softmax(v / tau)`` (Gumbel-Softmax's
  ``v = phi + G``, ReinMax's ``v = phi``), keeps its statistics unscaled, as the unsharded
  kernels: ``M = max v``, ``S = sum exp((v - M) / tau)``, ``p = exp((v - M) / tau) / S``, so
  finite logits near the float limit stay finite for ``tau < 1``;
* the ops draw the unsharded noise of global columns ``c0 ..`` (docs/SPEC.md "Randomness (noise
  contract, version 2)"), so the Gumbel-max scores of the baselines are bitwise those of the
  unsharded call of the same backend;
* the forward keeps only ``stats [R, n, 2]`` (the global ``(M, S)`` of every softmax), the sampled
  index and the row kinds; the backward recomputes the trajectory from the seed and these stats with
  the forward's own op (``run_chain``), so it sees bitwise the forward's ``x_k`` and ``p_k``.

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

from .. import step_ops
from .._constants import METHOD_IDS
from .collectives import INDEX_DTYPES, Shard, combine_argmax, combine_softmax, gather_rows, rank_sum

__all__ = ["Plan", "forward", "backward", "probs", "run_chain", "local_one_hot"]

#: ``exp((v - M) / tau) / S`` (``tau = 1``: ``exp(l - M) / S``) with the masked-softmax guards
#: (the plain-torch formulation).
probs = step_ops.probs


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

    @property
    def method_id(self) -> int:
        return METHOD_IDS[self.method]

    @property
    def ops(self) -> dict:
        """The step ops by name: the registered kernels (C++ on CPU, Triton on CUDA) in float32;
        the plain-torch formulation (``step_ops.REFERENCE``, the noise of ``noise.py``) in
        float64, the accuracy path, whose values then agree with the fp64 reference backend to
        fp64 rounding (the kernels' float32 noise differs from it in the last fp32 ulps)."""
        return step_ops.REFERENCE if self.coefs.dtype == torch.float64 else step_ops.OPS


def _combine(local: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The global ``(M, S)`` ``[R, 2]`` from this rank's local ``(m, s)`` ``[R, 2]`` (one
    collective)."""
    parts = gather_rows(local, shard)
    return torch.stack(combine_softmax(parts[:, :, 0], parts[:, :, 1]), -1)


def _final_step(parts, best, index, kinds, taus, shard: Shard):
    """One collective for everything the forward still needs: the ``(M, S)`` of the ``S``
    softmaxes of the last step (``parts [R, S, 2]``, combined with their temperatures ``taus``,
    ``step_ops.softmax_taus``), the Gumbel-max (``best``, ``index``) and the row kinds
    (``kinds [R, 2]``: local "has NaN or +inf", "all -inf").

    Buffer columns: ``(m, s)`` per softmax, the best score, the global index (its bits in the
    float lane), the two flags. Returns ``(global (M, S) [R, S, 2], index [R] int64,
    poisoned [R] bool, empty [R] bool)``.
    """
    rows, n_soft = parts.shape[0], parts.shape[1]
    at = 2 * n_soft
    buf = torch.cat([parts.reshape(rows, at), best[:, None], torch.zeros_like(best)[:, None],
                     kinds.to(best.dtype)], 1)
    int_dtype = INDEX_DTYPES[buf.dtype]
    buf.view(int_dtype)[:, at + 1] = index.to(int_dtype)
    gathered = gather_rows(buf, shard)
    stats = torch.stack([torch.stack(combine_softmax(gathered[:, :, 2 * i],
                                                     gathered[:, :, 2 * i + 1], taus[i]), -1)
                         for i in range(n_soft)], 1)
    index = combine_argmax(gathered[:, :, at],
                           gathered.view(int_dtype)[:, :, at + 1].to(torch.int64))
    return stats, index, (gathered[:, :, at + 2] != 0).any(0), (gathered[:, :, at + 3] != 0).all(0)


def _noise_args(plan: Plan) -> tuple[int, int, int]:
    """``(seed, col_start, row_start)`` of the step ops."""
    return plan.seed, plan.shard.c0, 0


def run_chain(plan: Plan, phi: torch.Tensor, stats: torch.Tensor) -> dict:
    """The DDIM chain ``x_{n-1} -> x_1`` (docs/SPEC.md "ReDGE", eq. 11) from the saved ``stats``:
    ``{k: x_k}`` for k = n-1 .. 1, by the forward's own ops (bitwise the forward's states)."""
    seed, c0, r0 = _noise_args(plan)
    mid = plan.method_id
    x = plan.ops["step_init"](phi, stats, mid, seed, c0, r0)
    traj = {}
    for k in range(plan.coefs.shape[0] - 1, 1, -1):
        traj[k] = x
        x = plan.ops["step_next"](phi, x, plan.coefs, stats, mid, k)
    traj[1] = x
    return traj


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
    ``softmax((phi + G) / tau)`` for gumbel), slot 1 ``softmax(phi / tau)`` for reinmax, slots
    1 .. n-1 the denoisers. The two tempered slots hold unscaled statistics
    (``(max v, sum exp((v - max v) / tau))``, ``v = phi + G`` or ``phi``).
    """
    mid, coefs, shard = plan.method_id, plan.coefs, plan.shard
    seed, c0, r0 = _noise_args(plan)
    phi = phi.contiguous()
    stats = phi.new_zeros((phi.shape[0], max(coefs.shape[0], 2), 2))
    x = phi.new_empty(0)
    if mid not in step_ops.BASELINES:
        if mid == step_ops.REDGE_COV:
            stats[:, 0] = _combine(plan.ops["step_stats"](phi, x, coefs, stats, mid, 0), shard)
        x = plan.ops["step_init"](phi, stats, mid, seed, c0, r0)
        for k in range(coefs.shape[0] - 1, 1, -1):
            stats[:, k] = _combine(plan.ops["step_stats"](phi, x, coefs, stats, mid, k), shard)
            x = plan.ops["step_next"](phi, x, coefs, stats, mid, k)
    parts, best, index, kinds = plan.ops["step_sample"](phi, x, coefs, stats, mid, plan.tau,
                                                        seed, c0, r0)
    final, index, poisoned, empty = _final_step(parts, best, index, kinds,
                                                step_ops.softmax_taus(mid, plan.tau), shard)
    first = 0 if mid in step_ops.BASELINES else 1
    stats[:, first:first + final.shape[1]] = final
    index = torch.where(empty | poisoned, torch.full_like(index, -1), index)
    kinds = torch.stack([poisoned, empty], 1)
    y = plan.ops["step_output"](phi, x, coefs, stats, index, kinds, mid, plan.hard, plan.tau,
                                seed, c0, r0)
    return y, index, stats, poisoned, empty


def _opt(t):
    """A step op's accumulated output, or None where there is none yet or the step produced
    none (a 1-D ``[0]``)."""
    return None if t is None or t.dim() == 1 else t


def _step_backward(plan: Plan, k: int, g, phi, x, stats, index, gphi, gmu, glam):
    """Backward step k: its partial dots, one collective, then the step's gradient update."""
    mid, coefs = plan.method_id, plan.coefs
    noise = _noise_args(plan)
    dots = plan.ops["step_dot"](g, phi, x, coefs, stats, index, gmu, glam, mid, k, plan.tau,
                                *noise)
    dots = rank_sum(gather_rows(dots, plan.shard))
    return plan.ops["step_grad"](g, phi, x, coefs, stats, index, dots, gphi, gmu, glam, mid, k,
                                 plan.tau, *noise)


def backward(plan: Plan, g, phi, stats, index, poisoned, empty) -> torch.Tensor:
    """``grad_phi [R, K_r]`` (compute dtype): this shard of the unsharded gradient for upstream
    ``g [R, K_r]``. ``index`` is the forward's returned index (-1 on empty and poisoned rows).

    Baselines: one step (k = 0). The chain: steps k = 1 .. n-1 on the recomputed states ``x_k``,
    carrying ``gx`` (and ReDGE-Cov's ``gmu``, ``glam``), then ReDGE-Cov's tail (k = 0) through
    ``mu = softmax(phi)`` and ``v``; ReDGE-Max's step 1 sends ``<g, p_1>`` and ``<g, D>``
    together, ReinMax its two row sums (docs/SPEC.md, each estimator's "Backward")."""
    mid = plan.method_id
    g, phi = g.contiguous(), phi.contiguous()
    none = phi.new_empty(0)
    if mid in step_ops.BASELINES:
        gphi = _step_backward(plan, 0, g, phi, none, stats, index, None, None, None)[0]
    else:
        traj = run_chain(plan, phi, stats)
        gphi, gx, gmu, glam = None, g, None, None
        for k in range(1, plan.coefs.shape[0]):
            gphi, gx, gmu, glam = _step_backward(plan, k, gx, phi, traj[k], stats, index, gphi,
                                                 _opt(gmu), _opt(glam))
        if mid == step_ops.REDGE_COV:
            gphi = _step_backward(plan, 0, gx, phi, none, stats, index, gphi, gmu, glam)[0]
    # Row kinds in place, one pass (gphi is the last op's fresh output): 0 on empty rows, NaN on
    # poisoned ones.
    fill = torch.where(poisoned, float("nan"), 0.0).to(gphi.dtype)
    return torch.where((empty | poisoned)[:, None], fill[:, None], gphi, out=gphi)
