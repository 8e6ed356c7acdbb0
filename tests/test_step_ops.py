"""The step ops (``redge_kernels.step_ops``; docs/SPEC.md "Vocabulary-parallel") on one process.

* Each op's kernel (C++ on CPU; the Triton launchers on CPU tensors under the interpreter, tiny
  sizes) against the plain-torch formulation ``step_ops.REFERENCE`` on the same inputs, for every
  method and step, on a shard ``[c0, c0 + K_r)`` of a row (c0 not a multiple of 4, K_r not a
  multiple of 8): fp32 (and fp64) tolerance; the noise bitwise that of the backend's unsharded
  fused kernels (the C++ hook ``redge_kernels_cpu::_noise``).
* A shard's statistics combine to the unsharded ones (``collectives.combine_softmax``), and the
  combined Gumbel-max index equals the unsharded op's.
* ``parallel.steps`` end to end with W ranks as threads (a thread all-gather in place of
  ``torch.distributed``'s): indices identical to the unsharded fused CPU kernels
  (``backend="cpu"``, the same generator), values and gradients to fp32 tolerance.
* ``torch.library.opcheck`` of every op (schema, fake kernel, dispatch).
"""

from __future__ import annotations

import threading

import pytest
import torch

import redge_kernels as rk
from redge_kernels import _cpu_backend, api, step_ops
from redge_kernels._constants import METHOD_IDS
from redge_kernels.distributed import _coefs
from redge_kernels.parallel import collectives, steps
from redge_kernels.parallel.collectives import Shard, combine_argmax, combine_softmax
from redge_kernels.parallel.function import ShardedSample

from conftest import CASES, CASE_KW, case_id

NATIVE = _cpu_backend.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="the C++ extension is not built")
SEED = 2**33 + 77
TAU = 0.7


def _schedule(method):
    kw = CASE_KW[method]
    return rk.linear_schedule(kw["n_steps"], kw["t_1"]) if "n_steps" in kw else None


def _logits(rows, k, dtype, gen_seed=0):
    gen = torch.Generator().manual_seed(gen_seed)
    phi = 2.0 * torch.randn(rows, k, generator=gen, dtype=torch.float64)
    phi[torch.rand(rows, k, generator=gen) < 0.15] = float("-inf")
    phi[1] = float("-inf")  # an all-masked row
    return phi.to(dtype)


def _close(got, want, name, dtype=torch.float32):
    if isinstance(got, (tuple, list)):
        for i, (a, b) in enumerate(zip(got, want)):
            _close(a, b, f"{name}[{i}]", dtype)
        return
    if got.dtype in (torch.int64, torch.bool):
        assert torch.equal(got, want), name
        return
    # torch's fp32 bounds, for fp64 too: the noise is float32 in every dtype, and its
    # generators differ in the last ulps of log / cos / sin (docs/SPEC.md "Randomness").
    torch.testing.assert_close(got, want, equal_nan=True, msg=lambda m: f"{name}: {m}",
                               rtol=1.3e-6, atol=1e-5)


