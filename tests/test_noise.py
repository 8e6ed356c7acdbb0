"""The counter-based noise contract, version 2 (redge_kernels/noise.py, docs/SPEC.md "Randomness
(noise contract, version 2)"): known answers, exhaustive edge words, statistics that reject broken
generators, and the invariances (padding, appended rows, vocabulary shards)."""

import math

import pytest
import torch

import redge_kernels as rk
from redge_kernels import noise
from redge_kernels.noise import (counter, gumbel_from_bits, gumbel_noise, noise_bits,
                                 normal_from_bits, normal_noise, philox4x32, uniform_from_bits,
                                 uniform_noise)


def _t(v):
    return torch.tensor(v, dtype=torch.int64)


# Known answers of Philox4x32-10 published with Random123 (kat_vectors): counter, key -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", PHILOX_KAT)
def test_philox_known_answers(ctr, key, expected):
    out = philox4x32(*map(_t, ctr), *map(_t, key))
    assert tuple(int(o) for o in out) == expected


def test_version_is_public():
    assert rk.NOISE_VERSION == noise.NOISE_VERSION == 2


def _words(seed, row, col, stream):
    """The four words of the call of (row, col), straight from the written-out counter."""
    ctr = (_t(col >> 2), _t(row & 0xFFFFFFFF), _t(row >> 32), _t(stream))
    return [int(w) for w in philox4x32(*ctr, _t(seed & 0xFFFFFFFF), _t(seed >> 32))]


def test_counter_layout():
    seed = (0x0123 << 32) | 0x4567_89AB
    for stream in (0, 1):
        w = noise_bits(seed, 3, 9, stream=stream, row_start=2, col_start=6)
        for r in range(3):
            for c in range(9):
                assert [int(x[r, c]) for x in w] == _words(seed, 2 + r, 6 + c, stream)
    assert [int(c) for c in counter(5, 13, 1)] == [3, 5, 0, 1]


def test_rows_past_2_to_32_reach_the_high_counter_word():
    row = 2**32 + 5
    assert [int(c) for c in counter(row, 9, 0)] == [2, 5, 1, 0]
    assert [int(c) for c in counter(2**64 - 1, 2**34 - 1, 1)] == [2**32 - 1, 2**32 - 1, 2**32 - 1, 1]
    assert [int(c) for c in counter(_t([row, 7]), _t(4), 0)[1:3][1]] == [1, 0]
    hi = noise_bits(7, 1, 4, stream=0, row_start=row)
    lo = noise_bits(7, 1, 4, stream=0, row_start=5)
    assert [int(w[0, 0]) for w in hi] == _words(7, row, 0, 0)
    assert [int(w[0, 0]) for w in hi] != [int(w[0, 0]) for w in lo]
    # A block crossing the 2**32 boundary carries into the high word; the last row of 2**64 works.
    w = noise_bits(3, 3, 1, stream=1, row_start=2**32 - 1)
    for r, row in enumerate([2**32 - 1, 2**32, 2**32 + 1]):
        assert int(w[0][r, 0]) == _words(3, row, 0, 1)[0]
    w = noise_bits(3, 1, 1, stream=1, row_start=2**64 - 1)
    assert int(w[0][0, 0]) == _words(3, 2**64 - 1, 0, 1)[0]


def test_out_of_range_rows_columns_and_streams_are_clear_errors():
    with pytest.raises(ValueError, match="cols"):
        noise_bits(0, 1, 4, stream=0, col_start=2**34 - 3)
    with pytest.raises(ValueError, match="col"):
        counter(0, 2**34, 0)
    with pytest.raises(ValueError, match="rows"):
        noise_bits(0, 2, 1, stream=0, row_start=2**64 - 1)
    with pytest.raises(ValueError, match="row"):
        counter(2**64, 0, 0)
    with pytest.raises(ValueError, match="stream"):
        noise_bits(0, 1, 1, stream=2)
    with pytest.raises(ValueError, match="K"):
        rk.sample_noise((1, 2**34 + 1), seed=0)
    with pytest.raises(TypeError, match="col_start"):
        normal_noise(0, 1, 1, col_start=1.0)
    with pytest.raises(ValueError, match="col_start"):
        gumbel_noise(0, 1, 1, col_start=-1)
    normal_noise(0, 1, 4, col_start=2**34 - 4)  # the last call is fine


