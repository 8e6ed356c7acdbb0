// Bulk CPU noise with the kernels' own generators (docs/SPEC.md "Randomness"):
//   redge_kernels_cpu::noise(seed, rows, cols, row_start, normal, gumbel) -> (z, G)
//   redge_kernels_cpu::noise_into(seed, row_start, z, G)   (the same into given [rows, cols] buffers)
//   z[r, c] = stream 0 (Box-Muller normal), G[r, c] = stream 1 (Gumbel), both float32, at offset
//   (row_start + r) * cols + c; an output that was not asked for is empty (noise_into: pass an
//   empty tensor to skip a stream).
// Not part of the estimator API: tests compare it with redge_kernels/noise.py at large offsets, and
// bench/cpu_speed.py times noise_into as the noise floor of the fused design (the forward draws z,
// the backward draws it again: no kernel of this design can be faster than that).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "redge_cpu.h"
#include "row_kernels.h"

namespace redge_kernels {
namespace {

/// (key0, key1) of a 0-dim int64 CPU seed tensor.
std::pair<uint32_t, uint32_t> seed_key(const at::Tensor& seed) {
  TORCH_CHECK(seed.dim() == 0 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              "redge_kernels_cpu::noise: seed must be a 0-dim int64 CPU tensor");
  const uint64_t s = static_cast<uint64_t>(seed.item<int64_t>());
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
}

/// z / g (either may be null) at offsets base .. base + n - 1, row-parallel in chunks.
void fill_noise(uint64_t base, int64_t n, uint32_t k0, uint32_t k1, float* z, float* g) {
  const NoiseBlockFn fn = select_kernels().noise_block;
  constexpr int64_t kChunk = 1 << 15;  // offsets per task (a multiple of 8)
  const int64_t whole = n / 8 * 8;     // the generator writes whole blocks of 8 offsets
  at::parallel_for(0, (whole + kChunk - 1) / kChunk, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t j = c * kChunk;
      fn(base + static_cast<uint64_t>(j), std::min(kChunk, whole - j), k0, k1, z ? z + j : nullptr,
         g ? g + j : nullptr);
    }
  });
  if (whole < n) {  // the last n - whole offsets through a block of 8
    float zt[8], gt[8];
    fn(base + static_cast<uint64_t>(whole), 8, k0, k1, z ? zt : nullptr, g ? gt : nullptr);
    if (z) std::copy(zt, zt + (n - whole), z + whole);
    if (g) std::copy(gt, gt + (n - whole), g + whole);
  }
}

std::tuple<at::Tensor, at::Tensor> noise_cpu(const at::Tensor& seed, int64_t rows, int64_t cols,
                                             int64_t row_start, bool normal, bool gumbel) {
  const auto key = seed_key(seed);
  TORCH_CHECK(rows >= 0 && cols >= 0 && row_start >= 0,
              "redge_kernels_cpu::noise: rows, cols and row_start must be >= 0");
  const auto opts = seed.options().dtype(at::kFloat);
  at::Tensor z = at::empty({normal ? rows : 0, normal ? cols : 0}, opts);
  at::Tensor g = at::empty({gumbel ? rows : 0, gumbel ? cols : 0}, opts);
  float* zp = normal ? z.data_ptr<float>() : nullptr;
  float* gp = gumbel ? g.data_ptr<float>() : nullptr;
  advise_huge_pages(zp, z.nbytes());  // as the fused ops do for their outputs
  advise_huge_pages(gp, g.nbytes());
  fill_noise(static_cast<uint64_t>(row_start) * static_cast<uint64_t>(cols), rows * cols, key.first,
             key.second, zp, gp);
  return {z, g};
}

void noise_into_cpu(const at::Tensor& seed, int64_t row_start, const at::Tensor& z,
                    const at::Tensor& g) {
  const auto key = seed_key(seed);
  TORCH_CHECK(row_start >= 0, "redge_kernels_cpu::noise_into: row_start must be >= 0");
  const at::Tensor& shape_of = z.numel() > 0 ? z : g;
  TORCH_CHECK(shape_of.dim() == 2, "redge_kernels_cpu::noise_into: outputs must be 2-D [rows, cols]");
  for (const at::Tensor* t : {&z, &g}) {
    TORCH_CHECK(t->numel() == 0 || (t->sizes() == shape_of.sizes() && t->is_contiguous() &&
                                    t->scalar_type() == at::kFloat && t->device().is_cpu()),
                "redge_kernels_cpu::noise_into: outputs must be contiguous float32 CPU tensors "
                "of one shape (or empty)");
  }
  const int64_t rows = shape_of.size(0), cols = shape_of.size(1);
  fill_noise(static_cast<uint64_t>(row_start) * static_cast<uint64_t>(cols), rows * cols, key.first,
             key.second, z.numel() ? z.data_ptr<float>() : nullptr,
             g.numel() ? g.data_ptr<float>() : nullptr);
}

}  // namespace
}  // namespace redge_kernels

TORCH_LIBRARY(redge_kernels_cpu, m) {
  m.def("noise(Tensor seed, int rows, int cols, int row_start=0, bool normal=True, bool gumbel=True)"
        " -> (Tensor, Tensor)");
  m.def("noise_into(Tensor seed, int row_start, Tensor(a!) z, Tensor(b!) g) -> ()");
}

TORCH_LIBRARY_IMPL(redge_kernels_cpu, CPU, m) {
  m.impl("noise", &redge_kernels::noise_cpu);
  m.impl("noise_into", &redge_kernels::noise_into_cpu);
}
