/* CPU reference kernels of docs/ops.md's indexing ops: embedding (bounds-checked gather of float
 * or quantized rows) and topk (descending, ties to the lower index). */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"

vnrt_status cpu_ref_embedding(const cpu_kernel_args *args) {
  const vnrt_tensor_type *tt = args->in_type[0], *ti = args->in_type[1], *to = args->out_type[0];
  if (tt->rank != 2 || ti->dtype != VNRT_I32) {
    return args->host->error(args->host->core, VNRT_ERROR_INTERNAL,
                             "embedding '%s': expects table[V, D] and i32 ids", args->node->name);
  }
  int64_t v = tt->dims[0], d = tt->dims[1], n = vnrt_tensor_type_numel(ti);
  const int32_t *ids = args->in[1];
  /* Every id is checked before anything is written: a bad id leaves the result untouched. */
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= v) {
      return args->host->error(args->host->core, VNRT_ERROR_OUT_OF_RANGE,
                               "embedding '%s': id %d at position %lld out of range [0, %lld)",
                               args->node->name, (int)ids[i], (long long)i, (long long)v);
    }
  }
  /* A quantized table's rows are decoded element by element (docs/ops.md, "Quantized
   * weights"). */
  cpu_weight w;
  vnrt_status st = cpu_weight_init(args, 0, &args->node->params->embedding.table, &w);
  if (st != VNRT_OK) return st;
  cpu_dequant_lut lut;
  if (w.scale) cpu_dequant_lut_init(&lut, w.dtype);
  for (int64_t i = 0; i < n; ++i) {
    int64_t row = ids[i];
    for (int64_t j = 0; j < d; ++j) {
      const float val = w.scale ? cpu_weight_load(&w, &lut, 0, row, j)
                                : cpu_load_f32(args->in[0], tt->dtype, row * d + j);
      cpu_store_f32(args->out[0], to->dtype, i * d + j, val);
    }
  }
  return VNRT_OK;
}

/* Whether (va, ia) ranks before (vb, ib): larger value first, ties to the lower index, NaN
 * after every number so that the order stays total. */
static int ranks_before(float va, int64_t ia, float vb, int64_t ib) {
  if (isnan(va) || isnan(vb)) return isnan(vb) && (!isnan(va) || ia < ib);
  return va > vb || (va == vb && ia < ib);
}

vnrt_status cpu_ref_topk(const cpu_kernel_args *args) {
  const vnrt_tensor_type *tx = args->in_type[0];
  const vnrt_tensor_type *tv = args->out_type[0], *tidx = args->out_type[1];
  int64_t k = args->node->params->topk.k;
  int64_t e = tx->rank > 0 ? tx->dims[tx->rank - 1] : 1;
  if (k < 1 || k > e || tidx->dtype != VNRT_I32) {
    return args->host->error(args->host->core, VNRT_ERROR_INTERNAL,
                             "topk '%s': k=%lld with %lld candidates", args->node->name,
                             (long long)k, (long long)e);
  }
  int64_t rows = e > 0 ? vnrt_tensor_type_numel(tx) / e : 0;
  const void *x = args->in[0];
  int32_t *idx = args->out[1];
  for (int64_t r = 0; r < rows; ++r) {
    int32_t *best = idx + r * k; /* the indices chosen so far, in rank order */
    int64_t have = 0;
    /* Insertion into a sorted list of at most k: O(E·k), plenty for a reference. */
    for (int64_t i = 0; i < e; ++i) {
      float v = cpu_load_f32(x, tx->dtype, r * e + i);
      int64_t pos = have;
      while (pos > 0 &&
             ranks_before(v, i, cpu_load_f32(x, tx->dtype, r * e + best[pos - 1]), best[pos - 1])) {
        --pos;
      }
      if (pos >= k) continue;
      int64_t last = have < k ? have : k - 1;
      for (int64_t s = last; s > pos; --s) best[s] = best[s - 1];
      best[pos] = (int32_t)i;
      if (have < k) ++have;
    }
    for (int64_t s = 0; s < k; ++s) {
      const float v = cpu_load_f32(x, tx->dtype, r * e + best[s]);
      cpu_store_f32(args->out[0], tv->dtype, r * k + s, v);
      /* fill: an index whose value is -inf means "no entry" */
      if (args->node->params->topk.has_fill && v == -INFINITY) {
        best[s] = args->node->params->topk.fill;
      }
    }
  }
  return VNRT_OK;
}
