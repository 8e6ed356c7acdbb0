"""Ahead-of-time compile check of the kernel configurations the launcher can pick, no GPU needed.

    python -m bench.compile_check [--level quick|full] [--arch 80 90] [--jobs N]

Each workload (estimator x direction x hard/soft x K class x dtype) is run through the launcher of
this checkout, planned for each architecture, with the launches recorded
(``bench.kernel_compile``); every distinct kernel configuration is compiled once per architecture
with the JIT's runtime specialization (16-byte
aligned pointers, divisible integers, unit strides folded) and ptxas' ``-v`` report is read:
registers, stack frame, spill stores and loads (and cuobjdump's LOCAL). Any spill, LOCAL byte or
stack frame fails the configuration (local memory traffic on the hot path), as does a compile
error. Prints a table and the run time; exits 1 if any configuration fails.

``--level quick`` (the test suite) covers every estimator, direction and hard/soft variant, and
the hard forward without y (``write_y=False``), at K = 2 (the several-rows block of BLOCK = 2),
9 and 64 (several-rows blocks of the grouped noise), 2048 and 4096 (the largest single blocks of
the backward and forward kinds), 8192 and 32768 (tiled) in fp32, and 2, 128 and 32768 in bf16, on
sm_90, and the two-pass ReDGE / ReDGE-Max backward at n_steps 2, 8, 9, 12 and 13 (its unrolled
lengths' edges, ``_twopass_workloads``), the tiled diffusion forward at the first n_steps of each
trajectory stride (``_stride_workloads``) and the small-K ReDGE / ReDGE-Max backward at the
longest chain it keeps in registers (``_rows_reg_workloads``); ``full`` adds K from 2 to 262144
(powers of two and odd sizes), fp16, two row counts and every n_steps of the two-pass and
register backwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from bench.kernel_compile import (HARD_ONLY, METHODS, Workload, capture, compile_launch,
                                  in_compiling_process, interpreting)


def workloads(level: str = "quick") -> list[Workload]:
    """Workloads whose launches cover the launcher's configurations at ``level``, each once."""
    if level == "quick":
        shapes = [(4096, k, "fp32") for k in (2, 9, 64, 2048, 4096, 8192, 32768)] + \
            [(4096, 2, "bf16"), (4096, 128, "bf16"), (4096, 32768, "bf16")]
    else:
        ks = [2 ** e for e in range(1, 19)] + [3, 9, 100, 1000, 10000, 50000]
        shapes = [(r, k, dt) for r in (8, 4096) for k in ks for dt in ("fp32", "bf16", "fp16")]
    out = []
    for rows, k, dtype in shapes:
        for method in METHODS:
            for hard in (True, False):
                if not hard and method in HARD_ONLY:
                    continue
                for d in ("fwd", "bwd"):
                    if d == "bwd" and not hard:
                        continue  # the backward does not depend on hard (straight-through)
                    out.append(Workload(method, d, rows, k, 5, dtype, hard))
            # the forward without y (WRITE_Y off): the hard sample's index only, as the fused
            # sample-and-embed runs it; soft samples always write y
            out.append(Workload(method, "fwd", rows, k, 5, dtype, True, write_y=False))
    if level == "quick":
        out += [w for dtype in ("fp32", "bf16") for w in _split_workloads(8, 262144, dtype)]
    out += _twopass_workloads(level)
    out += _stride_workloads(level)
    out += _rows_reg_workloads(level)
    return list({w.label(): w for w in out}.values())  # the stride n include 5


def _rows_reg_workloads(level: str) -> list[Workload]:
    """The several-rows backward of ReDGE / ReDGE-Max is compiled per n_steps up to
    ``ROWS_BWD_REG_MAX_STEPS`` (``REG_STEPS``: the chain unrolled, p_k in registers): the
    longest chain, which holds the most registers (n = 5 is in the shapes above; ``full``: every
    n) at K = 9 (BLOCK 16) and 64 (the largest block), fp32 and bf16."""
    from redge_kernels.triton._launch import ROWS_BWD_REG_MAX_STEPS
    top = ROWS_BWD_REG_MAX_STEPS
    ns = (top,) if level == "quick" else range(2, top + 1)
    return [Workload(m, "bwd", 4096, k, n, dt, True) for m in ("redge", "redge_max")
            for k in (9, 64) for n in ns if n != 5 for dt in ("fp32", "bf16")]


