"""Markdown tables and the PNG plot of a benchmark run (``runner.run`` records + metadata)."""

from __future__ import annotations

from collections import OrderedDict

from redge_kernels._constants import DIFFUSION_METHODS
from redge_kernels.registry import DEFAULTS

from .cases import PEER_NAMES

MIB = 2**20


def _ms(t):
    return "—" if t is None else (f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}")


def _spread(r):
    if "median" not in r:
        return "—"
    return f"{_ms(r['median'])} ({_ms(r['q1'])}–{_ms(r['q3'])})"


def _mib(b):
    if b is None:
        return "—"
    return f"{b / MIB:.3g}" if b / MIB < 1000 else f"{b / MIB:.0f}"


def _pct(f):
    return "—" if f is None else f"{100 * f:.0f}%" if f >= 0.1 else f"{100 * f:.1f}%"


def _x(v):
    return "—" if v is None else f"{v:.2g}×" if v < 10 else f"{v:.0f}×"


def add_roofline(records) -> None:
    """Set ``roofline`` = ``(buffers / 2) * t_copy / t`` on every timed record, ``t_copy`` being
    the median over the shape's cases of the copy floor's median (``out.copy_(x)`` is timed in
    every case; pooling them keeps one slow round of the copy from skewing a case)."""
    copies = {}
    for r in records:
        if r["kind"] == "floor" and "median" in r:
            copies.setdefault((r["shape"], tuple(r["dims"])), []).append(r["median"])
    for r in records:
        ts = sorted(copies.get((r["shape"], tuple(r["dims"])), []))
        if "median" in r and ts and r.get("buffers"):
            r["roofline"] = (r["buffers"] / 2) * ts[len(ts) // 2] / r["median"]


def meta_lines(meta: dict) -> list[str]:
    v = meta["versions"]
    vers = ", ".join(f"{k} {val}" for k, val in v.items())
    lines = [
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- device: {meta['device_name']} ({meta['device']}); {meta['threads']}",
        f"- versions: {vers}",
        f"- grid: `{meta['size']}`; timing: {meta['timing']}; elapsed {meta['elapsed_s']:.0f} s",
        f"- memory: {meta['memory_method']}",
    ]
    if meta.get("load"):
        lines.append(f"- load average (1 min) at start / end: {meta['load']}")
    if meta.get("note"):
        lines.append(f"- note: {meta['note']}")
    return lines


def _index(records):
    by_case = OrderedDict()
    for r in records:
        key = (r["shape"], tuple(r["dims"]), r["estimator"], r["pass"])
        by_case.setdefault(key, {})[r["impl"]] = r
    return by_case


def summary_table(records) -> list[str]:
    """One row per case and fused backend (reference only if no fused backend ran)."""
    ours = [n for n in OrderedDict.fromkeys(r["impl"] for r in records if r["kind"] == "ours")]
    fused = [n for n in ours if n != "rk[reference]"] or ours
    peers = [p for p in PEER_NAMES if any(r["impl"] == p for r in records)]
    head = (["shape", "dims", "estimator", "pass", "impl", "median ms (IQR)", "GB/s",
             "% copy", "peak MiB", "mem ÷ redge"] + [f"× {p}" for p in peers])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (shape, dims, est, pas), row in _index(records).items():
        for name in fused:
            r = row.get(name)
            if r is None or "median" not in r:
                continue
            eager = row.get("redge", {})
            mem_ratio = None
            if r.get("peak_bytes") and eager.get("peak_bytes"):
                mem_ratio = eager["peak_bytes"] / r["peak_bytes"]
            cells = [shape, "x".join(map(str, dims)), est, pas, name, _spread(r),
                     f"{r['gbps']:.3g}", _pct(r.get("roofline")), _mib(r.get("peak_bytes")),
                     _x(mem_ratio)]
            cells += [_x(r.get("speedup", {}).get(p)) for p in peers]
            out.append("| " + " | ".join(cells) + " |")
    return out


def copy_table(records) -> list[str]:
    out = ["| shape | dims | MiB | copy ms, median case (IQR) | GB/s (2 × MiB / t) |",
           "|---|---|---|---|---|"]
    seen = OrderedDict()
    for r in records:
        if r["kind"] == "floor" and "median" in r:
            seen.setdefault((r["shape"], tuple(r["dims"])), []).append(r)
    for (shape, dims), rs in seen.items():
        rs = sorted(rs, key=lambda r: r["median"])
        r = rs[len(rs) // 2]
        nbytes = r["gbps"] * 1e9 * r["median"]
        out.append(f"| {shape} | {'x'.join(map(str, dims))} | {nbytes / MIB:.3g} | {_spread(r)} "
                   f"| {2 * r['gbps']:.3g} |")
    return out


def detail_table(records) -> list[str]:
    peers = [p for p in PEER_NAMES if any(r["impl"] == p for r in records)]
    head = (["shape", "estimator", "pass", "impl", "median ms (IQR)", "GB/s", "% copy",
             "peak MiB"] + [f"× {p}" for p in peers] + ["note"])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (shape, dims, est, pas), row in _index(records).items():
        for name, r in row.items():
            if r["kind"] == "floor":
                continue
            has = "median" in r
            cells = [f"{shape} {'x'.join(map(str, dims))}", est, pas, name, _spread(r),
                     f"{r['gbps']:.3g}" if has else "—", _pct(r.get("roofline")),
                     _mib(r.get("peak_bytes"))]
            cells += [_x(r.get("speedup", {}).get(p)) if r["kind"] == "ours" else ""
                      for p in peers]
            cells.append(r.get("note", ""))
            out.append("| " + " | ".join(cells) + " |")
    return out


def markdown(meta: dict, records) -> str:
    parts = ["# redge_kernels benchmark report", ""] + meta_lines(meta) + [
        "",
        "Columns: median time per call with the interquartile range; GB/s of logits "
        "(R·K·4 bytes / median); % copy = the time the op's minimal traffic takes at the copy "
        "bandwidth of this run (median copy time of the shape), over the median (forward: 2 R×K "
        "buffers, forward+backward: 5); "
        "peak MiB = peak extra memory of one call measured alone; mem ÷ redge = the authors' "
        "eager peak over ours; × peer = peer median / ours (> 1: ours faster). All hard=True, "
        "fp32, t_1 = 0.5.",
        "",
        "## Summary (fused backend)", ""] + summary_table(records) + [
        "", "## Copy floor", ""] + copy_table(records) + [
        "", "## All implementations", ""] + detail_table(records) + [""]
    return "\n".join(parts)


def _k(k: int) -> str:
    return f"{k // 1024}k" if k >= 1024 and k % 1024 == 0 else str(k)


def _plot_estimators(records):
    """Per method, the n_steps of the authors' default if present in the run, else the first."""
    chosen = OrderedDict()
    for r in records:
        m = r["method"]
        if m in chosen:
            continue
        if m in DIFFUSION_METHODS:
            ns = sorted({q["n_steps"] for q in records if q["method"] == m})
            n = DEFAULTS[m]["n_steps"] if DEFAULTS[m]["n_steps"] in ns else ns[0]
            chosen[m] = f"{m}(n={n})"
        else:
            chosen[m] = m
    return chosen


def plot(meta: dict, records, path: str) -> None:
    """Median time vs K (log-log), one panel per estimator and pass, one line per implementation.
    At each K the case with the most rows is used (R listed under the axis)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ests = _plot_estimators(records)
    passes = list(OrderedDict.fromkeys(r["pass"] for r in records))
    rows_at_k = {}
    for r in records:
        rows_at_k[r["k"]] = max(rows_at_k.get(r["k"], 0), r["rows"])
    impls = list(OrderedDict.fromkeys(r["impl"] for r in records))
    fig, axes = plt.subplots(len(passes), len(ests), figsize=(3.2 * len(ests), 3.0 * len(passes)),
                             squeeze=False, sharex=True)
    styles = {}
    cmap = plt.get_cmap("tab10")
    for j, name in enumerate(impls):
        styles[name] = dict(color="black" if name == "copy" else cmap(j % 10),
                            ls="--" if name == "copy" else "-",
                            marker="o" if name.startswith("rk[") else ".")
    ks = sorted(rows_at_k)
    for i, pas in enumerate(passes):
        for j, (m, label) in enumerate(ests.items()):
            ax = axes[i][j]
            for name in impls:
                pts = [(r["k"], r["median"] * 1e3) for r in records
                       if r["estimator"] == label and r["pass"] == pas and r["impl"] == name
                       and "median" in r and r["rows"] == rows_at_k[r["k"]]]
                if pts:
                    pts.sort()
                    ax.plot(*zip(*pts), label=name, **styles[name])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{label}, {pas}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel("median ms per call")
            if i == len(passes) - 1:
                ax.set_xticks(ks)
                ax.set_xticklabels([f"{_k(k)}\nR={rows_at_k[k]}" for k in ks], fontsize=6)
                ax.minorticks_off()
                ax.set_xlabel("K")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 8), fontsize=8)
    fig.suptitle(f"{meta['device_name']} | torch {meta['versions'].get('torch')} | "
                 f"{meta['date']}", fontsize=9, y=0.005, va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _case_key(r):
    return (r["shape"], tuple(r["dims"]), r["estimator"], r["pass"])


def merge(base: dict, extra: dict) -> dict:
    """``base`` with every case that ``extra`` measured replaced by ``extra``'s records (whole
    cases, so each case's ratios still come from one set of interleaved rounds)."""
    replaced = {_case_key(r) for r in extra["records"]}
    records = [r for r in base["records"] if _case_key(r) not in replaced]
    order = list(OrderedDict.fromkeys(_case_key(r) for r in base["records"]))
    by_key = OrderedDict((k, []) for k in order)
    for r in records + extra["records"]:
        by_key.setdefault(_case_key(r), []).append(r)
    meta = dict(base["meta"])
    meta["command"] = (f"{base['meta']['command']}`, then `{extra['meta']['command']}` "
                       f"(its {len(replaced)} cases replace the first run's); merged with "
                       f"`python -m bench.render <first>/results.json <second>/results.json")
    meta["elapsed_s"] = base["meta"]["elapsed_s"] + extra["meta"]["elapsed_s"]
    if extra["meta"].get("note"):
        meta["note"] = extra["meta"]["note"]
    if extra["meta"].get("load"):
        meta["load"] = f"{base['meta'].get('load')} (first run), {extra['meta']['load']} (second)"
    return {"meta": meta, "records": [r for rs in by_key.values() for r in rs]}


def main(argv=None):
    """Re-render saved runs: ``python -m bench.render results.json [more.json ...] [--out DIR]``
    rewrites ``report.md``, ``plot.png`` (and ``results.json`` when merging: cases of a later file
    replace the same cases of earlier ones); ``--summary PASS`` prints only the header and the
    summary table of one pass (what docs/BENCHMARKS.md shows)."""
    import argparse
    import json
    import os

    p = argparse.ArgumentParser(prog="python -m bench.render", description=main.__doc__)
    p.add_argument("results", nargs="+")
    p.add_argument("--out")
    p.add_argument("--summary", choices=("fwd", "fwd+bwd"))
    args = p.parse_args(argv)
    runs = []
    for path in args.results:
        with open(path) as f:
            runs.append(json.load(f))
    data = runs[0]
    for extra in runs[1:]:
        data = merge(data, extra)
    meta, records = data["meta"], data["records"]
    for r in records:  # results written before the "buffers" field
        if "buffers" not in r:
            r["buffers"] = 2 if r["kind"] == "floor" else (2 if r["pass"] == "fwd" else 5)
    add_roofline(records)
    if args.summary:
        rows = [r for r in records if r["pass"] == args.summary]
        print("\n".join(meta_lines(meta) + [""] + summary_table(rows)))
        return
    out = args.out or os.path.dirname(os.path.abspath(args.results[0]))
    os.makedirs(out, exist_ok=True)
    if len(runs) > 1 or args.out:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(data, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(markdown(meta, records))
    plot(meta, records, os.path.join(out, "plot.png"))


if __name__ == "__main__":
    main()
