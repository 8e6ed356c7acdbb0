"""Variational inference for a Gaussian mixture model (paper 4.2).

Data (per seed): d = 2, K = 20 components, N = 500 points; mu_k ~ N(0, 15^2 I),
z_i ~ Cat(uniform), y_i ~ N(mu_{z_i}, 2^2 I). Variational family: q(z) = prod_i Cat(softmax theta_i)
(theta in R^{N x K}) and point estimates m_hat (K x d); both randomly initialised. Objective
(minimised with Adam; the expectation of the log-likelihood is estimated with one hard sample
z = sampler(theta), the entropy and log(1/K) terms are exact):

    F = sum_i E_q[log q(z_i) - log N(y_i; m_hat_{z_i}, 2^2 I) - log(1/K)] - sum_k log N(m_hat_k; 0, 15^2 I)

The likelihood of a one-hot z_i is written as the paper does ("cluster assignments replaced by
their one-hot encodings"): ``quadratic`` (default) selects the mean as z_i @ m_hat, giving
-log N = |y_i - z_i @ m_hat|^2 / 8 + const, quadratic in z; ``linear`` (--extension linear) uses
sum_k z_ik (-log N(y_i; m_hat_k)), linear in z, for which Straight-Through's gradient of the
likelihood term is exact. Both agree on one-hots (same objective values), not in their gradients.

Reported: NELBO (the sampled F, mean +- std over the last 100 iterations, as in the paper), the
exact F at the end (the likelihood term is linear in z, so E_q is exact), and clustering accuracy
of argmax q against the true labels under the best cluster matching (Hungarian, scipy).
Run: ``python python/gmm.py [--quick]``.
"""

from __future__ import annotations

import math

import torch

from . import common as C

EXP = "gmm"
#: The authors' default sampler settings (EXPERIMENTS.md, "defaults (their configs)").
DEFAULTS = {"redge": {"n_steps": 3, "t_1": 0.5}, "redge_cov": {"n_steps": 5, "t_1": 0.5},
            "redge_max": {"n_steps": 5, "t_1": 0.5}, "gumbel": {"tau": 0.5},
            "reinmax": {"tau": 1.0}}
D, K, N, SIGMA0, SIGMAY = 2, 20, 500, 15.0, 2.0


def make_data(seed: int, n: int = N, k: int = K):
    """(y [n, d], labels [n], mu [k, d]) drawn from the generative model with its own generator."""
    g = C.make_generator(10_000 + seed)
    mu = SIGMA0 * torch.randn(k, D, generator=g, dtype=torch.float64)
    z = torch.randint(0, k, (n,), generator=g)
    y = mu[z] + SIGMAY * torch.randn(n, D, generator=g, dtype=torch.float64)
    return y.float(), z, mu.float()


