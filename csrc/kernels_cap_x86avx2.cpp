// The per-row kernels compiled for x86-64 AVX2 + FMA (ATen's AVX2 vectors, Sleef exp/log/cos).
// The whole translation unit targets AVX2 through the pragma below (so one set of compiler flags
// builds every source); it is only called after a runtime check (ops_cpu.cpp select_kernels).
// Everything it defines lives in namespace redge_kernels::AVX2 (and at::vec::AVX2).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2,popcnt"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,popcnt")
#endif
// The pragma does not define the ISA macros that sleef.h and ATen's headers test: define them.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "row_kernels_impl.h"
#include "lane_kernels_impl.h"

namespace redge_kernels {
const KernelTable& kernels_avx2() { return AVX2::lane_table("avx2"); }
}  // namespace redge_kernels
#if defined(__clang__)
#pragma clang attribute pop
#endif

#else  // not x86-64: the portable kernels
#include "row_kernels.h"
namespace redge_kernels {
const KernelTable& kernels_avx2() { return kernels_default(); }
}  // namespace redge_kernels
#endif
