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


class _FusedFunction(torch.autograd.Function):
    """Autograd over a backend's raw launchers, for a device the op is not registered for
    (the Triton kernels on CPU tensors under ``TRITON_INTERPRET=1``)."""

    @staticmethod
    def forward(ctx, phi, seed, coefs, method, hard, tau, mod):
        y, stats, index = mod.fwd(phi, seed, coefs, method, hard, tau)
        ctx.save_for_backward(phi, seed, coefs, stats, index)
        ctx.args = (method, hard, tau, mod)
        ctx.mark_non_differentiable(index)
        return y, index

    @staticmethod
    def backward(ctx, grad_y, grad_index):
        phi, seed, coefs, stats, index = ctx.saved_tensors
        method, hard, tau, mod = ctx.args
        grad_phi = mod.bwd(grad_y.contiguous(), phi, seed, coefs, stats, index, method, hard, tau)
        return grad_phi, None, None, None, None, None, None


def run_fused(name: str, phi, seed, coefs, method: int, hard: bool, tau: float):
    """``(y, index)`` from a fused backend, through the registered op when it covers the device."""
    if phi.device.type == DEVICE_TYPES[name]:
        y, _, index = torch.ops.redge_kernels.fwd(phi, seed, coefs, method, hard, tau)
        return y, index
    return _FusedFunction.apply(phi, seed, coefs, method, hard, tau, backend_module(name))
