/* The CPU fast kernels' products with quantized weights (fast_quant.h).
 *
 * Two ways to multiply x by codes W (docs/ops.md, "Quantized weights"):
 * - In registers (AVX2, up to 4 x rows, blocks whose width is a multiple of 8): each group of
 *   w rows streams once; 8 codes at a time become 8 floats, are multiplied by their block's
 *   scale (a power of two, so dec·s is exact and every product equals the reference's) and meet
 *   the x rows in FMAs. e4m3: the byte goes to f16 bits (sign to bit 15, exponent and mantissa
 *   to bits 13..7, so that f16's subnormals are e4m3's) and F16C widens it; the 2^8 between the
 *   two biases rides on the scale. e2m1: the 8 nibbles of 4 bytes are shifted into 8 lanes and
 *   looked up in an 8-entry magnitude table with one permute; the sign bit is XORed in.
 *   With AVX-512 one x row takes 16-lane kernels; where K allows, they load 64 code bytes a
 *   step without widening them (x permuted once per call to the order the codes come in),
 *   read the scale bytes themselves and, for e4m3, note NaN codes as they decode them.
 * - Panels (everything else: more x rows, odd blocks, the portable path, and the rare groups
 *   the first way cannot do exactly: e4m3 NaN codes, scales of 2^120 and up): QN rows x QK
 *   columns of W are decoded to f32 in L2 and handed to the blocked f32 GEMM core, so the
 *   decoding is amortised over every x row. */
#include "fast_quant.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu_pool.h"

/* Panels: W rows and columns decoded at a time, their row stride (floats; not a multiple of
 * 1 KiB, so that a panel's rows do not alias in L1), and the x rows per GEMM call on one. */
#define QN 24
#define QK 512
#define QLD (QK + 8)
#define QM 128
/* In registers: the most x rows, w rows per group for mr x rows (accumulators mr·nr <= 8),
 * and the scale blocks per row converted to floats at a time. */
#define QV_MR 4
#define QV_NR_MAX 4
#define QV_NR_FOR(mr) ((mr) <= 2 ? 4 : 2)
#define QV_BLOCKS 512
/* The K columns a group takes at a time (whole blocks; more when one block is wider). */
#define QV_KQ 4096
/* How far ahead a group of short rows prefetches (bytes of codes). */
#define QV_PF_BYTES 4096
/* Weight bytes x rows below which cpu_qgemm_nt runs on the calling thread. */
#define QGEMM_INLINE_BYTES (48 * 1024)

/* ---- scalar decoders (exact; the vector ones below must agree with them) ----------------- */

static inline float e8m0_f32_(uint8_t s) {
  const uint32_t bits = s == 0 ? 0x00400000u : s == 255 ? 0x7FC00000u : (uint32_t)s << 23;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline float e4m3_f32_(uint8_t c) {
  const uint32_t e = (c >> 3) & 0xFu, m = c & 7u;
  float mag;
  if (e == 0) {
    mag = (float)m * 0x1p-9f; /* subnormal: m·2^-9, exact */
  } else if (e == 15 && m == 7) {
    mag = NAN;
  } else {
    const uint32_t bits = ((e + 120u) << 23) | (m << 20); /* 2^(e-7)·(1 + m/8) */
    memcpy(&mag, &bits, sizeof mag);
  }
  return (c & 0x80u) ? -mag : mag;
}

static const float k_e2m1_[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* The decoded code of element i of W's tensor. */
static inline float code_f32_(const cpu_weight *w, int64_t i) {
  if (w->dtype == VNRT_E2M1) return k_e2m1_[cpu_weight_code(w, i)];
  return e4m3_f32_(((const uint8_t *)w->data)[i]);
}

static int isa_avx2_(cpu_isa isa) {
#if defined(CPU_HAVE_AVX2_CODE)
  return isa >= CPU_ISA_AVX2;
#else
  (void)isa;
  return 0;
#endif
}

/* Whether m x rows against w take the in-register path (for the groups it can do exactly). */
static int regs_ok_(cpu_isa isa, int64_t m, const cpu_weight *w) {
  return isa_avx2_(isa) && w->scale && m >= 1 && m <= QV_MR && w->bc % 8 == 0;
}

/* The permuted x row of the one-row kernels: all of K (whole 128-channel steps), at least
 * QV_KQ. */
static int64_t qv_xp_floats_(int64_t k) {
  const int64_t r = (k + 127) / 128 * 128;
  return r > QV_KQ ? r : QV_KQ;
}

int64_t cpu_qgemm_ws_floats(cpu_isa isa, int64_t m, const cpu_weight *w) {
  const int avx2 = isa_avx2_(isa);
  if (!w->scale) return m <= 4 && (avx2 || w->dtype == VNRT_F32) ? 0 : CPU_GEMM_WS_FLOATS;
  const int64_t mq = m < QM ? m : QM;
  int64_t f = QN * QLD + mq * QN + (mq > 4 && !avx2 ? CPU_GEMM_WS_FLOATS : 0);
  /* qgemm_panels_'s packed AVX-512 block. */
  if (isa >= CPU_ISA_AVX512 && m >= CPU_GEMM_PACKED_MIN_M && f < CPU_GEMM_WS_FLOATS) {
    f = CPU_GEMM_WS_FLOATS;
  }
  /* The in-register path (any call of up to QV_MR rows may take it): block scales as floats
   * and a permuted x row (FP4, one row). */
  if (avx2) f += QV_NR_MAX * QV_BLOCKS + qv_xp_floats_(w->cols);
  return f;
}

#if defined(CPU_HAVE_AVX2_CODE)
/* cpu_fake_quant_block for e4m3 on a block of finite values (amax finite), 8 at a time, with
 * the same result bit for bit: q = v/s, rounded to e4m3 (to nearest even: 3 mantissa bits by
 * the integer carry trick for normals, a multiple of 2^-9 below 2^-6), times s. Saturation
 * cannot happen (|q| <= 448, e4m3's largest, by the choice of s) but is kept by a min. */
static CPU_AVX2 void avx2_act_quant_block_(float *v, int64_t n) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 mx = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(v + i), absmask));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  float amax = _mm_cvtss_f32(m4);
  for (int64_t t = i; t < n; ++t) amax = fmaxf(amax, fabsf(v[t]));
  if (!isfinite(amax)) {
    cpu_fake_quant_block(v, n, VNRT_E4M3);
    return;
  }
  const float s = vnrt_e8m0_to_f32(vnrt_quant_block_scale(VNRT_E4M3, amax));
  const __m256 sv = _mm256_set1_ps(s), sub = _mm256_set1_ps(0x1p-6f);
  const __m256 k512 = _mm256_set1_ps(512.0f), inv512 = _mm256_set1_ps(0x1p-9f);
  const __m256 top = _mm256_set1_ps(448.0f);
  const __m256i half = _mm256_set1_epi32(0x7FFFF), one = _mm256_set1_epi32(1);
  const __m256i keep = _mm256_set1_epi32((int)0xFFF00000u);
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(v + i);
    const __m256 q = _mm256_div_ps(x, sv);
    const __m256 sign = _mm256_andnot_ps(absmask, q);
    const __m256 a = _mm256_and_ps(q, absmask);
    const __m256i ab = _mm256_castps_si256(a);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(ab, 20), one);
    const __m256i rb = _mm256_and_si256(_mm256_add_epi32(ab, _mm256_add_epi32(half, lsb)), keep);
    const __m256 rn = _mm256_castsi256_ps(rb);
    const __m256 rs = _mm256_mul_ps(
        _mm256_round_ps(_mm256_mul_ps(a, k512), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
        inv512);
    const __m256 r =
        _mm256_min_ps(_mm256_blendv_ps(rn, rs, _mm256_cmp_ps(a, sub, _CMP_LT_OQ)), top);
    _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_or_ps(r, sign), sv));
  }
  for (; i < n; ++i) v[i] = vnrt_e4m3_to_f32(vnrt_f32_to_e4m3(v[i] / s)) * s;
}
#endif

void cpu_fast_act_quant(cpu_isa isa, float *x, int64_t ldx, int64_t rows, int64_t k,
                        int32_t act_quant) {
#if defined(CPU_HAVE_AVX2_CODE)
  const int avx2 = isa_avx2_(isa);
#else
  (void)isa;
#endif
  for (int64_t r = 0; act_quant > 0 && r < rows; ++r) {
    for (int64_t b = 0; b < k; b += act_quant) {
      const int64_t n = k - b < act_quant ? k - b : act_quant;
#if defined(CPU_HAVE_AVX2_CODE)
      if (avx2) {
        avx2_act_quant_block_(x + r * ldx + b, n);
        continue;
      }
#endif
      cpu_fake_quant_block(x + r * ldx + b, n, VNRT_E4M3);
    }
  }
}

/* ---- AVX2 decoders and the in-register kernels -------------------------------------------- */
#if defined(CPU_HAVE_AVX2_CODE)

/* e4m3 codes p[0..8) as f32, divided by 2^8 (f16's bias is 8 above e4m3's): f16 bits
 * sign << 15 | (code & 0x7F) << 7 are the code's value · 2^-8, subnormals included. NaN codes
 * come out finite (480·2^-8): callers that can meet them check for them. */
CPU_AVX2_INLINE __m256 avx2_e4m3x8_(const uint8_t *p) {
  const __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
  const __m128i w = _mm_unpacklo_epi8(_mm_setzero_si128(), b); /* code << 8 per 16 bits */
  const __m128i h = _mm_and_si128(_mm_srai_epi16(w, 1), _mm_set1_epi16((short)0xBFFF));
  return _mm256_cvtph_ps(h);
}

/* e2m1 magnitudes by the low three bits, each XORed with those bits at 28..30: the lookup's
 * result is then XORed with the nibble << 28, which cancels them and sets the sign bit. */
#define E2M1_XT_(m, bits) ((int)((uint32_t)(bits) ^ ((uint32_t)(m) << 28)))

/* The 8 e2m1 codes of bytes p[0..4) (even elements in the low nibbles) as f32. */
CPU_AVX2_INLINE __m256 avx2_e2m1x8_(const uint8_t *p, __m256 table, __m256i shifts) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  const __m256i n = _mm256_srlv_epi32(_mm256_set1_epi32(v), shifts); /* nibble i in lane i */
  const __m256 mag = _mm256_permutevar8x32_ps(table, n);             /* bits 0..2 index */
  return _mm256_xor_ps(mag, _mm256_castsi256_ps(_mm256_slli_epi32(n, 28)));
}

CPU_AVX2_INLINE __m256 avx2_e2m1_table_(void) {
  return _mm256_castsi256_ps(_mm256_setr_epi32(E2M1_XT_(0, 0x00000000u), E2M1_XT_(1, 0x3F000000u),
                                               E2M1_XT_(2, 0x3F800000u), E2M1_XT_(3, 0x3FC00000u),
                                               E2M1_XT_(4, 0x40000000u), E2M1_XT_(5, 0x40400000u),
                                               E2M1_XT_(6, 0x40800000u), E2M1_XT_(7, 0x40C00000u)));
}

/* s[i·NR + j] = Σ_k xr[i][k]·W_j[k] for k < kc, W_j[k] = dec(wr[j] codes)·(scale of k's
 * block): sf[j][b] holds block b's scale as f32 (times 2^8 for e4m3), blocks bc wide, bc a
 * multiple of 8 (BC, when nonzero, is bc known at compile time: whole blocks then unroll).
 * Compile-time MR, NR and format, so the accumulators live in registers. One x row sums each
 * block apart and scales the sum (one FMA per block instead of a multiply per vector); more
 * rows share one multiply of the decoded vector by the scale. */
