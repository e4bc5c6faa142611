/* OpenCL lowering of the Engram ops: ngram_hash (multipliers and primes as constant tables),
 * engram_lookup (rows checked on the device before the gather), engram_gate and short_conv
 * (shaders engram.cl, index.cl). */
#include <stdint.h>

#include "cl_ops.h"

int cl_ngram_hash_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                           const vnrt_backend_node *node) {
  const vnrt_ngram_hash_params *p = &node->params->ngram_hash;
  if (cl_q_in(g, node, 0)->dtype != VNRT_I32 || cl_q_in(g, node, 1)->dtype != VNRT_I32 ||
      cl_q_out(g, node, 0)->dtype != VNRT_I32 || !p->mult || !p->primes) {
    return 0;
  }
  int64_t N = p->max_n, K = p->heads, cols = (N - 1) * K;
  int64_t T = vnrt_numel(cl_q_in(g, node, 0));
  if (N < 2 || N > p->n_mult || K < 1 || cols > p->n_primes ||
      vnrt_numel(cl_q_in(g, node, 1)) != N - 1 || vnrt_numel(cl_q_out(g, node, 0)) != T * cols) {
    return 0;
  }
  for (int64_t c = 0; c < cols; ++c) {
    if (p->primes[c] <= 0 || p->primes[c] > INT32_MAX) return 0;
  }
  return 1;
}

int cl_engram_lookup_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                              const vnrt_backend_node *node) {
  const vnrt_tensor_type *t = cl_q_in(g, node, 0), *idx = cl_q_in(g, node, 1);
  const vnrt_tensor_type *off = cl_q_in(g, node, 2);
  if (!cl_is_float(t->dtype) || t->rank != 2 || idx->dtype != VNRT_I32 || idx->rank < 1 ||
      off->dtype != VNRT_I32 || !cl_is_float(cl_q_out(g, node, 0)->dtype)) {
    return 0;
  }
  int64_t H = idx->dims[idx->rank - 1];
  int64_t rows = H > 0 ? vnrt_numel(idx) / H : 0;
  return vnrt_numel(off) == H && vnrt_numel(cl_q_out(g, node, 0)) == rows * H * t->dims[1];
}

int cl_engram_gate_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                            const vnrt_backend_node *node) {
  const vnrt_tensor_type *h = cl_q_in(g, node, 0);
  for (int32_t i = 0; i < 5; ++i) {
    if (!cl_is_float(cl_q_in(g, node, i)->dtype)) return 0;
  }
  if (h->rank != 3 || !cl_is_float(cl_q_out(g, node, 0)->dtype)) return 0;
  int64_t T = h->dims[0], M = h->dims[1], C = h->dims[2];
  return vnrt_numel(cl_q_in(g, node, 1)) == T * M * C && vnrt_numel(cl_q_in(g, node, 2)) == T * C &&
         vnrt_numel(cl_q_in(g, node, 3)) == M * C && vnrt_numel(cl_q_in(g, node, 4)) == M * C;
}

int cl_short_conv_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                           const vnrt_backend_node *node) {
  const vnrt_tensor_type *u = cl_q_in(g, node, 0), *hist = cl_q_in(g, node, 1);
  const vnrt_tensor_type *w = cl_q_in(g, node, 3);
  int64_t dil = node->params->short_conv.dilation;
  for (int32_t i = 0; i < 4; ++i) {
    if (!cl_is_float(cl_q_in(g, node, i)->dtype)) return 0;
  }
  if (u->rank != 3 || w->rank != 2 || dil < 1 || node->n_outputs != 2) return 0;
  int64_t T = u->dims[0], M = u->dims[1], C = u->dims[2], K = w->dims[1];
  int64_t P = (K - 1) * dil;
  return K >= 1 && w->dims[0] == M * C && vnrt_numel(hist) == P * M * C &&
         hist->dtype == u->dtype && vnrt_numel(cl_q_in(g, node, 2)) == M * C &&
         vnrt_numel(cl_q_out(g, node, 0)) == T * M * C &&
         vnrt_numel(cl_q_out(g, node, 1)) == P * M * C &&
         cl_is_float(cl_q_out(g, node, 0)->dtype) && cl_is_float(cl_q_out(g, node, 1)->dtype);
}

vnrt_status cl_ngram_hash_lower(cl_lower *L) {
  const vnrt_ngram_hash_params *p = &L->node->params->ngram_hash;
  int64_t N = p->max_n, K = p->heads;
  int64_t T = vnrt_numel(cl_in_type(L, 0));
  if (T == 0) return VNRT_OK;
  uint64_t moff = cl_const(L, p->mult, sizeof(int64_t) * (uint64_t)N);
  uint64_t poff = cl_const(L, p->primes, sizeof(int64_t) * (uint64_t)((N - 1) * K));
  if (moff == UINT64_MAX || poff == UINT64_MAX) {
    return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  }
  cl_launch k;
  cl_launch_begin(L, "ngram_hash", &k);
  cl_arg_in(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_const(&k, moff);
  cl_arg_const(&k, poff);
  cl_arg_out(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)N);
  cl_arg_i32(&k, (int32_t)K);
  return cl_launch_1d(&k, T);
}

