"""Performance model of the Triton kernels' machine code, no GPU needed (docs/GPU_MODEL.md).

    python -m bench.gpu_model [--table baseline|targets|quick] [--arch 90] [--jobs 2]
        [--json out.json] [--markdown out.md]

For each workload (estimator x direction x shape x n_steps x dtype) it compiles the kernels the
launcher of THIS checkout launches, with the JIT's runtime specialization, for ``sm_<arch>``
(``bench.kernel_compile``), disassembles them (``bench.sass``), counts the warp-instructions each
program executes by pipe with the loop trip counts of the kernel's own structure
(``bench.kernel_trace`` runs the first program under Triton's interpreter; ``bench.sass_counts``),
and predicts the time on an H100 SXM and an H200 from documented per-SM throughputs, occupancy
and waves (``bench.gpu_machines``). It prints, per workload: instructions per element by pipe,
predicted time, what bounds it, and the fraction of HBM bandwidth for the docs/SPEC.md byte floor
("Memory and passes": the forward reads phi and writes y, the backward reads phi and g and writes
grad_phi).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from bench.kernel_compile import (DIFFUSION, HARD_ONLY, METHODS, Workload, capture,
                                  compile_launch, in_compiling_process, interpreting)

SHAPES = [(4096, 32768, 5), (4096, 32768, 10), (8, 262144, 5), (64, 131072, 5), (9600, 2, 5),
          (6400, 64, 5), (5184, 9, 5)]
ELEM_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}


def table(name: str) -> list[Workload]:
    """Workloads of a named table: ``baseline`` (every estimator, both directions, the SHAPES,
    fp32 and bf16), ``quick`` (redge 4096 x 32768 n=5 fp32 both directions)."""
    if name == "quick":
        return [Workload("redge", d, 4096, 32768, 5) for d in ("fwd", "bwd")]
    out = []
    for dtype in ("fp32", "bf16"):
        for method in METHODS:
            for rows, k, n in SHAPES:
                if n != 5 and method not in DIFFUSION:
                    continue
                for d in ("fwd", "bwd"):
                    out.append(Workload(method, d, rows, k, n, dtype))
    return out


def floor_bytes(w: Workload) -> tuple[float, float]:
    """(read, written) bytes of the docs/SPEC.md floor."""
    n = w.rows * w.k * ELEM_BYTES[w.dtype]
    return (n, n) if w.direction == "fwd" else (2 * n, n)


# ---- the two process kinds: compiling (interpreter off) and tracing (interpreter on) ----

_COMPILE_CACHE: dict = {}


def _compile_job(w: Workload, arch: int) -> list[dict]:
    """Compiled launches of ``w`` with their disassembly (runs with TRITON_INTERPRET=0)."""
    from bench.kernel_trace import kernel_root
    from bench.sass import disassemble
    out = []
    for launch in capture(w):
        c = compile_launch(launch, arch)
        key = (c.name, c.arch, c.num_warps, json.dumps(c.constexprs, sort_keys=True),
               json.dumps(c.signature, sort_keys=True), c.cubin)
        prog = _COMPILE_CACHE.get(key)
        if prog is None:
            prog = _COMPILE_CACHE[key] = disassemble(c.cubin)
        d = dataclasses.asdict(c)
        d.pop("cubin")
        d["program"] = prog
        d["root"] = kernel_root(launch.fn)
        out.append(d)
    return out


def _fill(t):
    import torch
    g = torch.Generator().manual_seed(0)
    rows = t if t.numel() <= (1 << 22) else t[:64]
    rows.copy_(torch.randn(rows.shape, generator=g).to(t.dtype))


def _signatures(w: Workload) -> list:
    from bench.kernel_compile import run_workload
    from bench.kernel_trace import trace_first_programs
    sigs: list = []
    trace_first_programs(lambda: run_workload(w, "cpu"), signatures=sigs, dry=True)
    return sigs


def _traced(w: Workload) -> list:
    from bench.kernel_compile import run_workload
    from bench.kernel_trace import trace_first_programs
    return [t.counts for t in trace_first_programs(lambda: run_workload(w, "cpu", fill=_fill))]


def _affine_points(w: Workload) -> list[int] | None:
    """Three smaller K whose launches have exactly ``w``'s configuration (kernels, grid,
    constexprs), or None (see ``_trace_job``)."""
    if w.k < 8192:
        return None
    want = _signatures(w)
    ok = []
    for div in (64, 32, 16, 8, 4):
        k = w.k // div
        if k * div != w.k or (k % 16 == 0) != (w.k % 16 == 0):
            continue
        sigs = _signatures(dataclasses.replace(w, k=k))
        ok = ok + [k] if sigs == want else []
        if len(ok) == 3:
            return ok
    return None


def _trace_job(w: Workload, n_launches: int) -> list:
    """Traces of the last ``n_launches`` launches of ``w`` (runs with TRITON_INTERPRET=1).

    A program's statement counts are affine in K for a kernel that streams its row in tiles of
    a fixed width: when three smaller K (K/64 .. K/4) launch exactly the same kernels, grid and
    constexprs and their counts are exactly affine in K, the counts at K are extrapolated from
    them (a large speed-up under the interpreter); otherwise the trace runs at K."""
    points = _affine_points(w)
    if points is not None:
        runs = [_traced(dataclasses.replace(w, k=k)) for k in points]
        out = []
        for a, b, c in zip(*runs):
            keys = set(a) | set(b) | set(c)
            slope = {key: (b.get(key, 0) - a.get(key, 0)) / (points[1] - points[0])
                     for key in keys}
            affine = all(abs(a.get(key, 0) + slope[key] * (points[2] - points[0])
                             - c.get(key, 0)) < 1e-9 for key in keys)
            if not affine:
                out = None
                break
            out.append({key: round(a.get(key, 0) + slope[key] * (w.k - points[0]))
                        for key in keys})
        if out is not None and len(out) == len(runs[0]):
            return out[len(out) - n_launches:]
    traces = _traced(w)
    return traces[len(traces) - n_launches:]


def _trace_or_reuse(w: Workload, n_launches: int, cached: list | None):
    """``(signatures, traces)`` of ``w``; traces None when ``cached`` (the signatures of a traced
    workload of the same shape, e.g. the other dtype) equals ``w``'s: same kernels, grid and
    constexprs, hence the same statement counts."""
    sigs = _signatures(w)
    if cached is not None and sigs == cached:
        return sigs, None
    return sigs, _trace_job(w, n_launches)


_TRACE_POOL = []
_TRACES: dict = {}


def _trace_in_interpreter(w: Workload, n_launches: int):
    """Traces of ``w``'s launches, from one long-lived interpreting worker process (or this
    process when it interprets); reused across workloads that differ only in dtype."""
    import os
    key = (w.method, w.direction, w.rows, w.k, w.n_steps, w.hard)
    cached = _TRACES.get(key)
    args = (w, n_launches, cached[0] if cached else None)
    if interpreting():
        sigs, traces = _trace_or_reuse(*args)
    else:
        if not _TRACE_POOL:
            import concurrent.futures as cf
            import multiprocessing as mp
            old = os.environ.get("TRITON_INTERPRET")
            os.environ["TRITON_INTERPRET"] = "1"
            try:
                _TRACE_POOL.append(cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")))
                _TRACE_POOL[0].submit(int, 0).result()  # start the worker now
            finally:
                if old is None:
                    del os.environ["TRITON_INTERPRET"]
                else:
                    os.environ["TRITON_INTERPRET"] = old
        sigs, traces = _TRACE_POOL[0].submit(_trace_or_reuse, *args).result()
    if traces is None:
        return cached[1]
    _TRACES[key] = (sigs, traces)
    return traces


def analyse(w: Workload, arch: int = 90) -> dict:
    """Compile, disassemble, trace and count ``w``: a JSON-able record per launch."""
    from bench.kernel_trace import SourceIndex, Trace
    from bench.sass_counts import count
    if interpreting():
        launches = in_compiling_process(_compile_job, [(w, arch)])[0]
    else:
        launches = _compile_job(w, arch)
    traces = _trace_in_interpreter(w, len(launches))
    out = []
    for c, tr in zip(launches, traces):
        index = SourceIndex([c.pop("root")])
        counts = count(c.pop("program"), Trace(tr), index)
        c.pop("ptxas_log", None)
        c.update(by_pipe=dict(counts.by_pipe), by_opcode=dict(counts.by_opcode),
                 ldg_bytes=counts.ldg_bytes, stg_bytes=counts.stg_bytes, loops=counts.loops,
                 excluded=dict(counts.excluded))
        out.append(c)
    return {"workload": dataclasses.asdict(w), "label": w.label(), "launches": out}


def predict(rec: dict, machine) -> dict:
    """Predicted time of an ``analyse`` record on ``machine`` (bench.gpu_machines)."""
    from bench.gpu_machines import launch_time
    w = Workload(**rec["workload"])
    read, write = floor_bytes(w)
    lsu_total = sum(_programs(c) * c["num_warps"] * (c["ldg_bytes"] + c["stg_bytes"])
                    for c in rec["launches"]) or 1.0
    us = steady = 0.0
    bounds, instr = [], {}
    for c in rec["launches"]:
        p = _programs(c)
        share = p * c["num_warps"] * (c["ldg_bytes"] + c["stg_bytes"]) / lsu_total
        lt = launch_time(machine, p, c["num_warps"], c["regs"], c["shared"], c["by_pipe"],
                         c["ldg_bytes"] + c["stg_bytes"], read * share, write * share,
                         p * c["num_warps"] * c["ldg_bytes"])
        us += lt.us
        steady += lt.steady_us
        bounds.append(lt.bound)
        for pipe, n in c["by_pipe"].items():
            instr[pipe] = instr.get(pipe, 0.0) + n * p * c["num_warps"] * 32 / (w.rows * w.k)
    floor_us = (read + write) / (machine.hbm_tbs * 1e12) * 1e6
    return {"us": us, "steady_us": steady, "bound": "+".join(bounds),
            "floor_frac": floor_us / us, "steady_floor_frac": floor_us / steady,
            "instr_per_elem": instr}


def _programs(c) -> int:
    g = c["grid"]
    return int(g[0]) * int(g[1]) * int(g[2])


_PIPES_SHOWN = ("alu", "fma", "imad", "mufu", "conv", "lsu", "shared", "uniform", "control")


def markdown(records: list[dict]) -> str:
    """The model's table: one row per workload, H100 SXM and H200."""
    from bench.gpu_machines import H100_SXM, H200
    head = ("| workload | kernels (BLOCK, warps, programs) | regs / stack B | instr/elem "
            "(all: alu fma imad mufu conv lsu shared uniform control) | H100 ms | bound | "
            "H100 % floor | H200 ms | H200 % floor |")
    lines = [head, "|" + "---|" * 9]
    for rec in records:
        h1, h2 = predict(rec, H100_SXM), predict(rec, H200)
        ks = "; ".join(f"{c['name'].strip('_')} ({c['constexprs'].get('BLOCK', '-')}, "
                       f"{c['num_warps']}, {_programs(c)})" for c in rec["launches"])
        rs = "; ".join(f"{c['regs']} / {c['stack']}" for c in rec["launches"])
        ipe = h1["instr_per_elem"]
        cols = " ".join(f"{ipe.get(p, 0.0):.1f}" for p in _PIPES_SHOWN)
        lines.append(f"| {rec['label']} | {ks} | {rs} | {sum(ipe.values()):.0f}: {cols} | "
                     f"{h1['us'] / 1e3:.4g} | {h1['bound']} | {100 * h1['floor_frac']:.1f} "
                     f"({100 * h1['steady_floor_frac']:.1f}) | {h2['us'] / 1e3:.4g} | "
                     f"{100 * h2['floor_frac']:.1f} ({100 * h2['steady_floor_frac']:.1f}) |")
    return "\n".join(lines) + "\n"


