"""The Triton kernels' execution paths against the pure-PyTorch reference with identical noise
(docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max", "Memory and passes", "Throughput budget on a
GPU"): the O(n) backward of the diffusion kernels (the chain walked once per call, its p_k kept in
the program's scratch) and the several-rows-per-program blocks for small K, of the diffusion
kernels and of the one-pass baselines (docs/SPEC.md "Baselines").

Without a GPU the kernels run under ``TRITON_INTERPRET=1`` (conftest.py) on CPU tensors; shapes are
small. Indices must be identical; values and gradients match to fp32 tolerance
(``torch.testing.assert_close`` defaults). ``block=16`` forces the tiled path.
"""

import pytest
import torch

triton = pytest.importorskip("triton")

from redge_kernels import reference  # noqa: E402
from redge_kernels._constants import METHOD_IDS  # noqa: E402
from redge_kernels.schedule import linear_schedule  # noqa: E402

tk = pytest.importorskip("redge_kernels.triton")
if not tk.available():
    pytest.skip(tk.unavailable_reason(), allow_module_level=True)
from redge_kernels.triton import _diffusion, _diffusion_rows, _diffusion_twopass, _launch  # noqa: E402
from redge_kernels.triton._launch import (INTERPRETER_PROGRAMS, ROWS_MAX_K,  # noqa: E402
                                          TWOPASS_COV_MAX_STEPS, TWOPASS_MAX_STEPS, rows_config,
                                          twopass_config)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DIFFUSION = ("redge", "redge_cov", "redge_max")
#: block=None: the several-rows block at these small K; 64: one row per program (path a);
#: 16: the tiled path (b).
PATHS = pytest.mark.parametrize("block", [None, 64, 16], ids=["rows", "single", "tiled"])


def _logits(rows, k, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(rows, k, generator=gen)).to(DEVICE)


def _run(method, phi, seed, schedule, hard, g, block=None, row_offset=0, tau=1.0, stats=False):
    coefs = schedule.table(phi.device)
    seed_t = torch.tensor(seed, dtype=torch.int64, device=phi.device)
    y, st, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], hard, tau, row_offset,
                          block=block)
    gphi = tk.bwd(g, phi, seed_t, coefs, st, index, METHOD_IDS[method], hard, tau, row_offset,
                  block=block)
    return (y, index, gphi, st) if stats else (y, index, gphi)


def _compare(method, phi, schedule, *, hard=True, seed=3, block=None, row_offset=0, tau=1.0):
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(seed + 1)).to(phi)
    y, index, gphi = _run(method, phi, seed, schedule, hard, g, block, row_offset, tau)
    p = phi.detach().clone().requires_grad_(True)
    y_ref, index_ref = reference.sample(method, p, seed, schedule, hard, tau, row_offset)
    y_ref.backward(g)
    assert torch.equal(index, index_ref)
    torch.testing.assert_close(y, y_ref.detach(), equal_nan=True)
    torch.testing.assert_close(gphi, p.grad, equal_nan=True)
    return y, index, gphi


# ---- the O(n) backward of the diffusion kernels ----------------------------------------------

@pytest.mark.parametrize("method", DIFFUSION)
@PATHS
@pytest.mark.parametrize("n_steps", [2, 5])
def test_backward_matches_reference(method, block, n_steps):
    """More rows than programs (each program's scratch slot reused by its next row)."""
    rows = INTERPRETER_PROGRAMS + 1
    _compare(method, _logits(rows, 37, seed=n_steps), linear_schedule(n_steps, 0.4), block=block)


@pytest.mark.parametrize("method", DIFFUSION)
@PATHS
def test_backward_recomputes_the_forward_bitwise_at_large_c(method, block):
    """t_1 = 0.01 gives c_1 ~ 1e4: a p_k one ulp off the forward's moves l_1 by ~1e-3 and the
    gradient visibly, so this passes only if the walk repeats the forward's operations."""
    _compare(method, _logits(3, 21, seed=11), linear_schedule(4, 0.01), block=block)


