"""Counter-based noise, contract version 2: what every backend reproduces bit for bit
(docs/SPEC.md "Randomness (noise contract, version 2)").

Generator: Philox4x32-10 (Salmon et al. 2011; the generator of cuRAND, Triton's ``tl.philox`` and
PyTorch's CUDA backend), evaluated here with plain int64 torch ops so that it runs on any device.

Layout. ``row`` is the index of the row after flattening the leading dims (0 <= row < 2**64), ``col``
the *global* vocabulary index (0 <= col < 2**34), ``stream`` 0 or 1::

    seed    : int64 in [0, 2**63)          key     = (seed & 0xFFFFFFFF, seed >> 32)
    j       = col >> 2                     counter = (j, row & 0xFFFFFFFF, row >> 32, stream)
    (w0, w1, w2, w3) = Philox4x32_10(counter, key)      # one call for columns 4j .. 4j+3

The noise of an element depends on (seed, row, col) only: not on K, on the number of rows, on
strides or on which kernel path runs. Padding the vocabulary, appending rows, or computing the
columns ``[c0, c0 + k)`` of a row as a vocabulary shard (any integer ``c0``) leaves it unchanged.

Stream 0, the standard normal ``z`` by Box-Muller, both outputs used, in float32::

    u(w) = f32(w) * 2**-32 + 2**-33          in [2**-33, 1], never 0, exact near 0
    v(w) = f32(w) * 2**-32                   in [0, 1]
    rho  = sqrt(-2 * log(u(w_a)))            theta = v(w_b) * TWO_PI_F32
    (z[4j],   z[4j+1]) = (rho * cos(theta), rho * sin(theta))   with (w_a, w_b) = (w0, w1)
    (z[4j+2], z[4j+3]) = (rho * cos(theta), rho * sin(theta))   with (w_a, w_b) = (w2, w3)

Stream 1, the uniforms of the Gumbel-max sample: column ``col`` takes word ``w = w_(col & 3)`` of its
stream-1 call, ``u = (w + 1/2) * 2**-32`` strictly inside (0, 1) and using all 32 bits. The Gumbel
variable ``G = -log(-log u)`` is computed in float32 without ever rounding ``u`` itself, so both
tails keep full resolution (the upper tail of G, which decides whether rare tokens of a 256k
vocabulary are ever drawn, reaches G ~ 22.9 instead of 16.6)::

    a  = f32(~w) * 2**-32 + 2**-33           # = 1 - u, exact near 0
    b  = f32(w)  * 2**-32 + 2**-33           # = u,     exact near 0
    E  = -log(u) = -log1p(-a)   if a < 1/2   # log1p by Goldberg's trick:
                                             #   a                                 if 1 - a == 1
                                             #   -log(1 - a) * a / (1 - (1 - a))   otherwise
                 = -log(b)      otherwise
    G  = -log(E)

``f32(w)`` is the round-to-nearest conversion of the unsigned 32-bit integer to float32,
``TWO_PI_F32`` is float32(2 pi) = 0x1.921fb6p+2; every other operation is a float32 IEEE operation
in the order written, so the kernels differ from this file by at most the last-ulp differences of
their ``log`` / ``cos`` / ``sin`` / ``sqrt`` implementations (the Triton kernels take log1p(-a) as
the log of the exact 1 - a instead of Goldberg's quotient: the same function, docs/SPEC.md
section 7.1). The backward needs stream 0 only.

Version 1 (release 0.1.0) used one call per element with counter ``(row * K + col, 0, 0, 0)``,
words 0/1 for z (cosine only) and word 2 for the uniform; ``NOISE_VERSION`` names the contract.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

__all__ = ["Noise", "NOISE_VERSION", "MAX_SEED", "MAX_COLS", "MAX_ROWS", "philox4x32", "counter",
           "noise_bits", "normal_from_bits", "uniform_from_bits", "gumbel_from_bits",
           "normal_noise", "uniform_noise", "gumbel_noise", "sample_noise"]

#: The noise contract this module implements (docs/SPEC.md "Randomness (noise contract, version 2)").
NOISE_VERSION = 2
#: Seeds are int64 in [0, MAX_SEED).
MAX_SEED = 2**63
#: Global column indices are in [0, MAX_COLS): the counter's 32-bit word 0 holds col >> 2.
MAX_COLS = 2**34
#: Row indices are in [0, MAX_ROWS): the counter's words 1 and 2 hold the row's low and high halves.
MAX_ROWS = 2**64

_MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_TWO_PI_F32 = float(torch.tensor(2.0 * math.pi, dtype=torch.float32))
assert _TWO_PI_F32 == float.fromhex("0x1.921fb6p+2")
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


def _check_stream(stream) -> int:
    if isinstance(stream, bool) or not isinstance(stream, int) or stream not in (0, 1):
        raise ValueError(f"stream must be 0 (the normal z) or 1 (the Gumbel uniforms), got {stream!r}")
    return stream


def _check_range(name: str, start, count, limit: int, what: str) -> tuple[int, int]:
    for arg, val in ((f"{name}_start", start), (name + "s", count)):
        if isinstance(val, bool) or not isinstance(val, int):
            raise TypeError(f"{arg} must be an int, got {type(val).__name__}")
    if start < 0 or count < 0:
        raise ValueError(f"{name}_start and {name}s must be >= 0, got {start} and {count}")
    if start + count > limit:
        raise ValueError(f"{what}: {name}s [{start}, {start + count}) exceed the noise counter's "
                         f"range [0, {limit}) (docs/SPEC.md \"Randomness\")")
    return start, count


def counter(row, col, stream: int):
    """The Philox counter words ``(col >> 2, row & 0xFFFFFFFF, row >> 32, stream)`` of an element.

    ``row`` and ``col`` are Python ints or int64 tensors (they broadcast); a Python int ``row`` may
    use the full range [0, 2**64). Returns four int64 tensors holding uint32 values.
    """
    stream = _check_stream(stream)
    if not isinstance(row, torch.Tensor):
        if not 0 <= int(row) < MAX_ROWS:
            raise ValueError(f"row must be in [0, 2**64), got {row}")
        row = int(row)
        lo, hi = torch.tensor(row & _MASK32), torch.tensor(row >> 32)
    else:
        if bool((row < 0).any()):
            raise ValueError("row must be in [0, 2**64)")
        lo, hi = row & _MASK32, row >> 32
    col = torch.as_tensor(col, dtype=torch.int64)
    if bool(((col < 0) | (col >= MAX_COLS)).any()):
        raise ValueError("col must be in [0, 2**34): the counter's 32-bit word holds col >> 2")
    c3 = torch.full((), stream, dtype=torch.int64, device=lo.device)
    return col >> 2, lo, hi, c3


def _seed_key(seed, device):
    if isinstance(seed, torch.Tensor):
        s = seed.to(device=device, dtype=torch.int64)
    else:
        s = torch.tensor(int(seed), dtype=torch.int64, device=device)
    return s & _MASK32, (s >> 32) & _MASK32


def noise_bits(seed, rows: int, cols: int, device=None, *, stream: int, row_start: int = 0,
               col_start: int = 0):
    """The Philox words of the calls that hold the block ``[row_start : row_start + rows,
    col_start : col_start + cols]`` (global row and column indices; ``col_start`` any int).

    Returns four int64 tensors ``(w0, w1, w2, w3)`` of shape ``[rows, cols]`` holding uint32 values:
    entry ``[r, c]`` of ``w_i`` is word i of the stream-``stream`` call of global column
    ``col_start + c`` (the four columns of a call repeat its words). ``seed`` is an int or a 0-dim
    int64 tensor (read on its device without a host sync).
    """
    stream = _check_stream(stream)
    _check_range("row", row_start, rows, MAX_ROWS, "noise_bits")
    _check_range("col", col_start, cols, MAX_COLS, "noise_bits")
    if isinstance(seed, torch.Tensor) and device is None:
        device = seed.device
    k0, k1 = _seed_key(seed, device)
    # Row words without int64 overflow: rows may reach 2**64 - 1.
    lo = torch.arange(rows, device=device, dtype=torch.int64) + (row_start & _MASK32)
    hi = (lo >> 32) + (row_start >> 32)
    lo = lo & _MASK32
    g0 = col_start >> 2
    n_calls = 0 if cols == 0 else ((col_start + cols - 1) >> 2) - g0 + 1
    j = torch.arange(g0, g0 + n_calls, device=device, dtype=torch.int64)
    c3 = torch.full((), stream, dtype=torch.int64, device=device)
    words = philox4x32(j[None, :], lo[:, None], hi[:, None], c3, k0, k1)
    call = (torch.arange(col_start, col_start + cols, device=device, dtype=torch.int64) >> 2) - g0
    return tuple(w.expand(rows, n_calls)[:, call] for w in words)


def _lanes(cols: int, col_start: int, device) -> torch.Tensor:
    return torch.arange(col_start, col_start + cols, device=device, dtype=torch.int64) & 3


def _f32(bits: torch.Tensor) -> torch.Tensor:
    """Round-to-nearest float32 of uint32 values held in int64 (exact conversion, one rounding)."""
    return bits.to(torch.float32)


def normal_from_bits(w0, w1, w2, w3, lane) -> torch.Tensor:
    """Stream 0: the float32 normal of each column from the four words of its call and its lane
    ``col & 3`` (int64, broadcasts): lanes 0/1 are rho(w0) cos / sin of the angle of w1, lanes 2/3
    those of (w2, w3) (module docstring)."""
    second = lane >= 2
    w_a = torch.where(second, w2, w0)
    w_b = torch.where(second, w3, w1)
    rho = torch.sqrt(-2.0 * torch.log(_f32(w_a) * _TWO_M32 + _TWO_M33))
    theta = (_f32(w_b) * _TWO_M32) * _TWO_PI_F32
    return rho * torch.where((lane & 1) == 1, torch.sin(theta), torch.cos(theta))


def uniform_from_bits(w: torch.Tensor) -> torch.Tensor:
    """Stream 1 as the exact float64 uniform ``(w + 1/2) * 2**-32``, strictly inside (0, 1); ``w``
    is the column's own word ``w_(col & 3)``."""
    return (w.to(torch.float64) + 0.5) * _TWO_M32


