/* vnrt's own GEMM kernels for matmul and linear: C[z][m][n] = sum_k A[z][m][k]*B[z][k][n].
 * Operands are addressed through element strides, so one kernel covers matmul (B [K, N]) and
 * linear (B = w [N, K]) and broadcast batch dims (a batch stride of 0); every dtype is widened
 * while a tile is loaded, so f16/bf16 weights need no conversion pass. Sums run over k in order,
 * as the CPU reference does. gemm_t64/gemm_t32 tile through local memory (each work-item
 * computes a 4x4 block); gemm_rows serves few rows (decode) with a work-group per output. */

#define GEMM_TK 16

/* The tiled body: TS x TS outputs per work-group of WX x WX items (TS = 4*WX). */
void gemm_tiled_body(__global const uchar *A, int da, long a_sm, long a_sk, long a_base,
                     __global const uchar *B, int db, long b_sk, long b_sn, long b_base,
                     __global uchar *C, int dc, long c_base, int M, int N, int K,
                     __local float *As, __local float *Bs, const int TS, const int WX) {
  const int LD = TS + 1; /* padding keeps the column reads apart in local memory banks */
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int lid = ty * WX + tx, nthreads = WX * WX;
  const int n0 = get_group_id(0) * TS, m0 = get_group_id(1) * TS;
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += GEMM_TK) {
    /* Adjacent work-items read adjacent k of A's rows. */
    for (int e = lid; e < TS * GEMM_TK; e += nthreads) {
      int mm = e / GEMM_TK, kk = e % GEMM_TK;
      int gm = m0 + mm, gk = k0 + kk;
      As[kk * LD + mm] = (gm < M && gk < K) ? ld(A, da, a_base + gm * a_sm + gk * a_sk) : 0.0f;
    }
    /* ... and adjacent elements of B along whichever dim is contiguous. */
    if (b_sn == 1) {
      for (int e = lid; e < TS * GEMM_TK; e += nthreads) {
        int kk = e / TS, nn = e % TS;
        int gk = k0 + kk, gn = n0 + nn;
        Bs[kk * LD + nn] = (gk < K && gn < N) ? ld(B, db, b_base + gk * b_sk + gn) : 0.0f;
      }
    } else {
      for (int e = lid; e < TS * GEMM_TK; e += nthreads) {
        int nn = e / GEMM_TK, kk = e % GEMM_TK;
        int gk = k0 + kk, gn = n0 + nn;
        Bs[kk * LD + nn] =
            (gk < K && gn < N) ? ld(B, db, b_base + gk * b_sk + gn * b_sn) : 0.0f;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int kk = 0; kk < GEMM_TK; ++kk) {
      float av[4], bv[4];
      for (int i = 0; i < 4; ++i) av[i] = As[kk * LD + ty + i * WX];
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk * LD + tx + j * WX];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int i = 0; i < 4; ++i) {
    int m = m0 + ty + i * WX;
    if (m >= M) continue;
    for (int j = 0; j < 4; ++j) {
      int n = n0 + tx + j * WX;
      if (n < N) st(C, dc, c_base + (long)m * N + n, acc[i][j]);
    }
  }
}

/* Argument list shared by the GEMM kernels. Batch z = b0*bd1 + b1 of the result. */
#define GEMM_ARGS                                                                         \
  TENSOR(a), int da, long a_sm, long a_sk, long a_bs0, long a_bs1, TENSOR(b), int db,     \
      long b_sk, long b_sn, long b_bs0, long b_bs1, TENSOR(c), int dc, int M, int N, int K, \
      int bd1

/* No reqd_work_group_size: a device whose work-groups are smaller must still build the
 * program (the host then picks gemm_t32 or gemm_naive). */
