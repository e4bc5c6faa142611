/* Positions and attention: rope (one work-item per channel pair) and attention (one
 * work-group per query row, an online softmax over key chunks held in local memory). */

/* The rotation angle pos*f, reduced to [-pi, pi], where f = fh + fl is the frequency split by the
 * host into two floats (computed there in double). Done in two-float arithmetic with exact
 * fma() products: a plain f32 product would lose whole radians' worth of bits for long
 * positions. Exact for |pos| < 2^24. */
float rope_angle(int pos, float fh, float fl) {
  const float two_pi_hi = 6.2831854820251465f;       /* (float)2pi */
  const float two_pi_mid = -1.7484555314695172e-07f; /* (float)(2pi - two_pi_hi) */
  const float two_pi_lo = -6.8604980400235275e-15f;  /* the next 24 bits */
  float p = (float)pos;
  float ah = p * fh;
  float ae = fma(p, fh, -ah) + p * fl; /* ah + ae = p*f to ~48 bits */
  float k = rint(ah * 0.159154943091895336f);
  float r = fma(-k, two_pi_hi, ah);
  r = fma(-k, two_pi_mid, r);
  r = fma(-k, two_pi_lo, r);
  return r + ae;
}

/* x[T, H, D] rotated on its last `dims` channels; freq[i] = (hi, lo) of pair i's frequency
 * (theta^(-2i/dims), YaRN-blended by the host). inverse rotates by the negative angle.
 * Global (D - dims + dims/2, T*H): items below first copy, the rest rotate one pair. */
__kernel void rope(TENSOR(x), int dx, TENSOR(pos), TENSOR(freq), TENSOR(o), int dout, int D,
                   int dims, int interleaved, int inverse, int H, long rows) {
  int c = get_global_id(0);
  long row = get_global_id(1);
  int first = D - dims, npair = dims / 2;
  if (c >= first + npair || row >= rows) return;
  long base = row * D;
  if (c < first) {
    st(PTR(o), dout, base + c, ld(PTR(x), dx, base + c));
    return;
  }
  int i = c - first;
  int p = ldi(PTR(pos), row / H);
  __global const float *f = (__global const float *)PTR(freq);
  float cs, sn = sincos(rope_angle(p, f[2 * i], f[2 * i + 1]), &cs);
  if (inverse) sn = -sn;
  long i1 = base + first + (interleaved ? 2 * i : i);
  long i2 = base + first + (interleaved ? 2 * i + 1 : i + npair);
  float x1 = ld(PTR(x), dx, i1), x2 = ld(PTR(x), dx, i2);
  st(PTR(o), dout, i1, x1 * cs - x2 * sn);
  st(PTR(o), dout, i2, x1 * sn + x2 * cs);
}

/* rope for CPU drivers, a token's H heads per work-item: global (first / 16 + dims / 2, T) with
 * first = D - dims a multiple of 16. Items below first / 16 copy 16 channels of every head
 * (ld16/st16 instead of a dtype switch per channel); the rest rotate pair i of every head, the
 * angle's sincos formed once for the H heads. Per channel the arithmetic of rope. */
__kernel void rope_heads(TENSOR(x), int dx, TENSOR(pos), TENSOR(freq), TENSOR(o), int dout,
                         int D, int dims, int interleaved, int inverse, int H, long T) {
  int c = get_global_id(0);
  long t = get_global_id(1);
  int first = D - dims, nchunk = first / 16, npair = dims / 2;
  if (c >= nchunk + npair || t >= T) return;
  if (c < nchunk) {
    for (int h = 0; h < H; ++h) {
      long b = (t * H + h) * D + 16 * c;
      st16(PTR(o), dout, b, ld16(PTR(x), dx, b));
    }
    return;
  }
  int i = c - nchunk;
  int p = ldi(PTR(pos), t);
  __global const float *f = (__global const float *)PTR(freq);
  float cs, sn = sincos(rope_angle(p, f[2 * i], f[2 * i + 1]), &cs);
  if (inverse) sn = -sn;
  for (int h = 0; h < H; ++h) {
    long base = (t * H + h) * D;
    long i1 = base + first + (interleaved ? 2 * i : i);
    long i2 = base + first + (interleaved ? 2 * i + 1 : i + npair);
    float x1 = ld(PTR(x), dx, i1), x2 = ld(PTR(x), dx, i2);
    st(PTR(o), dout, i1, x1 * cs - x2 * sn);
    st(PTR(o), dout, i2, x1 * sn + x2 * cs);
  }
}