def gumbel_from_bits(w: torch.Tensor) -> torch.Tensor:
    """Stream 1 as the float32 Gumbel(0, 1) variable ``-log(-log u)`` (module docstring); ``w`` is
    the column's own word ``w_(col & 3)``."""
    a = _f32(w ^ _MASK32) * _TWO_M32 + _TWO_M33  # 1 - u
    b = _f32(w) * _TWO_M32 + _TWO_M33  # u
    one_minus_a = 1.0 - a
    denom = 1.0 - one_minus_a  # exact (Sterbenz) for a < 1/2
    e_small_a = torch.where(one_minus_a == 1.0, a,
                            -torch.log(one_minus_a) * a / torch.where(denom == 0, 1.0, denom))
    e = torch.where(a < 0.5, e_small_a, -torch.log(b))
    return -torch.log(e)


def _own_word(seed, rows, cols, device, row_start, col_start) -> torch.Tensor:
    w = noise_bits(seed, rows, cols, device, stream=1, row_start=row_start, col_start=col_start)
    lane = _lanes(cols, col_start, w[0].device)
    return torch.stack(w, -1).gather(-1, lane.expand(rows, cols)[..., None])[..., 0]


def normal_noise(seed, rows: int, cols: int, device=None, *, row_start: int = 0,
                 col_start: int = 0) -> torch.Tensor:
    """float32 ``z [rows, cols]`` (stream 0) of global rows ``row_start ..`` and columns
    ``col_start ..``."""
    w = noise_bits(seed, rows, cols, device, stream=0, row_start=row_start, col_start=col_start)
    return normal_from_bits(*w, _lanes(cols, col_start, w[0].device))


