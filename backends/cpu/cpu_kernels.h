/* The CPU backend's kernel interface: one function per op, reference and (optionally) fast. */
#ifndef VNRT_BACKENDS_CPU_KERNELS_H_
#define VNRT_BACKENDS_CPU_KERNELS_H_

#include <math.h>
#include <stdint.h>

#include "vnrt/backend.h"
#include "cpu_pool.h"

/* What a kernel gets: its node, the tensors it reads and writes, and where their data is. */
typedef struct cpu_kernel_args {
  const vnrt_backend_node *node;
  int32_t n_in, n_out;
  const vnrt_tensor_type *in_type[VNRT_MAX_NODE_INPUTS];
  const void *in[VNRT_MAX_NODE_INPUTS];
  const vnrt_tensor_type *out_type[VNRT_MAX_NODE_OUTPUTS];
  void *out[VNRT_MAX_NODE_OUTPUTS];
  cpu_pool *pool;                /* worker threads; never NULL */
  const vnrt_backend_host *host; /* report run-time errors with host->error(host->core, ...) */
} cpu_kernel_args;

typedef vnrt_status (*cpu_kernel_fn)(const cpu_kernel_args *args);

/* Reference kernels: spec/ops.md literally, simple loops, f32 math (cpu_ref_<op>); every op has
 * one. Fast kernels (cpu_fast_<op>) exist for some ops only and are validated against them:
 * fast_kernels.h lists those and fast_table.c references them strongly (so static links keep
 * them); the weak declarations here only let any file name a fast kernel. */
#define CPU_DECLARE_KERNELS_(ID, name, min_in, max_in, n_out)              \
  vnrt_status cpu_ref_##name(const cpu_kernel_args *args);                 \
  __attribute__((weak)) vnrt_status cpu_fast_##name(const cpu_kernel_args *args);
VNRT_OP_LIST(CPU_DECLARE_KERNELS_)
#undef CPU_DECLARE_KERNELS_

/* spec/ops.md's sinkhorn on one M[n, n] in place (M holds the logits on entry); ref_mhc.c. */
void cpu_sinkhorn_inplace(float *M, int64_t n, int64_t iters, float eps);

/* Element i of a tensor of dtype dt, widened exactly to float. */
static inline float cpu_load_f32(const void *data, vnrt_dtype dt, int64_t i) {
  switch (dt) {
    case VNRT_F32: return ((const float *)data)[i];
    case VNRT_F16: return vnrt_f16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_BF16: {
      uint32_t bits = (uint32_t)((const uint16_t *)data)[i] << 16;
      float f;
      memcpy(&f, &bits, sizeof f);
      return f;
    }
    case VNRT_I32: return (float)((const int32_t *)data)[i];
    default: return 0.0f;
  }
}

/* Stores a float as dtype dt (round to nearest even for f16/bf16; i32 truncates). */
static inline void cpu_store_f32(void *data, vnrt_dtype dt, int64_t i, float v) {
  switch (dt) {
    case VNRT_F32: ((float *)data)[i] = v; break;
    case VNRT_F16: ((uint16_t *)data)[i] = vnrt_f32_to_f16(v); break;
    case VNRT_BF16: ((uint16_t *)data)[i] = vnrt_f32_to_bf16(v); break;
    case VNRT_I32: ((int32_t *)data)[i] = (int32_t)v; break;
    default: break;
  }
}

#endif /* VNRT_BACKENDS_CPU_KERNELS_H_ */
