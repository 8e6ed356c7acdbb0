"""Vocabulary-parallel estimators (``redge_kernels.distributed``): communication and CPU wall time.

    python bench/distributed_bench.py                     # 256 x 32768, 7 repetitions
    python bench/distributed_bench.py --rows 64 --k 8192 --reps 3

1. Bytes communicated per row per step, counted on the real calls (every ``all_gather`` of
   ``redge_kernels.parallel`` is wrapped and its input counted): what one rank sends per row for
   each collective, forward and backward, for every estimator; a rank *receives* W times that.
2. Wall time of forward + backward (``(y * g).sum().backward()``) at ``--rows`` x ``--k`` fp32 on
   CPU, gloo, one thread per process: W = 2 processes holding ``K / 2`` columns each against one
   process running the same sharded code on a group of one (all ``K`` columns, no communication),
   and, for context, the unsharded reference backend (``api.sample(..., backend="reference")``,
   the same torch-ops formulation without per-step statistics). Repetitions are medians after a
   warm-up call; the ranks start every repetition together (a barrier) and a repetition's time is
   its slowest rank's. The CPU time of each process is reported beside the wall time: on a
   machine shared with other jobs the two processes compete for cores, and the CPU time shows
   the per-rank work that sharding divides.

The processes are spawned by this script (file rendezvous in a temporary directory).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = [("st", True), ("gumbel", True), ("reinmax", True), ("redge", True),
           ("redge_cov", True), ("redge_max", True)]
N_STEPS, T_1 = 3, 0.5


def _sample(method, hard, logits, group, backend=None):
    import redge_kernels as rk
    from redge_kernels import api, distributed
    sched = rk.linear_schedule(N_STEPS, T_1)
    if backend is not None:
        return api.sample(method, logits, hard=hard, schedule=sched, seed=7, backend=backend)
    return distributed.sample(method, logits, group=group, hard=hard, schedule=sched, seed=7)


def _count_bytes(group, rank, world) -> dict:
    """``{method: {"forward": [bytes per row per collective], "backward": [...]}}``."""
    from redge_kernels.parallel import collectives
    inner, log = collectives._ALL_GATHER, []

    def counted(out, inp, group=None):
        log.append(inp.numel() * inp.element_size() // max(inp.shape[0], 1))
        return inner(out, inp, group=group)
    collectives._ALL_GATHER = counted
    rows, k = 8, 64 * world
    out = {}
    for method, hard in METHODS:
        phi = torch.randn(rows, k // world).requires_grad_()
        log.clear()
        y = _sample(method, hard, phi, group)
        fwd = list(log)
        log.clear()
        (y * torch.randn_like(y)).sum().backward()
        out[method] = {"check": fwd[0], "forward": fwd[1:], "backward": list(log)}
    collectives._ALL_GATHER = inner
    return out


def _time(fn, reps: int, barrier) -> list[tuple[float, float]]:
    """``[(wall s, this process's CPU s)]`` per repetition, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        barrier()
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return times


def worker(args) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{args.rendezvous}", rank=args.rank,
                            world_size=args.world, timeout=datetime.timedelta(seconds=300))
    group, result = dist.group.WORLD, {}
    if args.world == 2:
        result["bytes"] = _count_bytes(group, args.rank, args.world)
    gen = torch.Generator().manual_seed(0)
    k_local = args.k // args.world
    phi = torch.randn(args.rows, args.k, generator=gen)[:, args.rank * k_local:][:, :k_local]
    phi = phi.contiguous().requires_grad_()
    grad = torch.randn(args.rows, k_local, generator=gen)
    for method, hard in [("st", True), ("redge", True)]:
        def step(backend=None):
            y = _sample(method, hard, phi, group, backend)
            (y * grad).sum().backward()
            phi.grad = None
        result[f"{method}/sharded"] = _time(step, args.reps, dist.barrier)
        if args.world == 1:
            result[f"{method}/reference"] = _time(lambda: step("reference"), args.reps,
                                                  dist.barrier)
    Path(args.out).write_text(json.dumps(result))
    dist.destroy_process_group()


def _spawn(world: int, args, tmp: Path) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    if sys.platform.startswith("linux"):  # gloo's sockets on the loopback device (127.0.0.1)
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--rank", str(r),
                               "--world", str(world), "--rendezvous", str(tmp / f"rdv{world}"),
                               "--out", str(tmp / f"w{world}r{r}.json"), "--rows", str(args.rows),
                               "--k", str(args.k), "--reps", str(args.reps)], env=env)
             for r in range(world)]
    for p in procs:
        if p.wait(timeout=1800) != 0:
            raise SystemExit(f"a worker of world {world} failed")
    return [json.loads((tmp / f"w{world}r{r}.json").read_text()) for r in range(world)]


def _report(one: list[dict], two: list[dict], args) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"# Vocabulary-parallel on CPU ({now:%Y-%m-%d %H:%M} UTC)",
             "", f"`python bench/distributed_bench.py --rows {args.rows} --k {args.k} --reps "
             f"{args.reps}`; {platform.processor() or platform.machine()}, {os.cpu_count()} "
             f"cores, torch {torch.__version__}, gloo, 1 thread per process.", "",
             "## Bytes one rank sends per row (receives W x that)", "",
             "| method | check | forward, per collective | backward, per collective |",
             "|---|---|---|---|"]
    for method, rec in two[0]["bytes"].items():
        lines.append(f"| {method} | {rec['check']} B per call | {rec['forward']} | "
                     f"{rec['backward']} |")
    lines += ["", f"## Forward + backward, {args.rows} x {args.k} fp32 (median of {args.reps}, "
              "slowest rank; CPU time of one rank in parentheses)", "",
              "| method | 1 process, sharded code, group of 1 | 2 processes x K/2 | "
              "ratio 1 / 2, wall (CPU) | 1 process, reference backend |", "|---|---|---|---|---|"]
    for method in ("st", "redge"):
        key = f"{method}/sharded"
        w1, c1 = (statistics.median(t[i] for t in one[0][key]) for i in (0, 1))
        w2 = statistics.median(max(a[0], b[0]) for a, b in zip(two[0][key], two[1][key]))
        c2 = statistics.median(max(a[1], b[1]) for a, b in zip(two[0][key], two[1][key]))
        ref = statistics.median(t[0] for t in one[0][f"{method}/reference"])
        lines.append(f"| {method} | {w1 * 1e3:.0f} ms ({c1 * 1e3:.0f}) | {w2 * 1e3:.0f} ms "
                     f"({c2 * 1e3:.0f}) | {w1 / w2:.2f} ({c1 / c2:.2f}) | {ref * 1e3:.0f} ms |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--k", type=int, default=32768)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--rendezvous", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        one = _spawn(1, args, Path(tmp))
        two = _spawn(2, args, Path(tmp))
    report = _report(one, two, args)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
