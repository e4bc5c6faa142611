/* Conformance: the DeepSeek-V4 attention ops (docs/ops.md, "DeepSeek-V4 attention") on every
 * device against double-precision references written here from the spec text: rope's YaRN and
 * inverse, topk's fill, kv_write's ring, kv_compress (one run and the same sequence in chunks),
 * kv_scatter, index_scores, sparse_attention and grouped_linear (float and FP8/FP4 weights),
 * plus the shape errors of graph building and the run-time errors the spec names.
 *
 * Targets: every device the registry lists (vnrt_device_count / vnrt_device_get, narrowed by
 * $VNRT_TEST_DEVICES); the cpu runs twice, with its fast kernels and with its reference kernels
 * (vnrt_plan_desc.kernels), so that both are held to the spec. A device that cannot run a node
 * itself runs it on the CPU inside its plan while V4_ALLOW_FALLBACK is 1 (a note on stderr);
 * set it to 0 once every backend has these kernels.
 *
 * Tolerances (NMSE Σ(a−r)²/Σr² against the double reference, f32 inputs): 1e-10 for
 * kv_compress, grouped_linear and index_scores (f32 sums of exactly stored values), 1e-9 for
 * sparse_attention (exp and a softmax on top), 1e-7 for rope (cos/sin of long positions, as
 * test_conformance_attn_engram.c); integers, kv_write, kv_scatter and topk exactly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* 1: a device without a kernel for one of these ops runs it on the CPU (noted on stderr). */
#define V4_ALLOW_FALLBACK 1

#define TOL_F32 1e-10
#define TOL_ATTN 1e-9
#define TOL_ROPE 1e-7

/* ---- targets: (device, kernel mode) --------------------------------------------------- */

typedef struct target {
  vnrt_device *dev;
  vnrt_kernel_mode mode;
  int is_cpu;
  char name[48];
} target;

enum { MAX_TARGETS = 16 };

static int32_t list_targets(vnrt_context *ctx, target *t) {
  int32_t n = 0;
  for (int32_t i = 0; i < tu_device_count(ctx) && n + 2 <= MAX_TARGETS; ++i) {
    vnrt_device *dev = tu_device(ctx, i);
    const char *spec = tu_device_spec(dev);
    const int cpu = strncmp(spec, "cpu", 3) == 0;
    t[n] = (target){.dev = dev, .mode = VNRT_KERNELS_FAST, .is_cpu = cpu};
    snprintf(t[n].name, sizeof t[n].name, "%s%s", spec, cpu ? " (fast kernels)" : "");
    ++n;
    if (cpu) {
      t[n] = (target){.dev = dev, .mode = VNRT_KERNELS_REFERENCE, .is_cpu = 1};
      snprintf(t[n].name, sizeof t[n].name, "%s (reference kernels)", spec);
      ++n;
    }
  }
  ck_assert_msg(n > 0, "no device to run on");
  return n;
}

static vnrt_status plan_run(vnrt_context *ctx, const vnrt_graph *g, const target *tg,
                            int no_fallback, const tu_tensor *in, int32_t n_in, tu_tensor *out,
                            int32_t n_out, int32_t *fallback_nodes) {
  vnrt_plan_desc desc = {.no_fallback = no_fallback, .kernels = tg->mode};
  return tu_run_desc(ctx, g, tg->dev, &desc, in, n_in, out, n_out, fallback_nodes);
}

/* Runs g on one target; returns the status (the context keeps the message). A device that
 * declines a node falls back to the CPU when that is allowed. */
static vnrt_status exec(vnrt_context *ctx, const vnrt_graph *g, const target *tg,
                        const tu_tensor *in, int32_t n_in, tu_tensor *out, int32_t n_out) {
  int32_t fb = 0;
  const int may_fall_back = V4_ALLOW_FALLBACK || tu_fallback_allowed();
  vnrt_status s = plan_run(ctx, g, tg, !tu_fallback_allowed(), in, n_in, out, n_out, &fb);
  if (s == VNRT_ERROR_UNSUPPORTED && !tg->is_cpu && may_fall_back) {
    s = plan_run(ctx, g, tg, 0, in, n_in, out, n_out, &fb);
    static int noted;
    if (s == VNRT_OK && fb > 0 && !noted++) {
      fprintf(stderr, "note: %s has no kernel for some V4 ops yet; they ran on the CPU\n",
              tg->name);
    }
  }
  return s;
}

static void exec_ok(vnrt_context *ctx, const vnrt_graph *g, const target *tg, const tu_tensor *in,
                    int32_t n_in, tu_tensor *out, int32_t n_out, const char *what) {
  vnrt_status s = exec(ctx, g, tg, in, n_in, out, n_out);
  ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", what, tg->name, vnrt_status_string(s),
                vnrt_context_last_error(ctx));
}

/* ---- small helpers -------------------------------------------------------------------- */

static tu_tensor new_t(vnrt_dtype dt, int64_t d0, int64_t d1, int64_t d2) {
  int64_t dims[3] = {d0, d1, d2};
  int32_t rank = d2 > 0 ? 3 : (d1 > 0 ? 2 : 1);
  return tu_tensor_new(dt, rank, dims);
}

static tu_tensor new_i32(int64_t n, const int32_t *v) {
  tu_tensor t = new_t(VNRT_I32, n, 0, 0);
  if (v) memcpy(t.data, v, (size_t)n * sizeof *v);
  return t;
}

static void free_all(tu_tensor *t, int32_t n) {
  for (int32_t i = 0; i < n; ++i) tu_tensor_free(&t[i]);
}

static int32_t *i32s(const tu_tensor *t) { return (int32_t *)t->data; }
static float *f32s(const tu_tensor *t) { return (float *)t->data; }

static void check_nmse(const tu_tensor *got, const double *want, int64_t n, double tol,
                       const char *what, const char *tname) {
  ck_assert_msg(tu_numel(got) == n, "%s on %s: %lld elements, want %lld", what, tname,
                (long long)tu_numel(got), (long long)n);
  const double e = tu_nmse(got, want, n);
  ck_assert_msg(e <= tol, "%s on %s: NMSE %g > %g", what, tname, e, tol);
}

/* The message of a failed graph building holds every needle. */
static void expect_build_error(vnrt_op op, const tu_tensor *in, int32_t n_in,
                               const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out,
                               const char *const *needles) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value v[8], res[4];
  const char *names[4] = {"r0", "r1", "r2", "r3"};
  for (int32_t i = 0; i < n_in; ++i) {
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    TU_OK(ctx, vnrt_graph_add_input(g, name, &in[i].type, 0, &v[i]));
  }
  vnrt_status s = vnrt_graph_add_node(g, op, v, n_in, attrs, n_attrs, names, res, n_out);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s != VNRT_OK, "%s: graph building accepted a bad node", vnrt_op_name(op));
  for (const char *const *p = needles; *p; ++p) {
    ck_assert_msg(strstr(msg, *p) != NULL, "%s: message '%s' lacks '%s'", vnrt_op_name(op), msg,
                  *p);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

/* Runs a one-node graph on every target expecting a run-time error whose message holds every
 * needle. */
static void expect_run_error(vnrt_op op, const tu_tensor *in, int32_t n_in, const vnrt_attr *attrs,
                             int32_t n_attrs, int32_t n_out, const char *const *needles) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, n_out);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[4];
    vnrt_status s = exec(ctx, g, &tg[k], in, n_in, out, n_out);
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(s == VNRT_ERROR_OUT_OF_RANGE, "%s on %s: got %s (%s), want out of range",
                  vnrt_op_name(op), tg[k].name, vnrt_status_string(s), msg);
    for (const char *const *p = needles; *p; ++p) {
      ck_assert_msg(strstr(msg, *p) != NULL, "%s on %s: message '%s' lacks '%s'", vnrt_op_name(op),
                    tg[k].name, msg, *p);
    }
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

/* ---- rope: YaRN and inverse ------------------------------------------------------------ */

typedef struct yarn {
  double factor; /* 0: no YaRN */
  double orig_ctx, beta_fast, beta_slow;
} yarn;

static double yarn_corr(double beta, double dims, double L, double theta) {
  return dims * log(L / (beta * 2.0 * M_PI)) / (2.0 * log(theta));
}

/* The frequency of pair i (docs/ops.md: f_i·(1 − ramp_i) + (f_i/f)·ramp_i); low and high are
 * written when wanted. */
static double yarn_freq(int64_t i, int64_t dims, double theta, const yarn *y, double *low_out,
                        double *high_out) {
  const double fi = pow(theta, -2.0 * (double)i / (double)dims);
  if (!(y && y->factor > 0)) return fi;
  const double low = fmax(floor(yarn_corr(y->beta_fast, (double)dims, y->orig_ctx, theta)), 0.0);
  double high =
      fmin(ceil(yarn_corr(y->beta_slow, (double)dims, y->orig_ctx, theta)), (double)dims - 1.0);
  if (low == high) high += 0.001;
  if (low_out) *low_out = low;
  if (high_out) *high_out = high;
  double ramp = ((double)i - low) / (high - low);
  ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
  return fi * (1.0 - ramp) + fi / y->factor * ramp;
}

static void rope_ref(const tu_tensor *x, const int32_t *pos, int64_t dims, double theta,
                     int interleaved, const yarn *y, int inverse, double *out) {
  const int64_t T = x->type.dims[0], H = x->type.dims[1], D = x->type.dims[2];
  const int64_t first = D - dims;
  for (int64_t i = 0; i < T * H * D; ++i) out[i] = tu_get(x, i);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      double *row = out + (t * H + h) * D + first;
      for (int64_t i = 0; i < dims / 2; ++i) {
        double ang = pos[t] * yarn_freq(i, dims, theta, y, NULL, NULL);
        if (inverse) ang = -ang;
        const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + dims / 2;
        const double x1 = row[a], x2 = row[b];
        row[a] = x1 * cos(ang) - x2 * sin(ang);
        row[b] = x1 * sin(ang) + x2 * cos(ang);
      }
    }
  }
}

static int n_rope_attrs(vnrt_attr *at, double theta, int64_t dims, int interleaved, const yarn *y,
                        int inverse) {
  int n = 0;
  at[n++] = tu_attr_f("theta", theta);
  at[n++] = tu_attr_i("interleaved", interleaved);
  if (dims > 0) at[n++] = tu_attr_i("dims", dims);
  if (y && y->factor > 0) {
    at[n++] = tu_attr_f("yarn_factor", y->factor);
    at[n++] = tu_attr_i("yarn_orig_ctx", (int64_t)y->orig_ctx);
    if (y->beta_fast != 32.0) at[n++] = tu_attr_f("beta_fast", y->beta_fast);
    if (y->beta_slow != 1.0) at[n++] = tu_attr_f("beta_slow", y->beta_slow);
  }
  if (inverse >= 0) at[n++] = tu_attr_i("inverse", inverse);
  return n;
}

