/* The DeepSeek-V4 forward graph, line by line as docs/deepseek-v4.md writes it: every R() of the
 * text is a cast to bf16 under the reference numerics, and the ops store in their input's dtype,
 * so a value is kept bf16 exactly where the text rounds it and f32 everywhere else. */
#include "v4_graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models.h"

#define NAME_SIZE 96

/* A builder keeps the first error and turns every later call into a no-op (value -1), so the
 * layer code below reads as the math it builds. */
typedef struct builder {
  vnrt_context *ctx;
  vnrt_graph *g;
  const vn_v4_config *cfg;
  int64_t T, max_ctx;
  int ref; /* the reference numerics */
  int32_t layer;
  int route_outputs;
  vnrt_graph **segs; /* expert-parallel segments (NULL: one graph) */
  int32_t n_segs;
  int32_t shared_at; /* > 0: each layer's shared expert is its own piece, segs[shared_at + i] */
  vn_v4_segment_types *types;
  vnrt_value ids, pos, pos0;
  vnrt_value ep_route[2]; /* the current layer's route, for a cut */
  int32_t n_experts;      /* experts the routed params hold (0: the config's) */
  vnrt_status st;
  char *err;
  size_t err_size;
} builder;

static int ok(const builder *b) { return b->st == VNRT_OK; }

static void fail_vnrt(builder *b, vnrt_status st, const char *what) {
  if (!ok(b)) return;
  b->st = st;
  vn_model_fail(b->err, b->err_size, st, "building the %lld-token graph: %s: %s", (long long)b->T,
                what, vnrt_context_last_error(b->ctx));
}

static vnrt_attr a_int(const char *key, int64_t v) {
  vnrt_attr a = {.key = key, .kind = VNRT_ATTR_INT, .i = v};
  return a;
}
static vnrt_attr a_float(const char *key, double v) {
  vnrt_attr a = {.key = key, .kind = VNRT_ATTR_FLOAT, .f = v};
  return a;
}
static vnrt_attr a_word(const char *key, const char *w) {
  vnrt_attr a = {.key = key, .kind = VNRT_ATTR_WORD, .word = w};
  return a;
}
static vnrt_attr a_ints(const char *key, const int64_t *v, int32_t count) {
  vnrt_attr a = {.key = key, .kind = VNRT_ATTR_INTS, .ints = v, .count = count};
  return a;
}

/* Adds a node whose n_out results are named "lN.<what>" (one result) or "lN.<what>.<i>". */
static void nodes(builder *b, vnrt_op op, const vnrt_value *in, int32_t n_in,
                  const vnrt_attr *attrs, int32_t n_attrs, const char *what, vnrt_value *outs,
                  int32_t n_out) {
  for (int32_t i = 0; i < n_out; ++i) outs[i] = -1;
  if (!ok(b)) return;
  for (int32_t i = 0; i < n_in; ++i) {
    if (in[i] < 0) return;
  }
  char names[4][NAME_SIZE];
  const char *ptrs[4];
  for (int32_t i = 0; i < n_out && i < 4; ++i) {
    const char *sep = b->layer >= 0 ? "." : "";
    char prefix[16] = "";
    if (b->layer >= 0) snprintf(prefix, sizeof prefix, "l%d", (int)b->layer);
    if (n_out == 1) {
      snprintf(names[i], sizeof names[i], "%s%s%s", prefix, sep, what);
    } else {
      snprintf(names[i], sizeof names[i], "%s%s%s.%d", prefix, sep, what, (int)i);
    }
    ptrs[i] = names[i];
  }
  vnrt_status st = vnrt_graph_add_node(b->g, op, in, n_in, attrs, n_attrs, ptrs, outs, n_out);
  if (st != VNRT_OK) fail_vnrt(b, st, names[0]);
}

static vnrt_value node(builder *b, vnrt_op op, const vnrt_value *in, int32_t n_in,
                       const vnrt_attr *attrs, int32_t n_attrs, const char *what) {
  vnrt_value out;
  nodes(b, op, in, n_in, attrs, n_attrs, what, &out, 1);
  return out;
}

static vnrt_dtype dtype_of(builder *b, vnrt_value v) {
  vnrt_tensor_type t;
  if (!ok(b) || v < 0 || vnrt_graph_value_type(b->g, v, &t) != VNRT_OK) return VNRT_DTYPE_INVALID;
  return t.dtype;
}

static vnrt_value cast(builder *b, vnrt_value x, vnrt_dtype to, const char *what) {
  if (!ok(b) || dtype_of(b, x) == to) return x;
  vnrt_attr a = a_word("dtype", to == VNRT_BF16 ? "bf16" : "f32");
  return node(b, VNRT_OP_CAST, &x, 1, &a, 1, what);
}

/* R(): rounds to bf16 under the reference numerics (a bf16 value is already rounded). */
static vnrt_value R(builder *b, vnrt_value x, const char *what) {
  return b->ref ? cast(b, x, VNRT_BF16, what) : x;
}
/* The same value in f32 (exact), for an op that must compute or store in f32. */
static vnrt_value F(builder *b, vnrt_value x, const char *what) {
  return cast(b, x, VNRT_F32, what);
}

static vnrt_value declare(builder *b, const char *name, vnrt_dtype dtype, int32_t rank, int64_t d0,
                          int64_t d1, int64_t d2) {
  if (!ok(b)) return -1;
  vnrt_tensor_type t = {dtype, rank, {d0, d1, d2, 0}};
  vnrt_value v = vnrt_graph_find(b->g, name);
  if (v >= 0) return v; /* a param read twice (none today, but harmless) */
  vnrt_status st = vnrt_graph_add_input(b->g, name, &t, 1, &v);
  if (st != VNRT_OK) fail_vnrt(b, st, name);
  return v;
}

/* A tensor of the current layer ("layers.N.<suffix>") or a global one (layer < 0). */
static vnrt_value param(builder *b, const char *suffix, vnrt_dtype dtype, int32_t rank, int64_t d0,
                        int64_t d1) {
  char name[NAME_SIZE + 32]; /* "layers.N." and a NAME_SIZE suffix */
  if (b->layer >= 0) {
    snprintf(name, sizeof name, "layers.%d.%s", (int)b->layer, suffix);
  } else {
    snprintf(name, sizeof name, "%s", suffix);
  }
  return declare(b, name, dtype, rank, d0, d1, 0);
}

/* An FP8 weight [out, in] of the layer: its e4m3 codes and, in *scale, its e8m0 scale over
 * 128x128 blocks ("<base>.weight", "<base>.scale"). In a dequantized checkpoint
 * (!cfg->quantized) the weight is BF16 and *scale is -1. */