CPU_AVX2_INLINE void avx2_qkern_(const int MR, const int NR, const int FP4, const int64_t BC,
                                 const float *const *xr, const uint8_t *const *wr,
                                 const uint8_t *const *pf, const float *const *sf, int64_t kc,
                                 int64_t bc, float *s) {
  __m256 acc[QV_MR][QV_NR_MAX], blk[QV_NR_MAX], sv[QV_NR_MAX];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const __m256 table = avx2_e2m1_table_();
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const int64_t kc8 = kc & ~(int64_t)7;
  /* pf: the rows a later call reads, one cache line of each per 64 bytes of these rows. */
#define QSTEP_(kk)                                                                          \
  {                                                                                         \
    if (pf && ((kk) & (FP4 ? 127 : 63)) == 0) {                                             \
      for (int j = 0; j < NR; ++j)                                                          \
        _mm_prefetch((const char *)pf[j] + (FP4 ? (kk) / 2 : (kk)), _MM_HINT_T0);           \
    }                                                                                       \
    for (int j = 0; j < NR; ++j) {                                                          \
      const __m256 d =                                                                      \
          FP4 ? avx2_e2m1x8_(wr[j] + (kk) / 2, table, shifts) : avx2_e4m3x8_(wr[j] + (kk)); \
      if (MR == 1) {                                                                        \
        blk[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xr[0] + (kk)), d, blk[j]);                 \
      } else {                                                                              \
        const __m256 wv = _mm256_mul_ps(d, sv[j]);                                          \
        for (int i = 0; i < MR; ++i) {                                                      \
          acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(xr[i] + (kk)), wv, acc[i][j]);        \
        }                                                                                   \
      }                                                                                     \
    }                                                                                       \
  }
  int64_t k = 0;
  for (int64_t b = 0; k < kc8; ++b) {
    const int64_t kend = k + bc < kc8 ? k + bc : kc8;
    for (int j = 0; j < NR; ++j) {
      if (MR == 1) {
        blk[j] = _mm256_setzero_ps();
      } else {
        sv[j] = _mm256_broadcast_ss(sf[j] + b);
      }
    }
    if (BC > 0 && kend - k == BC) {
      for (int64_t t = 0; t < BC; t += 8) QSTEP_(k + t)
    } else {
      for (int64_t kk = k; kk < kend; kk += 8) QSTEP_(kk)
    }
    if (MR == 1) {
      for (int j = 0; j < NR; ++j) {
        acc[0][j] = _mm256_fmadd_ps(blk[j], _mm256_broadcast_ss(sf[j] + b), acc[0][j]);
      }
    }
    k = kend;
  }
#undef QSTEP_
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) s[i * NR + j] = avx2_hsum(acc[i][j]);
  }
  /* The last < 8 columns (K not a multiple of 8): scalar, in the last block. */
  for (; k < kc; ++k) {
    const int64_t b = k / bc;
    for (int j = 0; j < NR; ++j) {
      const float d = FP4 ? k_e2m1_[(wr[j][k / 2] >> ((k & 1) * 4)) & 0xF] : e4m3_f32_(wr[j][k]);
      const float wv = d * (FP4 ? sf[j][b] : sf[j][b] * 0x1p-8f);
      for (int i = 0; i < MR; ++i) s[i * NR + j] += xr[i][k] * wv;
    }
  }
}

typedef void (*avx2_qkern_fn)(const float *const *xr, const uint8_t *const *wr,
                              const uint8_t *const *pf, const float *const *sf, int64_t kc,
                              int64_t bc, float *s);

/* Per format: the kernels for any block width (multiple of 8) and for the format's default. */
#define AVX2_QKERN_DEF_(MR, NAME, FP4, BC)                                                        \
  static CPU_AVX2 void avx2_qkern_##MR##_##NAME(const float *const *xr, const uint8_t *const *wr, \
                                                const uint8_t *const *pf, const float *const *sf, \
                                                int64_t kc, int64_t bc, float *s) {               \
    avx2_qkern_(MR, QV_NR_FOR(MR), FP4, BC, xr, wr, pf, sf, kc, bc, s);                           \
  }
#define AVX2_QKERN_ALL_MR_(NAME, FP4, BC) \
  AVX2_QKERN_DEF_(1, NAME, FP4, BC)       \
  AVX2_QKERN_DEF_(2, NAME, FP4, BC)       \
  AVX2_QKERN_DEF_(3, NAME, FP4, BC) AVX2_QKERN_DEF_(4, NAME, FP4, BC)
AVX2_QKERN_ALL_MR_(e4m3, 0, 0)
AVX2_QKERN_ALL_MR_(e4m3_128, 0, 128)
AVX2_QKERN_ALL_MR_(e2m1, 1, 0)
AVX2_QKERN_ALL_MR_(e2m1_32, 1, 32)
#undef AVX2_QKERN_ALL_MR_
#undef AVX2_QKERN_DEF_

/* [format: e4m3, e2m1][block: any, the default (128 or 32)][mr] */
static const avx2_qkern_fn avx2_qkerns_[2][2][QV_MR + 1] = {
    {{NULL, avx2_qkern_1_e4m3, avx2_qkern_2_e4m3, avx2_qkern_3_e4m3, avx2_qkern_4_e4m3},
     {NULL, avx2_qkern_1_e4m3_128, avx2_qkern_2_e4m3_128, avx2_qkern_3_e4m3_128,
      avx2_qkern_4_e4m3_128}},
    {{NULL, avx2_qkern_1_e2m1, avx2_qkern_2_e2m1, avx2_qkern_3_e2m1, avx2_qkern_4_e2m1},
     {NULL, avx2_qkern_1_e2m1_32, avx2_qkern_2_e2m1_32, avx2_qkern_3_e2m1_32,
      avx2_qkern_4_e2m1_32}},
};

/* The FP4 GEMV of one x row in 32-code steps, for blocks whose width is a multiple of 32: x
 * permuted by x_evenodd_perm_ in blocks of 32 (the even channels, then the odd ones), so that a
 * row's 16 bytes split into their low and high nibbles give the codes in x's order without an
 * interleave. vpshufb looks each nibble up in a 16-entry table of 2·value as int8 (the levels
 * times 2 are the integers 0..12) and the int8s widen to f32: about half the operations per code
 * of the 8-lane permute above. sf holds the block scales times 1/2 (exact). */
static CPU_AVX2 void avx2_qkern_fp4p_(const float *xp, const uint8_t *const *wr,
                                      const uint8_t *const *pf, const float *const *sf, int64_t kc,
                                      int64_t bc, float *s) {
  const __m128i table = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  const __m128i low = _mm_set1_epi8(0x0F);
  __m256 acc[4], blk[4];
  for (int j = 0; j < 4; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t k = 0, b = 0; k < kc; k += bc, ++b) {
    for (int j = 0; j < 4; ++j) blk[j] = _mm256_setzero_ps();
    for (int64_t kk = k; kk < k + bc; kk += 32) {
      if (pf && (kk & 127) == 0) {
        for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk / 2, _MM_HINT_T0);
      }
      const __m256 x0 = _mm256_loadu_ps(xp + kk), x1 = _mm256_loadu_ps(xp + kk + 8);
      const __m256 x2 = _mm256_loadu_ps(xp + kk + 16), x3 = _mm256_loadu_ps(xp + kk + 24);
      for (int j = 0; j < 4; ++j) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(wr[j] + kk / 2));
        const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(v, low));
        const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), low));
        const __m256 d0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
        const __m256 d1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)));
        const __m256 d2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
        const __m256 d3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)));
        blk[j] = _mm256_fmadd_ps(x0, d0, blk[j]);
        blk[j] = _mm256_fmadd_ps(x1, d1, blk[j]);
        blk[j] = _mm256_fmadd_ps(x2, d2, blk[j]);
        blk[j] = _mm256_fmadd_ps(x3, d3, blk[j]);
      }
    }
    for (int j = 0; j < 4; ++j) {
      acc[j] = _mm256_fmadd_ps(blk[j], _mm256_broadcast_ss(sf[j] + b), acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) s[j] = avx2_hsum(acc[j]);
}

/* The FP4 GEMV of one x row on AVX2 for 1x32 blocks, 64 codes (32 bytes, two blocks) a step:
 * every e2m1 value is a bf16 (0.5 = 0x3F00 ... 6 = 0x40C0), so vpshufb lookups of a 16-entry
 * table of the high bytes and one of the low bytes, on the low and on the high nibbles, give
 * each code's bf16 bytes, byte unpacks join them into words, and a shift left by 16 (a dword's
 * low word) or a mask (its high word) makes f32 bits: 19 operations per 64 codes before the 8
 * FMAs, no int8-to-f32 conversion, x read by the FMAs from L1. The step's lane 0 holds block
 * 2c's codes and lane 1 block 2c + 1's, so one FMA with the two scales per lane ends the step.
 * x comes permuted by x_e2m1_perm64_; sf holds the block scales as f32. */
static CPU_AVX2 void avx2_qkern_e2m1_64_(const float *xp, const uint8_t *const *wr,
                                         const uint8_t *const *pf, const float *const *sf,
                                         int64_t kc, float *s) {
  const __m256i thi =
      _mm256_setr_epi8(0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, (char)0x80, (char)0xBF,
                       (char)0xBF, (char)0xBF, (char)0xC0, (char)0xC0, (char)0xC0, (char)0xC0, 0x00,
                       0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, (char)0x80, (char)0xBF, (char)0xBF,
                       (char)0xBF, (char)0xC0, (char)0xC0, (char)0xC0, (char)0xC0);
  const __m256i tlo =
      _mm256_setr_epi8(0x00, 0x00, (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0, 0x00,
                       0x00, (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0, 0x00, 0x00,
                       (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0, 0x00, 0x00,
                       (char)0x80, (char)0xC0, 0x00, 0x40, (char)0x80, (char)0xC0);
  const __m256i low = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi32((int)0xFFFF0000u);
  __m256 acc[4];
  for (int j = 0; j < 4; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t kk = 0; kk < kc; kk += 64) {
    if (pf && (kk & 127) == 0) {
      for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk / 2, _MM_HINT_T0);
    }
    const float *x = xp + kk;
    for (int j = 0; j < 4; ++j) {
      const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(wr[j] + kk / 2));
      const __m256i ie = _mm256_and_si256(v, low);
      const __m256i io = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
      const __m256i he = _mm256_shuffle_epi8(thi, ie), le = _mm256_shuffle_epi8(tlo, ie);
      const __m256i ho = _mm256_shuffle_epi8(thi, io), lo = _mm256_shuffle_epi8(tlo, io);
      const __m256i e0 = _mm256_unpacklo_epi8(le, he), e1 = _mm256_unpackhi_epi8(le, he);
      const __m256i o0 = _mm256_unpacklo_epi8(lo, ho), o1 = _mm256_unpackhi_epi8(lo, ho);
      __m256 t0 = _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_castsi256_ps(_mm256_slli_epi32(e0, 16)));
      __m256 t1 =
          _mm256_mul_ps(_mm256_loadu_ps(x + 8), _mm256_castsi256_ps(_mm256_and_si256(e0, top)));
      t0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), _mm256_castsi256_ps(_mm256_slli_epi32(e1, 16)),
                           t0);
      t1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), _mm256_castsi256_ps(_mm256_and_si256(e1, top)),
                           t1);
      t0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 32), _mm256_castsi256_ps(_mm256_slli_epi32(o0, 16)),
                           t0);
      t1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 40), _mm256_castsi256_ps(_mm256_and_si256(o0, top)),
                           t1);
      t0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 48), _mm256_castsi256_ps(_mm256_slli_epi32(o1, 16)),
                           t0);
      t1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 56), _mm256_castsi256_ps(_mm256_and_si256(o1, top)),
                           t1);
      const __m256 sv =
          _mm256_set_m128(_mm_broadcast_ss(sf[j] + kk / 32 + 1), _mm_broadcast_ss(sf[j] + kk / 32));
      acc[j] = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), sv, acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) s[j] = avx2_hsum(acc[j]);
}

