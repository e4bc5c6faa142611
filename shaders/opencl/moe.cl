/* MoE: routing (one work-item per token, f32 scratch per token; bias selects experts but the
 * weights are the unbiased scores) and the expert FFN as two gather-GEMV passes over the
 * (token, slot) pairs (expert ids are checked before these run). */

#define SCORE_SIGMOID 0
#define SCORE_SOFTMAX 1
#define SCORE_SQRT_SOFTPLUS 2

/* s[e] = score(logits[t, e]); softmax is over the E experts. */
void score_row(__global const uchar *logits, int dl, long t, int E, int kind,
               __global float *s) {
  for (int e = 0; e < E; ++e) s[e] = ld(logits, dl, t * E + e);
  if (kind == SCORE_SIGMOID) {
    for (int e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + exp(-s[e]));
  } else if (kind == SCORE_SQRT_SOFTPLUS) {
    for (int e = 0; e < E; ++e) s[e] = sqrt(softplus_f(s[e]));
  } else {
    float mx = s[0];
    for (int e = 1; e < E; ++e) mx = s[e] > mx ? s[e] : mx;
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) {
      s[e] = exp(s[e] - mx);
      sum += s[e];
    }
    for (int e = 0; e < E; ++e) s[e] /= sum;
  }
}

/* weights[t, i] = s[experts[t, i]], normalised (w /= sum w + 1e-20) if norm, then scaled. */
void route_weights(__global uchar *w, int dw, long t, int k, __global const float *s,
                   __global const int *experts, int norm, float scale) {
  float sum = 0.0f;
  for (int i = 0; i < k; ++i) sum += s[experts[i]];
  for (int i = 0; i < k; ++i) {
    float v = s[experts[i]];
    if (norm) v /= (sum + 1e-20f);
    st(w, dw, t * k + i, v * scale);
  }
}

/* work per token: s[E], sel[E], gscore[G] floats, then taken[E], gkeep[G] ints. */
__kernel void moe_route(TENSOR(logits), int dl, TENSOR(bias), int db, int has_bias, TENSOR(w),
                        int dw, TENSOR(ex), TENSOR(work), long T, int E, int k, int kind,
                        int n_group, int topk_group, int norm, float scale) {
  long t = get_global_id(0);
  if (t >= T) return;
  int G = n_group > 1 ? n_group : 1;
  __global float *s = (__global float *)PTR(work) + t * (3 * E + 2 * G);
  __global float *sel = s + E, *gscore = sel + E;
  __global int *taken = (__global int *)(gscore + G), *gkeep = taken + E;
  __global int *chosen = (__global int *)PTR(ex) + t * k;
  score_row(PTR(logits), dl, t, E, kind, s);
  for (int e = 0; e < E; ++e) {
    sel[e] = s[e] + (has_bias ? ld(PTR(bias), db, e) : 0.0f);
    taken[e] = 0;
  }
  if (n_group > 1) {
    int gsize = E / n_group;
    /* A group's score is the sum of its two largest sel (its one value if it has one). */
    for (int g = 0; g < n_group; ++g) {
      __global const float *v = sel + g * gsize;
      int b1 = 0;
      for (int i = 1; i < gsize; ++i) b1 = v[i] > v[b1] ? i : b1;
      int b2 = -1;
      for (int i = 0; i < gsize; ++i) {
        if (i != b1 && (b2 < 0 || v[i] > v[b2])) b2 = i;
      }
      gscore[g] = v[b1] + (b2 >= 0 ? v[b2] : 0.0f);
      gkeep[g] = 0;
    }
    for (int r = 0; r < topk_group; ++r) {
      int best = -1;
      for (int g = 0; g < n_group; ++g) {
        if (!gkeep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
      }
      gkeep[best] = 1;
    }
    for (int e = 0; e < E; ++e) taken[e] = !gkeep[e / gsize];
  }
  /* k rounds of argmax over the eligible sel; strict > keeps the lower index on ties. */
  for (int i = 0; i < k; ++i) {
    int best = -1;
    for (int e = 0; e < E; ++e) {
      if (!taken[e] && (best < 0 || sel[e] > sel[best])) best = e;
    }
    taken[best] = 1;
    chosen[i] = best;
  }
  route_weights(PTR(w), dw, t, k, s, chosen, norm, scale);
}

/* experts[t] = tid2eid[ids[t]] (checked before), weights from the unbiased scores. */
__kernel void moe_hash_route(TENSOR(logits), int dl, TENSOR(ids), TENSOR(tab), TENSOR(w),
                             int dw, TENSOR(ex), TENSOR(work), long T, int E, int k, int kind,
                             int norm, float scale, int V) {
  long t = get_global_id(0);
  if (t >= T) return;
  __global float *s = (__global float *)PTR(work) + t * E;
  __global int *out = (__global int *)PTR(ex) + t * k;
  /* Ids and entries clamped: a bad one is reported after the run (check_hash_route). */
  long id = clamp(ldi(PTR(ids), t), 0, V - 1);
  score_row(PTR(logits), dl, t, E, kind, s);
  for (int i = 0; i < k; ++i) out[i] = clamp(ldi(PTR(tab), id * k + i), 0, E - 1);
  route_weights(PTR(w), dw, t, k, s, out, norm, scale);
}

/* h[p, f] = silu(min(g, limit))*clamp(u, +-limit) for pair p = (t, i), e = experts[t, i]:
 * g = gate_e[f]*x[t], u = up_e[f]*x[t]; global (F, T*k). */
__kernel void moe_ffn_up(TENSOR(x), int dx, TENSOR(ex), TENSOR(wgu), int dg, TENSOR(h),
                         long pairs, int k, int C, int F, float limit) {
  long f = get_global_id(0), p = get_global_id(1);
  if (f >= F || p >= pairs) return;
  long t = p / k;
  long e = ldi(PTR(ex), p);
  long gb = (e * 2 * F + f) * C, ub = (e * 2 * F + F + f) * C, xb = t * C;
  float g = 0.0f, u = 0.0f;
  for (int c = 0; c < C; ++c) g += ld(PTR(wgu), dg, gb + c) * ld(PTR(x), dx, xb + c);
  for (int c = 0; c < C; ++c) u += ld(PTR(wgu), dg, ub + c) * ld(PTR(x), dx, xb + c);
  ((__global float *)PTR(h))[p * F + f] = moe_act(g, u, limit);
}

/* y[t, c] = sum_i weights[t, i]*(down_e[c]*h[t, i]); global (C, T). */
__kernel void moe_ffn_down(TENSOR(ex), TENSOR(wt), int dwt, TENSOR(wd), int dd, TENSOR(h),
                           TENSOR(y), int dy, long T, int k, int C, int F) {
  long c = get_global_id(0), t = get_global_id(1);
  if (c >= C || t >= T) return;
  __global const float *hp = (__global const float *)PTR(h);
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    long p = t * k + i;
    long e = ldi(PTR(ex), p);
    float w = ld(PTR(wt), dwt, p);
    long db = (e * C + c) * F;
    float dot = 0.0f;
    for (int f = 0; f < F; ++f) dot += ld(PTR(wd), dd, db + f) * hp[p * F + f];
    acc += w * dot;
  }
  st(PTR(y), dy, t * C + c, acc);
}

