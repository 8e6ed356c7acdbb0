"""Counter-based noise: the contract every backend reproduces bit for bit (docs/SPEC.md "Randomness").

Generator: Philox4x32-10 (Salmon et al. 2011; the generator of cuRAND, Triton's ``tl.randint4x``
and PyTorch's CUDA backend), evaluated here with plain int64 torch ops so that it runs on any device.

Layout (one Philox call per element of the logical ``[R, K]`` row-major matrix):

    seed    : int64 in [0, 2**63)          key    = (seed & 0xFFFFFFFF, seed >> 32)
    offset  = row * K + col   (int64)      counter = (offset & 0xFFFFFFFF, offset >> 32, 0, 0)
    (r0, r1, r2, r3) = Philox4x32_10(counter, key)

``row`` is the index of the row after flattening the leading dims, ``col`` the vocabulary index, so
the noise of an element does not depend on memory layout, strides, or which kernel path runs.
(This is exactly Triton's ``tl.randint4x(seed, offset)`` counter layout.) The four output words
are the *streams*:

* stream 0 (words r0, r1): the standard normal ``z`` by Box-Muller, in float32::

      u1 = f32(r0) * 2**-32 + 2**-33            in [2**-33, 1]
      u2 = f32(r1) * 2**-32                     in [0, 1]
      z  = sqrt(-2 * log(u1)) * cos(TWO_PI_F32 * u2)

* stream 1 (word r2): the uniform ``u = (r2 + 1/2) * 2**-32``, strictly inside (0, 1) and using
  all 32 bits. The Gumbel variable ``G = -log(-log u)`` is computed in float32 without ever rounding
  ``u`` itself, so both tails keep full resolution (the upper tail of G, which decides whether rare
  tokens of a 256k vocabulary are ever drawn, reaches G ~ 22.9 instead of 16.6)::

      w  = f32(~r2) * 2**-32 + 2**-33           # = 1 - u, exact near 0
      v  = f32(r2)  * 2**-32 + 2**-33           # = u,     exact near 0
      E  = -log(u) = -log1p(-w)   if w < 1/2    # log1p by Goldberg's trick: log(1-w) * w / (1 - (1-w))
                   = -log(v)      otherwise
      G  = -log(E)

* word r3 is reserved.

``f32(r)`` is the round-to-nearest conversion of the unsigned 32-bit integer to float32; all other
operations are float32 IEEE operations, so the kernels differ from this file by at most the last-ulp
differences of their ``log``/``cos``/``sqrt`` implementations.

For vocabulary-parallel sampling, a shard holding columns ``[c0, c0 + K_local)`` of a row uses the
*global* ``offset = row * K + c0 + j``: every shard sees the noise of the unsharded call.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

__all__ = ["Noise", "philox4x32", "noise_bits", "normal_from_bits", "gumbel_from_bits",
           "uniform_from_bits", "sample_noise", "MAX_SEED"]

#: Seeds are int64 in [0, MAX_SEED).
MAX_SEED = 2**63

_MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_TWO_PI_F32 = float(torch.tensor(2.0 * math.pi, dtype=torch.float32))
_TWO_M32 = 2.0**-32
_TWO_M33 = 2.0**-33


def _mulhilo(m: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit words of m * x for a constant m < 2**32 and int64 x in [0, 2**32)."""
    x_hi, x_lo = x >> 16, x & 0xFFFF
    p_hi, p_lo = x_hi * m, x_lo * m  # each < 2**48: exact in int64
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & _MASK32
    return hi, lo


def philox4x32(c0, c1, c2, c3, k0, k1, rounds: int = 10):
    """Philox4x32 on int64 tensors holding uint32 values; returns the four output words.

    Shapes broadcast. This is the textbook round function (Random123 ``philox4x32_R``):
    ``(c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))``
    followed by the Weyl key bump.
    """
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


def _as_seed_tensor(seed, device) -> torch.Tensor:
    if isinstance(seed, torch.Tensor):
        return seed.to(device=device, dtype=torch.int64)
    return torch.tensor(int(seed), dtype=torch.int64, device=device)


