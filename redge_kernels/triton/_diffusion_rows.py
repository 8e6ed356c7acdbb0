"""The diffusion family (docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max") for small K: a program
holds ``ROWS`` whole rows as one ``[ROWS, BLOCK]`` block, so K = 2 or 9 fills the lanes that a
program per row leaves idle (docs/SPEC.md "Throughput budget on a GPU" (d)). Same math, same
operations per element and the same noise as the single-block path of ``_diffusion`` (whose
helpers it calls with per-row scalars as ``[ROWS, 1]`` columns); every row reduction is along
axis 1.

Forward: per row, k = n-1 .. 1: m_k, s_k of l_k, x_{k-1} = a_k p_k + b_k x_k; the Gumbel-max over
the row (``argmax_rows`` of ``l_1 + G``, every G evaluated); stats written per step. Backward: one
walk down the chain with the saved stats keeps p_k, then the steps k = 1 .. n-1 with d_k per row:
for ReDGE / ReDGE-Max with n_steps <= ``_launch.ROWS_BWD_REG_MAX_STEPS`` the chain is unrolled
and the p_k stay in registers (``REG_STEPS``); otherwise (and ReDGE-Cov, which also keeps x_k)
they go through the program's scratch slot ``[n-1 or 2(n-1), ROWS, BLOCK]`` (each thread reads
back its own entries). Blocks of BLOCK <= ``GROUPS_MAX_BLOCK`` of the forward (and of the
one-pass kernels) are laid out as their column groups of four (``_row_block``); blocks of BLOCK >=
2 ``ROW_PIECE`` (32, 64) are loaded, stored and kept in scratch as pieces of ROW_PIECE columns,
a row's pieces in the same four threads (``_pieces``); blocks of BLOCK = 2 (K <= 2) hold each row
as its two columns instead, a row per thread (``_diffusion_pairs``).
"""

import triton
import triton.language as tl

from ._common import NEG_INF, POS_INF, coef_a, coef_b, exp, finish, one_hot_tile, probs, safe_max
from ._diffusion import _base, _bwd_step, _cov_base_grad, _logits
from ._diffusion_pairs import diffusion_pairs_bwd, diffusion_pairs_fwd
from ._noise import _interleave4_rows, gumbel_rows, normal_rows


#: Largest BLOCK whose block is laid out as its column groups (``_row_block``). (bench.gpu_model,
#: sm_90: at 5184 x 9 the column-group layout took the st forward from 424 to 284 instructions per
#: element and the redge forward from 905 to 615; at 6400 x 64, whose rows are 16-byte aligned and
#: loaded as vectors of four in the plain layout, it took 166 against 162 for st and made the
#: redge backward's scratch walk twice as dear; the diffusion backward never takes it.)
GROUPS_MAX_BLOCK: tl.constexpr = tl.constexpr(16)


#: Columns of a row that four threads hold (four consecutive columns each) in blocks of
#: BLOCK >= 2 ROW_PIECE: such a block is addressed as ``[BLOCK // ROW_PIECE, ROWS, ROW_PIECE]``
#: pieces (``_pieces``), whose blocked layout puts the BLOCK // ROW_PIECE pieces of a row in one
#: thread (Triton's coalescing gives the contiguous last dimension 16-byte accesses, 4 lanes of 4
#: fp32 entries, the rows the other lanes and the warps, and leaves the outermost dimension, the
#: pieces, in registers), and used as ``[ROWS, BLOCK]`` in column order (``_from_pieces``, a relabelling, no data
#: movement): a row spans 4 threads instead of BLOCK / 4, so each row reduction is in-thread work
#: and two shuffle steps. (bench.gpu_model, sm_90, 6400 x 64, instructions per element: redge
#: forward 234 -> 204, backward 184 -> 161, st forward 125 -> 107; docs/GPU_MODEL.md section 7.)
ROW_PIECE: tl.constexpr = tl.constexpr(16)


