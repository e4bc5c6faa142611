/* The AVX-512 form of the GEMM core's [N, K] block (fast_gemm.h) for more than a few x rows:
 * the prefill GEMMs of linear, and the f32 panels the quantized-weight GEMM decodes. */
#include <stdint.h>
#include <string.h>

#include "fast_gemm.h"

#if defined(CPU_HAVE_AVX2_CODE)

#define Z_INLINE \
  static inline  \
      __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* The register tile: Z_MR x rows by Z_NR w rows, each pair's partial sums along K in one ZMM
 * (24 accumulators, 4 x vectors and a w vector of the 32 registers). Both operands are read
 * in place (but for f32 w rows off cache lines, copied to the stack), so the block needs no
 * workspace: the panels path of fast_quant.c passes none. */
#define Z_MR 4
#define Z_NR 6
/* K per block: a 6-row w group of one block (24 KiB) stays in L1 (48 KiB on Ice Lake) while the
 * 4-row x panels (16 KiB each) stream past it from L2; 1024 rather than 512 halves the
 * reductions and the passes over c (measured: +5-15% at K >= 1024 on Ice Lake). */
#define Z_KC 1024
/* The row stride of a group's copy (below): a cache line more than a block, so that the rows
 * start on lines of different L1 sets. */
#define Z_WLD (Z_KC + 16)

/* The 16 elements p[i..i+16) of dtype dt (f32, f16, bf16) widened to f32; lanes outside the
 * mask read nothing and are 0. */
Z_INLINE __m512 z_load16_(const void *p, int64_t i, vnrt_dtype dt, __mmask16 mask) {
  switch (dt) {
    case VNRT_F16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)p + i));
    case VNRT_BF16:
      return _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)p + i)), 16));
    default:
      return _mm512_maskz_loadu_ps(mask, (const float *)p + i);
  }
}

/* The first level of the reductions below: [p's 128-bit lanes 0+2, 1+3 | q's 0+2, 1+3]. */
Z_INLINE __m512 z_fold_(__m512 p, __m512 q) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE));
}

/* s[q] = the sum of the 16 lanes of v[q], q < 16: a transposing tree of shuffles and adds (2
 * shuffles per sum rather than 6). The inputs enter in the order v[4·(t % 4) + t / 4], which
 * the tree's lane moves undo. */
Z_INLINE void z_reduce16_(const __m512 *v, float *s) {
  __m512 a[8], b[4], c[2];
  for (int t = 0; t < 8; ++t) {
    a[t] = z_fold_(v[4 * ((2 * t) % 4) + (2 * t) / 4], v[4 * ((2 * t + 1) % 4) + (2 * t + 1) / 4]);
  }
  for (int t = 0; t < 4; ++t) { /* one 128-bit lane (4 partial sums) per input */
    b[t] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * t], a[2 * t + 1], 0x88),
                         _mm512_shuffle_f32x4(a[2 * t], a[2 * t + 1], 0xDD));
  }
  for (int t = 0; t < 2; ++t) { /* two partial sums per input */
    c[t] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * t], b[2 * t + 1], 0x44),
                         _mm512_shuffle_ps(b[2 * t], b[2 * t + 1], 0xEE));
  }
  _mm512_storeu_ps(
      s, _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD)));
}

/* s[q] = the sum of the 16 lanes of v[q] for q < n <= 8 (v[n..8) are zero): the same tree,
 * whose last level leaves input l's two partial sums at lanes 4l, 4l+1 and input 4+l's at
 * 4l+2, 4l+3, gathered in order by one permute. */
Z_INLINE void z_reduce8_(const __m512 *v, int n, float *s) {
  const __m512 a0 = z_fold_(v[0], v[1]), a1 = z_fold_(v[2], v[3]);
  const __m512 a2 = z_fold_(v[4], v[5]), a3 = z_fold_(v[6], v[7]);
  const __m512 b0 =
      _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x88), _mm512_shuffle_f32x4(a0, a1, 0xDD));
  const __m512 b1 =
      _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x88), _mm512_shuffle_f32x4(a2, a3, 0xDD));
  const __m512 c = _mm512_add_ps(_mm512_shuffle_ps(b0, b1, 0x44), _mm512_shuffle_ps(b0, b1, 0xEE));
  const __m512 d = _mm512_add_ps(c, _mm512_shuffle_ps(c, c, 0xB1));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  _mm256_mask_storeu_ps(s, (__mmask8)((1u << n) - 1),
                        _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, d)));
}

