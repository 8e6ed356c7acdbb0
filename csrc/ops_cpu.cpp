// Tensor-level CPU ops: argument checks, output allocation, row-parallel launch of the per-row
// kernels (row_kernels_impl.h) and their registration for the CPU dispatch key.
//
// Rows are split across threads with at::parallel_for; every row is computed by one thread in a
// fixed order, so the result does not depend on the number of threads.
#include "redge_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/Version.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "philox.h"
#include "row_kernels.h"

namespace redge_kernels {

bool cpu_runs_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

bool cpu_runs_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return cpu_runs_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

namespace {

// The set REDGE_KERNELS_CPU_KERNELS names ("default", "avx2", "avx512"), or nullptr when the
// variable is unset; a name this CPU cannot run, or an unknown one, warns once and gives nullptr
// (the usual choice). Lets a benchmark compare the kernel sets under one ATen capability.
const KernelTable* kernels_from_env() {
  const char* e = std::getenv("REDGE_KERNELS_CPU_KERNELS");
  if (e == nullptr || *e == '\0') return nullptr;
  const std::string name(e);
  if (name == "default") return &kernels_default();
  if (name == "avx2" && cpu_runs_avx2()) return &kernels_avx2();
  if (name == "avx512" && cpu_runs_avx512()) return &kernels_avx512();
  TORCH_WARN_ONCE("redge_kernels: REDGE_KERNELS_CPU_KERNELS=\"", name,
                  "\" is not a kernel set this CPU runs (default, avx2, avx512); using the "
                  "one chosen from the CPU and ATen's capability");
  return nullptr;
}

}  // namespace

const KernelTable& select_kernels() {
  static const KernelTable* chosen = [] {
    if (const KernelTable* forced = kernels_from_env()) return forced;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    // ATen's capability ("DEFAULT", "AVX2", "AVX512", ...; honours ATEN_CPU_CAPABILITY).
    const std::string aten_cap = at::get_cpu_capability();
    const bool avx2 = cpu_runs_avx2();
    const bool avx512 = cpu_runs_avx512();
    if (aten_cap.rfind("AVX512", 0) == 0 && avx512) return &kernels_avx512();
    if ((aten_cap.rfind("AVX2", 0) == 0 || aten_cap.rfind("AVX512", 0) == 0) && avx2) {
      return &kernels_avx2();
    }
#endif
    return &kernels_default();
  }();
  return *chosen;
}

const char* kernel_set_name() { return select_kernels().name; }

namespace {

// Largest K that runs on the lane kernels (see lane_max_k), measured on a 2-core AMD EPYC (AVX2),
// one thread, forward + backward of ~32k elements, lanes vs rows (us): the row kernels' costs fall
// with K (fewer rows, longer vectors) while the lane kernels' stay flat; they cross at
//   st      311 vs 328 at K = 32, 315 vs 298 at K = 40   (the row kernels prune the Gumbel logs)
//   reinmax 357 vs 394 at K = 32, 363 vs 355 at K = 40
//   gumbel  486 vs 496 at K = 24, 472 vs 461 at K = 32
//   redge   748 vs 907 at K = 48, 756 vs 705 at K = 64   (n_steps = 5; redge_cov likewise)
constexpr int64_t kLaneMaxKSt = 32;      // st, reinmax
constexpr int64_t kLaneMaxKGumbel = 24;  // gumbel
constexpr int64_t kLaneMaxKChain = 48;   // redge, redge_cov, redge_max

DTypeId dtype_id(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kF32;
    case at::kDouble: return kF64;
    case at::kBFloat16: return kBF16;
    case at::kHalf: return kF16;
    default: TORCH_CHECK(false, "redge_kernels: logits must be float16, bfloat16, float32 or float64, got ", t);
  }
}

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

/// Shared checks; fills the scalar fields of `a` and returns the acc_t copy of coefs.
at::Tensor prepare(const at::Tensor& phi, const at::Tensor& seed, const at::Tensor& coefs,
                   int64_t method, bool hard, double tau, RowArgs& a) {
  TORCH_CHECK(phi.device().is_cpu(), "redge_kernels (cpu): phi must be a CPU tensor");
  TORCH_CHECK(phi.dim() == 2, "redge_kernels (cpu): phi must be 2-D [R, K], got ", phi.sizes());
  dtype_id(phi.scalar_type());
  TORCH_CHECK(seed.dim() == 0 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              "redge_kernels (cpu): seed must be a 0-dim int64 CPU tensor");
  TORCH_CHECK(coefs.dim() == 2 && coefs.size(1) == 5 && coefs.size(0) >= 2,
              "redge_kernels (cpu): coefs must be [n_steps >= 2, 5], got ", coefs.sizes());
  TORCH_CHECK(method >= kST && method <= kReDGEMax, "redge_kernels (cpu): unknown method id ", method);
  TORCH_CHECK(tau > 0.0, "redge_kernels (cpu): tau must be > 0, got ", tau);
  TORCH_CHECK_VALUE(static_cast<uint64_t>(phi.size(1)) <= kMaxColumns,
                    "redge_kernels (cpu): phi has ", phi.size(1), " columns; the noise counter "
                    "(docs/SPEC.md \"Randomness\") holds columns below 2^34 only");
  const int64_t s = seed.item<int64_t>();
  a.rows = phi.size(0);
  a.K = phi.size(1);
  a.n_steps = static_cast<int>(coefs.size(0));
  a.method = static_cast<int>(method);
  a.hard = hard;
  a.tau = tau;
  a.key0 = static_cast<uint32_t>(static_cast<uint64_t>(s));
  a.key1 = static_cast<uint32_t>(static_cast<uint64_t>(s) >> 32);
  a.phi = phi.data_ptr();
  a.phi_stride0 = phi.stride(0);
  a.phi_stride1 = phi.stride(1);
  at::Tensor c = coefs.to(at::kCPU, acc_type(phi.scalar_type())).contiguous();
  a.coefs = c.data_ptr();
  return c;
}

/// Rows per grab: enough work to amortise scheduling (about 16k elements).
int64_t grain(int64_t K) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)); }

