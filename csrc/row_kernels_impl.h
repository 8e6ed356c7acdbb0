// Per-row CPU kernels of every estimator (docs/SPEC.md: "ReDGE", "ReDGE-Cov", "ReDGE-Max", "Baselines",
// "Randomness", "Masked vocabulary and numerics"), written once against at::vec::Vectorized and
// compiled once per CPU capability: a translation unit defines CPU_CAPABILITY (and
// CPU_CAPABILITY_AVX2 where it applies) and then includes this file (kernels_cap_*.cpp).
//
// Layout of the work: one row at a time per thread (rows are independent, so 1 and 2 threads give
// identical bits). A row is first gathered (any strides, any dtype) into a contiguous acc_t scratch
// padded with -inf up to a multiple of kPad, so every loop runs on whole vectors; all scratch is
// per thread and per row (a few rows of K values), never [R, K].
//
// acc_t is float (fp32/bf16/fp16 input) or double (fp64 input); the noise is always float32 and
// bit-identical to redge_kernels/noise.py up to the last ulp of log/cos.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "philox.h"
#include "row_kernels.h"
#include "vec_math.h"

namespace redge_kernels {
namespace CPU_CAPABILITY {

constexpr int64_t kPad = 8;       // scratch rows are padded to a multiple of this many elements
constexpr double kVMin = 0.1;     // ReDGE-Cov variance floor (_constants.V_MIN)

inline int64_t padded(int64_t k) { return (k + kPad - 1) / kPad * kPad; }

template <typename T>
constexpr T neg_inf() { return -std::numeric_limits<T>::infinity(); }

#include "noise_impl.h"
#include "estimator_math.h"

/// exp of one vector (vexp_x of vec_math.h).
template <typename T>
inline Vectorized<T> vexp(const Vectorized<T>& x) {
  Vectorized<T> v = x;
  vexp_x<T, 1>(&v);
  return v;
}

// ------------------------------------------------------------------------------------------------
// Row helpers
// ------------------------------------------------------------------------------------------------

enum RowKind { kNormalRow, kEmptyRow, kPoisonedRow };

/// Whether a row of scalar_t with element stride `stride` can be read in place as the padded
/// acc_t scratch row: same type, contiguous, and no padding needed (K == kp).
template <typename scalar_t, typename T>
constexpr bool row_in_place(int64_t stride, int64_t K, int64_t kp) {
  return std::is_same_v<scalar_t, T> && stride == 1 && K == kp;
}

/// Gathers phi[row, :] (element stride `stride`) into dst[0:K] as acc_t, pads dst[K:kp] with -inf.
/// Returns the row kind; *n_masked receives the number of -inf entries. dst == nullptr (allowed
/// when row_in_place) only checks the row.
template <typename scalar_t, typename T>
RowKind load_row(const scalar_t* src, int64_t stride, int64_t K, int64_t kp, T* dst,
                 int64_t* n_masked) {
  const T inf = std::numeric_limits<T>::infinity();
  bool bad = false;
  int64_t ninf = 0;
  int64_t j = 0;
  if constexpr (std::is_same_v<scalar_t, T>) {
    if (stride == 1) {  // contiguous row of acc_t: vector checks (and copy)
      using V = Vectorized<T>;
      constexpr int L = V::size();
      constexpr int full = (1 << L) - 1;
      const V vinf(inf), vninf(-inf);
      for (; j + L <= K; j += L) {
        const V v = V::loadu(src + j);
        if (dst != nullptr) v.store(dst + j);
        bad |= (v < vinf).zero_mask() != 0;  // a lane that is not < inf: NaN or +inf
        ninf += __builtin_popcount(static_cast<unsigned>(~(v == vninf).zero_mask() & full));
      }
    }
  }
  // The rest (all of a converted or strided row) element by element; the unit stride is a
  // constant of its own instantiation.
  auto rest = [&](auto step) {
    for (; j < K; ++j) {
      const T v = static_cast<T>(src[j * step]);
      if (dst != nullptr) dst[j] = v;
      bad |= !(v < inf);  // NaN or +inf
      ninf += (v == -inf);
    }
  };
  if (stride == 1) {
    rest(std::integral_constant<int64_t, 1>{});
  } else {
    rest(stride);
  }
  if (dst != nullptr) std::fill(dst + K, dst + kp, -inf);
  *n_masked = ninf;
  if (bad) return kPoisonedRow;
  return ninf == K ? kEmptyRow : kNormalRow;
}

/// Gathers grad_y[row, :] into dst[0:K] as acc_t, pads with 0.
template <typename scalar_t, typename T>
void load_plain(const scalar_t* src, int64_t stride, int64_t K, int64_t kp, T* dst) {
  if (stride == 1) {
    for (int64_t j = 0; j < K; ++j) dst[j] = static_cast<T>(src[j]);
  } else {
    for (int64_t j = 0; j < K; ++j) dst[j] = static_cast<T>(src[j * stride]);
  }
  std::fill(dst + K, dst + kp, T(0));
}

template <typename scalar_t, typename T>
void store_row(const T* src, int64_t K, scalar_t* dst) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    std::memcpy(dst, src, sizeof(T) * K);
  } else {
    for (int64_t j = 0; j < K; ++j) dst[j] = static_cast<scalar_t>(src[j]);
  }
}

template <typename scalar_t>
void fill_row(scalar_t* dst, int64_t K, double value) {
  if (value == 0.0) {
    zero_fill(dst, sizeof(scalar_t) * static_cast<size_t>(K));  // +0 in every dtype
  } else {
    std::fill(dst, dst + K, static_cast<scalar_t>(value));
  }
}

/// dst[j] = f(j) (a Vectorized<T> of lanes j .. j+L-1) for j < kp; returns max_j dst[j].
/// (Callers pass f capturing by value: the vector stores may alias anything, so values reached
/// through captured references would be reloaded from memory at every step.)
/// (kp is a multiple of L; two accumulators in a fixed order.)
template <typename T, typename F>
T map_max(int64_t kp, T* dst, F f) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  V m0(neg_inf<T>()), m1(neg_inf<T>());
  int64_t j = 0;
  for (; j + 2 * L <= kp; j += 2 * L) {
    const V a = f(j), b = f(j + L);
    a.store(dst + j);
    b.store(dst + j + L);
    m0 = at::vec::maximum(m0, a);
    m1 = at::vec::maximum(m1, b);
  }
  if (j < kp) {
    const V a = f(j);
    a.store(dst + j);
    m0 = at::vec::maximum(m0, a);
  }
  return hmax(at::vec::maximum(m0, m1));
}

