"""The diffusion family (docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max") for rows of K <= 2, the
``BLOCK = 2`` case of the ``_diffusion_rows`` kernels: each row held as its two columns (float32
``[ROWS]`` vectors), a row per thread, as ``_onepass_pairs`` does for the one-pass baselines. The
same math, helpers (``_diffusion._base``, ``_logits``, ``_bwd_step``, ``_cov_base_grad``, called
once per column) and noise as the ``[ROWS, BLOCK]`` block; every row reduction is one operation on
the two columns; the backward keeps p_k (ReDGE-Cov also x_k) in the same scratch slot
``[n-1 or 2(n-1), ROWS, 2]``, masked entries stored nowhere and read back as 0 as there.

Noise: stream 0 (z, Box-Muller) and stream 1 (G) of the global columns ``col_offset`` and
``col_offset + 1``: one Philox call per row and stream where ``col_offset`` is a multiple of 4
(z from words 0 and 1: ``rho(w0) (cos, sin)(theta(w1))``; G from words 0 and 1), else one per
column (``_noise.normal_at`` / ``lane_word``).
"""

import triton
import triton.language as tl

from ._common import NEG_INF, coef_a, coef_b, finish, probs
from ._diffusion import _base, _bwd_step, _cov_base_grad, _logits
from ._noise import _rho, _theta, cos_sin, normal_at, philox_words
from ._onepass_pairs import _bad, _load_pair, _pair_gumbel, _pair_rows, _pair_stats


@triton.jit
def _pair_normal(seed, grows, coff, GROUPED: tl.constexpr):
    """Stream-0 z of the global columns ``coff``, ``coff + 1`` (float32 [ROWS] each)."""
    if GROUPED:
        w0, w1, w2, w3 = philox_words(seed, tl.zeros(grows.shape, dtype=tl.int64) + (coff >> 2),
                                      grows, 0)
        rho = _rho(w0)
        theta = _theta(w1)
        c, s = cos_sin(theta)
        z0 = rho * c
        z1 = rho * s
    else:
        cols = tl.zeros(grows.shape, dtype=tl.int64) + coff
        z0 = normal_at(seed, grows, cols)
        z1 = normal_at(seed, grows, cols + 1)
    return z0, z1


@triton.jit
def _put_stats(stats_ptr, rows, rmask, n, k, m, s, poisoned):
    """stats[row, k] = (m, s) of ``[ROWS]`` vectors (s = NaN on poisoned rows)."""
    base = stats_ptr + rows * n * 2 + k * 2
    tl.store(base, m, mask=rmask)
    tl.store(base + 1, finish(s, poisoned, False), mask=rmask)


