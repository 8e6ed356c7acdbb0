"""Measured bandwidth of the Triton kernels, and the comparison with the authors' eager `redge`.

    python bench/triton_bandwidth.py [--rows R] [--k K ...] [--methods ...] [--out results.json]

Needs a CUDA device (exits 0 with a message otherwise). For every (method, K) it times the raw
forward and backward launchers with ``triton.testing.do_bench`` (median and 20/80 % quantiles) and
reports GB/s from the explicit byte counts of ``triton_traffic.py`` (the docs/SPEC.md lower bound, i.e.
useful bytes, and the kernels' own DRAM model), as a fraction of the device's peak HBM bandwidth
(``--peak-gbs``, else a table by device name, else a measured device-to-device copy) and of the
measured copy bandwidth.

Then the headline comparison (the GPU targets, set for an H100): ReDGE forward + backward at 4096 x 32768,
n_steps = 5, fp32, against the authors' eager ``redge.redge`` (PyPI ``redge`` 0.1.0): time
(target >= 10x faster) and extra memory = peak allocated during forward + backward minus what was
allocated before (target >= 10x less). Results carry the device name and library versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

# Spec-sheet HBM bandwidth (GB/s) by device name fragment.
PEAK_GBS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0,
            "H100": 3350.0, "A100-SXM4-80GB": 2039.0, "A100 80GB": 1935.0, "A100": 1555.0,
            "L40S": 864.0, "RTX 4090": 1008.0}


def _peak_gbs(name: str, override: float | None) -> tuple[float, str]:
    if override:
        return override, "--peak-gbs"
    for frag, gbs in PEAK_GBS.items():
        if frag in name:
            return gbs, f"spec sheet ({frag})"
    return 0.0, "unknown"


def _copy_gbs(do_bench) -> float:
    x = torch.empty(2**28, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def _bench_kernels(args, do_bench, peak, copy_gbs):
    import triton_traffic
    from redge_kernels import triton as tk
    from redge_kernels._constants import METHOD_IDS
    from redge_kernels.schedule import Schedule, linear_schedule

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    rows_out = []
    print(f"{'method':10s} {'K':>7s} {'rows':>6s} {'path':>6s} {'fwd ms':>8s} {'fwd GB/s':>9s} "
          f"{'%peak':>6s} {'bwd ms':>8s} {'bwd GB/s':>9s} {'%peak':>6s}   (GB/s of useful bytes)")
    for k in args.k:
        rows = args.rows or max(1, min(65536, 2**27 // k))
        phi = torch.randn(rows, k, device="cuda", dtype=dtype)
        g = torch.randn_like(phi)
        seed = torch.tensor(1, dtype=torch.int64, device="cuda")
        for method in args.methods:
            diffusion = method.startswith("redge")
            sched = linear_schedule(args.n_steps, 0.5) if diffusion else Schedule([1.0, 0.0],
                                                                                  [0.0, 1.0])
            coefs = sched.table("cuda")
            mid = METHOD_IDS[method]
            blk = args.block
            y, stats, index = tk.fwd(phi, seed, coefs, mid, True, 1.0, block=blk)
            q = (0.5, 0.2, 0.8)
            f_med, f_lo, f_hi = do_bench(
                lambda: tk.fwd(phi, seed, coefs, mid, True, 1.0, block=blk), quantiles=q)
            b_med, b_lo, b_hi = do_bench(
                lambda: tk.bwd(g, phi, seed, coefs, stats, index, mid, True, 1.0, block=blk),
                quantiles=q)
            t = triton_traffic.traffic(method, rows, k, args.n_steps, True,
                                       phi.element_size(), block=blk)
            f_gbs = t["fwd_min"] / (f_med * 1e-3) / 1e9
            b_gbs = t["bwd_min"] / (b_med * 1e-3) / 1e9
            rec = dict(method=method, k=k, rows=rows, dtype=args.dtype, path=t["path_fwd"],
                       block=blk,
                       fwd_ms=f_med, fwd_ms_q20=f_lo, fwd_ms_q80=f_hi, bwd_ms=b_med,
                       bwd_ms_q20=b_lo, bwd_ms_q80=b_hi, fwd_gbs=f_gbs, bwd_gbs=b_gbs,
                       fwd_model_gbs=t["fwd_model"] / (f_med * 1e-3) / 1e9,
                       bwd_model_gbs=t["bwd_model"] / (b_med * 1e-3) / 1e9,
                       fwd_frac_peak=f_gbs / peak if peak else None,
                       bwd_frac_peak=b_gbs / peak if peak else None,
                       fwd_frac_copy=f_gbs / copy_gbs, bwd_frac_copy=b_gbs / copy_gbs)
            rows_out.append(rec)
            pk = (lambda v: f"{100 * v:6.1f}") if peak else (lambda v: "   n/a")
            print(f"{method:10s} {k:7d} {rows:6d} {t['path_fwd']:>6s} {f_med:8.3f} {f_gbs:9.1f} "
                  f"{pk(f_gbs / peak if peak else 0)} {b_med:8.3f} {b_gbs:9.1f} "
                  f"{pk(b_gbs / peak if peak else 0)}", flush=True)
        del phi, g
    return rows_out


def _fwd_bwd_cost(fn, logits, g, do_bench):
    """(median ms, extra bytes) of ``fn(x).backward(g)`` for a leaf ``x`` copied from ``logits``."""
    x = logits.clone().requires_grad_(True)

    def step():
        x.grad = None
        fn(x).backward(g)

    step()
    ms = do_bench(step)
    x.grad = None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    return ms, extra


def _headline(args, do_bench):
    import redge_kernels as rk
    rows, k, n = 4096, 32768, 5
    logits = torch.randn(rows, k, device="cuda")
    g = torch.randn_like(logits)
    out = {"rows": rows, "k": k, "n_steps": n}
    ours_ms, ours_mem = _fwd_bwd_cost(
        lambda x: rk.redge(x, n_steps=n, t_1=0.5, backend="triton"), logits, g, do_bench)
    out.update(triton_ms=ours_ms, triton_extra_bytes=ours_mem)
    try:
        import redge as authors
    except ImportError as e:
        print(f"authors' `redge` package not importable ({e}); headline comparison skipped")
        return out
    eager_ms, eager_mem = _fwd_bwd_cost(lambda x: authors.redge(x, n_steps=n, t_1=0.5),
                                        logits, g, do_bench)
    out.update(eager_ms=eager_ms, eager_extra_bytes=eager_mem, speedup=eager_ms / ours_ms,
               memory_ratio=eager_mem / max(ours_mem, 1))
    print(f"\nReDGE fwd+bwd, {rows} x {k}, n_steps={n}, fp32 (the extra memory excludes the "
          f"logits and g, includes y and grad):")
    print(f"  triton : {ours_ms:8.3f} ms  extra {ours_mem / 2**20:9.1f} MiB")
    print(f"  eager  : {eager_ms:8.3f} ms  extra {eager_mem / 2**20:9.1f} MiB   (authors' redge)")
    print(f"  speedup {out['speedup']:.1f}x (target >= 10), memory {out['memory_ratio']:.1f}x less "
          f"(target >= 10)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=0, help="rows per shape (default: ~2^27 / K)")
    ap.add_argument("--k", type=int, nargs="+", default=[2, 9, 128, 1024, 8192, 32768, 262144])
    ap.add_argument("--methods", nargs="+",
                    default=["st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max"])
    ap.add_argument("--n-steps", type=int, default=5)
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--block", type=int, default=None,
                    help="override the launcher's block (tuning: the path follows K <= block)")
    ap.add_argument("--peak-gbs", type=float, default=None)
    ap.add_argument("--skip-headline", action="store_true")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("triton_bandwidth: no CUDA device; nothing to measure (see bench/triton_traffic.py "
              "for the byte model).")
        return 0
    import triton
    from triton.testing import do_bench
    name = torch.cuda.get_device_name()
    peak, peak_src = _peak_gbs(name, args.peak_gbs)
    copy_gbs = _copy_gbs(do_bench)
    meta = dict(device=name, peak_gbs=peak, peak_source=peak_src, copy_gbs=copy_gbs,
                torch=torch.__version__, triton=triton.__version__,
                python=platform.python_version())
    print(json.dumps(meta))
    results = {"meta": meta, "kernels": _bench_kernels(args, do_bench, peak, copy_gbs)}
    if not args.skip_headline:
        results["headline"] = _headline(args, do_bench)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
