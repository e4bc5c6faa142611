/* The CPU backend's own pieces, below the public API: its thread pool, its buffers and device
 * info, its kernels called directly (a failed run leaves a plan's outputs unreadable, so "no
 * output is half-written" is checked on the kernels themselves, with sentinel-filled outputs
 * and a host that records the error), the fast moe_ffn's thread independence, and short_conv's
 * bitwise agreement of prefill and decode on the cpu device. What every device must do is in
 * tests/conformance/. */
#include <float.h>
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_pool.h"
#include "cpu/fast_gemm.h"
#include "cpu/fast_quant.h"
#include "moe_ref.h"
#include "test_util.h"
#include "vnrt/op_params.h"

const vnrt_backend_i *cpu_backend_get(void);

#define TOL_FFN 1e-6

/* ---- A host that records errors --------------------------------------------------------- */

typedef struct fake_host {
  vnrt_backend_host host;
  vnrt_status last_status;
  char last_error[512];
} fake_host;

static void fake_log(void *core, vnrt_log_level level, const char *fmt, ...) {}
static vnrt_status fake_error(void *core, vnrt_status status, const char *fmt, ...) {
  fake_host *h = core;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->last_error, sizeof h->last_error, fmt, ap);
  va_end(ap);
  h->last_status = status;
  return status;
}
static void *fake_alloc(void *core, size_t size) { return malloc(size ? size : 1); }
static void fake_free(void *core, void *p) { free(p); }

static void fake_host_init(fake_host *h, int32_t threads) {
  memset(h, 0, sizeof *h);
  h->host = (vnrt_backend_host){
      sizeof(vnrt_backend_host), h, fake_log, fake_error, fake_alloc, fake_free, threads, NULL};
}

static vnrt_tensor_type ttype(vnrt_dtype dt, int32_t rank, const int64_t *dims) {
  vnrt_tensor_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int32_t i = 0; i < rank; ++i) t.dims[i] = dims[i];
  return t;
}

static void free_all(tu_tensor *t, int32_t n) {
  for (int32_t i = 0; i < n; ++i) tu_tensor_free(&t[i]);
}

/* ---- Thread pool ------------------------------------------------------------------------ */

typedef struct pool_probe {
  atomic_int hits[1000];
  atomic_int calls;
  int64_t n;
  int bad_range;
} pool_probe;

static void probe_range(void *user, int64_t begin, int64_t end) {
  pool_probe *p = user;
  atomic_fetch_add(&p->calls, 1);
  if (begin < 0 || end > p->n || begin >= end) p->bad_range = 1;
  for (int64_t i = begin; i < end && i >= 0 && i < 1000; ++i) atomic_fetch_add(&p->hits[i], 1);
}

/* A two-thread pool on h, whose host reads options through option (NULL: none set). */
static cpu_pool *two_thread_pool(fake_host *h, const char *(*option)(void *core, const char *key)) {
  fake_host_init(h, 2);
  if (option) h->host.option = option;
  cpu_pool *pool = NULL;
  ck_assert_int_eq(cpu_pool_create(&h->host, 2, &pool), VNRT_OK);
  return pool;
}

/* One job of 1000 items of grain 1 on pool: every item runs once. */
static void runs_1000_once(cpu_pool *pool) {
  pool_probe *p = calloc(1, sizeof *p);
  ck_assert_ptr_nonnull(p);
  p->n = 1000;
  cpu_pool_parallel_for(pool, 1000, 1, probe_range, p);
  for (int64_t i = 0; i < 1000; ++i) ck_assert_int_eq(atomic_load(&p->hits[i]), 1);
  free(p);
}

START_TEST(test_pool_covers_range_once) {
  const int32_t threads[4] = {1, 2, 4, 9};
  const int64_t sizes[6] = {0, 1, 2, 3, 17, 1000};
  const int64_t grains[3] = {1, 7, 5000};
  for (int t = 0; t < 4; ++t) {
    fake_host h;
    fake_host_init(&h, threads[t]);
    cpu_pool *pool = NULL;
    ck_assert_int_eq(cpu_pool_create(&h.host, threads[t], &pool), VNRT_OK);
    ck_assert_int_eq(cpu_pool_threads(pool), threads[t]);
    for (int s = 0; s < 6; ++s) {
      for (int g = 0; g < 3; ++g) {
        /* Repeated jobs on the same pool: no lost wake-ups, no stale job. */
        for (int rep = 0; rep < 20; ++rep) {
          pool_probe *p = calloc(1, sizeof *p);
          p->n = sizes[s];
          cpu_pool_parallel_for(pool, sizes[s], grains[g], probe_range, p);
          ck_assert(!p->bad_range);
          for (int64_t i = 0; i < sizes[s]; ++i) {
            ck_assert_msg(atomic_load(&p->hits[i]) == 1,
                          "threads %d n %lld grain %lld: item %lld ran %d times", threads[t],
                          (long long)sizes[s], (long long)grains[g], (long long)i,
                          atomic_load(&p->hits[i]));
          }
          int64_t max_chunks = (sizes[s] + grains[g] - 1) / grains[g];
          ck_assert_int_le(atomic_load(&p->calls), max_chunks);
          ck_assert_int_le(atomic_load(&p->calls), threads[t]);
          free(p);
        }
      }
    }
    cpu_pool_destroy(pool);
  }
}
END_TEST

#if defined(__linux__)
/* cpu_affinity, in the pool: with it, a two-thread pool's worker is bound to the CPU after the
 * one its runs' calling thread is bound to, the caller's own set comes back after the run, and
 * the jobs still cover their ranges once; nothing is bound without the option, with more
 * threads than allowed CPUs, or for a caller whose own set excludes that CPU. Needs two
 * allowed CPUs (one allowed CPU is made by narrowing this thread's set). */
static const char *affinity_option(void *core, const char *key) {
  (void)core;
  return strcmp(key, "cpu_affinity") == 0 ? "1" : NULL;
}

static int allowed_cpus(cpu_set_t *set, int *cpus) {
  CPU_ZERO(set);
  ck_assert_int_eq(pthread_getaffinity_np(pthread_self(), sizeof *set, set), 0);
  int n = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, set)) cpus[n++] = c;
  }
  return n;
}

static int caller_bound_to(const cpu_pool *pool, cpu_pool_binding *bind) {
  cpu_pool_bind_caller(pool, bind);
  cpu_set_t now;
  int cpus[CPU_SETSIZE];
  const int n = allowed_cpus(&now, cpus);
  return bind->bound && n == 1 ? cpus[0] : -1;
}

START_TEST(test_pool_affinity_binds_workers_and_runs) {
  cpu_set_t allowed, now;
  int cpus[CPU_SETSIZE], tmp[CPU_SETSIZE];
  const int n = allowed_cpus(&allowed, cpus);
  if (n < 2) return;
  for (int on = 0; on < 2; ++on) {
    fake_host h;
    cpu_pool *pool = two_thread_pool(&h, on ? affinity_option : NULL);
    cpu_pool_binding bind;
    const int c0 = caller_bound_to(pool, &bind);
    ck_assert_int_eq(bind.bound, on);
    int k = 0;
    while (k < n && cpus[k] != c0) ++k;
    ck_assert_int_eq(cpu_pool_worker_cpu(pool, 0), on ? cpus[(k + 1) % n] : -1);
    if (on) ck_assert_int_lt(k, n);
    runs_1000_once(pool);
    cpu_pool_unbind_caller(&bind);
    ck_assert_int_eq(allowed_cpus(&now, tmp), n);
    ck_assert(CPU_EQUAL(&now, &allowed));
    if (on) { /* a caller kept off that CPU by its own set stays where it is */
      cpu_set_t others = allowed;
      CPU_CLR(c0, &others);
      ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof others, &others), 0);
      cpu_pool_bind_caller(pool, &bind);
      ck_assert_int_eq(bind.bound, 0);
      ck_assert_int_eq(allowed_cpus(&now, tmp), n - 1);
      ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed), 0);
    }
    cpu_pool_destroy(pool);
  }
  /* More threads than allowed CPUs, and (this thread narrowed to one CPU) one allowed CPU. */
  for (int narrow = 0; narrow < 2; ++narrow) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[0], &one);
    if (narrow) ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
    const int32_t threads = narrow ? 2 : n + 1;
    fake_host h;
    fake_host_init(&h, threads);
    h.host.option = affinity_option;
    cpu_pool *pool = NULL;
    ck_assert_int_eq(cpu_pool_create(&h.host, threads, &pool), VNRT_OK);
    /* (narrowed, the workers inherit the one CPU of the thread that created them) */
    for (int32_t i = 0; i < threads - 1; ++i) {
      ck_assert_int_eq(cpu_pool_worker_cpu(pool, i), narrow ? cpus[0] : -1);
    }
    cpu_pool_binding bind;
    cpu_pool_bind_caller(pool, &bind);
    ck_assert_int_eq(bind.bound, 0);
    cpu_pool_destroy(pool);
    ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed), 0);
  }
}
END_TEST

/* cpu_hop: cpu_pool_hop_off moves the calling thread off the CPU it runs on (a narrowed set
 * migrates a thread at once) and gives it back its own set; it does nothing for another CPU,
 * for -1, or for a thread with no other CPU allowed. A pool with the option off counts no hops,
 * and jobs cover their ranges once either way. Needs two allowed CPUs. */
static const char *no_hop_option(void *core, const char *key) {
  (void)core;
  return strcmp(key, "cpu_hop") == 0 ? "0" : NULL;
}

START_TEST(test_pool_hop_off_moves_and_restores) {
  cpu_set_t allowed, now;
  int cpus[CPU_SETSIZE], tmp[CPU_SETSIZE];
  const int n = allowed_cpus(&allowed, cpus);
  if (n < 2) return;
  int moved = 0;
  for (int i = 0; i < 20; ++i) {
    const int c = sched_getcpu();
    ck_assert_int_ge(c, 0);
    if (!cpu_pool_hop_off(c)) {
      ck_assert_int_ne(sched_getcpu(), c); /* only if the scheduler moved it first */
      continue;
    }
    moved += sched_getcpu() != c; /* (the scheduler may move it back later, not this soon) */
    ck_assert_int_eq(allowed_cpus(&now, tmp), n);
    ck_assert(CPU_EQUAL(&now, &allowed));
  }
  ck_assert_int_ge(moved, 10);
  ck_assert_int_eq(cpu_pool_hop_off(-1), 0);
  /* Narrowed to one CPU: nowhere to go. */
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpus[0], &one);
  ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
  ck_assert_int_eq(sched_getcpu(), cpus[0]);
  ck_assert_int_eq(cpu_pool_hop_off(cpus[0]), 0);
  ck_assert_int_eq(cpu_pool_hop_off(cpus[1]), 0); /* not running there */
  ck_assert_int_eq(sched_getcpu(), cpus[0]);
  ck_assert_int_eq(allowed_cpus(&now, tmp), 1);
  ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed), 0);
  for (int off = 0; off < 2; ++off) {
    fake_host h;
    cpu_pool *pool = two_thread_pool(&h, off ? no_hop_option : NULL);
    for (int rep = 0; rep < 50; ++rep) {
      runs_1000_once(pool);
      if (rep % 10 == 9) usleep(2000); /* past the spin: the worker sleeps, then wakes */
    }
    if (off) ck_assert_int_eq(cpu_pool_hops(pool), 0);
    cpu_pool_destroy(pool);
  }
}
END_TEST

/* cpu_affinity through a context: a run's calling thread gets its own set back after a run
 * that succeeds and after one whose kernel fails (an embedding id out of range). */