__kernel void gemm_t64(GEMM_ARGS) {
  __local float As[GEMM_TK * 65], Bs[GEMM_TK * 65];
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  gemm_tiled_body(PTR(a), da, a_sm, a_sk, b0 * a_bs0 + b1 * a_bs1, PTR(b), db, b_sk, b_sn,
                  b0 * b_bs0 + b1 * b_bs1, PTR(c), dc, z * M * N, M, N, K, As, Bs, 64, 16);
}

__kernel void gemm_t32(GEMM_ARGS) {
  __local float As[GEMM_TK * 33], Bs[GEMM_TK * 33];
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  gemm_tiled_body(PTR(a), da, a_sm, a_sk, b0 * a_bs0 + b1 * a_bs1, PTR(b), db, b_sk, b_sn,
                  b0 * b_bs0 + b1 * b_bs1, PTR(c), dc, z * M * N, M, N, K, As, Bs, 32, 8);
}

/* Few rows: work-group (n) of items over k, one output per group; global (N*wg, M, batch). */
__kernel void gemm_rows(GEMM_ARGS, __local float *red) {
  int lid = get_local_id(0), wg = get_local_size(0);
  long n = get_group_id(0), m = get_global_id(1);
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  long ab = b0 * a_bs0 + b1 * a_bs1 + m * a_sm, bb = b0 * b_bs0 + b1 * b_bs1 + n * b_sn;
  float acc = 0.0f;
  for (long k = lid; k < K; k += wg) acc += ld(PTR(a), da, ab + k * a_sk) * ld(PTR(b), db, bb + k * b_sk);
  acc = wg_sum(red, acc);
  if (lid == 0) st(PTR(c), dc, z * M * N + m * N + n, acc);
}

/* One work-item per output, k in order: for devices whose work-groups are too small to tile. */
__kernel void gemm_naive(GEMM_ARGS) {
  long n = get_global_id(0), m = get_global_id(1);
  if (n >= N || m >= M) return;
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  long ab = b0 * a_bs0 + b1 * a_bs1 + m * a_sm, bb = b0 * b_bs0 + b1 * b_bs1 + n * b_sn;
  float acc = 0.0f;
  for (long k = 0; k < K; ++k) acc += ld(PTR(a), da, ab + k * a_sk) * ld(PTR(b), db, bb + k * b_sk);
  st(PTR(c), dc, z * M * N + m * N + n, acc);
}

/* ---- Register-blocked kernels with explicit vectors ------------------------------------ */
/* CPU-like devices (PoCL) run a work-group's items one after another, so local-memory tiles
 * buy nothing there; what pays is each item keeping a block of C in vector registers, written
 * out as separate variables so that no compiler leaves them in memory. The host builds with
 * -DVN_VW=<the device's preferred float vector width> (4, 8 or 16). These kernels are timed
 * against the tiled ones and clBLAST like any other candidate. Multiply-adds may fuse here
 * (FP_CONTRACT ON): that is the point of these kernels, and GEMM's tolerance allows it. */

#ifndef VN_VW
#define VN_VW 8
#endif
#if VN_VW == 16
#define floatv float16
#define vloadv vload16
#define vstorev_ vstore16
#define vload_halfv vload_half16
#define VN_HSUM(v) hsum8((v).lo + (v).hi)
#define VN_BF16V(p) as_float16(convert_uint16(vload16(0, (__global const ushort *)(p))) << 16)
#elif VN_VW == 4
#define floatv float4
#define vloadv vload4
#define vstorev_ vstore4
#define vload_halfv vload_half4
#define VN_HSUM(v) (((v).x + (v).y) + ((v).z + (v).w))
#define VN_BF16V(p) as_float4(convert_uint4(vload4(0, (__global const ushort *)(p))) << 16)
#else
#undef VN_VW
#define VN_VW 8
#define floatv float8
#define vloadv vload8
#define vstorev_ vstore8
#define vload_halfv vload_half8
#define VN_HSUM(v) hsum8(v)
#define VN_BF16V(p) as_float8(convert_uint8(vload8(0, (__global const ushort *)(p))) << 16)
#endif