/* Channels of Dv one work-item accumulates (host ensures Dv <= ATT_MAXJ*wg). */
#define ATT_MAXJ 8

/* q[T, Hq, D], k[S, Hkv, D], v[S, Hkv, Dv], sinks[Hq]?, kv_len[1]? -> o[T, Hq, Dv]. Work-group
 * r is query row (t, h); keys are scored a chunk of wg at a time into local memory. With
 * kv_len (checked to lie in [0, S] before) only its first rows of k and v exist. */
__kernel void attention(TENSOR(q), int dq, TENSOR(k), int dk, TENSOR(v), int dv, TENSOR(sk),
                        int dsk, int has_sinks, TENSOR(kvl), int has_kvl, TENSOR(o), int dout,
                        int T, int S, int Hq,
                        int Hkv, int D, int Dv, int causal, int window, float scale,
                        __local float *qrow, __local float *p, __local float *red) {
  const int lid = get_local_id(0), wg = get_local_size(0);
  const long r = get_group_id(0);
  const int t = r / Hq, h = r % Hq, kvh = h / (Hq / Hkv);
  if (has_kvl) S = ldi(PTR(kvl), 0);
  const long qpos = (long)S - T + t; /* query t sits at absolute position S-T+t */
  long lo = 0, hi = S - 1;           /* visible keys: [lo, hi] */
  if (causal && qpos < hi) hi = qpos;
  if (window > 0 && qpos - window + 1 > lo) lo = qpos - window + 1;
  const long orow = r * Dv;
  if (lo > hi) { /* a query that sees no key yields 0 */
    for (int c = lid; c < Dv; c += wg) st(PTR(o), dout, orow + c, 0.0f);
    return;
  }
  for (int c = lid; c < D; c += wg) qrow[c] = ld(PTR(q), dq, r * D + c);
  float m = -INFINITY, l = 0.0f;
  if (has_sinks) { /* the sink logit joins the denominator and contributes no value */
    m = ld(PTR(sk), dsk, h);
    l = 1.0f;
  }
  float acc[ATT_MAXJ];
  for (int j = 0; j < ATT_MAXJ; ++j) acc[j] = 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (long s0 = lo; s0 <= hi; s0 += wg) {
    long s = s0 + lid;
    float score = -INFINITY;
    if (s <= hi) {
      long ko = (s * Hkv + kvh) * D;
      float dot = 0.0f;
      for (int c = 0; c < D; ++c) dot += qrow[c] * ld(PTR(k), dk, ko + c);
      score = dot * scale;
    }
    float m_new = fmax(m, wg_max(red, score));
    float alpha = exp(m - m_new); /* 0 while m is -inf */
    float e = s <= hi ? exp(score - m_new) : 0.0f;
    p[lid] = e;
    l = l * alpha + wg_sum(red, e); /* wg_sum's barriers also publish p */
    int cnt = (int)min((long)wg, hi - s0 + 1);
    for (int j = 0; j < ATT_MAXJ; ++j) {
      int c = lid + j * wg;
      if (c >= Dv) break;
      float a = acc[j] * alpha;
      for (int i = 0; i < cnt; ++i) a += p[i] * ld(PTR(v), dv, ((s0 + i) * Hkv + kvh) * Dv + c);
      acc[j] = a;
    }
    m = m_new;
    barrier(CLK_LOCAL_MEM_FENCE); /* p is rewritten by the next chunk */
  }
  for (int j = 0; j < ATT_MAXJ; ++j) {
    int c = lid + j * wg;
    if (c >= Dv) break;
    st(PTR(o), dout, orow + c, acc[j] / l);
  }
}