def targets_markdown(records: list[dict], machine_key: str = "h100", dtype: str = "fp32",
                     method: str = "redge") -> str:
    """The targets by the model (steady-state % of HBM for the byte floor; per-element ratios),
    one row per check, for ``method`` hard in ``dtype`` on ``machine_key``."""
    from bench.gpu_machines import MACHINES
    m = MACHINES[machine_key]
    by = {}
    for rec in records:
        w = rec["workload"]
        if w["method"] == method and w["dtype"] == dtype and w.get("hard", True):
            by[(w["direction"], w["rows"], w["k"], w["n_steps"])] = predict(rec, m)
    rows = [f"| check ({method}, {dtype}, {m.name}) | model | target | met |", "|---|---|---|---|"]

    def frac(d, r, k, n, target):
        p = by.get((d, r, k, n))
        if p is None:
            return
        v = 100 * p["steady_floor_frac"]
        rows.append(f"| {d} {r} x {k} n={n}: % of HBM for the floor | {v:.1f} % | >= {target} % "
                    f"| {'yes' if v >= target else 'no'} |")

    def ratio(label, a, b, target):
        if a in by and b in by:
            v = by[a]["steady_us"] / (a[1] * a[2]) / (by[b]["steady_us"] / (b[1] * b[2]))
            rows.append(f"| {label} | {v:.2f}x | <= {target}x | {'yes' if v <= target else 'no'} |")

    for d in ("fwd", "bwd"):
        frac(d, 4096, 32768, 5, 40)
    for d in ("fwd", "bwd"):
        ratio(f"{d} n=10 / n=5 time at 4096 x 32768", (d, 4096, 32768, 10), (d, 4096, 32768, 5), 2)
        for r, k in ((8, 262144), (64, 131072)):
            ratio(f"{d} {r} x {k} / 4096 x 32768 per element", (d, r, k, 5), (d, 4096, 32768, 5), 2)
        for r, k in ((9600, 2), (6400, 64), (5184, 9)):
            frac(d, r, k, 5, 25)
    return "\n".join(rows) + "\n"


