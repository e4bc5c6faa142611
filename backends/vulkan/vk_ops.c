/* What the Vulkan backend runs: one row per op of VNRT_OP_LIST (vnrt/ops.h) with its supported
 * function, its record function and the shader OP code the record function passes on (0 when
 * the op's shader has none of its own). An op Vulkan does not run has NULL functions and falls
 * back to another backend. The table is built from VNRT_OP_LIST, so an op appended there does
 * not compile here until it has a row. The functions are in vk_ops_basic.c, vk_ops_model.c and
 * vk_ops_v4.c (the DeepSeek-V4 attention ops);
 * the kernels in shaders/vulkan (docs/vulkan.md lists which kernel runs which op). Nodes with
 * quantized weights or act_quant go from the linear, matmul, embedding and moe_ffn functions
 * to those of vk_ops_quant.c (shaders/vulkan/quant.comp), which also runs fake_quant. */
#include <stdio.h>

#include "vk_internal.h"

/* OP codes of unary.comp (U_*) and binary.comp (B_*): keep in step with the shaders. */
enum {
  U_NEG = 1,
  U_EXP = 2,
  U_SQRT = 3,
  U_RSQRT = 4,
  U_TANH = 5,
  U_RELU = 6,
  U_SIGMOID = 7,
  U_SILU = 8,
  U_GELU = 9,
  U_SOFTPLUS = 10,
  U_SQRT_SOFTPLUS = 11,
  U_CLAMP = 12,
  U_SCALE = 13,
};
enum { B_ADD = 1, B_SUB = 2, B_MUL = 3, B_DIV = 4, B_SWIGLU = 5 };

/* clang-format off */
/*                        supported               record                  code */
#define VK_OP_ADD            vk_sup_elementwise,     vk_rec_binary,          B_ADD
#define VK_OP_SUB            vk_sup_elementwise,     vk_rec_binary,          B_SUB
#define VK_OP_MUL            vk_sup_elementwise,     vk_rec_binary,          B_MUL
#define VK_OP_DIV            vk_sup_elementwise,     vk_rec_binary,          B_DIV
#define VK_OP_SCALE          vk_sup_elementwise,     vk_rec_unary,           U_SCALE
#define VK_OP_NEG            vk_sup_elementwise,     vk_rec_unary,           U_NEG
#define VK_OP_EXP            vk_sup_elementwise,     vk_rec_unary,           U_EXP
#define VK_OP_SQRT           vk_sup_elementwise,     vk_rec_unary,           U_SQRT
#define VK_OP_RSQRT          vk_sup_elementwise,     vk_rec_unary,           U_RSQRT
#define VK_OP_TANH           vk_sup_elementwise,     vk_rec_unary,           U_TANH
#define VK_OP_RELU           vk_sup_elementwise,     vk_rec_unary,           U_RELU
#define VK_OP_SIGMOID        vk_sup_elementwise,     vk_rec_unary,           U_SIGMOID
#define VK_OP_SILU           vk_sup_elementwise,     vk_rec_unary,           U_SILU
#define VK_OP_GELU           vk_sup_elementwise,     vk_rec_unary,           U_GELU
#define VK_OP_SOFTPLUS       vk_sup_elementwise,     vk_rec_unary,           U_SOFTPLUS
#define VK_OP_SQRT_SOFTPLUS  vk_sup_elementwise,     vk_rec_unary,           U_SQRT_SOFTPLUS
#define VK_OP_CLAMP          vk_sup_elementwise,     vk_rec_unary,           U_CLAMP
#define VK_OP_CAST           vk_sup_always,          vk_rec_flat_copy,       0
#define VK_OP_RESHAPE        vk_sup_always,          vk_rec_flat_copy,       0
#define VK_OP_TRANSPOSE      vk_sup_transpose,       vk_rec_transpose,       0
#define VK_OP_SLICE          vk_sup_slice,           vk_rec_slice,           0
#define VK_OP_CONCAT         vk_sup_concat,          vk_rec_concat,          0
#define VK_OP_MATMUL         vk_sup_matmul,          vk_rec_matmul,          0
#define VK_OP_LINEAR         vk_sup_linear,          vk_rec_linear,          0
#define VK_OP_RMS_NORM       vk_sup_rms_norm,        vk_rec_rms_norm,        0
#define VK_OP_SOFTMAX        vk_sup_softmax,         vk_rec_softmax,         0
#define VK_OP_SWIGLU         vk_sup_elementwise,     vk_rec_binary,          B_SWIGLU
#define VK_OP_ROPE           vk_sup_rope,            vk_rec_rope,            0
#define VK_OP_ATTENTION      vk_sup_attention,       vk_rec_attention,       0
#define VK_OP_EMBEDDING      vk_sup_embedding,       vk_rec_embedding,       0
#define VK_OP_TOPK           vk_sup_topk,            vk_rec_topk,            0
#define VK_OP_HC_EXPAND      vk_sup_hc_expand,       vk_rec_hc_expand,       0
#define VK_OP_HC_PRE         vk_sup_hc_pre,          vk_rec_hc_pre,          0
#define VK_OP_HC_POST        vk_sup_hc_post,         vk_rec_hc_post,         0
#define VK_OP_HC_HEAD        vk_sup_hc_head,         vk_rec_hc_head,         0
#define VK_OP_SINKHORN       vk_sup_sinkhorn,        vk_rec_sinkhorn,        0
#define VK_OP_MOE_ROUTE      vk_sup_moe_route,       vk_rec_moe_route,       0
#define VK_OP_MOE_HASH_ROUTE vk_sup_moe_hash_route,  vk_rec_moe_hash_route,  0
#define VK_OP_MOE_FFN        vk_sup_moe_ffn,         vk_rec_moe_ffn,         0
#define VK_OP_NGRAM_HASH     vk_sup_ngram_hash,      vk_rec_ngram_hash,      0
#define VK_OP_ENGRAM_LOOKUP  vk_sup_engram_lookup,   vk_rec_engram_lookup,   0
#define VK_OP_ENGRAM_GATE    vk_sup_engram_gate,     vk_rec_engram_gate,     0
#define VK_OP_SHORT_CONV     vk_sup_short_conv,      vk_rec_short_conv,      0
#define VK_OP_KV_WRITE       vk_sup_kv_write,        vk_rec_kv_write,        0
#define VK_OP_HADAMARD       vk_sup_hadamard,        vk_rec_hadamard,        0
#define VK_OP_FAKE_QUANT     vk_sup_fake_quant,      vk_rec_fake_quant,      0
#define VK_OP_KV_COMPRESS    vk_sup_kv_compress,     vk_rec_kv_compress,     0
#define VK_OP_KV_SCATTER     vk_sup_kv_scatter,      vk_rec_kv_scatter,      0
#define VK_OP_INDEX_SCORES   vk_sup_index_scores,    vk_rec_index_scores,    0
#define VK_OP_SPARSE_ATTENTION vk_sup_sparse_attention, vk_rec_sparse_attention, 0
#define VK_OP_GROUPED_LINEAR vk_sup_grouped_linear,  vk_rec_grouped_linear,  0
/* clang-format on */

