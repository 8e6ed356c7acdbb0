"""CPU backend: the C++ extension ``redge_kernels._C`` (csrc/), which registers the CPU kernels
of ``redge_kernels::fwd`` / ``::bwd`` when imported. Absent until built (see README)."""

from __future__ import annotations

import torch

DEVICE_TYPE = "cpu"

try:
    from . import _C  # noqa: F401
    _ERROR = None
except ImportError as e:  # not built
    _C = None
    _ERROR = e


def available() -> bool:
    return _C is not None


def unavailable_reason() -> str:
    return (f"the C++ extension redge_kernels._C is not built ({_ERROR}); build it with "
            "`pip install --no-build-isolation -e .`")


def fwd(phi, seed, coefs, method, hard, tau, row_start=0, write_y=True):
    return torch.ops.redge_kernels.fwd(phi, seed, coefs, method, hard, tau, row_start, write_y)


def bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau, row_start=0):
    return torch.ops.redge_kernels.bwd(grad_y, phi, seed, coefs, stats, index, method, hard, tau,
                                       row_start)
