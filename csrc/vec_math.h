// The vector-math layer of the CPU kernels: every instruction-set intrinsic of csrc/ is here, so
// that the kernel headers (noise_impl.h, row_kernels_impl.h, lane_kernels_impl.h,
// estimator_math.h) are written once over at::vec::Vectorized and the types below, with no `#if`
// on the instruction set. Each function has an x86-64 AVX2 + FMA body (a translation unit
// compiled with CPU_CAPABILITY_AVX2: kernels_cap_x86avx2.cpp, kernels_cap_x86avx512.cpp) and a
// portable body (plain loops, ATen's Vectorized / Sleef) for any other unit and architecture.
//
// Contents: 8-lane uint32 vectors (U32x8: loads, stores, xor / and / shifts, compares, the
// 32 x 32 -> high 32 bit products of Philox); uint32 -> float conversion; horizontal max / sum;
// a 4 x 8 transpose and (m, s) pair interleaving; non-temporal zero fill; and the float
// polynomials of the noise and the softmaxes (exp, log, sin / cos of 2 pi v; about 1 ulp, see
// below). Per instruction set the results are fixed (the portable exp / log / sin / cos are
// Sleef's, so they may differ from the AVX2 polynomials in the last ulp; everything else is exact).
//
// Included by row_kernels_impl.h; defines everything in namespace redge_kernels::CPU_CAPABILITY.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include "philox.h"

namespace redge_kernels {
namespace CPU_CAPABILITY {

using at::vec::Vectorized;
using VecF = Vectorized<float>;
static_assert(VecF::size() == 8, "the vector-math layer assumes 8 float lanes");

// ---- 8 x uint32 ---------------------------------------------------------------------------------

/// Eight uint32 lanes (Philox counters and words, noise bit fields).
struct U32x8 {
#if defined(CPU_CAPABILITY_AVX2)
  __m256i v;
  /// p 32-byte aligned.
  static U32x8 load(const uint32_t* p) { return {_mm256_load_si256(reinterpret_cast<const __m256i*>(p))}; }
  static U32x8 loadu(const uint32_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
  static U32x8 broadcast(uint32_t x) { return {_mm256_set1_epi32(static_cast<int>(x))}; }
  /// Lane i = x + i.
  static U32x8 iota(uint32_t x) {
    return {_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(x)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))};
  }
  /// p 32-byte aligned.
  void store(uint32_t* p) const { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
  friend U32x8 operator^(U32x8 a, U32x8 b) { return {_mm256_xor_si256(a.v, b.v)}; }
  friend U32x8 operator&(U32x8 a, U32x8 b) { return {_mm256_and_si256(a.v, b.v)}; }
  friend U32x8 operator-(U32x8 a, U32x8 b) { return {_mm256_sub_epi32(a.v, b.v)}; }
  /// Logical shift right by n bits.
  U32x8 shr(int n) const { return {_mm256_srli_epi32(v, n)}; }
  /// Low 32 bits of a * b per lane.
  friend U32x8 mullo(U32x8 a, U32x8 b) { return {_mm256_mullo_epi32(a.v, b.v)}; }
  /// High 32 bits of a * m per lane (the Philox products); m holds the same value in every lane.
  friend U32x8 mulhi_bcast(U32x8 a, U32x8 m) {
    const __m256i even = _mm256_mul_epu32(a.v, m.v);                         // lanes 0, 2, 4, 6
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a.v, 32), m.v);  // lanes 1, 3, 5, 7
    return {_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA)};
  }
  /// All ones where a > b (unsigned), else 0.
  friend U32x8 gt_unsigned(U32x8 a, U32x8 b) {
    const __m256i bias = _mm256_set1_epi32(INT32_MIN);  // unsigned order as signed order
    return {_mm256_cmpgt_epi32(_mm256_xor_si256(a.v, bias), _mm256_xor_si256(b.v, bias))};
  }
  /// The lanes as signed int32 converted to float (exact below 2^24).
  VecF to_float() const { return VecF(_mm256_cvtepi32_ps(v)); }
  /// The lanes' bits as floats.
  VecF bits_as_float() const { return VecF(_mm256_castsi256_ps(v)); }
  /// A float vector's bits.
  static U32x8 bits_of(const VecF& f) { return {_mm256_castps_si256(f)}; }
