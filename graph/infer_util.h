/* The checking helpers of shape and dtype inference (infer_basic.c, infer_model.c): each
 * need_* checks one thing a kernel relies on and explains a rejection with the shapes
 * involved. Private to graph/. */
#ifndef VN_INFER_UTIL_H_
#define VN_INFER_UTIL_H_

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "op_table.h"

#define TS 160 /* room for any type string: "bf16[" + 4 dims of up to 20 digits */

#define INFER_ARGS                                                                   \
  const vnrt_tensor_type *in, int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, \
      vnrt_tensor_type *out, char *err, size_t err_size

/* Every infer function is reached only through the op table (op_table.c declares them). */
#define DEFINE_INFER(name) vnrt_status vn_infer_##name(INFER_ARGS)
#define DECLARE_INFER_(ID, name, min_in, max_in, n_out) DEFINE_INFER(name);
VNRT_OP_LIST(DECLARE_INFER_)
#undef DECLARE_INFER_

/* ---- Helpers --------------------------------------------------------------------------- */

static inline vnrt_status fail(char *err, size_t size, vnrt_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline vnrt_status fail(char *err, size_t size, vnrt_status status, const char *fmt, ...) {
  if (err && size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
  }
  return status;
}

#define SHAPE VNRT_ERROR_SHAPE_MISMATCH
#define ARG VNRT_ERROR_INVALID_ARGUMENT

static inline bool is_float(vnrt_dtype d) {
  return d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16;
}

static inline const vnrt_attr *find_attr(const vnrt_attr *attrs, int32_t n, const char *key) {
  for (int32_t i = 0; i < n; ++i) {
    if (attrs[i].key && strcmp(attrs[i].key, key) == 0) return &attrs[i];
  }
  return NULL;
}

/* Normalised attributes carry their schema kind, so these read exactly what was stored;
 * fallback covers the schema's "opt" attributes. */
static inline int64_t attr_i(const vnrt_attr *attrs, int32_t n, const char *key, int64_t fallback) {
  const vnrt_attr *a = find_attr(attrs, n, key);
  if (!a) return fallback;
  return a->kind == VNRT_ATTR_FLOAT ? (int64_t)a->f : a->i;
}

static inline double attr_f(const vnrt_attr *attrs, int32_t n, const char *key, double fallback) {
  const vnrt_attr *a = find_attr(attrs, n, key);
  if (!a) return fallback;
  return a->kind == VNRT_ATTR_INT ? (double)a->i : a->f;
}

/* a*b for non-negative a, b; false on int64 overflow. */
static inline bool mul_ok(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > INT64_MAX / a) return false;
  *out = a * b;
  return true;
}

static inline void set_type(vnrt_tensor_type *t, vnrt_dtype dtype, int32_t rank,
                            const int64_t *dims) {
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  t->rank = rank;
  for (int32_t i = 0; i < rank; ++i) t->dims[i] = dims[i];
}

static inline void set_type3(vnrt_tensor_type *t, vnrt_dtype dtype, int32_t rank, int64_t d0,
                             int64_t d1, int64_t d2) {
  const int64_t dims[3] = {d0, d1, d2};
  set_type(t, dtype, rank, dims);
}

static inline const char *ints_str(const int64_t *v, int32_t n, char *buf, size_t size) {
  size_t used = 0;
  int w = snprintf(buf, size, "[");
  used = w > 0 ? (size_t)w : 0;
  for (int32_t i = 0; i < n && used < size; ++i) {
    w = snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", v[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

static inline vnrt_status need_float(const char *role, const vnrt_tensor_type *t, char *err,
                                     size_t size) {
  if (is_float(t->dtype)) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected a float dtype (f32, f16 or bf16)", role,
              vn_type_str(t, a, sizeof a));
}

static inline vnrt_status need_i32(const char *role, const vnrt_tensor_type *t, char *err,
                                   size_t size) {
  if (t->dtype == VNRT_I32) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected dtype i32", role, vn_type_str(t, a, sizeof a));
}

static inline vnrt_status need_rank(const char *role, const vnrt_tensor_type *t, int32_t rank,
                                    const char *layout, char *err, size_t size) {
  if (t->rank == rank) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected rank %d %s", role, vn_type_str(t, a, sizeof a),
              (int)rank, layout);
}