START_TEST(test_run_restores_the_callers_cpus) {
  cpu_set_t allowed, now;
  int cpus[CPU_SETSIZE], tmp[CPU_SETSIZE];
  const int n = allowed_cpus(&allowed, cpus);
  if (n < 2) return;
  vnrt_context *ctx = NULL;
  vnrt_context_desc cd = {.struct_size = sizeof cd, .num_threads = 2, .options = "cpu_affinity=1"};
  ck_assert_int_eq(vnrt_context_create(&cd, &ctx), VNRT_OK);
  vnrt_device *cpu = NULL;
  ck_assert_int_eq(vnrt_device_select(ctx, "cpu", &cpu), VNRT_OK);
  const int64_t tdims[2] = {4, 8}, idims[1] = {3};
  tu_tensor in[2] = {tu_tensor_new(VNRT_F32, 2, tdims), tu_tensor_new(VNRT_I32, 1, idims)};
  tu_fill_uniform(&in[0], 7, -1.0f, 1.0f);
  for (int bad = 0; bad < 2; ++bad) {
    for (int64_t i = 0; i < 3; ++i) tu_set(&in[1], i, bad && i == 2 ? 4 : (double)i);
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_EMBEDDING, in, 2, NULL, 0, 1);
    tu_tensor out = {0};
    const vnrt_status st = tu_run(ctx, g, cpu, in, 2, &out, 1);
    ck_assert_int_eq(st, bad ? VNRT_ERROR_OUT_OF_RANGE : VNRT_OK);
    if (!bad) ck_assert(tu_get(&out, 8) == tu_get(&in[0], 8));
    ck_assert_int_eq(allowed_cpus(&now, tmp), n);
    ck_assert(CPU_EQUAL(&now, &allowed));
    if (!bad) tu_tensor_free(&out);
    vnrt_graph_destroy(g);
  }
  tu_tensor_free(&in[0]);
  tu_tensor_free(&in[1]);
  vnrt_context_destroy(ctx);
}
END_TEST
#endif

typedef struct nest_ctx {
  cpu_pool *pool;
  pool_probe *inner;
} nest_ctx;

static void outer_range(void *user, int64_t begin, int64_t end) {
  nest_ctx *c = user;
  for (int64_t i = begin; i < end; ++i) {
    cpu_pool_parallel_for(c->pool, 10, 1, probe_range, &c->inner[i]);
  }
}

START_TEST(test_pool_nested_runs_inline) {
  fake_host h;
  fake_host_init(&h, 4);
  cpu_pool *pool = NULL;
  ck_assert_int_eq(cpu_pool_create(&h.host, 4, &pool), VNRT_OK);
  pool_probe *inner = calloc(8, sizeof *inner);
  for (int i = 0; i < 8; ++i) inner[i].n = 10;
  nest_ctx c = {pool, inner};
  cpu_pool_parallel_for(pool, 8, 1, outer_range, &c);
  for (int i = 0; i < 8; ++i) {
    ck_assert_int_eq(atomic_load(&inner[i].calls), 1); /* one inline call over all 10 */
    for (int j = 0; j < 10; ++j) ck_assert_int_eq(atomic_load(&inner[i].hits[j]), 1);
  }
  free(inner);
  cpu_pool_destroy(pool);
}
END_TEST

/* ---- Buffers and device info ------------------------------------------------------------ */

/* Background prefetch: idle workers take every posted step, whatever the ranges point at
 * (prefetches never fault), a parallel_for in the middle still covers its range once, a new
 * post replaces the old one, and the ranges past CPU_POOL_PREFETCH_RANGES are ignored. */
static int64_t wait_prefetch_done(cpu_pool *pool) {
  for (int i = 0; i < 20000 && cpu_pool_prefetch_left(pool) > 0; ++i) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  return cpu_pool_prefetch_left(pool);
}

static const char *prefetch_option(void *core, const char *key) {
  return strcmp(key, "cpu_prefetch_kib") == 0 ? "4096" : NULL;
}

/* Option values by key for test_host_option_readers: "k_<value>" reads as <value>. */
static const char *echo_option(void *core, const char *key) {
  (void)core;
  return strncmp(key, "k_", 2) == 0 ? key + 2 : NULL;
}

/* vnrt_host_option_flag and _uint, the readers every backend's options go through. */
START_TEST(test_host_option_readers) {
  fake_host h;
  fake_host_init(&h, 1);
  h.host.option = echo_option;
  const vnrt_backend_host *host = &h.host;
  ck_assert_int_eq(vnrt_host_option_flag(host, "unset", 0), 0);
  ck_assert_int_eq(vnrt_host_option_flag(host, "unset", 1), 1);
  ck_assert_int_eq(vnrt_host_option_flag(host, "k_", 1), 1); /* empty: the default */
  ck_assert_int_eq(vnrt_host_option_flag(host, "k_0", 1), 0);
  ck_assert_int_eq(vnrt_host_option_flag(host, "k_1", 0), 1);
  ck_assert_int_eq(vnrt_host_option_flag(host, "k_00", 0), 1); /* only "0" is off */
  ck_assert_int_eq(vnrt_host_option_uint(host, "unset", 20, 100), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_", 20, 100), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_0", 20, 100), 0);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_100", 20, 100), 100);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_101", 20, 100), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_99999999999999999999", 20, 100), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_-1", 20, 100), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_7x", 20, 100), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_ 5", 20, 100), 20);
  /* a single digit past a max below 9 (where (max - d) / 10 rounds to 0) */
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_7", 20, 5), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_9", 20, 0), 20);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_5", 20, 5), 5);
  /* The largest max: no overflow on the way to it, one past it refused. */
  ck_assert(vnrt_host_option_uint(host, "k_9223372036854775807", 1, INT64_MAX) == INT64_MAX);
  ck_assert(vnrt_host_option_uint(host, "k_9223372036854775808", 1, INT64_MAX) == 1);
  /* A core without the option slot (an older struct_size): every option unset. */
  h.host.struct_size = offsetof(vnrt_backend_host, option);
  ck_assert_int_eq(vnrt_host_option_flag(host, "k_0", 1), 1);
  ck_assert_int_eq(vnrt_host_option_uint(host, "k_5", 20, 100), 20);
}
END_TEST

START_TEST(test_pool_background_prefetch) {
  fake_host h;
  fake_host_init(&h, 3);
  cpu_pool *pool = NULL;
  /* Off by default: posting does nothing. */
  ck_assert_int_eq(cpu_pool_create(&h.host, 3, &pool), VNRT_OK);
  ck_assert_int_eq(cpu_pool_prefetch_budget(pool), 0);
  const cpu_prefetch_range self = {&h, (int64_t)sizeof h, 1};
  ck_assert_int_eq(cpu_pool_prefetch(pool, &self, 1), 0);
  ck_assert_int_eq(cpu_pool_prefetch_left(pool), 0);
  cpu_pool_destroy(pool);
  h.host.option = prefetch_option;
  ck_assert_int_eq(cpu_pool_create(&h.host, 3, &pool), VNRT_OK);
  ck_assert_int_eq(cpu_pool_prefetch_budget(pool), 4096 << 10);
  ck_assert_int_eq(cpu_pool_prefetch_left(pool), 0);
  const int64_t bytes = (int64_t)3 << 20;
  uint8_t *mem = malloc((size_t)bytes);
  ck_assert_ptr_nonnull(mem);
  memset(mem, 1, (size_t)bytes);
  /* Unmapped once the ranges are posted: prefetching it must still be harmless. */
  void *gone = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(gone, MAP_FAILED);
  ck_assert_int_eq(munmap(gone, 1 << 20), 0);
  for (int rep = 0; rep < 50; ++rep) {
    const cpu_prefetch_range r[6] = {
        {mem, bytes, 3},    {(const void *)(uintptr_t)4096, 1 << 20, 2},
        {gone, 1 << 20, 1}, {mem + 5, 100, 7},
        {mem, bytes, 1},    {mem, bytes, 1}}; /* the last two: past the limit */
    /* Steps: 3 slices of 1 MiB (256 each), 2 of 512 KiB, 256, and 7 slices of one step (100
     * bytes in 64-byte-rounded slices: most of them empty, still counted); the last two ranges
     * are past the limit. */
    ck_assert_int_eq(cpu_pool_prefetch(pool, r, 6), 768 + 256 + 256 + 7);
    runs_1000_once(pool); /* preempts the prefetch */
    /* Workers go back to the steps that are left; a spinning worker takes them all. The pool's
     * workers are awake here: they just ran the parallel_for. */
    if (rep % 10 == 9) ck_assert_int_eq(wait_prefetch_done(pool), 0);
  }
  /* Replaced by an empty post: nothing is left. */
  ck_assert_int_eq(cpu_pool_prefetch(pool, NULL, 0), 0);
  ck_assert_int_eq(cpu_pool_prefetch_left(pool), 0);
  free(mem);
  cpu_pool_destroy(pool);

  /* One thread (no workers): posting does nothing. */
  fake_host_init(&h, 1);
  h.host.option = prefetch_option;
  ck_assert_int_eq(cpu_pool_create(&h.host, 1, &pool), VNRT_OK);
  const cpu_prefetch_range one = {&h, (int64_t)sizeof h, 1};
  ck_assert_int_eq(cpu_pool_prefetch(pool, &one, 1), 0);
  ck_assert_int_eq(cpu_pool_prefetch_left(pool), 0);
  ck_assert_int_eq(cpu_pool_prefetch_budget(pool), 0);
  cpu_pool_destroy(pool);
}
END_TEST

START_TEST(test_backend_buffers) {
  const vnrt_backend_i *b = cpu_backend_get();
  ck_assert_str_eq(b->name, "cpu");
  ck_assert_uint_eq(b->api_version, VNRT_BACKEND_API_VERSION);
  ck_assert_uint_eq(b->struct_size, sizeof(vnrt_backend_i));
  fake_host h;
  fake_host_init(&h, 2);
  void *state = NULL;
  ck_assert_int_eq(b->init(&h.host, &state), VNRT_OK);
  ck_assert_uint_eq(b->device_count(state), 1);
  vnrt_backend_device *dev = NULL;
  ck_assert_int_eq(b->device_open(state, 1, &dev), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(dev);
  ck_assert_int_eq(b->device_open(state, 0, &dev), VNRT_OK);
  for (uint64_t bytes = 0; bytes < 200; bytes += 37) {
    vnrt_backend_buffer *buf = NULL;
    ck_assert_int_eq(b->buffer_alloc(dev, bytes, &buf), VNRT_OK);
    uint8_t *p = b->buffer_host_ptr(dev, buf);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    uint8_t src[200], dst[200];
    for (int i = 0; i < 200; ++i) src[i] = (uint8_t)(i * 13 + 1);
    ck_assert_int_eq(b->buffer_write(dev, buf, 0, src, bytes), VNRT_OK);
    memset(dst, 0, sizeof dst);
    ck_assert_int_eq(b->buffer_read(dev, buf, 0, dst, bytes), VNRT_OK);
    ck_assert_int_eq(memcmp(src, dst, bytes), 0);
    ck_assert_int_eq(memcmp(p, src, bytes), 0); /* host pointer is the buffer itself */
    /* Past the end: refused, with offset, bytes and size in the message. */
    ck_assert_int_eq(b->buffer_write(dev, buf, bytes, src, 1), VNRT_ERROR_INVALID_ARGUMENT);
    char want[128];
    snprintf(want, sizeof want, "offset %llu + 1 bytes is past the buffer's size of %llu bytes",
             (unsigned long long)bytes, (unsigned long long)bytes);
    ck_assert_msg(strstr(h.last_error, want), "message: %s", h.last_error);
    ck_assert_int_eq(b->buffer_read(dev, buf, 1, dst, bytes), VNRT_ERROR_INVALID_ARGUMENT);
    ck_assert_int_eq(b->buffer_read(dev, buf, UINT64_MAX, dst, 2), VNRT_ERROR_INVALID_ARGUMENT);
    b->buffer_free(dev, buf);
  }
#ifdef MADV_HUGEPAGE
  /* A big buffer starts on a 2 MiB boundary (transparent huge pages) and works as any other. */
  vnrt_backend_buffer *big = NULL;
  const uint64_t big_bytes = ((uint64_t)16 << 20) + 12345;
  ck_assert_int_eq(b->buffer_alloc(dev, big_bytes, &big), VNRT_OK);
  uint8_t *bp = b->buffer_host_ptr(dev, big);
  ck_assert_uint_eq((uintptr_t)bp % ((uintptr_t)2 << 20), 0);
  memset(bp, 7, (size_t)big_bytes);
  uint8_t tail[4] = {0};
  ck_assert_int_eq(b->buffer_read(dev, big, big_bytes - 4, tail, 4), VNRT_OK);
  ck_assert_int_eq(tail[0] + tail[3], 14);
  b->buffer_free(dev, big);
#endif
  b->device_close(dev);
  b->shutdown(state);
}
END_TEST

START_TEST(test_device_info) {
  vnrt_context *ctx = tu_context();
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &dev));
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_str_eq(info.backend, "cpu");
  ck_assert_str_eq(info.spec, "cpu");
  ck_assert_int_eq(info.type, VNRT_DEVICE_TYPE_CPU);
  ck_assert_uint_eq(info.index, 0);
  ck_assert_int_gt((int)strlen(info.name), 0);
  ck_assert_uint_gt(info.memory_bytes, 0);
  ck_assert_uint_ge(info.compute_units, 1);
  ck_assert_uint_eq(info.caps & VNRT_CAP_F16_STORAGE, VNRT_CAP_F16_STORAGE);
  ck_assert_uint_eq(info.caps & VNRT_CAP_F16, 0); /* no f16 arithmetic: kernels widen */
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Kernels that fail write nothing ---------------------------------------------------- */

