"""Fused sample-and-embed: ``e = y @ W`` without an ``R x K`` sample or gradient (docs/SPEC.md
section 11; design and memory budget in docs/EMBED.md).

``sample_embed(logits, weight, sampler, hard)`` equals ``SAMPLERS[sampler](logits, hard=hard) @ W``
(for each matrix W of ``weight``; one shared sample): the same noise, the same index, the same
values and both gradients to fp32 rounding. What it never holds is the ``[R, K]`` one-hot y and
its ``[R, K]`` gradient ``G @ W^T``:

* forward, hard sample (always for reinmax, redge_max): the fused forward op runs once on all rows
  with ``write_y=False`` (stats and index only) and the value is the gather ``W[index]``
  (bitwise ``one_hot(index) @ W``); soft sample: ``y_soft @ W`` chunk by chunk of rows;
* backward: ``g = sum_i G_i W_i^T`` (the platform's matmul, all rows at once) is written into
  the buffer that becomes the logits' gradient; the fused backward op then runs per chunk of rows
  ``[r0, r1)`` with ``row_start = r0`` and the chunk's stats and index, and its output is copied
  back over the chunk's rows of g; ``dL/dW = y^T G`` (an ``index_add`` of G's rows for hard
  samples, ``y_chunk^T G_chunk`` with the soft chunk recomputed otherwise).

Peak memory beyond the logits, their gradient, the weights' gradients and the outputs:
``chunk_rows x K`` values plus ``O(R x D)``; ``chunk_rows`` comes from a byte budget
(``memory_budget=`` or the environment variable ``REDGE_KERNELS_EMBED_BUDGET_MB``; default an
eighth of the logits' size, between 4 and 64 MiB: see ``chunk_rows``).

The fused backends run through two ops defined here, ``redge_kernels::embed_fwd`` /
``::embed_bwd`` (schemas below; one opaque node each under ``torch.compile``); the reference backend
runs ``reference.sample`` chunk by chunk under activation checkpointing (same noise through
``row_start``, same memory bound, plain autograd).

Forward mode and double backward are those of the unfused composition, not fused paths: under a
forward-mode level or a ``torch.func`` transform ``sample_embed`` runs the sampler's registered op
(whose autograd has the forward-mode and functorch rules) and multiplies its ``y``; a backward
taken with ``create_graph=True`` is built from the registered ``fwd`` / ``bwd`` ops with their
own autograd (``[R, K]`` buffers). A tangent that reaches ``embed_fwd`` / ``embed_bwd`` directly
raises NotImplementedError.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.autograd import forward_ad
from torch.utils.checkpoint import checkpoint

from . import _backends, api, ops, reference  # noqa: F401  (ops defines fwd / bwd first)
from ._constants import DIFFUSION_METHODS, METHOD_IDS
from ._validation import (check_backend, check_hard, check_logits, check_seed, check_tau,
                          check_weight, seed_tensor)
from .registry import _ALLOWED, DEFAULTS, SAMPLERS

__all__ = ["sample_embed", "chunk_rows", "BUDGET_ENV"]

#: Environment variable overriding the default chunk budget, in MiB.
BUDGET_ENV = "REDGE_KERNELS_EMBED_BUDGET_MB"
_MIB = 1 << 20
_MIN_BUDGET, _MAX_BUDGET = 4 * _MIB, 64 * _MIB
_ONE_HOT_ALWAYS = (METHOD_IDS["reinmax"], METHOD_IDS["redge_max"])
_FAMILY_KWARGS = {"n_steps", "t_1", "tau", "times"}

_LIB = torch.library.Library("redge_kernels", "FRAGMENT")
_LIB.define("embed_fwd(Tensor phi, Tensor seed, Tensor coefs, Tensor[] weights, str backend,"
            " int method, bool hard, float tau, int chunk_rows) -> (Tensor[], Tensor, Tensor)")
_LIB.define("embed_bwd(Tensor[] grads, Tensor phi, Tensor seed, Tensor coefs, Tensor[] weights,"
            " Tensor stats, Tensor index, str backend, int method, bool hard, float tau,"
            " int chunk_rows, bool need_phi, bool[] need_weights) -> (Tensor, Tensor[])")


def chunk_rows(rows: int, k: int, itemsize: int, memory_budget: int | None = None) -> int:
    """Rows per chunk so that one chunk's ``[chunk, K]`` temporary takes at most the budget.

    The budget (bytes) is ``memory_budget`` when given, else ``REDGE_KERNELS_EMBED_BUDGET_MB``
    MiB when that is set, else ``rows * k * itemsize / 8`` (an eighth of the logits) clamped to
    [4 MiB, 64 MiB]. At least one row, at most ``rows``.
    """
    if memory_budget is None:
        env = os.environ.get(BUDGET_ENV, "")
        if env:
            memory_budget = int(float(env) * _MIB)
        else:
            memory_budget = min(max(rows * k * itemsize // 8, _MIN_BUDGET), _MAX_BUDGET)
    return max(1, min(rows, memory_budget // max(1, k * itemsize)))


def _chunks(rows: int, size: int):
    return [(r0, min(rows, r0 + size)) for r0 in range(0, rows, size)]


def _kernels(backend: str, device: torch.device):
    """The fused forward / backward ops for ``backend`` on ``device``: ``redge_kernels::fwd`` /
    ``bwd`` on the backend's own device, ``interpreted_fwd`` / ``interpreted_bwd`` for Triton on
    CPU tensors under the interpreter (``_backends.op_pair``; ``resolve`` registered them). They
    run below autograd here (this op's own autograd kernel is the Function below)."""
    pair = _backends.op_pair(backend, device.type)
    return pair.fwd, pair.bwd


def _row_kinds(phi: torch.Tensor):
    """(empty, poisoned) ``[R]`` masks (ops.py row conventions) from one read of the logits."""
    m = phi.amax(-1)
    return m == float("-inf"), torch.isnan(m) | (m == float("inf"))


def _unsampled_rows(phi, index):
    """``(rows, poisoned)``: the rows without a sample (index -1) and which of them hold a NaN or
    ``+inf`` logit (ops.py row conventions), as ``[B]`` int64 / bool tensors, or ``None`` when
    every row has a sample. On the CPU only those rows of the logits are read (usually none: no
    pass over the logits); on other devices one ``amax`` pass over all rows, ``rows`` then being
    all of them (no host sync)."""
    if phi.device.type != "cpu":
        return torch.arange(phi.shape[0], device=phi.device), _row_kinds(phi)[1] & (index < 0)
    rows = (index < 0).nonzero().flatten()
    if rows.numel() == 0:
        return None
    return rows, _row_kinds(phi.index_select(0, rows))[1]


# On the CPU the fused path's small memory-bound steps (the gather of a hard sample's rows, the
# copy of a backward chunk back into the gradient) run serially through numpy views: each is well
# under a millisecond of work, and as ATen ops each would be a parallel region whose second thread,
# on a loaded machine, can take 10-30 ms to be scheduled (docs/EMBED.md "Measured").
_AS_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _np(t: torch.Tensor):
    """A numpy view of the bits of a contiguous CPU tensor (any dtype, bf16 included)."""
    return t.detach().view(_AS_INT[t.element_size()]).numpy()


def _serial(*tensors) -> bool:
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def _serial_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)``: one serial ``memcpy`` for contiguous CPU tensors of one dtype."""
    if _serial(dst, src) and dst.dtype == src.dtype:
        np.copyto(_np(dst), _np(src))
    else:
        dst.copy_(src)


def _gather_rows(w: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``w.index_select(0, index)`` (``index`` in range), serial on the CPU."""
    if _serial(w, index):
        out = w.new_empty((index.shape[0], w.shape[1]))
        np.take(_np(w), index.numpy(), axis=0, out=_np(out))
        return out
    return w.index_select(0, index)


