/* The GEMM core of the CPU fast kernels (fast_gemm.h): blocked c = x·wᵀ, AVX2/FMA
 * micro-kernels chosen at run time (AVX-512 ones in fast_gemm_avx512.c), a portable fallback,
 * and a tiled, threaded driver. */
#include "fast_gemm.h"

#include <string.h>

/* The longest K a single-row GEMV takes in one block (16 KiB of x). */
#define CPU_GEMV_KMAX 4096
/* How far ahead (bytes of w) a GEMV of short rows prefetches; see gemm_nt_block_. */
#define GEMV_PF_BYTES 4096
/* x rows per micro-kernel call. */
#define GEMM_MR 4
/* w rows per micro-kernel call for mr x rows: the AVX2 kernels hold mr·nr accumulators and
 * nr w vectors in the 16 YMM registers, and a single x row (GEMV) streams 8 w rows at once
 * so that enough independent FMA chains hide the latency. 24 is a multiple of each. */
#define GEMM_NR_FOR(mr) ((mr) == 1 ? 8 : (mr) == 2 ? 6 : (mr) == 3 ? 4 : 3) /* mr·nr % 4 == 0 */
#define GEMM_NR_MAX 8
/* The AVX2 [N, K] path's tiles: x rows (their K block stays in L2) by w rows (streamed). */
#define GEMM_MT_MAX 128
#define GEMM_NT_AVX2 384
/* The [K, N] layout's micro-tile: 6 x rows by 16 columns (12 accumulators, 2 b vectors). */
#define GEMM_NN_MR 6
#define GEMM_NN_NR 16

/* ---- portable micro-kernel --------------------------------------------------------------- */

/* s[i·nr + j] = Σ_kk xr[i][kk]·wr[j][kk] over kc elements, eight partial sums per pair so
 * that the compiler can vectorise it for the baseline ISA. */
static void kern_generic(int mr, int nr, const float *const *xr, const float *const *wr, int64_t kc,
                         float *s) {
  for (int i = 0; i < mr; ++i) {
    for (int j = 0; j < nr; ++j) {
      const float *xp = xr[i], *wp = wr[j];
      float lane[8] = {0};
      int64_t kk = 0;
      for (; kk + 8 <= kc; kk += 8) {
        for (int l = 0; l < 8; ++l) lane[l] += xp[kk + l] * wp[kk + l];
      }
      float acc =
          ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
      for (; kk < kc; ++kk) acc += xp[kk] * wp[kk];
      s[i * nr + j] = acc;
    }
  }
}

/* The portable form of avx2_nn_kern, for mr rows. */
static void kern_nn_generic(int mr, const float *x, int64_t ldx, const float *bp, int64_t ldb,
                            int64_t kc, float *s) {
  for (int i = 0; i < mr; ++i) {
    float acc[GEMM_NN_NR] = {0};
    for (int64_t kk = 0; kk < kc; ++kk) {
      const float xv = x[i * ldx + kk];
      const float *brow = bp + kk * ldb;
      for (int j = 0; j < GEMM_NN_NR; ++j) acc[j] += xv * brow[j];
    }
    memcpy(s + i * GEMM_NN_NR, acc, sizeof acc);
  }
}

/* ---- AVX2 micro-kernels ------------------------------------------------------------------ */
#if defined(CPU_HAVE_AVX2_CODE)

CPU_AVX2_INLINE float avx2_load1(const void *p, int64_t i, vnrt_dtype dt) {
  switch (dt) {
    case VNRT_F16:
      return _cvtsh_ss(((const uint16_t *)p)[i]);
    case VNRT_BF16: {
      uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16;
      float f;
      memcpy(&f, &bits, sizeof f);
      return f;
    }
    default:
      return ((const float *)p)[i];
  }
}

/* The AVX2 form of kern_generic with compile-time MR×NR and w dtype (inlined into one function
 * per combination, so the accumulators live in registers). w rows are widened in registers. */