def _stride_workloads(level: str) -> list[Workload]:
    """The tiled ReDGE / ReDGE-Max forward keeps every STRIDE-th x_k from the chain lengths of
    ``TRAJECTORY_STRIDES`` and ``RESIDENT_TRAJECTORY_STRIDES``: each stride at its first n, hard,
    soft and without y, fp32 and bf16 at K = 32768 (``full``: fp16 too, at tiled K's with and
    without a tail)."""
    from redge_kernels.triton._launch import RESIDENT_TRAJECTORY_STRIDES, TRAJECTORY_STRIDES
    ks = (32768,) if level == "quick" else (8192, 50000, 131072)
    dtypes = ("fp32", "bf16") if level == "quick" else ("fp32", "bf16", "fp16")
    out = []
    for n in sorted({n for n, _ in TRAJECTORY_STRIDES + RESIDENT_TRAJECTORY_STRIDES}):
        for k in ks:
            for dt in dtypes:
                out += [Workload("redge", "fwd", 4096, k, n, dt, hard) for hard in (True, False)]
                out.append(Workload("redge_max", "fwd", 4096, k, n, dt, True))
                out.append(Workload("redge", "fwd", 4096, k, n, dt, True, write_y=False))
    return out


def _twopass_workloads(level: str) -> list[Workload]:
    """The tiled diffusion backward is compiled per n_steps up to ``twopass_max_steps``
    (``_diffusion_twopass``) and takes the persistent tiled backward above: each block
    configuration's smallest and largest n and the first n past them (``full``: every n), one
    program per row (fp32, bf16) and split into chunks (8 x 262144, fp32)."""
    from redge_kernels.triton._launch import (TWOPASS_CONFIGS, TWOPASS_COV_CONFIGS,
                                              twopass_max_steps)
    out = []
    for methods, configs in ((("redge", "redge_max"), TWOPASS_CONFIGS),
                             (("redge_cov",), TWOPASS_COV_CONFIGS)):
        top = twopass_max_steps(methods == ("redge_cov",))
        if level == "quick":
            ns = sorted({2, top + 1} | {t for t, _, _ in configs} | {t + 1 for t, _, _ in configs})
        else:
            ns = list(range(2, top + 2))
        out += [Workload(m, "bwd", 4096, 8192, n, dt, True) for m in methods
                for n in ns if n != 5 for dt in ("fp32", "bf16")]
        out += [Workload(m, "bwd", 8, 262144, n, "fp32", True) for m in methods
                for n in ns if n != 5 and n <= top]
    return out


#: The one-pass estimators, whose few long rows the launcher splits into vocabulary chunks.
ONEPASS = ("st", "gumbel", "reinmax")
#: The diffusion estimators, whose forward and backward the launcher splits the same way.
DIFFUSION = ("redge", "redge_cov", "redge_max")


def _split_workloads(rows: int, k: int, dtype: str) -> list[Workload]:
    """Every variant of the one-pass estimators at ``rows x k``: hard and soft forwards, the
    forward without y, the backward; the diffusion estimators' likewise."""
    out = []
    for method in DIFFUSION:
        for hard in (True, False) if method not in HARD_ONLY else (True,):
            out.append(Workload(method, "fwd", rows, k, 5, dtype, hard))
        out.append(Workload(method, "fwd", rows, k, 5, dtype, True, write_y=False))
        out.append(Workload(method, "bwd", rows, k, 5, dtype, True))
    for method in ONEPASS:
        for hard in (True, False) if method not in HARD_ONLY else (True,):
            out.append(Workload(method, "fwd", rows, k, 5, dtype, hard))
        out.append(Workload(method, "fwd", rows, k, 5, dtype, True, write_y=False))
        out.append(Workload(method, "bwd", rows, k, 5, dtype, True))
    return out


