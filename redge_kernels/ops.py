"""The registered op boundary shared by the fused backends (torch only; no backend imports here).

Two custom ops per kernel family, defined once here; each backend registers its kernels for its
dispatch key (the C++ extension for ``CPU``, the Triton launcher for ``CUDA``)::

    redge_kernels::fwd(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau,
                       int row_start=0, bool write_y=True) -> (Tensor y, Tensor stats, Tensor index)
    redge_kernels::bwd(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats,
                       Tensor index, int method, bool hard, float tau, int row_start=0)
        -> Tensor grad_phi

``redge_kernels::interpreted_fwd`` / ``interpreted_bwd`` have the same schemas and the same fake
and autograd registrations; their CPU kernels are the Triton launchers under ``TRITON_INTERPRET=1``
(the CPU key of ``fwd`` belongs to the C++ backend). ``PAIRS`` maps each family to its two ops.

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
  A softmax with a temperature, ``softmax(v / tau)``, may keep its stats unscaled (the Triton
  backend does): ``m = max_j v_j`` and ``s = sum_j exp((v_j - m) / tau)``, the max subtracted
  before the division, since ``v / tau`` overflows for finite logits near the fp32 limit.
  Slots a method does not define are backend scratch (e.g. the Triton backend keeps
  ``softmax(phi / tau)`` of reinmax in slot 1); their content is not part of the contract. On an
  empty row ``m`` is 0 (a safe max), on a poisoned row ``s`` may be NaN. Vocabulary-parallel
  sampling all-reduces exactly these (max, then the rescaled sum) across ranks.
* ``index``  ``[R]`` int64 sampled category, -1 for a row with no valid sample (see below).
* ``grad_phi`` ``[R, K]`` contiguous, ``phi.dtype``.

Row conventions every backend follows: a row whose logits are all ``-inf`` is *empty*: ``y`` and
``grad_phi`` are 0 there, ``index`` -1. A row holding a NaN or ``+inf`` logit is *poisoned*: ``y`` and
``grad_phi`` are NaN on the whole row, ``index`` -1. Other rows are never affected.

Autograd (one implementation for every family, every caller: eager, ``torch.compile``,
``torch.func``). The op's ``Autograd`` kernel is a ``torch.autograd.Function`` in setup_context
form, registered with ``Library.impl(..., "Autograd")`` exactly where ``torch.library.
register_autograd`` puts its own (whose generated Function has neither a setup_context, which
``torch.func.grad`` / ``jacrev`` need, nor a ``jvp``, so forward mode would see no tangent):

* reverse mode: ``fwd``'s backward is the fused ``bwd`` kernel, ``grad_phi = J^T grad_y`` with
  ``J`` the estimator's Jacobian at the sampled index (docs/SPEC.md, each estimator's
  "Backward").
* forward mode: the tangent ``J v``, with ``J`` the Jacobian of the reference's estimator map
  (``reference.sample`` on the op's own seed, table and index), whose transpose is what ``bwd``
  applies. Since ``J^T u`` is linear in ``u``, ``J v`` is the vjp of ``u -> J^T u`` along ``v``
  (reverse mode only: forward AD does not nest inside a forward rule). Exact to fp32 rounding,
  computed in the reference's unfused passes.
* nested forward mode (``torch.func.jacfwd`` of ``jacfwd``, ``jvp`` of ``jvp``): ``torch.func`` runs
  a tangent rule with forward mode off, so an outer forward level would see the inner tangent
  as a constant. ``call_fwd`` therefore gives the kernel's values with every derivative taken
  from the reference's estimator map at the kernel's sample (``_nested_forward``); for reinmax
  and redge_max, whose reference tangents are hand-written rules too, it is refused by name
  (on every backend). Reverse over forward (``jacrev`` of ``jacfwd``) and forward over reverse
  (``hessian``) need neither.
* double backward: ``bwd`` has an autograd kernel too. ``grad_phi = F(phi, grad_y)`` with
  ``F`` the reference's vector-Jacobian product on the same noise and index; its derivatives
  (and its tangents) are those of ``F``, taken with ``torch.func`` and themselves differentiable.
* ``vmap``: the Functions carry generated vmap rules; the ops have no batching rule, so
  ``torch.func.vmap`` runs them once per batch element (``vmap(f)(X)[b] == f(X[b])`` exactly).
"""

from __future__ import annotations

import threading

import torch
from torch.autograd import forward_ad

from ._constants import METHOD_IDS

