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

/// Rounds [first, 10) of NB interleaved blocks whose state is in c0..c3; stores the words.
template <int NB>
inline void philox_rounds(U32x8* c0, U32x8* c1, U32x8* c2, U32x8* c3, int first,
                          const PhiloxKeys& keys, Words8* out) {
  const U32x8 m0 = U32x8::broadcast(kPhiloxM0), m1 = U32x8::broadcast(kPhiloxM1);
  for (int r = first; r < kPhiloxRounds; ++r) {
    for (int b = 0; b < NB; ++b) {
      const U32x8 hi1 = mulhi_bcast(c2[b], m1), lo1 = mullo(c2[b], m1);
      const U32x8 hi0 = mulhi_bcast(c0[b], m0), lo0 = mullo(c0[b], m0);
      c2[b] = (hi0 ^ c3[b]) ^ U32x8::load(keys.k1[r]);
      c3[b] = lo0;
      c0[b] = (hi1 ^ c1[b]) ^ U32x8::load(keys.k0[r]);
      c1[b] = lo1;
    }
  }
  for (int b = 0; b < NB; ++b) {
    c0[b].store(out[b].w[0]);
    c1[b].store(out[b].w[1]);
    c2[b].store(out[b].w[2]);
    c3[b].store(out[b].w[3]);
  }
}

/// Row layout: the words of calls call0 + 8 b + i (block b, lane i) of one row, counter words
/// 1..3 = (row lo, row hi, stream) shared by every lane. Rounds 1 and 2 take the products
/// of the shared words as scalars (round 1: M1 c2; round 2: M0 c0, c0 being lane-independent
/// after round 1); the words are those of philox4x32 exactly.
template <int NB>
inline void philox_row8x(uint32_t call0, uint32_t w1, uint32_t w2, uint32_t w3,
                         const PhiloxKeys& keys, Words8* out) {
  const U32x8 m0 = U32x8::broadcast(kPhiloxM0), m1 = U32x8::broadcast(kPhiloxM1);
  // Round 1: (c0, c1) = (hi(M1 w2) ^ w1 ^ k0, lo(M1 w2)) are lane-independent scalars.
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * w2;
  const uint32_t a0 = static_cast<uint32_t>(p1 >> 32) ^ w1 ^ keys.k0[0][0];
  const uint32_t a1 = static_cast<uint32_t>(p1);
  // Round 2: M0 a0 is a scalar too.
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * a0;
  const U32x8 hi0s = U32x8::broadcast(static_cast<uint32_t>(p0 >> 32));
  const U32x8 lo0s = U32x8::broadcast(static_cast<uint32_t>(p0));
  const U32x8 a1v = U32x8::broadcast(a1);
  const U32x8 w3k = U32x8::broadcast(w3 ^ keys.k1[0][0]);
  U32x8 c0[NB], c1[NB], c2[NB], c3[NB];
  for (int b = 0; b < NB; ++b) {
    const U32x8 x0 = U32x8::iota(call0 + 8u * b);
    const U32x8 r1c2 = mulhi_bcast(x0, m0) ^ w3k;  // round 1's c2, c3
    const U32x8 r1c3 = mullo(x0, m0);
    c0[b] = (mulhi_bcast(r1c2, m1) ^ a1v) ^ U32x8::load(keys.k0[1]);
    c1[b] = mullo(r1c2, m1);
    c2[b] = (hi0s ^ r1c3) ^ U32x8::load(keys.k1[1]);
    c3[b] = lo0s;
  }
  philox_rounds<NB>(c0, c1, c2, c3, 2, keys, out);
}

/// Lane layout: the words of NB blocks of 8 calls with arbitrary counters.
template <int NB>
inline void philox_lanes8x(const Ctr8* ctr, const PhiloxKeys& keys, Words8* out) {
  U32x8 c[4][NB];
  for (int b = 0; b < NB; ++b) {
    for (int q = 0; q < 4; ++q) c[q][b] = U32x8::load(ctr[b].c[q]);
  }
  philox_rounds<NB>(c[0], c[1], c[2], c[3], 0, keys, out);
}

static_assert(VecF::size() == kNoiseLanes, "noise code assumes 8 float lanes");


/// Stream 0 of NB blocks of 8 calls: z[b][q] = the normal of word slot q (column 4j + q):
/// (z0, z1) = rho(w0) (cos, sin)(2pi v(w1)), (z2, z3) = rho(w2) (cos, sin)(2pi v(w3)).
template <int NB>
inline void normal4x(const Words8* w, VecF (*z)[4]) {
  VecF lg[2 * NB], t[2 * NB], c[2 * NB], s[2 * NB];
  for (int b = 0; b < NB; ++b) {
    for (int h = 0; h < 2; ++h) {
      lg[2 * b + h] = u32_to_f32v(w[b].w[2 * h], false) * VecF(kTwoM32) + VecF(kTwoM33);  // u
      t[2 * b + h] = (u32_to_f32v(w[b].w[2 * h + 1], false) * VecF(kTwoM32)) * VecF(kTwoPiF32);
    }
  }
  log8x<2 * NB>(lg);
  sincos2pi8x<2 * NB>(t, c, s);
  for (int b = 0; b < NB; ++b) {
    for (int h = 0; h < 2; ++h) {
      const VecF rho = (VecF(-2.0f) * lg[2 * b + h]).sqrt();
      z[b][2 * h] = rho * c[2 * b + h];
      z[b][2 * h + 1] = rho * s[2 * b + h];
    }
  }
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
  if constexpr (std::is_same_v<T, float>) {
    store_transposed_4x8(v, dst);
  } else {
    float f[kColsPerVec];
    store_transposed_4x8(v, f);
    for (int i = 0; i < kColsPerVec; ++i) dst[i] = static_cast<T>(f[i]);
  }
}

/// Row layout: the 32 words of 8 calls in column order (word q of call i -> column 4 i + q).
inline void store_words32(const Words8& w, uint32_t* dst) { store_transposed_4x8(w.w, dst); }

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
