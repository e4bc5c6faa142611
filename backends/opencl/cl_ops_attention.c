/* OpenCL lowering of rope (frequencies computed here in double, with YaRN, split into two floats)
 * and attention (one work-group per query row where local memory is real, one work-item per row on
 * CPU drivers; shaders attention.cl). */
#include <math.h>

#include "cl_ops.h"

#define ATT_MAXJ 8 /* as in attention.cl: output channels per work-item */
#define ATT_WG_MAX 256

/* The work-group size attention asks for: enough items for Dv in ATT_MAXJ channels each. */
static size_t attention_want_wg(int64_t Dv) {
  size_t want = 64;
  while ((int64_t)want * ATT_MAXJ < Dv && want < ATT_WG_MAX) want *= 2;
  return want;
}

int cl_rope_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                     const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  const vnrt_tensor_type *pos = cl_q_in(g, node, 1);
  if (!cl_is_float(x->dtype) || !cl_is_float(o->dtype) || x->rank != 3 || pos->rank != 1 ||
      pos->dtype != VNRT_I32 || pos->dims[0] != x->dims[0]) {
    return 0;
  }
  const vnrt_rope_params *p = &node->params->rope;
  if (p->yarn_factor != 0.0 && !(p->yarn_factor >= 1.0 && p->yarn_orig_ctx >= 1)) return 0;
  return p->dims > 0 && p->dims <= x->dims[2] && p->dims % 2 == 0;
}

int cl_attention_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                          const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (!cl_is_float(x->dtype) || !cl_is_float(o->dtype)) return 0;
  const vnrt_tensor_type *k = cl_q_in(g, node, 1), *v = cl_q_in(g, node, 2);
  if (!cl_is_float(k->dtype) || !cl_is_float(v->dtype) || x->rank != 3 || k->rank != 3 ||
      v->rank != 3 || k->dims[2] != x->dims[2] || v->dims[0] != k->dims[0] ||
      v->dims[1] != k->dims[1] || k->dims[1] <= 0 || x->dims[1] % k->dims[1] != 0) {
    return 0;
  }
  if (node->n_inputs > 3) {
    const vnrt_tensor_type *s = cl_q_in(g, node, 3);
    if (!cl_is_float(s->dtype) || vnrt_numel(s) != x->dims[1]) return 0;
  }
  if (node->n_inputs > 4) {
    const vnrt_tensor_type *kvl = cl_q_in(g, node, 4);
    if (kvl->dtype != VNRT_I32 || vnrt_numel(kvl) != 1) return 0;
  }
  if (node->n_inputs > 5) return 0;
  /* Each work-item accumulates at most ATT_MAXJ channels of Dv; q and two chunks of wg
   * scores live in local memory. */
  size_t wg = attention_want_wg(v->dims[2]);
  size_t dev_wg =
      dev->desc->max_wg < dev->desc->max_wi[0] ? dev->desc->max_wg : dev->desc->max_wi[0];
  if (wg > dev_wg) return 0;
  return (int64_t)wg * ATT_MAXJ >= v->dims[2] &&
         (uint64_t)(x->dims[2] + 2 * (int64_t)wg) * 4 <= dev->desc->local_mem;
}

vnrt_status cl_rope_lower(cl_lower *L) {
  const vnrt_rope_params *p = &L->node->params->rope;
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t T = x->dims[0], H = x->dims[1], D = x->dims[2];
  int64_t dims = p->dims;
  int64_t half = dims / 2;
  if (T * H == 0 || D == 0) return VNRT_OK;
  /* theta^(-2i/dims) in double (with YaRN, blended along its ramp: vnrt_rope_freq, which
   * every backend shares), as (hi, lo) floats: the kernel forms pos·f in
   * two-float arithmetic, so long positions keep their angle. */
  float *freq = L->dev->host->alloc(L->dev->host->core, sizeof(float) * 2 * (size_t)half + 8);
  if (!freq) return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  for (int64_t i = 0; i < half; ++i) {
    double f = vnrt_rope_freq(p, i);
    freq[2 * i] = (float)f;
    freq[2 * i + 1] = (float)(f - (double)freq[2 * i]);
  }
  uint64_t off = cl_const(L, freq, sizeof(float) * 2 * (uint64_t)(half > 0 ? half : 1));
  L->dev->host->free(L->dev->host->core, freq);
  if (off == UINT64_MAX) return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory");
  /* On a CPU driver whole heads per work-item (rope_heads) where the copied channels come in
   * 16s: a decode step's rope is then a few dozen items, not one per channel and head. */
  const int heads = L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE && (D - dims) % 16 == 0;
  cl_launch k;
  cl_launch_begin(L, heads ? "rope_heads" : "rope", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_const(&k, off);
  cl_arg_out_dt(&k, 0);
  cl_arg_i32(&k, (int32_t)D);
  cl_arg_i32(&k, (int32_t)dims);
  cl_arg_i32(&k, p->interleaved);
  cl_arg_i32(&k, p->inverse);
  cl_arg_i32(&k, (int32_t)H);
  if (heads) {
    cl_arg_i64(&k, T);
    size_t wg = cl_launch_wg(&k, 8);
    size_t items[2] = {(size_t)((D - dims) / 16 + half), (size_t)T}, lws[2] = {wg, 1};
    return cl_launch_end(&k, 2, items, lws);
  }
  cl_arg_i64(&k, T * H);
  return cl_launch_2d(&k, D - dims + half, T * H);
}

/* info: kv_len tensor, S. */
static vnrt_status report_kv_len(vnrt_backend_exec *exec, const cl_step *st, int32_t pos) {
  int32_t kv_len = 0;
  vnrt_status s = cl_read_i32(exec, (int32_t)st->info[0], pos, &kv_len);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "attention '%s': kv_len %d out of range [0, %lld] (the cache's rows)",
                 exec->graph.nodes[st->node].name, (int)kv_len, (long long)st->info[1]);
}