def uniform_noise(seed, rows: int, cols: int, device=None, *, row_start: int = 0,
                  col_start: int = 0) -> torch.Tensor:
    """float64 uniforms ``u [rows, cols]`` (stream 1), strictly inside (0, 1)."""
    return uniform_from_bits(_own_word(seed, rows, cols, device, row_start, col_start))


def gumbel_noise(seed, rows: int, cols: int, device=None, *, row_start: int = 0,
                 col_start: int = 0) -> torch.Tensor:
    """float32 Gumbel ``G [rows, cols]`` (stream 1) exactly as the kernels compute it."""
    return gumbel_from_bits(_own_word(seed, rows, cols, device, row_start, col_start))


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
    """Noise version 2 for logits of shape ``[..., K]`` and an int ``seed`` in [0, 2**63).

    Element ``(row, col)`` of the flattened ``[R, K]`` view gets the noise of (seed, row, col), as
    in the module docstring: research code can use common random numbers across estimators, and
    tests compare backends sample by sample.

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
    if k > MAX_COLS:
        raise ValueError(f"sample_noise: K = {k} exceeds the noise counter's 2**34 columns")
    w = _own_word(seed, rows, k, device, 0, 0)
    return Noise(normal_noise(seed, rows, k, device).reshape(shape),
                 uniform_from_bits(w).reshape(shape), gumbel_from_bits(w).reshape(shape))
