/* CPU fast kernels for hc_pre and hc_head, per block of tokens in one work item: the sums of
 * squares, the mixing rows ((n+2)·n for hc_pre, n for hc_head) as one GEMM on the blocked GEMM
 * core, then per token the sigmoids, (hc_pre) Sinkhorn on an n×n array on the stack, and the
 * vectorised collapse of the n streams, all while the block's rows are in cache. With few
 * tokens, fn's rows are split across threads and the per-token epilogue runs as a second
 * step. */
#include <string.h>

#include "fast_gemm.h"

/* Tokens per block: each pass over fn serves all of them, and their n·C rows (64 KiB each for
 * V4's n = 4, C = 4096) are cache-hot from the sum of squares to the collapse. */
#define HC_TB 16
/* fn is widened once per call into rows this many floats longer than n·C, so that its rows
 * (n·C = 16384 floats apart for V4) do not alias in the caches and are read in place. */
#define HC_FN_PAD 16
/* The largest n kept on the stack in the epilogue; larger n goes to the reference kernel. */
#define HC_MAX_N 16

typedef struct hc_pre_job {
  const cpu_kernel_args *a;
  int head; /* hc_head: R = n rows, one scale, one result */
  cpu_isa isa;
  int64_t T, n, C, R, iters;
  float eps, norm_eps;
  const float *X; /* [T, n·C] f32 (the input itself, or a widened copy) */
  const void *fn; /* fn itself (a GEMV reads it in place), or a padded f32 copy */
  vnrt_dtype fn_dt;
  int64_t fn_ld;
  float *fn_copy; /* [R, n·C + HC_FN_PAD] */
  float *mix;     /* [T, R] fn·f, not yet scaled by rsqrt(mean(f²)) */
  float *sumsq;   /* [T] */
  int64_t tb, rb, n_rb;
  float *scratch; /* per slot: slot_floats (GEMM workspace, or C floats of x) */
  int64_t slot_floats;
} hc_pre_job;

static float sigmoid_(float x) { return 1.0f / (1.0f + expf(-x)); }

/* x[t] = Σ_q w[q]·X[t, q]: stream q outer, channels inner (vectorised); each channel still sums
 * over the streams in ascending order as the reference does. acc: C floats of scratch (used
 * when x is not f32). */
static void hc_collapse_(const hc_pre_job *j, int64_t t, const float *w, float *acc) {
  const cpu_kernel_args *a = j->a;
  const int64_t C = j->C;
  const vnrt_dtype xdt = a->out_type[0]->dtype;
  float *x = xdt == VNRT_F32 ? (float *)a->out[0] + t * C : acc;
  const float *Xt = j->X + t * j->n * C;
  for (int64_t c = 0; c < C; ++c) x[c] = 0.0f;
  for (int64_t q = 0; q < j->n; ++q) cpu_fast_axpy(j->isa, w[q], Xt + q * C, x, C);
  if (xdt != VNRT_F32) {
    cpu_fast_from_f32(j->isa, acc, C, (char *)a->out[0] + (size_t)(t * C) * vnrt_dtype_size(xdt),
                      xdt);
  }
}

/* Token t's epilogue: pre/post/comb from its mix row and sum of squares (hc_head: the weights
 * w_j alone), then x[t] = Σ_j pre_j·X[t, j]. acc: C floats of scratch (used when x is not
 * f32). */
