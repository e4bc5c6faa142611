/* Plans sharing params (vnrt_plan_create_shared): a "prefill" and a "decode" graph of one model
 * on every device give results bit-identical to unshared plans and to a double-precision
 * reference; a binding through either plan is seen by both; either may be destroyed first;
 * mismatched, streamed and other-device params are not shared and still work. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "test_util.h"

enum { C = 64, TP = 8, TD = 1, H = C / 2 };

/* y = linear(tanh(linear(x, w0)), w1) and z = linear(x, odd) for x[T, C]: w0, w1 [C, C] are
 * the same in both graphs; odd is [C, C] in the prefill graph and [H, C] in the decode one. */
static vnrt_graph *make_graph(vnrt_context *ctx, int64_t t, int64_t odd_rows) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {t, C}}, tw = {VNRT_F32, 2, {C, C}};
  vnrt_tensor_type to = {VNRT_F32, 2, {odd_rows, C}};
  vnrt_value x, w0, w1, odd, out[4];
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "w0", &tw, 1, &w0));
  TU_OK(ctx, vnrt_graph_add_input(g, "w1", &tw, 1, &w1));
  TU_OK(ctx, vnrt_graph_add_input(g, "odd", &to, 1, &odd));
  const char *n_lin[1] = {"lin"}, *n_h[1] = {"h"}, *n_y[1] = {"y"}, *n_z[1] = {"z"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){x, w0}, 2, NULL, 0, n_lin,
                                 &out[0], 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_TANH, &out[0], 1, NULL, 0, n_h, &out[1], 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){out[1], w1}, 2, NULL, 0, n_y,
                                 &out[2], 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){x, odd}, 2, NULL, 0, n_z,
                                 &out[3], 1));
  TU_OK(ctx, vnrt_graph_add_output(g, out[2]));
  TU_OK(ctx, vnrt_graph_add_output(g, out[3]));
  return g;
}

static float w0[C * C], w1[C * C], w1b[C * C], oddp[C * C], oddd[H * C], xp[TP * C], xd[TD * C];

static void make_data(void) {
  float *all[] = {w0, w1, w1b, oddp, oddd, xp, xd};
  size_t n[] = {C * C, C * C, C * C, C * C, H * C, TP * C, TD * C};
  for (int k = 0; k < 7; ++k) {
    tu_tensor t = tu_tensor_new(VNRT_F32, 1, (int64_t[]){(int64_t)n[k]});
    tu_fill_uniform(&t, 100 + (uint64_t)k, -0.25f, 0.25f);
    memcpy(all[k], t.data, n[k] * sizeof(float));
    tu_tensor_free(&t);
  }
}

/* y and z of x[t, C] in double precision. */
static void reference(const float *x, int64_t t, const float *wa, const float *wb, const float *odd,
                      int64_t odd_rows, double *y, double *z) {
  double h[TP * C];
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t n = 0; n < C; ++n) {
      double s = 0;
      for (int64_t k = 0; k < C; ++k) s += (double)x[i * C + k] * wa[n * C + k];
      h[i * C + n] = tanh(s);
    }
    for (int64_t n = 0; n < C; ++n) {
      double s = 0;
      for (int64_t k = 0; k < C; ++k) s += h[i * C + k] * wb[n * C + k];
      y[i * C + n] = s;
    }
    for (int64_t n = 0; n < odd_rows; ++n) {
      double s = 0;
      for (int64_t k = 0; k < C; ++k) s += (double)x[i * C + k] * odd[n * C + k];
      z[i * odd_rows + n] = s;
    }
  }
}

typedef struct result {
  float y[TP * C], z[TP * C];
} result;

static void bind(vnrt_context *ctx, vnrt_plan *p, const char *name, const float *data,
                 size_t count) {
  TU_OK(ctx, vnrt_plan_set_input(p, name, data, count * sizeof(float)));
}

/* Binds the prefill plan p's weights (w0 and w1 are shared with d through it) and each plan's
 * own "odd", whose shapes differ. */