/* dims <= 0: the attribute is left out (D); inverse < 0: left out (0). */
static void check_rope(int64_t T, int64_t H, int64_t D, int64_t dims, double theta, int interleaved,
                       const yarn *y, int inverse, const int32_t *pos, uint64_t seed) {
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[2] = {new_t(VNRT_F32, T, H, D), new_i32(T, pos)};
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  vnrt_attr at[9];
  const int na = n_rope_attrs(at, theta, dims, interleaved, y, inverse);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ROPE, in, 2, at, na, 1);
  const int64_t n = T * H * D;
  double *want = tu_dalloc(n);
  rope_ref(&in[0], pos, dims > 0 ? dims : D, theta, interleaved, y, inverse > 0, want);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[1];
    exec_ok(ctx, g, &tg[k], in, 2, out, 1, "rope");
    check_nmse(&out[0], want, n, TOL_ROPE, "rope", tg[k].name);
    free_all(out, 1);
  }
  free(want);
  vnrt_graph_destroy(g);
  free_all(in, 2);
  vnrt_context_destroy(ctx);
}

static const yarn kFlash = {16.0, 65536.0, 32.0, 1.0};

START_TEST(rope_yarn_reference_matches_the_flash_numbers) {
  /* theta 160000, f 16, L 65536, dims 64: low 15, high 25; pairs 0..15 keep f_i, pairs >= 25
   * are f_i/16, the ones between blend. This pins the test's own reference. */
  double low = 0, high = 0;
  for (int64_t i = 0; i < 32; ++i) {
    const double fi = pow(160000.0, -2.0 * (double)i / 64.0);
    const double f = yarn_freq(i, 64, 160000.0, &kFlash, &low, &high);
    if (i <= 15) ck_assert_msg(f == fi, "pair %lld: %g != f_i %g", (long long)i, f, fi);
    if (i >= 25) {
      ck_assert_msg(fabs(f - fi / 16.0) <= 1e-15 * fi, "pair %lld: %g != f_i/16", (long long)i, f);
    }
    if (i > 15 && i < 25)
      ck_assert_msg(f < fi && f > fi / 16.0, "pair %lld not blended", (long long)i);
  }
  ck_assert_double_eq(low, 15.0);
  ck_assert_double_eq(high, 25.0);
}
END_TEST

START_TEST(rope_yarn_flash_configuration) {
  const int32_t pos[6] = {0, 1, 4095, 65535, 65536, 30000};
  check_rope(6, 3, 64, 0, 160000.0, 1, &kFlash, -1, pos, 101);
  /* The partial rotation of V4 (last 64 of 128 channels), half-split pairs. */
  check_rope(6, 2, 128, 64, 160000.0, 0, &kFlash, 0, pos, 102);
}
END_TEST

START_TEST(rope_yarn_custom_betas_and_low_equals_high) {
  const int32_t pos[5] = {3, 17, 100, 999, 5};
  const yarn y = {4.0, 2048.0, 8.0, 2.0};
  check_rope(5, 2, 32, 0, 10000.0, 1, &y, -1, pos, 103);
  /* A factor of 1 leaves plain rope. */
  const yarn one = {1.0, 4096.0, 32.0, 1.0};
  check_rope(5, 2, 32, 0, 10000.0, 1, &one, -1, pos, 104);
  /* corr(2.0) = 10.05 and corr(2.2) = 9.89 (dims 32, L 4096, theta 10000): low = high = 10,
   * so high becomes 10.001 and the ramp is a step between pairs 10 and 11. */
  const yarn step = {8.0, 4096.0, 2.0, 2.2};
  double low = 0, high = 0;
  yarn_freq(0, 32, 10000.0, &step, &low, &high);
  ck_assert_double_eq(low, 10.0);
  ck_assert_double_eq_tol(high, 10.001, 1e-12);
  check_rope(5, 2, 32, 0, 10000.0, 0, &step, -1, pos, 105);
}
END_TEST

START_TEST(rope_inverse_rotates_by_the_negative_angle) {
  const int32_t pos[4] = {7, 0, 12345, 64};
  check_rope(4, 3, 16, 0, 10000.0, 1, NULL, 1, pos, 106);
  check_rope(4, 3, 24, 16, 10000.0, 0, &kFlash, 1, pos, 107);
}
END_TEST

/* rope(inverse=1) after rope at the same positions gives x back (to f32 rounding). */
START_TEST(rope_inverse_after_forward_is_identity) {
  enum { T = 5, H = 4, D = 64 };
  const int32_t pos[T] = {0, 9, 4097, 65000, 123};
  for (int with_yarn = 0; with_yarn < 2; ++with_yarn) {
    vnrt_context *ctx = tu_conformance_context(0);
    tu_tensor in[2] = {new_t(VNRT_F32, T, H, D), new_i32(T, pos)};
    tu_fill_uniform(&in[0], 110 + (uint64_t)with_yarn, -1.0f, 1.0f);
    vnrt_graph *g = NULL;
    TU_OK(ctx, vnrt_graph_create(ctx, &g));
    vnrt_value x, p, r1, r2;
    TU_OK(ctx, vnrt_graph_add_input(g, "x", &in[0].type, 0, &x));
    TU_OK(ctx, vnrt_graph_add_input(g, "pos", &in[1].type, 0, &p));
    vnrt_attr at[9];
    const yarn *y = with_yarn ? &kFlash : NULL;
    int na = n_rope_attrs(at, 160000.0, 0, 1, y, -1);
    vnrt_value args[2] = {x, p};
    const char *n1 = "fwd", *n2 = "back";
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ROPE, args, 2, at, na, &n1, &r1, 1));
    na = n_rope_attrs(at, 160000.0, 0, 1, y, 1);
    args[0] = r1;
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ROPE, args, 2, at, na, &n2, &r2, 1));
    TU_OK(ctx, vnrt_graph_add_output(g, r2));
    TU_OK(ctx, vnrt_graph_add_output(g, r1));
    double *want = tu_values(&in[0]);
    target tg[MAX_TARGETS];
    const int32_t nt = list_targets(ctx, tg);
    for (int32_t k = 0; k < nt; ++k) {
      tu_tensor out[2];
      exec_ok(ctx, g, &tg[k], in, 2, out, 2, "rope inverse of rope");
      check_nmse(&out[0], want, T * H * D, 1e-12, "rope inverse of rope", tg[k].name);
      /* The forward rotation did change x (the pair at position 0 aside). */
      ck_assert_msg(tu_nmse(&out[1], want, T * H * D) > 1e-2, "%s: rope changed nothing",
                    tg[k].name);
      free_all(out, 2);
    }
    free(want);
    vnrt_graph_destroy(g);
    free_all(in, 2);
    vnrt_context_destroy(ctx);
  }
}
END_TEST

START_TEST(rope_yarn_attributes_shape_errors) {
  tu_tensor in[2] = {new_t(VNRT_F32, 2, 1, 8), new_t(VNRT_I32, 2, 0, 0)};
  vnrt_attr a1[1] = {tu_attr_f("yarn_factor", 16.0)};
  expect_build_error(VNRT_OP_ROPE, in, 2, a1, 1, 1,
                     (const char *const[]){"yarn_factor", "yarn_orig_ctx", NULL});
  vnrt_attr a2[1] = {tu_attr_f("beta_fast", 16.0)};
  expect_build_error(VNRT_OP_ROPE, in, 2, a2, 1, 1,
                     (const char *const[]){"beta_fast", "need yarn_factor", NULL});
  vnrt_attr a3[2] = {tu_attr_f("yarn_factor", 0.5), tu_attr_i("yarn_orig_ctx", 4096)};
  expect_build_error(VNRT_OP_ROPE, in, 2, a3, 2, 1,
                     (const char *const[]){"yarn_factor = 0.5", NULL});
  vnrt_attr a4[1] = {tu_attr_i("inverse", 2)};
  expect_build_error(VNRT_OP_ROPE, in, 2, a4, 1, 1, (const char *const[]){"inverse", NULL});
  free_all(in, 2);
}
END_TEST

/* ---- topk with fill ------------------------------------------------------------------- */

/* Descending, ties to the lower index; -inf values give fill (has_fill) or their index. */
static void topk_ref(const float *x, int64_t rows, int64_t e, int64_t k, int has_fill, int32_t fill,
                     float *vals, int32_t *idx) {
  for (int64_t r = 0; r < rows; ++r) {
    char *used = calloc((size_t)e, 1);
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t i = 0; i < e; ++i) {
        if (used[i]) continue;
        if (best < 0 || x[r * e + i] > x[r * e + best]) best = i;
      }
      used[best] = 1;
      vals[r * k + j] = x[r * e + best];
      idx[r * k + j] = (int32_t)best;
      if (has_fill && isinf(x[r * e + best]) && x[r * e + best] < 0) idx[r * k + j] = fill;
    }
    free(used);
  }
}

static void check_topk_fill(int has_fill, int32_t fill) {
  enum { R = 4, E = 11, K = 6 };
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[1] = {new_t(VNRT_F32, R, E, 0)};
  float *x = f32s(&in[0]);
  /* Distinct finite values (no near-ties) and per row a different number of -inf: row 0 none,
   * row 1 a few (fewer than k), row 2 more than E-k, row 3 all. */
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < E; ++i) x[r * E + i] = (float)((i * 7 + r * 3) % E) * 0.25f - 1.0f;
  }
  const int ninf[R] = {0, 3, 8, E};
  for (int64_t r = 0; r < R; ++r) {
    for (int j = 0; j < ninf[r]; ++j) x[r * E + (j * 5 + (int)r) % E] = -INFINITY;
  }
  vnrt_attr at[2] = {tu_attr_i("k", K), tu_attr_i("fill", fill)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_TOPK, in, 1, at, has_fill ? 2 : 1, 2);
  float vals[R * K];
  int32_t idx[R * K];
  topk_ref(x, R, E, K, has_fill, fill, vals, idx);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[2];
    exec_ok(ctx, g, &tg[k], in, 1, out, 2, "topk");
    ck_assert_int_eq(tu_numel(&out[0]), R * K);
    for (int64_t i = 0; i < R * K; ++i) {
      const float v = f32s(&out[0])[i];
      if (!(v == vals[i]))
        ck_abort_msg("topk on %s: value %lld is %g, want %g", tg[k].name, (long long)i, v, vals[i]);
      if (i32s(&out[1])[i] != idx[i]) {
        ck_abort_msg("topk fill on %s: index %lld is %d, want %d", tg[k].name, (long long)i,
                     i32s(&out[1])[i], idx[i]);
      }
    }
    free_all(out, 2);
  }
  vnrt_graph_destroy(g);
  free_all(in, 1);
  vnrt_context_destroy(ctx);
}

START_TEST(topk_fill_replaces_the_indices_of_minus_inf) {
  check_topk_fill(1, -1);
  check_topk_fill(1, 12345);
  check_topk_fill(0, 0); /* without fill the -inf entries keep their indices */
}
END_TEST

/* Rows of a decode step (a multiple of 4 wide: lavapipe's rank kernel, topk.comp OP 1): many
 * exact ties, -0 beside +0 (equal: the lower index first), -inf with and without fill. */
