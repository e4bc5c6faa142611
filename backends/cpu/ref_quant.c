/* CPU reference kernels of the quantization-support ops of docs/ops.md (hadamard, fake_quant),
 * and what the reference kernels of linear, matmul, embedding and moe_ffn share for quantized
 * weights: the weight view, the decoders (the public codecs), the row dot and act_quant. */
#include <math.h>
#include <stdint.h>
#include <string.h>

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

/* ---- quantized weight operands --------------------------------------------------------- */

static vnrt_status weight_error(const cpu_kernel_args *a, int32_t input, const char *what) {
  return a->host->error(a->host->core, VNRT_ERROR_INTERNAL, "%s '%s': weight input %d: %s",
                        vnrt_op_name(a->node->op), a->node->name ? a->node->name : "?", (int)input,
                        what);
}

vnrt_status cpu_weight_init(const cpu_kernel_args *a, int32_t input, const vnrt_quant_weight *q,
                            cpu_weight *w) {
  const vnrt_tensor_type *t = a->in_type[input];
  memset(w, 0, sizeof *w);
  w->data = a->in[input];
  w->dtype = t->dtype;
  w->rows = t->rank >= 2 ? t->dims[t->rank - 2] : 1;
  w->cols = t->rank >= 1 ? t->dims[t->rank - 1] : 1;
  const int64_t per_mat = w->rows * w->cols;
  w->mats = per_mat > 0 ? vnrt_tensor_type_numel(t) / per_mat : 0;
  const bool codes = t->dtype == VNRT_E4M3 || t->dtype == VNRT_E2M1;
  if (q->codes == VNRT_DTYPE_INVALID) {
    return codes ? weight_error(a, input, "codes without their scale (params not resolved)")
                 : VNRT_OK;
  }
  if (q->codes != t->dtype || t->rank < 2) {
    return weight_error(a, input, "the params' code dtype differs from the input's");
  }
  const int32_t si = q->scale_input;
  if (si < 0 || si >= a->n_in || q->block[0] < 1 || q->block[1] < 1) {
    return weight_error(a, input, "no scale input, or a block that is not positive");
  }
  const vnrt_tensor_type *st = a->in_type[si];
  w->br = q->block[0];
  w->bc = q->block[1];
  w->srows = (w->rows + w->br - 1) / w->br;
  w->scols = (w->cols + w->bc - 1) / w->bc;
  bool ok = st->dtype == VNRT_E8M0 && st->rank == t->rank && st->dims[st->rank - 2] == w->srows &&
            st->dims[st->rank - 1] == w->scols;
  for (int32_t d = 0; ok && d < t->rank - 2; ++d) ok = st->dims[d] == t->dims[d];
  if (!ok) return weight_error(a, input, "the e8m0 scale does not have one entry per block");
  w->scale = a->in[si];
  if (!w->scale && w->mats * w->srows * w->scols > 0) {
    return weight_error(a, input, "the scale has no data");
  }
  return VNRT_OK;
}

void cpu_dequant_lut_init(cpu_dequant_lut *t, vnrt_dtype codes) {
  for (int i = 0; i < 256; ++i) {
    t->code[i] =
        codes == VNRT_E2M1 ? vnrt_e2m1_to_f32((uint8_t)(i & 0xF)) : vnrt_e4m3_to_f32((uint8_t)i);
    t->scale[i] = vnrt_e8m0_to_f32((uint8_t)i);
  }
}

float cpu_ref_qdot(const cpu_weight *w, const cpu_dequant_lut *t, int64_t mat, int64_t r,
                   const float *x) {
  const int64_t row = (mat * w->rows + r) * w->cols;
  float acc = 0.0f;
  if (!w->scale) {
    for (int64_t c = 0; c < w->cols; ++c) acc += x[c] * cpu_load_f32(w->data, w->dtype, row + c);
    return acc;
  }
  const uint8_t *srow = w->scale + (mat * w->srows + r / w->br) * w->scols;
  for (int64_t b = 0; b < w->scols; ++b) {
    const float s = t->scale[srow[b]];
    const int64_t end = (b + 1) * w->bc < w->cols ? (b + 1) * w->bc : w->cols;
    for (int64_t c = b * w->bc; c < end; ++c)
      acc += x[c] * (t->code[cpu_weight_code(w, row + c)] * s);
  }
  return acc;
}

vnrt_status cpu_act_quant_rows(const cpu_kernel_args *a, int32_t input, int64_t rows, int64_t k,
                               int32_t act_quant, float **out) {
  *out = a->host->alloc(a->host->core, (size_t)(rows * k > 0 ? rows * k : 1) * sizeof(float));
  if (!*out) {
    return a->host->error(
        a->host->core, VNRT_ERROR_OUT_OF_MEMORY, "%s '%s': cannot allocate %lld floats of scratch",
        vnrt_op_name(a->node->op), a->node->name ? a->node->name : "?", (long long)(rows * k));
  }
  const vnrt_dtype dt = a->in_type[input]->dtype;
  for (int64_t i = 0; i < rows * k; ++i) (*out)[i] = cpu_load_f32(a->in[input], dt, i);
  for (int64_t r = 0; act_quant > 0 && r < rows; ++r) {
    for (int64_t b = 0; b < k; b += act_quant) {
      cpu_fake_quant_block(*out + r * k + b, k - b < act_quant ? k - b : act_quant, VNRT_E4M3);
    }
  }
  return VNRT_OK;
}