static void bind_pair(vnrt_context *ctx, vnrt_plan *p, vnrt_plan *d) {
  bind(ctx, p, "w0", w0, C * C);
  bind(ctx, p, "w1", w1, C * C);
  bind(ctx, p, "odd", oddp, C * C);
  bind(ctx, d, "odd", oddd, H * C);
}

/* Runs p on x and reads y and z. */
static void run(vnrt_context *ctx, vnrt_plan *p, const float *x, int64_t t, int64_t odd_rows,
                result *r) {
  memset(r, 0, sizeof *r);
  bind(ctx, p, "x", x, (size_t)(t * C));
  TU_OK(ctx, vnrt_plan_run(p));
  TU_OK(ctx, vnrt_plan_read_output(p, "y", r->y, (size_t)(t * C) * sizeof(float)));
  TU_OK(ctx, vnrt_plan_read_output(p, "z", r->z, (size_t)(t * odd_rows) * sizeof(float)));
}

/* The outputs of an unshared plan of g on dev with every param bound. */
static void unshared(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev, const float *wb,
                     const float *odd, int64_t odd_rows, const float *x, int64_t t, result *r,
                     vnrt_plan_info *info) {
  vnrt_plan *p = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &p));
  bind(ctx, p, "w0", w0, C * C);
  bind(ctx, p, "w1", wb, C * C);
  bind(ctx, p, "odd", odd, (size_t)(odd_rows * C));
  run(ctx, p, x, t, odd_rows, r);
  if (info) TU_OK(ctx, vnrt_plan_get_info(p, info));
  vnrt_plan_destroy(p);
}

/* Bit-identical to the unshared run, and within tolerance of the reference. */
static void check(const result *got, const result *want, const float *x, int64_t t, const float *wb,
                  const float *odd, int64_t odd_rows, const char *what) {
  ck_assert_msg(memcmp(got->y, want->y, (size_t)(t * C) * sizeof(float)) == 0,
                "%s: y differs from the unshared plan's", what);
  ck_assert_msg(memcmp(got->z, want->z, (size_t)(t * odd_rows) * sizeof(float)) == 0,
                "%s: z differs from the unshared plan's", what);
  double y[TP * C], z[TP * C];
  reference(x, t, w0, wb, odd, odd_rows, y, z);
  for (int64_t i = 0; i < t * C; ++i) {
    ck_assert_msg(fabs(got->y[i] - y[i]) <= 1e-3 + 1e-3 * fabs(y[i]), "%s: y[%lld] = %g, want %g",
                  what, (long long)i, (double)got->y[i], y[i]);
  }
  for (int64_t i = 0; i < t * odd_rows; ++i) {
    ck_assert_msg(fabs(got->z[i] - z[i]) <= 1e-3 + 1e-3 * fabs(z[i]), "%s: z[%lld] = %g, want %g",
                  what, (long long)i, (double)got->z[i], z[i]);
  }
}

/* Runs the prefill plan p (or the decode plan d) on its inputs and checks it against the
 * unshared plan's results and the reference, with w1 as the second weight. */
static void run_prefill(vnrt_context *ctx, vnrt_plan *p, const result *want, const char *what) {
  result got;
  run(ctx, p, xp, TP, C, &got);
  check(&got, want, xp, TP, w1, oddp, C, what);
}

static void run_decode(vnrt_context *ctx, vnrt_plan *d, const result *want, const char *what) {
  result got;
  run(ctx, d, xd, TD, H, &got);
  check(&got, want, xd, TD, w1, oddd, H, what);
}

static const uint64_t W_BYTES = (uint64_t)C * C * sizeof(float);

/* Every test: a context, the data, and the prefill and decode graphs (a checked fixture). */
static vnrt_context *g_ctx;
static vnrt_graph *g_gp, *g_gd;

static void setup(void) {
  g_ctx = tu_context();
  make_data();
  g_gp = make_graph(g_ctx, TP, C);
  g_gd = make_graph(g_ctx, TD, H);
}

static void teardown(void) {
  vnrt_graph_destroy(g_gp);
  vnrt_graph_destroy(g_gd);
  vnrt_context_destroy(g_ctx);
}

