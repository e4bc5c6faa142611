/* vnrt-validate's case table: every op over several shapes and dtypes, with the input
 * generator and range of each input. New cases go at the end so that the earlier ones
 * keep their --case numbers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

vcase *cases;
int32_t n_cases;
static int32_t cap_cases;
static vcase *cur;

static void add_case(vnrt_op op, int32_t n_out, const char *fmt, ...) {
  if (n_cases == cap_cases) {
    cap_cases = cap_cases ? 2 * cap_cases : 64;
    cases = realloc(cases, (size_t)cap_cases * sizeof *cases);
    if (!cases) {
      fprintf(stderr, "vnrt-validate: out of memory\n");
      exit(2);
    }
  }
  cur = &cases[n_cases++];
  memset(cur, 0, sizeof *cur);
  cur->op = op;
  cur->n_out = n_out;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cur->label, sizeof cur->label, fmt, ap);
  va_end(ap);
}

static void in_t(vnrt_dtype dt, gen_kind gen, double lo, double hi, int32_t rank, ...) {
  input_spec *s = &cur->in[cur->n_in++];
  s->type.dtype = dt;
  s->type.rank = rank;
  va_list ap;
  va_start(ap, rank);
  for (int32_t i = 0; i < rank; ++i) s->type.dims[i] = va_arg(ap, int64_t);
  va_end(ap);
  s->gen = gen;
  s->lo = lo;
  s->hi = hi;
}
#define IN(dt, gen, lo, hi, ...) \
  in_t(dt, gen, lo, hi, (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), __VA_ARGS__)
#define IN0(dt, gen, lo, hi) in_t(dt, gen, lo, hi, 0)

static void attr_i(const char *key, int64_t v) {
  vnrt_attr *a = &cur->attrs[cur->n_attrs++];
  a->key = key, a->kind = VNRT_ATTR_INT, a->i = v;
}
static void attr_f(const char *key, double v) {
  vnrt_attr *a = &cur->attrs[cur->n_attrs++];
  a->key = key, a->kind = VNRT_ATTR_FLOAT, a->f = v;
}
static void attr_w(const char *key, const char *w) {
  vnrt_attr *a = &cur->attrs[cur->n_attrs++];
  a->key = key, a->kind = VNRT_ATTR_WORD, a->word = w;
}
static void attr_ints(const char *key, int32_t count, const int64_t *v) {
  int32_t k = cur->n_attrs++;
  vnrt_attr *a = &cur->attrs[k];
  memcpy(cur->lists[k], v, (size_t)count * sizeof *v);
  /* a->ints is pointed at lists[k] when the case runs: the case table may still move. */
  a->key = key, a->kind = VNRT_ATTR_INTS, a->count = count;
}
#define INTS(key, ...)                                                          \
  attr_ints(key, (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
            (int64_t[]){__VA_ARGS__})

static const vnrt_dtype kFloat[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};

void build_cases(void) {
  /* Elementwise unary: input ranges keep every function finite and exercise its branches. */
  static const struct {
    vnrt_op op;
    double lo, hi;
  } unary[] = {
      {VNRT_OP_NEG, -4, 4},
      {VNRT_OP_EXP, -5, 5},
      {VNRT_OP_SQRT, 0.01, 9},
      {VNRT_OP_RSQRT, 0.05, 9},
      {VNRT_OP_TANH, -4, 4},
      {VNRT_OP_RELU, -4, 4},
      {VNRT_OP_SIGMOID, -8, 8},
      {VNRT_OP_SILU, -8, 8},
      {VNRT_OP_GELU, -5, 5},
      {VNRT_OP_SOFTPLUS, -30, 30},
      {VNRT_OP_SQRT_SOFTPLUS, -30, 30},
  };
  for (size_t u = 0; u < sizeof unary / sizeof unary[0]; ++u) {
    for (int d = 0; d < 3; ++d) {
      add_case(unary[u].op, 1, "%s [1027]", vnrt_dtype_name(kFloat[d]));
      IN(kFloat[d], GEN_UNIFORM, unary[u].lo, unary[u].hi, 1027);
    }
    add_case(unary[u].op, 1, "f32 [3, 5, 7]");
    IN(VNRT_F32, GEN_UNIFORM, unary[u].lo, unary[u].hi, 3, 5, 7);
  }
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_SCALE, 1, "%s s=0.37", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -3, 3, 77);
    attr_f("s", 0.37);
    add_case(VNRT_OP_CLAMP, 1, "%s min+max", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -3, 3, 9, 11);
    attr_f("min", -1.5), attr_f("max", 0.75);
  }
  add_case(VNRT_OP_CLAMP, 1, "f32 min only");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 40);
  attr_f("min", 0.25);

  /* Binary with broadcasting. */
  static const vnrt_op binary[] = {VNRT_OP_ADD, VNRT_OP_SUB, VNRT_OP_MUL, VNRT_OP_DIV};
  for (size_t b = 0; b < 4; ++b) {
    double blo = binary[b] == VNRT_OP_DIV ? 0.5 : -2;
    for (int d = 0; d < 3; ++d) {
      add_case(binary[b], 1, "%s [17, 33] . [17, 33]", vnrt_dtype_name(kFloat[d]));
      IN(kFloat[d], GEN_UNIFORM, -2, 2, 17, 33);
      IN(kFloat[d], GEN_UNIFORM, blo, 2, 17, 33);
    }
    add_case(binary[b], 1, "f32 [3, 1, 5] . [4, 5] broadcast");
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 1, 5);
    IN(VNRT_F32, GEN_UNIFORM, blo, 2, 4, 5);
    add_case(binary[b], 1, "f32 [2, 3, 4, 5] . scalar");
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, 2, 3, 4, 5);
    IN0(VNRT_F32, GEN_UNIFORM, blo, 2);
  }

  /* Casts and shape ops. */
  static const struct {
    vnrt_dtype from;
    const char *to;
  } casts[] = {
      {VNRT_F32, "f16"}, {VNRT_F32, "bf16"}, {VNRT_F16, "f32"},  {VNRT_BF16, "f32"},
      {VNRT_F32, "i32"}, {VNRT_I32, "f32"},  {VNRT_F16, "bf16"},
  };
  for (size_t c = 0; c < sizeof casts / sizeof casts[0]; ++c) {
    add_case(VNRT_OP_CAST, 1, "%s -> %s", vnrt_dtype_name(casts[c].from), casts[c].to);
    if (casts[c].from == VNRT_I32)
      IN(VNRT_I32, GEN_INDEX, 0, 100000, 300);
    else
      IN(casts[c].from, GEN_UNIFORM, -300, 300, 300);
    attr_w("dtype", casts[c].to);
  }
  add_case(VNRT_OP_RESHAPE, 1, "f32 [6, 4] -> [3, -1, 2]");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 6, 4);
  INTS("shape", 3, -1, 2);
  add_case(VNRT_OP_TRANSPOSE, 1, "f32 [2, 3, 4] perm [2, 0, 1]");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 3, 4);
  INTS("perm", 2, 0, 1);
  add_case(VNRT_OP_TRANSPOSE, 1, "bf16 [3, 5, 2, 7] perm [1, 3, 0, 2]");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 3, 5, 2, 7);
  INTS("perm", 1, 3, 0, 2);
  add_case(VNRT_OP_TRANSPOSE, 1, "i32 [33, 17] perm [1, 0]");
  IN(VNRT_I32, GEN_INDEX, 0, 1000, 33, 17);
  INTS("perm", 1, 0);
  add_case(VNRT_OP_SLICE, 1, "f32 [4, 9, 3] axis 1 start 2 len 5");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 4, 9, 3);
  attr_i("axis", 1), attr_i("start", 2), attr_i("len", 5);
  add_case(VNRT_OP_SLICE, 1, "f16 [10, 6] axis -1 start 5 len 1");
  IN(VNRT_F16, GEN_UNIFORM, -1, 1, 10, 6);
  attr_i("axis", -1), attr_i("start", 5), attr_i("len", 1);
  add_case(VNRT_OP_CONCAT, 1, "f32 [2, 3] ++ [5, 3] axis 0");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 3);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 5, 3);
  attr_i("axis", 0);
  add_case(VNRT_OP_CONCAT, 1, "i32 [4, 2, 3] ++ [4, 2, 5] axis -1");
  IN(VNRT_I32, GEN_INDEX, 0, 99, 4, 2, 3);
  IN(VNRT_I32, GEN_INDEX, 0, 99, 4, 2, 5);
  attr_i("axis", -1);

  /* Linear algebra. */
  add_case(VNRT_OP_MATMUL, 1, "f32 [5, 7] x [7, 3]");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 5, 7);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 7, 3);
  add_case(VNRT_OP_MATMUL, 1, "f32 [2, 1, 33, 20] x [3, 20, 17] batch broadcast");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 1, 33, 20);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 20, 17);
  add_case(VNRT_OP_MATMUL, 1, "f32 [64, 96] x f16 [96, 80]");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 64, 96);
  IN(VNRT_F16, GEN_UNIFORM, -1, 1, 96, 80);
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_LINEAR, 1, "f32 x [3, 37] . %s w [19, 37]", vnrt_dtype_name(kFloat[d]));
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 37);
    IN(kFloat[d], GEN_UNIFORM, -1, 1, 19, 37);
    add_case(VNRT_OP_LINEAR, 1, "f32 x [1, 512] . %s w [96, 512] (decode)",
             vnrt_dtype_name(kFloat[d]));
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 512);
    IN(kFloat[d], GEN_UNIFORM, -1, 1, 96, 512);
    add_case(VNRT_OP_LINEAR, 1, "f32 x [2, 67, 128] . %s w [130, 128]", vnrt_dtype_name(kFloat[d]));
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 67, 128);
    IN(kFloat[d], GEN_UNIFORM, -1, 1, 130, 128);
  }
  /* One-row GEMVs past one K block (4096) and beyond the inline-on-the-caller size. */
  add_case(VNRT_OP_LINEAR, 1, "f32 x [1, 4100] . f16 w [70, 4100] (decode, long K)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 4100);
  IN(VNRT_F16, GEN_UNIFORM, -0.2, 0.2, 70, 4100);
  add_case(VNRT_OP_LINEAR, 1, "f32 x [1, 4096] . bf16 w [33, 4096] (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 4096);
  IN(VNRT_BF16, GEN_UNIFORM, -0.2, 0.2, 33, 4096);
  add_case(VNRT_OP_LINEAR, 1, "bf16 x [8, 64] . bf16 w [32, 64]");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 8, 64);
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 32, 64);
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_RMS_NORM, 1, "%s [4, 257] with w", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -3, 3, 4, 257);
    IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 257);
    add_case(VNRT_OP_SOFTMAX, 1, "%s [6, 1000]", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -10, 10, 6, 1000);
    add_case(VNRT_OP_SWIGLU, 1, "%s [5, 96] limit 0", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -5, 5, 5, 96);
    IN(kFloat[d], GEN_UNIFORM, -5, 5, 5, 96);
  }
  add_case(VNRT_OP_RMS_NORM, 1, "f32 [3, 2, 64] unweighted eps 1e-5");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 3, 2, 64);
  attr_f("eps", 1e-5);
  /* Many rows (the one-invocation-per-row paths start at 32 rows) with an eps that matters:
   * values near zero, so that mean(x²) is below eps and where eps goes (inside the square root
   * or not) changes every result. */
  add_case(VNRT_OP_RMS_NORM, 1, "f32 [40, 96] with w, eps 1e-2, small values");
  IN(VNRT_F32, GEN_UNIFORM, -0.1, 0.1, 40, 96);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 96);
  attr_f("eps", 1e-2);
  add_case(VNRT_OP_RMS_NORM, 1, "f16 [2, 33, 48] unweighted, eps 1e-3, small values");
  IN(VNRT_F16, GEN_UNIFORM, -0.05, 0.05, 2, 33, 48);
  attr_f("eps", 1e-3);
  add_case(VNRT_OP_RMS_NORM, 1, "bf16 [64, 40] with w, eps 1e-1");
  IN(VNRT_BF16, GEN_UNIFORM, -0.5, 0.5, 64, 40);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 40);
  attr_f("eps", 1e-1);
  add_case(VNRT_OP_SOFTMAX, 1, "f32 [3, 5, 7] axis 1");
  IN(VNRT_F32, GEN_UNIFORM, -5, 5, 3, 5, 7);
  attr_i("axis", 1);
  add_case(VNRT_OP_SWIGLU, 1, "f32 [4, 64] limit 2 (V4 clamp)");
  IN(VNRT_F32, GEN_UNIFORM, -5, 5, 4, 64);
  IN(VNRT_F32, GEN_UNIFORM, -5, 5, 4, 64);
  attr_f("limit", 2.0);

  /* Positions and attention. */
  add_case(VNRT_OP_ROPE, 1, "f32 [5, 3, 16] interleaved");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 5, 3, 16);
  IN(VNRT_I32, GEN_INDEX, 0, 4096, 5);
  add_case(VNRT_OP_ROPE, 1, "f32 [4, 2, 64] half-split, last 32 dims, theta 1e6");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 4, 2, 64);
  IN(VNRT_I32, GEN_INDEX, 0, 65536, 4);
  attr_f("theta", 1e6), attr_i("dims", 32), attr_i("interleaved", 0);
  add_case(VNRT_OP_ROPE, 1, "bf16 [3, 4, 8]");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 3, 4, 8);
  IN(VNRT_I32, GEN_ARANGE, 7, 1, 3);
  add_case(VNRT_OP_ATTENTION, 1, "GQA T=S=6 Hq=4 Hkv=2 D=16 causal");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 6, 4, 16);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 6, 2, 16);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 6, 2, 16);
  add_case(VNRT_OP_ATTENTION, 1, "MQA decode T=1 S=37 Hq=8 D=32 window 8 + sinks");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 8, 32);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 37, 1, 32);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 37, 1, 24);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 8);
  attr_i("window", 8);
  add_case(VNRT_OP_ATTENTION, 1, "non-causal T=3 S=5 Hq=2 Hkv=2 D=8 f16 kv, scale 0.2");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 2, 8);
  IN(VNRT_F16, GEN_UNIFORM, -1, 1, 5, 2, 8);
  IN(VNRT_F16, GEN_UNIFORM, -1, 1, 5, 2, 8);
  attr_i("causal", 0), attr_f("scale", 0.2);
  add_case(VNRT_OP_ATTENTION, 1, "V4-like decode T=2 S=128 Hq=16 Hkv=1 D=64 window 64 sinks");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 16, 64);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 128, 1, 64);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 128, 1, 64);
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 16);
  attr_i("window", 64);

  add_case(VNRT_OP_ATTENTION, 1, "KV cache S=32 kv_len=20 T=2 Hq=4 Hkv=2 D=16, sinks");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 4, 16);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 32, 2, 16);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 32, 2, 16);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 4);
  IN(VNRT_I32, GEN_ARANGE, 20, 0, 1);
  add_case(VNRT_OP_KV_WRITE, 1, "f32 cache [16, 2, 8] <- [3, 2, 8] at row 5");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 16, 2, 8);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 2, 8);
  IN(VNRT_I32, GEN_ARANGE, 5, 0, 1);
  add_case(VNRT_OP_KV_WRITE, 1, "bf16 cache [9, 4] <- [1, 4] at the last row");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 9, 4);
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 1, 4);
  IN(VNRT_I32, GEN_ARANGE, 8, 0, 1);

  /* Indexing. */
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_EMBEDDING, 1, "%s table [50, 16], ids [2, 7]", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -1, 1, 50, 16);
    IN(VNRT_I32, GEN_INDEX, 0, 50, 2, 7);
  }
  add_case(VNRT_OP_TOPK, 2, "f32 [5, 37] k 4");
  IN(VNRT_F32, GEN_DISTINCT, -1, 0.05, 5, 37);
  attr_i("k", 4);
  add_case(VNRT_OP_TOPK, 2, "f32 [3, 256] k 8");
  IN(VNRT_F32, GEN_DISTINCT, -3, 0.02, 3, 256);
  attr_i("k", 8);

  /* mHC, n = 4 streams. */
  add_case(VNRT_OP_HC_EXPAND, 1, "f32 [3, 40] n 4");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 40);
  for (int d = 0; d < 2; ++d) {
    vnrt_dtype xt = d ? VNRT_BF16 : VNRT_F32;
    add_case(VNRT_OP_HC_PRE, 3, "%s X [3, 4, 64], f32 fn [24, 256]", vnrt_dtype_name(xt));
    IN(xt, GEN_UNIFORM, -2, 2, 3, 4, 64);
    IN(VNRT_F32, GEN_UNIFORM, -0.1, 0.1, 24, 256);
    IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 3);
    IN(VNRT_F32, GEN_UNIFORM, -0.5, 0.5, 24);
  }
  add_case(VNRT_OP_HC_PRE, 3, "f32 X [2, 4, 96], iters 3");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 2, 4, 96);
  IN(VNRT_F16, GEN_UNIFORM, -0.1, 0.1, 24, 384);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 3);
  IN(VNRT_F32, GEN_UNIFORM, -0.5, 0.5, 24);
  attr_i("iters", 3);
  /* Decode: one token over n·C = 4100 (not a multiple of the fast kernel's column pieces). */
  add_case(VNRT_OP_HC_PRE, 3, "f32 X [1, 4, 1025], bf16 fn [24, 4100] (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 1, 4, 1025);
  IN(VNRT_BF16, GEN_UNIFORM, -0.05, 0.05, 24, 4100);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 3);
  IN(VNRT_F32, GEN_UNIFORM, -0.5, 0.5, 24);
  add_case(VNRT_OP_HC_POST, 1, "f32 X [1, 4, 1025] (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 1, 4, 1025);
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 1, 1025);
  IN(VNRT_F32, GEN_UNIFORM, 0, 2, 1, 4);
  IN(VNRT_F32, GEN_UNIFORM, 0, 1, 1, 4, 4);
  add_case(VNRT_OP_HC_POST, 1, "f32 X [3, 4, 64]");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 4, 64);
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 64);
  IN(VNRT_F32, GEN_UNIFORM, 0, 2, 3, 4);
  IN(VNRT_F32, GEN_UNIFORM, 0, 1, 3, 4, 4);
  add_case(VNRT_OP_HC_HEAD, 1, "f32 X [3, 4, 64]");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 4, 64);
  IN(VNRT_F32, GEN_UNIFORM, -0.1, 0.1, 4, 256);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 1);
  IN(VNRT_F32, GEN_UNIFORM, -0.5, 0.5, 4);
  add_case(VNRT_OP_SINKHORN, 1, "f32 [5, 4, 4] iters 20");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 5, 4, 4);
  add_case(VNRT_OP_SINKHORN, 1, "f32 [2, 3, 6, 6] iters 7");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 2, 3, 6, 6);
  attr_i("iters", 7);

  /* MoE routing: DeepSeek-V3 and V4 configurations, scaled down where it does not matter. */
  add_case(VNRT_OP_MOE_ROUTE, 2, "V3: sigmoid E=256 groups 8/4 top-8 scale 2.5, bias");
  IN(VNRT_F32, GEN_DISTINCT, -4, 0.03, 4, 256);
  IN(VNRT_F32, GEN_DISTINCT, -0.05, 0.0004, 256);
  attr_i("k", 8), attr_w("score", "sigmoid"), attr_i("n_group", 8), attr_i("topk_group", 4);
  attr_f("scale", 2.5);
  add_case(VNRT_OP_MOE_ROUTE, 2, "V4: sqrt_softplus E=256 top-6 scale 1.5, bias");
  IN(VNRT_F32, GEN_DISTINCT, -4, 0.03, 4, 256);
  IN(VNRT_F32, GEN_DISTINCT, -0.05, 0.0004, 256);
  attr_i("k", 6), attr_w("score", "sqrt_softplus"), attr_f("scale", 1.5);
  add_case(VNRT_OP_MOE_ROUTE, 2, "softmax E=64 top-6 no norm");
  IN(VNRT_F32, GEN_DISTINCT, -3, 0.1, 5, 64);
  attr_i("k", 6), attr_w("score", "softmax"), attr_i("norm", 0);
  add_case(VNRT_OP_MOE_HASH_ROUTE, 2, "sqrt_softplus E=32 V=50 k 4");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 6, 32);
  IN(VNRT_I32, GEN_INDEX, 0, 50, 6);
  IN(VNRT_I32, GEN_ROWPERM, 0, 32, 50, 4);
  attr_w("score", "sqrt_softplus"), attr_f("scale", 1.5);
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_MOE_FFN, 1, "T=5 E=4 k=2 C=32 F=24, %s weights", vnrt_dtype_name(kFloat[d]));
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 5, 32);
    IN(VNRT_I32, GEN_ROWPERM, 0, 4, 5, 2);
    IN(VNRT_F32, GEN_UNIFORM, 0, 1, 5, 2);
    IN(kFloat[d], GEN_UNIFORM, -0.3, 0.3, 4, 48, 32);
    IN(kFloat[d], GEN_UNIFORM, -0.3, 0.3, 4, 32, 24);
  }
  /* Decode: a few tokens (the per-slot GEMV path), down projections past 512 rows. */
  for (int t = 1; t <= 4; t += 3) {
    add_case(VNRT_OP_MOE_FFN, 1, "T=%d E=8 k=3 C=600 F=40, f16 weights (decode)", t);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, t, 600);
    IN(VNRT_I32, GEN_ROWPERM, 0, 8, t, 3);
    IN(VNRT_F32, GEN_UNIFORM, 0, 1, t, 3);
    IN(VNRT_F16, GEN_UNIFORM, -0.1, 0.1, 8, 80, 600);
    IN(VNRT_F16, GEN_UNIFORM, -0.1, 0.1, 8, 600, 40);
  }
  add_case(VNRT_OP_MOE_FFN, 1, "T=9 E=16 k=6 C=64 F=32 limit 0.5 (V4 clamp)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 9, 64);
  IN(VNRT_I32, GEN_ROWPERM, 0, 16, 9, 6);
  IN(VNRT_F32, GEN_UNIFORM, 0, 1, 9, 6);
  IN(VNRT_F32, GEN_UNIFORM, -0.3, 0.3, 16, 64, 64);
  IN(VNRT_F32, GEN_UNIFORM, -0.3, 0.3, 16, 64, 32);
  attr_f("limit", 0.5);
  /* The few-token paths (T <= 4) with the clamp: up values well below -limit (and gate above
   * it), so that both sides of swiglu's clamp are taken. */
  for (int d = 0; d < 2; ++d) {
    add_case(VNRT_OP_MOE_FFN, 1, "T=2 E=6 k=2 C=64 F=24 limit 0.25, %s weights (decode clamp)",
             vnrt_dtype_name(kFloat[d]));
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 64);
    IN(VNRT_I32, GEN_ROWPERM, 0, 6, 2, 2);
    IN(VNRT_F32, GEN_UNIFORM, 0, 1, 2, 2);
    IN(kFloat[d], GEN_UNIFORM, -0.4, 0.4, 6, 48, 64);
    IN(kFloat[d], GEN_UNIFORM, -0.3, 0.3, 6, 64, 24);
    attr_f("limit", 0.25);
  }

  /* Engram: 2- and 3-grams x 8 heads. */
  add_case(VNRT_OP_NGRAM_HASH, 1, "N=3 K=8 (2- and 3-grams x 8 heads), T=7");
  IN(VNRT_I32, GEN_INDEX, 0, 129280, 7);
  IN(VNRT_I32, GEN_INDEX, 0, 129280, 2);
  INTS("mult", 0x9E3779B97F4A7C15LL >> 1, 0x7F4A7C159E3779B9LL, -6510615555426900571LL);
  INTS("primes", 1000003, 1000033, 1000037, 1000039, 1000081, 1000099, 1000117, 1000121, 999983,
       999979, 999961, 999959, 999953, 999931, 999917, 999907);
  add_case(VNRT_OP_NGRAM_HASH, 1, "N=2 K=3, T=1 (decode)");
  IN(VNRT_I32, GEN_INDEX, 0, 1000, 1);
  IN(VNRT_I32, GEN_INDEX, 0, 1000, 1);
  INTS("mult", 7, -3037000493LL);
  INTS("primes", 13, 101, 65537);
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_ENGRAM_LOOKUP, 1, "%s table [128, 8], T=5 H=16", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -1, 1, 128, 8);
    IN(VNRT_I32, GEN_INDEX, 0, 8, 5, 16);
    IN(VNRT_I32, GEN_ARANGE, 0, 8, 16);
  }
  for (int sg = 0; sg < 2; ++sg) {
    add_case(VNRT_OP_ENGRAM_GATE, 1, "T=3 M=2 C=32 sqrt_gate %d", sg);
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 2, 32);
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 2, 32);
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 32);
    IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 2, 32);
    IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 2, 32);
    attr_i("sqrt_gate", sg);
  }
  add_case(VNRT_OP_SHORT_CONV, 2, "T=5 M=2 C=16 K=4 dilation 2");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 5, 2, 16);
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 6, 2, 16);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 2, 16);
  IN(VNRT_F32, GEN_UNIFORM, -0.5, 0.5, 32, 4);
  attr_i("dilation", 2);
  add_case(VNRT_OP_SHORT_CONV, 2, "T=1 M=4 C=32 K=4 dilation 3 (decode, T < P)");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 1, 4, 32);
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 9, 4, 32);
  IN(VNRT_F32, GEN_UNIFORM, 0.5, 1.5, 4, 32);
  IN(VNRT_F32, GEN_UNIFORM, -0.5, 0.5, 128, 4);
  attr_i("dilation", 3);

  /* Quantization support: hadamard rows of D = 1 .. 4096 (D a power of 2), appended last so
   * that the earlier cases keep their --case numbers. */
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_HADAMARD, 1, "%s [5, 64]", vnrt_dtype_name(kFloat[d]));
    IN(kFloat[d], GEN_UNIFORM, -2, 2, 5, 64);
  }
  add_case(VNRT_OP_HADAMARD, 1, "f32 [3, 4096]");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 4096);
  add_case(VNRT_OP_HADAMARD, 1, "bf16 [2, 3, 128]");
  IN(VNRT_BF16, GEN_UNIFORM, -2, 2, 2, 3, 128);
  add_case(VNRT_OP_HADAMARD, 1, "f16 [1, 4096] (decode)");
  IN(VNRT_F16, GEN_UNIFORM, -2, 2, 1, 4096);
  add_case(VNRT_OP_HADAMARD, 1, "f32 [7, 2]");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 7, 2);
  add_case(VNRT_OP_HADAMARD, 1, "f32 [4, 1] (D = 1: the identity)");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 4, 1);

  /* Quantized weights (docs/ops.md, "Quantized weights"): every op x format, odd N, K not a
   * multiple of 128 (fp8) or 32 (fp4 matmul's N), partial blocks, T = 1 and several rows,
   * act_quant, custom blocks; then fake_quant. Appended last to keep the earlier numbers. */
  for (int f = 0; f < 2; ++f) {
    const vnrt_dtype q = f ? VNRT_E2M1 : VNRT_E4M3;
    const char *qn = vnrt_dtype_name(q);
    const int64_t b0 = f ? 1 : 128, b1 = f ? 32 : 128;
#define CEIL(a, b) (((a) + (b)-1) / (b))
    /* linear x[T, K] . w[N, K] */
    static const struct {
      int64_t t, n, k, aq, blk0, blk1;
      vnrt_dtype x;
    } lin[] = {
        {3, 19, 200, 0, 0, 0, VNRT_F32},   {1, 130, 96, 0, 0, 0, VNRT_F32},
        {7, 37, 256, 128, 0, 0, VNRT_F32}, {1, 45, 384, 128, 0, 0, VNRT_F32},
        {5, 21, 160, 0, 16, 64, VNRT_F32}, {4, 33, 256, 128, 0, 0, VNRT_BF16},
        {1, 70, 32, 0, 0, 0, VNRT_F32},
    };
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; ++i) {
      const int64_t B0 = lin[i].blk0 ? lin[i].blk0 : b0, B1 = lin[i].blk1 ? lin[i].blk1 : b1;
      add_case(VNRT_OP_LINEAR, 1, "%s x [%lld, %lld] . %s w [%lld, %lld] block %lldx%lld aq %lld",
               vnrt_dtype_name(lin[i].x), (long long)lin[i].t, (long long)lin[i].k, qn,
               (long long)lin[i].n, (long long)lin[i].k, (long long)B0, (long long)B1,
               (long long)lin[i].aq);
      IN(lin[i].x, GEN_UNIFORM, -2, 2, lin[i].t, lin[i].k);
      IN(q, f ? GEN_E2M1 : GEN_E4M3, 1, 14, lin[i].n, lin[i].k);
      IN(VNRT_E8M0, GEN_E8M0, 118, 130, CEIL(lin[i].n, B0), CEIL(lin[i].k, B1));
      if (lin[i].blk0) INTS("block", B0, B1);
      if (lin[i].aq) attr_i("act_quant", lin[i].aq);
    }
    /* matmul a[..., M, K] . b[K, N] */
    add_case(VNRT_OP_MATMUL, 1, "f32 [5, 200] x %s [200, 42]", qn);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 5, 200);
    IN(q, f ? GEN_E2M1 : GEN_E4M3, 1, 14, 200, 42);
    IN(VNRT_E8M0, GEN_E8M0, 120, 132, CEIL(200, b0), CEIL(42, b1));
    add_case(VNRT_OP_MATMUL, 1, "f32 [2, 3, 130] x %s [130, 70] batch", qn);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 3, 130);
    IN(q, f ? GEN_E2M1 : GEN_E4M3, 1, 14, 130, 70);
    IN(VNRT_E8M0, GEN_E8M0, 120, 132, CEIL(130, b0), CEIL(70, b1));
    add_case(VNRT_OP_MATMUL, 1, "f32 [1, 33] x %s [33, 22] block 4x8", qn);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 33);
    IN(q, f ? GEN_E2M1 : GEN_E4M3, 1, 14, 33, 22);
    IN(VNRT_E8M0, GEN_E8M0, 120, 132, CEIL(33, 4), CEIL(22, 8));
    INTS("block", 4, 8);
    /* embedding table[V, D] */
    add_case(VNRT_OP_EMBEDDING, 1, "%s table [300, 200], ids [9]", qn);
    IN(q, f ? GEN_E2M1 : GEN_E4M3, 0, 15, 300, 200);
    IN(VNRT_I32, GEN_INDEX, 0, 300, 9);
    IN(VNRT_E8M0, GEN_E8M0, 110, 140, CEIL(300, b0), CEIL(200, b1));
    add_case(VNRT_OP_EMBEDDING, 1, "%s table [7, 34], ids [2, 3]", qn);
    IN(q, f ? GEN_E2M1 : GEN_E4M3, 0, 15, 7, 34);
    IN(VNRT_I32, GEN_INDEX, 0, 7, 2, 3);
    IN(VNRT_E8M0, GEN_E8M0, 110, 140, CEIL(7, b0), CEIL(34, b1));
    /* moe_ffn E=4 k=2: both quantized, w_gate_up alone, act_quant (dyadic x and codes in
     * [2^-2, 4) so that the gate and up sums are exact in f32 on every device: act_quant's
     * rounding of the down projection's input then sees the same values). */
    static const struct {
      int64_t t, c, ff, aq, down_q;
    } moe[] = {{5, 96, 40, 0, 1}, {1, 200, 72, 0, 0}, {7, 128, 128, 128, 1}, {1, 256, 128, 128, 0}};
    for (size_t i = 0; i < sizeof moe / sizeof moe[0]; ++i) {
      const int64_t T = moe[i].t, C = moe[i].c, F = moe[i].ff;
      add_case(VNRT_OP_MOE_FFN, 1, "T=%lld E=4 k=2 C=%lld F=%lld %s %s aq %lld", (long long)T,
               (long long)C, (long long)F, qn, moe[i].down_q ? "both" : "w_gate_up alone",
               (long long)moe[i].aq);
      IN(VNRT_F32, GEN_DYADIC, -16, 16, T, C);
      IN(VNRT_I32, GEN_ROWPERM, 0, 4, T, 2);
      IN(VNRT_F32, GEN_UNIFORM, 0.1, 1, T, 2);
      IN(q, f ? GEN_E2M1 : GEN_E4M3, 5, 8, 4, 2 * F, C);
      if (moe[i].down_q) {
        IN(q, f ? GEN_E2M1 : GEN_E4M3, 5, 8, 4, C, F);
      } else {
        IN(VNRT_F32, GEN_UNIFORM, -0.3, 0.3, 4, C, F);
      }
      IN(VNRT_E8M0, GEN_E8M0, 122, 126, 4, CEIL(2 * F, b0), CEIL(C, b1));
      if (moe[i].down_q) IN(VNRT_E8M0, GEN_E8M0, 122, 126, 4, CEIL(C, b0), CEIL(F, b1));
      if (moe[i].aq) attr_i("act_quant", moe[i].aq);
    }
