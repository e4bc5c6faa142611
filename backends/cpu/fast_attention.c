/* CPU fast kernel for attention: per (query token, block of query heads sharing a kv head),
 * one pass over the visible keys in blocks with an online softmax; q·k as a small GEMM on the
 * blocked GEMM core, p·v vectorised, threaded over (t, head block). */
#include <string.h>

#include "fast_gemm.h"

/* Query heads per work item, at most: they share each K/V row loaded (GQA/MQA), so the more
 * the less K/V traffic; attn_job.hb is chosen per call so that every thread still has an
 * item. The AVX2 p·v loop takes them 4 at a time (4 heads × 16 channels = 8 accumulators). */
#define ATT_HB_MAX 16
#define ATT_PV_HEADS 4
/* Keys per block: the scores of a block stay in L1 between the softmax and p·v. */
#define ATT_SB 64

typedef struct attn_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t T, S, Hq, Hkv, D, Dv, group, window, hb, n_hblk;
  int causal, has_sinks;
  float scale;
  float *scratch;
  int64_t slot_floats;
} attn_job;

/* ---- vector pieces ----------------------------------------------------------------------- */

/* acc[h·Dv + c] += Σ_s p[h·ATT_SB + s]·v[s·ldv + c]. */
static void pv_generic_(const float *p, int hn, const float *v, int64_t ldv, int64_t sn, int64_t Dv,
                        float *acc) {
  for (int h = 0; h < hn; ++h) {
    float *ah = acc + h * Dv;
    for (int64_t s = 0; s < sn; ++s) {
      const float ps = p[h * ATT_SB + s];
      const float *vr = v + s * ldv;
      for (int64_t c = 0; c < Dv; ++c) ah[c] += ps * vr[c];
    }
  }
}

/* sc[h·ATT_SB + s] = exp(sc[...] - m[h]) for s < sn; returns nothing, sums into l[h]. */
static void exp_generic_(float *sc, int hn, int64_t sn, const float *m, float *l) {
  for (int h = 0; h < hn; ++h) {
    float sum = 0.0f;
    for (int64_t s = 0; s < sn; ++s) {
      sc[h * ATT_SB + s] = expf(sc[h * ATT_SB + s] - m[h]);
      sum += sc[h * ATT_SB + s];
    }
    l[h] += sum;
  }
}

#if defined(CPU_HAVE_AVX2_CODE)
CPU_AVX2_INLINE void avx2_pv_(const int HN, const float *p, const float *v, int64_t ldv, int64_t sn,
                              int64_t Dv, float *acc) {
  const float *p0 = p, *p1 = p + ATT_SB, *p2 = p + 2 * ATT_SB, *p3 = p + 3 * ATT_SB;
  float *o0 = acc, *o1 = acc + Dv, *o2 = acc + 2 * Dv, *o3 = acc + 3 * Dv;
  int64_t c = 0;
  for (; c + 16 <= Dv; c += 16) {
    __m256 a00 = _mm256_loadu_ps(o0 + c), a01 = _mm256_loadu_ps(o0 + c + 8);
    __m256 a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    if (HN > 1) a10 = _mm256_loadu_ps(o1 + c), a11 = _mm256_loadu_ps(o1 + c + 8);
    if (HN > 2) a20 = _mm256_loadu_ps(o2 + c), a21 = _mm256_loadu_ps(o2 + c + 8);
    if (HN > 3) a30 = _mm256_loadu_ps(o3 + c), a31 = _mm256_loadu_ps(o3 + c + 8);
    for (int64_t s = 0; s < sn; ++s) {
      const __m256 v0 = _mm256_loadu_ps(v + s * ldv + c), v1 = _mm256_loadu_ps(v + s * ldv + c + 8);
      __m256 ps = _mm256_broadcast_ss(p0 + s);
      a00 = _mm256_fmadd_ps(ps, v0, a00);
      a01 = _mm256_fmadd_ps(ps, v1, a01);
      if (HN > 1) {
        ps = _mm256_broadcast_ss(p1 + s);
        a10 = _mm256_fmadd_ps(ps, v0, a10);
        a11 = _mm256_fmadd_ps(ps, v1, a11);
      }
      if (HN > 2) {
        ps = _mm256_broadcast_ss(p2 + s);
        a20 = _mm256_fmadd_ps(ps, v0, a20);
        a21 = _mm256_fmadd_ps(ps, v1, a21);
      }
      if (HN > 3) {
        ps = _mm256_broadcast_ss(p3 + s);
        a30 = _mm256_fmadd_ps(ps, v0, a30);
        a31 = _mm256_fmadd_ps(ps, v1, a31);
      }
    }
    _mm256_storeu_ps(o0 + c, a00), _mm256_storeu_ps(o0 + c + 8, a01);
    if (HN > 1) _mm256_storeu_ps(o1 + c, a10), _mm256_storeu_ps(o1 + c + 8, a11);
    if (HN > 2) _mm256_storeu_ps(o2 + c, a20), _mm256_storeu_ps(o2 + c + 8, a21);
    if (HN > 3) _mm256_storeu_ps(o3 + c, a30), _mm256_storeu_ps(o3 + c + 8, a31);
  }
  for (; c < Dv; ++c) {
    for (int h = 0; h < HN; ++h) {
      float sum = acc[h * Dv + c];
      for (int64_t s = 0; s < sn; ++s) sum += p[h * ATT_SB + s] * v[s * ldv + c];
      acc[h * Dv + c] = sum;
    }
  }
}

