// Row reductions: rms_norm and softmax along any axis; row r is (outer o, inner i) and its
// element a sits at o*len*inner + i + a*inner.
// Slot 0: x (DT0), slot 1: w (DT1, rms_norm with SC0 = 1), slot 5: result (DT5).
// OP 1: rms_norm, OP 2: softmax.
// SC1 = 0: one workgroup per row, reductions through reduce.glsl (subgroups or shared memory).
// SC1 = 1: one invocation per row, no reduction and no barrier: for devices whose invocations
// are SIMD lanes of a CPU thread (llvmpipe), where every buffer load is a per-lane loop and a
// barrier a coroutine switch; softmax then takes its max and sum in one pass (online).
// SC2 = 1 (with SC1): rows contiguous (inner = 1), len % 4 == 0: vec4 loads and stores.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
#include "reduce.glsl"

layout(push_constant) uniform PC {
  uint rows, len, inner;
  float eps;
  uint rpg; // SC1 = 1: rows per workgroup (8..WG); the other invocations idle
} pc;

// Aliases for vec4 access: 4 floats, or 4 halves in two words (element index % 4 == 0).
layout(set = 0, binding = 0, std430) readonly buffer VnRowX4 { vec4 v[]; } vx4;
layout(set = 0, binding = 0, std430) readonly buffer VnRowX2 { uvec2 v[]; } vx2;
layout(set = 0, binding = 1, std430) readonly buffer VnRowW4 { vec4 v[]; } vw4;
layout(set = 0, binding = 1, std430) readonly buffer VnRowW2 { uvec2 v[]; } vw2;
layout(set = 0, binding = 5, std430) buffer VnRowY4 { vec4 v[]; } vy4;
layout(set = 0, binding = 5, std430) buffer VnRowY2 { uvec2 v[]; } vy2;

vec4 halves4(uint dt, uvec2 u) {
  if (dt == DT_F16) {
    return vec4(vn_h2f(u.x & 0xffffu), vn_h2f(u.x >> 16), vn_h2f(u.y & 0xffffu), vn_h2f(u.y >> 16));
  }
  return vec4(uintBitsToFloat(u.x << 16), uintBitsToFloat(u.x & 0xffff0000u),
              uintBitsToFloat(u.y << 16), uintBitsToFloat(u.y & 0xffff0000u));
}
vec4 rowx4(uint i) { return DT0 == DT_F32 ? vx4.v[i >> 2] : halves4(DT0, vx2.v[i >> 2]); }
vec4 roww4(uint i) { return DT1 == DT_F32 ? vw4.v[i >> 2] : halves4(DT1, vw2.v[i >> 2]); }
// The lane owns all four elements, so 16-bit results are stored as whole words.
void sty4(uint i, vec4 y) {
  if (DT5 == DT_F32) {
    vy4.v[i >> 2] = y;
  } else if (DT5 == DT_F16) {
    vy2.v[i >> 2] = uvec2(vn_f2h(y.x) | (vn_f2h(y.y) << 16), vn_f2h(y.z) | (vn_f2h(y.w) << 16));
  } else {
    vy2.v[i >> 2] = uvec2(vn_f2bf(y.x) | (vn_f2bf(y.y) << 16), vn_f2bf(y.z) | (vn_f2bf(y.w) << 16));
  }
}

#define NEG_INF uintBitsToFloat(0xff800000u)

void row_per_invocation() {
  uint l = gl_LocalInvocationID.x;
  uint row = vn_group() * pc.rpg + l;
  if (l >= pc.rpg || row >= pc.rows) return;
  uint base = (row / pc.inner) * pc.len * pc.inner + row % pc.inner;
  uint st = pc.inner;
  if (OP == 1u) {
    float ss = 0.0;
    if (SC2 != 0u) {
      vec4 s4 = vec4(0.0);
      for (uint a = 0u; a < pc.len; a += 4u) {
        vec4 v = rowx4(base + a);
        s4 += v * v;
      }
      ss = (s4.x + s4.y) + (s4.z + s4.w);
    } else {
      for (uint a = 0u; a < pc.len; ++a) {
        float v = ldf0(base + a * st);
        ss += v * v;
      }
    }
    float inv = 1.0 / sqrt(ss / float(pc.len) + pc.eps);
    if (SC2 != 0u) {
      for (uint a = 0u; a < pc.len; a += 4u) {
        vec4 y = rowx4(base + a) * inv;
        if (SC0 != 0u) y *= roww4(a);
        sty4(base + a, y);
      }
    } else {
      for (uint a = 0u; a < pc.len; ++a) {
        float y = ldf0(base + a * st) * inv;
        if (SC0 != 0u) y *= ldf1(a);
        stf5(base + a * st, y);
      }
    }
  } else {
    // Online: when the running max grows, the sum so far is rescaled to the new max.
    float mx = NEG_INF, s = 0.0;
    if (SC2 != 0u) {
      for (uint a = 0u; a < pc.len; a += 4u) {
        vec4 v = rowx4(base + a);
        float m4 = max(max(v.x, v.y), max(v.z, v.w));
        float mn = max(mx, m4);
        // Guards keep a leading run of -inf (masked logits) from forming -inf - -inf.
        vec4 e = mn == NEG_INF ? vec4(0.0) : exp(v - mn);
        s = (mn == mx ? s : s * exp(mx - mn)) + ((e.x + e.y) + (e.z + e.w));
        mx = mn;
      }
    } else {
      for (uint a = 0u; a < pc.len; ++a) {
        float v = ldf0(base + a * st);
        float mn = max(mx, v);
        s = (mn == mx ? s : s * exp(mx - mn)) + (mn == NEG_INF ? 0.0 : exp(v - mn));
        mx = mn;
      }
    }
    float inv = 1.0 / s;
    if (SC2 != 0u) {
      for (uint a = 0u; a < pc.len; a += 4u) sty4(base + a, exp(rowx4(base + a) - mx) * inv);
    } else {
      for (uint a = 0u; a < pc.len; ++a) stf5(base + a * st, exp(ldf0(base + a * st) - mx) * inv);
    }
  }
}

void main() {
  if (SC1 != 0u) {
    row_per_invocation();
    return;
  }
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
