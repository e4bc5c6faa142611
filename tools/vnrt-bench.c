/* vnrt-bench: times one-op graphs on a device against baselines measured in the same run. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vnrt/vnrt.h"

#if defined(VNRT_HAVE_OPENBLAS)
#include <cblas.h>
#endif

static const char *const kUsage =
    "usage: vnrt-bench [--device SPEC] [--op NAME]... [--json FILE] [--reps N] [--quick]\n"
    "                  [--threads N] [--hot] [--min] [--check]\n"
    "Times one-op graphs (linear, matmul, moe_ffn, hc_pre, attention) on a device with\n"
    "vnrt_plan_run, next to same-run baselines: OpenBLAS sgemm on the same shapes and thread\n"
    "count, and a STREAM-like triad for memory bandwidth (docs/bench.md).\n"
    "  --device SPEC   cpu, vulkan, vulkan:1, opencl:0, ... (default: $VNRT_DEVICE, else the\n"
    "                  best device)\n"
    "  --op NAME       only this op (repeatable; default: all five)\n"
    "  --json FILE     also write the results as JSON\n"
    "  --reps N        timed runs per case (default 10; the median is reported)\n"
    "  --quick         2 timed runs per case and a smaller triad: a smoke test, not a measure\n"
    "  --threads N     CPU threads for vnrt, OpenBLAS and the triad (default: online cores)\n"
    "  --hot           do not evict the caches before each timed run\n"
    "  --min           report the fastest run instead of the median (for a busy machine)\n"
    "  --check         also run each case with the CPU reference kernels and report the NMSE\n"
    "                  of every output (exit status 1 beyond spec/ops.md's tolerance)\n";

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vnrt-bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) die("out of memory (%zu bytes)", bytes);
  return p;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static bool stat_min; /* --min: the fastest run instead of the median */

/* The median of n times (or, with --min, the smallest). */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  if (stat_min) return v[0];
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* xorshift64*: reproducible inputs without touching the C library's rand state. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rng_uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- options ----------------------------------------------------------------------------- */

#define N_OPS 5
static const char *const kOps[N_OPS] = {"linear", "matmul", "moe_ffn", "hc_pre", "attention"};

typedef struct options {
  const char *device;
  const char *json;
  bool want[N_OPS];
  int reps, warmup, threads;
  bool quick, hot, check;
} options;

static options opt;

static int parse_int(const char *flag, const char *s, int lo) {
  char *end = NULL;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || *end || errno || v < lo || v > 1000000) die("%s needs an integer >= %d", flag, lo);
  return (int)v;
}

static void parse_args(int argc, char **argv) {
  bool any_op = false;
  opt.reps = 10;
  opt.warmup = 2;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(kUsage, stdout);
      exit(0);
    } else if (strcmp(a, "--device") == 0) {
      if (!next) die("--device needs a SPEC");
      opt.device = next, ++i;
    } else if (strcmp(a, "--op") == 0) {
      int found = -1;
      for (int o = 0; next && o < N_OPS; ++o) {
        if (strcmp(next, kOps[o]) == 0) found = o;
      }
      if (found < 0) {
        die("--op needs one of linear, matmul, moe_ffn, hc_pre, attention (got '%s')",
            next ? next : "");
      }
      opt.want[found] = any_op = true, ++i;
    } else if (strcmp(a, "--json") == 0) {
      if (!next) die("--json needs a FILE");
      opt.json = next, ++i;
    } else if (strcmp(a, "--reps") == 0) {
      opt.reps = parse_int("--reps", next, 1), ++i;
    } else if (strcmp(a, "--threads") == 0) {
      opt.threads = parse_int("--threads", next, 1), ++i;
    } else if (strcmp(a, "--quick") == 0) {
      opt.quick = true;
    } else if (strcmp(a, "--hot") == 0) {
      opt.hot = true;
    } else if (strcmp(a, "--min") == 0) {
      stat_min = true;
    } else if (strcmp(a, "--check") == 0) {
      opt.check = true;
    } else {
      fprintf(stderr, "%s", kUsage);
      die("unknown argument '%s'", a);
    }
  }
  if (!any_op) {
    for (int o = 0; o < N_OPS; ++o) opt.want[o] = true;
  }
  if (opt.quick) opt.reps = 2, opt.warmup = 1;
  if (opt.threads == 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    opt.threads = cores > 0 ? (int)cores : 1;
  }
}

/* ---- threads for the baselines ----------------------------------------------------------- */

typedef void (*slice_fn)(void *user, int tid, int nthreads);

typedef struct team_arg {
  slice_fn fn;
  void *user;
  int tid, n;
} team_arg;

