// moe_ffn: y[t] = sum_i weights[t,i] * down_e(swiglu(gate_e x[t], up_e x[t], limit)), e =
// experts[t,i], weights in linear layout (w_gate_up[E, 2F, C]: rows [0,F) gate, [F,2F) up;
// w_down[E, C, F]). Two stages; a workgroup owns NB outputs, its invocations stride over the
// reduction axis (coalesced weight reads) and one shared-memory pass adds the partial sums:
//   OP 0: h[t*k+i, f] = swiglu(...) into scratch; a workgroup per (t*k+i, NB values of f).
//   OP 1: y[t, c] = sum_i w[t,i] <w_down[e, c, :], h[t*k+i, :]>, both sums in one pass (the
//         expression is linear in them); a workgroup per (t, NB values of c).
// Slots: 0 x (DT0), 1 experts (i32), 2 weights (DT2), 3 w_gate_up (DT3), 4 w_down (DT4),
// 5 y (DT5). An expert id outside [0, E) is reported and clamped.
//
// OP 0/1 are the GPU kernels above. CPU devices (an invocation is a SIMD lane, every buffer
// load a loop over lanes, barriers costly: docs/vulkan.md) run two barrier-free passes with
// the same scratch instead, each invocation owning RB = 8 outputs so every loaded x (or h)
// value serves 2 RB (RB) weight rows (8 and 4 measured alike on a busy lavapipe host):
//   OP 2: h[p, f0 .. f0+RB) for one slot p = t*k+i: RB gate and RB up rows against x[t].
//   OP 3: y[t, c0 .. c0+RB) = sum over the slots i in order of w[t,i] <w_down[e, c, :], h[p, :]>.
// SC2 = 1 (C and F multiples of 8, taken by the host) loads x, weights and h eight at a time
// (two vec4 for f32, a uvec4 of packed halves for f16/bf16); else one element at a time.
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

#define RB 8u

// Eight-wide aliases (SC2 = 1 only) of x, the two weight tensors and the scratch: 16-bit
// tensors load eight values as one uvec4, f32 ones as two vec4.
layout(set = 0, binding = 0, std430) readonly buffer VnX4 { vec4 v[]; } x4f;
layout(set = 0, binding = 0, std430) readonly buffer VnX8h { uvec4 v[]; } x8h;
layout(set = 0, binding = 3, std430) readonly buffer VnG4 { vec4 v[]; } g4f;
layout(set = 0, binding = 3, std430) readonly buffer VnG8h { uvec4 v[]; } g8h;
layout(set = 0, binding = 4, std430) readonly buffer VnD4 { vec4 v[]; } d4f;
layout(set = 0, binding = 4, std430) readonly buffer VnD8h { uvec4 v[]; } d8h;
layout(set = 0, binding = 8, std430) readonly buffer VnS4 { vec4 v[]; } s4;

// Four 16-bit values (two words) of dtype dt as f32 (f16 -> f32 is exact in any rounding).
vec4 unpack4(uvec2 u, uint dt) {
  if (dt == DT_BF16) {
    return uintBitsToFloat(uvec4(u.x << 16, u.x & 0xffff0000u, u.y << 16, u.y & 0xffff0000u));
  }
  return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
}
// Elements i .. i+7 (i a multiple of 8) of slots 0, 3 and 4.
#define VN_LD8(NAME, F4, H8, DT)                                \
  void NAME(uint i, out vec4 a, out vec4 b) {                   \
    if (DT == DT_F32) {                                         \
      a = F4.v[i >> 2], b = F4.v[(i >> 2) + 1u];                \
    } else {                                                    \
      uvec4 u = H8.v[i >> 3];                                   \
      a = unpack4(u.xy, DT), b = unpack4(u.zw, DT);             \
    }                                                           \
  }
VN_LD8(ldx8, x4f, x8h, DT0)
VN_LD8(ldg8, g4f, g8h, DT3)
VN_LD8(ldd8, d4f, d8h, DT4)

// The expert of slot p, reported (by the caller's choice of one lane) and clamped.
uint expert_lane(uint p, bool report) {
  int e = ldi1(p);
  if (e < 0 || uint(e) >= pc.E) {
    if (report) vn_report(VN_ERR_EXPERT, e, pc.E, p);
    e = clamp(e, 0, int(pc.E) - 1);
  }
  return uint(e);
}

