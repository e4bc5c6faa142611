/* Conformance: rope, attention and the Engram ops on every device against double-precision
 * values computed here from docs/ops.md, including the usual porting traps.
 *
 * Devices: every device the registry lists (vnrt_device_count / vnrt_device_get), plugins'
 * included when $VNRT_PLUGIN_PATH is set; $VNRT_TEST_DEVICES narrows the list (e.g.
 * "template:0") and $VNRT_TEST_FALLBACK=1 lets nodes a device cannot run go to the CPU. The
 * *_template meson tests run this file against the template plugin that way; to run it against
 * another plugin: VNRT_PLUGIN_PATH=DIR VNRT_TEST_DEVICES=NAME:0 VNRT_TEST_FALLBACK=1 <this test>
 * (tests/conformance/meson.build). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define NMSE_ROPE 1e-7
#define NMSE_ENGRAM 1e-7
#define NMSE_ATTN 1e-6

/* Runs graph on device i. A device other than the CPU may decline the op (it then says
 * VNRT_ERROR_UNSUPPORTED, never a wrong answer): that run is skipped and 0 returned. The CPU
 * must always run. */
static int run_dev(vnrt_context *ctx, vnrt_graph *g, int32_t i, const tu_tensor *in, int32_t n_in,
                   tu_tensor *out, int32_t n_out) {
  vnrt_device *dev = tu_device(ctx, i);
  const char *spec = tu_device_spec(dev);
  vnrt_status s = tu_run(ctx, g, dev, in, n_in, out, n_out);
  if (s == VNRT_ERROR_UNSUPPORTED && strncmp(spec, "cpu", 3) != 0) return 0;
  ck_assert_msg(s == VNRT_OK, "run on %s: %s: %s", spec, vnrt_status_string(s),
                vnrt_context_last_error(ctx));
  return 1;
}

static void free_all(tu_tensor *t, int32_t n) {
  for (int32_t i = 0; i < n; ++i) tu_tensor_free(&t[i]);
}

static tu_tensor new_t(vnrt_dtype dt, int64_t d0, int64_t d1, int64_t d2) {
  int64_t dims[3] = {d0, d1, d2};
  int32_t rank = d2 > 0 ? 3 : (d1 > 0 ? 2 : 1);
  return tu_tensor_new(dt, rank, dims);
}

static void set_i32(tu_tensor *t, const int32_t *v, int64_t n) {
  ck_assert_int_eq(tu_numel(t), n);
  memcpy(t->data, v, (size_t)n * sizeof *v);
}

/* ---- rope ------------------------------------------------------------------------------ */

static void rope_expected(const tu_tensor *x, const int32_t *pos, int64_t dims, double theta,
                          int interleaved, double *out) {
  const int64_t T = x->type.dims[0], H = x->type.dims[1], D = x->type.dims[2];
  const int64_t first = D - dims;
  for (int64_t i = 0; i < T * H * D; ++i) out[i] = tu_get(x, i);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      double *row = out + (t * H + h) * D + first;
      for (int64_t i = 0; i < dims / 2; ++i) {
        const double ang = pos[t] * pow(theta, -2.0 * (double)i / (double)dims);
        const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + dims / 2;
        const double x1 = row[a], x2 = row[b];
        row[a] = x1 * cos(ang) - x2 * sin(ang);
        row[b] = x1 * sin(ang) + x2 * cos(ang);
      }
    }
  }
}

/* dims <= 0: leave the attribute out (= D). */
static void check_rope(int64_t T, int64_t H, int64_t D, int64_t dims, double theta, int interleaved,
                       uint64_t seed) {
  vnrt_context *ctx = tu_conformance_context(0);
  static const int32_t pos_all[] = {0, 1, 7, 100, 3, 4096, 17, 2};
  ck_assert_int_le(T, 8);
  tu_tensor in[2] = {new_t(VNRT_F32, T, H, D), new_t(VNRT_I32, T, 0, 0)};
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  set_i32(&in[1], pos_all, T);
  vnrt_attr attrs[3] = {tu_attr_f("theta", theta), tu_attr_i("interleaved", interleaved),
                        tu_attr_i("dims", dims)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ROPE, in, 2, attrs, dims > 0 ? 3 : 2, 1);
  const int64_t n = T * H * D;
  double *exp_v = tu_dalloc(n);
  rope_expected(&in[0], pos_all, dims > 0 ? dims : D, theta, interleaved, exp_v);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    tu_tensor out[1];
    if (!run_dev(ctx, g, i, in, 2, out, 1)) continue;
    ck_assert_int_eq(tu_numel(&out[0]), n);
    double e = tu_nmse(&out[0], exp_v, n);
    ck_assert_msg(e <= NMSE_ROPE, "rope on %s: nmse %g", tu_device_spec(tu_device(ctx, i)), e);
    /* Channels before the rotated slice pass through bit-exactly. */
    const int64_t first = D - (dims > 0 ? dims : D);
    for (int64_t r = 0; r < T * H; ++r) {
      for (int64_t c = 0; c < first; ++c) {
        ck_assert_double_eq(tu_get(&out[0], r * D + c), exp_v[r * D + c]);
      }
    }
    free_all(out, 1);
  }
  free(exp_v);
  vnrt_graph_destroy(g);
  free_all(in, 2);
  vnrt_context_destroy(ctx);
}

