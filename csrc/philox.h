// Philox4x32-10 counter-based generator and the noise transforms of redge_kernels/noise.py
// (docs/SPEC.md "Randomness"), scalar reference versions. Header-only, no torch dependency, so the
// known-answer tests (tests/cpp) build without Python.
//
//   key     = (seed & 0xFFFFFFFF, seed >> 32)
//   counter = (offset & 0xFFFFFFFF, offset >> 32, 0, 0),  offset = row * K + col  (int64)
//   round   : (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
//             (k0, k1) <- (k0 + W0, k1 + W1)           (10 rounds)
//   stream 0: z = sqrt(-2 log u1) * cos(2pi_f32 * u2),  u1 = f32(r0) 2^-32 + 2^-33, u2 = f32(r1) 2^-32
//   stream 1: G = -log(-log u) with u = (r2 + 1/2) 2^-32, evaluated without rounding u (noise.py).
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

/// The four words for element `offset` of a call with `seed` (noise.py's noise_bits).
inline PhiloxOut noise_bits(uint64_t seed, uint64_t offset) {
  return philox4x32(static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), 0u, 0u,
                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

/// Round-to-nearest float32 of a uint32 (one rounding).
inline float u32_to_f32(uint32_t r) { return static_cast<float>(r); }

/// Stream 0: float32 standard normal by Box-Muller (scalar libm version; the vectorized kernels
/// use ATen's Sleef log/cos and may differ in the last ulp).
inline float normal_from_bits(uint32_t r0, uint32_t r1) {
  const float u1 = u32_to_f32(r0) * kTwoM32 + kTwoM33;
  const float u2 = u32_to_f32(r1) * kTwoM32;
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(u2 * kTwoPiF32);
}

/// Stream 1: float32 Gumbel(0, 1) = -log(-log u), complement trick of noise.py.
inline float gumbel_from_bits(uint32_t r2) {
  const float w = u32_to_f32(~r2) * kTwoM32 + kTwoM33;  // 1 - u
  const float v = u32_to_f32(r2) * kTwoM32 + kTwoM33;   // u
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

}  // namespace redge_kernels
