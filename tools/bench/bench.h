/* What the parts of vnrt-bench share: options, timing, the same-run baselines, one-op graphs
 * and the results table. Each benchmark case is a function listed in bench_main.c's table. */
#ifndef VNRT_BENCH_H_
#define VNRT_BENCH_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

/* ---- options ----------------------------------------------------------------------------- */

typedef struct bench_options {
  const char *device;
  const char *json;
  int reps, warmup, threads;
  bool quick, hot, check, stat_min;
  bool cpu_time;     /* --cpu-time: times are the calling thread's CPU time (needs --threads 1) */
  bool if_present;   /* a missing device is a skip (exit 77), not an error */
  bool vs_cpu;       /* the device is not the CPU: time every case on the CPU backend beside it */
  const char *graph; /* --graph FILE.vnir: per-node times of that graph instead of the cases */
  const char *plot;  /* --plot FILE.svg: ratios against the peers as a bar chart */
} bench_options;

extern bench_options opt;

/* ---- utilities --------------------------------------------------------------------------- */

#if defined(__GNUC__)
#define BENCH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BENCH_PRINTF(a, b)
#endif

/* Prints "vnrt-bench: <message>" and exits with status 1. */
BENCH_PRINTF(1, 2) _Noreturn void die(const char *fmt, ...);
void *xmalloc(size_t bytes);
double now_s(void);
/* The median of n times (or, with --min, the smallest); sorts v. */
double median(double *v, int n);
/* Reproducible uniform numbers in [0, 1). */
double rng_uniform(void);
void sleep_s(double seconds);

/* ---- memory bandwidth -------------------------------------------------------------------- */

extern double bandwidth_gbps; /* the triad's, measured once at start-up */
void measure_bandwidth(void);
void free_bandwidth(void);
/* Reads a buffer larger than any cache (unless --hot), so that the next timed run starts cold. */
void evict_caches(void);
/* One triad pass as a baseline, and the GB/s of a pass that took `seconds`. */
void triad_baseline(void *user);
/* The same pass on the calling thread alone: what one thread can stream. */
void triad_baseline_one_thread(void *user);
double triad_gbps(double seconds);

/* ---- one-op graphs through the public API ------------------------------------------------ */

extern vnrt_context *ctx;
extern vnrt_device *device;
extern vnrt_device_info device_info;

/* Dies with the context's message if s is not VNRT_OK. */
void check(vnrt_status s, const char *what);

/* GEN_CODES: random e4m3 codes (any but the NaNs), e2m1 codes (any nibble), or e8m0 scale codes
 * uniform in [lo, hi]. */
typedef enum gen { GEN_UNIFORM, GEN_EXPERTS, GEN_CODES } gen;

typedef struct input_desc {
  const char *name;
  vnrt_tensor_type type;
  int is_param;
  gen g;
  double lo, hi; /* GEN_UNIFORM range; GEN_EXPERTS: hi = expert count */
} input_desc;

vnrt_tensor_type ttype(vnrt_dtype dt, int rank, int64_t d0, int64_t d1, int64_t d2);

/* Host data for one input (xmalloc'd; *out_bytes its size): uniform values, per row distinct
 * expert ids in [0, hi), or random quantization codes. */
void *bench_make_data(const input_desc *in, size_t *out_bytes);

/* One case's graph: op, inputs (with their host data), attributes and result count. */
typedef struct bench_graph {
  vnrt_op op;
  const input_desc *ins;
  int n_in, n_out, n_attrs;
  const vnrt_attr *attrs;
  void *data[8];
  size_t bytes[8];
} bench_graph;

void graph_inputs(bench_graph *bg);
void graph_free(bench_graph *bg);
/* Builds the one-op graph, compiles it for dev with the given kernels and binds its data. */
vnrt_plan *make_plan(const bench_graph *bg, vnrt_device *dev, vnrt_kernel_mode mode);
/* Output `name` of a plan that has run, widened to double (free() it). */
double *read_output(vnrt_plan *plan, const char *name, int64_t *out_n);

/* ---- timing beside baselines ------------------------------------------------------------- */

/* A baseline timed side by side with a case: run(user) does one baseline run; seconds
 * receives its median (or fastest) time. */
typedef struct baseline {
  void (*run)(void *user);
  void *user;
  double seconds;
  double settle_s; /* idle time after each run before the next run; when > 0, every timed
                      run of the case (the plan's and each baseline's) follows this idle */
} baseline;

/* Median seconds of vnrt_plan_run, alternating with the baselines' runs. */
double time_plan(vnrt_plan *plan, baseline *bls, int n_bl);
void plan_run_baseline(void *user);

/* What run_case measured besides the case's own time. */
typedef struct case_extra {
  double nmse;               /* against the reference kernels (--check); < 0: not checked */
  double cpu_seconds;        /* the same graph on the CPU backend (opt.vs_cpu); 0: not timed */
  int nodes, fallback_nodes; /* of the device's plan: nodes the CPU ran instead (fallback) */
} case_extra;

/* Times one case on the device beside its baselines (and, with opt.vs_cpu, the same graph on
 * the CPU backend); with --check (and check_it) also compares it with the reference kernels. */
double run_graph_case(bench_graph *bg, bool check_it, baseline *bls, int n_bl,
                      case_extra *out_extra);
