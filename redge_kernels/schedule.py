"""Time grids and the per-step DDIM scalars (docs/SPEC.md "Time grid and schedule").

Kernels never see t_1 or the grid: they receive one float32 table ``coefs[n_steps, 5]`` whose row k
holds ``(c_k, a_k, b_k, alpha_k, sigma_k)`` (columns ``COEF_*`` in ``_constants``), computed here once
on the host in float64. Row 0 (clean data) is ``(0, 0, 0, 1, 0)``; ``a_1, b_1`` are unused by the
chain (step 1 ends in the sample) and are set to the DDIM values anyway.

    c_k = alpha_k / sigma_k**2          (denoiser noise-to-logit scale)
    b_k = sigma_{k-1} / sigma_k         (DDIM, eta = 0)
    a_k = alpha_{k-1} - alpha_k * b_k
"""

from __future__ import annotations

from typing import Sequence

import torch

from ._constants import ALPHA_END
from ._validation import as_float, as_int

__all__ = ["Schedule", "linear_schedule", "grid_schedule", "make_schedule", "MIN_T1", "MAX_N_STEPS"]


class Schedule:
    """A validated time grid: ``alphas``/``sigmas`` of length n_steps (index 0 = clean data).

    Attributes are float64 Python tuples; ``table()`` gives the kernels' ``coefs`` tensor.
    """

    def __init__(self, alphas: Sequence[float], sigmas: Sequence[float]):
        self.alphas = tuple(float(a) for a in alphas)
        self.sigmas = tuple(float(s) for s in sigmas)
        n = len(self.alphas)
        c = [0.0] * n
        a = [0.0] * n
        b = [0.0] * n
        for k in range(1, n):
            c[k] = self.alphas[k] / self.sigmas[k] ** 2
            b[k] = self.sigmas[k - 1] / self.sigmas[k]
            a[k] = self.alphas[k - 1] - self.alphas[k] * b[k]
        self.c, self.a, self.b = tuple(c), tuple(a), tuple(b)

    @property
    def n_steps(self) -> int:
        return len(self.alphas)

    def rows(self) -> list[tuple[float, float, float, float, float]]:
        """``[(c_k, a_k, b_k, alpha_k, sigma_k) for k in range(n_steps)]`` in float64."""
        return list(zip(self.c, self.a, self.b, self.alphas, self.sigmas))

    def table(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """The kernels' ``coefs`` table: ``[n_steps, 5]`` (float32 unless asked otherwise)."""
        return _table(self, str(torch.device(device or "cpu")), dtype)

    def __eq__(self, other):
        return isinstance(other, Schedule) and (self.alphas, self.sigmas) == (other.alphas, other.sigmas)

    def __hash__(self):
        return hash((self.alphas, self.sigmas))

    def __repr__(self):
        return f"Schedule(alphas={self.alphas}, sigmas={self.sigmas})"


_TABLES: dict = {}


def _table(schedule: Schedule, device: str, dtype: torch.dtype) -> torch.Tensor:
    """The table, cached per (schedule, device, dtype) in eager mode (one small host-to-device copy
    per new schedule); under ``torch.compile`` it is a traced constant."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        # Traced constants; under torch.func a table made here could carry the transform's
        # level, so none is kept past it.
        return torch.tensor(schedule.rows(), dtype=torch.float64).to(dtype).to(device)
    key = (schedule, device, dtype)
    t = _TABLES.get(key)
    if t is None:
        if len(_TABLES) > 1024:
            _TABLES.clear()
        t = _TABLES[key] = torch.tensor(schedule.rows(), dtype=torch.float64).to(dtype).to(device)
    return t


def _linspace(start: float, end: float, steps: int) -> list[float]:
    """float64 linspace: the first half counts up from ``start``, the second half down from ``end``
    (so both ends are exact)."""
    if steps == 1:
        return [start]
    step = (end - start) / (steps - 1)
    half = (steps + 1) // 2
    return [start + i * step if i < half else end - (steps - 1 - i) * step for i in range(steps)]


#: Smallest accepted first time t_1 (and, for an explicit grid, t_1 = times[1]). At t_1 = 1e-6,
#: c_1 = (1 - t_1) / t_1**2 ~ 1e12: the last denoiser is already an argmax in fp32 and the
#: gradient through the chain is 0 to fp32 precision (paper Prop. 3.1); below ~1e-16, 1 - t_1
#: rounds to 1 in float64 and sigma_1 = 0 (no finite schedule exists).
MIN_T1 = 1e-6
#: Largest accepted n_steps (and grid length). Each step costs an O(K) pass per row in each
#: direction and 2 floats of ``stats`` per row; the paper and the authors use 3 to 10.
MAX_N_STEPS = 1024


def _check_n_t1(n_steps, t_1) -> tuple[int, float]:
    n = as_int(n_steps, "n_steps")
    if n < 2:
        raise ValueError(f"n_steps must be >= 2 (one denoising step), got {n}")
    if n > MAX_N_STEPS:
        raise ValueError(f"n_steps must be <= {MAX_N_STEPS} (MAX_N_STEPS), got {n}")
    t = as_float(t_1, "t_1")
    if not (MIN_T1 <= t <= 1.0):
        raise ValueError(f"t_1 must be in [{MIN_T1:g}, 1] (MIN_T1 = {MIN_T1:g}), got {t}")
    return n, t


def linear_schedule(n_steps: int, t_1: float) -> Schedule:
    """The authors' schedule: alpha_0 = 1, (alpha_1..alpha_{n-1}) = linspace(1 - t_1, 1e-4, n - 1).

    The linspace is evaluated in float64 in plain Python (so that ``torch.compile`` folds it into
    constants); it agrees with ``torch.linspace(..., dtype=torch.float64)`` within 2 ulp and has
    exact end points (for n = 2 it is just 1 - t_1).
    """
    n_steps, t_1 = _check_n_t1(n_steps, t_1)
    alphas = [1.0] + _linspace(1.0 - t_1, ALPHA_END, n_steps - 1)
    return Schedule(alphas, [1.0 - a for a in alphas])


def grid_schedule(times: Sequence[float]) -> Schedule:
    """An explicit grid ``0 = t_0 < t_1 < ... < t_{n-1} <= 1`` with alpha_t = 1 - t, sigma_t = t.

    Example: the paper's section-4 grid ``[k / (n - 1) for k in range(n)]``.
    """
    if isinstance(times, (str, bytes)) or not hasattr(times, "__len__"):
        raise TypeError(f"times must be a sequence of floats, got {type(times).__name__}")
    if len(times) > MAX_N_STEPS:
        raise ValueError(f"times must hold at most {MAX_N_STEPS} points (MAX_N_STEPS), got {len(times)}")
    ts = [as_float(t, "times[i]") for t in times]
    if len(ts) < 2:
        raise ValueError(f"times must hold at least 2 points (t_0 = 0 and t_1), got {len(ts)}")
    if ts[0] != 0.0:
        raise ValueError(f"times must start at t_0 = 0, got {ts[0]}")
    if any(not (b > a) for a, b in zip(ts, ts[1:])):
        raise ValueError(f"times must be strictly increasing, got {ts}")
    if ts[-1] > 1.0:
        raise ValueError(f"times must end at most at 1, got {ts[-1]}")
    if ts[1] < MIN_T1:
        raise ValueError(f"times[1] (t_1) must be >= MIN_T1 = {MIN_T1:g}, got {ts[1]}")
    return Schedule([1.0 - t for t in ts], ts)


def make_schedule(n_steps: int, t_1: float, times: Sequence[float] | None = None) -> Schedule:
    """``grid_schedule(times)`` when a grid is given, else ``linear_schedule(n_steps, t_1)``."""
    if times is not None:
        return grid_schedule(times)
    return linear_schedule(n_steps, t_1)
