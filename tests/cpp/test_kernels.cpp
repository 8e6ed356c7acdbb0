// C++ tests of the CPU kernels without Python: the vectorized noise of both kernel sets against
// the scalar generator (rows past 2^32, shards cut inside a group of 4 columns), row conventions, thread invariance,
// and agreement between the AVX2 and the portable kernel sets.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "check.h"
#include "noise_kat.h"
#include "philox.h"
#include "redge_cpu.h"
#include "row_kernels.h"

using namespace redge_kernels;

namespace {

bool close_f(float a, float b) {
  return std::fabs(a - b) <= 1e-6f + 4 * 1.2e-7f * std::fabs(b);
}

void test_noise(const KernelTable& t) {
  // The vectorized generator against the scalar one (philox.h) per column: rows past 2^32 (the
  // counter's high word), columns near 2^34, starts that cut a group of 4 columns, lengths that
  // are not multiples of 8 or 32.
  const uint64_t seed = 0x0123456789ABCDEFull;
  const uint64_t rows[] = {0ull, 1ull, (1ull << 32) - 1, (1ull << 32) + 5, 123456789012ull};
  const uint64_t col0s[] = {0ull, 3ull, 8ull, 1001ull, (1ull << 34) - 300};
  for (uint64_t row : rows) {
    for (uint64_t c0 : col0s) {
      constexpr int64_t kN = 299;
      float z[kN], g[kN];
      t.noise_rows(row, 1, c0, kN, kN, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                   z, g);
      for (int64_t i = 0; i < kN; ++i) {
        const float zs = normal_at(seed, row, c0 + i);
        const float gs = gumbel_at(seed, row, c0 + i);
        CHECK(close_f(z[i], zs), "[%s] row %llu col %llu: z %.9e vs scalar %.9e", t.name,
              static_cast<unsigned long long>(row), static_cast<unsigned long long>(c0 + i), z[i], zs);
        CHECK(close_f(g[i], gs), "[%s] row %llu col %llu: G %.9e vs scalar %.9e", t.name,
              static_cast<unsigned long long>(row), static_cast<unsigned long long>(c0 + i), g[i], gs);
      }
    }
  }
  // Short rows (the lane layout of the generator): a block of 13 rows crossing 2^32, 5 columns
  // from column 6, into rows of stride 9.
  {
    float zb[13 * 9], gb[13 * 9];
    const uint64_t r0 = (1ull << 32) - 6;
    t.noise_rows(r0, 13, 6, 5, 9, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), zb, gb);
    for (int64_t r = 0; r < 13; ++r) {
      for (int64_t c = 0; c < 5; ++c) {
        CHECK(close_f(zb[r * 9 + c], normal_at(seed, r0 + r, 6 + c)) &&
                  close_f(gb[r * 9 + c], gumbel_at(seed, r0 + r, 6 + c)),
              "[%s] short rows: row %lld col %lld", t.name, static_cast<long long>(r),
              static_cast<long long>(c));
      }
    }
  }
  // The known answers of noise.py (tests/test_noise.py), each as a shard of one column.
  for (const testing::NoiseKat& n : testing::kNoise) {
    float z1, g1;
    t.noise_rows(n.row, 1, n.col, 1, 1, static_cast<uint32_t>(n.seed),
                 static_cast<uint32_t>(n.seed >> 32), &z1, &g1);
    CHECK(close_f(z1, n.z) && close_f(g1, n.gumbel), "[%s] row %llu col %llu: (z, G) = (%.9e, %.9e) "
          "vs noise.py (%.9e, %.9e)", t.name, static_cast<unsigned long long>(n.row),
          static_cast<unsigned long long>(n.col), z1, g1, n.z, n.gumbel);
  }
  // One stream only: the other pointer may be null and the stream is unchanged.
  float z1[40], z2[40], g2[40];
  t.noise_rows(7, 1, 5, 40, 40, 1, 2, z1, nullptr);
  t.noise_rows(7, 1, 5, 40, 40, 1, 2, z2, g2);
  CHECK(std::memcmp(z1, z2, sizeof(z1)) == 0, "[%s] z depends on whether G is drawn", t.name);
}

