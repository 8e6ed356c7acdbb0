"""Shared plumbing of the applications: command line, samplers by name, seeding, timing, outputs.

Every experiment uses only the public API of ``redge_kernels`` (``rk.SamplerConfig``). Samplers
are named on the command line as ``name`` or ``name:key=value:key=value`` (e.g.
``redge:n_steps=5:t_1=0.3``); a bare name gets the experiment's default hyperparameters.
Noise is reproducible: each run owns a ``torch.Generator`` seeded from the run seed, and the
sampler draws its Philox seed from it on every call (``generator=``).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

import redge_kernels as rk

ALL_SAMPLERS = ("st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max")
PRETTY = {"st": "Straight-Through", "gumbel": "Gumbel-Softmax", "reinmax": "ReinMax",
          "redge": "ReDGE", "redge_cov": "ReDGE-Cov", "redge_max": "ReDGE-Max",
          "reindge": "ReDGE-Max"}
#: python/results: the committed results pages (python/README.md).
RESULTS_ROOT = Path(__file__).resolve().parents[1] / "results"

#: The tuning grid: the same number of settings (4) for every sampler that has a hyperparameter;
#: Straight-Through has none (1 setting). Learning rates are fixed per experiment (paper Table 5).
TUNING_GRID: dict[str, list[dict]] = {
    "st": [{}],
    "gumbel": [{"tau": t} for t in (0.3, 0.5, 1.0, 2.0)],
    "reinmax": [{"tau": t} for t in (1.0, 1.25, 1.5, 2.0)],
    "redge": [{"n_steps": n, "t_1": t} for n in (3, 5) for t in (0.5, 0.9)],
    "redge_cov": [{"n_steps": n, "t_1": t} for n in (3, 5) for t in (0.5, 0.9)],
    "redge_max": [{"n_steps": n, "t_1": t} for n in (3, 5) for t in (0.5, 0.9)],
}


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_samplers(text: str, defaults: dict[str, dict] | None = None) -> list[rk.SamplerConfig]:
    """``"st,redge:n_steps=5:t_1=0.3"`` -> SamplerConfigs; bare names take ``defaults[name]``."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, *pairs = item.split(":")
        if name not in rk.SAMPLERS:
            raise SystemExit(f"unknown sampler {name!r}; choose from {sorted(rk.SAMPLERS)}")
        if pairs:
            hyper = {}
            for p in pairs:
                k, _, v = p.partition("=")
                hyper[k] = _parse_value(v)
        else:
            hyper = dict((defaults or {}).get(name, {}))
        out.append(rk.SamplerConfig(name, **hyper))
    return out


def base_parser(description: str, *, steps: int, seeds: int, lr: float) -> argparse.ArgumentParser:
    """Options shared by every experiment (each adds its own)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--samplers", default=",".join(ALL_SAMPLERS),
                   help="comma list of name[:key=value...] (default: all six)")
    p.add_argument("--backend", default="auto", choices=["auto", "reference", "cpu", "triton"],
                   help="redge_kernels backend (auto: fused kernel when built)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--steps", type=int, default=steps, help=f"optimisation steps (default {steps})")
    p.add_argument("--seeds", default=str(seeds),
                   help=f"number of seeds N (0..N-1) or a list like 3,4 (default {seeds})")
    p.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default {lr})")
    p.add_argument("--tune", action="store_true",
                   help="pick each sampler's setting from TUNING_GRID on a held-out tuning seed")
    p.add_argument("--tune-steps", type=int, default=None,
                   help="steps per tuning run (default: --steps)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI")
    p.add_argument("--out", default=None, help="output directory (default python/results/<exp>)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the problems are small and the "
                        "machine shared; 0 keeps torch's default)")
    p.add_argument("--no-progress", action="store_true", help="disable progress bars")
    return p


def parse_seeds(text: str) -> list[int]:
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    return list(range(int(text)))


def setup(args, exp: str) -> Path:
    """Apply ``--threads``, make and return the output directory."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else RESULTS_ROOT / exp
    out.mkdir(parents=True, exist_ok=True)
    return out


def backend_used(args, device) -> str:
    """What ``--backend`` resolves to on this device (for the results files)."""
    if args.backend != "auto":
        return args.backend
    try:
        avail = rk.available_backends()
    except Exception:  # a backend module mid-development must not break an experiment
        avail = ["reference"]
    pref = {"cpu": "cpu", "cuda": "triton"}.get(torch.device(device).type)
    return pref if pref in avail else "reference"


