"""Diagnostics (docs/DIAGNOSTICS.md): exact gradients by enumeration against closed forms and finite
differences, Monte-Carlo bias of each estimator against known answers (ST exact for linear f,
ReinMax unbiased for quadratic f, ST biased for quadratic f), paper Prop. 3.1, forward-sample bias,
reproducibility, backend pass-through, and the commands. Every Monte-Carlo test uses a fixed seed,
so its outcome is deterministic."""

import csv
import math
import runpy
import sys

import pytest
import torch

import redge_kernels as rk
from redge_kernels import diagnostics as dg
from redge_kernels.diagnostics import cli, plots

BACKEND = "reference"


def _theta(n_rows, k, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n_rows, k, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------- exact enumeration

def test_exact_hand_computed_bernoulli():
    # p = (1/4, 3/4); f(e_0) = 0.45^2 = 0.2025, f(e_1) = 0.55^2 = 0.3025.
    # F = 0.25 * 0.2025 + 0.75 * 0.3025 = 0.2775; dF/dtheta_1 = p0 p1 (f1 - f0) = 3/16 * 0.1.
    theta = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    grad, value = dg.exact_gradient(theta, lambda y: (y[..., 0, 1] - 0.45) ** 2, return_value=True)
    torch.testing.assert_close(value, torch.tensor(0.2775, dtype=torch.float64))
    torch.testing.assert_close(grad, torch.tensor([[-0.01875, 0.01875]], dtype=torch.float64))


def test_exact_linear_is_covariance_vector_product():
    theta = _theta(3, 4, seed=1)
    f = dg.make_objective("linear", 3, 4, seed=2)
    w = f.params["w"]
    p = torch.softmax(theta, -1)
    expected = p * (w - (w * p).sum(-1, keepdim=True))  # Cov(p_l) w_l, row by row
    grad, value = dg.exact_gradient(theta, f, return_value=True)
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(value, (w * p).sum())


def test_exact_coupled_rows_closed_form():
    # f = x_01 * x_11: F = q0 q1 (q_l = p_l[1]), dF/dtheta_0 = q1 q0 (1 - q0) (-1, 1).
    theta = _theta(2, 2, seed=3)
    q = torch.softmax(theta, -1)[:, 1]
    grad = dg.exact_gradient(theta, lambda y: y[..., 0, 1] * y[..., 1, 1])
    sign = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    expected = torch.stack([q[1] * q[0] * (1 - q[0]) * sign, q[0] * q[1] * (1 - q[1]) * sign])
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("name", ["quadratic", "poly", "randquad"])
def test_exact_matches_finite_differences(name):
    theta = _theta(3, 3, seed=4)
    f = dg.make_objective(name, 3, 3, seed=5)
    grad = dg.exact_gradient(theta, f)
    eps = 1e-6
    fd = torch.zeros_like(theta)
    for i in range(3):
        for j in range(3):
            e = torch.zeros_like(theta)
            e[i, j] = eps
            fd[i, j] = (dg.exact_expectation(theta + e, f)
                        - dg.exact_expectation(theta - e, f)) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(grad.sum(-1), torch.zeros(3, dtype=torch.float64), rtol=0,
                               atol=1e-12)


def test_exact_chunking_and_enumeration_order():
    theta = _theta(5, 3, seed=6)
    f = dg.make_objective("randquad", 5, 3, seed=7)
    g1, v1 = dg.exact_gradient(theta, f, return_value=True)
    g2, v2 = dg.exact_gradient(theta, f, return_value=True, chunk_elems=7 * 15)  # 7 configs a chunk
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(v1, v2)
    idx = dg.enumerate_configurations(2, 3)
    assert idx.tolist() == [[a, b] for a in range(3) for b in range(3)]


def test_exact_refuses_too_many_configurations():
    with pytest.raises(ValueError, match="exceeds max_configs"):
        dg.exact_gradient(torch.zeros(17, 2), lambda y: y.sum((-1, -2)))  # 2**17 > 1e5


# ----------------------------------------------------------------------------- Monte-Carlo bias

def test_hard_st_is_exact_for_linear_f():
    theta = _theta(4, 3, seed=8)
    f = dg.make_objective("linear", 4, 3, seed=9)
    exact = dg.exact_gradient(theta, f)
    grads, _, _ = dg.estimator_gradients("st", theta, f, 512, seed=0, backend=BACKEND)
    # Every replicate equals Cov(p) w: unbiased with zero variance (fp32 sampler).
    torch.testing.assert_close(grads, exact.expand_as(grads), rtol=1e-5, atol=1e-6)
    stats = dg.gradient_stats(grads, exact)
    assert stats.max_abs_z < dg.z_threshold(theta.numel())
    assert stats.cosine > 1 - 1e-9


@pytest.mark.parametrize("name", ["quadratic", "randquad"])
def test_reinmax_tau1_is_unbiased_for_quadratic_f(name):
    theta = _theta(3, 3, seed=10)
    f = dg.make_objective(name, 3, 3, seed=11)
    exact = dg.exact_gradient(theta, f)
    grads, _, _ = dg.estimator_gradients(("reinmax", {"tau": 1.0}), theta, f, 4096, seed=1,
                                         backend=BACKEND)
    stats = dg.gradient_stats(grads, exact)
    assert stats.variance > 0
    assert stats.max_abs_z < dg.z_threshold(theta.numel()), stats
    assert stats.bias2_corr < 0.01 * stats.exact_norm ** 2 + 3 * stats.variance / 4096


@pytest.mark.parametrize("name", ["quadratic", "randquad"])
def test_st_is_biased_for_quadratic_f(name):
    theta = _theta(3, 3, seed=10)
    f = dg.make_objective(name, 3, 3, seed=11)
    exact = dg.exact_gradient(theta, f)
    grads, _, _ = dg.estimator_gradients("st", theta, f, 4096, seed=1, backend=BACKEND)
    stats = dg.gradient_stats(grads, exact)
    assert stats.max_abs_z > 3 * dg.z_threshold(theta.numel()), stats
    assert stats.bias2_corr > 10 * stats.variance / 4096, stats  # bias well above the MC noise


def test_redge_gradient_vanishes_as_t1_goes_to_zero():
    # Paper Prop. 3.1: ||J_theta T_0|| -> 0 almost surely as t_1 -> 0 (fixed n_steps). From t_1 = 1
    # down to ~0.2 the norm first grows (c_1 = alpha_1 / sigma_1^2 amplifies); below, it collapses.
    theta = _theta(6, 3, seed=12)
    f = dg.make_objective("randquad", 6, 3, seed=13)
    exact = dg.exact_gradient(theta, f)
    medians, means, vanishing = [], [], []
    for t_1 in (0.2, 0.1, 0.05, 0.01):
        cfg = rk.SamplerConfig("redge", n_steps=3, t_1=t_1)
        grads, _, _ = dg.estimator_gradients(cfg, theta, f, 1024, seed=2, backend=BACKEND)
        s = dg.gradient_stats(grads, exact)
        medians.append(s.grad_norm_median)
        means.append(s.grad_norm)
        vanishing.append(s.frac_vanishing)
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    assert medians[-1] < 1e-6 * medians[0] and means[-1] < 1e-3 * means[0], (medians, means)
    assert all(a <= b for a, b in zip(vanishing, vanishing[1:])) and vanishing[-1] > 0.99


def test_gradient_stats_definitions():
    exact = torch.tensor([1.0, -1.0], dtype=torch.float64)
    grads = torch.tensor([[2.0, -1.0], [0.0, -1.0], [1.0, 1.0], [1.0, -3.0]], dtype=torch.float64)
    s = dg.gradient_stats(grads, exact, batch=2)
    assert s.bias == 0.0  # the mean is exact
    assert s.variance == pytest.approx(2.0 / 3 + 8.0 / 3)  # unbiased per-entry variances, summed
    assert s.mse == pytest.approx((1 + 1 + 4 + 4) / 4)
    assert s.mse_batch == pytest.approx(-s.variance / 4 + s.variance / 2)
    assert s.cosine == pytest.approx(1.0)


# ----------------------------------------------------------------------------- forward samples

@pytest.mark.parametrize("cfg", ["st", ("gumbel", {"tau": 0.5}), ("reinmax", {"tau": 1.0}),
                                 ("redge", {"n_steps": 2, "t_1": 1.0})])
def test_forward_samples_of_exact_samplers_are_within_sampling_error(cfg):
    theta = _theta(5, 4, seed=14)
    f = dg.make_objective("linear", 5, 4)
    _, index, _ = dg.estimator_gradients(cfg, theta, f, 2048, seed=3, backend=BACKEND)
    fb = dg.forward_sample_bias(index, theta)
    assert fb.p_value > 1e-3 and fb.max_abs_z < dg.z_threshold(theta.numel()), fb
    assert fb.tv < 2.5 * fb.tv_null, fb


def test_redge_forward_bias_is_real_and_shrinks_with_steps():
    # docs/SPEC.md note: Bernoulli p = 0.18 at n = 3, t_1 = 0.1 is never sampled as 1.
    p = 0.18
    theta = torch.tensor([[0.0, math.log(p / (1 - p))]], dtype=torch.float64)
    f = lambda y: y[..., 0, 1]  # noqa: E731
    tvs = []
    for n in (3, 5, 9):
        cfg = rk.SamplerConfig("redge", n_steps=n, t_1=0.1)
        _, index, _ = dg.estimator_gradients(cfg, theta, f, 4096, seed=4, backend=BACKEND)
        fb = dg.forward_sample_bias(index, theta)
        if n == 3:
            assert fb.freq[0, 1].item() == 0.0
        if n < 9:
            assert fb.p_value < 1e-6 and fb.tv > 3 * fb.tv_null, fb
        tvs.append(fb.tv)
    assert tvs[0] > tvs[1] > tvs[2], tvs  # about 0.18, 0.05, 0.017


# ----------------------------------------------------------------------------- reproducibility

def test_same_seed_same_results():
    theta = _theta(4, 3, seed=15)
    f = dg.make_objective("poly", 4, 3, power=2)
    cfg = rk.SamplerConfig("redge_max", n_steps=4, t_1=0.4)
    a = dg.evaluate(cfg, theta, f, 256, seed=5, backend=BACKEND)
    b = dg.evaluate(cfg, theta, f, 256, seed=5, backend=BACKEND)
    c = dg.evaluate(cfg, theta, f, 256, seed=6, backend=BACKEND)
    assert a == b
    assert a["mse"] != c["mse"]


@pytest.mark.parametrize("cfg", ["st", ("gumbel", {"tau": 0.5}), ("reinmax", {"tau": 0.7}),
                                 ("redge", {"n_steps": 3, "t_1": 0.3}),
                                 ("redge_cov", {"n_steps": 4, "t_1": 0.5}),
                                 ("redge_max", {"n_steps": 4, "t_1": 0.4})])
def test_backend_is_passed_through(cfg):
    # backend="auto" runs the fused CPU kernel when it is built (else the reference): the replicated
    # call must give the reference's samples exactly and its gradients to fp32 tolerance.
    theta = _theta(4, 3, seed=15)
    f = dg.make_objective("randquad", 4, 3, seed=16)
    ga, ia, _ = dg.estimator_gradients(cfg, theta, f, 64, seed=5, backend=BACKEND)
    gb, ib, _ = dg.estimator_gradients(cfg, theta, f, 64, seed=5, backend="auto")
    assert torch.equal(ia, ib)
    torch.testing.assert_close(ga, gb, rtol=1.3e-6, atol=1e-5)


# ----------------------------------------------------------------------------- command

def test_quick_sweep_command_writes_its_files(tmp_path, capsys):
    # In-process (the module entry point is a two-line wrapper of cli.main); CI also runs
    # `python -m redge_kernels.diagnostics sweep --quick`.
    out = tmp_path / "diag"
    rc = cli.main(["sweep", "--quick", "--samples", "256", "--methods", "st,reinmax,redge",
                   "--out", str(out), "-q"])
    assert rc == 0
    assert "Best config per method" not in capsys.readouterr().err
    for name in ("results.csv", "results.md", "best.csv", "meta.json"):
        assert (out / name).stat().st_size > 0
    text = (out / "results.md").read_text()
    assert "Best config per method" in text and "redge(n_steps=3,t_1=0.1)" in text
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1 + 3 + 3 * 4  # st, reinmax x 3 taus, redge x (3 n_steps x 4 t_1)
    if plots.available():
        for name in ("heatmap_redge.png", "prop31_gradnorm.png", "baselines_tau.png",
                     "fig1_ddim_map.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point(monkeypatch, capsys):
    # `python -m redge_kernels.diagnostics` runs __main__, which exits with cli.main's status.
    monkeypatch.setattr(sys, "argv", ["redge_kernels.diagnostics", "sweep", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("redge_kernels.diagnostics", run_name="__main__")
    assert exc.value.code == 0 and "--quick" in capsys.readouterr().out


def test_compare_command_prints_every_estimator(capsys):
    rc = cli.main(["compare", "--objective", "randquad", "--L", "2", "--K", "3", "--samples", "256",
                   "--backend", BACKEND])
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("st", "gumbel(tau=0.5)", "reinmax(tau=1.0)", "redge(n_steps=3,t_1=0.5)",
                  "redge_cov(n_steps=5,t_1=0.5)", "redge_max(n_steps=5,t_1=0.5)"):
        assert f"| {label} |" in out