def _mask_empty_poison(phi):
    """Rows 0-3 in place: masked entries, an empty row, a NaN and a +inf (poisoned rows)."""
    phi[0, ::3] = float("-inf")
    phi[1, :] = float("-inf")
    phi[2, 1] = float("nan")
    phi[3, 0] = float("inf")


@pytest.mark.parametrize("method", DIFFUSION)
@PATHS
def test_backward_masks_empty_and_poisoned_rows(method, block):
    phi = _logits(5, 21, seed=5)
    _mask_empty_poison(phi)
    phi[4, 1:] = float("-inf")    # a single valid entry
    _, index, gphi = _compare(method, phi, linear_schedule(5, 0.5), block=block)
    assert index[1:4].tolist() == [-1, -1, -1] and index[4].item() == 0
    assert torch.all(gphi[1] == 0)
    assert torch.isnan(gphi[2:4]).all()
    assert torch.isfinite(gphi[[0, 4]]).all()
    assert torch.all(gphi[0][phi[0] == float("-inf")] == 0)


@pytest.mark.parametrize("method", DIFFUSION)
@PATHS
def test_backward_int64_row_offset(method, block):
    """A global row past 2**32 (the counter's high word, int64 row arithmetic), as a row-sharded
    caller passes it: the reference with the same row_start."""
    _compare(method, _logits(3, 19, seed=2), linear_schedule(3, 0.5), block=block,
             row_offset=2**33 + 5)


