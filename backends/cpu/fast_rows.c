/* CPU fast kernels of the memory-bound ops a decode step runs between its GEMMs: rms_norm,
 * softmax (last axis), the elementwise binaries with a full, row, column or scalar operand, silu,
 * sigmoid, exp, scale, swiglu and float casts. AVX2 (with the portable path beside it), split
 * over rows or blocks across the pool only when a call touches enough data to pay for waking
 * it (smaller calls run on the calling thread). Shapes these kernels do not specialise (softmax
 * over another axis, general broadcasting, i32) go to the reference kernel. rope rotates rows
 * with a cos/sin table formed once per call; hadamard and fake_quant round exactly as the
 * reference kernels. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "fast_quant.h"
#include "fast_util.h"

/* Elements a call must touch before its work is split over the pool: below this the wake-up
 * and the hand-off of a few KiB cost more than the second core saves (a [1, 4096] row runs in
 * about a microsecond on one thread). */
#define ROWS_PAR_ELEMS 32768
/* Block length of the flat (row-less) elementwise ops. */
#define ROWS_FLAT_BLOCK 8192
/* Softmax rows up to this length keep their exponentials in y and rescale them (x is read
 * from memory once, y stays in L2 between the passes); longer rows take the two-pass
 * online-max path, which reads x twice but writes y once. */
#define SOFTMAX_CACHED_LEN 8192
/* The online max of the long-row softmax is taken per block of this many elements (in L1), so
 * the running sum is rescaled once per block rather than once per element. */
#define SOFTMAX_BLOCK 256

/* Whether a result of `bytes` is written with streaming (non-temporal) stores: only one larger
 * than the last-level cache, which it would evict anyway, so the write skips the read of each
 * line that an ordinary store makes (a third of an rms_norm's traffic). Smaller results stay in
 * cache for the node that reads them next. */
static bool rows_stream_out(int64_t bytes) {
  static _Atomic int64_t llc = 0;
  int64_t c = llc;
  if (c == 0) {
    c = 32 << 20;
#if defined(_SC_LEVEL3_CACHE_SIZE)
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) c = l3;
#endif
    llc = c;
  }
  return bytes > c;
}

static int64_t rows_grain(int64_t row_len) {
  const int64_t g = ROWS_PAR_ELEMS / (row_len > 0 ? row_len : 1);
  return g > 0 ? g : 1;
}

/* ---- rms_norm ---------------------------------------------------------------------------- */

typedef struct norm_job {
  const void *x, *w;
  void *y;
  vnrt_dtype dx, dw, dy;
  int64_t d;
  float eps;
  cpu_isa isa;
  bool stream; /* f32 y written with streaming stores (rows_stream_out) */
} norm_job;

/* 1/sqrt(mean(x²) + eps) from a sum of squares kept in double, so that it is the exact value
 * to an f32 rounding whatever order the vectors add the row in. An f32 sum in another order
 * than the reference kernel's differs from it by several f32 ulps over a 4096-long row, and a
 * model that rounds to bf16 or e4m3 right after a norm (V4 under its reference numerics) turns
 * such differences into whole rounding steps wherever a value sits near a midpoint. The
 * products x·inv·w stay in f32 as the reference forms them: in double they made the row
 * compute-bound on two cores (0.58x of the triad instead of 0.80x on [4096, 4096]). */
static float norm_inv(double ss, int64_t d, float eps) {
  return (float)(1.0 / sqrt(ss / (double)d + (double)eps));
}

/* Result i of row offset o: x·inv·w in f32, as the reference. */
static float norm1(const norm_job *j, int64_t o, int64_t i, float inv) {
  float v = cpu_load_f32(j->x, j->dx, o + i) * inv;
  if (j->w) v *= cpu_load_f32(j->w, j->dw, i);
  return v;
}

static void norm_row_generic(const norm_job *j, int64_t r) {
  const int64_t o = r * j->d;
  double ss = 0.0;
  if (j->dx == VNRT_F32) {
    const float *x = (const float *)j->x + o;
    for (int64_t i = 0; i < j->d; ++i) ss += (double)x[i] * x[i];
  } else {
    for (int64_t i = 0; i < j->d; ++i) {
      const double v = cpu_load_f32(j->x, j->dx, o + i);
      ss += v * v;
    }
  }
  const float inv = norm_inv(ss, j->d, j->eps);
  for (int64_t i = 0; i < j->d; ++i) cpu_store_f32(j->y, j->dy, o + i, norm1(j, o, i, inv));
}

#if defined(CPU_HAVE_AVX2_CODE)
CPU_AVX2 static void norm_row_avx2(const norm_job *j, int64_t r) {
  const int64_t d = j->d, o = r * d;
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    const __m256 a = avx2_load8(j->x, o + i, j->dx), b = avx2_load8(j->x, o + i + 8, j->dx);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    const __m256d a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    const __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(b));
    const __m256d b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
    s0 = _mm256_fmadd_pd(a0, a0, s0);
    s1 = _mm256_fmadd_pd(a1, a1, s1);
    s2 = _mm256_fmadd_pd(b0, b0, s2);
    s3 = _mm256_fmadd_pd(b1, b1, s3);
  }
  for (; i + 8 <= d; i += 8) {
    const __m256 a = avx2_load8(j->x, o + i, j->dx);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    const __m256d a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    s0 = _mm256_fmadd_pd(a0, a0, s0);
    s1 = _mm256_fmadd_pd(a1, a1, s1);
  }
  double sl[4];
  _mm256_storeu_pd(sl, _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  double ss = (sl[0] + sl[1]) + (sl[2] + sl[3]);
  for (; i < d; ++i) {
    const double v = cpu_load_f32(j->x, j->dx, o + i);
    ss += v * v;
  }
  const float inv = norm_inv(ss, d, j->eps);
  float *ys = (float *)j->y + o;
  const bool stream = j->stream && ((uintptr_t)ys & 31) == 0;
  const __m256 vi = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= d; i += 8) {
    __m256 v = _mm256_mul_ps(avx2_load8(j->x, o + i, j->dx), vi);
    if (j->w) v = _mm256_mul_ps(v, avx2_load8(j->w, i, j->dw));
    if (stream) {
      _mm256_stream_ps(ys + i, v);
    } else {
      avx2_store8(j->y, o + i, j->dy, v);
    }
  }
  for (; i < d; ++i) cpu_store_f32(j->y, j->dy, o + i, norm1(j, o, i, inv));
}
#endif