static void *team_main(void *p) {
  team_arg *t = p;
  t->fn(t->user, t->tid, t->n);
  return NULL;
}

/* Runs fn on opt.threads threads (the caller is thread 0) and returns the wall time. */
static double team_run(slice_fn fn, void *user) {
  int n = opt.threads;
  pthread_t *th = xmalloc(sizeof *th * (size_t)n);
  team_arg *args = xmalloc(sizeof *args * (size_t)n);
  double t0 = now_s();
  for (int i = 0; i < n; ++i) args[i] = (team_arg){fn, user, i, n};
  for (int i = 1; i < n; ++i) {
    if (pthread_create(&th[i], NULL, team_main, &args[i]) != 0) die("pthread_create failed");
  }
  fn(user, 0, n);
  for (int i = 1; i < n; ++i) pthread_join(th[i], NULL);
  double t = now_s() - t0;
  free(th);
  free(args);
  return t;
}

/* ---- memory bandwidth: a STREAM-like triad, and cache eviction --------------------------- */

typedef struct triad {
  float *a, *b, *c;
  size_t n;
  volatile double sink;
} triad;

static triad tri;

static void slice(size_t n, int tid, int nthreads, size_t *lo, size_t *hi) {
  *lo = n * (size_t)tid / (size_t)nthreads;
  *hi = n * (size_t)(tid + 1) / (size_t)nthreads;
}

/* Each thread first touches the slice it later streams (pages land near that thread). */
static void triad_init(void *user, int tid, int nthreads) {
  (void)user;
  size_t lo, hi;
  slice(tri.n, tid, nthreads, &lo, &hi);
  for (size_t i = lo; i < hi; ++i) tri.a[i] = 0.0f, tri.b[i] = 1.0f, tri.c[i] = 2.0f;
}

static void triad_pass(void *user, int tid, int nthreads) {
  (void)user;
  size_t lo, hi;
  slice(tri.n, tid, nthreads, &lo, &hi);
  float *restrict a = tri.a;
  const float *restrict b = tri.b, *restrict c = tri.c;
  for (size_t i = lo; i < hi; ++i) a[i] = b[i] + 0.5f * c[i];
}

/* Reads a buffer larger than any cache, so that the next timed run starts cold. */
static void evict_slice(void *user, int tid, int nthreads) {
  (void)user;
  size_t lo, hi;
  slice(tri.n, tid, nthreads, &lo, &hi);
  float s = 0.0f;
  for (size_t i = lo; i < hi; i += 16) s += tri.b[i] + tri.c[i];
  tri.sink += s;
}

static void evict_caches(void) {
  if (!opt.hot) team_run(evict_slice, NULL);
}

static double bandwidth_gbps;

static void measure_bandwidth(void) {
  /* Three arrays of ~85 MiB (~256 MiB in all), far beyond any cache; --quick uses a quarter. */
  tri.n = (opt.quick ? 64u : 256u) * 1024u * 1024u / (3 * sizeof(float));
  tri.a = xmalloc(tri.n * sizeof(float));
  tri.b = xmalloc(tri.n * sizeof(float));
  tri.c = xmalloc(tri.n * sizeof(float));
  team_run(triad_init, NULL);
  team_run(triad_pass, NULL);
  int reps = opt.quick ? 3 : 10;
  double *t = xmalloc(sizeof *t * (size_t)reps);
  for (int r = 0; r < reps; ++r) t[r] = team_run(triad_pass, NULL);
  /* Bytes as STREAM counts them: two arrays read, one written. */
  bandwidth_gbps = 3.0 * (double)tri.n * sizeof(float) / median(t, reps) / 1e9;
  free(t);
}

/* ---- one-op graphs through the public API ------------------------------------------------ */

static vnrt_context *ctx;
static vnrt_device *device;

static void check(vnrt_status s, const char *what) {
  if (s != VNRT_OK) {
    die("%s: %s: %s", what, vnrt_status_string(s), vnrt_context_last_error(ctx));
  }
}

typedef enum gen { GEN_UNIFORM, GEN_EXPERTS } gen;

typedef struct input_desc {
  const char *name;
  vnrt_tensor_type type;
  int is_param;
  gen g;
  double lo, hi; /* GEN_UNIFORM range; GEN_EXPERTS: hi = expert count */
} input_desc;

static vnrt_tensor_type ttype(vnrt_dtype dt, int rank, int64_t d0, int64_t d1, int64_t d2) {
  vnrt_tensor_type t = {.dtype = dt, .rank = rank, .dims = {d0, d1, d2, 0}};
  return t;
}

