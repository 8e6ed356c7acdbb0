// "Lanes are rows" CPU kernels of every estimator for small vocabularies K (docs/SPEC.md: "ReDGE",
// "ReDGE-Cov", "ReDGE-Max", "Baselines", "Randomness", "Masked vocabulary and numerics").
//
// At small K the per-row kernels (row_kernels_impl.h) spend most of their time in per-row
// overhead: a serial chain of tiny passes over one padded vector, each ending in a horizontal
// reduction. Here one lane vector V = Lanes<T, kLaneParts> (kLaneParts Vectorized<T> side by side:
// 16 floats / 8 doubles on AVX2) holds the SAME column j of L = V::size() consecutive rows: a
// block of L rows is gathered transposed into per-thread scratch laid out [K][L], every loop runs
// over the K columns, and every row reduction (max, sum, dot product, argmax) is an elementwise
// operation carried across the column loop; no horizontal reductions, no padding of K.
// Lanes never interact, so a row's result depends only on its own logits, its counters
// ((col >> 2, row, stream), docs/SPEC.md "Randomness") and the scalars: not on R, on the block it
// falls in, or on the thread count. The per-element math is that of fwd_rows / bwd_rows, the same
// functions of estimator_math.h (same noise, same vexp); only the order of the row sums differs:
// column by column here, so the lane kernels are meant for small K only (ops_cpu.cpp lane_max_k).
//
// Special rows are handled per lane: an empty (all -inf) or poisoned (NaN / +inf) row, and the
// dummy lanes that pad the last block, are replaced by logits 0 for the computation; their outputs
// are then written as the row kernels write them (zeros / NaN, index -1), or discarded.
//
// Include after row_kernels_impl.h (it reuses the noise generator, vexp, padded, neg_inf, kVMin, table()).
#pragma once

#include "row_kernels_impl.h"

namespace redge_kernels {
namespace CPU_CAPABILITY {

/// Runs body(r0, nv, range_end) over the blocks of L rows of this task: [rb, re) cut at rb + a
/// multiple of L, or blocks of rows grabbed from the launcher's shared counter (RowArgs::next_row;
/// the launcher makes row_block a multiple of L). nv < L only for the last block of a range.
template <int L, typename F>
void for_blocks(const RowArgs& a, int64_t rb, int64_t re, F body) {
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r += L) body(r, std::min<int64_t>(L, e - r), e);
  };
  if (a.next_row == nullptr) {
    run(rb, re);
    return;
  }
  for (;;) {
    const int64_t b = a.next_row->fetch_add(a.row_block, std::memory_order_relaxed);
    if (b >= a.rows) return;
    run(b, std::min(b + a.row_block, a.rows));
  }
}

using at::vec::int_same_size_t;

/// NV Vectorized<T> side by side, used as one vector of NV * Vectorized<T>::size() lanes: every
/// operation applies to the NV parts independently, so a block of rows carries NV independent
/// dependency chains (instruction-level parallelism where K is too small to provide it).
template <typename T, int NV>
struct Lanes {
  using Vec = Vectorized<T>;
  using I = int_same_size_t<T>;
  using value_type = T;
  static constexpr int kVL = Vec::size();
  static_assert(Vectorized<I>::size() == kVL, "index vectors must match the value vectors");
  static constexpr int size() { return NV * kVL; }
  Vec v[NV];

  Lanes() = default;
  Lanes(T x) {  // NOLINT: broadcast, like Vectorized<T>(x)
    for (int i = 0; i < NV; ++i) v[i] = Vec(x);
  }
  static Lanes loadu(const T* p) {
    Lanes r;
    for (int i = 0; i < NV; ++i) r.v[i] = Vec::loadu(p + i * kVL);
    return r;
  }
  void store(T* p) const {
    for (int i = 0; i < NV; ++i) v[i].store(p + i * kVL);
  }
  static Lanes blendv(const Lanes& a, const Lanes& b, const Lanes& mask) {
    Lanes r;
    for (int i = 0; i < NV; ++i) r.v[i] = Vec::blendv(a.v[i], b.v[i], mask.v[i]);
    return r;
  }
  Lanes sqrt() const {
    Lanes r;
    for (int i = 0; i < NV; ++i) r.v[i] = v[i].sqrt();
    return r;
  }
  Lanes neg() const {
    Lanes r;
    for (int i = 0; i < NV; ++i) r.v[i] = v[i].neg();
    return r;
  }
  /// Bit i set where lane i is 0.
  int zero_mask() const {
    int m = 0;
    for (int i = 0; i < NV; ++i) m |= v[i].zero_mask() << (i * kVL);
    return m;
  }

  /// Element offsets of the lanes, for gather().
  struct Index {
    Vectorized<I> v[NV];
  };
  /// The offsets i * stride for lanes i < nv, 0 for the dummy lanes (which then read lane 0's
  /// element: valid memory, discarded later).
  static Index offsets(int64_t stride, int64_t nv) {
    if (nv == size()) {  // whole block: i * stride (no store-to-load round trip)
      Index r;
      for (int i = 0; i < NV; ++i) {
        r.v[i] = Vectorized<I>::arange(static_cast<I>(i * kVL * stride), static_cast<I>(stride));
      }
      return r;
    }
    alignas(64) I o[NV * kVL];
    for (int i = 0; i < NV * kVL; ++i) o[i] = static_cast<I>(i < nv ? i * stride : 0);
    Index r;
    for (int i = 0; i < NV; ++i) r.v[i] = Vectorized<I>::loadu(o + i * kVL);
    return r;
  }
  /// Whether lane offsets up to (size() - 1) * stride fit the index type.
  static bool offsets_fit(int64_t stride) {
    return stride >= 0 &&
           stride * (size() - 1) <= static_cast<int64_t>(std::numeric_limits<I>::max());
  }
  /// Lane i = base[off[i]] (AVX2: gather instructions).
  static Lanes gather(const T* base, const Index& off) {
    Lanes r;
    for (int i = 0; i < NV; ++i) r.v[i] = at::vec::gather<sizeof(T)>(base, off.v[i]);
    return r;
  }
};

#define REDGE_LANES_BINARY(op)                                                   \
  template <typename T, int NV>                                                  \
  inline Lanes<T, NV> operator op(const Lanes<T, NV>& a, const Lanes<T, NV>& b) { \
    Lanes<T, NV> r;                                                              \
    for (int i = 0; i < NV; ++i) r.v[i] = a.v[i] op b.v[i];                      \
    return r;                                                                    \
  }
