/* ds_model: builds the tiny DeepSeek-V4-style forward graph with the public vnrt API, checks
 * and binds the memory-mapped weights, and runs prefill and decode plans that share states. */
#include "ds_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_weights.h"
#include "vnrt/io.h"
#include "vnrt/memory.h"

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

/* A weight of the model, declared with its spec's type. */
static vnrt_value param(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vnrt_value param(builder *b, const char *fmt, ...) {
  if (!ok(b)) return -1;
  char name[DS_NAME_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  const ds_tensor_spec *s = ds_tensor_spec_find(b->specs, b->n_specs, name);
  if (!s) {
    b->st = VNRT_ERROR_INTERNAL;
    snprintf(b->err, b->err_size, "graph uses %s, which is not in the tensor list", name);
    return -1;
  }
  vnrt_value v = -1;
  vnrt_status st = vnrt_graph_add_input(b->g, name, &s->type, 1, &v);
  if (st != VNRT_OK) fail_vnrt(b, st, name);
  return v;
}

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
  vnrt_value q = linear(b, h, param(b, "model.layers.%d.self_attn.q_proj.weight", layer), name);
  snprintf(name, sizeof name, "l%d.attn.q_heads", layer);
  q = reshape(b, q, (const int64_t[]){T, Hq, D}, 3, name);
  snprintf(name, sizeof name, "l%d.attn.k_flat", layer);
  vnrt_value k = linear(b, h, param(b, "model.layers.%d.self_attn.k_proj.weight", layer), name);
  snprintf(name, sizeof name, "l%d.attn.k_heads", layer);
  k = reshape(b, k, (const int64_t[]){T, 1, D}, 3, name);
  snprintf(name, sizeof name, "l%d.attn.v_flat", layer);
  vnrt_value v = linear(b, h, param(b, "model.layers.%d.self_attn.v_proj.weight", layer), name);
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
  return linear(b, o, param(b, "model.layers.%d.self_attn.o_proj.weight", layer), name);
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
  vnrt_value fin[5] = {h, route[1], route[0],
                       param(b, "model.layers.%d.mlp.experts.gate_up_proj", layer),
                       param(b, "model.layers.%d.mlp.experts.down_proj", layer)};
  vnrt_attr limit = a_float("limit", c->swiglu_limit);
  vnrt_value y = node(b, VNRT_OP_MOE_FFN, fin, 5, &limit, 1, "l%d.mlp.routed", layer);
  if (c->shared == 0) return y;
  snprintf(name, sizeof name, "l%d.mlp.shared.gate", layer);
  vnrt_value g =
      linear(b, h, param(b, "model.layers.%d.mlp.shared_experts.gate_proj.weight", layer), name);
  snprintf(name, sizeof name, "l%d.mlp.shared.up", layer);
  vnrt_value u =
      linear(b, h, param(b, "model.layers.%d.mlp.shared_experts.up_proj.weight", layer), name);
  vnrt_value sin[2] = {g, u};
  vnrt_value a = node(b, VNRT_OP_SWIGLU, sin, 2, &limit, 1, "l%d.mlp.shared.act", layer);
  snprintf(name, sizeof name, "l%d.mlp.shared.y", layer);
  vnrt_value ys =
      linear(b, a, param(b, "model.layers.%d.mlp.shared_experts.down_proj.weight", layer), name);
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

/* ---- The model: weights, plans, sequence ------------------------------------------------ */

typedef struct state_entry {
  char name[DS_NAME_SIZE];
  size_t bytes;
} state_entry;

struct ds_model {
  vnrt_context *ctx;
  ds_config cfg;
  char *weights_path;
  vnrt_safetensors *file;
  ds_tensor_spec *specs;
  int32_t n_specs;
  void **derived; /* per spec: the bytes of a derived tensor, else NULL */
  vnrt_plan *prefill, *decode;
  int64_t prefill_len;
  state_entry *states;
  int32_t n_states;
  void *scratch; /* a state in transit from the prefill plan to the decode plan */
  size_t scratch_bytes;
  int32_t *pos_buf;
  int64_t pos; /* tokens in the current sequence */
  int started; /* a prefill ran since the last compile */
  ds_timing timing;
  vnrt_run_stats prefill_stats, decode_stats;
  ds_model_options options;
  vnrt_engram_store *stores[DS_MAX_ENGRAM_LAYERS]; /* with options.engram_store */
  char err[DS_ERR_SIZE];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static vnrt_status merr(ds_model *m, vnrt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vnrt_status merr(ds_model *m, vnrt_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->err, sizeof m->err, fmt, ap);
  va_end(ap);
  return st;
}

/* "bf16[4096, 256]" */
static const char *type_str(const vnrt_tensor_type *t, char *buf, size_t size) {
  int used = snprintf(buf, size, "%s[", vnrt_dtype_name(t->dtype));
  for (int32_t i = 0; i < t->rank && used > 0 && (size_t)used < size; ++i) {
    used +=
        snprintf(buf + used, size - (size_t)used, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  }
  if (used > 0 && (size_t)used < size) snprintf(buf + used, size - (size_t)used, "]");
  return buf;
}

static int same_type(const vnrt_tensor_type *a, const vnrt_tensor_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int32_t i = 0; i < a->rank; ++i) {
    if (a->dims[i] != b->dims[i]) return 0;
  }
  return 1;
}

/* The first tensor of the file that the model does not use, or NULL. */
static const char *first_unexpected(const ds_model *m) {
  for (int32_t i = 0; i < vnrt_safetensors_count(m->file); ++i) {
    const char *name = vnrt_safetensors_name(m->file, i);
    const ds_tensor_spec *s = ds_tensor_spec_find(m->specs, m->n_specs, name);
    if (!s || s->derived) return name;
  }
  return NULL;
}

static vnrt_status check_weights(ds_model *m, const char *path) {
  for (int32_t i = 0; i < m->n_specs; ++i) {
    const ds_tensor_spec *s = &m->specs[i];
    if (s->derived) continue;
    vnrt_tensor_type t;
    vnrt_status st = vnrt_safetensors_find(m->file, s->name, &t, NULL, NULL);
    char want[96], got[96];
    if (st == VNRT_ERROR_NOT_FOUND) {
      const char *other = first_unexpected(m);
      return merr(m, st, "%s: missing tensor '%s' (%s)%s%s%s", path, s->name,
                  type_str(&s->type, want, sizeof want),
                  other ? "; the file has an unexpected tensor '" : "", other ? other : "",
                  other ? "' (misnamed?)" : "");
    }
    if (st != VNRT_OK) {
      return merr(m, st, "%s: tensor '%s': %s", path, s->name, vnrt_context_last_error(m->ctx));
    }
    if (!same_type(&t, &s->type)) {
      return merr(m, VNRT_ERROR_SHAPE_MISMATCH, "%s: tensor '%s' is %s but the config needs %s",
                  path, s->name, type_str(&t, got, sizeof got),
                  type_str(&s->type, want, sizeof want));
    }
  }
  const char *other = first_unexpected(m);
  if (other) {
    return merr(m, VNRT_ERROR_INVALID_ARGUMENT,
                "%s: unexpected tensor '%s': not part of the model this config describes", path,
                other);
  }
  return VNRT_OK;
}

vnrt_status ds_model_open(vnrt_context *ctx, const ds_config *cfg, const char *weights_path,
                          ds_model **out_model, char *err, size_t err_size) {
  *out_model = NULL;
  ds_model *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, err_size, "out of memory");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  m->ctx = ctx;
  m->cfg = *cfg;
  m->weights_path = strdup(weights_path ? weights_path : "");
  vnrt_status st = m->weights_path ? VNRT_OK : VNRT_ERROR_OUT_OF_MEMORY;
  char why[DS_ERR_SIZE];
  if (st != VNRT_OK) {
    merr(m, st, "out of memory");
  } else if (ds_config_finish(&m->cfg, why, sizeof why)) {
    st = merr(m, VNRT_ERROR_INVALID_ARGUMENT, "config: %s", why);
  } else if (ds_tensor_specs(&m->cfg, &m->specs, &m->n_specs)) {
    st = merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory listing the tensors");
  } else if ((st = vnrt_safetensors_open(ctx, weights_path, &m->file)) != VNRT_OK) {
    merr(m, st, "%s", vnrt_context_last_error(ctx));
  } else {
    st = check_weights(m, weights_path);
  }
  if (st == VNRT_OK) {
    m->derived = calloc((size_t)m->n_specs, sizeof *m->derived);
    m->pos_buf = calloc((size_t)m->cfg.max_seq, sizeof *m->pos_buf);
    if (!m->derived || !m->pos_buf) st = merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    for (int32_t i = 0; i < m->n_specs && st == VNRT_OK; ++i) {
      if (!m->specs[i].derived) continue;
      m->derived[i] = malloc(vnrt_tensor_type_bytes(&m->specs[i].type) + 1);
      if (!m->derived[i]) {
        st = merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
      } else {
        ds_tensor_fill(&m->cfg, &m->specs[i], m->derived[i]);
      }
    }
  }
  if (st != VNRT_OK) {
    snprintf(err, err_size, "%s", m->err);
    ds_model_close(m);
    return st;
  }
  *out_model = m;
  return VNRT_OK;
}

static void drop_plans(ds_model *m) {
  vnrt_plan_destroy(m->prefill);
  vnrt_plan_destroy(m->decode);
  m->prefill = m->decode = NULL;
  for (int32_t i = 0; i < DS_MAX_ENGRAM_LAYERS; ++i) {
    vnrt_engram_store_destroy(m->stores[i]); /* after the plans that borrow them */
    m->stores[i] = NULL;
  }
  free(m->states);
  m->states = NULL;
  m->n_states = 0;
  m->started = 0;
  m->pos = 0;
}

void ds_model_close(ds_model *m) {
  if (!m) return;
  drop_plans(m);
  for (int32_t i = 0; m->derived && i < m->n_specs; ++i) free(m->derived[i]);
  free(m->derived);
  free(m->specs);
  free(m->scratch);
  free(m->pos_buf);
  free(m->weights_path);
  vnrt_safetensors_close(m->file);
  free(m);
}

/* Compiles the graph for T tokens; the first compile also records the states' names. */
static vnrt_status compile_one(ds_model *m, vnrt_device *device, int64_t T,
                               const vnrt_plan_desc *desc, vnrt_plan *share, vnrt_plan **out,
                               double *seconds) {
  vnrt_graph *g = NULL;
  char why[DS_ERR_SIZE];
  vnrt_status st = ds_graph_build(m->ctx, &m->cfg, T, &g, why, sizeof why);
  if (st != VNRT_OK) return merr(m, st, "building the %lld-token graph: %s", (long long)T, why);
  if (!m->states) {
    int32_t n = vnrt_graph_state_count(g);
    m->states = calloc((size_t)(n > 0 ? n : 1), sizeof *m->states);
    if (!m->states) {
      vnrt_graph_destroy(g);
      return merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    for (int32_t i = 0; i < n; ++i) {
      vnrt_value v = vnrt_graph_state(g, i, NULL);
      vnrt_tensor_type t;
      vnrt_graph_value_type(g, v, &t);
      snprintf(m->states[i].name, sizeof m->states[i].name, "%s", vnrt_graph_value_name(g, v));
      m->states[i].bytes = vnrt_tensor_type_bytes(&t);
      if (m->states[i].bytes > m->scratch_bytes) {
        void *grown = realloc(m->scratch, m->states[i].bytes);
        if (!grown) {
          vnrt_graph_destroy(g);
          return merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
        }
        m->scratch = grown;
        m->scratch_bytes = m->states[i].bytes;
      }
    }
    m->n_states = n;
  }
  double t0 = now_s();
  st = vnrt_plan_create_shared(m->ctx, g, device, desc, share, out);
  *seconds = now_s() - t0;
  vnrt_graph_destroy(g);
  if (st != VNRT_OK) {
    return merr(m, st, "compiling the %lld-token plan: %s", (long long)T,
                vnrt_context_last_error(m->ctx));
  }
  return VNRT_OK;
}

/* The Engram store serving a tensor, or NULL. */
static vnrt_engram_store *store_for(const ds_model *m, const ds_tensor_spec *s) {
  if (!m->options.engram_store || !strstr(s->name, ".engram.embedding.weight")) return NULL;
  int32_t ei = ds_config_engram_index(&m->cfg, s->layer);
  return ei >= 0 ? m->stores[ei] : NULL;
}

static vnrt_status bind_weights(ds_model *m, vnrt_plan *plan) {
  for (int32_t i = 0; i < m->n_specs; ++i) {
    const ds_tensor_spec *s = &m->specs[i];
    if (store_for(m, s)) continue; /* the plan reads it through the store */
    const void *data = m->derived[i];
    size_t bytes = vnrt_tensor_type_bytes(&s->type);
    if (!s->derived) {
      vnrt_tensor_type t; /* checked against the spec when the file was opened */
      vnrt_status st = vnrt_safetensors_find(m->file, s->name, &t, &data, &bytes);
      if (st != VNRT_OK) {
        return merr(m, st, "tensor '%s': %s", s->name, vnrt_context_last_error(m->ctx));
      }
    }
    /* Borrowed: the mapping outlives the plans, so streamed weights are read from it. */
    vnrt_status st = vnrt_plan_set_input_ref(plan, s->name, data, bytes);
    if (st != VNRT_OK) {
      return merr(m, st, "binding '%s': %s", s->name, vnrt_context_last_error(m->ctx));
    }
  }
  return VNRT_OK;
}

vnrt_status ds_model_compile(ds_model *m, vnrt_device *device, int64_t prefill_len,
                             const ds_model_options *options) {
  if (!m) return VNRT_ERROR_INVALID_ARGUMENT;
  drop_plans(m);
  memset(&m->options, 0, sizeof m->options);
  if (options) m->options = *options;
  if (prefill_len < 1 || prefill_len > m->cfg.max_seq) {
    return merr(m, VNRT_ERROR_INVALID_ARGUMENT,
                "a prompt of %lld tokens: must be in [1, max_position_embeddings = %lld]",
                (long long)prefill_len, (long long)m->cfg.max_seq);
  }
  memset(&m->timing, 0, sizeof m->timing);
  memset(&m->prefill_stats, 0, sizeof m->prefill_stats);
  memset(&m->decode_stats, 0, sizeof m->decode_stats);
  vnrt_plan_desc desc = {0};
  desc.device_memory_limit = m->options.device_memory_limit;
  vnrt_engram_binding bindings[DS_MAX_ENGRAM_LAYERS];
  char table_names[DS_MAX_ENGRAM_LAYERS][DS_NAME_SIZE];
  vnrt_status st = VNRT_OK;
  if (m->options.engram_store) {
    for (int32_t i = 0; i < m->cfg.n_engram && st == VNRT_OK; ++i) {
      snprintf(table_names[i], sizeof table_names[i], "model.layers.%d.engram.embedding.weight",
               (int)m->cfg.engram_layer[i]);
      vnrt_engram_store_desc sd = {0};
      sd.file_path = m->weights_path;
      sd.tensor_name = table_names[i];
      sd.cache_slots = m->options.engram_cache_rows;
      st = vnrt_engram_store_create(m->ctx, &sd, &m->stores[i]);
      if (st != VNRT_OK) {
        merr(m, st, "Engram store for %s: %s", table_names[i], vnrt_context_last_error(m->ctx));
      }
      bindings[i].param = table_names[i];
      bindings[i].store = m->stores[i];
    }
    desc.engram = bindings;
    desc.n_engram = m->cfg.n_engram;
  }
  if (st == VNRT_OK) {
    st = compile_one(m, device, prefill_len, &desc, NULL, &m->prefill,
                     &m->timing.compile_prefill_s);
  }
  if (st == VNRT_OK) {
    st = compile_one(m, device, 1, &desc, m->options.no_share ? NULL : m->prefill, &m->decode,
                     &m->timing.compile_decode_s);
  }
  double t0 = now_s();
  if (st == VNRT_OK) st = bind_weights(m, m->prefill);
  /* Every weight has the same name and shape in both graphs, so vnrt_plan_create_shared shares
   * all of them unless a plan streams some or replicates some for CPU fallback: then the
   * decode plan gets its own bindings too (a shared one is just written again). */
  vnrt_plan_info pi = {0}, di = {0};
  if (st == VNRT_OK) st = vnrt_plan_get_info(m->prefill, &pi);
  if (st == VNRT_OK) st = vnrt_plan_get_info(m->decode, &di);
  int all_shared = !m->options.no_share && pi.n_streamed_params == 0 &&
                   di.n_streamed_params == 0 && pi.n_fallback_nodes == 0 &&
                   di.n_fallback_nodes == 0;
  if (st == VNRT_OK && !all_shared) st = bind_weights(m, m->decode);
  m->timing.bind_s = now_s() - t0;
  if (st != VNRT_OK) {
    drop_plans(m);
    return st;
  }
  m->prefill_len = prefill_len;
  return VNRT_OK;
}

/* Binds the per-run inputs for tokens [first, first + T) of the sequence. */
static vnrt_status bind_step(ds_model *m, vnrt_plan *plan, const int32_t *ids, int64_t T,
                             int64_t first) {
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= m->cfg.vocab) {
      return merr(m, VNRT_ERROR_OUT_OF_RANGE,
                  "token id %d at position %lld is outside the vocabulary [0, %lld)", (int)ids[t],
                  (long long)(first + t), (long long)m->cfg.vocab);
    }
    m->pos_buf[t] = (int32_t)(first + t);
  }
  int32_t start = (int32_t)first, kv_len = (int32_t)(first + T);
  struct {
    const char *name;
    const void *data;
    size_t bytes;
  } in[4] = {{"ids", ids, (size_t)T * sizeof(int32_t)},
             {"pos", m->pos_buf, (size_t)T * sizeof(int32_t)},
             {"start", &start, sizeof start},
             {"kv_len", &kv_len, sizeof kv_len}};
  for (int i = 0; i < 4; ++i) {
    vnrt_status st = vnrt_plan_set_input(plan, in[i].name, in[i].data, in[i].bytes);
    if (st != VNRT_OK) {
      return merr(m, st, "input '%s': %s", in[i].name, vnrt_context_last_error(m->ctx));
    }
  }
  return VNRT_OK;
}

/* Adds one run's statistics to a sum (overlap summed too: averaged when reported). */
static void add_stats(vnrt_run_stats *sum, const vnrt_run_stats *r) {
  sum->wall_ns += r->wall_ns;
  sum->compute_ns += r->compute_ns;
  sum->copy_ns += r->copy_ns;
  sum->stall_ns += r->stall_ns;
  sum->overlap += r->overlap;
  sum->bytes_weights += r->bytes_weights;
  sum->bytes_engram += r->bytes_engram;
  sum->bytes_transfers += r->bytes_transfers;
  sum->engram_rows += r->engram_rows;
  sum->engram_hits += r->engram_hits;
}

static vnrt_status run_and_read(ds_model *m, vnrt_plan *plan, float *logits, int64_t T,
                                double *seconds, vnrt_run_stats *stats, const char *what) {
  double t0 = now_s();
  vnrt_status st = vnrt_plan_run(plan);
  *seconds += now_s() - t0;
  if (st != VNRT_OK) return merr(m, st, "%s: %s", what, vnrt_context_last_error(m->ctx));
  vnrt_run_stats r;
  if (vnrt_plan_get_run_stats(plan, &r) == VNRT_OK) add_stats(stats, &r);
  if (logits) {
    st = vnrt_plan_read_output(plan, "logits", logits,
                               (size_t)T * (size_t)m->cfg.vocab * sizeof(float));
    if (st != VNRT_OK) {
      return merr(m, st, "%s: reading logits: %s", what, vnrt_context_last_error(m->ctx));
    }
  }
  return VNRT_OK;
}

vnrt_status ds_model_prefill(ds_model *m, const int32_t *ids, float *logits) {
  if (!m || !ids) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!m->prefill) return merr(m, VNRT_ERROR_INVALID_ARGUMENT, "prefill: no compiled plans");
  m->started = 0;
  vnrt_status st = vnrt_plan_reset_state(m->prefill);
  if (st != VNRT_OK) return merr(m, st, "reset: %s", vnrt_context_last_error(m->ctx));
  if (m->cfg.n_engram > 0) {
    /* A new sequence has only pad tokens before its first one. */
    int32_t pads[DS_MAX_NGRAM];
    for (int i = 0; i < DS_MAX_NGRAM; ++i) pads[i] = m->cfg.pad_id;
    st = vnrt_plan_set_input(m->prefill, DS_NGRAM_HIST_STATE, pads,
                             (size_t)(m->cfg.ngram - 1) * sizeof(int32_t));
    if (st != VNRT_OK) return merr(m, st, "n-gram history: %s", vnrt_context_last_error(m->ctx));
  }
  st = bind_step(m, m->prefill, ids, m->prefill_len, 0);
  if (st == VNRT_OK) {
    st = run_and_read(m, m->prefill, logits, m->prefill_len, &m->timing.prefill_s,
                      &m->prefill_stats, "prefill");
  }
  if (st != VNRT_OK) return st;
  m->timing.prefill_runs++;
  /* The decode plan continues from the prefill plan's caches and histories. */
  for (int32_t i = 0; i < m->n_states; ++i) {
    const state_entry *s = &m->states[i];
    st = vnrt_plan_read_state(m->prefill, s->name, m->scratch, s->bytes);
    if (st == VNRT_OK) st = vnrt_plan_set_input(m->decode, s->name, m->scratch, s->bytes);
    if (st != VNRT_OK) {
      return merr(m, st, "handing state '%s' to the decode plan: %s", s->name,
                  vnrt_context_last_error(m->ctx));
    }
  }
  m->pos = m->prefill_len;
  m->started = 1;
  return VNRT_OK;
}

