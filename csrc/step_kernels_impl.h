// Per-row kernels of the step ops (redge_kernels/step_ops.py; docs/SPEC.md "Vocabulary-parallel"),
// written against at::vec::Vectorized and compiled once per CPU capability: a translation unit
// defines CPU_CAPABILITY (and CPU_CAPABILITY_AVX2 where it applies), includes row_kernels_impl.h
// (the vector exp, the horizontal reductions, the noise of noise_impl.h and the per-element math
// of estimator_math.h) and then this file (step_kernels_cap_*.cpp).
//
// Every op works on one row of the local columns [col_start, col_start + K) at a time, 8 (fp32)
// or 4 (fp64) columns per vector, the last vector partial (masked loads and stores). The
// elementwise formulas are those of the fused kernels (estimator_math.h), the softmax
// probabilities p = exp(l - M) * (1 / S) with the forward's and the backward's operations
// identical by construction (one function, chain_p), and the noise is noise_row: the fused
// kernels' generator at the global columns, bit-identical to the unsharded call's noise.
// A softmax with a temperature, softmax(v / tau) (Gumbel-Softmax's v = phi + G, ReinMax's
// v = phi), keeps its statistics unscaled, as the fused kernels: M = max v and
// S = sum exp((v - M) / tau), p = exp((v - M) / tau) * (1 / S) (tempered_p): the max is
// subtracted before the division, since v / tau overflows for finite v near the float limit.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <limits>
#include <vector>

#include "step_kernels.h"

namespace redge_kernels {
namespace CPU_CAPABILITY {

namespace steps {

template <typename T>
struct Vec {
  using V = Vectorized<T>;
  static constexpr int L = V::size();
  static V load(const T* p, int64_t j, int64_t cnt) {
    return cnt == L ? V::loadu(p + j) : V::loadu(p + j, cnt);
  }
  static void store(const V& v, T* p, int64_t j, int64_t cnt) {
    if (cnt == L) v.store(p + j); else v.store(p + j, static_cast<int>(cnt));
  }
  /// All-ones lanes below cnt.
  static V valid(int64_t cnt) { return V::arange(T(0), T(1)) < V(static_cast<T>(cnt)); }
  /// 1 in the lane of local column idx (any integer: -1 or another shard's give 0), else 0.
  static V one_hot(int64_t j, int64_t idx) {
    if (idx < j || idx >= j + L) return V(T(0));
    alignas(64) T lanes[L] = {};
    lanes[idx - j] = T(1);
    return V::loadu(lanes);
  }
};

/// The global (M, S) of a softmax as the shift and the reciprocal the probabilities use:
/// M = -inf reads 0, S = 0 reads 1 (exact zeros on masked columns and all-masked rows).
template <typename T>
struct Softmax {
  T shift = T(0), inv = T(1);
  Softmax() = default;  // unused (a step without that softmax)
  explicit Softmax(const T* ms) {
    shift = ms[0] == -std::numeric_limits<T>::infinity() ? T(0) : ms[0];
    inv = T(1) / (ms[1] == T(0) ? T(1) : ms[1]);
  }
};

/// p = exp(l - M) * (1 / S): every softmax probability of every op (so a backward recomputes the
/// forward's p bitwise).
template <typename T>
inline Vectorized<T> chain_p(const Vectorized<T>& l, const Softmax<T>& sm) {
  return softmax_prob(vexp<T>(l - Vectorized<T>(sm.shift)), Vectorized<T>(sm.inv));
}

/// p = exp((v - M) / tau) * (1 / S): the probabilities of a softmax with a temperature from its
/// unscaled statistics (gumbel_logit of estimator_math.h, the fused kernels' shift-then-divide).
template <typename T>
inline Vectorized<T> tempered_p(const Vectorized<T>& v, const Softmax<T>& sm,
                                const Vectorized<T>& tau) {
  return softmax_prob(vexp<T>(gumbel_logit(v, Vectorized<T>(sm.shift), tau)),
                      Vectorized<T>(sm.inv));
}

/// One row's view of the call: row pointers, the base softmax (slot 0) and step k's scalars.
template <typename T>
struct Row {
  using V = Vectorized<T>;
  const StepArgs& a;
  int64_t r, K;
  const T *phi, *x, *g, *stats, *co;
  bool cov;

  Row(const StepArgs& args, int64_t row)
      : a(args), r(row), K(args.K), phi(at(args.phi)), x(at(args.x)), g(at(args.g)),
        stats(args.stats ? static_cast<const T*>(args.stats) + row * args.n_slots * 2 : nullptr),
        co(static_cast<const T*>(args.coefs)), cov(args.method == kReDGECov) {}