static void check_topk_wide(int64_t rows, int64_t e, int64_t k, int has_fill) {
  vnrt_context *ctx = tu_conformance_context(0);
  int64_t dims[2] = {rows, e};
  tu_tensor in[1] = {tu_tensor_new(VNRT_F32, 2, dims)};
  float *x = f32s(&in[0]);
  for (int64_t i = 0; i < rows * e; ++i) x[i] = (float)((i * 37) % 11) * 0.5f - 2.0f;
  for (int64_t i = 0; i < rows * e; i += 13) x[i] = -INFINITY;
  for (int64_t i = 5; i < rows * e; i += 17) x[i] = (i / 17) % 2 ? -0.0f : 0.0f;
  vnrt_attr at[2] = {tu_attr_i("k", k), tu_attr_i("fill", -7)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_TOPK, in, 1, at, has_fill ? 2 : 1, 2);
  float *vals = malloc(sizeof *vals * (size_t)(rows * k));
  int32_t *idx = malloc(sizeof *idx * (size_t)(rows * k));
  topk_ref(x, rows, e, k, has_fill, -7, vals, idx);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t t = 0; t < nt; ++t) {
    tu_tensor out[2];
    exec_ok(ctx, g, &tg[t], in, 1, out, 2, "topk");
    for (int64_t i = 0; i < rows * k; ++i) {
      const float v = f32s(&out[0])[i];
      if (!(v == vals[i]) || signbit(v) != signbit(vals[i]) || i32s(&out[1])[i] != idx[i]) {
        ck_abort_msg("topk [%lld, %lld] k=%lld on %s: entry %lld is %g at %d, want %g at %d",
                     (long long)rows, (long long)e, (long long)k, tg[t].name, (long long)i, v,
                     i32s(&out[1])[i], vals[i], idx[i]);
      }
    }
    free_all(out, 2);
  }
  free(vals);
  free(idx);
  vnrt_graph_destroy(g);
  free_all(in, 1);
  vnrt_context_destroy(ctx);
}

START_TEST(topk_decode_rows_rank_ties_zeros_and_minus_inf) {
  check_topk_wide(1, 1024, 64, 1);
  check_topk_wide(3, 64, 64, 0);
  check_topk_wide(2, 8, 3, 1);
}
END_TEST

START_TEST(topk_fill_out_of_i32_is_a_build_error) {
  tu_tensor in[1] = {new_t(VNRT_F32, 2, 5, 0)};
  vnrt_attr at[2] = {tu_attr_i("k", 2), tu_attr_i("fill", 5000000000LL)};
  expect_build_error(VNRT_OP_TOPK, in, 1, at, 2, 2, (const char *const[]){"fill", "i32", NULL});
  free_all(in, 1);
}
END_TEST

/* ---- kv_write ring --------------------------------------------------------------------- */

static void check_kv_ring(int64_t S, int64_t T, int32_t pos, vnrt_dtype dt, uint64_t seed) {
  enum { C = 3 };
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[3] = {new_t(dt, S, 2, C), new_t(dt, T, 2, C), new_i32(1, &pos)};
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  tu_fill_uniform(&in[1], seed + 1, 2.0f, 3.0f);
  vnrt_attr at[1] = {tu_attr_i("ring", 1)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_KV_WRITE, in, 3, at, 1, 1);
  const int64_t row = 2 * C, n = S * row;
  double *want = tu_values(&in[0]);
  const int64_t first = T > S ? T - S : 0;
  for (int64_t t = first; t < T; ++t) {
    const int64_t r = ((int64_t)pos + t) % S;
    for (int64_t c = 0; c < row; ++c) want[r * row + c] = tu_get(&in[1], t * row + c);
  }
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[1];
    exec_ok(ctx, g, &tg[k], in, 3, out, 1, "kv_write ring");
    ck_assert_int_eq(tu_numel(&out[0]), n);
    for (int64_t i = 0; i < n; ++i) {
      if (tu_get(&out[0], i) != want[i]) {
        ck_abort_msg("kv_write ring S=%lld T=%lld pos=%d on %s: element %lld is %g, want %g",
                     (long long)S, (long long)T, pos, tg[k].name, (long long)i, tu_get(&out[0], i),
                     want[i]);
      }
    }
    free_all(out, 1);
  }
  free(want);
  vnrt_graph_destroy(g);
  free_all(in, 3);
  vnrt_context_destroy(ctx);
}

START_TEST(kv_write_ring_wraps_and_keeps_the_last_s_positions) {
  check_kv_ring(8, 3, 2, VNRT_F32, 201);       /* inside */
  check_kv_ring(8, 5, 6, VNRT_F32, 202);       /* across the end */
  check_kv_ring(8, 1, 1000003, VNRT_F32, 203); /* decode, far position */
  check_kv_ring(5, 13, 9, VNRT_F32, 204);      /* T > S: only the last 5 */
  check_kv_ring(4, 8, 0, VNRT_BF16, 205);      /* T = 2S from 0 */
  check_kv_ring(6, 6, 3, VNRT_F16, 206);       /* T = S */
}
END_TEST

START_TEST(kv_write_ring_negative_pos_is_a_run_time_error) {
  tu_tensor in[3] = {new_t(VNRT_F32, 4, 2, 0), new_t(VNRT_F32, 2, 2, 0),
                     new_i32(1, (int32_t[]){-3})};
  tu_fill_uniform(&in[0], 1, -1, 1);
  tu_fill_uniform(&in[1], 2, -1, 1);
  vnrt_attr at[1] = {tu_attr_i("ring", 1)};
  expect_run_error(VNRT_OP_KV_WRITE, in, 3, at, 1, 1,
                   (const char *const[]){"kv_write", "-3", NULL});
  free_all(in, 3);
}
END_TEST

/* moe_ffn with FP4 experts (V4's routed experts) and an expert id outside [0, E): a run-time
 * error naming the id, also where the device reads the check only after the run (OpenCL). */
START_TEST(moe_ffn_fp4_bad_expert_is_a_run_time_error) {
  const int32_t bad[2] = {5, -2};
  for (int b = 0; b < 2; ++b) {
    tu_tensor in[7] = {new_t(VNRT_F32, 2, 64, 0),   new_i32(4, (int32_t[]){0, 1, 3, bad[b]}),
                       new_t(VNRT_F32, 2, 2, 0),    new_t(VNRT_E2M1, 4, 64, 64),
                       new_t(VNRT_E2M1, 4, 64, 32), new_t(VNRT_E8M0, 4, 64, 2),
                       new_t(VNRT_E8M0, 4, 64, 1)};
    in[1].type.rank = 2, in[1].type.dims[0] = 2, in[1].type.dims[1] = 2;
    tu_fill_uniform(&in[0], 3, -1, 1);
    tu_fill_uniform(&in[2], 4, 0, 1);
    char id[16];
    snprintf(id, sizeof id, "%d", (int)bad[b]);
    expect_run_error(VNRT_OP_MOE_FFN, in, 7, NULL, 0, 1,
                     (const char *const[]){"moe_ffn", id, NULL});
    free_all(in, 7);
  }
}
END_TEST

/* ---- kv_compress ----------------------------------------------------------------------- */

/* One compressor's whole sequence: a, z [P, c·d] and ape [m, c·d]. */
typedef struct cseq {
  int64_t P, m, d, c;
  int overlap;
  tu_tensor a, z, ape;
} cseq;

static cseq cseq_new(int64_t P, int64_t m, int64_t d, int overlap, uint64_t seed) {
  cseq s = {.P = P, .m = m, .d = d, .c = 1 + overlap, .overlap = overlap};
  const int64_t cd = s.c * d;
  s.a = new_t(VNRT_F32, P, cd, 0);
  s.z = new_t(VNRT_F32, P, cd, 0);
  s.ape = new_t(VNRT_F32, m, cd, 0);
  tu_fill_uniform(&s.a, seed, -2.0f, 2.0f);
  tu_fill_uniform(&s.z, seed + 1, -3.0f, 3.0f);
  tu_fill_uniform(&s.ape, seed + 2, -1.0f, 1.0f);
  return s;
}

static void cseq_free(cseq *s) {
  tu_tensor_free(&s->a);
  tu_tensor_free(&s->z);
  tu_tensor_free(&s->ape);
}

/* z'_p[ch] = z_p[ch] + ape[p mod m][ch], rounded to f32 as the op stores it in its state. */
static double cseq_zp(const cseq *s, int64_t p, int64_t ch) {
  const int64_t cd = s->c * s->d;
  return (double)(float)(f32s(&s->z)[p * cd + ch] + f32s(&s->ape)[(p % s->m) * cd + ch]);
}

/* Entry of window w from the definition: a softmax per channel over the window's slots
 * (overlap: A of window w−1, none for w = 0, and B of window w). */
static void cseq_entry(const cseq *s, int64_t w, double *out) {
  const int64_t cd = s->c * s->d, m = s->m;
  for (int64_t k = 0; k < s->d; ++k) {
    double zs[512], as[512];
    int n = 0;
    if (s->overlap && w >= 1) {
      for (int64_t p = (w - 1) * m; p < w * m; ++p) {
        zs[n] = cseq_zp(s, p, k);
        as[n++] = f32s(&s->a)[p * cd + k];
      }
    }
    const int64_t ch = s->overlap ? s->d + k : k;
    for (int64_t p = w * m; p < w * m + m; ++p) {
      zs[n] = cseq_zp(s, p, ch);
      as[n++] = f32s(&s->a)[p * cd + ch];
    }
    double mx = -INFINITY, den = 0.0, num = 0.0;
    for (int i = 0; i < n; ++i) mx = fmax(mx, zs[i]);
    for (int i = 0; i < n; ++i) {
      den += exp(zs[i] - mx);
      num += exp(zs[i] - mx) * as[i];
    }
    out[k] = num / den;
  }
}

/* Runs the sequence in chunks (lengths sum to s->P) on target tg, carrying the state results
 * into the next run's state inputs; checks each run's entries, entry_pos and state against the
 * definition, and stores every window's entry in all_entries[w·d ..] (as the device gave it). */
