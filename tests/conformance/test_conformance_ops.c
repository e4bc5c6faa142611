/* Conformance: the elementwise, shape, linear-algebra and indexing ops, every op through the
 * public API on every device, against values computed here in double precision. (The CPU
 * backend's own pieces are in tests/backends/test_cpu_backend.c.)
 *
 * Devices: every device the registry lists (vnrt_device_count / vnrt_device_get), plugins'
 * included when $VNRT_PLUGIN_PATH is set; $VNRT_TEST_DEVICES narrows the list (e.g.
 * "template:0") and $VNRT_TEST_FALLBACK=1 lets nodes a device cannot run go to the CPU. The
 * *_template meson tests run this file against the template plugin that way; to run it against
 * another plugin: VNRT_PLUGIN_PATH=DIR VNRT_TEST_DEVICES=NAME:0 VNRT_TEST_FALLBACK=1 <this test>
 * (tests/conformance/meson.build). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define TOL_ELEM 1e-7
#define TOL_GEMM 1e-6

/* ---- Expected values ------------------------------------------------------------------- */

static tu_tensor tensor(vnrt_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3) {
  int64_t dims[4] = {d0, d1, d2, d3};
  return tu_tensor_new(dt, rank, dims);
}

static tu_tensor random_tensor(vnrt_dtype dt, int32_t rank, const int64_t *dims, uint64_t seed,
                               float lo, float hi) {
  tu_tensor t = tu_tensor_new(dt, rank, dims);
  tu_fill_uniform(&t, seed, lo, hi);
  return t;
}

static vnrt_tensor_type ttype(vnrt_dtype dt, int32_t rank, const int64_t *dims) {
  vnrt_tensor_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int32_t i = 0; i < rank; ++i) t.dims[i] = dims[i];
  return t;
}

/* Flat index into `in` of the element that numpy broadcasting pairs with element o of out. */
static int64_t bcast_index(const vnrt_tensor_type *in, const vnrt_tensor_type *out, int64_t o) {
  int64_t coord[4] = {0, 0, 0, 0};
  for (int32_t d = out->rank - 1; d >= 0; --d) {
    coord[d] = o % out->dims[d];
    o /= out->dims[d];
  }
  int64_t idx = 0;
  for (int32_t d = 0; d < in->rank; ++d) {
    int32_t od = d + (out->rank - in->rank);
    idx = idx * in->dims[d] + (in->dims[d] == 1 ? 0 : coord[od]);
  }
  return idx;
}

/* ---- Running one op on every device and comparing -------------------------------------- */

typedef struct expect {
  vnrt_tensor_type type; /* the result type the op must infer */
  const double *values;  /* exact math in double; rounded here to the result dtype */
  double tol;            /* NMSE bound; integer results must match exactly */
} expect;

static void compare(const char *what, const char *spec, int32_t slot, const tu_tensor *got,
                    const expect *e) {
  ck_assert_msg(got->type.dtype == e->type.dtype && got->type.rank == e->type.rank,
                "%s on %s: result %d is %s rank %d, want %s rank %d", what, spec, slot,
                vnrt_dtype_name(got->type.dtype), got->type.rank, vnrt_dtype_name(e->type.dtype),
                e->type.rank);
  for (int32_t d = 0; d < e->type.rank; ++d) {
    ck_assert_msg(got->type.dims[d] == e->type.dims[d],
                  "%s on %s: result %d dim %d is %lld, want %lld", what, spec, slot, d,
                  (long long)got->type.dims[d], (long long)e->type.dims[d]);
  }
  int64_t n = tu_numel(got);
  if (e->type.dtype == VNRT_I32) {
    for (int64_t i = 0; i < n; ++i) {
      ck_assert_msg(tu_get(got, i) == e->values[i], "%s on %s: result %d[%lld] = %g, want %g", what,
                    spec, slot, (long long)i, tu_get(got, i), e->values[i]);
    }
    return;
  }
  double *want = malloc(sizeof(double) * (size_t)(n ? n : 1));
  ck_assert_ptr_nonnull(want);
  for (int64_t i = 0; i < n; ++i) want[i] = tu_round_to(e->type.dtype, e->values[i]);
  double err = tu_nmse(got, want, n);
  free(want);
  ck_assert_msg(err <= e->tol, "%s on %s: result %d NMSE %.3g > %.1g", what, spec, slot, err,
                e->tol);
}

/* Runs op once per device and checks every result. */
static void check_op_ctx(vnrt_context *ctx, const char *what, vnrt_op op, const tu_tensor *ins,
                         int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, const expect *exps,
                         int32_t n_out) {
  vnrt_graph *g = tu_op_graph(ctx, op, ins, n_in, attrs, n_attrs, n_out);
  int32_t n_dev = tu_device_count(ctx);
  ck_assert_int_ge(n_dev, 1);
  for (int32_t d = 0; d < n_dev; ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    tu_tensor outs[4];
    vnrt_status s = tu_run(ctx, g, dev, ins, n_in, outs, n_out);
    ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", what, tu_device_spec(dev),
                  vnrt_status_string(s), vnrt_context_last_error(ctx));
    for (int32_t o = 0; o < n_out; ++o) {
      compare(what, tu_device_spec(dev), o, &outs[o], &exps[o]);
      tu_tensor_free(&outs[o]);
    }
  }
  vnrt_graph_destroy(g);
}

static void check_op(const char *what, vnrt_op op, const tu_tensor *ins, int32_t n_in,
                     const vnrt_attr *attrs, int32_t n_attrs, const expect *exps, int32_t n_out) {
  vnrt_context *ctx = tu_conformance_context(0);
  check_op_ctx(ctx, what, op, ins, n_in, attrs, n_attrs, exps, n_out);
  vnrt_context_destroy(ctx);
}

static void free_all(tu_tensor *ts, int32_t n) {
  for (int32_t i = 0; i < n; ++i) tu_tensor_free(&ts[i]);
}

static const vnrt_dtype kFloatTypes[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};

/* ---- Binary ops ------------------------------------------------------------------------ */

typedef struct bshape {
  int32_t ra, rb, ro;
  int64_t a[4], b[4], o[4];
} bshape;