float hsum(vec4 a) { return (a.x + a.y) + (a.z + a.w); }

void cpu_main() {
  uint gid = vn_gid();
  uint C = pc.C, F = pc.F;
  if (OP == 2u) {
    uint blocks = (F + RB - 1u) / RB;
    if (gid >= pc.T * pc.k * blocks) return;
    uint p = gid / blocks, f0 = (gid % blocks) * RB, t = p / pc.k;
    uint nf = min(RB, F - f0);
    uint e = expert_lane(p, f0 == 0u);
    uint go[RB], uo[RB]; // row starts; padding repeats the last row
    for (uint j = 0u; j < RB; ++j) {
      go[j] = (e * 2u * F + f0 + min(j, nf - 1u)) * C;
      uo[j] = go[j] + F * C;
    }
    vec4 ga[RB], ua[RB];
    for (uint j = 0u; j < RB; ++j) ga[j] = ua[j] = vec4(0.0);
    if (SC2 != 0u) {
      for (uint c = 0u; c < C; c += 8u) {
        vec4 xa, xb, wa, wb;
        ldx8(t * C + c, xa, xb);
        for (uint j = 0u; j < RB; ++j) {
          ldg8(go[j] + c, wa, wb);
          ga[j] += wa * xa + wb * xb;
          ldg8(uo[j] + c, wa, wb);
          ua[j] += wa * xa + wb * xb;
        }
      }
    } else {
      for (uint c = 0u; c < C; ++c) {
        float x = ldf0(t * C + c);
        for (uint j = 0u; j < RB; ++j) {
          ga[j].x += ldf3(go[j] + c) * x;
          ua[j].x += ldf3(uo[j] + c) * x;
        }
      }
    }
    for (uint j = 0u; j < RB; ++j) {
      if (j >= nf) break;
      float gs = hsum(ga[j]), us = hsum(ua[j]);
      if (pc.limit > 0.0) {
        gs = gs < pc.limit ? gs : pc.limit;
        us = us < -pc.limit ? -pc.limit : (us > pc.limit ? pc.limit : us);
      }
      scratch.f[p * F + f0 + j] = gs / (1.0 + exp(-gs)) * us;
    }
    return;
  }
  // OP 3
  uint blocks = (C + RB - 1u) / RB;
  if (gid >= pc.T * blocks) return;
  uint t = gid / blocks, c0 = (gid % blocks) * RB;
  uint nc = min(RB, C - c0);
  float y[RB];
  for (uint j = 0u; j < RB; ++j) y[j] = 0.0;
  for (uint i = 0u; i < pc.k; ++i) {
    uint p = t * pc.k + i;
    uint e = expert_lane(p, false); // OP 2 reported it
    float w = ldf2(p);
    uint ro[RB];
    for (uint j = 0u; j < RB; ++j) ro[j] = (e * C + c0 + min(j, nc - 1u)) * F;
    vec4 acc[RB];
    for (uint j = 0u; j < RB; ++j) acc[j] = vec4(0.0);
    if (SC2 != 0u) {
      for (uint f = 0u; f < F; f += 8u) {
        vec4 ha = s4.v[(p * F + f) >> 2], hb = s4.v[((p * F + f) >> 2) + 1u], wa, wb;
        for (uint j = 0u; j < RB; ++j) {
          ldd8(ro[j] + f, wa, wb);
          acc[j] += wa * ha + wb * hb;
        }
      }
    } else {
      for (uint f = 0u; f < F; ++f) {
        float h = scratch.f[p * F + f];
        for (uint j = 0u; j < RB; ++j) acc[j].x += ldf4(ro[j] + f) * h;
      }
    }
    for (uint j = 0u; j < RB; ++j) y[j] += w * hsum(acc[j]);
  }
  for (uint j = 0u; j < RB; ++j) {
    if (j >= nc) break;
    stf5(t * C + c0 + j, y[j]);
  }
}

// Sum over the workgroup of red[j * WG + 0 .. WG), by one invocation.
float column(uint j) {
  float s = 0.0;
  for (uint i = 0u; i < uint(WG); ++i) s += red[j * uint(WG) + i];
  return s;
}

void main() {
  if (OP >= 2u) {
    cpu_main();
    return;
  }
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
