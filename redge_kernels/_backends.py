"""Backend resolution: ``"auto"`` -> a fused backend for the logits' device, else the reference.

A fused backend is a module exposing ``available() -> bool``, ``unavailable_reason() -> str``,
``DEVICE_TYPE`` (the dispatch key it registers ``redge_kernels::fwd/bwd`` for), optionally
``runs_on(device_type)``, and the raw launchers ``fwd(phi, seed, coefs, method, hard, tau)`` /
``bwd(...)`` with the ``ops`` signatures. Backends never import each other; this module imports them
lazily. The decisions are plain strings computed once per (backend, device type) and marked as
constants for ``torch.compile``, so a compiled caller traces straight to the registered op.
"""

from __future__ import annotations

import functools
import importlib
import warnings

import torch

from . import ops

_MODULES = {"cpu": "redge_kernels._cpu_backend", "triton": "redge_kernels.triton"}
#: The dispatch key each fused backend registers its kernels for.
DEVICE_TYPES = {"cpu": "cpu", "triton": "cuda"}
#: The fused backend "auto" prefers on each device type.
_PREFERRED = {"cpu": "cpu", "cuda": "triton"}


def backend_module(name: str):
    return importlib.import_module(_MODULES[name])


@functools.lru_cache(maxsize=None)
def _unusable_reason(name: str) -> str:
    """'' when backend ``name`` can run in this process, else why not."""
    try:
        mod = backend_module(name)
    except ImportError as e:  # e.g. triton not installed
        return str(e)
    return "" if mod.available() else mod.unavailable_reason()


def _usable(name: str) -> tuple[bool, str]:
    why = _unusable_reason(name)
    return why == "", why


def available_backends() -> list[str]:
    """Names of the backends usable in this process (``reference`` always is)."""
    return ["reference"] + [name for name in _MODULES if _usable(name)[0]]


_warned: set[str] = set()


@torch.compiler.assume_constant_result
def _auto(device_type: str) -> str:
    preferred = _PREFERRED.get(device_type)
    if preferred is not None:
        ok, why = _usable(preferred)
        if ok:
            return preferred
    else:
        why = f"no fused backend exists for device type {device_type!r}"
    if device_type not in _warned:
        _warned.add(device_type)
        warnings.warn(f"redge_kernels: using the pure-PyTorch reference backend on {device_type} "
                      f"({why})", RuntimeWarning, stacklevel=5)
    return "reference"


@torch.compiler.assume_constant_result
def _explicit_error(backend: str, device_type: str) -> str:
    """'' when ``backend`` can run on ``device_type``, else the error message."""
    ok, why = _usable(backend)
    if not ok:
        return f"backend={backend!r} is not available: {why}"
    if device_type != DEVICE_TYPES[backend]:
        runs_on = getattr(backend_module(backend), "runs_on", lambda d: False)
        if not runs_on(device_type):
            return f"backend={backend!r} runs on {DEVICE_TYPES[backend]} tensors, but logits are on {device_type}"
        _register_interpreted(backend)
    return ""


def resolve(backend: str, phi: torch.Tensor, fn: str) -> str:
    dev = phi.device.type
    if backend == "auto":
        return _auto(dev)
    if backend == "reference":
        return backend
    err = _explicit_error(backend, dev)
    if err:
        exc = RuntimeError if "not available" in err else ValueError
        raise exc(f"{fn}: {err}")
    return backend


_INTERPRETED: list = []


def _register_interpreted(name: str) -> None:
    """Make backend ``name``'s launchers the CPU kernels of ``interpreted_fwd/bwd`` (once; only
    the Triton backend runs on CPU tensors this way). Called from ``_explicit_error``, so a
    compiled caller never traces it."""
    if _INTERPRETED:
        if _INTERPRETED[0] != name:
            raise RuntimeError(f"the interpreted ops already run backend {_INTERPRETED[0]!r}")
        return
    mod = backend_module(name)
    torch.library.register_kernel("redge_kernels::interpreted_fwd", "cpu", mod.fwd, lib=ops.LIB)
    torch.library.register_kernel("redge_kernels::interpreted_bwd", "cpu", mod.bwd, lib=ops.LIB)
    _INTERPRETED.append(name)


def op_pair(name: str, device_type: str) -> ops.OpPair:
    """The registered ops that run fused backend ``name`` on tensors of ``device_type``: the
    native pair on the backend's own device, else the interpreted pair (``resolve`` registered
    its kernels)."""
    return ops.PAIRS["native" if device_type == DEVICE_TYPES[name] else "interpreted"]


def run_fused(name: str, phi, seed, coefs, method: int, hard: bool, tau: float):
    """``(y, index)`` from fused backend ``name``, always through its registered op (whose
    autograd kernel is in ``ops``)."""
    y, _, index = ops.call_fwd(op_pair(name, phi.device.type), phi, seed, coefs, method, hard, tau)
    return y, index
