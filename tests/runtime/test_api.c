/* The public API's contracts: contexts, allocators, logging, devices, and plan error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

START_TEST(version_and_status_strings) {
  int ma = -1, mi = -1, pa = -1;
  const char *v = vnrt_version(&ma, &mi, &pa);
  ck_assert_str_eq(v, "0.1.0");
  ck_assert_int_eq(ma, VNRT_VERSION_MAJOR);
  ck_assert_int_eq(mi, VNRT_VERSION_MINOR);
  ck_assert_int_eq(pa, VNRT_VERSION_PATCH);
  ck_assert_str_eq(vnrt_status_string(VNRT_ERROR_OUT_OF_RANGE), "VNRT_ERROR_OUT_OF_RANGE");
  ck_assert_str_eq(vnrt_status_string((vnrt_status)999), "VNRT_ERROR_UNKNOWN");
  ck_assert_str_eq(vnrt_dtype_name(VNRT_BF16), "bf16");
  ck_assert_uint_eq(vnrt_dtype_size(VNRT_F16), 2);
  ck_assert_uint_eq(vnrt_dtype_size((vnrt_dtype)42), 0);
}
END_TEST

START_TEST(half_conversions_round_to_nearest_even) {
  ck_assert_uint_eq(vnrt_f32_to_f16(1.0f), 0x3c00);
  ck_assert_uint_eq(vnrt_f32_to_f16(-2.0f), 0xc000);
  ck_assert_uint_eq(vnrt_f32_to_f16(65504.0f), 0x7bff);
  ck_assert_uint_eq(vnrt_f32_to_f16(65520.0f), 0x7c00);            /* rounds up to infinity */
  ck_assert_uint_eq(vnrt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);     /* tie -> even (down) */
  ck_assert_uint_eq(vnrt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie -> even (up) */
  ck_assert_uint_eq(vnrt_f32_to_f16(0x1p-24f), 0x0001);            /* smallest subnormal */
  ck_assert_uint_eq(vnrt_f32_to_f16(0x1p-26f), 0x0000);            /* below half of it */
  ck_assert(vnrt_f16_to_f32(0x0001) == 0x1p-24f);
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    ck_assert_uint_eq(vnrt_f32_to_f16(vnrt_f16_to_f32((uint16_t)h)), h); /* exact round trip */
  }
  ck_assert_uint_eq(vnrt_f32_to_bf16(1.0f), 0x3f80);
  ck_assert_uint_eq(vnrt_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie -> even */
  ck_assert_uint_eq(vnrt_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  ck_assert(vnrt_bf16_to_f32(0xc040) == -3.0f);
}
END_TEST

static char last_log[512];
static int log_calls;
static void capture_log(void *user, vnrt_log_level level, const char *msg) {
  (void)user, (void)level;
  log_calls++;
  snprintf(last_log, sizeof last_log, "%s", msg);
}

START_TEST(context_uses_the_host_allocator_and_frees_everything) {
  tu_alloc counts = {.countdown = -1};
  vnrt_context_desc desc = {0};
  desc.allocator = tu_allocator(&counts);
  desc.log_fn = capture_log;
  desc.no_plugins = 1;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&desc, &ctx), VNRT_OK);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 2, {2, 3}};
  vnrt_value x, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_EXP, &x, 1, NULL, 0, NULL, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, NULL, &plan));
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  ck_assert_int_gt(counts.total, 0);
  ck_assert_int_eq(counts.live, 0);
}
END_TEST

