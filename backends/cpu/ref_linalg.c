/* CPU reference kernels of docs/ops.md's linear algebra, norms and activations: matmul,
 * linear (both split across the thread pool; float or quantized weights), rms_norm, softmax and
 * swiglu. */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"

/* Multiply-adds one pool chunk should hold at least, so that splitting pays for the wake-up. */
#define LINALG_CHUNK_WORK 32768

static int64_t chunk_grain(int64_t k) {
  int64_t g = LINALG_CHUNK_WORK / (k > 0 ? k : 1);
  return g > 0 ? g : 1;
}

static vnrt_status linalg_error(const cpu_kernel_args *args, const char *what) {
  return args->host->error(args->host->core, VNRT_ERROR_INTERNAL, "%s '%s': %s",
                           vnrt_op_name(args->node->op), args->node->name, what);
}

/* ---- matmul ---------------------------------------------------------------------------- */

typedef struct matmul_job {
  const void *a, *b;
  void *out;
  vnrt_dtype da, db, dout;
  int64_t m, k, n;
  /* Batch dims of the result (padded to 2) and a's/b's element strides along them (0 where
   * that operand broadcasts). */
  int64_t batch_dims[2], a_bstride[2], b_bstride[2];
  /* A quantized b (rank 2, [K, N]) and its decoders; NULL for a float b. */
  const cpu_weight *bq;
  const cpu_dequant_lut *lut;
} matmul_job;

static void matmul_range(void *user, int64_t begin, int64_t end) {
  const matmul_job *j = user;
  int64_t mn = j->m * j->n;
  for (int64_t e = begin; e < end; ++e) {
    int64_t bi = e / mn, r = e % mn, row = r / j->n, col = r % j->n;
    int64_t b0 = bi / j->batch_dims[1], b1 = bi % j->batch_dims[1];
    int64_t a_off = b0 * j->a_bstride[0] + b1 * j->a_bstride[1] + row * j->k;
    int64_t b_off = b0 * j->b_bstride[0] + b1 * j->b_bstride[1] + col;
    float acc = 0.0f;
    if (j->bq) {
      for (int64_t kk = 0; kk < j->k; ++kk) {
        acc += cpu_load_f32(j->a, j->da, a_off + kk) * cpu_weight_load(j->bq, j->lut, 0, kk, col);
      }
      cpu_store_f32(j->out, j->dout, e, acc);
      continue;
    }
    for (int64_t kk = 0; kk < j->k; ++kk) {
      acc += cpu_load_f32(j->a, j->da, a_off + kk) * cpu_load_f32(j->b, j->db, b_off + kk * j->n);
    }
    cpu_store_f32(j->out, j->dout, e, acc);
  }
}

vnrt_status cpu_ref_matmul(const cpu_kernel_args *args) {
  const vnrt_tensor_type *ta = args->in_type[0], *tb = args->in_type[1], *to = args->out_type[0];
  if (ta->rank < 2 || tb->rank < 2 || to->rank < 2 || to->rank - 2 > 2 ||
      ta->dims[ta->rank - 1] != tb->dims[tb->rank - 2]) {
    return linalg_error(args, "operands are not [..., M, K] x [..., K, N]");
  }
  matmul_job j = {
      .a = args->in[0],
      .b = args->in[1],
      .out = args->out[0],
      .da = ta->dtype,
      .db = tb->dtype,
      .dout = to->dtype,
      .m = ta->dims[ta->rank - 2],
      .k = ta->dims[ta->rank - 1],
      .n = tb->dims[tb->rank - 1],
      .batch_dims = {1, 1},
  };
  int32_t nb = to->rank - 2;
  for (int32_t d = 0; d < nb; ++d) j.batch_dims[2 - nb + d] = to->dims[d];
  vnrt_matmul_batch_strides(ta, nb, j.a_bstride);
  vnrt_matmul_batch_strides(tb, nb, j.b_bstride);
  /* A quantized b is decoded element by element (docs/ops.md, "Quantized weights"). */
  cpu_weight bq;
  vnrt_status st = cpu_weight_init(args, 1, &args->node->params->matmul.b, &bq);
  if (st != VNRT_OK) return st;
  cpu_dequant_lut lut;
  if (bq.scale) {
    if (tb->rank != 2) return linalg_error(args, "a quantized b must be [K, N]");
    cpu_dequant_lut_init(&lut, bq.dtype);
    j.bq = &bq;
    j.lut = &lut;
  }
  cpu_pool_parallel_for(args->pool, vnrt_tensor_type_numel(to), chunk_grain(j.k), matmul_range, &j);
  return VNRT_OK;
}

/* ---- linear ---------------------------------------------------------------------------- */

typedef struct linear_job {
  const void *x, *w;
  void *out;
  vnrt_dtype dx, dw, dout;
  int64_t k, n;
  /* With quantized weights or act_quant: x widened (and fake-quantized) to f32 [rows, K], and
   * w as a weight view with its decoders. NULL otherwise. */
  const float *xf;
  const cpu_weight *wq;
  const cpu_dequant_lut *lut;
} linear_job;

/* Items are result elements (row-major [rows, N]), so both many rows and a single row with
 * many output features split across the pool. */
static void linear_range(void *user, int64_t begin, int64_t end) {
  const linear_job *j = user;
  for (int64_t e = begin; e < end; ++e) {
    int64_t row = e / j->n, col = e % j->n;
    const int64_t xo = row * j->k, wo = col * j->k;
    if (j->xf) {
      cpu_store_f32(j->out, j->dout, e, cpu_ref_qdot(j->wq, j->lut, 0, col, j->xf + xo));
      continue;
    }
    float acc = 0.0f;
    for (int64_t kk = 0; kk < j->k; ++kk) {
      acc += cpu_load_f32(j->x, j->dx, xo + kk) * cpu_load_f32(j->w, j->dw, wo + kk);
    }
    cpu_store_f32(j->out, j->dout, e, acc);
  }
}