START_TEST(rope_interleaved_pairs_adjacent_channels) { check_rope(5, 3, 8, 0, 10000.0, 1, 11); }
END_TEST

START_TEST(rope_half_split_pairs_i_with_i_plus_half) { check_rope(6, 2, 12, 0, 500.0, 0, 12); }
END_TEST

START_TEST(rope_partial_dims_rotates_the_last_channels) {
  check_rope(4, 3, 10, 4, 10000.0, 1, 13);
  check_rope(4, 3, 10, 6, 10000.0, 0, 14);
}
END_TEST

START_TEST(rope_interleaved_and_half_split_differ) {
  /* Guards the test itself: the two layouts must give different answers on these inputs. */
  tu_tensor x = new_t(VNRT_F32, 2, 1, 8);
  tu_fill_uniform(&x, 15, -1.0f, 1.0f);
  const int32_t pos[2] = {3, 9};
  double a[16], b[16], d = 0.0;
  rope_expected(&x, pos, 8, 10000.0, 1, a);
  rope_expected(&x, pos, 8, 10000.0, 0, b);
  for (int i = 0; i < 16; ++i) d += fabs(a[i] - b[i]);
  ck_assert_double_gt(d, 0.1);
  tu_tensor_free(&x);
}
END_TEST

/* ---- attention ------------------------------------------------------------------------- */

typedef struct attn_case {
  int64_t T, S, Hq, Hkv, D, Dv;
  int causal;
  int64_t window;
  double scale; /* <= 0: attribute absent (1/sqrt(D)) */
  int sinks;
  vnrt_dtype qd, kd, vd; /* 0: f32 */
} attn_case;

/* Writes the expected output; returns how many (t, h) rows see no key at all. */
static int attn_expected(const attn_case *c, const tu_tensor *q, const tu_tensor *k,
                         const tu_tensor *v, const tu_tensor *sinks, double *out) {
  const double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->D);
  const int64_t group = c->Hq / c->Hkv;
  double *sc = tu_dalloc(c->S);
  int empty = 0;
  for (int64_t t = 0; t < c->T; ++t) {
    const int64_t qpos = c->S - c->T + t;
    for (int64_t h = 0; h < c->Hq; ++h) {
      const int64_t kvh = h / group;
      double mx = -INFINITY;
      int seen = 0;
      for (int64_t s = 0; s < c->S; ++s) {
        int vis = 1;
        if (c->causal && s > qpos) vis = 0;
        if (c->window > 0 && s <= qpos - c->window) vis = 0;
        if (!vis) {
          sc[s] = NAN;
          continue;
        }
        double dot = 0.0;
        for (int64_t d = 0; d < c->D; ++d) {
          dot += tu_get(q, (t * c->Hq + h) * c->D + d) * tu_get(k, (s * c->Hkv + kvh) * c->D + d);
        }
        sc[s] = dot * scale;
        if (sc[s] > mx) mx = sc[s];
        seen = 1;
      }
      double *o = out + (t * c->Hq + h) * c->Dv;
      for (int64_t d = 0; d < c->Dv; ++d) o[d] = 0.0;
      if (!seen) {
        ++empty;
        continue;
      }
      double denom = 0.0;
      if (sinks) {
        const double sk = tu_get(sinks, h);
        if (sk > mx) mx = sk;
        denom += exp(sk - mx);
      }
      for (int64_t s = 0; s < c->S; ++s) {
        if (!isnan(sc[s])) denom += exp(sc[s] - mx);
      }
      for (int64_t s = 0; s < c->S; ++s) {
        if (isnan(sc[s])) continue;
        const double p = exp(sc[s] - mx) / denom;
        for (int64_t d = 0; d < c->Dv; ++d) o[d] += p * tu_get(v, (s * c->Hkv + kvh) * c->Dv + d);
      }
    }
  }
  free(sc);
  return empty;
}