static void hc_epilogue_(const hc_pre_job *j, int64_t t, float *acc) {
  const cpu_kernel_args *a = j->a;
  const int64_t n = j->n, C = j->C, nc = n * C;
  const vnrt_dtype sdt = a->in_type[2]->dtype, bdt = a->in_type[3]->dtype;
  const float inv_rms = 1.0f / sqrtf(j->sumsq[t] / (float)nc + j->norm_eps);
  const float *mix = j->mix + t * j->R;
  /* pre (hc_head: its weights w_j) from the first n mix values and scale 0 */
  float pre[HC_MAX_N], L[HC_MAX_N * HC_MAX_N];
  const float s_pre = cpu_load_f32(a->in[2], sdt, 0);
  for (int64_t q = 0; q < n; ++q) {
    pre[q] = sigmoid_(mix[q] * inv_rms * s_pre + cpu_load_f32(a->in[3], bdt, q)) + j->eps;
  }
  if (!j->head) {
    const float s_post = cpu_load_f32(a->in[2], sdt, 1), s_comb = cpu_load_f32(a->in[2], sdt, 2);
    for (int64_t q = 0; q < n; ++q) {
      const float post =
          2.0f * sigmoid_(mix[n + q] * inv_rms * s_post + cpu_load_f32(a->in[3], bdt, n + q));
      cpu_store_f32(a->out[1], a->out_type[1]->dtype, t * n + q, post);
    }
    for (int64_t r = 0; r < n * n; ++r) {
      L[r] = mix[2 * n + r] * inv_rms * s_comb + cpu_load_f32(a->in[3], bdt, 2 * n + r);
    }
    cpu_sinkhorn_inplace(L, n, j->iters, j->eps);
    for (int64_t r = 0; r < n * n; ++r) {
      cpu_store_f32(a->out[2], a->out_type[2]->dtype, t * n * n + r, L[r]);
    }
  }
  hc_collapse_(j, t, pre, acc);
}

/* mix for one token block and one block of fn rows; the first row block also takes the
 * tokens' sums of squares, and when it is the only one (many tokens) the epilogue follows in
 * the same item while the block's rows are still in L2. */
static void hc_block_item_(void *user, int64_t item, int32_t slot) {
  const hc_pre_job *j = user;
  const int64_t t0 = (item / j->n_rb) * j->tb, r0 = (item % j->n_rb) * j->rb;
  const int64_t tb = j->T - t0 < j->tb ? j->T - t0 : j->tb;
  const int64_t rb = j->R - r0 < j->rb ? j->R - r0 : j->rb;
  const int64_t nc = j->n * j->C;
  float *ws = j->scratch + slot * j->slot_floats;
  const char *fn = (const char *)j->fn + (size_t)(r0 * j->fn_ld) * vnrt_dtype_size(j->fn_dt);
  /* The first row block also takes its tokens' sums of squares, in the same pass over X. */
  cpu_gemm_nt_block_sumsq(j->isa, j->X + t0 * nc, nc, tb, fn, j->fn_dt, j->fn_ld, rb, nc,
                          j->mix + t0 * j->R + r0, j->R, ws, r0 == 0 ? j->sumsq + t0 : NULL);
  if (j->n_rb == 1) {
    for (int64_t t = t0; t < t0 + tb; ++t) hc_epilogue_(j, t, ws);
  }
}

/* Row r of fn, widened into the padded f32 copy. */
static void hc_fn_item_(void *user, int64_t r, int32_t slot) {
  (void)slot;
  const hc_pre_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t nc = j->n * j->C;
  const vnrt_dtype fdt = a->in_type[1]->dtype;
  cpu_fast_to_f32(j->isa, (const char *)a->in[1] + (size_t)(r * nc) * vnrt_dtype_size(fdt), fdt, nc,
                  j->fn_copy + r * (nc + HC_FN_PAD));
}

/* The epilogue on its own, when fn's rows were split across items; 4 tokens per item. */
static void hc_epilogue_item_(void *user, int64_t item, int32_t slot) {
  const hc_pre_job *j = user;
  for (int64_t t = item * 4; t < j->T && t < (item + 1) * 4; ++t) {
    hc_epilogue_(j, t, j->scratch + slot * j->slot_floats);
  }
}

