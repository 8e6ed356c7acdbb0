"""Launchers: flatten nothing (the op gets ``[R, K]``), allocate outputs, pick path / block / warps
from K, and launch one program per row.

Block and warp choice (per kernel kind; checked for spills by ``bench.compile_check``):

* path (a), one block per row, when ``next_pow2(K) <= SINGLE_MAX[kind]``: ``BLOCK = next_pow2(K)``
  (at least 32), ``num_warps = clamp(BLOCK // ELEMS_PER_THREAD[kind] // 32, 1, 16)`` so that every
  thread holds at most ``ELEMS_PER_THREAD`` elements of each live row vector;
* path (b), tiled, above that: ``BLOCK = TILE[kind]`` with the same warp rule;
* rows of K <= ``ROWS_MAX_K`` (and ``block=None``) go several to a program, one
  ``[ROWS, BLOCK]`` block (``rows_config``; the ``_diffusion_rows`` and ``_onepass_rows`` kernels);
* the diffusion forward has a register cap (``DIFFUSION_FWD_MAXNREG``), the persistent tiled
  backward of ReDGE / ReDGE-Max one of its own (``TILED_BWD_MAXNREG``), the one-pass backward
  another (``ONEPASS_BWD_MAXNREG``).
* the tiled diffusion backward with n_steps <= ``twopass_max_steps`` (12; ReDGE-Cov 11) is the
  two-pass kernel of ``_diffusion_twopass`` (one program per row, no scratch; ``twopass_config``);
* tiled rows, when they fill fewer than half the planned programs, are split into vocabulary
  chunks on a (row, chunk) grid (``split_plan``): ``_onepass_split``, ``_diffusion_split``, and
  the two-pass backward's ``_twopass_part_kernel`` / ``_twopass_out_kernel``.

``block=`` (a power of two) overrides the choice (tests force the tiled path with a small block);
``row_offset`` (the ops' ``row_start``) / ``col_offset=`` give the global row and column of element ``[0, 0]`` (noise of
``(r, c)`` is that of ``(r + row_offset, c + col_offset)``, docs/SPEC.md "Randomness (noise
contract, version 2)"): row-sharded callers and vocabulary shards draw the unsharded noise.
``write_y=False`` (forward; ``WRITE_Y`` constexpr) skips the y stores: stats and index only.
"""

from __future__ import annotations

import contextlib

import torch
import triton

from .._constants import METHOD_IDS
from ._diffusion import _diffusion_bwd_kernel, _diffusion_fwd_kernel
from ._diffusion_split import (_dsplit_base_kernel, _dsplit_bwd_cov_kernel, _dsplit_bwd_step_kernel,
                               _dsplit_bwd_walk_kernel, _dsplit_out_kernel, _dsplit_step_kernel)
from ._diffusion_rows import _diffusion_rows_bwd_kernel, _diffusion_rows_fwd_kernel
from ._diffusion_twopass import (_n_sums, _twopass_bwd_kernel, _twopass_out_kernel,
                                 _twopass_part_kernel)
from ._onepass import _onepass_bwd_kernel, _onepass_fwd_kernel
from ._onepass_rows import _onepass_rows_bwd_kernel, _onepass_rows_fwd_kernel
from ._onepass_split import (_split_bwd_out_kernel, _split_bwd_part_kernel,
                             _split_fwd_out_kernel, _split_fwd_part_kernel)

_COV, _MAX = METHOD_IDS["redge_cov"], METHOD_IDS["redge_max"]
_DIFFUSION = {METHOD_IDS["redge"], _COV, _MAX}

#: Floating-point contraction (a * b + c as one FMA) is pinned, so that a Triton upgrade that
#: changes the default does not change the numerics.
FP_FUSION = True

#: Largest row handled by one block (path a), per kernel kind.
SINGLE_MAX = {"diffusion_fwd": 4096, "diffusion_bwd": 2048, "onepass_fwd": 4096,
              "onepass_bwd": 4096}
#: Tile width of the tiled path (b).
TILE = {"diffusion_fwd": 2048, "diffusion_bwd": 2048, "onepass_fwd": 4096, "onepass_bwd": 4096}
#: Target elements per thread of each row vector (register budget).
#: (Chosen with the ptxas report of sm_90 under the runtime specialization, bench.compile_check:
#: ptxas compiled 16-warp blocks of the tiled ReDGE-Cov forward and of the one-pass kernels with
#: 4 and 8 elements per thread at 64 registers with 4 to 40 bytes of spills; 8 warps of 8 and 16
#: elements take up to 119 registers and spill nothing.)
ELEMS_PER_THREAD = {"diffusion_fwd": 8, "diffusion_bwd": 4, "onepass_fwd": 16, "onepass_bwd": 16}


