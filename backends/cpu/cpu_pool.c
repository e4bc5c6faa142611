/* The CPU backend's thread pool: persistent pthread workers that split parallel_for ranges. */
#include "cpu_pool.h"
#include "simd.h"

#include "vnrt/backend_util.h"

#include <errno.h>
#include <pthread.h>
#if defined(__linux__)
#include <sched.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_POOL_RELAX() _mm_pause()
#else
#define CPU_POOL_RELAX() ((void)0)
#endif

/* How long an idle worker (and a caller waiting for the last chunk) spins before it sleeps on
 * a condition variable. A decode step is hundreds of small ops back to back and a futex wake
 * costs several µs, but on a machine shared with other work a spinning thread takes a core
 * from someone: on the 2-core development machine under load, 100 µs made the bench model's
 * decode ~5-10% slower than 0 or 30 µs (docs/bench.md). VNRT_CPU_SPIN_US overrides it (0:
 * sleep at once). */
#define CPU_POOL_SPIN_US_DEFAULT 20

/* A job is published by storing a new `claim` word: generation (high 32 bits), chunk count
 * (16 bits) and the next chunk to hand out (low 16 bits). A thread takes a chunk with a
 * compare-and-swap that only succeeds while the word still carries the generation it saw, so a
 * worker that wakes late can never take a chunk of a later job, and it touches the job's
 * fields only once it holds a chunk of a live job (the job cannot finish before that chunk
 * does). The caller takes chunks too and returns when `done` reaches the chunk count: it never
 * waits for a worker that took no chunk. A pool of one thread (no workers) runs inline. */
struct cpu_pool {
  const vnrt_backend_host *host;
  int32_t n_threads; /* workers + the calling thread */
  int32_t n_workers; /* workers actually started */
  pthread_t *workers;
  int64_t spin_ns;
  int isa_cap;           /* the highest cpu_isa level the cpu_isa option allows (simd.h) */
  int caller_cpu;        /* cpu_affinity: the CPU a run binds its calling thread to (-1: none) */
  atomic_int hop;        /* cpu_hop, and the workers are not bound (set once they exist: atomic) */
  atomic_int submit_cpu; /* cpu_hop: the CPU the current job was submitted from */
  atomic_int_fast64_t hops; /* cpu_hop: the workers' hops */

  pthread_mutex_t submit; /* serialises callers: one job at a time */
  pthread_mutex_t mutex;  /* guards sleepers, caller_sleeping and the condition variables */
  pthread_cond_t wake;    /* idle workers sleep here */
  pthread_cond_t done_cv; /* the caller sleeps here for the last chunk */
  int32_t sleepers;
  atomic_int caller_sleeping;
  atomic_int shutdown;

  atomic_uint_fast64_t claim;
  atomic_int_fast64_t done; /* chunks finished in the current job */

  /* The current job; written before `claim` publishes it. */
  cpu_range_fn fn;
  void *user;
  int64_t n, chunk;

  /* Background prefetch (cpu_pool_prefetch), a sequence lock: bg_word is the generation (high
   * 32 bits, odd while a poster rewrites the ranges) and the next 4 KiB step (low 32 bits).
   * A worker computes a step's address from the ranges, then takes the step with a
   * compare-and-swap that fails if the generation moved meanwhile. */
  int64_t prefetch_budget;
  atomic_flag bg_posting; /* one poster at a time; a second one gives up */
  atomic_uint_fast64_t bg_word;
  atomic_int bg_n;
  atomic_uintptr_t bg_data[CPU_POOL_PREFETCH_RANGES];
  atomic_int_fast64_t bg_bytes[CPU_POOL_PREFETCH_RANGES];
  atomic_int_fast64_t bg_part[CPU_POOL_PREFETCH_RANGES]; /* bytes of a slice, a multiple of 64 */
  atomic_int_fast64_t bg_parts[CPU_POOL_PREFETCH_RANGES];
  atomic_int_fast64_t bg_end[CPU_POOL_PREFETCH_RANGES]; /* the steps of ranges 0..r */
};

