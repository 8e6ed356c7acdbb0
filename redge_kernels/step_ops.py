"""Per-step entry points of the estimators on one vocabulary shard: the statistics interface of
docs/DESIGN.md ("The per-step statistics interface") as ``torch.library`` ops, for the host step
loop of the vocabulary-parallel path (``parallel/steps.py``; docs/SPEC.md "Vocabulary-parallel").

Each op runs one step's elementwise part on the local columns ``[col_start, col_start + K_r)``
of a row and returns the step's partial row statistics; the loop over steps and the collective
that combines the partials stay on the host. Kernels: C++ on the ``CPU`` key (csrc/
step_ops_cpu.cpp, step_kernels_impl.h), Triton on ``CUDA`` (``triton/_steps.py``); where a
backend is absent (extension not built, no Triton, fp64 on CUDA) the plain-torch formulation of
this module (``REFERENCE``) is the kernel. The formulations agree to fp32 rounding; the noise of
each kernel is that backend's own generator (bit-identical to its unsharded fused kernels, so a
sharded call samples what the unsharded call of the same backend samples).

Arguments (R rows, K = K_r local columns, n time points, ``T`` = the compute dtype, float32 or
float64, of every float tensor):

* ``phi``   ``[R, K]`` the local logits; ``x`` ``[R, K]`` the chain state ``x_k`` (ignored, may be
  empty, where a step has none).
* ``coefs`` ``[n, 5]`` the schedule table (``schedule.Schedule.table``; 2 unused rows for the
  baselines); ``stats`` ``[R, n_slots, 2]`` the *global* ``(M, S)`` of every softmax combined so
  far (slot layout of ``parallel.steps.forward``: slot 0 the base softmax, slots 1 .. n-1 the
  denoisers, slot 1 ReinMax's ``softmax(phi / tau)``); a step reads only slots already combined.
  A softmax with a temperature, ``softmax(v / tau)`` (gumbel's slot 0, ``v = phi + G``;
  reinmax's slot 1, ``v = phi``), keeps its statistics *unscaled*, as the unsharded fused
  kernels: ``M = max_j v_j``, ``S = sum_j exp((v_j - M) / tau)``, ``p = exp((v - M) / tau) / S``
  (the max subtracted before the division: ``v / tau`` overflows for finite logits near the
  float limit when ``tau < 1``). Every other softmax has ``tau = 1``.
* ``method`` a ``_constants.METHOD_IDS`` id, ``k`` the step, ``tau`` the temperature.
* ``seed`` the call's int seed, ``col_start`` the global column of local column 0,
  ``row_start`` the global row of row 0 (noise of docs/SPEC.md "Randomness (noise contract,
  version 2)" at the global (row, column)).
* ``index`` ``[R]`` int64 global sampled column; ``kinds`` ``[R, 2]`` bool ``(poisoned, empty)``.

Ops (``redge_kernels::<name>``):

* ``step_init(phi, stats, method, seed, col_start, row_start) -> x [R, K]``: ``x_{n-1} = z``
  (ReDGE, ReDGE-Max) or ``mu + sqrt(v) z`` (ReDGE-Cov, ``mu = softmax(phi)`` from slot 0).
* ``step_stats(phi, x, coefs, stats, method, k) -> [R, 2]``: the local ``(m, s)`` of softmax k:
  ``m = max_j l_j`` (``-inf`` on an all-masked or empty shard, NaN with a NaN),
  ``s = sum_j exp(l_j - m)`` (0 on an all-masked shard), ``l = l_k(x)`` for k >= 1, ``phi``
  for k = 0.
* ``step_next(phi, x, coefs, stats, method, k) -> x_{k-1}``: ``a_k p_k + b_k x_k`` with
  ``p_k = exp(l_k - M_k) / S_k`` from the combined slot k.
* ``step_sample(phi, x, coefs, stats, method, tau, seed, col_start, row_start)
  -> (parts [R, S, 2], best [R], index [R] int64, kinds [R, 2] bool)``: the last forward step:
  the local ``(m, s)`` of its ``S`` softmaxes (st ``phi``; gumbel ``softmax((phi + G) / tau)``
  as ``(max (phi + G), sum exp((phi + G - m) / tau))``; reinmax ``phi`` and ``softmax(phi / tau)``
  as ``(max phi, sum exp((phi - m) / tau))``; the chain ``l_1(x_1)``; ``softmax_taus`` gives each
  softmax's temperature for the combination), the local Gumbel-max (best score of
  ``phi + G`` or ``l_1 + G``, its first argmax as a global column; ``-inf`` and ``col_start``
  on an empty shard) and the local row kinds (a NaN or ``+inf``; every column ``-inf``).
* ``step_output(phi, x, coefs, stats, index, kinds, method, hard, tau, seed, col_start,
  row_start) -> y [R, K]``: the local columns of the sample (one-hot of ``index``, or the soft
  sample from its combined slot), 0 on empty and NaN on poisoned rows (global ``kinds``).
* ``step_dot(g, phi, x, coefs, stats, index, gmu, glam, method, k, tau, seed, col_start,
  row_start) -> [R, D]``: the partial dot products of backward step k (``D`` = 2 for ReinMax
  and ReDGE-Max's step 1, else 1); see ``step_grad`` for ``g``.
* ``step_grad(g, phi, x, coefs, stats, index, dots, gphi, gmu, glam, method, k, tau, seed,
  col_start, row_start) -> (gphi, gx, gmu, glam)``: backward step k given the combined
  ``dots``. ``g`` is the gradient arriving at the step: ``grad_y`` for the baselines (k = 0) and
  the chain's step 1, else the carried ``gx`` (ReDGE-Cov's k = 0 is the tail through ``mu`` and
  ``v``). Outputs a step does not produce are empty ``[0]`` tensors; ``gphi`` / ``gmu`` /
  ``glam`` inputs may be None (zero) where nothing was accumulated yet.

Row kinds of the backward are forced by the caller (``parallel.steps.backward``).
"""

