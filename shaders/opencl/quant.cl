/* Quantization (docs/ops.md): hadamard, fake_quant, and weights of e4m3/e2m1 codes with e8m0
 * scales decoded to f32 as they load (OpenCL C has no FP8/FP4 arithmetic). */

/* hadamard: each row x[D] (D a power of 2) becomes H_D·x·scale (scale = D^-1/2, from the
 * host), H_D the Sylvester-order Walsh–Hadamard matrix. One work-group per row: the row is
 * widened to f32 in local memory, then log2(D) stages of butterflies (u, v) -> (u + v, u - v)
 * at stride h = 1, 2, 4, ..., the same additions in the same order as the CPU reference, so
 * the results agree exactly. */
__kernel void hadamard(TENSOR(x), int dx, TENSOR(o), int dout, long D, float scale,
                       __local float *row) {
  long base = get_group_id(0) * D;
  int lid = get_local_id(0), wg = get_local_size(0);
  for (long i = lid; i < D; i += wg) row[i] = ld(PTR(x), dx, base + i);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (long h = 1; h < D; h *= 2) {
    /* Pair p of D/2: j = its block's start (2h·(p / h)) + its place in the block (p % h). */
    for (long p = lid; p < D / 2; p += wg) {
      long j = (p / h) * 2 * h + p % h;
      float u = row[j], v = row[j + h];
      row[j] = u + v;
      row[j + h] = u - v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (long i = lid; i < D; i += wg) st(PTR(o), dout, base + i, row[i] * scale);
}

/* ---- Exact encoders and the block scale (core/quant.c states them) ---------------------- */

/* f32 -> e4m3fn, round to nearest even, saturating to +-448 (infinities too), NaN -> 0x7F.
 * Bit manipulation only, so the result does not depend on the device's math library. */
uint f32_to_e4m3(float v) {
  if (isnan(v)) return 0x7Fu;
  uint bits = as_uint(v), sign = (bits >> 24) & 0x80u, a = bits & 0x7fffffffu;
  if (as_float(a) >= 448.0f) return sign | 0x7Eu;
  if (a < 0x3c800000u) { /* below 2^-6: subnormal quantum 2^-9, q = a·2^9 exactly */
    return sign | (uint)rint(as_float(a) * 512.0f); /* q = 8 is code 0x08, the least normal */
  }
  int E = (int)(a >> 23) - 127; /* E >= -6 */
  uint keep = (a >> 20) & 7u, rem = a & 0xFFFFFu;
  if (rem > 0x80000u || (rem == 0x80000u && (keep & 1u))) ++keep;
  if (keep == 8u) keep = 0u, ++E;
  return sign | ((uint)(E + 7) << 3) | keep; /* a < 448 keeps this at or below 0x7E */
}

/* f32 -> e2m1 nibble: to the nearest level, a tie to the even index, saturating at +-6; NaN
 * takes the largest level (there is no NaN code). */
uint f32_to_e2m1(float v) {
  if (isnan(v)) return 7u;
  uint sign = (as_uint(v) >> 28) & 8u;
  float a = fabs(v);
  const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  uint i = 0;
  while (i < 7u && (a > mid[i] || (a == mid[i] && ((i + 1u) & 1u) == 0u))) ++i;
  return sign | i;
}

/* The e8m0 code of the block scale 2^ceil(log2(max(amax, floor) / fmt_max)) (floor 1e-4 and
 * max 448 for e4m3; 6·2^-126 and 6 for e2m1). The exponent is found by exact comparisons
 * fmt_max·2^c >= r (products by powers of two are exact), so no division or log rounds. For
 * every float r this is the exponent vnrt_quant_block_scale gets from its correctly rounded
 * quotient: no quotient of a float by 448 or 6 lies within half an ulp above a power of two. */
uint quant_block_scale(int fmt, float amax) {
  float fl = fmt == DT_E2M1 ? 0x1.8p-124f : 1e-4f, fm = fmt == DT_E2M1 ? 6.0f : 448.0f;
  if (isnan(amax)) return 255u;
  float r = amax > fl ? amax : fl;
  if (isinf(r)) return 254u;
  int c = (int)(as_uint(r) >> 23) - 127 - (fmt == DT_E2M1 ? 2 : 8);
  if (c < -126) c = -126;
  if (c > 127) c = 127;
  while (c < 127 && fm * e8m0_to_f32((uint)(c + 127)) < r) ++c;
  while (c > -126 && fm * e8m0_to_f32((uint)(c + 126)) >= r) --c;
  return (uint)(c + 127);
}

/* One block of n channels at i0 of row base: v = x·mul, scale s from the block's amax, then
 * o = dec(enc(v / s))·s, as cpu_fake_quant_block. amax skips NaN (fmaxf does too). v / s is
 * v·2^-c exactly, taken as a product by the reciprocal power of two. */
void fake_quant_block(__global const uchar *x, int dx, __global uchar *o, int dout, long base,
                      long n, float mul, int fmt) {
  float amax = 0.0f;
  for (long i = 0; i < n; ++i) {
    float a = fabs(ld(x, dx, base + i) * mul);
    if (a > amax) amax = a;
  }
  uint code = quant_block_scale(fmt, amax);
  float s = e8m0_to_f32(code), inv = e8m0_to_f32(254u - code);
  if (code == 255u) inv = s; /* NaN */
  for (long i = 0; i < n; ++i) {
    float q = ld(x, dx, base + i) * mul * inv;
    float d = fmt == DT_E2M1 ? k_e2m1[f32_to_e2m1(q)] : e4m3_to_f32(f32_to_e4m3(q));
    st(o, dout, base + i, d * s);
  }
}

/* fake_quant over rows of x[rows, D]: work-item (j, row) with j < nb quantizes block j of
 * [start, start + nb·block); j == nb copies the channels outside it. Each row is first scaled
 * by mul[row] when has_mul (moe_ffn's routing weight before the down projection's input is
 * quantized). x and o may be the same buffer: an item reads its channels before writing
 * them and no two items share one. */
__kernel void fake_quant(TENSOR(x), int dx, TENSOR(mul), int dm, int has_mul, TENSOR(o),
                         int dout, long rows, long D, long start, long nb, int block, int fmt) {
  long j = get_global_id(0), row = get_global_id(1);
  if (j > nb || row >= rows) return;
  float m = has_mul ? ld(PTR(mul), dm, row) : 1.0f;
  if (j < nb) {
    fake_quant_block(PTR(x), dx, PTR(o), dout, row * D + start + j * block, block, m, fmt);
    return;
  }
  for (long i = 0; i < D; ++i) {
    if (i == start) i += nb * block;
    if (i >= D) break;
    st(PTR(o), dout, row * D + i, ld(PTR(x), dx, row * D + i) * m);
  }
}

/* ---- Products with a weight that may be quantized ------------------------------------- */

/* A weight operand: (buffer, offset), dtype (a float dtype, or e4m3/e2m1 codes), its e8m0
 * scale (buffer, offset; unread for a float weight) and the block [rows, cols] one scale
 * covers. Weight z of a stack of [R, C] matrices: W[z][r][c] = dec(code) · 2^(scale[z][r / b0]
 * [c / b1] - 127). */
#define QWEIGHT(n) TENSOR(n), int n##_dt, TENSOR(n##_s), int n##_b0, int n##_b1
#define QW(n) PTR(n), n##_dt, PTR(n##_s), n##_b0, n##_b1

/* Σ_k x[k]·W[k] over one row of e4m3 codes (scale srow[k / b1]), in f32 with k ascending:
 * 16 products at a time (dec·s, one rounding, as the reference's dequantized weight), still
 * added one by one in k's order, so the sum is the reference's. */
float dot_e4m3_row(__global const uchar *row, __global const uchar *srow, int b1,
                   __global const float *x, long K) {
  float acc = 0.0f;
  for (long k0 = 0; k0 < K; k0 += b1) {
    long k1 = k0 + b1 < K ? k0 + b1 : K, k = k0;
    float s = e8m0_to_f32(srow[k0 / b1]);
    for (; k + 16 <= k1; k += 16) {
      float16 pr = vload16(0, x + k) * (e4m3_to_f32x16(vload16(0, row + k)) * s);
      acc += pr.s0, acc += pr.s1, acc += pr.s2, acc += pr.s3;
      acc += pr.s4, acc += pr.s5, acc += pr.s6, acc += pr.s7;
      acc += pr.s8, acc += pr.s9, acc += pr.sa, acc += pr.sb;
      acc += pr.sc, acc += pr.sd, acc += pr.se, acc += pr.sf;
    }
    for (; k < k1; ++k) acc += x[k] * (e4m3_to_f32(row[k]) * s);
  }
  return acc;
}

/* The same over a row of e2m1 codes (row starts on a byte: K is even). */
float dot_e2m1_row(__global const uchar *row, __global const uchar *srow, int b1,
                   __global const float *x, long K) {
  float acc = 0.0f;
  for (long k0 = 0; k0 < K; k0 += b1) {
    long k1 = k0 + b1 < K ? k0 + b1 : K, k = k0;
    float s = e8m0_to_f32(srow[k0 / b1]);
    if ((k & 1) == 0) {
      for (; k + 16 <= k1; k += 16) {
        float16 pr = vload16(0, x + k) * (e2m1_to_f32x16(vload8(0, row + (k >> 1))) * s);
        acc += pr.s0, acc += pr.s1, acc += pr.s2, acc += pr.s3;
        acc += pr.s4, acc += pr.s5, acc += pr.s6, acc += pr.s7;
        acc += pr.s8, acc += pr.s9, acc += pr.sa, acc += pr.sb;
        acc += pr.sc, acc += pr.sd, acc += pr.se, acc += pr.sf;
      }
    }
    for (; k < k1; ++k) {
      uint b = row[k >> 1];
      acc += x[k] * (k_e2m1[(k & 1) ? (b >> 4) : (b & 0xFu)] * s);
    }
  }
  return acc;
}

/* Σ_k x[k]·W(n, k) over k < K in f32, k ascending (x is an f32 row). W(n, k) is W[z][n][k]
 * (trans: w is [N, K]) or W[z][k][n] (w is [K, N]); R x C are w's last two dims. A float
 * weight is loaded as is; codes are decoded, then scaled, one scale per run of k inside a
 * block. */
float qw_dot(__global const uchar *w, int dt, __global const uchar *ws, int b0, int b1, long z,
             long R, long C, int trans, long n, __global const float *x, long K) {
  float acc = 0.0f;
  if (!is_codes(dt)) {
    for (long k = 0; k < K; ++k) {
      acc += x[k] * ld(w, dt, trans ? (z * R + n) * C + k : (z * R + k) * C + n);
    }
    return acc;
  }
  long SR = (R + b0 - 1) / b0, SC = (C + b1 - 1) / b1;
  if (trans) {
    __global const uchar *srow = ws + (z * SR + n / b0) * SC;
    if (dt == DT_E4M3) return dot_e4m3_row(w + (z * R + n) * C, srow, b1, x, K);
    return dot_e2m1_row(w + (z * R + n) * C / 2, srow, b1, x, K);
  }
  for (long k0 = 0; k0 < K; k0 += b0) {
    long k1 = k0 + b0 < K ? k0 + b0 : K;
    float s = e8m0_to_f32(ws[(z * SR + k0 / b0) * SC + n / b1]);
    for (long k = k0; k < k1; ++k) acc += x[k] * (ld_code(w, dt, (z * R + k) * C + n) * s);
  }
  return acc;
}

/* o[m, n] = Σ_k x[m, k]·W(n, k): linear (trans, w [N, K]) and matmul with a rank-2 b [K, N]
 * (a's batches are rows); x is f32 (the input widened, or fake-quantized). With G groups
 * (grouped_linear, trans; G = 1 otherwise) row m of x and o is group m % G of a row, which
 * takes w's rows [g·N, (g+1)·N). global (N, M). */
__kernel void qgemv(TENSOR(x), QWEIGHT(w), TENSOR(o), int dout, long M, long N, long K,
                    int trans, long G) {
  long n = get_global_id(0), m = get_global_id(1);
  if (n >= N || m >= M) return;
  __global const float *xr = (__global const float *)PTR(x) + m * K;
  float acc = qw_dot(QW(w), 0, trans ? G * N : K, trans ? K : N, trans, (m % G) * N + n, xr, K);
  st(PTR(o), dout, m * N + n, acc);
}

/* qgemv for linear's (and grouped_linear's) e4m3 and e2m1 codes, four output features per
 * work-item (w's rows (m % G)·N + n): four independent sums interleave (one sum's adds wait
 * on each other), each still the reference's sum in k's order, 16 decoded products at a time.
 * global (ceil(N / 4), M). */
#define ADD16_(acc, pr)                                                        \
  acc += pr.s0, acc += pr.s1, acc += pr.s2, acc += pr.s3, acc += pr.s4,         \
      acc += pr.s5, acc += pr.s6, acc += pr.s7, acc += pr.s8, acc += pr.s9,     \
      acc += pr.sa, acc += pr.sb, acc += pr.sc, acc += pr.sd, acc += pr.se,     \
      acc += pr.sf
#define QGEMV4_(name, DEC16, DEC1, ROWBYTES, CHUNK)                                            \
  __kernel void name(TENSOR(x), QWEIGHT(w), TENSOR(o), int dout, long M, long N, long K,      \
                     int trans, long G) {                                                     \
    long n0 = get_global_id(0) * 4, m = get_global_id(1);                                     \
    if (n0 >= N || m >= M) return;                                                            \
    __global const float *xr = (__global const float *)PTR(x) + m * K;                        \
    long SC = (K + w_b1 - 1) / w_b1;                                                          \
    long n[4];                                                                                \
    __global const uchar *row[4], *srow[4];                                                   \
    for (int r = 0; r < 4; ++r) {                                                             \
      n[r] = (m % G) * N + (n0 + r < N ? n0 + r : N - 1);                                     \
      row[r] = PTR(w) + n[r] * (ROWBYTES);                                                    \
      srow[r] = PTR(w_s) + (n[r] / w_b0) * SC;                                                \
    }                                                                                         \
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;                                         \
    for (long k0 = 0; k0 < K; k0 += w_b1) {                                                   \
      long k1 = k0 + w_b1 < K ? k0 + w_b1 : K, k = k0;                                        \
      float s0 = e8m0_to_f32(srow[0][k0 / w_b1]), s1 = e8m0_to_f32(srow[1][k0 / w_b1]);        \
      float s2 = e8m0_to_f32(srow[2][k0 / w_b1]), s3 = e8m0_to_f32(srow[3][k0 / w_b1]);        \
      if (CHUNK(k)) {                                                                         \
        for (; k + 16 <= k1; k += 16) {                                                       \
          float16 xv = vload16(0, xr + k);                                                    \
          float16 p0 = xv * (DEC16(row[0], k) * s0), p1 = xv * (DEC16(row[1], k) * s1);       \
          float16 p2 = xv * (DEC16(row[2], k) * s2), p3 = xv * (DEC16(row[3], k) * s3);       \
          ADD16_(a0, p0);                                                                     \
          ADD16_(a1, p1);                                                                     \
          ADD16_(a2, p2);                                                                     \
          ADD16_(a3, p3);                                                                     \
        }                                                                                     \
      }                                                                                       \
      for (; k < k1; ++k) {                                                                   \
        a0 += xr[k] * (DEC1(row[0], k) * s0);                                                 \
        a1 += xr[k] * (DEC1(row[1], k) * s1);                                                 \
        a2 += xr[k] * (DEC1(row[2], k) * s2);                                                 \
        a3 += xr[k] * (DEC1(row[3], k) * s3);                                                 \
      }                                                                                       \
    }                                                                                         \
    const float acc[4] = {a0, a1, a2, a3};                                                    \
    for (int r = 0; r < 4 && n0 + r < N; ++r) st(PTR(o), dout, m * N + n0 + r, acc[r]);       \
  }

#define E4M3_DEC16_(row, k) e4m3_to_f32x16(vload16(0, (row) + (k)))
#define E4M3_DEC1_(row, k) e4m3_to_f32((row)[k])
#define E2M1_DEC16_(row, k) e2m1_to_f32x16(vload8(0, (row) + ((k) >> 1)))
#define E2M1_DEC1_(row, k) k_e2m1[((k) & 1) ? ((row)[(k) >> 1] >> 4) : ((row)[(k) >> 1] & 0xFu)]
#define ANY_CHUNK_(k) 1
#define EVEN_CHUNK_(k) (((k) & 1) == 0)
QGEMV4_(qgemv_e4m3, E4M3_DEC16_, E4M3_DEC1_, K, ANY_CHUNK_)
QGEMV4_(qgemv_e2m1, E2M1_DEC16_, E2M1_DEC1_, K / 2, EVEN_CHUNK_)

/* embedding with a quantized table [V, D] (ids clamped; their check is read after the run):
 * o[i, j] = W[ids[i]][j]. */
__kernel void qembedding(QWEIGHT(t), TENSOR(ids), TENSOR(o), int dout, long D, long n, long V) {
  long j = get_global_id(0), i = get_global_id(1);
  if (j >= D || i >= n) return;
  long row = clamp((long)ldi(PTR(ids), i), 0L, V - 1);
  long SC = (D + t_b1 - 1) / t_b1;
  float s = e8m0_to_f32(PTR(t_s)[(row / t_b0) * SC + j / t_b1]);
  st(PTR(o), dout, i * D + j, ld_code(PTR(t), t_dt, row * D + j) * s);
}

/* moe_ffn with quantized weights or act_quant, as gather-GEMVs over the (token, slot) pairs
 * (expert ids clamped to [0, E): their check is reported after the run).
 * h[p, f] = silu(min(g, limit))·clamp(u, ±limit) with g = W_gu[e][f]·x[t],
 * u = W_gu[e][F + f]·x[t]; x is the input's f32 copy (fake-quantized with act_quant).
 * global (F, T·k). */
__kernel void moe_ffn_up_q(TENSOR(x), TENSOR(ex), QWEIGHT(wgu), TENSOR(h), long pairs, int k,
                           int C, int F, float limit, int E) {
  long f = get_global_id(0), p = get_global_id(1);
  if (f >= F || p >= pairs) return;
  long t = p / k, e = clamp(ldi(PTR(ex), p), 0, E - 1);
  __global const float *xr = (__global const float *)PTR(x) + t * C;
  float g = qw_dot(QW(wgu), e, 2 * (long)F, C, 1, f, xr, C);
  float u = qw_dot(QW(wgu), e, 2 * (long)F, C, 1, F + f, xr, C);
  ((__global float *)PTR(h))[p * F + f] = moe_act(g, u, limit);
}

/* y[t, c] = Σ_i w[t, i]·(W_d[e][c]·h[t·k + i]) slots in order; with act_quant h already holds
 * the routing weight (fake_quant's mul), so the sum is of the plain dots. global (C, T). */
__kernel void moe_ffn_down_q(TENSOR(ex), TENSOR(wt), int dwt, int use_w, QWEIGHT(wd), TENSOR(h),
                             TENSOR(y), int dy, long T, int k, int C, int F, int E) {
  long c = get_global_id(0), t = get_global_id(1);
  if (c >= C || t >= T) return;
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    long p = t * k + i, e = clamp(ldi(PTR(ex), p), 0, E - 1);
    float dot = qw_dot(QW(wd), e, C, F, 1, c, (__global const float *)PTR(h) + p * F, F);
    acc += use_w ? ld(PTR(wt), dwt, p) * dot : dot;
  }
  st(PTR(y), dy, t * C + c, acc);
}

/* grouped_linear with a float weight (f32/f16/bf16; G groups as qgemv): four features per
 * work-item, VN_VW channels at a time (FP_CONTRACT ON, as the GEMM kernels), so the weight
 * streams through vector loads. global (ceil(N / 4), M). */
__kernel void gemv_float4(TENSOR(x), TENSOR(w), int dw, TENSOR(o), int dout, long M, long N,
                          long K, long G) {
#pragma OPENCL FP_CONTRACT ON
  long n0 = get_global_id(0) * 4, m = get_global_id(1);
  if (n0 >= N || m >= M) return;
  __global const float *xr = (__global const float *)PTR(x) + m * K;
  long r[4];
  for (int i = 0; i < 4; ++i) r[i] = ((m % G) * N + (n0 + i < N ? n0 + i : N - 1)) * K;
  floatv v0 = 0.0f, v1 = 0.0f, v2 = 0.0f, v3 = 0.0f;
  long k = 0;
  for (; k + VN_VW <= K; k += VN_VW) {
    floatv xv = vloadv(0, xr + k);
    v0 = xv * ldv(PTR(w), dw, r[0] + k) + v0;
    v1 = xv * ldv(PTR(w), dw, r[1] + k) + v1;
    v2 = xv * ldv(PTR(w), dw, r[2] + k) + v2;
    v3 = xv * ldv(PTR(w), dw, r[3] + k) + v3;
  }
  float acc[4] = {VN_HSUM(v0), VN_HSUM(v1), VN_HSUM(v2), VN_HSUM(v3)};
  for (; k < K; ++k) {
    for (int i = 0; i < 4; ++i) acc[i] += xr[k] * ld(PTR(w), dw, r[i] + k);
  }
  for (int i = 0; i < 4 && n0 + i < N; ++i) st(PTR(o), dout, m * N + n0 + i, acc[i]);
}

/* grouped_linear with e4m3/e2m1 codes when K and the block's columns are multiples of 16:
 * four features per work-item as qgemv_e4m3, but the products of a block are summed in
 * float16 lanes (then scaled by the block's power of two, exactly), not one by one in k's
 * order: a decode-sized product is bound by those adds otherwise. global (ceil(N / 4), M). */
#define QGEMV4V_(name, DEC16, ROWBYTES)                                                        \
  __kernel void name(TENSOR(x), QWEIGHT(w), TENSOR(o), int dout, long M, long N, long K,      \
                     long G) {                                                                \
    long n0 = get_global_id(0) * 4, m = get_global_id(1);                                     \
    if (n0 >= N || m >= M) return;                                                            \
    __global const float *xr = (__global const float *)PTR(x) + m * K;                        \
    long SC = (K + w_b1 - 1) / w_b1;                                                          \
    __global const uchar *row[4], *srow[4];                                                   \
    for (int r = 0; r < 4; ++r) {                                                             \
      long n = (m % G) * N + (n0 + r < N ? n0 + r : N - 1);                                   \
      row[r] = PTR(w) + n * (ROWBYTES);                                                       \
      srow[r] = PTR(w_s) + (n / w_b0) * SC;                                                   \
    }                                                                                         \
    float16 t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;                                       \
    for (long k0 = 0; k0 < K; k0 += w_b1) {                                                   \
      long k1 = k0 + w_b1 < K ? k0 + w_b1 : K;                                                \
      float16 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;                                     \
      for (long k = k0; k < k1; k += 16) {                                                    \
        float16 xv = vload16(0, xr + k);                                                      \
        a0 += xv * DEC16(row[0], k), a1 += xv * DEC16(row[1], k);                             \
        a2 += xv * DEC16(row[2], k), a3 += xv * DEC16(row[3], k);                             \
      }                                                                                       \
      t0 += a0 * e8m0_to_f32(srow[0][k0 / w_b1]), t1 += a1 * e8m0_to_f32(srow[1][k0 / w_b1]); \
      t2 += a2 * e8m0_to_f32(srow[2][k0 / w_b1]), t3 += a3 * e8m0_to_f32(srow[3][k0 / w_b1]); \
    }                                                                                         \
    const float acc[4] = {hsum8(t0.lo + t0.hi), hsum8(t1.lo + t1.hi), hsum8(t2.lo + t2.hi),  \
                          hsum8(t3.lo + t3.hi)};                                              \
    for (int r = 0; r < 4 && n0 + r < N; ++r) st(PTR(o), dout, m * N + n0 + r, acc[r]);       \
  }
QGEMV4V_(qgemv_e4m3_v, E4M3_DEC16_, K)
QGEMV4V_(qgemv_e2m1_v, E2M1_DEC16_, K / 2)

/* ---- Lane-summed products for decode (M = 1 and MoE at few tokens) --------------------- */
/* A work-item takes whole weight rows and sums their products in float16 lanes, a block's
 * lanes then scaled by its power of two (exact) and the lanes added at the end: the sum's
 * order differs from the reference's k order, within docs/ops.md's tolerance. Rows are read
 * as contiguous 16-byte vectors, which PoCL turns into vector loads; decoding never forms an
 * f32 subnormal (common.cl). */

/* Σ_k x[k]·W[k] over a row of codes (e4m3: K and b1 multiples of 16; e2m1: multiples of 32),
 * srow the row's scales (one per b1 columns). e2m1 takes each byte's two codes as lanes of
 * the even and the odd channels, so x is read as 32 floats split into evens and odds. */
/* Multiply-adds may fuse in these sums, as in the GEMM kernels: the order is already not the
 * reference's, and two accumulators per block keep the adds from waiting on each other. The
 * function is written once for x in global and once for x in local memory (OpenCL C 1.2 has
 * no generic address space). */
#pragma OPENCL FP_CONTRACT ON
#define QROW_DOT_LANES_(name, XSPACE, DEINT)                                              \
  float name(__global const uchar *row, int dt, __global const uchar *srow, int b1,       \
             XSPACE const float *x, long K) {                                             \
    float16 t = 0.0f;                                                                     \
    if (dt == DT_E4M3) {                                                                  \
      for (long k0 = 0, j = 0; k0 < K; k0 += b1, ++j) {                                   \
        long k1 = k0 + b1 < K ? k0 + b1 : K, k = k0;                                      \
        float16 a0 = 0.0f, a1 = 0.0f;                                                     \
        for (; k + 32 <= k1; k += 32) {                                                   \
          a0 += vload16(0, x + k) * e4m3_to_f32x16_div256(vload16(0, row + k));           \
          a1 += vload16(0, x + k + 16) * e4m3_to_f32x16_div256(vload16(0, row + k + 16)); \
        }                                                                                 \
        if (k < k1) a0 += vload16(0, x + k) * e4m3_to_f32x16_div256(vload16(0, row + k)); \
        t += times_pow2_e8m0(a0 + a1, 8, srow[j]);                                        \
      }                                                                                   \
    } else {                                                                              \
      for (long k0 = 0, j = 0; k0 < K; k0 += b1, ++j) {                                   \
        long k1 = k0 + b1 < K ? k0 + b1 : K;                                              \
        float16 a0 = 0.0f, a1 = 0.0f;                                                     \
        for (long k = k0; k < k1; k += 32) {                                              \
          ushort16 c = convert_ushort16(vload16(0, row + (k >> 1)));                      \
          float16 x0 = vload16(0, x + k), x1 = vload16(0, x + k + 16);                    \
          float16 xe = DEINT ? x0 : (float16)(x0.even, x1.even);                          \
          float16 xo = DEINT ? x1 : (float16)(x0.odd, x1.odd);                            \
          a0 += xe * e2m1_lo_div16384(c);                                                 \
          a1 += xo * e2m1_hi_div16384(c);                                                 \
        }                                                                                 \
        t += times_pow2_e8m0(a0 + a1, 14, srow[j]);                                       \
      }                                                                                   \
    }                                                                                     \
    return hsum8(t.lo + t.hi);                                                            \
  }
QROW_DOT_LANES_(qrow_dot_lanes, __global, 0)
/* The same with x in local memory (the fused kernels below), laid out by act_quant_rows: for
 * e2m1 rows each 32 channels as their 16 even ones, then their 16 odd ones. */
QROW_DOT_LANES_(qrow_dot_lanes_l, __local, 1)
#pragma OPENCL FP_CONTRACT OFF

/* linear (M rows of x, f32) with w [N, K] codes: o[m, n] = x[m]·W[n], one output per
 * work-item; with G groups (grouped_linear; G = 1 otherwise) row m takes w's rows
 * [(m % G)·N, (m % G + 1)·N) as qgemv. global (N, M). */
__kernel void qgemv_lanes(TENSOR(x), QWEIGHT(w), TENSOR(o), int dout, long M, long N, long K,
                          long G) {
  long n = get_global_id(0), m = get_global_id(1);
  if (n >= N || m >= M) return;
  long r = (m % G) * N + n;
  long rb = w_dt == DT_E2M1 ? K / 2 : K, SC = (K + w_b1 - 1) / w_b1;
  float acc = qrow_dot_lanes(PTR(w) + r * rb, w_dt, PTR(w_s) + (r / w_b0) * SC, w_b1,
                             (__global const float *)PTR(x) + m * K, K);
  st(PTR(o), dout, m * N + n, acc);
}

/* ---- act_quant inside the product (one launch per linear, not two) ---------------------- */

/* e4m3 rounding of 16 values q (|q| <= 448 but for infinities and NaN, which the encoder
 * saturates / maps to NaN), as e4m3_to_f32(f32_to_e4m3(q)) lane by lane: the f32 mantissa
 * rounded to 3 bits, to nearest even (the carry may move the exponent), from 2^-6 up; below
 * it the subnormal quantum 2^-9. Bit manipulation and exact products only. */
float16 e4m3_round16(float16 q) {
  float16 a = fabs(q);
  uint16 b = as_uint16(a);
  float16 rn = as_float16((b + 0x7FFFFu + ((b >> 20) & 1u)) & 0xFFF00000u);
  float16 rs = rint(a * 512.0f) * 0x1p-9f;
  float16 r = fmin(select(rn, rs, a < 0x1p-6f), 448.0f);
  r = as_float16(as_uint16(r) | (as_uint16(q) & 0x80000000u));
  return select(r, (float16)(as_float(0x7fc00000u)), isnan(q));
}

/* Stores 32 channels at xs: as they are, or (deint) the 16 even ones then the 16 odd ones. */
void st32_local(__local float *xs, float16 v0, float16 v1, int deint) {
  if (deint) {
    vstore16((float16)(v0.even, v1.even), 0, xs);
    vstore16((float16)(v0.odd, v1.odd), 0, xs + 16);
  } else {
    vstore16(v0, 0, xs);
    vstore16(v1, 0, xs + 16);
  }
}

/* A row of x (dtype dx, K channels from element base) times mul into xs[K] as f32, shared by
 * the work-group's items: with aq > 0 fake-quantized to e4m3 per aq channels with a
 * power-of-two block scale (fake_quant_block's result exactly: the same products, the same
 * scale, the same rounding), else only widened and multiplied. With deint (e2m1 weights) each
 * 32 channels are stored evens first (qrow_dot_lanes_l). K and aq are multiples of 32 (16
 * without deint). The caller puts the barrier after its rows. */
void act_quant_rows(__global const uchar *x, int dx, long base, long K, int aq, float mul,
                    int deint, __local float *xs) {
  int lid = get_local_id(0), wg = get_local_size(0);
  const int step = deint ? 32 : 16;
  if (aq > 0) {
    for (long j = lid; j < K / aq; j += wg) {
      long b0 = j * aq;
      float16 m16 = 0.0f;
      for (long i = 0; i < aq; i += 16) m16 = fmax(m16, fabs(ld16(x, dx, base + b0 + i) * mul));
      float8 m8 = fmax(m16.lo, m16.hi);
      float4 m4 = fmax(m8.lo, m8.hi);
      float amax = fmax(fmax(m4.s0, m4.s1), fmax(m4.s2, m4.s3));
      uint code = quant_block_scale(DT_E4M3, amax);
      float s = e8m0_to_f32(code), inv = e8m0_to_f32(254u - code);
      if (code == 255u) inv = s; /* NaN */
      for (long i = 0; i < aq; i += step) {
        float16 v0 = e4m3_round16(ld16(x, dx, base + b0 + i) * mul * inv) * s;
        if (deint) {
          float16 v1 = e4m3_round16(ld16(x, dx, base + b0 + i + 16) * mul * inv) * s;
          st32_local(xs + b0 + i, v0, v1, 1);
        } else {
          vstore16(v0, 0, xs + b0 + i);
        }
      }
    }
  } else {
    for (long i = (long)lid * step; i < K; i += (long)wg * step) {
      float16 v0 = ld16(x, dx, base + i) * mul;
      if (deint) {
        st32_local(xs + i, v0, ld16(x, dx, base + i + 16) * mul, 1);
      } else {
        vstore16(v0, 0, xs + i);
      }
    }
  }
}

/* qgemv_lanes with x read in its own dtype dx and, with aq, fake-quantized per aq channels
 * (linear's act_quant) by the work-group into local xs[K] before the rows are summed. global
 * (N rounded up to the work-group, M), work-groups (wg, 1). */
__kernel void qgemv_lanes_aq(TENSOR(x), int dx, int aq, QWEIGHT(w), TENSOR(o), int dout, long M,
                             long N, long K, long G, __local float *xs) {
  long n = get_global_id(0), m = get_global_id(1);
  act_quant_rows(PTR(x), dx, m * K, K, aq, 1.0f, w_dt == DT_E2M1, xs);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (n >= N || m >= M) return;
  long r = (m % G) * N + n;
  long rb = w_dt == DT_E2M1 ? K / 2 : K, SC = (K + w_b1 - 1) / w_b1;
  float acc = qrow_dot_lanes_l(PTR(w) + r * rb, w_dt, PTR(w_s) + (r / w_b0) * SC, w_b1, xs, K);
  st(PTR(o), dout, m * N + n, acc);
}

/* moe_ffn_up_q with lane sums: h[p, f] from rows f and F + f of expert e(p). global (F, T·k). */
__kernel void moe_ffn_up_lanes(TENSOR(x), TENSOR(ex), QWEIGHT(wgu), TENSOR(h), long pairs, int k,
                               int C, int F, float limit, int E) {
  long f = get_global_id(0), p = get_global_id(1);
  if (f >= F || p >= pairs) return;
  long t = p / k, e = clamp(ldi(PTR(ex), p), 0, E - 1);
  __global const float *xr = (__global const float *)PTR(x) + t * C;
  long rb = wgu_dt == DT_E2M1 ? C / 2 : C, SC = (C + wgu_b1 - 1) / wgu_b1;
  long R = 2 * (long)F, SR = (R + wgu_b0 - 1) / wgu_b0;
  __global const uchar *ws = PTR(wgu_s) + e * SR * SC;
  float g = qrow_dot_lanes(PTR(wgu) + (e * R + f) * rb, wgu_dt, ws + (f / wgu_b0) * SC, wgu_b1,
                           xr, C);
  float u = qrow_dot_lanes(PTR(wgu) + (e * R + F + f) * rb, wgu_dt,
                           ws + ((F + f) / wgu_b0) * SC, wgu_b1, xr, C);
  ((__global float *)PTR(h))[p * F + f] = moe_act(g, u, limit);
}

/* moe_ffn_down_q with lane sums. global (C, T). */
__kernel void moe_ffn_down_lanes(TENSOR(ex), TENSOR(wt), int dwt, int use_w, QWEIGHT(wd),
                                 TENSOR(h), TENSOR(y), int dy, long T, int k, int C, int F,
                                 int E) {
  long c = get_global_id(0), t = get_global_id(1);
  if (c >= C || t >= T) return;
  long rb = wd_dt == DT_E2M1 ? F / 2 : F, SC = (F + wd_b1 - 1) / wd_b1;
  long SR = (C + wd_b0 - 1) / wd_b0;
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    long p = t * k + i, e = clamp(ldi(PTR(ex), p), 0, E - 1);
    float dot = qrow_dot_lanes(PTR(wd) + (e * C + c) * rb, wd_dt,
                               PTR(wd_s) + (e * SR + c / wd_b0) * SC, wd_b1,
                               (__global const float *)PTR(h) + p * F, F);
    acc += use_w ? ld(PTR(wt), dwt, p) * dot : dot;
  }
  st(PTR(y), dy, t * C + c, acc);
}

