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
                          check_weight, seed_tensor)
from .parallel.check import check_call
from .parallel.function import ShardedSample
from .parallel.steps import Plan

__all__ = ["sample", "sample_embed", "is_sharded"]


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


def _checked_group(logits, group, fn: str):
    """``(local tensor, group, rewrap, mesh)`` after the checks that need no collective:
    ``rewrap`` / ``mesh`` those of a DTensor ``logits`` (``_unwrap_dtensor``), else None."""
    if not dist.is_available():
        raise RuntimeError(f"{fn}: this torch build has no torch.distributed")
    mesh = getattr(logits, "device_mesh", None) if _is_dtensor(logits) else None
    local, group, rewrap = _unwrap_dtensor(logits, group, fn)
    if group is None:
        raise ValueError(f"{fn}: group is required for a vocabulary-parallel call (or pass a "
                         "DTensor sharded on its last dim)")
    if not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"{fn}: group must be a torch.distributed ProcessGroup, got "
                        f"{type(group).__name__}")
    if dist.get_rank(group) < 0:
        raise ValueError(f"{fn}: this process is not a member of group")
    return local, group, rewrap, mesh


def _is_dtensor(x) -> bool:
    mod = sys.modules.get("torch.distributed.tensor")
    return mod is not None and isinstance(x, mod.DTensor)


def _plan(fn, method, local, group, hard, tau, schedule, seed, generator, backend,
          local_error=None, before_check=None) -> Plan:
    """This rank's argument checks, then the once-per-call check (``check_call``, one
    collective; ``before_check(error)``, when given, runs first with this rank's error so far and
    may add collectives of its own), then the call's ``Plan``. Raises on every rank or none."""
    try:
        method_id, hard, tau, seed_value = _check_args(method, local, hard, tau, schedule, seed,
                                                       generator, backend, fn)
        error = local_error
    except (TypeError, ValueError, NotImplementedError) as exc:
        error, method_id, seed_value = exc, 0, 0
    if before_check is not None:
        before_check(error)
    shard = check_call(fn, group, _comm_device(group, local), error, local, seed_value,
                       method_id, hard, tau, schedule if method in DIFFUSION_METHODS else None)
    cdtype = torch.float64 if local.dtype == torch.float64 else torch.float32
    return Plan(method, hard, tau, _coefs(method, schedule, local.device, cdtype), seed_value,
                shard)


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
    local, group, rewrap, _ = _checked_group(logits, group, fn)
    plan = _plan(fn, method, local, group, hard, tau, schedule, seed, generator, backend)
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


# ------------------------------------------------------------ fused sample-and-embed, sharded W
_WEIGHT_FIELDS = ("failed", "matrices", "widths", "needs grad")
_MAX_LISTED = 8  # widths listed one by one in the check (beyond: compared through a hash)


def _local_weights(weight, local, group, fn: str):
    """``(list of [K_r, D_i] local tensors, single)`` from ``weight`` (tensors, or DTensors
    sharded on dim 0 over the group's 1-D mesh); ValueError / TypeError naming the argument."""
    single = isinstance(weight, torch.Tensor)
    if not (single or (isinstance(weight, (list, tuple)) and len(weight) > 0)):
        raise TypeError(f"{fn}: weight must be a [K_r, D] tensor or a non-empty sequence of them, "
                        f"got {type(weight).__name__}")
    out = []
    for i, w in enumerate([weight] if single else weight):
        name = "weight" if single else f"weight[{i}]"
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(w).__name__}")
        if _is_dtensor(w):
            mod = sys.modules["torch.distributed.tensor"]
            mesh, place = w.device_mesh, w.placements
            if mesh.ndim != 1 or not (isinstance(place[0], mod.Shard) and place[0].dim == 0):
                raise ValueError(f"{fn}: a DTensor {name} must be sharded on its first "
                                 f"(vocabulary) dim over a 1-D device mesh, got placements "
                                 f"{place} on a {mesh.ndim}-D mesh")
            if mesh.get_group() is not group:
                raise ValueError(f"{fn}: {name} is a DTensor on another process group than the "
                                 "logits' shards")
            w = w.to_local()
        check_weight(fn, name, w, local, f"this rank's row shard [K_r, D] with K_r = "
                     f"{local.shape[-1]} (the logits shard's last dim)")
        out.append(w)
    return out, single


def _weights_record(error, weights, needs_phi: bool) -> list[int]:
    if error is not None:
        return [1] + [0] * (3 + _MAX_LISTED)
    widths = tuple(int(w.shape[1]) for w in weights)
    grads = (needs_phi,) + tuple(w.requires_grad for w in weights)
    listed = list(widths[:_MAX_LISTED]) + [0] * max(0, _MAX_LISTED - len(widths))
    return [0, len(widths), hash(widths), hash(grads)] + listed