try:
    from torch._functorch.utils import enable_single_level_autograd_function as _single_level
except ImportError:  # pragma: no cover (other torch versions)
    import contextlib as _contextlib
    _single_level = _contextlib.nullcontext
try:
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters as _interpreters
except ImportError:  # pragma: no cover (other torch versions)
    _interpreters = None

__all__ = ["fwd", "bwd", "LIB", "PAIRS", "OpPair", "call_fwd", "call_bwd"]

LIB = torch.library.Library("redge_kernels", "DEF")
_FWD_SCHEMA = ("(Tensor phi, Tensor seed, Tensor coefs, int method, bool hard, float tau,"
               " int row_start=0, bool write_y=True) -> (Tensor, Tensor, Tensor)")
_BWD_SCHEMA = ("(Tensor grad_y, Tensor phi, Tensor seed, Tensor coefs, Tensor stats, Tensor index,"
               " int method, bool hard, float tau, int row_start=0) -> Tensor")
_METHOD_NAMES = {v: k for k, v in METHOD_IDS.items()}


class OpPair:
    """The forward and backward op of one kernel family (``torch.ops`` overloads). A plain
    object, not a tuple: autograd Functions receive it as one opaque argument (a NamedTuple
    would be flattened by functorch's pytrees)."""

    __slots__ = ("fwd", "bwd")

    def __init__(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd

    def __repr__(self):
        return f"OpPair({self.fwd}, {self.bwd})"


def _stats_dtype(phi: torch.Tensor) -> torch.dtype:
    return torch.float64 if phi.dtype == torch.float64 else torch.float32


def _fwd_fake(phi, seed, coefs, method, hard, tau, row_start=0, write_y=True):
    rows, k = phi.shape
    y = phi.new_empty((rows if write_y else 0, k))
    stats = phi.new_empty((rows, coefs.shape[0], 2), dtype=_stats_dtype(phi))
    index = phi.new_empty((rows,), dtype=torch.int64)
    return y, stats, index


def _bwd_fake(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start=0):
    return phi.new_empty(phi.shape)


def _setup_context(ctx, inputs, output):
    """Saved state of ``fwd`` for its backward (kept for ops that reuse this module's
    registrations with ``torch.library.register_autograd``)."""
    phi, seed, coefs, method, hard, tau, row_start = inputs[:7]
    _, stats, index = output
    ctx.save_for_backward(phi, seed, coefs, stats, index)
    ctx.method, ctx.hard, ctx.tau, ctx.row_start = method, hard, tau, row_start
    ctx.mark_non_differentiable(stats, index)


# ----------------------------------------------------------------------------- reference maps
def _estimator_map(phi, seed, coefs, method, hard, tau, row_start, index):
    """``phi -> y`` of the reference on exactly the op's arguments and sample: its Jacobian is
    the ``J`` whose transpose the fused ``bwd`` applies."""
    from . import reference  # the reference imports nothing of the ops: no cycle at run time

    def f(p):
        return reference.sample(_METHOD_NAMES[method], p, seed, hard=hard, tau=tau,
                                row_start=row_start, coefs=coefs, index=index)[0]
    return f


def _vjp_map(seed, coefs, method, hard, tau, row_start, index):
    """``(grad_y, phi) -> J(phi)^T grad_y`` of the reference (what ``bwd`` computes), itself
    differentiable in both arguments."""
    def F(grad_y, phi):
        f = _estimator_map(phi, seed, coefs, method, hard, tau, row_start, index)
        _, pull = torch.func.vjp(f, phi)
        return pull(grad_y)[0]
    return F


def _linear_jvp(F, phi, v):
    """``J(phi) v`` from ``F(u, phi) = J(phi)^T u`` by reverse mode only: ``F`` is linear in
    ``u``, so ``J v`` is the vjp of ``u -> F(u, phi)`` with cotangent ``v`` (at ``u = 0``); no
    forward-mode level is opened inside a forward-mode rule (forward AD does not nest)."""
    _check_no_functorch_jvp()
    # Under torch.func (``call_fwd``'s path) phi keeps the outer levels' wrappers, so an outer
    # reverse level (jacrev of jacfwd) differentiates this tangent too (an outer forward level
    # would not: ``_nested_forward``); plain forward AD does not nest, and its dual phi is
    # detached.
    phi0 = phi if torch._C._are_functorch_transforms_active() else phi.detach()
    _, pull = torch.func.vjp(lambda u: F(u, phi0), torch.zeros_like(phi0))
    return pull(v)[0]


def _jvp_levels() -> int:
    """How many ``torch.func`` forward-mode levels (``jvp`` / ``jacfwd``) are active."""
    if _interpreters is None or not torch._C._are_functorch_transforms_active():
        return 0
    return sum(type(i).__name__ == "JvpInterpreter" for i in _interpreters())


def _check_no_nested_forward_mode():
    """Forward over forward reaching the rules below (the op called directly, not through
    ``call_fwd``): they give the first-order tangent only, so a second forward level would see it
    as a constant; refused by name."""
    if _jvp_levels() >= 2:
        raise NotImplementedError(
            "redge_kernels: nested forward mode (e.g. torch.func.jacfwd of jacfwd) of a "
            "redge_kernels op called directly is not supported; call it through the public "
            "functions (or ops.call_fwd), or use torch.func.hessian (forward over reverse)")


def _check_no_functorch_jvp():
    """Forward-mode rules reached through the op's own Autograd kernel inside a ``torch.func``
    transform (the op called directly, not through ``call_fwd``) cannot open the transforms they
    need: a clear error instead of functorch's internal assert. Nested forward mode likewise."""
    _check_no_nested_forward_mode()
    if getattr(_TLS, "single", 0) and torch._C._are_functorch_transforms_active():
        raise NotImplementedError(
            "redge_kernels: functorch forward mode (torch.func.jvp / jacfwd / hessian) of a "
            "redge_kernels op called directly is not supported; call it through the public "
            "functions (or ops.call_fwd), or use torch.autograd.forward_ad")


def _vjp_of_phi(F, g, phi, w):
    """``(d/dphi F(g, phi))^T w``: the phi part of ``F``'s vjp."""
    _, pull = torch.func.vjp(lambda p: F(g, p), phi)
    return pull(w)[0]


# ----------------------------------------------------------------------------- autograd kernels
class _Fwd(torch.autograd.Function):
    """Autograd of ``pair.fwd`` (see module docstring). Inputs after ``phi``: the op's other
    arguments (``row_start`` and ``write_y`` included), then the ``OpPair``. Without ``y``
    (``write_y`` False) the output's gradient and tangent are those of an empty ``[0, K]``
    tensor: the backward runs ``bwd`` on a zero ``grad_y`` (0, or NaN on poisoned rows, as the
    row conventions say), the tangent is empty."""

    generate_vmap_rule = True

    @staticmethod
    def forward(phi, seed, coefs, method, hard, tau, row_start, write_y, pair):
        with torch._C._AutoDispatchBelowAutograd():  # as torch.library's own autograd kernels
            return pair.fwd(phi, seed, coefs, method, hard, tau, row_start, write_y)

    @staticmethod
    def setup_context(ctx, inputs, output):
        phi, seed, coefs, method, hard, tau, row_start, write_y, pair = inputs
        _, stats, index = output
        ctx.save_for_backward(phi, seed, coefs, stats, index)
        if _forward_mode_possible():
            # The same tensors as for the backward: functorch's generated vmap rule keeps one
            # list of batch dims for both (the last save wins), so jacrev(jacfwd(f)) needs them
            # equal.
            ctx.save_for_forward(phi, seed, coefs, stats, index)
        ctx.args = (method, hard, tau, row_start, write_y, pair)
        ctx.mark_non_differentiable(stats, index)

    @staticmethod
    def backward(ctx, grad_y, grad_stats, grad_index):
        phi, seed, coefs, stats, index = ctx.saved_tensors
        method, hard, tau, row_start, write_y, pair = ctx.args
        if not write_y:  # y is [0, K]: nothing flows back through it
            grad_y = torch.zeros_like(phi, memory_format=torch.contiguous_format)
        grad_phi = call_bwd(pair, grad_y.contiguous(), phi, seed, coefs, stats, index, method,
                            hard, tau, row_start)
        return grad_phi, None, None, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, phi_t, *_):
        phi, seed, coefs, _stats, index = ctx.saved_tensors
        method, hard, tau, row_start, write_y, _pair = ctx.args
        if phi_t is None:
            return None, None, None
        if not write_y:
            return phi_t.new_zeros((0, phi.shape[1])), None, None
        F = _vjp_map(seed, coefs, method, hard, tau, row_start, index)
        return _linear_jvp(F, phi, phi_t), None, None