#undef CEIL
  }
  add_case(VNRT_OP_FAKE_QUANT, 1, "f32 [5, 256] e4m3 (blocks of 128)");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 5, 256);
  attr_w("fmt", "e4m3");
  add_case(VNRT_OP_FAKE_QUANT, 1, "f32 [3, 96] e2m1 (blocks of 32)");
  IN(VNRT_F32, GEN_UNIFORM, -3, 3, 3, 96);
  attr_w("fmt", "e2m1");
  add_case(VNRT_OP_FAKE_QUANT, 1, "bf16 [2, 3, 200] e4m3 block 64 start 32 len 128");
  IN(VNRT_BF16, GEN_UNIFORM, -20, 20, 2, 3, 200);
  attr_w("fmt", "e4m3"), attr_i("block", 64), attr_i("start", 32), attr_i("len", 128);
  add_case(VNRT_OP_FAKE_QUANT, 1, "f16 [4, 80] e2m1 block 16 start 16 len 32");
  IN(VNRT_F16, GEN_UNIFORM, -0.01, 0.01, 4, 80);
  attr_w("fmt", "e2m1"), attr_i("block", 16), attr_i("start", 16), attr_i("len", 32);
  add_case(VNRT_OP_FAKE_QUANT, 1, "f32 [1, 448] e4m3 block 64 from 64 (decode row, V4 KV)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 448);
  attr_w("fmt", "e4m3"), attr_i("block", 64), attr_i("start", 64);

  /* DeepSeek-V4 attention (docs/ops.md, "DeepSeek-V4 attention"), appended last to keep the
   * earlier case numbers: rope's YaRN and inverse, topk's fill, kv_write's ring, then the new
   * ops over prefill (odd T, tails), chunks and T = 1 decode. */
  add_case(VNRT_OP_ROPE, 1, "f32 [5, 3, 64] YaRN (Flash: theta 160000, f 16, L 65536)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 5, 3, 64);
  IN(VNRT_I32, GEN_INDEX, 0, 65536, 5);
  attr_f("theta", 160000), attr_f("yarn_factor", 16), attr_i("yarn_orig_ctx", 65536);
  add_case(VNRT_OP_ROPE, 1, "f32 [1, 8, 128] YaRN last 64 dims half-split (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 8, 128);
  IN(VNRT_I32, GEN_ARANGE, 40000, 0, 1);
  attr_f("theta", 160000), attr_i("dims", 64), attr_i("interleaved", 0);
  attr_f("yarn_factor", 16), attr_i("yarn_orig_ctx", 65536);
  add_case(VNRT_OP_ROPE, 1, "f32 [7, 2, 32] inverse");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 7, 2, 32);
  IN(VNRT_I32, GEN_INDEX, 0, 4096, 7);
  attr_i("inverse", 1);
  add_case(VNRT_OP_ROPE, 1, "bf16 [3, 4, 64] YaRN f 4 L 2048 betas 16/2, inverse");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 3, 4, 64);
  IN(VNRT_I32, GEN_INDEX, 0, 8192, 3);
  attr_f("yarn_factor", 4), attr_i("yarn_orig_ctx", 2048), attr_f("beta_fast", 16);
  attr_f("beta_slow", 2), attr_i("inverse", 1);
  add_case(VNRT_OP_TOPK, 2, "f32 [5, 37] k 4 fill -1 (some -inf)");
  IN(VNRT_F32, GEN_MASKED, -1, 0.05, 5, 37);
  attr_i("k", 4), attr_i("fill", -1);
  add_case(VNRT_OP_TOPK, 2, "f32 [9, 64] k 16 fill -1 (rows with more -inf than k)");
  IN(VNRT_F32, GEN_MASKED, -3, 0.02, 9, 64);
  attr_i("k", 16), attr_i("fill", -1);
  add_case(VNRT_OP_TOPK, 2, "f32 [4, 20] k 5 no fill (-inf keep their indices)");
  IN(VNRT_F32, GEN_MASKED, -3, 0.1, 4, 20);
  attr_i("k", 5);
  add_case(VNRT_OP_KV_WRITE, 1, "ring f32 cache [8, 2, 4] <- [3, 2, 4] at 6 (wraps)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 8, 2, 4);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 2, 4);
  IN(VNRT_I32, GEN_ARANGE, 6, 0, 1);
  attr_i("ring", 1);
  add_case(VNRT_OP_KV_WRITE, 1, "ring bf16 cache [4, 16] <- [9, 16] at 5 (T > S)");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 4, 16);
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 9, 16);
  IN(VNRT_I32, GEN_ARANGE, 5, 0, 1);
  attr_i("ring", 1);
  add_case(VNRT_OP_KV_WRITE, 1, "ring f32 cache [128, 64] <- [1, 64] at 1000 (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 128, 64);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 64);
  IN(VNRT_I32, GEN_ARANGE, 1000, 0, 1);
  attr_i("ring", 1);

  /* kv_compress: a, z [T, c·d], ape [m, c·d], state_a, state_z [c·m, c·d], pos0. Random states
   * stand for earlier runs' positions. */
  static const struct {
    int64_t m, ov, d, t, pos0;
    const char *what;
  } kvc[] = {
      {4, 1, 16, 11, 0, "CSA prefill, tail"},    {4, 1, 32, 1, 39, "CSA decode, closes"},
      {4, 1, 8, 1, 41, "CSA decode, open"},      {128, 0, 16, 300, 0, "HCA prefill, tail"},
      {128, 0, 8, 1, 255, "HCA decode, closes"}, {8, 0, 5, 19, 13, "chunk mid-window"},
      {8, 1, 6, 21, 77, "CSA chunk mid-window"}, {4, 1, 300, 9, 5, "CSA wide entries"},
  };
  for (size_t i = 0; i < sizeof kvc / sizeof kvc[0]; ++i) {
    const int64_t c = 1 + kvc[i].ov, cd = c * kvc[i].d;
    add_case(VNRT_OP_KV_COMPRESS, 4, "m=%lld overlap=%lld d=%lld T=%lld pos0=%lld (%s)",
             (long long)kvc[i].m, (long long)kvc[i].ov, (long long)kvc[i].d, (long long)kvc[i].t,
             (long long)kvc[i].pos0, kvc[i].what);
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, kvc[i].t, cd);
    IN(VNRT_F32, GEN_UNIFORM, -3, 3, kvc[i].t, cd);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, kvc[i].m, cd);
    IN(VNRT_F32, GEN_UNIFORM, -2, 2, c * kvc[i].m, cd);
    IN(VNRT_F32, GEN_UNIFORM, -3, 3, c * kvc[i].m, cd);
    IN(VNRT_I32, GEN_ARANGE, (double)kvc[i].pos0, 0, 1);
    attr_i("ratio", kvc[i].m), attr_i("overlap", kvc[i].ov);
  }

  /* kv_scatter: distinct target rows, every fourth pos -1. */
  add_case(VNRT_OP_KV_SCATTER, 1, "f32 cache [16, 8] <- [5, 8]");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 16, 8);
  IN(VNRT_F32, GEN_UNIFORM, 2, 3, 5, 8);
  IN(VNRT_I32, GEN_SCATTER, 1, 16, 5);
  add_case(VNRT_OP_KV_SCATTER, 1, "f32 cache [20, 2, 4] <- [3, 2, 4] div 4");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 20, 2, 4);
  IN(VNRT_F32, GEN_UNIFORM, 2, 3, 3, 2, 4);
  IN(VNRT_I32, GEN_SCATTER, 4, 20, 3);
  attr_i("div", 4);
  add_case(VNRT_OP_KV_SCATTER, 1, "bf16 cache [40, 32] <- [2, 32] div 128");
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 40, 32);
  IN(VNRT_BF16, GEN_UNIFORM, 2, 3, 2, 32);
  IN(VNRT_I32, GEN_SCATTER, 128, 40, 2);
  attr_i("div", 128);

  /* index_scores q[T, Hi, Di], k[S, Di], w[T, Hi], pos[T]. */
  static const struct {
    int64_t t, hi, di, s, ratio, pos, step;
    vnrt_dtype dt;
  } isc[] = {
      {7, 4, 32, 5, 4, 0, 1, VNRT_F32},         {1, 64, 128, 300, 4, 1000, 0, VNRT_F32},
      {5, 3, 20, 4, 128, 250, 60, VNRT_F32},    {3, 8, 64, 33, 4, 100, 1, VNRT_BF16},
      {2, 64, 128, 1024, 4, 4090, 1, VNRT_F32}, {1, 16, 64, 17, 128, 2100, 0, VNRT_F16},
  };
  for (size_t i = 0; i < sizeof isc / sizeof isc[0]; ++i) {
    add_case(VNRT_OP_INDEX_SCORES, 1, "%s T=%lld Hi=%lld Di=%lld S=%lld ratio %lld pos %lld",
             vnrt_dtype_name(isc[i].dt), (long long)isc[i].t, (long long)isc[i].hi,
             (long long)isc[i].di, (long long)isc[i].s, (long long)isc[i].ratio,
             (long long)isc[i].pos);
    IN(isc[i].dt, GEN_UNIFORM, -1, 1, isc[i].t, isc[i].hi, isc[i].di);
    IN(isc[i].dt, GEN_UNIFORM, -1, 1, isc[i].s, isc[i].di);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, isc[i].t, isc[i].hi);
    IN(VNRT_I32, GEN_ARANGE, (double)isc[i].pos, (double)isc[i].step, isc[i].t);
    attr_i("ratio", isc[i].ratio);
  }

  /* sparse_attention q[T, H, D], kv[T, D], ring[W, D], sinks[H], pos0, comp[Sc, D]?, idx?. */
  static const struct {
    int64_t t, h, d, w, pos0, sc, ratio, k;
    const char *what;
  } spa[] = {
      {9, 4, 32, 4, 0, 0, 0, 0, "prefill, window only"},
      {5, 2, 16, 8, 13, 0, 0, 0, "chunk, ring wraps"},
      {1, 16, 64, 128, 700, 6, 128, 0, "HCA decode"},
      {7, 3, 24, 8, 40, 12, 4, 0, "HCA chunk"},
      {1, 8, 64, 16, 300, 80, 4, 16, "CSA decode"},
      {6, 3, 24, 8, 0, 2, 4, 2, "CSA prefill, -1 entries"},
      {1, 64, 512, 128, 5000, 1300, 4, 512, "V4 Flash-like decode"},
  };
  for (size_t i = 0; i < sizeof spa / sizeof spa[0]; ++i) {
    add_case(VNRT_OP_SPARSE_ATTENTION, 1,
             "T=%lld H=%lld D=%lld W=%lld pos0=%lld Sc=%lld ratio %lld K=%lld (%s)",
             (long long)spa[i].t, (long long)spa[i].h, (long long)spa[i].d, (long long)spa[i].w,
             (long long)spa[i].pos0, (long long)spa[i].sc, (long long)spa[i].ratio,
             (long long)spa[i].k, spa[i].what);
    IN(VNRT_F32, GEN_UNIFORM, -1.5, 1.5, spa[i].t, spa[i].h, spa[i].d);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, spa[i].t, spa[i].d);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, spa[i].w, spa[i].d);
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, spa[i].h);
    IN(VNRT_I32, GEN_ARANGE, (double)spa[i].pos0, 0, 1);
    if (spa[i].sc) {
      IN(VNRT_F32, GEN_UNIFORM, -1, 1, spa[i].sc, spa[i].d);
      attr_i("ratio", spa[i].ratio);
    }
    if (spa[i].k) IN(VNRT_I32, GEN_OPTINDEX, 0, (double)spa[i].sc, spa[i].t, spa[i].k);
  }
  add_case(VNRT_OP_SPARSE_ATTENTION, 1, "bf16 q/kv T=3 H=4 D=32 W=4 pos0=9 scale 0.2");
  IN(VNRT_BF16, GEN_UNIFORM, -1.5, 1.5, 3, 4, 32);
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 3, 32);
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 4, 32);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 4);
  IN(VNRT_I32, GEN_ARANGE, 9, 0, 1);
  attr_f("scale", 0.2);

  /* grouped_linear x[..., G·K] . w[G·N, K]: float weights, then FP8 (128x128 blocks that
   * straddle groups) and FP4 (1x32). */
  for (int d = 0; d < 3; ++d) {
    add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [3, 64] . %s w [40, 16] G=4",
             vnrt_dtype_name(kFloat[d]));
    IN(VNRT_F32, GEN_UNIFORM, -1, 1, 3, 64);
    IN(kFloat[d], GEN_UNIFORM, -1, 1, 40, 16);
    attr_i("groups", 4);
  }
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [1, 512] . bf16 w [256, 64] G=8 (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 1, 512);
  IN(VNRT_BF16, GEN_UNIFORM, -1, 1, 256, 64);
  attr_i("groups", 8);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [2, 3, 66] . f16 w [14, 33] G=2");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 2, 3, 66);
  IN(VNRT_F16, GEN_UNIFORM, -1, 1, 14, 33);
  attr_i("groups", 2);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [17, 288] . f32 w [192, 96] G=3");
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 17, 288);
  IN(VNRT_F32, GEN_UNIFORM, -1, 1, 192, 96);
  attr_i("groups", 3);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [3, 800] . e4m3 w [160, 200] G=4");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 3, 800);
  IN(VNRT_E4M3, GEN_E4M3, 1, 14, 160, 200);
  IN(VNRT_E8M0, GEN_E8M0, 118, 130, 2, 2);
  attr_i("groups", 4);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [1, 1024] . e4m3 w [384, 128] G=8 (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 1, 1024);
  IN(VNRT_E4M3, GEN_E4M3, 1, 14, 384, 128);
  IN(VNRT_E8M0, GEN_E8M0, 118, 130, 3, 1);
  attr_i("groups", 8);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [4, 192] . e4m3 w [30, 64] G=3 block 16x32");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 4, 192);
  IN(VNRT_E4M3, GEN_E4M3, 1, 14, 30, 64);
  IN(VNRT_E8M0, GEN_E8M0, 118, 130, 2, 2);
  attr_i("groups", 3), INTS("block", 16, 32);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [5, 256] . e2m1 w [36, 64] G=4");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 5, 256);
  IN(VNRT_E2M1, GEN_E2M1, 1, 14, 36, 64);
  IN(VNRT_E8M0, GEN_E8M0, 118, 130, 36, 2);
  attr_i("groups", 4);
  add_case(VNRT_OP_GROUPED_LINEAR, 1, "f32 x [1, 1536] . e2m1 w [128, 96] G=16 (decode)");
  IN(VNRT_F32, GEN_UNIFORM, -2, 2, 1, 1536);
  IN(VNRT_E2M1, GEN_E2M1, 1, 14, 128, 96);
  IN(VNRT_E8M0, GEN_E8M0, 118, 130, 128, 3);
  attr_i("groups", 16);

  /* A DeepSeek-V4 decode step's linears (one row, act_quant 128, K = 512 / 1024 / 2048, N not
   * a multiple of the 4-row groups): the in-register path and its vector act_quant. */
  static const struct {
    int64_t n, k;
    vnrt_dtype x;
  } v4lin[] = {{77, 512, VNRT_BF16}, {42, 1024, VNRT_F32}, {21, 2048, VNRT_BF16}};
  for (size_t i = 0; i < sizeof v4lin / sizeof v4lin[0]; ++i) {
    add_case(VNRT_OP_LINEAR, 1, "%s x [1, %lld] . e4m3 w [%lld, %lld] aq 128 (V4 decode)",
             vnrt_dtype_name(v4lin[i].x), (long long)v4lin[i].k, (long long)v4lin[i].n,
             (long long)v4lin[i].k);
    IN(v4lin[i].x, GEN_UNIFORM, -2, 2, 1, v4lin[i].k);
    IN(VNRT_E4M3, GEN_E4M3, 1, 14, v4lin[i].n, v4lin[i].k);
    IN(VNRT_E8M0, GEN_E8M0, 118, 130, (v4lin[i].n + 127) / 128, (v4lin[i].k + 127) / 128);
    attr_i("act_quant", 128);
  }
}