/* xp[64c + 8q + 4l + i] = x[64c + 32l + 16h + 4i + 2t + p] with q = 4p + 2h + t, for p (even
 * codes 0, odd 1), h (unpacklo 0, unpackhi 1), t (a dword's low word 0, high 1), lane l < 2 and
 * i < 4, n a multiple of 64: the order avx2_qkern_e2m1_64_ leaves the codes in. Per h, the rows
 * i of the 16 floats at 32l + 16h (lane l) are a 4x4 matrix whose column 2t + p is output q: an
 * in-lane transpose (8 shuffles per 32 floats; the scalar loop took ~1.1 µs per 4096, once per
 * 64-row tile). */
static CPU_AVX2 void x_e2m1_perm64_(const float *x, int64_t n, float *xp) {
  for (int64_t c = 0; c < n; c += 64) {
    for (int h = 0; h < 2; ++h) {
      __m256 r[4];
      for (int i = 0; i < 4; ++i) {
        const float *src = x + c + 16 * h + 4 * i;
        r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src)),
                                    _mm_loadu_ps(src + 32), 1);
      }
      const __m256 u0 = _mm256_unpacklo_ps(r[0], r[1]), u1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 u2 = _mm256_unpacklo_ps(r[2], r[3]), u3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 col[4] = {_mm256_shuffle_ps(u0, u2, 0x44), _mm256_shuffle_ps(u0, u2, 0xEE),
                             _mm256_shuffle_ps(u1, u3, 0x44), _mm256_shuffle_ps(u1, u3, 0xEE)};
      for (int j = 0; j < 4; ++j) {
        const int p = j & 1, t = j >> 1;
        _mm256_storeu_ps(xp + c + 8 * (4 * p + 2 * h + t), col[j]);
      }
    }
  }
}

/* Per block of `block` channels (32 or 64), the even ones, then the odd ones: xp[b + i] =
 * x[b + 2i], xp[b + block/2 + i] = x[b + 2i + 1] for i < block/2, n a multiple of block. The
 * order avx2_qkern_fp4p_ and avx2_qkern_e4m3_eo_ (32) and avx512_qkern_e4m3_eo_ (64) meet the
 * codes in. */
static void x_evenodd_perm_(const float *x, int64_t n, int64_t block, float *xp) {
  const int64_t half = block / 2;
  for (int64_t b = 0; b < n; b += block) {
    for (int64_t i = 0; i < half; ++i) {
      xp[b + i] = x[b + 2 * i];
      xp[b + half + i] = x[b + 2 * i + 1];
    }
  }
}

/* The AVX-512 variants of the one-row kernels (CPU_ISA_AVX512): the same products, the same
 * block scales (sf as for the AVX2 kernel of the same format), 16 lanes a vector. Decoding, not
 * memory, bounds the AVX2 kernels on two cores; here each code costs about half the vector
 * operations. Four w rows, blocks a multiple of 32 codes wide, kc a multiple of 32 (the last
 * block may be partial). */

/* e4m3: 32 codes sign-extend to 16 bits; << 7 puts the sign (bit 8 of the extension) at bit
 * 15 and exponent and mantissa at bits 13..7, bit 14 (a copy of the sign) is masked off: the
 * f16 bits of avx2_e4m3x8_, code·2^-8, subnormals included. */
static CPU_AVX512 void avx512_qkern_e4m3_1_(const float *x, const uint8_t *const *wr,
                                            const uint8_t *const *pf, const float *const *sf,
                                            int64_t kc, int64_t bc, float *s) {
  const __m512i mask = _mm512_set1_epi16((short)0xBF80);
  __m512 acc[4], blk[4];
  for (int j = 0; j < 4; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t k = 0, b = 0; k < kc; k += bc, ++b) {
    const int64_t kend = k + bc < kc ? k + bc : kc;
    for (int j = 0; j < 4; ++j) blk[j] = _mm512_setzero_ps();
    for (int64_t kk = k; kk < kend; kk += 32) {
      if (pf && (kk & 63) == 0) {
        for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk, _MM_HINT_T0);
      }
      const __m512 x0 = _mm512_loadu_ps(x + kk), x1 = _mm512_loadu_ps(x + kk + 16);
      for (int j = 0; j < 4; ++j) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(wr[j] + kk));
        const __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(c), 7), mask);
        blk[j] = _mm512_fmadd_ps(x0, _mm512_cvtph_ps(_mm512_castsi512_si256(h)), blk[j]);
        blk[j] = _mm512_fmadd_ps(x1, _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), blk[j]);
      }
    }
    for (int j = 0; j < 4; ++j) acc[j] = _mm512_fmadd_ps(blk[j], _mm512_set1_ps(sf[j][b]), acc[j]);
  }
  for (int j = 0; j < 4; ++j) s[j] = _mm512_reduce_add_ps(acc[j]);
}

/* e2m1 on x permuted by x_evenodd_perm_ (blocks of 32): a block's 16 bytes zero-extend to 16 lanes,
 * whose low nibbles (the even codes) and high nibbles (the odd ones) index a 16-entry table of
 * 2·value with one permute each (vpermps reads the low 4 bits of an index). sf: scales times 1/2,
 * as for avx2_qkern_fp4p_. */
static CPU_AVX512 void avx512_qkern_fp4p_(const float *xp, const uint8_t *const *wr,
                                          const uint8_t *const *pf, const float *const *sf,
                                          int64_t kc, int64_t bc, float *s) {
  const __m512 table = _mm512_setr_ps(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 6.0f, 8.0f, 12.0f, -0.0f, -1.0f,
                                      -2.0f, -3.0f, -4.0f, -6.0f, -8.0f, -12.0f);
  __m512 acc[4], blk[4];
  for (int j = 0; j < 4; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t k = 0, b = 0; k < kc; k += bc, ++b) {
    const int64_t kend = k + bc < kc ? k + bc : kc;
    for (int j = 0; j < 4; ++j) blk[j] = _mm512_setzero_ps();
    for (int64_t kk = k; kk < kend; kk += 32) {
      if (pf && (kk & 127) == 0) {
        for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk / 2, _MM_HINT_T0);
      }
      const __m512 xe = _mm512_loadu_ps(xp + kk), xo = _mm512_loadu_ps(xp + kk + 16);
      for (int j = 0; j < 4; ++j) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(wr[j] + kk / 2)));
        const __m512 de = _mm512_permutexvar_ps(v, table);
        const __m512 dodd = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
        blk[j] = _mm512_fmadd_ps(xe, de, blk[j]);
        blk[j] = _mm512_fmadd_ps(xo, dodd, blk[j]);
      }
    }
    for (int j = 0; j < 4; ++j) acc[j] = _mm512_fmadd_ps(blk[j], _mm512_set1_ps(sf[j][b]), acc[j]);
  }
  for (int j = 0; j < 4; ++j) s[j] = _mm512_reduce_add_ps(acc[j]);
}

/* s[j] = the sum of a_j's 16 lanes for j < 4, the four reductions in one tree (13 operations
 * instead of four times 8: a MoE down projection's rows are two or four kernel steps, an FP8
 * row of K = 512 eight). */
static CPU_AVX512 inline void reduce4_(__m512 a0, __m512 a1, __m512 a2, __m512 a3, float *s) {
  /* 128-bit quarters: u = [a0 q0+q2, a0 q1+q3, a1 q0+q2, a1 q1+q3], w the same of a2, a3 */
  const __m512 u =
      _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
  const __m512 w =
      _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xEE));
  /* quarter j: a_j's four partial sums of four lanes each */
  __m512 z = _mm512_add_ps(_mm512_shuffle_f32x4(u, w, 0x88), _mm512_shuffle_f32x4(u, w, 0xDD));
  z = _mm512_add_ps(z, _mm512_permute_ps(z, 0x4E));
  z = _mm512_add_ps(z, _mm512_permute_ps(z, 0xB1));
  const __m128 r = _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), z));
  _mm_storeu_ps(s, r);
}

/* The one-row AVX-512 GEMVs of x permuted per 64 (FP8) or 128 (FP4) channels, loading 64 code
 * bytes a step with no widening shuffle, reading the e8m0 scale bytes themselves (no scale
 * buffer) and, for FP8, noting NaN codes as they pass. Each returns 0, having possibly written
 * s, when the registers cannot do a row exactly (a NaN code; a scale of 2^-127, or one so
 * large that a block sum times it may overflow where the reference's x·(dec·s) does not): the
 * caller then takes the panel path. Four w rows; sr[j] is row j's scale bytes from k0's block. */

/* The e4m3 kernels' block end: acc[j] += blk[j] times row j's scale of block b, as the f32 bits
 * (s + 8) << 23 (the codes were decoded to value·2^-8); nonzero where a scale is above 246. */
static inline __attribute__((always_inline)) CPU_AVX512 int e4m3_scale_blocks_(
    const uint8_t *const *sr, int64_t b, const __m512 blk[4], __m512 acc[4]) {
  int big = 0;
  for (int j = 0; j < 4; ++j) {
    const uint32_t sc = sr[j][b];
    big |= sc > 246;
    const __m512 sv = _mm512_castsi512_ps(_mm512_set1_epi32((int)((sc + 8) << 23)));
    acc[j] = _mm512_fmadd_ps(blk[j], sv, acc[j]);
  }
  return big;
}

/* The block loop both one-row e4m3 kernels share (e4m3_eo_sums_, e4m3_lut_sums_): acc[j] the
 * sum of row j's blocks, each summed apart in blk[j], scaled and added in order; the rows
 * prefetched from pf. STEP adds row j's 64 codes w (wr[j] + kk) times x0..x3 to blk[j].
 * Leaves `big` set where a scale above 246 needs the panels. */
#define E4M3_ROWS_SUMS_(STEP)                                                              \
  __m512 blk[4];                                                                           \
  int big = 0;                                                                             \
  for (int j = 0; j < 4; ++j) acc[j] = _mm512_setzero_ps();                                \
  for (int64_t k = 0, b = 0; k < kc; k += bc, ++b) {                                       \
    const int64_t kend = k + bc < kc ? k + bc : kc;                                        \
    for (int j = 0; j < 4; ++j) blk[j] = _mm512_setzero_ps();                              \
    for (int64_t kk = k; kk < kend; kk += 64) {                                            \
      if (pf) {                                                                            \
        for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk, _MM_HINT_T0);   \
      }                                                                                    \
      const __m512 x0 = _mm512_loadu_ps(xp + kk), x1 = _mm512_loadu_ps(xp + kk + 16);      \
      const __m512 x2 = _mm512_loadu_ps(xp + kk + 32), x3 = _mm512_loadu_ps(xp + kk + 48); \
      for (int j = 0; j < 4; ++j) {                                                        \
        const __m512i w = _mm512_loadu_si512((const void *)(wr[j] + kk));                  \
        STEP;                                                                              \
      }                                                                                    \
    }                                                                                      \
    big |= e4m3_scale_blocks_(sr, b, blk, acc);                                            \
  }

/* E4M3_ROWS_SUMS_'s step through f16 bits, noting NaN codes in `seen`. */
#define E4M3_EO_STEP_                                                                         \
  do {                                                                                        \
    seen = _mm512_max_epu8(seen, _mm512_and_si512(w, m7f));                                   \
    const __m512i he = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(w, 8), 1), mask); \
    const __m512i ho = _mm512_and_si512(_mm512_srai_epi16(w, 1), mask);                       \
    blk[j] = _mm512_fmadd_ps(x0, _mm512_cvtph_ps(_mm512_castsi512_si256(he)), blk[j]);        \
    blk[j] = _mm512_fmadd_ps(x1, _mm512_cvtph_ps(_mm512_extracti64x4_epi64(he, 1)), blk[j]);  \
    blk[j] = _mm512_fmadd_ps(x2, _mm512_cvtph_ps(_mm512_castsi512_si256(ho)), blk[j]);        \
    blk[j] = _mm512_fmadd_ps(x3, _mm512_cvtph_ps(_mm512_extracti64x4_epi64(ho, 1)), blk[j]);  \
  } while (0)

