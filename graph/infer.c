/* Shape and dtype inference for every op of docs/ops.md, with the dtype rules of the attribute
 * schema: each vn_infer_<op> checks everything its kernels rely on and explains a rejection
 * with the shapes involved, e.g. "x is f32[4, 64] but w is f16[128, 32]: inner dims differ". */
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

static vnrt_status fail(char *err, size_t size, vnrt_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static vnrt_status fail(char *err, size_t size, vnrt_status status, const char *fmt, ...) {
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

static bool is_float(vnrt_dtype d) { return d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16; }

static const vnrt_attr *find_attr(const vnrt_attr *attrs, int32_t n, const char *key) {
  for (int32_t i = 0; i < n; ++i) {
    if (attrs[i].key && strcmp(attrs[i].key, key) == 0) return &attrs[i];
  }
  return NULL;
}

/* Normalised attributes carry their schema kind, so these read exactly what was stored;
 * fallback covers the schema's "opt" attributes. */
static int64_t attr_i(const vnrt_attr *attrs, int32_t n, const char *key, int64_t fallback) {
  const vnrt_attr *a = find_attr(attrs, n, key);
  if (!a) return fallback;
  return a->kind == VNRT_ATTR_FLOAT ? (int64_t)a->f : a->i;
}

static double attr_f(const vnrt_attr *attrs, int32_t n, const char *key, double fallback) {
  const vnrt_attr *a = find_attr(attrs, n, key);
  if (!a) return fallback;
  return a->kind == VNRT_ATTR_INT ? (double)a->i : a->f;
}

/* a*b for non-negative a, b; false on int64 overflow. */
static bool mul_ok(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > INT64_MAX / a) return false;
  *out = a * b;
  return true;
}

static void set_type(vnrt_tensor_type *t, vnrt_dtype dtype, int32_t rank, const int64_t *dims) {
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  t->rank = rank;
  for (int32_t i = 0; i < rank; ++i) t->dims[i] = dims[i];
}

static void set_type3(vnrt_tensor_type *t, vnrt_dtype dtype, int32_t rank, int64_t d0, int64_t d1,
                      int64_t d2) {
  const int64_t dims[3] = {d0, d1, d2};
  set_type(t, dtype, rank, dims);
}

static const char *ints_str(const int64_t *v, int32_t n, char *buf, size_t size) {
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

static vnrt_status need_float(const char *role, const vnrt_tensor_type *t, char *err, size_t size) {
  if (is_float(t->dtype)) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected a float dtype (f32, f16 or bf16)", role,
              vn_type_str(t, a, sizeof a));
}

static vnrt_status need_i32(const char *role, const vnrt_tensor_type *t, char *err, size_t size) {
  if (t->dtype == VNRT_I32) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected dtype i32", role, vn_type_str(t, a, sizeof a));
}

static vnrt_status need_rank(const char *role, const vnrt_tensor_type *t, int32_t rank,
                             const char *layout, char *err, size_t size) {
  if (t->rank == rank) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected rank %d %s", role, vn_type_str(t, a, sizeof a),
              (int)rank, layout);
}

static vnrt_status need_min_rank(const char *role, const vnrt_tensor_type *t, int32_t rank,
                                 const char *layout, char *err, size_t size) {
  if (t->rank >= rank) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected rank >= %d %s", role,
              vn_type_str(t, a, sizeof a), (int)rank, layout);
}

/* Checks that t has exactly the given dims; on failure names both t and the reference value
 * the expectation was derived from: "fn is f32[24, 200] but X is f32[2, 4, 64]: fn must be
 * [24, 256] = [(n+2)*n, n*C]". */