def _trace(method, phi, c0, ops, dtype):
    """Every op of one forward and backward on the shard ``phi`` (columns ``c0 ..``), with
    ``ops[name]`` as the kernels and the combined statistics of a group of one: a list of
    ``(name, args, output)``, each output also fed to the next op as ``parallel.steps`` does."""
    mid, sched = METHOD_IDS[method], _schedule(method)
    coefs = _coefs(method, sched, "cpu", dtype)
    n = coefs.shape[0]
    stats = phi.new_zeros(phi.shape[0], max(n, 2), 2)
    calls, x, none = [], phi.new_empty(0), phi.new_empty(0)
    noise = (SEED, c0, 3)

    def call(name, *args):
        out = ops[name](*args)
        calls.append((name, args, out))
        return out
    combine = lambda ms, tau=1.0: torch.stack(  # noqa: E731
        combine_softmax(ms[None, :, 0], ms[None, :, 1], tau), -1)
    chain = mid not in step_ops.BASELINES
    if chain:
        if mid == step_ops.REDGE_COV:
            stats[:, 0] = combine(call("step_stats", phi, x, coefs, stats.clone(), mid, 0))
        x = call("step_init", phi, stats.clone(), mid, *noise)
        traj = {}
        for k in range(n - 1, 1, -1):
            stats[:, k] = combine(call("step_stats", phi, x, coefs, stats.clone(), mid, k))
            traj[k] = x
            x = call("step_next", phi, x, coefs, stats.clone(), mid, k)
        traj[1] = x
    parts, best, index, kinds = call("step_sample", phi, x, coefs, stats.clone(), mid, TAU, *noise)
    first = 1 if chain else 0
    for i, tau in enumerate(step_ops.softmax_taus(mid, TAU)):
        stats[:, first + i] = combine(parts[:, i], tau)
    kinds = torch.stack([kinds[:, 0], kinds[:, 1]], 1)
    index = torch.where(kinds.any(1), torch.full_like(index, -1), index)
    for hard in ((True, False) if method not in ("reinmax", "redge_max") else (True,)):
        call("step_output", phi, x, coefs, stats, index, kinds, mid, hard, TAU, *noise)
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)

    def bwd(k, g, x, gphi, gmu, glam):
        dots = call("step_dot", g, phi, x, coefs, stats, index, gmu, glam, mid, k, TAU, *noise)
        return call("step_grad", g, phi, x, coefs, stats, index, dots, gphi, gmu, glam, mid, k,
                    TAU, *noise)
    if not chain:
        bwd(0, g, none, None, None, None)
        return calls
    gphi, gx, gmu, glam = None, g, None, None
    for k in range(1, n):
        gphi, gx, gmu, glam = bwd(k, gx, traj[k], gphi, steps._opt(gmu), steps._opt(glam))
    if mid == step_ops.REDGE_COV:
        bwd(0, gx, none, gphi, gmu, glam)
    return calls


def _check_against_reference(method, ops, dtype, k_local=29, c0=13, rows=5):
    phi = _logits(rows, 50, dtype)[:, c0:c0 + k_local].contiguous()
    for name, args, out in _trace(method, phi, c0, ops, dtype):
        _close(out, step_ops.REFERENCE[name](*args), f"{method} {name}", dtype)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", list(CASE_KW))
def test_cpu_ops_match_the_plain_torch_formulation(method, dtype):
    _check_against_reference(method, step_ops.OPS, dtype)


@needs_native
def test_cpu_ops_on_an_empty_shard_and_a_wide_row():
    for method in CASE_KW:
        _check_against_reference(method, step_ops.OPS, torch.float32, k_local=0, c0=20, rows=3)
        _check_against_reference(method, step_ops.OPS, torch.float32, k_local=37, c0=0, rows=3)


@needs_native
@pytest.mark.parametrize("c0,width", [(0, 64), (3, 29), (13, 1), (2**33 + 5, 70)])
def test_cpu_noise_is_the_fused_kernels_noise(c0, width):
    """step_init's z and step_sample's Gumbel scores are bitwise the C++ generator's noise at
    the global columns (``_noise`` hook, the fused kernels' generator)."""
    rows, row_start = 4, 3
    z, g = torch.ops.redge_kernels_cpu._noise(torch.tensor(SEED), rows, width, row_start, c0)
    phi = torch.zeros(rows, width)
    stats = phi.new_zeros(rows, 2, 2)
    x = step_ops.step_init(phi, stats, METHOD_IDS["redge"], SEED, c0, row_start)
    assert torch.equal(x, z)
    _, best, index, _ = step_ops.step_sample(phi, phi.new_empty(0), phi.new_zeros(2, 5), stats,
                                             METHOD_IDS["st"], 1.0, SEED, c0, row_start)
    assert torch.equal(best, g.max(1).values) and torch.equal(index, g.argmax(1) + c0)