def _stats_dtype(phi):
    return torch.float64 if phi.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------- fused forward
def _refuse_tangents(tensors, what):
    """NotImplementedError when a forward-mode tangent reaches the fused embed ops: their
    autograd has no forward-mode rule (``sample_embed`` takes the unfused path under forward
    mode instead), and the tangent would otherwise be dropped silently."""
    if forward_ad._current_level < 0:
        return
    if any(forward_ad.unpack_dual(t).tangent is not None for t in tensors):
        raise NotImplementedError(
            f"redge_kernels::{what}: forward-mode AD (tangents) is not supported by the fused "
            "embed ops; call redge_kernels.sample_embed (which runs the unfused sample @ W under "
            "forward mode) or compose the sampler with a matmul")


def _embed_fwd(phi, seed, coefs, weights, backend, method, hard, tau, chunk_rows):
    """``([e_i [R, D_i]], stats [R, n, 2], index [R])`` (docs/SPEC.md section 11)."""
    _refuse_tangents([phi, *weights], "embed_fwd")
    kfwd, _ = _kernels(backend, phi.device)
    rows = phi.shape[0]
    if hard or method in _ONE_HOT_ALWAYS:
        _, stats, index = kfwd(phi, seed, coefs, method, hard, tau, 0, False)
        safe = index.clamp_min(0)
        outs = [_gather_rows(w, safe) for w in weights]
        unsampled = _unsampled_rows(phi, index)
        if unsampled is not None:  # 0 (empty) or NaN (poisoned), as one_hot(index) @ W gives
            rows, poisoned = unsampled
            keep = (index[rows] >= 0)[:, None]
            fill = torch.where(poisoned, float("nan"), 0.0).to(phi.dtype)[:, None]
            for e in outs:
                e[rows] = torch.where(keep, e[rows], fill)
        return outs, stats, index
    outs = [phi.new_empty((rows, w.shape[1])) for w in weights]
    stats = phi.new_empty((rows, coefs.shape[0], 2), dtype=_stats_dtype(phi))
    index = phi.new_empty((rows,), dtype=torch.int64)
    for r0, r1 in _chunks(rows, chunk_rows):
        y, st, ix = kfwd(phi[r0:r1], seed, coefs, method, hard, tau, r0, True)
        for w, e in zip(weights, outs):
            torch.mm(y, w, out=e[r0:r1])
        stats[r0:r1] = st
        index[r0:r1] = ix
    return outs, stats, index


