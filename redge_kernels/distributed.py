"""Vocabulary-parallel sampling: every estimator with the vocabulary K sharded over the ranks of a
``torch.distributed`` process group (docs/SPEC.md "Vocabulary-parallel"; docs/DISTRIBUTED.md).

Rank r holds the contiguous global columns ``[c0_r, c0_r + K_r)`` of every row, shards in rank
order, widths free (50257 columns over 4 ranks is fine, a rank may even hold none). Then::

    y = redge_kernels.distributed.sample("redge", logits_shard, group=tp_group,
                                         schedule=linear_schedule(3, 0.5), seed=1234)

gives this rank's shard of what the unsharded call on the full logits gives with the same seed:
the same sampled indices (``return_index=True``: the *global* index, the same on every rank),
values and gradients equal up to the fp32 rounding of the cross-rank sums. A DTensor sharded on its
last dim over a 1-D device mesh is accepted in place of ``(logits_shard, group)`` and gives DTensors
back (the index replicated).

Communication is ``torch.distributed`` collectives only, in a fixed order: one all-gather of a
small per-row record that checks the call (shapes, seed, arguments) on every rank, then one
all-gather per softmax step of the forward and one per step of the backward (``parallel.steps``
lists them). Every rank of the group must make the same calls in the same order, backward included,
as with any tensor-parallel layer.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from ._constants import DIFFUSION_METHODS, METHOD_IDS
from ._validation import (check_backend, check_hard, check_logits, check_seed, check_tau,
                          seed_tensor)
from .parallel.check import check_call
from .parallel.function import ShardedSample
from .parallel.steps import Plan

__all__ = ["sample", "is_sharded"]


def is_sharded(logits, group=None) -> bool:
    """True when a call must take the vocabulary-parallel path: a ``group`` is given, or
    ``logits`` is a DTensor (only DTensors sharded on the last dim of a 1-D mesh are accepted;
    ``sample`` rejects other layouts with a clear error). Costs no import: a DTensor cannot exist
    before ``torch.distributed.tensor`` was imported."""
    if group is not None:
        return True
    mod = sys.modules.get("torch.distributed.tensor")
    return mod is not None and isinstance(logits, mod.DTensor)


def _unwrap_dtensor(logits, group, fn: str):
    """``(local tensor, group, rewrap)`` for a DTensor ``logits`` (``rewrap(y, index)`` builds the
    DTensor outputs), else ``(logits, group, None)``."""
    mod = sys.modules.get("torch.distributed.tensor")
    if mod is None or not isinstance(logits, mod.DTensor):
        return logits, group, None
    mesh, placements = logits.device_mesh, logits.placements
    last = logits.dim() - 1
    if mesh.ndim != 1 or not (isinstance(placements[0], mod.Shard)
                              and placements[0].dim in (-1, last)):
        raise ValueError(f"{fn}: a DTensor logits must be sharded on its last (vocabulary) dim "
                         f"over a 1-D device mesh, got placements {placements} on a "
                         f"{mesh.ndim}-D mesh; redistribute it to [Shard(-1)] or pass "
                         "full_tensor() without a group")
    mesh_group = mesh.get_group()
    if group is not None and group is not mesh_group:
        raise ValueError(f"{fn}: group is not the process group of the DTensor's device mesh; "
                         "pass group=None with a DTensor")
    shape, stride = logits.shape, logits.stride()

    def rewrap(y, index):
        y = mod.DTensor.from_local(y, mesh, placements, run_check=False, shape=shape,
                                   stride=stride)
        return y, mod.DTensor.from_local(index, mesh, [mod.Replicate()], run_check=False)
    return logits.to_local(), mesh_group, rewrap


def _check_args(method, logits, hard, tau, schedule, seed, generator, backend, fn):
    """This rank's own argument checks (``api.sample``'s, except that a shard may hold no
    column). Returns ``(method id, hard, tau, int seed)``; the seed is read on the host."""
    if method not in METHOD_IDS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {sorted(METHOD_IDS)}")
    if isinstance(logits, torch.Tensor) and logits.dim() > 0 and logits.shape[-1] == 0:
        check_logits(logits.new_empty(logits.shape[:-1] + (1,)), fn)
    else:
        check_logits(logits, fn)
    hard = check_hard(hard, fn)
    tau = check_tau(tau, fn)
    check_backend(backend, fn)
    if method in ("reinmax", "redge_max") and not hard:
        raise NotImplementedError(f"{fn}: hard=False is not defined for {method} (its gradient "
                                  "is tied to the hard sample); use hard=True")
    if method in DIFFUSION_METHODS and schedule is None:
        raise ValueError(f"{fn}: a schedule is required")
    # An int seed is checked on the host (no device round trip); a drawn one comes from the
    # generator of the logits' device, as in api.sample.
    where = torch.empty(0) if isinstance(seed, int) else logits
    seed = check_seed(seed, generator, where, fn)
    return METHOD_IDS[method], hard, tau, int(seed_tensor(where, seed, generator))


def _comm_device(group, logits) -> torch.device:
    if isinstance(logits, torch.Tensor):
        return logits.device
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _coefs(method: str, schedule, device, dtype) -> torch.Tensor:
    """The ``[n, 5]`` schedule table (docs/SPEC.md "Time grid"); baselines get 2 unused rows."""
    if method in DIFFUSION_METHODS:
        return schedule.table(device, dtype=dtype)
    return torch.zeros(2, 5, dtype=dtype, device=device)


def sample(method: str, logits, *, group=None, hard: bool = True, tau: float = 1.0,
           schedule=None, seed=None, generator=None, backend: str = "auto",
           return_index: bool = False):
    """Estimator ``method`` (``st, gumbel, reinmax, redge, redge_cov, redge_max``) on this rank's
    vocabulary shard; the semantics of ``redge_kernels.api.sample`` on the full logits.

    Args:
        logits: ``[..., K_r]`` float tensor, this rank's contiguous shard of the global
            ``[..., K]`` (same leading shape on every rank), or a DTensor sharded on its last dim
            over a 1-D mesh (then ``group`` may be None).
        group: the ``torch.distributed`` process group over which K is sharded, shards in the
            group's rank order.
        seed / generator: as in ``api.sample``; every rank must end up with the same seed (pass
            ``seed=``, or seed every rank's generator alike), else every rank raises.
        backend: accepted for signature parity; the per-step elementwise work runs as torch ops
            on the logits' device whatever its value.

    Returns:
        ``y`` ``[..., K_r]`` (``logits.dtype``; this rank's columns of the unsharded output), or
        ``(y, index)`` with ``index`` int64 ``[...]``, the global sampled column (-1 on empty or
        poisoned rows), the same on every rank.

    Raises:
        ValueError / TypeError / NotImplementedError: on every rank, before any step collective,
        when an argument is wrong on some rank or differs across ranks.
    """
    fn = method if isinstance(method, str) else "sample"
    if not dist.is_available():
        raise RuntimeError(f"{fn}: this torch build has no torch.distributed")
    local, group, rewrap = _unwrap_dtensor(logits, group, fn)
    if group is None:
        raise ValueError(f"{fn}: group is required for a vocabulary-parallel call (or pass a "
                         "DTensor sharded on its last dim)")
    if not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"{fn}: group must be a torch.distributed ProcessGroup, got "
                        f"{type(group).__name__}")
    if dist.get_rank(group) < 0:
        raise ValueError(f"{fn}: this process is not a member of group")
    try:
        method_id, hard, tau, seed_value = _check_args(method, local, hard, tau, schedule, seed,
                                                       generator, backend, fn)
        error = None
    except (TypeError, ValueError, NotImplementedError) as exc:
        error, method_id, seed_value = exc, 0, 0
    shard = check_call(fn, group, _comm_device(group, local), error, local, seed_value,
                       method_id, hard, tau, schedule if method in DIFFUSION_METHODS else None)
    cdtype = torch.float64 if local.dtype == torch.float64 else torch.float32
    plan = Plan(method, hard, tau, _coefs(method, schedule, local.device, cdtype), seed_value,
                shard)
    shape = local.shape
    phi = local.reshape(shape[:-1].numel(), shape[-1])  # K_r may be 0: no -1 in the reshape
    if phi.shape[0] == 0:
        y = local.clone()  # no rows: an empty output, still in the graph
        index = torch.empty(shape[:-1], dtype=torch.int64, device=local.device)
    else:
        y, index = ShardedSample.apply(phi, plan)
        y, index = y.reshape(shape), index.reshape(shape[:-1])
    if rewrap is not None:
        y, index = rewrap(y, index)
    return (y, index) if return_index else y