/// a[j] = exp(a[j] - m) in place; returns sum_j a[j] (fixed order).
template <typename T>
T exp_sum(int64_t kp, T* a, T m) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  const V mv(m);
  V s0(T(0)), s1(T(0));
  int64_t j = 0;
  // kX vectors per iteration (interleaved exp); the sums alternate s0, s1 as below.
  constexpr int kX = 8;
  for (; j + kX * L <= kp; j += kX * L) {
    V e[kX];
    for (int b = 0; b < kX; ++b) e[b] = V::loadu(a + j + b * L) - mv;
    vexp_x<T, kX>(e);
    for (int b = 0; b < kX; ++b) e[b].store(a + j + b * L);
    for (int b = 0; b < kX; b += 2) {
      s0 = s0 + e[b];
      s1 = s1 + e[b + 1];
    }
  }
  for (; j + 2 * L <= kp; j += 2 * L) {
    const V e0 = vexp<T>(V::loadu(a + j) - mv);
    const V e1 = vexp<T>(V::loadu(a + j + L) - mv);
    e0.store(a + j);
    e1.store(a + j + L);
    s0 = s0 + e0;
    s1 = s1 + e1;
  }
  if (j < kp) {
    const V e0 = vexp<T>(V::loadu(a + j) - mv);
    e0.store(a + j);
    s0 = s0 + e0;
  }
  return hsum(s0 + s1);
}

/// First j in [0, K) with vals[j] == vmax (vals holds the sampling scores, vmax their maximum).
template <typename T>
int64_t first_index_of(const T* vals, int64_t kp, T vmax) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  const V target(vmax);
  for (int64_t j = 0; j < kp; j += L) {
    // zero_mask: bit i set where lane i is 0, i.e. where vals != vmax.
    const int differs = (V::loadu(vals + j) == target).zero_mask();
    const int eq = ~differs & ((1 << L) - 1);
    if (eq) return j + __builtin_ctz(static_cast<unsigned>(eq));
  }
  return -1;  // unreachable for a non-empty row
}

/// Vectorized<T> holding 1 in the lane of `idx` if it falls in [j, j + L), else 0.
template <typename T>
Vectorized<T> one_hot_block(int64_t j, int64_t idx) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  if (idx < j || idx >= j + L) return V(T(0));
  alignas(64) T a[L] = {};
  a[idx - j] = T(1);
  return V::loadu(a);
}

// ------------------------------------------------------------------------------------------------
// Gumbel-max sampling with pruning (float rows): i = first argmax_j (l_j + G_j), exactly the index
// of the unpruned scan, with the two logs of G computed for a few blocks of 8 columns only.
//   Pass 1 (a lower bound): G is non-decreasing in the word w, so every column with w_j >= w0 has
//     G_j >= g0 = G(w0) - margin; LB = max over those columns of fl(l_j + g0) is reached or
//     exceeded by some score, hence by the winner's S*. w0 leaves about 16 columns above it.
//   Pass 2 (an upper bound per column, no table, no log): with u = (w + 1/2) 2^-32 and
//     ~w = 2^32 - 1 - w, -log u >= 1 - u >= ~w 2^-32 >= 2^(e - 151), e the biased float exponent of
//     (~w) >> 8 (exact in float), so G = -log(-log u) <= (151 - e) ln2 (+ a margin for the float
//     formula). A column with fl(l_j + that bound) < LB cannot reach S*; a block of 8 holding any
//     other column gets the exact G of noise.py, and blocks are scanned in column order with a
//     strict >, so the first index of the maximum wins, as in the unpruned scan.
// Both passes are branch-free but for the rare candidate blocks.
// ------------------------------------------------------------------------------------------------

/// The pass-1 threshold of a row of K columns: (w0, g0) with g0 <= G(w) for every w >= w0.
struct PruneLow {
  uint32_t w0;
  float g0;
  explicit PruneLow(int64_t K) {
    const double keep = std::min(1.0, 16.0 / static_cast<double>(std::max<int64_t>(K, 1)));
    const double w = std::floor((1.0 - keep) * 4294967296.0);
    w0 = static_cast<uint32_t>(std::min(w, 4294967295.0));
    g0 = gumbel_from_bits(w0) - 1e-3f;  // scalar libm; the margin covers ulp differences
  }
};

/// Lanes of the 8 words r2[0..7] that are >= w0 (unsigned), as an all-ones float mask.
inline VecF words_at_least(const uint32_t* r2, uint32_t w0) {
  // w > w0 - 1; for w0 = 0 (K <= 16) no lane: LB = -inf and nothing is pruned.
  return gt_unsigned(U32x8::loadu(r2), U32x8::broadcast(w0 - 1u)).bits_as_float();
}

/// Upper bounds of G for the 8 words r2[0..7]: (151 - e) ln2 + margin (see above).
inline VecF gumbel_upper8(const uint32_t* r2) {
  const U32x8 top = (U32x8::loadu(r2) ^ U32x8::broadcast(0xFFFFFFFFu)).shr(8);  // < 2^24: exact
  const U32x8 eb = U32x8::bits_of(top.to_float()).shr(23);
  const VecF n = (U32x8::broadcast(151) - eb).to_float();
  return at::vec::fmadd(n, VecF(0.69314719f), VecF(1e-3f));
}