#else
  uint32_t v[8];
  template <typename F>
  static U32x8 make(F f) {
    U32x8 r;
    for (int i = 0; i < 8; ++i) r.v[i] = f(i);
    return r;
  }
  static U32x8 load(const uint32_t* p) { return make([&](int i) { return p[i]; }); }
  static U32x8 loadu(const uint32_t* p) { return load(p); }
  static U32x8 broadcast(uint32_t x) { return make([&](int) { return x; }); }
  static U32x8 iota(uint32_t x) { return make([&](int i) { return x + static_cast<uint32_t>(i); }); }
  void store(uint32_t* p) const { std::memcpy(p, v, sizeof(v)); }
  friend U32x8 operator^(U32x8 a, U32x8 b) { return make([&](int i) { return a.v[i] ^ b.v[i]; }); }
  friend U32x8 operator&(U32x8 a, U32x8 b) { return make([&](int i) { return a.v[i] & b.v[i]; }); }
  friend U32x8 operator-(U32x8 a, U32x8 b) { return make([&](int i) { return a.v[i] - b.v[i]; }); }
  U32x8 shr(int n) const { return make([&](int i) { return v[i] >> n; }); }
  friend U32x8 mullo(U32x8 a, U32x8 b) { return make([&](int i) { return a.v[i] * b.v[i]; }); }
  friend U32x8 mulhi_bcast(U32x8 a, U32x8 m) {
    return make([&](int i) {
      return static_cast<uint32_t>((static_cast<uint64_t>(a.v[i]) * m.v[i]) >> 32);
    });
  }
  friend U32x8 gt_unsigned(U32x8 a, U32x8 b) {
    return make([&](int i) { return a.v[i] > b.v[i] ? 0xFFFFFFFFu : 0u; });
  }
  VecF to_float() const {
    alignas(32) float f[8];
    for (int i = 0; i < 8; ++i) f[i] = static_cast<float>(static_cast<int32_t>(v[i]));
    return VecF::loadu(f);
  }
  VecF bits_as_float() const { return VecF::loadu(reinterpret_cast<const float*>(v)); }
  static U32x8 bits_of(const VecF& f) {
    U32x8 r;
    f.store(reinterpret_cast<float*>(r.v));
    return r;
  }
#endif
};

/// f32(r) (round to nearest) of 8 uint32 lanes; `complement` gives f32(~r) (philox.h u32_to_f32).
inline VecF u32_to_f32v(const uint32_t* r, bool complement) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r));  // r may be unaligned
  if (complement) v = _mm256_xor_si256(v, _mm256_set1_epi32(-1));
  // r = hi * 2^16 + lo: both halves convert exactly, the sum is rounded once.
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 16));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)));
  return VecF(_mm256_add_ps(_mm256_mul_ps(hi, _mm256_set1_ps(65536.0f)), lo));
#else
  alignas(32) float f[8];
  for (int i = 0; i < 8; ++i) f[i] = redge_kernels::u32_to_f32(complement ? ~r[i] : r[i]);
  return VecF::loadu(f);
#endif
}

// ---- horizontal reductions (fixed order: identical for every thread count) ----------------------

