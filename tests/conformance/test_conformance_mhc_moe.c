/* Conformance: the mHC and MoE ops on every device against double-precision references written
 * here from docs/ops.md, including the DeepSeek-V4 porting traps (fn row order, row-softmax
 * Sinkhorn with eps in every divide, transposed comb, unbiased route weights, top-2 group scores).
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

#include "moe_ref.h"
#include "test_util.h"

#define TOL_MHC 1e-7
#define TOL_ROUTE 1e-7
#define TOL_FFN 1e-6
#define EXACT (-1.0)

/* ---- Running one op on every device ---------------------------------------------------- */

typedef struct want {
  const double *v; /* expected values */
  int64_t n;       /* expected element count */
  double tol;      /* NMSE bound, or EXACT */
} want;

typedef void (*inspect_fn)(const tu_tensor *outs, const char *spec, void *user);

/* A float result rounded to f16/bf16 carries that rounding on top of the f32 tolerance. */
static double tol_for(vnrt_dtype dt, double f32_tol) {
  if (dt == VNRT_BF16) return 1e-4;
  if (dt == VNRT_F16) return 1e-6 > f32_tol ? 1e-6 : f32_tol;
  return f32_tol;
}

/* Runs op on every device and compares each result with w[]; inspect (optional) sees the
 * results too. A device that reports the op unsupported is skipped, but the cpu must run it. */
static void run_check(vnrt_op op, const tu_tensor *in, int32_t n_in, const vnrt_attr *attrs,
                      int32_t n_attrs, int32_t n_out, const want *w, inspect_fn inspect,
                      void *user) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, n_out);
  int32_t ran = 0;
  for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    const char *spec = tu_device_spec(dev);
    tu_tensor outs[4];
    memset(outs, 0, sizeof outs);
    vnrt_status s = tu_run(ctx, g, dev, in, n_in, outs, n_out);
    if (s == VNRT_ERROR_UNSUPPORTED && strcmp(spec, "cpu") != 0) continue;
    ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", vnrt_op_name(op), spec, vnrt_status_string(s),
                  vnrt_context_last_error(ctx));
    for (int32_t o = 0; o < n_out; ++o) {
      int64_t n = tu_numel(&outs[o]);
      ck_assert_msg(n == w[o].n, "%s on %s: out%d has %lld elements, want %lld", vnrt_op_name(op),
                    spec, o, (long long)n, (long long)w[o].n);
      if (w[o].tol == EXACT) {
        for (int64_t i = 0; i < n; ++i) {
          ck_assert_msg(tu_get(&outs[o], i) == w[o].v[i], "%s on %s: out%d[%lld] = %g, want %g",
                        vnrt_op_name(op), spec, o, (long long)i, tu_get(&outs[o], i), w[o].v[i]);
        }
      } else {
        double e = tu_nmse(&outs[o], w[o].v, n);
        ck_assert_msg(e <= w[o].tol, "%s on %s: out%d NMSE %.3g > %.3g", vnrt_op_name(op), spec, o,
                      e, w[o].tol);
      }
    }
    if (inspect) inspect(outs, spec, user);
    for (int32_t o = 0; o < n_out; ++o) tu_tensor_free(&outs[o]);
    ++ran;
  }
  ck_assert_msg(ran > 0, "%s ran on no device", vnrt_op_name(op));
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

/* Runs op on every device expecting a run-time error `status` whose message holds every string
 * of `needles` (NULL-terminated). */
static void run_expect_error(vnrt_op op, const tu_tensor *in, int32_t n_in, const vnrt_attr *attrs,
                             int32_t n_attrs, int32_t n_out, vnrt_status status,
                             const char *const *needles) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, n_out);
  int32_t ran = 0;
  for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    const char *spec = tu_device_spec(dev);
    tu_tensor outs[4];
    vnrt_status s = tu_run(ctx, g, dev, in, n_in, outs, n_out);
    if (s == VNRT_ERROR_UNSUPPORTED && strcmp(spec, "cpu") != 0) continue;
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(s == status, "%s on %s: got %s (%s), want %s", vnrt_op_name(op), spec,
                  vnrt_status_string(s), msg, vnrt_status_string(status));
    for (const char *const *p = needles; *p; ++p) {
      ck_assert_msg(strstr(msg, *p) != NULL, "%s on %s: message '%s' lacks '%s'", vnrt_op_name(op),
                    spec, msg, *p);
    }
    ++ran;
  }
  ck_assert_msg(ran > 0, "%s ran on no device", vnrt_op_name(op));
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

/* ---- Small helpers --------------------------------------------------------------------- */

