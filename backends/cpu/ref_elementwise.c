/* CPU reference kernels of the elementwise ops of docs/ops.md: binary ops with numpy
 * broadcasting, activations, clamp and cast. f32 math; f16/bf16 are widened and rounded back. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"

/* ---- Binary ops with broadcasting ------------------------------------------------------ */

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } bin_kind;

static vnrt_status binary(const cpu_kernel_args *args, bin_kind kind) {
  const vnrt_tensor_type *ta = args->in_type[0], *tb = args->in_type[1], *to = args->out_type[0];
  int32_t rank = to->rank;
  if (rank > VNRT_MAX_DIMS || ta->rank > rank || tb->rank > rank) {
    return args->host->error(args->host->core, VNRT_ERROR_INTERNAL, "%s: bad ranks %d, %d -> %d",
                             args->node->name, (int)ta->rank, (int)tb->rank, (int)rank);
  }
  /* Pad to 4 dims so that one loop nest covers every rank. */
  int64_t dims[VNRT_MAX_DIMS] = {1, 1, 1, 1}, sa[VNRT_MAX_DIMS] = {0}, sb[VNRT_MAX_DIMS] = {0};
  int64_t ra[VNRT_MAX_DIMS], rb[VNRT_MAX_DIMS];
  vnrt_broadcast_strides(ta, rank, ra);
  vnrt_broadcast_strides(tb, rank, rb);
  int32_t pad = VNRT_MAX_DIMS - rank;
  for (int32_t d = 0; d < rank; ++d) {
    dims[pad + d] = to->dims[d];
    sa[pad + d] = ra[d];
    sb[pad + d] = rb[d];
  }
  const void *a = args->in[0], *b = args->in[1];
  void *out = args->out[0];
  vnrt_dtype da = ta->dtype, db = tb->dtype, dout = to->dtype;
  int64_t o = 0;
  for (int64_t i0 = 0; i0 < dims[0]; ++i0) {
    for (int64_t i1 = 0; i1 < dims[1]; ++i1) {
      for (int64_t i2 = 0; i2 < dims[2]; ++i2) {
        int64_t ia = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        int64_t ib = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        for (int64_t i3 = 0; i3 < dims[3]; ++i3, ++o) {
          float x = cpu_load_f32(a, da, ia + i3 * sa[3]);
          float y = cpu_load_f32(b, db, ib + i3 * sb[3]);
          float r;
          switch (kind) {
            case BIN_ADD:
              r = x + y;
              break;
            case BIN_SUB:
              r = x - y;
              break;
            case BIN_MUL:
              r = x * y;
              break;
            default:
              r = x / y;
              break;
          }
          cpu_store_f32(out, dout, o, r);
        }
      }
    }
  }
  return VNRT_OK;
}

vnrt_status cpu_ref_add(const cpu_kernel_args *args) { return binary(args, BIN_ADD); }
vnrt_status cpu_ref_sub(const cpu_kernel_args *args) { return binary(args, BIN_SUB); }
vnrt_status cpu_ref_mul(const cpu_kernel_args *args) { return binary(args, BIN_MUL); }
vnrt_status cpu_ref_div(const cpu_kernel_args *args) { return binary(args, BIN_DIV); }

/* ---- Unary ops ------------------------------------------------------------------------- */

static float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

static float softplus_f(float x) {
  if (x > 20.0f) return x;
  if (x < -20.0f) return expf(x);
  return logf(1.0f + expf(x));
}

