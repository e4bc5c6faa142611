/* Typed op parameters: what a backend reads instead of attributes.
 *
 * The graph layer resolves every node's attributes once, when the node is added: defaults are
 * filled, negative axes are made non-negative, and values that depend on the input shapes
 * (attention scale and heads, rope dims, ngram_hash max_n and heads, ...) are computed. A
 * backend receives the result with the node (vnrt_backend_node.params) and never looks an
 * attribute up by name or restates a default. docs/ops.md defines every value below.
 *
 * One struct per op that has parameters, named after the op; vnrt_op_params is their union,
 * indexed by the same op name: `node->params->rms_norm.eps`. Ops without parameters (add,
 * hadamard, ...) have no member; their params are zero. Members are only
 * ever appended, like ops in vnrt/ops.h.
 */
#ifndef VNRT_OP_PARAMS_H_
#define VNRT_OP_PARAMS_H_

#include <stdint.h>

#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The router score functions of moe_route and moe_hash_route (`score=`). */
typedef enum vnrt_score_fn {
  VNRT_SCORE_SIGMOID = 0,
  VNRT_SCORE_SOFTMAX = 1,
  VNRT_SCORE_SQRT_SOFTPLUS = 2,
} vnrt_score_fn;

typedef struct vnrt_scale_params {
  double s;
} vnrt_scale_params;

/* A bound that was left out is not applied (has_min/has_max 0; its value is then -/+inf). */
typedef struct vnrt_clamp_params {
  int32_t has_min, has_max;
  double min, max;
} vnrt_clamp_params;

typedef struct vnrt_cast_params {
  vnrt_dtype dtype;
} vnrt_cast_params;

/* The result shape, with a -1 entry already resolved. */
typedef struct vnrt_reshape_params {
  int32_t rank;
  int64_t shape[VNRT_MAX_DIMS];
} vnrt_reshape_params;

typedef struct vnrt_transpose_params {
  int32_t rank;
  int32_t perm[VNRT_MAX_DIMS];
} vnrt_transpose_params;

typedef struct vnrt_slice_params {
  int32_t axis; /* non-negative */
  int64_t start, len;
} vnrt_slice_params;

typedef struct vnrt_concat_params {
  int32_t axis; /* non-negative */
} vnrt_concat_params;

typedef struct vnrt_rms_norm_params {
  double eps;
  int32_t has_weight; /* the optional w input was given */
} vnrt_rms_norm_params;

typedef struct vnrt_softmax_params {
  int32_t axis; /* non-negative */
} vnrt_softmax_params;

typedef struct vnrt_swiglu_params {
  double limit; /* 0 = no clamp */
} vnrt_swiglu_params;

typedef struct vnrt_rope_params {
  double theta;
  int32_t dims;        /* rotated trailing channels; the attribute's default D resolved */
  int32_t interleaved; /* 1: pairs (2i, 2i+1); 0: pairs (i, i + dims/2) */
  /* appended for DeepSeek-V4 (docs/ops.md, "DeepSeek-V4 attention") */
  int32_t inverse;       /* 1: rotate by the negative angle */
  double yarn_factor;    /* 0: no YaRN; else the frequency divisor f > 1 of the slow pairs */
  int64_t yarn_orig_ctx; /* L, the original context of YaRN */
  double beta_fast, beta_slow;
} vnrt_rope_params;

typedef struct vnrt_attention_params {
  double scale; /* 1/sqrt(D) when the attribute was left out */
  int32_t causal;
  int64_t window;    /* 0 = unlimited */
  int32_t q_heads;   /* Hq */
  int32_t kv_heads;  /* Hkv; query head h reads kv head h / (Hq / Hkv) */
  int32_t head_dim;  /* D */
  int32_t v_dim;     /* Dv */
  int32_t has_sinks; /* the optional sinks input was given */
} vnrt_attention_params;

typedef struct vnrt_topk_params {
  int32_t k;
  int32_t has_fill; /* appended: indices of -inf values become `fill` */
  int32_t fill;
} vnrt_topk_params;

typedef struct vnrt_hc_expand_params {
  int32_t n;
} vnrt_hc_expand_params;

typedef struct vnrt_hc_pre_params {
  int32_t iters;
  double eps, norm_eps;
} vnrt_hc_pre_params;

typedef struct vnrt_hc_head_params {
  double eps, norm_eps;
} vnrt_hc_head_params;

typedef struct vnrt_sinkhorn_params {
  int32_t iters;
  double eps;
} vnrt_sinkhorn_params;

typedef struct vnrt_moe_route_params {
  int32_t k;
  vnrt_score_fn score;
  int32_t n_group, topk_group; /* n_group <= 1: no grouping */
  int32_t norm;
  double scale;
  int32_t has_bias; /* the optional bias input was given */
} vnrt_moe_route_params;

typedef struct vnrt_moe_hash_route_params {
  vnrt_score_fn score;
  int32_t norm;
  double scale;
  int32_t k; /* experts per token: tid2eid's second dim */
} vnrt_moe_hash_route_params;

/* A weight operand: plain f32/f16/bf16, or codes with an e8m0 scale tensor (docs/ops.md,
 * "Quantized weights"): W[r][c] = decode(code[r][c]) * 2^(scale[r / block[0]][c / block[1]] - 127)
 * over the operand's last two dims (leading dims, such as moe_ffn's experts, index the scale
 * too). */
typedef struct vnrt_quant_weight {
  vnrt_dtype codes;    /* VNRT_E4M3 or VNRT_E2M1; VNRT_DTYPE_INVALID for a plain float weight */
  int32_t block[2];    /* rows x cols one scale covers: 128 x 128 (e4m3), 1 x 32 (e2m1) */
  int32_t scale_input; /* the node input that holds the scales; -1 for a plain weight */
} vnrt_quant_weight;

