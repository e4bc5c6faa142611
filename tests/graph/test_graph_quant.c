/* Graph building with quantized weights (docs/ops.md, "Quantized weights"): the accepted forms
 * infer the right types, and every malformed one fails with its status and a message that
 * names the problem. */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

typedef struct qinput {
  vnrt_dtype dt;
  int32_t rank;
  int64_t dims[4];
} qinput;

/* Builds inputs in0.. of the given types and adds one node of op; returns its status (and the
 * result type in *out when it succeeds). An input that itself fails returns that status. */
static vnrt_status add_op(vnrt_context *ctx, vnrt_op op, const qinput *ins, int32_t n_in,
                          const vnrt_attr *attrs, int32_t n_attrs, vnrt_tensor_type *out) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value v[8];
  vnrt_status s = VNRT_OK;
  for (int32_t i = 0; i < n_in && s == VNRT_OK; ++i) {
    vnrt_tensor_type t;
    memset(&t, 0, sizeof t);
    t.dtype = ins[i].dt;
    t.rank = ins[i].rank;
    for (int32_t k = 0; k < t.rank; ++k) t.dims[k] = ins[i].dims[k];
    char name[8];
    snprintf(name, sizeof name, "in%d", (int)i);
    s = vnrt_graph_add_input(g, name, &t, 1, &v[i]);
  }
  vnrt_value res;
  const char *rn = "y";
  if (s == VNRT_OK) s = vnrt_graph_add_node(g, op, v, n_in, attrs, n_attrs, &rn, &res, 1);
  if (s == VNRT_OK && out) s = vnrt_graph_value_type(g, res, out);
  vnrt_graph_destroy(g);
  return s;
}

