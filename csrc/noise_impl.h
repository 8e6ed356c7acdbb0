// The kernels' noise (docs/SPEC.md "Randomness (noise contract, version 2)"), vectorized:
// Philox4x32-10 on 8 calls at a time, then Box-Muller (stream 0, both outputs of every pair) or
// the Gumbel transform (stream 1) in float32, bit-identical to redge_kernels/noise.py in the
// Philox words and within the last ulps of log / cos / sin in z and G.
//
// A call covers the four columns 4j .. 4j+3 of one row: counter (j, row lo, row hi, stream).
// Two layouts use it:
//   * rows (one row at a time, row_kernels_impl.h): the 8 lanes of a vector are 8 consecutive
//     calls of one row (32 columns); the four output vectors are transposed to column order;
//   * lanes (a block of rows, one row per lane, lane_kernels_impl.h): the 8 lanes are one call
//     of 8 consecutive rows; output word q is column 4j + q of those rows, no transposition.
// Included by row_kernels_impl.h inside namespace redge_kernels::CPU_CAPABILITY.
#pragma once

constexpr int kNoiseLanes = 8;   // Philox calls per vector
constexpr int kNoiseBlocks = 4;  // vectors of calls generated together (ILP)
constexpr int kColsPerVec = 4 * kNoiseLanes;  // row layout: columns per vector of calls

/// The four output words of 8 Philox calls: w[q][i] = word q of call (lane) i.
struct Words8 {
  alignas(32) uint32_t w[4][kNoiseLanes];
};

/// Counters of 8 calls, one per lane: c[q][i] = counter word q of call i (the lane layout).
struct Ctr8 {
  alignas(32) uint32_t c[4][kNoiseLanes];
};

#if defined(CPU_CAPABILITY_AVX2)
// High 32-bit halves of m * a for the 8 uint32 lanes of a (the low halves are _mm256_mullo_epi32).
inline __m256i mulhi8(__m256i a, __m256i m) {
  const __m256i even = _mm256_mul_epu32(a, m);                         // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);  // lanes 1, 3, 5, 7
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
#endif

/// The ten Philox round keys of one seed, each broadcast to 8 lanes (built once per row or call,
/// so that the rounds take them as memory operands instead of re-broadcasting them).
struct PhiloxKeys {
  alignas(32) uint32_t k0[kPhiloxRounds][kNoiseLanes];
  alignas(32) uint32_t k1[kPhiloxRounds][kNoiseLanes];
  PhiloxKeys(uint32_t key0, uint32_t key1) {
    for (int r = 0; r < kPhiloxRounds; ++r) {
      for (int i = 0; i < kNoiseLanes; ++i) {
        k0[r][i] = key0;
        k1[r][i] = key1;
      }
      key0 += kPhiloxW0;
      key1 += kPhiloxW1;
    }
  }
};

#if defined(CPU_CAPABILITY_AVX2)
/// Rounds [first, 10) of NB interleaved blocks whose state is in c0..c3; stores the words.
template <int NB>
inline void philox_rounds(__m256i* c0, __m256i* c1, __m256i* c2, __m256i* c3, int first,
                          const PhiloxKeys& keys, Words8* out) {
  auto key = [](const uint32_t* k) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(k)); };
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  for (int r = first; r < kPhiloxRounds; ++r) {
    for (int b = 0; b < NB; ++b) {
      const __m256i hi1 = mulhi8(c2[b], m1), lo1 = _mm256_mullo_epi32(c2[b], m1);
      const __m256i hi0 = mulhi8(c0[b], m0), lo0 = _mm256_mullo_epi32(c0[b], m0);
      c2[b] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[b]), key(keys.k1[r]));
      c3[b] = lo0;
      c0[b] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[b]), key(keys.k0[r]));
      c1[b] = lo1;
    }
  }
  for (int b = 0; b < NB; ++b) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].w[0]), c0[b]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].w[1]), c1[b]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].w[2]), c2[b]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].w[3]), c3[b]);
  }
}
#endif

