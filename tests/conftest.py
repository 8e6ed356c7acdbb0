"""Test session set-up, the backend fixture and the one case table the contract tests share.

Without a CUDA device, the Triton kernels are exercised by Triton's CPU interpreter; the switch must
be set before triton decorates any kernel, hence here, before any test module imports the package.

``backend`` runs a test on every backend usable here: ``reference``, ``cpu`` (the C++ extension)
and ``triton`` (on a GPU, or on CPU tensors under the interpreter, then with the id
``triton-interpreter`` so that ``-k "not interpreter"`` leaves it out; keep those shapes tiny).
``CASES`` is every (method, hard) pair the public API defines, with the hyperparameters used.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

#: Every (method, hard) the API defines (ReinMax and ReDGE-Max are hard only).
CASES = [("st", True), ("st", False), ("gumbel", True), ("gumbel", False), ("reinmax", True),
         ("redge", True), ("redge", False), ("redge_cov", True), ("redge_cov", False),
         ("redge_max", True)]
#: Hyperparameters per method (a grid of 4 points for the diffusion ones: 3 denoisers).
CASE_KW = {"st": {}, "gumbel": dict(tau=0.7), "reinmax": dict(tau=1.3),
           "redge": dict(n_steps=4, t_1=0.4), "redge_cov": dict(n_steps=4, t_1=0.6),
           "redge_max": dict(n_steps=4, t_1=0.5)}
#: The device each backend's tests put their tensors on.
INTERPRETED = not torch.cuda.is_available()


def case_id(case) -> str:
    method, hard = case
    return f"{method}-{'hard' if hard else 'soft'}"


def _backend_params():
    import redge_kernels as rk
    usable = rk.available_backends()
    params = [pytest.param("reference", id="reference")]
    for name in ("cpu", "triton"):
        label = "triton-interpreter" if name == "triton" and INTERPRETED else name
        marks = [] if name in usable else [pytest.mark.skip(reason=f"backend {name!r} is not "
                                                            "usable in this process")]
        params.append(pytest.param(name, id=label, marks=marks))
    return params


#: Under the (slow) interpreter, the cases run on Triton: one per kernel family and autograd
#: rule (one-pass baselines, ReinMax's rule, the diffusion chain, ReDGE-Max's correction).
INTERPRETER_CASES = [("gumbel", True), ("reinmax", True), ("redge_cov", False), ("redge_max", True)]


def pytest_generate_tests(metafunc):
    """The ``backend`` argument: a test taking it runs on every backend (tensors on
    ``device_of(backend)``); one taking ``backend`` and ``case`` on every backend x ``CASES``
    pair (``INTERPRETER_CASES`` only, on the Triton interpreter). A test module that defines its
    own ``backend`` parametrization is left alone."""
    names = set(metafunc.fixturenames)
    if "backend" not in names or any(m.name == "parametrize" and "backend" in str(m.args[0])
                                     for m in metafunc.definition.iter_markers()):
        return
    if "case" not in names:
        metafunc.parametrize("backend", _backend_params())
        return
    params = []
    for b in _backend_params():
        name, label = b.values[0], b.id
        for case in CASES:
            if label == "triton-interpreter" and case not in INTERPRETER_CASES:
                continue
            params.append(pytest.param(name, case, id=f"{label}-{case_id(case)}", marks=b.marks))
    metafunc.parametrize("backend,case", params)


def device_of(backend: str) -> str:
    return "cuda" if backend == "triton" and not INTERPRETED else "cpu"


def run(method, x, hard=True, backend="reference", **kw):
    """The public function of ``method`` on ``x`` with the case table's hyperparameters."""
    import redge_kernels as rk
    return rk.SAMPLERS[method](x, hard=hard, backend=backend, **CASE_KW[method], **kw)
