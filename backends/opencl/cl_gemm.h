/* Private to the OpenCL backend: GEMM for matmul and linear, by vnrt's own tiled kernel or by
 * clBLAST, chosen per device and shape by timing both once and remembering the choice next to
 * the program cache. */
#ifndef VNRT_BACKENDS_OPENCL_CL_GEMM_H_
#define VNRT_BACKENDS_OPENCL_CL_GEMM_H_

#include "cl_common.h"

/* vnrt's own kernels (shaders/opencl/gemm.cl) come in three shapes; each is a candidate. */
typedef enum cl_gemm_impl {
  CL_GEMM_TILED = 1,   /* local-memory tiles (gemm_t64/t32; gemm_naive on tiny work-groups) */
  CL_GEMM_CLBLAST = 2, /* CLBlastSgemm, with f16/bf16 operands converted to f32 first */
  CL_GEMM_VEC = 3,     /* register blocks in explicit vectors (gemm_vec_nt/nn): CPU-like devices */
  CL_GEMM_ROWS = 4,    /* a work-group per output, parallel over k (gemm_rows): few rows */
} cl_gemm_impl;

/* "tiled", "clblast", "vec", "rows". */
const char *cl_gemm_impl_name(cl_gemm_impl impl);

/* C[z] = A[z]·B[z] for every batch z = (b0, b1) of C, in elements. A is [M, K] row-major; B is
 * [K, N] row-major, or [N, K] (w of linear) when trans_b. */
typedef struct cl_gemm_shape {
  int64_t M, N, K;
  int trans_b;
  vnrt_dtype da, db, dc;
  int64_t batch[2];     /* C's batch dims (1 when absent) */
  int64_t a_bstride[2]; /* A's element stride per batch dim; 0 where A broadcasts */
  int64_t b_bstride[2];
  int64_t a_numel, b_numel; /* elements of the whole A and B tensors */
} cl_gemm_shape;

/* One prepared GEMM: buffers and byte offsets, and what each implementation needs. */
typedef struct cl_gemm_call {
  cl_gemm_shape s;
  cl_gemm_impl impl;
  cl_mem a, b, c;
  uint64_t a_off, b_off, c_off;
  /* own */
  cl_kernel kernel;
  size_t gws[3], lws[3];
  cl_uint dim;
  /* clBLAST: f32 copies of non-f32 operands and of a non-f32 result, in scratch */
  cl_kernel cvt[3];
  size_t cvt_gws[3], cvt_lws;
  cl_mem scratch;
  uint64_t scratch_off;
} cl_gemm_call;

/* Whether clBLAST was compiled in. */
int cl_gemm_have_clblast(void);

/* The implementation for s on dev: forced by $VNRT_CL_GEMM (tiled|vec|rows|clblast; "own"
 * measures only vnrt's kernels), remembered from an earlier measurement, or measured now (every
 * candidate runs on scratch buffers; the fastest wins and is appended to the cache). Shapes
 * too small to measure take the own kernel that suits the device type. */
vnrt_status cl_gemm_choose(vnrt_backend_device *dev, const cl_gemm_shape *s,
                           cl_gemm_impl *out_impl);

/* Bytes of scratch impl needs for s (clBLAST's f32 copies; 0 for the own kernel). */
uint64_t cl_gemm_scratch_bytes(const cl_gemm_shape *s, cl_gemm_impl impl);

/* Creates the call's kernels and binds their arguments; call->a..c, offsets, scratch (when
 * needed) and impl must be set. */
vnrt_status cl_gemm_prepare(vnrt_backend_device *dev, cl_gemm_call *call);
/* Enqueues the call on dev's queue (does not wait). Timed runs pass out_begin and out_end
 * (else NULL): the call's device time is END - START of *out_end when *out_begin is NULL (one
 * kernel), else END(*out_end) - END(*out_begin) (markers around several); the caller releases
 * them. */
vnrt_status cl_gemm_enqueue(vnrt_backend_device *dev, const cl_gemm_call *call, cl_event *out_begin,
                            cl_event *out_end);
/* Releases the call's kernels (not its buffers). */
void cl_gemm_release(cl_gemm_call *call);

/* Frees dev's remembered choices. */
void cl_gemm_forget(vnrt_backend_device *dev);

#endif /* VNRT_BACKENDS_OPENCL_CL_GEMM_H_ */
