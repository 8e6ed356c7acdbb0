"""Small @triton.jit helpers shared by both kernel families (row statistics, softmax from stats,
row flags, per-step scalars). All math is float32."""

import triton
import triton.language as tl

from .._constants import COEF_A, COEF_ALPHA, COEF_B, COEF_C, COEF_SIGMA

_COEF_C: tl.constexpr = tl.constexpr(COEF_C)
_COEF_A: tl.constexpr = tl.constexpr(COEF_A)
_COEF_B: tl.constexpr = tl.constexpr(COEF_B)
_COEF_ALPHA: tl.constexpr = tl.constexpr(COEF_ALPHA)
_COEF_SIGMA: tl.constexpr = tl.constexpr(COEF_SIGMA)
NEG_INF: tl.constexpr = tl.constexpr(float("-inf"))
POS_INF: tl.constexpr = tl.constexpr(float("inf"))


#: log2(e) rounded to float32 (the factor ``tl.exp`` itself applies).
_LOG2E: tl.constexpr = tl.constexpr(float.fromhex("0x1.715476p+0"))


@triton.jit
def exp(x):
    """e^x of float32 ``x`` as 2^(x log2 e) on the SFU (one multiply and ``MUFU.EX2``). ``tl.exp``
    lowers to PTX ``ex2.approx.f32``, which keeps results below 2^-126 subnormal by evaluating
    (2^(y/2))^2: three instructions more per entry (SASS, sm_90). Here such results are 0, an
    absolute difference under 1.2e-38; every other value is the same approximation of the same
    argument (the exps of the kernels are softmax entries and row sums: e^(l - m) <= 1)."""
    return tl.exp2(x * _LOG2E)


