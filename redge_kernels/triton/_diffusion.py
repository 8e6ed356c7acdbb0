"""The diffusion family: ReDGE, ReDGE-Cov, ReDGE-Max (docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max",
"Memory and passes"). One forward and one backward kernel body; constexpr flags pick the variant:

    COV  (redge_cov): x_{n-1} = mu + sqrt(v) z,
                      l_k = phi + c_k lam (x_k - sigma_k mu - alpha_k / 2)
                      with mu = softmax(phi), v = max(mu (1 - mu), V_MIN), lam = 1 / v
    else (redge, redge_max): x_{n-1} = z,       l_k = phi + c_k x_k
    MAX  (redge_max, backward only): ReinMax's term at the last denoiser
    SINGLE: the row fits in one block (path a) or is tiled (path b)

Forward (a program per row, or a persistent program looping over rows in the tiled path), for
k = n-1 .. 1:
    p_k = softmax(l_k) = exp(l_k - m_k) / s_k ;  x_{k-1} = a_k p_k + b_k x_k
    i = argmax_j (l_1 + G)_j ;  y = one_hot(i) (HARD) or p_1
Only (m_k, s_k) per step leave the kernel (``stats[row, k]``), with the index; z and G are
regenerated from the seed. In the tiled path each denoiser costs one pass over the row: it takes
one DDIM step x_{k+1} -> x_k tile by tile on the trajectory kept in the program's scratch slot
(z drawn in the first pass) and folds l_k into an online (m, s); the last one folds the
Gumbel-max (``_gumbel_max``). ``STRIDE`` > 1 (long chains of ReDGE / ReDGE-Max): only every
STRIDE-th pass keeps its x_k in the scratch, and the passes after it take more DDIM steps.

Backward, g = dL/dy (docs/SPEC.md "ReDGE"): d_1 = <g, p_1>, r_1 = p_1 (g - d_1), gx = c_1 r_1, and for
k = 2 .. n-1: gp = a_k gx, d_k = <gp, p_k>, r_k = p_k (gp - d_k), gx = c_k r_k + b_k gx;
gphi = sum_k r_k. The backward needs p_1 first, the chain yields p_{n-1} first: each program walks
the chain once per row with the saved stats (``_walk``, the forward's own operations, so every p_k
is bitwise the forward's) and keeps p_k (ReDGE-Cov also x_k) in its scratch slot, n - 1 exps per
element in all. Single block: the steps then run on the row in registers, reading p_k back (each
thread its own entries). Tiled: pass 1 is the walk (and d_1); pass j finishes step j-1 from the
scratch (p_{j-1}, the carried gx, gphi[, gmu, glam]) and reduces d_j; a last pass finishes step
n-1 and writes gphi (ReDGE-Cov: reduces d_0 = <gp_0, mu>, one more pass writes). The launcher
gives the tiled backward with n <= ``_launch.twopass_max_steps`` to ``_diffusion_twopass``
instead (two passes, no scratch); this one takes the longer chains.
"""

import triton
import triton.language as tl

from .._constants import V_MIN as _V_MIN_PY
from ._common import (NEG_INF, coef_a, coef_alpha, coef_b, coef_c, coef_sigma, div_normal, finish,
                      flags_of_max, flags_of_stats, lane_flags_fold, lane_flags_init, load_tile,
                      one_hot_tile, pick, probs, put, row_stats, safe_max, slot_stats_fold,
                      slot_stats_init, slot_stats_row, sqrt_pos, store_tile)
from ._gumbel_max import fold
from ._noise import gumbel_words, normal

V_MIN: tl.constexpr = tl.constexpr(_V_MIN_PY)


@triton.jit
def _cov_v(mu):
    """ReDGE-Cov's ``(lam, sqrt(v), q)`` of mu: q = mu (1 - mu), v = max(q, V_MIN), lam = 1 / v."""
    q = mu * (1.0 - mu)
    v = tl.maximum(q, V_MIN)
    return div_normal(1.0, v), sqrt_pos(v), q


@triton.jit
def _base(phi, z, m0, s0, COV: tl.constexpr):
    """``(x_{n-1}, mu, lam, sqrt(v), q)``; for ReDGE only ``x_{n-1} = z`` is meaningful."""
    if COV:
        mu = probs(phi, m0, s0)
        lam, sv, q = _cov_v(mu)
        x = mu + sv * z
    else:
        mu = tl.zeros_like(z)
        q = mu
        lam = mu
        sv = mu
        x = z
    return x, mu, lam, sv, q


@triton.jit
def _logits_of(phi, x, mu, lam, c, sigma, alpha, COV: tl.constexpr):
    """Denoiser logits ``l_k`` from step k's scalars c_k, sigma_k, alpha_k (docs/SPEC.md eq. 10:
    phi + c_k x_k; ReDGE-Cov: phi + (c_k lam) (x_k - (sigma_k mu + alpha_k / 2)), sigma and alpha
    unused otherwise)."""
    if COV:
        shift = sigma * mu + 0.5 * alpha
        l = phi + (c * lam) * (x - shift)
    else:
        l = phi + c * x
    return l


@triton.jit
def _logit_scalars(coefs_ptr, k, COV: tl.constexpr):
    """Step k's ``(c_k, sigma_k, alpha_k)`` from ``coefs`` (sigma, alpha 0 unless COV)."""
    if COV:
        sigma = coef_sigma(coefs_ptr, k)
        alpha = coef_alpha(coefs_ptr, k)
    else:
        sigma = 0.0
        alpha = 0.0
    return coef_c(coefs_ptr, k), sigma, alpha


