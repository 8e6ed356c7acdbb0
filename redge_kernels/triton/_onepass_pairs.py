"""The one-pass baselines (docs/SPEC.md "Baselines") for rows of K <= 2, the ``BLOCK = 2`` case of
the ``_onepass_rows`` kernels: each of the block's ``ROWS`` rows is held as its two columns, two
float32 ``[ROWS]`` vectors, so that one thread owns a whole row. Every row reduction is then one
operation on the two columns (``tl.maximum`` for ``tl.max``, ``+`` for ``tl.sum``: the same
combine, in the same order, as the reductions of a ``[ROWS, 2]`` block), and the noise takes one
Philox call per row where the columns start at a multiple of 4 (words 0 and 1 of the call
``(col >> 2, row lo, row hi, 1)``, docs/SPEC.md "Randomness"; words 2 and 3 belong to columns that
the row does not have), else one call per column. Same math, same values and the same index as the
``[ROWS, BLOCK]`` block: the first argmax of ``phi + G`` (NaN read as ``-inf``) is column 1 exactly
when its score is greater than column 0's.

K = 1: column 1 is masked (``-inf`` logits, zero gradient, nothing stored).
"""

import triton
import triton.language as tl

from ._common import NEG_INF, POS_INF, exp, finish, probs, safe_max, scaled_probs
from ._noise import gumbel_from_word, lane_word, philox_words
from ._onepass import GUMBEL, REINMAX, _base_probs


@triton.jit
def _pair_gumbel(seed, grows, coff, GROUPED: tl.constexpr):
    """Stream-1 G (float32 [ROWS] each) of the global columns ``coff`` and ``coff + 1`` of the
    global rows ``grows`` (int64 [ROWS]); ``GROUPED``: ``coff`` a multiple of 4, one call per
    row."""
    zero = tl.zeros(grows.shape, dtype=tl.int64)
    if GROUPED:
        w0, w1, w2, w3 = philox_words(seed, zero + (coff >> 2), grows, 1)
        a = w0
        b = w1
    else:
        c1 = coff + 1
        x0, x1, x2, x3 = philox_words(seed, zero + (coff >> 2), grows, 1)
        a = lane_word(x0, x1, x2, x3, coff & 3)
        y0, y1, y2, y3 = philox_words(seed, zero + (c1 >> 2), grows, 1)
        b = lane_word(y0, y1, y2, y3, c1 & 3)
    return gumbel_from_word(a), gumbel_from_word(b)


@triton.jit
def _pair_stats(v0, v1, tau, SCALED: tl.constexpr):
    """Per-row ``(m, s)`` of the two columns: ``m`` = safe max (unscaled), ``s = sum exp((v - m)
    / tau)`` (``tau`` only if ``SCALED``), as ``_stats_rows`` / ``_scaled_stats_rows``."""
    m = safe_max(tl.maximum(v0, v1))
    if SCALED:
        r = 1.0 / tau
        s = exp((v0 - m) * r) + exp((v1 - m) * r)
    else:
        s = exp(v0 - m) + exp(v1 - m)
    return m, s


