/* The tiny DeepSeek-V4-style example model end to end: config and weight errors, a forward pass
 * against an independent double-precision implementation written here, decode = prefill, and
 * the same greedy tokens on every device. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_config.h"
#include "ds_model.h"
#include "ds_roofline.h"
#include "ds_weights.h"
#include "test_util.h"
#include "vnrt/io.h"

#ifndef DS_CONFIG_DIR
#define DS_CONFIG_DIR "examples/deepseek/configs"
#endif

/* Tolerances, as normalised mean squared error Σ(a−r)²/Σr² over the logits compared:
 * - cpu against the double reference, and a decode step against the prefill of the same
 *   tokens: 1e-6. Each op is within 1e-7..1e-6 of exact (docs/ops.md) and three layers compound
 *   that; routing and argmax are discrete, but the test data is checked to have no near-ties
 *   (the margins asserted below), so errors stay at op level (the cpu measures ~1e-14);
 * - other devices against the reference and the cpu: 1e-5, since backends may use f16
 *   arithmetic or other summation orders. DS_TEST_VERBOSE=1 prints the measured values. */
#define TOL_REFERENCE 1e-6
#define TOL_DEVICES 1e-5
#define TOL_DECODE 1e-6
/* Quantized weights: the reference decodes the same codes exactly, but act_quant rounds
 * activations to e4m3 (3 mantissa bits), and an f32 activation a rounding error away from an
 * e4m3 rounding boundary may round the other way than the double reference's: one such flip
 * moves one input of one product by 1/16 of its value. 1e-4 allows a few flips per run. */
#define TOL_QUANT 1e-4

/* ---- A small model and its files --------------------------------------------------------- */

/* Smaller than configs/tiny.json so the double reference runs in milliseconds; every feature
 * is on: hash and top-k layers, Engram at two layers, a window shorter than the sequence, a
 * SwiGLU limit that actually clamps, a pad id that is not zero. */
static ds_config small_config(void) {
  ds_config c;
  memset(&c, 0, sizeof c);
  c.hidden = 32;
  c.layers = 3;
  c.vocab = 97;
  c.heads = 2;
  c.head_dim = 16;
  c.rope_dim = 8;
  c.rope_theta = 10000.0;
  c.window = 5;
  c.max_seq = 24;
  c.hc_mult = 4;
  c.hc_iters = 20;
  c.hc_eps = 1e-6;
  c.norm_eps = 1e-6;
  c.experts = 8;
  c.top_k = 2;
  c.expert_ffn = 16;
  c.shared = 1;
  c.route_scale = 1.5;
  c.score = DS_SCORE_SQRT_SOFTPLUS;
  c.swiglu_limit = 1.0;
  c.hash_layers = 1;
  c.n_engram = 2;
  c.engram_layer[0] = 0;
  c.engram_layer[1] = 2;
  c.ngram = 3;
  c.ngram_heads = 8;
  c.engram_dim = 4;
  c.engram_rows = 31;
  c.conv_kernel = 4;
  c.pad_id = 5;
  c.engram_seed = 7;
  c.weight_dtype = VNRT_BF16;
  c.init_seed = 3;
  char err[DS_ERR_SIZE];
  ck_assert_msg(ds_config_finish(&c, err, sizeof err) == 0, "%s", err);
  return c;
}

typedef struct tmpdir {
  char path[64];
} tmpdir;