REDGE_LANES_BINARY(+)
REDGE_LANES_BINARY(-)
REDGE_LANES_BINARY(*)
REDGE_LANES_BINARY(/)
REDGE_LANES_BINARY(&)
REDGE_LANES_BINARY(==)
REDGE_LANES_BINARY(!=)
REDGE_LANES_BINARY(<)
REDGE_LANES_BINARY(>)
REDGE_LANES_BINARY(>=)
#undef REDGE_LANES_BINARY

template <typename T, int NV>
inline Lanes<T, NV> vmax(const Lanes<T, NV>& a, const Lanes<T, NV>& b) {
  Lanes<T, NV> r;
  for (int i = 0; i < NV; ++i) r.v[i] = at::vec::maximum(a.v[i], b.v[i]);
  return r;
}

/// vexp (row_kernels_impl.h) on every part.
template <typename T, int NV>
inline Lanes<T, NV> lexp(const Lanes<T, NV>& x) {
  Lanes<T, NV> r;
  for (int i = 0; i < NV; ++i) r.v[i] = vexp<T>(x.v[i]);
  return r;
}

/// Column j of the rows r0 .. r0 + nv - 1 as one vector (lanes i >= nv: row r0 again), read
/// from src = base + j * stride1 with the rows stride0 apart; `off` = V::offsets(stride0, nv)
/// when `gather` (scalar_t == T and the offsets fit), else unused.
template <typename V, typename scalar_t>
inline V load_col(const scalar_t* src, int64_t stride0, int64_t nv, bool gather,
                  const typename V::Index& off) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  if constexpr (std::is_same_v<scalar_t, T>) {
    if (gather) return V::gather(src, off);
  }
  alignas(64) T t[L];
  for (int64_t i = 0; i < L; ++i) t[i] = static_cast<T>(src[(i < nv ? i : 0) * stride0]);
  return V::loadu(t);
}

/// Gathers the nv rows phi[r0 + i, :] (any strides, any dtype) transposed into dst[j * L + i]
/// as acc_t. kind[i] receives the row kind (dummy lanes i >= nv count as empty); the lanes of
/// rows that are not normal get logits 0, so that every lane computes finite values.
template <typename V, typename scalar_t, typename T>
void load_block(const scalar_t* phi, int64_t s0, int64_t s1, int64_t K, int64_t r0, int64_t nv,
                T* dst, RowKind* kind) {
  constexpr int L = V::size();
  const bool gather = std::is_same_v<scalar_t, T> && V::offsets_fit(s0);
  const auto off = V::offsets(gather ? s0 : 0, nv);
  const scalar_t* base = phi + r0 * s0;
  const V vinf(std::numeric_limits<T>::infinity()), vninf(neg_inf<T>()), one(T(1)), zero(T(0));
  V ok = zero == zero, ninf = zero;  // per lane: all entries < +inf; count of -inf entries
  for (int64_t j = 0; j < K; ++j) {
    const V v = load_col<V, scalar_t>(base + j * s1, s0, nv, gather, off);
    v.store(dst + j * L);
    ok = ok & (v < vinf);  // false for NaN or +inf
    ninf = ninf + V::blendv(zero, one, v == vninf);
  }
  // zero_mask: bit i set where lane i is 0 (for `ok`: where the lane holds a NaN or +inf).
  const int bad_bits = ok.zero_mask();
  const int empty_bits = (ninf - V(static_cast<T>(K))).zero_mask();  // all K entries -inf
  bool all_normal = nv == L;
  for (int i = 0; i < L; ++i) {
    if (i >= nv) {
      kind[i] = kEmptyRow;
    } else if ((bad_bits >> i) & 1) {
      kind[i] = kPoisonedRow;
      all_normal = false;
    } else if ((empty_bits >> i) & 1) {
      kind[i] = kEmptyRow;
      all_normal = false;
    } else {
      kind[i] = kNormalRow;
    }
  }
  if (all_normal) return;
  alignas(64) T keep[L];
  for (int i = 0; i < L; ++i) {
    keep[i] = kind[i] == kNormalRow ? T(1) : T(0);
  }
  const V keep_mask = V::loadu(keep) == one;
  for (int64_t j = 0; j < K; ++j) {
    V::blendv(zero, V::loadu(dst + j * L), keep_mask).store(dst + j * L);
  }
}

/// Gathers grad_y rows transposed like load_block (dummy lanes: a copy of lane 0).
template <typename V, typename scalar_t, typename T>
void load_block_plain(const scalar_t* src0, int64_t s0, int64_t s1, int64_t K, int64_t r0,
                      int64_t nv, T* dst) {
  constexpr int L = V::size();
  const bool gather = std::is_same_v<scalar_t, T> && V::offsets_fit(s0);
  const auto off = V::offsets(gather ? s0 : 0, nv);
  const scalar_t* base = src0 + r0 * s0;
  for (int64_t j = 0; j < K; ++j) {
    load_col<V, scalar_t>(base + j * s1, s0, nv, gather, off).store(dst + j * L);
  }
}

/// Writes the [K][L] block `src` to the contiguous rows dst[(r0 + i) * K + j], i < nv; empty rows
/// get zeros, poisoned rows NaN (row kernels' conventions).
template <int L, typename scalar_t, typename T>
void store_block(const T* src, int64_t K, int64_t r0, int64_t nv, const RowKind* kind,
                 scalar_t* dst) {
  for (int64_t i = 0; i < nv; ++i) {
    scalar_t* row = dst + (r0 + i) * K;
    if (kind[i] == kPoisonedRow) {
      fill_row(row, K, std::numeric_limits<double>::quiet_NaN());
    } else if (kind[i] == kEmptyRow) {
      fill_row(row, K, 0.0);
    } else {
      for (int64_t j = 0; j < K; ++j) row[j] = static_cast<scalar_t>(src[j * L + i]);
    }
  }
}