@pytest.mark.parametrize("sizes", [(23, 27), (13, 7, 17, 13), (10, 0, 5, 35)])
@pytest.mark.parametrize("method", list(CASE_KW))
def test_shard_statistics_combine_to_the_unsharded_ones(method, sizes):
    """Every rank's local (m, s) of the base softmax and of the last step combine (in rank
    order) to the unsharded op's, and the combined Gumbel-max index is the unsharded one."""
    mid = METHOD_IDS[method]
    phi = _logits(6, sum(sizes), torch.float32, 3)
    coefs = _coefs(method, _schedule(method), "cpu", torch.float32)
    stats = phi.new_zeros(6, max(coefs.shape[0], 2), 2)
    x = step_ops.step_init(phi, stats, mid, SEED, 0, 0) if mid not in step_ops.BASELINES \
        else phi.new_empty(0)
    full = step_ops.step_sample(phi, x, coefs, stats, mid, TAU, SEED, 0, 0)
    base = step_ops.step_stats(phi, x, coefs, stats, mid, 0)
    shards = []
    for r, w in enumerate(sizes):
        c0 = sum(sizes[:r])
        sl = slice(c0, c0 + w)
        xs = x[:, sl].contiguous() if x.numel() else x
        shards.append((step_ops.step_sample(phi[:, sl].contiguous(), xs, coefs, stats, mid, TAU,
                                            SEED, c0, 0),
                       step_ops.step_stats(phi[:, sl].contiguous(), xs, coefs, stats, mid, 0)))
    for i, tau in enumerate(step_ops.softmax_taus(mid, TAU)):
        ms = torch.stack([s[0][0][:, i] for s in shards])
        _close(torch.stack(combine_softmax(ms[..., 0], ms[..., 1], tau), -1), full[0][:, i],
               "parts")
    ms = torch.stack([s[1] for s in shards])
    _close(torch.stack(combine_softmax(ms[..., 0], ms[..., 1]), -1), base, "base")
    index = combine_argmax(torch.stack([s[0][1] for s in shards]),
                           torch.stack([s[0][2] for s in shards]))
    assert torch.equal(index, full[2])
    assert torch.equal(torch.stack([s[0][3] for s in shards]).all(0)[:, 1], full[3][:, 1])


class _ThreadGroup:
    """W ranks as threads of one process: ``all_gather(out, inp, group)`` concatenates every
    rank's ``inp`` in rank order (the contract of ``all_gather_single``)."""

    def __init__(self, world):
        self.world, self.parts = world, [None] * world
        self.barrier = threading.Barrier(world, timeout=60)

    def rank(self, r):
        return (self, r)


def _thread_all_gather(out, inp, group=None):
    tg, r = group
    tg.parts[r] = inp.clone()
    tg.barrier.wait()
    out.copy_(torch.cat(tg.parts, 0))
    tg.barrier.wait()


def _sharded_in_threads(method, hard, phi, g, sizes, sched, tau=TAU):
    """``(y, index, grad)`` of ``parallel.steps`` with one thread per rank, concatenated."""
    world, tg = len(sizes), _ThreadGroup(len(sizes))
    results, errors = [None] * world, []

    def rank(r):
        try:
            c0 = sum(sizes[:r])
            shard = Shard(tg.rank(r), r, world, tuple(sizes))
            plan = steps.Plan(method, hard, tau, _coefs(method, sched, "cpu", phi.dtype), SEED,
                              shard)
            leaf = phi[:, c0:c0 + sizes[r]].clone().requires_grad_()
            y, index = ShardedSample.apply(leaf, plan)
            (y * g[:, c0:c0 + sizes[r]]).sum().backward()
            results[r] = (y.detach(), index, leaf.grad)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(exc)
            tg.barrier.abort()
    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    for r in range(1, world):
        assert torch.equal(results[r][1], results[0][1]), "index differs across ranks"
    return (torch.cat([res[0] for res in results], 1), results[0][1],
            torch.cat([res[2] for res in results], 1))


