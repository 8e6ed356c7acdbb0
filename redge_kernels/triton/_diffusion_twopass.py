"""The backward of ReDGE, ReDGE-Cov and ReDGE-Max (docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max")
for tiled rows in two passes over the row, with no scratch: the n - 1 row reductions d_k of the
SPEC's recursion are solved from sums that one pass gathers, so the second pass writes gphi
directly.

With p_k (the forward's softmax of step k, from the saved stats) and, for k >= 2,

    f_k = c_k a_k p_k + b_k,    e_1 = c_1 p_1 (g - d_1),    e_k = -c_k p_k d_k,

the SPEC's gx after step k is gx^(k) = sum_{i <= k} e_i prod_{l = i+1 .. k} f_l, elementwise and
linear in g and the d's. So its reductions d_k = a_k <gx^(k-1), p_k> satisfy, for k = 2 .. n-1,

    d_1 = <g, p_1>,   d_k = a_k (c_1 U_k - sum_{i < k} c_i d_i T_{k,i}),
    T_{k,i} = sum_j p_k p_i prod_{l = i+1 .. k-1} f_l,
    U_k = sum_j p_k p_1 g prod_{l = 2 .. k-1} f_l,

whose (n - 1)(n - 2) / 2 + n - 1 sums do not depend on the d's (every term of T is >= 0: a, b, c
>= 0). Pass A walks the chain down from x_{n-1} = z (the forward's own operations, so each p_k is
bitwise the forward's) and gathers them: at step l each open product Q_k = p_k prod f (k > l) adds
Q_k p_l to T_{k,l}, then takes the factor f_l. The d's are then solved per row (forward
substitution, on scalars). Pass B walks the chain down again with the d's known:

    gphi = r'_1 + sum_{i=1..n-2} e_i V_i - sum_{k >= 2} p_k d_k,
    V_{n-1} = 0,  V_{i-1} = a_i p_i + f_i V_i
    (V_i = sum_{k > i} a_k p_k prod_{l = i+1 .. k-1} f_l),

with r'_1 = r_1 = p_1 (g - d_1) for ReDGE and ReinMax's 1/2 (r_1 + <g, D> D), D = one_hot - p_1,
<g, D> = g_i - d_1, for ReDGE-Max (whose path into x_1 keeps e_1). Both passes take g relative to
g_i, its value at the sampled index i (-> g - g_i): the gradient does not change (it sees g only
through r_1, and sum p_1 = 1), and where c_1 is large and p_1 one-hot in float32 the sums then
give d = 0 and gphi = 0 exactly, as the SPEC's recursion does (with g itself, c_1 (U_k - d_1
T_{k,1}) would leave ~c_1 2^-24 |g| of rounding). Both passes read phi and g and
draw z; O(n) work per element in pass B, O(n^2) multiply-adds in pass A. The sums are kept per
thread over its column groups of four (``_dot4``) and reduced once per row.

ReDGE-Cov (``COV``) writes l_k = phi + c_k lam (x_k - shift_k), shift_k = sigma_k mu + alpha_k / 2,
mu = softmax(phi), lam = 1 / max(mu (1 - mu), V_MIN): the same recursion with c_k lam in place of
c_k (f_k = c_k lam a_k p_k + b_k, T and U with lam p_i), plus the path through mu. With
lm = [q >= V_MIN] (1 - 2 mu) lam^2, h = 1 + [q >= V_MIN] (1 - 2 mu) z / (2 sqrt(v)) (the
derivative of x_{n-1} = mu + sqrt(v) z w.r.t. mu, v from the clamped q), and

    psi_k = -c_k (sigma_k lam + lm (x_k - shift_k)),
    rho_k = p_k (c_k lam (Vpsi_k + h W_k) + psi_k),
    Vpsi_{n-1} = 0, Vpsi_{k-1} = psi_k a_k p_k + f_k Vpsi_k,  W_{n-1} = 1, W_{k-1} = f_k W_k,

the gradient w.r.t. mu is gp = g rho_1 - sum_k d_k rho_k, and gphi gains its softmax backward
mu (gp - d_0), d_0 = <gp, mu>. d_0 is linear in the d's too: pass A also gathers
A_0 = <g rho_1, mu> and B_k = <rho_k, mu>, so d_0 = A_0 - sum_k d_k B_k: n(n-1)/2 + n sums
(``_n_sums``).

``N`` (n_steps) is a constexpr: the chain is unrolled and the sums are register tuples, so the
launcher takes this path for n <= ``_launch.twopass_max_steps(cov)`` only (12; ReDGE-Cov 11).

Few long rows (``_launch.split_plan``) split into vocabulary chunks on a (row, chunk) grid:
``_twopass_part_kernel`` runs pass A on its chunk and stores the chunk's sums,
``_twopass_out_kernel`` adds them over the row's chunks (in chunk order: every chunk's program
gets the same d's), solves and runs pass B on its chunk.
"""