/* The expert ids' check of the fused up passes, done by one item (check_index_val's slots,
 * read after the run; the passes clamp ids): the first bad position of ex[pairs] and its id,
 * or -1. */
void moe_ids_check(__global const uchar *ex, long pairs, int E, __global uchar *err, int slot) {
  int first = -1, bad = 0;
  for (long q = 0; q < pairs; ++q) {
    int v = ldi(ex, q);
    if (v < 0 || v >= E) {
      first = (int)q, bad = v;
      break;
    }
  }
  __global int *e = (__global int *)err;
  e[slot] = first;
  e[slot + 1] = bad;
}

/* moe_ffn_up_lanes with x read in its own dtype and, with aq, fake-quantized per aq channels
 * by the work-group into local xs[C] (act_quant_rows), and the expert ids' check done by its
 * first item: one launch, no check or fake_quant launch before it.
 * global (F rounded up to the work-group, T·k), work-groups (wg, 1): a group's pair p is
 * one token's. */
__kernel void moe_ffn_up_aq(TENSOR(x), int dx, int aq, TENSOR(ex), QWEIGHT(wgu), TENSOR(h),
                            long pairs, int k, int C, int F, float limit, int E,
                            __local float *xs, TENSOR(err), int slot) {
  long f = get_global_id(0), p = get_global_id(1);
  long t = p / k;
  if (f == 0 && p == 0) moe_ids_check(PTR(ex), pairs, E, PTR(err), slot);
  act_quant_rows(PTR(x), dx, t * C, C, aq, 1.0f, wgu_dt == DT_E2M1, xs);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (f >= F || p >= pairs) return;
  long e = clamp(ldi(PTR(ex), p), 0, E - 1);
  long rb = wgu_dt == DT_E2M1 ? C / 2 : C, SC = (C + wgu_b1 - 1) / wgu_b1;
  long R = 2 * (long)F, SR = (R + wgu_b0 - 1) / wgu_b0;
  __global const uchar *ws = PTR(wgu_s) + e * SR * SC;
  float g = qrow_dot_lanes_l(PTR(wgu) + (e * R + f) * rb, wgu_dt, ws + (f / wgu_b0) * SC, wgu_b1,
                             xs, C);
  float u = qrow_dot_lanes_l(PTR(wgu) + (e * R + F + f) * rb, wgu_dt,
                             ws + ((F + f) / wgu_b0) * SC, wgu_b1, xs, C);
  ((__global float *)PTR(h))[p * F + f] = moe_act(g, u, limit);
}