static CPU_AVX2 void avx2_pv_any_(const float *p, int hn, const float *v, int64_t ldv, int64_t sn,
                                  int64_t Dv, float *acc) {
  switch (hn) {
    case 1:
      avx2_pv_(1, p, v, ldv, sn, Dv, acc);
      break;
    case 2:
      avx2_pv_(2, p, v, ldv, sn, Dv, acc);
      break;
    case 3:
      avx2_pv_(3, p, v, ldv, sn, Dv, acc);
      break;
    default:
      avx2_pv_(4, p, v, ldv, sn, Dv, acc);
      break;
  }
}

static CPU_AVX2 void avx2_exp_(float *sc, int hn, int64_t sn, const float *m, float *l) {
  for (int h = 0; h < hn; ++h) {
    float *row = sc + h * ATT_SB;
    const __m256 mv = _mm256_set1_ps(m[h]);
    __m256 sum = _mm256_setzero_ps();
    int64_t s = 0;
    for (; s + 8 <= sn; s += 8) {
      const __m256 e = avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(row + s), mv));
      _mm256_storeu_ps(row + s, e);
      sum = _mm256_add_ps(sum, e);
    }
    float tail = 0.0f;
    for (; s < sn; ++s) {
      row[s] = expf(row[s] - m[h]);
      tail += row[s];
    }
    l[h] += avx2_hsum(sum) + tail;
  }
}
#endif /* CPU_HAVE_AVX2_CODE */

/* ---- one work item ----------------------------------------------------------------------- */

/* Rows [s0, s0+sn) of kv head kvh of a [S, Hkv, W] tensor as f32 rows: in place when f32,
 * else widened into buf. Returns the row pointer; *ld receives the row stride. */
static const float *kv_rows_(const attn_job *j, int input, int64_t kvh, int64_t s0, int64_t sn,
                             int64_t width, float *buf, int64_t *ld) {
  const cpu_kernel_args *a = j->a;
  const vnrt_dtype dt = a->in_type[input]->dtype;
  if (dt == VNRT_F32) {
    *ld = j->Hkv * width;
    return (const float *)a->in[input] + (s0 * j->Hkv + kvh) * width;
  }
  const size_t sz = vnrt_dtype_size(dt);
  for (int64_t s = 0; s < sn; ++s) {
    const char *row = (const char *)a->in[input] + (size_t)(((s0 + s) * j->Hkv + kvh) * width) * sz;
    cpu_fast_to_f32(j->isa, row, dt, width, buf + s * width);
  }
  *ld = width;
  return buf;
}

/* Prefetches rows [s0, s0+sn) of kv head kvh of input `input` ([S, Hkv, width]). */
static void prefetch_rows_(const attn_job *j, int input, int64_t kvh, int64_t s0, int64_t sn,
                           int64_t width) {
  const cpu_kernel_args *a = j->a;
  const size_t sz = vnrt_dtype_size(a->in_type[input]->dtype);
  const size_t row_bytes = (size_t)width * sz;
  for (int64_t s = 0; s < sn; ++s) {
    const char *row = (const char *)a->in[input] + (size_t)((s0 + s) * j->Hkv + kvh) * row_bytes;
    for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row + b, 0, 3);
  }
}