START_TEST(context_rejects_a_partial_allocator) {
  vnrt_context_desc desc = {0};
  tu_alloc unused = {.countdown = -1};
  desc.allocator.malloc_fn = tu_allocator(&unused).malloc_fn; /* only one of the three */
  vnrt_context *ctx = (vnrt_context *)&desc;                  /* must be overwritten with NULL */
  ck_assert_int_eq(vnrt_context_create(&desc, &ctx), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ctx);
  ck_assert_int_eq(vnrt_context_create(NULL, NULL), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_context_destroy(NULL); /* harmless */
}
END_TEST

START_TEST(devices_list_cpu_first_and_select_by_spec) {
  vnrt_context *ctx = tu_context();
  ck_assert_uint_ge(vnrt_device_count(ctx), 1);
  vnrt_device *d = NULL;
  TU_OK(ctx, vnrt_device_get(ctx, 0, &d));
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(d, &info));
  ck_assert_str_eq(info.backend, "cpu");
  ck_assert_str_eq(info.spec, "cpu");
  ck_assert_int_eq(info.type, VNRT_DEVICE_TYPE_CPU);
  ck_assert_uint_gt(info.memory_bytes, 0);
  ck_assert_uint_ge(info.compute_units, 1);

  vnrt_device *sel = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &sel));
  ck_assert_ptr_eq(sel, d);
  TU_OK(ctx, vnrt_device_select(ctx, "cpu:0", &sel));
  ck_assert_ptr_eq(sel, d);

  /* Every listed device is selectable by its own spec. */
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *di = NULL;
    TU_OK(ctx, vnrt_device_get(ctx, i, &di));
    TU_OK(ctx, vnrt_device_get_info(di, &info));
    TU_OK(ctx, vnrt_device_select(ctx, info.spec, &sel));
    ck_assert_ptr_eq(sel, di);
  }

  ck_assert_int_eq(vnrt_device_select(ctx, "nosuch", &sel), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(sel);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "nosuch"));
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "cpu")); /* lists what exists */
  ck_assert_int_eq(vnrt_device_select(ctx, "cpu:7", &sel), VNRT_ERROR_NOT_FOUND);
  ck_assert_int_eq(vnrt_device_select(ctx, "cpu:x", &sel), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_device_select(ctx, ":1", &sel), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_device_get(ctx, 9999, &sel), VNRT_ERROR_NOT_FOUND);

  /* VNRT_DEVICE drives automatic selection, and a bad value is named in the error. */
  setenv("VNRT_DEVICE", "cpu", 1);
  TU_OK(ctx, vnrt_device_select(ctx, NULL, &sel));
  ck_assert_ptr_eq(sel, d);
  setenv("VNRT_DEVICE", "bogus:3", 1);
  ck_assert_int_eq(vnrt_device_select(ctx, "auto", &sel), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "VNRT_DEVICE=bogus:3"));
  unsetenv("VNRT_DEVICE");
  TU_OK(ctx, vnrt_device_select(ctx, "", &sel));
  ck_assert_ptr_nonnull(sel);
  vnrt_context_destroy(ctx);
}
END_TEST

/* y = exp(x) + b over f32[2, 3]. */
static vnrt_graph *small_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 2, {2, 3}};
  vnrt_value x, b, e, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "b", &t, 1, &b));
  const char *en[1] = {"e"}, *yn[1] = {"y"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_EXP, &x, 1, NULL, 0, en, &e, 1));
  vnrt_value in[2] = {e, b};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, in, 2, NULL, 0, yn, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  return g;
}

