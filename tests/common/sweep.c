/* The op sweep that test_vulkan and test_opencl share: indexing, rope in both pairings,
 * attention; hc_pre (Sinkhorn iterations), hc_head, hc_post, sinkhorn, the routers and moe_ffn;
 * ngram_hash (64-bit wrap, negative ids, the modulo by each prime), engram_lookup, engram_gate
 * and short_conv — each one-op graph run on the CPU and on the target device (no fallback)
 * and compared: floats by NMSE, integers exactly. */
#include "sweep.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_ELEM 1e-7
#define TOL_GEMM 1e-6

static vnrt_device *g_target; /* the device the current sweep compares with the CPU */

tu_tensor tu_rnd(vnrt_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                 uint64_t seed, float lo, float hi) {
  int64_t dims[4] = {d0, d1, d2, d3};
  tu_tensor t = tu_tensor_new(dt, rank, dims);
  tu_fill_uniform(&t, seed, lo, hi);
  return t;
}

tu_tensor tu_ints(int32_t rank, int64_t d0, int64_t d1, const int32_t *v) {
  int64_t dims[2] = {d0, d1};
  tu_tensor t = tu_tensor_new(VNRT_I32, rank, dims);
  memcpy(t.data, v, sizeof(int32_t) * (size_t)tu_numel(&t));
  return t;
}

void tu_free_all(tu_tensor *t, int32_t n) {
  for (int32_t i = 0; i < n; ++i) tu_tensor_free(&t[i]);
}

static void vs_cpu(vnrt_context *ctx, const char *what, vnrt_op op, const tu_tensor *in,
                   int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out,
                   double tol) {
  tu_vs_cpu(ctx, g_target, what, op, in, n_in, attrs, n_attrs, n_out, tol);
}

void tu_vs_cpu(vnrt_context *ctx, vnrt_device *target, const char *what, vnrt_op op,
               const tu_tensor *in, int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs,
               int32_t n_out, double tol) {
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, n_out);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  tu_tensor ref[4], got[4];
  vnrt_status s = tu_run(ctx, g, cpu, in, n_in, ref, n_out);
  ck_assert_msg(s == VNRT_OK, "%s on cpu: %s", what, vnrt_context_last_error(ctx));
  const char *dev = tu_device_spec(target);
  s = tu_run(ctx, g, target, in, n_in, got, n_out);
  ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", what, dev, vnrt_status_string(s),
                vnrt_context_last_error(ctx));
  for (int32_t o = 0; o < n_out; ++o) {
    ck_assert_msg(got[o].type.dtype == ref[o].type.dtype && got[o].type.rank == ref[o].type.rank,
                  "%s: result %d types differ", what, o);
    int64_t n = tu_numel(&ref[o]);
    ck_assert_int_eq(tu_numel(&got[o]), n);
    if (ref[o].type.dtype == VNRT_I32) {
      for (int64_t i = 0; i < n; ++i) {
        if (tu_get(&got[o], i) != tu_get(&ref[o], i)) {
          ck_abort_msg("%s: result %d[%lld] is %g on %s, %g on cpu", what, o, (long long)i,
                       tu_get(&got[o], i), dev, tu_get(&ref[o], i));
        }
      }
      continue;
    }
    double *want = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(want);
    for (int64_t i = 0; i < n; ++i) want[i] = tu_get(&ref[o], i);
    double e = tu_nmse(&got[o], want, n);
    free(want);
    ck_assert_msg(e <= tol, "%s: result %d NMSE %.3g on %s against the cpu > %.1g", what, o, e, dev,
                  tol);
  }
  tu_free_all(ref, n_out);
  tu_free_all(got, n_out);
  vnrt_graph_destroy(g);
}

static const vnrt_dtype kFloats[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};

