"""Benchmark report: one command writes ``report.md``, ``plot.png`` and ``results.json``.

    python -m bench.report --quick --out bench/results     # minutes on 2 CPU cores
    python -m bench.report --full  --out bench/results     # the whole grid (see cases.grid)
    python -m bench.report --smoke --out /tmp/r            # seconds: the CI harness check

Options: ``--methods redge,gumbel``, ``--shapes sudoku,vae``, ``--peers redge,reinmax``
(``--peers none`` for none), ``--backends cpu``, ``--device cuda``, ``--no-memory``,
``--max-call-s`` (skip implementations predicted slower than this per call), ``--note``.
The figures are described in ``runner.py`` and ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys

import torch

import redge_kernels as rk

from . import render, runner


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_rev() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, text=True, capture_output=True, timeout=10).stdout
        return (rev + ("+dirty" if dirty.strip() else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _extension_built() -> str | None:
    """Modification time of the loaded C++ extension (it may be rebuilt while a report runs)."""
    try:
        from redge_kernels import _cpu_backend
        if _cpu_backend._C is None:
            return None
        t = os.path.getmtime(_cpu_backend._C.__file__)
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M UTC")
    except (ImportError, OSError, AttributeError):
        return None


def metadata(opts: runner.Options, out: dict, argv, load_start, note=None, rev=None,
             built=None) -> dict:
    device = out["device"]
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "redge_kernels": f"{rk.__version__} ({rev or _git_rev()})"}
    if built:
        versions["redge_kernels._C built"] = built
    for dist in ("triton", "redge", "reinmax", "numpy"):
        v = _version(dist)
        if v:
            versions[dist] = v
    if device.type == "cuda":
        versions["cuda"] = torch.version.cuda
    threads = (f"{os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
               f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    st = out["settings"]
    memory = ("torch.cuda.max_memory_allocated after reset, minus allocated before (tensors)"
              if device.type == "cuda" else
              "resident-set high-water mark (VmHWM, reset via /proc/self/clear_refs) minus RSS "
              "before, glibc mmap threshold 64 KiB, after a warm-up call")
    if not opts.memory:
        memory = "not measured"
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.report " + " ".join(shlex.quote(a) for a in argv),
        "device": str(device), "device_name": _device_name(device), "threads": threads,
        "versions": versions, "size": opts.size,
        "timing": (f"interleaved rounds (≤ {st['rounds']}, ≥ {st['min_rounds']}, "
                   f"~{st['budget_s']} s"
                   f" per case), samples ≥ {st['min_sample_s'] * 1e3:.0f} ms; skip if predicted "
                   f"> {st['max_call_s']} s per call ({st['max_call_s_reference']} s for "
                   f"rk[reference])"),
        "memory_method": memory, "elapsed_s": out["elapsed_s"],
        "load": (f"{load_start:.1f} / {load_end:.1f}" if load_start is not None else None),
        "note": note,
    }


def _list(v):
    if v is None:
        return None
    return () if v == "none" else tuple(s for s in v.split(",") if s)


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="size", action="store_const", const="quick")
    g.add_argument("--full", dest="size", action="store_const", const="full")
    g.add_argument("--smoke", dest="size", action="store_const", const="smoke")
    p.set_defaults(size="quick")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--device", default="auto")
    p.add_argument("--methods")
    p.add_argument("--shapes")
    p.add_argument("--peers", help="comma list of peers, or 'none'")
    p.add_argument("--backends", help="comma list of our backends")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--max-call-s", type=float)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--note", help="free text for the report header (e.g. machine load)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = runner.Options(size=args.size, device=args.device, methods=_list(args.methods),
                          shapes=_list(args.shapes), peers=_list(args.peers),
                          backends=_list(args.backends), memory=not args.no_memory,
                          max_call_s=args.max_call_s, log=not args.quiet)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rev = _git_rev()  # the code as it was when the run started
    import redge_kernels._cpu_backend  # noqa: F401  (load the extension now, then stamp it)
    built = _extension_built()
    out = runner.run(opts)
    meta = metadata(opts, out, argv, load_start, args.note, rev, built)
    render.add_roofline(out["records"])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "records": out["records"]}, f, indent=1)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(render.markdown(meta, out["records"]))
    render.plot(meta, out["records"], os.path.join(args.out, "plot.png"))
    print(f"wrote {args.out}/report.md, plot.png, results.json in {out['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
