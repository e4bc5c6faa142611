/* OpenCL lowering of the elementwise and shape ops: broadcast binary ops, activations, scale,
 * clamp, cast, reshape/transpose/slice/concat as strided copies, and kv_write (its row range
 * checked on the device first; shaders elementwise.cl). */
#include "cl_ops.h"

/* Matches the UN_* codes of elementwise.cl. */
enum {
  UN_NEG,
  UN_EXP,
  UN_SQRT,
  UN_RSQRT,
  UN_TANH,
  UN_RELU,
  UN_SIGMOID,
  UN_SILU,
  UN_GELU,
  UN_SOFTPLUS,
  UN_SQRT_SOFTPLUS,
  UN_SCALE,
  UN_CLAMP
};

/* The kernel's op code of each unary op (elementwise.cl's UN_*). */
static const int8_t k_unary_code[VNRT_OP_COUNT] = {
    [VNRT_OP_NEG] = UN_NEG,
    [VNRT_OP_EXP] = UN_EXP,
    [VNRT_OP_SQRT] = UN_SQRT,
    [VNRT_OP_RSQRT] = UN_RSQRT,
    [VNRT_OP_TANH] = UN_TANH,
    [VNRT_OP_RELU] = UN_RELU,
    [VNRT_OP_SIGMOID] = UN_SIGMOID,
    [VNRT_OP_SILU] = UN_SILU,
    [VNRT_OP_GELU] = UN_GELU,
    [VNRT_OP_SOFTPLUS] = UN_SOFTPLUS,
    [VNRT_OP_SQRT_SOFTPLUS] = UN_SQRT_SOFTPLUS,
    [VNRT_OP_SCALE] = UN_SCALE,
    [VNRT_OP_CLAMP] = UN_CLAMP,
};

/* Matches the BIN_* codes of elementwise.cl. */
enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };

/* The kernel's op code of each binary op. */
static const int8_t k_binary_code[VNRT_OP_COUNT] = {
    [VNRT_OP_ADD] = BIN_ADD,
    [VNRT_OP_SUB] = BIN_SUB,
    [VNRT_OP_MUL] = BIN_MUL,
    [VNRT_OP_DIV] = BIN_DIV,
};

int cl_binary_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  const vnrt_tensor_type *a = cl_q_in(g, node, 0), *b = cl_q_in(g, node, 1);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  return cl_is_float(a->dtype) && cl_is_float(b->dtype) && cl_is_float(o->dtype) &&
         a->rank <= o->rank && b->rank <= o->rank;
}

int cl_unary_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                      const vnrt_backend_node *node) {
  return cl_is_float(cl_q_in(g, node, 0)->dtype) && cl_is_float(cl_q_out(g, node, 0)->dtype);
}

int cl_cast_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                     const vnrt_backend_node *node) {
  return vnrt_numel(cl_q_in(g, node, 0)) == vnrt_numel(cl_q_out(g, node, 0));
}

int cl_reshape_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                        const vnrt_backend_node *node) {
  return vnrt_tensor_type_bytes(cl_q_in(g, node, 0)) ==
         vnrt_tensor_type_bytes(cl_q_out(g, node, 0));
}

int cl_transpose_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                          const vnrt_backend_node *node) {
  const vnrt_transpose_params *p = &node->params->transpose;
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (p->rank != x->rank || o->rank != x->rank) return 0;
  for (int32_t d = 0; d < x->rank; ++d) {
    if (p->perm[d] < 0 || p->perm[d] >= x->rank) return 0;
  }
  return 1;
}

int cl_slice_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                      const vnrt_backend_node *node) {
  const vnrt_slice_params *p = &node->params->slice;
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  return p->axis >= 0 && p->axis < x->rank && o->rank == x->rank && p->start >= 0 &&
         p->start + o->dims[p->axis] <= x->dims[p->axis];
}

