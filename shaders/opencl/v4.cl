/* DeepSeek-V4 attention (docs/ops.md, "DeepSeek-V4 attention"): kv_compress, kv_scatter,
 * index_scores and sparse_attention (grouped_linear is quant.cl's qgemv with groups; rope's
 * YaRN, topk's fill and kv_write's ring are in their ops' files). */

/* ---- run-time checks ------------------------------------------------------------------- */

/* err[slot] = the first position i in [0, n) with v[i] >= 0 and v[i] / div >= bound, or -1
 * (negative values are "none" and allowed). kv_scatter's rows, sparse_attention's idx. */
__kernel void check_below(TENSOR(v), long n, int div, long bound, TENSOR(err), int slot,
                          int with_value, __local int *red) {
  int lid = get_local_id(0), wg = get_local_size(0);
  int first = NO_ERROR;
  for (long i = lid; i < n; i += wg) {
    int x = ldi(PTR(v), i);
    if (x >= 0 && (long)(x / div) >= bound) {
      first = (int)i;
      break; /* an item's positions only grow */
    }
  }
  first = wg_min_i(red, first);
  if (lid == 0) {
    __global int *e = (__global int *)PTR(err);
    e[slot] = first == NO_ERROR ? -1 : first;
    /* with_value: the bad value too, for a check read after the run (check_index_val) */
    if (with_value) e[slot + 1] = first == NO_ERROR ? 0 : ldi(PTR(v), first);
  }
}

/* check_below's check by one item, for a few values (a decode step's rows or idx), read after
 * the run: e[slot] = the first i in [0, n) with v[i] >= 0 and v[i] / div >= bound, or -1;
 * e[slot + 1] its value (0 when none). */
void below_check_item(__global const uchar *v, long n, int div, long bound, __global int *e,
                      int slot) {
  long first = -1;
  for (long i = 0; i < n; ++i) {
    int x = ldi(v, i);
    if (x >= 0 && (long)(x / div) >= bound) {
      first = i;
      break;
    }
  }
  e[slot] = (int)first;
  e[slot + 1] = first < 0 ? 0 : ldi(v, first);
}

/* e[slot] = 0 where pos0 < 0, else -1 (pos0's check, read after the run). */
void pos0_check_item(__global const uchar *pos0, __global int *e, int slot) {
  e[slot] = ldi(pos0, 0) < 0 ? 0 : -1;
}

/* ---- kv_scatter ------------------------------------------------------------------------ */

/* cache'[pos[i] / div] = rows[i] for every i with pos[i] >= 0; a target past the cache's S
 * rows is skipped (item 0's check reports it after the run). Item u copies unit u (4 bytes when
 * wide, else 1) of every row, rows in order, so a later row with the same target wins, as in
 * the reference. */
__kernel void kv_scatter(TENSOR(rows), TENSOR(pos), TENSOR(o), long units, int wide, int N,
                         int div, long S, TENSOR(err), int slot) {
  long u = get_global_id(0);
  if (u == 0) below_check_item(PTR(pos), N, div, S, (__global int *)PTR(err), slot);
  if (u >= units) return;
  for (int i = 0; i < N; ++i) {
    int p = ldi(PTR(pos), i);
    if (p < 0 || (long)(p / div) >= S) continue;
    long d = (long)(p / div) * units + u, s = (long)i * units + u;
    if (wide) {
      ((__global uint *)PTR(o))[d] = ((__global const uint *)PTR(rows))[s];
    } else {
      PTR(o)[d] = PTR(rows)[s];
    }
  }
}

/* ---- kv_compress ----------------------------------------------------------------------- */

/* o[i] = x[i], i < n (f32 scratch to a result). */
__kernel void copy_f32(TENSOR(x), TENSOR(o), long n) {
  long i = get_global_id(0);
  if (i < n) ((__global float *)PTR(o))[i] = ((__global const float *)PTR(x))[i];
}