static void expect(vnrt_context *ctx, const char *what, vnrt_op op, const qinput *ins, int32_t n_in,
                   const vnrt_attr *attrs, int32_t n_attrs, vnrt_status want,
                   const char *const *needles) {
  vnrt_status s = add_op(ctx, op, ins, n_in, attrs, n_attrs, NULL);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s == want, "%s: got %s (%s), want %s", what, vnrt_status_string(s), msg,
                vnrt_status_string(want));
  for (const char *const *p = needles; p && *p; ++p) {
    ck_assert_msg(strstr(msg, *p) != NULL, "%s: message '%s' lacks '%s'", what, msg, *p);
  }
}
#define EXPECT(what, op, ins, attrs, n_attrs, want, ...)                                      \
  expect(ctx, what, VNRT_OP_##op, ins, (int32_t)(sizeof ins / sizeof ins[0]), attrs, n_attrs, \
         VNRT_ERROR_##want, (const char *const[]){__VA_ARGS__, NULL})

#define X_F32(...)                                \
  {                                               \
    VNRT_F32, NDIMS(__VA_ARGS__), { __VA_ARGS__ } \
  }
#define NDIMS(...) ((int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define Q(dt, ...)                                 \
  {                                                \
    VNRT_##dt, NDIMS(__VA_ARGS__), { __VA_ARGS__ } \
  }

START_TEST(test_quantized_weights_accepted) {
  vnrt_context *ctx = tu_context();
  vnrt_tensor_type t;
  /* linear: fp8 w[130, 200] with 2x2 blocks of 128 (both partial), act_quant absent. */
  const qinput lin8[3] = {Q(F32, 3, 200), Q(E4M3, 130, 200), Q(E8M0, 2, 2)};
  TU_OK(ctx, add_op(ctx, VNRT_OP_LINEAR, lin8, 3, NULL, 0, &t));
  ck_assert(t.dtype == VNRT_F32 && t.rank == 2 && t.dims[0] == 3 && t.dims[1] == 130);
  /* linear: fp4 w[13, 96] (logical dims), scale [13, 3], act_quant 128 with K = 256. */
  const qinput lin4[3] = {Q(BF16, 7, 256), Q(E2M1, 13, 256), Q(E8M0, 13, 8)};
  const vnrt_attr aq = tu_attr_i("act_quant", 128);
  TU_OK(ctx, add_op(ctx, VNRT_OP_LINEAR, lin4, 3, &aq, 1, &t));
  ck_assert(t.dtype == VNRT_BF16 && t.dims[1] == 13);
  /* matmul: b[K, N] fp4, scale [K, ceil(N/32)]. */
  const qinput mm[3] = {Q(F32, 2, 5, 64), Q(E2M1, 64, 42), Q(E8M0, 64, 2)};
  TU_OK(ctx, add_op(ctx, VNRT_OP_MATMUL, mm, 3, NULL, 0, &t));
  ck_assert(t.rank == 3 && t.dims[2] == 42);
  /* embedding: the result is f32 rows. */
  const qinput emb[3] = {Q(E4M3, 300, 200), Q(I32, 9), Q(E8M0, 3, 2)};
  TU_OK(ctx, add_op(ctx, VNRT_OP_EMBEDDING, emb, 3, NULL, 0, &t));
  ck_assert(t.dtype == VNRT_F32 && t.rank == 2 && t.dims[0] == 9 && t.dims[1] == 200);
  /* moe_ffn: both quantized with block [32, 64], and w_gate_up alone. */
  const qinput moe[7] = {Q(F32, 7, 96),      Q(I32, 7, 2),     Q(F32, 7, 2),    Q(E4M3, 4, 80, 96),
                         Q(E4M3, 4, 96, 40), Q(E8M0, 4, 3, 2), Q(E8M0, 4, 3, 1)};
  const int64_t blk[2] = {32, 64};
  const vnrt_attr ba = tu_attr_ints("block", blk, 2);
  TU_OK(ctx, add_op(ctx, VNRT_OP_MOE_FFN, moe, 7, &ba, 1, &t));
  const qinput moe1[6] = {Q(F32, 7, 96),      Q(I32, 7, 2),       Q(F32, 7, 2),
                          Q(E2M1, 4, 80, 96), Q(BF16, 4, 96, 40), Q(E8M0, 4, 80, 3)};
  TU_OK(ctx, add_op(ctx, VNRT_OP_MOE_FFN, moe1, 6, NULL, 0, &t));
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_quantized_weight_errors) {
  vnrt_context *ctx = tu_context();
  /* The scale left off. */
  const qinput no_scale[2] = {Q(F32, 3, 200), Q(E4M3, 19, 200)};
  EXPECT("scale missing", LINEAR, no_scale, NULL, 0, INVALID_ARGUMENT, "w is e4m3[19, 200]",
         "need their e8m0 scale");
  /* A scale of the wrong dtype, and of the wrong dims: the message names the dims it needs. */
  const qinput f32_scale[3] = {Q(F32, 3, 200), Q(E4M3, 19, 200), Q(F32, 1, 2)};
  EXPECT("scale f32", LINEAR, f32_scale, NULL, 0, SHAPE_MISMATCH, "scale must be e8m0",
         "[..., 1, 2]", "not f32[1, 2]");
  const qinput bad_dims[3] = {Q(F32, 3, 200), Q(E4M3, 19, 200), Q(E8M0, 1, 1)};
  EXPECT("scale dims", LINEAR, bad_dims, NULL, 0, SHAPE_MISMATCH, "128 x 128 blocks", "[..., 1, 2]",
         "not e8m0[1, 1]");
  const qinput bad_dims4[3] = {Q(F32, 2, 5, 64), Q(E2M1, 64, 42), Q(E8M0, 64, 1)};
  EXPECT("fp4 scale dims", MATMUL, bad_dims4, NULL, 0, SHAPE_MISMATCH, "b is e2m1[64, 42]",
         "1 x 32 blocks", "[..., 64, 2]");
  const qinput moe_lead[7] = {Q(F32, 7, 96),      Q(I32, 7, 2),       Q(F32, 7, 2),
                              Q(E2M1, 4, 80, 96), Q(E2M1, 4, 96, 40), Q(E8M0, 3, 80, 3),
                              Q(E8M0, 4, 96, 2)};
  EXPECT("moe scale's leading dim", MOE_FFN, moe_lead, NULL, 0, SHAPE_MISMATCH, "w_gate_up",
         "[..., 80, 3]", "not e8m0[3, 80, 3]");
  /* Codes where a float tensor is read: x of linear, a of matmul, the ids slot. */
  const qinput codes_x[3] = {Q(E4M3, 3, 200), Q(E4M3, 19, 200), Q(E8M0, 1, 2)};
  EXPECT("codes as x", LINEAR, codes_x, NULL, 0, INVALID_ARGUMENT, "input 0 is e4m3[3, 200]",
         "only as the weight operand");
  const qinput codes_add[2] = {Q(F32, 4), Q(E4M3, 4)};
  EXPECT("codes in add", ADD, codes_add, NULL, 0, INVALID_ARGUMENT, "input 1 is e4m3[4]");
  /* A float weight with a scale. */
  const qinput float_scale[3] = {Q(F32, 3, 200), Q(F32, 19, 200), Q(E8M0, 1, 2)};
  EXPECT("float weight with a scale", LINEAR, float_scale, NULL, 0, INVALID_ARGUMENT,
         "w is f32[19, 200] but a scale input was given");
  /* e2m1 codes need an even last dim (two a byte). */
  const qinput odd[3] = {Q(F32, 3, 33), Q(E2M1, 19, 33), Q(E8M0, 19, 2)};
  EXPECT("e2m1 odd last dim", LINEAR, odd, NULL, 0, INVALID_ARGUMENT, "e2m1[19, 33]",
         "even last dim");
  /* act_quant: only 0 or 128, and 128 needs K a multiple of 128. */
  const qinput lin[3] = {Q(F32, 3, 256), Q(E4M3, 19, 256), Q(E8M0, 1, 2)};
  const vnrt_attr aq64 = tu_attr_i("act_quant", 64);
  EXPECT("act_quant 64", LINEAR, lin, &aq64, 1, INVALID_ARGUMENT, "act_quant = 64",
         "must be 0 or 128");
  const qinput lin96[3] = {Q(F32, 3, 96), Q(E4M3, 19, 96), Q(E8M0, 1, 1)};
  const vnrt_attr aq128 = tu_attr_i("act_quant", 128);
  EXPECT("act_quant K=96", LINEAR, lin96, &aq128, 1, INVALID_ARGUMENT, "act_quant = 128",
         "blocks of 128 channels", "it has 96");
  const qinput moe_f[7] = {Q(F32, 7, 128),       Q(I32, 7, 2),        Q(F32, 7, 2),
                           Q(E4M3, 4, 192, 128), Q(E4M3, 4, 128, 96), Q(E8M0, 4, 2, 1),
                           Q(E8M0, 4, 1, 1)};
  EXPECT("moe act_quant F=96", MOE_FFN, moe_f, &aq128, 1, INVALID_ARGUMENT,
         "the down projection's input (F)", "it has 96");
  /* moe_ffn: w_down quantized but w_gate_up not. */
  const qinput moe_down[7] = {Q(F32, 7, 96),     Q(I32, 7, 2),       Q(F32, 7, 2),
                              Q(F32, 4, 80, 96), Q(E4M3, 4, 96, 40), Q(E8M0, 4, 1, 1),
                              Q(E8M0, 4, 1, 1)};
  EXPECT("moe w_down alone", MOE_FFN, moe_down, NULL, 0, SHAPE_MISMATCH,
         "w_down is quantized but w_gate_up is not");
  /* block: two positive integers. */
  const int64_t b0[2] = {0, 32}, b3[3] = {1, 32, 1};
  const vnrt_attr ba0 = tu_attr_ints("block", b0, 2), ba3 = tu_attr_ints("block", b3, 3);
  const qinput lin4[3] = {Q(F32, 3, 64), Q(E2M1, 19, 64), Q(E8M0, 19, 2)};
  EXPECT("block [0, 32]", LINEAR, lin4, &ba0, 1, INVALID_ARGUMENT, "block = [0, 32]",
         "two positive integers");
  EXPECT("block of 3", LINEAR, lin4, &ba3, 1, INVALID_ARGUMENT, "block = [1, 32, 1]",
         "two positive integers");
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_fake_quant_errors) {
  vnrt_context *ctx = tu_context();
  const qinput x[1] = {Q(F32, 4, 96)};
  const vnrt_attr e4 = tu_attr_word("fmt", "e4m3"), e2 = tu_attr_word("fmt", "e2m1");
  /* len 40 from 0 in blocks of 32 */
  const vnrt_attr l40[2] = {e2, tu_attr_i("len", 40)};
  EXPECT("len not a multiple", FAKE_QUANT, x, l40, 2, INVALID_ARGUMENT, "f32[4, 96]",
         "the 40 channels from 0", "not a multiple of block = 32");
  /* the default e4m3 block of 128 over 96 channels */
  EXPECT("D below the e4m3 block", FAKE_QUANT, x, &e4, 1, INVALID_ARGUMENT,
         "not a multiple of block = 128");
  const vnrt_attr out_of_range[3] = {e2, tu_attr_i("start", 64), tu_attr_i("len", 64)};
  EXPECT("range past D", FAKE_QUANT, x, out_of_range, 3, INVALID_ARGUMENT,
         "[start = 64, start + len = 128)", "[0, D = 96]");
  const vnrt_attr b0[2] = {e2, tu_attr_i("block", 0)};
  EXPECT("block 0", FAKE_QUANT, x, b0, 2, INVALID_ARGUMENT, "block = 0", ">= 1");
  const vnrt_attr bad_fmt = tu_attr_word("fmt", "e5m2");
  EXPECT("fmt e5m2", FAKE_QUANT, x, &bad_fmt, 1, INVALID_ARGUMENT, "e5m2");
  EXPECT("fmt missing", FAKE_QUANT, x, NULL, 0, INVALID_ARGUMENT, "fmt");
  const qinput xi[1] = {Q(I32, 4, 96)};
  EXPECT("integer x", FAKE_QUANT, xi, &e2, 1, SHAPE_MISMATCH, "i32[4, 96]");
  vnrt_context_destroy(ctx);
}
END_TEST

static Suite *graph_quant_suite(void) {
  Suite *s = suite_create("graph_quant");
  TCase *tc = tcase_create("quantized weights");
  tcase_add_test(tc, test_quantized_weights_accepted);
  tcase_add_test(tc, test_quantized_weight_errors);
  tcase_add_test(tc, test_fake_quant_errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(graph_quant_suite()); }
