"""Per-call cost of the public eager path against the raw ops and F.gumbel_softmax (CPU).

    PYTHONPATH=. nice python bench/api_overhead.py [--reps 2000]

Prints the median wall time (ms) of forward + backward per call at the paper's small shapes, for
``rk.redge(x, n_steps=5, t_1=0.5, hard=True, backend="cpu")`` + ``y.backward(g)``, the two raw ops
``torch.ops.redge_kernels.fwd/bwd`` alone, ``F.gumbel_softmax(x, hard=True)`` + backward, and the
``rk.redge`` forward alone under ``torch.no_grad()``. One thread; ``--reps`` calls (a tenth of them
for the two large shapes), median.

Measured when the eager fast path (a second autograd Function on private torch internals, with
refcount-reused seed buffers) was replaced by the one registered boundary of ``ops`` (2026-12-01,
23:45-23:55 UTC, AMD EPYC with AVX2 / AVX-512, 2 cores shared by other jobs, load ~10; the old
and new trees run alternately, 3 rounds each, ``--reps 1000``; ratio rk.redge / raw ops of the
same run, fwd + bwd):

    shape       before (fast path)   after (registered op only)
    1x2         2.1 - 2.3            3.5 - 4.2    (about +30 to +50 us per call)
    9600x2      0.9 - 1.4            1.2 - 1.7
    32x300x2    1.3 - 1.6            1.5 - 2.5

A fixed few tens of microseconds per call, visible only on a one-row call and within the
machine's noise at the paper's small training shapes, so no second path is kept.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import redge_kernels as rk
from redge_kernels import _constants


def _median_ms(fn, reps: int, warmup: int = 50) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sched = rk.make_schedule(5, 0.5)
    coefs = sched.table("cpu")
    mid = _constants.METHOD_IDS["redge"]
    print(f"threads={args.threads} reps={args.reps}  (median ms per forward+backward)")
    print(f"{'shape':>10} {'rk.redge':>10} {'raw ops':>10} {'F.gumbel':>10} {'fwd no_grad':>12}")
    for lead, k in [((1,), 2), ((9600,), 2), ((6400,), 64), ((32, 300), 2)]:
        rows = 1
        for d in lead:
            rows *= d
        reps = args.reps if rows * k < 10000 else max(200, args.reps // 10)
        x = torch.randn(*lead, k, requires_grad=True)
        g = torch.randn(*lead, k)
        seed = torch.tensor(3, dtype=torch.int64)

        def api():
            y = rk.redge(x, n_steps=5, t_1=0.5, hard=True, backend="cpu")
            y.backward(g)

        def raw():
            phi, gg = x.detach().reshape(rows, k), g.reshape(rows, k)
            y, stats, index = torch.ops.redge_kernels.fwd(phi, seed, coefs, mid, True, 1.0)
            torch.ops.redge_kernels.bwd(gg, phi, seed, coefs, stats, index, mid, True, 1.0)

        def gs():
            y = F.gumbel_softmax(x, hard=True)
            y.backward(g)

        def api_nograd():
            with torch.no_grad():
                rk.redge(x, n_steps=5, t_1=0.5, hard=True, backend="cpu")

        r = [_median_ms(f, reps) for f in (api, raw, gs, api_nograd)]
        label = "x".join(str(d) for d in (*lead, k))
        print(f"{label:>10} {r[0]:10.4f} {r[1]:10.4f} {r[2]:10.4f} {r[3]:12.4f}")


if __name__ == "__main__":
    main()