/* Sorts the pairs of experts[pairs] by expert (stable) into order, and cuts each expert's run
 * into blocks of at most 4: blocks = [count, -, -, -, then (e, start, count, -) per block].
 * counts is E ints of scratch. One work-item: pairs are few and this is a counting sort. */
__kernel void moe_sort(TENSOR(ex), long pairs, int E, TENSOR(counts), TENSOR(order),
                       TENSOR(blocks)) {
  if (get_global_id(0) != 0) return;
  __global const int *e = (__global const int *)PTR(ex);
  __global int *cnt = (__global int *)PTR(counts), *ord = (__global int *)PTR(order);
  __global int *blk = (__global int *)PTR(blocks);
  for (int i = 0; i < E; ++i) cnt[i] = 0;
  for (long p = 0; p < pairs; ++p) cnt[e[p]]++;
  int nb = 0, start = 0;
  for (int i = 0; i < E; ++i) {
    int c = cnt[i];
    for (int s = 0; s < c; s += 4) {
      blk[4 + 4 * nb] = i;
      blk[4 + 4 * nb + 1] = start + s;
      blk[4 + 4 * nb + 2] = min(4, c - s);
      blk[4 + 4 * nb + 3] = 0;
      ++nb;
    }
    cnt[i] = start; /* from here on: the next free slot of expert i */
    start += c;
  }
  blk[0] = nb;
  for (long p = 0; p < pairs; ++p) ord[cnt[e[p]]++] = (int)p;
}

/* h[p, f] = silu(min(g, limit))*clamp(u, +-limit) from gu[p] = [gate (F), up (F)]. */
__kernel void moe_swiglu(TENSOR(gu), TENSOR(h), long pairs, int F, float limit) {
  long f = get_global_id(0), p = get_global_id(1);
  if (f >= F || p >= pairs) return;
  __global const float *row = (__global const float *)PTR(gu) + p * 2 * F;
  float g = row[f], u = row[F + f];
  ((__global float *)PTR(h))[p * F + f] = moe_act(g, u, limit);
}

/* y[t, c] = sum_i weights[t, i]*yp[t*k + i, c], slots in order; global (C, T). */
__kernel void moe_combine(TENSOR(yp), TENSOR(wt), int dwt, TENSOR(y), int dy, long T, int k,
                          int C) {
  long c = get_global_id(0), t = get_global_id(1);
  if (c >= C || t >= T) return;
  __global const float *src = (__global const float *)PTR(yp);
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) acc += ld(PTR(wt), dwt, t * k + i) * src[(t * k + i) * C + c];
  st(PTR(y), dy, t * C + c, acc);
}
