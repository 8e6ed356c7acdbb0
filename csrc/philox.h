// Philox4x32-10 counter-based generator and the noise transforms of redge_kernels/noise.py
// (docs/SPEC.md "Randomness (noise contract, version 2)"), scalar reference versions. Header-only,
// no torch dependency, so the known-answer tests (tests/cpp) build without Python.
//
//   key     = (seed & 0xFFFFFFFF, seed >> 32)
//   counter = (col >> 2, row & 0xFFFFFFFF, row >> 32, stream)   (one call per 4 columns)
//   round   : (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
//             (k0, k1) <- (k0 + W0, k1 + W1)           (10 rounds)
//   stream 0: (z[4j], z[4j+1]) = rho(w0) (cos t(w1), sin t(w1)),
//             (z[4j+2], z[4j+3]) = rho(w2) (cos t(w3), sin t(w3)),
//             rho(w) = sqrt(-2 log(f32(w) 2^-32 + 2^-33)), t(w) = fl(f32(w) 2^-32 * 2pi_f32)
//   stream 1: G of column col = -log(-log u), u = (w + 1/2) 2^-32, w = word (col & 3),
//             evaluated without rounding u (noise.py).
#pragma once

#include <cmath>
#include <cstdint>

namespace redge_kernels {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;  // round multipliers
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // Weyl key increments
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

constexpr float kTwoM32 = 2.3283064365386963e-10f;  // 2^-32 (exact)
constexpr float kTwoM33 = 1.1641532182693481e-10f;  // 2^-33 (exact)
constexpr float kTwoPiF32 = 6.2831854820251465f;     // float32(2 pi), as noise.py's _TWO_PI_F32

struct PhiloxOut {
  uint32_t r[4];
};

/// Philox4x32 with `rounds` rounds on counter (c0..c3) and key (k0, k1) (Random123 philox4x32_R).
inline PhiloxOut philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                            uint32_t k1, int rounds = kPhiloxRounds) {
  for (int i = 0; i < rounds; ++i) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return PhiloxOut{{c0, c1, c2, c3}};
}

/// Columns must stay below 2^34: the call index col >> 2 is one 32-bit counter word.
constexpr uint64_t kMaxColumns = uint64_t(1) << 34;

/// Counter streams (docs/SPEC.md "Randomness"): 0 = the Gaussian z, 1 = the Gumbel uniforms.
constexpr uint32_t kStreamNormal = 0u;
constexpr uint32_t kStreamGumbel = 1u;

/// The four words of the call that holds column `col` of row `row` in `stream` (noise.py).
inline PhiloxOut noise_call(uint64_t seed, uint64_t row, uint64_t col, uint32_t stream) {
  return philox4x32(static_cast<uint32_t>(col >> 2), static_cast<uint32_t>(row),
                    static_cast<uint32_t>(row >> 32), stream, static_cast<uint32_t>(seed),
                    static_cast<uint32_t>(seed >> 32));
}

/// Round-to-nearest float32 of a uint32 (one rounding).
inline float u32_to_f32(uint32_t r) { return static_cast<float>(r); }

/// Stream 0: one Box-Muller output, rho(w_rho) * (cos or sin)(2 pi v(w_angle)) (scalar libm
/// version; the vectorized kernels use their own log / cos / sin and may differ in the last ulp).
inline float normal_from_bits(uint32_t w_rho, uint32_t w_angle, bool sine) {
  const float u = u32_to_f32(w_rho) * kTwoM32 + kTwoM33;
  const float t = (u32_to_f32(w_angle) * kTwoM32) * kTwoPiF32;
  return std::sqrt(-2.0f * std::log(u)) * (sine ? std::sin(t) : std::cos(t));
}

/// z of column `col` of row `row` (stream 0; word pair (0, 1) for col & 3 < 2, else (2, 3)).
inline float normal_at(uint64_t seed, uint64_t row, uint64_t col) {
  const PhiloxOut w = noise_call(seed, row, col, kStreamNormal);
  const int pair = static_cast<int>(col & 2);
  return normal_from_bits(w.r[pair], w.r[pair + 1], (col & 1) != 0);
}

/// Stream 1: float32 Gumbel(0, 1) = -log(-log u) of the column's word `word`, complement trick
/// of noise.py.
inline float gumbel_from_bits(uint32_t word) {
  const float w = u32_to_f32(~word) * kTwoM32 + kTwoM33;  // 1 - u
  const float v = u32_to_f32(word) * kTwoM32 + kTwoM33;   // u
  float e;
  if (w < 0.5f) {
    const float one_minus_w = 1.0f - w;
    const float denom = 1.0f - one_minus_w;  // exact (Sterbenz)
    e = (one_minus_w == 1.0f) ? w : (-std::log(one_minus_w) * w / (denom == 0.0f ? 1.0f : denom));
  } else {
    e = -std::log(v);
  }
  return -std::log(e);
}

/// G of column `col` of row `row` (stream 1, word col & 3).
inline float gumbel_at(uint64_t seed, uint64_t row, uint64_t col) {
  return gumbel_from_bits(noise_call(seed, row, col, kStreamGumbel).r[col & 3]);
}

}  // namespace redge_kernels
