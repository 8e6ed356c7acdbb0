"""The registered op boundary shared by the fused backends (torch only; no backend imports here).

Two custom ops, defined once here; each backend registers its kernel for its dispatch key
(the C++ extension for ``CPU``, the Triton launcher for ``CUDA``)::

    redge_kernels::fwd(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau,
                       int row_start=0, bool write_y=True) -> (Tensor y, Tensor stats, Tensor index)
    redge_kernels::bwd(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats,
                       Tensor index, int method, bool hard, float tau, int row_start=0)
        -> Tensor grad_phi

Arguments (R rows, K vocabulary, n = n_steps):

* ``phi``    ``[R, K]`` logits, fp16/bf16/fp32/fp64, any strides (stride 0 allowed).
* ``seed``   0-dim int64 tensor on ``phi``'s device (read by the kernel: no host sync, no recompile).
* ``coefs``  ``[n, 5]`` float32 (float64 for fp64 ``phi``) on ``phi``'s device: row k is
  ``(c_k, a_k, b_k, alpha_k, sigma_k)`` (``schedule.Schedule.table``). Baselines get a 2-row table.
* ``method`` id from ``_constants.METHOD_IDS``; ``tau`` the temperature (gumbel, reinmax; else unused).
* ``row_start`` (>= 0) the global row of ``phi``'s row 0: row r draws the noise of row
  ``row_start + r`` (docs/SPEC.md section 7), so a chunk of rows ``[r0, r1)`` of a bigger matrix,
  run with ``row_start = r0``, samples exactly what the whole call samples there. The backward
  takes the same ``row_start`` as its forward.
* ``write_y`` False: ``y`` is not written (an empty ``[0, K]`` tensor is returned; ``stats`` and
  ``index`` are unchanged). For callers that need only the sample's index, e.g. a hard sample
  fed into an embedding (docs/SPEC.md section 11).
* ``y``      ``[R, K]`` contiguous, ``phi.dtype``: exact one-hot (``hard``) or the soft sample.
* ``stats``  ``[R, n, 2]`` float32 (float64 for fp64 ``phi``): the per-step row statistics, the only
  state kept between forward and backward besides ``seed`` and ``index``.
  ``stats[r, k] = (m, s)`` with ``m`` the row max of the logits of softmax number k and
  ``s = sum_j exp(l_j - m)`` (so ``lse = m + log s``): slot 0 is the base softmax (``phi`` for st,
  reinmax, redge_cov; ``(phi + G) / tau`` for gumbel), slots 1..n-1 the denoisers of step k.
  Slots a method does not define are backend scratch (e.g. the Triton backend keeps
  ``softmax(phi / tau)`` of reinmax in slot 1); their content is not part of the contract. On an
  empty row ``m`` is 0 (a safe max), on a poisoned row ``s`` may be NaN. Vocabulary-parallel
  sampling all-reduces exactly these (max, then the rescaled sum) across ranks.
* ``index``  ``[R]`` int64 sampled category, -1 for a row with no valid sample (see below).
* ``grad_phi`` ``[R, K]`` contiguous, ``phi.dtype``.

Row conventions every backend follows: a row whose logits are all ``-inf`` is *empty*: ``y`` and
``grad_phi`` are 0 there, ``index`` -1. A row holding a NaN or ``+inf`` logit is *poisoned*: ``y`` and
``grad_phi`` are NaN on the whole row, ``index`` -1. Other rows are never affected.
"""

from __future__ import annotations

import sys
import threading

import torch

__all__ = ["fwd", "bwd", "LIB", "fwd_eager", "plain_eager"]

LIB = torch.library.Library("redge_kernels", "DEF")
LIB.define("fwd(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau,"
           " int row_start=0, bool write_y=True) -> (Tensor, Tensor, Tensor)")
LIB.define("bwd(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats, Tensor index,"
           " int method, bool hard, float tau, int row_start=0) -> Tensor")


def _stats_dtype(phi: torch.Tensor) -> torch.dtype:
    return torch.float64 if phi.dtype == torch.float64 else torch.float32


@torch.library.register_fake("redge_kernels::fwd")
def _fwd_fake(phi, seed, coefs, method, hard, tau, row_start=0, write_y=True):
    rows, k = phi.shape
    y = phi.new_empty((rows if write_y else 0, k))
    stats = phi.new_empty((rows, coefs.shape[0], 2), dtype=_stats_dtype(phi))
    index = phi.new_empty((rows,), dtype=torch.int64)
    return y, stats, index


@torch.library.register_fake("redge_kernels::bwd")
def _bwd_fake(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start=0):
    return phi.new_empty(phi.shape)


def _setup_context(ctx, inputs, output):
    phi, seed, coefs, method, hard, tau, row_start = inputs[:7]
    _, stats, index = output
    ctx.save_for_backward(phi, seed, coefs, stats, index)
    ctx.method, ctx.hard, ctx.tau, ctx.row_start = method, hard, tau, row_start
    ctx.mark_non_differentiable(stats, index)


def _backward(ctx, grad_y, grad_stats, grad_index):
    phi, seed, coefs, stats, index = ctx.saved_tensors
    if grad_y is None or grad_y.shape != phi.shape:  # no gradient, or y not written
        grad_y = torch.zeros_like(phi)
    grad_phi = torch.ops.redge_kernels.bwd(grad_y, phi, seed, coefs, stats, index,
                                          ctx.method, ctx.hard, ctx.tau, ctx.row_start)
    return grad_phi, None, None, None, None, None, None, None


torch.library.register_autograd("redge_kernels::fwd", _backward, setup_context=_setup_context)

