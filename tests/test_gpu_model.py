"""The performance model (bench/gpu_model.py, docs/GPU_MODEL.md): instruction counting on a kernel
whose executed instructions are known, SASS control-flow parsing, and the time formula on
hand-computed cases. No GPU needed (ptxas / nvdisasm ship in the triton wheel)."""

import math
import os
import sys

import pytest

import nvidia_tools

nvidia_tools.require("ptxas", "nvdisasm")
ROOT = nvidia_tools.ROOT

from bench import gpu_machines as gm  # noqa: E402
from bench import sass  # noqa: E402
from bench.kernel_compile import in_compiling_process, interpreting  # noqa: E402


def _probe_program():
    from bench import model_probe
    if interpreting():
        return in_compiling_process(model_probe.compiled_program, [()])[0]
    return model_probe.compiled_program()


@pytest.fixture(scope="module")
def probe():
    return _probe_program()


@pytest.fixture(scope="module")
def static_probe():
    from bench import model_probe
    if interpreting():
        return in_compiling_process(model_probe.compiled_static_program, [()])[0]
    return model_probe.compiled_static_program()


@pytest.mark.skipif(not interpreting(), reason="the trace runs the probe under TRITON_INTERPRET=1")
@pytest.mark.parametrize("n_hot", [0, 1, 2, 4, 9])
def test_static_range_if_counts_are_exact(static_probe, n_hot):
    """An ``if`` (and one in a helper) inside an unrolled ``tl.static_range`` loop, its condition
    varying by iteration: each unrolled copy is weighted by its own share, so the FFMAs the ifs
    add over n_hot = 0 are the executed ones, 8 min(n_hot, N) + 8 min(max(n_hot - 1, 0), N)
    per warp (the steps' own FFMAs, which ptxas may duplicate into the branches, cancel)."""
    from bench import model_probe
    from bench.sass_counts import count
    n = model_probe.STATIC_N
    trace, index = model_probe.traced_static(n_hot)
    c = count(static_probe, trace, index)
    c0 = count(static_probe, *model_probe.traced_static(0))
    want = 8 * min(n_hot, n) + 8 * min(max(n_hot - 1, 0), n)
    assert c.by_opcode["FFMA"] - c0.by_opcode["FFMA"] == pytest.approx(want)
    assert c.by_opcode["LDG"] == 1 and c.by_opcode["STG"] == 1


@pytest.mark.skipif(not interpreting(), reason="the trace runs the probe under TRITON_INTERPRET=1")
@pytest.mark.parametrize("n_iter,n_hot", [(37, 5), (40, 0), (3, 3)])
def test_probe_counts_are_exact(probe, n_iter, n_hot):
    """One FFMA per step plus the if-converted (predicated, so always issued) FFMA: 2 n_iter
    FFMAs per warp whatever the unrolling; one load and one store."""
    from bench import model_probe
    from bench.sass_counts import count
    trace, index = model_probe.traced(n_iter, n_hot)
    c = count(probe, trace, index)
    assert c.by_opcode["FFMA"] == pytest.approx(2 * n_iter)
    assert c.by_opcode["LDG"] == 1 and c.by_opcode["STG"] == 1
    assert c.ldg_bytes == 32 * 4 and c.stg_bytes == 32 * 4
    assert len(c.loops) == 1
    label, _, unroll, iterations = c.loops[0]
    assert "model_probe.py" in label and iterations == n_iter
    assert unroll >= 1


@pytest.fixture(scope="module")
def guarded_probe():
    from bench import model_probe
    if interpreting():
        return in_compiling_process(model_probe.compiled_guarded_program, [()])[0]
    return model_probe.compiled_guarded_program()