def _embed_fwd_fake(phi, seed, coefs, weights, backend, method, hard, tau, chunk_rows):
    rows = phi.shape[0]
    outs = [phi.new_empty((rows, w.shape[1])) for w in weights]
    stats = phi.new_empty((rows, coefs.shape[0], 2), dtype=_stats_dtype(phi))
    return outs, stats, phi.new_empty((rows,), dtype=torch.int64)


# ------------------------------------------------------------------------------ fused backward
def _acc_dtype(w):
    return torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype


def _grad_y(grads, weights):
    """``g = sum_i G_i W_i^T`` ``[R, K]``: the buffer that becomes the logits' gradient."""
    g = torch.mm(grads[0], weights[0].t())
    for gi, w in zip(grads[1:], weights[1:]):
        g.addmm_(gi, w.t())
    return g


def _one_hot_weight_grads(grads, phi, weights, index, wanted):
    """``one_hot^T G_i`` for the wanted i: one ``index_add`` of G's rows over all rows (G is
    ``[R, D]``: no chunks needed), rows without a sample adding nothing; NaN everywhere when a
    row is poisoned (its one-hot is NaN everywhere, so ``y^T G`` is, as unfused). fp32
    accumulation for half-precision weights."""
    unsampled = _unsampled_rows(phi, index)
    out = []
    for i in wanted:
        acc = torch.zeros(weights[i].shape, dtype=_acc_dtype(weights[i]),
                          device=weights[i].device)
        src = grads[i] if unsampled is None else grads[i].masked_fill((index < 0)[:, None], 0.0)
        acc.index_add_(0, index.clamp_min(0), src.to(acc.dtype))
        if unsampled is not None:
            acc.add_(torch.where(unsampled[1].any(), float("nan"), 0.0).to(acc.dtype))
        out.append(acc.to(weights[i].dtype))
    return out


def _weight_grads(grads, phi, seed, coefs, weights, index, kfwd, method, hard, tau, chunks,
                  wanted):
    """``dL/dW_i = y^T G_i`` for the wanted i (docs/SPEC.md section 11): an ``index_add`` for
    a one-hot sample, else ``y_chunk^T G_chunk`` chunk by chunk with the chunk's soft sample
    recomputed (same noise: ``row_start``), accumulated in fp32 for half-precision weights."""
    if hard or method in _ONE_HOT_ALWAYS:
        return _one_hot_weight_grads(grads, phi, weights, index, wanted)
    accs = {i: torch.zeros(weights[i].shape, dtype=_acc_dtype(weights[i]),
                           device=weights[i].device) for i in wanted}
    for r0, r1 in chunks:
        y = kfwd(phi[r0:r1], seed, coefs, method, hard, tau, r0, True)[0]
        for i in wanted:
            accs[i].add_(torch.mm(y.t(), grads[i][r0:r1]))
        del y
    return [accs[i].to(weights[i].dtype) for i in wanted]