/* VN_VW elements of dtype dt starting at element i. */
floatv ldv(__global const uchar *p, int dt, long i) {
  switch (dt) {
    case DT_F16: return vload_halfv(0, (__global const half *)(p + 2 * i));
    case DT_BF16: return VN_BF16V(p + 2 * i);
    default: return vloadv(0, (__global const float *)(p + 4 * i));
  }
}

/* One k-step of the 4x4 block of gemm_vec_nt, with loads LA (A rows) and LB (B rows). */
#define VN_NT_STEP(LA, LB)                                                                 \
  {                                                                                        \
    floatv a0 = LA(ar0 + k), a1 = LA(ar1 + k), a2 = LA(ar2 + k), a3 = LA(ar3 + k);          \
    floatv bv = LB(br0 + k);                                                               \
    c00 = a0 * bv + c00, c10 = a1 * bv + c10, c20 = a2 * bv + c20, c30 = a3 * bv + c30;    \
    bv = LB(br1 + k);                                                                      \
    c01 = a0 * bv + c01, c11 = a1 * bv + c11, c21 = a2 * bv + c21, c31 = a3 * bv + c31;    \
    bv = LB(br2 + k);                                                                      \
    c02 = a0 * bv + c02, c12 = a1 * bv + c12, c22 = a2 * bv + c22, c32 = a3 * bv + c32;    \
    bv = LB(br3 + k);                                                                      \
    c03 = a0 * bv + c03, c13 = a1 * bv + c13, c23 = a2 * bv + c23, c33 = a3 * bv + c33;    \
  }
#define VN_LD_F32A(i) vloadv(0, (__global const float *)A + (i))
#define VN_LD_F32B(i) vloadv(0, (__global const float *)B + (i))
#define VN_LD_F16B(i) vload_halfv(0, (__global const half *)(B + 2 * (i)))
#define VN_LD_BF16B(i) VN_BF16V(B + 2 * (i))
#define VN_LD_ANYA(i) ldv(A, da, (i))
#define VN_LD_ANYB(i) ldv(B, db, (i))

/* The vectorised part of a 4x4 block of dot products: r[i·4 + j] = A row ari · B row brj over
 * k < the returned kv (K rounded down to the vector width; the caller adds the tail). The
 * common dtype pairs get their own loops, so no load branches on a dtype. */
int nt_block4x4(__global const uchar *A, int da, __global const uchar *B, int db, long ar0,
                long ar1, long ar2, long ar3, long br0, long br1, long br2, long br3, int K,
                float *r) {
#pragma OPENCL FP_CONTRACT ON
  floatv c00 = 0.0f, c01 = 0.0f, c02 = 0.0f, c03 = 0.0f, c10 = 0.0f, c11 = 0.0f, c12 = 0.0f,
         c13 = 0.0f, c20 = 0.0f, c21 = 0.0f, c22 = 0.0f, c23 = 0.0f, c30 = 0.0f, c31 = 0.0f,
         c32 = 0.0f, c33 = 0.0f;
  int kv = K / VN_VW * VN_VW;
  if (da == DT_F32 && db == DT_F32) {
    for (int k = 0; k < kv; k += VN_VW) VN_NT_STEP(VN_LD_F32A, VN_LD_F32B)
  } else if (da == DT_F32 && db == DT_F16) {
    for (int k = 0; k < kv; k += VN_VW) VN_NT_STEP(VN_LD_F32A, VN_LD_F16B)
  } else if (da == DT_F32 && db == DT_BF16) {
    for (int k = 0; k < kv; k += VN_VW) VN_NT_STEP(VN_LD_F32A, VN_LD_BF16B)
  } else {
    for (int k = 0; k < kv; k += VN_VW) VN_NT_STEP(VN_LD_ANYA, VN_LD_ANYB)
  }
  r[0] = VN_HSUM(c00), r[1] = VN_HSUM(c01), r[2] = VN_HSUM(c02), r[3] = VN_HSUM(c03);
  r[4] = VN_HSUM(c10), r[5] = VN_HSUM(c11), r[6] = VN_HSUM(c12), r[7] = VN_HSUM(c13);
  r[8] = VN_HSUM(c20), r[9] = VN_HSUM(c21), r[10] = VN_HSUM(c22), r[11] = VN_HSUM(c23);
  r[12] = VN_HSUM(c30), r[13] = VN_HSUM(c31), r[14] = VN_HSUM(c32), r[15] = VN_HSUM(c33);
  return kv;
}

