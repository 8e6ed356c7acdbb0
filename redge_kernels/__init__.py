"""redge_kernels: fused, reproducible ReDGE and baseline categorical estimators.

    import redge_kernels as rk
    y = rk.redge(logits, n_steps=3, t_1=0.5)          # exact one-hot, ReDGE gradient

Public names match the authors' ``redge`` package; see ``api`` for the extras (``seed``,
``generator``, ``backend``, ``return_soft``), ``noise.sample_noise`` for the shared noise,
``registry`` for sweeps, ``ops`` for the one autograd every backend shares. Limits of the time
grid: ``MIN_T1 <= t_1 <= 1``, ``2 <= n_steps <= MAX_N_STEPS``.
"""

from . import ops  # noqa: F401  (registers the redge_kernels:: op schemas)
from ._backends import available_backends
from .api import (gumbel_softmax, redge, redge_cov, redge_max, reindge, reinmax, sample,
                  straight_through)
from .embed import sample_embed
from .noise import NOISE_VERSION, Noise, sample_noise
from .registry import DEFAULTS, SAMPLERS, SamplerConfig, sweep
from .schedule import (MAX_N_STEPS, MIN_T1, Schedule, grid_schedule, linear_schedule,
                       make_schedule)

__version__ = "0.1.0"

__all__ = [
    "redge", "redge_cov", "redge_max", "reindge", "straight_through", "gumbel_softmax", "reinmax",
    "sample", "SAMPLERS", "DEFAULTS", "SamplerConfig", "sweep", "sample_noise", "Noise", "NOISE_VERSION",
    "Schedule", "linear_schedule", "grid_schedule", "make_schedule", "available_backends",
    "MIN_T1", "MAX_N_STEPS", "sample_embed",
]