#define CPU_POOL_PREFETCH_STEP 4096
/* The default cpu_prefetch_kib: off. On the 2-core development VM it made the bench model's
 * decode 1.5-7% faster when nothing else ran, and 26% slower beside one busy process: a worker
 * kept busy through the serial nodes takes its core from whoever shares it (docs/bench.md).
 * For dedicated cores, 8192 (the next few decode linears, well inside a server L3). */
#define CPU_POOL_PREFETCH_KIB_DEFAULT 0

/* Set while a thread runs chunks of a job, so that a nested parallel_for from inside a chunk
 * runs inline instead of deadlocking on the pool it is already part of. */
static _Thread_local int cpu_pool_in_job_;

#define CLAIM_GEN_(w) ((uint32_t)((w) >> 32))
#define CLAIM_CHUNKS_(w) ((int64_t)(((w) >> 16) & 0xffffu))
#define CLAIM_NEXT_(w) ((int64_t)((w)&0xffffu))

static int64_t now_ns_(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Takes and runs chunks of generation gen until none are left. */
static void cpu_pool_run_chunks_(cpu_pool *pool, uint32_t gen) {
  cpu_pool_in_job_ = 1;
  uint_fast64_t w = atomic_load_explicit(&pool->claim, memory_order_acquire);
  for (;;) {
    if (CLAIM_GEN_(w) != gen || CLAIM_NEXT_(w) >= CLAIM_CHUNKS_(w)) break;
    if (!atomic_compare_exchange_weak_explicit(&pool->claim, &w, w + 1, memory_order_acq_rel,
                                               memory_order_acquire)) {
      continue; /* w was reloaded */
    }
    const int64_t c = CLAIM_NEXT_(w), n_chunks = CLAIM_CHUNKS_(w);
    const int64_t begin = c * pool->chunk;
    const int64_t end = begin + pool->chunk < pool->n ? begin + pool->chunk : pool->n;
    pool->fn(pool->user, begin, end);
    if (atomic_fetch_add(&pool->done, 1) + 1 == n_chunks && atomic_load(&pool->caller_sleeping)) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->done_cv);
      pthread_mutex_unlock(&pool->mutex);
    }
    w = atomic_load_explicit(&pool->claim, memory_order_acquire);
  }
  cpu_pool_in_job_ = 0;
}

/* Takes and prefetches one step of the posted ranges; 0 when there is none left. */
static int cpu_pool_prefetch_step_(cpu_pool *pool) {
  uint_fast64_t w = atomic_load_explicit(&pool->bg_word, memory_order_acquire);
  for (;;) {
    if ((w >> 32) & 1) return 0; /* being rewritten */
    const int64_t step = (int64_t)(w & 0xffffffffu);
    const int n = atomic_load_explicit(&pool->bg_n, memory_order_relaxed);
    int r = 0;
    int64_t first = 0;
    while (r < n && step >= atomic_load_explicit(&pool->bg_end[r], memory_order_relaxed)) {
      first = atomic_load_explicit(&pool->bg_end[r], memory_order_relaxed);
      ++r;
    }
    if (r >= n) return 0;
    const int64_t parts = atomic_load_explicit(&pool->bg_parts[r], memory_order_relaxed);
    const int64_t part = atomic_load_explicit(&pool->bg_part[r], memory_order_relaxed);
    const int64_t bytes = atomic_load_explicit(&pool->bg_bytes[r], memory_order_relaxed);
    const uintptr_t data = atomic_load_explicit(&pool->bg_data[r], memory_order_relaxed);
    const int64_t local = step - first, slice = local % parts;
    const int64_t begin = slice * part + (local / parts) * CPU_POOL_PREFETCH_STEP;
    int64_t end = begin + CPU_POOL_PREFETCH_STEP;
    if (end > (slice + 1) * part) end = (slice + 1) * part;
    if (end > bytes) end = bytes;
    if (!atomic_compare_exchange_weak_explicit(&pool->bg_word, &w, w + 1, memory_order_acq_rel,
                                               memory_order_acquire)) {
      continue; /* w was reloaded */
    }
#if defined(__x86_64__) || defined(__i386__)
    for (int64_t o = begin; o < end; o += 64) {
      _mm_prefetch((const char *)(data + (uintptr_t)o), _MM_HINT_T1);
    }
#else
    (void)begin;
    (void)end;
    (void)data;
#endif
    return 1;
  }
}