static vnrt_value fp8_param(builder *b, const char *base, int64_t out, int64_t in,
                            vnrt_value *scale) {
  char name[NAME_SIZE];
  snprintf(name, sizeof name, "%s.weight", base);
  const bool q = b->cfg->quantized;
  vnrt_value w = param(b, name, q ? VNRT_E4M3 : VNRT_BF16, 2, out, in);
  *scale = -1;
  if (!q) return w;
  snprintf(name, sizeof name, "%s.scale", base);
  *scale = param(b, name, VNRT_E8M0, 2, (out + 127) / 128, (in + 127) / 128);
  return w;
}

/* Lq(w, x): a linear with an FP8 weight; act_quant = 128 under the reference numerics. The
 * result has x's dtype. On a dequantized checkpoint's BF16 weight, a plain linear: DeepSeek's
 * reference quantizes activations only in front of FP8 weights. */
static vnrt_value Lq(builder *b, vnrt_value x, const char *base, int64_t out, int64_t in,
                     const char *what) {
  vnrt_value s;
  vnrt_value w = fp8_param(b, base, out, in, &s);
  vnrt_value args[3] = {x, w, s};
  vnrt_attr a = a_int("act_quant", 128);
  return node(b, VNRT_OP_LINEAR, args, s >= 0 ? 3 : 2, &a, b->ref && s >= 0 ? 1 : 0, what);
}

/* L(w, x) on a bf16 weight [out, in] (no activation quantization). */
static vnrt_value L(builder *b, vnrt_value x, const char *wname, int64_t out, int64_t in,
                    const char *what) {
  vnrt_value args[2] = {x, param(b, wname, VNRT_BF16, 2, out, in)};
  return node(b, VNRT_OP_LINEAR, args, 2, NULL, 0, what);
}

static vnrt_value rms_norm(builder *b, vnrt_value x, vnrt_value w, const char *what) {
  vnrt_value args[2] = {x, w};
  vnrt_attr a = a_float("eps", b->cfg->rms_norm_eps);
  return node(b, VNRT_OP_RMS_NORM, args, w >= 0 ? 2 : 1, &a, 1, what);
}

static vnrt_value norm_w(builder *b, const char *name, int64_t d) {
  return param(b, name, VNRT_BF16, 1, d, 0);
}

static vnrt_value reshape(builder *b, vnrt_value x, int32_t rank, int64_t d0, int64_t d1,
                          int64_t d2, const char *what) {
  const int64_t shape[3] = {d0, d1, d2};
  vnrt_attr a = a_ints("shape", shape, rank);
  return node(b, VNRT_OP_RESHAPE, &x, 1, &a, 1, what);
}

/* rope over the trailing r channels of x [T, H, D] at pos [T]: θ = rope_theta in ratio-0
 * layers, compress_rope_theta with YaRN otherwise; inverse rotates back. */
static vnrt_value rope(builder *b, vnrt_value x, vnrt_value pos, int32_t ratio, int inverse,
                       const char *what) {
  const vn_v4_config *c = b->cfg;
  vnrt_attr a[8];
  int32_t n = 0;
  a[n++] = a_int("dims", c->qk_rope_head_dim);
  a[n++] = a_int("interleaved", 1);
  if (ratio == 0) {
    a[n++] = a_float("theta", c->rope_theta);
  } else {
    a[n++] = a_float("theta", c->compress_rope_theta);
    a[n++] = a_float("yarn_factor", c->rope_scaling.factor);
    a[n++] = a_int("yarn_orig_ctx", c->rope_scaling.original_max_position_embeddings);
    a[n++] = a_float("beta_fast", c->rope_scaling.beta_fast);
    a[n++] = a_float("beta_slow", c->rope_scaling.beta_slow);
  }
  if (inverse) a[n++] = a_int("inverse", 1);
  vnrt_value args[2] = {x, pos};
  return node(b, VNRT_OP_ROPE, args, 2, a, n, what);
}

/* FQ8: e4m3 round trip of the non-RoPE channels in blocks of 64 (reference numerics only). */
static vnrt_value fq8(builder *b, vnrt_value x, const char *what) {
  if (!b->ref) return x;
  vnrt_attr a[4] = {a_word("fmt", "e4m3"), a_int("block", 64), a_int("start", 0),
                    a_int("len", b->cfg->head_dim - b->cfg->qk_rope_head_dim)};
  return node(b, VNRT_OP_FAKE_QUANT, &x, 1, a, 4, what);
}

/* FQ4(hadamard(x)) in f32: the hadamard is always there (exact under f32 numerics too, since it
 * is orthonormal it changes q·k only by rounding); the e2m1 round trip only under REF. */
static vnrt_value hadamard_fq4(builder *b, vnrt_value x, const char *what) {
  char name[NAME_SIZE];
  snprintf(name, sizeof name, "%s.f32", what);
  x = F(b, x, name);
  snprintf(name, sizeof name, "%s.hadamard", what);
  x = node(b, VNRT_OP_HADAMARD, &x, 1, NULL, 0, name);
  if (!b->ref) return x;
  vnrt_attr a[2] = {a_word("fmt", "e2m1"), a_int("block", 32)};
  return node(b, VNRT_OP_FAKE_QUANT, &x, 1, a, 2, what);
}

static vnrt_value state(builder *b, const char *suffix, int64_t d0, int64_t d1) {
  if (!ok(b)) return -1;
  char name[NAME_SIZE];
  snprintf(name, sizeof name, "layers.%d.%s", (int)b->layer, suffix);
  vnrt_tensor_type t = {VNRT_F32, 2, {d0, d1, 0, 0}};
  vnrt_value v = -1;
  vnrt_status st = vnrt_graph_add_state(b->g, name, &t, &v);
  if (st != VNRT_OK) fail_vnrt(b, st, name);
  return v;
}

static void update(builder *b, vnrt_value s, vnrt_value next) {
  if (!ok(b) || s < 0 || next < 0) return;
  vnrt_status st = vnrt_graph_set_state_update(b->g, s, next);
  if (st != VNRT_OK) fail_vnrt(b, st, vnrt_graph_value_name(b->g, s));
}