/// Row layout: the words of calls call0 + 8 b + i (block b, lane i) of one row, counter words
/// 1..3 = (row lo, row hi, stream) shared by every lane. AVX2: rounds 1 and 2 take the products
/// of the shared words as scalars (round 1: M1 c2; round 2: M0 c0, c0 being lane-independent
/// after round 1); the words are those of philox4x32 exactly.
template <int NB>
inline void philox_row8x(uint32_t call0, uint32_t w1, uint32_t w2, uint32_t w3,
                         const PhiloxKeys& keys, Words8* out) {
#if defined(CPU_CAPABILITY_AVX2)
  auto key = [](const uint32_t* k) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(k)); };
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  // Round 1: (c0, c1) = (hi(M1 w2) ^ w1 ^ k0, lo(M1 w2)) are lane-independent scalars.
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * w2;
  const uint32_t a0 = static_cast<uint32_t>(p1 >> 32) ^ w1 ^ keys.k0[0][0];
  const uint32_t a1 = static_cast<uint32_t>(p1);
  // Round 2: M0 a0 is a scalar too.
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * a0;
  const __m256i hi0s = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(p0 >> 32)));
  const __m256i lo0s = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(p0)));
  const __m256i a1v = _mm256_set1_epi32(static_cast<int>(a1));
  const __m256i w3k = _mm256_set1_epi32(static_cast<int>(w3 ^ keys.k1[0][0]));
  __m256i c0[NB], c1[NB], c2[NB], c3[NB];
  for (int b = 0; b < NB; ++b) {
    const __m256i x0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(call0 + 8u * b)), lane);
    const __m256i r1c2 = _mm256_xor_si256(mulhi8(x0, m0), w3k);  // round 1's c2, c3
    const __m256i r1c3 = _mm256_mullo_epi32(x0, m0);
    c0[b] = _mm256_xor_si256(_mm256_xor_si256(mulhi8(r1c2, m1), a1v), key(keys.k0[1]));
    c1[b] = _mm256_mullo_epi32(r1c2, m1);
    c2[b] = _mm256_xor_si256(_mm256_xor_si256(hi0s, r1c3), key(keys.k1[1]));
    c3[b] = lo0s;
  }
  philox_rounds<NB>(c0, c1, c2, c3, 2, keys, out);
#else
  for (int b = 0; b < NB; ++b) {
    for (int i = 0; i < kNoiseLanes; ++i) {
      const PhiloxOut o = philox4x32(call0 + static_cast<uint32_t>(8 * b + i), w1, w2, w3,
                                     keys.k0[0][0], keys.k1[0][0]);
      for (int q = 0; q < 4; ++q) out[b].w[q][i] = o.r[q];
    }
  }
#endif
}

/// Lane layout: the words of NB blocks of 8 calls with arbitrary counters.
template <int NB>
inline void philox_lanes8x(const Ctr8* ctr, const PhiloxKeys& keys, Words8* out) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256i c[4][NB];
  for (int b = 0; b < NB; ++b) {
    for (int q = 0; q < 4; ++q) c[q][b] = _mm256_load_si256(reinterpret_cast<const __m256i*>(ctr[b].c[q]));
  }
  philox_rounds<NB>(c[0], c[1], c[2], c[3], 0, keys, out);
#else
  for (int b = 0; b < NB; ++b) {
    for (int i = 0; i < kNoiseLanes; ++i) {
      const PhiloxOut o = philox4x32(ctr[b].c[0][i], ctr[b].c[1][i], ctr[b].c[2][i],
                                     ctr[b].c[3][i], keys.k0[0][0], keys.k1[0][0]);
      for (int q = 0; q < 4; ++q) out[b].w[q][i] = o.r[q];
    }
  }
#endif
}

using VecF = Vectorized<float>;
static_assert(VecF::size() == kNoiseLanes, "noise code assumes 8 float lanes");