/// First argmax of l_j + G_j over j < kp, where `logit(j)` gives l for the 8 columns j..j+7 and
/// r2 holds the stream-1 words. Float rows only.
template <typename F>
int64_t sample_pruned(int64_t kp, const uint32_t* r2, const PruneLow& low, F logit) {
  using V = VecF;
  const V ninf(neg_inf<float>());
  V lb0 = ninf, lb1 = ninf;
  const V g0(low.g0);
  int64_t j = 0;
  for (; j + 2 * kNoiseLanes <= kp; j += 2 * kNoiseLanes) {
    const V c0 = V::blendv(ninf, logit(j) + g0, words_at_least(r2 + j, low.w0));
    const V c1 = V::blendv(ninf, logit(j + kNoiseLanes) + g0,
                           words_at_least(r2 + j + kNoiseLanes, low.w0));
    lb0 = at::vec::maximum(lb0, c0);
    lb1 = at::vec::maximum(lb1, c1);
  }
  for (; j < kp; j += kNoiseLanes) {
    lb0 = at::vec::maximum(lb0, V::blendv(ninf, logit(j) + g0, words_at_least(r2 + j, low.w0)));
  }
  const V lb(hmax(at::vec::maximum(lb0, lb1)));

  float best = neg_inf<float>();
  int64_t best_idx = -1;
  for (j = 0; j < kp; j += kNoiseLanes) {
    const V l = logit(j);
    if ((l + gumbel_upper8(r2 + j) >= lb).zero_mask() == (1 << kNoiseLanes) - 1) continue;
    const V score = l + gumbel8(r2 + j);
    alignas(32) float sc[kNoiseLanes];
    score.store(sc);
    for (int i = 0; i < kNoiseLanes; ++i) {
      if (sc[i] > best) {
        best = sc[i];
        best_idx = j + i;
      }
    }
  }
  return best_idx;
}

/// Scratch memory of the calling thread, kept between calls (one buffer per element type and
/// slot, up to kKeptScratchBytes each), so that consecutive calls of a training loop neither
/// allocate it nor page-fault it in again. Its contents are whatever the last user left: the
/// kernels write every scratch element before reading it (a new buffer starts as NaN, so that
/// the tests would see a read before a write). Larger requests get a buffer of their own, freed by
/// `own` when it goes out of scope. redge_kernels_cpu::_pool_clear releases the kept buffers (each
/// thread at its next call).
constexpr size_t kKeptScratchBytes = size_t(32) << 20;

template <typename T>
T* thread_scratch(int slot, size_t n, std::vector<T>& own) {
  thread_local std::vector<T> kept[2];
  thread_local uint64_t generation = 0;
  const uint64_t now = scratch_generation();
  if (now != generation) {  // pool_clear: drop what this thread kept
    for (auto& k : kept) std::vector<T>().swap(k);
    generation = now;
  }
  const T poison = std::numeric_limits<T>::has_quiet_NaN ? std::numeric_limits<T>::quiet_NaN() : T(0);
  if (n * sizeof(T) > kKeptScratchBytes) {
    own.assign(n, poison);
    return own.data();
  }
  std::vector<T>& b = kept[slot];
  if (b.size() < n) {
    b.clear();
    b.shrink_to_fit();
    b.assign(n, poison);
  }
  return b.data();
}

/// Runs body(r, block_end) for the rows of this task: [rb, re), or, when the launcher shares a row
/// counter (RowArgs::next_row), blocks of rows grabbed from it until none are left (dynamic load
/// balance; a row's result never depends on which thread computes it).
template <typename F>
void for_rows(const RowArgs& a, int64_t rb, int64_t re, F body) {
  if (a.next_row == nullptr) {
    for (int64_t r = rb; r < re; ++r) body(r, re);
    return;
  }
  for (;;) {
    const int64_t b = a.next_row->fetch_add(a.row_block, std::memory_order_relaxed);
    if (b >= a.rows) return;
    const int64_t e = std::min(b + a.row_block, a.rows);
    for (int64_t r = b; r < e; ++r) body(r, e);
  }
}

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------

/// The per-thread scratch rows of the row forward, kp elements each (x, mu, lam: the chain).
template <typename T>
struct FwdRowScratch {
  const T* ph = nullptr;  // the row's logits: the scratch copy, or phi itself (row_in_place)
  T* E = nullptr;         // logits, then their exp
  T* G = nullptr;         // Gumbel noise (then the sampling scores)
  T* x = nullptr;
  T* mu = nullptr;
  T* lam = nullptr;
  uint32_t* r2 = nullptr;  // float rows: the stream-1 words of the pruned Gumbel-max
};

/// st, gumbel, reinmax on one normal row r: stats slot 0 (st) and the index (*idx); returns the
/// sum s of the soft output y = E / s.
template <typename T>
T fwd_row_baseline(const RowArgs& a, int64_t r, int64_t re, int64_t kp, RowNoise<T>& noise,
                   const PruneLow& prune_low, const FwdRowScratch<T>& sc, T* st, int64_t* idx) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  constexpr bool kPruned = std::is_same_v<T, float>;
  const T* const ph = sc.ph;
  T* const E = sc.E;
  T* const G = sc.G;
  noise.get(r, re, nullptr, sc.r2, G);
  T m, s;
  if (a.method == kGumbel) {
    // m = max(phi + G) first (also the sampling max), then l = gumbel_logit, whose max is 0.
    m = map_max<T>(kp, E, [=](int64_t j) { return V::loadu(ph + j) + V::loadu(G + j); });
    *idx = first_index_of<T>(E, kp, m);
    const V mv(m), tv(static_cast<T>(a.tau));
    for (int64_t j = 0; j < kp; j += L) gumbel_logit(V::loadu(E + j), mv, tv).store(E + j);
    s = exp_sum<T>(kp, E, T(0));
  } else {
    m = map_max<T>(kp, E, [=](int64_t j) { return V::loadu(ph + j); });
    s = exp_sum<T>(kp, E, m);
    if constexpr (kPruned) {
      *idx = sample_pruned(kp, sc.r2, prune_low, [=](int64_t j) { return V::loadu(ph + j); });
    } else {  // Sampling scores phi + G (G's scratch is reused for them).
      const T vmax = map_max<T>(kp, G, [=](int64_t j) { return V::loadu(ph + j) + V::loadu(G + j); });
      *idx = first_index_of<T>(G, kp, vmax);
    }
  }
  st[0] = m;
  st[1] = s;
  return s;
}

