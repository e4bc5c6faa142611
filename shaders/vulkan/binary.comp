// Binary elementwise ops with numpy broadcasting (add sub mul div) and swiglu.
// Slot 0: a (or g), slot 1: b (or u), slot 5: result. The result is iterated as 4 dims (padded
// on the left); sa/sb are a's and b's element strides per result dim (0 where broadcast).
// SC0 = 1: a, b and the result have one shape and are contiguous (no index arithmetic).
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

layout(push_constant) uniform PC {
  uint n;
  uint d1, d2, d3; // result dims 1..3 (dim 0 is implied by n)
  uint sa0, sa1, sa2, sa3;
  uint sb0, sb1, sb2, sb3;
  float limit; // swiglu
} pc;

#define B_ADD 1u
#define B_SUB 2u
#define B_MUL 3u
#define B_DIV 4u
#define B_SWIGLU 5u

void main() {
  uint i = vn_gid();
  if (i >= pc.n) return;
  uint ia = i, ib = i;
  if (SC0 == 0u) {
    uint i3 = i % pc.d3, t = i / pc.d3;
    uint i2 = t % pc.d2;
    t /= pc.d2;
    uint i1 = t % pc.d1, i0 = t / pc.d1;
    ia = i0 * pc.sa0 + i1 * pc.sa1 + i2 * pc.sa2 + i3 * pc.sa3;
    ib = i0 * pc.sb0 + i1 * pc.sb1 + i2 * pc.sb2 + i3 * pc.sb3;
  }
  float x = ldf0(ia), y = ldf1(ib);
  float r;
  if (OP == B_ADD) r = x + y;
  else if (OP == B_SUB) r = x - y;
  else if (OP == B_MUL) r = x * y;
  else if (OP == B_DIV) r = x / y;
  else {
    float g = x, u = y;
    if (pc.limit > 0.0) {
      if (g > pc.limit) g = pc.limit;
      if (u > pc.limit) u = pc.limit;
      if (u < -pc.limit) u = -pc.limit;
    }
    r = g * (1.0 / (1.0 + exp(-g))) * u;
  }
  stf5(i, r);
}