/* mHC collapse at one site ("attn" or "ffn"): out = {x, post, comb}. */
static void hc_pre(builder *b, vnrt_value X, const char *site, vnrt_value out[3]) {
  const vn_v4_config *c = b->cfg;
  const int64_t n = c->hc_mult, rows = (n + 2) * n;
  char fn[32], sc[32], ba[32], what[32];
  snprintf(fn, sizeof fn, "hc_%s_fn", site);
  snprintf(sc, sizeof sc, "hc_%s_scale", site);
  snprintf(ba, sizeof ba, "hc_%s_base", site);
  snprintf(what, sizeof what, "%s.hc_pre", site);
  vnrt_value args[4] = {X, param(b, fn, VNRT_F32, 2, rows, n * c->hidden_size),
                        param(b, sc, VNRT_F32, 1, 3, 0), param(b, ba, VNRT_F32, 1, rows, 0)};
  vnrt_attr a[3] = {a_int("iters", c->hc_sinkhorn_iters), a_float("eps", c->hc_eps),
                    a_float("norm_eps", c->rms_norm_eps)};
  nodes(b, VNRT_OP_HC_PRE, args, 4, a, 3, what, out, 3);
}

static vnrt_value hc_post(builder *b, vnrt_value X, vnrt_value y, const vnrt_value pre[3],
                          const char *what) {
  vnrt_value args[4] = {X, y, pre[1], pre[2]};
  return node(b, VNRT_OP_HC_POST, args, 4, NULL, 0, what);
}

/* The compressor of a layer or of its indexer (prefix "attn.compressor" or
 * "attn.indexer.compressor"): pools h into entries, normalises, rotates and rounds them as the
 * text says, and appends them to the cache state `cache` (whose update is returned). */
static vnrt_value compressor(builder *b, vnrt_value hf, vnrt_value pos0, const char *prefix,
                             int32_t ratio, int64_t d, int indexer, vnrt_value cache,
                             const char *state_prefix) {
  const vn_v4_config *c = b->cfg;
  const int64_t C = c->hidden_size, cm = ratio == 4 ? 2 : 1;
  char wkv[NAME_SIZE], wgate[NAME_SIZE], ape[NAME_SIZE], nrm[NAME_SIZE], what[NAME_SIZE];
  snprintf(wkv, sizeof wkv, "%s.wkv.weight", prefix);
  snprintf(wgate, sizeof wgate, "%s.wgate.weight", prefix);
  snprintf(ape, sizeof ape, "%s.ape", prefix);
  snprintf(nrm, sizeof nrm, "%s.norm.weight", prefix);
  /* f32 linears on the bf16 weights (widened exactly) */
  snprintf(what, sizeof what, "%s.a", prefix);
  vnrt_value a = L(b, hf, wkv, cm * d, C, what);
  snprintf(what, sizeof what, "%s.z", prefix);
  vnrt_value z = L(b, hf, wgate, cm * d, C, what);
  snprintf(what, sizeof what, "%s_a", state_prefix);
  vnrt_value sa = state(b, what, cm * ratio, cm * d);
  snprintf(what, sizeof what, "%s_z", state_prefix);
  vnrt_value sz = state(b, what, cm * ratio, cm * d);
  vnrt_value args[6] = {a, z, param(b, ape, VNRT_F32, 2, ratio, cm * d), sa, sz, pos0};
  vnrt_attr at[2] = {a_int("ratio", ratio), a_int("overlap", ratio == 4)};
  vnrt_value r[4];
  snprintf(what, sizeof what, "%s.pool", prefix);
  nodes(b, VNRT_OP_KV_COMPRESS, args, 6, at, 2, what, r, 4);
  update(b, sa, r[2]);
  update(b, sz, r[3]);
  const int64_t N = (b->T + ratio - 1) / ratio;
  snprintf(what, sizeof what, "%s.e_bf16", prefix);
  vnrt_value e = R(b, r[0], what);
  snprintf(what, sizeof what, "%s.norm", prefix);
  e = rms_norm(b, e, norm_w(b, nrm, d), what);
  snprintf(what, sizeof what, "%s.norm.r", prefix);
  e = R(b, e, what);
  snprintf(what, sizeof what, "%s.e3", prefix);
  e = reshape(b, e, 3, N, 1, d, what);
  snprintf(what, sizeof what, "%s.rope", prefix);
  e = rope(b, e, r[1], ratio, 0, what);
  snprintf(what, sizeof what, "%s.rope.r", prefix);
  e = R(b, e, what);
  snprintf(what, sizeof what, "%s.e2", prefix);
  e = reshape(b, e, 2, N, d, 0, what);
  snprintf(what, sizeof what, "%s.fq", prefix);
  e = indexer ? hadamard_fq4(b, e, what) : fq8(b, e, what);
  snprintf(what, sizeof what, "%s.e_f32", prefix);
  e = F(b, e, what);
  vnrt_value sargs[3] = {cache, e, r[1]};
  vnrt_attr da = a_int("div", ratio);
  snprintf(what, sizeof what, "%s.scatter", prefix);
  vnrt_value next = node(b, VNRT_OP_KV_SCATTER, sargs, 3, &da, 1, what);
  update(b, cache, next);
  return next;
}

/* The global n-gram history "engram.ngram_hist" [N - 1] i32: the last N - 1 token ids before
 * this run (the pad id for a new sequence, set by the session). Returns the state; its update
 * is the last N - 1 ids of hist ++ ids. */
static vnrt_value ngram_history(builder *b, vnrt_value ids) {
  const int64_t N = b->cfg->engram.max_n;
  if (!ok(b)) return -1;
  vnrt_tensor_type t = {VNRT_I32, 1, {N - 1, 0, 0, 0}};
  vnrt_value hist = -1;
  vnrt_status st = vnrt_graph_add_state(b->g, VN_V4_ENGRAM_HIST, &t, &hist);
  if (st != VNRT_OK) fail_vnrt(b, st, VN_V4_ENGRAM_HIST);
  vnrt_value cin[2] = {hist, ids};
  vnrt_attr ca = a_int("axis", 0);
  vnrt_value all = node(b, VNRT_OP_CONCAT, cin, 2, &ca, 1, "engram.ids_with_hist");
  vnrt_attr sa[3] = {a_int("axis", 0), a_int("start", b->T), a_int("len", N - 1)};
  update(b, hist, node(b, VNRT_OP_SLICE, &all, 1, sa, 3, "engram.next_hist"));
  return hist;
}

/* The hashed rows of Engram layer index ei, per head: ngram_hash -> [T, H] i32. */
static vnrt_value ngram_idx(builder *b, vnrt_value ids, vnrt_value hist, int32_t ei) {
  const vn_v4_engram *e = &b->cfg->engram;
  vnrt_attr ha[4] = {a_ints("mult", e->mult[ei], e->max_n),
                     a_ints("primes", e->primes[ei], e->heads), a_int("max_n", e->max_n),
                     a_int("heads", e->heads_per_ngram)};
  vnrt_value hin[2] = {ids, hist};
  return node(b, VNRT_OP_NGRAM_HASH, hin, 2, ha, 4, "engram.idx");
}

