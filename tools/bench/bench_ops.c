/* vnrt-bench's one-op cases: the shapes of a DeepSeek-V4-class model's hot ops. */
#include <math.h>
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

/* A quantized weight's inputs: codes of dtype `codes` ([..., R, C]) with random values, and
 * their e8m0 scales (one per block: 128x128 for e4m3, 1x32 for e2m1) of 2^-9..2^-6 (codes
 * 118..121, the magnitudes of a checkpoint's). */
static void quant_inputs(const char *name, const char *scale_name, vnrt_dtype codes, int rank,
                         int64_t e, int64_t r, int64_t c, input_desc out[2]) {
  const int64_t br = codes == VNRT_E2M1 ? 1 : 128, bc = codes == VNRT_E2M1 ? 32 : 128;
  const int64_t sr = (r + br - 1) / br, sc = (c + bc - 1) / bc;
  out[0] = (input_desc){name, rank == 3 ? ttype(codes, 3, e, r, c) : ttype(codes, 2, r, c, 0),
                        1,    GEN_CODES,
                        0.0,  0.0};
  out[1] = (input_desc){
      scale_name, rank == 3 ? ttype(VNRT_E8M0, 3, e, sr, sc) : ttype(VNRT_E8M0, 2, sr, sc, 0),
      1,          GEN_CODES,
      118.0,      121.0};
}

/* Times linear x[m, k]·w[n, k]ᵀ with e4m3 or e2m1 weights: for a few rows (decode) beside the
 * triad on the bytes read (codes and scales at their stored size), for more beside the same
 * shape with f32 weights (the f32 path's GFLOP/s). */
static void bench_linear_quant_case(int64_t m, int64_t n, int64_t k, vnrt_dtype codes) {
  input_desc ins[3] = {linear_input(0, m, n, k, VNRT_F32)};
  quant_inputs("w", "w_scale", codes, 2, 0, n, k, ins + 1);
  const bool memory_bound = m <= 4;
  bench_graph f32 = {.op = VNRT_OP_LINEAR, .n_in = 2, .n_out = 1};
  input_desc fins[2] = {linear_input(0, m, n, k, VNRT_F32), linear_input(1, m, n, k, VNRT_F32)};
  vnrt_plan *fplan = NULL;
  baseline bl = {triad_baseline, NULL, 0.0, 0.0};
  if (!memory_bound) {
    f32.ins = fins;
    graph_inputs(&f32);
    fplan = make_plan(&f32, device, VNRT_KERNELS_FAST);
    bl = (baseline){plan_run_baseline, fplan, 0.0, 0.0};
  }
  case_extra x;
  /* --check only for a few rows: the reference kernel takes minutes on M = 64. */
  double t = run_case(VNRT_OP_LINEAR, ins, 3, 1, memory_bound, &bl, 1, &x);
  if (fplan) {
    vnrt_plan_destroy(fplan);
    graph_free(&f32);
  }
  const double flops = 2.0 * (double)m * (double)n * (double)k;
  const double bytes = (double)vnrt_tensor_type_bytes(&ins[1].type) +
                       (double)vnrt_tensor_type_bytes(&ins[2].type) + 4.0 * (double)(m * k + m * n);
  result *r = add_result("linear", t, flops, bytes, "%s w, M=%lld x[%lld,%lld] w[%lld,%lld]",
                         vnrt_dtype_name(codes), (long long)m, (long long)m, (long long)k,
                         (long long)n, (long long)k);
  r->memory_bound = memory_bound;
  r->bw_gbps = memory_bound ? triad_gbps(bl.seconds) : 0.0;
  if (!memory_bound) add_peer(r, "f32 w", bl.seconds);
  result_extra(r, &x);
  print_result(r);
}

void bench_linear(void) {
  static const int64_t ms[] = {1, 16, 64, 512};
  static const vnrt_dtype wdts[] = {VNRT_F32, VNRT_F16};
  /* A --quick run on a sanitized build (VNRT_SANITIZED, docs/sanitizers.md) keeps the M <= 16
   * cases: the larger GEMMs take minutes under ASan, and vnrt-bench-check runs them there. */
  const int sanitized = opt.quick && getenv("VNRT_SANITIZED") != NULL;
  for (size_t d = 0; d < 2; ++d) {
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; ++i) {
      if (sanitized && ms[i] > 16) continue;
      bench_linear_case(ms[i], 5632, 2048, wdts[d]);
    }
  }
  /* Quantized weights on a DeepSeek-V4-sized projection: decode (FP8 and FP4) and a batch of
   * 64 rows (FP8) against the f32 path. */
  bench_linear_quant_case(1, 16384, 4096, VNRT_E4M3);
  bench_linear_quant_case(1, 16384, 4096, VNRT_E2M1);
  if (!sanitized) bench_linear_quant_case(64, 16384, 4096, VNRT_E4M3);
}