/* Host data for one input: uniform values, or per row distinct expert ids in [0, hi). */
static void *make_data(const input_desc *in, size_t *out_bytes) {
  int64_t n = vnrt_tensor_type_numel(&in->type);
  size_t bytes = vnrt_tensor_type_bytes(&in->type);
  void *p = xmalloc(bytes);
  if (in->g == GEN_EXPERTS) {
    int64_t k = in->type.dims[in->type.rank - 1], e_count = (int64_t)in->hi;
    int32_t *ids = p;
    for (int64_t r = 0; r < n / k; ++r) {
      for (int64_t i = 0; i < k; ++i) {
        int32_t e;
        bool dup;
        do { /* distinct within a token, as a top-k router produces */
          e = (int32_t)(rng_uniform() * (double)e_count);
          dup = false;
          for (int64_t j = 0; j < i; ++j) dup = dup || ids[r * k + j] == e;
        } while (dup);
        ids[r * k + i] = e;
      }
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      float v = (float)(in->lo + (in->hi - in->lo) * rng_uniform());
      switch (in->type.dtype) {
        case VNRT_F16:
          ((uint16_t *)p)[i] = vnrt_f32_to_f16(v);
          break;
        case VNRT_BF16:
          ((uint16_t *)p)[i] = vnrt_f32_to_bf16(v);
          break;
        case VNRT_I32:
          ((int32_t *)p)[i] = (int32_t)v;
          break;
        default:
          ((float *)p)[i] = v;
          break;
      }
    }
  }
  *out_bytes = bytes;
  return p;
}

/* One case's graph: op, inputs (with their host data), attributes and result count. */
typedef struct bench_graph {
  vnrt_op op;
  const input_desc *ins;
  int n_in, n_out, n_attrs;
  const vnrt_attr *attrs;
  void *data[8];
  size_t bytes[8];
} bench_graph;

static void graph_inputs(bench_graph *bg) {
  for (int i = 0; i < bg->n_in; ++i) bg->data[i] = make_data(&bg->ins[i], &bg->bytes[i]);
}

static void graph_free(bench_graph *bg) {
  for (int i = 0; i < bg->n_in; ++i) free(bg->data[i]), bg->data[i] = NULL;
}

/* Builds the one-op graph, compiles it for dev with the given kernels and binds its data. */
static vnrt_plan *make_plan(const bench_graph *bg, vnrt_device *dev, vnrt_kernel_mode mode) {
  vnrt_graph *g = NULL;
  check(vnrt_graph_create(ctx, &g), "vnrt_graph_create");
  vnrt_value vals[8], outs[4];
  for (int i = 0; i < bg->n_in; ++i) {
    check(vnrt_graph_add_input(g, bg->ins[i].name, &bg->ins[i].type, bg->ins[i].is_param, &vals[i]),
          "vnrt_graph_add_input");
  }
  check(
      vnrt_graph_add_node(g, bg->op, vals, bg->n_in, bg->attrs, bg->n_attrs, NULL, outs, bg->n_out),
      "vnrt_graph_add_node");
  for (int o = 0; o < bg->n_out; ++o) {
    check(vnrt_graph_add_output(g, outs[o]), "vnrt_graph_add_output");
  }
  vnrt_plan *plan = NULL;
  vnrt_plan_desc pd = {.kernels = mode};
  check(vnrt_plan_create(ctx, g, dev, &pd, &plan), "vnrt_plan_create");
  vnrt_graph_destroy(g);
  for (int i = 0; i < bg->n_in; ++i) {
    check(vnrt_plan_set_input(plan, bg->ins[i].name, bg->data[i], bg->bytes[i]),
          "vnrt_plan_set_input");
  }
  return plan;
}

/* Output `name` of a plan that has run, widened to double. */
static double *read_output(vnrt_plan *plan, const char *name, int64_t *out_n) {
  vnrt_tensor_type t;
  check(vnrt_plan_output_type(plan, name, &t), "vnrt_plan_output_type");
  int64_t n = vnrt_tensor_type_numel(&t);
  size_t bytes = vnrt_tensor_type_bytes(&t);
  void *raw = xmalloc(bytes);
  check(vnrt_plan_read_output(plan, name, raw, bytes), "vnrt_plan_read_output");
  double *v = xmalloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case VNRT_F16:
        v[i] = vnrt_f16_to_f32(((const uint16_t *)raw)[i]);
        break;
      case VNRT_BF16:
        v[i] = vnrt_bf16_to_f32(((const uint16_t *)raw)[i]);
        break;
      case VNRT_I32:
        v[i] = ((const int32_t *)raw)[i];
        break;
      default:
        v[i] = ((const float *)raw)[i];
        break;
    }
  }
  free(raw);
  *out_n = n;
  return v;
}