static tu_tensor tensor(vnrt_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3) {
  int64_t dims[4] = {d0, d1, d2, d3};
  return tu_tensor_new(dt, rank, dims);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* n values in [lo, hi), at least 0.7·(hi−lo)/n apart, in random order: inputs with no
 * near-ties by construction. */
static void spaced_values(uint64_t *s, int64_t n, double lo, double hi, double *out) {
  for (int64_t j = 0; j < n; ++j) {
    out[j] = lo + (hi - lo) * ((double)j + 0.5 + 0.3 * (rng_unit(s) - 0.5)) / (double)n;
  }
  for (int64_t j = n - 1; j > 0; --j) {
    int64_t r = (int64_t)(rng_next(s) % (uint64_t)(j + 1));
    double tmp = out[j];
    out[j] = out[r];
    out[r] = tmp;
  }
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- mHC references -------------------------------------------------------------------- */

enum { SK_SPEC = 0, SK_EXP_START = 1, SK_NO_EPS = 2 };

/* sinkhorn per spec: row softmax, +eps, column normalise, then iters−1 × (row, column), every
 * divide by (sum + eps). The variants are the porting mistakes, to prove a test tells them
 * apart. */
static void sinkhorn_d(const double *L, int64_t n, int64_t iters, double eps, int variant,
                       double *M) {
  double div_eps = variant == SK_NO_EPS ? 0.0 : eps;
  for (int64_t i = 0; i < n; ++i) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < n; ++j) mx = fmax(mx, L[i * n + j]);
    for (int64_t j = 0; j < n; ++j) sum += exp(L[i * n + j] - mx);
    for (int64_t j = 0; j < n; ++j) {
      double e = exp(L[i * n + j] - mx);
      M[i * n + j] = (variant == SK_EXP_START ? exp(L[i * n + j]) : e / sum) + eps;
    }
  }
  for (int64_t it = 0; it < iters; ++it) {
    if (it > 0) {
      for (int64_t i = 0; i < n; ++i) {
        double sum = 0.0;
        for (int64_t j = 0; j < n; ++j) sum += M[i * n + j];
        for (int64_t j = 0; j < n; ++j) M[i * n + j] /= sum + div_eps;
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += M[i * n + j];
      for (int64_t i = 0; i < n; ++i) M[i * n + j] /= sum + div_eps;
    }
  }
}

/* (fn · f)·rsqrt(mean(f²) + norm_eps) for rows of fn, f = token t's n·C values. */
static void mix_d(const double *X, int64_t t, int64_t nc, const double *fn, int64_t rows,
                  double norm_eps, double *mix) {
  const double *f = X + t * nc;
  double ss = 0.0;
  for (int64_t i = 0; i < nc; ++i) ss += f[i] * f[i];
  double r = 1.0 / sqrt(ss / (double)nc + norm_eps);
  for (int64_t k = 0; k < rows; ++k) {
    double dot = 0.0;
    for (int64_t i = 0; i < nc; ++i) dot += fn[k * nc + i] * f[i];
    mix[k] = dot * r;
  }
}

enum { ORDER_PRE_POST_COMB = 0, ORDER_PRE_COMB_POST = 1 };

typedef struct hc_pre_case {
  int64_t T, n, C, iters;
  double eps, norm_eps;
} hc_pre_case;

static void hc_pre_d(const hc_pre_case *c, const double *X, const double *fn, const double *scale,
                     const double *base, int order, int sk_variant, double *x, double *post,
                     double *comb) {
  const int64_t n = c->n, C = c->C, rows = (n + 2) * n;
  const int64_t post_off = order == ORDER_PRE_POST_COMB ? n : n + n * n;
  const int64_t comb_off = order == ORDER_PRE_POST_COMB ? 2 * n : n;
  double *mix = tu_dalloc(rows), *pre = tu_dalloc(n), *L = tu_dalloc(n * n);
  for (int64_t t = 0; t < c->T; ++t) {
    mix_d(X, t, n * C, fn, rows, c->norm_eps, mix);
    for (int64_t j = 0; j < n; ++j) {
      pre[j] = sigm(mix[j] * scale[0] + base[j]) + c->eps;
      post[t * n + j] = 2.0 * sigm(mix[post_off + j] * scale[1] + base[post_off + j]);
    }
    for (int64_t r = 0; r < n * n; ++r) L[r] = mix[comb_off + r] * scale[2] + base[comb_off + r];
    sinkhorn_d(L, n, c->iters, c->eps, sk_variant, comb + t * n * n);
    for (int64_t k = 0; k < C; ++k) {
      double acc = 0.0;
      for (int64_t j = 0; j < n; ++j) acc += pre[j] * X[(t * n + j) * C + k];
      x[t * C + k] = acc;
    }
  }
  free(mix);
  free(pre);
  free(L);
}

/* X'[t, k] = post[t, k]·y[t] + Σ_j comb[t, j, k]·X[t, j]; transposed = 0 is the mistake
 * comb[t, k, j]. */
static void hc_post_d(int64_t T, int64_t n, int64_t C, const double *X, const double *y,
                      const double *post, const double *comb, int transposed, double *out) {
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t c = 0; c < C; ++c) {
        double acc = post[t * n + k] * y[t * C + c];
        for (int64_t j = 0; j < n; ++j) {
          double m = transposed ? comb[(t * n + j) * n + k] : comb[(t * n + k) * n + j];
          acc += m * X[(t * n + j) * C + c];
        }
        out[(t * n + k) * C + c] = acc;
      }
    }
  }
}

/* ---- mHC tests ------------------------------------------------------------------------- */

START_TEST(test_hc_expand_copies_every_stream) {
  struct {
    vnrt_dtype dt;
    int64_t T, C, n;
  } cases[] = {{VNRT_F32, 3, 5, 4},
               {VNRT_F16, 2, 7, 3},
               {VNRT_BF16, 1, 1, 1},
               /* past the CPU's one-thread bound (32768 values): a token per pool item */
               {VNRT_BF16, 40, 300, 4}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    int64_t T = cases[ci].T, C = cases[ci].C, n = cases[ci].n;
    tu_tensor x = tensor(cases[ci].dt, 2, T, C, 0, 0);
    tu_fill_uniform(&x, 11 + ci, -3.0f, 3.0f);
    double *want_v = tu_dalloc(T * n * C);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t c = 0; c < C; ++c) want_v[(t * n + j) * C + c] = tu_get(&x, t * C + c);
      }
    }
    vnrt_attr attrs[] = {tu_attr_i("n", n)};
    want w[] = {{want_v, T * n * C, EXACT}};
    run_check(VNRT_OP_HC_EXPAND, &x, 1, attrs, 1, 1, w, NULL, NULL);
    free(want_v);
    tu_tensor_free(&x);
  }
}
END_TEST

/* Builds hc_pre inputs for c, runs it everywhere and compares with the spec reference. When
 * order_matters, first proves that reading fn as [pre, comb, post] gives another answer. */
static void check_hc_pre(const hc_pre_case *c, vnrt_dtype xdt, vnrt_dtype fdt, vnrt_dtype bdt,
                         uint64_t seed, int set_attrs, int order_matters) {
  const int64_t n = c->n, C = c->C, T = c->T, rows = (n + 2) * n;
  tu_tensor in[4] = {tensor(xdt, 3, T, n, C, 0), tensor(fdt, 2, rows, n * C, 0, 0),
                     tensor(VNRT_F32, 1, 3, 0, 0, 0), tensor(bdt, 1, rows, 0, 0, 0)};
  tu_fill_uniform(&in[0], seed, -2.0f, 2.0f);
  tu_fill_uniform(&in[1], seed + 1, -0.6f, 0.6f);
  tu_set(&in[2], 0, 0.8);
  tu_set(&in[2], 1, 1.3);
  tu_set(&in[2], 2, 1.7);
  tu_fill_uniform(&in[3], seed + 2, -1.0f, 1.0f);
  double *X = tu_values(&in[0]), *fn = tu_values(&in[1]), *sc = tu_values(&in[2]),
         *b = tu_values(&in[3]);
  double *x = tu_dalloc(T * C), *post = tu_dalloc(T * n), *comb = tu_dalloc(T * n * n);
  hc_pre_d(c, X, fn, sc, b, ORDER_PRE_POST_COMB, SK_SPEC, x, post, comb);
  if (order_matters) {
    double *x2 = tu_dalloc(T * C), *post2 = tu_dalloc(T * n), *comb2 = tu_dalloc(T * n * n);
    hc_pre_d(c, X, fn, sc, b, ORDER_PRE_COMB_POST, SK_SPEC, x2, post2, comb2);
    ck_assert_msg(tu_nmse_d(post2, post, T * n) > 1e-3 && tu_nmse_d(comb2, comb, T * n * n) > 1e-3,
                  "test data cannot tell fn row orders apart");
    free(x2);
    free(post2);
    free(comb2);
  }
  vnrt_attr attrs[] = {tu_attr_i("iters", c->iters), tu_attr_f("eps", c->eps),
                       tu_attr_f("norm_eps", c->norm_eps)};
  want w[] = {
      {x, T * C, tol_for(xdt, TOL_MHC)}, {post, T * n, TOL_MHC}, {comb, T * n * n, TOL_MHC}};
  run_check(VNRT_OP_HC_PRE, in, 4, attrs, set_attrs ? 3 : 0, 3, w, NULL, NULL);
  free(X);
  free(fn);
  free(sc);
  free(b);
  free(x);
  free(post);
  free(comb);
  for (int i = 0; i < 4; ++i) tu_tensor_free(&in[i]);
}