int cl_concat_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  const vnrt_tensor_type *a = cl_q_in(g, node, 0), *b = cl_q_in(g, node, 1);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  int32_t axis = node->params->concat.axis;
  return axis >= 0 && axis < o->rank && a->rank == o->rank && b->rank == o->rank &&
         a->dtype == o->dtype && b->dtype == o->dtype &&
         a->dims[axis] + b->dims[axis] == o->dims[axis];
}

int cl_kv_write_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                         const vnrt_backend_node *node) {
  const vnrt_tensor_type *c = cl_q_in(g, node, 0), *nw = cl_q_in(g, node, 1);
  const vnrt_tensor_type *pos = cl_q_in(g, node, 2), *o = cl_q_out(g, node, 0);
  if (c->rank < 1 || nw->rank != c->rank || nw->dtype != c->dtype || o->dtype != c->dtype ||
      pos->dtype != VNRT_I32 || vnrt_numel(pos) != 1 || vnrt_numel(o) != vnrt_numel(c) ||
      (node->params->kv_write.ring && c->dims[0] < 1) || vnrt_dtype_size(c->dtype) == 0) {
    return 0;
  }
  for (int32_t d = 1; d < c->rank; ++d) {
    if (nw->dims[d] != c->dims[d]) return 0;
  }
  return 1;
}

/* Broadcast strides of in (in elements) as seen from an output of rank `rank`, right-aligned
 * into 4 slots (leading slots 0). */
static void bcast4(const vnrt_tensor_type *in, int32_t rank, int64_t out[4]) {
  int64_t st[VNRT_MAX_DIMS];
  vnrt_broadcast_strides(in, rank, st);
  for (int32_t i = 0; i < 4; ++i) out[i] = 0;
  for (int32_t d = 0; d < rank; ++d) out[4 - rank + d] = st[d];
}

