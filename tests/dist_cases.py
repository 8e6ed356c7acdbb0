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
import os
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
    #                       in one row), "shard" (rank 1's columns masked in every row) or
    #                       "extreme" (finite logits of magnitude 3e38, ties across the shards)
    poison: bool = False  # NaN in row 1 on the last rank, +inf in row 3 on rank 0
    seed_mode: str = "seed"  # "seed", "generator" or "dtensor" (DTensor input, seed=)
    schedule: tuple = ("linear", 4, 0.4)
    tau: float = 0.7
    error: str = ""  # "seed", "shape", "arg": the mismatch the case must reject
    tie: bool = False  # every row's best Gumbel-max score tied exactly on ranks 0 and 1
    vs_fp64: bool = False  # values and grads judged by their error against the fp64 reference
    via_api: bool = False  # through the public redge_kernels.sample(..., group=) entry point
    embed: tuple = ()  # widths D_i: rk.sample_embed(..., group=) with row-sharded [K, D_i] weights
    weight_grad: bool = True  # (embed) the weights require grad


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
            Case("extreme-gumbel-hard", "gumbel", masks="extreme", tau=0.5),
            Case("extreme-gumbel-soft", "gumbel", False, masks="extreme", tau=0.5),
            Case("extreme-reinmax-hard", "reinmax", masks="extreme", tau=0.5),
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
    return out + embed_cases(world, combos)


def embed_cases(world: int, combos) -> list[Case]:
    """``rk.sample_embed(..., group=)`` with the weights sharded by rows like the logits' columns
    (VocabParallelEmbedding), against the unsharded ``sample_embed``."""
    out = [Case(f"embed-{m}-{'hard' if h else 'soft'}", m, h, embed=(6,) if h else (6, 3))
           for m, h in combos]
    out += [Case("embed-shard-masked-st", "st", False, masks="shard", embed=(4,)),
            Case("embed-shard-masked-redge_max", "redge_max", masks="shard", embed=(4,)),
            Case("embed-poison-redge", "redge", False, poison=True, embed=(4, 2)),
            Case("embed-poison-st", "st", True, poison=True, embed=(4,)),
            Case("embed-bf16-redge", "redge", dtype=torch.bfloat16, embed=(4,)),
            Case("embed-fp64-redge_cov", "redge_cov", False, dtype=torch.float64, embed=(4,)),
            Case("embed-frozen-redge", "redge", embed=(5,), weight_grad=False),
            Case("embed-dtensor-redge", "redge", False, seed_mode="dtensor", masks="none",
                 embed=(5,)),
            Case("embed-no-rows-st", "st", lead=(0, 3), masks="none", embed=(4,)),
            Case("embed-error-rows", "redge", error="rows", embed=(4,)),
            Case("embed-error-width", "st", error="width", embed=(4, 3)),
            Case("embed-after-errors-gumbel", "gumbel", False, embed=(4,))]
    if world == 4:
        out += [Case("embed-empty-shard-redge", "redge", False, sizes=(10, 0, 5, 3), embed=(4,))]
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
    elif case.masks == "extreme":  # v / tau overflows fp32 at tau < 1.13
        sign = torch.where(torch.rand(flat.shape, generator=gen) < 0.5, -1.0, 1.0).double()
        flat[0] = -3e38  # every column tied: a uniform softmax over every shard
        flat[1] = 3e38 * sign[1]  # ties at +3e38 on every shard: the first column wins
        flat[2, c0[-1]] = 3e38  # ordinary logits and one +3e38 on the last shard
        flat[3] = 3e38 * (2.0 * torch.rand(k, generator=gen, dtype=torch.float64) - 1.0)
        flat[4, 0] = -3e38
        flat[5] = 3e38 * sign[5]
        flat[5, ::3] = float("-inf")
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
    """Counts the all-gathers (``n``) and all-reduces (``reduces``) of
    ``redge_kernels.parallel`` (its two collective primitives)."""

    def __init__(self):
        from redge_kernels.parallel import collectives
        self.n = self.reduces = 0
        gather, reduce = collectives._ALL_GATHER, collectives._ALL_REDUCE

        def counted(out, inp, group=None):
            self.n += 1
            return gather(out, inp, group=group)

        def counted_reduce(buf, op=None, group=None):
            self.reduces += 1
            return reduce(buf, op=op, group=group)
        collectives._ALL_GATHER = counted
        collectives._ALL_REDUCE = counted_reduce


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
    if case.embed:
        return run_embed_case(case, rank, world, group, mesh, counter)
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
    if case.masks == "extreme":
        assert torch.isfinite(y).all() and torch.isfinite(g).all(), "not finite near the limit"
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


