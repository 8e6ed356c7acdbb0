// Known-answer tests of the Philox4x32-10 generator (Random123's published kat_vectors) and of the
// noise transforms against values produced by redge_kernels/noise.py. No torch needed.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "check.h"
#include "philox.h"

using redge_kernels::philox4x32;

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

struct NoiseKat {
  uint64_t offset;
  uint32_t words[4];
  float z, gumbel;
};

// noise.py (torch ops) for seed 0x0123456789ABCDEF; z and G printed with 9 significant digits.
const uint64_t kSeed = 0x0123456789ABCDEFull;
const NoiseKat kNoise[] = {
    {0ull, {0xb850222eu, 0xc58cb04bu, 0x14a7a020u, 0x7a84fff9u}, 1.100689918e-01f, -9.231591821e-01f},
    {1ull, {0xadca1466u, 0x523e0d85u, 0x65401425u, 0xb299da3fu}, -3.810400963e-01f, 7.517436892e-02f},
    {7ull, {0x8e94991cu, 0xb890a831u, 0xdef850deu, 0x552b7a90u}, -1.963349879e-01f, 1.979485512e+00f},
    {8ull, {0xde733823u, 0x86e420d7u, 0xe97dcf0eu, 0x0dae9d94u}, -5.224834085e-01f, 2.385618687e+00f},
    {4294967295ull, {0x073402a4u, 0x9775331eu, 0x64c992adu, 0x325045acu}, -2.241515398e+00f, 7.024630904e-02f},
    {4294967296ull, {0xd9412d6au, 0x59dd3f68u, 0x9d46a012u, 0x5d27ddd9u}, -3.397414088e-01f, 7.191298008e-01f},
    {1099511627781ull, {0xde902808u, 0x97844de3u, 0x384a856du, 0x433992d2u}, -4.433750212e-01f, -4.151784778e-01f},
    {123456789012ull, {0x3a738d06u, 0x662b8d1eu, 0x1088cd14u, 0xcd3dc93fu}, -1.384743810e+00f, -1.007861376e+00f},
};

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
    const auto w = redge_kernels::noise_bits(kSeed, n.offset);
    for (int i = 0; i < 4; ++i) {
      CHECK(w.r[i] == n.words[i], "offset %llu word %d: got %08x, expected %08x",
            static_cast<unsigned long long>(n.offset), i, w.r[i], n.words[i]);
    }
    const float z = redge_kernels::normal_from_bits(w.r[0], w.r[1]);
    const float g = redge_kernels::gumbel_from_bits(w.r[2]);
    // Only last-ulp differences of log/cos/sqrt are allowed (plus the 9-digit printout).
    CHECK(ulps(z, n.z) <= 4, "offset %llu: z %.9e vs noise.py %.9e",
          static_cast<unsigned long long>(n.offset), z, n.z);
    CHECK(ulps(g, n.gumbel) <= 4, "offset %llu: G %.9e vs noise.py %.9e",
          static_cast<unsigned long long>(n.offset), g, n.gumbel);
  }
  // Uniform extremes stay finite: r2 = 0 and r2 = 2^32 - 1 give finite Gumbels (u strictly in (0, 1)).
  CHECK(std::isfinite(redge_kernels::gumbel_from_bits(0u)), "G(r2 = 0) not finite");
  CHECK(std::isfinite(redge_kernels::gumbel_from_bits(0xffffffffu)), "G(r2 = max) not finite");
  CHECK(redge_kernels::gumbel_from_bits(0xffffffffu) > 22.0f, "upper Gumbel tail too short: %g",
        redge_kernels::gumbel_from_bits(0xffffffffu));
  CHECK(std::isfinite(redge_kernels::normal_from_bits(0u, 0u)), "z(0, 0) not finite");
  // Reduced-round variants are distinct (the rounds argument is honoured).
  CHECK(philox4x32(0, 0, 0, 0, 0, 0, 7).r[0] != 0x6627e8d5u, "rounds ignored");
  TEST_MAIN_RETURN("test_philox");
}
