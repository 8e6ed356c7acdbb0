"""The diffusion family: ReDGE, ReDGE-Cov, ReDGE-Max (docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max",
"Memory and passes"). One forward and one backward kernel body; constexpr flags pick the variant:

    COV  (redge_cov): x_{n-1} = mu + sqrt(v) z,
                      l_k = phi + c_k lam (x_k - sigma_k mu - alpha_k / 2)
                      with mu = softmax(phi), v = max(mu (1 - mu), V_MIN), lam = 1 / v
    else (redge, redge_max): x_{n-1} = z,       l_k = phi + c_k x_k
    MAX  (redge_max, backward only): ReinMax's term at the last denoiser
    SINGLE: the row fits in one block (path a) or is tiled (path b)

Forward (one program per row), for k = n-1 .. 1:
    p_k = softmax(l_k) = exp(l_k - m_k) / s_k ;  x_{k-1} = a_k p_k + b_k x_k
    i = argmax_j (l_1 + G)_j ;  y = one_hot(i) (HARD) or p_1
Only (m_k, s_k) per step leave the kernel (``stats[row, k]``), with the index; z and G are
regenerated from the seed. In the tiled path every quantity above is an elementwise function of
(phi_j, z_j, G_j) and the per-row scalars of the steps already done, so each denoiser costs one pass
over the row that recomputes x_k tile by tile and folds l_k into an online (m, s).

Backward, g = dL/dy (docs/SPEC.md "ReDGE"): d_1 = <g, p_1>, r_1 = p_1 (g - d_1), gx = c_1 r_1, and for
k = 2 .. n-1: gp = a_k gx, d_k = <gp, p_k>, r_k = p_k (gp - d_k), gx = c_k r_k + b_k gx;
gphi = sum_k r_k. In the tiled path pass j computes the row scalar d_j, recomputing (x_k, p_k) and
the backward recursion for k < j elementwise from the d's already reduced; a last pass writes gphi.
"""

import triton
import triton.language as tl

from .._constants import V_MIN as _V_MIN_PY
from ._common import (NEG_INF, coef_a, coef_alpha, coef_b, coef_c, coef_sigma, finish, online_stats,
                      pick, probs, put, row_flags, row_stats, safe_max)
from ._gumbel_max import fold
from ._noise import gumbel_words, normal

V_MIN: tl.constexpr = tl.constexpr(_V_MIN_PY)


@triton.jit
def _base(phi, z, m0, s0, COV: tl.constexpr):
    """``(x_{n-1}, mu, lam, sqrt(v), q)``; for ReDGE only ``x_{n-1} = z`` is meaningful."""
    if COV:
        mu = probs(phi, m0, s0)
        q = mu * (1.0 - mu)
        v = tl.maximum(q, V_MIN)
        lam = 1.0 / v
        sv = tl.sqrt_rn(v)
        x = mu + sv * z
    else:
        mu = tl.zeros_like(z)
        q = mu
        lam = mu
        sv = mu
        x = z
    return x, mu, lam, sv, q


@triton.jit
def _logits(phi, x, mu, lam, coefs_ptr, k, COV: tl.constexpr):
    """Denoiser logits ``l_k`` (docs/SPEC.md eq. 10 / ReDGE-Cov)."""
    c = coef_c(coefs_ptr, k)
    if COV:
        shift = coef_sigma(coefs_ptr, k) * mu + 0.5 * coef_alpha(coefs_ptr, k)
        l = phi + (c * lam) * (x - shift)
    else:
        l = phi + c * x
    return l


@triton.jit
def _chain(phi, x, mu, lam, coefs_ptr, mvec, svec, steps, n, k_stop, COV: tl.constexpr):
    """``x_{k_stop}`` from ``x = x_{n-1}``: DDIM steps k = n-1 .. k_stop+1 with the saved stats."""
    for i in range(0, n - 1 - k_stop):
        k = n - 1 - i
        l = _logits(phi, x, mu, lam, coefs_ptr, k, COV)
        p = probs(l, pick(mvec, steps, k), pick(svec, steps, k))
        x = coef_a(coefs_ptr, k) * p + coef_b(coefs_ptr, k) * x
    return x


@triton.jit
def _step_p(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, k, COV: tl.constexpr):
    """``(x_k, p_k)`` recomputed from ``x0 = x_{n-1}``."""
    xk = _chain(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, k, COV)
    l = _logits(phi, xk, mu, lam, coefs_ptr, k, COV)
    return xk, probs(l, pick(mvec, steps, k), pick(svec, steps, k))


