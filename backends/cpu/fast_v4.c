/* CPU fast kernels of DeepSeek-V4's attention helpers (docs/ops.md, "DeepSeek-V4 attention"):
 * index_scores as per-token GEMMs of the indexer heads against blocks of entries, grouped_linear
 * as one GEMM (float or quantized weights) per group, and kv_compress threaded over channels.
 * sparse_attention lives with attention (fast_attention.c). */
#include <string.h>

#include "fast_gemm.h"
#include "fast_quant.h"

/* ---- index_scores ------------------------------------------------------------------------ */

/* Entries per work item: the [Hi, IS_JB] scores of one item stay in L2. */
#define IS_JB 128

typedef struct iscore_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t T, Hi, Di, S, n_jb;
  int32_t ratio;
  float *scratch;
  int64_t slot_floats;
} iscore_job;

/* s[t, j] = Σ_h w[t, h]·relu(q[t, h]·k[j]) for the visible j of block item % n_jb, −inf for the
 * others; the dot products are the GEMM q[t][Hi, Di]·k[j0 .. j0+jn)ᵀ. */
static void iscore_item_(void *user, int64_t item, int32_t slot) {
  const iscore_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t t = item / j->n_jb, j0 = (item % j->n_jb) * IS_JB;
  const int64_t jend = j0 + IS_JB < j->S ? j0 + IS_JB : j->S;
  const int64_t pos = ((const int32_t *)a->in[3])[t];
  int64_t vis = pos < 0 ? 0 : (pos + 1) / j->ratio;
  if (vis > jend) vis = jend;
  float *s = (float *)a->out[0] + t * j->S;
  for (int64_t e = vis > j0 ? vis : j0; e < jend; ++e) s[e] = -INFINITY;
  const int64_t jn = vis - j0;
  if (jn <= 0) return;
  const int64_t Hi = j->Hi, Di = j->Di;
  float *c = j->scratch + slot * j->slot_floats; /* [Hi, IS_JB] */
  float *w = c + Hi * IS_JB;                     /* [Hi] */
  float *qf = w + Hi;                            /* [Hi, Di] when q is not f32 */
  float *ws = qf + Hi * Di;                      /* GEMM workspace */
  const vnrt_dtype qdt = a->in_type[0]->dtype, kdt = a->in_type[1]->dtype;
  const float *q = (const float *)a->in[0] + t * Hi * Di;
  if (qdt != VNRT_F32) {
    cpu_fast_to_f32(j->isa, (const char *)a->in[0] + (size_t)(t * Hi * Di) * vnrt_dtype_size(qdt),
                    qdt, Hi * Di, qf);
    q = qf;
  }
  const vnrt_dtype wdt = a->in_type[2]->dtype;
  cpu_fast_to_f32(j->isa, (const char *)a->in[2] + (size_t)(t * Hi) * vnrt_dtype_size(wdt), wdt, Hi,
                  w);
  const void *k = (const char *)a->in[1] + (size_t)(j0 * Di) * vnrt_dtype_size(kdt);
  cpu_gemm_nt_block(j->isa, q, Di, Hi, k, kdt, Di, jn, Di, c, IS_JB, ws);
  /* The heads' weighted sum in ascending h, IS_JB entries at a time (vectorisable). */
  float acc[IS_JB];
  for (int64_t e = 0; e < jn; ++e) acc[e] = 0.0f;
  for (int64_t h = 0; h < Hi; ++h) {
    const float wh = w[h];
    const float *ch = c + h * IS_JB;
    for (int64_t e = 0; e < jn; ++e) acc[e] += wh * (ch[e] > 0.0f ? ch[e] : 0.0f);
  }
  memcpy(s + j0, acc, sizeof(float) * (size_t)jn);
}

