/* mHC (DeepSeek-V4 hyper-connections): the per-token finish with Sinkhorn (one work-item per
 * token, f32 scratch), the weighted collapse of the streams, hc_post, and the standalone
 * sinkhorn. fn rows are [pre, post, comb]. The mix projection fn*f is a GEMM (gemm.cl) and its
 * rsqrt(mean(f^2) + norm_eps) a row reduction (short_conv_scale, engram.cl): mix = dot*inv;
 * on CPU drivers hc_pre's projection and sum of squares are hc_pre_mix's partial sums. */

/* hc_pre's mix projection on CPU drivers, split over the K = n·C inputs so that a token's
 * (n+2)·n dot products keep every core busy (as one GEMV they made ceil(rows/4) work-items,
 * six for V4). Item (g, s) of global (G·S, T), G = ceil(rows/4), computes the partial dots of
 * fn rows 4g..4g+3 with X[t] over inputs [s·Ks, (s+1)·Ks), Ks = K/S a multiple of 16, in
 * float16 lanes with fused multiply-adds, and the partial sum of squares of X[t] there (stored
 * by the items of g = 0): part[t, s, r] for r < rows, part[t, s, rows] the squares.
 * hc_pre_collapse adds the S partials. Rows past rows re-read the last and are not stored. */
__kernel void hc_pre_mix(TENSOR(X), int dX, TENSOR(fn), int dfn, TENSOR(part), long T, int rows,
                         long K, int S) {
  long gs = get_global_id(0), t = get_global_id(1);
  int G = (rows + 3) / 4;
  if (gs >= (long)G * S || t >= T) return;
  int g = (int)(gs / S), s = (int)(gs % S);
  long Ks = K / S, k0 = s * Ks, k1 = k0 + Ks, xb = t * K;
  int n0 = 4 * g;
  long r0 = n0 * K, r1 = min(n0 + 1, rows - 1) * K, r2 = min(n0 + 2, rows - 1) * K;
  long r3 = min(n0 + 3, rows - 1) * K;
  float16 c0 = 0.0f, c1 = 0.0f, c2 = 0.0f, c3 = 0.0f, q = 0.0f;
  if (dX == DT_F32 && dfn == DT_F32) {
    __global const float *x = (__global const float *)PTR(X) + xb;
    __global const float *w = (__global const float *)PTR(fn);
    for (long k = k0; k < k1; k += 16) {
      float16 xv = vload16(0, x + k);
      c0 = fma(xv, vload16(0, w + r0 + k), c0), c1 = fma(xv, vload16(0, w + r1 + k), c1);
      c2 = fma(xv, vload16(0, w + r2 + k), c2), c3 = fma(xv, vload16(0, w + r3 + k), c3);
      q = fma(xv, xv, q);
    }
  } else {
    for (long k = k0; k < k1; k += 16) {
      float16 xv = ld16(PTR(X), dX, xb + k);
      c0 = fma(xv, ld16(PTR(fn), dfn, r0 + k), c0), c1 = fma(xv, ld16(PTR(fn), dfn, r1 + k), c1);
      c2 = fma(xv, ld16(PTR(fn), dfn, r2 + k), c2), c3 = fma(xv, ld16(PTR(fn), dfn, r3 + k), c3);
      q = fma(xv, xv, q);
    }
  }
  __global float *o = (__global float *)PTR(part) + (t * S + s) * (rows + 1);
  float r[4] = {hsum8(c0.lo + c0.hi), hsum8(c1.lo + c1.hi), hsum8(c2.lo + c2.hi),
                hsum8(c3.lo + c3.hi)};
  for (int j = 0; j < 4 && n0 + j < rows; ++j) o[n0 + j] = r[j];
  if (g == 0) o[rows] = hsum8(q.lo + q.hi);
}

/* Row r of a token's mix dots: dot[r] itself (S = 0), or the sum of the S partials that
 * hc_pre_mix left at dot[s·(rows + 1) + r]. */
float mix_dot(__global const float *dot, int r, int S, int rows) {
  if (S == 0) return dot[r];
  float a = 0.0f;
  for (int s = 0; s < S; ++s) a += dot[s * (rows + 1) + r];
  return a;
}

/* In place on M[n, n] holding logits: row softmax, +eps, column normalise, then iters-1 rounds
 * of (row, column) normalisation; every divide adds eps. */
