/* SIMD building blocks for the CPU fast kernels: the ISA chosen at run time, and AVX2/FMA/F16C
 * helpers compiled with a target attribute so that the library itself still runs on CPUs
 * without them (the portable path is taken there). */
#ifndef VNRT_BACKENDS_CPU_SIMD_H_
#define VNRT_BACKENDS_CPU_SIMD_H_

#include <stdint.h>

#include "vnrt/vnrt.h"

/* The instruction set the fast kernels use, chosen once per process (fast_util.c). */
typedef enum cpu_isa {
  CPU_ISA_GENERIC = 0, /* portable C the compiler may auto-vectorise for the baseline ISA */
  CPU_ISA_AVX2 = 1,    /* x86-64 with AVX2, FMA and F16C */
  /* AVX2 and AVX-512 F, BW, VL and DQ: every AVX2 kernel (tests say isa >= CPU_ISA_AVX2), and
   * the AVX-512 variants some have (the one-row FP8/FP4 GEMVs, the FP8 panel decode and the
   * GEMM block for more than 4 x rows, fast_gemm_avx512.c). The cpu_isa option avx2 stays at
   * CPU_ISA_AVX2. */
  CPU_ISA_AVX512 = 2,
  /* CPU_ISA_AVX512 and VBMI (Ice Lake, Zen 4 and later): byte permutes from two registers, which
   * decode FP8 by table in the one-row GEMVs. The cpu_isa option avx512 stays at
   * CPU_ISA_AVX512. */
  CPU_ISA_AVX512VBMI = 3,
} cpu_isa;

typedef struct cpu_pool cpu_pool;

/* The ISA a device's kernels use: the highest level above that the CPU (and OS) support
 * (probed once per process), else CPU_ISA_GENERIC; the context option cpu_isa=generic
 * (VNRT_CPU_ISA) forces the portable path on the devices of that context (to test it anywhere),
 * cpu_isa=avx2 the AVX2 kernels without their AVX-512 variants, cpu_isa=avx512 the AVX-512
 * ones without VBMI. pool NULL: the machine's. */
cpu_isa cpu_fast_isa(const cpu_pool *pool);

#if defined(__x86_64__) || defined(__i386__)
#define CPU_HAVE_AVX2_CODE 1
#include <immintrin.h>

#define CPU_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CPU_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define CPU_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define CPU_AVX512VBMI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c")))

/* Eight consecutive elements p[i..i+8) of dtype dt (f32/f16/bf16), widened exactly to f32. */
CPU_AVX2_INLINE __m256 avx2_load8(const void *p, int64_t i, vnrt_dtype dt) {
  switch (dt) {
    case VNRT_F16:
      return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    case VNRT_BF16: {
      __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    default:
      return _mm256_loadu_ps((const float *)p + i);
  }
}

/* Stores the eight lanes of v as p[i..i+8) of dtype dt (f32/f16/bf16), rounding to nearest
 * even as cpu_store_f32 does (a NaN stays a quiet NaN with the same payload bits). */
CPU_AVX2_INLINE void avx2_store8(void *p, int64_t i, vnrt_dtype dt, __m256 v) {
  switch (dt) {
    case VNRT_F16:
      _mm_storeu_si128((__m128i *)((uint16_t *)p + i),
                       _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
      break;
    case VNRT_BF16: {
      __m256i b = _mm256_castps_si256(v);
      __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
      __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
      __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
      r = _mm256_castps_si256(_mm256_blendv_ps(
          _mm256_castsi256_ps(r),
          _mm256_castsi256_ps(_mm256_or_si256(b, _mm256_set1_epi32(0x400000))), nan));
      r = _mm256_srli_epi32(r, 16);
      __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
      _mm_storeu_si128((__m128i *)((uint16_t *)p + i), h);
      break;
    }
    default:
      _mm256_storeu_ps((float *)p + i, v);
      break;
  }
}

/* The sum of the eight lanes of v. */
CPU_AVX2_INLINE float avx2_hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* The maximum of the eight lanes of v. */
CPU_AVX2_INLINE float avx2_hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* e^x per lane, relative error about 2e-7 (Cephes expf: range reduction by ln 2 in two parts
 * and a degree-5 polynomial). Lanes below -87.3 give exactly 0 (as expf underflows), lanes
 * above 88.7 give +Inf. */
CPU_AVX2_INLINE __m256 avx2_exp(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  /* 2^fx through the exponent field; fx is in [-126, 128) here, and 2^128 is covered by
   * splitting it as 2^(fx-1)·2. */
  __m256i e = _mm256_cvtps_epi32(_mm256_sub_ps(fx, _mm256_set1_ps(1.0f)));
  __m256 pow2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  y = _mm256_mul_ps(_mm256_mul_ps(y, pow2), _mm256_set1_ps(2.0f));
  y = _mm256_and_ps(y, under);
  return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
}
#endif /* x86 */

#endif /* VNRT_BACKENDS_CPU_SIMD_H_ */