/// The noise of a block of L rows in the [K][L] layout: z (stream 0) and / or G (stream 1). One
/// Philox vector holds the call of column group j (columns 4j .. 4j+3) for 8 consecutive rows,
/// so its word q is column 4j + q of those rows as it is stored: no transposition. The vectors of
/// a block (ceil(K / 4) groups times L / 8 row octets) run kNoiseBlocks at a time.
template <typename V, typename T>
struct BlockNoise {
  static constexpr int L = V::size();
  static_assert(L % kNoiseLanes == 0, "a block holds whole octets of rows");
  int64_t K;
  PhiloxKeys keys;
  bool want_z, want_g;
  int64_t row0;  // global row of local row 0 (RowArgs::row_start)

  BlockNoise(int64_t K_, uint32_t k0, uint32_t k1, bool z, bool g, int64_t row0_ = 0)
      : K(K_), keys(k0, k1), want_z(z), want_g(g), row0(row0_) {}

  /// Counters of vector v of the block of local rows r0.. in `stream`: v = group * (L / 8) + octet.
  /// The row words hold the global row row0 + r (docs/SPEC.md "Randomness").
  void counters(int64_t r0, int64_t v, uint32_t stream, Ctr8& c) const {
    const int64_t group = v / (L / kNoiseLanes), octet = v % (L / kNoiseLanes);
    for (int i = 0; i < kNoiseLanes; ++i) {
      const uint64_t row = static_cast<uint64_t>(row0 + r0 + octet * kNoiseLanes + i);
      c.c[0][i] = static_cast<uint32_t>(group);
      c.c[1][i] = static_cast<uint32_t>(row);
      c.c[2][i] = static_cast<uint32_t>(row >> 32);
      c.c[3][i] = stream;
    }
  }

  /// Stores the 4 column vectors of vector v (lanes = 8 rows) into dst[K][L].
  void put(int64_t v, const VecF* cols, T* dst) const {
    const int64_t group = v / (L / kNoiseLanes), octet = v % (L / kNoiseLanes);
    for (int q = 0; q < 4; ++q) {
      const int64_t j = 4 * group + q;
      if (j < K) store8(cols[q], dst + j * L + octet * kNoiseLanes);
    }
  }

  /// NB vectors starting at v0 of stream `stream` into dst.
  template <int NB>
  void run(int64_t r0, int64_t v0, uint32_t stream, T* dst) const {
    Ctr8 c[NB];
    Words8 w[NB];
    for (int b = 0; b < NB; ++b) counters(r0, v0 + b, stream, c[b]);
    philox_lanes8x<NB>(c, keys, w);
    VecF cols[NB][4];
    if (stream == kStreamNormal) {
      normal4x<NB>(w, cols);
    } else {
      const uint32_t* ws[4 * NB];
      for (int b = 0; b < NB; ++b) {
        for (int q = 0; q < 4; ++q) ws[4 * b + q] = w[b].w[q];
      }
      gumbel8x<4 * NB>(ws, &cols[0][0]);
    }
    for (int b = 0; b < NB; ++b) put(v0 + b, cols[b], dst);
  }

  void stream_into(int64_t r0, uint32_t stream, T* dst) const {
    const int64_t n = (K + 3) / 4 * (L / kNoiseLanes);
    int64_t v = 0;
    for (; v + kNoiseBlocks <= n; v += kNoiseBlocks) run<kNoiseBlocks>(r0, v, stream, dst);
    switch (n - v) {
      case 3: run<3>(r0, v, stream, dst); break;
      case 2: run<2>(r0, v, stream, dst); break;
      case 1: run<1>(r0, v, stream, dst); break;
      default: break;
    }
  }

  /// Noise of rows r0 .. r0 + L - 1 (re, the end of the caller's row range, is not needed: the
  /// noise of the dummy rows past it is computed and discarded).
  void get(int64_t r0, int64_t /*re*/, T* z, T* g) const {
    if (want_z) stream_into(r0, kStreamNormal, z);
    if (want_g) stream_into(r0, kStreamGumbel, g);
  }
};

/// Writes the pairs (m[i], s[i]) of lanes i < nv to dst + i * row_stride (a stats slot of
/// consecutive rows). Float: the pairs are interleaved in registers and stored 8 bytes at a time.
template <typename T, int NV>
void store_pairs(const Lanes<T, NV>& m, const Lanes<T, NV>& s, T* dst, int64_t row_stride,
                 int64_t nv) {
  constexpr int VL = Lanes<T, NV>::kVL;
  if constexpr (std::is_same_v<T, float> && VL == 8) {
    for (int p = 0; p < NV; ++p) {
      alignas(32) uint64_t w[8];
      interleave_pairs8(m.v[p], s.v[p], w);
      for (int q = 0; q < VL; ++q) {
        const int64_t i = p * VL + q;
        if (i >= nv) return;
        std::memcpy(dst + i * row_stride, w + q, sizeof(uint64_t));
      }
    }
    return;
  }
  alignas(64) T tm[NV * VL], ts[NV * VL];
  m.store(tm);
  s.store(ts);
  for (int64_t i = 0; i < nv; ++i) {
    dst[i * row_stride] = tm[i];
    dst[i * row_stride + 1] = ts[i];
  }
}

/// The inverse of store_pairs: m[i], s[i] = src[i * row_stride], src[i * row_stride + 1] for
/// lanes i < nv (lanes i >= nv: lane 0's pair).
template <typename T, int NV>
void load_pairs(const T* src, int64_t row_stride, int64_t nv, Lanes<T, NV>& m, Lanes<T, NV>& s) {
  constexpr int VL = Lanes<T, NV>::kVL;
  if constexpr (std::is_same_v<T, float> && VL == 8) {
    for (int p = 0; p < NV; ++p) {
      uint64_t u[8];
      for (int q = 0; q < VL; ++q) {
        const int64_t i = p * VL + q;
        std::memcpy(u + q, src + (i < nv ? i : 0) * row_stride, sizeof(uint64_t));
      }
      deinterleave_pairs8(u, m.v[p], s.v[p]);
    }
    return;
  }
  alignas(64) T tm[NV * VL], ts[NV * VL];
  for (int64_t i = 0; i < NV * VL; ++i) {
    const T* r = src + (i < nv ? i : 0) * row_stride;
    tm[i] = r[0];
    ts[i] = r[1];
  }
  m = Lanes<T, NV>::loadu(tm);
  s = Lanes<T, NV>::loadu(ts);
}