typedef struct vnrt_moe_ffn_params {
  double limit; /* swiglu limit, 0 = no clamp */
  /* appended with quantized weights */
  int32_t act_quant; /* 0, or 128: x and the down projection's input are fake-quantized to e4m3
                        per token per 128 channels first, and the routing weight is applied
                        before down (DeepSeek's reference order) */
  vnrt_quant_weight w_gate_up, w_down;
} vnrt_moe_ffn_params;

/* mult has max_n entries (n-gram orders 2..max_n use mult[0..n-1]); primes has
 * (max_n - 1) * heads entries. The arrays belong to the node (valid as long as the graph or
 * plan that holds it). */
typedef struct vnrt_ngram_hash_params {
  int32_t max_n;
  int32_t heads;
  int32_t n_mult;
  int32_t n_primes;
  const int64_t *mult;
  const int64_t *primes;
} vnrt_ngram_hash_params;

typedef struct vnrt_engram_gate_params {
  double eps;
  int32_t sqrt_gate;
} vnrt_engram_gate_params;

typedef struct vnrt_short_conv_params {
  int32_t dilation;
  double eps;
} vnrt_short_conv_params;

typedef struct vnrt_linear_params {
  int32_t act_quant; /* 0, or 128: x is fake-quantized to e4m3 per row per 128 channels first */
  vnrt_quant_weight w;
} vnrt_linear_params;

typedef struct vnrt_matmul_params {
  vnrt_quant_weight b; /* a quantized b is [K, N] (rank 2) */
} vnrt_matmul_params;

typedef struct vnrt_embedding_params {
  vnrt_quant_weight table;
} vnrt_embedding_params;

/* Quantize, then dequantize, channels [start, start + len) of every row in blocks of `block`,
 * each with its power-of-two scale (vnrt_quant_block_scale); the other channels pass through. */
typedef struct vnrt_fake_quant_params {
  vnrt_dtype fmt; /* VNRT_E4M3 or VNRT_E2M1 */
  int32_t block;  /* channels per scale: default 128 (e4m3), 32 (e2m1) */
  int64_t start;
  int64_t len; /* resolved: D - start when the attribute was 0 or left out */
} vnrt_fake_quant_params;

typedef struct vnrt_kv_write_params {
  int32_t ring; /* 1: the cache is a ring; position p goes to row p mod S */
} vnrt_kv_write_params;

/* DeepSeek-V4's KV compressor (docs/ops.md, "DeepSeek-V4 attention"). */
typedef struct vnrt_kv_compress_params {
  int32_t ratio;   /* m: positions per window */
  int32_t overlap; /* 1: CSA (two series, windows w-1 and w pooled together); 0: HCA */
  int64_t width;   /* d: an entry's width (a's width / (1 + overlap)) */
} vnrt_kv_compress_params;

typedef struct vnrt_kv_scatter_params {
  int32_t div; /* rows[i] goes to cache row pos[i] / div */
} vnrt_kv_scatter_params;

typedef struct vnrt_index_scores_params {
  int32_t ratio;    /* entry j is visible to position p when j < (p + 1) / ratio */
  int32_t heads;    /* Hi */
  int32_t head_dim; /* Di */
} vnrt_index_scores_params;

typedef struct vnrt_sparse_attention_params {
  double scale;     /* 1/sqrt(D) when the attribute was left out */
  int32_t ratio;    /* compression ratio of comp; 0 without comp */
  int32_t heads;    /* H */
  int32_t head_dim; /* D */
  int32_t window;   /* W: the ring's rows */
  int32_t has_comp; /* the optional comp input was given */
  int32_t has_idx;  /* the optional idx input was given (CSA); else every visible entry (HCA) */
} vnrt_sparse_attention_params;

typedef struct vnrt_grouped_linear_params {
  int32_t groups; /* G */
  vnrt_quant_weight w;
} vnrt_grouped_linear_params;

typedef union vnrt_op_params {
  vnrt_scale_params scale;
  vnrt_clamp_params clamp;
  vnrt_cast_params cast;
  vnrt_reshape_params reshape;
  vnrt_transpose_params transpose;
  vnrt_slice_params slice;
  vnrt_concat_params concat;
  vnrt_rms_norm_params rms_norm;
  vnrt_softmax_params softmax;
  vnrt_swiglu_params swiglu;
  vnrt_rope_params rope;
  vnrt_attention_params attention;
  vnrt_topk_params topk;
  vnrt_hc_expand_params hc_expand;
  vnrt_hc_pre_params hc_pre;
  vnrt_hc_head_params hc_head;
  vnrt_sinkhorn_params sinkhorn;
  vnrt_moe_route_params moe_route;
  vnrt_moe_hash_route_params moe_hash_route;
  vnrt_moe_ffn_params moe_ffn;
  vnrt_ngram_hash_params ngram_hash;
  vnrt_engram_gate_params engram_gate;
  vnrt_short_conv_params short_conv;
  vnrt_linear_params linear;
  vnrt_matmul_params matmul;
  vnrt_embedding_params embedding;
  vnrt_fake_quant_params fake_quant;
  vnrt_kv_write_params kv_write;
  vnrt_kv_compress_params kv_compress;
  vnrt_kv_scatter_params kv_scatter;
  vnrt_index_scores_params index_scores;
  vnrt_sparse_attention_params sparse_attention;
  vnrt_grouped_linear_params grouped_linear;
  uint8_t reserved_[128]; /* room for members appended later without changing the size */
} vnrt_op_params;

#ifdef __cplusplus
}
#endif
#endif /* VNRT_OP_PARAMS_H_ */