/* The worst normalised mean squared error Σ(a−r)²/Σr² over the outputs of `plan` (which has
 * run) against the same graph on the CPU reference kernels; +Inf for NaN/Inf. */
static double check_against_reference(vnrt_plan *plan, const bench_graph *bg) {
  vnrt_device *cpu = NULL;
  check(vnrt_device_select(ctx, "cpu", &cpu), "vnrt_device_select(cpu)");
  vnrt_plan *ref = make_plan(bg, cpu, VNRT_KERNELS_REFERENCE);
  check(vnrt_plan_run(ref), "vnrt_plan_run (reference)");
  double worst = 0.0;
  for (int32_t o = 0; o < vnrt_plan_output_count(plan); ++o) {
    const char *name = vnrt_plan_output_name(plan, o);
    int64_t n = 0, nr = 0;
    double *got = read_output(plan, name, &n), *want = read_output(ref, name, &nr);
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n && i < nr; ++i) {
      num += (got[i] - want[i]) * (got[i] - want[i]);
      den += want[i] * want[i];
    }
    double nmse = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
    if (!isfinite(nmse) || n != nr) nmse = INFINITY;
    if (nmse > worst) worst = nmse;
    free(got);
    free(want);
  }
  vnrt_plan_destroy(ref);
  return worst;
}

/* A baseline timed side by side with a case: run(user) does one baseline run; seconds
 * receives its median (or fastest) time. */
typedef struct baseline {
  void (*run)(void *user);
  void *user;
  double seconds;
  double settle_s; /* idle time after each run before the next timed run */
} baseline;

static void sleep_s(double seconds) {
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Median seconds of vnrt_plan_run after warm-up runs, caches evicted before each timed run.
 * The baselines' runs alternate with the plan's (plan, baselines, plan, ...), so that a
 * machine whose load changes during the run slows them all alike. */
static double time_plan(vnrt_plan *plan, baseline *bls, int n_bl) {
  for (int w = 0; w < opt.warmup; ++w) {
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    for (int b = 0; b < n_bl; ++b) {
      bls[b].run(bls[b].user);
      if (bls[b].settle_s > 0.0) sleep_s(bls[b].settle_s);
    }
  }
  double *t = xmalloc(sizeof *t * (size_t)opt.reps * (size_t)(1 + n_bl));
  for (int r = 0; r < opt.reps; ++r) {
    evict_caches();
    double t0 = now_s();
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    t[r] = now_s() - t0;
    for (int b = 0; b < n_bl; ++b) {
      evict_caches();
      t0 = now_s();
      bls[b].run(bls[b].user);
      t[(1 + b) * opt.reps + r] = now_s() - t0;
      if (bls[b].settle_s > 0.0) sleep_s(bls[b].settle_s);
    }
  }
  double m = median(t, opt.reps);
  for (int b = 0; b < n_bl; ++b) bls[b].seconds = median(t + (1 + b) * opt.reps, opt.reps);
  free(t);
  return m;
}

/* Times one case on the device beside its baselines; with --check (and check_it) also runs it
 * on the reference kernels and stores the worst NMSE in *out_nmse (else -1). */
static double run_case(vnrt_op op, const input_desc *ins, int n_in, int n_out, bool check_it,
                       baseline *bls, int n_bl, double *out_nmse) {
  bench_graph bg = {.op = op, .ins = ins, .n_in = n_in, .n_out = n_out};
  graph_inputs(&bg);
  vnrt_plan *plan = make_plan(&bg, device, VNRT_KERNELS_FAST);
  double t = time_plan(plan, bls, n_bl);
  *out_nmse = -1.0;
  if (opt.check && check_it) *out_nmse = check_against_reference(plan, &bg);
  vnrt_plan_destroy(plan);
  graph_free(&bg);
  return t;
}

/* ---- the baselines: OpenBLAS sgemm and a dense linear ------------------------------------ */

/* After a call, OpenBLAS's pthread workers spin (sched_yield) for 2^28 TSC cycles (its default
 * THREAD_TIMEOUT, ~0.13 s here) before they sleep; a vnrt run timed in that window would share
 * the cores with them. So every sgemm run is followed by this much idle time. */
static const double kBlasSettle = 0.2;

/* cblas_sgemm for C[M, N] = A[M, K]·B, B being [N, K] transposed when trans_b (the linear
 * layout), else [K, N]; f32 on the same thread count. */
typedef struct sgemm_job {
  float *a, *b, *c;
  int64_t m, n, k;
  bool trans_b;
} sgemm_job;

static void sgemm_run(void *user) {
#if defined(VNRT_HAVE_OPENBLAS)
  sgemm_job *s = user;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, (int)s->m,
              (int)s->n, (int)s->k, 1.0f, s->a, (int)s->k, s->b, s->trans_b ? (int)s->k : (int)s->n,
              0.0f, s->c, (int)s->n);
#else
  (void)user;
#endif
}