long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* Position p's value a and score z' (ape added) on channel ch (of c·d): from this run's a, z
 * for p >= pos0, else from the state (window W0 = floor(pos0 / m) at rows m·overlap + p mod m,
 * window W0 - 1 at rows p mod m). */
void kvc_slot(__global const float *a, __global const float *z, __global const float *ape,
              __global const float *sa, __global const float *sz, long pos0, long p, int m,
              int overlap, long cd, long ch, float *va, float *vz) {
  long r = p - floor_div(p, m) * m;
  if (p >= pos0) {
    long t = p - pos0;
    *va = a[t * cd + ch];
    *vz = z[t * cd + ch] + ape[r * cd + ch];
    return;
  }
  long row = (floor_div(p, m) == floor_div(pos0, m) ? (long)m * overlap : 0) + r;
  *va = sa[row * cd + ch];
  *vz = sz[row * cd + ch];
}

/* entries[e, k] for the windows closing in [pos0, pos0 + T): window w = W0 + e pools, per
 * channel k, a softmax of z' over its slots weighting a (with overlap the A series of window
 * w - 1 then the B series of window w, slots in position order); rows past the closed windows
 * are 0 with entry_pos -1. global (d, N). */
__kernel void kv_compress_entries(TENSOR(a), TENSOR(z), TENSOR(ape), TENSOR(sa), TENSOR(sz),
                                  TENSOR(pos0), TENSOR(ent), TENSOR(epos), int m, int overlap,
                                  long d, long T, long N, TENSOR(err), int slot) {
  long k = get_global_id(0), e = get_global_id(1);
  /* pos0 >= 0, read after the run (slot >= 0; every index below stays inside its tensor
   * whatever pos0 is). */
  if (k == 0 && e == 0 && slot >= 0) pos0_check_item(PTR(pos0), (__global int *)PTR(err), slot);
  if (k >= d || e >= N) return;
  __global const float *A = (__global const float *)PTR(a), *Z = (__global const float *)PTR(z);
  __global const float *AP = (__global const float *)PTR(ape);
  __global const float *SA = (__global const float *)PTR(sa);
  __global const float *SZ = (__global const float *)PTR(sz);
  const long p0 = ldi(PTR(pos0), 0), cd = d * (1 + overlap);
  const long w0 = floor_div(p0, m), closed = floor_div(p0 + T, m) - w0;
  __global float *out = (__global float *)PTR(ent);
  if (e >= closed) {
    out[e * d + k] = 0.0f;
    if (k == 0) ((__global int *)PTR(epos))[e] = -1;
    return;
  }
  const long w = w0 + e;
  /* Slots: with overlap [(w-1)m, wm) on channel k (when w >= 1), then [wm, wm+m) on d + k. */
  const long s_lo = overlap && w >= 1 ? -(long)m : 0;
  float mx = -INFINITY;
  for (long s = s_lo; s < m; ++s) {
    float va, vz;
    kvc_slot(A, Z, AP, SA, SZ, p0, w * m + s, m, overlap, cd, s < 0 ? k : k + d * overlap, &va,
             &vz);
    mx = fmax(mx, vz);
  }
  float num = 0.0f, den = 0.0f;
  for (long s = s_lo; s < m; ++s) {
    float va, vz;
    kvc_slot(A, Z, AP, SA, SZ, p0, w * m + s, m, overlap, cd, s < 0 ? k : k + d * overlap, &va,
             &vz);
    float ex = exp(vz - mx);
    num += ex * va;
    den += ex;
  }
  out[e * d + k] = num / den;
  if (k == 0) ((__global int *)PTR(epos))[e] = (int)(w * m);
}