/* moe_ffn_down_lanes with the token's k rows of h in local xs[k·F]: with aq each row times
 * its routing weight, then fake-quantized per aq channels (DeepSeek's order), the weight not
 * applied again; without, widened only and the weight applied to each dot as before. global
 * (C rounded up to the work-group, T), work-groups (wg, 1). */
__kernel void moe_ffn_down_aq(TENSOR(ex), TENSOR(wt), int dwt, int aq, QWEIGHT(wd), TENSOR(h),
                              TENSOR(y), int dy, long T, int k, int C, int F, int E,
                              __local float *xs) {
  long c = get_global_id(0), t = get_global_id(1);
  for (int i = 0; i < k; ++i) {
    long p = t * k + i;
    act_quant_rows(PTR(h), DT_F32, p * F, F, aq, aq ? ld(PTR(wt), dwt, p) : 1.0f,
                   wd_dt == DT_E2M1, xs + (long)i * F);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (c >= C || t >= T) return;
  long rb = wd_dt == DT_E2M1 ? F / 2 : F, SC = (F + wd_b1 - 1) / wd_b1;
  long SR = (C + wd_b0 - 1) / wd_b0;
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    long p = t * k + i, e = clamp(ldi(PTR(ex), p), 0, E - 1);
    float dot = qrow_dot_lanes_l(PTR(wd) + (e * C + c) * rb, wd_dt,
                                 PTR(wd_s) + (e * SR + c / wd_b0) * SC, wd_b1, xs + (long)i * F,
                                 F);
    acc += aq ? dot : ld(PTR(wt), dwt, p) * dot;
  }
  st(PTR(y), dy, t * C + c, acc);
}

