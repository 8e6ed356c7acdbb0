"""Samplers by name, and a small config object for sweeps.

``SAMPLERS`` is keyed exactly like the authors' package (``st, redge, reinmax, redge_cov, gumbel,
reindge``) plus ``redge_max``. ``SamplerConfig`` binds a sampler to its hyperparameters::

    cfg = SamplerConfig("redge", n_steps=5, t_1=0.3)
    y = cfg(logits, seed=0)
    for cfg in sweep("redge", n_steps=[3, 5], t_1=[0.1, 0.5]): ...
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Sequence

from . import api

SAMPLERS: dict[str, Callable] = {
    "st": api.straight_through,
    "redge": api.redge,
    "reinmax": api.reinmax,
    "redge_cov": api.redge_cov,
    "gumbel": api.gumbel_softmax,
    "reindge": api.reindge,
    "redge_max": api.redge_max,
}

#: Default hyperparameters (the authors' configs).
DEFAULTS: dict[str, dict[str, Any]] = {
    "st": {},
    "redge": {"n_steps": 3, "t_1": 0.5},
    "reinmax": {"tau": 1.0},
    "redge_cov": {"n_steps": 5, "t_1": 0.5},
    "gumbel": {"tau": 0.5},
    "reindge": {"n_steps": 5, "t_1": 0.5},
    "redge_max": {"n_steps": 5, "t_1": 0.5},
}

_ALLOWED = {"st": set(), "gumbel": {"tau"}, "reinmax": {"tau"},
            "redge": {"n_steps", "t_1", "times"}, "redge_cov": {"n_steps", "t_1", "times"},
            "reindge": {"n_steps", "t_1", "times"}, "redge_max": {"n_steps", "t_1", "times"}}


_HYPER = ("n_steps", "t_1", "tau", "times")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """A sampler name with its hyperparameters (defaults filled in; unknown names rejected).

    Every hyperparameter is a field (None where the sampler takes none), so
    ``eval(repr(cfg)) == cfg`` and ``dataclasses.replace(cfg, t_1=0.3)`` work (the result is
    validated again). Calling it runs the sampler: ``cfg(logits, hard=True, seed=None,
    generator=None, backend="auto")``. ``label`` is a short display name such as
    ``redge(n_steps=5,t_1=0.3)``.
    """

    name: str
    n_steps: Any = None
    t_1: Any = None
    tau: Any = None
    times: Any = None

    def __post_init__(self):
        if self.name not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.name!r}; choose one of {sorted(SAMPLERS)}")
        given = {k: getattr(self, k) for k in _HYPER if getattr(self, k) is not None}
        bad = set(given) - _ALLOWED[self.name]
        if bad:
            raise ValueError(f"sampler {self.name!r} takes no hyperparameter(s) {sorted(bad)}; "
                             f"it takes {sorted(_ALLOWED[self.name]) or 'none'}")
        for k, v in DEFAULTS[self.name].items():
            if k not in given:
                object.__setattr__(self, k, v)
        if self.times is not None:
            object.__setattr__(self, "times", tuple(float(t) for t in self.times))

    @property
    def params(self) -> tuple:
        """``((name, value), ...)`` of the set hyperparameters, sorted by name."""
        return tuple((k, getattr(self, k)) for k in sorted(_HYPER) if getattr(self, k) is not None)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def label(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})" if inner else self.name

    def __repr__(self):
        inner = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"SamplerConfig({self.name!r}{inner})"

    def __call__(self, logits, hard: bool = True, **call_kwargs):
        return SAMPLERS[self.name](logits, hard=hard, **self.kwargs, **call_kwargs)

    def embed(self, logits, weight, hard: bool = True, **call_kwargs):
        """``embed.sample_embed(logits, weight, self.name, hard, **self.kwargs, **call_kwargs)``:
        this sampler's sample times ``weight`` (``[K, D]`` or a sequence), fused."""
        from .embed import sample_embed  # embed imports this module

        return sample_embed(logits, weight, self.name, hard, **self.kwargs, **call_kwargs)


def sweep(name: str, **grids: Sequence) -> list[SamplerConfig]:
    """All configs of the Cartesian product of the given hyperparameter grids."""
    keys = sorted(grids)
    return [SamplerConfig(name, **dict(zip(keys, vals)))
            for vals in itertools.product(*(grids[k] for k in keys))]