static void attn_item_(void *user, int64_t item, int32_t slot) {
  const attn_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t t = item / (j->Hkv * j->n_hblk), rest = item % (j->Hkv * j->n_hblk);
  const int64_t kvh = rest / j->n_hblk, h0 = kvh * j->group + (rest % j->n_hblk) * j->hb;
  const int hn =
      (int)(kvh * j->group + j->group - h0 < j->hb ? kvh * j->group + j->group - h0 : j->hb);
  const int64_t D = j->D, Dv = j->Dv;
  const vnrt_dtype odt = a->out_type[0]->dtype;

  const int64_t qpos = j->S - j->T + t; /* query t sits at absolute position S-T+t */
  int64_t lo = 0, hi = j->S - 1;        /* visible keys: [lo, hi], the same for every head */
  if (j->causal && qpos < hi) hi = qpos;
  if (j->window > 0 && qpos - j->window + 1 > lo) lo = qpos - j->window + 1;
  if (lo > hi) { /* a query that sees no key yields 0 */
    for (int h = 0; h < hn; ++h) {
      for (int64_t c = 0; c < Dv; ++c)
        cpu_store_f32(a->out[0], odt, ((t * j->Hq) + h0 + h) * Dv + c, 0.0f);
    }
    return;
  }

  float *q = j->scratch + slot * j->slot_floats; /* [hb, D] */
  float *sc = q + j->hb * D;                     /* [hb, ATT_SB] */
  float *acc = sc + j->hb * ATT_SB;              /* [hb, Dv] */
  float *kb = acc + j->hb * Dv;                  /* [ATT_SB, D] when k is not f32 */
  float *vb = kb + ATT_SB * D;                   /* [ATT_SB, Dv] when v is not f32 */
  float *gws = vb + ATT_SB * Dv;                 /* GEMM workspace, portable path only */
  const vnrt_dtype qdt = a->in_type[0]->dtype;
  const size_t qsz = vnrt_dtype_size(qdt);
  for (int h = 0; h < hn; ++h) {
    cpu_fast_to_f32(j->isa, (const char *)a->in[0] + (size_t)((t * j->Hq + h0 + h) * D) * qsz, qdt,
                    D, q + h * D);
  }
  memset(acc, 0, sizeof(float) * (size_t)(hn * Dv));
  float m[ATT_HB_MAX], l[ATT_HB_MAX];
  for (int h = 0; h < hn; ++h) m[h] = -INFINITY, l[h] = 0.0f;
  int avx2 = 0;
#if defined(CPU_HAVE_AVX2_CODE)
  avx2 = j->isa >= CPU_ISA_AVX2;
#endif

  for (int64_t s0 = lo; s0 <= hi; s0 += ATT_SB) {
    const int64_t sn = hi - s0 + 1 < ATT_SB ? hi - s0 + 1 : ATT_SB;
    /* This block's V rows and the next block's K rows are requested now, so that they arrive
     * while q·k and the softmax compute (p·v reads V a column slice at a time, a pattern the
     * hardware prefetchers follow poorly). */
    prefetch_rows_(j, 2, kvh, s0, sn, Dv);
    if (s0 + ATT_SB <= hi) {
      prefetch_rows_(j, 1, kvh, s0 + ATT_SB,
                     hi - s0 - ATT_SB + 1 < ATT_SB ? hi - s0 - ATT_SB + 1 : ATT_SB, D);
    }
    int64_t ldk, ldv;
    const float *k = kv_rows_(j, 1, kvh, s0, sn, D, kb, &ldk);
    /* The block's scores are a small GEMM, q[hn, D]·k[sn, D]ᵀ: the core's register-blocked
     * dot-product tiles load each k row once for all hn heads. */
    cpu_gemm_nt_block(j->isa, q, D, hn, k, VNRT_F32, ldk, sn, D, sc, ATT_SB, gws);
    for (int h = 0; h < hn; ++h) {
      for (int64_t s = 0; s < sn; ++s) sc[h * ATT_SB + s] *= j->scale;
    }
    /* Online softmax: a new running max rescales what was accumulated so far. */
    float mnew[ATT_HB_MAX];
    for (int h = 0; h < hn; ++h) {
      float bm = sc[h * ATT_SB];
      /* Plain compares (fmaxf is a libm call at -O3 without -ffinite-math-only). */
      for (int64_t s = 1; s < sn; ++s) bm = sc[h * ATT_SB + s] > bm ? sc[h * ATT_SB + s] : bm;
      mnew[h] = bm > m[h] ? bm : m[h];
      if (mnew[h] > m[h] && m[h] > -INFINITY) {
        const float corr = expf(m[h] - mnew[h]);
        l[h] *= corr;
        for (int64_t c = 0; c < Dv; ++c) acc[h * Dv + c] *= corr;
      }
      m[h] = mnew[h];
    }
#if defined(CPU_HAVE_AVX2_CODE)
    if (avx2) {
      avx2_exp_(sc, hn, sn, m, l);
    } else
#endif
    {
      exp_generic_(sc, hn, sn, m, l);
    }
    const float *v = kv_rows_(j, 2, kvh, s0, sn, Dv, vb, &ldv);
#if defined(CPU_HAVE_AVX2_CODE)
    if (avx2) {
      for (int h = 0; h < hn; h += ATT_PV_HEADS) {
        avx2_pv_any_(sc + h * ATT_SB, hn - h < ATT_PV_HEADS ? hn - h : ATT_PV_HEADS, v, ldv, sn, Dv,
                     acc + h * Dv);
      }
    } else
#endif
    {
      pv_generic_(sc, hn, v, ldv, sn, Dv, acc);
    }
  }

  for (int h = 0; h < hn; ++h) {
    float mul = 1.0f, denom = l[h];
    if (j->has_sinks) { /* the sink logit joins the denominator only */
      const float sink = cpu_load_f32(a->in[3], a->in_type[3]->dtype, h0 + h);
      const float mf = fmaxf(m[h], sink);
      mul = expf(m[h] - mf);
      denom = l[h] * mul + expf(sink - mf);
    }
    const float f = mul / denom;
    const int64_t orow = (t * j->Hq + h0 + h) * Dv;
    if (odt == VNRT_F32) {
      float *o = (float *)a->out[0] + orow;
      for (int64_t c = 0; c < Dv; ++c) o[c] = acc[h * Dv + c] * f;
    } else {
      for (int64_t c = 0; c < Dv; ++c) cpu_store_f32(a->out[0], odt, orow + c, acc[h * Dv + c] * f);
    }
  }
}

