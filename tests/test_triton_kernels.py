"""Triton kernels against the pure-PyTorch reference with identical noise (docs/SPEC.md, all sections).

Without a GPU the kernels run under ``TRITON_INTERPRET=1`` (set by conftest.py) on CPU tensors.
The checks shared with the other backends are tests/test_fused_backends.py, on the cases of
tests/conftest.py's ``TABLE`` tagged ``small`` (the single-block path: K = 2, K < block, K not a
power of two; schedules; masks, empty and NaN rows) and ``tiled`` (the tiled path forced cheaply
with ``block=16``: K = block + 1, several tiles with a tail); on a GPU also ``lanes`` and ``rows``.
Here, the Triton paths' own: many steps and more rows than programs in the tiled path, the
launcher's own tile sizes, tiled = single-block, dtypes, the stats layout, int64 noise offsets and
vocabulary shards, strided inputs, the public API, the noise streams each pass draws, the
log-free Gumbel bound and first-column ties. Sampled indices must be identical; values and
gradients match to fp32 tolerance (``torch.testing.assert_close`` defaults for the dtype).
"""

import math

import pytest
import torch

triton = pytest.importorskip("triton")

import redge_kernels as rk  # noqa: E402
from redge_kernels import reference  # noqa: E402
from redge_kernels._constants import METHOD_IDS  # noqa: E402
from redge_kernels.noise import gumbel_noise, noise_bits, normal_noise  # noqa: E402
from redge_kernels.schedule import Schedule, linear_schedule  # noqa: E402

import triton.language as tl  # noqa: E402

tk = pytest.importorskip("redge_kernels.triton")
if not tk.available():
    pytest.skip(tk.unavailable_reason(), allow_module_level=True)
from redge_kernels.triton import _launch  # noqa: E402
from redge_kernels.triton import _noise as tn  # noqa: E402
from redge_kernels.triton._common import exp as kernel_exp  # noqa: E402
from redge_kernels.triton._common import sqrt_pos as kernel_sqrt_pos  # noqa: E402
from redge_kernels.triton._common import (slot_argmax_fold, slot_argmax_init,  # noqa: E402
                                          slot_argmax_row)
from redge_kernels.triton._gumbel_max import gumbel_upper  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BASELINE = Schedule([1.0, 0.0], [0.0, 1.0])


def _schedule(method, n_steps=4, t_1=0.5):
    return linear_schedule(n_steps, t_1) if method.startswith("redge") else BASELINE


def _kernel(method, phi, seed, schedule, hard, tau, g, block=None):
    cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
    coefs = schedule.table(phi.device, dtype=cdtype)
    seed_t = torch.tensor(seed, dtype=torch.int64, device=phi.device)
    y, stats, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], hard, tau, block=block)
    gphi = tk.bwd(g, phi, seed_t, coefs, stats, index, METHOD_IDS[method], hard, tau, block=block)
    return y, index, gphi, stats


def _reference(method, phi, seed, schedule, hard, tau, g):
    p = phi.detach().clone().requires_grad_(True)
    y, index = reference.sample(method, p, seed, schedule, hard, tau)
    y.backward(g)
    return y.detach(), index, p.grad


def _compare(method, phi, hard, *, seed=7, tau=0.7, schedule=None, block=None):
    schedule = schedule or _schedule(method)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(seed + 1)).to(phi)
    y, index, gphi, _ = _kernel(method, phi, seed, schedule, hard, tau, g, block)
    y_ref, index_ref, g_ref = _reference(method, phi, seed, schedule, hard, tau, g)
    assert torch.equal(index, index_ref)
    if hard:
        assert set(y[index >= 0].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(y, y_ref, equal_nan=True)
    torch.testing.assert_close(gphi, g_ref, equal_nan=True)
    return y, index, gphi


def _logits(rows, k, seed=0, scale=2.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(rows, k, generator=gen)).to(device=DEVICE, dtype=dtype)


# ---- the tiled path --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["redge", "redge_cov", "redge_max"])
def test_tiled_many_steps_and_rows_per_program(method):
    """n = 5 in the tiled path (every branch of the pass structure: z drawn in pass 1 and kept,
    steps finished from the carried state) with more rows than programs (scratch slots reused)."""
    from redge_kernels.triton._launch import INTERPRETER_PROGRAMS
    rows = INTERPRETER_PROGRAMS + 1
    _compare(method, _logits(rows, 33, seed=5), True, schedule=linear_schedule(5, 0.3), block=16)
    if method == "redge":
        _compare(method, _logits(rows, 33, seed=6), False, schedule=linear_schedule(5, 0.3),
                 block=16)


@pytest.mark.parametrize("method,hard", [("redge", True), ("redge", False), ("redge_max", True)])
@pytest.mark.parametrize("n_steps", [2, 3, 4, 5, 6, 8])
def test_tiled_trajectory_strides(monkeypatch, method, hard, n_steps):
    """The trajectory kept at every STRIDE-th pass only (which the launcher picks for long chains,
    ``TRAJECTORY_STRIDES``; forced here at strides 2 and 3 at every n): the passes after one that
    kept nothing take more DDIM steps by the same operations, so stats, index and y equal the
    dense forward's bitwise (every remainder of the passes by the stride; a soft sample's last
    pass keeps x_1 for p_1), and the index is the reference's."""
    from redge_kernels.triton import _launch
    phi = _logits(3, 37, seed=n_steps)
    sched = linear_schedule(n_steps, 0.4)
    coefs = sched.table(phi.device)
    seed_t = torch.tensor(5, dtype=torch.int64, device=phi.device)
    assert _launch.trajectory_stride(n_steps, False) == (2 if n_steps >= 6 else 1)
    assert _launch.trajectory_stride(12, True) == 1 and _launch.trajectory_stride(12, False) == 3
    dense = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], hard, 1.0, block=16)
    _, index_ref = reference.sample(method, phi, 5, sched, hard, 1.0)
    assert torch.equal(dense[2], index_ref)
    for stride in (2, 3):
        monkeypatch.setattr(_launch, "TRAJECTORY_STRIDES", ((2, stride),))
        strided = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], hard, 1.0, block=16)
        for a, b in zip(dense, strided):
            assert torch.equal(a, b), stride


