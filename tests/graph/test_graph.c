/* Tests of the graph builder, the op table and shape/dtype inference: every op's result types,
 * every rejection with the words and shapes of its message, and the builder's invariants
 * (unique names, unchanged graph after a rejected node, size limits, lookups). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "op_table.h"
#include "test_util.h"

/* ---- Helpers --------------------------------------------------------------------------- */

static vnrt_tensor_type mk(vnrt_dtype dt, int32_t rank, const int64_t *dims) {
  vnrt_tensor_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int32_t i = 0; i < rank; ++i) t.dims[i] = dims[i];
  return t;
}

#define NDIMS(...) ((int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* T(F32, 4, 64) is f32[4, 64]; S(F32) is a scalar. */
#define T(dt, ...) mk(VNRT_##dt, NDIMS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__})
#define S(dt) mk(VNRT_##dt, 0, NULL)

static vnrt_context *ctx;

static void setup(void) { ctx = tu_context(); }
static void teardown(void) {
  vnrt_context_destroy(ctx);
  ctx = NULL;
}

/* Builds a graph of inputs in0.. and one node of op with results r0.., returns the node's
 * status and, on success, the results' types in out. */
static vnrt_status infer(vnrt_op op, const vnrt_tensor_type *in, int32_t n_in,
                         const vnrt_attr *attrs, int32_t n_attrs, vnrt_tensor_type *out,
                         int32_t n_out) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value ids[VNRT_MAX_NODE_INPUTS];
  for (int32_t i = 0; i < n_in; ++i) {
    char name[16];
    snprintf(name, sizeof name, "in%d", (int)i);
    TU_OK(ctx, vnrt_graph_add_input(g, name, &in[i], 0, &ids[i]));
  }
  static const char *const names[] = {"r0", "r1", "r2", "r3"};
  vnrt_value outs[VNRT_MAX_NODE_OUTPUTS];
  vnrt_status st = vnrt_graph_add_node(g, op, ids, n_in, attrs, n_attrs, names, outs, n_out);
  for (int32_t i = 0; st == VNRT_OK && i < n_out; ++i) {
    TU_OK(ctx, vnrt_graph_value_type(g, outs[i], &out[i]));
  }
  vnrt_graph_destroy(g);
  return st;
}

static void expect_type(const vnrt_tensor_type *t, vnrt_dtype dt, int32_t rank, const int64_t *dims,
                        const char *where) {
  char got[160], want[160];
  vnrt_tensor_type w = mk(dt, rank, dims);
  bool same = t->dtype == dt && t->rank == rank;
  for (int32_t i = 0; same && i < rank; ++i) same = t->dims[i] == dims[i];
  ck_assert_msg(same, "%s: got %s, want %s", where, vn_type_str(t, got, sizeof got),
                vn_type_str(&w, want, sizeof want));
}
#define EXPECT_T(t, dt, ...) \
  expect_type(&(t), VNRT_##dt, NDIMS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__}, #t)
#define EXPECT_S(t, dt) expect_type(&(t), VNRT_##dt, 0, NULL, #t)

/* Asserts the status and that the context's last error contains every given word. */
static void expect_err(vnrt_status got, vnrt_status want, const char *const *words,
                       const char *expr) {
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(got == want, "%s: got %s, want %s (message: %s)", expr, vnrt_status_string(got),
                vnrt_status_string(want), msg);
  for (int32_t i = 0; words[i]; ++i) {
    ck_assert_msg(strstr(msg, words[i]) != NULL, "%s: message \"%s\" lacks \"%s\"", expr, msg,
                  words[i]);
  }
}
#define EXPECT_ERR(expr, want, ...) \
  expect_err((expr), VNRT_ERROR_##want, (const char *const[]){__VA_ARGS__, NULL}, #expr)

#define ATTRS(...)                  \
  (const vnrt_attr[]){__VA_ARGS__}, \
      ((int32_t)(sizeof((const vnrt_attr[]){__VA_ARGS__}) / sizeof(vnrt_attr)))
#define NO_ATTRS NULL, 0
#define INS(...)                           \
  (const vnrt_tensor_type[]){__VA_ARGS__}, \
      ((int32_t)(sizeof((const vnrt_tensor_type[]){__VA_ARGS__}) / sizeof(vnrt_tensor_type)))

/* ---- Op table and names ---------------------------------------------------------------- */

START_TEST(test_op_table_matches_op_list) {
  int32_t count = 0;
#define CHECK_ROW_(ID, nm, min_in, max_in, n_out)           \
  do {                                                      \
    const vn_op_info *info = vn_op_info_get(VNRT_OP_##ID);  \
    ck_assert_ptr_nonnull(info);                            \
    ck_assert_str_eq(info->name, #nm);                      \
    ck_assert_int_eq(info->min_inputs, min_in);             \
    ck_assert_int_eq(info->max_inputs, max_in);             \
    ck_assert_int_eq(info->n_outputs, n_out);               \
    ck_assert_ptr_nonnull(info->infer);                     \
    ck_assert_str_eq(vnrt_op_name(VNRT_OP_##ID), #nm);      \
    ck_assert_int_eq(vnrt_op_from_name(#nm), VNRT_OP_##ID); \
    ++count;                                                \
  } while (0);
  VNRT_OP_LIST(CHECK_ROW_)
#undef CHECK_ROW_
  ck_assert_int_eq(count, VNRT_OP_COUNT);
  ck_assert_ptr_null(vn_op_info_get(VNRT_OP_COUNT));
  ck_assert_ptr_null(vn_op_info_get(VNRT_OP_INVALID));
  ck_assert_ptr_null(vnrt_op_name(VNRT_OP_COUNT));
  ck_assert_ptr_null(vnrt_op_name((vnrt_op)-7));
  ck_assert_int_eq(vnrt_op_from_name("matmull"), VNRT_OP_INVALID);
  ck_assert_int_eq(vnrt_op_from_name(""), VNRT_OP_INVALID);
  ck_assert_int_eq(vnrt_op_from_name(NULL), VNRT_OP_INVALID);
}
END_TEST

START_TEST(test_schema_keys_match_attrs_md) {
  /* Spot-check the binding schema: keys in order, kinds, defaults and required flags. */
  const vn_op_info *r = vn_op_info_get(VNRT_OP_MOE_ROUTE);
  ck_assert_int_eq(r->n_attrs, 6);
  const char *keys[] = {"k", "score", "n_group", "topk_group", "norm", "scale"};
  for (int i = 0; i < 6; ++i) ck_assert_str_eq(r->attrs[i].key, keys[i]);
  ck_assert(r->attrs[0].required && r->attrs[1].required && !r->attrs[2].required);
  ck_assert_int_eq(r->attrs[1].kind, VNRT_ATTR_WORD);
  ck_assert_int_eq(r->attrs[2].default_i, 1);
  ck_assert(r->attrs[5].default_f == 1.0);
  const vn_op_info *rope = vn_op_info_get(VNRT_OP_ROPE);
  ck_assert_int_eq(rope->n_attrs, 8);
  ck_assert(rope->attrs[0].default_f == 10000.0);
  ck_assert(rope->attrs[1].optional);
  ck_assert_int_eq(rope->attrs[2].default_i, 1);
  /* DeepSeek-V4's YaRN and inverse rotation: optional, so older graphs print as before */
  ck_assert_str_eq(rope->attrs[3].key, "yarn_factor");
  for (int i = 3; i < 8; ++i) ck_assert(rope->attrs[i].optional);
  ck_assert_int_eq(vn_op_info_get(VNRT_OP_ADD)->n_attrs, 0);
  ck_assert_int_eq(vn_op_info_get(VNRT_OP_ENGRAM_LOOKUP)->n_attrs, 0);
  ck_assert_int_eq(vn_op_info_get(VNRT_OP_HC_EXPAND)->attrs[0].default_i, 4);
  ck_assert(vn_op_info_get(VNRT_OP_RMS_NORM)->attrs[0].default_f == 1e-6);
}
END_TEST

START_TEST(test_type_str_and_names) {
  char buf[160];
  vnrt_tensor_type t = T(F32, 4, 64);
  ck_assert_str_eq(vn_type_str(&t, buf, sizeof buf), "f32[4, 64]");
  t = S(BF16);
  ck_assert_str_eq(vn_type_str(&t, buf, sizeof buf), "bf16[]");
  t = T(I32, 1, 2, 3, 4);
  ck_assert_str_eq(vn_type_str(&t, buf, sizeof buf), "i32[1, 2, 3, 4]");
  t = T(F16, 7);
  ck_assert_str_eq(vn_type_str(&t, buf, sizeof buf), "f16[7]");
  char tiny[6];
  ck_assert_str_eq(vn_type_str(&t, tiny, sizeof tiny), "f16[7"); /* truncated, terminated */

  ck_assert(vn_name_valid("x"));
  ck_assert(vn_name_valid("_a1"));
  ck_assert(vn_name_valid("layers.0.ffn.w1"));
  ck_assert(vn_name_valid("inputs")); /* only the exact keywords are reserved */
  ck_assert(!vn_name_valid(""));
  ck_assert(!vn_name_valid(NULL));
  ck_assert(!vn_name_valid("1x"));
  ck_assert(!vn_name_valid(".x"));
  ck_assert(!vn_name_valid("a-b"));
  ck_assert(!vn_name_valid("a b"));
  ck_assert(!vn_name_valid("%3"));
  ck_assert(!vn_name_valid("input"));
  ck_assert(!vn_name_valid("param"));
  ck_assert(!vn_name_valid("output"));
  ck_assert(!vn_name_valid("vnir"));
}
END_TEST

/* ---- Attribute normalisation ----------------------------------------------------------- */

START_TEST(test_attrs_defaults_and_order) {
  vnrt_attr *norm = NULL;
  int32_t n = -1;
  char err[256];
  /* Given out of schema order, with an INT where a FLOAT is expected. */
  const vnrt_attr given[] = {tu_attr_i("scale", 2), tu_attr_word("score", "sigmoid"),
                             tu_attr_i("k", 3)};
  ck_assert_int_eq(vn_attrs_normalize(ctx, VNRT_OP_MOE_ROUTE, given, 3, &norm, &n, err, sizeof err),
                   VNRT_OK);
  ck_assert_int_eq(n, 6);
  ck_assert_str_eq(norm[0].key, "k");
  ck_assert_int_eq(norm[0].kind, VNRT_ATTR_INT);
  ck_assert_int_eq(norm[0].i, 3);
  ck_assert_str_eq(norm[1].key, "score");
  ck_assert_str_eq(norm[1].word, "sigmoid");
  ck_assert_ptr_ne(norm[1].word, given[1].word); /* copied */
  ck_assert_str_eq(norm[2].key, "n_group");
  ck_assert_int_eq(norm[2].i, 1);
  ck_assert_str_eq(norm[3].key, "topk_group");
  ck_assert_int_eq(norm[3].i, 1);
  ck_assert_str_eq(norm[4].key, "norm");
  ck_assert_int_eq(norm[4].i, 1);
  ck_assert_str_eq(norm[5].key, "scale");
  ck_assert_int_eq(norm[5].kind, VNRT_ATTR_FLOAT);
  ck_assert(norm[5].f == 2.0);
  /* Keys point at the schema's static strings. */
  ck_assert_ptr_eq(norm[0].key, vn_op_info_get(VNRT_OP_MOE_ROUTE)->attrs[0].key);
  vn_attrs_free(ctx, norm, n);

  /* Optional attributes without a default stay absent. */
  ck_assert_int_eq(vn_attrs_normalize(ctx, VNRT_OP_CLAMP, NULL, 0, &norm, &n, err, sizeof err),
                   VNRT_OK);
  ck_assert_int_eq(n, 0);
  ck_assert_ptr_null(norm);
  const vnrt_attr only_max[] = {tu_attr_f("max", 1.5)};
  ck_assert_int_eq(vn_attrs_normalize(ctx, VNRT_OP_CLAMP, only_max, 1, &norm, &n, err, sizeof err),
                   VNRT_OK);
  ck_assert_int_eq(n, 1);
  ck_assert_str_eq(norm[0].key, "max");
  ck_assert(norm[0].f == 1.5);
  vn_attrs_free(ctx, norm, n);

  /* rope: theta, interleaved filled; dims absent. */
  ck_assert_int_eq(vn_attrs_normalize(ctx, VNRT_OP_ROPE, NULL, 0, &norm, &n, err, sizeof err),
                   VNRT_OK);
  ck_assert_int_eq(n, 2);
  ck_assert_str_eq(norm[0].key, "theta");
  ck_assert(norm[0].f == 10000.0);
  ck_assert_str_eq(norm[1].key, "interleaved");
  ck_assert_int_eq(norm[1].i, 1);
  vn_attrs_free(ctx, norm, n);
}
END_TEST

START_TEST(test_attrs_lists_are_copied) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type x = T(F32, 2, 3, 4);
  vnrt_value vx, vy;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &x, 0, &vx));
  int64_t perm[3] = {2, 0, 1};
  const vnrt_attr a[] = {tu_attr_ints("perm", perm, 3)};
  const char *names[] = {"y"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_TRANSPOSE, &vx, 1, a, 1, names, &vy, 1));
  perm[0] = 9; /* the caller's array is borrowed only during the call */
  const vn_node *node = &g->nodes[0];
  ck_assert_int_eq(node->n_attrs, 1);
  ck_assert_int_eq(node->attrs[0].count, 3);
  ck_assert_ptr_ne(node->attrs[0].ints, perm);
  ck_assert_int_eq(node->attrs[0].ints[0], 2);
  ck_assert_int_eq(node->attrs[0].ints[2], 1);
  vnrt_tensor_type t;
  TU_OK(ctx, vnrt_graph_value_type(g, vy, &t));
  EXPECT_T(t, F32, 4, 2, 3);
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_attrs_errors) {
  vnrt_tensor_type out[2];
  vnrt_tensor_type x = T(F32, 2, 8);
  EXPECT_ERR(infer(VNRT_OP_TOPK, &x, 1, ATTRS(tu_attr_i("k", 2), tu_attr_i("kk", 1)), out, 2),
             INVALID_ARGUMENT, "node 'r0' (topk)", "unknown attribute 'kk'", "k");
  EXPECT_ERR(infer(VNRT_OP_TOPK, &x, 1, NO_ATTRS, out, 2), INVALID_ARGUMENT,
             "missing required attribute 'k'");
  EXPECT_ERR(infer(VNRT_OP_TOPK, &x, 1, ATTRS(tu_attr_f("k", 2.0)), out, 2), INVALID_ARGUMENT,
             "'k' must be an integer");
  EXPECT_ERR(infer(VNRT_OP_TOPK, &x, 1, ATTRS(tu_attr_i("k", 2), tu_attr_i("k", 2)), out, 2),
             INVALID_ARGUMENT, "'k' is given twice");
  EXPECT_ERR(infer(VNRT_OP_CAST, &x, 1, ATTRS(tu_attr_word("dtype", "f64")), out, 1),
             INVALID_ARGUMENT, "'dtype' is 'f64'", "f32|f16|bf16|i32");
  EXPECT_ERR(infer(VNRT_OP_CAST, &x, 1, ATTRS(tu_attr_i("dtype", 1)), out, 1), INVALID_ARGUMENT,
             "'dtype' must be a word");
  EXPECT_ERR(infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_i("shape", 16)), out, 1), INVALID_ARGUMENT,
             "'shape' must be a list of integers");
  EXPECT_ERR(infer(VNRT_OP_ADD, INS(x, x), ATTRS(tu_attr_i("axis", 0)), out, 1), INVALID_ARGUMENT,
             "unknown attribute 'axis'", "add takes: none");
  vnrt_tensor_type lg = T(F32, 3, 8);
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, &lg, 1,
                   ATTRS(tu_attr_i("k", 2), tu_attr_word("score", "relu")), out, 2),
             INVALID_ARGUMENT, "'score' is 'relu'", "sigmoid|softmax|sqrt_softplus");
}
END_TEST