/* ---- FP4 experts at decode: four rows per work-item ------------------------------------ */
/* moe_ffn with e2m1 gate/up and down weights (fused passes, CPU drivers first of all): a
 * work-item sums four weight rows against the same x in local memory, so each 32 channels of
 * x are loaded once for the four rows and a work-group covers four times the rows for one
 * act_quant of its x; the block scale is one product by 2^(code - 113) (the decode's 2^14
 * and the e8m0 scale together) wherever that is a normal float. Per row the sums are
 * qrow_dot_lanes_l's: a block's 32-code steps in float16 lanes, then scaled and added. */
#pragma OPENCL FP_CONTRACT ON
/* The f16 values of 8 of h's lanes (lanes 0-7, or 8-15 with i = 1) as floats: 8-lane
 * conversions, which CPU compilers keep at their preferred 256-bit width without joining
 * halves into 512-bit registers. */
float8 half8_of(ushort16 h, int i) { return vload_half8(i, (__private const half *)&h); }
/* ae, ao += one 32-code step of an e2m1 row (16 bytes at p) times x's even channels (xe0:
 * the first 8, xe1: the next 8) and odd ones (xo0, xo1). */
#define E2M1_STEP4_(ae, ao, p, xe0, xe1, xo0, xo1)                                   \
  do {                                                                               \
    ushort16 c_ = convert_ushort16(vload16(0, (p)));                                 \
    ushort16 l_ = e2m1_lo_bits(c_), h_ = e2m1_hi_bits(c_);                           \
    ae = fma((xe0), half8_of(l_, 0), ae);                                            \
    ao = fma((xo0), half8_of(h_, 0), ao);                                            \
    ae = fma((xe1), half8_of(l_, 1), ae);                                            \
    ao = fma((xo1), half8_of(h_, 1), ao);                                            \
  } while (0)