vnrt_status cl_binary_lower(cl_lower *L) {
  const vnrt_tensor_type *o = cl_out_type(L, 0);
  int64_t dims[4], sa[4], sb[4];
  vnrt_dims4(o, dims);
  bcast4(cl_in_type(L, 0), o->rank, sa);
  bcast4(cl_in_type(L, 1), o->rank, sb);
  int64_t n = vnrt_numel(o);
  cl_launch k;
  cl_launch_begin(L, "binary_op", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in_dt(&k, 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i32(&k, k_binary_code[L->node->op]);
  cl_arg_i64(&k, n);
  cl_arg_long4(&k, dims);
  cl_arg_long4(&k, sa);
  cl_arg_long4(&k, sb);
  return cl_launch_1d(&k, n);
}

vnrt_status cl_unary_lower(cl_lower *L) {
  const vnrt_backend_node *node = L->node;
  float p0 = 0.0f, p1 = 0.0f;
  int flags = 0;
  if (node->op == VNRT_OP_SCALE) p0 = (float)node->params->scale.s;
  if (node->op == VNRT_OP_CLAMP) {
    const vnrt_clamp_params *c = &node->params->clamp;
    if (c->has_min) {
      flags |= 1;
      p0 = (float)c->min;
    }
    if (c->has_max) {
      flags |= 2;
      p1 = (float)c->max;
    }
  }
  int64_t n = vnrt_numel(cl_out_type(L, 0));
  cl_launch k;
  cl_launch_begin(L, "unary_op", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i32(&k, k_unary_code[node->op]);
  cl_arg_i64(&k, n);
  cl_arg_f32(&k, p0);
  cl_arg_f32(&k, p1);
  cl_arg_i32(&k, flags);
  return cl_launch_1d(&k, n);
}

vnrt_status cl_cast_lower(cl_lower *L) {
  int64_t n = vnrt_numel(cl_out_type(L, 0));
  cl_launch k;
  cl_launch_begin(L, "cast_op", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, n);
  return cl_launch_1d(&k, n);
}

/* out[dbase + i·ds] = in[sbase + i·ss] over the iteration dims (elements of esize bytes). */
static vnrt_status copy(cl_lower *L, int32_t in, const int64_t dims[4], const int64_t ss[4],
                        int64_t sbase, const int64_t ds[4], int64_t dbase) {
  int64_t n = dims[0] * dims[1] * dims[2] * dims[3];
  cl_launch k;
  cl_launch_begin(L, "copy_strided", &k);
  cl_arg_in(&k, in);
  cl_arg_out(&k, 0);
  cl_arg_i32(&k, (int32_t)vnrt_dtype_size(cl_out_type(L, 0)->dtype));
  cl_arg_i64(&k, n);
  cl_arg_long4(&k, dims);
  cl_arg_long4(&k, ss);
  cl_arg_i64(&k, sbase);
  cl_arg_long4(&k, ds);
  cl_arg_i64(&k, dbase);
  return cl_launch_1d(&k, n);
}

/* out = in over n elements, both contiguous from their starts. */
static vnrt_status copy_all(cl_lower *L, int32_t in, int64_t n) {
  int64_t bytes = n * (int64_t)vnrt_dtype_size(cl_out_type(L, 0)->dtype);
  cl_launch k;
  cl_launch_begin(L, "copy_bytes", &k);
  cl_arg_in(&k, in);
  cl_arg_out(&k, 0);
  cl_arg_i64(&k, bytes);
  return cl_launch_1d(&k, (bytes + 63) / 64);
}

vnrt_status cl_reshape_lower(cl_lower *L) {
  const vnrt_backend_tensor *x = cl_in(L, 0), *o = cl_out(L, 0);
  /* The executor may give a reshape's result its input's memory: then it is a no-op. */
  if (x->buffer == o->buffer && x->offset == o->offset) return VNRT_OK;
  return copy_all(L, 0, vnrt_numel(&o->type));
}

vnrt_status cl_transpose_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *o = cl_out_type(L, 0);
  const int32_t *perm = L->node->params->transpose.perm;
  int64_t in_st[4], dims[4], ss[4] = {0, 0, 0, 0}, ds[4];
  vnrt_strides4(x, in_st);
  vnrt_dims4(o, dims);
  vnrt_strides4(o, ds);
  int32_t pad = 4 - x->rank;
  for (int32_t d = 0; d < x->rank; ++d) ss[pad + d] = in_st[pad + perm[d]];
  return copy(L, 0, dims, ss, 0, ds, 0);
}

vnrt_status cl_slice_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *o = cl_out_type(L, 0);
  const vnrt_slice_params *p = &L->node->params->slice;
  int64_t dims[4], ss[4], ds[4];
  vnrt_dims4(o, dims);
  vnrt_strides4(x, ss);
  vnrt_strides4(o, ds);
  return copy(L, 0, dims, ss, p->start * ss[4 - x->rank + p->axis], ds, 0);
}

vnrt_status cl_concat_lower(cl_lower *L) {
  const vnrt_tensor_type *a = cl_in_type(L, 0), *b = cl_in_type(L, 1), *o = cl_out_type(L, 0);
  int32_t axis = L->node->params->concat.axis;
  int64_t ds[4], dims[4], ss[4];
  vnrt_strides4(o, ds);
  vnrt_dims4(a, dims);
  vnrt_strides4(a, ss);
  vnrt_status s = copy(L, 0, dims, ss, 0, ds, 0);
  if (s != VNRT_OK) return s;
  vnrt_dims4(b, dims);
  vnrt_strides4(b, ss);
  return copy(L, 1, dims, ss, 0, ds, a->dims[axis] * ds[4 - o->rank + axis]);
}

/* info: pos tensor, T, S. */
static vnrt_status report_kv_write(vnrt_backend_exec *exec, const cl_step *st, int32_t at) {
  int32_t pos = 0;
  vnrt_status s = cl_check_value(exec, st, 1, &pos);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "kv_write '%s': rows [%d, %lld) out of range [0, %lld) (the cache is full or pos "
                 "is negative)",
                 exec->graph.nodes[st->node].name, (int)pos, (long long)pos + st->info[1],
                 (long long)st->info[2]);
}

