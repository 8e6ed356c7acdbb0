"""The counter-based noise contract (redge_kernels/noise.py, docs/SPEC.md "Randomness")."""

import math

import numpy as np
import pytest
import torch

import redge_kernels as rk
from redge_kernels.noise import (gumbel_from_bits, noise_bits, normal_from_bits, philox4x32,
                                 uniform_from_bits)

# Known answers of Philox4x32-10 published with Random123 (kat_vectors): counter, key -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", PHILOX_KAT)
def test_philox_known_answers(ctr, key, expected):
    t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    out = philox4x32(*map(t, ctr), *map(t, key))
    assert tuple(int(o) for o in out) == expected


def test_counter_layout_is_row_major_offset_with_seed_as_key():
    seed = (0x0123 << 32) | 0x4567_89AB
    rows, cols = 3, 5
    r = noise_bits(seed, rows, cols)
    for row in range(rows):
        for col in range(cols):
            off = row * cols + col
            t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
            want = philox4x32(t(off & 0xFFFFFFFF), t(off >> 32), t(0), t(0),
                              t(seed & 0xFFFFFFFF), t(seed >> 32))
            assert [int(w[row, col]) for w in r] == [int(w) for w in want]


def test_offsets_beyond_2_to_32_use_the_high_counter_word():
    # A block at row 2**20 of a K = 2**13 matrix starts at offset 2**33.
    r = noise_bits(7, 1, 4, row_start=2**20, row_cols=2**13)
    t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    want = philox4x32(t(0), t(2), t(0), t(0), t(7), t(0))
    assert [int(w[0, 0]) for w in r] == [int(w) for w in want]


def test_blocks_are_slices_of_the_whole_matrix():
    """A vocabulary shard [c0, c0 + k) of a row sees the noise of the unsharded call."""
    full = noise_bits(11, 6, 40)
    part = noise_bits(11, 2, 15, row_start=3, col_start=20, row_cols=40)
    for a, b in zip(full, part):
        assert torch.equal(a[3:5, 20:35], b)


def test_sample_noise_depends_on_logical_index_only():
    a = rk.sample_noise((2, 3, 17), seed=5)
    b = rk.sample_noise((6, 17), seed=5)
    for x, y in zip(a, b):
        assert torch.equal(x.reshape(6, 17), y)


def test_known_answer_values():
    n = rk.sample_noise((1, 4), seed=0)
    r0, r1, r2, _ = noise_bits(0, 1, 4)
    # Independent float64 formulation of the same transforms.
    u1 = (r0.double() * 2**-32 + 2**-33)
    u2 = r1.double() * 2**-32
    z64 = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
    u64 = (r2.double() + 0.5) * 2**-32
    g64 = -torch.log(-torch.log(u64))
    torch.testing.assert_close(n.z.double(), z64.reshape(1, 4), rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(n.u, u64.reshape(1, 4), rtol=0, atol=0)
    torch.testing.assert_close(n.gumbel.double(), g64.reshape(1, 4), rtol=2e-6, atol=2e-6)
    # Regression values: a change of the contract (layout, transforms) must fail here.
    assert [int(v) for v in r0[0, :3]] == [1713891541, 4175744164, 83534633]
    torch.testing.assert_close(n.z[0, :3], torch.tensor([0.99113774, -0.15363818, -1.18635798]))
    torch.testing.assert_close(n.gumbel[0, :3], torch.tensor([1.18118298, 1.00680959, -0.67262506]))
    big = rk.sample_noise((2, 3), seed=2**40 + 3)
    torch.testing.assert_close(big.z[1], torch.tensor([-0.34262875, -0.30314204, 0.07241820]))
    torch.testing.assert_close(big.gumbel[0], torch.tensor([1.09395623, -1.35153186, 2.96292591]))


def test_uniform_strictly_inside_and_gumbel_finite_at_the_extremes():
    bits = torch.tensor([0, 1, 2, 2**24, 2**31, 2**32 - 2**8, 2**32 - 2, 2**32 - 1], dtype=torch.int64)
    u = uniform_from_bits(bits)
    assert bool((u > 0).all()) and bool((u < 1).all())
    g = gumbel_from_bits(bits)
    assert bool(torch.isfinite(g).all())
    g64 = -torch.log(-torch.log(u))
    torch.testing.assert_close(g.double(), g64, rtol=3e-6, atol=3e-6)
    assert float(g.max()) > 22.0  # full 32-bit resolution of the upper tail (24 bits would stop at 16.6)


def test_gumbel_upper_tail_by_exact_enumeration():
    """Enumerate the top 2**20 values of the 32-bit word: the count of G > t must equal
    2**32 * P(G > t) for every threshold up to t = 21 (a 24-bit uniform caps G at 16.6)."""
    top = torch.arange(2**32 - 2**20, 2**32, dtype=torch.int64)
    g = gumbel_from_bits(top).double()
    u = uniform_from_bits(top)
    torch.testing.assert_close(g, -torch.log(-torch.log(u)), rtol=3e-6, atol=3e-6)
    assert bool((g[1:] >= g[:-1]).all()), "G must be monotone in the uniform"
    for t in [14.0, 16.0, 17.0, 19.0, 21.0]:
        expected = 2**32 * -math.expm1(-math.exp(-t))
        count = int((g > t).sum())
        assert abs(count - expected) <= 1 + 1e-4 * expected, (t, count, expected)


def test_normal_moments_and_distribution():
    from scipy import stats
    z = rk.sample_noise((1000, 1000), seed=123).z.double().flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    kurt = float(((z - z.mean()) ** 4).mean() / z.var() ** 2)
    assert abs(kurt - 3) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z[:200_000].numpy(), "norm").pvalue > 1e-3


