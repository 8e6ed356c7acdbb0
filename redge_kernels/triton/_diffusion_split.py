"""The diffusion forward and backward (redge, redge_cov, redge_max; docs/SPEC.md "ReDGE") with
each row split into vocabulary chunks, for calls of few long rows: a 2-D grid ``(row, chunk)``
fills the GPU where one program per row would leave most SMs idle (8 rows of 262144 entries on
132 SMs). The backward is ``_diffusion._bwd_tiled``'s passes, one launch each (comment below).

Chunk ``c`` of a row holds the columns ``[c CHUNK, min(K, (c + 1) CHUNK))``, CHUNK a multiple of
BLOCK (the grouped noise form applies as in the unsplit kernels). The chain needs the row's
softmax statistics of every denoiser, so the forward is one launch per step, each over the grid:

  (0) COV only, ``_dsplit_base_kernel``: per chunk the online stats of softmax(phi) -> slot 0.
  (k) ``_dsplit_step_kernel`` for k = n-1 .. 1: the row's stats of step k + 1 (and of slot 0)
      combined from the chunks' partials in chunk order,
          m = max_c m_c,  s = sum_c s_c exp(m_c - safe_max(m)),
      then on the chunk's tiles: x_{n-1} = z (COV: mu + sqrt(v) z; the row's bad / valid flags)
      or x_k = a_{k+1} p_{k+1} + b_{k+1} x_{k+1} from the trajectory scratch ``x [R, K]``
      float32; x_k is written back, and l_k folded into the chunk's online ``(m_c, s_c)``
      -> slot k of ``part_s [n, R, C, 2]``; the last denoiser (k = 1) also folds the Gumbel-max
      of the chunk (``_gumbel_max.fold``) -> ``(best_c, idx_c)``.
  (out) ``_dsplit_out_kernel``: the winner (first chunk of max best_c: the first column on ties),
      y = one_hot(i) (HARD) or p_1 from x_1 on the chunk, and chunk 0 writes stats [R, n, 2] and
      index [R] exactly as ``_diffusion._diffusion_fwd_kernel`` does (the backward reads them).

Every combination is a reduction over the chunk axis of a fixed-size vector, so results do not
depend on the schedule; the Gumbel-max is decided on exact float32 scores as in the unsplit
kernels. The per-step (m, s) are combined chunk-wise rather than tile-wise, so they agree with
the unsplit kernels' to rounding.
"""

import triton
import triton.language as tl

from ._common import (NEG_INF, coef_a, coef_b, exp, finish, flags_of_max, lane_flags_fold,
                      lane_flags_init, pick, probs, put, safe_max, slot_stats_fold, slot_stats_init,
                      slot_stats_row)
from ._diffusion import (_base, _cov_base_grad, _cov_v, _i64, _logits, _mu_lam, _p_row0,
                         _slot_rows, _store_carry, _tiled_step, _tiled_walk, _write_y_range)
from ._gumbel_max import fold
from ._noise import gumbel_words, normal


@triton.jit
def _bounds(K, CHUNK):
    """``(row, chunk, c0, c1)``: this program's row (int64), chunk and columns ``[c0, c1)``."""
    chunk = tl.program_id(1)
    c0 = chunk * CHUNK
    return tl.program_id(0).to(tl.int64), chunk, c0, tl.minimum(K, c0 + CHUNK)


@triton.jit
def _combine(part_s_ptr, slot, row, R, n_chunks, CHUNKS_P2: tl.constexpr):
    """The row's ``(safe_max(m), s)`` of ``slot`` from its chunks' partials ``part_s [n, R, C, 2]``
    (raw max, s relative to the chunk's safe max), in chunk order."""
    ch = tl.arange(0, CHUNKS_P2).to(tl.int64)
    cm = ch < n_chunks
    p = part_s_ptr + ((slot * R + row) * n_chunks + ch) * 2
    m_c = tl.load(p, mask=cm, other=NEG_INF)
    s_c = tl.load(p + 1, mask=cm, other=0.0)
    m = safe_max(tl.max(m_c, axis=0))
    return m, tl.sum(s_c * exp(m_c - m), axis=0)


@triton.jit
def _store_part(part_s_ptr, slot, row, chunk, R, n_chunks, m, s):
    p = part_s_ptr + ((slot * R + row) * n_chunks + chunk) * 2
    tl.store(p, m)
    tl.store(p + 1, s)