static void norm_range(void *user, int64_t begin, int64_t end) {
  const norm_job *j = user;
#if defined(CPU_HAVE_AVX2_CODE)
  if (j->isa >= CPU_ISA_AVX2) {
    for (int64_t r = begin; r < end; ++r) norm_row_avx2(j, r);
    if (j->stream) _mm_sfence(); /* the streamed lines are visible before the job ends */
    return;
  }
#endif
  for (int64_t r = begin; r < end; ++r) norm_row_generic(j, r);
}

static bool float_dtype(vnrt_dtype dt) {
  return dt == VNRT_F32 || dt == VNRT_F16 || dt == VNRT_BF16;
}

vnrt_status cpu_fast_rms_norm(const cpu_kernel_args *a) {
  const vnrt_tensor_type *tx = a->in_type[0], *to = a->out_type[0];
  const vnrt_rms_norm_params *p = &a->node->params->rms_norm;
  const vnrt_tensor_type *tw = p->has_weight && a->n_in > 1 ? a->in_type[1] : NULL;
  if (tx->rank < 1 || (p->has_weight && !tw)) return cpu_ref_rms_norm(a);
  const int64_t d = tx->dims[tx->rank - 1];
  if (d <= 0 || (tw && vnrt_tensor_type_numel(tw) != d) || !float_dtype(tx->dtype) ||
      !float_dtype(to->dtype) || (tw && !float_dtype(tw->dtype))) {
    return cpu_ref_rms_norm(a);
  }
  norm_job j = {.x = a->in[0],
                .w = tw ? a->in[1] : NULL,
                .y = a->out[0],
                .dx = tx->dtype,
                .dw = tw ? tw->dtype : VNRT_F32,
                .dy = to->dtype,
                .d = d,
                .eps = (float)p->eps,
                .isa = cpu_fast_isa(a->pool)};
  j.stream = to->dtype == VNRT_F32 && rows_stream_out(vnrt_tensor_type_bytes(to));
  cpu_pool_parallel_for(a->pool, vnrt_tensor_type_numel(tx) / d, rows_grain(d), norm_range, &j);
  return VNRT_OK;
}

/* ---- softmax over the last axis -------------------------------------------------------- */

typedef struct softmax_job {
  const void *x;
  void *y;
  vnrt_dtype dx, dy;
  int64_t len;
  cpu_isa isa;
} softmax_job;

static void softmax_row_generic(const softmax_job *j, int64_t r) {
  const int64_t o = r * j->len;
  float mx = -INFINITY;
  for (int64_t i = 0; i < j->len; ++i) {
    const float v = cpu_load_f32(j->x, j->dx, o + i);
    if (v > mx) mx = v;
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < j->len; ++i) sum += expf(cpu_load_f32(j->x, j->dx, o + i) - mx);
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < j->len; ++i) {
    cpu_store_f32(j->y, j->dy, o + i, expf(cpu_load_f32(j->x, j->dx, o + i) - mx) * inv);
  }
}

#if defined(CPU_HAVE_AVX2_CODE)
/* max over x[o, o + n) in f32; n may be 0 (-inf). */
CPU_AVX2 static float max_avx2(const void *x, vnrt_dtype dt, int64_t o, int64_t n) {
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, avx2_load8(x, o + i, dt));
    m1 = _mm256_max_ps(m1, avx2_load8(x, o + i + 8, dt));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, avx2_load8(x, o + i, dt));
  float mx = avx2_hmax(_mm256_max_ps(m0, m1));
  for (; i < n; ++i) {
    const float v = cpu_load_f32(x, dt, o + i);
    if (v > mx) mx = v;
  }
  return mx;
}

/* Σ exp(x - mx) over x[o, o + n), storing each exponential in y (f32) when keep is set. */
CPU_AVX2 static float expsum_avx2(const void *x, vnrt_dtype dt, int64_t o, int64_t n, float mx,
                                  float *y, int keep) {
  const __m256 vm = _mm256_set1_ps(mx);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = avx2_exp(_mm256_sub_ps(avx2_load8(x, o + i, dt), vm));
    const __m256 e1 = avx2_exp(_mm256_sub_ps(avx2_load8(x, o + i + 8, dt), vm));
    if (keep) {
      _mm256_storeu_ps(y + o + i, e0);
      _mm256_storeu_ps(y + o + i + 8, e1);
    }
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 e0 = avx2_exp(_mm256_sub_ps(avx2_load8(x, o + i, dt), vm));
    if (keep) _mm256_storeu_ps(y + o + i, e0);
    s0 = _mm256_add_ps(s0, e0);
  }
  float sum = avx2_hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) {
    const float e = expf(cpu_load_f32(x, dt, o + i) - mx);
    if (keep) y[o + i] = e;
    sum += e;
  }
  return sum;
}

/* The long-row pass: the row's max and Σ exp(x - max) in one read of x. Each lane keeps a
 * running max and a sum relative to it; per block of SOFTMAX_BLOCK elements the block's max
 * is found first (the block stays in L1), the sums are rescaled once, then the block's
 * exponentials are added. A lane whose max is still -inf contributes nothing (no -inf - -inf). */