void sinkhorn_inplace(__global float *M, int n, int iters, float eps) {
  for (int i = 0; i < n; ++i) {
    __global float *row = M + i * n;
    float mx = row[0];
    for (int j = 1; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) {
      row[j] = exp(row[j] - mx);
      sum += row[j];
    }
    for (int j = 0; j < n; ++j) row[j] = row[j] / sum + eps;
  }
  for (int it = 0; it < (iters > 1 ? iters : 1); ++it) {
    if (it > 0) {
      for (int i = 0; i < n; ++i) {
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) sum += M[i * n + j];
        for (int j = 0; j < n; ++j) M[i * n + j] /= (sum + eps);
      }
    }
    for (int j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int i = 0; i < n; ++i) sum += M[i * n + j];
      for (int i = 0; i < n; ++i) M[i * n + j] /= (sum + eps);
    }
  }
}

/* hc_pre's finish per token (pre weights, post, and comb = sinkhorn(L), worked in L; the mix
 * row is dot[t, :]*inv[t]; with S > 0, dot holds hc_pre_mix's S partials a token and inv[t] is
 * computed here from their sums of squares) and its collapse in one launch: global (C rounded up to the work-group, T), work-groups (wg, 1). Each
 * work-group's first item computes its token's pre weights into local pw[n]; the item at
 * channel 0 also stores the token's post and comb;
 * then x[t, c] = sum_j pw[j]*X[t, j, c] as hc_collapse; with v16 an item works channels
 * 16·id..16·id+15, global (C/16 rounded up, T). */