static vnrt_status need_dims(const char *role, const vnrt_tensor_type *t, int32_t rank,
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

static vnrt_status need_dims1(const char *role, const vnrt_tensor_type *t, int64_t d0,
                              const char *layout, const char *ref_role, const vnrt_tensor_type *ref,
                              char *err, size_t size) {
  const int64_t dims[1] = {d0};
  return need_dims(role, t, 1, dims, layout, ref_role, ref, err, size);
}

static vnrt_status need_dims2(const char *role, const vnrt_tensor_type *t, int64_t d0, int64_t d1,
                              const char *layout, const char *ref_role, const vnrt_tensor_type *ref,
                              char *err, size_t size) {
  const int64_t dims[2] = {d0, d1};
  return need_dims(role, t, 2, dims, layout, ref_role, ref, err, size);
}

static vnrt_status need_dims3(const char *role, const vnrt_tensor_type *t, int64_t d0, int64_t d1,
                              int64_t d2, const char *layout, const char *ref_role,
                              const vnrt_tensor_type *ref, char *err, size_t size) {
  const int64_t dims[3] = {d0, d1, d2};
  return need_dims(role, t, 3, dims, layout, ref_role, ref, err, size);
}

static vnrt_status both_fail(const char *ra, const vnrt_tensor_type *a, const char *rb,
                             const vnrt_tensor_type *b, char *err, size_t size, const char *why) {
  char sa[TS], sb[TS];
  return fail(err, size, SHAPE, "%s is %s but %s is %s: %s", ra, vn_type_str(a, sa, sizeof sa), rb,
              vn_type_str(b, sb, sizeof sb), why);
}

/* Resolves a possibly negative axis against rank; false if out of [-rank, rank). */
static bool norm_axis(int64_t axis, int32_t rank, int32_t *out) {
  if (axis < -(int64_t)rank || axis >= rank) return false;
  *out = (int32_t)(axis < 0 ? axis + rank : axis);
  return true;
}

static vnrt_status need_nonneg(const char *key, double v, char *err, size_t size) {
  if (v >= 0.0) return VNRT_OK;
  return fail(err, size, ARG, "attribute %s = %g must be >= 0", key, v);
}

static vnrt_status need_bool(const char *key, int64_t v, char *err, size_t size) {
  if (v == 0 || v == 1) return VNRT_OK;
  return fail(err, size, ARG, "attribute %s = %" PRId64 " must be 0 or 1", key, v);
}

static vnrt_status need_iters(int64_t iters, char *err, size_t size) {
  if (iters >= 1) return VNRT_OK;
  return fail(err, size, ARG, "attribute iters = %" PRId64 " must be >= 1", iters);
}

/* ---- Elementwise and shape ------------------------------------------------------------- */

/* add sub mul div: one float dtype, numpy broadcasting. */
static vnrt_status infer_binary(INFER_ARGS) {
  const vnrt_tensor_type *a = &in[0], *b = &in[1];
  VN_RETURN_IF_ERROR(need_float("a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_float("b", b, err, err_size));
  if (a->dtype != b->dtype) return both_fail("a", a, "b", b, err, err_size, "dtypes differ");
  int32_t rank = a->rank > b->rank ? a->rank : b->rank;
  int64_t dims[VNRT_MAX_DIMS] = {0};
  for (int32_t i = 0; i < rank; ++i) {
    int64_t da = i < a->rank ? a->dims[a->rank - 1 - i] : 1;
    int64_t db = i < b->rank ? b->dims[b->rank - 1 - i] : 1;
    int64_t d;
    if (da == db || db == 1) {
      d = da;
    } else if (da == 1) {
      d = db;
    } else {
      char why[96];
      snprintf(why, sizeof why,
               "not broadcastable (%" PRId64 " vs %" PRId64 " in dim %d from the end)", da, db,
               (int)i + 1);
      return both_fail("a", a, "b", b, err, err_size, why);
    }
    dims[rank - 1 - i] = d;
  }
  set_type(&out[0], a->dtype, rank, dims);
  return VNRT_OK;
}

DEFINE_INFER(add) { return infer_binary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(sub) { return infer_binary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(mul) { return infer_binary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(div) { return infer_binary(in, n_in, attrs, n_attrs, out, err, err_size); }

/* Float in, same type out. */
static vnrt_status infer_unary(INFER_ARGS) {
  VN_RETURN_IF_ERROR(need_float("x", &in[0], err, err_size));
  out[0] = in[0];
  return VNRT_OK;
}

DEFINE_INFER(scale) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(neg) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(exp) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(sqrt) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(rsqrt) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(tanh) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(relu) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(sigmoid) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(silu) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(gelu) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(softplus) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }
DEFINE_INFER(sqrt_softplus) { return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size); }

DEFINE_INFER(clamp) {
  const vnrt_attr *lo = find_attr(attrs, n_attrs, "min");
  const vnrt_attr *hi = find_attr(attrs, n_attrs, "max");
  if (lo && hi && lo->f > hi->f) {
    return fail(err, err_size, ARG, "attribute min = %g is greater than max = %g", lo->f, hi->f);
  }
  return infer_unary(in, n_in, attrs, n_attrs, out, err, err_size);
}

DEFINE_INFER(cast) {
  const vnrt_attr *a = find_attr(attrs, n_attrs, "dtype");
  static const struct {
    const char *word;
    vnrt_dtype dtype;
  } k_map[] = {{"f32", VNRT_F32}, {"f16", VNRT_F16}, {"bf16", VNRT_BF16}, {"i32", VNRT_I32}};
  for (size_t i = 0; a && a->word && i < VN_ARRAY_SIZE(k_map); ++i) {
    if (strcmp(a->word, k_map[i].word) == 0) {
      out[0] = in[0];
      out[0].dtype = k_map[i].dtype;
      return VNRT_OK;
    }
  }
  return fail(err, err_size, ARG, "attribute dtype = %s is not one of f32|f16|bf16|i32",
              a && a->word ? a->word : "(none)");
}

DEFINE_INFER(reshape) {
  const vnrt_tensor_type *x = &in[0];
  const vnrt_attr *a = find_attr(attrs, n_attrs, "shape");
  char sx[TS], ss[TS * 2];
  if (!a) return fail(err, err_size, ARG, "missing attribute shape");
  if (a->count > VNRT_MAX_DIMS) {
    return fail(err, err_size, SHAPE, "shape %s has %d dims; at most %d are supported",
                ints_str(a->ints, a->count, ss, sizeof ss), (int)a->count, VNRT_MAX_DIMS);
  }
  int64_t numel = 1;
  for (int32_t i = 0; i < x->rank; ++i) {
    if (!mul_ok(numel, x->dims[i], &numel)) numel = 0; /* only with a 0 dim: x is checked */
  }
  for (int32_t i = 0; i < x->rank; ++i) {
    if (x->dims[i] == 0) numel = 0;
  }
  int32_t free_axis = -1;
  int64_t known = 1;
  for (int32_t i = 0; i < a->count; ++i) {
    int64_t v = a->ints[i];
    if (v == -1) {
      if (free_axis >= 0) {
        return fail(err, err_size, SHAPE, "shape %s has more than one -1",
                    ints_str(a->ints, a->count, ss, sizeof ss));
      }
      free_axis = i;
    } else if (v < 0) {
      return fail(err, err_size, SHAPE, "shape %s has a negative dim %" PRId64,
                  ints_str(a->ints, a->count, ss, sizeof ss), v);
    } else if (!mul_ok(known, v, &known)) {
      return fail(err, err_size, SHAPE, "shape %s: element count overflows",
                  ints_str(a->ints, a->count, ss, sizeof ss));
    }
  }
  int64_t dims[VNRT_MAX_DIMS] = {0};
  for (int32_t i = 0; i < a->count; ++i) dims[i] = a->ints[i];
  if (free_axis >= 0) {
    if (known == 0 || numel % known != 0) {
      return fail(err, err_size, SHAPE,
                  "x is %s (%" PRId64
                  " elements): cannot reshape to %s (the -1 has no exact "
                  "size)",
                  vn_type_str(x, sx, sizeof sx), numel, ints_str(a->ints, a->count, ss, sizeof ss));
    }
    dims[free_axis] = numel / known;
  } else if (known != numel) {
    return fail(err, err_size, SHAPE,
                "x is %s (%" PRId64 " elements) but shape %s has %" PRId64 " elements",
                vn_type_str(x, sx, sizeof sx), numel, ints_str(a->ints, a->count, ss, sizeof ss),
                known);
  }
  set_type(&out[0], x->dtype, a->count, dims);
  return VNRT_OK;
}

DEFINE_INFER(transpose) {
  const vnrt_tensor_type *x = &in[0];
  const vnrt_attr *a = find_attr(attrs, n_attrs, "perm");
  char sx[TS], sp[TS * 2];
  if (!a) return fail(err, err_size, ARG, "missing attribute perm");
  bool ok = a->count == x->rank;
  bool seen[VNRT_MAX_DIMS] = {false};
  int64_t dims[VNRT_MAX_DIMS] = {0};
  for (int32_t i = 0; ok && i < a->count; ++i) {
    int64_t p = a->ints[i];
    ok = p >= 0 && p < x->rank && !seen[p];
    if (ok) {
      seen[p] = true;
      dims[i] = x->dims[p];
    }
  }
  if (!ok) {
    return fail(err, err_size, SHAPE, "x is %s: perm %s is not a permutation of its %d dims",
                vn_type_str(x, sx, sizeof sx), ints_str(a->ints, a->count, sp, sizeof sp),
                (int)x->rank);
  }
  set_type(&out[0], x->dtype, x->rank, dims);
  return VNRT_OK;
}

DEFINE_INFER(slice) {
  const vnrt_tensor_type *x = &in[0];
  int64_t axis = attr_i(attrs, n_attrs, "axis", 0);
  int64_t start = attr_i(attrs, n_attrs, "start", 0);
  int64_t len = attr_i(attrs, n_attrs, "len", 0);
  char sx[TS];
  int32_t ax;
  if (!norm_axis(axis, x->rank, &ax)) {
    return fail(err, err_size, SHAPE, "x is %s: axis %" PRId64 " is out of range for rank %d",
                vn_type_str(x, sx, sizeof sx), axis, (int)x->rank);
  }
  if (start < 0 || len < 0 || start > x->dims[ax] || len > x->dims[ax] - start) {
    return fail(err, err_size, SHAPE,
                "x is %s: slice start %" PRId64 " len %" PRId64
                " is out of bounds for dim %d "
                "(size %" PRId64 ")",
                vn_type_str(x, sx, sizeof sx), start, len, (int)ax, x->dims[ax]);
  }
  out[0] = *x;
  out[0].dims[ax] = len;
  return VNRT_OK;
}

DEFINE_INFER(concat) {
  const vnrt_tensor_type *a = &in[0], *b = &in[1];
  int64_t axis = attr_i(attrs, n_attrs, "axis", 0);
  if (a->dtype != b->dtype) return both_fail("a", a, "b", b, err, err_size, "dtypes differ");
  if (a->rank != b->rank) return both_fail("a", a, "b", b, err, err_size, "ranks differ");
  int32_t ax;
  if (!norm_axis(axis, a->rank, &ax)) {
    char why[96];
    snprintf(why, sizeof why, "axis %" PRId64 " is out of range for rank %d", axis, (int)a->rank);
    return both_fail("a", a, "b", b, err, err_size, why);
  }
  for (int32_t i = 0; i < a->rank; ++i) {
    if (i != ax && a->dims[i] != b->dims[i]) {
      char why[96];
      snprintf(why, sizeof why, "dim %d differs (concat axis is %d)", (int)i, (int)ax);
      return both_fail("a", a, "b", b, err, err_size, why);
    }
  }
  out[0] = *a;
  out[0].dims[ax] = a->dims[ax] + b->dims[ax]; /* each is < 2^48: no overflow */
  return VNRT_OK;
}

/* ---- Linear algebra, norms, activations ------------------------------------------------ */

DEFINE_INFER(matmul) {
  const vnrt_tensor_type *a = &in[0], *b = &in[1];
  VN_RETURN_IF_ERROR(need_float("a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_float("b", b, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("a", a, 2, "[..., M, K]", err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("b", b, 2, "[..., K, N]", err, err_size));
  if (a->dims[a->rank - 1] != b->dims[b->rank - 2]) {
    return both_fail("a", a, "b", b, err, err_size, "inner dims differ (a's K vs b's K)");
  }
  int32_t ba = a->rank - 2, bb = b->rank - 2;
  int32_t batch = ba > bb ? ba : bb;
  int64_t dims[VNRT_MAX_DIMS] = {0};
  for (int32_t i = 0; i < batch; ++i) {
    int64_t da = i < ba ? a->dims[ba - 1 - i] : 1;
    int64_t db = i < bb ? b->dims[bb - 1 - i] : 1;
    if (da != db && da != 1 && db != 1) {
      return both_fail("a", a, "b", b, err, err_size, "batch dims are not broadcastable");
    }
    dims[batch - 1 - i] = da == 1 ? db : da;
  }
  dims[batch] = a->dims[a->rank - 2];
  dims[batch + 1] = b->dims[b->rank - 1];
  set_type(&out[0], a->dtype, batch + 2, dims);
  return VNRT_OK;
}

DEFINE_INFER(linear) {
  const vnrt_tensor_type *x = &in[0], *w = &in[1];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("w", w, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("x", x, 1, "[..., K]", err, err_size));
  VN_RETURN_IF_ERROR(need_rank("w", w, 2, "[N, K]", err, err_size));
  if (x->dims[x->rank - 1] != w->dims[1]) {
    return both_fail("x", x, "w", w, err, err_size, "inner dims differ (x[..., K], w[N, K])");
  }
  out[0] = *x;
  out[0].dims[x->rank - 1] = w->dims[0];
  return VNRT_OK;
}

DEFINE_INFER(rms_norm) {
  const vnrt_tensor_type *x = &in[0];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("x", x, 1, "[..., D]", err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("eps", attr_f(attrs, n_attrs, "eps", 0), err, err_size));
  if (n_in > 1) {
    VN_RETURN_IF_ERROR(need_float("w", &in[1], err, err_size));
    VN_RETURN_IF_ERROR(need_dims1("w", &in[1], x->dims[x->rank - 1], "[D]", "x", x, err, err_size));
  }
  out[0] = *x;
  return VNRT_OK;
}

DEFINE_INFER(softmax) {
  const vnrt_tensor_type *x = &in[0];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  int64_t axis = attr_i(attrs, n_attrs, "axis", -1);
  int32_t ax;
  if (!norm_axis(axis, x->rank, &ax)) {
    char sx[TS];
    return fail(err, err_size, SHAPE, "x is %s: axis %" PRId64 " is out of range for rank %d",
                vn_type_str(x, sx, sizeof sx), axis, (int)x->rank);
  }
  out[0] = *x;
  return VNRT_OK;
}

DEFINE_INFER(swiglu) {
  const vnrt_tensor_type *g = &in[0], *u = &in[1];
  VN_RETURN_IF_ERROR(need_float("g", g, err, err_size));
  VN_RETURN_IF_ERROR(need_float("u", u, err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("limit", attr_f(attrs, n_attrs, "limit", 0), err, err_size));
  if (g->dtype != u->dtype) return both_fail("g", g, "u", u, err, err_size, "dtypes differ");
  bool same = g->rank == u->rank;
  for (int32_t i = 0; same && i < g->rank; ++i) same = g->dims[i] == u->dims[i];
  if (!same) return both_fail("g", g, "u", u, err, err_size, "shapes differ");
  out[0] = *g;
  return VNRT_OK;
}

/* ---- Positions and attention ----------------------------------------------------------- */

DEFINE_INFER(rope) {
  const vnrt_tensor_type *x = &in[0], *pos = &in[1];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("x", x, 3, "[T, H, D]", err, err_size));
  VN_RETURN_IF_ERROR(need_i32("pos", pos, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("pos", pos, x->dims[0], "[T]", "x", x, err, err_size));
  int64_t d = x->dims[2];
  int64_t dims = attr_i(attrs, n_attrs, "dims", d);
  char sx[TS];
  if (dims < 2 || dims > d || dims % 2 != 0) {
    return fail(err, err_size, ARG,
                "x is %s: rope dims = %" PRId64 " must be even and in [2, D = %" PRId64 "]",
                vn_type_str(x, sx, sizeof sx), dims, d);
  }
  double theta = attr_f(attrs, n_attrs, "theta", 10000.0);
  if (!(theta > 0.0)) return fail(err, err_size, ARG, "attribute theta = %g must be > 0", theta);
  VN_RETURN_IF_ERROR(
      need_bool("interleaved", attr_i(attrs, n_attrs, "interleaved", 1), err, err_size));
  out[0] = *x;
  return VNRT_OK;
}

DEFINE_INFER(attention) {
  const vnrt_tensor_type *q = &in[0], *k = &in[1], *v = &in[2];
  VN_RETURN_IF_ERROR(need_float("q", q, err, err_size));
  VN_RETURN_IF_ERROR(need_float("k", k, err, err_size));
  VN_RETURN_IF_ERROR(need_float("v", v, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("q", q, 3, "[T, Hq, D]", err, err_size));
  VN_RETURN_IF_ERROR(need_rank("k", k, 3, "[S, Hkv, D]", err, err_size));
  VN_RETURN_IF_ERROR(need_rank("v", v, 3, "[S, Hkv, Dv]", err, err_size));
  if (q->dims[2] != k->dims[2]) {
    return both_fail("q", q, "k", k, err, err_size, "head dims D differ");
  }
  if (k->dims[0] != v->dims[0]) {
    return both_fail("k", k, "v", v, err, err_size, "key counts S differ");
  }
  if (k->dims[1] != v->dims[1]) {
    return both_fail("k", k, "v", v, err, err_size, "kv head counts Hkv differ");
  }
  if (k->dims[1] < 1 || q->dims[1] % k->dims[1] != 0) {
    return both_fail("q", q, "k", k, err, err_size,
                     "query heads Hq must be a multiple of kv heads Hkv >= 1");
  }
  if (k->dims[0] < 1) return both_fail("k", k, "v", v, err, err_size, "needs S >= 1 keys");
  if (n_in > 3) {
    VN_RETURN_IF_ERROR(need_float("sinks", &in[3], err, err_size));
    VN_RETURN_IF_ERROR(need_dims1("sinks", &in[3], q->dims[1], "[Hq]", "q", q, err, err_size));
  }
  if (n_in > 4) {
    /* kv_len: how many leading rows of k/v are valid (a KV cache), known at run time. */
    VN_RETURN_IF_ERROR(need_i32("kv_len", &in[4], err, err_size));
    VN_RETURN_IF_ERROR(need_dims1("kv_len", &in[4], 1, "[1]", "q", q, err, err_size));
  }
  VN_RETURN_IF_ERROR(need_bool("causal", attr_i(attrs, n_attrs, "causal", 1), err, err_size));
  int64_t window = attr_i(attrs, n_attrs, "window", 0);
  if (window < 0) {
    return fail(err, err_size, ARG, "attribute window = %" PRId64 " must be >= 0", window);
  }
  set_type3(&out[0], q->dtype, 3, q->dims[0], q->dims[1], v->dims[2]);
  return VNRT_OK;
}

/* ---- Indexing -------------------------------------------------------------------------- */

DEFINE_INFER(embedding) {
  const vnrt_tensor_type *table = &in[0], *ids = &in[1];
  VN_RETURN_IF_ERROR(need_float("table", table, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("table", table, 2, "[V, D]", err, err_size));
  VN_RETURN_IF_ERROR(need_i32("ids", ids, err, err_size));
  if (ids->rank + 1 > VNRT_MAX_DIMS) {
    char s[TS];
    return fail(err, err_size, SHAPE, "ids is %s: rank %d leaves no room for D (max rank %d)",
                vn_type_str(ids, s, sizeof s), (int)ids->rank, VNRT_MAX_DIMS);
  }
  set_type(&out[0], VNRT_F32, ids->rank, ids->dims);
  out[0].rank = ids->rank + 1;
  out[0].dims[ids->rank] = table->dims[1];
  return VNRT_OK;
}

DEFINE_INFER(topk) {
  const vnrt_tensor_type *x = &in[0];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("x", x, 1, "[..., E]", err, err_size));
  int64_t k = attr_i(attrs, n_attrs, "k", 0);
  int64_t e = x->dims[x->rank - 1];
  if (k < 1 || k > e) {
    char s[TS];
    return fail(err, err_size, ARG, "x is %s: k = %" PRId64 " must be in [1, E = %" PRId64 "]",
                vn_type_str(x, s, sizeof s), k, e);
  }
  out[0] = *x;
  out[0].dims[x->rank - 1] = k;
  out[1] = out[0];
  out[1].dtype = VNRT_I32;
  return VNRT_OK;
}

/* ---- mHC ------------------------------------------------------------------------------- */

DEFINE_INFER(hc_expand) {
  const vnrt_tensor_type *x = &in[0];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("x", x, 2, "[T, C]", err, err_size));
  int64_t n = attr_i(attrs, n_attrs, "n", 4);
  if (n < 1) return fail(err, err_size, ARG, "attribute n = %" PRId64 " must be >= 1", n);
  set_type3(&out[0], x->dtype, 3, x->dims[0], n, x->dims[1]);
  return VNRT_OK;
}

/* The stream tensor X[T, n, C] of mHC ops. */
static vnrt_status need_streams(const vnrt_tensor_type *x, char *err, size_t size) {
  VN_RETURN_IF_ERROR(need_float("X", x, err, size));
  VN_RETURN_IF_ERROR(need_rank("X", x, 3, "[T, n, C]", err, size));
  if (x->dims[1] < 1) {
    char s[TS];
    return fail(err, size, SHAPE, "X is %s: needs n >= 1 streams", vn_type_str(x, s, sizeof s));
  }
  return VNRT_OK;
}

DEFINE_INFER(hc_pre) {
  const vnrt_tensor_type *x = &in[0], *fn = &in[1], *scale = &in[2], *base = &in[3];
  VN_RETURN_IF_ERROR(need_streams(x, err, err_size));
  int64_t t = x->dims[0], n = x->dims[1], c = x->dims[2];
  int64_t rows, cols;
  if (!mul_ok(n + 2, n, &rows) || !mul_ok(n, c, &cols)) {
    char s[TS];
    return fail(err, err_size, SHAPE, "X is %s: (n+2)*n or n*C overflows",
                vn_type_str(x, s, sizeof s));
  }
  VN_RETURN_IF_ERROR(need_float("fn", fn, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("fn", fn, rows, cols, "[(n+2)*n, n*C]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("scale", scale, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("scale", scale, 3, "[3]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("base", base, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("base", base, rows, "[(n+2)*n]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_iters(attr_i(attrs, n_attrs, "iters", 20), err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("eps", attr_f(attrs, n_attrs, "eps", 0), err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("norm_eps", attr_f(attrs, n_attrs, "norm_eps", 0), err, err_size));
  set_type3(&out[0], x->dtype, 2, t, c, 0);
  set_type3(&out[1], VNRT_F32, 2, t, n, 0);
  set_type3(&out[2], VNRT_F32, 3, t, n, n);
  return VNRT_OK;
}

DEFINE_INFER(hc_post) {
  const vnrt_tensor_type *x = &in[0], *y = &in[1], *post = &in[2], *comb = &in[3];
  VN_RETURN_IF_ERROR(need_streams(x, err, err_size));
  int64_t t = x->dims[0], n = x->dims[1], c = x->dims[2];
  VN_RETURN_IF_ERROR(need_float("y", y, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("y", y, t, c, "[T, C]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("post", post, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("post", post, t, n, "[T, n]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("comb", comb, err, err_size));
  VN_RETURN_IF_ERROR(need_dims3("comb", comb, t, n, n, "[T, n, n]", "X", x, err, err_size));
  out[0] = *x;
  return VNRT_OK;
}

DEFINE_INFER(hc_head) {
  const vnrt_tensor_type *x = &in[0], *fn = &in[1], *scale = &in[2], *base = &in[3];
  VN_RETURN_IF_ERROR(need_streams(x, err, err_size));
  int64_t t = x->dims[0], n = x->dims[1], c = x->dims[2];
  int64_t cols;
  if (!mul_ok(n, c, &cols)) {
    char s[TS];
    return fail(err, err_size, SHAPE, "X is %s: n*C overflows", vn_type_str(x, s, sizeof s));
  }
  VN_RETURN_IF_ERROR(need_float("fn", fn, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("fn", fn, n, cols, "[n, n*C]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("scale", scale, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("scale", scale, 1, "[1]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("base", base, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("base", base, n, "[n]", "X", x, err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("eps", attr_f(attrs, n_attrs, "eps", 0), err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("norm_eps", attr_f(attrs, n_attrs, "norm_eps", 0), err, err_size));
  set_type3(&out[0], x->dtype, 2, t, c, 0);
  return VNRT_OK;
}

DEFINE_INFER(sinkhorn) {
  const vnrt_tensor_type *l = &in[0];
  VN_RETURN_IF_ERROR(need_float("L", l, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("L", l, 2, "[..., n, n]", err, err_size));
  if (l->dims[l->rank - 1] != l->dims[l->rank - 2]) {
    char s[TS];
    return fail(err, err_size, SHAPE, "L is %s: the last two dims must be equal ([..., n, n])",
                vn_type_str(l, s, sizeof s));
  }
  VN_RETURN_IF_ERROR(need_iters(attr_i(attrs, n_attrs, "iters", 20), err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("eps", attr_f(attrs, n_attrs, "eps", 0), err, err_size));
  out[0] = *l;
  out[0].dtype = VNRT_F32;
  return VNRT_OK;
}

/* ---- MoE ------------------------------------------------------------------------------- */

static vnrt_status need_logits(const vnrt_tensor_type *logits, char *err, size_t size) {
  VN_RETURN_IF_ERROR(need_float("logits", logits, err, size));
  return need_rank("logits", logits, 2, "[T, E]", err, size);
}

DEFINE_INFER(moe_route) {
  const vnrt_tensor_type *logits = &in[0];
  VN_RETURN_IF_ERROR(need_logits(logits, err, err_size));
  int64_t t = logits->dims[0], e = logits->dims[1];
  if (n_in > 1) {
    VN_RETURN_IF_ERROR(need_float("bias", &in[1], err, err_size));
    VN_RETURN_IF_ERROR(need_dims1("bias", &in[1], e, "[E]", "logits", logits, err, err_size));
  }
  int64_t k = attr_i(attrs, n_attrs, "k", 0);
  int64_t groups = attr_i(attrs, n_attrs, "n_group", 1);
  int64_t topk_group = attr_i(attrs, n_attrs, "topk_group", 1);
  char s[TS];
  vn_type_str(logits, s, sizeof s);
  if (k < 1 || k > e) {
    return fail(err, err_size, ARG, "logits is %s: k = %" PRId64 " must be in [1, E = %" PRId64 "]",
                s, k, e);
  }
  if (groups < 1 || e % groups != 0) {
    return fail(err, err_size, ARG,
                "logits is %s: n_group = %" PRId64 " must be >= 1 and divide E = %" PRId64, s,
                groups, e);
  }
  if (groups > 1 && e / groups < 2) {
    /* A group's score is the sum of its two best experts. */
    return fail(err, err_size, ARG,
                "logits is %s: n_group = %" PRId64 " leaves fewer than 2 experts per group", s,
                groups);
  }
  if (topk_group < 1 || topk_group > groups) {
    return fail(err, err_size, ARG,
                "attribute topk_group = %" PRId64 " must be in [1, n_group = %" PRId64 "]",
                topk_group, groups);
  }
  if (k > topk_group * (e / groups)) {
    return fail(err, err_size, ARG,
                "logits is %s: k = %" PRId64 " exceeds the %" PRId64
                " experts of topk_group = %" PRId64 " groups of %" PRId64,
                s, k, topk_group * (e / groups), topk_group, e / groups);
  }
  set_type3(&out[0], VNRT_F32, 2, t, k, 0);
  set_type3(&out[1], VNRT_I32, 2, t, k, 0);
  return VNRT_OK;
}

DEFINE_INFER(moe_hash_route) {
  const vnrt_tensor_type *logits = &in[0], *ids = &in[1], *tid2eid = &in[2];
  VN_RETURN_IF_ERROR(need_logits(logits, err, err_size));
  int64_t t = logits->dims[0];
  VN_RETURN_IF_ERROR(need_i32("ids", ids, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("ids", ids, t, "[T]", "logits", logits, err, err_size));
  VN_RETURN_IF_ERROR(need_i32("tid2eid", tid2eid, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("tid2eid", tid2eid, 2, "[V, k]", err, err_size));
  int64_t k = tid2eid->dims[1];
  if (k < 1) {
    char s[TS];
    return fail(err, err_size, SHAPE, "tid2eid is %s: needs k >= 1 experts per token",
                vn_type_str(tid2eid, s, sizeof s));
  }
  set_type3(&out[0], VNRT_F32, 2, t, k, 0);
  set_type3(&out[1], VNRT_I32, 2, t, k, 0);
  return VNRT_OK;
}

DEFINE_INFER(moe_ffn) {
  const vnrt_tensor_type *x = &in[0], *experts = &in[1], *weights = &in[2], *wgu = &in[3],
                         *wd = &in[4];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("x", x, 2, "[T, C]", err, err_size));
  int64_t t = x->dims[0], c = x->dims[1];
  VN_RETURN_IF_ERROR(need_i32("experts", experts, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("experts", experts, 2, "[T, k]", err, err_size));
  int64_t k = experts->dims[1];
  VN_RETURN_IF_ERROR(need_dims2("experts", experts, t, k, "[T, k]", "x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("weights", weights, err, err_size));
  VN_RETURN_IF_ERROR(
      need_dims2("weights", weights, t, k, "[T, k]", "experts", experts, err, err_size));
  VN_RETURN_IF_ERROR(need_float("w_gate_up", wgu, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("w_gate_up", wgu, 3, "[E, 2F, C]", err, err_size));
  int64_t e = wgu->dims[0], f = wgu->dims[1] / 2;
  if (wgu->dims[1] % 2 != 0) {
    return both_fail("w_gate_up", wgu, "x", x, err, err_size,
                     "w_gate_up must be [E, 2F, C] (an even row count: gate then up)");
  }
  VN_RETURN_IF_ERROR(
      need_dims3("w_gate_up", wgu, e, 2 * f, c, "[E, 2F, C]", "x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_float("w_down", wd, err, err_size));
  VN_RETURN_IF_ERROR(
      need_dims3("w_down", wd, e, c, f, "[E, C, F]", "w_gate_up", wgu, err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("limit", attr_f(attrs, n_attrs, "limit", 0), err, err_size));
  out[0] = *x;
  return VNRT_OK;
}

/* ---- Engram ---------------------------------------------------------------------------- */

DEFINE_INFER(ngram_hash) {
  const vnrt_tensor_type *ids = &in[0], *hist = &in[1];
  const vnrt_attr *mult = find_attr(attrs, n_attrs, "mult");
  const vnrt_attr *primes = find_attr(attrs, n_attrs, "primes");
  if (!mult || !primes) return fail(err, err_size, ARG, "missing attribute mult or primes");
  VN_RETURN_IF_ERROR(need_i32("ids", ids, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("ids", ids, 1, "[T]", err, err_size));
  int64_t n = mult->count;
  if (n < 2) {
    return fail(err, err_size, ARG, "attribute mult has %" PRId64 " values: needs N >= 2", n);
  }
  int64_t max_n = attr_i(attrs, n_attrs, "max_n", n);
  if (max_n != n) {
    return fail(err, err_size, ARG,
                "attribute max_n = %" PRId64 " but mult has %" PRId64 " values (N)", max_n, n);
  }
  int64_t np = primes->count;
  int64_t heads = attr_i(attrs, n_attrs, "heads", np / (n - 1)), want;
  if (heads < 1 || !mul_ok(n - 1, heads, &want) || np != want) {
    return fail(err, err_size, ARG,
                "attribute primes has %" PRId64 " values: needs (N-1)*K = %" PRId64
                "*K with "
                "K = heads >= 1%s",
                np, n - 1, find_attr(attrs, n_attrs, "heads") ? " as given" : "");
  }
  for (int64_t i = 0; i < np; ++i) {
    if (primes->ints[i] < 1 || primes->ints[i] > INT32_MAX) {
      return fail(err, err_size, ARG,
                  "primes[%" PRId64 "] = %" PRId64 " must be in [1, 2^31-1] (idx is i32)", i,
                  primes->ints[i]);
    }
  }
  VN_RETURN_IF_ERROR(need_i32("hist", hist, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("hist", hist, n - 1, "[N-1]", "ids", ids, err, err_size));
  set_type3(&out[0], VNRT_I32, 2, ids->dims[0], np, 0);
  return VNRT_OK;
}

DEFINE_INFER(engram_lookup) {
  const vnrt_tensor_type *table = &in[0], *idx = &in[1], *offsets = &in[2];
  VN_RETURN_IF_ERROR(need_float("table", table, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("table", table, 2, "[R, D]", err, err_size));
  VN_RETURN_IF_ERROR(need_i32("idx", idx, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("idx", idx, 2, "[T, H]", err, err_size));
  VN_RETURN_IF_ERROR(need_i32("offsets", offsets, err, err_size));
  VN_RETURN_IF_ERROR(
      need_dims1("offsets", offsets, idx->dims[1], "[H]", "idx", idx, err, err_size));
  int64_t hd;
  if (!mul_ok(idx->dims[1], table->dims[1], &hd)) {
    return both_fail("idx", idx, "table", table, err, err_size, "H*D overflows");
  }
  set_type3(&out[0], VNRT_F32, 2, idx->dims[0], hd, 0);
  return VNRT_OK;
}

DEFINE_INFER(engram_gate) {
  const vnrt_tensor_type *h = &in[0], *k = &in[1], *v = &in[2], *wh = &in[3], *wk = &in[4];
  VN_RETURN_IF_ERROR(need_float("h", h, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("h", h, 3, "[T, M, C]", err, err_size));
  int64_t t = h->dims[0], m = h->dims[1], c = h->dims[2];
  VN_RETURN_IF_ERROR(need_float("k", k, err, err_size));
  VN_RETURN_IF_ERROR(need_dims3("k", k, t, m, c, "[T, M, C]", "h", h, err, err_size));
  VN_RETURN_IF_ERROR(need_float("v", v, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("v", v, t, c, "[T, C]", "h", h, err, err_size));
  VN_RETURN_IF_ERROR(need_float("wh", wh, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("wh", wh, m, c, "[M, C]", "h", h, err, err_size));
  VN_RETURN_IF_ERROR(need_float("wk", wk, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("wk", wk, m, c, "[M, C]", "h", h, err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("eps", attr_f(attrs, n_attrs, "eps", 0), err, err_size));
  VN_RETURN_IF_ERROR(need_bool("sqrt_gate", attr_i(attrs, n_attrs, "sqrt_gate", 1), err, err_size));
  out[0] = *h;
  return VNRT_OK;
}

DEFINE_INFER(short_conv) {
  const vnrt_tensor_type *u = &in[0], *hist = &in[1], *wn = &in[2], *w = &in[3];
  VN_RETURN_IF_ERROR(need_float("u", u, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("u", u, 3, "[T, M, C]", err, err_size));
  int64_t m = u->dims[1], c = u->dims[2];
  int64_t dilation = attr_i(attrs, n_attrs, "dilation", 0);
  if (dilation < 1) {
    return fail(err, err_size, ARG, "attribute dilation = %" PRId64 " must be >= 1", dilation);
  }
  VN_RETURN_IF_ERROR(need_nonneg("eps", attr_f(attrs, n_attrs, "eps", 0), err, err_size));
  VN_RETURN_IF_ERROR(need_float("wn", wn, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("wn", wn, m, c, "[M, C]", "u", u, err, err_size));
  VN_RETURN_IF_ERROR(need_float("w", w, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("w", w, 2, "[M*C, K]", err, err_size));
  int64_t kk = w->dims[1], mc;
  char s[TS];
  if (!mul_ok(m, c, &mc)) {
    return fail(err, err_size, SHAPE, "u is %s: M*C overflows", vn_type_str(u, s, sizeof s));
  }
  VN_RETURN_IF_ERROR(need_dims2("w", w, mc, kk, "[M*C, K]", "u", u, err, err_size));
  if (kk < 1) {
    return fail(err, err_size, SHAPE, "w is %s: needs a kernel size K >= 1",
                vn_type_str(w, s, sizeof s));
  }
  int64_t p;
  if (!mul_ok(kk - 1, dilation, &p)) {
    return fail(err, err_size, ARG, "w is %s: (K-1)*dilation overflows",
                vn_type_str(w, s, sizeof s));
  }
  if (hist->dtype != u->dtype) {
    return both_fail("hist", hist, "u", u, err, err_size, "hist must have u's dtype");
  }
  VN_RETURN_IF_ERROR(need_dims3("hist", hist, p, m, c, "[P, M, C] with P = (K-1)*dilation", "w", w,
                                err, err_size));
  out[0] = *u;
  out[1] = *hist;
  return VNRT_OK;
}

/* ---- State ----------------------------------------------------------------------------- */

DEFINE_INFER(kv_write) {
  const vnrt_tensor_type *cache = &in[0], *rows = &in[1], *pos = &in[2];
  char sc[TS], sr[TS];
  if (cache->rank < 1 || rows->rank != cache->rank || rows->dtype != cache->dtype) {
    return fail(err, err_size, SHAPE,
                "cache is %s but new is %s: expected the same dtype and rank >= 1",
                vn_type_str(cache, sc, sizeof sc), vn_type_str(rows, sr, sizeof sr));
  }
  for (int32_t i = 1; i < cache->rank; ++i) {
    if (cache->dims[i] != rows->dims[i]) {
      return both_fail("cache", cache, "new", rows, err, err_size, "row shapes differ");
    }
  }
  if (rows->dims[0] > cache->dims[0]) {
    return both_fail("cache", cache, "new", rows, err, err_size, "more new rows than cache rows");
  }
  VN_RETURN_IF_ERROR(need_i32("pos", pos, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("pos", pos, 1, "[1]", "cache", cache, err, err_size));
  out[0] = *cache;
  return VNRT_OK;
}

/* ---- Quantization support -------------------------------------------------------------- */

DEFINE_INFER(hadamard) {
  const vnrt_tensor_type *x = &in[0];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  char sx[TS];
  if (x->rank < 1) {
    return fail(err, err_size, SHAPE, "x is %s: needs rank >= 1 ([..., D])",
                vn_type_str(x, sx, sizeof sx));
  }
  int64_t d = x->dims[x->rank - 1];
  if (d < 1 || (d & (d - 1)) != 0) {
    return fail(err, err_size, SHAPE, "x is %s: D = %" PRId64 " must be a power of 2",
                vn_type_str(x, sx, sizeof sx), d);
  }
  out[0] = *x;
  return VNRT_OK;
}
