/* A small fixed thread pool for the CPU backend: parallel_for over an index range. */
#ifndef VNRT_BACKENDS_CPU_POOL_H_
#define VNRT_BACKENDS_CPU_POOL_H_

#include <stdint.h>

#include "vnrt/backend.h"

typedef struct cpu_pool cpu_pool;

/* Runs fn(user, begin, end) over [0, n) split into chunks of at least grain items across the
 * pool's threads (the caller's thread works too). Returns when all chunks are done. */
typedef void (*cpu_range_fn)(void *user, int64_t begin, int64_t end);

vnrt_status cpu_pool_create(const vnrt_backend_host *host, int32_t num_threads,
                            cpu_pool **out_pool);
void cpu_pool_destroy(cpu_pool *pool);
int32_t cpu_pool_threads(const cpu_pool *pool);
/* The highest cpu_isa level (simd.h: 0 generic, 1 AVX2, 2 AVX-512) the context's cpu_isa
 * option allows: generic 0, avx2 1, auto (or unset) 2. */
int cpu_pool_isa_cap(const cpu_pool *pool);
void cpu_pool_parallel_for(cpu_pool *pool, int64_t n, int64_t grain, cpu_range_fn fn, void *user);

#endif /* VNRT_BACKENDS_CPU_POOL_H_ */
