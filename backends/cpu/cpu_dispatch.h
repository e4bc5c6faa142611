/* Private to the CPU backend: which kernel runs an op in a given kernel mode. */
#ifndef VNRT_BACKENDS_CPU_DISPATCH_H_
#define VNRT_BACKENDS_CPU_DISPATCH_H_

#include "vnrt/backend.h"

/* The same type as cpu_kernel_fn of cpu_kernels.h, spelled without including it (see
 * cpu_dispatch.c for why that header stays out of the dispatch table's translation unit). */
struct cpu_kernel_args;
typedef vnrt_status (*cpu_dispatch_fn)(const struct cpu_kernel_args *args);

/* The kernel for op: in VNRT_KERNELS_REFERENCE mode cpu_ref_<op>; in VNRT_KERNELS_FAST mode
 * cpu_fast_<op> when linked, else cpu_ref_<op>. NULL only for an op out of range. */
cpu_dispatch_fn cpu_dispatch_kernel(vnrt_op op, vnrt_kernel_mode mode);

#endif /* VNRT_BACKENDS_CPU_DISPATCH_H_ */