@triton.jit
def diffusion_pairs_fwd(phi_ptr, seed, coefs_ptr, y_ptr, stats_ptr, index_ptr, R, K, n,
                        row_offset, col_offset, phi_stride_r, phi_stride_c, COV: tl.constexpr,
                        HARD: tl.constexpr, ROWS: tl.constexpr, GROUPED: tl.constexpr,
                        WRITE_Y: tl.constexpr):
    """``_diffusion_rows_fwd_kernel`` for K <= 2 (its arguments and outputs; ``seed`` loaded)."""
    rows, rmask, has1 = _pair_rows(R, K, ROWS)
    coff = col_offset.to(tl.int64)
    grows = rows + row_offset
    p0, p1 = _load_pair(phi_ptr, rows, phi_stride_r, phi_stride_c, rmask, has1, NEG_INF)
    poisoned = (_bad(p0) & rmask) | (_bad(p1) & has1)
    empty = (p0 == NEG_INF) & (p1 == NEG_INF)  # a NaN is neither -inf nor empty
    z0, z1 = _pair_normal(seed, grows, coff, GROUPED)
    if COV:
        m0, s0 = _pair_stats(p0, p1, 1.0, False)
    else:  # slot 0 unused: (0, 0), NaN on poisoned rows as every s
        m0 = tl.zeros([ROWS], dtype=tl.float32)
        s0 = m0
    _put_stats(stats_ptr, rows, rmask, n, 0, m0, s0, poisoned)
    x0, mu0, lam0, sv0, q0 = _base(p0, z0, m0, s0, COV)
    x1, mu1, lam1, sv1, q1 = _base(p1, z1, m0, s0, COV)
    for i in range(0, n - 2):
        k = n - 1 - i
        l0 = _logits(p0, x0, mu0, lam0, coefs_ptr, k, COV)
        l1 = _logits(p1, x1, mu1, lam1, coefs_ptr, k, COV)
        m, s = _pair_stats(l0, l1, 1.0, False)
        _put_stats(stats_ptr, rows, rmask, n, k, m, s, poisoned)
        x0 = coef_a(coefs_ptr, k) * probs(l0, m, s) + coef_b(coefs_ptr, k) * x0
        x1 = coef_a(coefs_ptr, k) * probs(l1, m, s) + coef_b(coefs_ptr, k) * x1
    l0 = _logits(p0, x0, mu0, lam0, coefs_ptr, 1, COV)
    l1 = _logits(p1, x1, mu1, lam1, coefs_ptr, 1, COV)
    m, s = _pair_stats(l0, l1, 1.0, False)
    _put_stats(stats_ptr, rows, rmask, n, 1, m, s, poisoned)
    g0, g1 = _pair_gumbel(seed, grows, coff, GROUPED)
    v0 = l0 + g0
    v1 = l1 + g1
    best = (tl.where(v1 != v1, NEG_INF, v1) > tl.where(v0 != v0, NEG_INF, v0)).to(tl.int64)
    if WRITE_Y:
        if HARD:
            y0 = tl.where(best == 0, 1.0, 0.0)
            y1 = 1.0 - y0
        else:
            y0 = probs(l0, m, s)
            y1 = probs(l1, m, s)
        y_at = y_ptr + rows * K
        tl.store(y_at, finish(y0, poisoned, empty), mask=rmask)
        tl.store(y_at + 1, finish(y1, poisoned, empty), mask=has1)
    tl.store(index_ptr + rows, tl.where(poisoned | empty, -1, best), mask=rmask)


@triton.jit
def _pair_walk(p0, p1, x0, x1, mu0, mu1, lam0, lam1, coefs_ptr, stats_ptr, rows, rmask, has1, n,
               ws, offs, COV: tl.constexpr, ROWS: tl.constexpr):
    """``_diffusion_rows._walk_rows`` for the two columns: p_k (and x_k) of k = n-1 .. 1 into the
    slot ``ws`` (rows of ROWS x 2 entries, column c of row r at ``offs + c``)."""
    for i in range(0, n - 1):
        k = n - 1 - i
        base = stats_ptr + rows * n * 2 + k * 2
        m = tl.load(base, mask=rmask, other=0.0).to(tl.float32)
        s = tl.load(base + 1, mask=rmask, other=0.0).to(tl.float32)
        q0 = probs(_logits(p0, x0, mu0, lam0, coefs_ptr, k, COV), m, s)
        q1 = probs(_logits(p1, x1, mu1, lam1, coefs_ptr, k, COV), m, s)
        at = ws + (k - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * 2) + offs
        tl.store(at, q0, mask=rmask)
        tl.store(at + 1, q1, mask=has1)
        if COV:
            xat = at + (n - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * 2)
            tl.store(xat, x0, mask=rmask)
            tl.store(xat + 1, x1, mask=has1)
        x0 = coef_a(coefs_ptr, k) * q0 + coef_b(coefs_ptr, k) * x0
        x1 = coef_a(coefs_ptr, k) * q1 + coef_b(coefs_ptr, k) * x1