/* s[i·Z_NR + j] = Σ_kk xr[i][kk]·wr[j][kk] over kc elements, for i < MR and j < Z_NR; pf (may
 * be NULL): the w rows the next call reads, one cache line of each fetched per 64 bytes of
 * these, so that they arrive while this tile computes. The accumulators are named variables:
 * GCC keeps an array of them in memory, up to date on every step. */
Z_INLINE void z_kern_(const int MR, const vnrt_dtype WDT, const float *const *xr,
                      const void *const *wr, const char *const *pf, int64_t kc, float *s) {
  const int64_t wsz = WDT == VNRT_F32 ? 4 : 2;
  const __m512 zero = _mm512_setzero_ps();
  __m512 c00 = zero, c01 = zero, c02 = zero, c03 = zero, c04 = zero, c05 = zero;
  __m512 c10 = zero, c11 = zero, c12 = zero, c13 = zero, c14 = zero, c15 = zero;
  __m512 c20 = zero, c21 = zero, c22 = zero, c23 = zero, c24 = zero, c25 = zero;
  __m512 c30 = zero, c31 = zero, c32 = zero, c33 = zero, c34 = zero, c35 = zero;
#define Z_COL_(j, mask)                                 \
  {                                                     \
    const __m512 wv = z_load16_(wr[j], kk, WDT, mask);  \
    c0##j = _mm512_fmadd_ps(x0, wv, c0##j);             \
    if (MR > 1) c1##j = _mm512_fmadd_ps(x1, wv, c1##j); \
    if (MR > 2) c2##j = _mm512_fmadd_ps(x2, wv, c2##j); \
    if (MR > 3) c3##j = _mm512_fmadd_ps(x3, wv, c3##j); \
  }
#define Z_STEP_(mask)                                                               \
  {                                                                                 \
    const __m512 x0 = _mm512_maskz_loadu_ps(mask, xr[0] + kk);                      \
    const __m512 x1 = MR > 1 ? _mm512_maskz_loadu_ps(mask, xr[1] + kk) : zero;      \
    const __m512 x2 = MR > 2 ? _mm512_maskz_loadu_ps(mask, xr[2] + kk) : zero;      \
    const __m512 x3 = MR > 3 ? _mm512_maskz_loadu_ps(mask, xr[3] + kk) : zero;      \
    Z_COL_(0, mask)                                                                 \
    Z_COL_(1, mask) Z_COL_(2, mask) Z_COL_(3, mask) Z_COL_(4, mask) Z_COL_(5, mask) \
  }
  int64_t kk = 0;
  for (; kk + 16 <= kc; kk += 16) {
    if (pf && ((kk * wsz) & 63) == 0) {
      for (int j = 0; j < Z_NR; ++j) _mm_prefetch(pf[j] + kk * wsz, _MM_HINT_T0);
    }
    Z_STEP_((__mmask16)0xFFFF)
  }
  if (kk < kc) Z_STEP_((__mmask16)((1u << (kc - kk)) - 1))
#undef Z_STEP_
#undef Z_COL_
  /* Reduced 16 and then 8 at a time straight into s, whose row-major [MR, Z_NR] layout is the
   * accumulators' order; a last group of fewer than 8 is padded with zero vectors. */
  const __m512 all[Z_MR * Z_NR + 8] = {c00, c01, c02, c03, c04, c05, c10, c11, c12, c13, c14, c15,
                                       c20, c21, c22, c23, c24, c25, c30, c31, c32, c33, c34, c35};
  int f = 0;
  if (MR * Z_NR >= 16) z_reduce16_(all, s), f = 16;
  for (; f < MR * Z_NR; f += 8) {
    __m512 v[8];
    for (int q = 0; q < 8; ++q) v[q] = f + q < MR * Z_NR ? all[f + q] : zero;
    z_reduce8_(v, MR * Z_NR - f < 8 ? MR * Z_NR - f : 8, s + f);
  }
}

typedef void (*z_kern_fn)(const float *const *xr, const void *const *wr, const char *const *pf,
                          int64_t kc, float *s);