static tmpdir tmp_make(void) {
  tmpdir d;
  snprintf(d.path, sizeof d.path, "/tmp/test_deepseek-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(d.path));
  return d;
}

static const char *tmp_file(const tmpdir *d, const char *name) {
  static char buf[4][160];
  static int next = 0;
  char *p = buf[next++ % 4];
  snprintf(p, 160, "%s/%s", d->path, name);
  return p;
}

static void tmp_remove(const tmpdir *d) {
  static const char *const names[] = {"w.safetensors", "w2.safetensors", "bad.safetensors",
                                      "q.safetensors", "u.safetensors"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) remove(tmp_file(d, names[i]));
  rmdir(d->path);
}

static void generate(vnrt_context *ctx, const ds_config *c, const char *path) {
  char err[DS_ERR_SIZE];
  vnrt_status st = ds_weights_generate(ctx, c, path, err, sizeof err);
  ck_assert_msg(st == VNRT_OK, "generate: %s", err);
}

/* ---- An independent double-precision forward pass ------------------------------------------ */

/* Weights read from the file into doubles, by name. */
typedef struct ref_tensor {
  char name[DS_NAME_SIZE];
  vnrt_tensor_type type;
  double *v;
} ref_tensor;

typedef struct ref_model {
  vnrt_safetensors *file;
  ref_tensor t[256];
  int n;
  double min_route_margin; /* smallest gap between the k-th and (k+1)-th selection score */
} ref_model;

/* ---- Quantized weights, decoded here from the OCP definitions (not with vnrt's codecs) ---- */

/* e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal m·2^-9;
 * 0x7F and 0xFF are NaN. */
static double dec_e4m3(uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e == 0 ? m * ldexp(1.0, -9) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
  return c & 0x80 ? -v : v;
}

/* e2m1: bit 3 the sign, bits 0-2 index {0, 0.5, 1, 1.5, 2, 3, 4, 6}. */
static double dec_e2m1(uint8_t nibble) {
  static const double k[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return nibble & 8 ? -k[nibble & 7] : k[nibble & 7];
}

/* Element i (row-major over the logical dims) of codes of dtype dt, decoded. */
static double dec_code(vnrt_dtype dt, const uint8_t *codes, int64_t i) {
  if (dt == VNRT_E4M3) return dec_e4m3(codes[i]);
  return dec_e2m1((uint8_t)(codes[i / 2] >> (i % 2 ? 4 : 0)) & 15);
}

/* W[..][r][c] = dec(code) · 2^(scale[..][r / br][c / bc] − 127) with the format's block. */
static double *ref_dequant(ref_model *r, const char *name, const vnrt_tensor_type *t,
                           const void *data) {
  char sname[DS_NAME_SIZE];
  ds_scale_name(name, sname, sizeof sname);
  vnrt_tensor_type st;
  const void *sdata = NULL;
  ck_assert_msg(vnrt_safetensors_find(r->file, sname, &st, &sdata, NULL) == VNRT_OK,
                "reference: %s has no scale %s", name, sname);
  ck_assert_int_eq(st.dtype, VNRT_E8M0);
  const int64_t br = t->dtype == VNRT_E2M1 ? 1 : 128, bc = t->dtype == VNRT_E2M1 ? 32 : 128;
  const int32_t rk = t->rank;
  const int64_t rows = t->dims[rk - 2], cols = t->dims[rk - 1];
  int64_t n = 1;
  for (int32_t d = 0; d < rk; ++d) n *= t->dims[d];
  const int64_t sr = st.dims[rk - 2], scn = st.dims[rk - 1];
  ck_assert_int_eq(sr, (rows + br - 1) / br);
  ck_assert_int_eq(scn, (cols + bc - 1) / bc);
  double *v = malloc((size_t)n * sizeof *v + 1);
  const uint8_t *codes = data, *scale = sdata;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = i / (rows * cols), row = i / cols % rows, col = i % cols;
    const uint8_t e = scale[(m * sr + row / br) * scn + col / bc];
    if (e == 255) ck_abort_msg("reference: %s has a NaN scale at element %lld", name, (long long)i);
    v[i] = dec_code(t->dtype, codes, i) * ldexp(1.0, (int)e - 127);
  }
  return v;
}

static const double *W(ref_model *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const double *W(ref_model *r, const char *fmt, ...) {
  char name[DS_NAME_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  for (int i = 0; i < r->n; ++i) {
    if (!strcmp(r->t[i].name, name)) return r->t[i].v;
  }
  ck_assert_int_lt(r->n, 256);
  ref_tensor *e = &r->t[r->n++];
  snprintf(e->name, sizeof e->name, "%s", name);
  const void *data = NULL;
  size_t bytes = 0;
  ck_assert_msg(vnrt_safetensors_find(r->file, name, &e->type, &data, &bytes) == VNRT_OK,
                "reference: no tensor %s", name);
  if (e->type.dtype == VNRT_E4M3 || e->type.dtype == VNRT_E2M1) {
    e->v = ref_dequant(r, name, &e->type, data);
    return e->v;
  }
  tu_tensor t = {e->type, malloc(bytes + 1)};
  memcpy(t.data, data, bytes); /* the mapping is not aligned for every dtype */
  int64_t n = tu_numel(&t);
  e->v = malloc((size_t)n * sizeof *e->v + 1);
  for (int64_t i = 0; i < n; ++i) e->v[i] = tu_get(&t, i);
  free(t.data);
  return e->v;
}

static void ref_free(ref_model *r) {
  for (int i = 0; i < r->n; ++i) free(r->t[i].v);
  vnrt_safetensors_close(r->file);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu(double x) { return x * sigmoid(x); }

/* out[i] = Σ_k w[i, k] x[k], w row-major [N, K]. */
static void matvec(const double *w, const double *x, int64_t N, int64_t K, double *out) {
  for (int64_t i = 0; i < N; ++i) {
    double acc = 0.0;
    for (int64_t k = 0; k < K; ++k) acc += w[i * K + k] * x[k];
    out[i] = acc;
  }
}

/* act_quant = 128 (docs/ops.md): per block of 128 channels, s = 2^ceil(log2(max(amax, 1e-4) /
 * 448)) and x -> e4m3_RNE(x / s) · s, written out from the e4m3 grid: 3 mantissa bits, the
 * exponent at least -6 (subnormals step by 2^-9), saturating at 448. */
static void fake_quant_e4m3_128(const double *x, int64_t K, double *out) {
  for (int64_t b0 = 0; b0 < K; b0 += 128) {
    double amax = 1e-4;
    for (int64_t k = b0; k < b0 + 128; ++k) amax = fmax(amax, fabs(x[k]));
    const double s = ldexp(1.0, (int)ceil(log2(amax / 448.0)));
    for (int64_t k = b0; k < b0 + 128; ++k) {
      const double v = x[k] / s;
      int e;
      frexp(v, &e); /* |v| in [2^(e-1), 2^e) */
      const double step = ldexp(1.0, (e - 1 < -6 ? -6 : e - 1) - 3);
      out[k] = fmin(fmax(rint(v / step) * step, -448.0), 448.0) * s;
    }
  }
}

/* A product with a matrix of group g: with a quantized g and K a multiple of 128, the input is
 * fake-quantized first (the example builds act_quant = 128 there). */
static void qmatvec(const ds_config *c, ds_wgroup g, const double *w, const double *x, int64_t N,
                    int64_t K, double *out) {
  if (c->weight_format[g] == DS_WF_NONE || K % 128 != 0) {
    matvec(w, x, N, K, out);
    return;
  }
  double *xq = malloc((size_t)K * sizeof *xq);
  fake_quant_e4m3_128(x, K, xq);
  matvec(w, xq, N, K, out);
  free(xq);
}

static void rmsnorm(const double *x, const double *w, int64_t n, double eps, double *out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  double r = 1.0 / sqrt(ss / (double)n + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * (w ? w[i] : 1.0);
}

/* mHC read-out of one token's streams X[n][C] (DeepSeek-V4: [pre, post, comb] rows, row
 * softmax then Sinkhorn, comb applied transposed later). */
static void ref_hc_pre(const ds_config *c, const double *X, const double *fn, const double *scale,
                       const double *base, double *x, double *post, double *comb) {
  const int64_t n = c->hc_mult, C = c->hidden, nC = n * C, rows = (n + 2) * n;
  double ss = 0.0;
  for (int64_t i = 0; i < nC; ++i) ss += X[i] * X[i];
  double r = 1.0 / sqrt(ss / (double)nC + c->norm_eps);
  double mix[(16 + 2) * 16];
  for (int64_t i = 0; i < rows; ++i) {
    double acc = 0.0;
    for (int64_t k = 0; k < nC; ++k) acc += fn[i * nC + k] * X[k];
    mix[i] = acc * r;
  }
  double pre[16];
  for (int64_t j = 0; j < n; ++j) {
    pre[j] = sigmoid(mix[j] * scale[0] + base[j]) + c->hc_eps;
    post[j] = 2.0 * sigmoid(mix[n + j] * scale[1] + base[n + j]);
  }
  for (int64_t i = 0; i < n; ++i) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      double v = mix[2 * n + i * n + j] * scale[2] + base[2 * n + i * n + j];
      comb[i * n + j] = v;
      if (v > mx) mx = v;
    }
    for (int64_t j = 0; j < n; ++j) sum += (comb[i * n + j] = exp(comb[i * n + j] - mx));
    for (int64_t j = 0; j < n; ++j) comb[i * n + j] = comb[i * n + j] / sum + c->hc_eps;
  }
  for (int64_t it = 0; it < c->hc_iters; ++it) {
    if (it > 0) {
      for (int64_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (int64_t j = 0; j < n; ++j) s += comb[i * n + j];
        for (int64_t j = 0; j < n; ++j) comb[i * n + j] /= s + c->hc_eps;
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += comb[i * n + j];
      for (int64_t i = 0; i < n; ++i) comb[i * n + j] /= s + c->hc_eps;
    }
  }
  for (int64_t k = 0; k < C; ++k) {
    double acc = 0.0;
    for (int64_t j = 0; j < n; ++j) acc += pre[j] * X[j * C + k];
    x[k] = acc;
  }
}

/* X'[k] = post[k]·y + Σ_j comb[j][k]·X[j], in place through a copy. */
static void ref_hc_post(const ds_config *c, double *X, const double *y, const double *post,
                        const double *comb) {
  const int64_t n = c->hc_mult, C = c->hidden;
  double *old = malloc((size_t)(n * C) * sizeof *old);
  memcpy(old, X, (size_t)(n * C) * sizeof *old);
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t i = 0; i < C; ++i) {
      double acc = post[k] * y[i];
      for (int64_t j = 0; j < n; ++j) acc += comb[j * n + k] * old[j * C + i];
      X[k * C + i] = acc;
    }
  }
  free(old);
}

static double ref_score(ds_score s, double x) {
  double sp = x > 20 ? x : (x < -20 ? exp(x) : log1p(exp(x)));
  switch (s) {
    case DS_SCORE_SIGMOID:
      return sigmoid(x);
    default:
      return sqrt(sp);
  }
}

/* SwiGLU with DeepSeek-V4's clamps: silu(min(g, lim)) · clamp(u, −lim, lim). */
static double ref_swiglu(double g, double u, double lim) {
  if (lim > 0) {
    if (g > lim) g = lim;
    if (u > lim) u = lim;
    if (u < -lim) u = -lim;
  }
  return silu(g) * u;
}

/* The whole sequence ids[0..T) from position 0: logits[T][V]. */
static void ref_forward(ref_model *r, const ds_config *c, const int32_t *ids, int64_t T,
                        double *logits) {
  const int64_t C = c->hidden, n = c->hc_mult, Hq = c->heads, D = c->head_dim, E = c->experts;
  const int64_t F = c->expert_ffn, Fs = c->shared * F, V = c->vocab, nC = n * C;
  double *X = calloc((size_t)(T * nC), sizeof *X);
  double *Kc = calloc((size_t)(T * D), sizeof *Kc), *Vc = calloc((size_t)(T * D), sizeof *Vc);
  double *Q = calloc((size_t)(T * Hq * D), sizeof *Q);
  double *tmp = calloc((size_t)(4 * nC + 4 * Hq * D + 4 * F + 4 * Fs + 4 * E + 64), sizeof *tmp);
  double *xin = tmp, *h = xin + nC, *y = h + nC, *o = y + nC, *aux = o + nC;
  double post[16], comb[256];
  const double *emb = W(r, "model.embed_tokens.weight");
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < n; ++j)
      memcpy(&X[t * nC + j * C], &emb[ids[t] * C], C * sizeof(double));
  }
  for (int32_t l = 0; l < (int32_t)c->layers; ++l) {
    int32_t ei = -1;
    for (int32_t i = 0; i < c->n_engram; ++i) ei = c->engram_layer[i] == l ? i : ei;
    if (ei >= 0) {
      const int64_t N = c->ngram, K = c->ngram_heads, H = (N - 1) * K, Dh = c->engram_dim;
      const int64_t dm = H * Dh, P = (c->conv_kernel - 1) * N;
      const double *table = W(r, "model.layers.%d.engram.embedding.weight", l);
      const double *wv = W(r, "model.layers.%d.engram.value_proj.weight", l);
      const double *wk = W(r, "model.layers.%d.engram.key_proj.weight", l);
      const double *nh = W(r, "model.layers.%d.engram.norm_h.weight", l);
      const double *nk = W(r, "model.layers.%d.engram.norm_k.weight", l);
      const double *nz = W(r, "model.layers.%d.engram.conv_norm.weight", l);
      const double *cw = W(r, "model.layers.%d.engram.conv.weight", l);
      double *u = calloc((size_t)(T * nC), sizeof *u), *z = calloc((size_t)(T * nC), sizeof *z);
      double *e = calloc((size_t)dm, sizeof *e), *v = calloc((size_t)C, sizeof *v);
      double *k = calloc((size_t)nC, sizeof *k), *a = calloc((size_t)C, sizeof *a),
             *bb = calloc((size_t)C, sizeof *bb);
      for (int64_t t = 0; t < T; ++t) {
        int64_t offset = 0;
        for (int64_t ord = 2; ord <= N; ++ord) {
          for (int64_t hh = 0; hh < K; ++hh) {
            int64_t col = (ord - 2) * K + hh;
            uint64_t mix = 0;
            for (int64_t j = 0; j < ord; ++j) {
              int64_t tok = t - j >= 0 ? ids[t - j] : c->pad_id;
              mix ^= (uint64_t)tok * (uint64_t)c->engram_mult[ei][j];
            }
            int64_t p = c->engram_primes[ei][col], row = (int64_t)mix % p;
            if (row < 0) row += p;
            for (int64_t d = 0; d < Dh; ++d) e[col * Dh + d] = table[(offset + row) * Dh + d];
            offset += p;
          }
        }
        matvec(wv, e, C, dm, v);
        matvec(wk, e, nC, dm, k);
        for (int64_t m = 0; m < n; ++m) {
          rmsnorm(&X[t * nC + m * C], &nh[m * C], C, c->norm_eps, a);
          rmsnorm(&k[m * C], &nk[m * C], C, c->norm_eps, bb);
          double g = 0.0;
          for (int64_t i = 0; i < C; ++i) g += a[i] * bb[i];
          g /= sqrt((double)C);
          g = (g < 0 ? -1.0 : 1.0) * sqrt(fmax(fabs(g), 1e-6));
          for (int64_t i = 0; i < C; ++i) u[t * nC + m * C + i] = sigmoid(g) * v[i];
          rmsnorm(&u[t * nC + m * C], &nz[m * C], C, c->norm_eps, &z[t * nC + m * C]);
        }
      }
      /* Causal dilated depthwise conv over z; the history of a new sequence is zero. */
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t q = 0; q < nC; ++q) {
          double acc = 0.0;
          for (int64_t i = 0; i < c->conv_kernel; ++i) {
            int64_t s = t - (c->conv_kernel - 1 - i) * N;
            if (s >= 0) acc += cw[q * c->conv_kernel + i] * z[s * nC + q];
          }
          X[t * nC + q] += silu(acc) + u[t * nC + q];
        }
      }
      (void)P;
      free(u), free(z), free(e), free(v), free(k), free(a), free(bb);
    }

    /* Attention: all tokens' q, k, v first (k and v are the cache), then each query. */
    double *post_all = calloc((size_t)(T * n), sizeof *post_all);
    double *comb_all = calloc((size_t)(T * n * n), sizeof *comb_all);
    for (int64_t t = 0; t < T; ++t) {
      ref_hc_pre(c, &X[t * nC], W(r, "model.layers.%d.attn_hc.fn", l),
                 W(r, "model.layers.%d.attn_hc.scale", l), W(r, "model.layers.%d.attn_hc.base", l),
                 xin, &post_all[t * n], &comb_all[t * n * n]);
      rmsnorm(xin, W(r, "model.layers.%d.input_layernorm.weight", l), C, c->norm_eps, h);
      qmatvec(c, DS_WG_ATTENTION, W(r, "model.layers.%d.self_attn.q_proj.weight", l), h, Hq * D, C,
              &Q[t * Hq * D]);
      qmatvec(c, DS_WG_ATTENTION, W(r, "model.layers.%d.self_attn.k_proj.weight", l), h, D, C,
              &Kc[t * D]);
      qmatvec(c, DS_WG_ATTENTION, W(r, "model.layers.%d.self_attn.v_proj.weight", l), h, D, C,
              &Vc[t * D]);
      /* Interleaved RoPE on the last rope_dim channels of every head. */
      for (int64_t hd = 0; hd <= Hq; ++hd) {
        double *vec = hd < Hq ? &Q[(t * Hq + hd) * D] : &Kc[t * D];
        for (int64_t i = 0; i < c->rope_dim / 2; ++i) {
          double ang = (double)t * pow(c->rope_theta, -2.0 * (double)i / (double)c->rope_dim);
          double *p = &vec[D - c->rope_dim + 2 * i];
          double x1 = p[0], x2 = p[1];
          p[0] = x1 * cos(ang) - x2 * sin(ang);
          p[1] = x1 * sin(ang) + x2 * cos(ang);
        }
      }
    }
    const double *sinks = W(r, "model.layers.%d.self_attn.sinks", l);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t hd = 0; hd < Hq; ++hd) {
        int64_t first = c->window > 0 && t - c->window + 1 > 0 ? t - c->window + 1 : 0;
        double sc[64], mx = sinks[hd], den;
        for (int64_t s = first; s <= t; ++s) {
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d) dot += Q[(t * Hq + hd) * D + d] * Kc[s * D + d];
          sc[s - first] = dot / sqrt((double)D);
          if (sc[s - first] > mx) mx = sc[s - first];
        }
        den = exp(sinks[hd] - mx);
        for (int64_t s = first; s <= t; ++s) den += exp(sc[s - first] - mx);
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0.0;
          for (int64_t s = first; s <= t; ++s) acc += exp(sc[s - first] - mx) / den * Vc[s * D + d];
          o[hd * D + d] = acc;
        }
      }
      qmatvec(c, DS_WG_ATTENTION, W(r, "model.layers.%d.self_attn.o_proj.weight", l), o, C, Hq * D,
              y);
      ref_hc_post(c, &X[t * nC], y, &post_all[t * n], &comb_all[t * n * n]);
    }

    /* MoE, token by token. */
    for (int64_t t = 0; t < T; ++t) {
      ref_hc_pre(c, &X[t * nC], W(r, "model.layers.%d.ffn_hc.fn", l),
                 W(r, "model.layers.%d.ffn_hc.scale", l), W(r, "model.layers.%d.ffn_hc.base", l),
                 xin, post, comb);
      rmsnorm(xin, W(r, "model.layers.%d.post_attention_layernorm.weight", l), C, c->norm_eps, h);
      double lg[64], s[64], sel[64], w[16];
      int32_t ex[16];
      matvec(W(r, "model.layers.%d.mlp.gate.weight", l), h, E, C, lg);
      for (int64_t i = 0; i < E; ++i) s[i] = ref_score(c->score, lg[i]);
      if (l < c->hash_layers) {
        const double *tid2eid = W(r, "model.layers.%d.mlp.gate.tid2eid", l);
        for (int64_t i = 0; i < c->top_k; ++i) ex[i] = (int32_t)tid2eid[ids[t] * c->top_k + i];
      } else {
        const double *bias = W(r, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        int taken[64] = {0};
        for (int64_t i = 0; i < E; ++i) sel[i] = s[i] + bias[i];
        for (int64_t i = 0; i <= c->top_k && i < E; ++i) {
          int64_t best = -1;
          for (int64_t q = 0; q < E; ++q) {
            if (!taken[q] && (best < 0 || sel[q] > sel[best])) best = q;
          }
          if (i == c->top_k) {
            double gap = sel[ex[c->top_k - 1]] - sel[best];
            if (gap < r->min_route_margin) r->min_route_margin = gap;
          } else {
            ex[i] = (int32_t)best;
            taken[best] = 1;
          }
        }
      }
      double sum = 0.0;
      for (int64_t i = 0; i < c->top_k; ++i) sum += (w[i] = s[ex[i]]);
      for (int64_t i = 0; i < c->top_k; ++i) w[i] = w[i] / (sum + 1e-20) * c->route_scale;
      for (int64_t i = 0; i < C; ++i) y[i] = 0.0;
      const double *gu = W(r, "model.layers.%d.mlp.experts.gate_up_proj", l);
      const double *dn = W(r, "model.layers.%d.mlp.experts.down_proj", l);
      double *gate = aux, *up = gate + F + Fs, *act = up + F + Fs, *out = act + F + Fs;
      /* With act_quant (quantized experts, C and F multiples of 128): x quantized per token,
       * and the routing weight applied before the down projection's input is quantized. */
      const int aq = c->weight_format[DS_WG_EXPERTS] != DS_WF_NONE && C % 128 == 0 && F % 128 == 0;
      for (int64_t i = 0; i < c->top_k; ++i) {
        if (aq) {
          qmatvec(c, DS_WG_EXPERTS, &gu[ex[i] * 2 * F * C], h, F, C, gate);
          qmatvec(c, DS_WG_EXPERTS, &gu[ex[i] * 2 * F * C + F * C], h, F, C, up);
          for (int64_t f = 0; f < F; ++f) {
            act[f] = w[i] * ref_swiglu(gate[f], up[f], c->swiglu_limit);
          }
          qmatvec(c, DS_WG_EXPERTS, &dn[ex[i] * C * F], act, C, F, out);
          for (int64_t q = 0; q < C; ++q) y[q] += out[q];
          continue;
        }
        matvec(&gu[ex[i] * 2 * F * C], h, F, C, gate);
        matvec(&gu[ex[i] * 2 * F * C + F * C], h, F, C, up);
        for (int64_t f = 0; f < F; ++f) act[f] = ref_swiglu(gate[f], up[f], c->swiglu_limit);
        matvec(&dn[ex[i] * C * F], act, C, F, out);
        for (int64_t q = 0; q < C; ++q) y[q] += w[i] * out[q];
      }
      if (Fs > 0) {
        qmatvec(c, DS_WG_SHARED, W(r, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l), h,
                Fs, C, gate);
        qmatvec(c, DS_WG_SHARED, W(r, "model.layers.%d.mlp.shared_experts.up_proj.weight", l), h,
                Fs, C, up);
        for (int64_t f = 0; f < Fs; ++f) act[f] = ref_swiglu(gate[f], up[f], c->swiglu_limit);
        qmatvec(c, DS_WG_SHARED, W(r, "model.layers.%d.mlp.shared_experts.down_proj.weight", l),
                act, C, Fs, out);
        for (int64_t q = 0; q < C; ++q) y[q] += out[q];
      }
      ref_hc_post(c, &X[t * nC], y, post, comb);
    }
    free(post_all);
    free(comb_all);
  }
  /* Head: collapse the streams with sigmoid weights, final norm, LM head. */
  const double *hfn = W(r, "model.hc_head.fn"), *hs = W(r, "model.hc_head.scale");
  const double *hb = W(r, "model.hc_head.base");
  for (int64_t t = 0; t < T; ++t) {
    const double *Xt = &X[t * nC];
    double ss = 0.0, wj[16];
    for (int64_t i = 0; i < nC; ++i) ss += Xt[i] * Xt[i];
    double rr = 1.0 / sqrt(ss / (double)nC + c->norm_eps);
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t i = 0; i < nC; ++i) acc += hfn[j * nC + i] * Xt[i];
      wj[j] = sigmoid(acc * rr * hs[0] + hb[j]) + c->hc_eps;
    }
    for (int64_t i = 0; i < C; ++i) {
      double acc = 0.0;
      for (int64_t j = 0; j < n; ++j) acc += wj[j] * Xt[j * C + i];
      xin[i] = acc;
    }
    rmsnorm(xin, W(r, "model.norm.weight"), C, c->norm_eps, h);
    matvec(W(r, "lm_head.weight"), h, V, C, &logits[t * V]);
  }
  free(X), free(Kc), free(Vc), free(Q), free(tmp);
}