/* The new states: row r of window W' = floor((pos0 + T) / m) (rows m·overlap + j) or, with
 * overlap, W' - 1 (rows j < m) holds position p = win·m + j: from this run (a, z + ape), from
 * the old state (p < pos0), or the old row r itself (p not yet seen, or p < 0). Writes into
 * (na, nz), which must not be (sa, sz) when rows move. inplace: (na, nz) are (sa, sz) and T is
 * 1, so that no row is read after another work-item writes it (a row reads the old state's
 * rows m·overlap + j only when the window closes, and those are then not written); a row whose
 * source is the row itself is left as it is. global (c·d, c·m). */
long kvc_state_row(long p, long p0, int m, int overlap) {
  return (floor_div(p, m) == floor_div(p0, m) ? (long)m * overlap : 0) + p - floor_div(p, m) * m;
}

__kernel void kv_compress_state(TENSOR(a), TENSOR(z), TENSOR(ape), TENSOR(sa), TENSOR(sz),
                                TENSOR(pos0), TENSOR(na), TENSOR(nz), int m, int overlap, long T,
                                long cd, int inplace) {
  long ch = get_global_id(0), r = get_global_id(1);
  if (ch >= cd || r >= (long)m * (1 + overlap)) return;
  __global const float *SA = (__global const float *)PTR(sa);
  __global const float *SZ = (__global const float *)PTR(sz);
  const long p0 = ldi(PTR(pos0), 0), w1 = floor_div(p0 + T, m);
  const long win = overlap && r < m ? w1 - 1 : w1, p = win * m + r % m;
  const int seen = p0 >= 0 && p >= 0 && p < p0 + T; /* a bad pos0 changes no row */
  if (inplace && (!seen || (p < p0 && kvc_state_row(p, p0, m, overlap) == r))) return;
  float va = SA[r * cd + ch], vz = SZ[r * cd + ch];
  if (seen) {
    kvc_slot((__global const float *)PTR(a), (__global const float *)PTR(z),
             (__global const float *)PTR(ape), SA, SZ, p0, p, m, overlap, cd, ch, &va, &vz);
  }
  ((__global float *)PTR(na))[r * cd + ch] = va;
  ((__global float *)PTR(nz))[r * cd + ch] = vz;
}

/* kv_compress_state on 16 channels per work-item (cd a multiple of 16): a row's position and
 * source are the same for all its channels, so the row is copied (or has ape added) 16 values
 * at a time; the values are kv_compress_state's. global (cd / 16, c·m). */
__kernel void kv_compress_state16(TENSOR(a), TENSOR(z), TENSOR(ape), TENSOR(sa), TENSOR(sz),
                                  TENSOR(pos0), TENSOR(na), TENSOR(nz), int m, int overlap,
                                  long T, long cd, int inplace) {
  long ch = get_global_id(0) * 16, r = get_global_id(1);
  if (ch >= cd || r >= (long)m * (1 + overlap)) return;
  __global const float *A = (__global const float *)PTR(sa);
  __global const float *Z = (__global const float *)PTR(sz);
  __global const float *AP = (__global const float *)PTR(ape);
  const long p0 = ldi(PTR(pos0), 0), w1 = floor_div(p0 + T, m);
  const long win = overlap && r < m ? w1 - 1 : w1, p = win * m + r % m;
  long src = r * cd; /* the old row r itself */
  float16 ad = 0.0f;
  const int seen = p0 >= 0 && p >= 0 && p < p0 + T; /* a bad pos0 changes no row */
  if (seen) {
    const long rp = p - floor_div(p, m) * m;
    if (p >= p0) {
      /* this run's a and z + ape */
      A = (__global const float *)PTR(a);
      Z = (__global const float *)PTR(z);
      src = (p - p0) * cd;
      ad = vload16(0, AP + rp * cd + ch);
    } else {
      src = kvc_state_row(p, p0, m, overlap) * cd;
    }
  }
  if (inplace && src == r * cd && A == (__global const float *)PTR(sa)) return; /* unchanged */
  vstore16(vload16(0, A + src + ch), 0, (__global float *)PTR(na) + r * cd + ch);
  float16 vz = vload16(0, Z + src + ch);
  if (seen && p >= p0) vz += ad;
  vstore16(vz, 0, (__global float *)PTR(nz) + r * cd + ch);
}