@pytest.mark.skipif(not interpreting(), reason="the trace runs the probe under TRITON_INTERPRET=1")
@pytest.mark.parametrize("n_iter,n_hot", [(40, 5), (40, 39), (40, 0), (7, 7), (13, 20)])
def test_predicated_store_moves_bytes_only_when_its_guard_holds(guarded_probe, n_iter, n_hot):
    """A store in a short ``if`` body inside a loop, which ptxas predicates: it issues on every
    step (n_iter STGs per warp) but moves 128 bytes per warp only on the n_hot steps whose guard
    holds; a guard that holds on every step or on none (which a constexpr branch, or line info
    naming an access that was not compiled, would also show) is counted on every issue."""
    from bench import model_probe
    from bench.sass_counts import count
    assert any(i.base == "STG" and i.pred for i in guarded_probe.instrs)  # the predicated form
    c = count(guarded_probe, *model_probe.traced_guarded(n_iter, n_hot))
    assert c.by_opcode["STG"] == pytest.approx(n_iter)
    moved = n_hot if 0 < n_hot < n_iter else n_iter
    assert c.stg_bytes == pytest.approx(32 * 4 * moved)
    assert c.ldg_bytes == 32 * 4


@pytest.mark.skipif(not interpreting(), reason="the trace runs the probe under TRITON_INTERPRET=1")
def test_counting_refuses_sass_of_another_source_tree(probe, tmp_path):
    """SASS whose line info names no file under the index's kernel roots (as a Triton cache
    entry compiled from another checkout would) is refused, not counted as zero."""
    from bench import model_probe
    from bench.kernel_trace import SourceIndex
    from bench.sass_counts import count
    trace, _ = model_probe.traced(37, 5)
    with pytest.raises(ValueError, match="names no source file"):
        count(probe, trace, SourceIndex([str(tmp_path)]))


def test_probe_sass_has_the_unrolled_loop(probe):
    """ptxas unrolls the runtime-trip loop (main loop + remainder loop): two natural loops, both
    with back edges, each block's successors inside the program."""
    assert len(probe.loops) >= 1
    for lp in probe.loops:
        assert lp.header in lp.blocks and all(lt in lp.blocks for lt in lp.latches)
        assert any(lp.header in probe.blocks[lt].succs for lt in lp.latches)
    ffma = [i for i in probe.instrs if i.base == "FFMA"]
    assert ffma and all(any(f.endswith("model_probe.py") for f, _ in i.context) for i in ffma)


def test_cfg_of_a_hand_written_listing():
    text = """
        /*0000*/                   MOV R1, 0x1 ;
.L_x_0:
        /*0010*/                   FFMA R2, R2, R2, 1 ;
        /*0020*/                   ISETP.NE.AND P0, PT, R1, RZ, PT ;
        /*0030*/               @P0 BRA `(.L_x_0) ;
        /*0040*/                   EXIT ;
"""
    prog = sass.build(sass.parse(text))
    assert [(b.start, b.end, b.succs) for b in prog.blocks] == [(0, 1, [1]), (1, 4, [1, 2]),
                                                                (4, 5, [])]
    assert len(prog.loops) == 1 and prog.loops[0].blocks == {1}
    assert [i.pipe for i in prog.instrs] == ["alu", "fma", "alu", "control", "control"]


def test_pipes_of_opcodes():
    assert sass.pipe_of("FFMA.FTZ") == "fma" and sass.pipe_of("MUFU.EX2") == "mufu"
    assert sass.pipe_of("LDG.E.128") == "lsu" and sass.pipe_of("UIADD3") == "uniform"
    assert sass.pipe_of("IMAD.MOV.U32") == "imad" and sass.pipe_of("SHFL.BFLY") == "shared"


def test_occupancy_by_hand():
    m = gm.H100_SXM
    # 255 registers -> 8192 per warp; 4 warps -> 32768 per block; 65536 / 32768 = 2 blocks
    assert gm.occupancy(m, 255, 4, 0) == 2
    # 32 registers, 1 warp: 64 warps per SM bound it
    assert gm.occupancy(m, 32, 1, 0) == 32
    # shared memory: 100 KiB + 1 KiB reserved per block -> 2 blocks in 228 KiB
    assert gm.occupancy(m, 32, 4, 100 * 1024) == 2