void tu_sweep_index_rope_attention(vnrt_context *ctx, vnrt_device *target) {
  g_target = target;
  char what[128];
  const int32_t ids[6] = {4, 0, 9, 9, 2, 7};
  tu_tensor emb[2] = {tu_rnd(VNRT_BF16, 2, 10, 33, 0, 0, 120, -1.0f, 1.0f), tu_ints(2, 2, 3, ids)};
  vs_cpu(ctx, "embedding bf16", VNRT_OP_EMBEDDING, emb, 2, NULL, 0, 1, 0.0);
  tu_free_all(emb, 2);
  for (int d = 0; d < 3; ++d) {
    tu_tensor x = tu_rnd(kFloats[d], 2, 5, 300, 0, 0, 130 + d, -3.0f, 3.0f);
    vnrt_attr k = tu_attr_i("k", 7);
    snprintf(what, sizeof what, "topk %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_TOPK, &x, 1, &k, 1, 2, 0.0);
    tu_tensor_free(&x);
  }
  /* rope at long positions, both pairings, a partial rotary slice. */
  const int32_t pos[5] = {0, 1, 4096, 100000, 7};
  for (int inter = 0; inter < 2; ++inter) {
    tu_tensor in[2] = {
        tu_rnd(inter ? VNRT_F16 : VNRT_F32, 3, 5, 3, 12, 0, 140 + inter, -1.0f, 1.0f),
        tu_ints(1, 5, 0, pos)};
    vnrt_attr a[3] = {tu_attr_f("theta", 10000.0), tu_attr_i("interleaved", inter),
                      tu_attr_i("dims", 8)};
    snprintf(what, sizeof what, "rope interleaved=%d", inter);
    vs_cpu(ctx, what, VNRT_OP_ROPE, in, 2, a, 3, 1, TOL_ELEM);
    tu_free_all(in, 2);
  }
  /* attention: GQA, causal with a window, sinks, more keys than one chunk, mixed dtypes. */
  struct {
    int64_t T, S, Hq, Hkv, D, Dv;
    int causal, window, sinks;
  } cases[3] = {
      {3, 70, 4, 2, 16, 24, 1, 0, 1}, {5, 5, 2, 1, 8, 8, 1, 3, 0}, {2, 130, 2, 2, 12, 70, 0, 0, 1}};
  for (int c = 0; c < 3; ++c) {
    tu_tensor in[4] = {
        tu_rnd(VNRT_F32, 3, cases[c].T, cases[c].Hq, cases[c].D, 0, 150 + c, -1.0f, 1.0f),
        tu_rnd(c == 1 ? VNRT_F16 : VNRT_F32, 3, cases[c].S, cases[c].Hkv, cases[c].D, 0, 160 + c,
               -1.0f, 1.0f),
        tu_rnd(c == 2 ? VNRT_BF16 : VNRT_F32, 3, cases[c].S, cases[c].Hkv, cases[c].Dv, 0, 170 + c,
               -1.0f, 1.0f),
        tu_rnd(VNRT_F32, 1, cases[c].Hq, 0, 0, 0, 180 + c, -1.0f, 1.0f)};
    vnrt_attr a[2] = {tu_attr_i("causal", cases[c].causal), tu_attr_i("window", cases[c].window)};
    snprintf(what, sizeof what, "attention case %d", c);
    vs_cpu(ctx, what, VNRT_OP_ATTENTION, in, cases[c].sinks ? 4 : 3, a, 2, 1, TOL_GEMM);
    tu_free_all(in, 4);
  }
  /* The KV-cache extensions (docs/ops.md): attention over the first kv_len rows, kv_write. */
  const int32_t kv_len[1] = {6}, pos1[1] = {3};
  tu_tensor kv[5] = {tu_rnd(VNRT_F32, 3, 2, 2, 8, 0, 190, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 3, 10, 1, 8, 0, 191, -1.0f, 1.0f),
                     tu_rnd(VNRT_F16, 3, 10, 1, 8, 0, 192, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 1, 2, 0, 0, 0, 193, -1.0f, 1.0f), tu_ints(1, 1, 0, kv_len)};
  vs_cpu(ctx, "attention kv_len", VNRT_OP_ATTENTION, kv, 5, NULL, 0, 1, TOL_GEMM);
  tu_free_all(kv, 5);
  tu_tensor kw[3] = {tu_rnd(VNRT_F16, 3, 6, 2, 3, 0, 194, -1.0f, 1.0f),
                     tu_rnd(VNRT_F16, 3, 2, 2, 3, 0, 195, -1.0f, 1.0f), tu_ints(1, 1, 0, pos1)};
  vs_cpu(ctx, "kv_write f16", VNRT_OP_KV_WRITE, kw, 3, NULL, 0, 1, 0.0);
  tu_free_all(kw, 3);
}

void tu_sweep_mhc_moe(vnrt_context *ctx, vnrt_device *target) {
  g_target = target;
  const int64_t T = 3, n = 4, C = 40;
  tu_tensor X = tu_rnd(VNRT_BF16, 3, T, n, C, 0, 200, -1.0f, 1.0f);
  tu_tensor pre[4] = {X, tu_rnd(VNRT_F32, 2, (n + 2) * n, n * C, 0, 0, 201, -0.2f, 0.2f),
                      tu_rnd(VNRT_F32, 1, 3, 0, 0, 0, 202, 0.5f, 1.5f),
                      tu_rnd(VNRT_F32, 1, (n + 2) * n, 0, 0, 0, 203, -0.5f, 0.5f)};
  vnrt_attr it = tu_attr_i("iters", 7);
  vs_cpu(ctx, "hc_pre", VNRT_OP_HC_PRE, pre, 4, &it, 1, 3, TOL_ELEM);
  tu_tensor head[4] = {X, tu_rnd(VNRT_F16, 2, n, n * C, 0, 0, 204, -0.2f, 0.2f),
                       tu_rnd(VNRT_F32, 1, 1, 0, 0, 0, 205, 0.5f, 1.5f),
                       tu_rnd(VNRT_F32, 1, n, 0, 0, 0, 206, -0.5f, 0.5f)};
  vs_cpu(ctx, "hc_head", VNRT_OP_HC_HEAD, head, 4, NULL, 0, 1, TOL_ELEM);
  /* More tokens than the matrix-vector kernel takes: the mixing GEMM is tiled. */
  tu_tensor head7[4] = {tu_rnd(VNRT_F32, 3, 7, n, C, 0, 211, -1.0f, 1.0f), head[1], head[2],
                        head[3]};
  vs_cpu(ctx, "hc_head 7 tokens", VNRT_OP_HC_HEAD, head7, 4, NULL, 0, 1, TOL_ELEM);
  tu_tensor_free(&head7[0]);
  tu_tensor post[4] = {X, tu_rnd(VNRT_BF16, 2, T, C, 0, 0, 207, -1.0f, 1.0f),
                       tu_rnd(VNRT_F32, 2, T, n, 0, 0, 208, 0.0f, 2.0f),
                       tu_rnd(VNRT_F32, 3, T, n, n, 0, 209, 0.0f, 1.0f)};
  vs_cpu(ctx, "hc_post", VNRT_OP_HC_POST, post, 4, NULL, 0, 1, TOL_ELEM);
  tu_tensor L = tu_rnd(VNRT_F16, 3, 5, n, n, 0, 210, -3.0f, 3.0f);
  vs_cpu(ctx, "sinkhorn", VNRT_OP_SINKHORN, &L, 1, &it, 1, 1, TOL_ELEM);
  tu_tensor_free(&L);
  for (int i = 1; i < 4; ++i) tu_tensor_free(&pre[i]), tu_tensor_free(&head[i]);
  for (int i = 1; i < 4; ++i) tu_tensor_free(&post[i]);
  tu_tensor_free(&X);

  const int64_t Tm = 4, E = 64;
  tu_tensor lg[2] = {tu_rnd(VNRT_F32, 2, Tm, E, 0, 0, 220, -4.0f, 4.0f),
                     tu_rnd(VNRT_F32, 1, E, 0, 0, 0, 221, -0.5f, 0.5f)};
  const char *scores[3] = {"sigmoid", "softmax", "sqrt_softplus"};
  for (int s = 0; s < 3; ++s) {
    vnrt_attr a[6] = {tu_attr_i("k", 6),
                      tu_attr_word("score", scores[s]),
                      tu_attr_i("n_group", s == 0 ? 8 : 1),
                      tu_attr_i("topk_group", s == 0 ? 4 : 1),
                      tu_attr_f("scale", 2.5),
                      tu_attr_i("norm", s != 2)};
    char what[96];
    snprintf(what, sizeof what, "moe_route %s", scores[s]);
    vs_cpu(ctx, what, VNRT_OP_MOE_ROUTE, lg, s == 1 ? 1 : 2, a, 6, 2, TOL_ELEM);
  }
  const int32_t tok[4] = {3, 0, 5, 3};
  int32_t table[6 * 3];
  for (int i = 0; i < 18; ++i) table[i] = (i * 37 + 5) % (int32_t)E;
  tu_tensor hr[3] = {lg[0], tu_ints(1, Tm, 0, tok), tu_ints(2, 6, 3, table)};
  vnrt_attr ha[2] = {tu_attr_word("score", "sqrt_softplus"), tu_attr_f("scale", 1.5)};
  vs_cpu(ctx, "moe_hash_route", VNRT_OP_MOE_HASH_ROUTE, hr, 3, ha, 2, 2, TOL_ELEM);
  tu_tensor_free(&hr[1]);
  tu_tensor_free(&hr[2]);
  tu_free_all(lg, 2);

  const int64_t Cf = 24, F = 10, Ef = 5, k = 2;
  const int32_t ex[8] = {0, 4, 2, 2, 1, 3, 4, 0};
  tu_tensor ffn[5] = {tu_rnd(VNRT_F16, 2, Tm, Cf, 0, 0, 230, -1.0f, 1.0f), tu_ints(2, Tm, k, ex),
                      tu_rnd(VNRT_F32, 2, Tm, k, 0, 0, 231, 0.1f, 1.0f),
                      tu_rnd(VNRT_BF16, 3, Ef, 2 * F, Cf, 0, 232, -0.3f, 0.3f),
                      tu_rnd(VNRT_F32, 3, Ef, Cf, F, 0, 233, -0.3f, 0.3f)};
  vnrt_attr lim = tu_attr_f("limit", 0.5);
  vs_cpu(ctx, "moe_ffn limit", VNRT_OP_MOE_FFN, ffn, 5, &lim, 1, 1, TOL_GEMM);
  vs_cpu(ctx, "moe_ffn", VNRT_OP_MOE_FFN, ffn, 5, NULL, 0, 1, TOL_GEMM);
  tu_free_all(ffn, 5);
}

void tu_sweep_engram(vnrt_context *ctx, vnrt_device *target) {
  g_target = target;
  /* ngram_hash with multipliers whose products wrap in 64 bits and negative token ids. */
  const int32_t ids[7] = {5, -3, 1000000007, 0, 42, 2147483647, -2147483647 - 1};
  const int32_t hist[2] = {17, -1};
  const int64_t mult[3] = {1, 6364136223846793005LL, -7046029254386353131LL};
  const int64_t primes[6] = {1000003, 999983, 7, 2147483647, 65537, 3};
  tu_tensor in[2] = {tu_ints(1, 7, 0, ids), tu_ints(1, 2, 0, hist)};
  vnrt_attr a[2] = {tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 6)};
  vs_cpu(ctx, "ngram_hash", VNRT_OP_NGRAM_HASH, in, 2, a, 2, 1, 0.0);
  tu_free_all(in, 2);

  const int32_t idx[6] = {0, 3, 2, 1, 4, 0};
  const int32_t offs[3] = {0, 5, 9};
  tu_tensor lk[3] = {tu_rnd(VNRT_F16, 2, 14, 6, 0, 0, 240, -1.0f, 1.0f), tu_ints(2, 2, 3, idx),
                     tu_ints(1, 3, 0, offs)};
  vs_cpu(ctx, "engram_lookup", VNRT_OP_ENGRAM_LOOKUP, lk, 3, NULL, 0, 1, 0.0);
  tu_free_all(lk, 3);

  const int64_t T = 3, M = 2, C = 40;
  tu_tensor gt[5] = {tu_rnd(VNRT_F32, 3, T, M, C, 0, 250, -1.0f, 1.0f),
                     tu_rnd(VNRT_BF16, 3, T, M, C, 0, 251, -1.0f, 1.0f),
                     tu_rnd(VNRT_F16, 2, T, C, 0, 0, 252, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 2, M, C, 0, 0, 253, 0.5f, 1.5f),
                     tu_rnd(VNRT_F32, 2, M, C, 0, 0, 254, 0.5f, 1.5f)};
  vs_cpu(ctx, "engram_gate", VNRT_OP_ENGRAM_GATE, gt, 5, NULL, 0, 1, TOL_ELEM);
  vnrt_attr nosq = tu_attr_i("sqrt_gate", 0);
  vs_cpu(ctx, "engram_gate no sqrt", VNRT_OP_ENGRAM_GATE, gt, 5, &nosq, 1, 1, TOL_ELEM);
  tu_free_all(gt, 5);

  const int64_t K = 4;
  for (int dil = 1; dil <= 2; ++dil) {
    const int64_t P = (K - 1) * dil;
    tu_tensor sc[4] = {tu_rnd(VNRT_BF16, 3, 2, M, C, 0, 260, -1.0f, 1.0f),
                       tu_rnd(VNRT_BF16, 3, P, M, C, 0, 261, -1.0f, 1.0f),
                       tu_rnd(VNRT_F32, 2, M, C, 0, 0, 262, 0.5f, 1.5f),
                       tu_rnd(VNRT_F32, 2, M * C, K, 0, 0, 263, -0.5f, 0.5f)};
    vnrt_attr da = tu_attr_i("dilation", dil);
    char what[64];
    snprintf(what, sizeof what, "short_conv dilation %d", dil);
    vs_cpu(ctx, what, VNRT_OP_SHORT_CONV, sc, 4, &da, 1, 2, TOL_ELEM);
    tu_free_all(sc, 4);
  }
}
