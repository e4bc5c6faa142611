/* CPU reference kernels for rope and attention: docs/ops.md "Positions and attention". */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"

/* ---- rope ------------------------------------------------------------------------------ */

vnrt_status cpu_ref_rope(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_tensor_type *xt = a->in_type[0];
  const vnrt_tensor_type *pt = a->in_type[1];
  const vnrt_tensor_type *ot = a->out_type[0];
  if (xt->rank != 3 || pt->rank != 1 || pt->dims[0] != xt->dims[0] || pt->dtype != VNRT_I32) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "rope %s: expects x[T, H, D] and pos[T] i32", node->name);
  }
  const int64_t T = xt->dims[0], H = xt->dims[1], D = xt->dims[2];
  const int64_t dims = node->params->rope.dims;
  const int interleaved = node->params->rope.interleaved != 0;
  if (dims <= 0 || dims > D || dims % 2 != 0) {
    return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                          "rope %s: dims=%lld must be even and in (0, D=%lld]", node->name,
                          (long long)dims, (long long)D);
  }
  const int32_t *pos = (const int32_t *)a->in[1];
  const int64_t half = dims / 2;
  const int inverse = node->params->rope.inverse != 0;
  const int64_t first = D - dims; /* the rotated slice is the last `dims` channels */

  for (int64_t r = 0; r < T * H; ++r) {
    for (int64_t c = 0; c < first; ++c) {
      cpu_store_f32(a->out[0], ot->dtype, r * D + c, cpu_load_f32(a->in[0], xt->dtype, r * D + c));
    }
  }
  /* Pair by pair, so that each frequency (with YaRN's blend when set) is formed once and the
   * kernel needs no scratch memory. */
  for (int64_t i = 0; i < half; ++i) {
    const double freq = vnrt_rope_freq(&node->params->rope, i);
    for (int64_t t = 0; t < T; ++t) {
      /* The angle is formed in double: for long positions an f32 product already loses
       * whole radians' worth of precision, and the reference should be the accurate side. */
      const double angle = (double)pos[t] * freq;
      const float cs = (float)cos(angle), sn = inverse ? -(float)sin(angle) : (float)sin(angle);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t row = (t * H + h) * D;
        const int64_t i1 = row + first + (interleaved ? 2 * i : i);
        const int64_t i2 = row + first + (interleaved ? 2 * i + 1 : i + half);
        const float x1 = cpu_load_f32(a->in[0], xt->dtype, i1);
        const float x2 = cpu_load_f32(a->in[0], xt->dtype, i2);
        cpu_store_f32(a->out[0], ot->dtype, i1, x1 * cs - x2 * sn);
        cpu_store_f32(a->out[0], ot->dtype, i2, x1 * sn + x2 * cs);
      }
    }
  }
  return VNRT_OK;
}

/* ---- attention ------------------------------------------------------------------------- */

/* Output channels are accumulated in blocks of this many on the stack, so the kernel needs no
 * scratch memory whatever Dv is (scores are recomputed per block instead). */
#define ATTN_DV_BLOCK 64

typedef struct attn_job {
  const cpu_kernel_args *a;
  int64_t T, S, Hq, Hkv, D, Dv, group, window;
  int causal;
  float scale;
  int has_sinks;
} attn_job;

static float attn_score(const attn_job *j, int64_t t, int64_t h, int64_t s) {
  const cpu_kernel_args *a = j->a;
  const int64_t kvh = h / j->group;
  const int64_t qo = (t * j->Hq + h) * j->D, ko = (s * j->Hkv + kvh) * j->D;
  float dot = 0.0f;
  for (int64_t d = 0; d < j->D; ++d) {
    dot += cpu_load_f32(a->in[0], a->in_type[0]->dtype, qo + d) *
           cpu_load_f32(a->in[1], a->in_type[1]->dtype, ko + d);
  }
  return dot * j->scale;
}

