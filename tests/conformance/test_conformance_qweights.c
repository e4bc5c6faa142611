/* Conformance: quantized weights (docs/ops.md, "Quantized weights") on every device: linear,
 * matmul, embedding and moe_ffn with e4m3 (FP8) and e2m1 (FP4) codes and their e8m0 scales,
 * act_quant 0 and 128, and fake_quant, against references written here in double precision.
 *
 * The reference path never calls vnrt's codecs: e4m3, e2m1 and e8m0 are decoded by their
 * formulas, the encoders (act_quant, fake_quant) search the sorted code values for the nearest
 * one (ties to the even code), and the block scale is the smallest power of two 2^c with
 * fmt_max·2^c >= max(amax, floor), found by exact comparisons. Hand-computed cases pin the
 * references themselves (and the e2m1 nibble order) before anything random relies on them.
 *
 * Tolerance: NMSE <= 1e-10 against the double reference for f32 results (the products are f32
 * sums of exactly dequantized values). Where act_quant rounds a value the kernel computed (the
 * down projection's input of moe_ffn), an element within f32 rounding of an e4m3 rounding
 * midpoint may go either way: the reference lists those elements and takes, per token, the
 * roundings that best explain the device's result (each is a valid outcome), then applies the
 * same bound. Inputs there are dyadic so that the gate/up sums are exact in f32.
 *
 * Fallback: the switch below. With QW_ALLOW_FALLBACK 0 (the default) a built-in device that
 * sends one of these nodes to the CPU fails, as in test_conformance_quant.c, unless
 * VNRT_TEST_FALLBACK=1 (the plugin runs). Set it to 1 while a backend has no kernel yet: its
 * fallback then passes with a note on stderr. Knobs (VNRT_TEST_DEVICES, VNRT_PLUGIN_PATH,
 * VNRT_TEST_FALLBACK): tests/conformance/meson.build. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* 0: built-in devices must run these ops natively; 1: their CPU fallback passes too. */
#define QW_ALLOW_FALLBACK 0

#define TOL 1e-10

/* ---- random data ------------------------------------------------------------------------ */

static uint64_t rng_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_u64(s) >> 11) * 0x1.0p-53; }

/* ---- reference codecs (double, independent of core/quant.c) ------------------------------ */

/* e4m3fn: s eeee mmm, bias 7; exponent 0 is subnormal m·2^-9; 0x7F/0xFF are NaN. */
static double ref_e4m3(uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e ? ldexp(8 + m, e - 10) : ldexp(m, -9);
  return (c & 0x80) ? -mag : mag;
}

/* e2m1: s ee m, bias 1; exponent 0 is subnormal m·0.5. Levels 0, .5, 1, 1.5, 2, 3, 4, 6. */
static double ref_e2m1(uint8_t nib) {
  const int e = (nib >> 1) & 3, m = nib & 1;
  const double mag = e ? ldexp(2 + m, e - 2) : 0.5 * m;
  return (nib & 8) ? -mag : mag;
}

static double ref_e8m0(uint8_t c) { return c == 255 ? NAN : ldexp(1.0, c - 127); }

/* Code c of a weight stored as dt (e4m3: one byte; e2m1: packed, element i of the row-major
 * tensor in the low nibble of byte i/2 when i is even). Rows have an even length for e2m1, so
 * a flat index packs the same way as a per-row one. */
static uint8_t code_at(const tu_tensor *w, int64_t i) {
  const uint8_t *b = w->data;
  if (w->type.dtype == VNRT_E4M3) return b[i];
  return (uint8_t)((i & 1) ? b[i / 2] >> 4 : b[i / 2] & 15);
}
static void code_set(tu_tensor *w, int64_t i, uint8_t c) {
  uint8_t *b = w->data;
  if (w->type.dtype == VNRT_E4M3) {
    b[i] = c;
  } else if (i & 1) {
    b[i / 2] = (uint8_t)((b[i / 2] & 0x0F) | (c << 4));
  } else {
    b[i / 2] = (uint8_t)((b[i / 2] & 0xF0) | (c & 15));
  }
}
static double dec(vnrt_dtype fmt, uint8_t c) {
  return fmt == VNRT_E4M3 ? ref_e4m3(c) : ref_e2m1(c);
}

/* The non-negative levels of fmt in code order (sorted ascending: checked). */
typedef struct levels {
  double v[128];
  int n;
  double max;
} levels;

static const levels *levels_of(vnrt_dtype fmt) {
  static levels l8, l4;
  levels *l = fmt == VNRT_E4M3 ? &l8 : &l4;
  if (l->n == 0) {
    const int n = fmt == VNRT_E4M3 ? 127 : 8; /* e4m3 0x00..0x7E (0x7F is NaN) */
    for (int i = 0; i < n; ++i) l->v[i] = dec(fmt, (uint8_t)i);
    for (int i = 1; i < n; ++i) ck_assert_msg(l->v[i] > l->v[i - 1], "levels not sorted");
    l->n = n;
    l->max = l->v[n - 1];
  }
  return l;
}

/* Nearest code to v (RNE: a tie goes to the even code; beyond the largest level, the largest). */
static uint8_t ref_encode(vnrt_dtype fmt, double v) {
  const levels *l = levels_of(fmt);
  const uint8_t sign = signbit(v) ? (fmt == VNRT_E4M3 ? 0x80 : 0x08) : 0;
  const double a = fabs(v);
  int lo = 0, hi = l->n; /* first index with v[j] >= a, by bisection */
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (l->v[mid] >= a) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  int j;
  if (lo == l->n) {
    j = l->n - 1;
  } else if (lo == 0) {
    j = 0;
  } else {
    const double below = a - l->v[lo - 1], above = l->v[lo] - a;
    j = below < above ? lo - 1 : above < below ? lo : ((lo - 1) % 2 == 0 ? lo - 1 : lo);
  }
  return (uint8_t)(sign | j);
}

/* The block scale exponent c: the smallest integer with fmt_max·2^c >= max(amax, floor). */
static int ref_scale_exp(vnrt_dtype fmt, double amax) {
  const double fmax = fmt == VNRT_E4M3 ? 448.0 : 6.0;
  const double floor_ = fmt == VNRT_E4M3 ? 1e-4 : 6.0 * ldexp(1.0, -126);
  const double a = amax > floor_ ? amax : floor_;
  int c = (int)floor(log2(a / fmax)) - 2;
  while (ldexp(fmax, c) < a) ++c;
  return c;
}

/* In place: one block quantized to fmt with its power-of-two scale and dequantized. */
static void ref_fake_quant_block(double *v, int64_t n, vnrt_dtype fmt) {
  double amax = 0.0;
  for (int64_t i = 0; i < n; ++i) amax = fabs(v[i]) > amax ? fabs(v[i]) : amax;
  const int c = ref_scale_exp(fmt, amax);
  for (int64_t i = 0; i < n; ++i) {
    v[i] = ldexp(dec(fmt, ref_encode(fmt, ldexp(v[i], -c))), c);
  }
}

/* ---- quantized weights ------------------------------------------------------------------ */

/* A weight: codes [..., R, C] and its e8m0 scale [..., ceil(R/b0), ceil(C/b1)]. */
typedef struct qweight {
  tu_tensor codes, scale;
  int64_t block[2];
} qweight;

/* Random codes (e4m3: exponent field in [e_lo, e_hi], NaN codes never; e2m1: any nibble) and
 * scale codes in [s_lo, s_hi]. dims: rank 2 or 3. */