/* Runs the case on every device; returns the number of fully masked rows (for the caller). */
static int check_attention(const attn_case *c, uint64_t seed) {
  vnrt_context *ctx = tu_conformance_context(0);
  const vnrt_dtype qd = c->qd ? c->qd : VNRT_F32, kd = c->kd ? c->kd : VNRT_F32;
  const vnrt_dtype vd = c->vd ? c->vd : VNRT_F32;
  tu_tensor in[4] = {new_t(qd, c->T, c->Hq, c->D), new_t(kd, c->S, c->Hkv, c->D),
                     new_t(vd, c->S, c->Hkv, c->Dv), new_t(VNRT_F32, c->Hq, 0, 0)};
  tu_fill_uniform(&in[0], seed, -2.0f, 2.0f);
  tu_fill_uniform(&in[1], seed + 1, -2.0f, 2.0f);
  tu_fill_uniform(&in[2], seed + 2, -1.0f, 1.0f);
  tu_fill_uniform(&in[3], seed + 3, -1.0f, 2.0f);
  const int32_t n_in = c->sinks ? 4 : 3;
  vnrt_attr attrs[3] = {tu_attr_i("causal", c->causal), tu_attr_i("window", c->window),
                        tu_attr_f("scale", c->scale)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ATTENTION, in, n_in, attrs, c->scale > 0 ? 3 : 2, 1);
  const int64_t n = c->T * c->Hq * c->Dv;
  double *exp_v = tu_dalloc(n);
  const int empty = attn_expected(c, &in[0], &in[1], &in[2], c->sinks ? &in[3] : NULL, exp_v);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    tu_tensor out[1];
    if (!run_dev(ctx, g, i, in, n_in, out, 1)) continue;
    const char *spec = tu_device_spec(tu_device(ctx, i));
    ck_assert_int_eq(out[0].type.dtype, qd); /* the result has q's dtype */
    ck_assert_int_eq(out[0].type.rank, 3);
    ck_assert_int_eq(out[0].type.dims[0], c->T);
    ck_assert_int_eq(out[0].type.dims[1], c->Hq);
    ck_assert_int_eq(out[0].type.dims[2], c->Dv);
    double e = tu_nmse(&out[0], exp_v, n);
    ck_assert_msg(e <= NMSE_ATTN, "attention on %s: nmse %g", spec, e);
    for (int64_t r = 0; r < c->T * c->Hq; ++r) {
      int zero_row = 1;
      for (int64_t d = 0; d < c->Dv; ++d) zero_row &= exp_v[r * c->Dv + d] == 0.0;
      if (!zero_row) continue;
      for (int64_t d = 0; d < c->Dv; ++d) {
        ck_assert_msg(tu_get(&out[0], r * c->Dv + d) == 0.0,
                      "attention on %s: a query seeing no key must give exactly 0", spec);
      }
    }
    free_all(out, 1);
  }
  free(exp_v);
  vnrt_graph_destroy(g);
  free_all(in, 4);
  vnrt_context_destroy(ctx);
  return empty;
}

START_TEST(attention_gqa_head_mapping) {
  const attn_case c = {.T = 6, .S = 6, .Hq = 4, .Hkv = 2, .D = 8, .Dv = 8, .causal = 1};
  check_attention(&c, 21);
  const attn_case nc = {.T = 6, .S = 6, .Hq = 4, .Hkv = 2, .D = 8, .Dv = 8, .causal = 0};
  check_attention(&nc, 22);
}
END_TEST

START_TEST(attention_mqa_single_kv_head) {
  const attn_case c = {.T = 5, .S = 5, .Hq = 3, .Hkv = 1, .D = 6, .Dv = 4, .causal = 1};
  check_attention(&c, 23);
}
END_TEST

START_TEST(attention_decode_sees_whole_cache) {
  /* T = 1: the single query sits at the last position S-1 and sees every key. */
  const attn_case c = {.T = 1, .S = 9, .Hq = 4, .Hkv = 2, .D = 8, .Dv = 8, .causal = 1};
  check_attention(&c, 24);
}
END_TEST

START_TEST(attention_causal_offset_when_t_less_than_s) {
  const attn_case c = {.T = 3, .S = 7, .Hq = 2, .Hkv = 2, .D = 4, .Dv = 4, .causal = 1};
  check_attention(&c, 25);
}
END_TEST

START_TEST(attention_non_causal_sees_all_keys) {
  const attn_case c = {.T = 3, .S = 7, .Hq = 4, .Hkv = 2, .D = 4, .Dv = 5, .causal = 0};
  check_attention(&c, 26);
}
END_TEST

START_TEST(attention_sliding_window) {
  const attn_case c = {
      .T = 8, .S = 8, .Hq = 2, .Hkv = 1, .D = 4, .Dv = 4, .causal = 1, .window = 3};
  check_attention(&c, 27);
  const attn_case dec = {
      .T = 2, .S = 10, .Hq = 4, .Hkv = 2, .D = 8, .Dv = 6, .causal = 1, .window = 4};
  check_attention(&dec, 28);
}
END_TEST

START_TEST(attention_sinks_take_probability_mass) {
  const attn_case c = {.T = 4, .S = 6, .Hq = 4, .Hkv = 2, .D = 8, .Dv = 8, .causal = 1, .sinks = 1};
  check_attention(&c, 29);
  const attn_case w = {
      .T = 5, .S = 5, .Hq = 2, .Hkv = 2, .D = 4, .Dv = 3, .causal = 1, .window = 2, .sinks = 1};
  check_attention(&w, 30);
}
END_TEST

START_TEST(attention_fully_masked_query_yields_zero) {
  /* T > S puts the first queries before position 0: they see no key, sinks or not. */
  const attn_case c = {.T = 4, .S = 2, .Hq = 2, .Hkv = 1, .D = 4, .Dv = 4, .causal = 1};
  ck_assert_int_eq(check_attention(&c, 31), 2 * 2);
  const attn_case s = {.T = 3, .S = 2, .Hq = 2, .Hkv = 2, .D = 4, .Dv = 3, .causal = 1, .sinks = 1};
  ck_assert_int_eq(check_attention(&s, 32), 1 * 2);
}
END_TEST