int64_t cpu_pool_prefetch(cpu_pool *pool, const cpu_prefetch_range *ranges, int32_t n) {
  if (!pool || pool->n_workers == 0 || pool->prefetch_budget <= 0) return 0;
  if (atomic_flag_test_and_set_explicit(&pool->bg_posting, memory_order_acquire)) return 0;
  if (n > CPU_POOL_PREFETCH_RANGES) n = CPU_POOL_PREFETCH_RANGES;
  if (n < 0) n = 0;
  const uint_fast64_t gen = (atomic_load_explicit(&pool->bg_word, memory_order_relaxed) >> 32) | 1;
  atomic_store_explicit(&pool->bg_word, gen << 32, memory_order_seq_cst); /* odd: rewriting */
  int64_t steps = 0;
  int m = 0;
  for (int32_t i = 0; i < n; ++i) {
    const cpu_prefetch_range *rg = &ranges[i];
    if (!rg->data || rg->bytes <= 0) continue;
    const int64_t parts = rg->parts > 1 ? rg->parts : 1;
    const int64_t part = ((rg->bytes + parts - 1) / parts + 63) & ~(int64_t)63;
    const int64_t per = (part + CPU_POOL_PREFETCH_STEP - 1) / CPU_POOL_PREFETCH_STEP;
    if (steps + parts * per > 0x7fffffff) break;
    steps += parts * per;
    atomic_store_explicit(&pool->bg_data[m], (uintptr_t)rg->data, memory_order_relaxed);
    atomic_store_explicit(&pool->bg_bytes[m], rg->bytes, memory_order_relaxed);
    atomic_store_explicit(&pool->bg_part[m], part, memory_order_relaxed);
    atomic_store_explicit(&pool->bg_parts[m], parts, memory_order_relaxed);
    atomic_store_explicit(&pool->bg_end[m], steps, memory_order_relaxed);
    ++m;
  }
  atomic_store_explicit(&pool->bg_n, m, memory_order_relaxed);
  atomic_store_explicit(&pool->bg_word, (gen + 1) << 32, memory_order_seq_cst);
  atomic_flag_clear_explicit(&pool->bg_posting, memory_order_release);
  return steps;
}

int64_t cpu_pool_prefetch_left(cpu_pool *pool) {
  if (!pool) return 0;
  const uint_fast64_t w = atomic_load(&pool->bg_word);
  if ((w >> 32) & 1) return 0;
  const int n = atomic_load(&pool->bg_n);
  const int64_t end = n > 0 ? atomic_load(&pool->bg_end[n - 1]) : 0;
  const int64_t next = (int64_t)(w & 0xffffffffu);
  return end > next ? end - next : 0;
}

int64_t cpu_pool_prefetch_budget(const cpu_pool *pool) {
  return pool && pool->n_workers > 0 ? pool->prefetch_budget : 0;
}

int cpu_pool_hop_off(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || sched_getcpu() != cpu) return 0;
  cpu_set_t own, others;
  CPU_ZERO(&own);
  if (pthread_getaffinity_np(pthread_self(), sizeof own, &own) != 0) return 0;
  memcpy(&others, &own, sizeof own);
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0) return 0;
  if (pthread_setaffinity_np(pthread_self(), sizeof others, &others) != 0) return 0;
  (void)pthread_setaffinity_np(pthread_self(), sizeof own, &own);
  return 1;
#else
  (void)cpu;
  return 0;
#endif
}

int64_t cpu_pool_hops(const cpu_pool *pool) { return pool ? atomic_load(&pool->hops) : 0; }

/* cpu_hop: a worker woken for job gen, if the job still has chunks to hand out and the worker
 * was placed on the CPU the job came from. On the 2-core VM a woken worker was put on its
 * waker's core nearly every time after the pool slept; there it waits for the caller, which
 * meanwhile takes every chunk, so the worker never weighs enough for the scheduler to move it
 * and the next job wakes it there again (docs/bench.md, "Stop 30"). */
