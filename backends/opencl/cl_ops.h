/* Private to the OpenCL backend: what the device runs and how each op is lowered to steps at
 * compile time. The op table (cl_ops.c) has one row per op of vnrt/ops.h: a supports and a
 * lower function, defined per op group in cl_ops_<group>.c and declared here. */
#ifndef VNRT_BACKENDS_OPENCL_CL_OPS_H_
#define VNRT_BACKENDS_OPENCL_CL_OPS_H_

#include "cl_exec.h"
#include "vnrt/backend_util.h"

/* Whether node (already checked for sane tensor indices, ranks and sizes) runs as typed. */
typedef int (*cl_supports_fn)(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                              const vnrt_backend_node *node);
/* Appends the node's steps. */
typedef vnrt_status (*cl_lower_fn)(cl_lower *L);

/* The op table's answers: 0 for an op without a row (the CPU fallback runs it). */
int cl_ops_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                    const vnrt_backend_node *node);
vnrt_status cl_ops_lower(cl_lower *L);

/* The type of input/output i of node in graph. */
static inline const vnrt_tensor_type *cl_q_in(const vnrt_backend_graph *g,
                                              const vnrt_backend_node *node, int32_t i) {
  return &vnrt_node_input(g, node, i)->type;
}
static inline const vnrt_tensor_type *cl_q_out(const vnrt_backend_graph *g,
                                               const vnrt_backend_node *node, int32_t i) {
  return &vnrt_node_output(g, node, i)->type;
}

/* The rows' functions: cl_<kind>_supports and cl_<kind>_lower. A kind serves one op, or a
 * family whose ops share a kernel (binary: add, sub, mul, div). */
#define CL_OPS_KIND_(kind)                                                            \
  int cl_##kind##_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph, \
                           const vnrt_backend_node *node);                            \
  vnrt_status cl_##kind##_lower(cl_lower *L);
/* cl_ops_elementwise.c */
CL_OPS_KIND_(binary) /* add, sub, mul, div */
CL_OPS_KIND_(unary)  /* neg ... sqrt_softplus, scale, clamp */
CL_OPS_KIND_(cast)
CL_OPS_KIND_(reshape)
CL_OPS_KIND_(transpose)
CL_OPS_KIND_(slice)
CL_OPS_KIND_(concat)
CL_OPS_KIND_(kv_write)
/* cl_ops_linalg.c */
CL_OPS_KIND_(matmul)
CL_OPS_KIND_(linear)
CL_OPS_KIND_(rms_norm)
CL_OPS_KIND_(softmax)
CL_OPS_KIND_(swiglu)
/* cl_ops_attention.c */
CL_OPS_KIND_(rope)
CL_OPS_KIND_(attention)
/* cl_ops_index.c */
CL_OPS_KIND_(embedding)
CL_OPS_KIND_(topk)
/* cl_ops_mhc.c */
CL_OPS_KIND_(hc_expand)
CL_OPS_KIND_(hc_pre)
CL_OPS_KIND_(hc_post)
CL_OPS_KIND_(hc_head)
CL_OPS_KIND_(sinkhorn)
/* cl_ops_moe.c */
CL_OPS_KIND_(moe_route)
CL_OPS_KIND_(moe_hash_route)
CL_OPS_KIND_(moe_ffn)
/* cl_ops_engram.c */
CL_OPS_KIND_(ngram_hash)
CL_OPS_KIND_(engram_lookup)
CL_OPS_KIND_(engram_gate)
CL_OPS_KIND_(short_conv)
/* cl_ops_quant.c */
CL_OPS_KIND_(hadamard)
CL_OPS_KIND_(fake_quant)
CL_OPS_KIND_(grouped_linear)
/* cl_ops_v4.c */
CL_OPS_KIND_(kv_compress)
CL_OPS_KIND_(kv_scatter)
CL_OPS_KIND_(index_scores)
CL_OPS_KIND_(sparse_attention)
#undef CL_OPS_KIND_

/* Quantized weights and act_quant (cl_ops_quant.c; docs/ops.md, "Quantized weights"). clBLAST
 * and the GEMM kernels take float operands only, so these nodes run vnrt's own kernels, which
 * decode e4m3/e2m1 codes and their e8m0 scales as they load them. */
/* linear with codes or act_quant, matmul with a quantized b: whether the node takes this path;
 * whether the device runs it; its lowering. */
int cl_q_gemv_node(const vnrt_backend_node *node);
int cl_q_gemv_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                       const vnrt_backend_node *node);
vnrt_status cl_q_gemv_lower(cl_lower *L);
/* embedding with a quantized table: supports, and the gather after the id check. */
int cl_q_embedding_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                            const vnrt_backend_node *node);
vnrt_status cl_q_embedding_gather(cl_lower *L);
/* moe_ffn with quantized experts or act_quant: the path, supports, and the passes after the
 * expert-id check. */
int cl_q_moe_ffn_node(const vnrt_backend_node *node);
int cl_q_moe_ffn_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                          const vnrt_backend_node *node);
vnrt_status cl_q_moe_ffn_passes(cl_lower *L);
/* Whether a quantized moe_ffn takes the two fused passes (quant.cl's moe_ffn_up_aq and
 * moe_ffn_down_aq); the up pass also writes the expert ids' check into error slots slot and
 * slot + 1 (the caller adds the deferred check step after it) and returns h's scratch. */
int cl_q_moe_ffn_fused(cl_lower *L);
vnrt_status cl_q_moe_ffn_fused_up(cl_lower *L, int32_t slot, uint64_t *out_h);
vnrt_status cl_q_moe_ffn_fused_down(cl_lower *L, uint64_t h);

/* Appends C[M, N] = A[M, K]·B[N, K]ᵀ (inputs a_input, b_input of the node, any float dtype)
 * as a GEMM into this node's f32 scratch at c_off (cl_ops_linalg.c). */
vnrt_status cl_lower_gemm_nt_to_scratch(cl_lower *L, int32_t a_input, int32_t b_input, int64_t M,
                                        int64_t N, int64_t K, uint64_t c_off);

/* Work-group size the reduction kernels ask for. */
#define CL_REDUCE_WG 64

/* Launches a 1-D elementwise-style kernel over n items (the builder's arguments already
 * added), with a work-group size the device allows. */
vnrt_status cl_launch_1d(cl_launch *k, int64_t n);

/* Launches one work-group of a reduction kernel per row (rows groups), with its local
 * reduction buffer (wg floats) as the last argument. */
vnrt_status cl_launch_rows(cl_launch *k, int64_t rows, size_t want_wg);

/* Launches a 2-D kernel over n0 x n1 items with work-groups of (up to 64) x 1: a fixed local
 * size keeps drivers that compile per local size (PoCL) from compiling one per shape. */
vnrt_status cl_launch_2d(cl_launch *k, int64_t n0, int64_t n1);
/* cl_launch_2d with work-groups of want_wg items along n0 (capped as cl_launch_wg does). */
vnrt_status cl_launch_2d_wg(cl_launch *k, int64_t n0, int64_t n1, size_t want_wg);

/* Launches a single work-group (a check kernel), with its local int buffer as last argument. */
vnrt_status cl_launch_single(cl_launch *k, size_t want_wg);

#endif /* VNRT_BACKENDS_OPENCL_CL_OPS_H_ */