typedef struct vk_op_row {
  vk_supported_fn supported; /* NULL: not run on Vulkan */
  vk_record_fn record;
  uint32_t code;
} vk_op_row;

#define VK_OP_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID] = {VK_OP_##ID},
static const vk_op_row vk_op_table[VNRT_OP_COUNT] = {VNRT_OP_LIST(VK_OP_ROW_)};
#undef VK_OP_ROW_

/* Whether every result of node has no elements: such a node records no dispatch, whatever
 * grid its kernel would have needed for the (empty) rows of, say, f32[1e12, 0]. */
static bool outputs_empty(const vnrt_backend_graph *graph, const vnrt_backend_node *node) {
  for (int32_t i = 0; i < node->n_outputs; ++i) {
    if (vnrt_numel(&vnrt_node_output(graph, node, i)->type) != 0) return false;
  }
  return true;
}

int vk_op_supported(const vnrt_backend_device *device, const vnrt_backend_graph *graph,
                    const vnrt_backend_node *node, char *why, size_t why_size) {
  if (node->op < 0 || node->op >= VNRT_OP_COUNT || !vk_op_table[node->op].supported) {
    snprintf(why, why_size, "no kernel");
    return 0;
  }
  if (vk_op_table[node->op].record && outputs_empty(graph, node)) return 1;
  return vk_op_table[node->op].supported(device, graph, node, why, why_size);
}

vnrt_status vk_op_record(vk_builder *b, const vnrt_backend_graph *graph,
                         const vnrt_backend_node *node) {
  if (node->op < 0 || node->op >= VNRT_OP_COUNT || !vk_op_table[node->op].record) {
    const vnrt_backend_host *host = vk_builder_host(b);
    return host->error(host->core, VNRT_ERROR_INTERNAL, "vulkan: no recorder for op %s",
                       vnrt_op_name(node->op));
  }
  if (outputs_empty(graph, node)) return VNRT_OK;
  return vk_op_table[node->op].record(b, graph, node, vk_op_table[node->op].code);
}
