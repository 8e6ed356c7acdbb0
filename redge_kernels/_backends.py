"""Backend resolution: ``"auto"`` -> a fused backend for the logits' device, else the reference.

A fused backend is a module exposing ``available() -> bool``, ``unavailable_reason() -> str``,
``DEVICE_TYPE`` (the dispatch key it registers ``redge_kernels::fwd/bwd`` for) and the raw launchers
``fwd(phi, seed, coefs, method, hard, tau)`` / ``bwd(...)`` with the ``ops`` signatures.
Backends never import each other; this module imports them lazily.
"""

from __future__ import annotations

import importlib
import warnings

import torch

_MODULES = {"cpu": "redge_kernels._cpu_backend", "triton": "redge_kernels.triton"}
_warned: set[str] = set()


def backend_module(name: str):
    return importlib.import_module(_MODULES[name])


def available_backends() -> list[str]:
    """Names of the backends usable in this process (``reference`` always is)."""
    out = ["reference"]
    for name in _MODULES:
        try:
            if backend_module(name).available():
                out.append(name)
        except ImportError:
            pass
    return out


def _usable(name: str) -> tuple[bool, str]:
    try:
        mod = backend_module(name)
    except ImportError as e:  # e.g. triton not installed
        return False, str(e)
    return (True, "") if mod.available() else (False, mod.unavailable_reason())


def resolve(backend: str, phi: torch.Tensor, fn: str) -> str:
    dev = phi.device.type
    if backend == "auto":
        preferred = {"cuda": "triton", "cpu": "cpu"}.get(dev)
        if preferred is not None:
            ok, why = _usable(preferred)
            if ok:
                return preferred
        else:
            why = f"no fused backend exists for device type {dev!r}"
        if dev not in _warned:
            _warned.add(dev)
            warnings.warn(f"redge_kernels: using the pure-PyTorch reference backend on {dev} "
                          f"({why})", RuntimeWarning, stacklevel=4)
        return "reference"
    if backend == "reference":
        return backend
    ok, why = _usable(backend)
    if not ok:
        raise RuntimeError(f"{fn}: backend={backend!r} is not available: {why}")
    mod = backend_module(backend)
    if dev != mod.DEVICE_TYPE and not getattr(mod, "runs_on", lambda d: False)(dev):
        raise ValueError(f"{fn}: backend={backend!r} runs on {mod.DEVICE_TYPE} tensors, "
                         f"but logits are on {phi.device}")
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
    mod = backend_module(name)
    if phi.device.type == mod.DEVICE_TYPE:
        from . import ops  # noqa: F401  (defines the op schema)
        y, _, index = torch.ops.redge_kernels.fwd(phi, seed, coefs, method, hard, tau)
        return y, index
    return _FusedFunction.apply(phi, seed, coefs, method, hard, tau, mod)
