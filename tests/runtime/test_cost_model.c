/* The cost model (docs/ops.md, "Attribute limits and empty tensors"): per-op estimates against
 * hand-computed numbers, hostile graphs refused at compile time with the numbers in the
 * message, and the limit set through vnrt_plan_desc.max_work and $VNRT_MAX_RUN_WORK. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"
#include "test_util.h"

/* Compiles vnir text for the CPU with the given max_work; returns the status, and the plan's
 * work estimate and limit through the out-params when it compiles. */
static vnrt_status compile(vnrt_context *ctx, const char *text, uint64_t max_work,
                           uint64_t *out_work, uint64_t *out_limit) {
  vnrt_graph *g = NULL;
  vnrt_status st = vnrt_graph_parse(ctx, text, strlen(text), "cost", &g);
  if (st != VNRT_OK) ck_abort_msg("parse: %s", vnrt_context_last_error(ctx));
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan_desc desc = {.max_work = max_work};
  vnrt_plan *plan = NULL;
  st = vnrt_plan_create(ctx, g, cpu, &desc, &plan);
  vnrt_graph_destroy(g);
  if (st == VNRT_OK) {
    vnrt_plan_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    if (out_work) *out_work = info.work;
    if (out_limit) *out_limit = info.work_limit;
    vnrt_plan_destroy(plan);
  }
  return st;
}

/* The estimate of a graph that must compile under no limit. */
static uint64_t work_of(vnrt_context *ctx, const char *text) {
  uint64_t work = 0, limit = 0;
  vnrt_status st = compile(ctx, text, UINT64_MAX, &work, &limit);
  if (st != VNRT_OK) ck_abort_msg("compile: %s", vnrt_context_last_error(ctx));
  ck_assert_uint_eq(limit, UINT64_MAX);
  return work;
}

START_TEST(saturating_arithmetic_never_wraps) {
  ck_assert_uint_eq(vn_sat_add(UINT64_MAX - 1, 5), UINT64_MAX);
  ck_assert_uint_eq(vn_sat_add(3, 4), 7);
  ck_assert_uint_eq(vn_sat_mul(1ull << 40, 1ull << 40), UINT64_MAX);
  ck_assert_uint_eq(vn_sat_mul(0, UINT64_MAX), 0);
  ck_assert_uint_eq(vn_sat_mul(1ull << 31, 1ull << 32), 1ull << 63);
  vnrt_tensor_type t = {VNRT_F32, 3, {1ll << 40, 1ll << 40, 4}};
  ck_assert_uint_eq(vn_type_numel_sat(&t), UINT64_MAX);
  t.dims[1] = 0;
  ck_assert_uint_eq(vn_type_numel_sat(&t), 0);
  vnrt_tensor_type scalar = {VNRT_F32, 0, {0}};
  ck_assert_uint_eq(vn_type_numel_sat(&scalar), 1);
}
END_TEST

