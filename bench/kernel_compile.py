"""Compile, without a GPU, exactly the Triton kernels the launcher of this checkout launches.

A *workload* is a call of the Triton backend's launchers (``redge_kernels.triton.fwd`` /
``.bwd``) on tensors of a given shape and dtype. ``capture`` runs it with every
``JITFunction.run`` replaced by a recorder, so nothing executes and no device is needed; each
recorded launch keeps the kernel, its arguments and its grid. ``compile_launch`` then derives the
signature, constexprs and attributes with the JIT's own binder (the runtime specialization: 16-byte
aligned pointers, integers divisible by 16 where the runtime value is, integer arguments equal to 1
folded into constants, ``do_not_specialize`` honoured) and compiles them for a chosen
``GPUTarget`` as the JIT would on that GPU, collecting the cubin, the SASS and ptxas' ``-v``
report (registers, stack frame, spill stores and loads).

Kernels decorated under ``TRITON_INTERPRET=1`` are interpreted functions and cannot be compiled,
so ``in_compiling_process`` runs a function in a fresh ``spawn`` process with the interpreter off.

Tensors of the compile capture live on the ``meta`` device (``data_ptr() == 0``, 16-byte aligned,
no memory); the strides are those of contiguous tensors, as in training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import subprocess
import tempfile

# The line tables of cached cubins name the files of the checkout that first compiled them, and
# the model ties SASS loops to source lines of this checkout: keep this checkout's compilations
# in its own cache (build/ is not tracked) unless the caller chose a cache.
os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "triton-cache"))

#: Estimators and their method ids / defaults (redge_kernels._constants.METHOD_IDS, api defaults).
METHODS = ("redge", "redge_cov", "redge_max", "st", "gumbel", "reinmax")
DIFFUSION = ("redge", "redge_cov", "redge_max")
DEFAULT_TAU = {"st": 1.0, "gumbel": 0.5, "reinmax": 1.0}
#: Methods defined only with hard samples (api.sample raises for hard=False).
HARD_ONLY = ("redge_max", "reinmax")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One launcher call: ``direction`` "fwd" or "bwd" of ``method`` on ``[rows, k]`` logits;
    ``write_y`` is the forward's (False: stats and index only, the ``WRITE_Y`` constexpr off, as
    the fused sample-and-embed runs it)."""
    method: str
    direction: str
    rows: int
    k: int
    n_steps: int = 5
    dtype: str = "fp32"
    hard: bool = True
    write_y: bool = True

    def label(self) -> str:
        soft = "" if self.hard else " soft"
        no_y = "" if self.write_y else " no-y"
        n = f" n={self.n_steps}" if self.method in DIFFUSION else ""
        return f"{self.method}{soft}{no_y} {self.direction} {self.rows}x{self.k}{n} {self.dtype}"


@dataclasses.dataclass
class Launch:
    """One recorded kernel launch (``fn`` is the JITFunction / InterpretedFunction)."""
    fn: object
    args: tuple
    kwargs: dict
    grid: tuple

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", None) or self.fn.fn.__name__


def torch_dtype(name: str):
    import torch
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
            "fp64": torch.float64}[name]


def _coefs(w: Workload, device):
    import torch
    from redge_kernels import api
    from redge_kernels.schedule import make_schedule
    sched = make_schedule(w.n_steps, 0.5) if w.method in DIFFUSION else api._BASELINE_SCHEDULE
    cdtype = torch.float64 if w.dtype == "fp64" else torch.float32
    return sched.table(device, dtype=cdtype)


#: Multiprocessors and L2 bytes of the GPUs the model predicts for (H100 SXM and H200: 132 SMs;
#: the H100's 50 MiB of L2, as its CUDA properties report it): the launcher plans its grids for
#: them whatever the device of the recorded / interpreted call.
PLANNED_SMS = 132
PLANNED_L2 = 50 * 2**20


def run_workload(w: Workload, device, fill=None, arch: int = 90):
    """Call the backend's launchers for ``w`` on ``device`` with the grids of a ``PLANNED_SMS``
    GPU of ``sm_<arch>`` (the configurations the launcher picks for it); the backward is preceded
    by its forward (whose outputs it consumes). ``fill(tensor)`` initialises the inputs (None:
    leave them uninitialised, as for the meta device)."""
    from redge_kernels.triton import _launch
    with _launch.planned_sms(PLANNED_SMS, PLANNED_L2, arch):
        _run_workload(w, device, fill)


def _run_workload(w: Workload, device, fill):
    import torch
    from redge_kernels import triton as backend
    from redge_kernels._constants import METHOD_IDS
    dt = torch_dtype(w.dtype)
    phi = torch.empty((w.rows, w.k), dtype=dt, device=device)
    if fill is not None:
        fill(phi)
    seed = torch.full((), 1234, dtype=torch.int64, device=device)
    coefs = _coefs(w, device)
    mid, tau = METHOD_IDS[w.method], DEFAULT_TAU.get(w.method, 1.0)
    y, stats, index = backend.fwd(phi, seed, coefs, mid, w.hard, tau, 0, w.write_y)
    if w.direction == "fwd":
        return
    grad_y = torch.empty_like(phi)
    if fill is not None:
        fill(grad_y)
    backend.bwd(grad_y, phi, seed, coefs, stats, index, mid, w.hard, tau)


