// Tiled GEMM with shared memory, for matmul, linear and the mHC mixing products:
// C[z][m][n] = sum_k A[z][m][k] * B[z][k][n], with A and B addressed through strides so that
// broadcast batches (stride 0) and linear's transposed weight (w[N, K]) need no copies.
// Slot 0: A (DT0), slot 1: B (DT1), slot 5: C, contiguous [batch, M, N] (DT5).
// SC0 = 1: A is contiguous along k; SC1 = 1: B is contiguous along n (else along k). They
// only choose which tile loads are coalesced.
// A workgroup of 16x8 invocations computes a 32x64 tile, each invocation 4x4 results.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#define BM 32u
#define BN 64u
#define BK 32u

layout(local_size_x = 16, local_size_y = 8) in;

layout(push_constant) uniform PC {
  uint M, N, K;
  uint a_rs, a_cs, b_rs, b_cs;
  uint nb1; // extent of the inner batch dim (the outer one is gl_NumWorkGroups.z / nb1)
  uint a_bs0, a_bs1, b_bs0, b_bs1;
} pc;

shared float As[BK * BM];
shared float Bs[BK * BN];

void main() {
  uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  uint tid = ty * 16u + tx;
  uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
  uint z = gl_WorkGroupID.z;
  uint zb0 = z / pc.nb1, zb1 = z % pc.nb1;
  uint a_off = zb0 * pc.a_bs0 + zb1 * pc.a_bs1;
  uint b_off = zb0 * pc.b_bs0 + zb1 * pc.b_bs1;

  float acc[4][4];
  for (uint r = 0u; r < 4u; ++r)
    for (uint c = 0u; c < 4u; ++c) acc[r][c] = 0.0;

  for (uint k0 = 0u; k0 < pc.K; k0 += BK) {
    for (uint j = 0u; j < (BM * BK) / 128u; ++j) {
      uint e = tid + 128u * j;
      uint kk = SC0 != 0u ? e % BK : e / BM;
      uint mm = SC0 != 0u ? e / BK : e % BM;
      uint m = m0 + mm, k = k0 + kk;
      As[kk * BM + mm] = (m < pc.M && k < pc.K) ? ldf0(a_off + m * pc.a_rs + k * pc.a_cs) : 0.0;
    }
    for (uint j = 0u; j < (BN * BK) / 128u; ++j) {
      uint e = tid + 128u * j;
      uint nn = SC1 != 0u ? e % BN : e / BK;
      uint kk = SC1 != 0u ? e / BN : e % BK;
      uint n = n0 + nn, k = k0 + kk;
      Bs[kk * BN + nn] = (n < pc.N && k < pc.K) ? ldf1(b_off + k * pc.b_rs + n * pc.b_cs) : 0.0;
    }
    barrier();
    for (uint kk = 0u; kk < BK; ++kk) {
      float a[4], b[4];
      for (uint r = 0u; r < 4u; ++r) a[r] = As[kk * BM + ty + 8u * r];
      for (uint c = 0u; c < 4u; ++c) b[c] = Bs[kk * BN + tx + 16u * c];
      for (uint r = 0u; r < 4u; ++r)
        for (uint c = 0u; c < 4u; ++c) acc[r][c] += a[r] * b[c];
    }
    barrier();
  }
  uint c_off = z * pc.M * pc.N;
  for (uint r = 0u; r < 4u; ++r) {
    uint m = m0 + ty + 8u * r;
    if (m >= pc.M) continue;
    for (uint c = 0u; c < 4u; ++c) {
      uint n = n0 + tx + 16u * c;
      if (n < pc.N) stf5(c_off + m * pc.N + n, acc[r][c]);
    }
  }
}