START_TEST(attention_odd_sizes_and_explicit_scale) {
  const attn_case c = {
      .T = 5, .S = 9, .Hq = 6, .Hkv = 3, .D = 7, .Dv = 3, .causal = 1, .scale = 0.3};
  check_attention(&c, 33);
  /* Dv beyond one accumulation block of the reference kernel. */
  const attn_case wide = {
      .T = 3, .S = 5, .Hq = 3, .Hkv = 1, .D = 5, .Dv = 133, .causal = 0, .scale = 0.7};
  check_attention(&wide, 34);
}
END_TEST

START_TEST(attention_mixed_half_precision_inputs) {
  /* Inputs are widened exactly, so the double reference uses the stored values; only the f16
   * result's rounding (about 1e-7 NMSE) separates the two. */
  const attn_case c = {.T = 4,
                       .S = 6,
                       .Hq = 4,
                       .Hkv = 2,
                       .D = 8,
                       .Dv = 8,
                       .causal = 1,
                       .sinks = 1,
                       .qd = VNRT_F16,
                       .kd = VNRT_BF16,
                       .vd = VNRT_F32};
  check_attention(&c, 35);
}
END_TEST

/* ---- ngram_hash ------------------------------------------------------------------------ */

/* a*b mod 2^64 from 32-bit halves: an independent route to the wrapping product. */
static uint64_t mul_wrap(uint64_t a, uint64_t b) {
  const uint64_t alo = a & 0xffffffffu, ahi = a >> 32, blo = b & 0xffffffffu, bhi = b >> 32;
  return alo * blo + ((alo * bhi + ahi * blo) << 32);
}

static int64_t as_i64(uint64_t u) {
  int64_t s;
  memcpy(&s, &u, sizeof s);
  return s;
}

START_TEST(ngram_hash_wrapping_floor_modulo_with_history) {
  enum { T = 6, N = 3, K = 3, COLS = (N - 1) * K };
  /* Multipliers large enough that every product wraps; two of them negative as int64. */
  const int64_t mult[N] = {as_i64(0x9E3779B97F4A7C15ull), 6364136223846793005ll,
                           as_i64(0xC2B2AE3D27D4EB4Full)};
  const int64_t primes[COLS] = {1000003, 999983, 2147483647, 646403, 7, 65537};
  const int32_t ids[T] = {5, 129279, 2, -7, 100000, 31};
  const int32_t hist[N - 1] = {2, 77};
  /* Computed outside C (Python's arbitrary-precision ints and floor %). */
  static const int32_t want[T][COLS] = {
      {956480, 844735, 65621853, 106694, 3, 2498},
      {473441, 806963, 1687091215, 57060, 6, 23380},
      {591529, 145643, 1112139561, 71802, 2, 53978},
      {204103, 826158, 1468853413, 496745, 5, 55304},
      {726271, 242927, 1211760920, 523867, 5, 22350},
      {741177, 908218, 1110397895, 44450, 5, 5556},
  };
  /* Re-derive the table here too, and make sure the traps are really exercised. */
  int negative_mixes = 0;
  for (int t = 0; t < T; ++t) {
    for (int n = 2; n <= N; ++n) {
      uint64_t mix = 0;
      for (int j = 0; j < n; ++j) {
        const int32_t tok = t - j >= 0 ? ids[t - j] : hist[N - 1 + t - j];
        mix ^= mul_wrap((uint64_t)(int64_t)tok, (uint64_t)mult[j]);
      }
      const int64_t m = as_i64(mix);
      negative_mixes += m < 0;
      for (int h = 0; h < K; ++h) {
        const int64_t p = primes[(n - 2) * K + h];
        ck_assert_int_eq(((m % p) + p) % p, want[t][(n - 2) * K + h]);
      }
    }
  }
  ck_assert_int_ge(negative_mixes, 3);

  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[2] = {new_t(VNRT_I32, T, 0, 0), new_t(VNRT_I32, N - 1, 0, 0)};
  set_i32(&in[0], ids, T);
  set_i32(&in[1], hist, N - 1);
  vnrt_attr attrs[2] = {tu_attr_ints("mult", mult, N), tu_attr_ints("primes", primes, COLS)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_NGRAM_HASH, in, 2, attrs, 2, 1);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    tu_tensor out[1];
    if (!run_dev(ctx, g, i, in, 2, out, 1)) continue;
    ck_assert_int_eq(out[0].type.dtype, VNRT_I32);
    ck_assert_int_eq(out[0].type.rank, 2);
    ck_assert_int_eq(out[0].type.dims[0], T);
    ck_assert_int_eq(out[0].type.dims[1], COLS);
    const int32_t *got = (const int32_t *)out[0].data;
    for (int t = 0; t < T; ++t) {
      for (int c = 0; c < COLS; ++c) {
        ck_assert_msg(got[t * COLS + c] == want[t][c],
                      "ngram_hash on %s: idx[%d, %d] = %d, want %d",
                      tu_device_spec(tu_device(ctx, i)), t, c, got[t * COLS + c], want[t][c]);
      }
    }
    free_all(out, 1);
  }
  vnrt_graph_destroy(g);
  free_all(in, 2);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(ngram_hash_history_changes_only_early_tokens) {
  /* The same ids with a different history: rows t >= N-1 agree, earlier rows must differ. */
  enum { T = 5, N = 3, K = 2, COLS = (N - 1) * K };
  const int64_t mult[N] = {as_i64(0xFFFFFFFFFFFFFFC5ull), 0x5851F42D4C957F2Dll,
                           0x14057B7EF767814Fll};
  const int64_t primes[COLS] = {1000003, 999983, 1000033, 1000037};
  const int32_t ids[T] = {11, 12, 13, 14, 15};
  const int32_t hist_a[N - 1] = {2, 2}, hist_b[N - 1] = {900, 901};
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[2] = {new_t(VNRT_I32, T, 0, 0), new_t(VNRT_I32, N - 1, 0, 0)};
  set_i32(&in[0], ids, T);
  vnrt_attr attrs[4] = {tu_attr_ints("mult", mult, N), tu_attr_ints("primes", primes, COLS),
                        tu_attr_i("max_n", N), tu_attr_i("heads", K)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_NGRAM_HASH, in, 2, attrs, 4, 1);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    tu_tensor oa[1], ob[1];
    set_i32(&in[1], hist_a, N - 1);
    if (!run_dev(ctx, g, i, in, 2, oa, 1)) continue;
    set_i32(&in[1], hist_b, N - 1);
    ck_assert(run_dev(ctx, g, i, in, 2, ob, 1));
    const int32_t *a = (const int32_t *)oa[0].data, *b = (const int32_t *)ob[0].data;
    for (int t = 0; t < T; ++t) {
      int same = 1;
      for (int c = 0; c < COLS; ++c) {
        same &= a[t * COLS + c] == b[t * COLS + c];
        ck_assert_int_ge(a[t * COLS + c], 0);
        ck_assert_int_lt(a[t * COLS + c], primes[c]);
      }
      ck_assert_int_eq(same, t >= N - 1);
    }
    free_all(oa, 1);
    free_all(ob, 1);
  }
  vnrt_graph_destroy(g);
  free_all(in, 2);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- engram_lookup --------------------------------------------------------------------- */

