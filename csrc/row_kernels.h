// Interface between the tensor-level ops (ops_cpu.cpp) and the per-row kernels, which are compiled
// once per CPU capability (kernels_cap_*.cpp) from row_kernels_impl.h. Plain data only: the
// capability translation units see raw pointers, never at::Tensor.
#pragma once

#include <atomic>
#include <cstdint>

namespace redge_kernels {

/// Method ids (redge_kernels/_constants.py METHOD_IDS).
enum Method : int { kST = 0, kGumbel = 1, kReinMax = 2, kReDGE = 3, kReDGECov = 4, kReDGEMax = 5 };

/// Input dtypes, index into KernelTable.
enum DTypeId : int { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3, kNumDTypes = 4 };

/// Columns of coefs[n, 5] (schedule.py).
enum CoefCol : int { kCoefC = 0, kCoefA = 1, kCoefB = 2, kCoefAlpha = 3, kCoefSigma = 4 };

/// Everything one call needs. acc_t is float, or double for fp64 input; scalar_t the input dtype.
/// Strides are in elements and may be 0 (expanded) or negative-free arbitrary.
struct RowArgs {
  int64_t rows = 0, K = 0;
  int n_steps = 2;
  int method = kST;
  bool hard = true;
  double tau = 1.0;
  uint32_t key0 = 0, key1 = 0;  // Philox key = (seed lo, seed hi)
  int64_t row_start = 0;        // global row of row 0: row r draws the noise of row_start + r

  const void* phi = nullptr;  // scalar_t [rows, K]
  int64_t phi_stride0 = 0, phi_stride1 = 0;
  const void* coefs = nullptr;  // acc_t [n_steps, 5], contiguous

  // forward outputs
  void* y = nullptr;            // scalar_t [rows, K], contiguous; null: y is not written
  void* stats = nullptr;        // acc_t [rows, n_steps, 2], contiguous (read by the backward)
  int64_t* index = nullptr;     // int64 [rows]

  // backward inputs / output
  const void* grad_y = nullptr;  // scalar_t [rows, K]
  int64_t grad_stride0 = 0, grad_stride1 = 0;
  void* grad_phi = nullptr;      // scalar_t [rows, K], contiguous

  // Work sharing: when set, every task grabs blocks of row_block rows from *next_row.
  std::atomic<int64_t>* next_row = nullptr;
  int64_t row_block = 1;

  /// The method runs the DDIM chain (ReDGE, ReDGE-Cov, ReDGE-Max).
  bool chain() const { return method == kReDGE || method == kReDGECov || method == kReDGEMax; }
  /// The forward's value is one_hot(index) (hard, or a method that is hard only).
  bool one_hot_out() const { return hard || method == kReinMax || method == kReDGEMax; }
  /// Typed views of the untyped pointers (acc_t = float or double, scalar_t = the input dtype).
  template <typename acc_t>
  const acc_t* coefs_as() const { return static_cast<const acc_t*>(coefs); }
  template <typename acc_t>
  acc_t* stats_as() const { return static_cast<acc_t*>(stats); }
};

using RowRangeFn = void (*)(const RowArgs& args, int64_t row_begin, int64_t row_end);

/// The noise of rows [row0, row0 + rows) x columns [col0, col0 + n) (z = stream 0, g = the
/// Gumbel of stream 1, float32, row-major with row stride ld; either may be null), with the
/// kernels' vectorized generator (docs/SPEC.md "Randomness"); for the bulk noise op
/// (noise_cpu.cpp) and the known-answer tests.
using NoiseRowsFn = void (*)(uint64_t row0, int64_t rows, uint64_t col0, int64_t n, int64_t ld,
                             uint32_t key0, uint32_t key1, float* z, float* g);

/// Forward / backward over rows [row_begin, row_end), one entry per DTypeId.
/// fwd / bwd: one row at a time (row_kernels_impl.h). fwd_lanes / bwd_lanes: for small K, blocks
/// of lane_rows[dtype] rows with one row per SIMD lane (lane_kernels_impl.h); the launcher hands
/// them row ranges in whole blocks. Same outputs and stats layout (ops.py); null when absent.
struct KernelTable {
  RowRangeFn fwd[kNumDTypes];
  RowRangeFn bwd[kNumDTypes];
  NoiseRowsFn noise_rows;
  const char* name;
  RowRangeFn fwd_lanes[kNumDTypes];
  RowRangeFn bwd_lanes[kNumDTypes];
  int lane_rows[kNumDTypes];
};

const KernelTable& kernels_default();  // portable (ATen DEFAULT vectors)
const KernelTable& kernels_avx2();     // x86-64 AVX2 + FMA (the portable ones where not built)
const KernelTable& kernels_avx512();   // x86-64 AVX-512 F/DQ/BW/VL (else the AVX2 ones)
// Whether this CPU can run the AVX2 (AVX2, FMA, F16C, BMI2) and the AVX-512 (F/DQ/BW/VL on top)
// kernel sets; false off x86-64. Calling a set the CPU cannot run is an illegal instruction.
bool cpu_runs_avx2();
bool cpu_runs_avx512();

/// The table for this CPU: AVX-512 when ATen's capability is AVX512 and the CPU has F, DQ, BW and
/// VL; AVX2 when it is AVX2 or higher and the CPU has AVX2, FMA, F16C and BMI2; else the portable
/// one. Honours the ATEN_CPU_CAPABILITY environment variable ("default", "avx2", "avx512").
const KernelTable& select_kernels();

/// Generation of the kept per-thread scratch (row_kernels_impl.h thread_scratch): bumped by
/// redge_kernels_cpu::_pool_clear, after which every thread drops its kept buffers at its next call.
uint64_t scratch_generation();

}  // namespace redge_kernels