/* e4m3, blocks a multiple of 64 wide, kc a multiple of 64. A step's 64 bytes are 32 16-bit
 * words, each an even code (low byte) and an odd one (high byte): the odd codes' f16 bits
 * (sign << 15 | (code & 0x7F) << 7, as avx2_e4m3x8_) are the word shifted right arithmetically
 * by one with bit 14 and the low byte's bits masked off; the even codes' the same after a
 * shift left by 8. Scales 2^(s-127)·2^8 are the f32 bits (s + 8) << 23: exact for every s up
 * to 246 (s = 0, 2^-127, included).
 * The loop of the one-row e4m3 kernels: four rows' sums in acc (each row's blocks summed
 * apart, scaled, added in order); 0 where a NaN code or a scale above 246 needs the panels. */
static inline __attribute__((always_inline)) CPU_AVX512 int e4m3_eo_sums_(
    const float *xp, const uint8_t *const *wr, const uint8_t *const *pf, const uint8_t *const *sr,
    int64_t kc, int64_t bc, __m512 acc[4]) {
  const __m512i mask = _mm512_set1_epi16((short)0xBF80), m7f = _mm512_set1_epi8(0x7F);
  __m512i seen = _mm512_setzero_si512();
  E4M3_ROWS_SUMS_(E4M3_EO_STEP_)
  return !big && !_mm512_cmpeq_epi8_mask(seen, m7f);
}

/* avx512_qkern_e4m3_eo_: four rows' sums, each reduced on its own. */
static CPU_AVX512 int avx512_qkern_e4m3_eo_(const float *xp, const uint8_t *const *wr,
                                            const uint8_t *const *pf, const uint8_t *const *sr,
                                            int64_t kc, int64_t bc, float *s) {
  __m512 acc[4];
  const int exact = e4m3_eo_sums_(xp, wr, pf, sr, kc, bc, acc);
  for (int j = 0; j < 4; ++j) s[j] = _mm512_reduce_add_ps(acc[j]);
  return exact;
}

/* avx512_qkern_e4m3_eo_ for the FP8 row path: the same sums (each row's blocks summed apart,
 * scaled, added in order), but the four row sums reduce together in a fixed tree (about a third
 * of the shuffles of four separate reductions; K = 512 is only 8 steps a row). */
static CPU_AVX512 int avx512_qkern_e4m3_r4_(const float *xp, const uint8_t *const *wr,
                                            const uint8_t *const *pf, const uint8_t *const *sr,
                                            int64_t kc, int64_t bc, float *s) {
  __m512 acc[4];
  const int exact = e4m3_eo_sums_(xp, wr, pf, sr, kc, bc, acc);
  reduce4_(acc[0], acc[1], acc[2], acc[3], s);
  return exact;
}

/* e4m3 by table (CPU_ISA_AVX512VBMI), on x permuted by x_e4m3_lut_perm_: vpermi2b looks each
 * code's low 7 bits up in two 128-byte tables, the low and the high byte of the bf16 bits of
 * its magnitude times 2^-8, as the f16 path has it (bf16 holds every e4m3 value exactly, the
 * subnormals as normal numbers; 0x7F looks up a NaN, so a NaN code needs no test of its own),
 * the code's sign is ORed into the high byte, and the two bytes interleave into words per
 * 128-bit lane. A word in the high half of a dword is an f32 once the low half is masked off,
 * one in the low half once shifted up: 13 vector operations per 64 codes where the f16 path
 * (e4m3_eo_sums_) takes 21.
 * The tables: 0x3800 + (m << 4) for the normal magnitudes m >= 8, m·2^-17 for the subnormal
 * ones, 0x7FC0 for 0x7F. */
static const uint8_t k_e4m3_bf16_lo_[128] = {
    0x00, 0x00, 0x80, 0xC0, 0x00, 0x20, 0x40, 0x60, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xC0};
static const uint8_t k_e4m3_bf16_hi_[128] = {
    0x00, 0x37, 0x37, 0x37, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38, 0x38,
    0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39,
    0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A, 0x3A,
    0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B, 0x3B,
    0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C,
    0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D, 0x3D,
    0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E, 0x3E,
    0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x3F, 0x7F};

/* Per 64 channels, the order e4m3_lut_sums_ meets the codes in: lane d of vector i (d < 16,
 * i < 4) is code 16·(d / 4) + 2·(d % 4) + (i & 1) + 8·(i >> 1) (vpunpck*bw interleave within
 * 128-bit lanes; the low word of a dword is the even code). n a multiple of 64. */
static void x_e4m3_lut_perm_(const float *x, int64_t n, float *xp) {
  for (int64_t b = 0; b < n; b += 64) {
    for (int i = 0; i < 4; ++i) {
      for (int d = 0; d < 16; ++d) {
        xp[b + 16 * i + d] = x[b + 16 * (d / 4) + 2 * (d % 4) + (i & 1) + 8 * (i >> 1)];
      }
    }
  }
}

/* Whether the one-row FP8 kernels of step (64: AVX-512; 32: AVX2) decode by table: the one
 * rule the kernel choice and x's permutation both follow (a table kernel needs x in its
 * order). */
static int e4m3_lut_(cpu_isa isa, int64_t step) { return step == 64 && isa >= CPU_ISA_AVX512VBMI; }

/* x in the order the one-row FP8 kernels of step (64: AVX-512, by table with VBMI; 32: AVX2)
 * meet the codes in, n a multiple of step. */
static void x_e4m3_row_perm_(cpu_isa isa, int64_t step, const float *x, int64_t n, float *xp) {
  if (e4m3_lut_(isa, step)) {
    x_e4m3_lut_perm_(x, n, xp);
  } else {
    x_evenodd_perm_(x, n, step, xp);
  }
}

/* E4M3_ROWS_SUMS_'s step by table. */
#define E4M3_LUT_STEP_                                                                   \
  do {                                                                                   \
    const __m512i lo = _mm512_permutex2var_epi8(lo0, w, lo1);                            \
    /* 0xF8: a | (b & c) */                                                              \
    const __m512i hi =                                                                   \
        _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi0, w, hi1), w, sign, 0xF8); \
    const __m512i e = _mm512_unpacklo_epi8(lo, hi), o = _mm512_unpackhi_epi8(lo, hi);    \
    blk[j] = _mm512_fmadd_ps(x0, _mm512_castsi512_ps(_mm512_slli_epi32(e, 16)), blk[j]); \
    blk[j] = _mm512_fmadd_ps(x1, _mm512_castsi512_ps(_mm512_and_si512(e, top)), blk[j]); \
    blk[j] = _mm512_fmadd_ps(x2, _mm512_castsi512_ps(_mm512_slli_epi32(o, 16)), blk[j]); \
    blk[j] = _mm512_fmadd_ps(x3, _mm512_castsi512_ps(_mm512_and_si512(o, top)), blk[j]); \
  } while (0)

/* e4m3_eo_sums_ by table: the same contract (blocks a multiple of 64 wide, kc a multiple of 64,
 * four rows' sums in acc, each row's blocks summed apart, scaled, added in order; scales (s +
 * 8) << 23), 0 only where a scale above 246 needs the panels. */
static inline __attribute__((always_inline)) CPU_AVX512VBMI int e4m3_lut_sums_(
    const float *xp, const uint8_t *const *wr, const uint8_t *const *pf, const uint8_t *const *sr,
    int64_t kc, int64_t bc, __m512 acc[4]) {
  const __m512i lo0 = _mm512_loadu_si512((const void *)k_e4m3_bf16_lo_);
  const __m512i lo1 = _mm512_loadu_si512((const void *)(k_e4m3_bf16_lo_ + 64));
  const __m512i hi0 = _mm512_loadu_si512((const void *)k_e4m3_bf16_hi_);
  const __m512i hi1 = _mm512_loadu_si512((const void *)(k_e4m3_bf16_hi_ + 64));
  const __m512i sign = _mm512_set1_epi8((char)0x80), top = _mm512_set1_epi32((int)0xFFFF0000u);
  E4M3_ROWS_SUMS_(E4M3_LUT_STEP_)
  return !big;
}
#undef E4M3_ROWS_SUMS_
#undef E4M3_EO_STEP_
#undef E4M3_LUT_STEP_

/* avx512_qkern_e4m3_eo_ and _r4_ by table. */
static CPU_AVX512VBMI int avx512_qkern_e4m3_lut_eo_(const float *xp, const uint8_t *const *wr,
                                                    const uint8_t *const *pf,
                                                    const uint8_t *const *sr, int64_t kc,
                                                    int64_t bc, float *s) {
  __m512 acc[4];
  const int exact = e4m3_lut_sums_(xp, wr, pf, sr, kc, bc, acc);
  for (int j = 0; j < 4; ++j) s[j] = _mm512_reduce_add_ps(acc[j]);
  return exact;
}

static CPU_AVX512VBMI int avx512_qkern_e4m3_lut_r4_(const float *xp, const uint8_t *const *wr,
                                                    const uint8_t *const *pf,
                                                    const uint8_t *const *sr, int64_t kc,
                                                    int64_t bc, float *s) {
  __m512 acc[4];
  const int exact = e4m3_lut_sums_(xp, wr, pf, sr, kc, bc, acc);
  reduce4_(acc[0], acc[1], acc[2], acc[3], s);
  return exact;
}

/* avx512_qkern_e4m3_eo_ with AVX2, on x permuted by x_evenodd_perm_ (per 32 channels the even
 * ones, then the odd ones): a step's 32 bytes are 16 words of an even and an odd code, turned
 * into f16 bits by the same shifts and mask. Blocks a multiple of 32 wide, kc a multiple of
 * 32; returns 0 on a NaN code or a scale above 246. */
static CPU_AVX2 int avx2_qkern_e4m3_eo_(const float *xp, const uint8_t *const *wr,
                                        const uint8_t *const *pf, const uint8_t *const *sr,
                                        int64_t kc, int64_t bc, float *s) {
  const __m256i mask = _mm256_set1_epi16((short)0xBF80), m7f = _mm256_set1_epi8(0x7F);
  __m256i seen = _mm256_setzero_si256();
  __m256 acc[4], blk[4];
  int big = 0;
  for (int j = 0; j < 4; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t k = 0, b = 0; k < kc; k += bc, ++b) {
    const int64_t kend = k + bc < kc ? k + bc : kc;
    for (int j = 0; j < 4; ++j) blk[j] = _mm256_setzero_ps();
    for (int64_t kk = k; kk < kend; kk += 32) {
      if (pf && (kk & 63) == 0) {
        for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk, _MM_HINT_T0);
      }
      const __m256 x0 = _mm256_loadu_ps(xp + kk), x1 = _mm256_loadu_ps(xp + kk + 8);
      const __m256 x2 = _mm256_loadu_ps(xp + kk + 16), x3 = _mm256_loadu_ps(xp + kk + 24);
      for (int j = 0; j < 4; ++j) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(wr[j] + kk));
        seen = _mm256_max_epu8(seen, _mm256_and_si256(w, m7f));
        const __m256i he = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 1), mask);
        const __m256i ho = _mm256_and_si256(_mm256_srai_epi16(w, 1), mask);
        blk[j] = _mm256_fmadd_ps(x0, _mm256_cvtph_ps(_mm256_castsi256_si128(he)), blk[j]);
        blk[j] = _mm256_fmadd_ps(x1, _mm256_cvtph_ps(_mm256_extracti128_si256(he, 1)), blk[j]);
        blk[j] = _mm256_fmadd_ps(x2, _mm256_cvtph_ps(_mm256_castsi256_si128(ho)), blk[j]);
        blk[j] = _mm256_fmadd_ps(x3, _mm256_cvtph_ps(_mm256_extracti128_si256(ho, 1)), blk[j]);
      }
    }
    for (int j = 0; j < 4; ++j) {
      const uint32_t sc = sr[j][b];
      big |= sc > 246;
      const __m256 sv = _mm256_castsi256_ps(_mm256_set1_epi32((int)((sc + 8) << 23)));
      acc[j] = _mm256_fmadd_ps(blk[j], sv, acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) s[j] = avx2_hsum(acc[j]);
  return !big && !_mm256_movemask_epi8(_mm256_cmpeq_epi8(seen, m7f));
}

