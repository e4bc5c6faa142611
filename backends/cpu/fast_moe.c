/* CPU fast kernel for moe_ffn: tokens grouped by expert, each expert's gate/up and down run as
 * small GEMMs on the blocked GEMM core (quantized experts through fast_quant.c), then a weighted
 * combine in a fixed order per token. */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "fast_gemm.h"
#include "fast_quant.h"

/* Row blocks: an expert's routed tokens in chunks of at most this many (an x block that fits
 * the GEMM core's packing). Column blocks: F (gate/up) and C (down) outputs per work item. */
#define MOE_MB 64
#define MOE_FB 64
#define MOE_CB 128

/* h[f] = swiglu(g[f], u[f], limit) for f < n: g·sigmoid(g)·u with g clamped above and u both
 * ways by limit (0: none), as g / (1 + e^-g) · u. AVX2 takes e^x from simd.h (relative error
 * about 2e-7 where expf has 1 ulp; swiglu ran a scalar expf per value). */
#if defined(CPU_HAVE_AVX2_CODE)
static CPU_AVX2 int64_t swiglu_avx2_(const float *g, const float *u, float *h, int64_t n,
                                     float limit) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 lim = _mm256_set1_ps(limit), nlim = _mm256_set1_ps(-limit);
  int64_t f = 0;
  for (; f + 8 <= n; f += 8) {
    __m256 gv = _mm256_loadu_ps(g + f), uv = _mm256_loadu_ps(u + f);
    if (limit > 0.0f) {
      /* The scalar order: a NaN g becomes limit, a NaN u stays NaN (minps/maxps return their
       * second operand where either is NaN). */
      gv = _mm256_min_ps(gv, lim);
      uv = _mm256_max_ps(nlim, _mm256_min_ps(lim, uv));
    }
    const __m256 e = avx2_exp(_mm256_sub_ps(zero, gv));
    _mm256_storeu_ps(h + f, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), uv));
  }
  return f;
}
#endif

static void moe_swiglu_(cpu_isa isa, const float *g, const float *u, float *h, int64_t n,
                        float limit) {
  int64_t f = 0;
#if defined(CPU_HAVE_AVX2_CODE)
  if (isa >= CPU_ISA_AVX2) f = swiglu_avx2_(g, u, h, n, limit);
#else
  (void)isa;
#endif
  for (; f < n; ++f) {
    float gv = g[f], uv = u[f];
    if (limit > 0.0f) {
      gv = gv < limit ? gv : limit;
      uv = uv < -limit ? -limit : (uv > limit ? limit : uv);
    }
    h[f] = gv / (1.0f + expf(-gv)) * uv;
  }
}

typedef struct moe_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t T, C, F, k, n_slots;
  float limit;
  const int32_t *experts;
  int32_t *slot_of;   /* [T·k]: the row of (t, i) in the grouped buffers */
  int32_t *token_of;  /* [T·k]: the token of each grouped row */
  int64_t *rb_expert; /* per row block: its expert, first grouped row, and row count */
  int64_t *rb_row, *rb_rows;
  int64_t n_rb;
  float *xg;      /* [T·k, C] x rows grouped by expert (f32) */
  float *h;       /* [T·k, F] swiglu(gate, up) per grouped row */
  float *yp;      /* [T·k, C] down projection per grouped row */
  float *scratch; /* per slot: GEMM workspace (ws_floats) + gate and up tiles */
  int64_t slot_floats, ws_floats;
  const cpu_weight *wgu, *wd; /* the expert weights: float, or codes with scales */
  int32_t act_quant;          /* 0, or the channels per e4m3 block of x and of h */
  float *wt_of;               /* [T·k]: the routing weight of each grouped row (act_quant) */
} moe_job;

/* Grouped row r <- x[token_of[r]], widened to f32; items are 16 rows. */
static void gather_item_(void *user, int64_t item, int32_t slot) {
  (void)slot;
  const moe_job *j = user;
  const cpu_kernel_args *a = j->a;
  const size_t xsz = vnrt_dtype_size(a->in_type[0]->dtype);
  for (int64_t r = item * 16; r < j->n_slots && r < (item + 1) * 16; ++r) {
    const char *src = (const char *)a->in[0] + (size_t)(j->token_of[r] * j->C) * xsz;
    cpu_fast_to_f32(j->isa, src, a->in_type[0]->dtype, j->C, j->xg + r * j->C);
    cpu_fast_act_quant(j->isa, j->xg + r * j->C, j->C, 1, j->C, j->act_quant);
  }
}