vnrt_status cpu_fast_attention(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_tensor_type *qt = a->in_type[0], *kt = a->in_type[1];
  const vnrt_attention_params *p = &node->params->attention;
  const int has_sinks = p->has_sinks && a->in[3] != NULL;
  if (!cpu_attention_shapes_ok(a)) {
    return cpu_ref_attention(a); /* it reports the shape error */
  }
  attn_job j = {
      .a = a,
      .isa = cpu_fast_isa(a->pool),
      .T = qt->dims[0],
      .S = kt->dims[0],
      .Hq = p->q_heads,
      .Hkv = p->kv_heads,
      .D = p->head_dim,
      .Dv = p->v_dim,
      .group = p->q_heads / p->kv_heads,
      .window = p->window,
      .causal = p->causal != 0,
      .has_sinks = has_sinks,
  };
  if (a->n_in > 4) {
    /* kv_len: only the first kv_len rows of k and v exist (a KV cache); out of range is the
     * reference kernel's error to report. */
    const int32_t kv_len = *(const int32_t *)a->in[4];
    if (kv_len < 0 || kv_len > j.S) return cpu_ref_attention(a);
    j.S = kv_len;
  }
  j.scale = (float)p->scale;
  if (j.T == 0 || j.Hq == 0 || j.Dv == 0) return VNRT_OK;
  /* As many heads per item as still leave every thread an item. */
  const int64_t threads = cpu_pool_threads(a->pool);
  const int64_t pairs = j.T * j.Hkv; /* (query token, kv head) pairs */
  const int64_t splits = pairs >= threads ? 1 : (threads + pairs - 1) / pairs;
  j.hb = (j.group + splits - 1) / splits;
  if (j.hb > ATT_HB_MAX) j.hb = ATT_HB_MAX;
  if (j.hb < 1) j.hb = 1;
  j.n_hblk = (j.group + j.hb - 1) / j.hb;
  /* The q·k GEMM packs (needs workspace) only on the portable path with more than 4 heads. */
  const int64_t gws_floats = j.isa < CPU_ISA_AVX2 && j.hb > 4 ? CPU_GEMM_WS_FLOATS : 0;
  j.slot_floats = j.hb * (j.D + ATT_SB + j.Dv) + ATT_SB * (j.D + j.Dv) + gws_floats;
  vnrt_status st = cpu_fast_alloc(a, threads * j.slot_floats, &j.scratch);
  if (st != VNRT_OK) return st;
  cpu_fast_for_each(a->pool, j.T * j.Hkv * j.n_hblk, attn_item_, &j);
  cpu_fast_free(a, j.scratch);
  return VNRT_OK;
}