/* Prepares the sgemm baseline; false (and nothing to free) without OpenBLAS. */
static bool sgemm_prepare(sgemm_job *s, int64_t m, int64_t n, int64_t k, bool trans_b) {
  memset(s, 0, sizeof *s);
#if defined(VNRT_HAVE_OPENBLAS)
  *s = (sgemm_job){.m = m, .n = n, .k = k, .trans_b = trans_b};
  s->a = xmalloc(sizeof(float) * (size_t)(m * k));
  s->b = xmalloc(sizeof(float) * (size_t)(k * n));
  s->c = xmalloc(sizeof(float) * (size_t)(m * n));
  for (int64_t i = 0; i < m * k; ++i) s->a[i] = (float)(rng_uniform() - 0.5);
  for (int64_t i = 0; i < k * n; ++i) s->b[i] = (float)(rng_uniform() - 0.5);
  return true;
#else
  (void)m, (void)n, (void)k, (void)trans_b;
  return false;
#endif
}

static void sgemm_free(sgemm_job *s) {
  free(s->a);
  free(s->b);
  free(s->c);
}

static void plan_run_baseline(void *user) { check(vnrt_plan_run(user), "vnrt_plan_run"); }

/* One triad pass: the bandwidth baseline of memory-bound cases, timed beside them too. */
static void triad_baseline(void *user) {
  (void)user;
  team_run(triad_pass, NULL);
}

static double triad_gbps(double seconds) {
  return seconds > 0.0 ? 3.0 * (double)tri.n * sizeof(float) / seconds / 1e9 : 0.0;
}

/* ---- results ----------------------------------------------------------------------------- */

typedef struct result {
  char op[16], shape[96];
  double ms, gflops, gbps;
  double blas_gflops;  /* OpenBLAS sgemm on the same shape; 0 if none */
  double dense_gflops; /* dense linear of the same work (moe_ffn); 0 if none */
  bool memory_bound;   /* compare with the bandwidth */
  double bw_gbps;      /* the triad's bandwidth measured beside this case */
  double nmse;         /* against the reference kernels (--check); < 0: not checked */
  double tolerance;
} result;

static bool check_failed;

static result results[64];
static int n_results;

static void ratio_cell(char *buf, size_t size, double num, double den) {
  if (num > 0.0 && den > 0.0) {
    snprintf(buf, size, "%.2fx", num / den);
  } else {
    snprintf(buf, size, "-");
  }
}

static void print_header(void) {
  printf("%-10s %-42s %9s %8s %7s %9s %8s %7s %7s %8s%s\n", "op", "shape", "time ms", "GFLOP/s",
         "GB/s", "base GF/s", "BW GB/s", "vs BLAS", "vs BW", "vs dense",
         opt.check ? "      NMSE" : "");
}

static void print_result(const result *r) {
  char base[24] = "-", bw[24] = "-", vb[16], vw[16], vd[16], nm[32] = "";
  if (r->blas_gflops > 0.0) snprintf(base, sizeof base, "%.1f", r->blas_gflops);
  if (r->dense_gflops > 0.0) snprintf(base, sizeof base, "%.1f", r->dense_gflops);
  if (r->memory_bound && r->bw_gbps > 0.0) snprintf(bw, sizeof bw, "%.1f", r->bw_gbps);
  ratio_cell(vb, sizeof vb, r->gflops, r->blas_gflops);
  ratio_cell(vw, sizeof vw, r->memory_bound ? r->gbps : 0.0, r->bw_gbps);
  ratio_cell(vd, sizeof vd, r->gflops, r->dense_gflops);
  if (r->nmse >= 0.0) {
    bool bad = !(r->nmse <= r->tolerance);
    snprintf(nm, sizeof nm, "  %8.2e%s", r->nmse, bad ? " FAIL" : "");
    check_failed = check_failed || bad;
  }
  printf("%-10s %-42s %9.3f %8.2f %7.2f %9s %8s %7s %7s %8s%s\n", r->op, r->shape, r->ms, r->gflops,
         r->gbps, base, bw, vb, vw, vd, nm);
  fflush(stdout);
}

static result *add_result(const char *op, double seconds, double flops, double bytes,
                          const char *fmt, ...) {
  if (n_results == (int)(sizeof results / sizeof results[0])) die("too many results");
  result *r = &results[n_results++];
  memset(r, 0, sizeof *r);
  snprintf(r->op, sizeof r->op, "%s", op);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->shape, sizeof r->shape, fmt, ap);
  va_end(ap);
  r->ms = seconds * 1e3;
  r->gflops = flops / seconds / 1e9;
  r->gbps = bytes / seconds / 1e9;
  r->nmse = -1.0;
  r->tolerance = 1e-6;
  return r;
}