/* The same attention for devices without dedicated local memory (CPU drivers, where a
 * work-group's items run one after another and barriers cost): one work-item per query row,
 * an online softmax key by key, the Dv accumulators in f32 scratch acc[rows, Dv]. */
__kernel void attention_rows(TENSOR(q), int dq, TENSOR(k), int dk, TENSOR(v), int dv, TENSOR(sk),
                             int dsk, int has_sinks, TENSOR(kvl), int has_kvl, TENSOR(o),
                             int dout, int T, int S, int Hq, int Hkv, int D, int Dv, int causal,
                             int window, float scale, TENSOR(acc)) {
  const long r = get_global_id(0);
  if (r >= (long)T * Hq) return;
  const int t = r / Hq, h = r % Hq, kvh = h / (Hq / Hkv);
  if (has_kvl) S = ldi(PTR(kvl), 0);
  const long qpos = (long)S - T + t;
  long lo = 0, hi = S - 1;
  if (causal && qpos < hi) hi = qpos;
  if (window > 0 && qpos - window + 1 > lo) lo = qpos - window + 1;
  const long orow = r * Dv;
  if (lo > hi) {
    for (int c = 0; c < Dv; ++c) st(PTR(o), dout, orow + c, 0.0f);
    return;
  }
  __global float *a = (__global float *)PTR(acc) + r * Dv;
  for (int c = 0; c < Dv; ++c) a[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  if (has_sinks) {
    m = ld(PTR(sk), dsk, h);
    l = 1.0f;
  }
  const long qo = r * D;
  if (dq == DT_F32 && dk == DT_F32 && dv == DT_F32 && D % VN_VW == 0 && Dv % VN_VW == 0) {
    /* f32 with whole vectors: the same loop on floatv (gemm.cl's vector width). */
    __global const float *qp = (__global const float *)PTR(q) + qo;
    __global const float *kp = (__global const float *)PTR(k), *vp = (__global const float *)PTR(v);
    for (long s = lo; s <= hi; ++s) {
      const long ko = (s * Hkv + kvh) * D, vo = (s * Hkv + kvh) * Dv;
      floatv dv8 = 0.0f;
      for (int c = 0; c < D; c += VN_VW) dv8 += vloadv(0, qp + c) * vloadv(0, kp + ko + c);
      float score = VN_HSUM(dv8) * scale;
      if (score > m) {
        float alpha = exp(m - score);
        l *= alpha;
        for (int c = 0; c < Dv; c += VN_VW) vstorev_(vloadv(0, a + c) * alpha, 0, a + c);
        m = score;
      }
      float p = exp(score - m);
      l += p;
      for (int c = 0; c < Dv; c += VN_VW) {
        vstorev_(vloadv(0, a + c) + p * vloadv(0, vp + vo + c), 0, a + c);
      }
    }
    for (int c = 0; c < Dv; ++c) st(PTR(o), dout, orow + c, a[c] / l);
    return;
  }
  for (long s = lo; s <= hi; ++s) {
    const long ko = (s * Hkv + kvh) * D, vo = (s * Hkv + kvh) * Dv;
    float dot = 0.0f;
    for (int c = 0; c < D; ++c) dot += ld(PTR(q), dq, qo + c) * ld(PTR(k), dk, ko + c);
    float score = dot * scale;
    if (score > m) { /* a new maximum: rescale what was summed so far */
      float alpha = exp(m - score);
      l *= alpha;
      for (int c = 0; c < Dv; ++c) a[c] *= alpha;
      m = score;
    }
    float p = exp(score - m);
    l += p;
    for (int c = 0; c < Dv; ++c) a[c] += p * ld(PTR(v), dv, vo + c);
  }
  for (int c = 0; c < Dv; ++c) st(PTR(o), dout, orow + c, a[c] / l);
}