def _embed_bwd(grads, phi, seed, coefs, weights, stats, index, backend, method, hard, tau,
               chunk_rows, need_phi, need_weights):
    """``(grad_phi [R, K] (or [0] when not needed), [dL/dW_i for each needed W_i])``.

    ``g = sum_i G_i W_i^T`` is formed for all rows at once in the buffer that becomes the logits'
    gradient (one large matmul per matrix: the platform's fastest shape); the fused backward then
    runs chunk by chunk, reading the chunk's rows of ``g`` and writing them back, so the only
    other ``[., K]`` buffer is one chunk's output."""
    _refuse_tangents([*grads, phi, *weights], "embed_bwd")
    kfwd, kbwd = _kernels(backend, phi.device)
    chunks = _chunks(phi.shape[0], chunk_rows)
    wanted = [i for i, nd in enumerate(need_weights) if nd]
    gws = _weight_grads(grads, phi, seed, coefs, weights, index, kfwd, method, hard, tau, chunks,
                        wanted) if wanted else []
    if not need_phi:
        return phi.new_empty((0,)), gws
    g = _grad_y(grads, weights)
    if len(chunks) == 1:
        return kbwd(g, phi, seed, coefs, stats, index, method, hard, tau, 0), gws
    for r0, r1 in chunks:
        gc = g[r0:r1]
        _serial_copy(gc, kbwd(gc, phi[r0:r1], seed, coefs, stats[r0:r1], index[r0:r1], method,
                              hard, tau, r0))
    return g, gws


def _embed_bwd_fake(grads, phi, seed, coefs, weights, stats, index, backend, method, hard, tau,
                    chunk_rows, need_phi, need_weights):
    gphi = phi.new_empty(phi.shape if need_phi else (0,))
    return gphi, [torch.empty_like(w) for w, nd in zip(weights, need_weights) if nd]


_LIB.impl("embed_fwd", _embed_fwd, "CompositeExplicitAutograd")
_LIB.impl("embed_bwd", _embed_bwd, "CompositeExplicitAutograd")
torch.library.register_fake("redge_kernels::embed_fwd", _embed_fwd_fake)
torch.library.register_fake("redge_kernels::embed_bwd", _embed_bwd_fake)


def _setup_context(ctx, inputs, output):
    phi, seed, coefs, weights, backend, method, hard, tau, chunk = inputs
    _, stats, index = output
    ctx.save_for_backward(phi, seed, coefs, stats, index, *weights)
    ctx.args = (backend, method, hard, tau, chunk)
    ctx.need_phi = phi.requires_grad
    ctx.need_weights = [w.requires_grad for w in weights]
    ctx.mark_non_differentiable(stats, index)


def _differentiable_bwd(grads, phi, seed, coefs, weights, stats, index, backend, method, hard,
                        tau, need_phi, need_weights):
    """The backward as the unfused composition ``y @ W`` differentiates it, built from the
    registered ``fwd`` / ``bwd`` ops with their own autograd (``ops``): ``grad_phi = J^T (sum_i
    G_i W_i^T)``, ``dL/dW_i = y^T G_i``. Used when the backward itself is differentiated
    (``create_graph=True``): exact double backward, at the cost of ``[R, K]`` buffers."""
    pair = _backends.op_pair(backend, phi.device.type)
    gphi = phi.new_empty((0,))
    if need_phi:
        g = _grad_y(grads, weights)
        gphi = ops.call_bwd(pair, g, phi, seed, coefs, stats, index, method, hard, tau, 0)
    gws = []
    if any(need_weights):
        y = ops.call_fwd(pair, phi, seed, coefs, method, hard, tau, 0, True)[0]
        gws = [y.t().mm(gi) for gi, nd in zip(grads, need_weights) if nd]
    return gphi, gws


def _backward(ctx, grad_outs, grad_stats, grad_index):
    phi, seed, coefs, stats, index, *weights = ctx.saved_tensors
    grads = [g if g is not None else phi.new_zeros((phi.shape[0], w.shape[1]))
             for g, w in zip(grad_outs, weights)]
    if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
        backend, method, hard, tau, _ = ctx.args
        gphi, gws = _differentiable_bwd(grads, phi, seed, coefs, weights, stats, index, backend,
                                        method, hard, tau, ctx.need_phi, ctx.need_weights)
    else:
        gphi, gws = torch.ops.redge_kernels.embed_bwd(grads, phi, seed, coefs, weights, stats,
                                                      index, *ctx.args, ctx.need_phi,
                                                      ctx.need_weights)
    it = iter(gws)
    gw = [next(it) if nd else None for nd in ctx.need_weights]
    return (gphi if ctx.need_phi else None), None, None, gw, None, None, None, None, None