def test_tiled_grid_keeps_the_rows_in_flight_in_l2():
    """The persistent grid on a planned 132-SM GPU with the H100's 50 MiB of L2: as many programs
    as TILED_L2_SHARE of L2 holds rows in flight (the forward's fp32 row of phi and its fp32
    scratch slot at K = 32768: 256 KiB, so 0.45 x 50 MiB // 256 KiB = 90; bf16: 192 KiB, 120),
    all 264 resident programs when their rows fit anyway (K = 8192) or when fewer than half the
    SMs would be left (the backward's 1 MiB per row); never more programs than rows; no plan
    without an L2 size or off a GPU (the interpreter's grid)."""
    from redge_kernels.triton import _launch
    l2 = 50 * 2**20
    fp32_row = 32768 * (4 + 4)
    with _launch.planned_sms(132, l2):
        assert _launch.tiled_programs(4096, None, fp32_row) == 90
        assert _launch.tiled_programs(4096, None, 32768 * (2 + 4)) == 120
        assert _launch.tiled_programs(4096, None, 8192 * (4 + 4)) == 264
        assert _launch.tiled_programs(4096, None, 32768 * (4 + 4 + 6 * 4)) == 264
        assert _launch.tiled_programs(50, None, fp32_row) == 50
        assert _launch.tiled_programs(4096, None) == 264
    with _launch.planned_sms(132):
        assert _launch.tiled_programs(4096, None, fp32_row) == 264
    cpu = torch.device("cpu")
    assert _launch.tiled_programs(4096, cpu, fp32_row) == _launch.INTERPRETER_PROGRAMS


@pytest.mark.parametrize("method,k,n_steps", [("st", None, 2), ("redge", None, 2)])
def test_default_tiled_configuration(method, k, n_steps):
    """The launcher's own tile sizes (no block override), just above the single-block limit."""
    from redge_kernels.triton._launch import SINGLE_MAX
    kind = "diffusion_fwd" if method.startswith("redge") else "onepass_fwd"
    k = 2 * SINGLE_MAX[kind] + 3
    assert not tk.config(kind, k)[0]
    _compare(method, _logits(1, k, seed=k, scale=3.0), True, schedule=_schedule(method, n_steps))


@pytest.mark.parametrize("method", ["gumbel", "redge_cov"])
def test_tiled_equals_single_block(method):
    """Same noise whatever the path: identical indices, values within rounding."""
    phi = _logits(3, 40, seed=3)
    sched = _schedule(method, 3)
    g = torch.randn_like(phi)
    a = _kernel(method, phi, 11, sched, True, 0.9, g)
    b = _kernel(method, phi, 11, sched, True, 0.9, g, block=16)
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[2], b[2])


# ---- dtypes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("method", ["gumbel", "redge_cov", "redge_max"])
def test_dtypes(dtype, method):
    phi = _logits(3, 23, seed=2, dtype=dtype)
    sched = _schedule(method, 3)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(1)).to(phi)
    y, index, gphi, stats = _kernel(method, phi, 5, sched, True, 0.8, g)
    assert y.dtype == dtype and gphi.dtype == dtype
    assert stats.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    if dtype == torch.float64:
        # fp32 math in the kernel against the fp64 reference: fp32 tolerance
        y_ref, index_ref, g_ref = _reference(method, phi, 5, sched, True, 0.8, g)
        assert torch.equal(index, index_ref)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gphi, g_ref, rtol=1e-4, atol=1e-6)
    else:
        # the reference also computes in fp32 from the same low-precision input
        y_ref, index_ref, g_ref = _reference(method, phi, 5, sched, True, 0.8, g)
        assert torch.equal(index, index_ref)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(gphi, g_ref)


# ---- statistics saved between forward and backward ------------------------------------------

def test_stats_layout():
    """stats[r, k] = (row max, sum exp(l - max)) of softmax number k (ops.py)."""
    phi = _logits(3, 30, seed=9)
    sched = linear_schedule(2, 1.0)  # c_1 = 0: the only denoiser is softmax(phi)
    coefs = sched.table(phi.device)
    seed = torch.tensor(3, dtype=torch.int64, device=DEVICE)
    for method, slot in (("st", 0), ("redge", 1), ("redge_cov", 0)):
        _, stats, _ = tk.fwd(phi, seed, coefs if method != "st" else BASELINE.table(DEVICE),
                             METHOD_IDS[method], True, 1.0)
        m = phi.amax(-1)
        torch.testing.assert_close(stats[:, slot, 0], m)
        torch.testing.assert_close(stats[:, slot, 1], torch.exp(phi - m[:, None]).sum(-1))
    _, stats, _ = tk.fwd(phi, seed, coefs, METHOD_IDS["redge"], True, 1.0, block=16)
    assert torch.all(stats[:, 0] == 0)  # unused slot


# ---- int64 offsets --------------------------------------------------------------------------

