/* The FP8 / FP4 / e8m0 codecs against independent double formulas: every code decodes to its
 * value, every non-NaN code round-trips, midpoints go to the even code, large values saturate,
 * NaN has its code; and the block scale of DeepSeek's recipe at its boundaries. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "test_util.h"

/* e4m3fn from its fields: sign, 4-bit exponent (bias 7), 3-bit mantissa; exponent 0 is
 * subnormal (m * 2^-9); S.1111.111 is NaN; no infinities. */
static double e4m3_ref(unsigned c) {
  unsigned s = c >> 7, e = (c >> 3) & 15u, m = c & 7u;
  if (e == 15 && m == 7) return NAN;
  double v = e == 0 ? m * pow(2.0, -9) : (1.0 + m / 8.0) * pow(2.0, (double)e - 7.0);
  return s ? -v : v;
}

/* e2m1: sign bit 3; exponent bits 1-2 (bias 1), mantissa bit 0; exponent 0 is subnormal
 * (m * 0.5). */
static double e2m1_ref(unsigned c) {
  unsigned s = (c >> 3) & 1u, e = (c >> 1) & 3u, m = c & 1u;
  double v = e == 0 ? m * 0.5 : (1.0 + m / 2.0) * pow(2.0, (double)e - 1.0);
  return s ? -v : v;
}

static int same_value(double a, float b) {
  if (isnan(a)) return isnan(b);
  return a == (double)b && !signbit(a) == !signbit(b);
}

START_TEST(e4m3_decode_all_codes) {
  for (unsigned c = 0; c < 256; c++)
    ck_assert_msg(same_value(e4m3_ref(c), vnrt_e4m3_to_f32((uint8_t)c)), "code 0x%02X: %g vs %g", c,
                  e4m3_ref(c), (double)vnrt_e4m3_to_f32((uint8_t)c));
  ck_assert(vnrt_e4m3_to_f32(0x7E) == 448.0f);
  ck_assert(vnrt_e4m3_to_f32(0x01) == 0x1p-9f);
  ck_assert(vnrt_e4m3_to_f32(0x08) == 0x1p-6f);
  ck_assert(isnan(vnrt_e4m3_to_f32(0x7F)) && isnan(vnrt_e4m3_to_f32(0xFF)));
}
END_TEST

START_TEST(e4m3_encode) {
  /* Round trip of every non-NaN code, -0 (0x80) included. */
  for (unsigned c = 0; c < 256; c++) {
    if ((c & 0x7Fu) == 0x7Fu) continue;
    ck_assert_msg(vnrt_f32_to_e4m3((float)e4m3_ref(c)) == c, "code 0x%02X (%g) encodes to 0x%02X",
                  c, e4m3_ref(c), vnrt_f32_to_e4m3((float)e4m3_ref(c)));
  }
  ck_assert_uint_eq(vnrt_f32_to_e4m3(0.0f), 0x00);
  ck_assert_uint_eq(vnrt_f32_to_e4m3(-0.0f), 0x80);
  /* Between neighbours a and b (codes c, c+1, same sign): the midpoint goes to the even code,
   * a hair either side of it to the nearer one. */
  for (unsigned sign = 0; sign < 2; sign++) {
    for (unsigned c = 0; c < 0x7E; c++) {
      unsigned ca = c | sign << 7, cb = (c + 1) | sign << 7;
      double a = e4m3_ref(ca), b = e4m3_ref(cb), mid = (a + b) / 2;
      unsigned even = (c & 1u) ? cb : ca;
      ck_assert_msg(vnrt_f32_to_e4m3((float)mid) == even, "tie %g between 0x%02X and 0x%02X", mid,
                    ca, cb);
      float below = nextafterf((float)mid, (float)a), above = nextafterf((float)mid, (float)b);
      ck_assert_uint_eq(vnrt_f32_to_e4m3(below), ca);
      ck_assert_uint_eq(vnrt_f32_to_e4m3(above), cb);
    }
  }
  /* Saturation to +-448 (no infinities in e4m3fn), NaN to 0x7F. */
  const float big[] = {448.0f, 448.5f, 464.0f, 480.0f, 1e9f, INFINITY, 3.4e38f};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
    ck_assert_uint_eq(vnrt_f32_to_e4m3(big[i]), 0x7E);
    ck_assert_uint_eq(vnrt_f32_to_e4m3(-big[i]), 0xFE);
  }
  ck_assert_uint_eq(vnrt_f32_to_e4m3(NAN), 0x7F);
  /* Below half the smallest subnormal: zero of the same sign; exactly half: the even 0. */
  ck_assert_uint_eq(vnrt_f32_to_e4m3(0x1p-11f), 0x00);
  ck_assert_uint_eq(vnrt_f32_to_e4m3(0x1p-10f), 0x00);
  ck_assert_uint_eq(vnrt_f32_to_e4m3(nextafterf(0x1p-10f, 1.0f)), 0x01);
  ck_assert_uint_eq(vnrt_f32_to_e4m3(-0x1p-11f), 0x80);
  ck_assert_uint_eq(vnrt_f32_to_e4m3(0x1p-149f), 0x00);
}
END_TEST