static qweight qweight_new(vnrt_dtype fmt, int32_t rank, const int64_t *dims, const int64_t *block,
                           uint64_t seed, int e_lo, int e_hi, int s_lo, int s_hi) {
  qweight q;
  q.block[0] = block ? block[0] : fmt == VNRT_E4M3 ? 128 : 1;
  q.block[1] = block ? block[1] : fmt == VNRT_E4M3 ? 128 : 32;
  q.codes = tu_tensor_new(fmt, rank, dims);
  int64_t sd[4];
  for (int32_t i = 0; i < rank; ++i) sd[i] = dims[i];
  sd[rank - 2] = (dims[rank - 2] + q.block[0] - 1) / q.block[0];
  sd[rank - 1] = (dims[rank - 1] + q.block[1] - 1) / q.block[1];
  q.scale = tu_tensor_new(VNRT_E8M0, rank, sd);
  uint64_t s = seed * 0x2545f4914f6cdd1dull + 7;
  const int64_t n = tu_numel(&q.codes);
  for (int64_t i = 0; i < n; ++i) {
    uint8_t c;
    if (fmt == VNRT_E4M3) {
      const int e = e_lo + (int)(rng_u64(&s) % (uint64_t)(e_hi - e_lo + 1));
      c = (uint8_t)((rng_u64(&s) & 0x80) | (e << 3) | (rng_u64(&s) & 7));
      if ((c & 0x7F) == 0x7F) c = (uint8_t)(c - 1);
    } else {
      c = (uint8_t)(rng_u64(&s) & 15);
    }
    code_set(&q.codes, i, c);
  }
  uint8_t *sc = q.scale.data;
  for (int64_t i = 0; i < tu_numel(&q.scale); ++i) {
    sc[i] = (uint8_t)(s_lo + (int)(rng_u64(&s) % (uint64_t)(s_hi - s_lo + 1)));
  }
  return q;
}

static void qweight_free(qweight *q) {
  tu_tensor_free(&q->codes);
  tu_tensor_free(&q->scale);
}

/* The dequantized weight, all of it, in double: W[..][r][c] = dec(code)·2^(scale[..][r/b0][c/b1]
 * - 127). */
static double *dequant(const qweight *q) {
  const vnrt_tensor_type *t = &q->codes.type;
  const int64_t R = t->dims[t->rank - 2], C = t->dims[t->rank - 1], n = tu_numel(&q->codes);
  const int64_t SR = q->scale.type.dims[t->rank - 2], SC = q->scale.type.dims[t->rank - 1];
  double *w = malloc(sizeof(double) * (size_t)n);
  ck_assert_ptr_nonnull(w);
  const uint8_t *sc = q->scale.data;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t lead = i / (R * C), r = (i / C) % R, c = i % C;
    const uint8_t s = sc[lead * SR * SC + (r / q->block[0]) * SC + c / q->block[1]];
    w[i] = dec(t->dtype, code_at(&q->codes, i)) * ref_e8m0(s);
  }
  return w;
}

static vnrt_attr block_attr(const qweight *q) { return tu_attr_ints("block", q->block, 2); }

/* ---- running on every device ------------------------------------------------------------ */

static int is_cpu(vnrt_device *dev) {
  vnrt_device_info info = {.struct_size = sizeof info};
  return vnrt_device_get_info(dev, &info) == VNRT_OK && info.type == VNRT_DEVICE_TYPE_CPU;
}

/* Says once per device and op (Check forks one process per test) that a device ran op on the
 * CPU fallback; fails unless QW_ALLOW_FALLBACK or VNRT_TEST_FALLBACK=1 allows it. */
static void note_fallback(vnrt_device *dev, const char *op) {
  static char noted[32][48];
  static int n_noted;
  char key[48];
  snprintf(key, sizeof key, "%s/%s", tu_device_spec(dev), op);
  for (int i = 0; i < n_noted; ++i) {
    if (strcmp(noted[i], key) == 0) return;
  }
  const char *allow = getenv("VNRT_TEST_FALLBACK");
  ck_assert_msg(QW_ALLOW_FALLBACK || (allow && strcmp(allow, "1") == 0),
                "%s on %s ran on the CPU fallback: the device has no kernel of its own", op,
                tu_device_spec(dev));
  if (n_noted < 32) snprintf(noted[n_noted++], sizeof noted[0], "%s", key);
  fprintf(stderr, "note: %s on %s ran on the CPU fallback (no kernel of its own)\n", op,
          tu_device_spec(dev));
}

/* Elements of the moe_ffn down projection's input whose e4m3 rounding may go either way: the
 * other rounding moves y[t] by delta[0..C). */
typedef struct alt_round {
  int64_t t;
  double *delta;
} alt_round;

typedef struct want {
  double *y; /* the reference result, row-major */
  int64_t n, cols;
  alt_round *alts;
  int n_alts, cap_alts;
} want;

static void want_free(want *w) {
  for (int i = 0; i < w->n_alts; ++i) free(w->alts[i].delta);
  free(w->alts);
  free(w->y);
}

/* The reference with, per alternative rounding, whichever of the two is closer to got. */
static double *resolve(const want *w, const tu_tensor *got) {
  double *y = malloc(sizeof(double) * (size_t)w->n);
  ck_assert_ptr_nonnull(y);
  memcpy(y, w->y, sizeof(double) * (size_t)w->n);
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < w->n_alts; ++i) {
      const alt_round *a = &w->alts[i];
      double keep = 0.0, flip = 0.0;
      for (int64_t c = 0; c < w->cols; ++c) {
        const double g = tu_get(got, a->t * w->cols + c), r = y[a->t * w->cols + c];
        keep += (g - r) * (g - r);
        flip += (g - r - a->delta[c]) * (g - r - a->delta[c]);
      }
      if (flip < keep) {
        for (int64_t c = 0; c < w->cols; ++c) y[a->t * w->cols + c] += a->delta[c];
      }
    }
  }
  return y;
}

/* Runs graph g (inputs in0..) on every device; result 0 must have out_rank/out_dims and f32
 * values within TOL of the reference. op names the node for the fallback rule. */
static void check_all(vnrt_context *ctx, const char *what, const char *op, vnrt_graph *g,
                      const tu_tensor *inputs, int32_t n_in, const want *w, int32_t out_rank,
                      const int64_t *out_dims, vnrt_dtype out_dtype) {
  const int32_t n_dev = tu_device_count(ctx);
  ck_assert_int_ge(n_dev, 1);
  for (int32_t d = 0; d < n_dev; ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    const char *spec = tu_device_spec(dev);
    tu_tensor out;
    int32_t fell_back = 0;
    vnrt_status s = tu_run_fallback(ctx, g, dev, inputs, n_in, &out, 1, &fell_back);
    ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", what, spec, vnrt_status_string(s),
                  vnrt_context_last_error(ctx));
    if (fell_back) {
      ck_assert_msg(!is_cpu(dev), "%s: the cpu sent %s to a fallback", what, op);
      note_fallback(dev, op);
    }
    ck_assert_msg(out.type.dtype == out_dtype && out.type.rank == out_rank,
                  "%s on %s: result is %s rank %d, want %s rank %d", what, spec,
                  vnrt_dtype_name(out.type.dtype), out.type.rank, vnrt_dtype_name(out_dtype),
                  out_rank);
    for (int32_t k = 0; k < out_rank; ++k) {
      ck_assert_msg(out.type.dims[k] == out_dims[k], "%s on %s: result dim %d is %lld, want %lld",
                    what, spec, k, (long long)out.type.dims[k], (long long)out_dims[k]);
    }
    double *y = w->n_alts ? resolve(w, &out) : w->y;
    const double err = tu_nmse(&out, y, w->n);
    ck_assert_msg(err <= TOL, "%s on %s: NMSE %.3g > %.1g", what, spec, err, TOL);
    if (y != w->y) free(y);
    tu_tensor_free(&out);
  }
}

/* ---- the references --------------------------------------------------------------------- */

/* x[rows, K] as doubles, fake-quantized to e4m3 per 128 channels when act_quant. */
static double *activations(const tu_tensor *x, int64_t K, int act_quant) {
  const int64_t n = tu_numel(x);
  double *a = malloc(sizeof(double) * (size_t)n);
  ck_assert_ptr_nonnull(a);
  for (int64_t i = 0; i < n; ++i) a[i] = tu_get(x, i);
  if (act_quant) {
    for (int64_t r = 0; r < n / K; ++r) {
      for (int64_t b = 0; b < K; b += 128) ref_fake_quant_block(a + r * K + b, 128, VNRT_E4M3);
    }
  }
  return a;
}

/* linear: y[t, n] = Σ_k xa[t, k]·W[n, k]. */
static want linear_want(const tu_tensor *x, const qweight *w, int act_quant) {
  const int64_t N = w->codes.type.dims[0], K = w->codes.type.dims[1], T = tu_numel(x) / K;
  double *xa = activations(x, K, act_quant), *W = dequant(w);
  want r = {0};
  r.n = T * N, r.cols = N;
  r.y = malloc(sizeof(double) * (size_t)r.n);
  ck_assert_ptr_nonnull(r.y);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += xa[t * K + k] * W[n * K + k];
      r.y[t * N + n] = acc;
    }
  }
  free(xa);
  free(W);
  return r;
}