def test_int64_noise_offsets():
    """Global rows past 2**32 reach the counter's high word (row >> 32) and global columns past
    2**31 need 64-bit column arithmetic; checked against noise.py for the same block."""
    rows, k = 3, 40
    row_offset, col_offset = 2**33 + 5, 2**33 + 8
    phi = _logits(rows, k, seed=4)
    seed = 99
    z = normal_noise(seed, rows, k, DEVICE, row_start=row_offset, col_start=col_offset)
    gum = gumbel_noise(seed, rows, k, DEVICE, row_start=row_offset, col_start=col_offset)
    assert not torch.equal(z, normal_noise(seed, rows, k, DEVICE, row_start=5,
                                           col_start=col_offset))
    seed_t = torch.tensor(seed, dtype=torch.int64, device=DEVICE)
    offs = {"row_offset": row_offset, "col_offset": col_offset}
    for block in (None, 16):
        _, _, index = tk.fwd(phi, seed_t, BASELINE.table(DEVICE), METHOD_IDS["st"], True, 1.0,
                             block=block, **offs)
        assert torch.equal(index, (phi + gum).argmax(-1))
        y, _, _ = tk.fwd(phi, seed_t, BASELINE.table(DEVICE), METHOD_IDS["gumbel"], False, 0.5,
                         block=block, **offs)
        torch.testing.assert_close(y, torch.softmax((phi + gum) / 0.5, -1))
        sched = linear_schedule(2, 0.5)
        coefs = sched.table(DEVICE)
        y, _, _ = tk.fwd(phi, seed_t, coefs, METHOD_IDS["redge"], False, 1.0, block=block, **offs)
        torch.testing.assert_close(y, torch.softmax(phi + coefs[1, 0] * z, -1))


def test_kernel_philox_words_match_the_reference():
    """``_noise.philox_words`` (the kernels' Philox4x32-10 words: key the seed's two halves,
    counter ``(j, row_lo, row_hi, stream)``) against ``noise_bits`` on seeds with high and sign
    bits set, rows past 2^32 and calls j up to 2^32: the same words."""
    @triton.jit
    def _words_kernel(out_ptr, seed_ptr, row, j0, STREAM: tl.constexpr, BLOCK: tl.constexpr):
        seed = tl.load(seed_ptr)
        idx = tl.arange(0, BLOCK)
        j = j0 + idx.to(tl.int64)
        row = row + tl.zeros([], dtype=tl.int64)
        w = tn.philox_words(seed, j, row, STREAM)
        for i in tl.static_range(4):
            tl.store(out_ptr + idx * 4 + i, w[i].to(tl.int64) & 0xFFFFFFFF)

    n = 32
    for seed in (0, 7, 0x1234_5678_9ABC, -3, 2**63 - 1):
        for row, j0 in ((0, 0), (5, 2**31 + 5), (2**33 + 17, 2**32 - 40)):
            for stream in (0, 1):
                out = torch.zeros(n, 4, dtype=torch.int64, device=DEVICE)
                _words_kernel[(1,)](out, torch.tensor(seed, device=DEVICE), row, j0, stream,
                                    BLOCK=n)
                want = noise_bits(seed, 1, 4 * n, stream=stream, row_start=row,
                                  col_start=4 * j0)
                assert torch.equal(out.cpu(), torch.stack(want, -1)[0, ::4]), (seed, row, j0)


def test_strided_inputs():
    """Non-contiguous and stride-0 logits and gradients give the contiguous results."""
    base = _logits(21, 4, seed=8).t()  # [4, 21], strides (1, 4)
    g = torch.randn(21, 4).t()
    sched = _schedule("redge", 3)
    a = _kernel("redge", base, 2, sched, True, 1.0, g)
    b = _kernel("redge", base.contiguous(), 2, sched, True, 1.0, g.contiguous())
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    row = _logits(1, 21, seed=1).expand(3, 21)  # stride 0 over rows
    y, index, gphi, _ = _kernel("st", row, 2, BASELINE, False, 1.0, torch.ones(3, 21))
    y_ref, index_ref, _ = _reference("st", row.contiguous(), 2, BASELINE, False, 1.0,
                                     torch.ones(3, 21))
    assert torch.equal(index, index_ref)
    torch.testing.assert_close(y, y_ref)


# ---- public API -----------------------------------------------------------------------------

@pytest.mark.parametrize("fn,kwargs", [(rk.redge, {"n_steps": 3, "t_1": 0.4}),
                                       (rk.redge_cov, {"n_steps": 3}),
                                       (rk.redge_max, {"n_steps": 3}),
                                       (rk.straight_through, {}),
                                       (rk.gumbel_softmax, {"tau": 0.5}),
                                       (rk.reinmax, {"tau": 1.3})])
def test_public_api_leading_dims(fn, kwargs):
    x = _logits(6, 13, seed=6).reshape(2, 3, 13)
    g = torch.randn_like(x)
    out = {}
    for backend in ("triton", "reference"):
        xx = x.clone().requires_grad_(True)
        y = fn(xx, seed=1234, backend=backend, **kwargs)
        (y * g).sum().backward()
        out[backend] = (y.detach(), xx.grad)
    assert out["triton"][0].shape == (2, 3, 13)
    assert torch.equal(out["triton"][0], out["reference"][0])  # exact one-hot, same index
    torch.testing.assert_close(out["triton"][1], out["reference"][1])