CPU_AVX2_INLINE void avx2_kern(const int MR, const int NR, const vnrt_dtype WDT,
                               const float *const *xr, const void *const *wr, const char *const *pf,
                               int64_t kc, float *s) {
  const int64_t wsz = WDT == VNRT_F32 ? 4 : 2;
  __m256 acc[GEMM_MR][GEMM_NR_MAX];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  int64_t kk = 0;
  for (; kk + 8 <= kc; kk += 8) {
    /* pf: the w rows the next call will read, one cache line of each per 64 bytes of this
     * call's rows, so that they arrive from memory while this tile computes. */
    if (pf && ((kk * wsz) & 63) == 0) {
      for (int j = 0; j < NR; ++j) _mm_prefetch(pf[j] + kk * wsz, _MM_HINT_T0);
    }
    if (MR == 1) {
      const __m256 xv = _mm256_loadu_ps(xr[0] + kk);
      for (int j = 0; j < NR; ++j) {
        acc[0][j] = _mm256_fmadd_ps(xv, avx2_load8(wr[j], kk, WDT), acc[0][j]);
      }
    } else if (NR <= MR) { /* hold the NR w vectors, stream the x rows */
      __m256 wv[GEMM_NR_MAX];
      for (int j = 0; j < NR; ++j) wv[j] = avx2_load8(wr[j], kk, WDT);
      for (int i = 0; i < MR; ++i) {
        const __m256 xv = _mm256_loadu_ps(xr[i] + kk);
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
      }
    } else { /* hold the MR x vectors, stream the w rows: MR·NR + MR + 1 registers */
      __m256 xv[GEMM_MR];
      for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(xr[i] + kk);
      for (int j = 0; j < NR; ++j) {
        const __m256 wv = avx2_load8(wr[j], kk, WDT);
        for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
      }
    }
  }
  /* Four accumulators reduce together (three hadds and one add) straight into s, whose
   * row-major [MR, NR] layout is the accumulators' order; MR·NR is a multiple of 4. */
  for (int f = 0; f < MR * NR; f += 4) {
    const __m256 t0 = _mm256_hadd_ps(acc[f / NR][f % NR], acc[(f + 1) / NR][(f + 1) % NR]);
    const __m256 t1 =
        _mm256_hadd_ps(acc[(f + 2) / NR][(f + 2) % NR], acc[(f + 3) / NR][(f + 3) % NR]);
    const __m256 t2 = _mm256_hadd_ps(t0, t1);
    _mm_storeu_ps(s + f, _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1)));
  }
  for (; kk < kc; ++kk) {
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) s[i * NR + j] += xr[i][kk] * avx2_load1(wr[j], kk, WDT);
    }
  }
}

typedef void (*avx2_kern_fn)(const float *const *xr, const void *const *wr, const char *const *pf,
                             int64_t kc, float *s);

#define AVX2_KERN_DEF_(MR, WD, WDT)                                                         \
  static CPU_AVX2 void avx2_kern_##MR##_##WD(const float *const *xr, const void *const *wr, \
                                             const char *const *pf, int64_t kc, float *s) { \
    avx2_kern(MR, GEMM_NR_FOR(MR), WDT, xr, wr, pf, kc, s);                                 \
  }
#define AVX2_KERN_ALL_MR_(WD, WDT) \
  AVX2_KERN_DEF_(1, WD, WDT)       \
  AVX2_KERN_DEF_(2, WD, WDT) AVX2_KERN_DEF_(3, WD, WDT) AVX2_KERN_DEF_(4, WD, WDT)
AVX2_KERN_ALL_MR_(f32, VNRT_F32)
AVX2_KERN_ALL_MR_(f16, VNRT_F16)
AVX2_KERN_ALL_MR_(bf16, VNRT_BF16)
#undef AVX2_KERN_ALL_MR_
#undef AVX2_KERN_DEF_

/* [w dtype: f32, f16, bf16][mr] */
static const avx2_kern_fn avx2_kerns_[3][GEMM_MR + 1] = {
    {NULL, avx2_kern_1_f32, avx2_kern_2_f32, avx2_kern_3_f32, avx2_kern_4_f32},
    {NULL, avx2_kern_1_f16, avx2_kern_2_f16, avx2_kern_3_f16, avx2_kern_4_f16},
    {NULL, avx2_kern_1_bf16, avx2_kern_2_bf16, avx2_kern_3_bf16, avx2_kern_4_bf16},
};

static CPU_AVX2 void avx2_to_f32(const void *src, vnrt_dtype dt, int64_t n, float *dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, avx2_load8(src, i, dt));
  for (; i < n; ++i) dst[i] = avx2_load1(src, i, dt);
}

static CPU_AVX2 int64_t avx2_from_f32(const float *src, int64_t n, void *dst, vnrt_dtype dt) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) avx2_store8(dst, i, dt, _mm256_loadu_ps(src + i));
  return i;
}

/* ---- the [K, N] (matmul) layout: broadcast x, 16 columns of b per step ---- */

/* s[i·16 + j] = Σ_kk x[i·ldx + kk]·bp[kk·ldb + j] for i < MR, j < 16 (16 valid columns).
 * The accumulators are named variables, not an array: GCC keeps an array's copy in memory
 * up to date inside the loop, which makes the kernel store-bound. */