def _embed_inputs(case: Case, k: int):
    """The global weights ``[K, D_i]`` and upstream gradients ``[*lead, D_i]`` (the same on
    every rank: the gradient of a replicated embedding)."""
    gen = torch.Generator().manual_seed(sum(map(ord, case.name)) + 1)
    ws = [torch.randn(k, d, generator=gen, dtype=torch.float64).to(case.dtype)
          for d in case.embed]
    gs = [torch.randn(case.lead + (d,), generator=gen, dtype=torch.float64).to(case.dtype)
          for d in case.embed]
    return ws, gs


def _embed_call(case: Case, logits, weights, grads, group, counter, backend="auto"):
    """``(values, index, logits' grad, weights' grads, counts)`` of ``rk.sample_embed`` forward
    and backward; ``counts = (all-gathers fwd, bwd, all-reduces fwd, bwd)`` when ``counter``."""
    import redge_kernels as rk
    kw = dict(n_steps=case.schedule[1], t_1=case.schedule[2], tau=case.tau)
    if group is not None:
        kw["group"] = group
    else:
        kw["backend"] = backend
    n0, r0 = (counter.n, counter.reduces) if counter else (0, 0)
    es, index = rk.sample_embed(logits, list(weights), case.method, case.hard, seed=1234,
                                return_index=True, **kw)
    n1, r1 = (counter.n, counter.reduces) if counter else (0, 0)
    local = [e.to_local() if hasattr(e, "to_local") else e for e in es]
    sum((e * g).sum() for e, g in zip(local, grads)).backward()
    counts = (n1 - n0, counter.n - n1, r1 - r0, counter.reduces - r1) if counter else None
    unwrap = lambda t: t.to_local() if hasattr(t, "to_local") else t  # noqa: E731
    return ([e.detach() for e in local], unwrap(index), unwrap(logits.grad),
            [unwrap(w.grad) if w.grad is not None else None for w in weights], counts)


def _same_on_every_rank(name, t: torch.Tensor, world: int) -> None:
    import torch.distributed as dist
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    out = t.new_empty((world, t.numel()))
    gather(out.view(-1), t.contiguous().view(-1))  # the test's own (uncounted) collective
    for r in range(world):
        _compare(f"{name} of rank {r} vs rank 0", out[r], out[0], exact=True)