/* ---- index_scores (the lightning indexer) ---------------------------------------------- */

/* s[t, j] = Σ_h w[t, h]·relu(q[t, h]·k[j]) for j < (pos[t] + 1) / ratio, else -inf; heads
 * summed in order. An item takes 4 entries j0..j0+3 of one token, so each load of q serves
 * four dots (f32 q and k with Di a multiple of VN_VW: floatv lanes; else in channel order).
 * global (ceil(S / 4), T). */
__kernel void index_scores(TENSOR(q), int dq, TENSOR(k), int dk, TENSOR(w), int dw, TENSOR(pos),
                           TENSOR(s), int S, int T, int Hi, int Di, int ratio) {
  const long j0 = get_global_id(0) * 4, t = get_global_id(1);
  if (j0 >= S || t >= T) return;
  __global float *o = (__global float *)PTR(s) + t * S;
  const long nv = ((long)ldi(PTR(pos), t) + 1) / ratio;
  const int n = S - j0 < 4 ? (int)(S - j0) : 4;
  /* visible entries of this item: [j0, j0 + nj) */
  const int nj = nv <= j0 ? 0 : (nv - j0 < n ? (int)(nv - j0) : n);
  for (int i = nj; i < n; ++i) o[j0 + i] = -INFINITY;
  if (nj == 0) return;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (dq == DT_F32 && dk == DT_F32 && Di % VN_VW == 0) {
    __global const float *kp = (__global const float *)PTR(k);
    /* rows past the visible ones repeat the last visible row (read, never stored) */
    __global const float *k0 = kp + j0 * Di, *k1 = kp + (j0 + (nj > 1 ? 1 : 0)) * Di;
    __global const float *k2 = kp + (j0 + (nj > 2 ? 2 : nj - 1)) * Di;
    __global const float *k3 = kp + (j0 + (nj > 3 ? 3 : nj - 1)) * Di;
    for (int h = 0; h < Hi; ++h) {
      __global const float *qp = (__global const float *)PTR(q) + (t * Hi + h) * Di;
      floatv v0 = 0.0f, v1 = 0.0f, v2 = 0.0f, v3 = 0.0f;
      for (int c = 0; c < Di; c += VN_VW) {
        floatv qv = vloadv(0, qp + c);
        v0 += qv * vloadv(0, k0 + c);
        v1 += qv * vloadv(0, k1 + c);
        v2 += qv * vloadv(0, k2 + c);
        v3 += qv * vloadv(0, k3 + c);
      }
      const float wh = ld(PTR(w), dw, t * Hi + h);
      acc[0] += wh * fmax(VN_HSUM(v0), 0.0f);
      acc[1] += wh * fmax(VN_HSUM(v1), 0.0f);
      acc[2] += wh * fmax(VN_HSUM(v2), 0.0f);
      acc[3] += wh * fmax(VN_HSUM(v3), 0.0f);
    }
  } else {
    for (int h = 0; h < Hi; ++h) {
      const long qb = (t * Hi + h) * Di;
      const float wh = ld(PTR(w), dw, t * Hi + h);
      for (int i = 0; i < nj; ++i) {
        float dot = 0.0f;
        for (int c = 0; c < Di; ++c) {
          dot += ld(PTR(q), dq, qb + c) * ld(PTR(k), dk, (j0 + i) * Di + c);
        }
        acc[i] += wh * fmax(dot, 0.0f);
      }
    }
  }
  for (int i = 0; i < nj; ++i) o[j0 + i] = acc[i];
}

/* ---- sparse_attention ------------------------------------------------------------------ */

