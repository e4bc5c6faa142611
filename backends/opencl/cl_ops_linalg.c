/* OpenCL lowering of matmul and linear (GEMM calls, cl_gemm.c; quantized weights and act_quant
 * by cl_ops_quant.c) and of rms_norm, softmax and swiglu (shaders linalg.cl). */
#include <string.h>

#include "cl_ops.h"

/* The operands and result of every op here are float. */
static int all_float(const vnrt_backend_graph *g, const vnrt_backend_node *node) {
  for (int32_t i = 0; i < node->n_inputs; ++i) {
    if (!cl_is_float(cl_q_in(g, node, i)->dtype)) return 0;
  }
  return cl_is_float(cl_q_out(g, node, 0)->dtype);
}

int cl_matmul_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  if (cl_q_gemv_node(node)) return cl_q_gemv_supports(dev, g, node);
  const vnrt_tensor_type *a = cl_q_in(g, node, 0), *b = cl_q_in(g, node, 1);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  return all_float(g, node) && a->rank >= 2 && b->rank >= 2 && o->rank >= 2 && o->rank <= 4 &&
         a->dims[a->rank - 1] == b->dims[b->rank - 2];
}

int cl_linear_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  if (cl_q_gemv_node(node)) return cl_q_gemv_supports(dev, g, node);
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *w = cl_q_in(g, node, 1);
  return all_float(g, node) && x->rank >= 1 && w->rank == 2 && x->dims[x->rank - 1] == w->dims[1];
}

int cl_rms_norm_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                         const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0);
  if (!all_float(g, node) || x->rank < 1) return 0;
  return !node->params->rms_norm.has_weight ||
         vnrt_numel(cl_q_in(g, node, 1)) == x->dims[x->rank - 1];
}

int cl_softmax_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                        const vnrt_backend_node *node) {
  int32_t axis = node->params->softmax.axis;
  return all_float(g, node) && axis >= 0 && axis < cl_q_in(g, node, 0)->rank;
}

int cl_swiglu_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  int64_t n = vnrt_numel(cl_q_out(g, node, 0));
  return all_float(g, node) && vnrt_numel(cl_q_in(g, node, 0)) == n &&
         vnrt_numel(cl_q_in(g, node, 1)) == n;
}

/* Whether an x[M, K]·w[N, K]ᵀ product takes gemv_rows4 (gemm.cl): on a CPU driver at M <= 2,
 * where the GEMM kernels' 4x4 register block would multiply copies of x's one row. */
static int gemv_rows4_ok(const cl_lower *L, int64_t M, int64_t K) {
  return L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE && M >= 1 && M <= 2 && K > 0 &&
         K % 16 == 0;
}

/* Appends gemv_rows4 over inputs a_input (x) and b_input (w [N, K]) into output 0, or into f32
 * scratch at c_off when c_off != UINT64_MAX. */
static vnrt_status launch_gemv_rows4(cl_lower *L, int32_t a_input, int32_t b_input, int64_t M,
                                     int64_t N, int64_t K, uint64_t c_off) {
  cl_launch k;
  cl_launch_begin(L, "gemv_rows4", &k);
  cl_arg_in_dt(&k, a_input);
  cl_arg_in_dt(&k, b_input);
  if (c_off == UINT64_MAX) {
    cl_arg_out_dt(&k, 0);
  } else {
    cl_arg_scratch(&k, c_off);
    cl_arg_i32(&k, VNRT_F32);
  }
  cl_arg_i64(&k, M);
  cl_arg_i64(&k, N);
  cl_arg_i64(&k, K);
  /* Work-groups of up to 8 items (32 rows), at least 4 of them where N allows, so both cores
   * of a CPU driver get work. */
  size_t items[2] = {(size_t)((N + 3) / 4), (size_t)M};
  size_t want = 8;
  while (want > 1 && items[0] < 4 * want) want /= 2;
  size_t wg = cl_launch_wg(&k, want);
  size_t lws[2] = {wg, 1};
  return cl_launch_end(&k, 2, items, lws);
}

