"""Exact expectation and gradient of ``F(theta) = E_{X ~ prod_l Cat(softmax theta_l)} [f(X)]``.

By enumeration of all ``K**L`` configurations (small problems only, default cap 1e5)::

    log pi(x) = sum_l log_softmax(theta_l)[x_l]
    F(theta)  = sum_x pi_theta(x) f(onehot(x))
    grad F    = sum_x f(x) grad pi_theta(x)        (f does not depend on theta)

``f`` maps one-hot tensors ``[..., L, K]`` to values ``[...]`` (any differentiable torch function,
batched over the leading dims). It is evaluated without autograd; the gradient is autograd of the
exact weighted sum, accumulated chunk by chunk so that memory stays bounded. Math in float64.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["exact_expectation", "exact_gradient", "enumerate_configurations", "MAX_CONFIGS"]

#: Default cap on the number of configurations ``K**L`` that may be enumerated.
MAX_CONFIGS = 100_000


def _check(theta: torch.Tensor, max_configs: int) -> tuple[int, int, int]:
    if not isinstance(theta, torch.Tensor) or theta.dim() != 2:
        raise ValueError("theta must be a 2-D tensor [L, K]")
    n_rows, k = theta.shape
    if n_rows < 1 or k < 1:
        raise ValueError(f"theta must have L >= 1 and K >= 1, got {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("theta must be finite (masked categories are not supported here)")
    total = k ** n_rows
    if total > max_configs:
        raise ValueError(f"K**L = {k}**{n_rows} = {total} configurations exceeds max_configs="
                         f"{max_configs}; use a smaller problem or raise the cap")
    return n_rows, k, total


def enumerate_configurations(n_rows: int, k: int, start: int = 0, stop: int | None = None,
                             device=None) -> torch.Tensor:
    """Category indices ``[stop - start, L]`` (int64) of configurations ``start .. stop - 1``.

    Configuration ``c`` has ``x_l = (c // K**(L-1-l)) % K`` (row 0 is the most significant digit).
    """
    stop = k ** n_rows if stop is None else stop
    c = torch.arange(start, stop, dtype=torch.int64, device=device)
    powers = k ** torch.arange(n_rows - 1, -1, -1, dtype=torch.int64, device=device)
    return (c[:, None] // powers[None, :]) % k


def _chunk_size(n_rows: int, k: int, chunk_elems: int) -> int:
    return max(1, chunk_elems // (n_rows * k))


def _exact(theta, f, max_configs, chunk_elems, want_grad):
    n_rows, k, total = _check(theta, max_configs)
    th = theta.detach().to(torch.float64).requires_grad_(want_grad)
    logp = torch.log_softmax(th, dim=-1)  # [L, K]
    rows = torch.arange(n_rows, device=theta.device)
    step = _chunk_size(n_rows, k, chunk_elems)
    value = torch.zeros((), dtype=torch.float64, device=theta.device)
    grad = torch.zeros_like(th) if want_grad else None
    for start in range(0, total, step):
        idx = enumerate_configurations(n_rows, k, start, min(total, start + step), theta.device)
        onehot = torch.nn.functional.one_hot(idx, k).to(torch.float64)  # [C, L, K]
        with torch.no_grad():
            fx = f(onehot).to(torch.float64).reshape(-1)  # [C]
        if fx.shape[0] != idx.shape[0]:
            raise ValueError(f"f must map [C, L, K] one-hots to [C] values; got {fx.shape[0]} "
                             f"values for C = {idx.shape[0]}")
        prob = torch.exp(logp[rows[None, :], idx].sum(-1))  # [C]
        part = (prob * fx).sum()
        if want_grad:
            (g,) = torch.autograd.grad(part, th, retain_graph=True)
            grad += g
        value += part.detach()
    return value, grad


def exact_expectation(theta: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor], *,
                      max_configs: int = MAX_CONFIGS, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """``E[f(X)]`` under ``prod_l Cat(softmax theta_l)``; float64 0-dim tensor.

    Args:
        theta: ``[L, K]`` finite logits.
        f: one-hots ``[C, L, K]`` (float64) -> values ``[C]``.
        max_configs: refuse problems with more than this many configurations ``K**L``.
        chunk_elems: at most this many one-hot elements are materialised at once.
    """
    return _exact(theta, f, max_configs, chunk_elems, False)[0]


def exact_gradient(theta: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor], *,
                   max_configs: int = MAX_CONFIGS, chunk_elems: int = 1 << 22,
                   return_value: bool = False):
    """Exact ``grad_theta E[f(X)]``: float64 ``[L, K]`` (rows sum to 0, the softmax gauge).

    With ``return_value=True`` returns ``(grad, value)`` with ``value = E[f(X)]``.
    Arguments as ``exact_expectation``.
    """
    value, grad = _exact(theta, f, max_configs, chunk_elems, True)
    return (grad, value) if return_value else grad
