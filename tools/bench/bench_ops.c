/* vnrt-bench's one-op cases: the shapes of a DeepSeek-V4-class model's hot ops. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

/* ---- the cases --------------------------------------------------------------------------- */

input_desc linear_input(int which, int64_t m, int64_t n, int64_t k, vnrt_dtype wdt) {
  if (which == 0) return (input_desc){"x", ttype(VNRT_F32, 2, m, k, 0), 0, GEN_UNIFORM, -1.0, 1.0};
  return (input_desc){"w", ttype(wdt, 2, n, k, 0), 1, GEN_UNIFORM, -0.05, 0.05};
}

/* Times linear x[m, k]·w[n, k]ᵀ with weights of dtype wdt beside OpenBLAS sgemm. */
static void bench_linear_case(int64_t m, int64_t n, int64_t k, vnrt_dtype wdt) {
  input_desc ins[2] = {linear_input(0, m, n, k, wdt), linear_input(1, m, n, k, wdt)};
  sgemm_job sj;
  bool have_blas = sgemm_prepare(&sj, m, n, k, true);
  const bool memory_bound = m <= 4;
  baseline bls[4];
  int n_bl = 0, i_triad = -1;
  if (have_blas) bls[n_bl++] = (baseline){sgemm_run, &sj, 0.0, kBlasSettle};
  if (memory_bound) i_triad = n_bl, bls[n_bl++] = (baseline){triad_baseline, NULL, 0.0, 0.0};
  opencl_peers *clp = NULL;
  const int i_cl = n_bl;
  n_bl += opencl_peers_prepare(&clp, VNRT_OP_LINEAR, ins, 2, m, n, k, true, bls + i_cl);
  case_extra x;
  double t = run_case(VNRT_OP_LINEAR, ins, 2, 1, true, bls, n_bl, &x);
  sgemm_free(&sj);
  double flops = 2.0 * (double)m * (double)n * (double)k;
  double bytes = (double)(n * k) * (double)vnrt_dtype_size(wdt) + 4.0 * (double)(m * k + m * n);
  result *r = add_result("linear", t, flops, bytes, "%s w, M=%lld x[%lld,%lld] w[%lld,%lld]",
                         vnrt_dtype_name(wdt), (long long)m, (long long)m, (long long)k,
                         (long long)n, (long long)k);
  r->memory_bound = memory_bound;
  r->bw_gbps = i_triad >= 0 ? triad_gbps(bls[i_triad].seconds) : 0.0;
  result_extra(r, &x);
  if (have_blas) r->blas_gflops = flops / bls[0].seconds / 1e9;
  opencl_peers_add(clp, bls + i_cl, r);
  print_result(r);
  opencl_peers_finish(clp);
}

void bench_linear(void) {
  static const int64_t ms[] = {1, 16, 64, 512};
  static const vnrt_dtype wdts[] = {VNRT_F32, VNRT_F16};
  for (size_t d = 0; d < 2; ++d) {
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; ++i) {
      bench_linear_case(ms[i], 5632, 2048, wdts[d]);
    }
  }
}

void bench_matmul(void) {
  static const int64_t shapes[][3] = {{256, 1024, 1024}, {64, 2048, 2048}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
    input_desc ins[2] = {
        {"a", ttype(VNRT_F32, 2, m, k, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"b", ttype(VNRT_F32, 2, k, n, 0), 1, GEN_UNIFORM, -0.05, 0.05},
    };
    sgemm_job sj;
    baseline bls[3] = {{sgemm_run, &sj, 0.0, kBlasSettle}};
    bool have_blas = sgemm_prepare(&sj, m, n, k, false);
    const int i_cl = have_blas ? 1 : 0;
    opencl_peers *clp = NULL;
    int n_bl =
        i_cl + opencl_peers_prepare(&clp, VNRT_OP_MATMUL, ins, 2, m, n, k, false, bls + i_cl);
    case_extra x;
    double t = run_case(VNRT_OP_MATMUL, ins, 2, 1, true, bls, n_bl, &x);
    sgemm_free(&sj);
    double flops = 2.0 * (double)(m * n) * (double)k;
    result *r = add_result("matmul", t, flops, 4.0 * (double)(m * k + k * n + m * n),
                           "f32 a[%lld,%lld] b[%lld,%lld]", (long long)m, (long long)k,
                           (long long)k, (long long)n);
    result_extra(r, &x);
    if (have_blas) r->blas_gflops = flops / bls[0].seconds / 1e9;
    opencl_peers_add(clp, bls + i_cl, r);
    print_result(r);
    opencl_peers_finish(clp);
  }
}

void bench_moe(void) {
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
    case_extra x;
    double t = run_case(VNRT_OP_MOE_FFN, ins, 5, 1, true, bls, memory_bound ? 2 : 1, &x);
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
    result_extra(r, &x);
    r->dense_gflops = flops / bls[0].seconds / 1e9;
    print_result(r);
  }
}

