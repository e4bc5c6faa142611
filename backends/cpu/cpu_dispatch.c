/* The CPU backend's op -> kernel table, built from VNRT_OP_LIST.
 *
 * Reference kernels are referenced strongly: every op of spec/ops.md has one, so a missing one
 * is a link error rather than a silent hole, and the references pull the kernel objects out
 * of the static library (a weak reference never extracts an archive member, which would leave
 * a program linked against libvnrt.a with NULL kernels). Fast kernels are weak and optional:
 * NULL when not linked, and the reference kernel runs instead. */
#include "cpu_dispatch.h"

#define CPU_REF_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = cpu_ref_##name,
#define CPU_FAST_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = cpu_fast_##name,
static cpu_kernel_fn const cpu_ref_table_[VNRT_OP_COUNT] = {VNRT_OP_LIST(CPU_REF_ROW_)};
static cpu_kernel_fn const cpu_fast_table_[VNRT_OP_COUNT] = {VNRT_OP_LIST(CPU_FAST_ROW_)};
#undef CPU_REF_ROW_
#undef CPU_FAST_ROW_

cpu_kernel_fn cpu_dispatch_kernel(vnrt_op op, vnrt_kernel_mode mode) {
  if ((int)op < 0 || op >= VNRT_OP_COUNT) return NULL;
  if (mode == VNRT_KERNELS_FAST && cpu_fast_table_[op]) return cpu_fast_table_[op];
  return cpu_ref_table_[op];
}
