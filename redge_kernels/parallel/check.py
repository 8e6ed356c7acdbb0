"""The once-per-call consistency check of a vocabulary-parallel call (one small all-gather).

Every rank sends the same fixed-size int64 record: whether its own argument checks failed, its
leading shape, its shard width ``K_r``, the seed, the method, ``hard``, ``tau``, the schedule and
the dtype. Every rank receives all records, so every rank reaches the same verdict: either all
ranks go on to the step collectives with the same sizes, or all raise, with a message naming the
argument that differs and its value on every rank. Without this, one rank with a different seed
would sample silently different noise, and one with a different row count would hang (or fail
deep inside) the first step's collective.

The check also gives each rank its column offset ``c0 = K_0 + ... + K_{r-1}``.
"""

from __future__ import annotations

import struct

import torch
import torch.distributed as dist

from .collectives import Shard, gather_rows

__all__ = ["check_call"]

_DTYPE_CODES = {torch.float16: 1, torch.bfloat16: 2, torch.float32: 3, torch.float64: 4}
# Record layout; the names are the ones the error messages print.
_FIELDS = ("failed", "rows", "leading shape", "ndim", "K_r", "seed", "method", "hard", "tau",
           "schedule", "dtype")
_FAILED, _ROWS, _SHAPE, _NDIM, _KR, _SEED = range(6)
# An index beyond 2**31 - 1 would not fit the int32 lane of an fp32 Gumbel-max buffer.
_MAX_K = 2**31 - 1


def _tau_bits(tau: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(tau)))[0]


def _schedule_key(schedule) -> int:
    if schedule is None:
        return 0
    # A hash of floats and ints is the same in every process (no hash randomisation for them).
    return hash((schedule.alphas, schedule.sigmas))


def _record(logits, seed: int, method_id: int, hard: bool, tau: float, schedule) -> list[int]:
    shape = tuple(logits.shape)
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return [0, rows, hash(shape[:-1]), len(shape), shape[-1], seed, method_id, int(hard),
            _tau_bits(tau), _schedule_key(schedule), _DTYPE_CODES[logits.dtype]]


def _differs(fn: str, what: str, values: list) -> None:
    hint = " (pass seed=, or seed every rank's generator alike)" if what == "seed" else ""
    raise ValueError(f"{fn}: {what} differs across the ranks of the group: {values} by rank; "
                     f"every rank must make the same call on its own vocabulary shard{hint}")


def check_call(fn: str, group, device, local_error: Exception | None, logits=None, seed: int = 0,
               method_id: int = 0, hard: bool = True, tau: float = 1.0, schedule=None) -> Shard:
    """Gather every rank's record and return this rank's ``Shard``, or raise on every rank.

    ``local_error`` is this rank's own argument error (raised here after the gather, so that the
    other ranks learn of it and raise too instead of waiting in a step collective).
    """
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    if local_error is not None:
        mine = [1] + [0] * (len(_FIELDS) - 1)
    else:
        mine = _record(logits, seed, method_id, hard, tau, schedule)
    buf = torch.tensor([mine], dtype=torch.int64, device=device)
    everyone = gather_rows(buf, Shard(group, rank, world, (0,) * world))[:, 0].tolist()
    failed = [r for r in range(world) if everyone[r][_FAILED]]
    if failed:
        if local_error is not None:
            raise local_error
        raise RuntimeError(f"{fn}: rank(s) {failed} of the group rejected their arguments (their "
                           "own error names the argument); no rank ran the call")
    shapes = [tuple(everyone[r][_ROWS:_NDIM + 1]) for r in range(world)]
    if len(set(shapes)) > 1:
        desc = [f"{rec[0]} rows in {rec[2] - 1} leading dims" for rec in shapes]
        _differs(fn, "leading shape", desc)
    for f in range(_SEED, len(_FIELDS)):
        values = [everyone[r][f] for r in range(world)]
        if len(set(values)) > 1:
            _differs(fn, _FIELDS[f], values)
    sizes = tuple(everyone[r][_KR] for r in range(world))
    total = sum(sizes)
    if total == 0:
        raise ValueError(f"{fn}: the vocabulary has size 0 on every rank; K must be >= 1")
    if total > _MAX_K:
        raise ValueError(f"{fn}: a global vocabulary of {total} columns exceeds 2**31 - 1")
    return Shard(group, rank, world, sizes)
