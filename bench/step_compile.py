"""Compile, without a GPU, the Triton kernels of the step ops (``redge_kernels/triton/_steps.py``)
for sm_90 with the JIT's runtime specialization, as ``bench.kernel_compile`` does for the fused
kernels, and report registers, stack frame and spills per distinct specialization.

    python -m bench.step_compile [--rows 64] [--k 50000]

Every op of every method is launched on meta tensors of ``[rows, k]`` (a shard starting at a
multiple of 4, the grouped noise, and one starting at 13, the per-element noise); nothing runs.
"""

from __future__ import annotations

import argparse
import sys

from bench import kernel_compile as kc

METHODS = ("st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max")


def _calls(method: str, rows: int, k: int, c0: int) -> None:
    """Every step op of ``method``'s forward and backward on meta tensors."""
    import torch
    from redge_kernels._constants import METHOD_IDS
    from redge_kernels.triton import _steps as ts
    mid = METHOD_IDS[method]
    chain = method.startswith("redge")

    def meta(*shape, dtype=torch.float32):
        return torch.empty(shape, dtype=dtype, device="meta")
    phi, x, coefs, stats = meta(rows, k), meta(rows, k), meta(5, 5), meta(rows, 5, 2)
    index, kinds = meta(rows, dtype=torch.int64), meta(rows, 2, dtype=torch.bool)
    seed = (7, c0, 0)
    ts.step_init(phi, stats, mid, *seed)
    ts.step_stats(phi, x, coefs, stats, mid, 0)
    if chain:
        ts.step_stats(phi, x, coefs, stats, mid, 2)
        ts.step_next(phi, x, coefs, stats, mid, 2)
    ts.step_sample(phi, x, coefs, stats, mid, 0.5, *seed)
    for hard in (True, False):
        ts.step_output(phi, x, coefs, stats, index, kinds, mid, hard, 0.5, *seed)
    steps = (1, 2) + ((0,) if method == "redge_cov" else ()) if chain else (0,)
    for step in steps:
        carried = None if step == 1 else phi
        dots = ts.step_dot(phi, phi, x, coefs, stats, index, carried, carried, mid, step, 0.5,
                           *seed)
        ts.step_grad(phi, phi, x, coefs, stats, index, dots, carried, carried, carried, mid, step,
                     0.5, *seed)


def compile_all(methods=METHODS, rows: int = 64, k: int = 50000, arch: int = 90) -> list[dict]:
    """One row per distinct compiled specialization: name, constexprs, regs, stack, spills
    (``error`` where it does not compile). Must run with ``TRITON_INTERPRET`` off."""
    launches = []
    with kc._recording(launches):
        for method in methods:
            for c0 in (0, 13):
                _calls(method, rows, k, c0)
    rows_out, seen = [], set()
    for launch in launches:
        try:
            c = kc.compile_launch(launch, arch)
        except Exception as exc:  # noqa: BLE001 (reported)
            rows_out.append({"name": launch.name, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        key = (c.name, tuple(sorted(c.constexprs.items())), c.num_warps)
        if key in seen:
            continue
        seen.add(key)
        rows_out.append({"name": c.name, "constexprs": c.constexprs, "warps": c.num_warps,
                         "regs": c.regs, "stack": c.stack, "spill_stores": c.spill_stores,
                         "spill_loads": c.spill_loads, "error": ""})
    return rows_out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--k", type=int, default=50000)
    args = parser.parse_args(argv)
    (rows,) = kc.in_compiling_process(compile_all, [(METHODS, args.rows, args.k)])
    bad = 0
    for r in rows:
        if r["error"]:
            bad += 1
            print(f"ERROR {r['name']}: {r['error']}")
        else:
            print(f"{r['name']:16s} warps {r['warps']:2d} regs {r['regs']:3d} "
                  f"stack {r['stack']:3d} spills {r['spill_stores']}/{r['spill_loads']} "
                  f"{r['constexprs']}")
    print(f"{len(rows)} specializations, {bad} errors")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