/* ---- Elementwise and shape ------------------------------------------------------------- */

START_TEST(test_binary_broadcast) {
  static const vnrt_op ops[] = {VNRT_OP_ADD, VNRT_OP_SUB, VNRT_OP_MUL, VNRT_OP_DIV};
  vnrt_tensor_type out[1];
  for (size_t i = 0; i < VN_ARRAY_SIZE(ops); ++i) {
    TU_OK(ctx, infer(ops[i], INS(T(F32, 4, 1, 3), T(F32, 5, 1)), NO_ATTRS, out, 1));
    EXPECT_T(out[0], F32, 4, 5, 3);
    TU_OK(ctx, infer(ops[i], INS(T(BF16, 3), T(BF16, 2, 3)), NO_ATTRS, out, 1));
    EXPECT_T(out[0], BF16, 2, 3);
    TU_OK(ctx, infer(ops[i], INS(S(F16), T(F16, 2, 0)), NO_ATTRS, out, 1));
    EXPECT_T(out[0], F16, 2, 0);
    TU_OK(ctx, infer(ops[i], INS(S(F32), S(F32)), NO_ATTRS, out, 1));
    EXPECT_S(out[0], F32);
  }
  EXPECT_ERR(infer(VNRT_OP_ADD, INS(T(F32, 4, 3), T(F32, 4)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "node 'r0' (add)", "a is f32[4, 3]", "b is f32[4]", "not broadcastable");
  EXPECT_ERR(infer(VNRT_OP_MUL, INS(T(F32, 4), T(F16, 4)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "a is f32[4]", "b is f16[4]", "dtypes differ");
  EXPECT_ERR(infer(VNRT_OP_SUB, INS(T(I32, 4), T(I32, 4)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "a is i32[4]", "float dtype");
}
END_TEST

START_TEST(test_unary_float_ops) {
  static const vnrt_op ops[] = {VNRT_OP_NEG,      VNRT_OP_EXP,           VNRT_OP_SQRT,
                                VNRT_OP_RSQRT,    VNRT_OP_TANH,          VNRT_OP_RELU,
                                VNRT_OP_SIGMOID,  VNRT_OP_SILU,          VNRT_OP_GELU,
                                VNRT_OP_SOFTPLUS, VNRT_OP_SQRT_SOFTPLUS, VNRT_OP_CLAMP};
  vnrt_tensor_type out[1];
  for (size_t i = 0; i < VN_ARRAY_SIZE(ops); ++i) {
    TU_OK(ctx, infer(ops[i], INS(T(F16, 2, 3, 5)), NO_ATTRS, out, 1));
    EXPECT_T(out[0], F16, 2, 3, 5);
    TU_OK(ctx, infer(ops[i], INS(S(BF16)), NO_ATTRS, out, 1));
    EXPECT_S(out[0], BF16);
    EXPECT_ERR(infer(ops[i], INS(T(I32, 3)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
               vnrt_op_name(ops[i]), "x is i32[3]", "float dtype");
  }
  TU_OK(ctx, infer(VNRT_OP_SCALE, INS(T(F32, 6)), ATTRS(tu_attr_f("s", -0.5)), out, 1));
  EXPECT_T(out[0], F32, 6);
  EXPECT_ERR(infer(VNRT_OP_SCALE, INS(T(F32, 6)), NO_ATTRS, out, 1), INVALID_ARGUMENT,
             "missing required attribute 's'");
  TU_OK(ctx, infer(VNRT_OP_CLAMP, INS(T(F32, 6)), ATTRS(tu_attr_f("min", -1), tu_attr_f("max", 1)),
                   out, 1));
  EXPECT_ERR(
      infer(VNRT_OP_CLAMP, INS(T(F32, 6)), ATTRS(tu_attr_f("min", 2), tu_attr_f("max", 1)), out, 1),
      INVALID_ARGUMENT, "min = 2", "max = 1");
}
END_TEST

START_TEST(test_cast) {
  static const struct {
    const char *word;
    vnrt_dtype dtype;
  } cases[] = {{"f32", VNRT_F32}, {"f16", VNRT_F16}, {"bf16", VNRT_BF16}, {"i32", VNRT_I32}};
  static const vnrt_dtype from[] = {VNRT_F32, VNRT_F16, VNRT_BF16, VNRT_I32};
  vnrt_tensor_type out[1];
  for (size_t i = 0; i < VN_ARRAY_SIZE(cases); ++i) {
    for (size_t j = 0; j < VN_ARRAY_SIZE(from); ++j) {
      vnrt_tensor_type x = mk(from[j], 2, (const int64_t[]){3, 7});
      TU_OK(ctx, infer(VNRT_OP_CAST, &x, 1, ATTRS(tu_attr_word("dtype", cases[i].word)), out, 1));
      expect_type(&out[0], cases[i].dtype, 2, (const int64_t[]){3, 7}, cases[i].word);
    }
  }
}
END_TEST

START_TEST(test_reshape) {
  vnrt_tensor_type out[1];
  vnrt_tensor_type x = T(BF16, 2, 3, 4);
  TU_OK(ctx,
        infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_ints("shape", (int64_t[]){6, 4}, 2)), out, 1));
  EXPECT_T(out[0], BF16, 6, 4);
  TU_OK(ctx, infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_ints("shape", (int64_t[]){4, -1, 1}, 3)),
                   out, 1));
  EXPECT_T(out[0], BF16, 4, 6, 1);
  vnrt_tensor_type one = T(I32, 1, 1);
  TU_OK(ctx, infer(VNRT_OP_RESHAPE, &one, 1, ATTRS(tu_attr_ints("shape", NULL, 0)), out, 1));
  EXPECT_S(out[0], I32);
  vnrt_tensor_type empty = T(F32, 0, 5);
  TU_OK(ctx, infer(VNRT_OP_RESHAPE, &empty, 1,
                   ATTRS(tu_attr_ints("shape", (int64_t[]){5, 0, 2}, 3)), out, 1));
  EXPECT_T(out[0], F32, 5, 0, 2);

  EXPECT_ERR(
      infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_ints("shape", (int64_t[]){5, 5}, 2)), out, 1),
      SHAPE_MISMATCH, "x is bf16[2, 3, 4] (24 elements)", "[5, 5] has 25 elements");
  EXPECT_ERR(infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_ints("shape", (int64_t[]){-1, 2, -1}, 3)),
                   out, 1),
             SHAPE_MISMATCH, "[-1, 2, -1]", "more than one -1");
  EXPECT_ERR(
      infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_ints("shape", (int64_t[]){5, -1}, 2)), out, 1),
      SHAPE_MISMATCH, "x is bf16[2, 3, 4]", "[5, -1]");
  EXPECT_ERR(
      infer(VNRT_OP_RESHAPE, &x, 1, ATTRS(tu_attr_ints("shape", (int64_t[]){-2, 12}, 2)), out, 1),
      SHAPE_MISMATCH, "negative dim -2");
  EXPECT_ERR(infer(VNRT_OP_RESHAPE, &x, 1,
                   ATTRS(tu_attr_ints("shape", (int64_t[]){1, 2, 3, 4, 1}, 5)), out, 1),
             SHAPE_MISMATCH, "5 dims", "at most 4");
  EXPECT_ERR(infer(VNRT_OP_RESHAPE, &x, 1,
                   ATTRS(tu_attr_ints("shape", (int64_t[]){INT64_C(1) << 40, INT64_C(1) << 40}, 2)),
                   out, 1),
             SHAPE_MISMATCH, "overflows");
}
END_TEST