CPU_AVX2 static void online_max_sum_avx2(const void *x, vnrt_dtype dt, int64_t o, int64_t n,
                                         float *out_max, float *out_sum) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
  __m256 m = ninf, s = zero;
  int64_t i = 0;
  for (; i + SOFTMAX_BLOCK <= n; i += SOFTMAX_BLOCK) {
    __m256 bm = ninf;
    for (int64_t k = 0; k < SOFTMAX_BLOCK; k += 8)
      bm = _mm256_max_ps(bm, avx2_load8(x, o + i + k, dt));
    const __m256 nm = _mm256_max_ps(m, bm);
    const __m256 finite = _mm256_cmp_ps(nm, ninf, _CMP_NEQ_OQ);
    const __m256 base = _mm256_and_ps(nm, finite); /* 0 in lanes still at -inf */
    const __m256 same = _mm256_cmp_ps(m, nm, _CMP_EQ_OQ);
    const __m256 rescale =
        _mm256_blendv_ps(avx2_exp(_mm256_sub_ps(m, base)), _mm256_set1_ps(1.0f), same);
    s = _mm256_mul_ps(s, rescale);
    __m256 acc = zero;
    for (int64_t k = 0; k < SOFTMAX_BLOCK; k += 8) {
      acc = _mm256_add_ps(acc, avx2_exp(_mm256_sub_ps(avx2_load8(x, o + i + k, dt), base)));
    }
    s = _mm256_add_ps(s, acc);
    m = nm;
  }
  /* Lanes to one value: the row max, and each lane's sum moved onto it. */
  float lm[8], ls[8];
  _mm256_storeu_ps(lm, m);
  _mm256_storeu_ps(ls, s);
  float mx = -INFINITY;
  for (int l = 0; l < 8; ++l) mx = lm[l] > mx ? lm[l] : mx;
  for (int64_t k = i; k < n; ++k) {
    const float v = cpu_load_f32(x, dt, o + k);
    if (v > mx) mx = v;
  }
  float sum = 0.0f;
  for (int l = 0; l < 8; ++l) {
    if (lm[l] != -INFINITY) sum += ls[l] * expf(lm[l] - mx);
  }
  for (int64_t k = i; k < n; ++k) sum += expf(cpu_load_f32(x, dt, o + k) - mx);
  *out_max = mx;
  *out_sum = sum;
}

/* e^x per lane for x <= 0 (softmax's x - max), the polynomial of avx2_exp; 2^n is applied with
 * scalef, so lanes below -87.3 give exactly 0 as there. */
static inline CPU_AVX512 __m512 avx512_exp_nonpos(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3365447504f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lo);
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_scalef_ps(y, fx));
}

/* An f32 row that fits in cache on AVX-512: the exponentials, which bound a cached row, at 16
 * lanes, and the tails with masks. */
CPU_AVX512 static void softmax_row_f32_avx512(const float *x, float *y, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
  const int64_t nv = n & ~(int64_t)15;
  __m512 m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 32 <= nv; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < nv; i += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
  if (tail) m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(ninf, tail, x + nv));
  const float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
  const __m512 vm = _mm512_set1_ps(mx);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  for (i = 0; i + 32 <= nv; i += 32) {
    const __m512 e0 = avx512_exp_nonpos(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    const __m512 e1 = avx512_exp_nonpos(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
    _mm512_storeu_ps(y + i, e0);
    _mm512_storeu_ps(y + i + 16, e1);
    s0 = _mm512_add_ps(s0, e0);
    s1 = _mm512_add_ps(s1, e1);
  }
  for (; i < nv; i += 16) {
    const __m512 e0 = avx512_exp_nonpos(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    _mm512_storeu_ps(y + i, e0);
    s0 = _mm512_add_ps(s0, e0);
  }
  if (tail) {
    const __m512 e = _mm512_maskz_mov_ps(
        tail, avx512_exp_nonpos(_mm512_sub_ps(_mm512_mask_loadu_ps(vm, tail, x + nv), vm)));
    _mm512_mask_storeu_ps(y + nv, tail, e);
    s1 = _mm512_add_ps(s1, e);
  }
  const __m512 vi = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
  for (i = 0; i < nv; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), vi));
  if (tail)
    _mm512_mask_storeu_ps(y + nv, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + nv), vi));
}

CPU_AVX2 static void softmax_row_avx2(const softmax_job *j, int64_t r) {
  const int64_t n = j->len, o = r * n;
  float mx, sum;
  const int keep = j->dy == VNRT_F32 && n <= SOFTMAX_CACHED_LEN;
  if (keep) {
    mx = max_avx2(j->x, j->dx, o, n);
    sum = expsum_avx2(j->x, j->dx, o, n, mx, j->y, 1);
  } else if (n <= SOFTMAX_CACHED_LEN) {
    mx = max_avx2(j->x, j->dx, o, n);
    sum = expsum_avx2(j->x, j->dx, o, n, mx, NULL, 0);
  } else {
    online_max_sum_avx2(j->x, j->dx, o, n, &mx, &sum);
  }
  const float inv = 1.0f / sum;
  const __m256 vi = _mm256_set1_ps(inv), vm = _mm256_set1_ps(mx);
  int64_t i = 0;
  if (keep) {
    float *y = (float *)j->y + o;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vi));
    for (; i < n; ++i) y[i] *= inv;
    return;
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 e = avx2_exp(_mm256_sub_ps(avx2_load8(j->x, o + i, j->dx), vm));
    avx2_store8(j->y, o + i, j->dy, _mm256_mul_ps(e, vi));
  }
  for (; i < n; ++i) {
    cpu_store_f32(j->y, j->dy, o + i, expf(cpu_load_f32(j->x, j->dx, o + i) - mx) * inv);
  }
}
#endif

static void softmax_range(void *user, int64_t begin, int64_t end) {
  const softmax_job *j = user;
#if defined(CPU_HAVE_AVX2_CODE)
  if (j->isa >= CPU_ISA_AVX512 && j->dx == VNRT_F32 && j->dy == VNRT_F32 &&
      j->len <= SOFTMAX_CACHED_LEN) {
    for (int64_t r = begin; r < end; ++r) {
      softmax_row_f32_avx512((const float *)j->x + r * j->len, (float *)j->y + r * j->len, j->len);
    }
    return;
  }
  if (j->isa >= CPU_ISA_AVX2) {
    for (int64_t r = begin; r < end; ++r) softmax_row_avx2(j, r);
    return;
  }
#endif
  for (int64_t r = begin; r < end; ++r) softmax_row_generic(j, r);
}