START_TEST(test_shared_equals_unshared) {
  for (int32_t di = 0; di < tu_device_count(g_ctx); ++di) {
    vnrt_device *dev = tu_device(g_ctx, di);
    const char *spec = tu_device_spec(dev);
    result want_p, want_d, want_p2, got;
    vnrt_plan_info info_d = {.struct_size = sizeof info_d};
    unshared(g_ctx, g_gp, dev, w1, oddp, C, xp, TP, &want_p, NULL);
    unshared(g_ctx, g_gd, dev, w1, oddd, H, xd, TD, &want_d, &info_d);
    unshared(g_ctx, g_gp, dev, w1b, oddp, C, xp, TP, &want_p2, NULL);

    vnrt_plan *p = NULL, *d = NULL, *e = NULL;
    TU_OK(g_ctx, vnrt_plan_create(g_ctx, g_gp, dev, NULL, &p));
    TU_OK(g_ctx, vnrt_plan_create_shared(g_ctx, g_gd, dev, NULL, p, &d));
    /* w0 and w1 are shared; odd differs in shape and is the decode plan's own. */
    ck_assert_int_eq(d->n_shared, 2);
    ck_assert_uint_eq(d->shared_bytes, 2 * W_BYTES);
    vnrt_plan_info info = {.struct_size = sizeof info};
    TU_OK(g_ctx, vnrt_plan_get_info(d, &info));
    ck_assert_uint_eq(info.device_bytes + 2 * W_BYTES, info_d.device_bytes);
    ck_assert_uint_eq(info.weight_bytes, info_d.weight_bytes);
    /* Weights bound once, through the prefill plan; decode's own odd through decode. */
    bind_pair(g_ctx, p, d);
    run_decode(g_ctx, d, &want_d, spec);
    run_prefill(g_ctx, p, &want_p, spec);
    /* A plan sharing with a sharing plan reaches the same memory (w0, w1; odd is [H, C] there). */
    TU_OK(g_ctx, vnrt_plan_create_shared(g_ctx, g_gp, dev, NULL, d, &e));
    ck_assert_int_eq(e->n_shared, 2);
    bind(g_ctx, e, "odd", oddp, C * C);
    run(g_ctx, e, xp, TP, C, &got);
    check(&got, &want_p, xp, TP, w1, oddp, C, spec);
    /* Rebinding through the decode plan is seen by the prefill plan and the chained one. */
    bind(g_ctx, d, "w1", w1b, C * C);
    run(g_ctx, p, xp, TP, C, &got);
    check(&got, &want_p2, xp, TP, w1b, oddp, C, spec);
    run(g_ctx, e, xp, TP, C, &got);
    check(&got, &want_p2, xp, TP, w1b, oddp, C, spec);
    vnrt_plan_destroy(e);
    vnrt_plan_destroy(d);
    vnrt_plan_destroy(p);
  }
}
END_TEST

/* A param bound through neither plan is unbound in both: the run names it. */
START_TEST(test_unbound_shared) {
  vnrt_plan *p = NULL, *d = NULL;
  TU_OK(g_ctx, vnrt_plan_create(g_ctx, g_gp, tu_device(g_ctx, 0), NULL, &p));
  TU_OK(g_ctx, vnrt_plan_create_shared(g_ctx, g_gd, tu_device(g_ctx, 0), NULL, p, &d));
  bind(g_ctx, p, "w0", w0, C * C);
  bind(g_ctx, d, "odd", oddd, H * C);
  bind(g_ctx, d, "x", xd, TD * C);
  ck_assert_int_eq(vnrt_plan_run(d), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(g_ctx), "'w1' is not bound"));
  bind(g_ctx, d, "w1", w1, C * C);
  TU_OK(g_ctx, vnrt_plan_run(d));
  bind(g_ctx, p, "odd", oddp, C * C);
  bind(g_ctx, p, "x", xp, TP * C);
  TU_OK(g_ctx, vnrt_plan_run(p)); /* w1 bound through d */
  vnrt_plan_destroy(d);
  vnrt_plan_destroy(p);
}
END_TEST

/* Either plan may go first: the other keeps running on the shared memory (ASan/valgrind see
 * no use after free). */
