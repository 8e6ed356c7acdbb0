"""Public estimators, drop-in compatible with the authors' ``redge`` package (names and arguments).

Every function maps logits ``[..., K]`` (any leading dims, any strides, fp16/bf16/fp32/fp64) to a
sample of the same shape and dtype: the exact one-hot for ``hard=True`` (with the estimator's
gradient), the relaxed sample for ``hard=False``. Keyword-only extras:

* ``generator`` (torch.Generator on the logits' device) or ``seed`` (int in [0, 2**63)): the noise
  (``noise.py``) is a pure function of this seed, identical on every backend;
* ``backend``: ``"auto"`` (fused kernel for the device if built, else the reference),
  ``"reference"``, ``"cpu"`` (C++), ``"triton"`` (GPU);
* ``return_soft``: also return the soft sample of the same call (``(y, y_soft)``), where the
  authors' package attaches it as ``y.soft``.
* ``group``: a ``torch.distributed`` ProcessGroup whose ranks hold contiguous vocabulary shards
  of the logits, in rank order (``redge_kernels.distributed``); a DTensor sharded on its last dim
  takes that path too. Samples equal the unsharded call's with the same seed.

Numbers are accepted as ``numbers.Integral`` / ``numbers.Real`` or 0-dim tensors (``_validation``);
the authors' ``reindge_fn`` argument is accepted and ignored (the estimator is built in). Every
argument is checked before the seed is drawn: a refused call leaves the RNG state unchanged.
Autograd (reverse, forward mode, double backward, ``torch.func``, ``torch.compile``) is the same
on every backend: see ``ops`` and the README.

Rows whose logits are all ``-inf`` give an all-zero sample and zero gradient; rows holding NaN or
``+inf`` give NaN there; neither affects other rows.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import _backends, distributed, reference
from ._constants import DIFFUSION_METHODS, METHOD_IDS
from ._validation import check_backend, check_hard, check_logits, check_seed, check_tau, seed_tensor
from .schedule import Schedule, make_schedule

__all__ = ["redge", "redge_cov", "redge_max", "reindge", "straight_through", "gumbel_softmax",
           "reinmax", "sample"]

#: Hyperparameters of the other samplers (and the authors' ``reindge_fn``), accepted and ignored
#: so that one call site can drive every entry of ``SAMPLERS`` (as with the authors' package).
#: Anything else is a TypeError.
_FAMILY_KWARGS = {"n_steps", "t_1", "tau", "times", "reindge_fn"}

#: The sample ``return_soft`` gives beside each method's hard one: the method's own soft sample
#: (``hard=False``, same seed), ReDGE's ``p_1`` for ReDGE-Max (same forward), and
#: ``softmax(logits)`` for ReinMax (as the authors' ``.soft``).
_SOFT_OF = {"st": "st", "gumbel": "gumbel", "redge": "redge", "redge_cov": "redge_cov",
            "redge_max": "redge", "reinmax": "st"}


def _check_kwargs(kwargs, fn):
    unknown = set(kwargs) - _FAMILY_KWARGS
    if unknown:
        raise TypeError(f"{fn}() got unexpected keyword argument(s) {sorted(unknown)}")


# Baselines have no time grid; the kernels still receive a (unused) 2-row table.
_BASELINE_SCHEDULE = Schedule([1.0, 0.0], [0.0, 1.0])

# Eager-mode memo of the usual ``times=None`` schedules (never consulted under torch.compile).
_SCHEDULES: dict = {}


def _schedule(n_steps, t_1, times) -> Schedule:
    """``make_schedule(n_steps, t_1, times)``, memoised in eager mode for plain Python numbers
    (the key holds their types, so e.g. ``n_steps=2.0`` still reaches the check that rejects
    it; only validated arguments are ever stored)."""
    if times is not None or torch.compiler.is_compiling() \
            or type(n_steps) is not int or type(t_1) not in (int, float):
        return make_schedule(n_steps, t_1, times)
    key = (n_steps, type(t_1), t_1)
    sched = _SCHEDULES.get(key)
    if sched is None:
        sched = make_schedule(n_steps, t_1)
        if len(_SCHEDULES) > 1024:
            _SCHEDULES.clear()
        _SCHEDULES[key] = sched
    return sched


def _run(name: str, method: str, phi, seed_t, schedule, hard: bool, tau: float):
    """``(y, index)`` on 2-D ``phi`` from backend ``name`` (resolved)."""
    if name == "reference":
        return reference.sample(method, phi, seed_t, schedule, hard, tau)
    sched = schedule if method in DIFFUSION_METHODS else _BASELINE_SCHEDULE
    cdtype = torch.float64 if phi.dtype == torch.float64 else torch.float32
    coefs = sched.table(phi.device, dtype=cdtype)
    return _backends.run_fused(name, phi, seed_t, coefs, METHOD_IDS[method], hard, tau)


def sample(method: str, logits: torch.Tensor, *, hard: bool = True, tau: float = 1.0,
           schedule: Schedule | None = None, seed=None, generator=None, backend: str = "auto",
           return_index: bool = False, return_soft: bool = False, group=None):
    """Run estimator ``method`` (a key of ``_constants.METHOD_IDS``) on ``logits``.

    Returns ``y`` (shape and dtype of ``logits``); with ``return_soft`` also ``y_soft`` (same
    shape and dtype: the soft sample of the same noise, see ``_SOFT_OF``; a second kernel call);
    with ``return_index`` also ``index`` (the sampled category, int64, shape
    ``logits.shape[:-1]``, -1 on all-masked or NaN rows). Extras come in that order:
    ``(y, y_soft, index)``.
    """
    fn = method
    if group is not None or distributed.is_sharded(logits):
        if return_soft:
            raise NotImplementedError(f"{fn}: return_soft is not supported on a vocabulary-"
                                      "parallel call (group= or a sharded DTensor)")
        return distributed.sample(method, logits, group=group, hard=hard, tau=tau,
                                  schedule=schedule, seed=seed, generator=generator,
                                  backend=backend, return_index=return_index)
    if method not in METHOD_IDS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {sorted(METHOD_IDS)}")
    check_logits(logits, fn)
    hard = check_hard(hard, fn)
    tau = check_tau(tau, fn)
    check_backend(backend, fn)
    return_index = check_hard(return_index, fn, "return_index")
    return_soft = check_hard(return_soft, fn, "return_soft")
    if method in ("reinmax", "redge_max") and not hard:
        raise NotImplementedError(f"{fn}: hard=False is not defined for {method} (its gradient "
                                  "is tied to the hard sample); use hard=True")
    if method in DIFFUSION_METHODS and not isinstance(schedule, Schedule):
        raise ValueError(f"{fn}: a schedule (redge_kernels.Schedule) is required")
    seed = check_seed(seed, generator, logits, fn)
    shape = logits.shape
    flat = logits.dim() != 2  # 2-D logits are the ops' rows as they are (no view nodes)
    phi = logits.reshape(-1, shape[-1]) if flat else logits
    # Resolved before the seed is drawn: an unavailable backend leaves the RNG untouched.
    name = _backends.resolve(backend, phi, fn) if phi.shape[0] > 0 else "reference"
    seed_t = seed_tensor(logits, seed, generator)
    y, index = _run(name, method, phi, seed_t, schedule, hard, tau)
    out = [y.reshape(shape) if flat else y]
    if return_soft:
        soft = y if not hard else _run(name, _SOFT_OF[method], phi, seed_t, schedule, False, tau)[0]
        out.append(soft.reshape(shape) if flat else soft)
    if return_index:
        out.append(index.reshape(shape[:-1]) if flat else index)
    return out[0] if len(out) == 1 else tuple(out)


_RETURNS = """
    Returns:
        ``[..., K]`` tensor of ``logits.dtype``; ``(y, y_soft)`` with ``return_soft=True``.
