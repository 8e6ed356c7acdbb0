// Bulk CPU noise with the kernels' own generators (SPEC "Randomness"):
//   redge_kernels_cpu::noise(seed, rows, cols, row_start, normal, gumbel) -> (z, G)
//   z[r, c] = stream 0 (Box-Muller normal), G[r, c] = stream 1 (Gumbel), both float32 [rows, cols],
//   at offset (row_start + r) * cols + c; a tensor that was not asked for is empty.
// Not part of the estimator API: tests compare it with redge_kernels/noise.py at large offsets, and
// bench/cpu_speed.py times it as the noise floor of the fused design (the forward draws z and G,
// the backward regenerates z: no kernel of this design can be faster than that).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "redge_cpu.h"
#include "row_kernels.h"

namespace redge_kernels {
namespace {

std::tuple<at::Tensor, at::Tensor> noise_cpu(const at::Tensor& seed, int64_t rows, int64_t cols,
                                             int64_t row_start, bool normal, bool gumbel) {
  TORCH_CHECK(seed.dim() == 0 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              "redge_kernels_cpu::noise: seed must be a 0-dim int64 CPU tensor");
  TORCH_CHECK(rows >= 0 && cols >= 0 && row_start >= 0,
              "redge_kernels_cpu::noise: rows, cols and row_start must be >= 0");
  const uint64_t s = static_cast<uint64_t>(seed.item<int64_t>());
  const uint32_t k0 = static_cast<uint32_t>(s), k1 = static_cast<uint32_t>(s >> 32);
  const int64_t n = rows * cols;
  const int64_t n_pad = (n + 7) / 8 * 8;  // the generator writes whole blocks of 8 offsets
  const auto opts = seed.options().dtype(at::kFloat);
  at::Tensor z = at::empty({normal ? n_pad : 0}, opts);
  at::Tensor g = at::empty({gumbel ? n_pad : 0}, opts);
  float* zp = normal ? z.data_ptr<float>() : nullptr;
  float* gp = gumbel ? g.data_ptr<float>() : nullptr;
  advise_huge_pages(zp, z.nbytes());  // as the fused ops do for their outputs
  advise_huge_pages(gp, g.nbytes());
  const uint64_t base = static_cast<uint64_t>(row_start) * static_cast<uint64_t>(cols);
  const NoiseBlockFn fn = select_kernels().noise_block;
  constexpr int64_t kChunk = 1 << 15;  // offsets per task (a multiple of 8)
  at::parallel_for(0, (n_pad + kChunk - 1) / kChunk, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t j = c * kChunk;
      const int64_t len = std::min(kChunk, n_pad - j);
      fn(base + static_cast<uint64_t>(j), len, k0, k1, zp ? zp + j : nullptr, gp ? gp + j : nullptr);
    }
  });
  auto shape = [&](const at::Tensor& t, bool on) {
    return on ? t.narrow(0, 0, n).view({rows, cols}) : t;
  };
  return {shape(z, normal), shape(g, gumbel)};
}

}  // namespace
}  // namespace redge_kernels

TORCH_LIBRARY(redge_kernels_cpu, m) {
  m.def("noise(Tensor seed, int rows, int cols, int row_start=0, bool normal=True, bool gumbel=True)"
        " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(redge_kernels_cpu, CPU, m) { m.impl("noise", &redge_kernels::noise_cpu); }
