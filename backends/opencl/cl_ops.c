/* What the OpenCL backend runs: one row per op of vnrt/ops.h, in its order, with the function
 * that says whether the device runs a node of the op as typed and the one that lowers it
 * (cl_ops.h names the file of each). A row of NULL, NULL sends the op to the CPU fallback.
 * The table is built from VNRT_OP_LIST, so an op added there without a row here does not
 * compile. */
#include <stdbool.h>

#include "cl_ops.h"

#define CL_ROW_ADD cl_binary_supports, cl_binary_lower
#define CL_ROW_SUB cl_binary_supports, cl_binary_lower
#define CL_ROW_MUL cl_binary_supports, cl_binary_lower
#define CL_ROW_DIV cl_binary_supports, cl_binary_lower
#define CL_ROW_SCALE cl_unary_supports, cl_unary_lower
#define CL_ROW_NEG cl_unary_supports, cl_unary_lower
#define CL_ROW_EXP cl_unary_supports, cl_unary_lower
#define CL_ROW_SQRT cl_unary_supports, cl_unary_lower
#define CL_ROW_RSQRT cl_unary_supports, cl_unary_lower
#define CL_ROW_TANH cl_unary_supports, cl_unary_lower
#define CL_ROW_RELU cl_unary_supports, cl_unary_lower
#define CL_ROW_SIGMOID cl_unary_supports, cl_unary_lower
#define CL_ROW_SILU cl_unary_supports, cl_unary_lower
#define CL_ROW_GELU cl_unary_supports, cl_unary_lower
#define CL_ROW_SOFTPLUS cl_unary_supports, cl_unary_lower
#define CL_ROW_SQRT_SOFTPLUS cl_unary_supports, cl_unary_lower
#define CL_ROW_CLAMP cl_unary_supports, cl_unary_lower
#define CL_ROW_CAST cl_cast_supports, cl_cast_lower
#define CL_ROW_RESHAPE cl_reshape_supports, cl_reshape_lower
#define CL_ROW_TRANSPOSE cl_transpose_supports, cl_transpose_lower
#define CL_ROW_SLICE cl_slice_supports, cl_slice_lower
#define CL_ROW_CONCAT cl_concat_supports, cl_concat_lower
#define CL_ROW_MATMUL cl_matmul_supports, cl_matmul_lower
#define CL_ROW_LINEAR cl_linear_supports, cl_linear_lower
#define CL_ROW_RMS_NORM cl_rms_norm_supports, cl_rms_norm_lower
#define CL_ROW_SOFTMAX cl_softmax_supports, cl_softmax_lower
#define CL_ROW_SWIGLU cl_swiglu_supports, cl_swiglu_lower
#define CL_ROW_ROPE cl_rope_supports, cl_rope_lower
#define CL_ROW_ATTENTION cl_attention_supports, cl_attention_lower
#define CL_ROW_EMBEDDING cl_embedding_supports, cl_embedding_lower
#define CL_ROW_TOPK cl_topk_supports, cl_topk_lower
#define CL_ROW_HC_EXPAND cl_hc_expand_supports, cl_hc_expand_lower
#define CL_ROW_HC_PRE cl_hc_pre_supports, cl_hc_pre_lower
#define CL_ROW_HC_POST cl_hc_post_supports, cl_hc_post_lower
#define CL_ROW_HC_HEAD cl_hc_head_supports, cl_hc_head_lower
#define CL_ROW_SINKHORN cl_sinkhorn_supports, cl_sinkhorn_lower
#define CL_ROW_MOE_ROUTE cl_moe_route_supports, cl_moe_route_lower
#define CL_ROW_MOE_HASH_ROUTE cl_moe_hash_route_supports, cl_moe_hash_route_lower
#define CL_ROW_MOE_FFN cl_moe_ffn_supports, cl_moe_ffn_lower
#define CL_ROW_NGRAM_HASH cl_ngram_hash_supports, cl_ngram_hash_lower
#define CL_ROW_ENGRAM_LOOKUP cl_engram_lookup_supports, cl_engram_lookup_lower
#define CL_ROW_ENGRAM_GATE cl_engram_gate_supports, cl_engram_gate_lower
#define CL_ROW_SHORT_CONV cl_short_conv_supports, cl_short_conv_lower
#define CL_ROW_KV_WRITE cl_kv_write_supports, cl_kv_write_lower
#define CL_ROW_HADAMARD cl_hadamard_supports, cl_hadamard_lower
#define CL_ROW_FAKE_QUANT cl_fake_quant_supports, cl_fake_quant_lower
#define CL_ROW_KV_COMPRESS cl_kv_compress_supports, cl_kv_compress_lower
#define CL_ROW_KV_SCATTER cl_kv_scatter_supports, cl_kv_scatter_lower
#define CL_ROW_INDEX_SCORES cl_index_scores_supports, cl_index_scores_lower
#define CL_ROW_SPARSE_ATTENTION cl_sparse_attention_supports, cl_sparse_attention_lower
#define CL_ROW_GROUPED_LINEAR cl_grouped_linear_supports, cl_grouped_linear_lower

