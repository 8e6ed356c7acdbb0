"""A short demo: optimise a discrete objective with every estimator and print a comparison.

Polynomial programming (paper 4.1, reduced): theta in R^{L x 2}, x_l = y_{l,1} (hard sample),
loss = mean_l |x_l - 0.45|^p. The optimum puts all mass on x_l = 0 (loss 0.45^p); the exact
expected loss of the current logits is reported, so a sampler whose forward samples are biased
cannot hide it.

    python -m redge_kernels.demo [--steps 300] [--backend auto]
"""

from __future__ import annotations

import argparse
import time

import torch

import redge_kernels as rk

CONFIGS = [rk.SamplerConfig("st"), rk.SamplerConfig("gumbel", tau=0.5),
           rk.SamplerConfig("reinmax", tau=1.0), rk.SamplerConfig("redge", n_steps=3, t_1=0.1),
           rk.SamplerConfig("redge_cov", n_steps=5, t_1=0.2),
           rk.SamplerConfig("redge_max", n_steps=5, t_1=0.8)]


def exact_loss(theta: torch.Tensor, p: float) -> float:
    """E_{x ~ Bernoulli(softmax(theta)[:, 1])} mean_l |x_l - 0.45|^p."""
    pi1 = theta.softmax(-1)[:, 1]
    return float((pi1 * 0.55**p + (1 - pi1) * 0.45**p).mean())


def run(cfg: rk.SamplerConfig, steps: int, batch: int, length: int, power: float, backend: str,
        seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    theta = torch.zeros(length, 2, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    t0 = time.perf_counter()
    for _ in range(steps):
        y = cfg(theta.expand(batch, length, 2), generator=gen, backend=backend)
        loss = ((y[..., 1] - 0.45).abs() ** power).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    return {"sampler": cfg.label, "sample_loss": float(loss.detach()), "exact_loss": exact_loss(theta.detach(), power),
            "ms_per_step": 1e3 * elapsed / steps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--power", type=float, default=3.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"redge_kernels {rk.__version__}: polynomial programming, L={args.length}, p={args.power}, "
          f"batch {args.batch}, {args.steps} Adam steps; backends available: {rk.available_backends()}")
    print(f"optimum exact loss = 0.45^p = {0.45 ** args.power:.5f}\n")
    rows = [run(c, args.steps, args.batch, args.length, args.power, args.backend, args.seed) for c in CONFIGS]
    print(f"| {'sampler':<34} | exact loss | sample loss | ms/step |")
    print(f"|{'-' * 36}|-----------:|------------:|--------:|")
    for r in sorted(rows, key=lambda r: r["exact_loss"]):
        print(f"| {r['sampler']:<34} | {r['exact_loss']:10.5f} | {r['sample_loss']:11.5f} | {r['ms_per_step']:7.2f} |")
    return rows


if __name__ == "__main__":
    main()
