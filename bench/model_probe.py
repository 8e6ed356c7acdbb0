"""A kernel whose executed instructions are known, to check the counting of ``bench.gpu_model``
(tests/test_gpu_model.py): ``y = x`` after ``n_iter`` steps of ``x <- x * A + B`` (one FFMA per
element per step; A and B are constants), one element per thread (``BLOCK = 32 * num_warps``),
and an ``if`` taken on every step with ``j < n_hot``, which adds one more FFMA."""

import triton
import triton.language as tl


@triton.jit
def _step(x):
    return x * 1.0001 + 0.5


@triton.jit(do_not_specialize=["n_iter", "n_hot"])
def probe_kernel(x_ptr, y_ptr, n_iter, n_hot, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for j in range(0, n_iter):
        x = _step(x)
        if j < n_hot:
            x = x * 0.999 + 0.25
    tl.store(y_ptr + offs, x)


def launch(x, y, n_iter: int, n_hot: int, num_warps: int = 1):
    """x, y: float32 [programs * 32 * num_warps]."""
    block = 32 * num_warps
    probe_kernel[(x.numel() // block,)](x, y, n_iter, n_hot, BLOCK=block, num_warps=num_warps)


def compiled_program(num_warps: int = 1):
    """SASS ``Program`` of the probe for sm_90 with the JIT's specialization (run uninterpreted,
    e.g. through ``bench.kernel_compile.in_compiling_process``)."""
    import torch
    from bench.kernel_compile import _recording, compile_launch
    from bench.sass import disassemble
    n = 8 * 32 * num_warps
    launches = []
    with _recording(launches):
        launch(torch.empty(n, device="meta"), torch.empty(n, device="meta"), 37, 5, num_warps)
    return disassemble(compile_launch(launches[0], 90).cubin)


def traced(n_iter: int, n_hot: int, num_warps: int = 1):
    """``(Trace, SourceIndex)`` of the probe's first program (run under the interpreter)."""
    import torch
    from bench.kernel_trace import SourceIndex, kernel_root, trace_first_programs
    n = 8 * 32 * num_warps
    index = SourceIndex([kernel_root(probe_kernel)])
    x, y = torch.randn(n), torch.empty(n)
    traces = trace_first_programs(lambda: launch(x, y, n_iter, n_hot, num_warps), index)
    return traces[0], index


@triton.jit
def _hot(x):
    """Eight dependent FFMAs: too long a body for ptxas to if-convert, so the ``if`` branches."""
    for _ in tl.static_range(8):
        x = x * 0.999 + 0.25
    return x


@triton.jit
def _maybe_hot(x, j, n_hot):
    if j + 1 < n_hot:
        x = _hot(x)
    return x


@triton.jit(do_not_specialize=["n_hot"])
def static_probe_kernel(x_ptr, y_ptr, n_hot, N: tl.constexpr, BLOCK: tl.constexpr):
    """``tl.static_range(N)`` (unrolled: N copies of the body in the SASS), each step one FFMA,
    8 more when ``j < n_hot`` and 8 more (in a helper) when ``j + 1 < n_hot``: per warp
    N + 8 min(n_hot, N) + 8 min(max(n_hot - 1, 0), N) FFMAs."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for j in tl.static_range(N):
        x = _step(x)
        if j < n_hot:
            x = _hot(x)
        x = _maybe_hot(x, j, n_hot)
    tl.store(y_ptr + offs, x)


STATIC_N = 4


def _static_launch(x, y, n_hot: int):
    static_probe_kernel[(x.numel() // 32,)](x, y, n_hot, N=STATIC_N, BLOCK=32, num_warps=1)


def compiled_static_program():
    """SASS ``Program`` of ``static_probe_kernel`` for sm_90 (run uninterpreted)."""
    import torch
    from bench.kernel_compile import _recording, compile_launch
    from bench.sass import disassemble
    launches = []
    with _recording(launches):
        _static_launch(torch.empty(256, device="meta"), torch.empty(256, device="meta"), 2)
    return disassemble(compile_launch(launches[0], 90).cubin)


def traced_static(n_hot: int):
    """``(Trace, SourceIndex)`` of ``static_probe_kernel``'s first program (interpreted)."""
    import torch
    from bench.kernel_trace import SourceIndex, kernel_root, trace_first_programs
    index = SourceIndex([kernel_root(static_probe_kernel)])
    x, y = torch.randn(256), torch.empty(256)
    return trace_first_programs(lambda: _static_launch(x, y, n_hot), index)[0], index


@triton.jit(do_not_specialize=["n_iter", "n_hot"])
def guarded_store_probe_kernel(x_ptr, y_ptr, n_iter, n_hot, BLOCK: tl.constexpr):
    """``n_iter`` steps of ``_step``; step ``j < n_hot`` stores its x in row j of y (a short
    ``if`` body that ptxas predicates): n_hot rows of BLOCK float32 stored per program."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for j in range(0, n_iter):
        x = _step(x)
        if j < n_hot:
            tl.store(y_ptr + j * BLOCK + offs, x)


def _guarded_launch(x, y, n_iter: int, n_hot: int):
    guarded_store_probe_kernel[(x.numel() // 32,)](x, y, n_iter, n_hot, BLOCK=32, num_warps=1)


def compiled_guarded_program():
    """SASS ``Program`` of ``guarded_store_probe_kernel`` for sm_90 (run uninterpreted)."""
    import torch
    from bench.kernel_compile import _recording, compile_launch
    from bench.sass import disassemble
    launches = []
    with _recording(launches):
        _guarded_launch(torch.empty(32, device="meta"), torch.empty(32 * 40, device="meta"), 40, 5)
    return disassemble(compile_launch(launches[0], 90).cubin)


def traced_guarded(n_iter: int, n_hot: int):
    """``(Trace, SourceIndex)`` of ``guarded_store_probe_kernel`` (interpreted, one program)."""
    import torch
    from bench.kernel_trace import SourceIndex, kernel_root, trace_first_programs
    index = SourceIndex([kernel_root(guarded_store_probe_kernel)])
    x, y = torch.randn(32), torch.empty(32 * max(n_iter, 1))
    return trace_first_programs(lambda: _guarded_launch(x, y, n_iter, n_hot), index)[0], index