/* The Engram block of an Engram layer (index ei) on the streams X [T, n, C]: hashed 2..N-gram
 * rows of the layer's table, gated per stream by the streams, a causal dilated short
 * convolution (history state "layers.N.engram.conv_state" [(K - 1) * dilation, n, C]), added
 * into every stream. It computes in f32; the sum is rounded by R(). */
static vnrt_value engram(builder *b, vnrt_value X, vnrt_value ids, vnrt_value hist, int32_t ei) {
  const vn_v4_config *c = b->cfg;
  const vn_v4_engram *e = &c->engram;
  const int64_t T = b->T, n = c->hc_mult, C = c->hidden_size, HD = e->heads * e->head_dim;
  vnrt_value raw = -1;
  if (b->segs) { /* expert parallel: the rows fetched from the ranks that own them */
    char name[NAME_SIZE];
    snprintf(name, sizeof name, "%s.%d", VN_V4_SEG_ENGRAM_ROWS, (int)b->layer);
    vnrt_tensor_type t = {VNRT_BF16, 3, {T, e->heads, e->head_dim, 0}};
    if (ok(b)) {
      vnrt_status st = vnrt_graph_add_input(b->g, name, &t, 0, &raw);
      if (st != VNRT_OK) fail_vnrt(b, st, name);
    }
    raw = reshape(b, raw, 2, T, HD, 0, "engram.e");
  } else {
    vnrt_value idx = ngram_idx(b, ids, hist, ei);
    vnrt_value lin[3] = {
        param(b, "engram.embedding.weight", VNRT_BF16, 2, e->table_rows[ei], e->head_dim), idx,
        param(b, VN_V4_ENGRAM_OFFSETS, VNRT_I32, 1, e->heads, 0)};
    raw = node(b, VNRT_OP_ENGRAM_LOOKUP, lin, 3, NULL, 0, "engram.e");
  }
  vnrt_value emb = F(b, raw, "engram.e32");
  vnrt_value v = L(b, emb, "engram.value_proj.weight", C, HD, "engram.v");
  vnrt_value k = L(b, emb, "engram.key_proj.weight", n * C, HD, "engram.k_flat");
  k = reshape(b, k, 3, T, n, C, "engram.k");
  vnrt_value Xf = F(b, X, "engram.x32");
  vnrt_value gin[5] = {Xf, k, v, param(b, "engram.h_norm.weight", VNRT_F32, 2, n, C),
                       param(b, "engram.k_norm.weight", VNRT_F32, 2, n, C)};
  vnrt_attr ga[2] = {a_float("eps", c->rms_norm_eps), a_int("sqrt_gate", 1)};
  vnrt_value u = node(b, VNRT_OP_ENGRAM_GATE, gin, 5, ga, 2, "engram.u");
  const int64_t P = (int64_t)(e->kernel_size - 1) * e->dilation;
  vnrt_value conv_hist = -1;
  if (ok(b)) {
    char name[NAME_SIZE];
    snprintf(name, sizeof name, "layers.%d.engram.conv_state", (int)b->layer);
    vnrt_tensor_type t = {VNRT_F32, 3, {P, n, C, 0}};
    vnrt_status st = vnrt_graph_add_state(b->g, name, &t, &conv_hist);
    if (st != VNRT_OK) fail_vnrt(b, st, name);
  }
  vnrt_value cin[4] = {u, conv_hist, param(b, "engram.conv_norm.weight", VNRT_F32, 2, n, C),
                       param(b, "engram.conv.weight", VNRT_F32, 2, n * C, e->kernel_size)};
  vnrt_attr ca[2] = {a_int("dilation", e->dilation), a_float("eps", c->rms_norm_eps)};
  vnrt_value conv[2];
  nodes(b, VNRT_OP_SHORT_CONV, cin, 4, ca, 2, "engram.conv", conv, 2);
  update(b, conv_hist, conv[1]);
  vnrt_value ain[2] = {Xf, conv[0]};
  return R(b, node(b, VNRT_OP_ADD, ain, 2, NULL, 0, "engram.X"), "engram.X.r");
}

