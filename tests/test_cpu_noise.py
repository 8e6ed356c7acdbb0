"""The C++ bulk noise op ``redge_kernels_cpu::noise`` (csrc/noise_cpu.cpp) against noise.py.

It runs the kernels' own vectorized generator, so this pins the generator the fused CPU kernels
use at offsets far past 2**32 (row_start * cols), on non-multiple-of-8 sizes, and with one or both
streams requested. z and G may differ from noise.py in the last ulps of log / cos (docs/SPEC.md).
"""

import pytest
import torch

from redge_kernels import _cpu_backend, noise

if not _cpu_backend.available():
    pytest.skip(_cpu_backend.unavailable_reason(), allow_module_level=True)

# A few ulps of float32 (the same bound as the C++ known-answer tests).
TOL = {"rtol": 4 * 1.2e-7, "atol": 1e-6}


@pytest.mark.parametrize("rows,cols,row_start,seed", [
    (3, 1001, 0, 77),
    (5, 37, (2**33) // 37 + 11, 2**40 + 3),   # offsets past 2**33: the counter's high word is live
    (1, 65536 + 5, 65535, 123),                # row_start * cols crosses 2**32 inside the call
])
def test_bulk_noise_matches_noise_py(rows, cols, row_start, seed):
    z, g = torch.ops.redge_kernels_cpu.noise(torch.tensor(seed), rows, cols, row_start)
    r0, r1, r2, _ = noise.noise_bits(seed, rows, cols, row_start=row_start)
    assert z.shape == g.shape == (rows, cols) and z.dtype == g.dtype == torch.float32
    torch.testing.assert_close(z, noise.normal_from_bits(r0, r1), **TOL)
    torch.testing.assert_close(g, noise.gumbel_from_bits(r2), **TOL)


def test_noise_into_matches_noise():
    s = torch.tensor(2**35 + 17)
    z_ref, g_ref = torch.ops.redge_kernels_cpu.noise(s, 7, 13, 40)
    z, g = torch.full((7, 13), float("nan")), torch.full((7, 13), float("nan"))
    torch.ops.redge_kernels_cpu.noise_into(s, 40, z, g)
    assert torch.equal(z, z_ref) and torch.equal(g, g_ref)
    z2 = torch.zeros(7, 13)
    torch.ops.redge_kernels_cpu.noise_into(s, 40, z2, torch.empty(0))  # one stream only
    assert torch.equal(z2, z_ref)
    with pytest.raises(RuntimeError, match="contiguous float32"):
        torch.ops.redge_kernels_cpu.noise_into(s, 0, z2, torch.zeros(7, 12))


def test_bulk_noise_streams_optional_and_deterministic():
    s = torch.tensor(9)
    z, g = torch.ops.redge_kernels_cpu.noise(s, 4, 10, 0, True, False)
    assert g.numel() == 0 and z.shape == (4, 10)
    z2, g2 = torch.ops.redge_kernels_cpu.noise(s, 4, 10, 0, False, True)
    assert z2.numel() == 0 and g2.shape == (4, 10)
    z3, g3 = torch.ops.redge_kernels_cpu.noise(s, 4, 10)
    assert torch.equal(z, z3) and torch.equal(g2, g3)


def test_bulk_noise_rejects_bad_arguments():
    with pytest.raises(RuntimeError, match="seed must be a 0-dim int64"):
        torch.ops.redge_kernels_cpu.noise(torch.tensor([1]), 2, 2)
    with pytest.raises(RuntimeError, match=">= 0"):
        torch.ops.redge_kernels_cpu.noise(torch.tensor(1), -1, 2)
