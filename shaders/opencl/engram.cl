/* Engram: n-gram hashing with wrapping 64-bit multiplies and floor modulo, the row gather
 * (rows checked before), the gate (one work-group per (t, m)) and the short convolution. */

/* idx[t, (n-2)*K + h] = (XOR_j tok(t-j)*mult[j]) mod primes[c] for n = 2..N; global (T). */
__kernel void ngram_hash(TENSOR(ids), TENSOR(hist), TENSOR(mult), TENSOR(primes), TENSOR(idx),
                         long T, int N, int K) {
  long t = get_global_id(0);
  if (t >= T) return;
  __global const long *mu = (__global const long *)PTR(mult);
  __global const long *pr = (__global const long *)PTR(primes);
  __global int *out = (__global int *)PTR(idx);
  long cols = (long)(N - 1) * K;
  for (int n = 2; n <= N; ++n) {
    ulong mix = 0; /* unsigned: overflow wraps, as the spec asks */
    for (int j = 0; j < n; ++j) {
      long tj = t - j;
      int tok = tj >= 0 ? ldi(PTR(ids), tj) : ldi(PTR(hist), N - 1 + tj);
      mix ^= (ulong)(long)tok * (ulong)mu[j];
    }
    long smix = (long)mix; /* two's complement reinterpretation */
    for (int h = 0; h < K; ++h) {
      long c = (long)(n - 2) * K + h;
      long p = pr[c];
      long r = smix % p; /* truncating; the spec wants the floor modulo */
      if (r < 0) r += p;
      out[t * cols + c] = (int)r;
    }
  }
}

/* e[t, h*D + d] = table[offsets[h] + idx[t, h], d]; heads concatenated; global (D, rows*H). */
__kernel void engram_lookup(TENSOR(table), int dt, TENSOR(idx), TENSOR(off), TENSOR(o), int dout,
                            long D, int H, long n) {
  long d = get_global_id(0), th = get_global_id(1);
  if (d >= D || th >= n) return;
  long row = (long)ldi(PTR(off), th % H) + ldi(PTR(idx), th);
  st(PTR(o), dout, th * D + d, ld(PTR(table), dt, row * D + d));
}

/* u[t, m] = sigmoid(g)*v[t], g = <rms_norm(h[t,m], wh[m]), rms_norm(k[t,m], wk[m])>/sqrt(C),
 * signed-sqrt'ed if sqrt_gate; one work-group per (t, m). */
__kernel void engram_gate(TENSOR(h), int dh, TENSOR(k), int dk, TENSOR(v), int dv, TENSOR(wh),
                          int dwh, TENSOR(wk), int dwk, TENSOR(o), int dout, int M, long C,
                          float eps, int sqrt_gate, __local float *red) {
  long tm = get_group_id(0), t = tm / M, m = tm % M, off = tm * C;
  int lid = get_local_id(0), wg = get_local_size(0);
  float sh = 0.0f, sk = 0.0f;
  for (long c = lid; c < C; c += wg) {
    float a = ld(PTR(h), dh, off + c), b = ld(PTR(k), dk, off + c);
    sh += a * a;
    sk += b * b;
  }
  sh = wg_sum(red, sh);
  sk = wg_sum(red, sk);
  float rh = 1.0f / sqrt(sh / (float)C + eps), rk = 1.0f / sqrt(sk / (float)C + eps);
  float g = 0.0f;
  for (long c = lid; c < C; c += wg) {
    float hn = ld(PTR(h), dh, off + c) * rh * ld(PTR(wh), dwh, m * C + c);
    float kn = ld(PTR(k), dk, off + c) * rk * ld(PTR(wk), dwk, m * C + c);
    g += hn * kn;
  }
  g = wg_sum(red, g);
  g *= 1.0f / sqrt((float)C);
  if (sqrt_gate) {
    float sgn = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f); /* sign(0) = 0 keeps g = 0 */
    g = sgn * sqrt(fmax(fabs(g), 1e-6f));
  }
  float alpha = 1.0f / (1.0f + exp(-g));
  for (long c = lid; c < C; c += wg) st(PTR(o), dout, off + c, alpha * ld(PTR(v), dv, t * C + c));
}

/* scale[t*M + m] = 1/sqrt(mean(u[t, m]^2) + eps); one work-group per (t, m). */
__kernel void short_conv_scale(TENSOR(u), int du, TENSOR(scale), long C, float eps,
                               __local float *red) {
  long tm = get_group_id(0);
  int lid = get_local_id(0), wg = get_local_size(0);
  float ss = 0.0f;
  for (long c = lid; c < C; c += wg) {
    float a = ld(PTR(u), du, tm * C + c);
    ss += a * a;
  }
  ss = wg_sum(red, ss);
  if (lid == 0) ((__global float *)PTR(scale))[tm] = 1.0f / sqrt(ss / (float)C + eps);
}

/* Row r of Z = hist (r < P) followed by z = rms_norm(u, wn), at (m, c). */
float short_conv_z(__global const uchar *u, int du, __global const uchar *hist,
                   __global const float *scale, __global const uchar *wn, int dn, long r, long P,
                   long m, long c, long M, long C) {
  if (r < P) return ld(hist, du, (r * M + m) * C + c);
  return ld(u, du, ((r - P) * M + m) * C + c) * scale[(r - P) * M + m] * ld(wn, dn, m * C + c);
}

/* y[t, q] = silu(sum_i w[q, i]*Z[P + t - (K-1-i)*dil, q]) + u[t, q]; global (M*C, T). */
__kernel void short_conv_y(TENSOR(u), int du, TENSOR(hist), TENSOR(wn), int dn, TENSOR(w),
                           int dw, TENSOR(scale), TENSOR(y), int dy, long T, long M, long C,
                           int K, int dil) {
  long q = get_global_id(0), t = get_global_id(1);
  if (q >= M * C || t >= T) return;
  long m = q / C, c = q % C, P = (long)(K - 1) * dil;
  __global const float *sc = (__global const float *)PTR(scale);
  float acc = 0.0f;
  for (int i = 0; i < K; ++i) {
    long r = P + t - (long)(K - 1 - i) * dil;
    acc += ld(PTR(w), dw, q * K + i) *
           short_conv_z(PTR(u), du, PTR(hist), sc, PTR(wn), dn, r, P, m, c, M, C);
  }
  float silu = acc / (1.0f + exp(-acc));
  st(PTR(y), dy, t * M * C + q, silu + ld(PTR(u), du, t * M * C + q));
}

/* hist_out[r] = Z[T + r] for r < P; global (M*C, P). */
__kernel void short_conv_hist(TENSOR(u), int du, TENSOR(hist), TENSOR(wn), int dn, TENSOR(scale),
                              TENSOR(ho), int dho, long T, long M, long C, long P) {
  long q = get_global_id(0), r = get_global_id(1);
  if (q >= M * C || r >= P) return;
  long m = q / C, c = q % C;
  __global const float *sc = (__global const float *)PTR(scale);
  st(PTR(ho), dho, r * M * C + q,
     short_conv_z(PTR(u), du, PTR(hist), sc, PTR(wn), dn, T + r, P, m, c, M, C));
}