@triton.jit
def _logits(phi, x, mu, lam, coefs_ptr, k, COV: tl.constexpr):
    """Denoiser logits ``l_k`` (``_logits_of``) with step k's scalars read from ``coefs``."""
    c, sigma, alpha = _logit_scalars(coefs_ptr, k, COV)
    return _logits_of(phi, x, mu, lam, c, sigma, alpha, COV)


@triton.jit
def _bwd_step(k, p, xk, gp, d, gphi, gx, gmu, glam, mu, lam, is_idx, g_idx, coefs_ptr,
              COV: tl.constexpr, MAX: tl.constexpr):
    """Backward step k (docs/SPEC.md "ReDGE"): r_k = p_k (gp_k - d_k) added to gphi (ReinMax's
    term at k = 1 for MAX), gx_k = c_k r_k + b_k gx_{k-1} (COV: through c_k lam, with the lam and
    mu paths). Returns ``(gphi, gx, gmu, glam)``."""
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
    return gphi, gx, gmu, glam


@triton.jit
def _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q):
    """ReDGE-Cov: gradient w.r.t. mu = softmax(phi) of x_{n-1} = mu + sqrt(v) z and of lam = 1/v,
    v = max(mu (1 - mu), V_MIN) (the clamp passes the gradient where mu (1 - mu) >= V_MIN)."""
    gv = -glam * (lam * lam) + div_normal(0.5 * (gx * z), sv)
    gq = tl.where(q >= V_MIN, gv, 0.0)
    return gmu + gx + gq * (1.0 - 2.0 * mu)


@triton.jit
def _mu_lam(phi, m0, s0, COV: tl.constexpr):
    """``(mu, lam)`` of ReDGE-Cov from phi and its softmax stats (zeros for ReDGE)."""
    if COV:
        mu = probs(phi, m0, s0)
        lam = div_normal(1.0, tl.maximum(mu * (1.0 - mu), V_MIN))
    else:
        mu = tl.zeros_like(phi)
        lam = mu
    return mu, lam


@triton.jit
def _soft_y(phi_row, phi_stride_c, x1, cols, cmask, coefs_ptr, m0, s0, m1, s1, poisoned, empty,
            COV: tl.constexpr, EVEN: tl.constexpr):
    """``p_1 = softmax(l_1)`` on the columns ``cols`` from their x_1 and the step-1 stats
    ``(m1, s1)``; NaN on a poisoned row, 0 on an empty one (``finish``)."""
    phi = load_tile(phi_row + cols * phi_stride_c, cmask, NEG_INF, EVEN).to(tl.float32)
    mu, lam = _mu_lam(phi, m0, s0, COV)
    return finish(probs(_logits(phi, x1, mu, lam, coefs_ptr, 1, COV), m1, s1), poisoned, empty)


@triton.jit
def _write_y_range(y_row, phi_row, phi_stride_c, x_row, coefs_ptr, lanes, c0, c1, best_idx, m0,
                   s0, m1, s1, poisoned, empty, COV: tl.constexpr, HARD: tl.constexpr,
                   BLOCK: tl.constexpr, EVEN: tl.constexpr = False):
    """y on the columns ``[c0, c1)`` of a row: ``one_hot(best_idx)`` (HARD) or ``p_1 =
    softmax(l_1)`` from x_1 (the trajectory row ``x_row``) and the step-1 stats ``(m1, s1)``; NaN
    on a poisoned row, 0 on an empty one (``finish``). ``EVEN``: every tile of the range is full
    (no masks)."""
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        if HARD:
            y = one_hot_tile(tl.arange(0, BLOCK), start, best_idx, poisoned, empty, BLOCK,
                             y_row.dtype.element_ty)
        else:
            x1 = load_tile(x_row + cols, cmask, 0.0, EVEN)
            y = _soft_y(phi_row, phi_stride_c, x1, cols, cmask, coefs_ptr, m0, s0, m1, s1,
                        poisoned, empty, COV, EVEN)
        store_tile(y_row + cols, y, cmask, EVEN)


