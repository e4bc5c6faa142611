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

/* Normalised attributes carry their schema kind and default, so `fallback` only covers the
 * schema's optional attributes (absent without a default). */
static int64_t get_i(const vn_node *nd, const char *key, int64_t fallback) {
  const vnrt_attr *a = find(nd, key);
  if (!a) return fallback;
  return a->kind == VNRT_ATTR_FLOAT ? (int64_t)a->f : a->i;
}

static double get_f(const vn_node *nd, const char *key, double fallback) {
  const vnrt_attr *a = find(nd, key);
  if (!a) return fallback;
  return a->kind == VNRT_ATTR_INT ? (double)a->i : a->f;
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
  const bool fp4 = dt == VNRT_E2M1;
  q.block[0] = b ? (int32_t)b->ints[0] : fp4 ? 1 : 128;
  q.block[1] = b ? (int32_t)b->ints[1] : fp4 ? 32 : 128;
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
      p->scale.s = get_f(nd, "s", 1.0);
      break;
    case VNRT_OP_CLAMP: {
      const vnrt_attr *lo = find(nd, "min"), *hi = find(nd, "max");
      p->clamp.has_min = lo != NULL;
      p->clamp.has_max = hi != NULL;
      p->clamp.min = lo ? get_f(nd, "min", 0) : -INFINITY;
      p->clamp.max = hi ? get_f(nd, "max", 0) : INFINITY;
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
      p->slice.axis = axis_of(get_i(nd, "axis", 0), in[0]->rank);
      p->slice.start = get_i(nd, "start", 0);
      p->slice.len = get_i(nd, "len", 0);
      break;
    case VNRT_OP_CONCAT:
      p->concat.axis = axis_of(get_i(nd, "axis", 0), in[0]->rank);
      break;
    case VNRT_OP_RMS_NORM:
      p->rms_norm.eps = get_f(nd, "eps", 1e-6);
      p->rms_norm.has_weight = nd->n_inputs > 1;
      break;
    case VNRT_OP_SOFTMAX:
      p->softmax.axis = axis_of(get_i(nd, "axis", -1), in[0]->rank);
      break;
    case VNRT_OP_SWIGLU:
      p->swiglu.limit = get_f(nd, "limit", 0.0);
      break;
    case VNRT_OP_ROPE:
      p->rope.theta = get_f(nd, "theta", 10000.0);
      p->rope.dims = (int32_t)get_i(nd, "dims", in[0]->dims[2]);
      p->rope.interleaved = get_i(nd, "interleaved", 1) != 0;
      break;
    case VNRT_OP_ATTENTION: {
      int64_t d = in[0]->dims[2];
      p->attention.scale = get_f(nd, "scale", 1.0 / sqrt((double)(d > 0 ? d : 1)));
      p->attention.causal = get_i(nd, "causal", 1) != 0;
      p->attention.window = get_i(nd, "window", 0);
      p->attention.q_heads = (int32_t)in[0]->dims[1];
      p->attention.kv_heads = (int32_t)in[1]->dims[1];
      p->attention.head_dim = (int32_t)d;
      p->attention.v_dim = (int32_t)in[2]->dims[2];
      p->attention.has_sinks = nd->n_inputs > 3;
      break;
    }
    case VNRT_OP_TOPK:
      p->topk.k = (int32_t)get_i(nd, "k", 1);
      break;
    case VNRT_OP_HC_EXPAND:
      p->hc_expand.n = (int32_t)get_i(nd, "n", 4);
      break;
    case VNRT_OP_HC_PRE:
      p->hc_pre.iters = (int32_t)get_i(nd, "iters", 20);
      p->hc_pre.eps = get_f(nd, "eps", 1e-6);
      p->hc_pre.norm_eps = get_f(nd, "norm_eps", 1e-6);
      break;
    case VNRT_OP_HC_HEAD:
      p->hc_head.eps = get_f(nd, "eps", 1e-6);
      p->hc_head.norm_eps = get_f(nd, "norm_eps", 1e-6);
      break;
    case VNRT_OP_SINKHORN:
      p->sinkhorn.iters = (int32_t)get_i(nd, "iters", 20);
      p->sinkhorn.eps = get_f(nd, "eps", 1e-6);
      break;
    case VNRT_OP_MOE_ROUTE:
      p->moe_route.k = (int32_t)get_i(nd, "k", 1);
      p->moe_route.score = score_of(nd);
      p->moe_route.n_group = (int32_t)get_i(nd, "n_group", 1);
      p->moe_route.topk_group = (int32_t)get_i(nd, "topk_group", 1);
      p->moe_route.norm = get_i(nd, "norm", 1) != 0;
      p->moe_route.scale = get_f(nd, "scale", 1.0);
      p->moe_route.has_bias = nd->n_inputs > 1;
      break;
    case VNRT_OP_MOE_HASH_ROUTE:
      p->moe_hash_route.score = score_of(nd);
      p->moe_hash_route.norm = get_i(nd, "norm", 1) != 0;
      p->moe_hash_route.scale = get_f(nd, "scale", 1.0);
      p->moe_hash_route.k = (int32_t)in[2]->dims[1];
      break;
    case VNRT_OP_MOE_FFN:
      p->moe_ffn.limit = get_f(nd, "limit", 0.0);
      p->moe_ffn.act_quant = (int32_t)get_i(nd, "act_quant", 0);
      p->moe_ffn.w_gate_up = quant_weight(nd, in, 3, 5);
      p->moe_ffn.w_down = quant_weight(nd, in, 4, 6);
      break;
    case VNRT_OP_LINEAR:
      p->linear.act_quant = (int32_t)get_i(nd, "act_quant", 0);
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
      p->fake_quant.block = (int32_t)get_i(nd, "block", fp4 ? 32 : 128);
      p->fake_quant.start = get_i(nd, "start", 0);
      p->fake_quant.len = get_i(nd, "len", 0);
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
      p->ngram_hash.max_n = (int32_t)get_i(nd, "max_n", n);
      p->ngram_hash.heads = (int32_t)get_i(nd, "heads", n > 1 ? np / (n - 1) : 0);
      break;
    }
    case VNRT_OP_ENGRAM_GATE:
      p->engram_gate.eps = get_f(nd, "eps", 1e-6);
      p->engram_gate.sqrt_gate = get_i(nd, "sqrt_gate", 1) != 0;
      break;
    case VNRT_OP_SHORT_CONV:
      p->short_conv.dilation = (int32_t)get_i(nd, "dilation", 1);
      p->short_conv.eps = get_f(nd, "eps", 1e-6);
      break;
    default: /* ops without parameters */
      break;
  }
}
