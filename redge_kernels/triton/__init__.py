"""Triton backend (GPU; CPU tensors too under ``TRITON_INTERPRET=1``): fused ReDGE kernels.

Backend contract (``redge_kernels._backends``): ``DEVICE_TYPE``, ``available()``,
``unavailable_reason()``, ``runs_on(device_type)`` and the raw launchers ``fwd`` / ``bwd`` with the
semantics of ``redge_kernels.ops``. Importing this module registers the launchers as the CUDA
kernels of ``redge_kernels::fwd`` / ``::bwd`` (the op's fake implementation and autograd live in
``ops``), so ``torch.compile(fullgraph=True)`` sees one opaque op per call.

Kernels: ``_diffusion`` (redge, redge_cov, redge_max) and ``_onepass`` (st, gumbel, reinmax), one
body per family with constexpr variant flags; ``_noise`` (in-kernel Philox, bit-identical to
``redge_kernels.noise``); ``_launch`` (path / block / warps from K); ``compile_check`` (AOT
compilation for sm_80 / sm_90 with register and spill report).
"""

from __future__ import annotations

import os

import torch

DEVICE_TYPE = "cuda"

try:
    import triton  # noqa: F401
    _ERROR = None
except ImportError as e:  # triton is optional
    triton = None
    _ERROR = e


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Triton importable, and a CUDA device present or the interpreter switched on."""
    return _ERROR is None and (torch.cuda.is_available() or _interpreting())


def unavailable_reason() -> str:
    if _ERROR is not None:
        return f"triton is not importable ({_ERROR})"
    if not available():
        return "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU tensors)"
    return ""


def runs_on(device_type: str) -> bool:
    """CUDA tensors, and CPU tensors under ``TRITON_INTERPRET=1``."""
    return device_type == "cuda" or (device_type == "cpu" and _interpreting())


if _ERROR is None:
    from .. import ops as _ops  # noqa: F401  (defines the op schema)
    from ._launch import bwd, config, fwd

    torch.library.register_kernel("redge_kernels::fwd", "cuda", fwd)
    torch.library.register_kernel("redge_kernels::bwd", "cuda", bwd)
else:
    def fwd(*args, **kwargs):
        raise RuntimeError(unavailable_reason())

    def bwd(*args, **kwargs):
        raise RuntimeError(unavailable_reason())

__all__ = ["DEVICE_TYPE", "available", "unavailable_reason", "runs_on", "fwd", "bwd"]