@needs_native
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_sharded_steps_match_the_unsharded_fused_kernels(case, monkeypatch):
    """Indices identical to the unsharded ``backend="cpu"`` call (the same noise), values and
    gradients to fp32 tolerance, with 3 ranks of widths 13, 7, 30 (starts not multiples of 4)."""
    monkeypatch.setattr(collectives, "_ALL_GATHER", _thread_all_gather)
    method, hard = case
    sched = _schedule(method)
    phi = _logits(7, 50, torch.float32, 11)
    g = torch.randn(7, 50, generator=torch.Generator().manual_seed(2))
    leaf = phi.clone().requires_grad_()
    y_ref, i_ref = api.sample(method, leaf, hard=hard, tau=TAU, schedule=sched, backend="cpu",
                              seed=SEED, return_index=True)
    (y_ref * g).sum().backward()
    y, index, grad = _sharded_in_threads(method, hard, phi, g, (13, 7, 30), sched)
    assert torch.equal(index, i_ref)
    _close(y, y_ref.detach(), "value")
    _close(grad, leaf.grad, "grad")


def _near_the_float_limit(gen_seed=0):
    """``[6, 20]`` fp32 logits of magnitude up to 3e38 (``v / tau`` overflows at tau = 0.5):
    every column tied at -3e38 (a uniform softmax over every shard); random signs of 3e38 (ties
    at +3e38 across the shards: the first wins the Gumbel-max); ordinary logits with one -3e38;
    distinct values up to 3e38; ordinary logits with one +3e38 on the last shard; masked columns
    among +-3e38."""
    gen = torch.Generator().manual_seed(gen_seed)
    phi = 2.0 * torch.randn(6, 20, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(6, 20, generator=gen) < 0.5, -1.0, 1.0).double()
    phi[0] = -3e38
    phi[1] = 3e38 * sign[1]
    phi[2, 4] = -3e38
    phi[3] = 3e38 * (2.0 * torch.rand(20, generator=gen, dtype=torch.float64) - 1.0)
    phi[4, 17] = 3e38
    phi[5] = 3e38 * sign[5]
    phi[5, ::3] = float("-inf")
    return phi.float()


def _step_backends():
    """The step ops usable here, by the unsharded backend that draws the same noise."""
    out = [pytest.param(("reference", step_ops.REFERENCE), id="reference"),
           pytest.param(("cpu", step_ops.OPS), id="cpu", marks=needs_native)]
    return out + [pytest.param(("triton", None), id="triton-interpreter")]


@pytest.mark.parametrize("backend", _step_backends())
@pytest.mark.parametrize("case", [("gumbel", True), ("gumbel", False), ("reinmax", True)],
                         ids=case_id)
def test_tempered_softmaxes_near_the_float_limit(case, backend, monkeypatch):
    """Finite logits of magnitude 3e38 at tau = 0.5, where ``v / tau`` overflows: the sharded
    Gumbel-Softmax and ReinMax (2 ranks of widths 7 and 13, each backend's step ops) keep their
    statistics unscaled, so values and gradients are finite and equal the unsharded call of the
    backend with the same noise (the index exactly)."""
    name, ops = backend
    if ops is None:
        ops = _triton_launchers()
        from redge_kernels.triton import _steps
        launch, lock = _steps._launch, threading.Lock()

        def one_at_a_time(*args, **kw):  # the interpreter's launches are not thread-safe
            with lock:
                return launch(*args, **kw)
        monkeypatch.setattr(_steps, "_launch", one_at_a_time)
    monkeypatch.setattr(collectives, "_ALL_GATHER", _thread_all_gather)
    monkeypatch.setattr(steps.Plan, "ops", property(lambda self: ops))
    method, hard = case
    phi = _near_the_float_limit()
    g = torch.randn(phi.shape, generator=torch.Generator().manual_seed(3))
    leaf = phi.clone().requires_grad_()
    y_ref, i_ref = api.sample(method, leaf, hard=hard, tau=0.5, backend=name, seed=SEED,
                              return_index=True)
    (y_ref * g).sum().backward()
    assert torch.isfinite(y_ref).all() and torch.isfinite(leaf.grad).all()
    y, index, grad = _sharded_in_threads(method, hard, phi, g, (7, 13), None, tau=0.5)
    assert torch.isfinite(y).all() and torch.isfinite(grad).all()
    assert torch.equal(index, i_ref)
    _close(y, y_ref.detach(), "value")
    _close(grad, leaf.grad, "grad")