def test_gumbel_distribution():
    from scipy import stats
    g = rk.sample_noise((400, 500), seed=9).gumbel.double().flatten()
    assert stats.kstest(g.numpy(), "gumbel_r").pvalue > 1e-3
    assert abs(float(g.mean()) - 0.5772156649) < 5 * (math.pi / math.sqrt(6)) / math.sqrt(g.numel())


def test_streams_and_neighbours_are_uncorrelated():
    n = rk.sample_noise((500, 1000), seed=77)
    z, u = n.z.double().flatten(), n.u.flatten()
    bound = 5 / math.sqrt(z.numel())
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a, b]))[0, 1])  # noqa: E731
    assert abs(corr(z, u)) < bound
    assert abs(corr(z[:-1], z[1:])) < bound  # neighbouring counters
    assert abs(corr(u[:-1], u[1:])) < bound
    other = rk.sample_noise((500, 1000), seed=78)
    assert abs(corr(z, other.z.double().flatten())) < bound  # neighbouring seeds


def test_same_seed_same_noise_and_seed_validation():
    a, b = rk.sample_noise((3, 4), 2**62 + 5), rk.sample_noise((3, 4), 2**62 + 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="seed"):
        rk.sample_noise((3, 4), -1)
    with pytest.raises(ValueError, match="seed"):
        rk.sample_noise((3, 4), 2**63)
    with pytest.raises(ValueError, match="shape"):
        rk.sample_noise((), 0)


def test_matches_triton_randint4x_under_the_interpreter():
    """An independent implementation of the same counter layout: Triton's own Philox."""
    triton = pytest.importorskip("triton")
    import os
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs TRITON_INTERPRET=1 or a GPU")
    import triton.language as tl

    @triton.jit
    def _bits_kernel(out_ptr, seed, start, n, BLOCK: tl.constexpr):
        idx = tl.arange(0, BLOCK)
        offset = start + idx.to(tl.int64)
        r0, r1, r2, r3 = tl.randint4x(seed, offset)
        m = idx < n
        tl.store(out_ptr + idx * 4 + 0, r0.to(tl.int64) & 0xFFFFFFFF, mask=m)
        tl.store(out_ptr + idx * 4 + 1, r1.to(tl.int64) & 0xFFFFFFFF, mask=m)
        tl.store(out_ptr + idx * 4 + 2, r2.to(tl.int64) & 0xFFFFFFFF, mask=m)
        tl.store(out_ptr + idx * 4 + 3, r3.to(tl.int64) & 0xFFFFFFFF, mask=m)

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    seed, start, n = 0x1234_5678_9ABC, 2**33 + 17, 50
    out = torch.zeros(n, 4, dtype=torch.int64, device=dev)
    _bits_kernel[(1,)](out, seed, start, n, BLOCK=64)
    want = torch.stack(noise_bits(seed, 1, n, col_start=start, row_cols=start + n), -1)[0]
    assert torch.equal(out.cpu(), want)


@pytest.mark.skipif("cpu" not in rk.available_backends(),
                    reason="2048 x 262144 samples need a fused backend (built by scripts/setup.sh)")
def test_rare_tail_frequency_at_vocabulary_262144():
    """End to end: one token with logit L = log K + 6 and 262143 rare tokens of logit 0 (each of
    probability ~1e-8). The tail's total probability is 1 / (1 + e^6 K / (K - 1)) ~ 0.0025, and
    drawing it needs Gumbel values near log K + 6 + G_0 ~ 18.5: over 8192 rows we expect 20.3 tail
    draws (sd 4.5), while a 24-bit uniform (Gumbel capped at 16.6) would give 0.3."""
    k = 262144
    top = math.log(k) + 6.0
    logits = torch.zeros(1, k)
    logits[0, 0] = top
    p_tail = (k - 1) / (math.exp(top) + k - 1)
    rows_per_call, calls = 128, 64
    tail = 0
    for c in range(calls):
        _, idx = rk.sample("st", logits.expand(rows_per_call, k), seed=1000 + c, backend="cpu",
                           return_index=True)
        tail += int((idx != 0).sum())
    n = rows_per_call * calls
    sd = math.sqrt(n * p_tail * (1 - p_tail))
    assert abs(tail - n * p_tail) < 3.5 * sd, (tail, n * p_tail, sd)