@pytest.mark.parametrize("method", DIFFUSION)
@PATHS
def test_backward_walks_the_chain_once(monkeypatch, method, block):
    """docs/SPEC.md "Throughput budget on a GPU" (c): the backward evaluates each denoiser's
    softmax once per element (n - 1 per element), not once per step of each step; the tiled
    backward in two passes (``_diffusion_twopass``) once per pass, 2 (n - 1). Counted by wrapping
    the kernels' ``probs`` (the interpreter runs it as Python); ReDGE-Cov also evaluates
    mu = softmax(phi) once per tile in the walk (single block) or in each of the two passes."""
    if DEVICE != "cpu":
        pytest.skip("counts calls under the interpreter")
    rows, k = 3, 37
    tiles = 1 if block is None else -(-k // block)
    phi = _logits(rows, k, seed=1)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(0))
    counts = {}
    for n in (3, 6):
        sched = linear_schedule(n, 0.5)
        coefs = sched.table(DEVICE)
        seed_t = torch.tensor(4, dtype=torch.int64)
        _, stats, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], True, 1.0, block=block)
        seen = []
        real = _diffusion.probs

        def counting(l, m, s):
            seen.append(1)
            return real(l, m, s)

        for module in (_diffusion, _diffusion_rows, _diffusion_twopass):
            monkeypatch.setattr(module, "probs", counting)
        tk.bwd(g, phi, seed_t, coefs, stats, index, METHOD_IDS[method], True, 1.0, block=block)
        for module in (_diffusion, _diffusion_rows, _diffusion_twopass):
            monkeypatch.setattr(module, "probs", real)
        counts[n] = len(seen)
    for n, c in counts.items():
        # one call per tile of rows: a row per program, or ROWS rows per block
        units = -(-rows // rows_config(k)[0]) if block is None else rows * tiles
        passes = 2 if block == 16 else 1
        chain = units * (n - 1) * passes
        mu = units * passes if method == "redge_cov" else 0
        assert c == chain + mu, (n, c, chain, mu)


# ---- several rows per program (small K) -------------------------------------------------------

TWO_PASS = ("redge", "redge_max", "redge_cov")
#: The two-pass backward's unrolled lengths at the edges of its block configurations and the
#: first n past them (the persistent tiled backward of ``_diffusion``).
UNROLLED = [(m, n) for m in ("redge", "redge_max") for n in (2, 3, 8, 9, TWOPASS_MAX_STEPS,
                                                             TWOPASS_MAX_STEPS + 1)] + \
    [("redge_cov", n) for n in (2, 3, 5, 6, TWOPASS_COV_MAX_STEPS, TWOPASS_COV_MAX_STEPS + 1)]


@pytest.mark.parametrize("method,n_steps", UNROLLED)
def test_two_pass_backward_at_each_unrolled_length(method, n_steps):
    """The tiled diffusion backward is compiled per n up to ``twopass_max_steps``
    (``_diffusion_twopass``: the chain unrolled, its triangle of row sums solved per row; ReDGE-Cov
    with the sums of its mu / v paths and d_0); the next n takes the persistent tiled backward of
    ``_diffusion``. Three tiles and a tail."""
    _compare(method, _logits(2, 53, seed=n_steps), linear_schedule(n_steps, 0.4), block=16)


@pytest.mark.parametrize("method,n_steps", [("redge", 5), ("redge", 9), ("redge_max", 5),
                                            ("redge_max", 9), ("redge_cov", 5),
                                            ("redge_cov", 6)])
def test_two_pass_backward_at_its_own_blocks(monkeypatch, method, n_steps):
    """The launcher's own two-pass blocks (``twopass_config``: 2048 columns in 16 warps up to
    n = 8, ReDGE-Cov 5, 1024 in 8 warps above; the grouped noise form), a row of two tiles and a
    tail, with a masked entry: the reference's index and gradients. ReDGE-Cov: the reference's
    index and the gradients of the step-by-step recursion of the persistent tiled backward on the
    same forward; against the reference its largest entries differ by ~1.2e-5 at K = 4099, n = 5
    (both kernel backwards alike, 1e-7 apart): the kernels' float32 trajectory differs from the
    reference's by ulps that c_k lam (up to ~80 here) amplifies, as a float64 derivative along
    the reference's own trajectory shows (the reference within 1.7e-6 of it, the kernels not)."""
    k = 2 * twopass_config(n_steps, cov=method == "redge_cov")[0] + 3
    phi = _logits(2, k, seed=n_steps)
    phi[0, 7] = float("-inf")
    sched = linear_schedule(n_steps, 0.3)
    if method != "redge_cov":
        _compare(method, phi, sched)
        return
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(4)).to(phi)
    _, index, gphi = _run(method, phi, 3, sched, True, g)
    _, index_ref = reference.sample(method, phi, 3, sched, True)
    assert torch.equal(index, index_ref)
    monkeypatch.setattr(_launch, "twopass_max_steps", lambda cov: 0)
    _, index_p, gphi_p = _run(method, phi, 3, sched, True, g)
    assert torch.equal(index_p, index)
    torch.testing.assert_close(gphi, gphi_p)


@pytest.mark.parametrize("method", TWO_PASS)
def test_two_pass_backward_is_exact_where_p1_is_one_hot(method):
    """t_1 = 0.001 (c_1 ~ 1e6) makes p_1 exactly one-hot in float32 on most rows: the gradient is
    then exactly 0 through the chain (r_1 = 0; ReDGE-Cov: and through mu, v), which the gathered
    sums reproduce only because g is taken relative to g at the sampled index (otherwise
    c_1 (U_k - d_1 T_{k,1}) leaves ~c_1 2^-24 of rounding, ~1e-3 here)."""
    phi = _logits(4, 45, seed=2)
    _, index, gphi = _compare(method, phi, linear_schedule(4, 0.001), block=16)
    coefs = linear_schedule(4, 0.001).table(DEVICE)
    seed_t = torch.tensor(3, dtype=torch.int64)
    _, stats, _ = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], True, 1.0, block=16)
    one_hot = stats[:, 1, 1] == 1.0  # s_1 = 1: every other entry of p_1 underflows to 0
    assert one_hot.sum() >= 2
    if method != "redge_max":
        assert torch.all(gphi[one_hot] == 0)


