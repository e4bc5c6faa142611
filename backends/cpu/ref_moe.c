/* CPU reference kernels for MoE (moe_route, moe_hash_route, moe_ffn): docs/ops.md literally,
 * f32 math; bias selects experts but weights are the unbiased scores; every run-time index is
 * validated before any output is written. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"

static const char *node_name(const cpu_kernel_args *a) {
  return (a->node && a->node->name) ? a->node->name : "?";
}

static void *scratch_alloc(const cpu_kernel_args *a, size_t bytes) {
  return a->host->alloc(a->host->core, bytes > 0 ? bytes : 1);
}

static vnrt_status oom(const cpu_kernel_args *a, const char *op, size_t bytes) {
  return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_MEMORY,
                        "%s '%s': cannot allocate %llu bytes of scratch", op, node_name(a),
                        (unsigned long long)bytes);
}

/* The score function is resolved by the graph layer; anything else is a corrupt node. */
static vnrt_status check_score(const cpu_kernel_args *a, const char *op, vnrt_score_fn score) {
  switch (score) {
    case VNRT_SCORE_SIGMOID:
    case VNRT_SCORE_SOFTMAX:
    case VNRT_SCORE_SQRT_SOFTPLUS:
      return VNRT_OK;
  }
  return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                        "%s '%s': unknown score %d (sigmoid, softmax or sqrt_softplus)", op,
                        node_name(a), (int)score);
}

static float softplus_f32(float x) {
  if (x > 20.0f) return x;
  if (x < -20.0f) return expf(x);
  return logf(1.0f + expf(x));
}

/* s[e] = score(logits[t, e]) for e in [0, E); softmax is over the E experts. */
static void score_row(const void *logits, vnrt_dtype dt, int64_t t, int64_t E, vnrt_score_fn kind,
                      float *s) {
  for (int64_t e = 0; e < E; ++e) s[e] = cpu_load_f32(logits, dt, t * E + e);
  switch (kind) {
    case VNRT_SCORE_SIGMOID:
      for (int64_t e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + expf(-s[e]));
      break;
    case VNRT_SCORE_SQRT_SOFTPLUS:
      for (int64_t e = 0; e < E; ++e) s[e] = sqrtf(softplus_f32(s[e]));
      break;
    case VNRT_SCORE_SOFTMAX: {
      float mx = s[0];
      for (int64_t e = 1; e < E; ++e) mx = s[e] > mx ? s[e] : mx;
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) {
        s[e] = expf(s[e] - mx);
        sum += s[e];
      }
      for (int64_t e = 0; e < E; ++e) s[e] /= sum;
      break;
    }
  }
}

/* weights[t, i] = s[experts[t, i]], normalised (w /= Σw + 1e-20) if norm, then scaled. */
static void route_weights(const cpu_kernel_args *a, int64_t t, int64_t k, const float *s,
                          const int32_t *experts, int norm, float scale) {
  float sum = 0.0f;
  for (int64_t i = 0; i < k; ++i) sum += s[experts[i]];
  for (int64_t i = 0; i < k; ++i) {
    float w = s[experts[i]];
    if (norm) w /= (sum + 1e-20f);
    cpu_store_f32(a->out[0], a->out_type[0]->dtype, t * k + i, w * scale);
  }
}

/* ---- moe_route ------------------------------------------------------------------------- */