/// The DDIM chain (redge, redge_cov, redge_max) on one normal row r: stats slots 0 (cov) and
/// 1..n-1 and the index (*idx); returns s_1, the sum of the soft output y = E / s_1.
template <typename T>
T fwd_row_chain(const RowArgs& a, int64_t r, int64_t re, int64_t kp, RowNoise<T>& noise,
                const PruneLow& prune_low, const FwdRowScratch<T>& sc, T* st, int64_t* idx) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  const int n = a.n_steps;
  const bool cov = a.method == kReDGECov;
  const T* co = a.coefs_as<T>();
  const T* const ph = sc.ph;
  T* const E = sc.E;
  T* const G = sc.G;
  T* const x = sc.x;
  T* const mu = sc.mu;
  T* const lam = sc.lam;
  noise.get(r, re, x, sc.r2, G);  // x = z for now
  if (cov) {
    // p = softmax(phi) (slot 0); mu = p, v = max(p (1 - p), V_MIN), lam = 1 / v, x = mu + sqrt(v) z
    const T m0 = map_max<T>(kp, E, [=](int64_t j) { return V::loadu(ph + j); });
    const T s0 = exp_sum<T>(kp, E, m0);
    st[0] = m0;
    st[1] = s0;
    const V s0v(s0), one(T(1)), vmin(static_cast<T>(kVMin));
    for (int64_t j = 0; j < kp; j += L) {
      const V m = V::loadu(E + j) / s0v;
      const V v = cov_variance(m, vmin);
      m.store(mu + j);
      (one / v).store(lam + j);
      cov_x_init(m, v, V::loadu(x + j)).store(x + j);
    }
  }
  auto logits = [&](int k) {  // l_k as a function of the column block j (x holds x_k)
    const StepCoefs<V> sk = step_coefs<V>(co, k);
    return [=](int64_t j) {
      const V muj = cov ? V::loadu(mu + j) : V(T(0)), lamj = cov ? V::loadu(lam + j) : V(T(0));
      return chain_logit(cov, V::loadu(ph + j), sk, muj, lamj, V::loadu(x + j));
    };
  };
  T m = map_max<T>(kp, E, logits(n - 1));
  T soft_s = T(1);
  for (int k = n - 1; k >= 1; --k) {
    const T s = exp_sum<T>(kp, E, m);
    st[2 * k] = m;
    st[2 * k + 1] = s;
    soft_s = s;
    if (k == 1) break;
    // x_{k-1} = a_k p_k + b_k x_k, then the logits of step k-1 and their max.
    const V inv(T(1) / s), ak(co[k * 5 + kCoefA]), bk(co[k * 5 + kCoefB]);
    auto next = logits(k - 1);
    m = map_max<T>(kp, E, [=](int64_t j) {
      // (as the backward's recompute, operation for operation: p_k = E / s_k first)
      const V xn = ddim_step(ak, softmax_prob(V::loadu(E + j), inv), bk, V::loadu(x + j));
      xn.store(x + j);
      return next(j);
    });
  }
  // i = argmax(l_1 + G); E holds exp(l_1 - m_1) and is kept for the soft output.
  auto l1 = logits(1);
  if constexpr (std::is_same_v<T, float>) {
    *idx = sample_pruned(kp, sc.r2, prune_low, l1);
  } else {
    const T vmax = map_max<T>(kp, G, [=](int64_t j) { return l1(j) + V::loadu(G + j); });
    *idx = first_index_of<T>(G, kp, vmax);
  }
  return soft_s;
}

/// y[row] = one_hot(idx), or the soft sample E / soft_s (E is overwritten).
template <typename scalar_t, typename T>
void fwd_row_output(bool one_hot_out, int64_t K, int64_t kp, int64_t idx, T soft_s, T* E,
                    scalar_t* yr) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  if (one_hot_out) {
    fill_row(yr, K, 0.0);
    yr[idx] = static_cast<scalar_t>(1.0);
  } else {
    const V inv(T(1) / soft_s);
    for (int64_t j = 0; j < kp; j += L) (V::loadu(E + j) * inv).store(E + j);
    store_row<scalar_t, T>(E, K, yr);
  }
}

/// Forward over rows [rb, re) (see ops.py for the outputs):
///   st, reinmax : p = softmax(phi) (stats slot 0),  i = argmax(phi + G)
///   gumbel      : s = softmax((phi + G - m) / tau), m = max(phi + G) (slot 0: m, the sum),
///                 i = argmax(phi + G)
///   redge*      : x_{n-1} = z (cov: mu + sqrt(v) z); for k = n-1..1:
///                   p_k = softmax(l_k) (slot k), l_k = phi + c_k x_k
///                   (cov: phi + c_k lam (x_k - sigma_k mu - alpha_k / 2)),
///                   x_{k-1} = a_k p_k + b_k x_k;   i = argmax(l_1 + G)
///   y = one_hot(i) when hard (always for reinmax, redge_max), else the soft sample.
/// Passes: fwd_row_baseline or fwd_row_chain, then fwd_row_output.
template <typename scalar_t, typename T>
void fwd_rows(const RowArgs& a, int64_t rb, int64_t re) {
  const int64_t K = a.K, kp = padded(K);
  const int n = a.n_steps;
  const bool chain = a.chain(), cov = a.method == kReDGECov;
  const auto* phi = static_cast<const scalar_t*>(a.phi);
  auto* y = static_cast<scalar_t*>(a.y);
  T* stats = a.stats_as<T>();

  // Scratch: ph, E (logits then exp), G, and for the chain x (and mu, lam for cov).
  std::vector<T> own_buf;
  T* const ph_buf = thread_scratch<T>(0, static_cast<size_t>((chain ? (cov ? 6 : 4) : 3) * kp), own_buf);
  FwdRowScratch<T> sc;
  sc.E = ph_buf + kp;
  sc.G = sc.E + kp;
  sc.x = chain ? sc.G + kp : nullptr;
  sc.mu = cov ? sc.x + kp : nullptr;
  sc.lam = cov ? sc.mu + kp : nullptr;
  const bool phi_in_place = row_in_place<scalar_t, T>(a.phi_stride1, K, kp);
  // Float rows sample with the pruned Gumbel-max (stream-1 words kept, G computed where needed).
  constexpr bool kPruned = std::is_same_v<T, float>;
  std::vector<uint32_t> own_r2;
  sc.r2 = kPruned ? thread_scratch<uint32_t>(0, static_cast<size_t>(kp), own_r2) : nullptr;
  const PruneLow prune_low(K);
  // Noise wanted: z for the chain; the raw stream-1 words for pruned sampling, else G.
  const bool bits = kPruned && a.method != kGumbel;
  RowNoise<T> noise(K, a.key0, a.key1, chain, bits, !bits, a.row_start);

  for_rows(a, rb, re, [&](int64_t r, int64_t re) {
    T* st = stats + r * n * 2;
    std::fill(st, st + 2 * n, T(0));
    scalar_t* yr = y + r * K;
    int64_t n_masked = 0;
    const scalar_t* src = phi + r * a.phi_stride0;
    const RowKind kind = load_row<scalar_t, T>(src, a.phi_stride1, K, kp,
                                               phi_in_place ? nullptr : ph_buf, &n_masked);
    sc.ph = phi_in_place ? reinterpret_cast<const T*>(src) : ph_buf;
    if (kind == kPoisonedRow) {
      if (y != nullptr) fill_row(yr, K, std::numeric_limits<double>::quiet_NaN());
      std::fill(st, st + 2 * n, std::numeric_limits<T>::quiet_NaN());
      a.index[r] = -1;
      return;
    }
    if (kind == kEmptyRow) {
      if (y != nullptr) fill_row(yr, K, 0.0);
      a.index[r] = -1;
      return;
    }
    int64_t idx = -1;
    const T soft_s = chain ? fwd_row_chain<T>(a, r, re, kp, noise, prune_low, sc, st, &idx)
                           : fwd_row_baseline<T>(a, r, re, kp, noise, prune_low, sc, st, &idx);
    a.index[r] = idx;
    if (y == nullptr) return;  // write_y false: stats and index only
    fwd_row_output<scalar_t, T>(a.one_hot_out(), K, kp, idx, soft_s, sc.E, yr);
  });
}

