"""Per-call cost of the public eager path against the raw ops and F.gumbel_softmax (CPU).

    PYTHONPATH=. nice python bench/api_overhead.py [--reps 2000]

Prints the median wall time (ms) of forward + backward per call at the paper's small shapes, for
``rk.redge(x, n_steps=5, t_1=0.5, hard=True, backend="cpu")`` + ``y.backward(g)``, the two raw ops
``torch.ops.redge_kernels.fwd/bwd`` alone, ``F.gumbel_softmax(x, hard=True)`` + backward, and the
``rk.redge`` forward alone under ``torch.no_grad()``. One thread; ``--reps`` calls (a tenth of them
for the two large shapes), median.
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