/* The same on x86 with AVX-512 (VN_X86_512, common.cl): ae, ao (16 lanes each) += x's 16 even
 * channels (xe) and 16 odd ones (xo) times the row's codes looked up in tab (e2m1 / 2; the
 * caller's block scale takes 2^1 for it): vpermps reads each lane's low 4 bits, the even
 * code's nibble as it is and the odd one's shifted down. */
#define E2M1_STEP4_Z_(ae, ao, p, xe, xo)                                             \
  do {                                                                               \
    int16 c_ = convert_int16(vload16(0, (p)));                                       \
    ae = fma((xe), VN_PERM16(tab, c_), ae);                                          \
    ao = fma((xo), VN_PERM16(tab, c_ >> 4), ao);                                     \
  } while (0)

/* VN_PF on the lines that start in bytes [q0, q1) of rows r0..r3, pd bytes further on (the
 * same rows of a later work-item: rows pass each work-item in a few hundred bytes, too few
 * for the hardware prefetchers to run ahead). */
#define QROWS4_PREFETCH_(q0, q1)                                                     \
  for (long q_ = ((q0) + 63) & ~63L; q_ < (q1); q_ += 64) {                          \
    VN_PF(r0 + pd + q_);                                                             \
    VN_PF(r1 + pd + q_);                                                             \
    VN_PF(r2 + pd + q_);                                                             \
    VN_PF(r3 + pd + q_);                                                             \
  }

