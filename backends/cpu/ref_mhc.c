/* CPU reference kernels for mHC (hc_expand, hc_pre, hc_post, hc_head, sinkhorn): docs/ops.md
 * implemented literally in f32, with the DeepSeek-V4 orderings (fn rows [pre, post, comb],
 * row-softmax Sinkhorn start with eps in every divide, comb applied transposed). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"

static const char *node_name(const cpu_kernel_args *a) {
  return (a->node && a->node->name) ? a->node->name : "?";
}

static float sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Scratch floats from the host allocator; a zero-sized request still gets a valid pointer. */
static vnrt_status scratch_alloc(const cpu_kernel_args *a, const char *op, int64_t count,
                                 float **out) {
  *out = NULL;
  size_t bytes = (size_t)(count > 0 ? count : 1) * sizeof(float);
  *out = (float *)a->host->alloc(a->host->core, bytes);
  if (!*out) {
    return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_MEMORY,
                          "%s '%s': cannot allocate %llu bytes of scratch", op, node_name(a),
                          (unsigned long long)bytes);
  }
  return VNRT_OK;
}

/* In place on M[n, n], which holds the logits L on entry: row softmax, +eps, column
 * normalise, then iters-1 rounds of (row, column) normalisation; every divide adds eps.
 * Shared with the fast hc_pre kernel (cpu_kernels.h), so both take the same steps. */
void cpu_sinkhorn_inplace(float *M, int64_t n, int64_t iters, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    float *row = M + i * n;
    float mx = row[0];
    for (int64_t j = 1; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      row[j] = expf(row[j] - mx);
      sum += row[j];
    }
    for (int64_t j = 0; j < n; ++j) row[j] = row[j] / sum + eps;
  }
  for (int64_t it = 0; it < (iters > 1 ? iters : 1); ++it) {
    if (it > 0) {
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0.0f;
        for (int64_t j = 0; j < n; ++j) sum += M[i * n + j];
        for (int64_t j = 0; j < n; ++j) M[i * n + j] /= (sum + eps);
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) sum += M[i * n + j];
      for (int64_t i = 0; i < n; ++i) M[i * n + j] /= (sum + eps);
    }
  }
}

/* mix[r] = (fn[r] · f) · rsqrt(mean(f²) + norm_eps) for the n·C values f of token t of X. */
static void hc_mix(const void *X, vnrt_dtype xdt, int64_t t, int64_t nc, const void *fn,
                   vnrt_dtype fdt, int64_t rows, float norm_eps, float *mix) {
  float sumsq = 0.0f;
  for (int64_t i = 0; i < nc; ++i) {
    float v = cpu_load_f32(X, xdt, t * nc + i);
    sumsq += v * v;
  }
  float inv_rms = 1.0f / sqrtf(sumsq / (float)nc + norm_eps);
  for (int64_t r = 0; r < rows; ++r) {
    float dot = 0.0f;
    for (int64_t i = 0; i < nc; ++i) {
      dot += cpu_load_f32(fn, fdt, r * nc + i) * cpu_load_f32(X, xdt, t * nc + i);
    }
    mix[r] = dot * inv_rms;
  }
}

/* x[t] = Σ_j w[j]·X[t, j]. */
static void hc_collapse(const void *X, vnrt_dtype xdt, int64_t t, int64_t n, int64_t C,
                        const float *w, void *x, vnrt_dtype odt) {
  for (int64_t c = 0; c < C; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; ++j) acc += w[j] * cpu_load_f32(X, xdt, (t * n + j) * C + c);
    cpu_store_f32(x, odt, t * C + c, acc);
  }
}

/* Tokens per chunk so that one chunk does at least ~32k multiply-adds. */
static int64_t grain_for(int64_t work_per_token) {
  int64_t g = 32768 / (work_per_token > 0 ? work_per_token : 1);
  return g > 0 ? g : 1;
}

/* ---- hc_expand ------------------------------------------------------------------------- */

vnrt_status cpu_ref_hc_expand(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *ot = a->out_type[0];
  int64_t C = xt->rank > 0 ? xt->dims[xt->rank - 1] : 1;
  int64_t n = ot->rank >= 2 ? ot->dims[ot->rank - 2] : 1;
  int64_t T = C > 0 ? vnrt_numel(xt) / C : 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t c = 0; c < C; ++c) {
        cpu_store_f32(a->out[0], ot->dtype, (t * n + j) * C + c,
                      cpu_load_f32(a->in[0], xt->dtype, t * C + c));
      }
    }
  }
  return VNRT_OK;
}