def test_public_api_return_index_and_generator():
    x = _logits(4, 9, seed=2)
    y, index = rk.sample("redge", x, schedule=linear_schedule(3, 0.5), seed=5, backend="triton",
                         return_index=True)
    _, index_ref = rk.sample("redge", x, schedule=linear_schedule(3, 0.5), seed=5,
                             backend="reference", return_index=True)
    assert torch.equal(index, index_ref)
    assert torch.equal(y.argmax(-1), index)
    torch.manual_seed(0)
    a = rk.straight_through(x, backend="triton")
    torch.manual_seed(0)
    b = rk.straight_through(x, backend="triton")
    assert torch.equal(a, b)


def test_straight_through_special_case():
    """docs/SPEC.md: n = 2, t_1 = 1 gives c_1 = 0 and ReDGE is exactly Straight-Through."""
    x = _logits(3, 11, seed=12)
    a = rk.redge(x, n_steps=2, t_1=1.0, hard=False, seed=4, backend="triton")
    torch.testing.assert_close(a, torch.softmax(x, -1))
    assert math.isclose(float(linear_schedule(2, 1.0).c[1]), 0.0)


# ---- noise version 2 in the kernels ---------------------------------------------------------

@triton.jit
def _noise_kernel(z_ptr, g_ptr, seed, row, c0, BLOCK: tl.constexpr, GROUPED: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # 0; int64 arithmetic as in the kernels
    row = row + pid
    c0 = c0 + pid
    cols = c0 + tl.arange(0, BLOCK).to(tl.int64)
    tl.store(z_ptr + tl.arange(0, BLOCK), tn.normal(seed, row, c0, cols, BLOCK, GROUPED))
    tl.store(g_ptr + tl.arange(0, BLOCK), tn.gumbel(seed, row, c0, cols, BLOCK, GROUPED))


@pytest.mark.parametrize("row,c0", [(0, 0), (3, 7), (2**40 + 3, 2**34 - 64), (2**32 - 1, 4097)])
def test_kernel_noise_equals_reference_noise(row, c0):
    """The in-kernel z and G of any global (row, column) block: the grouped form (first column a
    multiple of 4) and the per-element form (a shard starting anywhere) against noise.py."""
    z = torch.empty(64, device=DEVICE)
    g = torch.empty(64, device=DEVICE)
    _noise_kernel[(1,)](z, g, 12345, row, c0, BLOCK=64, GROUPED=c0 % 4 == 0)
    z_ref = normal_noise(12345, 1, 64, DEVICE, row_start=row, col_start=c0)[0]
    g_ref = gumbel_noise(12345, 1, 64, DEVICE, row_start=row, col_start=c0)[0]
    torch.testing.assert_close(z, z_ref, rtol=1e-6, atol=4e-7)
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=4e-7)


# (seed, row, col) -> (z, G) of version 2, the literals of tests/test_noise.py that fit the
# kernels' int64 seed and row arguments.
_KNOWN_V2 = [(0x0, 0x0, 0x0, 0.99113774, -0.54276162), (0x0, 0x0, 0x3, -0.48206875, 0.78896421),
             (0x0, 0x1, 0x5, -0.80728281, 1.26334345),
             (0x123456789AB, 0x7, 0x3E9, 1.75731552, 0.89433467),
             (0x4000000000000005, 0x100000003, 0x3FFFF, 0.29761970, 0.79386359),
             (0x63, 0x10000000000, 0x200000006, -0.59406012, 0.01362262)]


@pytest.mark.parametrize("seed,row,col,z_want,g_want", _KNOWN_V2)
def test_kernel_noise_reproduces_the_known_answers(seed, row, col, z_want, g_want):
    """The kernels' noise at a known (seed, row, col), from a block starting at that column
    (per-element form) and from the aligned block holding it (grouped form)."""
    for c0, grouped in ((col, col % 4 == 0), (col - col % 16, True)):
        z = torch.empty(16, device=DEVICE)
        g = torch.empty(16, device=DEVICE)
        _noise_kernel[(1,)](z, g, seed, row, c0, BLOCK=16, GROUPED=grouped)
        j = col - c0
        assert abs(float(z[j]) - z_want) <= 1e-6 * max(1.0, abs(z_want)), (c0, float(z[j]))
        assert abs(float(g[j]) - g_want) <= 1e-6 * max(1.0, abs(g_want)), (c0, float(g[j]))


@triton.jit
def _math_kernel(w_ptr, x_ptr, c_ptr, s_ptr, o_ptr, log_ptr, N, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    theta = tn._theta(tl.load(w_ptr + i, mask=m, other=0).to(tl.uint32))
    c, s = tn.cos_sin(theta)
    tl.store(c_ptr + i, c, mask=m)
    tl.store(s_ptr + i, s, mask=m)
    tl.store(o_ptr + i, tn.cos_or_sin(theta, (i & 1) == 1), mask=m)
    tl.store(log_ptr + i, tn.log_pos(tl.load(x_ptr + i, mask=m, other=1.0)), mask=m)


def _ulps(got, exact):
    """|got - exact| in units of the float32 spacing at ``exact`` (float64 numpy arrays)."""
    import numpy as np
    return np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32))