static void run_chunks(vnrt_context *ctx, const cseq *s, const int64_t *chunks, int n_chunks,
                       const target *tg, float *all_entries) {
  const int64_t cd = s->c * s->d, m = s->m, d = s->d, srows = s->c * m;
  tu_tensor st_a = new_t(VNRT_F32, srows, cd, 0), st_z = new_t(VNRT_F32, srows, cd, 0);
  int64_t pos0 = 0;
  vnrt_attr at[2] = {tu_attr_i("ratio", m), tu_attr_i("overlap", s->overlap)};
  for (int ci = 0; ci < n_chunks; ++ci) {
    const int64_t T = chunks[ci];
    const int32_t p0 = (int32_t)pos0;
    tu_tensor in[6] = {
        new_t(VNRT_F32, T, cd, 0), new_t(VNRT_F32, T, cd, 0), s->ape, st_a, st_z, new_i32(1, &p0)};
    memcpy(in[0].data, f32s(&s->a) + pos0 * cd, (size_t)(T * cd) * sizeof(float));
    memcpy(in[1].data, f32s(&s->z) + pos0 * cd, (size_t)(T * cd) * sizeof(float));
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_KV_COMPRESS, in, 6, at, 2, 4);
    tu_tensor out[4];
    char what[96];
    snprintf(what, sizeof what, "kv_compress m=%lld overlap=%d run pos0=%lld T=%lld", (long long)m,
             s->overlap, (long long)pos0, (long long)T);
    exec_ok(ctx, g, tg, in, 6, out, 4, what);
    const int64_t N = (T + m - 1) / m;
    ck_assert_msg(tu_numel(&out[0]) == N * d && tu_numel(&out[1]) == N, "%s on %s: shapes", what,
                  tg->name);
    /* Windows closing in [pos0, pos0 + T), in order, then zero rows with entry_pos -1. */
    double *want = tu_dalloc(N * d);
    int64_t row = 0;
    for (int64_t w = pos0 / m; (w + 1) * m - 1 < pos0 + T; ++w) {
      if ((w + 1) * m - 1 < pos0) continue;
      ck_assert_int_lt(row, N);
      cseq_entry(s, w, want + row * d);
      if (i32s(&out[1])[row] != (int32_t)(w * m)) {
        ck_abort_msg("%s on %s: entry_pos[%lld] = %d, want %lld", what, tg->name, (long long)row,
                     i32s(&out[1])[row], (long long)(w * m));
      }
      memcpy(all_entries + w * d, f32s(&out[0]) + row * d, (size_t)d * sizeof(float));
      ++row;
    }
    for (int64_t r = row; r < N; ++r) {
      if (i32s(&out[1])[r] != -1) {
        ck_abort_msg("%s on %s: unused entry_pos[%lld] = %d, want -1", what, tg->name, (long long)r,
                     i32s(&out[1])[r]);
      }
      for (int64_t k = 0; k < d; ++k) {
        if (f32s(&out[0])[r * d + k] != 0.0f) {
          ck_abort_msg("%s on %s: unused entry row %lld is not 0", what, tg->name, (long long)r);
        }
      }
    }
    check_nmse(&out[0], want, N * d, TOL_F32, what, tg->name);
    /* The state: a and z' of the open window W' (row m·overlap + p mod m) and, with overlap,
     * of window W'−1 (row p mod m); rows of positions not seen yet keep their old contents. */
    const int64_t end = pos0 + T, W1 = end / m;
    for (int64_t series = 0; series <= s->overlap; ++series) {
      const int64_t w = series == s->overlap ? W1 : W1 - 1; /* the open window, or the one before */
      const int64_t base = series == s->overlap ? m * s->overlap : 0;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t p = w * m + j, r = base + j;
        for (int64_t ch = 0; ch < cd; ++ch) {
          float wa, wz;
          if (w < 0 || p >= end) {
            wa = f32s(&st_a)[r * cd + ch];
            wz = f32s(&st_z)[r * cd + ch];
          } else {
            wa = f32s(&s->a)[p * cd + ch];
            wz = (float)cseq_zp(s, p, ch);
          }
          const float ga = f32s(&out[2])[r * cd + ch], gz = f32s(&out[3])[r * cd + ch];
          if (ga != wa || gz != wz) {
            ck_abort_msg(
                "%s on %s: state row %lld ch %lld (position %lld) is a=%g z=%g, want "
                "a=%g z=%g",
                what, tg->name, (long long)r, (long long)ch, (long long)p, ga, gz, wa, wz);
          }
        }
      }
    }
    free(want);
    tu_tensor_free(&st_a);
    tu_tensor_free(&st_z);
    st_a = out[2];
    st_z = out[3];
    free_all(out, 2);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    tu_tensor_free(&in[5]);
    vnrt_graph_destroy(g);
    pos0 += T;
  }
  ck_assert_int_eq(pos0, s->P);
  tu_tensor_free(&st_a);
  tu_tensor_free(&st_z);
}

/* One prefill run of the whole sequence and the same sequence in chunks give the same entries
 * bit for bit, and both match the definition. */
static void check_compress(int64_t m, int64_t d, int overlap, const int64_t *chunks, int n_chunks,
                           uint64_t seed) {
  int64_t P = 0;
  for (int i = 0; i < n_chunks; ++i) P += chunks[i];
  vnrt_context *ctx = tu_conformance_context(3);
  cseq s = cseq_new(P, m, d, overlap, seed);
  const int64_t nw = P / m;
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    float *one = calloc((size_t)((nw + 1) * d), sizeof(float));
    float *many = calloc((size_t)((nw + 1) * d), sizeof(float));
    run_chunks(ctx, &s, &P, 1, &tg[k], one);
    run_chunks(ctx, &s, chunks, n_chunks, &tg[k], many);
    for (int64_t i = 0; i < nw * d; ++i) {
      if (memcmp(&one[i], &many[i], sizeof(float)) != 0) {
        ck_abort_msg(
            "kv_compress m=%lld overlap=%d on %s: window %lld ch %lld: one run %.9g, "
            "chunked %.9g",
            (long long)m, overlap, tg[k].name, (long long)(i / d), (long long)(i % d), one[i],
            many[i]);
      }
    }
    free(one);
    free(many);
  }
  cseq_free(&s);
  vnrt_context_destroy(ctx);
}

START_TEST(kv_compress_hca_no_overlap) {
  const int64_t c1[] = {5, 1, 1, 3, 7, 2, 4, 6, 1, 1}; /* 31 */
  check_compress(4, 6, 0, c1, 10, 301);
  const int64_t c2[] = {3, 9, 1, 1, 1, 11, 17, 4, 7, 1}; /* 55 */
  check_compress(8, 5, 0, c2, 10, 302);
}
END_TEST

START_TEST(kv_compress_csa_overlap_two_series) {
  const int64_t c1[] = {5, 1, 1, 3, 7, 2, 4, 6, 1, 1}; /* 31 */
  check_compress(4, 6, 1, c1, 10, 311);
  const int64_t c2[] = {1, 2, 13, 1, 8, 1, 20, 3, 1}; /* 50 */
  check_compress(8, 3, 1, c2, 9, 312);
  /* Wide entries: several vectors of channels and more than one block of the fast kernel. */
  const int64_t c3[] = {6, 1, 1, 9, 3}; /* 20 */
  check_compress(4, 20, 1, c3, 5, 313);
  check_compress(4, 300, 0, c3, 5, 314);
  /* c·d a multiple of 16: state rows moved 16 channels at a time (OpenCL) */
  check_compress(4, 8, 1, c1, 10, 315);
}
END_TEST

START_TEST(kv_compress_long_ratio_and_decode_steps) {
  /* m = 128 (HCA), a prefill that closes one window, then decode steps across the next close. */
  const int64_t c1[] = {130, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 140, 1, 1, 1};
  check_compress(128, 4, 0, c1, 21, 321);
  const int64_t c2[] = {17, 100, 11, 1, 1, 1, 1, 126, 2}; /* 260 */
  check_compress(64, 3, 1, c2, 9, 322);
  check_compress(128, 16, 0, c1, 21, 323); /* c·d a multiple of 16 */
  check_compress(64, 8, 1, c2, 9, 324);
}
END_TEST

START_TEST(kv_compress_prefill_not_a_multiple_of_ratio) {
  /* pos0 = 0, T = 11, m = 4: windows 0 and 1 close, row 2 is zero with entry_pos -1. */
  const int64_t c[] = {11};
  check_compress(4, 5, 0, c, 1, 331);
  check_compress(4, 5, 1, c, 1, 332);
  const int64_t c3[] = {3}; /* no window closes at all */
  check_compress(4, 2, 1, c3, 1, 333);
}
END_TEST

/* A negative pos0 is a run-time error (also where the device reads the check after the run). */
START_TEST(kv_compress_negative_pos0_is_a_run_time_error) {
  tu_tensor in[6] = {new_t(VNRT_F32, 3, 8, 0), new_t(VNRT_F32, 3, 8, 0),
                     new_t(VNRT_F32, 4, 8, 0), new_t(VNRT_F32, 4, 8, 0),
                     new_t(VNRT_F32, 4, 8, 0), new_i32(1, (int32_t[]){-5})};
  for (int i = 0; i < 5; ++i) tu_fill_uniform(&in[i], 20 + (uint64_t)i, -1, 1);
  vnrt_attr at[1] = {tu_attr_i("ratio", 4)};
  expect_run_error(VNRT_OP_KV_COMPRESS, in, 6, at, 1, 4,
                   (const char *const[]){"kv_compress", "pos0", "is negative", NULL});
  free_all(in, 6);
  /* T = 0 changes nothing, but a negative pos0 is still refused (docs/ops.md): the caller's
   * position is wrong whether or not this run has tokens. */
  tu_tensor e[6] = {new_t(VNRT_F32, 0, 8, 0), new_t(VNRT_F32, 0, 8, 0),
                    new_t(VNRT_F32, 4, 8, 0), new_t(VNRT_F32, 4, 8, 0),
                    new_t(VNRT_F32, 4, 8, 0), new_i32(1, (int32_t[]){-1})};
  for (int i = 2; i < 5; ++i) tu_fill_uniform(&e[i], 30 + (uint64_t)i, -1, 1);
  expect_run_error(VNRT_OP_KV_COMPRESS, e, 6, at, 1, 4,
                   (const char *const[]){"kv_compress", "pos0", "is negative", NULL});
  free_all(e, 6);
}
END_TEST

START_TEST(kv_compress_shape_errors) {
  tu_tensor in[6] = {new_t(VNRT_F32, 5, 7, 0), new_t(VNRT_F32, 5, 7, 0), new_t(VNRT_F32, 4, 7, 0),
                     new_t(VNRT_F32, 8, 7, 0), new_t(VNRT_F32, 8, 7, 0), new_t(VNRT_I32, 1, 0, 0)};
  vnrt_attr at[2] = {tu_attr_i("ratio", 4), tu_attr_i("overlap", 1)};
  expect_build_error(VNRT_OP_KV_COMPRESS, in, 6, at, 2, 4,
                     (const char *const[]){"c*d", "overlap", NULL});
  tu_tensor bad[6] = {new_t(VNRT_F32, 5, 8, 0), new_t(VNRT_F32, 5, 8, 0), new_t(VNRT_F32, 3, 8, 0),
                      new_t(VNRT_F32, 4, 8, 0), new_t(VNRT_F32, 4, 8, 0), new_t(VNRT_I32, 1, 0, 0)};
  vnrt_attr at0[1] = {tu_attr_i("ratio", 4)};
  expect_build_error(VNRT_OP_KV_COMPRESS, bad, 6, at0, 1, 4, (const char *const[]){"ape", NULL});
  vnrt_attr atr[1] = {tu_attr_i("ratio", 0)};
  expect_build_error(VNRT_OP_KV_COMPRESS, bad, 6, atr, 1, 4,
                     (const char *const[]){"ratio = 0", NULL});
  free_all(in, 6);
  free_all(bad, 6);
}
END_TEST