#ifdef VN_X86_512
/* The 16 e2m1 values / 2 (the callers' block scales take the 2^1), the table the AVX-512 e2m1
 * loops look codes up in. */
#define E2M1_HALF16                                                                           \
  ((float16)(0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.5f, 2.0f, 3.0f, -0.0f, -0.25f, -0.5f, -0.75f, \
             -1.0f, -1.5f, -2.0f, -3.0f))

/* x's 32 channels (evens xe, odds xo) times the 32 e2m1 codes of 16 bytes at p, in 16 lanes:
 * the codes looked up in tab (e2m1 / 2) by vpermps, the even nibble as it is and the odd one
 * shifted down. */
float16 e2m1_dot32_z(__global const uchar *p, float16 xe, float16 xo, float16 tab) {
  int16 c = convert_int16(vload16(0, p));
  return fma(xo, VN_PERM16(tab, c >> 4), xe * VN_PERM16(tab, c));
}

/* t + a·2^e·(the e8m0 scale code) on 16 lanes, as fma_pow2_e8m0_8. */
float16 fma_pow2_e8m0_16(float16 a, int e, uint code, float16 t) {
  if (code + (uint)e <= 254u) return fma(a, (float16)as_float((code + (uint)e) << 23), t);
  return t + (a * as_float((uint)(127 + e) << 23)) * e8m0_to_f32(code);
}

/* One 32-code block j of the four rows (channels k..k + 31): each row's 16 lanes times its
 * block scale (the table's halving undone by the 2^1) added to its 16-lane sum u0..u3. */
#define E2M1_BLOCK32_4_(k, j)                                                          \
  do {                                                                                 \
    const float16 xe_ = vload16(0, x + (k)), xo_ = vload16(1, x + (k));                \
    const long kb_ = (k) >> 1;                                                         \
    u0 = fma_pow2_e8m0_16(e2m1_dot32_z(r0 + kb_, xe_, xo_, tab), 1, s0[j], u0);        \
    u1 = fma_pow2_e8m0_16(e2m1_dot32_z(r1 + kb_, xe_, xo_, tab), 1, s1[j], u1);        \
    u2 = fma_pow2_e8m0_16(e2m1_dot32_z(r2 + kb_, xe_, xo_, tab), 1, s2[j], u2);        \
    u3 = fma_pow2_e8m0_16(e2m1_dot32_z(r3 + kb_, xe_, xo_, tab), 1, s3[j], u3);        \
  } while (0)
#endif

/* The dots of four e2m1 rows (bytes r0..r3, scale rows s0..s3, one scale per b1 columns)
 * with x[K] in local memory, each 32 channels stored evens first (act_quant_rows with
 * deint). K and b1 are multiples of 32. pd: the prefetch distance in bytes (callers: the
 * work-item two after this one, which reads the rows that far on). */
