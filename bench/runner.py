"""Run the benchmark grid and return plain records (``report.py`` renders them).

For every case: build each implementation, warm it up (``torch.compile`` compiles here), probe its
peak memory alone (``timing.peak_extra_bytes``), then time all of them interleaved with the copy
floor (``timing.time_interleaved``). Derived figures per implementation:

* ``gbps``: logits bytes / median time (``R * K * itemsize / t``);
* ``buffers``: the op's minimal traffic in ``R x K`` buffers (forward 2: read phi, write y;
  forward + backward 5: also read phi and g, write grad); the fraction of the copy roofline is
  derived from it by ``render.add_roofline`` (copy timed in every case, 2 buffers);
* ``speedup``: for our implementations, each peer's median / ours (> 1: ours is faster).

An implementation whose per-element time at a smaller shape predicts more than ``max_call_s`` per
call here (``max_call_s_reference`` for the reference backend) is skipped with a note; the cases
run smallest shape first. This bounds one command on slow devices: on a 2-core CPU it keeps the
pure-PyTorch reference off the language-model shapes.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from . import cases as C
from . import timing

SETTINGS = {
    # rounds, min_rounds, per-case time budget (s), min sample (s), max predicted s per call for
    # every implementation and (lower) for the pure-PyTorch reference, an oracle, not a contender
    "smoke": dict(rounds=3, min_rounds=2, budget_s=0.2, min_sample_s=0.002, max_call_s=1.0,
                  max_call_s_reference=1.0),
    "quick": dict(rounds=5, min_rounds=3, budget_s=0.6, min_sample_s=0.01, max_call_s=0.6,
                  max_call_s_reference=0.6),
    "full": dict(rounds=9, min_rounds=3, budget_s=3.0, min_sample_s=0.02, max_call_s=10.0,
                 max_call_s_reference=1.5),
}


@dataclasses.dataclass
class Options:
    size: str = "quick"
    device: str = "auto"
    methods: tuple | None = None
    shapes: tuple | None = None
    peers: tuple | None = None      # peer names to run (None: all installed)
    backends: tuple | None = None   # our backends to run (None: all for the device)
    memory: bool = True
    max_call_s: float | None = None
    log: bool = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _configure_compile() -> None:
    # One compiled graph per (estimator, shape, grad mode): lift dynamo's recompile limits so
    # a long grid never falls back to eager silently.
    cfg = torch._dynamo.config
    for attr in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(cfg, attr):
            setattr(cfg, attr, 4096)


def run(opts: Options) -> dict:
    """``{"device", "settings", "records", "skipped"}``; records are dicts (see ``_record``)."""
    device = resolve_device(opts.device)
    st = dict(SETTINGS[opts.size])
    if opts.max_call_s is not None:
        st["max_call_s"] = st["max_call_s_reference"] = opts.max_call_s
    if device.type == "cpu" and opts.memory:
        opts.memory = timing.prepare_cpu_memory_probe()
    _configure_compile()
    impls = C.implementations(device, opts.peers, opts.backends,
                              C.grid(opts.size, device)["compile_for"])
    all_cases = C.cases(opts.size, device, opts.methods, opts.shapes)
    made: dict = {}         # (impl, estimator) -> callable, so compiled graphs are reused
    per_elem: dict = {}     # (impl, estimator, pass) -> seconds per logit at the last shape
    records, inputs_for = [], {}
    t_start = time.perf_counter()
    for i, case in enumerate(all_cases):
        if case.shape not in inputs_for:
            inputs_for.clear()  # free the previous shape's tensors
            inputs_for[case.shape] = C.inputs(case.shape, device)
        x, g = inputs_for[case.shape]
        fns, est, mem, notes = {}, {}, {}, {}
        for impl in impls:
            if not impl.supports(case.estimator):
                continue
            key = (impl.name, case.estimator, case.pass_)
            if impl.kind == "floor":
                fn = C.copy_fn(x)
            else:
                pred = per_elem.get(key, 0.0) * case.shape.numel
                cap = st["max_call_s_reference" if impl.name == "rk[reference]" else "max_call_s"]
                if pred > cap:
                    notes[impl.name] = f"skipped: predicted {pred:.1f} s/call"
                    continue
                try:
                    mk = (impl.name, case.estimator)
                    if mk not in made:
                        made[mk] = impl.make(case.estimator)
                    fn = C.step_fn(made[mk], case, x, g)
                    timing.time_once(fn, device)  # warm-up (compiles)
                except Exception as e:  # noqa: BLE001 - a peer failing is a result, not a crash
                    first = (str(e).splitlines() or [""])[0][:80]
                    notes[impl.name] = f"error: {type(e).__name__}: {first}"
                    if device.type == "cuda":  # e.g. out of memory at the largest shapes
                        torch.cuda.empty_cache()
                    continue
            t0 = time.perf_counter()
            if opts.memory and impl.kind != "floor":
                mem[impl.name] = timing.peak_extra_bytes(fn, device)
                est[impl.name] = time.perf_counter() - t0
            else:
                est[impl.name] = timing.time_once(fn, device)
            fns[impl.name] = fn
        samples = timing.time_interleaved(
            fns, device, estimates=est, rounds=st["rounds"], min_rounds=st["min_rounds"],
            min_sample_s=st["min_sample_s"], budget_s=st["budget_s"])
        stats = {n: timing.summary(s) for n, s in samples.items()}
        for n, s in stats.items():
            per_elem[(n, case.estimator, case.pass_)] = s["median"] / case.shape.numel
        records += _records(case, impls, stats, mem, notes, x.element_size())
        if opts.log:
            brief = "  ".join(f"{n} {s['median'] * 1e3:.3g}ms" for n, s in stats.items())
            skip = f"  ({len(notes)} skipped/failed)" if notes else ""
            print(f"[{i + 1}/{len(all_cases)} {time.perf_counter() - t_start:6.1f}s] "
                  f"{case.id}: {brief}{skip}", flush=True)
    return {"device": device, "settings": st, "records": records,
            "elapsed_s": time.perf_counter() - t_start}


def _records(case, impls, stats, mem, notes, itemsize) -> list[dict]:
    base = {"shape": case.shape.name, "dims": list(case.shape.dims), "rows": case.shape.rows,
            "k": case.shape.k, "method": case.estimator.method,
            "n_steps": case.estimator.n_steps, "estimator": case.estimator.label,
            "pass": case.pass_}
    logit_bytes = case.shape.numel * itemsize
    out = []
    for impl in impls:
        if not impl.supports(case.estimator):
            continue
        r = dict(base, impl=impl.name, kind=impl.kind, note=notes.get(impl.name, ""))
        s = stats.get(impl.name)
        if s is not None:
            r.update(s)
            r["gbps"] = logit_bytes / s["median"] / 1e9
            r["buffers"] = 2 if impl.kind == "floor" else C.MIN_BUFFERS[case.pass_]
            r["peak_bytes"] = mem.get(impl.name)
            if impl.kind == "ours":
                r["speedup"] = {p.name: stats[p.name]["median"] / s["median"]
                                for p in impls if p.kind == "peer" and p.name in stats}
        out.append(r)
    return out
