"""Argument checks run before any work (clear errors; no device syncs)."""

from __future__ import annotations

import math

import torch

from .noise import MAX_SEED

BACKENDS = ("auto", "reference", "cpu", "triton")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


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
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"{fn}: tau must be a float, got {type(tau).__name__}")
    tau = float(tau)
    if not (tau > 0.0) or math.isinf(tau):
        raise ValueError(f"{fn}: tau must be a finite float > 0, got {tau}")
    return tau


def check_hard(hard, fn: str) -> bool:
    if not isinstance(hard, bool):
        raise TypeError(f"{fn}: hard must be a bool, got {type(hard).__name__}")
    return hard


def check_backend(backend, fn: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{fn}: unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def seed_tensor(logits: torch.Tensor, seed, generator, fn: str, out=None) -> torch.Tensor:
    """The call's seed as a 0-dim int64 tensor on ``logits.device``.

    ``seed`` (an int in [0, 2**63)) wins; else a seed is drawn from ``generator`` or, when it is
    None, from the default generator of ``logits``' device (so ``torch.manual_seed`` governs it).
    ``out`` (optional, a 0-dim int64 tensor on that device) receives an int or drawn seed in place
    (``out.random_(lo, hi)`` is ``torch.randint(lo, hi, ())``'s own draw: same value, same
    generator advance); a tensor ``seed`` is returned as given.
    """
    if seed is not None and generator is not None:
        raise ValueError(f"{fn}: pass either seed= or generator=, not both")
    if seed is not None:
        if isinstance(seed, torch.Tensor):
            if seed.dim() != 0 or seed.dtype != torch.int64:
                raise TypeError(f"{fn}: a tensor seed must be a 0-dim int64 tensor")
            return seed.to(logits.device)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"{fn}: seed must be an int, got {type(seed).__name__}")
        if not 0 <= seed < MAX_SEED:
            raise ValueError(f"{fn}: seed must be in [0, 2**63), got {seed}")
        if out is not None:
            return out.fill_(seed)
        return torch.tensor(seed, dtype=torch.int64, device=logits.device)
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")
        if torch.device(generator.device).type != logits.device.type:
            raise ValueError(f"{fn}: generator is on {generator.device} but logits are on "
                             f"{logits.device}; pass a generator of the logits' device")
    if out is not None:
        return out.random_(0, MAX_SEED - 1, generator=generator)
    return torch.randint(0, MAX_SEED - 1, (), dtype=torch.int64, device=logits.device,
                         generator=generator)