# The overloads' C++ callables (an OpOverload's __call__ is a Python frame around them).
_FWD = getattr(torch.ops.redge_kernels.fwd.default, "_op", torch.ops.redge_kernels.fwd.default)
# Called as _backward calls the op (through its autograd key).
_BWD = getattr(torch.ops.redge_kernels.bwd.default, "_op", torch.ops.redge_kernels.bwd.default)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def plain_eager(logits: torch.Tensor) -> bool:
    """True when a call on ``logits`` may take ``fwd_eager``: eager mode (not traced by
    ``torch.compile``), a plain ``torch.Tensor`` or ``nn.Parameter`` (no other subclass), and no
    functorch transform or Python dispatch / function mode active (those see the op through its
    registered autograd)."""
    return (type(logits) in _PLAIN and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active()
            and not torch._C._len_torch_dispatch_stack()
            and not torch._C._is_torch_function_mode_enabled())


class _EagerFwd(torch.autograd.Function):
    """Eager twin of the registered autograd of ``fwd``: the same kernels, saved state and
    backward, for logits of any leading shape (the ``[R, K]`` view is taken inside, so no
    reshape nodes enter the graph), without torch.library's Python autograd layer."""

    @staticmethod
    def forward(ctx, logits, seed, coefs, method, hard, tau):
        shape = logits.shape
        if len(shape) == 2:
            with torch._C._AutoDispatchBelowAutograd():
                y, stats, index = _FWD(logits, seed, coefs, method, hard, tau)
            out_index = index
        else:
            with torch._C._AutoDispatchBelowAutograd():
                y, stats, index = _FWD(logits.reshape(-1, shape[-1]), seed, coefs, method, hard,
                                       tau)
            # detach(): plain outputs, not views made inside the Function (in-place ops on y stay
            # legal; index keeps the saved index's version counter, as the reshape view did).
            y, out_index = y.reshape(shape).detach(), index.reshape(shape[:-1]).detach()
        # As _setup_context, with the logits themselves saved (their version is checked).
        ctx.save_for_backward(logits, seed, coefs, stats, index)
        ctx.args = (method, hard, tau)
        ctx.mark_non_differentiable(out_index)
        return y, out_index

    @staticmethod
    def backward(ctx, grad_y, grad_index):
        logits, seed, coefs, stats, index = ctx.saved_tensors
        method, hard, tau = ctx.args
        shape = logits.shape
        if len(shape) == 2:
            grad_phi = _BWD(grad_y, logits, seed, coefs, stats, index, method, hard, tau)
        else:
            k = shape[-1]
            grad_phi = _BWD(grad_y.reshape(-1, k), logits.reshape(-1, k), seed, coefs, stats,
                            index, method, hard, tau).reshape(shape)
        return grad_phi, None, None, None, None, None


try:  # Function.apply minus its functorch bookkeeping (``plain_eager`` rules functorch out)
    _APPLY = torch._C._FunctionBase.__dict__["apply"].__get__(None, _EagerFwd)
except (AttributeError, KeyError, TypeError):  # pragma: no cover (other torch versions)
    _APPLY = _EagerFwd.apply


_POOL = threading.local()
_POOL_SIZE = 4
_saved_tensors_hooks = torch._C._autograd._top_saved_tensors_default_hooks


def seed_buffer():
    """A private 0-dim int64 CPU tensor that no live graph or caller holds, for the next
    ``fwd_eager`` call's seed (drawn into it in place, as ``torch.randint`` would draw), or None.

    A fresh seed tensor per call costs more than the whole rest of the argument handling; the
    per-thread pool hands a buffer out again only when its Python refcount and its C++ use count
    show that only the pool holds it (a graph that saved it for backward holds it until the
    backward ran or the graph died). Never while saved-tensor hooks are active (they may keep
    the seed in a form the counts do not see). For CPU logits only (a CUDA stream may still read
    the old value).
    """
    if _saved_tensors_hooks(False) is not None:
        return None
    pool = getattr(_POOL, "seeds", None)
    if pool is None:
        pool = _POOL.seeds = []
    for t in pool:
        # refs: the pool, the loop variable, getrefcount's argument
        if sys.getrefcount(t) == 3 and t._use_count() == 1:
            return t
    if len(pool) >= _POOL_SIZE:
        return None
    t = torch.empty((), dtype=torch.int64)
    pool.append(t)
    return t


def fwd_eager(logits, seed, coefs, method: int, hard: bool, tau: float):
    """``(y, index)`` of ``fwd`` on ``logits [..., K]`` (shapes ``[..., K]`` and ``[...]``) with
    the registered autograd's gradient; only where ``plain_eager(logits)`` holds."""
    if torch.is_grad_enabled() and logits.requires_grad:
        return _APPLY(logits, seed, coefs, method, hard, tau)
    shape = logits.shape
    if len(shape) == 2:
        with torch._C._AutoDispatchBelowAutograd():
            y, _, index = _FWD(logits, seed, coefs, method, hard, tau)
        return y, index
    with torch._C._AutoDispatchBelowAutograd():
        y, _, index = _FWD(logits.reshape(-1, shape[-1]), seed, coefs, method, hard, tau)
    return y.reshape(shape), index.reshape(shape[:-1])


def fwd(phi, seed, coefs, method: int, hard: bool, tau: float, row_start: int = 0,
        write_y: bool = True):
    """``torch.ops.redge_kernels.fwd`` (see module docstring)."""
    return torch.ops.redge_kernels.fwd(phi, seed, coefs, method, hard, tau, row_start, write_y)


def bwd(grad_y, phi, seed, coefs, stats, index, method: int, hard: bool, tau: float,
        row_start: int = 0):
    """``torch.ops.redge_kernels.bwd`` (see module docstring)."""
    return torch.ops.redge_kernels.bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau,
                                       row_start)
