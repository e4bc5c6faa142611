/* The CPU backend's op -> kernel table, built from VNRT_OP_LIST.
 *
 * Reference kernels are referenced strongly: every op of spec/ops.md has one, so a missing one
 * is a link error rather than a silent hole, and the references pull the kernel objects out
 * of the static library (a weak reference never extracts an archive member, which would leave
 * a program linked against libvnrt.a with NULL kernels). Fast kernels exist for some ops only;
 * fast_table.c references those strongly for the same reason (fast_kernels.h), and the
 * reference kernel runs for the rest. */
#include "cpu_dispatch.h"
#include "fast_kernels.h"

#define CPU_REF_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = cpu_ref_##name,
static cpu_kernel_fn const cpu_ref_table_[VNRT_OP_COUNT] = {VNRT_OP_LIST(CPU_REF_ROW_)};
#undef CPU_REF_ROW_

cpu_kernel_fn cpu_dispatch_kernel(vnrt_op op, vnrt_kernel_mode mode) {
  if ((int)op < 0 || op >= VNRT_OP_COUNT) return NULL;
  if (mode == VNRT_KERNELS_FAST && cpu_fast_kernel_table[op]) return cpu_fast_kernel_table[op];
  return cpu_ref_table_[op];
}