/* The key set of query t (position p = pos0 + t): keys s < nwin are the window positions
 * lo + s (kv[j - pos0] for j >= pos0, else ring[j mod W]); keys nwin + i are comp[i] for
 * i < ncomp (HCA) or comp[idx[t, i]] (CSA, skipped when negative or, an error reported
 * after the run, past comp's Sc entries). sa_key gives key s's tensor
 * (0 kv, 1 ring, 2 comp; -1 none) and row. */
typedef struct sa_keys {
  long p, lo, nwin, nk;
} sa_keys;

sa_keys sa_key_set(long pos0, long t, int W, int has_comp, int has_idx, int ratio, long Sc,
                   int K) {
  sa_keys r;
  r.p = pos0 + t;
  r.lo = r.p - W + 1 > 0 ? r.p - W + 1 : 0;
  r.nwin = r.p >= r.lo ? r.p - r.lo + 1 : 0;
  long nc = 0;
  if (has_idx) {
    nc = K;
  } else if (has_comp) {
    nc = r.p + 1 > 0 ? (r.p + 1) / ratio : 0;
    nc = nc < Sc ? nc : Sc;
  }
  r.nk = r.nwin + nc;
  return r;
}

int sa_key(const sa_keys *ks, long pos0, long t, int W, int has_idx, __global const uchar *idx,
           int K, int Sc, long s, long *row) {
  if (s < ks->nwin) {
    long j = ks->lo + s;
    if (j >= pos0) {
      *row = j - pos0;
      return 0;
    }
    *row = j % W;
    return 1;
  }
  long i = s - ks->nwin;
  if (!has_idx) {
    *row = i;
    return 2;
  }
  int c = ldi(idx, t * K + i);
  *row = c;
  return c >= 0 && c < Sc ? 2 : -1; /* an entry past comp: skipped, reported after the run */
}

#define SA_ARGS                                                                                 \
  TENSOR(q), int dq, TENSOR(kv), int dkv, TENSOR(ring), int dring, TENSOR(sk), int dsk,         \
      TENSOR(pos0), TENSOR(comp), int dcomp, TENSOR(idx), TENSOR(o), int dout, int T, int H,    \
      int D, int W, int has_comp, int has_idx, int ratio, int Sc, int K, float scale

/* The (buffer, dtype) of key tensor `which`. */
#define SA_SRC(which, P, DT)                   \
  if ((which) == 0) P = PTR(kv), DT = dkv;     \
  else if ((which) == 1) P = PTR(ring), DT = dring; \
  else P = PTR(comp), DT = dcomp

/* One work-group per (t, h) where local memory is real: q's row in local memory, keys scored a
 * chunk of wg at a time (one per item), an online softmax with the sink in the denominator,
 * then each item accumulates channels lid + j·wg (j < ATT_MAXJ) over the chunk. */
