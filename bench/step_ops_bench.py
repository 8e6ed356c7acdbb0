"""CPU time of the vocabulary-parallel step loop on one process (a group of one, no
collective), per-step kernels against the plain-torch formulation and the single-launch fused
kernels, hard samples, forward + backward (docs/DISTRIBUTED.md "Per-step kernels").

    python -m bench.step_ops_bench [--rows 64] [--k 8192] [--reps 5]

One thread; CPU (process) time, median of ``reps``, so the ratios hold on a loaded machine.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _sharded(method, phi, g, sched):
    from redge_kernels.distributed import _coefs
    from redge_kernels.parallel import steps
    from redge_kernels.parallel.collectives import Shard
    from redge_kernels.parallel.function import ShardedSample
    plan = steps.Plan(method, True, 1.0, _coefs(method, sched, "cpu", torch.float32), 1234,
                      Shard(None, 0, 1, (phi.shape[1],)))

    def run():
        leaf = phi.clone().requires_grad_()
        y, _ = ShardedSample.apply(leaf, plan)
        (y * g).sum().backward()
    return run


def _fused(method, phi, g, sched):
    from redge_kernels import api

    def run():
        leaf = phi.clone().requires_grad_()
        y = api.sample(method, leaf, hard=True, schedule=sched, backend="cpu", seed=1234)
        (y * g).sum().backward()
    return run


def _cpu_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1000 * sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    import redge_kernels as rk
    from redge_kernels import step_ops
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--k", type=int, default=8192)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    phi = 2 * torch.randn(args.rows, args.k, generator=gen)
    g = torch.randn(args.rows, args.k, generator=gen)
    print(f"{args.rows} x {args.k}, one thread, CPU ms (median of {args.reps})")
    print("| method | step ops | plain torch | fused (one launch) | plain / ops | ops / fused |")
    print("|---|---|---|---|---|---|")
    kernels = dict(step_ops.OPS)
    for method in ("st", "redge"):
        sched = rk.linear_schedule(3, 0.5) if method == "redge" else None
        ops = _cpu_ms(_sharded(method, phi, g, sched), args.reps)
        step_ops.OPS.update(step_ops.REFERENCE)  # Plan.ops reads this table at call time
        try:
            plain = _cpu_ms(_sharded(method, phi, g, sched), args.reps)
        finally:
            step_ops.OPS.update(kernels)
        fused = _cpu_ms(_fused(method, phi, g, sched), args.reps)
        label = "redge, n = 3" if method == "redge" else method
        print(f"| {label} | {ops:.1f} | {plain:.1f} | {fused:.1f} | {plain / ops:.1f} | "
              f"{ops / fused:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