START_TEST(e2m1_decode_and_encode) {
  static const double kLevels[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (unsigned c = 0; c < 16; c++) {
    ck_assert_msg(same_value(e2m1_ref(c), vnrt_e2m1_to_f32((uint8_t)c)), "code %u", c);
    ck_assert(fabs(e2m1_ref(c)) == kLevels[c & 7u]);
    /* Only the low nibble counts. */
    ck_assert(same_value(e2m1_ref(c), vnrt_e2m1_to_f32((uint8_t)(c | 0xA0u))));
    ck_assert_uint_eq(vnrt_f32_to_e2m1((float)e2m1_ref(c)), c);
  }
  ck_assert_uint_eq(vnrt_f32_to_e2m1(-0.0f), 8);
  /* Midpoints go to the even code: 0.25 -> 0, 0.75 -> 1.0, 1.25 -> 1.0, 1.75 -> 2, 2.5 -> 2,
   * 3.5 -> 4, 5 -> 4. */
  static const float kMid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  static const unsigned kTie[7] = {0, 2, 2, 4, 4, 6, 6};
  for (int i = 0; i < 7; i++) {
    ck_assert_msg(vnrt_f32_to_e2m1(kMid[i]) == kTie[i], "tie %g", (double)kMid[i]);
    ck_assert_uint_eq(vnrt_f32_to_e2m1(-kMid[i]), kTie[i] | 8u);
    ck_assert_uint_eq(vnrt_f32_to_e2m1(nextafterf(kMid[i], 0.0f)), (unsigned)i);
    ck_assert_uint_eq(vnrt_f32_to_e2m1(nextafterf(kMid[i], 10.0f)), (unsigned)i + 1);
    ck_assert_uint_eq(kTie[i] % 2, 0);
  }
  /* Saturation to +-6; NaN (no NaN code) to +6. */
  const float big[] = {6.0f, 6.5f, 7.0f, 1e9f, INFINITY};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
    ck_assert_uint_eq(vnrt_f32_to_e2m1(big[i]), 7);
    ck_assert_uint_eq(vnrt_f32_to_e2m1(-big[i]), 15);
  }
  ck_assert_uint_eq(vnrt_f32_to_e2m1(NAN), 7);
  ck_assert_uint_eq(vnrt_f32_to_e2m1(1e-30f), 0);
}
END_TEST

START_TEST(e8m0_decode_all_codes) {
  for (unsigned c = 0; c < 255; c++) {
    float v = vnrt_e8m0_to_f32((uint8_t)c);
    ck_assert_msg((double)v == ldexp(1.0, (int)c - 127), "code %u: %g", c, (double)v);
  }
  ck_assert(vnrt_e8m0_to_f32(0) == 0x1p-127f && vnrt_e8m0_to_f32(0) > 0.0f);
  ck_assert(vnrt_e8m0_to_f32(127) == 1.0f);
  ck_assert(vnrt_e8m0_to_f32(254) == 0x1p127f);
  ck_assert(isnan(vnrt_e8m0_to_f32(255)));
}
END_TEST

/* The e8m0 code of 2^ceil(log2(max(amax, floor) / fmt_max)), from the smallest k with
 * 2^k >= r, in double. */
static unsigned scale_ref(double amax, double floor_, double fmt_max) {
  double r = fmax(amax, floor_) / fmt_max;
  int k = -200;
  while (ldexp(1.0, k) < r) k++;
  return (unsigned)(k + 127);
}

START_TEST(block_scale) {
  const double fl4 = 1e-4, fl2 = 6.0 * ldexp(1.0, -126);
  /* Exactly fmt_max * 2^k is that power of two; a hair above is the next one. */
  for (int k = -20; k <= 20; k++) {
    float at = ldexpf(448.0f, k);
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, at), (unsigned)(k + 127));
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, nextafterf(at, INFINITY)),
                      (unsigned)(k + 128));
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, nextafterf(at, 0.0f)), (unsigned)(k + 127));
    at = ldexpf(6.0f, k);
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, at), (unsigned)(k + 127));
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, nextafterf(at, INFINITY)),
                      (unsigned)(k + 128));
  }
  /* Values across the range against the double formula. */
  for (int i = -300; i <= 300; i++) {
    float amax = (float)(1.37 * pow(10.0, i / 20.0));
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, amax), scale_ref(amax, fl4, 448.0));
    ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, amax), scale_ref(amax, fl2, 6.0));
  }
  /* Floors: zero and tiny amax give the floor's scale (e4m3: 1e-4/448 -> 2^-22; e2m1:
   * 6*2^-126/6 -> 2^-126). */
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, 0.0f), 127 - 22);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, 1e-30f), 127 - 22);
  ck_assert_uint_eq(scale_ref(0.0, fl4, 448.0), 127 - 22);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, 0.0f), 1);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, 0x1p-149f), 1);
  /* NaN amax, another format: NaN scale. Infinity and huge amax: the largest scale. */
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, NAN), 255);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, NAN), 255);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_F32, 1.0f), 255);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E8M0, 1.0f), 255);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E4M3, INFINITY), 254);
  ck_assert_uint_eq(vnrt_quant_block_scale(VNRT_E2M1, 3.4e38f), scale_ref(3.4e38, fl2, 6.0));
  /* The recipe keeps every value of the block within the format: amax / s <= fmt_max. */
  for (int i = -300; i <= 300; i++) {
    float amax = (float)(2.9 * pow(10.0, i / 20.0));
    ck_assert(amax / vnrt_e8m0_to_f32(vnrt_quant_block_scale(VNRT_E4M3, amax)) <= 448.0f);
    ck_assert(amax / vnrt_e8m0_to_f32(vnrt_quant_block_scale(VNRT_E2M1, amax)) <= 6.0f);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("quant");
  TCase *tc = tcase_create("quant");
  tcase_add_test(tc, e4m3_decode_all_codes);
  tcase_add_test(tc, e4m3_encode);
  tcase_add_test(tc, e2m1_decode_and_encode);
  tcase_add_test(tc, e8m0_decode_all_codes);
  tcase_add_test(tc, block_scale);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