static void cpu_pool_hop_(cpu_pool *pool, uint32_t gen) {
  const uint_fast64_t w = atomic_load_explicit(&pool->claim, memory_order_acquire);
  if (CLAIM_GEN_(w) != gen || CLAIM_NEXT_(w) >= CLAIM_CHUNKS_(w)) return;
  if (cpu_pool_hop_off(atomic_load_explicit(&pool->submit_cpu, memory_order_relaxed))) {
    atomic_fetch_add_explicit(&pool->hops, 1, memory_order_relaxed);
  }
}

static void *cpu_pool_worker_(void *arg) {
  cpu_pool *pool = arg;
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = CLAIM_GEN_(atomic_load_explicit(&pool->claim, memory_order_acquire));
    if (gen == seen && !atomic_load(&pool->shutdown) && pool->spin_ns > 0) {
      /* Spin, prefetching what cpu_pool_prefetch posted; the spin time counts from the last
       * prefetch step. */
      int64_t until = now_ns_() + pool->spin_ns;
      for (int i = 1;; ++i) {
        if (cpu_pool_prefetch_step_(pool)) {
          i = 0;
          until = now_ns_() + pool->spin_ns;
        } else {
          CPU_POOL_RELAX();
        }
        gen = CLAIM_GEN_(atomic_load_explicit(&pool->claim, memory_order_acquire));
        if (gen != seen || atomic_load(&pool->shutdown)) break;
        if ((i & 63) == 0 && now_ns_() > until) break;
      }
    }
    int slept = 0;
    if (gen == seen && !atomic_load(&pool->shutdown)) {
      pthread_mutex_lock(&pool->mutex);
      for (;;) {
        gen = CLAIM_GEN_(atomic_load(&pool->claim));
        if (gen != seen || atomic_load(&pool->shutdown)) break;
        pool->sleepers++;
        pthread_cond_wait(&pool->wake, &pool->mutex);
        pool->sleepers--;
        slept = 1;
      }
      pthread_mutex_unlock(&pool->mutex);
    }
    if (atomic_load(&pool->shutdown)) break;
    seen = gen;
    if (slept && atomic_load_explicit(&pool->hop, memory_order_relaxed)) cpu_pool_hop_(pool, gen);
    cpu_pool_run_chunks_(pool, gen);
  }
  return NULL;
}

/* cpu_affinity: binds the pool's threads to distinct CPUs of the creating thread's allowed set:
 * the runs' calling thread to one, worker i to the next ones (wrapping). Each pool of the
 * process starts where the previous one ended (a process-wide counter), so that several
 * contexts spread over the set. Unbound threads on a 2-core VM were measured to share one
 * core for seconds at a time after the pool slept: a woken worker placed on the caller's core
 * finds its work taken, sleeps again, and never weighs enough for the scheduler to move it
 * (docs/bench.md, "Stop 29"). A pool with more threads than allowed CPUs binds nothing (bound
 * threads would have to share); a failed bind is left unbound. */
static atomic_uint cpu_pool_next_cpu_;

static void cpu_pool_bind_workers_(cpu_pool *pool) {
#if defined(__linux__)
  if (!vnrt_host_option_flag(pool->host, "cpu_affinity", 0) || pool->n_workers == 0) return;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  int cpus[CPU_SETSIZE], n = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
  }
  const vnrt_backend_host *host = pool->host;
  if (n < pool->n_workers + 1) {
    host->log(host->core, VNRT_LOG_INFO,
              "cpu: cpu_affinity binds nothing: %d threads, %d allowed CPUs", (int)pool->n_threads,
              n);
    return;
  }
  const unsigned base =
      atomic_fetch_add(&cpu_pool_next_cpu_, (unsigned)pool->n_workers + 1) % (unsigned)n;
  int bound = 0;
  for (int32_t i = 0; i < pool->n_workers; ++i) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[(base + 1 + (unsigned)i) % (unsigned)n], &one);
    bound += pthread_setaffinity_np(pool->workers[i], sizeof one, &one) == 0;
  }
  if (bound > 0) pool->caller_cpu = cpus[base];
#else
  (void)pool;
#endif
}