  const T* at(const void* p) const { return p ? static_cast<const T*>(p) + r * a.K : nullptr; }
  T* out(int i) const { return static_cast<T*>(a.out[i]) + r * a.K; }
  Softmax<T> slot(int k) const { return Softmax<T>(stats + 2 * k); }
  StepCoefs<V> coefs(int k) const { return step_coefs<V, T>(co, k); }

  /// ReDGE-Cov's mu = softmax(phi) and lam = 1 / max(mu (1 - mu), V_MIN) at columns j.
  void cov_base(const V& ph, const Softmax<T>& base, V& mu, V& lam) const {
    mu = chain_p(ph, base);
    lam = V(T(1)) / cov_variance(mu, V(static_cast<T>(kVMin)));
  }
  /// l_k(x_k) at columns j (mu, lam of ReDGE-Cov only).
  V logit(const V& ph, const V& xv, const StepCoefs<V>& s, const Softmax<T>& base) const {
    V mu(T(0)), lam(T(0));
    if (cov) cov_base(ph, base, mu, lam);
    return chain_logit(cov, ph, s, mu, lam, xv);
  }
};

/// The noise of a row at its global columns, as T: z (stream 0) and / or G (stream 1).
template <typename T>
struct RowNoiseT {
  PhiloxKeys keys;
  std::vector<float> zf, gf;
  std::vector<T> zt, gt;
  RowNoiseT(const StepArgs& a) : keys(a.key0, a.key1) {}
  /// Fills the wanted streams of row r; returns (z, G) pointers (null where not wanted).
  std::pair<const T*, const T*> get(const StepArgs& a, int64_t r, bool want_z, bool want_g) {
    const int64_t K = a.K;
    if (want_z) zf.resize(K);
    if (want_g) gf.resize(K);
    noise_row(static_cast<uint64_t>(a.row_start + r), static_cast<uint64_t>(a.col_start), K, keys,
              want_z ? zf.data() : nullptr, want_g ? gf.data() : nullptr);
    if constexpr (std::is_same_v<T, float>) {
      return {want_z ? zf.data() : nullptr, want_g ? gf.data() : nullptr};
    } else {
      if (want_z) zt.assign(zf.begin(), zf.end());
      if (want_g) gt.assign(gf.begin(), gf.end());
      return {want_z ? zt.data() : nullptr, want_g ? gt.data() : nullptr};
    }
  }
};

/// A row sum in a fixed order, accurate where a few large terms meet many small ones (a softmax
/// normaliser dominated by its top entries, a dot product with cancellation): blocks of
/// kBlock vectors are summed in 4 interleaved vector accumulators, and the block sums are added
/// with Kahan compensation (the build keeps -ffp-contract=off, so it is not folded away).
template <typename T>
struct RowSum {
  using V = Vectorized<T>;
  static constexpr int kBlock = 64;
  V acc[4] = {V(T(0)), V(T(0)), V(T(0)), V(T(0))};
  V total = V(T(0)), comp = V(T(0));
  int n = 0;
  void add(const V& v) {
    acc[n & 3] = acc[n & 3] + v;
    if (++n == kBlock) flush();
  }
  void flush() {
    const V b = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    const V y = b - comp;
    const V t = total + y;
    comp = (t - total) - y;
    total = t;
    for (V& a : acc) a = V(T(0));
    n = 0;
  }
  T result() {
    flush();
    return hsum(total);
  }
};

/// (max, sum exp((l - safe max) / tau)) of f(j, cnt) over the row, f written to buf (len K);
/// tau = 1 (the default) is the plain softmax, without the division.
template <typename T, typename F>
inline void local_softmax(int64_t K, T* buf, F f, T* out, T tau = T(1)) {
  using W = Vec<T>;
  using V = typename W::V;
  constexpr int L = W::L;
  const T ninf = -std::numeric_limits<T>::infinity();
  V m(ninf);
  for (int64_t j = 0; j < K; j += L) {
    const int64_t cnt = std::min<int64_t>(L, K - j);
    V l = f(j, cnt);
    if (cnt < L) l = V::blendv(V(ninf), l, W::valid(cnt));
    W::store(l, buf, j, cnt);
    m = at::vec::maximum(m, l);
  }
  const T big = hmax(m);
  const V shift(big == ninf ? T(0) : big), tv(tau);
  const bool scaled = tau != T(1);
  RowSum<T> s;
  for (int64_t j = 0; j < K; j += L) {
    const int64_t cnt = std::min<int64_t>(L, K - j);
    const V l = W::load(buf, j, cnt);
    V e = vexp<T>(scaled ? gumbel_logit(l, shift, tv) : l - shift);
    if (cnt < L) e = V::blendv(V(T(0)), e, W::valid(cnt));
    s.add(e);
  }
  out[0] = big;
  out[1] = s.result();
}

/// sum_j f(j, cnt) over the row (partial lanes zeroed), in a fixed order (RowSum).
template <typename T, typename F>
inline T row_sum(int64_t K, F f) {
  using W = Vec<T>;
  using V = typename W::V;
  RowSum<T> s;
  for (int64_t j = 0; j < K; j += W::L) {
    const int64_t cnt = std::min<int64_t>(W::L, K - j);
    V v = f(j, cnt);
    if (cnt < W::L) v = V::blendv(V(T(0)), v, W::valid(cnt));
    s.add(v);
  }
  return s.result();
}

/// out[j] = f(j, cnt) over the row.
template <typename T, typename F>
inline void row_map(int64_t K, T* out, F f) {
  using W = Vec<T>;
  for (int64_t j = 0; j < K; j += W::L) {
    const int64_t cnt = std::min<int64_t>(W::L, K - j);
    W::store(f(j, cnt), out, j, cnt);
  }
}

}  // namespace steps

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------

/// step_init: x_{n-1} = z, or mu + sqrt(v) z (ReDGE-Cov).
template <typename T>
void step_init_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  using V = typename W::V;
  steps::RowNoiseT<T> noise(a);
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    const T* z = noise.get(a, r, true, false).first;
    if (!row.cov) {
      std::copy(z, z + a.K, row.out(0));
      continue;
    }
    const steps::Softmax<T> base = row.slot(0);
    const T* ph = row.phi;
    steps::row_map<T>(a.K, row.out(0), [&row, base, ph, z](int64_t j, int64_t cnt) {
      V mu, lam;
      row.cov_base(W::load(ph, j, cnt), base, mu, lam);
      return cov_x_init(mu, cov_variance(mu, V(static_cast<T>(kVMin))), W::load(z, j, cnt));
    });
  }
}

