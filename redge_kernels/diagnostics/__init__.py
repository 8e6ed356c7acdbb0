"""Bias and variance diagnostics of the categorical gradient estimators (docs/DIAGNOSTICS.md).

    from redge_kernels import diagnostics as dg
    f = dg.make_objective("poly", L, K, power=3)            # or any torch f: [..., L, K] -> [...]
    exact = dg.exact_gradient(theta, f)                      # enumeration of the K**L configurations
    row = dg.evaluate(rk.SamplerConfig("redge", n_steps=3, t_1=0.1), theta, f,
                      n_samples=4096, seed=0, exact=exact, backend="auto")
    row["bias"], row["variance"], row["mse"], row["cosine"], row["fwd_tv"]

Modules: ``exact`` (enumeration), ``montecarlo`` (replicated estimator calls, gradient and
forward-sample statistics), ``objectives`` (built-in f), ``sweep`` (grids and tables), ``figure1``
(paper Fig. 1 data), ``plots`` (PNG figures), ``cli`` (``python -m redge_kernels.diagnostics``).
Only the public sampler API is used (``rk.sample`` with ``backend=``), so fused backends do the work.
"""

from .exact import MAX_CONFIGS, enumerate_configurations, exact_expectation, exact_gradient
from .figure1 import ddim_map
from .montecarlo import (ForwardBias, GradientStats, as_config, estimator_gradients, evaluate,
                         forward_sample_bias, gradient_stats, z_threshold)
from .objectives import OBJECTIVES, Objective, make_objective
from .sweep import best_configs, run_sweep, sweep_configs, write_csv, write_markdown

__all__ = [
    "exact_expectation", "exact_gradient", "enumerate_configurations", "MAX_CONFIGS",
    "estimator_gradients", "gradient_stats", "forward_sample_bias", "evaluate", "as_config",
    "GradientStats", "ForwardBias", "z_threshold", "make_objective", "Objective", "OBJECTIVES",
    "sweep_configs", "run_sweep", "best_configs", "write_csv", "write_markdown", "ddim_map",
]