/* B transposed (linear: w[N, K]): an item computes C[m0..m0+4, n0..n0+4] with VN_VW partial
 * sums along k for each of its 16 outputs. Global (ceil(N/4), ceil(M/4), batch). */
__kernel void gemm_vec_nt(GEMM_ARGS) {
#pragma OPENCL FP_CONTRACT ON
  long n0 = get_global_id(0) * 4, m0 = get_global_id(1) * 4;
  if (n0 >= N || m0 >= M) return;
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  __global const uchar *A = PTR(a), *B = PTR(b);
  long ab = b0 * a_bs0 + b1 * a_bs1, bb = b0 * b_bs0 + b1 * b_bs1;
  /* Rows past the edge re-read the last row (in bounds) and are not stored. */
  long ar0 = ab + min(m0, (long)M - 1) * a_sm, ar1 = ab + min(m0 + 1, (long)M - 1) * a_sm;
  long ar2 = ab + min(m0 + 2, (long)M - 1) * a_sm, ar3 = ab + min(m0 + 3, (long)M - 1) * a_sm;
  long br0 = bb + min(n0, (long)N - 1) * b_sn, br1 = bb + min(n0 + 1, (long)N - 1) * b_sn;
  long br2 = bb + min(n0 + 2, (long)N - 1) * b_sn, br3 = bb + min(n0 + 3, (long)N - 1) * b_sn;
  float r[16];
  int kv = nt_block4x4(A, da, B, db, ar0, ar1, ar2, ar3, br0, br1, br2, br3, K, r);
  long arow[4] = {ar0, ar1, ar2, ar3}, brow[4] = {br0, br1, br2, br3};
  for (int i = 0; i < 4; ++i) {
    long m = m0 + i;
    if (m >= M) break;
    for (int j = 0; j < 4; ++j) {
      long n = n0 + j;
      if (n >= N) break;
      float s = r[i * 4 + j];
      for (int k = kv; k < K; ++k) s = ld(A, da, arow[i] + k) * ld(B, db, brow[j] + k) + s;
      st(PTR(c), dc, z * M * N + m * N + n, s);
    }
  }
}

/* One k-step of gemm_vec_nn's 8 rows: row i's A value (loaded by LS) times the two B
 * vectors b0v, b1v. */
