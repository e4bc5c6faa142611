/* Typed op parameters (vnrt/op_params.h): every node's attributes resolved once, defaults and
 * shape-derived values included, so that no backend reads an attribute by name or restates a
 * default. The values are those of docs/ops.md; inference (infer_basic.c, infer_model.c) has
 * already checked them. */
#include <math.h>
#include <string.h>

#include "graph.h"

static const vnrt_attr *find(const vn_node *nd, const char *key) {
  for (int32_t i = 0; i < nd->n_attrs; ++i) {
    if (nd->attrs[i].key && strcmp(nd->attrs[i].key, key) == 0) return &nd->attrs[i];
  }
  return NULL;
}

/* A required or defaulted attribute: normalisation (op_table.c) stored it with its schema
 * default, so it is always present and its default is written only in the schema. */
static int64_t val_i(const vn_node *nd, const char *key) {
  const vnrt_attr *a = find(nd, key);
  if (!a) return 0; /* not reached for a normalised node */
  return a->kind == VNRT_ATTR_FLOAT ? (int64_t)a->f : a->i;
}

static double val_f(const vn_node *nd, const char *key) {
  const vnrt_attr *a = find(nd, key);
  if (!a) return 0.0; /* not reached for a normalised node */
  return a->kind == VNRT_ATTR_INT ? (double)a->i : a->f;
}

/* An optional attribute (no schema default): `derived` is the value docs/ops.md gives it when
 * it is left out, computed from the shapes. */
static int64_t opt_i(const vn_node *nd, const char *key, int64_t derived) {
  return find(nd, key) ? val_i(nd, key) : derived;
}

static double opt_f(const vn_node *nd, const char *key, double derived) {
  return find(nd, key) ? val_f(nd, key) : derived;
}

static int32_t axis_of(int64_t axis, int32_t rank) {
  return (int32_t)(axis < 0 ? axis + rank : axis);
}

static vnrt_score_fn score_of(const vn_node *nd) {
  const vnrt_attr *a = find(nd, "score");
  const char *w = a && a->word ? a->word : "";
  if (strcmp(w, "softmax") == 0) return VNRT_SCORE_SOFTMAX;
  if (strcmp(w, "sqrt_softplus") == 0) return VNRT_SCORE_SQRT_SOFTPLUS;
  return VNRT_SCORE_SIGMOID;
}

static vnrt_dtype dtype_of(const char *w) {
  if (!w) return VNRT_DTYPE_INVALID;
  if (strcmp(w, "f32") == 0) return VNRT_F32;
  if (strcmp(w, "f16") == 0) return VNRT_F16;
  if (strcmp(w, "bf16") == 0) return VNRT_BF16;
  if (strcmp(w, "i32") == 0) return VNRT_I32;
  return VNRT_DTYPE_INVALID;
}

/* A weight operand at input w_input, its scale (if any) at scale_input. */
static vnrt_quant_weight quant_weight(const vn_node *nd, const vnrt_tensor_type *const *in,
                                      int32_t w_input, int32_t scale_input) {
  vnrt_quant_weight q = {.codes = VNRT_DTYPE_INVALID, .block = {0, 0}, .scale_input = -1};
  const vnrt_dtype dt = in[w_input]->dtype;
  if (dt != VNRT_E4M3 && dt != VNRT_E2M1) return q;
  q.codes = dt;
  q.scale_input = scale_input;
  const vnrt_attr *b = find(nd, "block");
  int64_t blk[2];
  vn_quant_default_block(dt, blk);
  q.block[0] = (int32_t)(b ? b->ints[0] : blk[0]);
  q.block[1] = (int32_t)(b ? b->ints[1] : blk[1]);
  return q;
}