@triton.jit(do_not_specialize=["R"])
def _dsplit_base_kernel(phi_ptr, part_s_ptr, R, K, CHUNK, n_chunks, phi_stride_r, phi_stride_c,
                        BLOCK: tl.constexpr):
    """Slot 0 partials (ReDGE-Cov's mu): m_c = max phi, s_c = sum exp(phi - safe_max(m_c)) over
    the chunk. phi [R, K] (strided, any float dtype) -> part_s [n, R, C, 2] float32, slot 0."""
    row, chunk, c0, c1 = _bounds(K, CHUNK)
    phi_row = phi_ptr + row * phi_stride_r
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    m, s = slot_stats_init(BLOCK)
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        phi = tl.load(phi_row + cols * phi_stride_c, mask=cols < c1, other=NEG_INF)
        m, s = slot_stats_fold(m, s, phi.to(tl.float32), 1.0, BLOCK)
    m, s = slot_stats_row(m, s, 1.0)
    _store_part(part_s_ptr, 0, row, chunk, R, n_chunks, m, s)


@triton.jit(do_not_specialize=["R", "k", "row_offset", "col_offset"])
def _dsplit_step_kernel(phi_ptr, seed_ptr, coefs_ptr, x_ptr, part_s_ptr, part_i_ptr, part_g_ptr,
                        R, K, CHUNK, n_chunks, k, row_offset, col_offset, phi_stride_r,
                        phi_stride_c, COV: tl.constexpr, HARD: tl.constexpr,
                        FIRST: tl.constexpr, LAST: tl.constexpr, CHUNKS_P2: tl.constexpr,
                        BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """Denoiser k on chunk ``program_id(1)`` of row ``program_id(0)`` (module docstring):
    FIRST (k = n-1): x_{n-1} from z, else x_k = a_{k+1} p_{k+1} + b_{k+1} x_{k+1} with
    p_{k+1} = exp(l_{k+1} - m_{k+1}) / s_{k+1} (combined stats); x_k -> x [R, K] float32 (not
    needed after the last denoiser when HARD); l_k folded into (m_c, s_c) -> slot k of
    part_s [n, R, C, 2] float32. FIRST also writes the bad / valid flags (0 or 1) ->
    part_i[r, c, 0:2] (int64 [R, C, 3]); LAST (k = 1) the chunk's Gumbel-max: its best exact
    score -> part_g [R, C] float32, its first column -> part_i[r, c, 2]."""
    row, chunk, c0, c1 = _bounds(K, CHUNK)
    seed = tl.load(seed_ptr)
    phi_row = phi_ptr + row * phi_stride_r
    x_row = x_ptr + row * K
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    m0 = 0.0
    s0 = 0.0
    if COV:
        m0, s0 = _combine(part_s_ptr, 0, row, R, n_chunks, CHUNKS_P2)
    m1 = 0.0
    s1 = 0.0
    a1 = 0.0
    b1 = 0.0
    if not FIRST:
        m1, s1 = _combine(part_s_ptr, k + 1, row, R, n_chunks, CHUNKS_P2)
        a1 = coef_a(coefs_ptr, k + 1)
        b1 = coef_b(coefs_ptr, k + 1)
    m, s = slot_stats_init(BLOCK)
    flags = lane_flags_init(BLOCK)  # the row flags, in the first step's kernel
    best = NEG_INF
    best_idx = tl.zeros([], dtype=tl.int64)
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        if FIRST:
            flags = lane_flags_fold(flags, phi)
            z = normal(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
            x, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
        else:
            mu, lam = _mu_lam(phi, m0, s0, COV)
            x = tl.load(x_row + cols, mask=cmask, other=0.0)
            p = probs(_logits(phi, x, mu, lam, coefs_ptr, k + 1, COV), m1, s1)
            x = a1 * p + b1 * x
        if (not LAST) or (not HARD):
            tl.store(x_row + cols, x, mask=cmask)
        l = _logits(phi, x, mu, lam, coefs_ptr, k, COV)
        m, s = slot_stats_fold(m, s, l, 1.0, BLOCK)
        if LAST:
            w = gumbel_words(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
            best, best_idx = fold(best, best_idx, l, w, start, seed, grow, coff + start, BLOCK)
    m, s = slot_stats_row(m, s, 1.0)
    _store_part(part_s_ptr, k, row, chunk, R, n_chunks, m, s)
    pi = part_i_ptr + (row * n_chunks + chunk) * 3
    if FIRST:
        n_bad, n_valid = flags_of_max(flags)
        tl.store(pi, n_bad.to(tl.int64))
        tl.store(pi + 1, n_valid.to(tl.int64))
    if LAST:
        tl.store(pi + 2, best_idx)
        tl.store(part_g_ptr + row * n_chunks + chunk, best)


@triton.jit
def _row_result(part_i_ptr, part_g_ptr, row, K, n_chunks, CHUNKS_P2: tl.constexpr):
    """``(best_idx, poisoned, empty)`` of the row from its chunks' counts and Gumbel-max."""
    ch = tl.arange(0, CHUNKS_P2).to(tl.int64)
    cm = ch < n_chunks
    pi = part_i_ptr + (row * n_chunks + ch) * 3
    n_bad = tl.sum(tl.load(pi, mask=cm, other=0), axis=0)
    n_valid = tl.sum(tl.load(pi + 1, mask=cm, other=0), axis=0)
    best_c = tl.load(part_g_ptr + row * n_chunks + ch, mask=cm, other=NEG_INF)
    idx_c = tl.load(pi + 2, mask=cm, other=0)
    win = tl.argmax(best_c, axis=0, tie_break_left=True)
    best_idx = tl.sum(tl.where(ch == win, idx_c, 0), axis=0)
    # a column of the row even where some chunks' partials were never written (a trace that
    # runs only the first program): the backward gathers grad_y at the index
    best_idx = tl.minimum(tl.maximum(best_idx, 0), K - 1)
    return best_idx, n_bad > 0, (n_valid == 0) & (n_bad == 0)


@triton.jit(do_not_specialize=["R", "n"])
def _dsplit_out_kernel(phi_ptr, coefs_ptr, x_ptr, part_s_ptr, part_i_ptr, part_g_ptr, y_ptr,
                       stats_ptr, index_ptr, R, K, CHUNK, n_chunks, n, phi_stride_r,
                       phi_stride_c, COV: tl.constexpr, HARD: tl.constexpr,
                       CHUNKS_P2: tl.constexpr, BLOCK: tl.constexpr, STEPS_P2: tl.constexpr,
                       WRITE_Y: tl.constexpr):
    """y on chunk ``program_id(1)``: one_hot(i) (HARD) or p_1 = softmax(l_1(x_1)); chunk 0 also
    writes stats [R, n, 2] (slot 0 = softmax(phi) for COV, else (0, 0); s = NaN on poisoned rows)
    and index [R] int64 (-1 on empty / poisoned rows). Without y the grid has one chunk column."""
    row, chunk, c0, c1 = _bounds(K, CHUNK)
    best_idx, poisoned, empty = _row_result(part_i_ptr, part_g_ptr, row, K, n_chunks, CHUNKS_P2)
    m0 = 0.0
    s0 = 0.0
    if COV:
        m0, s0 = _combine(part_s_ptr, 0, row, R, n_chunks, CHUNKS_P2)
    m1, s1 = _combine(part_s_ptr, 1, row, R, n_chunks, CHUNKS_P2)
    if WRITE_Y:
        phi_row = phi_ptr + row * phi_stride_r
        x_row = x_ptr + row * K
        y_row = y_ptr + row * K
        lanes = tl.arange(0, BLOCK).to(tl.int64)
        _write_y_range(y_row, phi_row, phi_stride_c, x_row, coefs_ptr, lanes, c0, c1, best_idx,
                       m0, s0, m1, s1, poisoned, empty, COV, HARD, BLOCK)
    if chunk == 0:
        steps = tl.arange(0, STEPS_P2)
        mvec = tl.zeros([STEPS_P2], dtype=tl.float32)
        svec = tl.zeros([STEPS_P2], dtype=tl.float32)
        if COV:
            mvec = put(mvec, steps, 0, m0)
            svec = put(svec, steps, 0, s0)
        for k in range(1, n):
            mk, sk = _combine(part_s_ptr, k, row, R, n_chunks, CHUNKS_P2)
            mvec = put(mvec, steps, k, mk)
            svec = put(svec, steps, k, sk)
        smask = steps < n
        stats_row = stats_ptr + row * n * 2
        tl.store(stats_row + steps * 2, mvec, mask=smask)
        tl.store(stats_row + steps * 2 + 1, finish(svec, poisoned, False), mask=smask)
        tl.store(index_ptr + row, tl.where(poisoned | empty, -1, best_idx))


# ---- backward: the unsplit tiled backward's passes, one launch each over (row, chunk) ---------
#
# Scratch ``ws [R, _slot_rows(n, False, COV), K]`` float32: the tiled backward's slot, one per row
# (``_diffusion``: gx, gphi, COV gmu, glam, z, then p_1 .. p_{n-1}, COV x_1 .. x_{n-1}).
# ``part_d [n, R, C]`` float32: the chunks' partial dot products d_j (slot 0: COV's d_0).


@triton.jit
def _bwd_row(gy_ptr, stats_ptr, index_ptr, row, n, gy_stride_r, gy_stride_c,
             STEPS_P2: tl.constexpr):
    """The row's saved ``(mvec, svec, idx, g_idx, poisoned, empty)`` as the unsplit backward
    reads them (stats [R, n, 2], index [R])."""
    steps = tl.arange(0, STEPS_P2)
    smask = steps < n
    stats_row = stats_ptr + row * n * 2
    mvec = tl.load(stats_row + steps * 2, mask=smask, other=0.0).to(tl.float32)
    svec = tl.load(stats_row + steps * 2 + 1, mask=smask, other=0.0).to(tl.float32)
    idx = tl.load(index_ptr + row)
    s1 = pick(svec, steps, 1)
    g_idx = tl.load(gy_ptr + row * gy_stride_r + tl.maximum(idx, 0) * gy_stride_c, mask=idx >= 0,
                    other=0.0).to(tl.float32)
    return mvec, svec, idx, g_idx, (idx < 0) & (s1 != s1), (idx < 0) & (s1 == s1)


@triton.jit
def _sum_d(part_d_ptr, slot, row, R, n_chunks, CHUNKS_P2: tl.constexpr):
    """d of ``slot``: the sum of the row's chunk partials, in chunk order."""
    ch = tl.arange(0, CHUNKS_P2).to(tl.int64)
    p = part_d_ptr + (slot * R + row) * n_chunks + ch
    return tl.sum(tl.load(p, mask=ch < n_chunks, other=0.0), axis=0)


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _dsplit_bwd_walk_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, ws_ptr,
                            part_d_ptr, R, K, CHUNK, n_chunks, n, row_offset, col_offset,
                            phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
                            COV: tl.constexpr, BLOCK: tl.constexpr, STEPS_P2: tl.constexpr,
                            GROUPED: tl.constexpr):
    """Pass 1 on the chunk: z drawn (COV: kept), the chain walked from the saved stats storing
    p_k (COV: x_k) in the row's scratch slot; d_1 partial = sum g p_1 -> part_d[1, r, c]."""
    row, chunk, c0, c1 = _bounds(K, CHUNK)
    seed = tl.load(seed_ptr)
    steps = tl.arange(0, STEPS_P2)
    mvec, svec, idx, g_idx, poisoned, empty = _bwd_row(gy_ptr, stats_ptr, index_ptr, row, n,
                                                       gy_stride_r, gy_stride_c, STEPS_P2)
    m0 = pick(mvec, steps, 0)
    s0 = pick(svec, steps, 0)
    ws_row = ws_ptr + row * _slot_rows(n, False, COV) * K
    phi_row = phi_ptr + row * phi_stride_r
    gy_row = gy_ptr + row * gy_stride_r
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    acc = _tiled_walk(phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, seed, grow, coff, K, c0,
                      c1, m0, s0, coefs_ptr, mvec, svec, steps, n, COV, BLOCK, GROUPED)
    tl.store(part_d_ptr + (R + row) * n_chunks + chunk, acc)


@triton.jit(do_not_specialize=["R", "n", "j"])
def _dsplit_bwd_step_kernel(gy_ptr, phi_ptr, coefs_ptr, stats_ptr, index_ptr, gphi_ptr, ws_ptr,
                            part_d_ptr, R, K, CHUNK, n_chunks, n, j, phi_stride_r, phi_stride_c,
                            gy_stride_r, gy_stride_c, COV: tl.constexpr, MAX: tl.constexpr,
                            LAST: tl.constexpr, CHUNKS_P2: tl.constexpr, BLOCK: tl.constexpr,
                            STEPS_P2: tl.constexpr):
    """Pass j on the chunk (``_diffusion._bwd_tiled``): finishes step j-1 with d_{j-1} (the sum
    of its partials) and stores the carry; not LAST (j < n): d_j partial = sum a_j gx p_j ->
    part_d[j]; LAST (j = n): writes gphi (COV: stores gp_0, gphi, and d_0 partial =
    sum gp_0 mu -> part_d[0] for ``_dsplit_bwd_cov_kernel``)."""
    row, chunk, c0, c1 = _bounds(K, CHUNK)
    steps = tl.arange(0, STEPS_P2)
    mvec, svec, idx, g_idx, poisoned, empty = _bwd_row(gy_ptr, stats_ptr, index_ptr, row, n,
                                                       gy_stride_r, gy_stride_c, STEPS_P2)
    m0 = pick(mvec, steps, 0)
    s0 = pick(svec, steps, 0)
    d = _sum_d(part_d_ptr, j - 1, row, R, n_chunks, CHUNKS_P2)
    ws_row = ws_ptr + row * _slot_rows(n, False, COV) * K
    phi_row = phi_ptr + row * phi_stride_r
    gy_row = gy_ptr + row * gy_stride_r
    p_ptr = ws_row + _p_row0(False, COV) * K
    acc = 0.0
    for start in range(c0, c1, BLOCK):
        gphi, gx, gmu, glam, phi, mu, lam, cols, cmask = _tiled_step(
            phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, start, K, m0, s0, coefs_ptr, n,
            j - 1, d, idx, g_idx, COV, MAX, BLOCK)
        if not LAST:
            _store_carry(ws_row, K, cols, cmask, gphi, gx, gmu, glam, COV)
            pj = tl.load(p_ptr + _i64(j - 1) * K + cols, mask=cmask, other=0.0)
            acc += tl.sum((coef_a(coefs_ptr, j) * gx) * pj, axis=0)
        elif COV:
            z = tl.load(ws_row + 4 * K + cols, mask=cmask, other=0.0)
            lam, sv, q = _cov_v(mu)
            gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
            acc += tl.sum(gp0 * mu, axis=0)
            tl.store(ws_row + cols, gp0, mask=cmask)
            tl.store(ws_row + K + cols, gphi, mask=cmask)
        else:
            tl.store(gphi_ptr + row * K + cols, finish(gphi, poisoned, empty), mask=cmask)
    if (not LAST) or COV:
        tl.store(part_d_ptr + ((0 if LAST else j) * R + row) * n_chunks + chunk, acc)


@triton.jit(do_not_specialize=["R", "n"])
def _dsplit_bwd_cov_kernel(gy_ptr, phi_ptr, stats_ptr, index_ptr, gphi_ptr, ws_ptr, part_d_ptr,
                           R, K, CHUNK, n_chunks, n, phi_stride_r, phi_stride_c, gy_stride_r,
                           gy_stride_c, CHUNKS_P2: tl.constexpr, BLOCK: tl.constexpr,
                           STEPS_P2: tl.constexpr):
    """ReDGE-Cov's last pass on the chunk: gphi += mu (gp_0 - d_0), d_0 the sum of its
    partials, written with the row conventions."""
    row, chunk, c0, c1 = _bounds(K, CHUNK)
    steps = tl.arange(0, STEPS_P2)
    mvec, svec, idx, g_idx, poisoned, empty = _bwd_row(gy_ptr, stats_ptr, index_ptr, row, n,
                                                       gy_stride_r, gy_stride_c, STEPS_P2)
    m0 = pick(mvec, steps, 0)
    s0 = pick(svec, steps, 0)
    d0 = _sum_d(part_d_ptr, 0, row, R, n_chunks, CHUNKS_P2)
    ws_row = ws_ptr + row * _slot_rows(n, False, True) * K
    phi_row = phi_ptr + row * phi_stride_r
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        mu = probs(phi, m0, s0)
        gp0 = tl.load(ws_row + cols, mask=cmask, other=0.0)
        gphi = tl.load(ws_row + K + cols, mask=cmask, other=0.0) + mu * (gp0 - d0)
        tl.store(gphi_ptr + row * K + cols, finish(gphi, poisoned, empty), mask=cmask)