def run_embed_case(case: Case, rank: int, world: int, group, mesh, counter) -> None:
    """``rk.sample_embed(..., group=)`` on this rank's logits shard and weight row shards against
    the unsharded ``sample_embed`` (reference backend and the default one) with the same seed:
    the index exactly, the hard value bitwise, soft values and both gradients to the dtype's
    tolerance, the value bitwise the same on every rank, the collective counts. (Against the
    default backend's fused kernels, fp64 is judged at fp32 tolerance: those kernels agree with
    the fp64 reference to about 1e-7 in the ReDGE chains, the sharded path to about 1e-15.)"""
    if case.error:
        return _run_embed_error(case, rank, world, group)
    sizes = tuple(case.sizes or K_SIZES[world])
    if case.seed_mode == "dtensor":
        sizes = _shard_sizes(case, world, sum(sizes))
    phi, _ = build(case, sizes)
    ws, gs = _embed_inputs(case, phi.shape[-1])
    c0 = sum(sizes[:rank])
    cols = slice(c0, c0 + sizes[rank])
    if case.seed_mode == "dtensor":
        from torch.distributed.tensor import Shard, distribute_tensor
        local = distribute_tensor(phi, mesh, [Shard(-1)]).requires_grad_()
        wl = [distribute_tensor(w, mesh, [Shard(0)]).requires_grad_(case.weight_grad)
              for w in ws]
        grp = None
    else:
        local = phi[..., cols].clone().requires_grad_()
        wl = [w[cols].clone().requires_grad_(case.weight_grad) for w in ws]
        grp = group
    es, index, g, gws, counts = _embed_call(case, local, wl, gs, grp, counter)
    for backend in ("reference", "auto"):
        wr = [w.clone().requires_grad_(case.weight_grad) for w in ws]
        ref_es, ref_i, ref_g, ref_gws, _ = _embed_call(
            case, phi.clone().requires_grad_(), wr, gs, None, None, backend)
        tag = f"[{backend}]"
        as32 = backend == "auto" and case.dtype == torch.float64
        def close(n, a, b, as32=as32):
            if as32:
                a, b = a.float(), b.float()
            _compare(n, a, b)
        _compare(f"index {tag}", index, ref_i, exact=True)
        for i, (e, ref) in enumerate(zip(es, ref_es)):
            if case.hard:  # W[index] on one rank, zeros on the others: bitwise the gather
                _compare(f"value {i} {tag}", e, ref, exact=True)
            else:
                close(f"value {i} {tag}", e, ref)
        close(f"logits grad {tag}", g, ref_g[..., cols])
        for i, (gw, ref) in enumerate(zip(gws, ref_gws)):
            assert (gw is None) == (not case.weight_grad), "weight grad presence"
            if gw is not None:
                close(f"weight {i} grad {tag}", gw, ref[cols])
    for i, e in enumerate(es):
        _same_on_every_rank(f"value {i}", e, world)
    rows = 0 not in case.lead
    fwd, bwd = _expected_collectives(case)
    want = (fwd + 1, bwd, len(case.embed) if rows else 0, 0)
    assert counts == want, f"(all-gathers fwd, bwd, all-reduces fwd, bwd) {counts} != {want}"
    if case.poison:
        flat = [e.reshape(-1, e.shape[-1]) for e in es]
        assert all(f[[1, 3]].isnan().all() and not f[[0, 2, 4, 5]].isnan().any() for f in flat), \
            "a poisoned row must be NaN on every rank, the others never"


def _run_embed_error(case: Case, rank: int, world: int, group) -> None:
    """A weight shard whose rows are not the logits shard's columns (on rank 0), or whose width
    D differs across ranks, raises a clear error on every rank instead of hanging."""
    import redge_kernels as rk
    sizes = K_SIZES[world]
    phi, _ = build(dataclasses.replace(case, error=""), sizes)
    ws, _ = _embed_inputs(case, phi.shape[-1])
    cols = slice(sum(sizes[:rank]), sum(sizes[:rank + 1]))
    local = phi[..., cols]
    wl = [w[cols] for w in ws]
    if case.error == "rows":
        if rank == 0:
            wl[0] = ws[0][:cols.stop + 1]
        expect = ((ValueError, "row shard [K_r, D] with K_r = ") if rank == 0
                  else (RuntimeError, "rank(s) [0]"))
    else:
        if rank == 1:
            wl[1] = torch.cat([wl[1], wl[1][:, :1]], 1)
        expect = (ValueError, "widths D differ across the ranks")
    try:
        rk.sample_embed(local, wl, case.method, case.hard, seed=1234, group=group)
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
    dist.barrier()  # no rank tears gloo down while another still has a collective in flight
    dist.destroy_process_group()
    print("process group destroyed", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without the interpreter's finalization: gloo's worker threads can still hold
    # references at that point and abort the process ("terminate called without an active
    # exception") after every result was written.
    os._exit(code)
