"""Command line: ``python -m redge_kernels.diagnostics {sweep,compare} [options]``.

``sweep``   every estimator over its hyperparameters (n_steps x t_1, or tau) on one problem; writes
            results.csv / results.md / best.csv / meta.json and PNG figures to ``--out``.
``compare`` every estimator at its default hyperparameters (the authors' configs); prints a table.

The problem: ``theta = theta_scale * N(0, 1)^{L x K}`` (seed ``--problem-seed``) and a built-in
objective (``objectives``), whose exact gradient is computed by enumeration of the K**L
configurations. ``--quick`` runs a small grid in a few seconds (for CI).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import torch

from .. import available_backends
from ..registry import DEFAULTS, SamplerConfig
from . import plots
from .exact import exact_gradient, exact_expectation
from .figure1 import ddim_map
from .objectives import OBJECTIVES, make_objective
from .sweep import (BEST_COLUMNS, TABLE_COLUMNS, best_configs, markdown_table, run_sweep,
                    sweep_configs,
                    write_csv, write_markdown)

ALL_METHODS = ("st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max")
FULL_GRID = {"n_steps": "2,3,4,6,9,17", "t1": "0.005,0.01,0.02,0.05,0.1,0.2,0.35,0.5,0.7,0.9,1.0",
             "tau": "0.01,0.02,0.05,0.1,0.2,0.5,1,2,5", "samples": 4096}
QUICK_GRID = {"n_steps": "2,3,5", "t1": "0.02,0.1,0.5,1.0", "tau": "0.1,0.5,1.0", "samples": 1024}


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def _problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objective", choices=OBJECTIVES, default="poly",
                   help="built-in f (default: poly, the paper's (1/L) sum |x_l1 - 0.45|^p)")
    p.add_argument("--power", type=float, default=3.0, help="exponent p of the poly objective")
    p.add_argument("--L", type=int, default=8, help="number of categorical variables (rows)")
    p.add_argument("--K", type=int, default=2, help="categories per variable")
    p.add_argument("--theta-scale", type=float, default=1.0, help="theta = scale * N(0, 1)")
    p.add_argument("--theta", default=None,
                   help="explicit logits: L*K comma-separated numbers, row-major (overrides "
                        "--theta-scale), e.g. --L 1 --K 2 --theta 0,-1.516 for Bernoulli(0.18)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="dtype of the logits handed to the sampler (float64: reference only; use "
                        "it to separate fp32 round-off from estimator variance at tiny t_1)")
    p.add_argument("--problem-seed", type=int, default=0, help="seed of theta and f's parameters")
    p.add_argument("--samples", type=int, default=None, help="Monte-Carlo replicates S")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (same for every config)")
    p.add_argument("--batch", type=int, default=256,
                   help="B of mse_batch, the MSE of a B-sample average gradient, used to rank "
                        "configs (default 256, the paper's batch; 1 = per-sample MSE)")
    p.add_argument("--backend", default="auto", choices=("auto", "reference", "cpu", "triton"))
    p.add_argument("--device", default="cpu", help="torch device of the logits (e.g. cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m redge_kernels.diagnostics",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sw = sub.add_parser("sweep", help="hyperparameter sweep with table and heatmaps")
    _problem_args(sw)
    sw.add_argument("--quick", action="store_true",
                    help=f"small grid (n_steps {QUICK_GRID['n_steps']}, t_1 {QUICK_GRID['t1']}, "
                         f"tau {QUICK_GRID['tau']}, S={QUICK_GRID['samples']})")
    sw.add_argument("--methods", default=",".join(ALL_METHODS))
    sw.add_argument("--n-steps", default=None, help=f"comma list (default {FULL_GRID['n_steps']})")
    sw.add_argument("--t1", default=None, help=f"comma list (default {FULL_GRID['t1']})")
    sw.add_argument("--tau", default=None, help=f"comma list (default {FULL_GRID['tau']})")
    sw.add_argument("--out", default="diagnostics_out", help="output directory")
    sw.add_argument("--no-plots", action="store_true", help="write tables only")
    sw.add_argument("-q", "--quiet", action="store_true")
    cp = sub.add_parser("compare", help="every estimator at its default hyperparameters")
    _problem_args(cp)
    return ap


def _problem(args):
    if args.theta is not None:
        vals = _floats(args.theta)
        if len(vals) != args.L * args.K:
            raise SystemExit(f"--theta needs L*K = {args.L * args.K} numbers, got {len(vals)}")
        theta = torch.tensor(vals, dtype=torch.float64).reshape(args.L, args.K).to(args.device)
    else:
        gen = torch.Generator().manual_seed(args.problem_seed)
        theta = (args.theta_scale * torch.randn(args.L, args.K, generator=gen,
                                                dtype=torch.float64)).to(args.device)
    f = make_objective(args.objective, args.L, args.K, seed=args.problem_seed, power=args.power)
    return theta, f


def _available() -> list[str] | str:
    try:
        return available_backends()
    except Exception as e:  # a backend being built may fail to import cleanly
        return f"unknown ({type(e).__name__}: {e})"


def _backend_used(backend: str, device: torch.device) -> str:
    """The backend ``rk.sample`` runs for ``backend`` on ``device`` (``"auto"``: the fused backend
    of the device type when built, else the reference)."""
    if backend != "auto":
        return backend
    fused = {"cpu": "cpu", "cuda": "triton"}.get(device.type)
    avail = _available()
    return fused if isinstance(avail, list) and fused in avail else "reference"


def _machine() -> str:
    """CPU model, architecture and the ISA torch's CPU kernels use, e.g. ``AMD EPYC x86_64 AVX2``."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    model = model or platform.processor()
    isa = torch.backends.cpu.get_cpu_capability()
    return " ".join(v for v in (model, platform.machine(), isa) if v)