static inline vnrt_status need_min_rank(const char *role, const vnrt_tensor_type *t, int32_t rank,
                                        const char *layout, char *err, size_t size) {
  if (t->rank >= rank) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected rank >= %d %s", role,
              vn_type_str(t, a, sizeof a), (int)rank, layout);
}

/* Checks that t has exactly the given dims; on failure names both t and the reference value
 * the expectation was derived from: "fn is f32[24, 200] but X is f32[2, 4, 64]: fn must be
 * [24, 256] = [(n+2)*n, n*C]". */
static inline vnrt_status need_dims(const char *role, const vnrt_tensor_type *t, int32_t rank,
                                    const int64_t *dims, const char *layout, const char *ref_role,
                                    const vnrt_tensor_type *ref, char *err, size_t size) {
  bool ok = t->rank == rank;
  for (int32_t i = 0; ok && i < rank; ++i) ok = t->dims[i] == dims[i];
  if (ok) return VNRT_OK;
  char a[TS], b[TS], e[TS];
  return fail(err, size, SHAPE, "%s is %s but %s is %s: %s must be %s = %s", role,
              vn_type_str(t, a, sizeof a), ref_role, vn_type_str(ref, b, sizeof b), role,
              ints_str(dims, rank, e, sizeof e), layout);
}

static inline vnrt_status need_dims1(const char *role, const vnrt_tensor_type *t, int64_t d0,
                                     const char *layout, const char *ref_role,
                                     const vnrt_tensor_type *ref, char *err, size_t size) {
  const int64_t dims[1] = {d0};
  return need_dims(role, t, 1, dims, layout, ref_role, ref, err, size);
}

static inline vnrt_status need_dims2(const char *role, const vnrt_tensor_type *t, int64_t d0,
                                     int64_t d1, const char *layout, const char *ref_role,
                                     const vnrt_tensor_type *ref, char *err, size_t size) {
  const int64_t dims[2] = {d0, d1};
  return need_dims(role, t, 2, dims, layout, ref_role, ref, err, size);
}

static inline vnrt_status need_dims3(const char *role, const vnrt_tensor_type *t, int64_t d0,
                                     int64_t d1, int64_t d2, const char *layout,
                                     const char *ref_role, const vnrt_tensor_type *ref, char *err,
                                     size_t size) {
  const int64_t dims[3] = {d0, d1, d2};
  return need_dims(role, t, 3, dims, layout, ref_role, ref, err, size);
}

static inline vnrt_status both_fail(const char *ra, const vnrt_tensor_type *a, const char *rb,
                                    const vnrt_tensor_type *b, char *err, size_t size,
                                    const char *why) {
  char sa[TS], sb[TS];
  return fail(err, size, SHAPE, "%s is %s but %s is %s: %s", ra, vn_type_str(a, sa, sizeof sa), rb,
              vn_type_str(b, sb, sizeof sb), why);
}

/* Resolves a possibly negative axis against rank; false if out of [-rank, rank). */
static inline bool norm_axis(int64_t axis, int32_t rank, int32_t *out) {
  if (axis < -(int64_t)rank || axis >= rank) return false;
  *out = (int32_t)(axis < 0 ? axis + rank : axis);
  return true;
}

static inline vnrt_status need_nonneg(const char *key, double v, char *err, size_t size) {
  if (v >= 0.0) return VNRT_OK;
  return fail(err, size, ARG, "attribute %s = %g must be >= 0", key, v);
}

static inline vnrt_status need_bool(const char *key, int64_t v, char *err, size_t size) {
  if (v == 0 || v == 1) return VNRT_OK;
  return fail(err, size, ARG, "attribute %s = %" PRId64 " must be 0 or 1", key, v);
}

/* The most Sinkhorn iterations hc_pre and sinkhorn accept (docs/ops.md, "Attribute limits"):
 * iters scales their work beyond the tensor sizes, so it is bounded at graph-build time. */
#define VN_MAX_ITERS 1000

static inline vnrt_status need_iters(int64_t iters, char *err, size_t size) {
  if (iters > VN_MAX_ITERS) {
    return fail(err, size, ARG, "attribute iters = %" PRId64 " exceeds the limit %d", iters,
                VN_MAX_ITERS);
  }
  if (iters >= 1) return VNRT_OK;
  return fail(err, size, ARG, "attribute iters = %" PRId64 " must be >= 1", iters);
}