/* ---- the cases --------------------------------------------------------------------------- */

static input_desc linear_input(int which, int64_t m, int64_t n, int64_t k, vnrt_dtype wdt) {
  if (which == 0) return (input_desc){"x", ttype(VNRT_F32, 2, m, k, 0), 0, GEN_UNIFORM, -1.0, 1.0};
  return (input_desc){"w", ttype(wdt, 2, n, k, 0), 1, GEN_UNIFORM, -0.05, 0.05};
}

/* Times linear x[m, k]·w[n, k]ᵀ with weights of dtype wdt beside OpenBLAS sgemm. */
static void bench_linear_case(int64_t m, int64_t n, int64_t k, vnrt_dtype wdt) {
  input_desc ins[2] = {linear_input(0, m, n, k, wdt), linear_input(1, m, n, k, wdt)};
  sgemm_job sj;
  baseline bls[2] = {{sgemm_run, &sj, 0.0, kBlasSettle}, {triad_baseline, NULL, 0.0, 0.0}};
  bool have_blas = sgemm_prepare(&sj, m, n, k, true);
  const bool memory_bound = m <= 4;
  baseline *bl = have_blas ? bls : bls + 1;
  int n_bl = (have_blas ? 1 : 0) + (memory_bound ? 1 : 0);
  double nmse;
  double t = run_case(VNRT_OP_LINEAR, ins, 2, 1, true, bl, n_bl, &nmse);
  sgemm_free(&sj);
  double flops = 2.0 * (double)m * (double)n * (double)k;
  double bytes = (double)(n * k) * (double)vnrt_dtype_size(wdt) + 4.0 * (double)(m * k + m * n);
  result *r = add_result("linear", t, flops, bytes, "%s w, M=%lld x[%lld,%lld] w[%lld,%lld]",
                         vnrt_dtype_name(wdt), (long long)m, (long long)m, (long long)k,
                         (long long)n, (long long)k);
  r->memory_bound = memory_bound;
  r->bw_gbps = triad_gbps(bls[1].seconds);
  r->nmse = nmse;
  if (have_blas) r->blas_gflops = flops / bls[0].seconds / 1e9;
  print_result(r);
}

static void bench_linear(void) {
  static const int64_t ms[] = {1, 16, 64, 512};
  static const vnrt_dtype wdts[] = {VNRT_F32, VNRT_F16};
  for (size_t d = 0; d < 2; ++d) {
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; ++i) {
      bench_linear_case(ms[i], 5632, 2048, wdts[d]);
    }
  }
}