static void attn_rows(void *user, int64_t begin, int64_t end) {
  const attn_job *j = (const attn_job *)user;
  const cpu_kernel_args *a = j->a;
  const vnrt_dtype vdt = a->in_type[2]->dtype, odt = a->out_type[0]->dtype;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t t = r / j->Hq, h = r % j->Hq;
    const int64_t kvh = h / j->group;
    const int64_t qpos = j->S - j->T + t; /* query t sits at absolute position S-T+t */
    int64_t lo = 0, hi = j->S - 1;        /* visible keys: [lo, hi] */
    if (j->causal && qpos < hi) hi = qpos;
    if (j->window > 0 && qpos - j->window + 1 > lo) lo = qpos - j->window + 1;
    const int64_t orow = (t * j->Hq + h) * j->Dv;
    if (lo > hi) {
      for (int64_t dv = 0; dv < j->Dv; ++dv) cpu_store_f32(a->out[0], odt, orow + dv, 0.0f);
      continue;
    }
    float m = -INFINITY;
    for (int64_t s = lo; s <= hi; ++s) m = fmaxf(m, attn_score(j, t, h, s));
    float sink = 0.0f;
    if (j->has_sinks) {
      sink = cpu_load_f32(a->in[3], a->in_type[3]->dtype, h);
      m = fmaxf(m, sink); /* subtract the same max from the sink so exp cannot overflow */
    }
    float denom = j->has_sinks ? expf(sink - m) : 0.0f;
    for (int64_t s = lo; s <= hi; ++s) denom += expf(attn_score(j, t, h, s) - m);

    for (int64_t b0 = 0; b0 < j->Dv; b0 += ATTN_DV_BLOCK) {
      const int64_t bn = j->Dv - b0 < ATTN_DV_BLOCK ? j->Dv - b0 : ATTN_DV_BLOCK;
      float acc[ATTN_DV_BLOCK] = {0};
      for (int64_t s = lo; s <= hi; ++s) {
        const float p = expf(attn_score(j, t, h, s) - m) / denom;
        const int64_t vo = (s * j->Hkv + kvh) * j->Dv + b0;
        for (int64_t i = 0; i < bn; ++i) acc[i] += p * cpu_load_f32(a->in[2], vdt, vo + i);
      }
      for (int64_t i = 0; i < bn; ++i) cpu_store_f32(a->out[0], odt, orow + b0 + i, acc[i]);
    }
  }
}

bool cpu_attention_shapes_ok(const cpu_kernel_args *a) {
  const vnrt_tensor_type *qt = a->in_type[0], *kt = a->in_type[1], *vt = a->in_type[2];
  const vnrt_attention_params *p = &a->node->params->attention;
  const int has_sinks = p->has_sinks && a->in[3] != NULL;
  return qt->rank == 3 && kt->rank == 3 && vt->rank == 3 && qt->dims[1] == p->q_heads &&
         qt->dims[2] == p->head_dim && kt->dims[1] == p->kv_heads && kt->dims[2] == p->head_dim &&
         vt->dims[0] == kt->dims[0] && vt->dims[1] == p->kv_heads && vt->dims[2] == p->v_dim &&
         p->kv_heads > 0 && p->q_heads % p->kv_heads == 0 &&
         (!has_sinks || vnrt_numel(a->in_type[3]) == p->q_heads);
}

vnrt_status cpu_ref_attention(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_tensor_type *qt = a->in_type[0], *kt = a->in_type[1];
  const vnrt_attention_params *p = &node->params->attention;
  const int has_sinks = p->has_sinks && a->in[3] != NULL;
  if (!cpu_attention_shapes_ok(a)) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "attention %s: expects q[T, Hq, D], k[S, Hkv, D], v[S, Hkv, Dv], "
                          "sinks[Hq] with Hq a multiple of Hkv",
                          node->name);
  }
  attn_job j = {
      .a = a,
      .T = qt->dims[0],
      .S = kt->dims[0],
      .Hq = p->q_heads,
      .Hkv = p->kv_heads,
      .D = p->head_dim,
      .Dv = p->v_dim,
      .group = p->q_heads / p->kv_heads,
      .window = p->window,
      .causal = p->causal != 0,
      .has_sinks = has_sinks,
  };
  if (a->n_in > 4) {
    /* kv_len (an extension for KV caches): only the first kv_len rows of k and v exist, and
     * the queries are the last T of those positions. */
    int32_t kv_len = *(const int32_t *)a->in[4];
    if (kv_len < 0 || kv_len > j.S) {
      return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                            "attention '%s': kv_len %d out of range [0, %lld] (the cache's rows)",
                            node->name, (int)kv_len, (long long)j.S);
    }
    j.S = kv_len;
  }
  j.scale = (float)p->scale;
  cpu_pool_parallel_for(a->pool, j.T * j.Hq, 1, attn_rows, &j);
  return VNRT_OK;
}