/* ---- hc_pre ---------------------------------------------------------------------------- */

typedef struct hc_pre_job {
  const cpu_kernel_args *a;
  int64_t n, C, iters;
  float eps, norm_eps;
  float *scratch; /* [T, (n+2)·n] mix values */
} hc_pre_job;

static void hc_pre_range(void *user, int64_t begin, int64_t end) {
  const hc_pre_job *job = (const hc_pre_job *)user;
  const cpu_kernel_args *a = job->a;
  const int64_t n = job->n, C = job->C, rows = (n + 2) * n;
  vnrt_dtype xdt = a->in_type[0]->dtype, fdt = a->in_type[1]->dtype;
  vnrt_dtype sdt = a->in_type[2]->dtype, bdt = a->in_type[3]->dtype;
  float s_pre = cpu_load_f32(a->in[2], sdt, 0);
  float s_post = cpu_load_f32(a->in[2], sdt, 1);
  float s_comb = cpu_load_f32(a->in[2], sdt, 2);
  for (int64_t t = begin; t < end; ++t) {
    float *mix = job->scratch + t * rows;
    hc_mix(a->in[0], xdt, t, n * C, a->in[1], fdt, rows, job->norm_eps, mix);
    /* fn/base rows: [0, n) pre, [n, 2n) post, [2n, 2n + n·n) comb (row-major). */
    for (int64_t j = 0; j < n; ++j) {
      mix[j] = sigmoid_f32(mix[j] * s_pre + cpu_load_f32(a->in[3], bdt, j)) + job->eps;
      float post = 2.0f * sigmoid_f32(mix[n + j] * s_post + cpu_load_f32(a->in[3], bdt, n + j));
      cpu_store_f32(a->out[1], a->out_type[1]->dtype, t * n + j, post);
    }
    float *L = mix + 2 * n;
    for (int64_t r = 0; r < n * n; ++r) {
      L[r] = L[r] * s_comb + cpu_load_f32(a->in[3], bdt, 2 * n + r);
    }
    cpu_sinkhorn_inplace(L, n, job->iters, job->eps);
    for (int64_t r = 0; r < n * n; ++r) {
      cpu_store_f32(a->out[2], a->out_type[2]->dtype, t * n * n + r, L[r]);
    }
    hc_collapse(a->in[0], xdt, t, n, C, mix, a->out[0], a->out_type[0]->dtype);
  }
}

vnrt_status cpu_ref_hc_pre(const cpu_kernel_args *a) {
  const vnrt_tensor_type *Xt = a->in_type[0];
  hc_pre_job job = {
      .a = a,
      .n = Xt->dims[Xt->rank - 2],
      .C = Xt->dims[Xt->rank - 1],
      .iters = a->node->params->hc_pre.iters,
      .eps = (float)a->node->params->hc_pre.eps,
      .norm_eps = (float)a->node->params->hc_pre.norm_eps,
  };
  int64_t per_token = job.n * job.C;
  int64_t T = per_token > 0 ? vnrt_numel(Xt) / per_token : 0;
  if (T == 0) return VNRT_OK;
  int64_t rows = (job.n + 2) * job.n;
  vnrt_status st = scratch_alloc(a, "hc_pre", T * rows, &job.scratch);
  if (st != VNRT_OK) return st;
  cpu_pool_parallel_for(a->pool, T, grain_for(rows * per_token), hc_pre_range, &job);
  a->host->free(a->host->core, job.scratch);
  return VNRT_OK;
}

/* ---- hc_post --------------------------------------------------------------------------- */

typedef struct hc_post_job {
  const cpu_kernel_args *a;
  int64_t n, C;
} hc_post_job;

static void hc_post_range(void *user, int64_t begin, int64_t end) {
  const hc_post_job *job = (const hc_post_job *)user;
  const cpu_kernel_args *a = job->a;
  const int64_t n = job->n, C = job->C;
  vnrt_dtype xdt = a->in_type[0]->dtype, ydt = a->in_type[1]->dtype;
  vnrt_dtype pdt = a->in_type[2]->dtype, cdt = a->in_type[3]->dtype;
  vnrt_dtype odt = a->out_type[0]->dtype;
  for (int64_t t = begin; t < end; ++t) {
    for (int64_t k = 0; k < n; ++k) {
      float post = cpu_load_f32(a->in[2], pdt, t * n + k);
      for (int64_t c = 0; c < C; ++c) {
        float acc = post * cpu_load_f32(a->in[1], ydt, t * C + c);
        /* Transposed: stream k gathers comb[t, j, k] over the first index j. */
        for (int64_t j = 0; j < n; ++j) {
          acc += cpu_load_f32(a->in[3], cdt, (t * n + j) * n + k) *
                 cpu_load_f32(a->in[0], xdt, (t * n + j) * C + c);
        }
        cpu_store_f32(a->out[0], odt, (t * n + k) * C + c, acc);
      }
    }
  }
}