def log_normal(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(x; mean, sigma^2 I) summed over the last dim (broadcasting)."""
    d = x.shape[-1]
    return -0.5 * ((x - mean) ** 2).sum(-1) / sigma ** 2 - 0.5 * d * math.log(2 * math.pi * sigma ** 2)


def hungarian_accuracy(pred: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Accuracy of ``pred`` under the best one-to-one relabelling of clusters (scipy)."""
    from scipy.optimize import linear_sum_assignment
    conf = torch.zeros(k, k, dtype=torch.int64)
    conf.index_put_((pred, labels), torch.ones_like(pred), accumulate=True)
    r, c = linear_sum_assignment(conf.numpy(), maximize=True)
    return float(conf[r, c].sum()) / len(labels)


def nelbo_terms(theta, m_hat, y, z_onehot, extension="quadratic"):
    """F with the likelihood term evaluated at ``z_onehot`` [N, K] (a hard sample; or, with the
    linear extension, q itself for the exact F)."""
    logq = torch.log_softmax(theta, -1)
    q = logq.exp()
    entropy_term = (q * logq).sum()
    if extension == "quadratic":
        lik_term = -log_normal(y, z_onehot @ m_hat, SIGMAY).sum()
    else:
        loglik = log_normal(y[:, None, :], m_hat[None, :, :], SIGMAY)      # [N, K]
        lik_term = -(z_onehot * loglik).sum()
    prior = log_normal(m_hat, torch.zeros_like(m_hat), SIGMA0).sum()
    return entropy_term + lik_term + theta.shape[0] * math.log(theta.shape[1]) - prior


def run_one(cfg, *, seed: int, steps: int, lr: float, backend: str, device: str,
            progress: bool = True, n: int = N, k: int = K, extension: str = "quadratic"):
    y, labels, _ = make_data(seed, n, k)
    y = y.to(device)
    g = C.make_generator(seed, device)
    init = C.make_generator(20_000 + seed)
    theta = torch.randn(n, k, generator=init).to(device).requires_grad_(True)
    m_hat = (SIGMA0 * torch.randn(k, D, generator=init)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([theta, m_hat], lr=lr)
    timer, curve = C.StepTimer(), []
    for _ in C.progress(range(steps), desc=f"{EXP} {cfg.name} s{seed}", disable=not progress):
        with timer:
            z = cfg(theta, generator=g, backend=backend)
            loss = nelbo_terms(theta, m_hat, y, z, extension)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        curve.append(float(loss.detach()))
    with torch.no_grad():
        # exact for either extension: they agree on one-hots, and E_q is linear in q there
        exact = float(nelbo_terms(theta, m_hat, y, torch.softmax(theta, -1), "linear"))
        acc = hungarian_accuracy(theta.argmax(-1).cpu(), labels, k)
    tail = curve[-min(100, len(curve)):]
    mu, sd = C.mean_std(tail)
    return {"nelbo": mu, "nelbo_tail_std": sd, "nelbo_exact": exact, "accuracy": acc,
            "ms_per_step": timer.ms_per_step}, curve


def main(argv=None):
    ap = C.base_parser(__doc__.splitlines()[0], steps=3000, seeds=3, lr=0.01)
    ap.add_argument("--extension", default="quadratic", choices=["quadratic", "linear"],
                    help="how the likelihood is written in the one-hot z (see module doc)")
    args = ap.parse_args(argv)
    n, k = N, K
    if args.quick:
        args.steps, args.seeds, n = 8, "2", 60
        args.tune_steps = args.tune_steps or 5
    out = C.setup(args, EXP)
    seeds = C.parse_seeds(args.seeds)
    kw = dict(lr=args.lr, backend=args.backend, device=args.device,
              progress=not args.no_progress, n=n, k=k, extension=args.extension)
    configs = C.parse_samplers(args.samplers, DEFAULTS)

    def objective(cfg):  # tuning on held-out data/init seed 1000: final sampled NELBO
        return run_one(cfg, seed=1000, steps=args.tune_steps or args.steps, **kw)[0]["nelbo"]

    configs = C.select_configs(args, configs, objective, out, EXP)
    rows, curves = [], {}
    for cfg in configs:
        for seed in seeds:
            m, curve = run_one(cfg, seed=seed, steps=args.steps, **kw)
            rows.append({"sampler": cfg.name, "setting": cfg.label, "seed": seed, **m})
            curves.setdefault(C.PRETTY[cfg.name], []).append(curve)
    metrics = ["nelbo", "nelbo_exact", "accuracy", "ms_per_step"]
    summ = C.summarise(rows, ["sampler", "setting"], metrics)
    C.write_csv(out / "runs.csv", rows)
    C.write_csv(out / "summary.csv", summ)
    C.plot_curves(out / "curves.png", curves, logy=True, smooth=10,
                  title=f"GMM VI (N={n}, K={k}): sampled NELBO", ylabel="NELBO (log)")
    md = C.header_lines(args, EXP, args.device, [
        f"N={n}, K={k}, d={D}, sigma0={SIGMA0}, sigma_y={SIGMAY}; data, init and noise from the "
        f"seed; likelihood written {args.extension} in z; NELBO includes all normalising constants",
        "nelbo: sampled F averaged over the last 100 steps of each run (paper's metric), then "
        "mean ± std over seeds; nelbo_exact: exact F at the end; accuracy: Hungarian matching",
        "settings: " + ", ".join(c.label for c in configs)])
    md += [C.markdown_table(summ, ["sampler", "setting"], metrics,
                            digits={"accuracy": 3, "ms_per_step": 1}), "", "![](curves.png)"]
    C.write_text(out / "results.md", "\n".join(md))
    return rows


if __name__ == "__main__":
    main()
