// Tiled GEMM with shared memory, for matmul, linear and the mHC mixing products:
// C[z][m][n] = sum_k A[z][m][k] * B[z][k][n], with A and B addressed through strides so that
// broadcast batches (stride 0) and linear's transposed weight (w[N, K]) need no copies.
// Slot 0: A (DT0), slot 1: B (DT1), slot 5: C, contiguous [batch, M, N] (DT5).
// SC0 = 1: A is contiguous along k; SC1 = 1: B is contiguous along n (else along k). They
// only choose which tile loads are coalesced.
// OP 0: a workgroup of 16x8 invocations computes a 32x64 tile through shared memory, each
// invocation 4x4 results.
// OP >= 1: register-blocked, no shared memory and no barrier: each invocation computes TM rows
// x TN columns straight from the buffers, TM = SC0 (1..16) chosen by the host for M (a few
// rows need no padding: this is also the decode-sized kernel on CPU devices). The 128
// invocations are LN = 2^(OP-1) along n by
// 128/LN along m (the host picks LN for the shape); workgroups go rows fastest in the grid (x)
// so that consecutive ones reuse the same B columns from cache.
// SC2 = 1: A and B are read as vec4 along their contiguous dim (the host checks alignment);
// 0: scalar loads. This is what llvmpipe rewards: it runs each workgroup on one thread with
// invocations as SIMD lanes, every buffer load is a per-lane scalar loop and a barrier costs
// a coroutine switch, so the FMA count per loaded element (TM*TN / (TM+TN)) is what matters.
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

// ---- OP 1 ----------------------------------------------------------------------------------

const uint TM = SC0 < 1u ? 1u : (SC0 > 16u ? 16u : SC0);
#define TN 16u
#define LN (1u << (OP - 1u))
#define LM (128u / LN)

// Aliases of slots 0 and 1 for vec4 loads: 4 floats, or 4 halves packed in two words.
layout(set = 0, binding = 0, std430) readonly buffer VnA4 { vec4 v[]; } va4;
layout(set = 0, binding = 0, std430) readonly buffer VnA2 { uvec2 v[]; } va2;
layout(set = 0, binding = 1, std430) readonly buffer VnB4 { vec4 v[]; } vb4;
layout(set = 0, binding = 1, std430) readonly buffer VnB2 { uvec2 v[]; } vb2;

vec4 halves4(uint dt, uvec2 u) {
  if (dt == DT_F16) {
    // unpackHalf2x16 (one hardware conversion on llvmpipe), with subnormal halves formed
    // exactly here as m * 2^-24, as a driver may flush them.
    uvec4 h = uvec4(u.x & 0xffffu, u.x >> 16, u.y & 0xffffu, u.y >> 16);
    vec4 f = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
    vec4 sub = vec4(h & 0x3ffu) * 5.9604644775390625e-8;
    sub = mix(sub, -sub, notEqual(h & 0x8000u, uvec4(0u)));
    return mix(f, sub, equal(h & 0x7c00u, uvec4(0u)));
  }
  return vec4(uintBitsToFloat(u.x << 16), uintBitsToFloat(u.x & 0xffff0000u),
              uintBitsToFloat(u.y << 16), uintBitsToFloat(u.y & 0xffff0000u));
}

// i: element index, a multiple of 4.
vec4 lda4(uint i) { return DT0 == DT_F32 ? va4.v[i >> 2] : halves4(DT0, va2.v[i >> 2]); }
vec4 ldb4(uint i) { return DT1 == DT_F32 ? vb4.v[i >> 2] : halves4(DT1, vb2.v[i >> 2]); }

