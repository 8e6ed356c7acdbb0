"""The one-pass baselines (st, gumbel, reinmax; docs/SPEC.md "Baselines") with few long rows split
into vocabulary chunks (``redge_kernels.triton._onepass_split``): the same indices as the unsplit
tiled kernels and the pure-PyTorch reference for the same seed, values and gradients within
rounding, and the row conventions (masks, empty and poisoned rows, offsets, no y).

Without a GPU the kernels run under ``TRITON_INTERPRET=1`` (conftest.py). The launcher splits when
the rows fill fewer than half the programs of the planned SMs; the tests plan a small GPU
(``planned_sms(SMS)``) and a small tile (``block=``), so that a row of K = 2000 has several
chunks: 3 rows on 6 SMs give 4 chunks of one 512-wide tile (the last with the row's tail), 5 rows
2 chunks of two tiles.
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
from redge_kernels.triton import _launch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROWS, K, BLOCK, SMS = 3, 2000, 512, 6
#: tau != 1 where the estimator has one (the tempered softmax's unscaled-max stats).
TAU = {"st": 1.0, "gumbel": 0.7, "reinmax": 1.3, "redge": 1.0, "redge_cov": 1.0,
       "redge_max": 1.0}
#: Diffusion steps of the schedule: 5 for the diffusion estimators (middle denoisers), else 3.
STEPS = {"redge": 5, "redge_cov": 5, "redge_max": 5}
VARIANTS = pytest.mark.parametrize("method,hard", [("st", True), ("st", False), ("gumbel", True),
                                                   ("gumbel", False), ("reinmax", True)])


def _logits(rows=ROWS, k=K, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(rows, k, generator=gen)).to(DEVICE, dtype)


def _run(method, phi, hard, g, *, split, seed=3, row_offset=0, col_offset=0, write_y=True,
         block=BLOCK):
    """``(y, stats, index, grad_phi)`` of the Triton backend, split or not (planned SMs)."""
    coefs = linear_schedule(STEPS.get(method, 3), 0.5).table(phi.device)
    seed_t = torch.tensor(seed, dtype=torch.int64, device=phi.device)
    args = (seed_t, coefs, METHOD_IDS[method], hard, TAU[method], row_offset)
    kw = {"block": block, "col_offset": col_offset}
    # one planned SM: the 3 rows fill it, one program per row
    with _launch.planned_sms(SMS if split else 1):
        y, stats, index = tk.fwd(phi, *args, write_y=write_y, **kw)
        gphi = None
        if write_y:
            gphi = tk.bwd(g, phi, seed_t, coefs, stats, index, *args[2:], **kw)
    return y, stats, index, gphi


def _reference(method, phi, hard, g, seed=3, row_offset=0):
    p = phi.detach().clone().requires_grad_(True)
    y, index = reference.sample(method, p, seed, linear_schedule(STEPS.get(method, 3), 0.5), hard,
                                TAU[method],
                                row_offset)
    y.backward(g)
    return y.detach(), index, p.grad


def _grad_out(phi, seed=1):
    return torch.randn(phi.shape, generator=torch.Generator().manual_seed(seed)).to(phi)


def test_the_rows_are_split_into_chunks():
    """The plan the tests run under: several chunks, the last one shorter; none without a
    planned GPU (the interpreter) or with enough rows to fill it."""
    with _launch.planned_sms(SMS):
        n_chunks, chunk, blk, _ = _launch.split_plan(ROWS, K, "onepass_fwd", BLOCK, None)
        assert (n_chunks, chunk, blk) == (4, BLOCK, BLOCK)
        assert _launch.split_plan(5, K, "onepass_bwd", BLOCK, None)[:3] == (2, 2 * BLOCK, BLOCK)
        assert _launch.split_plan(2 * SMS, K, "onepass_fwd", BLOCK, None) is None
        assert _launch.split_plan(ROWS, BLOCK, "onepass_bwd", BLOCK, None) is None
    assert _launch.split_plan(ROWS, K, "onepass_fwd", BLOCK, torch.device("cpu")) is None
    with _launch.planned_sms(132):
        assert _launch.split_plan(8, 262144, "onepass_fwd", None, None)[:2] == (32, 8192)
        assert _launch.split_plan(64, 131072, "onepass_bwd", None, None)[:2] == (4, 32768)
        assert _launch.split_plan(4096, 32768, "onepass_fwd", None, None) is None


def _mask_empty_poison(phi):
    """Rows 0-4 in place: masked entries, an empty row, a NaN (second chunk) and a +inf (first
    chunk; poisoned rows), a single valid entry at the end of the row."""
    phi[0, ::3] = float("-inf")
    phi[1, :] = float("-inf")
    phi[2, 1500] = float("nan")
    phi[3, 7] = float("inf")
    phi[4, :-5] = float("-inf")


def _check_masked_rows(method, hard):
    """The split call on masked, empty, poisoned and single-entry rows against the reference
    (identical indices; y and gradients within rounding) and the unsplit kernels (identical
    indices; y, stats and gradients within rounding). Returns the logits and the split call's
    ``(y, stats, gphi)``."""
    phi = _logits(5, seed=7)
    _mask_empty_poison(phi)
    g = _grad_out(phi)
    y, stats, index, gphi = _run(method, phi, hard, g, split=True)
    y_ref, index_ref, gphi_ref = _reference(method, phi, hard, g)
    assert torch.equal(index, index_ref)
    assert index[1:4].tolist() == [-1, -1, -1] and index[4].item() >= K - 5
    torch.testing.assert_close(y, y_ref, equal_nan=True)
    torch.testing.assert_close(gphi, gphi_ref, equal_nan=True)
    y1, stats1, index1, gphi1 = _run(method, phi, hard, g, split=False)
    assert torch.equal(index, index1)
    for a, b in ((y, y1), (stats, stats1), (gphi, gphi1)):
        torch.testing.assert_close(a, b, equal_nan=True)
    return phi, y, stats, gphi


@VARIANTS
def test_split_matches_reference_and_unsplit(method, hard):
    """Masks, an empty row, poisoned rows and a single valid entry (2 chunks of 2 tiles):
    identical indices to the reference and to the unsplit kernels; y, stats and gradients within
    rounding."""
    phi, y, stats, gphi = _check_masked_rows(method, hard)
    assert torch.all(y[1] == 0) and torch.all(gphi[1] == 0)
    assert torch.isnan(y[2:4]).all() and torch.isnan(gphi[2:4]).all()
    assert torch.isnan(stats[2:4, 0, 1]).all() and torch.all(stats[:, 2:, 0] == 0)
    assert torch.all(gphi[0][phi[0] == float("-inf")] == 0)


@pytest.mark.parametrize("method", ["st", "gumbel", "reinmax"])
def test_split_int64_row_offset_and_no_y(method):
    """A global row past 2**32 (the counter's high word) against the reference; the forward
    without y: the same stats and index, an empty y."""
    phi = _logits(seed=2)
    g = _grad_out(phi)
    row_offset = 2**33 + 5
    y, stats, index, gphi = _run(method, phi, True, g, split=True, row_offset=row_offset)
    y_ref, index_ref, gphi_ref = _reference(method, phi, True, g, row_offset=row_offset)
    assert torch.equal(index, index_ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gphi, gphi_ref)
    y0, stats0, index0, _ = _run(method, phi, True, g, split=True, row_offset=row_offset,
                                 write_y=False)
    assert y0.shape == (0, K) and torch.equal(index0, index) and torch.equal(stats0, stats)


@pytest.mark.parametrize("method,hard", [("st", False), ("gumbel", False), ("reinmax", True)])
def test_split_vocabulary_shard(method, hard):
    """A shard starting at column 6 (the per-element noise form) of a row whose other columns
    are -inf: the whole row's sample and gradient. The shard and its grad_y are strided views
    (row stride K + 9)."""
    c0 = 6
    full = torch.full((ROWS, c0 + K + 3), float("-inf"), device=DEVICE)
    full[:, c0:c0 + K] = _logits(seed=c0)
    g = _grad_out(full)
    y, _, index, gphi = _run(method, full[:, c0:c0 + K], hard, g[:, c0:c0 + K], split=True,
                             col_offset=c0)
    y_ref, index_ref, gphi_ref = _reference(method, full, hard, g)
    assert torch.equal(index + c0, index_ref)
    torch.testing.assert_close(y, y_ref[:, c0:c0 + K])
    torch.testing.assert_close(gphi, gphi_ref[:, c0:c0 + K])


@pytest.mark.parametrize("method,hard,dtype", [("gumbel", False, torch.bfloat16),
                                               ("reinmax", True, torch.float16)],
                         ids=["gumbel-soft-bf16", "reinmax-fp16"])
def test_split_half_inputs(method, hard, dtype):
    """bf16 / fp16 logits and gradients read as such: the unsplit kernels' index, y and stats
    within rounding and the reference's index for the same values in float32."""
    phi = _logits(seed=4, dtype=dtype)
    g = _grad_out(phi)
    y, stats, index, gphi = _run(method, phi, hard, g, split=True)
    y1, stats1, index1, gphi1 = _run(method, phi, hard, g, split=False)
    assert y.dtype == gphi.dtype == dtype
    assert torch.equal(index, index1)
    for a, b in ((y, y1), (stats, stats1), (gphi, gphi1)):
        torch.testing.assert_close(a, b)
    _, index_ref, _ = _reference(method, phi.float(), hard, g.float())
    assert torch.equal(index, index_ref)


# ---- the diffusion forward split into chunks (``_diffusion_split``) ---------------------------

DIFFUSION = pytest.mark.parametrize("method,hard", [("redge", True), ("redge", False),
                                                    ("redge_cov", True), ("redge_cov", False),
                                                    ("redge_max", True)])


def test_diffusion_rows_are_split_into_chunks():
    """The diffusion plans: 4 chunks of one tile (5 rows: 2 of two tiles) under the tests' plan,
    32 chunks of four 2048-wide tiles for 8 x 262144 on 132 SMs, none for 4096 x 32768."""
    with _launch.planned_sms(SMS):
        assert _launch.split_plan(ROWS, K, "diffusion_fwd", BLOCK, None)[:3] == (4, BLOCK, BLOCK)
        assert _launch.split_plan(5, K, "diffusion_bwd", BLOCK, None)[:3] == (2, 2 * BLOCK, BLOCK)
    with _launch.planned_sms(132):
        assert _launch.split_plan(8, 262144, "diffusion_fwd", None, None)[:2] == (32, 8192)
        assert _launch.split_plan(8, 262144, "diffusion_bwd", None, None)[:2] == (32, 8192)
        assert _launch.split_plan(4096, 32768, "diffusion_fwd", None, None) is None


@DIFFUSION
def test_diffusion_split_matches_reference_and_unsplit(method, hard):
    """Masks, an empty row, poisoned rows and a single valid entry (2 chunks of 2 tiles, 5
    steps): identical indices to the reference and to the unsplit kernels; y, stats and the
    gradients (the split backward on the split forward's stats) within rounding."""
    phi, y, stats, gphi = _check_masked_rows(method, hard)
    assert torch.all(y[1] == 0) and torch.isnan(y[2:4]).all()
    assert torch.isnan(stats[2:4, 1, 1]).all()


@pytest.mark.parametrize("method", ["redge", "redge_cov"])
def test_diffusion_split_int64_row_offset_shard_and_no_y(method):
    """A global row past 2**32 and a strided shard starting at column 6 (the per-element noise
    form) of a row whose other columns are -inf, against the reference; without y: the same
    stats and index, an empty y."""
    c0, row_offset = 6, 2**33 + 5
    full = torch.full((ROWS, c0 + K + 3), float("-inf"), device=DEVICE)
    full[:, c0:c0 + K] = _logits(seed=c0)
    g = _grad_out(full)
    y, stats, index, gphi = _run(method, full[:, c0:c0 + K], False, g[:, c0:c0 + K],
                                 split=True, col_offset=c0, row_offset=row_offset)
    y_ref, index_ref, gphi_ref = _reference(method, full, False, g, row_offset=row_offset)
    assert torch.equal(index + c0, index_ref)
    torch.testing.assert_close(y, y_ref[:, c0:c0 + K])
    torch.testing.assert_close(gphi, gphi_ref[:, c0:c0 + K])
    y0, stats0, index0, _ = _run(method, full[:, c0:c0 + K], False, g[:, c0:c0 + K],
                                 split=True, col_offset=c0, row_offset=row_offset,
                                 write_y=False)
    assert y0.shape == (0, K) and torch.equal(index0, index) and torch.equal(stats0, stats)


def test_diffusion_split_bf16():
    """bf16 logits read as such: the unsplit kernels' index, y and stats within rounding and
    the reference's index for the same values in float32."""
    phi = _logits(seed=4, dtype=torch.bfloat16)
    g = _grad_out(phi)
    y, stats, index, gphi = _run("redge_cov", phi, False, g, split=True)
    y1, stats1, index1, gphi1 = _run("redge_cov", phi, False, g, split=False)
    assert y.dtype == gphi.dtype == torch.bfloat16
    assert torch.equal(index, index1)
    for a, b in ((y, y1), (stats, stats1), (gphi, gphi1)):
        torch.testing.assert_close(a, b)
    _, index_ref, _ = _reference("redge_cov", phi.float(), False, g.float())
    assert torch.equal(index, index_ref)


class _Spy:
    """Wraps a Triton kernel: records the grid of each launch (``kernel[grid](...)``)."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(tuple(grid))
        return self.kernel[grid]


def _bwd_split_and_not(method, n, phi_seed, g_seed, check_plan=None):
    """Forward and backward of ``method`` on 5 long rows (masked, empty, poisoned) with the
    split plan (``SMS``) and without (1 SM); asserts the reference's index and gradients and
    the split's agreement with the unsplit kernel, returns the split gradient.
    ``check_plan(sms)``, if given, runs before each forward."""
    phi = _logits(5, seed=phi_seed)
    _mask_empty_poison(phi)
    g = _grad_out(phi, seed=g_seed)
    sched = linear_schedule(n, 0.5)
    coefs = sched.table(phi.device)
    seed_t = torch.tensor(3, dtype=torch.int64, device=phi.device)
    grads = {}
    for sms in (SMS, 1):
        with _launch.planned_sms(sms):
            if check_plan is not None:
                check_plan(sms)
            _, stats, index = tk.fwd(phi, seed_t, coefs, METHOD_IDS[method], True, 1.0,
                                     block=BLOCK)
            grads[sms] = tk.bwd(g, phi, seed_t, coefs, stats, index, METHOD_IDS[method], True,
                                1.0, block=BLOCK)
    p = phi.clone().requires_grad_(True)
    y_ref, index_ref = reference.sample(method, p, 3, sched, True)
    y_ref.backward(g)
    assert torch.equal(index, index_ref)
    torch.testing.assert_close(grads[SMS], p.grad, equal_nan=True)
    torch.testing.assert_close(grads[SMS], grads[1], equal_nan=True)
    return grads[SMS]


@pytest.mark.parametrize("method,n", [("redge", 2), ("redge_max", 5), ("redge", 9),
                                      ("redge_max", 12), ("redge_cov", 2), ("redge_cov", 5),
                                      ("redge_cov", 11)])
def test_two_pass_backward_split_into_chunks(monkeypatch, method, n):
    """The two-pass diffusion backward (``_diffusion_twopass``) of few long rows runs on the
    (row, chunk) grid (5 rows: 2 chunks of two tiles, the last with the row's tail; masked,
    empty, poisoned rows): the reference's gradients and the unsplit two-pass kernel's within
    rounding, at the unrolled chain's shortest and longest lengths and its block configurations'
    edges."""
    part = _Spy(_launch._twopass_part_kernel)
    out = _Spy(_launch._twopass_out_kernel)
    monkeypatch.setattr(_launch, "_twopass_part_kernel", part)
    monkeypatch.setattr(_launch, "_twopass_out_kernel", out)
    grad = _bwd_split_and_not(method, n, 11, 2)
    assert part.grids == out.grids == [(5, 2)]
    assert torch.all(grad[1] == 0) and torch.isnan(grad[2:4]).all()


@pytest.mark.parametrize("method,n", [("redge_max", 13), ("redge_cov", 12)])
def test_split_backward_past_the_unrolled_lengths(method, n):
    """Past ``_launch.twopass_max_steps`` few long rows take the split walk-and-step backward
    (``_diffusion_split``): the reference's index and gradients, the unsplit persistent
    backward's within rounding (masked, empty, poisoned rows)."""
    def check_plan(sms):
        assert (_launch.split_plan(5, K, "diffusion_bwd", BLOCK, None) is None) == (sms == 1)

    _bwd_split_and_not(method, n, 12, 4, check_plan)
