"""Test session set-up, the backend fixture and the one case table the backend tests share.

Without a CUDA device, the Triton kernels are exercised by Triton's CPU interpreter; the switch must
be set before triton decorates any kernel, hence here, before any test module imports the package.

The case table: ``CASES`` is every (method, hard) pair the public API defines and ``CASE_KW`` the
hyperparameters used by default; ``TABLE`` crosses them with further hyperparameters and shapes
into ``Case`` records, each tagged by the backend path it is sized for (``TAGS``): ``small``
(interpreter-sized), ``tiled`` (a Triton tile width forcing the tiled path), ``lanes`` (K from 1 to
one above the CPU lane kernels' threshold ``LANE_MAX_K``, row counts not a multiple of the lane
block) and ``rows`` (the CPU row kernels, K = 64 to 33000). ``BACKEND_TAGS`` says which tags each
backend takes.

The ``backend`` fixture runs a test on every backend usable here: ``reference``, ``cpu`` (the C++
extension) and ``triton`` (on a GPU, or on CPU tensors under the interpreter, then with the id
``triton-interpreter`` so that ``-k "not interpreter"`` leaves it out; keep those shapes tiny).
A test taking ``backend`` and ``case`` runs on every backend x ``CASES`` pair (``INTERPRETER_CASES``
only, on the Triton interpreter); one taking ``backend`` and ``<check>_case`` (a ``Case.check`` of
``CHECKS``) runs on every fused backend x the cases of ``TABLE`` for that check which carry a tag
the backend takes. Every id names the method, so ``python -m pytest tests -k redge_cov`` selects
one estimator's cases on every backend.
"""

import os
from dataclasses import dataclass, field

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
METHODS = tuple(CASE_KW)
DIFFUSION = ("redge", "redge_cov", "redge_max")
#: The device each backend's tests put their tensors on.
INTERPRETED = not torch.cuda.is_available()

#: csrc/ops_cpu.cpp kLaneMaxK*: the largest K that runs on the CPU lane kernels, per method.
LANE_MAX_K = {"st": 32, "gumbel": 24, "reinmax": 32, "redge": 48, "redge_cov": 48, "redge_max": 48}
TAGS = ("small", "tiled", "lanes", "rows")
#: The tags each fused backend takes, by test id: the interpreter only the small ones.
BACKEND_TAGS = {"cpu": {"small", "lanes", "rows"}, "triton": set(TAGS),
                "triton-interpreter": {"small", "tiled"}}
#: ``Case.check``: the test of tests/test_fused_backends.py a case feeds.
CHECKS = ("match", "schedule", "tau", "masks")


def case_id(case) -> str:
    method, hard = case
    return f"{method}-{'hard' if hard else 'soft'}"


def _kw_id(name, value) -> str:
    if name == "times":
        return f"grid{len(value)}"
    return {"n_steps": "n", "t_1": "t", "tau": "tau"}[name] + f"{value:g}"


@dataclass(frozen=True)
class Case:
    """One fused-vs-reference case: estimator ``method`` / ``hard`` on fp32 logits
    ``scale * randn(rows, k)``, hyperparameters ``CASE_KW[method]`` updated by ``kw`` ((name, value)
    pairs: ``n_steps``, ``t_1``, ``times`` for an explicit grid, ``tau``), ``block`` the Triton tile
    width (None: the launcher's own), ``tags`` the backend paths it is sized for, ``seeds`` (data
    seed, noise seed) where a case keeps fixed inputs (default: a function of the shape)."""
    check: str
    method: str
    hard: bool
    rows: int
    k: int
    tags: frozenset
    kw: tuple = ()
    block: int | None = None
    scale: float = 2.0
    seeds: tuple = ()
    hyper: dict = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "hyper", {**CASE_KW[self.method], **dict(self.kw)})

    @property
    def id(self) -> str:
        parts = [case_id((self.method, self.hard)), f"{self.rows}x{self.k}"]
        parts += [_kw_id(n, v) for n, v in self.kw]
        if self.block is not None:
            parts.append(f"block{self.block}")
        return "-".join(parts)

    @property
    def tau(self) -> float:
        return float(self.hyper.get("tau", 1.0))

    def schedule(self):
        """The ``Schedule`` of a diffusion method; the two-point baseline table otherwise."""
        from redge_kernels.schedule import Schedule, grid_schedule, linear_schedule
        if self.method not in DIFFUSION:
            return Schedule([1.0, 0.0], [0.0, 1.0])
        if "times" in self.hyper:
            return grid_schedule(self.hyper["times"])
        return linear_schedule(self.hyper["n_steps"], self.hyper["t_1"])


#: The hyperparameters each method reads.
_HYPER = {m: ("n_steps", "t_1", "times") if m in DIFFUSION
          else ("tau",) if m in ("gumbel", "reinmax") else () for m in METHODS}


def _cases(check, shapes, cases=CASES, kw=(), **extra):
    """``Case`` records of ``check`` for every (method, hard) of ``cases`` x ``shapes``, a list
    of (rows, k, tags) where k may be a function of the method."""
    out = []
    for method, hard in cases:
        own = tuple((n, v) for n, v in kw if n in _HYPER[method])
        for rows, k, tags in shapes:
            k = k(method) if callable(k) else k
            out.append(Case(check, method, hard, rows, k, frozenset(tags), own, **extra))
    return out


