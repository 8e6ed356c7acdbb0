"""The one-pass baselines (st, gumbel, reinmax; docs/SPEC.md "Baselines") with each row split into
vocabulary chunks, for calls of few long rows: a 2-D grid ``(row, chunk)`` fills the GPU where one
program per row would leave most SMs idle (8 rows of 262144 entries on 132 SMs).

Chunk ``c`` of a row holds the columns ``[c CHUNK, min(K, (c + 1) CHUNK))``, CHUNK a multiple of
BLOCK (so a chunk's first global column ``col_offset + c CHUNK`` is a multiple of 4 whenever
``col_offset`` is, and the grouped noise form applies as in the unsplit kernels). Each direction
takes two launches:

Forward.
  (1) ``_split_fwd_part_kernel``: per chunk, as the unsplit tiled pass 1 does per row, the online
      stats of slot 0 ``(m_c, s_c)`` (reinmax also slot 1), the Gumbel-max ``(best_c, idx_c)`` (the
      first argmax of the exact scores ``phi + G`` inside the chunk) and the flags (0 or 1) of
      bad / valid entries -> ``part_f [R, C, 5]`` float32 (m0, s0, mt, st, best),
      ``part_i [R, C, 3]`` int64 (idx, n_bad, n_valid).
  (2) ``_split_fwd_out_kernel``: every (row, chunk) program combines its row's partials in chunk
      order itself,
          M = max_c m_c,  s = sum_c s_c exp(m_c - safe_max(M))   (tempered: exp((m_c - M') / tau)
          with the unscaled max, as ``_common.scaled_online_stats``),
          i = idx_c* with c* the first chunk of max_c best_c  (the first column on ties),
      writes y on its chunk, and chunk 0 writes stats [R, n, 2] and index [R] exactly as
      ``_onepass._onepass_fwd_kernel`` does (the backward reads them).
Backward.
  (1) ``_split_bwd_part_kernel``: per chunk the row sums of the tiled backward's pass 1
      (st / gumbel: <g, s>; reinmax: A, C, sum p1, sum p0 and the valid count);
  (2) ``_split_bwd_out_kernel``: the sums over the chunks, then gphi on the chunk.

Every combination is a reduction over the chunk axis of a fixed-size register vector, so results
do not depend on the schedule; the index is exactly the unsplit kernels' (and the reference's) for
the same seed, as the Gumbel-max is decided on the same exact float32 scores.
"""

import triton
import triton.language as tl

from ._common import NEG_INF, exp, finish, pick, put, safe_max
from ._onepass import (GUMBEL, REINMAX, _bwd_sums_range, _bwd_write_range, _scan_range,
                       _write_range)

#: Fields of a chunk's partials: float32 ``part_f[r, c, :]`` and int64 ``part_i[r, c, :]``.
NF: tl.constexpr = tl.constexpr(5)
NI: tl.constexpr = tl.constexpr(3)


@triton.jit
def _chunk_bounds(K, CHUNK):
    """``(chunk, c0, c1)``: this program's chunk (grid axis 1) and its columns ``[c0, c1)``."""
    chunk = tl.program_id(1)
    c0 = chunk * CHUNK
    return chunk, c0, tl.minimum(K, c0 + CHUNK)