@pytest.mark.parametrize("method,hard", [("redge", True), ("redge", False), ("redge_cov", True),
                                         ("redge_cov", False), ("redge_max", True)])
@pytest.mark.parametrize("k", [1, 2, 3, 9, 20, ROWS_MAX_K])
def test_rows_block_matches_reference(method, hard, k):
    """Rows not a multiple of the block's ROWS (a partial last block); K = 1 and 2 (BLOCK = 2, one
    noise call per element), 3 (BLOCK = 4, one grouped call per row, a lane masked), 9, 20
    (BLOCK = 32 as two pieces of 16 columns, the second partly masked) and the largest K of the
    path."""
    rows = rows_config(k)[0] + 3
    _compare(method, _logits(rows, k, seed=k), linear_schedule(4, 0.5), hard=hard)


@pytest.mark.parametrize("method", ["redge", "redge_max"])
@pytest.mark.parametrize("k", [9, 20, ROWS_MAX_K])
def test_rows_backward_in_registers_equals_the_scratch_walk(monkeypatch, method, k):
    """The several-rows backward with the chain unrolled and p_k in registers (``REG_STEPS``, up
    to ROWS_BWD_REG_MAX_STEPS steps) and with the walk through the scratch (forced): the same
    operations, so bitwise the same gradient, at the shortest chain, the longest the registers
    take and one past it (scratch either way); the reference's to fp32 tolerance. K = 9 (BLOCK 16
    in column groups), 20 (two pieces of 16), 64."""
    top = _launch.ROWS_BWD_REG_MAX_STEPS
    for n_steps in (2, top, top + 1):
        assert bool(_launch.rows_bwd_reg_steps(n_steps, False, 16)) == (n_steps <= top)
        assert not _launch.rows_bwd_reg_steps(n_steps, True, 16)
        phi = _logits(rows_config(k)[0] + 3, k, seed=n_steps)
        sched = linear_schedule(n_steps, 0.4)
        _, _, in_regs = _compare(method, phi, sched)
        with monkeypatch.context() as m:
            m.setattr(_launch, "ROWS_BWD_REG_MAX_STEPS", 0)
            g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(4)).to(phi)
            _, _, walked = _run(method, phi, 3, sched, True, g)
        assert torch.equal(in_regs, walked)


@pytest.mark.parametrize("method", DIFFUSION)
def test_rows_block_equals_one_row_per_program(method):
    """Same noise whatever the path: identical indices, values and gradients within rounding."""
    phi = _logits(7, 9, seed=3)
    sched = linear_schedule(5, 0.3)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(1)).to(phi)
    a = _run(method, phi, 11, sched, True, g)
    b = _run(method, phi, 11, sched, True, g, block=16)
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[2], b[2])


def _check_vocabulary_shard(method, hard, tau, c0=6, width=9):
    """A shard starting at a column that is not a multiple of 4 (the per-element noise form):
    the whole row's sample and gradient when every other column is -inf."""
    full = torch.full((5, c0 + width + 3), float("-inf"), device=DEVICE)
    full[:, c0:c0 + width] = _logits(5, width, seed=c0)
    shard = full[:, c0:c0 + width].contiguous()
    sched = linear_schedule(3, 0.5)
    coefs = sched.table(DEVICE)
    seed_t = torch.tensor(9, dtype=torch.int64, device=DEVICE)
    g = torch.randn(full.shape, generator=torch.Generator().manual_seed(2)).to(full)
    y, stats, index = tk.fwd(shard, seed_t, coefs, METHOD_IDS[method], hard, tau, col_offset=c0)
    gphi = tk.bwd(g[:, c0:c0 + width].contiguous(), shard, seed_t, coefs, stats, index,
                  METHOD_IDS[method], hard, tau, col_offset=c0)
    p = full.clone().requires_grad_(True)
    y_ref, index_ref = reference.sample(method, p, 9, sched, hard, tau)
    y_ref.backward(g)
    assert torch.equal(index + c0, index_ref)
    torch.testing.assert_close(y, y_ref.detach()[:, c0:c0 + width])
    torch.testing.assert_close(gphi, p.grad[:, c0:c0 + width])