void cpu_pool_bind_caller(const cpu_pool *pool, cpu_pool_binding *saved) {
  saved->bound = 0;
#if defined(__linux__)
  _Static_assert(sizeof(cpu_set_t) <= sizeof saved->saved, "cpu_pool_binding.saved");
  if (!pool || pool->caller_cpu < 0) return;
  cpu_set_t *own = (cpu_set_t *)(void *)saved->saved, one;
  /* A thread the application keeps off that CPU stays where it is. */
  if (pthread_getaffinity_np(pthread_self(), sizeof *own, own) != 0 ||
      !CPU_ISSET(pool->caller_cpu, own)) {
    return;
  }
  CPU_ZERO(&one);
  CPU_SET(pool->caller_cpu, &one);
  saved->bound = pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
#else
  (void)pool;
#endif
}

void cpu_pool_unbind_caller(const cpu_pool_binding *saved) {
#if defined(__linux__)
  if (!saved->bound) return;
  (void)pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t),
                               (const cpu_set_t *)(const void *)saved->saved);
#else
  (void)saved;
#endif
}

int cpu_pool_worker_cpu(const cpu_pool *pool, int32_t i) {
  if (!pool || i < 0 || i >= pool->n_workers) return -1;
#if defined(__linux__)
  /* The thread's set as the kernel has it, not what was asked for. */
  cpu_set_t set;
  CPU_ZERO(&set);
  if (pthread_getaffinity_np(pool->workers[i], sizeof set, &set) != 0 || CPU_COUNT(&set) != 1) {
    return -1;
  }
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) return c;
  }
#endif
  return -1;
}

vnrt_status cpu_pool_create(const vnrt_backend_host *host, int32_t num_threads,
                            cpu_pool **out_pool) {
  *out_pool = NULL;
  if (num_threads < 1) num_threads = 1;
  cpu_pool *pool = host->alloc(host->core, sizeof *pool);
  if (!pool) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu pool: out of memory");
  memset(pool, 0, sizeof *pool);
  pool->host = host;
  pool->n_threads = num_threads;
  const char *isa = vnrt_host_option(host, "cpu_isa");
  pool->isa_cap = !isa                          ? CPU_ISA_AVX512VBMI
                  : strcmp(isa, "generic") == 0 ? CPU_ISA_GENERIC
                  : strcmp(isa, "avx2") == 0    ? CPU_ISA_AVX2
                  : strcmp(isa, "avx512") == 0  ? CPU_ISA_AVX512
                                                : CPU_ISA_AVX512VBMI;
  pool->spin_ns =
      vnrt_host_option_uint(host, "cpu_spin_us", CPU_POOL_SPIN_US_DEFAULT, 1000000) * 1000;
  atomic_init(&pool->claim, 0);
  atomic_init(&pool->submit_cpu, -1);
  atomic_init(&pool->hops, 0);
  atomic_init(&pool->hop, 0);
  atomic_init(&pool->done, 0);
  atomic_init(&pool->shutdown, 0);
  atomic_init(&pool->caller_sleeping, 0);
  atomic_init(&pool->bg_word, 0);
  atomic_init(&pool->bg_n, 0);
  atomic_flag_clear(&pool->bg_posting);
  for (int i = 0; i < CPU_POOL_PREFETCH_RANGES; ++i) {
    atomic_init(&pool->bg_data[i], 0);
    atomic_init(&pool->bg_bytes[i], 0);
    atomic_init(&pool->bg_part[i], 0);
    atomic_init(&pool->bg_parts[i], 1);
    atomic_init(&pool->bg_end[i], 0);
  }
  pool->prefetch_budget =
      vnrt_host_option_uint(host, "cpu_prefetch_kib", CPU_POOL_PREFETCH_KIB_DEFAULT, 1048576) *
      1024;
  pool->caller_cpu = -1;
  pthread_mutex_init(&pool->submit, NULL);
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done_cv, NULL);
  if (num_threads > 1) {
    size_t bytes = sizeof(pthread_t) * (size_t)(num_threads - 1);
    pool->workers = host->alloc(host->core, bytes);
    if (!pool->workers) {
      cpu_pool_destroy(pool);
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                         "cpu pool: out of memory for %d threads", (int)num_threads);
    }
    for (int32_t i = 0; i < num_threads - 1; ++i) {
      int rc = pthread_create(&pool->workers[i], NULL, cpu_pool_worker_, pool);
      if (rc != 0) {
        cpu_pool_destroy(pool);
        return host->error(host->core, rc == EAGAIN ? VNRT_ERROR_OUT_OF_MEMORY : VNRT_ERROR_DEVICE,
                           "cpu pool: pthread_create failed for worker %d of %d: %s", (int)i,
                           (int)(num_threads - 1), strerror(rc));
      }
      pool->n_workers = i + 1;
    }
    cpu_pool_bind_workers_(pool);
    atomic_store(&pool->hop, pool->caller_cpu < 0 && vnrt_host_option_flag(host, "cpu_hop", 1));
  }
  *out_pool = pool;
  return VNRT_OK;
}