#: Rows of at most this many entries go several to a program (a [ROWS, BLOCK] block, the
#: ``_diffusion_rows`` and ``_onepass_rows`` kernels) unless ``block=`` is given. (At K = 128 the
#: bf16 diffusion backward's [2, 128] block spilled 4 bytes under ptxas for sm_90; K = 65 .. 128
#: take one row per program.)
ROWS_MAX_K = 64
#: Entries of the [ROWS, BLOCK] block (ROWS = tile // BLOCK) and its warps. Blocks laid out as
#: their column groups (BLOCK <= 16) take ROWS_TILE_GROUPS entries of ROWS_WARPS_GROUPS warps,
#: four per thread, so that the four columns of a noise call (the grouped form, BLOCK >= 4) sit in
#: one thread and their interleave stays in registers (bench.gpu_model: at 6400 x 64 the
#: 256-entry block of 4 warps, two entries per thread, took 258 instructions per element for st
#: and 902 for redge, four entries per thread 162 and 354); 256 entries of 2 warps rather than 512
#: of 4 spread the small shapes more evenly over the SMs (5184 x 9: 324 programs, at most 3 of 2
#: warps per SM), and 512 entries of 2 warps spilled the st forward at K = 9. Wider blocks (BLOCK
#: 32, 64) take ROWS_TILE entries of ROWS_WARPS warps, sixteen per thread: the row reductions and
#: the per-step scalars are shared by more entries, and the busiest of an SM's four schedulers
#: holds no more entries than with smaller blocks (6400 x 64, sm_90, redge forward / backward by
#: the model, which counts the busiest scheduler, with the row-major layout of
#: ``_diffusion_rows.ROW_PIECE`` not yet in place: 234 / 184 instructions per element and 22.9 /
#: 32.6 % of HBM, against 249 / 199 and 21.6 / 27.6 % at 256 entries of one warp, 13 warps per SM
#: so 4 on the busiest scheduler, and 276 / 242 instructions at 256 entries of 2 warps; with it
#: 204 / 161 and 26.3 / 34.4 %). Rows of
#: K <= 2 (BLOCK = 2, a row per thread) take ROWS_TILE_PAIRS entries of ROWS_WARPS_PAIRS warps.
ROWS_TILE = 1024
ROWS_WARPS = 2
ROWS_TILE_GROUPS = 256
ROWS_WARPS_GROUPS = 2
ROWS_TILE_PAIRS = 256
ROWS_WARPS_PAIRS = 4


def rows_config(k: int) -> tuple[int, int, int]:
    """``(ROWS, BLOCK, num_warps)`` of the several-rows block for rows of ``k <= ROWS_MAX_K``
    entries: BLOCK = next_pow2(k), at least 2 (no lane masked at K = 2; BLOCK >= 4 takes the
    grouped noise form, one call per four columns; BLOCK = 2 a row per thread, one call per row)."""
    block = max(2, triton.next_power_of_2(k))
    if block == 2:
        return ROWS_TILE_PAIRS // block, block, ROWS_WARPS_PAIRS
    if block <= 16:
        return ROWS_TILE_GROUPS // block, block, ROWS_WARPS_GROUPS
    return ROWS_TILE // block, block, ROWS_WARPS