/* h[rows, f0:f0+fb] = swiglu(x·gateᵀ, x·upᵀ) for one row block and one F block. */
static void gate_up_item_(void *user, int64_t item, int32_t slot) {
  const moe_job *j = user;
  const int64_t n_fb = (j->F + MOE_FB - 1) / MOE_FB;
  const int64_t rb = item / n_fb, f0 = (item % n_fb) * MOE_FB;
  const int64_t fb = j->F - f0 < MOE_FB ? j->F - f0 : MOE_FB;
  const int64_t e = j->rb_expert[rb], r0 = j->rb_row[rb], mb = j->rb_rows[rb];
  float *ws = j->scratch + slot * j->slot_floats;
  float *g = ws + j->ws_floats, *u = g + MOE_MB * MOE_FB;
  const float *x = j->xg + r0 * j->C;
  cpu_qgemm_nt_block(j->isa, x, j->C, mb, j->wgu, e, f0, fb, g, fb, ws);
  cpu_qgemm_nt_block(j->isa, x, j->C, mb, j->wgu, e, j->F + f0, fb, u, fb, ws);
  for (int64_t i = 0; i < mb; ++i) {
    moe_swiglu_(j->isa, g + i * fb, u + i * fb, j->h + (r0 + i) * j->F + f0, fb, j->limit);
  }
}

/* yp[rows, c0:c0+cb] = h[rows]·downᵀ for one row block and one C block. */
static void down_item_(void *user, int64_t item, int32_t slot) {
  const moe_job *j = user;
  const int64_t n_cb = (j->C + MOE_CB - 1) / MOE_CB;
  const int64_t rb = item / n_cb, c0 = (item % n_cb) * MOE_CB;
  const int64_t cb = j->C - c0 < MOE_CB ? j->C - c0 : MOE_CB;
  const int64_t e = j->rb_expert[rb], r0 = j->rb_row[rb], mb = j->rb_rows[rb];
  cpu_qgemm_nt_block(j->isa, j->h + r0 * j->F, j->F, mb, j->wd, e, c0, cb, j->yp + r0 * j->C + c0,
                     j->C, j->scratch + slot * j->slot_floats);
}

/* act_quant: grouped row r's h times its routing weight, rounded to e4m3 per block (DeepSeek's
 * order, docs/ops.md); 16 rows per item. */
static void h_quant_item_(void *user, int64_t item, int32_t slot) {
  (void)slot;
  const moe_job *j = user;
  for (int64_t r = item * 16; r < j->n_slots && r < (item + 1) * 16; ++r) {
    float *hrow = j->h + r * j->F;
    for (int64_t f = 0; f < j->F; ++f) hrow[f] *= j->wt_of[r];
    cpu_fast_act_quant(j->isa, hrow, j->F, 1, j->F, j->act_quant);
  }
}

/* y[t] = Σ_i weights[t, i]·yp[slot_of(t, i)], i ascending as in the reference; 8 tokens per
 * item. */
static void combine_item_(void *user, int64_t item, int32_t slot) {
  const moe_job *j = user;
  const cpu_kernel_args *a = j->a;
  const vnrt_dtype wdt = a->in_type[2]->dtype, odt = a->out_type[0]->dtype;
  const int64_t C = j->C;
  float *acc = j->scratch + slot * j->slot_floats; /* C floats (slot_floats >= C) */
  for (int64_t t = item * 8; t < j->T && t < (item + 1) * 8; ++t) {
    float *dst = odt == VNRT_F32 ? (float *)a->out[0] + t * C : acc;
    for (int64_t c = 0; c < C; ++c) dst[c] = 0.0f;
    for (int64_t i = 0; i < j->k; ++i) {
      /* With act_quant the weight was applied to h already. */
      const float w = j->act_quant > 0 ? 1.0f : cpu_load_f32(a->in[2], wdt, t * j->k + i);
      const float *row = j->yp + (int64_t)j->slot_of[t * j->k + i] * C;
      for (int64_t c = 0; c < C; ++c) dst[c] += w * row[c];
    }
    if (odt != VNRT_F32) {
      for (int64_t c = 0; c < C; ++c) cpu_store_f32(a->out[0], odt, t * C + c, acc[c]);
    }
  }
}

/* ---- a few tokens (decode): one GEMV per routed slot ------------------------------------ */

/* Tokens up to which each (token, slot) pair runs as its own GEMV, reading its expert's rows
 * in place: nothing to group, and two passes over the pool instead of four. */
#define MOE_SMALL_T 4
/* Rows of down (outputs) per work item of the second pass. */
#define MOE_SMALL_CB 512

typedef struct moe_small_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t T, C, F, k, fb, n_fb, n_cb;
  float limit;
  const int32_t *experts;
  const float *x; /* [T, C] f32 */
  float *h;       /* [T·k, F] swiglu(gate, up) per slot */
  float *yp;      /* [T·k, C] each slot's down projection */
  float *tiles;   /* per thread slot: gate and up (2·fb) */
  int64_t tile_floats;
} moe_small_job;