def _check_weights(fn, group, device, error, weights, needs_phi: bool) -> None:
    """One small all-gather: every rank learns whether any rank rejected its arguments, and
    whether the number of matrices, their widths D_i or which inputs need a gradient differ
    across ranks (a mismatch would hang the all-reduce or the backward's collectives); raises
    on every rank then."""
    from .parallel.collectives import Shard, gather_rows
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    buf = torch.tensor([_weights_record(error, weights, needs_phi)], dtype=torch.int64,
                       device=device)
    recs = gather_rows(buf, Shard(group, rank, world, (0,) * world))[:, 0].tolist()
    failed = [r for r in range(world) if recs[r][0]]
    if failed:
        if error is not None:
            raise error
        raise RuntimeError(f"{fn}: rank(s) {failed} of the group rejected their arguments (their "
                           "own error names the argument); no rank ran the call")
    for field, cols in (("matrices", [1]), ("widths D", [2] + list(range(4, 4 + _MAX_LISTED))),
                        ("inputs requiring grad (logits, then each weight)", [3])):
        values = [tuple(recs[r][c] for c in cols) for r in range(world)]
        if len(set(values)) > 1:
            shown = [v[1:] if len(v) > 1 else v[0] for v in values]
            raise ValueError(f"{fn}: the weights' {field} differ across the ranks of the group: "
                             f"{shown} by rank; every rank holds the row shard [K_r, D] of the "
                             "same matrices")


def _partial_embed(y, index, weights, shard, one_hot: bool):
    """This rank's term of ``e_i = y @ W_i`` ``[R, D_i]``: the rows ``W_r[index - c0]`` of the
    samples on this shard (0 elsewhere), or ``y_r @ W_r`` over the local columns (in fp32 for
    half-precision weights, rounded once after the sum)."""
    if one_hot:
        pos = index - shard.c0
        inside = ((index >= 0) & (pos >= 0) & (pos < shard.k_local))[:, None]
        safe = pos.clamp(0, max(shard.k_local - 1, 0))
        return [torch.where(inside, w.index_select(0, safe), 0.0) if shard.k_local
                else w.new_zeros((index.shape[0], w.shape[1])) for w in weights]
    return [y.to(_acc(w)).mm(w.to(_acc(w))) for w in weights]


def _acc(w) -> torch.dtype:
    return torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype


class ShardedEmbed(torch.autograd.Function):
    """``(e_1 [R, D_1], ..., index [R])``: the vocabulary-parallel sample of ``phi [R, K_r]``
    embedded by the row shards ``W_i [K_r, D_i]`` and summed over the ranks (one all-reduce per
    matrix, in matrix order). The backward takes ``G_i = dL/de_i`` as replicated (the same on
    every rank: the all-reduce's backward is the identity, as in VocabParallelEmbedding) and
    returns this shard of the unsharded gradients: ``grad_phi`` from the sharded estimator's
    backward on ``g = sum_i G_i W_i^T [R, K_r]``, ``dL/dW_i = y_r^T G_i``."""

    @staticmethod
    def forward(ctx, phi, plan, *weights):
        from .parallel import steps
        from .parallel.collectives import sum_rows
        cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
        y, index, stats, poisoned, empty = steps.forward(plan, phi.to(cdtype))
        y = y.to(phi.dtype)  # the sample as the unsharded call gives it
        one_hot = plan.hard or plan.method in ("reinmax", "redge_max")
        keep_y = not one_hot and any(ctx.needs_input_grad[2:])
        parts = _partial_embed(y, index, weights, plan.shard, one_hot)
        outs = []
        for w, part in zip(weights, parts):
            e = sum_rows(part, plan.shard).to(w.dtype)
            outs.append(torch.where(poisoned[:, None], float("nan"), e))
        ctx.save_for_backward(phi, stats, index, poisoned, empty, y if keep_y else None,
                              *weights)
        ctx.plan, ctx.one_hot = plan, one_hot
        ctx.mark_non_differentiable(index)
        return (*outs, index)

    @staticmethod
    def backward(ctx, *grads):
        from .parallel import steps
        phi, stats, index, poisoned, empty, y, *weights = ctx.saved_tensors
        plan, cdtype = ctx.plan, stats.dtype
        gs = [g if g is not None else w.new_zeros((phi.shape[0], w.shape[1]))
              for g, w in zip(grads[:-1], weights)]
        gphi = None
        if ctx.needs_input_grad[0]:
            # dL/dy in the logits' dtype, as the unsharded sample_embed forms it
            g = torch.mm(gs[0], weights[0].t())
            for gi, w in zip(gs[1:], weights[1:]):
                g.addmm_(gi, w.t())
            gphi = steps.backward(plan, g.to(cdtype), phi.to(cdtype), stats, index, poisoned,
                                  empty).to(phi.dtype)
        gws = [_weight_grad(gi, w, y, index, poisoned, plan.shard, ctx.one_hot)
               if ctx.needs_input_grad[2 + i] else None
               for i, (gi, w) in enumerate(zip(gs, weights))]
        return (gphi, None, *gws)


