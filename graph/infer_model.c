/* Shape and dtype inference for the model ops of docs/ops.md: positions and attention, mHC,
 * MoE, Engram, state and quantization support (the rest are in infer_basic.c), with the same
 * checks and messages. */
#include "infer_util.h"

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
  VN_RETURN_IF_ERROR(need_bool("inverse", attr_i(attrs, n_attrs, "inverse", 0), err, err_size));
  if (find_attr(attrs, n_attrs, "yarn_factor")) {
    double f = attr_f(attrs, n_attrs, "yarn_factor", 1.0);
    if (!(f >= 1.0 && f <= 1e6)) {
      return fail(err, err_size, ARG, "attribute yarn_factor = %g must be in [1, 1e6]", f);
    }
    if (!find_attr(attrs, n_attrs, "yarn_orig_ctx")) {
      return fail(err, err_size, ARG, "attribute yarn_factor needs yarn_orig_ctx");
    }
    int64_t l = attr_i(attrs, n_attrs, "yarn_orig_ctx", 0);
    if (l < 1) {
      return fail(err, err_size, ARG, "attribute yarn_orig_ctx = %" PRId64 " must be >= 1", l);
    }
    double bf = attr_f(attrs, n_attrs, "beta_fast", 32.0);
    double bs = attr_f(attrs, n_attrs, "beta_slow", 1.0);
    if (!(bf > 0.0) || !(bs > 0.0) || !(bf < 1e30) || !(bs < 1e30)) {
      return fail(err, err_size, ARG, "attributes beta_fast = %g, beta_slow = %g must be > 0", bf,
                  bs);
    }
  } else if (find_attr(attrs, n_attrs, "yarn_orig_ctx") || find_attr(attrs, n_attrs, "beta_fast") ||
             find_attr(attrs, n_attrs, "beta_slow")) {
    return fail(err, err_size, ARG,
                "attributes yarn_orig_ctx, beta_fast and beta_slow need yarn_factor");
  }
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
  VN_RETURN_IF_ERROR(need_rank("w_gate_up", wgu, 3, "[E, 2F, C]", err, err_size));
  VN_RETURN_IF_ERROR(need_rank("w_down", wd, 3, "[E, C, F]", err, err_size));
  if (!is_quant_codes(wgu->dtype) && is_quant_codes(wd->dtype)) {
    return both_fail("w_gate_up", wgu, "w_down", wd, err, err_size,
                     "w_down is quantized but w_gate_up is not: the scales are inputs 5 "
                     "(w_gate_up's) and 6 (w_down's), so quantize both or w_gate_up alone");
  }
  VN_RETURN_IF_ERROR(
      need_weight("w_gate_up", wgu, n_in > 5 ? &in[5] : NULL, attrs, n_attrs, err, err_size));
  VN_RETURN_IF_ERROR(
      need_weight("w_down", wd, n_in > 6 ? &in[6] : NULL, attrs, n_attrs, err, err_size));
  int64_t e = wgu->dims[0], f = wgu->dims[1] / 2;
  if (wgu->dims[1] % 2 != 0) {
    return both_fail("w_gate_up", wgu, "x", x, err, err_size,
                     "w_gate_up must be [E, 2F, C] (an even row count: gate then up)");
  }
  VN_RETURN_IF_ERROR(
      need_dims3("w_gate_up", wgu, e, 2 * f, c, "[E, 2F, C]", "x", x, err, err_size));
  VN_RETURN_IF_ERROR(
      need_dims3("w_down", wd, e, c, f, "[E, C, F]", "w_gate_up", wgu, err, err_size));
  VN_RETURN_IF_ERROR(need_nonneg("limit", attr_f(attrs, n_attrs, "limit", 0), err, err_size));
  VN_RETURN_IF_ERROR(need_act_quant(attrs, n_attrs, "x (C)", c, err, err_size));
  VN_RETURN_IF_ERROR(
      need_act_quant(attrs, n_attrs, "the down projection's input (F)", f, err, err_size));
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
  const int64_t ring = attr_i(attrs, n_attrs, "ring", 0);
  VN_RETURN_IF_ERROR(need_bool("ring", ring, err, err_size));
  if (ring && cache->dims[0] < 1) {
    return fail(err, err_size, SHAPE, "cache is %s: a ring needs at least one row",
                vn_type_str(cache, sc, sizeof sc));
  }
  if (!ring && rows->dims[0] > cache->dims[0]) {
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

DEFINE_INFER(fake_quant) {
  const vnrt_tensor_type *x = &in[0];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("x", x, 1, "[..., D]", err, err_size));
  const vnrt_attr *fmt = find_attr(attrs, n_attrs, "fmt");
  const bool e2m1 = fmt && fmt->word && strcmp(fmt->word, "e2m1") == 0;
  const int64_t d = x->dims[x->rank - 1];
  const int64_t block =
      attr_i(attrs, n_attrs, "block", vn_fake_quant_default_block(e2m1 ? VNRT_E2M1 : VNRT_E4M3));
  const int64_t start = attr_i(attrs, n_attrs, "start", 0);
  int64_t len = attr_i(attrs, n_attrs, "len", 0);
  char sx[TS];
  if (block < 1 || block > INT32_MAX) {
    return fail(err, err_size, ARG, "attribute block = %" PRId64 " must be >= 1", block);
  }
  if (start < 0 || start > d || len < 0 || len > d - start) {
    return fail(err, err_size, ARG,
                "x is %s: channels [start = %" PRId64 ", start + len = %" PRId64
                ") must lie in [0, D = %" PRId64 "]",
                vn_type_str(x, sx, sizeof sx), start, start + len, d);
  }
  if (len == 0) len = d - start;
  if (len % block != 0) {
    return fail(err, err_size, ARG,
                "x is %s: the %" PRId64 " channels from %" PRId64
                " are not a multiple of block = "
                "%" PRId64,
                vn_type_str(x, sx, sizeof sx), len, start, block);
  }
  out[0] = *x;
  return VNRT_OK;
}