/* h[s, f0:f0+fb] for slot s = item / n_fb. */
static void small_gate_up_item_(void *user, int64_t item, int32_t slot) {
  const moe_small_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t s = item / j->n_fb, f0 = (item % j->n_fb) * j->fb;
  const int64_t fb = j->F - f0 < j->fb ? j->F - f0 : j->fb;
  const int64_t e = j->experts[s], t = s / j->k;
  const vnrt_dtype wdt = a->in_type[3]->dtype;
  const size_t wsz = vnrt_dtype_size(wdt);
  const char *wgu = (const char *)a->in[3];
  const char *wg = wgu + (size_t)((e * 2 * j->F + f0) * j->C) * wsz;
  const char *wu = wgu + (size_t)((e * 2 * j->F + j->F + f0) * j->C) * wsz;
  float *g = j->tiles + slot * j->tile_floats, *u = g + j->fb;
  const float *x = j->x + t * j->C;
  cpu_gemm_nt_block(j->isa, x, j->C, 1, wg, wdt, j->C, fb, j->C, g, fb, NULL);
  cpu_gemm_nt_block(j->isa, x, j->C, 1, wu, wdt, j->C, fb, j->C, u, fb, NULL);
  moe_swiglu_(j->isa, g, u, j->h + s * j->F + f0, fb, j->limit);
}

/* yp[s, c0:c0+cb] = h[s]·down[e_s, c0:c0+cb]ᵀ for slot s = item / n_cb: a contiguous run of
 * cb rows of one expert's down matrix (rows of F elements are short, so whole blocks of them
 * stream better than a few rows of every slot). */
static void small_down_item_(void *user, int64_t item, int32_t slot) {
  (void)slot;
  const moe_small_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t s = item / j->n_cb, c0 = (item % j->n_cb) * MOE_SMALL_CB;
  const int64_t cb = j->C - c0 < MOE_SMALL_CB ? j->C - c0 : MOE_SMALL_CB;
  const vnrt_dtype wdt = a->in_type[4]->dtype;
  const int64_t e = j->experts[s];
  const char *wd = (const char *)a->in[4] + (size_t)((e * j->C + c0) * j->F) * vnrt_dtype_size(wdt);
  cpu_gemm_nt_block(j->isa, j->h + s * j->F, j->F, 1, wd, wdt, j->F, cb, j->F,
                    j->yp + s * j->C + c0, j->C, NULL);
}

/* ---- a few tokens, quantized or act_quant: expert rows split across the threads ---------- */

/* The few-token path of quantized experts (and of act_quant): the routed rows grouped by
 * expert, up to GEMM-MR (4) rows of one expert to a group (each expert's weights then stream
 * once however many of the tokens chose it). Two pool passes: (group, block of F) items run
 * gate/up and swiglu into h, then (group, block of C) items the down projection. The blocks
 * split an expert's rows across the threads (T = 1 routes 6 experts: whole experts on 2 or 4
 * threads balance badly, and a late thread holds the call); each output row's sum does not
 * depend on the block it falls in, so neither do the results on the thread count. */
#define MOE_FUSED_MR 4
/* Groups below which the two-pass path of float weights (moe_ffn_small_) runs instead. */
#define MOE_FUSED_MIN_ITEMS 4
/* Items per thread the blocks aim at, and the smallest blocks (F: the act_quant block, so
 * that an item rounds whole blocks of h; C: a few 4-row groups). */
#define MOE_FUSED_ITEMS_PER_THREAD 4
#define MOE_FUSED_MIN_FB 128
#define MOE_FUSED_MIN_CB 64

typedef struct moe_fused_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t C, F, k;
  float limit;
  const int32_t *it_expert; /* per group: expert, first grouped row, rows */
  const int32_t *it_row, *it_rows;
  int64_t fb, n_fb, cb, n_cb; /* the F and C blocks of the two passes */
  const float *xg;            /* [T·k, C] x rows grouped by expert (act_quant applied) */
  float *h;                   /* [T·k, F] swiglu per grouped row (weighted and rounded) */
  float *yp;                  /* [T·k, C] down projection per grouped row */
  float *tiles;               /* per thread slot: gate/up [4, 2·fb], then quantized-GEMV scratch */
  int64_t tile_floats;
  const cpu_weight *wgu, *wd; /* the expert weights: float, or codes with scales */
  int32_t act_quant;          /* 0, or the channels per e4m3 block of x and of h */
  const float *wt_of;         /* [T·k]: the routing weight of each grouped row */
  /* FP4 experts on the AVX-512 nibble kernel (cpu_qgemv_e2m1p): whether gate/up and down take
   * it, and the rows of x and of h it reads, permuted once per call (one-row groups). */
  int gu_p, d_p;
  const float *xgp; /* [T·k, C] */
  float *hp;        /* [T·k, F] */
  int64_t n_gu;     /* gate/up items; the down items follow them in the same pass */
  int64_t n_items, threads;
  atomic_int *gu_done; /* per group: its gate/up items finished */
} moe_fused_job;

