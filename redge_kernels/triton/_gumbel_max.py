"""The exact Gumbel-max sample with a log-free bound per element (docs/SPEC.md "Randomness (noise
contract, version 2)"): the index is the first argmax of ``l + G`` with ``G = -log(-log u)`` the
float32 value of ``_noise.gumbel_from_word`` (the reference's to last-ulp), but G (two accurate
logs) is evaluated only where it can win.

The bound. With ``a = 1 - u`` (the noise module's float32 ``a``), ``-log u = -log(1 - a) >= a``, so

    G = -log(-log u) <= -log a = -ln 2 log2 a <= ln 2 (127 - bits(a) 2^-23) =: G_ub - 2^-10

because ``bits(a) 2^-23 - 127 = e + (f - 1) <= e + log2 f = log2 a`` for ``a = f 2^e``, ``f`` in
[1, 2) (log2 is concave and equals ``f - 1`` at both ends), ``bits(a)`` the float's bit pattern read
as an integer. The margin 2^-10 covers the float32 rounding of G and of the bound (each within
~1e-5 for |G| < 23). ``G_ub`` costs an integer-to-float conversion and an FMA beyond ``a``.

The fold. Rounding is monotone, so ``fl(l + G_ub) >= fl(l + G)``: an element whose bound is below
the best exact score seen so far can neither win nor tie. A tile is folded by evaluating the exact
score of its candidates (bound >= best), largest bound first, until the largest remaining bound is
below the best; ties go to the lower column, as ``torch.argmax``. A row's first tile has about one
or two candidates; later tiles rarely have any, and then cost only the bound and one reduction.
"""

import triton
import triton.language as tl

from ._common import NEG_INF
from ._noise import gumbel_from_word, lane_word, philox_words

_NEG_LN2_2M23: tl.constexpr = tl.constexpr(-0.6931471805599453 * 2.0**-23)
_UB_OFFSET: tl.constexpr = tl.constexpr(127 * 0.6931471805599453 + 2.0**-10)
_TWO_M32: tl.constexpr = tl.constexpr(2.0**-32)
_TWO_M33: tl.constexpr = tl.constexpr(2.0**-33)


@triton.jit
def gumbel_upper(w):
    """float32 upper bound of ``gumbel_from_word(w)`` for uint32 words ``w`` (module docstring)."""
    a = (~w).to(tl.float32) * _TWO_M32 + _TWO_M33  # 1 - u, as in gumbel_from_word
    bits = a.to(tl.int32, bitcast=True).to(tl.float32)
    return bits * _NEG_LN2_2M23 + _UB_OFFSET


@triton.jit
def fold(best, best_idx, l, w, start, seed, grow, gstart, BLOCK: tl.constexpr):
    """Fold the tile of logits ``l`` (float32 ``[BLOCK]``, columns ``start + j``, ``-inf`` where
    masked) with its stream-1 words ``w`` (uint32) into the running ``(best, best_idx)``: the best
    exact score ``l + G`` so far and its first column (int64). NaN logits (poisoned rows, whose
    index is -1 anyway) are read as ``-inf``. A candidate's word is redrawn by one scalar Philox
    call (global row ``grow``, global column ``gstart + j``), so ``w`` is not live in the loop."""
    lanes = tl.arange(0, BLOCK)
    best = best + tl.zeros([], dtype=tl.float32)  # a constexpr start becomes a tensor
    best_idx = best_idx + tl.zeros([], dtype=tl.int64)
    l = tl.where(l != l, NEG_INF, l)
    bound = l + gumbel_upper(w)
    top = tl.max(bound, axis=0)
    while (top >= best) & (top > NEG_INF):
        j = tl.argmax(bound, axis=0, tie_break_left=True)
        hit = lanes == j
        l_j = tl.max(tl.where(hit, l, NEG_INF), axis=0)
        gcol = gstart + j.to(tl.int64)
        w0, w1, w2, w3 = philox_words(seed, gcol >> 2, grow, 1)
        score = l_j + gumbel_from_word(lane_word(w0, w1, w2, w3, gcol & 3))
        col = start + j.to(tl.int64)
        better = (score > best) | ((score == best) & (col < best_idx))
        best = tl.where(better, score, best)
        best_idx = tl.where(better, col, best_idx)
        bound = tl.where(hit, NEG_INF, bound)
        top = tl.max(bound, axis=0)
    return best, best_idx


@triton.jit
def fold_rows(l, w, seed, grows, gstart, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """``fold`` for a ``[ROWS, BLOCK]`` tile of whole rows (columns ``0 .. BLOCK - 1``, global
    ``gstart + j``; global rows ``grows`` int64 [ROWS]): each row's first argmax of ``l + G``
    (int64 [ROWS]). Every row evaluates its candidates largest bound first, as ``fold`` does; the
    loop runs while any row has one left."""
    cols = tl.arange(0, BLOCK)[None, :]
    l = tl.where(l != l, NEG_INF, l)
    bound = l + gumbel_upper(w)
    best = tl.full([ROWS], NEG_INF, dtype=tl.float32)
    best_idx = tl.zeros([ROWS], dtype=tl.int64)
    top = tl.max(bound, axis=1)
    active = top > NEG_INF
    while tl.max(active.to(tl.int32), axis=0) > 0:
        j = tl.argmax(bound, axis=1, tie_break_left=True)
        hit = cols == j[:, None]
        l_j = tl.max(tl.where(hit, l, NEG_INF), axis=1)
        gcol = gstart + j.to(tl.int64)
        w0, w1, w2, w3 = philox_words(seed, gcol >> 2, grows, 1)
        score = l_j + gumbel_from_word(lane_word(w0, w1, w2, w3, gcol & 3))
        col = j.to(tl.int64)
        better = active & ((score > best) | ((score == best) & (col < best_idx)))
        best = tl.where(better, score, best)
        best_idx = tl.where(better, col, best_idx)
        bound = tl.where(hit & active[:, None], NEG_INF, bound)
        top = tl.max(bound, axis=1)
        active = (top >= best) & (top > NEG_INF)
    return best_idx
