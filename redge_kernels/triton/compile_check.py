"""Ahead-of-time compile check of every kernel configuration, no GPU needed.

    python -m redge_kernels.triton.compile_check [--arch 80 90] [--quick] [--kinds ...]
        [--paths single tiled] [--jobs N]

Compiles each (kernel family x fwd/bwd x variant x path x BLOCK / num_warps) the launchers can
pick for sm_80 and sm_90 with ``triton.compile(ASTSource, target=GPUTarget("cuda", arch, 32))``,
reads registers and LOCAL (spill) bytes from the cubin with the ``cuobjdump`` shipped in the
triton wheel, prints a table and exits 1 if any configuration spills (LOCAL > 0) or fails.
``--quick`` checks a few representative configurations (used by the test suite).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import subprocess
import sys
import tempfile

_KINDS = ("diffusion_fwd", "diffusion_bwd", "onepass_fwd", "onepass_bwd")


def _cuobjdump() -> str:
    import triton
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(path):
        raise FileNotFoundError(f"cuobjdump not found at {path}")
    return path


def _variants(kind: str):
    """(label, constexpr flags) of every variant a launcher can request for ``kind``."""
    if kind == "diffusion_fwd":
        return [("redge/redge_max", {"COV": False, "HARD": True}),
                ("redge soft", {"COV": False, "HARD": False}),
                ("redge_cov", {"COV": True, "HARD": True}),
                ("redge_cov soft", {"COV": True, "HARD": False})]
    if kind == "diffusion_bwd":
        return [("redge", {"COV": False, "MAX": False}),
                ("redge_cov", {"COV": True, "MAX": False}),
                ("redge_max", {"COV": False, "MAX": True})]
    if kind == "onepass_fwd":
        return [(f"{name}{' soft' if not hard else ''}", {"METHOD": m, "HARD": hard})
                for m, name in enumerate(("st", "gumbel", "reinmax"))
                for hard in ((True, False) if m != 2 else (True,))]
    return [(name, {"METHOD": m}) for m, name in enumerate(("st", "gumbel", "reinmax"))]


def _paths(kind: str, quick: bool):
    """(single, BLOCK, num_warps) configurations the launcher can pick for ``kind``."""
    from ._launch import SINGLE_MAX, config
    if quick:
        ks = [2, SINGLE_MAX[kind]]
    else:
        ks = [2 ** e for e in range(5, SINGLE_MAX[kind].bit_length())]
    out = [config(kind, k) for k in ks]
    out.append(config(kind, SINGLE_MAX[kind] * 2))
    return sorted(set(out), key=lambda c: (not c[0], c[1]))


def _signature(kind: str, dtype: str):
    p = f"*{dtype}"
    if kind == "diffusion_fwd":
        names = [("phi_ptr", p), ("seed_ptr", "*i64"), ("coefs_ptr", "*fp32"), ("y_ptr", p),
                 ("stats_ptr", "*fp32"), ("index_ptr", "*i64"), ("K", "i32"), ("n", "i32"),
                 ("row_offset", "i64"), ("phi_stride_r", "i32"), ("phi_stride_c", "constexpr")]
    elif kind == "diffusion_bwd":
        names = [("gy_ptr", p), ("phi_ptr", p), ("seed_ptr", "*i64"), ("coefs_ptr", "*fp32"),
                 ("stats_ptr", "*fp32"), ("index_ptr", "*i64"), ("gphi_ptr", p), ("K", "i32"),
                 ("n", "i32"), ("row_offset", "i64"), ("phi_stride_r", "i32"),
                 ("phi_stride_c", "constexpr"), ("gy_stride_r", "i32"),
                 ("gy_stride_c", "constexpr")]
    elif kind == "onepass_fwd":
        names = [("phi_ptr", p), ("seed_ptr", "*i64"), ("y_ptr", p), ("stats_ptr", "*fp32"),
                 ("index_ptr", "*i64"), ("tau", "fp32"), ("K", "i32"), ("n", "i32"),
                 ("row_offset", "i64"), ("phi_stride_r", "i32"), ("phi_stride_c", "constexpr")]
    else:
        names = [("gy_ptr", p), ("phi_ptr", p), ("seed_ptr", "*i64"), ("stats_ptr", "*fp32"),
                 ("index_ptr", "*i64"), ("gphi_ptr", p), ("tau", "fp32"), ("K", "i32"),
                 ("n", "i32"), ("row_offset", "i64"), ("phi_stride_r", "i32"),
                 ("phi_stride_c", "constexpr"), ("gy_stride_r", "i32"),
                 ("gy_stride_c", "constexpr")]
    return names


def _kernel(kind: str):
    from . import _diffusion, _onepass
    return {"diffusion_fwd": _diffusion._diffusion_fwd_kernel,
            "diffusion_bwd": _diffusion._diffusion_bwd_kernel,
            "onepass_fwd": _onepass._onepass_fwd_kernel,
            "onepass_bwd": _onepass._onepass_bwd_kernel}[kind]


def _compile(kind: str, flags: dict, single: bool, block: int, warps: int, arch: int,
             dtype: str = "fp32") -> dict:
    """Compile one configuration in this process (kernels must not be interpreted)."""
    import triton
    from triton.backends.compiler import GPUTarget
    names = _signature(kind, dtype)
    constexprs = dict(flags, SINGLE=single, BLOCK=block, STEPS_P2=8)
    if kind.endswith("_fwd"):
        constexprs.setdefault("WRITE_Y", True)  # its default (False only drops stores)
    for name, ty in names:
        if ty == "constexpr":
            constexprs[name] = 1
    signature = {name: ty for name, ty in names}
    for name in constexprs:
        signature.setdefault(name, "constexpr")
    try:
        src = triton.compiler.ASTSource(fn=_kernel(kind), signature=signature,
                                        constexprs=constexprs)
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                  options={"num_warps": warps})
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            out = subprocess.run([_cuobjdump(), "--dump-resource-usage", f.name],
                                 capture_output=True, text=True, check=True).stdout
        regs = int(re.search(r"REG:(\d+)", out).group(1))
        local = int(re.search(r"LOCAL:(\d+)", out).group(1))
        return {"regs": regs, "local": local, "error": ""}
    except Exception as e:  # reported in the table, makes the check fail
        return {"regs": -1, "local": -1, "error": f"{type(e).__name__}: {e}"[:200]}


def configurations(quick: bool = False, archs=(80, 90), kinds=_KINDS, paths=("single", "tiled")):
    """Every (kind, variant label, flags, single, BLOCK, warps, arch) to compile."""
    out = []
    for kind in kinds:
        variants = _variants(kind)
        if quick:
            variants = variants[-1:]
        for label, flags in variants:
            for single, block, warps in _paths(kind, quick):
                if ("single" if single else "tiled") not in paths:
                    continue
                for arch in archs:
                    out.append((kind, label, flags, single, block, warps, arch))
    return out


def _run(cfg):
    kind, label, flags, single, block, warps, arch = cfg
    return cfg, _compile(kind, flags, single, block, warps, arch)


def run_configs(cfgs, jobs: int = 1):
    """Yield ``(cfg, result)`` compiling in fresh ``spawn`` workers with ``TRITON_INTERPRET=0``:
    under the interpreter (CPU CI) ``@triton.jit`` gives interpreted functions that cannot be
    compiled, so the kernels are imported anew in processes that never interpret."""
    import multiprocessing as mp
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "0"
    try:
        pool = cf.ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=mp.get_context("spawn"))
        futures = [pool.submit(_run, cfg) for cfg in cfgs]  # spawns the workers now
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    with pool:
        for fut in futures:
            yield fut.result()


def compile_one(kind: str, flags: dict, single: bool, block: int, warps: int, arch: int) -> dict:
    """Compile one configuration; returns ``{"regs", "local", "error"}`` (LOCAL = spill bytes)."""
    cfg = (kind, "", flags, single, block, warps, arch)
    return next(iter(run_configs([cfg])))[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    ap.add_argument("--quick", action="store_true", help="a few representative configurations")
    ap.add_argument("--kinds", nargs="+", default=list(_KINDS), choices=_KINDS)
    ap.add_argument("--paths", nargs="+", default=["single", "tiled"], choices=["single", "tiled"])
    ap.add_argument("--jobs", type=int, default=1, help="parallel compilations")
    args = ap.parse_args(argv)
    cfgs = configurations(args.quick, tuple(args.arch), tuple(args.kinds),
                          tuple(args.paths))
    header = (f"{'kernel':14s} {'variant':16s} {'path':6s} {'BLOCK':>6s} {'warps':>5s} "
              f"{'arch':>5s} {'regs':>5s} {'spill':>6s}")
    print(header)
    print("-" * len(header))
    failed = 0
    for cfg, res in run_configs(cfgs, args.jobs):
        kind, label, flags, single, block, warps, arch = cfg
        bad = res["error"] or res["local"] > 0
        failed += bool(bad)
        print(f"{kind:14s} {label:16s} {'single' if single else 'tiled':6s} {block:6d} "
              f"{warps:5d} sm_{arch:<3d} {res['regs']:5d} {res['local']:6d}"
              + (f"  FAIL {res['error']}" if res["error"] else ("  SPILL" if bad else "")),
              flush=True)
    print(f"{len(cfgs)} configurations, {failed} failing (spill or error)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