vnrt_status cpu_ref_hc_post(const cpu_kernel_args *a) {
  const vnrt_tensor_type *Xt = a->in_type[0];
  hc_post_job job = {.a = a, .n = Xt->dims[Xt->rank - 2], .C = Xt->dims[Xt->rank - 1]};
  int64_t per_token = job.n * job.C;
  int64_t T = per_token > 0 ? vnrt_numel(Xt) / per_token : 0;
  if (T == 0) return VNRT_OK;
  cpu_pool_parallel_for(a->pool, T, grain_for(per_token * job.n), hc_post_range, &job);
  return VNRT_OK;
}

/* ---- hc_head --------------------------------------------------------------------------- */

typedef struct hc_head_job {
  const cpu_kernel_args *a;
  int64_t n, C;
  float eps, norm_eps;
  float *scratch; /* [T, n] weights */
} hc_head_job;

static void hc_head_range(void *user, int64_t begin, int64_t end) {
  const hc_head_job *job = (const hc_head_job *)user;
  const cpu_kernel_args *a = job->a;
  const int64_t n = job->n, C = job->C;
  vnrt_dtype xdt = a->in_type[0]->dtype, fdt = a->in_type[1]->dtype;
  vnrt_dtype bdt = a->in_type[3]->dtype;
  float scale = cpu_load_f32(a->in[2], a->in_type[2]->dtype, 0);
  for (int64_t t = begin; t < end; ++t) {
    float *w = job->scratch + t * n;
    hc_mix(a->in[0], xdt, t, n * C, a->in[1], fdt, n, job->norm_eps, w);
    for (int64_t j = 0; j < n; ++j) {
      w[j] = sigmoid_f32(w[j] * scale + cpu_load_f32(a->in[3], bdt, j)) + job->eps;
    }
    hc_collapse(a->in[0], xdt, t, n, C, w, a->out[0], a->out_type[0]->dtype);
  }
}

vnrt_status cpu_ref_hc_head(const cpu_kernel_args *a) {
  const vnrt_tensor_type *Xt = a->in_type[0];
  hc_head_job job = {
      .a = a,
      .n = Xt->dims[Xt->rank - 2],
      .C = Xt->dims[Xt->rank - 1],
      .eps = (float)a->node->params->hc_head.eps,
      .norm_eps = (float)a->node->params->hc_head.norm_eps,
  };
  int64_t per_token = job.n * job.C;
  int64_t T = per_token > 0 ? vnrt_numel(Xt) / per_token : 0;
  if (T == 0) return VNRT_OK;
  vnrt_status st = scratch_alloc(a, "hc_head", T * job.n, &job.scratch);
  if (st != VNRT_OK) return st;
  cpu_pool_parallel_for(a->pool, T, grain_for(job.n * per_token), hc_head_range, &job);
  a->host->free(a->host->core, job.scratch);
  return VNRT_OK;
}

/* ---- sinkhorn -------------------------------------------------------------------------- */

vnrt_status cpu_ref_sinkhorn(const cpu_kernel_args *a) {
  const vnrt_tensor_type *Lt = a->in_type[0];
  int64_t n = Lt->dims[Lt->rank - 1];
  int64_t batch = n > 0 ? vnrt_numel(Lt) / (n * n) : 0;
  if (batch == 0) return VNRT_OK;
  int64_t iters = a->node->params->sinkhorn.iters;
  float eps = (float)a->node->params->sinkhorn.eps;
  float *M = NULL;
  vnrt_status st = scratch_alloc(a, "sinkhorn", n * n, &M);
  if (st != VNRT_OK) return st;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t r = 0; r < n * n; ++r) M[r] = cpu_load_f32(a->in[0], Lt->dtype, b * n * n + r);
    cpu_sinkhorn_inplace(M, n, iters, eps);
    for (int64_t r = 0; r < n * n; ++r) {
      cpu_store_f32(a->out[0], a->out_type[0]->dtype, b * n * n + r, M[r]);
    }
  }
  a->host->free(a->host->core, M);
  return VNRT_OK;
}
