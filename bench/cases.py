"""The benchmark grid: shapes, estimator configs, implementations (ours per backend, peers).

One case is ``(shape, estimator config, pass)``; every implementation that computes that estimator
is timed on it. The same definitions drive the pytest-benchmark suite (``bench_estimators.py``)
and the report (``report.py``).

* Shapes (logits ``[..., K]``, fp32): the paper's Bernoulli VAE ``200 x 48 x 2``, categorical VAE
  ``200 x 32 x 64``, Sudoku ``64 x 81 x 9`` (64 puzzles), and language-model rows ``R x 32768`` /
  ``R x 131072``. ``R`` is 512-4096 on a GPU; on a CPU the full grid uses fewer rows (see
  ``grid``), because the peers take seconds per call there.
* Estimators: every key of ``redge_kernels._constants.METHOD_IDS``; the diffusion ones for each
  ``n_steps`` of the grid (``t_1 = 0.5``), baselines at the authors' defaults
  (gumbel ``tau = 0.5``, reinmax ``tau = 1``). All ``hard=True``.
* Passes: ``fwd`` (forward with ``requires_grad`` logits, i.e. the training forward) and
  ``fwd+bwd`` (forward then ``y.backward(g)``).
* Implementations: ``rk[<backend>]`` for every backend ``rk.available_backends()`` reports whose
  device matches (new backends appear here by themselves); peers that are installed: the authors'
  ``redge`` package (eager), ``torch.compile`` of it, ``F.gumbel_softmax`` (gumbel only) and the
  ``reinmax`` package (reinmax only); and ``copy``: ``out.copy_(x)`` of one ``R x K`` buffer, the
  memory-bandwidth floor of the same run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
from typing import Callable

import torch

import redge_kernels as rk
from redge_kernels import _backends
from redge_kernels._constants import DIFFUSION_METHODS, METHOD_IDS

PASSES = ("fwd", "fwd+bwd")
T_1 = 0.5
BASELINE_KWARGS = {"st": {}, "gumbel": {"tau": 0.5}, "reinmax": {"tau": 1.0}}
#: Our method name -> the authors' ``redge.SAMPLERS`` key.
AUTHORS_NAME = {"st": "st", "gumbel": "gumbel", "reinmax": "reinmax", "redge": "redge",
                "redge_cov": "redge_cov", "redge_max": "reindge"}
#: Buffers of ``R x K`` the op must move at least (docs/SPEC.md "Memory and passes"): forward reads phi,
#: writes y; backward reads phi and g, writes grad_phi. ``copy`` moves 2 buffers.
MIN_BUFFERS = {"fwd": 2, "fwd+bwd": 5}


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    dims: tuple

    @property
    def rows(self) -> int:
        return math.prod(self.dims[:-1])

    @property
    def k(self) -> int:
        return self.dims[-1]

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    @property
    def label(self) -> str:
        return "x".join(str(d) for d in self.dims)


@dataclasses.dataclass(frozen=True)
class Estimator:
    method: str          # key of METHOD_IDS
    n_steps: int | None  # None for the baselines

    @property
    def kwargs(self) -> dict:
        if self.method in DIFFUSION_METHODS:
            return {"n_steps": self.n_steps, "t_1": T_1}
        return dict(BASELINE_KWARGS[self.method])

    @property
    def label(self) -> str:
        return self.method if self.n_steps is None else f"{self.method}(n={self.n_steps})"


@dataclasses.dataclass(frozen=True)
class Case:
    shape: Shape
    estimator: Estimator
    pass_: str  # "fwd" | "fwd+bwd"

    @property
    def id(self) -> str:
        return f"{self.shape.name}-{self.estimator.label}-{self.pass_}"


@dataclasses.dataclass(frozen=True)
class Impl:
    """A way to compute an estimator. ``kind``: "ours", "peer" or "floor"."""
    name: str
    kind: str
    supports: Callable[[Estimator], bool]
    make: Callable[[Estimator], Callable[[torch.Tensor], torch.Tensor]]


# ---------------------------------------------------------------------------------------------
# Grids

PAPER_SHAPES = (
    Shape("sudoku", (64, 81, 9)),
    Shape("bernoulli-vae", (200, 48, 2)),
    Shape("vae", (200, 32, 64)),
)


def grid(size: str, device: torch.device) -> dict:
    """``{"shapes", "n_steps", "methods", "compile_for"}`` of the ``quick``, ``full`` or
    ``smoke`` grid. ``compile_for``: labels of the estimators whose ``torch.compile`` peer runs
    (None: all); each (estimator, shape) is one compilation, tens of seconds on a small CPU.

    quick: n_steps 3, the paper shapes and one small LM shape (CPU) -> minutes on 2 cores.
    full: n_steps 3, 5, 10 and the LM shapes, rows sized to the device (GPU: 512 and 4096 rows of
    K = 32768, 512 rows of K = 131072; CPU: 64 rows of K = 32768 and 16 of K = 131072).
    smoke: the CI harness check (tiny shapes, seconds).
    """
    gpu = device.type != "cpu"
    methods = tuple(METHOD_IDS)
    if size == "smoke":
        return {"shapes": (Shape("sudoku", (8, 81, 9)), Shape("lm-tiny", (4, 4096))),
                "n_steps": (3,), "methods": methods, "compile_for": ("redge(n=3)",)}
    if size == "quick":
        lm = (Shape("lm-32k", (512 if gpu else 16, 32768)),)
        return {"shapes": PAPER_SHAPES + lm, "n_steps": (3,), "methods": methods,
                "compile_for": ("redge(n=3)",)}
    if size == "full":
        if gpu:
            lm = (Shape("lm-32k", (512, 32768)), Shape("lm-32k", (4096, 32768)),
                  Shape("lm-128k", (512, 131072)))
        else:
            lm = (Shape("lm-32k", (64, 32768)), Shape("lm-128k", (16, 131072)))
        # CPU: compile the n_steps = 3 variant of each estimator only (30 compilations).
        compile_for = None if gpu else tuple(e.label for e in estimators(methods, (3,)))
        return {"shapes": PAPER_SHAPES + lm, "n_steps": (3, 5, 10), "methods": methods,
                "compile_for": compile_for}
    raise ValueError(f"unknown grid size {size!r}")


def estimators(methods, n_steps) -> list[Estimator]:
    out = []
    for m in methods:
        if m in DIFFUSION_METHODS:
            out += [Estimator(m, n) for n in n_steps]
        else:
            out.append(Estimator(m, None))
    return out


def cases(size: str, device: torch.device, methods=None, shapes=None) -> list[Case]:
    """Cases in run order: shapes by size (so slow implementations can be predicted and skipped),
    then estimator, then pass. ``methods`` / ``shapes`` filter by name."""
    g = grid(size, device)
    shp = sorted(g["shapes"], key=lambda s: s.numel)
    if shapes:
        shp = [s for s in shp if s.name in shapes]
    ms = [m for m in g["methods"] if not methods or m in methods]
    return [Case(s, e, p) for s in shp for e in estimators(ms, g["n_steps"]) for p in PASSES]


# ---------------------------------------------------------------------------------------------
# Implementations

def backends_for(device: torch.device) -> list[str]:
    """Our backends that run on ``device``: reference, plus every fused backend whose dispatch
    device is ``device.type`` (Triton on CUDA; its CPU interpreter is excluded)."""
    out = []
    for name in rk.available_backends():
        if name == "reference" or _backends.backend_module(name).DEVICE_TYPE == device.type:
            out.append(name)
    return out


def _ours(backend: str) -> Impl:
    def make(est: Estimator):
        fn = rk.SAMPLERS[est.method]
        return functools.partial(fn, hard=True, backend=backend, **est.kwargs)
    return Impl(f"rk[{backend}]", "ours", lambda est: True, make)


def _authors(compiled: bool, compile_for=None) -> Impl:
    def make(est: Estimator):
        import redge
        fn = functools.partial(redge.SAMPLERS[AUTHORS_NAME[est.method]], hard=True, **est.kwargs)
        if not compiled:
            return fn
        return torch.compile(fn, dynamic=False)
    return Impl("redge+compile" if compiled else "redge", "peer",
                lambda est: not compiled or compile_for is None or est.label in compile_for,
                make)


def _torch_gumbel() -> Impl:
    def make(est: Estimator):
        return functools.partial(torch.nn.functional.gumbel_softmax, hard=True, **est.kwargs)
    return Impl("F.gumbel_softmax", "peer", lambda est: est.method == "gumbel", make)


def _reinmax_pkg() -> Impl:
    def make(est: Estimator):
        import reinmax

        def run(x):
            return reinmax.reinmax(x, tau=est.kwargs["tau"], hard=True)[0]
        return run
    return Impl("reinmax", "peer", lambda est: est.method == "reinmax", make)


def _copy_floor() -> Impl:
    # ``make`` is not used for the floor: the harness times ``out.copy_(x)`` itself.
    return Impl("copy", "floor", lambda est: True, lambda est: None)


PEER_NAMES = ("redge", "redge+compile", "F.gumbel_softmax", "reinmax")


def peers(selected=None, compile_for=None) -> list[Impl]:
    """Installed peers (``selected``: names to keep; None = all)."""
    have_redge = importlib.util.find_spec("redge") is not None
    have_reinmax = importlib.util.find_spec("reinmax") is not None
    out = [_torch_gumbel()]
    if have_redge:
        out = [_authors(False), _authors(True, compile_for)] + out
    if have_reinmax:
        out.append(_reinmax_pkg())
    if selected is not None:
        out = [p for p in out if p.name in selected]
    return out


def implementations(device: torch.device, peer_names=None, backends=None,
                    compile_for=None) -> list[Impl]:
    ours = [_ours(b) for b in backends_for(device) if backends is None or b in backends]
    return ours + peers(peer_names, compile_for) + [_copy_floor()]


def step_fn(impl_fn, case: Case, x: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    """One timed call: forward, or forward + ``y.backward(g)``. Every call gets a fresh leaf alias
    of ``x`` (no copy) that requires grad, so calls and implementations share no autograd state
    (the authors' ``reindge`` registers a hook on its input that only a backward removes)."""
    base = x.detach()
    if case.pass_ == "fwd":
        def run():
            impl_fn(base.detach().requires_grad_(True))
    else:
        def run():
            impl_fn(base.detach().requires_grad_(True)).backward(g)
    return run


def copy_fn(x: torch.Tensor) -> Callable[[], None]:
    out = torch.empty_like(x)

    def run():
        out.copy_(x.detach())
    return run


def inputs(shape: Shape, device: torch.device, dtype=torch.float32, seed: int = 0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(shape.dims, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    g = torch.randn(shape.dims, generator=gen, dtype=dtype).to(device)
    return x, g
