"""In-kernel noise, contract version 2, bit-identical in the Philox words to ``redge_kernels.noise``
(docs/SPEC.md "Randomness (noise contract, version 2)").

One ``tl.philox(seed, j, row_lo, row_hi, stream)`` call gives the words (w0, w1, w2, w3) of the four
global columns 4j .. 4j+3 of a row; every word is used once:

    stream 0:  (z[4j], z[4j+1]) = rho(w0) (cos, sin)(theta(w1)),  (z[4j+2], z[4j+3]) from (w2, w3)
               rho(w) = sqrt(-2 log(f32(w) 2^-32 + 2^-33)),  theta(w) = (f32(w) 2^-32) * f32(2 pi)
    stream 1:  G[4j + i] = gumbel_from_word(w_i):
               a = f32(~w) 2^-32 + 2^-33 (= 1 - u),  b = f32(w) 2^-32 + 2^-33 (= u)
               E = log1p(-a) by Goldberg (a < 1/2) else -log b;  G = -log E

The blocks come in two forms with the same values, picked by the constexpr ``GROUPED``: a tile that
starts at a global column that is a multiple of 4 takes BLOCK // 4 calls, interleaved into column
order with ``tl.join`` + ``tl.reshape`` (the launcher picks it when the tile also has at least one
call per thread); any other tile (a vocabulary shard whose first column is not a multiple of 4, a
block of fewer than four columns per thread, or a ``[ROWS, BLOCK]`` block of fewer than four lanes)
takes one call per element and keeps the lane ``col & 3`` it needs. ``gumbel_words`` returns the raw
stream-1 words, for the Gumbel-max that evaluates G only for its candidates (``_gumbel_max``).

``tl.log`` / ``tl.cos`` / ``tl.sin`` lower to libdevice's accurate ``__nv_logf`` / ``__nv_cosf`` /
``__nv_sinf`` and ``sqrt_rn`` is the IEEE square root, so the kernels differ from the reference by
at most last-ulp differences of those functions.
"""

import math

import triton
import triton.language as tl

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


@triton.jit
def _rho(w):
    return tl.sqrt_rn(-2.0 * tl.log(w.to(tl.float32) * _TWO_M32 + _TWO_M33))


@triton.jit
def _theta(w):
    return (w.to(tl.float32) * _TWO_M32) * _TWO_PI_F32


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
    t1 = _theta(w1)
    t3 = _theta(w3)
    return _interleave4(rho0 * tl.cos(t1), rho0 * tl.sin(t1), rho2 * tl.cos(t3), rho2 * tl.sin(t3))


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
    return rho * tl.where((lane & 1) == 1, tl.sin(theta), tl.cos(theta))


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
def gumbel_from_word(w):
    """float32 ``G = -log(-log u)`` of uint32 words, ``u = (w + 1/2) 2^-32`` never rounded."""
    a = (~w).to(tl.float32) * _TWO_M32 + _TWO_M33  # 1 - u, exact near 0
    b = w.to(tl.float32) * _TWO_M32 + _TWO_M33  # u, exact near 0
    one_minus_a = 1.0 - a
    denom = 1.0 - one_minus_a  # exact (Sterbenz) for a < 1/2
    small = a < 0.5
    # one log for E: log(1 - a) where a < 1/2 (Goldberg), else log(b); the same values as
    # evaluating both logs and selecting, with a log fewer per element
    log_e = tl.log(tl.where(small, one_minus_a, b))
    e_small = tl.where(one_minus_a == 1.0, a, -log_e * a / tl.where(denom == 0.0, 1.0, denom))
    e = tl.where(small, e_small, -log_e)
    return -tl.log(e)


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
        t1 = _theta(w1)
        t3 = _theta(w3)
        z = _interleave4_rows(rho0 * tl.cos(t1), rho0 * tl.sin(t1), rho2 * tl.cos(t3),
                              rho2 * tl.sin(t3))
    else:
        lane = (cols & 3) + tl.zeros([ROWS, BLOCK], dtype=tl.int64)
        second = lane >= 2
        rho = _rho(tl.where(second, w2, w0))
        theta = _theta(tl.where(second, w3, w1))
        z = rho * tl.where((lane & 1) == 1, tl.sin(theta), tl.cos(theta))
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
