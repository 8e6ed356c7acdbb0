"""The one-pass baselines (docs/SPEC.md "Baselines": Straight-Through, Gumbel-Softmax, ReinMax) for
small K: a program holds ``ROWS`` whole rows as one ``[ROWS, BLOCK]`` block, so K = 2, 9 or 64
fills the lanes that a program per row leaves idle (docs/SPEC.md "Throughput budget on a GPU"
(d)), as ``_diffusion_rows`` does for the diffusion family. Same math, same operations per element
and the same noise as the single-block path of ``_onepass`` (whose elementwise helpers it calls
with per-row scalars as ``[ROWS, 1]`` columns); every row reduction is along axis 1. The constexpr
METHOD (0 st, 1 gumbel, 2 reinmax, as ``_constants.METHOD_IDS``) picks the variant. Blocks of
BLOCK <= ``_diffusion_rows.GROUPS_MAX_BLOCK`` are laid out as their column groups of four, as the
grouped noise is (``_diffusion_rows._row_block``); blocks of BLOCK = 2 (K <= 2) hold each row as
its two columns instead, a row per thread (``_onepass_pairs``: one noise call per row, the row
reductions one operation each).

Noise: stream 1 of the global rows ``row_offset + r`` and columns ``col_offset + j``
(``_noise.gumbel_rows``, the values ``_noise.gumbel`` draws for each row),
so the sampled index is the one of the reference and of the one-row-per-program kernels: the first
argmax of ``phi + G``, here with every G evaluated for every method (``_sample_rows``; the
one-row-per-program kernels evaluate for st / reinmax only the candidates of the exact Gumbel-max,
``_gumbel_max.fold``, which finds the same index).
"""

import triton
import triton.language as tl

from ._common import NEG_INF, POS_INF, exp, finish, one_hot_tile, probs, safe_max, scaled_probs
from ._diffusion_rows import (GROUPS_MAX_BLOCK, _load_block, _load_rows, _row_block, _stats_rows,
                             _store_block, argmax_rows)
from ._noise import gumbel_rows
from ._onepass import GUMBEL, REINMAX, _base_probs
from ._onepass_pairs import pairs_bwd, pairs_fwd


@triton.jit
def _scaled_stats_rows(v, tau):
    """Per-row ``(m, s)`` of ``softmax(v / tau)`` of a ``[ROWS, BLOCK]`` block as ``[ROWS, 1]``:
    ``m`` = safe max of ``v`` (unscaled), ``s = sum exp((v - m) / tau)`` (``scaled_row_stats``
    per row)."""
    m = safe_max(tl.max(v, axis=1))[:, None]
    s = tl.sum(exp((v - m) * (1.0 / tau)), axis=1)[:, None]
    return m, s