at::Tensor coefs_redge(at::ScalarType dt) {
  // linear schedule n = 3, t_1 = 0.5: alphas (1, 0.5, 1e-4)
  const double al[3] = {1.0, 0.5, 1e-4};
  std::vector<double> rows;
  for (int k = 0; k < 3; ++k) {
    const double s = 1.0 - al[k];
    double c = 0, a = 0, b = 0;
    if (k > 0) {
      c = al[k] / (s * s);
      b = (1.0 - al[k - 1]) / s;
      a = al[k - 1] - al[k] * b;
    }
    for (double v : {c, a, b, al[k], s}) rows.push_back(v);
  }
  return at::tensor(rows, at::kDouble).view({3, 5}).to(dt);
}

void test_ops() {
  at::manual_seed(0);
  const at::Tensor seed = at::scalar_tensor(12345, at::kLong);
  // Straight-through soft output is softmax(phi); masked entries get exactly 0.
  at::Tensor phi = at::randn({5, 37}, at::kFloat);
  phi.index_put_({1, at::indexing::Slice(0, at::indexing::None, 3)}, -INFINITY);
  const at::Tensor c2 = coefs_redge(at::kFloat).slice(0, 0, 2);
  auto [y, stats, index] = fwd_cpu(phi, seed, c2, kST, false, 1.0);
  CHECK(at::allclose(y, at::softmax(phi, -1), 1e-5, 1e-7), "st soft != softmax");
  CHECK(y[1][0].item<float>() == 0.0f, "masked entry not exactly 0");
  // Gumbel-max index (fp64): argmax(phi + G) with the scalar generator's G.
  at::Tensor phid = at::randn({4, 50}, at::kDouble);
  auto out = fwd_cpu(phid, seed, c2.to(at::kDouble), kGumbel, true, 1.0);
  for (int64_t r = 0; r < 4; ++r) {
    double best = -INFINITY;
    int64_t arg = -1;
    for (int64_t j = 0; j < 50; ++j) {
      const double s = phid[r][j].item<double>() + static_cast<double>(gumbel_at(12345, r, j));
      if (s > best) {
        best = s;
        arg = j;
      }
    }
    CHECK(std::get<2>(out)[r].item<int64_t>() == arg, "row %lld: index %lld vs scalar %lld",
          static_cast<long long>(r), static_cast<long long>(std::get<2>(out)[r].item<int64_t>()),
          static_cast<long long>(arg));
  }
  // Empty and poisoned rows; the other rows are untouched.
  at::Tensor p2 = at::randn({4, 9}, at::kFloat);
  p2[1].fill_(-INFINITY);
  p2[2][3] = NAN;
  p2[3][0] = INFINITY;
  const at::Tensor c3 = coefs_redge(at::kFloat);
  auto o2 = fwd_cpu(p2, seed, c3, kReDGE, true, 1.0);
  const at::Tensor y2 = std::get<0>(o2), i2 = std::get<2>(o2);
  CHECK(y2[1].eq(0).all().item<bool>() && i2[1].item<int64_t>() == -1, "empty row");
  CHECK(y2[2].isnan().all().item<bool>() && i2[2].item<int64_t>() == -1, "NaN row");
  CHECK(y2[3].isnan().all().item<bool>() && i2[3].item<int64_t>() == -1, "+inf row");
  CHECK(y2[0].sum().item<float>() == 1.0f && i2[0].item<int64_t>() >= 0, "normal row");
  const at::Tensor g2 = at::randn({4, 9}, at::kFloat);
  const at::Tensor gp = bwd_cpu(g2, p2, seed, c3, std::get<1>(o2), i2, kReDGE, true, 1.0);
  CHECK(gp[1].eq(0).all().item<bool>(), "empty row grad");
  CHECK(gp[2].isnan().all().item<bool>() && gp[3].isnan().all().item<bool>(), "poisoned grad");
  CHECK(gp[0].isfinite().all().item<bool>(), "normal row grad");
}