static void check_lookup_concat(vnrt_dtype table_dtype) {
  enum { R = 12, D = 3, T = 4, H = 3 };
  const int32_t offsets[H] = {0, 5, 9};
  const int32_t idx[T * H] = {0, 0, 0, 4, 3, 2, 2, 1, 0, 1, 4, 1};
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[3] = {new_t(table_dtype, R, D, 0), new_t(VNRT_I32, T, H, 0),
                     new_t(VNRT_I32, H, 0, 0)};
  tu_fill_uniform(&in[0], 41, -3.0f, 3.0f);
  set_i32(&in[1], idx, T * H);
  set_i32(&in[2], offsets, H);
  double want[T * H * D];
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      for (int d = 0; d < D; ++d) {
        want[(t * H + h) * D + d] = tu_get(&in[0], (offsets[h] + idx[t * H + h]) * D + d);
      }
    }
  }
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ENGRAM_LOOKUP, in, 3, NULL, 0, 1);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    tu_tensor out[1];
    if (!run_dev(ctx, g, i, in, 3, out, 1)) continue;
    ck_assert_int_eq(out[0].type.dtype, VNRT_F32);
    ck_assert_int_eq(out[0].type.rank, 2);
    ck_assert_int_eq(out[0].type.dims[0], T);
    ck_assert_int_eq(out[0].type.dims[1], H * D); /* concatenated, not summed to D */
    /* A gather widens exactly: every value must match bit for bit. */
    for (int j = 0; j < T * H * D; ++j) ck_assert_double_eq(tu_get(&out[0], j), want[j]);
    free_all(out, 1);
  }
  vnrt_graph_destroy(g);
  free_all(in, 3);
  vnrt_context_destroy(ctx);
}

START_TEST(engram_lookup_concatenates_heads) {
  check_lookup_concat(VNRT_F32);
  check_lookup_concat(VNRT_BF16);
  check_lookup_concat(VNRT_F16);
}
END_TEST

/* Runs a lookup whose idx is fine for the first tokens and bad for the last one: the run must
 * fail naming op, row and bound, and (where the output can still be read) leave it as the
 * previous good run wrote it. */