@pytest.mark.parametrize("method", DIFFUSION)
def test_rows_block_vocabulary_shard(method):
    """A vocabulary shard at column 6 of a diffusion estimator, hard, tau = 1."""
    _check_vocabulary_shard(method, True, 1.0)


# ---- several rows per program (small K): the one-pass baselines -------------------------------

ONEPASS = ("st", "gumbel", "reinmax")
#: tau != 1 where the estimator has one (the tempered softmax's unscaled-max stats).
ONEPASS_TAU = {"st": 1.0, "gumbel": 0.7, "reinmax": 1.3}


@pytest.mark.parametrize("method,hard", [("st", True), ("st", False), ("gumbel", True),
                                         ("gumbel", False), ("reinmax", True)])
@pytest.mark.parametrize("k", [1, 2, 3, 9, 20, ROWS_MAX_K])
def test_onepass_rows_block_matches_reference(method, hard, k):
    """Rows not a multiple of the block's ROWS (a partial last block); K = 1 and 2 (BLOCK = 2, one
    noise call per element), 3 (BLOCK = 4, grouped, a lane masked), 9, 20 (BLOCK = 32 as two
    pieces, the second partly masked) and the largest K of the path; identical indices."""
    rows = rows_config(k)[0] + 3
    _compare(method, _logits(rows, k, seed=k), linear_schedule(3, 0.5), hard=hard,
             tau=ONEPASS_TAU[method])


@pytest.mark.parametrize("method,hard", [("st", False), ("gumbel", False), ("reinmax", True)])
def test_onepass_rows_block_masks_empty_and_poisoned_rows(method, hard):
    """Masked entries, an empty row, NaN / +inf rows and a single valid entry in one block."""
    phi = _logits(7, 9, seed=5)
    _mask_empty_poison(phi)
    phi[4, :8] = float("-inf")    # a single valid entry, the last
    y, index, gphi = _compare(method, phi, linear_schedule(3, 0.5), hard=hard,
                              tau=ONEPASS_TAU[method])
    assert index[1:4].tolist() == [-1, -1, -1] and index[4].item() == 8
    assert torch.all(y[1] == 0) and torch.all(gphi[1] == 0)
    assert torch.isnan(y[2:4]).all() and torch.isnan(gphi[2:4]).all()
    assert torch.isfinite(gphi[[0, 4, 5, 6]]).all()
    assert torch.all(y[0][phi[0] == float("-inf")] == 0)
    assert torch.all(gphi[0][phi[0] == float("-inf")] == 0)


@pytest.mark.parametrize("method", ONEPASS)
def test_onepass_rows_block_equals_one_row_per_program(method):
    """Same noise and the same stats layout whatever the path: identical indices, values, stats
    (slot 1 of reinmax, the zero slots, NaN on a poisoned row) and gradients within rounding."""
    phi = _logits(7, 9, seed=3)
    phi[2, 4] = float("nan")
    sched = linear_schedule(4, 0.3)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(1)).to(phi)
    a = _run(method, phi, 11, sched, False, g, tau=ONEPASS_TAU[method], stats=True)
    b = _run(method, phi, 11, sched, False, g, block=16, tau=ONEPASS_TAU[method], stats=True)
    assert torch.equal(a[1], b[1])
    for x, z in zip((a[0], a[2], a[3]), (b[0], b[2], b[3])):
        torch.testing.assert_close(x, z, equal_nan=True)
    assert torch.isnan(a[3][2, :, 1]).all() and torch.all(a[3][:, 2:, 0] == 0)