START_TEST(test_embedding_writes_nothing_on_bad_id) {
  ck_assert_ptr_nonnull(cpu_ref_embedding);
  fake_host h;
  fake_host_init(&h, 2);
  cpu_pool *pool = NULL;
  ck_assert_int_eq(cpu_pool_create(&h.host, 2, &pool), VNRT_OK);
  const int64_t td[2] = {4, 3}, id[1] = {4}, od[2] = {4, 3};
  vnrt_tensor_type tt = ttype(VNRT_F32, 2, td), ti = ttype(VNRT_I32, 1, id),
                   to = ttype(VNRT_F32, 2, od);
  float table[12];
  for (int i = 0; i < 12; ++i) table[i] = (float)i;
  const int32_t ids[4] = {0, 1, 2, 4};
  float out[12];
  for (int i = 0; i < 12; ++i) out[i] = -7.0f;
  const vnrt_op_params params = {0};
  vnrt_backend_node node = {
      .op = VNRT_OP_EMBEDDING, .name = "emb", .n_inputs = 2, .n_outputs = 1, .params = &params};
  cpu_kernel_args args = {.node = &node,
                          .n_in = 2,
                          .n_out = 1,
                          .in_type = {&tt, &ti},
                          .in = {table, ids},
                          .out_type = {&to},
                          .out = {out},
                          .pool = pool,
                          .host = &h.host};
  ck_assert_int_eq(cpu_ref_embedding(&args), VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_str_eq(h.last_error, "embedding 'emb': id 4 at position 3 out of range [0, 4)");
  for (int i = 0; i < 12; ++i) ck_assert_msg(out[i] == -7.0f, "out[%d] was written", i);
  cpu_pool_destroy(pool);
}
END_TEST

START_TEST(test_engram_lookup_writes_nothing_on_bad_row) {
  enum { R = 7, D = 4, T = 3, H = 2 };
  float table[R * D], out[T * H * D];
  for (int i = 0; i < R * D; ++i) table[i] = (float)i + 0.5f;
  const int32_t offsets[H] = {0, 3};
  const int32_t idx[T * H] = {1, 2, 0, 3, 2, 4}; /* last: row 3 + 4 = 7 == R */
  for (int i = 0; i < T * H * D; ++i) out[i] = -99.0f;
  fake_host h;
  fake_host_init(&h, 1);
  cpu_pool *pool = NULL;
  ck_assert_int_eq(cpu_pool_create(&h.host, 1, &pool), VNRT_OK);
  const vnrt_op_params params = {0};
  vnrt_backend_node node = {.op = VNRT_OP_ENGRAM_LOOKUP,
                            .name = "e_layer2",
                            .n_inputs = 3,
                            .n_outputs = 1,
                            .params = &params};
  vnrt_tensor_type tt = {VNRT_F32, 2, {R, D}}, it = {VNRT_I32, 2, {T, H}};
  vnrt_tensor_type ft = {VNRT_I32, 1, {H}}, ot = {VNRT_F32, 2, {T, H * D}};
  cpu_kernel_args a = {.node = &node, .n_in = 3, .n_out = 1, .pool = pool, .host = &h.host};
  a.in_type[0] = &tt, a.in_type[1] = &it, a.in_type[2] = &ft, a.out_type[0] = &ot;
  a.in[0] = table, a.in[1] = idx, a.in[2] = offsets, a.out[0] = out;
  ck_assert_int_eq(cpu_ref_engram_lookup(&a), VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_msg(strstr(h.last_error, "engram_lookup") && strstr(h.last_error, "e_layer2") &&
                    strstr(h.last_error, "row 7") && strstr(h.last_error, "[0, 7)"),
                "message must name op, node, row and bound: %s", h.last_error);
  for (int i = 0; i < T * H * D; ++i) ck_assert_float_eq(out[i], -99.0f);
  cpu_pool_destroy(pool);
}
END_TEST

/* Calls kernel on in[] with outputs prefilled with 0xAB bytes; returns its status and checks
 * that the outputs still hold the sentinel. */
static vnrt_status call_kernel_untouched(cpu_kernel_fn kernel, vnrt_op op, const tu_tensor *in,
                                         int32_t n_in, const vnrt_tensor_type *out_types,
                                         int32_t n_out, const vnrt_attr *attrs, int32_t n_attrs,
                                         const vnrt_op_params *params, fake_host *h) {
  ck_assert_msg(kernel != NULL, "the cpu kernel of %s is not linked", vnrt_op_name(op));
  fake_host_init(h, 2);
  cpu_pool *pool = NULL;
  ck_assert(cpu_pool_create(&h->host, 2, &pool) == VNRT_OK);
  vnrt_backend_node node = {.op = op,
                            .name = "out0",
                            .n_inputs = n_in,
                            .n_outputs = n_out,
                            .n_attrs = n_attrs,
                            .attrs = attrs,
                            .params = params};
  cpu_kernel_args a;
  memset(&a, 0, sizeof a);
  a.node = &node;
  a.n_in = n_in;
  a.n_out = n_out;
  a.pool = pool;
  a.host = &h->host;
  for (int32_t i = 0; i < n_in; ++i) {
    a.in_type[i] = &in[i].type;
    a.in[i] = in[i].data;
  }
  size_t bytes[4] = {0};
  for (int32_t o = 0; o < n_out; ++o) {
    a.out_type[o] = &out_types[o];
    bytes[o] = vnrt_tensor_type_bytes(&out_types[o]);
    a.out[o] = malloc(bytes[o]);
    ck_assert_ptr_nonnull(a.out[o]);
    memset(a.out[o], 0xAB, bytes[o]);
  }
  vnrt_status s = kernel(&a);
  for (int32_t o = 0; o < n_out; ++o) {
    for (size_t b = 0; b < bytes[o]; ++b) {
      ck_assert_msg(((unsigned char *)a.out[o])[b] == 0xAB,
                    "%s wrote out%d byte %zu before failing", vnrt_op_name(op), o, b);
    }
    free(a.out[o]);
  }
  cpu_pool_destroy(pool);
  return s;
}

/* The typed parameters the graph layer would resolve for c (docs/ops.md: moe_hash_route). */
static vnrt_op_params hash_params(const hash_case *c) {
  static const vnrt_score_fn fns[3] = {VNRT_SCORE_SIGMOID, VNRT_SCORE_SOFTMAX,
                                       VNRT_SCORE_SQRT_SOFTPLUS};
  vnrt_op_params p;
  memset(&p, 0, sizeof p);
  p.moe_hash_route.score = fns[c->kind];
  p.moe_hash_route.norm = c->norm;
  p.moe_hash_route.scale = c->scale;
  p.moe_hash_route.k = (int32_t)c->k;
  return p;
}

static vnrt_op_params ffn_params(double limit) {
  vnrt_op_params p;
  memset(&p, 0, sizeof p);
  p.moe_ffn.limit = limit;
  return p;
}

START_TEST(test_moe_errors_leave_outputs_untouched) {
  fake_host h;
  /* moe_hash_route: the bad id is the last token's. */
  const hash_case hc = {5, 8, 10, 3, SCORE_SIGMOID, 1, 1.0};
  const vnrt_op_params hp = hash_params(&hc);
  tu_tensor hin[3];
  make_hash_inputs(&hc, 700, hin);
  tu_set(&hin[1], 4, 10.0);
  vnrt_tensor_type hout[2] = {{VNRT_F32, 2, {5, 3}}, {VNRT_I32, 2, {5, 3}}};
  vnrt_status s = call_kernel_untouched(cpu_ref_moe_hash_route, VNRT_OP_MOE_HASH_ROUTE, hin, 3,
                                        hout, 2, hash_attrs(&hc), 3, &hp, &h);
  ck_assert_int_eq(s, VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_int_eq(h.last_status, VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_msg(strstr(h.last_error, "moe_hash_route") && strstr(h.last_error, "out0") &&
                    strstr(h.last_error, "10"),
                "message: %s", h.last_error);
  /* ... and a table entry out of range on the last token. */
  tu_set(&hin[1], 4, 2.0);
  tu_set(&hin[2], 2 * 3 + 2, 8.0);
  s = call_kernel_untouched(cpu_ref_moe_hash_route, VNRT_OP_MOE_HASH_ROUTE, hin, 3, hout, 2,
                            hash_attrs(&hc), 3, &hp, &h);
  ck_assert_int_eq(s, VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_msg(strstr(h.last_error, "8") != NULL, "message: %s", h.last_error);
  free_all(hin, 3);

  /* moe_ffn: the bad expert is the last token's. */
  const ffn_case c = {4, 8, 4, 4, 2, 0.0, VNRT_F32, VNRT_F32, VNRT_F32, VNRT_F32};
  tu_tensor fin[5];
  make_ffn_inputs(&c, 710, fin);
  tu_set(&fin[1], 7, 4.0);
  vnrt_tensor_type fout = {VNRT_F32, 2, {4, 8}};
  vnrt_attr limit = tu_attr_f("limit", 0.0);
  const vnrt_op_params fp = ffn_params(0.0);
  s = call_kernel_untouched(cpu_ref_moe_ffn, VNRT_OP_MOE_FFN, fin, 5, &fout, 1, &limit, 1, &fp, &h);
  ck_assert_int_eq(s, VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_msg(
      strstr(h.last_error, "moe_ffn") && strstr(h.last_error, "out0") && strstr(h.last_error, "4"),
      "message: %s", h.last_error);
  free_all(fin, 5);
}
END_TEST

/* ---- The fast moe_ffn on 1, 2 and 3 threads --------------------------------------------- */

/* Runs the fast moe_ffn kernel directly on a pool of `threads` threads into y (f32 [T, C]). */
static void run_fast_ffn(const tu_tensor *in, const vnrt_attr *attrs, double limit, int32_t threads,
                         float *y) {
  fake_host h;
  fake_host_init(&h, threads);
  cpu_pool *pool = NULL;
  ck_assert(cpu_pool_create(&h.host, threads, &pool) == VNRT_OK);
  const vnrt_op_params params = ffn_params(limit);
  vnrt_backend_node node = {.op = VNRT_OP_MOE_FFN,
                            .name = "ffn",
                            .n_inputs = 5,
                            .n_outputs = 1,
                            .n_attrs = 1,
                            .attrs = attrs,
                            .params = &params};
  vnrt_tensor_type yt = {.dtype = VNRT_F32, .rank = 2};
  yt.dims[0] = in[0].type.dims[0];
  yt.dims[1] = in[0].type.dims[1];
  cpu_kernel_args a;
  memset(&a, 0, sizeof a);
  a.node = &node;
  a.n_in = 5;
  a.n_out = 1;
  a.pool = pool;
  a.host = &h.host;
  for (int32_t i = 0; i < 5; ++i) {
    a.in_type[i] = &in[i].type;
    a.in[i] = in[i].data;
  }
  a.out_type[0] = &yt;
  a.out[0] = y;
  vnrt_status s = cpu_fast_moe_ffn(&a);
  ck_assert_msg(s == VNRT_OK, "moe_ffn on %d threads: %s", threads, h.last_error);
  cpu_pool_destroy(pool);
}

/* The decode path splits the routed experts into items that threads take in any order; each
 * output must still be summed in one fixed order, bit for bit the same on 1, 2 and 3 threads,
 * and agree with the double reference. Shapes: six experts of a token (one item each), and
 * four tokens over six experts (items of up to four tokens, an expert chosen twice by one
 * token, K past one 512 block), and two tokens of one expert each (the two-pass path). */
START_TEST(test_ffn_decode_independent_of_threads) {
  const ffn_case cases[] = {
      {1, 264, 48, 16, 6, 0.35, VNRT_F32, VNRT_F32, VNRT_BF16, VNRT_BF16},
      {4, 600, 24, 6, 6, 0.0, VNRT_F32, VNRT_F32, VNRT_F16, VNRT_F16},
      {2, 520, 16, 64, 1, 0.0, VNRT_F32, VNRT_F32, VNRT_BF16, VNRT_F16},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    const ffn_case *c = &cases[ci];
    tu_tensor in[5];
    make_ffn_inputs(c, 940 + ci, in);
    double *x = tu_values(&in[0]), *ex = tu_values(&in[1]), *w = tu_values(&in[2]);
    double *wgu = tu_values(&in[3]), *wd = tu_values(&in[4]), *yd = tu_dalloc(c->T * c->C);
    ffn_d(c->T, c->C, c->F, c->k, c->limit, x, ex, w, wgu, wd, yd);
    vnrt_attr attrs[] = {tu_attr_f("limit", c->limit)};
    const int64_t n = c->T * c->C;
    float *y1 = malloc(sizeof(float) * (size_t)n), *yn = malloc(sizeof(float) * (size_t)n);
    double *y1d = tu_dalloc(n);
    ck_assert(y1 && yn);
    run_fast_ffn(in, attrs, c->limit, 1, y1);
    for (int64_t i = 0; i < n; ++i) y1d[i] = y1[i];
    const double e = tu_nmse_d(y1d, yd, n);
    ck_assert_msg(e <= TOL_FFN, "case %zu: NMSE %.3g vs double > %.3g", ci, e, TOL_FFN);
    for (int32_t threads = 2; threads <= 3; ++threads) {
      run_fast_ffn(in, attrs, c->limit, threads, yn);
      ck_assert_msg(memcmp(y1, yn, sizeof(float) * (size_t)n) == 0,
                    "case %zu: %d threads differ from 1 thread", ci, threads);
    }
    free(y1);
    free(yn);
    free(y1d);
    free(x);
    free(ex);
    free(w);
    free(wgu);
    free(wd);
    free(yd);
    free_all(in, 5);
  }
}
END_TEST

/* ---- The GEMM blocks on both ISAs --------------------------------------------------------- */

/* cpu_gemm_nt_block and cpu_gemm_nn_block called directly with the portable ISA, AVX2 and the
 * machine's (AVX-512 where it has it), so every path meets a double reference whatever the
 * machine and the process's VNRT_CPU_ISA: M past the 4-row panels and not a multiple of them
 * (5, 7, 13, 101 > the 96-row packed block), N off every column block (3/4/6/8-row tiles, 16
 * columns, the 96-row packed block: 17, 97, 191, 193), K past one block (512; 1024 on
 * AVX-512), off the 16-wide AVX-512 steps and on them (96: f32 w rows on cache lines, read in
 * place; the others are copied to aligned rows), f32/f16/bf16 w, x rows further apart than K
 * (xpad). A kernel that skips the last partial row or column block leaves those results wrong. */
static void check_gemm_block(cpu_isa isa, int nn, int64_t m, int64_t n, int64_t k, int64_t xpad,
                             vnrt_dtype wdt, uint64_t seed) {
  const int64_t ldx = k + xpad, xd[2] = {m, ldx}, wd[2] = {nn ? k : n, nn ? n : k};
  tu_tensor x = tu_tensor_new(VNRT_F32, 2, xd), w = tu_tensor_new(wdt, 2, wd);
  tu_fill_uniform(&x, seed, -1.0f, 1.0f);
  tu_fill_uniform(&w, seed + 1, -1.0f, 1.0f);
  float *c = malloc(sizeof(float) * (size_t)(m * n + 1));
  float *ws = malloc(sizeof(float) * CPU_GEMM_WS_FLOATS);
  double *want = tu_dalloc(m * n), *got = tu_dalloc(m * n);
  ck_assert(c && ws);
  for (int64_t i = 0; i < m * n + 1; ++i) c[i] = NAN;
  if (nn) {
    cpu_gemm_nn_block(isa, x.data, ldx, m, w.data, wdt, n, n, k, c, n, ws);
  } else {
    cpu_gemm_nt_block(isa, x.data, ldx, m, w.data, wdt, k, n, k, c, n, ws);
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t kk = 0; kk < k; ++kk) {
        acc += tu_get(&x, i * ldx + kk) * tu_get(&w, nn ? kk * n + j : j * k + kk);
      }
      want[i * n + j] = acc;
      got[i * n + j] = c[i * n + j];
    }
  }
  if (!isnan(c[m * n]))
    ck_abort_msg("gemm block wrote past its [%lld, %lld] result", (long long)m, (long long)n);
  const double e = tu_nmse_d(got, want, m * n);
  if (!(e <= 1e-10)) {
    ck_abort_msg("gemm_%s_block isa %d m %lld n %lld k %lld ldx %lld w %s: NMSE %.3g vs double",
                 nn ? "nn" : "nt", (int)isa, (long long)m, (long long)n, (long long)k,
                 (long long)ldx, vnrt_dtype_name(wdt), e);
  }
  free(c);
  free(ws);
  free(want);
  free(got);
  tu_tensor_free(&x);
  tu_tensor_free(&w);
}

START_TEST(test_gemm_blocks_cover_partial_tiles) {
  /* The portable path, AVX2 (where the machine has it) and the machine's best. */
  const cpu_isa native = cpu_fast_isa(NULL);
  const cpu_isa isas[3] = {CPU_ISA_GENERIC, native >= CPU_ISA_AVX2 ? CPU_ISA_AVX2 : native, native};
  const int n_isa = native > CPU_ISA_AVX2 ? 3 : 2;
  const int64_t ms[5] = {1, 5, 7, 13, 101}, ns[4] = {17, 97, 191, 193},
                ks[5] = {70, 530, 13, 1100, 96};
  const vnrt_dtype wdts[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};
  uint64_t seed = 700;
  for (int ii = 0; ii < n_isa; ++ii) {
    for (int mi = 0; mi < 5; ++mi) {
      for (int ni = 0; ni < 4; ++ni) {
        const int64_t k = ks[(mi + ni) % 5], xpad = (mi + ni) % 2 ? 0 : 5;
        const vnrt_dtype wdt = wdts[(mi + ni + ii) % 3];
        check_gemm_block(isas[ii], 0, ms[mi], ns[ni], k, xpad, wdt, seed++);
        check_gemm_block(isas[ii], 1, ms[mi], ns[ni], k, xpad, wdt, seed++);
      }
    }
  }
}
END_TEST

/* ---- The quantized GEMV's NaN inputs, kernels called directly ----------------------------- */

/* Binding refuses NaN e4m3 codes and NaN e8m0 scales, so only a direct call gives them to
 * cpu_qgemm_nt_block: a row with one must come out NaN (dec(NaN)·x in the contract), the other
 * rows of its 4-row group exact, on every ISA the machine has (the AVX-512 one-row kernel notes
 * NaN codes as it decodes, the AVX2 ones scan the rows after). K 256 (whole 64-code steps) and
 * 200 (not), 1..4 x rows; then through cpu_qgemm_nt, whose one-row FP8 path has its own
 * groups. */
static double e4m3_dbl(uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m, -9);
  return (c & 0x80) ? -v : v;
}

/* e4m3 codes [rows, cols] with one scale per 128x128 block, as the model's FP8 weights. */
static cpu_weight e4m3_weight(const uint8_t *codes, const uint8_t *scale, int64_t rows,
                              int64_t cols) {
  return (cpu_weight){.data = codes,
                      .dtype = VNRT_E4M3,
                      .scale = scale,
                      .mats = 1,
                      .rows = rows,
                      .cols = cols,
                      .br = 128,
                      .bc = 128,
                      .srows = (rows + 127) / 128,
                      .scols = (cols + 127) / 128};
}

/* cpu_qgemm_nt (the threaded driver) on a 2-thread pool with the machine's isa: c = x·wᵀ. */
static void qgemm_on_pool(const float *x, int64_t k, int64_t m, const cpu_weight *w, float *c,
                          int64_t n) {
  fake_host h;
  fake_host_init(&h, 2);
  cpu_pool *pool = NULL;
  ck_assert(cpu_pool_create(&h.host, 2, &pool) == VNRT_OK);
  const vnrt_op_params params = {0};
  vnrt_backend_node node = {.op = VNRT_OP_LINEAR, .name = "q", .params = &params};
  cpu_kernel_args a = {.node = &node, .pool = pool, .host = &h.host};
  ck_assert(cpu_qgemm_nt(&a, x, k, m, w, c, VNRT_F32, n) == VNRT_OK);
  cpu_pool_destroy(pool);
}

static void check_qgemv_nan(cpu_isa isa, int64_t m, int64_t k, int pooled, uint64_t seed) {
  const int64_t n = 12, sc_cols = (k + 127) / 128;
  uint8_t *codes = malloc((size_t)(n * k)), *scale = malloc((size_t)sc_cols);
  float *x = malloc(sizeof(float) * (size_t)(m * k)), *c = malloc(sizeof(float) * (size_t)(m * n));
  ck_assert(codes && scale && x && c);
  uint64_t s = seed;
  for (int64_t i = 0; i < n * k; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    codes[i] = (uint8_t)((s >> 33) & 0x77); /* never NaN */
  }
  for (int64_t i = 0; i < m * k; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
  }
  for (int64_t b = 0; b < sc_cols; ++b) scale[b] = (uint8_t)(120 + b % 5);
  codes[5 * k + k / 3] = 0x7F;
  codes[9 * k + k - 1] = 0xFF;
  const cpu_weight w = e4m3_weight(codes, scale, n, k);
  const int64_t wsf = cpu_qgemm_ws_floats(isa, m, &w);
  float *ws = malloc(sizeof(float) * (size_t)(wsf > 0 ? wsf : 1));
  ck_assert(ws);
  if (pooled) {
    qgemm_on_pool(x, k, m, &w, c, n); /* its FP8 one-row path for m = 1 */
  } else {
    cpu_qgemm_nt_block(isa, x, k, m, &w, 0, 0, n, c, n, ws);
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0, mag = 0.0;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double p =
            x[i * k + kk] * e4m3_dbl(codes[j * k + kk]) * ldexp(1.0, scale[kk / 128] - 127);
        acc += p;
        mag += fabs(p);
      }
      const double got = c[i * n + j];
      if (isnan(acc) ? !isnan(got) : !(fabs(got - acc) <= 1e-6 * mag)) {
        ck_abort_msg("qgemm isa %d m %lld k %lld%s: y[%lld, %lld] = %.9g, want %.9g", (int)isa,
                     (long long)m, (long long)k, pooled ? " (cpu_qgemm_nt)" : "", (long long)i,
                     (long long)j, got, acc);
      }
    }
  }
  free(codes);
  free(scale);
  free(x);
  free(c);
  free(ws);
}

START_TEST(test_qgemv_nan_codes) {
  const cpu_isa top = cpu_fast_isa(NULL);
  uint64_t seed = 900;
  for (int isa = CPU_ISA_GENERIC; isa <= (int)top; ++isa) {
    for (int64_t m = 1; m <= 4; ++m) {
      check_qgemv_nan((cpu_isa)isa, m, 256, 0, seed++);
      check_qgemv_nan((cpu_isa)isa, m, 200, 0, seed++);
    }
  }
  /* K 256: whole 64-code steps (AVX-512's eight-row groups); 96: 32-code steps (AVX2's) */
  for (int64_t m = 1; m <= 2; ++m) {
    check_qgemv_nan(top, m, 256, 1, seed++);
    check_qgemv_nan(top, m, 96, 1, seed++);
  }
}
END_TEST

/* Every e4m3 code through each ISA's one-row GEMV (the AVX-512 VBMI kernels decode by a
 * 128-entry table, the others by shifts), and through cpu_qgemm_nt's FP8 row path (the decode's,
 * the machine's ISA): row j of w holds all 254 non-NaN codes (rotated by 64·j; the two NaN codes
 * are 0 here, test_qgemv_nan_codes has them), and a one-hot x picks one column at a time, so
 * y[j] is that code's value times the scale exactly, whatever the summation order. Scales 2^0
 * and 2^-3 on the two 128-column blocks. */
static void check_every_e4m3_code(int isa, const cpu_weight *w, const float *c, int64_t k) {
  const uint8_t *codes = w->data;
  for (int64_t j = 0; j < w->rows; ++j) {
    const uint8_t code = codes[j * w->cols + k];
    const double want = e4m3_dbl(code) * ldexp(1.0, w->scale[k / 128] - 127);
    if (!((double)c[j] == want)) {
      ck_abort_msg("isa %d: code 0x%02X gives %.9g, want %.9g", isa, code, c[j], want);
    }
  }
}

START_TEST(test_qgemv_every_e4m3_code) {
  enum { N = 4, K = 256 };
  uint8_t codes[N * K], scale[2] = {127, 124};
  float x[K], c[N];
  for (int j = 0; j < N; ++j) {
    for (int k = 0; k < K; ++k) {
      const uint8_t code = (uint8_t)(k + 64 * j);
      codes[j * K + k] = (code & 0x7F) == 0x7F ? 0 : code;
    }
  }
  const cpu_weight w = e4m3_weight(codes, scale, N, K);
  const int top = (int)cpu_fast_isa(NULL);
  for (int isa = CPU_ISA_GENERIC; isa <= top; ++isa) {
    const int64_t wsf = cpu_qgemm_ws_floats((cpu_isa)isa, 1, &w);
    float *ws = malloc(sizeof(float) * (size_t)(wsf > 0 ? wsf : 1));
    ck_assert(ws);
    for (int k = 0; k < K; ++k) {
      for (int i = 0; i < K; ++i) x[i] = i == k ? 1.0f : 0.0f;
      cpu_qgemm_nt_block((cpu_isa)isa, x, K, 1, &w, 0, 0, N, c, N, ws);
      check_every_e4m3_code(isa, &w, c, k);
    }
    free(ws);
  }
  for (int k = 0; k < K; ++k) {
    for (int i = 0; i < K; ++i) x[i] = i == k ? 1.0f : 0.0f;
    qgemm_on_pool(x, K, 1, &w, c, N);
    check_every_e4m3_code(top, &w, c, k);
  }
}
END_TEST

/* One x row on FP4 (1x32 scales) through cpu_qgemm_nt: x is permuted once per call for the
 * nibble kernel where the machine has AVX-512, and the tiles of both threads (n rows, not a
 * multiple of the 4-row groups; over 48 KiB, so threaded) must give every row, against
 * double. */
static double e2m1_dbl(uint8_t nib) {
  static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (nib & 8) ? -mag[nib & 7] : mag[nib & 7];
}

static void check_qgemv_e2m1(int64_t k, int64_t n, uint64_t seed) {
  const int64_t sc = k / 32;
  uint8_t *codes = malloc((size_t)(n * k / 2)), *scale = malloc((size_t)(n * sc));
  float *x = malloc(sizeof(float) * (size_t)k), *c = malloc(sizeof(float) * (size_t)n);
  ck_assert(codes && scale && x && c);
  uint64_t s = seed;
  for (int64_t i = 0; i < n * k / 2; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    codes[i] = (uint8_t)(s >> 40);
  }
  for (int64_t i = 0; i < n * sc; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    scale[i] = (uint8_t)(118 + (s >> 40) % 8);
  }
  for (int64_t i = 0; i < k; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
  }
  const cpu_weight w = {.data = codes,
                        .dtype = VNRT_E2M1,
                        .scale = scale,
                        .mats = 1,
                        .rows = n,
                        .cols = k,
                        .br = 1,
                        .bc = 32,
                        .srows = n,
                        .scols = sc};
  for (int64_t j = 0; j < n; ++j) c[j] = NAN;
  qgemm_on_pool(x, k, 1, &w, c, n);
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0.0, mag = 0.0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const uint8_t b = codes[(j * k + kk) / 2];
      const double p =
          x[kk] * e2m1_dbl(kk % 2 ? b >> 4 : b & 15) * ldexp(1.0, scale[j * sc + kk / 32] - 127);
      acc += p;
      mag += fabs(p);
    }
    if (!(fabs(c[j] - acc) <= 1e-6 * mag + 1e-30))
      ck_abort_msg("FP4 one-row k %lld n %lld: y[%lld] = %.9g, want %.9g", (long long)k,
                   (long long)n, (long long)j, c[j], acc);
  }
  free(codes);
  free(scale);
  free(x);
  free(c);
}