START_TEST(test_transpose) {
  vnrt_tensor_type out[1];
  vnrt_tensor_type x = T(I32, 2, 3, 4, 5);
  TU_OK(ctx, infer(VNRT_OP_TRANSPOSE, &x, 1,
                   ATTRS(tu_attr_ints("perm", (int64_t[]){3, 1, 0, 2}, 4)), out, 1));
  EXPECT_T(out[0], I32, 5, 3, 2, 4);
  EXPECT_ERR(infer(VNRT_OP_TRANSPOSE, &x, 1,
                   ATTRS(tu_attr_ints("perm", (int64_t[]){0, 1, 1, 2}, 4)), out, 1),
             SHAPE_MISMATCH, "x is i32[2, 3, 4, 5]", "perm [0, 1, 1, 2] is not a permutation");
  EXPECT_ERR(
      infer(VNRT_OP_TRANSPOSE, &x, 1, ATTRS(tu_attr_ints("perm", (int64_t[]){1, 0}, 2)), out, 1),
      SHAPE_MISMATCH, "perm [1, 0]", "4 dims");
  EXPECT_ERR(infer(VNRT_OP_TRANSPOSE, &x, 1,
                   ATTRS(tu_attr_ints("perm", (int64_t[]){0, 1, 2, 4}, 4)), out, 1),
             SHAPE_MISMATCH, "not a permutation");
  EXPECT_ERR(infer(VNRT_OP_TRANSPOSE, &x, 1,
                   ATTRS(tu_attr_ints("perm", (int64_t[]){0, 1, 2, -1}, 4)), out, 1),
             SHAPE_MISMATCH, "not a permutation");
}
END_TEST

START_TEST(test_slice_and_concat) {
  vnrt_tensor_type out[1];
  vnrt_tensor_type x = T(F16, 4, 10, 6);
  TU_OK(ctx,
        infer(VNRT_OP_SLICE, &x, 1,
              ATTRS(tu_attr_i("axis", 1), tu_attr_i("start", 2), tu_attr_i("len", 8)), out, 1));
  EXPECT_T(out[0], F16, 4, 8, 6);
  TU_OK(ctx,
        infer(VNRT_OP_SLICE, &x, 1,
              ATTRS(tu_attr_i("axis", -1), tu_attr_i("start", 6), tu_attr_i("len", 0)), out, 1));
  EXPECT_T(out[0], F16, 4, 10, 0);
  EXPECT_ERR(infer(VNRT_OP_SLICE, &x, 1,
                   ATTRS(tu_attr_i("axis", 1), tu_attr_i("start", 3), tu_attr_i("len", 8)), out, 1),
             SHAPE_MISMATCH, "x is f16[4, 10, 6]", "start 3 len 8", "out of bounds");
  EXPECT_ERR(
      infer(VNRT_OP_SLICE, &x, 1,
            ATTRS(tu_attr_i("axis", 0), tu_attr_i("start", -1), tu_attr_i("len", 1)), out, 1),
      SHAPE_MISMATCH, "start -1");
  EXPECT_ERR(infer(VNRT_OP_SLICE, &x, 1,
                   ATTRS(tu_attr_i("axis", 3), tu_attr_i("start", 0), tu_attr_i("len", 1)), out, 1),
             SHAPE_MISMATCH, "axis 3 is out of range");
  EXPECT_ERR(
      infer(VNRT_OP_SLICE, &x, 1,
            ATTRS(tu_attr_i("axis", -4), tu_attr_i("start", 0), tu_attr_i("len", 1)), out, 1),
      SHAPE_MISMATCH, "axis -4");
  EXPECT_ERR(
      infer(VNRT_OP_SLICE, &x, 1, ATTRS(tu_attr_i("axis", 0), tu_attr_i("start", 0)), out, 1),
      INVALID_ARGUMENT, "missing required attribute 'len'");

  TU_OK(ctx, infer(VNRT_OP_CONCAT, INS(T(I32, 2, 3, 4), T(I32, 2, 5, 4)),
                   ATTRS(tu_attr_i("axis", -2)), out, 1));
  EXPECT_T(out[0], I32, 2, 8, 4);
  TU_OK(ctx,
        infer(VNRT_OP_CONCAT, INS(T(BF16, 1), T(BF16, 2)), ATTRS(tu_attr_i("axis", 0)), out, 1));
  EXPECT_T(out[0], BF16, 3);
  EXPECT_ERR(
      infer(VNRT_OP_CONCAT, INS(T(F32, 2, 3), T(F32, 3, 3)), ATTRS(tu_attr_i("axis", 1)), out, 1),
      SHAPE_MISMATCH, "a is f32[2, 3]", "b is f32[3, 3]", "dim 0 differs");
  EXPECT_ERR(
      infer(VNRT_OP_CONCAT, INS(T(F32, 2, 3), T(F16, 2, 3)), ATTRS(tu_attr_i("axis", 0)), out, 1),
      SHAPE_MISMATCH, "dtypes differ");
  EXPECT_ERR(
      infer(VNRT_OP_CONCAT, INS(T(F32, 2, 3), T(F32, 6)), ATTRS(tu_attr_i("axis", 0)), out, 1),
      SHAPE_MISMATCH, "ranks differ");
  EXPECT_ERR(
      infer(VNRT_OP_CONCAT, INS(T(F32, 2, 3), T(F32, 2, 3)), ATTRS(tu_attr_i("axis", 2)), out, 1),
      SHAPE_MISMATCH, "axis 2 is out of range");
}
END_TEST

/* ---- Linear algebra, norms, activations ------------------------------------------------ */

