/* CPU reference kernels of the quantization-support ops of docs/ops.md. */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"

/* hadamard: each row x[D] (D a power of 2) becomes H_D·x·D^-1/2, H_D the Sylvester-order
 * Walsh–Hadamard matrix (H_1 = [1], H_2m = [[H_m, H_m], [H_m, -H_m]]). The butterflies run in
 * f32 on a copy of the row, then the row is scaled once and stored in the output dtype. */
vnrt_status cpu_ref_hadamard(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *ot = a->out_type[0];
  const int64_t D = xt->dims[xt->rank - 1];
  const int64_t rows = D > 0 ? vnrt_tensor_type_numel(xt) / D : 0;
  float *row = a->host->alloc(a->host->core, (size_t)(D > 0 ? D : 1) * sizeof *row);
  if (!row) {
    return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_MEMORY, "hadamard '%s': out of memory",
                          a->node->name);
  }
  const float scale = (float)(1.0 / sqrt((double)D));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < D; ++i) row[i] = cpu_load_f32(a->in[0], xt->dtype, r * D + i);
    for (int64_t h = 1; h < D; h *= 2) {
      for (int64_t i = 0; i < D; i += 2 * h) {
        for (int64_t j = i; j < i + h; ++j) {
          const float u = row[j], v = row[j + h];
          row[j] = u + v;
          row[j + h] = u - v;
        }
      }
    }
    for (int64_t i = 0; i < D; ++i) cpu_store_f32(a->out[0], ot->dtype, r * D + i, row[i] * scale);
  }
  a->host->free(a->host->core, row);
  return VNRT_OK;
}

/* ---- fake_quant and activation quantization -------------------------------------------- */

void cpu_fake_quant_block(float *v, int64_t n, vnrt_dtype fmt) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = fmaxf(amax, fabsf(v[i]));
  const float s = vnrt_e8m0_to_f32(vnrt_quant_block_scale(fmt, amax));
  for (int64_t i = 0; i < n; ++i) {
    const float q = v[i] / s; /* exact: s is a power of two */
    const float d = fmt == VNRT_E2M1 ? vnrt_e2m1_to_f32(vnrt_f32_to_e2m1(q))
                                     : vnrt_e4m3_to_f32(vnrt_f32_to_e4m3(q));
    v[i] = d * s;
  }
}

/* fake_quant: per row of x[..., D], channels [start, start + len) in blocks of `block`, each
 * quantized to fmt with its power-of-two scale and dequantized; the rest copied. */
vnrt_status cpu_ref_fake_quant(const cpu_kernel_args *a) {
  const vnrt_fake_quant_params *p = &a->node->params->fake_quant;
  const vnrt_tensor_type *xt = a->in_type[0], *ot = a->out_type[0];
  const int64_t D = xt->dims[xt->rank - 1];
  const int64_t rows = D > 0 ? vnrt_tensor_type_numel(xt) / D : 0;
  float *row = a->host->alloc(a->host->core, (size_t)(D > 0 ? D : 1) * sizeof *row);
  if (!row) {
    return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_MEMORY, "fake_quant '%s': out of memory",
                          a->node->name);
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < D; ++i) row[i] = cpu_load_f32(a->in[0], xt->dtype, r * D + i);
    for (int64_t b = p->start; b + p->block <= p->start + p->len; b += p->block) {
      cpu_fake_quant_block(row + b, p->block, p->fmt);
    }
    for (int64_t i = 0; i < D; ++i) cpu_store_f32(a->out[0], ot->dtype, r * D + i, row[i]);
  }
  a->host->free(a->host->core, row);
  return VNRT_OK;
}