static void run_linear(vnrt_context *ctx, vnrt_dtype fmt, int64_t T, int64_t N, int64_t K,
                       const int64_t *block, int act_quant, uint64_t seed) {
  const int64_t xd[2] = {T, K}, wd[2] = {N, K};
  tu_tensor in[3];
  in[0] = tu_tensor_new(VNRT_F32, 2, xd);
  tu_fill_uniform(&in[0], seed, -2.0f, 2.0f);
  qweight w = qweight_new(fmt, 2, wd, block, seed + 1, 1, 14, 118, 130);
  in[1] = w.codes, in[2] = w.scale;
  vnrt_attr attrs[2] = {block_attr(&w), tu_attr_i("act_quant", act_quant)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_LINEAR, in, 3, attrs, act_quant ? 2 : 1, 1);
  want r = linear_want(&in[0], &w, act_quant);
  char what[128];
  snprintf(what, sizeof what, "linear %s x[%lld, %lld] w[%lld, %lld] block %lldx%lld act_quant %d",
           vnrt_dtype_name(fmt), (long long)T, (long long)K, (long long)N, (long long)K,
           (long long)w.block[0], (long long)w.block[1], act_quant);
  const int64_t od[2] = {T, N};
  check_all(ctx, what, "linear", g, in, 3, &r, 2, od, VNRT_F32);
  want_free(&r);
  vnrt_graph_destroy(g);
  tu_tensor_free(&in[0]);
  qweight_free(&w);
}

/* matmul a[B, M, K] · b[K, N] (b quantized), rank 3 when B > 0 else a[M, K]. */
static void run_matmul(vnrt_context *ctx, vnrt_dtype fmt, int64_t B, int64_t M, int64_t K,
                       int64_t N, const int64_t *block, uint64_t seed) {
  const int64_t ad3[3] = {B, M, K}, ad2[2] = {M, K}, bd[2] = {K, N};
  tu_tensor in[3];
  in[0] = B ? tu_tensor_new(VNRT_F32, 3, ad3) : tu_tensor_new(VNRT_F32, 2, ad2);
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  qweight b = qweight_new(fmt, 2, bd, block, seed + 1, 1, 14, 120, 132);
  in[1] = b.codes, in[2] = b.scale;
  vnrt_attr attrs[1] = {block_attr(&b)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_MATMUL, in, 3, attrs, 1, 1);
  double *W = dequant(&b);
  const int64_t rows = (B ? B : 1) * M;
  want r = {0};
  r.n = rows * N, r.cols = N;
  r.y = malloc(sizeof(double) * (size_t)r.n);
  ck_assert_ptr_nonnull(r.y);
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += tu_get(&in[0], m * K + k) * W[k * N + n];
      r.y[m * N + n] = acc;
    }
  }
  char what[128];
  snprintf(what, sizeof what, "matmul %s a[%lld, %lld, %lld] b[%lld, %lld] block %lldx%lld",
           vnrt_dtype_name(fmt), (long long)B, (long long)M, (long long)K, (long long)K,
           (long long)N, (long long)b.block[0], (long long)b.block[1]);
  const int64_t od3[3] = {B, M, N}, od2[2] = {M, N};
  check_all(ctx, what, "matmul", g, in, 3, &r, B ? 3 : 2, B ? od3 : od2, VNRT_F32);
  want_free(&r);
  free(W);
  vnrt_graph_destroy(g);
  tu_tensor_free(&in[0]);
  qweight_free(&b);
}

/* embedding: out[i, :] = dequantized table row ids[i], f32. */
static void run_embedding(vnrt_context *ctx, vnrt_dtype fmt, int64_t V, int64_t D, int64_t n_ids,
                          const int64_t *block, uint64_t seed) {
  const int64_t td[2] = {V, D}, idd[1] = {n_ids};
  tu_tensor in[3];
  qweight t = qweight_new(fmt, 2, td, block, seed, 0, 15, 110, 140);
  in[0] = t.codes;
  in[1] = tu_tensor_new(VNRT_I32, 1, idd);
  uint64_t s = seed;
  for (int64_t i = 0; i < n_ids; ++i) {
    /* the first and last rows always, the rest at random */
    tu_set(&in[1], i, i == 0 ? 0 : i == 1 ? (double)(V - 1) : (double)(rng_u64(&s) % (uint64_t)V));
  }
  in[2] = t.scale;
  vnrt_attr attrs[1] = {block_attr(&t)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_EMBEDDING, in, 3, attrs, 1, 1);
  double *W = dequant(&t);
  want r = {0};
  r.n = n_ids * D, r.cols = D;
  r.y = malloc(sizeof(double) * (size_t)r.n);
  ck_assert_ptr_nonnull(r.y);
  for (int64_t i = 0; i < n_ids; ++i) {
    const int64_t row = (int64_t)tu_get(&in[1], i);
    for (int64_t d = 0; d < D; ++d) r.y[i * D + d] = W[row * D + d];
  }
  char what[128];
  snprintf(what, sizeof what, "embedding %s table[%lld, %lld] block %lldx%lld, %lld ids",
           vnrt_dtype_name(fmt), (long long)V, (long long)D, (long long)t.block[0],
           (long long)t.block[1], (long long)n_ids);
  const int64_t od[2] = {n_ids, D};
  check_all(ctx, what, "embedding", g, in, 3, &r, 2, od, VNRT_F32);
  want_free(&r);
  free(W);
  vnrt_graph_destroy(g);
  tu_tensor_free(&in[1]);
  qweight_free(&t);
}

static double ref_silu(double v) { return v / (1.0 + exp(-v)); }