/* The attention sub-layer on h (bf16 under REF, f32 otherwise); returns y [T, C]. */
static vnrt_value attention(builder *b, vnrt_value h, vnrt_value hf, vnrt_value pos,
                            vnrt_value pos0, int32_t ratio) {
  const vn_v4_config *c = b->cfg;
  const int64_t T = b->T, C = c->hidden_size, H = c->num_attention_heads, D = c->head_dim;
  const int64_t Rq = c->q_lora_rank, G = c->o_groups, Ro = c->o_lora_rank;
  vnrt_value qr = R(b, Lq(b, h, "attn.wq_a", Rq, C, "attn.wq_a"), "attn.wq_a.r");
  qr = R(b, rms_norm(b, qr, norm_w(b, "attn.q_norm.weight", Rq), "attn.q_norm"), "attn.qr");
  vnrt_value q = R(b, Lq(b, qr, "attn.wq_b", H * D, Rq, "attn.wq_b"), "attn.wq_b.r");
  q = reshape(b, q, 3, T, H, D, "attn.q3");
  q = R(b, rms_norm(b, q, -1, "attn.q_headnorm"), "attn.q_headnorm.r");
  q = R(b, rope(b, q, pos, ratio, 0, "attn.q_rope"), "attn.q_rope.r");

  vnrt_value kv = R(b, Lq(b, h, "attn.wkv", D, C, "attn.wkv"), "attn.wkv.r");
  kv = R(b, rms_norm(b, kv, norm_w(b, "attn.kv_norm.weight", D), "attn.kv_norm"), "attn.kv_n");
  kv = reshape(b, kv, 3, T, 1, D, "attn.kv3");
  kv = R(b, rope(b, kv, pos, ratio, 0, "attn.kv_rope"), "attn.kv_rope.r");
  kv = reshape(b, kv, 2, T, D, 0, "attn.kv2");
  kv = F(b, fq8(b, kv, "attn.kv_fq8"), "attn.kv"); /* exact: the ring is f32 */

  vnrt_value comp = -1, idx = -1;
  if (ratio != 0) {
    const int64_t rows = b->max_ctx / ratio > 0 ? b->max_ctx / ratio : 1;
    vnrt_value cache = state(b, "attn.comp", rows, D);
    comp = compressor(b, hf, pos0, "attn.compressor", ratio, D, 0, cache, "attn.cstate");
  }
  if (ratio == 4) {
    const int64_t Hi = c->index_n_heads, Di = c->index_head_dim;
    vnrt_value qi = R(b, Lq(b, qr, "attn.indexer.wq_b", Hi * Di, Rq, "attn.indexer.wq_b"),
                      "attn.indexer.wq_b.r");
    qi = reshape(b, qi, 3, T, Hi, Di, "attn.indexer.q3");
    qi = R(b, rope(b, qi, pos, ratio, 0, "attn.indexer.q_rope"), "attn.indexer.q_rope.r");
    qi = hadamard_fq4(b, qi, "attn.indexer.q");
    const int64_t rows = b->max_ctx / 4 > 0 ? b->max_ctx / 4 : 1;
    vnrt_value icache = state(b, "attn.icomp", rows, Di);
    vnrt_value icomp =
        compressor(b, hf, pos0, "attn.indexer.compressor", 4, Di, 1, icache, "attn.istate");
    vnrt_value w =
        R(b, L(b, h, "attn.indexer.weights_proj.weight", Hi, C, "attn.indexer.w"), "attn.w.r");
    w = F(b, w, "attn.indexer.w_f32");
    /* · Di^-1/2 · Hi^-1/2: two f32 products, as the text writes them */
    vnrt_attr sa = a_float("s", (double)(float)(1.0 / sqrt((double)Di)));
    w = node(b, VNRT_OP_SCALE, &w, 1, &sa, 1, "attn.indexer.w_di");
    sa = a_float("s", (double)(float)(1.0 / sqrt((double)Hi)));
    w = node(b, VNRT_OP_SCALE, &w, 1, &sa, 1, "attn.indexer.w_scaled");
    vnrt_value sargs[4] = {qi, icomp, w, pos};
    vnrt_attr ra = a_int("ratio", 4);
    vnrt_value s = node(b, VNRT_OP_INDEX_SCORES, sargs, 4, &ra, 1, "attn.indexer.scores");
    const int64_t k = c->index_topk < rows ? c->index_topk : rows;
    vnrt_attr ta[2] = {a_int("k", k), a_int("fill", -1)};
    vnrt_value top[2];
    nodes(b, VNRT_OP_TOPK, &s, 1, ta, 2, "attn.indexer.topk", top, 2);
    idx = top[1];
  }

  vnrt_value ring = state(b, "attn.ring", c->sliding_window, D);
  vnrt_value aargs[7] = {F(b, q, "attn.q_f32"),
                         kv,
                         ring,
                         param(b, "attn.attn_sink", VNRT_F32, 1, H, 0),
                         pos0,
                         comp,
                         idx};
  vnrt_attr aa = a_int("ratio", ratio);
  int32_t n_args = ratio == 0 ? 5 : ratio == 4 ? 7 : 6;
  vnrt_value o =
      R(b, node(b, VNRT_OP_SPARSE_ATTENTION, aargs, n_args, &aa, ratio ? 1 : 0, "attn.core"),
        "attn.core.r");
  vnrt_value wargs[3] = {ring, kv, pos0};
  vnrt_attr ka = a_int("ring", 1);
  update(b, ring, node(b, VNRT_OP_KV_WRITE, wargs, 3, &ka, 1, "attn.ring_write"));
  o = R(b, rope(b, o, pos, ratio, 1, "attn.o_unrope"), "attn.o_unrope.r");
  o = reshape(b, o, 2, T, H * D, 0, "attn.o2");
  vnrt_value ws;
  vnrt_value wo_a = fp8_param(b, "attn.wo_a", G * Ro, H * D / G, &ws);
  vnrt_value gargs[3] = {o, wo_a, ws};
  vnrt_attr ga = a_int("groups", G);
  vnrt_value y = R(b, node(b, VNRT_OP_GROUPED_LINEAR, gargs, ws >= 0 ? 3 : 2, &ga, 1, "attn.wo_a"),
                   "attn.wo_a.r");
  return R(b, Lq(b, y, "attn.wo_b", C, G * Ro, "attn.wo_b"), "attn.y");
}

/* The routed experts on hf as route says: moe_ffn over the layer's packed experts. */
static vnrt_value routed_experts(builder *b, vnrt_value hf, const vnrt_value route[2]) {
  const vn_v4_config *c = b->cfg;
  const int64_t C = c->hidden_size, F_ = c->moe_intermediate_size;
  const int64_t E = b->n_experts > 0 ? b->n_experts : c->n_routed_experts;
  /* The routed experts as vn_checkpoint_pack_experts packs them. */
  const int fp4 = c->expert_dtype == VN_V4_EXPERT_FP4;
  const vnrt_dtype code = !c->quantized ? VNRT_BF16 : fp4 ? VNRT_E2M1 : VNRT_E4M3;
  const int64_t b0 = fp4 ? 1 : 128, b1 = fp4 ? 32 : 128;
  char name[NAME_SIZE];
  vnrt_value fargs[7] = {hf, route[1], route[0], -1, -1, -1, -1};
  snprintf(name, sizeof name, "layers.%d.%s", (int)b->layer, VN_V4_EXPERTS_GATE_UP);
  fargs[3] = declare(b, name, code, 3, E, 2 * F_, C);
  snprintf(name, sizeof name, "layers.%d.%s", (int)b->layer, VN_V4_EXPERTS_DOWN);
  fargs[4] = declare(b, name, code, 3, E, C, F_);
  if (!c->quantized) { /* a dequantized checkpoint: BF16 experts, no act_quant */
    vnrt_attr limit = a_float("limit", c->swiglu_limit);
    return node(b, VNRT_OP_MOE_FFN, fargs, 5, &limit, 1, "ffn.routed");
  }
  snprintf(name, sizeof name, "layers.%d.%s.scale", (int)b->layer, VN_V4_EXPERTS_GATE_UP);
  fargs[5] = declare(b, name, VNRT_E8M0, 3, E, (2 * F_ + b0 - 1) / b0, (C + b1 - 1) / b1);
  snprintf(name, sizeof name, "layers.%d.%s.scale", (int)b->layer, VN_V4_EXPERTS_DOWN);
  fargs[6] = declare(b, name, VNRT_E8M0, 3, E, (C + b0 - 1) / b0, (F_ + b1 - 1) / b1);
  const int64_t block[2] = {b0, b1};
  vnrt_attr fa[3] = {a_float("limit", c->swiglu_limit), a_ints("block", block, 2),
                     a_int("act_quant", 128)};
  return node(b, VNRT_OP_MOE_FFN, fargs, 7, fa, b->ref ? 3 : 2, "ffn.routed");
}

/* Expert parallel with the shared expert apart: starts layer b->layer's shared piece, a graph
 * of its own whose input VN_V4_SEG_HF VN_V4_SEG_IN stands for hf; returns that input. */