static void ref_open(ref_model *r, vnrt_context *ctx, const char *path) {
  memset(r, 0, sizeof *r);
  r->min_route_margin = INFINITY;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &r->file));
}

/* With DS_TEST_VERBOSE set, the measured errors are printed (to size the tolerances). */
static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
  if (!getenv("DS_TEST_VERBOSE")) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static double nmse_f(const float *got, const double *want, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!isfinite(got[i])) return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? num / den : num;
}

/* The largest minus the second largest value: how far the greedy choice is from a tie. */
static double top_gap(const double *v, int64_t n) {
  int64_t a = 0;
  for (int64_t i = 1; i < n; ++i) a = v[i] > v[a] ? i : a;
  double second = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (i != a && v[i] > second) second = v[i];
  }
  return v[a] - second;
}

static int32_t argmax_d(const double *v, int64_t n) {
  int64_t a = 0;
  for (int64_t i = 1; i < n; ++i) a = v[i] > v[a] ? i : a;
  return (int32_t)a;
}

static ds_model *open_model(vnrt_context *ctx, const ds_config *c, const char *path) {
  ds_model *m = NULL;
  char err[DS_ERR_SIZE];
  vnrt_status st = ds_model_open(ctx, c, path, &m, err, sizeof err);
  ck_assert_msg(st == VNRT_OK, "ds_model_open: %s", err);
  return m;
}