START_TEST(test_qgemv_e2m1_one_row_threaded) {
  check_qgemv_e2m1(256, 601, 31);    /* 75 KiB: 10 tiles of 64 rows, a partial group */
  check_qgemv_e2m1(1024, 203, 32);   /* 101 KiB */
  check_qgemv_e2m1(4096, 67, 33);    /* the nibble kernel's longest row */
  check_qgemv_e2m1(96 * 2, 513, 34); /* K not a multiple of 128: the other kernels */
}
END_TEST

/* ---- The row-wise and elementwise fast kernels on both ISAs ------------------------------ */

static const char *option_generic(void *core, const char *key) {
  (void)core;
  return strcmp(key, "cpu_isa") == 0 ? "generic" : NULL;
}

static const char *option_avx2(void *core, const char *key) {
  (void)core;
  return strcmp(key, "cpu_isa") == 0 ? "avx2" : NULL;
}

/* The ISAs the row kernels are run with: the machine's (AVX-512 where it has it), AVX2
 * without the AVX-512 variants, and the portable path. */
enum { ISA_NATIVE, ISA_GENERIC, ISA_AVX2, ISA_MODES };

static const char *isa_mode_name(int mode) {
  return mode == ISA_GENERIC ? "generic" : mode == ISA_AVX2 ? "avx2" : "native";
}

