"""Documented per-SM throughputs of the GPUs the model predicts for, and the time formula
(docs/GPU_MODEL.md "Machines" and "Time" give the sources and every assumption).

Rates are warp-instructions per clock per SM; a pipe's time is its warp-instructions times
``PIPE_CLOCKS[pipe]`` (clocks per warp-instruction per SM).
"""

from __future__ import annotations

import dataclasses
import math

#: Clocks per warp-instruction per SM, sm_80 / sm_90 (CUDA C++ Programming Guide, "Arithmetic
#: Instructions", results per clock per SM: fp32 add/mul/fma 128 -> 0.25; 32-bit integer add,
#: logic, compare, shift, min/max 64 -> 0.5; 32-bit integer multiply-add 64 -> 0.5; MUFU (exp2,
#: log2, rcp, rsqrt, sin, cos) 16 -> 2; type conversions 16 -> 2; fp64 64 -> 0.5 (H100 SXM);
#: warp shuffle 32 -> 1). Loads and stores: 1 per clock, or the bytes of the warp's access over
#: 128 bytes per clock of the L1 data path when wider (``lsu_clocks``).
PIPE_CLOCKS = {"fma": 0.25, "imad": 0.5, "alu": 0.5, "mufu": 2.0, "conv": 2.0, "fp64": 0.5,
               "shared": 1.0, "lsu": 1.0}
#: Warp schedulers per SM, each issuing one warp-instruction per clock.
ISSUE_PER_CLOCK = 4
#: Pipes shared by the whole SM (the L1 / shared-memory data path); the others are split
#: between the four schedulers.
SM_WIDE_PIPES = ("lsu", "shared")
L1_BYTES_PER_CLOCK = 128


@dataclasses.dataclass(frozen=True)
class Machine:
    name: str
    sms: int
    clock_ghz: float
    hbm_tbs: float  # vendor peak
    hbm_efficiency: float  # attainable fraction of the peak (a device copy)
    l2_mb: float
    regs_per_sm: int = 65536
    smem_per_sm_kb: int = 228
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    launch_us: float = 2.0  # fixed cost per kernel launch (start, ramp, drain)
    l2_tbs: float = 5.5  # L2 bandwidth for all global loads and stores (an assumption)


H100_SXM = Machine("H100 SXM", 132, 1.755, 3.35, 0.90, 50.0)
H200 = Machine("H200", 132, 1.755, 4.8, 0.90, 60.0)
MACHINES = {"h100": H100_SXM, "h200": H200}


def occupancy(m: Machine, regs: int, num_warps: int, shared: int) -> int:
    """Resident blocks per SM: registers (allocated per warp in units of 256), warps, shared
    memory (1 KiB reserved per block) and the block limit."""
    per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
    by_regs = m.regs_per_sm // (per_warp * num_warps)
    by_warps = m.max_warps_per_sm // num_warps
    by_smem = (m.smem_per_sm_kb * 1024) // (shared + 1024)
    return max(0, min(by_regs, by_warps, by_smem, m.max_blocks_per_sm))


@dataclasses.dataclass
class LaunchTime:
    us: float  # predicted, launch cost included
    steady_us: float  # throughput time without the fixed launch cost
    bound: str
    clocks: dict  # per-SM clocks by resource
    occupancy: int
    dram_bytes: float


def launch_time(m: Machine, programs: int, num_warps: int, regs: int, shared: int,
                per_warp: dict, lsu_bytes: float, floor_read: float, floor_write: float,
                sass_read: float, sass_write: float = 0.0,
                in_flight: float | None = None) -> LaunchTime:
    """Time of one launch of ``programs`` programs of ``num_warps`` warps, each warp executing
    ``per_warp[pipe]`` warp-instructions (``lsu_bytes``: global/shared bytes its loads and
    stores address). DRAM traffic: the byte floor, plus the re-reads (``sass_read`` - floor) and
    the extra writes (``sass_write`` - floor, e.g. a workspace) when the resident programs'
    working sets (``in_flight`` bytes each; None: ``floor_read / programs``) do not fit in half
    of L2. Every load and store also crosses L2 (``Machine.l2_tbs``)."""
    occ = occupancy(m, regs, num_warps, shared)
    if occ == 0:
        raise ValueError(f"a block of {num_warps} warps x {regs} registers does not fit an SM")
    per_sm = math.ceil(programs / m.sms)  # programs of the busiest SM
    warps = per_sm * num_warps
    # A warp stays on one of the SM's four schedulers, each with its own issue slot and its own
    # quarter of the arithmetic pipes: the busiest scheduler holds ceil(warps / 4) of the SM's
    # warps (13 warps: 4, 3, 3, 3). Issue and the per-scheduler pipes are counted for it, as
    # if the SM had 4 x that many warps; the L1 / shared-memory path is the SM's, shared by all.
    slots = ISSUE_PER_CLOCK * math.ceil(warps / ISSUE_PER_CLOCK)
    clocks = {"issue": slots * sum(per_warp.values()) / ISSUE_PER_CLOCK}
    for pipe, cost in PIPE_CLOCKS.items():
        n = per_warp.get(pipe, 0.0)
        if pipe == "lsu":
            n = max(n, lsu_bytes / L1_BYTES_PER_CLOCK)
        clocks[pipe] = (warps if pipe in SM_WIDE_PIPES else slots) * n * cost
    resident = min(programs, m.sms * occ)
    per_program = floor_read / max(programs, 1) if in_flight is None else in_flight
    fits = resident * per_program <= 0.5 * m.l2_mb * 1e6
    read = floor_read if fits else max(floor_read, sass_read)
    write = floor_write if fits else max(floor_write, sass_write)
    dram = read + write
    t_mem = dram / (m.hbm_tbs * 1e12 * m.hbm_efficiency) * 1e6
    t = {k: v / (m.clock_ghz * 1e3) for k, v in clocks.items()}
    t["memory"] = t_mem
    if sass_read + sass_write > dram:
        t["l2"] = (sass_read + sass_write) / (m.l2_tbs * 1e12) * 1e6
    bound = max(t, key=t.get)
    if bound != "memory" and min(per_sm, occ) * num_warps < 2 * ISSUE_PER_CLOCK:
        bound += " (latency-exposed)"  # under 2 warps per scheduler: throughput is optimistic
    steady = max(t.values())
    return LaunchTime(steady + m.launch_us, steady, bound, clocks, occ, dram)
