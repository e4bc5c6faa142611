/* vnrt's own GEMM kernels for matmul and linear: C[z][m][n] = Σ_k A[z][m][k]·B[z][k][n].
 * Operands are addressed through element strides, so one kernel covers matmul (B [K, N]) and
 * linear (B = w [N, K]) and broadcast batch dims (a batch stride of 0); every dtype is widened
 * while a tile is loaded, so f16/bf16 weights need no conversion pass. Sums run over k in order,
 * as the CPU reference does. gemm_t64/gemm_t32 tile through local memory (each work-item
 * computes a 4x4 block); gemm_rows serves few rows (decode) with a work-group per output. */

#define GEMM_TK 16

/* The tiled body: TS x TS outputs per work-group of WX x WX items (TS = 4·WX). */
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

/* Argument list shared by the GEMM kernels. Batch z = b0·bd1 + b1 of the result. */
#define GEMM_ARGS                                                                         \
  TENSOR(a), int da, long a_sm, long a_sk, long a_bs0, long a_bs1, TENSOR(b), int db,     \
      long b_sk, long b_sn, long b_bs0, long b_bs1, TENSOR(c), int dc, int M, int N, int K, \
      int bd1

__kernel __attribute__((reqd_work_group_size(16, 16, 1))) void gemm_t64(GEMM_ARGS) {
  __local float As[GEMM_TK * 65], Bs[GEMM_TK * 65];
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  gemm_tiled_body(PTR(a), da, a_sm, a_sk, b0 * a_bs0 + b1 * a_bs1, PTR(b), db, b_sk, b_sn,
                  b0 * b_bs0 + b1 * b_bs1, PTR(c), dc, z * M * N, M, N, K, As, Bs, 64, 16);
}

__kernel __attribute__((reqd_work_group_size(8, 8, 1))) void gemm_t32(GEMM_ARGS) {
  __local float As[GEMM_TK * 33], Bs[GEMM_TK * 33];
  long z = get_global_id(2), b0 = z / bd1, b1 = z % bd1;
  gemm_tiled_body(PTR(a), da, a_sm, a_sk, b0 * a_bs0 + b1 * a_bs1, PTR(b), db, b_sk, b_sn,
                  b0 * b_bs0 + b1 * b_bs1, PTR(c), dc, z * M * N, M, N, K, As, Bs, 32, 8);
}

/* Few rows: work-group (n) of items over k, one output per group; global (N·wg, M, batch). */
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
