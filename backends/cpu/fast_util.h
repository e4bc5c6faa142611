/* Shared plumbing of the CPU fast kernels: dynamic work distribution over the pool and
 * per-call scratch memory. */
#ifndef VNRT_BACKENDS_CPU_FAST_UTIL_H_
#define VNRT_BACKENDS_CPU_FAST_UTIL_H_

#include <stddef.h>
#include <stdint.h>

#include "cpu_kernels.h"
#include "simd.h"

/* Runs fn(user, item, slot) for every item in [0, n_items), items claimed one by one from an
 * atomic counter by the pool's threads, so uneven items (and threads the OS delays) balance
 * out. slot is in [0, cpu_pool_threads(pool)) and no two concurrent calls share one: index
 * per-thread scratch with it. Results must not depend on which thread ran an item. */
typedef void (*cpu_item_fn)(void *user, int64_t item, int32_t slot);
void cpu_fast_for_each(cpu_pool *pool, int64_t n_items, cpu_item_fn fn, void *user);

/* Scratch from the host allocator (`count` floats, at least one); on failure reports
 * VNRT_ERROR_OUT_OF_MEMORY naming the op and node, and *out is NULL. Free with
 * cpu_fast_free. */
vnrt_status cpu_fast_alloc(const cpu_kernel_args *a, int64_t count, float **out);
void cpu_fast_free(const cpu_kernel_args *a, void *p);

/* The node's name for messages ("?" when it has none). */
const char *cpu_fast_node_name(const cpu_kernel_args *a);

#endif /* VNRT_BACKENDS_CPU_FAST_UTIL_H_ */
