/* OpenCL lowering of the mHC ops: hc_expand (a strided copy), hc_pre and hc_head (the mix
 * projection as a GEMM plus a row norm, per-token finish with Sinkhorn, weighted collapse),
 * hc_post and sinkhorn (shaders mhc.cl, gemm.cl, engram.cl, elementwise.cl). */
#include "cl_ops.h"

int cl_mhc_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                    const vnrt_backend_node *node) {
  const vnrt_tensor_type *X = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  for (int32_t i = 0; i < node->n_inputs; ++i) {
    if (!cl_is_float(cl_q_in(g, node, i)->dtype)) return 0;
  }
  for (int32_t i = 0; i < node->n_outputs; ++i) {
    if (!cl_is_float(cl_q_out(g, node, i)->dtype)) return 0;
  }
  switch (node->op) {
    case VNRT_OP_HC_EXPAND:
      return X->rank >= 1 && o->rank >= 2 && X->dtype == o->dtype &&
             o->dims[o->rank - 1] == X->dims[X->rank - 1];
    case VNRT_OP_SINKHORN:
      return X->rank >= 2 && X->dims[X->rank - 1] == X->dims[X->rank - 2];
    default:
      break;
  }
  if (X->rank < 2) return 0;
  int64_t n = X->dims[X->rank - 2], C = X->dims[X->rank - 1];
  if (node->op == VNRT_OP_HC_POST) return 1;
  int64_t rows = node->op == VNRT_OP_HC_PRE ? (n + 2) * n : n;
  return vnrt_tensor_type_numel(cl_q_in(g, node, 1)) == rows * n * C &&
         vnrt_tensor_type_numel(cl_q_in(g, node, 2)) >= (node->op == VNRT_OP_HC_PRE ? 3 : 1) &&
         vnrt_tensor_type_numel(cl_q_in(g, node, 3)) >= rows;
}

static vnrt_status lower_expand(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *o = cl_out_type(L, 0);
  int64_t C = x->dims[x->rank - 1], n = o->dims[o->rank - 2];
  int64_t T = C > 0 ? vnrt_tensor_type_numel(x) / C : 0;
  int64_t dims[4] = {1, T, n, C}, ss[4] = {0, C, 0, 1}, ds[4] = {0, n * C, C, 1};
  int64_t total = T * n * C;
  cl_launch k;
  cl_launch_begin(L, "copy_strided", &k);
  cl_arg_in(&k, 0);
  cl_arg_out(&k, 0);
  cl_arg_i32(&k, (int32_t)vnrt_dtype_size(o->dtype));
  cl_arg_i64(&k, total);
  cl_arg_long4(&k, dims);
  cl_arg_long4(&k, ss);
  cl_arg_i64(&k, 0);
  cl_arg_long4(&k, ds);
  cl_arg_i64(&k, 0);
  return cl_launch_1d(&k, total);
}

/* dot[t, r] = fn[r]·X[t] (a GEMM into scratch) and inv[t] = rsqrt(mean(X[t]^2) + norm_eps). */
static vnrt_status launch_mix(cl_lower *L, int64_t T, int64_t nc, int64_t rows, uint64_t dot,
                              uint64_t inv) {
  vnrt_status s = cl_lower_gemm_nt_to_scratch(L, 0, 1, T, rows, nc, dot);
  if (s != VNRT_OK) return s;
  cl_launch k;
  cl_launch_begin(L, "short_conv_scale", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, inv);
  cl_arg_i64(&k, nc);
  cl_arg_f32(&k, (float)vnrt_node_attr_f(L->node, "norm_eps", 1e-6));
  return cl_launch_rows(&k, T, CL_REDUCE_WG);
}

static vnrt_status launch_collapse(cl_lower *L, int64_t T, int64_t n, int64_t C, uint64_t w_off) {
  cl_launch k;
  cl_launch_begin(L, "hc_collapse", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, w_off);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_i64(&k, C);
  return cl_launch_2d(&k, C, T);
}

