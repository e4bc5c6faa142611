/* Reference kernels of the DeepSeek-V4 attention ops (docs/ops.md, "DeepSeek-V4 attention"):
 * kv_compress, kv_scatter, index_scores, sparse_attention and grouped_linear. Plain loops in
 * the order the contract states them; sums of products in f32 as the other references, the
 * softmax sums in double. Every run-time index is checked before anything is written. */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_pool.h"

/* The widest head sparse_attention's reference holds on the stack (V4's D is 512). */
#define V4_MAX_D 4096

static vnrt_status v4_error(const cpu_kernel_args *a, vnrt_status st, const char *what) {
  return a->host->error(a->host->core, st, "%s '%s': %s", vnrt_op_name(a->node->op), a->node->name,
                        what);
}

static int32_t read_pos0(const cpu_kernel_args *a, int32_t input) {
  return *(const int32_t *)a->in[input];
}

/* ---- kv_compress ----------------------------------------------------------------------- */

/* Where the values of position p live in one kv_compress call: a and z rows of this run (z
 * with ape added on the fly), or the rows of the open window W0 (and, with overlap, W0 - 1) of
 * the state inputs. */
typedef struct compress_src {
  const float *a, *z, *ape, *sa, *sz;
  int64_t m, cd, pos0, w0;
  int32_t overlap;
} compress_src;

static float src_a(const compress_src *s, int64_t p, int64_t ch) {
  if (p >= s->pos0) return s->a[(p - s->pos0) * s->cd + ch];
  const int64_t row = (p / s->m == s->w0 ? s->m * s->overlap : 0) + p % s->m;
  return s->sa[row * s->cd + ch];
}

static float src_z(const compress_src *s, int64_t p, int64_t ch) {
  if (p >= s->pos0) return s->z[(p - s->pos0) * s->cd + ch] + s->ape[(p % s->m) * s->cd + ch];
  const int64_t row = (p / s->m == s->w0 ? s->m * s->overlap : 0) + p % s->m;
  return s->sz[row * s->cd + ch];
}

/* Entry w, channel k: the per-channel softmax of z' over the window's slots, weighting a. */
static float pool_entry(const compress_src *s, int64_t w, int64_t k, int64_t d) {
  /* slots: (position, channel) pairs; with overlap, A = channel k of window w - 1 (absent for
   * w = 0) and B = channel d + k of window w */
  double mx = -INFINITY;
  const int64_t first = s->overlap && w > 0 ? (w - 1) * s->m : w * s->m;
  const int64_t end = (w + 1) * s->m;
  for (int64_t p = first; p < end; ++p) {
    const int64_t ch = s->overlap && p >= w * s->m ? d + k : k;
    const double z = src_z(s, p, ch);
    if (z > mx) mx = z;
  }
  double num = 0.0, den = 0.0;
  for (int64_t p = first; p < end; ++p) {
    const int64_t ch = s->overlap && p >= w * s->m ? d + k : k;
    const double e = exp((double)src_z(s, p, ch) - mx);
    den += e;
    num += e * (double)src_a(s, p, ch);
  }
  return den > 0.0 ? (float)(num / den) : 0.0f;
}