/* The first weight byte item (of the one pass) reads when it runs on cpu_qgemv_e2m1p, else
 * NULL. An item's last GEMV prefetches the item `threads` on as its rows run out: items are
 * claimed in order, so that is the likeliest next item of the same thread. */
static const uint8_t *fused_item_rows_(const moe_fused_job *j, int64_t item) {
  if (item >= j->n_items) return NULL;
  if (item < j->n_gu) {
    const int64_t g = item / j->n_fb, f0 = (item % j->n_fb) * j->fb;
    if (!j->gu_p || j->it_rows[g] != 1) return NULL;
    const cpu_weight *w = j->wgu;
    return (const uint8_t *)w->data + ((j->it_expert[g] * w->rows + f0) * j->C) / 2;
  }
  item -= j->n_gu;
  const int64_t g = item / j->n_cb, c0 = (item % j->n_cb) * j->cb;
  if (!j->d_p || j->it_rows[g] != 1) return NULL;
  const cpu_weight *w = j->wd;
  return (const uint8_t *)w->data + ((j->it_expert[g] * w->rows + c0) * j->F) / 2;
}

/* h[group rows, f0:f0+fb] = swiglu(x·gate[f0:f0+fb]ᵀ, x·up[f0:f0+fb]ᵀ) (act_quant: times the
 * routing weight, rounded to e4m3 per block). */
static void fused_gate_up_item_(void *user, int64_t item, int32_t slot) {
  const moe_fused_job *j = user;
  const int64_t C = j->C, F = j->F, g = item / j->n_fb, f0 = (item % j->n_fb) * j->fb;
  const int64_t fb = F - f0 < j->fb ? F - f0 : j->fb;
  const int64_t e = j->it_expert[g], r0 = j->it_row[g], m = j->it_rows[g];
  float *gt = j->tiles + slot * j->tile_floats, *ut = gt + MOE_FUSED_MR * j->fb;
  float *qws = ut + MOE_FUSED_MR * j->fb;
  const float *x = j->xg + r0 * C;
  if (j->gu_p && m == 1) {
    /* The up rows are read right after the gate rows: the gate call prefetches them. */
    const cpu_weight *w = j->wgu;
    const uint8_t *up = (const uint8_t *)w->data + ((e * w->rows + F + f0) * C) / 2;
    cpu_qgemv_e2m1p(j->isa, j->xgp + r0 * C, x, w, e, f0, fb, gt, up, qws);
    cpu_qgemv_e2m1p(j->isa, j->xgp + r0 * C, x, w, e, F + f0, fb, ut,
                    fused_item_rows_(j, item + j->threads), qws);
  } else {
    cpu_qgemm_nt_block(j->isa, x, C, m, j->wgu, e, f0, fb, gt, fb, qws);
    cpu_qgemm_nt_block(j->isa, x, C, m, j->wgu, e, F + f0, fb, ut, fb, qws);
  }
  for (int64_t i = 0; i < m; ++i) {
    float *h = j->h + (r0 + i) * F + f0;
    moe_swiglu_(j->isa, gt + i * fb, ut + i * fb, h, fb, j->limit);
    if (j->act_quant > 0) { /* DeepSeek's order: weight, round to e4m3, then down */
      for (int64_t f = 0; f < fb; ++f) h[f] *= j->wt_of[r0 + i];
      cpu_fast_act_quant(j->isa, h, F, 1, fb, j->act_quant);
    }
    /* fb and f0 are multiples of 128 here: the block permutes on its own. */
    if (j->d_p && m == 1) cpu_qgemv_e2m1p_perm(h, fb, j->hp + (r0 + i) * F + f0);
  }
}

/* yp[group rows, c0:c0+cb] = h[group rows]·down[c0:c0+cb]ᵀ. */
static void fused_down_item_(void *user, int64_t item, int32_t slot) {
  const moe_fused_job *j = user;
  const int64_t C = j->C, F = j->F, g = item / j->n_cb, c0 = (item % j->n_cb) * j->cb;
  const int64_t cb = C - c0 < j->cb ? C - c0 : j->cb;
  const int64_t e = j->it_expert[g], r0 = j->it_row[g], m = j->it_rows[g];
  float *qws = j->tiles + slot * j->tile_floats + 2 * MOE_FUSED_MR * j->fb;
  if (j->d_p && m == 1) {
    cpu_qgemv_e2m1p(j->isa, j->hp + r0 * F, j->h + r0 * F, j->wd, e, c0, cb, j->yp + r0 * C + c0,
                    fused_item_rows_(j, j->n_gu + item + j->threads), qws);
  } else {
    cpu_qgemm_nt_block(j->isa, j->h + r0 * F, F, m, j->wd, e, c0, cb, j->yp + r0 * C + c0, C, qws);
  }
}

