/* Conformance: ops on zero-element tensors with a huge other dim (f32[1000000000000, 0]) on
 * every device. Such a tensor passes the element limit; a kernel that looped over its outer dims
 * would run for minutes (issue 17, item 1). docs/ops.md, "Attribute limits and empty tensors":
 * each op infers the right (empty) result type and returns at once. There is no timing
 * assertion: a regression shows as this test's meson timeout (tests/conformance/meson.build). */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#define BIG 1000000000000LL /* 1e12 */

static tu_tensor tensor(vnrt_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2) {
  int64_t dims[3] = {d0, d1, d2};
  return tu_tensor_new(dt, rank, dims);
}

/* Runs op on every device and checks that result 0..n_out-1 have exactly the dims in
 * want[o] (rank want_rank[o]) and no elements. */
static void check_empty(const char *what, vnrt_op op, const tu_tensor *ins, int32_t n_in,
                        const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out,
                        const int32_t *want_rank, const int64_t (*want)[3]) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = tu_op_graph(ctx, op, ins, n_in, attrs, n_attrs, n_out);
  int32_t n_dev = tu_device_count(ctx);
  ck_assert_int_ge(n_dev, 1);
  for (int32_t d = 0; d < n_dev; ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    tu_tensor outs[2];
    vnrt_status s = tu_run(ctx, g, dev, ins, n_in, outs, n_out);
    ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", what, tu_device_spec(dev),
                  vnrt_status_string(s), vnrt_context_last_error(ctx));
    for (int32_t o = 0; o < n_out; ++o) {
      ck_assert_msg(outs[o].type.rank == want_rank[o], "%s on %s: result %d has rank %d, want %d",
                    what, tu_device_spec(dev), o, outs[o].type.rank, want_rank[o]);
      for (int32_t k = 0; k < want_rank[o]; ++k) {
        ck_assert_msg(outs[o].type.dims[k] == want[o][k],
                      "%s on %s: result %d dim %d is %lld, want %lld", what, tu_device_spec(dev), o,
                      k, (long long)outs[o].type.dims[k], (long long)want[o][k]);
      }
      ck_assert_msg(tu_numel(&outs[o]) == 0, "%s on %s: result %d has %lld elements", what,
                    tu_device_spec(dev), o, (long long)tu_numel(&outs[o]));
      tu_tensor_free(&outs[o]);
    }
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

static void check_empty1(const char *what, vnrt_op op, const tu_tensor *ins, int32_t n_in,
                         const vnrt_attr *attrs, int32_t n_attrs, int32_t rank, int64_t d0,
                         int64_t d1, int64_t d2) {
  const int32_t r[1] = {rank};
  const int64_t w[1][3] = {{d0, d1, d2}};
  check_empty(what, op, ins, n_in, attrs, n_attrs, 1, r, w);
}

START_TEST(test_empty_engram_gate) {
  /* h, k [T, M, 0], v [T, 0], wh, wk [M, 0]: T * M rows of nothing. */
  tu_tensor in[5] = {tensor(VNRT_F32, 3, BIG, 4, 0), tensor(VNRT_F32, 3, BIG, 4, 0),
                     tensor(VNRT_F32, 2, BIG, 0, 0), tensor(VNRT_F32, 2, 4, 0, 0),
                     tensor(VNRT_F32, 2, 4, 0, 0)};
  const int32_t r[1] = {3};
  const int64_t w[1][3] = {{BIG, 4, 0}};
  check_empty("engram_gate [1e12, 4, 0]", VNRT_OP_ENGRAM_GATE, in, 5, NULL, 0, 1, r, w);
  for (int i = 0; i < 5; ++i) tu_tensor_free(&in[i]);
}
END_TEST

START_TEST(test_empty_transpose) {
  const int64_t perm[2] = {1, 0};
  vnrt_attr a = tu_attr_ints("perm", perm, 2);
  tu_tensor x = tensor(VNRT_F32, 2, BIG, 0, 0);
  check_empty1("transpose [1e12, 0]", VNRT_OP_TRANSPOSE, &x, 1, &a, 1, 2, 0, BIG, 0);
  tu_tensor_free(&x);
  x = tensor(VNRT_F16, 2, 0, BIG, 0);
  check_empty1("transpose [0, 1e12]", VNRT_OP_TRANSPOSE, &x, 1, &a, 1, 2, BIG, 0, 0);
  tu_tensor_free(&x);
  const int64_t perm3[3] = {2, 0, 1};
  a = tu_attr_ints("perm", perm3, 3);
  x = tensor(VNRT_F32, 3, BIG, 0, 3);
  check_empty1("transpose [1e12, 0, 3]", VNRT_OP_TRANSPOSE, &x, 1, &a, 1, 3, 3, BIG, 0);
  tu_tensor_free(&x);
}
END_TEST