vnrt_status cpu_ref_kv_compress(const cpu_kernel_args *a) {
  const vnrt_kv_compress_params *p = &a->node->params->kv_compress;
  const int64_t t = a->in_type[0]->dims[0], cd = a->in_type[0]->dims[1];
  const int64_t m = p->ratio, d = p->width, n = a->out_type[0]->dims[0];
  const int32_t pos0 = read_pos0(a, 5);
  if (pos0 < 0) return v4_error(a, VNRT_ERROR_OUT_OF_RANGE, "pos0 is negative");
  const compress_src s = {
      .a = a->in[0],
      .z = a->in[1],
      .ape = a->in[2],
      .sa = a->in[3],
      .sz = a->in[4],
      .m = m,
      .cd = cd,
      .pos0 = pos0,
      .w0 = pos0 / m,
      .overlap = p->overlap,
  };
  float *entries = a->out[0];
  int32_t *entry_pos = a->out[1];
  /* the windows that close in [pos0, pos0 + T): w0 ... (pos0 + T) / m - 1 */
  const int64_t w_end = ((int64_t)pos0 + t) / m;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t w = s.w0 + i;
    if (w < w_end) {
      for (int64_t k = 0; k < d; ++k) entries[i * d + k] = pool_entry(&s, w, k, d);
      entry_pos[i] = (int32_t)(w * m);
    } else {
      memset(entries + i * d, 0, (size_t)d * sizeof(float));
      entry_pos[i] = -1;
    }
  }
  /* The state of the window open after this run (W' = w_end) and, with overlap, of W' - 1.
   * Row r reads only rows >= r of the old state, so the outputs may be the input states
   * themselves (the executor's in-place state updates, VNRT_CAP_STATE_INPLACE). */
  const float *sa = a->in[3], *sz = a->in[4];
  float *oa = a->out[2], *oz = a->out[3];
  const int64_t c = 1 + p->overlap, end = (int64_t)pos0 + t;
  for (int64_t r = 0; r < c * m; ++r) {
    const bool cur = r >= m * p->overlap;
    const int64_t pos = (cur ? w_end : w_end - 1) * m + r % m;
    const bool have = pos >= 0 && pos < end;
    for (int64_t ch = 0; ch < cd; ++ch) {
      oa[r * cd + ch] = have ? src_a(&s, pos, ch) : sa[r * cd + ch];
      oz[r * cd + ch] = have ? src_z(&s, pos, ch) : sz[r * cd + ch];
    }
  }
  return VNRT_OK;
}

/* ---- kv_scatter ------------------------------------------------------------------------ */

vnrt_status cpu_ref_kv_scatter(const cpu_kernel_args *a) {
  const vnrt_tensor_type *ct = a->in_type[0], *rt = a->in_type[1];
  const int64_t rows = ct->dims[0], n = rt->dims[0], div = a->node->params->kv_scatter.div;
  const int32_t *pos = a->in[2];
  for (int64_t i = 0; i < n; ++i) {
    if (pos[i] >= 0 && pos[i] / div >= rows) {
      return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                            "kv_scatter '%s': row %lld (pos %d / %lld) of rows[%lld] is outside "
                            "the cache's %lld rows",
                            a->node->name, (long long)(pos[i] / div), (int)pos[i], (long long)div,
                            (long long)i, (long long)rows);
    }
  }
  const size_t row_bytes = rows ? vnrt_tensor_type_bytes(ct) / (size_t)rows : 0;
  if (a->out[0] != a->in[0]) memcpy(a->out[0], a->in[0], vnrt_tensor_type_bytes(ct));
  for (int64_t i = 0; i < n; ++i) {
    if (pos[i] < 0) continue;
    memcpy((char *)a->out[0] + (size_t)(pos[i] / div) * row_bytes,
           (const char *)a->in[1] + (size_t)i * row_bytes, row_bytes);
  }
  return VNRT_OK;
}

/* ---- index_scores ---------------------------------------------------------------------- */

vnrt_status cpu_ref_index_scores(const cpu_kernel_args *a) {
  const vnrt_index_scores_params *p = &a->node->params->index_scores;
  const vnrt_tensor_type *qt = a->in_type[0], *kt = a->in_type[1], *wt = a->in_type[2];
  const int64_t t = qt->dims[0], hi = p->heads, di = p->head_dim, s = kt->dims[0];
  const int32_t *pos = a->in[3];
  float *out = a->out[0];
  for (int64_t i = 0; i < t; ++i) {
    /* entry j is visible when its whole window has ended: j < (pos + 1) div ratio */
    int64_t visible = pos[i] >= 0 ? ((int64_t)pos[i] + 1) / p->ratio : 0;
    if (visible > s) visible = s;
    for (int64_t j = 0; j < s; ++j) {
      if (j >= visible) {
        out[i * s + j] = -INFINITY;
        continue;
      }
      float acc = 0.0f;
      for (int64_t h = 0; h < hi; ++h) {
        float dot = 0.0f;
        for (int64_t c = 0; c < di; ++c) {
          dot += cpu_load_f32(a->in[0], qt->dtype, (i * hi + h) * di + c) *
                 cpu_load_f32(a->in[1], kt->dtype, j * di + c);
        }
        acc += cpu_load_f32(a->in[2], wt->dtype, i * hi + h) * (dot > 0.0f ? dot : 0.0f);
      }
      out[i * s + j] = acc;
    }
  }
  return VNRT_OK;
}