__kernel void sparse_attention(SA_ARGS, __local float *qrow, __local float *pr,
                               __local int *kw, __local int *kr, __local float *red) {
  const int lid = get_local_id(0), wg = get_local_size(0);
  const long r = get_group_id(0);
  const long t = r / H, h = r % H;
  const long p0 = ldi(PTR(pos0), 0);
  sa_keys ks = sa_key_set(p0, t, W, has_comp, has_idx, ratio, Sc, K);
  for (int c = lid; c < D; c += wg) qrow[c] = ld(PTR(q), dq, r * D + c);
  float m = ld(PTR(sk), dsk, h), l = 1.0f; /* the sink: in the denominator, no value */
  float acc[ATT_MAXJ];
  for (int j = 0; j < ATT_MAXJ; ++j) acc[j] = 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (long s0 = 0; s0 < ks.nk; s0 += wg) {
    long s = s0 + lid, row = 0;
    int which = s < ks.nk ? sa_key(&ks, p0, t, W, has_idx, PTR(idx), K, Sc, s, &row) : -1;
    float score = -INFINITY;
    if (which >= 0) {
      __global const uchar *kp;
      int dt;
      SA_SRC(which, kp, dt);
      float dot = 0.0f;
      for (int c = 0; c < D; ++c) dot += qrow[c] * ld(kp, dt, row * D + c);
      score = dot * scale;
    }
    kw[lid] = which;
    kr[lid] = (int)row;
    float m_new = fmax(m, wg_max(red, score));
    float e = which >= 0 ? exp(score - m_new) : 0.0f;
    float alpha = m == m_new ? 1.0f : exp(m - m_new); /* 0 from a sink of -inf */
    pr[lid] = e;
    l = l * alpha + wg_sum(red, e); /* wg_sum's barriers also publish pr, kw, kr */
    int cnt = (int)min((long)wg, ks.nk - s0);
    for (int j = 0; j < ATT_MAXJ; ++j) {
      int c = lid + j * wg;
      if (c >= D) break;
      float a = acc[j] * alpha;
      for (int i = 0; i < cnt; ++i) {
        if (kw[i] < 0) continue;
        __global const uchar *kp;
        int dt;
        SA_SRC(kw[i], kp, dt);
        a += pr[i] * ld(kp, dt, (long)kr[i] * D + c);
      }
      acc[j] = a;
    }
    m = m_new;
    barrier(CLK_LOCAL_MEM_FENCE); /* pr, kw, kr are rewritten by the next chunk */
  }
  for (int j = 0; j < ATT_MAXJ; ++j) {
    int c = lid + j * wg;
    if (c >= D) break;
    st(PTR(o), dout, r * D + c, acc[j] / l);
  }
}

/* The same for CPU drivers: one work-item per (t, h), keys one by one with an online softmax,
 * the D accumulators in f32 scratch acc[T·H, D]; f32 keys in whole vectors take floatv loops. */
__kernel void sparse_attention_rows(SA_ARGS, TENSOR(acc)) {
  const long r = get_global_id(0);
  if (r >= (long)T * H) return;
  const long t = r / H, h = r % H;
  const long p0 = ldi(PTR(pos0), 0);
  sa_keys ks = sa_key_set(p0, t, W, has_comp, has_idx, ratio, Sc, K);
  __global float *a = (__global float *)PTR(acc) + r * D;
  float m = ld(PTR(sk), dsk, h), l = 1.0f;
  const int vec = dq == DT_F32 && dkv == DT_F32 && dring == DT_F32 &&
                  (!has_comp || dcomp == DT_F32) && D % VN_VW == 0;
  if (vec) {
    for (int c = 0; c < D; c += VN_VW) vstorev_((floatv)0.0f, 0, a + c);
  } else {
    for (int c = 0; c < D; ++c) a[c] = 0.0f;
  }
  __global const float *qp = (__global const float *)PTR(q) + r * D;
  for (long s = 0; s < ks.nk; ++s) {
    long row = 0;
    int which = sa_key(&ks, p0, t, W, has_idx, PTR(idx), K, Sc, s, &row);
    if (which < 0) continue;
    __global const uchar *kp;
    int dt;
    SA_SRC(which, kp, dt);
    float score;
    if (vec) {
      __global const float *kf = (__global const float *)kp + row * D;
      floatv v = 0.0f;
      for (int c = 0; c < D; c += VN_VW) v += vloadv(0, qp + c) * vloadv(0, kf + c);
      score = VN_HSUM(v) * scale;
    } else {
      float dot = 0.0f;
      for (int c = 0; c < D; ++c) dot += ld(PTR(q), dq, r * D + c) * ld(kp, dt, row * D + c);
      score = dot * scale;
    }
    if (score > m) { /* a new maximum: rescale what was summed so far */
      float alpha = exp(m - score);
      l *= alpha;
      if (vec) {
        for (int c = 0; c < D; c += VN_VW) vstorev_(vloadv(0, a + c) * alpha, 0, a + c);
      } else {
        for (int c = 0; c < D; ++c) a[c] *= alpha;
      }
      m = score;
    }
    float e = exp(score - m);
    l += e;
    if (vec) {
      __global const float *kf = (__global const float *)kp + row * D;
      for (int c = 0; c < D; c += VN_VW) vstorev_(vloadv(0, a + c) + e * vloadv(0, kf + c), 0, a + c);
    } else {
      for (int c = 0; c < D; ++c) a[c] += e * ld(kp, dt, row * D + c);
    }
  }
  for (int c = 0; c < D; ++c) st(PTR(o), dout, r * D + c, a[c] / l);
}

