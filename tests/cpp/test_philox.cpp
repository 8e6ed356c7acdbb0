// Known-answer tests of the Philox4x32-10 generator (Random123's published kat_vectors) and of the
// noise transforms against values produced by redge_kernels/noise.py. No torch needed.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "check.h"
#include "noise_kat.h"
#include "philox.h"

using redge_kernels::philox4x32;
using redge_kernels::testing::kNoise;
using redge_kernels::testing::NoiseKat;

namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t expect[4];
};

// Random123 kat_vectors, philox4x32 with 10 rounds.
const Kat kKats[] = {
    {{0u, 0u, 0u, 0u}, {0u, 0u}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

const uint64_t kSeed = 0x0123456789ABCDEFull;

/// |a - b| in units of float32 ulp of b.
double ulps(float a, float b) {
  return std::fabs(static_cast<double>(a) - b) / std::ldexp(1.0, std::ilogb(b) - 23);
}

}  // namespace

int main() {
  for (const Kat& k : kKats) {
    const auto out = philox4x32(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) {
      CHECK(out.r[i] == k.expect[i], "word %d: got %08x, expected %08x", i, out.r[i], k.expect[i]);
    }
  }
  for (const NoiseKat& n : kNoise) {
    const float z = redge_kernels::normal_at(n.seed, n.row, n.col);
    const float g = redge_kernels::gumbel_at(n.seed, n.row, n.col);
    const uint32_t w = redge_kernels::noise_call(n.seed, n.row, n.col, 1).r[n.col & 3];
    CHECK(w == n.word1, "row %llu col %llu: stream-1 word %u vs noise.py %u",
          static_cast<unsigned long long>(n.row), static_cast<unsigned long long>(n.col), w, n.word1);
    // Only last-ulp differences of log/cos/sin/sqrt are allowed (plus the 8-digit printout).
    CHECK(ulps(z, n.z) <= 4, "row %llu col %llu: z %.9e vs noise.py %.9e",
          static_cast<unsigned long long>(n.row), static_cast<unsigned long long>(n.col), z, n.z);
    CHECK(ulps(g, n.gumbel) <= 4, "row %llu col %llu: G %.9e vs noise.py %.9e",
          static_cast<unsigned long long>(n.row), static_cast<unsigned long long>(n.col), g, n.gumbel);
  }
  // The counter layout: (col >> 2, row lo, row hi, stream).
  {
    const uint64_t row = (uint64_t(5) << 32) | 9u, col = 4 * 1234 + 3;
    const auto a = redge_kernels::noise_call(kSeed, row, col, 1);
    const auto b = philox4x32(1234u, 9u, 5u, 1u, static_cast<uint32_t>(kSeed),
                              static_cast<uint32_t>(kSeed >> 32));
    for (int i = 0; i < 4; ++i) CHECK(a.r[i] == b.r[i], "counter layout: word %d differs", i);
  }
  // Uniform extremes stay finite: r2 = 0 and r2 = 2^32 - 1 give finite Gumbels (u strictly in (0, 1)).
  CHECK(std::isfinite(redge_kernels::gumbel_from_bits(0u)), "G(r2 = 0) not finite");
  CHECK(std::isfinite(redge_kernels::gumbel_from_bits(0xffffffffu)), "G(r2 = max) not finite");
  CHECK(redge_kernels::gumbel_from_bits(0xffffffffu) > 22.0f, "upper Gumbel tail too short: %g",
        redge_kernels::gumbel_from_bits(0xffffffffu));
  CHECK(std::isfinite(redge_kernels::normal_from_bits(0u, 0u, false)) &&
            std::isfinite(redge_kernels::normal_from_bits(0u, 0u, true)),
        "z(0, 0) not finite");
  // Reduced-round variants are distinct (the rounds argument is honoured).
  CHECK(philox4x32(0, 0, 0, 0, 0, 0, 7).r[0] != 0x6627e8d5u, "rounds ignored");
  TEST_MAIN_RETURN("test_philox");
}