def test_time_formula_by_hand():
    m = gm.H100_SXM
    # 264 programs on 132 SMs -> 2 per SM, 8 warps; MUFU: 8 * 100 * 2 clocks = 1600 clocks
    t = gm.launch_time(m, 264, 4, 64, 0, {"mufu": 100, "alu": 100}, 0, 0, 0, 0)
    assert t.bound == "mufu"
    assert t.steady_us == pytest.approx(1600 / (1.755e3))
    assert t.us == pytest.approx(t.steady_us + m.launch_us)
    # issue: 8 warps * 800 instructions / 4 per clock = 1600 clocks > fma's 8 * 800 / 4
    t = gm.launch_time(m, 264, 4, 64, 0, {"alu": 400, "control": 400}, 0, 0, 0, 0)
    assert t.bound == "issue" and t.clocks["issue"] == pytest.approx(1600)
    # memory: 1 GB read + 1 GB written at 90 % of 3.35 TB/s
    t = gm.launch_time(m, 264, 4, 64, 0, {"alu": 1}, 0, 1e9, 1e9, 1e9)
    assert t.bound == "memory"
    assert t.steady_us == pytest.approx(2e9 / (3.35e12 * 0.9) * 1e6)
    # few programs with little work each: latency-exposed is flagged
    t = gm.launch_time(m, 8, 4, 64, 0, {"fma": 1e6}, 0, 0, 0, 0)
    assert t.bound.startswith("issue") and "latency" in t.bound
    assert math.isclose(t.clocks["issue"], 4 * 1e6 / 4)
    # 3 programs of 2 warps per SM: its schedulers hold 2, 2, 1, 1 warps; the busiest issues
    # 2 x 100 instructions (not 6 x 100 / 4) and its quarter of the FMA pipe (32 lanes) takes
    # 2 x 100 clocks; the L1 path is the SM's: 6 warps x 100 loads at 1 clock each
    t = gm.launch_time(m, 3 * 132, 2, 64, 0, {"fma": 100}, 0, 0, 0, 0)
    assert t.clocks["issue"] == pytest.approx(200) and t.clocks["fma"] == pytest.approx(200)
    t = gm.launch_time(m, 3 * 132, 2, 64, 0, {"lsu": 100}, 0, 0, 0, 0)
    assert t.clocks["lsu"] == pytest.approx(600) and t.clocks["issue"] == pytest.approx(200)


def test_gpu_check_dry_run(tmp_path):
    """bench/gpu_check.py's Python (model table timing, peer comparison, report) on CPU."""
    import json
    import subprocess
    model = tmp_path / "model.jsonl"
    rec = {"workload": {"method": "redge", "direction": "bwd", "rows": 8, "k": 64, "n_steps": 3,
                        "dtype": "fp32", "hard": True},
           "label": "redge bwd 8x64 n=3 fp32",
           "launches": [{"name": "k", "grid": [8, 1, 1], "num_warps": 1, "regs": 32,
                         "shared": 0, "by_pipe": {"fma": 10.0}, "ldg_bytes": 256.0,
                         "stg_bytes": 128.0}]}
    model.write_text(json.dumps(rec) + "\n")
    report = tmp_path / "report.md"
    env = dict(os.environ, GPU_CHECK_DRY_RUN="1", TRITON_INTERPRET="1",
               PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--model", str(model),
                           "--report", str(report), "--dry-run"], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = report.read_text()
    assert "| redge bwd 8x64 n=3 fp32 (dry run: 4 x 64) |" in md
    assert "| authors eager |" in md and "| authors torch.compile |" in md
    assert "| redge_kernels |" in md


@pytest.mark.skipif(not interpreting(), reason="the trace runs the kernels under TRITON_INTERPRET=1")
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_model_of_the_real_kernels_moves_at_least_the_floor(direction):
    """Whatever the kernel design: the loads the model counts cover the inputs of the byte floor
    (phi; and g for the backward) at least once and the stores cover the output at least once,
    every launch has executed instructions, and the prediction is positive."""
    from bench.gpu_machines import H100_SXM
    from bench.gpu_model import analyse, floor_bytes, predict
    from bench.kernel_compile import Workload
    w = Workload("redge", direction, 64, 16384, 3)
    rec = analyse(w)
    read, write = floor_bytes(w)
    loads = sum(c["grid"][0] * c["grid"][1] * c["grid"][2] * c["num_warps"] * c["ldg_bytes"]
                for c in rec["launches"])
    stores = sum(c["grid"][0] * c["grid"][1] * c["grid"][2] * c["num_warps"] * c["stg_bytes"]
                 for c in rec["launches"])
    assert loads >= read and stores >= write
    assert all(sum(c["by_pipe"].values()) > 0 for c in rec["launches"])
    p = predict(rec, H100_SXM)
    assert p["us"] > p["steady_us"] > 0 and 0 < p["steady_floor_frac"] <= 1


