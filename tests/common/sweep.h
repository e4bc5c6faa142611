/* The op sweep shared by the Vulkan and OpenCL backend tests (sweep.c). */
#ifndef VNRT_TESTS_SWEEP_H_
#define VNRT_TESTS_SWEEP_H_

#include "test_util.h"

/* Tensors for the sweeps: uniform values in [lo, hi) over dims d0..d3 (rank of them), i32
 * values copied from v, and freeing n tensors. */
tu_tensor tu_rnd(vnrt_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                 uint64_t seed, float lo, float hi);
tu_tensor tu_ints(int32_t rank, int64_t d0, int64_t d1, const int32_t *v);
void tu_free_all(tu_tensor *t, int32_t n);

/* Runs a one-op graph on the CPU and on target (no fallback) and compares the results:
 * floats by NMSE against tol (NaN or Inf where the CPU has none fails), integers exactly. */
void tu_vs_cpu(vnrt_context *ctx, vnrt_device *target, const char *what, vnrt_op op,
               const tu_tensor *in, int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs,
               int32_t n_out, double tol);

/* The families of the sweep, each against the CPU. */
void tu_sweep_index_rope_attention(vnrt_context *ctx, vnrt_device *target);
void tu_sweep_mhc_moe(vnrt_context *ctx, vnrt_device *target);
void tu_sweep_engram(vnrt_context *ctx, vnrt_device *target);

#endif /* VNRT_TESTS_SWEEP_H_ */
