// Bulk CPU noise with the kernels' own generator (docs/SPEC.md "Randomness (noise contract,
// version 2)"), a development hook, not part of the estimator API:
//   redge_kernels_cpu::_noise(seed, rows, cols, row_start, col_start, normal, gumbel) -> (z, G)
//   redge_kernels_cpu::_noise_into(seed, row_start, col_start, z, G)  (into given [rows, cols])
//   z[r, c] = stream 0 (Box-Muller normal), G[r, c] = stream 1 (Gumbel), both float32, of global
//   row row_start + r and global column col_start + c; an output that was not asked for is empty
//   (_noise_into: pass an empty tensor to skip a stream).
// Tests compare it with redge_kernels/noise.py (rows past 2^32, shards starting at any column),
// and bench/cpu_speed.py times _noise_into as the noise floor of the fused design (the forward
// draws z, the backward draws it again: no kernel of this design can be faster than that).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "philox.h"
#include "redge_cpu.h"
#include "row_kernels.h"

namespace redge_kernels {
namespace {

/// (key0, key1) of a 0-dim int64 CPU seed tensor.
std::pair<uint32_t, uint32_t> seed_key(const at::Tensor& seed) {
  TORCH_CHECK_VALUE(seed.dim() == 0 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
                    "redge_kernels_cpu::_noise: seed must be a 0-dim int64 CPU tensor");
  const uint64_t s = static_cast<uint64_t>(seed.item<int64_t>());
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
}

void check_range(int64_t rows, int64_t cols, int64_t row_start, int64_t col_start) {
  TORCH_CHECK_VALUE(rows >= 0 && cols >= 0 && row_start >= 0 && col_start >= 0,
                    "redge_kernels_cpu::_noise: rows, cols, row_start and col_start must be >= 0");
  TORCH_CHECK_VALUE(static_cast<uint64_t>(col_start) + static_cast<uint64_t>(cols) <= kMaxColumns,
                    "redge_kernels_cpu::_noise: columns must stay below 2^34 (col_start + cols = ",
                    col_start + cols, "): the counter holds col >> 2 in one 32-bit word");
}

/// z / g (either may be null) of rows row_start .., columns col_start .. col_start + cols - 1,
/// [rows, cols] row-major; parallel over blocks of rows and column chunks.
void fill_noise(int64_t rows, int64_t cols, int64_t row_start, int64_t col_start, uint32_t k0,
                uint32_t k1, float* z, float* g) {
  if (rows == 0 || cols == 0) return;
  const NoiseRowsFn fn = select_kernels().noise_rows;
  constexpr int64_t kChunk = 1 << 15;  // elements per task
  const int64_t width = std::min(cols, kChunk);
  const int64_t per_row = (cols + width - 1) / width;
  const int64_t block = std::max<int64_t>(8, kChunk / width) / 8 * 8;  // rows per task
  const int64_t row_blocks = (rows + block - 1) / block;
  at::parallel_for(0, row_blocks * per_row, 1, [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      const int64_t r = (t / per_row) * block, c = (t % per_row) * width;
      const int64_t o = r * cols + c;
      fn(static_cast<uint64_t>(row_start + r), std::min(block, rows - r),
         static_cast<uint64_t>(col_start + c), std::min(width, cols - c), cols, k0, k1,
         z ? z + o : nullptr, g ? g + o : nullptr);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> noise_cpu(const at::Tensor& seed, int64_t rows, int64_t cols,
                                             int64_t row_start, int64_t col_start, bool normal,
                                             bool gumbel) {
  const auto key = seed_key(seed);
  check_range(rows, cols, row_start, col_start);
  const auto opts = seed.options().dtype(at::kFloat);
  at::Tensor z = at::empty({normal ? rows : 0, normal ? cols : 0}, opts);
  at::Tensor g = at::empty({gumbel ? rows : 0, gumbel ? cols : 0}, opts);
  float* zp = normal ? z.data_ptr<float>() : nullptr;
  float* gp = gumbel ? g.data_ptr<float>() : nullptr;
  advise_huge_pages(zp, z.nbytes());  // as the fused ops do for their outputs
  advise_huge_pages(gp, g.nbytes());
  fill_noise(rows, cols, row_start, col_start, key.first, key.second, zp, gp);
  return {z, g};
}

void noise_into_cpu(const at::Tensor& seed, int64_t row_start, int64_t col_start,
                    const at::Tensor& z, const at::Tensor& g) {
  const auto key = seed_key(seed);
  const at::Tensor& shape_of = z.numel() > 0 ? z : g;
  TORCH_CHECK_VALUE(shape_of.dim() == 2,
                    "redge_kernels_cpu::_noise_into: outputs must be 2-D [rows, cols]");
  for (const at::Tensor* t : {&z, &g}) {
    TORCH_CHECK_VALUE(t->numel() == 0 || (t->sizes() == shape_of.sizes() && t->is_contiguous() &&
                                          t->scalar_type() == at::kFloat && t->device().is_cpu()),
                      "redge_kernels_cpu::_noise_into: outputs must be contiguous float32 CPU "
                      "tensors of one shape (or empty)");
  }
  const int64_t rows = shape_of.size(0), cols = shape_of.size(1);
  check_range(rows, cols, row_start, col_start);
  fill_noise(rows, cols, row_start, col_start, key.first, key.second,
             z.numel() ? z.data_ptr<float>() : nullptr, g.numel() ? g.data_ptr<float>() : nullptr);
}

}  // namespace
}  // namespace redge_kernels

TORCH_LIBRARY(redge_kernels_cpu, m) {
  m.def("_noise(Tensor seed, int rows, int cols, int row_start=0, int col_start=0, "
        "bool normal=True, bool gumbel=True) -> (Tensor, Tensor)");
  m.def("_noise_into(Tensor seed, int row_start, int col_start, Tensor(a!) z, Tensor(b!) g) -> ()");
}

TORCH_LIBRARY_IMPL(redge_kernels_cpu, CPU, m) {
  m.impl("_noise", &redge_kernels::noise_cpu);
  m.impl("_noise_into", &redge_kernels::noise_into_cpu);
}