/* Runs fast kernel fn on ins into out, on a 2-thread pool with the portable kernels (generic)
 * or the machine's, and returns the NMSE of out against want (double, rounded to out's dtype). */
static double run_row_kernel(cpu_kernel_fn fn, vnrt_op op, const vnrt_op_params *params,
                             const tu_tensor *ins, int32_t n_in, tu_tensor *out, const double *want,
                             int generic) {
  fake_host h;
  fake_host_init(&h, 2);
  if (generic == ISA_GENERIC) h.host.option = option_generic;
  if (generic == ISA_AVX2) h.host.option = option_avx2;
  cpu_pool *pool = NULL;
  ck_assert(cpu_pool_create(&h.host, 2, &pool) == VNRT_OK);
  ck_assert_int_eq(cpu_fast_isa(pool) == CPU_ISA_GENERIC,
                   generic == ISA_GENERIC || !cpu_fast_isa(NULL));
  ck_assert(generic != ISA_AVX2 || cpu_fast_isa(pool) <= CPU_ISA_AVX2);
  vnrt_backend_node node = {
      .op = op, .name = "n", .n_inputs = n_in, .n_outputs = 1, .params = params};
  cpu_kernel_args a;
  memset(&a, 0, sizeof a);
  a.node = &node;
  a.n_in = n_in;
  a.n_out = 1;
  a.pool = pool;
  a.host = &h.host;
  for (int32_t i = 0; i < n_in; ++i) {
    a.in_type[i] = &ins[i].type;
    a.in[i] = ins[i].data;
  }
  const int64_t n = tu_numel(out);
  for (int64_t i = 0; i < n; ++i) tu_set(out, i, NAN);
  a.out_type[0] = &out->type;
  a.out[0] = out->data;
  vnrt_status s = fn(&a);
  ck_assert_msg(s == VNRT_OK, "%s: %s", vnrt_op_name(op), h.last_error);
  cpu_pool_destroy(pool);
  /* want rounded to the result's dtype, as the kernel's f32 results are */
  tu_tensor wt = tu_tensor_new(out->type.dtype, out->type.rank, out->type.dims);
  for (int64_t i = 0; i < n; ++i) tu_set(&wt, i, want[i]);
  double *got = tu_values(out), *wr = tu_values(&wt);
  const double e = tu_nmse_d(got, wr, n);
  free(got);
  free(wr);
  tu_tensor_free(&wt);
  return e;
}

#define TOL_ROWS 1e-7 /* docs/ops.md: elementwise, norm and softmax ops */

static void expect_rows(const char *what, double e, int generic) {
  if (!(e <= TOL_ROWS))
    ck_abort_msg("%s (%s): NMSE %.3g vs double", what, isa_mode_name(generic), e);
}

/* rms_norm: one row with an odd tail (4099), per-head rows ([3, 7, 128], bf16 w), f16 in and
 * out, and enough rows (300 x 130, no weight) for the work to be split over the pool. */
