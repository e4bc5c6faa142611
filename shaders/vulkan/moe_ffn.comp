// moe_ffn: y[t] = sum_i weights[t,i] * down_e(swiglu(gate_e x[t], up_e x[t], limit)), e =
// experts[t,i], weights in linear layout (w_gate_up[E, 2F, C]: rows [0,F) gate, [F,2F) up;
// w_down[E, C, F]). Two stages, one reduction per workgroup:
//   OP 0: h[t*k+i, f] = swiglu(...) into scratch; one workgroup per (t*k+i, f).
//   OP 1: y[t, c] = sum_i w[t,i] * <w_down[e, c, :], h[t*k+i, :]>; one workgroup per (t, c).
// Slots: 0 x (DT0), 1 experts (i32), 2 weights (DT2), 3 w_gate_up (DT3), 4 w_down (DT4),
// 5 y (DT5). An expert id outside [0, E) is reported and clamped.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"
#include "reduce.glsl"

layout(push_constant) uniform PC {
  uint T, C, F, k, E;
  float limit;
} pc;

int expert(uint p) {
  int e = ldi1(p);
  if (e < 0 || uint(e) >= pc.E) {
    if (gl_LocalInvocationID.x == 0u) vn_report(VN_ERR_EXPERT, e, pc.E, p);
    e = clamp(e, 0, int(pc.E) - 1);
  }
  return e;
}

void main() {
  uint l = gl_LocalInvocationID.x;
  uint g = vn_group();
  uint C = pc.C, F = pc.F;
  if (OP == 0u) {
    if (g >= pc.T * pc.k * F) return; // uniform across the workgroup
    uint p = g / F, f = g % F, t = p / pc.k;
    uint e = uint(expert(p));
    uint gr = (e * 2u * F + f) * C, ur = (e * 2u * F + F + f) * C;
    float ga = 0.0, ua = 0.0;
    for (uint c = l; c < C; c += WG) {
      float x = ldf0(t * C + c);
      ga += ldf3(gr + c) * x;
      ua += ldf3(ur + c) * x;
    }
    ga = vn_sum(ga);
    ua = vn_sum(ua);
    if (l == 0u) {
      if (pc.limit > 0.0) {
        ga = ga < pc.limit ? ga : pc.limit;
        ua = ua < -pc.limit ? -pc.limit : (ua > pc.limit ? pc.limit : ua);
      }
      scratch.f[p * F + f] = ga / (1.0 + exp(-ga)) * ua;
    }
  } else {
    if (g >= pc.T * C) return; // uniform across the workgroup
    uint t = g / C, c = g % C;
    float acc = 0.0;
    for (uint i = 0u; i < pc.k; ++i) {
      uint p = t * pc.k + i;
      uint e = uint(expert(p));
      float w = ldf2(p);
      uint dr = (e * C + c) * F;
      float d = 0.0;
      for (uint f = l; f < F; f += WG) d += ldf4(dr + f) * scratch.f[p * F + f];
      acc += w * vn_sum(d);
    }
    if (l == 0u) stf5(g, acc);
  }
}