vnrt_status cpu_ref_moe_route(const cpu_kernel_args *a) {
  const vnrt_tensor_type *lt = a->in_type[0];
  const int64_t E = lt->dims[lt->rank - 1];
  const int64_t T = E > 0 ? vnrt_numel(lt) / E : 0;
  const vnrt_moe_route_params *p = &a->node->params->moe_route;
  const int64_t k = p->k;
  const int64_t n_group = p->n_group;
  const int64_t topk_group = p->topk_group;
  const int norm = p->norm != 0;
  const float scale = (float)p->scale;
  const int has_bias = p->has_bias && a->in[1] != NULL;
  const vnrt_score_fn kind = p->score;
  vnrt_status st = check_score(a, "moe_route", kind);
  if (st != VNRT_OK) return st;

  const int grouped = n_group > 1;
  const int64_t gsize = grouped ? E / n_group : E;
  const int64_t eligible = grouped ? topk_group * gsize : E;
  if (grouped && (E % n_group != 0 || topk_group < 1 || topk_group > n_group)) {
    return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                          "moe_route '%s': E=%lld is not n_group=%lld groups with topk_group=%lld "
                          "in [1, n_group]",
                          node_name(a), (long long)E, (long long)n_group, (long long)topk_group);
  }
  if (k < 1 || k > eligible) {
    return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                          "moe_route '%s': k=%lld but only %lld experts are eligible", node_name(a),
                          (long long)k, (long long)eligible);
  }
  if (T == 0) return VNRT_OK;

  /* s[E], sel[E], gscore[n_group] floats; taken[E] and gkeep[n_group] bytes. */
  size_t bytes = (size_t)(2 * E + n_group) * sizeof(float) + (size_t)k * sizeof(int32_t) +
                 (size_t)(E + n_group);
  float *s = (float *)scratch_alloc(a, bytes);
  if (!s) return oom(a, "moe_route", bytes);
  float *sel = s + E;
  float *gscore = sel + E;
  int32_t *chosen = (int32_t *)(gscore + n_group);
  unsigned char *taken = (unsigned char *)(chosen + k);
  unsigned char *gkeep = taken + E;

  for (int64_t t = 0; t < T; ++t) {
    score_row(a->in[0], lt->dtype, t, E, kind, s);
    for (int64_t e = 0; e < E; ++e) {
      sel[e] = s[e] + (has_bias ? cpu_load_f32(a->in[1], a->in_type[1]->dtype, e) : 0.0f);
      taken[e] = 0;
    }
    if (grouped) {
      /* A group's score is the sum of its two largest sel (its one value if it has one). */
      for (int64_t g = 0; g < n_group; ++g) {
        const float *v = sel + g * gsize;
        int64_t b1 = 0;
        for (int64_t i = 1; i < gsize; ++i) b1 = v[i] > v[b1] ? i : b1;
        int64_t b2 = -1;
        for (int64_t i = 0; i < gsize; ++i) {
          if (i != b1 && (b2 < 0 || v[i] > v[b2])) b2 = i;
        }
        gscore[g] = v[b1] + (b2 >= 0 ? v[b2] : 0.0f);
        gkeep[g] = 0;
      }
      for (int64_t r = 0; r < topk_group; ++r) {
        int64_t best = -1;
        for (int64_t g = 0; g < n_group; ++g) {
          if (!gkeep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
        }
        gkeep[best] = 1;
      }
      /* Experts of dropped groups are not eligible: mark them taken. */
      for (int64_t e = 0; e < E; ++e) taken[e] = (unsigned char)!gkeep[e / gsize];
    }
    /* k rounds of argmax over the eligible sel; strict > keeps the lower index on ties. */
    for (int64_t i = 0; i < k; ++i) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e) {
        if (!taken[e] && (best < 0 || sel[e] > sel[best])) best = e;
      }
      taken[best] = 1;
      chosen[i] = (int32_t)best;
      ((int32_t *)a->out[1])[t * k + i] = (int32_t)best;
    }
    route_weights(a, t, k, s, chosen, norm, scale);
  }
  a->host->free(a->host->core, s);
  return VNRT_OK;
}

/* ---- moe_hash_route -------------------------------------------------------------------- */

