// Row reductions: rms_norm and softmax along any axis. One workgroup per row; row r is
// (outer o, inner i) and its element a sits at o*len*inner + i + a*inner.
// Slot 0: x (DT0), slot 1: w (DT1, rms_norm with SC0 = 1), slot 5: result (DT5).
// OP 1: rms_norm, OP 2: softmax.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
#include "reduce.glsl"

layout(push_constant) uniform PC {
  uint rows, len, inner;
  float eps;
} pc;

void main() {
  uint row = vn_group();
  if (row >= pc.rows) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  uint base = (row / pc.inner) * pc.len * pc.inner + row % pc.inner;
  if (OP == 1u) {
    float ss = 0.0;
    for (uint a = l; a < pc.len; a += WG) {
      float v = ldf0(base + a * pc.inner);
      ss += v * v;
    }
    ss = vn_sum(ss);
    float inv = 1.0 / sqrt(ss / float(pc.len) + pc.eps);
    for (uint a = l; a < pc.len; a += WG) {
      float y = ldf0(base + a * pc.inner) * inv;
      if (SC0 != 0u) y *= ldf1(a);
      stf5(base + a * pc.inner, y);
    }
  } else {
    float mx = uintBitsToFloat(0xff800000u); // -inf
    for (uint a = l; a < pc.len; a += WG) {
      float v = ldf0(base + a * pc.inner);
      if (v > mx) mx = v;
    }
    mx = vn_max(mx);
    float s = 0.0;
    for (uint a = l; a < pc.len; a += WG) s += exp(ldf0(base + a * pc.inner) - mx);
    s = vn_sum(s);
    for (uint a = l; a < pc.len; a += WG) {
      stf5(base + a * pc.inner, exp(ldf0(base + a * pc.inner) - mx) / s);
    }
  }
}