static vnrt_value shared_piece_input(builder *b, vnrt_value hf) {
  vnrt_value in = -1;
  if (!ok(b)) return -1;
  vnrt_tensor_type t;
  vnrt_status st = vnrt_graph_value_type(b->g, hf, &t);
  if (st == VNRT_OK) b->types->t[3] = t;
  if (st == VNRT_OK) st = vnrt_graph_create(b->ctx, &b->segs[b->shared_at + b->layer]);
  if (st != VNRT_OK) {
    fail_vnrt(b, st, "shared expert piece");
    return -1;
  }
  b->g = b->segs[b->shared_at + b->layer];
  st = vnrt_graph_add_input(b->g, VN_V4_SEG_HF VN_V4_SEG_IN, &t, 0, &in);
  if (st != VNRT_OK) fail_vnrt(b, st, VN_V4_SEG_HF VN_V4_SEG_IN);
  return in;
}

/* Names ys VN_V4_SEG_YS, the shared piece's output, and records its type. */
static void shared_piece_output(builder *b, vnrt_value ys) {
  if (!ok(b)) return;
  vnrt_tensor_type t;
  vnrt_status st = vnrt_graph_value_type(b->g, ys, &t);
  if (st != VNRT_OK) {
    fail_vnrt(b, VNRT_ERROR_INTERNAL, VN_V4_SEG_YS);
    return;
  }
  b->types->t[6] = t;
  const int32_t layer = b->layer;
  b->layer = -1; /* the name as it is */
  vnrt_attr a = a_ints("shape", t.dims, t.rank);
  vnrt_value named = node(b, VNRT_OP_RESHAPE, &ys, 1, &a, 1, VN_V4_SEG_YS);
  b->layer = layer;
  if (ok(b)) {
    st = vnrt_graph_add_output(b->g, named);
    if (st != VNRT_OK) fail_vnrt(b, st, VN_V4_SEG_YS);
  }
}

/* The MoE sub-layer on h; returns R(yr + ys) (ys alone when the graph is split, nothing when
 * the shared expert is its own piece). */
static vnrt_value moe(builder *b, vnrt_value hf, vnrt_value ids) {
  const vn_v4_config *c = b->cfg;
  const int64_t C = c->hidden_size, E = c->n_routed_experts, F_ = c->moe_intermediate_size;
  const int64_t k = c->num_experts_per_tok;
  const char *score = c->scoring_func == VN_V4_SCORING_SOFTMAX   ? "softmax"
                      : c->scoring_func == VN_V4_SCORING_SIGMOID ? "sigmoid"
                                                                 : "sqrt_softplus";
  vnrt_value g = L(b, hf, "ffn.gate.weight", E, C, "ffn.gate");
  vnrt_value route[2];
  if (vn_v4_is_hash_layer(c, b->layer)) {
    vnrt_value args[3] = {g, ids, param(b, "ffn.gate.tid2eid", VNRT_I32, 2, c->vocab_size, k)};
    vnrt_attr a[3] = {a_word("score", score), a_int("norm", c->norm_topk_prob),
                      a_float("scale", c->routed_scaling_factor)};
    nodes(b, VNRT_OP_MOE_HASH_ROUTE, args, 3, a, 3, "ffn.route", route, 2);
  } else {
    vnrt_value args[2] = {g, param(b, "ffn.gate.bias", VNRT_F32, 1, E, 0)};
    vnrt_attr a[4] = {a_int("k", k), a_word("score", score), a_int("norm", c->norm_topk_prob),
                      a_float("scale", c->routed_scaling_factor)};
    nodes(b, VNRT_OP_MOE_ROUTE, args, 2, a, 4, "ffn.route", route, 2);
  }
  if (b->route_outputs && ok(b)) {
    vnrt_status st = vnrt_graph_add_output(b->g, route[1]);
    if (st != VNRT_OK) fail_vnrt(b, st, "ffn.route output");
  }
  b->ep_route[0] = route[0];
  b->ep_route[1] = route[1];
  /* Split for expert parallel: the routed experts run outside the graph. */
  vnrt_value yr = b->segs ? -1 : routed_experts(b, hf, route);
  /* Its own piece: the shared expert runs while the exchange is in flight. */
  vnrt_graph *seg = b->g;
  if (b->segs && b->shared_at > 0) hf = shared_piece_input(b, hf);
  vnrt_value g1 = Lq(b, hf, "ffn.shared_experts.w1", F_, C, "ffn.shared.w1");
  vnrt_value g3 = Lq(b, hf, "ffn.shared_experts.w3", F_, C, "ffn.shared.w3");
  vnrt_value sargs[2] = {g1, g3};
  vnrt_attr la = a_float("limit", c->swiglu_limit);
  vnrt_value act = node(b, VNRT_OP_SWIGLU, sargs, 2, &la, 1, "ffn.shared.act");
  act = F(b, R(b, act, "ffn.shared.act.r"), "ffn.shared.act.f32");
  vnrt_value ys = Lq(b, act, "ffn.shared_experts.w2", C, F_, "ffn.shared.w2");
  if (b->segs && b->shared_at > 0) {
    shared_piece_output(b, ys);
    b->g = seg;
    return -1;
  }
  if (b->segs) return ys;
  vnrt_value sum[2] = {yr, ys};
  return R(b, node(b, VNRT_OP_ADD, sum, 2, NULL, 0, "ffn.sum"), "ffn.y");
}

/* Declares the run-time inputs ids, pos, pos0 of the current graph. */
static void run_inputs(builder *b) {
  const char *in_names[3] = {VN_V4_IN_IDS, VN_V4_IN_POS, VN_V4_IN_POS0};
  const int64_t in_len[3] = {b->T, b->T, 1};
  vnrt_value in[3] = {-1, -1, -1};
  for (int i = 0; i < 3 && ok(b); ++i) {
    vnrt_tensor_type t = {VNRT_I32, 1, {in_len[i], 0, 0, 0}};
    vnrt_status st = vnrt_graph_add_input(b->g, in_names[i], &t, 0, &in[i]);
    if (st != VNRT_OK) fail_vnrt(b, st, in_names[i]);
  }
  b->ids = in[0];
  b->pos = in[1];
  b->pos0 = in[2];
}

/* Expert parallel: ends the current segment at the MoE layer (its outputs X, post, comb, x,
 * weights, experts, ys under the VN_V4_SEG_* names) and starts the next, whose inputs of the
 * same names stand for them; returns there R(yr + ys) and the new X and pre. */
