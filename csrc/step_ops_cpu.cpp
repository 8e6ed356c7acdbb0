// Tensor-level CPU kernels of the step ops redge_kernels::step_init, step_stats, step_next,
// step_sample, step_output, step_dot, step_grad (schemas and meaning: redge_kernels/step_ops.py;
// docs/SPEC.md "Vocabulary-parallel"): checks, output allocation, and a parallel loop over rows of
// the per-row kernels (step_kernels_impl.h) of the capability select_kernels() picked.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "philox.h"
#include "redge_cpu.h"
#include "row_kernels.h"
#include "step_kernels.h"

namespace redge_kernels {
namespace {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

const StepTable& step_kernels() {
  // The AVX2 step kernels run under both x86 kernel sets (the AVX-512 set is the AVX2 code with
  // other encodings: bit-identical results, noise included).
  static const StepTable& t = std::strcmp(select_kernels().name, "default") == 0
                                  ? step_kernels_default() : step_kernels_avx2();
  return t;
}

/// phi's checks: a 2-D float32 / float64 CPU tensor; returns it contiguous.
Tensor check_phi(const Tensor& phi, const char* op) {
  TORCH_CHECK_VALUE(phi.dim() == 2 && phi.device().is_cpu() &&
                        (phi.scalar_type() == at::kFloat || phi.scalar_type() == at::kDouble),
                    "redge_kernels::", op, ": phi must be a 2-D float32 or float64 CPU tensor");
  return phi.contiguous();
}

/// Another float input: phi's dtype and device, `shape` unless it may be empty, contiguous.
Tensor check_like(const Tensor& t, const Tensor& phi, at::IntArrayRef shape, const char* what,
                  const char* op) {
  TORCH_CHECK_VALUE(t.scalar_type() == phi.scalar_type() && t.device().is_cpu(),
                    "redge_kernels::", op, ": ", what, " must have phi's dtype and device");
  TORCH_CHECK_VALUE(t.sizes() == shape, "redge_kernels::", op, ": ", what, " must have shape ",
                    shape, ", got ", t.sizes());
  return t.contiguous();
}

void check_method(int64_t method, int64_t k, int64_t n, const char* op) {
  TORCH_CHECK_VALUE(method >= kST && method <= kReDGEMax, "redge_kernels::", op,
                    ": unknown method id ", method);
  TORCH_CHECK_VALUE(k >= 0 && k < std::max<int64_t>(n, 1), "redge_kernels::", op, ": step ", k,
                    " outside the table of ", n, " rows");
}

/// A call's common fields; holds the contiguous inputs alive.
struct Call {
  StepArgs a;
  std::vector<Tensor> keep;
  Call(int op, const Tensor& phi, int64_t method, int64_t k) {
    a.op = op;
    a.method = static_cast<int>(method);
    a.k = static_cast<int>(k);
    a.rows = phi.size(0);
    a.K = phi.size(1);
    a.phi = hold(phi).data_ptr();
  }
  const Tensor& hold(const Tensor& t) {
    keep.push_back(t);
    return keep.back();
  }
  void noise(int64_t seed, int64_t col_start, int64_t row_start, const char* op) {
    TORCH_CHECK_VALUE(col_start >= 0 && row_start >= 0, "redge_kernels::", op,
                      ": col_start and row_start must be >= 0");
    const uint64_t end = static_cast<uint64_t>(col_start) + static_cast<uint64_t>(a.K);
    TORCH_CHECK_VALUE(end <= kMaxColumns, "redge_kernels::", op,
                      ": columns must stay below 2^34");
    const uint64_t s = static_cast<uint64_t>(seed);
    a.key0 = static_cast<uint32_t>(s);
    a.key1 = static_cast<uint32_t>(s >> 32);
    a.col_start = col_start;
    a.row_start = row_start;
  }
  void table(const Tensor& coefs, const Tensor& stats, const Tensor& phi, const char* op) {
    TORCH_CHECK_VALUE(coefs.dim() == 2 && coefs.size(1) == 5, "redge_kernels::", op,
                      ": coefs must be [n, 5]");
    a.coefs = hold(check_like(coefs, phi, coefs.sizes(), "coefs", op)).data_ptr();
    stats_only(stats, phi, op);
  }
  void stats_only(const Tensor& stats, const Tensor& phi, const char* op) {
    TORCH_CHECK_VALUE(stats.dim() == 3 && stats.size(0) == a.rows && stats.size(2) == 2,
                      "redge_kernels::", op, ": stats must be [R, n_slots, 2]");
    a.n_slots = stats.size(1);
    a.stats = hold(check_like(stats, phi, stats.sizes(), "stats", op)).data_ptr();
  }
  /// x: [R, K] where the step reads it, else ignored.
  void state(const Tensor& x, const Tensor& phi, bool used, const char* op) {
    if (used) a.x = hold(check_like(x, phi, phi.sizes(), "x", op)).data_ptr();
  }
  void run() {
    // keep[0] is phi: its dtype picks the float or the double kernel.
    const StepRowsFn fn = step_kernels().fn[a.op][keep[0].scalar_type() == at::kDouble];
    if (a.rows == 0) return;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(a.K, 1));
    at::parallel_for(0, a.rows, grain, [&](int64_t b, int64_t e) { fn(a, b, e); });
  }
};

bool chain(int64_t method) {
  return method == kReDGE || method == kReDGECov || method == kReDGEMax;
}

Tensor step_init(const Tensor& phi_in, const Tensor& stats, int64_t method, int64_t seed,
                 int64_t col_start, int64_t row_start) {
  const Tensor phi = check_phi(phi_in, "step_init");
  check_method(method, 0, 1, "step_init");
  Call c(kStepInit, phi, method, 0);
  c.stats_only(stats, phi, "step_init");
  c.noise(seed, col_start, row_start, "step_init");
  Tensor x = empty_output(phi.sizes(), phi.options());
  c.a.out[0] = x.data_ptr();
  c.run();
  return x;
}

Tensor step_stats(const Tensor& phi_in, const Tensor& x, const Tensor& coefs, const Tensor& stats,
                  int64_t method, int64_t k) {
  const Tensor phi = check_phi(phi_in, "step_stats");
  check_method(method, k, coefs.size(0), "step_stats");
  Call c(kStepStats, phi, method, k);
  c.table(coefs, stats, phi, "step_stats");
  c.state(x, phi, k > 0, "step_stats");
  Tensor out = at::empty({phi.size(0), 2}, phi.options());
  c.a.out[0] = out.data_ptr();
  c.run();
  return out;
}

Tensor step_next(const Tensor& phi_in, const Tensor& x, const Tensor& coefs, const Tensor& stats,
                 int64_t method, int64_t k) {
  const Tensor phi = check_phi(phi_in, "step_next");
  check_method(method, k, coefs.size(0), "step_next");
  TORCH_CHECK_VALUE(chain(method) && k >= 1, "redge_kernels::step_next: a chain step k >= 1");
  Call c(kStepNext, phi, method, k);
  c.table(coefs, stats, phi, "step_next");
  c.state(x, phi, true, "step_next");
  Tensor out = empty_output(phi.sizes(), phi.options());
  c.a.out[0] = out.data_ptr();
  c.run();
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> step_sample(const Tensor& phi_in, const Tensor& x,
                                                       const Tensor& coefs, const Tensor& stats,
                                                       int64_t method, double tau, int64_t seed,
                                                       int64_t col_start, int64_t row_start) {
  const Tensor phi = check_phi(phi_in, "step_sample");
  check_method(method, chain(method) ? 1 : 0, coefs.size(0), "step_sample");
  Call c(kStepSample, phi, method, 1);
  c.table(coefs, stats, phi, "step_sample");
  c.state(x, phi, chain(method), "step_sample");
  c.noise(seed, col_start, row_start, "step_sample");
  c.a.tau = tau;
  c.a.n_soft = method == kReinMax ? 2 : 1;
  const int64_t rows = phi.size(0);
  Tensor parts = at::empty({rows, c.a.n_soft, 2}, phi.options());
  Tensor best = at::empty({rows}, phi.options());
  Tensor index = at::empty({rows}, phi.options().dtype(at::kLong));
  Tensor kinds = at::empty({rows, 2}, phi.options().dtype(at::kBool));
  c.a.out[0] = parts.data_ptr();
  c.a.out[1] = best.data_ptr();
  c.a.out_index = index.data_ptr<int64_t>();
  c.a.out_kinds = kinds.data_ptr<bool>();
  c.run();
  return {parts, best, index, kinds};
}

/// index [R] int64 and kinds [R, 2] bool inputs.
void check_index(Call& c, const Tensor& index, int64_t rows, const char* op) {
  TORCH_CHECK_VALUE(index.dim() == 1 && index.size(0) == rows && index.scalar_type() == at::kLong &&
                        index.device().is_cpu(),
                    "redge_kernels::", op, ": index must be an int64 CPU tensor [R]");
  c.a.index = c.hold(index.contiguous()).data_ptr<int64_t>();
}

Tensor step_output(const Tensor& phi_in, const Tensor& x, const Tensor& coefs, const Tensor& stats,
                   const Tensor& index, const Tensor& kinds, int64_t method, bool hard, double tau,
                   int64_t seed, int64_t col_start, int64_t row_start) {
  const Tensor phi = check_phi(phi_in, "step_output");
  check_method(method, chain(method) ? 1 : 0, coefs.size(0), "step_output");
  Call c(kStepOutput, phi, method, 1);
  c.table(coefs, stats, phi, "step_output");
  c.state(x, phi, chain(method) && !hard, "step_output");
  c.noise(seed, col_start, row_start, "step_output");
  c.a.tau = tau;
  c.a.hard = hard;
  check_index(c, index, phi.size(0), "step_output");
  TORCH_CHECK_VALUE(kinds.dim() == 2 && kinds.size(0) == phi.size(0) && kinds.size(1) == 2 &&
                        kinds.scalar_type() == at::kBool && kinds.device().is_cpu(),
                    "redge_kernels::step_output: kinds must be a bool CPU tensor [R, 2]");
  c.a.kinds = c.hold(kinds.contiguous()).data_ptr<bool>();
  Tensor y = empty_output(phi.sizes(), phi.options());
  c.a.out[0] = y.data_ptr();
  c.run();
  return y;
}

/// The common inputs of step_dot / step_grad.
void backward_inputs(Call& c, const Tensor& g, const Tensor& phi, const Tensor& x,
                     const Tensor& coefs, const Tensor& stats, const Tensor& index,
                     const OptTensor& gmu, const OptTensor& glam, int64_t method, int64_t k,
                     double tau, int64_t seed, int64_t col_start, int64_t row_start,
                     const char* op) {
  c.table(coefs, stats, phi, op);
  c.state(x, phi, chain(method) && k >= 1, op);
  c.noise(seed, col_start, row_start, op);
  c.a.tau = tau;
  c.a.g = c.hold(check_like(g, phi, phi.sizes(), "g", op)).data_ptr();
  check_index(c, index, phi.size(0), op);
  if (gmu.has_value()) c.a.gmu = c.hold(check_like(*gmu, phi, phi.sizes(), "gmu", op)).data_ptr();
  if (glam.has_value()) {
    c.a.glam = c.hold(check_like(*glam, phi, phi.sizes(), "glam", op)).data_ptr();
  }
  c.a.n_dots = (method == kReinMax || (method == kReDGEMax && k == 1)) ? 2 : 1;
}

Tensor step_dot(const Tensor& g, const Tensor& phi_in, const Tensor& x, const Tensor& coefs,
                const Tensor& stats, const Tensor& index, const OptTensor& gmu,
                const OptTensor& glam, int64_t method, int64_t k, double tau, int64_t seed,
                int64_t col_start, int64_t row_start) {
  const Tensor phi = check_phi(phi_in, "step_dot");
  check_method(method, k, coefs.size(0), "step_dot");
  Call c(kStepDot, phi, method, k);
  backward_inputs(c, g, phi, x, coefs, stats, index, gmu, glam, method, k, tau, seed, col_start,
                  row_start, "step_dot");
  Tensor out = at::empty({phi.size(0), c.a.n_dots}, phi.options());
  c.a.out[0] = out.data_ptr();
  c.run();
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> step_grad(
    const Tensor& g, const Tensor& phi_in, const Tensor& x, const Tensor& coefs,
    const Tensor& stats, const Tensor& index, const Tensor& dots, const OptTensor& gphi,
    const OptTensor& gmu, const OptTensor& glam, int64_t method, int64_t k, double tau,
    int64_t seed, int64_t col_start, int64_t row_start) {
  const Tensor phi = check_phi(phi_in, "step_grad");
  check_method(method, k, coefs.size(0), "step_grad");
  Call c(kStepGrad, phi, method, k);
  backward_inputs(c, g, phi, x, coefs, stats, index, gmu, glam, method, k, tau, seed, col_start,
                  row_start, "step_grad");
  const Tensor d = check_like(dots, phi, {phi.size(0), c.a.n_dots}, "dots", "step_grad");
  c.a.dots = c.hold(d).data_ptr();
  if (gphi.has_value()) {
    c.a.gphi = c.hold(check_like(*gphi, phi, phi.sizes(), "gphi", "step_grad")).data_ptr();
  }
  const bool has_x = chain(method) && k >= 1, cov = method == kReDGECov && k >= 1;
  Tensor out[4];
  for (int i = 0; i < 4; ++i) {
    const bool want = i == 0 || (i == 1 && has_x) || (i >= 2 && cov);
    out[i] = want ? empty_output(phi.sizes(), phi.options()) : at::empty({0}, phi.options());
    c.a.out[i] = want ? out[i].data_ptr() : nullptr;
  }
  c.run();
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace
}  // namespace redge_kernels

TORCH_LIBRARY_IMPL(redge_kernels, CPU, m) {
  m.impl("step_init", &redge_kernels::step_init);
  m.impl("step_stats", &redge_kernels::step_stats);
  m.impl("step_next", &redge_kernels::step_next);
  m.impl("step_sample", &redge_kernels::step_sample);
  m.impl("step_output", &redge_kernels::step_output);
  m.impl("step_dot", &redge_kernels::step_dot);
  m.impl("step_grad", &redge_kernels::step_grad);
}
