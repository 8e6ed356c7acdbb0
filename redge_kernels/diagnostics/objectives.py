"""Built-in objectives ``f``: one-hot (or relaxed) samples ``y [..., L, K]`` -> values ``[...]``.

Each is differentiable in ``y`` and batched over the leading dims, so the same callable serves the
exact enumeration (``y`` = all one-hot configurations) and the Monte-Carlo estimators (``y`` = the
estimator's hard samples, replicated over seeds). Random parameters come from a seeded CPU
generator, so ``make_objective(name, L, K, seed=s)`` is reproducible.

* ``linear``:    ``f(y) = sum_{l,k} W_lk y_lk``, W ~ N(0, 1). Hard ST is exact (zero variance).
* ``quadratic``: ``f(y) = sum_l ||y_l - c_l||^2``, c ~ U(0, 1)^{LxK} (row-separable quadratic).
* ``poly``:      ``f(y) = (1/L) sum_l |y_l1 - 0.45|^p`` (paper eq. 16, section 4.1; default p = 3).
* ``randquad``:  ``f(y) = 1/2 v^T A v + b^T v``, ``v = vec(y)``, A symmetric with N(0, 1/(LK))
  entries, b ~ N(0, 1): a random quadratic coupling the rows.
"""

from __future__ import annotations

import torch

__all__ = ["Objective", "make_objective", "OBJECTIVES"]

OBJECTIVES = ("linear", "quadratic", "poly", "randquad")


class Objective:
    """A named objective ``f(y[..., L, K]) -> [...]`` with its parameters (float64, CPU)."""

    def __init__(self, name: str, n_rows: int, k: int, seed: int = 0, power: float = 3.0,
                 target: float = 0.45):
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r}; choose one of {OBJECTIVES}")
        if name == "poly" and k < 2:
            raise ValueError("the poly objective needs K >= 2 (it reads category 1)")
        self.name, self.n_rows, self.k, self.seed = name, n_rows, k, seed
        self.power, self.target = float(power), float(target)
        gen = torch.Generator().manual_seed(int(seed))
        d = n_rows * k
        self.params: dict[str, torch.Tensor] = {}
        if name == "linear":
            self.params["w"] = torch.randn(n_rows, k, generator=gen, dtype=torch.float64)
        elif name == "quadratic":
            self.params["c"] = torch.rand(n_rows, k, generator=gen, dtype=torch.float64)
        elif name == "randquad":
            m = torch.randn(d, d, generator=gen, dtype=torch.float64) / d ** 0.5
            self.params["a"] = 0.5 * (m + m.T)
            self.params["b"] = torch.randn(d, generator=gen, dtype=torch.float64)

    @property
    def label(self) -> str:
        if self.name == "poly":
            return f"poly(p={self.power:g})"
        return f"{self.name}(seed={self.seed})"

    def _p(self, key: str, like: torch.Tensor) -> torch.Tensor:
        return self.params[key].to(device=like.device, dtype=like.dtype)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[-2:]) != (self.n_rows, self.k):
            raise ValueError(f"{self.label}: expected samples [..., {self.n_rows}, {self.k}], "
                             f"got {tuple(y.shape)}")
        if self.name == "linear":
            return (self._p("w", y) * y).sum((-1, -2))
        if self.name == "quadratic":
            return ((y - self._p("c", y)) ** 2).sum((-1, -2))
        if self.name == "poly":
            return (y[..., 1] - self.target).abs().pow(self.power).mean(-1)
        v = y.reshape(*y.shape[:-2], self.n_rows * self.k)
        av = v @ self._p("a", y)
        return 0.5 * (av * v).sum(-1) + v @ self._p("b", y)

    def __repr__(self) -> str:
        return f"Objective({self.label}, L={self.n_rows}, K={self.k})"


def make_objective(name: str, n_rows: int, k: int, seed: int = 0, power: float = 3.0) -> Objective:
    """The built-in objective ``name`` for samples ``[..., n_rows, k]`` (see module docstring)."""
    return Objective(name, n_rows, k, seed=seed, power=power)