/* info: pos tensor. The CPU reference's words. */
static vnrt_status report_kv_write_ring(vnrt_backend_exec *exec, const cl_step *st, int32_t at) {
  int32_t pos = 0;
  vnrt_status s = cl_check_value(exec, st, 1, &pos);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE, "kv_write '%s': pos %d is negative",
                 exec->graph.nodes[st->node].name, (int)pos);
}

vnrt_status cl_kv_write_lower(cl_lower *L) {
  const vnrt_tensor_type *c = cl_in_type(L, 0), *nw = cl_in_type(L, 1);
  int64_t S = c->dims[0], T = nw->dims[0];
  int64_t row = S > 0 ? vnrt_numel(c) / S : 0;
  const int ring = L->node->params->kv_write.ring;
  /* pos must satisfy 0 <= pos and pos + T <= S, i.e. pos in [0, S - T + 1); a ring only
   * needs pos >= 0. The check is read after the run: the kernels below write nothing for a
   * pos outside that range, and when they have items their item 0 does the check (the check
   * step follows them); else a check kernel does. */
  int32_t slot = cl_err_slot(L);
  (void)cl_err_slot(L); /* slot + 1: pos's value */
  const int64_t info[3] = {L->node->inputs[2], T, S};
  const int64_t n_write = (ring ? (T < S ? T : S) : T) * row;
  cl_launch k;
  vnrt_status s = VNRT_OK;
  if (n_write == 0) {
    cl_launch_begin(L, "check_index_val", &k);
    cl_arg_in(&k, 2);
    cl_arg_in(&k, 2);
    cl_arg_i32(&k, 0);
    cl_arg_i32(&k, 1);
    cl_arg_i64(&k, 1);
    cl_arg_i64(&k, ring ? INT64_MAX : S - T + 1);
    cl_arg_err(&k, slot);
    cl_arg_i32(&k, slot);
    s = cl_launch_single(&k, 64);
    if (s != VNRT_OK) return s;
    s = cl_add_deferred_check(L, slot, ring ? report_kv_write_ring : report_kv_write, info, 3);
    if (s != VNRT_OK) return s;
  }
  /* In place when the executor gave the result the cache's memory; else copy the cache. */
  const vnrt_backend_tensor *ct = cl_in(L, 0), *ot = cl_out(L, 0);
  if (ct->buffer != ot->buffer || ct->offset != ot->offset) {
    s = copy_all(L, 0, vnrt_numel(c));
    if (s != VNRT_OK) return s;
  }
  if (ring) {
    /* Only the last min(T, S) positions land: position pos + t goes to row (pos + t) mod S,
     * and those rows are distinct. */
    int64_t nt = T < S ? T : S;
    cl_launch_begin(L, "kv_write_ring", &k);
    cl_arg_in(&k, 1);
    cl_arg_in(&k, 2);
    cl_arg_out(&k, 0);
    cl_arg_i32(&k, (int32_t)vnrt_dtype_size(c->dtype));
    cl_arg_i64(&k, row);
    cl_arg_i64(&k, T - nt);
    cl_arg_i64(&k, S);
    cl_arg_i64(&k, nt * row);
    cl_arg_err(&k, slot);
    cl_arg_i32(&k, slot);
    s = cl_launch_1d(&k, nt * row);
  } else {
    cl_launch_begin(L, "kv_write_rows", &k);
    cl_arg_in(&k, 1);
    cl_arg_in(&k, 2);
    cl_arg_out(&k, 0);
    cl_arg_i32(&k, (int32_t)vnrt_dtype_size(c->dtype));
    cl_arg_i64(&k, row);
    cl_arg_i64(&k, T * row);
    cl_arg_i64(&k, S - T);
    cl_arg_err(&k, slot);
    cl_arg_i32(&k, slot);
    s = cl_launch_1d(&k, T * row);
  }
  if (s != VNRT_OK || n_write == 0) return s;
  return cl_add_deferred_check(L, slot, ring ? report_kv_write_ring : report_kv_write, info, 3);
}