def config(kind: str, k: int, block: int | None = None) -> tuple[bool, int, int]:
    """``(single, BLOCK, num_warps)`` for a row of ``k`` entries and kernel ``kind``."""
    if block is not None:
        if block < 16 or block & (block - 1):
            raise ValueError(f"block must be a power of two >= 16, got {block}")
        single = k <= block
    else:
        p2 = max(32, triton.next_power_of_2(k))
        single = p2 <= SINGLE_MAX[kind]
        block = p2 if single else TILE[kind]
    warps = max(1, min(16, block // ELEMS_PER_THREAD[kind] // 32))
    return single, block, warps


#: Register cap of the diffusion forward (both paths). Left to itself ptxas gave some 8-warp blocks
#: 80 registers and a stack frame with spills (the 2048-wide single block without y, the tiled
#: bf16 soft forward); at 128 they take 103 to 119 and spill nothing (bench.compile_check), and
#: two 8-warp programs still fit an SM.
DIFFUSION_FWD_MAXNREG = 128
#: Register cap of the one-pass backward (one row per program). Left to itself ptxas for sm_80
#: gave the 2048-wide ReinMax block 96 registers and an 8-byte spill; with any cap from 104 up it
#: takes 103 and spills nothing.
ONEPASS_BWD_MAXNREG = 128

#: Programs per SM of the persistent tiled kernels: each keeps one row's state (forward: the
#: trajectory x_k, float32 [K]; backward: z and the carried gradients, float32 [3 or 5, K]) in its
#: scratch slot, re-read at every step with the row of phi (``tiled_programs``).
TILED_PROGRAMS_PER_SM = 2
#: Share of the device's L2 that the rows in flight of the persistent tiled kernels (phi's rows
#: being re-read and the scratch slots) are planned to fill, and the smallest share of the SMs
#: that such a grid may use (``tiled_programs``).
TILED_L2_SHARE = 0.45
TILED_MIN_SM_SHARE = 0.5
#: Register budget of the persistent tiled backward of ReDGE / ReDGE-Max (16 warps): its
#: TILED_PROGRAMS_PER_SM programs of 512 threads per SM leave 64 registers a thread. Given no
#: budget, ptxas for sm_80 aims at three such blocks per SM, 40 registers, and spills 16 bytes of
#: the row loop's invariants; with this one it takes 59 and spills nothing (sm_90: 47 instead of
#: 56 for ReDGE, 63 instead of 64 for ReDGE-Max, no spill either way). ReDGE-Cov's (101 registers
#: on sm_90, one block per SM) keeps ptxas' choice.
TILED_BWD_MAXNREG = 64
#: The tiled backward of the diffusion estimators in two passes without scratch
#: (``_diffusion_twopass``) for n_steps up to this (the chain is unrolled: n is a constexpr and its
#: O(n^2) row sums live in registers); above it the persistent tiled backward of ``_diffusion``.
#: ReDGE-Cov, with its mu / v paths' state, up to ``TWOPASS_COV_MAX_STEPS``.
TWOPASS_MAX_STEPS = 12
TWOPASS_COV_MAX_STEPS = 11
#: ``(top, BLOCK, num_warps)`` of the two-pass backward for n <= top, four columns a thread:
#: ReDGE / ReDGE-Max up to n = 8 in 16 warps of 2048 columns (ptxas' 128 registers, 85 to 128 on
#: sm_90, no spill); n = 9 .. 12 spill there and take 8 warps of 1024 columns (166 to 212).
#: ReDGE-Cov: 16 warps to n = 5 (123 registers on sm_90; n = 6 spills 16 bytes there), 8 warps
#: to n = 11 (173 to 246); n = 12 spills even in 4 warps at 255 registers.
TWOPASS_CONFIGS = ((8, 2048, 16), (TWOPASS_MAX_STEPS, 1024, 8))
TWOPASS_COV_CONFIGS = ((5, 2048, 16), (TWOPASS_COV_MAX_STEPS, 1024, 8))


#: The tiled forward of ReDGE / ReDGE-Max keeps its trajectory x_k in the scratch at every
#: STRIDE-th pass only (``_diffusion._step_pass``): (n_steps from which, stride), the last
#: matching entry wins. A middle pass that keeps x_k moves 12 bytes per element through L2, one
#: that does not 8, and the passes after it take more DDIM steps (about 6 instructions per
#: element each). By the model (sm_90, H100, redge fwd 4096 x 32768 fp32, ms, strides 1 / 2 / 3:
#: n=5 1.11 / 1.23 / -, n=6 - / 1.33 / -, n=7 1.70 / 1.51 / -, n=8 2.00 / 1.72 / 1.84, n=10
#: 2.60 / 2.22 / 2.15; a middle pass is L2-bound, the first (the noise) and the last (the
#: Gumbel-max) issue-bound).
#: ReDGE-Cov's step costs more instructions than its bytes save (its forward is issue-bound):
#: always 1.
TRAJECTORY_STRIDES = ((6, 2), (10, 3))


#: The same with a resident trajectory (``RES`` > 0): the scratch then holds only the rest of the
#: row, its passes are fewer instructions, and more of them go to the DDIM steps.
RESIDENT_TRAJECTORY_STRIDES = ((5, 2), (10, 3))


def trajectory_stride(n: int, cov: bool, res: int = 0) -> int:
    """``STRIDE`` of the tiled diffusion forward of an ``n``-step chain (1: every x_k kept) with
    ``res`` resident tiles."""
    stride = 1
    for steps, s in RESIDENT_TRAJECTORY_STRIDES if res else TRAJECTORY_STRIDES:
        if not cov and n >= steps:
            stride = s
    return stride


#: The several-rows backward of ReDGE / ReDGE-Max (K <= ROWS_MAX_K, BLOCK >= 4) keeps the
#: walk's p_k in registers for n_steps up to this (the chain unrolled: ``REG_STEPS``), 16 float32
#: registers per p_k and thread; longer chains and ReDGE-Cov (also x_k) go through the scratch.
ROWS_BWD_REG_MAX_STEPS = 6


def rows_bwd_reg_steps(n: int, cov: bool, block: int) -> int:
    """``REG_STEPS`` of the several-rows diffusion backward: n, or 0 for the scratch path."""
    return n if not cov and block > 2 and n <= ROWS_BWD_REG_MAX_STEPS else 0


def twopass_max_steps(cov: bool) -> int:
    """The longest chain the two-pass backward takes (ReDGE-Cov: ``cov``)."""
    return TWOPASS_COV_MAX_STEPS if cov else TWOPASS_MAX_STEPS


def twopass_config(n: int, block: int | None = None, cov: bool = False) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` of the two-pass backward at ``n`` steps (ReDGE-Cov: ``cov``;
    ``block`` overrides the width, warps then as ``config``'s rule for four columns a thread)."""
    if block is not None:
        return block, max(1, min(16, block // 128))
    for top, blk, warps in TWOPASS_COV_CONFIGS if cov else TWOPASS_CONFIGS:
        if n <= top:
            return blk, warps
    raise ValueError(f"the two-pass backward takes n_steps <= {twopass_max_steps(cov)}, got {n}")


#: Programs of the persistent tiled kernels under the interpreter (two, so that a program takes
#: several rows and reuses its scratch slot in the tests).
INTERPRETER_PROGRAMS = 2


#: Multiprocessors, L2 bytes and architecture the launcher plans for off a GPU (None: the
#: interpreter's grid; no L2 plan; the sm_90 choices); set by ``planned_sms`` so that launches
#: recorded on ``meta`` / CPU tensors (the performance model, ``bench.kernel_compile``) get the
#: grid and configuration a GPU of that many SMs and that architecture gets.
_PLANNED_SMS: int | None = None
_PLANNED_L2: int | None = None
_PLANNED_ARCH: int | None = None


@contextlib.contextmanager
def planned_sms(sms: int | None, l2_bytes: int | None = None, arch: int | None = None):
    """Plan grids for a GPU of ``sms`` multiprocessors (and ``l2_bytes`` of L2, architecture
    ``sm_<arch>``) whatever the tensors' device."""
    global _PLANNED_SMS, _PLANNED_L2, _PLANNED_ARCH
    old = (_PLANNED_SMS, _PLANNED_L2, _PLANNED_ARCH)
    _PLANNED_SMS, _PLANNED_L2, _PLANNED_ARCH = sms, l2_bytes, arch
    try:
        yield
    finally:
        _PLANNED_SMS, _PLANNED_L2, _PLANNED_ARCH = old


def device_arch(device) -> int:
    """Architecture (``10 * major + minor``) the kernels are configured for: the planned one, the
    CUDA device's, else 90 (the interpreter takes the sm_90 configuration)."""
    if _PLANNED_ARCH is not None:
        return _PLANNED_ARCH
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return 10 * major + minor
    return 90


def sm_count(device) -> int | None:
    """Multiprocessors of the GPU the grid is planned for (None under the interpreter)."""
    if _PLANNED_SMS is not None:
        return _PLANNED_SMS
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return None


def l2_bytes(device) -> int | None:
    """L2 bytes of the GPU the grid is planned for (None: not known, e.g. under the
    interpreter)."""
    if _PLANNED_SMS is not None:
        return _PLANNED_L2
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    return None


#: Tiles of the tiled diffusion forward (``config``'s BLOCK) whose trajectory x_k stays in
#: registers from pass to pass (``RES``; the rest of the row goes through the scratch): each
#: such tile costs 8 float32 registers a thread (8 warps, 2048 columns)
#: and saves the 8 bytes per element that a middle pass moves through L2 for x_k. With it the
#: program takes more than half of an SM's registers: one program per SM
#: (``RESIDENT_MAXNREG``). By architecture (the entry of the largest key <= the device's): the
#: most tiles ptxas keeps without spilling in every configuration (``bench.compile_check``,
#: K = 32768, fp32 / bf16, hard / soft / no y, n = 5 / 6 / 10): sm_90 7 (235-255 registers; 8
#: spills 32-112 bytes everywhere but the fp32 hard forward at STRIDE 1), sm_80 5 (235-252
#: registers; 6 spills 24-32 bytes in the bf16 n = 10 forwards, 7 48-64 bytes in every
#: configuration). ReDGE-Cov (its step keeps mu and the covariance terms live beside x) keeps
#: its whole trajectory in the scratch.
FWD_RESIDENT_TILES = {0: 5, 90: 7}
#: Warps and register cap of the diffusion forward with a resident trajectory (one program per
#: SM).
RESIDENT_WARPS = 8
RESIDENT_MAXNREG = 255


def resident_tiles(k: int, single: bool, block: int, cov: bool, arch: int = 90) -> int:
    """``RES`` of the tiled diffusion forward on ``sm_<arch>``: the whole tiles of a row of ``k``
    (at most ``FWD_RESIDENT_TILES``) whose trajectory stays in registers; 0 for the single block
    and for ReDGE-Cov."""
    if single or cov:
        return 0
    top = FWD_RESIDENT_TILES[max(a for a in FWD_RESIDENT_TILES if a <= arch)]
    return min(top, k // block)


def tiled_programs(rows: int, device, row_bytes: int = 0, per_sm: int = 0) -> int:
    """Grid of the persistent tiled kernels: at most ``rows`` and the programs the device keeps
    resident (``per_sm`` per SM, default ``TILED_PROGRAMS_PER_SM``); fewer when that many rows in
    flight
    (``row_bytes`` each: the row of the inputs re-read at every step and the program's scratch
    slot) would not fit in ``TILED_L2_SHARE`` of L2 and the programs that fit still use at least
    ``TILED_MIN_SM_SHARE`` of the SMs: they then re-read their rows from L2 instead of DRAM at
    each of the n - 1 steps (halving the SMs at most doubles the issue time; streaming from DRAM
    costs the forward 12 bytes per element per step against a floor of 8 in all).

    The scratch is transient workspace of the call, ``grid x (K - RES BLOCK)`` float32 (forward) or
    ``grid x bwd_slot_rows(n) x K`` (backward); nothing of it is kept between calls."""
    sms = sm_count(device)
    if sms is None:
        return max(1, min(rows, INTERPRETER_PROGRAMS))
    grid = sms * (per_sm or TILED_PROGRAMS_PER_SM)
    l2 = l2_bytes(device)
    if l2 and row_bytes:
        fit = int(TILED_L2_SHARE * l2) // row_bytes
        if sms * TILED_MIN_SM_SHARE <= fit < grid:
            grid = fit
    return max(1, min(rows, grid))


#: Warps per SM the persistent single-block backward fills with programs (its scratch slot,
#: float32 [n-1 or 2(n-1), BLOCK] per program, is written and read back by the same threads).
SINGLE_WARPS_PER_SM = 64


def single_programs(rows: int, warps: int, device) -> int:
    """Grid of the persistent single-block backward: ``min(rows, programs that fill the SMs'
    warp slots)``, so its scratch (``grid x bwd_slot_rows x BLOCK`` float32) stays small."""
    sms = sm_count(device)
    if sms is not None:
        return max(1, min(rows, sms * max(1, SINGLE_WARPS_PER_SM // warps)))
    return max(1, min(rows, INTERPRETER_PROGRAMS))


def bwd_slot_rows(n: int, single: bool, cov: bool) -> int:
    """Scratch rows per program of the diffusion backward (``_diffusion._slot_rows``): the
    trajectory p_1 .. p_{n-1} (ReDGE-Cov also x_1 .. x_{n-1}); tiled also the carried gradients
    (gx, gphi; ReDGE-Cov gmu, glam and z). Rows of BLOCK (single block) or K (tiled) float32,
    e.g. 264 x 6 x 32768 x 4 B = 208 MB for the tiled redge backward at K = 32768, n = 5 on a
    132-SM GPU; nothing of it is kept between calls."""
    return (0 if single else (5 if cov else 2)) + (n - 1) * (2 if cov else 1)


def _stats_dtype(phi):
    return torch.float64 if phi.dtype == torch.float64 else torch.float32


def _check(phi, seed, coefs):
    if phi.dim() != 2:
        raise ValueError("redge_kernels.triton: phi must be 2-D [R, K], got shape "
                         f"{tuple(phi.shape)}")
    if seed.dim() != 0 or seed.dtype != torch.int64:
        raise TypeError("redge_kernels.triton: seed must be a 0-dim int64 tensor")
    if coefs.dim() != 2 or coefs.shape[1] != 5 or coefs.shape[0] < 2:
        raise ValueError("redge_kernels.triton: coefs must be [n >= 2, 5], got "
                         f"{tuple(coefs.shape)}")


def _grouped(col_offset: int, block: int, warps: int) -> bool:
    """The grouped noise form (one Philox call per four columns, ``_noise``) needs tiles that start
    at a multiple of 4 and pays off with at least one call per thread; below that (K < 128 per warp)
    the per-element form draws the same values with less work per thread."""
    return col_offset % 4 == 0 and block >= 128 * warps


def _check_offsets(rows, k, row_offset, col_offset):
    for name, v in (("row_offset", row_offset), ("col_offset", col_offset)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"redge_kernels.triton: {name} must be an int, got {type(v).__name__}")
        if v < 0:
            raise ValueError(f"redge_kernels.triton: {name} must be >= 0, got {v}")
    if row_offset + rows > 2**63:
        raise ValueError("redge_kernels.triton: global rows row_offset + R must be <= 2**63 "
                         f"(int64 in the kernels), got {row_offset + rows}")
    if col_offset + k > 2**34:
        raise ValueError("redge_kernels.triton: global columns col_offset + K must be <= 2**34 "
                         f"(the noise counter's range), got {col_offset + k}")


def _on_device(phi):
    """Launch on the logits' GPU (Triton launches on the current device)."""
    return torch.cuda.device(phi.device) if phi.is_cuda else contextlib.nullcontext()


def fwd(phi, seed, coefs, method: int, hard: bool, tau: float, row_offset: int = 0,
        write_y: bool = True, *, block: int | None = None, col_offset: int = 0):
    """``redge_kernels::fwd`` on Triton: ``(y [R, K], stats [R, n, 2], index [R])`` (see ops.py);
    ``row_offset`` is the op's ``row_start``; ``write_y=False`` compiles the y stores out and
    returns an empty ``[0, K]`` y; ``index`` is local to the block (add ``col_offset`` for the
    global column)."""
    if not isinstance(write_y, bool):
        raise TypeError("redge_kernels.triton: write_y must be a bool, got "
                        f"{type(write_y).__name__}")
    with _on_device(phi):
        return _fwd(phi, seed, coefs, method, hard, tau, block, row_offset, col_offset, write_y)


def bwd(grad_y, phi, seed, coefs, stats, index, method: int, hard: bool, tau: float,
        row_offset: int = 0, *, block: int | None = None, col_offset: int = 0):
    """``redge_kernels::bwd`` on Triton: ``grad_phi [R, K]`` (see ops.py); ``hard`` does not
    change the gradient (straight-through)."""
    with _on_device(phi):
        return _bwd(grad_y, phi, seed, coefs, stats, index, method, tau, block, row_offset,
                    col_offset)


def _int32_columns(t):
    """``t`` [R, K], or a contiguous copy where ``(K - 1) |stride(1)|`` would overflow the int32
    column offsets of the tiled kernels (a transposed view of a large matrix)."""
    if (t.shape[1] - 1) * abs(t.stride(1)) >= 2**31:
        return t.contiguous()
    return t


def _fwd(phi, seed, coefs, method, hard, tau, block, row_offset, col_offset, write_y):
    _check(phi, seed, coefs)
    phi = _int32_columns(phi)
    rows, k = phi.shape
    _check_offsets(rows, k, row_offset, col_offset)
    n = coefs.shape[0]
    y = torch.empty((rows if write_y else 0, k), dtype=phi.dtype, device=phi.device)
    stats = torch.empty((rows, n, 2), dtype=_stats_dtype(phi), device=phi.device)
    index = torch.empty((rows,), dtype=torch.int64, device=phi.device)
    if rows == 0:
        return y, stats, index
    coefs = coefs.contiguous()
    steps_p2 = triton.next_power_of_2(n)
    if method in _DIFFUSION and block is None and k <= ROWS_MAX_K:
        nrows, blk, warps = rows_config(k)
        _diffusion_rows_fwd_kernel[(triton.cdiv(rows, nrows),)](
            phi, seed, coefs, y, stats, index, rows, k, n, row_offset, col_offset,
            phi.stride(0), phi.stride(1), COV=method == _COV, HARD=bool(hard) or method == _MAX,
            ROWS=nrows, BLOCK=blk, GROUPED=col_offset % 4 == 0, WRITE_Y=write_y,
            num_warps=warps, enable_fp_fusion=FP_FUSION)
    elif method in _DIFFUSION and split_plan(rows, k, "diffusion_fwd", block,
                                             phi.device) is not None:
        _diffusion_split_fwd(phi, seed, coefs, y, stats, index, method, hard, block, row_offset,
                             col_offset, write_y)
    elif method in _DIFFUSION:
        single, blk, warps = config("diffusion_fwd", k, block)
        res = resident_tiles(k, single, blk, method == _COV, device_arch(phi.device))
        if res:
            warps = RESIDENT_WARPS
        width = k - res * blk  # the scratch's columns: those past the resident tiles
        # rows in flight: phi re-read at every pass and the scratch slot
        grid = rows if single else tiled_programs(rows, phi.device,
                                                  k * phi.element_size() + 4 * width,
                                                  1 if res else 0)
        scratch = torch.empty((1 if single else grid, max(1, width)), dtype=torch.float32,
                              device=phi.device)
        _diffusion_fwd_kernel[(grid,)](
            phi, seed, coefs, y, stats, index, scratch, rows, k, n, row_offset, col_offset,
            phi.stride(0), phi.stride(1), COV=method == _COV, HARD=bool(hard) or method == _MAX,
            SINGLE=single, BLOCK=blk, STEPS_P2=steps_p2, GROUPED=_grouped(col_offset, blk, warps),
            WRITE_Y=write_y, STRIDE=1 if single else trajectory_stride(n, method == _COV, res),
            EVEN=not single and k % blk == 0, RES=res, num_warps=warps,
            enable_fp_fusion=FP_FUSION, maxnreg=RESIDENT_MAXNREG if res else DIFFUSION_FWD_MAXNREG)
    elif block is None and k <= ROWS_MAX_K:
        nrows, blk, warps = rows_config(k)
        _onepass_rows_fwd_kernel[(triton.cdiv(rows, nrows),)](
            phi, seed, y, stats, index, float(tau), rows, k, n, row_offset, col_offset,
            phi.stride(0), phi.stride(1), METHOD=int(method), HARD=bool(hard), ROWS=nrows,
            BLOCK=blk, STEPS_P2=steps_p2, GROUPED=col_offset % 4 == 0, WRITE_Y=write_y,
            num_warps=warps, enable_fp_fusion=FP_FUSION)
    elif split_plan(rows, k, "onepass_fwd", block, phi.device) is not None:
        _onepass_split_fwd(phi, seed, y, stats, index, method, hard, tau, block, row_offset,
                           col_offset, write_y)
    else:
        single, blk, warps = config("onepass_fwd", k, block)
        _onepass_fwd_kernel[(rows,)](
            phi, seed, y, stats, index, float(tau), k, n, row_offset, col_offset, phi.stride(0),
            phi.stride(1), METHOD=int(method), HARD=bool(hard), SINGLE=single, BLOCK=blk,
            STEPS_P2=steps_p2, GROUPED=_grouped(col_offset, blk, warps), WRITE_Y=write_y,
            EVEN=not single and k % blk == 0, num_warps=warps, enable_fp_fusion=FP_FUSION)
    return y, stats, index


def _bwd(grad_y, phi, seed, coefs, stats, index, method, tau, block, row_offset, col_offset):
    _check(phi, seed, coefs)
    phi = _int32_columns(phi)
    grad_y = _int32_columns(grad_y)
    rows, k = phi.shape
    _check_offsets(rows, k, row_offset, col_offset)
    n = coefs.shape[0]
    grad_phi = torch.empty((rows, k), dtype=phi.dtype, device=phi.device)
    if rows == 0:
        return grad_phi
    coefs = coefs.contiguous()
    stats = stats.contiguous()
    index = index.contiguous()
    steps_p2 = triton.next_power_of_2(n)
    if method in _DIFFUSION and block is None and k <= ROWS_MAX_K:
        nrows, blk, warps = rows_config(k)
        grid = triton.cdiv(rows, nrows)
        reg_steps = rows_bwd_reg_steps(n, method == _COV, blk)
        slot = (grid, bwd_slot_rows(n, True, method == _COV), nrows, blk) if not reg_steps else 1
        scratch = torch.empty(slot, dtype=torch.float32, device=phi.device)
        _diffusion_rows_bwd_kernel[(grid,)](
            grad_y, phi, seed, coefs, stats, index, grad_phi, scratch, rows, k, n, row_offset,
            col_offset, phi.stride(0), phi.stride(1), grad_y.stride(0), grad_y.stride(1),
            COV=method == _COV, MAX=method == _MAX, ROWS=nrows, BLOCK=blk,
            GROUPED=col_offset % 4 == 0, REG_STEPS=reg_steps, num_warps=warps,
            enable_fp_fusion=FP_FUSION)
    elif (method in _DIFFUSION and n <= twopass_max_steps(method == _COV)
          and not config("diffusion_bwd", k, block)[0]):
        _twopass_bwd(grad_y, phi, seed, coefs, stats, index, grad_phi, method, block, row_offset,
                     col_offset)
    elif method in _DIFFUSION and split_plan(rows, k, "diffusion_bwd", block,
                                             phi.device) is not None:
        _diffusion_split_bwd(grad_y, phi, seed, coefs, stats, index, grad_phi, method, block,
                             row_offset, col_offset)
    elif method in _DIFFUSION:
        single, blk, warps = config("diffusion_bwd", k, block)
        slot = (bwd_slot_rows(n, single, method == _COV), blk if single else k)
        grid = (single_programs(rows, warps, phi.device) if single
                else tiled_programs(rows, phi.device, k * (phi.element_size()
                                                           + grad_y.element_size() + 4 * slot[0])))
        scratch = torch.empty((grid, *slot), dtype=torch.float32, device=phi.device)
        _diffusion_bwd_kernel[(grid,)](
            grad_y, phi, seed, coefs, stats, index, grad_phi, scratch, rows, k, n, row_offset,
            col_offset, phi.stride(0), phi.stride(1), grad_y.stride(0), grad_y.stride(1),
            COV=method == _COV, MAX=method == _MAX, SINGLE=single, BLOCK=blk, STEPS_P2=steps_p2,
            GROUPED=_grouped(col_offset, blk, warps), num_warps=warps, enable_fp_fusion=FP_FUSION,
            **({} if single or method == _COV else {"maxnreg": TILED_BWD_MAXNREG}))
    elif block is None and k <= ROWS_MAX_K:
        nrows, blk, warps = rows_config(k)
        _onepass_rows_bwd_kernel[(triton.cdiv(rows, nrows),)](
            grad_y, phi, seed, stats, index, grad_phi, float(tau), rows, k, n, row_offset,
            col_offset, phi.stride(0), phi.stride(1), grad_y.stride(0), grad_y.stride(1),
            METHOD=int(method), ROWS=nrows, BLOCK=blk, GROUPED=col_offset % 4 == 0,
            num_warps=warps, enable_fp_fusion=FP_FUSION)
    elif split_plan(rows, k, "onepass_bwd", block, phi.device) is not None:
        _onepass_split_bwd(grad_y, phi, seed, stats, index, grad_phi, method, tau, block,
                           row_offset, col_offset)
    else:
        single, blk, warps = config("onepass_bwd", k, block)
        _onepass_bwd_kernel[(rows,)](
            grad_y, phi, seed, stats, index, grad_phi, float(tau), k, n, row_offset, col_offset,
            phi.stride(0), phi.stride(1), grad_y.stride(0), grad_y.stride(1),
            METHOD=int(method), SINGLE=single, BLOCK=blk, STEPS_P2=steps_p2,
            GROUPED=_grouped(col_offset, blk, warps), EVEN=not single and k % blk == 0,
            num_warps=warps, enable_fp_fusion=FP_FUSION, maxnreg=ONEPASS_BWD_MAXNREG)
    return grad_phi


# ---- the one-pass estimators with rows split into vocabulary chunks (few long rows) ------------

#: Programs per SM the split grid aims at (rows x chunks <= SMs x this, one wave): the tiled
#: one-pass forward takes ~100 registers at 8 warps, so two of its programs are resident per SM.
SPLIT_PROGRAMS_PER_SM = 2


def split_plan(rows: int, k: int, kind: str, block: int | None, device,
               tile: tuple[int, int] | None = None) -> tuple | None:
    """``(n_chunks, CHUNK, BLOCK, num_warps)`` of the (row x vocabulary chunk) grid of the one-pass
    kernels (``_onepass_split``; ``kind`` "diffusion_fwd": the diffusion forward,
    ``_diffusion_split``), or None for one program per row: split when the row is tiled
    (``config``) and the rows fill fewer than half the planned programs (``sm_count`` SMs x
    ``SPLIT_PROGRAMS_PER_SM``; under the interpreter only within ``planned_sms``). The chunks,
    CHUNK = a whole number of tiles, are as many as fit that budget, at least two. ``tile``:
    the ``(BLOCK, num_warps)`` of a kernel whose tile is not ``config``'s (the two-pass
    backward's ``twopass_config``)."""
    single, blk, warps = config(kind, k, block)
    if tile is not None:
        blk, warps = tile
    sms = sm_count(device)
    if single or sms is None:
        return None
    per_row = sms * SPLIT_PROGRAMS_PER_SM // rows
    tiles = triton.cdiv(k, blk)
    if per_row < 2 or tiles < 2:
        return None
    tiles_per_chunk = triton.cdiv(tiles, min(per_row, tiles))
    n_chunks = triton.cdiv(tiles, tiles_per_chunk)
    return n_chunks, tiles_per_chunk * blk, blk, warps


def _split_parts(rows, n_chunks, device):
    """Transient partials of the split kernels: float32 [R, C, 5] and int64 [R, C, 3]."""
    return (torch.empty((rows, n_chunks, 5), dtype=torch.float32, device=device),
            torch.empty((rows, n_chunks, 3), dtype=torch.int64, device=device))


def _onepass_split_fwd(phi, seed, y, stats, index, method, hard, tau, block, row_offset,
                       col_offset, write_y):
    """The split forward (``_onepass_split``): partials over (row, chunk), then y per (row,
    chunk) and the row's stats / index from chunk 0 (one chunk column without y)."""
    rows, k = phi.shape
    n = stats.shape[1]
    n_chunks, chunk, blk, warps = split_plan(rows, k, "onepass_fwd", block, phi.device)
    part_f, part_i = _split_parts(rows, n_chunks, phi.device)
    grouped = _grouped(col_offset, blk, warps)
    _split_fwd_part_kernel[(rows, n_chunks)](
        phi, seed, part_f, part_i, float(tau), k, chunk, n_chunks, row_offset, col_offset,
        phi.stride(0), phi.stride(1), METHOD=int(method), BLOCK=blk, GROUPED=grouped,
        num_warps=warps, enable_fp_fusion=FP_FUSION)
    _split_fwd_out_kernel[(rows, n_chunks if write_y else 1)](
        phi, seed, part_f, part_i, y, stats, index, float(tau), k, chunk, n_chunks, n,
        row_offset, col_offset, phi.stride(0), phi.stride(1), METHOD=int(method),
        HARD=bool(hard), CHUNKS_P2=triton.next_power_of_2(n_chunks), BLOCK=blk,
        STEPS_P2=triton.next_power_of_2(n), GROUPED=grouped, WRITE_Y=write_y, num_warps=warps,
        enable_fp_fusion=FP_FUSION)


def _onepass_split_bwd(grad_y, phi, seed, stats, index, grad_phi, method, tau, block, row_offset,
                       col_offset):
    """The split backward (``_onepass_split``): row-sum partials over (row, chunk), then grad_phi
    per (row, chunk)."""
    rows, k = phi.shape
    n = stats.shape[1]
    n_chunks, chunk, blk, warps = split_plan(rows, k, "onepass_bwd", block, phi.device)
    part_f, part_i = _split_parts(rows, n_chunks, phi.device)
    grouped = _grouped(col_offset, blk, warps)
    args = (tau, k, chunk, n_chunks, n, row_offset, col_offset, phi.stride(0), phi.stride(1),
            grad_y.stride(0), grad_y.stride(1))
    _split_bwd_part_kernel[(rows, n_chunks)](
        grad_y, phi, seed, stats, index, part_f, part_i, *args, METHOD=int(method), BLOCK=blk,
        STEPS_P2=triton.next_power_of_2(n), GROUPED=grouped, num_warps=warps,
        enable_fp_fusion=FP_FUSION)
    _split_bwd_out_kernel[(rows, n_chunks)](
        grad_y, phi, seed, stats, index, part_f, part_i, grad_phi, *args, METHOD=int(method),
        CHUNKS_P2=triton.next_power_of_2(n_chunks), BLOCK=blk,
        STEPS_P2=triton.next_power_of_2(n), GROUPED=grouped, num_warps=warps,
        enable_fp_fusion=FP_FUSION)


def _diffusion_split_fwd(phi, seed, coefs, y, stats, index, method, hard, block, row_offset,
                         col_offset, write_y):
    """The split diffusion forward (``_diffusion_split``): ReDGE-Cov's slot 0 partials, one
    launch per denoiser k = n-1 .. 1 over (row, chunk) on the trajectory scratch x [R, K]
    float32, then y per (row, chunk) and the row's stats / index from chunk 0."""
    rows, k = phi.shape
    n = coefs.shape[0]
    cov, hard = method == _COV, bool(hard) or method == _MAX
    n_chunks, chunk, blk, warps = split_plan(rows, k, "diffusion_fwd", block, phi.device)
    dev = phi.device
    x = torch.empty((rows, k), dtype=torch.float32, device=dev)
    part_s = torch.empty((n, rows, n_chunks, 2), dtype=torch.float32, device=dev)
    part_i = torch.empty((rows, n_chunks, 3), dtype=torch.int64, device=dev)
    part_g = torch.empty((rows, n_chunks), dtype=torch.float32, device=dev)
    grouped = _grouped(col_offset, blk, warps)
    chunks_p2 = triton.next_power_of_2(n_chunks)
    strides = (phi.stride(0), phi.stride(1))
    meta = {"num_warps": warps, "enable_fp_fusion": FP_FUSION}
    if cov:
        _dsplit_base_kernel[(rows, n_chunks)](phi, part_s, rows, k, chunk, n_chunks, *strides,
                                              BLOCK=blk, **meta)
    for step in range(n - 1, 0, -1):
        _dsplit_step_kernel[(rows, n_chunks)](
            phi, seed, coefs, x, part_s, part_i, part_g, rows, k, chunk, n_chunks, step,
            row_offset, col_offset, *strides, COV=cov, HARD=hard, FIRST=step == n - 1,
            LAST=step == 1, CHUNKS_P2=chunks_p2, BLOCK=blk, GROUPED=grouped,
            maxnreg=DIFFUSION_FWD_MAXNREG, **meta)
    _dsplit_out_kernel[(rows, n_chunks if write_y else 1)](
        phi, coefs, x, part_s, part_i, part_g, y, stats, index, rows, k, chunk, n_chunks, n,
        *strides, COV=cov, HARD=hard, CHUNKS_P2=chunks_p2, BLOCK=blk,
        STEPS_P2=triton.next_power_of_2(n), WRITE_Y=write_y, **meta)


def _diffusion_split_bwd(grad_y, phi, seed, coefs, stats, index, grad_phi, method, block,
                         row_offset, col_offset):
    """The split diffusion backward (``_diffusion_split``): the walk, then one launch per pass
    j = 2 .. n of the tiled backward over (row, chunk) on a scratch slot per row (ReDGE-Cov: one
    more launch for the d_0 term), the dot products summed over the chunks in chunk order."""
    rows, k = phi.shape
    n = coefs.shape[0]
    cov = method == _COV
    n_chunks, chunk, blk, warps = split_plan(rows, k, "diffusion_bwd", block, phi.device)
    dev = phi.device
    ws = torch.empty((rows, bwd_slot_rows(n, False, cov), k), dtype=torch.float32, device=dev)
    part_d = torch.empty((n, rows, n_chunks), dtype=torch.float32, device=dev)
    chunks_p2, steps_p2 = triton.next_power_of_2(n_chunks), triton.next_power_of_2(n)
    shape = (rows, k, chunk, n_chunks, n)
    strides = (phi.stride(0), phi.stride(1), grad_y.stride(0), grad_y.stride(1))
    meta = {"BLOCK": blk, "STEPS_P2": steps_p2, "num_warps": warps,
            "enable_fp_fusion": FP_FUSION}
    grid = (rows, n_chunks)
    _dsplit_bwd_walk_kernel[grid](
        grad_y, phi, seed, coefs, stats, index, ws, part_d, *shape, row_offset, col_offset,
        *strides, COV=cov, GROUPED=_grouped(col_offset, blk, warps), **meta)
    for j in range(2, n + 1):
        _dsplit_bwd_step_kernel[grid](
            grad_y, phi, coefs, stats, index, grad_phi, ws, part_d, *shape, j, *strides,
            COV=cov, MAX=method == _MAX, LAST=j == n, CHUNKS_P2=chunks_p2, **meta)
    if cov:
        _dsplit_bwd_cov_kernel[grid](grad_y, phi, stats, index, grad_phi, ws, part_d, *shape,
                                     *strides, CHUNKS_P2=chunks_p2, **meta)


def _twopass_bwd(grad_y, phi, seed, coefs, stats, index, grad_phi, method, block, row_offset,
                 col_offset):
    """The tiled diffusion backward in two passes (``_diffusion_twopass``): one program per row,
    or, for few long rows (``split_plan`` on the two-pass tile), the row sums of each (row,
    chunk) into partials [R, C, n (n - 1) / 2 (+ n for ReDGE-Cov)] float32, then grad_phi per
    (row, chunk) from the sums added over the chunks in chunk order."""
    rows, k = phi.shape
    n = coefs.shape[0]
    blk, warps = twopass_config(n, block, method == _COV)
    strides = (phi.stride(0), phi.stride(1), grad_y.stride(0), grad_y.stride(1))
    meta = {"N": n, "COV": method == _COV, "BLOCK": blk,
            "GROUPED": _grouped(col_offset, blk, warps), "num_warps": warps,
            "enable_fp_fusion": FP_FUSION}
    inputs = (grad_y, phi, seed, coefs, stats, index)
    plan = split_plan(rows, k, "diffusion_bwd", block, phi.device, tile=(blk, warps))
    if plan is None:
        _twopass_bwd_kernel[(rows,)](*inputs, grad_phi, k, row_offset, col_offset, *strides,
                                     MAX=method == _MAX, EVEN=k % blk == 0, **meta)
        return
    n_chunks, chunk = plan[:2]
    meta["EVEN"] = k % chunk == 0 and chunk % blk == 0
    part = torch.empty((rows, n_chunks, _n_sums(n, method == _COV)), dtype=torch.float32,
                       device=phi.device)
    sizes = (k, chunk, n_chunks, row_offset, col_offset)
    _twopass_part_kernel[(rows, n_chunks)](*inputs, part, *sizes, *strides, **meta)
    _twopass_out_kernel[(rows, n_chunks)](*inputs, part, grad_phi, *sizes, *strides,
                                          MAX=method == _MAX,
                                          CHUNKS_P2=triton.next_power_of_2(n_chunks), **meta)