void vn_node_resolve_params(const vnrt_graph *g, vn_node *nd) {
  vnrt_op_params *p = &nd->params;
  memset(p, 0, sizeof *p);
  const vnrt_tensor_type *in[VNRT_MAX_NODE_INPUTS] = {NULL};
  for (int32_t i = 0; i < nd->n_inputs; ++i) in[i] = &g->values[nd->inputs[i]].type;
  const vnrt_tensor_type *out0 = &g->values[nd->outputs[0]].type;

  switch (nd->op) {
    case VNRT_OP_SCALE:
      p->scale.s = val_f(nd, "s");
      break;
    case VNRT_OP_CLAMP: {
      const vnrt_attr *lo = find(nd, "min"), *hi = find(nd, "max");
      p->clamp.has_min = lo != NULL;
      p->clamp.has_max = hi != NULL;
      p->clamp.min = lo ? val_f(nd, "min") : -INFINITY;
      p->clamp.max = hi ? val_f(nd, "max") : INFINITY;
      break;
    }
    case VNRT_OP_CAST: {
      const vnrt_attr *a = find(nd, "dtype");
      p->cast.dtype = dtype_of(a ? a->word : NULL);
      break;
    }
    case VNRT_OP_RESHAPE:
      /* The result type holds the shape with its -1 entry resolved. */
      p->reshape.rank = out0->rank;
      for (int32_t d = 0; d < out0->rank; ++d) p->reshape.shape[d] = out0->dims[d];
      break;
    case VNRT_OP_TRANSPOSE: {
      const vnrt_attr *a = find(nd, "perm");
      p->transpose.rank = a ? a->count : 0;
      for (int32_t d = 0; a && d < a->count && d < VNRT_MAX_DIMS; ++d) {
        p->transpose.perm[d] = (int32_t)a->ints[d];
      }
      break;
    }
    case VNRT_OP_SLICE:
      p->slice.axis = axis_of(val_i(nd, "axis"), in[0]->rank);
      p->slice.start = val_i(nd, "start");
      p->slice.len = val_i(nd, "len");
      break;
    case VNRT_OP_CONCAT:
      p->concat.axis = axis_of(val_i(nd, "axis"), in[0]->rank);
      break;
    case VNRT_OP_RMS_NORM:
      p->rms_norm.eps = val_f(nd, "eps");
      p->rms_norm.has_weight = nd->n_inputs > 1;
      break;
    case VNRT_OP_SOFTMAX:
      p->softmax.axis = axis_of(val_i(nd, "axis"), in[0]->rank);
      break;
    case VNRT_OP_SWIGLU:
      p->swiglu.limit = val_f(nd, "limit");
      break;
    case VNRT_OP_ROPE:
      p->rope.theta = val_f(nd, "theta");
      p->rope.dims = (int32_t)opt_i(nd, "dims", in[0]->dims[2]);
      p->rope.interleaved = val_i(nd, "interleaved") != 0;
      p->rope.inverse = opt_i(nd, "inverse", 0) != 0;
      p->rope.yarn_factor = opt_f(nd, "yarn_factor", 0.0);
      p->rope.yarn_orig_ctx = opt_i(nd, "yarn_orig_ctx", 0);
      p->rope.beta_fast = opt_f(nd, "beta_fast", 32.0);
      p->rope.beta_slow = opt_f(nd, "beta_slow", 1.0);
      break;
    case VNRT_OP_ATTENTION: {
      int64_t d = in[0]->dims[2];
      p->attention.scale = opt_f(nd, "scale", 1.0 / sqrt((double)(d > 0 ? d : 1)));
      p->attention.causal = val_i(nd, "causal") != 0;
      p->attention.window = val_i(nd, "window");
      p->attention.q_heads = (int32_t)in[0]->dims[1];
      p->attention.kv_heads = (int32_t)in[1]->dims[1];
      p->attention.head_dim = (int32_t)d;
      p->attention.v_dim = (int32_t)in[2]->dims[2];
      p->attention.has_sinks = nd->n_inputs > 3;
      break;
    }
    case VNRT_OP_TOPK:
      p->topk.k = (int32_t)val_i(nd, "k");
      p->topk.has_fill = find(nd, "fill") != NULL;
      p->topk.fill = (int32_t)opt_i(nd, "fill", 0);
      break;
    case VNRT_OP_HC_EXPAND:
      p->hc_expand.n = (int32_t)val_i(nd, "n");
      break;
    case VNRT_OP_HC_PRE:
      p->hc_pre.iters = (int32_t)val_i(nd, "iters");
      p->hc_pre.eps = val_f(nd, "eps");
      p->hc_pre.norm_eps = val_f(nd, "norm_eps");
      break;
    case VNRT_OP_HC_HEAD:
      p->hc_head.eps = val_f(nd, "eps");
      p->hc_head.norm_eps = val_f(nd, "norm_eps");
      break;
    case VNRT_OP_SINKHORN:
      p->sinkhorn.iters = (int32_t)val_i(nd, "iters");
      p->sinkhorn.eps = val_f(nd, "eps");
      break;
    case VNRT_OP_MOE_ROUTE:
      p->moe_route.k = (int32_t)val_i(nd, "k");
      p->moe_route.score = score_of(nd);
      p->moe_route.n_group = (int32_t)val_i(nd, "n_group");
      p->moe_route.topk_group = (int32_t)val_i(nd, "topk_group");
      p->moe_route.norm = val_i(nd, "norm") != 0;
      p->moe_route.scale = val_f(nd, "scale");
      p->moe_route.has_bias = nd->n_inputs > 1;
      break;
    case VNRT_OP_MOE_HASH_ROUTE:
      p->moe_hash_route.score = score_of(nd);
      p->moe_hash_route.norm = val_i(nd, "norm") != 0;
      p->moe_hash_route.scale = val_f(nd, "scale");
      p->moe_hash_route.k = (int32_t)in[2]->dims[1];
      break;
    case VNRT_OP_MOE_FFN:
      p->moe_ffn.limit = val_f(nd, "limit");
      p->moe_ffn.act_quant = (int32_t)opt_i(nd, "act_quant", 0);
      p->moe_ffn.w_gate_up = quant_weight(nd, in, 3, 5);
      p->moe_ffn.w_down = quant_weight(nd, in, 4, 6);
      break;
    case VNRT_OP_LINEAR:
      p->linear.act_quant = (int32_t)opt_i(nd, "act_quant", 0);
      p->linear.w = quant_weight(nd, in, 1, 2);
      break;
    case VNRT_OP_MATMUL:
      p->matmul.b = quant_weight(nd, in, 1, 2);
      break;
    case VNRT_OP_EMBEDDING:
      p->embedding.table = quant_weight(nd, in, 0, 2);
      break;
    case VNRT_OP_FAKE_QUANT: {
      const vnrt_attr *f = find(nd, "fmt");
      const bool fp4 = f && f->word && strcmp(f->word, "e2m1") == 0;
      const int64_t d = in[0]->dims[in[0]->rank - 1];
      p->fake_quant.fmt = fp4 ? VNRT_E2M1 : VNRT_E4M3;
      p->fake_quant.block =
          (int32_t)opt_i(nd, "block", vn_fake_quant_default_block(p->fake_quant.fmt));
      p->fake_quant.start = val_i(nd, "start");
      p->fake_quant.len = val_i(nd, "len");
      if (p->fake_quant.len == 0) p->fake_quant.len = d - p->fake_quant.start;
      break;
    }
    case VNRT_OP_NGRAM_HASH: {
      const vnrt_attr *mult = find(nd, "mult"), *primes = find(nd, "primes");
      int32_t n = mult ? mult->count : 0, np = primes ? primes->count : 0;
      p->ngram_hash.n_mult = n;
      p->ngram_hash.n_primes = np;
      p->ngram_hash.mult = mult ? mult->ints : NULL;
      p->ngram_hash.primes = primes ? primes->ints : NULL;
      p->ngram_hash.max_n = (int32_t)opt_i(nd, "max_n", n);
      p->ngram_hash.heads = (int32_t)opt_i(nd, "heads", n > 1 ? np / (n - 1) : 0);
      break;
    }
    case VNRT_OP_ENGRAM_GATE:
      p->engram_gate.eps = val_f(nd, "eps");
      p->engram_gate.sqrt_gate = val_i(nd, "sqrt_gate") != 0;
      break;
    case VNRT_OP_SHORT_CONV:
      p->short_conv.dilation = (int32_t)val_i(nd, "dilation");
      p->short_conv.eps = val_f(nd, "eps");
      break;
    case VNRT_OP_KV_WRITE:
      p->kv_write.ring = opt_i(nd, "ring", 0) != 0;
      break;
    case VNRT_OP_KV_COMPRESS:
      p->kv_compress.ratio = (int32_t)val_i(nd, "ratio");
      p->kv_compress.overlap = val_i(nd, "overlap") != 0;
      p->kv_compress.width = in[0]->dims[1] / (1 + p->kv_compress.overlap);
      break;
    case VNRT_OP_KV_SCATTER:
      p->kv_scatter.div = (int32_t)val_i(nd, "div");
      break;
    case VNRT_OP_INDEX_SCORES:
      p->index_scores.ratio = (int32_t)val_i(nd, "ratio");
      p->index_scores.heads = (int32_t)in[0]->dims[1];
      p->index_scores.head_dim = (int32_t)in[0]->dims[2];
      break;
    case VNRT_OP_SPARSE_ATTENTION:
      p->sparse_attention.heads = (int32_t)in[0]->dims[1];
      p->sparse_attention.head_dim = (int32_t)in[0]->dims[2];
      p->sparse_attention.scale = opt_f(nd, "scale", 1.0 / sqrt((double)in[0]->dims[2]));
      p->sparse_attention.ratio = (int32_t)val_i(nd, "ratio");
      p->sparse_attention.window = (int32_t)in[2]->dims[0];
      p->sparse_attention.has_comp = nd->n_inputs > 5;
      p->sparse_attention.has_idx = nd->n_inputs > 6;
      break;
    case VNRT_OP_GROUPED_LINEAR:
      p->grouped_linear.groups = (int32_t)val_i(nd, "groups");
      p->grouped_linear.w = quant_weight(nd, in, 1, 2);
      break;
    default: /* ops without parameters */
      break;
  }
}