START_TEST(test_destroy_order) {
  for (int32_t di = 0; di < tu_device_count(g_ctx); ++di) {
    vnrt_device *dev = tu_device(g_ctx, di);
    const char *spec = tu_device_spec(dev);
    result want_p, want_d;
    unshared(g_ctx, g_gp, dev, w1, oddp, C, xp, TP, &want_p, NULL);
    unshared(g_ctx, g_gd, dev, w1, oddd, H, xd, TD, &want_d, NULL);
    for (int order = 0; order < 2; ++order) {
      vnrt_plan *p = NULL, *d = NULL;
      TU_OK(g_ctx, vnrt_plan_create(g_ctx, g_gp, dev, NULL, &p));
      TU_OK(g_ctx, vnrt_plan_create_shared(g_ctx, g_gd, dev, NULL, p, &d));
      bind_pair(g_ctx, p, d);
      if (order == 0) {
        vnrt_plan_destroy(p);
        run_decode(g_ctx, d, &want_d, spec);
        vnrt_plan_destroy(d);
      } else {
        vnrt_plan_destroy(d);
        run_prefill(g_ctx, p, &want_p, spec);
        vnrt_plan_destroy(p);
      }
    }
  }
}
END_TEST

/* A param the source plan streams (over its device memory limit) is not shared; the sharing
 * plan's own limit does not count shared params, which it never streams. */
START_TEST(test_streamed_not_shared) {
  for (int32_t di = 0; di < tu_device_count(g_ctx); ++di) {
    vnrt_device *dev = tu_device(g_ctx, di);
    const char *spec = tu_device_spec(dev);
    result want_p, want_d;
    vnrt_plan_info full_p = {.struct_size = sizeof full_p}, full_d = {.struct_size = sizeof full_d};
    unshared(g_ctx, g_gp, dev, w1, oddp, C, xp, TP, &want_p, &full_p);
    unshared(g_ctx, g_gd, dev, w1, oddd, H, xd, TD, &want_d, &full_d);
    /* Under its need: the prefill plan streams params (largest first) until it fits. */
    vnrt_plan_desc dp = {0};
    dp.device_memory_limit = full_p.device_bytes - 1;
    dp.prefetch_depth = 1;
    vnrt_plan *p = NULL, *d = NULL;
    TU_OK(g_ctx, vnrt_plan_create(g_ctx, g_gp, dev, &dp, &p));
    vnrt_plan_info ip = {.struct_size = sizeof ip};
    TU_OK(g_ctx, vnrt_plan_get_info(p, &ip));
    ck_assert_int_ge(ip.n_streamed_params, 1);
    bool p_streams_w0 = p->vals[vnrt_graph_find(p->graph, "w0")].streamed;
    bool p_streams_w1 = p->vals[vnrt_graph_find(p->graph, "w1")].streamed;
    ck_assert_msg(p_streams_w0 && !p_streams_w1, "%s: the test expects w0 streamed, w1 not", spec);
    /* The decode plan's limit: its unshared need less the shared w1, so that only with w1
     * shared (and not counted) does it fit with nothing streamed. */
    vnrt_plan_desc dd = {0};
    dd.device_memory_limit = full_d.device_bytes - W_BYTES;
    TU_OK(g_ctx, vnrt_plan_create_shared(g_ctx, g_gd, dev, &dd, p, &d));
    ck_assert_int_eq(d->n_shared, 1);
    int32_t d_w0 = vnrt_graph_find(d->graph, "w0"), d_w1 = vnrt_graph_find(d->graph, "w1");
    ck_assert_int_lt(d->vals[d_w0].share.store, 0);
    ck_assert_int_ge(d->vals[d_w1].share.store, 0);
    vnrt_plan_info id = {.struct_size = sizeof id};
    TU_OK(g_ctx, vnrt_plan_get_info(d, &id));
    ck_assert_int_eq(id.n_streamed_params, 0);
    bind_pair(g_ctx, p, d);
    /* w0 is not shared: decode's own copy is unbound until bound through decode. */
    bind(g_ctx, d, "x", xd, TD * C);
    ck_assert_int_eq(vnrt_plan_run(d), VNRT_ERROR_INVALID_ARGUMENT);
    bind(g_ctx, d, "w0", w0, C * C);
    run_decode(g_ctx, d, &want_d, spec);
    run_prefill(g_ctx, p, &want_p, spec);
    vnrt_plan_destroy(p);
    vnrt_plan_destroy(d);
  }
}
END_TEST