def noise_bits(seed, rows: int, cols: int, device=None, *, row_start: int = 0, col_start: int = 0,
               row_cols: int | None = None):
    """The four Philox words for the block ``[row_start:row_start+rows, col_start:col_start+cols]``
    of a logical ``[*, row_cols]`` matrix (``row_cols`` defaults to ``cols``).

    Returns four int64 tensors of shape ``[rows, cols]`` holding uint32 values.
    ``seed`` is an int or a 0-dim int64 tensor (read on its device without a host sync).
    """
    row_cols = cols if row_cols is None else row_cols
    if isinstance(seed, torch.Tensor) and device is None:
        device = seed.device
    seed_t = _as_seed_tensor(seed, device)
    r = torch.arange(row_start, row_start + rows, device=device, dtype=torch.int64)
    c = torch.arange(col_start, col_start + cols, device=device, dtype=torch.int64)
    offset = r[:, None] * row_cols + c[None, :]
    zero = torch.zeros((), dtype=torch.int64, device=device)
    k0 = seed_t & _MASK32
    k1 = (seed_t >> 32) & _MASK32
    return philox4x32(offset & _MASK32, offset >> 32, zero, zero, k0, k1)


def _f32(bits: torch.Tensor) -> torch.Tensor:
    """Round-to-nearest float32 of uint32 values held in int64 (exact conversion, one rounding)."""
    return bits.to(torch.float32)


def normal_from_bits(r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """Stream 0: float32 standard normals by Box-Muller (see module docstring)."""
    u1 = _f32(r0) * _TWO_M32 + _TWO_M33
    u2 = _f32(r1) * _TWO_M32
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(u2 * _TWO_PI_F32)


def uniform_from_bits(r2: torch.Tensor) -> torch.Tensor:
    """Stream 1 as the exact float64 uniform ``(r2 + 1/2) * 2**-32``, strictly inside (0, 1)."""
    return (r2.to(torch.float64) + 0.5) * _TWO_M32


def gumbel_from_bits(r2: torch.Tensor) -> torch.Tensor:
    """Stream 1 as the float32 Gumbel(0, 1) variable ``-log(-log u)`` (see module docstring)."""
    w = _f32(r2 ^ _MASK32) * _TWO_M32 + _TWO_M33  # 1 - u
    v = _f32(r2) * _TWO_M32 + _TWO_M33  # u
    one_minus_w = 1.0 - w
    denom = 1.0 - one_minus_w  # exact (Sterbenz) for w < 1/2
    e_small_w = torch.where(one_minus_w == 1.0, w,
                            -torch.log(one_minus_w) * w / torch.where(denom == 0, 1.0, denom))
    e = torch.where(w < 0.5, e_small_w, -torch.log(v))
    return -torch.log(e)


class Noise(NamedTuple):
    """The noise every backend uses for one seed and shape.

    z:      float32 ``[..., K]`` standard normals (stream 0; ReDGE's initial x_{n-1}).
    u:      float64 ``[..., K]`` uniforms strictly inside (0, 1) (stream 1; the Gumbel-max sample).
    gumbel: float32 ``[..., K]``, ``-log(-log u)`` exactly as the kernels compute it.
    """

    z: torch.Tensor
    u: torch.Tensor
    gumbel: torch.Tensor


def sample_noise(shape: Sequence[int] | torch.Size, seed, device=None) -> Noise:
    """Counter-based noise for logits of shape ``[..., K]`` and an int ``seed`` in [0, 2**63).

    Element ``(row, col)`` of the flattened ``[R, K]`` view gets the noise of Philox counter
    ``row * K + col``: research code can use common random numbers across estimators, and tests
    compare backends sample by sample.

    >>> n = sample_noise((2, 3), seed=0)
    >>> n.z.shape, n.u.dtype, n.gumbel.dtype
    (torch.Size([2, 3]), torch.float64, torch.float32)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        raise ValueError("sample_noise: shape must have at least one dim (the vocabulary K)")
    if any(s < 0 for s in shape):
        raise ValueError(f"sample_noise: negative size in shape {shape}")
    if not isinstance(seed, torch.Tensor):
        seed = int(seed)
        if not 0 <= seed < MAX_SEED:
            raise ValueError(f"sample_noise: seed must be in [0, 2**63), got {seed}")
    k = shape[-1]
    rows = math.prod(shape[:-1])
    r0, r1, r2, _ = noise_bits(seed, rows, k, device)
    return Noise(normal_from_bits(r0, r1).reshape(shape),
                 uniform_from_bits(r2).reshape(shape),
                 gumbel_from_bits(r2).reshape(shape))
