/* Shared plumbing of the CPU fast kernels: ISA selection, dynamic scheduling, scratch. */
#include "fast_util.h"

#include "cpu_pool.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int cpu_isa_cache_ = -1;

cpu_isa cpu_fast_isa(const cpu_pool *pool) {
  int v = atomic_load_explicit(&cpu_isa_cache_, memory_order_relaxed);
  if (v < 0) {
    v = CPU_ISA_GENERIC;
#if defined(CPU_HAVE_AVX2_CODE)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the YMM (ZMM) state (XCR0). Every
     * CPU with AVX2 and FMA has F16C (Haswell, Zen and later). */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      v = CPU_ISA_AVX2;
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        v = CPU_ISA_AVX512;
        if (__builtin_cpu_supports("avx512vbmi")) v = CPU_ISA_AVX512VBMI;
      }
    }
#endif
    atomic_store_explicit(&cpu_isa_cache_, v, memory_order_relaxed);
  }
  const int cap = cpu_pool_isa_cap(pool);
  return (cpu_isa)(v < cap ? v : cap);
}

typedef struct for_each_job {
  atomic_int_fast64_t next;
  int64_t n;
  cpu_item_fn fn;
  void *user;
} for_each_job;

/* The pool calls this once per thread with begin = that thread's chunk index (chunks of one),
 * or once with [0, n) when it runs inline; either way the claim loop drains every item. */
static void for_each_range_(void *user, int64_t begin, int64_t end) {
  (void)end;
  for_each_job *job = user;
  for (;;) {
    int64_t item = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
    if (item >= job->n) break;
    job->fn(job->user, item, (int32_t)begin);
  }
}

void cpu_fast_for_each(cpu_pool *pool, int64_t n_items, cpu_item_fn fn, void *user) {
  if (n_items <= 0) return;
  for_each_job job = {.n = n_items, .fn = fn, .user = user};
  atomic_init(&job.next, 0);
  int64_t threads = cpu_pool_threads(pool);
  cpu_pool_parallel_for(pool, threads < n_items ? threads : n_items, 1, for_each_range_, &job);
}

const char *cpu_fast_node_name(const cpu_kernel_args *a) {
  return (a->node && a->node->name) ? a->node->name : "?";
}

vnrt_status cpu_fast_alloc(const cpu_kernel_args *a, int64_t count, float **out) {
  size_t bytes = (size_t)(count > 0 ? count : 1) * sizeof(float);
  *out = a->host->alloc(a->host->core, bytes);
  if (!*out) {
    const char *op = a->node ? vnrt_op_name(a->node->op) : NULL;
    return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_MEMORY,
                          "%s '%s': cannot allocate %llu bytes of scratch", op ? op : "?",
                          cpu_fast_node_name(a), (unsigned long long)bytes);
  }
  return VNRT_OK;
}

void cpu_fast_free(const cpu_kernel_args *a, void *p) {
  if (p) a->host->free(a->host->core, p);
}