/* moe_ffn with w_gate_up quantized (fmt) and w_down quantized too (down_q) or f32. */
static void run_moe(vnrt_context *ctx, vnrt_dtype fmt, int64_t T, int64_t C, int64_t F, int down_q,
                    int act_quant, double limit, const int64_t *block, uint64_t seed) {
  const int64_t E = 4, K = 2;
  const int64_t xd[2] = {T, C}, ed[2] = {T, K}, gud[3] = {E, 2 * F, C}, dd[3] = {E, C, F};
  tu_tensor in[7];
  /* x dyadic (multiples of 1/16 in [-1, 1]) and the codes' magnitudes in [2^-2, 4): the gate and
   * up sums are exact in f32, so act_quant's second rounding sees the value the reference
   * sees up to the swiglu's own rounding. */
  in[0] = tu_tensor_new(VNRT_F32, 2, xd);
  uint64_t s = seed;
  for (int64_t i = 0; i < T * C; ++i)
    tu_set(&in[0], i, (double)((int)(rng_u64(&s) % 33) - 16) / 16);
  in[1] = tu_tensor_new(VNRT_I32, 2, ed);
  in[2] = tu_tensor_new(VNRT_F32, 2, ed);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t e0 = (int64_t)(rng_u64(&s) % (uint64_t)E);
    const int64_t e1 = (e0 + 1 + (int64_t)(rng_u64(&s) % (uint64_t)(E - 1))) % E;
    tu_set(&in[1], t * K, (double)e0);
    tu_set(&in[1], t * K + 1, (double)e1);
    tu_set(&in[2], t * K, 0.1 + 0.9 * rng_unit(&s));
    tu_set(&in[2], t * K + 1, 0.1 + 0.9 * rng_unit(&s));
  }
  qweight wgu = qweight_new(fmt, 3, gud, block, seed + 1, 5, 8, 122, 126);
  qweight wdq = qweight_new(fmt, 3, dd, block, seed + 2, 5, 8, 122, 126);
  tu_tensor wdf = tu_tensor_new(VNRT_F32, 3, dd);
  tu_fill_uniform(&wdf, seed + 3, -0.3f, 0.3f);
  in[3] = wgu.codes;
  in[4] = down_q ? wdq.codes : wdf;
  in[5] = wgu.scale;
  in[6] = wdq.scale;
  const int32_t n_in = down_q ? 7 : 6;
  vnrt_attr attrs[3] = {block_attr(&wgu), tu_attr_f("limit", limit),
                        tu_attr_i("act_quant", act_quant)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_MOE_FFN, in, n_in, attrs, act_quant ? 3 : 2, 1);

  double *Wgu = dequant(&wgu), *Wd = down_q ? dequant(&wdq) : NULL;
  double *xa = activations(&in[0], C, act_quant);
  double *h = malloc(sizeof(double) * (size_t)F);
  ck_assert_ptr_nonnull(h);
  want r = {0};
  r.n = T * C, r.cols = C;
  r.y = calloc((size_t)r.n, sizeof(double));
  ck_assert_ptr_nonnull(r.y);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < K; ++i) {
      const int64_t e = (int64_t)tu_get(&in[1], t * K + i);
      const double rw = tu_get(&in[2], t * K + i);
      for (int64_t f = 0; f < F; ++f) {
        double gs = 0.0, us = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          gs += Wgu[(e * 2 * F + f) * C + c] * xa[t * C + c];
          us += Wgu[(e * 2 * F + F + f) * C + c] * xa[t * C + c];
        }
        if (limit > 0) {
          gs = gs < limit ? gs : limit;
          us = us < -limit ? -limit : us > limit ? limit : us;
        }
        h[f] = ref_silu(gs) * us;
      }
      /* act_quant: the routing weight first, then the e4m3 rounding per 128 (docs/ops.md). */
      double mult = rw;
      if (act_quant) {
        for (int64_t f = 0; f < F; ++f) h[f] *= rw;
        mult = 1.0;
        for (int64_t b = 0; b < F; b += 128) {
          double amax = 0.0;
          for (int64_t f = b; f < b + 128; ++f) amax = fabs(h[f]) > amax ? fabs(h[f]) : amax;
          const int c = ref_scale_exp(VNRT_E4M3, amax);
          const double bound = ldexp(448.0, c);
          ck_assert_msg(fabs(amax - bound) > 1e-5 * bound && fabs(amax - bound / 2) > 1e-5 * bound,
                        "moe_ffn seed %llu: a block amax sits on a scale boundary; pick another",
                        (unsigned long long)seed);
          for (int64_t f = b; f < b + 128; ++f) {
            const double q = ldexp(h[f], -c);
            const uint8_t code = ref_encode(VNRT_E4M3, q);
            const double qd = ref_e4m3(code);
            /* the neighbour on q's side of qd: if q is within f32 rounding of the midpoint,
             * the other rounding is as valid */
            const uint8_t mag = code & 0x7F, sg = code & 0x80;
            const int up = fabs(q) > fabs(qd);
            if ((up && mag < 0x7E) || (!up && mag > 0)) {
              const uint8_t other = (uint8_t)(sg | (up ? mag + 1 : mag - 1));
              const double od = ref_e4m3(other), midp = 0.5 * (qd + od);
              if (fabs(q - midp) <= 4e-6 * fabs(q)) {
                if (r.n_alts == r.cap_alts) {
                  r.cap_alts = r.cap_alts ? 2 * r.cap_alts : 8;
                  r.alts = realloc(r.alts, sizeof *r.alts * (size_t)r.cap_alts);
                  ck_assert_ptr_nonnull(r.alts);
                }
                alt_round *a = &r.alts[r.n_alts++];
                a->t = t;
                a->delta = malloc(sizeof(double) * (size_t)C);
                ck_assert_ptr_nonnull(a->delta);
                for (int64_t cc = 0; cc < C; ++cc) {
                  const double wv =
                      Wd ? Wd[(e * C + cc) * F + f] : tu_get(&wdf, (e * C + cc) * F + f);
                  a->delta[cc] = ldexp(od - qd, c) * wv;
                }
              }
            }
            h[f] = ldexp(qd, c);
          }
        }
      }
      for (int64_t cc = 0; cc < C; ++cc) {
        double acc = 0.0;
        for (int64_t f = 0; f < F; ++f) {
          const double wv = Wd ? Wd[(e * C + cc) * F + f] : tu_get(&wdf, (e * C + cc) * F + f);
          acc += wv * h[f];
        }
        r.y[t * C + cc] += mult * acc;
      }
    }
  }
  if (r.n_alts) {
    fprintf(stderr,
            "note: moe_ffn seed %llu: %d e4m3 roundings of the down input may go either way\n",
            (unsigned long long)seed, r.n_alts);
  }
  char what[160];
  snprintf(what, sizeof what,
           "moe_ffn %s T=%lld C=%lld F=%lld E=4 k=2 %s block %lldx%lld act_quant %d limit %g",
           vnrt_dtype_name(fmt), (long long)T, (long long)C, (long long)F,
           down_q ? "both quantized" : "w_gate_up alone", (long long)wgu.block[0],
           (long long)wgu.block[1], act_quant, limit);
  const int64_t od[2] = {T, C};
  check_all(ctx, what, "moe_ffn", g, in, n_in, &r, 2, od, VNRT_F32);
  want_free(&r);
  free(Wgu);
  free(Wd);
  free(xa);
  free(h);
  vnrt_graph_destroy(g);
  for (int i = 0; i < 3; ++i) tu_tensor_free(&in[i]);
  tu_tensor_free(&wdf);
  qweight_free(&wgu);
  qweight_free(&wdq);
}

/* ---- tests: the references themselves --------------------------------------------------- */

START_TEST(test_reference_codecs_by_hand) {
  /* e4m3: 1.0 = 0x38, -2 = 0xC0, 448 = 0x7E, the smallest subnormal 2^-9 = 0x01, the smallest
   * normal 2^-6 = 0x08, 0x7F NaN; 1.0625 (a tie between 1 and 1.125) goes to 1 (even code
   * 0x38), 1.1875 (between 1.125 and 1.25) to 1.25 (0x3A); 500 saturates to 448. */
  ck_assert(ref_e4m3(0x38) == 1.0 && ref_e4m3(0xC0) == -2.0 && ref_e4m3(0x7E) == 448.0);
  ck_assert(ref_e4m3(0x01) == ldexp(1.0, -9) && ref_e4m3(0x08) == ldexp(1.0, -6));
  ck_assert(isnan(ref_e4m3(0x7F)) && isnan(ref_e4m3(0xFF)));
  ck_assert_int_eq(ref_encode(VNRT_E4M3, 1.0625), 0x38);
  ck_assert_int_eq(ref_encode(VNRT_E4M3, 1.1875), 0x3A);
  ck_assert_int_eq(ref_encode(VNRT_E4M3, -1.1875), 0xBA);
  ck_assert_int_eq(ref_encode(VNRT_E4M3, 500.0), 0x7E);
  ck_assert_int_eq(ref_encode(VNRT_E4M3, ldexp(1.5, -9)), 0x02); /* tie 1 vs 2 quanta: even */
  /* e2m1 levels and ties: 0.25 -> 0, 0.75 -> 1.0, 1.25 -> 1.0, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4,
   * 5 -> 4 (each to the even index); 7 saturates to 6. */
  const double lv[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int i = 0; i < 8; ++i)
    ck_assert(ref_e2m1((uint8_t)i) == lv[i] && ref_e2m1((uint8_t)(8 + i)) == -lv[i]);
  const double ties[7] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  const int tie_idx[7] = {0, 2, 2, 4, 4, 6, 6};
  for (int i = 0; i < 7; ++i) ck_assert_int_eq(ref_encode(VNRT_E2M1, ties[i]), tie_idx[i]);
  ck_assert_int_eq(ref_encode(VNRT_E2M1, -ties[6]), 8 + 6);
  ck_assert_int_eq(ref_encode(VNRT_E2M1, 7.0), 7);
  /* e8m0 and the block scale: amax 448 -> 2^0, 449 -> 2^1, 1e-6 -> floor 1e-4 -> 2^-22
   * (1e-4/448 = 2.2e-7, in (2^-23, 2^-22]); e2m1: 6 -> 2^0, 6.5 -> 2^1, 0 -> 2^-126. */
  ck_assert(ref_e8m0(127) == 1.0 && ref_e8m0(0) == ldexp(1.0, -127) && isnan(ref_e8m0(255)));
  ck_assert_int_eq(ref_scale_exp(VNRT_E4M3, 448.0), 0);
  ck_assert_int_eq(ref_scale_exp(VNRT_E4M3, 449.0), 1);
  ck_assert_int_eq(ref_scale_exp(VNRT_E4M3, 1e-6), -22);
  ck_assert_int_eq(ref_scale_exp(VNRT_E2M1, 6.0), 0);
  ck_assert_int_eq(ref_scale_exp(VNRT_E2M1, 6.5), 1);
  ck_assert_int_eq(ref_scale_exp(VNRT_E2M1, 0.0), -126);
}
END_TEST

