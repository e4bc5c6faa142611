/* mHC (DeepSeek-V4 hyper-connections): the per-token finish with Sinkhorn (one work-item per
 * token, f32 scratch), the weighted collapse of the streams, hc_post, and the standalone
 * sinkhorn. fn rows are [pre, post, comb]. The mix projection fn*f is a GEMM (gemm.cl) and its
 * rsqrt(mean(f^2) + norm_eps) a row reduction (short_conv_scale, engram.cl): mix = dot*inv. */

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
 * row is dot[t, :]*inv[t]; with self_inv inv[t] is computed here from X) and its collapse in
 * one launch: global (C rounded up to the work-group, T), work-groups (wg, 1). Each
 * work-group's first item computes its token's pre weights into local pw[n]; the item at
 * channel 0 also stores the token's post and comb;
 * then x[t, c] = sum_j pw[j]*X[t, j, c] as hc_collapse. */
__kernel void hc_pre_collapse(TENSOR(dot), TENSOR(inv), TENSOR(scale), int dsc, TENSOR(base),
                              int dba, TENSOR(post), int dpost, TENSOR(comb), int dcomb,
                              TENSOR(L), TENSOR(X), int dX, TENSOR(o), int dout, long T, int n,
                              int iters, float eps, long C, int self_inv, float norm_eps,
                              __local float *pw) {
  long c = get_global_id(0), t = get_global_id(1);
  if (get_local_id(0) == 0 && t < T) {
    int rows = (n + 2) * n, nn = n * n;
    __global const float *dt = (__global const float *)PTR(dot) + t * rows;
    float iv;
    if (self_inv) {
      /* inv[t] = rsqrt(mean(X[t]^2) + norm_eps) computed here (n·C a multiple of 16), in 16
       * lanes, instead of by short_conv_scale's launch before: one launch fewer a node. */
      const long nc = (long)n * C;
      float16 a = 0.0f;
      for (long i = 0; i < nc; i += 16) {
        float16 v = ld16(PTR(X), dX, t * nc + i);
        a = fma(v, v, a);
      }
      iv = 1.0f / sqrt(hsum8(a.lo + a.hi) / (float)nc + norm_eps);
    } else {
      iv = ((__global const float *)PTR(inv))[t];
    }
#define mx(r) (dt[r] * iv)
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