/// The reduction operators of hreduce: scalar, and the AVX2 4-lane / low-lane forms.
struct MaxOp {
  template <typename T>
  static T scalar(T a, T b) { return std::max(a, b); }
#if defined(CPU_CAPABILITY_AVX2)
  static __m128 packed(__m128 a, __m128 b) { return _mm_max_ps(a, b); }
  static __m128 low(__m128 a, __m128 b) { return _mm_max_ss(a, b); }
#endif
};
struct SumOp {
  template <typename T>
  static T scalar(T a, T b) { return a + b; }
#if defined(CPU_CAPABILITY_AVX2)
  static __m128 packed(__m128 a, __m128 b) { return _mm_add_ps(a, b); }
  static __m128 low(__m128 a, __m128 b) { return _mm_add_ss(a, b); }
#endif
};

/// Op over the lanes of v: AVX2 float halves 8 -> 4 -> 2 -> 1 with shuffles (short latency for
/// small rows), else lane 0, 1, 2, ... in order.
template <typename Op, typename T>
T hreduce(const Vectorized<T>& v) {
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256 x = v;
    __m128 m = Op::packed(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = Op::packed(m, _mm_movehl_ps(m, m));
    m = Op::low(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
#endif
  alignas(64) T a[Vectorized<T>::size()];
  v.store(a);
  T m = a[0];
  for (int i = 1; i < Vectorized<T>::size(); ++i) m = Op::scalar(m, a[i]);
  return m;
}

template <typename T>
T hmax(const Vectorized<T>& v) { return hreduce<MaxOp>(v); }

template <typename T>
T hsum(const Vectorized<T>& v) { return hreduce<SumOp>(v); }

// ---- shuffles and transposes --------------------------------------------------------------------

/// The 4 x 8 transpose: dst[4 i + q] = v[q] lane i, i < 8, q < 4 (dst[0 .. 32)).
inline void store_transposed_4x8(const VecF* v, float* dst) {
#if defined(CPU_CAPABILITY_AVX2)
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));  // lanes 0 | 4
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));  // lanes 1 | 5
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));  // lanes 2 | 6
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));  // lanes 3 | 7
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u1, 0x20));
  _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
  _mm256_storeu_ps(dst + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
  _mm256_storeu_ps(dst + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
#else
  alignas(32) float f[4][8];
  for (int q = 0; q < 4; ++q) v[q].store(f[q]);
  for (int i = 0; i < 8; ++i) {
    for (int q = 0; q < 4; ++q) dst[4 * i + q] = f[q][i];
  }
#endif
}

/// The same transpose of 32-bit words: dst[4 i + q] = w[q][i] (w rows 32-byte aligned).
inline void store_transposed_4x8(const uint32_t (*w)[8], uint32_t* dst) {
#if defined(CPU_CAPABILITY_AVX2)
  VecF v[4];
  for (int q = 0; q < 4; ++q) v[q] = U32x8::load(w[q]).bits_as_float();
  store_transposed_4x8(v, reinterpret_cast<float*>(dst));  // a permutation of bits only
#else
  for (int i = 0; i < 8; ++i) {
    for (int q = 0; q < 4; ++q) dst[4 * i + q] = w[q][i];
  }
#endif
}

/// The pairs (m lane i, s lane i) as 64-bit words: w[i] = the two floats m_i, s_i (in memory
/// order), i < 8.
inline void interleave_pairs8(const VecF& m, const VecF& s, uint64_t* w) {
#if defined(CPU_CAPABILITY_AVX2)
  // unpacklo: pairs of lanes 0, 1 | 4, 5; unpackhi: lanes 2, 3 | 6, 7 (as 64-bit units).
  const __m256 lo = _mm256_unpacklo_ps(m, s), hi = _mm256_unpackhi_ps(m, s);
  _mm256_storeu_ps(reinterpret_cast<float*>(w), _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(reinterpret_cast<float*>(w + 4), _mm256_permute2f128_ps(lo, hi, 0x31));
#else
  alignas(32) float fm[8], fs[8];
  m.store(fm);
  s.store(fs);
  for (int i = 0; i < 8; ++i) {
    const float pair[2] = {fm[i], fs[i]};
    std::memcpy(w + i, pair, sizeof(uint64_t));
  }
#endif
}

/// The inverse of interleave_pairs8: m lane i, s lane i = the two floats of w[i].
inline void deinterleave_pairs8(const uint64_t* w, VecF& m, VecF& s) {
#if defined(CPU_CAPABILITY_AVX2)
  // From registers (w is usually gathered from scattered rows just before): lo = pairs of lanes
  // 0, 1 | 4, 5 and hi = 2, 3 | 6, 7, as unpacklo / hi.
  const auto u = [w](int i) { return static_cast<long long>(w[i]); };
  const __m256 lo = _mm256_castsi256_ps(_mm256_set_epi64x(u(5), u(4), u(1), u(0)));
  const __m256 hi = _mm256_castsi256_ps(_mm256_set_epi64x(u(7), u(6), u(3), u(2)));
  m = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  s = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
#else
  alignas(32) float fm[8], fs[8];
  for (int i = 0; i < 8; ++i) {
    float pair[2];
    std::memcpy(pair, w + i, sizeof(uint64_t));
    fm[i] = pair[0];
    fs[i] = pair[1];
  }
  m = VecF::loadu(fm);
  s = VecF::loadu(fs);
#endif
}

// ---- memory -------------------------------------------------------------------------------------

/// dst[0 .. bytes) = 0; long ranges (>= 16 KiB) with non-temporal stores on AVX2 (no read for
/// ownership of lines that are only written).
inline void zero_fill(void* dst, size_t bytes) {
#if defined(CPU_CAPABILITY_AVX2)
  char* p = static_cast<char*>(dst);
  if (bytes >= (size_t(16) << 10)) {
    const size_t head = (32 - reinterpret_cast<uintptr_t>(p) % 32) % 32;
    std::memset(p, 0, head);
    const __m256i zero = _mm256_setzero_si256();
    size_t i = head;
    for (; i + 32 <= bytes; i += 32) _mm256_stream_si256(reinterpret_cast<__m256i*>(p + i), zero);
    std::memset(p + i, 0, bytes - i);
    _mm_sfence();
    return;
  }
#endif
  std::memset(dst, 0, bytes);
}

// ---- exp of the softmaxes -----------------------------------------------------------------------
// Float on AVX2: an inline Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then
// e^r = 1 + r (1 + r (C2 + r (C3 + r (C4 + r (C5 + r C6))))), a degree-6 fit (Chebyshev least
// squares of (e^r - 1 - r) / r^2; about 1 ulp, measured max relative error 7e-8 against double exp
// over [-90, 0]) in six fused multiply-adds, and 2^n built in the exponent field. x is clamped to
// [-100, 88.5] first (so -inf gives 0, not NaN); a biased exponent n + 127 <= 0 gives exactly 0
// (x below about -87.7; masked -inf logits included). Elsewhere: ATen's Vectorized::exp (Sleef /
// libm).

/// v[b] = exp(v[b]) for NB vectors at once, statement by statement (the same operations on each
/// vector for any NB; interleaving the NB polynomial chains roughly doubles the throughput).
template <typename T, int NB>
inline void vexp_x(Vectorized<T>* v) {
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    __m256 n[NB], r[NB], p[NB];
    for (int b = 0; b < NB; ++b) {
      const __m256 xc = _mm256_min_ps(_mm256_max_ps(v[b], _mm256_set1_ps(-100.0f)),
                                      _mm256_set1_ps(88.5f));
      n[b] = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r[b] = _mm256_fnmadd_ps(n[b], _mm256_set1_ps(0.693359375f), xc);  // ln2 = 0.693359375
      r[b] = _mm256_fnmadd_ps(n[b], _mm256_set1_ps(-2.12194440e-4f), r[b]);  //   - 2.12194440e-4
      p[b] = _mm256_set1_ps(1.3933646355e-3f);  // C6
    }
    static constexpr float kC[6] = {8.3631755653e-3f, 4.1666464934e-2f, 1.6666577003e-1f,
                                    5.0000000135e-1f, 1.0f, 1.0f};  // C5, C4, C3, C2, 1, 1
    for (int i = 0; i < 6; ++i) {
      for (int b = 0; b < NB; ++b) p[b] = _mm256_fmadd_ps(p[b], r[b], _mm256_set1_ps(kC[i]));
    }
    for (int b = 0; b < NB; ++b) {
      __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n[b]), _mm256_set1_epi32(127));
      e = _mm256_slli_epi32(_mm256_max_epi32(e, _mm256_setzero_si256()), 23);  // 2^n, or 0
      v[b] = Vectorized<T>(_mm256_mul_ps(p[b], _mm256_castsi256_ps(e)));
    }
    return;
  }