START_TEST(test_linear_known_values) {
  /* FP4 w[2, 32], one 1x32 block per row: row 0 codes k % 8 (levels 0 .. 6) with scale code 126
   * (0.5), row 1 codes 8 + k % 8 (their negatives) with scale 129 (4); x[k] = k. With
   * k = 8j + i: Σ v_i·k = Σ_i v_i·(8·(0+1+2+3) + 4i) = 48·18 + 4·96 = 1248 (Σ v_i = 18,
   * Σ i·v_i = 96), so y = [624, -4992]. Byte j of a row holds k = 2j low, 2j+1 high. */
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t xd[2] = {1, 32}, wd[2] = {2, 32}, sd[2] = {2, 1};
  tu_tensor in[3];
  in[0] = tu_tensor_new(VNRT_F32, 2, xd);
  for (int k = 0; k < 32; ++k) tu_set(&in[0], k, k);
  in[1] = tu_tensor_new(VNRT_E2M1, 2, wd);
  uint8_t *b = in[1].data;
  for (int j = 0; j < 16; ++j) {
    b[j] = (uint8_t)(((2 * j) % 8) | (((2 * j + 1) % 8) << 4));
    b[16 + j] = (uint8_t)((8 + (2 * j) % 8) | ((8 + (2 * j + 1) % 8) << 4));
  }
  in[2] = tu_tensor_new(VNRT_E8M0, 2, sd);
  ((uint8_t *)in[2].data)[0] = 126;
  ((uint8_t *)in[2].data)[1] = 129;
  qweight q = {.codes = in[1], .scale = in[2], .block = {1, 32}};
  want r = linear_want(&in[0], &q, 0);
  ck_assert_msg(r.y[0] == 624.0 && r.y[1] == -4992.0, "the reference gives %g, %g", r.y[0], r.y[1]);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_LINEAR, in, 3, NULL, 0, 1);
  const int64_t od[2] = {1, 2};
  check_all(ctx, "linear e2m1 known values", "linear", g, in, 3, &r, 2, od, VNRT_F32);
  vnrt_graph_destroy(g);
  want_free(&r);

  /* FP8 w[1, 3] codes {1.0 (0x38), -2 (0xC0), 448 (0x7E)}, one 128x128 block of scale 2^1
   * (128); x = [0.5, 1, 2]: y = 2·(0.5 - 2 + 896) = 1789. */
  const int64_t xd8[2] = {1, 3}, wd8[2] = {1, 3}, sd8[2] = {1, 1};
  tu_tensor in8[3];
  in8[0] = tu_tensor_new(VNRT_F32, 2, xd8);
  tu_set(&in8[0], 0, 0.5), tu_set(&in8[0], 1, 1.0), tu_set(&in8[0], 2, 2.0);
  in8[1] = tu_tensor_new(VNRT_E4M3, 2, wd8);
  memcpy(in8[1].data, (const uint8_t[]){0x38, 0xC0, 0x7E}, 3);
  in8[2] = tu_tensor_new(VNRT_E8M0, 2, sd8);
  ((uint8_t *)in8[2].data)[0] = 128;
  qweight q8 = {.codes = in8[1], .scale = in8[2], .block = {128, 128}};
  want r8 = linear_want(&in8[0], &q8, 0);
  ck_assert_msg(r8.y[0] == 1789.0, "the reference gives %g", r8.y[0]);
  vnrt_graph *g8 = tu_op_graph(ctx, VNRT_OP_LINEAR, in8, 3, NULL, 0, 1);
  const int64_t od8[2] = {1, 1};
  check_all(ctx, "linear e4m3 known values", "linear", g8, in8, 3, &r8, 2, od8, VNRT_F32);
  vnrt_graph_destroy(g8);
  want_free(&r8);
  for (int i = 0; i < 3; ++i) tu_tensor_free(&in[i]), tu_tensor_free(&in8[i]);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Every e4m3 code but the NaNs through linear with K a multiple of 16 (the decode-sized GEMV
 * kernels read whole chunks of 16 codes): w[2, 16] of the subnormal codes alone (0x01..0x07
 * and their negatives, so that a kernel flushing them to zero is far off), then w[16, 16]
 * holding code 16r + k (NaN codes replaced by 0), both with one block of scale 2^0 and x of
 * 1 .. 4 rows. */
static void run_e4m3_codes(vnrt_context *ctx, int64_t M, int64_t N, uint64_t seed) {
  const int64_t xd[2] = {M, 16}, wd[2] = {N, 16}, sd[2] = {1, 1};
  tu_tensor in[3];
  in[0] = tu_tensor_new(VNRT_F32, 2, xd);
  tu_fill_uniform(&in[0], seed, 1.0f, 2.0f);
  in[1] = tu_tensor_new(VNRT_E4M3, 2, wd);
  uint8_t *c = in[1].data;
  for (int64_t i = 0; i < N * 16; ++i) {
    uint8_t code = N == 2 ? (uint8_t)((i % 8) | ((i / 8) % 2 ? 0x80 : 0)) : (uint8_t)i;
    c[i] = (code & 0x7f) == 0x7f ? 0 : code;
  }
  in[2] = tu_tensor_new(VNRT_E8M0, 2, sd);
  ((uint8_t *)in[2].data)[0] = 127;
  qweight q = {.codes = in[1], .scale = in[2], .block = {128, 128}};
  want r = linear_want(&in[0], &q, 0);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_LINEAR, in, 3, NULL, 0, 1);
  const int64_t od[2] = {M, N};
  char what[96];
  snprintf(what, sizeof what, "linear e4m3 %s codes x[%lld, 16]", N == 2 ? "subnormal" : "all",
           (long long)M);
  check_all(ctx, what, "linear", g, in, 3, &r, 2, od, VNRT_F32);
  vnrt_graph_destroy(g);
  want_free(&r);
  for (int i = 0; i < 3; ++i) tu_tensor_free(&in[i]);
}

