// The kernels compiled for x86-64 AVX2 + FMA (ATen's 256-bit AVX2 vectors plus the inline
// polynomials of noise_impl.h / row_kernels_impl.h). The build system compiles this translation
// unit, and only this one, with -mavx2 -mfma -mf16c -mbmi -mbmi2 -mpopcnt (setup.py ISA_FLAGS,
// CMakeLists.txt); ops_cpu.cpp select_kernels calls it only after a runtime check of the CPU.
// Built without those flags (another architecture), it falls back to the portable kernels.
// Everything it defines lives in namespace redge_kernels::AVX2 (and at::vec::AVX2).
#include "row_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && \
    defined(__BMI2__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "row_kernels_impl.h"
#include "lane_kernels_impl.h"

namespace redge_kernels {
const KernelTable& kernels_avx2() { return AVX2::lane_table("avx2"); }
}  // namespace redge_kernels

#else  // no AVX2 flags (not x86-64): the portable kernels
namespace redge_kernels {
const KernelTable& kernels_avx2() { return kernels_default(); }
}  // namespace redge_kernels
#endif