import triton
import triton.language as tl

from ._common import (NEG_INF, coef_a, coef_alpha, coef_b, coef_c, coef_sigma, div_normal, finish,
                      load_tile, probs, store_tile)
from ._diffusion import V_MIN, _base, _logits_of
from ._noise import normal


@triton.constexpr_function
def _tri(k, i):
    """Position of T_{k,i} (1 <= i < k <= n-1) in the flat tuple of the triangle."""
    return (k - 1) * (k - 2) // 2 + (i - 1)


@triton.jit
def _set(t, i: tl.constexpr, v):
    """The tuple ``t`` with entry ``i`` replaced by ``v``."""
    return t[:i] + (v,) + t[i + 1:]


@triton.jit
def _quads(v):
    """``[B]`` -> the four ``[B // 4]`` tensors v[4j], v[4j + 1], v[4j + 2], v[4j + 3] (a
    relabelling of each thread's four consecutive entries)."""
    e, o = tl.split(tl.reshape(v, [v.shape[0] // 4, 2, 2]))
    e0, e2 = tl.split(e)
    o1, o3 = tl.split(o)
    return e0, o1, e2, o3


@triton.jit
def _dot4(acc, a, b):
    """``acc[j] + sum_i a[4j + i] b[4j + i]`` (``acc`` [B // 4], ``a``, ``b`` [B]): four FMAs."""
    a0, a1, a2, a3 = _quads(a)
    b0, b1, b2, b3 = _quads(b)
    return tl.fma(a3, b3, tl.fma(a2, b2, tl.fma(a1, b1, tl.fma(a0, b0, acc))))


@triton.jit
def _sum4(acc, a):
    """``acc[j] + sum_i a[4j + i]``."""
    a0, a1, a2, a3 = _quads(a)
    return acc + a0 + a1 + a2 + a3


@triton.constexpr_function
def _n_sums(n, cov):
    """Number of the row's sums: d_1, U_2 .. U_{n-1}, the triangle T (n (n - 1) / 2 in all);
    ReDGE-Cov also A_0, B_1 .. B_{n-1}."""
    return n * (n - 1) // 2 + (n if cov else 0)


@triton.jit
def _cov_tile(phi, z, m0, s0):
    """ReDGE-Cov's per-entry values of a tile: ``(x_{n-1}, (mu, lam, lm, h))``, with
    lm = [q >= V_MIN] (1 - 2 mu) lam^2 and h = 1 + [q >= V_MIN] (1 - 2 mu) z / (2 sqrt(v))
    (q = mu (1 - mu); the clamp passes the gradient where q >= V_MIN, as ``_cov_base_grad``)."""
    x, mu, lam, sv, q = _base(phi, z, m0, s0, True)
    keep = q >= V_MIN
    slope = 1.0 - 2.0 * mu
    lm = tl.where(keep, slope * (lam * lam), 0.0)
    h = 1.0 + tl.where(keep, slope * div_normal(0.5 * z, sv), 0.0)
    return x, (mu, lam, lm, h)


@triton.jit
def _p(phi, x, cv, sc, L: tl.constexpr, COV: tl.constexpr):
    """p_L = softmax(l_L) from the saved stats, l_L by the forward's ``_logits_of``:
    phi + c_L x_L, ReDGE-Cov phi + (c_L lam) (x_L - (sigma_L mu + alpha_L / 2))."""
    cs, as_, bs, ms, ss, sg, al = sc
    if COV:
        l = _logits_of(phi, x, cv[0], cv[1], cs[L - 1], sg[L - 1], al[L - 1], COV)
    else:
        l = _logits_of(phi, x, x, x, cs[L - 1], 0.0, 0.0, COV)
    return probs(l, ms[L - 1], ss[L - 1])


@triton.jit
def _pe(p, cv, COV: tl.constexpr):
    """The factor of e_k and f_k beside c_k: p_k, ReDGE-Cov lam p_k."""
    if COV:
        return cv[1] * p
    else:
        return p


@triton.jit
def _cov_rho(p, x, cv, vpsi, w, sc, L: tl.constexpr):
    """ReDGE-Cov, step L: ``(psi_L, rho_L)``, psi_L = -c_L (sigma_L lam + lm (x_L - shift_L)) the
    weight of r_L in the gradient w.r.t. mu (through lam and mu in l_L), rho_L = p_L (c_L lam
    (Vpsi_L + h W_L) + psi_L)."""
    cs, as_, bs, ms, ss, sg, al = sc
    mu, lam, lm, h = cv
    shift = sg[L - 1] * mu + 0.5 * al[L - 1]
    psi = -cs[L - 1] * (sg[L - 1] * lam + lm * (x - shift))
    rho = p * ((cs[L - 1] * lam) * (vpsi + h * w) + psi)
    return psi, rho


@triton.jit
def _gather_step(phi, g, x, cv, Q, T, U, d1, cst, sc, L: tl.constexpr, N: tl.constexpr,
                 COV: tl.constexpr):
    """Pass A, chain step L on a tile: p_L; T_{k,L} += Q_k p_L (ReDGE-Cov: lam p_L) for the open
    k > L (``Q[q]`` is Q_{N-1-q}); L = 1: also U_k += Q_k p_1 g (lam p_1 g) and d_1 += g p_1;
    L > 1: Q_k *= f_L, Q_L = p_L, x_{L-1} = a_L p_L + b_L x_L. ReDGE-Cov (``cst`` = (Vpsi, W,
    B, A_0)): B_L += mu rho_L, L = 1: A_0 += mu g rho_1; L > 1: Vpsi <- psi_L a_L p_L + f_L Vpsi,
    W <- f_L W. Returns ``(x, Q, T, U, d1, cst)``."""
    cs, as_, bs, ms, ss, sg, al = sc
    p = _p(phi, x, cv, sc, L, COV)
    pe = _pe(p, cv, COV)
    for q in tl.static_range(N - 1 - L):
        if L == 1:
            t = Q[q] * pe
            T = _set(T, _tri(N - 1 - q, L), _sum4(T[_tri(N - 1 - q, L)], t))
            U = _set(U, N - 3 - q, _dot4(U[N - 3 - q], t, g))
        else:
            T = _set(T, _tri(N - 1 - q, L), _dot4(T[_tri(N - 1 - q, L)], Q[q], pe))
    f = (cs[L - 1] * as_[L - 1]) * pe + bs[L - 1]
    if COV:
        vpsi, w, B, a0 = cst
        psi, rho = _cov_rho(p, x, cv, vpsi, w, sc, L)
        B = _set(B, L - 1, _dot4(B[L - 1], cv[0], rho))
        if L == 1:
            a0 = _dot4(a0, cv[0] * g, rho)
        else:
            vpsi = (psi * as_[L - 1]) * p + f * vpsi
            w = f * w
        cst = (vpsi, w, B, a0)
    if L > 1:
        grown = ()
        for q in tl.static_range(N - 1 - L):
            grown = grown + (Q[q] * f,)
        Q = grown + (p,)
        x = as_[L - 1] * p + bs[L - 1] * x
    else:
        d1 = _dot4(d1, g, p)
    return x, Q, T, U, d1, cst


@triton.jit
def _grad_step(phi, g, x, cv, V, acc, cst, sc, ds, is_idx, L: tl.constexpr, MAX: tl.constexpr,
               COV: tl.constexpr):
    """Pass B, chain step L on a tile (``V`` = V_L, ``acc`` the part of gphi so far): L > 1:
    acc += e_L V_L - p_L d_L, V_{L-1} = a_L p_L + f_L V_L, x_{L-1}; L = 1: acc += e_1 V_1 + r'_1.
    ReDGE-Cov (``cst`` = (Vpsi, W, gp)): gp -= d_L rho_L, L = 1: gp += g rho_1, and Vpsi, W as in
    pass A. Returns ``(x, V, acc, cst)``."""
    cs, as_, bs, ms, ss, sg, al = sc
    p = _p(phi, x, cv, sc, L, COV)
    pe = _pe(p, cv, COV)
    f = (cs[L - 1] * as_[L - 1]) * pe + bs[L - 1]
    if COV:
        vpsi, w, gp = cst
        psi, rho = _cov_rho(p, x, cv, vpsi, w, sc, L)
        gp -= ds[L - 1] * rho
        if L == 1:
            gp += g * rho
        else:
            vpsi = (psi * as_[L - 1]) * p + f * vpsi
            w = f * w
        cst = (vpsi, w, gp)
        cl = cs[L - 1] * cv[1]
    else:
        cl = cs[L - 1]
    if L > 1:
        acc -= (p * ds[L - 1]) * (cl * V + 1.0)
        V = as_[L - 1] * p + f * V
        x = as_[L - 1] * p + bs[L - 1] * x
    else:
        r = p * (g - ds[0])
        acc += (cl * V) * r
        if MAX:
            # <g, D> = g_i - d_1, with g relative to g_i: -d_1
            acc += 0.5 * r - 0.5 * ds[0] * (is_idx.to(tl.float32) - p)
        else:
            acc += r
    return x, V, acc, cst


@triton.jit
def _zeros_tuple(n: tl.constexpr, B: tl.constexpr):
    out = ()
    for _ in tl.static_range(n):
        out = out + (tl.zeros([B], dtype=tl.float32),)
    return out


@triton.jit
def _solve(sums, cs, as_, N: tl.constexpr, COV: tl.constexpr):
    """The row's ``((d_1, ..., d_{N-1}), d_0)`` from its sums (``_gather`` order), by forward
    substitution; ReDGE-Cov d_0 = <gp, mu> = A_0 - sum_k d_k B_k (else 0)."""
    ds = (sums[0],)
    for k in tl.static_range(2, N):
        dk = cs[0] * sums[k - 1]
        for i in tl.static_range(1, k):
            dk -= (cs[i - 1] * ds[i - 1]) * sums[N - 1 + _tri(k, i)]
        ds = ds + (as_[k - 1] * dk,)
    d0 = 0.0
    if COV:
        d0 = sums[_n_sums(N, False)]
        for k in tl.static_range(1, N):
            d0 -= ds[k - 1] * sums[_n_sums(N, False) + k]
    return ds, d0


@triton.jit
def _tile(phi_row, phi_stride_c, gy_row, gy_stride_c, g_shift, seed, grow, coff, start, lanes,
          c1, m0, s0, BLOCK: tl.constexpr, GROUPED: tl.constexpr, COV: tl.constexpr,
          EVEN: tl.constexpr):
    """``(phi, g - g_shift, x_{n-1}, cv, cols, cmask)`` of the tile of columns ``start + lanes``
    below ``c1`` (float32; ``cv`` ReDGE-Cov's ``_cov_tile`` values, else zeros); ``EVEN``: the
    tile is full (no masks)."""
    cols = start + lanes
    cmask = cols < c1
    phi = load_tile(phi_row + cols * phi_stride_c, cmask, NEG_INF, EVEN).to(tl.float32)
    g = load_tile(gy_row + cols * gy_stride_c, cmask, 0.0, EVEN).to(tl.float32) - g_shift
    z = normal(seed, grow, coff + start, coff + cols, BLOCK, GROUPED)
    if COV:
        x, cv = _cov_tile(phi, z, m0, s0)
    else:
        x = z
        cv = (z, z, z, z)
    return phi, g, x, cv, cols, cmask


@triton.jit
def _row(gy_ptr, phi_ptr, coefs_ptr, stats_ptr, index_ptr, row, phi_stride_r, gy_stride_r,
         gy_stride_c, N: tl.constexpr):
    """Row ``row``'s pointers, flags and per-step scalars: ``(phi_row, gy_row, idx, poisoned,
    empty, g_idx, m0, s0, sc)``, sc = ((c_k), (a_k), (b_k), (m_k), (s_k), (sigma_k), (alpha_k))
    for k = 1 .. N-1, (m0, s0) the stats of slot 0 (ReDGE-Cov: softmax(phi))."""
    phi_row = phi_ptr + row * phi_stride_r
    gy_row = gy_ptr + row * gy_stride_r
    stats_row = stats_ptr + row * N * 2
    idx = tl.load(index_ptr + row)
    s1 = tl.load(stats_row + 3).to(tl.float32)
    poisoned = (idx < 0) & (s1 != s1)
    empty = (idx < 0) & (s1 == s1)
    g_idx = tl.load(gy_row + tl.maximum(idx, 0) * gy_stride_c, mask=idx >= 0,
                    other=0.0).to(tl.float32)
    m0 = tl.load(stats_row).to(tl.float32)
    s0 = tl.load(stats_row + 1).to(tl.float32)
    cs = ()
    as_ = ()
    bs = ()
    ms = ()
    ss = ()
    sg = ()
    al = ()
    for i in tl.static_range(1, N):
        cs = cs + (coef_c(coefs_ptr, i),)
        as_ = as_ + (coef_a(coefs_ptr, i),)
        bs = bs + (coef_b(coefs_ptr, i),)
        sg = sg + (coef_sigma(coefs_ptr, i),)
        al = al + (coef_alpha(coefs_ptr, i),)
        ms = ms + (tl.load(stats_row + 2 * i).to(tl.float32),)
        ss = ss + (tl.load(stats_row + 2 * i + 1).to(tl.float32),)
    return phi_row, gy_row, idx, poisoned, empty, g_idx, m0, s0, (cs, as_, bs, ms, ss, sg, al)


@triton.jit
def _gather(phi_row, phi_stride_c, gy_row, gy_stride_c, g_idx, seed, grow, coff, c0, c1, m0, s0,
            sc, N: tl.constexpr, COV: tl.constexpr, BLOCK: tl.constexpr,
            GROUPED: tl.constexpr, EVEN: tl.constexpr):
    """Pass A on the columns ``[c0, c1)``: their part of the row's sums, the flat tuple of
    scalars ``(d_1, U_2 .. U_{N-1}, T in _tri order)``, ReDGE-Cov then ``(A_0, B_1 .. B_{N-1})``
    (``_n_sums``)."""
    lanes = tl.arange(0, BLOCK)
    T = _zeros_tuple((N - 1) * (N - 2) // 2, BLOCK // 4)
    U = _zeros_tuple(N - 2, BLOCK // 4)
    d1 = tl.zeros([BLOCK // 4], dtype=tl.float32)
    B = _zeros_tuple(N - 1 if COV else 0, BLOCK // 4)
    a0 = tl.zeros([BLOCK // 4], dtype=tl.float32)
    for start in range(c0, c1, BLOCK):
        phi, g, x, cv, cols, cmask = _tile(phi_row, phi_stride_c, gy_row, gy_stride_c, g_idx,
                                           seed, grow, coff, start, lanes, c1, m0, s0, BLOCK,
                                           GROUPED, COV, EVEN)
        Q = ()
        cst = (tl.zeros_like(x), tl.full(x.shape, 1.0, tl.float32), B, a0)
        for i in tl.static_range(N - 1):
            x, Q, T, U, d1, cst = _gather_step(phi, g, x, cv, Q, T, U, d1, cst, sc, N - 1 - i,
                                               N, COV)
        B = cst[2]
        a0 = cst[3]
    out = (tl.sum(d1, axis=0),)
    for i in tl.static_range(N - 2):
        out = out + (tl.sum(U[i], axis=0),)
    for i in tl.static_range((N - 1) * (N - 2) // 2):
        out = out + (tl.sum(T[i], axis=0),)
    if COV:
        out = out + (tl.sum(a0, axis=0),)
        for i in tl.static_range(N - 1):
            out = out + (tl.sum(B[i], axis=0),)
    return out


@triton.jit
def _write_gphi(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_row, g_idx, seed, grow, coff,
                c0, c1, m0, s0, sc, ds, d0, idx, poisoned, empty, N: tl.constexpr,
                MAX: tl.constexpr, COV: tl.constexpr, BLOCK: tl.constexpr,
                GROUPED: tl.constexpr, EVEN: tl.constexpr):
    """Pass B on the columns ``[c0, c1)``: gphi from the row's d's (ReDGE-Cov: + mu (gp - d_0))."""
    lanes = tl.arange(0, BLOCK)
    for start in range(c0, c1, BLOCK):
        phi, g, x, cv, cols, cmask = _tile(phi_row, phi_stride_c, gy_row, gy_stride_c, g_idx,
                                           seed, grow, coff, start, lanes, c1, m0, s0, BLOCK,
                                           GROUPED, COV, EVEN)
        V = tl.zeros_like(x)
        acc = tl.zeros_like(x)
        cst = (tl.zeros_like(x), tl.full(x.shape, 1.0, tl.float32), tl.zeros_like(x))
        for i in tl.static_range(N - 1):
            x, V, acc, cst = _grad_step(phi, g, x, cv, V, acc, cst, sc, ds, cols == idx,
                                        N - 1 - i, MAX, COV)
        if COV:
            acc += cv[0] * (cst[2] - d0)
        store_tile(gphi_row + cols, finish(acc, poisoned, empty), cmask, EVEN)


@triton.jit(do_not_specialize=["row_offset", "col_offset"])
def _twopass_bwd_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, gphi_ptr,
                        K, row_offset, col_offset, phi_stride_r, phi_stride_c, gy_stride_r,
                        gy_stride_c, N: tl.constexpr, MAX: tl.constexpr, COV: tl.constexpr,
                        BLOCK: tl.constexpr, GROUPED: tl.constexpr, EVEN: tl.constexpr = False):
    """Backward of redge / redge_max (``MAX``) / redge_cov (``COV``) for n = ``N`` steps, one
    program per row (module docstring).

    grad_y [R, K] (strided), phi [R, K] (strided, any float dtype), seed 0-dim int64, coefs
    [N, 5], stats [R, N, 2] and index [R] int64 from the forward -> grad_phi [R, K] contiguous
    (0 on empty rows, NaN on poisoned rows). Draws stream 0 only (z of global row
    ``row + row_offset``, global column ``col + col_offset``; ``GROUPED`` as in ``_noise``).
    ``EVEN``: K a multiple of BLOCK (tiles without masks); int32 column offsets within a row.
    """
    row = tl.program_id(0).to(tl.int64)
    seed = tl.load(seed_ptr)
    coff = col_offset.to(tl.int64)
    grow = row + row_offset
    phi_row, gy_row, idx, poisoned, empty, g_idx, m0, s0, sc = _row(
        gy_ptr, phi_ptr, coefs_ptr, stats_ptr, index_ptr, row, phi_stride_r, gy_stride_r,
        gy_stride_c, N)
    sums = _gather(phi_row, phi_stride_c, gy_row, gy_stride_c, g_idx, seed, grow, coff, 0, K, m0,
                   s0, sc, N, COV, BLOCK, GROUPED, EVEN)
    ds, d0 = _solve(sums, sc[0], sc[1], N, COV)
    _write_gphi(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_ptr + row * K, g_idx, seed,
                grow, coff, 0, K, m0, s0, sc, ds, d0, idx, poisoned, empty, N, MAX, COV, BLOCK,
                GROUPED, EVEN)


# ---- rows split into vocabulary chunks (few long rows; _launch.split_plan) -------------------
#
# Partials: part [R, C, _n_sums(N, COV)] float32, chunk c's part of each of the row's sums
# (``_gather`` order); the second kernel adds them over the chunks and solves the d's.

@triton.jit
def _chunk_row(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, K, CHUNK,
               phi_stride_r, gy_stride_r, gy_stride_c, N: tl.constexpr):
    """The (row, chunk) program's row ``program_id(0)``, chunk ``program_id(1)`` with its columns
    ``[c0, c1)``, the seed and ``_row``'s values: ``(row, chunk, c0, c1, seed, *_row(...))``."""
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    c0 = chunk * CHUNK
    c1 = tl.minimum(K, c0 + CHUNK)
    seed = tl.load(seed_ptr)
    phi_row, gy_row, idx, poisoned, empty, g_idx, m0, s0, sc = _row(
        gy_ptr, phi_ptr, coefs_ptr, stats_ptr, index_ptr, row, phi_stride_r, gy_stride_r,
        gy_stride_c, N)
    return row, chunk, c0, c1, seed, phi_row, gy_row, idx, poisoned, empty, g_idx, m0, s0, sc


@triton.jit(do_not_specialize=["row_offset", "col_offset"])
def _twopass_part_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, part_ptr,
                         K, CHUNK, n_chunks, row_offset, col_offset, phi_stride_r, phi_stride_c,
                         gy_stride_r, gy_stride_c, N: tl.constexpr, COV: tl.constexpr,
                         BLOCK: tl.constexpr, GROUPED: tl.constexpr, EVEN: tl.constexpr = False):
    """Pass A of ``_twopass_bwd_kernel`` on chunk ``program_id(1)`` (columns
    ``[c * CHUNK, (c + 1) * CHUNK)``) of row ``program_id(0)``: its sums into ``part[row, c]``."""
    row, chunk, c0, c1, seed, phi_row, gy_row, idx, poisoned, empty, g_idx, m0, s0, sc = \
        _chunk_row(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, K, CHUNK,
                   phi_stride_r, gy_stride_r, gy_stride_c, N)
    sums = _gather(phi_row, phi_stride_c, gy_row, gy_stride_c, g_idx, seed, row + row_offset,
                   col_offset.to(tl.int64), c0, c1, m0, s0, sc, N, COV, BLOCK, GROUPED, EVEN)
    base = part_ptr + (row * n_chunks + chunk) * _n_sums(N, COV)
    for i in tl.static_range(_n_sums(N, COV)):
        tl.store(base + i, sums[i])


@triton.jit(do_not_specialize=["row_offset", "col_offset"])
def _twopass_out_kernel(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, part_ptr,
                        gphi_ptr, K, CHUNK, n_chunks, row_offset, col_offset, phi_stride_r,
                        phi_stride_c, gy_stride_r, gy_stride_c, N: tl.constexpr,
                        MAX: tl.constexpr, COV: tl.constexpr, CHUNKS_P2: tl.constexpr,
                        BLOCK: tl.constexpr, GROUPED: tl.constexpr, EVEN: tl.constexpr = False):
    """Pass B of ``_twopass_bwd_kernel`` on chunk ``program_id(1)`` of row ``program_id(0)``,
    the row's sums added over its chunks' partials (one ``[CHUNKS_P2]`` reduction each, the same
    on every chunk's program) -> ``grad_phi`` on the chunk."""
    row, chunk, c0, c1, seed, phi_row, gy_row, idx, poisoned, empty, g_idx, m0, s0, sc = \
        _chunk_row(gy_ptr, phi_ptr, seed_ptr, coefs_ptr, stats_ptr, index_ptr, K, CHUNK,
                   phi_stride_r, gy_stride_r, gy_stride_c, N)
    ch = tl.arange(0, CHUNKS_P2).to(tl.int64)
    at = part_ptr + (row * n_chunks + ch) * _n_sums(N, COV)
    sums = ()
    for i in tl.static_range(_n_sums(N, COV)):
        sums = sums + (tl.sum(tl.load(at + i, mask=ch < n_chunks, other=0.0), axis=0),)
    ds, d0 = _solve(sums, sc[0], sc[1], N, COV)
    _write_gphi(phi_row, phi_stride_c, gy_row, gy_stride_c, gphi_ptr + row * K, g_idx, seed,
                row + row_offset, col_offset.to(tl.int64), c0, c1, m0, s0, sc, ds, d0, idx,
                poisoned, empty, N, MAX, COV, BLOCK, GROUPED, EVEN)
