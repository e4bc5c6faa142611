/* vnrt-validate: runs every op on every selected device against the CPU reference kernels. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/vnrt.h"

/* ---- Cases ----------------------------------------------------------------------------- */

typedef enum gen_kind {
  GEN_UNIFORM,  /* uniform in [lo, hi) */
  GEN_INDEX,    /* i32 uniform in [0, hi) */
  GEN_DISTINCT, /* per last-dim row, a shuffled ramp lo, lo+step, ... (no near-ties) */
  GEN_ROWPERM,  /* i32 per row: distinct values in [0, hi) (expert ids) */
  GEN_ARANGE,   /* i32: lo + i * hi */
  GEN_E4M3,     /* e4m3 codes, random sign and mantissa, exponent field in [lo, hi], no NaN */
  GEN_E2M1,     /* e2m1 codes, any nibble */
  GEN_E8M0,     /* e8m0 scale codes in [lo, hi] */
  GEN_DYADIC,   /* an integer in [lo, hi] / 16: sums of products with the codes stay exact */
} gen_kind;

typedef struct input_spec {
  vnrt_tensor_type type;
  gen_kind gen;
  double lo, hi;
} input_spec;

#define MAX_IN 7
#define MAX_ATTRS 6
#define MAX_LIST 32

typedef struct vcase {
  vnrt_op op;
  char label[96];
  int32_t n_in, n_out;
  input_spec in[MAX_IN];
  int32_t n_attrs;
  vnrt_attr attrs[MAX_ATTRS];
  int64_t lists[MAX_ATTRS][MAX_LIST]; /* storage for INTS attributes */
} vcase;

static vcase *cases;
static int32_t n_cases, cap_cases;
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

static void build_cases(void) {
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
}

/* ---- Inputs ---------------------------------------------------------------------------- */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

static void store(void *data, vnrt_dtype dt, int64_t i, double v) {
  switch (dt) {
    case VNRT_F32:
      ((float *)data)[i] = (float)v;
      break;
    case VNRT_F16:
      ((uint16_t *)data)[i] = vnrt_f32_to_f16((float)v);
      break;
    case VNRT_BF16:
      ((uint16_t *)data)[i] = vnrt_f32_to_bf16((float)v);
      break;
    case VNRT_I32:
      ((int32_t *)data)[i] = (int32_t)v;
      break;
    case VNRT_E4M3:
    case VNRT_E8M0:
      ((uint8_t *)data)[i] = (uint8_t)v; /* v is the code */
      break;
    default:
      break;
  }
}

static double load(const void *data, vnrt_dtype dt, int64_t i) {
  switch (dt) {
    case VNRT_F32:
      return ((const float *)data)[i];
    case VNRT_F16:
      return vnrt_f16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_BF16:
      return vnrt_bf16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_I32:
      return ((const int32_t *)data)[i];
    default:
      return NAN;
  }
}

