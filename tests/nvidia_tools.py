"""Shared preamble of the tests that compile Triton kernels for sm_90 without a GPU: triton
importable, the checkout's ``bench`` package importable (a top-level package of the checkout, not
installed), and the NVIDIA tools the triton wheel ships; the calling module is skipped otherwise."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(*tools: str) -> None:
    """Skip the calling test module unless triton and every tool in ``tools`` are available."""
    pytest.importorskip("triton")
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from bench.kernel_compile import nvidia_tool
    try:
        for tool in tools:
            nvidia_tool(tool)
    except FileNotFoundError as e:  # a triton wheel without the NVIDIA tools
        pytest.skip(str(e), allow_module_level=True)