def test_noise_trigonometry_and_log_are_accurate():
    """The noise's written-out cos, sin (one reduction for both) and log against float64 numpy:
    within 1.5 ulp (cos, sin) and 1 ulp (log) of the exact value on random words and on the edge
    words (theta = 0, theta just under 2 pi) and, for the log, on every binade of normal floats."""
    import numpy as np
    n = 1 << 16
    rng = np.random.default_rng(7)
    words = rng.integers(0, 2**32, n, dtype=np.int64)
    words[:32] = np.arange(32)
    words[32:64] = 2**32 - 1 - np.arange(32)
    bits = rng.integers(0x00800000, 0x7F800000, n, dtype=np.int64).astype(np.int32)
    bits[:254] = (np.arange(1, 255) << 23) + rng.integers(0, 1 << 23, 254)
    x = bits.view(np.float32).copy()
    x[254:258] = [1.0, 2.0**-33, 2.0 / 3.0, 4.0 / 3.0]
    out = [torch.empty(n, device=DEVICE) for _ in range(4)]
    _math_kernel[(n // 1024,)](torch.from_numpy(words).to(DEVICE), torch.from_numpy(x).to(DEVICE),
                               *out, n, BLOCK=1024)
    c, s, o, lg = (t.cpu().numpy() for t in out)
    theta = (words.astype(np.uint32).astype(np.float32) * np.float32(2.0**-32)
             * np.float32(float.fromhex("0x1.921fb6p+2"))).astype(np.float64)
    assert _ulps(c, np.cos(theta)).max() <= 1.5
    assert _ulps(s, np.sin(theta)).max() <= 1.5
    assert np.array_equal(o, np.where(np.arange(n) % 2 == 1, s, c))
    assert _ulps(lg, np.log(x.astype(np.float64))).max() <= 1.0
    assert lg[254] == 0.0


@triton.jit
def _e_g_sqrt_kernel(w_ptr, x_ptr, e_ptr, g_ptr, s_ptr, N, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    w = tl.load(w_ptr + i, mask=m, other=0).to(tl.uint32)
    tl.store(e_ptr + i, tn.neg_log_u(w), mask=m)
    tl.store(g_ptr + i, tn.gumbel_from_word(w), mask=m)
    tl.store(s_ptr + i, kernel_sqrt_pos(tl.load(x_ptr + i, mask=m, other=1.0)), mask=m)


def test_noise_log1p_gumbel_and_sqrt_are_accurate():
    """E = -log u of the kernels (log1p(-a) as the log of the exact 1 - a) within 1 ulp of the
    float64 value for the float32 a and b it starts from, G = -log E within 1 ulp of -log of the
    kernels' E, on random words and on the edges (a near 0, 1/3, 1/2 and 1); the square root of
    the Box-Muller radius and of ReDGE-Cov's variance bitwise numpy's float32 sqrt (both zeros,
    the radius's range [1.2e-7, 46] and random floats in [0, 64))."""
    import numpy as np
    n = 1 << 16
    rng = np.random.default_rng(11)
    third = int(round(2**32 * 2 / 3))
    words = np.concatenate([
        np.arange(0, 4096), np.arange(2**31 - 2048, 2**31 + 2048),
        np.arange(third - 2048, third + 2048), np.arange(2**32 - 4096, 2**32),
        rng.integers(0, 2**32, n - 4 * 4096)]).astype(np.int64)
    x = rng.uniform(0.0, 64.0, n).astype(np.float32)
    x[:10] = [0.0, -0.0, 2.0**-24, 1.1920929e-7, 45.8, 0.1, 0.25, 1.0, 2.0, 63.99999]
    e, g, sq = (torch.empty(n, device=DEVICE) for _ in range(3))
    _e_g_sqrt_kernel[(n // 1024,)](torch.from_numpy(words).to(DEVICE),
                                   torch.from_numpy(x).to(DEVICE), e, g, sq, n, BLOCK=1024)
    e, g, sq = (t.cpu().numpy() for t in (e, g, sq))
    u32 = words.astype(np.uint32)
    a = (((~u32).astype(np.float32).astype(np.float64) * 2.0**-32 + 2.0**-33)
         .astype(np.float32).astype(np.float64))
    b = (u32.astype(np.float32).astype(np.float64) * 2.0**-32 + 2.0**-33).astype(np.float32)
    with np.errstate(divide="ignore"):  # log1p(-1) of the unused branch where a = 1
        e_exact = np.where(a < 0.5, -np.log1p(-a), -np.log(b.astype(np.float64)))
    assert _ulps(e, e_exact).max() <= 1.0
    assert _ulps(g, -np.log(e.astype(np.float64))).max() <= 1.0
    want = np.sqrt(x)
    assert np.array_equal(sq, want) and np.array_equal(np.signbit(sq), np.signbit(want))


@triton.jit
def _exp_kernel(x_ptr, o_ptr, N, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(o_ptr + i, kernel_exp(tl.load(x_ptr + i, mask=i < N)), mask=i < N)


def test_kernel_exp_is_accurate():
    """The kernels' e^x (2^(x log2 e), the softmax entries and sums) against float64 numpy on
    [-87, 0], where the softmax takes it: relative error within |x| 2^-23 (x log2 e in float32:
    its rounding and that of the float32 log2 e, as ``tl.exp`` has them too) plus 2^-21 (the
    SFU's 2^y on a GPU); 0 at -inf, 1 at 0, NaN at NaN; results under 2^-126 may be 0."""
    import numpy as np
    rng = np.random.default_rng(11)
    x = np.concatenate([-87.0 * rng.random(1 << 14), -(2.0 ** -rng.integers(1, 30, 1024))])
    x = np.concatenate([x, [0.0, -0.0, -1e-30, float("-inf"), float("nan")]]).astype(np.float32)
    out = torch.empty(x.size, device=DEVICE)
    _exp_kernel[(triton.cdiv(x.size, 1024),)](torch.from_numpy(x).to(DEVICE), out, x.size,
                                              BLOCK=1024)
    got = out.cpu().numpy().astype(np.float64)
    exact = np.exp(x.astype(np.float64))
    fin = np.isfinite(x) & (exact >= 2.0 ** -126)
    bound = exact[fin] * (np.abs(x[fin]) * 2.0 ** -23 + 2.0 ** -21)
    assert np.all(np.abs(got[fin] - exact[fin]) <= bound)
    assert got[-5] == 1.0 and got[-4] == 1.0 and got[-2] == 0.0 and np.isnan(got[-1])
    small = np.isfinite(x) & (exact < 2.0 ** -126)
    assert np.all((got[small] == 0.0) | (np.abs(got[small] - exact[small]) <= 2.0 ** -126))


@triton.jit
def _slot_argmax_kernel(v_ptr, out_ptr, K, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    lanes = tl.arange(0, BLOCK)
    sbest, sgroup = slot_argmax_init(BLOCK)
    for start in range(0, K, BLOCK):
        cols = start + lanes
        v = tl.load(v_ptr + row * K + cols, mask=cols < K, other=float("-inf"))
        sbest, sgroup = slot_argmax_fold(sbest, sgroup, v, start, BLOCK)
    best, g = slot_argmax_row(sbest, sgroup)
    cols = g + tl.arange(0, 4)
    v = tl.load(v_ptr + row * K + cols, mask=cols < K, other=float("-inf"))
    tl.store(out_ptr + row, g + tl.argmax(v, axis=0, tie_break_left=True))


def test_kernel_slot_argmax_is_the_first_argmax():
    """The tiled Gumbel-Softmax argmax (``_common.slot_argmax_*``: per slot of four columns the
    running max and its earliest group, then the first argmax inside the row's earliest group):
    rows of 45 small integers (ties within a tile, across tiles and across slots, a partial last
    tile), all-equal rows, -inf entries, an all -inf row: exactly torch.argmax's first maximum
    (0 on the all -inf row)."""
    gen = torch.Generator().manual_seed(5)
    v = torch.randint(-3, 4, (64, 45), generator=gen).float()
    v[torch.rand(v.shape, generator=gen) < 0.2] = float("-inf")
    v[0] = 1.0
    v[1] = float("-inf")
    v[2, :] = 0.0
    v[2, 44] = 1.0
    v[3, :] = float("-inf")
    v[3, 17] = 2.0
    v[3, 33] = 2.0
    out = torch.empty(64, dtype=torch.int32, device=DEVICE)
    _slot_argmax_kernel[(64,)](v.to(DEVICE), out, 45, BLOCK=16)
    assert torch.equal(out.cpu().long(), torch.argmax(v, dim=1))
    assert out[:4].tolist() == [0, 0, 44, 17]


def _sampled(backend, method, x, seed=3):
    y, index = rk.sample(method, x, schedule=_schedule(method, 3) if method.startswith("redge")
                         else None, seed=seed, backend=backend, return_index=True)
    return y, index


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("method", ["gumbel", "redge", "redge_cov"])
def test_noise_invariant_to_padding_and_appended_rows(backend, method):
    """Padding the vocabulary with -inf columns or appending rows leaves every existing sample."""
    x = _logits(3, 10, seed=31)
    y, index = _sampled(backend, method, x)
    padded = torch.cat([x, torch.full((3, 7), float("-inf"), device=DEVICE)], 1)
    y_pad, index_pad = _sampled(backend, method, padded)
    assert torch.equal(index_pad, index)
    torch.testing.assert_close(y_pad[:, :10], y)
    assert torch.all(y_pad[:, 10:] == 0)
    more = torch.cat([x, _logits(4, 10, seed=32)], 0)
    y_more, index_more = _sampled(backend, method, more)
    assert torch.equal(index_more[:3], index)
    torch.testing.assert_close(y_more[:3], y)


@pytest.mark.parametrize("method,hard,split", [
    ("redge", True, False), ("redge", False, False), ("redge_cov", True, False),
    ("redge_max", True, False), ("st", True, False), ("gumbel", False, False),
    ("reinmax", True, False), ("redge", True, True), ("redge_cov", False, True)])
def test_full_width_tiles_equal_masked_tiles(method, hard, split):
    """The tiled kernels' unmasked path (K a multiple of BLOCK) against the masked one on the same
    rows padded with -inf columns (K = 64 and 71, BLOCK 16; ``split``: the (row, chunk) grids of
    a 6-SM plan, whose two-pass backward chunks are full tiles at K = 64): the same stats,
    index, y and grad_phi on the 64 columns, bitwise (padding adds exact zeros to every sum and
    no Gumbel-max candidate); split, the same index and the rest to float32 rounding."""
    rows = 3
    phi = _logits(rows, 64, seed=rows)
    padded = torch.cat([phi, torch.full((rows, 7), float("-inf"), device=DEVICE)], 1)
    sched = _schedule(method, 4) if method.startswith("redge") else BASELINE
    coefs = sched.table(DEVICE)
    seed_t = torch.tensor(29, dtype=torch.int64, device=DEVICE)
    g = torch.randn(rows, 71, generator=torch.Generator().manual_seed(rows)).to(padded)
    out = []
    for x in (phi, padded):
        with _launch.planned_sms(6 if split else None):
            y, stats, index = tk.fwd(x, seed_t, coefs, METHOD_IDS[method], hard, 0.7, block=16)
            gphi = tk.bwd(g[:, :x.shape[1]].contiguous(), x, seed_t, coefs, stats, index,
                          METHOD_IDS[method], hard, 0.7, block=16)
        out.append((y[:, :64], stats, index, gphi[:, :64]))
    assert torch.equal(out[0][2], out[1][2])
    for a, b in zip(out[0], out[1]):
        if split:  # the chunks' partial sums combine in a tree over the chunk count (4 or 5)
            torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-6)
        else:
            assert torch.equal(a, b)


def test_resident_tiles_by_architecture():
    """The launcher's RES: FWD_RESIDENT_TILES' entry of the largest architecture key <= the
    device's, at most the row's whole tiles; 0 for the single block and for ReDGE-Cov; the
    planned architecture (``planned_sms``) wins over the tensors' device, the CPU (interpreter)
    takes sm_90's."""
    top80, top90 = _launch.FWD_RESIDENT_TILES[0], _launch.FWD_RESIDENT_TILES[90]
    assert 0 < top80 < top90
    assert _launch.resident_tiles(32768, False, 2048, False, 80) == top80
    assert _launch.resident_tiles(32768, False, 2048, False, 86) == top80
    assert _launch.resident_tiles(32768, False, 2048, False, 90) == top90
    assert _launch.resident_tiles(32768, False, 2048, False, 100) == top90
    assert _launch.resident_tiles(3 * 2048 + 5, False, 2048, False, 90) == 3
    assert _launch.resident_tiles(32768, True, 2048, False, 90) == 0
    assert _launch.resident_tiles(32768, False, 2048, True, 90) == 0
    cpu = torch.device("cpu")
    assert _launch.device_arch(cpu) == 90
    with _launch.planned_sms(132, None, 80):
        assert _launch.device_arch(cpu) == 80
    assert _launch.device_arch(cpu) == 90


@pytest.mark.parametrize("method,hard,n_steps", [("redge", True, 3), ("redge", False, 6),
                                                 ("redge_max", True, 2), ("redge", False, 4),
                                                 ("redge_max", True, 6)])
def test_resident_trajectory_equals_the_scratch_one(monkeypatch, method, hard, n_steps):
    """The tiled forward with the trajectory of its first RES tiles in registers against the same
    forward with all of it in the scratch (RES = 0): the same y, stats and index bitwise (the same
    operations on the same values, only where x_k is kept differs), with RES = 2 of the 4 full
    tiles of K = 71 at BLOCK 16 (and, in the first case, all 4), on rows with a NaN and with only
    -inf; n_steps = 6 also takes ReDGE's STRIDE 2 (the scratch's tiles skip keeping x_k, the
    registers' do not); ``write_y=False`` gives the same stats and index; at K = 64 (the first
    case) with the whole row resident."""
    rows, k = 3, 71
    phi = _logits(rows, k, seed=n_steps)
    phi[1, 5] = float("nan")
    phi[2] = float("-inf")
    coefs = _schedule(method, n_steps).table(DEVICE)
    seed_t = torch.tensor(31, dtype=torch.int64, device=DEVICE)
    out = {}
    for res in (0, 2, 4) if n_steps == 3 else (0, 2):
        monkeypatch.setattr(_launch, "FWD_RESIDENT_TILES", {0: res, 90: res})
        assert _launch.resident_tiles(k, False, 16, False) == res
        out[res] = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], hard, 1.0, block=16)
    _, stats, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], hard, 1.0, write_y=False,
                             block=16)
    assert torch.equal(stats.nan_to_num(7.0), out[2][1].nan_to_num(7.0))
    assert torch.equal(index, out[2][2])
    assert out[0][2][2] == -1 and out[0][2][1] == -1 and out[0][2][0] >= 0
    for res in out:
        for a, b in zip(out[0], out[res]):
            assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
    if n_steps == 3:  # the whole row resident: K = 64, no scratch column used
        whole = phi[:, :64].contiguous()
        got = {}
        for res in (0, 4):
            monkeypatch.setattr(_launch, "FWD_RESIDENT_TILES", {0: res, 90: res})
            got[res] = tk.fwd(whole, seed_t, coefs, METHOD_IDS[method], hard, 1.0, block=16)
        for a, b in zip(got[0], got[4]):
            assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