torch.library.register_autograd("redge_kernels::embed_fwd", _backward,
                                setup_context=_setup_context)


# ---------------------------------------------------------------------------- reference backend
def _reference_embed(phi, seed, weights, method, schedule, hard, tau, chunk):
    """The reference estimator chunk by chunk (noise of the global rows), ``y_chunk @ W``
    recomputed in the backward (activation checkpointing): ``([e_i], index)``."""
    parts, idx = [], []

    def run(p, r0, *ws):
        y, ix = reference.sample(method, p, seed, schedule, hard, tau, row_start=r0)
        return (ix, *(y @ w for w in ws))

    for r0, r1 in _chunks(phi.shape[0], chunk):
        ix, *es = checkpoint(run, phi[r0:r1], r0, *weights, use_reentrant=False)
        parts.append(es)
        idx.append(ix)
    if len(parts) == 1:
        return parts[0], idx[0]
    return [torch.cat(col) for col in zip(*parts)], torch.cat(idx)


# ------------------------------------------------------------------------------------ public op
def _resolve_sampler(sampler, hyperparameters, fn):
    """``(method, schedule or None, tau)`` for a ``SAMPLERS`` name and its hyperparameters."""
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"{fn}: unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    unknown = set(hyperparameters) - _FAMILY_KWARGS
    if unknown:
        raise TypeError(f"{fn}() got unexpected keyword argument(s) {sorted(unknown)}")
    params = {**DEFAULTS[sampler],
              **{k: v for k, v in hyperparameters.items() if k in _ALLOWED[sampler]}}
    method = "redge_max" if sampler == "reindge" else sampler
    tau = check_tau(params.get("tau", 1.0), fn)
    schedule = None
    if method in DIFFUSION_METHODS:
        schedule = api._schedule(params["n_steps"], params["t_1"], params.get("times"))
    return method, schedule, tau


def _check_weights(weight, logits, fn):
    """``(list of [K, D_i] tensors, single)``; TypeError / ValueError naming the argument."""
    single = isinstance(weight, torch.Tensor)
    if single:
        weights = [weight]
    elif isinstance(weight, (list, tuple)) and len(weight) > 0:
        weights = list(weight)
    else:
        raise TypeError(f"{fn}: weight must be a [K, D] tensor or a non-empty sequence of them, "
                        f"got {type(weight).__name__}")
    k = logits.shape[-1]
    for i, w in enumerate(weights):
        name = "weight" if single else f"weight[{i}]"
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(w).__name__}")
        check_weight(fn, name, w, logits, f"[K, D] with K = {k} (the logits' last dim)")
    return weights, single


def _check_budget(memory_budget, fn: str) -> None:
    if memory_budget is not None and (isinstance(memory_budget, bool)
                                      or not isinstance(memory_budget, int) or memory_budget < 1):
        raise ValueError(f"{fn}: memory_budget must be a positive int (bytes), "
                         f"got {memory_budget!r}")


def _any_dtensor(weight) -> bool:
    from . import distributed
    ws = [weight] if isinstance(weight, torch.Tensor) else weight
    return isinstance(ws, (list, tuple)) and any(distributed.is_sharded(w) for w in ws)


def _sharded_embed(logits, weight, sampler, hard, group, seed, generator, backend, return_index,
                   memory_budget, hyperparameters):
    """The vocabulary-parallel call (``distributed.sample_embed``): an argument this rank
    rejects here travels as its local error, so that every rank raises, none hangs."""
    from . import distributed
    fn = "sample_embed"
    method, schedule, tau, error = "st", None, 1.0, None
    try:
        method, schedule, tau = _resolve_sampler(sampler, hyperparameters, fn)
        _check_budget(memory_budget, fn)
    except (TypeError, ValueError) as exc:
        method, schedule, tau, error = "st", None, 1.0, exc
    return distributed.sample_embed(method, logits, weight, group=group, hard=hard, tau=tau,
                                    schedule=schedule, seed=seed, generator=generator,
                                    backend=backend, return_index=return_index,
                                    local_error=error)


