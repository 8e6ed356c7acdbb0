// Version-2 noise known answers shared by the C++ tests (test_philox: the scalar generator;
// test_kernels: the vectorized generators of every kernel set).
#pragma once

#include <cstdint>

namespace redge_kernels {
namespace testing {

struct NoiseKat {
  uint64_t seed, row, col;
  float z, gumbel;
  uint32_t word1;  // the column's stream-1 word (word col & 3 of its call)
};

// Version-2 known answers (seed, row, col) -> (z, G, stream-1 word), the values of
// tests/test_noise.py (KNOWN, KNOWN_STREAM1_WORD) produced by noise.py: all four word slots of a
// call, rows past 2^32 up to 2^64 - 1 (the counter's high word), the last column below 2^34.
inline const NoiseKat kNoise[] = {
    {0x0ull, 0x0ull, 0x0ull, 0.99113774f, -0.54276162f, 768504805u},
    {0x0ull, 0x0ull, 0x1ull, -0.92466241f, -0.95006019f, 323543615u},
    {0x0ull, 0x0ull, 0x2ull, -0.61760885f, 4.43139219f, 4244168940u},
    {0x0ull, 0x0ull, 0x3ull, -0.48206875f, 0.78896421f, 2726800091u},
    {0x0ull, 0x1ull, 0x5ull, -0.80728281f, 1.26334345f, 3237290514u},
    {0x123456789ABull, 0x7ull, 0x3E9ull, 1.75731552f, 0.89433467f, 2853551646u},
    {0x4000000000000005ull, 0x100000003ull, 0x3FFFFull, 0.29761970f, 0.79386359f, 2732861543u},
    {0x3039ull, 0xFFFFFFFFFFFFFFFFull, 0x3FFFFFFFFull, -0.70876145f, 1.98380482f, 3743043520u},
    {0x63ull, 0x10000000000ull, 0x200000006ull, -0.59406012f, 0.01362262f, 1601553701u},
};
}  // namespace testing
}  // namespace redge_kernels
