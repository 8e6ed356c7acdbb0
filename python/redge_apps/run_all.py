"""Run every experiment in turn (one at a time): ``python python/run_all.py [--quick]``.

Options given here are passed to every experiment (``--samplers``, ``--backend``, ``--device``,
``--threads``, ``--tune``, ``--no-progress``, ``--seeds``); ``--out ROOT`` writes each one to
``ROOT/<experiment>``; ``--only gmm,sudoku`` picks a subset. Per-experiment sizes (steps, puzzles,
configs) keep each experiment's own defaults; use the experiment's command to change them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

EXPERIMENTS = ("polynomial", "gmm", "sudoku", "vae", "lm_guidance")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(EXPERIMENTS))
    ap.add_argument("--out", default=None, help="root output directory")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    for opt in ("--samplers", "--backend", "--device", "--threads", "--seeds"):
        ap.add_argument(opt, default=None)
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiment(s) {sorted(unknown)}; choose from {EXPERIMENTS}")
    common = [f for f, on in (("--quick", args.quick), ("--tune", args.tune),
                              ("--no-progress", args.no_progress)) if on]
    for opt in ("samplers", "backend", "device", "threads", "seeds"):
        if getattr(args, opt) is not None:
            common += [f"--{opt}", str(getattr(args, opt))]
    for name in names:
        argv_e = list(common)
        if args.out:
            argv_e += ["--out", str(Path(args.out) / name)]
        t0 = time.perf_counter()
        print(f"== {name} {' '.join(argv_e)}", file=sys.stderr, flush=True)
        importlib.import_module(f"{__package__}.{name}").main(argv_e)
        print(f"== {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