/// f32(r) (round to nearest) of 8 uint32 lanes; `complement` gives f32(~r).
inline VecF u32_to_f32v(const uint32_t* r, bool complement) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r));  // r may be unaligned
  if (complement) v = _mm256_xor_si256(v, _mm256_set1_epi32(-1));
  // r = hi * 2^16 + lo: both halves convert exactly, the sum is rounded once.
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 16));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)));
  return VecF(_mm256_add_ps(_mm256_mul_ps(hi, _mm256_set1_ps(65536.0f)), lo));
#else
  alignas(32) float f[kNoiseLanes];
  for (int i = 0; i < kNoiseLanes; ++i) f[i] = redge_kernels::u32_to_f32(complement ? ~r[i] : r[i]);
  return VecF::loadu(f);
#endif
}

#if defined(CPU_CAPABILITY_AVX2)
// Inline float log, cos and sin for the Box-Muller and Gumbel transforms (no calls into Sleef):
// Cephes' logf and sinf/cosf polynomials (about 1 ulp), valid for the arguments that occur there:
//   logf8x: x a positive normal float (u in [2^-33, 1]; the Gumbel transform's u, 1 - w and E);
//   sincos2pi8x: t = fl(2pi_f32 v) in [0, 2pi), reduced by j = round(t 2/pi) with pi/2 split in
//            three floats (C1 exact in j C1, fused multiply-adds), so r = t - j pi/2 keeps its
//            relative accuracy near the zeros of cos and sin.
// Each function works on NB independent vectors at once, statement by statement, so the NB
// dependency chains of the polynomials overlap; the operations on each vector are the same for
// any NB.

/// out[b] = log(x[b]) for positive normal x: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log = e ln2 + log(m).
template <int NB>
inline void logf8x(const __m256* x, __m256* out) {
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

/// (c[b], s[b]) = (cos t[b], sin t[b]) for t in [0, 2pi) (t = fl(2pi_f32 v), as noise.py).
template <int NB>
inline void sincos2pi8x(const __m256* t, __m256* c, __m256* s) {
  __m256 r[NB], z[NB], ps[NB], pc[NB], j[NB];
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
    c[b] = _mm256_xor_ps(cv, _mm256_castsi256_ps(_mm256_and_si256(cneg, sign)));
    s[b] = _mm256_xor_ps(sv, _mm256_castsi256_ps(_mm256_and_si256(sneg, sign)));
  }
}
#endif

/// Stream 0 of NB blocks of 8 calls: z[b][q] = the normal of word slot q (column 4j + q):
/// (z0, z1) = rho(w0) (cos, sin)(2pi v(w1)), (z2, z3) = rho(w2) (cos, sin)(2pi v(w3)).
template <int NB>
inline void normal4x(const Words8* w, VecF (*z)[4]) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256 u[2 * NB], t[2 * NB], lg[2 * NB], c[2 * NB], s[2 * NB];
  for (int b = 0; b < NB; ++b) {
    for (int h = 0; h < 2; ++h) {
      u[2 * b + h] = u32_to_f32v(w[b].w[2 * h], false) * VecF(kTwoM32) + VecF(kTwoM33);
      t[2 * b + h] = _mm256_mul_ps(u32_to_f32v(w[b].w[2 * h + 1], false) * VecF(kTwoM32),
                                   _mm256_set1_ps(kTwoPiF32));
    }
  }
  logf8x<2 * NB>(u, lg);
  sincos2pi8x<2 * NB>(t, c, s);
  for (int b = 0; b < NB; ++b) {
    for (int h = 0; h < 2; ++h) {
      const __m256 rho = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), lg[2 * b + h]));
      z[b][2 * h] = VecF(_mm256_mul_ps(rho, c[2 * b + h]));
      z[b][2 * h + 1] = VecF(_mm256_mul_ps(rho, s[2 * b + h]));
    }
  }