@triton.jit
def _bwd_steps(phi, g, x0, mu, lam, coefs_ptr, mvec, svec, dvec, steps, n, n_done, is_idx, g_idx,
               COV: tl.constexpr, MAX: tl.constexpr, SINGLE: tl.constexpr):
    """Backward steps k = 1 .. n_done: returns ``(gphi, gx, gmu, glam, dvec)``.

    SINGLE: the whole row is in the block and d_k = <gp_k, p_k> is reduced here (stored in dvec);
    tiled: d_k is read from dvec (reduced by an earlier pass).
    """
    gx = tl.zeros_like(g)
    gphi = tl.zeros_like(g)
    gmu = tl.zeros_like(g)
    glam = tl.zeros_like(g)
    for k in range(1, n_done + 1):
        xk, p = _step_p(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, k, COV)
        gp = tl.where(k == 1, g, coef_a(coefs_ptr, k) * gx)
        if SINGLE:
            d = tl.sum(gp * p, axis=0)
            dvec = put(dvec, steps, k, d)
        else:
            d = pick(dvec, steps, k)
        r = p * (gp - d)
        if MAX:
            # k = 1: gphi += 1/2 (p_1 (g - <g, p_1>) + <g, D> D), D = one_hot - p_1,
            # with <g, D> = g_i - d_1
            rm = 0.5 * r + 0.5 * (g_idx - d) * (is_idx.to(tl.float32) - p)
            gphi += tl.where(k == 1, rm, r)
        else:
            gphi += r
        c = coef_c(coefs_ptr, k)
        if COV:
            cl = c * lam
            sigma = coef_sigma(coefs_ptr, k)
            glam += c * r * (xk - (sigma * mu + 0.5 * coef_alpha(coefs_ptr, k)))
            gmu -= sigma * (cl * r)
        else:
            cl = c
        gx = cl * r + tl.where(k == 1, 0.0, coef_b(coefs_ptr, k)) * gx
    return gphi, gx, gmu, glam, dvec