/* Both passes as one: items [0, n_gu) are gate/up, the rest down, claimed in that order; a down
 * item waits for its group's gate/up items, which are all claimed before it (by running
 * threads: no deadlock, and one thread runs them in order). The barrier and a pool dispatch
 * between the passes go: threads start on the first groups' down rows while the last gate/up
 * items finish. */
static void fused_item_(void *user, int64_t item, int32_t slot) {
  const moe_fused_job *j = user;
  if (item < j->n_gu) {
    fused_gate_up_item_(user, item, slot);
    atomic_fetch_add_explicit(&j->gu_done[item / j->n_fb], 1, memory_order_release);
    return;
  }
  item -= j->n_gu;
  const atomic_int *done = &j->gu_done[item / j->n_cb];
  for (int spins = 0; atomic_load_explicit(done, memory_order_acquire) < j->n_fb; ++spins) {
    /* A thread holding one of them may be preempted on a busy machine: give the core back. */
    if (spins >= 64) sched_yield();
  }
  fused_down_item_(user, item, slot);
}

/* The blocks of n outputs for the two passes: about `want` items over n_groups groups, whole
 * multiples of `unit`, at least `min` (or all of n). */
static int64_t fused_block_(int64_t n, int64_t n_groups, int64_t want, int64_t unit, int64_t min) {
  const int64_t per = (want + n_groups - 1) / n_groups; /* blocks per group */
  int64_t b = (n + per - 1) / per;
  b = (b + unit - 1) / unit * unit;
  if (b < min) b = min;
  return b > n ? n : b;
}

/* The fused pass; *out_done is 0 (nothing written) when it has too few groups to keep every
 * thread busy, and the two-pass path below runs instead — unless `always` (quantized experts
 * or act_quant, which only this path and the grouped one handle). */
