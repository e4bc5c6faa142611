/* Binding quantized params: codes bind at their stored size (e2m1 two per byte), and a NaN e4m3
 * code or NaN e8m0 scale is a named error at bind time, with the param and the first offending
 * index; a wrong byte count names the param and its type. */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

static const char kGraph[] =
    "vnir 1\n"
    "input x: f32[2, 64]\n"
    "param w: e4m3[4, 64]\n"
    "param w_scale: e8m0[1, 1]\n"
    "param e: e2m1[4, 64]\n"
    "param e_scale: e8m0[4, 2]\n"
    "y = linear(x, w, w_scale)\n"
    "z = linear(x, e, e_scale)\n"
    "output y, z\n";

static vnrt_plan *make_plan(vnrt_context *ctx, vnrt_graph **out_graph) {
  TU_OK(ctx, vnrt_graph_parse(ctx, kGraph, strlen(kGraph), "quant.vnir", out_graph));
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &dev));
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, *out_graph, dev, NULL, &plan));
  return plan;
}

static void expect_error(vnrt_context *ctx, vnrt_status got, vnrt_status want,
                         const char *const *words) {
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(got == want, "expected %s, got %s: %s", vnrt_status_string(want),
                vnrt_status_string(got), msg);
  for (; *words; words++)
    ck_assert_msg(strstr(msg, *words) != NULL, "message lacks '%s': %s", *words, msg);
}

#define EXPECT_ERROR(ctx, expr, want, ...)            \
  do {                                                \
    const char *const words_[] = {__VA_ARGS__, NULL}; \
    expect_error(ctx, (expr), want, words_);          \
  } while (0)

START_TEST(codes_bind_at_stored_size) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g;
  vnrt_plan *plan = make_plan(ctx, &g);
  vnrt_tensor_type t;
  TU_OK(ctx, vnrt_plan_input_type(plan, "e", &t));
  ck_assert_int_eq(t.dtype, VNRT_E2M1);
  ck_assert_uint_eq(vnrt_tensor_type_bytes(&t), 128); /* 4 x 64 nibbles */
  uint8_t w[256], e[128], s[8] = {127, 0, 254, 1, 2, 3, 4, 5};
  /* Every e4m3 code but the two NaNs; every e2m1 byte (e2m1 has no NaN). */
  for (int i = 0; i < 256; i++) w[i] = (uint8_t)((i & 0x7F) == 0x7F ? 0 : i);
  for (int i = 0; i < 128; i++) e[i] = (uint8_t)(i * 2 + 1);
  e[0] = 0xFF;
  TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w));
  TU_OK(ctx, vnrt_plan_set_input(plan, "w_scale", s, 1));
  TU_OK(ctx, vnrt_plan_set_input(plan, "e", e, sizeof e));
  TU_OK(ctx, vnrt_plan_set_input(plan, "e_scale", s, sizeof s));
  /* Widened or unpacked data is the wrong size: named with the param's type. */
  EXPECT_ERROR(ctx, vnrt_plan_set_input(plan, "e", w, sizeof w), VNRT_ERROR_SHAPE_MISMATCH,
               "param 'e'", "e2m1[4, 64]", "128 bytes", "256 bytes were given");
  EXPECT_ERROR(ctx, vnrt_plan_set_input(plan, "w_scale", s, 2), VNRT_ERROR_SHAPE_MISMATCH,
               "param 'w_scale'", "e8m0[1, 1]");
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(nan_codes_fail_at_bind) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g;
  vnrt_plan *plan = make_plan(ctx, &g);
  uint8_t w[256] = {0};
  w[70] = 0xFF; /* row 1, column 6 */
  w[200] = 0x7F;
  EXPECT_ERROR(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w), VNRT_ERROR_INVALID_ARGUMENT,
               "param 'w'", "NaN e4m3 code", "index 70 [1, 6]", "0xFF");
  w[70] = 0x7E; /* 448: fine */
  EXPECT_ERROR(ctx, vnrt_plan_set_input_ref(plan, "w", w, sizeof w), VNRT_ERROR_INVALID_ARGUMENT,
               "param 'w'", "index 200 [3, 8]", "0x7F");
  w[200] = 0xFE;
  TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w));
  uint8_t s[8] = {127, 127, 127, 127, 127, 255, 127, 255};
  EXPECT_ERROR(ctx, vnrt_plan_set_input(plan, "e_scale", s, sizeof s), VNRT_ERROR_INVALID_ARGUMENT,
               "param 'e_scale'", "NaN e8m0 scale", "index 5 [2, 1]", "255 is NaN");
  s[5] = s[7] = 254;
  TU_OK(ctx, vnrt_plan_set_input(plan, "e_scale", s, sizeof s));
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("quant_bind");
  TCase *tc = tcase_create("quant_bind");
  tcase_add_test(tc, codes_bind_at_stored_size);
  tcase_add_test(tc, nan_codes_fail_at_bind);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
