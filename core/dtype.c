/* Data types: names, sizes, element counts, and exact f16/bf16 conversions (FP8/FP4 codecs:
 * quant.c). */
#include <math.h>
#include <string.h>

#include "core.h"

const char *vnrt_dtype_name(vnrt_dtype dtype) {
  switch (dtype) {
    case VNRT_F32:
      return "f32";
    case VNRT_F16:
      return "f16";
    case VNRT_BF16:
      return "bf16";
    case VNRT_I32:
      return "i32";
    case VNRT_E4M3:
      return "e4m3";
    case VNRT_E8M0:
      return "e8m0";
    case VNRT_E2M1:
      return "e2m1";
    default:
      return "invalid";
  }
}

uint32_t vnrt_dtype_bits(vnrt_dtype dtype) {
  switch (dtype) {
    case VNRT_F32:
    case VNRT_I32:
      return 32;
    case VNRT_F16:
    case VNRT_BF16:
      return 16;
    case VNRT_E4M3:
    case VNRT_E8M0:
      return 8;
    case VNRT_E2M1:
      return 4;
    default:
      return 0;
  }
}

size_t vnrt_dtype_size(vnrt_dtype dtype) {
  uint32_t bits = vnrt_dtype_bits(dtype);
  return bits % 8 == 0 ? bits / 8 : 0;
}

int64_t vnrt_tensor_type_numel(const vnrt_tensor_type *type) {
  if (!type || type->rank < 0 || type->rank > VNRT_MAX_DIMS) return 0;
  int64_t n = 1;
  for (int32_t i = 0; i < type->rank; ++i) {
    if (type->dims[i] < 0) return 0;
    if (type->dims[i] && n > INT64_MAX / type->dims[i]) return 0;
    n *= type->dims[i];
  }
  return n;
}

size_t vnrt_tensor_type_bytes(const vnrt_tensor_type *type) {
  int64_t n = vnrt_tensor_type_numel(type);
  uint64_t bits = type ? vnrt_dtype_bits(type->dtype) : 0;
  if (bits && (uint64_t)n > SIZE_MAX / bits) return 0;
  return (size_t)(((uint64_t)n * bits + 7) / 8); /* e2m1: half a byte each, rounded up */
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t vnrt_f32_to_f16(float value) {
  uint32_t x = f32_bits(value);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0));
  int32_t e = (int32_t)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow to infinity */
  if (e <= 0) {
    /* Subnormal half (or zero): shift the full mantissa, rounding to nearest even. */
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - e);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half; /* may carry into exponent */
  return (uint16_t)half;
}

float vnrt_f16_to_f32(uint16_t bits) {
  uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t mant = bits & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    float f = ldexpf((float)mant, -24); /* subnormal: exact */
    return sign ? -f : f;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

uint16_t vnrt_f32_to_bf16(float value) {
  uint32_t x = f32_bits(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;
  return (uint16_t)(x >> 16);
}

float vnrt_bf16_to_f32(uint16_t bits) { return bits_f32((uint32_t)bits << 16); }