/* xp[128c + 16n + l] = x[128c + 8l + n] for n < 8, l < 16, n a multiple of 128: the order
 * avx512_qkern_e2m1_nib_ meets the codes in, a 16x8 transpose per 128 floats. AVX-512 only (as
 * that kernel): three rounds of two-source permutes, 24 per 128 floats. The linear path
 * permutes x once per tile of 64 rows, where a scalar loop took about a third of the kernel's
 * time (and gathers are slower still on CPUs with the gather microcode mitigation). Round 1: C
 * holds, of rows 4p..4p+3 (32 floats), columns 4k..4k+3 at lane 4·col + row; round 2: D of rows
 * 8q..8q+7, columns 4k+2m and +1 at lane 8·col + row; round 3: one column of all 16 rows. */
static CPU_AVX512 void x_e2m1_perm_(const float *x, int64_t n, float *xp) {
  const __m512i r1[2] = {
      _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27),
      _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31)};
  const __m512i r2[2] = {
      _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23),
      _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31)};
  const __m512i r3[2] = {
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
      _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)};
  for (int64_t b = 0; b < n; b += 128) {
    __m512 c[4][2], d[2][2][2];
    for (int p = 0; p < 4; ++p) {
      const __m512 lo = _mm512_loadu_ps(x + b + 32 * p), hi = _mm512_loadu_ps(x + b + 32 * p + 16);
      c[p][0] = _mm512_permutex2var_ps(lo, r1[0], hi);
      c[p][1] = _mm512_permutex2var_ps(lo, r1[1], hi);
    }
    for (int q = 0; q < 2; ++q) {
      for (int k = 0; k < 2; ++k) {
        for (int m = 0; m < 2; ++m) {
          d[q][k][m] = _mm512_permutex2var_ps(c[2 * q][k], r2[m], c[2 * q + 1][k]);
        }
      }
    }
    for (int k = 0; k < 2; ++k) {
      for (int m = 0; m < 2; ++m) {
        for (int col = 0; col < 2; ++col) {
          _mm512_storeu_ps(xp + b + 16 * (4 * k + 2 * m + col),
                           _mm512_permutex2var_ps(d[0][k][m], r3[col], d[1][k][m]));
        }
      }
    }
  }
}

/* e2m1, blocks 32 wide, kc a multiple of 128. A step's 64 bytes are 16 dwords of 8 codes
 * each (code 8l + n of the step in nibble n of dword l); vpermps reads the low 4 bits of an
 * index, so the dwords shifted right by 4n index a 16-entry table of the values for nibble n
 * of every dword at once: 15 operations (8 permutes, 7 shifts) per 128 codes and no widening.
 * Lane l of a step meets the scale of block l / 4: 16 scale bytes (512 codes) widen to f32
 * bits s << 23 once and a permute spreads them per step. Exact for s in [1, 252]. */
static CPU_AVX512 int avx512_qkern_e2m1_nib_(const float *xp, const uint8_t *const *wr,
                                             const uint8_t *const *pf, const uint8_t *const *sr,
                                             int64_t kc, float *s) {
  const __m512 table = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                      -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
  const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m128i one = _mm_set1_epi8(1), top = _mm_set1_epi8((char)251);
  __m512 acc[4], sv16[4];
  __mmask16 bad = 0;
  for (int j = 0; j < 4; ++j) acc[j] = _mm512_setzero_ps(), sv16[j] = acc[j];
  for (int64_t kk = 0; kk < kc; kk += 128) {
    if ((kk & 511) == 0) {
      const int64_t nb = (kc - kk) / 32 < 16 ? (kc - kk) / 32 : 16;
      const __mmask16 m = (__mmask16)((1u << nb) - 1u);
      for (int j = 0; j < 4; ++j) {
        const __m128i sb = _mm_maskz_loadu_epi8(m, sr[j] + kk / 32);
        /* s - 1 > 251 unsigned: s = 0 or s >= 253 */
        bad |= _mm_mask_cmpgt_epu8_mask(m, _mm_sub_epi8(sb, one), top);
        sv16[j] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(sb), 23));
      }
    }
    if (pf) {
      for (int j = 0; j < 4; ++j) _mm_prefetch((const char *)pf[j] + kk / 2, _MM_HINT_T0);
    }
    const __m512i qi = _mm512_add_epi32(quad, _mm512_set1_epi32((int)((kk & 511) / 32)));
    const float *x = xp + kk;
    for (int j = 0; j < 4; ++j) {
      const __m512i v = _mm512_loadu_si512((const void *)(wr[j] + kk / 2));
      /* One chain per row: the rows' four chains hide the FMA latency, and an add of two
       * chains per step would be one more operation on the two vector ports. */
      __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x), _mm512_permutexvar_ps(v, table));
      for (int n = 1; n < 8; ++n) {
        t = _mm512_fmadd_ps(_mm512_loadu_ps(x + 16 * n),
                            _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4 * n), table), t);
      }
      acc[j] = _mm512_fmadd_ps(t, _mm512_permutexvar_ps(qi, sv16[j]), acc[j]);
    }
  }
  reduce4_(acc[0], acc[1], acc[2], acc[3], s);
  return !bad;
}

/* One row's step of avx512_qkern_e2m1_nib4_: 128 codes at w against xp, into acc with the
 * lanes' scales sv. */
static CPU_AVX512 inline __m512 e2m1_nib_row_(const float *x, const uint8_t *w, __m512 table,
                                              __m512 sv, __m512 acc) {
  const __m512i v = _mm512_loadu_si512((const void *)w);
  __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x), _mm512_permutexvar_ps(v, table));
  for (int n = 1; n < 8; ++n) {
    t = _mm512_fmadd_ps(_mm512_loadu_ps(x + 16 * n),
                        _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4 * n), table), t);
  }
  return _mm512_fmadd_ps(t, sv, acc);
}

/* avx512_qkern_e2m1_nib_ for four rows rb bytes apart whose scale rows are ss bytes apart
 * (1x32 blocks: a group of consecutive rows), prefetching the four rows from pf (NULL: none):
 * the same operations in the same order, so the same sums; a few pointers instead of twelve
 * keep the loop's addresses in registers, and the scales of 512 codes are widened outside the
 * loop over their four steps. */
static CPU_AVX512 int avx512_qkern_e2m1_nib4_(const float *xp, const uint8_t *w, int64_t rb,
                                              const uint8_t *pf, const uint8_t *sc, int64_t ss,
                                              int64_t kc, float *s) {
  const __m512 table = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                      -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
  const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m128i one = _mm_set1_epi8(1), top = _mm_set1_epi8((char)251);
  const int64_t rb3 = 3 * rb;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  __mmask16 bad = 0;
  for (int64_t k0 = 0; k0 < kc; k0 += 512) {
    const int64_t nb = (kc - k0) / 32 < 16 ? (kc - k0) / 32 : 16;
    const __mmask16 m = (__mmask16)((1u << nb) - 1u);
    __m512 sv[4];
    for (int j = 0; j < 4; ++j) {
      const __m128i sb = _mm_maskz_loadu_epi8(m, sc + j * ss + k0 / 32);
      /* s - 1 > 251 unsigned: s = 0 or s >= 253 */
      bad |= _mm_mask_cmpgt_epu8_mask(m, _mm_sub_epi8(sb, one), top);
      sv[j] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(sb), 23));
    }
    const int64_t ke = kc - k0 < 512 ? kc : k0 + 512;
    __m512i qi = quad;
    for (int64_t kk = k0; kk < ke; kk += 128) {
      const uint8_t *p = w + kk / 2;
      if (pf) {
        const char *q = (const char *)pf + kk / 2;
        _mm_prefetch(q, _MM_HINT_T0);
        _mm_prefetch(q + rb, _MM_HINT_T0);
        _mm_prefetch(q + 2 * rb, _MM_HINT_T0);
        _mm_prefetch(q + rb3, _MM_HINT_T0);
      }
      const float *x = xp + kk;
      a0 = e2m1_nib_row_(x, p, table, _mm512_permutexvar_ps(qi, sv[0]), a0);
      a1 = e2m1_nib_row_(x, p + rb, table, _mm512_permutexvar_ps(qi, sv[1]), a1);
      a2 = e2m1_nib_row_(x, p + 2 * rb, table, _mm512_permutexvar_ps(qi, sv[2]), a2);
      a3 = e2m1_nib_row_(x, p + rb3, table, _mm512_permutexvar_ps(qi, sv[3]), a3);
      qi = _mm512_add_epi32(qi, _mm512_set1_epi32(4));
    }
  }
  reduce4_(a0, a1, a2, a3, s);
  return !bad;
}

/* dst[t] = e8m0(s[t])·mult for t < n; returns 0 when some scale is in [big, 254]: a scale so
 * large that 2^8·s (e4m3, from 247) or a block's sum times s (e2m1, from 253: 6·2^126 is past
 * FLT_MAX) may overflow where the reference's dec·s and x·(dec·s) do not, or the reverse. The
 * caller then takes the panel path, which multiplies as the reference does. */
static CPU_AVX2 int avx2_scales_(const uint8_t *s, int64_t n, float mult, int big, float *dst) {
  const __m256 mv = _mm256_set1_ps(mult);
  const __m256i zero = _mm256_setzero_si256(), all = _mm256_set1_epi32(255);
  __m256i bad = zero;
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(s + t)));
    __m256i bits = _mm256_slli_epi32(v, 23);
    bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(v, zero));
    const __m256i is_nan = _mm256_cmpeq_epi32(v, all);
    bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), is_nan);
    bad = _mm256_or_si256(
        bad, _mm256_andnot_si256(is_nan, _mm256_cmpgt_epi32(v, _mm256_set1_epi32(big - 1))));
    _mm256_storeu_ps(dst + t, _mm256_mul_ps(_mm256_castsi256_ps(bits), mv));
  }
  int ok = _mm256_testz_si256(bad, bad);
  for (; t < n; ++t) {
    dst[t] = e8m0_f32_(s[t]) * mult;
    if (s[t] >= big && s[t] < 255) ok = 0;
  }
  return ok;
}

/* Whether some of the n e4m3 codes at p is NaN (0x7F or 0xFF): the largest magnitude byte is
 * 0x7F. Two operations per 32 codes, on rows the kernel has just brought into L1. */
static CPU_AVX2 int avx2_has_e4m3_nan_(const uint8_t *p, int64_t n) {
  const __m256i m7f = _mm256_set1_epi8(0x7F);
  __m256i mx = _mm256_setzero_si256();
  int64_t t = 0;
  for (; t + 32 <= n; t += 32) {
    const __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + t));
    mx = _mm256_max_epu8(mx, _mm256_and_si256(b, m7f));
  }
  int found = _mm256_movemask_epi8(_mm256_cmpeq_epi8(mx, m7f)) != 0;
  for (; t < n; ++t) found |= (p[t] & 0x7F) == 0x7F;
  return found;
}

