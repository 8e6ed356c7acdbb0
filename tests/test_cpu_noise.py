"""The C++ kernels' noise (csrc/noise_impl.h) against noise.py, through the development hook
``redge_kernels_cpu::_noise`` / ``_noise_into`` (csrc/noise_cpu.cpp) and through the fused ops.

The hook runs the kernels' own vectorized generator, so this pins the generator the fused CPU
kernels use: rows past 2**32 (the counter's high word), shards starting at any global column
(c0 not a multiple of 4 included), non-multiple-of-8 sizes, one or both streams. z and G may
differ from noise.py in the last ulps of log / cos / sin (docs/SPEC.md "Randomness").
The invariances of version 2 (noise independent of K, of the number of rows, and of where a
vocabulary shard starts) are checked on the fused CPU kernels' samples as well.
"""

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _cpu_backend, noise

from cpu_cases import _schedule

if not _cpu_backend.available():
    pytest.skip(_cpu_backend.unavailable_reason(), allow_module_level=True)

# A few ulps of float32 (the same bound as the C++ known-answer tests).
TOL = {"rtol": 4 * 1.2e-7, "atol": 1e-6}
_noise = torch.ops.redge_kernels_cpu._noise
_noise_into = torch.ops.redge_kernels_cpu._noise_into


@pytest.mark.parametrize("rows,cols,row_start,col_start,seed", [
    (3, 1001, 0, 0, 77),
    (5, 37, 2**32 - 2, 0, 2**40 + 3),          # rows cross 2**32: the counter's high word is live
    (2, 70, 2**40 + 1, 5, 123),                # a shard starting inside a group of 4 columns
    (1, 65536 + 5, 7, 2**33 + 3, 2**62 + 1),   # a long row far into the vocabulary
    (4, 3, 11, 2**34 - 3, 9),                  # the last columns below 2**34
])
def test_bulk_noise_matches_noise_py(rows, cols, row_start, col_start, seed):
    z, g = _noise(torch.tensor(seed), rows, cols, row_start, col_start)
    kw = {"row_start": row_start, "col_start": col_start}
    assert z.shape == g.shape == (rows, cols) and z.dtype == g.dtype == torch.float32
    torch.testing.assert_close(z, noise.normal_noise(seed, rows, cols, **kw), **TOL)
    torch.testing.assert_close(g, noise.gumbel_noise(seed, rows, cols, **kw), **TOL)


def test_shards_at_every_start_see_the_unsharded_noise():
    s = torch.tensor(2**35 + 17)
    z, g = _noise(s, 3, 200, 10, 0)
    for c0 in range(0, 9):
        for width in (1, 3, 8, 37):
            zs, gs = _noise(s, 3, width, 10, c0)
            assert torch.equal(zs, z[:, c0:c0 + width]) and torch.equal(gs, g[:, c0:c0 + width])


def test_noise_into_matches_noise():
    s = torch.tensor(2**35 + 17)
    z_ref, g_ref = _noise(s, 7, 13, 40, 6)
    z, g = torch.full((7, 13), float("nan")), torch.full((7, 13), float("nan"))
    _noise_into(s, 40, 6, z, g)
    assert torch.equal(z, z_ref) and torch.equal(g, g_ref)
    z2 = torch.zeros(7, 13)
    _noise_into(s, 40, 6, z2, torch.empty(0))  # one stream only
    assert torch.equal(z2, z_ref)
    with pytest.raises(ValueError, match="contiguous float32"):
        _noise_into(s, 0, 0, z2, torch.zeros(7, 12))


def test_bulk_noise_streams_optional_and_deterministic():
    s = torch.tensor(9)
    z, g = _noise(s, 4, 10, 0, 0, True, False)
    assert g.numel() == 0 and z.shape == (4, 10)
    z2, g2 = _noise(s, 4, 10, 0, 0, False, True)
    assert z2.numel() == 0 and g2.shape == (4, 10)
    z3, g3 = _noise(s, 4, 10)
    assert torch.equal(z, z3) and torch.equal(g2, g3)


def test_bulk_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seed must be a 0-dim int64"):
        _noise(torch.tensor([1]), 2, 2)
    with pytest.raises(ValueError, match=">= 0"):
        _noise(torch.tensor(1), -1, 2)
    with pytest.raises(ValueError, match="2\\^34"):
        _noise(torch.tensor(1), 1, 5, 0, 2**34 - 4)
    _noise(torch.tensor(1), 1, 4, 0, 2**34 - 4)  # the last call is fine


# ---- invariances of the fused kernels' samples (docs/SPEC.md "Randomness", version 2) ----

def _fwd(method, phi, seed, lanes, monkeypatch):
    """(soft y, index) of the fused CPU forward; lanes = REDGE_KERNELS_LANE_MAX_K (0: row kernels)."""
    monkeypatch.setenv("REDGE_KERNELS_LANE_MAX_K", str(lanes))
    return rk.sample(method, phi, hard=False, seed=seed, backend="cpu", return_index=True,
                     schedule=_schedule(method, 4, 0.6))


@pytest.mark.parametrize("lanes", [0, 256])
@pytest.mark.parametrize("k", [5, 37, 300])
def test_padding_with_masked_columns_keeps_every_sample(monkeypatch, lanes, k):
    """Appending -inf columns changes neither a row's soft sample nor its index (row and lane
    kernels): column j's noise does not depend on K."""
    torch.manual_seed(3)
    phi = torch.randn(40, k)
    padded = torch.cat([phi, torch.full((40, 7), float("-inf"))], 1)
    for method in ("redge", "gumbel", "st"):
        y, i = _fwd(method, phi, 99, lanes, monkeypatch)
        yp, ip = _fwd(method, padded, 99, lanes, monkeypatch)
        assert torch.equal(i, ip), method
        torch.testing.assert_close(yp[:, :k], y, rtol=1e-6, atol=1e-7)
        assert torch.equal(yp[:, k:], torch.zeros(40, 7))


@pytest.mark.parametrize("lanes", [0, 256])
def test_appending_rows_keeps_every_sample(monkeypatch, lanes):
    torch.manual_seed(4)
    phi = torch.randn(50, 21)
    more = torch.cat([phi, torch.randn(13, 21)])
    for method in ("redge", "gumbel"):
        y, i = _fwd(method, phi, 5, lanes, monkeypatch)
        ym, im = _fwd(method, more, 5, lanes, monkeypatch)
        assert torch.equal(im[:50], i) and torch.equal(ym[:50], y), method


def test_row_and_lane_kernels_draw_the_same_noise(monkeypatch):
    torch.manual_seed(5)
    phi = torch.randn(33, 19)
    _, i_rows = _fwd("gumbel", phi, 8, 0, monkeypatch)
    _, i_lanes = _fwd("gumbel", phi, 8, 256, monkeypatch)
    assert torch.equal(i_rows, i_lanes)