void test_threads() {
  at::manual_seed(1);
  const at::Tensor seed = at::scalar_tensor(7, at::kLong);
  const at::Tensor phi = at::randn({64, 1000}, at::kFloat);
  const at::Tensor g = at::randn({64, 1000}, at::kFloat);
  const at::Tensor c3 = coefs_redge(at::kFloat);
  for (int64_t m = kST; m <= kReDGEMax; ++m) {
    at::set_num_threads(1);
    auto a = fwd_cpu(phi, seed, c3, m, true, 0.7);
    const at::Tensor ga = bwd_cpu(g, phi, seed, c3, std::get<1>(a), std::get<2>(a), m, true, 0.7);
    at::set_num_threads(2);
    auto b = fwd_cpu(phi, seed, c3, m, true, 0.7);
    const at::Tensor gb = bwd_cpu(g, phi, seed, c3, std::get<1>(b), std::get<2>(b), m, true, 0.7);
    CHECK(at::equal(std::get<0>(a), std::get<0>(b)) && at::equal(std::get<1>(a), std::get<1>(b)) &&
              at::equal(std::get<2>(a), std::get<2>(b)) && at::equal(ga, gb),
          "method %lld: 1 vs 2 threads differ", static_cast<long long>(m));
  }
}

/// Forward of `t` on phi [R, K] (fp32, soft output, tau 0.5) into y / st / ix.
void run_fwd(const KernelTable& t, const at::Tensor& phi, const at::Tensor& coefs, int m,
             at::Tensor& y, at::Tensor& st, at::Tensor& ix) {
  const int64_t R = phi.size(0), K = phi.size(1);
  y = at::empty({R, K}, at::kFloat);
  st = at::empty({R, coefs.size(0), 2}, at::kFloat);
  ix = at::empty({R}, at::kLong);
  RowArgs a;
  a.rows = R;
  a.K = K;
  a.n_steps = static_cast<int>(coefs.size(0));
  a.method = m;
  a.hard = false;
  a.tau = 0.5;
  a.key0 = 99;
  a.key1 = 1;
  a.phi = phi.data_ptr();
  a.phi_stride0 = K;
  a.phi_stride1 = 1;
  a.coefs = coefs.data_ptr();
  a.y = y.data_ptr();
  a.stats = st.data_ptr();
  a.index = ix.data_ptr<int64_t>();
  t.fwd[kF32](a, 0, R);
}

void test_kernel_sets_agree() {
  // The portable and the AVX2 kernels: same indices, values within fp32 rounding (different
  // log / exp implementations). The AVX2 and the AVX-512 kernels run the same operations in the
  // same order: bit-identical.
  // Only the sets this CPU can run (an AVX2-only CPU checks the first two; even building the
  // AVX-512 table runs AVX-512 instructions).
  const int n_sets = !cpu_runs_avx2() ? 1 : !cpu_runs_avx512() ? 2 : 3;
  std::printf("kernel sets compared: %d of 3\n", n_sets);
  const KernelTable& k0 = kernels_default();
  const KernelTable& k1 = n_sets >= 2 ? kernels_avx2() : k0;
  const KernelTable& k2 = n_sets >= 3 ? kernels_avx512() : k1;
  at::manual_seed(2);
  const at::Tensor phi = at::randn({16, 203}, at::kFloat) * 3;
  const at::Tensor c3 = coefs_redge(at::kFloat);
  for (int m = kST; m <= kReDGEMax; ++m) {
    at::Tensor y[3], st[3], ix[3];
    const KernelTable* sets[3] = {&k0, &k1, &k2};
    for (int s = 0; s < n_sets; ++s) run_fwd(*sets[s], phi, c3, m, y[s], st[s], ix[s]);
    if (n_sets < 2) continue;
    CHECK(at::equal(ix[0], ix[1]), "method %d: indices differ between %s and %s", m, k0.name, k1.name);
    CHECK(at::allclose(y[0], y[1], 1e-4, 1e-6), "method %d: values differ between kernel sets", m);
    if (n_sets < 3) continue;
    CHECK(at::equal(ix[1], ix[2]) && at::equal(y[1], y[2]) && at::equal(st[1], st[2]),
          "method %d: %s and %s differ", m, k1.name, k2.name);
  }
}

}  // namespace

int main() {
  test_noise(kernels_default());
  if (cpu_runs_avx2()) test_noise(kernels_avx2());
  if (cpu_runs_avx512()) test_noise(kernels_avx512());
  test_ops();
  test_threads();
  test_kernel_sets_agree();
  std::printf("kernel set in use: %s\n", kernel_set_name());
  TEST_MAIN_RETURN("test_kernels");
}