def _meta(args, argv, theta, f, value, exact, elapsed) -> dict:
    return {"command": "python -m redge_kernels.diagnostics " + " ".join(argv),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": str(theta.device), "backend": args.backend,
            "backend_used": _backend_used(args.backend, theta.device),
            "available_backends": _available(),
            "objective": f.label, "L": args.L, "K": args.K, "configs": args.K ** args.L,
            "theta_scale": args.theta_scale, "theta": args.theta, "dtype": args.dtype,
            "problem_seed": args.problem_seed,
            "samples": args.samples, "seed": args.seed, "batch": args.batch,
            "exact_value": float(value),
            "exact_grad_norm": float(exact.norm()), "seconds": round(elapsed, 2)}


def cmd_sweep(args, argv) -> int:
    grid = QUICK_GRID if args.quick else FULL_GRID
    args.samples = args.samples or grid["samples"]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    configs = sweep_configs(methods, _ints(args.n_steps or grid["n_steps"]),
                            _floats(args.t1 or grid["t1"]), _floats(args.tau or grid["tau"]))
    theta, f = _problem(args)
    t0 = time.perf_counter()
    exact, value = exact_gradient(theta, f, return_value=True)
    log = None if args.quiet else (lambda s: print(s, flush=True))
    rows = run_sweep(theta, f, configs, n_samples=args.samples, seed=args.seed,
                     backend=args.backend, exact=exact, batch=args.batch, progress=log,
                     dtype=getattr(torch, args.dtype))
    best = best_configs(rows)
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "results.csv"), rows)
    write_csv(os.path.join(args.out, "best.csv"), best)
    pngs = []
    if not args.no_plots and plots.available():
        title = f"{f.label}, L={args.L}, K={args.K}, S={args.samples}"
        for m in methods:
            if any(r["method"] == m and r["t_1"] is not None for r in rows):
                pngs.append(f"heatmap_{m}.png")
                plots.heatmaps(rows, m, os.path.join(args.out, pngs[-1]), title)
        if any(r["t_1"] is not None for r in rows):
            pngs.append("prop31_gradnorm.png")
            plots.prop31_plot(rows, os.path.join(args.out, pngs[-1]), title)
        if any(r["tau"] is not None for r in rows):
            pngs.append("baselines_tau.png")
            plots.tau_plot(rows, os.path.join(args.out, pngs[-1]), title)
        n_fig = 3
        p, maps = ddim_map((0.9, 0.3, 0.05), n_steps=n_fig, n_grid=25 if args.quick else 99,
                           seed=args.seed, backend=args.backend)
        pngs.append("fig1_ddim_map.png")
        plots.figure1_plot(p, maps, os.path.join(args.out, pngs[-1]), n_fig)
    elif not args.no_plots:
        print("matplotlib is not installed: tables only (pip install matplotlib)", file=sys.stderr)
    meta = _meta(args, argv, theta, f, value, exact, time.perf_counter() - t0)
    meta["figures"] = pngs
    with open(os.path.join(args.out, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    header = (f"# Estimator diagnostics: {f.label}, L={args.L}, K={args.K}\n\n"
              f"`{meta['command']}` on {meta['machine']} ({meta['cpu_count']} CPUs, torch "
              f"{meta['torch']}, backend {args.backend} -> {meta['backend_used']}); "
              f"S={args.samples} replicates, seed {args.seed}, batch B={args.batch}, "
              f"{meta['seconds']} s.\n"
              f"Exact E[f] = {value:.6g}, ||exact gradient|| = {exact.norm():.6g}.")
    write_markdown(os.path.join(args.out, "results.md"), rows, best, header)
    print(markdown_table(best, BEST_COLUMNS))
    print(f"wrote {args.out}/results.csv, results.md, best.csv, meta.json"
          + (", " + ", ".join(pngs) if pngs else "") + f" ({meta['seconds']} s)")
    return 0


def cmd_compare(args, argv) -> int:
    args.samples = args.samples or FULL_GRID["samples"]
    theta, f = _problem(args)
    exact = exact_gradient(theta, f)
    configs = [SamplerConfig(m, **DEFAULTS[m]) for m in ALL_METHODS]
    rows = run_sweep(theta, f, configs, n_samples=args.samples, seed=args.seed,
                     backend=args.backend, exact=exact, batch=args.batch,
                     dtype=getattr(torch, args.dtype))
    print(f"# {f.label}, L={args.L}, K={args.K}, S={args.samples}, seed={args.seed}, "
          f"E[f]={float(exact_expectation(theta, f)):.6g}, ||exact||={float(exact.norm()):.4g}")
    print(markdown_table(rows, TABLE_COLUMNS))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["sweep"] + argv
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return cmd_sweep(args, argv) if args.command == "sweep" else cmd_compare(args, argv)
