"""PNG figures of a sweep (matplotlib, imported lazily; ``available()`` says whether it is there).

* ``heatmaps(rows, method, path)``: for one diffusion method, n_steps x t_1 heatmaps of
  log10 grad norm, log10 relative MSE of a B-sample average, cos(mean, exact), bias
  (||mean - exact||) and forward-sample TV; the lowest-MSE cell is boxed.
* ``prop31_plot(rows, path)``: median and mean gradient norm against t_1 (log-log), one line per
  (method, n_steps): paper Prop. 3.1 (gradients vanish as t_1 -> 0).
* ``tau_plot(rows, path)``: MSE (B-sample average) and gradient norm of gumbel / reinmax against
  tau, ST as a line.
* ``figure1_plot(p, maps, path)``: the DDIM map of ``figure1.ddim_map``.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["available", "heatmaps", "prop31_plot", "tau_plot", "figure1_plot"]


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _log10(v: float) -> float:
    return math.log10(v) if v > 0 else float("nan")


def heatmaps(rows: Sequence[dict], method: str, path, title: str = "") -> None:
    plt = _plt()
    import numpy as np
    mine = [r for r in rows if r["method"] == method]
    ns = sorted({r["n_steps"] for r in mine})
    ts = sorted({r["t_1"] for r in mine})
    batch = mine[0]["batch"]
    panels = [("grad_norm", "log10 mean ||grad|| (white: exactly 0)", _log10),
              ("rel_mse_batch", f"log10 MSE/||exact||^2 (B={batch})", _log10),
              ("cosine", "cos(mean, exact)", float),
              ("bias", "bias ||mean - exact||", float), ("fwd_tv", "forward TV", float)]
    best = min(mine, key=lambda r: r["mse_batch"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.45 * len(ns) + 2.4))
    for ax, (key, name, tr) in zip(axes, panels):
        grid = np.full((len(ns), len(ts)), np.nan)
        for r in mine:
            grid[ns.index(r["n_steps"]), ts.index(r["t_1"])] = tr(r[key])
        im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
        ax.set_xticks(range(len(ts)), [f"{t:g}" for t in ts], rotation=60, fontsize=7)
        ax.set_yticks(range(len(ns)), [str(n) for n in ns], fontsize=7)
        ax.set_xlabel("t_1")
        ax.set_ylabel("n_steps")
        ax.set_title(name, fontsize=9)
        ax.add_patch(plt.Rectangle((ts.index(best["t_1"]) - 0.5, ns.index(best["n_steps"]) - 0.5),
                                   1, 1, fill=False, edgecolor="red", linewidth=2))
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{method}  {title}  (red box: lowest MSE at B={batch}, {best['label']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prop31_plot(rows: Sequence[dict], path, title: str = "") -> None:
    plt = _plt()
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if any(
        r["method"] == m and r["t_1"] is not None for r in rows)]
    ncol = max(1, len(methods))
    fig, axes = plt.subplots(2, ncol, figsize=(4.5 * ncol, 7.0), squeeze=False)
    exact_norm = rows[0]["exact_norm"] if rows else None
    floor = 1e-30
    for j, m in enumerate(methods):
        mine = [r for r in rows if r["method"] == m]
        for i, (key, name) in enumerate((("grad_norm_median", "median"), ("grad_norm", "mean"))):
            ax = axes[i][j]
            for n in sorted({r["n_steps"] for r in mine}):
                pts = sorted((r["t_1"], r[key]) for r in mine if r["n_steps"] == n)
                ax.plot([p[0] for p in pts], [max(p[1], floor) for p in pts], marker="o", ms=3,
                        label=f"n={n}")
            if exact_norm:
                ax.axhline(exact_norm, color="k", ls="--", lw=1, label="||exact||")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("t_1")
            ax.set_ylabel(f"{name} ||gradient estimate|| (floor {floor:g})")
            ax.set_title(m, fontsize=9)
            ax.legend(fontsize=7)
    fig.suptitle(f"Prop. 3.1: gradient norm vs t_1 (top: median, bottom: mean)  {title}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tau_plot(rows: Sequence[dict], path, title: str = "") -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    st = [r for r in rows if r["method"] == "st"]
    for m in ("gumbel", "reinmax"):
        pts = sorted((r["tau"], r["mse_batch"], r["grad_norm"]) for r in rows if r["method"] == m)
        if pts:
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=m)
            axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", ms=3, label=m)
    for ax, key in zip(axes, ("mse_batch", "grad_norm")):
        if st:
            ax.axhline(st[0][key], color="gray", ls=":", label="st")
        if key == "grad_norm" and rows:
            ax.axhline(rows[0]["exact_norm"], color="k", ls="--", lw=1, label="||exact||")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tau")
        ax.set_ylabel(key)
        ax.legend(fontsize=7)
    fig.suptitle(f"baselines vs tau  {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure1_plot(p, maps: dict, path, n_steps: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(maps), figsize=(3.8 * len(maps), 3.4), squeeze=False)
    for ax, (t_1, ys) in zip(axes[0], maps.items()):
        for q in range(ys.shape[0]):
            ax.plot(p.numpy(), ys[q].numpy(), lw=1.2)
        ax.plot([0, 1], [0, 1], color="k", ls=":", lw=0.8)
        ax.set_title(f"t_1 = {t_1:g}, n_steps = {n_steps}", fontsize=9)
        ax.set_xlabel("p = softmax(theta)[1]")
        ax.set_ylabel("soft sample y[1] (fixed noise)")
    fig.suptitle("DDIM map p -> T_0(x_1) for fixed noises (paper Fig. 1, third row)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
