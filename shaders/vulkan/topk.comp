// topk: the k largest of each row of x[..., E], descending, ties to the lower index, NaN after
// every number (the CPU reference's total order). One workgroup per row; round r picks the
// best element that ranks after round r-1's pick, so no per-element state is needed.
// Slots: 0 x (DT0), 5 values (DT5 = DT0), 6 indices (i32). SC0 = 1: the index of a -inf value
// is stored as `fill` (topk's fill attribute).
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

void main() {
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