static vnrt_value cut(builder *b, vnrt_value *X, vnrt_value pre[3], vnrt_value hf, vnrt_value ys,
                      vn_v4_segment_types *types) {
  static const char *const names[VN_V4_SEG_VALUES] = {VN_V4_SEG_X,  VN_V4_SEG_POST, VN_V4_SEG_COMB,
                                                      VN_V4_SEG_HF, VN_V4_SEG_W,    VN_V4_SEG_E,
                                                      VN_V4_SEG_YS};
  vnrt_value vals[VN_V4_SEG_VALUES] = {*X, pre[1], pre[2], hf, b->ep_route[0], b->ep_route[1], ys};
  const int32_t layer = b->layer;
  b->layer = -1; /* the names as they are */
  for (int i = 0; i < VN_V4_SEG_VALUES && ok(b); ++i) {
    if (i == 6 && b->shared_at > 0) continue; /* ys: the shared piece's output */
    vnrt_tensor_type t;
    if (vnrt_graph_value_type(b->g, vals[i], &t) != VNRT_OK) {
      fail_vnrt(b, VNRT_ERROR_INTERNAL, names[i]);
      break;
    }
    types->t[i] = t;
    vnrt_attr a = a_ints("shape", t.dims, t.rank);
    vnrt_value named = node(b, VNRT_OP_RESHAPE, &vals[i], 1, &a, 1, names[i]);
    if (ok(b)) {
      vnrt_status st = vnrt_graph_add_output(b->g, named);
      if (st != VNRT_OK) fail_vnrt(b, st, names[i]);
    }
  }
  b->layer = layer;
  if (!ok(b)) return -1;
  vnrt_status st = vnrt_graph_create(b->ctx, &b->segs[b->n_segs]);
  if (st != VNRT_OK) {
    fail_vnrt(b, st, "segment");
    return -1;
  }
  b->g = b->segs[b->n_segs++];
  run_inputs(b);
  const int take[4] = {0, 1, 2, 6}; /* X, post, comb, ys */
  vnrt_value in[4] = {-1, -1, -1, -1};
  for (int i = 0; i < 4 && ok(b); ++i) {
    char name[NAME_SIZE];
    snprintf(name, sizeof name, "%s%s", names[take[i]], VN_V4_SEG_IN);
    st = vnrt_graph_add_input(b->g, name, &types->t[take[i]], 0, &in[i]);
    if (st != VNRT_OK) fail_vnrt(b, st, name);
  }
  vnrt_value yr = -1;
  vnrt_tensor_type yt = types->t[3]; /* yr: like x, [T, C] f32 */
  if (ok(b)) {
    st = vnrt_graph_add_input(b->g, VN_V4_SEG_YR, &yt, 0, &yr);
    if (st != VNRT_OK) fail_vnrt(b, st, VN_V4_SEG_YR);
  }
  *X = in[0];
  pre[0] = -1;
  pre[1] = in[1];
  pre[2] = in[2];
  vnrt_value sum[2] = {yr, in[3]};
  return R(b, node(b, VNRT_OP_ADD, sum, 2, NULL, 0, "ffn.sum"), "ffn.y");
}

void vn_v4_route_output_name(int32_t layer, char *buf, size_t size) {
  snprintf(buf, size, "l%d.ffn.route.1", (int)layer);
}

static vnrt_status build(vnrt_context *ctx, const vn_v4_config *cfg, const vn_v4_graph_options *opt,
                         vnrt_graph **segs, vn_v4_segment_types *types, vnrt_graph **out_graph,
                         char *err, size_t err_size) {
  if (!cfg || !opt || opt->tokens < 1 || opt->max_context < 1 || opt->tokens > opt->max_context) {
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "a graph of %lld tokens for a context of %lld: both must be >= 1 and "
                         "the tokens at most the context",
                         opt ? (long long)opt->tokens : 0LL,
                         opt ? (long long)opt->max_context : 0LL);
  }
  builder bd = {0};
  bd.ctx = ctx;
  bd.cfg = cfg;
  bd.T = opt->tokens;
  bd.max_ctx = opt->max_context;
  bd.ref = !opt->f32_numerics;
  bd.layer = -1;
  bd.route_outputs = opt->route_outputs;
  bd.segs = segs;
  bd.shared_at = segs && opt->shared_apart ? vn_v4_segment_count(cfg) : 0;
  bd.types = types;
  bd.st = VNRT_OK;
  bd.err = err;
  bd.err_size = err_size;
  builder *b = &bd;
  vnrt_status st = vnrt_graph_create(ctx, &b->g);
  if (st != VNRT_OK) {
    return vn_model_fail(err, err_size, st, "graph: %s", vnrt_context_last_error(ctx));
  }
  const int64_t C = cfg->hidden_size, n = cfg->hc_mult;
  const int32_t n_layers = cfg->num_hidden_layers;
  if (segs && cfg->engram.n_layers > 0) { /* the hash segment, segs[L + 1] */
    segs[n_layers + 1] = b->g;
    run_inputs(b);
    vnrt_value h = ngram_history(b, b->ids);
    for (int32_t ei = 0; ei < cfg->engram.n_layers && ok(b); ++ei) {
      b->layer = cfg->engram.layer_ids[ei];
      vnrt_value idx = ngram_idx(b, b->ids, h, ei);
      b->layer = -1; /* the output's name as it is */
      char name[NAME_SIZE];
      snprintf(name, sizeof name, "%s.%d", VN_V4_SEG_ENGRAM_IDX, (int)cfg->engram.layer_ids[ei]);
      vnrt_attr a = a_ints("shape", (const int64_t[]){b->T, cfg->engram.heads}, 2);
      vnrt_value named = node(b, VNRT_OP_RESHAPE, &idx, 1, &a, 1, name);
      if (ok(b)) {
        st = vnrt_graph_add_output(b->g, named);
        if (st != VNRT_OK) fail_vnrt(b, st, name);
      }
    }
    if (ok(b)) {
      st = vnrt_graph_create(ctx, &b->g);
      if (st != VNRT_OK) fail_vnrt(b, st, "segment");
    }
    if (!ok(b)) {
      vnrt_graph_destroy(segs[n_layers + 1]);
      segs[n_layers + 1] = NULL;
      return b->st;
    }
  }
  if (segs) segs[b->n_segs++] = b->g;
  run_inputs(b);

  vnrt_value eargs[2] = {param(b, "embed.weight", VNRT_BF16, 2, cfg->vocab_size, C), b->ids};
  vnrt_value x = node(b, VNRT_OP_EMBEDDING, eargs, 2, NULL, 0, "embed");
  x = R(b, x, "embed.bf16"); /* exact: the table is bf16 */
  vnrt_attr na = a_int("n", n);
  vnrt_value X = node(b, VNRT_OP_HC_EXPAND, &x, 1, &na, 1, "streams");

  /* One n-gram history serves every Engram layer. */
  vnrt_value hist = cfg->engram.n_layers > 0 && !segs ? ngram_history(b, b->ids) : -1;

  for (int32_t i = 0; i < cfg->num_hidden_layers && ok(b); ++i) {
    b->layer = i;
    const int32_t ratio = vn_v4_layer_ratio(cfg, i);
    const int32_t ei = vn_v4_engram_index(cfg, i);
    if (ei >= 0) X = engram(b, X, b->ids, hist, ei);
    vnrt_value pre[3];
    hc_pre(b, X, "attn", pre);
    vnrt_value h = R(b, pre[0], "attn.x.r");
    h = R(b, rms_norm(b, h, norm_w(b, "attn_norm.weight", C), "attn_norm"), "attn.h");
    vnrt_value hf = ratio != 0 ? F(b, h, "attn.h_f32") : -1;
    vnrt_value y = attention(b, h, hf, b->pos, b->pos0, ratio);
    X = R(b, hc_post(b, X, y, pre, "attn.hc_post"), "attn.X");

    hc_pre(b, X, "ffn", pre);
    h = R(b, pre[0], "ffn.x.r");
    h = R(b, rms_norm(b, h, norm_w(b, "ffn_norm.weight", C), "ffn_norm"), "ffn.h");
    hf = F(b, h, "ffn.h_f32");
    y = moe(b, hf, b->ids);
    if (segs) y = cut(b, &X, pre, hf, y, types);
    X = R(b, hc_post(b, X, y, pre, "ffn.hc_post"), "ffn.X");
  }
  b->layer = -1;

  /* Only the last token's logits are needed: slice it before the head (f32 from here on). */
  const int64_t T = b->T;
  vnrt_attr sl[3] = {a_int("axis", 0), a_int("start", T - 1), a_int("len", 1)};
  vnrt_value Xl = node(b, VNRT_OP_SLICE, &X, 1, sl, 3, "last");
  Xl = F(b, Xl, "last.f32");
  vnrt_value hargs[4] = {Xl, param(b, "hc_head_fn", VNRT_F32, 2, n, n * C),
                         param(b, "hc_head_scale", VNRT_F32, 1, 1, 0),
                         param(b, "hc_head_base", VNRT_F32, 1, n, 0)};
  vnrt_attr ha[2] = {a_float("eps", cfg->hc_eps), a_float("norm_eps", cfg->rms_norm_eps)};
  x = node(b, VNRT_OP_HC_HEAD, hargs, 4, ha, 2, "hc_head");
  x = rms_norm(b, x, norm_w(b, "norm.weight", C), "norm");
  vnrt_value logits = L(b, x, "head.weight", cfg->vocab_size, C, VN_V4_OUT_LOGITS);
  if (ok(b)) {
    st = vnrt_graph_add_output(b->g, logits);
    if (st != VNRT_OK) fail_vnrt(b, st, VN_V4_OUT_LOGITS);
  }
  if (!ok(b)) {
    if (segs) {
      for (int32_t i = 0; i < b->n_segs; ++i) {
        vnrt_graph_destroy(segs[i]);
        segs[i] = NULL;
      }
      if (cfg->engram.n_layers > 0) {
        vnrt_graph_destroy(segs[n_layers + 1]);
        segs[n_layers + 1] = NULL;
      }
      for (int32_t i = 0; b->shared_at > 0 && i < n_layers; ++i) {
        vnrt_graph_destroy(segs[b->shared_at + i]);
        segs[b->shared_at + i] = NULL;
      }
    } else {
      vnrt_graph_destroy(b->g);
    }
    return b->st;
  }
  if (out_graph) *out_graph = b->g;
  return VNRT_OK;
}