/* ---- DeepSeek-V4 attention ------------------------------------------------------------- */

static vnrt_status need_f32(const char *role, const vnrt_tensor_type *t, char *err, size_t size) {
  if (t->dtype == VNRT_F32) return VNRT_OK;
  char a[TS];
  return fail(err, size, SHAPE, "%s is %s: expected dtype f32", role, vn_type_str(t, a, sizeof a));
}

static vnrt_status need_pos0(const vnrt_tensor_type *pos0, const char *ref_role,
                             const vnrt_tensor_type *ref, char *err, size_t size) {
  VN_RETURN_IF_ERROR(need_i32("pos0", pos0, err, size));
  return need_dims1("pos0", pos0, 1, "[1]", ref_role, ref, err, size);
}

DEFINE_INFER(kv_compress) {
  const vnrt_tensor_type *a = &in[0], *z = &in[1], *ape = &in[2], *sa = &in[3], *sz = &in[4];
  const int64_t m = attr_i(attrs, n_attrs, "ratio", 0);
  const int64_t overlap = attr_i(attrs, n_attrs, "overlap", 0);
  VN_RETURN_IF_ERROR(need_bool("overlap", overlap, err, err_size));
  if (m < 1 || m > (1 << 20)) {
    return fail(err, err_size, ARG, "attribute ratio = %" PRId64 " must be in [1, 2^20]", m);
  }
  VN_RETURN_IF_ERROR(need_f32("a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("a", a, 2, "[T, c*d]", err, err_size));
  const int64_t c = 1 + overlap, t = a->dims[0], cd = a->dims[1];
  char s1[TS];
  if (cd < c || cd % c != 0) {
    return fail(err, err_size, SHAPE,
                "a is %s: its width must be c*d with c = %" PRId64 " (1 + overlap) and d >= 1",
                vn_type_str(a, s1, sizeof s1), c);
  }
  VN_RETURN_IF_ERROR(need_f32("z", z, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("z", z, t, cd, "[T, c*d]", "a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_f32("ape", ape, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("ape", ape, m, cd, "[ratio, c*d]", "a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_f32("state_a", sa, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("state_a", sa, c * m, cd, "[c*ratio, c*d]", "a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_f32("state_z", sz, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("state_z", sz, c * m, cd, "[c*ratio, c*d]", "a", a, err, err_size));
  VN_RETURN_IF_ERROR(need_pos0(&in[5], "a", a, err, err_size));
  const int64_t n = (t + m - 1) / m;
  set_type3(&out[0], VNRT_F32, 2, n, cd / c, 0);
  set_type3(&out[1], VNRT_I32, 1, n, 0, 0);
  out[2] = *sa;
  out[3] = *sz;
  return VNRT_OK;
}

DEFINE_INFER(kv_scatter) {
  const vnrt_tensor_type *cache = &in[0], *rows = &in[1], *pos = &in[2];
  char sc[TS], sr[TS];
  if (cache->rank < 1 || rows->rank != cache->rank || rows->dtype != cache->dtype) {
    return fail(err, err_size, SHAPE,
                "cache is %s but rows is %s: expected the same dtype and rank >= 1",
                vn_type_str(cache, sc, sizeof sc), vn_type_str(rows, sr, sizeof sr));
  }
  for (int32_t i = 1; i < cache->rank; ++i) {
    if (cache->dims[i] != rows->dims[i]) {
      return both_fail("cache", cache, "rows", rows, err, err_size, "row shapes differ");
    }
  }
  VN_RETURN_IF_ERROR(need_i32("pos", pos, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("pos", pos, rows->dims[0], "[N]", "rows", rows, err, err_size));
  const int64_t div = attr_i(attrs, n_attrs, "div", 1);
  if (div < 1 || div > INT32_MAX) {
    return fail(err, err_size, ARG, "attribute div = %" PRId64 " must be >= 1", div);
  }
  out[0] = *cache;
  return VNRT_OK;
}

DEFINE_INFER(index_scores) {
  const vnrt_tensor_type *q = &in[0], *k = &in[1], *w = &in[2], *pos = &in[3];
  VN_RETURN_IF_ERROR(need_float("q", q, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("q", q, 3, "[T, Hi, Di]", err, err_size));
  VN_RETURN_IF_ERROR(need_float("k", k, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("k", k, 2, "[S, Di]", err, err_size));
  if (k->dims[1] != q->dims[2]) {
    return both_fail("q", q, "k", k, err, err_size, "entry widths Di differ");
  }
  VN_RETURN_IF_ERROR(need_float("w", w, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("w", w, q->dims[0], q->dims[1], "[T, Hi]", "q", q, err, err_size));
  VN_RETURN_IF_ERROR(need_i32("pos", pos, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("pos", pos, q->dims[0], "[T]", "q", q, err, err_size));
  const int64_t ratio = attr_i(attrs, n_attrs, "ratio", 0);
  if (ratio < 1 || ratio > INT32_MAX) {
    return fail(err, err_size, ARG, "attribute ratio = %" PRId64 " must be >= 1", ratio);
  }
  set_type3(&out[0], VNRT_F32, 2, q->dims[0], k->dims[0], 0);
  return VNRT_OK;
}

DEFINE_INFER(sparse_attention) {
  const vnrt_tensor_type *q = &in[0], *kv = &in[1], *ring = &in[2], *sinks = &in[3];
  VN_RETURN_IF_ERROR(need_float("q", q, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("q", q, 3, "[T, H, D]", err, err_size));
  const int64_t t = q->dims[0], h = q->dims[1], d = q->dims[2];
  VN_RETURN_IF_ERROR(need_float("kv", kv, err, err_size));
  VN_RETURN_IF_ERROR(need_dims2("kv", kv, t, d, "[T, D]", "q", q, err, err_size));
  VN_RETURN_IF_ERROR(need_float("ring", ring, err, err_size));
  VN_RETURN_IF_ERROR(need_rank("ring", ring, 2, "[W, D]", err, err_size));
  if (ring->dims[1] != d || ring->dims[0] < 1) {
    return both_fail("ring", ring, "q", q, err, err_size, "ring must be [W >= 1, D]");
  }
  VN_RETURN_IF_ERROR(need_float("sinks", sinks, err, err_size));
  VN_RETURN_IF_ERROR(need_dims1("sinks", sinks, h, "[H]", "q", q, err, err_size));
  VN_RETURN_IF_ERROR(need_pos0(&in[4], "q", q, err, err_size));
  const int64_t ratio = attr_i(attrs, n_attrs, "ratio", 0);
  if (ratio < 0 || ratio > INT32_MAX) {
    return fail(err, err_size, ARG, "attribute ratio = %" PRId64 " must be >= 0", ratio);
  }
  if (n_in > 5) {
    const vnrt_tensor_type *comp = &in[5];
    VN_RETURN_IF_ERROR(need_float("comp", comp, err, err_size));
    VN_RETURN_IF_ERROR(need_rank("comp", comp, 2, "[Sc, D]", err, err_size));
    if (comp->dims[1] != d) return both_fail("comp", comp, "q", q, err, err_size, "D differs");
    if (ratio < 1) {
      return fail(err, err_size, ARG, "a comp input needs attribute ratio >= 1 (got %" PRId64 ")",
                  ratio);
    }
  }
  if (n_in > 6) {
    const vnrt_tensor_type *idx = &in[6];
    VN_RETURN_IF_ERROR(need_i32("idx", idx, err, err_size));
    VN_RETURN_IF_ERROR(need_rank("idx", idx, 2, "[T, K]", err, err_size));
    if (idx->dims[0] != t) return both_fail("idx", idx, "q", q, err, err_size, "T differs");
  }
  const vnrt_attr *sc = find_attr(attrs, n_attrs, "scale");
  if (sc && !(attr_f(attrs, n_attrs, "scale", 1.0) < 1e30)) {
    return fail(err, err_size, ARG, "attribute scale must be finite");
  }
  out[0] = *q;
  return VNRT_OK;
}

DEFINE_INFER(grouped_linear) {
  const vnrt_tensor_type *x = &in[0], *w = &in[1];
  VN_RETURN_IF_ERROR(need_float("x", x, err, err_size));
  VN_RETURN_IF_ERROR(need_min_rank("x", x, 1, "[..., G*K]", err, err_size));
  VN_RETURN_IF_ERROR(need_rank("w", w, 2, "[G*N, K]", err, err_size));
  VN_RETURN_IF_ERROR(need_weight("w", w, n_in > 2 ? &in[2] : NULL, attrs, n_attrs, err, err_size));
  const int64_t g = attr_i(attrs, n_attrs, "groups", 0);
  const int64_t xk = x->dims[x->rank - 1];
  if (g < 1 || g > INT32_MAX || xk % g != 0 || w->dims[0] % g != 0) {
    return both_fail("x", x, "w", w, err, err_size,
                     "attribute groups must be >= 1 and divide x's last dim and w's rows");
  }
  if (xk / g != w->dims[1]) {
    return both_fail("x", x, "w", w, err, err_size,
                     "a group's width differs (x[..., G*K], w[G*N, K])");
  }
  out[0] = *x;
  out[0].dims[x->rank - 1] = w->dims[0];
  return VNRT_OK;
}