@pytest.mark.parametrize("method", ONEPASS)
def test_onepass_rows_block_int64_row_offset_and_no_y(method):
    """A global row past 2**32 (the counter's high word, int64 row arithmetic), and the forward
    without y (WRITE_Y off): the same index and stats."""
    phi = _logits(5, 9, seed=2)
    row_offset = 2**33 + 5
    _compare(method, phi, linear_schedule(3, 0.5), row_offset=row_offset,
             tau=ONEPASS_TAU[method])
    coefs = linear_schedule(3, 0.5).table(DEVICE)
    seed_t = torch.tensor(3, dtype=torch.int64, device=DEVICE)
    args = (phi, seed_t, coefs, METHOD_IDS[method], True, ONEPASS_TAU[method], row_offset)
    _, stats, index = tk.fwd(*args)
    y0, stats0, index0 = tk.fwd(*args, write_y=False)
    assert y0.shape == (0, 9) and torch.equal(index0, index) and torch.equal(stats0, stats)


@pytest.mark.parametrize("method", ONEPASS)
def test_onepass_rows_block_vocabulary_shard(method):
    """A vocabulary shard at column 6 of a one-pass estimator, soft, its tau."""
    _check_vocabulary_shard(method, False, ONEPASS_TAU[method])


# ---- rows of K <= 2: a row per thread (the BLOCK = 2 block, _onepass_pairs) --------------------

@pytest.mark.parametrize("method,hard", [("st", False), ("gumbel", False), ("reinmax", True)])
def test_onepass_pairs_masks_empty_and_poisoned_rows(method, hard):
    """K = 2: a masked entry (either column), an empty row, NaN / +inf rows; the same index,
    values, stats (NaN s on the poisoned rows) and gradients as one row per program."""
    phi = _logits(9, 2, seed=4)
    phi[0, 1] = float("-inf")
    phi[1, :] = float("-inf")
    phi[2, 0] = float("nan")
    phi[3, 1] = float("inf")
    phi[4, 0] = float("-inf")
    y, index, gphi = _compare(method, phi, linear_schedule(3, 0.5), hard=hard,
                              tau=ONEPASS_TAU[method])
    assert index[:5].tolist() == [0, -1, -1, -1, 1]
    assert torch.all(y[1] == 0) and torch.all(gphi[1] == 0)
    assert torch.isnan(y[2:4]).all() and torch.isnan(gphi[2:4]).all()
    assert y[0, 1] == 0 and gphi[0, 1] == 0 and y[4, 0] == 0 and gphi[4, 0] == 0
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(1)).to(phi)
    sched = linear_schedule(4, 0.3)
    a = _run(method, phi, 11, sched, hard, g, tau=ONEPASS_TAU[method], stats=True)
    b = _run(method, phi, 11, sched, hard, g, block=16, tau=ONEPASS_TAU[method], stats=True)
    assert torch.equal(a[1], b[1])
    for x, z in zip((a[0], a[2], a[3]), (b[0], b[2], b[3])):
        torch.testing.assert_close(x, z, equal_nan=True)
    assert torch.isnan(a[3][2:4, :, 1]).all()


@pytest.mark.parametrize("method", ONEPASS)
@pytest.mark.parametrize("c0,width", [(3, 2), (6, 2), (5, 1)])
def test_onepass_pairs_vocabulary_shard(method, c0, width):
    """Shards of K <= 2 at columns 3 (its two columns in two noise calls), 6 (one call, words 2
    and 3) and 5 (K = 1)."""
    _check_vocabulary_shard(method, False, ONEPASS_TAU[method], c0=c0, width=width)


