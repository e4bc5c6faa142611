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
/* The highest cpu_isa level (simd.h: 0 generic, 1 AVX2, 2 AVX-512, 3 AVX-512 with VBMI) the
 * context's cpu_isa option allows: generic 0, avx2 1, avx512 2, auto (or unset) 3. */
int cpu_pool_isa_cap(const cpu_pool *pool);
void cpu_pool_parallel_for(cpu_pool *pool, int64_t n, int64_t grain, cpu_range_fn fn, void *user);

/* Thread binding (the cpu_affinity option, docs/api.md "Options"; Linux only). With it the
 * pool binds its threads to distinct CPUs of the creating thread's allowed set: a run's
 * calling thread to one for the run's length (cpu_pool_bind_caller saves the thread's own set
 * in *saved and binds it, cpu_pool_unbind_caller restores it; a thread whose own set excludes
 * that CPU is left alone), each worker to one of the next ones. Without the option, with one
 * thread, or with fewer allowed CPUs than threads, nothing is bound and both calls do
 * nothing. */
typedef struct cpu_pool_binding {
  int bound;
  uint64_t saved[16]; /* the thread's cpu_set_t (1024 CPUs) */
} cpu_pool_binding;
void cpu_pool_bind_caller(const cpu_pool *pool, cpu_pool_binding *saved);
void cpu_pool_unbind_caller(const cpu_pool_binding *saved);
/* The one CPU worker i may run on, as the kernel reports it, or -1 (several, or no such
 * worker). */
int cpu_pool_worker_cpu(const cpu_pool *pool, int32_t i);

/* The cpu_hop option (default on; docs/api.md "Options"): a worker that wakes for a job on the
 * CPU its caller submitted from moves itself off that CPU (cpu_pool_hop_off), its allowed set
 * unchanged, instead of waiting there for the caller to yield. cpu_pool_hop_off moves the
 * calling thread off `cpu` when it runs there and its allowed set has another CPU: it narrows
 * the set to the others, which migrates the thread at once, and restores it. Returns 1 when
 * it moved, else 0 (not on `cpu`, no other CPU allowed, or not Linux). */
int cpu_pool_hop_off(int cpu);
/* Hops the pool's workers have made since it was created. */
int64_t cpu_pool_hops(const cpu_pool *pool);

/* Background prefetch. A decode step alternates weight-streaming nodes, which keep every
 * thread reading memory, with short serial ones (norms, rope, attention over a few rows),
 * during which the workers would only spin. cpu_pool_prefetch hands idle workers byte ranges
 * to pull into the cache meanwhile (prefetch instructions: they never fault, so a range whose
 * memory goes away is harmless). Each range is taken 4 KiB at a time, its `parts` equal
 * slices in turn, so that every thread of a later row-split parallel_for finds the start of
 * its own slice cached. A parallel_for preempts it (workers check between steps); posting
 * again replaces what is left. Only workers that are awake (spinning) take part: posting
 * never makes a system call. At most CPU_POOL_PREFETCH_RANGES ranges; extra ones are ignored.
 * Off unless the cpu_prefetch_kib option sets a budget. */
#define CPU_POOL_PREFETCH_RANGES 4
typedef struct cpu_prefetch_range {
  const void *data;
  int64_t bytes;
  int32_t parts; /* slices read in turn (the threads of the op that will read it); >= 1 */
} cpu_prefetch_range;
/* Returns the 4 KiB steps posted (0 when off, or when another thread was posting). */
int64_t cpu_pool_prefetch(cpu_pool *pool, const cpu_prefetch_range *ranges, int32_t n);
/* The 4 KiB steps of the posted ranges no worker has taken yet (0 when none are posted). */
int64_t cpu_pool_prefetch_left(cpu_pool *pool);
/* The byte budget the cpu_prefetch_kib option sets (0: background prefetch off). */
int64_t cpu_pool_prefetch_budget(const cpu_pool *pool);

#endif /* VNRT_BACKENDS_CPU_POOL_H_ */