START_TEST(test_hc_pre_fn_rows_are_pre_post_comb) {
  /* Defaults (iters 20, eps 1e-6, norm_eps 1e-6), V4's n = 4. */
  hc_pre_case c = {.T = 3, .n = 4, .C = 8, .iters = 20, .eps = 1e-6, .norm_eps = 1e-6};
  check_hc_pre(&c, VNRT_F32, VNRT_F32, VNRT_F32, 101, 0, 1);
}
END_TEST

START_TEST(test_hc_pre_odd_shapes_and_dtypes) {
  hc_pre_case c1 = {.T = 5, .n = 3, .C = 7, .iters = 3, .eps = 1e-3, .norm_eps = 1e-5};
  check_hc_pre(&c1, VNRT_F32, VNRT_F16, VNRT_BF16, 202, 1, 1);
  hc_pre_case c2 = {.T = 2, .n = 2, .C = 5, .iters = 1, .eps = 1e-2, .norm_eps = 1e-6};
  check_hc_pre(&c2, VNRT_F32, VNRT_F32, VNRT_F32, 303, 1, 0);
  hc_pre_case c3 = {.T = 1, .n = 4, .C = 33, .iters = 20, .eps = 1e-6, .norm_eps = 1e-6};
  check_hc_pre(&c3, VNRT_BF16, VNRT_F16, VNRT_F32, 404, 1, 1);
  hc_pre_case c4 = {.T = 4, .n = 1, .C = 3, .iters = 20, .eps = 1e-6, .norm_eps = 1e-6};
  check_hc_pre(&c4, VNRT_F32, VNRT_F32, VNRT_F32, 505, 1, 0);
  /* Decode shapes: fn split in K pieces of 1024 with a partial last one (n·C = 4100), 24 rows
   * in blocks of 8; and three tokens with bf16 fn. */
  hc_pre_case c5 = {.T = 1, .n = 4, .C = 1025, .iters = 20, .eps = 1e-6, .norm_eps = 1e-6};
  check_hc_pre(&c5, VNRT_F32, VNRT_F32, VNRT_F32, 606, 1, 1);
  hc_pre_case c6 = {.T = 3, .n = 4, .C = 600, .iters = 20, .eps = 1e-6, .norm_eps = 1e-6};
  check_hc_pre(&c6, VNRT_F32, VNRT_BF16, VNRT_F32, 707, 1, 1);
  /* n·C a multiple of 16 with bf16 and f16 X (on CPU drivers OpenCL's hc_pre_mix reads X 16
   * values at a time in its dtype, and its collapse kernel 16 channels an item). */
  hc_pre_case c7 = {.T = 2, .n = 4, .C = 64, .iters = 20, .eps = 1e-6, .norm_eps = 1e-6};
  check_hc_pre(&c7, VNRT_BF16, VNRT_F32, VNRT_F32, 808, 1, 1);
  check_hc_pre(&c7, VNRT_F16, VNRT_F32, VNRT_F32, 909, 1, 1);
}
END_TEST

typedef struct sums_check {
  int64_t n, batch;
  double row_tol, col_tol;
} sums_check;

/* Every matrix the kernel returned is doubly stochastic to within the given tolerances. */
static void inspect_sums(const tu_tensor *outs, const char *spec, void *user) {
  const sums_check *sc = (const sums_check *)user;
  const int64_t n = sc->n;
  for (int64_t b = 0; b < sc->batch; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      double row = 0.0, col = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        row += tu_get(&outs[0], (b * n + i) * n + j);
        col += tu_get(&outs[0], (b * n + j) * n + i);
      }
      ck_assert_msg(fabs(row - 1.0) <= sc->row_tol,
                    "sinkhorn on %s: matrix %lld row %lld sums "
                    "to %.9f",
                    spec, (long long)b, (long long)i, row);
      ck_assert_msg(fabs(col - 1.0) <= sc->col_tol,
                    "sinkhorn on %s: matrix %lld col %lld sums "
                    "to %.9f",
                    spec, (long long)b, (long long)i, col);
    }
  }
}

START_TEST(test_sinkhorn_is_doubly_stochastic_after_20_iters) {
  /* Batch dims [2, 3] in front of 4×4, defaults iters 20 / eps 1e-6. */
  tu_tensor L = tensor(VNRT_F32, 4, 2, 3, 4, 4);
  tu_fill_uniform(&L, 7, -2.0f, 2.0f);
  double *Lv = tu_values(&L), *M = tu_dalloc(6 * 16);
  for (int64_t b = 0; b < 6; ++b) sinkhorn_d(Lv + b * 16, 4, 20, 1e-6, SK_SPEC, M + b * 16);
  sums_check sc = {.n = 4, .batch = 6, .row_tol = 1e-4, .col_tol = 1e-5};
  want w[] = {{M, 6 * 16, TOL_MHC}};
  run_check(VNRT_OP_SINKHORN, &L, 1, NULL, 0, 1, w, inspect_sums, &sc);
  free(Lv);
  free(M);
  tu_tensor_free(&L);
}
END_TEST

/* Few iterations are far from converged, so exact values show the row-softmax start and the
 * eps in every divide; the spec's variants must differ from the mistakes on this data. */
START_TEST(test_sinkhorn_exact_values_iters_1_and_3) {
  const int64_t iters_list[] = {1, 3};
  struct {
    int64_t batch, n;
    vnrt_dtype dt;
    double eps;
  } cases[] = {{1, 5, VNRT_F32, 0.05}, {3, 4, VNRT_BF16, 0.05}, {2, 4, VNRT_F16, 1e-6}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    for (size_t ii = 0; ii < 2; ++ii) {
      const int64_t B = cases[ci].batch, n = cases[ci].n, iters = iters_list[ii];
      const double eps = cases[ci].eps;
      tu_tensor L =
          B == 1 ? tensor(cases[ci].dt, 2, n, n, 0, 0) : tensor(cases[ci].dt, 3, B, n, n, 0);
      tu_fill_uniform(&L, 31 + ci * 7 + ii, -2.5f, 2.5f);
      double *Lv = tu_values(&L), *M = tu_dalloc(B * n * n), *bad = tu_dalloc(B * n * n);
      for (int64_t b = 0; b < B; ++b) {
        sinkhorn_d(Lv + b * n * n, n, iters, eps, SK_SPEC, M + b * n * n);
      }
      for (int64_t b = 0; b < B; ++b) {
        sinkhorn_d(Lv + b * n * n, n, iters, eps, SK_EXP_START, bad + b * n * n);
      }
      ck_assert_msg(tu_nmse_d(bad, M, B * n * n) > 1e-4, "data cannot tell exp() from softmax");
      if (eps > 1e-3) {
        for (int64_t b = 0; b < B; ++b) {
          sinkhorn_d(Lv + b * n * n, n, iters, eps, SK_NO_EPS, bad + b * n * n);
        }
        ck_assert_msg(tu_nmse_d(bad, M, B * n * n) > 1e-4, "data cannot tell a missing eps");
      }
      vnrt_attr attrs[] = {tu_attr_i("iters", iters), tu_attr_f("eps", eps)};
      want w[] = {{M, B * n * n, TOL_MHC}};
      run_check(VNRT_OP_SINKHORN, &L, 1, attrs, 2, 1, w, NULL, NULL);
      free(Lv);
      free(M);
      free(bad);
      tu_tensor_free(&L);
    }
  }
}
END_TEST

