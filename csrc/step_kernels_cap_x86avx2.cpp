// The step kernels compiled for x86-64 AVX2 + FMA, with the flags of kernels_cap_x86avx2.cpp
// (setup.py ISA_FLAGS, CMakeLists.txt): the same vector exp, reductions and noise as the fused
// AVX2 / AVX-512 kernels (whose results are bit-identical to each other). step_ops_cpu.cpp calls it
// only when select_kernels() picked an x86 set. Without the flags, the portable kernels.
#include "step_kernels.h"
#include "row_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && \
    defined(__BMI2__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "row_kernels_impl.h"
#include "step_kernels_impl.h"

namespace redge_kernels {
const StepTable& step_kernels_avx2() { return AVX2::step_table("avx2"); }
}  // namespace redge_kernels

#else
namespace redge_kernels {
const StepTable& step_kernels_avx2() { return step_kernels_default(); }
}  // namespace redge_kernels
#endif