/// The per-lane running argmax of fwd_lanes: strict > over increasing j (the first maximum on
/// ties, as the row kernels). A local of each pass (kept in registers).
template <typename V>
struct LaneArgmax {
  using T = typename V::value_type;
  V best = V(neg_inf<T>()), idx = V(T(-1));
  void step(int64_t j, const V& score) {
    const V gt = score > best;
    best = V::blendv(best, score, gt);
    idx = V::blendv(idx, V(static_cast<T>(j)), gt);
  }
};

/// The scratch of fwd_lanes ([K][L] arrays; x, mu, lam: the chain) and the block's stats rows.
template <typename V>
struct LaneFwdBlock {
  using T = typename V::value_type;
  static constexpr int L = V::size();
  const T* ph = nullptr;
  T *E = nullptr, *G = nullptr, *x = nullptr, *mu = nullptr, *lam = nullptr;
  T* st_rows = nullptr;  // stats of the block's rows (contiguous)
  int n = 2;
  int64_t nv = L;

  void put_stats(int k, const V& m, const V& s) const {
    store_pairs(m, s, st_rows + 2 * k, 2 * n, nv);
  }
};

/// st, gumbel, reinmax on a block: slot 0 and the sampled index (*idx); returns the soft output's
/// sums.
template <typename V>
V fwd_lanes_baseline(bool gumbel, int64_t K, const V& tau, const LaneFwdBlock<V>& b, V* idx) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const T* const ph = b.ph;
  const T* const G = b.G;
  T* const E = b.E;
  // l = phi (st, reinmax); gumbel: the scores phi + G first, then gumbel_logit (max 0).
  V m(neg_inf<T>());
  for (int64_t j = 0; j < K; ++j) {
    const V l = gumbel ? V::loadu(ph + j * L) + V::loadu(G + j * L) : V::loadu(ph + j * L);
    l.store(E + j * L);
    m = vmax(m, l);
  }
  const V zero(T(0));
  V s(T(0));
  LaneArgmax<V> am;
  for (int64_t j = 0; j < K; ++j) {
    const V e = gumbel ? lexp(gumbel_logit(V::loadu(E + j * L), m, tau) - zero)
                       : lexp(V::loadu(E + j * L) - m);
    e.store(E + j * L);
    s = s + e;
    am.step(j, V::loadu(ph + j * L) + V::loadu(G + j * L));
  }
  b.put_stats(0, m, s);
  *idx = am.idx;
  return s;
}

/// The DDIM chain on a block: slots 0 (cov), 1..n-1 and the sampled index (*idx); returns the
/// sums s_1.
template <typename V>
V fwd_lanes_chain(const RowArgs& a, int64_t K, const LaneFwdBlock<V>& b, V* idx) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const int n = a.n_steps;
  const bool cov = a.method == kReDGECov;
  const T* co = a.coefs_as<T>();
  const T* const ph = b.ph;
  T* const E = b.E;
  T* const x = b.x;
  T* const mu = b.mu;
  T* const lam = b.lam;
  if (cov) {
    // p = softmax(phi) (slot 0); mu = p, v = max(p (1 - p), V_MIN), lam = 1 / v,
    // x = mu + sqrt(v) z
    V m0(neg_inf<T>());
    for (int64_t j = 0; j < K; ++j) m0 = vmax(m0, V::loadu(ph + j * L));
    V s0(T(0));
    for (int64_t j = 0; j < K; ++j) {
      const V e = lexp(V::loadu(ph + j * L) - m0);
      e.store(E + j * L);
      s0 = s0 + e;
    }
    b.put_stats(0, m0, s0);
    const V one(T(1)), vmin(static_cast<T>(kVMin));
    for (int64_t j = 0; j < K; ++j) {
      const V p = V::loadu(E + j * L) / s0;
      const V v = cov_variance(p, vmin);
      p.store(mu + j * L);
      (one / v).store(lam + j * L);
      cov_x_init(p, v, V::loadu(x + j * L)).store(x + j * L);
    }
  }
  auto logit = [&](int k, int64_t j) {  // l_k of column j (x holds x_k)
    const StepCoefs<V> sk = step_coefs<V>(co, k);
    const V muj = cov ? V::loadu(mu + j * L) : V(T(0)), lamj = cov ? V::loadu(lam + j * L) : V(T(0));
    return chain_logit(cov, V::loadu(ph + j * L), sk, muj, lamj, V::loadu(x + j * L));
  };
  V m(neg_inf<T>());
  for (int64_t j = 0; j < K; ++j) {
    const V l = logit(n - 1, j);
    l.store(E + j * L);
    m = vmax(m, l);
  }
  V soft_s(T(1));
  for (int k = n - 1; k >= 1; --k) {
    V s(T(0));
    for (int64_t j = 0; j < K; ++j) {
      const V e = lexp(V::loadu(E + j * L) - m);
      e.store(E + j * L);
      s = s + e;
    }
    b.put_stats(k, m, s);
    soft_s = s;
    if (k == 1) break;
    // x_{k-1} = a_k p_k + b_k x_k, then the logits of step k-1 and their max.
    const V inv(V(T(1)) / s), ak(co[k * 5 + kCoefA]), bk(co[k * 5 + kCoefB]);
    m = V(neg_inf<T>());
    for (int64_t j = 0; j < K; ++j) {
      const V xn = ddim_step(ak, softmax_prob(V::loadu(E + j * L), inv), bk, V::loadu(x + j * L));
      xn.store(x + j * L);
      const V l = logit(k - 1, j);
      l.store(E + j * L);  // E now holds l_{k-1} (exponentiated in the next step)
      m = vmax(m, l);
    }
  }
  // i = argmax(l_1 + G); E holds exp(l_1 - m_1) and is kept for the soft output.
  LaneArgmax<V> am;
  const T* const G = b.G;
  for (int64_t j = 0; j < K; ++j) am.step(j, logit(1, j) + V::loadu(G + j * L));
  *idx = am.idx;
  return soft_s;
}