START_TEST(test_hc_post_applies_comb_transposed) {
  struct {
    int64_t T, n, C;
    vnrt_dtype xdt;
  } cases[] = {{3, 4, 6, VNRT_F32},
               {2, 3, 5, VNRT_BF16},
               {1, 4, 1, VNRT_F16},
               /* a decode step (one thread), and blocks of 512 channels with a partial one
                  split across threads */
               {1, 4, 1024, VNRT_F32},
               {3, 4, 2100, VNRT_F32},
               /* the same in bf16, as the V4 graph's reference numerics keep the streams */
               {1, 4, 1024, VNRT_BF16},
               {3, 4, 2100, VNRT_BF16},
               /* f16 in whole vectors of 16 channels (the OpenCL kernel that loads 16 at once) */
               {2, 4, 48, VNRT_F16}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    const int64_t T = cases[ci].T, n = cases[ci].n, C = cases[ci].C;
    const vnrt_dtype xdt = cases[ci].xdt;
    tu_tensor in[4] = {tensor(xdt, 3, T, n, C, 0), tensor(xdt, 2, T, C, 0, 0),
                       tensor(VNRT_F32, 2, T, n, 0, 0), tensor(VNRT_F32, 3, T, n, n, 0)};
    tu_fill_uniform(&in[0], 41 + ci, -2.0f, 2.0f);
    tu_fill_uniform(&in[1], 51 + ci, -2.0f, 2.0f);
    tu_fill_uniform(&in[2], 61 + ci, 0.0f, 2.0f);
    tu_fill_uniform(&in[3], 71 + ci, 0.0f, 1.0f); /* far from symmetric */
    double *X = tu_values(&in[0]), *y = tu_values(&in[1]), *post = tu_values(&in[2]);
    double *comb = tu_values(&in[3]);
    double *out = tu_dalloc(T * n * C), *bad = tu_dalloc(T * n * C);
    hc_post_d(T, n, C, X, y, post, comb, 1, out);
    hc_post_d(T, n, C, X, y, post, comb, 0, bad);
    ck_assert_msg(tu_nmse_d(bad, out, T * n * C) > 1e-3,
                  "data cannot tell comb from its transpose");
    want w[] = {{out, T * n * C, tol_for(xdt, TOL_MHC)}};
    run_check(VNRT_OP_HC_POST, in, 4, NULL, 0, 1, w, NULL, NULL);
    free(X);
    free(y);
    free(post);
    free(comb);
    free(out);
    free(bad);
    for (int i = 0; i < 4; ++i) tu_tensor_free(&in[i]);
  }
}
END_TEST

START_TEST(test_hc_head_collapses_with_sigmoid_weights) {
  struct {
    int64_t T, n, C;
    double eps, norm_eps;
    int set_attrs;
    vnrt_dtype fdt, xdt;
  } cases[] = {{4, 4, 6, 1e-6, 1e-6, 0, VNRT_F32, VNRT_F32},
               {3, 3, 5, 1e-2, 1e-4, 1, VNRT_F16, VNRT_F32},
               /* a decode step's shape (one token, fn split along K in the CPU's fast kernel) */
               {1, 4, 1030, 1e-6, 1e-6, 0, VNRT_F32, VNRT_BF16},
               /* more tokens than the CPU's few-token path takes: its blocked GEMM */
               {9, 4, 70, 1e-6, 1e-6, 0, VNRT_BF16, VNRT_F32}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    const int64_t T = cases[ci].T, n = cases[ci].n, C = cases[ci].C;
    tu_tensor in[4] = {tensor(cases[ci].xdt, 3, T, n, C, 0),
                       tensor(cases[ci].fdt, 2, n, n * C, 0, 0), tensor(VNRT_F32, 1, 1, 0, 0, 0),
                       tensor(VNRT_F32, 1, n, 0, 0, 0)};
    tu_fill_uniform(&in[0], 81 + ci, -2.0f, 2.0f);
    tu_fill_uniform(&in[1], 91 + ci, -0.6f, 0.6f);
    tu_set(&in[2], 0, 1.4);
    tu_fill_uniform(&in[3], 97 + ci, -1.0f, 1.0f);
    double *X = tu_values(&in[0]), *fn = tu_values(&in[1]), *sc = tu_values(&in[2]);
    double *b = tu_values(&in[3]), *mix = tu_dalloc(n), *x = tu_dalloc(T * C);
    for (int64_t t = 0; t < T; ++t) {
      mix_d(X, t, n * C, fn, n, cases[ci].norm_eps, mix);
      for (int64_t j = 0; j < n; ++j) mix[j] = sigm(mix[j] * sc[0] + b[j]) + cases[ci].eps;
      for (int64_t c = 0; c < C; ++c) {
        double acc = 0.0;
        for (int64_t j = 0; j < n; ++j) acc += mix[j] * X[(t * n + j) * C + c];
        x[t * C + c] = acc;
      }
    }
    vnrt_attr attrs[] = {tu_attr_f("eps", cases[ci].eps),
                         tu_attr_f("norm_eps", cases[ci].norm_eps)};
    want w[] = {{x, T * C, tol_for(cases[ci].xdt, TOL_MHC)}};
    run_check(VNRT_OP_HC_HEAD, in, 4, attrs, cases[ci].set_attrs ? 2 : 0, 1, w, NULL, NULL);
    free(X);
    free(fn);
    free(sc);
    free(b);
    free(mix);
    free(x);
    for (int i = 0; i < 4; ++i) tu_tensor_free(&in[i]);
  }
}
END_TEST

/* ---- MoE references -------------------------------------------------------------------- */

static double softplus_d(double x) {
  if (x > 20.0) return x;
  if (x < -20.0) return exp(x);
  return log(1.0 + exp(x));
}

/* s = score(logits row) over E experts. */
static void score_d(int kind, const double *l, int64_t E, double *s) {
  if (kind == SCORE_SOFTMAX) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t e = 0; e < E; ++e) mx = fmax(mx, l[e]);
    for (int64_t e = 0; e < E; ++e) sum += exp(l[e] - mx);
    for (int64_t e = 0; e < E; ++e) s[e] = exp(l[e] - mx) / sum;
  } else {
    for (int64_t e = 0; e < E; ++e) {
      s[e] = kind == SCORE_SIGMOID ? sigm(l[e]) : sqrt(softplus_d(l[e]));
    }
  }
}

