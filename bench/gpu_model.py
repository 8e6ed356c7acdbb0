"""Performance model of the Triton kernels' machine code, no GPU needed (docs/GPU_MODEL.md).

    python -m bench.gpu_model [--table baseline|quick] [--only SUBSTR ...] [--arch 90]
        [--json out.jsonl] [--markdown out.md] [--job-timeout 900]

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
import contextlib
import dataclasses
import json
import math
import sys
import time

from bench.kernel_compile import (DIFFUSION, HARD_ONLY, METHODS, Workload, capture,
                                  compile_launch)

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
    for launch in capture(w, arch):
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
        d["tensors"] = [[list(a.shape), a.element_size()] for a in launch.args
                        if hasattr(a, "element_size") and hasattr(a, "shape")]
        out.append(d)
    return out


def _fill(t):
    """Normal random values (the first 64 rows only of a tensor over 2**26 elements: the model's
    reduced traces never need more, a full-size fallback trace then reads zeros elsewhere)."""
    import torch
    g = torch.Generator().manual_seed(0)
    rows = t if t.numel() <= (1 << 26) else t[:64]
    rows.copy_(torch.randn(rows.shape, generator=g).to(t.dtype))


def _signatures(w: Workload, arch: int = 90) -> list:
    from bench.kernel_compile import run_workload
    from bench.kernel_trace import trace_first_programs
    sigs: list = []
    trace_first_programs(lambda: run_workload(w, "cpu", arch=arch), signatures=sigs, dry=True)
    return sigs


@contextlib.contextmanager
def _zeroed_buffers():
    """``torch.empty`` allocates zeros while tracing. A traced launch runs its first program
    only, so the buffers other programs would fill (the split kernels' partial statistics, read
    by every program of the next launch) stay as allocated: uninitialised memory steered the
    traced trip counts (the Gumbel-max fold's candidates) from one run of the model to the next;
    zeros make the records reproducible."""
    import torch
    real = torch.empty
    torch.empty = torch.zeros
    try:
        yield
    finally:
        torch.empty = real


def _traced(w: Workload, arch: int = 90) -> list:
    from bench.kernel_compile import run_workload
    from bench.kernel_trace import trace_first_programs
    with _zeroed_buffers():
        return [t.counts
                for t in trace_first_programs(lambda: run_workload(w, "cpu", fill=_fill,
                                                                   arch=arch))]


def _tile(want: list) -> int:
    """The largest power-of-two integer constexpr (>= 16) of the launches: the tile width of a
    kernel that streams its row in tiles (0 if none)."""
    best = 0
    for _, _, consts in want:
        for _, v in consts:
            if v.isdigit() and int(v) >= 16 and int(v) & (int(v) - 1) == 0:
                best = max(best, int(v))
    return best


def _reduced_points(w: Workload, want: list, arch: int = 90) -> tuple[str, list[int]] | None:
    """``(dimension, three smaller values)`` of a dimension of ``w`` along which its first
    programs' statement counts should be exactly affine, each value launching exactly ``w``'s
    kernels, grids and constexprs (``want``: ``w``'s launch signatures), or None.

    Rows: ``R' = g, 2g, 3g < R`` for a launch's grid ``g`` (a persistent grid of ``g`` programs
    whose program 0 takes ``R' / g`` rows). Columns: the three smallest ``K' = K mod T + m T <
    K`` (``T``: the tile, ``_tile``), so that every point has K's tail and whole tiles more or
    fewer. None for a (row, chunk) grid (the split kernels): the chunk width follows R and K, so
    program 0's work is not affine in either (their first program is one chunk: traced in full).
    """
    if any(len(g) > 1 and math.prod(g[1:]) > 1 for _, g, _ in want):
        return None
    grids = sorted({math.prod(g) for _, g, _ in want})
    for g in grids:
        pts = [g * q for q in (1, 2, 3)]
        if pts[-1] < w.rows and all(
                _signatures(dataclasses.replace(w, rows=r), arch) == want for r in pts):
            return "rows", pts
    tile = _tile(want)
    if tile and w.k >= 4 * tile:
        ok = []
        for m in range(1, w.k // tile):
            k = w.k % tile + m * tile
            if k >= w.k:
                break
            if _signatures(dataclasses.replace(w, k=k), arch) == want:
                ok.append(k)
                if len(ok) == 3:
                    return "k", ok
            elif ok:
                ok = []  # the points must be consecutive
    return None


def _affine(runs: list, points: list[int], target: int, dependent, linear: bool = True
            ) -> list | None:
    """Statement counts at ``target`` from three traced points, or None unless every count not
    ``dependent`` on the data (``dependent(key)``: inside a ``while`` loop) is exactly affine in
    the points. Data-dependent counts (trip counts on random logits, e.g. the candidates of the
    exact Gumbel-max) are extrapolated from the outer two points when ``linear`` (rows: each row
    draws its own), else taken from the largest point (columns: a row's first tiles hold nearly
    all its candidates, so the count grows far slower than K)."""
    if any(len(r) != len(runs[0]) for r in runs):
        return None
    out = []
    for a, b, c in zip(*runs):
        keys = set(a) | set(b) | set(c)
        res = {}
        for key in keys:
            va, vb, vc = a.get(key, 0), b.get(key, 0), c.get(key, 0)
            if dependent(key):
                if not linear:
                    res[key] = vc
                    continue
                slope = (vc - va) / (points[2] - points[0])
            else:
                slope = (vb - va) / (points[1] - points[0])
                if abs(va + slope * (points[2] - points[0]) - vc) > 1e-9:
                    return None
            res[key] = max(0, round(va + slope * (target - points[0])))
        out.append(res)
    return out


def _trace_counts(w: Workload, log=None, arch: int = 90) -> list:
    """Statement counts of the first program of every launch of ``w`` (runs with
    TRITON_INTERPRET=1), reduced where possible (docs/GPU_MODEL.md "Trip counts"): when the
    counts are exactly affine along rows (a persistent grid) or K (tiled rows) over three smaller
    workloads of the same launches, they are extrapolated from those (recursively: a reduced
    workload may be reduced along the other dimension), else traced at ``w``."""
    want = _signatures(w, arch)
    red = _reduced_points(w, want, arch)
    if red is not None:
        dim, points = red
        runs = [_trace_counts(dataclasses.replace(w, **{dim: p}), log, arch) for p in points]
        out = _affine(runs, points, getattr(w, dim), _in_while, linear=dim == "rows")
        if out is not None:
            return out
        if log is not None:
            log.append(f"{w.label()}: counts not affine in {dim} at {points}; traced in full")
    return _traced(w, arch)


def _in_while(key) -> bool:
    """Whether a trace key lies (through any of its call sites) inside a ``while`` loop."""
    from bench.kernel_trace import while_spans
    call_sites, here = key
    return any(lo <= line <= hi for path, line in tuple(call_sites) + (here,)
               for lo, hi in while_spans(path))


def _trace_or_reuse(w: Workload, cached: list | None, arch: int = 90):
    """``(signatures, traces, notes)`` of ``w``; traces None when ``cached`` (the signatures of a
    traced workload of the same shape, e.g. the other dtype) equals ``w``'s: same kernels, grid
    and constexprs, hence the same statement counts."""
    sigs = _signatures(w, arch)
    if cached is not None and sigs == cached:
        return sigs, None, []
    notes: list = []
    return sigs, _trace_counts(w, notes, arch), notes


# ---- workers: one compiling (interpreter off), one tracing (interpreter on), each job bounded ----

class JobError(RuntimeError):
    """A modelling job failed, timed out, or its worker died."""


def _serve(conn):
    import traceback
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        try:
            conn.send((True, fn(*args)))
        except BaseException:  # reported to the parent, which fails the workload
            conn.send((False, traceback.format_exc()))


class Worker:
    """A long-lived ``spawn`` process with ``TRITON_INTERPRET`` set to ``interpret``, running
    module-level functions one at a time; a job past its deadline kills the process (a fresh one
    starts for the next job) and raises ``JobError``, as does a job that raises or a process
    that dies."""

    def __init__(self, interpret: bool):
        self.interpret = interpret
        self.proc = None
        self.conn = None

    def _start(self):
        import multiprocessing as mp
        import os
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        old = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1" if self.interpret else "0"
        try:
            self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
            self.proc.start()
        finally:
            if old is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = old
        child.close()

    def submit(self, fn, *args):
        if self.proc is None or not self.proc.is_alive():
            self.close()
            self._start()
        self.started = time.time()
        self.conn.send((fn, args))

    def result(self, timeout: float, what: str):
        kind = "trace (interpreter)" if self.interpret else "compile"
        if not self.conn.poll(max(0.0, timeout - (time.time() - self.started))):
            self.close()
            raise JobError(f"{what}: {kind} job timed out after {timeout:.0f} s (worker killed)")
        try:
            ok, val = self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.exitcode if self.proc is not None else None
            self.close()
            raise JobError(f"{what}: {kind} worker died (exit code {code})") from None
        if not ok:
            raise JobError(f"{what}: {kind} job failed:\n{val}")
        return val

    def close(self):
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
            self.proc = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Modeller:
    """Compiles (one worker) and traces (another, concurrently) each workload, at most
    ``timeout`` seconds per job; traces are reused across workloads that differ only in dtype
    when their launches are the same."""

    def __init__(self, arch: int = 90, timeout: float = 900.0):
        self.arch = arch
        self.timeout = timeout
        self.compiler = Worker(interpret=False)
        self.tracer = Worker(interpret=True)
        self.traces: dict = {}
        self.notes: list = []

    def analyse(self, w: Workload) -> dict:
        """Compile, disassemble, trace and count ``w``: a JSON-able record per launch."""
        from bench.kernel_trace import SourceIndex, Trace
        from bench.sass_counts import count
        key = (w.method, w.direction, w.rows, w.k, w.n_steps, w.hard, w.write_y)
        cached = self.traces.get(key)
        self.compiler.submit(_compile_job, w, self.arch)
        self.tracer.submit(_trace_or_reuse, w, cached[0] if cached else None, self.arch)
        errors = []
        try:
            launches = self.compiler.result(self.timeout, w.label())
        except JobError as e:
            errors.append(e)
        try:
            sigs, traces, notes = self.tracer.result(self.timeout, w.label())
        except JobError as e:
            errors.append(e)
        if errors:
            raise errors[0]
        self.notes += notes
        if traces is None:
            traces = cached[1]
        else:
            self.traces[key] = (sigs, traces)
        traces = traces[len(traces) - len(launches):]
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

    def close(self):
        self.compiler.close()
        self.tracer.close()


def analyse(w: Workload, arch: int = 90, timeout: float = 900.0) -> dict:
    """``Modeller.analyse`` of one workload (its own two worker processes)."""
    m = Modeller(arch, timeout)
    try:
        return m.analyse(w)
    finally:
        m.close()


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
                         p * c["num_warps"] * c["ldg_bytes"], p * c["num_warps"] * c["stg_bytes"],
                         _in_flight(c, w, read * share, p))
        us += lt.us
        steady += lt.steady_us
        bounds.append(lt.bound)
        for pipe, n in c["by_pipe"].items():
            instr[pipe] = instr.get(pipe, 0.0) + n * p * c["num_warps"] * 32 / (w.rows * w.k)
    floor_us = (read + write) / (machine.hbm_tbs * 1e12) * 1e6
    return {"us": us, "steady_us": steady, "bound": "+".join(bounds),
            "floor_frac": floor_us / us, "steady_floor_frac": floor_us / steady,
            "instr_per_elem": instr}


def _in_flight(c: dict, w: Workload, read: float, programs: int) -> float | None:
    """Bytes one program works on at a time: its share of the floor's reads, one row (or one
    slice of a row, when programs outnumber rows) at a time, plus its slot of the launch's
    workspace (tensors over 64 KiB whose leading dimension is not the rows, e.g. a persistent
    grid's per-program scratch). None for records without their tensors (older records: the
    reads of all its rows)."""
    if "tensors" not in c:
        return None
    work = sum(math.prod(shape) * size for shape, size in c["tensors"]
               if shape and shape[0] != w.rows and math.prod(shape) * size > 65536)
    return read / max(w.rows, programs) + work / programs


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


#: The shapes of the targets (rows, K, n_steps) and each target: ("pct", x): steady-state % of
#: HBM for the byte floor >= x; ("ratio", x): steady-state time (n=10: total; else per element)
#: over 4096 x 32768 n=5's <= x.
TARGETS = [((4096, 32768, 5), ("pct", 40)), ((4096, 32768, 10), ("ratio", 2)),
           ((8, 262144, 5), ("ratio", 2)), ((64, 131072, 5), ("ratio", 2)),
           ((9600, 2, 5), ("pct", 25)), ((6400, 64, 5), ("pct", 25)), ((5184, 9, 5), ("pct", 25))]


def targets_table(records: list[dict]) -> str:
    """Every estimator x dtype x GPU x direction, one cell per target shape: predicted ms
    (launch cost included), the bound, the steady-state % of HBM bandwidth for the byte floor,
    and the target with "met" / "not met" (ratios of steady-state times for n=10 and the long
    rows, per element for the latter)."""
    from bench.gpu_machines import MACHINES
    from bench.kernel_compile import METHODS
    head = ["4096x32768 n=5 (>= 40 %)", "n=10 (<= 2x n=5)", "8x262144 (<= 2x per elem)",
            "64x131072 (<= 2x per elem)", "9600x2 (>= 25 %)", "6400x64 (>= 25 %)",
            "5184x9 (>= 25 %)"]
    rows = ["| estimator | dtype | GPU | dir | " + " | ".join(head) + " |",
            "|" + "---|" * (4 + len(head))]
    by = {}
    for rec in records:
        w = rec["workload"]
        if w.get("hard", True) and w.get("write_y", True):
            by[(w["method"], w["dtype"], w["direction"], w["rows"], w["k"], w["n_steps"])] = rec
    met = total = 0
    for method in METHODS:
        for dtype in ("fp32", "bf16"):
            for mk in ("h100", "h200"):
                m = MACHINES[mk]
                for d in ("fwd", "bwd"):
                    if not any(k[:3] == (method, dtype, d) for k in by):
                        continue
                    base = by.get((method, dtype, d, 4096, 32768, 5))
                    pb = predict(base, m) if base else None
                    cells = []
                    for (r, k, n), (kind, x) in TARGETS:
                        rec = by.get((method, dtype, d, r, k, n))
                        if rec is None:
                            cells.append("-")
                            continue
                        p = predict(rec, m)
                        cell = (f"{p['us'] / 1e3:.3g} ms, {p['bound']}, "
                                f"{100 * p['steady_floor_frac']:.1f} %")
                        if kind == "pct":
                            v, ok = 100 * p["steady_floor_frac"], 100 * p["steady_floor_frac"] >= x
                            cell += ": met" if ok else ": not met"
                        elif pb is None:
                            ok = None
                        else:
                            per = 1.0 if n == 10 else (4096 * 32768) / (r * k)
                            v = p["steady_us"] / pb["steady_us"] * per
                            ok = v <= x
                            cell += f", {v:.2f}x: " + ("met" if ok else "not met")
                        if ok is not None:
                            met += bool(ok)
                            total += 1
                        cells.append(cell)
                    rows.append(f"| {method} | {dtype} | {m.name} | {d} | " + " | ".join(cells)
                                + " |")
    rows.append("")
    rows.append(f"Targets met: {met} of {total}.")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="baseline", choices=["baseline", "quick"])
    ap.add_argument("--only", nargs="+", default=None,
                    help="keep workloads whose label contains all of these substrings")
    ap.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                    help="keep these estimators only")
    ap.add_argument("--resume", action="store_true",
                    help="skip the workloads whose records the --json file already holds")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--json", default=None, help="append the records here, one JSON per line")
    ap.add_argument("--from-json", nargs="+", default=None,
                    help="print the table of saved records (several files: merged, the last "
                         "record of a workload kept, in table order; --json then writes them)")
    ap.add_argument("--markdown", default=None, help="write the table here")
    ap.add_argument("--job-timeout", type=float, default=900.0,
                    help="seconds per compile or trace job; a job past it fails its workload "
                         "(its worker is killed) and the table goes on")
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
    failed = []
    done = set()
    if args.resume and args.json:
        import os
        if os.path.exists(args.json):
            with open(args.json) as f:
                for line in f:
                    if line.strip():
                        records.append(json.loads(line))
                        done.add(records[-1]["label"])
    modeller = Modeller(args.arch, args.job_timeout)
    try:
        for w in ([] if args.from_json else table(args.table)):
            if args.only and not all(s in w.label() for s in args.only):
                continue
            if w.method in HARD_ONLY and not w.hard or w.label() in done:
                continue
            if args.methods and w.method not in args.methods:
                continue
            t = time.time()
            try:
                records.append(modeller.analyse(w))
            except JobError as e:
                failed.append(str(e))
                print(f"# {w.label()}: FAILED after {time.time() - t:.1f} s: {e}",
                      file=sys.stderr, flush=True)
                continue
            print(f"# {w.label()}: {time.time() - t:.1f} s", file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(records[-1], default=str) + "\n")
    finally:
        modeller.close()
    for note in modeller.notes:
        print(f"# note: {note}", file=sys.stderr)
    md = (targets_table(records) + "\n" + markdown(records) + "\n" + targets_markdown(records)
          + "\n" + targets_summary(records))
    print(md)
    print(f"{len(records)} workloads modelled in {time.time() - t0:.0f} s (sm_{args.arch})"
          + (f", {len(failed)} FAILED" if failed else ""))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    for e in failed:
        print(f"FAILED: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