// ------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------

/// The per-thread scratch rows of the row backward, kp elements each (P, X: n - 1 rows each).
template <typename T>
struct BwdRowScratch {
  const T* ph = nullptr;  // the row's logits: the scratch copy, or phi itself
  const T* g = nullptr;   // the row's incoming gradient: the scratch copy, or grad_y itself
  T* out = nullptr;       // gphi accumulator: scratch, or the output row itself (out_direct)
  T *E = nullptr, *A = nullptr, *gx = nullptr;
  T* P = nullptr;  // P + (k - 1) kp holds p_k
  T* X = nullptr;  // cov: X + (k - 1) kp holds x_k
  T *mu = nullptr, *lam = nullptr, *z = nullptr, *glam = nullptr, *gmu = nullptr;
};

/// st, gumbel: gphi = p (g - <g, p>) [/ tau]; reinmax: the ReinMax gradient; on one normal row
/// (idx its index, n_masked its count of -inf logits).
template <typename T>
void bwd_row_baseline(const RowArgs& a, int64_t r, int64_t re, int64_t K, int64_t kp, int64_t idx,
                      int64_t n_masked, RowNoise<T>& noise, const T* st,
                      const BwdRowScratch<T>& sc) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  const T* const ph = sc.ph;
  const T* const g = sc.g;
  T* const E = sc.E;
  T* const A = sc.A;
  T* const out = sc.out;
  const V zero(T(0)), tv(static_cast<T>(a.tau));
  if (a.method != kReinMax) {
    const bool gumbel = a.method == kGumbel;
    // p = exp(l - m) / s, l = phi (st); gumbel: p = exp(l) / s, l = gumbel_logit(phi + G, m)
    // (max 0, as the forward's exp_sum(E, 0)); gphi = p (g - <g, p>) [/ tau]
    if (gumbel) noise.get(r, re, nullptr, nullptr, A);
    const V m(st[0]), s(st[1]);
    V d0 = zero, d1 = zero;
    for (int64_t j = 0; j < kp; j += L) {
      const V p = gumbel
                      ? vexp<T>(gumbel_logit(V::loadu(ph + j) + V::loadu(A + j), m, tv) - zero) / s
                      : vexp<T>(V::loadu(ph + j) - m) / s;
      p.store(E + j);
      if ((j / L) % 2 == 0) d0 = d0 + V::loadu(g + j) * p; else d1 = d1 + V::loadu(g + j) * p;
    }
    const V dot(hsum(d0 + d1));
    for (int64_t j = 0; j < kp; j += L) {
      V rj = softmax_bwd(V::loadu(E + j), V::loadu(g + j), dot);
      if (gumbel) rj = rj / tv;
      rj.store(out + j);
    }
    return;
  }
  // softmax(phi / tau) is recomputed (the slot layout of ops.py keeps only slot 0) from the
  // tempered logits reinmax_tempered(phi, m0), m0 = max(phi) (slot 0), whose max is 0.
  const V m0(st[0]), s0(st[1]), two(T(2)), mhalf(T(-0.5));
  for (int64_t j = 0; j < kp; j += L) reinmax_tempered(V::loadu(ph + j), m0, tv).store(E + j);
  const V st_sum(exp_sum<T>(kp, E, T(0)));
  V su = zero, sw = zero;
  for (int64_t j = 0; j < kp; j += L) {
    const V p0 = vexp<T>(V::loadu(ph + j) - m0) / s0;
    const V p1 = reinmax_p1(V::loadu(E + j), st_sum, one_hot_block<T>(j, idx));
    const V gj = V::loadu(g + j);
    su = su + (two * gj) * p1;
    sw = sw + (mhalf * gj) * p0;
    p0.store(A + j);
    p1.store(E + j);
  }
  const V Su(hsum(su)), Sw(hsum(sw)), ninf(neg_inf<T>());
  V tot = zero;
  for (int64_t j = 0; j < kp; j += L) {
    const V gj = V::loadu(g + j), p0 = V::loadu(A + j), p1 = V::loadu(E + j);
    const V gv = V::blendv(zero, reinmax_grad(gj, p0, p1, Su, Sw), V::loadu(ph + j) != ninf);
    gv.store(out + j);
    tot = tot + gv;
  }
  const V mean(hsum(tot) / static_cast<T>(K - n_masked));
  for (int64_t j = 0; j < kp; j += L) {
    V::blendv(zero, V::loadu(out + j) - mean, V::loadu(ph + j) != ninf).store(out + j);
  }
}

