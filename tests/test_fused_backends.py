"""Every fused backend against the pure-PyTorch reference with identical noise, case by case.

The checks that do not depend on the backend, written once: the cases are the ``TABLE`` of
tests/conftest.py (estimator x hyperparameters x shape), each backend taking the cases tagged for
it (``BACKEND_TAGS``: the Triton interpreter only the small and tiled ones). Test ids are
``<backend>-<method>-<hard|soft>-<rows>x<K>[-<hyperparameters>][-block<B>]``, so
``-k redge_cov`` selects one estimator and ``-k "cpu and redge_cov"`` one estimator on one backend.

- ``test_matches_reference``, ``test_schedules`` (docs/SPEC.md section 2), ``test_temperatures``:
  identical sampled indices, exact one-hot hard samples, values and gradients within
  ``torch.testing.assert_close``'s fp32 tolerances.
- ``test_masks_empty_and_nan_rows`` (docs/SPEC.md section 8): masked entries never sampled, with
  zero value and exactly zero gradient; an all-masked row gives index -1 and zeros; a NaN or +inf
  row index -1 and NaN; a single valid entry is sampled; other rows of the same block (lane
  kernels) or tile (Triton) still equal the reference.

Backend-specific checks (CPU threads, pool and lane thresholds, Triton paths, noise offsets, the
pruned Gumbel-max, dtypes) stay in tests/test_cpu_backend.py, tests/test_cpu_lanes.py and
tests/test_triton_kernels.py.
"""

import torch

from conftest import device_of

from redge_kernels import reference
from redge_kernels._constants import METHOD_IDS

INF = float("inf")


def _fused(backend, case, phi, g, seed):
    """(y, index, grad of phi) of ``case`` on a fused ``backend``: the Triton launchers directly
    (``case.block`` forces the tiled path), the CPU op through ``rk.sample``'s autograd."""
    schedule, method = case.schedule(), case.method
    if backend == "triton":
        import redge_kernels.triton as tk
        coefs = schedule.table(phi.device)
        seed_t = torch.tensor(seed, dtype=torch.int64, device=phi.device)
        mid = METHOD_IDS[method]
        y, stats, index = tk.fwd(phi, seed_t, coefs, mid, case.hard, case.tau, block=case.block)
        gphi = tk.bwd(g, phi, seed_t, coefs, stats, index, mid, case.hard, case.tau,
                      block=case.block)
        return y, index, gphi
    import redge_kernels as rk
    x = phi.detach().clone().requires_grad_()
    y, index = rk.sample(method, x, hard=case.hard, tau=case.tau, schedule=schedule, seed=seed,
                         backend=backend, return_index=True)
    y.backward(g)
    return y.detach(), index, x.grad


def _reference(case, phi, g, seed):
    p = phi.detach().clone().requires_grad_()
    y, index = reference.sample(case.method, p, seed, case.schedule(), case.hard, case.tau)
    y.backward(g)
    return y.detach(), index, p.grad


def _inputs(backend, case, logits=None):
    """(logits, incoming gradient, noise seed), fp32 [rows, k] on the backend's device, drawn
    from ``case.seeds`` or else a fixed function of the shape."""
    data_seed, seed = case.seeds or (case.rows * 1000 + case.k, 1234 + case.k)
    gen = torch.Generator().manual_seed(data_seed)
    if logits is None:
        logits = case.scale * torch.randn(case.rows, case.k, generator=gen)
    g = torch.randn(case.rows, case.k, generator=gen)
    dev = device_of(backend)
    return logits.to(dev), g.to(dev), seed


def _assert_matches_reference(backend, case):
    phi, g, seed = _inputs(backend, case)
    y, index, gphi = _fused(backend, case, phi, g, seed)
    y_ref, index_ref, g_ref = _reference(case, phi, g, seed)
    assert torch.equal(index, index_ref)
    if case.hard:
        assert set(y[index >= 0].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(y, y_ref, equal_nan=True)
    torch.testing.assert_close(gphi, g_ref, equal_nan=True)


def test_matches_reference(backend, match_case):
    _assert_matches_reference(backend, match_case)


def test_schedules(backend, schedule_case):
    _assert_matches_reference(backend, schedule_case)


def test_temperatures(backend, tau_case):
    _assert_matches_reference(backend, tau_case)


def _special_rows(rows):
    """Row numbers of the special rows of ``_masked_logits``: spread over the 16-row lane blocks
    (one in the middle of the first block, one in the last, partial block) when there are 16 rows
    or more; rows 1 to 5 otherwise (no "last" row in 5 rows)."""
    if rows >= 16:
        return {"empty": [2, 9], "nan": [11, 18], "inf": [12], "last": [13], "first": [14]}
    return {"empty": [1], "nan": [2], "inf": [3], "first": [4], "last": [5] if rows > 5 else []}


def _masked_logits(case):
    """fp32 [rows, k] logits, about 30% of the entries -inf (every other row keeps one finite
    entry); special rows: all -inf ("empty"), a NaN ("nan"), a +inf ("inf"), a single valid
    entry in the last column ("last") or the first ("first")."""
    rows, k = case.rows, case.k
    gen = torch.Generator().manual_seed(40 + rows * 100 + k)
    x = 2 * torch.randn(rows, k, generator=gen)
    x[torch.rand(rows, k, generator=gen) < 0.3] = -INF
    x[:, 0] = torch.where(torch.isinf(x).all(1), torch.tensor(0.3), x[:, 0])
    special = _special_rows(rows)
    x[special["empty"]] = -INF
    x[special["nan"], 1] = float("nan")
    x[special["inf"], 0] = INF
    for r in special["last"]:
        x[r, :k - 1] = -INF
        x[r, k - 1] = 0.5
    for r in special["first"]:
        x[r, 1:] = -INF
        x[r, 0] = -0.5
    return x


def test_masks_empty_and_nan_rows(backend, masks_case):
    case = masks_case
    phi, g, seed = _inputs(backend, case, _masked_logits(masks_case))
    y, index, gphi = _fused(backend, case, phi, g, seed)
    y_ref, index_ref, g_ref = _reference(case, phi, g, seed)
    assert torch.equal(index, index_ref)
    special = _special_rows(case.rows)
    poisoned = special["nan"] + special["inf"]
    assert (index[special["empty"] + poisoned] == -1).all()
    assert (index[special["last"]] == case.k - 1).all() and (index[special["first"]] == 0).all()
    for r in special["empty"]:
        assert torch.equal(y[r], torch.zeros_like(y[r]))
        assert torch.equal(gphi[r], torch.zeros_like(gphi[r]))
    assert torch.isnan(y[poisoned]).all() and torch.isnan(gphi[poisoned]).all()
    ok = torch.ones(case.rows, dtype=torch.bool, device=phi.device)
    ok[poisoned] = False
    masked = (phi == -INF) & ok[:, None]
    assert (y[masked] == 0).all()
    assert (gphi[masked] == 0).all()  # exactly zero gradient where masked
    sampled = index >= 0
    assert not masked[sampled, index[sampled]].any()  # a masked entry is never sampled
    if case.hard:
        assert set(y[sampled].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(y[ok], y_ref[ok])
    torch.testing.assert_close(gphi[ok], g_ref[ok])
    assert torch.isfinite(y[ok]).all() and torch.isfinite(gphi[ok]).all()