START_TEST(plan_binding_errors_name_what_is_wrong) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = small_graph(ctx);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, NULL, &plan));
  vnrt_graph_destroy(g); /* the plan keeps what it needs */

  float x[6] = {0, 1, 2, -1, -2, 0.5f}, b[6] = {1, 1, 1, 1, 1, 1}, y[6];
  ck_assert_int_eq(vnrt_plan_set_input(plan, "nope", x, sizeof x), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "'nope'"));
  ck_assert_int_eq(vnrt_plan_set_input(plan, "e", x, sizeof x), VNRT_ERROR_NOT_FOUND);
  ck_assert_int_eq(vnrt_plan_set_input(plan, "x", x, 5 * sizeof(float)), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "f32[2, 3]"));
  ck_assert_int_eq(vnrt_plan_read_output(plan, "y", y, sizeof y), VNRT_ERROR_INVALID_ARGUMENT);

  TU_OK(ctx, vnrt_plan_set_input(plan, "x", x, sizeof x));
  ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "param 'b' is not bound"));
  TU_OK(ctx, vnrt_plan_set_input(plan, "b", b, sizeof b));
  TU_OK(ctx, vnrt_plan_run(plan));
  ck_assert_int_eq(vnrt_plan_read_output(plan, "y", y, 4), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_int_eq(vnrt_plan_read_output(plan, "e", y, sizeof y), VNRT_ERROR_NOT_FOUND);
  TU_OK(ctx, vnrt_plan_read_output(plan, "y", y, sizeof y));
  for (int i = 0; i < 6; ++i) ck_assert_double_eq_tol(y[i], exp((double)x[i]) + 1.0, 1e-6);

  /* A param stays bound across runs; an input can be rebound. */
  x[0] = 3.0f;
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", x, sizeof x));
  TU_OK(ctx, vnrt_plan_run(plan));
  TU_OK(ctx, vnrt_plan_read_output(plan, "y", y, sizeof y));
  ck_assert_double_eq_tol(y[0], exp(3.0) + 1.0, 1e-5);

  ck_assert_int_eq(vnrt_plan_output_count(plan), 1);
  ck_assert_str_eq(vnrt_plan_output_name(plan, 0), "y");
  ck_assert_ptr_null(vnrt_plan_output_name(plan, 1));
  vnrt_tensor_type t;
  TU_OK(ctx, vnrt_plan_input_type(plan, "b", &t));
  ck_assert_int_eq(t.rank, 2);
  vnrt_plan_destroy(plan);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(null_and_foreign_handles_are_errors_not_crashes) {
  vnrt_context *ctx = tu_context(), *other = tu_context();
  vnrt_graph *g = small_graph(ctx);
  vnrt_device *cpu_other = NULL;
  TU_OK(other, vnrt_device_select(other, "cpu", &cpu_other));
  vnrt_plan *plan = NULL;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu_other, NULL, &plan), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "another context"));
  ck_assert_int_eq(vnrt_plan_create(ctx, NULL, cpu_other, NULL, &plan),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_plan_run(NULL), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_plan_set_input(NULL, "x", NULL, 0), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_device_get_info(NULL, NULL), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_uint_eq(vnrt_device_count(NULL), 0);
  ck_assert_str_eq(vnrt_context_last_error(NULL), "");
  vnrt_plan_destroy(NULL);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(other);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(a_graph_without_outputs_is_rejected) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan *plan = NULL;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu, NULL, &plan), VNRT_ERROR_INVALID_GRAPH);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "no outputs"));
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(default_logger_is_silenced_below_warnings_and_custom_logger_receives) {
  vnrt_context_desc desc = {0};
  desc.log_fn = capture_log;
  desc.log_level = VNRT_LOG_DEBUG;
  desc.plugin_path = "/nonexistent-vnrt-dir"; /* a missing directory is not an error */
  vnrt_context *ctx = NULL;
  log_calls = 0;
  ck_assert_int_eq(vnrt_context_create(&desc, &ctx), VNRT_OK);
  ck_assert_uint_ge(vnrt_device_count(ctx), 1);
  const char *names[8];
  uint32_t nb = vnrt_backend_names(ctx, names, 8);
  ck_assert_uint_ge(nb, 1);
  ck_assert_str_eq(names[0], "cpu");
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("api");
  tcase_add_test(tc, version_and_status_strings);
  tcase_add_test(tc, half_conversions_round_to_nearest_even);
  tcase_add_test(tc, context_uses_the_host_allocator_and_frees_everything);
  tcase_add_test(tc, context_rejects_a_partial_allocator);
  tcase_add_test(tc, devices_list_cpu_first_and_select_by_spec);
  tcase_add_test(tc, plan_binding_errors_name_what_is_wrong);
  tcase_add_test(tc, null_and_foreign_handles_are_errors_not_crashes);
  tcase_add_test(tc, a_graph_without_outputs_is_rejected);
  tcase_add_test(tc, default_logger_is_silenced_below_warnings_and_custom_logger_receives);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
