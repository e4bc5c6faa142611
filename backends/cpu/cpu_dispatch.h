/* Private to the CPU backend: which kernel runs an op in a given kernel mode. */
#ifndef VNRT_BACKENDS_CPU_DISPATCH_H_
#define VNRT_BACKENDS_CPU_DISPATCH_H_

#include "cpu_kernels.h"

/* The kernel for op: in VNRT_KERNELS_REFERENCE mode cpu_ref_<op>; in VNRT_KERNELS_FAST mode
 * cpu_fast_<op> when linked, else cpu_ref_<op>. NULL only for an op out of range. */
cpu_kernel_fn cpu_dispatch_kernel(vnrt_op op, vnrt_kernel_mode mode);

#endif /* VNRT_BACKENDS_CPU_DISPATCH_H_ */