static void bench_matmul(void) {
  static const int64_t shapes[][3] = {{256, 1024, 1024}, {64, 2048, 2048}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
    input_desc ins[2] = {
        {"a", ttype(VNRT_F32, 2, m, k, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"b", ttype(VNRT_F32, 2, k, n, 0), 1, GEN_UNIFORM, -0.05, 0.05},
    };
    sgemm_job sj;
    baseline bl = {sgemm_run, &sj, 0.0, kBlasSettle};
    bool have_blas = sgemm_prepare(&sj, m, n, k, false);
    double nmse;
    double t = run_case(VNRT_OP_MATMUL, ins, 2, 1, true, &bl, have_blas ? 1 : 0, &nmse);
    sgemm_free(&sj);
    double flops = 2.0 * (double)(m * n) * (double)k;
    result *r = add_result("matmul", t, flops, 4.0 * (double)(m * k + k * n + m * n),
                           "f32 a[%lld,%lld] b[%lld,%lld]", (long long)m, (long long)k,
                           (long long)k, (long long)n);
    r->nmse = nmse;
    if (have_blas) r->blas_gflops = flops / bl.seconds / 1e9;
    print_result(r);
  }
}

static void bench_moe(void) {
  const int64_t E = 64, K = 6, C = 1024, F = 512;
  const vnrt_dtype wdt = VNRT_F16;
  static const int64_t ts[] = {1, 128};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; ++i) {
    int64_t T = ts[i];
    input_desc ins[5] = {
        {"x", ttype(VNRT_F32, 2, T, C, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"experts", ttype(VNRT_I32, 2, T, K, 0), 0, GEN_EXPERTS, 0.0, (double)E},
        {"weights", ttype(VNRT_F32, 2, T, K, 0), 0, GEN_UNIFORM, 0.05, 0.3},
        {"w_gate_up", ttype(wdt, 3, E, 2 * F, C), 1, GEN_UNIFORM, -0.05, 0.05},
        {"w_down", ttype(wdt, 3, E, C, F), 1, GEN_UNIFORM, -0.05, 0.05},
    };
    /* The same work as one dense linear, x[T·k, C]·w[3F, C]ᵀ with the same weight dtype, timed
     * side by side. */
    bench_graph dense = {.op = VNRT_OP_LINEAR, .n_in = 2, .n_out = 1};
    input_desc dins[2] = {linear_input(0, T * K, 3 * F, C, wdt),
                          linear_input(1, T * K, 3 * F, C, wdt)};
    dense.ins = dins;
    graph_inputs(&dense);
    vnrt_plan *dplan = make_plan(&dense, device, VNRT_KERNELS_FAST);
    baseline bls[2] = {{plan_run_baseline, dplan, 0.0, 0.0}, {triad_baseline, NULL, 0.0, 0.0}};
    const bool memory_bound = T * K < E;
    double nmse;
    double t = run_case(VNRT_OP_MOE_FFN, ins, 5, 1, true, bls, memory_bound ? 2 : 1, &nmse);
    vnrt_plan_destroy(dplan);
    graph_free(&dense);
    /* Per routed token: gate/up 2·(2F)·C, down 2·C·F. Bytes: the experts' weights read (all
     * of them when every expert is hit, else about T·k experts' worth) plus activations. */
    double flops = (double)(T * K) * (4.0 * (double)(F * C) + 2.0 * (double)(C * F));
    double experts_hit = (double)(T * K < E ? T * K : E);
    double bytes = experts_hit * 3.0 * (double)(F * C) * (double)vnrt_dtype_size(wdt) +
                   4.0 * (double)(2 * T * C);
    result *r = add_result("moe_ffn", t, flops, bytes, "%s w, T=%lld E=%lld k=%lld C=%lld F=%lld",
                           vnrt_dtype_name(wdt), (long long)T, (long long)E, (long long)K,
                           (long long)C, (long long)F);
    r->memory_bound = memory_bound;
    r->bw_gbps = triad_gbps(bls[1].seconds);
    r->nmse = nmse;
    r->dense_gflops = flops / bls[0].seconds / 1e9;
    print_result(r);
  }
}

static void bench_hc_pre(void) {
  const int64_t n = 4, C = 4096, R = (n + 2) * n;
  static const int64_t ts[] = {1, 128};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; ++i) {
    int64_t T = ts[i];
    input_desc ins[4] = {
        {"X", ttype(VNRT_F32, 3, T, n, C), 0, GEN_UNIFORM, -1.0, 1.0},
        {"fn", ttype(VNRT_F32, 2, R, n * C, 0), 1, GEN_UNIFORM, -0.02, 0.02},
        {"scale", ttype(VNRT_F32, 1, 3, 0, 0), 1, GEN_UNIFORM, 0.5, 1.5},
        {"base", ttype(VNRT_F32, 1, R, 0, 0), 1, GEN_UNIFORM, -0.5, 0.5},
    };
    baseline bw = {triad_baseline, NULL, 0.0, 0.0};
    const int n_bl = T == 1 ? 1 : 0;
    double nmse;
    double t = run_case(VNRT_OP_HC_PRE, ins, 4, 3, true, &bw, n_bl, &nmse);
    double flops = (double)T * (2.0 * (double)(R * n * C) + 4.0 * (double)(n * C));
    double bytes = 4.0 * ((double)(R * n * C) + (double)(T * n * C) + (double)(T * C));
    result *r = add_result("hc_pre", t, flops, bytes, "f32 n=%lld C=%lld T=%lld", (long long)n,
                           (long long)C, (long long)T);
    r->memory_bound = T == 1; /* T = 128 does ~10 flops per byte */
    r->bw_gbps = triad_gbps(bw.seconds);
    r->nmse = nmse;
    r->tolerance = 1e-7; /* mHC ops: spec/ops.md's tighter bound */
    print_result(r);
  }
}