/// The block's outputs: stats of the rows that are not normal, index, y (one-hot or E / soft_s).
template <typename V, typename scalar_t>
void fwd_lanes_outputs(const RowArgs& a, int64_t r0, const RowKind* kind, const V& idx,
                       const V& soft_s, const LaneFwdBlock<V>& b) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const int64_t K = a.K, nv = b.nv;
  const int n = a.n_steps;
  T* stats = a.stats_as<T>();
  auto* y = static_cast<scalar_t*>(a.y);
  alignas(64) T lane_buf[L];
  idx.store(lane_buf);
  for (int64_t i = 0; i < nv; ++i) {
    const int64_t r = r0 + i;
    T* st = stats + r * n * 2;
    if (kind[i] == kPoisonedRow) {
      std::fill(st, st + 2 * n, std::numeric_limits<T>::quiet_NaN());
      a.index[r] = -1;
    } else if (kind[i] == kEmptyRow) {
      std::fill(st, st + 2 * n, T(0));
      a.index[r] = -1;
    } else {
      a.index[r] = static_cast<int64_t>(lane_buf[i]);
    }
  }
  if (y == nullptr) return;  // write_y false: stats and index only
  if (a.one_hot_out()) {
    fill_row(y + r0 * K, nv * K, 0.0);  // the block's rows are contiguous in y
    for (int64_t i = 0; i < nv; ++i) {
      scalar_t* row = y + (r0 + i) * K;
      if (kind[i] == kNormalRow) {
        row[static_cast<int64_t>(lane_buf[i])] = static_cast<scalar_t>(1.0);
      } else if (kind[i] == kPoisonedRow) {
        fill_row(row, K, std::numeric_limits<double>::quiet_NaN());
      }
    }
  } else {
    T* const E = b.E;
    const V inv(V(T(1)) / soft_s);
    for (int64_t j = 0; j < K; ++j) (V::loadu(E + j * L) * inv).store(E + j * L);
    store_block<L, scalar_t, T>(E, K, r0, nv, kind, y);
  }
}

// ------------------------------------------------------------------------------------------------
// Forward (lanes): the math of fwd_rows, per lane.
//   st, reinmax : p = softmax(phi) (stats slot 0),  i = argmax(phi + G)
//   gumbel      : s = softmax((phi + G - m) / tau), m = max(phi + G) (slot 0: m, the sum),
//                 i = argmax(phi + G)
//   redge*      : x_{n-1} = z (cov: mu + sqrt(v) z); for k = n-1..1:
//                   p_k = softmax(l_k) (slot k), l_k = phi + c_k x_k
//                   (cov: phi + c_k lam (x_k - sigma_k mu - alpha_k / 2)),
//                   x_{k-1} = a_k p_k + b_k x_k;   i = argmax(l_1 + G)
//   y = one_hot(i) when hard (always for reinmax, redge_max), else the soft sample.
// Row max m = max_j l_j and s = sum_j exp(l_j - m) run elementwise across the column loop.
// Passes: fwd_lanes_baseline or fwd_lanes_chain, then fwd_lanes_outputs.
// ------------------------------------------------------------------------------------------------
template <typename scalar_t, typename T, int NV>
void fwd_lanes(const RowArgs& a, int64_t rb, int64_t re) {
  using V = Lanes<T, NV>;
  constexpr int L = V::size();
  const int64_t K = a.K, KL = K * L;
  const int n = a.n_steps;
  const bool chain = a.chain();
  const auto* phi = static_cast<const scalar_t*>(a.phi);
  T* stats = a.stats_as<T>();
  const V tau(static_cast<T>(a.tau));

  // Scratch, [K][L] each: ph, E, G, x, mu, lam.
  std::vector<T> buf(static_cast<size_t>(6 * KL));
  T* const ph = buf.data();
  LaneFwdBlock<V> b;
  b.ph = ph;
  b.E = ph + KL;
  b.G = b.E + KL;
  b.x = b.G + KL;
  b.mu = b.x + KL;
  b.lam = b.mu + KL;
  b.n = n;
  BlockNoise<V, T> noise(K, a.key0, a.key1, chain, true, a.row_start);
  RowKind kind[L];

  for_blocks<L>(a, rb, re, [&](int64_t r0, int64_t nv, int64_t e) {
    load_block<V, scalar_t, T>(phi, a.phi_stride0, a.phi_stride1, K, r0, nv, ph, kind);
    noise.get(r0, e, b.x, b.G);
    // Stats of the block's rows (contiguous): slots a method does not define stay 0; the slots
    // of rows that are not normal are rewritten at the end.
    T* const st_rows = stats + r0 * n * 2;
    std::fill(st_rows, st_rows + nv * n * 2, T(0));
    b.st_rows = st_rows;
    b.nv = nv;
    V idx;
    const V soft_s = chain ? fwd_lanes_chain<V>(a, K, b, &idx)
                           : fwd_lanes_baseline<V>(a.method == kGumbel, K, tau, b, &idx);
    fwd_lanes_outputs<V, scalar_t>(a, r0, kind, idx, soft_s, b);
  });
}

/// The scratch of bwd_lanes: [K][L] arrays (P, X: n - 1 each), the block's per-lane stats
/// [n][(m, s or 1/s)][L] and index.
template <typename V>
struct LaneBwdBlock {
  using T = typename V::value_type;
  static constexpr int L = V::size();
  int64_t KL = 0;
  T *ph = nullptr, *g = nullptr, *out = nullptr, *E = nullptr, *A = nullptr, *gx = nullptr;
  T *mu = nullptr, *lam = nullptr, *z = nullptr, *glam = nullptr, *gmu = nullptr;
  T* P = nullptr;   // P + (k - 1) KL holds p_k
  T* X = nullptr;   // cov: X + (k - 1) KL holds x_k
  T* st = nullptr;  // [n][(m, s)][L]
  V idx;            // the sampled index per lane (-1: not a normal row)

  T* Pk(int k) const { return P + (k - 1) * KL; }
  T* Xk(int k) const { return X + (k - 1) * KL; }
  V Mk(int k) const { return V::loadu(st + (2 * k) * L); }
  V Sk(int k) const { return V::loadu(st + (2 * k + 1) * L); }  // s (or 1/s)
};

/// Per lane: 1 where the lane's index idx is j, else 0.
template <typename V>
inline V lane_one_hot(const V& idx, int64_t j) {
  using T = typename V::value_type;
  return V::blendv(V(T(0)), V(T(1)), idx == V(static_cast<T>(j)));
}

