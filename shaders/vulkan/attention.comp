// attention: softmax(q.k^T * scale) . v per query row, with GQA (query head h reads kv head
// h / (Hq/Hkv)), causal and sliding-window masks over absolute positions (query t sits at
// S - T + t) and optional per-head sink logits. One workgroup per (t, h); keys are taken in
// chunks of WG with an online (running max) softmax, so S is unbounded.
// Slots: 0 q (DT0), 1 k (DT1), 2 v (DT2), 3 sinks (DT3, SC0 = 1), 4 kv_len (i32, SC1 = 1:
// only the first kv_len rows of k and v exist; outside [0, S] it is reported), 5 result (DT5).
// Limits (checked by the host): D <= DMAX, Dv <= WG * DVPER.
//
// OP 0 is the GPU kernel above. CPU devices (an invocation is a SIMD lane, every buffer load a
// loop over lanes, barriers costly: docs/vulkan.md) run three barrier-free passes over a
// scratch of T*Hq*S scores plus T*Hq denominators instead, each lane doing one output with
// every key it needs in registers:
//   OP 1: score[(t*Hq+h)*S + s] = q.k for the keys t sees; an invocation per 4 heads of one
//         kv group x 4 keys (16 dot products from 8 vec4 loads per 4 of D).
//   OP 2: per (t, h): the max of score * scale, p = exp(score * scale - max) stored over the
//         score, and the sum (with the sink) into scratch[T*Hq*S + t*Hq + h].
//   OP 3: out[t, h, dv..dv+3] = sum_s p[s] v[s, dv..] / sum, an invocation per 4 heads of one
//         group x 4 values of dv (each v vec4 serves the 4 heads).
// The host takes these when D and Dv are multiples of 4; SC2 = 1 (q, k, v all f32) reads them
// as vec4, else as 4 scalar loads of any dtype.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"
#include "reduce.glsl"

#define DMAX 1024u
#define DVPER 8u

layout(push_constant) uniform PC {
  uint T, S, Hq, Hkv, D, Dv;
  uint causal, window;
  float scale;
} pc;

shared float qs[DMAX];
shared float ps[WG];

// vec4 aliases of q, k, v (f32 only, SC2 = 1).
layout(set = 0, binding = 0, std430) readonly buffer VnQ4 { vec4 v[]; } q4;
layout(set = 0, binding = 1, std430) readonly buffer VnK4 { vec4 v[]; } k4;
layout(set = 0, binding = 2, std430) readonly buffer VnV4 { vec4 v[]; } v4;

// The keys query row t sees: [lo, hi] (empty when lo > hi), kv_len applied (and reported by
// the first invocation when out of range).
void key_range(uint t, bool report, out int lo, out int hi) {
  int S = int(pc.S);
  if (SC1 != 0u) {
    int kv_len = ldi4(0u);
    if (kv_len < 0 || kv_len > S) {
      if (report) vn_report(VN_ERR_KV_LEN, kv_len, pc.S, 0u);
      kv_len = clamp(kv_len, 0, S);
    }
    S = kv_len;
  }
  int qpos = S - int(pc.T) + int(t);
  lo = 0, hi = S - 1;
  if (pc.causal != 0u && qpos < hi) hi = qpos;
  if (pc.window > 0u && qpos - int(pc.window) + 1 > lo) lo = qpos - int(pc.window) + 1;
}

vec4 ldq4(uint i) {
  return SC2 != 0u ? q4.v[i >> 2] : vec4(ldf0(i), ldf0(i + 1u), ldf0(i + 2u), ldf0(i + 3u));
}
vec4 ldk4(uint i) {
  return SC2 != 0u ? k4.v[i >> 2] : vec4(ldf1(i), ldf1(i + 1u), ldf1(i + 2u), ldf1(i + 3u));
}
vec4 ldv4(uint i) {
  return SC2 != 0u ? v4.v[i >> 2] : vec4(ldf2(i), ldf2(i + 1u), ldf2(i + 2u), ldf2(i + 3u));
}