START_TEST(estimates_match_hand_computed_numbers) {
  vnrt_context *ctx = tu_context();
  /* work = arithmetic + every element of the inputs and results (docs/ops.md's table). */
  /* matmul [8,16]x[16,32]: 2*8*32*16 + (128 + 512 + 256). */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput a: f32[8, 16]\ninput b: f32[16, 32]\n"
                            "y = matmul(a, b)\noutput y\n"),
                    2 * 8 * 32 * 16 + 128 + 512 + 256);
  /* linear x[4,64], w[32,64]: 2*4*32*64 + (256 + 2048 + 128). */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput x: f32[4, 64]\nparam w: f32[32, 64]\n"
                            "y = linear(x, w)\noutput y\n"),
                    2 * 4 * 32 * 64 + 256 + 2048 + 128);
  /* grouped_linear x[2, 4*8], w[4*3, 8], G=4: 2 * (2*12) * 8 + (64 + 96 + 24). */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput x: f32[2, 32]\nparam w: f32[12, 8]\n"
                            "y = grouped_linear(x, w, groups=4)\noutput y\n"),
                    2 * 24 * 8 + 64 + 96 + 24);
  /* attention q[4,2,8], k[16,1,8], v[16,1,4]: 2*T*Hq*S*(D+Dv+2) + (64 + 128 + 64 + 32). */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput q: f32[4, 2, 8]\ninput k: f32[16, 1, 8]\n"
                            "input v: f32[16, 1, 4]\ny = attention(q, k, v)\noutput y\n"),
                    2 * 4 * 2 * 16 * (8 + 4 + 2) + 64 + 128 + 64 + 32);
  /* With window=4 each query sees at most 4 keys. */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput q: f32[4, 2, 8]\ninput k: f32[16, 1, 8]\n"
                            "input v: f32[16, 1, 4]\ny = attention(q, k, v, window=4)\n"
                            "output y\n"),
                    2 * 4 * 2 * 4 * (8 + 4 + 2) + 64 + 128 + 64 + 32);
  /* moe_ffn T=1, C=8, k=2, E=4, F=6: T*k*(6FC + 4F + 2C); only k of the E experts' weights. */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput x: f32[1, 8]\ninput e: i32[1, 2]\n"
                            "input w: f32[1, 2]\nparam gu: f32[4, 12, 8]\n"
                            "param dn: f32[4, 8, 6]\ny = moe_ffn(x, e, w, gu, dn)\noutput y\n"),
                    1 * 2 * (6 * 6 * 8 + 4 * 6 + 2 * 8) + 8 + 2 + 2 + 2 * 96 + 2 * 48 + 8);
  /* index_scores q[3,2,4], k[10,4], w[3,2]: 2*T*S*Hi*(Di+2) + (24 + 40 + 6 + 3 + 30). */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput q: f32[3, 2, 4]\ninput k: f32[10, 4]\n"
                            "input w: f32[3, 2]\ninput p: i32[3]\n"
                            "s = index_scores(q, k, w, p, ratio=4)\noutput s\n"),
                    2 * 3 * 10 * 2 * (4 + 2) + 24 + 40 + 6 + 3 + 30);
  /* topk x[3,10], k=4: numel(x)*(ceil(log2(5)) + 1) + (30 + 12 + 12). */
  ck_assert_uint_eq(work_of(ctx, "vnir 1\ninput x: f32[3, 10]\nv, i = topk(x, k=4)\noutput v, i\n"),
                    30 * (3 + 1) + 30 + 12 + 12);
  /* sparse_attention q[2,2,4], ring[8,4]: 4*T*H*W*(D+1) + (16 + 8 + 32 + 2 + 1 + 16); with an
   * HCA cache comp[5,4] the keys are W + Sc. */
  const char *sa =
      "vnir 1\ninput q: f32[2, 2, 4]\ninput kv: f32[2, 4]\ninput ring: f32[8, 4]\n"
      "param sinks: f32[2]\ninput pos0: i32[1]\n";
  char text[512];
  snprintf(text, sizeof text, "%so = sparse_attention(q, kv, ring, sinks, pos0)\noutput o\n", sa);
  ck_assert_uint_eq(work_of(ctx, text), 4 * 2 * 2 * 8 * 5 + 16 + 8 + 32 + 2 + 1 + 16);
  snprintf(text, sizeof text,
           "%sinput comp: f32[5, 4]\no = sparse_attention(q, kv, ring, sinks, pos0, comp, "
           "ratio=4)\noutput o\n",
           sa);
  ck_assert_uint_eq(work_of(ctx, text), 4 * 2 * 2 * 13 * 5 + 16 + 8 + 32 + 2 + 1 + 20 + 16);
  /* hc_pre X[2,4,8] (n 4, C 8), iters 20: T*(2(n+2)n^2 C + 4nC + 4(iters+1)n^2 + 8(n+2)n) +
   * (64 + 768 + 3 + 24 + 16 + 8 + 32). */
  ck_assert_uint_eq(
      work_of(ctx,
              "vnir 1\ninput X: f32[2, 4, 8]\nparam fn: f32[24, 32]\n"
              "param sc: f32[3]\nparam base: f32[24]\n"
              "x, post, comb = hc_pre(X, fn, sc, base)\n"
              "output x, post, comb\n"),
      2 * (2 * 6 * 16 * 8 + 4 * 4 * 8 + 4 * 21 * 16 + 8 * 6 * 4) + 64 + 768 + 3 + 24 + 16 + 8 + 32);
  /* kv_compress a[8,4], m 4, no overlap: 2 entries of width 4; 6*N*c*m*d + 2*numel(a) +
   * (32 + 32 + 16 + 16 + 16 + 1 + 8 + 2 + 16 + 16). */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput a: f32[8, 4]\ninput z: f32[8, 4]\n"
                            "param ape: f32[4, 4]\ninput sa: f32[4, 4]\n"
                            "input sz: f32[4, 4]\ninput p0: i32[1]\n"
                            "e, ep, sa2, sz2 = kv_compress(a, z, ape, sa, sz, p0, ratio=4)\n"
                            "output e, ep, sa2, sz2\n"),
                    6 * 2 * 1 * 4 * 4 + 2 * 32 + 32 + 32 + 16 + 16 + 16 + 1 + 8 + 2 + 16 + 16);
  /* Elementwise: one per result element; a chain sums its nodes. add [4,5]+[5], then relu. */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput a: f32[4, 5]\ninput b: f32[5]\n"
                            "s = add(a, b)\nr = relu(s)\noutput r\n"),
                    (20 + 20 + 5 + 20) + (20 + 20 + 20));
  /* Dead nodes do not run, so they cost nothing. */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput a: f32[4, 5]\ninput b: f32[5]\n"
                            "s = add(a, b)\nd = mul(a, a)\nr = relu(s)\noutput r\n"),
                    (20 + 20 + 5 + 20) + (20 + 20 + 20));
  /* An op whose results are empty costs nothing, whatever its other dims. */
  ck_assert_uint_eq(work_of(ctx,
                            "vnir 1\ninput a: f32[1000000000000, 0]\n"
                            "r = relu(a)\noutput r\n"),
                    0);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(hostile_graphs_are_refused_with_the_numbers) {
  vnrt_context *ctx = tu_context();
  /* 2*4096*1048576*4096 arithmetic + 16777216 + 2*4294967296 elements, under a 1e9 limit. */
  const char *mm =
      "vnir 1\ninput a: f32[4096, 4096]\nparam b: f32[4096, 1048576]\n"
      "y = matmul(a, b)\noutput y\n";
  ck_assert_int_eq(compile(ctx, mm, 1000000000, NULL, NULL), VNRT_ERROR_BUDGET_EXCEEDED);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "35192978800640 operations") != NULL, "%s", msg);
  ck_assert_msg(strstr(msg, "limit of 1000000000") != NULL, "%s", msg);
  ck_assert_msg(strstr(msg,
                       "'y' (matmul: 35192978800640 operations, 35184372088832 arithmetic "
                       "and 8606711808 elements moved)") != NULL,
                "%s", msg);
  ck_assert_msg(strstr(msg, "max_work") != NULL && strstr(msg, "VNRT_MAX_RUN_WORK") != NULL, "%s",
                msg);

  /* Under the built-in limit (1e17): a 1e6 x 1e6 x 1e6 matmul (2e18) and an attention over
   * 2^20 queries x 128 heads x 2^20 keys of width 512 (2.9e17) are refused before any memory
   * is allocated. */
  const char *big =
      "vnir 1\ninput a: f32[1000000, 1000000]\nparam b: f32[1000000, 1000000]\n"
      "h = relu(a)\ny = matmul(h, b)\noutput y\n";
  ck_assert_int_eq(compile(ctx, big, 0, NULL, NULL), VNRT_ERROR_BUDGET_EXCEEDED);
  msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "limit of 100000000000000000") != NULL, "%s", msg);
  ck_assert_msg(strstr(msg, "'y' (matmul: ") != NULL, "%s", msg);
  const char *att =
      "vnir 1\ninput q: f32[1048576, 128, 512]\ninput k: f32[1048576, 1, 512]\n"
      "input v: f32[1048576, 1, 512]\no = attention(q, k, v)\noutput o\n";
  ck_assert_int_eq(compile(ctx, att, 0, NULL, NULL), VNRT_ERROR_BUDGET_EXCEEDED);
  msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "'o' (attention: ") != NULL, "%s", msg);
  /* 2 * 2^20 * 128 * 2^20 * (512 + 512 + 2) arithmetic. */
  char want[64];
  snprintf(want, sizeof want, "%llu arithmetic", 2ull * 1048576 * 128 * 1048576 * (512 + 512 + 2));
  ck_assert_msg(strstr(msg, want) != NULL, "%s (want %s)", msg, want);

  /* An estimate beyond 64 bits saturates: it is refused under any limit below UINT64_MAX. */
  const char *huge =
      "vnir 1\ninput q: f32[1048576, 1024, 1024]\n"
      "input k: f32[1073741824, 1, 1024]\ninput v: f32[1073741824, 1, 1024]\n"
      "o = attention(q, k, v)\noutput o\n";
  ck_assert_int_eq(compile(ctx, huge, UINT64_MAX - 1, NULL, NULL), VNRT_ERROR_BUDGET_EXCEEDED);
  msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "18446744073709551615 operations") != NULL, "%s", msg);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(the_limit_comes_from_desc_then_env_then_default) {
  vnrt_context *ctx = tu_context();
  const char *mm =
      "vnir 1\ninput a: f32[8, 16]\ninput b: f32[16, 32]\ny = matmul(a, b)\n"
      "output y\n";
  const uint64_t work = 2 * 8 * 32 * 16 + 128 + 512 + 256;
  uint64_t w = 0, limit = 0;
  unsetenv("VNRT_MAX_RUN_WORK");
  ck_assert_int_eq(compile(ctx, mm, 0, &w, &limit), VNRT_OK);
  ck_assert_uint_eq(limit, 100000000000000000ull);
  ck_assert_uint_eq(w, work);
  /* Exactly at the limit compiles; one below refuses. */
  ck_assert_int_eq(compile(ctx, mm, work, &w, &limit), VNRT_OK);
  ck_assert_uint_eq(limit, work);
  ck_assert_int_eq(compile(ctx, mm, work - 1, NULL, NULL), VNRT_ERROR_BUDGET_EXCEEDED);

  setenv("VNRT_MAX_RUN_WORK", "1e3", 1);
  ck_assert_int_eq(compile(ctx, mm, 0, NULL, NULL), VNRT_ERROR_BUDGET_EXCEEDED);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), "limit of 1000 ") != NULL, "%s",
                vnrt_context_last_error(ctx));
  /* A NULL desc reads the environment too. */
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, mm, strlen(mm), "cost", &g));
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan *plan = NULL;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu, NULL, &plan), VNRT_ERROR_BUDGET_EXCEEDED);
  ck_assert_ptr_null(plan);
  vnrt_graph_destroy(g);
  setenv("VNRT_MAX_RUN_WORK", "20000", 1);
  ck_assert_int_eq(compile(ctx, mm, 0, &w, &limit), VNRT_OK);
  ck_assert_uint_eq(limit, 20000);
  /* The desc wins over the environment. */
  setenv("VNRT_MAX_RUN_WORK", "1000", 1);
  ck_assert_int_eq(compile(ctx, mm, 1000000, &w, &limit), VNRT_OK);
  ck_assert_uint_eq(limit, 1000000);
  /* A bad value is named. */
  const char *bad[] = {"lots", "-5", "0", "1e3x", "nan"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
    setenv("VNRT_MAX_RUN_WORK", bad[i], 1);
    ck_assert_int_eq(compile(ctx, mm, 0, NULL, NULL), VNRT_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(vnrt_context_last_error(ctx), "VNRT_MAX_RUN_WORK") != NULL, "%s",
                  vnrt_context_last_error(ctx));
  }
  unsetenv("VNRT_MAX_RUN_WORK");
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cost_model");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, saturating_arithmetic_never_wraps);
  tcase_add_test(tc, estimates_match_hand_computed_numbers);
  tcase_add_test(tc, hostile_graphs_are_refused_with_the_numbers);
  tcase_add_test(tc, the_limit_comes_from_desc_then_env_then_default);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