/// step_stats: the local (m, s) of softmax k (k = 0: phi itself).
template <typename T>
void step_stats_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  std::vector<T> buf(a.K);
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    T* out = static_cast<T*>(a.out[0]) + 2 * r;
    const T *ph = row.phi, *xv = row.x;
    if (a.k == 0) {
      steps::local_softmax<T>(a.K, buf.data(),
                              [ph](int64_t j, int64_t cnt) { return W::load(ph, j, cnt); }, out);
      continue;
    }
    const auto s = row.coefs(a.k);
    const steps::Softmax<T> base = row.cov ? row.slot(0) : steps::Softmax<T>();
    steps::local_softmax<T>(a.K, buf.data(), [&row, s, base, ph, xv](int64_t j, int64_t cnt) {
      return row.logit(W::load(ph, j, cnt), W::load(xv, j, cnt), s, base);
    }, out);
  }
}

/// step_next: x_{k-1} = a_k p_k + b_k x_k.
template <typename T>
void step_next_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    const auto s = row.coefs(a.k);
    const steps::Softmax<T> base = row.slot(0), sm = row.slot(a.k);
    const T *ph = row.phi, *xv = row.x;
    steps::row_map<T>(a.K, row.out(0), [&row, s, base, sm, ph, xv](int64_t j, int64_t cnt) {
      const auto x = W::load(xv, j, cnt);
      const auto p = steps::chain_p(row.logit(W::load(ph, j, cnt), x, s, base), sm);
      return ddim_step(s.a, p, s.b, x);
    });
  }
}

