"""Argument checks run before any work (clear errors; no device syncs on the hot path).

Every check runs before the call's seed is drawn, so a refused call leaves the global RNG state
and a passed ``torch.Generator`` exactly as they were.

Numbers: wherever a Python number is accepted, so is any ``numbers.Integral`` (for ints) or
``numbers.Real`` (for floats), e.g. numpy scalars, and a 0-dim tensor of a matching dtype (read on
the host: a device sync for a CUDA tensor, a graph break under ``torch.compile``). ``bool`` (and
bool tensors) is refused everywhere a number is expected.
"""

from __future__ import annotations

import math
import numbers

import torch

from .noise import MAX_SEED

BACKENDS = ("auto", "reference", "cpu", "triton")
#: Accepted temperatures: the normal float32 range. The kernels compute in float32, where a
#: smaller tau is a subnormal or 0 and a larger one inf (NaN samples and gradients).
MIN_TAU = 2.0 ** -126  # 1.1754944e-38
MAX_TAU = float(torch.finfo(torch.float32).max)  # 3.4028235e38
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _is_bool(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.bool
    return isinstance(value, bool) or type(value).__name__ in ("bool", "bool_")  # numpy


def as_int(value, what: str) -> int:
    """``value`` as a Python int: a ``numbers.Integral`` or a 0-dim integer tensor, not a bool."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not _is_bool(value) \
            and not value.is_floating_point() and not value.is_complex():
        return int(value.item())
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return int(value)


def as_float(value, what: str) -> float:
    """``value`` as a Python float: a ``numbers.Real`` or a 0-dim real tensor, not a bool."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not _is_bool(value) \
            and not value.is_complex():
        return float(value.item())
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a float, got {type(value).__name__}")
    return float(value)


def check_logits(logits, fn: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{fn}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: logits must be float16, bfloat16, float32 or float64, got {logits.dtype}")
    if logits.dim() == 0:
        raise ValueError(f"{fn}: logits must have at least one dim (the vocabulary K), got a scalar")
    if logits.shape[-1] == 0:
        raise ValueError(f"{fn}: the vocabulary dim (last) has size 0; K must be >= 1")


def check_tau(tau, fn: str) -> float:
    tau = as_float(tau, f"{fn}: tau")
    if not (tau > 0.0) or math.isinf(tau):
        raise ValueError(f"{fn}: tau must be a finite float > 0, got {tau}")
    if not (MIN_TAU <= tau <= MAX_TAU):
        raise ValueError(f"{fn}: tau must be in [MIN_TAU, MAX_TAU] = [{MIN_TAU:.8g}, "
                         f"{MAX_TAU:.8g}] (a normal float32: the kernels compute in float32), "
                         f"got {tau}")
    return tau


def check_hard(hard, fn: str, what: str = "hard") -> bool:
    """``hard`` (or another flag) as a Python bool: a bool or a numpy bool."""
    if not isinstance(hard, bool):
        if _is_bool(hard) and not isinstance(hard, torch.Tensor):
            return bool(hard)  # numpy.bool_
        kind = type(hard)
        name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        raise TypeError(f"{fn}: {what} must be a bool, got {name}")
    return hard


def check_backend(backend, fn: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{fn}: unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def _seed_range_error(fn: str, value) -> ValueError:
    return ValueError(f"{fn}: seed must be in [0, 2**63), got {value}")


def check_seed(seed, generator, logits: torch.Tensor, fn: str):
    """Validate ``seed`` / ``generator`` (nothing is drawn): returns the seed as an int, as a
    0-dim int64 tensor, or None (draw one at run time).

    One rule for ints and tensors: a seed is an integer in [0, 2**63). A tensor seed is 0-dim,
    of an integer dtype, and its value is checked whenever it can be read without a device sync
    (a CPU tensor in eager mode); a device tensor is read by the kernels as it is (a value outside
    the range there gives, on every backend alike, the noise of its 64-bit pattern).
    ``generator=`` is refused under ``torch.compile`` (dynamo cannot trace a ``torch.Generator``):
    draw the seed outside the compiled function and pass it as a tensor (README).
    """
    if seed is not None and generator is not None:
        raise ValueError(f"{fn}: pass either seed= or generator=, not both")
    if seed is not None:
        if isinstance(seed, torch.Tensor):
            if seed.dim() != 0 or _is_bool(seed) or seed.is_floating_point() or seed.is_complex():
                raise TypeError(f"{fn}: a tensor seed must be a 0-dim integer (int64) tensor, got "
                                f"shape {tuple(seed.shape)} and dtype {seed.dtype}")
            if seed.device.type == "cpu" and not torch.compiler.is_compiling():
                value = int(seed.item())
                if not 0 <= value < MAX_SEED:
                    raise _seed_range_error(fn, value)
            return seed.to(device=logits.device, dtype=torch.int64)
        value = as_int(seed, f"{fn}: seed")
        if not 0 <= value < MAX_SEED:
            raise _seed_range_error(fn, value)
        return value
    if generator is not None:
        if torch.compiler.is_compiling():
            raise ValueError(f"{fn}: generator= cannot be used under torch.compile (dynamo does not "
                             "trace a torch.Generator); draw the seed outside the compiled function, "
                             "e.g. seed = torch.randint(0, 2**63 - 1, (), generator=gen), and pass "
                             "seed=seed")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")
        if torch.device(generator.device).type != logits.device.type:
            raise ValueError(f"{fn}: generator is on {generator.device} but logits are on "
                             f"{logits.device}; pass a generator of the logits' device")
    return None


def seed_tensor(logits: torch.Tensor, seed, generator) -> torch.Tensor:
    """The call's seed as a 0-dim int64 tensor on ``logits.device``, from a value ``check_seed``
    returned: an int or tensor as given, else drawn from ``generator`` (or, when None, from the
    default generator of ``logits``' device, so ``torch.manual_seed`` governs it)."""
    if isinstance(seed, torch.Tensor):
        return seed
    if seed is not None:
        return torch.tensor(seed, dtype=torch.int64, device=logits.device)
    return torch.randint(0, MAX_SEED - 1, (), dtype=torch.int64, device=logits.device,
                         generator=generator)


def check_weight(fn: str, name: str, w: torch.Tensor, logits: torch.Tensor, expect: str) -> None:
    """An embedding matrix ``w`` for ``logits [..., K]``: 2-D with ``K`` rows (``expect`` names the
    shape for the message, e.g. ``"[K, D] with K = 5 (the logits' last dim)"``), on the logits'
    device and in their dtype (``y @ W`` needs both)."""
    if w.dim() != 2 or w.shape[0] != logits.shape[-1]:
        raise ValueError(f"{fn}: {name} must be {expect}, got shape {tuple(w.shape)}")
    if w.device != logits.device:
        raise ValueError(f"{fn}: {name} is on {w.device} but logits are on {logits.device}")
    if w.dtype != logits.dtype:
        raise TypeError(f"{fn}: {name} has dtype {w.dtype} but logits have {logits.dtype}; "
                        "pass both in one dtype (y @ W needs it)")