vnrt_status cpu_fast_softmax(const cpu_kernel_args *a) {
  const vnrt_tensor_type *tx = a->in_type[0], *to = a->out_type[0];
  const int64_t axis = a->node->params->softmax.axis;
  if (tx->rank < 1 || axis != tx->rank - 1 || tx->dims[axis] <= 0 || !float_dtype(tx->dtype) ||
      !float_dtype(to->dtype)) {
    return cpu_ref_softmax(a);
  }
  const int64_t len = tx->dims[axis];
  softmax_job j = {.x = a->in[0],
                   .y = a->out[0],
                   .dx = tx->dtype,
                   .dy = to->dtype,
                   .len = len,
                   .isa = cpu_fast_isa(a->pool)};
  cpu_pool_parallel_for(a->pool, vnrt_tensor_type_numel(tx) / len, rows_grain(len), softmax_range,
                        &j);
  return VNRT_OK;
}

/* ---- elementwise: binaries, unaries, swiglu, cast --------------------------------------- */

typedef enum ew_kind {
  EW_ADD,
  EW_SUB,
  EW_MUL,
  EW_DIV,
  EW_SILU,
  EW_SIGMOID,
  EW_EXP,
  EW_SCALE,
  EW_SWIGLU,
  EW_COPY, /* cast between float dtypes */
} ew_kind;

/* One operand of an elementwise op as its rows see it: element i of row r is
 * p[r * row_step + i * step]. */
typedef struct ew_operand {
  const void *p;
  vnrt_dtype dt;
  /* full: (row length, 1); a repeated row: (0, 1); a column: (1, 0); a scalar: (0, 0) */
  int64_t row_step, step;
} ew_operand;

typedef struct ew_job {
  ew_kind kind;
  ew_operand a, b; /* b unused by the unaries and the cast */
  void *y;
  vnrt_dtype dy;
  int64_t n, row; /* elements, and the row length the work is split by */
  float s;        /* scale's factor, swiglu's limit (0: none) */
  cpu_isa isa;
} ew_job;

static float ew_scalar(const ew_job *j, float x, float y) {
  switch (j->kind) {
    case EW_ADD:
      return x + y;
    case EW_SUB:
      return x - y;
    case EW_MUL:
      return x * y;
    case EW_DIV:
      return x / y;
    case EW_SILU:
      return x * (1.0f / (1.0f + expf(-x)));
    case EW_SIGMOID:
      return 1.0f / (1.0f + expf(-x));
    case EW_EXP:
      return expf(x);
    case EW_SCALE:
      return x * j->s;
    case EW_SWIGLU:
      if (j->s > 0.0f) {
        if (x > j->s) x = j->s;
        if (y > j->s) y = j->s;
        if (y < -j->s) y = -j->s;
      }
      return x * (1.0f / (1.0f + expf(-x))) * y;
    default:
      return x;
  }
}

static bool ew_binary(ew_kind k) { return k <= EW_DIV || k == EW_SWIGLU; }

/* Elements [i0, i1) of row r, one at a time (the portable path and the vector tails). */
static void ew_row_scalar(const ew_job *j, int64_t r, int64_t i0, int64_t i1) {
  const int64_t ao = r * j->a.row_step, bo = r * j->b.row_step, yo = r * j->row;
  const bool bin = ew_binary(j->kind);
  if (j->a.dt == VNRT_F32 && j->dy == VNRT_F32 && (!bin || j->b.dt == VNRT_F32)) {
    const float *x = (const float *)j->a.p + ao, *z = bin ? (const float *)j->b.p + bo : NULL;
    float *y = (float *)j->y + yo;
    if (j->kind == EW_ADD && j->a.step == 1 && j->b.step == 1) {
      for (int64_t i = i0; i < i1; ++i) y[i] = x[i] + z[i];
      return;
    }
    if (j->kind == EW_MUL && j->a.step == 1 && j->b.step == 1) {
      for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * z[i];
      return;
    }
    for (int64_t i = i0; i < i1; ++i) {
      y[i] = ew_scalar(j, x[i * j->a.step], bin ? z[i * j->b.step] : 0.0f);
    }
    return;
  }
  for (int64_t i = i0; i < i1; ++i) {
    const float x = cpu_load_f32(j->a.p, j->a.dt, ao + i * j->a.step);
    const float z = bin ? cpu_load_f32(j->b.p, j->b.dt, bo + i * j->b.step) : 0.0f;
    cpu_store_f32(j->y, j->dy, yo + i, ew_scalar(j, x, z));
  }
}

#if defined(CPU_HAVE_AVX2_CODE)
CPU_AVX2_INLINE __m256 ew_load8(const ew_operand *o, int64_t base, int64_t i) {
  if (o->step == 0) return _mm256_set1_ps(cpu_load_f32(o->p, o->dt, base));
  return avx2_load8(o->p, base + i, o->dt);
}

CPU_AVX2_INLINE __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, avx2_exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

CPU_AVX2 static void ew_row_avx2(const ew_job *j, int64_t r, int64_t len) {
  const int64_t ao = r * j->a.row_step, bo = r * j->b.row_step, yo = r * j->row;
  const __m256 s = _mm256_set1_ps(j->s), ns = _mm256_set1_ps(-j->s);
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 x = ew_load8(&j->a, ao, i);
    __m256 v;
    switch (j->kind) {
      case EW_ADD:
        v = _mm256_add_ps(x, ew_load8(&j->b, bo, i));
        break;
      case EW_SUB:
        v = _mm256_sub_ps(x, ew_load8(&j->b, bo, i));
        break;
      case EW_MUL:
        v = _mm256_mul_ps(x, ew_load8(&j->b, bo, i));
        break;
      case EW_DIV:
        v = _mm256_div_ps(x, ew_load8(&j->b, bo, i));
        break;
      case EW_SILU:
        v = _mm256_mul_ps(x, sigmoid8(x));
        break;
      case EW_SIGMOID:
        v = sigmoid8(x);
        break;
      case EW_EXP:
        v = avx2_exp(x);
        break;
      case EW_SCALE:
        v = _mm256_mul_ps(x, s);
        break;
      case EW_SWIGLU: {
        __m256 g = x, u = ew_load8(&j->b, bo, i);
        if (j->s > 0.0f) {
          g = _mm256_min_ps(g, s);
          u = _mm256_max_ps(_mm256_min_ps(u, s), ns);
        }
        v = _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), u);
        break;
      }
      default:
        v = x;
        break;
    }
    avx2_store8(j->y, yo + i, j->dy, v);
  }
  if (i < len) ew_row_scalar(j, r, i, len);
}
#endif