/// The per-lane stats and index of block r0 into b.st / b.idx; lanes that are not normal rows
/// get (m, s) = (0, 1) and index -1. The chain keeps 1/s_k (k >= 1), as bwd_rows.
template <typename V>
void bwd_lanes_stats(const RowArgs& a, int64_t r0, int64_t nv, const RowKind* kind,
                     LaneBwdBlock<V>& b) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const int n = a.n_steps;
  const bool chain = a.chain();
  const V zero(T(0)), one(T(1));
  alignas(64) T keep[L];
  alignas(64) T lane_buf[L];
  bool all_normal = true;
  for (int64_t i = 0; i < L; ++i) {
    const bool ok = kind[i] == kNormalRow;
    all_normal &= ok;
    keep[i] = ok ? T(1) : T(0);
    lane_buf[i] = ok ? static_cast<T>(a.index[r0 + i]) : T(-1);
  }
  const V keep_mask = all_normal ? V(T(1)) : V::loadu(keep) == one;
  const T* sbase = a.stats_as<T>() + r0 * n * 2;
  for (int k = 0; k < n; ++k) {
    V mk, sk;
    load_pairs(sbase + 2 * k, 2 * n, nv, mk, sk);
    if (!all_normal) {
      mk = V::blendv(zero, mk, keep_mask);
      sk = V::blendv(one, sk, keep_mask);
    }
    if (chain && k >= 1) sk = one / sk;
    mk.store(b.st + (2 * k) * L);
    sk.store(b.st + (2 * k + 1) * L);
  }
  b.idx = V::loadu(lane_buf);
}

/// st, gumbel on a block: gphi = p (g - <g, p>) [/ tau].
template <typename V>
void bwd_lanes_softmax(bool gumbel, int64_t K, const V& tau, const LaneBwdBlock<V>& b) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const int64_t KL = b.KL;
  const T *const ph = b.ph, *const g = b.g, *const A = b.A;
  T* const E = b.E;
  T* const out = b.out;
  const V zero(T(0));
  // p = exp(l - m) / s, l = phi (st); gumbel: p = exp(l) / s, l = gumbel_logit(phi + G, m)
  // (max 0, as the forward); gphi = p (g - <g, p>) [/ tau]
  const V m = b.Mk(0), s = b.Sk(0);
  V dot = zero;
  for (int64_t j = 0; j < K; ++j) {
    const V p = gumbel
                    ? lexp(gumbel_logit(V::loadu(ph + j * L) + V::loadu(A + j * L), m, tau) - zero) / s
                    : lexp(V::loadu(ph + j * L) - m) / s;
    p.store(E + j * L);
    dot = dot + V::loadu(g + j * L) * p;
  }
  for (int64_t j = 0; j < KL; j += L) {
    V rj = softmax_bwd(V::loadu(E + j), V::loadu(g + j), dot);
    if (gumbel) rj = rj / tau;
    rj.store(out + j);
  }
}

/// reinmax on a block.
template <typename V>
void bwd_lanes_reinmax(int64_t K, const V& tau, const LaneBwdBlock<V>& b) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const int64_t KL = b.KL;
  const T *const ph = b.ph, *const g = b.g;
  T* const E = b.E;
  T* const A = b.A;
  T* const out = b.out;
  const V zero(T(0)), one(T(1)), two(T(2)), ninf(neg_inf<T>());
  // softmax(phi / tau) recomputed from reinmax_tempered(phi, m0), m0 = max(phi) (slot 0,
  // max 0), p0 = softmax(phi) from slot 0.
  const V m0 = b.Mk(0), s0 = b.Sk(0), mhalf(T(-0.5)), idx = b.idx;
  V st_sum = zero;
  for (int64_t j = 0; j < KL; j += L) {
    const V e = lexp(reinmax_tempered(V::loadu(ph + j), m0, tau) - zero);
    e.store(E + j);
    st_sum = st_sum + e;
  }
  V su = zero, sw = zero, cnt = zero;
  for (int64_t j = 0; j < K; ++j) {
    const V p0 = lexp(V::loadu(ph + j * L) - m0) / s0;
    const V p1 = reinmax_p1(V::loadu(E + j * L), st_sum, lane_one_hot(idx, j));
    const V gj = V::loadu(g + j * L);
    su = su + (two * gj) * p1;
    sw = sw + (mhalf * gj) * p0;
    p0.store(A + j * L);
    p1.store(E + j * L);
    cnt = cnt + V::blendv(zero, one, V::loadu(ph + j * L) != ninf);
  }
  V tot = zero;
  for (int64_t j = 0; j < KL; j += L) {
    const V gj = V::loadu(g + j), p0 = V::loadu(A + j), p1 = V::loadu(E + j);
    const V gv = V::blendv(zero, reinmax_grad(gj, p0, p1, su, sw), V::loadu(ph + j) != ninf);
    gv.store(out + j);
    tot = tot + gv;
  }
  const V mean = tot / cnt;
  for (int64_t j = 0; j < KL; j += L) {
    V::blendv(zero, V::loadu(out + j) - mean, V::loadu(ph + j) != ninf).store(out + j);
  }
}