@pytest.mark.parametrize("method,hard", [("st", True), ("gumbel", False), ("redge", True),
                                         ("redge_cov", False)])
@pytest.mark.parametrize("c0,width,block", [(6, 11, None), (4, 21, 16), (1, 19, 16)])
def test_vocabulary_shard_draws_the_unsharded_noise(method, hard, c0, width, block):
    """A shard [c0, c0 + width) of a row (col_offset = c0, any c0) samples and differentiates as the
    whole row does when every column outside the shard is -inf (the reference, no offset)."""
    k = c0 + width + 5
    full = torch.full((3, k), float("-inf"), device=DEVICE)
    full[:, c0:c0 + width] = _logits(3, width, seed=c0)
    shard = full[:, c0:c0 + width].contiguous()
    sched = _schedule(method, 3)
    g = torch.randn(full.shape, generator=torch.Generator().manual_seed(2)).to(full)
    coefs = sched.table(DEVICE)
    seed_t = torch.tensor(9, dtype=torch.int64, device=DEVICE)
    y, stats, index = tk.fwd(shard, seed_t, coefs, METHOD_IDS[method], hard, 0.7, block=block,
                             col_offset=c0)
    gphi = tk.bwd(g[:, c0:c0 + width].contiguous(), shard, seed_t, coefs, stats, index,
                  METHOD_IDS[method], hard, 0.7, block=block, col_offset=c0)
    y_ref, index_ref, g_ref = _reference(method, full, 9, sched, hard, 0.7, g)
    assert torch.equal(index + c0, index_ref)
    torch.testing.assert_close(y, y_ref[:, c0:c0 + width])
    torch.testing.assert_close(gphi, g_ref[:, c0:c0 + width])