#define Z_KERN_DEF_(MR, WD, WDT)                                                               \
  static __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))) void      \
      z_kern_##MR##_##WD(const float *const *xr, const void *const *wr, const char *const *pf, \
                         int64_t kc, float *s) {                                               \
    z_kern_(MR, WDT, xr, wr, pf, kc, s);                                                       \
  }
#define Z_KERN_ALL_MR_(WD, WDT) \
  Z_KERN_DEF_(1, WD, WDT) Z_KERN_DEF_(2, WD, WDT) Z_KERN_DEF_(3, WD, WDT) Z_KERN_DEF_(4, WD, WDT)
Z_KERN_ALL_MR_(f32, VNRT_F32)
Z_KERN_ALL_MR_(f16, VNRT_F16)
Z_KERN_ALL_MR_(bf16, VNRT_BF16)
#undef Z_KERN_ALL_MR_
#undef Z_KERN_DEF_

/* [w dtype: f32, f16, bf16][mr] */
static const z_kern_fn z_kerns_[3][Z_MR + 1] = {
    {NULL, z_kern_1_f32, z_kern_2_f32, z_kern_3_f32, z_kern_4_f32},
    {NULL, z_kern_1_f16, z_kern_2_f16, z_kern_3_f16, z_kern_4_f16},
    {NULL, z_kern_1_bf16, z_kern_2_bf16, z_kern_3_bf16, z_kern_4_bf16},
};

/* The block of cpu_gemm_nt_block_avx512 (w rows read in place or copied) or, with dec set, of
 * cpu_gemm_nt_block_avx512_dec (each group's rows decoded by dec into the aligned stack rows). */
static void z_block_(const float *x, int64_t ldx, int64_t m, const void *w, vnrt_dtype wdt,
                     int64_t ldw, cpu_gemm_rows_fn dec, void *user, int64_t n, int64_t k, float *c,
                     int64_t ldc, float *ss) {
  const size_t wsz = vnrt_dtype_size(wdt);
  const z_kern_fn *kerns = z_kerns_[wdt == VNRT_F16 ? 1 : wdt == VNRT_BF16 ? 2 : 0];
  float s[Z_MR * Z_NR];
  /* f32 w rows that do not start on cache lines (fast_quant.c's decoded panels are 520 floats
   * apart: every other row starts mid-line, and each of its 64-byte loads would span two
   * lines) are copied a group at a time to aligned rows on the stack, once per group against
   * the m/4 x panels that read it (5-8% faster there). */
  float wcopy[Z_NR * Z_WLD] __attribute__((aligned(64)));
  const int copy_w = !dec && wdt == VNRT_F32 && m >= 4 * Z_MR &&
                     (((uintptr_t)w | (uintptr_t)ldw * sizeof(float)) & 63) != 0;
  /* Per K block the x rows (a tile's, in L2) meet each group of Z_NR w rows in turn: the
   * group comes from memory into L1 once and serves every x panel; the first panel prefetches
   * the next group. */
  for (int64_t k0 = 0; k0 < k; k0 += Z_KC) {
    const int64_t kc = k - k0 < Z_KC ? k - k0 : Z_KC;
    for (int64_t j = 0; j < n; j += Z_NR) {
      const int nv = (int)(n - j < Z_NR ? n - j : Z_NR);
      const void *wr[Z_NR];
      const char *pf[Z_NR];
      const int64_t jn = j + Z_NR;
      if (dec) {
        /* Decoded straight into the kernel's rows (the decoder prefetches what it reads next). */
        dec(user, j, nv, k0, kc, wcopy, Z_WLD);
        for (int r = 0; r < Z_NR; ++r) wr[r] = wcopy + (r < nv ? r : nv - 1) * Z_WLD;
      }
      for (int r = 0; !dec && r < Z_NR; ++r) { /* a partial group repeats its last row */
        wr[r] = (const char *)w + (size_t)((j + (r < nv ? r : nv - 1)) * ldw + k0) * wsz;
        if (jn < n) {
          pf[r] = (const char *)w + (size_t)((jn + (jn + r < n ? r : 0)) * ldw + k0) * wsz;
        }
      }
      for (int r = 0; copy_w && r < Z_NR; ++r) {
        memcpy(wcopy + r * Z_WLD, wr[r], (size_t)kc * sizeof(float));
        wr[r] = wcopy + r * Z_WLD;
      }
      for (int64_t i0 = 0; i0 < m; i0 += Z_MR) {
        const int mr = (int)(m - i0 < Z_MR ? m - i0 : Z_MR);
        const float *xr[Z_MR];
        for (int i = 0; i < mr; ++i) xr[i] = x + (i0 + i) * ldx + k0;
        kerns[mr](xr, wr, !dec && i0 == 0 && jn < n ? pf : NULL, kc, s);
        for (int i = 0; i < mr; ++i) {
          float *crow = c + (i0 + i) * ldc + j;
          if (k0 == 0) {
            for (int jj = 0; jj < nv; ++jj) crow[jj] = s[i * Z_NR + jj];
          } else {
            for (int jj = 0; jj < nv; ++jj) crow[jj] += s[i * Z_NR + jj];
          }
          if (ss && j == 0) {
            const float part = cpu_fast_sumsq(CPU_ISA_AVX512, xr[i], kc);
            ss[i0 + i] = k0 == 0 ? part : ss[i0 + i] + part;
          }
        }
      }
    }
  }
}