/* ---- Quantized weights (docs/ops.md, "Quantized weights") ------------------------------ */

static inline bool is_quant_codes(vnrt_dtype d) { return d == VNRT_E4M3 || d == VNRT_E2M1; }

/* The block of a quantized weight: the `block` attribute, else the format's: 128 x 128 for
 * e4m3, 1 x 32 for e2m1. */
static inline vnrt_status quant_block(const vnrt_attr *attrs, int32_t n_attrs, vnrt_dtype codes,
                                      int64_t block[2], char *err, size_t size) {
  const vnrt_attr *a = find_attr(attrs, n_attrs, "block");
  vn_quant_default_block(codes, block);
  if (!a) return VNRT_OK;
  if (a->count != 2 || a->ints[0] < 1 || a->ints[1] < 1 || a->ints[0] > INT32_MAX ||
      a->ints[1] > INT32_MAX) {
    char b[TS];
    return fail(err, size, ARG, "attribute block = %s must be two positive integers [rows, cols]",
                ints_str(a->ints, a->count, b, sizeof b));
  }
  block[0] = a->ints[0];
  block[1] = a->ints[1];
  return VNRT_OK;
}

/* Checks a weight operand: f32/f16/bf16 with no scale, or e4m3/e2m1 codes (rank >= 2) with an
 * e8m0 scale (NULL when the scale input was left off) of dims [leading dims of w...,
 * ceil(rows / block[0]), ceil(cols / block[1])] over w's last two dims. */
static inline vnrt_status need_weight(const char *role, const vnrt_tensor_type *w,
                                      const vnrt_tensor_type *scale, const vnrt_attr *attrs,
                                      int32_t n_attrs, char *err, size_t size) {
  char a[TS], b[TS];
  if (is_float(w->dtype)) {
    if (!scale) return VNRT_OK;
    return fail(err, size, ARG,
                "%s is %s but a scale input was given: only e4m3 or e2m1 codes "
                "take one",
                role, vn_type_str(w, a, sizeof a));
  }
  if (!is_quant_codes(w->dtype) || w->rank < 2) {
    return fail(err, size, SHAPE,
                "%s is %s: expected a float dtype (f32, f16, bf16) or e4m3/e2m1 codes (rank >= 2) "
                "with an e8m0 scale",
                role, vn_type_str(w, a, sizeof a));
  }
  if (!scale) {
    return fail(err, size, ARG, "%s is %s: quantized codes need their e8m0 scale input", role,
                vn_type_str(w, a, sizeof a));
  }
  int64_t blk[2];
  VN_RETURN_IF_ERROR(quant_block(attrs, n_attrs, w->dtype, blk, err, size));
  const int32_t r = w->rank;
  bool ok = scale->dtype == VNRT_E8M0 && scale->rank == r;
  for (int32_t d = 0; ok && d < r - 2; ++d) ok = scale->dims[d] == w->dims[d];
  const int64_t rows = (w->dims[r - 2] + blk[0] - 1) / blk[0];
  const int64_t cols = (w->dims[r - 1] + blk[1] - 1) / blk[1];
  ok = ok && scale->dims[r - 2] == rows && scale->dims[r - 1] == cols;
  if (!ok) {
    return fail(err, size, SHAPE,
                "%s is %s in %" PRId64 " x %" PRId64
                " blocks: its scale must be e8m0 with dims "
                "[..., %" PRId64 ", %" PRId64 "] (one per block), not %s",
                role, vn_type_str(w, a, sizeof a), blk[0], blk[1], rows, cols,
                vn_type_str(scale, b, sizeof b));
  }
  return VNRT_OK;
}

/* act_quant is 0 or 128; with 128 every channel count k it quantizes must be a multiple. */
static inline vnrt_status need_act_quant(const vnrt_attr *attrs, int32_t n_attrs, const char *what,
                                         int64_t k, char *err, size_t size) {
  const int64_t aq = attr_i(attrs, n_attrs, "act_quant", 0);
  if (aq != 0 && aq != 128) {
    return fail(err, size, ARG, "attribute act_quant = %" PRId64 " must be 0 or 128", aq);
  }
  if (aq && k % aq != 0) {
    return fail(err, size, ARG,
                "act_quant = 128 quantizes %s in blocks of 128 channels, but it has %" PRId64, what,
                k);
  }
  return VNRT_OK;
}

#endif /* VN_INFER_UTIL_H_ */