static vnrt_status moe_ffn_fused_(const cpu_kernel_args *a, int64_t T, int64_t C, int64_t F,
                                  int64_t k, int64_t E, float limit, const cpu_weight *wgu,
                                  const cpu_weight *wd, int32_t act_quant, int always,
                                  int *out_done) {
  *out_done = 0;
  const int64_t threads = cpu_pool_threads(a->pool), n_slots = T * k;
  const int32_t *experts = a->in[1];
  moe_fused_job j = {.a = a,
                     .isa = cpu_fast_isa(a->pool),
                     .C = C,
                     .F = F,
                     .k = k,
                     .limit = limit,
                     .wgu = wgu,
                     .wd = wd,
                     .act_quant = act_quant};
  /* int32 maps sized in floats: start [E + 1], slot_of, token_of [T·k] each, and per group
   * expert, row, rows (at most T·k groups); then each grouped row's routing weight, then per
   * group its count of finished gate/up items. */
  float *map_mem = NULL, *mem = NULL;
  const int64_t done_floats =
      (n_slots * (int64_t)sizeof(atomic_int) + (int64_t)sizeof(float) - 1) / (int64_t)sizeof(float);
  vnrt_status st = cpu_fast_alloc(a, E + 1 + 6 * n_slots + done_floats, &map_mem);
  if (st != VNRT_OK) return st;
  int32_t *start = (int32_t *)(void *)map_mem, *slot_of = start + E + 1;
  int32_t *token_of = slot_of + n_slots, *it_expert = token_of + n_slots;
  int32_t *it_row = it_expert + n_slots, *it_rows = it_row + n_slots;
  float *wt_of = (float *)(void *)(it_rows + n_slots);
  atomic_int *gu_done = (atomic_int *)(void *)(wt_of + n_slots);
  /* Counting sort by expert, stable in (t, i). */
  memset(start, 0, sizeof(int32_t) * (size_t)(E + 1));
  for (int64_t s = 0; s < n_slots; ++s) start[experts[s] + 1]++;
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  int64_t n_groups = 0;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t r = start[e]; r < start[e + 1]; r += MOE_FUSED_MR) {
      it_expert[n_groups] = (int32_t)e;
      it_row[n_groups] = (int32_t)r;
      const int64_t rows = start[e + 1] - r;
      it_rows[n_groups] = (int32_t)(rows < MOE_FUSED_MR ? rows : MOE_FUSED_MR);
      n_groups++;
    }
  }
  /* The bound is fixed, not the thread count: the paths block K differently for several
   * tokens, and which one runs must not depend on the threads (results would). */
  if (n_groups < MOE_FUSED_MIN_ITEMS && !always) {
    cpu_fast_free(a, map_mem);
    return VNRT_OK;
  }
  for (int64_t s = 0; s < n_slots; ++s) {
    const int32_t r = start[experts[s]]++;
    slot_of[s] = r;
    token_of[r] = (int32_t)(s / k);
    wt_of[r] = cpu_load_f32(a->in[2], a->in_type[2]->dtype, s);
  }
  const int64_t want = MOE_FUSED_ITEMS_PER_THREAD * threads;
  j.gu_p = cpu_qgemv_e2m1p_ok(j.isa, wgu);
  j.d_p = cpu_qgemv_e2m1p_ok(j.isa, wd);
  /* The permuted h is written in blocks of whole 128-channel steps (F is a multiple of 128). */
  const int64_t f_unit = j.d_p ? 128 : act_quant > 0 ? act_quant : 8;
  j.fb = fused_block_(F, n_groups, want, f_unit, MOE_FUSED_MIN_FB);
  j.n_fb = (F + j.fb - 1) / j.fb;
  j.cb = fused_block_(C, n_groups, want, 8, MOE_FUSED_MIN_CB);
  j.n_cb = (C + j.cb - 1) / j.cb;
  int64_t qws = cpu_qgemm_ws_floats(j.isa, MOE_FUSED_MR, wgu);
  const int64_t qws_d = cpu_qgemm_ws_floats(j.isa, MOE_FUSED_MR, wd);
  qws = qws > qws_d ? qws : qws_d;
  j.tile_floats = 2 * MOE_FUSED_MR * j.fb + qws;
  st = cpu_fast_alloc(a, n_slots * (3 * C + 2 * F) + threads * j.tile_floats + C, &mem);
  if (st != VNRT_OK) {
    cpu_fast_free(a, map_mem);
    return st;
  }
  float *xg = mem;
  j.h = xg + n_slots * C;
  j.yp = j.h + n_slots * F;
  j.tiles = j.yp + n_slots * C;
  float *xgp = j.tiles + threads * j.tile_floats + C;
  j.xgp = xgp;
  j.hp = xgp + n_slots * C;
  j.it_expert = it_expert;
  j.it_row = it_row;
  j.it_rows = it_rows;
  j.wt_of = wt_of;
  j.xg = xg;
  /* x rows in expert order, widened and rounded once (T·k rows of C: a few thousand values). */
  const vnrt_dtype xdt = a->in_type[0]->dtype;
  const size_t xsz = vnrt_dtype_size(xdt);
  for (int64_t r = 0; r < n_slots; ++r) {
    const char *src = (const char *)a->in[0] + (size_t)(token_of[r] * C) * xsz;
    cpu_fast_to_f32(j.isa, src, xdt, C, xg + r * C);
  }
  cpu_fast_act_quant(j.isa, xg, C, n_slots, C, act_quant);
  if (j.gu_p) {
    for (int64_t g = 0; g < n_groups; ++g) {
      if (it_rows[g] == 1) cpu_qgemv_e2m1p_perm(xg + it_row[g] * C, C, xgp + it_row[g] * C);
    }
  }
  for (int64_t g = 0; g < n_groups; ++g) atomic_init(&gu_done[g], 0);
  j.gu_done = gu_done;
  j.n_gu = n_groups * j.n_fb;
  j.n_items = j.n_gu + n_groups * j.n_cb;
  j.threads = threads;
  cpu_fast_for_each(a->pool, j.n_items, fused_item_, &j);
  /* y[t] = Σ_i weights[t, i]·yp[slot_of(t, i)], i ascending as in the reference. */
  const vnrt_dtype pdt = a->in_type[2]->dtype, odt = a->out_type[0]->dtype;
  float *row = odt == VNRT_F32 ? NULL : j.tiles + threads * j.tile_floats;
  for (int64_t t = 0; t < T; ++t) {
    float *dst = row ? row : (float *)a->out[0] + t * C;
    for (int64_t c = 0; c < C; ++c) dst[c] = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      /* With act_quant the weight was applied to h already. */
      const float w = act_quant > 0 ? 1.0f : cpu_load_f32(a->in[2], pdt, t * k + i);
      cpu_fast_axpy(j.isa, w, j.yp + (int64_t)slot_of[t * k + i] * C, dst, C);
    }
    if (row) {
      for (int64_t c = 0; c < C; ++c) cpu_store_f32(a->out[0], odt, t * C + c, row[c]);
    }
  }
  cpu_fast_free(a, mem);
  cpu_fast_free(a, map_mem);
  *out_done = 1;
  return VNRT_OK;
}