void cpu_gemm_nt_block_avx512(const float *x, int64_t ldx, int64_t m, const void *w, vnrt_dtype wdt,
                              int64_t ldw, int64_t n, int64_t k, float *c, int64_t ldc, float *ss) {
  z_block_(x, ldx, m, w, wdt, ldw, NULL, NULL, n, k, c, ldc, ss);
}

void cpu_gemm_nt_block_avx512_dec(const float *x, int64_t ldx, int64_t m, cpu_gemm_rows_fn dec,
                                  void *user, int64_t n, int64_t k, float *c, int64_t ldc) {
  z_block_(x, ldx, m, NULL, VNRT_F32, 0, dec, user, n, k, c, ldc, NULL);
}

/* ---- packed outer-product path (many x rows) --------------------------------------------- */

/* The register tile: P_MR x rows by P_NR w rows (three ZMMs of 16), 24 accumulators that hold
 * c's tile itself: per k one x element per row is broadcast and meets a row of 48 packed w
 * values, so no reduction is left at the end (the dot-product tile above pays one per tile and
 * K block, a large share when K is 256 or 512). w is packed per K block to [kc][P_NR] panels
 * (transposed 16 x 16 at a time), amortised over every x row of the call. */
#define P_MR 8
#define P_NR 48
#define P_KC 512
/* w rows per packed block: P_KC·P_NB floats (576 KiB, in L2) fit CPU_GEMM_WS_FLOATS with room
 * to align them. */
#define P_NB 144

/* Transposes the 16 x 16 block r[0..16) in place (r[i] lane j -> r[j] lane i). */
Z_INLINE void p_transpose16_(__m512 *r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int h = 0; h < 16; h += 8) {
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}

/* dst[kk·P_NR + j] = row j, column kk of the [nr, kc] block that starts at w (dtype wdt,
 * rows ldw elements apart) for j < 16 (rows from nr on are 0; nr may be <= 0) and kk < kc:
 * 16 rows of one packed panel, whose rows are P_NR floats apart. */
static __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))) void p_pack16_(
    const void *w, vnrt_dtype wdt, int64_t ldw, int64_t nr, int64_t kc, float *dst) {
  const size_t wsz = vnrt_dtype_size(wdt);
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int kn = (int)(kc - k0 < 16 ? kc - k0 : 16);
    const __mmask16 mask = (__mmask16)((1u << kn) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; ++i) {
      r[i] = i < nr ? z_load16_((const char *)w + (size_t)(i * ldw) * wsz, k0, wdt, mask)
                    : _mm512_setzero_ps();
    }
    p_transpose16_(r);
    for (int t = 0; t < kn; ++t) _mm512_store_ps(dst + (k0 + t) * P_NR, r[t]);
  }
}

/* c[i·ldc + j] (+)= Σ_kk x[i·ldx + kk]·pk[kk·P_NR + j] for i < MR, j < nc (<= P_NR): c is set
 * when first, else added to. */