/* ---- kv_scatter ------------------------------------------------------------------------ */

static void check_scatter(int64_t S, int64_t N, int32_t div, const int32_t *pos, vnrt_dtype dt,
                          uint64_t seed) {
  enum { C = 5 };
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[3] = {new_t(dt, S, 2, C), new_t(dt, N, 2, C), new_i32(N, pos)};
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  tu_fill_uniform(&in[1], seed + 1, 2.0f, 3.0f);
  vnrt_attr at[1] = {tu_attr_i("div", div)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_KV_SCATTER, in, 3, at, div == 1 ? 0 : 1, 1);
  const int64_t row = 2 * C;
  double *want = tu_values(&in[0]);
  for (int64_t i = 0; i < N; ++i) {
    if (pos[i] < 0) continue;
    for (int64_t c = 0; c < row; ++c) want[(pos[i] / div) * row + c] = tu_get(&in[1], i * row + c);
  }
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[1];
    exec_ok(ctx, g, &tg[k], in, 3, out, 1, "kv_scatter");
    ck_assert_int_eq(tu_numel(&out[0]), S * row);
    for (int64_t i = 0; i < S * row; ++i) {
      if (tu_get(&out[0], i) != want[i]) {
        ck_abort_msg("kv_scatter on %s: element %lld is %g, want %g", tg[k].name, (long long)i,
                     tu_get(&out[0], i), want[i]);
      }
    }
    free_all(out, 1);
  }
  free(want);
  vnrt_graph_destroy(g);
  free_all(in, 3);
  vnrt_context_destroy(ctx);
}

START_TEST(kv_scatter_writes_rows_at_pos_div_and_skips_minus_one) {
  check_scatter(10, 4, 1, (const int32_t[]){3, -1, 9, 0}, VNRT_F32, 401);
  /* kv_compress's entry_pos with m = 4: entries 2 and 3, then unused rows. */
  check_scatter(6, 3, 4, (const int32_t[]){8, 12, -1}, VNRT_F32, 402);
  check_scatter(5, 2, 128, (const int32_t[]){512, 256}, VNRT_BF16, 403);
  check_scatter(3, 3, 2, (const int32_t[]){-1, -1, -1}, VNRT_F16, 404);
}
END_TEST

START_TEST(kv_scatter_row_out_of_range_is_a_run_time_error) {
  tu_tensor in[3] = {new_t(VNRT_F32, 7, 3, 0), new_t(VNRT_F32, 3, 3, 0),
                     new_i32(3, (const int32_t[]){4, -1, 52})};
  tu_fill_uniform(&in[0], 1, -1, 1);
  tu_fill_uniform(&in[1], 2, -1, 1);
  vnrt_attr at[1] = {tu_attr_i("div", 4)};
  /* 52 div 4 = row 13 of a cache of 7 rows. */
  expect_run_error(VNRT_OP_KV_SCATTER, in, 3, at, 1, 1,
                   (const char *const[]){"kv_scatter", "13", "7", NULL});
  free_all(in, 3);
}
END_TEST

START_TEST(kv_scatter_shape_errors) {
  tu_tensor in[3] = {new_t(VNRT_F32, 7, 3, 0), new_t(VNRT_BF16, 2, 3, 0), new_t(VNRT_I32, 2, 0, 0)};
  expect_build_error(VNRT_OP_KV_SCATTER, in, 3, NULL, 0, 1,
                     (const char *const[]){"cache", "rows", "dtype", NULL});
  tu_tensor in2[3] = {new_t(VNRT_F32, 7, 3, 0), new_t(VNRT_F32, 2, 3, 0), new_t(VNRT_I32, 3, 0, 0)};
  expect_build_error(VNRT_OP_KV_SCATTER, in2, 3, NULL, 0, 1, (const char *const[]){"pos", NULL});
  vnrt_attr at[1] = {tu_attr_i("div", 0)};
  tu_tensor in3[3] = {new_t(VNRT_F32, 7, 3, 0), new_t(VNRT_F32, 2, 3, 0), new_t(VNRT_I32, 2, 0, 0)};
  expect_build_error(VNRT_OP_KV_SCATTER, in3, 3, at, 1, 1, (const char *const[]){"div", NULL});
  free_all(in, 3);
  free_all(in2, 3);
  free_all(in3, 3);
}
END_TEST

/* ---- index_scores ---------------------------------------------------------------------- */

static void check_index_scores(int64_t T, int64_t Hi, int64_t Di, int64_t S, int32_t ratio,
                               const int32_t *pos, vnrt_dtype qk_dt, uint64_t seed) {
  vnrt_context *ctx = tu_conformance_context(3);
  tu_tensor in[4] = {new_t(qk_dt, T, Hi, Di), new_t(qk_dt, S, Di, 0), new_t(VNRT_F32, T, Hi, 0),
                     new_i32(T, pos)};
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  tu_fill_uniform(&in[1], seed + 1, -1.0f, 1.0f);
  tu_fill_uniform(&in[2], seed + 2, -1.0f, 1.0f);
  vnrt_attr at[1] = {tu_attr_i("ratio", ratio)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_INDEX_SCORES, in, 4, at, 1, 1);
  double *want = tu_dalloc(T * S), *fin = tu_dalloc(T * S);
  int64_t n_visible = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t vis = ((int64_t)pos[t] + 1) / ratio;
    for (int64_t j = 0; j < S; ++j) {
      if (j >= vis) {
        want[t * S + j] = -INFINITY;
        continue;
      }
      double s = 0.0;
      for (int64_t h = 0; h < Hi; ++h) {
        double dot = 0.0;
        for (int64_t e = 0; e < Di; ++e)
          dot += tu_get(&in[0], (t * Hi + h) * Di + e) * tu_get(&in[1], j * Di + e);
        s += tu_get(&in[2], t * Hi + h) * (dot > 0 ? dot : 0.0);
      }
      want[t * S + j] = s;
      ++n_visible;
    }
  }
  ck_assert_int_gt(n_visible, 0);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[1];
    exec_ok(ctx, g, &tg[k], in, 4, out, 1, "index_scores");
    ck_assert_int_eq(tu_numel(&out[0]), T * S);
    ck_assert_int_eq(out[0].type.dtype, VNRT_F32);
    /* -inf exactly where an entry is not visible; the visible ones by NMSE. */
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < T * S; ++i) {
      const double a = tu_get(&out[0], i);
      if (isinf(want[i])) {
        if (!(isinf(a) && a < 0)) {
          ck_abort_msg("index_scores on %s: s[%lld, %lld] = %g, want -inf", tg[k].name,
                       (long long)(i / S), (long long)(i % S), a);
        }
        continue;
      }
      if (!isfinite(a))
        ck_abort_msg("index_scores on %s: element %lld is %g", tg[k].name, (long long)i, a);
      num += (a - want[i]) * (a - want[i]);
      den += want[i] * want[i];
    }
    ck_assert_msg(num <= TOL_F32 * den, "index_scores on %s: NMSE %g", tg[k].name, num / den);
    free_all(out, 1);
  }
  free(want);
  free(fin);
  vnrt_graph_destroy(g);
  free_all(in, 4);
  vnrt_context_destroy(ctx);
}

START_TEST(index_scores_visible_entries_by_pos_div_ratio) {
  /* Prefill from 0: query t sees (t+1) div 4 entries (none for t < 3). */
  const int32_t p1[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  check_index_scores(9, 3, 16, 3, 4, p1, VNRT_F32, 501);
  /* Decode at a far position with a cache larger than what is visible. */
  const int32_t p2[1] = {517};
  check_index_scores(1, 8, 32, 150, 4, p2, VNRT_F32, 502);
  /* Chunk in the middle, odd sizes, ratio 128, bf16 q and k. */
  const int32_t p3[5] = {383, 384, 511, 512, 700};
  check_index_scores(5, 5, 24, 6, 128, p3, VNRT_BF16, 503);
  /* Flash-like decode head count. */
  const int32_t p4[2] = {4096, 4097};
  check_index_scores(2, 64, 128, 1100, 4, p4, VNRT_F32, 504);
}
END_TEST

START_TEST(index_scores_shape_errors) {
  tu_tensor in[4] = {new_t(VNRT_F32, 2, 4, 16), new_t(VNRT_F32, 9, 8, 0), new_t(VNRT_F32, 2, 4, 0),
                     new_t(VNRT_I32, 2, 0, 0)};
  vnrt_attr at[1] = {tu_attr_i("ratio", 4)};
  expect_build_error(VNRT_OP_INDEX_SCORES, in, 4, at, 1, 1, (const char *const[]){"Di", NULL});
  tu_tensor in2[4] = {new_t(VNRT_F32, 2, 4, 16), new_t(VNRT_F32, 9, 16, 0),
                      new_t(VNRT_F32, 2, 3, 0), new_t(VNRT_I32, 2, 0, 0)};
  expect_build_error(VNRT_OP_INDEX_SCORES, in2, 4, at, 1, 1, (const char *const[]){"w", NULL});
  vnrt_attr at0[1] = {tu_attr_i("ratio", 0)};
  in2[2].type.dims[1] = 4;
  expect_build_error(VNRT_OP_INDEX_SCORES, in2, 4, at0, 1, 1,
                     (const char *const[]){"ratio = 0", NULL});
  free_all(in, 4);
  free_all(in2, 4);
}
END_TEST

/* ---- sparse_attention ------------------------------------------------------------------ */

typedef struct sa_case {
  int64_t T, H, D, W;
  int32_t pos0;
  int64_t Sc;              /* 0: no comp */
  int32_t ratio;           /* with comp */
  int64_t K;               /* 0: no idx (HCA when comp) */
  int64_t run;             /* > 0: idx holds runs of this many consecutive entries, not random */
  double scale;            /* <= 0: attribute absent */
  double sink_lo, sink_hi; /* sinks uniform in [lo, hi); lo = -inf: all -inf */
  vnrt_dtype kv_dt;
} sa_case;

static double sa_dot(const tu_tensor *q, int64_t qoff, const tu_tensor *k, int64_t koff,
                     int64_t D) {
  double s = 0.0;
  for (int64_t e = 0; e < D; ++e) s += tu_get(q, qoff + e) * tu_get(k, koff + e);
  return s;
}

/* in: q, kv, ring, sinks, pos0, comp?, idx?. */
static void sa_ref(const sa_case *c, const tu_tensor *in, double *out) {
  const int64_t H = c->H, D = c->D, W = c->W;
  const double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)D);
  const int64_t max_keys = W + (c->Sc > c->K ? c->Sc : c->K) + 1;
  const tu_tensor **src = malloc((size_t)max_keys * sizeof *src);
  int64_t *off = malloc((size_t)max_keys * sizeof *off);
  double *l = tu_dalloc(max_keys);
  for (int64_t t = 0; t < c->T; ++t) {
    const int64_t p = c->pos0 + t;
    int64_t n = 0;
    for (int64_t j = p - W + 1 < 0 ? 0 : p - W + 1; j <= p; ++j) {
      src[n] = j >= c->pos0 ? &in[1] : &in[2];
      off[n++] = (j >= c->pos0 ? j - c->pos0 : j % W) * D;
    }
    if (c->Sc && !c->K) {
      const int64_t vis = (p + 1) / c->ratio;
      ck_assert_int_le(vis, c->Sc);
      for (int64_t w = 0; w < vis; ++w) src[n] = &in[5], off[n++] = w * D;
    }
    for (int64_t i = 0; i < c->K; ++i) {
      const int32_t e = i32s(&in[6])[t * c->K + i];
      if (e >= 0) src[n] = &in[5], off[n++] = (int64_t)e * D;
    }
    for (int64_t h = 0; h < H; ++h) {
      const int64_t qo = (t * H + h) * D;
      const double sink = tu_get(&in[3], h);
      double mx = sink;
      for (int64_t s = 0; s < n; ++s) {
        l[s] = scale * sa_dot(&in[0], qo, src[s], off[s], D);
        mx = fmax(mx, l[s]);
      }
      double den = exp(sink - mx);
      double *o = out + qo;
      for (int64_t e = 0; e < D; ++e) o[e] = 0.0;
      for (int64_t s = 0; s < n; ++s) {
        const double pr = exp(l[s] - mx);
        den += pr;
        for (int64_t e = 0; e < D; ++e) o[e] += pr * tu_get(src[s], off[s] + e);
      }
      for (int64_t e = 0; e < D; ++e) o[e] /= den;
    }
  }
  free(src);
  free(off);
  free(l);
}