static vnrt_status moe_ffn_small_(const cpu_kernel_args *a, int64_t T, int64_t C, int64_t F,
                                  int64_t k, float limit) {
  moe_small_job j = {
      .a = a,
      .isa = cpu_fast_isa(a->pool),
      .T = T,
      .C = C,
      .F = F,
      .k = k,
      .limit = limit,
      .experts = a->in[1],
  };
  const int64_t threads = cpu_pool_threads(a->pool);
  /* F blocks of a multiple of 8 rows (the GEMV's tile), enough for 4 items per thread. */
  const int64_t want = (4 * threads + T * k - 1) / (T * k);
  j.fb = (F + want - 1) / want;
  j.fb = (j.fb + 7) / 8 * 8;
  if (j.fb > F) j.fb = F;
  j.n_fb = (F + j.fb - 1) / j.fb;
  j.n_cb = (C + MOE_SMALL_CB - 1) / MOE_SMALL_CB;
  j.tile_floats = 2 * j.fb;
  const int x_f32 = a->in_type[0]->dtype == VNRT_F32;
  float *mem = NULL;
  vnrt_status st =
      cpu_fast_alloc(a, T * k * (F + C) + threads * j.tile_floats + (x_f32 ? 0 : T * C) + C, &mem);
  if (st != VNRT_OK) return st;
  j.h = mem;
  j.yp = j.h + T * k * F;
  j.tiles = j.yp + T * k * C;
  if (x_f32) {
    j.x = a->in[0];
  } else {
    float *xf = j.tiles + threads * j.tile_floats;
    cpu_fast_to_f32(j.isa, a->in[0], a->in_type[0]->dtype, T * C, xf);
    j.x = xf;
  }
  cpu_fast_for_each(a->pool, T * k * j.n_fb, small_gate_up_item_, &j);
  cpu_fast_for_each(a->pool, T * k * j.n_cb, small_down_item_, &j);
  /* y[t] = Σ_i weights[t, i]·yp[t·k + i], i ascending as in the reference: T·k·C
   * multiply-adds, less than a pool wake-up. */
  const vnrt_dtype pdt = a->in_type[2]->dtype, odt = a->out_type[0]->dtype;
  float *row = odt == VNRT_F32 ? NULL : j.tiles + threads * j.tile_floats + (x_f32 ? 0 : T * C);
  for (int64_t t = 0; t < T; ++t) {
    float *dst = row ? row : (float *)a->out[0] + t * C;
    for (int64_t c = 0; c < C; ++c) dst[c] = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      const float w = cpu_load_f32(a->in[2], pdt, t * k + i);
      cpu_fast_axpy(j.isa, w, j.yp + (t * k + i) * C, dst, C);
    }
    if (row) {
      for (int64_t c = 0; c < C; ++c) cpu_store_f32(a->out[0], odt, t * C + c, row[c]);
    }
  }
  cpu_fast_free(a, mem);
  return VNRT_OK;
}

