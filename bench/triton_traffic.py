"""Bytes each Triton kernel moves per call: the docs/SPEC.md lower bound and the kernels' own model.

    python bench/triton_traffic.py [--rows R] [--k K ...] [--n-steps N] [--dtype fp32|bf16|fp16]

Lower bound (docs/SPEC.md "Memory and passes"): forward reads phi once and writes y once; backward reads
phi and g once and writes grad_phi once; plus the O(R n) stats and the index.
Model: what the kernels actually read / write from DRAM when nothing is served from L2 between the
passes over a row (an upper bound; on a GPU a row re-read by the next pass often hits L2):

* path (a), single block: exactly the lower bound.
* path (b), tiled, diffusion forward: (redge_cov only) pass 0 for the base softmax, then one pass
  per denoiser (n - 1) read phi; the output pass writes y (hard: write only; soft: re-reads phi).
* path (b), diffusion backward with n_steps <= ``twopass_max_steps`` (12, redge_cov 11): two
  passes (``_diffusion_twopass``: the row sums, then grad_phi) read phi and g; otherwise n - 1
  reduction passes (+1 for redge_cov) and the output pass read phi and g; the output pass writes
  grad_phi.
* path (b), one-pass forward: one pass reads phi; the output pass writes y (soft: re-reads phi).
* path (b), one-pass backward: two passes read phi and g; the second writes grad_phi.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from redge_kernels._constants import DIFFUSION_METHODS  # noqa: E402

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}


def _config(kind, k, block=None):
    # the launcher's rule, without importing triton (keeps this model usable anywhere)
    try:
        from redge_kernels.triton._launch import config
        return config(kind, k, block)
    except ImportError:
        raise SystemExit("triton is needed to know the launcher's block choice")


def _twopass_max_steps(cov: bool) -> int:
    from redge_kernels.triton._launch import twopass_max_steps
    return twopass_max_steps(cov)


def traffic(method: str, rows: int, k: int, n_steps: int = 5, hard: bool = True,
            dtype_bytes: int = 4, block: int | None = None) -> dict:
    """Bytes per call: ``{fwd_min, fwd_model, bwd_min, bwd_model, fwd_passes, bwd_passes, path}``.

    ``n_steps`` only matters for the diffusion methods (baselines keep 2 stats slots).
    """
    diffusion = method in DIFFUSION_METHODS
    n = n_steps if diffusion else 2
    hard = hard or method in ("reinmax", "redge_max")
    row = k * dtype_bytes
    side = rows * (n * 2 * 4 + 8) + 8 + n * 5 * 4  # stats + index + seed + coefs
    fwd_min = rows * 2 * row + side
    bwd_min = rows * 3 * row + side
    kind = "diffusion" if diffusion else "onepass"
    single_f, _, _ = _config(f"{kind}_fwd", k, block)
    single_b, _, _ = _config(f"{kind}_bwd", k, block)
    if single_f:
        fwd_reads, fwd_passes = 1, 1
    elif diffusion:
        base = 1 if method == "redge_cov" else 0  # pass 0: softmax(phi) for the Cov base
        fwd_reads = base + (n - 1) + (0 if hard else 1)
        fwd_passes = base + n
    else:
        fwd_reads = 1 + (0 if hard else 1)
        fwd_passes = 2
    if single_b:
        bwd_reads, bwd_passes = 1, 1
    elif diffusion and n <= _twopass_max_steps(method == "redge_cov"):
        bwd_reads, bwd_passes = 2, 2
    elif diffusion:
        bwd_reads = (n - 1) + (1 if method == "redge_cov" else 0) + 1
        bwd_passes = bwd_reads
    else:
        bwd_reads, bwd_passes = 2, 2
    return {
        "path_fwd": "single" if single_f else "tiled",
        "path_bwd": "single" if single_b else "tiled",
        "fwd_min": fwd_min,
        "fwd_model": rows * (fwd_reads + 1) * row + side,
        "bwd_min": bwd_min,
        "bwd_model": rows * (2 * bwd_reads + 1) * row + side,
        "fwd_passes": fwd_passes,
        "bwd_passes": bwd_passes,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 9, 1024, 8192, 32768, 262144])
    ap.add_argument("--n-steps", type=int, default=5)
    ap.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="fp32")
    args = ap.parse_args(argv)
    methods = ("st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max")
    print(f"rows={args.rows} n_steps={args.n_steps} dtype={args.dtype}; MB = 1e6 bytes")
    print(f"{'method':10s} {'K':>7s} {'path f/b':>13s} {'fwd min':>9s} {'fwd model':>9s} "
          f"{'bwd min':>9s} {'bwd model':>9s} {'passes f/b':>10s}")
    for k in args.k:
        for m in methods:
            t = traffic(m, args.rows, k, args.n_steps, True, DTYPE_BYTES[args.dtype])
            print(f"{m:10s} {k:7d} {t['path_fwd'] + '/' + t['path_bwd']:>13s} "
                  f"{t['fwd_min'] / 1e6:9.1f} {t['fwd_model'] / 1e6:9.1f} "
                  f"{t['bwd_min'] / 1e6:9.1f} {t['bwd_model'] / 1e6:9.1f} "
                  f"{str(t['fwd_passes']) + '/' + str(t['bwd_passes']):>10s}")


if __name__ == "__main__":
    main()