from __future__ import annotations

import functools

import torch

from ._constants import COEF_A, COEF_ALPHA, COEF_B, COEF_C, COEF_SIGMA, METHOD_IDS, V_MIN
from .noise import gumbel_noise, normal_noise

__all__ = ["OPS", "REFERENCE", "step_init", "step_stats", "step_next", "step_sample",
           "step_output", "step_dot", "step_grad", "n_dots", "softmax_taus"]

ST, GUMBEL, REINMAX, REDGE, REDGE_COV, REDGE_MAX = (METHOD_IDS[m] for m in (
    "st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max"))
BASELINES = (ST, GUMBEL, REINMAX)
_NEG_INF = float("-inf")

LIB = torch.library.Library("redge_kernels", "FRAGMENT")
SCHEMAS = {
    "step_init": "(Tensor phi, Tensor stats, int method, int seed, int col_start, int row_start)"
                 " -> Tensor",
    "step_stats": "(Tensor phi, Tensor x, Tensor coefs, Tensor stats, int method, int k) -> Tensor",
    "step_next": "(Tensor phi, Tensor x, Tensor coefs, Tensor stats, int method, int k) -> Tensor",
    "step_sample": "(Tensor phi, Tensor x, Tensor coefs, Tensor stats, int method, float tau,"
                   " int seed, int col_start, int row_start) -> (Tensor, Tensor, Tensor, Tensor)",
    "step_output": "(Tensor phi, Tensor x, Tensor coefs, Tensor stats, Tensor index, Tensor kinds,"
                   " int method, bool hard, float tau, int seed, int col_start, int row_start)"
                   " -> Tensor",
    "step_dot": "(Tensor g, Tensor phi, Tensor x, Tensor coefs, Tensor stats, Tensor index,"
                " Tensor? gmu, Tensor? glam, int method, int k, float tau, int seed,"
                " int col_start, int row_start) -> Tensor",
    "step_grad": "(Tensor g, Tensor phi, Tensor x, Tensor coefs, Tensor stats, Tensor index,"
                 " Tensor dots, Tensor? gphi, Tensor? gmu, Tensor? glam, int method, int k,"
                 " float tau, int seed, int col_start, int row_start)"
                 " -> (Tensor, Tensor, Tensor, Tensor)",
}


def n_softmaxes(method: int) -> int:
    """Softmaxes of the last forward step (``step_sample``'s ``S``)."""
    return 2 if method == REINMAX else 1


def softmax_taus(method: int, tau: float) -> tuple:
    """The temperature of each of ``step_sample``'s ``S`` softmaxes, in the order of its
    ``parts``: the ``tau`` that ``collectives.combine_softmax`` takes for that slot (gumbel's
    ``softmax((phi + G) / tau)``, reinmax's ``softmax(phi / tau)``; 1 for every other softmax)."""
    if method == GUMBEL:
        return (tau,)
    if method == REINMAX:
        return (1.0, tau)
    return (1.0,)


def n_dots(method: int, k: int) -> int:
    """Partial dot products of backward step k (``step_dot``'s ``D``)."""
    return 2 if (method == REINMAX or (method == REDGE_MAX and k == 1)) else 1