class _Bwd(torch.autograd.Function):
    """Autograd of ``pair.bwd``: derivatives of ``grad_phi = F(grad_y, phi)`` from the reference
    (see module docstring); stats are not differentiable inputs."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start, pair):
        with torch._C._AutoDispatchBelowAutograd():
            return pair.bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start, pair = inputs
        ctx.save_for_backward(grad_y, phi, seed, coefs, index)
        if _forward_mode_possible():
            ctx.save_for_forward(grad_y, phi, seed, coefs, index)
        ctx.args = (method, hard, tau, row_start)

    @staticmethod
    def backward(ctx, w):
        grad_y, phi, seed, coefs, index = ctx.saved_tensors
        F = _vjp_map(seed, coefs, *ctx.args, index)
        _, pull = torch.func.vjp(F, grad_y, phi)
        d_grad_y, d_phi = pull(w)
        return d_grad_y, d_phi, None, None, None, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, grad_y_t, phi_t, *_):
        grad_y, phi, seed, coefs, index = ctx.saved_tensors
        if grad_y_t is None and phi_t is None:
            return None
        _check_no_functorch_jvp()
        F = _vjp_map(seed, coefs, *ctx.args, index)
        phi0, g0 = phi.detach(), grad_y.detach()
        out_t = 0
        if grad_y_t is not None:  # F is linear in grad_y: F(grad_y_t, phi)
            out_t = F(grad_y_t, phi0)
        if phi_t is not None:  # d/dphi <F(g, phi), w> = <second-order term, w>, by a third vjp
            out_t = out_t + _linear_jvp(lambda w, p: _vjp_of_phi(F, g0, p, w), phi0, phi_t)
        return out_t


_TLS = threading.local()
_AFTER_AUTOGRAD = torch._C._after_autograd_keyset


def _apply(cls, *args):
    """``cls.apply(*args)`` from an op's Autograd kernel, as a single-level Function.

    The Python ``Function.apply`` adds two things on top of the C++ ``apply`` it ends in: an
    ``inspect.signature`` binding of default arguments (our forwards take none, all positional;
    it is most of the eager per-call overhead) and, under ``torch.func``, a detour through
    functorch's ``custom_function_call``. An op's Autograd kernel already runs at one functorch
    level (functorch dispatches the op level by level, as any ATen op), where that detour has no
    kernel; so the Function is applied at that level, as functorch itself does in
    ``custom_function_call``'s rules. Forward-mode rules cannot open ``torch.func`` transforms
    at such a level (``_check_no_functorch_jvp``); ``call_fwd`` / ``call_bwd`` avoid it."""
    if not torch._C._are_functorch_transforms_active():
        return _C_APPLY(cls, *args)
    _TLS.single = getattr(_TLS, "single", 0) + 1
    try:
        with _single_level():
            return _C_APPLY(cls, *args)
    finally:
        _TLS.single -= 1


def _C_APPLY(cls, *args):
    return super(torch.autograd.Function, cls).apply(*args)


def _forward_mode_possible() -> bool:
    """A forward-mode level (``torch.autograd.forward_ad.dual_level``) or a functorch transform
    is active: inputs may carry tangents."""
    return forward_ad._current_level >= 0 or torch._C._are_functorch_transforms_active()


def _needs_autograd(*tensors) -> bool:
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)) \
        or _forward_mode_possible()


def call_fwd(pair: "OpPair", phi, seed, coefs, method: int, hard: bool, tau: float,
             row_start: int = 0, write_y: bool = True):
    """``pair.fwd(...)`` with its autograd: the op itself, except under ``torch.func`` transforms,
    where the same Function is applied through ``Function.apply`` so that functorch runs its
    rules level by level (``torch.func.jvp``, ``jacfwd`` and nested transforms need that)."""
    if torch._C._are_functorch_transforms_active():
        if _jvp_levels() >= 2:
            return _nested_forward(pair, phi, seed, coefs, method, hard, tau, row_start, write_y)
        return _Fwd.apply(phi, seed, coefs, method, hard, tau, row_start, write_y, pair)
    return pair.fwd(phi, seed, coefs, method, hard, tau, row_start, write_y)


def _nested_forward(pair, phi, seed, coefs, method, hard, tau, row_start, write_y):
    """``pair.fwd`` under nested forward mode: the kernel's outputs (run on ``phi.detach()``) with
    the derivatives of every order of the reference's estimator map at the kernel's sample,
    ``y + (y_ref - y_ref.detach())`` (an exact 0 added: the values stay the kernel's). The
    reference refuses reinmax and redge_max here (``reference._check_tangent_rule_order``)."""
    y, stats, index = _Fwd.apply(phi.detach(), seed, coefs, method, hard, tau, row_start,
                                 write_y, pair)
    if not write_y:
        return y, stats, index
    y_ref = _estimator_map(phi, seed, coefs, method, hard, tau, row_start, index)(phi)
    return y + (y_ref - y_ref.detach()), stats, index


def call_bwd(pair: "OpPair", grad_y, phi, seed, coefs, stats, index, method: int, hard: bool,
             tau: float, row_start: int = 0):
    """``pair.bwd(...)`` with its autograd, as ``call_fwd``."""
    if torch._C._are_functorch_transforms_active():
        return _Bwd.apply(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start,
                          pair)
    return pair.bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start)


def _define(fwd_name: str, bwd_name: str) -> OpPair:
    """Define one family's two ops with their fake kernels and autograd kernels."""
    LIB.define(fwd_name + _FWD_SCHEMA)
    LIB.define(bwd_name + _BWD_SCHEMA)
    pair = OpPair(getattr(torch.ops.redge_kernels, fwd_name).default,
                  getattr(torch.ops.redge_kernels, bwd_name).default)
    torch.library.register_fake(f"redge_kernels::{fwd_name}", _fwd_fake, lib=LIB)
    torch.library.register_fake(f"redge_kernels::{bwd_name}", _bwd_fake, lib=LIB)

    # Without anything to differentiate, straight to the kernel below autograd (as
    # torch.library's own autograd kernels do).
    def fwd_autograd(keyset, phi, seed, coefs, method, hard, tau, row_start=0, write_y=True):
        if _needs_autograd(phi):
            return _apply(_Fwd, phi, seed, coefs, method, hard, tau, row_start, write_y, pair)
        return pair.fwd.redispatch(keyset & _AFTER_AUTOGRAD, phi, seed, coefs, method, hard, tau,
                                   row_start, write_y)

    def bwd_autograd(keyset, grad_y, phi, seed, coefs, stats, index, method, hard, tau,
                     row_start=0):
        if _needs_autograd(grad_y, phi):
            return _apply(_Bwd, grad_y, phi, seed, coefs, stats, index, method, hard, tau,
                          row_start, pair)
        return pair.bwd.redispatch(keyset & _AFTER_AUTOGRAD, grad_y, phi, seed, coefs, stats,
                                   index, method, hard, tau, row_start)

    LIB.impl(fwd_name, fwd_autograd, "Autograd", with_keyset=True)
    LIB.impl(bwd_name, bwd_autograd, "Autograd", with_keyset=True)
    torch.library.register_vmap(f"redge_kernels::{fwd_name}", _per_element(pair.fwd), lib=LIB)
    torch.library.register_vmap(f"redge_kernels::{bwd_name}", _per_element(pair.bwd), lib=LIB)
    return pair


def _per_element(op):
    """vmap rule of ``op``: one call per batch element (each element keeps the noise of its own
    rows 0..R-1, so ``vmap(f)(X)[b] == f(X[b])`` exactly; folding the batch into the rows would
    give other rows' noise), outputs stacked along dim 0."""
    def rule(info, in_dims, *args):
        outs = []
        for b in range(info.batch_size):
            outs.append(op(*[a.select(d, b) if d is not None else a
                             for a, d in zip(args, in_dims)]))
        if isinstance(outs[0], tuple):
            stacked = tuple(torch.stack(parts) for parts in zip(*outs))
            return stacked, (0,) * len(stacked)
        return torch.stack(outs), 0
    return rule


#: Kernel families: ``"native"`` (C++ on CPU, Triton on CUDA) and ``"interpreted"`` (the Triton
#: launchers on CPU tensors under ``TRITON_INTERPRET=1``).
PAIRS = {"native": _define("fwd", "bwd"),
         "interpreted": _define("interpreted_fwd", "interpreted_bwd")}


def fwd(phi, seed, coefs, method: int, hard: bool, tau: float, row_start: int = 0,
        write_y: bool = True):
    """``torch.ops.redge_kernels.fwd`` (see module docstring)."""
    return torch.ops.redge_kernels.fwd(phi, seed, coefs, method, hard, tau, row_start, write_y)


def bwd(grad_y, phi, seed, coefs, stats, index, method: int, hard: bool, tau: float,
        row_start: int = 0):
    """``torch.ops.redge_kernels.bwd`` (see module docstring)."""
    return torch.ops.redge_kernels.bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau,
                                       row_start)