float4 qrows4_dot_e2m1_l(__global const uchar *r0, __global const uchar *r1,
                         __global const uchar *r2, __global const uchar *r3,
                         __global const uchar *s0, __global const uchar *s1,
                         __global const uchar *s2, __global const uchar *s3, int b1,
                         __local const float *x, long K, long pd) {
#ifdef VN_X86_512
  if (b1 == 32) {
    /* A scale per 32 codes (MXFP4's blocks): one step a block, so the block's sums stay in 16
     * lanes, scaled into 16-lane totals (no per-block halving of the lanes, the shuffle port's
     * work, nor the per-block prefetch bounds): four blocks (a 64-byte line of each row) per
     * turn with one prefetch per row, the lanes summed once at the end. */
    const float16 tab = E2M1_HALF16;
    float16 u0 = 0.0f, u1 = 0.0f, u2 = 0.0f, u3 = 0.0f;
    long k = 0, j = 0;
    for (; k + 128 <= K; k += 128, j += 4) {
      const long kb = k >> 1;
      VN_PF(r0 + pd + kb);
      VN_PF(r1 + pd + kb);
      VN_PF(r2 + pd + kb);
      VN_PF(r3 + pd + kb);
      E2M1_BLOCK32_4_(k, j);
      E2M1_BLOCK32_4_(k + 32, j + 1);
      E2M1_BLOCK32_4_(k + 64, j + 2);
      E2M1_BLOCK32_4_(k + 96, j + 3);
    }
    for (; k < K; k += 32, ++j) {
      QROWS4_PREFETCH_(k >> 1, (k + 32) >> 1);
      E2M1_BLOCK32_4_(k, j);
    }
    return (float4)(hsum8(u0.lo + u0.hi), hsum8(u1.lo + u1.hi), hsum8(u2.lo + u2.hi),
                    hsum8(u3.lo + u3.hi));
  }
#endif
  float8 t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
  for (long k0 = 0, j = 0; k0 < K; k0 += b1, ++j) {
    long k1 = k0 + b1 < K ? k0 + b1 : K;
    QROWS4_PREFETCH_(k0 >> 1, k1 >> 1);
#ifdef VN_X86_512
    /* Codes looked up in a 16-entry table of e2m1 values / 2, 16 at once (vpermps). */
    const float16 tab = E2M1_HALF16;
    float16 ze0 = 0.0f, ze1 = 0.0f, ze2 = 0.0f, ze3 = 0.0f, zo0 = 0.0f, zo1 = 0.0f, zo2 = 0.0f,
            zo3 = 0.0f;
    for (long k = k0; k < k1; k += 32) {
      float16 xe = vload16(0, x + k), xo = vload16(1, x + k);
      long kb = k >> 1;
      E2M1_STEP4_Z_(ze0, zo0, r0 + kb, xe, xo);
      E2M1_STEP4_Z_(ze1, zo1, r1 + kb, xe, xo);
      E2M1_STEP4_Z_(ze2, zo2, r2 + kb, xe, xo);
      E2M1_STEP4_Z_(ze3, zo3, r3 + kb, xe, xo);
    }
    uint c0 = s0[j], c1 = s1[j], c2 = s2[j], c3 = s3[j];
    t0 = fma_pow2_e8m0_8((ze0.lo + ze0.hi) + (zo0.lo + zo0.hi), 1, c0, t0);
    t1 = fma_pow2_e8m0_8((ze1.lo + ze1.hi) + (zo1.lo + zo1.hi), 1, c1, t1);
    t2 = fma_pow2_e8m0_8((ze2.lo + ze2.hi) + (zo2.lo + zo2.hi), 1, c2, t2);
    t3 = fma_pow2_e8m0_8((ze3.lo + ze3.hi) + (zo3.lo + zo3.hi), 1, c3, t3);
#else
    float8 e0 = 0.0f, e1 = 0.0f, e2 = 0.0f, e3 = 0.0f, o0 = 0.0f, o1 = 0.0f, o2 = 0.0f,
           o3 = 0.0f;
    for (long k = k0; k < k1; k += 32) {
      float8 xe0 = vload8(0, x + k), xe1 = vload8(1, x + k);
      float8 xo0 = vload8(2, x + k), xo1 = vload8(3, x + k);
      long kb = k >> 1;
      E2M1_STEP4_(e0, o0, r0 + kb, xe0, xe1, xo0, xo1);
      E2M1_STEP4_(e1, o1, r1 + kb, xe0, xe1, xo0, xo1);
      E2M1_STEP4_(e2, o2, r2 + kb, xe0, xe1, xo0, xo1);
      E2M1_STEP4_(e3, o3, r3 + kb, xe0, xe1, xo0, xo1);
    }
    uint c0 = s0[j], c1 = s1[j], c2 = s2[j], c3 = s3[j];
    t0 = fma_pow2_e8m0_8(e0 + o0, 14, c0, t0);
    t1 = fma_pow2_e8m0_8(e1 + o1, 14, c1, t1);
    t2 = fma_pow2_e8m0_8(e2 + o2, 14, c2, t2);
    t3 = fma_pow2_e8m0_8(e3 + o3, 14, c3, t3);
#endif
  }
  return (float4)(hsum8(t0), hsum8(t1), hsum8(t2), hsum8(t3));
}

/* The same for four e4m3 rows (K and b1 multiples of 16; x as act_quant_rows stores it
 * without deint), 16 codes a step in two 8-lane halves, two accumulators per row, a block's
 * scale one product by 2^(code - 119) (the decode's 2^8 with the e8m0 scale) for codes up to
 * 246. NaN codes are not patched in the loop (that select costs a shuffle-port operation per
 * 16 codes): each row ORs its codes' f16 bits plus 0x80, whose bit 14 is set only by a
 * carry through the 7 magnitude bits (bits 7-13) of a NaN code's 0x7F (two operations, not
 * the three of masking the magnitude first), and a row with one is summed again by
 * qrow_dot_lanes_l. */
#define E4M3_STEP4_(a, b, nan, p, x0, x1)                                            \
  do {                                                                               \
    short16 sx_ = convert_short16(as_char16(vload16(0, (p))));                       \
    ushort16 h_ = e4m3_f16_bits(sx_);                                                \
    nan |= h_ + (ushort)0x80;                                                        \
    a = fma((x0), half8_of(h_, 0), a);                                               \
    b = fma((x1), half8_of(h_, 1), b);                                               \
  } while (0)

/* The same step on x86 with AVX-512 (VN_X86_512, common.cl): the 16 f16 values converted and
 * multiplied in one 512-bit register, a = the two 8-lane accumulators side by side (the
 * same sums in the same order as E4M3_STEP4_'s). */
#define E4M3_STEP4_Z_(a, nan, p, xz)                                                 \
  do {                                                                               \
    short16 sx_ = convert_short16(as_char16(vload16(0, (p))));                       \
    ushort16 h_ = e4m3_f16_bits(sx_);                                                \
    nan |= h_ + (ushort)0x80;                                                        \
    a = fma((xz), VN_CVTPH16(h_), a);                                                \
  } while (0)

/* Two such steps (32 codes at p, x's channels xa then xb) with the widening, the f16 bits and
 * the NaN tracking done once on 32 lanes (one 512-bit register: VN_SHORT32, common.cl), so
 * the integer work per code halves; the two conversions and products are E4M3_STEP4_Z_'s in
 * the same order (the same sums, bit for bit). nan: 32 lanes, folded to 16 at the end. */
#define E4M3_STEP4_ZZ_(a, nan, p, xa, xb)                                            \
  do {                                                                               \
    VN_SHORT32 h_ = VN_E4M3_F16_BITS32(p);                                           \
    nan |= h_ + (short)0x80;                                                         \
    a = fma((xa), VN_CVTPH16(VN_LO16(h_)), a);                                       \
    a = fma((xb), VN_CVTPH16(VN_HI16(h_)), a);                                       \
  } while (0)

float4 qrows4_dot_e4m3_l(__global const uchar *r0, __global const uchar *r1,
                         __global const uchar *r2, __global const uchar *r3,
                         __global const uchar *s0, __global const uchar *s1,
                         __global const uchar *s2, __global const uchar *s3, int b1,
                         __local const float *x, long K, long pd) {
  float8 t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
  ushort16 n0 = 0, n1 = 0, n2 = 0, n3 = 0;
#ifdef VN_X86_512
  VN_SHORT32 m0 = 0, m1 = 0, m2 = 0, m3 = 0;
#endif
  for (long k0 = 0, j = 0; k0 < K; k0 += b1, ++j) {
    long k1 = k0 + b1 < K ? k0 + b1 : K;
    QROWS4_PREFETCH_(k0, k1);
#ifdef VN_X86_512
    float16 z0 = 0.0f, z1 = 0.0f, z2 = 0.0f, z3 = 0.0f;
    long k = k0;
    for (; k + 32 <= k1; k += 32) {
      float16 xa = vload16(0, x + k), xb = vload16(0, x + k + 16);
      E4M3_STEP4_ZZ_(z0, m0, r0 + k, xa, xb);
      E4M3_STEP4_ZZ_(z1, m1, r1 + k, xa, xb);
      E4M3_STEP4_ZZ_(z2, m2, r2 + k, xa, xb);
      E4M3_STEP4_ZZ_(z3, m3, r3 + k, xa, xb);
    }
    if (k < k1) {
      float16 xz = vload16(0, x + k);
      E4M3_STEP4_Z_(z0, n0, r0 + k, xz);
      E4M3_STEP4_Z_(z1, n1, r1 + k, xz);
      E4M3_STEP4_Z_(z2, n2, r2 + k, xz);
      E4M3_STEP4_Z_(z3, n3, r3 + k, xz);
    }
    float8 a0 = z0.lo, a1 = z1.lo, a2 = z2.lo, a3 = z3.lo;
    float8 b0 = z0.hi, b1_ = z1.hi, b2 = z2.hi, b3 = z3.hi;
#else
    float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, b0 = 0.0f, b1_ = 0.0f, b2 = 0.0f,
           b3 = 0.0f;
    for (long k = k0; k < k1; k += 16) {
      float8 x0 = vload8(0, x + k), x1 = vload8(1, x + k);
      E4M3_STEP4_(a0, b0, n0, r0 + k, x0, x1);
      E4M3_STEP4_(a1, b1_, n1, r1 + k, x0, x1);
      E4M3_STEP4_(a2, b2, n2, r2 + k, x0, x1);
      E4M3_STEP4_(a3, b3, n3, r3 + k, x0, x1);
    }
#endif
    uint c0 = s0[j], c1 = s1[j], c2 = s2[j], c3 = s3[j];
    t0 = fma_pow2_e8m0_8(a0 + b0, 8, c0, t0);
    t1 = fma_pow2_e8m0_8(a1 + b1_, 8, c1, t1);
    t2 = fma_pow2_e8m0_8(a2 + b2, 8, c2, t2);
    t3 = fma_pow2_e8m0_8(a3 + b3, 8, c3, t3);
  }
  float4 d = (float4)(hsum8(t0), hsum8(t1), hsum8(t2), hsum8(t3));
#ifdef VN_X86_512
  VN_SHORT32 m = m0 | m1 | m2 | m3;
  n0 |= as_ushort16(VN_LO16(m) | VN_HI16(m));
#endif
  if (any(((n0 | n1 | n2 | n3) & (ushort)0x4000) != (ushort)0)) {
    d.s0 = qrow_dot_lanes_l(r0, DT_E4M3, s0, b1, x, K);
    d.s1 = qrow_dot_lanes_l(r1, DT_E4M3, s1, b1, x, K);
    d.s2 = qrow_dot_lanes_l(r2, DT_E4M3, s2, b1, x, K);
    d.s3 = qrow_dot_lanes_l(r3, DT_E4M3, s3, b1, x, K);
  }
  return d;
}
#pragma OPENCL FP_CONTRACT OFF