@triton.jit
def nan_like(v):
    """A float32 quiet NaN broadcast like ``v`` (built by bitcast: a NaN constexpr global would
    fail Triton's global-consistency check, as nan != nan)."""
    return tl.full(v.shape, 0x7FC00000, tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def finish(v, poisoned, empty):
    """Row conventions (ops.py): NaN on a poisoned row, 0 on an empty row."""
    return tl.where(poisoned, nan_like(v), tl.where(empty, 0.0, v))


@triton.jit
def one_hot_tile(lanes, start, idx, poisoned, empty, BLOCK: tl.constexpr, DTYPE: tl.constexpr):
    """``finish(one_hot(idx))`` on a tile of row columns ``start + lanes`` (``lanes`` int32 in
    [0, BLOCK), any shape broadcasting with ``idx``, ``poisoned``, ``empty``), in ``DTYPE`` (the
    output's, so that the store converts nothing): one int32 compare and one select per entry
    between the row's finished hot and cold values. ``idx - start`` is clamped into [-1, BLOCK]
    before the narrowing, so that an index outside the tile (or -1) matches no lane."""
    nan = tl.full([], 0x7FC00000, tl.int32).to(tl.float32, bitcast=True)
    hot = tl.where(poisoned, nan, tl.where(empty, 0.0, 1.0)).to(DTYPE)
    cold = tl.where(poisoned, nan, 0.0).to(DTYPE)
    t = tl.minimum(tl.maximum(idx - start, -1), BLOCK).to(tl.int32)
    return tl.where(lanes == t, hot, cold)


@triton.jit
def load_tile(ptrs, cmask, other, EVEN: tl.constexpr):
    """A tile of a row: unmasked when ``EVEN`` (K a multiple of BLOCK: every tile is full, no
    predicate and no ``other`` fill), else ``other`` where ``cmask`` is off."""
    if EVEN:
        v = tl.load(ptrs)
    else:
        v = tl.load(ptrs, mask=cmask, other=other)
    return v


@triton.jit
def store_tile(ptrs, v, cmask, EVEN: tl.constexpr):
    """Store a tile of a row (``load_tile``'s masking)."""
    if EVEN:
        tl.store(ptrs, v)
    else:
        tl.store(ptrs, v, mask=cmask)


@triton.jit
def coef(coefs_ptr, k, col):
    """``coefs[k, col]`` (the [n, 5] table is contiguous) as float32."""
    return tl.load(coefs_ptr + k * 5 + col).to(tl.float32)


@triton.jit
def coef_c(coefs_ptr, k):
    return coef(coefs_ptr, k, _COEF_C)


@triton.jit
def coef_a(coefs_ptr, k):
    return coef(coefs_ptr, k, _COEF_A)


@triton.jit
def coef_b(coefs_ptr, k):
    return coef(coefs_ptr, k, _COEF_B)


@triton.jit
def coef_alpha(coefs_ptr, k):
    return coef(coefs_ptr, k, _COEF_ALPHA)


@triton.jit
def coef_sigma(coefs_ptr, k):
    return coef(coefs_ptr, k, _COEF_SIGMA)


@triton.jit
def safe_max(m):
    """The max a masked softmax subtracts: 0 for an all ``-inf`` row (reference.masked_softmax)."""
    return tl.where(m == NEG_INF, 0.0, m)


@triton.jit
def row_stats(l):
    """``(m, s)`` of a whole row held in one block: ``m`` = safe row max, ``s = sum exp(l - m)``."""
    m = safe_max(tl.max(l, axis=0))
    s = tl.sum(exp(l - m), axis=0)
    return m, s


@triton.jit
def online_stats(m_raw, s, l):
    """Fold one tile ``l`` into the running ``(m_raw, s)`` (online softmax). ``m_raw`` is the true
    running max (``-inf`` until a finite logit is seen); the shift used is ``safe_max(m_raw)``, so
    ``s`` is relative to ``safe_max`` of the final ``m_raw``."""
    m_new = tl.maximum(m_raw, tl.max(l, axis=0))
    shift = safe_max(m_new)
    s_new = s * exp(m_raw - shift) + tl.sum(exp(l - shift), axis=0)
    return m_new, s_new


@triton.jit
def slot_stats_init(BLOCK: tl.constexpr):
    """Empty running per-slot softmax stats of a tiled row: ``(m_raw, s)``, float32
    [BLOCK // 4] each (``-inf``, 0), a slot per four consecutive columns of the tile."""
    return tl.full([BLOCK // 4], NEG_INF, tl.float32), tl.zeros([BLOCK // 4], tl.float32)


@triton.jit
def slot_stats_fold(m_raw, s, v, r, BLOCK: tl.constexpr):
    """Fold the tile ``v`` (float32 [BLOCK]) into the per-slot stats of ``softmax(v r)`` (``r`` =
    1 / tau, or 1): each slot is the online softmax of its own four columns of every tile
    (``online_stats`` / ``scaled_online_stats`` per slot). A thread holds whole groups of four
    consecutive columns (the 16-byte loads and the grouped noise lay tiles out so), so a tile
    costs no shuffle and no shared memory; ``slot_stats_row`` combines the slots once per pass."""
    v4 = tl.reshape(v, [BLOCK // 4, 4])
    m_new = tl.maximum(m_raw, tl.max(v4, axis=1))
    shift = safe_max(m_new)
    s_new = s * exp((m_raw - shift) * r) + tl.sum(exp((v4 - shift[:, None]) * r), axis=1)
    return m_new, s_new


@triton.jit
def slot_stats_row(m_raw, s, r):
    """The row's ``(m_raw, s)`` (as ``online_stats`` returns them) from its slots: ``m`` the max
    of the slots' maxima, ``s = sum_slot s_slot exp((m_slot - safe_max(m)) r)`` (a slot of
    ``-inf`` entries adds 0)."""
    m = tl.max(m_raw, axis=0)
    return m, tl.sum(s * exp((m_raw - safe_max(m)) * r), axis=0)


@triton.jit
def probs(l, m, s):
    """``softmax`` entries from the row stats: ``exp(l - m) / s`` (0 on an empty row), as
    ``exp(l - m) * (1 / s)`` with the reciprocal taken once per row: float32 ``/`` is PTX
    ``div.full.f32``, which on sm_90 is ``a * rcp(b)`` for b in [2^-126, 2^126] (1 <= s <= K
    here: the max entry contributes exp(0)), so on the GPU the value is bitwise that of
    ``exp(l - m) / s`` without the per-entry range scaling of the divisor."""
    return exp(l - m) * (1.0 / tl.where(s == 0.0, 1.0, s))


@triton.jit
def div_normal(a, b):
    """``a / b`` for divisors with 2^-126 <= |b| <= 2^126: PTX ``div.approx.f32``, a * rcp(b) (b
    scaled only when subnormal). Triton's ``/`` (``div.full.f32``) computes the same product for
    such b after its range checks (on sm_90 two compares and four predicated multiplies per
    element where b varies), so the value is bitwise the same on the GPU."""
    return tl.math.fdiv(a, b, approx=True)


@triton.jit
def sqrt_pos(x):
    """IEEE (correctly rounded) square root of float32 ``x`` that is +-0 or in [2^-101, 2^128):
    ``y = x rsqrt(x)`` and one correction ``y + (x - y^2) rsqrt(x) / 2`` (both FMAs), the fast path
    that PTX ``sqrt.rn.f32`` takes on sm_90 for such x, without its range check and the branch
    to the general path; +-0 gives itself. In the interpreter (whose rsqrt is ``1 / sqrt(x)``) it
    equals numpy's float32 sqrt on every float32 in [2^-24, 64) and on the samples of
    ``tests/test_triton_kernels.py``."""
    r = tl.math.rsqrt(x)
    y = x * r
    e = tl.fma(-y, y, x)
    return tl.where(x == 0.0, x, tl.fma(e, 0.5 * r, y))


@triton.jit
def scaled_row_stats(v, tau):
    """``(m, s)`` of ``softmax(v / tau)`` for a whole row in one block: ``m`` = safe max of ``v``
    (unscaled), ``s = sum exp((v - m) / tau)``, the quotient as ``(v - m) * (1 / tau)`` (the
    reciprocal once per program: bitwise the per-entry ``/`` on the GPU for tau <= 2^126, as in
    ``probs``; above, equal to float32 rounding)."""
    m = safe_max(tl.max(v, axis=0))
    s = tl.sum(exp((v - m) * (1.0 / tau)), axis=0)
    return m, s


@triton.jit
def scaled_online_stats(m_raw, s, v, tau):
    """Fold the tile ``v`` into the running ``(m_raw, s)`` of ``softmax(v / tau)`` (as
    ``online_stats``, with the shift subtracted before the division)."""
    m_new = tl.maximum(m_raw, tl.max(v, axis=0))
    shift = safe_max(m_new)
    r = 1.0 / tau
    s_new = s * exp((m_raw - shift) * r) + tl.sum(exp((v - shift) * r), axis=0)
    return m_new, s_new


@triton.jit
def scaled_probs(v, m, s, tau):
    """Entries of ``softmax(v / tau)`` from its stats: ``exp((v - m) / tau) / s``, both quotients
    as products with the reciprocal (``scaled_row_stats``, ``probs``)."""
    return exp((v - m) * (1.0 / tau)) * (1.0 / tl.where(s == 0.0, 1.0, s))


@triton.jit
def max_nan(a, b):
    """Elementwise max that propagates NaN (PTX ``max.NaN.f32``, one instruction): NaN if either
    is NaN. ``tl.maximum``'s default returns the other operand."""
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def flags_of_max(mx):
    """``(n_bad, n_valid)`` (0 or 1 each, int32) of a row from ``mx`` (float32 [N]): its logits
    (``-inf`` where masked; a row in one block), or a tile loop's running per-lane ``max_nan``.
    NaN read as ``+inf``, one max reduction tells both: ``n_bad`` iff a logit is NaN or ``+inf``
    (it poisons the row), ``n_valid`` iff a logit is not ``-inf``."""
    m = tl.max(tl.where(mx != mx, POS_INF, mx), axis=0)
    return (m == POS_INF).to(tl.int32), (m != NEG_INF).to(tl.int32)


@triton.jit
def flags_of_stats(m_raw, s):
    """``(n_bad, n_valid)`` (0 or 1 each) of a row from its online softmax stats of scores that
    are NaN, ``+inf`` or ``-inf`` exactly where its logits are (``phi``, or ``phi + G`` with G
    finite and far below an ulp of the fp32 limit): a NaN score makes ``exp`` and the sum NaN; a
    ``+inf`` score makes the shift ``+inf`` and its own term ``exp(inf - inf)`` NaN; otherwise
    every exp argument is <= 0 or ``-inf`` (scaled by a finite positive ``r``), so ``s`` stays
    finite. ``m_raw`` (the raw max) is ``-inf`` iff no score exceeds ``-inf``."""
    bad = s != s
    valid = (m_raw != NEG_INF) & (m_raw == m_raw)
    return bad.to(tl.int32), (valid | bad).to(tl.int32)


@triton.jit
def lane_flags_init(BLOCK: tl.constexpr):
    """Running per-lane ``max_nan`` of a tiled row's logits (float32 [BLOCK], ``-inf``): one
    instruction per entry in the tile loop (``lane_flags_fold``), the flags once per pass
    (``flags_of_max``)."""
    return tl.full([BLOCK], NEG_INF, tl.float32)


@triton.jit
def lane_flags_fold(acc, phi):
    """Fold the tile ``phi`` (``-inf`` where masked) into the per-lane running max."""
    return max_nan(acc, phi)


@triton.jit
def pick(vec, steps, k):
    """``vec[k]`` of a small register vector (per-step row scalars)."""
    return tl.sum(tl.where(steps == k, vec, 0.0), axis=0)


@triton.jit
def put(vec, steps, k, val):
    """``vec`` with entry ``k`` set to ``val``."""
    return tl.where(steps == k, val, vec)


@triton.jit
def row_argmax(v):
    """First argmax of a whole row (int64). NaNs (only on poisoned rows, whose index is -1
    anyway) are read as -inf so that every backend, the interpreter included, is defined."""
    return tl.argmax(tl.where(v != v, NEG_INF, v), axis=0, tie_break_left=True).to(tl.int64)


@triton.jit
def slot_argmax_init(BLOCK: tl.constexpr):
    """Running per-slot (max, group) of a tiled row's scores, a slot per four consecutive columns
    of every tile (as ``slot_stats_init``): float32 [BLOCK // 4] ``-inf`` and int32 [BLOCK // 4]
    0 (``slot_argmax_fold``, ``slot_argmax_row``)."""
    return tl.full([BLOCK // 4], NEG_INF, tl.float32), tl.zeros([BLOCK // 4], tl.int32)


@triton.jit
def slot_argmax_fold(sbest, sgroup, v, start, BLOCK: tl.constexpr):
    """Fold the tile ``v`` (float32 [BLOCK], columns ``start + j``) into each slot's running max
    and the first column of its group of four where that max was first reached (strict ``>``:
    the earliest tile; NaN never wins). In-thread, as ``slot_stats_fold``: no reduction."""
    t = tl.max(tl.reshape(v, [BLOCK // 4, 4]), axis=1)
    better = t > sbest
    groups = start + 4 * tl.arange(0, BLOCK // 4)
    return tl.where(better, t, sbest), tl.where(better, groups, sgroup).to(tl.int32)


@triton.jit
def slot_argmax_row(sbest, sgroup):
    """``(best, group)``: the row's max and the first column of the earliest group of four that
    holds it. The groups are disjoint runs of four consecutive columns, so the row's first argmax
    lies in that group (its column is the group's first argmax, which the caller finds); group 0
    where every score is ``-inf`` or NaN."""
    best = tl.max(sbest, axis=0)
    return best, tl.min(tl.where(sbest == best, sgroup, 2147483647), axis=0)


@triton.jit
def tile_argmax(best, best_idx, v, start):
    """Fold the tile ``v`` (columns ``start + j``) into the running (max, first argmax) of a row;
    strict ``>`` keeps the first maximum on ties, as ``torch.argmax``."""
    v = tl.where(v != v, NEG_INF, v)
    t_best = tl.max(v, axis=0)
    t_col = start + tl.argmax(v, axis=0, tie_break_left=True).to(tl.int64)
    better = t_best > best
    return tl.where(better, t_best, best), tl.where(better, t_col, best_idx)
