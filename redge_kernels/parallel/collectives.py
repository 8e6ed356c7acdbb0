"""The collectives of the vocabulary-parallel estimators (docs/SPEC.md "Vocabulary-parallel").

Every row reduction over the sharded vocabulary is formed from per-rank partials by exactly one
``torch.distributed`` all-gather of a small ``[R, C]`` tensor, after which every rank combines the
gathered partials *in rank order* with the same torch operations:

* softmax of a step: ``M = max_r m_r``, ``S = sum_r s_r exp((m_r - M) / tau)`` (summed
  r = 0, 1, ...; ``tau`` the softmax's temperature, whose statistics stay unscaled: ``m_r`` the
  max of the values ``v`` of ``softmax(v / tau)``, ``s_r = sum_j exp((v_j - m_r) / tau)``; 1 for
  a softmax without one);
* dot products of the backward: ``sum_r d_r`` in rank order;
* Gumbel-max: the first rank, in rank order, whose best score is the largest (ties to the lower
  global index, since shards are contiguous and in rank order, and each rank sends its first
  argmax).

Why an all-gather and not ``all_reduce(MAX)`` then ``all_reduce(SUM)``:

* one collective per step instead of two: at a few floats per row, collectives are latency-bound;
* the result is the same bits on every rank and in every run whatever algorithm (ring, tree,
  NVLS) the communication library picks for that size and topology: the order of the sum is the
  rank order fixed here, not the library's, so no rank ever holds a normaliser 1 ulp away from
  another's;
* the Gumbel-max needs a lexicographic (score, index) reduction that ``all_reduce`` lacks.

The price is ``W`` times the bytes of an all-reduce, a few KiB per step at the sizes that matter
(docs/DISTRIBUTED.md has the numbers).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

__all__ = ["Shard", "gather_rows", "sum_rows", "local_softmax_stats", "combine_softmax",
           "rank_sum", "local_argmax", "combine_argmax", "INDEX_DTYPES"]

# torch >= 2.8 names it all_gather_single; earlier releases all_gather_into_tensor (same contract:
# the output is the inputs concatenated along dim 0 in rank order).
_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
# The one all-reduce: the sum of the per-rank partial embeddings of a vocabulary-sharded weight.
_ALL_REDUCE = dist.all_reduce

#: The integer type whose bits carry a global column index inside a gathered float buffer.
INDEX_DTYPES = {torch.float32: torch.int32, torch.float64: torch.int64}


@dataclasses.dataclass(frozen=True)
class Shard:
    """This rank's place in the sharded vocabulary.

    ``sizes[r]`` is rank r's shard width ``K_r``; this rank holds global columns
    ``[c0, c0 + k_local)`` of the ``k_global`` columns.
    """

    group: object
    rank: int
    world: int
    sizes: tuple

    @property
    def c0(self) -> int:
        return sum(self.sizes[: self.rank])

    @property
    def k_local(self) -> int:
        return self.sizes[self.rank]

    @property
    def k_global(self) -> int:
        return sum(self.sizes)


def gather_rows(buf: torch.Tensor, shard: Shard) -> torch.Tensor:
    """All-gather ``buf [R, C]`` over the group (one collective): ``[W, R, C]``, entry r from
    rank r."""
    buf = buf.contiguous()
    if shard.world == 1:
        return buf[None]
    out = buf.new_empty((shard.world * buf.shape[0],) + tuple(buf.shape[1:]))
    _ALL_GATHER(out, buf, group=shard.group)
    return out.view((shard.world,) + tuple(buf.shape))


def sum_rows(buf: torch.Tensor, shard: Shard) -> torch.Tensor:
    """``buf [R, D]`` summed over the group, on every rank (one all-reduce, in place on a
    contiguous ``buf``; returned). Unlike the statistics, this payload is ``R x D`` (an
    embedding), so it is reduced, not gathered: the summation order is the communication
    library's (every rank receives the same bits: gloo's ring and NCCL's ring and tree reduce
    each element once and broadcast it). Where at most one rank's term of an element is nonzero
    (a hard sample's row lives on one shard) the sum is exact whatever the order."""
    buf = buf.contiguous()
    if shard.world > 1:
        _ALL_REDUCE(buf, op=dist.ReduceOp.SUM, group=shard.group)
    return buf


def _safe_max(m: torch.Tensor) -> torch.Tensor:
    """The max with ``-inf`` replaced by 0 (an all-masked row: exp(l - 0) = 0, no NaN)."""
    return torch.where(m == float("-inf"), torch.zeros_like(m), m)


def local_softmax_stats(logits: torch.Tensor, tau: float = 1.0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """This shard's ``(m_r, s_r)`` of ``softmax(logits / tau)``, ``logits [R, K_r]`` (``v``):
    ``m_r = max_j v_j`` unscaled (``-inf`` on an all-masked or empty shard, NaN when a NaN is
    present), ``s_r = sum_j exp((v_j - m_r) / tau)`` (0 on an all-masked shard). Both ``[R]`` in
    ``logits.dtype``."""
    if logits.shape[-1] == 0:
        m = logits.new_full(logits.shape[:-1], float("-inf"))
        return m, torch.zeros_like(m)
    m = logits.amax(-1)
    shifted = logits - _safe_max(m)[:, None]
    return m, torch.exp(shifted if tau == 1.0 else shifted / tau).sum(-1)


def combine_softmax(m_all: torch.Tensor, s_all: torch.Tensor, tau: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global ``(M, S)`` from the gathered ``m_all, s_all [W, R]`` of a softmax with temperature
    ``tau`` (unscaled statistics, as ``local_softmax_stats``): ``M = max_r m_r`` (NaN
    propagates), ``S = sum_r s_r exp((m_r - M) / tau)`` summed in rank order (``tau = 1``:
    ``exp(m_r - M)``, no division). On a globally all-masked row ``M = -inf`` and ``S = 0``;
    ``probs`` turns both into zeros."""
    big = m_all.amax(0)
    safe = _safe_max(big)
    total = torch.zeros_like(big)
    for r in range(m_all.shape[0]):
        shifted = m_all[r] - safe
        total = total + s_all[r] * torch.exp(shifted if tau == 1.0 else shifted / tau)
    return big, total


def rank_sum(parts: torch.Tensor) -> torch.Tensor:
    """``sum_r parts[r]`` over the leading (rank) dim, in rank order."""
    total = parts[0]
    for r in range(1, parts.shape[0]):
        total = total + parts[r]
    return total


def local_argmax(score: torch.Tensor, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
    """``(best score [R], global index [R] int64)``: this shard's first argmax, as a global column
    (``-inf`` and index ``c0`` on an empty shard)."""
    if score.shape[-1] == 0:
        best = score.new_full(score.shape[:-1], float("-inf"))
        return best, torch.full(best.shape, shard.c0, dtype=torch.int64, device=score.device)
    best, arg = score.max(-1)
    return best, arg + shard.c0


def combine_argmax(best_all: torch.Tensor, index_all: torch.Tensor) -> torch.Tensor:
    """The global first argmax from the gathered ``best_all [W, R]`` and ``index_all [W, R]``:
    rank r replaces the running winner only if its score is strictly larger, so ties go to the
    lower rank, i.e. the lower global index."""
    best, index = best_all[0], index_all[0]
    for r in range(1, best_all.shape[0]):
        take = best_all[r] > best
        best = torch.where(take, best_all[r], best)
        index = torch.where(take, index_all[r], index)
    return index