@triton.jit
def _pieces(rows, rmask, K, stride_r, stride_c, BLOCK: tl.constexpr):
    """Offsets ``row * stride_r + col * stride_c`` and mask ``col < K`` of the block's entries as
    ``[BLOCK // ROW_PIECE, ROWS, ROW_PIECE]`` (piece q of row r: columns q ROW_PIECE + c)."""
    q = tl.arange(0, BLOCK // ROW_PIECE).to(tl.int64)[:, None, None]
    col = q * ROW_PIECE + tl.arange(0, ROW_PIECE).to(tl.int64)[None, None, :]
    return rows[None, :, None] * stride_r + col * stride_c, rmask[None, :, None] & (col < K)


@triton.jit
def _from_pieces(v3):
    """``[Q, ROWS, ROW_PIECE]`` pieces -> the ``[ROWS, Q ROW_PIECE]`` block in column order."""
    return tl.reshape(tl.permute(v3, (1, 0, 2)), [v3.shape[1], v3.shape[0] * v3.shape[2]])


@triton.jit
def _to_pieces(v):
    """The inverse of ``_from_pieces``."""
    return tl.permute(tl.reshape(v, [v.shape[0], v.shape[1] // ROW_PIECE, ROW_PIECE]), (1, 0, 2))


@triton.jit
def _row_block(pid, R, K, ROWS: tl.constexpr, BLOCK: tl.constexpr, GROUPS: tl.constexpr):
    """``(rows int64 [ROWS], j4, lanes, rmask [ROWS], mask [ROWS, BLOCK])`` of block ``pid``
    (BLOCK >= 4): ``j4`` int64 [ROWS, BLOCK // 4] the first column of each group of four,
    ``lanes`` int64 the column of each entry. ``GROUPS``: the block is laid out as the grouped
    noise is (``_noise._interleave4_rows``: the four columns of a group in one thread), so that
    the noise joins it with no data movement: loaded and stored as its four column groups
    (``_load_block``, ``_store_block``), ``lanes`` [ROWS, BLOCK] an interleave of four
    ``[ROWS, BLOCK // 4]`` ones; else ``lanes`` = ``arange(BLOCK)`` as [1, BLOCK]."""
    rows = pid.to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    rmask = rows < R
    j4 = 4 * tl.arange(0, BLOCK // 4).to(tl.int64)[None, :] + \
        tl.zeros([ROWS, BLOCK // 4], dtype=tl.int64)
    if GROUPS:
        lanes = _interleave4_rows(j4, j4 + 1, j4 + 2, j4 + 3)
    else:
        lanes = tl.arange(0, BLOCK).to(tl.int64)[None, :]
    return rows, j4, lanes, rmask, rmask[:, None] & (lanes < K)


@triton.jit
def _load_block(ptr, rows, j4, lanes, rmask, mask, K, stride_r, stride_c, other,
                GROUPS: tl.constexpr):
    """The ``[ROWS, BLOCK]`` block ``ptr[row, col]`` (``other`` outside ``mask``) as float32;
    ``GROUPS``: loaded as its four column groups ``4j + i`` (``_row_block``)."""
    if GROUPS:
        base = ptr + rows[:, None] * stride_r
        rm = rmask[:, None]
        a0 = tl.load(base + j4 * stride_c, mask=rm & (j4 < K), other=other)
        a1 = tl.load(base + (j4 + 1) * stride_c, mask=rm & (j4 + 1 < K), other=other)
        a2 = tl.load(base + (j4 + 2) * stride_c, mask=rm & (j4 + 2 < K), other=other)
        a3 = tl.load(base + (j4 + 3) * stride_c, mask=rm & (j4 + 3 < K), other=other)
        v = _interleave4_rows(a0.to(tl.float32), a1.to(tl.float32), a2.to(tl.float32),
                              a3.to(tl.float32))
    elif lanes.shape[1] >= 2 * ROW_PIECE:
        off, m3 = _pieces(rows, rmask, K, stride_r, stride_c, lanes.shape[1])
        v = _from_pieces(tl.load(ptr + off, mask=m3, other=other).to(tl.float32))
    else:
        v = tl.load(ptr + rows[:, None] * stride_r + lanes * stride_c, mask=mask,
                    other=other).to(tl.float32)
    return v


@triton.jit
def _store_block(ptr, rows, j4, lanes, rmask, mask, K, v, GROUPS: tl.constexpr):
    """Store the ``[ROWS, BLOCK]`` block ``v`` at ``ptr[row * K + col]`` where ``mask``;
    ``GROUPS``: as its four column groups (the inverse of the interleave: two ``tl.split``)."""
    if GROUPS:
        lo, hi = tl.split(tl.reshape(v, [v.shape[0], v.shape[1] // 4, 2, 2]))
        v0, v2 = tl.split(lo)
        v1, v3 = tl.split(hi)
        base = ptr + rows[:, None] * K
        rm = rmask[:, None]
        tl.store(base + j4, v0, mask=rm & (j4 < K))
        tl.store(base + j4 + 1, v1, mask=rm & (j4 + 1 < K))
        tl.store(base + j4 + 2, v2, mask=rm & (j4 + 2 < K))
        tl.store(base + j4 + 3, v3, mask=rm & (j4 + 3 < K))
    elif v.shape[1] >= 2 * ROW_PIECE:
        off, m3 = _pieces(rows, rmask, K, K, 1, v.shape[1])
        tl.store(ptr + off, _to_pieces(v), mask=m3)
    else:
        tl.store(ptr + rows[:, None] * K + lanes, v, mask=mask)


@triton.jit
def _load_rows(phi_ptr, rows, j4, lanes, rmask, mask, K, stride_r, stride_c,
               GROUPS: tl.constexpr, ONE_REDUCTION: tl.constexpr):
    """The ``[ROWS, BLOCK]`` block of logits as float32 (``-inf`` outside ``mask``) and per row
    ``poisoned`` (a NaN or ``+inf`` entry) and ``empty`` (every entry ``-inf``), ``[ROWS]`` bool.
    ``ONE_REDUCTION``: both from one max with NaN read as ``+inf`` (``_common.flags_of_max``; the
    one-pass blocks); else two counts (the diffusion blocks: with the one max, ptxas gave the
    sm_80 soft forward an 8-byte stack frame at K = 9 and 64)."""
    phi = _load_block(phi_ptr, rows, j4, lanes, rmask, mask, K, stride_r, stride_c, NEG_INF,
                      GROUPS)
    if ONE_REDUCTION:
        mx = tl.max(tl.where(phi != phi, POS_INF, phi), axis=1)
        poisoned = mx == POS_INF
        empty = mx == NEG_INF
    else:
        n_bad = tl.sum((((phi != phi) | (phi == POS_INF)) & mask).to(tl.int32), axis=1)
        n_valid = tl.sum(((phi != NEG_INF) & mask).to(tl.int32), axis=1)
        poisoned = n_bad > 0
        empty = (n_valid == 0) & (n_bad == 0)
    return phi, poisoned, empty


@triton.jit
def argmax_rows(score):
    """Each row's first argmax of the ``[ROWS, BLOCK]`` scores ``l + G`` (int64 [ROWS]; NaN read as
    ``-inf``, as ``tile_argmax``): the Gumbel-max sample, every G of the block evaluated (at
    K <= 64 the candidates' loop of ``_gumbel_max.fold_rows``, a scalar Philox call and the logs
    per candidate while any of the block's rows has one left, costs more than the block's G)."""
    return tl.argmax(tl.where(score != score, NEG_INF, score), axis=1,
                     tie_break_left=True).to(tl.int64)


@triton.jit
def _stats_rows(l):
    """Per-row ``(m, s)`` of ``[ROWS, BLOCK]`` logits as ``[ROWS, 1]`` (``row_stats`` per row)."""
    m = safe_max(tl.max(l, axis=1))[:, None]
    s = tl.sum(exp(l - m), axis=1)[:, None]
    return m, s


@triton.jit
def _put_stats(stats_ptr, rows, rmask, n, k, m, s, poisoned):
    """stats[row, k] = (m, s) (s = NaN on poisoned rows). (One [ROWS, 2] store of the pair
    instead: about 1 instruction per element fewer at 6400 x 64 on sm_90, but an 8-byte spill of
    the soft forward at K = 9 on sm_80.)"""
    base = stats_ptr + rows * n * 2 + k * 2
    tl.store(base, tl.reshape(m, [m.shape[0]]), mask=rmask)
    tl.store(base + 1, finish(tl.reshape(s, [s.shape[0]]), poisoned, False), mask=rmask)


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _diffusion_rows_fwd_kernel(phi_ptr, seed_ptr, coefs_ptr, y_ptr, stats_ptr, index_ptr,
                               R, K, n, row_offset, col_offset, phi_stride_r, phi_stride_c,
                               COV: tl.constexpr, HARD: tl.constexpr, ROWS: tl.constexpr,
                               BLOCK: tl.constexpr, GROUPED: tl.constexpr,
                               WRITE_Y: tl.constexpr = True):
    """Forward of redge / redge_cov / redge_max for the rows ``pid * ROWS ..`` (K <= BLOCK).

    phi [R, K] (strided, any float dtype), seed 0-dim int64, coefs [n, 5] -> y [R, K]
    contiguous, stats [R, n, 2] (as ``_diffusion_fwd_kernel``), index [R] int64.
    """
    seed = tl.load(seed_ptr)
    if BLOCK == 2:  # K <= 2: a row per thread (_diffusion_pairs)
        diffusion_pairs_fwd(phi_ptr, seed, coefs_ptr, y_ptr, stats_ptr, index_ptr, R, K, n,
                            row_offset, col_offset, phi_stride_r, phi_stride_c, COV, HARD, ROWS,
                            GROUPED, WRITE_Y)
    else:
        _block_fwd(phi_ptr, seed, coefs_ptr, y_ptr, stats_ptr, index_ptr, R, K, n, row_offset,
                   col_offset, phi_stride_r, phi_stride_c, COV, HARD, ROWS, BLOCK, GROUPED,
                   WRITE_Y)


@triton.jit
def _block_fwd(phi_ptr, seed, coefs_ptr, y_ptr, stats_ptr, index_ptr, R, K, n, row_offset,
               col_offset, phi_stride_r, phi_stride_c, COV: tl.constexpr, HARD: tl.constexpr,
               ROWS: tl.constexpr, BLOCK: tl.constexpr, GROUPED: tl.constexpr,
               WRITE_Y: tl.constexpr):
    """``_diffusion_rows_fwd_kernel`` on one ``[ROWS, BLOCK]`` block (``seed`` loaded)."""
    GROUPS: tl.constexpr = BLOCK <= GROUPS_MAX_BLOCK
    rows, j4, lanes, rmask, mask = _row_block(tl.program_id(0), R, K, ROWS, BLOCK, GROUPS)
    coff = col_offset.to(tl.int64)
    grows = rows + row_offset
    phi, poisoned, empty = _load_rows(phi_ptr, rows, j4, lanes, rmask, mask, K, phi_stride_r,
                                      phi_stride_c, GROUPS, False)
    z = normal_rows(seed, grows[:, None], coff, coff + lanes, ROWS, BLOCK, GROUPED)
    if COV:
        m0, s0 = _stats_rows(phi)
    else:  # slot 0 unused: (0, 0), NaN on poisoned rows as every s
        m0 = tl.zeros([ROWS, 1], dtype=tl.float32)
        s0 = m0
    _put_stats(stats_ptr, rows, rmask, n, 0, m0, s0, poisoned)
    x, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
    for i in range(0, n - 2):
        k = n - 1 - i
        l = _logits(phi, x, mu, lam, coefs_ptr, k, COV)
        m, s = _stats_rows(l)
        _put_stats(stats_ptr, rows, rmask, n, k, m, s, poisoned)
        x = coef_a(coefs_ptr, k) * probs(l, m, s) + coef_b(coefs_ptr, k) * x
    l = _logits(phi, x, mu, lam, coefs_ptr, 1, COV)
    m, s = _stats_rows(l)
    _put_stats(stats_ptr, rows, rmask, n, 1, m, s, poisoned)
    best_idx = argmax_rows(l + gumbel_rows(seed, grows[:, None], coff, coff + lanes,
                                           ROWS, BLOCK, GROUPED))
    if WRITE_Y:
        if HARD:
            y = one_hot_tile(lanes.to(tl.int32), 0, best_idx[:, None], poisoned[:, None],
                             empty[:, None], BLOCK, y_ptr.dtype.element_ty)
        else:
            y = finish(probs(l, m, s), poisoned[:, None], empty[:, None])
        _store_block(y_ptr, rows, j4, lanes, rmask, mask, K, y, GROUPS)
    tl.store(index_ptr + rows, tl.where(poisoned | empty, -1, best_idx), mask=rmask)


@triton.jit
def _load_stats_rows(stats_ptr, rows, rmask, n, k):
    """``(m_k, s_k)`` of each row as ``[ROWS, 1]`` float32."""
    base = stats_ptr + rows * n * 2 + k * 2
    m = tl.load(base, mask=rmask, other=0.0).to(tl.float32)
    s = tl.load(base + 1, mask=rmask, other=0.0).to(tl.float32)
    return m[:, None], s[:, None]


@triton.jit
def _slot_offsets(rmask, mask, K, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """Offsets and mask of the block's entries in a scratch slot of ``ROWS x BLOCK`` entries (row
    r, column c at ``r BLOCK + c``), as the block is addressed (``[ROWS, BLOCK]``, or its pieces
    when BLOCK >= 2 ROW_PIECE): ``_slot_put`` and ``_slot_get`` then keep each entry in the thread
    that holds it."""
    if BLOCK >= 2 * ROW_PIECE:
        offs, m = _pieces(tl.arange(0, ROWS).to(tl.int64), rmask, K, BLOCK, 1, BLOCK)
    else:
        offs = tl.arange(0, ROWS)[:, None].to(tl.int64) * BLOCK + \
            tl.arange(0, BLOCK)[None, :].to(tl.int64)
        m = mask
    return offs, m


@triton.jit
def _slot_put(at, v, m):
    """Store the ``[ROWS, BLOCK]`` block ``v`` at the pointers ``at`` of ``_slot_offsets``."""
    if len(at.shape) == 3:
        tl.store(at, _to_pieces(v), mask=m)
    else:
        tl.store(at, v, mask=m)


@triton.jit
def _slot_get(at, m):
    """The ``[ROWS, BLOCK]`` block at the pointers ``at`` of ``_slot_offsets`` (0 outside ``m``)."""
    if len(at.shape) == 3:
        v = _from_pieces(tl.load(at, mask=m, other=0.0))
    else:
        v = tl.load(at, mask=m, other=0.0)
    return v


@triton.jit
def _walk_rows(phi, x0, mu, lam, coefs_ptr, stats_ptr, rows, rmask, n, ws, offs, mask,
               COV: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """``_diffusion._walk`` for the block: p_k (and x_k) of k = n-1 .. 1 into the slot ``ws``
    (rows of ROWS x BLOCK entries, p_k at row k - 1, x_k at row n - 2 + k)."""
    x = x0
    for i in range(0, n - 1):
        k = n - 1 - i
        m, s = _load_stats_rows(stats_ptr, rows, rmask, n, k)
        p = probs(_logits(phi, x, mu, lam, coefs_ptr, k, COV), m, s)
        at = ws + (k - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * BLOCK) + offs
        _slot_put(at, p, mask)
        if COV:
            _slot_put(at + (n - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * BLOCK), x, mask)
        x = coef_a(coefs_ptr, k) * p + coef_b(coefs_ptr, k) * x


@triton.jit
def _bwd_in_registers(phi, g, x0, coefs_ptr, stats_ptr, rows, rmask, n, is_idx, g_idx,
                      MAX: tl.constexpr, N: tl.constexpr):
    """ReDGE / ReDGE-Max backward of the block with the chain unrolled (``N`` = n_steps, a
    constexpr): the walk's p_{N-1} .. p_1 (``_walk_rows``' operations) stay in registers, then
    the steps k = 1 .. N-1 as in the scratch path. Returns gphi (``[ROWS, BLOCK]`` float32)."""
    zero = tl.zeros_like(phi)
    ps = ()  # ps[k - 1] = p_k
    x = x0
    for i in tl.static_range(N - 1):
        k = N - 1 - i
        m, s = _load_stats_rows(stats_ptr, rows, rmask, n, k)
        p = probs(_logits(phi, x, zero, zero, coefs_ptr, k, False), m, s)
        ps = (p,) + ps
        x = coef_a(coefs_ptr, k) * p + coef_b(coefs_ptr, k) * x
    gx = zero
    gphi = zero
    for k in tl.static_range(1, N):
        p = ps[k - 1]
        if k == 1:
            gp = g
        else:
            gp = coef_a(coefs_ptr, k) * gx
        d = tl.sum(gp * p, axis=1)[:, None]
        gphi, gx, _, _ = _bwd_step(tl.full([], k, tl.int32), p, p, gp, d, gphi, gx, zero, zero,
                                   zero, zero, is_idx, g_idx, coefs_ptr, False, MAX)
    return gphi


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _diffusion_rows_bwd_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr,
                               gphi_ptr, scratch_ptr, R, K, n, row_offset, col_offset,
                               phi_stride_r, phi_stride_c, gy_stride_r, gy_stride_c,
                               COV: tl.constexpr, MAX: tl.constexpr, ROWS: tl.constexpr,
                               BLOCK: tl.constexpr, GROUPED: tl.constexpr,
                               REG_STEPS: tl.constexpr = 0):
    """Backward of redge / redge_cov / redge_max for the rows ``pid * ROWS ..`` (K <= BLOCK);
    scratch float32 [programs, n-1 or 2(n-1), ROWS, BLOCK]. ``REG_STEPS`` = n (ReDGE / ReDGE-Max,
    BLOCK > 2): the chain unrolled with p_k in registers, no scratch (``_bwd_in_registers``); 0:
    the walk through the scratch.

    grad_y [R, K] (strided), phi, seed, coefs, stats [R, n, 2], index [R] from the forward
    -> grad_phi [R, K] contiguous (0 on empty rows, NaN on poisoned rows). Stream 0 only.
    """
    seed = tl.load(seed_ptr)
    if BLOCK == 2:  # K <= 2: a row per thread (_diffusion_pairs)
        diffusion_pairs_bwd(gy_ptr, phi_ptr, seed, coefs_ptr, stats_ptr, index_ptr, gphi_ptr,
                            scratch_ptr, R, K, n, row_offset, col_offset, phi_stride_r,
                            phi_stride_c, gy_stride_r, gy_stride_c, COV, MAX, ROWS, GROUPED)
    else:
        _block_bwd(gy_ptr, phi_ptr, seed, coefs_ptr, stats_ptr, index_ptr, gphi_ptr, scratch_ptr,
                   R, K, n, row_offset, col_offset, phi_stride_r, phi_stride_c, gy_stride_r,
                   gy_stride_c, COV, MAX, ROWS, BLOCK, GROUPED, REG_STEPS)


@triton.jit
def _block_bwd(gy_ptr, phi_ptr, seed, coefs_ptr, stats_ptr, index_ptr, gphi_ptr, scratch_ptr, R,
               K, n, row_offset, col_offset, phi_stride_r, phi_stride_c, gy_stride_r,
               gy_stride_c, COV: tl.constexpr, MAX: tl.constexpr, ROWS: tl.constexpr,
               BLOCK: tl.constexpr, GROUPED: tl.constexpr, REG_STEPS: tl.constexpr):
    """``_diffusion_rows_bwd_kernel`` on one ``[ROWS, BLOCK]`` block (``seed`` loaded)."""
    pid = tl.program_id(0)
    rows, j4, lanes, rmask, mask = _row_block(pid, R, K, ROWS, BLOCK, False)
    coff = col_offset.to(tl.int64)
    offs, smask = _slot_offsets(rmask, mask, K, ROWS, BLOCK)
    ws = scratch_ptr + pid.to(tl.int64) * ((n - 1) * (2 if COV else 1)) * (ROWS * BLOCK)
    phi = _load_block(phi_ptr, rows, j4, lanes, rmask, mask, K, phi_stride_r, phi_stride_c,
                      NEG_INF, False)
    g = _load_block(gy_ptr, rows, j4, lanes, rmask, mask, K, gy_stride_r, gy_stride_c, 0.0,
                    False)
    idx = tl.load(index_ptr + rows, mask=rmask, other=0)
    s1 = tl.load(stats_ptr + rows * n * 2 + 3, mask=rmask, other=0.0).to(tl.float32)
    poisoned = ((idx < 0) & (s1 != s1))[:, None]
    empty = ((idx < 0) & (s1 == s1))[:, None]
    g_idx = tl.load(gy_ptr + rows * gy_stride_r + tl.maximum(idx, 0) * gy_stride_c,
                    mask=rmask & (idx >= 0), other=0.0).to(tl.float32)[:, None]
    m0, s0 = _load_stats_rows(stats_ptr, rows, rmask, n, 0)
    z = normal_rows(seed, (rows + row_offset)[:, None], coff, coff + lanes, ROWS, BLOCK,
                    GROUPED)
    x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
    if REG_STEPS > 0:
        gphi = _bwd_in_registers(phi, g, x0, coefs_ptr, stats_ptr, rows, rmask, n,
                                 lanes == idx[:, None], g_idx, MAX, REG_STEPS)
    else:
        gphi = _bwd_through_scratch(phi, g, z, x0, mu, lam, sv, q, coefs_ptr, stats_ptr, rows,
                                    rmask, n, idx, g_idx, lanes, ws, offs, smask, COV, MAX, ROWS,
                                    BLOCK)
    _store_block(gphi_ptr, rows, j4, lanes, rmask, mask, K, finish(gphi, poisoned, empty), False)


@triton.jit
def _bwd_through_scratch(phi, g, z, x0, mu, lam, sv, q, coefs_ptr, stats_ptr, rows, rmask, n, idx,
                         g_idx, lanes, ws, offs, smask, COV: tl.constexpr, MAX: tl.constexpr,
                         ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """The block's backward with a runtime chain: one walk keeps p_k (ReDGE-Cov also x_k) in the
    scratch slot ``ws``, then the steps k = 1 .. n-1 read them back. Returns gphi (unfinished)."""
    _walk_rows(phi, x0, mu, lam, coefs_ptr, stats_ptr, rows, rmask, n, ws, offs, smask, COV, ROWS,
               BLOCK)
    tl.debug_barrier()
    gx = tl.zeros_like(g)
    gphi = tl.zeros_like(g)
    gmu = tl.zeros_like(g)
    glam = tl.zeros_like(g)
    for k in range(1, n):
        at = ws + (k - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * BLOCK) + offs
        p = _slot_get(at, smask)
        if COV:
            xk = _slot_get(at + (n - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * BLOCK), smask)
        else:
            xk = p
        gp = tl.where(k == 1, g, coef_a(coefs_ptr, k) * gx)
        d = tl.sum(gp * p, axis=1)[:, None]
        gphi, gx, gmu, glam = _bwd_step(k, p, xk, gp, d, gphi, gx, gmu, glam, mu, lam,
                                        lanes == idx[:, None], g_idx, coefs_ptr, COV,
                                        MAX)
    if COV:
        gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
        gphi += mu * (gp0 - tl.sum(gp0 * mu, axis=1)[:, None])
    return gphi
