// Tensor-level CPU implementations of redge_kernels::fwd / ::bwd (schema: redge_kernels/ops.py).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace redge_kernels {

/// fwd(phi[R, K] any strides fp16/bf16/fp32/fp64, seed 0-dim int64, coefs[n, 5], method, hard, tau,
///     row_start, write_y)
///   -> (y[R, K] contiguous phi.dtype ([0, K] when !write_y), stats[R, n, 2] float32 (float64 for
///       fp64), index[R] int64). Row r draws the noise of row row_start + r.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& phi, const at::Tensor& seed,
                                                       const at::Tensor& coefs, int64_t method,
                                                       bool hard, double tau, int64_t row_start = 0,
                                                       bool write_y = true);

/// bwd(grad_y[R, K], phi, seed, coefs, stats, index, method, hard, tau, row_start) -> grad_phi[R, K]
at::Tensor bwd_cpu(const at::Tensor& grad_y, const at::Tensor& phi, const at::Tensor& seed,
                   const at::Tensor& coefs, const at::Tensor& stats, const at::Tensor& index,
                   int64_t method, bool hard, double tau, int64_t row_start = 0);

/// Hint (Linux THP "madvise" mode) that a freshly allocated, untouched output buffer of nbytes be
/// backed by 2 MiB pages: one page fault per 2 MiB instead of 512. Harmless where refused.
void advise_huge_pages(void* ptr, int64_t nbytes);

/// An uninitialised contiguous output tensor (the kernels write every element): large ones come
/// from the per-process pool of freed output buffers (output_pool.cpp), small ones from at::empty;
/// both advised for huge pages.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

/// Name of the kernel set this CPU runs ("avx512", "avx2" or "default").
const char* kernel_set_name();

}  // namespace redge_kernels