START_TEST(test_fast_rms_norm_shapes) {
  const struct {
    int32_t rank;
    int64_t dims[3];
    vnrt_dtype dx, dw, dy;
    int has_w;
  } cases[] = {
      {2, {1, 4099}, VNRT_F32, VNRT_F32, VNRT_F32, 1},
      {3, {3, 7, 128}, VNRT_F32, VNRT_BF16, VNRT_F32, 1},
      {2, {5, 37}, VNRT_F16, VNRT_F16, VNRT_F16, 1},
      {2, {300, 130}, VNRT_BF16, VNRT_F32, VNRT_BF16, 0},
      {2, {300, 130}, VNRT_F32, VNRT_F32, VNRT_F32, 0},
  };
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
      const int64_t d = cases[ci].dims[cases[ci].rank - 1];
      tu_tensor in[2] = {tu_tensor_new(cases[ci].dx, cases[ci].rank, cases[ci].dims),
                         tu_tensor_new(cases[ci].dw, 1, &d)};
      tu_fill_uniform(&in[0], 1000 + ci, -2.0f, 2.0f);
      tu_fill_uniform(&in[1], 1100 + ci, 0.5f, 1.5f);
      tu_tensor out = tu_tensor_new(cases[ci].dy, cases[ci].rank, cases[ci].dims);
      const int64_t n = tu_numel(&out), rows = n / d;
      double *want = tu_dalloc(n);
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0.0;
        for (int64_t i = 0; i < d; ++i) ss += tu_get(&in[0], r * d + i) * tu_get(&in[0], r * d + i);
        const double inv = 1.0 / sqrt(ss / (double)d + 1e-6);
        for (int64_t i = 0; i < d; ++i) {
          want[r * d + i] =
              tu_get(&in[0], r * d + i) * inv * (cases[ci].has_w ? tu_get(&in[1], i) : 1.0);
        }
      }
      vnrt_op_params p = {.rms_norm = {.eps = 1e-6, .has_weight = cases[ci].has_w}};
      char what[64];
      snprintf(what, sizeof what, "rms_norm case %zu", ci);
      expect_rows(what,
                  run_row_kernel(cpu_fast_rms_norm, VNRT_OP_RMS_NORM, &p, in,
                                 cases[ci].has_w ? 2 : 1, &out, want, generic),
                  generic);
      free(want);
      tu_tensor_free(&out);
      free_all(in, 2);
    }
  }
}
END_TEST

/* softmax over the last axis: one row, short rows, rows past the cached length (9000: the
 * online-max path, with a tail past its blocks) with masked (-inf) entries and a large
 * offset, f16/bf16 in or out, and enough rows to be split over the pool. */
START_TEST(test_fast_softmax_shapes) {
  const struct {
    int64_t rows, len;
    vnrt_dtype dx, dy;
  } cases[] = {
      {1, 4096, VNRT_F32, VNRT_F32},  {5, 13, VNRT_F16, VNRT_F16},   {2, 9000, VNRT_F32, VNRT_F32},
      {3, 9000, VNRT_BF16, VNRT_F32}, {2, 700, VNRT_F32, VNRT_BF16}, {40, 1000, VNRT_F32, VNRT_F32},
  };
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
      const int64_t dims[2] = {cases[ci].rows, cases[ci].len}, len = cases[ci].len;
      tu_tensor x = tu_tensor_new(cases[ci].dx, 2, dims),
                out = tu_tensor_new(cases[ci].dy, 2, dims);
      tu_fill_uniform(&x, 1200 + ci, 60.0f, 70.0f);
      /* Masked entries, a whole first block of them in the long rows. */
      for (int64_t i = 0; i < tu_numel(&x); i += 7) tu_set(&x, i, -INFINITY);
      if (len > 8192) {
        for (int64_t i = 0; i < 300; ++i) tu_set(&x, i, -INFINITY);
      }
      double *want = tu_dalloc(tu_numel(&x));
      for (int64_t r = 0; r < cases[ci].rows; ++r) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t i = 0; i < len; ++i) mx = fmax(mx, tu_get(&x, r * len + i));
        for (int64_t i = 0; i < len; ++i) sum += exp(tu_get(&x, r * len + i) - mx);
        for (int64_t i = 0; i < len; ++i)
          want[r * len + i] = exp(tu_get(&x, r * len + i) - mx) / sum;
      }
      vnrt_op_params p = {.softmax = {.axis = 1}};
      char what[64];
      snprintf(what, sizeof what, "softmax case %zu", ci);
      expect_rows(what,
                  run_row_kernel(cpu_fast_softmax, VNRT_OP_SOFTMAX, &p, &x, 1, &out, want, generic),
                  generic);
      free(want);
      tu_tensor_free(&out);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

/* The element of `in` that numpy broadcasting pairs with element o of a result of type out. */
static int64_t bcast_src(const vnrt_tensor_type *in, const vnrt_tensor_type *out, int64_t o) {
  int64_t idx = 0, stride = 1;
  for (int32_t d = out->rank - 1; d >= 0; --d) {
    const int64_t c = o % out->dims[d];
    o /= out->dims[d];
    const int32_t id = d - (out->rank - in->rank);
    if (id < 0) continue;
    if (in->dims[id] != 1) idx += c * stride;
    stride *= in->dims[id];
  }
  return idx;
}

/* The binaries with a full operand, a repeated row or a column on either side (sub and div
 * keep their order), a scalar, rows of odd length, and a broadcast within the rows; the unaries,
 * swiglu and float casts over a tail. */
START_TEST(test_fast_elementwise_shapes) {
  const struct {
    int32_t ra, rb, ro;
    int64_t a[3], b[3], o[3];
  } shapes[] = {
      {2, 2, 2, {37, 1001}, {37, 1001}, {37, 1001}}, /* full, split over the pool */
      {2, 1, 2, {50, 1003}, {1003}, {50, 1003}},     /* b a row */
      {2, 3, 3, {3, 61}, {4, 3, 61}, {4, 3, 61}},    /* a a repeated [3, 61] block */
      {2, 1, 2, {5, 67}, {1}, {5, 67}},              /* b a scalar */
      {1, 2, 2, {1}, {9, 9}, {9, 9}},                /* a a scalar */
      {2, 2, 2, {6, 1001}, {6, 1}, {6, 1001}},       /* b a column */
      {3, 3, 3, {4, 3, 1}, {4, 3, 67}, {4, 3, 67}},  /* a a column over two outer dims */
      {3, 3, 3, {5, 1, 33}, {1, 4, 33}, {5, 4, 33}}, /* a per head row: rows of 33 */
      {3, 3, 3, {4, 1, 3}, {1, 5, 1}, {4, 5, 3}},    /* inside the rows: the reference's */
  };
  const vnrt_op ops[4] = {VNRT_OP_ADD, VNRT_OP_SUB, VNRT_OP_MUL, VNRT_OP_DIV};
  const cpu_kernel_fn fns[4] = {cpu_fast_add, cpu_fast_sub, cpu_fast_mul, cpu_fast_div};
  const vnrt_dtype dts[3] = {VNRT_F32, VNRT_BF16, VNRT_F16};
  const vnrt_op_params none = {0};
  uint64_t seed = 1300;
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si) {
      for (int oi = 0; oi < 4; ++oi) {
        const vnrt_dtype dt = dts[(si + (size_t)oi) % 3];
        tu_tensor in[2] = {tu_tensor_new(dt, shapes[si].ra, shapes[si].a),
                           tu_tensor_new(VNRT_F32, shapes[si].rb, shapes[si].b)};
        tu_fill_uniform(&in[0], seed++, -2.0f, 2.0f);
        tu_fill_uniform(&in[1], seed++, 0.5f, 3.0f);
        tu_tensor out = tu_tensor_new(dt, shapes[si].ro, shapes[si].o);
        const int64_t n = tu_numel(&out);
        double *want = tu_dalloc(n);
        for (int64_t i = 0; i < n; ++i) {
          const double x = tu_get(&in[0], bcast_src(&in[0].type, &out.type, i));
          const double y = tu_get(&in[1], bcast_src(&in[1].type, &out.type, i));
          want[i] = oi == 0 ? x + y : oi == 1 ? x - y : oi == 2 ? x * y : x / y;
        }
        char what[64];
        snprintf(what, sizeof what, "%s shape %zu %s", vnrt_op_name(ops[oi]), si,
                 vnrt_dtype_name(dt));
        expect_rows(what, run_row_kernel(fns[oi], ops[oi], &none, in, 2, &out, want, generic),
                    generic);
        free(want);
        tu_tensor_free(&out);
        free_all(in, 2);
      }
    }
    /* Unaries and swiglu over [3, 5001] (a tail of 1 past the vectors; split over the pool). */
    const int64_t ud[2] = {3, 5001};
    for (int k = 0; k < 6; ++k) {
      const vnrt_dtype dt = dts[k % 3];
      tu_tensor in[2] = {tu_tensor_new(dt, 2, ud), tu_tensor_new(dt, 2, ud)};
      tu_fill_uniform(&in[0], seed++, -6.0f, 6.0f);
      tu_fill_uniform(&in[1], seed++, -6.0f, 6.0f);
      tu_tensor out = tu_tensor_new(dts[(k + 1) % 3], 2, ud);
      const int64_t n = tu_numel(&out);
      double *want = tu_dalloc(n);
      vnrt_op_params p = {0};
      static const vnrt_op uops[6] = {VNRT_OP_SILU,  VNRT_OP_SIGMOID, VNRT_OP_EXP,
                                      VNRT_OP_SCALE, VNRT_OP_SWIGLU,  VNRT_OP_SWIGLU};
      static const cpu_kernel_fn ufns[6] = {cpu_fast_silu,  cpu_fast_sigmoid, cpu_fast_exp,
                                            cpu_fast_scale, cpu_fast_swiglu,  cpu_fast_swiglu};
      if (k == 3) p.scale.s = -0.75;
      if (k == 5) p.swiglu.limit = 2.5;
      for (int64_t i = 0; i < n; ++i) {
        double g = tu_get(&in[0], i), u = tu_get(&in[1], i);
        const double sg = 1.0 / (1.0 + exp(-g));
        switch (k) {
          case 0:
            want[i] = g * sg;
            break;
          case 1:
            want[i] = sg;
            break;
          case 2:
            want[i] = exp(g);
            break;
          case 3:
            want[i] = -0.75 * g;
            break;
          default:
            if (k == 5) {
              g = fmin(g, 2.5);
              u = fmax(fmin(u, 2.5), -2.5);
            }
            want[i] = g / (1.0 + exp(-g)) * u;
            break;
        }
      }
      char what[64];
      snprintf(what, sizeof what, "%s #%d %s", vnrt_op_name(uops[k]), k, vnrt_dtype_name(dt));
      expect_rows(what,
                  run_row_kernel(ufns[k], uops[k], &p, in, k >= 4 ? 2 : 1, &out, want, generic),
                  generic);
      free(want);
      tu_tensor_free(&out);
      free_all(in, 2);
    }
  }
}
END_TEST

/* hc_head's fast kernel on each of its paths, against docs/ops.md in double: 2 tokens (fn split
 * along K, the epilogue on the caller), 9 (fn's rows split, the epilogue as a second step), 64
 * (one row block: the epilogue inside each token block's item; at the generic ISA fn is first
 * widened into a padded copy); f32/bf16 streams, f32/f16 fn, 2 threads, every ISA. */