@contextlib.contextmanager
def _recording(launches: list):
    """Replace ``JITFunction.run`` by a recorder of ``(fn, args, kwargs, grid)``."""
    from triton.runtime import jit

    def record(self, *args, grid, warmup, **kwargs):
        launches.append(Launch(self, args, dict(kwargs), grid))
        return None

    old = jit.JITFunction.run
    jit.JITFunction.run = record
    try:
        yield
    finally:
        jit.JITFunction.run = old


def capture(w: Workload, arch: int = 90) -> list[Launch]:
    """The kernel launches of ``w``'s direction (for "bwd", the backward's launches only) that the
    launcher picks for ``sm_<arch>``, with meta-device tensors; must run with ``TRITON_INTERPRET``
    off."""
    fwd_launches: list[Launch] = []
    if w.direction == "bwd":
        with _recording(fwd_launches):
            run_workload(dataclasses.replace(w, direction="fwd"), "meta", arch=arch)
    launches: list[Launch] = []
    with _recording(launches):
        run_workload(w, "meta", arch=arch)
    return launches[len(fwd_launches):]


def grid_of(launch: Launch, bound_args: dict) -> tuple[int, int, int]:
    g = launch.grid(bound_args) if callable(launch.grid) else launch.grid
    g = tuple(int(v) for v in g) + (1,) * (3 - len(g))
    return g[:3]


@dataclasses.dataclass
class Compiled:
    """A compiled launch: machine code and resources (per thread unless stated)."""
    name: str
    arch: int
    num_warps: int
    grid: tuple
    constexprs: dict
    signature: dict
    cubin: bytes
    regs: int
    stack: int  # stack frame bytes per thread (ptxas -v; spills live here)
    spill_stores: int
    spill_loads: int
    local: int  # LOCAL bytes from cuobjdump --dump-resource-usage
    shared: int  # static + Triton's scratch shared memory per block (bytes)
    ptxas_log: str

    @property
    def spills(self) -> bool:
        return self.stack > 0 or self.spill_stores > 0 or self.spill_loads > 0 or self.local > 0


def nvidia_tool(name: str) -> str:
    """Path of a tool shipped in the triton wheel (``cuobjdump``, ``nvdisasm``, ``ptxas``)."""
    import triton
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} not found in the triton wheel ({path})")
    return path


def _ptxas_report(log: str) -> dict:
    """Registers, stack frame and spill bytes of the one kernel in a ptxas ``-v`` log."""
    def num(pattern):
        m = re.search(pattern, log)
        return int(m.group(1)) if m else 0
    return {"regs": num(r"Used (\d+) registers"), "stack": num(r"(\d+) bytes stack frame"),
            "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads")}


def _resource_usage(cubin: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([nvidia_tool("cuobjdump"), "--dump-resource-usage", f.name],
                             capture_output=True, text=True, check=True).stdout
    def num(key):
        m = re.search(key + r":(\d+)", out)
        return int(m.group(1)) if m else 0
    return {"REG": num("REG"), "STACK": num("STACK"), "LOCAL": num("LOCAL"),
            "SHARED": num("SHARED")}


def compile_launch(launch: Launch, arch: int) -> Compiled:
    """Compile ``launch`` for ``sm_<arch>`` with the specialization the JIT would apply."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature
    fn = launch.fn
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, launch.kwargs, bound_args,
                                                          specialization, options)
    src = triton.compiler.ASTSource(fn, signature, constexprs, attrs)
    log = io.StringIO()
    old = knobs.nvidia.dump_ptxas_log
    knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(log):
            ck = triton.compile(src, target=target, options=options.__dict__)
    finally:
        knobs.nvidia.dump_ptxas_log = old
    cubin = ck.asm["cubin"]
    rep = _ptxas_report(log.getvalue())
    res = _resource_usage(cubin)
    names = {path: fn.arg_names[path[0]] for path in constexprs if len(path) == 1}
    return Compiled(
        name=launch.name, arch=arch, num_warps=int(ck.metadata.num_warps),
        grid=grid_of(launch, bound_args),
        constexprs={names.get(p, str(p)): (v if isinstance(v, (int, float, bool, str)) else str(v))
                    for p, v in constexprs.items()},
        signature=dict(signature), cubin=cubin, regs=res["REG"] or rep["regs"],
        stack=max(rep["stack"], res["STACK"]), spill_stores=rep["spill_stores"],
        spill_loads=rep["spill_loads"], local=res["LOCAL"],
        shared=max(int(ck.metadata.shared), res["SHARED"]), ptxas_log=log.getvalue())


def compile_workload(w: Workload, arch: int) -> list[Compiled]:
    """Every kernel launch of ``w`` compiled for ``sm_<arch>``."""
    return [compile_launch(launch, arch) for launch in capture(w, arch)]


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _call_uninterpreted(fn_and_args):
    fn, args = fn_and_args
    return fn(*args)


def in_compiling_process(fn, arg_list, jobs: int = 1):
    """``[fn(*args) for args in arg_list]``, computed in fresh ``spawn`` processes that import the
    kernels with ``TRITON_INTERPRET=0`` (``fn`` must be a module-level function)."""
    import concurrent.futures as cf
    import multiprocessing as mp
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "0"
    try:
        pool = cf.ProcessPoolExecutor(max_workers=max(1, jobs),
                                      mp_context=mp.get_context("spawn"))
        futures = [pool.submit(_call_uninterpreted, (fn, args)) for args in arg_list]
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    with pool:
        return [f.result() for f in futures]
