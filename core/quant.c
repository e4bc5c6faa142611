/* The FP8 (e4m3fn), FP4 (e2m1) and power-of-two scale (e8m0) codecs of docs/ops.md, "Quantized
 * weights": exact decoders, encoders that round to nearest even and saturate, and the block scale
 * of DeepSeek's reference recipe. The kernels of every backend implement the same decoders their
 * own way; these are the statement the tests and vnrt-quantize use. */
#include <math.h>
#include <stdint.h>

#include "core.h"

/* e2m1 magnitudes by the low three bits of a nibble. */
static const float k_e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

float vnrt_e4m3_to_f32(uint8_t code) {
  const uint32_t e = (code >> 3) & 0xFu, m = code & 7u;
  if (e == 15 && m == 7) return NAN;
  const float mag = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
  return (code & 0x80u) ? -mag : mag;
}

uint8_t vnrt_f32_to_e4m3(float value) {
  if (isnan(value)) return 0x7F;
  const uint8_t sign = signbit(value) ? 0x80u : 0;
  float a = fabsf(value);
  if (a >= 448.0f) return sign | 0x7Eu; /* saturate (also infinities) */
  if (a < ldexpf(1.0f, -6)) {
    /* Subnormal quantum 2^-9 (exact scaling); a q of 8 is the smallest normal, code 0x08. */
    return sign | (uint8_t)rintf(ldexpf(a, 9));
  }
  int e;
  const float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
  int E = e - 1;                 /* a = (2m) * 2^E, 2m in [1, 2) */
  float q = rintf((2.0f * m - 1.0f) * 8.0f);
  if (q == 8.0f) {
    q = 0.0f;
    ++E;
  }
  /* a < 448 keeps (E, q) at or below (8, 6): code 0x7E at most. */
  return sign | (uint8_t)(((E + 7) << 3) | (int)q);
}

float vnrt_e8m0_to_f32(uint8_t code) {
  if (code == 255) return NAN;
  return ldexpf(1.0f, (int)code - 127); /* code 0: 2^-127, a float subnormal */
}

float vnrt_e2m1_to_f32(uint8_t nibble) {
  const float mag = k_e2m1[nibble & 7u];
  return (nibble & 8u) ? -mag : mag;
}

uint8_t vnrt_f32_to_e2m1(float value) {
  if (isnan(value)) return 7; /* no NaN code: the largest level */
  const uint8_t sign = signbit(value) ? 8u : 0;
  const float a = fabsf(value);
  /* The midpoints between neighbouring levels; a tie goes to the even index. */
  static const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  uint8_t i = 0;
  while (i < 7 && (a > mid[i] || (a == mid[i] && ((i + 1u) & 1u) == 0))) ++i;
  return sign | i;
}

uint8_t vnrt_quant_block_scale(vnrt_dtype fmt, float amax) {
  float floor_, fmt_max;
  if (fmt == VNRT_E4M3) {
    floor_ = 1e-4f, fmt_max = 448.0f;
  } else if (fmt == VNRT_E2M1) {
    floor_ = 6.0f * ldexpf(1.0f, -126), fmt_max = 6.0f;
  } else {
    return 255;
  }
  if (isnan(amax)) return 255;
  const float r = fmaxf(amax, floor_) / fmt_max;
  if (isinf(r)) return 254;
  int e;
  const float m = frexpf(r, &e);       /* r = m * 2^e, m in [0.5, 1) */
  const int c = m == 0.5f ? e - 1 : e; /* ceil(log2 r): exponent + 1 unless a power of two */
  const int code = c + 127;
  return (uint8_t)(code < 0 ? 0 : code > 254 ? 254 : code);
}
