// moe_ffn: y[t] = sum_i weights[t,i] * down_e(swiglu(gate_e x[t], up_e x[t], limit)), e =
// experts[t,i], weights in linear layout (w_gate_up[E, 2F, C]: rows [0,F) gate, [F,2F) up;
// w_down[E, C, F]). Two stages; a workgroup owns NB outputs, its invocations stride over the
// reduction axis (coalesced weight reads) and one shared-memory pass adds the partial sums:
//   OP 0: h[t*k+i, f] = swiglu(...) into scratch; a workgroup per (t*k+i, NB values of f).
//   OP 1: y[t, c] = sum_i w[t,i] <w_down[e, c, :], h[t*k+i, :]>, both sums in one pass (the
//         expression is linear in them); a workgroup per (t, NB values of c).
// Slots: 0 x (DT0), 1 experts (i32), 2 weights (DT2), 3 w_gate_up (DT3), 4 w_down (DT4),
// 5 y (DT5). An expert id outside [0, E) is reported and clamped.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"

#define NB 4u

layout(push_constant) uniform PC {
  uint T, C, F, k, E;
  float limit;
} pc;

shared float red[2u * NB * uint(WG)];

int expert(uint p) {
  int e = ldi1(p);
  if (e < 0 || uint(e) >= pc.E) {
    if (gl_LocalInvocationID.x == 0u) vn_report(VN_ERR_EXPERT, e, pc.E, p);
    e = clamp(e, 0, int(pc.E) - 1);
  }
  return e;
}

// Sum over the workgroup of red[j * WG + 0 .. WG), by one invocation.
float column(uint j) {
  float s = 0.0;
  for (uint i = 0u; i < uint(WG); ++i) s += red[j * uint(WG) + i];
  return s;
}

void main() {
  uint l = gl_LocalInvocationID.x;
  uint g = vn_group();
  uint C = pc.C, F = pc.F;
  if (OP == 0u) {
    uint blocks = (F + NB - 1u) / NB;
    if (g >= pc.T * pc.k * blocks) return; // uniform across the workgroup
    uint p = g / blocks, f0 = (g % blocks) * NB, t = p / pc.k;
    uint nf = min(NB, F - f0);
    uint e = uint(expert(p));
    float ga[NB], ua[NB];
    for (uint j = 0u; j < NB; ++j) ga[j] = ua[j] = 0.0;
    for (uint c = l; c < C; c += uint(WG)) {
      float x = ldf0(t * C + c);
      for (uint j = 0u; j < NB; ++j) {
        if (j >= nf) break;
        ga[j] += ldf3((e * 2u * F + f0 + j) * C + c) * x;
        ua[j] += ldf3((e * 2u * F + F + f0 + j) * C + c) * x;
      }
    }
    for (uint j = 0u; j < NB; ++j) {
      red[j * uint(WG) + l] = ga[j];
      red[(NB + j) * uint(WG) + l] = ua[j];
    }
    barrier();
    if (l < nf) {
      float gs = column(l), us = column(NB + l);
      if (pc.limit > 0.0) {
        gs = gs < pc.limit ? gs : pc.limit;
        us = us < -pc.limit ? -pc.limit : (us > pc.limit ? pc.limit : us);
      }
      scratch.f[p * F + f0 + l] = gs / (1.0 + exp(-gs)) * us;
    }
  } else {
    uint blocks = (C + NB - 1u) / NB;
    if (g >= pc.T * blocks) return; // uniform across the workgroup
    uint t = g / blocks, c0 = (g % blocks) * NB;
    uint ncol = min(NB, C - c0);
    float acc[NB];
    for (uint j = 0u; j < NB; ++j) acc[j] = 0.0;
    for (uint i = 0u; i < pc.k; ++i) {
      uint p = t * pc.k + i;
      uint e = uint(expert(p));
      float w = ldf2(p);
      for (uint f = l; f < F; f += uint(WG)) {
        float hv = scratch.f[p * F + f] * w;
        for (uint j = 0u; j < NB; ++j) {
          if (j >= ncol) break;
          acc[j] += ldf4((e * C + c0 + j) * F + f) * hv;
        }
      }
    }
    for (uint j = 0u; j < NB; ++j) red[j * uint(WG) + l] = acc[j];
    barrier();
    if (l < ncol) stf5(t * C + c0 + l, column(l));
  }
}
