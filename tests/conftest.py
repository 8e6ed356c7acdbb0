"""Test session set-up.

Without a CUDA device, the Triton kernels are exercised by Triton's CPU interpreter; the switch must
be set before triton decorates any kernel, hence here, before any test module imports the package.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