def _configs(w: Workload, arch: int) -> list[dict]:
    """The distinct launches of ``w`` on ``sm_<arch>``: ``{"key", "launch"}``."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature
    out = []
    backend = make_backend(GPUTarget("cuda", 90, 32))
    for launch in capture(w, arch):
        fn = launch.fn
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        _, spec, options = binder(*launch.args, **launch.kwargs)
        key = json.dumps([launch.name, [str(s) for s in spec], sorted(map(str, options.items()))])
        out.append({"key": key, "launch": launch})
    return out


def _compile_many(items: list, archs) -> dict:
    """``{(key, arch): result}`` for every distinct configuration (runs uninterpreted)."""
    seen, results = {}, {}
    for arch in archs:  # the launcher's choices may depend on the architecture
        for w in items:
            for c in _configs(w, arch):
                seen.setdefault((c["key"], arch), c["launch"])
    for (key, arch), launch in seen.items():
        try:
            ck = compile_launch(launch, arch)
            res = {k: getattr(ck, k) for k in ("name", "regs", "stack", "spill_stores",
                                               "spill_loads", "local", "num_warps")}
            res["constexprs"] = ck.constexprs
            res["error"] = ""
        except Exception as e:  # reported in the table, fails the configuration
            res = {"name": launch.name, "error": f"{type(e).__name__}: {e}"[:300]}
        res["arch"] = arch
        results[(key, arch)] = res
    return results


def _check_workloads(items: list, archs) -> list[tuple]:
    results = _compile_many(items, archs)
    out = []
    for w in items:
        rows = [results[(c["key"], arch)] for arch in archs for c in _configs(w, arch)]
        out.append((w, rows))
    return out


def check(items: list[Workload], archs=(90,), jobs: int = 1) -> list[tuple]:
    """``[(workload, [result per launch and arch])]``; each result has ``regs``, ``stack``,
    ``spill_stores``, ``spill_loads``, ``local``, ``error``. Compiled in ``jobs`` processes
    without the interpreter, each distinct configuration once per process."""
    if not interpreting() and jobs <= 1:
        return _check_workloads(items, archs)
    chunks = [items[i::max(1, jobs)] for i in range(max(1, jobs))]
    parts = in_compiling_process(_check_workloads, [(c, tuple(archs)) for c in chunks if c],
                                 jobs)
    by_label = {w.label(): (w, r) for part in parts for w, r in part}
    return [by_label[w.label()] for w in items]


def failing(result: dict) -> str:
    """Why a compiled configuration fails ("" when it passes): a compile error, any spill store or
    load, LOCAL bytes, or a stack frame."""
    if result.get("error"):
        return "error: " + result["error"]
    if result["stack"] or result["spill_stores"] or result["spill_loads"] or result["local"]:
        return (f"stack {result['stack']} B, spill stores {result['spill_stores']} B, "
                f"loads {result['spill_loads']} B, LOCAL {result['local']} B")
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="quick", choices=["quick", "full"])
    ap.add_argument("--arch", type=int, nargs="+", default=[90])
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.time()
    items = workloads(args.level)
    header = f"{'workload':44s} {'kernel':24s} {'arch':>5s} {'BLOCK':>6s} {'warps':>5s} " \
             f"{'regs':>5s} {'stack':>6s} {'spill':>6s}"
    print(header)
    print("-" * len(header))
    failed = 0
    for w, rows in check(items, tuple(args.arch), args.jobs):
        for r in rows:
            why = failing(r)
            failed += bool(why)
            blk = r.get("constexprs", {}).get("BLOCK", "-")
            print(f"{w.label():44s} {r['name']:24s} {'sm_' + str(r['arch']):>5s} {blk!s:>6s} "
                  f"{r.get('num_warps', 0):5d} "
                  f"{r.get('regs', -1):5d} {r.get('stack', -1):6d} "
                  f"{r.get('spill_stores', -1):6d}" + (f"  FAIL {why}" if why else ""))
    print(f"{len(items)} workloads, {failed} failing launches (spill, stack or error), "
          f"{time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
