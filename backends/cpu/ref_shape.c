/* CPU reference kernels of the shape ops of docs/ops.md (reshape, transpose, slice, concat):
 * byte copies, so they serve every dtype. */
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"

static vnrt_status shape_error(const cpu_kernel_args *args, const char *what) {
  return args->host->error(args->host->core, VNRT_ERROR_INTERNAL, "%s '%s': %s",
                           vnrt_op_name(args->node->op), args->node->name, what);
}

/* axis (already non-negative in the params) when it lies in [0, rank), else -1. */
static int32_t checked_axis(int32_t axis, int32_t rank) {
  return (axis < 0 || axis >= rank) ? -1 : axis;
}

/* Elements before axis (outer) and bytes of one index step along axis's inner block. */
static void split_at_axis(const vnrt_tensor_type *t, int32_t axis, int64_t *outer,
                          int64_t *inner_bytes) {
  int64_t o = 1, in = (int64_t)vnrt_dtype_size(t->dtype);
  for (int32_t d = 0; d < axis; ++d) o *= t->dims[d];
  for (int32_t d = axis + 1; d < t->rank; ++d) in *= t->dims[d];
  *outer = o;
  *inner_bytes = in;
}

vnrt_status cpu_ref_reshape(const cpu_kernel_args *args) {
  size_t bytes = vnrt_tensor_type_bytes(args->out_type[0]);
  if (bytes != vnrt_tensor_type_bytes(args->in_type[0])) {
    return shape_error(args, "element counts differ");
  }
  /* The executor may alias a reshape's result with its input: then there is nothing to do. */
  if (bytes && args->out[0] != args->in[0]) memmove(args->out[0], args->in[0], bytes);
  return VNRT_OK;
}

vnrt_status cpu_ref_transpose(const cpu_kernel_args *args) {
  const vnrt_tensor_type *ti = args->in_type[0], *to = args->out_type[0];
  const vnrt_transpose_params *perm = &args->node->params->transpose;
  int32_t rank = ti->rank;
  if (perm->rank != rank || to->rank != rank || rank > VNRT_MAX_DIMS) {
    return shape_error(args, "perm does not match the input's rank");
  }
  size_t es = vnrt_dtype_size(ti->dtype);
  /* Input strides (elements) read in output-dimension order, padded to 4 dims. */
  int64_t in_stride[VNRT_MAX_DIMS], dims[VNRT_MAX_DIMS] = {1, 1, 1, 1},
                                    st[VNRT_MAX_DIMS] = {0, 0, 0, 0};
  vnrt_strides(ti, in_stride);
  int32_t pad = VNRT_MAX_DIMS - rank;
  for (int32_t d = 0; d < rank; ++d) {
    int32_t p = perm->perm[d];
    if (p < 0 || p >= rank) return shape_error(args, "perm entry out of range");
    dims[pad + d] = to->dims[d];
    st[pad + d] = in_stride[p];
  }
  const uint8_t *in = args->in[0];
  uint8_t *out = args->out[0];
  int64_t o = 0;
  for (int64_t i0 = 0; i0 < dims[0]; ++i0)
    for (int64_t i1 = 0; i1 < dims[1]; ++i1)
      for (int64_t i2 = 0; i2 < dims[2]; ++i2)
        for (int64_t i3 = 0; i3 < dims[3]; ++i3, ++o) {
          int64_t src = i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3];
          memcpy(out + (size_t)o * es, in + (size_t)src * es, es);
        }
  return VNRT_OK;
}

vnrt_status cpu_ref_slice(const cpu_kernel_args *args) {
  const vnrt_tensor_type *ti = args->in_type[0], *to = args->out_type[0];
  int32_t axis = checked_axis(args->node->params->slice.axis, ti->rank);
  if (axis < 0 || to->rank != ti->rank) return shape_error(args, "axis out of range");
  int64_t dim = ti->dims[axis], len = to->dims[axis];
  int64_t start = args->node->params->slice.start;
  if (start < 0 || len < 0 || start > dim || len > dim - start) {
    return shape_error(args, "start/len outside the axis");
  }
  int64_t outer, inner;
  split_at_axis(ti, axis, &outer, &inner);
  const uint8_t *in = args->in[0];
  uint8_t *out = args->out[0];
  for (int64_t o = 0; len > 0 && o < outer; ++o) {
    memcpy(out + (size_t)(o * len * inner), in + (size_t)((o * dim + start) * inner),
           (size_t)(len * inner));
  }
  return VNRT_OK;
}

vnrt_status cpu_ref_concat(const cpu_kernel_args *args) {
  const vnrt_tensor_type *ta = args->in_type[0], *tb = args->in_type[1], *to = args->out_type[0];
  int32_t axis = checked_axis(args->node->params->concat.axis, to->rank);
  if (axis < 0 || ta->rank != to->rank || tb->rank != to->rank ||
      ta->dims[axis] + tb->dims[axis] != to->dims[axis]) {
    return shape_error(args, "inputs do not add up to the result along axis");
  }
  int64_t outer, inner;
  split_at_axis(to, axis, &outer, &inner);
  size_t ab = (size_t)(ta->dims[axis] * inner), bb = (size_t)(tb->dims[axis] * inner);
  const uint8_t *a = args->in[0], *b = args->in[1];
  uint8_t *out = args->out[0];
  for (int64_t o = 0; o < outer; ++o) {
    if (ab) memcpy(out, a + (size_t)o * ab, ab);
    out += ab;
    if (bb) memcpy(out, b + (size_t)o * bb, bb);
    out += bb;
  }
  return VNRT_OK;
}

/* kv_write (an extension for KV caches): cache' = cache with rows [pos, pos + T) replaced by
 * new. The executor makes cache' share the cache's storage when it can (in place); otherwise
 * the cache is copied first. pos is validated before anything is written. */
vnrt_status cpu_ref_kv_write(const cpu_kernel_args *a) {
  const vnrt_tensor_type *ct = a->in_type[0], *nt = a->in_type[1];
  int64_t rows = ct->dims[0], t = nt->dims[0];
  int32_t pos = *(const int32_t *)a->in[2];
  if (a->node->params->kv_write.ring) {
    /* a ring: position pos + i goes to row (pos + i) mod rows; only the last rows positions
     * of the run are written (the earlier ones would be overwritten by them) */
    if (pos < 0) {
      return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                            "kv_write '%s': pos %d is negative", a->node->name, (int)pos);
    }
    size_t rb = rows ? vnrt_tensor_type_bytes(ct) / (size_t)rows : 0;
    if (a->out[0] != a->in[0]) memcpy(a->out[0], a->in[0], vnrt_tensor_type_bytes(ct));
    for (int64_t i = t > rows ? t - rows : 0; i < t; ++i) {
      memcpy((char *)a->out[0] + (size_t)(((int64_t)pos + i) % rows) * rb,
             (const char *)a->in[1] + (size_t)i * rb, rb);
    }
    return VNRT_OK;
  }
  if (pos < 0 || (int64_t)pos + t > rows) {
    return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                          "kv_write '%s': rows [%d, %lld) out of range [0, %lld) (the cache is "
                          "full or pos is negative)",
                          a->node->name, (int)pos, (long long)pos + (long long)t, (long long)rows);
  }
  size_t row_bytes = rows ? vnrt_tensor_type_bytes(ct) / (size_t)rows : 0;
  if (a->out[0] != a->in[0]) memcpy(a->out[0], a->in[0], vnrt_tensor_type_bytes(ct));
  memcpy((char *)a->out[0] + (size_t)pos * row_bytes, a->in[1], (size_t)t * row_bytes);
  return VNRT_OK;
}
