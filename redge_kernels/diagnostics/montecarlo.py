"""Monte-Carlo statistics of an estimator's gradient against the exact one, and of its forward
samples.

One estimator call does all the work: ``theta [L, K]`` is replicated to ``[S, L, K]`` and sampled
with one seed (every row gets independent noise, since the Philox counter includes the row index).
Because replicate ``s`` only reads rows ``s*L .. s*L + L-1``, the gradient of ``sum_s f(y_s)`` with
respect to the replicated logits holds each replicate's own estimate in slice ``s``: one backward
gives all ``S`` estimates. The fused backends (``backend="cpu"`` / ``"triton"``, or ``"auto"``) run
that call when built; the statistics are computed here in float64.

Statistics (``g_s`` the S estimates, ``g`` the exact gradient, norms over all L*K entries):

    mean       = (1/S) sum_s g_s
    bias       = ||mean - g||                   (includes noise of size sqrt(variance / S))
    bias2_corr = ||mean - g||^2 - variance / S  (unbiased estimate of ||E g_s - g||^2)
    variance   = sum_entries Var_s(g_s)         (total variance, trace of the covariance)
    mse        = (1/S) sum_s ||g_s - g||^2      (= bias^2 + variance, up to noise)
    mse_batch  = bias2_corr + variance / B      (unbiased estimate of the MSE of the average of
                                                 B independent estimates, a minibatch of B samples;
                                                 >= 0 for B <= S)
    cosine     = cos(mean, g);  cosine_mean = (1/S) sum_s cos(g_s, g)
    grad_norm  = (1/S) sum_s ||g_s||;  grad_norm_median = median_s ||g_s||
    frac_vanishing = fraction of s with ||g_s|| < 1e-6 ||g||
                 (paper Prop. 3.1: for ReDGE, ||g_s|| -> 0 almost surely as t_1 -> 0, so the median
                 and frac_vanishing show it first; the mean is dominated by the rare noises that
                 land near a decision boundary, where the gradient is of order c_1, until those
                 vanish too)
    max_abs_z  = max_entries |mean - g| / (sd_s / sqrt(S))

Forward samples (``index [S, L]``) against ``p = softmax(theta)``, row by row (rows are independent
by construction): ``tv`` = mean_l 1/2 sum_k |freq_lk - p_lk|; ``tv_null`` its expectation under
exact sampling (normal approximation, 1/2 sum_k sqrt(2/pi) sqrt(p(1-p)/S)); binomial z-scores
``(freq - p) / sqrt(p (1 - p) / S)``; and Pearson's chi-square over all rows with L*(K-1) degrees of
freedom and its p-value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

from .. import api
from .._constants import DIFFUSION_METHODS
from ..registry import SamplerConfig
from ..schedule import make_schedule

__all__ = ["estimator_gradients", "gradient_stats", "forward_sample_bias", "evaluate",
           "GradientStats", "ForwardBias", "z_threshold", "as_config"]


def as_config(config) -> SamplerConfig:
    """A ``SamplerConfig`` from a config, a sampler name, or ``(name, {hyperparameters})``."""
    if isinstance(config, SamplerConfig):
        return config
    if isinstance(config, str):
        return SamplerConfig(config)
    name, params = config
    return SamplerConfig(name, **dict(params))


def _method_and_kwargs(cfg: SamplerConfig) -> tuple[str, dict]:
    method = "redge_max" if cfg.name == "reindge" else cfg.name
    kw = cfg.kwargs
    if method in DIFFUSION_METHODS:
        return method, {"schedule": make_schedule(kw["n_steps"], kw["t_1"], kw.get("times"))}
    if "tau" in kw:
        return method, {"tau": kw["tau"]}
    return method, {}


def estimator_gradients(config, theta: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                        n_samples: int, seed: int, *, backend: str = "auto",
                        dtype: torch.dtype = torch.float32):
    """``S = n_samples`` independent estimates of ``grad_theta E[f(X)]`` from one sampler call.

    Args:
        config: ``SamplerConfig``, sampler name, or ``(name, {hyperparameters})``.
        theta: ``[L, K]`` logits (any float dtype; cast to ``dtype`` for the sampler).
        f: hard samples ``[S, L, K]`` -> values ``[S]`` (see ``objectives``).
        n_samples: replicates S (one call on ``[S, L, K]`` logits).
        seed: the sampler seed (same seed -> identical results).
        backend: passed to ``rk.sample`` (``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"``).

    Returns:
        ``(grads, index, values)``: float64 ``[S, L, K]`` estimates, int64 ``[S, L]`` sampled
        categories, float64 ``[S]`` values ``f(y_s)``.
    """
    cfg = as_config(config)
    method, kw = _method_and_kwargs(cfg)
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    phi = theta.detach().to(dtype).unsqueeze(0).expand(n_samples, *theta.shape).clone()
    phi.requires_grad_(True)
    y, index = api.sample(method, phi, hard=True, seed=int(seed), backend=backend,
                          return_index=True, **kw)
    values = f(y)
    if values.shape != (n_samples,):
        raise ValueError(f"f must map [S, L, K] samples to [S] values, got {tuple(values.shape)}")
    (grads,) = torch.autograd.grad(values.sum(), phi)
    return grads.to(torch.float64), index, values.detach().to(torch.float64)


def z_threshold(n_tests: int, alpha: float = 1e-3) -> float:
    """Two-sided Bonferroni normal threshold: ``|z|`` above it in any of ``n_tests`` is significant
    at family-wise level ``alpha``."""
    q = 1.0 - alpha / (2.0 * max(1, n_tests))
    return math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(2.0 * q - 1.0,
                                                                      dtype=torch.float64)))


@dataclasses.dataclass
class GradientStats:
    """Monte-Carlo statistics of S gradient estimates against the exact gradient (module doc)."""

    n_samples: int
    exact_norm: float
    grad_norm: float
    grad_norm_median: float
    frac_vanishing: float
    mean_norm: float
    bias: float
    bias2_corr: float
    variance: float
    mse: float
    mse_se: float
    rel_mse: float
    batch: int
    mse_batch: float
    rel_mse_batch: float
    cosine: float
    cosine_mean: float
    max_abs_z: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def gradient_stats(grads: torch.Tensor, exact: torch.Tensor, *, batch: int = 1,
                   fp_floor: float = 1e-6) -> GradientStats:
    """Statistics of estimates ``grads [S, ...]`` against ``exact [...]`` (float64 math).

    ``batch``: B of ``mse_batch`` (the MSE of a B-sample average gradient).

    ``fp_floor``: entries whose standard error is below ``fp_floor * (max|exact| + 1)`` (e.g. the
    zero-variance ST gradient of a linear f) use that floor in ``max_abs_z``, so fp32 rounding is
    not reported as bias.
    """
    g = grads.to(torch.float64).reshape(grads.shape[0], -1)
    e = exact.to(torch.float64).reshape(-1).to(g.device)
    s = g.shape[0]
    mean = g.mean(0)
    var_entries = g.var(0, unbiased=True)
    variance = float(var_entries.sum())
    diff = mean - e
    bias = float(diff.norm())
    sq_err = ((g - e) ** 2).sum(1)
    mse = float(sq_err.mean())
    mse_se = float(sq_err.std(unbiased=True) / math.sqrt(s))
    enorm = float(e.norm())
    norms = g.norm(dim=1)
    tiny = 1e-300
    cosine = float((mean @ e) / max(float(mean.norm()) * enorm, tiny))
    cos_each = (g @ e) / torch.clamp(norms * enorm, min=tiny)
    se = torch.clamp(var_entries.sqrt() / math.sqrt(s),
                     min=fp_floor * (float(e.abs().max()) + 1.0))
    bias2_corr = bias ** 2 - variance / s
    mse_batch = bias2_corr + variance / batch
    return GradientStats(
        n_samples=s, exact_norm=enorm, grad_norm=float(norms.mean()),
        grad_norm_median=float(norms.median()),
        frac_vanishing=float((norms < 1e-6 * enorm).to(torch.float64).mean()),
        mean_norm=float(mean.norm()),
        bias=bias, bias2_corr=bias2_corr, variance=variance, mse=mse, mse_se=mse_se,
        rel_mse=mse / max(enorm ** 2, tiny), batch=int(batch), mse_batch=mse_batch,
        rel_mse_batch=mse_batch / max(enorm ** 2, tiny), cosine=cosine,
        cosine_mean=float(cos_each.mean()),
        max_abs_z=float((diff.abs() / se).max()))


@dataclasses.dataclass
class ForwardBias:
    """Distance between the empirical distribution of hard samples and softmax(theta)
    (module doc)."""

    n_samples: int
    tv: float
    tv_null: float
    max_abs_z: float
    chi2: float
    dof: int
    p_value: float
    freq: torch.Tensor = dataclasses.field(repr=False)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("freq")
        return d


def forward_sample_bias(index: torch.Tensor, theta: torch.Tensor) -> ForwardBias:
    """Compare sampled categories ``index [S, L]`` with ``softmax(theta [L, K])`` row by row."""
    s, n_rows = index.shape
    k = theta.shape[-1]
    p = torch.softmax(theta.detach().to(torch.float64), -1).cpu()
    idx = index.cpu()
    if (idx < 0).any():
        raise ValueError("index holds -1 (masked or NaN rows); forward bias needs finite logits")
    counts = torch.zeros(n_rows, k, dtype=torch.float64)
    counts.scatter_add_(1, idx.T.contiguous(), torch.ones(n_rows, s, dtype=torch.float64))
    freq = counts / s
    sd = torch.sqrt(p * (1.0 - p) / s)
    tv = 0.5 * (freq - p).abs().sum(-1)
    tv_null = 0.5 * math.sqrt(2.0 / math.pi) * sd.sum(-1)
    pos = p > 0
    z = torch.where(sd > 0, (freq - p) / torch.where(sd > 0, sd, 1.0),
                    torch.where(freq == p, 0.0, math.inf))
    chi2 = float((s * (freq - p) ** 2 / torch.where(pos, p, 1.0))[pos].sum())
    dof = int(n_rows * (k - 1))
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64),
                                            torch.tensor(chi2 / 2.0, dtype=torch.float64))) \
        if dof > 0 else 1.0
    return ForwardBias(n_samples=s, tv=float(tv.mean()), tv_null=float(tv_null.mean()),
                       max_abs_z=float(z.abs().max()), chi2=chi2, dof=dof, p_value=p_value,
                       freq=freq)


def evaluate(config, theta: torch.Tensor, f: Callable, n_samples: int, seed: int, *,
             exact: torch.Tensor | None = None, backend: str = "auto", batch: int = 1,
             dtype: torch.dtype = torch.float32) -> dict:
    """One row of diagnostics for one estimator config: its gradient statistics against ``exact``
    (computed by enumeration when not given; ``batch`` is B of ``mse_batch``) and its
    forward-sample bias, as a flat dict with the
    keys ``method``, ``label``, ``n_steps``, ``t_1``, ``tau`` and those of ``GradientStats`` and
    ``ForwardBias`` (the latter prefixed ``fwd_``)."""
    from .exact import exact_gradient

    cfg = as_config(config)
    if exact is None:
        exact = exact_gradient(theta, f)
    grads, index, _ = estimator_gradients(cfg, theta, f, n_samples, seed, backend=backend,
                                          dtype=dtype)
    row = {"method": cfg.name, "label": cfg.label, "n_steps": cfg.kwargs.get("n_steps"),
           "t_1": cfg.kwargs.get("t_1"), "tau": cfg.kwargs.get("tau")}
    row.update(gradient_stats(grads, exact, batch=batch).as_dict())
    row.update({f"fwd_{k}": v for k, v in forward_sample_bias(index, theta).as_dict().items()})
    return row