/* out[t] = W element (i + t)·s for t < n, NaN codes included. */
static CPU_AVX2 void avx2_dequant_run_(const cpu_weight *w, int64_t i, int64_t n, float s,
                                       float *out) {
  const uint8_t *p = w->data;
  const __m256 sv = _mm256_set1_ps(s);
  int64_t t = 0;
  if (w->dtype == VNRT_E4M3) {
    const __m256 k256 = _mm256_set1_ps(256.0f);
    const __m128i m7f = _mm_set1_epi16(0x7F00);
    for (; t + 8 <= n; t += 8) {
      const __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(p + i + t));
      const __m128i wd = _mm_unpacklo_epi8(_mm_setzero_si128(), b);
      __m128i h = _mm_and_si128(_mm_srai_epi16(wd, 1), _mm_set1_epi16((short)0xBFFF));
      const __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(wd, m7f), m7f);
      h = _mm_blendv_epi8(h, _mm_set1_epi16(0x7E00), nan); /* f16 NaN */
      /* (dec·2^-8)·2^8 is dec exactly; then one rounding, as the reference's dec·s. */
      _mm256_storeu_ps(out + t, _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(h), k256), sv));
    }
  } else {
    const __m256 table = avx2_e2m1_table_();
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    if (((i + t) & 1) && t < n) {
      out[t] = code_f32_(w, i + t) * s;
      ++t;
    }
    for (; t + 8 <= n; t += 8) {
      _mm256_storeu_ps(out + t, _mm256_mul_ps(avx2_e2m1x8_(p + (i + t) / 2, table, shifts), sv));
    }
  }
  for (; t < n; ++t) out[t] = code_f32_(w, i + t) * s;
}
/* avx2_dequant_run_ for e4m3 with AVX-512, 32 codes a step: sign-extended to 16 bits, shifted
 * and masked into f16 bits as in avx512_qkern_e4m3_1_, NaN codes set to f16 NaN through a
 * byte compare (a mask move), widened, times 2^8 and s (two multiplies: dec·2^-8·2^8 is dec
 * exactly, so out = dec·s with one rounding, as the reference's). The rest: AVX2. */
static CPU_AVX512 void avx512_dequant_e4m3_run_(const cpu_weight *w, int64_t i, int64_t n, float s,
                                                float *out) {
  const uint8_t *p = (const uint8_t *)w->data + i;
  const __m512i mask = _mm512_set1_epi16((short)0xBF80), fnan = _mm512_set1_epi16(0x7E00);
  const __m256i m7f = _mm256_set1_epi8(0x7F);
  const __m512 k256 = _mm512_set1_ps(256.0f), sv = _mm512_set1_ps(s);
  int64_t t = 0;
  for (; t + 32 <= n; t += 32) {
    const __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(p + t));
    __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(c), 7), mask);
    h = _mm512_mask_mov_epi16(h, _mm256_cmpeq_epi8_mask(_mm256_and_si256(c, m7f), m7f), fnan);
    const __m512 d0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    const __m512 d1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    _mm512_storeu_ps(out + t, _mm512_mul_ps(_mm512_mul_ps(d0, k256), sv));
    _mm512_storeu_ps(out + t + 16, _mm512_mul_ps(_mm512_mul_ps(d1, k256), sv));
  }
  if (t < n) avx2_dequant_run_(w, i + t, n - t, s, out + t);
}
#endif /* CPU_HAVE_AVX2_CODE */

/* ---- panels ------------------------------------------------------------------------------ */

/* dst[r·ld + c] = W[mat][row0 + r][k0 + c] for r < nr, c < kc. */
static void dequant_panel_(cpu_isa isa, const cpu_weight *w, int64_t mat, int64_t row0, int64_t nr,
                           int64_t k0, int64_t kc, float *dst, int64_t ld) {
  const int avx2 = isa_avx2_(isa);
  (void)avx2;
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t row = row0 + r, base = (mat * w->rows + row) * w->cols;
    const uint8_t *srow = w->scale + (mat * w->srows + row / w->br) * w->scols;
    float *d = dst + r * ld;
    for (int64_t c = k0; c < k0 + kc;) {
      const int64_t b = c / w->bc;
      const int64_t end = (b + 1) * w->bc < k0 + kc ? (b + 1) * w->bc : k0 + kc;
      const float s = e8m0_f32_(srow[b]);
#if defined(CPU_HAVE_AVX2_CODE)
      if (isa >= CPU_ISA_AVX512 && w->dtype == VNRT_E4M3) {
        avx512_dequant_e4m3_run_(w, base + c, end - c, s, d + (c - k0));
        c = end;
        continue;
      }
      if (avx2) {
        avx2_dequant_run_(w, base + c, end - c, s, d + (c - k0));
        c = end;
        continue;
      }
#endif
      for (; c < end; ++c) d[c - k0] = code_f32_(w, base + c) * s;
    }
  }
}

#if defined(CPU_HAVE_AVX2_CODE)
/* The rows of one matrix of W from row0 on, for cpu_gemm_nt_block_avx512_dec. */
typedef struct qdec_rows {
  cpu_isa isa;
  const cpu_weight *w;
  int64_t mat, row0;
} qdec_rows;

/* cpu_gemm_rows_fn: decodes rows row0 + r of W (r < nr) at columns [k0, k0 + kc), then
 * prefetches the codes of the group that follows, which arrive while the x panels compute. */