START_TEST(test_fast_hc_head_paths) {
  const struct {
    int64_t T, n, C;
    vnrt_dtype xdt, fdt;
  } cases[] = {{2, 4, 300, VNRT_F32, VNRT_F32},
               {9, 4, 40, VNRT_BF16, VNRT_F16},
               {64, 4, 40, VNRT_F32, VNRT_F32},
               {64, 3, 24, VNRT_BF16, VNRT_F32}};
  const double eps = 1e-6, norm_eps = 1e-6;
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
      const int64_t T = cases[ci].T, n = cases[ci].n, C = cases[ci].C, nc = n * C;
      const int64_t xd[3] = {T, n, C}, fd[2] = {n, nc}, sd[1] = {1}, bd[1] = {n}, od[2] = {T, C};
      tu_tensor in[4] = {tu_tensor_new(cases[ci].xdt, 3, xd), tu_tensor_new(cases[ci].fdt, 2, fd),
                         tu_tensor_new(VNRT_F32, 1, sd), tu_tensor_new(VNRT_F32, 1, bd)};
      tu_fill_uniform(&in[0], 2100 + ci, -2.0f, 2.0f);
      tu_fill_uniform(&in[1], 2200 + ci, -0.5f, 0.5f);
      tu_set(&in[2], 0, 0.8);
      tu_fill_uniform(&in[3], 2300 + ci, -1.0f, 1.0f);
      tu_tensor out = tu_tensor_new(cases[ci].xdt, 2, od);
      double *want = tu_dalloc(T * C);
      for (int64_t t = 0; t < T; ++t) {
        double ss = 0.0, w[8];
        for (int64_t i = 0; i < nc; ++i)
          ss += tu_get(&in[0], t * nc + i) * tu_get(&in[0], t * nc + i);
        const double inv = 1.0 / sqrt(ss / (double)nc + norm_eps);
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0.0;
          for (int64_t i = 0; i < nc; ++i)
            dot += tu_get(&in[1], j * nc + i) * tu_get(&in[0], t * nc + i);
          w[j] = 1.0 / (1.0 + exp(-(dot * inv * tu_get(&in[2], 0) + tu_get(&in[3], j)))) + eps;
        }
        for (int64_t c = 0; c < C; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j < n; ++j) acc += w[j] * tu_get(&in[0], (t * n + j) * C + c);
          want[t * C + c] = acc;
        }
      }
      vnrt_op_params p = {.hc_head = {.eps = eps, .norm_eps = norm_eps}};
      char what[64];
      snprintf(what, sizeof what, "hc_head case %zu", ci);
      const double e =
          run_row_kernel(cpu_fast_hc_head, VNRT_OP_HC_HEAD, &p, in, 4, &out, want, generic);
      /* bf16 results carry their own rounding: 2^-9 relative, NMSE ~1e-6 */
      if (!(e <= (cases[ci].xdt == VNRT_F32 ? 1e-9 : 1e-5))) {
        ck_abort_msg("%s (%s): NMSE %.3g vs double", what, isa_mode_name(generic), e);
      }
      free(want);
      tu_tensor_free(&out);
      for (int i = 0; i < 4; ++i) tu_tensor_free(&in[i]);
    }
  }
}
END_TEST

/* rope's frequency of pair i written out apart from backend_util.h (docs/ops.md, rope with
 * YaRN): theta^(-2i/dims), blended towards it / yarn_factor along the ramp between
 * floor(corr(beta_fast)) and ceil(corr(beta_slow)), corr(b) = dims·ln(L/(2πb)) / (2 ln theta),
 * clamped to [0, dims-1]. */
static double rope_freq_d(const vnrt_rope_params *p, int64_t i) {
  const double dims = (double)p->dims, f = pow(p->theta, -2.0 * (double)i / dims);
  if (p->yarn_factor <= 0.0) return f;
  const double pi2 = 2.0 * 3.14159265358979323846, L = (double)p->yarn_orig_ctx;
  double lo = floor(dims * log(L / (p->beta_fast * pi2)) / (2.0 * log(p->theta)));
  double hi = ceil(dims * log(L / (p->beta_slow * pi2)) / (2.0 * log(p->theta)));
  lo = lo < 0.0 ? 0.0 : lo;
  hi = hi > dims - 1.0 ? dims - 1.0 : hi;
  if (lo == hi) hi += 0.001;
  double r = ((double)i - lo) / (hi - lo);
  r = r < 0.0 ? 0.0 : r > 1.0 ? 1.0 : r;
  return f * (1.0 - r) + f / p->yarn_factor * r;
}

/* The frequencies the fast rope forms (vnrt_rope_yarn_ramp once, vnrt_rope_freq_in a pair)
 * against the formula written out above: within 4 ulp (the same operations, whatever the
 * compiler contracts), with and without YaRN, and the YaRN cases blended somewhere. (The fast
 * kernel's rotations with YaRN: test_fast_rope_shapes.) */
START_TEST(test_rope_freqs_match_rope_freq) {
  const vnrt_rope_params ps[] = {
      {.theta = 10000.0, .dims = 64},
      {.theta = 10000.0,
       .dims = 64,
       .yarn_factor = 16.0,
       .yarn_orig_ctx = 65536,
       .beta_fast = 32.0,
       .beta_slow = 1.0},
      {.theta = 160000.0,
       .dims = 64,
       .yarn_factor = 16.0,
       .yarn_orig_ctx = 65536,
       .beta_fast = 32.0,
       .beta_slow = 1.0},
      {.theta = 500.0,
       .dims = 6,
       .yarn_factor = 4.0,
       .yarn_orig_ctx = 8,
       .beta_fast = 2.0,
       .beta_slow = 2.0},
  };
  for (size_t c = 0; c < sizeof ps / sizeof ps[0]; ++c) {
    double low = 0.0, high = 0.0;
    if (ps[c].yarn_factor > 0.0) vnrt_rope_yarn_ramp(&ps[c], &low, &high);
    int blended = 0;
    for (int64_t i = 0; i < ps[c].dims / 2; ++i) {
      const double f = vnrt_rope_freq_in(&ps[c], i, low, high), want = rope_freq_d(&ps[c], i);
      if (fabs(f - want) > 4.0 * DBL_EPSILON * want) {
        ck_abort_msg("params %zu pair %lld: %.17g, want %.17g", c, (long long)i, f, want);
      }
      blended |= f != pow(ps[c].theta, -2.0 * (double)i / (double)ps[c].dims);
    }
    ck_assert_int_eq(blended, ps[c].yarn_factor > 0.0);
  }
}
END_TEST

/* rope: interleaved and half-split pairs, all channels or the last `dims` of them (half-split
 * with 18 pairs: a tail past the vectors), the inverse rotation, f16/bf16 in or out, enough
 * rows to be split over the pool, and V4's YaRN; positions up to 5000. */
START_TEST(test_fast_rope_shapes) {
  const struct {
    int64_t T, H, D, dims;
    int interleaved, inverse;
    vnrt_dtype dx, dy;
    double yarn; /* yarn_factor (0: none), with V4's L = 65536, beta 32 / 1 */
  } cases[] = {
      {3, 4, 64, 64, 1, 0, VNRT_F32, VNRT_F32, 0.0},
      {2, 3, 10, 6, 1, 0, VNRT_F16, VNRT_F16, 0.0},
      {5, 2, 128, 64, 0, 0, VNRT_F32, VNRT_BF16, 0.0},
      {4, 3, 40, 36, 0, 1, VNRT_BF16, VNRT_F32, 0.0},
      {40, 16, 128, 128, 0, 0, VNRT_F32, VNRT_F32, 0.0},
      {40, 16, 72, 64, 1, 1, VNRT_F32, VNRT_F32, 0.0},
      /* V4's YaRN (its ramp taken once a call by the fast kernel), decode-sized and not */
      {1, 8, 512, 64, 1, 0, VNRT_BF16, VNRT_BF16, 16.0},
      {6, 2, 72, 64, 0, 1, VNRT_F32, VNRT_F32, 16.0},
  };
  const double theta = 10000.0;
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
      const int64_t T = cases[ci].T, H = cases[ci].H, D = cases[ci].D, dims = cases[ci].dims;
      const int64_t xd[3] = {T, H, D}, pd[1] = {T};
      tu_tensor in[2] = {tu_tensor_new(cases[ci].dx, 3, xd), tu_tensor_new(VNRT_I32, 1, pd)};
      tu_fill_uniform(&in[0], 1500 + ci, -2.0f, 2.0f);
      int32_t *pos = in[1].data;
      for (int64_t t = 0; t < T; ++t) pos[t] = (int32_t)((t * 977 + 13 * ci) % 5000);
      tu_tensor out = tu_tensor_new(cases[ci].dy, 3, xd);
      double *want = tu_dalloc(T * H * D);
      const vnrt_op_params p = {.rope = {.theta = theta,
                                         .dims = (int32_t)dims,
                                         .interleaved = cases[ci].interleaved,
                                         .inverse = cases[ci].inverse,
                                         .yarn_factor = cases[ci].yarn,
                                         .yarn_orig_ctx = 65536,
                                         .beta_fast = 32.0,
                                         .beta_slow = 1.0}};
      const int64_t half = dims / 2, first = D - dims;
      for (int64_t r = 0; r < T * H; ++r) {
        for (int64_t k = 0; k < D; ++k) want[r * D + k] = tu_get(&in[0], r * D + k);
        for (int64_t i = 0; i < half; ++i) {
          double a = (double)pos[r / H] * rope_freq_d(&p.rope, i);
          if (cases[ci].inverse) a = -a;
          const int64_t i1 = r * D + first + (cases[ci].interleaved ? 2 * i : i);
          const int64_t i2 = r * D + first + (cases[ci].interleaved ? 2 * i + 1 : i + half);
          const double x1 = tu_get(&in[0], i1), x2 = tu_get(&in[0], i2);
          want[i1] = x1 * cos(a) - x2 * sin(a);
          want[i2] = x1 * sin(a) + x2 * cos(a);
        }
      }
      char what[64];
      snprintf(what, sizeof what, "rope case %zu", ci);
      expect_rows(what, run_row_kernel(cpu_fast_rope, VNRT_OP_ROPE, &p, in, 2, &out, want, generic),
                  generic);
      free(want);
      tu_tensor_free(&out);
      free_all(in, 2);
    }
  }
}
END_TEST

/* hadamard: D from 1 (no stage) through the in-vector stages (2, 4, 8) to stages between
 * vectors (64, 1024), f32 and bf16 x, enough rows to be split over the pool; against
 * H_D·x·D^-1/2 with H_D[i][k] = (-1)^popcount(i & k) (Sylvester order). */
START_TEST(test_fast_hadamard_shapes) {
  const struct {
    int64_t rows, d;
    vnrt_dtype dx;
  } cases[] = {{3, 1, VNRT_F32},  {5, 2, VNRT_F32},    {4, 8, VNRT_BF16},
               {7, 64, VNRT_F32}, {2, 1024, VNRT_F32}, {300, 128, VNRT_BF16}};
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
      const int64_t rows = cases[ci].rows, d = cases[ci].d, dims[2] = {rows, d};
      tu_tensor x = tu_tensor_new(cases[ci].dx, 2, dims), out = tu_tensor_new(VNRT_F32, 2, dims);
      tu_fill_uniform(&x, 1600 + ci, -2.0f, 2.0f);
      double *want = tu_dalloc(rows * d);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < d; ++i) {
          double acc = 0.0;
          for (int64_t k = 0; k < d; ++k) {
            const double v = tu_get(&x, r * d + k);
            acc += (__builtin_popcountll((unsigned long long)(i & k)) & 1) ? -v : v;
          }
          want[r * d + i] = acc / sqrt((double)d);
        }
      }
      const vnrt_op_params none = {0};
      char what[64];
      snprintf(what, sizeof what, "hadamard case %zu", ci);
      expect_rows(
          what,
          run_row_kernel(cpu_fast_hadamard, VNRT_OP_HADAMARD, &none, &x, 1, &out, want, generic),
          generic);
      free(want);
      tu_tensor_free(&out);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

/* fake_quant: the fast kernel's results are the reference kernel's bit for bit (e4m3 through
 * the vectorised act_quant rounding, e2m1 through the vectorised level search), on every ISA:
 * e4m3 blocks of 64 over the first 448 of 512 channels (V4's FQ8, also bf16 to bf16 as the
 * model runs it), e2m1 blocks of 32 over all channels (FQ4), bf16 x, f16 and bf16 results,
 * rows with an all-zero block, tiny and large values, every e2m1 midpoint (ties to the even
 * level) and a NaN, and enough rows to be split over the pool. */