/// The per-step scalars of the chain backward of one row, hoisted out of the element loops
/// (locals of the caller: no aliasing with the scratch stores), and the rows of p_k, x_k.
/// kMaxSteps bounds the inline arrays; longer schedules use the heap.
template <typename T>
struct ChainSteps {
  static constexpr int kMaxSteps = 16;
  T cc_s[kMaxSteps], ca_s[kMaxSteps], cb_s[kMaxSteps], sg_s[kMaxSteps], ha_s[kMaxSteps];
  T mm_s[kMaxSteps], is_s[kMaxSteps];
  T* Pp_s[kMaxSteps];
  T* Xp_s[kMaxSteps];
  std::vector<T> cheap;
  std::vector<T*> pheap;
  // c_k, a_k, b_k, sigma_k, alpha_k / 2, m_k, 1 / s_k; the rows p_k, x_k (cov), k = 1..n-1.
  T *cc = cc_s, *ca = ca_s, *cb = cb_s, *sg = sg_s, *ha = ha_s, *mm = mm_s, *is = is_s;
  T **Pp = Pp_s, **Xp = Xp_s;

  ChainSteps(int n, const T* co, const T* st, T* P, T* X, int64_t kp, bool cov) {
    if (n > kMaxSteps) {
      cheap.resize(static_cast<size_t>(7 * n));
      pheap.resize(static_cast<size_t>(2 * n));
      cc = cheap.data(); ca = cc + n; cb = ca + n; sg = cb + n; ha = sg + n; mm = ha + n; is = mm + n;
      Pp = pheap.data(); Xp = Pp + n;
    }
    for (int k = 1; k < n; ++k) {
      cc[k] = co[k * 5 + kCoefC];
      ca[k] = co[k * 5 + kCoefA];
      cb[k] = co[k * 5 + kCoefB];
      sg[k] = co[k * 5 + kCoefSigma];
      ha[k] = T(0.5) * co[k * 5 + kCoefAlpha];
      mm[k] = st[2 * k];
      is[k] = T(1) / st[2 * k + 1];
      Pp[k] = P + (k - 1) * kp;
      Xp[k] = cov ? X + (k - 1) * kp : nullptr;
    }
  }
  ChainSteps(const ChainSteps&) = delete;
  ChainSteps& operator=(const ChainSteps&) = delete;
};

/// Chain backward, pass 1: recompute x_k, p_k (k = n-1..1) in one fused pass from z (zr) and
/// the stats, storing p_k (and x_k for cov); returns the partial sums of <g, p_1>.
template <typename T>
Vectorized<T> bwd_chain_recompute(int n, int64_t kpl, bool covl, const ChainSteps<T>& cs,
                                  const BwdRowScratch<T>& sc, const T* zr) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  // Local copies of the pointers, so that the loops below keep them in registers (vector stores
  // may alias anything: captured references get reloaded).
  const T *const cc = cs.cc, *const ca = cs.ca, *const cb = cs.cb, *const sg = cs.sg,
                 *const ha = cs.ha, *const mm = cs.mm, *const is = cs.is;
  T* const* const Pp = cs.Pp;
  T* const* const Xp = cs.Xp;
  const T* const phr = sc.ph;
  const T* const gr = sc.g;
  const T* const mur = sc.mu;
  const T* const lamr = sc.lam;
  const V vmin(static_cast<T>(kVMin));
  auto logit = [=](int k, int64_t j, const V& xv) {
    if (covl) {
      return cov_logit(V::loadu(phr + j), V(cc[k]), V(sg[k]), V(ha[k]), V::loadu(mur + j),
                       V::loadu(lamr + j), xv);
    }
    return redge_logit(V::loadu(phr + j), V(cc[k]), xv);
  };
  auto x_init = [=](int64_t j) {
    V xv = V::loadu(zr + j);
    if (covl) {
      const V m = V::loadu(mur + j);
      xv = cov_x_init(m, cov_variance(m, vmin), xv);
    }
    return xv;
  };
  // The chain of one column block is a long dependency (n-1 exps); blocks are taken kU at a
  // time so that their chains overlap (same operations per element, same summation order).
  V d0(T(0));
  int64_t j0 = 0;
  constexpr int kU = 8;  // column blocks in flight (8: fastest of 2, 4, 8, 16 here)
  for (; j0 + kU * L <= kpl; j0 += kU * L) {
    V xs[kU], ps[kU];
    for (int u = 0; u < kU; ++u) xs[u] = x_init(j0 + u * L);
    for (int k = n - 1; k >= 1; --k) {
      const V mk(mm[k]), ik(is[k]);
      for (int u = 0; u < kU; ++u) ps[u] = logit(k, j0 + u * L, xs[u]) - mk;
      vexp_x<T, kU>(ps);
      for (int u = 0; u < kU; ++u) ps[u] = softmax_prob(ps[u], ik);
      for (int u = 0; u < kU; ++u) ps[u].store(Pp[k] + j0 + u * L);
      if (covl) {
        for (int u = 0; u < kU; ++u) xs[u].store(Xp[k] + j0 + u * L);
      }
      if (k > 1) {
        const V ak(ca[k]), bk(cb[k]);
        for (int u = 0; u < kU; ++u) xs[u] = ddim_step(ak, ps[u], bk, xs[u]);
      }
    }
    for (int u = 0; u < kU; ++u) d0 = d0 + V::loadu(gr + j0 + u * L) * ps[u];
  }
  for (int64_t j = j0; j < kpl; j += L) {
    V xv = x_init(j);
    V p;
    for (int k = n - 1; k >= 1; --k) {
      p = softmax_prob(vexp<T>(logit(k, j, xv) - V(mm[k])), V(is[k]));
      p.store(Pp[k] + j);
      if (covl) xv.store(Xp[k] + j);
      if (k > 1) xv = ddim_step(V(ca[k]), p, V(cb[k]), xv);
    }
    d0 = d0 + V::loadu(gr + j) * p;
  }
  return d0;
}