def sample_embed(logits: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor],
                 sampler: str = "redge", hard: bool = True, *, seed=None, generator=None,
                 backend: str = "auto", return_index: bool = False,
                 memory_budget: int | None = None, group=None, **hyperparameters):
    """``SAMPLERS[sampler](logits, hard=hard, **hyperparameters) @ W`` for each W, fused.

    Args:
        logits: ``[..., K]`` float tensor (fp16/bf16/fp32/fp64).
        weight: a ``[K, D]`` tensor, or a sequence of ``[K, D_i]`` tensors (one output each, one
            shared sample); the logits' device and dtype.
        sampler: a key of ``SAMPLERS`` (``st, gumbel, reinmax, redge, redge_cov, redge_max,
            reindge``); ``hyperparameters`` as that sampler takes them (defaults:
            ``registry.DEFAULTS``; the other samplers' ones are accepted and ignored).
        hard: embed the one-hot sample (its estimator's gradient) or the soft sample.
        seed, generator, backend: as in ``api`` (same seed, same sample as the unfused call).
        return_index: also return the sampled index (``logits.shape[:-1]``, int64, -1 on empty
            or poisoned rows).
        memory_budget: bytes for one chunk's ``[chunk, K]`` temporary (see ``chunk_rows``;
            checked but unused with ``group``).
        group: a ``torch.distributed`` ProcessGroup over which the vocabulary is sharded
            (docs/DISTRIBUTED.md): ``logits`` are this rank's shard ``[..., K_r]`` and each weight
            this rank's row shard ``[K_r, D]`` (Megatron's VocabParallelEmbedding; DTensors
            sharded on the logits' last dim / the weight's first dim of a 1-D mesh are accepted
            without a group). Returns the full embedding on every rank (one all-reduce of
            ``[R, D]`` per matrix), the global index, and in the backward this rank's shards of
            the logits' and the weights' gradients (``distributed.sample_embed``).

    Returns:
        ``[..., D]`` tensor of ``logits.dtype`` (a tuple of them for a sequence of weights), and
        the index when ``return_index``.
    """
    fn = "sample_embed"
    if group is not None or _any_dtensor([logits]) or _any_dtensor(weight):
        return _sharded_embed(logits, weight, sampler, hard, group, seed, generator, backend,
                              return_index, memory_budget, hyperparameters)
    method, schedule, tau = _resolve_sampler(sampler, hyperparameters, fn)
    check_logits(logits, fn)
    hard = check_hard(hard, fn)
    check_backend(backend, fn)
    if method in ("reinmax", "redge_max") and not hard:
        raise NotImplementedError(f"{fn}: hard=False is not defined for {method}; use hard=True")
    weights, single = _check_weights(weight, logits, fn)
    _check_budget(memory_budget, fn)
    seed = check_seed(seed, generator, logits, fn)
    shape = logits.shape
    k = shape[-1]
    phi = logits.reshape(-1, k)
    rows = phi.shape[0]
    # Resolved before the seed is drawn: an unavailable backend leaves the RNG untouched.
    name = _backends.resolve(backend, phi, fn) if rows > 0 else "reference"
    seed_t = seed_tensor(logits, seed, generator)
    chunk = chunk_rows(rows, k, phi.element_size(), memory_budget)
    if rows == 0:
        outs, index = [phi.mm(w) for w in weights], phi.new_empty((0,), dtype=torch.int64)
    elif name != "reference" and ops._forward_mode_possible():
        # forward mode (dual tensors, torch.func transforms): the unfused sample @ W through the
        # registered op, whose autograd has the forward-mode and functorch rules
        y, index = api._run(name, method, phi, seed_t, schedule, hard, tau)
        outs = [y.mm(w) for w in weights]
    elif name == "reference":
        outs, index = _reference_embed(phi, seed_t, weights, method, schedule, hard, tau, chunk)
    else:
        sched = schedule if method in DIFFUSION_METHODS else api._BASELINE_SCHEDULE
        coefs = sched.table(phi.device, dtype=_stats_dtype(phi))
        outs, _, index = torch.ops.redge_kernels.embed_fwd(
            phi, seed_t, coefs, weights, name, METHOD_IDS[method], hard, tau, chunk)
    outs = [e.reshape(*shape[:-1], e.shape[-1]) for e in outs]
    result = outs[0] if single else tuple(outs)
    return (result, index.reshape(shape[:-1])) if return_index else result