/// Chain backward (lanes), pass 1: recompute x_k, p_k (k = n-1..1) column by column from z and
/// the stats; *dot = <g, p_1>, *gidx = g[i] per lane.
template <typename V, typename T>
void bwd_lanes_recompute(int n, bool cov, const T* co, const LaneBwdBlock<V>& b, V* dot_out,
                         V* gidx_out) {
  constexpr int L = V::size();
  const int64_t KL = b.KL;
  const T *const ph = b.ph, *const g = b.g, *const mu = b.mu, *const lam = b.lam, *const z = b.z;
  const V zero(T(0)), vmin(static_cast<T>(kVMin));
  const V idx = b.idx;
  auto logit = [&](int k, int64_t j, const V& xv) {
    const StepCoefs<V> sk = step_coefs<V>(co, k);
    const V muj = cov ? V::loadu(mu + j) : zero, lamj = cov ? V::loadu(lam + j) : zero;
    return chain_logit(cov, V::loadu(ph + j), sk, muj, lamj, xv);
  };
  auto x_init = [&](int64_t j) {  // x_{n-1} of column block j
    V xv = V::loadu(z + j);
    if (cov) {
      const V p = V::loadu(mu + j);
      xv = cov_x_init(p, cov_variance(p, vmin), xv);
    }
    return xv;
  };
  V dot = zero, gidx = zero;
  auto finish_col = [&](int64_t j, const V& p1) {  // <g, p_1> and g[i], in column order
    const V gj = V::loadu(g + j);
    dot = dot + gj * p1;
    gidx = V::blendv(gidx, gj, idx == V(static_cast<T>(j / L)));
  };
  // The chain of one column is a long dependency (n-1 exps): columns are taken kU at a time
  // so that their chains overlap (same operations per element).
  constexpr int kU = V::size() / V::kVL == 1 ? 4 : 2;
  int64_t j0 = 0;
  for (; j0 + kU * L <= KL; j0 += kU * L) {
    V xs[kU], ps[kU];
    for (int u = 0; u < kU; ++u) xs[u] = x_init(j0 + u * L);
    for (int k = n - 1; k >= 1; --k) {
      const V mk = b.Mk(k), ik = b.Sk(k);
      for (int u = 0; u < kU; ++u) ps[u] = softmax_prob(lexp(logit(k, j0 + u * L, xs[u]) - mk), ik);
      for (int u = 0; u < kU; ++u) ps[u].store(b.Pk(k) + j0 + u * L);
      if (cov) {
        for (int u = 0; u < kU; ++u) xs[u].store(b.Xk(k) + j0 + u * L);
      }
      if (k > 1) {
        const V ak(co[k * 5 + kCoefA]), bk(co[k * 5 + kCoefB]);
        for (int u = 0; u < kU; ++u) xs[u] = ddim_step(ak, ps[u], bk, xs[u]);
      }
    }
    for (int u = 0; u < kU; ++u) finish_col(j0 + u * L, ps[u]);
  }
  for (int64_t j = j0; j < KL; j += L) {
    V xv = x_init(j);
    V p;
    for (int k = n - 1; k >= 1; --k) {
      p = softmax_prob(lexp(logit(k, j, xv) - b.Mk(k)), b.Sk(k));
      p.store(b.Pk(k) + j);
      if (cov) xv.store(b.Xk(k) + j);
      if (k > 1) xv = ddim_step(V(co[k * 5 + kCoefA]), p, V(co[k * 5 + kCoefB]), xv);
    }
    finish_col(j, p);
  }
  *dot_out = dot;
  *gidx_out = gidx;
}

/// Chain backward (lanes), steps 1 .. n-1 (as bwd_chain_grad of the rows):
/// step 1 r = p_1 (g - <g, p_1>), gD = <g, D> (redge_max); then per step gp = a_k gx,
/// r = p_k (gp - <gp, p_k>), gphi += r, gx = c_k r + b_k gx (cov: c_k lam r, glam, gmu).
template <typename V, typename T>
void bwd_lanes_steps(int n, bool cov, bool is_max, const T* co, V dot, const V& gD,
                     const LaneBwdBlock<V>& b) {
  constexpr int L = V::size();
  const int64_t KL = b.KL;
  const T *const g = b.g, *const mu = b.mu, *const lam = b.lam;
  T *const out = b.out, *const gx = b.gx, *const glam = b.glam, *const gmu = b.gmu;
  const V zero(T(0)), idx = b.idx;
  {
    const StepCoefs<V> s1 = step_coefs<V>(co, 1);
    const T* const p1 = b.Pk(1);
    const T* const p2 = n > 2 ? b.Pk(2) : nullptr;
    const V a2(n > 2 ? co[2 * 5 + kCoefA] : T(0));
    V dn = zero;
    for (int64_t j = 0; j < KL; j += L) {
      const V p = V::loadu(p1 + j);
      const V rv = softmax_bwd(p, V::loadu(g + j), dot);
      if (is_max) {
        redge_max_step1(rv, gD, lane_one_hot(idx, j / L), p).store(out + j);
      } else {
        rv.store(out + j);
      }
      const V lv = cov ? V::loadu(lam + j) : zero;
      const V gxv = chain_gx1(cov, s1.c, lv, rv);
      if (cov) {
        cov_glam_term(s1, rv, V::loadu(b.Xk(1) + j), V::loadu(mu + j)).store(glam + j);
        cov_gmu_term(s1, lv, rv).store(gmu + j);
      }
      gxv.store(gx + j);
      if (p2) dn = dn + (a2 * gxv) * V::loadu(p2 + j);
    }
    dot = dn;
  }
  for (int k = 2; k <= n - 1; ++k) {
    const StepCoefs<V> sc = step_coefs<V>(co, k);
    const bool has_next = k + 1 <= n - 1;
    const T* const pk = b.Pk(k);
    const T* const pn = has_next ? b.Pk(k + 1) : nullptr;
    const V an(has_next ? co[(k + 1) * 5 + kCoefA] : T(0));
    V dn = zero;
    for (int64_t j = 0; j < KL; j += L) {
      const V gxo = V::loadu(gx + j);
      const V rv = softmax_bwd(V::loadu(pk + j), sc.a * gxo, dot);
      (V::loadu(out + j) + rv).store(out + j);
      const V lv = cov ? V::loadu(lam + j) : zero;
      const V gxv = chain_gx(cov, sc.c, lv, rv, sc.b, gxo);
      if (cov) {
        const V mj = V::loadu(mu + j);
        (V::loadu(glam + j) + cov_glam_term(sc, rv, V::loadu(b.Xk(k) + j), mj)).store(glam + j);
        (V::loadu(gmu + j) + cov_gmu_term(sc, lv, rv)).store(gmu + j);
      }
      gxv.store(gx + j);
      if (has_next) dn = dn + (an * gxv) * V::loadu(pn + j);
    }
    dot = dn;
  }
}

/// The DDIM chain (lanes): z, mu and lam (cov), then bwd_lanes_recompute, bwd_lanes_steps and
/// for cov the paths through mu = p and v = max(p (1 - p), V_MIN).
template <typename V>
void bwd_lanes_chain(const RowArgs& a, int64_t r0, int64_t e, BlockNoise<V, typename V::value_type>& noise,
                     const LaneBwdBlock<V>& b) {
  using T = typename V::value_type;
  constexpr int L = V::size();
  const int64_t KL = b.KL;
  const bool cov = a.method == kReDGECov;
  const V one(T(1)), vmin(static_cast<T>(kVMin));
  noise.get(r0, e, b.z, nullptr);
  if (cov) {
    const V m0 = b.Mk(0), s0 = b.Sk(0);
    for (int64_t j = 0; j < KL; j += L) {
      const V p = lexp(V::loadu(b.ph + j) - m0) / s0;
      const V v = cov_variance(p, vmin);
      p.store(b.mu + j);
      (one / v).store(b.lam + j);
    }
  }
  const int n = a.n_steps;
  const T* co = a.coefs_as<T>();
  V dot, gidx;
  bwd_lanes_recompute<V, T>(n, cov, co, b, &dot, &gidx);
  // <g, D> = g[i] - <g, p_1> (redge_max)
  bwd_lanes_steps<V, T>(n, cov, a.method == kReDGEMax, co, dot, gidx - dot, b);
  if (cov) {
    // x_{n-1} = mu + sqrt(v) z; v = max(q, V_MIN), q = p (1 - p); lam = 1 / v; mu = p.
    const V dp = cov_base_grad_pass<V>(KL, b.mu, b.lam, b.gx, b.z, b.glam, b.gmu, vmin);
    softmax_bwd_add_pass<V>(KL, b.mu, b.gmu, dp, b.out);
  }
}