vnrt_status cpu_fast_index_scores(const cpu_kernel_args *a) {
  const vnrt_index_scores_params *p = &a->node->params->index_scores;
  const vnrt_tensor_type *qt = a->in_type[0], *kt = a->in_type[1], *ot = a->out_type[0];
  if (cpu_outputs_empty(a)) return VNRT_OK;
  if (qt->rank != 3 || kt->rank != 2 || qt->dims[1] != p->heads || qt->dims[2] != p->head_dim ||
      kt->dims[1] != p->head_dim || p->ratio < 1 || ot->dtype != VNRT_F32) {
    return cpu_ref_index_scores(a); /* it reports what is wrong */
  }
  iscore_job j = {.a = a,
                  .isa = cpu_fast_isa(),
                  .T = qt->dims[0],
                  .Hi = p->heads,
                  .Di = p->head_dim,
                  .S = kt->dims[0],
                  .ratio = p->ratio};
  j.n_jb = (j.S + IS_JB - 1) / IS_JB;
  const int64_t threads = cpu_pool_threads(a->pool);
  j.slot_floats = j.Hi * (IS_JB + 1 + j.Di) + CPU_GEMM_WS_FLOATS;
  vnrt_status st = cpu_fast_alloc(a, threads * j.slot_floats, &j.scratch);
  if (st != VNRT_OK) return st;
  cpu_fast_for_each(a->pool, j.T * j.n_jb, iscore_item_, &j);
  cpu_fast_free(a, j.scratch);
  return VNRT_OK;
}

/* ---- grouped_linear ---------------------------------------------------------------------- */

/* Group g is a linear of x's columns [g·K, (g+1)·K) with w's rows [g·N, (g+1)·N) into y's
 * columns [g·N, (g+1)·N): the GEMM cores take both as strided views (a quantized w's block
 * scales are found by absolute row, so a group need not start on a block). */
vnrt_status cpu_fast_grouped_linear(const cpu_kernel_args *a) {
  const vnrt_grouped_linear_params *p = &a->node->params->grouped_linear;
  const vnrt_tensor_type *tx = a->in_type[0], *tw = a->in_type[1], *to = a->out_type[0];
  if (cpu_outputs_empty(a)) return VNRT_OK;
  const int64_t G = p->groups;
  if (G < 1 || tx->rank < 1 || tw->rank != 2 || tw->dims[0] % G != 0 ||
      tx->dims[tx->rank - 1] != G * tw->dims[1] || tw->dims[1] <= 0 ||
      vnrt_tensor_type_numel(tx) == 0) {
    return cpu_ref_grouped_linear(a);
  }
  const int64_t N = tw->dims[0] / G, K = tw->dims[1], GK = G * K, GN = G * N;
  const int64_t rows = vnrt_tensor_type_numel(tx) / GK;
  cpu_weight w;
  vnrt_status st = cpu_weight_init(a, 1, &p->w, &w);
  if (st != VNRT_OK) return st;
  const float *x = a->in[0];
  float *xs = NULL;
  if (tx->dtype != VNRT_F32) {
    st = cpu_fast_alloc(a, rows * GK, &xs);
    if (st != VNRT_OK) return st;
    cpu_fast_to_f32(cpu_fast_isa(), a->in[0], tx->dtype, rows * GK, xs);
    x = xs;
  }
  const size_t osz = vnrt_dtype_size(to->dtype), wsz = vnrt_dtype_size(tw->dtype);
  for (int64_t g = 0; g < G && st == VNRT_OK; ++g) {
    void *out = (char *)a->out[0] + (size_t)(g * N) * osz;
    if (w.scale) {
      st = cpu_qgemm_nt_rows(a, x + g * K, GK, rows, &w, g * N, N, out, to->dtype, GN);
    } else {
      const void *wg = (const char *)a->in[1] + (size_t)(g * N * K) * wsz;
      st = cpu_gemm_nt(a, x + g * K, GK, rows, wg, tw->dtype, K, N, K, out, to->dtype, GN);
    }
  }
  cpu_fast_free(a, xs);
  return st;
}
