"""Triton kernels of the step ops (``redge_kernels.step_ops``: arguments, outputs and the
plain-torch formulation they reproduce; docs/SPEC.md "Vocabulary-parallel").

One program per row loops over the row's local columns in tiles of ``BLOCK``: elementwise ops
write each tile, reductions fold tiles in column order (the local ``(m, s)`` by the online softmax
of ``_common.online_stats``, the Gumbel-max by ``_common.tile_argmax``, dot products by a running
sum). The noise is ``_noise``'s at the global columns ``col_start + j``, the generator of the
fused Triton kernels (grouped form when ``col_start`` is a multiple of 4, per element otherwise):
a shard draws bitwise the unsharded noise of this backend. The probabilities are
``exp(l - M) * (1 / S)`` in every op, so a backward step recomputes the forward's ``p_k`` and
``x_k`` bitwise. A softmax with a temperature, ``softmax(v / tau)`` (Gumbel-Softmax's
``v = phi + G``, ReinMax's ``v = phi``), keeps its statistics unscaled, as the fused kernels:
``m = max v``, ``s = sum exp((v - m) / tau)`` (``_common.scaled_online_stats``),
``p = exp((v - M) / tau) * (1 / S)`` (``_tempered``). float32 only: float64 tensors take the
plain-torch formulation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import step_ops
from .._constants import COEF_A, COEF_ALPHA, COEF_B, COEF_C, COEF_SIGMA, V_MIN
from . import _noise
from ._common import NEG_INF, POS_INF, exp, nan_like, online_stats, scaled_online_stats, tile_argmax
from ._launch import FP_FUSION

__all__ = ["LAUNCHERS", "BLOCK"]

#: Columns per tile (a power of two), and the warps of the kernels: 8 elements of each live
#: tile vector per thread in the forward, 4 in the backward (more live values per element); no
#: specialization has a stack frame or spills at sm_90 (``python -m bench.step_compile``).
BLOCK = 1024
BWD_WARPS = 8
_VMIN: tl.constexpr = tl.constexpr(V_MIN)
_C: tl.constexpr = tl.constexpr(COEF_C)
_A: tl.constexpr = tl.constexpr(COEF_A)
_B: tl.constexpr = tl.constexpr(COEF_B)
_ALPHA: tl.constexpr = tl.constexpr(COEF_ALPHA)
_SIGMA: tl.constexpr = tl.constexpr(COEF_SIGMA)
_ST: tl.constexpr = tl.constexpr(step_ops.ST)
_GUMBEL: tl.constexpr = tl.constexpr(step_ops.GUMBEL)
_REINMAX: tl.constexpr = tl.constexpr(step_ops.REINMAX)
_COV: tl.constexpr = tl.constexpr(step_ops.REDGE_COV)
_MAX: tl.constexpr = tl.constexpr(step_ops.REDGE_MAX)


@triton.jit
def _softmax(stats_ptr, row, n_slots, k):
    """``(shift, 1 / S)`` of the combined slot k: ``M = -inf`` reads 0, ``S = 0`` reads 1."""
    m = tl.load(stats_ptr + (row * n_slots + k) * 2)
    s = tl.load(stats_ptr + (row * n_slots + k) * 2 + 1)
    return tl.where(m == NEG_INF, 0.0, m), 1.0 / tl.where(s == 0.0, 1.0, s)


@triton.jit
def _tempered(v, shift, inv, tau):
    """``exp((v - M) / tau) * (1 / S)``: ``softmax(v / tau)`` from its unscaled combined slot."""
    return exp((v - shift) / tau) * inv


@triton.jit
def _coef(coefs_ptr, k, col):
    return tl.load(coefs_ptr + k * 5 + col)


@triton.jit
def _cov_base(ph, shift0, inv0):
    """ReDGE-Cov's ``(mu, lam)``: ``mu = softmax(phi)``, ``lam = 1 / max(mu (1 - mu), V_MIN)``."""
    mu = exp(ph - shift0) * inv0
    return mu, 1.0 / tl.maximum(mu * (1.0 - mu), _VMIN)


@triton.jit
def _logit(ph, xv, coefs_ptr, k, shift0, inv0, COV: tl.constexpr):
    """``l_k(x_k)`` (``estimator_math.h`` chain_logit)."""
    c = _coef(coefs_ptr, k, _C)
    if COV:
        mu, lam = _cov_base(ph, shift0, inv0)
        shift = _coef(coefs_ptr, k, _SIGMA) * mu + 0.5 * _coef(coefs_ptr, k, _ALPHA)
        out = ph + (c * lam) * (xv - shift)
    else:
        out = ph + c * xv
    return out