/* moe_ffn_up_aq for e2m1 gate/up rows: an item takes features f0 = 2·i and f0 + 1, i.e. the
 * gate rows f0, f0 + 1 and the up rows F + f0, F + f0 + 1 of its pair's expert (a last odd
 * feature is read twice, stored once). global (ceil(F / 2) rounded up to the work-group,
 * T·k), work-groups (wg, 1). */
__kernel void moe_ffn_up_e2m1x4(TENSOR(x), int dx, int aq, TENSOR(ex), QWEIGHT(wgu), TENSOR(h),
                                long pairs, int k, int C, int F, float limit, int E,
                                __local float *xs, TENSOR(err), int slot) {
  long f0 = get_global_id(0) * 2, p = get_global_id(1);
  long t = p / k;
  if (f0 == 0 && p == 0) moe_ids_check(PTR(ex), pairs, E, PTR(err), slot);
  act_quant_rows(PTR(x), dx, t * C, C, aq, 1.0f, 1, xs);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (f0 >= F || p >= pairs) return;
  long e = clamp(ldi(PTR(ex), p), 0, E - 1);
  long f1 = f0 + 1 < F ? f0 + 1 : f0;
  long rb = C / 2, SC = (C + wgu_b1 - 1) / wgu_b1;
  long R = 2 * (long)F, SR = (R + wgu_b0 - 1) / wgu_b0;
  __global const uchar *w = PTR(wgu) + e * R * rb, *ws = PTR(wgu_s) + e * SR * SC;
  float4 d = qrows4_dot_e2m1_l(w + f0 * rb, w + f1 * rb, w + (F + f0) * rb, w + (F + f1) * rb,
                               ws + (f0 / wgu_b0) * SC, ws + (f1 / wgu_b0) * SC,
                               ws + ((F + f0) / wgu_b0) * SC, ws + ((F + f1) / wgu_b0) * SC,
                               wgu_b1, xs, C, 4 * rb);
  __global float *hr = (__global float *)PTR(h) + p * F;
  hr[f0] = moe_act(d.s0, d.s2, limit);
  if (f1 != f0) hr[f1] = moe_act(d.s1, d.s3, limit);
}

/* moe_ffn_down_aq for e2m1 rows: an item takes output channels c0 = 4·i .. c0 + 3 (rows of
 * each of the token's k experts; past C the last row is read again and not stored), the
 * token's k rows of h in local xs[k·F] as moe_ffn_down_aq's. global (ceil(C / 4) rounded up
 * to the work-group, T), work-groups (wg, 1). */
__kernel void moe_ffn_down_e2m1x4(TENSOR(ex), TENSOR(wt), int dwt, int aq, QWEIGHT(wd),
                                  TENSOR(h), TENSOR(y), int dy, long T, int k, int C, int F,
                                  int E, __local float *xs) {
  long c0 = get_global_id(0) * 4, t = get_global_id(1);
  for (int i = 0; i < k; ++i) {
    long p = t * k + i;
    act_quant_rows(PTR(h), DT_F32, p * F, F, aq, aq ? ld(PTR(wt), dwt, p) : 1.0f, 1,
                   xs + (long)i * F);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (c0 >= C || t >= T) return;
  long rb = F / 2, SC = (F + wd_b1 - 1) / wd_b1, SR = (C + wd_b0 - 1) / wd_b0;
  long c1 = c0 + 1 < C ? c0 + 1 : C - 1, c2 = c0 + 2 < C ? c0 + 2 : C - 1;
  long c3 = c0 + 3 < C ? c0 + 3 : C - 1;
  float4 acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    long p = t * k + i, e = clamp(ldi(PTR(ex), p), 0, E - 1);
    __global const uchar *w = PTR(wd) + e * C * rb, *ws = PTR(wd_s) + e * SR * SC;
    float4 d = qrows4_dot_e2m1_l(w + c0 * rb, w + c1 * rb, w + c2 * rb, w + c3 * rb,
                                 ws + (c0 / wd_b0) * SC, ws + (c1 / wd_b0) * SC,
                                 ws + (c2 / wd_b0) * SC, ws + (c3 / wd_b0) * SC, wd_b1,
                                 xs + (long)i * F, F, 8 * rb);
    acc += aq ? d : ld(PTR(wt), dwt, p) * d;
  }
  const float a[4] = {acc.s0, acc.s1, acc.s2, acc.s3};
  for (int r = 0; r < 4 && c0 + r < C; ++r) st(PTR(y), dy, t * C + c0 + r, a[r]);
}

/* qgemv_lanes_aq for e4m3 rows, four per work-item: outputs n0 = 4·i .. n0 + 3 of row m
 * (past N the last row is read again and not stored), x quantized into local xs[K] by the
 * work-group as qgemv_lanes_aq's. global (ceil(N / 4) rounded up to the work-group, M),
 * work-groups (wg, 1). */
__kernel void qgemv4_e4m3_aq(TENSOR(x), int dx, int aq, QWEIGHT(w), TENSOR(o), int dout, long M,
                             long N, long K, long G, __local float *xs) {
  long n0 = get_global_id(0) * 4, m = get_global_id(1);
  act_quant_rows(PTR(x), dx, m * K, K, aq, 1.0f, 0, xs);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (n0 >= N || m >= M) return;
  long base = (m % G) * N, SC = (K + w_b1 - 1) / w_b1;
  long r0 = base + n0, r1 = base + (n0 + 1 < N ? n0 + 1 : N - 1);
  long r2 = base + (n0 + 2 < N ? n0 + 2 : N - 1), r3 = base + (n0 + 3 < N ? n0 + 3 : N - 1);
  __global const uchar *w = PTR(w), *ws = PTR(w_s);
  float4 d = qrows4_dot_e4m3_l(w + r0 * K, w + r1 * K, w + r2 * K, w + r3 * K,
                               ws + (r0 / w_b0) * SC, ws + (r1 / w_b0) * SC,
                               ws + (r2 / w_b0) * SC, ws + (r3 / w_b0) * SC, w_b1, xs, K,
                               8 * K);
  const float a[4] = {d.s0, d.s1, d.s2, d.s3};
  for (int r = 0; r < 4 && n0 + r < N; ++r) st(PTR(o), dout, m * N + n0 + r, a[r]);
}
