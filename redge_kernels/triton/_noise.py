"""In-kernel noise, contract version 2, bit-identical in the Philox words to ``redge_kernels.noise``
(docs/SPEC.md "Randomness (noise contract, version 2)").

One ``tl.philox(seed, j, row_lo, row_hi, stream)`` call gives the words (w0, w1, w2, w3) of the four
global columns 4j .. 4j+3 of a row; every word is used once:

    stream 0:  (z[4j], z[4j+1]) = rho(w0) (cos, sin)(theta(w1)),  (z[4j+2], z[4j+3]) from (w2, w3)
               rho(w) = sqrt(-2 log(f32(w) 2^-32 + 2^-33)),  theta(w) = (f32(w) 2^-32) * f32(2 pi)
    stream 1:  G[4j + i] = gumbel_from_word(w_i):
               a = f32(~w) 2^-32 + 2^-33 (= 1 - u),  b = f32(w) 2^-32 + 2^-33 (= u)
               E = -log1p(-a) (a < 1/2) else -log b;  G = -log E

The blocks come in two forms with the same values, picked by the constexpr ``GROUPED``: a tile that
starts at a global column that is a multiple of 4 takes BLOCK // 4 calls, interleaved into column
order with ``tl.join`` + ``tl.reshape`` (the launcher picks it when the tile also has at least one
call per thread); any other tile (a vocabulary shard whose first column is not a multiple of 4, a
block of fewer than four columns per thread, or a ``[ROWS, BLOCK]`` block of fewer than four lanes)
takes one call per element and keeps the lane ``col & 3`` it needs. ``gumbel_words`` returns the raw
stream-1 words, for the Gumbel-max that evaluates G only for its candidates (``_gumbel_max``).

``log_pos``, ``cos_sin`` and ``cos_or_sin`` below are libdevice's accurate ``__nv_logf`` /
``__nv_cosf`` / ``__nv_sinf`` written out for the arguments the noise produces (positive normal
logs; angles in [0, 2 pi), one reduction for a cos-sin pair), ``_common.sqrt_pos`` is the IEEE
square root, and E's log1p(-a) is the same log of the exact 1 - a (where the reference divides by
Goldberg's rounding correction), so the kernels differ from the reference by at most last-ulp
differences of those functions (within 1.5 ulp of the exact values, ``tests/test_triton_kernels.py``).
"""

import math

import triton
import triton.language as tl

from ._common import sqrt_pos

_TWO_M32: tl.constexpr = tl.constexpr(2.0**-32)
_TWO_M33: tl.constexpr = tl.constexpr(2.0**-33)
# float32(2 pi), as noise._TWO_PI_F32 (exactly representable in fp32, so no double rounding).
_TWO_PI_F32: tl.constexpr = tl.constexpr(float.fromhex("0x1.921fb60000000p+2"))
assert abs(float.fromhex("0x1.921fb60000000p+2") - 2 * math.pi) < 2e-7


@triton.jit
def philox_words(seed, j, row, stream: tl.constexpr):
    """The four uint32 words of the calls ``j`` (int64 block of ``col >> 2``) of global row ``row``
    (int64 scalar) in ``stream`` (0 or 1); counter ``(j, row & 0xFFFFFFFF, row >> 32, stream)``."""
    c0 = j.to(tl.uint32)
    row = row.to(tl.int64)
    zero = tl.zeros(j.shape, dtype=tl.uint32)
    c1 = zero + (row & 0xFFFFFFFF).to(tl.uint32)
    c2 = zero + ((row >> 32) & 0xFFFFFFFF).to(tl.uint32)
    return tl.philox(seed, c0, c1, c2, zero + stream)