vnrt_status vn_v4_graph_build(vnrt_context *ctx, const vn_v4_config *cfg,
                              const vn_v4_graph_options *opt, vnrt_graph **out_graph, char *err,
                              size_t err_size) {
  *out_graph = NULL;
  return build(ctx, cfg, opt, NULL, NULL, out_graph, err, err_size);
}

int32_t vn_v4_segment_count(const vn_v4_config *cfg) {
  return cfg->num_hidden_layers + 1 + (cfg->engram.n_layers > 0);
}

vnrt_status vn_v4_graph_build_segments(vnrt_context *ctx, const vn_v4_config *cfg,
                                       const vn_v4_graph_options *opt, vnrt_graph **segs,
                                       vn_v4_segment_types *types, char *err, size_t err_size) {
  if (cfg) {
    const int32_t n =
        vn_v4_segment_count(cfg) + (opt && opt->shared_apart ? cfg->num_hidden_layers : 0);
    for (int32_t i = 0; i < n; ++i) segs[i] = NULL;
  }
  return build(ctx, cfg, opt, segs, types, NULL, err, err_size);
}

vnrt_status vn_v4_graph_build_experts(vnrt_context *ctx, const vn_v4_config *cfg, int32_t layer,
                                      int64_t rows, int32_t k, int32_t n_experts, int f32_numerics,
                                      vnrt_graph **out_graph, char *err, size_t err_size) {
  *out_graph = NULL;
  builder bd = {0};
  bd.ctx = ctx;
  bd.cfg = cfg;
  bd.T = rows;
  bd.max_ctx = rows;
  bd.ref = !f32_numerics;
  bd.layer = layer;
  bd.n_experts = n_experts;
  bd.st = VNRT_OK;
  bd.err = err;
  bd.err_size = err_size;
  builder *b = &bd;
  vnrt_status st = vnrt_graph_create(ctx, &b->g);
  if (st != VNRT_OK) {
    return vn_model_fail(err, err_size, st, "graph: %s", vnrt_context_last_error(ctx));
  }
  const char *names[3] = {VN_V4_EXP_X, VN_V4_EXP_IDS, VN_V4_EXP_W};
  const vnrt_tensor_type types[3] = {{VNRT_F32, 2, {rows, cfg->hidden_size, 0, 0}},
                                     {VNRT_I32, 2, {rows, k, 0, 0}},
                                     {VNRT_F32, 2, {rows, k, 0, 0}}};
  vnrt_value in[3] = {-1, -1, -1};
  for (int i = 0; i < 3 && ok(b); ++i) {
    st = vnrt_graph_add_input(b->g, names[i], &types[i], 0, &in[i]);
    if (st != VNRT_OK) fail_vnrt(b, st, names[i]);
  }
  const vnrt_value route[2] = {in[2], in[1]};
  vnrt_value y = routed_experts(b, in[0], route);
  if (ok(b)) {
    st = vnrt_graph_add_output(b->g, y);
    if (st != VNRT_OK) fail_vnrt(b, st, "ffn.routed");
  }
  if (!ok(b)) {
    vnrt_graph_destroy(b->g);
    return b->st;
  }
  *out_graph = b->g;
  return VNRT_OK;
}
