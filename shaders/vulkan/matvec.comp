// Matrix times a few vectors, for linear (and the mHC mixing products) when M <= MMAX:
// C[z][m][n] = sum_k A[z][m][k] * B[z][k][n], B contiguous along k (linear's w[N, K]).
// A workgroup owns NC consecutive columns n: its invocations stride over k (coalesced reads
// of the NC weight rows), keep MMAX x NC partial sums each, and one shared-memory pass adds
// them up. Slots and push constants are matmul.comp's; SC2 = M (1..MMAX).
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"

#define NC 4u
#define MMAX 4u

layout(push_constant) uniform PC {
  uint M, N, K;
  uint a_rs, a_cs, b_rs, b_cs;
  uint nb1;
  uint a_bs0, a_bs1, b_bs0, b_bs1;
} pc;

shared float red[MMAX * NC * uint(WG)];

void main() {
  uint l = gl_LocalInvocationID.x;
  uint n0 = vn_group() * NC;
  if (n0 >= pc.N) return; // uniform across the workgroup
  uint z = gl_WorkGroupID.z;
  uint zb0 = z / pc.nb1, zb1 = z % pc.nb1;
  uint a_off = zb0 * pc.a_bs0 + zb1 * pc.a_bs1;
  uint b_off = zb0 * pc.b_bs0 + zb1 * pc.b_bs1;
  uint nc = min(NC, pc.N - n0);
  // Loops run to constants (NC, and M as a specialization constant) with guards inside, so
  // that compilers unroll them and keep acc in registers.
  float acc[MMAX * NC];
  for (uint i = 0u; i < MMAX * NC; ++i) acc[i] = 0.0;
  for (uint k = l; k < pc.K; k += uint(WG)) {
    float xv[MMAX];
    for (uint m = 0u; m < SC2; ++m) xv[m] = ldf0(a_off + m * pc.a_rs + k * pc.a_cs);
    for (uint c = 0u; c < NC; ++c) {
      if (c >= nc) break;
      float wv = ldf1(b_off + k * pc.b_rs + (n0 + c) * pc.b_cs);
      for (uint m = 0u; m < SC2; ++m) acc[m * NC + c] += xv[m] * wv;
    }
  }
  for (uint i = 0u; i < SC2 * NC; ++i) red[i * uint(WG) + l] = acc[i];
  barrier();
  if (l < SC2 * NC) {
    uint m = l / NC, c = l % NC;
    if (c < nc) {
      float s = 0.0;
      for (uint i = 0u; i < uint(WG); ++i) s += red[l * uint(WG) + i];
      stf5(z * pc.M * pc.N + m * pc.N + n0 + c, s);
    }
  }
}