#endif
  for (int b = 0; b < NB; ++b) v[b] = v[b].exp();
}

// ---- log, cos and sin of the noise transforms ---------------------------------------------------
// AVX2: inline float polynomials (no calls into Sleef), Cephes' logf and sinf / cosf (about 1 ulp),
// valid for the arguments that occur there:
//   log8x: x a positive normal float (u in [2^-33, 1]; the Gumbel transform's u, 1 - w and E);
//   sincos2pi8x: t = fl(2pi_f32 v) in [0, 2pi), reduced by j = round(t 2/pi) with pi/2 split in
//            three floats (C1 exact in j C1, fused multiply-adds), so r = t - j pi/2 keeps its
//            relative accuracy near the zeros of cos and sin.
// Each works on NB independent vectors at once, statement by statement, so the NB dependency
// chains of the polynomials overlap; the operations on each vector are the same for any NB.
// Elsewhere: Sleef (Vectorized::log, cos, sin).

#if defined(CPU_CAPABILITY_AVX2)
/// out[b] = log(x[b]) for positive normal x: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log = e ln2 + log(m).
template <int NB>
inline void logf8x_avx2(const __m256* x, __m256* out) {
  __m256 f[NB], ef[NB], z[NB], p[NB];
  for (int b = 0; b < NB; ++b) {
    const __m256i bits = _mm256_castps_si256(x[b]);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F800000)));  // [1, 2)
    const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    // m > sqrt(2): m / 2 (exact), e + 1; f = m - 1 in [-0.293, 0.414] (exact, Sterbenz).
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // big lanes are all-ones = -1
    f[b] = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
    ef[b] = _mm256_cvtepi32_ps(e);
    z[b] = _mm256_mul_ps(f[b], f[b]);
    p[b] = _mm256_set1_ps(7.0376836292e-2f);
  }
  static constexpr float kP[8] = {-1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f,
                                  1.4249322787e-1f,  -1.6668057665e-1f, 2.0000714765e-1f,
                                  -2.4999993993e-1f, 3.3333331174e-1f};
  for (int i = 0; i < 8; ++i) {
    for (int b = 0; b < NB; ++b) p[b] = _mm256_fmadd_ps(p[b], f[b], _mm256_set1_ps(kP[i]));
  }
  for (int b = 0; b < NB; ++b) {
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p[b], f[b]), z[b]);        // f^3 P(f)
    y = _mm256_fmadd_ps(ef[b], _mm256_set1_ps(-2.12194440e-4f), y);   // ln2 = 0.693359375 - 2.12194440e-4
    y = _mm256_fnmadd_ps(z[b], _mm256_set1_ps(0.5f), y);              // - f^2 / 2
    const __m256 r = _mm256_add_ps(f[b], y);
    out[b] = _mm256_fmadd_ps(ef[b], _mm256_set1_ps(0.693359375f), r);
  }
}
#endif