"""


def redge(logits, n_steps: int = 3, t_1: float = 0.5, hard: bool = True, *,
          times: Sequence[float] | None = None, generator=None, seed=None, backend="auto",
          group=None, return_soft: bool = False, **kwargs):
    """ReDGE (paper Alg. 1, eta = 0): ``n_steps - 1`` closed-form DDIM denoising steps from Gaussian
    noise, ending in a Gumbel-max sample of the last denoiser; straight-through at the last step.

    Args:
        logits: ``[..., K]`` float tensor.
        n_steps: number of time points, 2 <= n <= ``MAX_N_STEPS`` (n - 1 denoiser evaluations).
        t_1: first noisy time in [``MIN_T1``, 1]; the gradient vanishes as t_1 -> 0
            (paper Prop. 3.1).
        hard: one-hot value with the soft sample's gradient (True), or the soft sample ``p_1``.
        times: optional explicit grid ``0 = t_0 < ... < t_{n-1} <= 1`` (overrides n_steps, t_1).
        return_soft: also return ``p_1`` of the same noise (the authors' ``y.soft``).
    """ + _RETURNS.strip("\n") + """
    """
    if kwargs:
        _check_kwargs(kwargs, "redge")
    return sample("redge", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend, return_soft=return_soft, group=group)


def redge_cov(logits, n_steps: int = 5, t_1: float = 0.5, hard: bool = True, *,
              times: Sequence[float] | None = None, generator=None, seed=None, backend="auto",
              group=None, return_soft: bool = False, **kwargs):
    """ReDGE-Cov (paper section 3.4): ReDGE from the parameter-dependent Gaussian base
    ``N(p, diag(max(p (1 - p), 0.1)))``, ``p = softmax(logits)``. Arguments as ``redge``."""
    if kwargs:
        _check_kwargs(kwargs, "redge_cov")
    return sample("redge_cov", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend, return_soft=return_soft, group=group)


def redge_max(logits, n_steps: int = 5, t_1: float = 0.5, hard: bool = True, *,
              times: Sequence[float] | None = None, generator=None, seed=None, backend="auto",
              group=None, return_soft: bool = False, **kwargs):
    """ReDGE-Max (paper section 3.3; the authors' ``reindge``): ReDGE's forward, with ReinMax's
    gradient at the last denoiser. Equals ReinMax (tau = 1) for n_steps=2, t_1=1.
    ``hard=False`` is not defined (raises NotImplementedError, as in the authors' package);
    ``return_soft`` gives ReDGE's ``p_1`` of the same noise (with ReDGE's gradient)."""
    if kwargs:
        _check_kwargs(kwargs, "redge_max")
    return sample("redge_max", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend, return_soft=return_soft, group=group)


def reindge(logits, reindge_fn=None, n_steps: int = 5, t_1: float = 0.5, hard: bool = True, *,
            times: Sequence[float] | None = None, generator=None, seed=None, backend="auto",
            group=None, return_soft: bool = False, **kwargs):
    """ReDGE-Max under the authors' name and signature ``reindge(logits, reindge_fn, n_steps,
    t_1, hard)``: ``reindge_fn`` (their ``ddim_mod``) is accepted positionally or by keyword and
    ignored, since the estimator is built in; it must be a callable or None (a number there is
    refused: call ``redge_max(logits, n_steps, t_1)`` for positional n_steps). Otherwise
    exactly ``redge_max``."""
    if reindge_fn is not None and not callable(reindge_fn):
        raise TypeError(f"reindge: reindge_fn (ignored) must be a callable or None, got "
                        f"{type(reindge_fn).__name__}; for positional n_steps, t_1 call "
                        "redge_max(logits, n_steps, t_1)")
    if kwargs:
        _check_kwargs(kwargs, "reindge")
    return sample("redge_max", logits, hard=hard, schedule=_schedule(n_steps, t_1, times),
                  seed=seed, generator=generator, backend=backend, return_soft=return_soft, group=group)


def straight_through(logits, hard: bool = True, *, generator=None, seed=None, backend="auto",
                     group=None, return_soft: bool = False, **kwargs):
    """Straight-Through: value ``one_hot(i)``, ``i ~ Cat(softmax(logits))``, gradient of the
    softmax. ``hard=False`` returns ``softmax(logits)`` (also ``return_soft``'s sample)."""
    if kwargs:
        _check_kwargs(kwargs, "st")
    return sample("st", logits, hard=hard, seed=seed, generator=generator, backend=backend,
                  return_soft=return_soft, group=group)


def gumbel_softmax(logits, tau: float = 0.5, hard: bool = True, *, generator=None, seed=None,
                   backend="auto", group=None, return_soft: bool = False, **kwargs):
    """Gumbel-Softmax: ``s = softmax((logits + G) / tau)``; ``hard=True`` gives
    ``one_hot(argmax s)`` with the gradient of ``s`` (like ``F.gumbel_softmax``);
    ``return_soft`` also gives ``s``."""
    if kwargs:
        _check_kwargs(kwargs, "gumbel")
    return sample("gumbel", logits, hard=hard, tau=tau, seed=seed, generator=generator,
                  backend=backend, return_soft=return_soft, group=group)


def reinmax(logits, tau: float = 1.0, hard: bool = True, *, generator=None, seed=None,
            backend="auto", group=None, return_soft: bool = False, **kwargs):
    """ReinMax (Liu et al. 2023): value ``one_hot(i)``, ``i ~ Cat(softmax(logits))``, with the
    second-order (trapezoid) gradient; unbiased for quadratic objectives at tau = 1.
    ``hard=False`` raises NotImplementedError, as in the authors' package; ``return_soft``
    gives ``softmax(logits)`` (the authors' ``.soft``)."""
    if kwargs:
        _check_kwargs(kwargs, "reinmax")
    return sample("reinmax", logits, hard=hard, tau=tau, seed=seed, generator=generator,
                  backend=backend, return_soft=return_soft, group=group)