/* The logit whose score is s (sigmoid and sqrt_softplus are invertible). */
static double inv_score(int kind, double s) {
  if (kind == SCORE_SIGMOID) return log(s / (1.0 - s));
  return log(expm1(s * s)); /* softplus⁻¹(s²); s² stays well below 20 here */
}

enum { GROUP_TOP2 = 0, GROUP_MAX = 1, GROUP_SUM_ALL = 2 };

typedef struct route_case {
  int64_t T, E, k, n_group, topk_group;
  int kind, norm;
  double scale;
} route_case;

typedef struct route_ref_opts {
  int group_rule;     /* GROUP_TOP2 is the spec */
  int biased_weights; /* 1: the mistake w = sel[experts] */
  int ignore_bias;    /* 1: the mistake of selecting by s */
  double min_gap;     /* out: the smallest gap between group scores of one token */
} route_ref_opts;

/* moe_route per spec on the logits L[T, E] (bias may be NULL); w[T, k], ex[T, k]. */
static void route_d(const route_case *c, const double *L, const double *bias, route_ref_opts *o,
                    double *w, double *ex) {
  const int64_t E = c->E, k = c->k, G = c->n_group, gs = E / c->n_group;
  double *s = tu_dalloc(E), *sel = tu_dalloc(E), *gsc = tu_dalloc(G);
  int *ok = calloc((size_t)E, sizeof *ok), *gok = calloc((size_t)G, sizeof *gok);
  ck_assert(ok && gok);
  o->min_gap = INFINITY;
  for (int64_t t = 0; t < c->T; ++t) {
    score_d(c->kind, L + t * E, E, s);
    for (int64_t e = 0; e < E; ++e) {
      sel[e] = s[e] + (bias && !o->ignore_bias ? bias[e] : 0.0);
      ok[e] = 1;
    }
    if (G > 1) {
      for (int64_t g = 0; g < G; ++g) {
        double m1 = -INFINITY, m2 = -INFINITY, all = 0.0;
        for (int64_t i = 0; i < gs; ++i) {
          double v = sel[g * gs + i];
          all += v;
          if (v > m1) {
            m2 = m1;
            m1 = v;
          } else if (v > m2) {
            m2 = v;
          }
        }
        gsc[g] = o->group_rule == GROUP_MAX       ? m1
                 : o->group_rule == GROUP_SUM_ALL ? all
                                                  : m1 + (gs > 1 ? m2 : 0.0);
        gok[g] = 0;
      }
      for (int64_t a = 0; a < G; ++a) {
        for (int64_t b = a + 1; b < G; ++b) o->min_gap = fmin(o->min_gap, fabs(gsc[a] - gsc[b]));
      }
      for (int64_t r = 0; r < c->topk_group; ++r) {
        int64_t best = -1;
        for (int64_t g = 0; g < G; ++g) {
          if (!gok[g] && (best < 0 || gsc[g] > gsc[best])) best = g;
        }
        gok[best] = 1;
      }
      for (int64_t e = 0; e < E; ++e) ok[e] = gok[e / gs];
    }
    double sum = 0.0;
    for (int64_t i = 0; i < k; ++i) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e) {
        if (ok[e] && (best < 0 || sel[e] > sel[best])) best = e;
      }
      ok[best] = 0;
      ex[t * k + i] = (double)best;
      w[t * k + i] = o->biased_weights ? sel[best] : s[best];
      sum += w[t * k + i];
    }
    for (int64_t i = 0; i < k; ++i) {
      if (c->norm) w[t * k + i] /= sum + 1e-20;
      w[t * k + i] *= c->scale;
    }
  }
  free(s);
  free(sel);
  free(gsc);
  free(ok);
  free(gok);
}

static int64_t count_diff(const double *a, const double *b, int64_t n) {
  int64_t d = 0;
  for (int64_t i = 0; i < n; ++i) d += a[i] != b[i];
  return d;
}

/* Runs moe_route for c on logits/bias (bias may be NULL) and compares with the reference. */
static void check_route(const route_case *c, tu_tensor *logits, tu_tensor *bias, double *out_w,
                        double *out_ex) {
  double *L = tu_values(logits), *b = bias ? tu_values(bias) : NULL;
  route_ref_opts o = {0};
  route_d(c, L, b, &o, out_w, out_ex);
  if (c->n_group > 1) ck_assert_msg(o.min_gap > 1e-4, "near-tie in group scores: %g", o.min_gap);
  vnrt_attr attrs[] = {tu_attr_i("k", c->k),
                       tu_attr_word("score", score_words[c->kind]),
                       tu_attr_i("n_group", c->n_group),
                       tu_attr_i("topk_group", c->topk_group),
                       tu_attr_i("norm", c->norm),
                       tu_attr_f("scale", c->scale)};
  tu_tensor in[2] = {*logits, bias ? *bias : *logits};
  want w[] = {{out_w, c->T * c->k, TOL_ROUTE}, {out_ex, c->T * c->k, EXACT}};
  run_check(VNRT_OP_MOE_ROUTE, in, bias ? 2 : 1, attrs, 6, 2, w, NULL, NULL);
  free(L);
  free(b);
}

/* Logits and bias such that sel = s + bias is, per token, a shuffled set of values at least
 * 0.7·2·width/E apart (no near-ties), with the bias (in ±bias_range) reordering s. */
static void make_route_inputs(const route_case *c, uint64_t seed, double center, double width,
                              double bias_range, tu_tensor *logits, tu_tensor *bias) {
  uint64_t s = seed;
  const int64_t E = c->E;
  double *b = tu_dalloc(E), *target = tu_dalloc(E);
  if (bias) {
    spaced_values(&s, E, -bias_range, bias_range, b);
    for (int64_t e = 0; e < E; ++e) {
      tu_set(bias, e, b[e]);
      b[e] = tu_get(bias, e);
    }
  }
  for (int64_t t = 0; t < c->T; ++t) {
    spaced_values(&s, E, center - width, center + width, target);
    for (int64_t e = 0; e < E; ++e) {
      double v = target[e] - (bias ? b[e] : 0.0);
      tu_set(logits, t * E + e, c->kind == SCORE_SOFTMAX ? v : inv_score(c->kind, v));
    }
  }
  free(b);
  free(target);
}

/* ---- MoE tests ------------------------------------------------------------------------- */

