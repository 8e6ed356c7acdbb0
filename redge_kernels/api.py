"""Public estimators, drop-in compatible with the authors' ``redge`` package (names and arguments).

Every function maps logits ``[..., K]`` (any leading dims, any strides, fp16/bf16/fp32/fp64) to a
sample of the same shape and dtype: the exact one-hot for ``hard=True`` (with the estimator's
gradient), the relaxed sample for ``hard=False``. Keyword-only extras:

* ``generator`` (torch.Generator on the logits' device) or ``seed`` (int in [0, 2**63)): the noise
  (``noise.py``) is a pure function of this seed, identical on every backend;
* ``backend``: ``"auto"`` (fused kernel for the device if built, else the reference),
  ``"reference"``, ``"cpu"`` (C++), ``"triton"`` (GPU).

Rows whose logits are all ``-inf`` give an all-zero sample and zero gradient; rows holding NaN or
``+inf`` give NaN there; neither affects other rows.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import _backends, ops, reference
from ._constants import DIFFUSION_METHODS, METHOD_IDS
from ._validation import check_backend, check_hard, check_logits, check_tau, seed_tensor
from .schedule import Schedule, make_schedule

__all__ = ["redge", "redge_cov", "redge_max", "reindge", "straight_through", "gumbel_softmax",
           "reinmax", "sample"]

#: Hyperparameters of the other samplers, accepted and ignored so that one call site can drive
#: every entry of ``SAMPLERS`` (as with the authors' package). Anything else is a TypeError.
_FAMILY_KWARGS = {"n_steps", "t_1", "tau", "times"}


def _check_kwargs(kwargs, fn):
    unknown = set(kwargs) - _FAMILY_KWARGS
    if unknown:
        raise TypeError(f"{fn}() got unexpected keyword argument(s) {sorted(unknown)}")


# Baselines have no time grid; the kernels still receive a (unused) 2-row table.
_BASELINE_SCHEDULE = Schedule([1.0, 0.0], [0.0, 1.0])

# Eager-mode caches (never consulted under torch.compile, which folds schedules into constants).
_SCHEDULES: dict = {}
_FUSED: dict = {}


def _schedule(n_steps, t_1, times) -> Schedule:
    """``make_schedule(n_steps, t_1, times)``, memoised in eager mode for the usual ``times=None``.
    The key holds the argument types, so e.g. ``n_steps=2.0`` still reaches the check that
    rejects it; only validated arguments are ever stored."""
    if times is not None or torch.compiler.is_compiling():
        return make_schedule(n_steps, t_1, times)
    key = (n_steps.__class__, n_steps, t_1.__class__, t_1)
    try:
        sched = _SCHEDULES.get(key)
    except TypeError:  # an unhashable argument: make_schedule rejects it
        sched = None
    if sched is None:
        sched = make_schedule(n_steps, t_1)
        if len(_SCHEDULES) > 1024:
            _SCHEDULES.clear()
        _SCHEDULES[key] = sched
    return sched


def _fused_entry(key, name: str, logits: torch.Tensor, sched: Schedule):
    """``(coefs, name)`` when ``name`` is a fused backend whose op is registered for ``logits``'
    device (the eager fast path runs it), else None. Only such decisions are memoised, under
    ``key`` = (backend, device, dtype, schedule, ``_backends._usable``): the availability probe is
    part of the key, so a replaced probe (tests) is consulted again; "reference" decisions are
    never kept (``auto`` may warn on them)."""
    if name == "reference" or logits.device.type != _backends.DEVICE_TYPES[name]:
        return None
    cdtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if len(_FUSED) > 1024:
        _FUSED.clear()
    hit = _FUSED[key] = (sched.table(logits.device, dtype=cdtype), name)
    return hit


def sample(method: str, logits: torch.Tensor, *, hard: bool = True, tau: float = 1.0,
           schedule: Schedule | None = None, seed=None, generator=None, backend: str = "auto",
           return_index: bool = False):
    """Run estimator ``method`` (a key of ``_constants.METHOD_IDS``) on ``logits``.

    Returns ``y`` (shape and dtype of ``logits``), or ``(y, index)`` with ``index`` the sampled
    category (int64, shape ``logits.shape[:-1]``, -1 on all-masked or NaN rows) when
    ``return_index`` is set.
    """
    fn = method
    if method not in METHOD_IDS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {sorted(METHOD_IDS)}")
    check_logits(logits, fn)
    hard = check_hard(hard, fn)
    tau = check_tau(tau, fn)
    check_backend(backend, fn)
    if method in ("reinmax", "redge_max") and not hard:
        raise NotImplementedError(f"{fn}: hard=False is not defined for {method} (its gradient "
                                  "is tied to the hard sample); use hard=True")
    if method in DIFFUSION_METHODS and schedule is None:
        raise ValueError(f"{fn}: a schedule is required")
    shape = logits.shape
    k = shape[-1]
    if ops.plain_eager(logits):
        # Eager fast path: the same op, noise and gradient, minus torch.library's Python autograd
        # layer and the two reshape nodes in the graph; on CPU the seed goes into a pooled buffer.
        buf = ops.seed_buffer() if logits.is_cpu else None
        seed_t = seed_tensor(logits, seed, generator, fn, out=buf)
        if logits.numel() > 0:
            sched = schedule if method in DIFFUSION_METHODS else _BASELINE_SCHEDULE
            # The fused decision and table, memoised per (backend, device, dtype, schedule, probe).
            key = (backend, logits.device, logits.dtype, sched, _backends._usable)
            hit = _FUSED.get(key)
            if hit is None:
                name = _backends.resolve(backend, logits, fn)
                hit = _fused_entry(key, name, logits, sched)
            if hit is not None:
                y, index = ops.fwd_eager(logits, seed_t, hit[0], METHOD_IDS[method], hard, tau)
                return (y, index) if return_index else y
        else:
            name = "reference"
        if seed_t is buf:
            seed_t = seed_t.clone()  # the pool's buffer never leaves the fused fast path
        phi = logits.reshape(-1, k)
    else:
        seed_t = seed_tensor(logits, seed, generator, fn)
        phi = logits.reshape(-1, k)
        name = _backends.resolve(backend, phi, fn) if phi.shape[0] > 0 else "reference"
    if name == "reference":
        y, index = reference.sample(method, phi, seed_t, schedule, hard, tau)
    else:
        sched = schedule if method in DIFFUSION_METHODS else _BASELINE_SCHEDULE
        cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
        coefs = sched.table(phi.device, dtype=cdtype)
        y, index = _backends.run_fused(name, phi, seed_t, coefs, METHOD_IDS[method], hard, tau)
    y = y.reshape(shape)
    return (y, index.reshape(shape[:-1])) if return_index else y


def redge(logits, n_steps: int = 3, t_1: float = 0.5, hard: bool = True, *,
          times: Sequence[float] | None = None, generator=None, seed=None, backend="auto", **kwargs):
    """ReDGE (paper Alg. 1, eta = 0): ``n_steps - 1`` closed-form DDIM denoising steps from Gaussian
    noise, ending in a Gumbel-max sample of the last denoiser; straight-through at the last step.

    Args:
        logits: ``[..., K]`` float tensor.
        n_steps: number of time points n >= 2 (n - 1 denoiser evaluations).
        t_1: first noisy time in (0, 1]; the gradient vanishes as t_1 -> 0 (paper Prop. 3.1).
        hard: one-hot value with the soft sample's gradient (True), or the soft sample ``p_1``.
        times: optional explicit grid ``0 = t_0 < ... < t_{n-1} <= 1`` (overrides n_steps, t_1).

    Returns:
        ``[..., K]`` tensor of ``logits.dtype``.
    """
    if kwargs:
        _check_kwargs(kwargs, "redge")
    return sample("redge", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend)


def redge_cov(logits, n_steps: int = 5, t_1: float = 0.5, hard: bool = True, *,
              times: Sequence[float] | None = None, generator=None, seed=None, backend="auto",
              **kwargs):
    """ReDGE-Cov (paper section 3.4): ReDGE from the parameter-dependent Gaussian base
    ``N(p, diag(max(p (1 - p), 0.1)))``, ``p = softmax(logits)``. Arguments as ``redge``."""
    if kwargs:
        _check_kwargs(kwargs, "redge_cov")
    return sample("redge_cov", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend)


def redge_max(logits, n_steps: int = 5, t_1: float = 0.5, hard: bool = True, *,
              times: Sequence[float] | None = None, generator=None, seed=None, backend="auto",
              **kwargs):
    """ReDGE-Max (paper section 3.3; the authors' ``reindge``): ReDGE's forward, with ReinMax's
    gradient at the last denoiser. Equals ReinMax (tau = 1) for n_steps=2, t_1=1.
    ``hard=False`` is not defined (raises NotImplementedError, as in the authors' package)."""
    if kwargs:
        _check_kwargs(kwargs, "redge_max")
    return sample("redge_max", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend)


#: The authors' name for ReDGE-Max.
reindge = redge_max


def straight_through(logits, hard: bool = True, *, generator=None, seed=None, backend="auto",
                     **kwargs):
    """Straight-Through: value ``one_hot(i)``, ``i ~ Cat(softmax(logits))``, gradient of the
    softmax. ``hard=False`` returns ``softmax(logits)``."""
    if kwargs:
        _check_kwargs(kwargs, "st")
    return sample("st", logits, hard=hard, seed=seed, generator=generator, backend=backend)


def gumbel_softmax(logits, tau: float = 0.5, hard: bool = True, *, generator=None, seed=None,
                   backend="auto", **kwargs):
    """Gumbel-Softmax: ``s = softmax((logits + G) / tau)``; ``hard=True`` gives
    ``one_hot(argmax s)`` with the gradient of ``s`` (like ``F.gumbel_softmax``)."""
    if kwargs:
        _check_kwargs(kwargs, "gumbel")
    return sample("gumbel", logits, hard=hard, tau=tau, seed=seed, generator=generator,
                  backend=backend)


def reinmax(logits, tau: float = 1.0, hard: bool = True, *, generator=None, seed=None,
            backend="auto", **kwargs):
    """ReinMax (Liu et al. 2023): value ``one_hot(i)``, ``i ~ Cat(softmax(logits))``, with the
    second-order (trapezoid) gradient; unbiased for quadratic objectives at tau = 1.
    ``hard=False`` raises NotImplementedError, as in the authors' package."""
    if kwargs:
        _check_kwargs(kwargs, "reinmax")
    return sample("reinmax", logits, hard=hard, tau=tau, seed=seed, generator=generator,
                  backend=backend)