/// Chain backward, the gradient passes: step 1 r = p_1 (g - <g, p_1>) (dot = <g, p_1>,
/// gD = <g, D> for redge_max), gphi = r (redge_max: 1/2 (r + <g, D> D)), gx = c_1 r (cov: glam,
/// gmu start); then steps k = 2 .. n-1.
template <typename T>
void bwd_chain_grad(int n, int64_t kpl, bool covl, bool is_max, int64_t idx, T dot, T gD,
                  const ChainSteps<T>& cs, const BwdRowScratch<T>& sc) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  const T* const gr = sc.g;
  const T* const mur = sc.mu;
  const T* const lamr = sc.lam;
  T* const outr = sc.out;
  T* const gxr = sc.gx;
  T* const glam = sc.glam;
  T* const gmu = sc.gmu;
  // ---- step 1
  const V dv1(dot), c1(cs.cc[1]), gDv(gD);
  const StepCoefs<V> s1{c1, V(cs.ca[1]), V(cs.cb[1]), V(cs.sg[1]), V(cs.ha[1])};
  const T* const p1 = cs.Pp[1];
  const T* const x1 = cs.Xp[1];
  const T* const p2 = n > 2 ? cs.Pp[2] : nullptr;
  const V a2(n > 2 ? cs.ca[2] : T(0));
  V dn(T(0));
  for (int64_t j = 0; j < kpl; j += L) {
    const V p = V::loadu(p1 + j);
    const V rv = softmax_bwd(p, V::loadu(gr + j), dv1);
    if (is_max) {
      redge_max_step1(rv, gDv, one_hot_block<T>(j, idx), p).store(outr + j);
    } else {
      rv.store(outr + j);
    }
    const V lv = covl ? V::loadu(lamr + j) : V(T(0));
    const V gxv = chain_gx1(covl, c1, lv, rv);
    if (covl) {
      const V mj = V::loadu(mur + j);
      cov_glam_term(s1, rv, V::loadu(x1 + j), mj).store(glam + j);
      cov_gmu_term(s1, lv, rv).store(gmu + j);
    }
    gxv.store(gxr + j);
    if (p2) dn = dn + (a2 * gxv) * V::loadu(p2 + j);
  }
  dot = hsum(dn);
  // ---- steps k = 2 .. n-1: gp = a_k gx; r = p_k (gp - <gp, p_k>); gphi += r;
  //      gx = c_k r + b_k gx (cov: c_k lam r, and the lam / mu accumulators)
  for (int k = 2; k <= n - 1; ++k) {
    const V dv(dot), ak(cs.ca[k]), bk(cs.cb[k]), ck(cs.cc[k]);
    const bool has_next = k + 1 <= n - 1;
    const T* const pk = cs.Pp[k];
    const T* const pn = has_next ? cs.Pp[k + 1] : nullptr;
    const V an(has_next ? cs.ca[k + 1] : T(0));
    V dn(T(0));
    if (!covl) {
      if (has_next) {
        for (int64_t j = 0; j < kpl; j += L) {
          const V gxo = V::loadu(gxr + j);
          const V rv = softmax_bwd(V::loadu(pk + j), ak * gxo, dv);
          (V::loadu(outr + j) + rv).store(outr + j);
          const V gxv = chain_gx(false, ck, V(T(0)), rv, bk, gxo);
          gxv.store(gxr + j);
          dn = dn + (an * gxv) * V::loadu(pn + j);
        }
      } else {  // last step: gx is not needed any more
        for (int64_t j = 0; j < kpl; j += L) {
          const V gxo = V::loadu(gxr + j);
          const V rv = softmax_bwd(V::loadu(pk + j), ak * gxo, dv);
          (V::loadu(outr + j) + rv).store(outr + j);
        }
      }
      dot = hsum(dn);
      continue;
    }
    const T* const xk = cs.Xp[k];
    const StepCoefs<V> s{ck, ak, bk, V(cs.sg[k]), V(cs.ha[k])};
    for (int64_t j = 0; j < kpl; j += L) {
      const V gxo = V::loadu(gxr + j);
      const V rv = softmax_bwd(V::loadu(pk + j), ak * gxo, dv);
      (V::loadu(outr + j) + rv).store(outr + j);
      const V lv = V::loadu(lamr + j);
      const V gxv = chain_gx(true, ck, lv, rv, bk, gxo);
      const V mj = V::loadu(mur + j);
      (V::loadu(glam + j) + cov_glam_term(s, rv, V::loadu(xk + j), mj)).store(glam + j);
      (V::loadu(gmu + j) + cov_gmu_term(s, lv, rv)).store(gmu + j);
      gxv.store(gxr + j);
      if (has_next) dn = dn + (an * gxv) * V::loadu(pn + j);
    }
    dot = hsum(dn);
  }
}

/// The DDIM chain (redge, redge_cov, redge_max) on one normal row r (idx its index): the passes
/// bwd_chain_recompute, bwd_chain_grad, then for cov the paths through
/// mu = p and v = max(p (1 - p), V_MIN).
template <typename T>
void bwd_row_chain(const RowArgs& a, int64_t r, int64_t re, int64_t kp, int64_t idx,
                   RowNoise<T>& noise, const T* st, const BwdRowScratch<T>& sc) {
  using V = Vectorized<T>;
  constexpr int L = V::size();
  const int n = a.n_steps;
  const bool covl = a.method == kReDGECov;
  const V one(T(1)), vmin(static_cast<T>(kVMin));
  T* const zbuf = covl ? sc.z : sc.gx;  // gx is free until the gradient passes
  // (Drawing z inside the chain loop instead, in registers, was measured ~8% slower: register
  // pressure of Philox + the chain.)
  noise.get(r, re, zbuf, nullptr, nullptr);
  if (covl) {
    const T* const ph = sc.ph;
    const V m0(st[0]), s0(st[1]);
    for (int64_t j = 0; j < kp; j += L) {
      const V m = vexp<T>(V::loadu(ph + j) - m0) / s0;
      const V v = cov_variance(m, vmin);
      m.store(sc.mu + j);
      (one / v).store(sc.lam + j);
    }
  }
  const ChainSteps<T> cs(n, a.coefs_as<T>(), st, sc.P, sc.X, kp, covl);
  const T dot = hsum(bwd_chain_recompute<T>(n, kp, covl, cs, sc, zbuf));
  const T gD = (idx >= 0 ? sc.g[idx] : T(0)) - dot;  // <g, D>, D = one_hot(i) - p_1 (redge_max)
  bwd_chain_grad<T>(n, kp, covl, a.method == kReDGEMax, idx, dot, gD, cs, sc);
  if (covl) {
    // x_{n-1} = mu + sqrt(v) z; v = max(q, V_MIN), q = p (1 - p); lam = 1 / v; mu = p.
    const V dv(hsum(cov_base_grad_pass<V>(kp, sc.mu, sc.lam, sc.gx, sc.z, sc.glam, sc.gmu, vmin)));
    softmax_bwd_add_pass<V>(kp, sc.mu, sc.gmu, dv, sc.out);
  }
}

