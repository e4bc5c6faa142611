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
vnrt_status cpu_fast_hc_head(const cpu_kernel_args *args);
vnrt_status cpu_fast_hc_expand(const cpu_kernel_args *args);
vnrt_status cpu_fast_moe_ffn(const cpu_kernel_args *args);
vnrt_status cpu_fast_short_conv(const cpu_kernel_args *args);
vnrt_status cpu_fast_sparse_attention(const cpu_kernel_args *args);
vnrt_status cpu_fast_index_scores(const cpu_kernel_args *args);
vnrt_status cpu_fast_grouped_linear(const cpu_kernel_args *args);
vnrt_status cpu_fast_kv_compress(const cpu_kernel_args *args);
/* fast_rows.c: the memory-bound row-wise and elementwise ops */
vnrt_status cpu_fast_rms_norm(const cpu_kernel_args *args);
vnrt_status cpu_fast_softmax(const cpu_kernel_args *args);
vnrt_status cpu_fast_add(const cpu_kernel_args *args);
vnrt_status cpu_fast_sub(const cpu_kernel_args *args);
vnrt_status cpu_fast_mul(const cpu_kernel_args *args);
vnrt_status cpu_fast_div(const cpu_kernel_args *args);
vnrt_status cpu_fast_swiglu(const cpu_kernel_args *args);
vnrt_status cpu_fast_silu(const cpu_kernel_args *args);
vnrt_status cpu_fast_sigmoid(const cpu_kernel_args *args);
vnrt_status cpu_fast_exp(const cpu_kernel_args *args);
vnrt_status cpu_fast_scale(const cpu_kernel_args *args);
vnrt_status cpu_fast_cast(const cpu_kernel_args *args);
vnrt_status cpu_fast_rope(const cpu_kernel_args *args);
vnrt_status cpu_fast_hadamard(const cpu_kernel_args *args);
vnrt_status cpu_fast_fake_quant(const cpu_kernel_args *args);

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

/* Whether every result of a kernel has no elements. A zero-element tensor may still have a
 * huge other dim (f32[1000000000000, 0]): the backend runs no kernel for such a node (its
 * shapes were checked when the graph was built), instead of looping over nothing for minutes. */
static inline bool cpu_outputs_empty(const cpu_kernel_args *args) {
  for (int32_t i = 0; i < args->n_out; ++i) {
    if (vnrt_tensor_type_numel(args->out_type[i]) != 0) return false;
  }
  return true;
}

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

/* ---- quantized weights (docs/ops.md, "Quantized weights") ------------------------------- */

/* A weight operand as the kernels read it: plain f32/f16/bf16 (scale NULL), or e4m3/e2m1 codes
 * with one e8m0 scale per block over the last two dims:
 * W[m][r][c] = decode(code[m][r][c]) * 2^(scale[m][r / br][c / bc] - 127). e2m1 codes are
 * nibbles, element i of the tensor in byte i / 2 (even i in the low nibble). Leading dims
 * (moe_ffn's experts) are folded into mats. */
typedef struct cpu_weight {
  const void *data;
  vnrt_dtype dtype;         /* f32/f16/bf16, or VNRT_E4M3 / VNRT_E2M1 codes */
  const uint8_t *scale;     /* e8m0 [mats, srows, scols]; NULL for a float weight */
  int64_t mats, rows, cols; /* leading dims folded, then the last two */
  int64_t br, bc;           /* the block: rows x cols one scale covers */
  int64_t srows, scols;     /* ceil(rows / br), ceil(cols / bc) */
} cpu_weight;

/* The view of node input `input` (rank >= 2) with quantization q (the node's typed params);
 * reports an error naming the node when the scale input is missing or mis-shaped (the graph
 * layer checks both, so that is a corrupt node). */
vnrt_status cpu_weight_init(const cpu_kernel_args *a, int32_t input, const vnrt_quant_weight *q,
                            cpu_weight *w);

/* The reference kernels' decoders: every e4m3 (or e2m1) code and every e8m0 scale widened once
 * per call through the public codecs (core/quant.c), so the reference states the contract. */
typedef struct cpu_dequant_lut {
  float code[256];
  float scale[256];
} cpu_dequant_lut;
void cpu_dequant_lut_init(cpu_dequant_lut *t, vnrt_dtype codes);

/* The code (e4m3 byte or e2m1 nibble) of element i of a quantized weight's tensor. */
static inline uint8_t cpu_weight_code(const cpu_weight *w, int64_t i) {
  const uint8_t *p = (const uint8_t *)w->data;
  if (w->dtype == VNRT_E2M1) return (uint8_t)((p[i >> 1] >> ((i & 1) * 4)) & 0xFu);
  return p[i];
}

/* W[mat][r][c] in f32: decode(code) * scale as the contract says, or the float weight widened. */
static inline float cpu_weight_load(const cpu_weight *w, const cpu_dequant_lut *t, int64_t mat,
                                    int64_t r, int64_t c) {
  const int64_t i = (mat * w->rows + r) * w->cols + c;
  if (!w->scale) return cpu_load_f32(w->data, w->dtype, i);
  const uint8_t s = w->scale[(mat * w->srows + r / w->br) * w->scols + c / w->bc];
  return t->code[cpu_weight_code(w, i)] * t->scale[s];
}

/* Σ_c x[c]·W[mat][r][c] over the row's cols, in f32 with c ascending: the reference's dot of
 * an f32 activation with one (dequantized) weight row. */
float cpu_ref_qdot(const cpu_weight *w, const cpu_dequant_lut *t, int64_t mat, int64_t r,
                   const float *x);

/* *out = input `input` ([rows, k] of any float dtype) widened to f32, each row fake-quantized
 * to e4m3 in blocks of act_quant channels (cpu_fake_quant_block) when act_quant > 0. Free it
 * with a->host->free; reports allocation failures. */
vnrt_status cpu_act_quant_rows(const cpu_kernel_args *a, int32_t input, int64_t rows, int64_t k,
                               int32_t act_quant, float **out);

#endif /* VNRT_BACKENDS_CPU_KERNELS_H_ */