typedef struct cl_op_row {
  cl_supports_fn supports;
  cl_lower_fn lower;
} cl_op_row;

#define CL_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = {CL_ROW_##ID},
static const cl_op_row k_ops[VNRT_OP_COUNT] = {VNRT_OP_LIST(CL_ROW_)};
#undef CL_ROW_

static const cl_op_row *row_of(vnrt_op op) {
  return op >= 0 && op < VNRT_OP_COUNT ? &k_ops[op] : NULL;
}

int cl_ops_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                    const vnrt_backend_node *node) {
  const cl_op_row *row = row_of(node->op);
  return row && row->supports && row->supports(dev, graph, node);
}

/* Whether every result of node has no elements: such a node computes nothing, though a
 * kernel would still launch a work item per (empty) row of, say, f32[1e12, 0]. */
static bool outputs_empty(const vnrt_backend_graph *graph, const vnrt_backend_node *node) {
  for (int32_t i = 0; i < node->n_outputs; ++i) {
    if (vnrt_numel(&vnrt_node_output(graph, node, i)->type) != 0) return false;
  }
  return true;
}

vnrt_status cl_ops_lower(cl_lower *L) {
  const cl_op_row *row = row_of(L->node->op);
  if (row && row->lower && outputs_empty(L->graph, L->node)) return VNRT_OK;
  if (!row || !row->lower) {
    return cl_fail(L->dev, VNRT_ERROR_UNSUPPORTED, "node '%s': op %d has no OpenCL kernel",
                   L->node->name, (int)L->node->op);
  }
  return row->lower(L);
}

vnrt_status cl_launch_1d(cl_launch *k, int64_t n) {
  size_t wg = cl_launch_wg(k, 256);
  size_t items = (size_t)(n > 0 ? n : 0);
  return cl_launch_end(k, 1, &items, &wg);
}

vnrt_status cl_launch_rows(cl_launch *k, int64_t rows, size_t want_wg) {
  size_t wg = cl_launch_wg(k, want_wg);
  cl_arg_local(k, wg * sizeof(float));
  size_t items = (size_t)(rows > 0 ? rows : 0) * wg;
  return cl_launch_end(k, 1, &items, &wg);
}

vnrt_status cl_launch_2d(cl_launch *k, int64_t n0, int64_t n1) {
  return cl_launch_2d_wg(k, n0, n1, 64);
}

vnrt_status cl_launch_2d_wg(cl_launch *k, int64_t n0, int64_t n1, size_t want_wg) {
  size_t wg = cl_launch_wg(k, want_wg);
  size_t items[2] = {(size_t)(n0 > 0 ? n0 : 0), (size_t)(n1 > 0 ? n1 : 0)};
  size_t lws[2] = {wg, 1};
  return cl_launch_end(k, 2, items, lws);
}

vnrt_status cl_launch_single(cl_launch *k, size_t want_wg) {
  size_t wg = cl_launch_wg(k, want_wg);
  cl_arg_local(k, wg * sizeof(int32_t));
  return cl_launch_end(k, 1, &wg, &wg);
}
