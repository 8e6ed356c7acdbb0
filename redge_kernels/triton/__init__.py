"""Triton backend (GPU; CPU tensors too under ``TRITON_INTERPRET=1``): fused ReDGE kernels.

Backend contract (``redge_kernels._backends``): ``DEVICE_TYPE``, ``available()``,
``unavailable_reason()``, ``runs_on(device_type)`` and the raw launchers ``fwd`` / ``bwd`` with the
semantics of ``redge_kernels.ops``. Importing this module registers the launchers as the CUDA
kernels of ``redge_kernels::fwd`` / ``::bwd`` (the op's fake implementation and autograd live in
``ops``), so ``torch.compile(fullgraph=True)`` sees one opaque op per call.

Kernels: ``_diffusion`` (redge, redge_cov, redge_max) and ``_onepass`` (st, gumbel, reinmax), one
body per family with constexpr variant flags, and for K <= ``_launch.ROWS_MAX_K`` their
several-rows-per-program forms ``_diffusion_rows`` and ``_onepass_rows``; ``_noise`` (in-kernel Philox, noise version 2,
bit-identical in the words to ``redge_kernels.noise``); ``_gumbel_max`` (the exact sample, G
evaluated only for candidates of a log-free bound); ``_launch`` (path / block / warps from K). The
ahead-of-time compile check (registers, stack and spills with the runtime specialization) and the
performance model of the machine code live in ``bench/`` (``bench.compile_check``,
``bench.gpu_model``).

Design notes (docs/SPEC.md "Memory and passes"):

* Between forward and backward only ``stats [R, n, 2]`` (per-step row max and normaliser), the
  index and the seed are kept; z and G are regenerated in-kernel from the seed.
* Path (a), the row in one block: phi (and g) read once, y / grad_phi written once. The backward
  needs p_k in the order k = 1 .. n-1 while the chain produces them from n-1 down, so it walks the
  chain once with the saved stats (bitwise the forward's p_k) and keeps p_k in a per-program
  scratch slot [n-1, BLOCK] that each thread reads back (O(n) exps per element; a persistent grid
  that fills the SMs' warp slots keeps the slots few).
* Path (b), tiled, persistent: ``min(R, 2 per SM)`` programs loop over the rows, each with a
  float32 scratch slot that stays in L2. Forward: one pass per denoiser (+1 for redge_cov's base
  softmax), z drawn in the first and the trajectory x_k kept in the slot, so each pass takes one
  DDIM step (O(n) work per element), folding l_k into an online (m, s); then an output pass
  (write-only for hard samples). Backward: pass 1 walks the chain once and keeps p_1 .. p_{n-1}
  (redge_cov also x_k and z) with the carried (gx, gphi[, gmu, glam]) in the slot; pass j
  finishes backward step j-1 from the slot and reduces d_j = <gp_j, p_j> (O(n) exps per element),
  +1 pass for redge_cov, then the output.
  Per-row scalars of finished passes live in a small register vector (``STEPS_P2`` = next power
  of two of n; n itself is a runtime loop bound).
* The Gumbel-max sample (``_gumbel_max``) draws the stream-1 words (a quarter of a Philox call per
  element), bounds G without a log, and evaluates the exact G only for the candidates.
* Runtime floats (tau, the schedule table) and n, row_offset, col_offset are kernel arguments,
  never constexprs; floating-point contraction is pinned (``_launch.FP_FUSION``).
* Offsets are int64 (row index, columns, Philox counter).
* Not done: a 2-D (row x vocab chunk) grid for few rows with huge K (each
  denoiser needs the full-row reduction before the next one, so it means one launch per pass with
  partial (m, s) combined in a fixed order, or a grid-wide barrier). The tiled backward's slot is
  (n + 1) K floats per program (2 n + 3 for redge_cov): at large K it is more than L2 holds for
  all programs, so its passes move bytes beyond the floor.
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
    from ._launch import bwd, config, fwd  # noqa: F401  (config: the path / block rule)

    torch.library.register_kernel("redge_kernels::fwd", "cuda", fwd)
    torch.library.register_kernel("redge_kernels::bwd", "cuda", bwd)
else:
    def fwd(*args, **kwargs):
        raise RuntimeError(unavailable_reason())

    def bwd(*args, **kwargs):
        raise RuntimeError(unavailable_reason())

__all__ = ["DEVICE_TYPE", "available", "unavailable_reason", "runs_on", "fwd", "bwd"]