# (seed, row, col) -> (z, G) of version 2; a change of the contract (layout, transforms) fails here.
KNOWN = [
    (0x0, 0x0, 0x0, 0.99113774, -0.54276162),
    (0x0, 0x0, 0x1, -0.92466241, -0.95006019),
    (0x0, 0x0, 0x2, -0.61760885, 4.43139219),
    (0x0, 0x0, 0x3, -0.48206875, 0.78896421),
    (0x0, 0x1, 0x5, -0.80728281, 1.26334345),
    (0x123456789AB, 0x7, 0x3E9, 1.75731552, 0.89433467),
    (0x4000000000000005, 0x100000003, 0x3FFFF, 0.29761970, 0.79386359),
    (0x3039, 0xFFFFFFFFFFFFFFFF, 0x3FFFFFFFF, -0.70876145, 1.98380482),
    (0x63, 0x10000000000, 0x200000006, -0.59406012, 0.01362262),
]
KNOWN_STREAM1_WORD = [768504805, 323543615, 4244168940, 2726800091, 3237290514, 2853551646,
                      2732861543, 3743043520, 1601553701]


@pytest.mark.parametrize("i", range(len(KNOWN)))
def test_known_answer_values(i):
    seed, row, col, z_want, g_want = KNOWN[i]
    z = normal_noise(seed, 1, 1, row_start=row, col_start=col)
    g = gumbel_noise(seed, 1, 1, row_start=row, col_start=col)
    u = uniform_noise(seed, 1, 1, row_start=row, col_start=col)
    torch.testing.assert_close(z, torch.tensor([[z_want]]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g, torch.tensor([[g_want]]), rtol=1e-6, atol=1e-7)
    # Independent float64 formulation from the written-out counters.
    w0, w1, w2, w3 = _words(seed, row, col, 0)
    lane = col & 3
    w_a, w_b = (w0, w1) if lane < 2 else (w2, w3)
    rho = math.sqrt(-2 * math.log(w_a * 2**-32 + 2**-33))
    z64 = rho * (math.cos if lane % 2 == 0 else math.sin)(2 * math.pi * w_b * 2**-32)
    w = _words(seed, row, col, 1)[lane]
    assert w == KNOWN_STREAM1_WORD[i]
    assert float(u) == (w + 0.5) * 2**-32
    g64 = -math.log(-math.log((w + 0.5) * 2**-32))
    assert abs(float(z) - z64) <= 2e-6 * max(1.0, abs(z64))
    assert abs(float(g) - g64) <= 2e-6 * max(1.0, abs(g64))


def test_sample_noise_is_the_row_major_view():
    a = rk.sample_noise((2, 3, 17), seed=5)
    b = rk.sample_noise((6, 17), seed=5)
    for x, y in zip(a, b):
        assert torch.equal(x.reshape(6, 17), y)
    assert torch.equal(b.z, normal_noise(5, 6, 17))
    assert torch.equal(b.gumbel, gumbel_noise(5, 6, 17))
    assert torch.equal(b.u, uniform_noise(5, 6, 17))


@pytest.mark.parametrize("k", [1, 3, 5, 38])
def test_noise_does_not_change_when_k_grows_or_rows_are_appended(k):
    small = rk.sample_noise((3, k), seed=21)
    for shape in [(3, k + 1), (3, k + 7), (5, k), (4, 4 * k + 3)]:
        big = rk.sample_noise(shape, seed=21)
        for x, y in zip(small, big):
            assert torch.equal(x, y[:3, :k]), shape


@pytest.mark.parametrize("c0", [0, 1, 2, 3, 4, 7, 10, 4097])
@pytest.mark.parametrize("width", [1, 2, 5, 13])
def test_a_vocabulary_shard_draws_the_unsharded_noise(c0, width):
    k = 4200
    full = rk.sample_noise((3, k), seed=33)
    rows = slice(1, 3)
    for fn, whole in [(normal_noise, full.z), (gumbel_noise, full.gumbel), (uniform_noise, full.u)]:
        part = fn(33, 2, width, row_start=1, col_start=c0)
        assert torch.equal(part, whole[rows, c0:c0 + width]), fn.__name__


def test_tensor_seed_equals_int_seed():
    s = 2**62 + 5
    a, b = rk.sample_noise((3, 9), s), rk.sample_noise((3, 9), torch.tensor(s))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_same_seed_same_noise_and_seed_validation():
    a, b = rk.sample_noise((3, 4), 2**62 + 5), rk.sample_noise((3, 4), 2**62 + 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="seed"):
        rk.sample_noise((3, 4), -1)
    with pytest.raises(ValueError, match="seed"):
        rk.sample_noise((3, 4), 2**63)
    with pytest.raises(ValueError, match="shape"):
        rk.sample_noise((), 0)


# ----------------------------------------------------------------------------- exhaustive edge words
def _edge_words():
    spans = [(0, 2**16), (2**31 - 2**12, 2**31 + 2**12), (2**24 - 64, 2**24 + 64),
             (2**32 - 2**16, 2**32)]
    return torch.cat([torch.arange(a, b, dtype=torch.int64) for a, b in spans])


def test_edge_words_give_uniforms_strictly_inside_and_finite_noise():
    w = _edge_words()
    u = uniform_from_bits(w)
    assert bool((u > 0).all()) and bool((u < 1).all()), "u must never be 0 or 1"
    g = gumbel_from_bits(w)
    assert bool(torch.isfinite(g).all())
    torch.testing.assert_close(g.double(), -torch.log(-torch.log(u)), rtol=3e-6, atol=3e-6)
    assert bool((g[1:] >= g[:-1]).logical_or(w[1:] != w[:-1] + 1).all()), "G monotone in w"
    assert float(g.max()) > 22.0  # full 32-bit upper tail (a 24-bit uniform stops at 16.6)
    assert float(g.min()) < -3.0  # and lower tail
    # Stream 0: every pairing of edge words gives finite z; the radius reaches ~6.7 at word 0.
    lane = torch.arange(4).repeat(w.numel() // 4 + 1)[: w.numel()]
    z = normal_from_bits(w, w.flip(0), w.roll(7), w.roll(-3), lane)
    assert bool(torch.isfinite(z).all())
    rho0 = normal_from_bits(_t([0]), _t([0]), _t([0]), _t([0]), _t([0]))
    assert abs(float(rho0) - math.sqrt(-2 * math.log(2**-33))) < 1e-5


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


# ----------------------------------------------------------------------------- statistics
# Each check returns a list of failures; the tests run it on the real noise (must pass) and on a
# deliberately broken generator (must fail), so no check can pass vacuously.
def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def _check_moments(z):
    z = z.double().flatten()
    n = z.numel()
    bad = []
    if abs(float(z.mean())) > 5 / math.sqrt(n):
        bad.append("mean")
    if abs(float(z.var()) - 1) > 5 * math.sqrt(2 / n):
        bad.append("variance")
    kurt = float(((z - z.mean()) ** 4).mean() / z.var() ** 2)
    if abs(kurt - 3) > 5 * math.sqrt(24 / n):
        bad.append("kurtosis")
    return bad


def _check_ks(z):
    from scipy import stats
    return ["ks"] if stats.kstest(z.double().flatten().numpy(), "norm").pvalue < 1e-3 else []


def _check_pair_and_lanes(z):
    """z [rows, 4m] with column 0 at a call boundary: cos/sin of a pair, and the four lanes."""
    lanes = z.double().reshape(-1, 4)
    bound = 5 / math.sqrt(lanes.shape[0])
    bad = []
    for a, b in [(0, 1), (2, 3)]:  # cos and sin of one Box-Muller pair (and their squares)
        if abs(_corr(lanes[:, a], lanes[:, b])) > bound:
            bad.append(f"pair {a}{b}")
        if abs(_corr(lanes[:, a] ** 2, lanes[:, b] ** 2)) > bound:
            bad.append(f"pair^2 {a}{b}")
    for a in range(4):
        for b in range(a + 1, 4):
            if abs(_corr(lanes[:, a], lanes[:, b])) > bound:
                bad.append(f"lanes {a}{b}")
            if abs(_corr(lanes[:, a].abs(), lanes[:, b].abs())) > bound:
                bad.append(f"|lanes| {a}{b}")
    return bad


Z = normal_noise(123, 500, 2000)


def _broken(kind):
    """Deliberately broken generators, each one defect the checks must see."""
    w = noise_bits(123, 500, 2000, stream=0)
    lane = torch.arange(2000) & 3
    if kind == "mean":
        return Z + 0.01
    if kind == "variance":
        return Z * 1.005
    if kind == "kurtosis":  # a sum of 12 uniforms: right mean and variance, kurtosis 2.9
        u = torch.stack([uniform_from_bits(w[i % 4] ^ (i * 0x9E3779B9 & 0xFFFFFFFF))
                         for i in range(12)]).sum(0) - 6
        return (u / u.std()).float()
    if kind == "ks":  # the angle from 24 bits only and a truncated radius
        return normal_from_bits(w[0] | 0xFF, w[1], w[2] | 0xFF, w[3], lane).clamp(-2.5, 2.5)
    if kind == "pair":  # the sine lane repeats its pair's cosine
        return normal_from_bits(w[0], w[1], w[2], w[3], lane & 2)
    if kind == "lanes":  # lanes 2/3 reuse the radius of lanes 0/1
        return normal_from_bits(w[0], w[1], w[0], w[3], lane)
    raise AssertionError(kind)


@pytest.mark.parametrize("check,broken", [(_check_moments, "mean"), (_check_moments, "variance"),
                                          (_check_moments, "kurtosis"), (_check_ks, "ks"),
                                          (_check_pair_and_lanes, "pair"),
                                          (_check_pair_and_lanes, "lanes")])
def test_normal_statistics(check, broken):
    assert check(Z) == []
    assert check(_broken(broken)) != [], f"the {check.__name__} check misses a broken {broken}"


def test_gumbel_distribution_and_lanes():
    from scipy import stats
    g = gumbel_noise(9, 400, 500).double()
    assert stats.kstest(g.flatten().numpy(), "gumbel_r").pvalue > 1e-3
    assert abs(float(g.mean()) - 0.5772156649) < 5 * (math.pi / math.sqrt(6)) / math.sqrt(g.numel())
    lanes = g.reshape(-1, 4)
    bound = 5 / math.sqrt(lanes.shape[0])
    for a in range(4):
        for b in range(a + 1, 4):
            assert abs(_corr(lanes[:, a], lanes[:, b])) < bound, (a, b)


def test_streams_rows_and_seeds_are_uncorrelated():
    n = rk.sample_noise((500, 1000), seed=77)
    z, u = n.z.double().flatten(), n.u.flatten()
    bound = 5 / math.sqrt(z.numel())
    assert abs(_corr(z, u)) < bound  # stream 0 against stream 1 of the same call
    assert abs(_corr(z[:-4], z[4:])) < bound  # neighbouring calls
    assert abs(_corr(u[:-1], u[1:])) < bound
    assert abs(_corr(n.z[:-1].double().flatten(), n.z[1:].double().flatten())) < bound  # rows
    other = rk.sample_noise((500, 1000), seed=78)
    assert abs(_corr(z, other.z.double().flatten())) < bound  # neighbouring seeds


def test_matches_triton_philox_under_the_interpreter():
    """An independent implementation of Philox4x32-10 on the version-2 counters: Triton's own."""
    triton = pytest.importorskip("triton")
    import os
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs TRITON_INTERPRET=1 or a GPU")
    import triton.language as tl

    @triton.jit
    def _bits_kernel(out_ptr, seed, row, j0, stream, n, BLOCK: tl.constexpr):
        idx = tl.arange(0, BLOCK)
        j = (j0 + idx).to(tl.uint32)
        zero = tl.zeros([BLOCK], dtype=tl.uint32)
        r0, r1, r2, r3 = tl.philox(seed, j, zero + (row & 0xFFFFFFFF).to(tl.uint32),
                                   zero + (row >> 32).to(tl.uint32), zero + stream)
        m = idx < n
        tl.store(out_ptr + idx * 4 + 0, r0.to(tl.int64) & 0xFFFFFFFF, mask=m)
        tl.store(out_ptr + idx * 4 + 1, r1.to(tl.int64) & 0xFFFFFFFF, mask=m)
        tl.store(out_ptr + idx * 4 + 2, r2.to(tl.int64) & 0xFFFFFFFF, mask=m)
        tl.store(out_ptr + idx * 4 + 3, r3.to(tl.int64) & 0xFFFFFFFF, mask=m)

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    seed, row, j0, n = 0x1234_5678_9ABC, 2**33 + 17, 2**31 + 5, 50
    for stream in (0, 1):
        out = torch.zeros(n, 4, dtype=torch.int64, device=dev)
        _bits_kernel[(1,)](out, seed, row, j0, stream, n, BLOCK=64)
        want = noise_bits(seed, 1, 4 * n, stream=stream, row_start=row, col_start=4 * j0)
        want = torch.stack(want, -1)[0, ::4]
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