static vnrt_status lower_pre_head(cl_lower *L) {
  const vnrt_tensor_type *X = cl_in_type(L, 0);
  int64_t n = X->dims[X->rank - 2], C = X->dims[X->rank - 1];
  int64_t T = n * C > 0 ? vnrt_tensor_type_numel(X) / (n * C) : 0;
  if (T == 0) return VNRT_OK;
  int pre = L->node->op == VNRT_OP_HC_PRE;
  int64_t rows = pre ? (n + 2) * n : n;
  float eps = (float)vnrt_node_attr_f(L->node, "eps", 1e-6);
  uint64_t mix = cl_scratch(L, (uint64_t)(T * rows) * 4);
  uint64_t inv = cl_scratch(L, (uint64_t)T * 4);
  uint64_t w = cl_scratch(L, (uint64_t)(T * n) * 4);
  vnrt_status s = launch_mix(L, T, n * C, rows, mix, inv);
  if (s != VNRT_OK) return s;
  cl_launch k;
  if (pre) {
    uint64_t lt = cl_scratch(L, (uint64_t)(T * n * n) * 4);
    cl_launch_begin(L, "hc_pre_finish", &k);
    cl_arg_scratch(&k, mix);
    cl_arg_scratch(&k, inv);
    cl_arg_in_dt(&k, 2);
    cl_arg_in_dt(&k, 3);
    cl_arg_out_dt(&k, 1);
    cl_arg_out_dt(&k, 2);
    cl_arg_scratch(&k, w);
    cl_arg_scratch(&k, lt);
    cl_arg_i64(&k, T);
    cl_arg_i32(&k, (int32_t)n);
    cl_arg_i32(&k, (int32_t)vnrt_node_attr_i(L->node, "iters", 20));
    cl_arg_f32(&k, eps);
  } else {
    cl_launch_begin(L, "hc_head_finish", &k);
    cl_arg_scratch(&k, mix);
    cl_arg_scratch(&k, inv);
    cl_arg_in_dt(&k, 2);
    cl_arg_in_dt(&k, 3);
    cl_arg_scratch(&k, w);
    cl_arg_i64(&k, T);
    cl_arg_i32(&k, (int32_t)n);
    cl_arg_f32(&k, eps);
  }
  s = cl_launch_1d(&k, T);
  if (s != VNRT_OK) return s;
  return launch_collapse(L, T, n, C, w);
}

static vnrt_status lower_post(cl_lower *L) {
  const vnrt_tensor_type *X = cl_in_type(L, 0);
  int64_t n = X->dims[X->rank - 2], C = X->dims[X->rank - 1];
  int64_t T = n * C > 0 ? vnrt_tensor_type_numel(X) / (n * C) : 0;
  cl_launch k;
  cl_launch_begin(L, "hc_post", &k);
  for (int32_t i = 0; i < 4; ++i) cl_arg_in_dt(&k, i);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_i64(&k, C);
  return cl_launch_2d(&k, C, T * n);
}

static vnrt_status lower_sinkhorn(cl_lower *L) {
  const vnrt_tensor_type *Lt = cl_in_type(L, 0);
  int64_t n = Lt->dims[Lt->rank - 1];
  int64_t batch = n > 0 ? vnrt_tensor_type_numel(Lt) / (n * n) : 0;
  if (batch == 0) return VNRT_OK;
  uint64_t work = cl_scratch(L, (uint64_t)(batch * n * n) * 4);
  cl_launch k;
  cl_launch_begin(L, "sinkhorn", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, work);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, batch);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_i32(&k, (int32_t)vnrt_node_attr_i(L->node, "iters", 20));
  cl_arg_f32(&k, (float)vnrt_node_attr_f(L->node, "eps", 1e-6));
  return cl_launch_1d(&k, batch);
}

vnrt_status cl_mhc_lower(cl_lower *L) {
  switch (L->node->op) {
    case VNRT_OP_HC_EXPAND:
      return lower_expand(L);
    case VNRT_OP_HC_POST:
      return lower_post(L);
    case VNRT_OP_SINKHORN:
      return lower_sinkhorn(L);
    default:
      return lower_pre_head(L);
  }
}
