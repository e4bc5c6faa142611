/* CPU fast kernels of DeepSeek-V4's attention helpers (docs/ops.md, "DeepSeek-V4 attention"):
 * index_scores as per-token GEMMs of the indexer heads against blocks of entries, grouped_linear
 * as one GEMM per group (quantized weights: all groups in one dispatch), and kv_compress threaded
 * over channels. sparse_attention lives with attention (fast_attention.c). */
#include <string.h>

#include "fast_gemm.h"
#include "fast_quant.h"

/* ---- index_scores ------------------------------------------------------------------------ */

/* Entries and tokens per work item: the [IS_TC·Hi, IS_JB] scores of one item stay in L2, and
 * each block of k is packed once for IS_TC tokens (their q rows are consecutive). */
#define IS_JB 128
#define IS_TC 4

typedef struct iscore_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t T, Hi, Di, S, n_jb;
  int32_t ratio;
  float *scratch;
  int64_t slot_floats;
} iscore_job;

/* The entries token t sees: j < (pos[t] + 1) div ratio (none for a negative pos), at most S. */
static int64_t iscore_visible_(const iscore_job *j, int64_t t) {
  const int64_t pos = ((const int32_t *)j->a->in[3])[t];
  const int64_t vis = pos < 0 ? 0 : (pos + 1) / j->ratio;
  return vis < j->S ? vis : j->S;
}

/* s[t, e] = Σ_h w[t, h]·relu(q[t, h]·k[e]) for tokens [t0, t0 + tn) and entries of block
 * item % n_jb, −inf where e is not visible to t; the dot products are one GEMM of the tokens'
 * q rows [tn·Hi, Di] against the block's k rows. */
static void iscore_item_(void *user, int64_t item, int32_t slot) {
  const iscore_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t t0 = (item / j->n_jb) * IS_TC, j0 = (item % j->n_jb) * IS_JB;
  const int64_t tn = j->T - t0 < IS_TC ? j->T - t0 : IS_TC;
  const int64_t jend = j0 + IS_JB < j->S ? j0 + IS_JB : j->S;
  int64_t jn = 0; /* entries of the block the most-seeing token sees */
  for (int64_t t = t0; t < t0 + tn; ++t) {
    const int64_t v = iscore_visible_(j, t) - j0;
    if (v > jn) jn = v;
  }
  if (jn > jend - j0) jn = jend - j0;
  const int64_t Hi = j->Hi, Di = j->Di, rows = tn * Hi;
  float *c = j->scratch + slot * j->slot_floats; /* [IS_TC·Hi, IS_JB] */
  float *w = c + IS_TC * Hi * IS_JB;             /* [IS_TC·Hi] */
  float *qf = w + IS_TC * Hi;                    /* [IS_TC·Hi, Di] when q is not f32 */
  float *ws = qf + IS_TC * Hi * Di;              /* GEMM workspace */
  if (jn > 0) {
    const vnrt_dtype qdt = a->in_type[0]->dtype, kdt = a->in_type[1]->dtype;
    const float *q = (const float *)a->in[0] + t0 * Hi * Di;
    if (qdt != VNRT_F32) {
      cpu_fast_to_f32(j->isa,
                      (const char *)a->in[0] + (size_t)(t0 * Hi * Di) * vnrt_dtype_size(qdt), qdt,
                      rows * Di, qf);
      q = qf;
    }
    const vnrt_dtype wdt = a->in_type[2]->dtype;
    cpu_fast_to_f32(j->isa, (const char *)a->in[2] + (size_t)(t0 * Hi) * vnrt_dtype_size(wdt), wdt,
                    rows, w);
    const void *k = (const char *)a->in[1] + (size_t)(j0 * Di) * vnrt_dtype_size(kdt);
    cpu_gemm_nt_block(j->isa, q, Di, rows, k, kdt, Di, jn, Di, c, IS_JB, ws);
  }
  for (int64_t t = t0; t < t0 + tn; ++t) {
    float *s = (float *)a->out[0] + t * j->S;
    int64_t vn = iscore_visible_(j, t) - j0;
    vn = vn < 0 ? 0 : (vn > jn ? jn : vn);
    /* The heads' weighted sum in ascending h, the block's entries at a time (vectorisable). */
    float acc[IS_JB];
    for (int64_t e = 0; e < vn; ++e) acc[e] = 0.0f;
    for (int64_t h = 0; h < Hi; ++h) {
      const float wh = w[(t - t0) * Hi + h];
      const float *ch = c + ((t - t0) * Hi + h) * IS_JB;
      for (int64_t e = 0; e < vn; ++e) acc[e] += wh * (ch[e] > 0.0f ? ch[e] : 0.0f);
    }
    memcpy(s + j0, acc, sizeof(float) * (size_t)vn);
    for (int64_t e = j0 + vn; e < jend; ++e) s[e] = -INFINITY;
  }
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
                  .isa = cpu_fast_isa(a->pool),
                  .T = qt->dims[0],
                  .Hi = p->heads,
                  .Di = p->head_dim,
                  .S = kt->dims[0],
                  .ratio = p->ratio};
  j.n_jb = (j.S + IS_JB - 1) / IS_JB;
  const int64_t threads = cpu_pool_threads(a->pool);
  j.slot_floats = IS_TC * j.Hi * (IS_JB + 1 + j.Di) + CPU_GEMM_WS_FLOATS;
  vnrt_status st = cpu_fast_alloc(a, threads * j.slot_floats, &j.scratch);
  if (st != VNRT_OK) return st;
  cpu_fast_for_each(a->pool, (j.T + IS_TC - 1) / IS_TC * j.n_jb, iscore_item_, &j);
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
    cpu_fast_to_f32(cpu_fast_isa(a->pool), a->in[0], tx->dtype, rows * GK, xs);
    x = xs;
  }
  const size_t osz = vnrt_dtype_size(to->dtype), wsz = vnrt_dtype_size(tw->dtype);
  if (w.scale) st = cpu_qgemm_nt_groups(a, x, GK, rows, &w, G, a->out[0], to->dtype, GN);
  for (int64_t g = 0; !w.scale && g < G && st == VNRT_OK; ++g) {
    void *out = (char *)a->out[0] + (size_t)(g * N) * osz;
    const void *wg = (const char *)a->in[1] + (size_t)(g * N * K) * wsz;
    st = cpu_gemm_nt(a, x + g * K, GK, rows, wg, tw->dtype, K, N, K, out, to->dtype, GN);
  }
  cpu_fast_free(a, xs);
  return st;
}

