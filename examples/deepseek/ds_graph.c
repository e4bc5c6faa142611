/* ds_graph: builds the tiny DeepSeek-V4-style forward graph with the public vnrt API (the
 * model's math: mHC, attention, MoE, Engram), layer by layer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ds_model.h"
#include "ds_weights.h"

/* ---- Graph building ----------------------------------------------------------------------- */

/* A builder keeps the first error and turns every later call into a no-op, so the model code
 * below reads as the math it builds. */
typedef struct builder {
  vnrt_context *ctx;
  vnrt_graph *g;
  const ds_config *cfg;
  const ds_tensor_spec *specs;
  int32_t n_specs;
  vnrt_status st;
  char *err;
  size_t err_size;
} builder;

static int ok(const builder *b) { return b->st == VNRT_OK; }

static void fail_vnrt(builder *b, vnrt_status st, const char *what) {
  if (!ok(b)) return;
  b->st = st;
  snprintf(b->err, b->err_size, "%s: %s: %s", what, vnrt_status_string(st),
           vnrt_context_last_error(b->ctx));
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

/* Adds a node with n_out results named "<name>" (one result) or "<name>.<i>". */
static void nodes(builder *b, vnrt_op op, const vnrt_value *in, int32_t n_in,
                  const vnrt_attr *attrs, int32_t n_attrs, const char *name, vnrt_value *outs,
                  int32_t n_out) {
  for (int32_t i = 0; i < n_out; ++i) outs[i] = -1;
  if (!ok(b)) return;
  for (int32_t i = 0; i < n_in; ++i) {
    if (in[i] < 0) return;
  }
  char names[4][DS_NAME_SIZE];
  const char *ptrs[4];
  for (int32_t i = 0; i < n_out && i < 4; ++i) {
    if (n_out == 1) {
      snprintf(names[i], sizeof names[i], "%s", name);
    } else {
      snprintf(names[i], sizeof names[i], "%s.%d", name, (int)i);
    }
    ptrs[i] = names[i];
  }
  vnrt_status st = vnrt_graph_add_node(b->g, op, in, n_in, attrs, n_attrs, ptrs, outs, n_out);
  if (st != VNRT_OK) fail_vnrt(b, st, name);
}

static vnrt_value node(builder *b, vnrt_op op, const vnrt_value *in, int32_t n_in,
                       const vnrt_attr *attrs, int32_t n_attrs, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static vnrt_value node(builder *b, vnrt_op op, const vnrt_value *in, int32_t n_in,
                       const vnrt_attr *attrs, int32_t n_attrs, const char *fmt, ...) {
  char name[DS_NAME_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  vnrt_value out;
  nodes(b, op, in, n_in, attrs, n_attrs, name, &out, 1);
  return out;
}

/* Declares spec as a param. */
static vnrt_value declare(builder *b, const ds_tensor_spec *s) {
  vnrt_value v = -1;
  vnrt_status st = vnrt_graph_add_input(b->g, s->name, &s->type, 1, &v);
  if (st != VNRT_OK) fail_vnrt(b, st, s->name);
  return v;
}

/* A weight of the model, declared with its spec's type; a quantized one also declares its
 * scale and returns it in *scale (-1 for a plain weight; scale may be NULL only for weights
 * that are never quantized). */
static vnrt_value vparam(builder *b, vnrt_value *scale, const char *fmt, va_list ap) {
  if (scale) *scale = -1;
  if (!ok(b)) return -1;
  char name[DS_NAME_SIZE];
  vsnprintf(name, sizeof name, fmt, ap);
  const ds_tensor_spec *s = ds_tensor_spec_find(b->specs, b->n_specs, name);
  if (!s) {
    b->st = VNRT_ERROR_INTERNAL;
    snprintf(b->err, b->err_size, "graph uses %s, which is not in the tensor list", name);
    return -1;
  }
  vnrt_value v = declare(b, s);
  if (s->quant_pair >= 0) {
    if (!scale) {
      b->st = VNRT_ERROR_INTERNAL;
      snprintf(b->err, b->err_size, "%s is quantized where the graph takes no scale", name);
      return -1;
    }
    *scale = declare(b, &b->specs[s->quant_pair]);
  }
  return v;
}

static vnrt_value param(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vnrt_value param(builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vnrt_value v = vparam(b, NULL, fmt, ap);
  va_end(ap);
  return v;
}

/* A big matrix (weight_format may quantize it): its codes and *scale, or the weight and -1. */
static vnrt_value qparam(builder *b, vnrt_value *scale, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vnrt_value qparam(builder *b, vnrt_value *scale, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vnrt_value v = vparam(b, scale, fmt, ap);
  va_end(ap);
  return v;
}

/* The activation quantization of a quantized weight with inputs of k channels: DeepSeek's
 * reference rounds the input of every FP8/FP4 product to e4m3 per 128 channels
 * (act_quant = 128), which needs k to be a multiple of 128; other widths go unquantized. */
static int64_t act_quant_for(int64_t k) { return k % 128 == 0 ? 128 : 0; }

static vnrt_value input(builder *b, const char *name, vnrt_dtype dtype, int64_t n) {
  if (!ok(b)) return -1;
  vnrt_tensor_type t = {dtype, 1, {n}};
  vnrt_value v = -1;
  vnrt_status st = vnrt_graph_add_input(b->g, name, &t, 0, &v);
  if (st != VNRT_OK) fail_vnrt(b, st, name);
  return v;
}

static vnrt_value state(builder *b, const char *name, vnrt_dtype dtype, int32_t rank,
                        const int64_t *dims) {
  if (!ok(b)) return -1;
  vnrt_tensor_type t = {dtype, rank, {0}};
  for (int32_t i = 0; i < rank; ++i) t.dims[i] = dims[i];
  vnrt_value v = -1;
  vnrt_status st = vnrt_graph_add_state(b->g, name, &t, &v);
  if (st != VNRT_OK) fail_vnrt(b, st, name);
  return v;
}

static void update(builder *b, vnrt_value st_value, vnrt_value next, const char *what) {
  if (!ok(b) || st_value < 0 || next < 0) return;
  vnrt_status st = vnrt_graph_set_state_update(b->g, st_value, next);
  if (st != VNRT_OK) fail_vnrt(b, st, what);
}

static vnrt_value linear(builder *b, vnrt_value x, vnrt_value w, const char *name) {
  vnrt_value in[2] = {x, w};
  return node(b, VNRT_OP_LINEAR, in, 2, NULL, 0, "%s", name);
}

/* x · wᵀ with w from qparam: a quantized w takes its scale as the third input (the block is the
 * format's default, as the scale was made) and act_quant per act_quant_for(K). */
static vnrt_value qlinear(builder *b, vnrt_value x, vnrt_value w, vnrt_value scale,
                          const char *name) {
  if (scale < 0) return linear(b, x, w, name);
  if (!ok(b) || w < 0) return -1;
  vnrt_tensor_type wt;
  vnrt_graph_value_type(b->g, w, &wt);
  vnrt_value in[3] = {x, w, scale};
  const int64_t aq = act_quant_for(wt.dims[1]);
  vnrt_attr a = a_int("act_quant", aq);
  return node(b, VNRT_OP_LINEAR, in, 3, &a, aq ? 1 : 0, "%s", name);
}

static vnrt_value reshape(builder *b, vnrt_value x, const int64_t *shape, int32_t rank,
                          const char *name) {
  vnrt_attr a = a_ints("shape", shape, rank);
  return node(b, VNRT_OP_RESHAPE, &x, 1, &a, 1, "%s", name);
}

static vnrt_value rms_norm(builder *b, vnrt_value x, vnrt_value w, const char *name) {
  vnrt_value in[2] = {x, w};
  vnrt_attr a = a_float("eps", b->cfg->norm_eps);
  return node(b, VNRT_OP_RMS_NORM, in, 2, &a, 1, "%s", name);
}

/* mHC collapse of the streams for one sub-layer: x [T, C], post [T, n], comb [T, n, n]. */
static void hc_pre(builder *b, vnrt_value X, int32_t layer, const char *site, vnrt_value out[3]) {
  vnrt_value in[4] = {X, param(b, "model.layers.%d.%s.fn", layer, site),
                      param(b, "model.layers.%d.%s.scale", layer, site),
                      param(b, "model.layers.%d.%s.base", layer, site)};
  vnrt_attr a[3] = {a_int("iters", b->cfg->hc_iters), a_float("eps", b->cfg->hc_eps),
                    a_float("norm_eps", b->cfg->norm_eps)};
  char name[DS_NAME_SIZE];
  snprintf(name, sizeof name, "l%d.%s.pre", layer, site);
  nodes(b, VNRT_OP_HC_PRE, in, 4, a, 3, name, out, 3);
}

static vnrt_value hc_post(builder *b, vnrt_value X, vnrt_value y, const vnrt_value pre[3],
                          int32_t layer, const char *site) {
  vnrt_value in[4] = {X, y, pre[1], pre[2]};
  return node(b, VNRT_OP_HC_POST, in, 4, NULL, 0, "l%d.%s.post", layer, site);
}

/* Engram: hashed 2..N-gram rows, gated per stream by the streams themselves, a causal
 * dilated short convolution, added into every stream. */
static vnrt_value engram(builder *b, vnrt_value X, vnrt_value ids, vnrt_value hist, int32_t layer,
                         int32_t ei, int64_t T) {
  const ds_config *c = b->cfg;
  const int64_t n = c->hc_mult, C = c->hidden;
  vnrt_attr ha[4] = {a_ints("mult", c->engram_mult[ei], (int32_t)c->ngram),
                     a_ints("primes", c->engram_primes[ei], (int32_t)c->engram_heads_total),
                     a_int("max_n", c->ngram), a_int("heads", c->ngram_heads)};
  vnrt_value hin[2] = {ids, hist};
  vnrt_value idx = node(b, VNRT_OP_NGRAM_HASH, hin, 2, ha, 4, "l%d.engram.idx", layer);
  vnrt_value lin[3] = {param(b, "model.layers.%d.engram.embedding.weight", layer), idx,
                       param(b, "model.layers.%d.engram.embedding.offsets", layer)};
  vnrt_value e = node(b, VNRT_OP_ENGRAM_LOOKUP, lin, 3, NULL, 0, "l%d.engram.e", layer);
  char name[DS_NAME_SIZE];
  snprintf(name, sizeof name, "l%d.engram.v", layer);
  vnrt_value v = linear(b, e, param(b, "model.layers.%d.engram.value_proj.weight", layer), name);
  snprintf(name, sizeof name, "l%d.engram.k_flat", layer);
  vnrt_value kf = linear(b, e, param(b, "model.layers.%d.engram.key_proj.weight", layer), name);
  snprintf(name, sizeof name, "l%d.engram.k", layer);
  vnrt_value k = reshape(b, kf, (const int64_t[]){T, n, C}, 3, name);
  vnrt_value gin[5] = {X, k, v, param(b, "model.layers.%d.engram.norm_h.weight", layer),
                       param(b, "model.layers.%d.engram.norm_k.weight", layer)};
  vnrt_attr ga[2] = {a_float("eps", c->norm_eps), a_int("sqrt_gate", 1)};
  vnrt_value u = node(b, VNRT_OP_ENGRAM_GATE, gin, 5, ga, 2, "l%d.engram.u", layer);
  /* The history holds the last (kernel-1)*dilation normalised rows (config: kernel >= 2). */
  snprintf(name, sizeof name, "model.layers.%d.engram.conv_state", layer);
  const int64_t P = (c->conv_kernel - 1) * c->ngram;
  vnrt_value conv_hist = state(b, name, VNRT_F32, 3, (const int64_t[]){P, n, C});
  vnrt_value cin[4] = {u, conv_hist, param(b, "model.layers.%d.engram.conv_norm.weight", layer),
                       param(b, "model.layers.%d.engram.conv.weight", layer)};
  vnrt_attr ca[2] = {a_int("dilation", c->ngram), a_float("eps", c->norm_eps)};
  vnrt_value conv[2];
  snprintf(name, sizeof name, "l%d.engram.conv", layer);
  nodes(b, VNRT_OP_SHORT_CONV, cin, 4, ca, 2, name, conv, 2);
  update(b, conv_hist, conv[1], "engram conv history");
  vnrt_value y = conv[0];
  vnrt_value ain[2] = {X, y};
  return node(b, VNRT_OP_ADD, ain, 2, NULL, 0, "l%d.engram.out", layer);
}

/* MQA attention with partial RoPE, a sliding window and per-head sinks over a KV cache. */
static vnrt_value attention(builder *b, vnrt_value h, vnrt_value pos, vnrt_value start,
                            vnrt_value kv_len, int32_t layer, int64_t T) {
  const ds_config *c = b->cfg;
  const int64_t Hq = c->heads, D = c->head_dim;
  char name[DS_NAME_SIZE];
  snprintf(name, sizeof name, "l%d.attn.q_flat", layer);
  vnrt_value qs;
  vnrt_value qw = qparam(b, &qs, "model.layers.%d.self_attn.q_proj.weight", layer);
  vnrt_value q = qlinear(b, h, qw, qs, name);
  snprintf(name, sizeof name, "l%d.attn.q_heads", layer);
  q = reshape(b, q, (const int64_t[]){T, Hq, D}, 3, name);
  snprintf(name, sizeof name, "l%d.attn.k_flat", layer);
  vnrt_value ks;
  vnrt_value kw = qparam(b, &ks, "model.layers.%d.self_attn.k_proj.weight", layer);
  vnrt_value k = qlinear(b, h, kw, ks, name);
  snprintf(name, sizeof name, "l%d.attn.k_heads", layer);
  k = reshape(b, k, (const int64_t[]){T, 1, D}, 3, name);
  snprintf(name, sizeof name, "l%d.attn.v_flat", layer);
  vnrt_value vs;
  vnrt_value vw = qparam(b, &vs, "model.layers.%d.self_attn.v_proj.weight", layer);
  vnrt_value v = qlinear(b, h, vw, vs, name);
  snprintf(name, sizeof name, "l%d.attn.v", layer);
  v = reshape(b, v, (const int64_t[]){T, 1, D}, 3, name);
  if (c->rope_dim > 0) {
    vnrt_attr ra[3] = {a_float("theta", c->rope_theta), a_int("dims", c->rope_dim),
                       a_int("interleaved", 1)};
    vnrt_value qin[2] = {q, pos}, kin[2] = {k, pos};
    q = node(b, VNRT_OP_ROPE, qin, 2, ra, 3, "l%d.attn.q", layer);
    k = node(b, VNRT_OP_ROPE, kin, 2, ra, 3, "l%d.attn.k", layer);
  }
  const int64_t cache_dims[3] = {c->max_seq, 1, D};
  snprintf(name, sizeof name, "model.layers.%d.self_attn.k_cache", layer);
  vnrt_value kc = state(b, name, VNRT_F32, 3, cache_dims);
  snprintf(name, sizeof name, "model.layers.%d.self_attn.v_cache", layer);
  vnrt_value vc = state(b, name, VNRT_F32, 3, cache_dims);
  vnrt_value kw_in[3] = {kc, k, start}, vw_in[3] = {vc, v, start};
  vnrt_value kc2 = node(b, VNRT_OP_KV_WRITE, kw_in, 3, NULL, 0, "l%d.attn.k_cache", layer);
  vnrt_value vc2 = node(b, VNRT_OP_KV_WRITE, vw_in, 3, NULL, 0, "l%d.attn.v_cache", layer);
  update(b, kc, kc2, "k cache");
  update(b, vc, vc2, "v cache");
  vnrt_value ain[5] = {q, kc2, vc2, param(b, "model.layers.%d.self_attn.sinks", layer), kv_len};
  vnrt_attr aa[2] = {a_int("causal", 1), a_int("window", c->window)};
  vnrt_value o = node(b, VNRT_OP_ATTENTION, ain, 5, aa, 2, "l%d.attn.o_heads", layer);
  snprintf(name, sizeof name, "l%d.attn.o", layer);
  o = reshape(b, o, (const int64_t[]){T, Hq * D}, 2, name);
  snprintf(name, sizeof name, "l%d.attn.y", layer);
  vnrt_value os;
  vnrt_value ow = qparam(b, &os, "model.layers.%d.self_attn.o_proj.weight", layer);
  return qlinear(b, o, ow, os, name);
}

/* DeepSeekMoE: routed experts (hash-routed by token id in the first layers, top-k by biased
 * scores later) plus a shared SwiGLU expert. */
static vnrt_value moe(builder *b, vnrt_value h, vnrt_value ids, int32_t layer) {
  const ds_config *c = b->cfg;
  char name[DS_NAME_SIZE];
  snprintf(name, sizeof name, "l%d.mlp.logits", layer);
  vnrt_value logits = linear(b, h, param(b, "model.layers.%d.mlp.gate.weight", layer), name);
  vnrt_value route[2];
  snprintf(name, sizeof name, "l%d.mlp.route", layer);
  if (layer < c->hash_layers) {
    vnrt_value rin[3] = {logits, ids, param(b, "model.layers.%d.mlp.gate.tid2eid", layer)};
    vnrt_attr ra[3] = {a_word("score", ds_score_word(c->score)), a_int("norm", 1),
                       a_float("scale", c->route_scale)};
    nodes(b, VNRT_OP_MOE_HASH_ROUTE, rin, 3, ra, 3, name, route, 2);
  } else {
    vnrt_value rin[2] = {logits,
                         param(b, "model.layers.%d.mlp.gate.e_score_correction_bias", layer)};
    vnrt_attr ra[4] = {a_int("k", c->top_k), a_word("score", ds_score_word(c->score)),
                       a_int("norm", 1), a_float("scale", c->route_scale)};
    nodes(b, VNRT_OP_MOE_ROUTE, rin, 2, ra, 4, name, route, 2);
  }
  vnrt_value fin[7] = {h, route[1], route[0], -1, -1, -1, -1};
  fin[3] = qparam(b, &fin[5], "model.layers.%d.mlp.experts.gate_up_proj", layer);
  fin[4] = qparam(b, &fin[6], "model.layers.%d.mlp.experts.down_proj", layer);
  vnrt_attr limit = a_float("limit", c->swiglu_limit);
  /* Quantized experts take both scales (the format quantizes both matrices), and act_quant
   * when both products' inputs (C and F channels) allow it. */
  const int quant = fin[5] >= 0;
  const int64_t aq = quant && act_quant_for(c->hidden) && act_quant_for(c->expert_ffn) ? 128 : 0;
  vnrt_attr fa[2] = {limit, a_int("act_quant", aq)};
  vnrt_value y =
      node(b, VNRT_OP_MOE_FFN, fin, quant ? 7 : 5, fa, aq ? 2 : 1, "l%d.mlp.routed", layer);
  if (c->shared == 0) return y;
  snprintf(name, sizeof name, "l%d.mlp.shared.gate", layer);
  vnrt_value gs;
  vnrt_value gw = qparam(b, &gs, "model.layers.%d.mlp.shared_experts.gate_proj.weight", layer);
  vnrt_value g = qlinear(b, h, gw, gs, name);
  snprintf(name, sizeof name, "l%d.mlp.shared.up", layer);
  vnrt_value us;
  vnrt_value uw = qparam(b, &us, "model.layers.%d.mlp.shared_experts.up_proj.weight", layer);
  vnrt_value u = qlinear(b, h, uw, us, name);
  vnrt_value sin[2] = {g, u};
  vnrt_value a = node(b, VNRT_OP_SWIGLU, sin, 2, &limit, 1, "l%d.mlp.shared.act", layer);
  snprintf(name, sizeof name, "l%d.mlp.shared.y", layer);
  vnrt_value ds;
  vnrt_value dw = qparam(b, &ds, "model.layers.%d.mlp.shared_experts.down_proj.weight", layer);
  vnrt_value ys = qlinear(b, a, dw, ds, name);
  vnrt_value sum[2] = {y, ys};
  return node(b, VNRT_OP_ADD, sum, 2, NULL, 0, "l%d.mlp.y", layer);
}

vnrt_status ds_graph_build(vnrt_context *ctx, const ds_config *cfg, int64_t T,
                           vnrt_graph **out_graph, char *err, size_t err_size) {
  *out_graph = NULL;
  if (T < 1 || T > cfg->max_seq) {
    snprintf(err, err_size, "graph for %lld tokens: must be in [1, max_position_embeddings = %lld]",
             (long long)T, (long long)cfg->max_seq);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  ds_tensor_spec *specs = NULL;
  int32_t n_specs = 0;
  if (ds_tensor_specs(cfg, &specs, &n_specs)) {
    snprintf(err, err_size, "out of memory listing the tensors");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  builder bd = {ctx, NULL, cfg, specs, n_specs, VNRT_OK, err, err_size};
  builder *b = &bd;
  vnrt_status st = vnrt_graph_create(ctx, &b->g);
  if (st != VNRT_OK) {
    snprintf(err, err_size, "graph: %s", vnrt_context_last_error(ctx));
    free(specs);
    return st;
  }
  const int64_t n = cfg->hc_mult;
  vnrt_value ids = input(b, "ids", VNRT_I32, T);
  vnrt_value pos = input(b, "pos", VNRT_I32, T);
  vnrt_value start = input(b, "start", VNRT_I32, 1);
  vnrt_value kv_len = input(b, "kv_len", VNRT_I32, 1);

  vnrt_value ein[2] = {param(b, "model.embed_tokens.weight"), ids};
  vnrt_value x = node(b, VNRT_OP_EMBEDDING, ein, 2, NULL, 0, "embed");
  vnrt_attr na = a_int("n", n);
  vnrt_value X = node(b, VNRT_OP_HC_EXPAND, &x, 1, &na, 1, "streams");

  /* One n-gram history serves every Engram layer: it is the last N-1 token ids. */
  vnrt_value hist = -1;
  if (cfg->n_engram > 0) {
    hist = state(b, DS_NGRAM_HIST_STATE, VNRT_I32, 1, (const int64_t[]){cfg->ngram - 1});
    vnrt_value cin[2] = {hist, ids};
    vnrt_attr ca = a_int("axis", 0);
    vnrt_value all = node(b, VNRT_OP_CONCAT, cin, 2, &ca, 1, "engram.ids_with_hist");
    vnrt_attr sa[3] = {a_int("axis", 0), a_int("start", T), a_int("len", cfg->ngram - 1)};
    vnrt_value next = node(b, VNRT_OP_SLICE, &all, 1, sa, 3, "engram.next_hist");
    update(b, hist, next, "n-gram history");
  }

  for (int32_t l = 0; l < (int32_t)cfg->layers; ++l) {
    int32_t ei = ds_config_engram_index(cfg, l);
    if (ei >= 0) X = engram(b, X, ids, hist, l, ei, T);

    char name[DS_NAME_SIZE];
    vnrt_value pre[3];
    hc_pre(b, X, l, "attn_hc", pre);
    snprintf(name, sizeof name, "l%d.attn.norm", l);
    vnrt_value h = rms_norm(b, pre[0], param(b, "model.layers.%d.input_layernorm.weight", l), name);
    vnrt_value y = attention(b, h, pos, start, kv_len, l, T);
    X = hc_post(b, X, y, pre, l, "attn_hc");

    hc_pre(b, X, l, "ffn_hc", pre);
    snprintf(name, sizeof name, "l%d.mlp.norm", l);
    h = rms_norm(b, pre[0], param(b, "model.layers.%d.post_attention_layernorm.weight", l), name);
    y = moe(b, h, ids, l);
    X = hc_post(b, X, y, pre, l, "ffn_hc");
  }

  vnrt_value hin[4] = {X, param(b, "model.hc_head.fn"), param(b, "model.hc_head.scale"),
                       param(b, "model.hc_head.base")};
  vnrt_attr ha[2] = {a_float("eps", cfg->hc_eps), a_float("norm_eps", cfg->norm_eps)};
  x = node(b, VNRT_OP_HC_HEAD, hin, 4, ha, 2, "head");
  x = rms_norm(b, x, param(b, "model.norm.weight"), "final_norm");
  vnrt_value logits = linear(b, x, param(b, "lm_head.weight"), "logits");
  if (ok(b)) {
    st = vnrt_graph_add_output(b->g, logits);
    if (st != VNRT_OK) fail_vnrt(b, st, "logits");
  }
  free(specs);
  if (!ok(b)) {
    vnrt_graph_destroy(b->g);
    return b->st;
  }
  *out_graph = b->g;
  return VNRT_OK;
}
