/* OpenCL lowering of the elementwise and shape ops: broadcast binary ops, activations, scale,
 * clamp, cast, reshape/transpose/slice/concat as strided copies, and kv_write (its row range
 * checked on the device first; shaders elementwise.cl). */
#include <string.h>

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

static int unary_code(vnrt_op op) {
  switch (op) {
    case VNRT_OP_NEG:
      return UN_NEG;
    case VNRT_OP_EXP:
      return UN_EXP;
    case VNRT_OP_SQRT:
      return UN_SQRT;
    case VNRT_OP_RSQRT:
      return UN_RSQRT;
    case VNRT_OP_TANH:
      return UN_TANH;
    case VNRT_OP_RELU:
      return UN_RELU;
    case VNRT_OP_SIGMOID:
      return UN_SIGMOID;
    case VNRT_OP_SILU:
      return UN_SILU;
    case VNRT_OP_GELU:
      return UN_GELU;
    case VNRT_OP_SOFTPLUS:
      return UN_SOFTPLUS;
    case VNRT_OP_SQRT_SOFTPLUS:
      return UN_SQRT_SOFTPLUS;
    case VNRT_OP_SCALE:
      return UN_SCALE;
    case VNRT_OP_CLAMP:
      return UN_CLAMP;
    default:
      return -1;
  }
}

static int32_t norm_axis(int64_t axis, int32_t rank) {
  if (axis < 0) axis += rank;
  return (axis < 0 || axis >= rank) ? -1 : (int32_t)axis;
}

/* Row-major element strides of t, right-aligned into 4 slots (leading slots 0). */
static void strides4(const vnrt_tensor_type *t, int64_t out[4]) {
  int64_t s = 1;
  for (int i = 0; i < 4; ++i) out[i] = 0;
  for (int32_t d = t->rank - 1; d >= 0; --d) {
    out[4 - t->rank + d] = s;
    s *= t->dims[d];
  }
}

/* Dims of t right-aligned into 4 slots (leading slots 1). */
static void dims4(const vnrt_tensor_type *t, int64_t out[4]) {
  for (int i = 0; i < 4; ++i) out[i] = 1;
  for (int32_t d = 0; d < t->rank; ++d) out[4 - t->rank + d] = t->dims[d];
}

int cl_elementwise_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                            const vnrt_backend_node *node) {
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  switch (node->op) {
    case VNRT_OP_ADD:
    case VNRT_OP_SUB:
    case VNRT_OP_MUL:
    case VNRT_OP_DIV: {
      const vnrt_tensor_type *a = cl_q_in(g, node, 0), *b = cl_q_in(g, node, 1);
      return cl_is_float(a->dtype) && cl_is_float(b->dtype) && cl_is_float(o->dtype) &&
             a->rank <= o->rank && b->rank <= o->rank;
    }
    case VNRT_OP_CAST:
      return vnrt_tensor_type_numel(cl_q_in(g, node, 0)) == vnrt_tensor_type_numel(o);
    case VNRT_OP_RESHAPE:
      return vnrt_tensor_type_bytes(cl_q_in(g, node, 0)) == vnrt_tensor_type_bytes(o);
    case VNRT_OP_TRANSPOSE: {
      const vnrt_attr *perm = vnrt_node_attr(node, "perm");
      const vnrt_tensor_type *x = cl_q_in(g, node, 0);
      if (!perm || perm->kind != VNRT_ATTR_INTS || perm->count != x->rank || o->rank != x->rank)
        return 0;
      for (int32_t d = 0; d < x->rank; ++d) {
        if (perm->ints[d] < 0 || perm->ints[d] >= x->rank) return 0;
      }
      return 1;
    }
    case VNRT_OP_SLICE: {
      const vnrt_tensor_type *x = cl_q_in(g, node, 0);
      int32_t axis = norm_axis(vnrt_node_attr_i(node, "axis", 0), x->rank);
      int64_t start = vnrt_node_attr_i(node, "start", 0);
      return axis >= 0 && o->rank == x->rank && start >= 0 &&
             start + o->dims[axis] <= x->dims[axis];
    }
    case VNRT_OP_CONCAT: {
      const vnrt_tensor_type *a = cl_q_in(g, node, 0), *b = cl_q_in(g, node, 1);
      int32_t axis = norm_axis(vnrt_node_attr_i(node, "axis", 0), o->rank);
      return axis >= 0 && a->rank == o->rank && b->rank == o->rank && a->dtype == o->dtype &&
             b->dtype == o->dtype && a->dims[axis] + b->dims[axis] == o->dims[axis];
    }
    case VNRT_OP_KV_WRITE: {
      const vnrt_tensor_type *c = cl_q_in(g, node, 0), *nw = cl_q_in(g, node, 1);
      const vnrt_tensor_type *pos = cl_q_in(g, node, 2);
      if (c->rank < 1 || nw->rank != c->rank || nw->dtype != c->dtype || o->dtype != c->dtype ||
          pos->dtype != VNRT_I32 || vnrt_tensor_type_numel(pos) != 1 ||
          vnrt_tensor_type_numel(o) != vnrt_tensor_type_numel(c)) {
        return 0;
      }
      for (int32_t d = 1; d < c->rank; ++d) {
        if (nw->dims[d] != c->dims[d]) return 0;
      }
      return 1;
    }
    default:
      return unary_code(node->op) >= 0 && cl_is_float(cl_q_in(g, node, 0)->dtype) &&
             cl_is_float(o->dtype);
  }
}