Z_INLINE void p_kern_(const int MR, const float *x, int64_t ldx, const float *pk, int64_t kc,
                      float *c, int64_t ldc, int nc, int first) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 c00 = zero, c01 = zero, c02 = zero, c10 = zero, c11 = zero, c12 = zero;
  __m512 c20 = zero, c21 = zero, c22 = zero, c30 = zero, c31 = zero, c32 = zero;
  __m512 c40 = zero, c41 = zero, c42 = zero, c50 = zero, c51 = zero, c52 = zero;
  __m512 c60 = zero, c61 = zero, c62 = zero, c70 = zero, c71 = zero, c72 = zero;
  const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
  const float *x4 = x + 4 * ldx, *x5 = x + 5 * ldx, *x6 = x + 6 * ldx, *x7 = x + 7 * ldx;
#define P_ROW_(i)                               \
  if (MR > i) {                                 \
    const __m512 xv = _mm512_set1_ps(x##i[kk]); \
    c##i##0 = _mm512_fmadd_ps(xv, b0, c##i##0); \
    c##i##1 = _mm512_fmadd_ps(xv, b1, c##i##1); \
    c##i##2 = _mm512_fmadd_ps(xv, b2, c##i##2); \
  }
  for (int64_t kk = 0; kk < kc; ++kk) {
    const float *b = pk + kk * P_NR;
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32);
    P_ROW_(0) P_ROW_(1) P_ROW_(2) P_ROW_(3) P_ROW_(4) P_ROW_(5) P_ROW_(6) P_ROW_(7)
  }
#undef P_ROW_
  const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xFFFF : (1u << nc) - 1);
  const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
  const __mmask16 m2 = (__mmask16)(nc >= 48 ? 0xFFFF : nc <= 32 ? 0 : (1u << (nc - 32)) - 1);
#define P_OUT_(i)                                                                           \
  if (MR > i) {                                                                             \
    float *cr = c + i * ldc;                                                                \
    if (first) {                                                                            \
      _mm512_mask_storeu_ps(cr, m0, c##i##0);                                               \
      _mm512_mask_storeu_ps(cr + 16, m1, c##i##1);                                          \
      _mm512_mask_storeu_ps(cr + 32, m2, c##i##2);                                          \
    } else {                                                                                \
      _mm512_mask_storeu_ps(cr, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), c##i##0)); \
      _mm512_mask_storeu_ps(cr + 16, m1,                                                    \
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), c##i##1));    \
      _mm512_mask_storeu_ps(cr + 32, m2,                                                    \
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m2, cr + 32), c##i##2));    \
    }                                                                                       \
  }
  P_OUT_(0) P_OUT_(1) P_OUT_(2) P_OUT_(3) P_OUT_(4) P_OUT_(5) P_OUT_(6) P_OUT_(7)
#undef P_OUT_
}

typedef void (*p_kern_fn)(const float *x, int64_t ldx, const float *pk, int64_t kc, float *c,
                          int64_t ldc, int nc, int first);

#define P_KERN_DEF_(MR)                                                                            \
  static __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))) void          \
      p_kern_##MR(const float *x, int64_t ldx, const float *pk, int64_t kc, float *c, int64_t ldc, \
                  int nc, int first) {                                                             \
    p_kern_(MR, x, ldx, pk, kc, c, ldc, nc, first);                                                \
  }
P_KERN_DEF_(1)
P_KERN_DEF_(2)
P_KERN_DEF_(3)
P_KERN_DEF_(4)
P_KERN_DEF_(5)
P_KERN_DEF_(6)
P_KERN_DEF_(7)
P_KERN_DEF_(8)
#undef P_KERN_DEF_

static const p_kern_fn p_kerns_[P_MR + 1] = {NULL,     p_kern_1, p_kern_2, p_kern_3, p_kern_4,
                                             p_kern_5, p_kern_6, p_kern_7, p_kern_8};

/* The row stride of the decoded rows p_block_ packs (floats): a cache line more than a block. */
#define P_TLD (P_KC + 16)

/* cpu_gemm_nt_block_avx512_packed, or with dec set its decoded form: per K block and P_NB
 * rows, the rows (read in place, or decoded 16 at a time to tmp) are packed to pk, then every
 * 8-row x tile meets every 48-row panel. */