/// Largest K for which the "lanes are rows" kernels (lane_kernels_impl.h) run `method`: below it
/// the row kernels are dominated by per-row overhead. The environment variable
/// REDGE_KERNELS_LANE_MAX_K overrides it for every method (up to 256), read at every call (0
/// disables the lane kernels; for benchmarks and the tests comparing both paths).
int64_t lane_max_k(int method) {
  const char* e = std::getenv("REDGE_KERNELS_LANE_MAX_K");
  // (at most 256: the lane kernels sum each row in column order, too long a chain beyond that)
  if (e != nullptr && *e != '\0') return std::min<int64_t>(std::strtoll(e, nullptr, 10), 256);
  if (method == kGumbel) return kLaneMaxKGumbel;
  return method == kST || method == kReinMax ? kLaneMaxKSt : kLaneMaxKChain;
}

/// Runs fn over all rows: serially when there is at most one block of rows or one thread, else
/// one task per thread, the tasks grabbing blocks of rows from a shared counter (a thread that is
/// slowed down, e.g. on a busy machine, does not hold the others back). Rows are independent and
/// each is computed whole by one thread, so the result does not depend on the thread count.
/// `unit` > 1 (lane kernels): blocks are whole multiples of `unit` rows, and smaller than
/// grain(K) when that would leave few grabs (at K = 2, grain(K) is 8192 rows: 9600 rows would split
/// 8192 / 1408 between two threads): about 4 grabs per thread, each at least ~2048 elements.
void launch(RowArgs& a, RowRangeFn fn, int64_t unit = 1) {
  const int64_t threads = at::get_num_threads();
  int64_t block = grain(a.K);
  if (unit > 1) {
    const int64_t min_rows = (2048 + a.K - 1) / a.K;
    const int64_t balanced = (a.rows + 4 * threads - 1) / (4 * threads);
    block = std::min(block, std::max(min_rows, balanced));
    block = (block + unit - 1) / unit * unit;
  }
  if (a.rows <= block || threads <= 1 || at::in_parallel_region()) {
    fn(a, 0, a.rows);
    return;
  }
  std::atomic<int64_t> next{0};
  a.next_row = &next;
  a.row_block = block;
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) { fn(a, 0, 0); });
  a.next_row = nullptr;
}

/// The forward (fwd = true) or backward kernel for this call: the lane kernels when K is small.
void launch_kernel(RowArgs& a, DTypeId dt, bool fwd) {
  const KernelTable& t = select_kernels();
  RowRangeFn lanes = fwd ? t.fwd_lanes[dt] : t.bwd_lanes[dt];
  if (lanes != nullptr && a.K <= lane_max_k(a.method)) {
    launch(a, lanes, t.lane_rows[dt]);
  } else {
    launch(a, fwd ? t.fwd[dt] : t.bwd[dt]);
  }
}

}  // namespace