double run_case(vnrt_op op, const input_desc *ins, int n_in, int n_out, bool check_it,
                baseline *bls, int n_bl, case_extra *out_extra);

/* ---- OpenBLAS sgemm ---------------------------------------------------------------------- */

/* Idle seconds after each OpenBLAS call (its spinning workers would share the cores). */
extern const double kBlasSettle;

/* cblas_sgemm for C[M, N] = A[M, K]·B, B being [N, K] transposed when trans_b (the linear
 * layout), else [K, N]; f32 on the same thread count. */
typedef struct sgemm_job {
  float *a, *b, *c;
  int64_t m, n, k;
  bool trans_b;
} sgemm_job;

void sgemm_run(void *user);
/* Prepares the sgemm baseline; false (and nothing to free) without OpenBLAS. */
bool sgemm_prepare(sgemm_job *s, int64_t m, int64_t n, int64_t k, bool trans_b);
void sgemm_free(sgemm_job *s);
const char *blas_description(void);
void blas_set_threads(int n);

/* ---- results ----------------------------------------------------------------------------- */

typedef struct result {
  char op[16], shape[96];
  double ms, gflops, gbps;
  double blas_gflops;  /* OpenBLAS sgemm on the same shape; 0 if none */
  double dense_gflops; /* dense linear of the same work (moe_ffn); 0 if none */
  bool memory_bound;   /* compare with the bandwidth */
  double bw_gbps;      /* the triad's bandwidth measured beside this case */
  double cpu_ms;       /* the same graph on the CPU backend; 0 if not timed */
  struct {
    char name[24];
    double gflops;
  } peers[4]; /* other implementations of the same work timed beside it (e.g. clBLAST) */
  int n_peers;
  double nmse; /* against the reference kernels (--check); < 0: not checked */
  double tolerance;
  /* Nodes of the case the device could not run, so the CPU did: the time is not the device's,
   * and the result is marked and left out of the JSON's times, ratios and the plot. */
  int nodes, fallback_nodes;
} result;

BENCH_PRINTF(5, 6)
result *add_result(const char *op, double seconds, double flops, double bytes, const char *fmt,
                   ...);
/* Adds a peer that did the same work in `seconds` (after the case's flops are set). */
void add_peer(result *r, const char *name, double seconds);
/* Stores what run_case measured besides the time. */
void result_extra(result *r, const case_extra *x);
void print_header(void);
void print_result(const result *r);
/* Some --check result was beyond its tolerance. */
bool any_check_failed(void);
/* Marks the run as failed (exit status 1): a --check result beyond tolerance. */
void note_check_failed(void);
void write_json(const char *path, const char *blas);
/* An SVG bar chart of every result's ratios against its peers (fallback results left out). */
void write_plot(const char *path);

/* ---- --graph (bench_graph.c) ------------------------------------------------------------- */

/* Times the graph in opt.graph on the device (random inputs, params and states): the whole
 * run's median, then every node's time from a profiled plan (vnrt/inspect.h), with nodes the
 * device cannot run marked and left out of the device's total; JSON with opt.json. */
void bench_graph_file(void);

/* Free-form lines after the table (cases that are not one op, e.g. dispatch overhead): printed
 * at once and kept for the JSON file as {"name": ..., "value": ..., "unit": ...}. */
void add_figure(const char *name, double value, const char *unit, const char *note);

/* ---- OpenCL GEMM peers (bench_clblast.c) ------------------------------------------------- */

typedef struct opencl_peers opencl_peers;

/* On an OpenCL device, in a build with clBLAST: fills bls[0..1] with two baselines for the
 * GEMM C[m, n] = A[m, k]·B (B [n, k] when trans_b, else [k, n]) of a case whose graph is `op`
 * over ins[n_in] — clBLAST's sgemm called directly on the same device (f32 operands uploaded
 * once), and the case's graph compiled with vnrt forced onto its clBLAST path — and returns 2.
 * Otherwise returns 0 and sets *out to NULL. */
int opencl_peers_prepare(opencl_peers **out, vnrt_op op, const input_desc *ins, int n_in, int64_t m,
                         int64_t n, int64_t k, bool trans_b, baseline *bls);
/* After run_case: adds the peers timed in bls (as prepared) to r, "clBLAST" and "vnrt clblast";
 * nothing when p is NULL. */
void opencl_peers_add(opencl_peers *p, const baseline *bls, result *r);
/* After print_result: prints (as a figure) the speed of vnrt's clBLAST path over direct
 * clBLAST, the overhead the issue bounds, and frees p; nothing when p is NULL. */
void opencl_peers_finish(opencl_peers *p);

/* ---- the cases (bench_main.c lists them) ------------------------------------------------- */

/* linear's inputs: which = 0 the activations x[m, k], 1 the weights w[n, k] of dtype wdt. */
input_desc linear_input(int which, int64_t m, int64_t n, int64_t k, vnrt_dtype wdt);

void bench_linear(void);
void bench_matmul(void);
void bench_moe(void);
void bench_hc_pre(void);
void bench_attention(void);
void bench_rms_norm(void);
void bench_softmax(void);
void bench_dispatch(void);
void bench_engram(void);
void bench_dualpath(void);
void bench_sparse_attention(void);
void bench_index_scores(void);
void bench_grouped_linear(void);
void bench_v4_linear(void);
void bench_v4_prefill(void);

#endif /* VNRT_BENCH_H_ */