START_TEST(test_matmul_and_linear) {
  vnrt_tensor_type out[1];
  TU_OK(ctx, infer(VNRT_OP_MATMUL, INS(T(F16, 4, 3), T(F32, 3, 5)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F16, 4, 5);
  TU_OK(ctx, infer(VNRT_OP_MATMUL, INS(T(F32, 2, 1, 4, 3), T(BF16, 6, 3, 5)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 2, 6, 4, 5);
  TU_OK(ctx, infer(VNRT_OP_MATMUL, INS(T(F32, 7, 4, 3), T(F32, 3, 2)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 7, 4, 2);
  EXPECT_ERR(infer(VNRT_OP_MATMUL, INS(T(F32, 4, 3), T(F32, 5, 2)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "node 'r0' (matmul)", "a is f32[4, 3]", "b is f32[5, 2]",
             "inner dims differ");
  EXPECT_ERR(infer(VNRT_OP_MATMUL, INS(T(F32, 2, 4, 3), T(F32, 3, 3, 2)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "a is f32[2, 4, 3]", "b is f32[3, 3, 2]", "batch dims");
  EXPECT_ERR(infer(VNRT_OP_MATMUL, INS(T(F32, 3), T(F32, 3, 2)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "a is f32[3]", "rank >= 2");
  EXPECT_ERR(infer(VNRT_OP_MATMUL, INS(T(I32, 2, 3), T(F32, 3, 2)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "a is i32[2, 3]", "float");

  TU_OK(ctx, infer(VNRT_OP_LINEAR, INS(T(F32, 4, 64), T(F16, 128, 64)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 4, 128);
  TU_OK(ctx, infer(VNRT_OP_LINEAR, INS(T(BF16, 2, 3, 8), T(BF16, 5, 8)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], BF16, 2, 3, 5);
  TU_OK(ctx, infer(VNRT_OP_LINEAR, INS(T(F16, 8), T(F32, 2, 8)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F16, 2);
  EXPECT_ERR(infer(VNRT_OP_LINEAR, INS(T(F32, 4, 64), T(F16, 128, 32)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "node 'r0' (linear): x is f32[4, 64] but w is f16[128, 32]",
             "inner dims differ");
  EXPECT_ERR(infer(VNRT_OP_LINEAR, INS(T(F32, 4, 64), T(F32, 64)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "w is f32[64]", "rank 2");
  EXPECT_ERR(infer(VNRT_OP_LINEAR, INS(T(F32, 4, 8), T(I32, 2, 8)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "w is i32[2, 8]", "float");
}
END_TEST

START_TEST(test_norm_softmax_swiglu) {
  vnrt_tensor_type out[1];
  TU_OK(ctx, infer(VNRT_OP_RMS_NORM, INS(T(BF16, 3, 16), T(F32, 16)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], BF16, 3, 16);
  TU_OK(ctx, infer(VNRT_OP_RMS_NORM, INS(T(F16, 2, 5, 16)), ATTRS(tu_attr_f("eps", 1e-5)), out, 1));
  EXPECT_T(out[0], F16, 2, 5, 16);
  EXPECT_ERR(infer(VNRT_OP_RMS_NORM, INS(T(F32, 3, 16), T(F32, 8)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "w is f32[8]", "x is f32[3, 16]", "[16]");
  EXPECT_ERR(infer(VNRT_OP_RMS_NORM, INS(T(F32, 3, 16)), ATTRS(tu_attr_f("eps", -1)), out, 1),
             INVALID_ARGUMENT, "eps");
  EXPECT_ERR(infer(VNRT_OP_RMS_NORM, INS(S(F32)), NO_ATTRS, out, 1), SHAPE_MISMATCH, "x is f32[]");

  TU_OK(ctx, infer(VNRT_OP_SOFTMAX, INS(T(F16, 2, 7)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F16, 2, 7);
  TU_OK(ctx, infer(VNRT_OP_SOFTMAX, INS(T(F32, 2, 7)), ATTRS(tu_attr_i("axis", 0)), out, 1));
  EXPECT_ERR(infer(VNRT_OP_SOFTMAX, INS(T(F32, 2, 7)), ATTRS(tu_attr_i("axis", 2)), out, 1),
             SHAPE_MISMATCH, "x is f32[2, 7]", "axis 2");
  EXPECT_ERR(infer(VNRT_OP_SOFTMAX, INS(S(F32)), NO_ATTRS, out, 1), SHAPE_MISMATCH, "axis -1");

  TU_OK(ctx, infer(VNRT_OP_SWIGLU, INS(T(BF16, 4, 6), T(BF16, 4, 6)), ATTRS(tu_attr_f("limit", 7)),
                   out, 1));
  EXPECT_T(out[0], BF16, 4, 6);
  EXPECT_ERR(infer(VNRT_OP_SWIGLU, INS(T(F32, 4, 6), T(F32, 4, 5)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "g is f32[4, 6]", "u is f32[4, 5]", "shapes differ");
  EXPECT_ERR(infer(VNRT_OP_SWIGLU, INS(T(F32, 4, 6), T(F16, 4, 6)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "dtypes differ");
  EXPECT_ERR(
      infer(VNRT_OP_SWIGLU, INS(T(F32, 4), T(F32, 4)), ATTRS(tu_attr_f("limit", -1)), out, 1),
      INVALID_ARGUMENT, "limit");
}
END_TEST

/* ---- Positions and attention ----------------------------------------------------------- */

START_TEST(test_rope) {
  vnrt_tensor_type out[1];
  TU_OK(ctx, infer(VNRT_OP_ROPE, INS(T(F16, 5, 2, 64), T(I32, 5)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F16, 5, 2, 64);
  TU_OK(ctx, infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 64), T(I32, 5)),
                   ATTRS(tu_attr_i("dims", 16), tu_attr_i("interleaved", 0)), out, 1));
  EXPECT_T(out[0], F32, 5, 2, 64);
  EXPECT_ERR(infer(VNRT_OP_ROPE, INS(T(F32, 5, 64), T(I32, 5)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "x is f32[5, 64]", "rank 3");
  EXPECT_ERR(infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 64), T(I32, 4)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "pos is i32[4]", "x is f32[5, 2, 64]", "[5]");
  EXPECT_ERR(infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 64), T(F32, 5)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "pos is f32[5]", "i32");
  EXPECT_ERR(
      infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 64), T(I32, 5)), ATTRS(tu_attr_i("dims", 15)), out, 1),
      INVALID_ARGUMENT, "dims = 15", "even");
  EXPECT_ERR(
      infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 64), T(I32, 5)), ATTRS(tu_attr_i("dims", 66)), out, 1),
      INVALID_ARGUMENT, "dims = 66", "D = 64");
  EXPECT_ERR(infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 63), T(I32, 5)), NO_ATTRS, out, 1),
             INVALID_ARGUMENT, "dims = 63");
  EXPECT_ERR(
      infer(VNRT_OP_ROPE, INS(T(F32, 5, 2, 64), T(I32, 5)), ATTRS(tu_attr_f("theta", 0)), out, 1),
      INVALID_ARGUMENT, "theta");
}
END_TEST

START_TEST(test_attention) {
  vnrt_tensor_type out[1];
  /* GQA: 8 query heads over 2 kv heads, Dv differs from D, more keys than queries. */
  TU_OK(ctx, infer(VNRT_OP_ATTENTION, INS(T(BF16, 3, 8, 64), T(F32, 10, 2, 64), T(F16, 10, 2, 32)),
                   NO_ATTRS, out, 1));
  EXPECT_T(out[0], BF16, 3, 8, 32);
  TU_OK(ctx, infer(VNRT_OP_ATTENTION,
                   INS(T(F32, 4, 4, 16), T(F32, 4, 4, 16), T(F32, 4, 4, 16), T(F32, 4)),
                   ATTRS(tu_attr_f("scale", 0.25), tu_attr_i("causal", 0), tu_attr_i("window", 2)),
                   out, 1));
  EXPECT_T(out[0], F32, 4, 4, 16);
  /* More queries than keys is allowed (queries that see no key yield 0). */
  TU_OK(ctx, infer(VNRT_OP_ATTENTION, INS(T(F32, 6, 2, 8), T(F32, 2, 1, 8), T(F32, 2, 1, 8)),
                   NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 6, 2, 8);

  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 6, 64), T(F32, 10, 4, 64), T(F32, 10, 4, 64)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "q is f32[3, 6, 64]", "k is f32[10, 4, 64]", "multiple");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 8, 64), T(F32, 10, 2, 32), T(F32, 10, 2, 32)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "q is f32[3, 8, 64]", "k is f32[10, 2, 32]", "D differ");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 8, 64), T(F32, 10, 2, 64), T(F32, 9, 2, 64)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "k is f32[10, 2, 64]", "v is f32[9, 2, 64]", "S differ");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 8, 64), T(F32, 10, 2, 64), T(F32, 10, 4, 64)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "v is f32[10, 4, 64]", "Hkv");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION,
                   INS(T(F32, 3, 8, 64), T(F32, 10, 2, 64), T(F32, 10, 2, 64), T(F32, 2)), NO_ATTRS,
                   out, 1),
             SHAPE_MISMATCH, "sinks is f32[2]", "[8]");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 8, 64), T(F32, 0, 2, 64), T(F32, 0, 2, 64)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "S >= 1");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 64), T(F32, 10, 2, 64), T(F32, 10, 2, 64)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "q is f32[3, 64]", "rank 3");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 8, 64), T(F32, 10, 2, 64), T(F32, 10, 2, 64)),
                   ATTRS(tu_attr_i("window", -1)), out, 1),
             INVALID_ARGUMENT, "window = -1");
  EXPECT_ERR(infer(VNRT_OP_ATTENTION, INS(T(F32, 3, 8, 64), T(F32, 10, 2, 64)), NO_ATTRS, out, 1),
             INVALID_ARGUMENT, "takes 3 to 5 inputs, got 2");
}
END_TEST

/* ---- Indexing -------------------------------------------------------------------------- */

START_TEST(test_embedding_and_topk) {
  vnrt_tensor_type out[2];
  TU_OK(ctx, infer(VNRT_OP_EMBEDDING, INS(T(BF16, 100, 32), T(I32, 2, 5)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 2, 5, 32);
  TU_OK(ctx, infer(VNRT_OP_EMBEDDING, INS(T(F16, 100, 32), S(I32)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 32);
  EXPECT_ERR(infer(VNRT_OP_EMBEDDING, INS(T(F32, 100, 32), T(F32, 5)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "ids is f32[5]", "i32");
  EXPECT_ERR(infer(VNRT_OP_EMBEDDING, INS(T(F32, 100), T(I32, 5)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "table is f32[100]", "[V, D]");
  EXPECT_ERR(infer(VNRT_OP_EMBEDDING, INS(T(F32, 100, 32), T(I32, 1, 2, 3, 4)), NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "ids is i32[1, 2, 3, 4]");

  TU_OK(ctx, infer(VNRT_OP_TOPK, INS(T(F16, 3, 16)), ATTRS(tu_attr_i("k", 4)), out, 2));
  EXPECT_T(out[0], F16, 3, 4);
  EXPECT_T(out[1], I32, 3, 4);
  TU_OK(ctx, infer(VNRT_OP_TOPK, INS(T(F32, 16)), ATTRS(tu_attr_i("k", 16)), out, 2));
  EXPECT_T(out[0], F32, 16);
  EXPECT_ERR(infer(VNRT_OP_TOPK, INS(T(F32, 3, 16)), ATTRS(tu_attr_i("k", 17)), out, 2),
             INVALID_ARGUMENT, "x is f32[3, 16]", "k = 17", "E = 16");
  EXPECT_ERR(infer(VNRT_OP_TOPK, INS(T(F32, 3, 16)), ATTRS(tu_attr_i("k", 0)), out, 2),
             INVALID_ARGUMENT, "k = 0");
  EXPECT_ERR(infer(VNRT_OP_TOPK, INS(T(F32, 3, 16)), ATTRS(tu_attr_i("k", 2)), out, 1),
             INVALID_ARGUMENT, "has 2 results, but 1 were requested");
}
END_TEST

/* ---- mHC ------------------------------------------------------------------------------- */

START_TEST(test_mhc) {
  vnrt_tensor_type out[3];
  TU_OK(ctx, infer(VNRT_OP_HC_EXPAND, INS(T(BF16, 5, 64)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], BF16, 5, 4, 64);
  TU_OK(ctx, infer(VNRT_OP_HC_EXPAND, INS(T(F32, 5, 64)), ATTRS(tu_attr_i("n", 2)), out, 1));
  EXPECT_T(out[0], F32, 5, 2, 64);
  EXPECT_ERR(infer(VNRT_OP_HC_EXPAND, INS(T(F32, 5, 64)), ATTRS(tu_attr_i("n", 0)), out, 1),
             INVALID_ARGUMENT, "n = 0");
  EXPECT_ERR(infer(VNRT_OP_HC_EXPAND, INS(T(F32, 5, 2, 64)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "x is f32[5, 2, 64]", "[T, C]");

  /* n = 4, C = 64: fn [24, 256], scale [3], base [24]. */
  TU_OK(ctx, infer(VNRT_OP_HC_PRE, INS(T(BF16, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F16, 24)),
                   NO_ATTRS, out, 3));
  EXPECT_T(out[0], BF16, 5, 64);
  EXPECT_T(out[1], F32, 5, 4);
  EXPECT_T(out[2], F32, 5, 4, 4);
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 200), T(F32, 3), T(F32, 24)),
                   NO_ATTRS, out, 3),
             SHAPE_MISMATCH, "node 'r0' (hc_pre)", "fn is f32[24, 200]", "X is f32[5, 4, 64]",
             "[24, 256]");
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 2), T(F32, 24)),
                   NO_ATTRS, out, 3),
             SHAPE_MISMATCH, "scale is f32[2]", "[3]");
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 16)),
                   NO_ATTRS, out, 3),
             SHAPE_MISMATCH, "base is f32[16]", "[24]");
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 24)),
                   ATTRS(tu_attr_i("iters", 0)), out, 3),
             INVALID_ARGUMENT, "iters = 0");
  /* iters scales the work beyond the tensor sizes: at most 1000 (docs/ops.md, "Attribute
   * limits"), checked when the node is added. */
  TU_OK(ctx, infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 24)),
                   ATTRS(tu_attr_i("iters", 1000)), out, 3));
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 24)),
                   ATTRS(tu_attr_i("iters", 4400000)), out, 3),
             INVALID_ARGUMENT, "node 'r0' (hc_pre)",
             "attribute iters = 4400000 exceeds the limit 1000");
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 24)),
                   ATTRS(tu_attr_i("iters", 1001)), out, 3),
             INVALID_ARGUMENT, "attribute iters = 1001 exceeds the limit 1000");
  /* Beyond int32 (the params' width): still the limit's message, never a wrapped value. */
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(F32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 24)),
                   ATTRS(tu_attr_i("iters", 4294967297LL)), out, 3),
             INVALID_ARGUMENT, "attribute iters = 4294967297 exceeds the limit 1000");
  EXPECT_ERR(infer(VNRT_OP_HC_PRE, INS(T(I32, 5, 4, 64), T(F32, 24, 256), T(F32, 3), T(F32, 24)),
                   NO_ATTRS, out, 3),
             SHAPE_MISMATCH, "X is i32[5, 4, 64]", "float");

  TU_OK(ctx,
        infer(VNRT_OP_HC_POST, INS(T(F16, 5, 4, 64), T(F32, 5, 64), T(F32, 5, 4), T(F32, 5, 4, 4)),
              NO_ATTRS, out, 1));
  EXPECT_T(out[0], F16, 5, 4, 64);
  EXPECT_ERR(
      infer(VNRT_OP_HC_POST, INS(T(F32, 5, 4, 64), T(F32, 5, 32), T(F32, 5, 4), T(F32, 5, 4, 4)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "y is f32[5, 32]", "X is f32[5, 4, 64]", "[5, 64]");
  EXPECT_ERR(
      infer(VNRT_OP_HC_POST, INS(T(F32, 5, 4, 64), T(F32, 5, 64), T(F32, 5, 3), T(F32, 5, 4, 4)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "post is f32[5, 3]", "[5, 4]");
  EXPECT_ERR(
      infer(VNRT_OP_HC_POST, INS(T(F32, 5, 4, 64), T(F32, 5, 64), T(F32, 5, 4), T(F32, 5, 4, 3)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "comb is f32[5, 4, 3]", "[5, 4, 4]");

  TU_OK(ctx, infer(VNRT_OP_HC_HEAD, INS(T(BF16, 5, 4, 64), T(F32, 4, 256), T(F32, 1), T(F32, 4)),
                   NO_ATTRS, out, 1));
  EXPECT_T(out[0], BF16, 5, 64);
  EXPECT_ERR(infer(VNRT_OP_HC_HEAD, INS(T(F32, 5, 4, 64), T(F32, 4, 64), T(F32, 1), T(F32, 4)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "fn is f32[4, 64]", "[4, 256]");
  EXPECT_ERR(infer(VNRT_OP_HC_HEAD, INS(T(F32, 5, 4, 64), T(F32, 4, 256), T(F32, 3), T(F32, 4)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "scale is f32[3]", "[1]");
  EXPECT_ERR(infer(VNRT_OP_HC_HEAD, INS(T(F32, 5, 4, 64), T(F32, 4, 256), T(F32, 1), T(F32, 5)),
                   NO_ATTRS, out, 1),
             SHAPE_MISMATCH, "base is f32[5]", "[4]");

  TU_OK(ctx, infer(VNRT_OP_SINKHORN, INS(T(BF16, 2, 5, 4, 4)), NO_ATTRS, out, 1));
  EXPECT_T(out[0], F32, 2, 5, 4, 4);
  TU_OK(ctx, infer(VNRT_OP_SINKHORN, INS(T(F32, 3, 3)), ATTRS(tu_attr_i("iters", 1)), out, 1));
  EXPECT_T(out[0], F32, 3, 3);
  TU_OK(ctx, infer(VNRT_OP_SINKHORN, INS(T(F32, 3, 3)), ATTRS(tu_attr_i("iters", 1000)), out, 1));
  EXPECT_ERR(infer(VNRT_OP_SINKHORN, INS(T(F32, 3, 3)), ATTRS(tu_attr_i("iters", 4400000)), out, 1),
             INVALID_ARGUMENT, "node 'r0' (sinkhorn)",
             "attribute iters = 4400000 exceeds the limit 1000");
  EXPECT_ERR(infer(VNRT_OP_SINKHORN, INS(T(F32, 3, 3)), ATTRS(tu_attr_i("iters", 1001)), out, 1),
             INVALID_ARGUMENT, "attribute iters = 1001 exceeds the limit 1000");
  EXPECT_ERR(infer(VNRT_OP_SINKHORN, INS(T(F32, 3, 3)), ATTRS(tu_attr_i("iters", -1)), out, 1),
             INVALID_ARGUMENT, "attribute iters = -1 must be >= 1");
  EXPECT_ERR(infer(VNRT_OP_SINKHORN, INS(T(F32, 5, 4, 3)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "L is f32[5, 4, 3]", "last two dims");
  EXPECT_ERR(infer(VNRT_OP_SINKHORN, INS(T(F32, 4)), NO_ATTRS, out, 1), SHAPE_MISMATCH,
             "L is f32[4]");
}
END_TEST

/* ---- MoE ------------------------------------------------------------------------------- */

START_TEST(test_moe_route) {
  vnrt_tensor_type out[2];
  vnrt_attr v3[] = {tu_attr_i("k", 8), tu_attr_word("score", "sigmoid"), tu_attr_i("n_group", 8),
                    tu_attr_i("topk_group", 4), tu_attr_f("scale", 2.5)};
  TU_OK(ctx, infer(VNRT_OP_MOE_ROUTE, INS(T(BF16, 7, 256), T(F32, 256)), v3, 5, out, 2));
  EXPECT_T(out[0], F32, 7, 8);
  EXPECT_T(out[1], I32, 7, 8);
  TU_OK(ctx, infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)),
                   ATTRS(tu_attr_i("k", 6), tu_attr_word("score", "sqrt_softplus")), out, 2));
  EXPECT_T(out[0], F32, 7, 6);
  EXPECT_T(out[1], I32, 7, 6);
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)),
                   ATTRS(tu_attr_i("k", 65), tu_attr_word("score", "softmax")), out, 2),
             INVALID_ARGUMENT, "logits is f32[7, 64]", "k = 65", "E = 64");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)),
            ATTRS(tu_attr_i("k", 2), tu_attr_word("score", "softmax"), tu_attr_i("n_group", 6)),
            out, 2),
      INVALID_ARGUMENT, "n_group = 6", "divide E = 64");
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)),
                   ATTRS(tu_attr_i("k", 2), tu_attr_word("score", "softmax"),
                         tu_attr_i("n_group", 8), tu_attr_i("topk_group", 9)),
                   out, 2),
             INVALID_ARGUMENT, "topk_group = 9", "n_group = 8");
  /* 8 groups of 8, 2 groups kept: at most 16 eligible experts. */
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)),
                   ATTRS(tu_attr_i("k", 17), tu_attr_word("score", "softmax"),
                         tu_attr_i("n_group", 8), tu_attr_i("topk_group", 2)),
                   out, 2),
             INVALID_ARGUMENT, "k = 17", "16 experts");
  TU_OK(ctx, infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)),
                   ATTRS(tu_attr_i("k", 16), tu_attr_word("score", "softmax"),
                         tu_attr_i("n_group", 8), tu_attr_i("topk_group", 2)),
                   out, 2));
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64), T(F32, 63)),
                   ATTRS(tu_attr_i("k", 2), tu_attr_word("score", "softmax")), out, 2),
             SHAPE_MISMATCH, "bias is f32[63]", "logits is f32[7, 64]", "[64]");
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 64)),
                   ATTRS(tu_attr_i("k", 2), tu_attr_word("score", "softmax")), out, 2),
             SHAPE_MISMATCH, "logits is f32[64]", "[T, E]");
  EXPECT_ERR(infer(VNRT_OP_MOE_ROUTE, INS(T(F32, 7, 64)), ATTRS(tu_attr_i("k", 2)), out, 2),
             INVALID_ARGUMENT, "missing required attribute 'score'");

  TU_OK(ctx, infer(VNRT_OP_MOE_HASH_ROUTE, INS(T(F16, 7, 64), T(I32, 7), T(I32, 1000, 6)),
                   ATTRS(tu_attr_word("score", "sqrt_softplus")), out, 2));
  EXPECT_T(out[0], F32, 7, 6);
  EXPECT_T(out[1], I32, 7, 6);
  EXPECT_ERR(infer(VNRT_OP_MOE_HASH_ROUTE, INS(T(F32, 7, 64), T(I32, 6), T(I32, 1000, 6)),
                   ATTRS(tu_attr_word("score", "softmax")), out, 2),
             SHAPE_MISMATCH, "ids is i32[6]", "logits is f32[7, 64]", "[7]");
  EXPECT_ERR(infer(VNRT_OP_MOE_HASH_ROUTE, INS(T(F32, 7, 64), T(I32, 7), T(F32, 1000, 6)),
                   ATTRS(tu_attr_word("score", "softmax")), out, 2),
             SHAPE_MISMATCH, "tid2eid is f32[1000, 6]", "i32");
  EXPECT_ERR(infer(VNRT_OP_MOE_HASH_ROUTE, INS(T(F32, 7, 64), T(I32, 7), T(I32, 1000)),
                   ATTRS(tu_attr_word("score", "softmax")), out, 2),
             SHAPE_MISMATCH, "tid2eid is i32[1000]", "[V, k]");
}
END_TEST