vnrt_status ds_model_decode(ds_model *m, int32_t id, float *logits) {
  if (!m) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!m->started) {
    return merr(m, VNRT_ERROR_INVALID_ARGUMENT, "decode: no sequence (run a prefill first)");
  }
  if (m->pos >= m->cfg.max_seq) {
    return merr(m, VNRT_ERROR_OUT_OF_RANGE,
                "decode: the KV cache is full (max_position_embeddings = %lld tokens)",
                (long long)m->cfg.max_seq);
  }
  vnrt_status st = bind_step(m, m->decode, &id, 1, m->pos);
  if (st == VNRT_OK) {
    st = run_and_read(m, m->decode, logits, 1, &m->timing.decode_s, &m->decode_stats, "decode");
  }
  if (st != VNRT_OK) return st;
  m->timing.decode_runs++;
  m->pos++;
  return VNRT_OK;
}

int64_t ds_model_position(const ds_model *m) { return m ? m->pos : 0; }
const char *ds_model_error(const ds_model *m) { return m ? m->err : "no model"; }
const ds_config *ds_model_config(const ds_model *m) { return m ? &m->cfg : NULL; }

vnrt_status ds_model_plan_info(const ds_model *m, vnrt_plan_info *prefill, vnrt_plan_info *decode) {
  if (!m || !m->prefill) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_status st = VNRT_OK;
  if (prefill) st = vnrt_plan_get_info(m->prefill, prefill);
  if (st == VNRT_OK && decode) st = vnrt_plan_get_info(m->decode, decode);
  return st;
}

void ds_model_timing(const ds_model *m, ds_timing *out) {
  if (m) {
    *out = m->timing;
  } else {
    memset(out, 0, sizeof *out);
  }
}

static void finish_stats(const vnrt_run_stats *sum, int64_t runs, vnrt_run_stats *out) {
  *out = *sum;
  out->overlap = runs > 0 ? sum->overlap / (double)runs : 0.0;
  out->engram_hit_rate =
      sum->engram_rows ? (double)sum->engram_hits / (double)sum->engram_rows : 0.0;
}

void ds_model_run_stats(const ds_model *m, vnrt_run_stats *prefill, vnrt_run_stats *decode) {
  vnrt_run_stats zero = {0};
  if (prefill) finish_stats(m ? &m->prefill_stats : &zero, m ? m->timing.prefill_runs : 0, prefill);
  if (decode) finish_stats(m ? &m->decode_stats : &zero, m ? m->timing.decode_runs : 0, decode);
}

int32_t ds_argmax(const float *v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return (int32_t)best;
}
