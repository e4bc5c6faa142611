/* CPU fast kernel for short_conv (Engram's causal dilated convolution): f32 data, vectorised
 * over channels, one thread for a decode step's single token. */
#include <string.h>

#include "fast_gemm.h"

/* Outputs below which one thread does everything (a decode step is M·C = 4096 channels). */
#define SC_INLINE 32768

typedef struct sc_job {
  cpu_isa isa;
  int64_t T, M, C, K, P, dil;
  float eps;
  const float *u, *hist, *wn, *w;
  float *y;
  float *scale; /* [T, M]: 1/rms of each u row */
} sc_job;

/* Row r of Z (hist for r < P, else rms_norm(u[r - P])) at stream m: a pointer to hist, or z
 * formed into tmp. */
static const float *sc_z_row_(const sc_job *j, int64_t r, int64_t m, float *tmp) {
  const int64_t MC = j->M * j->C;
  if (r < j->P) return j->hist + r * MC + m * j->C;
  const int64_t t = r - j->P;
  const float *u = j->u + t * MC + m * j->C, *wn = j->wn + m * j->C;
  const float s = j->scale[t * j->M + m];
  for (int64_t c = 0; c < j->C; ++c) tmp[c] = u[c] * s * wn[c];
  return tmp;
}

#if defined(CPU_HAVE_AVX2_CODE)
/* y[c] = silu(acc[c]) + u[c] over n channels (exp by the polynomial of simd.h). */
static CPU_AVX2 void sc_silu_add_avx2_(const float *acc, const float *u, float *y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m256 v = _mm256_loadu_ps(acc + c);
    const __m256 e = avx2_exp(_mm256_sub_ps(zero, v));
    _mm256_storeu_ps(
        y + c, _mm256_add_ps(_mm256_div_ps(v, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + c)));
  }
  for (; c < n; ++c) y[c] = acc[c] / (1.0f + expf(-acc[c])) + u[c];
}
#endif

/* y for token t, stream m. tmp: 2·C floats of scratch. */
static void sc_row_(const sc_job *j, int64_t t, int64_t m, float *tmp) {
  const int64_t C = j->C, K = j->K, MC = j->M * C;
  float *acc = tmp, *z = tmp + C;
  const float *w = j->w + m * C * K; /* w[q, i] for q = m·C + c */
  for (int64_t i = 0; i < K; ++i) {
    const float *zr = sc_z_row_(j, j->P + t - (K - 1 - i) * j->dil, m, z);
    if (i == 0) {
      for (int64_t c = 0; c < C; ++c) acc[c] = w[c * K] * zr[c];
    } else {
      for (int64_t c = 0; c < C; ++c) acc[c] += w[c * K + i] * zr[c];
    }
  }
  const float *u = j->u + t * MC + m * C;
  float *y = j->y + t * MC + m * C;
#if defined(CPU_HAVE_AVX2_CODE)
  if (j->isa >= CPU_ISA_AVX2) {
    sc_silu_add_avx2_(acc, u, y, C);
    return;
  }
#endif
  for (int64_t c = 0; c < C; ++c) y[c] = acc[c] / (1.0f + expf(-acc[c])) + u[c];
}

typedef struct sc_par {
  const sc_job *j;
  float *scratch; /* per slot: 2·C floats */
} sc_par;

static void sc_item_(void *user, int64_t item, int32_t slot) {
  const sc_par *p = user;
  sc_row_(p->j, item / p->j->M, item % p->j->M, p->scratch + slot * 2 * p->j->C);
}

vnrt_status cpu_fast_short_conv(const cpu_kernel_args *a) {
  const vnrt_tensor_type *ut = a->in_type[0], *ht = a->in_type[1], *wt = a->in_type[3];
  const int64_t dil = a->node->params->short_conv.dilation;
  if (ut->rank != 3 || wt->rank != 2 || dil < 1 || ut->dtype != VNRT_F32 || ht->dtype != VNRT_F32 ||
      a->in_type[2]->dtype != VNRT_F32 || wt->dtype != VNRT_F32 ||
      a->out_type[0]->dtype != VNRT_F32 || a->out_type[1]->dtype != VNRT_F32) {
    return cpu_ref_short_conv(a);
  }
  sc_job j = {
      .isa = cpu_fast_isa(a->pool),
      .T = ut->dims[0],
      .M = ut->dims[1],
      .C = ut->dims[2],
      .K = wt->dims[1],
      .dil = dil,
      .eps = (float)a->node->params->short_conv.eps,
      .u = a->in[0],
      .hist = a->in[1],
      .wn = a->in[2],
      .w = a->in[3],
      .y = a->out[0],
  };
  j.P = (j.K - 1) * dil;
  const int64_t MC = j.M * j.C;
  /* Shapes the reference rejects, and empty ones, go to it (one message, one place). */
  if (j.K < 1 || j.T < 1 || j.C < 1 || wt->dims[0] != MC ||
      vnrt_tensor_type_numel(ht) != j.P * MC || vnrt_tensor_type_numel(a->in_type[2]) != MC ||
      vnrt_tensor_type_numel(a->out_type[0]) != j.T * MC ||
      vnrt_tensor_type_numel(a->out_type[1]) != j.P * MC) {
    return cpu_ref_short_conv(a);
  }
  const int inline_ = j.T * MC < SC_INLINE;
  const int64_t threads = inline_ ? 1 : cpu_pool_threads(a->pool);
  float *mem = NULL;
  vnrt_status st = cpu_fast_alloc(a, j.T * j.M + threads * 2 * j.C + j.C, &mem);
  if (st != VNRT_OK) return st;
  j.scale = mem;
  for (int64_t r = 0; r < j.T * j.M; ++r) {
    const float ss = cpu_fast_sumsq(j.isa, j.u + r * j.C, j.C);
    j.scale[r] = 1.0f / sqrtf(ss / (float)j.C + j.eps);
  }
  sc_par par = {&j, mem + j.T * j.M};
  if (inline_) {
    for (int64_t it = 0; it < j.T * j.M; ++it) sc_item_(&par, it, 0);
  } else {
    cpu_fast_for_each(a->pool, j.T * j.M, sc_item_, &par);
  }
  /* hist_out = the last P rows of Z, in increasing order: with T >= 1 row r reads row T + r
   * of Z, so the state may be updated in place (hist_out aliasing hist). */
  float *ho = a->out[1], *tmp = mem + j.T * j.M + threads * 2 * j.C;
  for (int64_t r = 0; r < j.P; ++r) {
    const int64_t zr = j.T + r;
    if (zr < j.P) {
      memmove(ho + r * MC, j.hist + zr * MC, (size_t)MC * sizeof(float));
    } else {
      for (int64_t m = 0; m < j.M; ++m) {
        const float *z = sc_z_row_(&j, zr, m, tmp);
        memcpy(ho + r * MC + m * j.C, z, (size_t)j.C * sizeof(float));
      }
    }
  }
  cpu_fast_free(a, mem);
  return VNRT_OK;
}