START_TEST(test_moe_ffn) {
  vnrt_tensor_type out[1];
  /* T 5, C 32, k 2, E 4, F 48. */
  TU_OK(ctx, infer(VNRT_OP_MOE_FFN,
                   INS(T(BF16, 5, 32), T(I32, 5, 2), T(F32, 5, 2), T(F16, 4, 96, 32),
                       T(BF16, 4, 32, 48)),
                   ATTRS(tu_attr_f("limit", 10)), out, 1));
  EXPECT_T(out[0], BF16, 5, 32);
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(I32, 5, 2), T(F32, 5, 2), T(F32, 4, 96, 32), T(F32, 4, 32, 40)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "w_down is f32[4, 32, 40]", "w_gate_up is f32[4, 96, 32]", "[4, 32, 48]");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(I32, 5, 2), T(F32, 5, 2), T(F32, 4, 96, 16), T(F32, 4, 32, 48)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "w_gate_up is f32[4, 96, 16]", "x is f32[5, 32]", "[4, 96, 32]");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(I32, 5, 2), T(F32, 5, 2), T(F32, 4, 95, 32), T(F32, 4, 32, 48)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "w_gate_up is f32[4, 95, 32]", "even");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(I32, 5, 2), T(F32, 5, 3), T(F32, 4, 96, 32), T(F32, 4, 32, 48)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "weights is f32[5, 3]", "experts is i32[5, 2]");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(I32, 4, 2), T(F32, 4, 2), T(F32, 4, 96, 32), T(F32, 4, 32, 48)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "experts is i32[4, 2]", "x is f32[5, 32]");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(F32, 5, 2), T(F32, 5, 2), T(F32, 4, 96, 32), T(F32, 4, 32, 48)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "experts is f32[5, 2]", "i32");
  EXPECT_ERR(
      infer(VNRT_OP_MOE_FFN,
            INS(T(F32, 5, 32), T(I32, 5, 2), T(F32, 5, 2), T(F32, 3, 96, 32), T(F32, 4, 32, 48)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "w_down is f32[4, 32, 48]", "[3, 32, 48]");
}
END_TEST

/* ---- Engram ---------------------------------------------------------------------------- */

START_TEST(test_ngram_hash) {
  vnrt_tensor_type out[1];
  const int64_t mult[3] = {1, 1000003, 998244353};
  const int64_t primes[8] = {1009, 1013, 1019, 1021, 2003, 2011, 2017, 2027}; /* (3-1) x 4 */
  TU_OK(ctx,
        infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 2)),
              ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8)), out, 1));
  EXPECT_T(out[0], I32, 9, 8);
  TU_OK(ctx, infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 2)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8),
                         tu_attr_i("max_n", 3), tu_attr_i("heads", 4)),
                   out, 1));
  EXPECT_T(out[0], I32, 9, 8);
  TU_OK(ctx,
        infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 1)),
              ATTRS(tu_attr_ints("mult", mult, 2), tu_attr_ints("primes", primes, 3)), out, 1));
  EXPECT_T(out[0], I32, 9, 3);
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 2)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 7)), out, 1),
             INVALID_ARGUMENT, "primes has 7 values", "(N-1)*K");
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 2)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8),
                         tu_attr_i("heads", 3)),
                   out, 1),
             INVALID_ARGUMENT, "primes has 8 values");
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 2)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8),
                         tu_attr_i("max_n", 4)),
                   out, 1),
             INVALID_ARGUMENT, "max_n = 4", "3 values");
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 0)),
                   ATTRS(tu_attr_ints("mult", mult, 1), tu_attr_ints("primes", primes, 1)), out, 1),
             INVALID_ARGUMENT, "mult has 1 values", "N >= 2");
  const int64_t bad_primes[2] = {7, 0};
  EXPECT_ERR(
      infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 1)),
            ATTRS(tu_attr_ints("mult", mult, 2), tu_attr_ints("primes", bad_primes, 2)), out, 1),
      INVALID_ARGUMENT, "primes[1] = 0");
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9), T(I32, 3)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8)), out, 1),
             SHAPE_MISMATCH, "hist is i32[3]", "[2]");
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(F32, 9), T(I32, 2)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8)), out, 1),
             SHAPE_MISMATCH, "ids is f32[9]", "i32");
  EXPECT_ERR(infer(VNRT_OP_NGRAM_HASH, INS(T(I32, 9, 1), T(I32, 2)),
                   ATTRS(tu_attr_ints("mult", mult, 3), tu_attr_ints("primes", primes, 8)), out, 1),
             SHAPE_MISMATCH, "ids is i32[9, 1]", "[T]");
}
END_TEST

