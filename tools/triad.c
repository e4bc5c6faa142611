/* The tools' STREAM-like triad (triad.h). */
#include "triad.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The most threads a team runs (vnrt-bench and vnrt-generate take at most 4096; the bandwidth
 * of a socket is reached long before). */
#define TRIAD_MAX_THREADS 1024

typedef enum { TRIAD_INIT, TRIAD_PASS, TRIAD_EVICT } triad_job;

typedef struct triad_arg {
  tool_triad *t;
  triad_job job;
  int tid;
  double sum; /* TRIAD_EVICT: what this thread read, so that the reads are not dropped */
} triad_arg;

static double now_s_(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void slice_run_(triad_arg *g) {
  tool_triad *t = g->t;
  const size_t lo = t->n * (size_t)g->tid / (size_t)t->threads;
  const size_t hi = t->n * (size_t)(g->tid + 1) / (size_t)t->threads;
  float *restrict a = t->a;
  const float *restrict b = t->b, *restrict c = t->c;
  switch (g->job) {
    case TRIAD_INIT:
      for (size_t i = lo; i < hi; ++i) t->a[i] = 0.0f, t->b[i] = 1.0f, t->c[i] = 2.0f;
      break;
    case TRIAD_PASS:
      for (size_t i = lo; i < hi; ++i) a[i] = b[i] + 0.5f * c[i];
      break;
    case TRIAD_EVICT: {
      float s = 0.0f;
      for (size_t i = lo; i < hi; i += 16) s += b[i] + c[i];
      g->sum = s;
      break;
    }
  }
}

static void *slice_main_(void *p) {
  slice_run_(p);
  return NULL;
}

/* job on every thread (the caller is thread 0); the wall time, or -1 when a thread could not
 * be started (the started ones are joined, the caller's slice still runs). */
static double team_(tool_triad *t, triad_job job) {
  const int n = t->threads;
  triad_arg *args = calloc((size_t)n, sizeof *args);
  pthread_t *th = calloc((size_t)n, sizeof *th);
  if (!args || !th) {
    free(args);
    free(th);
    return -1.0;
  }
  int started = 1, failed = 0;
  const double t0 = now_s_();
  for (int i = 0; i < n; ++i) args[i] = (triad_arg){.t = t, .job = job, .tid = i};
  for (; started < n; ++started) {
    if (pthread_create(&th[started], NULL, slice_main_, &args[started]) != 0) {
      failed = 1;
      break;
    }
  }
  slice_run_(&args[0]);
  for (int i = 1; i < started; ++i) pthread_join(th[i], NULL);
  const double dt = now_s_() - t0;
  volatile double sink = 0.0;
  for (int i = 0; i < n; ++i) sink += args[i].sum;
  (void)sink;
  free(args);
  free(th);
  return failed ? -1.0 : dt;
}

int tool_triad_init(tool_triad *t, size_t total_bytes, int threads) {
  memset(t, 0, sizeof *t);
  const size_t n = total_bytes / (3 * sizeof(float));
  if (n == 0) return -1;
  t->threads = threads < 1 ? 1 : threads < TRIAD_MAX_THREADS ? threads : TRIAD_MAX_THREADS;
  t->n = n;
  t->a = malloc(n * sizeof(float));
  t->b = malloc(n * sizeof(float));
  t->c = malloc(n * sizeof(float));
  if (!t->a || !t->b || !t->c || team_(t, TRIAD_INIT) < 0.0 || team_(t, TRIAD_PASS) < 0.0) {
    tool_triad_free(t);
    return -1;
  }
  return 0;
}

double tool_triad_pass(tool_triad *t) { return team_(t, TRIAD_PASS); }

double tool_triad_pass_one_thread(tool_triad *t) {
  triad_arg g = {.t = t, .job = TRIAD_PASS, .tid = 0};
  const int threads = t->threads;
  t->threads = 1;
  const double t0 = now_s_();
  slice_run_(&g);
  const double dt = now_s_() - t0;
  t->threads = threads;
  return dt;
}

void tool_triad_evict(tool_triad *t) { (void)team_(t, TRIAD_EVICT); }

double tool_triad_gbps(const tool_triad *t, double seconds) {
  return seconds > 0.0 ? 3.0 * (double)t->n * sizeof(float) / seconds / 1e9 : 0.0;
}

void tool_triad_free(tool_triad *t) {
  free(t->a);
  free(t->b);
  free(t->c);
  memset(t, 0, sizeof *t);
}