static void *make_input(const input_spec *s, uint64_t seed) {
  size_t bytes = vnrt_tensor_type_bytes(&s->type);
  void *data = calloc(1, bytes ? bytes : 1);
  if (!data) return NULL;
  int64_t n = vnrt_tensor_type_numel(&s->type);
  int64_t row = s->type.rank ? s->type.dims[s->type.rank - 1] : 1;
  uint64_t st = seed;
  switch (s->gen) {
    case GEN_UNIFORM:
      for (int64_t i = 0; i < n; ++i)
        store(data, s->type.dtype, i, s->lo + (s->hi - s->lo) * next_unit(&st));
      break;
    case GEN_INDEX:
      for (int64_t i = 0; i < n; ++i)
        store(data, VNRT_I32, i, (double)(next_u64(&st) % (uint64_t)s->hi));
      break;
    case GEN_ARANGE:
      for (int64_t i = 0; i < n; ++i) store(data, VNRT_I32, i, s->lo + (double)i * s->hi);
      break;
    case GEN_E4M3:
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = next_u64(&st);
        const int e = (int)s->lo + (int)(r % (uint64_t)(s->hi - s->lo + 1));
        uint8_t c = (uint8_t)(((r >> 8) & 0x80) | (uint64_t)(e << 3) | ((r >> 16) & 7));
        if ((c & 0x7F) == 0x7F) c = (uint8_t)(c - 1); /* never NaN */
        store(data, VNRT_E4M3, i, c);
      }
      break;
    case GEN_E2M1:
      for (size_t i = 0; i < bytes; ++i) ((uint8_t *)data)[i] = (uint8_t)next_u64(&st);
      break;
    case GEN_E8M0:
      for (int64_t i = 0; i < n; ++i) {
        store(data, VNRT_E8M0, i, s->lo + (double)(next_u64(&st) % (uint64_t)(s->hi - s->lo + 1)));
      }
      break;
    case GEN_DYADIC:
      for (int64_t i = 0; i < n; ++i) {
        const double k = s->lo + (double)(next_u64(&st) % (uint64_t)(s->hi - s->lo + 1));
        store(data, s->type.dtype, i, k / 16.0);
      }
      break;
    case GEN_DISTINCT:
    case GEN_ROWPERM: {
      int64_t span = s->gen == GEN_ROWPERM ? (int64_t)s->hi : row;
      int64_t *perm = malloc((size_t)span * sizeof *perm);
      if (!perm) {
        free(data);
        return NULL;
      }
      for (int64_t r = 0; r < n / row; ++r) {
        for (int64_t i = 0; i < span; ++i) perm[i] = i;
        for (int64_t i = span - 1; i > 0; --i) {
          int64_t j = (int64_t)(next_u64(&st) % (uint64_t)(i + 1));
          int64_t t = perm[i];
          perm[i] = perm[j], perm[j] = t;
        }
        for (int64_t i = 0; i < row; ++i) {
          double v = s->gen == GEN_ROWPERM ? (double)perm[i] : s->lo + s->hi * (double)perm[i];
          store(data, s->type.dtype, r * row + i, v);
        }
      }
      free(perm);
      break;
    }
  }
  return data;
}

/* ---- Running and comparing ------------------------------------------------------------- */

typedef struct result {
  void *data[4];
  vnrt_tensor_type type[4];
} result;

static void free_result(result *r) {
  for (int i = 0; i < 4; ++i) free(r->data[i]), r->data[i] = NULL;
}

static vnrt_status run_case(vnrt_context *ctx, const vcase *c, void *const *inputs,
                            vnrt_device *device, vnrt_kernel_mode mode, result *out, char *err,
                            size_t err_size) {
  memset(out, 0, sizeof *out);
  vnrt_graph *g = NULL;
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_graph_create(ctx, &g);
  vnrt_value in[MAX_IN], res[4];
  const char *in_names[MAX_IN] = {"in0", "in1", "in2", "in3", "in4", "in5", "in6"};
  const char *out_names[4] = {"out0", "out1", "out2", "out3"};
  for (int32_t i = 0; i < c->n_in && s == VNRT_OK; ++i) {
    s = vnrt_graph_add_input(g, in_names[i], &c->in[i].type, 0, &in[i]);
  }
  vnrt_attr attrs[MAX_ATTRS];
  for (int32_t k = 0; k < c->n_attrs; ++k) {
    attrs[k] = c->attrs[k];
    if (attrs[k].kind == VNRT_ATTR_INTS) attrs[k].ints = c->lists[k];
  }
  if (s == VNRT_OK) {
    s = vnrt_graph_add_node(g, c->op, in, c->n_in, attrs, c->n_attrs, out_names, res, c->n_out);
  }
  for (int32_t i = 0; i < c->n_out && s == VNRT_OK; ++i) s = vnrt_graph_add_output(g, res[i]);
  vnrt_plan_desc desc = {0};
  desc.no_fallback = 1;
  desc.kernels = mode;
  if (s == VNRT_OK) s = vnrt_plan_create(ctx, g, device, &desc, &plan);
  for (int32_t i = 0; i < c->n_in && s == VNRT_OK; ++i) {
    s = vnrt_plan_set_input(plan, in_names[i], inputs[i], vnrt_tensor_type_bytes(&c->in[i].type));
  }
  if (s == VNRT_OK) s = vnrt_plan_run(plan);
  for (int32_t i = 0; i < c->n_out && s == VNRT_OK; ++i) {
    s = vnrt_plan_output_type(plan, out_names[i], &out->type[i]);
    size_t bytes = vnrt_tensor_type_bytes(&out->type[i]);
    out->data[i] = malloc(bytes ? bytes : 1);
    if (s == VNRT_OK && !out->data[i]) s = VNRT_ERROR_OUT_OF_MEMORY;
    if (s == VNRT_OK) s = vnrt_plan_read_output(plan, out_names[i], out->data[i], bytes);
  }
  if (s != VNRT_OK) {
    snprintf(err, err_size, "%s: %s", vnrt_status_string(s), vnrt_context_last_error(ctx));
    free_result(out);
  }
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  return s;
}