START_TEST(test_engram_lookup_gate_conv) {
  vnrt_tensor_type out[2];
  TU_OK(ctx, infer(VNRT_OP_ENGRAM_LOOKUP, INS(T(BF16, 5000, 16), T(I32, 9, 8), T(I32, 8)), NO_ATTRS,
                   out, 1));
  EXPECT_T(out[0], F32, 9, 128);
  EXPECT_ERR(infer(VNRT_OP_ENGRAM_LOOKUP, INS(T(F32, 5000, 16), T(I32, 9, 8), T(I32, 7)), NO_ATTRS,
                   out, 1),
             SHAPE_MISMATCH, "offsets is i32[7]", "idx is i32[9, 8]", "[8]");
  EXPECT_ERR(
      infer(VNRT_OP_ENGRAM_LOOKUP, INS(T(F32, 5000, 16), T(I32, 9), T(I32, 9)), NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "idx is i32[9]", "[T, H]");
  EXPECT_ERR(infer(VNRT_OP_ENGRAM_LOOKUP, INS(T(I32, 5000, 16), T(I32, 9, 8), T(I32, 8)), NO_ATTRS,
                   out, 1),
             SHAPE_MISMATCH, "table is i32[5000, 16]", "float");

  /* T 3, M 2, C 16. */
  TU_OK(ctx,
        infer(VNRT_OP_ENGRAM_GATE,
              INS(T(F16, 3, 2, 16), T(F32, 3, 2, 16), T(BF16, 3, 16), T(F32, 2, 16), T(F32, 2, 16)),
              ATTRS(tu_attr_i("sqrt_gate", 0)), out, 1));
  EXPECT_T(out[0], F16, 3, 2, 16);
  EXPECT_ERR(
      infer(VNRT_OP_ENGRAM_GATE,
            INS(T(F32, 3, 2, 16), T(F32, 3, 2, 8), T(F32, 3, 16), T(F32, 2, 16), T(F32, 2, 16)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "k is f32[3, 2, 8]", "h is f32[3, 2, 16]");
  EXPECT_ERR(
      infer(VNRT_OP_ENGRAM_GATE,
            INS(T(F32, 3, 2, 16), T(F32, 3, 2, 16), T(F32, 3, 2, 16), T(F32, 2, 16), T(F32, 2, 16)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "v is f32[3, 2, 16]", "[3, 16]");
  EXPECT_ERR(
      infer(VNRT_OP_ENGRAM_GATE,
            INS(T(F32, 3, 2, 16), T(F32, 3, 2, 16), T(F32, 3, 16), T(F32, 2, 16), T(F32, 3, 16)),
            NO_ATTRS, out, 1),
      SHAPE_MISMATCH, "wk is f32[3, 16]", "[2, 16]");

  /* K 4, dilation 2: P = 6; w [M*C, K] = [32, 4]. */
  TU_OK(ctx, infer(VNRT_OP_SHORT_CONV,
                   INS(T(BF16, 5, 2, 16), T(BF16, 6, 2, 16), T(F32, 2, 16), T(F32, 32, 4)),
                   ATTRS(tu_attr_i("dilation", 2)), out, 2));
  EXPECT_T(out[0], BF16, 5, 2, 16);
  EXPECT_T(out[1], BF16, 6, 2, 16);
  TU_OK(ctx, infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F32, 0, 2, 16), T(F32, 2, 16), T(F32, 32, 1)),
                   ATTRS(tu_attr_i("dilation", 3)), out, 2));
  EXPECT_T(out[1], F32, 0, 2, 16);
  EXPECT_ERR(infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F32, 3, 2, 16), T(F32, 2, 16), T(F32, 32, 4)),
                   ATTRS(tu_attr_i("dilation", 2)), out, 2),
             SHAPE_MISMATCH, "hist is f32[3, 2, 16]", "w is f32[32, 4]", "[6, 2, 16]");
  EXPECT_ERR(infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F16, 6, 2, 16), T(F32, 2, 16), T(F32, 32, 4)),
                   ATTRS(tu_attr_i("dilation", 2)), out, 2),
             SHAPE_MISMATCH, "hist is f16[6, 2, 16]", "u is f32[5, 2, 16]", "dtype");
  EXPECT_ERR(infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F32, 6, 2, 16), T(F32, 2, 16), T(F32, 16, 4)),
                   ATTRS(tu_attr_i("dilation", 2)), out, 2),
             SHAPE_MISMATCH, "w is f32[16, 4]", "[32, 4]");
  EXPECT_ERR(infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F32, 6, 2, 16), T(F32, 2, 8), T(F32, 32, 4)),
                   ATTRS(tu_attr_i("dilation", 2)), out, 2),
             SHAPE_MISMATCH, "wn is f32[2, 8]", "[2, 16]");
  EXPECT_ERR(infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F32, 6, 2, 16), T(F32, 2, 16), T(F32, 32, 4)),
                   ATTRS(tu_attr_i("dilation", 0)), out, 2),
             INVALID_ARGUMENT, "dilation = 0");
  EXPECT_ERR(infer(VNRT_OP_SHORT_CONV,
                   INS(T(F32, 5, 2, 16), T(F32, 6, 2, 16), T(F32, 2, 16), T(F32, 32, 4)), NO_ATTRS,
                   out, 2),
             INVALID_ARGUMENT, "missing required attribute 'dilation'");
}
END_TEST

/* ---- Builder invariants ---------------------------------------------------------------- */