static void check_lookup_out_of_range(int32_t bad_idx, int64_t bad_row) {
  enum { R = 17, D = 2, T = 3, H = 2 };
  const int32_t offsets[H] = {0, 9};
  const int32_t good[T * H] = {1, 2, 3, 4, 5, 6};
  int32_t bad[T * H] = {8, 7, 6, 5, 4, 0};
  bad[T * H - 1] = bad_idx;
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[3] = {new_t(VNRT_F32, R, D, 0), new_t(VNRT_I32, T, H, 0), new_t(VNRT_I32, H, 0, 0)};
  tu_fill_uniform(&in[0], 42, -1.0f, 1.0f);
  set_i32(&in[2], offsets, H);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ENGRAM_LOOKUP, in, 3, NULL, 0, 1);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    vnrt_device *dev = tu_device(ctx, i);
    const char *spec = tu_device_spec(dev);
    vnrt_plan_desc desc = {.no_fallback = !tu_fallback_allowed(), .kernels = tu_kernel_mode()};
    vnrt_plan *plan = NULL;
    vnrt_status s = vnrt_plan_create(ctx, g, dev, &desc, &plan);
    if (s == VNRT_ERROR_UNSUPPORTED && strncmp(spec, "cpu", 3) != 0) continue;
    TU_OK(ctx, s);
    float before[T * H * D], after[T * H * D];
    TU_OK(ctx, vnrt_plan_set_input(plan, "in0", in[0].data, sizeof(float) * R * D));
    TU_OK(ctx, vnrt_plan_set_input(plan, "in1", good, sizeof good));
    TU_OK(ctx, vnrt_plan_set_input(plan, "in2", offsets, sizeof offsets));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "out0", before, sizeof before));

    TU_OK(ctx, vnrt_plan_set_input(plan, "in1", bad, sizeof bad));
    s = vnrt_plan_run(plan);
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(s == VNRT_ERROR_OUT_OF_RANGE, "%s: got %s: %s", spec, vnrt_status_string(s), msg);
    char row_s[32], bound_s[32];
    snprintf(row_s, sizeof row_s, "%lld", (long long)bad_row);
    snprintf(bound_s, sizeof bound_s, "%d", R);
    ck_assert_msg(strstr(msg, "engram_lookup") != NULL, "%s: message lacks the op: %s", spec, msg);
    ck_assert_msg(strstr(msg, row_s) != NULL, "%s: message lacks row %s: %s", spec, row_s, msg);
    ck_assert_msg(strstr(msg, bound_s) != NULL, "%s: message lacks bound %s: %s", spec, bound_s,
                  msg);
    if (vnrt_plan_read_output(plan, "out0", after, sizeof after) == VNRT_OK) {
      ck_assert_msg(memcmp(before, after, sizeof before) == 0,
                    "%s: a failed lookup half-wrote its output", spec);
    }
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
  free_all(in, 3);
  vnrt_context_destroy(ctx);
}

START_TEST(engram_lookup_out_of_range_row_fails_cleanly) {
  check_lookup_out_of_range(8, 9 + 8);    /* row 17 == R: one past the end */
  check_lookup_out_of_range(-23, 9 - 23); /* row -14 */
}
END_TEST

/* ---- engram_gate ----------------------------------------------------------------------- */

static double rms_scale(const tu_tensor *x, int64_t off, int64_t C, double eps) {
  double ss = 0.0;
  for (int64_t c = 0; c < C; ++c) ss += tu_get(x, off + c) * tu_get(x, off + c);
  return 1.0 / sqrt(ss / (double)C + eps);
}

static void check_gate(int sqrt_gate, double eps) {
  enum { T = 5, M = 3, C = 8 };
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor in[5] = {new_t(VNRT_F32, T, M, C), new_t(VNRT_F32, T, M, C), new_t(VNRT_F32, T, C, 0),
                     new_t(VNRT_F32, M, C, 0), new_t(VNRT_F32, M, C, 0)};
  tu_fill_uniform(&in[0], 51, -2.0f, 2.0f);
  tu_fill_uniform(&in[1], 52, -1.0f, 1.0f);
  tu_fill_uniform(&in[2], 53, -3.0f, 3.0f);
  tu_fill_uniform(&in[3], 54, 0.5f, 1.5f);
  tu_fill_uniform(&in[4], 55, 0.5f, 1.5f);
  double want[T * M * C];
  int neg = 0, pos = 0, small = 0;
  for (int t = 0; t < T; ++t) {
    for (int m = 0; m < M; ++m) {
      const int64_t off = (t * M + m) * C;
      const double sh = rms_scale(&in[0], off, C, eps), sk = rms_scale(&in[1], off, C, eps);
      double g = 0.0;
      for (int c = 0; c < C; ++c) {
        g += tu_get(&in[0], off + c) * sh * tu_get(&in[3], m * C + c) *
             (tu_get(&in[1], off + c) * sk * tu_get(&in[4], m * C + c));
      }
      g /= sqrt((double)C);
      neg += g < 0;
      pos += g > 0;
      small += fabs(g) < 1.0;
      if (sqrt_gate) g = (g > 0 ? 1.0 : (g < 0 ? -1.0 : 0.0)) * sqrt(fmax(fabs(g), 1e-6));
      const double alpha = 1.0 / (1.0 + exp(-g));
      for (int c = 0; c < C; ++c) want[off + c] = alpha * tu_get(&in[2], t * C + c);
    }
  }
  /* The inputs must reach both signs (the signed root's trap) and |g| < 1, where sqrt moves g. */
  ck_assert_int_ge(neg, 2);
  ck_assert_int_ge(pos, 2);
  ck_assert_int_ge(small, 2);
  vnrt_attr attrs[2] = {tu_attr_i("sqrt_gate", sqrt_gate), tu_attr_f("eps", eps)};
  vnrt_graph *graph = tu_op_graph(ctx, VNRT_OP_ENGRAM_GATE, in, 5, attrs, 2, 1);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    tu_tensor out[1];
    if (!run_dev(ctx, graph, i, in, 5, out, 1)) continue;
    ck_assert_int_eq(tu_numel(&out[0]), T * M * C);
    double e = tu_nmse(&out[0], want, T * M * C);
    ck_assert_msg(e <= NMSE_ENGRAM, "engram_gate(sqrt_gate=%d) on %s: nmse %g", sqrt_gate,
                  tu_device_spec(tu_device(ctx, i)), e);
    free_all(out, 1);
  }
  vnrt_graph_destroy(graph);
  free_all(in, 5);
  vnrt_context_destroy(ctx);
}

