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