static void qdec_rows_(void *user, int64_t r0, int64_t nr, int64_t k0, int64_t kc, float *dst,
                       int64_t ld) {
  const qdec_rows *q = user;
  const cpu_weight *w = q->w;
  dequant_panel_(q->isa, w, q->mat, q->row0 + r0, nr, k0, kc, dst, ld);
  const int fp4 = w->dtype == VNRT_E2M1;
  for (int64_t r = q->row0 + r0 + nr; r < q->row0 + r0 + 2 * nr && r < w->rows; ++r) {
    const int64_t e = (q->mat * w->rows + r) * w->cols + k0;
    const char *p = (const char *)w->data + (fp4 ? e / 2 : e);
    for (int64_t b = 0; b < (fp4 ? kc / 2 : kc); b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
  }
}
#endif

/* cpu_qgemm_nt_block through f32 panels (any isa, shape and block). */
static void qgemm_panels_(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const cpu_weight *w,
                          int64_t mat, int64_t row0, int64_t n, float *c, int64_t ldc, float *ws) {
  const int64_t K = w->cols;
  if (K <= 0) {
    for (int64_t i = 0; i < m; ++i) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
#if defined(CPU_HAVE_AVX2_CODE)
  /* AVX-512 with more than a few x rows: each group of 6 W rows of each 1024-column block is
   * decoded once into the L1 rows the GEMM micro-kernel reads (no panel in L2, no copy, no
   * partial results to add up per panel). */
  if (isa >= CPU_ISA_AVX512 && m > 4) {
    qdec_rows q = {.isa = isa, .w = w, .mat = mat, .row0 = row0};
    /* Many x rows: decoded 16 rows at a time and packed for the outer-product block (ws holds
     * CPU_GEMM_WS_FLOATS then: cpu_qgemm_ws_floats). */
    if (m >= CPU_GEMM_PACKED_MIN_M &&
        cpu_gemm_nt_block_avx512_packed_dec(x, ldx, m, qdec_rows_, &q, n, K, c, ldc, ws,
                                            CPU_GEMM_WS_FLOATS)) {
      return;
    }
    cpu_gemm_nt_block_avx512_dec(x, ldx, m, qdec_rows_, &q, n, K, c, ldc);
    return;
  }
#endif
  float *wbuf = ws, *ctmp = wbuf + QN * QLD, *gws = ctmp + QM * QN;
  for (int64_t j0 = 0; j0 < n; j0 += QN) {
    const int64_t nv = n - j0 < QN ? n - j0 : QN;
    for (int64_t k0 = 0; k0 < K; k0 += QK) {
      const int64_t kc = K - k0 < QK ? K - k0 : QK;
      dequant_panel_(isa, w, mat, row0 + j0, nv, k0, kc, wbuf, QLD);
      for (int64_t i0 = 0; i0 < m; i0 += QM) {
        const int64_t mi = m - i0 < QM ? m - i0 : QM;
        float *gw = mi > 4 && !isa_avx2_(isa) ? gws : NULL;
        cpu_gemm_nt_block(isa, x + i0 * ldx + k0, ldx, mi, wbuf, VNRT_F32, QLD, nv, kc, ctmp, nv,
                          gw);
        for (int64_t i = 0; i < mi; ++i) {
          float *crow = c + (i0 + i) * ldc + j0;
          const float *t = ctmp + i * nv;
          if (k0 == 0) {
            memcpy(crow, t, (size_t)nv * sizeof(float));
          } else {
            for (int64_t j = 0; j < nv; ++j) crow[j] += t[j];
          }
        }
      }
    }
  }
}

/* ---- in registers ------------------------------------------------------------------------ */

#if defined(CPU_HAVE_AVX2_CODE)
/* One x row (xp: permuted by x_e2m1_perm_, x: as given) against rows [row0, row0 + n) of
 * matrix mat of FP4 weights with 1x32 blocks, all of K (a multiple of 128, at most QV_KQ) in
 * one chunk of the AVX-512 nibble kernel: a MoE expert's projections, whose per-group setup is
 * a large part of a group's few kernel steps (F = 512 is 4), so the row, scale and prefetch
 * pointers advance by a stride, with no division where br == 1. Each group prefetches the
 * group about QV_PF_BYTES ahead; the last ones prefetch `next` (the caller's next rows, NULL:
 * none) instead. A group with a scale the kernel cannot take is redone through panels (pws). */
static void e2nib_rows_(cpu_isa isa, const float *xp, const float *x, int64_t ldx,
                        const cpu_weight *w, int64_t mat, int64_t row0, int64_t n, float *c,
                        const uint8_t *next, float *pws) {
  const int nr = QV_NR_FOR(1);
  const int64_t K = w->cols, rb = K / 2, ss = w->scols, br = w->br, group_bytes = nr * rb;
  int64_t pd = (QV_PF_BYTES + group_bytes - 1) / group_bytes;
  pd = pd < 1 ? 1 : pd;
  const int64_t pfo = pd * nr * rb;
  const uint8_t *wbase = (const uint8_t *)w->data + (mat * w->rows + row0) * rb;
  const uint8_t *sbase = w->scale + mat * w->srows * ss;
  for (int64_t j0 = 0; j0 < n; j0 += nr) {
    const uint8_t *wrow = wbase + j0 * rb;
    const int nv = (int)(n - j0 < nr ? n - j0 : nr);
    const int64_t jp = j0 + pd * nr;
    float s4[QV_NR_MAX];
    int ok;
    if (nv == nr && br == 1) {
      /* Consecutive rows and scale rows: the strided kernel. The prefetch runs on into the
       * next rows (or past the matrix: prefetches do not fault). */
      const uint8_t *pf0 = jp < n ? wrow + pfo : next ? next + (jp - n) * rb : NULL;
      ok = avx512_qkern_e2m1_nib4_(xp, wrow, rb, pf0, sbase + (row0 + j0) * ss, ss, K, s4);
    } else {
      const uint8_t *wr[QV_NR_MAX], *pf[QV_NR_MAX], *sr[QV_NR_MAX];
      for (int j = 0; j < nr; ++j) {
        const int jj = j < nv ? j : nv - 1; /* a partial group repeats */
        const int64_t row = row0 + j0 + jj;
        wr[j] = wrow + jj * rb;
        sr[j] = sbase + (br == 1 ? row : row / br) * ss;
        if (jp < n) {
          pf[j] = wrow + pfo + (jp + j < n ? j : 0) * rb;
        } else if (next) {
          /* The next rows as one stream, continuing this one's prefetch distance. */
          pf[j] = next + (jp - n + j) * rb;
        }
      }
      ok = avx512_qkern_e2m1_nib_(xp, wr, jp < n || next ? pf : NULL, sr, K, s4);
    }
    if (ok) {
      for (int j = 0; j < nv; ++j) c[j0 + j] = s4[j];
    } else {
      qgemm_panels_(isa, x, ldx, 1, w, mat, row0 + j0, nv, c + j0, 1, pws);
    }
  }
}
#endif

int cpu_qgemv_e2m1p_ok(cpu_isa isa, const cpu_weight *w) {
#if defined(CPU_HAVE_AVX2_CODE)
  return isa >= CPU_ISA_AVX512 && w->scale && w->dtype == VNRT_E2M1 && w->bc == 32 && w->cols > 0 &&
         w->cols % 128 == 0 && w->cols <= QV_KQ;
#else
  (void)isa, (void)w;
  return 0;
#endif
}

void cpu_qgemv_e2m1p_perm(const float *x, int64_t k, float *xp) {
#if defined(CPU_HAVE_AVX2_CODE)
  x_e2m1_perm_(x, k, xp);
#else
  (void)x, (void)k, (void)xp;
#endif
}

void cpu_qgemv_e2m1p(cpu_isa isa, const float *xp, const float *x, const cpu_weight *w, int64_t mat,
                     int64_t row0, int64_t n, float *c, const uint8_t *next, float *ws) {
#if defined(CPU_HAVE_AVX2_CODE)
  if (n > 0) e2nib_rows_(isa, xp, x, w->cols, w, mat, row0, n, c, next, ws);
#else
  (void)isa, (void)xp, (void)x, (void)w, (void)mat, (void)row0, (void)n, (void)c, (void)next;
  (void)ws;
#endif
}

#if defined(CPU_HAVE_AVX2_CODE)
/* cpu_qgemm_nt_block for 1..4 x rows on AVX2: groups of nr w rows, K in chunks of whole
 * blocks; a group the registers cannot do exactly is redone through panels. */
static void qgemm_regs_(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const cpu_weight *w,
                        int64_t mat, int64_t row0, int64_t n, float *c, int64_t ldc, float *ws) {
  const int mr = (int)m, nr = QV_NR_FOR(mr);
  const int fp4 = w->dtype == VNRT_E2M1;
  const int64_t K = w->cols, bc = w->bc;
  int64_t bpc = QV_KQ / bc;
  bpc = bpc < 1 ? 1 : bpc > QV_BLOCKS ? QV_BLOCKS : bpc;
  const int64_t kq = bpc * bc;
  /* One x row on FP4 blocks of whole 32-code steps: the permuted kernel (x permuted once,
   * all of K; chunks start at multiples of the permutation's steps). */
  const int fp4p = fp4 && mr == 1 && bc % 32 == 0 && K % 32 == 0;
  /* One x row, blocks and K in whole 32-code steps: the AVX-512 kernels where the CPU has them. */
  const int v512 = mr == 1 && bc % 32 == 0 && K % 32 == 0 && isa >= CPU_ISA_AVX512;
  /* The AVX-512 kernels that read the scale bytes themselves: FP8 with blocks of whole
   * 64-code steps, FP4 with 32-wide blocks and K in whole 128-code steps. */
  const int e8eo = v512 && !fp4 && bc % 64 == 0 && K % 64 == 0;
  const int e8lut = e8eo && e4m3_lut_(isa, 64); /* the same, decoding by table */
  /* AVX2 (or AVX-512 where 64-code steps do not fit): FP8, one row, 32-code steps. */
  const int e8eo2 = !e8eo && mr == 1 && !fp4 && bc % 32 == 0 && K % 32 == 0;
  const int e2nib = v512 && fp4 && bc == 32 && K % 128 == 0;
  /* AVX2: FP4, one row, 1x32 blocks, K in whole 64-code steps. */
  const int e2b16 = !v512 && fp4p && bc == 32 && K % 64 == 0;
  const float mult = fp4p && !e2b16 ? 0.5f : fp4 ? 1.0f : 256.0f;
  float *sfbuf = ws, *xp = ws + QV_NR_MAX * QV_BLOCKS, *pws = xp + qv_xp_floats_(K);
  if (e8eo || e8eo2) {
    x_e4m3_row_perm_(isa, e8eo ? 64 : 32, x, K, xp);
  } else if (e2nib) {
    x_e2m1_perm_(x, K, xp);
  } else if (e2b16) {
    x_e2m1_perm64_(x, K, xp);
  } else if (fp4p) {
    x_evenodd_perm_(x, K, 32, xp);
  }
  const uint8_t *codes = w->data;
  float s[QV_MR * QV_NR_MAX];
  /* Each group prefetches, while it computes, the rows of the group about QV_PF_BYTES ahead
   * (at least the next one): the prefetchers alone do not keep a GEMV's few short rows
   * streaming at the memory's rate (a MoE down projection's F = 512 codes are 256 bytes). */
  const int64_t row_bytes = fp4 ? K / 2 : K, group_bytes = nr * row_bytes;
  int64_t pd = (QV_PF_BYTES + group_bytes - 1) / group_bytes;
  pd = pd < 1 ? 1 : pd;
  if (e2nib && K <= kq) {
    e2nib_rows_(isa, xp, x, ldx, w, mat, row0, n, c, NULL, pws);
    return;
  }
  /* The scale row each sfbuf row holds (FP8's 128-row blocks serve 32 groups: converted once
   * while K fits one chunk), and whether its scales allow the registers. */
  const uint8_t *sf_src[QV_NR_MAX] = {NULL};
  int sf_ok[QV_NR_MAX] = {0};
  for (int64_t j0 = 0; j0 < n; j0 += nr) {
    const int nv = (int)(n - j0 < nr ? n - j0 : nr);
    const int64_t jp = j0 + pd * nr;
    const uint8_t *pfrow[QV_NR_MAX];
    for (int j = 0; jp < n && j < nr; ++j) {
      const int64_t rp = jp + (jp + j < n ? j : 0);
      pfrow[j] =
          codes + (fp4 ? ((mat * w->rows + row0 + rp) * K) / 2 : (mat * w->rows + row0 + rp) * K);
    }
    int64_t rowbase[QV_NR_MAX];
    const uint8_t *srow[QV_NR_MAX];
    for (int j = 0; j < nr; ++j) {
      const int64_t row = row0 + j0 + (j < nv ? j : nv - 1); /* a partial group repeats */
      rowbase[j] = (mat * w->rows + row) * K;
      srow[j] = w->scale + (mat * w->srows + row / w->br) * w->scols;
    }
    int exact = 1;
    for (int64_t k0 = 0; exact && k0 < K; k0 += kq) {
      const int64_t kc = K - k0 < kq ? K - k0 : kq, nb = (kc + bc - 1) / bc;
      const float *xr[QV_MR];
      const uint8_t *wr[QV_NR_MAX], *pf[QV_NR_MAX];
      const float *sf[QV_NR_MAX];
      for (int i = 0; i < mr; ++i) xr[i] = x + i * ldx + k0;
      for (int j = 0; j < nr; ++j) {
        wr[j] = codes + (fp4 ? (rowbase[j] + k0) / 2 : rowbase[j] + k0);
        pf[j] = pfrow[j] + (fp4 ? k0 / 2 : k0);
        sf[j] = sfbuf + j * QV_BLOCKS;
        if (e8eo || e8eo2 || e2nib) continue;
        if (sf_src[j] != srow[j] + k0 / bc) {
          const int big = fp4p && !e2b16 ? 252 : fp4 ? 253 : 247;
          sf_src[j] = srow[j] + k0 / bc;
          sf_ok[j] = avx2_scales_(sf_src[j], nb, mult, big, sfbuf + j * QV_BLOCKS);
        }
        exact &= sf_ok[j];
      }
      if (!exact) break;
      if (e8eo || e8eo2 || e2nib) {
        const uint8_t *const *pfp = jp < n ? pf : NULL;
        const uint8_t *sr[QV_NR_MAX];
        for (int j = 0; j < nr; ++j) sr[j] = srow[j] + k0 / bc;
        exact = e8lut   ? avx512_qkern_e4m3_lut_eo_(xp + k0, wr, pfp, sr, kc, bc, s)
                : e8eo  ? avx512_qkern_e4m3_eo_(xp + k0, wr, pfp, sr, kc, bc, s)
                : e8eo2 ? avx2_qkern_e4m3_eo_(xp + k0, wr, pfp, sr, kc, bc, s)
                        : avx512_qkern_e2m1_nib_(xp + k0, wr, pfp, sr, kc, s);
        if (!exact) break;
      } else if (e2b16) {
        avx2_qkern_e2m1_64_(xp + k0, wr, jp < n ? pf : NULL, sf, kc, s);
      } else if (fp4p && v512) {
        avx512_qkern_fp4p_(xp + k0, wr, jp < n ? pf : NULL, sf, kc, bc, s);
      } else if (fp4p) {
        avx2_qkern_fp4p_(xp + k0, wr, jp < n ? pf : NULL, sf, kc, bc, s);
      } else if (!fp4 && v512) {
        avx512_qkern_e4m3_1_(xr[0], wr, jp < n ? pf : NULL, sf, kc, bc, s);
      } else {
        avx2_qkerns_[fp4][bc == (fp4 ? 32 : 128)][mr](xr, wr, jp < n ? pf : NULL, sf, kc, bc, s);
      }
      for (int i = 0; i < mr; ++i) {
        float *crow = c + i * ldc + j0;
        for (int j = 0; j < nv; ++j) crow[j] = k0 == 0 ? s[i * nr + j] : crow[j] + s[i * nr + j];
      }
    }
    for (int j = 0; exact && !fp4 && !e8eo && !e8eo2 && j < nv; ++j) {
      exact = !avx2_has_e4m3_nan_(codes + rowbase[j], K);
    }
    if (!exact) qgemm_panels_(isa, x, ldx, m, w, mat, row0 + j0, nv, c + j0, ldc, pws);
  }
}
#endif

#if defined(CPU_HAVE_AVX2_CODE)
/* The kernel step of the FP8 row path (qgemm_e4m3_row_) for m x rows against w, 0 where it is
 * not taken: one x row, e4m3, blocks and K in whole steps (64 codes with AVX-512, 32 with
 * AVX2: the kernels qgemm_regs_ picks for them) and K within one of its chunks, so that each
 * sum is formed as qgemm_regs_ forms it. */
static int64_t e4m3_row_step_(cpu_isa isa, int64_t m, const cpu_weight *w) {
  if (m != 1 || !regs_ok_(isa, m, w) || w->dtype != VNRT_E4M3 || w->cols <= 0) return 0;
  const int64_t K = w->cols, bc = w->bc;
  int64_t bpc = QV_KQ / bc;
  bpc = bpc < 1 ? 1 : bpc > QV_BLOCKS ? QV_BLOCKS : bpc;
  if (K > bpc * bc) return 0;
  if (isa >= CPU_ISA_AVX512 && bc % 64 == 0 && K % 64 == 0) return 64;
  return bc % 32 == 0 && K % 32 == 0 ? 32 : 0;
}

/* qgemm_regs_ for one x row on FP8 (e4m3_row_step_ gives step), x already permuted (xp, all of
 * K, shared by every tile): the short rows of a decode step's projections (K = 512 is 8
 * kernel steps a row) leave little time for per-group setup, so the row, scale and prefetch
 * pointers advance by a stride. Each group prefetches the rows about QV_PF_BYTES ahead while
 * they lie below row pf_end (absolute: the end of the tiles the thread takes next, so the
 * stream does not stall at a tile's start). A group the registers cannot do exactly goes
 * through panels (ws: cpu_qgemm_ws_floats floats). */
static void qgemm_e4m3_row_(cpu_isa isa, int64_t step, const float *x, const float *xp,
                            const cpu_weight *w, int64_t mat, int64_t row0, int64_t n,
                            int64_t pf_end, float *c, float *ws) {
  enum { NR = 4 };
  const int64_t K = w->cols, bc = w->bc, br = w->br, ss = w->scols;
  const uint8_t *codes = (const uint8_t *)w->data + mat * w->rows * K;
  const uint8_t *sbase = w->scale + mat * w->srows * ss;
  int64_t pd = (QV_PF_BYTES + NR * K - 1) / (NR * K);
  pd = pd < 1 ? 1 : pd;
  float s[NR];
  for (int64_t j0 = 0; j0 < n; j0 += NR) {
    const int nv = (int)(n - j0 < NR ? n - j0 : NR);
    const int64_t r = row0 + j0, rp = r + pd * NR, b0 = r / br, rem = r - b0 * br;
    const uint8_t *wr[NR], *pf[NR], *sr[NR];
    for (int j = 0; j < NR; ++j) {
      const int jj = j < nv ? j : nv - 1; /* a partial group repeats */
      wr[j] = codes + (r + jj) * K;
      sr[j] = sbase + (br >= NR ? b0 + (rem + jj >= br) : (r + jj) / br) * ss;
      pf[j] = codes + (rp + j < pf_end ? rp + j : rp) * K;
    }
    const uint8_t *const *pfp = rp < pf_end ? pf : NULL;
    const int exact = step != 64             ? avx2_qkern_e4m3_eo_(xp, wr, pfp, sr, K, bc, s)
                      : e4m3_lut_(isa, step) ? avx512_qkern_e4m3_lut_r4_(xp, wr, pfp, sr, K, bc, s)
                                             : avx512_qkern_e4m3_r4_(xp, wr, pfp, sr, K, bc, s);
    if (exact) {
      for (int j = 0; j < nv; ++j) c[j0 + j] = s[j];
    } else {
      qgemm_panels_(isa, x, K, 1, w, mat, r, nv, c + j0, nv, ws);
    }
  }
}
#endif

void cpu_qgemm_nt_block(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const cpu_weight *w,
                        int64_t mat, int64_t row0, int64_t n, float *c, int64_t ldc, float *ws) {
  if (m <= 0 || n <= 0) return;
  if (!w->scale) {
    const size_t sz = vnrt_dtype_size(w->dtype);
    const char *p = (const char *)w->data + (size_t)((mat * w->rows + row0) * w->cols) * sz;
    cpu_gemm_nt_block(isa, x, ldx, m, p, w->dtype, w->cols, n, w->cols, c, ldc, ws);
    return;
  }
#if defined(CPU_HAVE_AVX2_CODE)
  if (regs_ok_(isa, m, w) && w->cols > 0) {
    qgemm_regs_(isa, x, ldx, m, w, mat, row0, n, c, ldc, ws);
    return;
  }
#endif
  qgemm_panels_(isa, x, ldx, m, w, mat, row0, n, c, ldc, ws);
}

/* ---- tiled, threaded driver -------------------------------------------------------------- */

/* Lanes: the tiles are cut into one run of consecutive tiles per thread, which it takes in
 * order from the front (its w rows stream as one run, and its prefetches may run into its next
 * tile), then helps the other lanes from their fronts. */
#define QGEMM_MAX_LANES 64

typedef struct qgemm_lane {
  _Alignas(64) atomic_int_fast64_t next;
} qgemm_lane;

typedef struct qgemm_job {
  cpu_isa isa;
  const float *x;
  const float *xp; /* x permuted for the FP8 row path (qgemm_e4m3_row_) or the FP4 one
                    * (e2nib_rows_), NULL if neither is taken */
  int64_t xp_step; /* the FP8 path's kernel step */
  int xp_e2m1;     /* xp is for the FP4 path */
  const cpu_weight *w;
  void *out;
  vnrt_dtype odt;
  int64_t ldx, ldo, m, n, row0;
  int64_t xg, og;       /* group g: x columns from g·xg, W rows from row0 + g·n, out from g·og */
  int64_t mt, nt, n_mt; /* tile extents; a group's tiles are numbered n-major */
  int64_t ipg, items;   /* tiles per group, in all */
  int64_t lanes, per_lane;
  qgemm_lane *lane;
  float *scratch;
  int64_t ws_floats, slot_floats;
} qgemm_job;

/* W's row (absolute) where tile item ends. */
static int64_t qgemm_item_end_row_(const qgemm_job *g, int64_t item) {
  const int64_t grp = item / g->ipg, j1 = ((item % g->ipg) / g->n_mt + 1) * g->nt;
  return g->row0 + grp * g->n + (j1 < g->n ? j1 : g->n);
}

static void qgemm_item_(const qgemm_job *g, int64_t item, int32_t slot, int64_t pf_end) {
  const int64_t grp = item / g->ipg, t = item % g->ipg;
  const int64_t i0 = (t % g->n_mt) * g->mt, j0 = (t / g->n_mt) * g->nt;
  const int64_t mi = g->m - i0 < g->mt ? g->m - i0 : g->mt;
  const int64_t nj = g->n - j0 < g->nt ? g->n - j0 : g->nt;
  const float *x = g->x + grp * g->xg + i0 * g->ldx;
  const int64_t row = g->row0 + grp * g->n + j0, ocol = grp * g->og + j0;
  float *ws = g->scratch ? g->scratch + slot * g->slot_floats : NULL;
  float *c = (float *)g->out + i0 * g->ldo + ocol;
  int64_t ldc = g->ldo;
  if (g->odt != VNRT_F32) c = ws + g->ws_floats, ldc = nj;
#if defined(CPU_HAVE_AVX2_CODE)
  if (g->xp && g->xp_e2m1) {
    /* The prefetch runs on into the thread's next tile, up to pf_end. */
    const int64_t rb = g->w->cols / 2;
    const uint8_t *next = row + nj < pf_end ? (const uint8_t *)g->w->data + (row + nj) * rb : NULL;
    e2nib_rows_(g->isa, g->xp, x, g->ldx, g->w, 0, row, nj, c, next, ws);
  } else if (g->xp) {
    qgemm_e4m3_row_(g->isa, g->xp_step, x, g->xp + grp * g->xg, g->w, 0, row, nj, pf_end, c, ws);
  } else
#endif
  {
    (void)pf_end;
    cpu_qgemm_nt_block(g->isa, x, g->ldx, mi, g->w, 0, row, nj, c, ldc, ws);
  }
  if (g->odt == VNRT_F32) return;
  const size_t osz = vnrt_dtype_size(g->odt);
  for (int64_t i = 0; i < mi; ++i) {
    char *o = (char *)g->out + (size_t)((i0 + i) * g->ldo + ocol) * osz;
    cpu_fast_from_f32(g->isa, c + i * nj, nj, o, g->odt);
  }
}

/* The pool's chunk [begin, end) of lanes: those lanes, then the others, each from its front
 * (inline, [0, lanes): all of them in order). Scratch slot begin is this chunk's alone. */
static void qgemm_lanes_(void *user, int64_t begin, int64_t end) {
  (void)end;
  const qgemm_job *g = user;
  for (int64_t l0 = 0; l0 < g->lanes; ++l0) {
    const int64_t l = (begin + l0) % g->lanes;
    const int64_t last = (l + 1) * g->per_lane < g->items ? (l + 1) * g->per_lane : g->items;
    if (l * g->per_lane >= last) continue;
    const int64_t pf_end = qgemm_item_end_row_(g, last - 1);
    for (;;) {
      const int64_t it = atomic_fetch_add_explicit(&g->lane[l].next, 1, memory_order_relaxed);
      if (it >= last) break;
      qgemm_item_(g, it, (int32_t)begin, pf_end);
    }
  }
}

static int64_t ceil_div_(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* cpu_qgemm_nt_groups' body over W rows [row0, row0 + groups·n): group g multiplies x's
 * columns from g·xg by rows [row0 + g·n, row0 + (g + 1)·n) into out's columns from g·og. */
static vnrt_status qgemm_run_(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                              const cpu_weight *w, int64_t groups, int64_t row0, int64_t n,
                              int64_t xg, void *out, vnrt_dtype odt, int64_t ldo, int64_t og) {
  if (m <= 0 || n <= 0 || groups <= 0) return VNRT_OK;
  qgemm_job g = {.isa = cpu_fast_isa(a->pool),
                 .x = x,
                 .w = w,
                 .out = out,
                 .odt = odt,
                 .ldx = ldx,
                 .ldo = ldo,
                 .m = m,
                 .n = n,
                 .row0 = row0,
                 .xg = xg,
                 .og = og};
  /* Tiles: a few x rows by 64 w rows (streamed once), or up to QM x rows by 96 w rows (four
   * panels). Only w rows are split further, until every thread has a few tiles: a tile's
   * results do not depend on where it starts, so neither do they on the thread count. */
  const int64_t threads = cpu_pool_threads(a->pool);
  const int small = m <= QV_MR;
  g.mt = small ? m : m < QM ? m : QM;
  g.nt = small ? 64 : 4 * QN;
  const int64_t min_nt = small ? 8 : QN;
  while (groups * ceil_div_(m, g.mt) * ceil_div_(n, g.nt) < 4 * threads && g.nt > min_nt) {
    g.nt = ceil_div_(g.nt / 2, min_nt) * min_nt;
  }
  if (g.nt > n) g.nt = n;
  g.n_mt = ceil_div_(m, g.mt);
  g.ipg = g.n_mt * ceil_div_(n, g.nt);
  g.items = groups * g.ipg;
  g.ws_floats = cpu_qgemm_ws_floats(g.isa, g.mt, w);
  g.slot_floats = g.ws_floats + (odt == VNRT_F32 ? 0 : g.mt * g.nt);
  int64_t xp_floats = 0;
#if defined(CPU_HAVE_AVX2_CODE)
  g.xp_step = e4m3_row_step_(g.isa, m, w);
  /* The groups' x columns permuted at once: each group's start is a multiple of the step. */
  if (g.xp_step && (groups == 1 || (xg == w->cols && ldx >= groups * xg))) {
    xp_floats = groups == 1 ? w->cols : groups * xg;
  }
  /* One x row on FP4 with 1x32 blocks: x permuted once for the nibble kernel, not per tile. */
  g.xp_e2m1 = m == 1 && groups == 1 && cpu_qgemv_e2m1p_ok(g.isa, w);
  if (g.xp_e2m1) xp_floats = w->cols;
#endif
  if (g.slot_floats > 0 || xp_floats > 0) {
    vnrt_status st = cpu_fast_alloc(a, threads * g.slot_floats + xp_floats, &g.scratch);
    if (st != VNRT_OK) return st;
  }
#if defined(CPU_HAVE_AVX2_CODE)
  if (xp_floats > 0) {
    float *xp = g.scratch + threads * g.slot_floats;
    if (g.xp_e2m1) {
      x_e2m1_perm_(x, xp_floats, xp);
    } else {
      x_e4m3_row_perm_(g.isa, g.xp_step, x, xp_floats, xp);
    }
    g.xp = xp;
  }
#endif
  const uint64_t bytes = (uint64_t)vnrt_tensor_type_bytes(
      &(vnrt_tensor_type){.dtype = w->dtype, .rank = 2, .dims = {groups * n, w->cols}});
  g.lanes = bytes * (uint64_t)m < QGEMM_INLINE_BYTES ? 1 : threads;
  g.lanes = g.lanes < g.items ? g.lanes : g.items;
  g.lanes = g.lanes < QGEMM_MAX_LANES ? g.lanes : QGEMM_MAX_LANES;
  g.per_lane = ceil_div_(g.items, g.lanes);
  qgemm_lane lane[QGEMM_MAX_LANES];
  for (int64_t l = 0; l < g.lanes; ++l) atomic_init(&lane[l].next, l * g.per_lane);
  g.lane = lane;
  if (g.lanes == 1) {
    qgemm_lanes_(&g, 0, 1);
  } else {
    cpu_pool_parallel_for(a->pool, g.lanes, 1, qgemm_lanes_, &g);
  }
  cpu_fast_free(a, g.scratch);
  return VNRT_OK;
}

vnrt_status cpu_qgemm_nt(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                         const cpu_weight *w, void *out, vnrt_dtype odt, int64_t ldo) {
  return qgemm_run_(a, x, ldx, m, w, 1, 0, w->rows, 0, out, odt, ldo, 0);
}

vnrt_status cpu_qgemm_nt_rows(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                              const cpu_weight *w, int64_t row0, int64_t n, void *out,
                              vnrt_dtype odt, int64_t ldo) {
  return qgemm_run_(a, x, ldx, m, w, 1, row0, n, 0, out, odt, ldo, 0);
}

vnrt_status cpu_qgemm_nt_groups(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                                const cpu_weight *w, int64_t groups, void *out, vnrt_dtype odt,
                                int64_t ldo) {
  const int64_t n = w->rows / groups;
  return qgemm_run_(a, x, ldx, m, w, groups, 0, n, w->cols, out, odt, ldo, n);
}