#else
  for (int b = 0; b < NB; ++b) {
    for (int h = 0; h < 2; ++h) {
      const VecF u = u32_to_f32v(w[b].w[2 * h], false) * VecF(kTwoM32) + VecF(kTwoM33);
      const VecF t = (u32_to_f32v(w[b].w[2 * h + 1], false) * VecF(kTwoM32)) * VecF(kTwoPiF32);
      const VecF rho = (VecF(-2.0f) * u.log()).sqrt();
      z[b][2 * h] = rho * t.cos();
      z[b][2 * h + 1] = rho * t.sin();
    }
  }
#endif
}

/// log of NB vectors of positive normal floats: the inline polynomial on AVX2, Sleef elsewhere.
template <int NB>
inline void log8x(VecF* x) {
#if defined(CPU_CAPABILITY_AVX2)
  __m256 in[NB], out[NB];
  for (int b = 0; b < NB; ++b) in[b] = x[b];
  logf8x<NB>(in, out);
  for (int b = 0; b < NB; ++b) x[b] = VecF(out[b]);
#else
  for (int b = 0; b < NB; ++b) x[b] = x[b].log();
#endif
}

/// Stream 1: G = -log(E), E = -log(u) by the complement trick (noise.gumbel_from_bits), for the
/// NB groups of 8 words w[0], ..., w[NB - 1].
template <int NB>
inline void gumbel8x(const uint32_t* const* words, VecF* g) {
  const VecF one(1.0f), zero(0.0f);
  VecF w[NB], lg[NB], small[NB], omw[NB];
  for (int b = 0; b < NB; ++b) {
    w[b] = u32_to_f32v(words[b], true) * VecF(kTwoM32) + VecF(kTwoM33);         // 1 - u
    const VecF v = u32_to_f32v(words[b], false) * VecF(kTwoM32) + VecF(kTwoM33);  // u
    omw[b] = one - w[b];
    small[b] = w[b] < VecF(0.5f);
    // One log serves both branches: log(1 - w) where w < 1/2, log(v) elsewhere.
    lg[b] = VecF::blendv(v, omw[b], small[b]);
  }
  log8x<NB>(lg);
  for (int b = 0; b < NB; ++b) {
    const VecF denom = one - omw[b];
    const VecF e_small = VecF::blendv((lg[b].neg() * w[b]) / VecF::blendv(denom, one, denom == zero),
                                      w[b], omw[b] == one);
    g[b] = VecF::blendv(lg[b].neg(), e_small, small[b]);  // E, a positive normal float
  }
  log8x<NB>(g);
  for (int b = 0; b < NB; ++b) g[b] = g[b].neg();
}

inline VecF gumbel8(const uint32_t* words) {
  VecF g;
  gumbel8x<1>(&words, &g);
  return g;
}

template <typename T>
inline void store8(const VecF& v, T* dst) {
  if constexpr (std::is_same_v<T, float>) {
    v.store(dst);
  } else {
    alignas(32) float f[kNoiseLanes];
    v.store(f);
    for (int i = 0; i < kNoiseLanes; ++i) dst[i] = static_cast<T>(f[i]);
  }
}

/// Row layout: the 4 vectors v[q] (word slot q of calls 0..7) as the 32 columns 4 i + q, i.e.
/// a 4 x 8 transpose; dst[0 .. 32).
template <typename T>
inline void store_cols32(const VecF* v, T* dst) {
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));  // calls 0 | 4
    const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));  // calls 1 | 5
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));  // calls 2 | 6
    const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));  // calls 3 | 7
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
    _mm256_storeu_ps(dst + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(dst + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
    return;
  }
#endif
  alignas(32) float f[4][kNoiseLanes];
  for (int q = 0; q < 4; ++q) v[q].store(f[q]);
  for (int i = 0; i < kNoiseLanes; ++i) {
    for (int q = 0; q < 4; ++q) dst[4 * i + q] = static_cast<T>(f[q][i]);
  }
}

