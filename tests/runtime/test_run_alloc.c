/* docs/api.md: "Running a plan does not allocate". A context with a counting allocator compiles
 * a small decode-like graph (a linear, a softmax, a KV-cache state written in place, a state
 * updated by copy, a CPU-fallback-free chain) on every device; after a warm-up run, further
 * runs, input binds and output reads must not allocate host memory through the context's
 * allocator. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"

static const char k_graph[] =
    "vnir 1\n"
    "input x: f32[2, 64]\n"
    "input pos: i32[1]\n"
    "param w: f32[32, 64]\n"
    "state cache: f32[16, 32]\n"
    "state acc: f32[2, 32]\n"
    "h = linear(x, w)\n"
    "p = softmax(h)\n"
    "c2 = kv_write(cache, p, pos)\n"
    "a2 = add(acc, p)\n"
    "update cache = c2\n"
    "update acc = a2\n"
    "output p\n";

START_TEST(runs_do_not_allocate_on_any_device) {
  tu_alloc counts = {.countdown = -1};
  vnrt_context_desc d = {.allocator = tu_allocator(&counts), .num_threads = 2};
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_graph *g = NULL;
  ck_assert_int_eq(vnrt_graph_parse(ctx, k_graph, strlen(k_graph), "run_alloc", &g), VNRT_OK);
  float x[2 * 64], w[32 * 64], p[2 * 32];
  for (int i = 0; i < 2 * 64; ++i) x[i] = (float)(i % 7) * 0.1f;
  for (int i = 0; i < 32 * 64; ++i) w[i] = (float)(i % 11) * 0.01f;
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    vnrt_device *dev = tu_device(ctx, i);
    vnrt_plan *plan = NULL;
    vnrt_plan_desc pd = {.no_fallback = 1};
    ck_assert_int_eq(vnrt_plan_create(ctx, g, dev, &pd, &plan), VNRT_OK);
    ck_assert_int_eq(vnrt_plan_set_input(plan, "w", w, sizeof w), VNRT_OK);
    int32_t pos = 0;
    ck_assert_int_eq(vnrt_plan_set_input(plan, "x", x, sizeof x), VNRT_OK);
    ck_assert_int_eq(vnrt_plan_set_input(plan, "pos", &pos, sizeof pos), VNRT_OK);
    ck_assert_int_eq(vnrt_plan_run(plan), VNRT_OK); /* warm-up */
    ck_assert_int_eq(vnrt_plan_read_output(plan, "p", p, sizeof p), VNRT_OK);
    const long before = counts.total;
    for (pos = 2; pos < 12; pos += 2) {
      ck_assert_int_eq(vnrt_plan_set_input(plan, "x", x, sizeof x), VNRT_OK);
      ck_assert_int_eq(vnrt_plan_set_input(plan, "pos", &pos, sizeof pos), VNRT_OK);
      ck_assert_int_eq(vnrt_plan_run(plan), VNRT_OK);
      ck_assert_int_eq(vnrt_plan_read_output(plan, "p", p, sizeof p), VNRT_OK);
    }
    ck_assert_msg(counts.total == before, "%s: 5 runs made %ld host allocations",
                  tu_device_spec(dev), counts.total - before);
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(counts.live, 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("run_alloc");
  TCase *tc = tcase_create("run_alloc");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, runs_do_not_allocate_on_any_device);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