def test_offsets_are_checked():
    phi = _logits(2, 8)
    seed_t = torch.tensor(0, dtype=torch.int64, device=DEVICE)
    coefs = BASELINE.table(DEVICE)
    with pytest.raises(ValueError, match="col_offset"):
        tk.fwd(phi, seed_t, coefs, METHOD_IDS["st"], True, 1.0, col_offset=2**34 - 4)
    with pytest.raises(ValueError, match="row_offset"):
        tk.fwd(phi, seed_t, coefs, METHOD_IDS["st"], True, 1.0, row_offset=-1)
    with pytest.raises(TypeError, match="col_offset"):
        tk.fwd(phi, seed_t, coefs, METHOD_IDS["st"], True, 1.0, col_offset=1.5)


@pytest.mark.parametrize("method,fwd_streams,bwd_streams",
                         [("redge", {0, 1}, {0}), ("redge_cov", {0, 1}, {0}),
                          ("redge_max", {0, 1}, {0}), ("st", {1}, set()),
                          ("gumbel", {1}, {1}), ("reinmax", {1}, set())])
@pytest.mark.parametrize("block", [None, 16])
def test_streams_drawn_by_each_pass(monkeypatch, method, fwd_streams, bwd_streams, block):
    """docs/SPEC.md: the backward of the diffusion estimators draws stream 0 only; the Gumbel
    uniforms (stream 1) are drawn where the sample or Gumbel-Softmax needs them. Recorded by
    wrapping the kernels' Philox call (the interpreter runs it as Python)."""
    if DEVICE != "cpu":
        pytest.skip("records calls under the interpreter")
    seen = []
    real = tn.philox_words

    def recording(seed, j, row, stream):
        seen.append(int(stream))
        return real(seed, j, row, stream)

    monkeypatch.setattr(tn, "philox_words", recording)
    phi = _logits(2, 21, seed=1)
    sched = _schedule(method, 3)
    coefs = sched.table(DEVICE)
    seed_t = torch.tensor(4, dtype=torch.int64, device=DEVICE)
    y, stats, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], method != "gumbel", 0.7,
                             block=block)
    assert set(seen) == fwd_streams
    seen.clear()
    tk.bwd(torch.ones_like(phi), phi, seed_t, coefs, stats, index, METHOD_IDS[method], True, 0.7,
           block=block)
    assert set(seen) == bwd_streams