void cpu_main() {
  uint gid = vn_gid();
  const float NEG_INF = uintBitsToFloat(0xff800000u);
  uint rows = pc.T * pc.Hq, G = pc.Hq / pc.Hkv, gb = (G + 3u) / 4u;
  int lo, hi;
  if (OP == 2u) {
    if (gid >= rows) return;
    key_range(gid / pc.Hq, false, lo, hi);
    uint base = gid * pc.S;
    float m = SC0 != 0u ? ldf3(gid % pc.Hq) : NEG_INF;
    for (int s = lo; s <= hi; ++s) m = max(m, scratch.f[base + uint(s)] * pc.scale);
    float l = 0.0;
    if (SC0 != 0u) l = exp(ldf3(gid % pc.Hq) - m);
    for (int s = lo; s <= hi; ++s) {
      float p = exp(scratch.f[base + uint(s)] * pc.scale - m);
      scratch.f[base + uint(s)] = p;
      l += p;
    }
    scratch.f[rows * pc.S + gid] = l;
    return;
  }
  // OP 1 and 3: a block of 4 heads of one kv group (h0 + j, j < nh) of query row t.
  uint per = OP == 1u ? (pc.S + 3u) / 4u : pc.Dv / 4u;
  if (gid >= pc.T * pc.Hkv * gb * per) return;
  uint blk = gid / per, x4 = (gid % per) * 4u;
  uint t = blk / (pc.Hkv * gb), kvh = (blk / gb) % pc.Hkv, j0 = (blk % gb) * 4u;
  uint nh = min(4u, G - j0), r0 = t * pc.Hq + kvh * G + j0; // rows r0 .. r0 + nh - 1
  key_range(t, gid == 0u, lo, hi);
  uint rr[4];
  for (uint j = 0u; j < 4u; ++j) rr[j] = r0 + min(j, nh - 1u); // padding repeats a row
  if (OP == 1u) {
    // Raw q.k of 4 heads x keys x4 .. x4+3 (scaled in OP 2); keys outside [lo, hi] are not
    // needed, so loads clamp into [0, S) and only the needed ones are stored.
    if (int(x4) > hi || int(x4) + 3 < lo) return;
    uint ko[4];
    for (uint i = 0u; i < 4u; ++i) ko[i] = (min(x4 + i, pc.S - 1u) * pc.Hkv + kvh) * pc.D;
    vec4 acc[4][4];
    for (uint j = 0u; j < 4u; ++j)
      for (uint i = 0u; i < 4u; ++i) acc[j][i] = vec4(0.0);
    for (uint d = 0u; d < pc.D; d += 4u) {
      vec4 kk[4];
      for (uint i = 0u; i < 4u; ++i) kk[i] = ldk4(ko[i] + d);
      for (uint j = 0u; j < 4u; ++j) {
        vec4 q = ldq4(rr[j] * pc.D + d);
        for (uint i = 0u; i < 4u; ++i) acc[j][i] += q * kk[i];
      }
    }
    for (uint j = 0u; j < 4u; ++j) {
      if (j >= nh) break;
      for (uint i = 0u; i < 4u; ++i) {
        int s = int(x4 + i);
        if (s >= lo && s <= hi) {
          vec4 a = acc[j][i];
          scratch.f[rr[j] * pc.S + uint(s)] = (a.x + a.y) + (a.z + a.w);
        }
      }
    }
    return;
  }
  // OP 3: out[r, x4 .. x4+3] = sum_s p[r, s] v[s, kvh, x4 ..] / l[r] for the 4 heads.
  vec4 acc[4];
  for (uint j = 0u; j < 4u; ++j) acc[j] = vec4(0.0);
  for (int s = lo; s <= hi; ++s) {
    vec4 v = ldv4((uint(s) * pc.Hkv + kvh) * pc.Dv + x4);
    for (uint j = 0u; j < 4u; ++j) acc[j] += scratch.f[rr[j] * pc.S + uint(s)] * v;
  }
  for (uint j = 0u; j < 4u; ++j) {
    if (j >= nh) break;
    vec4 o = lo > hi ? vec4(0.0) : acc[j] / scratch.f[rows * pc.S + rr[j]];
    for (uint c = 0u; c < 4u; ++c) stf5(rr[j] * pc.Dv + x4 + c, o[c]);
  }
}

void main() {
  if (OP != 0u) {
    cpu_main();
    return;
  }
  uint r = vn_group();
  if (r >= pc.T * pc.Hq) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  uint t = r / pc.Hq, h = r % pc.Hq;
  uint kvh = h / (pc.Hq / pc.Hkv);
  int S = int(pc.S);
  if (SC1 != 0u) {
    int kv_len = ldi4(0u);
    if (kv_len < 0 || kv_len > S) {
      if (l == 0u) vn_report(VN_ERR_KV_LEN, kv_len, pc.S, 0u);
      kv_len = clamp(kv_len, 0, S);
    }
    S = kv_len;
  }
  int qpos = S - int(pc.T) + int(t);
  int lo = 0, hi = S - 1;
  if (pc.causal != 0u && qpos < hi) hi = qpos;
  if (pc.window > 0u && qpos - int(pc.window) + 1 > lo) lo = qpos - int(pc.window) + 1;
  uint orow = r * pc.Dv;
  if (lo > hi) { // a query that sees no key yields 0
    for (uint dv = l; dv < pc.Dv; dv += WG) stf5(orow + dv, 0.0);
    return;
  }
  for (uint d = l; d < pc.D; d += WG) qs[d] = ldf0(r * pc.D + d);
  barrier();

  const float NEG_INF = uintBitsToFloat(0xff800000u);
  float m = SC0 != 0u ? ldf3(h) : NEG_INF;
  float denom = SC0 != 0u ? 1.0 : 0.0; // the sink's exp(sink - m) with m = sink
  float acc[DVPER];
  for (uint c = 0u; c < DVPER; ++c) acc[c] = 0.0;

  for (int s0 = lo; s0 <= hi; s0 += int(WG)) {
    int s = s0 + int(l);
    float sc = NEG_INF;
    if (s <= hi) {
      uint ko = (uint(s) * pc.Hkv + kvh) * pc.D;
      float dot = 0.0;
      for (uint d = 0u; d < pc.D; ++d) dot += qs[d] * ldf1(ko + d);
      sc = dot * pc.scale;
    }
    float mnew = max(m, vn_max(sc));
    float corr = exp(m - mnew);
    float p = s <= hi ? exp(sc - mnew) : 0.0;
    ps[l] = p;
    denom = denom * corr + vn_sum(p); // vn_sum's barriers also publish ps
    uint cnt = uint(min(int(WG), hi - s0 + 1));
    for (uint c = 0u; c < DVPER; ++c) {
      uint dv = l + WG * c;
      if (dv >= pc.Dv) break;
      float a = acc[c] * corr;
      for (uint j = 0u; j < cnt; ++j) {
        a += ps[j] * ldf2(((uint(s0) + j) * pc.Hkv + kvh) * pc.Dv + dv);
      }
      acc[c] = a;
    }
    barrier(); // ps is rewritten by the next chunk
    m = mnew;
  }
  for (uint c = 0u; c < DVPER; ++c) {
    uint dv = l + WG * c;
    if (dv < pc.Dv) stf5(orow + dv, acc[c] / denom);
  }
}