vnrt_status cpu_ref_linear(const cpu_kernel_args *args) {
  const vnrt_tensor_type *tx = args->in_type[0], *tw = args->in_type[1], *to = args->out_type[0];
  if (tx->rank < 1 || tw->rank != 2 || tx->dims[tx->rank - 1] != tw->dims[1]) {
    return linalg_error(args, "operands are not x[..., K] and w[N, K]");
  }
  linear_job j = {
      .x = args->in[0],
      .w = args->in[1],
      .out = args->out[0],
      .dx = tx->dtype,
      .dw = tw->dtype,
      .dout = to->dtype,
      .k = tw->dims[1],
      .n = tw->dims[0],
  };
  /* Quantized weights are decoded element by element (docs/ops.md, "Quantized weights");
   * act_quant rounds a copy of every x row to e4m3 per 128 channels first. */
  const vnrt_linear_params *p = &args->node->params->linear;
  cpu_weight w;
  vnrt_status st = cpu_weight_init(args, 1, &p->w, &w);
  if (st != VNRT_OK) return st;
  float *xf = NULL;
  cpu_dequant_lut lut;
  if (w.scale || p->act_quant > 0) {
    const int64_t rows = j.k > 0 ? vnrt_tensor_type_numel(tx) / j.k : 0;
    st = cpu_act_quant_rows(args, 0, rows, j.k, p->act_quant, &xf);
    if (st != VNRT_OK) return st;
    cpu_dequant_lut_init(&lut, w.dtype);
    j.xf = xf;
    j.wq = &w;
    j.lut = &lut;
  }
  cpu_pool_parallel_for(args->pool, vnrt_tensor_type_numel(to), chunk_grain(j.k), linear_range, &j);
  if (xf) args->host->free(args->host->core, xf);
  return VNRT_OK;
}

/* ---- rms_norm, softmax, swiglu --------------------------------------------------------- */

vnrt_status cpu_ref_rms_norm(const cpu_kernel_args *args) {
  const vnrt_tensor_type *tx = args->in_type[0], *to = args->out_type[0];
  const vnrt_rms_norm_params *p = &args->node->params->rms_norm;
  const vnrt_tensor_type *tw = p->has_weight ? args->in_type[1] : NULL;
  if (tx->rank < 1) return linalg_error(args, "x must have at least one dimension");
  int64_t d = tx->dims[tx->rank - 1];
  if (tw && vnrt_tensor_type_numel(tw) != d) return linalg_error(args, "w is not [D]");
  int64_t rows = d > 0 ? vnrt_tensor_type_numel(tx) / d : 0;
  float eps = (float)p->eps;
  for (int64_t r = 0; r < rows; ++r) {
    float ss = 0.0f;
    for (int64_t i = 0; i < d; ++i) {
      float v = cpu_load_f32(args->in[0], tx->dtype, r * d + i);
      ss += v * v;
    }
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int64_t i = 0; i < d; ++i) {
      float y = cpu_load_f32(args->in[0], tx->dtype, r * d + i) * inv;
      if (tw) y *= cpu_load_f32(args->in[1], tw->dtype, i);
      cpu_store_f32(args->out[0], to->dtype, r * d + i, y);
    }
  }
  return VNRT_OK;
}

vnrt_status cpu_ref_softmax(const cpu_kernel_args *args) {
  const vnrt_tensor_type *tx = args->in_type[0], *to = args->out_type[0];
  int64_t axis = args->node->params->softmax.axis;
  if (axis < 0 || axis >= tx->rank) return linalg_error(args, "axis out of range");
  int64_t outer = 1, inner = 1, len = tx->dims[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= tx->dims[d];
  for (int64_t d = axis + 1; d < tx->rank; ++d) inner *= tx->dims[d];
  const void *x = args->in[0];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      int64_t base = o * len * inner + i;
      float mx = -INFINITY;
      for (int64_t a = 0; a < len; ++a) {
        float v = cpu_load_f32(x, tx->dtype, base + a * inner);
        if (v > mx) mx = v;
      }
      float sum = 0.0f;
      for (int64_t a = 0; a < len; ++a) {
        sum += expf(cpu_load_f32(x, tx->dtype, base + a * inner) - mx);
      }
      for (int64_t a = 0; a < len; ++a) {
        float e = expf(cpu_load_f32(x, tx->dtype, base + a * inner) - mx);
        cpu_store_f32(args->out[0], to->dtype, base + a * inner, e / sum);
      }
    }
  }
  return VNRT_OK;
}

vnrt_status cpu_ref_swiglu(const cpu_kernel_args *args) {
  const vnrt_tensor_type *tg = args->in_type[0], *tu = args->in_type[1], *to = args->out_type[0];
  int64_t n = vnrt_tensor_type_numel(to);
  if (vnrt_tensor_type_numel(tg) != n || vnrt_tensor_type_numel(tu) != n) {
    return linalg_error(args, "g and u differ in shape");
  }
  float limit = (float)args->node->params->swiglu.limit;
  for (int64_t i = 0; i < n; ++i) {
    float g = cpu_load_f32(args->in[0], tg->dtype, i);
    float u = cpu_load_f32(args->in[1], tu->dtype, i);
    if (limit > 0.0f) {
      if (g > limit) g = limit;
      if (u > limit) u = limit;
      if (u < -limit) u = -limit;
    }
    cpu_store_f32(args->out[0], to->dtype, i, g * (1.0f / (1.0f + expf(-g))) * u);
  }
  return VNRT_OK;
}