@pytest.mark.skipif(not interpreting(), reason="the trace runs the kernels under TRITON_INTERPRET=1")
@pytest.mark.parametrize("w", [
    # a persistent grid (264 programs on 132 SMs; the tiled ReDGE-Cov backward past the two-pass
    # kernel's unrolled lengths): program 0 takes 4 rows; the reduction traces 264, 528 and 792 rows
    ("redge_cov", "bwd", 4 * 264, 8192, 12),
    # a tiled row of 4 tiles of 4096 plus a tail: the reduction traces 1, 2 and 3 tiles + tail
    # (133 rows: one program per row; fewer, up to 132 on the planned 132 SMs, split the rows
    # into vocabulary chunks, _launch.split_plan)
    ("st", "bwd", 133, 4 * 4096 + 100, 5),
])
def test_reduced_trace_equals_the_full_trace(w):
    """The extrapolated statement counts of the model's reduced traces equal those of the first
    program traced at the real size, exactly outside data-dependent (``while``) loops: the
    Gumbel-max of the forward that precedes the backward."""
    from bench.gpu_model import _in_while, _reduced_points, _signatures, _trace_counts, _traced
    from bench.kernel_compile import Workload
    wl = Workload(*w)
    assert _reduced_points(wl, _signatures(wl)) is not None
    notes = []
    reduced = _trace_counts(wl, notes)
    assert notes == []
    full = _traced(wl)
    def fixed(counts):
        return [{k: v for k, v in c.items() if not _in_while(k)} for c in counts]
    assert fixed(reduced) == fixed(full)
    assert sum(fixed(full)[-1].values()) > 0


def test_affine_extrapolation_refuses_a_step():
    """Counts that are not exactly affine in the points (a tile count that steps) give None;
    data-dependent counts (inside a while loop) are extrapolated from the outer points (rows) or
    kept at the largest point (columns)."""
    from bench.gpu_model import _affine
    key, dep = ((), ("k.py", 3)), ((), ("k.py", 9))
    runs = [[{key: 2}], [{key: 2}], [{key: 3}]]
    assert _affine(runs, [5120, 6144, 7168], 16384, lambda k: False) is None
    runs = [[{key: 2, dep: 3}], [{key: 3, dep: 3}], [{key: 4, dep: 5}]]
    assert _affine(runs, [4096, 6144, 8192], 16384, lambda k: k == dep) == [{key: 8, dep: 9}]
    # along K a data-dependent count keeps its value at the largest point
    assert _affine(runs, [4096, 6144, 8192], 16384, lambda k: k == dep, linear=False) == \
        [{key: 8, dep: 5}]


def test_worker_job_past_its_deadline_fails_and_the_next_job_runs():
    """A modelling job past its timeout kills its worker and raises JobError naming the job; a
    job that raises reports its traceback; the next job starts a fresh worker."""
    import time
    from bench.gpu_model import JobError, Worker
    w = Worker(interpret=False)
    try:
        w.submit(time.sleep, 60)
        t0 = time.time()
        with pytest.raises(JobError, match="timed out after 2 s"):
            w.result(2.0, "sleepy")
        assert time.time() - t0 < 30 and w.proc is None
        w.submit(int, "x")
        with pytest.raises(JobError, match="ValueError"):
            w.result(120.0, "bad")
        w.submit(sum, [1, 2, 3])
        assert w.result(120.0, "ok") == 6
    finally:
        w.close()


def test_gpu_check_script_parses():
    """bench/gpu_check.sh is valid bash (its --dry-run runs every stage on CPU)."""
    import subprocess
    subprocess.run(["bash", "-n", os.path.join(ROOT, "bench", "gpu_check.sh")], check=True)