/// step_sample: local (m, s) of the last step's softmaxes, the local Gumbel-max, the row kinds.
template <typename T>
void step_sample_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  using V = typename W::V;
  constexpr int L = W::L;
  const T ninf = -std::numeric_limits<T>::infinity(), pinf = std::numeric_limits<T>::infinity();
  const int method = a.method;
  const bool chain = method == kReDGE || method == kReDGECov || method == kReDGEMax;
  const T tau = static_cast<T>(a.tau);
  steps::RowNoiseT<T> noise(a);
  std::vector<T> buf(a.K), score(a.K);
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    const T* gum = noise.get(a, r, false, true).second;
    T* parts = static_cast<T*>(a.out[0]) + r * a.n_soft * 2;
    const T* ph = row.phi;
    const T* xv = row.x;
    T* sc = score.data();
    if (chain) {
      const auto s = row.coefs(1);
      const steps::Softmax<T> base = row.cov ? row.slot(0) : steps::Softmax<T>();
      steps::local_softmax<T>(a.K, buf.data(), [&row, s, base, ph, xv](int64_t j, int64_t cnt) {
        return row.logit(W::load(ph, j, cnt), W::load(xv, j, cnt), s, base);
      }, parts);
      const T* l1 = buf.data();
      steps::row_map<T>(a.K, sc, [l1, gum](int64_t j, int64_t cnt) {
        return W::load(l1, j, cnt) + W::load(gum, j, cnt);
      });
    } else {
      steps::row_map<T>(a.K, sc, [ph, gum](int64_t j, int64_t cnt) {
        return W::load(ph, j, cnt) + W::load(gum, j, cnt);
      });
      // Gumbel-Softmax: the unscaled scores phi + G with the temperature in the sum; else phi.
      const T* v = method == kGumbel ? sc : ph;
      steps::local_softmax<T>(a.K, buf.data(), [v](int64_t j, int64_t cnt) {
        return W::load(v, j, cnt);
      }, parts, method == kGumbel ? tau : T(1));
      if (method == kReinMax) {  // softmax(phi / tau): (max phi, sum exp((phi - m) / tau))
        steps::local_softmax<T>(a.K, buf.data(), [ph](int64_t j, int64_t cnt) {
          return W::load(ph, j, cnt);
        }, parts + 2, tau);
      }
    }
    // Gumbel-max: the first argmax of the scores (NaN scores only on poisoned rows).
    V best(ninf), bad(T(0)), valid(T(0));
    for (int64_t j = 0; j < a.K; j += L) {
      const int64_t cnt = std::min<int64_t>(L, a.K - j);
      const V live = W::valid(cnt);
      const V v = V::blendv(V(ninf), W::load(sc, j, cnt), live);
      best = at::vec::maximum(best, v);
      const V p = W::load(ph, j, cnt);
      bad = bad | (((p != p) | (p == V(pinf))) & live);
      valid = valid | ((p != V(ninf)) & live);
    }
    const T b = hmax(best);
    int64_t idx = 0;
    for (int64_t j = 0; j < a.K; ++j) {
      if (sc[j] == b) { idx = j; break; }
    }
    static_cast<T*>(a.out[1])[r] = b;
    a.out_index[r] = a.col_start + idx;
    a.out_kinds[2 * r] = bad.zero_mask() != (1 << L) - 1;     // some lane holds a NaN or +inf
    a.out_kinds[2 * r + 1] = valid.zero_mask() == (1 << L) - 1;  // no lane holds a logit
  }
}

