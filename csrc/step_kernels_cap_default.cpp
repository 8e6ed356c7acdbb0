// The step kernels compiled for ATen's portable DEFAULT vectors (any CPU).
#define CPU_CAPABILITY DEFAULT
#include "row_kernels_impl.h"
#include "step_kernels_impl.h"

namespace redge_kernels {
const StepTable& step_kernels_default() { return DEFAULT::step_table("default"); }
}  // namespace redge_kernels