@triton.jit
def _fwd_single(phi_row, phi_stride_c, y_row, seed, grow, coff, coefs_ptr, K, n,
                COV: tl.constexpr, HARD: tl.constexpr, BLOCK: tl.constexpr,
                STEPS_P2: tl.constexpr, GROUPED: tl.constexpr, WRITE_Y: tl.constexpr):
    """Path (a): the row in one block; returns ``(mvec, svec, best_idx, poisoned, empty)``."""
    steps = tl.arange(0, STEPS_P2)
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    mvec = tl.zeros([STEPS_P2], dtype=tl.float32)
    svec = tl.zeros([STEPS_P2], dtype=tl.float32)
    cmask = lanes < K
    phi = tl.load(phi_row + lanes * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
    n_bad, n_valid = flags_of_max(phi)
    z = normal(seed, grow, coff, coff + lanes, BLOCK, GROUPED)
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
    w = gumbel_words(seed, grow, coff, coff + lanes, BLOCK, GROUPED)
    _, best_idx = fold(NEG_INF, 0, l, w, 0, seed, grow, coff, BLOCK)
    poisoned = n_bad > 0
    empty = (n_valid == 0) & (n_bad == 0)
    if HARD:
        y = one_hot_tile(tl.arange(0, BLOCK), 0, best_idx, poisoned, empty, BLOCK,
                         y_row.dtype.element_ty)
    else:
        y = finish(probs(l, m, s), poisoned, empty)
    if WRITE_Y:
        tl.store(y_row + lanes, y, mask=cmask)
    return mvec, svec, best_idx, poisoned, empty


@triton.jit
def _step_scalars(coefs_ptr, mvec, svec, steps, k, COV: tl.constexpr):
    """Step k's DDIM move out of x_k, as row scalars: ``(c_k, sigma_k, alpha_k, a_k, b_k, m_k,
    s_k)`` (its logit coefficients and finished stats; a pick is a reduction, so a pass reads
    them once, outside its tile loop)."""
    c, sigma, alpha = _logit_scalars(coefs_ptr, k, COV)
    return (c, sigma, alpha, coef_a(coefs_ptr, k), coef_b(coefs_ptr, k), pick(mvec, steps, k),
            pick(svec, steps, k))


@triton.jit
def _ddim_move(phi, x, mu, lam, c, sigma, alpha, a, b, m, s, COV: tl.constexpr):
    """x_{k-1} = a_k p_k + b_k x_k with p_k = softmax(l_k) from step k's finished stats."""
    return a * probs(_logits_of(phi, x, mu, lam, c, sigma, alpha, COV), m, s) + b * x


@triton.jit
def _fold_tile(l, m, s, best, best_idx, k, seed, grow, coff, start, cols, BLOCK: tl.constexpr,
               GROUPED: tl.constexpr):
    """Fold a tile's logits l_k into its pass's per-slot online stats ``(m, s)`` and, in the last
    denoiser's pass (k = 1, the only one that draws the stream-1 words), into the Gumbel-max
    ``(best, best_idx)``."""
    m, s = slot_stats_fold(m, s, l, 1.0, BLOCK)
    if k == 1:
        w = gumbel_words(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
        best, best_idx = fold(best, best_idx, l, w, start, seed, grow, coff + start, BLOCK)
    return m, s, best, best_idx


@triton.jit
def _cov_base_pass(phi_row, phi_stride_c, K, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    """ReDGE-Cov's pass over phi for the stats ``(m_0, s_0)`` of mu = softmax(phi), which also
    give the row flags (``flags_of_stats``). Returns ``(m_0, s_0, n_bad, n_valid)``."""
    lanes = tl.arange(0, BLOCK)
    m0_p, s0_p = slot_stats_init(BLOCK)
    for start in range(0, K, BLOCK):
        cols = start + lanes
        phi = load_tile(phi_row + cols * phi_stride_c, cols < K, NEG_INF, EVEN).to(tl.float32)
        m0_p, s0_p = slot_stats_fold(m0_p, s0_p, phi, 1.0, BLOCK)
    m0, s0 = slot_stats_row(m0_p, s0_p, 1.0)
    n_bad, n_valid = flags_of_stats(m0, s0)
    return safe_max(m0), s0, n_bad, n_valid


@triton.jit
def _first_tile(phi_row, phi_stride_c, seed, grow, coff, start, lanes, K, k, m0, s0, c_k,
                sigma_k, alpha_k, m, s, flags, best, best_idx, COV: tl.constexpr,
                BLOCK: tl.constexpr, GROUPED: tl.constexpr, EVEN: tl.constexpr):
    """One tile of ``_first_pass``, columns ``start + lanes``: z drawn, x_{n-1} from it, l_{n-1}
    folded. Returns ``(x, m, s, flags, best, best_idx)``."""
    cols = start + lanes
    phi = load_tile(phi_row + cols * phi_stride_c, cols < K, NEG_INF, EVEN).to(tl.float32)
    if not COV:
        flags = lane_flags_fold(flags, phi)
    z = normal(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
    x, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
    l = _logits_of(phi, x, mu, lam, c_k, sigma_k, alpha_k, COV)
    m, s, best, best_idx = _fold_tile(l, m, s, best, best_idx, k, seed, grow, coff, start, cols,
                                      BLOCK, GROUPED)
    return x, m, s, flags, best, best_idx


@triton.jit
def _first_pass(phi_row, phi_stride_c, x_row, seed, grow, coff, coefs_ptr, K, n, m0, s0, best,
                best_idx, COV: tl.constexpr, HARD: tl.constexpr, BLOCK: tl.constexpr,
                GROUPED: tl.constexpr, EVEN: tl.constexpr, RES: tl.constexpr):
    """Pass k = n - 1 of the tiled forward: z drawn, x_{n-1} kept: in registers for the first
    ``RES`` tiles (the tuple ``xs``), in the scratch ``x_row`` for the others (not when it is also
    the last pass of a hard sample, n = 2); l_{n-1} folded; for ReDGE / ReDGE-Max the per-lane
    ``max_nan`` of phi for the row flags. Returns ``(m, s, flags, best, best_idx, xs)``,
    ``(m, s)`` the row's stats of step n - 1."""
    k = n - 1
    lanes = tl.arange(0, BLOCK)
    m, s = slot_stats_init(BLOCK)
    flags = lane_flags_init(BLOCK)
    c_k, sigma_k, alpha_k = _logit_scalars(coefs_ptr, k, COV)
    keep = (k > 1) | (not HARD)  # the one-hot output needs no x_1
    xs = ()
    for t in tl.static_range(RES):  # full tiles by the launcher's choice of RES
        x, m, s, flags, best, best_idx = _first_tile(
            phi_row, phi_stride_c, seed, grow, coff, t * BLOCK, lanes, K, k, m0, s0, c_k, sigma_k,
            alpha_k, m, s, flags, best, best_idx, COV, BLOCK, GROUPED, True)
        xs = xs + (x,)
    for start in range(RES * BLOCK, K, BLOCK):
        x, m, s, flags, best, best_idx = _first_tile(
            phi_row, phi_stride_c, seed, grow, coff, start, lanes, K, k, m0, s0, c_k, sigma_k,
            alpha_k, m, s, flags, best, best_idx, COV, BLOCK, GROUPED, EVEN)
        if keep:
            cols = start + lanes
            store_tile(x_row + cols, x, cols < K, EVEN)
    m, s = slot_stats_row(m, s, 1.0)
    return m, s, flags, best, best_idx, xs


@triton.jit
def _step_tile(phi_row, phi_stride_c, seed, grow, coff, start, lanes, K, x, extra, k, m0, s0,
               c_k, sigma_k, alpha_k, near, far, m, s, best, best_idx, COV: tl.constexpr,
               BLOCK: tl.constexpr, GROUPED: tl.constexpr, STRIDE: tl.constexpr,
               EVEN: tl.constexpr):
    """One tile of ``_step_pass``, columns ``start + lanes``: ``extra`` DDIM moves from ``x``
    (x_{k+1+extra}) to x_{k+1} (``far``: their steps' scalars), the move to x_k (``near``: step
    k + 1's), l_k folded. Returns ``(x_k, m, s, best, best_idx)``."""
    cols = start + lanes
    phi = load_tile(phi_row + cols * phi_stride_c, cols < K, NEG_INF, EVEN).to(tl.float32)
    mu, lam = _mu_lam(phi, m0, s0, COV)
    for j in tl.static_range(STRIDE - 1):  # x_{k+1+extra} -> x_{k+1}, farthest step first
        if STRIDE - 1 - j <= extra:
            c_q, sigma_q, alpha_q, a_q, b_q, m_q, s_q = far[STRIDE - 2 - j]
            x = _ddim_move(phi, x, mu, lam, c_q, sigma_q, alpha_q, a_q, b_q, m_q, s_q, COV)
    c_p, sigma_p, alpha_p, a_p, b_p, m_p, s_p = near
    x = _ddim_move(phi, x, mu, lam, c_p, sigma_p, alpha_p, a_p, b_p, m_p, s_p, COV)
    l = _logits_of(phi, x, mu, lam, c_k, sigma_k, alpha_k, COV)
    m, s, best, best_idx = _fold_tile(l, m, s, best, best_idx, k, seed, grow, coff, start, cols,
                                      BLOCK, GROUPED)
    return x, m, s, best, best_idx


@triton.jit
def _step_pass(phi_row, phi_stride_c, x_row, xs, seed, grow, coff, coefs_ptr, K, n, i, m0, s0,
               mvec, svec, steps, best, best_idx, COV: tl.constexpr, HARD: tl.constexpr,
               BLOCK: tl.constexpr, GROUPED: tl.constexpr, STRIDE: tl.constexpr,
               EVEN: tl.constexpr, RES: tl.constexpr):
    """Pass i >= 1 (k = n - 1 - i) of the tiled forward: one DDIM step x_{k+1} -> x_k (p_{k+1}
    from its finished stats), on the first ``RES`` tiles in registers (``xs``, x_k kept there),
    on the others from the scratch, x_k kept there for the next pass (not x_1 of a hard sample);
    l_k folded. ``STRIDE`` > 1: only the passes i = 0, STRIDE, 2 STRIDE, ... (and the last of a
    soft sample) keep x_k in the scratch; pass i reads the x of the last pass that kept one and
    takes 1 + (i - 1) mod STRIDE steps, by the same operations. Returns ``(m, s, best, best_idx,
    xs)``, ``(m, s)`` the row's stats of step k."""
    k = n - 1 - i
    lanes = tl.arange(0, BLOCK)
    m, s = slot_stats_init(BLOCK)
    # the pass's row scalars, outside the tile loop (a pick is a reduction): step k's logit
    # coefficients, the finished steps k + 1 (and, STRIDE > 1, k + 2 .. k + STRIDE) it moves
    # through
    c_k, sigma_k, alpha_k = _logit_scalars(coefs_ptr, k, COV)
    near = _step_scalars(coefs_ptr, mvec, svec, steps, k + 1, COV)
    keep = (k > 1) | (not HARD)
    extra = (i - 1) % STRIDE  # the moves before the last one: from x_{k+1+extra}
    if STRIDE > 1:
        keep = keep & ((i % STRIDE == 0) | (k == 1))
    far = ()  # far[d - 1]: step k + 1 + d's scalars
    for d in tl.static_range(1, STRIDE):
        far = far + (_step_scalars(coefs_ptr, mvec, svec, steps, tl.minimum(k + 1 + d, n - 1),
                                   COV),)
    new = ()
    for t in tl.static_range(RES):  # x_{k+1} in registers: one move
        x, m, s, best, best_idx = _step_tile(
            phi_row, phi_stride_c, seed, grow, coff, t * BLOCK, lanes, K, xs[t], 0, k, m0, s0,
            c_k, sigma_k, alpha_k, near, far, m, s, best, best_idx, COV, BLOCK, GROUPED, STRIDE,
            True)
        new = new + (x,)
    for start in range(RES * BLOCK, K, BLOCK):
        cols = start + lanes
        cmask = cols < K
        x = load_tile(x_row + cols, cmask, 0.0, EVEN)
        x, m, s, best, best_idx = _step_tile(
            phi_row, phi_stride_c, seed, grow, coff, start, lanes, K, x, extra, k, m0, s0, c_k,
            sigma_k, alpha_k, near, far, m, s, best, best_idx, COV, BLOCK, GROUPED, STRIDE, EVEN)
        if keep:
            store_tile(x_row + cols, x, cmask, EVEN)
    m, s = slot_stats_row(m, s, 1.0)
    return m, s, best, best_idx, new


@triton.jit
def _fwd_tiled(phi_row, phi_stride_c, y_row, x_row, seed, grow, coff, coefs_ptr, K, n,
               COV: tl.constexpr, HARD: tl.constexpr, BLOCK: tl.constexpr,
               STEPS_P2: tl.constexpr, GROUPED: tl.constexpr, WRITE_Y: tl.constexpr,
               STRIDE: tl.constexpr, EVEN: tl.constexpr, RES: tl.constexpr):
    """Path (b), the row tiled, O(n) work per element, one pass per denoiser on the trajectory
    kept in registers for the first ``RES`` tiles (a tuple of BLOCK-wide tiles carried from pass
    to pass), in the program's scratch ``x_row`` (float32, K - RES BLOCK) for the rest: ReDGE-Cov's
    base pass (``_cov_base_pass``), ``_first_pass`` (k = n - 1: z drawn), ``_step_pass`` for
    k = n - 2 .. 1 (``STRIDE`` > 1: x_k kept in the scratch at every STRIDE-th pass only, 4 bytes
    fewer per element of scratch traffic in the others for more DDIM steps, by the same
    operations), then the output. Returns ``(mvec, svec, best_idx, poisoned, empty)``."""
    steps = tl.arange(0, STEPS_P2)
    lanes = tl.arange(0, BLOCK)
    mvec = tl.zeros([STEPS_P2], dtype=tl.float32)
    svec = tl.zeros([STEPS_P2], dtype=tl.float32)
    m0 = NEG_INF
    s0 = 0.0
    if COV:
        m0, s0, n_bad, n_valid = _cov_base_pass(phi_row, phi_stride_c, K, BLOCK, EVEN)
        mvec = put(mvec, steps, 0, m0)
        svec = put(svec, steps, 0, s0)
    best = tl.full([], NEG_INF, dtype=tl.float32)
    best_idx = tl.zeros([], dtype=tl.int64)
    m, s, flags, best, best_idx, xs = _first_pass(phi_row, phi_stride_c, x_row, seed, grow, coff,
                                                  coefs_ptr, K, n, m0, s0, best, best_idx, COV,
                                                  HARD, BLOCK, GROUPED, EVEN, RES)
    if not COV:
        n_bad, n_valid = flags_of_max(flags)
    mvec = put(mvec, steps, n - 1, safe_max(m))
    svec = put(svec, steps, n - 1, s)
    tl.debug_barrier()  # the next pass reads this pass's trajectory tiles
    for i in range(1, n - 1):
        m, s, best, best_idx, xs = _step_pass(phi_row, phi_stride_c, x_row, xs, seed, grow, coff,
                                              coefs_ptr, K, n, i, m0, s0, mvec, svec, steps,
                                              best, best_idx, COV, HARD, BLOCK, GROUPED, STRIDE,
                                              EVEN, RES)
        mvec = put(mvec, steps, n - 1 - i, safe_max(m))
        svec = put(svec, steps, n - 1 - i, s)
        tl.debug_barrier()
    poisoned = n_bad > 0
    empty = (n_valid == 0) & (n_bad == 0)
    m1 = pick(mvec, steps, 1)
    s1 = pick(svec, steps, 1)
    if WRITE_Y:  # output: the one-hot needs nothing; p_1 from x_1 (registers, then the scratch)
        lo: tl.constexpr = 0 if HARD else RES * BLOCK
        if not HARD:
            for t in tl.static_range(RES):
                cols = t * BLOCK + lanes
                y = _soft_y(phi_row, phi_stride_c, xs[t], cols, cols < K, coefs_ptr, m0, s0, m1,
                            s1, poisoned, empty, COV, True)
                store_tile(y_row + cols, y, cols < K, True)
        _write_y_range(y_row, phi_row, phi_stride_c, x_row, coefs_ptr, lanes, lo, K, best_idx, m0,
                       s0, m1, s1, poisoned, empty, COV, HARD, BLOCK, EVEN)
    tl.debug_barrier()  # the program's next row overwrites the scratch
    return mvec, svec, best_idx, poisoned, empty


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _diffusion_fwd_kernel(phi_ptr, seed_ptr, coefs_ptr, y_ptr, stats_ptr, index_ptr, scratch_ptr,
                          R, K, n, row_offset, col_offset, phi_stride_r, phi_stride_c,
                          COV: tl.constexpr, HARD: tl.constexpr, SINGLE: tl.constexpr,
                          BLOCK: tl.constexpr, STEPS_P2: tl.constexpr, GROUPED: tl.constexpr,
                          WRITE_Y: tl.constexpr = True, STRIDE: tl.constexpr = 1,
                          EVEN: tl.constexpr = False, RES: tl.constexpr = 0):
    """Forward of redge / redge_cov / redge_max (see module docstring); program ``pid`` takes the
    rows ``pid, pid + nprog, ...`` (tiled: with its trajectory scratch ``scratch[pid]``).

    phi [R, K] (strided, any float dtype), seed 0-dim int64, coefs [n, 5] -> y [R, K] contiguous,
    stats [R, n, 2] (m_k, s_k; slot 0 = softmax(phi) for COV, else (0, 0); s = NaN on poisoned
    rows), index [R] int64 (-1 on empty / poisoned rows); scratch float32 [nprog, K - RES BLOCK]
    (tiled only).
    Noise of (row, col): that of global row ``row + row_offset``, global column
    ``col + col_offset`` (``GROUPED``: the grouped noise form, ``col_offset`` a multiple of 4).
    ``WRITE_Y`` off: y is not written (stats and index only; sample-and-embed). ``EVEN`` (tiled
    path, K a multiple of BLOCK): the tiles load and store without masks. ``RES`` (tiled path,
    RES * BLOCK <= K): the trajectory of the first RES tiles stays in registers across the
    passes, only the rest goes through the scratch. Columns are int32
    offsets within a row (the launcher keeps (K - 1) |phi_stride_c| < 2^31).
    """
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    seed = tl.load(seed_ptr)
    coff = col_offset.to(tl.int64)
    steps = tl.arange(0, STEPS_P2)
    smask = steps < n
    # the scratch slot's columns: those past the resident tiles (x_row + col for col >= RES BLOCK)
    x_row = scratch_ptr + pid.to(tl.int64) * (K - RES * BLOCK) - RES * BLOCK
    for r in range(pid, R, nprog):
        row = r + tl.zeros([], dtype=tl.int64)  # int64 row offsets
        phi_row = phi_ptr + row * phi_stride_r
        y_row = y_ptr + row * K
        stats_row = stats_ptr + row * n * 2
        grow = row + row_offset
        if SINGLE:
            mvec, svec, best_idx, poisoned, empty = _fwd_single(
                phi_row, phi_stride_c, y_row, seed, grow, coff, coefs_ptr, K, n, COV, HARD, BLOCK,
                STEPS_P2, GROUPED, WRITE_Y)
        else:
            mvec, svec, best_idx, poisoned, empty = _fwd_tiled(
                phi_row, phi_stride_c, y_row, x_row, seed, grow, coff, coefs_ptr, K, n, COV, HARD,
                BLOCK, STEPS_P2, GROUPED, WRITE_Y, STRIDE, EVEN, RES)
        tl.store(stats_row + steps * 2, mvec, mask=smask)
        tl.store(stats_row + steps * 2 + 1, finish(svec, poisoned, False), mask=smask)
        tl.store(index_ptr + row, tl.where(poisoned | empty, -1, best_idx))


# ---- backward: the trajectory recomputed once per call into the program's scratch ------------
#
# Scratch slot of a program (float32, rows of ``W`` entries: W = BLOCK in the single-block path,
# W = K in the tiled path). Single-block: p_1 .. p_{n-1} (rows 0 .. n-2), COV also x_1 .. x_{n-1}
# (rows n-1 .. 2n-3). Tiled: row 0 gx, row 1 gphi, COV rows 2 gmu, 3 glam, 4 z, then
# p_1 .. p_{n-1} from row ``_p_row0`` and, COV, x_1 .. x_{n-1} after them.


@triton.jit
def _i64(v):
    """A runtime integer (or loop index) as int64, for scratch offsets."""
    return v + tl.zeros([], dtype=tl.int64)


@triton.jit
def _p_row0(SINGLE: tl.constexpr, COV: tl.constexpr):
    """First scratch row of p_1 (module comment above)."""
    return 0 if SINGLE else (5 if COV else 2)


@triton.jit
def _slot_rows(n, SINGLE: tl.constexpr, COV: tl.constexpr):
    """Scratch rows per program (``_launch`` allocates the same)."""
    return _p_row0(SINGLE, COV) + (n - 1) * (2 if COV else 1)


@triton.jit
def _walk(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, p_ptr, x_ptr, width, offs, cmask,
          COV: tl.constexpr):
    """The forward's chain from ``x0 = x_{n-1}`` with the saved stats, by the forward's own
    operations (so each p_k is bitwise the forward's): stores p_k (COV: also x_k) in row k - 1 of
    ``p_ptr`` (``x_ptr``), rows of ``width`` entries, at the columns ``offs``, for
    k = n-1 .. 1; n - 1 exps per element. Returns p_1."""
    x = x0
    p = tl.zeros_like(x0)
    for i in range(0, n - 1):
        k = n - 1 - i
        row = _i64(k - 1) * width
        l = _logits(phi, x, mu, lam, coefs_ptr, k, COV)
        p = probs(l, pick(mvec, steps, k), pick(svec, steps, k))
        tl.store(p_ptr + row + offs, p, mask=cmask)
        if COV:
            tl.store(x_ptr + row + offs, x, mask=cmask)
        x = coef_a(coefs_ptr, k) * p + coef_b(coefs_ptr, k) * x
    return p


@triton.jit
def _bwd_single(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_row, ws_row, seed, grow, coff, K,
                m0, s0, coefs_ptr, mvec, svec, steps, n, idx, g_idx, poisoned, empty,
                COV: tl.constexpr, MAX: tl.constexpr, BLOCK: tl.constexpr,
                GROUPED: tl.constexpr):
    """Path (a): one walk down the chain stores p_k (and x_k) in the scratch slot ``ws_row``
    (float32 [n-1 or 2(n-1), BLOCK], each thread reading back its own entries), then the backward
    steps k = 1 .. n-1 run on the row held in registers, one reduction d_k each."""
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    cmask = lanes < K
    phi = tl.load(phi_row + lanes * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
    g = tl.load(gy_row + lanes * gy_stride_c, mask=cmask, other=0.0).to(tl.float32)
    z = normal(seed, grow, coff, coff + lanes, BLOCK, GROUPED)
    x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
    x_ptr = ws_row + _i64(n - 1) * BLOCK
    _walk(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, ws_row, x_ptr, BLOCK, lanes, cmask,
          COV)
    tl.debug_barrier()
    gx = tl.zeros_like(g)
    gphi = tl.zeros_like(g)
    gmu = tl.zeros_like(g)
    glam = tl.zeros_like(g)
    for k in range(1, n):
        row = _i64(k - 1) * BLOCK
        p = tl.load(ws_row + row + lanes, mask=cmask, other=0.0)
        if COV:
            xk = tl.load(x_ptr + row + lanes, mask=cmask, other=0.0)
        else:
            xk = p
        gp = tl.where(k == 1, g, coef_a(coefs_ptr, k) * gx)
        d = tl.sum(gp * p, axis=0)
        gphi, gx, gmu, glam = _bwd_step(k, p, xk, gp, d, gphi, gx, gmu, glam, mu, lam,
                                        lanes == idx, g_idx, coefs_ptr, COV, MAX)
    if COV:
        gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
        gphi += mu * (gp0 - tl.sum(gp0 * mu, axis=0))
    tl.store(gphi_row + lanes, finish(gphi, poisoned, empty), mask=cmask)
    tl.debug_barrier()  # the program's next row overwrites the scratch


@triton.jit
def _tiled_walk(phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, seed, grow, coff, K, c0, c1,
                m0, s0, coefs_ptr, mvec, svec, steps, n, COV: tl.constexpr, BLOCK: tl.constexpr,
                GROUPED: tl.constexpr):
    """Pass 1 of path (b) on the columns ``[c0, c1)`` of a row of K (the scratch rows are K
    wide): per tile, z drawn (kept in the scratch for COV) and the chain walked once, storing
    p_k (and x_k); returns that range's part of d_1 = <g, p_1>."""
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    p_ptr = ws_row + _p_row0(False, COV) * K
    x_ptr = p_ptr + _i64(n - 1) * K
    acc = 0.0
    for start in range(c0, c1, BLOCK):
        cols = start + lanes
        cmask = cols < c1
        phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        g = tl.load(gy_row + cols * gy_stride_c, mask=cmask, other=0.0).to(tl.float32)
        z = normal(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
        if COV:
            tl.store(ws_row + 4 * K + cols, z, mask=cmask)
        x0, mu, lam, sv, q = _base(phi, z, m0, s0, COV)
        p1 = _walk(phi, x0, mu, lam, coefs_ptr, mvec, svec, steps, n, p_ptr, x_ptr, K, cols,
                   cmask, COV)
        acc += tl.sum(g * p1, axis=0)
    return acc


@triton.jit
def _tiled_step(phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, start, K, m0, s0, coefs_ptr,
                n, k, d, idx, g_idx, COV: tl.constexpr, MAX: tl.constexpr,
                BLOCK: tl.constexpr):
    """One tile of backward step k of path (b), its d_k reduced: p_k (COV: x_k, and mu, lam from
    phi) from the scratch, the carried (gx, gphi[, gmu, glam]) (zeros before step 1; g only for
    step 1). Returns ``(gphi, gx, gmu, glam, phi, mu, lam, cols, cmask)``."""
    lanes = tl.arange(0, BLOCK).to(tl.int64)
    cols = start + lanes
    cmask = cols < K
    p_ptr = ws_row + _p_row0(False, COV) * K
    row = _i64(k - 1) * K
    p = tl.load(p_ptr + row + cols, mask=cmask, other=0.0)
    first = (cols * 0 + k) == 1
    have = cmask & (~first)
    g = tl.load(gy_row + cols * gy_stride_c, mask=cmask & first, other=0.0).to(tl.float32)
    gx = tl.load(ws_row + cols, mask=have, other=0.0)
    gphi = tl.load(ws_row + K + cols, mask=have, other=0.0)
    if COV:
        phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
        mu, lam = _mu_lam(phi, m0, s0, COV)
        xk = tl.load(p_ptr + _i64(n - 1) * K + row + cols, mask=cmask, other=0.0)
        gmu = tl.load(ws_row + 2 * K + cols, mask=have, other=0.0)
        glam = tl.load(ws_row + 3 * K + cols, mask=have, other=0.0)
    else:
        phi = p
        mu = tl.zeros_like(p)
        lam = mu
        xk = p
        gmu = mu
        glam = mu
    gp = tl.where(first, g, coef_a(coefs_ptr, k) * gx)
    gphi, gx, gmu, glam = _bwd_step(k, p, xk, gp, d, gphi, gx, gmu, glam, mu, lam, cols == idx,
                                    g_idx, coefs_ptr, COV, MAX)
    return gphi, gx, gmu, glam, phi, mu, lam, cols, cmask


@triton.jit
def _store_carry(ws_row, K, cols, cmask, gphi, gx, gmu, glam, COV: tl.constexpr):
    tl.store(ws_row + cols, gx, mask=cmask)
    tl.store(ws_row + K + cols, gphi, mask=cmask)
    if COV:
        tl.store(ws_row + 2 * K + cols, gmu, mask=cmask)
        tl.store(ws_row + 3 * K + cols, glam, mask=cmask)


@triton.jit
def _bwd_tiled(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_row, ws_row, seed, grow, coff, K,
               m0, s0, coefs_ptr, mvec, svec, steps, n, idx, g_idx, poisoned, empty,
               COV: tl.constexpr, MAX: tl.constexpr, BLOCK: tl.constexpr,
               STEPS_P2: tl.constexpr, GROUPED: tl.constexpr):
    """Path (b), O(n) work per element: pass 1 walks the chain once and keeps p_k (and x_k, z) in
    the program's scratch ``ws_row`` (float32 [_slot_rows, K]) and reduces d_1; pass j = 2 .. n-1
    finishes step j-1 tile by tile from the scratch and reduces d_j; the last pass finishes step
    n-1 and writes gphi (COV: reduces d_0 = <gp_0, mu> and one more pass writes)."""
    dvec = put(tl.zeros([STEPS_P2], dtype=tl.float32), steps, 1,
               _tiled_walk(phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, seed, grow, coff,
                           K, 0, K, m0, s0, coefs_ptr, mvec, svec, steps, n, COV, BLOCK,
                           GROUPED))
    tl.debug_barrier()  # the next pass reads this pass's scratch tiles
    p_ptr = ws_row + _p_row0(False, COV) * K
    for j in range(2, n):
        acc = 0.0
        for start in range(0, K, BLOCK):
            gphi, gx, gmu, glam, phi, mu, lam, cols, cmask = _tiled_step(
                phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, start, K, m0, s0, coefs_ptr,
                n, j - 1, pick(dvec, steps, j - 1), idx, g_idx, COV, MAX, BLOCK)
            _store_carry(ws_row, K, cols, cmask, gphi, gx, gmu, glam, COV)
            pj = tl.load(p_ptr + _i64(j - 1) * K + cols, mask=cmask, other=0.0)
            acc += tl.sum((coef_a(coefs_ptr, j) * gx) * pj, axis=0)
        dvec = put(dvec, steps, j, acc)
        tl.debug_barrier()
    acc0 = 0.0
    for start in range(0, K, BLOCK):
        gphi, gx, gmu, glam, phi, mu, lam, cols, cmask = _tiled_step(
            phi_row, phi_stride_c, gy_row, gy_stride_c, ws_row, start, K, m0, s0, coefs_ptr, n,
            n - 1, pick(dvec, steps, n - 1), idx, g_idx, COV, MAX, BLOCK)
        if COV:
            z = tl.load(ws_row + 4 * K + cols, mask=cmask, other=0.0)
            lam, sv, q = _cov_v(mu)
            gp0 = _cov_base_grad(gx, gmu, glam, z, mu, lam, sv, q)
            acc0 += tl.sum(gp0 * mu, axis=0)
            tl.store(ws_row + cols, gp0, mask=cmask)
            tl.store(ws_row + K + cols, gphi, mask=cmask)
        else:
            tl.store(gphi_row + cols, finish(gphi, poisoned, empty), mask=cmask)
    if COV:
        tl.debug_barrier()
        lanes = tl.arange(0, BLOCK).to(tl.int64)
        for start in range(0, K, BLOCK):
            cols = start + lanes
            cmask = cols < K
            phi = tl.load(phi_row + cols * phi_stride_c, mask=cmask, other=NEG_INF).to(tl.float32)
            mu = probs(phi, m0, s0)
            gp0 = tl.load(ws_row + cols, mask=cmask, other=0.0)
            gphi = tl.load(ws_row + K + cols, mask=cmask, other=0.0) + mu * (gp0 - acc0)
            tl.store(gphi_row + cols, finish(gphi, poisoned, empty), mask=cmask)
    tl.debug_barrier()  # the program's next row overwrites the scratch


@triton.jit(do_not_specialize=["R", "n", "row_offset", "col_offset"])
def _diffusion_bwd_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, gphi_ptr,
                          scratch_ptr, R, K, n, row_offset, col_offset, phi_stride_r,
                          phi_stride_c, gy_stride_r, gy_stride_c, COV: tl.constexpr,
                          MAX: tl.constexpr, SINGLE: tl.constexpr, BLOCK: tl.constexpr,
                          STEPS_P2: tl.constexpr, GROUPED: tl.constexpr):
    """Backward of redge / redge_cov / redge_max (see module docstring); a persistent program
    ``pid`` takes the rows ``pid, pid + nprog, ...`` with its scratch slot ``scratch[pid]``
    (float32 [_slot_rows(n), BLOCK] single-block, [_slot_rows(n), K] tiled).

    grad_y [R, K] (strided), phi, seed, coefs, stats [R, n, 2] and index [R] from the forward
    -> grad_phi [R, K] contiguous (0 on empty rows, NaN on poisoned rows). Draws stream 0 only.
    """
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    seed = tl.load(seed_ptr)
    coff = col_offset.to(tl.int64)
    steps = tl.arange(0, STEPS_P2)
    smask = steps < n
    width = BLOCK if SINGLE else K
    ws_row = scratch_ptr + pid.to(tl.int64) * _slot_rows(n, SINGLE, COV) * width
    for r in range(pid, R, nprog):
        row = r + tl.zeros([], dtype=tl.int64)  # int64 row offsets
        phi_row = phi_ptr + row * phi_stride_r
        gy_row = gy_ptr + row * gy_stride_r
        gphi_row = gphi_ptr + row * K
        stats_row = stats_ptr + row * n * 2
        grow = row + row_offset
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
        if SINGLE:
            _bwd_single(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_row, ws_row, seed, grow,
                        coff, K, m0, s0, coefs_ptr, mvec, svec, steps, n, idx, g_idx, poisoned,
                        empty, COV, MAX, BLOCK, GROUPED)
        else:
            _bwd_tiled(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_row, ws_row, seed, grow,
                       coff, K, m0, s0, coefs_ptr, mvec, svec, steps, n, idx, g_idx, poisoned,
                       empty, COV, MAX, BLOCK, STEPS_P2, GROUPED)