static const bshape kBinaryShapes[] = {
    {2, 2, 2, {3, 5}, {3, 5}, {3, 5}},                   /* same shape */
    {3, 1, 3, {2, 3, 4}, {4}, {2, 3, 4}},                /* b a row */
    {3, 3, 3, {4, 1, 3}, {1, 5, 1}, {4, 5, 3}},          /* both broadcast */
    {4, 2, 4, {2, 1, 3, 1}, {3, 5}, {2, 1, 3, 5}},       /* ranks differ */
    {4, 4, 4, {2, 1, 3, 1}, {1, 4, 1, 5}, {2, 4, 3, 5}}, /* 4-d */
    {0, 2, 2, {0}, {3, 2}, {3, 2}},                      /* scalar a */
};

static double binary_math(vnrt_op op, double x, double y) {
  switch (op) {
    case VNRT_OP_ADD:
      return x + y;
    case VNRT_OP_SUB:
      return x - y;
    case VNRT_OP_MUL:
      return x * y;
    default:
      return x / y;
  }
}

START_TEST(test_binary_broadcast) {
  const vnrt_op ops[4] = {VNRT_OP_ADD, VNRT_OP_SUB, VNRT_OP_MUL, VNRT_OP_DIV};
  vnrt_context *ctx = tu_conformance_context(0);
  for (int oi = 0; oi < 4; ++oi) {
    for (size_t si = 0; si < sizeof kBinaryShapes / sizeof kBinaryShapes[0]; ++si) {
      for (int di = 0; di < 3; ++di) {
        const bshape *sh = &kBinaryShapes[si];
        vnrt_dtype dt = kFloatTypes[di];
        uint64_t seed = (uint64_t)(oi * 100 + si * 10 + di);
        tu_tensor in[2] = {random_tensor(dt, sh->ra, sh->a, seed, -2.0f, 2.0f),
                           random_tensor(dt, sh->rb, sh->b, seed + 7, 0.5f, 3.0f)};
        /* b is positive and away from zero so div stays well conditioned; flip some signs. */
        for (int64_t i = 0; i < tu_numel(&in[1]); i += 3) tu_set(&in[1], i, -tu_get(&in[1], i));
        vnrt_tensor_type to = ttype(dt, sh->ro, sh->o);
        int64_t n = vnrt_tensor_type_numel(&to);
        double *want = malloc(sizeof(double) * (size_t)n);
        for (int64_t o = 0; o < n; ++o) {
          want[o] = binary_math(ops[oi], tu_get(&in[0], bcast_index(&in[0].type, &to, o)),
                                tu_get(&in[1], bcast_index(&in[1].type, &to, o)));
        }
        char what[96];
        snprintf(what, sizeof what, "%s %s shape#%zu", vnrt_op_name(ops[oi]), vnrt_dtype_name(dt),
                 si);
        expect e = {to, want, TOL_ELEM};
        check_op_ctx(ctx, what, ops[oi], in, 2, NULL, 0, &e, 1);
        free(want);
        free_all(in, 2);
      }
    }
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Unary ops ------------------------------------------------------------------------- */

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double softplus_d(double x) { return x > 20 ? x : x < -20 ? exp(x) : log1p(exp(x)); }

static double unary_math(vnrt_op op, double x) {
  switch (op) {
    case VNRT_OP_NEG:
      return -x;
    case VNRT_OP_EXP:
      return exp(x);
    case VNRT_OP_SQRT:
      return sqrt(x);
    case VNRT_OP_RSQRT:
      return 1.0 / sqrt(x);
    case VNRT_OP_TANH:
      return tanh(x);
    case VNRT_OP_RELU:
      return x > 0 ? x : 0;
    case VNRT_OP_SIGMOID:
      return sigmoid_d(x);
    case VNRT_OP_SILU:
      return x * sigmoid_d(x);
    case VNRT_OP_GELU:
      return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case VNRT_OP_SOFTPLUS:
      return softplus_d(x);
    case VNRT_OP_SQRT_SOFTPLUS:
      return sqrt(softplus_d(x));
    default:
      return NAN;
  }
}

START_TEST(test_unary) {
  const vnrt_op ops[] = {VNRT_OP_NEG,  VNRT_OP_EXP,      VNRT_OP_SQRT,         VNRT_OP_RSQRT,
                         VNRT_OP_TANH, VNRT_OP_RELU,     VNRT_OP_SIGMOID,      VNRT_OP_SILU,
                         VNRT_OP_GELU, VNRT_OP_SOFTPLUS, VNRT_OP_SQRT_SOFTPLUS};
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t dims[2] = {7, 9};
  for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; ++oi) {
    for (int di = 0; di < 3; ++di) {
      vnrt_dtype dt = kFloatTypes[di];
      int positive = ops[oi] == VNRT_OP_SQRT || ops[oi] == VNRT_OP_RSQRT;
      tu_tensor x = random_tensor(dt, 2, dims, 31 * oi + di, positive ? 0.1f : -4.0f, 4.0f);
      if (ops[oi] == VNRT_OP_SOFTPLUS || ops[oi] == VNRT_OP_SQRT_SOFTPLUS) {
        /* The three branches of softplus, on both sides of each threshold. */
        const double special[6] = {25.0, 20.5, 19.5, -19.5, -20.5, -25.0};
        for (int i = 0; i < 6; ++i) tu_set(&x, i * 5, special[i]);
      }
      double want[63];
      for (int64_t i = 0; i < 63; ++i) want[i] = unary_math(ops[oi], tu_get(&x, i));
      char what[64];
      snprintf(what, sizeof what, "%s %s", vnrt_op_name(ops[oi]), vnrt_dtype_name(dt));
      expect e = {x.type, want, TOL_ELEM};
      check_op_ctx(ctx, what, ops[oi], &x, 1, NULL, 0, &e, 1);
      tu_tensor_free(&x);
    }
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_unary_known_values) {
  /* A few exact values, so a sign or formula slip cannot hide behind a shared mistake. */
  tu_tensor x = tensor(VNRT_F32, 1, 4, 0, 0, 0);
  const double xs[4] = {0.0, 1.0, -1.0, 30.0};
  for (int i = 0; i < 4; ++i) tu_set(&x, i, xs[i]);
  const double sig[4] = {0.5, 0.7310585786300049, 0.2689414213699951, 0.9999999999999065};
  const double gelu[4] = {0.0, 0.8411919906082768, -0.15880800939172324, 30.0};
  const double sp[4] = {0.6931471805599453, 1.3132616875182228, 0.31326168751822286, 30.0};
  expect e = {x.type, sig, TOL_ELEM};
  check_op("sigmoid known", VNRT_OP_SIGMOID, &x, 1, NULL, 0, &e, 1);
  e.values = gelu;
  check_op("gelu known", VNRT_OP_GELU, &x, 1, NULL, 0, &e, 1);
  e.values = sp;
  check_op("softplus known", VNRT_OP_SOFTPLUS, &x, 1, NULL, 0, &e, 1);
  tu_tensor_free(&x);
}
END_TEST

START_TEST(test_scale_clamp) {
  const int64_t dims[3] = {3, 4, 5};
  for (int di = 0; di < 3; ++di) {
    vnrt_dtype dt = kFloatTypes[di];
    tu_tensor x = random_tensor(dt, 3, dims, 50 + di, -3.0f, 3.0f);
    double want[60];
    vnrt_attr s = tu_attr_f("s", -1.75);
    for (int i = 0; i < 60; ++i) want[i] = -1.75 * tu_get(&x, i);
    expect e = {x.type, want, TOL_ELEM};
    check_op("scale", VNRT_OP_SCALE, &x, 1, &s, 1, &e, 1);
    /* An INT attribute where a FLOAT is expected is accepted. */
    vnrt_attr s2 = tu_attr_i("s", 3);
    for (int i = 0; i < 60; ++i) want[i] = 3.0 * tu_get(&x, i);
    check_op("scale int", VNRT_OP_SCALE, &x, 1, &s2, 1, &e, 1);

    vnrt_attr both[2] = {tu_attr_f("min", -1.25), tu_attr_f("max", 0.5)};
    for (int i = 0; i < 60; ++i) want[i] = fmin(fmax(tu_get(&x, i), -1.25), 0.5);
    check_op("clamp min max", VNRT_OP_CLAMP, &x, 1, both, 2, &e, 1);
    for (int i = 0; i < 60; ++i) want[i] = fmax(tu_get(&x, i), -1.25);
    check_op("clamp min", VNRT_OP_CLAMP, &x, 1, &both[0], 1, &e, 1);
    for (int i = 0; i < 60; ++i) want[i] = fmin(tu_get(&x, i), 0.5);
    check_op("clamp max", VNRT_OP_CLAMP, &x, 1, &both[1], 1, &e, 1);
    for (int i = 0; i < 60; ++i) want[i] = tu_get(&x, i);
    check_op("clamp none", VNRT_OP_CLAMP, &x, 1, NULL, 0, &e, 1);
    tu_tensor_free(&x);
  }
}
END_TEST

/* ---- cast ------------------------------------------------------------------------------ */

/* Runs cast(x, dtype=to) on every device and compares raw result bits with want_bits. */
static void check_cast_bits(const char *what, const tu_tensor *x, vnrt_dtype to,
                            const void *want_bits) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_attr a = tu_attr_word("dtype", vnrt_dtype_name(to));
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_CAST, x, 1, &a, 1, 1);
  for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    tu_tensor out;
    TU_OK(ctx, tu_run(ctx, g, dev, x, 1, &out, 1));
    ck_assert_int_eq(out.type.dtype, to);
    int64_t n = tu_numel(&out);
    size_t es = vnrt_dtype_size(to);
    for (int64_t i = 0; i < n; ++i) {
      uint32_t got = 0, want = 0;
      memcpy(&got, (const char *)out.data + i * es, es);
      memcpy(&want, (const char *)want_bits + i * es, es);
      ck_assert_msg(got == want, "%s on %s: element %lld (from %.9g) is 0x%x, want 0x%x", what,
                    tu_device_spec(dev), (long long)i, tu_get(x, i), got, want);
    }
    tu_tensor_free(&out);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

START_TEST(test_cast_rounding) {
  /* f32 -> f16: ties to even, overflow to inf, underflow to zero, subnormals. */
  const float f[8] = {1.0f,     1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65504.0f, -2.5f, 1e-8f,
                      0x1p-24f, 70000.0f};
  const uint16_t f16[8] = {0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0xC100, 0x0000, 0x0001, 0x7C00};
  tu_tensor x = tensor(VNRT_F32, 1, 8, 0, 0, 0);
  memcpy(x.data, f, sizeof f);
  check_cast_bits("cast f32->f16", &x, VNRT_F16, f16);
  /* f32 -> bf16: ties to even. */
  const float b[4] = {1.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -3.0f};
  const uint16_t bf16[4] = {0x3F80, 0x3F80, 0x3F82, 0xC040};
  tu_tensor xb = tensor(VNRT_F32, 1, 4, 0, 0, 0);
  memcpy(xb.data, b, sizeof b);
  check_cast_bits("cast f32->bf16", &xb, VNRT_BF16, bf16);
  /* float -> i32: truncation toward zero, saturation, NaN -> 0. */
  const float fi[7] = {2.7f, -2.7f, -0.5f, 3e9f, -3e9f, NAN, 123456.0f};
  const int32_t i32[7] = {2, -2, 0, INT32_MAX, INT32_MIN, 0, 123456};
  tu_tensor xi = tensor(VNRT_F32, 1, 7, 0, 0, 0);
  memcpy(xi.data, fi, sizeof fi);
  check_cast_bits("cast f32->i32", &xi, VNRT_I32, i32);
  tu_tensor_free(&x);
  tu_tensor_free(&xb);
  tu_tensor_free(&xi);
}
END_TEST

START_TEST(test_cast_from_i32) {
  const int32_t v[6] = {0, -7, 16777217, 16777219, 16842753, -2147483647 - 1};
  tu_tensor x = tensor(VNRT_I32, 1, 6, 0, 0, 0);
  memcpy(x.data, v, sizeof v);
  /* i32 -> f32 rounds to nearest even. */
  const float f[6] = {0.0f, -7.0f, 16777216.0f, 16777220.0f, 16842752.0f, -2147483648.0f};
  check_cast_bits("cast i32->f32", &x, VNRT_F32, f);
  /* i32 -> bf16 must round once: 16842753 = 2^24 + 2^16 + 1 lies just above the midpoint
   * 2^24 + 2^16, so the answer is 2^24 + 2^17 (0x4B81); rounding through f32 first would
   * land on the midpoint and tie to 2^24 (0x4B80). */
  uint16_t bf[6];
  const double exact[6] = {0.0, -7.0, 16777216.0, 16777216.0, 16908288.0, -2147483648.0};
  for (int i = 0; i < 6; ++i) bf[i] = vnrt_f32_to_bf16((float)exact[i]);
  ck_assert_uint_eq(bf[4], 0x4B81);
  check_cast_bits("cast i32->bf16", &x, VNRT_BF16, bf);
  /* i32 -> f16: 2049 ties to 2048, 2051 to 2052, 70000 overflows to inf. */
  const int32_t h[4] = {2049, 2051, -3, 70000};
  const uint16_t f16[4] = {0x6800, 0x6802, 0xC200, 0x7C00};
  tu_tensor xh = tensor(VNRT_I32, 1, 4, 0, 0, 0);
  memcpy(xh.data, h, sizeof h);
  check_cast_bits("cast i32->f16", &xh, VNRT_F16, f16);
  /* i32 -> i32 is a copy. */
  check_cast_bits("cast i32->i32", &x, VNRT_I32, v);
  tu_tensor_free(&x);
  tu_tensor_free(&xh);
}
END_TEST

START_TEST(test_cast_between_floats) {
  const int64_t dims[2] = {5, 13};
  for (int from = 0; from < 3; ++from) {
    for (int to = 0; to < 3; ++to) {
      tu_tensor x = random_tensor(kFloatTypes[from], 2, dims, 70 + from, -100.0f, 100.0f);
      double want[65];
      for (int i = 0; i < 65; ++i) want[i] = tu_get(&x, i);
      vnrt_attr a = tu_attr_word("dtype", vnrt_dtype_name(kFloatTypes[to]));
      expect e = {ttype(kFloatTypes[to], 2, dims), want, 0.0};
      char what[64];
      snprintf(what, sizeof what, "cast %s->%s", vnrt_dtype_name(kFloatTypes[from]),
               vnrt_dtype_name(kFloatTypes[to]));
      check_op(what, VNRT_OP_CAST, &x, 1, &a, 1, &e, 1);
      /* f16 -> i32 truncates the widened value. */
      double wi[65];
      for (int i = 0; i < 65; ++i) wi[i] = trunc(want[i]);
      vnrt_attr ai = tu_attr_word("dtype", "i32");
      expect ei = {ttype(VNRT_I32, 2, dims), wi, 0.0};
      check_op("cast float->i32", VNRT_OP_CAST, &x, 1, &ai, 1, &ei, 1);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

/* ---- Shape ops ------------------------------------------------------------------------- */

static const vnrt_dtype kAllTypes[4] = {VNRT_F32, VNRT_F16, VNRT_BF16, VNRT_I32};

/* Fills with values exact in every dtype (small integers) so any dtype can be checked. */
static tu_tensor iota_tensor(vnrt_dtype dt, int32_t rank, const int64_t *dims, int offset) {
  tu_tensor t = tu_tensor_new(dt, rank, dims);
  for (int64_t i = 0; i < tu_numel(&t); ++i) tu_set(&t, i, (double)((i * 7 + offset) % 251) - 100);
  return t;
}

START_TEST(test_reshape) {
  const int64_t dims[3] = {2, 3, 4}, shape[2] = {4, -1}, want_dims[2] = {4, 6};
  for (int di = 0; di < 4; ++di) {
    tu_tensor x = iota_tensor(kAllTypes[di], 3, dims, di);
    double want[24];
    for (int i = 0; i < 24; ++i) want[i] = tu_get(&x, i);
    vnrt_attr a = tu_attr_ints("shape", shape, 2);
    expect e = {ttype(kAllTypes[di], 2, want_dims), want, 0.0};
    check_op("reshape", VNRT_OP_RESHAPE, &x, 1, &a, 1, &e, 1);
    tu_tensor_free(&x);
  }
}
END_TEST

START_TEST(test_transpose) {
  const int64_t d3[3] = {2, 3, 4}, p3[3] = {2, 0, 1};
  const int64_t d4[4] = {2, 3, 4, 5}, p4[4] = {3, 1, 0, 2};
  for (int di = 0; di < 4; ++di) {
    for (int r = 3; r <= 4; ++r) {
      const int64_t *dims = r == 3 ? d3 : d4, *perm = r == 3 ? p3 : p4;
      tu_tensor x = iota_tensor(kAllTypes[di], r, dims, di);
      int64_t od[4], in_stride[4], s = 1;
      for (int d = r - 1; d >= 0; --d) {
        in_stride[d] = s;
        s *= dims[d];
      }
      for (int d = 0; d < r; ++d) od[d] = dims[perm[d]];
      double want[120];
      for (int64_t o = 0; o < s; ++o) {
        int64_t rem = o, src = 0;
        for (int d = r - 1; d >= 0; --d) {
          src += (rem % od[d]) * in_stride[perm[d]];
          rem /= od[d];
        }
        want[o] = tu_get(&x, src);
      }
      vnrt_attr a = tu_attr_ints("perm", perm, r);
      expect e = {ttype(kAllTypes[di], r, od), want, 0.0};
      check_op("transpose", VNRT_OP_TRANSPOSE, &x, 1, &a, 1, &e, 1);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

START_TEST(test_slice) {
  const int64_t dims[3] = {3, 10, 4};
  for (int di = 0; di < 4; ++di) {
    tu_tensor x = iota_tensor(kAllTypes[di], 3, dims, di);
    const struct { int64_t axis, start, len; } cases[3] = {{1, 2, 5}, {-1, 1, 2}, {0, 2, 1}};
    for (int c = 0; c < 3; ++c) {
      int64_t axis = cases[c].axis < 0 ? cases[c].axis + 3 : cases[c].axis;
      int64_t od[3] = {dims[0], dims[1], dims[2]};
      od[axis] = cases[c].len;
      double want[120];
      int64_t n = 0;
      for (int64_t i = 0; i < dims[0]; ++i)
        for (int64_t j = 0; j < dims[1]; ++j)
          for (int64_t k = 0; k < dims[2]; ++k) {
            int64_t coord[3] = {i, j, k};
            if (coord[axis] < cases[c].start || coord[axis] >= cases[c].start + cases[c].len) {
              continue;
            }
            want[n++] = tu_get(&x, (i * dims[1] + j) * dims[2] + k);
          }
      vnrt_attr a[3] = {tu_attr_i("axis", cases[c].axis), tu_attr_i("start", cases[c].start),
                        tu_attr_i("len", cases[c].len)};
      expect e = {ttype(kAllTypes[di], 3, od), want, 0.0};
      check_op("slice", VNRT_OP_SLICE, &x, 1, a, 3, &e, 1);
    }
    tu_tensor_free(&x);
  }
}
END_TEST

START_TEST(test_concat) {
  for (int di = 0; di < 4; ++di) {
    const struct {
      int64_t axis;
      int64_t a[3], b[3];
    } cases[3] = {{1, {2, 3, 4}, {2, 5, 4}}, {-1, {3, 2, 2}, {3, 2, 3}}, {0, {1, 2, 3}, {2, 2, 3}}};
    for (int c = 0; c < 3; ++c) {
      tu_tensor in[2] = {iota_tensor(kAllTypes[di], 3, cases[c].a, 1),
                         iota_tensor(kAllTypes[di], 3, cases[c].b, 50)};
      int64_t axis = cases[c].axis < 0 ? cases[c].axis + 3 : cases[c].axis;
      int64_t od[3] = {cases[c].a[0], cases[c].a[1], cases[c].a[2]};
      od[axis] += cases[c].b[axis];
      double want[128];
      int64_t n = 0;
      for (int64_t i = 0; i < od[0]; ++i)
        for (int64_t j = 0; j < od[1]; ++j)
          for (int64_t k = 0; k < od[2]; ++k) {
            int64_t coord[3] = {i, j, k};
            const tu_tensor *src = &in[0];
            const int64_t *sd = cases[c].a;
            if (coord[axis] >= cases[c].a[axis]) {
              coord[axis] -= cases[c].a[axis];
              src = &in[1];
              sd = cases[c].b;
            }
            want[n++] = tu_get(src, (coord[0] * sd[1] + coord[1]) * sd[2] + coord[2]);
          }
      vnrt_attr a = tu_attr_i("axis", cases[c].axis);
      expect e = {ttype(kAllTypes[di], 3, od), want, 0.0};
      check_op("concat", VNRT_OP_CONCAT, in, 2, &a, 1, &e, 1);
      free_all(in, 2);
    }
  }
}
END_TEST

/* ---- matmul and linear ----------------------------------------------------------------- */

/* Expected matmul of a[..., M, K] and b[..., K, N] into out, with batch broadcasting. */
static double *matmul_expected(const tu_tensor *a, const tu_tensor *b, const vnrt_tensor_type *o) {
  int64_t m = a->type.dims[a->type.rank - 2], k = a->type.dims[a->type.rank - 1];
  int64_t n = b->type.dims[b->type.rank - 1];
  int64_t total = vnrt_tensor_type_numel(o), batches = total / (m * n);
  /* Batch-only types so that bcast_index maps a result batch to each operand's batch. */
  vnrt_tensor_type ob = *o, ab = a->type, bb = b->type;
  ob.rank -= 2;
  ab.rank -= 2;
  bb.rank -= 2;
  double *want = malloc(sizeof(double) * (size_t)total);
  for (int64_t bi = 0; bi < batches; ++bi) {
    int64_t abi = ab.rank > 0 ? bcast_index(&ab, &ob, bi) : 0;
    int64_t bbi = bb.rank > 0 ? bcast_index(&bb, &ob, bi) : 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0.0;
        for (int64_t kk = 0; kk < k; ++kk) {
          acc += tu_get(a, abi * m * k + i * k + kk) * tu_get(b, bbi * k * n + kk * n + j);
        }
        want[bi * m * n + i * n + j] = acc;
      }
  }
  return want;
}

typedef struct mm_case {
  int32_t ra, rb, ro;
  int64_t a[4], b[4], o[4];
  vnrt_dtype da, db;
} mm_case;

static void check_matmul(vnrt_context *ctx, const mm_case *c, uint64_t seed) {
  tu_tensor in[2] = {random_tensor(c->da, c->ra, c->a, seed, -1.0f, 1.0f),
                     random_tensor(c->db, c->rb, c->b, seed + 1, -1.0f, 1.0f)};
  vnrt_tensor_type to = ttype(c->da, c->ro, c->o);
  double *want = matmul_expected(&in[0], &in[1], &to);
  char what[96];
  snprintf(what, sizeof what, "matmul %s x %s case %llu", vnrt_dtype_name(c->da),
           vnrt_dtype_name(c->db), (unsigned long long)seed);
  expect e = {to, want, TOL_GEMM};
  check_op_ctx(ctx, what, VNRT_OP_MATMUL, in, 2, NULL, 0, &e, 1);
  free(want);
  free_all(in, 2);
}

START_TEST(test_matmul) {
  const mm_case cases[] = {
      {2, 2, 2, {3, 5}, {5, 4}, {3, 4}, VNRT_F32, VNRT_F32},
      {3, 2, 3, {3, 4, 5}, {5, 6}, {3, 4, 6}, VNRT_F32, VNRT_F32}, /* b broadcast */
      {2, 3, 3, {4, 5}, {2, 5, 3}, {2, 4, 3}, VNRT_F32, VNRT_F16}, /* a broadcast */
      {4, 4, 4, {2, 1, 3, 7}, {1, 4, 7, 2}, {2, 4, 3, 2}, VNRT_F32, VNRT_BF16},
      {3, 3, 3, {2, 3, 37}, {2, 37, 19}, {2, 3, 19}, VNRT_F16, VNRT_F32}, /* f16 result */
      {2, 2, 2, {5, 9}, {9, 6}, {5, 6}, VNRT_BF16, VNRT_F16},             /* bf16 result */
  };
  vnrt_context *ctx = tu_conformance_context(0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) check_matmul(ctx, &cases[i], i);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_matmul_threads) {
  /* Big enough that the work splits into many pool chunks, with 1, 3 and 8 threads. */
  const mm_case big = {3, 2, 3, {2, 64, 96}, {96, 80}, {2, 64, 80}, VNRT_F32, VNRT_F16};
  const int threads[3] = {1, 3, 8};
  for (int t = 0; t < 3; ++t) {
    vnrt_context *ctx = tu_conformance_context(threads[t]);
    check_matmul(ctx, &big, 100 + (uint64_t)t);
    vnrt_context_destroy(ctx);
  }
}
END_TEST

static void check_linear(vnrt_context *ctx, int32_t rx, const int64_t *xd, int64_t n, vnrt_dtype dx,
                         vnrt_dtype dw, uint64_t seed) {
  int64_t k = xd[rx - 1];
  int64_t wd[2] = {n, k};
  tu_tensor in[2] = {random_tensor(dx, rx, xd, seed, -1.0f, 1.0f),
                     random_tensor(dw, 2, wd, seed + 1, -0.5f, 0.5f)};
  int64_t rows = tu_numel(&in[0]) / k;
  int64_t od[4];
  for (int32_t d = 0; d < rx - 1; ++d) od[d] = xd[d];
  od[rx - 1] = n;
  double *want = malloc(sizeof(double) * (size_t)(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t kk = 0; kk < k; ++kk)
        acc += tu_get(&in[0], r * k + kk) * tu_get(&in[1], j * k + kk);
      want[r * n + j] = acc;
    }
  char what[96];
  snprintf(what, sizeof what, "linear x %s w %s [%lld, %lld] rows %lld", vnrt_dtype_name(dx),
           vnrt_dtype_name(dw), (long long)n, (long long)k, (long long)rows);
  expect e = {ttype(dx, rx, od), want, TOL_GEMM};
  check_op_ctx(ctx, what, VNRT_OP_LINEAR, in, 2, NULL, 0, &e, 1);
  free(want);
  free_all(in, 2);
}

START_TEST(test_linear) {
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t x2[2] = {3, 37}, x3[3] = {2, 3, 37}, x1[1] = {37};
  for (int dw = 0; dw < 3; ++dw) {
    check_linear(ctx, 2, x2, 19, VNRT_F32, kFloatTypes[dw], 10 + (uint64_t)dw); /* M=3 K=37 N=19 */
    check_linear(ctx, 3, x3, 19, VNRT_F32, kFloatTypes[dw], 20 + (uint64_t)dw);
    check_linear(ctx, 1, x1, 5, VNRT_F32, kFloatTypes[dw], 30 + (uint64_t)dw);
  }
  check_linear(ctx, 2, x2, 19, VNRT_F16, VNRT_F16, 40); /* f16 activations and result */
  check_linear(ctx, 2, x2, 19, VNRT_BF16, VNRT_F32, 41);
  /* Decode-sized: 1 .. 4 rows with K a multiple of 16 (whole chunks of the GEMV kernels for CPU
   * devices), N = 37 (two groups of 16 rows and a partial one), every weight dtype. */
  for (int64_t m = 1; m <= 4; ++m) {
    const int64_t xs[2] = {m, 48};
    check_linear(ctx, 2, xs, 37, m % 2 ? VNRT_F32 : VNRT_BF16, kFloatTypes[(m - 1) % 3],
                 90 + (uint64_t)m);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_linear_threads) {
  /* One row with many outputs (decode: the split is over N), and many rows. */
  const int64_t decode[2] = {1, 512}, prefill[2] = {40, 200};
  const int threads[3] = {1, 2, 5};
  for (int t = 0; t < 3; ++t) {
    vnrt_context *ctx = tu_conformance_context(threads[t]);
    check_linear(ctx, 2, decode, 300, VNRT_F32, VNRT_F16, 60 + (uint64_t)t);
    check_linear(ctx, 2, prefill, 150, VNRT_F32, VNRT_BF16, 70 + (uint64_t)t);
    check_linear(ctx, 2, prefill, 150, VNRT_F32, VNRT_F32, 80 + (uint64_t)t);
    vnrt_context_destroy(ctx);
  }
}
END_TEST

/* The GEMM drivers' partial blocks: N one past and short of the column block widths (the
 * micro-kernels' 3/4/6/8 w rows, the [K, N] layout's 16 columns, the 96- and 384-row tiles),
 * M past the 4- and 6-row micro-tiles and not a multiple of either, f16/bf16 weights (widened
 * in the kernel) as well as f32, on 1 and 2 threads. A kernel that skips the last partial
 * column or row block leaves those results wrong. */
START_TEST(test_gemm_tails) {
  const int64_t ms[3] = {5, 7, 13}, ns[4] = {17, 97, 191, 389};
  for (int32_t threads = 1; threads <= 2; ++threads) {
    vnrt_context *ctx = tu_conformance_context(threads);
    for (int mi = 0; mi < 3; ++mi)
      for (int ni = 0; ni < 4; ++ni) {
        const int64_t xd[2] = {ms[mi], 70};
        const vnrt_dtype dw = kFloatTypes[(mi + ni) % 3];
        check_linear(ctx, 2, xd, ns[ni], VNRT_F32, dw, 500 + (uint64_t)(mi * 4 + ni));
      }
    /* The packed AVX-512 path (128 x rows and up): 8-row tiles and a partial one, 48-row w
     * panels and 144-row packed blocks with partial ones, K past one 512-column block and not a
     * multiple of 16. */
    for (int ni = 0; ni < 2; ++ni) {
      const int64_t xd[2] = {129 + 6 * ni, 530};
      check_linear(ctx, 2, xd, ns[ni + 1], VNRT_F32, kFloatTypes[ni + threads - 1],
                   520 + (uint64_t)(ni + 2 * threads));
    }
    const mm_case mm[] = {
        {2, 2, 2, {7, 40}, {40, 37}, {7, 37}, VNRT_F32, VNRT_F16},
        {2, 2, 2, {13, 33}, {33, 97}, {13, 97}, VNRT_F32, VNRT_BF16},
        {3, 2, 3, {2, 5, 24}, {24, 19}, {2, 5, 19}, VNRT_F32, VNRT_F32},
    };
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; ++i) check_matmul(ctx, &mm[i], 600 + i);
    vnrt_context_destroy(ctx);
  }
}
END_TEST

/* ---- rms_norm, softmax, swiglu --------------------------------------------------------- */

START_TEST(test_rms_norm) {
  /* D = 33, and D = 48: whole vectors of 16 channels (OpenCL's row-per-item kernel). */
  const int64_t Ds[2] = {33, 48};
  for (int di = 0; di < 2; ++di) {
    const int64_t D = Ds[di], dims[3] = {2, 5, D}, wd[1] = {D};
    for (int dx = 0; dx < 3; ++dx) {
      for (int dw = 0; dw < 4; ++dw) { /* dw == 3: no weight */
        tu_tensor in[2] = {random_tensor(kFloatTypes[dx], 3, dims, 90 + dx + 7 * di, -2.0f, 2.0f),
                           random_tensor(kFloatTypes[dw % 3], 1, wd, 95 + dw, 0.5f, 1.5f)};
        double eps = dw == 1 ? 1e-5 : 1e-6;
        double want[480];
        for (int64_t r = 0; r < 10; ++r) {
          double ss = 0.0;
          for (int64_t i = 0; i < D; ++i)
            ss += tu_get(&in[0], r * D + i) * tu_get(&in[0], r * D + i);
          double inv = 1.0 / sqrt(ss / (double)D + eps);
          for (int64_t i = 0; i < D; ++i) {
            want[r * D + i] = tu_get(&in[0], r * D + i) * inv * (dw < 3 ? tu_get(&in[1], i) : 1.0);
          }
        }
        vnrt_attr a = tu_attr_f("eps", eps);
        expect e = {in[0].type, want, TOL_ELEM};
        char what[64];
        snprintf(what, sizeof what, "rms_norm D %d x %s w %s", (int)D,
                 vnrt_dtype_name(kFloatTypes[dx]),
                 dw < 3 ? vnrt_dtype_name(kFloatTypes[dw]) : "none");
        check_op(what, VNRT_OP_RMS_NORM, in, dw < 3 ? 2 : 1, dw == 0 ? NULL : &a, dw == 0 ? 0 : 1,
                 &e, 1);
        free_all(in, 2);
      }
    }
  }
}
END_TEST

/* Many rows (backends switch to one invocation per row past 32 rows or so) with values near
 * zero and a large eps, so that mean(x²) is well below eps: where eps goes matters to every
 * result. */
START_TEST(test_rms_norm_many_rows_large_eps) {
  enum { R = 70, C = 24 };
  const int64_t dims[2] = {R, C}, wd[1] = {C};
  const double epss[2] = {1e-2, 1e-3};
  for (int dx = 0; dx < 3; ++dx) {
    for (int ei = 0; ei < 2; ++ei) {
      tu_tensor in[2] = {random_tensor(kFloatTypes[dx], 2, dims, 190 + dx, -0.1f, 0.1f),
                         random_tensor(VNRT_F32, 1, wd, 195 + ei, 0.5f, 1.5f)};
      double *want = tu_dalloc(R * C);
      for (int64_t r = 0; r < R; ++r) {
        double ss = 0.0;
        for (int64_t i = 0; i < C; ++i) ss += tu_get(&in[0], r * C + i) * tu_get(&in[0], r * C + i);
        double inv = 1.0 / sqrt(ss / C + epss[ei]);
        for (int64_t i = 0; i < C; ++i) {
          want[r * C + i] = tu_get(&in[0], r * C + i) * inv * (ei == 0 ? tu_get(&in[1], i) : 1.0);
        }
      }
      vnrt_attr a = tu_attr_f("eps", epss[ei]);
      expect e = {in[0].type, want, TOL_ELEM};
      char what[64];
      snprintf(what, sizeof what, "rms_norm [%d, %d] x %s eps %g", R, C,
               vnrt_dtype_name(kFloatTypes[dx]), epss[ei]);
      check_op(what, VNRT_OP_RMS_NORM, in, ei == 0 ? 2 : 1, &a, 1, &e, 1);
      free(want);
      free_all(in, 2);
    }
  }
}
END_TEST

START_TEST(test_softmax) {
  const int64_t dims[3] = {2, 3, 5};
  const int64_t axes[4] = {-1, 0, 1, 2};
  for (int di = 0; di < 3; ++di) {
    for (int ai = 0; ai < 4; ++ai) {
      /* Large logits: without the max subtraction exp() overflows f32. */
      tu_tensor x = random_tensor(kFloatTypes[di], 3, dims, 110 + ai, 80.0f, 100.0f);
      if (ai == 0) tu_set(&x, 0, 120.0);
      int64_t axis = axes[ai] < 0 ? axes[ai] + 3 : axes[ai];
      int64_t stride = 1;
      for (int64_t d = axis + 1; d < 3; ++d) stride *= dims[d];
      double want[30];
      for (int64_t i = 0; i < 30; ++i) {
        int64_t pos = (i / stride) % dims[axis], base = i - pos * stride;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t a = 0; a < dims[axis]; ++a) mx = fmax(mx, tu_get(&x, base + a * stride));
        for (int64_t a = 0; a < dims[axis]; ++a) sum += exp(tu_get(&x, base + a * stride) - mx);
        want[i] = exp(tu_get(&x, i) - mx) / sum;
      }
      vnrt_attr a = tu_attr_i("axis", axes[ai]);
      expect e = {x.type, want, TOL_ELEM};
      char what[64];
      snprintf(what, sizeof what, "softmax %s axis %lld", vnrt_dtype_name(kFloatTypes[di]),
               (long long)axes[ai]);
      check_op(what, VNRT_OP_SOFTMAX, &x, 1, ai == 0 ? NULL : &a, ai == 0 ? 0 : 1, &e, 1);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

START_TEST(test_swiglu) {
  const int64_t dims[2] = {6, 11};
  const double limits[3] = {0.0, 1.5, 7.0};
  for (int di = 0; di < 3; ++di) {
    for (int li = 0; li < 3; ++li) {
      tu_tensor in[2] = {random_tensor(kFloatTypes[di], 2, dims, 120 + di, -4.0f, 4.0f),
                         random_tensor(kFloatTypes[di], 2, dims, 130 + di, -4.0f, 4.0f)};
      double lim = limits[li], want[66];
      for (int i = 0; i < 66; ++i) {
        double g = tu_get(&in[0], i), u = tu_get(&in[1], i);
        if (lim > 0) {
          g = fmin(g, lim);
          u = fmin(fmax(u, -lim), lim);
        }
        want[i] = g * sigmoid_d(g) * u;
      }
      vnrt_attr a = tu_attr_f("limit", lim);
      expect e = {in[0].type, want, TOL_ELEM};
      char what[64];
      snprintf(what, sizeof what, "swiglu %s limit %g", vnrt_dtype_name(kFloatTypes[di]), lim);
      check_op(what, VNRT_OP_SWIGLU, in, 2, li == 0 ? NULL : &a, li == 0 ? 0 : 1, &e, 1);
      free_all(in, 2);
    }
  }
}
END_TEST

/* ---- embedding and topk ---------------------------------------------------------------- */

START_TEST(test_embedding) {
  const int64_t td[2] = {64, 8}, id[2] = {2, 3}, od[3] = {2, 3, 8};
  const int32_t ids[6] = {0, 63, 5, 5, 17, 40};
  for (int di = 0; di < 3; ++di) {
    tu_tensor in[2] = {random_tensor(kFloatTypes[di], 2, td, 140 + di, -1.0f, 1.0f),
                       tu_tensor_new(VNRT_I32, 2, id)};
    memcpy(in[1].data, ids, sizeof ids);
    double want[48];
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 8; ++j) want[i * 8 + j] = tu_get(&in[0], ids[i] * 8 + j);
    expect e = {ttype(VNRT_F32, 3, od), want, 0.0}; /* a gather is exact, result always f32 */
    check_op("embedding", VNRT_OP_EMBEDDING, in, 2, NULL, 0, &e, 1);
    free_all(in, 2);
  }
}
END_TEST

START_TEST(test_embedding_out_of_range) {
  const int64_t td[2] = {64, 8}, id[1] = {5};
  const int32_t bad[2][5] = {{1, 2, 3, 70, 4}, {0, -1, 3, 3, 3}};
  const char *want_id[2] = {"id 70 at position 3", "id -1 at position 1"};
  vnrt_context *ctx = tu_conformance_context(0);
  for (int c = 0; c < 2; ++c) {
    tu_tensor in[2] = {random_tensor(VNRT_F32, 2, td, 150, -1.0f, 1.0f),
                       tu_tensor_new(VNRT_I32, 1, id)};
    memcpy(in[1].data, bad[c], sizeof bad[c]);
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_EMBEDDING, in, 2, NULL, 0, 1);
    for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
      vnrt_device *dev = tu_device(ctx, d);
      tu_tensor out;
      vnrt_status s = tu_run(ctx, g, dev, in, 2, &out, 1);
      ck_assert_msg(s == VNRT_ERROR_OUT_OF_RANGE, "on %s: got %s", tu_device_spec(dev),
                    vnrt_status_string(s));
      const char *msg = vnrt_context_last_error(ctx);
      ck_assert_msg(strstr(msg, "embedding") && strstr(msg, "'out0'") && strstr(msg, want_id[c]) &&
                        strstr(msg, "[0, 64)"),
                    "on %s: message does not name op, node, id and bound: %s", tu_device_spec(dev),
                    msg);
    }
    vnrt_graph_destroy(g);
    free_all(in, 2);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_topk) {
  const int64_t dims[2] = {3, 10};
  for (int di = 0; di < 3; ++di) {
    for (int64_t k = 1; k <= 10; k += 3) {
      /* Distinct values per row (a shuffled ramp), plus exact ties in row 2. */
      tu_tensor x = tu_tensor_new(kFloatTypes[di], 2, dims);
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t i = 0; i < 10; ++i)
          tu_set(&x, r * 10 + i, (double)((i * 7 + r * 3) % 10) - 4.5);
      const double tied[10] = {1, 5, 5, 2, 5, -1, 2, 0, 5, 3};
      for (int i = 0; i < 10; ++i) tu_set(&x, 20 + i, tied[i]);
      double wv[30], wi[30];
      for (int64_t r = 0; r < 3; ++r) {
        int used[10] = {0};
        for (int64_t s = 0; s < k; ++s) {
          int best = -1;
          for (int i = 0; i < 10; ++i) {
            if (!used[i] && (best < 0 || tu_get(&x, r * 10 + i) > tu_get(&x, r * 10 + best)))
              best = i;
          }
          used[best] = 1;
          wv[r * k + s] = tu_get(&x, r * 10 + best);
          wi[r * k + s] = best;
        }
      }
      if (k >= 4) { /* the ties resolve to the lower index first */
        ck_assert(wi[2 * k + 0] == 1 && wi[2 * k + 1] == 2 && wi[2 * k + 2] == 4 &&
                  wi[2 * k + 3] == 8);
      }
      int64_t od[2] = {3, k};
      vnrt_attr a = tu_attr_i("k", k);
      expect e[2] = {{ttype(kFloatTypes[di], 2, od), wv, 0.0}, {ttype(VNRT_I32, 2, od), wi, 0.0}};
      check_op("topk", VNRT_OP_TOPK, &x, 1, &a, 1, e, 2);
      tu_tensor_free(&x);
    }
  }
}
END_TEST

static Suite *ops_suite(void) {
  Suite *s = suite_create("conformance_ops");
  TCase *ew = tcase_create("elementwise");
  tcase_add_test(ew, test_binary_broadcast);
  tcase_add_test(ew, test_unary);
  tcase_add_test(ew, test_unary_known_values);
  tcase_add_test(ew, test_scale_clamp);
  tcase_add_test(ew, test_cast_rounding);
  tcase_add_test(ew, test_cast_from_i32);
  tcase_add_test(ew, test_cast_between_floats);
  suite_add_tcase(s, ew);
  TCase *sh = tcase_create("shape");
  tcase_add_test(sh, test_reshape);
  tcase_add_test(sh, test_transpose);
  tcase_add_test(sh, test_slice);
  tcase_add_test(sh, test_concat);
  suite_add_tcase(s, sh);
  TCase *la = tcase_create("linalg");
  tcase_add_test(la, test_matmul);
  tcase_add_test(la, test_matmul_threads);
  tcase_add_test(la, test_linear);
  tcase_add_test(la, test_linear_threads);
  tcase_add_test(la, test_gemm_tails);
  tcase_add_test(la, test_rms_norm);
  tcase_add_test(la, test_rms_norm_many_rows_large_eps);
  tcase_add_test(la, test_softmax);
  tcase_add_test(la, test_swiglu);
  suite_add_tcase(s, la);
  TCase *ix = tcase_create("index");
  tcase_add_test(ix, test_embedding);
  tcase_add_test(ix, test_embedding_out_of_range);
  tcase_add_test(ix, test_topk);
  suite_add_tcase(s, ix);
  return s;
}

int main(void) { return tu_run_suite(ops_suite()); }