/* Plans for different devices share nothing; NULL share_params_with is vnrt_plan_create. */
START_TEST(test_other_device_and_null) {
  int32_t n = tu_device_count(g_ctx);
  for (int32_t di = 0; di < n; ++di) {
    vnrt_device *dev = tu_device(g_ctx, di), *other = tu_device(g_ctx, (di + 1) % n);
    result want_d, got;
    vnrt_plan_info full_d = {.struct_size = sizeof full_d};
    unshared(g_ctx, g_gd, other, w1, oddd, H, xd, TD, &want_d, &full_d);
    vnrt_plan *p = NULL, *d = NULL;
    TU_OK(g_ctx, vnrt_plan_create(g_ctx, g_gp, dev, NULL, &p));
    TU_OK(g_ctx, vnrt_plan_create_shared(g_ctx, g_gd, other, NULL, other == dev ? NULL : p, &d));
    ck_assert_int_eq(d->n_shared, 0);
    vnrt_plan_info id = {.struct_size = sizeof id};
    TU_OK(g_ctx, vnrt_plan_get_info(d, &id));
    ck_assert_uint_eq(id.device_bytes, full_d.device_bytes);
    bind(g_ctx, p, "w0", w0, C * C);
    bind(g_ctx, p, "w1", w1, C * C);
    bind(g_ctx, d, "odd", oddd, H * C);
    bind(g_ctx, d, "x", xd, TD * C);
    ck_assert_int_eq(vnrt_plan_run(d), VNRT_ERROR_INVALID_ARGUMENT); /* w0: its own, unbound */
    bind(g_ctx, d, "w0", w0, C * C);
    bind(g_ctx, d, "w1", w1, C * C);
    run(g_ctx, d, xd, TD, H, &got);
    check(&got, &want_d, xd, TD, w1, oddd, H, tu_device_spec(other));
    vnrt_plan_destroy(p);
    vnrt_plan_destroy(d);
  }
}
END_TEST

START_TEST(test_bad_arguments) {
  vnrt_context *ctx2 = tu_context();
  vnrt_graph *g2 = make_graph(ctx2, TD, H);
  vnrt_device *dev = tu_device(g_ctx, 0);
  vnrt_plan *p = NULL, *d = (vnrt_plan *)&d, *p2 = NULL;
  TU_OK(g_ctx, vnrt_plan_create(g_ctx, g_gp, dev, NULL, &p));
  ck_assert_int_eq(vnrt_plan_create_shared(g_ctx, NULL, dev, NULL, p, &d),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(d);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(g_ctx), "vnrt_plan_create_shared: NULL"));
  ck_assert_int_eq(vnrt_plan_create_shared(g_ctx, g_gd, NULL, NULL, p, &d),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_plan_create_shared(g_ctx, g_gd, dev, NULL, p, NULL),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_plan_create_shared(NULL, g_gd, dev, NULL, p, &d),
                   VNRT_ERROR_INVALID_ARGUMENT);
  /* A plan of another context. */
  TU_OK(ctx2, vnrt_plan_create(ctx2, g2, tu_device(ctx2, 0), NULL, &p2));
  ck_assert_int_eq(vnrt_plan_create_shared(g_ctx, g_gd, dev, NULL, p2, &d),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(d);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(g_ctx), "another context"));
  vnrt_plan_destroy(p2);
  vnrt_plan_destroy(p);
  vnrt_graph_destroy(g2);
  vnrt_context_destroy(ctx2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("share");
  TCase *tc = tcase_create("share");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_shared_equals_unshared);
  tcase_add_test(tc, test_unbound_shared);
  tcase_add_test(tc, test_destroy_order);
  tcase_add_test(tc, test_streamed_not_shared);
  tcase_add_test(tc, test_other_device_and_null);
  tcase_add_test(tc, test_bad_arguments);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
