/* The CPU backend's kernel interface: one function per op, reference and (optionally) fast. */
#ifndef VNRT_BACKENDS_CPU_KERNELS_H_
#define VNRT_BACKENDS_CPU_KERNELS_H_

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cpu_pool.h"
#include "vnrt/backend.h"
#include "vnrt/backend_util.h"

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

/* Reference kernels: docs/ops.md literally, simple loops, f32 math (cpu_ref_<op>); every op
 * has one. */
#define CPU_DECLARE_REF_(ID, name, min_in, max_in, n_out) \
  vnrt_status cpu_ref_##name(const cpu_kernel_args *args);
VNRT_OP_LIST(CPU_DECLARE_REF_)
#undef CPU_DECLARE_REF_

/* Fast kernels (SIMD, blocking, threads; fast_*.c) for some ops, validated against the
 * reference ones. cpu_ops.c lists them in its table. */
vnrt_status cpu_fast_matmul(const cpu_kernel_args *args);
vnrt_status cpu_fast_linear(const cpu_kernel_args *args);
vnrt_status cpu_fast_attention(const cpu_kernel_args *args);
vnrt_status cpu_fast_hc_pre(const cpu_kernel_args *args);
vnrt_status cpu_fast_hc_post(const cpu_kernel_args *args);
vnrt_status cpu_fast_moe_ffn(const cpu_kernel_args *args);
vnrt_status cpu_fast_short_conv(const cpu_kernel_args *args);

/* What the CPU backend runs for one op (cpu_ops.c): its reference kernel, and its fast kernel
 * or NULL. */
typedef struct cpu_op_kernels {
  cpu_kernel_fn ref;
  cpu_kernel_fn fast;
} cpu_op_kernels;
extern const cpu_op_kernels cpu_op_table[VNRT_OP_COUNT];

/* The kernel for op in kernel mode `mode`: the fast one in VNRT_KERNELS_FAST mode where the op
 * has one, else the reference one. NULL only for an op out of range. */
cpu_kernel_fn cpu_op_kernel(vnrt_op op, vnrt_kernel_mode mode);

/* The e4m3 or e2m1 round trip of one block of n values in place, with the block's power-of-two
 * scale (docs/ops.md's fake_quant; linear's and moe_ffn's act_quant use it per 128). */
void cpu_fake_quant_block(float *v, int64_t n, vnrt_dtype fmt);

/* Whether an attention node's q, k, v (and sinks) have the shapes its params describe; the
 * reference kernel reports the error, the fast one defers to it (ref_attention.c). */
bool cpu_attention_shapes_ok(const cpu_kernel_args *a);

/* docs/ops.md's sinkhorn on one M[n, n] in place (M holds the logits on entry); ref_mhc.c. */
void cpu_sinkhorn_inplace(float *M, int64_t n, int64_t iters, float eps);

/* Element i of a tensor of dtype dt, widened exactly to float. */
static inline float cpu_load_f32(const void *data, vnrt_dtype dt, int64_t i) {
  switch (dt) {
    case VNRT_F32:
      return ((const float *)data)[i];
    case VNRT_F16:
      return vnrt_f16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_BF16: {
      uint32_t bits = (uint32_t)((const uint16_t *)data)[i] << 16;
      float f;
      memcpy(&f, &bits, sizeof f);
      return f;
    }
    case VNRT_I32:
      return (float)((const int32_t *)data)[i];
    default:
      return 0.0f;
  }
}

/* Stores a float as dtype dt (round to nearest even for f16/bf16; i32 truncates). */
static inline void cpu_store_f32(void *data, vnrt_dtype dt, int64_t i, float v) {
  switch (dt) {
    case VNRT_F32:
      ((float *)data)[i] = v;
      break;
    case VNRT_F16:
      ((uint16_t *)data)[i] = vnrt_f32_to_f16(v);
      break;
    case VNRT_BF16:
      ((uint16_t *)data)[i] = vnrt_f32_to_bf16(v);
      break;
    case VNRT_I32:
      ((int32_t *)data)[i] = (int32_t)v;
      break;
    default:
      break;
  }
}

#endif /* VNRT_BACKENDS_CPU_KERNELS_H_ */
