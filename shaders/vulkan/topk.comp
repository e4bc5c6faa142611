// topk: the k largest of each row of x[..., E], descending, ties to the lower index, NaN after
// every number (the CPU reference's total order). One workgroup per row; round r picks the
// best element that ranks after round r-1's pick, so no per-element state is needed.
// Slots: 0 x (DT0), 5 values (DT5 = DT0), 6 indices (i32). SC0 = 1: the index of a -inf value
// is stored as `fill` (topk's fill attribute).
// OP 1 (CPU devices, a few rows of f32 with E a multiple of 4; lavapipe runs a barrier as a
// coroutine switch, and OP 0 has 8 per round): an invocation per element, whose rank is the
// number of elements that rank before it; ranks below k are stored, so no invocation waits for
// another. x is read as 16-byte texels (slot 3's view at binding 11, the same tensor as slot 0):
// a gather on llvmpipe, where a storage-buffer load is a loop over the lanes.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

layout(push_constant) uniform PC {
  uint rows, E, k;
  int fill;
} pc;

shared float sv[WG];
shared int si[WG];

// Whether (va, ia) ranks before (vb, ib).
bool ranks_before(float va, int ia, float vb, int ib) {
  bool na = vn_isnan(va), nb = vn_isnan(vb);
  if (na || nb) return nb && (!na || ia < ib);
  return va > vb || (va == vb && ia < ib);
}

// A key whose signed order is topk's: larger numbers first, -0 as +0, NaN below -inf.
int rank_key(float v) {
  uint u = floatBitsToUint(v);
  if (u == 0x80000000u) u = 0u;
  uint k = (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
  return vn_isnan(v) ? int(0x80000000u) : int(k ^ 0x80000000u);
}

layout(set = 0, binding = 11) uniform usamplerBuffer xtex;

// How many of x[j], j in [j0, j0 + 4), rank before (key kv, index e).
uint before4(uvec4 q, uint j0, int kv, uint e) {
  ivec4 k = ivec4(rank_key(uintBitsToFloat(q.x)), rank_key(uintBitsToFloat(q.y)),
                  rank_key(uintBitsToFloat(q.z)), rank_key(uintBitsToFloat(q.w)));
  uvec4 j = uvec4(j0) + uvec4(0u, 1u, 2u, 3u);
  bvec4 tie = bvec4(uvec4(equal(k, ivec4(kv))) & uvec4(lessThan(j, uvec4(e))));
  uvec4 n = uvec4(greaterThan(k, ivec4(kv))) | uvec4(tie);
  return (n.x + n.y) + (n.z + n.w);
}

void rank_select(uint g) {
  if (g >= pc.rows * pc.E) return;
  uint row = g / pc.E, e = g % pc.E;
  float v = ldf0(g);
  int kv = rank_key(v);
  uint base = (row * pc.E) >> 2, rank = 0u;
  for (uint j4 = 0u; j4 < pc.E / 4u; ++j4) rank += before4(texelFetch(xtex, int(base + j4)), j4 * 4u, kv, e);
  if (rank >= pc.k) return;
  stf5(row * pc.k + rank, v);
  bool empty = SC0 != 0u && !vn_isnan(v) && isinf(v) && v < 0.0;
  sti6(row * pc.k + rank, empty ? pc.fill : int(e));
}

void main() {
  if (OP == 1u) {
    rank_select(vn_gid());
    return;
  }
  uint row = vn_group();
  if (row >= pc.rows) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  float pv = 0.0;
  int pi = -1;
  for (uint r = 0u; r < pc.k; ++r) {
    float bv = 0.0;
    int bi = -1;
    for (uint e = l; e < pc.E; e += WG) {
      float v = ldf0(row * pc.E + e);
      if (pi >= 0 && !ranks_before(pv, pi, v, int(e))) continue;
      if (bi < 0 || ranks_before(v, int(e), bv, bi)) {
        bv = v;
        bi = int(e);
      }
    }
    sv[l] = bv;
    si[l] = bi;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
      if (l < s && si[l + s] >= 0 && (si[l] < 0 || ranks_before(sv[l + s], si[l + s], sv[l], si[l]))) {
        sv[l] = sv[l + s];
        si[l] = si[l + s];
      }
      barrier();
    }
    pv = sv[0];
    pi = si[0];
    barrier();
    if (l == 0u) {
      stf5(row * pc.k + r, pv);
      bool empty = SC0 != 0u && !vn_isnan(pv) && isinf(pv) && pv < 0.0;
      sti6(row * pc.k + r, empty ? pc.fill : pi);
    }
  }
}
