"""Data of paper Figure 1 (third row), for our categorical ReDGE: the DDIM map theta -> T_0(x_1).

For a Bernoulli variable (K = 2, logits ``[0, theta]``, ``p = sigmoid(theta)``) and a fixed set of
initial noises ``x_1`` (rows of one seed: row q always gets the same noise, whatever theta), the
soft ReDGE sample ``y_soft[1] = p_1`` is computed as a function of p for several ``t_1``. As
``t_1 -> 0`` the map becomes a step function of theta (flat almost everywhere), so its derivative,
the reparameterised gradient, vanishes (paper Prop. 3.1); at ``t_1 = 1`` with two time points it is
the identity ``p -> p`` (straight-through).
"""

from __future__ import annotations

import torch

from .. import api
from ..schedule import make_schedule

__all__ = ["ddim_map"]


def ddim_map(t_1_values, *, n_steps: int = 3, n_noise: int = 6, n_grid: int = 99, seed: int = 0,
             backend: str = "auto"):
    """Soft ReDGE samples over a grid of Bernoulli probabilities.

    Returns ``(p, maps)``: ``p`` float64 ``[n_grid]`` in (0, 1), and ``maps`` a dict
    ``t_1 -> float64 [n_noise, n_grid]`` of ``y_soft[1]`` for each fixed noise row.
    """
    p = torch.linspace(0.01, 0.99, n_grid, dtype=torch.float64)
    theta = torch.log(p) - torch.log1p(-p)
    maps = {}
    for t_1 in t_1_values:
        sched = make_schedule(n_steps, float(t_1))
        cols = []
        for th in theta.tolist():
            logits = torch.tensor([[0.0, th]], dtype=torch.float32).expand(n_noise, 2).contiguous()
            y = api.sample("redge", logits, hard=False, schedule=sched, seed=seed, backend=backend)
            cols.append(y[:, 1].to(torch.float64))
        maps[float(t_1)] = torch.stack(cols, 1)
    return p, maps