START_TEST(engram_gate_signed_sqrt_on_and_off) {
  check_gate(1, 1e-6);
  check_gate(0, 1e-6);
  check_gate(1, 0.5); /* a large eps shows up in both norms */
}
END_TEST

/* ---- short_conv ------------------------------------------------------------------------ */

enum { SC_M = 2, SC_C = 3, SC_K = 4, SC_DIL = 3, SC_P = (SC_K - 1) * SC_DIL, SC_T = 12 };
#define SC_MC (SC_M * SC_C)

/* Z over the whole sequence (hist0 then the normalised u) and the expected y, in double. */
static void sc_expected(const tu_tensor *u, const tu_tensor *hist0, const tu_tensor *wn,
                        const tu_tensor *w, double eps, double *Z, double *y) {
  for (int r = 0; r < SC_P; ++r) {
    for (int q = 0; q < SC_MC; ++q) Z[r * SC_MC + q] = tu_get(hist0, r * SC_MC + q);
  }
  for (int t = 0; t < SC_T; ++t) {
    for (int m = 0; m < SC_M; ++m) {
      const int64_t off = (int64_t)(t * SC_M + m) * SC_C;
      const double s = rms_scale(u, off, SC_C, eps);
      for (int c = 0; c < SC_C; ++c) {
        Z[(SC_P + t) * SC_MC + m * SC_C + c] = tu_get(u, off + c) * s * tu_get(wn, m * SC_C + c);
      }
    }
  }
  for (int t = 0; t < SC_T; ++t) {
    for (int q = 0; q < SC_MC; ++q) {
      double acc = 0.0;
      for (int i = 0; i < SC_K; ++i) {
        acc += tu_get(w, q * SC_K + i) * Z[(SC_P + t - (SC_K - 1 - i) * SC_DIL) * SC_MC + q];
      }
      y[t * SC_MC + q] = acc / (1.0 + exp(-acc)) + tu_get(u, t * SC_MC + q);
    }
  }
}

/* Feeds the SC_T tokens in runs of `chunk` tokens, hist_out of one run becoming hist of the
 * next, and checks every y and every intermediate hist against the whole-sequence answer. */
static void check_conv_chunks(vnrt_context *ctx, int32_t dev_i, int chunk, const tu_tensor *u,
                              const tu_tensor *hist0, const tu_tensor *wn, const tu_tensor *w,
                              const double *Z, const double *y) {
  const char *spec = tu_device_spec(tu_device(ctx, dev_i));
  tu_tensor in[4] = {new_t(VNRT_F32, chunk, SC_M, SC_C), new_t(VNRT_F32, SC_P, SC_M, SC_C), *wn,
                     *w};
  memcpy(in[1].data, hist0->data, sizeof(float) * SC_P * SC_MC);
  vnrt_attr attrs[1] = {tu_attr_i("dilation", SC_DIL)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_SHORT_CONV, in, 4, attrs, 1, 2);
  for (int t0 = 0; t0 < SC_T; t0 += chunk) {
    memcpy(in[0].data, (const float *)u->data + t0 * SC_MC, sizeof(float) * chunk * SC_MC);
    tu_tensor out[2];
    ck_assert_msg(run_dev(ctx, g, dev_i, in, 4, out, 2), "%s ran the first chunk only", spec);
    ck_assert_int_eq(tu_numel(&out[0]), chunk * SC_MC);
    ck_assert_int_eq(tu_numel(&out[1]), SC_P * SC_MC);
    double e = tu_nmse(&out[0], y + t0 * SC_MC, chunk * SC_MC);
    ck_assert_msg(e <= NMSE_ENGRAM, "short_conv on %s, chunk %d at t=%d: y nmse %g", spec, chunk,
                  t0, e);
    /* After t0 + chunk tokens the state is rows [t0 + chunk, t0 + chunk + P) of Z. */
    e = tu_nmse(&out[1], Z + (t0 + chunk) * SC_MC, SC_P * SC_MC);
    ck_assert_msg(e <= NMSE_ENGRAM, "short_conv on %s, chunk %d at t=%d: hist nmse %g", spec, chunk,
                  t0, e);
    memcpy(in[1].data, out[1].data, sizeof(float) * SC_P * SC_MC);
    free_all(out, 2);
  }
  vnrt_graph_destroy(g);
  free_all(in, 2); /* wn and w belong to the caller */
}