static void bench_attention(void) {
  const int64_t T = 1, S = 4096, Hq = 16, Hkv = 1, D = 128;
  input_desc ins[3] = {
      {"q", ttype(VNRT_F32, 3, T, Hq, D), 0, GEN_UNIFORM, -1.0, 1.0},
      {"k", ttype(VNRT_F32, 3, S, Hkv, D), 0, GEN_UNIFORM, -1.0, 1.0},
      {"v", ttype(VNRT_F32, 3, S, Hkv, D), 0, GEN_UNIFORM, -1.0, 1.0},
  };
  baseline bw = {triad_baseline, NULL, 0.0, 0.0};
  double nmse;
  double t = run_case(VNRT_OP_ATTENTION, ins, 3, 1, true, &bw, 1, &nmse);
  double flops = 4.0 * (double)(T * Hq * S * D);
  double bytes = 4.0 * (double)(2 * S * Hkv * D + 2 * T * Hq * D);
  result *r = add_result("attention", t, flops, bytes, "f32 T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld",
                         (long long)T, (long long)S, (long long)Hq, (long long)Hkv, (long long)D);
  r->memory_bound = true;
  r->bw_gbps = triad_gbps(bw.seconds);
  r->nmse = nmse;
  print_result(r);
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_number(FILE *f, const char *key, double v, bool comma) {
  if (v > 0.0 && isfinite(v)) {
    fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
  } else {
    fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
  }
}

static void write_json(const char *path, const vnrt_device_info *info, const char *blas) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot write %s: %s", path, strerror(errno));
  fprintf(f, "{\"device\": \"%s\", \"device_name\": \"", info->spec);
  for (const char *c = info->name; *c; ++c) {
    if (*c == '"' || *c == '\\') fputc('\\', f);
    if ((unsigned char)*c >= 0x20) fputc(*c, f);
  }
  fprintf(f,
          "\", \"threads\": %d, \"reps\": %d, \"statistic\": \"%s\", \"cold_caches\": %s, "
          "\"openblas\": \"%s\", ",
          opt.threads, opt.reps, stat_min ? "min" : "median", opt.hot ? "false" : "true", blas);
  json_number(f, "bandwidth_gbps", bandwidth_gbps, true);
  fprintf(f, "\"results\": [");
  for (int i = 0; i < n_results; ++i) {
    const result *r = &results[i];
    fprintf(f, "%s\n  {\"op\": \"%s\", \"shape\": \"%s\", ", i ? "," : "", r->op, r->shape);
    json_number(f, "time_ms", r->ms, true);
    json_number(f, "gflops", r->gflops, true);
    json_number(f, "gbps", r->gbps, true);
    json_number(f, "openblas_gflops", r->blas_gflops, true);
    json_number(f, "dense_gflops", r->dense_gflops, true);
    json_number(f, "vs_openblas", r->blas_gflops > 0 ? r->gflops / r->blas_gflops : 0, true);
    json_number(f, "bandwidth_gbps", r->memory_bound ? r->bw_gbps : 0, true);
    json_number(f, "vs_bandwidth", r->memory_bound ? r->gbps / r->bw_gbps : 0, true);
    json_number(f, "vs_dense", r->dense_gflops > 0 ? r->gflops / r->dense_gflops : 0, true);
    if (r->nmse >= 0.0) {
      fprintf(f, "\"nmse\": %.6g, ", isfinite(r->nmse) ? r->nmse : 1e308);
    } else {
      fprintf(f, "\"nmse\": null, ");
    }
    json_number(f, "tolerance", r->tolerance, false);
    fprintf(f, "}");
  }
  fprintf(f, "\n]}\n");
  if (fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  vnrt_context_desc cd = {.num_threads = opt.threads};
  if (vnrt_context_create(&cd, &ctx) != VNRT_OK) die("cannot create a vnrt context");
  check(vnrt_device_select(ctx, opt.device, &device), "vnrt_device_select");
  vnrt_device_info info;
  check(vnrt_device_get_info(device, &info), "vnrt_device_get_info");

  char blas[96] = "none";
#if defined(VNRT_HAVE_OPENBLAS) && defined(OPENBLAS_VERSION)
  openblas_set_num_threads(opt.threads);
  snprintf(blas, sizeof blas, "%s %s", OPENBLAS_VERSION, openblas_get_corename());
#elif defined(VNRT_HAVE_OPENBLAS)
  snprintf(blas, sizeof blas, "cblas");
#endif
  measure_bandwidth();
  printf("vnrt-bench: device %s (%s), %d threads, %d timed runs per case (%s), %s caches\n",
         info.spec, info.name, opt.threads, opt.reps, stat_min ? "fastest" : "median",
         opt.hot ? "hot" : "cold");
  printf("baselines: OpenBLAS sgemm (%s); memory bandwidth (triad): %.2f GB/s\n\n", blas,
         bandwidth_gbps);
  print_header();
  if (opt.want[0]) bench_linear();
  if (opt.want[1]) bench_matmul();
  if (opt.want[2]) bench_moe();
  if (opt.want[3]) bench_hc_pre();
  if (opt.want[4]) bench_attention();
  if (opt.json) write_json(opt.json, &info, blas);
  free(tri.a);
  free(tri.b);
  free(tri.c);
  vnrt_context_destroy(ctx);
  if (check_failed) {
    fprintf(stderr, "vnrt-bench: some results differ from the reference beyond tolerance\n");
    return 1;
  }
  return 0;
}