START_TEST(test_linear_e4m3_every_code) {
  vnrt_context *ctx = tu_conformance_context(0);
  for (int64_t M = 1; M <= 4; ++M) {
    run_e4m3_codes(ctx, M, 2, 800 + (uint64_t)M);
    run_e4m3_codes(ctx, M, 16, 810 + (uint64_t)M);
  }
  run_e4m3_codes(ctx, 7, 16, 817);   /* the GEMM's decoded rows */
  run_e4m3_codes(ctx, 128, 16, 818); /* the packed block */
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- tests: the ops --------------------------------------------------------------------- */

START_TEST(test_linear_fp8) {
  /* T = 1 and 3: the decode-sized kernels where K is a multiple of 16 (N = 19, 21, 150: a
   * partial last group of rows); T = 7: the general ones. */
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t Ts[3] = {1, 3, 7};
  for (int ti = 0; ti < 3; ++ti) {
    const int64_t T = Ts[ti];
    run_linear(ctx, VNRT_E4M3, T, 19, 96, NULL, 0, 10 + T);   /* one partial block */
    run_linear(ctx, VNRT_E4M3, T, 130, 200, NULL, 0, 20 + T); /* 2x2 blocks, both partial */
    run_linear(ctx, VNRT_E4M3, T, 21, 256, NULL, 128, 30 + T);
    run_linear(ctx, VNRT_E4M3, T, 150, 384, NULL, 128, 40 + T);
    const int64_t blk[2] = {16, 64};
    run_linear(ctx, VNRT_E4M3, T, 37, 200, blk, 0, 50 + T);
    /* Blocks that are not powers of two: the decode kernels divide by them (where they shift
     * by powers of two), rows of one workgroup spanning several scale rows. */
    const int64_t blk3[2] = {3, 48};
    run_linear(ctx, VNRT_E4M3, T, 37, 192, blk3, 0, 100 + T);
  }
  /* More x rows than the GEMVs take and K past the AVX-512 GEMM's 1024-column blocks (the rows
   * decoded per group and block): a partial K block, a partial scale block and a partial group
   * of rows. */
  run_linear(ctx, VNRT_E4M3, 9, 13, 1100, NULL, 0, 59);
  run_linear(ctx, VNRT_E2M1, 6, 7, 1056, NULL, 0, 69);
  /* And rows enough for the packed block (decoded 16 rows at a time, then transposed). */
  run_linear(ctx, VNRT_E4M3, 130, 21, 1100, NULL, 0, 58);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_linear_fp4) {
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t Ts[3] = {1, 3, 7}, Ks[3] = {32, 64, 96};
  for (int ti = 0; ti < 3; ++ti) {
    const int64_t T = Ts[ti];
    for (int k = 0; k < 3; ++k) run_linear(ctx, VNRT_E2M1, T, 13, Ks[k], NULL, 0, 60 + 3 * T + k);
    run_linear(ctx, VNRT_E2M1, T, 11, 128, NULL, 128, 70 + T);
    run_linear(ctx, VNRT_E2M1, T, 45, 256, NULL, 128, 80 + T);
    const int64_t blk[2] = {2, 16};
    run_linear(ctx, VNRT_E2M1, T, 9, 70, blk, 0, 90 + T);
    const int64_t blk5[2] = {5, 96}; /* not powers of two, as in test_linear_fp8 */
    run_linear(ctx, VNRT_E2M1, T, 23, 192, blk5, 0, 110 + T);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* The CPU's in-register GEMVs (1..4 x rows) on the inputs they hand to the panel path through
 * the public API: scales of 2^-127 (code 0) and either side of the largest the kernels take, every
 * e4m3 code but the NaNs in every row and every e2m1 code, K a multiple of the kernels' steps (64
 * e4m3, 128 e2m1: the AVX-512 one-row kernels) or not (the AVX2 ones, tails). (NaN codes and scales
 * are refused at binding; test_cpu_backend gives them to the kernels directly.) Each element is
 * checked within 1e-6 of Σ|x·w| (f32 sums; a row of 2^-127 scales is far above f32's
 * subnormals). CPU devices only: the backend's GEMVs are what this
 * pins. */
static void run_gemv_edges(vnrt_context *ctx, vnrt_dtype fmt, int64_t T, int64_t N, int64_t K,
                           int big, uint64_t seed) {
  const int64_t xd[2] = {T, K}, wd[2] = {N, K};
  tu_tensor in[3];
  in[0] = tu_tensor_new(VNRT_F32, 2, xd);
  tu_fill_uniform(&in[0], seed, -2.0f, 2.0f);
  qweight w = qweight_new(fmt, 2, wd, NULL, seed + 1, 0, 15, 118, 124);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  const int fp8 = fmt == VNRT_E4M3;
  for (int64_t r = 0; r < N; ++r) {
    /* every code (e4m3: all but the NaNs, at a rotating offset; e2m1: all 16) in each row */
    const int ncodes = fp8 ? 256 : 16;
    for (int64_t k = 0; k < K; ++k) {
      uint8_t c = (uint8_t)((k + 37 * r) % ncodes);
      if (fp8 && (c & 0x7F) == 0x7F) c = (uint8_t)(rng_u64(&s) & 0x77);
      code_set(&w.codes, r * K + k, c);
    }
  }
  uint8_t *sc = w.scale.data;
  const int64_t SR = w.scale.type.dims[0], SC = w.scale.type.dims[1];
  if (big) {
    /* each side of the largest scale the kernels take (e4m3 247, e2m1 253) in some blocks,
     * whose codes stay small enough for dec·s to be finite in f32 (e4m3 |code| < 2, e2m1 <= 3),
     * and x scaled by 2^-40 so that no sum overflows */
    for (int64_t i = 0; i < T * K; ++i) tu_set(&in[0], i, ldexp(tu_get(&in[0], i), -40));
    sc[SC / 2] = fp8 ? 246 : 252;
    if (SR > 2) {
      sc[1 * SC + SC - 1] = fp8 ? 247 : 253;
      const int64_t r0 = w.block[0], c0 = (SC - 1) * w.block[1];
      for (int64_t r = r0; r < r0 + w.block[0] && r < N; ++r) {
        for (int64_t k = c0; k < K; ++k) {
          const uint8_t c = code_at(&w.codes, r * K + k);
          code_set(&w.codes, r * K + k, (uint8_t)(fp8 ? c & 0xB7 : c & 0xD));
        }
      }
    }
  } else {
    /* scale code 0 (2^-127) over the last block row, one other block too */
    for (int64_t c = 0; c < SC; ++c) sc[(SR - 1) * SC + c] = 0;
    sc[SC - 1] = 0;
  }
  double *W = dequant(&w);
  in[1] = w.codes, in[2] = w.scale;
  vnrt_attr attrs[1] = {block_attr(&w)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_LINEAR, in, 3, attrs, 1, 1);
  for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    if (!is_cpu(dev)) continue;
    tu_tensor out;
    int32_t fell_back = 0;
    vnrt_status st = tu_run_fallback(ctx, g, dev, in, 3, &out, 1, &fell_back);
    ck_assert_msg(st == VNRT_OK, "gemv edges: %s", vnrt_context_last_error(ctx));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0.0, mag = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          const double p = tu_get(&in[0], t * K + k) * W[n * K + k];
          acc += p;
          mag += fabs(p);
        }
        const double got = tu_get(&out, t * N + n);
        if (!(fabs(got - acc) <= 1e-6 * mag)) {
          ck_abort_msg(
              "linear %s x[%lld, %lld] w[%lld, %lld] on %s: y[%lld, %lld] = %.9g, want "
              "%.9g",
              vnrt_dtype_name(fmt), (long long)T, (long long)K, (long long)N, (long long)K,
              tu_device_spec(dev), (long long)t, (long long)n, got, acc);
        }
      }
    }
    tu_tensor_free(&out);
  }
  vnrt_graph_destroy(g);
  free(W);
  tu_tensor_free(&in[0]);
  qweight_free(&w);
}

