"""The one-pass baselines: Straight-Through, Gumbel-Softmax, ReinMax (docs/SPEC.md "Baselines").
One forward and one backward kernel body; the constexpr METHOD (0 st, 1 gumbel, 2 reinmax, as
``_constants.METHOD_IDS``) picks the variant, SINGLE the path (row in one block, or tiled).

Forward, G = Gumbel noise of stream 1, i = argmax_j (phi + G)_j for every method:
    st:      b = phi,              y = one_hot(i) (HARD) or softmax(b)
    gumbel:  b = (phi + G) / tau,  y = one_hot(i) (HARD) or softmax(b)
    reinmax: b = phi,              y = one_hot(i);  also the stats of softmax(phi / tau) (slot 1)
stats[row, 0] = (m, s) of softmax(b); slot 1 = stats of softmax(phi / tau) for reinmax, else (0, 0).
A softmax with a temperature (gumbel's b, reinmax's phi / tau) keeps the stats of its scores v
(phi + G, phi) unscaled: m = max v, s = sum exp((v - m) / tau), entries exp((v - m) / tau) / s.
Subtracting the max before dividing keeps finite logits finite for tau < 1 (v / tau itself
overflows to inf near the fp32 limit, as the reference's ``(scores - top) / tau``).

Backward, g = dL/dy:
    st / gumbel: gphi = s (g - <g, s>) (/ tau for gumbel), s = softmax(b)
    reinmax:     p0 = softmax(phi), p1 = (softmax(phi / tau) + D) / 2, D = one_hot(i)
                 u = 2 g p1 - p1 A, A = sum(2 g p1);  w = -g/2 p0 - p0 C, C = sum(-g/2 p0)
                 gphi = u + w, centred over the unmasked entries (masked entries exactly 0).
Tiled path: the forward folds the online stats and the argmax in one pass and writes y in a second;
the backward reduces the row scalars in one pass and writes gphi in a second (for reinmax the
centring uses sum_valid(u + w) = A - A sum(p1) + C - C sum(p0), as p0 = p1 = 0 where masked).
"""

import triton
import triton.language as tl

from ._common import (NEG_INF, finish, flags_of_max, flags_of_stats, load_tile, one_hot_tile,
                      pick, probs, put, row_stats, safe_max, scaled_probs, scaled_row_stats,
                      slot_argmax_fold, slot_argmax_init, slot_argmax_row, slot_stats_fold,
                      slot_stats_init, slot_stats_row, store_tile, tile_argmax)
from ._gumbel_max import fold
from ._noise import gumbel as _gumbel_noise
from ._noise import gumbel_words

ST: tl.constexpr = tl.constexpr(0)
GUMBEL: tl.constexpr = tl.constexpr(1)
REINMAX: tl.constexpr = tl.constexpr(2)


@triton.jit
def _base_probs(v, m, s, tau, METHOD: tl.constexpr):
    """``softmax(b)`` entries from the scores ``v`` and the slot-0 stats."""
    if METHOD == GUMBEL:
        p = scaled_probs(v, m, s, tau)
    else:
        p = probs(v, m, s)
    return p


@triton.jit
def _tile_scores(phi, seed, grow, c0, cols, METHOD: tl.constexpr, BLOCK: tl.constexpr,
                 GROUPED: tl.constexpr):
    """The scores ``v`` of ``b`` on a tile of global columns ``cols = c0 + arange(BLOCK)``:
    ``phi + G`` for Gumbel-Softmax (the only method drawing the noise here), else ``phi``."""
    if METHOD == GUMBEL:
        v = phi + _gumbel_noise(seed, grow, c0, cols, BLOCK, GROUPED)
    else:
        v = phi
    return v