def _weight_grad(g, w, y, index, poisoned, shard, one_hot: bool):
    """This shard's rows of ``dL/dW = y^T G`` ``[K_r, D]``: an ``index_add`` of the rows of
    ``G`` whose sample lies on this shard (NaN everywhere when a row is poisoned, as
    ``one_hot^T G`` gives), or ``y_r^T G``; accumulated in fp32 for half precision."""
    acc = _acc(w)
    if not one_hot:
        return y.to(acc).t().mm(g.to(acc)).to(w.dtype)
    out = torch.zeros(w.shape, dtype=acc, device=w.device)
    pos = index - shard.c0
    inside = (index >= 0) & (pos >= 0) & (pos < shard.k_local)
    if shard.k_local:
        out.index_add_(0, pos.clamp(0, shard.k_local - 1),
                       g.to(acc).masked_fill(~inside[:, None], 0.0))
    out = out + torch.where(poisoned.any(), float("nan"), 0.0)
    return out.to(w.dtype)


def sample_embed(method: str, logits, weight, *, group=None, hard: bool = True,
                 tau: float = 1.0, schedule=None, seed=None, generator=None,
                 backend: str = "auto", return_index: bool = False, local_error=None):
    """``sample(method, logits, ...) @ W`` for a vocabulary-sharded ``W`` (Megatron's
    VocabParallelEmbedding), summed over the ranks: the full embedding on every rank
    (docs/SPEC.md "Fused sample-and-embed", "Vocabulary-parallel"; docs/EMBED.md).

    Args:
        logits: ``[..., K_r]``, this rank's contiguous vocabulary shard (or a DTensor sharded on
            its last dim over a 1-D mesh), as in ``sample``.
        weight: this rank's row shard ``[K_r, D]`` of the embedding matrix (rows
            ``[c0_r, c0_r + K_r)``, the logits shard's columns), or a sequence of them (one output
            each, one shared sample), or DTensors sharded on dim 0 over the same mesh; the
            logits' dtype and device.
        local_error: an argument error this rank found before the call (raised on this rank
            and reported to the others, which raise too).
        The others as in ``sample``.

    Returns:
        ``e [..., D]`` per matrix (a tuple for a sequence), the same on every rank (replicated
        DTensors for DTensor logits), and with ``return_index`` the global index ``[...]``.
        The backward expects the same ``dL/de`` on every rank and gives this shard of the
        unsharded gradients of the logits and of each weight.

    Collectives: the check of the weights' widths and ``sample``'s check (two small
    all-gathers), the sampler's steps, one all-reduce ``[R, D_i]`` per matrix; in the backward
    the sampler's steps only.
    """
    fn = "sample_embed"
    local, group, _, mesh = _checked_group(logits, group, fn)
    single, weights = True, []

    def check_weights(error):
        nonlocal single, weights
        if error is None:
            try:
                weights, single = _local_weights(weight, local, group, fn)
            except (TypeError, ValueError) as exc:
                error = exc
        _check_weights(fn, group, _comm_device(group, local), error, weights,
                       isinstance(local, torch.Tensor) and local.requires_grad)

    plan = _plan(fn, method, local, group, hard, tau, schedule, seed, generator, backend,
                 local_error, check_weights)
    shape = local.shape
    phi = local.reshape(shape[:-1].numel(), shape[-1])
    if phi.shape[0] == 0:  # no rows on any rank (the check): empty outputs, still in the graph
        outs = [phi.mm(w) for w in weights]
        index = torch.empty((0,), dtype=torch.int64, device=local.device)
    else:
        *outs, index = ShardedEmbed.apply(phi, plan, *weights)
    outs = [e.reshape(*shape[:-1], e.shape[-1]) for e in outs]
    index = index.reshape(shape[:-1])
    if mesh is not None:
        mod = sys.modules["torch.distributed.tensor"]
        outs = [mod.DTensor.from_local(e, mesh, [mod.Replicate()], run_check=False)
                for e in outs]
        index = mod.DTensor.from_local(index, mesh, [mod.Replicate()], run_check=False)
    result = outs[0] if single else tuple(outs)
    return (result, index) if return_index else result