static void ew_range(void *user, int64_t begin, int64_t end) {
  const ew_job *j = user;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t len = (r + 1) * j->row <= j->n ? j->row : j->n - r * j->row;
#if defined(CPU_HAVE_AVX2_CODE)
    if (j->isa >= CPU_ISA_AVX2) {
      ew_row_avx2(j, r, len);
      continue;
    }
#endif
    ew_row_scalar(j, r, 0, len);
  }
}

static void ew_run(const cpu_kernel_args *a, ew_job *j) {
  if (j->n <= 0) return;
  j->y = a->out[0];
  j->dy = a->out_type[0]->dtype;
  j->isa = cpu_fast_isa(a->pool);
  if (j->row <= 0) { /* flat: every operand full or a scalar, split into blocks */
    j->row = j->n < ROWS_FLAT_BLOCK ? j->n : ROWS_FLAT_BLOCK;
    j->a.row_step = j->a.step ? j->row : 0;
    j->b.row_step = j->b.step ? j->row : 0;
  }
  const int64_t rows = (j->n + j->row - 1) / j->row;
  cpu_pool_parallel_for(a->pool, rows, rows_grain(j->row), ew_range, j);
}

/* Extent of `in` along result dim d (numpy broadcasting: right-aligned, missing dims are 1). */
static int64_t bcast_dim(const vnrt_tensor_type *in, const vnrt_tensor_type *out, int32_t d) {
  const int32_t id = d - (out->rank - in->rank);
  return id >= 0 ? in->dims[id] : 1;
}

/* Whether in's dims [d0, d1) of the result are all the result's (full) or all 1 (ones). */
static void bcast_part(const vnrt_tensor_type *in, const vnrt_tensor_type *out, int32_t d0,
                       int32_t d1, bool *full, bool *ones) {
  *full = *ones = true;
  for (int32_t d = d0; d < d1; ++d) {
    const int64_t e = bcast_dim(in, out, d);
    if (e != out->dims[d]) *full = false;
    if (e != 1) *ones = false;
  }
}

/* Sets o for input `in` with the result split into outer dims [0, k) and inner dims [k, rank)
 * of `inner` elements: a full operand (its own rows), a repeated row, a column (one value per
 * row) or a scalar. False when in broadcasts within the outer or inner dims. */
static bool ew_operand_at(const cpu_kernel_args *a, int32_t in, int32_t k, int64_t inner,
                          ew_operand *o) {
  const vnrt_tensor_type *t = a->in_type[in], *to = a->out_type[0];
  bool outer_full, outer_ones, inner_full, inner_ones;
  bcast_part(t, to, 0, k, &outer_full, &outer_ones);
  bcast_part(t, to, k, to->rank, &inner_full, &inner_ones);
  *o = (ew_operand){.p = a->in[in], .dt = t->dtype};
  if (outer_full && inner_full) {
    o->row_step = inner, o->step = 1;
  } else if (outer_ones && inner_full) {
    o->row_step = 0, o->step = 1;
  } else if (outer_full && inner_ones) {
    o->row_step = 1, o->step = 0;
  } else if (outer_ones && inner_ones) {
    o->row_step = 0, o->step = 0;
  } else {
    return false;
  }
  return true;
}

static vnrt_status ew_binary_op(const cpu_kernel_args *a, ew_kind kind, cpu_kernel_fn ref) {
  const vnrt_tensor_type *to = a->out_type[0];
  if (!float_dtype(to->dtype) || !float_dtype(a->in_type[0]->dtype) ||
      !float_dtype(a->in_type[1]->dtype) || to->rank > VNRT_MAX_DIMS ||
      a->in_type[0]->rank > to->rank || a->in_type[1]->rank > to->rank) {
    return ref(a);
  }
  ew_job j = {.kind = kind, .n = vnrt_tensor_type_numel(to)};
  if (kind == EW_SWIGLU) j.s = (float)a->node->params->swiglu.limit;
  /* The longest rows (the fewest outer dims) in which each operand is full, a repeated row, a
   * column or a scalar: x[T, C] + b[C] runs rows of C, x[T, C] * g[T, 1] rows of C with one g
   * per row; a broadcast inside the rows ([4, 1, 3] + [1, 5, 1]) is the reference's. */
  int64_t inner = j.n;
  for (int32_t k = 0; k <= to->rank; ++k) {
    if (k > 0) inner /= to->dims[k - 1] > 0 ? to->dims[k - 1] : 1;
    if (!ew_operand_at(a, 0, k, inner, &j.a) || !ew_operand_at(a, 1, k, inner, &j.b)) continue;
    if (k > 0) j.row = inner; /* k = 0: one flat run, split into blocks by ew_run */
    ew_run(a, &j);
    return VNRT_OK;
  }
  return ref(a);
}

vnrt_status cpu_fast_add(const cpu_kernel_args *a) { return ew_binary_op(a, EW_ADD, cpu_ref_add); }
vnrt_status cpu_fast_sub(const cpu_kernel_args *a) { return ew_binary_op(a, EW_SUB, cpu_ref_sub); }
vnrt_status cpu_fast_mul(const cpu_kernel_args *a) { return ew_binary_op(a, EW_MUL, cpu_ref_mul); }
vnrt_status cpu_fast_div(const cpu_kernel_args *a) { return ew_binary_op(a, EW_DIV, cpu_ref_div); }

vnrt_status cpu_fast_swiglu(const cpu_kernel_args *a) {
  const int64_t n = vnrt_tensor_type_numel(a->out_type[0]);
  if (vnrt_tensor_type_numel(a->in_type[0]) != n || vnrt_tensor_type_numel(a->in_type[1]) != n) {
    return cpu_ref_swiglu(a);
  }
  return ew_binary_op(a, EW_SWIGLU, cpu_ref_swiglu);
}

static vnrt_status ew_unary_op(const cpu_kernel_args *a, ew_kind kind, float s, cpu_kernel_fn ref) {
  const vnrt_tensor_type *ti = a->in_type[0], *to = a->out_type[0];
  if (!float_dtype(ti->dtype) || !float_dtype(to->dtype)) return ref(a);
  ew_job j = {.kind = kind,
              .a = {.p = a->in[0], .dt = ti->dtype, .step = 1},
              .n = vnrt_tensor_type_numel(to),
              .s = s};
  ew_run(a, &j);
  return VNRT_OK;
}

