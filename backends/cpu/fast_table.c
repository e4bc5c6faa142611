/* The table of CPU fast kernels (fast_kernels.h), referencing each one strongly. This file
 * must not include cpu_kernels.h: its weak declarations would make these references weak. */
#include "fast_kernels.h"

#define CPU_FAST_DECLARE_(ID, name) vnrt_status cpu_fast_##name(const struct cpu_kernel_args *args);
CPU_FAST_KERNELS(CPU_FAST_DECLARE_)
#undef CPU_FAST_DECLARE_

#define CPU_FAST_ROW_(ID, name) [VNRT_OP_##ID] = cpu_fast_##name,
const cpu_fast_kernel_fn cpu_fast_kernel_table[VNRT_OP_COUNT] = {CPU_FAST_KERNELS(CPU_FAST_ROW_)};
#undef CPU_FAST_ROW_