#define VN_NN_ROW(i, LS)                                       \
  {                                                            \
    floatv av = (floatv)(LS(ar##i + k * a_sk));                \
    x##i = av * b0v + x##i;                                    \
    y##i = av * b1v + y##i;                                    \
  }
#define VN_NN_ROWS(LS) VN_NN_ROW(0, LS) VN_NN_ROW(1, LS) VN_NN_ROW(2, LS) VN_NN_ROW(3, LS) \
  VN_NN_ROW(4, LS) VN_NN_ROW(5, LS) VN_NN_ROW(6, LS) VN_NN_ROW(7, LS)
#define VN_LD_F32S(i) ((__global const float *)A)[i]
#define VN_LD_ANYS(i) ld(A, da, (i))
#define VN_NN_LOOP(LB, LS)                                     \
  for (int k = 0; k < K; ++k) {                                \
    floatv b0v = LB(bb + k * b_sk + n0);                       \
    floatv b1v = LB(bb + k * b_sk + n0 + VN_VW);               \
    VN_NN_ROWS(LS)                                             \
  }

/* B not transposed (matmul: B[K, N], n contiguous): an item computes 8 rows x 2*VN_VW
 * columns, two vector accumulators per row. Global (ceil(N/(2*VN_VW)), ceil(M/8), batch). */
__kernel void gemm_vec_nn(GEMM_ARGS) {
#pragma OPENCL FP_CONTRACT ON
  long n0 = get_global_id(0) * 2 * VN_VW, m0 = get_global_id(1) * 8;
  if (n0 >= N || m0 >= M) return;
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  __global const uchar *A = PTR(a), *B = PTR(b);
  long ab = b0 * a_bs0 + b1 * a_bs1, bb = b0 * b_bs0 + b1 * b_bs1;
  long ar0 = ab + min(m0, (long)M - 1) * a_sm, ar1 = ab + min(m0 + 1, (long)M - 1) * a_sm;
  long ar2 = ab + min(m0 + 2, (long)M - 1) * a_sm, ar3 = ab + min(m0 + 3, (long)M - 1) * a_sm;
  long ar4 = ab + min(m0 + 4, (long)M - 1) * a_sm, ar5 = ab + min(m0 + 5, (long)M - 1) * a_sm;
  long ar6 = ab + min(m0 + 6, (long)M - 1) * a_sm, ar7 = ab + min(m0 + 7, (long)M - 1) * a_sm;
  floatv x0 = 0.0f, x1 = 0.0f, x2 = 0.0f, x3 = 0.0f, x4 = 0.0f, x5 = 0.0f, x6 = 0.0f, x7 = 0.0f;
  floatv y0 = 0.0f, y1 = 0.0f, y2 = 0.0f, y3 = 0.0f, y4 = 0.0f, y5 = 0.0f, y6 = 0.0f, y7 = 0.0f;
  if (n0 + 2 * VN_VW <= N && b_sn == 1) {
    /* The common dtype pairs get their own loops, so no load branches on a dtype. */
    if (da == DT_F32 && db == DT_F32) {
      VN_NN_LOOP(VN_LD_F32B, VN_LD_F32S)
    } else if (da == DT_F32 && db == DT_F16) {
      VN_NN_LOOP(VN_LD_F16B, VN_LD_F32S)
    } else if (da == DT_F32 && db == DT_BF16) {
      VN_NN_LOOP(VN_LD_BF16B, VN_LD_F32S)
    } else {
      VN_NN_LOOP(VN_LD_ANYB, VN_LD_ANYS)
    }
  } else {
    /* The right edge (or a strided B): gather the columns, zeros past N. */
    for (int k = 0; k < K; ++k) {
      float bs[2 * VN_VW];
      for (int j = 0; j < 2 * VN_VW; ++j) {
        long n = n0 + j;
        bs[j] = n < N ? ld(B, db, bb + k * b_sk + n * b_sn) : 0.0f;
      }
      floatv b0v = vloadv(0, bs), b1v = vloadv(1, bs);
      VN_NN_ROWS(VN_LD_ANYS)
    }
  }
  floatv xs[8] = {x0, x1, x2, x3, x4, x5, x6, x7}, ys[8] = {y0, y1, y2, y3, y4, y5, y6, y7};
  for (int i = 0; i < 8; ++i) {
    long m = m0 + i;
    if (m >= M) break;
    float r[2 * VN_VW];
    vstorev_(xs[i], 0, r);
    vstorev_(ys[i], 1, r);
    for (int j = 0; j < 2 * VN_VW; ++j) {
      if (n0 + j < N) st(PTR(c), dc, z * M * N + m * N + n0 + j, r[j]);
    }
  }
}

/* ---- Grouped expert GEMM (moe_ffn) ----------------------------------------------------- */
/* moe_ffn's (token, slot) pairs are sorted by expert on the device (moe_sort in moe.cl) and cut
 * into blocks of at most 4 pairs of one expert; an item multiplies one block by 4 rows of that
 * expert's weights, so each weight row is read once per block instead of once per pair. */

/* out[p, r] = W[e, r, :]*in[p / in_div, :] for the pairs p of block b (ints: e, start, count, -)
 * and rows r0..r0+3; K the row length. Global (ceil(rows/4), max blocks). */
__kernel void moe_gemm_grouped(TENSOR(w), int dw, TENSOR(in), int din, int in_div,
                               TENSOR(out), TENSOR(order), TENSOR(blocks), int rows, int K) {
#pragma OPENCL FP_CONTRACT ON
  long r0 = get_global_id(0) * 4;
  int b = get_global_id(1);
  __global const int *hdr = (__global const int *)PTR(blocks);
  if (r0 >= rows || b >= hdr[0]) return;
  __global const int *blk = hdr + 4 + 4 * b;
  __global const int *ord = (__global const int *)PTR(order);
  long e = blk[0], start = blk[1];
  int cnt = blk[2];
  const int da = din, db = dw;
  __global const uchar *A = PTR(in), *B = PTR(w);
  long p0 = ord[start], p1 = ord[start + min(1, cnt - 1)];
  long p2 = ord[start + min(2, cnt - 1)], p3 = ord[start + min(3, cnt - 1)];
  long ar0 = p0 / in_div * K, ar1 = p1 / in_div * K, ar2 = p2 / in_div * K, ar3 = p3 / in_div * K;
  long wb = e * rows * (long)K;
  long br0 = wb + min(r0, (long)rows - 1) * K, br1 = wb + min(r0 + 1, (long)rows - 1) * K;
  long br2 = wb + min(r0 + 2, (long)rows - 1) * K, br3 = wb + min(r0 + 3, (long)rows - 1) * K;
  float r[16];
  int kv = nt_block4x4(A, da, B, db, ar0, ar1, ar2, ar3, br0, br1, br2, br3, K, r);
  long prow[4] = {p0, p1, p2, p3}, arow[4] = {ar0, ar1, ar2, ar3}, brow[4] = {br0, br1, br2, br3};
  __global float *o = (__global float *)PTR(out);
  for (int i = 0; i < cnt; ++i) {
    for (int j = 0; j < 4; ++j) {
      long rr = r0 + j;
      if (rr >= rows) break;
      float s = r[i * 4 + j];
      for (int k = kv; k < K; ++k) s = ld(A, da, arow[i] + k) * ld(B, db, brow[j] + k) + s;
      o[prow[i] * rows + rr] = s;
    }
  }
}

/* ---- M = 1 linear with float weights on CPU drivers ------------------------------------- */

/* x[m]·w[n] for the 4 rows n0..n0+3 of w[N, K] (K a multiple of 16), x and w in their own
 * float dtypes: each 16 channels of x loaded once for the 4 rows (gemm_vec_nt's 4x4 block
 * would compute 4 rows of x, 3 of them copies, at M = 1), sums in float16 lanes with fused
 * multiply-adds as the GEMM kernels. Rows past N re-read row N - 1 and are not stored. */
#define GEMV4_STEP_(LX, LW)                                        \
  {                                                                \
    float16 xv = LX(xb + k);                                       \
    c0 = xv * LW(r0 + k) + c0, c1 = xv * LW(r1 + k) + c1;          \
    c2 = xv * LW(r2 + k) + c2, c3 = xv * LW(r3 + k) + c3;          \
  }
#define GEMV4_LD_F32X(i) vload16(0, (__global const float *)X + (i))
#define GEMV4_LD_F32W(i) vload16(0, (__global const float *)W + (i))
#define GEMV4_BF16_(p, i) \
  as_float16(convert_uint16(vload16(0, (__global const ushort *)(p) + (i))) << 16)
#define GEMV4_LD_BF16W(i) GEMV4_BF16_(W, i)
#define GEMV4_LD_F16W(i) vload_half16(0, (__global const half *)W + (i))
#define GEMV4_LD_BF16X(i) GEMV4_BF16_(X, i)
#define GEMV4_LD_ANYX(i) ld16(X, dx, (i))
#define GEMV4_LD_ANYW(i) ld16(W, dw, (i))

/* global (ceil(N/4), M); o[m, n] in dtype dout, at element o_base + m·N + n. */
__kernel void gemv_rows4(TENSOR(x), int dx, TENSOR(w), int dw, TENSOR(o), int dout, long M,
                         long N, long K) {
#pragma OPENCL FP_CONTRACT ON
  long n0 = get_global_id(0) * 4, m = get_global_id(1);
  if (n0 >= N || m >= M) return;
  __global const uchar *X = PTR(x), *W = PTR(w);
  long xb = m * K;
  long r0 = n0 * K, r1 = min(n0 + 1, N - 1) * K, r2 = min(n0 + 2, N - 1) * K;
  long r3 = min(n0 + 3, N - 1) * K;
  float16 c0 = 0.0f, c1 = 0.0f, c2 = 0.0f, c3 = 0.0f;
  /* Each 32 channels prefetch (VN_PF, common.cl) the rows' next 32 channels of the work-item
   * two after this one, 8 rows on: rows of a few KB pass each item too fast for the hardware
   * prefetchers. ES: the bytes of one element of w. */
#define GEMV4_LOOP_(LX, LW, ES)                                                    \
  {                                                                                \
    long k = 0;                                                                    \
    for (; k + 32 <= K; k += 32) {                                                 \
      for (int q = 0; q < 32 * (ES); q += 64) {                                    \
        VN_PF(W + (r0 + 8 * K + k) * (ES) + q);                                    \
        VN_PF(W + (r1 + 8 * K + k) * (ES) + q);                                    \
        VN_PF(W + (r2 + 8 * K + k) * (ES) + q);                                    \
        VN_PF(W + (r3 + 8 * K + k) * (ES) + q);                                    \
      }                                                                            \
      GEMV4_STEP_(LX, LW)                                                          \
      k += 16;                                                                     \
      GEMV4_STEP_(LX, LW)                                                          \
      k -= 16;                                                                     \
    }                                                                              \
    for (; k < K; k += 16) GEMV4_STEP_(LX, LW)                                     \
  }
  if (dx == DT_F32 && dw == DT_BF16) {
    GEMV4_LOOP_(GEMV4_LD_F32X, GEMV4_LD_BF16W, 2)
  } else if (dx == DT_F32 && dw == DT_F32) {
    GEMV4_LOOP_(GEMV4_LD_F32X, GEMV4_LD_F32W, 4)
  } else if (dx == DT_F32 && dw == DT_F16) {
    GEMV4_LOOP_(GEMV4_LD_F32X, GEMV4_LD_F16W, 2)
  } else if (dx == DT_BF16 && dw == DT_F32) {
    GEMV4_LOOP_(GEMV4_LD_BF16X, GEMV4_LD_F32W, 4)
  } else if (dx == DT_BF16 && dw == DT_BF16) {
    GEMV4_LOOP_(GEMV4_LD_BF16X, GEMV4_LD_BF16W, 2)
  } else {
    for (long k = 0; k < K; k += 16) GEMV4_STEP_(GEMV4_LD_ANYX, GEMV4_LD_ANYW)
  }
#undef GEMV4_LOOP_
  float r[4] = {hsum8(c0.lo + c0.hi), hsum8(c1.lo + c1.hi), hsum8(c2.lo + c2.hi),
                hsum8(c3.lo + c3.hi)};
  for (int j = 0; j < 4 && n0 + j < N; ++j) st(PTR(o), dout, m * N + n0 + j, r[j]);
}