static bool exact_op(vnrt_op op) {
  return op == VNRT_OP_MATMUL || op == VNRT_OP_LINEAR || op == VNRT_OP_ATTENTION ||
         op == VNRT_OP_MOE_FFN;
}

/* Compares one case's outputs; returns the worst NMSE (INFINITY for a mismatch of integers,
 * shapes, or non-finite values where the reference is finite). */
static double compare(const result *got, const result *ref, int32_t n_out, char *why,
                      size_t why_size) {
  double worst = 0.0;
  for (int32_t o = 0; o < n_out; ++o) {
    const vnrt_tensor_type *tg = &got->type[o], *tr = &ref->type[o];
    if (tg->dtype != tr->dtype || vnrt_tensor_type_numel(tg) != vnrt_tensor_type_numel(tr)) {
      snprintf(why, why_size, "output %d: type differs from the reference", o);
      return INFINITY;
    }
    int64_t n = vnrt_tensor_type_numel(tr);
    if (tr->dtype == VNRT_I32) {
      for (int64_t i = 0; i < n; ++i) {
        int32_t a = ((const int32_t *)got->data[o])[i], b = ((const int32_t *)ref->data[o])[i];
        if (a != b) {
          snprintf(why, why_size, "output %d: integer element %lld is %d, reference %d", o,
                   (long long)i, a, b);
          return INFINITY;
        }
      }
      continue;
    }
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      double a = load(got->data[o], tg->dtype, i), r = load(ref->data[o], tr->dtype, i);
      if (isfinite(r) && !isfinite(a)) {
        snprintf(why, why_size, "output %d: element %lld is %g where the reference is %g", o,
                 (long long)i, a, r);
        return INFINITY;
      }
      num += (a - r) * (a - r);
      den += r * r;
    }
    double nmse = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
    if (nmse > worst) {
      worst = nmse;
      snprintf(why, why_size, "output %d: NMSE %.3g", o, nmse);
    }
  }
  return worst;
}

/* ---- Reporting ------------------------------------------------------------------------- */

typedef struct row {
  vnrt_op op;
  char device[32];
  int cases, passed, failed, unsupported;
  double worst;
} row;

static void usage(FILE *f) {
  fprintf(f,
          "usage: vnrt-validate [--device SPEC|all] [--op NAME]... [--seed N] [--case N]\n"
          "                     [--json FILE] [--list]\n"
          "Runs every op on each selected device (default: all) over several shapes and dtypes\n"
          "against the CPU reference kernels of docs/ops.md, with its tolerances. On the cpu\n"
          "device it checks the fast kernels against the reference kernels. Exits 1 on any\n"
          "failure or when no case ran.\n");
}