@pytest.mark.parametrize("method", ONEPASS)
@pytest.mark.parametrize("k", [1, 2])
def test_onepass_pairs_int64_row_offset_and_no_y(method, k):
    """K <= 2 past global row 2**32, and without y: the same index and stats."""
    phi = _logits(rows_config(k)[0] + 5, k, seed=2)
    row_offset = 2**33 + 5
    _compare(method, phi, linear_schedule(3, 0.5), row_offset=row_offset,
             tau=ONEPASS_TAU[method])
    coefs = linear_schedule(3, 0.5).table(DEVICE)
    seed_t = torch.tensor(3, dtype=torch.int64, device=DEVICE)
    args = (phi, seed_t, coefs, METHOD_IDS[method], True, ONEPASS_TAU[method], row_offset)
    _, stats, index = tk.fwd(*args)
    y0, stats0, index0 = tk.fwd(*args, write_y=False)
    assert y0.shape == (0, k) and torch.equal(index0, index) and torch.equal(stats0, stats)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ONEPASS + ("redge", "redge_cov"))
@pytest.mark.parametrize("k", [2, 9])
def test_rows_blocks_low_precision(dtype, method, k):
    """fp16 / bf16 logits and gradients on the several-rows blocks (K = 2: a row per thread for
    the one-pass estimators; 9: a [ROWS, 16] block): fp32 math against the reference on the same
    low-precision input, identical indices, outputs in the input's dtype."""
    phi = _logits(13, k, seed=k).to(dtype)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(1)).to(phi)
    tau = ONEPASS_TAU.get(method, 1.0)
    sched = linear_schedule(3, 0.5)
    y, index, gphi = _run(method, phi, 5, sched, method != "st", g, tau=tau)
    p = phi.detach().clone().requires_grad_(True)
    y_ref, index_ref = reference.sample(method, p, 5, sched, method != "st", tau)
    y_ref.backward(g)
    assert y.dtype == dtype and gphi.dtype == dtype
    assert torch.equal(index, index_ref)
    torch.testing.assert_close(y, y_ref.detach())
    torch.testing.assert_close(gphi, p.grad)


@pytest.mark.parametrize("method", DIFFUSION)
@pytest.mark.parametrize("n_steps", [2, 5])
def test_diffusion_pairs_masks_empty_and_poisoned_rows(method, n_steps):
    """K = 2 for the diffusion family (_diffusion_pairs): a masked entry (either column), an empty
    row, NaN / +inf rows, n = 2 (no step between the base and the last denoiser) and 5; the same
    index, values, stats and gradients as one row per program."""
    phi = _logits(9, 2, seed=6)
    phi[0, 1] = float("-inf")
    phi[1, :] = float("-inf")
    phi[2, 0] = float("nan")
    phi[3, 1] = float("inf")
    phi[4, 0] = float("-inf")
    sched = linear_schedule(n_steps, 0.5)
    y, index, gphi = _compare(method, phi, sched, hard=method == "redge_max")
    assert index[:5].tolist() == [0, -1, -1, -1, 1]
    assert torch.all(gphi[1] == 0) and torch.isnan(gphi[2:4]).all()
    assert gphi[0, 1] == 0 and gphi[4, 0] == 0
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(1)).to(phi)
    a = _run(method, phi, 11, sched, True, g, stats=True)
    b = _run(method, phi, 11, sched, True, g, block=16, stats=True)
    assert torch.equal(a[1], b[1])
    for x, z in zip((a[0], a[2], a[3]), (b[0], b[2], b[3])):
        torch.testing.assert_close(x, z, equal_nan=True)


@pytest.mark.parametrize("method", DIFFUSION)
@pytest.mark.parametrize("c0,width", [(3, 2), (6, 2), (5, 1)])
def test_diffusion_pairs_vocabulary_shard(method, c0, width):
    """Diffusion shards of K <= 2 at columns 3 (two noise calls per stream), 6 (words 2 and 3 of
    one call) and 5 (K = 1)."""
    _check_vocabulary_shard(method, True, 1.0, c0=c0, width=width)