static vnrt_status lower_gemm(cl_lower *L) {
  const vnrt_tensor_type *ta = cl_in_type(L, 0), *tb = cl_in_type(L, 1), *to = cl_out_type(L, 0);
  cl_gemm_shape s;
  memset(&s, 0, sizeof s);
  s.da = ta->dtype;
  s.db = tb->dtype;
  s.dc = to->dtype;
  s.batch[0] = s.batch[1] = 1;
  s.a_numel = vnrt_numel(ta);
  s.b_numel = vnrt_numel(tb);
  if (L->node->op == VNRT_OP_LINEAR) {
    s.K = tb->dims[1];
    s.N = tb->dims[0];
    s.M = s.K > 0 ? s.a_numel / s.K : vnrt_numel(to) / (s.N > 0 ? s.N : 1);
    s.trans_b = 1;
  } else {
    s.M = ta->dims[ta->rank - 2];
    s.K = ta->dims[ta->rank - 1];
    s.N = tb->dims[tb->rank - 1];
    int32_t nb = to->rank - 2;
    for (int32_t d = 0; d < nb; ++d) s.batch[2 - nb + d] = to->dims[d];
    vnrt_matmul_batch_strides(ta, nb, s.a_bstride);
    vnrt_matmul_batch_strides(tb, nb, s.b_bstride);
  }
  if (s.M == 0 || s.N == 0 || s.batch[0] * s.batch[1] == 0) return VNRT_OK;
  if (s.trans_b && gemv_rows4_ok(L, s.M, s.K)) {
    return launch_gemv_rows4(L, 0, 1, s.M, s.N, s.K, UINT64_MAX);
  }
  cl_gemm_impl impl = CL_GEMM_TILED;
  vnrt_status st = cl_gemm_choose(L->dev, &s, &impl);
  if (st != VNRT_OK) return st;
  cl_gemm_call *call = L->dev->host->alloc(L->dev->host->core, sizeof *call);
  if (!call) return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  memset(call, 0, sizeof *call);
  call->s = s;
  call->impl = impl;
  call->a = cl_in(L, 0)->buffer->mem;
  call->a_off = cl_in(L, 0)->offset;
  call->b = cl_in(L, 1)->buffer->mem;
  call->b_off = cl_in(L, 1)->offset;
  call->c = cl_out(L, 0)->buffer->mem;
  call->c_off = cl_out(L, 0)->offset;
  return cl_add_gemm(L, call, cl_gemm_scratch_bytes(&s, impl), 0, 0);
}

vnrt_status cl_lower_gemm_nt_to_scratch(cl_lower *L, int32_t a_input, int32_t b_input, int64_t M,
                                        int64_t N, int64_t K, uint64_t c_off) {
  cl_gemm_shape s;
  memset(&s, 0, sizeof s);
  s.M = M, s.N = N, s.K = K, s.trans_b = 1;
  s.da = cl_in_type(L, a_input)->dtype;
  s.db = cl_in_type(L, b_input)->dtype;
  s.dc = VNRT_F32;
  s.batch[0] = s.batch[1] = 1;
  s.a_numel = M * K;
  s.b_numel = N * K;
  if (M == 0 || N == 0) return VNRT_OK;
  if (gemv_rows4_ok(L, M, K)) return launch_gemv_rows4(L, a_input, b_input, M, N, K, c_off);
  cl_gemm_impl impl = CL_GEMM_TILED;
  vnrt_status st = cl_gemm_choose(L->dev, &s, &impl);
  if (st != VNRT_OK) return st;
  cl_gemm_call *call = L->dev->host->alloc(L->dev->host->core, sizeof *call);
  if (!call) return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  memset(call, 0, sizeof *call);
  call->s = s;
  call->impl = impl;
  call->a = cl_in(L, a_input)->buffer->mem;
  call->a_off = cl_in(L, a_input)->offset;
  call->b = cl_in(L, b_input)->buffer->mem;
  call->b_off = cl_in(L, b_input)->offset;
  return cl_add_gemm(L, call, cl_gemm_scratch_bytes(&s, impl), 1, c_off);
}

vnrt_status cl_rms_norm_lower(cl_lower *L) {
  const vnrt_rms_norm_params *p = &L->node->params->rms_norm;
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t D = x->dims[x->rank - 1];
  int64_t rows = D > 0 ? vnrt_numel(x) / D : 0;
  /* CPU drivers run a work-group in one thread: there a row per work-item in vectors of 16
   * beats a work-group's local-memory reduction. */
  const int row16 = L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE && D % 16 == 0;
  cl_launch k;
  cl_launch_begin(L, row16 ? "rms_norm_row16" : "rms_norm", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_opt_in_dt(&k, 1);
  cl_arg_i32(&k, p->has_weight);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  cl_arg_f32(&k, (float)p->eps);
  if (row16) {
    cl_arg_i64(&k, rows);
    size_t wg = cl_launch_wg(&k, 4), items = (size_t)(rows > 0 ? rows : 0);
    return cl_launch_end(&k, 1, &items, &wg);
  }
  return cl_launch_rows(&k, rows, CL_REDUCE_WG);
}

vnrt_status cl_softmax_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int32_t axis = L->node->params->softmax.axis;
  int64_t outer = vnrt_dims_product(x, 0, axis), len = x->dims[axis];
  int64_t inner = vnrt_dims_product(x, axis + 1, x->rank);
  if (len == 0) return VNRT_OK;
  cl_launch k;
  cl_launch_begin(L, "softmax", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, len);
  cl_arg_i64(&k, inner);
  return cl_launch_rows(&k, outer * inner, CL_REDUCE_WG);
}

vnrt_status cl_swiglu_lower(cl_lower *L) {
  int64_t n = vnrt_numel(cl_out_type(L, 0));
  cl_launch k;
  cl_launch_begin(L, "swiglu", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in_dt(&k, 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, n);
  cl_arg_f32(&k, (float)L->node->params->swiglu.limit);
  return cl_launch_1d(&k, n);
}

vnrt_status cl_matmul_lower(cl_lower *L) {
  return cl_q_gemv_node(L->node) ? cl_q_gemv_lower(L) : lower_gemm(L);
}

vnrt_status cl_linear_lower(cl_lower *L) {
  return cl_q_gemv_node(L->node) ? cl_q_gemv_lower(L) : lower_gemm(L);
}