int main(int argc, char **argv) {
  const char *device_spec = "all", *json_path = NULL;
  const char *ops[64];
  int n_ops = 0, only_case = -1, list = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--list")) {
      list = 1;
    } else if (v && !strcmp(a, "--device")) {
      device_spec = v, ++i;
    } else if (v && !strcmp(a, "--op")) {
      if (n_ops < 64) ops[n_ops++] = v;
      ++i;
    } else if (v && !strcmp(a, "--seed")) {
      seed = strtoull(v, NULL, 10), ++i;
    } else if (v && !strcmp(a, "--case")) {
      only_case = atoi(v), ++i;
    } else if (v && !strcmp(a, "--json")) {
      json_path = v, ++i;
    } else {
      fprintf(stderr, "vnrt-validate: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  for (int i = 0; i < n_ops; ++i) {
    if (vnrt_op_from_name(ops[i]) == VNRT_OP_INVALID) {
      fprintf(stderr, "vnrt-validate: unknown op '%s'\n", ops[i]);
      return 2;
    }
  }
  build_cases();
  if (list) {
    for (int32_t c = 0; c < n_cases; ++c) {
      printf("%3d  %-16s %s\n", c, vnrt_op_name(cases[c].op), cases[c].label);
    }
    return 0;
  }

  vnrt_context_desc cd = {0};
  cd.log_level = VNRT_LOG_ERROR;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&cd, &ctx);
  if (s != VNRT_OK) {
    fprintf(stderr, "vnrt-validate: cannot create a context: %s\n", vnrt_status_string(s));
    return 2;
  }
  vnrt_device *cpu = NULL;
  vnrt_device_select(ctx, "cpu", &cpu);
  vnrt_device *devices[64];
  int n_dev = 0;
  if (!strcmp(device_spec, "all")) {
    for (uint32_t i = 0; i < vnrt_device_count(ctx) && n_dev < 64; ++i) {
      vnrt_device_get(ctx, i, &devices[n_dev++]);
    }
  } else if (vnrt_device_select(ctx, device_spec, &devices[0]) == VNRT_OK) {
    n_dev = 1;
  } else {
    fprintf(stderr, "vnrt-validate: %s\n", vnrt_context_last_error(ctx));
    vnrt_context_destroy(ctx);
    return 2;
  }

  row *rows = calloc((size_t)n_dev * VNRT_OP_COUNT, sizeof *rows);
  FILE *json = NULL;
  if (json_path) {
    json = fopen(json_path, "w");
    if (!json) {
      fprintf(stderr, "vnrt-validate: cannot write %s\n", json_path);
      return 2;
    }
    fprintf(json, "{\n  \"seed\": %llu,\n  \"failures\": [", (unsigned long long)seed);
  }
  int total_ran = 0, total_failed = 0, n_fail_json = 0;
  for (int d = 0; d < n_dev; ++d) {
    vnrt_device_info info;
    vnrt_device_get_info(devices[d], &info);
    bool is_cpu = devices[d] == cpu;
    for (int32_t c = 0; c < n_cases; ++c) {
      const vcase *vc = &cases[c];
      if (only_case >= 0 && c != only_case) continue;
      bool selected = n_ops == 0;
      for (int i = 0; i < n_ops; ++i) selected |= !strcmp(ops[i], vnrt_op_name(vc->op));
      if (!selected) continue;
      row *r = &rows[d * VNRT_OP_COUNT + vc->op];
      r->op = vc->op;
      snprintf(r->device, sizeof r->device, "%s", info.spec);
      void *inputs[MAX_IN] = {0};
      for (int32_t i = 0; i < vc->n_in; ++i) {
        inputs[i] = make_input(&vc->in[i], seed * 1000003u + (uint64_t)c * 31u + (uint64_t)i);
      }
      result ref, got;
      char err[2048] = "", why[256] = "";
      /* The reference always runs the CPU's reference kernels. */
      s = run_case(ctx, vc, inputs, cpu, VNRT_KERNELS_REFERENCE, &ref, err, sizeof err);
      if (s != VNRT_OK) {
        r->cases++, r->failed++, total_failed++;
        printf("FAIL %s %s [%s]: the reference failed: %s\n", info.spec, vnrt_op_name(vc->op),
               vc->label, err);
      } else {
        s = run_case(ctx, vc, inputs, devices[d], VNRT_KERNELS_FAST, &got, err, sizeof err);
        if (s == VNRT_ERROR_UNSUPPORTED) {
          r->unsupported++;
        } else {
          r->cases++;
          total_ran++;
          double nmse = s == VNRT_OK ? compare(&got, &ref, vc->n_out, why, sizeof why) : INFINITY;
          double tol = exact_op(vc->op) ? 1e-6 : 1e-7;
          if (s != VNRT_OK || !(nmse <= tol)) {
            r->failed++, total_failed++;
            printf(
                "FAIL %s %s [%s]: %s\n  replay: vnrt-validate --device %s --op %s --case %d "
                "--seed %llu\n",
                info.spec, vnrt_op_name(vc->op), vc->label, s != VNRT_OK ? err : why, info.spec,
                vnrt_op_name(vc->op), c, (unsigned long long)seed);
            if (json) {
              fprintf(json,
                      "%s\n    {\"device\": \"%s\", \"op\": \"%s\", \"case\": %d, "
                      "\"label\": \"%s\"}",
                      n_fail_json++ ? "," : "", info.spec, vnrt_op_name(vc->op), c, vc->label);
            }
          } else {
            r->passed++;
          }
          if (s == VNRT_OK && nmse > r->worst) r->worst = nmse;
          if (s != VNRT_OK || isinf(nmse)) r->worst = INFINITY;
          free_result(&got);
        }
        free_result(&ref);
      }
      for (int32_t i = 0; i < vc->n_in; ++i) free(inputs[i]);
    }
    (void)is_cpu;
  }

  printf("\n%-16s %-10s %6s %7s %7s %12s %11s\n", "op", "device", "cases", "passed", "failed",
         "unsupported", "worst NMSE");
  int n_unsupported_rows = 0;
  for (int d = 0; d < n_dev; ++d) {
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      const row *r = &rows[d * VNRT_OP_COUNT + op];
      if (!r->device[0]) continue;
      printf("%-16s %-10s %6d %7d %7d %12d %11.2e%s\n", vnrt_op_name(r->op), r->device, r->cases,
             r->passed, r->failed, r->unsupported, r->worst,
             r->unsupported ? "  (unsupported cases are not passes)" : "");
      n_unsupported_rows += r->unsupported > 0;
    }
  }
  printf("\n%d cases ran, %d failed", total_ran, total_failed);
  if (n_unsupported_rows) {
    printf("; unsupported on some devices:");
    for (int d = 0; d < n_dev; ++d) {
      for (int op = 0; op < VNRT_OP_COUNT; ++op) {
        const row *r = &rows[d * VNRT_OP_COUNT + op];
        if (r->device[0] && r->unsupported) printf(" %s@%s", vnrt_op_name(r->op), r->device);
      }
    }
  }
  printf("\n");
  if (json) {
    fprintf(json, "\n  ],\n  \"results\": [");
    int first = 1;
    for (int d = 0; d < n_dev; ++d) {
      for (int op = 0; op < VNRT_OP_COUNT; ++op) {
        const row *r = &rows[d * VNRT_OP_COUNT + op];
        if (!r->device[0]) continue;
        fprintf(json,
                "%s\n    {\"op\": \"%s\", \"device\": \"%s\", \"cases\": %d, \"passed\": %d, "
                "\"failed\": %d, \"unsupported\": %d, \"worst_nmse\": %.6g}",
                first ? "" : ",", vnrt_op_name(r->op), r->device, r->cases, r->passed, r->failed,
                r->unsupported, isinf(r->worst) ? -1.0 : r->worst);
        first = 0;
      }
    }
    fprintf(json, "\n  ],\n  \"cases_ran\": %d,\n  \"failed\": %d\n}\n", total_ran, total_failed);
    fclose(json);
  }
  free(rows);
  free(cases);
  vnrt_context_destroy(ctx);
  if (total_ran == 0) {
    fprintf(stderr, "vnrt-validate: no case ran: that is a failure, not a pass\n");
    return 1;
  }
  return total_failed ? 1 : 0;
}
