/* CPU fast kernels for linear and matmul on the blocked GEMM core (fast_gemm.c): linear is
 * c = x·wᵀ over w's rows (quantized w through fast_quant.c), matmul c = a·b over b's [K, N]
 * rows, per batch (a quantized b runs the reference kernel). */
#include <string.h>

#include "fast_gemm.h"
#include "fast_quant.h"

/* ---- linear ---------------------------------------------------------------------------- */

vnrt_status cpu_fast_linear(const cpu_kernel_args *a) {
  const vnrt_tensor_type *tx = a->in_type[0], *tw = a->in_type[1], *to = a->out_type[0];
  /* Shapes the reference rejects, and empty ones, are left to it (one message, one place). */
  if (tx->rank < 1 || tw->rank != 2 || tx->dims[tx->rank - 1] != tw->dims[1] || tw->dims[0] <= 0 ||
      tw->dims[1] <= 0 || vnrt_tensor_type_numel(tx) == 0) {
    return cpu_ref_linear(a);
  }
  const int64_t n = tw->dims[0], k = tw->dims[1];
  const int64_t rows = vnrt_tensor_type_numel(tx) / k;
  const vnrt_linear_params *p = &a->node->params->linear;
  cpu_weight w;
  vnrt_status st = cpu_weight_init(a, 1, &p->w, &w);
  if (st != VNRT_OK) return st;
  const float *x = a->in[0];
  float *xs = NULL;
  /* act_quant rounds a copy of x (each row per 128 channels), as the reference does. */
  if (tx->dtype != VNRT_F32 || p->act_quant > 0) {
    st = cpu_fast_alloc(a, rows * k, &xs);
    if (st != VNRT_OK) return st;
    cpu_fast_to_f32(cpu_fast_isa(a->pool), a->in[0], tx->dtype, rows * k, xs);
    cpu_fast_act_quant(cpu_fast_isa(a->pool), xs, k, rows, k, p->act_quant);
    x = xs;
  }
  if (w.scale) {
    st = cpu_qgemm_nt(a, x, k, rows, &w, a->out[0], to->dtype, n);
  } else {
    st = cpu_gemm_nt(a, x, k, rows, a->in[1], tw->dtype, k, n, k, a->out[0], to->dtype, n);
  }
  cpu_fast_free(a, xs);
  return st;
}

/* ---- matmul ---------------------------------------------------------------------------- */

vnrt_status cpu_fast_matmul(const cpu_kernel_args *a) {
  const vnrt_tensor_type *ta = a->in_type[0], *tb = a->in_type[1], *to = a->out_type[0];
  if (ta->rank < 2 || tb->rank < 2 || to->rank < 2 || to->rank - 2 > 2 ||
      ta->dims[ta->rank - 1] != tb->dims[tb->rank - 2] || vnrt_tensor_type_numel(to) == 0 ||
      ta->dims[ta->rank - 1] == 0 || a->node->params->matmul.b.codes != VNRT_DTYPE_INVALID) {
    return cpu_ref_matmul(a); /* a quantized b: the reference kernel (no fast one yet) */
  }
  const int64_t m = ta->dims[ta->rank - 2], k = ta->dims[ta->rank - 1];
  const int64_t n = tb->dims[tb->rank - 1];
  int64_t batch_dims[2] = {1, 1}, a_bs[2], b_bs[2];
  const int32_t nb = to->rank - 2;
  for (int32_t d = 0; d < nb; ++d) batch_dims[2 - nb + d] = to->dims[d];
  vnrt_matmul_batch_strides(ta, nb, a_bs);
  vnrt_matmul_batch_strides(tb, nb, b_bs);

  const cpu_isa isa = cpu_fast_isa(a->pool);
  float *as = NULL;
  vnrt_status st = VNRT_OK;
  if (ta->dtype != VNRT_F32) st = cpu_fast_alloc(a, m * k, &as);
  const size_t osz = vnrt_dtype_size(to->dtype), bsz = vnrt_dtype_size(tb->dtype);
  int64_t converted_a = -1;
  for (int64_t b0 = 0; st == VNRT_OK && b0 < batch_dims[0]; ++b0) {
    for (int64_t b1 = 0; st == VNRT_OK && b1 < batch_dims[1]; ++b1) {
      const int64_t a_off = b0 * a_bs[0] + b1 * a_bs[1];
      const int64_t b_off = b0 * b_bs[0] + b1 * b_bs[1];
      const float *x = (const float *)a->in[0] + a_off;
      if (as) {
        if (a_off != converted_a) {
          cpu_fast_to_f32(isa, (const char *)a->in[0] + (size_t)a_off * vnrt_dtype_size(ta->dtype),
                          ta->dtype, m * k, as);
          converted_a = a_off;
        }
        x = as;
      }
      void *out = (char *)a->out[0] + (size_t)((b0 * batch_dims[1] + b1) * m * n) * osz;
      const void *b = (const char *)a->in[1] + (size_t)b_off * bsz;
      st = cpu_gemm_nn(a, x, k, m, b, tb->dtype, n, n, k, out, to->dtype, n);
    }
  }
  cpu_fast_free(a, as);
  return st;
}
