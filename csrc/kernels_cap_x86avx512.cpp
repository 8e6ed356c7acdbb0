// The kernels compiled for x86-64 AVX-512 (F, DQ, BW, VL): the AVX2 code of the other x86 unit
// (256-bit vectors, the same operations in the same order, so bit-identical results), encoded
// with AVX-512VL, which gives the compiler 32 vector registers instead of 16 for the interleaved
// Philox and polynomial blocks. The build system compiles this translation unit, and only this
// one, with the AVX2 flags plus -mavx512f -mavx512dq -mavx512bw -mavx512vl and the flags that
// keep GCC from emitting any 512-bit (zmm) instruction (setup.py ISA_FLAGS and _NO_ZMM,
// CMakeLists.txt; tests/test_cpu_isa.py checks the built unit); ops_cpu.cpp select_kernels
// calls it only after a runtime check of the CPU.
// Everything it defines lives in its own namespaces redge_kernels::AVX512VL and at::vec::AVX512VL
// (not libtorch's AVX512, whose vectors are 512 bits wide).
#include "row_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && \
    defined(__BMI2__) && defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__)
#define CPU_CAPABILITY AVX512VL
#define CPU_CAPABILITY_AVX2
#include "row_kernels_impl.h"
#include "lane_kernels_impl.h"

namespace redge_kernels {
const KernelTable& kernels_avx512() { return AVX512VL::lane_table("avx512"); }
}  // namespace redge_kernels

#else  // no AVX-512 flags: the AVX2 (or, further down, the portable) kernels
namespace redge_kernels {
const KernelTable& kernels_avx512() { return kernels_avx2(); }
}  // namespace redge_kernels
#endif