static void p_block_(const float *x, int64_t ldx, int64_t m, const void *w, vnrt_dtype wdt,
                     int64_t ldw, cpu_gemm_rows_fn dec, void *user, int64_t n, int64_t k, float *c,
                     int64_t ldc, float *pk, float *tmp) {
  const size_t wsz = vnrt_dtype_size(wdt);
  for (int64_t k0 = 0; k0 < k; k0 += P_KC) {
    const int64_t kc = k - k0 < P_KC ? k - k0 : P_KC;
    for (int64_t j0 = 0; j0 < n; j0 += P_NB) {
      const int64_t nb = n - j0 < P_NB ? n - j0 : P_NB;
      const int64_t np = (nb + P_NR - 1) / P_NR * P_NR;
      for (int64_t g = 0; g < np; g += 16) {
        float *dst = pk + (g / P_NR) * kc * P_NR + g % P_NR;
        const int64_t nr = nb - g < 16 ? nb - g : 16;
        if (dec && nr > 0) {
          dec(user, j0 + g, nr, k0, kc, tmp, P_TLD);
          p_pack16_(tmp, VNRT_F32, P_TLD, nr, kc, dst);
        } else {
          p_pack16_((const char *)w + (size_t)((j0 + g) * ldw + k0) * wsz, wdt, ldw, nr, kc, dst);
        }
      }
      /* The next block's rows (in place) are prefetched a few lines per x tile, so that they
       * arrive while this block computes rather than stalling its packing. */
      int64_t nk0 = k0, nj0 = j0 + P_NB;
      if (nj0 >= n) nk0 += P_KC, nj0 = 0;
      const int64_t nkc = k - nk0 < P_KC ? k - nk0 : P_KC;
      const int64_t nnb = n - nj0 < P_NB ? n - nj0 : P_NB;
      const int64_t row_lines = (nkc * (int64_t)wsz + 63) / 64;
      const int64_t lines = dec || nk0 >= k ? 0 : nnb * row_lines;
      const int64_t tiles = (m + P_MR - 1) / P_MR;
      const int64_t per_tile = (lines + tiles - 1) / (tiles > 0 ? tiles : 1);
      int64_t line = 0;
      for (int64_t i0 = 0; i0 < m; i0 += P_MR) {
        const int mr = (int)(m - i0 < P_MR ? m - i0 : P_MR);
        for (int64_t q = 0; q < per_tile && line < lines; ++q, ++line) {
          const int64_t r = line / row_lines, l = line % row_lines;
          _mm_prefetch((const char *)w + (size_t)((nj0 + r) * ldw + nk0) * wsz + l * 64,
                       _MM_HINT_T1);
        }
        for (int64_t jp = 0; jp < nb; jp += P_NR) {
          const int nc = (int)(nb - jp < P_NR ? nb - jp : P_NR);
          p_kerns_[mr](x + i0 * ldx + k0, ldx, pk + jp * kc, kc, c + i0 * ldc + j0 + jp, ldc, nc,
                       k0 == 0);
        }
      }
    }
  }
}

/* The packed path's scratch: pk, aligned to a cache line, then tmp (decoded rows). */
#define P_WS_FLOATS (16 + P_KC * P_NB + 16 * P_TLD)
_Static_assert(P_WS_FLOATS <= CPU_GEMM_WS_FLOATS, "the packed block fits the GEMM workspace");

int cpu_gemm_nt_block_avx512_packed(const float *x, int64_t ldx, int64_t m, const void *w,
                                    vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c,
                                    int64_t ldc, float *ws, int64_t ws_floats) {
  if (!ws || ws_floats < CPU_GEMM_WS_FLOATS || m < 1 || n < 1 || k < 1) return 0;
  float *pk = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  p_block_(x, ldx, m, w, wdt, ldw, NULL, NULL, n, k, c, ldc, pk, NULL);
  return 1;
}

int cpu_gemm_nt_block_avx512_packed_dec(const float *x, int64_t ldx, int64_t m,
                                        cpu_gemm_rows_fn dec, void *user, int64_t n, int64_t k,
                                        float *c, int64_t ldc, float *ws, int64_t ws_floats) {
  if (!ws || ws_floats < CPU_GEMM_WS_FLOATS || m < 1 || n < 1 || k < 1) return 0;
  float *pk = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  p_block_(x, ldx, m, NULL, VNRT_F32, 0, dec, user, n, k, c, ldc, pk, pk + P_KC * P_NB);
  return 1;
}

#endif /* CPU_HAVE_AVX2_CODE */