void cpu_pool_destroy(cpu_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mutex);
  atomic_store(&pool->shutdown, 1);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  for (int32_t i = 0; i < pool->n_workers; ++i) pthread_join(pool->workers[i], NULL);
  pthread_cond_destroy(&pool->done_cv);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->mutex);
  pthread_mutex_destroy(&pool->submit);
  const vnrt_backend_host *host = pool->host;
  if (pool->workers) host->free(host->core, pool->workers);
  host->free(host->core, pool);
}

int32_t cpu_pool_threads(const cpu_pool *pool) { return pool ? pool->n_workers + 1 : 1; }
int cpu_pool_isa_cap(const cpu_pool *pool) { return pool ? pool->isa_cap : CPU_ISA_AVX512VBMI; }

void cpu_pool_parallel_for(cpu_pool *pool, int64_t n, int64_t grain, cpu_range_fn fn, void *user) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int32_t threads = cpu_pool_threads(pool);
  /* As many chunks as threads (fewer when n is small), each at least grain long. */
  int64_t n_chunks = (n + grain - 1) / grain;
  if (n_chunks > threads) n_chunks = threads;
  if (n_chunks > 0xffff) n_chunks = 0xffff;
  if (n_chunks <= 1 || cpu_pool_in_job_) {
    fn(user, 0, n);
    return;
  }
  pthread_mutex_lock(&pool->submit);
  pool->fn = fn;
  pool->user = user;
  pool->n = n;
  pool->chunk = (n + n_chunks - 1) / n_chunks;
  n_chunks = (n + pool->chunk - 1) / pool->chunk;
  atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
#if defined(__linux__)
  if (atomic_load_explicit(&pool->hop, memory_order_relaxed)) {
    atomic_store_explicit(&pool->submit_cpu, sched_getcpu(), memory_order_relaxed);
  }
#endif
  const uint32_t gen = CLAIM_GEN_(atomic_load(&pool->claim)) + 1;
  atomic_store_explicit(&pool->claim, ((uint_fast64_t)gen << 32) | ((uint_fast64_t)n_chunks << 16),
                        memory_order_seq_cst);
  /* Sleeping workers need a wake-up; spinning ones see the new word by themselves. A worker
   * that is about to sleep checks the word under the mutex, so it cannot miss this job. */
  pthread_mutex_lock(&pool->mutex);
  if (pool->sleepers > 0) pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);

  cpu_pool_run_chunks_(pool, gen);

  /* Chunks other threads took may still be running: spin a while, then sleep. */
  if (atomic_load_explicit(&pool->done, memory_order_acquire) < n_chunks) {
    const int64_t until = now_ns_() + pool->spin_ns;
    for (int i = 1; atomic_load_explicit(&pool->done, memory_order_acquire) < n_chunks; ++i) {
      CPU_POOL_RELAX();
      if ((i & 63) == 0 && now_ns_() > until) break;
    }
  }
  if (atomic_load_explicit(&pool->done, memory_order_acquire) < n_chunks) {
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->caller_sleeping, 1);
    while (atomic_load(&pool->done) < n_chunks) pthread_cond_wait(&pool->done_cv, &pool->mutex);
    atomic_store(&pool->caller_sleeping, 0);
    pthread_mutex_unlock(&pool->mutex);
  }
  pthread_mutex_unlock(&pool->submit);
}