vnrt_status cpu_fast_silu(const cpu_kernel_args *a) {
  return ew_unary_op(a, EW_SILU, 0.0f, cpu_ref_silu);
}
vnrt_status cpu_fast_sigmoid(const cpu_kernel_args *a) {
  return ew_unary_op(a, EW_SIGMOID, 0.0f, cpu_ref_sigmoid);
}
vnrt_status cpu_fast_exp(const cpu_kernel_args *a) {
  return ew_unary_op(a, EW_EXP, 0.0f, cpu_ref_exp);
}
vnrt_status cpu_fast_scale(const cpu_kernel_args *a) {
  return ew_unary_op(a, EW_SCALE, (float)a->node->params->scale.s, cpu_ref_scale);
}

/* cast between f32, f16 and bf16 (i32 either side, and a same-dtype copy, are the
 * reference's). */
vnrt_status cpu_fast_cast(const cpu_kernel_args *a) {
  if (a->in_type[0]->dtype == a->out_type[0]->dtype) return cpu_ref_cast(a);
  return ew_unary_op(a, EW_COPY, 0.0f, cpu_ref_cast);
}

/* ---- rope ------------------------------------------------------------------------------- */

/* cos and sin of every (token, pair) are formed once, as the reference forms them (the angle
 * in double, rounded to f32), into a table laid out like the rotated slice: for interleaved
 * pairs c[2i] = c[2i+1] = cos and s[2i] = -sin, s[2i+1] = sin, so that y = x·c + swap(x)·s
 * over the slice; for half-split pairs c[i] = cos, s[i] = sin over the first half. The rows
 * (token, head) then rotate with no trigonometry. */
typedef struct rope_job {
  const void *x;
  void *y;
  vnrt_dtype dx, dy;
  int64_t H, D, dims, first;
  int interleaved;
  const float *c, *s; /* [T, dims] */
  cpu_isa isa;
} rope_job;

static void rope_row_generic(const rope_job *j, int64_t r, int64_t from) {
  const int64_t o = r * j->D + j->first, half = j->dims / 2;
  const float *c = j->c + (r / j->H) * j->dims, *s = j->s + (r / j->H) * j->dims;
  if (j->interleaved) {
    for (int64_t k = from; k < j->dims; k += 2) {
      const float x1 = cpu_load_f32(j->x, j->dx, o + k), x2 = cpu_load_f32(j->x, j->dx, o + k + 1);
      cpu_store_f32(j->y, j->dy, o + k, x1 * c[k] + x2 * s[k]);
      cpu_store_f32(j->y, j->dy, o + k + 1, x2 * c[k] + x1 * s[k + 1]);
    }
    return;
  }
  for (int64_t i = from; i < half; ++i) {
    const float x1 = cpu_load_f32(j->x, j->dx, o + i), x2 = cpu_load_f32(j->x, j->dx, o + i + half);
    cpu_store_f32(j->y, j->dy, o + i, x1 * c[i] - x2 * s[i]);
    cpu_store_f32(j->y, j->dy, o + i + half, x1 * s[i] + x2 * c[i]);
  }
}

#if defined(CPU_HAVE_AVX2_CODE)
CPU_AVX2 static void rope_row_avx2(const rope_job *j, int64_t r) {
  const int64_t o = r * j->D + j->first, half = j->dims / 2;
  const float *c = j->c + (r / j->H) * j->dims, *s = j->s + (r / j->H) * j->dims;
  int64_t k = 0;
  if (j->interleaved) {
    for (; k + 8 <= j->dims; k += 8) {
      const __m256 x = avx2_load8(j->x, o + k, j->dx);
      const __m256 sw = _mm256_permute_ps(x, 0xB1); /* (x2, x1) in each pair */
      const __m256 y = _mm256_add_ps(_mm256_mul_ps(x, _mm256_loadu_ps(c + k)),
                                     _mm256_mul_ps(sw, _mm256_loadu_ps(s + k)));
      avx2_store8(j->y, o + k, j->dy, y);
    }
  } else {
    for (; k + 8 <= half; k += 8) {
      const __m256 x1 = avx2_load8(j->x, o + k, j->dx), x2 = avx2_load8(j->x, o + k + half, j->dx);
      const __m256 vc = _mm256_loadu_ps(c + k), vs = _mm256_loadu_ps(s + k);
      avx2_store8(j->y, o + k, j->dy, _mm256_sub_ps(_mm256_mul_ps(x1, vc), _mm256_mul_ps(x2, vs)));
      avx2_store8(j->y, o + k + half, j->dy,
                  _mm256_add_ps(_mm256_mul_ps(x1, vs), _mm256_mul_ps(x2, vc)));
    }
  }
  rope_row_generic(j, r, k);
}
#endif

static void rope_range(void *user, int64_t begin, int64_t end) {
  const rope_job *j = user;
  for (int64_t r = begin; r < end; ++r) {
    /* The channels before the rotated slice are copied. */
    const int64_t o = r * j->D;
    if (j->dx == j->dy) {
      const size_t sz = vnrt_dtype_size(j->dx);
      if (j->first > 0 && j->x != j->y) {
        memcpy((char *)j->y + (size_t)o * sz, (const char *)j->x + (size_t)o * sz,
               (size_t)j->first * sz);
      }
    } else {
      for (int64_t k = 0; k < j->first; ++k) {
        cpu_store_f32(j->y, j->dy, o + k, cpu_load_f32(j->x, j->dx, o + k));
      }
    }
#if defined(CPU_HAVE_AVX2_CODE)
    if (j->isa >= CPU_ISA_AVX2) {
      rope_row_avx2(j, r);
      continue;
    }
#endif
    rope_row_generic(j, r, 0);
  }
}