static void sa_inputs(const sa_case *c, tu_tensor *in, int32_t *n_in, uint64_t seed) {
  const vnrt_dtype kd = c->kv_dt ? c->kv_dt : VNRT_F32;
  in[0] = new_t(VNRT_F32, c->T, c->H, c->D);
  in[1] = new_t(kd, c->T, c->D, 0);
  in[2] = new_t(kd, c->W, c->D, 0);
  in[3] = new_t(VNRT_F32, c->H, 0, 0);
  in[4] = new_i32(1, &c->pos0);
  tu_fill_uniform(&in[0], seed, -1.5f, 1.5f);
  tu_fill_uniform(&in[1], seed + 1, -1.0f, 1.0f);
  tu_fill_uniform(&in[2], seed + 2, -1.0f, 1.0f);
  if (isinf(c->sink_lo)) {
    for (int64_t h = 0; h < c->H; ++h) f32s(&in[3])[h] = -INFINITY;
  } else {
    tu_fill_uniform(&in[3], seed + 3, (float)c->sink_lo, (float)c->sink_hi);
  }
  *n_in = 5;
  if (c->Sc) {
    in[5] = new_t(kd, c->Sc, c->D, 0);
    tu_fill_uniform(&in[5], seed + 4, -1.0f, 1.0f);
    *n_in = 6;
  }
  if (c->K) {
    in[6] = new_t(VNRT_I32, c->T, c->K, 0);
    uint64_t s = seed * 7919u + 13u;
    for (int64_t i = 0; i < c->T * c->K; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const int64_t v = (int64_t)((s >> 33) % (uint64_t)(c->Sc + 2)) - 1; /* -1 .. Sc */
      i32s(&in[6])[i] = (int32_t)(v >= c->Sc ? -1 : v);
      const int64_t in_run = c->run > 0 ? i % c->K % c->run : 0;
      if (in_run) { /* runs from a random start (the CPU reads runs of 8 rows or more in place) */
        const int32_t first = i32s(&in[6])[i - in_run];
        i32s(&in[6])[i] = first < 0 || first + in_run >= c->Sc ? -1 : first + (int32_t)in_run;
      }
    }
    *n_in = 7;
  }
}

static int sa_attrs(const sa_case *c, vnrt_attr *at) {
  int n = 0;
  if (c->scale > 0) at[n++] = tu_attr_f("scale", c->scale);
  if (c->Sc) at[n++] = tu_attr_i("ratio", c->ratio);
  return n;
}

static void check_sparse(const sa_case *c, uint64_t seed) {
  vnrt_context *ctx = tu_conformance_context(3);
  tu_tensor in[7];
  int32_t n_in = 0;
  sa_inputs(c, in, &n_in, seed);
  vnrt_attr at[2];
  const int na = sa_attrs(c, at);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_SPARSE_ATTENTION, in, n_in, at, na, 1);
  const int64_t n = c->T * c->H * c->D;
  double *want = tu_dalloc(n);
  sa_ref(c, in, want);
  char what[128];
  snprintf(what, sizeof what, "sparse_attention T=%lld H=%lld D=%lld W=%lld pos0=%d Sc=%lld K=%lld",
           (long long)c->T, (long long)c->H, (long long)c->D, (long long)c->W, c->pos0,
           (long long)c->Sc, (long long)c->K);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[1];
    exec_ok(ctx, g, &tg[k], in, n_in, out, 1, what);
    check_nmse(&out[0], want, n, TOL_ATTN, what, tg[k].name);
    free_all(out, 1);
  }
  free(want);
  vnrt_graph_destroy(g);
  free_all(in, n_in);
  vnrt_context_destroy(ctx);
}

START_TEST(sparse_attention_window_from_kv_at_prefill) {
  /* pos0 = 0: every window row comes from kv; the ring holds garbage that must not be read. */
  check_sparse(&(sa_case){.T = 7, .H = 3, .D = 16, .W = 4, .pos0 = 0, .sink_lo = -1, .sink_hi = 1},
               601);
  check_sparse(&(sa_case){.T = 5, .H = 2, .D = 8, .W = 16, .pos0 = 0, .sink_lo = -1, .sink_hi = 1},
               602);
}
END_TEST

START_TEST(sparse_attention_window_splits_between_ring_and_kv) {
  /* pos0 = 10, W = 8: positions 3..9 from the ring (rows 3..7, 0, 1), the rest from kv. */
  check_sparse(&(sa_case){.T = 3, .H = 2, .D = 16, .W = 8, .pos0 = 10, .sink_lo = -1, .sink_hi = 1},
               611);
  /* A chunk longer than the window, from a position that wraps the ring. */
  check_sparse(&(sa_case){.T = 13, .H = 3, .D = 12, .W = 4, .pos0 = 7, .sink_lo = -1, .sink_hi = 1},
               612);
  /* Decode far into a sequence, several heads (the fast kernel splits over heads). */
  check_sparse(
      &(sa_case){.T = 1, .H = 16, .D = 64, .W = 32, .pos0 = 1000, .sink_lo = -1, .sink_hi = 1},
      613);
}
END_TEST

START_TEST(sparse_attention_hca_sees_every_visible_entry) {
  /* ratio 4, prefill: query t sees (t+1) div 4 entries; comp rows past that must be ignored. */
  check_sparse(&(sa_case){.T = 9,
                          .H = 2,
                          .D = 16,
                          .W = 4,
                          .pos0 = 0,
                          .Sc = 5,
                          .ratio = 4,
                          .sink_lo = -1,
                          .sink_hi = 1},
               621);
  /* Decode at 517 with ratio 128 (4 entries), W 128. */
  check_sparse(&(sa_case){.T = 1,
                          .H = 8,
                          .D = 32,
                          .W = 128,
                          .pos0 = 517,
                          .Sc = 6,
                          .ratio = 128,
                          .sink_lo = -1,
                          .sink_hi = 1},
               622);
  /* A chunk with bf16 keys and an explicit scale. */
  check_sparse(&(sa_case){.T = 6,
                          .H = 3,
                          .D = 24,
                          .W = 8,
                          .pos0 = 30,
                          .Sc = 10,
                          .ratio = 4,
                          .scale = 0.3,
                          .sink_lo = -1,
                          .sink_hi = 1,
                          .kv_dt = VNRT_BF16},
               623);
}
END_TEST

START_TEST(sparse_attention_csa_selected_entries_with_minus_one) {
  check_sparse(&(sa_case){.T = 5,
                          .H = 4,
                          .D = 16,
                          .W = 8,
                          .pos0 = 20,
                          .Sc = 9,
                          .ratio = 4,
                          .K = 4,
                          .sink_lo = -1,
                          .sink_hi = 1},
               631);
  check_sparse(&(sa_case){.T = 1,
                          .H = 16,
                          .D = 64,
                          .W = 16,
                          .pos0 = 300,
                          .Sc = 80,
                          .ratio = 4,
                          .K = 24,
                          .sink_lo = -1,
                          .sink_hi = 1},
               632);
  /* Runs of 12 consecutive entries after a window of 8 kv rows (a prefill from 0): the CPU
   * backend reads runs of 8 rows or more in place, the selected entries' too. */
  check_sparse(&(sa_case){.T = 12,
                          .H = 4,
                          .D = 32,
                          .W = 8,
                          .pos0 = 0,
                          .Sc = 100,
                          .ratio = 4,
                          .K = 36,
                          .run = 12,
                          .sink_lo = -1,
                          .sink_hi = 1},
               634);
  /* Prefill from 0 where the window is shorter than W. */
  check_sparse(&(sa_case){.T = 11,
                          .H = 2,
                          .D = 8,
                          .W = 16,
                          .pos0 = 0,
                          .Sc = 3,
                          .ratio = 4,
                          .K = 3,
                          .sink_lo = -1,
                          .sink_hi = 1},
               633);
}
END_TEST

START_TEST(sparse_attention_sinks_weigh_in_the_denominator) {
  /* Large sinks take most of the mass (outputs small but exact relative to the reference),
   * sinks of -inf add nothing (plain softmax). */
  check_sparse(&(sa_case){.T = 4, .H = 3, .D = 16, .W = 8, .pos0 = 5, .sink_lo = 8, .sink_hi = 12},
               641);
  check_sparse(&(sa_case){.T = 4,
                          .H = 3,
                          .D = 16,
                          .W = 8,
                          .pos0 = 5,
                          .Sc = 4,
                          .ratio = 4,
                          .K = 2,
                          .sink_lo = -INFINITY},
               642);
}
END_TEST

/* The small CSA case (window, comp and idx) the error tests below start from. */
static const sa_case k_sa_small = {.T = 2,
                                   .H = 2,
                                   .D = 8,
                                   .W = 4,
                                   .pos0 = 3,
                                   .Sc = 6,
                                   .ratio = 4,
                                   .K = 3,
                                   .sink_lo = -1,
                                   .sink_hi = 1};

/* An idx entry past comp's rows is a run-time error: at decode size (T·K small: the OpenCL
 * CPU drivers' first scores item checks it) and at prefill size (T·K = 4480, past OpenCL's
 * SA_FUSED_IDX_MAX of 4096: a check kernel of its own there), the bad entry the last one. */