START_TEST(test_route_weights_are_unbiased_scores) {
  route_case c = {.T = 3,
                  .E = 8,
                  .k = 2,
                  .n_group = 1,
                  .topk_group = 1,
                  .kind = SCORE_SIGMOID,
                  .norm = 1,
                  .scale = 1.0};
  tu_tensor logits = tensor(VNRT_F32, 2, c.T, c.E, 0, 0), bias = tensor(VNRT_F32, 1, c.E, 0, 0, 0);
  const double s_rows[3][8] = {{0.90, 0.80, 0.70, 0.60, 0.50, 0.40, 0.30, 0.20},
                               {0.15, 0.85, 0.25, 0.75, 0.35, 0.65, 0.45, 0.55},
                               {0.52, 0.33, 0.91, 0.12, 0.64, 0.27, 0.78, 0.05}};
  const double bvals[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.66, 0.57};
  for (int64_t e = 0; e < c.E; ++e) tu_set(&bias, e, bvals[e]);
  for (int64_t t = 0; t < c.T; ++t) {
    for (int64_t e = 0; e < c.E; ++e) tu_set(&logits, t * c.E + e, inv_score(c.kind, s_rows[t][e]));
  }
  double *L = tu_values(&logits), *b = tu_values(&bias);
  double *w = tu_dalloc(c.T * c.k), *ex = tu_dalloc(c.T * c.k);
  double *w2 = tu_dalloc(c.T * c.k), *ex2 = tu_dalloc(c.T * c.k);
  /* The bias must change the selection, and biased weights must differ from the right ones. */
  route_ref_opts no_bias = {.ignore_bias = 1}, biased_w = {.biased_weights = 1};
  route_d(&c, L, b, &no_bias, w2, ex2);
  check_route(&c, &logits, &bias, w, ex);
  ck_assert_msg(count_diff(ex, ex2, c.T * c.k) > 0, "the bias does not change the selection");
  route_d(&c, L, b, &biased_w, w2, ex2);
  ck_assert_msg(tu_nmse_d(w2, w, c.T * c.k) > 1e-3, "biased weights look like unbiased ones");
  /* Token 0 by hand: sel = [.9 .8 .7 .6 .5 .42 .96 .77] -> experts 6, 0; w = s = .3, .9. */
  ck_assert(ex[0] == 6.0 && ex[1] == 0.0);
  ck_assert(fabs(w[0] - 0.25) < 1e-6 && fabs(w[1] - 0.75) < 1e-6);
  /* Without norm: the raw unbiased scores times scale. */
  route_case c2 = c;
  c2.norm = 0;
  c2.scale = 1.5;
  check_route(&c2, &logits, &bias, w, ex);
  ck_assert(fabs(w[0] - 0.45) < 1e-6 && fabs(w[1] - 1.35) < 1e-6);
  free(L);
  free(b);
  free(w);
  free(ex);
  free(w2);
  free(ex2);
  tu_tensor_free(&logits);
  tu_tensor_free(&bias);
}
END_TEST

START_TEST(test_route_group_score_is_sum_of_top2) {
  /* 4 groups of 4. Best group by max: g0 (0.95); by top-2 sum: g1 (1.20); by sum of all:
   * g3 (1.78). topk_group 1, so only the top-2 rule picks experts 4 and 5. */
  route_case c = {.T = 2,
                  .E = 16,
                  .k = 2,
                  .n_group = 4,
                  .topk_group = 1,
                  .kind = SCORE_SIGMOID,
                  .norm = 1,
                  .scale = 2.5};
  const double rows[2][16] = {
      {0.95, 0.10, 0.12, 0.08, 0.62, 0.58, 0.05, 0.07, 0.30, 0.28, 0.26, 0.24, 0.46, 0.44, 0.45,
       0.43},
      /* The same groups rotated: top-2 rule -> g2 (experts 8, 9 reordered). */
      {0.30, 0.28, 0.26, 0.24, 0.95, 0.10, 0.12, 0.08, 0.58, 0.62, 0.05, 0.07, 0.46, 0.44, 0.45,
       0.43}};
  tu_tensor logits = tensor(VNRT_F32, 2, c.T, c.E, 0, 0);
  for (int64_t t = 0; t < c.T; ++t) {
    for (int64_t e = 0; e < c.E; ++e) tu_set(&logits, t * c.E + e, inv_score(c.kind, rows[t][e]));
  }
  double *L = tu_values(&logits);
  double *w = tu_dalloc(c.T * c.k), *ex = tu_dalloc(c.T * c.k), *w2 = tu_dalloc(c.T * c.k);
  double *ex2 = tu_dalloc(c.T * c.k);
  check_route(&c, &logits, NULL, w, ex);
  ck_assert(ex[0] == 4.0 && ex[1] == 5.0 && ex[2] == 9.0 && ex[3] == 8.0);
  route_ref_opts max_only = {.group_rule = GROUP_MAX}, sum_all = {.group_rule = GROUP_SUM_ALL};
  route_d(&c, L, NULL, &max_only, w2, ex2);
  ck_assert_msg(count_diff(ex, ex2, c.T * c.k) == c.T * c.k, "max-only picks the same experts");
  route_d(&c, L, NULL, &sum_all, w2, ex2);
  ck_assert_msg(count_diff(ex, ex2, c.T * c.k) == c.T * c.k, "sum-of-all picks the same experts");
  free(L);
  free(w);
  free(ex);
  free(w2);
  free(ex2);
  tu_tensor_free(&logits);
}
END_TEST

START_TEST(test_route_deepseek_v3_config) {
  route_case c = {.T = 6,
                  .E = 256,
                  .k = 8,
                  .n_group = 8,
                  .topk_group = 4,
                  .kind = SCORE_SIGMOID,
                  .norm = 1,
                  .scale = 2.5};
  tu_tensor logits = tensor(VNRT_F32, 2, c.T, c.E, 0, 0), bias = tensor(VNRT_F32, 1, c.E, 0, 0, 0);
  make_route_inputs(&c, 1234, 0.5, 0.2, 0.25, &logits, &bias);
  double *w = tu_dalloc(c.T * c.k), *ex = tu_dalloc(c.T * c.k);
  check_route(&c, &logits, &bias, w, ex);
  /* The group limit must matter on this data, or the test would not exercise it. */
  double *L = tu_values(&logits), *b = tu_values(&bias), *w2 = tu_dalloc(c.T * c.k);
  double *ex2 = tu_dalloc(c.T * c.k);
  route_case flat = c;
  flat.n_group = 1;
  route_ref_opts o = {0};
  route_d(&flat, L, b, &o, w2, ex2);
  ck_assert_msg(count_diff(ex, ex2, c.T * c.k) > 0, "group limit changes nothing here");
  free(L);
  free(b);
  free(w);
  free(ex);
  free(w2);
  free(ex2);
  tu_tensor_free(&logits);
  tu_tensor_free(&bias);
}
END_TEST