@triton.jit
def _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q):
    """ReDGE-Cov: gradient w.r.t. mu = softmax(phi) of x_{n-1} = mu + sqrt(v) z and of lam = 1/v,
    v = max(mu (1 - mu), V_MIN) (the clamp passes the gradient where mu (1 - mu) >= V_MIN)."""
    gv = -glam * (lam * lam) + 0.5 * (gx * z) / sv
    gq = tl.where(q >= V_MIN, gv, 0.0)
    return gmu + gx + gq * (1.0 - 2.0 * mu)


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _diffusion_fwd_kernel(phi_ptr, seed_ptr, coefs_ptr, y_ptr, stats_ptr, index_ptr,
                          K, n, row_offset, col_offset, phi_stride_r, phi_stride_c,
                          COV: tl.constexpr, HARD: tl.constexpr, SINGLE: tl.constexpr,
                          BLOCK: tl.constexpr, STEPS_P2: tl.constexpr, ALIGNED: tl.constexpr,
                          WRITE_Y: tl.constexpr = True):
    """Forward of redge / redge_cov / redge_max for one row (see module docstring).

    phi [R, K] (strided, any float dtype), seed 0-dim int64, coefs [n, 5] -> y [R, K] contiguous,
    stats [R, n, 2] (m_k, s_k; slot 0 = softmax(phi) for COV, else (0, 0); s = NaN on poisoned
    rows), index [R] int64 (-1 on empty / poisoned rows).
    Noise of (row, col): that of global row ``row + row_offset``, global column
    ``col + col_offset`` (``ALIGNED``: ``col_offset`` is a multiple of 4).
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
    mvec = tl.zeros([STEPS_P2], dtype=tl.float32)
    svec = tl.zeros([STEPS_P2], dtype=tl.float32)
    if SINGLE:
        cmask = lanes < K
        phi = tl.load(phi_row + lanes * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        n_bad, n_valid = row_flags(phi, cmask)
        z = normal(seed, grow, coff, coff + lanes, BLOCK, ALIGNED)
        m0, s0 = row_stats(phi)
        if COV:
            mvec = put(mvec, steps, 0, m0)
            svec = put(svec, steps, 0, s0)
        x, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
        for i in range(0, n - 2):
            k = n - 1 - i
            l = _logits(phi, x, mu, lam, coefs_ptr, k, COV)
            m, s = row_stats(l)
            mvec = put(mvec, steps, k, m)
            svec = put(svec, steps, k, s)
            x = coef_a(coefs_ptr, k) * probs(l, m, s) + coef_b(coefs_ptr, k) * x
        l = _logits(phi, x, mu, lam, coefs_ptr, 1, COV)
        m, s = row_stats(l)
        mvec = put(mvec, steps, 1, m)
        svec = put(svec, steps, 1, s)
        w = gumbel_words(seed, grow, coff, coff + lanes, BLOCK, ALIGNED)
        _, best_idx = fold(NEG_INF, row * 0, l, w, 0, BLOCK)
        if HARD:
            y = tl.where(lanes == best_idx, 1.0, 0.0)
        else:
            y = probs(l, m, s)
        poisoned = n_bad > 0
        empty = (n_valid == 0) & (n_bad == 0)
        if WRITE_Y:
            tl.store(y_row + lanes, finish(y, poisoned, empty), mask=cmask)
    else:
        # row flags, and (COV only: pass 0) the base softmax statistics; without COV the flags
        # are folded into the first denoiser pass
        n_bad = 0
        n_valid = 0
        m0 = NEG_INF
        s0 = 0.0
        if COV:
            for start in range(0, K, BLOCK):
                cols = start + lanes
                cmask = cols < K
                phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask,
                              other=NEG_INF).to(tl.float32)
                nb, nv = row_flags(phi, cmask)
                n_bad += nb
                n_valid += nv
                m0, s0 = online_stats(m0, s0, phi)
        m0 = safe_max(m0)
        if COV:
            mvec = put(mvec, steps, 0, m0)
            svec = put(svec, steps, 0, s0)
        # one pass per denoiser k = n-1 .. 1; the last one also folds the Gumbel-max argmax
        best = NEG_INF
        best_idx = row * 0
        for i in range(0, n - 1):
            k = n - 1 - i
            m = NEG_INF
            s = 0.0
            for start in range(0, K, BLOCK):
                cols = start + lanes
                cmask = cols < K
                phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask,
                              other=NEG_INF).to(tl.float32)
                if not COV:
                    if i == 0:
                        nb, nv = row_flags(phi, cmask)
                        n_bad += nb
                        n_valid += nv
                z = normal(seed, grow, coff + start, coff + cols, BLOCK, ALIGNED)
                x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
                xk = _chain(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, k, COV)
                l = _logits(phi, xk, mu, lam, coefs_ptr, k, COV)
                m, s = online_stats(m, s, l)
                if k == 1:
                    # G (stream 1) only in the last denoiser's pass
                    w = gumbel_words(seed, grow, coff + start, coff + cols, BLOCK, ALIGNED)
                    best, best_idx = fold(best, best_idx, l, w, start, BLOCK)
            mvec = put(mvec, steps, k, safe_max(m))
            svec = put(svec, steps, k, s)
        poisoned = n_bad > 0
        empty = (n_valid == 0) & (n_bad == 0)
        # output pass: the one-hot needs no recomputation; the soft sample recomputes p_1
        if WRITE_Y:  # the output pass (compiled out without y)
            m1 = pick(mvec, steps, 1)
            s1 = pick(svec, steps, 1)
            for start in range(0, K, BLOCK):
                cols = start + lanes
                cmask = cols < K
                if HARD:
                    y = tl.where(cols == best_idx, 1.0, 0.0)
                else:
                    phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask,
                                  other=NEG_INF).to(tl.float32)
                    z = normal(seed, grow, coff + start, coff + cols, BLOCK, ALIGNED)
                    x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
                    x1 = _chain(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, 1, COV)
                    y = probs(_logits(phi, x1, mu, lam, coefs_ptr, 1, COV), m1, s1)
                tl.store(y_row + cols, finish(y, poisoned, empty), mask=cmask)
    smask = steps < n
    tl.store(stats_row + steps * 2, mvec, mask=smask)
    tl.store(stats_row + steps * 2 + 1, finish(svec, poisoned, False), mask=smask)
    tl.store(index_ptr + row, tl.where(poisoned | empty, -1, best_idx))


@triton.jit
def _bwd_tile(phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, start, cols, K, m0,
              s0, coefs_ptr, mvec, svec, dvec, steps, n, n_done, idx, g_idx,
              COV: tl.constexpr, MAX: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """One tile of the tiled backward: reload phi and g, regenerate z, rebuild the base and run the
    backward recursion through the n_done steps whose d_j are already reduced."""
    cmask = cols < K
    phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
    g = tl.load(gy_row + cols * gy_stride_c, mask=cmask, other=0.0).to(tl.float32)
    z = normal(seed, grow, coff + start, coff + cols, BLOCK, ALIGNED)
    x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
    gphi, gx, gmu, glam, _ = _bwd_steps(phi, g, x0, mu, lam, coefs_ptr, mvec, svec, dvec, steps,
                                        n, n_done, cols == idx, g_idx, COV, MAX, False)
    return phi, g, z, x0, mu, lam, sv, q, gphi, gx, gmu, glam


@triton.jit(do_not_specialize=["n", "row_offset", "col_offset"])
def _diffusion_bwd_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, gphi_ptr,
                          K, n, row_offset, col_offset, phi_stride_r, phi_stride_c, gy_stride_r,
                          gy_stride_c, COV: tl.constexpr, MAX: tl.constexpr, SINGLE: tl.constexpr,
                          BLOCK: tl.constexpr, STEPS_P2: tl.constexpr, ALIGNED: tl.constexpr):
    """Backward of redge / redge_cov / redge_max for one row (see module docstring).

    grad_y [R, K] (strided), phi, seed, coefs, stats [R, n, 2] and index [R] from the forward
    -> grad_phi [R, K] contiguous (0 on empty rows, NaN on poisoned rows).
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
    idx = tl.load(index_ptr + row)
    s1 = pick(svec, steps, 1)
    poisoned = (idx < 0) & (s1 != s1)
    empty = (idx < 0) & (s1 == s1)
    g_idx = tl.load(gy_row + tl.maximum(idx, 0) * gy_stride_c, mask=idx >= 0,
                    other=0.0).to(tl.float32)
    m0 = pick(mvec, steps, 0)
    s0 = pick(svec, steps, 0)
    dvec = tl.zeros([STEPS_P2], dtype=tl.float32)
    if SINGLE:
        cmask = lanes < K
        phi = tl.load(phi_row + lanes * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        g = tl.load(gy_row + lanes * gy_stride_c, mask=cmask, other=0.0).to(tl.float32)
        z = normal(seed, grow, coff, coff + lanes, BLOCK, ALIGNED)
        x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
        gphi, gx, gmu, glam, dvec = _bwd_steps(phi, g, x0, mu, lam, coefs_ptr, mvec, svec, dvec,
                                               steps, n, n - 1, lanes == idx, g_idx,
                                               COV, MAX, True)
        if COV:
            gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
            gphi += mu * (gp0 - tl.sum(gp0 * mu, axis=0))
        tl.store(gphi_row + lanes, finish(gphi, poisoned, empty), mask=cmask)
    else:
        # pass j = 1 .. n-1 reduces d_j = <gp_j, p_j> (gp_1 = g, gp_j = a_j gx_{j-1})
        for j in range(1, n):
            acc = 0.0
            for start in range(0, K, BLOCK):
                cols = start + lanes
                phi, g, z, x0, mu, lam, sv, q, gphi, gx, gmu, glam = _bwd_tile(
                    phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, start, cols, K, m0,
                    s0, coefs_ptr, mvec, svec, dvec, steps, n, j - 1, idx, g_idx, COV, MAX, BLOCK,
                    ALIGNED)
                xj, pj = _step_p(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, j, COV)
                gp = tl.where(j == 1, g, coef_a(coefs_ptr, j) * gx)
                acc += tl.sum(gp * pj, axis=0)
            dvec = put(dvec, steps, j, acc)
        if COV:
            # one more pass: d_0 = <gp_0, mu> of the base softmax backward
            acc0 = 0.0
            for start in range(0, K, BLOCK):
                cols = start + lanes
                phi, g, z, x0, mu, lam, sv, q, gphi, gx, gmu, glam = _bwd_tile(
                    phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, start, cols, K, m0,
                    s0, coefs_ptr, mvec, svec, dvec, steps, n, n - 1, idx, g_idx, COV, MAX, BLOCK,
                    ALIGNED)
                gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
                acc0 += tl.sum(gp0 * mu, axis=0)
            dvec = put(dvec, steps, 0, acc0)
        # output pass
        d0 = pick(dvec, steps, 0)
        for start in range(0, K, BLOCK):
            cols = start + lanes
            cmask = cols < K
            phi, g, z, x0, mu, lam, sv, q, gphi, gx, gmu, glam = _bwd_tile(
                phi_row, phi_stride_c, gy_row, gy_stride_c, seed, grow, coff, start, cols, K, m0, s0,
                coefs_ptr, mvec, svec, dvec, steps, n, n - 1, idx, g_idx, COV, MAX, BLOCK, ALIGNED)
            if COV:
                gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
                gphi += mu * (gp0 - d0)
            tl.store(gphi_row + cols, finish(gphi, poisoned, empty), mask=cmask)