/* ---- kv_compress ------------------------------------------------------------------------- */

/* Channels per work item: a window's slots are read as rows of this many contiguous channels,
 * and the running max, numerator and denominator of each channel stay in registers/L1. */
#define KVC_CB 256

typedef struct kvc_job {
  cpu_isa isa;
  const float *a, *z, *ape, *sa, *sz;
  float *entries;
  int64_t m, cd, d, pos0, w0, n_cb;
  int32_t overlap;
} kvc_job;

/* Position p's a row (at channel ch0) and z row without and with ape: from this run's inputs,
 * or from the state rows of the open window W0 (row m·overlap + p mod m) or W0 − 1 (p mod m),
 * where z already holds ape. *ape_row is NULL when z already includes it. */
static void kvc_rows_(const kvc_job *j, int64_t p, int64_t ch0, const float **ar, const float **zr,
                      const float **ape_row) {
  if (p >= j->pos0) {
    *ar = j->a + (p - j->pos0) * j->cd + ch0;
    *zr = j->z + (p - j->pos0) * j->cd + ch0;
    *ape_row = j->ape + (p % j->m) * j->cd + ch0;
    return;
  }
  const int64_t row = (p / j->m == j->w0 ? j->m * j->overlap : 0) + p % j->m;
  *ar = j->sa + row * j->cd + ch0;
  *zr = j->sz + row * j->cd + ch0;
  *ape_row = NULL;
}

#if defined(CPU_HAVE_AVX2_CODE)
/* mx[k] = max(mx[k], z[k] + e[k]) (e NULL: z[k]) for the first kn rounded down to 8; returns
 * that count. */
static CPU_AVX2 int64_t avx2_kvc_max_(const float *z, const float *e, int64_t kn, float *mx) {
  int64_t k = 0;
  for (; k + 8 <= kn; k += 8) {
    __m256 v = _mm256_loadu_ps(z + k);
    if (e) v = _mm256_add_ps(v, _mm256_loadu_ps(e + k));
    _mm256_storeu_ps(mx + k, _mm256_max_ps(_mm256_loadu_ps(mx + k), v));
  }
  return k;
}

/* With x = exp(z[k] (+ e[k]) − mx[k]): den[k] += x, num[k] += x·a[k], 8 channels at a time. */
static CPU_AVX2 int64_t avx2_kvc_acc_(const float *a, const float *z, const float *e, int64_t kn,
                                      const float *mx, float *num, float *den) {
  int64_t k = 0;
  for (; k + 8 <= kn; k += 8) {
    __m256 v = _mm256_loadu_ps(z + k);
    if (e) v = _mm256_add_ps(v, _mm256_loadu_ps(e + k));
    const __m256 x = avx2_exp(_mm256_sub_ps(v, _mm256_loadu_ps(mx + k)));
    _mm256_storeu_ps(den + k, _mm256_add_ps(_mm256_loadu_ps(den + k), x));
    _mm256_storeu_ps(num + k, _mm256_fmadd_ps(x, _mm256_loadu_ps(a + k), _mm256_loadu_ps(num + k)));
  }
  return k;
}
#endif

/* Entry w0 + i, channels [k0, k0 + kn) of d: per channel the softmax of z' over the window's
 * slots (A of window w − 1 and B of window w with overlap) weighting a. f32, slots in position
 * order, each channel's result independent of the item split. */
