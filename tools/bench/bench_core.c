/* vnrt-bench's shared machinery: timing, the triad and OpenBLAS baselines, one-op graphs and
 * the results table (printed and as JSON). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "triad.h"

#if defined(VNRT_HAVE_OPENBLAS)
#include <cblas.h>
#endif

bench_options opt;

void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vnrt-bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) die("out of memory (%zu bytes)", bytes);
  return p;
}

double now_s(void) {
  struct timespec ts;
  /* --cpu-time: on a machine shared with other work, the time the scheduler gives this thread
   * (one thread runs vnrt's pool and OpenBLAS alike) rather than the time that passed. */
  clock_gettime(opt.cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The median of n times (or, with --min, the smallest). */
double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  if (opt.stat_min) return v[0];
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* xorshift64*: reproducible inputs without touching the C library's rand state. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
double rng_uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- memory bandwidth: a STREAM-like triad (triad.h), and cache eviction ----------------- */

static tool_triad tri;

void evict_caches(void) {
  if (!opt.hot) tool_triad_evict(&tri);
}

double bandwidth_gbps;

void measure_bandwidth(void) {
  /* Three arrays of ~85 MiB (~256 MiB in all), far beyond any cache; --quick uses a quarter. */
  if (tool_triad_init(&tri, (opt.quick ? 64u : 256u) * 1024u * 1024u, opt.threads) != 0) {
    die("out of memory (or threads) for the triad");
  }
  int reps = opt.quick ? 3 : 10;
  double *t = xmalloc(sizeof *t * (size_t)reps);
  for (int r = 0; r < reps; ++r) {
    /* timed by now_s(): the thread's CPU time under --cpu-time, as every other figure */
    const double t0 = now_s();
    if (tool_triad_pass(&tri) < 0.0) die("the triad could not start its threads");
    t[r] = now_s() - t0;
  }
  bandwidth_gbps = tool_triad_gbps(&tri, median(t, reps));
  free(t);
}

/* ---- one-op graphs through the public API ------------------------------------------------ */

vnrt_context *ctx;
vnrt_device *device;
vnrt_device_info device_info;

void check(vnrt_status s, const char *what) {
  if (s != VNRT_OK) {
    die("%s: %s: %s", what, vnrt_status_string(s), vnrt_context_last_error(ctx));
  }
}

vnrt_tensor_type ttype(vnrt_dtype dt, int rank, int64_t d0, int64_t d1, int64_t d2) {
  vnrt_tensor_type t = {.dtype = dt, .rank = rank, .dims = {d0, d1, d2, 0}};
  return t;
}

void *bench_make_data(const input_desc *in, size_t *out_bytes) {
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
  } else if (in->g == GEN_CODES) {
    uint8_t *c = p;
    for (size_t i = 0; i < bytes; ++i) {
      if (in->type.dtype == VNRT_E8M0) {
        c[i] = (uint8_t)(in->lo + (double)(int64_t)((in->hi - in->lo + 1.0) * rng_uniform()));
      } else {
        do { /* e4m3: 0x7F and 0xFF are NaN; e2m1 packs two codes per byte, none of them NaN */
          c[i] = (uint8_t)(256.0 * rng_uniform());
        } while (in->type.dtype == VNRT_E4M3 && (c[i] & 0x7F) == 0x7F);
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

void graph_inputs(bench_graph *bg) {
  for (int i = 0; i < bg->n_in; ++i) bg->data[i] = bench_make_data(&bg->ins[i], &bg->bytes[i]);
}

void graph_free(bench_graph *bg) {
  for (int i = 0; i < bg->n_in; ++i) free(bg->data[i]), bg->data[i] = NULL;
}

/* Builds the one-op graph, compiles it for dev with the given kernels and binds its data. */
vnrt_plan *make_plan(const bench_graph *bg, vnrt_device *dev, vnrt_kernel_mode mode) {
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
double *read_output(vnrt_plan *plan, const char *name, int64_t *out_n) {
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

void sleep_s(double seconds) {
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Median seconds of vnrt_plan_run after warm-up runs, caches evicted before each timed run.
 * The baselines' runs alternate with the plan's (plan, baselines, plan, ...), so that a
 * machine whose load changes during the run slows them all alike. Where a baseline needs a
 * settle (OpenBLAS's spinning workers), every timed run — the plan's and each baseline's —
 * follows the same idle, the longest settle: a run right after idle is slower than one right
 * after other work (docs/bench.md, "What is measured"), so no side may have it alone. */
double time_plan(vnrt_plan *plan, baseline *bls, int n_bl) {
  double idle = 0.0;
  for (int b = 0; b < n_bl; ++b) idle = bls[b].settle_s > idle ? bls[b].settle_s : idle;
  for (int w = 0; w < opt.warmup; ++w) {
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    for (int b = 0; b < n_bl; ++b) {
      bls[b].run(bls[b].user);
      if (bls[b].settle_s > 0.0) sleep_s(bls[b].settle_s);
    }
  }
  double *t = xmalloc(sizeof *t * (size_t)opt.reps * (size_t)(1 + n_bl));
  for (int r = 0; r < opt.reps; ++r) {
    if (idle > 0.0) sleep_s(idle);
    evict_caches();
    double t0 = now_s();
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    t[r] = now_s() - t0;
    for (int b = 0; b < n_bl; ++b) {
      if (idle > 0.0) sleep_s(idle);
      evict_caches();
      t0 = now_s();
      bls[b].run(bls[b].user);
      t[(1 + b) * opt.reps + r] = now_s() - t0;
    }
  }
  double m = median(t, opt.reps);
  for (int b = 0; b < n_bl; ++b) bls[b].seconds = median(t + (1 + b) * opt.reps, opt.reps);
  free(t);
  return m;
}

/* Times one case on the device beside its baselines and (opt.vs_cpu) the same graph on the
 * CPU backend's fast kernels; with --check (and check_it) also runs it on the reference
 * kernels and stores the worst NMSE. */
double run_graph_case(bench_graph *bg, bool check_it, baseline *bls, int n_bl,
                      case_extra *out_extra) {
  graph_inputs(bg);
  vnrt_plan *plan = make_plan(bg, device, VNRT_KERNELS_FAST);
  vnrt_plan *cpu_plan = NULL;
  baseline all[8];
  if (n_bl > 7) die("too many baselines");
  for (int b = 0; b < n_bl; ++b) all[b] = bls[b];
  if (opt.vs_cpu) {
    vnrt_device *cpu = NULL;
    check(vnrt_device_select(ctx, "cpu", &cpu), "vnrt_device_select(cpu)");
    cpu_plan = make_plan(bg, cpu, VNRT_KERNELS_FAST);
    all[n_bl] = (baseline){plan_run_baseline, cpu_plan, 0.0, 0.0};
  }
  double t = time_plan(plan, all, n_bl + (cpu_plan ? 1 : 0));
  for (int b = 0; b < n_bl; ++b) bls[b].seconds = all[b].seconds;
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  check(vnrt_plan_get_info(plan, &pi), "vnrt_plan_get_info");
  out_extra->nodes = pi.n_nodes;
  out_extra->fallback_nodes = pi.n_fallback_nodes;
  out_extra->nmse = -1.0;
  out_extra->cpu_seconds = cpu_plan ? all[n_bl].seconds : 0.0;
  if (opt.check && check_it) out_extra->nmse = check_against_reference(plan, bg);
  vnrt_plan_destroy(cpu_plan);
  vnrt_plan_destroy(plan);
  graph_free(bg);
  return t;
}

double run_case(vnrt_op op, const input_desc *ins, int n_in, int n_out, bool check_it,
                baseline *bls, int n_bl, case_extra *out_extra) {
  bench_graph bg = {.op = op, .ins = ins, .n_in = n_in, .n_out = n_out};
  return run_graph_case(&bg, check_it, bls, n_bl, out_extra);
}

/* ---- the baselines: OpenBLAS sgemm and a dense linear ------------------------------------ */

/* After a call, OpenBLAS's pthread workers spin (sched_yield) for 2^28 TSC cycles (its default
 * THREAD_TIMEOUT, ~0.13 s here) before they sleep; a vnrt run timed in that window would share
 * the cores with them. So no timed run starts sooner than this after an sgemm run; time_plan
 * idles this long before every timed run of a case that has one, its own and the peers'. */
const double kBlasSettle = 0.2;

void sgemm_run(void *user) {
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
bool sgemm_prepare(sgemm_job *s, int64_t m, int64_t n, int64_t k, bool trans_b) {
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

void sgemm_free(sgemm_job *s) {
  free(s->a);
  free(s->b);
  free(s->c);
}

void plan_run_baseline(void *user) { check(vnrt_plan_run(user), "vnrt_plan_run"); }

/* One triad pass: the bandwidth baseline of memory-bound cases, timed beside them too. */
void triad_baseline(void *user) {
  (void)user;
  if (tool_triad_pass(&tri) < 0.0) die("the triad could not start its threads");
}

void free_bandwidth(void) { tool_triad_free(&tri); }

void triad_baseline_one_thread(void *user) {
  (void)user;
  (void)tool_triad_pass_one_thread(&tri);
}

double triad_gbps(double seconds) { return tool_triad_gbps(&tri, seconds); }

/* ---- results ----------------------------------------------------------------------------- */

static bool check_failed;

static result results[64];
static int n_results;

typedef struct figure {
  char name[64], unit[16], note[160];
  double value;
} figure;

static figure figures[64];
static int n_figures;

bool any_check_failed(void) { return check_failed; }
void note_check_failed(void) { check_failed = true; }

void print_header(void) {
  printf("%-10s %-42s %9s %8s %7s  %s%s\n", "op", "shape", "time ms", "GFLOP/s", "GB/s",
         opt.check ? "      NMSE  " : "", "compared in the same run (ratio: this case / peer)");
}

/* Appends ", name 0.42x (12.3 unit)" to buf when both figures exist. */
static void append_ratio(char *buf, size_t size, const char *name, double mine, double peer,
                         const char *unit) {
  if (!(mine > 0.0 && peer > 0.0)) return;
  size_t len = strlen(buf);
  snprintf(buf + len, size - len, "%s%s %.2fx (%.1f %s)", len ? ", " : "", name, mine / peer, peer,
           unit);
}

void print_result(const result *r) {
  char vs[320] = "", nm[32] = "";
  append_ratio(vs, sizeof vs, "OpenBLAS", r->gflops, r->blas_gflops, "GF/s");
  append_ratio(vs, sizeof vs, "dense linear", r->gflops, r->dense_gflops, "GF/s");
  for (int i = 0; i < r->n_peers; ++i) {
    append_ratio(vs, sizeof vs, r->peers[i].name, r->gflops, r->peers[i].gflops, "GF/s");
  }
  if (r->memory_bound) append_ratio(vs, sizeof vs, "triad", r->gbps, r->bw_gbps, "GB/s");
  /* The CPU backend as a speed ratio: > 1 means this device is faster. */
  if (r->cpu_ms > 0.0) {
    size_t len = strlen(vs);
    snprintf(vs + len, sizeof vs - len, "%scpu backend %.2fx (%.3f ms)", len ? ", " : "",
             r->cpu_ms / r->ms, r->cpu_ms);
  }
  if (r->nmse >= 0.0) {
    bool bad = !(r->nmse <= r->tolerance);
    snprintf(nm, sizeof nm, "%8.2e%s  ", r->nmse, bad ? " FAIL" : "     ");
    check_failed = check_failed || bad;
  }
  if (r->fallback_nodes > 0) {
    /* Not the device's time: say so before any ratio is read. */
    char fb[sizeof vs];
    snprintf(fb, sizeof fb,
             "FALLBACK: the cpu ran %d of %d nodes; not %.31s's time, excluded%s%.200s",
             r->fallback_nodes, r->nodes, device_info.spec, vs[0] ? "; " : "", vs);
    memcpy(vs, fb, sizeof vs);
  }
  printf("%-10s %-42s %9.3f %8.2f %7.2f  %s%s\n", r->op, r->shape, r->ms, r->gflops, r->gbps, nm,
         vs[0] ? vs : "-");
  fflush(stdout);
}

result *add_result(const char *op, double seconds, double flops, double bytes, const char *fmt,
                   ...) {
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

void result_extra(result *r, const case_extra *x) {
  r->nmse = x->nmse;
  r->cpu_ms = x->cpu_seconds * 1e3;
  r->nodes = x->nodes;
  r->fallback_nodes = x->fallback_nodes;
}

void add_peer(result *r, const char *name, double seconds) {
  if (r->n_peers == (int)(sizeof r->peers / sizeof r->peers[0]) || !(seconds > 0.0)) return;
  double flops = r->gflops * 1e9 * r->ms * 1e-3;
  snprintf(r->peers[r->n_peers].name, sizeof r->peers[0].name, "%s", name);
  r->peers[r->n_peers++].gflops = flops / seconds / 1e9;
}

void add_figure(const char *name, double value, const char *unit, const char *note) {
  if (n_figures == (int)(sizeof figures / sizeof figures[0])) die("too many figures");
  figure *f = &figures[n_figures++];
  snprintf(f->name, sizeof f->name, "%s", name);
  snprintf(f->unit, sizeof f->unit, "%s", unit);
  snprintf(f->note, sizeof f->note, "%s", note ? note : "");
  f->value = value;
  printf("%-52s %12.4g %-8s %s\n", f->name, f->value, f->unit, f->note);
  fflush(stdout);
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_number(FILE *f, const char *key, double v, bool comma) {
  if (v > 0.0 && isfinite(v)) {
    fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
  } else {
    fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
  }
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const char *c = s; *c; ++c) {
    if (*c == '"' || *c == '\\') fputc('\\', f);
    if ((unsigned char)*c >= 0x20) fputc(*c, f);
  }
  fputc('"', f);
}

void write_json(const char *path, const char *blas) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot write %s: %s", path, strerror(errno));
  fprintf(f, "{\"device\": ");
  json_string(f, device_info.spec);
  fprintf(f, ", \"device_name\": ");
  json_string(f, device_info.name);
  fprintf(f,
          ", \"threads\": %d, \"reps\": %d, \"statistic\": \"%s\", \"clock\": \"%s\", "
          "\"cold_caches\": %s, \"openblas\": ",
          opt.threads, opt.reps, opt.stat_min ? "min" : "median",
          opt.cpu_time ? "thread_cpu" : "monotonic", opt.hot ? "false" : "true");
  json_string(f, blas);
  fprintf(f, ", ");
  json_number(f, "bandwidth_gbps", bandwidth_gbps, true);
  fprintf(f, "\"results\": [");
  for (int i = 0; i < n_results; ++i) {
    const result *r = &results[i];
    fprintf(f, "%s\n  {\"op\": \"%s\", \"shape\": ", i ? "," : "", r->op);
    json_string(f, r->shape);
    fprintf(f, ", \"nodes\": %d, \"fallback_nodes\": %d, \"excluded\": %s, ", r->nodes,
            r->fallback_nodes, r->fallback_nodes > 0 ? "true" : "false");
    if (r->fallback_nodes > 0) {
      /* The CPU's time, kept apart so nothing reads it as the device's. */
      json_number(f, "fallback_time_ms", r->ms, true);
      fprintf(f, "\"time_ms\": null}");
      continue;
    }
    json_number(f, "time_ms", r->ms, true);
    json_number(f, "gflops", r->gflops, true);
    json_number(f, "gbps", r->gbps, true);
    json_number(f, "openblas_gflops", r->blas_gflops, true);
    json_number(f, "dense_gflops", r->dense_gflops, true);
    json_number(f, "vs_openblas", r->blas_gflops > 0 ? r->gflops / r->blas_gflops : 0, true);
    json_number(f, "bandwidth_gbps", r->memory_bound ? r->bw_gbps : 0, true);
    json_number(f, "vs_bandwidth", r->memory_bound ? r->gbps / r->bw_gbps : 0, true);
    json_number(f, "vs_dense", r->dense_gflops > 0 ? r->gflops / r->dense_gflops : 0, true);
    json_number(f, "cpu_backend_ms", r->cpu_ms, true);
    json_number(f, "vs_cpu_backend", r->cpu_ms > 0 ? r->cpu_ms / r->ms : 0, true);
    for (int p = 0; p < r->n_peers; ++p) {
      fprintf(f, "\"peer_%d\": {\"name\": ", p);
      json_string(f, r->peers[p].name);
      fprintf(f, ", ");
      json_number(f, "gflops", r->peers[p].gflops, true);
      json_number(f, "ratio", r->gflops / r->peers[p].gflops, false);
      fprintf(f, "}, ");
    }
    if (r->nmse >= 0.0) {
      fprintf(f, "\"nmse\": %.6g, ", isfinite(r->nmse) ? r->nmse : 1e308);
    } else {
      fprintf(f, "\"nmse\": null, ");
    }
    json_number(f, "tolerance", r->tolerance, false);
    fprintf(f, "}");
  }
  fprintf(f, "\n], \"figures\": [");
  for (int i = 0; i < n_figures; ++i) {
    fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
    json_string(f, figures[i].name);
    fprintf(f, ", \"value\": %.6g, \"unit\": ", isfinite(figures[i].value) ? figures[i].value : 0);
    json_string(f, figures[i].unit);
    fprintf(f, ", \"note\": ");
    json_string(f, figures[i].note);
    fprintf(f, "}");
  }
  fprintf(f, "\n]}\n");
  if (fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

const char *blas_description(void) {
  static char blas[96] = "none";
#if defined(VNRT_HAVE_OPENBLAS) && defined(OPENBLAS_VERSION)
  snprintf(blas, sizeof blas, "%s %s", OPENBLAS_VERSION, openblas_get_corename());
#elif defined(VNRT_HAVE_OPENBLAS)
  snprintf(blas, sizeof blas, "cblas");
#endif
  return blas;
}

void blas_set_threads(int n) {
#if defined(VNRT_HAVE_OPENBLAS) && defined(OPENBLAS_VERSION)
  openblas_set_num_threads(n);
#else
  (void)n;
#endif
}

/* ---- the plot ---------------------------------------------------------------------------- */

/* One bar: a result's speed over a peer's (> 1: vnrt is faster). */
typedef struct bar {
  char label[160];
  double ratio;
} bar;

typedef struct peer_ratio {
  const char *name;
  double ratio;
} peer_ratio;

static int collect_bars(bar *bars, int cap) {
  int n = 0;
  for (int i = 0; i < n_results; ++i) {
    const result *r = &results[i];
    if (r->fallback_nodes > 0) continue;
    peer_ratio pr[8];
    int np = 0;
    if (r->blas_gflops > 0) pr[np++] = (peer_ratio){"OpenBLAS", r->gflops / r->blas_gflops};
    if (r->dense_gflops > 0) pr[np++] = (peer_ratio){"dense", r->gflops / r->dense_gflops};
    for (int p = 0; p < r->n_peers && np < 7; ++p) {
      pr[np++] = (peer_ratio){r->peers[p].name, r->gflops / r->peers[p].gflops};
    }
    if (r->memory_bound && r->bw_gbps > 0 && np < 8) {
      pr[np++] = (peer_ratio){"triad", r->gbps / r->bw_gbps};
    }
    if (r->cpu_ms > 0 && np < 8) pr[np++] = (peer_ratio){"cpu backend", r->cpu_ms / r->ms};
    for (int p = 0; p < np && n < cap; ++p) {
      if (!(pr[p].ratio > 0) || !isfinite(pr[p].ratio)) continue;
      snprintf(bars[n].label, sizeof bars[n].label, "%.15s %.95s vs %.24s", r->op, r->shape,
               pr[p].name);
      bars[n++].ratio = pr[p].ratio;
    }
  }
  return n;
}

static void svg_text(FILE *f, const char *s) {
  for (; *s; ++s) {
    if (*s == '<') {
      fputs("&lt;", f);
    } else if (*s == '>') {
      fputs("&gt;", f);
    } else if (*s == '&') {
      fputs("&amp;", f);
    } else {
      fputc(*s, f);
    }
  }
}

void write_plot(const char *path) {
  static bar bars[512];
  int n = collect_bars(bars, 512);
  FILE *f = fopen(path, "w");
  if (!f) die("cannot write %s: %s", path, strerror(errno));
  /* Log2 scale: 1/8x .. 8x, clamped; parity (1x) is the middle line. */
  const int label_w = 520, plot_w = 480, row_h = 18, top = 50;
  int height = top + row_h * (n > 0 ? n : 1) + 40;
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "font-family=\"sans-serif\" font-size=\"12\">\n",
          label_w + plot_w + 80, height);
  fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"15\">vnrt-bench on ");
  svg_text(f, device_info.spec);
  fprintf(f, " (");
  svg_text(f, device_info.name);
  fprintf(f,
          "): speed over each peer measured in the same run (log scale; right of 1x: vnrt is "
          "faster)</text>\n");
  double x1 = label_w + plot_w / 2.0;
  for (int k = -3; k <= 3; ++k) {
    double x = x1 + k * plot_w / 6.0;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>\n"
            "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%gx</text>\n",
            x, top - 5, x, height - 35, k == 0 ? "#000" : "#ccc", x, top - 10, pow(2.0, k));
  }
  if (n == 0) {
    fprintf(f, "<text x=\"10\" y=\"%d\">no result has a peer to compare with</text>\n", top + 14);
  }
  for (int i = 0; i < n; ++i) {
    double l = log2(bars[i].ratio);
    if (l < -3) l = -3;
    if (l > 3) l = 3;
    double x = x1 + l * plot_w / 6.0, y = top + i * row_h;
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", label_w - 8, y + 13);
    svg_text(f, bars[i].label);
    fprintf(f,
            "</text>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n"
            "<text x=\"%.1f\" y=\"%.1f\">%.2fx</text>\n",
            l < 0 ? x : x1, y + 2, fabs(x - x1) < 1 ? 1 : fabs(x - x1), row_h - 4,
            l < 0 ? "#d46a6a" : "#5a9e5a", label_w + plot_w + 8.0, y + 13, bars[i].ratio);
  }
  fprintf(f, "</svg>\n");
  if (fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}