/// Backward over rows [rb, re): grad_phi from grad_y, regenerating the noise from the seed and
/// every softmax from the saved stats (p = exp(l - m) / s; no reductions but the dot products).
///   st      : gphi = p (g - <g, p>)
///   gumbel  : gphi = s (g - <g, s>) / tau, s = exp((phi + G - m) / tau) / sum (slot 0: m, sum)
///   reinmax : p1 = (softmax(phi / tau) + D) / 2 (phi shifted by max(phi) before / tau);
///             u = 2 g p1, u -= p1 sum(u); w = -g/2 p0, w -= p0 sum(w); gphi = u + w centred
///             over the unmasked entries (masked: 0)
///   redge   : r = p_1 (g - <g, p_1>); gphi = r; gx = c_1 r;  k = 2..n-1: gp = a_k gx,
///             r = p_k (gp - <gp, p_k>), gphi += r, gx = c_k r + b_k gx
///   redge_max: as redge, but step 1 adds 1/2 (r + <g, D> D), D = one_hot(i) - p_1, to gphi
///   redge_cov: as redge with c_k lam in place of c_k, plus the paths through mu = p and
///             v = max(p (1 - p), V_MIN): glam += c_k r (x_k - sigma_k mu - alpha_k/2),
///             gmu -= c_k sigma_k lam r;  at x_{n-1} = mu + sqrt(v) z: gmu += gx,
///             gv = gx z / (2 sqrt v) - glam lam^2, gq = gv [p (1-p) >= V_MIN],
///             gp0 = gmu + gq (1 - 2 p);  gphi += p (gp0 - <gp0, p>).
/// Passes: bwd_row_baseline or bwd_row_chain.
template <typename scalar_t, typename T>
void bwd_rows(const RowArgs& a, int64_t rb, int64_t re) {
  const int64_t K = a.K, kp = padded(K);
  const int n = a.n_steps, method = a.method;
  const bool chain = a.chain(), cov = method == kReDGECov;
  const auto* phi = static_cast<const scalar_t*>(a.phi);
  const auto* gy = static_cast<const scalar_t*>(a.grad_y);
  auto* gphi_out = static_cast<scalar_t*>(a.grad_phi);
  const T* stats = a.stats_as<T>();

  // Scratch: ph, g, out, E, A; for the chain gx and P[1..n-1]; for cov also X[1..n-1], mu, lam,
  // z, glam, gmu.
  const int64_t n_arrays = 5 + (chain ? n : 0) + (cov ? (n - 1) + 5 : 0);
  std::vector<T> own_buf;
  T* const ph_buf = thread_scratch<T>(0, static_cast<size_t>(n_arrays * kp), own_buf);
  T* const g_buf = ph_buf + kp;
  T* const out_buf = g_buf + kp;
  BwdRowScratch<T> sc;
  sc.E = out_buf + kp;
  sc.A = sc.E + kp;
  sc.gx = sc.A + kp;
  sc.P = sc.gx + kp;
  sc.X = sc.P + (n - 1) * kp;
  sc.mu = sc.X + (n - 1) * kp;
  sc.lam = sc.mu + kp;
  sc.z = sc.lam + kp;
  sc.glam = sc.z + kp;
  sc.gmu = sc.glam + kp;
  // A float / double output row with K == kp is written in place (no scratch and final copy).
  const bool out_direct = std::is_same_v<scalar_t, T> && K == kp;
  const bool phi_in_place = row_in_place<scalar_t, T>(a.phi_stride1, K, kp);
  const bool g_in_place = row_in_place<scalar_t, T>(a.grad_stride1, K, kp);
  // Noise: G for gumbel, z for the chain.
  RowNoise<T> noise(K, a.key0, a.key1, chain, false, method == kGumbel, a.row_start);

  for_rows(a, rb, re, [&](int64_t r, int64_t re) {
    scalar_t* outr = gphi_out + r * K;
    sc.out = out_direct ? reinterpret_cast<T*>(outr) : out_buf;
    const T* st = stats + r * n * 2;
    int64_t n_masked = 0;
    const scalar_t* src = phi + r * a.phi_stride0;
    const int64_t idx = a.index[r];
    // The forward sampled an index (>= 0) exactly for the normal rows (empty and poisoned rows
    // get -1), so a row read in place needs no check pass then (ReinMax also needs the count of
    // masked entries).
    const bool known_normal = phi_in_place && idx >= 0 && method != kReinMax;
    const RowKind kind = known_normal
                             ? kNormalRow
                             : load_row<scalar_t, T>(src, a.phi_stride1, K, kp,
                                                     phi_in_place ? nullptr : ph_buf, &n_masked);
    sc.ph = phi_in_place ? reinterpret_cast<const T*>(src) : ph_buf;
    if (kind == kPoisonedRow) {
      fill_row(outr, K, std::numeric_limits<double>::quiet_NaN());
      return;
    }
    if (kind == kEmptyRow) {
      fill_row(outr, K, 0.0);
      return;
    }
    if (g_in_place) {
      sc.g = reinterpret_cast<const T*>(gy + r * a.grad_stride0);
    } else {
      load_plain<scalar_t, T>(gy + r * a.grad_stride0, a.grad_stride1, K, kp, g_buf);
      sc.g = g_buf;
    }
    if (chain) {
      bwd_row_chain<T>(a, r, re, kp, idx, noise, st, sc);
    } else {
      bwd_row_baseline<T>(a, r, re, K, kp, idx, n_masked, noise, st, sc);
    }
    if (!out_direct) store_row<scalar_t, T>(sc.out, K, outr);
  });
}

inline const KernelTable& table(const char* name) {
  static const KernelTable t = {
      {&fwd_rows<float, float>, &fwd_rows<double, double>, &fwd_rows<c10::BFloat16, float>,
       &fwd_rows<c10::Half, float>},
      {&bwd_rows<float, float>, &bwd_rows<double, double>, &bwd_rows<c10::BFloat16, float>,
       &bwd_rows<c10::Half, float>},
      &noise_rows,
      name};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace redge_kernels