vnrt_status cpu_ref_moe_hash_route(const cpu_kernel_args *a) {
  const vnrt_tensor_type *lt = a->in_type[0], *tt = a->in_type[2];
  const int64_t E = lt->dims[lt->rank - 1];
  const int64_t T = E > 0 ? vnrt_numel(lt) / E : 0;
  const int64_t V = tt->dims[0], k = tt->dims[1];
  const int32_t *ids = (const int32_t *)a->in[1];
  const int32_t *tid2eid = (const int32_t *)a->in[2];
  const vnrt_moe_hash_route_params *p = &a->node->params->moe_hash_route;
  const int norm = p->norm != 0;
  const float scale = (float)p->scale;
  const vnrt_score_fn kind = p->score;
  vnrt_status st = check_score(a, "moe_hash_route", kind);
  if (st != VNRT_OK) return st;

  /* Validate everything first so that a bad id leaves the outputs untouched. */
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) {
      return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                            "moe_hash_route '%s': token id %d (token %lld) is outside [0, %lld) "
                            "of tid2eid",
                            node_name(a), (int)ids[t], (long long)t, (long long)V);
    }
    for (int64_t i = 0; i < k; ++i) {
      int32_t e = tid2eid[ids[t] * k + i];
      if (e < 0 || e >= E) {
        return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                              "moe_hash_route '%s': expert id %d (tid2eid[%d, %lld]) is outside "
                              "[0, %lld)",
                              node_name(a), (int)e, (int)ids[t], (long long)i, (long long)E);
      }
    }
  }
  if (T == 0) return VNRT_OK;

  size_t bytes = (size_t)E * sizeof(float);
  float *s = (float *)scratch_alloc(a, bytes);
  if (!s) return oom(a, "moe_hash_route", bytes);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t *row = tid2eid + ids[t] * k;
    score_row(a->in[0], lt->dtype, t, E, kind, s);
    for (int64_t i = 0; i < k; ++i) ((int32_t *)a->out[1])[t * k + i] = row[i];
    route_weights(a, t, k, s, row, norm, scale);
  }
  a->host->free(a->host->core, s);
  return VNRT_OK;
}

/* ---- moe_ffn --------------------------------------------------------------------------- */

/* Σ_i w[off + i]·x[i] over n elements of a weight tensor of dtype dt. */
static float dot_w(const void *w, vnrt_dtype dt, int64_t off, const float *x, int64_t n) {
  float acc = 0.0f;
  switch (dt) {
    case VNRT_F32: {
      const float *p = (const float *)w + off;
      for (int64_t i = 0; i < n; ++i) acc += p[i] * x[i];
      break;
    }
    default:
      for (int64_t i = 0; i < n; ++i) acc += cpu_load_f32(w, dt, off + i) * x[i];
      break;
  }
  return acc;
}

typedef struct moe_ffn_job {
  const cpu_kernel_args *a;
  int64_t T, C, F, k, chunks;
  float limit;
  int32_t act_quant;          /* 0, or the channels per e4m3 block of x and of h */
  const cpu_weight *wgu, *wd; /* the expert weights (float, or codes with scales) */
  const cpu_dequant_lut *lut_gu, *lut_d;
  float *scratch; /* per chunk: x[C], acc[C], h[F] */
} moe_ffn_job;

/* Row r of expert e of a weight · v: the float weights' dot_w, or the quantized one. */
static float expert_dot(const cpu_weight *w, const cpu_dequant_lut *lut, int64_t e, int64_t r,
                        const float *v) {
  if (w->scale) return cpu_ref_qdot(w, lut, e, r, v);
  return dot_w(w->data, w->dtype, (e * w->rows + r) * w->cols, v, w->cols);
}

/* Fake-quantizes v[n] to e4m3 in blocks of aq channels (act_quant). */
static void act_quant_vec(float *v, int64_t n, int32_t aq) {
  for (int64_t b = 0; b < n; b += aq)
    cpu_fake_quant_block(v + b, n - b < aq ? n - b : aq, VNRT_E4M3);
}