def grad_outputs(method: int, k: int) -> tuple[bool, bool, bool]:
    """Which of ``(gx, gmu, glam)`` backward step k produces."""
    chain = method not in BASELINES and k >= 1
    cov = method == REDGE_COV and k >= 1
    return chain, cov, cov


# ----------------------------------------------------------------------------- plain torch
def probs(logits, big, total, tau=1.0):
    """``exp((v - M) / tau) / S`` per row of ``logits [R, K]`` (``v``) from the row's global
    ``big`` (``M``) and ``total`` (``S``) ``[R]``, ``M = -inf`` read as 0 and ``S = 0`` as 1
    (exact zeros on masked columns and all-masked rows), as ``reference.masked_softmax``;
    ``tau = 1`` is the plain ``exp(l - M) / S`` (no division)."""
    safe_m = torch.where(big == _NEG_INF, torch.zeros_like(big), big)
    safe_s = torch.where(total == 0, torch.ones_like(total), total)
    shifted = logits - safe_m[:, None]
    return torch.exp(shifted if tau == 1.0 else shifted / tau) / safe_s[:, None]


def local_stats(logits, tau=1.0) -> torch.Tensor:
    """``[R, 2]``: ``(max_j v_j, sum_j exp((v_j - safe max) / tau))`` of ``logits [R, K]``
    (``v``; the unscaled max of ``softmax(v / tau)``, ``tau = 1`` without the division)."""
    if logits.shape[-1] == 0:
        m = logits.new_full(logits.shape[:-1], _NEG_INF)
        return torch.stack([m, torch.zeros_like(m)], -1)
    m = logits.amax(-1)
    safe = torch.where(m == _NEG_INF, torch.zeros_like(m), m)
    shifted = logits - safe[:, None]
    return torch.stack([m, torch.exp(shifted if tau == 1.0 else shifted / tau).sum(-1)], -1)


def _noise(kind, seed, phi, col_start, row_start):
    fn = normal_noise if kind == "z" else gumbel_noise
    return fn(seed, phi.shape[0], phi.shape[1], phi.device, row_start=row_start,
              col_start=col_start).to(phi.dtype)


def _slot(stats, k):
    return stats[:, k, 0], stats[:, k, 1]


def _cov_base(phi, stats):
    """``(mu, mu (1 - mu), lam = 1 / v, sqrt(v))`` of ReDGE-Cov, ``v = max(mu (1 - mu), V_MIN)``."""
    mu = probs(phi, *_slot(stats, 0))
    pv = mu * (1.0 - mu)
    v = torch.clamp(pv, min=V_MIN)
    return mu, pv, 1.0 / v, torch.sqrt(v)


def _logits(phi, x, coefs, stats, method, k):
    """``l_k(x_k)``: ``phi + c_k x`` or ``phi + c_k lam (x - sigma_k mu - alpha_k / 2)``."""
    if method != REDGE_COV:
        return phi + coefs[k, COEF_C] * x
    mu, _, lam, _ = _cov_base(phi, stats)
    shift = coefs[k, COEF_SIGMA] * mu + 0.5 * coefs[k, COEF_ALPHA]
    return phi + coefs[k, COEF_C] * lam * (x - shift)


def _one_hot(index, col_start, like):
    """The local columns of ``one_hot(index)`` (zeros where the index is elsewhere or -1)."""
    cols = torch.arange(like.shape[1], device=like.device) + col_start
    return (cols[None, :] == index[:, None]).to(like.dtype)


def ref_step_init(phi, stats, method, seed, col_start, row_start):
    z = _noise("z", seed, phi, col_start, row_start)
    if method != REDGE_COV:
        return z
    mu, _, _, sv = _cov_base(phi, stats)
    return mu + sv * z


def ref_step_stats(phi, x, coefs, stats, method, k):
    return local_stats(phi if k == 0 else _logits(phi, x, coefs, stats, method, k))


def ref_step_next(phi, x, coefs, stats, method, k):
    p = probs(_logits(phi, x, coefs, stats, method, k), *_slot(stats, k))
    return coefs[k, COEF_A] * p + coefs[k, COEF_B] * x


def _final_softmaxes(phi, x, coefs, stats, method, gumbel):
    """The unscaled values ``v`` of the last step's softmaxes (temperatures: ``softmax_taus``)."""
    if method == ST:
        return [phi]
    if method == GUMBEL:
        return [phi + gumbel]
    if method == REINMAX:
        return [phi, phi]
    return [_logits(phi, x, coefs, stats, method, 1)]


