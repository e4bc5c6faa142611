/* docs/api.md, "Threads": independent contexts never interfere. Eight threads at once each
 * create a context, compile a small graph on every device, run it, check the numbers against a
 * double-precision reference and destroy everything, several times over. Before start-up was
 * serialised process-wide, four threads creating contexts at once crashed inside the OpenCL
 * driver's device probe in most runs. VNRT_TEST_STRESS_ITERS sets the iterations (default 3);
 * VNRT_TEST_STRESS_BACKENDS the context's backends (default: all). */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define N_THREADS 8

/* Under AddressSanitizer (the CI's sanitizer leg): the drivers' LLVM gives a thread that JITs
 * its own alternate signal stack, and ASan then fails to unmap "its" stack (a heap block, not a
 * mapping) when that thread exits: "AddressSanitizer failed to deallocate ... unable to unmap",
 * every run, in the drivers' threads, with vnrt's code not involved. Without an ASan signal
 * stack there is nothing to unmap. Ignored by builds without ASan (nothing calls this). */
const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void) {
  return "use_sigaltstack=0";
}

#define ROWS 3
#define K 48
#define N 20

static const char k_graph[] =
    "vnir 1\n"
    "input x: f32[3, 48]\n"
    "param w: f32[20, 48]\n"
    "h = linear(x, w)\n"
    "p = softmax(h)\n"
    "output p\n";

typedef struct worker {
  int id;
  int iters;
  const char *backends;
  char error[512]; /* the first failure, "" if none */
  int runs;        /* device runs checked */
} worker;

static atomic_int g_start;

static float input_value(int seed, int i) {
  return (float)(((seed * 7919 + i * 104729) % 97) - 48) / 64.0f;
}

/* softmax(x · wᵀ) in double. */
static void reference(const float *x, const float *w, double *out) {
  for (int r = 0; r < ROWS; ++r) {
    double h[N], mx = -INFINITY, sum = 0;
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) acc += (double)x[r * K + k] * (double)w[n * K + k];
      h[n] = acc;
      if (acc > mx) mx = acc;
    }
    for (int n = 0; n < N; ++n) sum += exp(h[n] - mx);
    for (int n = 0; n < N; ++n) out[r * N + n] = exp(h[n] - mx) / sum;
  }
}

#define FAIL(...)                                                          \
  do {                                                                     \
    if (!wk->error[0]) snprintf(wk->error, sizeof wk->error, __VA_ARGS__); \
    goto done;                                                             \
  } while (0)

static void *stress_worker(void *arg) {
  worker *wk = arg;
  while (!atomic_load(&g_start)) {
  }
  for (int it = 0; it < wk->iters && !wk->error[0]; ++it) {
    vnrt_context_desc d = {.num_threads = 2, .backends = wk->backends};
    vnrt_context *ctx = NULL;
    vnrt_graph *g = NULL;
    vnrt_status s = vnrt_context_create(&d, &ctx);
    if (s != VNRT_OK) {
      snprintf(wk->error, sizeof wk->error, "thread %d: vnrt_context_create: %s", wk->id,
               vnrt_status_string(s));
      break;
    }
    float x[ROWS * K], w[N * K], got[ROWS * N];
    double want[ROWS * N];
    for (int i = 0; i < ROWS * K; ++i) x[i] = input_value(wk->id + it, i);
    for (int i = 0; i < N * K; ++i) w[i] = input_value(wk->id * 3 + it + 1, i);
    reference(x, w, want);
    if (vnrt_graph_parse(ctx, k_graph, strlen(k_graph), "stress", &g) != VNRT_OK) {
      FAIL("thread %d: parse: %s", wk->id, vnrt_context_last_error(ctx));
    }
    for (uint32_t dev = 0; dev < vnrt_device_count(ctx); ++dev) {
      vnrt_device *device = NULL;
      vnrt_device_info info = {.struct_size = sizeof info};
      vnrt_plan *plan = NULL;
      if (vnrt_device_get(ctx, dev, &device) != VNRT_OK ||
          vnrt_device_get_info(device, &info) != VNRT_OK) {
        FAIL("thread %d: device %u: %s", wk->id, dev, vnrt_context_last_error(ctx));
      }
      if (vnrt_plan_create(ctx, g, device, NULL, &plan) != VNRT_OK) {
        FAIL("thread %d: %s: plan: %s", wk->id, info.spec, vnrt_context_last_error(ctx));
      }
      s = vnrt_plan_set_input(plan, "x", x, sizeof x);
      if (s == VNRT_OK) s = vnrt_plan_set_input(plan, "w", w, sizeof w);
      if (s == VNRT_OK) s = vnrt_plan_run(plan);
      if (s == VNRT_OK) s = vnrt_plan_read_output(plan, "p", got, sizeof got);
      vnrt_plan_destroy(plan);
      if (s != VNRT_OK) {
        FAIL("thread %d: %s: run: %s", wk->id, info.spec, vnrt_context_last_error(ctx));
      }
      for (int i = 0; i < ROWS * N; ++i) {
        if (!(fabs((double)got[i] - want[i]) <= 1e-4 + 1e-3 * fabs(want[i]))) {
          FAIL("thread %d: %s: p[%d] = %.7g, want %.7g", wk->id, info.spec, i, (double)got[i],
               want[i]);
        }
      }
      wk->runs++;
    }
  done:
    vnrt_graph_destroy(g);
    vnrt_context_destroy(ctx);
  }
  return NULL;
}

static int env_int(const char *name, int fallback) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : fallback;
}

START_TEST(eight_threads_create_compile_run_destroy_on_every_device) {
  int iters = env_int("VNRT_TEST_STRESS_ITERS", 3);
  const char *backends = getenv("VNRT_TEST_STRESS_BACKENDS");
  if (backends && !*backends) backends = NULL;
  worker wk[N_THREADS];
  pthread_t th[N_THREADS];
  atomic_store(&g_start, 0);
  for (int i = 0; i < N_THREADS; ++i) {
    wk[i] = (worker){.id = i, .iters = iters, .backends = backends};
    ck_assert_int_eq(pthread_create(&th[i], NULL, stress_worker, &wk[i]), 0);
  }
  atomic_store(&g_start, 1); /* all threads start their first context together */
  for (int i = 0; i < N_THREADS; ++i) pthread_join(th[i], NULL);
  /* The devices one context sees (asked after the threads: their first contexts are the
   * process's first, so the drivers' own start-up runs concurrently too). */
  vnrt_context_desc d = {.num_threads = 1, .backends = backends};
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  int n_dev = (int)vnrt_device_count(ctx);
  vnrt_context_destroy(ctx);
  for (int i = 0; i < N_THREADS; ++i) {
    ck_assert_msg(!wk[i].error[0], "%s", wk[i].error);
    ck_assert_int_eq(wk[i].runs, iters * n_dev);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("concurrency");
  TCase *tc = tcase_create("stress");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, eight_threads_create_compile_run_destroy_on_every_device);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