/* ---- sparse_attention ------------------------------------------------------------------ */

typedef struct sparse_job {
  const cpu_kernel_args *a;
  const vnrt_sparse_attention_params *p;
  int64_t t, k_sel, sc;
  int32_t pos0;
} sparse_job;

/* The key row of window position j for a query of this run: kv for j >= pos0, else the ring. */
static void key_row(const sparse_job *j, int64_t pos, const void **data, vnrt_dtype *dt,
                    int64_t *off) {
  const int64_t d = j->p->head_dim;
  if (pos >= j->pos0) {
    *data = j->a->in[1];
    *dt = j->a->in_type[1]->dtype;
    *off = (pos - j->pos0) * d;
  } else {
    *data = j->a->in[2];
    *dt = j->a->in_type[2]->dtype;
    *off = (pos % j->p->window) * d;
  }
}

/* Adds key (data, dt, off) to the softmax of query q (f32[D]) with an online maximum. */
static void attend(const float *q, const void *data, vnrt_dtype dt, int64_t off, int64_t d,
                   double scale, double *mx, double *den, double *acc) {
  float dot = 0.0f;
  for (int64_t c = 0; c < d; ++c) dot += q[c] * cpu_load_f32(data, dt, off + c);
  const double l = scale * (double)dot;
  if (l > *mx) {
    const double f = exp(*mx - l);
    *den *= f;
    for (int64_t c = 0; c < d; ++c) acc[c] *= f;
    *mx = l;
  }
  const double e = exp(l - *mx);
  *den += e;
  for (int64_t c = 0; c < d; ++c) acc[c] += e * (double)cpu_load_f32(data, dt, off + c);
}

static void sparse_range(void *user, int64_t begin, int64_t end) {
  const sparse_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t h_n = j->p->heads, d = j->p->head_dim, w = j->p->window;
  const vnrt_tensor_type *qt = a->in_type[0];
  float q[V4_MAX_D];
  double acc[V4_MAX_D];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / h_n, h = item % h_n;
    const int64_t p = (int64_t)j->pos0 + t;
    for (int64_t c = 0; c < d; ++c) q[c] = cpu_load_f32(a->in[0], qt->dtype, item * d + c);
    for (int64_t c = 0; c < d; ++c) acc[c] = 0.0;
    double mx = -INFINITY, den = 0.0;
    const void *data;
    vnrt_dtype dt;
    int64_t off;
    const int64_t first = p - w + 1 > 0 ? p - w + 1 : 0;
    for (int64_t pos = first; pos <= p; ++pos) {
      key_row(j, pos, &data, &dt, &off);
      attend(q, data, dt, off, d, j->p->scale, &mx, &den, acc);
    }
    if (j->p->has_comp) {
      const void *comp = a->in[5];
      const vnrt_dtype cdt = a->in_type[5]->dtype;
      if (j->p->has_idx) {
        const int32_t *idx = a->in[6];
        for (int64_t i = 0; i < j->k_sel; ++i) {
          const int32_t e = idx[t * j->k_sel + i];
          if (e >= 0) attend(q, comp, cdt, (int64_t)e * d, d, j->p->scale, &mx, &den, acc);
        }
      } else {
        int64_t visible = (p + 1) / j->p->ratio;
        if (visible > j->sc) visible = j->sc;
        for (int64_t e = 0; e < visible; ++e) {
          attend(q, comp, cdt, e * d, d, j->p->scale, &mx, &den, acc);
        }
      }
    }
    /* the sink joins the denominator only: M = max(logits, sink) */
    const double sink = cpu_load_f32(a->in[3], a->in_type[3]->dtype, h);
    if (den > 0.0 && sink > mx) {
      const double f = exp(mx - sink);
      den *= f;
      for (int64_t c = 0; c < d; ++c) acc[c] *= f;
      mx = sink;
    }
    if (den > 0.0) den += exp(sink - mx);
    for (int64_t c = 0; c < d; ++c) {
      cpu_store_f32(a->out[0], a->out_type[0]->dtype, item * d + c,
                    den > 0.0 ? (float)(acc[c] / den) : 0.0f);
    }
  }
}