@pytest.mark.parametrize("method", DIFFUSION)
def test_diffusion_pairs_int64_row_offset(method):
    """K = 2 past global row 2**32, over more than one block of rows."""
    phi = _logits(rows_config(2)[0] + 5, 2, seed=8)
    _compare(method, phi, linear_schedule(4, 0.5), row_offset=2**33 + 5)


# ---- the row flags (poisoned / empty) of every block form ----------------------------------------

_FLAG_TAU = {"st": 1.0, "gumbel": 0.7, "reinmax": 1.3, "redge": 1.0, "redge_cov": 1.0,
             "redge_max": 1.0}


@pytest.mark.parametrize("method", ONEPASS + DIFFUSION)
@pytest.mark.parametrize("block", [None, 16], ids=["rows", "tiled"])
def test_row_flags_of_special_entries_in_the_last_tile(method, block):
    """The tiled loops read the row flags off per-lane NaN-propagating maxima or off the online
    softmax stats (``_common.flags_of_max`` / ``flags_of_stats``), the row blocks off one max
    reduction. Rows of 40 entries (tiles of 16: the specials in the last, partial tile): a NaN
    among ``-inf`` entries, a lone ``+inf``, a NaN in the slot of four holding the row max, a
    ``+inf`` and a NaN in different tiles, an empty row, a lone valid entry at ``-3.4e38``, finite
    entries at +-3.4e38 (neither poisoned nor empty). Indices identical to the reference (-1 on
    the first five rows), values and gradients within rounding, NaN where poisoned."""
    inf, nan = float("inf"), float("nan")
    phi = _logits(8, 40, seed=5)
    phi[0] = -inf
    phi[0, 37] = nan
    phi[1] = -inf
    phi[1, 39] = inf
    phi[2, 33] = nan
    phi[2, 34] = 50.0
    phi[3, 5] = inf
    phi[3, 38] = nan
    phi[4] = -inf
    phi[5] = -inf
    phi[5, 36] = -3.4e38
    phi[6, 20] = 3.4e38
    phi[6, 36] = -3.4e38
    hard = method != "gumbel"
    sched = linear_schedule(4, 0.5)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(4)).to(phi)
    y, index, gphi = _run(method, phi, 3, sched, hard, g, block, tau=_FLAG_TAU[method])
    p = phi.detach().clone().requires_grad_(True)
    y_ref, index_ref = reference.sample(method, p, 3, sched, hard, _FLAG_TAU[method])
    y_ref.backward(g)
    assert torch.equal(index, index_ref)
    assert index[:7].tolist() == [-1, -1, -1, -1, -1, 36, 20]
    # poisoned rows: NaN on the whole row (ops.py; the reference leaves its gradient path as it
    # is there, e.g. ReinMax's exact zeros on the -inf entries)
    assert torch.isnan(y[:4]).all() and torch.isnan(gphi[:4]).all()
    assert torch.all(y[4] == 0) and torch.all(gphi[4] == 0)
    torch.testing.assert_close(y[4:], y_ref[4:].detach())
    torch.testing.assert_close(gphi[4:], p.grad[4:])
    assert torch.isfinite(y[5:]).all() and torch.isfinite(gphi[5:]).all()


def test_int32_column_offsets_copy_only_the_views_that_need_it():
    """The tiled kernels address a row's columns with int32 offsets: the launcher passes a view
    whose (K - 1) |stride(1)| reaches 2^31 (a transposed view of a large matrix) as a contiguous
    copy, every other tensor as it is (meta tensors: no memory)."""
    wide = torch.empty_strided((3, 5), (1, 2**29), device="meta")
    assert _launch._int32_columns(wide).stride() == (5, 1)
    ok = torch.empty_strided((3, 5), (1, 2**29 - 1), device="meta")
    assert _launch._int32_columns(ok) is ok
    plain = torch.empty(3, 5)
    assert _launch._int32_columns(plain) is plain