static int64_t ceil_div_(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- a few tokens (decode): fn split by rows and by K ------------------------------------ */

/* Tokens up to which hc_pre and hc_head run as GEMVs over fn read in place. With T = 1 there
 * are only (n+2)·n = 24 rows (hc_head: n = 4, a single 8-row block, so all its items are K
 * pieces), so fn (n·C columns) is also split along K, in pieces of a fixed size so that each
 * output's summation order depends on the shape alone, never on the threads. */
#define HC_SMALL_T 4
#define HC_SMALL_RB 8
#define HC_SMALL_KS 1024

typedef struct hc_small_job {
  const hc_pre_job *j;
  int64_t n_rb, n_ks;
  float *part_mix; /* [n_ks, T, R] */
  float *part_ss;  /* [n_ks, T] */
} hc_small_job;

static void hc_small_item_(void *user, int64_t item, int32_t slot) {
  (void)slot;
  const hc_small_job *sj = user;
  const hc_pre_job *j = sj->j;
  const int64_t rbi = item % sj->n_rb, ki = item / sj->n_rb;
  const int64_t r0 = rbi * HC_SMALL_RB, k0 = ki * HC_SMALL_KS, nc = j->n * j->C;
  const int64_t rb = j->R - r0 < HC_SMALL_RB ? j->R - r0 : HC_SMALL_RB;
  const int64_t kc = nc - k0 < HC_SMALL_KS ? nc - k0 : HC_SMALL_KS;
  const char *fn = (const char *)j->fn + (size_t)(r0 * j->fn_ld + k0) * vnrt_dtype_size(j->fn_dt);
  cpu_gemm_nt_block_sumsq(j->isa, j->X + k0, nc, j->T, fn, j->fn_dt, j->fn_ld, rb, kc,
                          sj->part_mix + ki * j->T * j->R + r0, j->R, NULL,
                          rbi == 0 ? sj->part_ss + ki * j->T : NULL);
}

static vnrt_status hc_pre_small_(hc_pre_job *j) {
  const cpu_kernel_args *a = j->a;
  const int64_t nc = j->n * j->C;
  hc_small_job sj = {.j = j};
  sj.n_rb = ceil_div_(j->R, HC_SMALL_RB);
  sj.n_ks = ceil_div_(nc, HC_SMALL_KS);
  const int64_t xf_floats = a->in_type[0]->dtype == VNRT_F32 ? 0 : j->T * nc;
  const int64_t acc_floats = a->out_type[0]->dtype == VNRT_F32 ? 0 : j->C;
  float *mem = NULL;
  vnrt_status st =
      cpu_fast_alloc(a, (sj.n_ks + 1) * j->T * (j->R + 1) + xf_floats + acc_floats, &mem);
  if (st != VNRT_OK) return st;
  sj.part_mix = mem;
  sj.part_ss = sj.part_mix + sj.n_ks * j->T * j->R;
  j->mix = sj.part_ss + sj.n_ks * j->T;
  j->sumsq = j->mix + j->T * j->R;
  float *acc = j->sumsq + j->T;
  if (xf_floats > 0) {
    float *xf = acc + acc_floats;
    cpu_fast_to_f32(j->isa, a->in[0], a->in_type[0]->dtype, j->T * nc, xf);
    j->X = xf;
  } else {
    j->X = a->in[0];
  }
  j->fn = a->in[1];
  j->fn_dt = a->in_type[1]->dtype;
  j->fn_ld = nc;
  cpu_fast_for_each(a->pool, sj.n_rb * sj.n_ks, hc_small_item_, &sj);
  /* The K pieces add up in ascending order; the epilogue (Sinkhorn on n×n, the collapse of
   * n·C floats) is a few µs for a few tokens: this thread does it. */
  for (int64_t t = 0; t < j->T; ++t) {
    for (int64_t r = 0; r < j->R; ++r) {
      float m = 0.0f;
      for (int64_t ki = 0; ki < sj.n_ks; ++ki) m += sj.part_mix[(ki * j->T + t) * j->R + r];
      j->mix[t * j->R + r] = m;
    }
    float ss = 0.0f;
    for (int64_t ki = 0; ki < sj.n_ks; ++ki) ss += sj.part_ss[ki * j->T + t];
    j->sumsq[t] = ss;
    hc_epilogue_(j, t, acc);
  }
  cpu_fast_free(a, mem);
  return VNRT_OK;
}

/* hc_pre, or with head set hc_head (the same inputs: X, fn, scale, base), on the shapes the
 * reference accepts; anything else goes to `ref`, which reports it. */
static vnrt_status hc_run_(const cpu_kernel_args *a, int head, cpu_kernel_fn ref) {
  const vnrt_tensor_type *Xt = a->in_type[0], *ft = a->in_type[1];
  if (Xt->rank < 2 || ft->rank != 2 || a->n_in < 4) return ref(a);
  hc_pre_job j = {
      .a = a,
      .head = head,
      .isa = cpu_fast_isa(a->pool),
      .n = Xt->dims[Xt->rank - 2],
      .C = Xt->dims[Xt->rank - 1],
      .iters = head ? 0 : a->node->params->hc_pre.iters,
      .eps = (float)(head ? a->node->params->hc_head.eps : a->node->params->hc_pre.eps),
      .norm_eps =
          (float)(head ? a->node->params->hc_head.norm_eps : a->node->params->hc_pre.norm_eps),
  };
  const int64_t nc = j.n * j.C;
  j.R = head ? j.n : (j.n + 2) * j.n;
  j.T = nc > 0 ? vnrt_tensor_type_numel(Xt) / nc : 0;
  if (j.T == 0 || j.n < 1 || j.n > HC_MAX_N || ft->dims[0] != j.R || ft->dims[1] != nc ||
      vnrt_tensor_type_numel(a->in_type[3]) < j.R ||
      vnrt_tensor_type_numel(a->in_type[2]) < (head ? 1 : 3)) {
    return ref(a);
  }

  if (j.T <= HC_SMALL_T && (j.isa >= CPU_ISA_AVX2 || ft->dtype == VNRT_F32)) {
    return hc_pre_small_(&j);
  }

  /* Token blocks of HC_TB; when they are too few to occupy every thread, fn's rows are split
   * too (each item then streams part of fn). */
  const int64_t threads = cpu_pool_threads(a->pool);
  j.tb = j.T < HC_TB ? j.T : HC_TB;
  const int64_t n_tb = ceil_div_(j.T, j.tb);
  j.rb = j.R;
  if (n_tb < 2 * threads) j.rb = ceil_div_(j.R, ceil_div_(4 * threads, n_tb));
  j.n_rb = ceil_div_(j.R, j.rb);

  j.slot_floats = CPU_GEMM_WS_FLOATS > j.C ? CPU_GEMM_WS_FLOATS : j.C;
  const int64_t xf_floats = Xt->dtype == VNRT_F32 ? 0 : j.T * nc;
  float *mem = NULL;
  /* The AVX2 GEMM core reads fn in place (widening f16/bf16 in registers), as does a GEMV (a
   * few tokens) on any path; the portable path's larger blocks read a padded f32 copy. */
  const int copy_fn = j.tb > 4 && j.isa < CPU_ISA_AVX2;
  const int64_t fn_floats = copy_fn ? j.R * (nc + HC_FN_PAD) : 0;
  vnrt_status st =
      cpu_fast_alloc(a, j.T * (j.R + 1) + fn_floats + xf_floats + threads * j.slot_floats, &mem);
  if (st != VNRT_OK) return st;
  j.mix = mem;
  j.sumsq = j.mix + j.T * j.R;
  j.fn_copy = j.sumsq + j.T;
  j.scratch = j.fn_copy + fn_floats;
  j.fn = copy_fn ? (const void *)j.fn_copy : a->in[1];
  j.fn_dt = copy_fn ? VNRT_F32 : ft->dtype;
  j.fn_ld = copy_fn ? nc + HC_FN_PAD : nc;
  if (xf_floats > 0) {
    float *xf = j.scratch + threads * j.slot_floats;
    cpu_fast_to_f32(j.isa, a->in[0], Xt->dtype, j.T * nc, xf);
    j.X = xf;
  } else {
    j.X = a->in[0];
  }
  if (copy_fn) cpu_fast_for_each(a->pool, j.R, hc_fn_item_, &j);
  cpu_fast_for_each(a->pool, n_tb * j.n_rb, hc_block_item_, &j);
  if (j.n_rb > 1) cpu_fast_for_each(a->pool, ceil_div_(j.T, 4), hc_epilogue_item_, &j);
  cpu_fast_free(a, mem);
  return VNRT_OK;
}

vnrt_status cpu_fast_hc_pre(const cpu_kernel_args *a) { return hc_run_(a, 0, cpu_ref_hc_pre); }

vnrt_status cpu_fast_hc_head(const cpu_kernel_args *a) { return hc_run_(a, 1, cpu_ref_hc_head); }

/* ---- hc_post ----------------------------------------------------------------------------- */

/* Channels per hc_post work item, and the output size below which hc_post and hc_expand run on
 * one thread (a decode step's n·C values, 16384 for V4: a few µs of work, about a pool
 * wake-up). */
#define HC_POST_CB 512
#define HC_INLINE_VALUES 32768

typedef struct hc_post_job {
  cpu_isa isa;
  int64_t T, n, C, n_cb;
  const float *X, *y, *post, *comb;
  float *out;
} hc_post_job;

#if defined(CPU_HAVE_AVX2_CODE)
/* o[c] = p·y[c] + Σ_j w[j·n]·X[j·C + c] for c < cb, j ascending (w: comb column k). */
static CPU_AVX2 void hc_post_avx2_(const float *X, const float *y, float p, const float *w,
                                   int64_t n, int64_t C, int64_t cb, float *o) {
  const __m256 pv = _mm256_set1_ps(p);
  int64_t c = 0;
  for (; c + 8 <= cb; c += 8) {
    __m256 acc = _mm256_mul_ps(pv, _mm256_loadu_ps(y + c));
    for (int64_t jj = 0; jj < n; ++jj) {
      acc = _mm256_fmadd_ps(_mm256_set1_ps(w[jj * n]), _mm256_loadu_ps(X + jj * C + c), acc);
    }
    _mm256_storeu_ps(o + c, acc);
  }
  for (; c < cb; ++c) {
    float acc = p * y[c];
    for (int64_t jj = 0; jj < n; ++jj) acc += w[jj * n] * X[jj * C + c];
    o[c] = acc;
  }
}
#endif

/* out[t, k, c] = post[t, k]·y[t, c] + Σ_j comb[t, j, k]·X[t, j, c] (comb applied transposed,
 * as docs/ops.md says) for one token and one block of channels, every k. */
static void hc_post_item_(void *user, int64_t item, int32_t slot) {
  (void)slot;
  const hc_post_job *j = user;
  const int64_t t = item / j->n_cb, c0 = (item % j->n_cb) * HC_POST_CB;
  const int64_t n = j->n, C = j->C, cb = C - c0 < HC_POST_CB ? C - c0 : HC_POST_CB;
  const float *X = j->X + t * n * C + c0, *y = j->y + t * C + c0;
  for (int64_t k = 0; k < n; ++k) {
    const float p = j->post[t * n + k], *w = j->comb + t * n * n + k;
    float *o = j->out + (t * n + k) * C + c0;
#if defined(CPU_HAVE_AVX2_CODE)
    if (j->isa >= CPU_ISA_AVX2) {
      hc_post_avx2_(X, y, p, w, n, C, cb, o);
      continue;
    }
#endif
    for (int64_t c = 0; c < cb; ++c) {
      float acc = p * y[c];
      for (int64_t jj = 0; jj < n; ++jj) acc += w[jj * n] * X[jj * C + c];
      o[c] = acc;
    }
  }
}

static int hc_float_dtype_(vnrt_dtype dt) {
  return dt == VNRT_F32 || dt == VNRT_F16 || dt == VNRT_BF16;
}

vnrt_status cpu_fast_hc_post(const cpu_kernel_args *a) {
  const vnrt_tensor_type *Xt = a->in_type[0];
  const vnrt_dtype xdt = Xt->dtype, ydt = a->in_type[1]->dtype, odt = a->out_type[0]->dtype;
  if (Xt->rank < 2 || !hc_float_dtype_(xdt) || !hc_float_dtype_(ydt) || !hc_float_dtype_(odt) ||
      a->in_type[2]->dtype != VNRT_F32 || a->in_type[3]->dtype != VNRT_F32) {
    return cpu_ref_hc_post(a);
  }
  hc_post_job j = {
      .isa = cpu_fast_isa(a->pool),
      .n = Xt->dims[Xt->rank - 2],
      .C = Xt->dims[Xt->rank - 1],
      .X = a->in[0],
      .y = a->in[1],
      .post = a->in[2],
      .comb = a->in[3],
      .out = a->out[0],
  };
  const int64_t nc = j.n * j.C;
  j.T = nc > 0 ? vnrt_tensor_type_numel(Xt) / nc : 0;
  if (j.T == 0 || vnrt_tensor_type_numel(a->in_type[1]) != j.T * j.C ||
      vnrt_tensor_type_numel(a->in_type[2]) != j.T * j.n ||
      vnrt_tensor_type_numel(a->in_type[3]) != j.T * j.n * j.n) {
    return cpu_ref_hc_post(a);
  }
  /* f16/bf16 X, y or result (the V4 graph's reference numerics keep the residual streams in
   * bf16): widened exactly into f32 scratch, and the f32 sums rounded once into the result, as
   * the reference kernel rounds its f32 sums. */
  const int64_t xf = xdt == VNRT_F32 ? 0 : j.T * nc, yf = ydt == VNRT_F32 ? 0 : j.T * j.C;
  const int64_t of = odt == VNRT_F32 ? 0 : j.T * nc;
  float *mem = NULL;
  if (xf + yf + of > 0) {
    vnrt_status st = cpu_fast_alloc(a, xf + yf + of, &mem);
    if (st != VNRT_OK) return st;
    if (xf) cpu_fast_to_f32(j.isa, a->in[0], xdt, xf, mem), j.X = mem;
    if (yf) cpu_fast_to_f32(j.isa, a->in[1], ydt, yf, mem + xf), j.y = mem + xf;
    if (of) j.out = mem + xf + yf;
  }
  j.n_cb = ceil_div_(j.C, HC_POST_CB);
  const int64_t items = j.T * j.n_cb;
  if (j.T * nc < HC_INLINE_VALUES) {
    for (int64_t it = 0; it < items; ++it) hc_post_item_(&j, it, 0);
  } else {
    cpu_fast_for_each(a->pool, items, hc_post_item_, &j);
  }
  if (of) cpu_fast_from_f32(j.isa, j.out, of, a->out[0], odt);
  cpu_fast_free(a, mem);
  return VNRT_OK;
}

/* ---- hc_expand --------------------------------------------------------------------------- */

typedef struct hc_expand_job {
  const char *x;
  char *out;
  int64_t n;
  size_t row; /* bytes of one token's row */
} hc_expand_job;

static void hc_expand_item_(void *user, int64_t t, int32_t slot) {
  (void)slot;
  const hc_expand_job *j = user;
  const char *x = j->x + (size_t)t * j->row;
  char *o = j->out + (size_t)(t * j->n) * j->row;
  for (int64_t q = 0; q < j->n; ++q) memcpy(o + (size_t)q * j->row, x, j->row);
}

/* X[t, j] = x[t] for j < n, x's dtype kept (the graph types the result so): row copies, one
 * token an item, over the pool only past HC_INLINE_VALUES values (V4's decode step expands
 * n·C = 16384 values, a few µs of copying: less than waking a worker). */
vnrt_status cpu_fast_hc_expand(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *ot = a->out_type[0];
  if (xt->rank < 1 || ot->rank < 2 || xt->dtype != ot->dtype) return cpu_ref_hc_expand(a);
  const int64_t C = xt->dims[xt->rank - 1], n = ot->dims[ot->rank - 2];
  const int64_t T = C > 0 ? vnrt_tensor_type_numel(xt) / C : 0;
  if (T == 0 || n < 1 || vnrt_tensor_type_numel(ot) != T * n * C) return cpu_ref_hc_expand(a);
  hc_expand_job j = {
      .x = a->in[0], .out = a->out[0], .n = n, .row = (size_t)C * vnrt_dtype_size(xt->dtype)};
  if (T * n * C < HC_INLINE_VALUES) {
    for (int64_t t = 0; t < T; ++t) hc_expand_item_(&j, t, 0);
  } else {
    cpu_fast_for_each(a->pool, T, hc_expand_item_, &j);
  }
  return VNRT_OK;
}