def ref_step_sample(phi, x, coefs, stats, method, tau, seed, col_start, row_start):
    gumbel = _noise("g", seed, phi, col_start, row_start)
    soft = _final_softmaxes(phi, x, coefs, stats, method, gumbel)
    parts = torch.stack([local_stats(v, t) for v, t in zip(soft, softmax_taus(method, tau))], 1)
    score = (phi if method in BASELINES else soft[0]) + gumbel
    if phi.shape[1] == 0:
        best = phi.new_full((phi.shape[0],), _NEG_INF)
        index = torch.full_like(best, col_start, dtype=torch.int64)
    else:
        best, index = score.max(-1)
        index = index + col_start
    kinds = torch.stack([(torch.isnan(phi) | (phi == float("inf"))).any(-1),
                         (phi == _NEG_INF).all(-1)], -1)
    return parts, best, index, kinds


def ref_step_output(phi, x, coefs, stats, index, kinds, method, hard, tau, seed, col_start,
                    row_start):
    if hard or method in (REINMAX, REDGE_MAX):
        y = _one_hot(index, col_start, phi)
    elif method == GUMBEL:
        y = probs(phi + _noise("g", seed, phi, col_start, row_start), *_slot(stats, 0), tau)
    elif method == ST:
        y = probs(phi, *_slot(stats, 0))
    else:
        y = probs(_logits(phi, x, coefs, stats, method, 1), *_slot(stats, 1))
    y = torch.where(kinds[:, 1:], torch.zeros_like(y), y)
    return torch.where(kinds[:, :1], torch.full_like(y, float("nan")), y)


def _zero(t, like):
    return torch.zeros_like(like) if t is None else t


def _softmax_input(g, phi, x, coefs, stats, gmu, glam, method, k, tau, seed, col_start,
                   row_start):
    """``(gp, p)``: the gradient at the softmax ``p`` that backward step k differentiates
    (every method but ReinMax)."""
    if method == ST:
        return g, probs(phi, *_slot(stats, 0))
    if method == GUMBEL:
        return g, probs(phi + _noise("g", seed, phi, col_start, row_start), *_slot(stats, 0),
                        tau)
    if method == REDGE_COV and k == 0:  # the tail: mu = softmax(phi), through mu and v
        mu, pv, lam, sv = _cov_base(phi, stats)
        z = _noise("z", seed, phi, col_start, row_start)
        gv = g * z * (0.5 / sv) - _zero(glam, phi) * lam * lam
        return _zero(gmu, phi) + g + gv * (1.0 - 2.0 * mu) * (pv >= V_MIN).to(mu.dtype), mu
    p = probs(_logits(phi, x, coefs, stats, method, k), *_slot(stats, k))
    return (g if k == 1 else coefs[k, COEF_A] * g), p


def _reinmax_terms(g, phi, stats, index, tau, col_start):
    """ReinMax's ``(u, w, p1, p0)``: ``u = 2 g p1``, ``w = -g p0 / 2``."""
    p0 = probs(phi, *_slot(stats, 0))
    p1 = 0.5 * (probs(phi, *_slot(stats, 1), tau) + _one_hot(index, col_start, p0))
    return 2.0 * g * p1, -0.5 * g * p0, p1, p0


def ref_step_dot(g, phi, x, coefs, stats, index, gmu, glam, method, k, tau, seed, col_start,
                 row_start):
    if method == REINMAX:
        u, w, _, _ = _reinmax_terms(g, phi, stats, index, tau, col_start)
        return torch.stack([u.sum(-1), w.sum(-1)], -1)
    gp, p = _softmax_input(g, phi, x, coefs, stats, gmu, glam, method, k, tau, seed, col_start,
                           row_start)
    if method == REDGE_MAX and k == 1:
        d = _one_hot(index, col_start, p) - p
        return torch.stack([(gp * p).sum(-1), (gp * d).sum(-1)], -1)
    return (gp * p).sum(-1, keepdim=True)