void main_blocked() {
  uint lid = gl_LocalInvocationIndex;
  uint m0 = (gl_WorkGroupID.x * LM + lid / LN) * TM;
  uint n0 = (gl_WorkGroupID.y * LN + lid % LN) * TN;
  if (m0 >= pc.M) return; // no barrier in this path
  uint z = gl_WorkGroupID.z;
  uint zb0 = z / pc.nb1, zb1 = z % pc.nb1;
  uint a_off = zb0 * pc.a_bs0 + zb1 * pc.a_bs1;
  uint b_off = zb0 * pc.b_bs0 + zb1 * pc.b_bs1;
  // Rows and columns past the edge load the last valid one (always in bounds) and store
  // nothing, so the loops below need no guards.
  uint arow[TM];
  for (uint r = 0u; r < TM; ++r) arow[r] = a_off + min(m0 + r, pc.M - 1u) * pc.a_rs;
  // A vec4 along n needs 4 valid columns: clamp the group's start (N % 4 == 0 there).
  uint ncl[TN / 4u];
  uint bcol[TN];
  for (uint g = 0u; g < TN / 4u; ++g) {
    ncl[g] = n0 + 4u * g;
    if (SC2 != 0u && SC1 != 0u) ncl[g] = min(ncl[g], pc.N - 4u);
    for (uint c = 0u; c < 4u; ++c) bcol[4u * g + c] = b_off + min(ncl[g] + c, pc.N - 1u) * pc.b_cs;
  }

  vec4 acc[TM][TN / 4u]; // acc[r][g][c]: row m0 + r, column ncl[g] + c
  for (uint r = 0u; r < TM; ++r)
    for (uint g = 0u; g < TN / 4u; ++g) acc[r][g] = vec4(0.0);
  if (SC2 != 0u) {
    // K % 4 == 0 and every row start is a multiple of 4 (the host checks).
    for (uint k = 0u; k < pc.K; k += 4u) {
      vec4 b[TN / 4u][4];
      for (uint g = 0u; g < TN / 4u; ++g) {
        for (uint j = 0u; j < 4u; ++j) {
          // SC1 = 0: b[g][j] is column 4g+j at k..k+3; SC1 = 1: row k+j at the group's columns.
          b[g][j] = SC1 == 0u ? ldb4(bcol[4u * g + j] + k) : ldb4(bcol[4u * g] + (k + j) * pc.b_rs);
        }
      }
      for (uint r = 0u; r < TM; ++r) {
        vec4 a = lda4(arow[r] + k);
        for (uint g = 0u; g < TN / 4u; ++g) {
          if (SC1 == 0u) {
            acc[r][g] += vec4(dot(a, b[g][0]), dot(a, b[g][1]), dot(a, b[g][2]), dot(a, b[g][3]));
          } else {
            acc[r][g] += a.x * b[g][0] + a.y * b[g][1] + a.z * b[g][2] + a.w * b[g][3];
          }
        }
      }
    }
  } else {
    for (uint k = 0u; k < pc.K; ++k) {
      vec4 b[TN / 4u];
      for (uint c = 0u; c < TN; ++c) b[c / 4u][c % 4u] = ldf1(bcol[c] + k * pc.b_rs);
      for (uint r = 0u; r < TM; ++r) {
        float a = ldf0(arow[r] + k * pc.a_cs);
        for (uint g = 0u; g < TN / 4u; ++g) acc[r][g] += a * b[g];
      }
    }
  }
  uint c_off = z * pc.M * pc.N;
  for (uint r = 0u; r < TM; ++r) {
    uint m = m0 + r;
    if (m >= pc.M) break;
    for (uint g = 0u; g < TN / 4u; ++g) {
      for (uint c = 0u; c < 4u; ++c) {
        uint n = ncl[g] + c;
        // A clamped group (ncl < n0 + 4g) holds columns of another lane: store only its own.
        if (n >= n0 + 4u * g && n < pc.N) stf5(c_off + m * pc.N + n, acc[r][g][c]);
      }
    }
  }
}

// ---- OP 0 ----------------------------------------------------------------------------------

void main() {
  if (OP >= 1u) {
    main_blocked();
    return;
  }
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
