/* Shape and dtype inference for the elementwise, shape, linear algebra and indexing ops of
 * docs/ops.md, with the dtype rules of the attribute schema: each vn_infer_<op> checks
 * everything its kernels rely on and explains a rejection with the shapes involved, e.g. "x is
 * f32[4, 64] but w is f16[128, 32]: inner dims differ". The model ops are in infer_model.c. */
#include "infer_util.h"

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
  VN_RETURN_IF_ERROR(need_min_rank("a", a, 2, "[..., M, K]", err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("b", b, 2, "[..., K, N]", err, err_size));
  VN_RETURN_IF_ERROR(need_weight("b", b, n_in > 2 ? &in[2] : NULL, attrs, n_attrs, err, err_size));
  if (is_quant_codes(b->dtype)) VN_RETURN_IF_ERROR(need_rank("b", b, 2, "[K, N]", err, err_size));
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
  VN_RETURN_IF_ERROR(need_min_rank("x", x, 1, "[..., K]", err, err_size));
  VN_RETURN_IF_ERROR(need_rank("w", w, 2, "[N, K]", err, err_size));
  VN_RETURN_IF_ERROR(need_weight("w", w, n_in > 2 ? &in[2] : NULL, attrs, n_attrs, err, err_size));
  if (x->dims[x->rank - 1] != w->dims[1]) {
    return both_fail("x", x, "w", w, err, err_size, "inner dims differ (x[..., K], w[N, K])");
  }
  VN_RETURN_IF_ERROR(need_act_quant(attrs, n_attrs, "x", w->dims[1], err, err_size));
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

/* ---- Indexing -------------------------------------------------------------------------- */

DEFINE_INFER(embedding) {
  const vnrt_tensor_type *table = &in[0], *ids = &in[1];
  VN_RETURN_IF_ERROR(need_rank("table", table, 2, "[V, D]", err, err_size));
  VN_RETURN_IF_ERROR(
      need_weight("table", table, n_in > 2 ? &in[2] : NULL, attrs, n_attrs, err, err_size));
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
  const int64_t fill = attr_i(attrs, n_attrs, "fill", -1);
  if (fill < INT32_MIN || fill > INT32_MAX) {
    return fail(err, err_size, ARG, "attribute fill = %" PRId64 " must fit in i32", fill);
  }
  out[0] = *x;
  out[0].dims[x->rank - 1] = k;
  out[1] = out[0];
  out[1].dtype = VNRT_I32;
  return VNRT_OK;
}