def ref_step_grad(g, phi, x, coefs, stats, index, dots, gphi, gmu, glam, method, k, tau, seed,
                  col_start, row_start):
    empty = phi.new_empty(0)
    if method == REINMAX:
        u, w, p1, p0 = _reinmax_terms(g, phi, stats, index, tau, col_start)
        gphi = (u - p1 * dots[:, :1]) + (w - p0 * dots[:, 1:])
        return torch.where(phi != _NEG_INF, gphi, torch.zeros_like(gphi)), empty, empty, empty
    gp, p = _softmax_input(g, phi, x, coefs, stats, gmu, glam, method, k, tau, seed, col_start,
                           row_start)
    r = p * (gp - dots[:, :1])
    if method in BASELINES or k == 0:
        r = r / tau if method == GUMBEL else r
        return (r if gphi is None else gphi + r), empty, empty, empty
    if method == REDGE_MAX and k == 1:
        gphi_new = 0.5 * (r + dots[:, 1:] * (_one_hot(index, col_start, p) - p))
    else:
        gphi_new = r if gphi is None else gphi + r
    t = coefs[k, COEF_C] * r
    if method != REDGE_COV:
        return gphi_new, (t if k == 1 else t + coefs[k, COEF_B] * g), empty, empty
    mu, _, lam, _ = _cov_base(phi, stats)
    gq = t * lam
    shift = coefs[k, COEF_SIGMA] * mu + 0.5 * coefs[k, COEF_ALPHA]
    glam_new = _zero(glam, phi) + t * (x - shift)
    gmu_new = _zero(gmu, phi) - coefs[k, COEF_SIGMA] * gq
    return gphi_new, (gq if k == 1 else gq + coefs[k, COEF_B] * g), gmu_new, glam_new


REFERENCE = {"step_init": ref_step_init, "step_stats": ref_step_stats,
             "step_next": ref_step_next, "step_sample": ref_step_sample,
             "step_output": ref_step_output, "step_dot": ref_step_dot,
             "step_grad": ref_step_grad}


# ----------------------------------------------------------------------------- fake kernels
def _fake_init(phi, stats, method, seed, col_start, row_start):
    return phi.new_empty(phi.shape)


def _fake_stats(phi, x, coefs, stats, method, k):
    return phi.new_empty((phi.shape[0], 2))


def _fake_next(phi, x, coefs, stats, method, k):
    return phi.new_empty(phi.shape)


def _fake_sample(phi, x, coefs, stats, method, tau, seed, col_start, row_start):
    rows = phi.shape[0]
    return (phi.new_empty((rows, n_softmaxes(method), 2)), phi.new_empty((rows,)),
            phi.new_empty((rows,), dtype=torch.int64), phi.new_empty((rows, 2), dtype=torch.bool))


def _fake_output(phi, x, coefs, stats, index, kinds, method, hard, tau, seed, col_start,
                 row_start):
    return phi.new_empty(phi.shape)


def _fake_dot(g, phi, x, coefs, stats, index, gmu, glam, method, k, tau, seed, col_start,
              row_start):
    return phi.new_empty((phi.shape[0], n_dots(method, k)))


def _fake_grad(g, phi, x, coefs, stats, index, dots, gphi, gmu, glam, method, k, tau, seed,
               col_start, row_start):
    outs = [phi.new_empty(phi.shape) if want else phi.new_empty(0)
            for want in grad_outputs(method, k)]
    return (phi.new_empty(phi.shape), *outs)


_FAKES = {"step_init": _fake_init, "step_stats": _fake_stats, "step_next": _fake_next,
          "step_sample": _fake_sample, "step_output": _fake_output, "step_dot": _fake_dot,
          "step_grad": _fake_grad}


def _has_kernel(name: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"redge_kernels::{name}", key)


def _register():
    """Define the ops, their fake kernels, and the kernels of each device: the C++ extension
    registers ``CPU`` itself when it is built (else the plain-torch formulation is the CPU
    kernel); ``CUDA`` gets the Triton launchers (which take the plain-torch formulation for
    fp64), or the plain-torch formulation without Triton."""
    for name, schema in SCHEMAS.items():
        LIB.define(name + schema)
        torch.library.register_fake(f"redge_kernels::{name}", _FAKES[name], lib=LIB)
    from . import _cpu_backend
    for name, fn in REFERENCE.items():
        if not (_cpu_backend.available() and _has_kernel(name, "CPU")):
            LIB.impl(name, fn, "CPU")
    for name in SCHEMAS:
        LIB.impl(name, _cuda_kernel(name), "CUDA")
    return {name: getattr(torch.ops.redge_kernels, name).default for name in SCHEMAS}


@functools.lru_cache(maxsize=None)
def _cuda_launchers() -> dict:
    """The Triton launchers, imported at the first CUDA call (backends are imported lazily, as
    in ``_backends``), or the plain-torch formulation without Triton."""
    try:
        from .triton import _steps
    except ImportError:  # triton is optional
        return REFERENCE
    return _steps.LAUNCHERS


def _cuda_kernel(name: str):
    def kernel(*args):
        return _cuda_launchers()[name](*args)
    kernel.__name__ = f"{name}_cuda"
    return kernel


#: The registered ops, ``torch.ops.redge_kernels.<name>.default`` by name.
OPS = _register()
step_init, step_stats, step_next, step_sample, step_output, step_dot, step_grad = (
    OPS[name] for name in SCHEMAS)
