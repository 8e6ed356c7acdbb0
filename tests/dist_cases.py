"""Cases of tests/test_distributed.py, and the worker that runs them as one rank of a gloo group.

Run by the test as ``python tests/dist_cases.py RANK WORLD INIT_FILE OUT_JSON``: every rank runs
every case of ``cases(WORLD)`` in order and writes one ``{"name", "ok", "msg"}`` record per case.
Each case builds the same global logits on every rank, takes this rank's shard, runs
``redge_kernels.distributed.sample`` forward and backward and compares the shard with the same
columns of the *unsharded* public call on the reference backend with the same seed: indices
exactly, values and gradients with torch's default tolerance of the dtype. A failing case does not
stop the others (every rank makes the same calls, so the group stays in step).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
import traceback

import torch

K_SIZES = {1: [50], 2: [23, 27], 4: [13, 7, 17, 13]}  # K = 50; shard starts 13, 20, 37, 23


@dataclasses.dataclass
class Case:
    name: str
    method: str
    hard: bool = True
    lead: tuple = (2, 3)
    sizes: tuple | None = None  # per-rank widths (default K_SIZES[world])
    dtype: torch.dtype = torch.float32
    masks: str = "mixed"  # "none", "mixed" (random -inf, an all-masked row, a masked shard
    #                       in one row) or "shard" (rank 1's columns masked in every row)
    poison: bool = False  # NaN in row 1 on the last rank, +inf in row 3 on rank 0
    seed_mode: str = "seed"  # "seed", "generator" or "dtensor" (DTensor input, seed=)
    schedule: tuple = ("linear", 4, 0.4)
    tau: float = 0.7
    error: str = ""  # "seed", "shape", "arg": the mismatch the case must reject
    tie: bool = False  # every row's best Gumbel-max score tied exactly on ranks 0 and 1
    vs_fp64: bool = False  # values and grads judged by their error against the fp64 reference
    via_api: bool = False  # through the public redge_kernels.sample(..., group=) entry point


def cases(world: int) -> list[Case]:
    combos = [("st", True), ("st", False), ("gumbel", True), ("gumbel", False),
              ("reinmax", True), ("redge", True), ("redge", False), ("redge_cov", True),
              ("redge_cov", False), ("redge_max", True)]
    out = [Case(f"{m}-{'hard' if h else 'soft'}", m, h) for m, h in combos]
    out += [Case(f"shard-masked-{m}", m, h, masks="shard") for m, h in
            [("st", False), ("reinmax", True), ("redge_cov", True), ("redge_max", True)]]
    out += [Case(f"poison-{m}", m, h, poison=True) for m, h in
            [("st", True), ("reinmax", True), ("redge", False), ("redge_cov", True)]]
    q, r = divmod(50257, world)
    gpt2 = tuple(q + (i < r) for i in range(world))
    out += [Case("vocab-50257-redge", "redge", lead=(3,), sizes=gpt2, masks="none",
                 schedule=("linear", 3, 0.5)),
            Case("vocab-50257-gumbel", "gumbel", lead=(3,), sizes=gpt2, masks="none"),
            Case("fp64-redge_cov", "redge_cov", False, dtype=torch.float64),
            Case("fp64-redge_max", "redge_max", dtype=torch.float64),
            Case("bf16-st", "st", False, dtype=torch.bfloat16),
            Case("bf16-redge", "redge", dtype=torch.bfloat16),
            Case("grid-redge", "redge", False, schedule=("grid", (0.0, 0.25, 0.5, 1.0))),
            Case("n2-redge_cov", "redge_cov", schedule=("linear", 2, 1.0)),
            Case("generator-redge", "redge", seed_mode="generator"),
            Case("dtensor-redge", "redge", False, seed_mode="dtensor"),
            Case("dtensor-reinmax", "reinmax", seed_mode="dtensor", masks="none"),
            Case("lead-1d-redge_cov", "redge_cov", lead=(), masks="none"),
            Case("no-rows-redge", "redge", lead=(0, 3), masks="none"),
            Case("t1-0.2-redge", "redge", False, schedule=("linear", 4, 0.2), vs_fp64=True),
            Case("t1-0.2-redge_cov", "redge_cov", schedule=("linear", 4, 0.2), vs_fp64=True),
            Case("tie-st", "st", masks="none", tie=True),
            Case("tie-gumbel", "gumbel", False, masks="none", tie=True),
            Case("error-seed", "redge", error="seed"),
            Case("error-shape", "st", error="shape"),
            Case("error-arg", "gumbel", error="arg"),
            Case("after-errors-redge_max", "redge_max"),
            Case("api-redge", "redge", via_api=True),
            Case("api-dtensor-gumbel", "gumbel", seed_mode="dtensor", masks="none", via_api=True)]
    if world == 4:
        out += [Case("empty-shard-st", "st", False, sizes=(10, 0, 5, 3)),
                Case("empty-shard-redge_cov", "redge_cov", sizes=(10, 0, 5, 3))]
    return out


def _schedule(case: Case):
    import redge_kernels as rk
    if case.schedule[0] == "grid":
        return rk.grid_schedule(case.schedule[1])
    return rk.linear_schedule(case.schedule[1], case.schedule[2])


def build(case: Case, sizes) -> tuple[torch.Tensor, torch.Tensor]:
    """The global logits ``[*lead, K]`` and upstream gradient, the same on every rank."""
    gen = torch.Generator().manual_seed(sum(map(ord, case.name)))
    k = sum(sizes)
    shape = case.lead + (k,)
    phi = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
    flat = phi.view(-1, k)
    c0 = [sum(sizes[:r]) for r in range(len(sizes))]
    if case.masks == "mixed":
        flat[torch.rand(flat.shape, generator=gen) < 0.15] = float("-inf")
        flat[4] = float("-inf")  # an all-masked row
        if len(sizes) > 1:
            flat[2, c0[1]:c0[1] + sizes[1]] = float("-inf")  # a masked shard in one row
    elif case.masks == "shard":
        flat[:, c0[1]:c0[1] + sizes[1]] = float("-inf")
    if case.poison:
        flat[1, c0[-1] + sizes[-1] // 2] = float("nan")
        flat[3, c0[0]] = float("inf")
    grad = torch.randn(shape, generator=gen, dtype=torch.float64)
    if case.tie:
        phi = _tie(phi.view(-1, k).float(), c0[0] + 1, c0[1] + 2).view(shape)
    return phi.to(case.dtype), grad.to(case.dtype)


def _tie(phi: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """``phi`` (fp32) whose best Gumbel-max score ``phi_a + G_a`` (G the noise of seed 1234) is
    tied exactly in fp32 by ``phi_b + G_b`` in the rows where an fp32 ``phi_b`` reaches it (at
    least 3 rows): there the first maximum, column ``a``, must win."""
    from redge_kernels.noise import gumbel_noise
    gumbel = gumbel_noise(1234, phi.shape[0], phi.shape[1])
    phi[:, a] = 30.0
    target = phi[:, a] + gumbel[:, a]
    cand = target - gumbel[:, b]
    for _ in range(64):  # walk cand by ulps until the fp32 sum lands on the target
        score = cand + gumbel[:, b]
        if torch.equal(score, target):
            break
        cand = torch.where(score < target, torch.nextafter(cand, torch.tensor(1e9)),
                           torch.where(score > target, torch.nextafter(cand, torch.tensor(-1e9)),
                                       cand))
    tied = (cand + gumbel[:, b]) == target
    assert int(tied.sum()) >= 3, "could not build exact ties"
    phi[:, b] = torch.where(tied, cand, phi[:, b])
    return phi.double()


def _expected_collectives(case: Case) -> tuple[int, int]:
    """(forward, backward) all-gathers: the check plus one per forward step; one per backward
    step (docs/SPEC.md "Vocabulary-parallel")."""
    if 0 in case.lead:  # no rows: the check only
        return 1, 0
    if case.method in ("st", "gumbel", "reinmax"):
        return 2, 1
    n = _schedule(case).n_steps
    return (1 + n, n) if case.method == "redge_cov" else (n, n - 1)


def _compare(name, got, want, exact=False):
    if exact:
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=name)
    else:
        torch.testing.assert_close(got, want, equal_nan=True, msg=lambda m: f"{name}: {m}")


def _compare_vs_fp64(case, phi, grad, cols, y, g, y_ref, g_ref):
    """At small t_1 (c_k up to ~20 here) the chain amplifies rounding: the unsharded fp32 call
    itself is ~1e-3 (relative) away from fp64 in the ReDGE-Cov gradient, so sharded and unsharded
    fp32 calls legitimately differ beyond fp32 tolerance. The criterion: the sharded call's error
    against the fp64 reference (same noise) is at most twice the unsharded fp32 call's own
    error, both as the max-norm over the whole output, plus 1e-6 of its largest magnitude."""
    y64, _, g64 = _reference(case, phi.double(), grad.double())
    for name, mine, ref32, ref64 in (("value", y, y_ref, y64), ("grad", g, g_ref, g64)):
        own = (ref32.double() - ref64).abs().max().item()  # over the whole output
        scale = ref64.abs().max().item()
        err = (mine.double() - ref64[..., cols].reshape(mine.shape)).abs().max().item()
        assert err <= 2 * own + 1e-6 * scale, f"{name}: error {err:.3g} vs the unsharded call's {own:.3g}"


class Counter:
    """Counts the all-gathers of ``redge_kernels.parallel`` (its one collective primitive)."""

    def __init__(self):
        from redge_kernels.parallel import collectives
        self.n = 0
        inner = collectives._ALL_GATHER

        def counted(out, inp, group=None):
            self.n += 1
            return inner(out, inp, group=group)
        collectives._ALL_GATHER = counted


def _shard_sizes(case: Case, world: int, k_dtensor: int | None):
    if case.seed_mode == "dtensor":  # DTensor's Shard(-1) splits as torch.chunk does
        sizes = [c.numel() for c in torch.empty(k_dtensor).chunk(world)]
        return tuple(sizes + [0] * (world - len(sizes)))
    return tuple(case.sizes or K_SIZES[world])


def _reference(case: Case, phi, grad):
    """The unsharded public call on the reference backend, forward and backward."""
    from redge_kernels import api
    seed_kw = ({"generator": torch.Generator().manual_seed(11)} if case.seed_mode == "generator"
               else {"seed": 1234})
    leaf = phi.clone().requires_grad_()
    y, index = api.sample(case.method, leaf, hard=case.hard, tau=case.tau,
                          schedule=_schedule(case), backend="reference", return_index=True,
                          **seed_kw)
    (y * grad).sum().backward()
    return y.detach(), index, leaf.grad


def _sharded(case: Case, local, grad_local, group, mesh, counter):
    """``(y, index, grad, forward collectives, backward collectives)`` of the sharded call."""
    from redge_kernels import api, distributed
    entry = api.sample if case.via_api else distributed.sample
    kwargs = dict(hard=case.hard, tau=case.tau, schedule=_schedule(case), return_index=True)
    if case.seed_mode == "generator":
        kwargs["generator"] = torch.Generator().manual_seed(11)
    else:
        kwargs["seed"] = 1234
    if case.seed_mode == "dtensor":
        from torch.distributed.tensor import DTensor
        assert isinstance(local, DTensor)
        start = counter.n
        y, index = entry(case.method, local, **kwargs)
        n_fwd = counter.n - start
        assert isinstance(y, DTensor) and isinstance(index, DTensor), "DTensor in, DTensor out"
        (y.to_local() * grad_local).sum().backward()
        return (y.to_local().detach(), index.to_local(), local.grad.to_local(), n_fwd,
                counter.n - start - n_fwd)
    start = counter.n
    y, index = entry(case.method, local, group=group, **kwargs)
    n_fwd = counter.n - start
    (y * grad_local).sum().backward()
    return y.detach(), index, local.grad, n_fwd, counter.n - start - n_fwd


def run_case(case: Case, rank: int, world: int, group, mesh, counter) -> None:
    """Raises AssertionError (or the unexpected error) when the case fails on this rank."""
    if case.error:
        return _run_error(case, rank, group)
    phi, grad = build(case, K_SIZES[world] if case.seed_mode == "dtensor" else
                      (case.sizes or K_SIZES[world]))
    sizes = _shard_sizes(case, world, phi.shape[-1])
    c0 = sum(sizes[:rank])
    cols = slice(c0, c0 + sizes[rank])
    y_ref, i_ref, g_ref = _reference(case, phi, grad)
    if case.seed_mode == "dtensor":
        from torch.distributed.tensor import Shard, distribute_tensor
        local = distribute_tensor(phi, mesh, [Shard(-1)]).requires_grad_()
        assert local.to_local().shape[-1] == sizes[rank]
    else:
        local = phi[..., cols].clone().requires_grad_()
    y, index, g, n_fwd, n_bwd = _sharded(case, local, grad[..., cols], group, mesh, counter)
    _compare("index", index, i_ref, exact=True)
    # Poisoned rows are checked below against the row contract of the ``ops`` docstring (NaN on
    # the whole row): the reference's reinmax keeps 0 on their masked columns.
    rows = torch.ones(i_ref.numel(), dtype=torch.bool)
    assert y.shape == case.lead + (sizes[rank],) and index.shape == i_ref.shape, "output shapes"
    if case.poison:
        rows[[1, 3]] = False
    kr = sizes[rank]
    y, g = y.reshape(rows.numel(), kr), g.reshape(rows.numel(), kr)
    if case.vs_fp64:
        _compare_vs_fp64(case, phi, grad, cols, y, g, y_ref, g_ref)
    else:
        _compare("value", y[rows], y_ref[..., cols].reshape(rows.numel(), kr)[rows],
                 exact=case.hard)
        _compare("grad", g[rows], g_ref[..., cols].reshape(rows.numel(), kr)[rows])
    want = _expected_collectives(case)
    assert (n_fwd, n_bwd) == want, f"collectives (forward, backward) {(n_fwd, n_bwd)} != {want}"
    if case.poison:
        assert y[~rows].isnan().all() and g[~rows].isnan().all(), "poisoned rows not all NaN"
        assert (index.flatten()[~rows] == -1).all(), "poisoned rows sampled an index"
        assert not y[rows].isnan().any() and not g[rows].isnan().any(), "NaN leaked to other rows"


def _run_error(case: Case, rank: int, group) -> None:
    """A call that differs across ranks must raise a clear error on every rank, not hang."""
    from redge_kernels import distributed
    sizes = K_SIZES[dist_world(group)]
    phi, _ = build(dataclasses.replace(case, error=""), sizes)
    local = phi[..., sum(sizes[:rank]):sum(sizes[:rank + 1])]
    kwargs = dict(hard=case.hard, tau=case.tau, schedule=_schedule(case), seed=1234)
    if case.error == "seed":
        kwargs["seed"] = 1234 + rank
        expect = (ValueError, "seed differs across the ranks")
    elif case.error == "shape":
        if rank == 1:
            local = torch.cat([local, local[:1]], 0)
        expect = (ValueError, "leading shape differs across the ranks")
    else:
        if rank == 0:
            kwargs["tau"] = -1.0
        expect = (ValueError, "tau must be") if rank == 0 else (RuntimeError, "rank(s) [0]")
    try:
        distributed.sample(case.method, local, group=group, **kwargs)
    except expect[0] as exc:
        assert expect[1] in str(exc), f"unclear message: {exc}"
        return
    raise AssertionError(f"no {expect[0].__name__} raised")


def dist_world(group) -> int:
    import torch.distributed as dist
    return dist.get_world_size(group)


def main(argv) -> int:
    import torch.distributed as dist
    rank, world, init_file, out_file = int(argv[1]), int(argv[2]), argv[3], argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh("cpu", (world,))
    group, counter, results = dist.group.WORLD, Counter(), []
    for case in cases(world):
        start = time.perf_counter()
        try:
            run_case(case, rank, world, group, mesh, counter)
            results.append({"name": case.name, "ok": True, "msg": "",
                            "s": time.perf_counter() - start})
        except Exception as exc:  # noqa: BLE001 (reported to the test, which fails)
            msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            results.append({"name": case.name, "ok": False,
                            "msg": f"{msg} (at {tb.filename}:{tb.lineno})",
                            "s": time.perf_counter() - start})
    with open(out_file, "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
