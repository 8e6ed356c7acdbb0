"""In-kernel counter-based noise, bit-identical to ``redge_kernels.noise`` (docs/SPEC.md "Randomness").

One ``tl.randint4x(seed, offset)`` call per element with ``offset = row * K + col`` (int64) gives
the Philox4x32-10 words ``(r0, r1, r2, r3)`` of ``noise.noise_bits``; the float32 formulas below are
those of ``noise.normal_from_bits`` and ``noise.gumbel_from_bits`` operation by operation:

    z = sqrt(-2 log u1) cos(2 pi u2),  u1 = f32(r0) 2^-32 + 2^-33,  u2 = f32(r1) 2^-32
    w = f32(~r2) 2^-32 + 2^-33 (= 1 - u),  v = f32(r2) 2^-32 + 2^-33 (= u)
    E = log1p(-w) by Goldberg (w < 1/2) else -log v;  G = -log E

``tl.log`` / ``tl.cos`` lower to libdevice's accurate ``__nv_logf`` / ``__nv_cosf`` and ``sqrt_rn``
is the IEEE square root, so the kernels differ from the reference by at most last-ulp differences.
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
def normal_and_gumbel(seed, offset):
    """``(z, G)`` float32 blocks for the int64 Philox counters ``offset`` (shape of ``offset``)."""
    z, r2 = normal_and_word(seed, offset)
    return z, gumbel_from_word(r2)


@triton.jit
def normal_and_word(seed, offset):
    """``(z, r2)``: the normal of stream 0 and the raw word of stream 1 (``gumbel_from_word``
    turns it into G only where G is needed)."""
    r0, r1, r2, _ = tl.randint4x(seed, offset)
    u1 = r0.to(tl.float32) * _TWO_M32 + _TWO_M33
    u2 = r1.to(tl.float32) * _TWO_M32
    return tl.sqrt_rn(-2.0 * tl.log(u1)) * tl.cos(u2 * _TWO_PI_F32), r2


@triton.jit
def gumbel(seed, offset):
    """Gumbel(0, 1) float32 block (stream 1) for the int64 counters ``offset``."""
    _, _, r2, _ = tl.randint4x(seed, offset)
    return gumbel_from_word(r2)


@triton.jit
def gumbel_from_word(r2):
    w = (~r2).to(tl.float32) * _TWO_M32 + _TWO_M33  # 1 - u, exact near 0
    v = r2.to(tl.float32) * _TWO_M32 + _TWO_M33  # u, exact near 0
    one_minus_w = 1.0 - w
    denom = 1.0 - one_minus_w  # exact (Sterbenz) for w < 1/2
    e_small = tl.where(one_minus_w == 1.0, w,
                       -tl.log(one_minus_w) * w / tl.where(denom == 0.0, 1.0, denom))
    e = tl.where(w < 0.5, e_small, -tl.log(v))
    return -tl.log(e)