@triton.jit
def _sample_tile(best, best_idx, phi, seed, grow, c0, cols, start, METHOD: tl.constexpr,
                 BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """``(v, best, best_idx)``: the tile's scores ``v`` (``_tile_scores``) and the Gumbel-max
    ``argmax (phi + G)`` folded in. Gumbel-Softmax needs every G; st / reinmax evaluate G only for
    the candidates (``fold``)."""
    if METHOD == GUMBEL:
        v = phi + _gumbel_noise(seed, grow, c0, cols, BLOCK, GROUPED)
        best, best_idx = tile_argmax(best, best_idx, v, start)
    else:
        v = phi
        w = gumbel_words(seed, grow, c0, cols, BLOCK, GROUPED)
        best, best_idx = fold(best, best_idx, phi, w, start, seed, grow, c0, BLOCK)
    return v, best, best_idx


@triton.jit
def _group_argmax(phi_row, phi_stride_c, seed, grow, coff, c1, sbest, sgroup,
                  METHOD: tl.constexpr):
    """``(best, best_idx)`` of Gumbel-Softmax's tiled scan from its per-slot state
    (``_common.slot_argmax_row``): the scores of the winning group of four columns are drawn again
    (the same loads and noise as in the scan, one call per entry) and its first argmax is the
    row's."""
    best, g = slot_argmax_row(sbest, sgroup)
    j4 = tl.arange(0, 4)
    cols = g.to(tl.int64) + j4
    phi = tl.load(phi_row + cols * phi_stride_c, mask=cols < c1, other=NEG_INF).to(tl.float32)
    v = _tile_scores(phi, seed, grow, coff + g, coff + cols, METHOD, 4, False)
    return best, g.to(tl.int64) + tl.argmax(v, axis=0, tie_break_left=True).to(tl.int64)


@triton.jit
def _scan_range(phi_row, phi_stride_c, seed, grow, coff, lanes, c0, c1, tau, METHOD: tl.constexpr,
                BLOCK: tl.constexpr, GROUPED: tl.constexpr, EVEN: tl.constexpr = False):
    """One pass over the columns ``[c0, c1)`` of a row in tiles of BLOCK: the online stats of the
    scores ``v`` (slot 0: ``m = max v``, ``s = sum exp(v - m)``; Gumbel-Softmax ``exp((v - m) /
    tau)``), ReinMax's ``softmax(phi / tau)`` stats, the Gumbel-max ``(best, best_idx)`` (first
    argmax of fl(phi + G), index relative to the row; Gumbel-Softmax keeps it per slot,
    ``slot_argmax_fold``) and the row flags (from slot 0's stats, ``flags_of_stats``: its scores
    are NaN / ``+inf`` / ``-inf`` exactly where phi is). Returns ``(m0, s0, mt, st, best,
    best_idx, n_bad, n_valid)``; the maxima are raw (-inf where every entry is -inf)."""
    sbest, sgroup = slot_argmax_init(BLOCK)  # Gumbel-Softmax's argmax, per slot
    r = 1.0 / tau
    r0 = 1.0  # the scale inside slot 0's softmax: 1 / tau for Gumbel-Softmax
    if METHOD == GUMBEL:
        r0 = r
    m0, s0 = slot_stats_init(BLOCK)  # per-slot stats (slot_stats_fold), combined at the end
    mt, st = slot_stats_init(BLOCK)
    best = NEG_INF
    best_idx = grow * 0
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        phi = load_tile(phi_row + cols * phi_stride_c, cmask, NEG_INF, EVEN).to(tl.float32)
        if METHOD == GUMBEL:
            v = phi + _gumbel_noise(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
            sbest, sgroup = slot_argmax_fold(sbest, sgroup, v, start, BLOCK)
        else:
            v, best, best_idx = _sample_tile(best, best_idx, phi, seed, grow, coff + start,
                                             coff + cols, start, METHOD, BLOCK, GROUPED)
        m0, s0 = slot_stats_fold(m0, s0, v, r0, BLOCK)
        if METHOD == REINMAX:
            mt, st = slot_stats_fold(mt, st, phi, r, BLOCK)
    m0, s0 = slot_stats_row(m0, s0, r0)
    n_bad, n_valid = flags_of_stats(m0, s0)
    if METHOD == GUMBEL:
        best, best_idx = _group_argmax(phi_row, phi_stride_c, seed, grow, coff, c1, sbest, sgroup,
                                       METHOD)
    if METHOD == REINMAX:
        mt, st = slot_stats_row(mt, st, r)
    else:
        mt = NEG_INF
        st = 0.0
    return m0, s0, mt, st, best, best_idx, n_bad, n_valid


@triton.jit
def _write_range(y_row, phi_row, phi_stride_c, seed, grow, coff, lanes, c0, c1, best_idx, m0, s0,
                 tau, poisoned, empty, METHOD: tl.constexpr, HARD: tl.constexpr,
                 BLOCK: tl.constexpr, GROUPED: tl.constexpr, EVEN: tl.constexpr = False):
    """y on the columns ``[c0, c1)`` of a row (contiguous ``y_row``): ``one_hot(best_idx)`` for
    hard samples and ReinMax, else ``softmax(b)`` from the slot-0 stats ``(m0, s0)``; NaN on a
    poisoned row, 0 on an empty one (``finish``)."""
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        if HARD or METHOD == REINMAX:
            y = one_hot_tile(tl.arange(0, BLOCK), start, best_idx, poisoned, empty, BLOCK,
                             y_row.dtype.element_ty)
        else:
            phi = load_tile(phi_row + cols * phi_stride_c, cmask, NEG_INF, EVEN).to(tl.float32)
            v = _tile_scores(phi, seed, grow, coff + start, coff + cols, METHOD, BLOCK, GROUPED)
            y = finish(_base_probs(v, m0, s0, tau, METHOD), poisoned, empty)
        store_tile(y_row + cols, y, cmask, EVEN)


@triton.jit
def _reinmax_probs(phi, cols, idx, m0, s0, mt, st, tau):
    """ReinMax's ``p0 = softmax(phi)`` and ``p1 = (softmax(phi / tau) + one_hot(idx)) / 2``."""
    p0 = probs(phi, m0, s0)
    p1 = 0.5 * (scaled_probs(phi, mt, st, tau) + (cols == idx).to(tl.float32))
    return p0, p1


@triton.jit
def _bwd_sums_range(phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, lanes, c0, c1,
                    idx, m0, s0, mt, st, tau, METHOD: tl.constexpr, BLOCK: tl.constexpr,
                    GROUPED: tl.constexpr, EVEN: tl.constexpr = False):
    """The backward's row sums over the columns ``[c0, c1)``: st / gumbel ``a = <g, s>``;
    reinmax ``(a, c, sum p1, sum p0, valid entries)`` with ``a = <2 g, p1>``, ``c = <-g / 2,
    p0>``. Returns ``(a, c, p1_sum, p0_sum, n_valid)`` (zeros where the method has none)."""
    a_sum = 0.0
    c_sum = 0.0
    p1_sum = 0.0
    p0_sum = 0.0
    n_valid = 0
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        phi = load_tile(phi_row + cols * phi_stride_c, cmask, NEG_INF, EVEN).to(tl.float32)
        g = load_tile(gy_row + cols * gy_stride_c, cmask, 0.0, EVEN).to(tl.float32)
        if METHOD == REINMAX:
            p0, p1 = _reinmax_probs(phi, cols, idx, m0, s0, mt, st, tau)
            a_sum += tl.sum(2.0 * g * p1, axis=0)
            c_sum += tl.sum(-0.5 * g * p0, axis=0)
            p1_sum += tl.sum(p1, axis=0)
            p0_sum += tl.sum(p0, axis=0)
            n_valid += tl.sum(((phi != NEG_INF) & cmask).to(tl.int32), axis=0)
        else:
            v = _tile_scores(phi, seed, grow, coff + start, coff + cols, METHOD, BLOCK, GROUPED)
            a_sum += tl.sum(g * _base_probs(v, m0, s0, tau, METHOD), axis=0)
    return a_sum, c_sum, p1_sum, p0_sum, n_valid


@triton.jit
def _bwd_write_range(gphi_row, phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, lanes,
                     c0, c1, idx, m0, s0, mt, st, tau, a_sum, c_sum, mean, poisoned, empty,
                     METHOD: tl.constexpr, BLOCK: tl.constexpr, GROUPED: tl.constexpr,
                     EVEN: tl.constexpr = False):
    """grad_phi on the columns ``[c0, c1)`` from the row sums: st / gumbel ``s (g - a)`` (gumbel
    ``/ tau``); reinmax ``(2 g p1 - p1 a) + (-g p0 / 2 - p0 c) - mean`` on the valid entries, 0
    elsewhere; NaN on a poisoned row, 0 on an empty one (``finish``)."""
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        phi = load_tile(phi_row + cols * phi_stride_c, cmask, NEG_INF, EVEN).to(tl.float32)
        g = load_tile(gy_row + cols * gy_stride_c, cmask, 0.0, EVEN).to(tl.float32)
        if METHOD == REINMAX:
            p0, p1 = _reinmax_probs(phi, cols, idx, m0, s0, mt, st, tau)
            gphi = (2.0 * g * p1 - p1 * a_sum) + (-0.5 * g * p0 - p0 * c_sum)
            gphi = tl.where((phi != NEG_INF) & cmask, gphi - mean, 0.0)
        else:
            v = _tile_scores(phi, seed, grow, coff + start, coff + cols, METHOD, BLOCK, GROUPED)
            gphi = _base_probs(v, m0, s0, tau, METHOD) * (g - a_sum)
            if METHOD == GUMBEL:
                gphi = gphi * (1.0 / tau)
        store_tile(gphi_row + cols, finish(gphi, poisoned, empty), cmask, EVEN)


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _onepass_fwd_kernel(phi_ptr, seed_ptr, y_ptr, stats_ptr, index_ptr, tau,
                        K, n, row_offset, col_offset, phi_stride_r, phi_stride_c,
                        METHOD: tl.constexpr, HARD: tl.constexpr, SINGLE: tl.constexpr,
                        BLOCK: tl.constexpr, STEPS_P2: tl.constexpr, GROUPED: tl.constexpr,
                        WRITE_Y: tl.constexpr = True, EVEN: tl.constexpr = False):
    """Forward of st / gumbel / reinmax for one row (see module docstring).

    phi [R, K] (strided), seed 0-dim int64, tau float -> y [R, K] contiguous, stats [R, n, 2]
    (s = NaN on poisoned rows), index [R] int64 (-1 on empty / poisoned rows). ``EVEN`` (tiled
    path, K a multiple of BLOCK): tiles without masks; int32 column offsets within a row there.
    """
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    phi_row = phi_ptr + row * phi_stride_r
    y_row = y_ptr + row * K
    stats_row = stats_ptr + row * n * 2
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    steps = tl.arange(0, STEPS_P2)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    if SINGLE:
        cmask = lanes < K
        phi = tl.load(phi_row + lanes * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        n_bad, n_valid = flags_of_max(phi)
        v, _, best_idx = _sample_tile(NEG_INF, row * 0, phi, seed, grow, coff, coff + lanes, 0,
                                      METHOD, BLOCK, GROUPED)
        if METHOD == GUMBEL:
            m0, s0 = scaled_row_stats(v, tau)
        else:
            m0, s0 = row_stats(v)
        mt, st = scaled_row_stats(phi, tau)
        poisoned = n_bad > 0
        empty = (n_valid == 0) & (n_bad == 0)
        if HARD or METHOD == REINMAX:
            y = one_hot_tile(tl.arange(0, BLOCK), 0, best_idx, poisoned, empty, BLOCK,
                             y_row.dtype.element_ty)
        else:
            y = finish(_base_probs(v, m0, s0, tau, METHOD), poisoned, empty)
        if WRITE_Y:
            tl.store(y_row + lanes, y, mask=cmask)
    else:
        lanes = tl.arange(0, BLOCK)
        m0, s0, mt, st, best, best_idx, n_bad, n_valid = _scan_range(
            phi_row, phi_stride_c, seed, grow, coff, lanes, 0, K, tau, METHOD, BLOCK, GROUPED,
            EVEN)
        m0 = safe_max(m0)
        mt = safe_max(mt)
        poisoned = n_bad > 0
        empty = (n_valid == 0) & (n_bad == 0)
        if WRITE_Y:
            _write_range(y_row, phi_row, phi_stride_c, seed, grow, coff, lanes, 0, K, best_idx,
                         m0, s0, tau, poisoned, empty, METHOD, HARD, BLOCK, GROUPED, EVEN)
    mvec = put(tl.zeros([STEPS_P2], dtype=tl.float32), steps, 0, m0)
    svec = put(tl.zeros([STEPS_P2], dtype=tl.float32), steps, 0, s0)
    if METHOD == REINMAX:
        mvec = put(mvec, steps, 1, mt)
        svec = put(svec, steps, 1, st)
    smask = steps < n
    tl.store(stats_row + steps * 2, mvec, mask=smask)
    tl.store(stats_row + steps * 2 + 1, finish(svec, poisoned, False), mask=smask)
    tl.store(index_ptr + row, tl.where(poisoned | empty, -1, best_idx))


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _onepass_bwd_kernel(gy_ptr, phi_ptr, seed_ptr, stats_ptr, index_ptr, gphi_ptr, tau,
                        K, n, row_offset, col_offset, phi_stride_r, phi_stride_c, gy_stride_r,
                        gy_stride_c, METHOD: tl.constexpr, SINGLE: tl.constexpr,
                        BLOCK: tl.constexpr, STEPS_P2: tl.constexpr, GROUPED: tl.constexpr,
                        EVEN: tl.constexpr = False):
    """Backward of st / gumbel / reinmax for one row (see module docstring).

    grad_y [R, K] (strided), phi, seed, stats, index from the forward -> grad_phi [R, K]
    contiguous (0 on empty rows, NaN on poisoned rows). ``EVEN``: as in the forward.
    """
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    phi_row = phi_ptr + row * phi_stride_r
    gy_row = gy_ptr + row * gy_stride_r
    gphi_row = gphi_ptr + row * K
    stats_row = stats_ptr + row * n * 2
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    steps = tl.arange(0, STEPS_P2)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    smask = steps < n
    mvec = tl.load(stats_row + steps * 2, mask=smask, other=0.0).to(tl.float32)
    svec = tl.load(stats_row + steps * 2 + 1, mask=smask, other=0.0).to(tl.float32)
    m0 = pick(mvec, steps, 0)
    s0 = pick(svec, steps, 0)
    mt = pick(mvec, steps, 1)
    st = pick(svec, steps, 1)
    idx = tl.load(index_ptr + row)
    poisoned = (idx < 0) & (s0 != s0)
    empty = (idx < 0) & (s0 == s0)
    if SINGLE:
        cmask = lanes < K
        phi = tl.load(phi_row + lanes * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        g = tl.load(gy_row + lanes * gy_stride_c, mask=cmask, other=0.0).to(tl.float32)
        if METHOD == REINMAX:
            p0 = probs(phi, m0, s0)
            p1 = 0.5 * (scaled_probs(phi, mt, st, tau) + (lanes == idx).to(tl.float32))
            u = 2.0 * g * p1
            u = u - p1 * tl.sum(u, axis=0)
            w = -0.5 * g * p0
            w = w - p0 * tl.sum(w, axis=0)
            gphi = u + w
            valid = (phi != NEG_INF) & cmask
            n_valid = tl.maximum(tl.sum(valid.to(tl.int32), axis=0), 1).to(tl.float32)
            mean = tl.sum(tl.where(valid, gphi, 0.0), axis=0) / n_valid
            gphi = tl.where(valid, gphi - mean, 0.0)
        else:
            v = _tile_scores(phi, seed, grow, coff, coff + lanes, METHOD, BLOCK, GROUPED)
            s = _base_probs(v, m0, s0, tau, METHOD)
            gphi = s * (g - tl.sum(g * s, axis=0))
            if METHOD == GUMBEL:
                gphi = gphi * (1.0 / tau)
        tl.store(gphi_row + lanes, finish(gphi, poisoned, empty), mask=cmask)
    else:
        # pass 1: the row scalars; pass 2: write gphi
        lanes = tl.arange(0, BLOCK)
        a_sum, c_sum, p1_sum, p0_sum, n_valid = _bwd_sums_range(
            phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, lanes, 0, K, idx, m0, s0,
            mt, st, tau, METHOD, BLOCK, GROUPED, EVEN)
        mean = (a_sum - a_sum * p1_sum + c_sum - c_sum * p0_sum) / \
            tl.maximum(n_valid, 1).to(tl.float32)
        _bwd_write_range(gphi_row, phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff,
                         lanes, 0, K, idx, m0, s0, mt, st, tau, a_sum, c_sum, mean, poisoned,
                         empty, METHOD, BLOCK, GROUPED, EVEN)