START_TEST(test_route_deepseek_v4_config) {
  route_case c = {.T = 5,
                  .E = 64,
                  .k = 6,
                  .n_group = 1,
                  .topk_group = 1,
                  .kind = SCORE_SQRT_SOFTPLUS,
                  .norm = 1,
                  .scale = 1.5};
  tu_tensor logits = tensor(VNRT_F32, 2, c.T, c.E, 0, 0), bias = tensor(VNRT_F32, 1, c.E, 0, 0, 0);
  make_route_inputs(&c, 4321, 1.2, 0.3, 0.4, &logits, &bias);
  double *w = tu_dalloc(c.T * c.k), *ex = tu_dalloc(c.T * c.k);
  check_route(&c, &logits, &bias, w, ex);
  /* Also with the score saturating: logits past ±20 take softplus's outer branches. */
  tu_tensor big = tensor(VNRT_F32, 2, 2, 8, 0, 0);
  const double lv[16] = {25.0,  -25.0, 21.5, -30.0, 3.0,  22.75, -21.0, 0.5,
                         -22.0, 24.0,  1.0,  -2.0,  30.0, 20.5,  -19.5, 26.5};
  for (int i = 0; i < 16; ++i) tu_set(&big, i, lv[i]);
  route_case c2 = {.T = 2,
                   .E = 8,
                   .k = 3,
                   .n_group = 1,
                   .topk_group = 1,
                   .kind = SCORE_SQRT_SOFTPLUS,
                   .norm = 1,
                   .scale = 1.5};
  check_route(&c2, &big, NULL, w, ex);
  ck_assert(ex[0] == 0.0 && ex[1] == 5.0 && ex[2] == 2.0);
  free(w);
  free(ex);
  tu_tensor_free(&logits);
  tu_tensor_free(&bias);
  tu_tensor_free(&big);
}
END_TEST

START_TEST(test_route_softmax_odd_groups) {
  double *w = tu_dalloc(64), *ex = tu_dalloc(64);
  /* softmax over E with 3 groups of 4; bf16 logits. */
  route_case c = {.T = 4,
                  .E = 12,
                  .k = 3,
                  .n_group = 3,
                  .topk_group = 2,
                  .kind = SCORE_SOFTMAX,
                  .norm = 0,
                  .scale = 1.0};
  tu_tensor logits = tensor(VNRT_BF16, 2, c.T, c.E, 0, 0);
  make_route_inputs(&c, 77, 0.0, 3.0, 0.0, &logits, NULL);
  check_route(&c, &logits, NULL, w, ex);
  /* Groups of two experts: the top-2 sum is the whole group. */
  route_case c1 = {.T = 3,
                   .E = 6,
                   .k = 2,
                   .n_group = 3,
                   .topk_group = 2,
                   .kind = SCORE_SQRT_SOFTPLUS,
                   .norm = 1,
                   .scale = 1.0};
  tu_tensor l1 = tensor(VNRT_F16, 2, c1.T, c1.E, 0, 0), b1 = tensor(VNRT_F16, 1, c1.E, 0, 0, 0);
  make_route_inputs(&c1, 78, 1.0, 0.3, 0.2, &l1, &b1);
  check_route(&c1, &l1, &b1, w, ex);
  /* k = E: every expert, in descending sel order. */
  route_case c2 = {.T = 2,
                   .E = 5,
                   .k = 5,
                   .n_group = 1,
                   .topk_group = 1,
                   .kind = SCORE_SIGMOID,
                   .norm = 1,
                   .scale = 1.0};
  tu_tensor l2 = tensor(VNRT_F32, 2, c2.T, c2.E, 0, 0);
  make_route_inputs(&c2, 79, 0.5, 0.3, 0.0, &l2, NULL);
  check_route(&c2, &l2, NULL, w, ex);
  free(w);
  free(ex);
  tu_tensor_free(&logits);
  tu_tensor_free(&l1);
  tu_tensor_free(&b1);
  tu_tensor_free(&l2);
}
END_TEST

/* moe_hash_route reference: experts = tid2eid[ids[t]], weights from s[experts]. */
static void hash_route_d(int kind, int norm, double scale, int64_t T, int64_t E, int64_t k,
                         const double *L, const double *ids, const double *tid2eid, double *w,
                         double *ex) {
  double *s = tu_dalloc(E);
  for (int64_t t = 0; t < T; ++t) {
    score_d(kind, L + t * E, E, s);
    double sum = 0.0;
    for (int64_t i = 0; i < k; ++i) {
      ex[t * k + i] = tid2eid[(int64_t)ids[t] * k + i];
      w[t * k + i] = s[(int64_t)ex[t * k + i]];
      sum += w[t * k + i];
    }
    for (int64_t i = 0; i < k; ++i) {
      if (norm) w[t * k + i] /= sum + 1e-20;
      w[t * k + i] *= scale;
    }
  }
  free(s);
}

START_TEST(test_hash_route_reads_tid2eid) {
  const hash_case cases[] = {{7, 16, 11, 6, SCORE_SQRT_SOFTPLUS, 1, 1.5},
                             {3, 8, 5, 2, SCORE_SOFTMAX, 0, 2.0},
                             {4, 10, 20, 3, SCORE_SIGMOID, 1, 1.0}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ++ci) {
    const hash_case *c = &cases[ci];
    tu_tensor in[3];
    make_hash_inputs(c, 500 + ci, in);
    double *L = tu_values(&in[0]), *ids = tu_values(&in[1]), *tab = tu_values(&in[2]);
    double *w = tu_dalloc(c->T * c->k), *ex = tu_dalloc(c->T * c->k);
    hash_route_d(c->kind, c->norm, c->scale, c->T, c->E, c->k, L, ids, tab, w, ex);
    want wv[] = {{w, c->T * c->k, TOL_ROUTE}, {ex, c->T * c->k, EXACT}};
    run_check(VNRT_OP_MOE_HASH_ROUTE, in, 3, hash_attrs(c), 3, 2, wv, NULL, NULL);
    free(L);
    free(ids);
    free(tab);
    free(w);
    free(ex);
    for (int i = 0; i < 3; ++i) tu_tensor_free(&in[i]);
  }
}
END_TEST

START_TEST(test_hash_route_rejects_out_of_range_ids) {
  const hash_case c = {4, 8, 10, 3, SCORE_SQRT_SOFTPLUS, 1, 1.5};
  tu_tensor in[3];
  make_hash_inputs(&c, 600, in);
  /* A token id past V (the last token, so earlier tokens would be written first). */
  tu_set(&in[1], 3, 12.0);
  const char *const n1[] = {"moe_hash_route", "out0", "12", "10", NULL};
  run_expect_error(VNRT_OP_MOE_HASH_ROUTE, in, 3, hash_attrs(&c), 3, 2, VNRT_ERROR_OUT_OF_RANGE,
                   n1);
  tu_set(&in[1], 3, -1.0);
  const char *const n2[] = {"moe_hash_route", "out0", "-1", "10", NULL};
  run_expect_error(VNRT_OP_MOE_HASH_ROUTE, in, 3, hash_attrs(&c), 3, 2, VNRT_ERROR_OUT_OF_RANGE,
                   n2);
  /* A valid token id whose table row names expert 9 of 8. */
  tu_set(&in[1], 3, 4.0);
  tu_set(&in[2], 4 * 3 + 1, 9.0);
  const char *const n3[] = {"moe_hash_route", "out0", "9", "8", NULL};
  run_expect_error(VNRT_OP_MOE_HASH_ROUTE, in, 3, hash_attrs(&c), 3, 2, VNRT_ERROR_OUT_OF_RANGE,
                   n3);
  for (int i = 0; i < 3; ++i) tu_tensor_free(&in[i]);
}
END_TEST