/* Broadcast strides of in (in elements) as seen from an output of rank `rank`, in 4 slots. */
static void bcast4(const vnrt_tensor_type *in, int32_t rank, int64_t out[4]) {
  int64_t s = 1;
  for (int i = 0; i < 4; ++i) out[i] = 0;
  for (int32_t d = rank - 1; d >= 0; --d) {
    int32_t id = d - (rank - in->rank);
    if (id < 0) continue;
    out[4 - rank + d] = in->dims[id] == 1 ? 0 : s;
    s *= in->dims[id];
  }
}

static vnrt_status lower_binary(cl_lower *L) {
  const vnrt_tensor_type *o = cl_out_type(L, 0);
  int code = L->node->op == VNRT_OP_ADD   ? 0
             : L->node->op == VNRT_OP_SUB ? 1
             : L->node->op == VNRT_OP_MUL ? 2
                                          : 3;
  int64_t dims[4], sa[4], sb[4];
  dims4(o, dims);
  bcast4(cl_in_type(L, 0), o->rank, sa);
  bcast4(cl_in_type(L, 1), o->rank, sb);
  int64_t n = vnrt_tensor_type_numel(o);
  cl_launch k;
  cl_launch_begin(L, "binary_op", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in_dt(&k, 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i32(&k, code);
  cl_arg_i64(&k, n);
  cl_arg_long4(&k, dims);
  cl_arg_long4(&k, sa);
  cl_arg_long4(&k, sb);
  return cl_launch_1d(&k, n);
}

static vnrt_status lower_unary(cl_lower *L) {
  const vnrt_backend_node *node = L->node;
  float p0 = 0.0f, p1 = 0.0f;
  int flags = 0;
  if (node->op == VNRT_OP_SCALE) p0 = (float)vnrt_node_attr_f(node, "s", 1.0);
  if (node->op == VNRT_OP_CLAMP) {
    if (vnrt_node_attr(node, "min")) {
      flags |= 1;
      p0 = (float)vnrt_node_attr_f(node, "min", 0.0);
    }
    if (vnrt_node_attr(node, "max")) {
      flags |= 2;
      p1 = (float)vnrt_node_attr_f(node, "max", 0.0);
    }
  }
  int64_t n = vnrt_tensor_type_numel(cl_out_type(L, 0));
  cl_launch k;
  cl_launch_begin(L, "unary_op", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i32(&k, unary_code(node->op));
  cl_arg_i64(&k, n);
  cl_arg_f32(&k, p0);
  cl_arg_f32(&k, p1);
  cl_arg_i32(&k, flags);
  return cl_launch_1d(&k, n);
}

static vnrt_status lower_cast(cl_lower *L) {
  int64_t n = vnrt_tensor_type_numel(cl_out_type(L, 0));
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

static vnrt_status lower_reshape(cl_lower *L) {
  const vnrt_backend_tensor *x = cl_in(L, 0), *o = cl_out(L, 0);
  /* The executor may give a reshape's result its input's memory: then it is a no-op. */
  if (x->buffer == o->buffer && x->offset == o->offset) return VNRT_OK;
  int64_t n = vnrt_tensor_type_numel(&o->type);
  int64_t dims[4] = {1, 1, 1, n}, st[4] = {0, 0, 0, 1};
  return copy(L, 0, dims, st, 0, st, 0);
}

static vnrt_status lower_transpose(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *o = cl_out_type(L, 0);
  const vnrt_attr *perm = vnrt_node_attr(L->node, "perm");
  int64_t in_st[4], dims[4], ss[4] = {0, 0, 0, 0}, ds[4];
  strides4(x, in_st);
  dims4(o, dims);
  strides4(o, ds);
  int32_t pad = 4 - x->rank;
  for (int32_t d = 0; d < x->rank; ++d) ss[pad + d] = in_st[pad + perm->ints[d]];
  return copy(L, 0, dims, ss, 0, ds, 0);
}

static vnrt_status lower_slice(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *o = cl_out_type(L, 0);
  int32_t axis = norm_axis(vnrt_node_attr_i(L->node, "axis", 0), x->rank);
  int64_t start = vnrt_node_attr_i(L->node, "start", 0);
  int64_t dims[4], ss[4], ds[4];
  dims4(o, dims);
  strides4(x, ss);
  strides4(o, ds);
  return copy(L, 0, dims, ss, start * ss[4 - x->rank + axis], ds, 0);
}

static vnrt_status lower_concat(cl_lower *L) {
  const vnrt_tensor_type *a = cl_in_type(L, 0), *b = cl_in_type(L, 1), *o = cl_out_type(L, 0);
  int32_t axis = norm_axis(vnrt_node_attr_i(L->node, "axis", 0), o->rank);
  int64_t ds[4], dims[4], ss[4];
  strides4(o, ds);
  dims4(a, dims);
  strides4(a, ss);
  vnrt_status s = copy(L, 0, dims, ss, 0, ds, 0);
  if (s != VNRT_OK) return s;
  dims4(b, dims);
  strides4(b, ss);
  return copy(L, 1, dims, ss, 0, ds, a->dims[axis] * ds[4 - o->rank + axis]);
}

/* info: pos tensor, T, S. */
static vnrt_status report_kv_write(vnrt_backend_exec *exec, const cl_step *st, int32_t at) {
  int32_t pos = 0;
  vnrt_status s = cl_read_i32(exec, (int32_t)st->info[0], at, &pos);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "kv_write '%s': rows [%d, %lld) out of range [0, %lld) (the cache is full or pos "
                 "is negative)",
                 exec->graph.nodes[st->node].name, (int)pos, (long long)pos + st->info[1],
                 (long long)st->info[2]);
}

static vnrt_status lower_kv_write(cl_lower *L) {
  const vnrt_tensor_type *c = cl_in_type(L, 0), *nw = cl_in_type(L, 1);
  int64_t S = c->dims[0], T = nw->dims[0];
  int64_t row = S > 0 ? vnrt_tensor_type_numel(c) / S : 0;
  /* pos must satisfy 0 <= pos and pos + T <= S, i.e. pos in [0, S - T + 1). */
  int32_t slot = cl_err_slot(L);
  cl_launch k;
  cl_launch_begin(L, "check_index", &k);
  cl_arg_in(&k, 2);
  cl_arg_in(&k, 2);
  cl_arg_i32(&k, 0);
  cl_arg_i32(&k, 1);
  cl_arg_i64(&k, 1);
  cl_arg_i64(&k, S - T + 1);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  vnrt_status s = cl_launch_single(&k, 64);
  if (s != VNRT_OK) return s;
  const int64_t info[3] = {L->node->inputs[2], T, S};
  s = cl_add_check(L, slot, report_kv_write, info, 3);
  if (s != VNRT_OK) return s;
  /* In place when the executor gave the result the cache's memory; else copy the cache. */
  const vnrt_backend_tensor *ct = cl_in(L, 0), *ot = cl_out(L, 0);
  if (ct->buffer != ot->buffer || ct->offset != ot->offset) {
    int64_t n = vnrt_tensor_type_numel(c);
    int64_t dims[4] = {1, 1, 1, n}, st[4] = {0, 0, 0, 1};
    s = copy(L, 0, dims, st, 0, st, 0);
    if (s != VNRT_OK) return s;
  }
  int64_t n = T * row;
  cl_launch_begin(L, "kv_write_rows", &k);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 2);
  cl_arg_out(&k, 0);
  cl_arg_i32(&k, (int32_t)vnrt_dtype_size(c->dtype));
  cl_arg_i64(&k, row);
  cl_arg_i64(&k, n);
  return cl_launch_1d(&k, n);
}

vnrt_status cl_elementwise_lower(cl_lower *L) {
  switch (L->node->op) {
    case VNRT_OP_ADD:
    case VNRT_OP_SUB:
    case VNRT_OP_MUL:
    case VNRT_OP_DIV:
      return lower_binary(L);
    case VNRT_OP_CAST:
      return lower_cast(L);
    case VNRT_OP_RESHAPE:
      return lower_reshape(L);
    case VNRT_OP_TRANSPOSE:
      return lower_transpose(L);
    case VNRT_OP_SLICE:
      return lower_slice(L);
    case VNRT_OP_CONCAT:
      return lower_concat(L);
    case VNRT_OP_KV_WRITE:
      return lower_kv_write(L);
    default:
      return lower_unary(L);
  }
}