/* The arguments both attention kernels take first: q, k, v, sinks, kv_len, the result, the
 * sizes and the attributes. */
static void attention_args(cl_lower *L, cl_launch *k) {
  const vnrt_attention_params *p = &L->node->params->attention;
  const vnrt_tensor_type *q = cl_in_type(L, 0), *kt = cl_in_type(L, 1), *v = cl_in_type(L, 2);
  cl_arg_in_dt(k, 0);
  cl_arg_in_dt(k, 1);
  cl_arg_in_dt(k, 2);
  cl_arg_opt_in_dt(k, 3);
  cl_arg_i32(k, p->has_sinks);
  cl_arg_opt_in(k, 4);
  cl_arg_i32(k, L->node->n_inputs > 4);
  cl_arg_out_dt(k, 0);
  cl_arg_i32(k, (int32_t)q->dims[0]);
  cl_arg_i32(k, (int32_t)kt->dims[0]);
  cl_arg_i32(k, (int32_t)q->dims[1]);
  cl_arg_i32(k, (int32_t)kt->dims[1]);
  cl_arg_i32(k, (int32_t)q->dims[2]);
  cl_arg_i32(k, (int32_t)v->dims[2]);
  cl_arg_i32(k, p->causal);
  cl_arg_i32(k, (int32_t)p->window);
  cl_arg_f32(k, (float)p->scale);
}

vnrt_status cl_attention_lower(cl_lower *L) {
  const vnrt_tensor_type *q = cl_in_type(L, 0), *kt = cl_in_type(L, 1), *v = cl_in_type(L, 2);
  int64_t T = q->dims[0], Hq = q->dims[1], D = q->dims[2], S = kt->dims[0];
  int64_t Dv = v->dims[2];
  int has_kvl = L->node->n_inputs > 4;
  cl_launch k;
  if (has_kvl) {
    /* kv_len must lie in [0, S]: checked on the device before the kernel reads it. */
    int32_t slot = cl_err_slot(L);
    cl_launch_begin(L, "check_index", &k);
    cl_arg_in(&k, 4);
    cl_arg_in(&k, 4);
    cl_arg_i32(&k, 0);
    cl_arg_i32(&k, 1);
    cl_arg_i64(&k, 1);
    cl_arg_i64(&k, S + 1);
    cl_arg_err(&k, slot);
    cl_arg_i32(&k, slot);
    vnrt_status s = cl_launch_single(&k, 64);
    if (s != VNRT_OK) return s;
    const int64_t info[2] = {L->node->inputs[4], S};
    s = cl_add_check(L, slot, report_kv_len, info, 2);
    if (s != VNRT_OK) return s;
  }
  if (!L->dev->desc->local_mem_dedicated) {
    /* CPU drivers: a work-item per query row, no barriers (attention_rows). */
    uint64_t acc = cl_scratch(L, (uint64_t)(T * Hq * Dv) * 4);
    cl_launch_begin(L, "attention_rows", &k);
    attention_args(L, &k);
    cl_arg_scratch(&k, acc);
    size_t one = 1, items = (size_t)(T * Hq);
    return cl_launch_end(&k, 1, &items, &one);
  }
  cl_launch_begin(L, "attention", &k);
  size_t wg = cl_launch_wg(&k, attention_want_wg(Dv));
  if (k.status == VNRT_OK && (int64_t)wg * ATT_MAXJ < Dv) {
    return cl_fail(L->dev, VNRT_ERROR_UNSUPPORTED,
                   "attention '%s': Dv=%lld needs work-groups of %lld items; the kernel allows %zu",
                   L->node->name, (long long)Dv, (long long)((Dv + ATT_MAXJ - 1) / ATT_MAXJ), wg);
  }
  attention_args(L, &k);
  cl_arg_local(&k, sizeof(float) * (size_t)(D > 0 ? D : 1));
  cl_arg_local(&k, sizeof(float) * wg);
  cl_arg_local(&k, sizeof(float) * wg);
  size_t items = (size_t)(T * Hq) * wg;
  return cl_launch_end(&k, 1, &items, &wg);
}