static float gelu_f(float x) {
  const float k = 0.7978845608028654f; /* sqrt(2/pi) */
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

typedef float (*unary_fn)(float x, const void *ctx);

static vnrt_status unary(const cpu_kernel_args *args, unary_fn fn, const void *ctx) {
  const vnrt_tensor_type *ti = args->in_type[0], *to = args->out_type[0];
  int64_t n = vnrt_tensor_type_numel(to);
  for (int64_t i = 0; i < n; ++i) {
    cpu_store_f32(args->out[0], to->dtype, i, fn(cpu_load_f32(args->in[0], ti->dtype, i), ctx));
  }
  return VNRT_OK;
}

static float neg_u(float x, const void *c) { return -x; }
static float exp_u(float x, const void *c) { return expf(x); }
static float sqrt_u(float x, const void *c) { return sqrtf(x); }
static float rsqrt_u(float x, const void *c) { return 1.0f / sqrtf(x); }
static float tanh_u(float x, const void *c) { return tanhf(x); }
static float relu_u(float x, const void *c) { return x > 0.0f ? x : 0.0f; }
static float sigmoid_u(float x, const void *c) { return sigmoid_f(x); }
static float silu_u(float x, const void *c) { return x * sigmoid_f(x); }
static float gelu_u(float x, const void *c) { return gelu_f(x); }
static float softplus_u(float x, const void *c) { return softplus_f(x); }
static float sqrt_softplus_u(float x, const void *c) { return sqrtf(softplus_f(x)); }
static float scale_u(float x, const void *c) { return x * *(const float *)c; }

vnrt_status cpu_ref_neg(const cpu_kernel_args *args) { return unary(args, neg_u, NULL); }
vnrt_status cpu_ref_exp(const cpu_kernel_args *args) { return unary(args, exp_u, NULL); }
vnrt_status cpu_ref_sqrt(const cpu_kernel_args *args) { return unary(args, sqrt_u, NULL); }
vnrt_status cpu_ref_rsqrt(const cpu_kernel_args *args) { return unary(args, rsqrt_u, NULL); }
vnrt_status cpu_ref_tanh(const cpu_kernel_args *args) { return unary(args, tanh_u, NULL); }
vnrt_status cpu_ref_relu(const cpu_kernel_args *args) { return unary(args, relu_u, NULL); }
vnrt_status cpu_ref_sigmoid(const cpu_kernel_args *args) { return unary(args, sigmoid_u, NULL); }
vnrt_status cpu_ref_silu(const cpu_kernel_args *args) { return unary(args, silu_u, NULL); }
vnrt_status cpu_ref_gelu(const cpu_kernel_args *args) { return unary(args, gelu_u, NULL); }
vnrt_status cpu_ref_softplus(const cpu_kernel_args *args) { return unary(args, softplus_u, NULL); }
vnrt_status cpu_ref_sqrt_softplus(const cpu_kernel_args *args) {
  return unary(args, sqrt_softplus_u, NULL);
}

vnrt_status cpu_ref_scale(const cpu_kernel_args *args) {
  float s = (float)args->node->params->scale.s;
  return unary(args, scale_u, &s);
}

typedef struct clamp_bounds {
  int has_min, has_max;
  float min, max;
} clamp_bounds;

static float clamp_u(float x, const void *c) {
  const clamp_bounds *b = c;
  if (b->has_min && x < b->min) x = b->min;
  if (b->has_max && x > b->max) x = b->max;
  return x;
}

vnrt_status cpu_ref_clamp(const cpu_kernel_args *args) {
  const vnrt_clamp_params *p = &args->node->params->clamp;
  const clamp_bounds b = {.has_min = p->has_min != 0,
                          .has_max = p->has_max != 0,
                          .min = (float)p->min,
                          .max = (float)p->max};
  return unary(args, clamp_u, &b);
}

/* ---- cast ------------------------------------------------------------------------------ */

/* float -> i32: truncation toward zero, saturating at the i32 range; NaN becomes 0. */
static int32_t f32_to_i32_sat(float v) {
  if (isnan(v)) return 0;
  if (v >= 2147483648.0f) return INT32_MAX;
  if (v <= -2147483648.0f) return INT32_MIN;
  return (int32_t)v;
}

/* i32 -> f32 rounded to odd (truncate, then set the last bit if anything was dropped). A
 * second rounding of that value to f16/bf16 (at most 11 significant bits, well under f32's
 * 24) is then the correctly rounded i32 -> f16/bf16 result, with no double-rounding error. */
static float i32_to_f32_odd(int32_t v) {
  uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
  int shift = 0;
  while ((u >> shift) >= (1u << 24)) ++shift;
  uint32_t m = u >> shift;
  if (shift > 0 && (u & ((1u << shift) - 1)) != 0) m |= 1u;
  float f = ldexpf((float)m, shift);
  return v < 0 ? -f : f;
}

vnrt_status cpu_ref_cast(const cpu_kernel_args *args) {
  vnrt_dtype din = args->in_type[0]->dtype, dout = args->out_type[0]->dtype;
  int64_t n = vnrt_tensor_type_numel(args->out_type[0]);
  const void *in = args->in[0];
  void *out = args->out[0];
  if (din == dout) {
    if (out != in) memmove(out, in, (size_t)n * vnrt_dtype_size(din));
    return VNRT_OK;
  }
  if (dout == VNRT_I32) {
    for (int64_t i = 0; i < n; ++i) ((int32_t *)out)[i] = f32_to_i32_sat(cpu_load_f32(in, din, i));
    return VNRT_OK;
  }
  if (din == VNRT_I32) {
    const int32_t *src = in;
    for (int64_t i = 0; i < n; ++i) {
      /* For f32 the C conversion already rounds to nearest even. */
      float f = dout == VNRT_F32 ? (float)src[i] : i32_to_f32_odd(src[i]);
      cpu_store_f32(out, dout, i, f);
    }
    return VNRT_OK;
  }
  for (int64_t i = 0; i < n; ++i) cpu_store_f32(out, dout, i, cpu_load_f32(in, din, i));
  return VNRT_OK;
}