vnrt_status cpu_ref_sparse_attention(const cpu_kernel_args *a) {
  const vnrt_sparse_attention_params *p = &a->node->params->sparse_attention;
  if (p->head_dim > V4_MAX_D) {
    return v4_error(a, VNRT_ERROR_UNSUPPORTED, "head width D exceeds the reference's 4096");
  }
  sparse_job j = {
      .a = a,
      .p = p,
      .t = a->in_type[0]->dims[0],
      .k_sel = p->has_idx ? a->in_type[6]->dims[1] : 0,
      .sc = p->has_comp ? a->in_type[5]->dims[0] : 0,
      .pos0 = read_pos0(a, 4),
  };
  if (j.pos0 < 0) return v4_error(a, VNRT_ERROR_OUT_OF_RANGE, "pos0 is negative");
  if (p->has_idx) {
    const int32_t *idx = a->in[6];
    for (int64_t i = 0; i < j.t * j.k_sel; ++i) {
      if (idx[i] >= j.sc) {
        return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                              "sparse_attention '%s': idx[%lld, %lld] = %d is outside comp's %lld "
                              "entries",
                              a->node->name, (long long)(i / j.k_sel), (long long)(i % j.k_sel),
                              (int)idx[i], (long long)j.sc);
      }
    }
  }
  cpu_pool_parallel_for(a->pool, j.t * p->heads, 1, sparse_range, &j);
  return VNRT_OK;
}

/* ---- grouped_linear -------------------------------------------------------------------- */

typedef struct grouped_job {
  const cpu_kernel_args *a;
  const cpu_weight *w;
  const cpu_dequant_lut *lut;
  int64_t g, k, n; /* groups, a group's inputs and outputs */
} grouped_job;

/* Items are result elements [rows, G·N]: y[row, g·N + o] = Σ_k x[row, g·K + k]·W[g·N + o, k]. */
static void grouped_range(void *user, int64_t begin, int64_t end) {
  const grouped_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t gn = j->g * j->n;
  for (int64_t e = begin; e < end; ++e) {
    const int64_t row = e / gn, col = e % gn, g = col / j->n;
    const int64_t xo = row * j->g * j->k + g * j->k;
    float acc = 0.0f;
    for (int64_t kk = 0; kk < j->k; ++kk) {
      acc += cpu_load_f32(a->in[0], a->in_type[0]->dtype, xo + kk) *
             cpu_weight_load(j->w, j->lut, 0, col, kk);
    }
    cpu_store_f32(a->out[0], a->out_type[0]->dtype, e, acc);
  }
}

vnrt_status cpu_ref_grouped_linear(const cpu_kernel_args *a) {
  const vnrt_grouped_linear_params *p = &a->node->params->grouped_linear;
  cpu_weight w;
  vnrt_status st = cpu_weight_init(a, 1, &p->w, &w);
  if (st != VNRT_OK) return st;
  cpu_dequant_lut lut;
  if (w.scale) cpu_dequant_lut_init(&lut, w.dtype);
  grouped_job j = {
      .a = a,
      .w = &w,
      .lut = w.scale ? &lut : NULL,
      .g = p->groups,
      .k = w.cols,
      .n = w.rows / p->groups,
  };
  const int64_t items = vnrt_tensor_type_numel(a->out_type[0]);
  cpu_pool_parallel_for(a->pool, items, 4096 / (j.k > 0 ? j.k : 1) + 1, grouped_range, &j);
  return VNRT_OK;
}