START_TEST(test_rejected_node_leaves_graph_unchanged) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = T(F32, 4, 64), tw = T(F16, 128, 32);
  vnrt_value x, w, h;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "w", &tw, 1, &w));
  const char *names[] = {"h"};
  h = 1234;
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){x, w}, 2, NULL, 0, names, &h, 1),
             SHAPE_MISMATCH, "node 'h' (linear): x is f32[4, 64] but w is f16[128, 32]",
             "inner dims differ");
  ck_assert_int_eq(h, -1);
  ck_assert_int_eq(g->n_values, 2);
  ck_assert_int_eq(g->n_nodes, 0);
  ck_assert_int_eq(vnrt_graph_find(g, "h"), -1);
  ck_assert_int_eq(vnrt_graph_input_count(g), 2);

  /* Rejections at every stage: arity, input id, attribute, result count, names. */
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){x}, 1, NULL, 0, names, &h, 1),
             INVALID_ARGUMENT, "node 'h' (linear)", "takes 2 to 3 inputs, got 1");
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_NEG, (vnrt_value[]){7}, 1, NULL, 0, names, &h, 1),
             INVALID_ARGUMENT, "node 'h' (neg)", "value 7");
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_NEG, (vnrt_value[]){-1}, 1, NULL, 0, names, &h, 1),
             INVALID_ARGUMENT, "value -1");
  EXPECT_ERR(
      vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, (vnrt_attr[]){tu_attr_i("s", 1)}, 1, names, &h, 1),
      INVALID_ARGUMENT, "unknown attribute 's'");
  vnrt_value two[2];
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, NULL, 0, NULL, two, 2), INVALID_ARGUMENT,
             "has 1 result, but 2 were requested");
  EXPECT_ERR(vnrt_graph_add_node(g, (vnrt_op)99, &x, 1, NULL, 0, names, &h, 1), INVALID_ARGUMENT,
             "unknown op 99");
  ck_assert_int_eq(g->n_values, 2);
  ck_assert_int_eq(g->n_nodes, 0);

  /* The name is still free: a correct node may take it. */
  vnrt_tensor_type tw2 = T(F16, 128, 64);
  vnrt_value w2;
  TU_OK(ctx, vnrt_graph_add_input(g, "w2", &tw2, 1, &w2));
  TU_OK(ctx,
        vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){x, w2}, 2, NULL, 0, names, &h, 1));
  ck_assert_int_eq(h, 3);
  ck_assert_int_eq(vnrt_graph_find(g, "h"), 3);
  ck_assert_int_eq(g->n_nodes, 1);
  ck_assert_int_eq(g->values[h].kind, VN_VALUE_NODE);
  ck_assert_int_eq(g->values[h].producer, 0);
  ck_assert_int_eq(g->values[h].slot, 0);
  ck_assert_int_eq(g->nodes[0].op, VNRT_OP_LINEAR);
  ck_assert_int_eq(g->nodes[0].n_inputs, 2);
  ck_assert_int_eq(g->nodes[0].inputs[0], x);
  ck_assert_int_eq(g->nodes[0].inputs[1], w2);
  ck_assert_int_eq(g->nodes[0].outputs[0], h);
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_private_add_node_message) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type ta = T(F32, 4, 3), tb = T(F32, 5, 2);
  int32_t a, b, r = 5;
  char err[512];
  ck_assert_int_eq(vn_graph_add_input(g, "a", &ta, 0, &a, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(vn_graph_add_input(g, "b", &tb, 1, &b, err, sizeof err), VNRT_OK);
  const char *names[] = {"c"};
  ck_assert_int_eq(vn_graph_add_node(g, VNRT_OP_MATMUL, (int32_t[]){a, b}, 2, NULL, 0, names, &r, 1,
                                     err, sizeof err),
                   VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_int_eq(r, -1);
  ck_assert_msg(strstr(err, "matmul: a is f32[4, 3] but b is f32[5, 2]") == err, "%s", err);
  ck_assert_msg(strstr(err, "inner dims differ") != NULL, "%s", err);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), "inner dims") == NULL,
                "private call set the context's error");
  ck_assert_int_eq(vn_graph_add_input(g, "a", &ta, 0, &a, err, sizeof err),
                   VNRT_ERROR_INVALID_GRAPH);
  ck_assert_msg(strstr(err, "'a' is already defined") != NULL, "%s", err);
  ck_assert_int_eq(vn_graph_add_output(g, b, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(vn_graph_add_output(g, b, err, sizeof err), VNRT_ERROR_INVALID_GRAPH);
  ck_assert_msg(strstr(err, "'b' is already marked") != NULL, "%s", err);
  ck_assert_int_eq(vn_graph_add_output(g, 9, err, sizeof err), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_names_unique_and_generated) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = T(F32, 2, 8);
  vnrt_value x, y, v;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  EXPECT_ERR(vnrt_graph_add_input(g, "x", &tx, 1, &v), INVALID_GRAPH, "'x' is already defined");
  ck_assert_int_eq(v, -1);
  EXPECT_ERR(vnrt_graph_add_input(g, "1x", &tx, 0, &v), INVALID_GRAPH, "'1x' is not valid");
  EXPECT_ERR(vnrt_graph_add_input(g, "output", &tx, 0, &v), INVALID_GRAPH, "'output'");
  EXPECT_ERR(vnrt_graph_add_input(g, NULL, &tx, 0, &v), INVALID_GRAPH, "not valid");
  EXPECT_ERR(vnrt_graph_add_input(g, "%0", &tx, 0, &v), INVALID_GRAPH, "'%0' is not valid");
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, NULL, 0, (const char *[]){"x"}, &y, 1),
             INVALID_GRAPH, "node 'x' (neg)", "'x' is already defined");
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, NULL, 0, (const char *[]){"a b"}, &y, 1),
             INVALID_GRAPH, "'a b' is not valid");
  vnrt_value two[2];
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_TOPK, &x, 1, (vnrt_attr[]){tu_attr_i("k", 2)}, 1,
                                 (const char *[]){"v", "v"}, two, 2),
             INVALID_GRAPH, "'v' is already defined");
  ck_assert_int_eq(g->n_values, 1);

  /* Generated names "%N" (value ids) for NULL names, never colliding with user names. */
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, NULL, 0, NULL, &y, 1));
  ck_assert_str_eq(vnrt_graph_value_name(g, y), "%1");
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_TOPK, &y, 1, (vnrt_attr[]){tu_attr_i("k", 3)}, 1,
                                 (const char *[]){NULL, "idx"}, two, 2));
  ck_assert_str_eq(vnrt_graph_value_name(g, two[0]), "%2");
  ck_assert_str_eq(vnrt_graph_value_name(g, two[1]), "idx");
  ck_assert_int_eq(vnrt_graph_find(g, "%1"), y);
  ck_assert_int_eq(vnrt_graph_find(g, "idx"), two[1]);
  /* A generated-name node is known by its generated name in messages. */
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_TOPK, &y, 1, (vnrt_attr[]){tu_attr_i("k", 9)}, 1, NULL,
                                 two, 2),
             INVALID_ARGUMENT, "node '%4' (topk)", "k = 9");
  /* Every name in the graph is distinct. */
  for (int32_t i = 0; i < g->n_values; ++i) {
    for (int32_t j = 0; j < i; ++j) ck_assert_str_ne(g->values[i].name, g->values[j].name);
  }
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_type_limits) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value v;
  vnrt_tensor_type huge = T(F32, INT64_C(1) << 30, INT64_C(1) << 30); /* 2^62 bytes */
  EXPECT_ERR(vnrt_graph_add_input(g, "h", &huge, 0, &v), INVALID_ARGUMENT,
             "input 'h' is f32[1073741824, 1073741824]", "huge dims", "2^48");
  vnrt_tensor_type wrap = T(I32, INT64_C(1) << 32, INT64_C(1) << 32, INT64_C(1) << 32);
  EXPECT_ERR(vnrt_graph_add_input(g, "h", &wrap, 1, &v), INVALID_ARGUMENT, "param 'h'",
             "huge dims");
  /* Exactly 2^48 bytes is accepted; one element more is not. */
  vnrt_tensor_type edge = T(F32, INT64_C(1) << 23, INT64_C(1) << 23);
  TU_OK(ctx, vnrt_graph_add_input(g, "edge", &edge, 1, &v));
  vnrt_tensor_type over = T(F32, (INT64_C(1) << 23) + 1, INT64_C(1) << 23);
  EXPECT_ERR(vnrt_graph_add_input(g, "over", &over, 1, &v), INVALID_ARGUMENT, "huge dims");
  vnrt_tensor_type neg = T(F32, 3, -1);
  EXPECT_ERR(vnrt_graph_add_input(g, "n", &neg, 0, &v), INVALID_ARGUMENT, "dim 1 is negative");
  vnrt_tensor_type rank5 = T(F32, 1, 1, 1, 1);
  rank5.rank = 5;
  EXPECT_ERR(vnrt_graph_add_input(g, "r", &rank5, 0, &v), INVALID_ARGUMENT, "rank 5");
  vnrt_tensor_type bad = T(F32, 3);
  bad.dtype = (vnrt_dtype)9;
  EXPECT_ERR(vnrt_graph_add_input(g, "d", &bad, 0, &v), INVALID_ARGUMENT, "invalid dtype");
  bad.dtype = VNRT_DTYPE_INVALID;
  EXPECT_ERR(vnrt_graph_add_input(g, "d", &bad, 0, &v), INVALID_ARGUMENT, "invalid dtype");
  EXPECT_ERR(vnrt_graph_add_input(g, "d", NULL, 0, &v), INVALID_ARGUMENT, "type is NULL");
  /* A zero-size tensor is fine, but not one whose other dims are beyond the limit. */
  vnrt_tensor_type empty = T(F32, 0, 1000);
  TU_OK(ctx, vnrt_graph_add_input(g, "empty", &empty, 0, &v));
  vnrt_tensor_type empty_huge = T(F32, 0, INT64_C(1) << 50);
  EXPECT_ERR(vnrt_graph_add_input(g, "eh", &empty_huge, 0, &v), INVALID_ARGUMENT, "huge dims");
  ck_assert_int_eq(g->n_values, 2);

  /* An inferred result beyond the limit is rejected too: [2^30 ids] x [2^20 D] f32 rows. */
  vnrt_tensor_type table = T(F32, 16, INT64_C(1) << 20), ids = T(I32, INT64_C(1) << 30);
  vnrt_value t, i, e;
  TU_OK(ctx, vnrt_graph_add_input(g, "table", &table, 1, &t));
  TU_OK(ctx, vnrt_graph_add_input(g, "ids", &ids, 0, &i));
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_EMBEDDING, (vnrt_value[]){t, i}, 2, NULL, 0,
                                 (const char *[]){"e"}, &e, 1),
             INVALID_ARGUMENT, "node 'e' (embedding)", "result 0 is f32[1073741824, 1048576]",
             "huge dims");
  ck_assert_int_eq(g->n_nodes, 0);
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_lookups_and_outputs) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = T(F16, 3, 8), tw = T(BF16, 4, 8), tb = T(F32, 4);
  vnrt_value x, w, b, y, z;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "layers.0.w", &tw, 1, &w));
  TU_OK(ctx, vnrt_graph_add_input(g, "b", &tb, 1, &b));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, (vnrt_value[]){x, w}, 2, NULL, 0,
                                 (const char *[]){"y"}, &y, 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SOFTMAX, &y, 1, NULL, 0, (const char *[]){"z"}, &z, 1));
  ck_assert_int_eq(vnrt_graph_input_count(g), 3);
  int is_param = -1;
  ck_assert_int_eq(vnrt_graph_input(g, 0, &is_param), x);
  ck_assert_int_eq(is_param, 0);
  ck_assert_int_eq(vnrt_graph_input(g, 1, &is_param), w);
  ck_assert_int_eq(is_param, 1);
  ck_assert_int_eq(vnrt_graph_input(g, 2, NULL), b);
  ck_assert_int_eq(vnrt_graph_input(g, 3, &is_param), -1);
  ck_assert_int_eq(is_param, 0);
  ck_assert_int_eq(vnrt_graph_input(g, -1, NULL), -1);
  ck_assert_int_eq(g->values[w].kind, VN_VALUE_PARAM);
  ck_assert_int_eq(g->values[x].kind, VN_VALUE_INPUT);
  ck_assert_int_eq(g->values[x].producer, -1);

  ck_assert_str_eq(vnrt_graph_value_name(g, w), "layers.0.w");
  ck_assert_ptr_null(vnrt_graph_value_name(g, 5));
  ck_assert_ptr_null(vnrt_graph_value_name(g, -1));
  ck_assert_ptr_null(vnrt_graph_value_name(NULL, 0));
  ck_assert_int_eq(vnrt_graph_find(g, "layers.0.w"), w);
  ck_assert_int_eq(vnrt_graph_find(g, "z"), z);
  ck_assert_int_eq(vnrt_graph_find(g, "nope"), -1);
  ck_assert_int_eq(vnrt_graph_find(g, NULL), -1);
  ck_assert_int_eq(vnrt_graph_find(NULL, "x"), -1);

  vnrt_tensor_type t;
  TU_OK(ctx, vnrt_graph_value_type(g, z, &t));
  EXPECT_T(t, F16, 3, 4);
  TU_OK(ctx, vnrt_graph_value_type(g, b, &t));
  EXPECT_T(t, F32, 4);
  EXPECT_ERR(vnrt_graph_value_type(g, 77, &t), NOT_FOUND, "77");
  ck_assert_int_eq(t.dtype, VNRT_DTYPE_INVALID); /* zeroed on failure */
  ck_assert_int_eq(vnrt_graph_value_type(g, z, NULL), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_graph_value_type(NULL, z, &t), VNRT_ERROR_INVALID_ARGUMENT);

  ck_assert_int_eq(vnrt_graph_output_count(g), 0);
  TU_OK(ctx, vnrt_graph_add_output(g, z));
  TU_OK(ctx, vnrt_graph_add_output(g, x));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  EXPECT_ERR(vnrt_graph_add_output(g, z), INVALID_GRAPH, "'z' is already marked");
  EXPECT_ERR(vnrt_graph_add_output(g, 42), INVALID_ARGUMENT, "42");
  ck_assert_int_eq(vnrt_graph_output_count(g), 3);
  ck_assert_int_eq(vnrt_graph_output(g, 0), z);
  ck_assert_int_eq(vnrt_graph_output(g, 1), x);
  ck_assert_int_eq(vnrt_graph_output(g, 2), y);
  ck_assert_int_eq(vnrt_graph_output(g, 3), -1);
  ck_assert_int_eq(vnrt_graph_output(NULL, 0), -1);
  ck_assert_int_eq(vnrt_graph_output_count(NULL), 0);
  ck_assert_int_eq(vnrt_graph_input_count(NULL), 0);
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_null_handles_and_growth) {
  vnrt_graph *g = (vnrt_graph *)&g;
  ck_assert_int_eq(vnrt_graph_create(NULL, &g), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(g);
  ck_assert_int_eq(vnrt_graph_create(ctx, NULL), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_graph_destroy(NULL);
  vnrt_tensor_type tx = T(F32, 2);
  vnrt_value v = 3;
  ck_assert_int_eq(vnrt_graph_add_input(NULL, "x", &tx, 0, &v), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(v, -1);
  ck_assert_int_eq(vnrt_graph_add_node(NULL, VNRT_OP_NEG, &v, 1, NULL, 0, NULL, &v, 1),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_graph_add_output(NULL, 0), VNRT_ERROR_INVALID_ARGUMENT);

  /* A long chain grows every array many times; each value keeps its type and name. */
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value x;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  vnrt_value prev = x;
  for (int i = 0; i < 500; ++i) {
    char name[16];
    snprintf(name, sizeof name, "v%d", i);
    vnrt_value next;
    TU_OK(ctx, vnrt_graph_add_node(g, i % 2 ? VNRT_OP_EXP : VNRT_OP_NEG, &prev, 1, NULL, 0,
                                   (const char *[]){name}, &next, 1));
    ck_assert_int_eq(next, i + 1);
    prev = next;
  }
  ck_assert_int_eq(g->n_nodes, 500);
  ck_assert_int_eq(vnrt_graph_find(g, "v321"), 322);
  ck_assert_int_eq(g->nodes[321].op, VNRT_OP_EXP);
  ck_assert_int_eq(g->nodes[321].inputs[0], 321);
  vnrt_graph_destroy(g);
}
END_TEST

/* Building is linear: a 200,000-node chain through the API (names hashed, outputs marked in
 * O(1)). Only correctness is asserted; the time is reported by the test's duration. */
START_TEST(test_long_chain_through_the_api) {
  enum { N = 200000 };
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = T(F32, 4);
  vnrt_value prev;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &prev));
  /* Check records every passing assertion (a write), so the loops count failures and assert
   * once; otherwise the assertions, not the graph, would dominate the time. */
  int bad = 0, first_bad = -1;
  for (int i = 1; i <= N; ++i) {
    char name[24];
    snprintf(name, sizeof name, "layer.%d", i);
    vnrt_value next = -1;
    vnrt_status st = vnrt_graph_add_node(g, i % 3 ? VNRT_OP_NEG : VNRT_OP_RELU, &prev, 1, NULL, 0,
                                         (const char *[]){name}, &next, 1);
    /* every tenth value is an output, so the duplicate check runs on a long output list */
    if (st == VNRT_OK && i % 10 == 0) st = vnrt_graph_add_output(g, next);
    if (st != VNRT_OK || next != i) {
      ck_abort_msg("node %d: %s (value %d)", i, vnrt_context_last_error(ctx), (int)next);
    }
    prev = next;
  }
  ck_assert_int_eq(g->n_nodes, N);
  ck_assert_int_eq(vnrt_graph_output_count(g), N / 10);
  /* every name resolves to its own value, and near-misses to nothing */
  for (int i = 1; i <= N; ++i) {
    char name[24];
    snprintf(name, sizeof name, "layer.%d", i);
    if (vnrt_graph_find(g, name) != i || g->nodes[i - 1].inputs[0] != i - 1 ||
        g->outputs[(i - 1) / 10] != ((i - 1) / 10 + 1) * 10) {
      if (bad++ == 0) first_bad = i;
    }
  }
  ck_assert_msg(bad == 0, "%d values wrong, the first layer.%d", bad, first_bad);
  ck_assert_int_eq(vnrt_graph_find(g, "x"), 0);
  ck_assert_int_eq(vnrt_graph_find(g, "layer.0"), -1);
  ck_assert_int_eq(vnrt_graph_find(g, "layer.200001"), -1);
  ck_assert_int_eq(vnrt_graph_find(g, "layer.1000."), -1);
  /* names stay unique and outputs single at the far end of the chain */
  vnrt_value dup;
  EXPECT_ERR(vnrt_graph_add_node(g, VNRT_OP_NEG, &prev, 1, NULL, 0,
                                 (const char *[]){"layer.123457"}, &dup, 1),
             INVALID_GRAPH, "'layer.123457' is already defined");
  EXPECT_ERR(vnrt_graph_add_input(g, "layer.1", &tx, 0, &dup), INVALID_GRAPH,
             "'layer.1' is already defined");
  EXPECT_ERR(vnrt_graph_add_output(g, 199990), INVALID_GRAPH, "'layer.199990' is already marked");
  EXPECT_ERR(vnrt_graph_add_output(g, 10), INVALID_GRAPH, "'layer.10' is already marked");
  TU_OK(ctx, vnrt_graph_add_output(g, 199999));
  ck_assert_int_eq(vnrt_graph_output(g, N / 10), 199999);
  vnrt_graph_destroy(g);
}
END_TEST

/* A graph whose lookup aids are all zero (as vn_graph_clone's field-by-field copy,
 * graph/graph_clone.c, leaves them) still finds every value, rejects duplicates, and rebuilds the
 * aids when added to. */
START_TEST(test_lookup_aids_rebuilt_when_missing) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = T(F32, 3);
  vnrt_value x, prev;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  prev = x;
  for (int i = 0; i < 100; ++i) {
    char name[16];
    snprintf(name, sizeof name, "n%d", i);
    vnrt_value next;
    TU_OK(ctx,
          vnrt_graph_add_node(g, VNRT_OP_NEG, &prev, 1, NULL, 0, (const char *[]){name}, &next, 1));
    prev = next;
  }
  TU_OK(ctx, vnrt_graph_add_output(g, 7));
  vn_free(ctx, g->name_index);
  vn_free(ctx, g->output_mark);
  g->name_index = NULL, g->name_index_cap = 0, g->n_indexed = 0;
  g->output_mark = NULL, g->cap_output_mark = 0;

  ck_assert_int_eq(vnrt_graph_find(g, "n41"), 42);
  ck_assert_int_eq(vnrt_graph_find(g, "n100"), -1);
  EXPECT_ERR(vnrt_graph_add_output(g, 7), INVALID_GRAPH, "'n6' is already marked");
  TU_OK(ctx, vnrt_graph_add_output(g, 8));
  ck_assert_int_eq(g->cap_output_mark >= g->n_values, 1);
  EXPECT_ERR(vnrt_graph_add_input(g, "n99", &tx, 0, &x), INVALID_GRAPH, "'n99' is already");
  TU_OK(ctx, vnrt_graph_add_input(g, "y", &tx, 0, &x));
  ck_assert_int_eq(g->n_indexed, g->n_values);
  ck_assert_int_eq(vnrt_graph_find(g, "n0"), 1);
  ck_assert_int_eq(vnrt_graph_find(g, "y"), x);
  vnrt_graph_destroy(g);
}
END_TEST