/// step_output: the local columns of the sample, then the row kinds.
template <typename T>
void step_output_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  using V = typename W::V;
  const int method = a.method;
  const bool one_hot = a.hard || method == kReinMax || method == kReDGEMax;
  const V tau(static_cast<T>(a.tau));
  steps::RowNoiseT<T> noise(a);
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    T* y = row.out(0);
    const bool poisoned = a.kinds[2 * r], empty = a.kinds[2 * r + 1];
    if (poisoned || empty) {
      std::fill(y, y + a.K, poisoned ? std::numeric_limits<T>::quiet_NaN() : T(0));
      continue;
    }
    const T *ph = row.phi, *xv = row.x;
    if (one_hot) {
      const int64_t idx = a.index[r] - a.col_start;
      steps::row_map<T>(a.K, y, [idx](int64_t j, int64_t) { return W::one_hot(j, idx); });
    } else if (method == kST || method == kGumbel) {
      const steps::Softmax<T> sm = row.slot(0);
      const T* gum = method == kGumbel ? noise.get(a, r, false, true).second : nullptr;
      steps::row_map<T>(a.K, y, [ph, gum, sm, tau](int64_t j, int64_t cnt) {
        const V p = W::load(ph, j, cnt);
        return gum ? steps::tempered_p(p + W::load(gum, j, cnt), sm, tau) : steps::chain_p(p, sm);
      });
    } else {
      const auto s = row.coefs(1);
      const steps::Softmax<T> base = row.slot(0), sm = row.slot(1);
      steps::row_map<T>(a.K, y, [&row, s, base, sm, ph, xv](int64_t j, int64_t cnt) {
        return steps::chain_p(row.logit(W::load(ph, j, cnt), W::load(xv, j, cnt), s, base), sm);
      });
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------

/// The per-element terms of backward step k at columns [j, j + cnt): gp (the gradient at the
/// softmax p), p, and the one-hot where ReinMax / ReDGE-Max need it. ReinMax: gp = g, p = p0,
/// p1 in `extra`.
template <typename T>
struct BwdTerms {
  using W = steps::Vec<T>;
  using V = typename W::V;
  const steps::Row<T>& row;
  const T *z, *gum, *gmu, *glam;
  steps::Softmax<T> base, sm, sm1;
  StepCoefs<V> s;
  int64_t idx;
  V tau;

  BwdTerms(const steps::Row<T>& rw, const T* z_, const T* g_, int64_t r)
      : row(rw), z(z_), gum(g_), gmu(rw.at(rw.a.gmu)), glam(rw.at(rw.a.glam)),
        base(rw.slot(0)), sm(rw.slot(rw.a.method == kReDGECov && rw.a.k == 0 ? 0 : rw.a.k)),
        sm1(rw.a.method == kReinMax ? rw.slot(1) : rw.slot(0)),
        s(rw.coefs(rw.a.k > 0 ? rw.a.k : 0)),
        idx(rw.a.index ? rw.a.index[r] - rw.a.col_start : -1),
        tau(static_cast<T>(rw.a.tau)) {}

  /// (gp, p) of every method but ReinMax; onehot and extra (ReinMax p1) where defined.
  void at(int64_t j, int64_t cnt, V& gp, V& p, V& extra) const {
    const StepArgs& a = row.a;
    const V ph = W::load(row.phi, j, cnt), g = W::load(row.g, j, cnt);
    switch (a.method) {
      case kST:
        gp = g;
        p = steps::chain_p(ph, sm);
        return;
      case kGumbel:
        gp = g;
        p = steps::tempered_p(ph + W::load(gum, j, cnt), sm, tau);
        return;
      case kReinMax:
        gp = g;
        p = steps::chain_p(ph, sm);
        extra = reinmax_p1(vexp<T>(reinmax_tempered(ph, V(sm1.shift), tau)), V(T(1) / sm1.inv),
                           W::one_hot(j, idx));
        return;
      default:
        break;
    }
    if (a.method == kReDGECov && a.k == 0) {  // the tail through mu = softmax(phi) and v
      V mu, lam;
      row.cov_base(ph, base, mu, lam);
      const V zero(T(0));
      gp = cov_base_grad(mu, lam, g, W::load(z, j, cnt), glam ? W::load(glam, j, cnt) : zero,
                         gmu ? W::load(gmu, j, cnt) : zero, V(static_cast<T>(kVMin)));
      p = mu;
      return;
    }
    p = steps::chain_p(row.logit(ph, W::load(row.x, j, cnt), s, base), sm);
    gp = a.k == 1 ? g : s.a * g;
  }
};

/// step_dot: the partial dot products of backward step k.
template <typename T>
void step_dot_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  using V = typename W::V;
  const bool want_z = a.method == kReDGECov && a.k == 0, want_g = a.method == kGumbel;
  steps::RowNoiseT<T> noise(a);
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    const auto nz = (want_z || want_g) ? noise.get(a, r, want_z, want_g)
                                       : std::pair<const T*, const T*>{nullptr, nullptr};
    const BwdTerms<T> t(row, nz.first, nz.second, r);
    T* out = static_cast<T*>(a.out[0]) + r * a.n_dots;
    if (a.method == kReinMax) {  // (sum 2 g p1, sum -g p0 / 2)
      out[0] = steps::row_sum<T>(a.K, [&t](int64_t j, int64_t cnt) {
        V gp, p, p1;
        t.at(j, cnt, gp, p, p1);
        return (V(T(2)) * gp) * p1;
      });
      out[1] = steps::row_sum<T>(a.K, [&t](int64_t j, int64_t cnt) {
        V gp, p, p1;
        t.at(j, cnt, gp, p, p1);
        return (V(T(-0.5)) * gp) * p;
      });
      continue;
    }
    out[0] = steps::row_sum<T>(a.K, [&t](int64_t j, int64_t cnt) {
      V gp, p, e;
      t.at(j, cnt, gp, p, e);
      return gp * p;
    });
    if (a.method == kReDGEMax && a.k == 1) {  // <g, D>, D = one_hot - p_1
      const int64_t idx = t.idx;
      out[1] = steps::row_sum<T>(a.K, [&t, idx](int64_t j, int64_t cnt) {
        V gp, p, e;
        t.at(j, cnt, gp, p, e);
        return gp * (W::one_hot(j, idx) - p);
      });
    }
  }
}