# log of a positive normal finite float32 (libdevice's __nv_logf written out, without the branches
# for subnormal, zero, infinite and NaN inputs that the noise never produces): x = 2^e m with
# m in [2/3, 4/3), log x = e log 2 + log1p(m - 1) by a degree-9 polynomial.
_LOG_SPLIT: tl.constexpr = tl.constexpr(0x3F2AAAAB)  # float32 2/3: its bits
_THIRD_BELOW: tl.constexpr = tl.constexpr(float.fromhex("0x1.555554p-2"))  # the float below 1/3
_EXP_M1: tl.constexpr = tl.constexpr(-8388608)  # the exponent bits of 2^-1: -2^23
_EXP_MASK: tl.constexpr = tl.constexpr(-8388608)  # 0xFF800000: sign and exponent bits
# float32(ln 2) 2^-23 (exact): the exponent bits e (a multiple of 2^23) times it is e 2^-23 ln 2.
_LN2_2M23: tl.constexpr = tl.constexpr(float.fromhex("0x1.62e430p-1") * 2.0**-23)
_LOG_C9: tl.constexpr = tl.constexpr(float.fromhex("-0x1.0aa04ep-3"))
_LOG_C8: tl.constexpr = tl.constexpr(float.fromhex("0x1.2073ecp-3"))
_LOG_C7: tl.constexpr = tl.constexpr(float.fromhex("-0x1.f19b98p-4"))
_LOG_C6: tl.constexpr = tl.constexpr(float.fromhex("0x1.1e52aap-3"))
_LOG_C5: tl.constexpr = tl.constexpr(float.fromhex("-0x1.55b172p-3"))
_LOG_C4: tl.constexpr = tl.constexpr(float.fromhex("0x1.99da16p-3"))
_LOG_C3: tl.constexpr = tl.constexpr(float.fromhex("-0x1.fffe44p-3"))
_LOG_C2: tl.constexpr = tl.constexpr(float.fromhex("0x1.5554f0p-2"))


@triton.jit
def _log_split(x):
    """``(e, f)`` with ``x = 2^(e 2^-23) (1 + f)``, f in [-1/3, 1/3) (``e`` int32, the exponent
    bits, a multiple of 2^23) for positive normal finite float32 ``x``."""
    bits = x.to(tl.int32, bitcast=True)
    e = (bits - _LOG_SPLIT) & _EXP_MASK
    return e, (bits - e).to(tl.float32, bitcast=True) - 1.0


@triton.jit
def log_pos(x):
    """``log x`` of positive normal finite float32 ``x`` (max error about 1 ulp)."""
    e, f = _log_split(x)
    return _log_of_split(e, f)


@triton.jit
def _log_of_split(e, f):
    """``log(2^(e 2^-23) (1 + f))`` (``_log_split``): e ln 2 + log1p(f), log1p by the polynomial."""
    p = tl.fma(_LOG_C9, f, _LOG_C8)
    p = tl.fma(p, f, _LOG_C7)
    p = tl.fma(p, f, _LOG_C6)
    p = tl.fma(p, f, _LOG_C5)
    p = tl.fma(p, f, _LOG_C4)
    p = tl.fma(p, f, _LOG_C3)
    p = tl.fma(p, f, _LOG_C2)
    p = tl.fma(p, f, -0.5)
    return tl.fma(e.to(tl.float32), _LN2_2M23, tl.fma(f * p, f, f))


@triton.jit
def _rho(w):
    return sqrt_pos(-2.0 * log_pos(w.to(tl.float32) * _TWO_M32 + _TWO_M33))


@triton.jit
def _theta(w):
    return (w.to(tl.float32) * _TWO_M32) * _TWO_PI_F32