__kernel void hc_pre_collapse(TENSOR(dot), TENSOR(inv), TENSOR(scale), int dsc, TENSOR(base),
                              int dba, TENSOR(post), int dpost, TENSOR(comb), int dcomb,
                              TENSOR(L), TENSOR(X), int dX, TENSOR(o), int dout, long T, int n,
                              int iters, float eps, long C, int S, float norm_eps, int v16,
                              __local float *pw) {
  long c = get_global_id(0), t = get_global_id(1);
  if (get_local_id(0) == 0 && t < T) {
    int rows = (n + 2) * n, nn = n * n;
    __global const float *dt =
        (__global const float *)PTR(dot) + t * (S > 0 ? (long)S * (rows + 1) : rows);
    float iv;
    if (S > 0) {
      /* inv[t] = rsqrt(mean(X[t]^2) + norm_eps) from hc_pre_mix's partial squares: a few adds
       * per work-group, where each group used to read the token's n·C inputs again. */
      iv = 1.0f / sqrt(mix_dot(dt, rows, S, rows) / (float)((long)n * C) + norm_eps);
    } else {
      iv = ((__global const float *)PTR(inv))[t];
    }
#define mx(r) (mix_dot(dt, (r), S, rows) * iv)
    float s_pre = ld(PTR(scale), dsc, 0);
    for (int j = 0; j < n; ++j) pw[j] = sigmoid_f(mx(j) * s_pre + ld(PTR(base), dba, j)) + eps;
    if (c == 0) {
      __global float *lt = (__global float *)PTR(L) + t * nn;
      float s_post = ld(PTR(scale), dsc, 1), s_comb = ld(PTR(scale), dsc, 2);
      for (int j = 0; j < n; ++j) {
        st(PTR(post), dpost, t * n + j,
           2.0f * sigmoid_f(mx(n + j) * s_post + ld(PTR(base), dba, n + j)));
      }
      for (int r = 0; r < nn; ++r) lt[r] = mx(2 * n + r) * s_comb + ld(PTR(base), dba, 2 * n + r);
      sinkhorn_inplace(lt, n, iters, eps);
      for (int r = 0; r < nn; ++r) st(PTR(comb), dcomb, t * nn + r, lt[r]);
    }
#undef mx
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (v16) {
    /* 16 channels per item (C a multiple of 16): the same products and sums per channel, a
     * dtype switch per 16 loads instead of per load. */
    c *= 16;
    if (c >= C || t >= T) return;
    float16 acc = 0.0f;
    for (int j = 0; j < n; ++j) acc += pw[j] * ld16(PTR(X), dX, (t * n + j) * C + c);
    st16(PTR(o), dout, t * C + c, acc);
    return;
  }
  if (c >= C || t >= T) return;
  float acc = 0.0f;
  for (int j = 0; j < n; ++j) acc += pw[j] * ld(PTR(X), dX, (t * n + j) * C + c);
  st(PTR(o), dout, t * C + c, acc);
}

/* hc_head: w_j = sigmoid(mix[j]*scale[0] + base[j]) + eps, mix[j] = dot[t, j]*inv[t]. */
__kernel void hc_head_finish(TENSOR(dot), TENSOR(inv), TENSOR(scale), int dsc, TENSOR(base),
                             int dba, TENSOR(w), long T, int n, float eps) {
  long t = get_global_id(0);
  if (t >= T) return;
  __global const float *dt = (__global const float *)PTR(dot) + t * n;
  float iv = ((__global const float *)PTR(inv))[t];
  __global float *pw = (__global float *)PTR(w) + t * n;
  float s = ld(PTR(scale), dsc, 0);
  for (int j = 0; j < n; ++j) pw[j] = sigmoid_f(dt[j] * iv * s + ld(PTR(base), dba, j)) + eps;
}

/* x[t, c] = sum_j w[t, j]*X[t, j, c]; global (C, T). */
__kernel void hc_collapse(TENSOR(X), int dX, TENSOR(w), TENSOR(o), int dout, long T, int n,
                          long C) {
  long c = get_global_id(0), t = get_global_id(1);
  if (c >= C || t >= T) return;
  __global const float *pw = (__global const float *)PTR(w) + t * n;
  float acc = 0.0f;
  for (int j = 0; j < n; ++j) acc += pw[j] * ld(PTR(X), dX, (t * n + j) * C + c);
  st(PTR(o), dout, t * C + c, acc);
}

/* X'[t, k, c] = post[t, k]*y[t, c] + sum_j comb[t, j, k]*X[t, j, c] (comb transposed);
 * global (C, T*n). */
__kernel void hc_post(TENSOR(X), int dX, TENSOR(y), int dy, TENSOR(post), int dpost,
                      TENSOR(comb), int dcomb, TENSOR(o), int dout, long T, int n, long C) {
  long c = get_global_id(0), tk = get_global_id(1);
  if (c >= C || tk >= T * n) return;
  long t = tk / n, k = tk % n;
  float acc = ld(PTR(post), dpost, t * n + k) * ld(PTR(y), dy, t * C + c);
  for (int j = 0; j < n; ++j) {
    acc += ld(PTR(comb), dcomb, (t * n + j) * n + k) * ld(PTR(X), dX, (t * n + j) * C + c);
  }
  st(PTR(o), dout, tk * C + c, acc);
}

/* hc_post on 16 channels per work-item (C a multiple of 16): the same products and sums in
 * the same order as hc_post, a dtype switch per 16 loads instead of per load. global
 * (C / 16, T·n). */
__kernel void hc_post16(TENSOR(X), int dX, TENSOR(y), int dy, TENSOR(post), int dpost,
                        TENSOR(comb), int dcomb, TENSOR(o), int dout, long T, int n, long C) {
  long c = get_global_id(0) * 16, tk = get_global_id(1);
  if (c >= C || tk >= T * n) return;
  long t = tk / n, k = tk % n;
  float16 acc = ld(PTR(post), dpost, t * n + k) * ld16(PTR(y), dy, t * C + c);
  for (int j = 0; j < n; ++j) {
    acc += ld(PTR(comb), dcomb, (t * n + j) * n + k) * ld16(PTR(X), dX, (t * n + j) * C + c);
  }
  st16(PTR(o), dout, tk * C + c, acc);
}

/* L[batch, n, n] -> sinkhorn(L), worked in f32 scratch; one work-item per matrix. */
__kernel void sinkhorn(TENSOR(L), int dL, TENSOR(work), TENSOR(o), int dout, long batch, int n,
                       int iters, float eps) {
  long b = get_global_id(0);
  if (b >= batch) return;
  int nn = n * n;
  __global float *M = (__global float *)PTR(work) + b * nn;
  for (int r = 0; r < nn; ++r) M[r] = ld(PTR(L), dL, b * nn + r);
  sinkhorn_inplace(M, n, iters, eps);
  for (int r = 0; r < nn; ++r) st(PTR(o), dout, b * nn + r, M[r]);
}