static void check_ffn(const ffn_case *c, uint64_t seed) {
  tu_tensor in[5];
  make_ffn_inputs(c, seed, in);
  double *x = tu_values(&in[0]), *ex = tu_values(&in[1]), *w = tu_values(&in[2]);
  double *wgu = tu_values(&in[3]), *wd = tu_values(&in[4]), *y = tu_dalloc(c->T * c->C);
  ffn_d(c->T, c->C, c->F, c->k, c->limit, x, ex, w, wgu, wd, y);
  if (c->limit > 0.0) {
    double *y0 = tu_dalloc(c->T * c->C);
    ffn_d(c->T, c->C, c->F, c->k, 0.0, x, ex, w, wgu, wd, y0);
    ck_assert_msg(tu_nmse_d(y0, y, c->T * c->C) > 1e-4, "limit %g clamps nothing here", c->limit);
    free(y0);
  }
  vnrt_attr attrs[] = {tu_attr_f("limit", c->limit)};
  want wv[] = {{y, c->T * c->C, tol_for(c->xdt, TOL_FFN)}};
  run_check(VNRT_OP_MOE_FFN, in, 5, attrs, c->limit != 0.0 ? 1 : 0, 1, wv, NULL, NULL);
  free(x);
  free(ex);
  free(w);
  free(wgu);
  free(wd);
  free(y);
  for (int i = 0; i < 5; ++i) tu_tensor_free(&in[i]);
}

START_TEST(test_ffn_f32_weights_no_limit) {
  ffn_case c = {5, 12, 6, 4, 2, 0.0, VNRT_F32, VNRT_F32, VNRT_F32, VNRT_F32};
  check_ffn(&c, 900);
  ffn_case odd = {1, 7, 5, 3, 3, 0.0, VNRT_F32, VNRT_F32, VNRT_F32, VNRT_F32};
  check_ffn(&odd, 901);
  ffn_case many = {37, 16, 8, 8, 6, 0.0, VNRT_F32, VNRT_F32, VNRT_F32, VNRT_F32};
  check_ffn(&many, 902);
}
END_TEST

START_TEST(test_ffn_low_precision_weights_and_limit) {
  const double limits[] = {0.0, 0.35};
  const vnrt_dtype wdts[] = {VNRT_F32, VNRT_F16, VNRT_BF16};
  for (size_t li = 0; li < 2; ++li) {
    for (size_t di = 0; di < 3; ++di) {
      ffn_case c = {6, 12, 10, 5, 3, limits[li], VNRT_F32, VNRT_F32, wdts[di], wdts[2 - di]};
      check_ffn(&c, 910 + li * 3 + di);
    }
  }
  /* Decode shapes (the per-slot GEMV path of a few tokens): several F blocks and blocks of
   * 128 outputs with a partial one, bf16 experts, the V4 clamp; then T = 3 and T = 4. */
  ffn_case dec = {1, 264, 48, 16, 6, 0.35, VNRT_F32, VNRT_F32, VNRT_BF16, VNRT_BF16};
  check_ffn(&dec, 930);
  ffn_case dec3 = {3, 136, 20, 8, 4, 0.35, VNRT_F32, VNRT_F32, VNRT_F16, VNRT_BF16};
  check_ffn(&dec3, 931);
  ffn_case dec4 = {4, 64, 24, 6, 6, 0.0, VNRT_BF16, VNRT_F32, VNRT_BF16, VNRT_F32};
  check_ffn(&dec4, 932);
  /* bf16 activations and weights, f16 combine weights. */
  ffn_case c = {4, 9, 6, 3, 2, 0.35, VNRT_BF16, VNRT_F16, VNRT_BF16, VNRT_F16};
  check_ffn(&c, 920);
}
END_TEST

START_TEST(test_ffn_rejects_out_of_range_expert) {
  ffn_case c = {3, 8, 4, 4, 2, 0.0, VNRT_F32, VNRT_F32, VNRT_F32, VNRT_F32};
  tu_tensor in[5];
  make_ffn_inputs(&c, 930, in);
  tu_set(&in[1], 5, 4.0); /* last token's last slot: expert 4 of 4 */
  const char *const n1[] = {"moe_ffn", "out0", "4", NULL};
  run_expect_error(VNRT_OP_MOE_FFN, in, 5, NULL, 0, 1, VNRT_ERROR_OUT_OF_RANGE, n1);
  tu_set(&in[1], 5, -3.0);
  const char *const n2[] = {"moe_ffn", "out0", "-3", NULL};
  run_expect_error(VNRT_OP_MOE_FFN, in, 5, NULL, 0, 1, VNRT_ERROR_OUT_OF_RANGE, n2);
  for (int i = 0; i < 5; ++i) tu_tensor_free(&in[i]);
}
END_TEST

static Suite *mhc_moe_suite(void) {
  Suite *s = suite_create("conformance_mhc_moe");
  TCase *mhc = tcase_create("mhc");
  tcase_add_test(mhc, test_hc_expand_copies_every_stream);
  tcase_add_test(mhc, test_hc_pre_fn_rows_are_pre_post_comb);
  tcase_add_test(mhc, test_hc_pre_odd_shapes_and_dtypes);
  tcase_add_test(mhc, test_sinkhorn_is_doubly_stochastic_after_20_iters);
  tcase_add_test(mhc, test_sinkhorn_exact_values_iters_1_and_3);
  tcase_add_test(mhc, test_hc_post_applies_comb_transposed);
  tcase_add_test(mhc, test_hc_head_collapses_with_sigmoid_weights);
  suite_add_tcase(s, mhc);
  TCase *moe = tcase_create("moe");
  tcase_add_test(moe, test_route_weights_are_unbiased_scores);
  tcase_add_test(moe, test_route_group_score_is_sum_of_top2);
  tcase_add_test(moe, test_route_deepseek_v3_config);
  tcase_add_test(moe, test_route_deepseek_v4_config);
  tcase_add_test(moe, test_route_softmax_odd_groups);
  tcase_add_test(moe, test_hash_route_reads_tid2eid);
  tcase_add_test(moe, test_hash_route_rejects_out_of_range_ids);
  tcase_add_test(moe, test_ffn_f32_weights_no_limit);
  tcase_add_test(moe, test_ffn_low_precision_weights_and_limit);
  tcase_add_test(moe, test_ffn_rejects_out_of_range_expert);
  suite_add_tcase(s, moe);
  return s;
}

int main(void) { return tu_run_suite(mhc_moe_suite()); }