/* ---- sparse_attention (DeepSeek-V4) ------------------------------------------------------ */

/* docs/ops.md, "DeepSeek-V4 attention": per (query token, block of heads) the keys are the
 * window (ring rows before pos0, kv rows after) and then the compressed entries (every visible
 * one, or the idx-selected ones); K = V. Each block of ATT_SB keys is gathered (widened) into
 * one f32 panel that serves as K for the q·k GEMM and as V for p·v, with the online softmax of
 * attention above; the sink joins the denominator at the end. Threaded over (token, head
 * block): a decode step (T = 1) splits its heads. */
/* Heads per work item, at most: every head of a token shares the gathered key panel (V4 has
 * 64), so one gather serves them all unless the threads need more items. */
#define SPARSE_HB_MAX 64
/* Runs of fewer in-place key rows than this are gathered with the keys after them instead: a
 * GEMM and p·v call per handful of rows would cost more than the copy. */
#define SPARSE_MIN_RUN 8

typedef struct sparse_job {
  const cpu_kernel_args *a;
  cpu_isa isa;
  int64_t T, H, D, W, Sc, K, hb, n_hblk;
  int32_t pos0, ratio;
  int has_comp, has_idx;
  float scale;
  float *scratch;
  int64_t slot_floats;
} sparse_job;

/* The row of key s of query t: window keys first (positions lo .. p), then the entries. */
static const void *sparse_key_(const sparse_job *j, int64_t lo, int64_t nwin, const int32_t *sel,
                               int64_t s, vnrt_dtype *dt) {
  const cpu_kernel_args *a = j->a;
  int input;
  int64_t row;
  if (s < nwin) {
    const int64_t pos = lo + s;
    input = pos >= j->pos0 ? 1 : 2;
    row = pos >= j->pos0 ? pos - j->pos0 : pos % j->W;
  } else {
    input = 5;
    row = j->has_idx ? sel[s - nwin] : s - nwin;
  }
  *dt = a->in_type[input]->dtype;
  return (const char *)a->in[input] + (size_t)(row * j->D) * vnrt_dtype_size(*dt);
}

/* How many keys from s on (at most max) are consecutive rows of one f32 input, so that the
 * GEMM and p·v can read them where they lie instead of from a gathered panel; 0 when key s is
 * not f32. *row0 is key s's row. */
static int64_t sparse_f32_run_(const sparse_job *j, int64_t lo, int64_t nwin, int64_t n_keys,
                               const int32_t *sel, int64_t s, int64_t max, const float **row0) {
  vnrt_dtype dt;
  const void *row = sparse_key_(j, lo, nwin, sel, s, &dt);
  if (dt != VNRT_F32) return 0;
  *row0 = row;
  int64_t run;
  if (s < nwin) {
    const int64_t pos = lo + s;
    run = nwin - s;      /* kv rows: every later window key */
    if (pos < j->pos0) { /* ring rows up to pos0 or the wrap */
      const int64_t to_pos0 = j->pos0 - pos, to_wrap = j->W - pos % j->W;
      run = to_pos0 < run ? to_pos0 : run;
      run = to_wrap < run ? to_wrap : run;
    }
  } else if (j->has_idx) {
    run = 1;
    while (s + run < n_keys && run < max && sel[s + run - nwin] == sel[s - nwin] + run) ++run;
  } else {
    run = n_keys - s; /* every visible entry, in order */
  }
  return run < max ? run : max;
}