vnrt_status cpu_fast_rope(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *pt = a->in_type[1], *ot = a->out_type[0];
  const vnrt_rope_params *p = &a->node->params->rope;
  /* Shapes the reference rejects are left to it (one message, one place). */
  if (xt->rank != 3 || pt->rank != 1 || pt->dims[0] != xt->dims[0] || pt->dtype != VNRT_I32 ||
      p->dims <= 0 || p->dims > xt->dims[2] || p->dims % 2 != 0 || !float_dtype(xt->dtype) ||
      !float_dtype(ot->dtype)) {
    return cpu_ref_rope(a);
  }
  const int64_t T = xt->dims[0], H = xt->dims[1], D = xt->dims[2], dims = p->dims, half = dims / 2;
  if (T * H == 0) return VNRT_OK;
  float *tab = NULL;
  vnrt_status st = cpu_fast_alloc(a, 2 * T * dims, &tab);
  if (st != VNRT_OK) return st;
  float *c = tab, *s = tab + T * dims;
  const int32_t *pos = a->in[1];
  const int interleaved = p->interleaved != 0;
  /* YaRN's ramp once for all pairs (four logarithms a pair were most of a decode rope's time). */
  double low = 0.0, high = 0.0;
  if (p->yarn_factor > 0.0) vnrt_rope_yarn_ramp(p, &low, &high);
  for (int64_t i = 0; i < half; ++i) {
    const double freq = vnrt_rope_freq_in(p, i, low, high);
    for (int64_t t = 0; t < T; ++t) {
      const double angle = (double)pos[t] * freq;
      const float cs = (float)cos(angle), sn = p->inverse ? -(float)sin(angle) : (float)sin(angle);
      float *ct = c + t * dims, *stt = s + t * dims;
      if (interleaved) {
        ct[2 * i] = ct[2 * i + 1] = cs;
        stt[2 * i] = -sn;
        stt[2 * i + 1] = sn;
      } else {
        ct[i] = cs;
        stt[i] = sn;
      }
    }
  }
  rope_job j = {.x = a->in[0],
                .y = a->out[0],
                .dx = xt->dtype,
                .dy = ot->dtype,
                .H = H,
                .D = D,
                .dims = dims,
                .first = D - dims,
                .interleaved = interleaved,
                .c = c,
                .s = s,
                .isa = cpu_fast_isa(a->pool)};
  cpu_pool_parallel_for(a->pool, T * H, rows_grain(D), rope_range, &j);
  cpu_fast_free(a, tab);
  return VNRT_OK;
}

/* ---- hadamard --------------------------------------------------------------------------- */

/* Each f32 row is copied into y and transformed there in place, with the reference's
 * butterflies (u + v, u - v per pair, stages h = 1, 2, 4, ... in order), so the results are
 * the reference's bit for bit: the stages within one vector by lane shuffles, the others
 * between vectors. */
typedef struct hadamard_job {
  const void *x;
  float *y;
  vnrt_dtype dx;
  int64_t d;
  float scale;
  cpu_isa isa;
} hadamard_job;

static void hadamard_stages_generic(float *row, int64_t d, int64_t from_h) {
  for (int64_t h = from_h; h < d; h *= 2) {
    for (int64_t i = 0; i < d; i += 2 * h) {
      for (int64_t k = i; k < i + h; ++k) {
        const float u = row[k], v = row[k + h];
        row[k] = u + v;
        row[k + h] = u - v;
      }
    }
  }
}

#if defined(CPU_HAVE_AVX2_CODE)
CPU_AVX2 static void hadamard_row_avx2(const hadamard_job *j, float *row) {
  const int64_t d = j->d;
  /* h = 1, 2, 4: lanes (k, k + h) of one vector; sw holds each lane's partner, and the upper
   * lane of every pair takes partner - self (u - v), the lower self + partner. */
  for (int64_t i = 0; i < d; i += 8) {
    __m256 v = _mm256_loadu_ps(row + i);
    __m256 sw = _mm256_permute_ps(v, 0xB1);
    v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xAA);
    sw = _mm256_permute_ps(v, 0x4E);
    v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xCC);
    sw = _mm256_permute2f128_ps(v, v, 0x01);
    v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xF0);
    _mm256_storeu_ps(row + i, v);
  }
  for (int64_t h = 8; h < d; h *= 2) {
    for (int64_t i = 0; i < d; i += 2 * h) {
      for (int64_t k = i; k < i + h; k += 8) {
        const __m256 u = _mm256_loadu_ps(row + k), v = _mm256_loadu_ps(row + k + h);
        _mm256_storeu_ps(row + k, _mm256_add_ps(u, v));
        _mm256_storeu_ps(row + k + h, _mm256_sub_ps(u, v));
      }
    }
  }
  const __m256 s = _mm256_set1_ps(j->scale);
  for (int64_t i = 0; i < d; i += 8)
    _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), s));
}
#endif

static void hadamard_range(void *user, int64_t begin, int64_t end) {
  const hadamard_job *j = user;
  for (int64_t r = begin; r < end; ++r) {
    float *row = j->y + r * j->d;
    if (j->dx == VNRT_F32) {
      if ((const void *)row != (const void *)((const float *)j->x + r * j->d)) {
        memcpy(row, (const float *)j->x + r * j->d, sizeof(float) * (size_t)j->d);
      }
    } else {
      for (int64_t i = 0; i < j->d; ++i) row[i] = cpu_load_f32(j->x, j->dx, r * j->d + i);
    }
#if defined(CPU_HAVE_AVX2_CODE)
    if (j->isa >= CPU_ISA_AVX2 && j->d >= 8) {
      hadamard_row_avx2(j, row);
      continue;
    }
#endif
    hadamard_stages_generic(row, j->d, 1);
    for (int64_t i = 0; i < j->d; ++i) row[i] *= j->scale;
  }
}

vnrt_status cpu_fast_hadamard(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *ot = a->out_type[0];
  const int64_t d = xt->rank >= 1 ? xt->dims[xt->rank - 1] : 0;
  /* An f32 result is its own workspace; f16/bf16 results (and shapes the graph layer would
   * have rejected) are the reference's. */
  if (d <= 0 || (d & (d - 1)) != 0 || ot->dtype != VNRT_F32 || !float_dtype(xt->dtype)) {
    return cpu_ref_hadamard(a);
  }
  hadamard_job j = {.x = a->in[0],
                    .y = a->out[0],
                    .dx = xt->dtype,
                    .d = d,
                    .scale = (float)(1.0 / sqrt((double)d)),
                    .isa = cpu_fast_isa(a->pool)};
  cpu_pool_parallel_for(a->pool, vnrt_tensor_type_numel(xt) / d, rows_grain(d), hadamard_range, &j);
  return VNRT_OK;
}

