"""Sweeps of every estimator over its hyperparameters on one problem, and the result files.

``run_sweep`` evaluates (``montecarlo.evaluate``) ReDGE-family samplers on the grid
``n_steps x t_1`` and Gumbel-Softmax / ReinMax on the ``tau`` grid (plus ST), all with the same seed
(common random numbers: the same noise for every config, so differences between configs are not
sampling noise of the comparison), against one exact gradient. ``best_configs`` locates the
lowest-MSE config of each method and its near-best region. ``write_csv`` / ``write_markdown`` write the table.
"""

from __future__ import annotations

import csv
import math
import time
from typing import Callable, Iterable, Sequence

import torch

from .._constants import DIFFUSION_METHODS
from ..registry import SamplerConfig
from .exact import exact_gradient
from .montecarlo import evaluate

__all__ = ["sweep_configs", "run_sweep", "best_configs", "write_csv", "write_markdown",
           "TABLE_COLUMNS", "BEST_COLUMNS", "TAU_METHODS", "markdown_table"]

#: Baselines swept over tau.
TAU_METHODS = ("gumbel", "reinmax")

#: Columns of the written tables (all keys of ``evaluate``'s rows are in the CSV).
TABLE_COLUMNS = ("label", "grad_norm", "grad_norm_median", "frac_vanishing", "bias", "variance",
                 "mse", "mse_batch", "rel_mse_batch", "cosine",
                 "cosine_mean", "fwd_tv", "fwd_tv_null", "fwd_p_value")


def sweep_configs(methods: Iterable[str], n_steps: Sequence[int], t_1: Sequence[float],
                  tau: Sequence[float]) -> list[SamplerConfig]:
    """The configs of a sweep: ``n_steps x t_1`` for diffusion methods, ``tau`` for gumbel /
    reinmax, the single config of ``st``."""
    out = []
    for m in methods:
        if m in DIFFUSION_METHODS or m == "reindge":
            out += [SamplerConfig(m, n_steps=int(n), t_1=float(t)) for n in n_steps for t in t_1]
        elif m in TAU_METHODS:
            out += [SamplerConfig(m, tau=float(t)) for t in tau]
        elif m == "st":
            out.append(SamplerConfig("st"))
        else:
            raise ValueError(f"unknown method {m!r}")
    return out


def run_sweep(theta: torch.Tensor, f: Callable, configs: Sequence[SamplerConfig], *,
              n_samples: int, seed: int, backend: str = "auto", exact: torch.Tensor | None = None,
              batch: int = 1, dtype: torch.dtype = torch.float32,
              progress: Callable[[str], None] | None = None) -> list[dict]:
    """Diagnostics rows (``montecarlo.evaluate``) for every config, plus ``seconds`` per row.
    ``batch``: B of the ``mse_batch`` column (MSE of a B-sample average gradient)."""
    if exact is None:
        exact = exact_gradient(theta, f)
    rows = []
    for i, cfg in enumerate(configs):
        t0 = time.perf_counter()
        row = evaluate(cfg, theta, f, n_samples, seed, exact=exact, backend=backend, batch=batch,
                       dtype=dtype)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if progress is not None:
            progress(f"[{i + 1}/{len(configs)}] {cfg.label}: mse_batch={row['mse_batch']:.4g} "
                     f"grad_norm={row['grad_norm']:.4g} tv={row['fwd_tv']:.4f}")
    return rows


def best_configs(rows: Sequence[dict], within: float = 0.1, key: str = "mse_batch") -> list[dict]:
    """Per method, the row with the lowest ``key`` (default: the MSE of a B-sample average) and
    the near-best region (rows with ``key <= (1 + within) * best``), summarised as ranges of
    n_steps / t_1 / tau."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and math.isfinite(r[key])]
        if not mine:
            continue
        best = min(mine, key=lambda r: r[key])
        near = [r for r in mine if r[key] <= (1.0 + within) * best[key]]

        def rng(key):
            vals = sorted({r[key] for r in near if r[key] is not None})
            return "" if not vals else (f"{vals[0]:g}" if len(vals) == 1
                                        else f"{vals[0]:g}..{vals[-1]:g}")

        out.append({"method": method, "best": best["label"], "batch": best["batch"],
                    "mse_batch": best["mse_batch"], "rel_mse_batch": best["rel_mse_batch"],
                    "mse": best["mse"], "mse_se": best["mse_se"], "bias": best["bias"],
                    "variance": best["variance"], "cosine": best["cosine"],
                    "fwd_tv": best["fwd_tv"], "n_near": len(near), "n_steps_near": rng("n_steps"),
                    "t_1_near": rng("t_1"), "tau_near": rng("tau")})
    out.sort(key=lambda r: r["mse_batch"])
    return out


#: Columns of the best-config table.
BEST_COLUMNS = ("method", "best", "batch", "mse_batch", "rel_mse_batch", "mse", "bias", "variance",
                "cosine", "fwd_tv", "n_near", "n_steps_near", "t_1_near", "tau_near")


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_csv(path, rows: Sequence[dict]) -> None:
    """All keys of the rows (union, in first-seen order) as CSV."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(path, rows: Sequence[dict], best: Sequence[dict], header: str = "") -> None:
    """A markdown report: the header, the best config per method, and the full table."""
    parts = [header.rstrip(), "", "## Best config per method (lowest mse_batch)", "",
             markdown_table(best, BEST_COLUMNS),
             "", "`mse_batch`: MSE of the average of `batch` estimates; `n_near`: configs with "
             "mse_batch within 10% of the best; `*_near`: their ranges. `rel_mse_batch` >= 1 "
             "means no better than a zero gradient (whose MSE is ||exact||^2).", "",
             "## All configs", "", markdown_table(rows, TABLE_COLUMNS), ""]
    with open(path, "w") as fh:
        fh.write("\n".join(parts))