@triton.jit
def _sample_rows(phi, seed, grows, coff, cols, METHOD: tl.constexpr, ROWS: tl.constexpr,
                 BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """``(v, best_idx)``: the scores ``v`` of ``b`` (``phi + G`` for Gumbel-Softmax, else
    ``phi``; float32 [ROWS, BLOCK]) and each row's first argmax of ``phi + G`` (int64 [ROWS];
    NaN read as ``-inf``, ``argmax_rows``). ``grows`` int64 [ROWS] global rows, ``cols`` int64
    [1, BLOCK] global columns ``coff + j``. Every method evaluates every G here (``argmax_rows``).
    """
    score = phi + gumbel_rows(seed, grows[:, None], coff, cols, ROWS, BLOCK, GROUPED)
    best_idx = argmax_rows(score)
    if METHOD == GUMBEL:
        v = score
    else:
        v = phi
    return v, best_idx


@triton.jit
def _put_stats_rows(stats_ptr, rows, rmask, n, m0, s0, mt, st, poisoned,
                    METHOD: tl.constexpr, STEPS_P2: tl.constexpr):
    """stats[row, :] of the block: slot 0 = (m0, s0), slot 1 = (mt, st) for reinmax, every other
    slot (0, 0); s = NaN on poisoned rows (``[ROWS, 1]`` scalars, ``poisoned`` [ROWS, 1])."""
    steps = tl.arange(0, STEPS_P2)[None, :]
    mvec = tl.where(steps == 0, m0, 0.0)
    svec = tl.where(steps == 0, s0, 0.0)
    if METHOD == REINMAX:
        mvec = tl.where(steps == 1, mt, mvec)
        svec = tl.where(steps == 1, st, svec)
    smask = rmask[:, None] & (steps < n)
    base = stats_ptr + rows[:, None] * n * 2 + steps * 2
    tl.store(base, mvec, mask=smask)
    tl.store(base + 1, finish(svec, poisoned, False), mask=smask)


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _onepass_rows_fwd_kernel(phi_ptr, seed_ptr, y_ptr, stats_ptr, index_ptr, tau,
                             R, K, n, row_offset, col_offset, phi_stride_r, phi_stride_c,
                             METHOD: tl.constexpr, HARD: tl.constexpr, ROWS: tl.constexpr,
                             BLOCK: tl.constexpr, STEPS_P2: tl.constexpr, GROUPED: tl.constexpr,
                             WRITE_Y: tl.constexpr = True):
    """Forward of st / gumbel / reinmax for the rows ``pid * ROWS ..`` (K <= BLOCK).

    phi [R, K] (strided, any float dtype), seed 0-dim int64, tau float -> y [R, K] contiguous,
    stats [R, n, 2] (as ``_onepass_fwd_kernel``: s = NaN on poisoned rows), index [R] int64 (-1 on
    empty / poisoned rows).
    """
    # per row, G = stream-1 Gumbel noise, i = argmax_j (phi + G)_j:
    #   st:      b = phi,             y = one_hot(i) (HARD) or softmax(b)
    #   gumbel:  b = (phi + G) / tau, y = one_hot(i) (HARD) or softmax(b)
    #   reinmax: b = phi,             y = one_hot(i); slot 1 = stats of softmax(phi / tau)
    # stats of a tempered softmax of scores v: m = max v, s = sum exp((v - m) / tau) (unscaled max)
    seed = tl.load(seed_ptr)
    if BLOCK == 2:  # K <= 2: a row per thread (_onepass_pairs)
        pairs_fwd(phi_ptr, seed, y_ptr, stats_ptr, index_ptr, tau, R, K, n, row_offset, col_offset,
                  phi_stride_r, phi_stride_c, METHOD, HARD, ROWS, STEPS_P2, GROUPED, WRITE_Y)
    else:
        _block_fwd(phi_ptr, seed, y_ptr, stats_ptr, index_ptr, tau, R, K, n, row_offset,
                   col_offset, phi_stride_r, phi_stride_c, METHOD, HARD, ROWS, BLOCK, STEPS_P2,
                   GROUPED, WRITE_Y)


@triton.jit
def _block_fwd(phi_ptr, seed, y_ptr, stats_ptr, index_ptr, tau, R, K, n, row_offset, col_offset,
               phi_stride_r, phi_stride_c, METHOD: tl.constexpr, HARD: tl.constexpr,
               ROWS: tl.constexpr, BLOCK: tl.constexpr, STEPS_P2: tl.constexpr,
               GROUPED: tl.constexpr, WRITE_Y: tl.constexpr):
    """``_onepass_rows_fwd_kernel`` on one ``[ROWS, BLOCK]`` block (``seed`` loaded)."""
    GROUPS: tl.constexpr = BLOCK <= GROUPS_MAX_BLOCK
    rows, j4, lanes, rmask, mask = _row_block(tl.program_id(0), R, K, ROWS, BLOCK, GROUPS)
    coff = col_offset.to(tl.int64)
    phi, poisoned, empty = _load_rows(phi_ptr, rows, j4, lanes, rmask, mask, K, phi_stride_r,
                                      phi_stride_c, GROUPS, True)
    v, best_idx = _sample_rows(phi, seed, rows + row_offset, coff, coff + lanes, METHOD,
                               ROWS, BLOCK, GROUPED)
    if METHOD == GUMBEL:
        m0, s0 = _scaled_stats_rows(v, tau)
    else:
        m0, s0 = _stats_rows(v)
    if METHOD == REINMAX:
        mt, st = _scaled_stats_rows(phi, tau)
    else:
        mt = m0
        st = s0
    if WRITE_Y:
        if HARD or METHOD == REINMAX:
            y = one_hot_tile(lanes.to(tl.int32), 0, best_idx[:, None], poisoned[:, None],
                             empty[:, None], BLOCK, y_ptr.dtype.element_ty)
        else:
            y = finish(_base_probs(v, m0, s0, tau, METHOD), poisoned[:, None], empty[:, None])
        _store_block(y_ptr, rows, j4, lanes, rmask, mask, K, y, GROUPS)
    _put_stats_rows(stats_ptr, rows, rmask, n, m0, s0, mt, st, poisoned[:, None], METHOD,
                    STEPS_P2)
    tl.store(index_ptr + rows, tl.where(poisoned | empty, -1, best_idx), mask=rmask)


@triton.jit
def _reinmax_grad_rows(phi, g, m0, s0, mt, st, hit, mask, tau):
    """ReinMax's gphi of a ``[ROWS, BLOCK]`` block (``hit``: the sampled entry of each row),
    centred over the unmasked entries, exactly 0 where masked."""
    p0 = probs(phi, m0, s0)
    p1 = 0.5 * (scaled_probs(phi, mt, st, tau) + hit.to(tl.float32))
    u = 2.0 * g * p1
    u = u - p1 * tl.sum(u, axis=1)[:, None]
    w = -0.5 * g * p0
    w = w - p0 * tl.sum(w, axis=1)[:, None]
    gphi = u + w
    valid = (phi != NEG_INF) & mask
    n_valid = tl.maximum(tl.sum(valid.to(tl.int32), axis=1), 1).to(tl.float32)[:, None]
    mean = tl.sum(tl.where(valid, gphi, 0.0), axis=1)[:, None] / n_valid
    return tl.where(valid, gphi - mean, 0.0)


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _onepass_rows_bwd_kernel(gy_ptr, phi_ptr, seed_ptr, stats_ptr, index_ptr, gphi_ptr, tau,
                             R, K, n, row_offset, col_offset, phi_stride_r, phi_stride_c,
                             gy_stride_r, gy_stride_c, METHOD: tl.constexpr, ROWS: tl.constexpr,
                             BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """Backward of st / gumbel / reinmax for the rows ``pid * ROWS ..`` (K <= BLOCK).

    grad_y [R, K] (strided), phi, seed, stats [R, n, 2], index [R] from the forward -> grad_phi
    [R, K] contiguous (0 on empty rows, NaN on poisoned rows).
    """
    # per row, g = dL/dy:
    #   st / gumbel: gphi = s (g - <g, s>) (/ tau for gumbel), s = softmax(b) from slot 0
    #   reinmax:     p0 = softmax(phi), p1 = (softmax(phi / tau) + D) / 2, D = one_hot(i)
    #                u = 2 g p1 - p1 A, A = sum(2 g p1);  w = -g/2 p0 - p0 C, C = sum(-g/2 p0)
    #                gphi = u + w, centred over the unmasked entries (masked entries exactly 0)
    seed = tl.load(seed_ptr)
    if BLOCK == 2:  # K <= 2: a row per thread (_onepass_pairs)
        pairs_bwd(gy_ptr, phi_ptr, seed, stats_ptr, index_ptr, gphi_ptr, tau, R, K, n, row_offset,
                  col_offset, phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c, METHOD, ROWS,
                  GROUPED)
    else:
        _block_bwd(gy_ptr, phi_ptr, seed, stats_ptr, index_ptr, gphi_ptr, tau, R, K, n,
                   row_offset, col_offset, phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
                   METHOD, ROWS, BLOCK, GROUPED)


@triton.jit
def _block_bwd(gy_ptr, phi_ptr, seed, stats_ptr, index_ptr, gphi_ptr, tau, R, K, n, row_offset,
               col_offset, phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
               METHOD: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
               GROUPED: tl.constexpr):
    """``_onepass_rows_bwd_kernel`` on one ``[ROWS, BLOCK]`` block (``seed`` loaded)."""
    GROUPS: tl.constexpr = BLOCK <= GROUPS_MAX_BLOCK
    rows, j4, lanes, rmask, mask = _row_block(tl.program_id(0), R, K, ROWS, BLOCK, GROUPS)
    coff = col_offset.to(tl.int64)
    stats_row = stats_ptr + rows * n * 2
    m0 = tl.load(stats_row, mask=rmask, other=0.0).to(tl.float32)[:, None]
    s0 = tl.load(stats_row + 1, mask=rmask, other=0.0).to(tl.float32)[:, None]
    idx = tl.load(index_ptr + rows, mask=rmask, other=0)[:, None]
    poisoned = (idx < 0) & (s0 != s0)
    empty = (idx < 0) & (s0 == s0)
    phi = _load_block(phi_ptr, rows, j4, lanes, rmask, mask, K, phi_stride_r, phi_stride_c,
                      NEG_INF, GROUPS)
    g = _load_block(gy_ptr, rows, j4, lanes, rmask, mask, K, gy_stride_r, gy_stride_c, 0.0,
                    GROUPS)
    if METHOD == REINMAX:
        mt = tl.load(stats_row + 2, mask=rmask, other=0.0).to(tl.float32)[:, None]
        st = tl.load(stats_row + 3, mask=rmask, other=0.0).to(tl.float32)[:, None]
        gphi = _reinmax_grad_rows(phi, g, m0, s0, mt, st, lanes == idx, mask, tau)
    else:
        if METHOD == GUMBEL:
            v = phi + gumbel_rows(seed, (rows + row_offset)[:, None], coff, coff + lanes,
                                  ROWS, BLOCK, GROUPED)
        else:
            v = phi
        s = _base_probs(v, m0, s0, tau, METHOD)
        gphi = s * (g - tl.sum(g * s, axis=1)[:, None])
        if METHOD == GUMBEL:
            gphi = gphi * (1.0 / tau)
    _store_block(gphi_ptr, rows, j4, lanes, rmask, mask, K, finish(gphi, poisoned, empty), GROUPS)