#define DS_OK(m, expr)                                                                            \
  do {                                                                                            \
    vnrt_status s_ = (expr);                                                                      \
    ck_assert_msg(s_ == VNRT_OK, "%s: %s: %s", #expr, vnrt_status_string(s_), ds_model_error(m)); \
  } while (0)

/* ---- Tests ------------------------------------------------------------------------------- */

enum { PROMPT = 5, GEN = 12 }; /* 16 positions: more than the window of 5 and than 3N */

START_TEST(greedy_tokens_and_logits_agree_with_the_reference_on_every_device) {
  vnrt_context *ctx = tu_context();
  ds_config c = small_config();
  tmpdir d = tmp_make();
  const char *path = tmp_file(&d, "w.safetensors");
  generate(ctx, &c, path);
  const int64_t V = c.vocab, S = PROMPT + GEN - 1;
  const int32_t prompt[PROMPT] = {11, 42, 7, 42, 96};
  int32_t cpu_tokens[GEN];
  float *cpu_logits = malloc((size_t)(S * V) * sizeof(float));
  float *logits = malloc((size_t)(S * V) * sizeof(float));
  double *ref = malloc((size_t)(S * V) * sizeof(double));
  ds_model *m = open_model(ctx, &c, path);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    DS_OK(m, ds_model_compile(m, dev, PROMPT, NULL));
    DS_OK(m, ds_model_prefill(m, prompt, logits));
    int32_t tokens[GEN];
    tokens[0] = ds_argmax(logits + (PROMPT - 1) * V, V);
    for (int i = 1; i < GEN; ++i) {
      DS_OK(m, ds_model_decode(m, tokens[i - 1], logits + (PROMPT + i - 1) * V));
      tokens[i] = ds_argmax(logits + (PROMPT + i - 1) * V, V);
    }
    ck_assert_int_eq(ds_model_position(m), S);
    if (di == 0) {
      memcpy(cpu_tokens, tokens, sizeof tokens);
      memcpy(cpu_logits, logits, (size_t)(S * V) * sizeof(float));
      /* The reference sees the whole sequence at once: its logits at every position must equal
       * the prefill's (positions < PROMPT) and each decode step's. */
      int32_t seq[PROMPT + GEN];
      memcpy(seq, prompt, sizeof prompt);
      memcpy(seq + PROMPT, tokens, sizeof tokens);
      ref_model r;
      ref_open(&r, ctx, path);
      ref_forward(&r, &c, seq, S, ref);
      ck_assert_msg(r.min_route_margin > 1e-4, "routing near a tie (%g): pick another seed",
                    r.min_route_margin);
      ref_free(&r);
      double err = nmse_f(logits, ref, S * V);
      report("cpu vs reference: NMSE %g, smallest routing margin %g", err, r.min_route_margin);
      ck_assert_msg(err < TOL_REFERENCE, "cpu vs reference: NMSE %g", err);
      int distinct = 0;
      for (int64_t p = 0; p < S; ++p) {
        double e1 = nmse_f(logits + p * V, ref + p * V, V);
        ck_assert_msg(e1 < TOL_REFERENCE, "position %lld: NMSE %g", (long long)p, e1);
        if (p >= PROMPT - 1) {
          /* Greedy tokens are the reference's, and none is a near tie. */
          ck_assert_msg(top_gap(ref + p * V, V) > 1e-3, "argmax near a tie at %lld", (long long)p);
          ck_assert_int_eq(tokens[p - (PROMPT - 1)], argmax_d(ref + p * V, V));
        }
      }
      for (int i = 0; i < GEN; ++i) {
        int seen = 0;
        for (int j = 0; j < i; ++j) seen |= tokens[j] == tokens[i];
        distinct += !seen;
      }
      ck_assert_msg(distinct >= 3, "greedy output is degenerate (%d distinct tokens)", distinct);
    } else {
      for (int i = 0; i < GEN; ++i) {
        ck_assert_msg(tokens[i] == cpu_tokens[i], "%s: token %d is %d, cpu says %d",
                      tu_device_spec(dev), i, tokens[i], cpu_tokens[i]);
      }
      double err = nmse_f(logits, ref, S * V);
      report("%s vs reference: NMSE %g", tu_device_spec(dev), err);
      ck_assert_msg(err < TOL_DEVICES, "%s vs reference: NMSE %g", tu_device_spec(dev), err);
      double vs_cpu = 0.0, den = 0.0;
      for (int64_t i = 0; i < S * V; ++i) {
        vs_cpu += ((double)logits[i] - cpu_logits[i]) * ((double)logits[i] - cpu_logits[i]);
        den += (double)cpu_logits[i] * cpu_logits[i];
      }
      ck_assert_msg(vs_cpu / den < TOL_DEVICES, "%s vs cpu: NMSE %g", tu_device_spec(dev),
                    vs_cpu / den);
    }
  }
  ds_model_close(m);
  free(cpu_logits), free(logits), free(ref);
  tmp_remove(&d);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(decode_step_by_step_equals_prefill_of_the_same_tokens) {
  vnrt_context *ctx = tu_context();
  ds_config c = small_config();
  tmpdir d = tmp_make();
  const char *path = tmp_file(&d, "w.safetensors");
  generate(ctx, &c, path);
  enum { T = 14, P = 3 };
  const int64_t V = c.vocab;
  const int32_t seq[T] = {1, 2, 3, 1, 2, 3, 50, 60, 70, 80, 5, 5, 5, 96};
  const int32_t other[P] = {9, 8, 7};
  float *full = malloc((size_t)(T * V) * sizeof(float));
  float *step = malloc((size_t)V * sizeof(float));
  float *first = malloc((size_t)(P * V) * sizeof(float));
  float *again = malloc((size_t)(P * V) * sizeof(float));
  ds_model *a = open_model(ctx, &c, path), *b = open_model(ctx, &c, path);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    DS_OK(a, ds_model_compile(a, dev, T, NULL));
    DS_OK(a, ds_model_prefill(a, seq, full));
    DS_OK(b, ds_model_compile(b, dev, P, NULL));
    vnrt_plan_info pi, di_info;
    DS_OK(b, ds_model_plan_info(b, &pi, &di_info));
    if (di_info.n_fallback_nodes == 0) {
      /* The KV caches are written in place, not copied per step. */
      ck_assert_int_eq(di_info.n_inplace_updates, 2 * (int)c.layers);
    }
    /* A different sequence first: the prefill of the next one must not see its states. */
    DS_OK(b, ds_model_prefill(b, other, NULL));
    DS_OK(b, ds_model_decode(b, 4, NULL));
    DS_OK(b, ds_model_prefill(b, seq, first));
    for (int64_t i = 0; i < P * V; ++i) {
      ck_assert_msg(fabsf(first[i] - full[i]) <= 1e-4f * (1.0f + fabsf(full[i])),
                    "%s: prefill of %d tokens differs from the first rows of %d at %lld: %g vs %g",
                    tu_device_spec(dev), P, T, (long long)i, first[i], full[i]);
    }
    for (int64_t t = P; t < T; ++t) {
      DS_OK(b, ds_model_decode(b, seq[t], step));
      double num = 0.0, den = 0.0;
      for (int64_t i = 0; i < V; ++i) {
        double dd = (double)step[i] - full[t * V + i];
        num += dd * dd;
        den += (double)full[t * V + i] * full[t * V + i];
      }
      report("%s: decode of position %lld vs prefill: NMSE %g", tu_device_spec(dev), (long long)t,
             num / den);
      ck_assert_msg(num / den < TOL_DECODE, "%s: decode of position %lld: NMSE %g vs prefill",
                    tu_device_spec(dev), (long long)t, num / den);
      ck_assert_int_eq(ds_argmax(step, V), ds_argmax(full + t * V, V));
    }
    /* The same prompt again gives the same logits (states were reset). */
    DS_OK(b, ds_model_prefill(b, seq, again));
    ck_assert_int_eq(memcmp(first, again, (size_t)(P * V) * sizeof(float)), 0);
  }
  /* Past the KV cache: an error, not a write out of bounds. */
  DS_OK(b, ds_model_compile(b, tu_device(ctx, 0), P, NULL));
  DS_OK(b, ds_model_prefill(b, seq, NULL));
  for (int64_t t = P; t < c.max_seq; ++t) DS_OK(b, ds_model_decode(b, 1, NULL));
  ck_assert_int_eq(ds_model_decode(b, 1, NULL), VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_ptr_nonnull(strstr(ds_model_error(b), "KV cache is full"));
  /* A token outside the vocabulary is refused before any device work. */
  ck_assert_int_eq(ds_model_prefill(b, (const int32_t[P]){1, (int32_t)V, 2}, NULL),
                   VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_ptr_nonnull(strstr(ds_model_error(b), "token id 97 at position 1"));
  ck_assert_int_eq(ds_model_decode(b, 1, NULL), VNRT_ERROR_INVALID_ARGUMENT);
  ds_model_close(a);
  ds_model_close(b);
  free(full), free(step), free(first), free(again);
  tmp_remove(&d);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Prefill then decode on device with the given placement: every logit into out[T][V]. */
static void run_sequence(ds_model *m, vnrt_device *device, const ds_model_options *o,
                         const int32_t *seq, int64_t T, int64_t P, float *out, vnrt_plan_info *info,
                         vnrt_run_stats *dstats) {
  const int64_t V = ds_model_config(m)->vocab;
  DS_OK(m, ds_model_compile(m, device, P, o));
  DS_OK(m, ds_model_prefill(m, seq, out));
  for (int64_t t = P; t < T; ++t) DS_OK(m, ds_model_decode(m, seq[t], out + t * V));
  DS_OK(m, ds_model_plan_info(m, NULL, info));
  ds_model_run_stats(m, NULL, dstats);
}

START_TEST(engram_stores_and_streamed_weights_give_the_same_logits) {
  vnrt_context *ctx = tu_context();
  ds_config c = small_config();
  tmpdir d = tmp_make();
  const char *path = tmp_file(&d, "w.safetensors");
  generate(ctx, &c, path);
  enum { T = 16, P = 4 };
  const int64_t V = c.vocab;
  /* Repeated n-grams, so that a row cache has something to hit. */
  const int32_t seq[T] = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4};
  float *base = malloc((size_t)(T * V) * sizeof(float));
  float *got = malloc((size_t)(T * V) * sizeof(float));
  vnrt_plan_info info;
  vnrt_run_stats rs;
  vnrt_device *dev = tu_device(ctx, 0); /* the cpu, unless VNRT_TEST_DEVICES says otherwise */
  ds_model *m = open_model(ctx, &c, path);
  run_sequence(m, dev, NULL, seq, T, P, base, &info, &rs);
  ck_assert_int_eq(info.n_engram_lookups, 0);
  ck_assert_int_eq(info.n_streamed_params, 0);
  ck_assert_uint_eq(rs.engram_rows, 0);

  /* The decode plan shares the prefill plan's device weights by default; with its own copy
   * (no_share) the logits are bit-identical and its device memory holds every weight again. */
  vnrt_plan_info own;
  ds_model_options ns = {.no_share = 1};
  run_sequence(m, dev, &ns, seq, T, P, got, &own, &rs);
  ck_assert_int_eq(memcmp(base, got, (size_t)(T * V) * sizeof(float)), 0);
  ck_assert_uint_eq(own.weight_bytes, info.weight_bytes);
  ck_assert_uint_ge(own.device_bytes, info.device_bytes + info.weight_bytes);

  /* Engram tables read through stores over the weights file, with and without a row cache:
   * bit-identical logits; with a cache, the repeated n-grams hit it. */
  for (int64_t rows = 0; rows <= 64; rows += 64) {
    ds_model_options o = {.engram_store = 1, .engram_cache_rows = rows};
    run_sequence(m, dev, &o, seq, T, P, got, &info, &rs);
    ck_assert_int_eq(info.n_engram_lookups, c.n_engram);
    ck_assert_int_eq(memcmp(base, got, (size_t)(T * V) * sizeof(float)), 0);
    /* Each decode step asks every Engram layer for its (N-1)*K rows. */
    ck_assert_uint_eq(rs.engram_rows, (uint64_t)((T - P) * c.n_engram * c.engram_heads_total));
    if (rows == 0) {
      ck_assert_uint_eq(rs.engram_hits, 0);
    } else {
      ck_assert_uint_gt(rs.engram_hits, 0);
      ck_assert(rs.engram_hit_rate > 0.0 && rs.engram_hit_rate <= 1.0);
    }
  }

  /* Half the weights over the device budget: they stay in the mapped file and stream in. */
  ds_model_options o = {.device_memory_limit = ds_weights_bytes(&c) / 2};
  run_sequence(m, dev, &o, seq, T, P, got, &info, &rs);
  ck_assert_int_gt(info.n_streamed_params, 0);
  ck_assert_uint_le(info.device_bytes, o.device_memory_limit);
  ck_assert_uint_gt(rs.bytes_weights, 0);
  ck_assert_int_eq(memcmp(base, got, (size_t)(T * V) * sizeof(float)), 0);

  ds_model_close(m);
  free(base), free(got);
  tmp_remove(&d);
  vnrt_context_destroy(ctx);
}
END_TEST

/* The tensors of a weights file, to write altered copies of it. */
typedef struct tensor_list {
  const char *names[512];
  vnrt_tensor_type types[512];
  const void *datas[512];
  int32_t n;
} tensor_list;

static void read_list(vnrt_context *ctx, vnrt_safetensors *f, tensor_list *l) {
  l->n = vnrt_safetensors_count(f);
  ck_assert_int_le(l->n, 500);
  for (int32_t i = 0; i < l->n; ++i) {
    l->names[i] = vnrt_safetensors_name(f, i);
    TU_OK(ctx, vnrt_safetensors_find(f, l->names[i], &l->types[i], &l->datas[i], NULL));
  }
}

static int32_t list_find(const tensor_list *l, const char *name) {
  for (int32_t i = 0; i < l->n; ++i) {
    if (!strcmp(l->names[i], name)) return i;
  }
  ck_abort_msg("no tensor %s in the generated file", name);
  return -1;
}

static vnrt_status open_status(vnrt_context *ctx, const ds_config *c, const char *path, char *err) {
  ds_model *m = NULL;
  vnrt_status st = ds_model_open(ctx, c, path, &m, err, DS_ERR_SIZE);
  if (st != VNRT_OK) ck_assert_ptr_null(m); /* a failed open leaves no model */
  ds_model_close(m);
  return st;
}

START_TEST(weights_are_deterministic_and_a_bad_tensor_is_named) {
  vnrt_context *ctx = tu_context();
  ds_config c = small_config();
  tmpdir d = tmp_make();
  const char *path = tmp_file(&d, "w.safetensors"), *path2 = tmp_file(&d, "w2.safetensors");
  const char *bad = tmp_file(&d, "bad.safetensors");
  generate(ctx, &c, path);
  generate(ctx, &c, path2);
  {
    /* Byte-identical files from the same config. */
    FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
    ck_assert_ptr_nonnull(f1);
    ck_assert_ptr_nonnull(f2);
    int a1, a2;
    long bytes = 0;
    do {
      a1 = fgetc(f1);
      a2 = fgetc(f2);
      ck_assert_int_eq(a1, a2);
      ++bytes;
    } while (a1 != EOF);
    fclose(f1);
    fclose(f2);
    ck_assert_int_eq((int64_t)bytes - 1 > 0, 1);
    ck_assert_uint_eq((uint64_t)ds_weights_bytes(&c) < (uint64_t)bytes, 1);
  }
  char err[DS_ERR_SIZE];
  ds_model *m = NULL;
  ck_assert_int_eq(ds_model_open(ctx, &c, path, &m, err, sizeof err), VNRT_OK);
  ds_model_close(m);

  vnrt_safetensors *f = NULL;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  tensor_list l;
  read_list(ctx, f, &l);
  /* HF-style names, packed experts, dtypes as documented. */
  vnrt_tensor_type t = l.types[list_find(&l, "model.layers.1.mlp.experts.gate_up_proj")];
  ck_assert_int_eq(t.dtype, VNRT_BF16);
  ck_assert_int_eq(t.rank, 3);
  ck_assert_int_eq(t.dims[0], c.experts);
  ck_assert_int_eq(t.dims[1], 2 * c.expert_ffn);
  ck_assert_int_eq(t.dims[2], c.hidden);
  ck_assert_int_eq(l.types[list_find(&l, "model.layers.0.attn_hc.fn")].dtype, VNRT_F32);
  ck_assert_int_eq(l.types[list_find(&l, "model.layers.0.mlp.gate.tid2eid")].dtype, VNRT_I32);
  list_find(&l, "model.layers.1.mlp.gate.e_score_correction_bias");
  list_find(&l, "model.layers.2.engram.embedding.weight");

  /* Missing. */
  tensor_list e = l;
  int32_t k = list_find(&e, "model.layers.1.mlp.experts.down_proj");
  e.names[k] = e.names[e.n - 1], e.types[k] = e.types[e.n - 1], e.datas[k] = e.datas[e.n - 1];
  e.n--;
  TU_OK(ctx, vnrt_safetensors_write(ctx, bad, e.names, e.types, e.datas, e.n));
  ck_assert_int_eq(open_status(ctx, &c, bad, err), VNRT_ERROR_NOT_FOUND);
  ck_assert_msg(strstr(err, "missing tensor 'model.layers.1.mlp.experts.down_proj'"), "%s", err);

  /* Misnamed: the expected name is missing and the stray one is pointed at. */
  e = l;
  e.names[list_find(&e, "model.layers.0.self_attn.q_proj.weight")] =
      "model.layers.0.self_attn.q_prj.weight";
  TU_OK(ctx, vnrt_safetensors_write(ctx, bad, e.names, e.types, e.datas, e.n));
  ck_assert_int_eq(open_status(ctx, &c, bad, err), VNRT_ERROR_NOT_FOUND);
  ck_assert_msg(strstr(err, "'model.layers.0.self_attn.q_proj.weight'"), "%s", err);
  ck_assert_msg(strstr(err, "'model.layers.0.self_attn.q_prj.weight'"), "%s", err);

  /* Mis-shaped: one row short. */
  e = l;
  k = list_find(&e, "lm_head.weight");
  e.types[k].dims[0] -= 1;
  TU_OK(ctx, vnrt_safetensors_write(ctx, bad, e.names, e.types, e.datas, e.n));
  ck_assert_int_eq(open_status(ctx, &c, bad, err), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_msg(strstr(err, "'lm_head.weight' is bf16[96, 32] but the config needs bf16[97, 32]"),
                "%s", err);

  /* Wrong dtype. */
  e = l;
  k = list_find(&e, "model.layers.2.self_attn.sinks");
  e.types[k].dtype = VNRT_I32;
  TU_OK(ctx, vnrt_safetensors_write(ctx, bad, e.names, e.types, e.datas, e.n));
  ck_assert_int_eq(open_status(ctx, &c, bad, err), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_msg(strstr(err, "'model.layers.2.self_attn.sinks' is i32[2]"), "%s", err);

  /* A tensor the model does not have. */
  e = l;
  e.names[e.n] = "model.layers.9.mlp.gate.weight";
  e.types[e.n] = e.types[0];
  e.datas[e.n] = e.datas[0];
  e.n++;
  TU_OK(ctx, vnrt_safetensors_write(ctx, bad, e.names, e.types, e.datas, e.n));
  ck_assert_int_eq(open_status(ctx, &c, bad, err), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "unexpected tensor 'model.layers.9.mlp.gate.weight'"), "%s", err);

  /* A config that does not match the file (more experts): named shapes again. */
  ds_config c2 = c;
  c2.experts = 9;
  ck_assert_int_eq(ds_config_finish(&c2, err, sizeof err), 0);
  ck_assert_int_eq(open_status(ctx, &c2, path, err), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_msg(strstr(err, "'model.layers.0.mlp.gate.weight' is f32[8, 32]"), "%s", err);

  /* No file at all. */
  ck_assert_int_eq(open_status(ctx, &c, tmp_file(&d, "none.safetensors"), err),
                   VNRT_ERROR_NOT_FOUND);
  ck_assert_msg(strstr(err, "none.safetensors"), "%s", err);

  vnrt_safetensors_close(f);
  tmp_remove(&d);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Quantized weights ----------------------------------------------------------------- */

/* small_config at widths where act_quant applies: C = 128 and F = 128 are multiples of 128
 * (q/k/v, the shared expert and the routed experts quantize their inputs), Hq·D = 192 is not
 * (o_proj does not) and leaves a 64-row tail block in q_proj. FP8 attention and shared
 * expert, FP4 routed experts, as DeepSeek-V4 stores them. */
static ds_config quant_config(void) {
  ds_config c = small_config();
  c.hidden = 128;
  c.heads = 3;
  c.head_dim = 64;
  c.rope_dim = 16;
  c.expert_ffn = 128;
  /* Of seeds 0..23, the one whose reference run has the widest routing margin (7e-3) and top
   * logit gap (5e-2) with 12 distinct greedy tokens. */
  c.init_seed = 15;
  char err[DS_ERR_SIZE];
  ck_assert_msg(ds_config_set_quant(&c, "fp8fp4", err, sizeof err) == 0, "%s", err);
  ck_assert_msg(ds_config_finish(&c, err, sizeof err) == 0, "%s", err);
  return c;
}

/* Bytes of a [lead, rows, cols] matrix stored as codes of fmt and their e8m0 scales. */
static uint64_t stored_bytes(ds_wformat fmt, int64_t lead, int64_t rows, int64_t cols) {
  const int64_t br = fmt == DS_WF_FP4 ? 1 : 128, bc = fmt == DS_WF_FP4 ? 32 : 128;
  const int64_t codes = fmt == DS_WF_FP4 ? rows * cols / 2 : rows * cols;
  return (uint64_t)(lead * (codes + ((rows + br - 1) / br) * ((cols + bc - 1) / bc)));
}

/* Every quantized matrix of the file at q against its unquantized master at u: each scale is
 * the power of two of the recipe (2^ceil(log2(max(amax, floor) / max)) over the block) and
 * each code is a nearest one to master / scale, the even code on a tie. */
static void check_quantized_matrices(vnrt_context *ctx, const ds_config *c, const char *q,
                                     const char *u) {
  ds_tensor_spec *specs = NULL;
  int32_t n = 0;
  ck_assert_int_eq(ds_tensor_specs(c, &specs, &n), 0);
  vnrt_safetensors *fq = NULL, *fu = NULL;
  TU_OK(ctx, vnrt_safetensors_open(ctx, q, &fq));
  TU_OK(ctx, vnrt_safetensors_open(ctx, u, &fu));
  int matrices = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (specs[i].quant_pair < 0 || specs[i].type.dtype == VNRT_E8M0) continue;
    ++matrices;
    const char *name = specs[i].name;
    vnrt_tensor_type tq, tu_, ts;
    const void *dq = NULL, *du = NULL, *ds = NULL;
    TU_OK(ctx, vnrt_safetensors_find(fq, name, &tq, &dq, NULL));
    TU_OK(ctx, vnrt_safetensors_find(fu, name, &tu_, &du, NULL));
    TU_OK(ctx, vnrt_safetensors_find(fq, specs[specs[i].quant_pair].name, &ts, &ds, NULL));
    ck_assert_int_eq(tu_.dtype, VNRT_BF16);
    const int fp4 = tq.dtype == VNRT_E2M1;
    ck_assert_msg(fp4 == (strstr(name, "mlp.experts.") != NULL), "%s is %s", name,
                  vnrt_dtype_name(tq.dtype));
    const int64_t br = fp4 ? 1 : 128, bc = fp4 ? 32 : 128, ncode = fp4 ? 16 : 256;
    const double fmax_ = fp4 ? 6.0 : 448.0, floor_ = fp4 ? 6.0 * ldexp(1.0, -126) : 1e-4;
    const int32_t rk = tq.rank;
    const int64_t rows = tq.dims[rk - 2], cols = tq.dims[rk - 1];
    const int64_t sr = ts.dims[rk - 2], sc = ts.dims[rk - 1];
    const int64_t lead = vnrt_tensor_type_numel(&tq) / (rows * cols);
    const uint16_t *mu = du;
    const uint8_t *codes = dq, *scale = ds;
    for (int64_t m = 0; m < lead; ++m) {
      for (int64_t b = 0; b < sr * sc; ++b) {
        const int64_t r0 = b / sc * br, c0 = b % sc * bc;
        double amax = 0.0;
        for (int64_t rr = r0; rr < r0 + br && rr < rows; ++rr) {
          for (int64_t cc = c0; cc < c0 + bc && cc < cols; ++cc) {
            amax = fmax(amax, fabs(vnrt_bf16_to_f32(mu[(m * rows + rr) * cols + cc])));
          }
        }
        const int want = 127 + (int)ceil(log2(fmax(amax, floor_) / fmax_));
        /* ck_assert in these loops would send a location record per check (slow): test,
         * then abort with the message. */
        if (scale[m * sr * sc + b] != want) {
          ck_abort_msg("%s block %lld: scale %d, want %d", name, (long long)(m * sr * sc + b),
                       scale[m * sr * sc + b], want);
        }
        const double s = ldexp(1.0, want - 127);
        for (int64_t rr = r0; rr < r0 + br && rr < rows; ++rr) {
          for (int64_t cc = c0; cc < c0 + bc && cc < cols; ++cc) {
            const int64_t e = (m * rows + rr) * cols + cc;
            const double w = vnrt_bf16_to_f32(mu[e]) / s;
            const int64_t code = fp4 ? (codes[e / 2] >> (e % 2 ? 4 : 0)) & 15 : codes[e];
            const double got = dec_code(tq.dtype, codes, e), dist = fabs(got - w);
            for (int64_t k = 0; k < ncode; ++k) {
              const double other = fp4 ? dec_e2m1((uint8_t)k) : dec_e4m3((uint8_t)k);
              if (isnan(other) || other == got) continue;
              const double od = fabs(other - w);
              if (!(dist < od || (dist == od && (code & 1) == 0))) {
                ck_abort_msg("%s[%lld]: %g / scale is %g, coded %g (code %lld), but %g is nearer",
                             name, (long long)e, w * s, w, got, (long long)code, other);
              }
            }
          }
        }
      }
    }
  }
  ck_assert_int_eq(matrices, (int)(c->layers * 9)); /* 4 attention, 3 shared, 2 experts */
  vnrt_safetensors_close(fq);
  vnrt_safetensors_close(fu);
  free(specs);
}

START_TEST(quantized_weights_same_tokens_on_every_device_at_their_stored_size) {
  vnrt_context *ctx = tu_context();
  const ds_config cq = quant_config();
  ds_config cu = cq; /* the same model unquantized: the masters */
  char err[DS_ERR_SIZE];
  ck_assert_int_eq(ds_config_set_quant(&cu, "none", err, sizeof err), 0);
  tmpdir d = tmp_make();
  const char *pq = tmp_file(&d, "q.safetensors"), *pu = tmp_file(&d, "u.safetensors");
  generate(ctx, &cq, pq);
  generate(ctx, &cu, pu);
  check_quantized_matrices(ctx, &cq, pq, pu);

  /* A config that does not say weight_format takes the file's; one that says otherwise is
   * refused, naming the tensor. */
  ds_config auto_cfg = cu;
  auto_cfg.weight_format_given = 0;
  ds_model *m = open_model(ctx, &auto_cfg, pq);
  ck_assert_int_eq(ds_model_config(m)->weight_format[DS_WG_ATTENTION], DS_WF_FP8);
  ck_assert_int_eq(ds_model_config(m)->weight_format[DS_WG_SHARED], DS_WF_FP8);
  ck_assert_int_eq(ds_model_config(m)->weight_format[DS_WG_EXPERTS], DS_WF_FP4);
  ds_model_close(m);
  ck_assert_int_eq(open_status(ctx, &cu, pq, err), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_msg(strstr(err,
                       "'model.layers.0.self_attn.q_proj.weight' is e4m3[192, 128] but the "
                       "config needs bf16[192, 128]"),
                "%s", err);

  const int64_t V = cq.vocab, S = PROMPT + GEN - 1;
  const int32_t prompt[PROMPT] = {11, 42, 7, 42, 96};
  int32_t cpu_tokens[GEN];
  float *logits = malloc((size_t)(S * V) * sizeof(float));
  double *ref = malloc((size_t)(S * V) * sizeof(double));

  /* The weights a plan holds are the stored bytes: against the bf16 model, each quantized
   * matrix saves its bf16 size less its codes and scales (sizes written out here). */
  const int64_t C = cq.hidden, HD = cq.heads * cq.head_dim, D = cq.head_dim, F = cq.expert_ffn;
  const int64_t Fs = cq.shared * F, E = cq.experts, L = cq.layers;
  const uint64_t attn = stored_bytes(DS_WF_FP8, 1, HD, C) + 2 * stored_bytes(DS_WF_FP8, 1, D, C) +
                        stored_bytes(DS_WF_FP8, 1, C, HD);
  const uint64_t shared = 2 * stored_bytes(DS_WF_FP8, 1, Fs, C) + stored_bytes(DS_WF_FP8, 1, C, Fs);
  const uint64_t experts = stored_bytes(DS_WF_FP4, E, 2 * F, C) + stored_bytes(DS_WF_FP4, E, C, F);
  const uint64_t as_bf16 = 2u * (uint64_t)(HD * C * 2 + D * C * 2 + 3 * Fs * C + 3 * E * F * C);
  vnrt_plan_info unq, qi;
  ds_model *mu = open_model(ctx, &cu, pu);
  DS_OK(mu, ds_model_compile(mu, tu_device(ctx, 0), PROMPT, NULL));
  DS_OK(mu, ds_model_plan_info(mu, &unq, NULL));
  ds_model_close(mu);

  /* The reference's own greedy run (so that a wrong device cannot move the data it is
   * checked on): its tokens, logits, margins and variety. */
  int32_t seq[PROMPT + GEN];
  memcpy(seq, prompt, sizeof prompt);
  double min_margin = INFINITY;
  for (int i = 0; i <= GEN; ++i) {
    ref_model r;
    ref_open(&r, ctx, pq);
    ref_forward(&r, &cq, seq, i < GEN ? PROMPT + i : S, ref);
    min_margin = r.min_route_margin;
    ref_free(&r);
    if (i < GEN) seq[PROMPT + i] = argmax_d(ref + (PROMPT + i - 1) * V, V);
  }
  ck_assert_msg(min_margin > 5e-3, "routing near a tie (%g): pick another seed", min_margin);
  int distinct = 0;
  for (int i = 0; i < GEN; ++i) {
    const int64_t p = PROMPT - 1 + i;
    ck_assert_msg(top_gap(ref + p * V, V) > 2e-2, "argmax near a tie at %lld", (long long)p);
    int seen = 0;
    for (int j = 0; j < i; ++j) seen |= seq[PROMPT + j] == seq[PROMPT + i];
    distinct += !seen;
  }
  ck_assert_msg(distinct >= 3, "greedy output is degenerate (%d distinct tokens)", distinct);

  m = open_model(ctx, &cq, pq);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    DS_OK(m, ds_model_compile(m, dev, PROMPT, NULL));
    DS_OK(m, ds_model_plan_info(m, &qi, NULL));
    report("%s: weights %llu bytes quantized, %llu bf16", tu_device_spec(dev),
           (unsigned long long)qi.weight_bytes, (unsigned long long)unq.weight_bytes);
    ck_assert_uint_eq(qi.weight_bytes, unq.weight_bytes - (uint64_t)L * as_bf16 +
                                           (uint64_t)L * (attn + shared + experts));
    ck_assert_uint_lt(qi.weight_bytes, unq.weight_bytes);
    DS_OK(m, ds_model_prefill(m, prompt, logits));
    int32_t tokens[GEN];
    tokens[0] = ds_argmax(logits + (PROMPT - 1) * V, V);
    for (int i = 1; i < GEN; ++i) {
      DS_OK(m, ds_model_decode(m, tokens[i - 1], logits + (PROMPT + i - 1) * V));
      tokens[i] = ds_argmax(logits + (PROMPT + i - 1) * V, V);
    }
    if (di == 0) memcpy(cpu_tokens, tokens, sizeof tokens);
    for (int i = 0; i < GEN; ++i) {
      ck_assert_msg(tokens[i] == cpu_tokens[i], "quantized: %s: token %d is %d, cpu says %d",
                    tu_device_spec(dev), i, tokens[i], cpu_tokens[i]);
      ck_assert_msg(tokens[i] == seq[PROMPT + i],
                    "quantized: %s: token %d is %d, the reference says %d", tu_device_spec(dev), i,
                    tokens[i], seq[PROMPT + i]);
    }
    double e = nmse_f(logits, ref, S * V);
    report("quantized: %s vs reference: NMSE %g (smallest routing margin %g)", tu_device_spec(dev),
           e, min_margin);
    ck_assert_msg(e < TOL_QUANT, "quantized: %s vs reference: NMSE %g", tu_device_spec(dev), e);
  }
  ds_model_close(m);
  free(logits), free(ref);
  tmp_remove(&d);
  vnrt_context_destroy(ctx);
}
END_TEST

static void expect_bad_config(const char *text, const char *want) {
  ds_config c;
  char err[DS_ERR_SIZE] = "";
  ck_assert_msg(ds_config_parse(text, strlen(text), "t.json", &c, err, sizeof err) != 0,
                "accepted: %s", text);
  ck_assert_msg(strstr(err, want), "error '%s' lacks '%s'", err, want);
}

/* The smallest valid config text, with room for one more key. */
#define MINIMAL                                                                        \
  "{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"vocab_size\": 16,\n"               \
  " \"num_attention_heads\": 1, \"head_dim\": 4, \"qk_rope_head_dim\": 2,\n"           \
  " \"sliding_window\": 0, \"max_position_embeddings\": 8, \"n_routed_experts\": 4,\n" \
  " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 4"

START_TEST(configs_parse_strictly) {
  ds_config c;
  char err[DS_ERR_SIZE];
  ck_assert_msg(ds_config_load(DS_CONFIG_DIR "/tiny.json", &c, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(c.hidden, 256);
  ck_assert_int_eq(c.layers, 4);
  ck_assert_int_eq(c.vocab, 4096);
  ck_assert_int_eq(c.experts, 16);
  ck_assert_int_eq(c.top_k, 4);
  ck_assert_int_eq(c.hc_mult, 4);
  ck_assert_int_eq(c.hc_iters, 20);
  ck_assert_int_eq(c.n_engram, 2);
  ck_assert_int_eq(c.engram_heads_total, 16); /* 2- and 3-grams x 8 heads */
  ck_assert_int_eq(c.weight_dtype, VNRT_BF16);
  /* Table sizes: distinct primes >= engram_vocab_size across both layers; odd multipliers. */
  for (int32_t li = 0; li < c.n_engram; ++li) {
    int64_t sum = 0;
    for (int64_t h = 0; h < c.engram_heads_total; ++h) {
      int64_t p = c.engram_primes[li][h];
      ck_assert_int_ge(p, c.engram_rows);
      for (int64_t q = 2; q * q <= p; ++q) ck_assert_int_ne(p % q, 0);
      for (int32_t lj = 0; lj <= li; ++lj) {
        for (int64_t g = 0; g < (lj == li ? h : c.engram_heads_total); ++g) {
          ck_assert_int_ne(c.engram_primes[lj][g], p);
        }
      }
      sum += p;
    }
    ck_assert_int_eq(sum, c.engram_table_rows[li]);
    for (int64_t j = 0; j < c.ngram; ++j) ck_assert_int_eq(c.engram_mult[li][j] & 1, 1);
  }
  ck_assert_msg(ds_config_load(DS_CONFIG_DIR "/bench.json", &c, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(c.hidden, 1024);
  ck_assert_int_eq(c.layers, 8);
  ck_assert_int_eq(c.experts, 64);
  ds_config tiny;
  ck_assert_int_eq(ds_config_load(DS_CONFIG_DIR "/tiny.json", &tiny, err, sizeof err), 0);
  double ratio = (double)ds_weights_bytes(&c) / (double)ds_weights_bytes(&tiny);
  ck_assert_msg(ratio > 6 && ratio < 16, "bench is %.1fx tiny", ratio);

  const char *ok = MINIMAL "}";
  ck_assert_msg(ds_config_parse(ok, strlen(ok), "t.json", &c, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(c.n_engram, 0);
  ck_assert_double_eq(c.route_scale, 1.5); /* defaults */
  ck_assert_int_eq(c.score, DS_SCORE_SQRT_SOFTPLUS);

  expect_bad_config(MINIMAL ",}", "t.json:4:55: trailing ','");
  expect_bad_config(MINIMAL ", \"hiden_size\": 3}", "unknown key \"hiden_size\"");
  expect_bad_config(MINIMAL ", \"hidden_size\": 3}", "key \"hidden_size\" is given twice");
  expect_bad_config(MINIMAL ", \"rope_theta\": \"1e4\"}", "\"rope_theta\" must be a number");
  expect_bad_config(MINIMAL ", \"hc_mult\": 2.5}", "\"hc_mult\" must be an integer");
  expect_bad_config(MINIMAL ", \"scoring_func\": \"relu\"}", "\"scoring_func\" is \"relu\"");
  expect_bad_config(MINIMAL ", \"weight_dtype\": \"fp8\"}", "\"weight_dtype\" is \"fp8\"");
  expect_bad_config(MINIMAL ", \"engram_layer_ids\": [0, 2]}", "\"engram_layer_ids\" = 2");
  expect_bad_config(MINIMAL ", \"engram_layer_ids\": [1, 1]}", "lists layer 1 twice");
  expect_bad_config(MINIMAL ", \"rms_norm_eps\": 1e999}", "out of range");
  expect_bad_config(MINIMAL ", \"hc_mult\": 01}", "expected ',' or '}'");
  expect_bad_config(MINIMAL "} x", "unexpected text after the config object");
  expect_bad_config(MINIMAL, "expected ',' or '}'");
  expect_bad_config("[1]", "expected '{'");
  expect_bad_config("", "t.json:1:1: expected '{'");
  expect_bad_config("{\"hidden_size\": 8}", "missing required key \"num_hidden_layers\"");
  expect_bad_config(
      "{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"vocab_size\": 16,"
      " \"num_attention_heads\": 1, \"head_dim\": 4, \"qk_rope_head_dim\": 2,"
      " \"sliding_window\": 0, \"max_position_embeddings\": 8,"
      " \"n_routed_experts\": 4, \"num_experts_per_tok\": 5,"
      " \"moe_intermediate_size\": 4}",
      "\"num_experts_per_tok\" = 5 must be in [1, 4]");
  expect_bad_config(
      "{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"vocab_size\": 16,"
      " \"num_attention_heads\": 1, \"head_dim\": 4, \"qk_rope_head_dim\": 6,"
      " \"sliding_window\": 0, \"max_position_embeddings\": 8,"
      " \"n_routed_experts\": 4, \"num_experts_per_tok\": 2,"
      " \"moe_intermediate_size\": 4}",
      "\"qk_rope_head_dim\" = 6 must be in [0, 4]");
  /* weight_format: groups left out stay unquantized; --quant words set all three. */
  const char *wf = MINIMAL ", \"weight_format\": {\"attention\": \"fp8\", \"experts\": \"fp4\"}}";
  ck_assert_msg(ds_config_parse(wf, strlen(wf), "t.json", &c, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(c.weight_format_given, 1);
  ck_assert_int_eq(c.weight_format[DS_WG_ATTENTION], DS_WF_FP8);
  ck_assert_int_eq(c.weight_format[DS_WG_SHARED], DS_WF_NONE);
  ck_assert_int_eq(c.weight_format[DS_WG_EXPERTS], DS_WF_FP4);
  ck_assert_str_eq(ds_config_quant_str(&c, err, sizeof err), "fp8 attention, fp4 experts");
  ck_assert_int_eq(ds_config_set_quant(&c, "fp4", err, sizeof err), 0);
  ck_assert_int_eq(c.weight_format[DS_WG_SHARED], DS_WF_FP4);
  ck_assert_int_ne(ds_config_set_quant(&c, "int8", err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "quantization \"int8\": expected fp8fp4"));
  ck_assert_int_eq(ds_config_load(DS_CONFIG_DIR "/tiny.json", &c, err, sizeof err), 0);
  ck_assert_int_eq(c.weight_format_given, 0);
  ck_assert_str_eq(ds_config_quant_str(&c, err, sizeof err), "none");
  c.expert_ffn = 15; /* FP4 packs pairs of inputs */
  c.weight_format[DS_WG_EXPERTS] = DS_WF_FP4;
  ck_assert_int_ne(ds_config_finish(&c, err, sizeof err), 0);
  ck_assert_msg(strstr(err, "\"experts\" = \"fp4\" packs two codes per byte, but a row has 15"),
                "%s", err);
  expect_bad_config(MINIMAL ", \"weight_format\": {\"attention\": \"fp6\"}}",
                    "\"weight_format\".\"attention\" is \"fp6\": expected \"fp8\", \"fp4\"");
  expect_bad_config(MINIMAL ", \"weight_format\": {\"router\": \"fp8\"}}",
                    "unknown group \"router\"");
  expect_bad_config(MINIMAL ", \"weight_format\": {\"shared\": \"fp8\", \"shared\": \"fp8\"}}",
                    "gives \"shared\" twice");
  expect_bad_config(MINIMAL ", \"weight_format\": \"fp8\"}", "\"weight_format\" must be an object");
  ck_assert_int_ne(ds_config_load(DS_CONFIG_DIR "/no-such.json", &c, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "no-such.json: cannot open"));
}
END_TEST

/* The roofline's bytes per decode step, from the config's sizes written out here (not from
 * the tensor list the code walks), for both configs and with the window clamping the KV
 * reads. */
static void check_decode_bytes(const ds_config *c, int64_t kv_len) {
  const double wd = (double)vnrt_dtype_size(c->weight_dtype), f4 = 4.0;
  const double C = (double)c->hidden, L = (double)c->layers, V = (double)c->vocab;
  const double Hq = (double)c->heads, D = (double)c->head_dim, n = (double)c->hc_mult;
  const double E = (double)c->experts, k = (double)c->top_k, F = (double)c->expert_ffn;
  const double H = (double)c->engram_heads_total, Dh = (double)c->engram_dim;
  const double hash = (double)c->hash_layers, P = (double)((c->conv_kernel - 1) * c->ngram);
  const double visible = (double)(c->window > 0 && kv_len > c->window ? c->window : kv_len);
  const double attention = L * ((2 * Hq * D * C + 2 * D * C) * wd + Hq * f4);
  const double kv = L * 2 * visible * D * f4;
  const double routed = L * k * 3 * F * C * wd;
  const double shared = L * 3 * (double)c->shared * F * C * wd;
  const double router = L * E * C * f4 + hash * k * f4 + (L - hash) * E * f4;
  const double mhc =
      L * 2 * ((n + 2) * n * n * C + (n + 2) * n + 3) * f4 + (n * n * C + n + 1) * f4;
  const double norms = (2 * L + 1) * C * f4;
  const double embed_head = C * wd + V * C * wd;
  const double engram =
      (double)c->n_engram * (H * Dh * wd + (C + n * C) * H * Dh * wd + 3 * n * C * f4 +
                             n * C * (double)c->conv_kernel * f4 + H * f4 + P * n * C * f4);
  ds_decode_bytes b;
  ck_assert_int_eq(ds_decode_bytes_at(c, kv_len, &b), 0);
  const struct {
    const char *what;
    uint64_t got;
    double want;
  } parts[] = {{"attention", b.attention, attention},
               {"kv", b.kv_cache, kv},
               {"routed", b.routed, routed},
               {"shared", b.shared, shared},
               {"router", b.router, router},
               {"mhc", b.mhc, mhc},
               {"norms", b.norms, norms},
               {"embed_head", b.embed_head, embed_head},
               {"engram", b.engram, engram}};
  double total = 0.0;
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; ++i) {
    ck_assert_msg((double)parts[i].got == parts[i].want, "kv_len %lld: %s %llu bytes, want %.0f",
                  (long long)kv_len, parts[i].what, (unsigned long long)parts[i].got,
                  parts[i].want);
    total += parts[i].want;
  }
  ck_assert_msg((double)b.total == total, "total %llu, want %.0f", (unsigned long long)b.total,
                total);
}

START_TEST(roofline_bytes_per_decode_step_and_triad) {
  ds_config c;
  char err[DS_ERR_SIZE];
  ck_assert_msg(ds_config_load(DS_CONFIG_DIR "/bench.json", &c, err, sizeof err) == 0, "%s", err);
  check_decode_bytes(&c, 5);
  check_decode_bytes(&c, 300); /* past the window of 128 */
  ds_decode_bytes b5, b300;
  ck_assert_int_eq(ds_decode_bytes_at(&c, 5, &b5), 0);
  ck_assert_int_eq(ds_decode_bytes_at(&c, 300, &b300), 0);
  ck_assert_uint_eq(b300.kv_cache, 128u * 2u * 128u * 4u * 8u);
  ck_assert_uint_eq(b300.total - b5.total, b300.kv_cache - b5.kv_cache);
  ck_assert_msg(b5.total > 100000000u && b5.total < 102000000u, "bench step reads %llu bytes",
                (unsigned long long)b5.total);
  ck_assert_msg(ds_config_load(DS_CONFIG_DIR "/tiny.json", &c, err, sizeof err) == 0, "%s", err);
  check_decode_bytes(&c, 1);
  check_decode_bytes(&c, 200);

  /* The triad streams its three arrays and counts them as STREAM does. */
  ds_triad *t = NULL;
  ck_assert_msg(ds_triad_create(2, 3u << 20, &t, err, sizeof err) == 0, "%s", err);
  ck_assert_uint_eq(ds_triad_bytes(t), 3u << 20);
  const double s = ds_triad_pass(t);
  ck_assert_msg(s > 0.0 && s < 10.0, "a triad pass took %g s", s);
  ds_triad_destroy(t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("deepseek");
  TCase *tc = tcase_create("deepseek");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, configs_parse_strictly);
  tcase_add_test(tc, roofline_bytes_per_decode_step_and_triad);
  tcase_add_test(tc, weights_are_deterministic_and_a_bad_tensor_is_named);
  tcase_add_test(tc, greedy_tokens_and_logits_agree_with_the_reference_on_every_device);
  tcase_add_test(tc, decode_step_by_step_equals_prefill_of_the_same_tokens);
  tcase_add_test(tc, engram_stores_and_streamed_weights_give_the_same_logits);
  tcase_add_test(tc, quantized_weights_same_tokens_on_every_device_at_their_stored_size);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