START_TEST(test_empty_softmax) {
  for (int axis = -1; axis <= 0; ++axis) {
    vnrt_attr a = tu_attr_i("axis", axis);
    tu_tensor x = tensor(VNRT_F32, 2, BIG, 0, 0);
    char what[64];
    snprintf(what, sizeof what, "softmax [1e12, 0] axis %d", axis);
    check_empty1(what, VNRT_OP_SOFTMAX, &x, 1, &a, 1, 2, BIG, 0, 0);
    tu_tensor_free(&x);
    x = tensor(VNRT_F32, 2, 0, BIG, 0);
    snprintf(what, sizeof what, "softmax [0, 1e12] axis %d", axis);
    check_empty1(what, VNRT_OP_SOFTMAX, &x, 1, &a, 1, 2, 0, BIG, 0);
    tu_tensor_free(&x);
  }
  /* The zero dim inside: outer 1e12 rows, each with an empty inner block. */
  vnrt_attr a = tu_attr_i("axis", 2);
  tu_tensor x = tensor(VNRT_F32, 3, BIG, 0, 5);
  check_empty1("softmax [1e12, 0, 5] axis 2", VNRT_OP_SOFTMAX, &x, 1, &a, 1, 3, BIG, 0, 5);
  tu_tensor_free(&x);
}
END_TEST

START_TEST(test_empty_binary) {
  const vnrt_op ops[4] = {VNRT_OP_ADD, VNRT_OP_SUB, VNRT_OP_MUL, VNRT_OP_DIV};
  for (int oi = 0; oi < 4; ++oi) {
    char what[64];
    /* [1e12, 0] op [0] -> [1e12, 0] */
    tu_tensor in[2] = {tensor(VNRT_F32, 2, BIG, 0, 0), tensor(VNRT_F32, 1, 0, 0, 0)};
    snprintf(what, sizeof what, "%s [1e12, 0] [0]", vnrt_op_name(ops[oi]));
    check_empty1(what, ops[oi], in, 2, NULL, 0, 2, BIG, 0, 0);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    /* [0, 1e12] op [1] -> [0, 1e12] */
    in[0] = tensor(VNRT_F32, 2, 0, BIG, 0);
    in[1] = tensor(VNRT_F32, 1, 1, 0, 0);
    snprintf(what, sizeof what, "%s [0, 1e12] [1]", vnrt_op_name(ops[oi]));
    check_empty1(what, ops[oi], in, 2, NULL, 0, 2, 0, BIG, 0);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
    /* [1e12, 1, 0] op [3, 1] -> [1e12, 3, 0]: both broadcast, the zero dim innermost */
    in[0] = tensor(VNRT_F16, 3, BIG, 1, 0);
    in[1] = tensor(VNRT_F16, 2, 3, 1, 0);
    snprintf(what, sizeof what, "%s [1e12, 1, 0] [3, 1]", vnrt_op_name(ops[oi]));
    check_empty1(what, ops[oi], in, 2, NULL, 0, 3, BIG, 3, 0);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
  }
}
END_TEST

START_TEST(test_empty_unary_slice_concat) {
  tu_tensor x = tensor(VNRT_F32, 2, BIG, 0, 0);
  check_empty1("exp [1e12, 0]", VNRT_OP_EXP, &x, 1, NULL, 0, 2, BIG, 0, 0);
  tu_tensor_free(&x);

  x = tensor(VNRT_F32, 3, BIG, 3, 0);
  vnrt_attr sa[3] = {tu_attr_i("axis", 1), tu_attr_i("start", 1), tu_attr_i("len", 2)};
  check_empty1("slice [1e12, 3, 0] axis 1", VNRT_OP_SLICE, &x, 1, sa, 3, 3, BIG, 2, 0);
  tu_tensor_free(&x);

  tu_tensor in[2] = {tensor(VNRT_F32, 3, BIG, 2, 0), tensor(VNRT_F32, 3, BIG, 1, 0)};
  vnrt_attr ca = tu_attr_i("axis", 1);
  check_empty1("concat [1e12, 2, 0] [1e12, 1, 0] axis 1", VNRT_OP_CONCAT, in, 2, &ca, 1, 3, BIG, 3,
               0);
  tu_tensor_free(&in[0]);
  tu_tensor_free(&in[1]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conformance_empty");
  TCase *tc = tcase_create("empty");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_empty_transpose);
  tcase_add_test(tc, test_empty_softmax);
  tcase_add_test(tc, test_empty_binary);
  tcase_add_test(tc, test_empty_unary_slice_concat);
  tcase_add_test(tc, test_empty_engram_gate);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