@triton.jit
def diffusion_pairs_bwd(gy_ptr, phi_ptr, seed, coefs_ptr, stats_ptr, index_ptr, gphi_ptr,
                        scratch_ptr, R, K, n, row_offset, col_offset, phi_stride_r,
                        phi_stride_c, gy_stride_r, gy_stride_c, COV: tl.constexpr,
                        MAX: tl.constexpr, ROWS: tl.constexpr, GROUPED: tl.constexpr):
    """``_diffusion_rows_bwd_kernel`` for K <= 2 (its arguments and outputs; ``seed`` loaded)."""
    pid = tl.program_id(0)
    rows, rmask, has1 = _pair_rows(R, K, ROWS)
    offs = tl.arange(0, ROWS).to(tl.int64) * 2
    ws = scratch_ptr + pid.to(tl.int64) * ((n - 1) * (2 if COV else 1)) * (ROWS * 2)
    p0, p1 = _load_pair(phi_ptr, rows, phi_stride_r, phi_stride_c, rmask, has1, NEG_INF)
    g0, g1 = _load_pair(gy_ptr, rows, gy_stride_r, gy_stride_c, rmask, has1, 0.0)
    idx = tl.load(index_ptr + rows, mask=rmask, other=0)
    s1 = tl.load(stats_ptr + rows * n * 2 + 3, mask=rmask, other=0.0).to(tl.float32)
    poisoned = (idx < 0) & (s1 != s1)
    empty = (idx < 0) & (s1 == s1)
    g_idx = tl.where(idx == 0, g0, tl.where(idx == 1, g1, 0.0))
    m0 = tl.load(stats_ptr + rows * n * 2, mask=rmask, other=0.0).to(tl.float32)
    s0 = tl.load(stats_ptr + rows * n * 2 + 1, mask=rmask, other=0.0).to(tl.float32)
    z0, z1 = _pair_normal(seed, rows + row_offset, col_offset.to(tl.int64), GROUPED)
    x0, mu0, lam0, sv0, q0 = _base(p0, z0, m0, s0, COV)
    x1, mu1, lam1, sv1, q1 = _base(p1, z1, m0, s0, COV)
    _pair_walk(p0, p1, x0, x1, mu0, mu1, lam0, lam1, coefs_ptr, stats_ptr, rows, rmask, has1, n,
               ws, offs, COV, ROWS)
    tl.debug_barrier()
    gx0 = tl.zeros_like(g0)
    gx1 = gx0
    gphi0 = gx0
    gphi1 = gx0
    gmu0 = gx0
    gmu1 = gx0
    glam0 = gx0
    glam1 = gx0
    for k in range(1, n):
        at_k = ws + (k - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * 2) + offs
        r0 = tl.load(at_k, mask=rmask, other=0.0)
        r1 = tl.load(at_k + 1, mask=has1, other=0.0)
        if COV:
            xat = at_k + (n - 1 + tl.zeros([], dtype=tl.int64)) * (ROWS * 2)
            xk0 = tl.load(xat, mask=rmask, other=0.0)
            xk1 = tl.load(xat + 1, mask=has1, other=0.0)
        else:
            xk0 = r0
            xk1 = r1
        gp0 = tl.where(k == 1, g0, coef_a(coefs_ptr, k) * gx0)
        gp1 = tl.where(k == 1, g1, coef_a(coefs_ptr, k) * gx1)
        d = gp0 * r0 + gp1 * r1
        gphi0, gx0, gmu0, glam0 = _bwd_step(k, r0, xk0, gp0, d, gphi0, gx0, gmu0, glam0, mu0,
                                            lam0, idx == 0, g_idx, coefs_ptr, COV, MAX)
        gphi1, gx1, gmu1, glam1 = _bwd_step(k, r1, xk1, gp1, d, gphi1, gx1, gmu1, glam1, mu1,
                                            lam1, idx == 1, g_idx, coefs_ptr, COV, MAX)
    if COV:
        b0 = _cov_base_grad(gx0, gmu0, glam0, z0, mu0, lam0, sv0, q0)
        b1 = _cov_base_grad(gx1, gmu1, glam1, z1, mu1, lam1, sv1, q1)
        dot = b0 * mu0 + b1 * mu1
        gphi0 += mu0 * (b0 - dot)
        gphi1 += mu1 * (b1 - dot)
    out = gphi_ptr + rows * K
    tl.store(out, finish(gphi0, poisoned, empty), mask=rmask)
    tl.store(out + 1, finish(gphi1, poisoned, empty), mask=has1)