# One trigonometric reduction for both cos and sin of theta in [0, 2 pi) (libdevice's fast path of
# __nv_sinf / __nv_cosf, written out: the same constants and operations, each product-sum an
# explicit fma, so the interpreter computes what the GPU does): j = round(theta 2 / pi),
# r = theta - j pi / 2 in three parts, r in [-pi / 4, pi / 4]; sin r and cos r by minimax
# polynomials; quadrant j picks and signs them. Without the general path's Payne-Hanek branch
# (dead for theta < 105615) and with one reduction for the pair.
_TWO_OVER_PI: tl.constexpr = tl.constexpr(float.fromhex("0x1.45f306p-1"))
_PIO2_HI: tl.constexpr = tl.constexpr(float.fromhex("-0x1.921fb4p+0"))
_PIO2_MID: tl.constexpr = tl.constexpr(float.fromhex("-0x1.4442d0p-24"))
_PIO2_LO: tl.constexpr = tl.constexpr(float.fromhex("-0x1.84698ap-48"))
_SIN_3: tl.constexpr = tl.constexpr(float.fromhex("-0x1.9a82a6p-13"))
_SIN_2: tl.constexpr = tl.constexpr(float.fromhex("0x1.110bc8p-7"))
_SIN_1: tl.constexpr = tl.constexpr(float.fromhex("-0x1.555550p-3"))
_COS_4: tl.constexpr = tl.constexpr(float.fromhex("0x1.975800p-16"))
_COS_3: tl.constexpr = tl.constexpr(float.fromhex("-0x1.6c0fdap-10"))
_COS_2: tl.constexpr = tl.constexpr(float.fromhex("0x1.555576p-5"))
_COS_1: tl.constexpr = tl.constexpr(float.fromhex("-0x1.fffffep-2"))


@triton.jit
def _reduce_quadrant(theta):
    """``(j, r, r^2)``: int32 quadrant ``j = round(theta 2 / pi)`` and ``r = theta - j pi / 2``
    (float32 ``theta`` in [0, 2 pi))."""
    j = tl.fma(theta, _TWO_OVER_PI, 0.5).to(tl.int32)  # theta >= 0: truncation is the floor
    q = j.to(tl.float32)
    r = tl.fma(q, _PIO2_HI, theta)
    r = tl.fma(q, _PIO2_MID, r)
    r = tl.fma(q, _PIO2_LO, r)
    return j, r, r * r


@triton.jit
def _sin_cos_poly(r, r2):
    """``(sin r, cos r)`` for r in [-pi / 4, pi / 4] (``r2 = r * r``)."""
    ps = tl.fma(tl.fma(tl.fma(_SIN_3, r2, _SIN_2), r2, _SIN_1), r2 * r, r)
    pc = tl.fma(tl.fma(tl.fma(tl.fma(_COS_4, r2, _COS_3), r2, _COS_2), r2, _COS_1), r2, 1.0)
    return ps, pc


@triton.jit
def _quadrant(ps, pc, j):
    """sin of the angle ``r + j pi / 2`` from ``(sin r, cos r)``."""
    v = tl.where((j & 1) != 0, pc, ps)
    return tl.where((j & 2) != 0, 0.0 - v, v)


@triton.jit
def cos_sin(theta):
    """``(cos theta, sin theta)`` of float32 theta in [0, 2 pi) (one reduction)."""
    j, r, r2 = _reduce_quadrant(theta)
    ps, pc = _sin_cos_poly(r, r2)
    return _quadrant(ps, pc, j + 1), _quadrant(ps, pc, j)


@triton.jit
def cos_or_sin(theta, odd):
    """``sin theta`` where ``odd`` else ``cos theta`` (float32 theta in [0, 2 pi))."""
    j, r, r2 = _reduce_quadrant(theta)
    ps, pc = _sin_cos_poly(r, r2)
    return _quadrant(ps, pc, tl.where(odd, j, j + 1))


@triton.jit
def _interleave4(a0, a1, a2, a3):
    """``[N]`` blocks -> ``[4N]`` with ``out[4j + i] = a_i[j]``."""
    lo = tl.join(a0, a2)  # [N, 2]: (j, h) -> a_{2h}
    hi = tl.join(a1, a3)  # (j, h) -> a_{2h+1}
    return tl.reshape(tl.join(lo, hi), [a0.shape[0] * 4])  # (j, h, t) -> a_{2h+t}