def targets_summary(records: list[dict]) -> str:
    """The targets in one table: per estimator, dtype and machine, steady-state % of HBM for the
    byte floor at 4096 x 32768 n=5 (target >= 40), time n=10 / n=5 (<= 2, diffusion only), time
    per element of 8 x 262144 and 64 x 131072 over 4096 x 32768 (<= 2), and the least % of HBM
    over the small shapes 9600 x 2, 6400 x 64, 5184 x 9 (>= 25); each cell "fwd / bwd"."""
    from bench.gpu_machines import MACHINES
    rows = ["| estimator | dtype | GPU | % HBM 4096x32768 (>= 40) | n=10 / n=5 (<= 2) | "
            "8x262144 per elem (<= 2) | 64x131072 per elem (<= 2) | small shapes min % (>= 25) |",
            "|---|---|---|---|---|---|---|---|"]
    from bench.kernel_compile import METHODS
    for method in METHODS:
        for dtype in ("fp32", "bf16"):
            for mk in ("h100", "h200"):
                m = MACHINES[mk]
                by = {}
                for rec in records:
                    w = rec["workload"]
                    if w["method"] == method and w["dtype"] == dtype:
                        by[(w["direction"], w["rows"], w["k"], w["n_steps"])] = predict(rec, m)
                if not by:
                    continue

                def cell(f):
                    vals = [f(d) for d in ("fwd", "bwd")]
                    return " / ".join("-" if v is None else f"{v:.1f}" if v >= 10 else
                                      f"{v:.2f}" for v in vals)

                def pct(d, r, k, n=5):
                    p = by.get((d, r, k, n))
                    return None if p is None else 100 * p["steady_floor_frac"]

                def per_elem(d, a, b):
                    if a in by and b in by:
                        return (by[a]["steady_us"] / (a[1] * a[2])) / \
                            (by[b]["steady_us"] / (b[1] * b[2]))
                    return None

                def small(d):
                    v = [pct(d, r, k) for r, k in ((9600, 2), (6400, 64), (5184, 9))]
                    v = [x for x in v if x is not None]
                    return min(v) if v else None
                base = lambda d: (d, 4096, 32768, 5)  # noqa: E731
                rows.append(
                    f"| {method} | {dtype} | {m.name} | {cell(lambda d: pct(d, 4096, 32768))} | "
                    f"{cell(lambda d: per_elem(d, (d, 4096, 32768, 10), base(d)))} | "
                    f"{cell(lambda d: per_elem(d, (d, 8, 262144, 5), base(d)))} | "
                    f"{cell(lambda d: per_elem(d, (d, 64, 131072, 5), base(d)))} | "
                    f"{cell(small)} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="baseline", choices=["baseline", "quick"])
    ap.add_argument("--only", nargs="+", default=None,
                    help="keep workloads whose label contains all of these substrings")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--json", default=None, help="append the records here, one JSON per line")
    ap.add_argument("--from-json", nargs="+", default=None,
                    help="print the table of saved records (several files: merged, the last "
                         "record of a workload kept, in table order; --json then writes them)")
    ap.add_argument("--markdown", default=None, help="write the table here")
    args = ap.parse_args(argv)
    t0 = time.time()
    records = []
    if args.from_json:
        by_label = {}
        for path in args.from_json:
            with open(path) as f:
                for line in f:
                    if line.strip():
                        rec = json.loads(line)
                        by_label[rec["label"]] = rec
        order = {w.label(): i for i, w in enumerate(table("baseline"))}
        records = sorted(by_label.values(), key=lambda r: order.get(r["label"], len(order)))
        if args.json:
            with open(args.json, "w") as f:
                f.writelines(json.dumps(r, default=str) + "\n" for r in records)
    for w in ([] if args.from_json else table(args.table)):
        if args.only and not all(s in w.label() for s in args.only):
            continue
        if w.method in HARD_ONLY and not w.hard:
            continue
        t = time.time()
        records.append(analyse(w, args.arch))
        print(f"# {w.label()}: {time.time() - t:.1f} s", file=sys.stderr, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(records[-1], default=str) + "\n")
    md = markdown(records) + "\n" + targets_markdown(records) + "\n" + targets_summary(records)
    print(md)
    print(f"{len(records)} workloads modelled in {time.time() - t0:.0f} s (sm_{args.arch})")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
