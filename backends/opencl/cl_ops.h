/* Private to the OpenCL backend: which ops the device runs (supports) and how each is lowered
 * to steps at compile time, one file per op group (cl_ops_<group>.c). */
#ifndef VNRT_BACKENDS_OPENCL_CL_OPS_H_
#define VNRT_BACKENDS_OPENCL_CL_OPS_H_

#include "cl_exec.h"

/* Whether node (already checked for sane tensor indices, ranks and sizes) runs as typed. */
int cl_ops_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                    const vnrt_backend_node *node);
/* Appends the node's steps. */
vnrt_status cl_ops_lower(cl_lower *L);

/* The type of input/output i of node in graph. */
static inline const vnrt_tensor_type *cl_q_in(const vnrt_backend_graph *g,
                                              const vnrt_backend_node *node, int32_t i) {
  return &g->tensors[node->inputs[i]].type;
}
static inline const vnrt_tensor_type *cl_q_out(const vnrt_backend_graph *g,
                                               const vnrt_backend_node *node, int32_t i) {
  return &g->tensors[node->outputs[i]].type;
}

/* Per group: supports (given a node of one of its ops) and lower. */
#define CL_OPS_GROUP_(group)                                                           \
  int cl_##group##_supports(vnrt_backend_device *dev, const vnrt_backend_graph *graph, \
                            const vnrt_backend_node *node);                            \
  vnrt_status cl_##group##_lower(cl_lower *L);
CL_OPS_GROUP_(elementwise)
CL_OPS_GROUP_(linalg)
CL_OPS_GROUP_(attention)
CL_OPS_GROUP_(index)
CL_OPS_GROUP_(mhc)
CL_OPS_GROUP_(moe)
CL_OPS_GROUP_(engram)
#undef CL_OPS_GROUP_

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

/* Launches a single work-group (a check kernel), with its local int buffer as last argument. */
vnrt_status cl_launch_single(cl_launch *k, size_t want_wg);

#endif /* VNRT_BACKENDS_OPENCL_CL_OPS_H_ */