// ------------------------------------------------------------------------------------------------
// Backward (lanes): the math of bwd_rows, per lane, from the saved stats (p = exp(l - m) / s).
//   st      : gphi = p (g - <g, p>)
//   gumbel  : gphi = s (g - <g, s>) / tau, s = exp((phi + G - m) / tau) / sum (slot 0: m, sum)
//   reinmax : p1 = (softmax(phi / tau) + D) / 2 (phi shifted by max(phi) before / tau);
//             u = 2 g p1, u -= p1 sum(u); w = -g/2 p0, w -= p0 sum(w); gphi = u + w centred
//             over the unmasked entries (masked: 0)
//   redge   : r = p_1 (g - <g, p_1>); gphi = r; gx = c_1 r;  k = 2..n-1: gp = a_k gx,
//             r = p_k (gp - <gp, p_k>), gphi += r, gx = c_k r + b_k gx
//   redge_max: as redge, but step 1 adds 1/2 (r + <g, D> D), D = one_hot(i) - p_1, to gphi
//   redge_cov: as redge with c_k lam in place of c_k, plus the paths through mu = p and
//             v = max(p (1 - p), V_MIN) (see bwd_rows).
// Passes: bwd_lanes_stats, then bwd_lanes_softmax, bwd_lanes_reinmax or bwd_lanes_chain.
// ------------------------------------------------------------------------------------------------
template <typename scalar_t, typename T, int NV>
void bwd_lanes(const RowArgs& a, int64_t rb, int64_t re) {
  using V = Lanes<T, NV>;
  constexpr int L = V::size();
  const int64_t K = a.K, KL = K * L;
  const int n = a.n_steps, method = a.method;
  const bool chain = a.chain();
  const auto* phi = static_cast<const scalar_t*>(a.phi);
  const auto* gy = static_cast<const scalar_t*>(a.grad_y);
  auto* gphi_out = static_cast<scalar_t*>(a.grad_phi);
  const V tau(static_cast<T>(a.tau));

  // Scratch, [K][L] each: ph, g, out, E, A, gx, mu, lam, z, glam, gmu, P[1..n-1], X[1..n-1].
  const int64_t n_arrays = 11 + (chain ? 2 * (n - 1) : 0);
  std::vector<T> buf(static_cast<size_t>(n_arrays * KL));
  std::vector<T> st_blk(static_cast<size_t>(2 * n * L));  // [n][(m, 1/s)][L]
  LaneBwdBlock<V> b;
  b.KL = KL;
  b.ph = buf.data();
  b.g = b.ph + KL;
  b.out = b.g + KL;
  b.E = b.out + KL;
  b.A = b.E + KL;
  b.gx = b.A + KL;
  b.mu = b.gx + KL;
  b.lam = b.mu + KL;
  b.z = b.lam + KL;
  b.glam = b.z + KL;
  b.gmu = b.glam + KL;
  b.P = b.gmu + KL;
  b.X = b.P + (chain ? (n - 1) * KL : 0);
  b.st = st_blk.data();
  BlockNoise<V, T> noise(K, a.key0, a.key1, chain, method == kGumbel, a.row_start);
  RowKind kind[L];

  for_blocks<L>(a, rb, re, [&](int64_t r0, int64_t nv, int64_t e) {
    load_block<V, scalar_t, T>(phi, a.phi_stride0, a.phi_stride1, K, r0, nv, b.ph, kind);
    load_block_plain<V, scalar_t, T>(gy, a.grad_stride0, a.grad_stride1, K, r0, nv, b.g);
    bwd_lanes_stats<V>(a, r0, nv, kind, b);
    if (method == kST || method == kGumbel) {
      if (method == kGumbel) noise.get(r0, e, nullptr, b.A);
      bwd_lanes_softmax<V>(method == kGumbel, K, tau, b);
    } else if (method == kReinMax) {
      bwd_lanes_reinmax<V>(K, tau, b);
    } else {
      bwd_lanes_chain<V>(a, r0, e, noise, b);
    }
    store_block<L, scalar_t, T>(b.out, K, r0, nv, kind, gphi_out);
  });
}

#ifndef REDGE_LANE_PARTS
#define REDGE_LANE_PARTS 2
#endif
/// Vectorized<T> per block (Lanes<T, kLaneParts>): a block is 16 fp32 / 8 fp64 rows on AVX2.
constexpr int kLaneParts = REDGE_LANE_PARTS;

/// The kernel table of this capability: the row kernels of table() plus the lane kernels.
inline const KernelTable& lane_table(const char* name) {
  static const KernelTable t = [name] {
    constexpr int P = kLaneParts;
    KernelTable k = table(name);
    k.fwd_lanes[kF32] = &fwd_lanes<float, float, P>;
    k.fwd_lanes[kF64] = &fwd_lanes<double, double, P>;
    k.fwd_lanes[kBF16] = &fwd_lanes<c10::BFloat16, float, P>;
    k.fwd_lanes[kF16] = &fwd_lanes<c10::Half, float, P>;
    k.bwd_lanes[kF32] = &bwd_lanes<float, float, P>;
    k.bwd_lanes[kF64] = &bwd_lanes<double, double, P>;
    k.bwd_lanes[kBF16] = &bwd_lanes<c10::BFloat16, float, P>;
    k.bwd_lanes[kF16] = &bwd_lanes<c10::Half, float, P>;
    k.lane_rows[kF32] = Lanes<float, P>::size();
    k.lane_rows[kF64] = Lanes<double, P>::size();
    k.lane_rows[kBF16] = Lanes<float, P>::size();
    k.lane_rows[kF16] = Lanes<float, P>::size();
    return k;
  }();
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace redge_kernels