vnrt_status cpu_fast_moe_ffn(const cpu_kernel_args *a) {
  const vnrt_tensor_type *xt = a->in_type[0], *et = a->in_type[1], *gt = a->in_type[3];
  const vnrt_tensor_type *dt = a->in_type[4];
  if (xt->rank < 1 || et->rank < 1 || gt->rank != 3 || dt->rank != 3 || et->dtype != VNRT_I32) {
    return cpu_ref_moe_ffn(a);
  }
  moe_job j = {
      .a = a,
      .isa = cpu_fast_isa(a->pool),
      .C = xt->dims[xt->rank - 1],
      .k = et->dims[et->rank - 1],
      .F = gt->dims[1] / 2,
      .limit = (float)a->node->params->moe_ffn.limit,
      .experts = a->in[1],
  };
  const int64_t E = gt->dims[0];
  j.T = j.C > 0 ? vnrt_tensor_type_numel(xt) / j.C : 0;
  j.n_slots = j.T * j.k;
  /* Degenerate shapes, and any expert id out of range (the reference reports it before
   * writing anything), go to the reference kernel. */
  if (j.T == 0 || j.C == 0 || j.F == 0 || j.k == 0 || gt->dims[2] != j.C || dt->dims[0] != E ||
      dt->dims[1] != j.C || dt->dims[2] != j.F || vnrt_tensor_type_numel(et) != j.n_slots ||
      j.n_slots > INT32_MAX) {
    return cpu_ref_moe_ffn(a);
  }
  for (int64_t s = 0; s < j.n_slots; ++s) {
    if (j.experts[s] < 0 || j.experts[s] >= E) return cpu_ref_moe_ffn(a);
  }
  const vnrt_moe_ffn_params *p = &a->node->params->moe_ffn;
  cpu_weight wgu, wd;
  vnrt_status st = cpu_weight_init(a, 3, &p->w_gate_up, &wgu);
  if (st == VNRT_OK) st = cpu_weight_init(a, 4, &p->w_down, &wd);
  if (st != VNRT_OK) return st;
  j.wgu = &wgu;
  j.wd = &wd;
  j.act_quant = p->act_quant;
  /* Quantized experts and act_quant take the fused path for a few tokens (with scratch for
   * any weight), the grouped one for more. */
  const int special = wgu.scale || wd.scale || p->act_quant > 0;
  /* The GEMV path reads w in place only on AVX2 (the portable GEMV needs f32 w). */
  if (j.T <= MOE_SMALL_T &&
      (special || j.isa >= CPU_ISA_AVX2 || (gt->dtype == VNRT_F32 && dt->dtype == VNRT_F32))) {
    int done = 0;
    st = moe_ffn_fused_(a, j.T, j.C, j.F, j.k, E, j.limit, &wgu, &wd, p->act_quant, special, &done);
    if (st != VNRT_OK || done) return st;
    return moe_ffn_small_(a, j.T, j.C, j.F, j.k, j.limit);
  }

  /* Row blocks (expert, first grouped row, rows); the grouping maps and per-expert starts
   * (int32, sized in floats); the grouped activations and per-thread scratch. */
  const int64_t threads = cpu_pool_threads(a->pool);
  const int64_t max_rb = j.n_slots / MOE_MB + E;
  j.ws_floats = cpu_qgemm_ws_floats(j.isa, MOE_MB, &wgu);
  const int64_t ws_d = cpu_qgemm_ws_floats(j.isa, MOE_MB, &wd);
  if (j.ws_floats < ws_d) j.ws_floats = ws_d;
  if (j.ws_floats < CPU_GEMM_WS_FLOATS) j.ws_floats = CPU_GEMM_WS_FLOATS;
  j.slot_floats = j.ws_floats + 2 * MOE_MB * MOE_FB;
  if (j.slot_floats < j.C) j.slot_floats = j.C;
  float *rb_mem = NULL, *map_mem = NULL, *buf = NULL;
  st = cpu_fast_alloc(a, 3 * max_rb * (int64_t)(sizeof(int64_t) / sizeof(float)), &rb_mem);
  if (st == VNRT_OK) st = cpu_fast_alloc(a, E + 1 + 3 * j.n_slots, &map_mem);
  if (st == VNRT_OK) {
    st = cpu_fast_alloc(a, j.n_slots * (2 * j.C + j.F) + threads * j.slot_floats, &buf);
  }
  if (st != VNRT_OK) {
    cpu_fast_free(a, rb_mem);
    cpu_fast_free(a, map_mem);
    return st;
  }
  j.rb_expert = (int64_t *)(void *)rb_mem;
  j.rb_row = j.rb_expert + max_rb;
  j.rb_rows = j.rb_row + max_rb;
  int32_t *start = (int32_t *)(void *)map_mem; /* [E + 1]: first grouped row per expert */
  j.slot_of = start + E + 1;
  j.token_of = j.slot_of + j.n_slots;
  j.wt_of = (float *)(void *)(j.token_of + j.n_slots);
  j.xg = buf;
  j.h = j.xg + j.n_slots * j.C;
  j.yp = j.h + j.n_slots * j.F;
  j.scratch = j.yp + j.n_slots * j.C;

  /* Counting sort by expert, stable in (t, i): an expert's rows keep token order. */
  memset(start, 0, sizeof(int32_t) * (size_t)(E + 1));
  for (int64_t s = 0; s < j.n_slots; ++s) start[j.experts[s] + 1]++;
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  j.n_rb = 0;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t r = start[e]; r < start[e + 1]; r += MOE_MB) {
      j.rb_expert[j.n_rb] = e;
      j.rb_row[j.n_rb] = r;
      j.rb_rows[j.n_rb] = start[e + 1] - r < MOE_MB ? start[e + 1] - r : MOE_MB;
      j.n_rb++;
    }
  }
  for (int64_t s = 0; s < j.n_slots; ++s) {
    int32_t r = start[j.experts[s]]++;
    j.slot_of[s] = r;
    j.token_of[r] = (int32_t)(s / j.k);
    j.wt_of[r] = cpu_load_f32(a->in[2], a->in_type[2]->dtype, s);
  }

  cpu_fast_for_each(a->pool, (j.n_slots + 15) / 16, gather_item_, &j);
  cpu_fast_for_each(a->pool, j.n_rb * ((j.F + MOE_FB - 1) / MOE_FB), gate_up_item_, &j);
  if (j.act_quant > 0) cpu_fast_for_each(a->pool, (j.n_slots + 15) / 16, h_quant_item_, &j);
  cpu_fast_for_each(a->pool, j.n_rb * ((j.C + MOE_CB - 1) / MOE_CB), down_item_, &j);
  cpu_fast_for_each(a->pool, (j.T + 7) / 8, combine_item_, &j);
  cpu_fast_free(a, buf);
  cpu_fast_free(a, map_mem);
  cpu_fast_free(a, rb_mem);
  return VNRT_OK;
}