/* ---- sparse_attention in three passes (CPU drivers, when the scores fit in scratch) ------ */
/* Every head of a token shares its keys, so the passes block 4 heads per work-item and load
 * each key once for all four: scores, a softmax per (t, h), then the weighted sum of keys. */

#define SA_HB 4 /* heads per work-item */

/* The passes take the tokens [t0, t0 + Tc) (chunks keep the scores within scratch).
 * sc[((t - t0)·H + h)·NK + s] = scale·(q[t, h]·key_s), -inf past the key set or for idx -1.
 * global (NK, Tc·ceil(H / 4)). */
__kernel void sparse_attention_scores(SA_ARGS, TENSOR(sc), int NK, int t0, int Tc, TENSOR(err),
                                      int pslot, int islot) {
  const long s = get_global_id(0), th = get_global_id(1);
  const int HG = (H + SA_HB - 1) / SA_HB;
  if (s == 0 && th == 0) {
    /* The node's checks, read after the run (slots >= 0: the first chunk's launch): pos0 >= 0,
     * and check_below's of idx < Sc with the bad value in islot + 1. */
    __global int *e = (__global int *)PTR(err);
    if (pslot >= 0) pos0_check_item(PTR(pos0), e, pslot);
    if (islot >= 0) below_check_item(PTR(idx), (long)T * K, 1, Sc, e, islot);
  }
  if (s >= NK || th >= (long)Tc * HG) return;
  const long t = t0 + th / HG;
  const int h0 = (int)(th % HG) * SA_HB;
  const long p0 = ldi(PTR(pos0), 0);
  sa_keys ks = sa_key_set(p0, t, W, has_comp, has_idx, ratio, Sc, K);
  long row = 0;
  int which = s < ks.nk ? sa_key(&ks, p0, t, W, has_idx, PTR(idx), K, Sc, s, &row) : -1;
  __global float *out = (__global float *)PTR(sc);
  float r[SA_HB] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  if (which >= 0) {
    __global const uchar *kp;
    int dt;
    SA_SRC(which, kp, dt);
    const long qb = (t * H + h0) * D;
    const int nh = H - h0 < SA_HB ? H - h0 : SA_HB;
    if (dq == DT_F32 && dt == DT_F32 && D % VN_VW == 0 && nh == SA_HB) {
      __global const float *kf = (__global const float *)kp + row * D;
      __global const float *qf = (__global const float *)PTR(q) + qb;
      floatv a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      for (int c = 0; c < D; c += VN_VW) {
        floatv kv8 = vloadv(0, kf + c);
        a0 += vloadv(0, qf + c) * kv8;
        a1 += vloadv(0, qf + D + c) * kv8;
        a2 += vloadv(0, qf + 2 * D + c) * kv8;
        a3 += vloadv(0, qf + 3 * D + c) * kv8;
      }
      r[0] = VN_HSUM(a0) * scale, r[1] = VN_HSUM(a1) * scale;
      r[2] = VN_HSUM(a2) * scale, r[3] = VN_HSUM(a3) * scale;
    } else {
      for (int i = 0; i < nh; ++i) {
        float dot = 0.0f;
        for (int c = 0; c < D; ++c) dot += ld(PTR(q), dq, qb + i * D + c) * ld(kp, dt, row * D + c);
        r[i] = dot * scale;
      }
    }
  }
  for (int i = 0; i < SA_HB && h0 + i < H; ++i) out[((t - t0) * H + h0 + i) * NK + s] = r[i];
}

