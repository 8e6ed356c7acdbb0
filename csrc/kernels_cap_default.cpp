// The per-row kernels compiled for ATen's portable DEFAULT vectors (any CPU).
#define CPU_CAPABILITY DEFAULT
#include "row_kernels_impl.h"
#include "lane_kernels_impl.h"

namespace redge_kernels {
const KernelTable& kernels_default() { return DEFAULT::lane_table("default"); }
}  // namespace redge_kernels
