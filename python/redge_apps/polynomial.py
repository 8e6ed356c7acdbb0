"""Polynomial programming (paper 4.1 and its linear extension, App. D.3).

theta in R^{L x 2} (L = 128), zero init, Adam; each step draws ``batch`` hard samples
y ~ sampler(theta) and minimises the mean over samples of

* ``poly``:   f(y) = (1/L) sum_l |y_{l,1} - c|^p                       (c = 0.45)
* ``linear``: f(y) = (1/L) sum_l c^p y_{l,0} + (1 - c)^p y_{l,1}       (equal to ``poly`` on one-hots)

Both extensions define the same discrete problem; its optimum puts all mass on y_{l,0} = 1, with
value c^p. Reported: the loss on the sampler's own samples and the exact expected loss
(1/L) sum_l [pi_{l,1} (1-c)^p + pi_{l,0} c^p], which exposes samplers whose forward samples are
biased (ReDGE's deterministic DDIM steps are). Run: ``python python/polynomial.py [--quick]``.
"""

from __future__ import annotations

import torch

from . import common as C

EXP = "polynomial"
#: The authors' polynomial-programming settings (EXPERIMENTS.md).
DEFAULTS = {"redge": {"n_steps": 3, "t_1": 0.1}, "redge_cov": {"n_steps": 5, "t_1": 0.2},
            "redge_max": {"n_steps": 5, "t_1": 0.8}, "gumbel": {"tau": 0.02},
            "reinmax": {"tau": 1.0}}
C_TARGET = 0.45


def exact_loss(theta: torch.Tensor, p: float) -> float:
    """(1/L) sum_l [pi_l1 (1-c)^p + pi_l0 c^p] for pi = softmax(theta)."""
    pi = torch.softmax(theta.detach().double(), -1)
    return float((pi[:, 1] * (1 - C_TARGET) ** p + pi[:, 0] * C_TARGET ** p).mean())


def sample_loss(y: torch.Tensor, p: float, ext: str) -> torch.Tensor:
    """Mean over the batch of f(y); y: [B, L, 2] hard samples."""
    if ext == "poly":
        return (y[..., 1] - C_TARGET).abs().pow(p).mean()
    return (C_TARGET ** p * y[..., 0] + (1 - C_TARGET) ** p * y[..., 1]).mean()


def run_one(cfg, *, p: float, ext: str, seed: int, steps: int, lr: float, length: int,
            batch: int, backend: str, device: str, progress: bool = True):
    """One optimisation run; returns (metrics dict, sample-loss curve, exact-loss curve)."""
    torch.manual_seed(seed)
    gen = C.make_generator(seed, device)
    theta = torch.zeros(length, 2, device=device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    timer = C.StepTimer()
    s_curve, e_curve = [], []
    for _ in C.progress(range(steps), desc=f"{EXP} p={p} {ext} {cfg.name} s{seed}",
                        disable=not progress):
        with timer:
            y = cfg(theta.expand(batch, length, 2), generator=gen, backend=backend)
            loss = sample_loss(y, p, ext)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        s_curve.append(float(loss.detach()) if ext == "poly" else
                       float(sample_loss(y.detach(), p, "poly")))
        e_curve.append(exact_loss(theta, p))
    tail = max(1, min(100, steps // 10))
    metrics = {"exact_loss": e_curve[-1], "sample_loss": sum(s_curve[-tail:]) / tail,
               "gap": e_curve[-1] - C_TARGET ** p,
               "pi1_mean": float(torch.softmax(theta.detach(), -1)[:, 1].mean()),
               "ms_per_step": timer.ms_per_step}
    return metrics, s_curve, e_curve


def main(argv=None):
    ap = C.base_parser(__doc__.splitlines()[0], steps=1000, seeds=3, lr=0.05)
    ap.add_argument("--powers", default="1.5,2,3", help="exponents p (default 1.5,2,3)")
    ap.add_argument("--extensions", default="poly,linear", help="poly and/or linear")
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.powers, args.batch = 8, "2", "2", 8
        args.tune_steps = args.tune_steps or 4
    out = C.setup(args, EXP)
    powers = [float(x) for x in args.powers.split(",")]
    exts = [e for e in args.extensions.split(",") if e]
    seeds = C.parse_seeds(args.seeds)
    kw = dict(steps=args.steps, lr=args.lr, length=args.length, batch=args.batch,
              backend=args.backend, device=args.device, progress=not args.no_progress)
    configs = C.parse_samplers(args.samplers, DEFAULTS)

    def objective(cfg):  # tuning: first (p, extension), held-out seed, exact expected loss
        kw_t = {**kw, "steps": args.tune_steps or args.steps}
        return run_one(cfg, p=powers[0], ext=exts[0], seed=1000, **kw_t)[0]["exact_loss"]

    configs = C.select_configs(args, configs, objective, out, EXP)

    rows, metrics = [], ["exact_loss", "gap", "sample_loss", "ms_per_step"]
    md = C.header_lines(args, EXP, args.device, [
        f"L={args.length}, batch {args.batch} samples/step, c={C_TARGET}, p in {powers}, "
        f"extensions {exts}",
        "exact_loss: exact expected loss at the final theta; gap: exact_loss - c^p (optimum 0); "
        "sample_loss: loss on the sampler's own samples, mean of the last steps",
        "settings: " + ", ".join(c.label for c in configs)])
    for ext in exts:
        for p in powers:
            curves_e, curves_s = {}, {}
            for cfg in configs:
                for seed in seeds:
                    m, s_curve, e_curve = run_one(cfg, p=p, ext=ext, seed=seed, **kw)
                    rows.append({"extension": ext, "p": p, "sampler": cfg.name,
                                 "setting": cfg.label, "seed": seed, **m})
                    curves_e.setdefault(C.PRETTY[cfg.name], []).append(e_curve)
                    curves_s.setdefault(C.PRETTY[cfg.name], []).append(s_curve)
            tag = f"{ext}_p{p:g}"
            gaps = {k: [[max(e - C_TARGET ** p, 1e-12) for e in r] for r in v]
                    for k, v in curves_e.items()}
            C.plot_curves(out / f"curves_{tag}.png", gaps, logy=True,
                          title=f"polynomial, {ext} extension, p={p:g}: exact expected loss minus optimum",
                          ylabel="E[f] - c^p (log)")
            C.plot_curves(out / f"sample_loss_{tag}.png", curves_s, smooth=10,
                          title=f"polynomial, {ext} extension, p={p:g}: loss on own samples",
                          ylabel="sample loss", hline=C_TARGET ** p)
            sub = [r for r in rows if r["extension"] == ext and r["p"] == p]
            summ = C.summarise(sub, ["sampler", "setting"], metrics)
            md += [f"## {ext} extension, p = {p:g} (optimum c^p = {C_TARGET ** p:.4f})", "",
                   C.markdown_table(summ, ["sampler", "setting"], metrics,
                                    digits={"exact_loss": 4, "gap": 4, "sample_loss": 4,
                                            "ms_per_step": 1}), "",
                   f"![](curves_{tag}.png)", ""]
    C.write_csv(out / "runs.csv", rows)
    C.write_csv(out / "summary.csv", C.summarise(rows, ["extension", "p", "sampler", "setting"],
                                                 metrics))
    C.write_text(out / "results.md", "\n".join(md))
    return rows


if __name__ == "__main__":
    main()