/// Asks Linux for transparent huge pages on the 2 MiB-aligned interior of a freshly allocated,
/// not yet touched output buffer (THP "madvise" mode): the kernels then fault in 2 MiB pages
/// instead of 512 small ones each (large outputs only; a hint, harmless where refused).
void advise_huge_pages(void* ptr, int64_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (ptr == nullptr || nbytes < static_cast<int64_t>(4 * kHuge)) return;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(ptr) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(ptr) + static_cast<uintptr_t>(nbytes)) & ~(kHuge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)nbytes;
#endif
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& phi, const at::Tensor& seed,
                                                       const at::Tensor& coefs, int64_t method,
                                                       bool hard, double tau, int64_t row_start,
                                                       bool write_y) {
  RowArgs a;
  const at::Tensor c = prepare(phi, seed, coefs, method, hard, tau, a);
  TORCH_CHECK(row_start >= 0, "redge_kernels (cpu): row_start must be >= 0, got ", row_start);
  a.row_start = row_start;
  const auto acc = acc_type(phi.scalar_type());
  at::Tensor y = write_y ? empty_output({a.rows, a.K}, phi.options())
                         : at::empty({0, a.K}, phi.options());
  at::Tensor stats = at::empty({a.rows, a.n_steps, 2}, phi.options().dtype(acc));
  at::Tensor index = at::empty({a.rows}, phi.options().dtype(at::kLong));
  if (a.rows == 0) return {y, stats, index};
  if (a.K == 0) {
    stats.zero_();
    index.fill_(-1);
    return {y, stats, index};
  }
  a.y = write_y ? y.data_ptr() : nullptr;
  a.stats = stats.data_ptr();
  a.index = index.data_ptr<int64_t>();
  launch_kernel(a, dtype_id(phi.scalar_type()), true);
  return {y, stats, index};
}

at::Tensor bwd_cpu(const at::Tensor& grad_y, const at::Tensor& phi, const at::Tensor& seed,
                   const at::Tensor& coefs, const at::Tensor& stats, const at::Tensor& index,
                   int64_t method, bool hard, double tau, int64_t row_start) {
  RowArgs a;
  const at::Tensor c = prepare(phi, seed, coefs, method, hard, tau, a);
  TORCH_CHECK(row_start >= 0, "redge_kernels (cpu): row_start must be >= 0, got ", row_start);
  a.row_start = row_start;
  const auto acc = acc_type(phi.scalar_type());
  TORCH_CHECK(grad_y.sizes() == phi.sizes(), "redge_kernels (cpu): grad_y must have phi's shape ",
              phi.sizes(), ", got ", grad_y.sizes());
  TORCH_CHECK(stats.dim() == 3 && stats.size(0) == a.rows && stats.size(1) == a.n_steps &&
                  stats.size(2) == 2,
              "redge_kernels (cpu): stats must be [R, n_steps, 2], got ", stats.sizes());
  TORCH_CHECK(index.dim() == 1 && index.size(0) == a.rows && index.scalar_type() == at::kLong,
              "redge_kernels (cpu): index must be int64 [R]");
  const at::Tensor g = grad_y.to(phi.scalar_type());
  const at::Tensor st = stats.to(acc).contiguous();
  const at::Tensor ix = index.contiguous();
  at::Tensor grad_phi = empty_output({a.rows, a.K}, phi.options());
  if (a.rows == 0 || a.K == 0) return grad_phi;
  a.grad_y = g.data_ptr();
  a.grad_stride0 = g.stride(0);
  a.grad_stride1 = g.stride(1);
  a.stats = const_cast<void*>(st.data_ptr());
  a.index = const_cast<int64_t*>(ix.data_ptr<int64_t>());
  a.grad_phi = grad_phi.data_ptr();
  launch_kernel(a, dtype_id(phi.scalar_type()), false);
  return grad_phi;
}

}  // namespace redge_kernels

TORCH_LIBRARY_IMPL(redge_kernels, CPU, m) {
  m.impl("fwd", &redge_kernels::fwd_cpu);
  m.impl("bwd", &redge_kernels::bwd_cpu);
}

namespace {
std::string kernel_set() { return redge_kernels::kernel_set_name(); }
}  // namespace

// Development hook: the name of the kernel set this process runs ("default", "avx2", "avx512").
TORCH_LIBRARY_FRAGMENT(redge_kernels_cpu, m) { m.def("_kernel_set() -> str", &kernel_set); }