/* linear as a DeepSeek-V4 prefill runs it: M = 256 and 512 prompt tokens through the bench
 * model's (models/configs/v4-bench.json) dense projections, f32 and e4m3 (128x128 scales)
 * weights on f32 x, each beside OpenBLAS sgemm on the same shape in f32. */
void bench_v4_prefill(void) {
  static const struct {
    int64_t n, k;
    const char *what;
  } cs[] = {{512, 1024, "wq_a/wkv"},
            {4096, 512, "wq_b"},
            {1024, 2048, "wo_b"},
            {256, 1024, "shared w1/w3"},
            {1024, 256, "shared w2"}};
  static const int64_t ms[] = {256, 512};
  const int sanitized = opt.quick && getenv("VNRT_SANITIZED") != NULL;
  for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; ++mi) {
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; ++i) {
      for (int q = 0; q < 2; ++q) {
        const int64_t m = ms[mi], n = cs[i].n, k = cs[i].k;
        if (sanitized) continue;
        input_desc ins[3] = {linear_input(0, m, n, k, VNRT_F32),
                             linear_input(1, m, n, k, VNRT_F32)};
        if (q) quant_inputs("w", "w_scale", VNRT_E4M3, 2, 0, n, k, ins + 1);
        sgemm_job sj;
        const bool have_blas = sgemm_prepare(&sj, m, n, k, true);
        baseline bl = {sgemm_run, &sj, 0.0, kBlasSettle};
        case_extra x;
        double t = run_case(VNRT_OP_LINEAR, ins, q ? 3 : 2, 1, false, &bl, have_blas ? 1 : 0, &x);
        sgemm_free(&sj);
        const double flops = 2.0 * (double)m * (double)n * (double)k;
        double bytes = 4.0 * (double)(m * k + m * n);
        for (int j = 1; j < (q ? 3 : 2); ++j) bytes += (double)vnrt_tensor_type_bytes(&ins[j].type);
        result *r =
            add_result("v4_prefill", t, flops, bytes, "%s w, M=%lld x[%lld,%lld] w[%lld,%lld] %s",
                       q ? "e4m3" : "f32", (long long)m, (long long)m, (long long)k, (long long)n,
                       (long long)k, cs[i].what);
        result_extra(r, &x);
        if (have_blas) r->blas_gflops = flops / bl.seconds / 1e9;
        print_result(r);
      }
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
  /* f16 experts for a decode step and a prefill; FP4 (e2m1, 1x32 scales) for decode. */
  static const struct {
    int64_t T;
    vnrt_dtype wdt;
  } cases[] = {{1, VNRT_F16}, {128, VNRT_F16}, {1, VNRT_E2M1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    const int64_t T = cases[i].T;
    const vnrt_dtype wdt = cases[i].wdt;
    const bool quant = wdt == VNRT_E2M1;
    input_desc ins[7] = {
        {"x", ttype(VNRT_F32, 2, T, C, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"experts", ttype(VNRT_I32, 2, T, K, 0), 0, GEN_EXPERTS, 0.0, (double)E},
        {"weights", ttype(VNRT_F32, 2, T, K, 0), 0, GEN_UNIFORM, 0.05, 0.3},
        {"w_gate_up", ttype(wdt, 3, E, 2 * F, C), 1, GEN_UNIFORM, -0.05, 0.05},
        {"w_down", ttype(wdt, 3, E, C, F), 1, GEN_UNIFORM, -0.05, 0.05},
    };
    if (quant) {
      input_desc gu[2], dn[2];
      quant_inputs("w_gate_up", "w_gate_up_scale", wdt, 3, E, 2 * F, C, gu);
      quant_inputs("w_down", "w_down_scale", wdt, 3, E, C, F, dn);
      ins[3] = gu[0], ins[4] = dn[0], ins[5] = gu[1], ins[6] = dn[1];
    }
    /* The same work as one dense linear, x[T·k, C]·w[3F, C]ᵀ with the same weight dtype, timed
     * side by side (float weights only). */
    bench_graph dense = {.op = VNRT_OP_LINEAR, .n_in = 2, .n_out = 1};
    input_desc dins[2] = {linear_input(0, T * K, 3 * F, C, wdt),
                          linear_input(1, T * K, 3 * F, C, wdt)};
    vnrt_plan *dplan = NULL;
    baseline bls[2] = {{triad_baseline, NULL, 0.0, 0.0}, {plan_run_baseline, NULL, 0.0, 0.0}};
    if (!quant) {
      dense.ins = dins;
      graph_inputs(&dense);
      dplan = make_plan(&dense, device, VNRT_KERNELS_FAST);
      bls[1].user = dplan;
    }
    const bool memory_bound = T * K < E;
    case_extra x;
    /* The triad first: the dense linear is left out where there is none, the triad where the
     * case is not memory-bound. */
    baseline *b0 = memory_bound ? bls : bls + 1;
    const int n_bl = (memory_bound ? 1 : 0) + (dplan ? 1 : 0);
    double t = run_case(VNRT_OP_MOE_FFN, ins, quant ? 7 : 5, 1, true, b0, n_bl, &x);
    if (dplan) {
      vnrt_plan_destroy(dplan);
      graph_free(&dense);
    }
    /* Per routed token: gate/up 2·(2F)·C, down 2·C·F. Bytes: the experts' weights read (all
     * of them when every expert is hit, else about T·k experts' worth; codes and scales at
     * their stored size) plus activations. */
    double flops = (double)(T * K) * (4.0 * (double)(F * C) + 2.0 * (double)(C * F));
    double experts_hit = (double)(T * K < E ? T * K : E);
    double expert_bytes = 3.0 * (double)(F * C) * (double)vnrt_dtype_size(wdt);
    if (quant) {
      expert_bytes =
          (double)(vnrt_tensor_type_bytes(&ins[3].type) + vnrt_tensor_type_bytes(&ins[4].type) +
                   vnrt_tensor_type_bytes(&ins[5].type) + vnrt_tensor_type_bytes(&ins[6].type)) /
          (double)E;
    }
    double bytes = experts_hit * expert_bytes + 4.0 * (double)(2 * T * C);
    result *r = add_result("moe_ffn", t, flops, bytes, "%s w, T=%lld E=%lld k=%lld C=%lld F=%lld",
                           vnrt_dtype_name(wdt), (long long)T, (long long)E, (long long)K,
                           (long long)C, (long long)F);
    r->memory_bound = memory_bound;
    r->bw_gbps = memory_bound ? triad_gbps(bls[0].seconds) : 0.0;
    result_extra(r, &x);
    if (dplan) r->dense_gflops = flops / bls[1].seconds / 1e9;
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

/* ---- DeepSeek-V4 attention --------------------------------------------------------------- */

/* Times a V4 case on the device beside the same graph on the CPU reference kernels (and the
 * triad), prints it with the reference as a peer and the speed-up as a figure; with --check
 * the NMSE is taken between the two plans' outputs. */
static void v4_case(bench_graph *bg, const char *op, double flops, double bytes,
                    const char *shape) {
  graph_inputs(bg);
  vnrt_plan *plan = make_plan(bg, device, VNRT_KERNELS_FAST);
  vnrt_device *cpu = NULL;
  check(vnrt_device_select(ctx, "cpu", &cpu), "vnrt_device_select(cpu)");
  vnrt_plan *ref = make_plan(bg, cpu, VNRT_KERNELS_REFERENCE);
  baseline bls[2] = {{plan_run_baseline, ref, 0.0, 0.0}, {triad_baseline, NULL, 0.0, 0.0}};
  const double t = time_plan(plan, bls, 2);
  case_extra x = {.nmse = -1.0};
  if (opt.check) {
    x.nmse = 0.0;
    for (int32_t o = 0; o < vnrt_plan_output_count(plan); ++o) {
      const char *name = vnrt_plan_output_name(plan, o);
      int64_t n = 0, nr = 0;
      double *got = read_output(plan, name, &n), *want = read_output(ref, name, &nr);
      double num = 0.0, den = 0.0;
      for (int64_t i = 0; i < n && i < nr; ++i) {
        if (isinf(want[i]) && got[i] == want[i]) continue; /* index_scores' -inf */
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
      }
      double e = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
      if (!isfinite(e) || n != nr) e = INFINITY;
      if (e > x.nmse) x.nmse = e;
      free(got);
      free(want);
    }
  }
  vnrt_plan_destroy(ref);
  vnrt_plan_destroy(plan);
  graph_free(bg);
  result *r = add_result(op, t, flops, bytes, "%s", shape);
  r->memory_bound = true;
  r->bw_gbps = triad_gbps(bls[1].seconds);
  add_peer(r, "reference", bls[0].seconds);
  result_extra(r, &x);
  print_result(r);
  char name[96];
  snprintf(name, sizeof name, "%s %s: reference / fast", op, shape);
  add_figure(name, bls[0].seconds / t, "x", "the CPU reference kernels' time over this device's");
}

/* sparse_attention of a DeepSeek-V4 layer: H = 64 heads of D = 512, a window of 128 and 512
 * selected entries (CSA, m = 4) or every visible one (HCA, m = 128), at position 65535 (and a
 * chunk of 8 tokens). */
void bench_sparse_attention(void) {
  static const struct {
    int64_t T, H, D, W, Sc, K;
    int32_t ratio, pos0;
  } cs[] = {{1, 64, 512, 128, 16384, 512, 4, 65535},
            {1, 64, 512, 128, 512, 0, 128, 65535},
            {8, 64, 512, 128, 16384, 512, 4, 65528}};
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; ++i) {
    const int64_t T = cs[i].T, H = cs[i].H, D = cs[i].D, W = cs[i].W, Sc = cs[i].Sc, K = cs[i].K;
    input_desc ins[7] = {
        {"q", ttype(VNRT_F32, 3, T, H, D), 0, GEN_UNIFORM, -1.0, 1.0},
        {"kv", ttype(VNRT_F32, 2, T, D, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"ring", ttype(VNRT_F32, 2, W, D, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"sinks", ttype(VNRT_F32, 1, H, 0, 0), 1, GEN_UNIFORM, -1.0, 1.0},
        {"pos0", ttype(VNRT_I32, 1, 1, 0, 0), 0, GEN_UNIFORM, cs[i].pos0, cs[i].pos0},
        {"comp", ttype(VNRT_F32, 2, Sc, D, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"idx", ttype(VNRT_I32, 2, T, K, 0), 0, GEN_UNIFORM, 0.0, (double)Sc - 0.5},
    };
    const vnrt_attr attrs[1] = {{.key = "ratio", .kind = VNRT_ATTR_INT, .i = cs[i].ratio}};
    bench_graph bg = {.op = VNRT_OP_SPARSE_ATTENTION,
                      .ins = ins,
                      .n_in = K ? 7 : 6,
                      .n_out = 1,
                      .attrs = attrs,
                      .n_attrs = 1};
    const int64_t keys = W + (K ? K : (cs[i].pos0 + T) / cs[i].ratio);
    const double flops = 4.0 * (double)(T * H * keys * D);
    const double bytes = 4.0 * (double)(T * keys * D + 2 * T * H * D);
    char shape[96];
    snprintf(shape, sizeof shape, "T=%lld H=%lld D=%lld W=%lld %s=%lld", (long long)T, (long long)H,
             (long long)D, (long long)W, K ? "K" : "HCA Sc", (long long)(K ? K : Sc));
    v4_case(&bg, "sparse_attn", flops, bytes, shape);
  }
}

/* index_scores of the lightning indexer (Hi = 64 heads of Di = 128) over a compressed cache of
 * S entries (ratio 4), decode steps at position 4·S − 1 and a chunk of 16 tokens. */
void bench_index_scores(void) {
  static const int64_t cs[][2] = {{1, 4096}, {1, 16384}, {16, 4096}};
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; ++i) {
    const int64_t T = cs[i][0], S = cs[i][1], Hi = 64, Di = 128;
    const double pos = (double)(4 * S - 1);
    input_desc ins[4] = {
        {"q", ttype(VNRT_F32, 3, T, Hi, Di), 0, GEN_UNIFORM, -1.0, 1.0},
        {"k", ttype(VNRT_F32, 2, S, Di, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"w", ttype(VNRT_F32, 2, T, Hi, 0), 0, GEN_UNIFORM, -1.0, 1.0},
        {"pos", ttype(VNRT_I32, 1, T, 0, 0), 0, GEN_UNIFORM, pos, pos},
    };
    const vnrt_attr attrs[1] = {{.key = "ratio", .kind = VNRT_ATTR_INT, .i = 4}};
    bench_graph bg = {.op = VNRT_OP_INDEX_SCORES,
                      .ins = ins,
                      .n_in = 4,
                      .n_out = 1,
                      .attrs = attrs,
                      .n_attrs = 1};
    const double flops = 2.0 * (double)(T * Hi * S * Di) + 3.0 * (double)(T * Hi * S);
    const double bytes = 4.0 * (double)(S * Di + T * Hi * Di + T * S);
    char shape[96];
    snprintf(shape, sizeof shape, "T=%lld Hi=%lld Di=%lld S=%lld", (long long)T, (long long)Hi,
             (long long)Di, (long long)S);
    v4_case(&bg, "index_scores", flops, bytes, shape);
  }
}

/* grouped_linear as V4's grouped output projection wo_a: x[T, 8·4096]·w[8·1024, 4096] in 8
 * groups, bf16 and e4m3 (128x128 scales) weights, a decode step. */
void bench_grouped_linear(void) {
  const int64_t G = 8, N = 1024, K = 4096, T = 1;
  static const vnrt_dtype wdts[] = {VNRT_BF16, VNRT_E4M3};
  for (size_t i = 0; i < 2; ++i) {
    input_desc ins[3] = {{"x", ttype(VNRT_F32, 2, T, G * K, 0), 0, GEN_UNIFORM, -1.0, 1.0},
                         {"w", ttype(wdts[i], 2, G * N, K, 0), 1, GEN_UNIFORM, -0.05, 0.05}};
    if (wdts[i] == VNRT_E4M3) quant_inputs("w", "w_scale", VNRT_E4M3, 2, 0, G * N, K, ins + 1);
    const vnrt_attr attrs[1] = {{.key = "groups", .kind = VNRT_ATTR_INT, .i = G}};
    bench_graph bg = {.op = VNRT_OP_GROUPED_LINEAR,
                      .ins = ins,
                      .n_in = wdts[i] == VNRT_E4M3 ? 3 : 2,
                      .n_out = 1,
                      .attrs = attrs,
                      .n_attrs = 1};
    double bytes = 4.0 * (double)(T * G * (K + N));
    for (int j = 1; j < bg.n_in; ++j) bytes += (double)vnrt_tensor_type_bytes(&ins[j].type);
    char shape[96];
    snprintf(shape, sizeof shape, "%s w, T=%lld G=%lld N=%lld K=%lld", vnrt_dtype_name(wdts[i]),
             (long long)T, (long long)G, (long long)N, (long long)K);
    v4_case(&bg, "grouped_linear", 2.0 * (double)(T * G * N * K), bytes, shape);
  }
}

/* linear as a DeepSeek-V4 decode step runs it (models/configs/v4-bench.json's shapes, T = 1):
 * e4m3 weights (128x128 scales) with act_quant = 128 on bf16 x (the attention projections)
 * and f32 x (the shared expert), and bf16 weights on f32 x (the compressors and the head). */
void bench_v4_linear(void) {
  static const struct {
    int64_t n, k;
    vnrt_dtype xdt, wdt;
  } cs[] = {{512, 1024, VNRT_BF16, VNRT_E4M3},  {4096, 512, VNRT_BF16, VNRT_E4M3},
            {1024, 2048, VNRT_BF16, VNRT_E4M3}, {256, 1024, VNRT_F32, VNRT_E4M3},
            {1024, 256, VNRT_F32, VNRT_E4M3},   {1024, 1024, VNRT_F32, VNRT_BF16},
            {16384, 1024, VNRT_F32, VNRT_BF16}};
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; ++i) {
    const int64_t n = cs[i].n, k = cs[i].k;
    const bool q = cs[i].wdt == VNRT_E4M3;
    input_desc ins[3] = {{"x", ttype(cs[i].xdt, 2, 1, k, 0), 0, GEN_UNIFORM, -1.0, 1.0},
                         {"w", ttype(cs[i].wdt, 2, n, k, 0), 1, GEN_UNIFORM, -0.05, 0.05}};
    if (q) quant_inputs("w", "w_scale", VNRT_E4M3, 2, 0, n, k, ins + 1);
    const vnrt_attr attrs[1] = {{.key = "act_quant", .kind = VNRT_ATTR_INT, .i = 128}};
    bench_graph bg = {.op = VNRT_OP_LINEAR,
                      .ins = ins,
                      .n_in = q ? 3 : 2,
                      .n_out = 1,
                      .attrs = attrs,
                      .n_attrs = q ? 1 : 0};
    const double xsz = (double)vnrt_dtype_size(cs[i].xdt);
    double bytes = xsz * (double)(k + n);
    for (int j = 1; j < bg.n_in; ++j) bytes += (double)vnrt_tensor_type_bytes(&ins[j].type);
    char shape[96];
    snprintf(shape, sizeof shape, "%s w, %s x[1,%lld] w[%lld,%lld]%s", vnrt_dtype_name(cs[i].wdt),
             vnrt_dtype_name(cs[i].xdt), (long long)k, (long long)n, (long long)k,
             q ? " act_quant" : "");
    v4_case(&bg, "v4_linear", 2.0 * (double)(n * k), bytes, shape);
  }
}