/// Row layout: the 32 words of 8 calls in column order (word q of call i -> column 4 i + q).
inline void store_words32(const Words8& w, uint32_t* dst) {
#if defined(CPU_CAPABILITY_AVX2)
  VecF v[4];
  for (int q = 0; q < 4; ++q) v[q] = VecF(_mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(w.w[q]))));
  store_cols32<float>(v, reinterpret_cast<float*>(dst));  // a permutation of bits only
#else
  for (int i = 0; i < kNoiseLanes; ++i) {
    for (int q = 0; q < 4; ++q) dst[4 * i + q] = w.w[q][i];
  }
#endif
}

/// Row layout, stream 0: z of columns 4 call0 .. 4 call0 + n - 1 of row `row` (n a multiple of 8).
template <typename T, int NB>
inline void row_normal_blocks(uint64_t row, uint32_t call0, int64_t n, const PhiloxKeys& keys, T* z) {
  Words8 w[NB];
  VecF zv[NB][4];
  philox_row8x<NB>(call0, static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32),
                   kStreamNormal, keys, w);
  normal4x<NB>(w, zv);
  for (int b = 0; b < NB; ++b) {
    const int64_t c = static_cast<int64_t>(b) * kColsPerVec;
    if (c + kColsPerVec <= n) {
      store_cols32<T>(zv[b], z + c);
    } else if (c < n) {
      T tmp[kColsPerVec];
      store_cols32<T>(zv[b], tmp);
      std::copy(tmp, tmp + (n - c), z + c);
    }
  }
}

/// Row layout, stream 1: the words of columns 4 call0 .. 4 call0 + n - 1 (n a multiple of 8).
template <int NB>
inline void row_word_blocks(uint64_t row, uint32_t call0, int64_t n, const PhiloxKeys& keys,
                            uint32_t* words) {
  Words8 w[NB];
  philox_row8x<NB>(call0, static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32),
                   kStreamGumbel, keys, w);
  for (int b = 0; b < NB; ++b) {
    const int64_t c = static_cast<int64_t>(b) * kColsPerVec;
    if (c + kColsPerVec <= n) {
      store_words32(w[b], words + c);
    } else if (c < n) {
      uint32_t tmp[kColsPerVec];
      store_words32(w[b], tmp);
      std::copy(tmp, tmp + (n - c), words + c);
    }
  }
}

/// Runs blocks(call, n_cols, out offset) over columns [0, n) of a row in groups of kNoiseBlocks
/// vectors (the last group with as many vectors as it needs: 1..4).
template <typename F4, typename F3, typename F2, typename F1>
inline void for_call_groups(int64_t n, F4 f4, F3 f3, F2 f2, F1 f1) {
  constexpr int64_t kGroup = kNoiseBlocks * kColsPerVec;
  int64_t c = 0;
  for (; c + kGroup <= n; c += kGroup) f4(c, kGroup);
  const int64_t rest = n - c;
  if (rest <= 0) return;
  switch ((rest + kColsPerVec - 1) / kColsPerVec) {
    case 1: f1(c, rest); break;
    case 2: f2(c, rest); break;
    case 3: f3(c, rest); break;
    default: f4(c, rest); break;
  }
}

/// z (stream 0) of columns [4 call0, 4 call0 + n) of row `row`, n a multiple of 8.
template <typename T>
void row_normal(uint64_t row, uint32_t call0, int64_t n, const PhiloxKeys& keys, T* z) {
  auto at = [&](auto nb) {
    return [&, nb](int64_t c, int64_t m) {
      row_normal_blocks<T, decltype(nb)::value>(row, call0 + static_cast<uint32_t>(c / 4), m, keys, z + c);
    };
  };
  for_call_groups(n, at(std::integral_constant<int, 4>{}), at(std::integral_constant<int, 3>{}),
                  at(std::integral_constant<int, 2>{}), at(std::integral_constant<int, 1>{}));
}