static void check_conv(int zero_hist) {
  vnrt_context *ctx = tu_conformance_context(0);
  tu_tensor u = new_t(VNRT_F32, SC_T, SC_M, SC_C), hist0 = new_t(VNRT_F32, SC_P, SC_M, SC_C);
  tu_tensor wn = new_t(VNRT_F32, SC_M, SC_C, 0), w = new_t(VNRT_F32, SC_MC, SC_K, 0);
  tu_fill_uniform(&u, 61, -1.0f, 1.0f);
  tu_fill_uniform(&hist0, 62, -1.5f, 1.5f);
  if (zero_hist) memset(hist0.data, 0, sizeof(float) * SC_P * SC_MC);
  tu_fill_uniform(&wn, 63, 0.5f, 1.5f);
  tu_fill_uniform(&w, 64, -0.8f, 0.8f);
  double Z[(SC_P + SC_T) * SC_MC], y[SC_T * SC_MC];
  sc_expected(&u, &hist0, &wn, &w, 1e-6, Z, y);
  for (int32_t i = 0; i < tu_device_count(ctx); ++i) {
    /* Probe once: a device that declines the op is skipped as a whole. */
    tu_tensor probe_in[4] = {u, hist0, wn, w}, probe_out[2];
    vnrt_attr attrs[1] = {tu_attr_i("dilation", SC_DIL)};
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_SHORT_CONV, probe_in, 4, attrs, 1, 2);
    const int ran = run_dev(ctx, g, i, probe_in, 4, probe_out, 2);
    vnrt_graph_destroy(g);
    if (!ran) continue;
    free_all(probe_out, 2);
    check_conv_chunks(ctx, i, SC_T, &u, &hist0, &wn, &w, Z, y); /* prefill */
    check_conv_chunks(ctx, i, 1, &u, &hist0, &wn, &w, Z, y);    /* decode, token by token */
    check_conv_chunks(ctx, i, 4, &u, &hist0, &wn, &w, Z, y);    /* T < P: state mixes hist */
    check_conv_chunks(ctx, i, 3, &u, &hist0, &wn, &w, Z, y);    /* T == dilation */
  }
  tu_tensor_free(&u);
  tu_tensor_free(&hist0);
  tu_tensor_free(&wn);
  tu_tensor_free(&w);
  vnrt_context_destroy(ctx);
}

START_TEST(short_conv_prefill_equals_stepwise_with_history) { check_conv(0); }
END_TEST

START_TEST(short_conv_new_sequence_zero_history) { check_conv(1); }
END_TEST

static Suite *attn_engram_suite(void) {
  Suite *s = suite_create("conformance_attn_engram");
  TCase *rope = tcase_create("rope");
  tcase_add_test(rope, rope_interleaved_pairs_adjacent_channels);
  tcase_add_test(rope, rope_half_split_pairs_i_with_i_plus_half);
  tcase_add_test(rope, rope_partial_dims_rotates_the_last_channels);
  tcase_add_test(rope, rope_interleaved_and_half_split_differ);
  suite_add_tcase(s, rope);
  TCase *attn = tcase_create("attention");
  tcase_add_test(attn, attention_gqa_head_mapping);
  tcase_add_test(attn, attention_mqa_single_kv_head);
  tcase_add_test(attn, attention_decode_sees_whole_cache);
  tcase_add_test(attn, attention_causal_offset_when_t_less_than_s);
  tcase_add_test(attn, attention_non_causal_sees_all_keys);
  tcase_add_test(attn, attention_sliding_window);
  tcase_add_test(attn, attention_sinks_take_probability_mass);
  tcase_add_test(attn, attention_fully_masked_query_yields_zero);
  tcase_add_test(attn, attention_odd_sizes_and_explicit_scale);
  tcase_add_test(attn, attention_mixed_half_precision_inputs);
  suite_add_tcase(s, attn);
  TCase *engram = tcase_create("engram");
  tcase_add_test(engram, ngram_hash_wrapping_floor_modulo_with_history);
  tcase_add_test(engram, ngram_hash_history_changes_only_early_tokens);
  tcase_add_test(engram, engram_lookup_concatenates_heads);
  tcase_add_test(engram, engram_lookup_out_of_range_row_fails_cleanly);
  tcase_add_test(engram, engram_gate_signed_sqrt_on_and_off);
  tcase_add_test(engram, short_conv_prefill_equals_stepwise_with_history);
  tcase_add_test(engram, short_conv_new_sequence_zero_history);
  suite_add_tcase(s, engram);
  return s;
}

int main(void) { return tu_run_suite(attn_engram_suite()); }