START_TEST(test_linear_gemv_edges) {
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t Ts[3] = {1, 2, 4};
  for (int ti = 0; ti < 3; ++ti) {
    for (int big = 0; big < 2; ++big) {
      const int64_t T = Ts[ti];
      const uint64_t seed = 500 + 20 * (uint64_t)T + 10 * (uint64_t)big;
      run_gemv_edges(ctx, VNRT_E4M3, T, 270, 256, big, seed);     /* 64-code steps, 3 block rows */
      run_gemv_edges(ctx, VNRT_E4M3, T, 131, 520, big, seed + 1); /* K % 64 = 8: AVX2 kernel */
      run_gemv_edges(ctx, VNRT_E4M3, T, 14, 131, big, seed + 2);  /* a 3-code tail */
      run_gemv_edges(ctx, VNRT_E2M1, T, 14, 640, big, seed + 3);  /* 5 steps of 128: a partial
                                                                      scale window */
      run_gemv_edges(ctx, VNRT_E2M1, T, 17, 128, big, seed + 4);  /* one step */
      run_gemv_edges(ctx, VNRT_E2M1, T, 13, 96, big, seed + 5);   /* K % 128 = 96 */
      run_gemv_edges(ctx, VNRT_E2M1, T, 9, 70, big, seed + 6);    /* K % 32 = 6 */
      /* K past the 4096 columns a group takes at a time: a second chunk of x and scales */
      run_gemv_edges(ctx, VNRT_E4M3, T, 6, 4160, big, seed + 7);
      run_gemv_edges(ctx, VNRT_E2M1, T, 5, 4224, big, seed + 8);
    }
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_linear_bf16_activations) {
  /* x and y bf16: the reference is rounded to bf16, and one element whose f32 sum lies within
   * f32 rounding of a bf16 rounding midpoint may round the other way (2^-9 relative on one of
   * 7·19 elements): the bound is 1e-6 here, stated for that reason. Shapes: several rows, and
   * a decode step's one row on DeepSeek-V4's K = 512 and 1024 (the in-register path). */
  vnrt_context *ctx = tu_conformance_context(0);
  static const int64_t shapes[3][3] = {{7, 19, 256}, {1, 77, 512}, {1, 40, 1024}};
  for (int sh = 0; sh < 3; ++sh) {
    const int64_t xd[2] = {shapes[sh][0], shapes[sh][2]}, wd[2] = {shapes[sh][1], shapes[sh][2]};
    tu_tensor in[3];
    in[0] = tu_tensor_new(VNRT_BF16, 2, xd);
    tu_fill_uniform(&in[0], 5 + (uint64_t)sh, -2.0f, 2.0f);
    qweight w = qweight_new(VNRT_E4M3, 2, wd, NULL, 6 + (uint64_t)sh, 1, 14, 118, 130);
    in[1] = w.codes, in[2] = w.scale;
    for (int aq = 0; aq <= 128; aq += 128) {
      vnrt_attr attrs[1] = {tu_attr_i("act_quant", aq)};
      vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_LINEAR, in, 3, attrs, 1, 1);
      want r = linear_want(&in[0], &w, aq);
      for (int64_t i = 0; i < r.n; ++i) r.y[i] = vnrt_bf16_to_f32(vnrt_f32_to_bf16((float)r.y[i]));
      for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
        vnrt_device *dev = tu_device(ctx, d);
        tu_tensor out;
        int32_t fb = 0;
        vnrt_status s = tu_run_fallback(ctx, g, dev, in, 3, &out, 1, &fb);
        ck_assert_msg(s == VNRT_OK, "on %s: %s", tu_device_spec(dev), vnrt_context_last_error(ctx));
        if (fb) note_fallback(dev, "linear");
        ck_assert_int_eq(out.type.dtype, VNRT_BF16);
        const double err = tu_nmse(&out, r.y, r.n);
        ck_assert_msg(err <= 1e-6, "linear bf16 x [%lld, %lld] act_quant %d on %s: NMSE %.3g",
                      (long long)xd[0], (long long)xd[1], aq, tu_device_spec(dev), err);
        tu_tensor_free(&out);
      }
      want_free(&r);
      vnrt_graph_destroy(g);
    }
    tu_tensor_free(&in[0]);
    qweight_free(&w);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_matmul) {
  vnrt_context *ctx = tu_conformance_context(0);
  run_matmul(ctx, VNRT_E4M3, 0, 1, 200, 19, NULL, 100); /* K, N: partial blocks */
  run_matmul(ctx, VNRT_E4M3, 0, 7, 96, 130, NULL, 101);
  run_matmul(ctx, VNRT_E4M3, 2, 3, 130, 45, NULL, 102); /* batched a, one b */
  const int64_t b8[2] = {32, 16};
  run_matmul(ctx, VNRT_E4M3, 0, 5, 70, 33, b8, 103);
  run_matmul(ctx, VNRT_E2M1, 0, 1, 64, 42, NULL, 104); /* N = 42: a partial 1x32 block */
  run_matmul(ctx, VNRT_E2M1, 0, 7, 33, 70, NULL, 105);
  run_matmul(ctx, VNRT_E2M1, 2, 3, 96, 32, NULL, 106);
  const int64_t b4[2] = {4, 8};
  run_matmul(ctx, VNRT_E2M1, 0, 3, 10, 22, b4, 107);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_embedding) {
  vnrt_context *ctx = tu_conformance_context(0);
  run_embedding(ctx, VNRT_E4M3, 300, 200, 9, NULL, 200); /* 3x2 blocks, partial */
  run_embedding(ctx, VNRT_E4M3, 5, 19, 1, NULL, 201);
  const int64_t b8[2] = {7, 64};
  run_embedding(ctx, VNRT_E4M3, 50, 130, 6, b8, 202);
  run_embedding(ctx, VNRT_E2M1, 70, 96, 7, NULL, 203);
  run_embedding(ctx, VNRT_E2M1, 9, 34, 1, NULL, 204); /* D = 34: a partial 1x32 block */
  const int64_t b4[2] = {3, 10};
  run_embedding(ctx, VNRT_E2M1, 20, 50, 5, b4, 205);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_moe_ffn_fp8) {
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t Ts[2] = {1, 7};
  for (int ti = 0; ti < 2; ++ti) {
    const int64_t T = Ts[ti];
    run_moe(ctx, VNRT_E4M3, T, 96, 40, 1, 0, 0.0, NULL, 300 + T);  /* partial blocks */
    run_moe(ctx, VNRT_E4M3, T, 200, 72, 0, 0, 0.0, NULL, 310 + T); /* w_gate_up alone */
    run_moe(ctx, VNRT_E4M3, T, 128, 128, 1, 128, 0.0, NULL, 320 + T);
    run_moe(ctx, VNRT_E4M3, T, 256, 128, 0, 128, 1.5, NULL, 330 + T);
    const int64_t blk[2] = {32, 64};
    run_moe(ctx, VNRT_E4M3, T, 96, 40, 1, 0, 0.5, blk, 340 + T);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_moe_ffn_fp4) {
  vnrt_context *ctx = tu_conformance_context(0);
  /* T = 3 over E = 4: groups of one routed row and of two (the few-token path's one-row
   * kernels beside the GEMV of several rows). */
  const int64_t Ts[3] = {1, 3, 7};
  for (int ti = 0; ti < 3; ++ti) {
    const int64_t T = Ts[ti];
    run_moe(ctx, VNRT_E2M1, T, 64, 32, 1, 0, 0.0, NULL, 400 + T);
    run_moe(ctx, VNRT_E2M1, T, 96, 40, 1, 0, 0.0, NULL, 410 + T); /* F = 40: partial block */
    run_moe(ctx, VNRT_E2M1, T, 32, 64, 0, 0, 0.0, NULL, 420 + T); /* w_gate_up alone */
    run_moe(ctx, VNRT_E2M1, T, 128, 128, 1, 128, 0.0, NULL, 430 + T);
    run_moe(ctx, VNRT_E2M1, T, 256, 128, 0, 128, 2.0, NULL, 440 + T);
    const int64_t blk[2] = {4, 16};
    run_moe(ctx, VNRT_E2M1, T, 64, 48, 1, 0, 0.0, blk, 450 + T);
    /* F = 384: h in several 128-channel blocks per routed row (each permuted where it is
     * computed), C = 512: down in several blocks. */
    run_moe(ctx, VNRT_E2M1, T, 512, 384, 1, 0, 0.5, NULL, 460 + T);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- fake_quant ------------------------------------------------------------------------- */

/* fake_quant(x) with the given attributes (block/len 0: absent) against the reference. */
static void run_fake_quant(vnrt_context *ctx, const char *what, const tu_tensor *x, vnrt_dtype fmt,
                           int64_t block, int64_t start, int64_t len) {
  vnrt_attr attrs[4];
  int32_t na = 0;
  attrs[na++] = tu_attr_word("fmt", fmt == VNRT_E4M3 ? "e4m3" : "e2m1");
  if (block) attrs[na++] = tu_attr_i("block", block);
  if (start) attrs[na++] = tu_attr_i("start", start);
  if (len) attrs[na++] = tu_attr_i("len", len);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_FAKE_QUANT, x, 1, attrs, na, 1);
  const int64_t D = x->type.dims[x->type.rank - 1], n = tu_numel(x);
  const int64_t blk = block ? block : fmt == VNRT_E4M3 ? 128 : 32;
  const int64_t ln = len ? len : D - start;
  want r = {0};
  r.n = n, r.cols = D;
  r.y = malloc(sizeof(double) * (size_t)(n ? n : 1));
  ck_assert_ptr_nonnull(r.y);
  for (int64_t i = 0; i < n; ++i) r.y[i] = tu_get(x, i);
  for (int64_t row = 0; row < n / D; ++row) {
    for (int64_t b = start; b < start + ln; b += blk)
      ref_fake_quant_block(r.y + row * D + b, blk, fmt);
  }
  /* f16/bf16 results: the reference values are e4m3/e2m1 levels times powers of two (or the
   * input itself), exact in the input's dtype for these ranges. */
  check_all(ctx, what, "fake_quant", g, x, 1, &r, x->type.rank, x->type.dims, x->type.dtype);
  want_free(&r);
  vnrt_graph_destroy(g);
}

START_TEST(test_fake_quant_variants) {
  vnrt_context *ctx = tu_conformance_context(0);
  const vnrt_dtype dts[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};
  for (int di = 0; di < 3; ++di) {
    const int64_t d1[2] = {3, 256}, d2[3] = {2, 2, 200}, d3[2] = {5, 96}, d4[1] = {80};
    tu_tensor a = tu_tensor_new(dts[di], 2, d1), b = tu_tensor_new(dts[di], 3, d2);
    tu_tensor c = tu_tensor_new(dts[di], 2, d3), e = tu_tensor_new(dts[di], 1, d4);
    tu_fill_uniform(&a, 500 + di, -3.0f, 3.0f);
    tu_fill_uniform(&b, 510 + di, -20.0f, 20.0f);
    tu_fill_uniform(&c, 520 + di, -0.01f, 0.01f);
    tu_fill_uniform(&e, 530 + di, -1.0f, 1.0f);
    char what[96];
    const char *dn = vnrt_dtype_name(dts[di]);
#define FQ(x, fmt, blk, st, ln)                                                                    \
  snprintf(what, sizeof what, "fake_quant %s %s block %d start %d len %d", dn, #fmt, blk, st, ln); \
  run_fake_quant(ctx, what, &x, fmt, blk, st, ln)
    FQ(a, VNRT_E4M3, 0, 0, 0);     /* defaults: two 128-blocks per row */
    FQ(a, VNRT_E2M1, 0, 0, 0);     /* 8 blocks of 32 */
    FQ(b, VNRT_E4M3, 64, 32, 128); /* channels [32, 160), the rest passes through */
    FQ(b, VNRT_E2M1, 0, 8, 192);   /* to the end */
    FQ(b, VNRT_E4M3, 0, 72, 128);  /* [72, 200), len given */
    FQ(c, VNRT_E4M3, 32, 0, 0);    /* small values */
    FQ(c, VNRT_E2M1, 16, 16, 32);  /* [16, 48) */
    FQ(e, VNRT_E2M1, 80, 0, 0);    /* one row, one block */
    FQ(e, VNRT_E4M3, 1, 3, 5);     /* blocks of 1: every value its own scale */
#undef FQ
    tu_tensor_free(&a), tu_tensor_free(&b), tu_tensor_free(&c), tu_tensor_free(&e);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_fake_quant_known_values) {
  /* Worked by hand (and through the reference): each block's amax fixes its scale. */
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t d8[2] = {1, 8};
  /* e2m1, one block of 8, amax 6 -> scale 1: the midpoints go to the even level. */
  tu_tensor t = tu_tensor_new(VNRT_F32, 2, d8);
  const double in4[8] = {6, 0.25, 0.75, -1.25, 1.75, 2.5, -3.5, 5.0};
  const double out4[8] = {6, 0, 1, -1, 2, 2, -4, 4};
  for (int i = 0; i < 8; ++i) tu_set(&t, i, in4[i]);
  double ref[8];
  memcpy(ref, in4, sizeof ref);
  ref_fake_quant_block(ref, 8, VNRT_E2M1);
  for (int i = 0; i < 8; ++i) ck_assert_msg(ref[i] == out4[i], "reference e2m1 %d: %g", i, ref[i]);
  run_fake_quant(ctx, "fake_quant e2m1 ties", &t, VNRT_E2M1, 8, 0, 0);
  /* e2m1, amax 12 -> scale 2: 12 -> 6·2, 1 -> 0.5·2, 5 -> 2.5 -> 2 (tie, even)·2 = 4,
   * 7 -> 3.5 -> 4·2 = 8, 0.4 -> 0.2 -> 0, -0.75 -> -0.375 -> -0.5·2 = -1, 3 -> 1.5·2. */
  const double in4b[8] = {12, 1, 5, 7, 0.4, -12, -0.75, 3};
  const double out4b[8] = {12, 1, 4, 8, 0, -12, -1, 3};
  for (int i = 0; i < 8; ++i) tu_set(&t, i, in4b[i]);
  memcpy(ref, in4b, sizeof ref);
  ref_fake_quant_block(ref, 8, VNRT_E2M1);
  for (int i = 0; i < 8; ++i) ck_assert_msg(ref[i] == out4b[i], "reference e2m1 %d: %g", i, ref[i]);
  run_fake_quant(ctx, "fake_quant e2m1 scale 2", &t, VNRT_E2M1, 8, 0, 0);
  /* e2m1 in blocks of 1: every value its own scale. 3e-38 is below the floor 6·2^-126, so its
   * scale is 2^-126 and 3e-38·2^126 = 2.55 -> 3; 1 -> scale 2^-2, 4 -> 1; 0 stays 0. */
  const double in4c[8] = {3e-38, 1, 0, -3e-38, 5, -0.7, 1e-30, 2};
  for (int i = 0; i < 8; ++i) tu_set(&t, i, in4c[i]);
  memcpy(ref, in4c, sizeof ref);
  for (int i = 0; i < 8; ++i) ref_fake_quant_block(ref + i, 1, VNRT_E2M1);
  ck_assert(ref[0] == ldexp(3.0, -126) && ref[1] == 1 && ref[2] == 0 && ref[3] == -ref[0]);
  run_fake_quant(ctx, "fake_quant e2m1 floor, blocks of 1", &t, VNRT_E2M1, 1, 0, 0);
  /* e4m3, amax 448 -> scale 1: 1.0625 -> 1 and 1.1875 -> 1.25 (ties to the even code);
   * 100.5 -> 104 (step 8 in [64, 128)); -200, the midpoint of 192 and 208 (step 16), -> -192
   * (even); 0.001 is below 2^-6: 0.512 subnormal quanta of 2^-9 -> one quantum. */
  const double in8[8] = {448, 1.0625, 1.1875, -1.0625, 3.0, 0.001, 100.5, -200.0};
  for (int i = 0; i < 8; ++i) tu_set(&t, i, in8[i]);
  memcpy(ref, in8, sizeof ref);
  ref_fake_quant_block(ref, 8, VNRT_E4M3);
  ck_assert(ref[0] == 448 && ref[1] == 1 && ref[2] == 1.25 && ref[3] == -1 && ref[4] == 3);
  ck_assert(ref[5] == ldexp(1.0, -9) && ref[6] == 104 && ref[7] == -192);
  run_fake_quant(ctx, "fake_quant e4m3 ties", &t, VNRT_E4M3, 8, 0, 0);
  /* e4m3 below the floor: amax 1e-6 < 1e-4, scale 2^-22; 1e-6·2^22 = 4.194 -> 4 (step 0.5),
   * -5e-7·2^22 = -2.097 -> -2 (step 0.25); a block of zeros stays zero. */
  for (int i = 0; i < 8; ++i) tu_set(&t, i, i >= 4 ? 0.0 : i % 2 ? 1e-6 : -5e-7);
  memcpy(ref, (double[]){-5e-7, 1e-6}, 2 * sizeof(double));
  ref_fake_quant_block(ref, 2, VNRT_E4M3);
  ck_assert_msg(ref[0] == ldexp(-2.0, -22) && ref[1] == ldexp(4.0, -22), "floor: %g %g", ref[0],
                ref[1]);
  run_fake_quant(ctx, "fake_quant e4m3 floor and zeros", &t, VNRT_E4M3, 4, 0, 0);
  tu_tensor_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

static Suite *qweights_suite(void) {
  Suite *s = suite_create("conformance_qweights");
  TCase *ref = tcase_create("references");
  tcase_add_test(ref, test_reference_codecs_by_hand);
  suite_add_tcase(s, ref);
  TCase *w = tcase_create("weights");
  tcase_set_timeout(w, 120);
  tcase_add_test(w, test_linear_known_values);
  tcase_add_test(w, test_linear_e4m3_every_code);
  tcase_add_test(w, test_linear_fp8);
  tcase_add_test(w, test_linear_fp4);
  tcase_add_test(w, test_linear_gemv_edges);
  tcase_add_test(w, test_linear_bf16_activations);
  tcase_add_test(w, test_matmul);
  tcase_add_test(w, test_embedding);
  tcase_add_test(w, test_moe_ffn_fp8);
  tcase_add_test(w, test_moe_ffn_fp4);
  suite_add_tcase(s, w);
  TCase *fq = tcase_create("fake_quant");
  tcase_add_test(fq, test_fake_quant_variants);
  tcase_add_test(fq, test_fake_quant_known_values);
  suite_add_tcase(s, fq);
  return s;
}

int main(void) { return tu_run_suite(qweights_suite()); }