START_TEST(test_fast_fake_quant_matches_reference) {
  const struct {
    int64_t rows, d, start, len;
    int32_t block;
    vnrt_dtype fmt, dx, dy;
  } cases[] = {
      {3, 512, 0, 448, 64, VNRT_E4M3, VNRT_F32, VNRT_F32},
      {5, 128, 0, 128, 32, VNRT_E2M1, VNRT_F32, VNRT_F32},
      {4, 96, 32, 64, 32, VNRT_E4M3, VNRT_BF16, VNRT_F32},
      {300, 128, 0, 128, 32, VNRT_E2M1, VNRT_F32, VNRT_F32},
      {1, 512, 0, 448, 64, VNRT_E4M3, VNRT_BF16, VNRT_BF16},
      {3, 100, 0, 96, 32, VNRT_E2M1, VNRT_BF16, VNRT_F16},
  };
  /* q = v / 1 for a block whose largest magnitude is 6: the midpoints and their negatives */
  static const double mids[16] = {6,     0.25,  0.75,  1.25,  1.75, 2.5,  3.5, 5,
                                  -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5,  0.5};
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
      const int64_t dims[2] = {cases[ci].rows, cases[ci].d}, n = cases[ci].rows * cases[ci].d;
      tu_tensor x = tu_tensor_new(cases[ci].dx, 2, dims);
      tu_fill_uniform(&x, 1700 + ci, -3.0f, 3.0f);
      for (int64_t i = 0; i < cases[ci].block && i < cases[ci].d; ++i) tu_set(&x, i, 0.0);
      for (int64_t i = cases[ci].d; i < n; i += 37) tu_set(&x, i, 1e-30 * (double)(i % 5));
      for (int64_t i = cases[ci].d + 5; i < n; i += 53) tu_set(&x, i, 3e4);
      if (cases[ci].fmt == VNRT_E2M1 && cases[ci].rows > 1) {
        const int64_t r = (cases[ci].rows - 1) * cases[ci].d; /* the last row's first block */
        for (int64_t i = 0; i < 32; ++i) tu_set(&x, r + i, mids[i % 16]);
        tu_set(&x, r + cases[ci].block + 3, NAN); /* the second block: all NaN */
      }
      const vnrt_dtype dy = cases[ci].dy;
      tu_tensor got = tu_tensor_new(dy, 2, dims), want = tu_tensor_new(dy, 2, dims);
      vnrt_op_params p = {.fake_quant = {.fmt = cases[ci].fmt,
                                         .block = cases[ci].block,
                                         .start = cases[ci].start,
                                         .len = cases[ci].len}};
      double *unused = tu_dalloc(n);
      for (int64_t i = 0; i < n; ++i) unused[i] = 0.0;
      run_row_kernel(cpu_ref_fake_quant, VNRT_OP_FAKE_QUANT, &p, &x, 1, &want, unused, generic);
      run_row_kernel(cpu_fast_fake_quant, VNRT_OP_FAKE_QUANT, &p, &x, 1, &got, unused, generic);
      const size_t es = vnrt_dtype_size(dy);
      for (int64_t i = 0; i < n; ++i) {
        if (memcmp((const char *)got.data + i * es, (const char *)want.data + i * es, es) != 0) {
          ck_abort_msg("fake_quant case %zu (%s) element %lld: %a, reference %a", ci,
                       isa_mode_name(generic), (long long)i, tu_get(&got, i), tu_get(&want, i));
        }
      }
      free(unused);
      tu_tensor_free(&got);
      tu_tensor_free(&want);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

/* The fast float casts round as the contract says, bit for bit: f32 -> f16/bf16 over ties,
 * subnormals, overflow, infinities and NaN, and f16 -> bf16, each compared with the public
 * codecs (vnrt_f32_to_f16/bf16) on both ISAs; 37 values so the tail path runs too. The same
 * for cpu_fast_from_f32. */
START_TEST(test_fast_cast_bits) {
  const int64_t nd[1] = {37};
  tu_tensor x = tu_tensor_new(VNRT_F32, 1, nd);
  tu_fill_uniform(&x, 1400, -70000.0f, 70000.0f);
  float *xf = (float *)x.data;
  const float special[] = {0.0f,      -0.0f, 1.0f + 0x1p-11f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-11f,
                           65520.0f,  1e-7f, -3e-5f,          1e30f,          INFINITY,
                           -INFINITY, NAN,   0x1p-130f,       1.00390625f};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; ++i) xf[i * 2] = special[i];
  const vnrt_op_params none = {0};
  for (int generic = 0; generic < ISA_MODES; ++generic) {
    for (int to = 0; to < 2; ++to) {
      const vnrt_dtype dt = to ? VNRT_BF16 : VNRT_F16;
      tu_tensor out = tu_tensor_new(dt, 1, nd);
      double want[37];
      for (int i = 0; i < 37; ++i) want[i] = 0.0;
      run_row_kernel(cpu_fast_cast, VNRT_OP_CAST, &none, &x, 1, &out, want, generic);
      const uint16_t *bits = out.data;
      for (int i = 0; i < 37; ++i) {
        const uint16_t w = to ? vnrt_f32_to_bf16(xf[i]) : vnrt_f32_to_f16(xf[i]);
        if (bits[i] != w) {
          ck_abort_msg("cast f32->%s (%s) of %a: 0x%04x, want 0x%04x", vnrt_dtype_name(dt),
                       isa_mode_name(generic), (double)xf[i], bits[i], w);
        }
      }
      tu_tensor_free(&out);
    }
  }
  /* cpu_fast_from_f32, the kernels' rounding of f32 results into an f16/bf16 result, the same
   * on the portable path and the machine's */
  const cpu_isa isas[2] = {CPU_ISA_GENERIC, cpu_fast_isa(NULL)};
  for (int ii = 0; ii < 2; ++ii) {
    for (int to = 0; to < 2; ++to) {
      uint16_t bits[37];
      cpu_fast_from_f32(isas[ii], xf, 37, bits, to ? VNRT_BF16 : VNRT_F16);
      for (int i = 0; i < 37; ++i) {
        const uint16_t w = to ? vnrt_f32_to_bf16(xf[i]) : vnrt_f32_to_f16(xf[i]);
        if (bits[i] != w) {
          ck_abort_msg("cpu_fast_from_f32 to %s (isa %d) of %a: 0x%04x, want 0x%04x",
                       to ? "bf16" : "f16", (int)isas[ii], (double)xf[i], bits[i], w);
        }
      }
    }
  }
  tu_tensor_free(&x);
}
END_TEST

/* ---- short_conv on the cpu device ------------------------------------------------------- */

enum { SC_M = 2, SC_C = 3, SC_K = 4, SC_DIL = 3, SC_P = (SC_K - 1) * SC_DIL, SC_T = 12 };
#define SC_MC (SC_M * SC_C)

static tu_tensor new_t(vnrt_dtype dt, int64_t d0, int64_t d1, int64_t d2) {
  int64_t dims[3] = {d0, d1, d2};
  int32_t rank = d2 > 0 ? 3 : (d1 > 0 ? 2 : 1);
  return tu_tensor_new(dt, rank, dims);
}

START_TEST(test_short_conv_prefill_and_steps_agree_bitwise) {
  /* On the CPU, a token's z is the same f32 value whether it was computed in this call or
   * carried in through hist, so prefill and token-by-token runs agree exactly. */
  vnrt_context *ctx = tu_context();
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  tu_tensor u = new_t(VNRT_F32, SC_T, SC_M, SC_C), hist0 = new_t(VNRT_F32, SC_P, SC_M, SC_C);
  tu_tensor wn = new_t(VNRT_F32, SC_M, SC_C, 0), w = new_t(VNRT_F32, SC_MC, SC_K, 0);
  tu_fill_uniform(&u, 71, -1.0f, 1.0f);
  tu_fill_uniform(&hist0, 72, -1.0f, 1.0f);
  tu_fill_uniform(&wn, 73, 0.5f, 1.5f);
  tu_fill_uniform(&w, 74, -0.8f, 0.8f);
  vnrt_attr attrs[1] = {tu_attr_i("dilation", SC_DIL)};
  tu_tensor full_in[4] = {u, hist0, wn, w}, full[2];
  vnrt_graph *gf = tu_op_graph(ctx, VNRT_OP_SHORT_CONV, full_in, 4, attrs, 1, 2);
  TU_OK(ctx, tu_run(ctx, gf, cpu, full_in, 4, full, 2));
  tu_tensor step_in[4] = {new_t(VNRT_F32, 1, SC_M, SC_C), new_t(VNRT_F32, SC_P, SC_M, SC_C), wn, w};
  memcpy(step_in[1].data, hist0.data, sizeof(float) * SC_P * SC_MC);
  vnrt_graph *gs = tu_op_graph(ctx, VNRT_OP_SHORT_CONV, step_in, 4, attrs, 1, 2);
  for (int t = 0; t < SC_T; ++t) {
    memcpy(step_in[0].data, (const float *)u.data + t * SC_MC, sizeof(float) * SC_MC);
    tu_tensor out[2];
    TU_OK(ctx, tu_run(ctx, gs, cpu, step_in, 4, out, 2));
    ck_assert_mem_eq(out[0].data, (const float *)full[0].data + t * SC_MC, sizeof(float) * SC_MC);
    memcpy(step_in[1].data, out[1].data, sizeof(float) * SC_P * SC_MC);
    free_all(out, 2);
  }
  ck_assert_mem_eq(step_in[1].data, full[1].data, sizeof(float) * SC_P * SC_MC);
  vnrt_graph_destroy(gf);
  vnrt_graph_destroy(gs);
  free_all(full, 2);
  free_all(step_in, 2);
  tu_tensor_free(&u);
  tu_tensor_free(&hist0);
  tu_tensor_free(&wn);
  tu_tensor_free(&w);
  vnrt_context_destroy(ctx);
}
END_TEST

static Suite *cpu_backend_suite(void) {
  Suite *s = suite_create("cpu_backend");
  TCase *be = tcase_create("backend");
  tcase_add_test(be, test_pool_covers_range_once);
  tcase_add_test(be, test_pool_nested_runs_inline);
#if defined(__linux__)
  tcase_add_test(be, test_pool_affinity_binds_workers_and_runs);
  tcase_add_test(be, test_pool_hop_off_moves_and_restores);
  tcase_add_test(be, test_run_restores_the_callers_cpus);
#endif
  tcase_add_test(be, test_pool_background_prefetch);
  tcase_add_test(be, test_backend_buffers);
  tcase_add_test(be, test_device_info);
  suite_add_tcase(s, be);
  TCase *k = tcase_create("kernels");
  tcase_add_test(k, test_embedding_writes_nothing_on_bad_id);
  tcase_add_test(k, test_engram_lookup_writes_nothing_on_bad_row);
  tcase_add_test(k, test_moe_errors_leave_outputs_untouched);
  tcase_add_test(k, test_ffn_decode_independent_of_threads);
  tcase_add_test(k, test_gemm_blocks_cover_partial_tiles);
  tcase_add_test(k, test_qgemv_nan_codes);
  tcase_add_test(k, test_qgemv_every_e4m3_code);
  tcase_add_test(k, test_qgemv_e2m1_one_row_threaded);
  tcase_add_test(k, test_short_conv_prefill_and_steps_agree_bitwise);
  tcase_add_test(k, test_fast_rms_norm_shapes);
  tcase_add_test(k, test_fast_softmax_shapes);
  tcase_add_test(k, test_fast_elementwise_shapes);
  tcase_add_test(k, test_fast_cast_bits);
  tcase_add_test(k, test_fast_hc_head_paths);
  tcase_add_test(k, test_rope_freqs_match_rope_freq);
  tcase_add_test(k, test_host_option_readers);
  tcase_add_test(k, test_fast_rope_shapes);
  tcase_add_test(k, test_fast_hadamard_shapes);
  tcase_add_test(k, test_fast_fake_quant_matches_reference);
  suite_add_tcase(s, k);
  return s;
}

int main(void) { return tu_run_suite(cpu_backend_suite()); }
