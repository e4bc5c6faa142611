/* Which ops have a CPU fast kernel, and the table that links them into every build. */
#ifndef VNRT_BACKENDS_CPU_FAST_KERNELS_H_
#define VNRT_BACKENDS_CPU_FAST_KERNELS_H_

#include "vnrt/backend.h"

/* X(ID, name) for every op with a cpu_fast_<name> kernel in a fast_*.c file. Adding a fast
 * kernel means adding its row here; an op listed without a kernel is a link error. */
#define CPU_FAST_KERNELS(X) \
  X(LINEAR, linear)         \
  X(MATMUL, matmul)         \
  X(MOE_FFN, moe_ffn)       \
  X(HC_PRE, hc_pre)         \
  X(HC_POST, hc_post)       \
  X(ATTENTION, attention)   \
  X(SHORT_CONV, short_conv)

/* cpu_fast_kernel_table[op] is cpu_fast_<op> for the ops above, NULL for the rest. It lives
 * in fast_table.c, away from cpu_kernels.h's weak declarations, so its references are strong:
 * a weak reference never pulls a member out of a static archive, and fast kernels referenced
 * only weakly would silently vanish from programs linked against libvnrt.a. The function
 * type is cpu_kernel_fn, spelled without including cpu_kernels.h. */
struct cpu_kernel_args;
typedef vnrt_status (*cpu_fast_kernel_fn)(const struct cpu_kernel_args *args);
extern const cpu_fast_kernel_fn cpu_fast_kernel_table[VNRT_OP_COUNT];

#endif /* VNRT_BACKENDS_CPU_FAST_KERNELS_H_ */