CPU_AVX2_INLINE void avx2_nn_kern(const int MR, const float *x, int64_t ldx, const float *bp,
                                  int64_t ldb, int64_t kc, float *s) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const __m256 b0 = _mm256_loadu_ps(bp + kk * ldb), b1 = _mm256_loadu_ps(bp + kk * ldb + 8);
#define NN_ROW_(i)                                           \
  if (MR > i) {                                              \
    const __m256 xv = _mm256_broadcast_ss(x + i * ldx + kk); \
    c##i##0 = _mm256_fmadd_ps(xv, b0, c##i##0);              \
    c##i##1 = _mm256_fmadd_ps(xv, b1, c##i##1);              \
  }
    NN_ROW_(0) NN_ROW_(1) NN_ROW_(2) NN_ROW_(3) NN_ROW_(4) NN_ROW_(5)
#undef NN_ROW_
  }
#define NN_OUT_(i)                             \
  if (MR > i) {                                \
    _mm256_storeu_ps(s + i * 16, c##i##0);     \
    _mm256_storeu_ps(s + i * 16 + 8, c##i##1); \
  }
  NN_OUT_(0) NN_OUT_(1) NN_OUT_(2) NN_OUT_(3) NN_OUT_(4) NN_OUT_(5)
#undef NN_OUT_
}

typedef void (*avx2_nn_kern_fn)(const float *x, int64_t ldx, const float *bp, int64_t ldb,
                                int64_t kc, float *s);
#define AVX2_NN_KERN_DEF_(MR)                                                          \
  static CPU_AVX2 void avx2_nn_kern_##MR(const float *x, int64_t ldx, const float *bp, \
                                         int64_t ldb, int64_t kc, float *s) {          \
    avx2_nn_kern(MR, x, ldx, bp, ldb, kc, s);                                          \
  }
AVX2_NN_KERN_DEF_(1)
AVX2_NN_KERN_DEF_(2)
AVX2_NN_KERN_DEF_(3)
AVX2_NN_KERN_DEF_(4)
AVX2_NN_KERN_DEF_(5)
AVX2_NN_KERN_DEF_(6)
#undef AVX2_NN_KERN_DEF_
static const avx2_nn_kern_fn avx2_nn_kerns_[GEMM_NN_MR + 1] = {
    NULL,           avx2_nn_kern_1, avx2_nn_kern_2, avx2_nn_kern_3,
    avx2_nn_kern_4, avx2_nn_kern_5, avx2_nn_kern_6};
#endif /* CPU_HAVE_AVX2_CODE */