static void moe_ffn_token(const moe_ffn_job *job, int64_t t, float *x, float *acc, float *h) {
  const cpu_kernel_args *a = job->a;
  const int64_t C = job->C, F = job->F, k = job->k;
  const int32_t *experts = (const int32_t *)a->in[1];
  const float limit = job->limit;
  const int32_t aq = job->act_quant;
  for (int64_t c = 0; c < C; ++c) {
    x[c] = cpu_load_f32(a->in[0], a->in_type[0]->dtype, t * C + c);
    acc[c] = 0.0f;
  }
  if (aq > 0) act_quant_vec(x, C, aq);
  for (int64_t i = 0; i < k; ++i) {
    int64_t e = experts[t * k + i];
    float w = cpu_load_f32(a->in[2], a->in_type[2]->dtype, t * k + i);
    for (int64_t f = 0; f < F; ++f) {
      float g = expert_dot(job->wgu, job->lut_gu, e, f, x);
      float u = expert_dot(job->wgu, job->lut_gu, e, F + f, x);
      if (limit > 0.0f) {
        g = g < limit ? g : limit;
        u = u < -limit ? -limit : (u > limit ? limit : u);
      }
      h[f] = g / (1.0f + expf(-g)) * u;
    }
    if (aq > 0) {
      /* DeepSeek's order: the routing weight scales h, which is then rounded to e4m3 per
       * block; the down projection's result is summed unweighted. */
      for (int64_t f = 0; f < F; ++f) h[f] *= w;
      act_quant_vec(h, F, aq);
      for (int64_t c = 0; c < C; ++c) acc[c] += expert_dot(job->wd, job->lut_d, e, c, h);
    } else {
      for (int64_t c = 0; c < C; ++c) acc[c] += w * expert_dot(job->wd, job->lut_d, e, c, h);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    cpu_store_f32(a->out[0], a->out_type[0]->dtype, t * C + c, acc[c]);
  }
}

/* Chunk i covers tokens [i·T/chunks, (i+1)·T/chunks) with its own scratch slot. */
static void moe_ffn_range(void *user, int64_t begin, int64_t end) {
  const moe_ffn_job *job = (const moe_ffn_job *)user;
  for (int64_t ch = begin; ch < end; ++ch) {
    float *x = job->scratch + ch * (2 * job->C + job->F);
    float *acc = x + job->C, *h = acc + job->C;
    int64_t t0 = ch * job->T / job->chunks, t1 = (ch + 1) * job->T / job->chunks;
    for (int64_t t = t0; t < t1; ++t) moe_ffn_token(job, t, x, acc, h);
  }
}

vnrt_status cpu_ref_moe_ffn(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *et = a->in_type[1], *gt = a->in_type[3];
  moe_ffn_job job = {
      .a = a,
      .C = xt->dims[xt->rank - 1],
      .k = et->dims[et->rank - 1],
      .F = gt->dims[1] / 2,
      .limit = (float)a->node->params->moe_ffn.limit,
  };
  const int64_t E = gt->dims[0];
  job.T = job.C > 0 ? vnrt_numel(xt) / job.C : (job.k > 0 ? vnrt_numel(et) / job.k : 0);
  const int32_t *experts = (const int32_t *)a->in[1];
  /* Validate every expert id before writing anything. */
  for (int64_t t = 0; t < job.T; ++t) {
    for (int64_t i = 0; i < job.k; ++i) {
      int32_t e = experts[t * job.k + i];
      if (e < 0 || e >= E) {
        return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                              "moe_ffn '%s': expert id %d (experts[%lld, %lld]) is outside "
                              "[0, %lld)",
                              node_name(a), (int)e, (long long)t, (long long)i, (long long)E);
      }
    }
  }
  if (job.T == 0 || job.C == 0) return VNRT_OK;
  /* Quantized experts are decoded element by element (docs/ops.md, "Quantized weights"). */
  const vnrt_moe_ffn_params *p = &a->node->params->moe_ffn;
  cpu_weight wgu, wd;
  vnrt_status st = cpu_weight_init(a, 3, &p->w_gate_up, &wgu);
  if (st == VNRT_OK) st = cpu_weight_init(a, 4, &p->w_down, &wd);
  if (st != VNRT_OK) return st;
  cpu_dequant_lut lut_gu, lut_d;
  if (wgu.scale) cpu_dequant_lut_init(&lut_gu, wgu.dtype);
  if (wd.scale) cpu_dequant_lut_init(&lut_d, wd.dtype);
  job.act_quant = p->act_quant;
  job.wgu = &wgu;
  job.wd = &wd;
  job.lut_gu = &lut_gu;
  job.lut_d = &lut_d;

  /* A few chunks per thread balance uneven tokens without a scratch slot per token. */
  int64_t chunks = 4 * (int64_t)cpu_pool_threads(a->pool);
  job.chunks = chunks < job.T ? chunks : job.T;
  size_t bytes = (size_t)job.chunks * (size_t)(2 * job.C + job.F) * sizeof(float);
  job.scratch = (float *)scratch_alloc(a, bytes);
  if (!job.scratch) return oom(a, "moe_ffn", bytes);
  cpu_pool_parallel_for(a->pool, job.chunks, 1, moe_ffn_range, &job);
  a->host->free(a->host->core, job.scratch);
  return VNRT_OK;
}
