/* OpenCL lowering of the quantization support ops (docs/ops.md): hadamard (shaders quant.cl). */
#include <math.h>

#include "cl_ops.h"

/* The largest row hadamard takes: its f32 copy lives in local memory. */
#define HADAMARD_MAX_D 65536

int cl_hadamard_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                         const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (!cl_is_float(x->dtype) || o->dtype != x->dtype || x->rank < 1 ||
      vnrt_numel(o) != vnrt_numel(x)) {
    return 0;
  }
  int64_t D = x->dims[x->rank - 1];
  return D >= 1 && (D & (D - 1)) == 0 && D <= HADAMARD_MAX_D &&
         (uint64_t)D * sizeof(float) <= dev->desc->local_mem;
}

vnrt_status cl_hadamard_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t D = x->dims[x->rank - 1];
  int64_t rows = vnrt_numel(x) / D;
  if (rows == 0) return VNRT_OK;
  cl_launch k;
  cl_launch_begin(L, "hadamard", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  /* The CPU reference's scale: 1/sqrt(D) in double, rounded once to f32. */
  cl_arg_f32(&k, (float)(1.0 / sqrt((double)D)));
  cl_arg_local(&k, sizeof(float) * (size_t)D);
  /* A fixed work-group size, as the reductions use: PoCL compiles a kernel per local size. */
  size_t wg = cl_launch_wg(&k, CL_REDUCE_WG);
  size_t items = (size_t)rows * wg;
  return cl_launch_end(&k, 1, &items, &wg);
}
