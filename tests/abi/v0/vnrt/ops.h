/* The op table of vnrt: every op of docs/ops.md, defined once.
 *
 * VNRT_OP_LIST(X) expands X(ID, name, min_inputs, max_inputs, n_outputs) for every op, in a
 * fixed order. The numeric values of vnrt_op are part of the ABI: new ops are appended only.
 * Attribute schemas, shape inference and kernels are keyed by this id (graph/op_table.c).
 */
#ifndef VNRT_OPS_H_
#define VNRT_OPS_H_

#define VNRT_OP_LIST(X)                                    \
  /* elementwise and shape */                              \
  X(ADD, add, 2, 2, 1)                                     \
  X(SUB, sub, 2, 2, 1)                                     \
  X(MUL, mul, 2, 2, 1)                                     \
  X(DIV, div, 2, 2, 1)                                     \
  X(SCALE, scale, 1, 1, 1)                                 \
  X(NEG, neg, 1, 1, 1)                                     \
  X(EXP, exp, 1, 1, 1)                                     \
  X(SQRT, sqrt, 1, 1, 1)                                   \
  X(RSQRT, rsqrt, 1, 1, 1)                                 \
  X(TANH, tanh, 1, 1, 1)                                   \
  X(RELU, relu, 1, 1, 1)                                   \
  X(SIGMOID, sigmoid, 1, 1, 1)                             \
  X(SILU, silu, 1, 1, 1)                                   \
  X(GELU, gelu, 1, 1, 1)                                   \
  X(SOFTPLUS, softplus, 1, 1, 1)                           \
  X(SQRT_SOFTPLUS, sqrt_softplus, 1, 1, 1)                 \
  X(CLAMP, clamp, 1, 1, 1)                                 \
  X(CAST, cast, 1, 1, 1)                                   \
  X(RESHAPE, reshape, 1, 1, 1)                             \
  X(TRANSPOSE, transpose, 1, 1, 1)                         \
  X(SLICE, slice, 1, 1, 1)                                 \
  X(CONCAT, concat, 2, 2, 1)                               \
  /* linear algebra, norms, activations */                 \
  X(MATMUL, matmul, 2, 3, 1)                               \
  X(LINEAR, linear, 2, 3, 1)                               \
  X(RMS_NORM, rms_norm, 1, 2, 1)                           \
  X(SOFTMAX, softmax, 1, 1, 1)                             \
  X(SWIGLU, swiglu, 2, 2, 1)                               \
  /* positions and attention */                            \
  X(ROPE, rope, 2, 2, 1)                                   \
  X(ATTENTION, attention, 3, 5, 1)                         \
  /* indexing */                                           \
  X(EMBEDDING, embedding, 2, 3, 1)                         \
  X(TOPK, topk, 1, 1, 2)                                   \
  /* mHC */                                                \
  X(HC_EXPAND, hc_expand, 1, 1, 1)                         \
  X(HC_PRE, hc_pre, 4, 4, 3)                               \
  X(HC_POST, hc_post, 4, 4, 1)                             \
  X(HC_HEAD, hc_head, 4, 4, 1)                             \
  X(SINKHORN, sinkhorn, 1, 1, 1)                           \
  /* MoE */                                                \
  X(MOE_ROUTE, moe_route, 1, 2, 2)                         \
  X(MOE_HASH_ROUTE, moe_hash_route, 3, 3, 2)               \
  X(MOE_FFN, moe_ffn, 5, 7, 1)                             \
  /* Engram */                                             \
  X(NGRAM_HASH, ngram_hash, 2, 2, 1)                       \
  X(ENGRAM_LOOKUP, engram_lookup, 3, 3, 1)                 \
  X(ENGRAM_GATE, engram_gate, 5, 5, 1)                     \
  X(SHORT_CONV, short_conv, 4, 4, 2)                       \
  /* state (extensions beyond docs/ops.md: docs/ops.md) */ \
  X(KV_WRITE, kv_write, 3, 3, 1)                           \
  /* quantization support (docs/ops.md) */                 \
  X(HADAMARD, hadamard, 1, 1, 1)                           \
  X(FAKE_QUANT, fake_quant, 1, 1, 1)                       \
  /* DeepSeek-V4 attention (docs/ops.md) */                \
  X(KV_COMPRESS, kv_compress, 6, 6, 4)                     \
  X(KV_SCATTER, kv_scatter, 3, 3, 1)                       \
  X(INDEX_SCORES, index_scores, 4, 4, 1)                   \
  X(SPARSE_ATTENTION, sparse_attention, 5, 7, 1)           \
  X(GROUPED_LINEAR, grouped_linear, 2, 3, 1)

typedef enum vnrt_op {
  VNRT_OP_INVALID = -1,
#define VNRT_OP_ENUM_(ID, name, min_in, max_in, n_out) VNRT_OP_##ID,
  VNRT_OP_LIST(VNRT_OP_ENUM_)
#undef VNRT_OP_ENUM_
      VNRT_OP_COUNT
} vnrt_op;

#endif /* VNRT_OPS_H_ */