/// x[b] = log(x[b]) for NB vectors of positive normal floats.
template <int NB>
inline void log8x(VecF* x) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256 in[NB], out[NB];
  for (int b = 0; b < NB; ++b) in[b] = x[b];
  logf8x_avx2<NB>(in, out);
  for (int b = 0; b < NB; ++b) x[b] = VecF(out[b]);
#else
  for (int b = 0; b < NB; ++b) x[b] = x[b].log();
#endif
}

/// (c[b], s[b]) = (cos t[b], sin t[b]) for t in [0, 2pi) (t = fl(2pi_f32 v), as noise.py).
template <int NB>
inline void sincos2pi8x(const VecF* tv, VecF* c, VecF* s) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256 t[NB], r[NB], z[NB], ps[NB], pc[NB], j[NB];
  for (int b = 0; b < NB; ++b) t[b] = tv[b];
  for (int b = 0; b < NB; ++b) {
    j[b] = _mm256_round_ps(_mm256_mul_ps(t[b], _mm256_set1_ps(0.636619772f)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r[b] = _mm256_fnmadd_ps(j[b], _mm256_set1_ps(1.570796371e+00f), t[b]);  // C1 = fl(pi/2): exact
    r[b] = _mm256_fnmadd_ps(j[b], _mm256_set1_ps(-4.371138829e-08f), r[b]);  // C2 = fl(pi/2 - C1)
    r[b] = _mm256_fnmadd_ps(j[b], _mm256_set1_ps(-1.715124510e-15f), r[b]);  // C3 = fl(pi/2 - C1 - C2)
    z[b] = _mm256_mul_ps(r[b], r[b]);
    // sin(r) = r + r z S(z), cos(r) = 1 - z / 2 + z^2 C(z), |r| <= pi/4 (Cephes sinf / cosf).
    ps[b] = _mm256_fmadd_ps(_mm256_set1_ps(-1.9515295891e-4f), z[b], _mm256_set1_ps(8.3321608736e-3f));
    pc[b] = _mm256_fmadd_ps(_mm256_set1_ps(2.443315711809948e-5f), z[b],
                            _mm256_set1_ps(-1.388731625493765e-3f));
  }
  for (int b = 0; b < NB; ++b) {
    ps[b] = _mm256_fmadd_ps(ps[b], z[b], _mm256_set1_ps(-1.6666654611e-1f));
    pc[b] = _mm256_fmadd_ps(pc[b], z[b], _mm256_set1_ps(4.166664568298827e-2f));
  }
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  for (int b = 0; b < NB; ++b) {
    const __m256 sn = _mm256_fmadd_ps(_mm256_mul_ps(ps[b], z[b]), r[b], r[b]);
    const __m256 cs = _mm256_fmadd_ps(_mm256_mul_ps(pc[b], z[b]), z[b],
                                      _mm256_fnmadd_ps(z[b], _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    // quadrant q = j mod 4: cos t = cos r, -sin r, -cos r, sin r; sin t = sin r, cos r, -sin r, -cos r.
    const __m256i q = _mm256_cvtps_epi32(j[b]);
    const __m256 odd = _mm256_castsi256_ps(_mm256_srai_epi32(_mm256_slli_epi32(q, 31), 31));
    const __m256 cv = _mm256_blendv_ps(cs, sn, odd);
    const __m256 sv = _mm256_blendv_ps(sn, cs, odd);
    // cos negated for q = 1, 2 (bit 1 of q + 1); sin negated for q = 2, 3 (bit 1 of q).
    const __m256i cneg = _mm256_slli_epi32(_mm256_add_epi32(q, _mm256_set1_epi32(1)), 30);
    const __m256i sneg = _mm256_slli_epi32(q, 30);
    c[b] = VecF(_mm256_xor_ps(cv, _mm256_castsi256_ps(_mm256_and_si256(cneg, sign))));
    s[b] = VecF(_mm256_xor_ps(sv, _mm256_castsi256_ps(_mm256_and_si256(sneg, sign))));
  }
#else
  for (int b = 0; b < NB; ++b) {
    c[b] = tv[b].cos();
    s[b] = tv[b].sin();
  }
#endif
}

}  // namespace CPU_CAPABILITY
}  // namespace redge_kernels