START_TEST(sparse_attention_idx_past_comp_is_a_run_time_error) {
  sa_case cases[2] = {k_sa_small, k_sa_small};
  cases[1].T = 70, cases[1].pos0 = 300, cases[1].Sc = 76, cases[1].K = 64;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    const sa_case *c = &cases[ci];
    tu_tensor in[7];
    int32_t n_in = 0;
    sa_inputs(c, in, &n_in, 651 + ci);
    i32s(&in[6])[ci == 0 ? 4 : c->T * c->K - 1] = (int32_t)c->Sc;
    vnrt_attr at[2];
    const int na = sa_attrs(c, at);
    char sc[16];
    snprintf(sc, sizeof sc, "%lld", (long long)c->Sc);
    expect_run_error(VNRT_OP_SPARSE_ATTENTION, in, n_in, at, na, 1,
                     (const char *const[]){"sparse_attention", sc, NULL});
    free_all(in, n_in);
  }
}
END_TEST

/* A negative pos0 is a run-time error, CSA (idx) and HCA (all compressed entries); also where
 * the device reads the check after the run. */
START_TEST(sparse_attention_negative_pos0_is_a_run_time_error) {
  for (int K = 0; K <= 3; K += 3) {
    sa_case c = k_sa_small;
    c.K = K;
    tu_tensor in[7];
    int32_t n_in = 0;
    sa_inputs(&c, in, &n_in, 661 + (uint64_t)K);
    i32s(&in[4])[0] = -5;
    vnrt_attr at[2];
    const int na = sa_attrs(&c, at);
    expect_run_error(VNRT_OP_SPARSE_ATTENTION, in, n_in, at, na, 1,
                     (const char *const[]){"sparse_attention", "pos0", "is negative", NULL});
    free_all(in, n_in);
  }
}
END_TEST

START_TEST(sparse_attention_shape_errors) {
  sa_case c = k_sa_small;
  tu_tensor in[7];
  int32_t n_in = 0;
  sa_inputs(&c, in, &n_in, 652);
  vnrt_attr r4[1] = {tu_attr_i("ratio", 4)};
  /* comp without ratio */
  expect_build_error(VNRT_OP_SPARSE_ATTENTION, in, 6, NULL, 0, 1,
                     (const char *const[]){"comp", "ratio", NULL});
  /* sinks of the wrong length */
  in[3].type.dims[0] = 3;
  expect_build_error(VNRT_OP_SPARSE_ATTENTION, in, 5, NULL, 0, 1,
                     (const char *const[]){"sinks", NULL});
  in[3].type.dims[0] = 2;
  /* kv of another width */
  in[1].type.dims[1] = 9;
  expect_build_error(VNRT_OP_SPARSE_ATTENTION, in, 5, NULL, 0, 1,
                     (const char *const[]){"kv", NULL});
  in[1].type.dims[1] = 8;
  /* idx with another T */
  in[6].type.dims[0] = 3;
  expect_build_error(VNRT_OP_SPARSE_ATTENTION, in, 7, r4, 1, 1, (const char *const[]){"idx", NULL});
  in[6].type.dims[0] = 2;
  free_all(in, n_in);
}
END_TEST

/* ---- grouped_linear -------------------------------------------------------------------- */

/* Reference codecs (double, by their formulas; not vnrt's): e4m3fn bias 7 (subnormal m·2^-9),
 * e2m1 levels {0, .5, 1, 1.5, 2, 3, 4, 6}, e8m0 2^(e−127). */
static double ref_e4m3(uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const double mag = e ? ldexp(8 + m, e - 10) : ldexp(m, -9);
  return (c & 0x80) ? -mag : mag;
}
static double ref_e2m1(uint8_t nib) {
  const int e = (nib >> 1) & 3, m = nib & 1;
  const double mag = e ? ldexp(2 + m, e - 2) : 0.5 * m;
  return (nib & 8) ? -mag : mag;
}

typedef struct gl_case {
  int64_t rows; /* x's leading elements (T, or 2×3 with lead3) */
  int lead3;    /* x is [2, 3, G·K] (rows = 6) */
  int64_t G, N, K;
  vnrt_dtype w_dt; /* f32, f16, bf16, e4m3, e2m1 */
  int64_t b0, b1;  /* a custom block; 0: the default */
} gl_case;

/* W[r][c] of the weight operand in double. */
static double gl_w(const gl_case *c, const tu_tensor *w, const tu_tensor *sc, int64_t r,
                   int64_t col) {
  const int64_t i = r * c->K + col;
  if (c->w_dt != VNRT_E4M3 && c->w_dt != VNRT_E2M1) return tu_get(w, i);
  const uint8_t *b = w->data;
  const int64_t b0 = c->b0 ? c->b0 : (c->w_dt == VNRT_E4M3 ? 128 : 1);
  const int64_t b1 = c->b1 ? c->b1 : (c->w_dt == VNRT_E4M3 ? 128 : 32);
  const int64_t scols = (c->K + b1 - 1) / b1;
  const uint8_t e = ((const uint8_t *)sc->data)[(r / b0) * scols + col / b1];
  const double s = ldexp(1.0, (int)e - 127);
  if (c->w_dt == VNRT_E4M3) return ref_e4m3(b[i]) * s;
  return ref_e2m1((uint8_t)((i & 1) ? b[i / 2] >> 4 : b[i / 2] & 15)) * s;
}

static void check_grouped(const gl_case *c, uint64_t seed) {
  vnrt_context *ctx = tu_conformance_context(3);
  const int quant = c->w_dt == VNRT_E4M3 || c->w_dt == VNRT_E2M1;
  const int64_t GN = c->G * c->N, GK = c->G * c->K;
  tu_tensor in[3];
  int64_t xd[3] = {2, 3, GK}, x2[2] = {c->rows, GK};
  in[0] = c->lead3 ? tu_tensor_new(VNRT_F32, 3, xd) : tu_tensor_new(VNRT_F32, 2, x2);
  const int64_t rows = c->lead3 ? 6 : c->rows;
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  in[1] = new_t(c->w_dt, GN, c->K, 0);
  int32_t n_in = 2;
  if (quant) {
    uint64_t s = seed * 977u + 5u;
    const size_t bytes = vnrt_tensor_type_bytes(&in[1].type);
    for (size_t i = 0; i < bytes; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      uint8_t v = (uint8_t)(s >> 40);
      if (c->w_dt == VNRT_E4M3 && (v & 0x7F) == 0x7F) v = (uint8_t)(v - 1); /* never NaN */
      ((uint8_t *)in[1].data)[i] = v;
    }
    const int64_t b0 = c->b0 ? c->b0 : (c->w_dt == VNRT_E4M3 ? 128 : 1);
    const int64_t b1 = c->b1 ? c->b1 : (c->w_dt == VNRT_E4M3 ? 128 : 32);
    in[2] = new_t(VNRT_E8M0, (GN + b0 - 1) / b0, (c->K + b1 - 1) / b1, 0);
    const int64_t ns = tu_numel(&in[2]);
    for (int64_t i = 0; i < ns; ++i)
      ((uint8_t *)in[2].data)[i] = (uint8_t)(122 + (i * 5 + seed) % 9);
    n_in = 3;
  } else {
    tu_fill_uniform(&in[1], seed + 1, -1.0f, 1.0f);
  }
  vnrt_attr at[2] = {tu_attr_i("groups", c->G)};
  int na = 1;
  const int64_t blk[2] = {c->b0, c->b1};
  if (c->b0) at[na++] = tu_attr_ints("block", blk, 2);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_GROUPED_LINEAR, in, n_in, at, na, 1);
  double *want = tu_dalloc(rows * GN);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t gi = 0; gi < c->G; ++gi) {
      for (int64_t n = 0; n < c->N; ++n) {
        double s = 0.0;
        for (int64_t k = 0; k < c->K; ++k) {
          s += tu_get(&in[0], r * GK + gi * c->K + k) *
               gl_w(c, &in[1], quant ? &in[2] : NULL, gi * c->N + n, k);
        }
        want[r * GN + gi * c->N + n] = s;
      }
    }
  }
  /* With G = 1 the op is linear: the same inputs through linear must agree too. */
  vnrt_graph *lin = NULL;
  if (c->G == 1) {
    lin = tu_op_graph(ctx, VNRT_OP_LINEAR, in, n_in, at + 1, na - 1, 1);
  }
  char what[128];
  snprintf(what, sizeof what, "grouped_linear rows=%lld G=%lld N=%lld K=%lld w %s", (long long)rows,
           (long long)c->G, (long long)c->N, (long long)c->K, vnrt_dtype_name(c->w_dt));
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[1];
    exec_ok(ctx, g, &tg[k], in, n_in, out, 1, what);
    check_nmse(&out[0], want, rows * GN, TOL_F32, what, tg[k].name);
    ck_assert_int_eq(out[0].type.rank, in[0].type.rank);
    if (lin) {
      tu_tensor lo[1];
      exec_ok(ctx, lin, &tg[k], in, n_in, lo, 1, "linear (grouped_linear with G = 1)");
      double *gv = tu_values(&out[0]);
      check_nmse(&lo[0], gv, rows * GN, 1e-12, "linear vs grouped_linear G=1", tg[k].name);
      free(gv);
      free_all(lo, 1);
    }
    free_all(out, 1);
  }
  free(want);
  if (lin) vnrt_graph_destroy(lin);
  vnrt_graph_destroy(g);
  free_all(in, n_in);
  vnrt_context_destroy(ctx);
}

START_TEST(grouped_linear_float_weights) {
  check_grouped(&(gl_case){.rows = 3, .G = 4, .N = 5, .K = 16, .w_dt = VNRT_F32}, 701);
  check_grouped(&(gl_case){.rows = 1, .G = 8, .N = 24, .K = 40, .w_dt = VNRT_BF16}, 702);
  check_grouped(&(gl_case){.lead3 = 1, .G = 2, .N = 7, .K = 33, .w_dt = VNRT_F16}, 703);
  check_grouped(&(gl_case){.rows = 17, .G = 3, .N = 64, .K = 96, .w_dt = VNRT_F32}, 704);
  check_grouped(&(gl_case){.rows = 2, .G = 4, .N = 48, .K = 32, .w_dt = VNRT_BF16}, 705);
}
END_TEST

START_TEST(grouped_linear_fp8_blocks_straddle_groups) {
  /* G·N = 160 rows: the second 128-row block starts inside group 3 (rows 120..159). */
  check_grouped(&(gl_case){.rows = 3, .G = 4, .N = 40, .K = 200, .w_dt = VNRT_E4M3}, 711);
  check_grouped(&(gl_case){.rows = 1, .G = 8, .N = 48, .K = 128, .w_dt = VNRT_E4M3}, 712);
  check_grouped(
      &(gl_case){.lead3 = 1, .G = 3, .N = 10, .K = 64, .w_dt = VNRT_E4M3, .b0 = 16, .b1 = 32}, 713);
  /* Decode-sized and over 48 KiB of codes: the CPU GEMV's threaded one-row path, all groups in
   * one dispatch (K 256: 64-code steps; 160: 32-code ones). */
  check_grouped(&(gl_case){.rows = 1, .G = 4, .N = 96, .K = 256, .w_dt = VNRT_E4M3}, 714);
  check_grouped(&(gl_case){.rows = 1, .G = 2, .N = 200, .K = 160, .w_dt = VNRT_E4M3}, 715);
}
END_TEST