/* ---- fake_quant --------------------------------------------------------------------------- */

/* Rows widened into f32 (the f32 result itself, or scratch for an f16/bf16 result) and rounded
 * there in place: e4m3 blocks through the vectorised act_quant rounding (bit-exact with
 * cpu_fake_quant_block), e2m1 blocks through fq_e2m1_block; an f16/bf16 result is then stored
 * rounded to nearest even, as the reference stores it. */
typedef struct fake_quant_job {
  const void *x;
  void *y;
  float *scratch; /* [rows, d] when the result is not f32 */
  vnrt_dtype dx, dy;
  int64_t d;
  const vnrt_fake_quant_params *p;
  cpu_isa isa;
} fake_quant_job;

#if defined(CPU_HAVE_AVX2_CODE)
/* v[0, n) (n a multiple of 8) divided by the power of two s, rounded to the nearest e2m1 level
 * as vnrt_f32_to_e2m1 does and multiplied back: the level index counts the midpoints below
 * |q|, a midpoint itself going to the even index (up past the odd midpoints 0.75, 1.75, 3.5);
 * the level is the sum of the steps (0.5 ×4, 1 ×2, 2) past those midpoints. */
static CPU_AVX2 void avx2_e2m1_round_(float *v, int64_t n, float s) {
  static const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  static const float step[7] = {0.5f, 0.5f, 0.5f, 0.5f, 1.0f, 1.0f, 2.0f};
  const __m256 vs = _mm256_set1_ps(s), sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 q = _mm256_div_ps(_mm256_loadu_ps(v + i), vs); /* exact: s = 2^k */
    const __m256 mag = _mm256_andnot_ps(sign, q);
    __m256 lv = _mm256_setzero_ps();
    for (int k = 0; k < 7; ++k) {
      const __m256 m = _mm256_set1_ps(mid[k]);
      const __m256 past =
          (k & 1) ? _mm256_cmp_ps(mag, m, _CMP_GE_OQ) : _mm256_cmp_ps(mag, m, _CMP_GT_OQ);
      lv = _mm256_add_ps(lv, _mm256_and_ps(past, _mm256_set1_ps(step[k])));
    }
    lv = _mm256_or_ps(lv, _mm256_and_ps(sign, q));
    /* NaN (never past a midpoint) is +6, as vnrt_f32_to_e2m1 codes it (7, no sign) */
    lv = _mm256_blendv_ps(lv, _mm256_set1_ps(6.0f), _mm256_cmp_ps(q, q, _CMP_UNORD_Q));
    _mm256_storeu_ps(v + i, _mm256_mul_ps(lv, vs));
  }
}

#endif

/* One e2m1 block of fake_quant, bit-exact with cpu_fake_quant_block(v, n, VNRT_E2M1). */
static void fq_e2m1_block(cpu_isa isa, float *v, int64_t n) {
#if defined(CPU_HAVE_AVX2_CODE)
  if (isa >= CPU_ISA_AVX2 && n % 8 == 0) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) amax = fmaxf(amax, fabsf(v[i]));
    avx2_e2m1_round_(v, n, vnrt_e8m0_to_f32(vnrt_quant_block_scale(VNRT_E2M1, amax)));
    return;
  }
#endif
  (void)isa;
  cpu_fake_quant_block(v, n, VNRT_E2M1);
}

static void fake_quant_range(void *user, int64_t begin, int64_t end) {
  const fake_quant_job *j = user;
  const int64_t nb = j->p->len / j->p->block; /* whole blocks only, as the reference */
  const bool f32_out = j->dy == VNRT_F32;
  for (int64_t r = begin; r < end; ++r) {
    float *row = (f32_out ? (float *)j->y : j->scratch) + r * j->d;
    if (j->dx == VNRT_F32) {
      if ((const void *)row != (const void *)((const float *)j->x + r * j->d)) {
        memcpy(row, (const float *)j->x + r * j->d, sizeof(float) * (size_t)j->d);
      }
    } else {
      cpu_fast_to_f32(j->isa, (const char *)j->x + (size_t)(r * j->d) * vnrt_dtype_size(j->dx),
                      j->dx, j->d, row);
    }
    if (j->p->fmt == VNRT_E4M3) {
      cpu_fast_act_quant(j->isa, row + j->p->start, j->d, 1, nb * j->p->block, j->p->block);
    } else {
      for (int64_t b = 0; b < nb; ++b) {
        fq_e2m1_block(j->isa, row + j->p->start + b * j->p->block, j->p->block);
      }
    }
    if (!f32_out) {
      cpu_fast_from_f32(j->isa, row, j->d,
                        (char *)j->y + (size_t)(r * j->d) * vnrt_dtype_size(j->dy), j->dy);
    }
  }
}

vnrt_status cpu_fast_fake_quant(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *ot = a->out_type[0];
  const vnrt_fake_quant_params *p = &a->node->params->fake_quant;
  const int64_t d = xt->rank >= 1 ? xt->dims[xt->rank - 1] : 0;
  if (d <= 0 || !float_dtype(ot->dtype) || !float_dtype(xt->dtype) || p->block <= 0 ||
      p->start < 0 || p->len < 0 || p->start + p->len > d ||
      (p->fmt != VNRT_E4M3 && p->fmt != VNRT_E2M1)) {
    return cpu_ref_fake_quant(a);
  }
  const int64_t rows = vnrt_tensor_type_numel(xt) / d;
  fake_quant_job j = {.x = a->in[0],
                      .y = a->out[0],
                      .dx = xt->dtype,
                      .dy = ot->dtype,
                      .d = d,
                      .p = p,
                      .isa = cpu_fast_isa(a->pool)};
  if (ot->dtype != VNRT_F32) {
    vnrt_status st = cpu_fast_alloc(a, rows * d, &j.scratch);
    if (st != VNRT_OK) return st;
  }
  cpu_pool_parallel_for(a->pool, rows, rows_grain(d), fake_quant_range, &j);
  cpu_fast_free(a, j.scratch);
  return VNRT_OK;
}