@triton.jit
def _tile(row, K, t, BLOCK: tl.constexpr):
    cols = t + tl.arange(0, BLOCK).to(tl.int64)
    return cols, cols < K, row * K + cols


@triton.jit
def _init_kernel(phi_ptr, stats_ptr, out_ptr, K, n_slots, seed_ptr, col_start, row_start,
                 COV: tl.constexpr, GROUPED: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        z = _noise.normal(seed, row + row_start, col_start + t, col_start + cols, BLOCK, GROUPED)
        if COV:
            ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
            mu, lam = _cov_base(ph, shift0, inv0)
            z = mu + tl.sqrt_rn(tl.maximum(mu * (1.0 - mu), _VMIN)) * z
        tl.store(out_ptr + off, z, mask=mask)


@triton.jit
def _stats_kernel(phi_ptr, x_ptr, coefs_ptr, stats_ptr, out_ptr, K, n_slots, k,
                  BASE: tl.constexpr, COV: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    m = tl.full((), float("-inf"), tl.float32)
    s = tl.zeros((), tl.float32)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
        if BASE:
            lk = ph
        else:
            lk = _logit(ph, tl.load(x_ptr + off, mask=mask, other=0.0), coefs_ptr, k, shift0, inv0,
                        COV)
        m, s = online_stats(m, s, tl.where(mask, lk, NEG_INF))
    tl.store(out_ptr + row * 2, m)
    tl.store(out_ptr + row * 2 + 1, s)


@triton.jit
def _next_kernel(phi_ptr, x_ptr, coefs_ptr, stats_ptr, out_ptr, K, n_slots, k,
                 COV: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    shift, inv = _softmax(stats_ptr, row, n_slots, k)
    a = _coef(coefs_ptr, k, _A)
    b = _coef(coefs_ptr, k, _B)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
        xv = tl.load(x_ptr + off, mask=mask, other=0.0)
        p = exp(_logit(ph, xv, coefs_ptr, k, shift0, inv0, COV) - shift) * inv
        tl.store(out_ptr + off, a * p + b * xv, mask=mask)


@triton.jit
def _sample_kernel(phi_ptr, x_ptr, coefs_ptr, stats_ptr, parts_ptr, best_ptr, index_ptr,
                   kinds_ptr, K, n_slots, tau, seed_ptr, col_start, row_start,
                   METHOD: tl.constexpr, CHAIN: tl.constexpr, GROUPED: tl.constexpr,
                   BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    m0 = tl.full((), float("-inf"), tl.float32)
    s0 = tl.zeros((), tl.float32)
    m1 = tl.full((), float("-inf"), tl.float32)
    s1 = tl.zeros((), tl.float32)
    best = tl.full((), float("-inf"), tl.float32)
    best_idx = tl.zeros((), tl.int64)
    n_bad = tl.zeros((), tl.int32)
    n_valid = tl.zeros((), tl.int32)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
        gum = _noise.gumbel(seed, row + row_start, col_start + t, col_start + cols, BLOCK, GROUPED)
        if CHAIN:
            base = _logit(ph, tl.load(x_ptr + off, mask=mask, other=0.0), coefs_ptr, 1, shift0,
                          inv0, METHOD == _COV)
            soft = base
        else:
            base = ph
            if METHOD == _GUMBEL:
                soft = ph + gum
            else:
                soft = ph
        if METHOD == _GUMBEL:  # softmax((phi + G) / tau), unscaled statistics
            m0, s0 = scaled_online_stats(m0, s0, tl.where(mask, soft, NEG_INF), tau)
        else:
            m0, s0 = online_stats(m0, s0, tl.where(mask, soft, NEG_INF))
        if METHOD == _REINMAX:  # softmax(phi / tau), unscaled statistics
            m1, s1 = scaled_online_stats(m1, s1, tl.where(mask, ph, NEG_INF), tau)
        best, best_idx = tile_argmax(best, best_idx, tl.where(mask, base + gum, NEG_INF), t)
        n_bad += tl.sum((((ph != ph) | (ph == POS_INF)) & mask).to(tl.int32), axis=0)
        n_valid += tl.sum(((ph != NEG_INF) & mask).to(tl.int32), axis=0)
    n_soft = 2 if METHOD == _REINMAX else 1
    tl.store(parts_ptr + row * n_soft * 2, m0)
    tl.store(parts_ptr + row * n_soft * 2 + 1, s0)
    if METHOD == _REINMAX:
        tl.store(parts_ptr + row * 4 + 2, m1)
        tl.store(parts_ptr + row * 4 + 3, s1)
    tl.store(best_ptr + row, best)
    tl.store(index_ptr + row, best_idx + col_start)
    tl.store(kinds_ptr + row * 2, (n_bad > 0).to(tl.int8))
    tl.store(kinds_ptr + row * 2 + 1, (n_valid == 0).to(tl.int8))


@triton.jit
def _output_kernel(phi_ptr, x_ptr, coefs_ptr, stats_ptr, index_ptr, kinds_ptr, out_ptr, K,
                   n_slots, tau, seed_ptr, col_start, row_start, METHOD: tl.constexpr,
                   ONE_HOT: tl.constexpr, CHAIN: tl.constexpr, GROUPED: tl.constexpr,
                   BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    poisoned = tl.load(kinds_ptr + row * 2) != 0
    empty = tl.load(kinds_ptr + row * 2 + 1) != 0
    idx = tl.load(index_ptr + row) - col_start
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    shift1, inv1 = _softmax(stats_ptr, row, n_slots, 1 if CHAIN else 0)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        if ONE_HOT:
            y = (cols == idx).to(tl.float32)
        else:
            ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
            if CHAIN:
                lk = _logit(ph, tl.load(x_ptr + off, mask=mask, other=0.0), coefs_ptr, 1, shift0,
                            inv0, METHOD == _COV)
            elif METHOD == _GUMBEL:
                lk = ph + _noise.gumbel(seed, row + row_start, col_start + t, col_start + cols,
                                        BLOCK, GROUPED)
            else:
                lk = ph
            if METHOD == _GUMBEL:
                y = _tempered(lk, shift1, inv1, tau)
            else:
                y = exp(lk - shift1) * inv1
        y = tl.where(poisoned, nan_like(y), tl.where(empty, 0.0, y))
        tl.store(out_ptr + off, y, mask=mask)


@triton.jit
def _bwd_terms(phi_ptr, x_ptr, g_ptr, gmu_ptr, glam_ptr, coefs_ptr, stats_ptr, row, n_slots, k,
               idx, tau, seed, col_start, row_start, t, cols, mask, off, METHOD: tl.constexpr,
               TAIL: tl.constexpr, HAS_GMU: tl.constexpr, GROUPED: tl.constexpr,
               BLOCK: tl.constexpr):
    """``(gp, p, extra)`` of backward step k at one tile: the gradient at the softmax ``p`` it
    differentiates; ReinMax: ``gp = g``, ``p = p0``, ``extra = p1``; ReDGE-Max: the one-hot."""
    ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
    g = tl.load(g_ptr + off, mask=mask, other=0.0)
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    onehot = (cols == idx).to(tl.float32)
    extra = onehot
    if METHOD == _ST:
        gp = g
        p = exp(ph - shift0) * inv0
    elif METHOD == _GUMBEL:
        gum = _noise.gumbel(seed, row + row_start, col_start + t, col_start + cols, BLOCK, GROUPED)
        gp = g
        p = _tempered(ph + gum, shift0, inv0, tau)
    elif METHOD == _REINMAX:
        m1 = tl.load(stats_ptr + (row * n_slots + 1) * 2)
        s1 = tl.load(stats_ptr + (row * n_slots + 1) * 2 + 1)
        gp = g
        p = exp(ph - shift0) * inv0
        extra = 0.5 * (exp((ph - tl.where(m1 == NEG_INF, 0.0, m1)) / tau)
                       / tl.where(s1 == 0.0, 1.0, s1) + onehot)
    elif TAIL:
        mu, lam = _cov_base(ph, shift0, inv0)
        z = _noise.normal(seed, row + row_start, col_start + t, col_start + cols, BLOCK, GROUPED)
        glam = tl.zeros_like(g)
        gmu = tl.zeros_like(g)
        if HAS_GMU:
            glam = tl.load(glam_ptr + off, mask=mask, other=0.0)
            gmu = tl.load(gmu_ptr + off, mask=mask, other=0.0)
        q = mu * (1.0 - mu)
        gv = (g * z) / (2.0 * tl.sqrt_rn(tl.maximum(q, _VMIN))) - glam * lam * lam
        gp = (gmu + g) + tl.where(q >= _VMIN, gv, 0.0) * (1.0 - 2.0 * mu)
        p = mu
    else:
        shift, inv = _softmax(stats_ptr, row, n_slots, k)
        lk = _logit(ph, tl.load(x_ptr + off, mask=mask, other=0.0), coefs_ptr, k, shift0, inv0,
                    METHOD == _COV)
        p = exp(lk - shift) * inv
        gp = g
        if k != 1:
            gp = _coef(coefs_ptr, k, _A) * g
    return gp, p, extra


@triton.jit
def _dot_kernel(phi_ptr, x_ptr, g_ptr, gmu_ptr, glam_ptr, coefs_ptr, stats_ptr, index_ptr,
                out_ptr, K, n_slots, k, tau, seed_ptr, col_start, row_start, METHOD: tl.constexpr,
                TAIL: tl.constexpr, HAS_GMU: tl.constexpr, TWO: tl.constexpr,
                GROUPED: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    idx = tl.load(index_ptr + row) - col_start
    d0 = tl.zeros((), tl.float32)
    d1 = tl.zeros((), tl.float32)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        gp, p, extra = _bwd_terms(phi_ptr, x_ptr, g_ptr, gmu_ptr, glam_ptr, coefs_ptr, stats_ptr,
                                  row, n_slots, k, idx, tau, seed, col_start, row_start, t, cols,
                                  mask, off, METHOD, TAIL, HAS_GMU, GROUPED, BLOCK)
        if METHOD == _REINMAX:
            d0 += tl.sum(tl.where(mask, (2.0 * gp) * extra, 0.0), axis=0)
            d1 += tl.sum(tl.where(mask, (-0.5 * gp) * p, 0.0), axis=0)
        else:
            d0 += tl.sum(tl.where(mask, gp * p, 0.0), axis=0)
            if TWO:
                d1 += tl.sum(tl.where(mask, gp * (extra - p), 0.0), axis=0)
    n = 2 if TWO else 1
    tl.store(out_ptr + row * n, d0)
    if TWO:
        tl.store(out_ptr + row * 2 + 1, d1)


@triton.jit
def _grad_kernel(phi_ptr, x_ptr, g_ptr, gphi_ptr, gmu_ptr, glam_ptr, coefs_ptr, stats_ptr,
                 index_ptr, dots_ptr, o_phi, o_x, o_mu, o_lam, K, n_slots, k, tau, seed_ptr,
                 col_start, row_start, METHOD: tl.constexpr, TAIL: tl.constexpr,
                 HAS_GPHI: tl.constexpr, HAS_GMU: tl.constexpr, CHAIN: tl.constexpr,
                 TWO: tl.constexpr, GROUPED: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    idx = tl.load(index_ptr + row) - col_start
    n = 2 if TWO else 1
    d0 = tl.load(dots_ptr + row * n)
    d1 = d0
    if TWO:
        d1 = tl.load(dots_ptr + row * 2 + 1)
    c = _coef(coefs_ptr, k, _C)
    b = _coef(coefs_ptr, k, _B)
    sigma = _coef(coefs_ptr, k, _SIGMA)
    half_alpha = 0.5 * _coef(coefs_ptr, k, _ALPHA)
    shift0, inv0 = _softmax(stats_ptr, row, n_slots, 0)
    for t in range(0, K, BLOCK):
        cols, mask, off = _tile(row, K, t, BLOCK)
        gp, p, extra = _bwd_terms(phi_ptr, x_ptr, g_ptr, gmu_ptr, glam_ptr, coefs_ptr, stats_ptr,
                                  row, n_slots, k, idx, tau, seed, col_start, row_start, t, cols,
                                  mask, off, METHOD, TAIL, HAS_GMU, GROUPED, BLOCK)
        prev = tl.zeros_like(p)
        if HAS_GPHI:
            prev = tl.load(gphi_ptr + off, mask=mask, other=0.0)
        if METHOD == _REINMAX:
            u = (2.0 * gp) * extra - extra * d0
            w = (-0.5 * gp) * p - p * d1
            ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
            tl.store(o_phi + off, tl.where(ph != NEG_INF, u + w, 0.0), mask=mask)
        else:
            r = p * (gp - d0)
            if not CHAIN:
                if METHOD == _GUMBEL:
                    r = r / tau
                tl.store(o_phi + off, prev + r, mask=mask)
            else:
                if TWO:
                    tl.store(o_phi + off, 0.5 * (r + d1 * (extra - p)), mask=mask)
                else:
                    tl.store(o_phi + off, prev + r, mask=mask)
                g = tl.load(g_ptr + off, mask=mask, other=0.0)
                if METHOD == _COV:
                    ph = tl.load(phi_ptr + off, mask=mask, other=0.0)
                    mu, lam = _cov_base(ph, shift0, inv0)
                    gx = (c * lam) * r
                    xv = tl.load(x_ptr + off, mask=mask, other=0.0)
                    gm = tl.zeros_like(p)
                    gl = tl.zeros_like(p)
                    if HAS_GMU:
                        gm = tl.load(gmu_ptr + off, mask=mask, other=0.0)
                        gl = tl.load(glam_ptr + off, mask=mask, other=0.0)
                    tl.store(o_mu + off, gm + -(sigma * c) * lam * r, mask=mask)
                    tl.store(o_lam + off, gl + c * (r * (xv - (sigma * mu + half_alpha))),
                             mask=mask)
                else:
                    gx = c * r
                if k != 1:
                    gx = gx + b * g
                tl.store(o_x + off, gx, mask=mask)


# ----------------------------------------------------------------------------- launchers
def _fp32(*tensors) -> bool:
    return all(t is None or t.dtype == torch.float32 for t in tensors)


def _c(t):
    return None if t is None else t.contiguous()


def _grouped(col_start: int) -> bool:
    return col_start % 4 == 0


def _seed(seed: int, like: torch.Tensor) -> torch.Tensor:
    """The seed as a 0-dim int64 tensor on the device (read by the kernel: no recompile)."""
    return torch.tensor(seed, dtype=torch.int64, device=like.device)


def _launch(kernel, rows, *args, num_warps=4, **meta):
    if rows > 0:
        kernel[(rows,)](*args, BLOCK=BLOCK, num_warps=num_warps, enable_fp_fusion=FP_FUSION,
                        **meta)


def step_init(phi, stats, method, seed, col_start, row_start):
    if not _fp32(phi):
        return step_ops.ref_step_init(phi, stats, method, seed, col_start, row_start)
    phi, stats = phi.contiguous(), stats.contiguous()
    out = torch.empty_like(phi)
    _launch(_init_kernel, phi.shape[0], phi, stats, out, phi.shape[1], stats.shape[1],
            _seed(seed, phi), col_start, row_start, COV=method == step_ops.REDGE_COV,
            GROUPED=_grouped(col_start))
    return out


def step_stats(phi, x, coefs, stats, method, k):
    if not _fp32(phi):
        return step_ops.ref_step_stats(phi, x, coefs, stats, method, k)
    phi, x, coefs, stats = _c(phi), _c(x) if k > 0 else phi, _c(coefs), _c(stats)
    out = phi.new_empty((phi.shape[0], 2))
    _launch(_stats_kernel, phi.shape[0], phi, x, coefs, stats, out, phi.shape[1], stats.shape[1],
            k, BASE=k == 0, COV=method == step_ops.REDGE_COV)
    return out


def step_next(phi, x, coefs, stats, method, k):
    if not _fp32(phi):
        return step_ops.ref_step_next(phi, x, coefs, stats, method, k)
    phi, x, coefs, stats = _c(phi), _c(x), _c(coefs), _c(stats)
    out = torch.empty_like(phi)
    _launch(_next_kernel, phi.shape[0], phi, x, coefs, stats, out, phi.shape[1], stats.shape[1],
            k, COV=method == step_ops.REDGE_COV)
    return out


def step_sample(phi, x, coefs, stats, method, tau, seed, col_start, row_start):
    if not _fp32(phi):
        return step_ops.ref_step_sample(phi, x, coefs, stats, method, tau, seed, col_start,
                                        row_start)
    chain = method not in step_ops.BASELINES
    phi, coefs, stats = _c(phi), _c(coefs), _c(stats)
    x = _c(x) if chain else phi
    rows = phi.shape[0]
    parts = phi.new_empty((rows, step_ops.n_softmaxes(method), 2))
    best = phi.new_empty((rows,))
    index = torch.empty((rows,), dtype=torch.int64, device=phi.device)
    kinds = torch.empty((rows, 2), dtype=torch.int8, device=phi.device)
    _launch(_sample_kernel, rows, phi, x, coefs, stats, parts, best, index, kinds, phi.shape[1],
            stats.shape[1], float(tau), _seed(seed, phi), col_start, row_start, METHOD=method,
            CHAIN=chain,
            GROUPED=_grouped(col_start))
    return parts, best, index, kinds.bool()


def step_output(phi, x, coefs, stats, index, kinds, method, hard, tau, seed, col_start,
                row_start):
    if not _fp32(phi):
        return step_ops.ref_step_output(phi, x, coefs, stats, index, kinds, method, hard, tau,
                                        seed, col_start, row_start)
    chain = method not in step_ops.BASELINES
    one_hot = hard or method in (step_ops.REINMAX, step_ops.REDGE_MAX)
    phi, coefs, stats = _c(phi), _c(coefs), _c(stats)
    x = _c(x) if chain and not one_hot else phi
    out = torch.empty_like(phi)
    _launch(_output_kernel, phi.shape[0], phi, x, coefs, stats, index.contiguous(),
            kinds.to(torch.int8).contiguous(), out, phi.shape[1], stats.shape[1], float(tau),
            _seed(seed, phi), col_start, row_start, METHOD=method, ONE_HOT=one_hot, CHAIN=chain,
            GROUPED=_grouped(col_start))
    return out


def _bwd_common(g, phi, x, coefs, stats, index, gmu, glam, method, k):
    tail = method == step_ops.REDGE_COV and k == 0
    chain = method not in step_ops.BASELINES and k >= 1
    phi = phi.contiguous()
    x = _c(x) if chain else phi
    has_gmu = gmu is not None
    return (phi, x, g.contiguous(), _c(gmu) if has_gmu else phi, _c(glam) if has_gmu else phi,
            coefs.contiguous(), stats.contiguous(), index.contiguous()), tail, chain, has_gmu


def step_dot(g, phi, x, coefs, stats, index, gmu, glam, method, k, tau, seed, col_start,
             row_start):
    if not _fp32(phi):
        return step_ops.ref_step_dot(g, phi, x, coefs, stats, index, gmu, glam, method, k, tau,
                                     seed, col_start, row_start)
    args, tail, _, has_gmu = _bwd_common(g, phi, x, coefs, stats, index, gmu, glam, method, k)
    two = step_ops.n_dots(method, k) == 2
    out = phi.new_empty((phi.shape[0], 2 if two else 1))
    _launch(_dot_kernel, phi.shape[0], *args, out, phi.shape[1], stats.shape[1], k, float(tau),
            _seed(seed, phi), col_start, row_start, METHOD=method, TAIL=tail, HAS_GMU=has_gmu,
            TWO=two, GROUPED=_grouped(col_start), num_warps=BWD_WARPS)
    return out


def step_grad(g, phi, x, coefs, stats, index, dots, gphi, gmu, glam, method, k, tau, seed,
              col_start, row_start):
    if not _fp32(phi):
        return step_ops.ref_step_grad(g, phi, x, coefs, stats, index, dots, gphi, gmu, glam,
                                      method, k, tau, seed, col_start, row_start)
    (p, xx, gg, gm, gl, co, st, ix), tail, chain, has_gmu = _bwd_common(
        g, phi, x, coefs, stats, index, gmu, glam, method, k)
    want_x, want_mu, want_lam = step_ops.grad_outputs(method, k)
    outs = [torch.empty_like(p)] + [torch.empty_like(p) if w else p.new_empty(0)
                                    for w in (want_x, want_mu, want_lam)]
    targets = [o if o.dim() == 2 else p for o in outs]  # unused pointers: never written
    two = step_ops.n_dots(method, k) == 2
    _launch(_grad_kernel, p.shape[0], p, xx, gg, _c(gphi) if gphi is not None else p, gm, gl,
            co, st, ix, dots.contiguous(), *targets, p.shape[1], st.shape[1], k, float(tau),
            _seed(seed, p), col_start, row_start, METHOD=method, TAIL=tail,
            HAS_GPHI=gphi is not None,
            HAS_GMU=has_gmu, CHAIN=chain, TWO=two, GROUPED=_grouped(col_start),
            num_warps=BWD_WARPS)
    return tuple(outs)


LAUNCHERS = {"step_init": step_init, "step_stats": step_stats, "step_next": step_next,
             "step_sample": step_sample, "step_output": step_output, "step_dot": step_dot,
             "step_grad": step_grad}
