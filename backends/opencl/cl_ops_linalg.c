/* OpenCL lowering of matmul and linear (GEMM calls, cl_gemm.c) and of rms_norm, softmax and
 * swiglu (shaders linalg.cl). */
#include <string.h>

#include "cl_ops.h"

int cl_linalg_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (!cl_is_float(x->dtype) || !cl_is_float(o->dtype)) return 0;
  switch (node->op) {
    case VNRT_OP_MATMUL: {
      const vnrt_tensor_type *b = cl_q_in(g, node, 1);
      return cl_is_float(b->dtype) && x->rank >= 2 && b->rank >= 2 && o->rank >= 2 &&
             o->rank <= 4 && x->dims[x->rank - 1] == b->dims[b->rank - 2];
    }
    case VNRT_OP_LINEAR: {
      const vnrt_tensor_type *w = cl_q_in(g, node, 1);
      return cl_is_float(w->dtype) && x->rank >= 1 && w->rank == 2 &&
             x->dims[x->rank - 1] == w->dims[1];
    }
    case VNRT_OP_RMS_NORM:
      if (x->rank < 1) return 0;
      if (node->n_inputs > 1) {
        const vnrt_tensor_type *w = cl_q_in(g, node, 1);
        if (!cl_is_float(w->dtype) || vnrt_tensor_type_numel(w) != x->dims[x->rank - 1]) return 0;
      }
      return 1;
    case VNRT_OP_SOFTMAX: {
      int64_t axis = vnrt_node_attr_i(node, "axis", -1);
      if (axis < 0) axis += x->rank;
      return axis >= 0 && axis < x->rank;
    }
    case VNRT_OP_SWIGLU: {
      const vnrt_tensor_type *u = cl_q_in(g, node, 1);
      return cl_is_float(u->dtype) && vnrt_tensor_type_numel(u) == vnrt_tensor_type_numel(o) &&
             vnrt_tensor_type_numel(x) == vnrt_tensor_type_numel(o);
    }
    default:
      return 0;
  }
}

/* A's or B's element strides along C's nb batch dims (padded to 2; 0 where it broadcasts). */
static void batch_strides(const vnrt_tensor_type *t, int32_t nb, int64_t out[2]) {
  int32_t tb = t->rank - 2;
  int64_t s = t->dims[t->rank - 2] * t->dims[t->rank - 1];
  out[0] = out[1] = 0;
  for (int32_t d = nb - 1; d >= 0; --d) {
    int32_t td = d - (nb - tb);
    if (td < 0) break;
    out[2 - nb + d] = t->dims[td] == 1 ? 0 : s;
    s *= t->dims[td];
  }
}

static vnrt_status lower_gemm(cl_lower *L) {
  const vnrt_tensor_type *ta = cl_in_type(L, 0), *tb = cl_in_type(L, 1), *to = cl_out_type(L, 0);
  cl_gemm_shape s;
  memset(&s, 0, sizeof s);
  s.da = ta->dtype;
  s.db = tb->dtype;
  s.dc = to->dtype;
  s.batch[0] = s.batch[1] = 1;
  s.a_numel = vnrt_tensor_type_numel(ta);
  s.b_numel = vnrt_tensor_type_numel(tb);
  if (L->node->op == VNRT_OP_LINEAR) {
    s.K = tb->dims[1];
    s.N = tb->dims[0];
    s.M = s.K > 0 ? s.a_numel / s.K : vnrt_tensor_type_numel(to) / (s.N > 0 ? s.N : 1);
    s.trans_b = 1;
  } else {
    s.M = ta->dims[ta->rank - 2];
    s.K = ta->dims[ta->rank - 1];
    s.N = tb->dims[tb->rank - 1];
    int32_t nb = to->rank - 2;
    for (int32_t d = 0; d < nb; ++d) s.batch[2 - nb + d] = to->dims[d];
    batch_strides(ta, nb, s.a_bstride);
    batch_strides(tb, nb, s.b_bstride);
  }
  if (s.M == 0 || s.N == 0 || s.batch[0] * s.batch[1] == 0) return VNRT_OK;
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

static vnrt_status lower_rms_norm(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t D = x->dims[x->rank - 1];
  int64_t rows = D > 0 ? vnrt_tensor_type_numel(x) / D : 0;
  cl_launch k;
  cl_launch_begin(L, "rms_norm", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_opt_in_dt(&k, 1);
  cl_arg_i32(&k, L->node->n_inputs > 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  cl_arg_f32(&k, (float)vnrt_node_attr_f(L->node, "eps", 1e-6));
  return cl_launch_rows(&k, rows, CL_REDUCE_WG);
}

static vnrt_status lower_softmax(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t axis = vnrt_node_attr_i(L->node, "axis", -1);
  if (axis < 0) axis += x->rank;
  int64_t outer = 1, inner = 1, len = x->dims[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= x->dims[d];
  for (int64_t d = axis + 1; d < x->rank; ++d) inner *= x->dims[d];
  if (len == 0) return VNRT_OK;
  cl_launch k;
  cl_launch_begin(L, "softmax", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, len);
  cl_arg_i64(&k, inner);
  return cl_launch_rows(&k, outer * inner, CL_REDUCE_WG);
}

static vnrt_status lower_swiglu(cl_lower *L) {
  int64_t n = vnrt_tensor_type_numel(cl_out_type(L, 0));
  cl_launch k;
  cl_launch_begin(L, "swiglu", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in_dt(&k, 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, n);
  cl_arg_f32(&k, (float)vnrt_node_attr_f(L->node, "limit", 0.0));
  return cl_launch_1d(&k, n);
}

vnrt_status cl_linalg_lower(cl_lower *L) {
  switch (L->node->op) {
    case VNRT_OP_MATMUL:
    case VNRT_OP_LINEAR:
      return lower_gemm(L);
    case VNRT_OP_RMS_NORM:
      return lower_rms_norm(L);
    case VNRT_OP_SOFTMAX:
      return lower_softmax(L);
    default:
      return lower_swiglu(L);
  }
}