/* Per (t, h): sc becomes the softmax weights e^(l - M) / (Σ e^(l - M) + e^(sink - M)), M the
 * maximum of the scores and the sink (0 for -inf scores). global (Tc·H). */
__kernel void sparse_attention_softmax(TENSOR(sk), int dsk, TENSOR(sc), int Tc, int H, int NK) {
  const long r = get_global_id(0);
  if (r >= (long)Tc * H) return;
  __global float *p = (__global float *)PTR(sc) + r * NK;
  const float sink = ld(PTR(sk), dsk, r % H);
  float m = sink;
  for (int s = 0; s < NK; ++s) m = fmax(m, p[s]);
  if (m == -INFINITY) { /* no key and a sink of -inf: every weight is 0 */
    for (int s = 0; s < NK; ++s) p[s] = 0.0f;
    return;
  }
  float l = exp(sink - m);
  for (int s = 0; s < NK; ++s) {
    float e = exp(p[s] - m);
    p[s] = e;
    l += e;
  }
  const float inv = 1.0f / l;
  for (int s = 0; s < NK; ++s) p[s] *= inv;
}

/* o[t, h, c] = Σ_s w[t, h, s]·key_s[c] for 4 heads and VN_VW channels (vec: f32 keys and
 * result, D a multiple of VN_VW; global (D / VN_VW, Tc·ceil(H / 4))) or one channel (global
 * (D, ...)). */
__kernel void sparse_attention_out(SA_ARGS, TENSOR(sc), int NK, int t0, int Tc, int vec) {
  const long cv = get_global_id(0), th = get_global_id(1);
  const int HG = (H + SA_HB - 1) / SA_HB;
  if (cv >= (vec ? D / VN_VW : D) || th >= (long)Tc * HG) return;
  const long t = t0 + th / HG;
  const int h0 = (int)(th % HG) * SA_HB, nh = H - h0 < SA_HB ? H - h0 : SA_HB;
  const long p0 = ldi(PTR(pos0), 0);
  sa_keys ks = sa_key_set(p0, t, W, has_comp, has_idx, ratio, Sc, K);
  __global const float *w = (__global const float *)PTR(sc) + ((t - t0) * H + h0) * NK;
  const long ob = (t * H + h0) * D;
  if (vec) {
    const long c = cv * VN_VW;
    floatv a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    for (long s = 0; s < ks.nk; ++s) {
      long row = 0;
      int which = sa_key(&ks, p0, t, W, has_idx, PTR(idx), K, Sc, s, &row);
      if (which < 0) continue;
      __global const uchar *kp;
      int dt;
      SA_SRC(which, kp, dt);
      floatv kv8 = vloadv(0, (__global const float *)kp + row * D + c);
      a0 += w[s] * kv8;
      if (nh > 1) a1 += w[NK + s] * kv8;
      if (nh > 2) a2 += w[2 * NK + s] * kv8;
      if (nh > 3) a3 += w[3 * NK + s] * kv8;
    }
    __global float *o = (__global float *)PTR(o) + ob + c;
    vstorev_(a0, 0, o);
    if (nh > 1) vstorev_(a1, 0, o + D);
    if (nh > 2) vstorev_(a2, 0, o + 2 * D);
    if (nh > 3) vstorev_(a3, 0, o + 3 * D);
    return;
  }
  float a[SA_HB] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (long s = 0; s < ks.nk; ++s) {
    long row = 0;
    int which = sa_key(&ks, p0, t, W, has_idx, PTR(idx), K, Sc, s, &row);
    if (which < 0) continue;
    __global const uchar *kp;
    int dt;
    SA_SRC(which, kp, dt);
    float kvc = ld(kp, dt, row * D + cv);
    for (int i = 0; i < nh; ++i) a[i] += w[i * NK + s] * kvc;
  }
  for (int i = 0; i < nh; ++i) st(PTR(o), dout, ob + i * D + cv, a[i]);
}