def _match_cases():
    """Default hyperparameters: awkward K (1, 2, 3, odd) and the CPU row kernels (K = 250, 33000),
    one Triton block (K = 2, K < block and not a power of two), the lane kernels' threshold (a
    partial block; several blocks and a partial one), the tiled path (K = block + 1 for every
    case; three tiles with a tail once per method)."""
    awkward = [(r, k, {"lanes"}) for r, k in [(5, 1), (6, 2), (7, 3), (9, 17)]]
    rows = [(4, 250, {"rows"}), (3, 33000, {"rows"})]
    small = [(4, 2, {"small"}), (4, 37, {"small"})]
    lane_k = [1, 2, 3, 9, LANE_MAX_K.get, lambda m: LANE_MAX_K[m] + 1]
    lanes = [(r, k, {"lanes"}) for k in lane_k for r in (21, 70)]
    tiled_kw = (("n_steps", 3), ("t_1", 0.6))
    out = _cases("match", awkward + rows + small + lanes)
    out += _cases("match", [(2, 17, {"tiled"})], kw=tiled_kw, block=16)
    once = [(m, m in ("st", "redge", "reinmax", "redge_max")) for m in METHODS]
    return out + _cases("match", [(2, 45, {"tiled"})], once, tiled_kw, block=16)


def _schedule_cases():
    """The diffusion estimators, hard, on other grids: n = 2 and t_1 = 1 (c_1 = 0), t_1 near 0
    (c_1 ~ 1e4: no overflow), long and explicit grids."""
    shapes = {"lanes": ((6, 40), 1.0), "rows": ((5, 64), 3.0), "small": ((3, 19), 2.0)}
    # Fixed inputs. At 6 x 40 with t_1 = 0.1 some ReDGE-Cov gradients cancel to ~1e-7 from much
    # larger terms and the fp32 reference itself is then off by up to ~2e-5 (above assert_close's
    # atol for about one draw in four); tests/test_cpu_lanes.py measures that regime against fp64.
    # At 5 x 64 (row kernels), c_1 ~ 1e4: a 1-ulp difference between the forward's and the
    # backward's x_1 moves the gradient visibly (docs/DESIGN.md "Bitwise recompute").
    grids = [((("n_steps", 2), ("t_1", 1.0)), ("lanes", "small")),
             ((("n_steps", 3), ("t_1", 0.1)), ("lanes",)),
             ((("n_steps", 7), ("t_1", 0.9)), ("lanes",)),
             ((("n_steps", 4), ("t_1", 0.01)), ("small",)),
             ((("times", (0.0, 0.01, 0.5, 1.0)),), ("rows",)),
             ((("times", (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),), ("small",))]
    out = []
    for kw, tags in grids:
        for tag in tags:
            (rows, k), scale = shapes[tag]
            seeds = (kw[0][1], 5) if tag == "lanes" else (0, 9) if tag == "rows" else ()
            out += _cases("schedule", [(rows, k, {tag})], [(m, True) for m in DIFFUSION], kw,
                          scale=scale, seeds=seeds)
    return out


def _table():
    out = _match_cases() + _schedule_cases()
    for tau in (0.25, 1.0, 3.0):
        out += _cases("tau", [(27, 6, {"lanes"})], [("gumbel", True), ("reinmax", True)],
                      (("tau", tau),))
    # random -inf entries, empty, NaN / +inf and single-entry rows (_masked_logits)
    out += _cases("masks", [(8, 23, {"lanes"}), (8, 64, {"rows"}), (21, 3, {"lanes"}),
                            (21, 9, {"lanes"}), (5, 21, {"small"})], kw=(("n_steps", 3),))
    out += _cases("masks", [(5, 21, {"tiled"})], kw=(("n_steps", 3),), block=16)
    ids = [(c.check, c.id) for c in out]
    assert len(ids) == len(set(ids)), "case ids must be unique per check"
    return out


#: Every fused-vs-reference case (``Case``), all checks.
TABLE = _table()


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


def _table_params(check):
    """(backend, Case) params of ``check``: each fused backend x the cases with a tag it takes."""
    params = []
    for b in _backend_params()[1:]:
        name, label = b.values[0], b.id
        for case in TABLE:
            if case.check == check and case.tags & BACKEND_TAGS[label]:
                params.append(pytest.param(name, case, id=f"{label}-{case.id}", marks=b.marks))
    return params


def pytest_generate_tests(metafunc):
    """The ``backend`` argument: a test taking it runs on every backend (tensors on
    ``device_of(backend)``); one taking ``backend`` and ``case`` on every backend x ``CASES``
    pair (``INTERPRETER_CASES`` only, on the Triton interpreter); one taking ``backend`` and
    ``<check>_case`` on ``_table_params(check)``. A test module that defines its own ``backend``
    parametrization is left alone."""
    names = set(metafunc.fixturenames)
    if "backend" not in names or any(m.name == "parametrize" and "backend" in str(m.args[0])
                                     for m in metafunc.definition.iter_markers()):
        return
    check = next((c for c in CHECKS if f"{c}_case" in names), None)
    if check is not None:
        metafunc.parametrize(f"backend,{check}_case", _table_params(check))
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


#: The longest test modules, collected first (in this order), so that the pytest-xdist workers
#: of scripts/test.sh (``--dist loadscope``: each module whole in one worker) start them first
#: and finish together instead of one worker running the compile check alone at the end.
LONGEST_MODULES = ("test_triton_compile.py", "test_triton_split.py", "test_triton_paths.py",
                   "test_bench_harness.py", "test_gpu_model.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: module order kept