@triton.jit(do_not_specialize=["row_offset", "col_offset"])
def _split_fwd_part_kernel(phi_ptr, seed_ptr, part_f_ptr, part_i_ptr, tau, K, CHUNK, n_chunks,
                           row_offset, col_offset, phi_stride_r, phi_stride_c,
                           METHOD: tl.constexpr, BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """Forward partials of chunk ``program_id(1)`` of row ``program_id(0)`` (module docstring):
    m_c = max v, s_c = sum exp(v - safe_max(m_c)) (gumbel: exp((v - safe_max(m_c)) / tau)) over
    the chunk's scores v; reinmax also (mt_c, st_c) of softmax(phi / tau); best_c = max fl(phi + G)
    and idx_c its first column.

    phi [R, K] (strided, fp32 / bf16 / fp16), seed 0-dim int64 -> part_f [R, C, 5] float32
    (m0, s0, mt, st, best), part_i [R, C, 3] int64 (best index local to the block, n_bad,
    n_valid). ``m`` is the raw max (-inf on an all -inf chunk), ``s`` relative to ``safe_max(m)``.
    """
    row = tl.program_id(0).to(tl.int64)
    chunk, c0, c1 = _chunk_bounds(K, CHUNK)
    seed = tl.load(seed_ptr)
    phi_row = phi_ptr + row * phi_stride_r
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    m0, s0, mt, st, best, best_idx, n_bad, n_valid = _scan_range(
        phi_row, phi_stride_c, seed, grow, coff, lanes, c0, c1, tau, METHOD, BLOCK, GROUPED)
    f = tl.arange(0, 8)
    pf = part_f_ptr + (row * n_chunks + chunk) * NF
    fvec = tl.where(f == 0, m0, tl.where(f == 1, s0, tl.where(f == 2, mt,
                                                                tl.where(f == 3, st, best))))
    tl.store(pf + f, fvec, mask=f < NF)
    pi = part_i_ptr + (row * n_chunks + chunk) * NI
    ivec = tl.where(f == 0, best_idx, tl.where(f == 1, n_bad, n_valid).to(tl.int64))
    tl.store(pi + f, ivec, mask=f < NI)


@triton.jit
def _combine_fwd(part_f_ptr, part_i_ptr, row, n_chunks, tau, METHOD: tl.constexpr,
                 CHUNKS_P2: tl.constexpr):
    """The row's forward results from its chunks' partials, in chunk order:
    ``(m0, s0, mt, st, best_idx, poisoned, empty)`` with ``m`` the safe max (module docstring)."""
    ch = tl.arange(0, CHUNKS_P2).to(tl.int64)
    cm = ch < n_chunks
    pf = part_f_ptr + (row * n_chunks + ch) * NF
    pi = part_i_ptr + (row * n_chunks + ch) * NI
    m_c = tl.load(pf, mask=cm, other=NEG_INF)
    s_c = tl.load(pf + 1, mask=cm, other=0.0)
    best_c = tl.load(pf + 4, mask=cm, other=NEG_INF)
    idx_c = tl.load(pi, mask=cm, other=0)
    n_bad = tl.sum(tl.load(pi + 1, mask=cm, other=0), axis=0)
    n_valid = tl.sum(tl.load(pi + 2, mask=cm, other=0), axis=0)
    m0 = safe_max(tl.max(m_c, axis=0))
    if METHOD == GUMBEL:
        s0 = tl.sum(s_c * exp((m_c - m0) * (1.0 / tau)), axis=0)
    else:
        s0 = tl.sum(s_c * exp(m_c - m0), axis=0)
    mt = 0.0
    st = 0.0
    if METHOD == REINMAX:
        mt_c = tl.load(pf + 2, mask=cm, other=NEG_INF)
        st_c = tl.load(pf + 3, mask=cm, other=0.0)
        mt = safe_max(tl.max(mt_c, axis=0))
        st = tl.sum(st_c * exp((mt_c - mt) * (1.0 / tau)), axis=0)
    win = tl.argmax(best_c, axis=0, tie_break_left=True)
    best_idx = tl.sum(tl.where(ch == win, idx_c, 0), axis=0)
    poisoned = n_bad > 0
    empty = (n_valid == 0) & (n_bad == 0)
    return m0, s0, mt, st, best_idx, poisoned, empty


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _split_fwd_out_kernel(phi_ptr, seed_ptr, part_f_ptr, part_i_ptr, y_ptr, stats_ptr, index_ptr,
                          tau, K, CHUNK, n_chunks, n, row_offset, col_offset, phi_stride_r,
                          phi_stride_c, METHOD: tl.constexpr, HARD: tl.constexpr,
                          CHUNKS_P2: tl.constexpr, BLOCK: tl.constexpr, STEPS_P2: tl.constexpr,
                          GROUPED: tl.constexpr, WRITE_Y: tl.constexpr = True):
    """The row's stats combined from the partials (``_combine_fwd``); y on chunk
    ``program_id(1)``: one_hot(i) (HARD or reinmax) or softmax(b) (module docstring of
    ``_onepass``); chunk 0 also writes stats [R, n, 2] (s = NaN on poisoned rows) and index [R]
    int64 (-1 on empty / poisoned rows). Without y the grid has one chunk column."""
    row = tl.program_id(0).to(tl.int64)
    chunk, c0, c1 = _chunk_bounds(K, CHUNK)
    m0, s0, mt, st, best_idx, poisoned, empty = _combine_fwd(part_f_ptr, part_i_ptr, row,
                                                             n_chunks, tau, METHOD, CHUNKS_P2)
    if WRITE_Y:
        seed = tl.load(seed_ptr)
        phi_row = phi_ptr + row * phi_stride_r
        y_row = y_ptr + row * K
        grow = row + row_offset
        coff = col_offset.to(tl.int64)
        lanes = tl.arange(0, BLOCK).to(tl.int64)
        _write_range(y_row, phi_row, phi_stride_c, seed, grow, coff, lanes, c0, c1, best_idx, m0,
                     s0, tau, poisoned, empty, METHOD, HARD, BLOCK, GROUPED)
    steps = tl.arange(0, STEPS_P2)
    mvec = put(tl.zeros([STEPS_P2], dtype=tl.float32), steps, 0, m0)
    svec = put(tl.zeros([STEPS_P2], dtype=tl.float32), steps, 0, s0)
    if METHOD == REINMAX:
        mvec = put(mvec, steps, 1, mt)
        svec = put(svec, steps, 1, st)
    smask = steps < tl.where(chunk == 0, n, 0)  # chunk 0 writes the row's stats
    stats_row = stats_ptr + row * n * 2
    tl.store(stats_row + steps * 2, mvec, mask=smask)
    tl.store(stats_row + steps * 2 + 1, finish(svec, poisoned, False), mask=smask)
    if chunk == 0:
        tl.store(index_ptr + row, tl.where(poisoned | empty, -1, best_idx))


@triton.jit
def _row_state(stats_ptr, index_ptr, row, n, STEPS_P2: tl.constexpr):
    """``(m0, s0, mt, st, idx, poisoned, empty)`` of a row from the forward's stats and index."""
    steps = tl.arange(0, STEPS_P2)
    smask = steps < n
    stats_row = stats_ptr + row * n * 2
    mvec = tl.load(stats_row + steps * 2, mask=smask, other=0.0).to(tl.float32)
    svec = tl.load(stats_row + steps * 2 + 1, mask=smask, other=0.0).to(tl.float32)
    s0 = pick(svec, steps, 0)
    idx = tl.load(index_ptr + row)
    return (pick(mvec, steps, 0), s0, pick(mvec, steps, 1), pick(svec, steps, 1), idx,
            (idx < 0) & (s0 != s0), (idx < 0) & (s0 == s0))


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _split_bwd_part_kernel(gy_ptr, phi_ptr, seed_ptr, stats_ptr, index_ptr, part_f_ptr,
                           part_i_ptr, tau, K, CHUNK, n_chunks, n, row_offset, col_offset,
                           phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
                           METHOD: tl.constexpr, BLOCK: tl.constexpr, STEPS_P2: tl.constexpr,
                           GROUPED: tl.constexpr):
    """Backward partials of chunk ``program_id(1)`` of row ``program_id(0)``:
    st / gumbel: part_f[r, c, 0] = sum_chunk g s; reinmax: part_f[r, c, 0:4] = sum_chunk (2 g p1,
    -g p0 / 2, p1, p0), part_i[r, c, 0] = valid entries of the chunk (grad_y [R, K] strided)."""
    row = tl.program_id(0).to(tl.int64)
    chunk, c0, c1 = _chunk_bounds(K, CHUNK)
    seed = tl.load(seed_ptr)
    phi_row = phi_ptr + row * phi_stride_r
    gy_row = gy_ptr + row * gy_stride_r
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    m0, s0, mt, st, idx, _, _ = _row_state(stats_ptr, index_ptr, row, n, STEPS_P2)
    a_sum, c_sum, p1_sum, p0_sum, n_valid = _bwd_sums_range(
        phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, lanes, c0, c1, idx, m0, s0,
        mt, st, tau, METHOD, BLOCK, GROUPED)
    f = tl.arange(0, 8)
    fvec = tl.where(f == 0, a_sum, tl.where(f == 1, c_sum, tl.where(f == 2, p1_sum, p0_sum)))
    tl.store(part_f_ptr + (row * n_chunks + chunk) * NF + f, fvec, mask=f < 4)
    tl.store(part_i_ptr + (row * n_chunks + chunk) * NI, n_valid.to(tl.int64))


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _split_bwd_out_kernel(gy_ptr, phi_ptr, seed_ptr, stats_ptr, index_ptr, part_f_ptr,
                          part_i_ptr, gphi_ptr, tau, K, CHUNK, n_chunks, n, row_offset,
                          col_offset, phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
                          METHOD: tl.constexpr, CHUNKS_P2: tl.constexpr, BLOCK: tl.constexpr,
                          STEPS_P2: tl.constexpr, GROUPED: tl.constexpr):
    """grad_phi [R, K] contiguous on chunk ``program_id(1)`` from the row sums (the partials summed
    over the chunks): st / gumbel gphi = s (g - <g, s>) (/ tau); reinmax u + w centred over the
    valid entries with sum_valid(u + w) = A - A sum p1 + C - C sum p0 (``_onepass``); 0 on empty
    rows, NaN on poisoned rows."""
    row = tl.program_id(0).to(tl.int64)
    chunk, c0, c1 = _chunk_bounds(K, CHUNK)
    seed = tl.load(seed_ptr)
    phi_row = phi_ptr + row * phi_stride_r
    gy_row = gy_ptr + row * gy_stride_r
    gphi_row = gphi_ptr + row * K
    grow = row + row_offset
    coff = col_offset.to(tl.int64)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    m0, s0, mt, st, idx, poisoned, empty = _row_state(stats_ptr, index_ptr, row, n, STEPS_P2)
    ch = tl.arange(0, CHUNKS_P2).to(tl.int64)
    cm = ch < n_chunks
    pf = part_f_ptr + (row * n_chunks + ch) * NF
    a_sum = tl.sum(tl.load(pf, mask=cm, other=0.0), axis=0)
    c_sum = 0.0
    mean = 0.0
    if METHOD == REINMAX:
        c_sum = tl.sum(tl.load(pf + 1, mask=cm, other=0.0), axis=0)
        p1_sum = tl.sum(tl.load(pf + 2, mask=cm, other=0.0), axis=0)
        p0_sum = tl.sum(tl.load(pf + 3, mask=cm, other=0.0), axis=0)
        n_valid = tl.sum(tl.load(part_i_ptr + (row * n_chunks + ch) * NI, mask=cm, other=0),
                         axis=0)
        mean = (a_sum - a_sum * p1_sum + c_sum - c_sum * p0_sum) / \
            tl.maximum(n_valid, 1).to(tl.float32)
    _bwd_write_range(gphi_row, phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, lanes,
                     c0, c1, idx, m0, s0, mt, st, tau, a_sum, c_sum, mean, poisoned, empty, METHOD,
                     BLOCK, GROUPED)