static void sparse_item_(void *user, int64_t item, int32_t slot) {
  const sparse_job *j = user;
  const cpu_kernel_args *a = j->a;
  const int64_t t = item / j->n_hblk, h0 = (item % j->n_hblk) * j->hb;
  const int hn = (int)(j->H - h0 < j->hb ? j->H - h0 : j->hb);
  const int64_t D = j->D, p = j->pos0 + t;
  const int64_t lo = p - j->W + 1 > 0 ? p - j->W + 1 : 0, nwin = p - lo + 1;
  const vnrt_dtype odt = a->out_type[0]->dtype;

  float *q = j->scratch + slot * j->slot_floats; /* [hb, D] */
  float *sc = q + j->hb * D;                     /* [hb, ATT_SB] */
  float *acc = sc + j->hb * ATT_SB;              /* [hb, D] */
  float *kb = acc + j->hb * D;                   /* [ATT_SB, D]: the block's keys = values */
  int32_t *sel = (int32_t *)(kb + ATT_SB * D);   /* [K]: the selected entries of token t */
  float *gws = kb + ATT_SB * D + j->K;           /* GEMM workspace, portable path only */
  int64_t n_ent = 0;
  if (j->has_idx) {
    const int32_t *idx = (const int32_t *)a->in[6] + t * j->K;
    for (int64_t i = 0; i < j->K; ++i) {
      if (idx[i] >= 0) sel[n_ent++] = idx[i];
    }
  } else if (j->has_comp) {
    n_ent = (p + 1) / j->ratio;
  }
  const int64_t n_keys = nwin + n_ent;

  const vnrt_dtype qdt = a->in_type[0]->dtype;
  const size_t qsz = vnrt_dtype_size(qdt);
  for (int h = 0; h < hn; ++h) {
    cpu_fast_to_f32(j->isa, (const char *)a->in[0] + (size_t)((t * j->H + h0 + h) * D) * qsz, qdt,
                    D, q + h * D);
  }
  memset(acc, 0, sizeof(float) * (size_t)(hn * D));
  float m[SPARSE_HB_MAX], l[SPARSE_HB_MAX];
  for (int h = 0; h < hn; ++h) m[h] = -INFINITY, l[h] = 0.0f;
  int avx2 = 0;
#if defined(CPU_HAVE_AVX2_CODE)
  avx2 = j->isa >= CPU_ISA_AVX2;
#endif
  for (int64_t s0 = 0, sn = 0; s0 < n_keys; s0 += sn) {
    /* A run of f32 rows that lie consecutively is read in place (a decode step's window is one
     * or two such runs); anything else is gathered, widened, into kb. */
    const float *keys = kb;
    sn = sparse_f32_run_(j, lo, nwin, n_keys, sel, s0, ATT_SB, &keys);
    if (sn < SPARSE_MIN_RUN) {
      keys = kb;
      sn = n_keys - s0 < ATT_SB ? n_keys - s0 : ATT_SB;
      for (int64_t s = 0; s < sn; ++s) {
        vnrt_dtype dt;
        const void *row = sparse_key_(j, lo, nwin, sel, s0 + s, &dt);
        if (dt == VNRT_F32) {
          memcpy(kb + s * D, row, sizeof(float) * (size_t)D);
        } else {
          cpu_fast_to_f32(j->isa, row, dt, D, kb + s * D);
        }
      }
    }
    cpu_gemm_nt_block(j->isa, q, D, hn, keys, VNRT_F32, D, sn, D, sc, ATT_SB, gws);
    for (int h = 0; h < hn; ++h) {
      for (int64_t s = 0; s < sn; ++s) sc[h * ATT_SB + s] *= j->scale;
    }
    for (int h = 0; h < hn; ++h) {
      float bm = sc[h * ATT_SB];
      for (int64_t s = 1; s < sn; ++s) bm = sc[h * ATT_SB + s] > bm ? sc[h * ATT_SB + s] : bm;
      const float mn = bm > m[h] ? bm : m[h];
      if (mn > m[h] && m[h] > -INFINITY) {
        const float corr = expf(m[h] - mn);
        l[h] *= corr;
        for (int64_t c = 0; c < D; ++c) acc[h * D + c] *= corr;
      }
      m[h] = mn;
    }
#if defined(CPU_HAVE_AVX2_CODE)
    if (avx2) {
      avx2_exp_(sc, hn, sn, m, l);
      for (int h = 0; h < hn; h += ATT_PV_HEADS) {
        avx2_pv_any_(sc + h * ATT_SB, hn - h < ATT_PV_HEADS ? hn - h : ATT_PV_HEADS, keys, D, sn, D,
                     acc + h * D);
      }
    } else
#endif
    {
      exp_generic_(sc, hn, sn, m, l);
      pv_generic_(sc, hn, keys, D, sn, D, acc);
    }
  }
  for (int h = 0; h < hn; ++h) {
    const float sink = cpu_load_f32(a->in[3], a->in_type[3]->dtype, h0 + h);
    const float mf = sink > m[h] ? sink : m[h];
    const float mul = l[h] > 0.0f ? expf(m[h] - mf) : 0.0f;
    const float denom = l[h] * mul + (sink > -INFINITY ? expf(sink - mf) : 0.0f);
    const float f = denom > 0.0f ? mul / denom : 0.0f; /* no key and no sink: 0 */
    const int64_t orow = (t * j->H + h0 + h) * D;
    if (odt == VNRT_F32) {
      float *o = (float *)a->out[0] + orow;
      for (int64_t c = 0; c < D; ++c) o[c] = acc[h * D + c] * f;
    } else {
      for (int64_t c = 0; c < D; ++c) cpu_store_f32(a->out[0], odt, orow + c, acc[h * D + c] * f);
    }
  }
}