START_TEST(grouped_linear_fp4_weights) {
  check_grouped(&(gl_case){.rows = 3, .G = 4, .N = 9, .K = 64, .w_dt = VNRT_E2M1}, 721);
  check_grouped(&(gl_case){.rows = 1, .G = 16, .N = 8, .K = 96, .w_dt = VNRT_E2M1}, 722);
  check_grouped(&(gl_case){.rows = 5, .G = 2, .N = 11, .K = 40, .w_dt = VNRT_E2M1}, 723);
  /* Decode-sized, N a multiple of 16 and K of 32: the GEMV kernels of CPU devices. */
  check_grouped(&(gl_case){.rows = 1, .G = 4, .N = 32, .K = 64, .w_dt = VNRT_E2M1}, 724);
}
END_TEST

START_TEST(grouped_linear_one_group_equals_linear) {
  check_grouped(&(gl_case){.rows = 4, .G = 1, .N = 19, .K = 37, .w_dt = VNRT_F32}, 731);
  check_grouped(&(gl_case){.rows = 2, .G = 1, .N = 130, .K = 256, .w_dt = VNRT_E4M3}, 732);
  check_grouped(&(gl_case){.rows = 1, .G = 1, .N = 33, .K = 64, .w_dt = VNRT_E2M1}, 733);
}
END_TEST

START_TEST(grouped_linear_shape_errors) {
  tu_tensor in[2] = {new_t(VNRT_F32, 3, 30, 0), new_t(VNRT_F32, 8, 10, 0)};
  vnrt_attr g4[1] = {tu_attr_i("groups", 4)};
  expect_build_error(VNRT_OP_GROUPED_LINEAR, in, 2, g4, 1, 1,
                     (const char *const[]){"groups", NULL});
  vnrt_attr g3[1] = {tu_attr_i("groups", 3)};
  in[1].type.dims[0] = 9;
  in[1].type.dims[1] = 8;
  expect_build_error(VNRT_OP_GROUPED_LINEAR, in, 2, g3, 1, 1,
                     (const char *const[]){"group's width", NULL});
  expect_build_error(VNRT_OP_GROUPED_LINEAR, in, 2, NULL, 0, 1,
                     (const char *const[]){"groups", NULL});
  free_all(in, 2);
}
END_TEST

/* ---- empty tensors ------------------------------------------------------------------------ */

/* Runs a one-node graph on every target and checks result 0's element count (and dims). */
static void check_empty(const char *what, vnrt_op op, const tu_tensor *in, int32_t n_in,
                        const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out, int64_t d0,
                        int64_t d1) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, n_out);
  target tg[MAX_TARGETS];
  const int32_t nt = list_targets(ctx, tg);
  for (int32_t k = 0; k < nt; ++k) {
    tu_tensor out[4];
    exec_ok(ctx, g, &tg[k], in, n_in, out, n_out, what);
    ck_assert_msg(out[0].type.dims[0] == d0 && out[0].type.dims[1] == d1 && tu_numel(&out[0]) == 0,
                  "%s on %s: result 0 is [%lld, %lld, ...]", what, tg[k].name,
                  (long long)out[0].type.dims[0], (long long)out[0].type.dims[1]);
    free_all(out, n_out);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

/* docs/ops.md, "Attribute limits and empty tensors": a result without elements costs nothing,
 * whatever its other dims (1e12 here); a kernel looping over them would time the test out. */
START_TEST(v4_ops_on_empty_tensors_return_at_once) {
  const int64_t BIG = 1000000000000LL;
  int64_t d3[3];
  {
    d3[0] = BIG, d3[1] = 0, d3[2] = 0;
    const int64_t d2[2] = {BIG, 0};
    tu_tensor in[5] = {tu_tensor_new(VNRT_F32, 3, d3), tu_tensor_new(VNRT_F32, 2, d2),
                       new_t(VNRT_F32, 4, 0, 0), new_t(VNRT_F32, 0, 0, 0),
                       new_i32(1, (const int32_t[]){7})};
    in[2].type.rank = 2; /* ring [4, 0] */
    in[2].type.dims[1] = 0;
    in[3].type.dims[0] = 0;
    check_empty("sparse_attention", VNRT_OP_SPARSE_ATTENTION, in, 5, NULL, 0, 1, BIG, 0);
    free_all(in, 5);
  }
  {
    /* No queries (q [0, 2, 8]): no result, so nothing is read or checked, and a negative pos0
     * passes on every device (docs/ops.md). */
    tu_tensor in[5] = {new_t(VNRT_F32, 0, 2, 8), new_t(VNRT_F32, 0, 8, 0), new_t(VNRT_F32, 4, 8, 0),
                       new_t(VNRT_F32, 2, 0, 0), new_i32(1, (const int32_t[]){-5})};
    tu_fill_uniform(&in[2], 41, -1, 1);
    tu_fill_uniform(&in[3], 42, -1, 1);
    check_empty("sparse_attention (T = 0)", VNRT_OP_SPARSE_ATTENTION, in, 5, NULL, 0, 1, 0, 2);
    free_all(in, 5);
  }
  {
    d3[0] = 0, d3[1] = BIG, d3[2] = 0;
    const int64_t w2[2] = {0, BIG};
    tu_tensor in[4] = {tu_tensor_new(VNRT_F32, 3, d3), new_t(VNRT_F32, 5, 0, 0),
                       tu_tensor_new(VNRT_F32, 2, w2), new_i32(1, NULL)};
    in[1].type.rank = 2; /* k [5, 0] */
    in[1].type.dims[1] = 0;
    in[3].type.dims[0] = 0;
    vnrt_attr at[1] = {tu_attr_i("ratio", 4)};
    check_empty("index_scores", VNRT_OP_INDEX_SCORES, in, 4, at, 1, 1, 0, 5);
    free_all(in, 4);
  }
  {
    const int64_t x2[2] = {BIG, 0};
    tu_tensor in[2] = {tu_tensor_new(VNRT_F32, 2, x2), new_t(VNRT_F32, 0, 0, 0)};
    in[1].type.rank = 2; /* w [0, 0] */
    in[1].type.dims[1] = 0;
    vnrt_attr at[1] = {tu_attr_i("groups", 2)};
    check_empty("grouped_linear", VNRT_OP_GROUPED_LINEAR, in, 2, at, 1, 1, BIG, 0);
    free_all(in, 2);
  }
  {
    const int64_t c2[2] = {BIG, 0};
    tu_tensor in[3] = {tu_tensor_new(VNRT_F32, 2, c2), new_t(VNRT_F32, 3, 0, 0),
                       new_i32(3, (const int32_t[]){5, -1, 100})};
    in[1].type.rank = 2; /* rows [3, 0] */
    in[1].type.dims[1] = 0;
    check_empty("kv_scatter", VNRT_OP_KV_SCATTER, in, 3, NULL, 0, 1, BIG, 0);
    free_all(in, 3);
  }
}
END_TEST

static Suite *v4_suite(void) {
  Suite *s = suite_create("conformance_v4");
  TCase *rope = tcase_create("rope");
  tcase_add_test(rope, rope_yarn_reference_matches_the_flash_numbers);
  tcase_add_test(rope, rope_yarn_flash_configuration);
  tcase_add_test(rope, rope_yarn_custom_betas_and_low_equals_high);
  tcase_add_test(rope, rope_inverse_rotates_by_the_negative_angle);
  tcase_add_test(rope, rope_inverse_after_forward_is_identity);
  tcase_add_test(rope, rope_yarn_attributes_shape_errors);
  suite_add_tcase(s, rope);
  TCase *small = tcase_create("topk_kv");
  tcase_add_test(small, topk_fill_replaces_the_indices_of_minus_inf);
  tcase_add_test(small, topk_decode_rows_rank_ties_zeros_and_minus_inf);
  tcase_add_test(small, topk_fill_out_of_i32_is_a_build_error);
  tcase_add_test(small, kv_write_ring_wraps_and_keeps_the_last_s_positions);
  tcase_add_test(small, kv_write_ring_negative_pos_is_a_run_time_error);
  tcase_add_test(small, moe_ffn_fp4_bad_expert_is_a_run_time_error);
  tcase_add_test(small, kv_scatter_writes_rows_at_pos_div_and_skips_minus_one);
  tcase_add_test(small, kv_scatter_row_out_of_range_is_a_run_time_error);
  tcase_add_test(small, kv_scatter_shape_errors);
  suite_add_tcase(s, small);
  TCase *comp = tcase_create("kv_compress");
  tcase_add_test(comp, kv_compress_hca_no_overlap);
  tcase_add_test(comp, kv_compress_csa_overlap_two_series);
  tcase_add_test(comp, kv_compress_long_ratio_and_decode_steps);
  tcase_add_test(comp, kv_compress_prefill_not_a_multiple_of_ratio);
  tcase_add_test(comp, kv_compress_negative_pos0_is_a_run_time_error);
  tcase_add_test(comp, kv_compress_shape_errors);
  suite_add_tcase(s, comp);
  TCase *attn = tcase_create("index_sparse_attention");
  tcase_add_test(attn, index_scores_visible_entries_by_pos_div_ratio);
  tcase_add_test(attn, index_scores_shape_errors);
  tcase_add_test(attn, sparse_attention_window_from_kv_at_prefill);
  tcase_add_test(attn, sparse_attention_window_splits_between_ring_and_kv);
  tcase_add_test(attn, sparse_attention_hca_sees_every_visible_entry);
  tcase_add_test(attn, sparse_attention_csa_selected_entries_with_minus_one);
  tcase_add_test(attn, sparse_attention_sinks_weigh_in_the_denominator);
  tcase_add_test(attn, sparse_attention_idx_past_comp_is_a_run_time_error);
  tcase_add_test(attn, sparse_attention_negative_pos0_is_a_run_time_error);
  tcase_add_test(attn, sparse_attention_shape_errors);
  suite_add_tcase(s, attn);
  TCase *gl = tcase_create("grouped_linear");
  tcase_add_test(gl, grouped_linear_float_weights);
  tcase_add_test(gl, grouped_linear_fp8_blocks_straddle_groups);
  tcase_add_test(gl, grouped_linear_fp4_weights);
  tcase_add_test(gl, grouped_linear_one_group_equals_linear);
  tcase_add_test(gl, grouped_linear_shape_errors);
  suite_add_tcase(s, gl);
  TCase *empty = tcase_create("empty");
  tcase_add_test(empty, v4_ops_on_empty_tensors_return_at_once);
  suite_add_tcase(s, empty);
  return s;
}

int main(void) { return tu_run_suite(v4_suite()); }