@triton.jit
def normal_block4(seed, row, c0, BLOCK: tl.constexpr):
    """Stream 0: float32 ``z`` of the global columns ``c0 .. c0 + BLOCK - 1`` (int64 ``c0`` a
    multiple of 4) of global row ``row``: BLOCK // 4 Philox calls, two Box-Muller transforms
    each."""
    j = (c0.to(tl.int64) >> 2) + tl.arange(0, BLOCK // 4).to(tl.int64)
    w0, w1, w2, w3 = philox_words(seed, j, row, 0)
    rho0 = _rho(w0)
    rho2 = _rho(w2)
    c1, s1 = cos_sin(_theta(w1))
    c3, s3 = cos_sin(_theta(w3))
    return _interleave4(rho0 * c1, rho0 * s1, rho2 * c3, rho2 * s3)


@triton.jit
def lane_word(w0, w1, w2, w3, lane):
    """Word ``lane`` (0 .. 3, a block or a scalar) of a call."""
    return tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))


@triton.jit
def normal_at(seed, row, cols):
    """Stream 0 at any int64 global columns ``cols``: one call per element, lane ``cols & 3``."""
    w0, w1, w2, w3 = philox_words(seed, cols >> 2, row, 0)
    lane = cols & 3
    second = lane >= 2
    rho = _rho(tl.where(second, w2, w0))
    theta = _theta(tl.where(second, w3, w1))
    return rho * cos_or_sin(theta, (lane & 1) == 1)