/// Stream-1 words of columns [4 call0, 4 call0 + n) of row `row`, n a multiple of 8.
inline void row_words(uint64_t row, uint32_t call0, int64_t n, const PhiloxKeys& keys,
                      uint32_t* words) {
  auto at = [&](auto nb) {
    return [&, nb](int64_t c, int64_t m) {
      row_word_blocks<decltype(nb)::value>(row, call0 + static_cast<uint32_t>(c / 4), m, keys, words + c);
    };
  };
  for_call_groups(n, at(std::integral_constant<int, 4>{}), at(std::integral_constant<int, 3>{}),
                  at(std::integral_constant<int, 2>{}), at(std::integral_constant<int, 1>{}));
}

/// G[j] = Gumbel of words[j] for j < n (n a multiple of 8).
template <typename T>
void gumbel_from_words(const uint32_t* words, int64_t n, T* g) {
  int64_t j = 0;
  for (; j + kNoiseBlocks * kNoiseLanes <= n; j += kNoiseBlocks * kNoiseLanes) {
    const uint32_t* ws[kNoiseBlocks];
    VecF gv[kNoiseBlocks];
    for (int h = 0; h < kNoiseBlocks; ++h) ws[h] = words + j + h * kNoiseLanes;
    gumbel8x<kNoiseBlocks>(ws, gv);
    for (int h = 0; h < kNoiseBlocks; ++h) store8(gv[h], g + j + h * kNoiseLanes);
  }
  for (; j < n; j += kNoiseLanes) store8(gumbel8(words + j), g + j);
}

/// The noise of one row (z, raw stream-1 words in column order, or G; any may be null), written
/// to columns [0, kp): the padding [K, kp) gets the noise of those columns (finite; it meets
/// -inf logits). Columns are global vocabulary indices (docs/SPEC.md), so the noise of a column
/// depends on (seed, row, column) only, not on K.
template <typename T>
struct RowNoise {
  int64_t K, kp;
  PhiloxKeys keys;
  bool want_z, want_bits, want_g;
  int64_t row0;                 // global row of local row 0 (RowArgs::row_start)
  std::vector<uint32_t> words;  // stream-1 words when G is wanted

  RowNoise(int64_t K_, uint32_t k0, uint32_t k1, bool z, bool bits, bool g, int64_t row0_ = 0)
      : K(K_), kp(padded(K_)), keys(k0, k1), want_z(z), want_bits(bits), want_g(g), row0(row0_) {
    if (want_g) words.resize(static_cast<size_t>(kp));
  }

  /// Noise of local row r: the Philox row words hold the global row row0 + r.
  void get(int64_t r, int64_t /*row_end*/, T* z, uint32_t* bits, T* g) {
    const uint64_t row = static_cast<uint64_t>(row0 + r);
    if (want_z) row_normal<T>(row, 0u, kp, keys, z);
    if (want_bits) row_words(row, 0u, kp, keys, bits);
    if (want_g) {
      row_words(row, 0u, kp, keys, words.data());
      gumbel_from_words<T>(words.data(), kp, g);
    }
  }
};