void bench_hc_pre(void) {
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
    case_extra x;
    double t = run_case(VNRT_OP_HC_PRE, ins, 4, 3, true, &bw, n_bl, &x);
    double flops = (double)T * (2.0 * (double)(R * n * C) + 4.0 * (double)(n * C));
    double bytes = 4.0 * ((double)(R * n * C) + (double)(T * n * C) + (double)(T * C));
    result *r = add_result("hc_pre", t, flops, bytes, "f32 n=%lld C=%lld T=%lld", (long long)n,
                           (long long)C, (long long)T);
    r->memory_bound = T == 1; /* T = 128 does ~10 flops per byte */
    r->bw_gbps = triad_gbps(bw.seconds);
    result_extra(r, &x);
    r->tolerance = 1e-7; /* mHC ops: docs/ops.md's tighter bound */
    print_result(r);
  }
}

void bench_attention(void) {
  const int64_t T = 1, S = 4096, Hq = 16, Hkv = 1, D = 128;
  input_desc ins[3] = {
      {"q", ttype(VNRT_F32, 3, T, Hq, D), 0, GEN_UNIFORM, -1.0, 1.0},
      {"k", ttype(VNRT_F32, 3, S, Hkv, D), 0, GEN_UNIFORM, -1.0, 1.0},
      {"v", ttype(VNRT_F32, 3, S, Hkv, D), 0, GEN_UNIFORM, -1.0, 1.0},
  };
  baseline bw = {triad_baseline, NULL, 0.0, 0.0};
  case_extra x;
  double t = run_case(VNRT_OP_ATTENTION, ins, 3, 1, true, &bw, 1, &x);
  double flops = 4.0 * (double)(T * Hq * S * D);
  double bytes = 4.0 * (double)(2 * S * Hkv * D + 2 * T * Hq * D);
  result *r = add_result("attention", t, flops, bytes, "f32 T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld",
                         (long long)T, (long long)S, (long long)Hq, (long long)Hkv, (long long)D);
  r->memory_bound = true;
  r->bw_gbps = triad_gbps(bw.seconds);
  result_extra(r, &x);
  print_result(r);
}

/* Row-wise memory-bound ops: bytes are one read of x (and w) and one write of the result. */
static void bench_rows(vnrt_op op, const char *name, int64_t rows, int64_t cols) {
  input_desc ins[2] = {
      {"x", ttype(VNRT_F32, 2, rows, cols, 0), 0, GEN_UNIFORM, -2.0, 2.0},
      {"w", ttype(VNRT_F32, 1, cols, 0, 0), 1, GEN_UNIFORM, 0.5, 1.5},
  };
  int n_in = op == VNRT_OP_RMS_NORM ? 2 : 1;
  baseline bw = {triad_baseline, NULL, 0.0, 0.0};
  case_extra x;
  double t = run_case(op, ins, n_in, 1, true, &bw, 1, &x);
  double elems = (double)(rows * cols);
  double flops = (op == VNRT_OP_RMS_NORM ? 4.0 : 5.0) * elems;
  double bytes = 4.0 * (2.0 * elems + (n_in == 2 ? (double)cols : 0.0));
  result *r =
      add_result(name, t, flops, bytes, "f32 x[%lld,%lld]", (long long)rows, (long long)cols);
  r->memory_bound = true;
  r->bw_gbps = triad_gbps(bw.seconds);
  result_extra(r, &x);
  print_result(r);
}

/* A decode step's rows (1 token), a prefill's, and a large block past every cache. */
static const int64_t kRowShapes[][2] = {{1, 4096}, {128, 4096}, {4096, 4096}};

void bench_rms_norm(void) {
  for (size_t i = 0; i < sizeof kRowShapes / sizeof kRowShapes[0]; ++i) {
    bench_rows(VNRT_OP_RMS_NORM, "rms_norm", kRowShapes[i][0], kRowShapes[i][1]);
  }
}

void bench_softmax(void) {
  for (size_t i = 0; i < sizeof kRowShapes / sizeof kRowShapes[0]; ++i) {
    bench_rows(VNRT_OP_SOFTMAX, "softmax", kRowShapes[i][0], kRowShapes[i][1]);
  }
}
