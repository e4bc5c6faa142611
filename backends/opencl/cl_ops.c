/* The OpenCL backend's op dispatch: each op of vnrt/ops.h to the file of its group. */
#include "cl_ops.h"

typedef enum cl_group {
  G_NONE,
  G_ELEMENTWISE,
  G_LINALG,
  G_ATTENTION,
  G_INDEX,
  G_MHC,
  G_MOE,
  G_ENGRAM
} cl_group;

static cl_group group_of(vnrt_op op) {
  switch (op) {
    case VNRT_OP_ADD:
    case VNRT_OP_SUB:
    case VNRT_OP_MUL:
    case VNRT_OP_DIV:
    case VNRT_OP_SCALE:
    case VNRT_OP_NEG:
    case VNRT_OP_EXP:
    case VNRT_OP_SQRT:
    case VNRT_OP_RSQRT:
    case VNRT_OP_TANH:
    case VNRT_OP_RELU:
    case VNRT_OP_SIGMOID:
    case VNRT_OP_SILU:
    case VNRT_OP_GELU:
    case VNRT_OP_SOFTPLUS:
    case VNRT_OP_SQRT_SOFTPLUS:
    case VNRT_OP_CLAMP:
    case VNRT_OP_CAST:
    case VNRT_OP_RESHAPE:
    case VNRT_OP_TRANSPOSE:
    case VNRT_OP_SLICE:
    case VNRT_OP_CONCAT:
    case VNRT_OP_KV_WRITE:
      return G_ELEMENTWISE;
    case VNRT_OP_MATMUL:
    case VNRT_OP_LINEAR:
    case VNRT_OP_RMS_NORM:
    case VNRT_OP_SOFTMAX:
    case VNRT_OP_SWIGLU:
      return G_LINALG;
    case VNRT_OP_ROPE:
    case VNRT_OP_ATTENTION:
      return G_ATTENTION;
    case VNRT_OP_EMBEDDING:
    case VNRT_OP_TOPK:
      return G_INDEX;
    case VNRT_OP_HC_EXPAND:
    case VNRT_OP_HC_PRE:
    case VNRT_OP_HC_POST:
    case VNRT_OP_HC_HEAD:
    case VNRT_OP_SINKHORN:
      return G_MHC;
    case VNRT_OP_MOE_ROUTE:
    case VNRT_OP_MOE_HASH_ROUTE:
    case VNRT_OP_MOE_FFN:
      return G_MOE;
    case VNRT_OP_NGRAM_HASH:
    case VNRT_OP_ENGRAM_LOOKUP:
    case VNRT_OP_ENGRAM_GATE:
    case VNRT_OP_SHORT_CONV:
      return G_ENGRAM;
    default:
      return G_NONE;
  }
}

int cl_ops_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                    const vnrt_backend_node *node) {
  switch (group_of(node->op)) {
    case G_ELEMENTWISE:
      return cl_elementwise_supports(dev, graph, node);
    case G_LINALG:
      return cl_linalg_supports(dev, graph, node);
    case G_ATTENTION:
      return cl_attention_supports(dev, graph, node);
    case G_INDEX:
      return cl_index_supports(dev, graph, node);
    case G_MHC:
      return cl_mhc_supports(dev, graph, node);
    case G_MOE:
      return cl_moe_supports(dev, graph, node);
    case G_ENGRAM:
      return cl_engram_supports(dev, graph, node);
    default:
      return 0;
  }
}

vnrt_status cl_ops_lower(cl_lower *L) {
  switch (group_of(L->node->op)) {
    case G_ELEMENTWISE:
      return cl_elementwise_lower(L);
    case G_LINALG:
      return cl_linalg_lower(L);
    case G_ATTENTION:
      return cl_attention_lower(L);
    case G_INDEX:
      return cl_index_lower(L);
    case G_MHC:
      return cl_mhc_lower(L);
    case G_MOE:
      return cl_moe_lower(L);
    case G_ENGRAM:
      return cl_engram_lower(L);
    default:
      return cl_fail(L->dev, VNRT_ERROR_UNSUPPORTED, "node '%s': op %d has no OpenCL kernel",
                     L->node->name, (int)L->node->op);
  }
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
  size_t wg = cl_launch_wg(k, 64);
  size_t items[2] = {(size_t)(n0 > 0 ? n0 : 0), (size_t)(n1 > 0 ? n1 : 0)};
  size_t lws[2] = {wg, 1};
  return cl_launch_end(k, 2, items, lws);
}

vnrt_status cl_launch_single(cl_launch *k, size_t want_wg) {
  size_t wg = cl_launch_wg(k, want_wg);
  cl_arg_local(k, wg * sizeof(int32_t));
  return cl_launch_end(k, 1, &wg, &wg);
}
