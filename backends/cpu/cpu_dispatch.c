/* The CPU backend's op -> kernel table, built from VNRT_OP_LIST.
 *
 * cpu_kernels.h declares every kernel weak, and a weak reference never pulls a member out of a
 * static archive: a program linked against libvnrt.a would then see NULL for every kernel in a
 * file nothing else references, and the CPU would report ops unsupported. So this file does
 * not include that header. It references each reference kernel strongly (every op of
 * spec/ops.md has one: a missing one is a link error, not a silent hole) and each fast kernel
 * weakly (optional: NULL when not linked, and the reference kernel runs instead). */
#include "cpu_dispatch.h"

#define CPU_DISPATCH_DECLARE_(ID, name, min_in, max_in, n_out)              \
  vnrt_status cpu_ref_##name(const struct cpu_kernel_args *args);           \
  __attribute__((weak)) vnrt_status cpu_fast_##name(const struct cpu_kernel_args *args);
VNRT_OP_LIST(CPU_DISPATCH_DECLARE_)
#undef CPU_DISPATCH_DECLARE_

#define CPU_REF_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = cpu_ref_##name,
#define CPU_FAST_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = cpu_fast_##name,
static cpu_dispatch_fn const cpu_ref_table_[VNRT_OP_COUNT] = {VNRT_OP_LIST(CPU_REF_ROW_)};
static cpu_dispatch_fn const cpu_fast_table_[VNRT_OP_COUNT] = {VNRT_OP_LIST(CPU_FAST_ROW_)};
#undef CPU_REF_ROW_
#undef CPU_FAST_ROW_

cpu_dispatch_fn cpu_dispatch_kernel(vnrt_op op, vnrt_kernel_mode mode) {
  if ((int)op < 0 || op >= VNRT_OP_COUNT) return NULL;
  if (mode == VNRT_KERNELS_FAST && cpu_fast_table_[op]) return cpu_fast_table_[op];
  return cpu_ref_table_[op];
}