vnrt_status cpu_fast_sparse_attention(const cpu_kernel_args *a) {
  const vnrt_sparse_attention_params *p = &a->node->params->sparse_attention;
  const vnrt_tensor_type *qt = a->in_type[0];
  if (cpu_outputs_empty(a)) return VNRT_OK;
  sparse_job j = {
      .a = a,
      .isa = cpu_fast_isa(a->pool),
      .T = qt->dims[0],
      .H = p->heads,
      .D = p->head_dim,
      .W = a->in_type[2]->dims[0],
      .pos0 = *(const int32_t *)a->in[4],
      .ratio = p->ratio,
      .has_comp = p->has_comp && a->n_in > 5,
      .has_idx = p->has_idx && a->n_in > 6,
      .scale = (float)p->scale,
  };
  /* Anything the reference kernel reports (a negative pos0, an idx past comp's rows, more
   * visible entries than comp has, shapes its params do not describe) is left to it. */
  bool ok = qt->rank == 3 && qt->dims[1] == j.H && qt->dims[2] == j.D && j.pos0 >= 0 && j.W >= 1;
  if (j.has_comp) {
    j.Sc = a->in_type[5]->dims[0];
    ok = ok && j.ratio >= 1 && a->in_type[5]->dims[1] == j.D;
  }
  if (ok && j.has_idx) {
    j.K = a->in_type[6]->dims[1];
    const int32_t *idx = a->in[6];
    for (int64_t i = 0; ok && i < j.T * j.K; ++i) ok = idx[i] < j.Sc;
  } else if (ok && j.has_comp) {
    ok = ((int64_t)j.pos0 + j.T) / j.ratio <= j.Sc; /* the last query sees the most */
  }
  if (!ok) return cpu_ref_sparse_attention(a);
  const int64_t threads = cpu_pool_threads(a->pool);
  /* Enough head blocks that every thread has an item even for one token, and no more: each
   * item reads the whole key set, so a decode step's keys pass once per thread (two items a
   * thread cost the bench model's decode ~30% more time in sparse_attention). */
  const int64_t splits = j.T >= threads ? 1 : (threads + j.T - 1) / j.T;
  j.hb = (j.H + splits - 1) / splits;
  if (j.hb > SPARSE_HB_MAX) j.hb = SPARSE_HB_MAX;
  if (j.hb < 1) j.hb = 1;
  j.n_hblk = (j.H + j.hb - 1) / j.hb;
  const int64_t gws_floats = j.isa < CPU_ISA_AVX2 && j.hb > 4 ? CPU_GEMM_WS_FLOATS : 0;
  j.slot_floats = j.hb * (2 * j.D + ATT_SB) + ATT_SB * j.D + j.K + gws_floats;
  vnrt_status st = cpu_fast_alloc(a, threads * j.slot_floats, &j.scratch);
  if (st != VNRT_OK) return st;
  cpu_fast_for_each(a->pool, j.T * j.n_hblk, sparse_item_, &j);
  cpu_fast_free(a, j.scratch);
  return VNRT_OK;
}