def _opcheck_args(method):
    """One call per op for opcheck (the inputs of a short trace)."""
    phi = _logits(3, 21, torch.float32, 4)[:, :19].contiguous()
    calls = _trace(method, phi, 5, step_ops.OPS, torch.float32)
    seen = {}
    for name, args, _ in calls:
        seen.setdefault(name, args)
    return seen


@needs_native
@pytest.mark.parametrize("method", ["gumbel", "reinmax", "redge_cov", "redge_max"])
def test_opcheck(method):
    for name, args in _opcheck_args(method).items():
        torch.library.opcheck(step_ops.OPS[name], args)


# ----------------------------------------------------------------------------- Triton
def _triton_launchers():
    pytest.importorskip("triton")
    tk = pytest.importorskip("redge_kernels.triton")
    if not (tk.available() and tk.runs_on("cpu")):
        pytest.skip("the Triton interpreter is not on (TRITON_INTERPRET=1)")
    from redge_kernels.triton import _steps
    return _steps.LAUNCHERS


@pytest.mark.parametrize("method", list(CASE_KW))
def test_triton_ops_match_the_plain_torch_formulation(method):
    """Tiny sizes under the interpreter: a shard starting at 13 (per-element noise) and one at
    0 (the grouped noise), each with a partial tile."""
    launchers = _triton_launchers()
    _check_against_reference(method, launchers, torch.float32, k_local=29, c0=13, rows=3)
    _check_against_reference(method, launchers, torch.float32, k_local=37, c0=0, rows=2)


def test_triton_noise_is_the_same_at_every_shard_start():
    """The grouped (start a multiple of 4) and per-element noise forms give the same bits: z and
    G of a shard starting at 13 equal those of the same columns of a shard starting at 12."""
    launchers = _triton_launchers()
    phi, stats = torch.zeros(3, 29), torch.zeros(3, 2, 2)
    z13 = launchers["step_init"](phi, stats, METHOD_IDS["redge"], SEED, 13, 3)
    z12 = launchers["step_init"](phi, stats, METHOD_IDS["redge"], SEED, 12, 3)
    assert torch.equal(z12[:, 1:], z13[:, :28])
    st, none, coefs = METHOD_IDS["st"], phi.new_empty(0), phi.new_zeros(2, 5)
    one = torch.zeros(3, 1)  # the score of column 13 alone: G_13
    _, g13, i13, _ = launchers["step_sample"](one, none, coefs, stats, st, 1.0, SEED, 13, 3)
    pair = torch.tensor([[float("-inf"), 0.0]] * 3)  # columns 12, 13: column 12 masked
    _, g13b, i13b, _ = launchers["step_sample"](pair, none, coefs, stats, st, 1.0, SEED, 12, 3)
    assert torch.equal(g13, g13b) and torch.equal(i13, i13b) and (i13 == 13).all()


def test_triton_kernels_compile_for_sm90():
    """Every step kernel specialization compiles for sm_90 (no GPU needed: ptxas from the triton
    wheel), as the JIT would specialize it on a shard of 50000 columns."""
    import nvidia_tools
    nvidia_tools.require("ptxas", "cuobjdump")
    from bench import kernel_compile as kc
    from bench import step_compile
    (rows,) = kc.in_compiling_process(step_compile.compile_all,
                                      [(("gumbel", "reinmax", "redge_cov", "redge_max"),)])
    assert rows and not [r for r in rows if r["error"]], [r for r in rows if r["error"]][:2]
    assert all(r["regs"] > 0 for r in rows)