/// The noise of columns [col0, col0 + n) of row `row` (any col0, any n >= 0; z or g may be
/// null). A column group cut by col0 computes its whole call and keeps its lanes.
inline void noise_row(uint64_t row, uint64_t col0, int64_t n, const PhiloxKeys& keys, float* z,
                      float* g) {
  if (n <= 0) return;
  const uint64_t start = col0 & ~uint64_t(7);  // whole blocks of 8 columns (2 calls)
  const int64_t lead = static_cast<int64_t>(col0 - start);
  const int64_t whole = lead == 0 ? n / 8 * 8 : 0;  // written straight into the outputs
  const uint32_t call0 = static_cast<uint32_t>(start >> 2);
  std::vector<uint32_t> words;
  auto run = [&](float* zo, float* go, uint32_t c0, int64_t m) {
    if (zo) row_normal<float>(row, c0, m, keys, zo);
    if (go) {
      words.resize(static_cast<size_t>(m));
      row_words(row, c0, m, keys, words.data());
      gumbel_from_words<float>(words.data(), m, go);
    }
  };
  if (whole > 0) run(z, g, call0, whole);
  if (whole == n) return;
  // The rest (a cut first block, or a tail of fewer than 8 columns) through scratch.
  const int64_t m = padded(lead + n) - whole;
  std::vector<float> zt(z ? m : 0), gt(g ? m : 0);
  run(z ? zt.data() : nullptr, g ? gt.data() : nullptr, call0 + static_cast<uint32_t>(whole / 4), m);
  const int64_t cnt = n - whole;
  if (z) std::copy(zt.data() + lead, zt.data() + lead + cnt, z + whole);
  if (g) std::copy(gt.data() + lead, gt.data() + lead + cnt, g + whole);
}

/// The noise of rows [row0, row0 + rows) x columns [col0, col0 + n) in the lane layout (one call
/// of 8 rows per vector), scattered into the row-major z / g (row stride ld): for short rows.
inline void noise_rows_lanes(uint64_t row0, int64_t rows, uint64_t col0, int64_t n, int64_t ld,
                             const PhiloxKeys& keys, float* z, float* g) {
  const uint64_t g0 = col0 >> 2, g1 = (col0 + static_cast<uint64_t>(n) - 1) >> 2;
  for (int64_t o = 0; o < rows; o += kNoiseLanes) {
    for (uint64_t j = g0; j <= g1; ++j) {
      for (int stream = 0; stream < 2; ++stream) {
        float* out = stream == 0 ? z : g;
        if (out == nullptr) continue;
        Ctr8 c;
        for (int i = 0; i < kNoiseLanes; ++i) {
          const uint64_t row = row0 + static_cast<uint64_t>(o + i);
          c.c[0][i] = static_cast<uint32_t>(j);
          c.c[1][i] = static_cast<uint32_t>(row);
          c.c[2][i] = static_cast<uint32_t>(row >> 32);
          c.c[3][i] = static_cast<uint32_t>(stream);
        }
        Words8 w;
        philox_lanes8x<1>(&c, keys, &w);
        VecF cols[4];
        if (stream == 0) {
          normal4x<1>(&w, &cols);
        } else {
          const uint32_t* ws[4] = {w.w[0], w.w[1], w.w[2], w.w[3]};
          gumbel8x<4>(ws, cols);
        }
        alignas(32) float v[kNoiseLanes];
        for (int q = 0; q < 4; ++q) {
          const uint64_t col = 4 * j + static_cast<uint64_t>(q);
          if (col < col0 || col >= col0 + static_cast<uint64_t>(n)) continue;
          cols[q].store(v);
          for (int i = 0; i < kNoiseLanes && o + i < rows; ++i) {
            out[(o + i) * ld + static_cast<int64_t>(col - col0)] = v[i];
          }
        }
      }
    }
  }
}

/// The noise of rows [row0, row0 + rows) x columns [col0, col0 + n) (row-major, row stride ld;
/// z or g may be null), float32: the bulk noise op of the tests and of the benchmark's noise
/// floor. Short rows use the lane layout (fewer wasted calls), long rows the row layout.
inline void noise_rows(uint64_t row0, int64_t rows, uint64_t col0, int64_t n, int64_t ld,
                       uint32_t k0, uint32_t k1, float* z, float* g) {
  if (rows <= 0 || n <= 0) return;
  const PhiloxKeys keys(k0, k1);
  if (n < kColsPerVec) {
    noise_rows_lanes(row0, rows, col0, n, ld, keys, z, g);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    noise_row(row0 + static_cast<uint64_t>(r), col0, n, keys, z ? z + r * ld : nullptr,
              g ? g + r * ld : nullptr);
  }
}