@triton.jit
def normal(seed, row, c0, cols, BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """Stream 0 of the tile of global columns ``cols = c0 + arange(BLOCK)``; ``GROUPED``: the
    grouped form (``c0`` a multiple of 4)."""
    if GROUPED:
        z = normal_block4(seed, row, c0, BLOCK)
    else:
        z = normal_at(seed, row, cols)
    return z


@triton.jit
def gumbel(seed, row, c0, cols, BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """Stream 1 of the tile of global columns ``cols = c0 + arange(BLOCK)`` (see ``normal``)."""
    return gumbel_from_word(gumbel_words(seed, row, c0, cols, BLOCK, GROUPED))


@triton.jit
def gumbel_words(seed, row, c0, cols, BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """The raw stream-1 words (uint32) of the tile of global columns ``cols = c0 + arange(BLOCK)``:
    word ``col & 3`` of each column's call (the Gumbel-max turns only its candidates into G)."""
    if GROUPED:
        j = (c0.to(tl.int64) >> 2) + tl.arange(0, BLOCK // 4).to(tl.int64)
        w0, w1, w2, w3 = philox_words(seed, j, row, 1)
        w = _interleave4(w0, w1, w2, w3)
    else:
        w0, w1, w2, w3 = philox_words(seed, cols >> 2, row, 1)
        w = lane_word(w0, w1, w2, w3, cols & 3)
    return w


@triton.jit
def neg_log_u(w):
    """float32 ``E = -log u`` of uint32 words, ``u = (w + 1/2) 2^-32`` never rounded: with
    ``a = f32(~w) 2^-32 + 2^-33`` (= 1 - u) and ``b = f32(w) 2^-32 + 2^-33`` (= u), each exact
    near 0, ``E = -log1p(-a)`` where a < 1/2, else ``-log b``. The log1p is the log of the exact
    1 - a: 1 - a = 1 + f with f = -a for a <= 1/3 (below float32 1/3), else 2 (1 - a) = 1 + f
    with f = 1 - 2a (exact, Sterbenz), the split ``log_pos`` would make of 1 - a itself; one
    polynomial for both cases (within about 1 ulp of the exact value of the float32 a or b)."""
    a = (~w).to(tl.float32) * _TWO_M32 + _TWO_M33
    b = w.to(tl.float32) * _TWO_M32 + _TWO_M33
    eb, fb = _log_split(b)
    near = a <= _THIRD_BELOW
    small = a < 0.5
    f = tl.where(small, tl.where(near, -a, 1.0 - 2.0 * a), fb)
    e = tl.where(small, tl.where(near, 0, _EXP_M1), eb)
    return -_log_of_split(e, f)


@triton.jit
def gumbel_from_word(w):
    """float32 ``G = -log(-log u)`` of uint32 words (``neg_log_u``)."""
    return -log_pos(neg_log_u(w))


# ---- [ROWS, BLOCK] tiles of whole rows (several rows per program, small K) -------------------

@triton.jit
def _interleave4_rows(a0, a1, a2, a3):
    """``[R, N]`` blocks -> ``[R, 4N]`` with ``out[r, 4j + i] = a_i[r, j]``."""
    lo = tl.join(a0, a2)  # [R, N, 2]
    hi = tl.join(a1, a3)
    return tl.reshape(tl.join(lo, hi), [a0.shape[0], a0.shape[1] * 4])


@triton.jit
def _words_rows(seed, rows, c0, cols, stream: tl.constexpr, ROWS: tl.constexpr,
                BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    """The four words of each column's call for the tile ``[ROWS, BLOCK]`` of global rows
    ``rows`` (int64 [ROWS, 1]) and global columns ``cols = c0 + arange(BLOCK)`` (int64 [1, BLOCK]).
    ``GROUPED`` (``c0`` a multiple of 4) with ``BLOCK >= 4``: ``[ROWS, BLOCK // 4]`` calls; else
    (also every block of fewer than four lanes) one call per element."""
    if GROUPED and BLOCK >= 4:
        j = (c0.to(tl.int64) >> 2) + tl.arange(0, BLOCK // 4).to(tl.int64)
        j = j[None, :] + tl.zeros([ROWS, BLOCK // 4], dtype=tl.int64)
    else:
        j = (cols >> 2) + tl.zeros([ROWS, BLOCK], dtype=tl.int64)
    return philox_words(seed, j, rows, stream)


@triton.jit
def normal_rows(seed, rows, c0, cols, ROWS: tl.constexpr, BLOCK: tl.constexpr,
                GROUPED: tl.constexpr):
    """Stream 0 of a ``[ROWS, BLOCK]`` tile (see ``_words_rows``); the same values as ``normal``
    draws for each of its rows."""
    w0, w1, w2, w3 = _words_rows(seed, rows, c0, cols, 0, ROWS, BLOCK, GROUPED)
    if GROUPED and BLOCK >= 4:
        rho0 = _rho(w0)
        rho2 = _rho(w2)
        c1, s1 = cos_sin(_theta(w1))
        c3, s3 = cos_sin(_theta(w3))
        z = _interleave4_rows(rho0 * c1, rho0 * s1, rho2 * c3, rho2 * s3)
    else:
        lane = (cols & 3) + tl.zeros([ROWS, BLOCK], dtype=tl.int64)
        second = lane >= 2
        rho = _rho(tl.where(second, w2, w0))
        theta = _theta(tl.where(second, w3, w1))
        z = rho * cos_or_sin(theta, (lane & 1) == 1)
    return z


@triton.jit
def gumbel_words_rows(seed, rows, c0, cols, ROWS: tl.constexpr, BLOCK: tl.constexpr,
                      GROUPED: tl.constexpr):
    """The raw stream-1 words of a ``[ROWS, BLOCK]`` tile (see ``gumbel_words``)."""
    w0, w1, w2, w3 = _words_rows(seed, rows, c0, cols, 1, ROWS, BLOCK, GROUPED)
    if GROUPED and BLOCK >= 4:
        w = _interleave4_rows(w0, w1, w2, w3)
    else:
        w = lane_word(w0, w1, w2, w3, (cols & 3) + tl.zeros([ROWS, BLOCK], dtype=tl.int64))
    return w


@triton.jit
def gumbel_rows(seed, rows, c0, cols, ROWS: tl.constexpr, BLOCK: tl.constexpr,
                GROUPED: tl.constexpr):
    """Stream 1 (G) of a ``[ROWS, BLOCK]`` tile."""
    return gumbel_from_word(gumbel_words_rows(seed, rows, c0, cols, ROWS, BLOCK, GROUPED))