/// step_grad: backward step k given the combined dots (outputs: step_ops.py).
template <typename T>
void step_grad_rows(const StepArgs& a, int64_t rb, int64_t re) {
  using W = steps::Vec<T>;
  using V = typename W::V;
  const bool want_z = a.method == kReDGECov && a.k == 0, want_g = a.method == kGumbel;
  const bool chain = a.method != kST && a.method != kGumbel && a.method != kReinMax && a.k >= 1;
  const bool cov = a.method == kReDGECov && a.k >= 1;
  const T ninf = -std::numeric_limits<T>::infinity();
  steps::RowNoiseT<T> noise(a);
  for (int64_t r = rb; r < re; ++r) {
    const steps::Row<T> row(a, r);
    const auto nz = (want_z || want_g) ? noise.get(a, r, want_z, want_g)
                                       : std::pair<const T*, const T*>{nullptr, nullptr};
    const BwdTerms<T> t(row, nz.first, nz.second, r);
    const T* d = static_cast<const T*>(a.dots) + r * a.n_dots;
    const V dot(d[0]), dot1(a.n_dots > 1 ? d[1] : T(0));
    const T* gphi = row.at(a.gphi);
    T *o_phi = row.out(0), *o_x = chain ? row.out(1) : nullptr;
    T *o_mu = cov ? row.out(2) : nullptr, *o_lam = cov ? row.out(3) : nullptr;
    const V inv_tau(static_cast<T>(1.0 / a.tau)), tau(static_cast<T>(a.tau));
    const int method = a.method, k = a.k;
    for (int64_t j = 0; j < a.K; j += W::L) {
      const int64_t cnt = std::min<int64_t>(W::L, a.K - j);
      V gp, p, e;
      t.at(j, cnt, gp, p, e);
      const V prev = gphi ? W::load(gphi, j, cnt) : V(T(0));
      if (method == kReinMax) {
        const V gr = reinmax_grad(gp, p, e, dot, dot1);
        W::store(V::blendv(V(T(0)), gr, W::load(row.phi, j, cnt) != V(ninf)), o_phi, j, cnt);
        continue;
      }
      V rv = softmax_bwd(p, gp, dot);
      if (!chain) {  // st, gumbel, ReDGE-Cov's tail
        if (method == kGumbel) rv = rv / tau;
        W::store(gphi ? prev + rv : rv, o_phi, j, cnt);
        continue;
      }
      const V g = W::load(row.g, j, cnt);
      if (method == kReDGEMax && k == 1) {
        W::store(redge_max_step1(rv, dot1, W::one_hot(j, t.idx), p), o_phi, j, cnt);
      } else {
        W::store(gphi ? prev + rv : rv, o_phi, j, cnt);
      }
      V mu(T(0)), lam(T(0));
      if (cov) row.cov_base(W::load(row.phi, j, cnt), t.base, mu, lam);
      const V gx = k == 1 ? chain_gx1(cov, t.s.c, lam, rv)
                          : chain_gx(cov, t.s.c, lam, rv, t.s.b, g);
      W::store(gx, o_x, j, cnt);
      if (cov) {
        const V x = W::load(row.x, j, cnt);
        const V gm = t.gmu ? W::load(t.gmu, j, cnt) : V(T(0));
        const V gl = t.glam ? W::load(t.glam, j, cnt) : V(T(0));
        W::store(gm + cov_gmu_term(t.s, lam, rv), o_mu, j, cnt);
        W::store(gl + cov_glam_term(t.s, rv, x, mu), o_lam, j, cnt);
      }
    }
  }
}

/// The step kernels of this capability.
inline const StepTable& step_table(const char* name) {
  static const StepTable t = {
      {{&step_init_rows<float>, &step_init_rows<double>},
       {&step_stats_rows<float>, &step_stats_rows<double>},
       {&step_next_rows<float>, &step_next_rows<double>},
       {&step_sample_rows<float>, &step_sample_rows<double>},
       {&step_output_rows<float>, &step_output_rows<double>},
       {&step_dot_rows<float>, &step_dot_rows<double>},
       {&step_grad_rows<float>, &step_grad_rows<double>}},
      name};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace redge_kernels