/* f16 bits to f32, exactly (an inline form of vnrt_f16_to_f32 for the portable path). */
static inline float f16_to_f32_(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (e == 0) {
    const float sub = (float)mant * 0x1p-24f; /* zero or subnormal: exact in f32 */
    return sign ? -sub : sub;
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (mant << 13); /* Inf, NaN */
  } else {
    bits = sign | ((e + 112) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

void cpu_fast_to_f32(cpu_isa isa, const void *src, vnrt_dtype dt, int64_t n, float *dst) {
  if (dt == VNRT_F32) {
    memcpy(dst, src, (size_t)n * sizeof(float));
    return;
  }
#if defined(CPU_HAVE_AVX2_CODE)
  if (isa >= CPU_ISA_AVX2) {
    avx2_to_f32(src, dt, n, dst);
    return;
  }
#endif
  (void)isa;
  const uint16_t *h = src;
  if (dt == VNRT_BF16) {
    for (int64_t i = 0; i < n; ++i) {
      uint32_t bits = (uint32_t)h[i] << 16;
      memcpy(&dst[i], &bits, sizeof bits);
    }
  } else if (dt == VNRT_F16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32_(h[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = cpu_load_f32(src, dt, i);
  }
}

void cpu_fast_from_f32(cpu_isa isa, const float *src, int64_t n, void *dst, vnrt_dtype dt) {
  if (dt == VNRT_F32) {
    if ((const void *)src != dst) memmove(dst, src, (size_t)n * sizeof(float));
    return;
  }
  int64_t i = 0;
#if defined(CPU_HAVE_AVX2_CODE)
  if (isa >= CPU_ISA_AVX2 && (dt == VNRT_F16 || dt == VNRT_BF16))
    i = avx2_from_f32(src, n, dst, dt);
#endif
  (void)isa;
  for (; i < n; ++i) cpu_store_f32(dst, dt, i, src[i]);
}

/* ---- one block, single-threaded ---------------------------------------------------------- */

/* Operand rows a power-of-two apart (K = 2048 floats is 8 KiB) fall into the same few cache
 * sets, so a block read in place keeps evicting itself from L1/L2. Blocks reused across many
 * micro-kernel calls are therefore copied (and widened) into contiguous scratch first: the
 * copy is one pass, the reuse is tens of passes. */

/* dst[r·ld + kk] = src row r (row stride lds elements of dtype dt) element kk, for rows
 * r < rows and kk < kc. */
static void pack_rows_(cpu_isa isa, const void *src, vnrt_dtype dt, int64_t lds, int64_t rows,
                       int64_t kc, float *dst, int64_t ld) {
  const size_t sz = vnrt_dtype_size(dt);
  for (int64_t r = 0; r < rows; ++r) {
    cpu_fast_to_f32(isa, (const char *)src + (size_t)(r * lds) * sz, dt, kc, dst + r * ld);
  }
}

static int isa_avx2_(cpu_isa isa) {
#if defined(CPU_HAVE_AVX2_CODE)
  return isa >= CPU_ISA_AVX2;
#else
  (void)isa;
  return 0;
#endif
}

/* Adds (or, for the first K block, stores) a micro-tile's results s[i·lds + j] into c. */
static void tile_out_(float *c, int64_t ldc, const float *s, int64_t lds, int mr, int nv,
                      int first) {
  for (int i = 0; i < mr; ++i) {
    float *crow = c + i * ldc;
    if (first) {
      for (int j = 0; j < nv; ++j) crow[j] = s[i * lds + j];
    } else {
      for (int j = 0; j < nv; ++j) crow[j] += s[i * lds + j];
    }
  }
}

/* One x·wᵀ micro-tile: mr x rows (xr) by up to nr w rows starting at wb (ldb apart, dtype
 * bdt, nv of them valid; a partial group repeats its last row and drops those results).
 * next (may be NULL): the first of the next_rows w rows the next call reads, to prefetch. */
static void nt_tile_(int avx2, int mr, const float *const *xr, const char *wb, int64_t ldb,
                     vnrt_dtype bdt, int nv, int64_t kc, const char *next, int64_t next_rows,
                     float *s) {
  const int nr = GEMM_NR_FOR(mr);
  const size_t bsz = vnrt_dtype_size(bdt);
  const void *wr[GEMM_NR_MAX];
  for (int j = 0; j < nr; ++j) wr[j] = wb + (size_t)((j < nv ? j : nv - 1) * ldb) * bsz;
#if defined(CPU_HAVE_AVX2_CODE)
  if (avx2) {
    const char *pf[GEMM_NR_MAX];
    for (int j = 0; next && j < nr; ++j) {
      pf[j] = next + (size_t)((j < next_rows ? j : next_rows - 1) * ldb) * bsz;
    }
    avx2_kerns_[bdt == VNRT_F16    ? 1
                : bdt == VNRT_BF16 ? 2
                                   : 0][mr](xr, wr, next ? pf : NULL, kc, s);
    return;
  }
#endif
  (void)avx2, (void)next, (void)next_rows;
  kern_generic(mr, nr, xr, (const float *const *)wr, kc, s);
}

/* ---- sums of squares ------------------------------------------------------------------- */

#if defined(CPU_HAVE_AVX2_CODE)
static CPU_AVX2 float avx2_sumsq_(const float *f, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_loadu_ps(f + i), v1 = _mm256_loadu_ps(f + i + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  float sum = avx2_hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) sum += f[i] * f[i];
  return sum;
}
#endif

float cpu_fast_sumsq(cpu_isa isa, const float *f, int64_t n) {
#if defined(CPU_HAVE_AVX2_CODE)
  if (isa >= CPU_ISA_AVX2) return avx2_sumsq_(f, n);
#endif
  (void)isa;
  float lane[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lane[l] += f[i + l] * f[i + l];
  }
  float sum =
      ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
  for (; i < n; ++i) sum += f[i] * f[i];
  return sum;
}

#if defined(CPU_HAVE_AVX2_CODE)
static CPU_AVX2 void avx2_axpy_(float a, const float *x, float *y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * x[i];
}
#endif

void cpu_fast_axpy(cpu_isa isa, float a, const float *x, float *y, int64_t n) {
#if defined(CPU_HAVE_AVX2_CODE)
  if (isa >= CPU_ISA_AVX2) {
    avx2_axpy_(a, x, y, n);
    return;
  }
#endif
  (void)isa;
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

/* ss[i] (+)= Σ xr[i][0..kc)² for i < mr: a K block's share of the rows' sums of squares, taken
 * while the rows are in L1 for the GEMM. */
static void panel_sumsq_(cpu_isa isa, const float *const *xr, int mr, int64_t kc, float *ss,
                         int first) {
  for (int i = 0; i < mr; ++i) {
    const float part = cpu_fast_sumsq(isa, xr[i], kc);
    ss[i] = first ? part : ss[i] + part;
  }
}

/* cpu_gemm_nt_block; ss (may be NULL) receives each x row's sum of squares. */
static void gemm_nt_block_(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *w,
                           vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c, int64_t ldc,
                           float *ws, float *ss) {
  if (m <= 0) return;
  if (ss) memset(ss, 0, (size_t)m * sizeof(float));
  if (n <= 0) {
    for (int64_t i = 0; ss && i < m; ++i) ss[i] = cpu_fast_sumsq(isa, x + i * ldx, k);
    return;
  }
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
  const int avx2 = isa_avx2_(isa);
  const size_t wsz = vnrt_dtype_size(wdt);
  float s[GEMM_MR * GEMM_NR_MAX];
  const float *xr[GEMM_MR];

  /* A GEMV (a few x rows; AVX2, or f32 w): per K block the x rows stay in L1 and w streams
   * past them exactly once, f16/bf16 widened in registers. */
  if (m <= GEMM_MR && (avx2 || wdt == VNRT_F32)) {
    const int mr = (int)m, nr = GEMM_NR_FOR(mr);
    /* One x row of up to CPU_GEMV_KMAX floats stays in L1 whole: w's rows then stream end to
     * end (longer runs for the prefetchers, one reduction per row instead of one per block). */
    const int64_t kb = mr == 1 && k <= CPU_GEMV_KMAX ? k : CPU_GEMM_KC;
    for (int i = 0; i < mr; ++i) xr[i] = x + i * ldx;
    for (int64_t k0 = 0; k0 < k; k0 += kb) {
      const int64_t kc = k - k0 < kb ? k - k0 : kb;
      const float *xk[GEMM_MR];
      for (int i = 0; i < mr; ++i) xk[i] = xr[i] + k0;
      if (ss) panel_sumsq_(isa, xk, mr, kc, ss, k0 == 0);
      /* Prefetch distance in tiles: short rows (a MoE down projection's F = 48 is 96 bytes)
       * make one tile a few hundred bytes, too little lead to hide memory latency, so such
       * tiles prefetch the one GEMV_PF_BYTES ahead. */
      int64_t pd = (int64_t)GEMV_PF_BYTES / (nr * kc * (int64_t)wsz);
      if (pd < 1) pd = 1;
      if (pd > 16) pd = 16;
      for (int64_t j = 0; j < n; j += nr) {
        const int nv = (int)(n - j < nr ? n - j : nr);
        const int64_t jn = j + pd * nr;
        const char *next = jn < n ? (const char *)w + (size_t)(jn * ldw + k0) * wsz : NULL;
        nt_tile_(avx2, mr, xk, (const char *)w + (size_t)(j * ldw + k0) * wsz, ldw, wdt, nv, kc,
                 next, n - jn, s);
        tile_out_(c + j, ldc, s, nr, mr, nv, k0 == 0);
      }
    }
    return;
  }
#if defined(CPU_HAVE_AVX2_CODE)
  /* AVX-512 with more x rows: the same loop order with ZMM register tiles of 4 x 6 rows. */
  if (isa >= CPU_ISA_AVX512) {
    cpu_gemm_nt_block_avx512(x, ldx, m, w, wdt, ldw, n, k, c, ldc, ss);
    return;
  }
#endif
  /* AVX2 with more x rows: per K block the x rows (a tile's <= 128 rows: L2) meet each group
   * of 3 w rows in turn; the group is read in place once, from memory into L1, and serves
   * every 4-row x panel before the next group streams in. */
  if (avx2) {
    for (int64_t k0 = 0; k0 < k; k0 += CPU_GEMM_KC) {
      const int64_t kc = k - k0 < CPU_GEMM_KC ? k - k0 : CPU_GEMM_KC;
      for (int64_t j = 0; j < n; j += GEMM_NR_FOR(GEMM_MR)) {
        const int nv = (int)(n - j < GEMM_NR_FOR(GEMM_MR) ? n - j : GEMM_NR_FOR(GEMM_MR));
        const char *wj = (const char *)w + (size_t)(j * ldw + k0) * wsz;
        for (int64_t i0 = 0; i0 < m; i0 += GEMM_MR) {
          const int mr = (int)(m - i0 < GEMM_MR ? m - i0 : GEMM_MR);
          for (int i = 0; i < mr; ++i) xr[i] = x + (i0 + i) * ldx + k0;
          /* The first x panel prefetches the next group of w rows. */
          const int64_t jn = j + GEMM_NR_FOR(GEMM_MR);
          const char *next =
              i0 == 0 && jn < n ? (const char *)w + (size_t)(jn * ldw + k0) * wsz : NULL;
          nt_tile_(avx2, mr, xr, wj, ldw, wdt, nv, kc, next, n - jn, s);
          tile_out_(c + i0 * ldc + j, ldc, s, GEMM_NR_FOR(mr), mr, nv, k0 == 0);
          if (ss && j == 0) panel_sumsq_(isa, xr, mr, kc, ss + i0, k0 == 0);
        }
      }
    }
    return;
  }

  /* The portable path: per K block, a block of x rows and a block of w rows are packed
   * (widened) to contiguous f32, then every 4-row x panel meets every w row of the block. An
   * f32 w whose rows do not alias in the caches (not a multiple of 1 KiB apart) is read in
   * place instead. */
  const int pack_w = wdt != VNRT_F32 || ((size_t)ldw * sizeof(float)) % 1024 == 0;
  float *xp = ws, *wp = ws + CPU_GEMM_MB * CPU_GEMM_KC;
  for (int64_t j0 = 0; j0 < n; j0 += CPU_GEMM_NB) {
    const int64_t nb = n - j0 < CPU_GEMM_NB ? n - j0 : CPU_GEMM_NB;
    for (int64_t k0 = 0; k0 < k; k0 += CPU_GEMM_KC) {
      const int64_t kc = k - k0 < CPU_GEMM_KC ? k - k0 : CPU_GEMM_KC;
      const float *wb = (const float *)w + j0 * ldw + k0;
      int64_t ldb = ldw;
      if (pack_w) {
        pack_rows_(isa, (const char *)w + (size_t)(j0 * ldw + k0) * wsz, wdt, ldw, nb, kc, wp, kc);
        wb = wp;
        ldb = kc;
      }
      for (int64_t m0 = 0; m0 < m; m0 += CPU_GEMM_MB) {
        const int64_t mb = m - m0 < CPU_GEMM_MB ? m - m0 : CPU_GEMM_MB;
        pack_rows_(isa, x + m0 * ldx + k0, VNRT_F32, ldx, mb, kc, xp, kc);
        for (int64_t i0 = 0; i0 < mb; i0 += GEMM_MR) {
          const int mr = (int)(mb - i0 < GEMM_MR ? mb - i0 : GEMM_MR);
          const int nr = GEMM_NR_FOR(mr);
          for (int i = 0; i < mr; ++i) xr[i] = xp + (i0 + i) * kc;
          if (ss && j0 == 0) panel_sumsq_(isa, xr, mr, kc, ss + m0 + i0, k0 == 0);
          for (int64_t jj = 0; jj < nb; jj += nr) {
            const int nv = (int)(nb - jj < nr ? nb - jj : nr);
            nt_tile_(avx2, mr, xr, (const char *)(wb + jj * ldb), ldb, VNRT_F32, nv, kc, NULL, 0,
                     s);
            tile_out_(c + (m0 + i0) * ldc + j0 + jj, ldc, s, nr, mr, nv, k0 == 0);
          }
        }
      }
    }
  }
}

void cpu_gemm_nt_block(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *w,
                       vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c, int64_t ldc,
                       float *ws) {
  gemm_nt_block_(isa, x, ldx, m, w, wdt, ldw, n, k, c, ldc, ws, NULL);
}

void cpu_gemm_nt_block_sumsq(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *w,
                             vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c,
                             int64_t ldc, float *ws, float *x_sumsq) {
  gemm_nt_block_(isa, x, ldx, m, w, wdt, ldw, n, k, c, ldc, ws, x_sumsq);
}

void cpu_gemm_nn_block(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *b,
                       vnrt_dtype bdt, int64_t ldb, int64_t n, int64_t k, float *c, int64_t ldc,
                       float *ws) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
  const int avx2 = isa_avx2_(isa);
  const size_t bsz = vnrt_dtype_size(bdt);
  float s[GEMM_NN_MR * GEMM_NN_NR];
  float *xp = ws, *bp = ws + CPU_GEMM_MB * CPU_GEMM_KC;
  for (int64_t m0 = 0; m0 < m; m0 += CPU_GEMM_MB) {
    const int64_t mb = m - m0 < CPU_GEMM_MB ? m - m0 : CPU_GEMM_MB;
    for (int64_t k0 = 0; k0 < k; k0 += CPU_GEMM_KC) {
      const int64_t kc = k - k0 < CPU_GEMM_KC ? k - k0 : CPU_GEMM_KC;
      pack_rows_(isa, x + m0 * ldx + k0, VNRT_F32, ldx, mb, kc, xp, kc);
      for (int64_t j0 = 0; j0 < n; j0 += GEMM_NN_NR) {
        const int nv = (int)(n - j0 < GEMM_NN_NR ? n - j0 : GEMM_NN_NR);
        /* The [kc, 16] panel of b, widened and zero-padded to 16 columns: L1-resident while
         * every 6-row x panel passes over it. */
        for (int64_t kk = 0; kk < kc; ++kk) {
          const char *row = (const char *)b + (size_t)((k0 + kk) * ldb + j0) * bsz;
          cpu_fast_to_f32(isa, row, bdt, nv, bp + kk * GEMM_NN_NR);
          for (int j = nv; j < GEMM_NN_NR; ++j) bp[kk * GEMM_NN_NR + j] = 0.0f;
        }
        for (int64_t i0 = 0; i0 < mb; i0 += GEMM_NN_MR) {
          const int mr = (int)(mb - i0 < GEMM_NN_MR ? mb - i0 : GEMM_NN_MR);
          const float *xi = xp + i0 * kc;
#if defined(CPU_HAVE_AVX2_CODE)
          if (avx2) {
            avx2_nn_kerns_[mr](xi, kc, bp, GEMM_NN_NR, kc, s);
          } else
#endif
          {
            kern_nn_generic(mr, xi, kc, bp, GEMM_NN_NR, kc, s);
          }
          tile_out_(c + (m0 + i0) * ldc + j0, ldc, s, GEMM_NN_NR, mr, nv, k0 == 0);
        }
      }
    }
  }
}

/* ---- tiled, threaded driver -------------------------------------------------------------- */

/* Weight bytes × rows below which a GEMM runs on the calling thread (see gemm_run_). */
#define CPU_GEMM_INLINE_BYTES (48 * 1024)

typedef struct gemm_job {
  cpu_isa isa;
  int nn; /* w is b[K, N] (matmul) rather than w[N, K] (linear) */
  const float *x;
  const char *w;
  void *out;
  vnrt_dtype wdt, odt;
  int64_t ldx, ldw, ldo, m, n, k;
  int64_t mt, nt, n_mt; /* tile extents; tiles are numbered n-major */
  float *scratch;
  int64_t slot_floats;
} gemm_job;

static void gemm_item_(void *user, int64_t item, int32_t slot) {
  const gemm_job *g = user;
  const int64_t i0 = (item % g->n_mt) * g->mt, j0 = (item / g->n_mt) * g->nt;
  const int64_t mi = g->m - i0 < g->mt ? g->m - i0 : g->mt;
  const int64_t nj = g->n - j0 < g->nt ? g->n - j0 : g->nt;
  float *ws = g->scratch ? g->scratch + slot * g->slot_floats : NULL;
  const char *w = g->w + (size_t)(g->nn ? j0 : j0 * g->ldw) * vnrt_dtype_size(g->wdt);
  const float *x = g->x + i0 * g->ldx;
  float *c = (float *)g->out + i0 * g->ldo + j0;
  int64_t ldc = g->ldo;
  if (g->odt != VNRT_F32) c = ws + (g->slot_floats - g->mt * g->nt), ldc = nj;
  if (g->nn) {
    cpu_gemm_nn_block(g->isa, x, g->ldx, mi, w, g->wdt, g->ldw, nj, g->k, c, ldc, ws);
#if defined(CPU_HAVE_AVX2_CODE)
  } else if (g->isa >= CPU_ISA_AVX512 && mi >= CPU_GEMM_PACKED_MIN_M &&
             cpu_gemm_nt_block_avx512_packed(x, g->ldx, mi, w, g->wdt, g->ldw, nj, g->k, c, ldc, ws,
                                             CPU_GEMM_WS_FLOATS)) {
#endif
  } else {
    cpu_gemm_nt_block(g->isa, x, g->ldx, mi, w, g->wdt, g->ldw, nj, g->k, c, ldc, ws);
  }
  if (g->odt == VNRT_F32) return;
  const float *ct = c;
  for (int64_t i = 0; i < mi; ++i) {
    for (int64_t j = 0; j < nj; ++j) {
      cpu_store_f32(g->out, g->odt, (i0 + i) * g->ldo + j0 + j, ct[i * nj + j]);
    }
  }
}

static int64_t ceil_div_(int64_t a, int64_t b) { return (a + b - 1) / b; }

static vnrt_status gemm_run_(const cpu_kernel_args *a, int nn, const float *x, int64_t ldx,
                             int64_t m, const void *w, vnrt_dtype wdt, int64_t ldw, int64_t n,
                             int64_t k, void *out, vnrt_dtype odt, int64_t ldo) {
  if (m <= 0 || n <= 0) return VNRT_OK;
  gemm_job g = {
      .isa = cpu_fast_isa(a->pool),
      .nn = nn,
      .x = x,
      .w = w,
      .out = out,
      .wdt = wdt,
      .odt = odt,
      .ldx = ldx,
      .ldw = ldw,
      .ldo = ldo,
      .m = m,
      .n = n,
      .k = k,
  };
  /* Tiles: on the AVX2 [N, K] path up to GEMM_MT_MAX x rows (one K block of them stays in L2)
   * by GEMM_NT_AVX2 w rows streamed past them; otherwise the rows one packed block holds by
   * CPU_GEMM_NB; a GEMV (a few x rows) by 64 w rows. Halve them until every thread has a few
   * tiles to take. */
  const int64_t threads = cpu_pool_threads(a->pool);
  const int64_t want = 4 * threads;
  const int64_t mr = nn ? GEMM_NN_MR : GEMM_MR, min_nt = nn ? GEMM_NN_NR : 8;
  const int avx2_nt = !nn && g.isa >= CPU_ISA_AVX2;
  if (m <= mr) {
    g.mt = m;
  } else {
    g.mt = avx2_nt ? (m < GEMM_MT_MAX ? m : GEMM_MT_MAX) : 16 * mr;
  }
  g.nt = !nn && m <= GEMM_MR ? 64 : avx2_nt ? GEMM_NT_AVX2 : CPU_GEMM_NB;
  /* The packed AVX-512 block (gemm_item_): w is packed once per tile and K block, so tiles keep
   * many x rows (up to 256; w columns are split first) and whole 48-row panels of w. */
  const int packed = !nn && g.isa >= CPU_ISA_AVX512 && m >= CPU_GEMM_PACKED_MIN_M;
  if (packed) {
    g.mt = m < 256 ? m : 256;
    while (ceil_div_(m, g.mt) * ceil_div_(n, g.nt) < want) {
      if (g.nt > 48) {
        g.nt = ceil_div_(g.nt / 2, 48) * 48;
      } else if (g.mt / 2 >= CPU_GEMM_PACKED_MIN_M) {
        g.mt = ceil_div_(g.mt / 2, 8) * 8;
      } else {
        break;
      }
    }
  }
  while (!packed && ceil_div_(m, g.mt) * ceil_div_(n, g.nt) < want) {
    if (g.mt > mr && (ceil_div_(m, g.mt) <= ceil_div_(n, g.nt) || g.nt <= min_nt)) {
      g.mt = ceil_div_(g.mt / 2, mr) * mr;
    } else if (g.nt > min_nt) {
      g.nt = ceil_div_(g.nt / 2, min_nt) * min_nt;
    } else {
      break;
    }
  }
  if (g.mt > m) g.mt = m;
  if (g.nt > n) g.nt = n;
  g.n_mt = ceil_div_(m, g.mt);
  /* A GEMV on the AVX2 path (or with f32 w) streams w in place and needs no workspace: a
   * decode step runs dozens of them, and allocating ~0.8 MiB for each cost more than the
   * smaller ones take. An f32 result needs no output tile either. */
  const int gemv = !nn && m <= GEMM_MR && (g.isa >= CPU_ISA_AVX2 || wdt == VNRT_F32);
  g.slot_floats = (gemv ? 0 : CPU_GEMM_WS_FLOATS) + (odt == VNRT_F32 ? 0 : g.mt * g.nt);
  g.scratch = NULL;
  if (g.slot_floats > 0) {
    vnrt_status st = cpu_fast_alloc(a, threads * g.slot_floats, &g.scratch);
    if (st != VNRT_OK) return st;
  }
  const int64_t items = g.n_mt * ceil_div_(n, g.nt);
  /* Work too small to repay waking the pool (a few µs of streaming) runs on this thread. */
  if ((uint64_t)n * (uint64_t)k * vnrt_dtype_size(wdt) * (uint64_t)m < CPU_GEMM_INLINE_BYTES) {
    for (int64_t it = 0; it < items; ++it) gemm_item_(&g, it, 0);
  } else {
    cpu_fast_for_each(a->pool, items, gemm_item_, &g);
  }
  cpu_fast_free(a, g.scratch);
  return VNRT_OK;
}

vnrt_status cpu_gemm_nt(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                        const void *w, vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, void *out,
                        vnrt_dtype odt, int64_t ldo) {
  return gemm_run_(a, 0, x, ldx, m, w, wdt, ldw, n, k, out, odt, ldo);
}

vnrt_status cpu_gemm_nn(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                        const void *b, vnrt_dtype bdt, int64_t ldb, int64_t n, int64_t k, void *out,
                        vnrt_dtype odt, int64_t ldo) {
  return gemm_run_(a, 1, x, ldx, m, b, bdt, ldb, n, k, out, odt, ldo);
}