START_TEST(test_allocation_failures_leave_graph_unchanged) {
  tu_alloc fa = {.countdown = -1};
  vnrt_context_desc desc = {0};
  desc.allocator = tu_allocator(&fa);
  desc.no_plugins = 1;
  desc.log_level = VNRT_LOG_ERROR;
  vnrt_context *fctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&desc, &fctx), VNRT_OK);
  long base = fa.live;
  vnrt_graph *g = NULL;
  ck_assert_int_eq(vnrt_graph_create(fctx, &g), VNRT_OK);
  vnrt_tensor_type tx = T(F32, 2);
  vnrt_value prev;
  ck_assert_int_eq(vnrt_graph_add_input(g, "x", &tx, 0, &prev), VNRT_OK);
  /* Each step is an input, a state, a node and an output; every allocation of it fails once,
   * across enough steps that the index, the marks and every array grow. */
  int failures = 0;
  for (int step = 0; step < 300; ++step) {
    char name[32];
    for (int kind = 0; kind < 4; ++kind) {
      for (long budget = 0;; ++budget) {
        int32_t nv = g->n_values, nn = g->n_nodes, ni = g->n_inputs, no = g->n_outputs;
        int32_t ns = g->n_states;
        vnrt_value v = -1;
        fa.countdown = budget;
        vnrt_status st;
        if (kind == 0) {
          snprintf(name, sizeof name, "in%d", step);
          st = vnrt_graph_add_input(g, name, &tx, step % 2, &v);
        } else if (kind == 1) {
          snprintf(name, sizeof name, "st%d", step);
          st = vnrt_graph_add_state(g, name, &tx, &v);
        } else if (kind == 2) {
          snprintf(name, sizeof name, "node%d", step);
          st =
              vnrt_graph_add_node(g, VNRT_OP_NEG, &prev, 1, NULL, 0, (const char *[]){name}, &v, 1);
        } else {
          snprintf(name, sizeof name, "node%d", step);
          st = vnrt_graph_add_output(g, prev);
        }
        fa.countdown = -1;
        if (st == VNRT_OK) {
          if (kind == 2) prev = v;
          break;
        }
        ++failures;
        ck_assert_msg(st == VNRT_ERROR_OUT_OF_MEMORY, "step %d kind %d budget %ld: %s", step, kind,
                      budget, vnrt_context_last_error(fctx));
        ck_assert_int_eq(v, -1);
        ck_assert(g->n_values == nv && g->n_nodes == nn && g->n_inputs == ni &&
                  g->n_outputs == no && g->n_states == ns);
        ck_assert_int_eq(vnrt_graph_find(g, name), kind == 3 ? prev : -1);
      }
    }
  }
  ck_assert_int_gt(failures, 300);
  /* after all that, every name still resolves and duplicates are still refused */
  ck_assert_int_eq(vnrt_graph_find(g, "in150"), vnrt_graph_input(g, 151, NULL));
  ck_assert_int_eq(vnrt_graph_find(g, "node299"), prev);
  ck_assert_int_eq(vnrt_graph_add_output(g, prev), VNRT_ERROR_INVALID_GRAPH);
  ck_assert_int_eq(vnrt_graph_output_count(g), 300);
  ck_assert_int_eq(vnrt_graph_state_count(g), 300);
  vnrt_graph_destroy(g);
  ck_assert_msg(fa.live == base, "%ld blocks leaked", fa.live - base);
  vnrt_context_destroy(fctx);
}
END_TEST

static Suite *graph_suite(void) {
  Suite *s = suite_create("graph");
  TCase *tc = tcase_create("builder");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_op_table_matches_op_list);
  tcase_add_test(tc, test_schema_keys_match_attrs_md);
  tcase_add_test(tc, test_type_str_and_names);
  tcase_add_test(tc, test_attrs_defaults_and_order);
  tcase_add_test(tc, test_attrs_lists_are_copied);
  tcase_add_test(tc, test_attrs_errors);
  tcase_add_test(tc, test_binary_broadcast);
  tcase_add_test(tc, test_unary_float_ops);
  tcase_add_test(tc, test_cast);
  tcase_add_test(tc, test_reshape);
  tcase_add_test(tc, test_transpose);
  tcase_add_test(tc, test_slice_and_concat);
  tcase_add_test(tc, test_matmul_and_linear);
  tcase_add_test(tc, test_norm_softmax_swiglu);
  tcase_add_test(tc, test_rope);
  tcase_add_test(tc, test_attention);
  tcase_add_test(tc, test_embedding_and_topk);
  tcase_add_test(tc, test_mhc);
  tcase_add_test(tc, test_moe_route);
  tcase_add_test(tc, test_moe_ffn);
  tcase_add_test(tc, test_ngram_hash);
  tcase_add_test(tc, test_engram_lookup_gate_conv);
  tcase_add_test(tc, test_rejected_node_leaves_graph_unchanged);
  tcase_add_test(tc, test_private_add_node_message);
  tcase_add_test(tc, test_names_unique_and_generated);
  tcase_add_test(tc, test_type_limits);
  tcase_add_test(tc, test_lookups_and_outputs);
  tcase_add_test(tc, test_null_handles_and_growth);
  tcase_add_test(tc, test_long_chain_through_the_api);
  tcase_add_test(tc, test_lookup_aids_rebuilt_when_missing);
  tcase_add_test(tc, test_allocation_failures_leave_graph_unchanged);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(graph_suite()); }