/* info: idx tensor, offsets tensor, H, R. */
static vnrt_status report_lookup(vnrt_backend_exec *exec, const cl_step *st, int32_t pos) {
  int64_t H = st->info[2], t = pos / H, h = pos % H;
  int32_t idx = 0, off = 0;
  vnrt_status s = cl_read_i32(exec, (int32_t)st->info[0], pos, &idx);
  if (s == VNRT_OK) s = cl_read_i32(exec, (int32_t)st->info[1], h, &off);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "engram_lookup %s: row %lld (offsets[%lld]=%d + idx[%lld, %lld]=%d) is out of "
                 "range [0, %lld) of the table",
                 exec->graph.nodes[st->node].name, (long long)((int64_t)off + idx), (long long)h,
                 (int)off, (long long)t, (long long)h, (int)idx, (long long)st->info[3]);
}

vnrt_status cl_engram_lookup_lower(cl_lower *L) {
  const vnrt_tensor_type *t = cl_in_type(L, 0), *idx = cl_in_type(L, 1);
  int64_t R = t->dims[0], D = t->dims[1], H = idx->dims[idx->rank - 1];
  int64_t n = vnrt_numel(idx);
  if (n == 0) return VNRT_OK;
  int32_t slot = cl_err_slot(L);
  cl_launch k;
  cl_launch_begin(L, "check_index", &k);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 2);
  cl_arg_i32(&k, 1);
  cl_arg_i32(&k, (int32_t)H);
  cl_arg_i64(&k, n);
  cl_arg_i64(&k, R);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  vnrt_status s = cl_launch_single(&k, 64);
  if (s != VNRT_OK) return s;
  const int64_t info[4] = {L->node->inputs[1], L->node->inputs[2], H, R};
  s = cl_add_check(L, slot, report_lookup, info, 4);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "engram_lookup", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 2);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  cl_arg_i32(&k, (int32_t)H);
  cl_arg_i64(&k, n);
  return cl_launch_2d(&k, D, n);
}

vnrt_status cl_engram_gate_lower(cl_lower *L) {
  const vnrt_engram_gate_params *p = &L->node->params->engram_gate;
  const vnrt_tensor_type *h = cl_in_type(L, 0);
  int64_t T = h->dims[0], M = h->dims[1], C = h->dims[2];
  cl_launch k;
  cl_launch_begin(L, "engram_gate", &k);
  for (int32_t i = 0; i < 5; ++i) cl_arg_in_dt(&k, i);
  cl_arg_out_dt(&k, 0);
  cl_arg_i32(&k, (int32_t)M);
  cl_arg_i64(&k, C);
  cl_arg_f32(&k, (float)p->eps);
  cl_arg_i32(&k, p->sqrt_gate);
  return cl_launch_rows(&k, T * M, CL_REDUCE_WG);
}

vnrt_status cl_short_conv_lower(cl_lower *L) {
  const vnrt_short_conv_params *p = &L->node->params->short_conv;
  const vnrt_tensor_type *u = cl_in_type(L, 0), *w = cl_in_type(L, 3);
  int64_t T = u->dims[0], M = u->dims[1], C = u->dims[2], K = w->dims[1];
  int64_t dil = p->dilation, P = (K - 1) * dil;
  uint64_t scale = cl_scratch(L, (uint64_t)(T * M) * 4);
  cl_launch k;
  cl_launch_begin(L, "short_conv_scale", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, scale);
  cl_arg_i64(&k, C);
  cl_arg_f32(&k, (float)p->eps);
  vnrt_status s = cl_launch_rows(&k, T * M, CL_REDUCE_WG);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "short_conv_y", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_in_dt(&k, 2);
  cl_arg_in_dt(&k, 3);
  cl_arg_scratch(&k, scale);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i64(&k, M);
  cl_arg_i64(&k, C);
  cl_arg_i32(&k, (int32_t)K);
  cl_arg_i32(&k, (int32_t)dil);
  s = cl_launch_2d(&k, M * C, T);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "short_conv_hist", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_in_dt(&k, 2);
  cl_arg_scratch(&k, scale);
  cl_arg_out_dt(&k, 1);
  cl_arg_i64(&k, T);
  cl_arg_i64(&k, M);
  cl_arg_i64(&k, C);
  cl_arg_i64(&k, P);
  return cl_launch_2d(&k, M * C, P);
}