@triton.jit
def _pair_rows(R, K, ROWS: tl.constexpr):
    """``(rows int64 [ROWS], rmask, has1)``: the block's rows, those < R, those with a column 1."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    rmask = rows < R
    return rows, rmask, rmask & ((tl.zeros_like(rows) + K) > 1)


@triton.jit
def _load_pair(ptr, rows, stride_r, stride_c, rmask, has1, other):
    """Columns 0 and 1 of the block's rows of a [R, K <= 2] tensor as float32 [ROWS] each
    (``other`` where a row or its column 1 is absent)."""
    at = ptr + rows * stride_r
    a0 = tl.load(at, mask=rmask, other=other).to(tl.float32)
    a1 = tl.load(at + stride_c, mask=has1, other=other).to(tl.float32)
    return a0, a1


@triton.jit
def _bad(p):
    return (p != p) | (p == POS_INF)


@triton.jit
def _put_pair_stats(stats_ptr, rows, rmask, n, m0, s0, mt, st, poisoned, REINMAX_: tl.constexpr):
    """stats[row, :] from ``[ROWS]`` vectors: slot 0 = (m0, s0), slot 1 = (mt, st) for reinmax
    (``REINMAX_``), every other slot (0, 0); s = NaN on poisoned rows. One store per slot and
    entry, no ``[ROWS, n]`` block (which cost a layout conversion through shared memory: at
    9600 x 2, sm_90, 12 of the st forward's 173 instructions per element)."""
    base = stats_ptr + rows * n * 2
    tl.store(base, m0, mask=rmask)
    tl.store(base + 1, finish(s0, poisoned, False), mask=rmask)
    if not REINMAX_:
        mt = tl.zeros_like(m0)
        st = mt
    if n > 1:  # the launcher's one-pass schedule has two slots
        tl.store(base + 2, mt, mask=rmask)
        tl.store(base + 3, finish(st, poisoned, False), mask=rmask)
    if n > 2:  # (any other schedule: its slots are unused)
        zero = tl.zeros_like(m0)
        for k in range(2, n):
            tl.store(base + 2 * k, zero, mask=rmask)
            tl.store(base + 2 * k + 1, finish(zero, poisoned, False), mask=rmask)


@triton.jit
def pairs_fwd(phi_ptr, seed, y_ptr, stats_ptr, index_ptr, tau, R, K, n, row_offset, col_offset,
              phi_stride_r, phi_stride_c, METHOD: tl.constexpr, HARD: tl.constexpr,
              ROWS: tl.constexpr, STEPS_P2: tl.constexpr, GROUPED: tl.constexpr,
              WRITE_Y: tl.constexpr):
    """``_onepass_rows_fwd_kernel`` for K <= 2 (its arguments and outputs; ``seed`` loaded)."""
    rows, rmask, has1 = _pair_rows(R, K, ROWS)
    p0, p1 = _load_pair(phi_ptr, rows, phi_stride_r, phi_stride_c, rmask, has1, NEG_INF)
    poisoned = (_bad(p0) & rmask) | (_bad(p1) & has1)
    empty = (p0 == NEG_INF) & (p1 == NEG_INF)  # a NaN is neither -inf nor empty
    g0, g1 = _pair_gumbel(seed, rows + row_offset, col_offset.to(tl.int64), GROUPED)
    v0 = p0 + g0
    v1 = p1 + g1
    best = (tl.where(v1 != v1, NEG_INF, v1) > tl.where(v0 != v0, NEG_INF, v0)).to(tl.int64)
    if METHOD != GUMBEL:
        v0 = p0
        v1 = p1
    m0, s0 = _pair_stats(v0, v1, tau, METHOD == GUMBEL)
    if METHOD == REINMAX:
        mt, st = _pair_stats(p0, p1, tau, True)
    else:
        mt = m0
        st = s0
    if WRITE_Y:
        if HARD or METHOD == REINMAX:
            y0 = tl.where(best == 0, 1.0, 0.0)
            y1 = 1.0 - y0
        else:
            y0 = _base_probs(v0, m0, s0, tau, METHOD)
            y1 = _base_probs(v1, m0, s0, tau, METHOD)
        y_at = y_ptr + rows * K
        tl.store(y_at, finish(y0, poisoned, empty), mask=rmask)
        tl.store(y_at + 1, finish(y1, poisoned, empty), mask=has1)
    _put_pair_stats(stats_ptr, rows, rmask, n, m0, s0, mt, st, poisoned, METHOD == REINMAX)
    tl.store(index_ptr + rows, tl.where(poisoned | empty, -1, best), mask=rmask)


@triton.jit
def _pair_centre(a0, a1, ok0, ok1):
    """``a`` minus its mean over the unmasked columns (``ok``), exactly 0 where masked."""
    n_valid = tl.maximum(ok0.to(tl.int32) + ok1.to(tl.int32), 1).to(tl.float32)
    mean = (tl.where(ok0, a0, 0.0) + tl.where(ok1, a1, 0.0)) / n_valid
    return tl.where(ok0, a0 - mean, 0.0), tl.where(ok1, a1 - mean, 0.0)


@triton.jit
def pairs_bwd(gy_ptr, phi_ptr, seed, stats_ptr, index_ptr, gphi_ptr, tau, R, K, n, row_offset,
              col_offset, phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
              METHOD: tl.constexpr, ROWS: tl.constexpr, GROUPED: tl.constexpr):
    """``_onepass_rows_bwd_kernel`` for K <= 2 (its arguments and outputs; ``seed`` loaded)."""
    rows, rmask, has1 = _pair_rows(R, K, ROWS)
    stats_row = stats_ptr + rows * n * 2
    m0 = tl.load(stats_row, mask=rmask, other=0.0).to(tl.float32)
    s0 = tl.load(stats_row + 1, mask=rmask, other=0.0).to(tl.float32)
    idx = tl.load(index_ptr + rows, mask=rmask, other=0)
    poisoned = (idx < 0) & (s0 != s0)
    empty = (idx < 0) & (s0 == s0)
    p0, p1 = _load_pair(phi_ptr, rows, phi_stride_r, phi_stride_c, rmask, has1, NEG_INF)
    g0, g1 = _load_pair(gy_ptr, rows, gy_stride_r, gy_stride_c, rmask, has1, 0.0)
    if METHOD == REINMAX:
        # as _reinmax_grad_rows, the row sums over the two columns
        mt = tl.load(stats_row + 2, mask=rmask, other=0.0).to(tl.float32)
        st = tl.load(stats_row + 3, mask=rmask, other=0.0).to(tl.float32)
        q0 = probs(p0, m0, s0)
        q1 = probs(p1, m0, s0)
        r0 = 0.5 * (scaled_probs(p0, mt, st, tau) + (idx == 0).to(tl.float32))
        r1 = 0.5 * (scaled_probs(p1, mt, st, tau) + (idx == 1).to(tl.float32))
        u0 = 2.0 * g0 * r0
        u1 = 2.0 * g1 * r1
        su = u0 + u1
        w0 = -0.5 * g0 * q0
        w1 = -0.5 * g1 * q1
        sw = w0 + w1
        d0, d1 = _pair_centre((u0 - r0 * su) + (w0 - q0 * sw), (u1 - r1 * su) + (w1 - q1 * sw),
                              (p0 != NEG_INF) & rmask, (p1 != NEG_INF) & has1)
    else:
        if METHOD == GUMBEL:
            e0, e1 = _pair_gumbel(seed, rows + row_offset, col_offset.to(tl.int64), GROUPED)
            v0 = p0 + e0
            v1 = p1 + e1
        else:
            v0 = p0
            v1 = p1
        q0 = _base_probs(v0, m0, s0, tau, METHOD)
        q1 = _base_probs(v1, m0, s0, tau, METHOD)
        dot = g0 * q0 + g1 * q1
        d0 = q0 * (g0 - dot)
        d1 = q1 * (g1 - dot)
        if METHOD == GUMBEL:
            r = 1.0 / tau
            d0 = d0 * r
            d1 = d1 * r
    out = gphi_ptr + rows * K
    tl.store(out, finish(d0, poisoned, empty), mask=rmask)
    tl.store(out + 1, finish(d1, poisoned, empty), mask=has1)