def progress(iterable, *, total=None, desc="", disable=False, leave=False):
    """tqdm progress bar on stderr (plain iterable when tqdm is missing or disabled)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=leave,
                dynamic_ncols=True, file=sys.stderr)


def make_generator(seed: int, device="cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


class StepTimer:
    """Wall time per optimisation step (mean and std over the timed steps, first step excluded)."""

    def __init__(self):
        self.times: list[float] = []
        self._t0 = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.times.append(time.perf_counter() - self._t0)

    @property
    def ms_per_step(self) -> float:
        t = self.times[1:] or self.times
        return 1e3 * sum(t) / max(len(t), 1)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = [float(x) for x in values]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def fmt(m: float, s: float | None = None, digits: int = 2) -> str:
    if s is None:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def summarise(rows: list[dict], group: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Mean and std over seeds of each metric, per group (e.g. sampler, setting)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[g] for g in group), []).append(r)
    out = []
    for key, rs in groups.items():
        row = dict(zip(group, key))
        row["n_seeds"] = len(rs)
        for m in metrics:
            mu, sd = mean_std([r[m] for r in rs])
            row[m + "_mean"], row[m + "_std"] = mu, sd
        out.append(row)
    return out


def markdown_table(summary: list[dict], group: Sequence[str], metrics: Sequence[str],
                   digits: dict[str, int] | None = None, headers: dict[str, str] | None = None) -> str:
    """Markdown table with one "mean ± std" column per metric."""
    digits, headers = digits or {}, headers or {}
    head = [headers.get(g, g) for g in group] + [headers.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [PRETTY.get(r[g], r[g]) if g == "sampler" else str(r[g]) for g in group]
        cells += [fmt(r[m + "_mean"], r[m + "_std"], digits.get(m, 2)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(path: Path, curves: dict[str, list[Sequence[float]]], *, title: str,
                ylabel: str, xlabel: str = "step", logy: bool = False,
                hline: float | None = None, smooth: int = 1) -> None:
    """One line per sampler (mean over seeds, shaded +- std), saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, runs in curves.items():
        n = min(len(r) for r in runs)
        arr = np.array([np.asarray(r[:n], dtype=float) for r in runs])
        if smooth > 1 and n >= smooth:
            kern = np.ones(smooth) / smooth
            arr = np.array([np.convolve(a, kern, mode="valid") for a in arr])
        x = np.arange(arr.shape[1]) + (smooth - 1 if smooth > 1 and n >= smooth else 0)
        mu, sd = arr.mean(0), arr.std(0)
        ax.plot(x, mu, label=label, lw=1.2)
        if arr.shape[0] > 1:
            ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
    if hline is not None:
        ax.axhline(hline, color="k", ls="--", lw=0.8, label="optimum")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def select_configs(args, configs: list[rk.SamplerConfig], objective: Callable[[rk.SamplerConfig], float],
                   out: Path, exp: str) -> list[rk.SamplerConfig]:
    """With ``--tune``: for every sampler named in ``configs``, run ``objective`` (lower is better)
    on each setting of ``TUNING_GRID`` and keep the best; the table goes to ``tuning.csv``.
    Without ``--tune``: ``configs`` unchanged."""
    if not args.tune:
        return configs
    rows, best = [], []
    for cfg in configs:
        grid = [rk.SamplerConfig(cfg.name, **h) for h in TUNING_GRID.get(cfg.name, [{}])]
        scores = []
        for cand in progress(grid, desc=f"tune {exp} {cfg.name}", disable=args.no_progress):
            score = float(objective(cand))
            if math.isnan(score):
                score = math.inf
            scores.append(score)
            rows.append({"sampler": cfg.name, "setting": cand.label, "objective": score})
        best.append(grid[min(range(len(grid)), key=scores.__getitem__)])
    for r in rows:
        r["chosen"] = any(b.label == r["setting"] for b in best)
    write_csv(out / "tuning.csv", rows)
    return best


def write_text(path: Path, text: str) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n")


def header_lines(args, exp: str, device, extra: Iterable[str] = ()) -> list[str]:
    """The settings block written at the top of each results.md."""
    lines = [f"# {exp}", "",
             f"- command: `python python/{exp}.py {' '.join(sys.argv[1:])}`".rstrip(),
             f"- backend: {backend_used(args, device)} (requested `{args.backend}`), "
             f"device {device}, torch threads {torch.get_num_threads()}",
             f"- steps {args.steps}, lr {args.lr}, seeds {parse_seeds(args.seeds)}"
             + (", tuned on a held-out seed (see tuning.csv)" if args.tune else "")]
    lines += [f"- {e}" for e in extra]
    return lines + [""]