# ---- the Gumbel-max: exact G only for candidates --------------------------------------------

@triton.jit
def _bound_kernel(w_ptr, out_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    w = tl.load(w_ptr + i, mask=m, other=0).to(tl.uint32)
    tl.store(out_ptr + i, gumbel_upper(w), mask=m)


def test_gumbel_bound_is_above_g_for_every_kind_of_word():
    """The log-free bound of _gumbel_max is >= the float32 G of noise.py: the edge words, every
    2**12-th word and a random sample; and tight in the upper tail: for G > 5 (a < e^-5) at most
    ln 2 max_f (log2 f - (f - 1)) + log(-log u / a) + 2**-10 <= 0.0598 + 0.0034 + 0.001 above."""
    from redge_kernels.noise import gumbel_from_bits
    edge = [torch.arange(0, 2**12), torch.arange(2**31 - 2**11, 2**31 + 2**11),
            torch.arange(2**32 - 2**14, 2**32), torch.arange(0, 2**32, 2**12),
            torch.randint(0, 2**32, (2**16,), generator=torch.Generator().manual_seed(0))]
    w = torch.cat(edge).to(torch.int64)
    out = torch.empty(w.numel(), device=DEVICE)
    _bound_kernel[(triton.cdiv(w.numel(), 4096),)](w.to(DEVICE), out, w.numel(), BLOCK=4096)
    g = gumbel_from_bits(w).to(DEVICE)
    assert bool((out >= g).all()), float((out - g).min())
    upper = g > 5.0
    assert int(upper.sum()) > 100
    assert float((out - g)[upper].max()) < 0.0642


def _kernel_gumbel(seed, rows, k):
    """G exactly as the kernels compute it (``_noise.gumbel`` on rows 0 .. rows-1)."""
    out = torch.empty(rows, triton.next_power_of_2(k), device=DEVICE)
    z = torch.empty_like(out[0])
    for r in range(rows):
        _noise_kernel[(1,)](z, out[r], seed, r, 0, BLOCK=out.shape[1], GROUPED=True)
    return out[:, :k].contiguous()


@pytest.mark.parametrize("method,block", [("st", None), ("st", 16), ("redge", None), ("redge", 16)])
def test_gumbel_max_ties_go_to_the_first_column(method, block):
    """phi = -G (the kernels' own float32 G) makes every score l + G exactly 0, so every column is
    a candidate and the first one must win; masking it moves the sample to the next. For redge,
    n = 2 and t_1 = 1 give c_1 = 0 and l_1 = phi."""
    k, rows, seed = 45, 3, 17
    sched = linear_schedule(2, 1.0) if method == "redge" else BASELINE
    phi = -_kernel_gumbel(seed, rows, k)
    phi[1, 0] = float("-inf")
    phi[2, :5] = float("-inf")
    coefs = sched.table(DEVICE)
    seed_t = torch.tensor(seed, dtype=torch.int64, device=DEVICE)
    _, _, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], True, 1.0, block=block)
    assert index.tolist() == [0, 1, 5]