static void kvc_item_(void *user, int64_t item, int32_t slot) {
  (void)slot;
  const kvc_job *j = user;
  const int64_t i = item / j->n_cb, k0 = (item % j->n_cb) * KVC_CB;
  const int64_t kn = j->d - k0 < KVC_CB ? j->d - k0 : KVC_CB;
  const int64_t w = j->w0 + i, m = j->m;
  const int64_t first = j->overlap && w > 0 ? (w - 1) * m : w * m, end = (w + 1) * m;
  float mx[KVC_CB], num[KVC_CB], den[KVC_CB];
  for (int64_t k = 0; k < kn; ++k) mx[k] = -INFINITY, num[k] = 0.0f, den[k] = 0.0f;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t p = first; p < end; ++p) {
      const int64_t ch0 = (j->overlap && p >= w * m ? j->d : 0) + k0;
      const float *ar, *zr, *er;
      kvc_rows_(j, p, ch0, &ar, &zr, &er);
      int64_t k = 0;
#if defined(CPU_HAVE_AVX2_CODE)
      if (j->isa >= CPU_ISA_AVX2)
        k = pass ? avx2_kvc_acc_(ar, zr, er, kn, mx, num, den) : avx2_kvc_max_(zr, er, kn, mx);
#endif
      for (; k < kn; ++k) {
        const float z = er ? zr[k] + er[k] : zr[k];
        if (!pass) {
          mx[k] = z > mx[k] ? z : mx[k];
        } else {
          const float e = expf(z - mx[k]);
          den[k] += e;
          num[k] += e * ar[k];
        }
      }
    }
  }
  float *out = j->entries + i * j->d + k0;
  for (int64_t k = 0; k < kn; ++k) out[k] = den[k] > 0.0f ? num[k] / den[k] : 0.0f;
}

vnrt_status cpu_fast_kv_compress(const cpu_kernel_args *a) {
  const vnrt_kv_compress_params *p = &a->node->params->kv_compress;
  const int64_t t = a->in_type[0]->dims[0], cd = a->in_type[0]->dims[1];
  const int64_t m = p->ratio, d = p->width, n = a->out_type[0]->dims[0];
  const int32_t pos0 = *(const int32_t *)a->in[5];
  if (pos0 < 0 || m < 1 || d < 1 || cd != (1 + p->overlap) * d) {
    return cpu_ref_kv_compress(a); /* it reports what is wrong */
  }
  kvc_job j = {.isa = cpu_fast_isa(a->pool),
               .a = a->in[0],
               .z = a->in[1],
               .ape = a->in[2],
               .sa = a->in[3],
               .sz = a->in[4],
               .entries = a->out[0],
               .m = m,
               .cd = cd,
               .d = d,
               .pos0 = pos0,
               .w0 = pos0 / m,
               .n_cb = (d + KVC_CB - 1) / KVC_CB,
               .overlap = p->overlap};
  /* The windows that close in [pos0, pos0 + T): w0 .. (pos0 + T) / m − 1; then unused rows. */
  const int64_t end = (int64_t)pos0 + t, w_end = end / m, closed = w_end - j.w0;
  int32_t *entry_pos = a->out[1];
  for (int64_t i = 0; i < n; ++i) entry_pos[i] = i < closed ? (int32_t)((j.w0 + i) * m) : -1;
  if (n > closed) memset(j.entries + closed * d, 0, sizeof(float) * (size_t)((n - closed) * d));
  cpu_fast_for_each(a->pool, closed * j.n_cb, kvc_item_, &j);
  /* The state after the run: the rows of W' = w_end (and W' − 1 with overlap) for the
   * positions seen so far, the old rows for the others. The outputs may be the input states
   * themselves (VNRT_CAP_STATE_INPLACE): rows are written in order, and row r reads only rows
   * ≥ r of the old state (the A rows of W' − 1 come from the B rows of W0 = W' − 1), so
   * nothing is read after it is overwritten. */
  float *oa = a->out[2], *oz = a->out[3];
  const int64_t c = 1 + p->overlap;
  for (int64_t r = 0; r < c * m; ++r) {
    const int64_t pos = (r >= m * p->overlap ? w_end : w_end - 1) * m + r % m;
    const size_t bytes = sizeof(float) * (size_t)cd;
    if (pos < 0 || pos >= end) {
      if (oa != j.sa) memcpy(oa + r * cd, j.sa + r * cd, bytes);
      if (oz != j.sz) memcpy(oz + r * cd, j.sz + r * cd, bytes);
      continue;
    }
    const float *ar, *zr, *er;
    kvc_rows_(&j, pos, 0, &ar, &zr, &er);
    if (oa + r * cd != ar) memcpy(oa + r * cd, ar, bytes);
    /* A row already in place (a decode step's earlier positions, in-place states) stays: only
     * the run's own positions are written, not the whole window every step. */
    if (er) {
      for (int64_t ch = 0; ch < cd; ++ch) oz[r * cd + ch] = zr[ch] + er[ch];
    } else if (oz + r * cd != zr) {
      memcpy(oz + r * cd, zr, bytes);
    }
  }
  return VNRT_OK;
}
