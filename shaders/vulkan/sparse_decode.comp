// sparse_attention for decode-sized queries on CPU devices (lavapipe; docs/bench.md, "Vulkan
// decode on lavapipe"): the keys of sparse_attention.comp (the window, then the compressed
// entries) in one dispatch, without the key panel and the two GEMMs of its CPU path.
//
// A workgroup is one 8-lane vector: its lanes are 8 heads of one query row t, which share
// every key (K = V), so a key's channels are fetched once for the 8 heads and each lane keeps
// its own softmax; no lane ever reads another's result (no barrier, no subgroup operation).
// On llvmpipe a storage-buffer load whose address differs between lanes is a loop over the
// lanes, while a texel fetch is a gather: q (lane-dependent) and the ring and comp keys are
// read through 16-byte texel views (bindings 13, 11 and 14); kv (the run's own T rows) as
// words.
//   pass 1: score_s = scale q.key_s for every key s, into the scratch, and their maximum m
//           (the sink's logit is the starting maximum);
//   pass 2: w_s = e^(score_s - m) in place, den = sum w_s + e^(sink - m);
//   pass 3: o = sum_s w_s key_s / den over the workgroup's slice of the channels, 16 at a time.
// Slots: 0 q[T, H, D] (f32), 1 kv[T, D] (DT1), 2 sinks[H] (DT2), 3 ring[W, D] (f32), 4 pos0
// (i32), 5 o[T, H, D] (DT5), 6 comp[Sc, D] (f32; SC0 = 1), 7 idx[T, K] (i32; SC1 = 1), 8 the
// scores, NS words per lane. D is a multiple of 16. Workgroup g: slice g % NSL of the channels,
// head group (g / NSL) % HG, query row g / (NSL HG).
// llvmpipe ends a shader's loops after 65535 iterations in all: the host keeps
// NS (D/16 + 2 + D/16/NSL) + D/16 below that (SD_ITER_MAX in vk_ops_v4.c).
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 8
#include "common.glsl"

#define VN_ERR_ENTRY 7u // an idx entry >= Sc (vk_exec.c words these)
#define VN_ERR_POS0 8u  // pos0 < 0

layout(push_constant) uniform PC {
  uint T, H, D, W, Sc, K, ratio;
  float scale;
  uint NS, NSL, HG;
} pc;

layout(set = 0, binding = 11) uniform usamplerBuffer ring_tex; // slot 3
layout(set = 0, binding = 13) uniform usamplerBuffer q_tex;    // slot 0
layout(set = 0, binding = 14) uniform usamplerBuffer comp_tex; // slot 6

const uint SRC_KV = 0u, SRC_RING = 1u, SRC_COMP = 2u, NONE = 0xc0000000u;

// The code (source << 30 | row) of key s of query row t at position p >= 0; NONE: no key.
uint key_code(uint t, int p, int pos0, uint n_win, uint s, bool report) {
  if (s < n_win) {
    int j = max(0, p - int(pc.W) + 1) + int(s);
    return j >= pos0 ? (SRC_KV << 30) | uint(j - pos0) : (SRC_RING << 30) | (uint(j) % pc.W);
  }
  uint e = s - n_win;
  if (SC1 != 0u) {
    int ix = ldi7(t * pc.K + e);
    if (ix >= 0 && uint(ix) >= pc.Sc) {
      if (report) vn_report(VN_ERR_ENTRY, ix, pc.Sc, t);
      return NONE;
    }
    return ix < 0 ? NONE : (SRC_COMP << 30) | uint(ix);
  }
  return (SRC_COMP << 30) | e;
}

// Channels ch .. ch + 15 of key c (ch a multiple of 16).
void key16(uint c, uint ch, out vec4 k[4]) {
  uint row = c & 0x3fffffffu, src = c >> 30;
  uint i = row * pc.D + ch;
  int x = int(i >> 2);
  if (src == SRC_KV) {
    k[0] = vec4(ldf1(i), ldf1(i + 1u), ldf1(i + 2u), ldf1(i + 3u));
    k[1] = vec4(ldf1(i + 4u), ldf1(i + 5u), ldf1(i + 6u), ldf1(i + 7u));
    k[2] = vec4(ldf1(i + 8u), ldf1(i + 9u), ldf1(i + 10u), ldf1(i + 11u));
    k[3] = vec4(ldf1(i + 12u), ldf1(i + 13u), ldf1(i + 14u), ldf1(i + 15u));
  } else if (src == SRC_RING) {
    k[0] = uintBitsToFloat(texelFetch(ring_tex, x));
    k[1] = uintBitsToFloat(texelFetch(ring_tex, x + 1));
    k[2] = uintBitsToFloat(texelFetch(ring_tex, x + 2));
    k[3] = uintBitsToFloat(texelFetch(ring_tex, x + 3));
  } else {
    k[0] = uintBitsToFloat(texelFetch(comp_tex, x));
    k[1] = uintBitsToFloat(texelFetch(comp_tex, x + 1));
    k[2] = uintBitsToFloat(texelFetch(comp_tex, x + 2));
    k[3] = uintBitsToFloat(texelFetch(comp_tex, x + 3));
  }
}

void main() {
  uint g = vn_group();
  uint slice = g % pc.NSL, hg = (g / pc.NSL) % pc.HG, t = g / (pc.NSL * pc.HG);
  if (t >= pc.T) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  uint h = min(hg * 8u + l, pc.H - 1u); // lanes past H repeat the last head and store nothing
  bool store = hg * 8u + l < pc.H;
  uint D = pc.D;
  int pos0 = ldi4(0u);
  bool first = slice == 0u && hg == 0u; // reports errors of row t
  if (pos0 < 0 && g == 0u && l == 0u) vn_report(VN_ERR_POS0, pos0, 0u, 0u);
  int p = pos0 + int(t);
  uint n_win = 0u, n = 0u;
  if (p >= 0) {
    n_win = uint(p - max(0, p - int(pc.W) + 1) + 1);
    uint n_comp = 0u;
    if (SC0 != 0u) n_comp = SC1 != 0u ? pc.K : min((uint(p) + 1u) / pc.ratio, pc.Sc);
    n = n_win + n_comp;
  }
  uint wb = (g * 8u + l) * pc.NS; // this lane's scores in the scratch
  uint qt = ((t * pc.H + h) * D) >> 2;
  float sink = ldf2(h), m = sink;
  for (uint s = 0u; s < n; ++s) {
    uint c = key_code(t, p, pos0, n_win, s, first);
    float score = -1.0 / 0.0;
    if (c != NONE) {
      float dot4 = 0.0;
      for (uint ch = 0u; ch < D; ch += 16u) {
        vec4 k[4];
        key16(c, ch, k);
        uint qi = qt + (ch >> 2);
        vec4 q0 = uintBitsToFloat(texelFetch(q_tex, int(qi)));
        vec4 q1 = uintBitsToFloat(texelFetch(q_tex, int(qi + 1u)));
        vec4 q2 = uintBitsToFloat(texelFetch(q_tex, int(qi + 2u)));
        vec4 q3 = uintBitsToFloat(texelFetch(q_tex, int(qi + 3u)));
        dot4 += (dot(q0, k[0]) + dot(q1, k[1])) + (dot(q2, k[2]) + dot(q3, k[3]));
      }
      score = pc.scale * dot4;
      m = max(m, score);
    }
    scratch.f[wb + s] = score;
  }
  bool none = isinf(m) && m < 0.0; // no key and a -inf sink: every weight is 0
  float den = none || (isinf(sink) && sink < 0.0) ? 0.0 : exp(sink - m);
  for (uint s = 0u; s < n; ++s) {
    float w = none ? 0.0 : exp(scratch.f[wb + s] - m); // no key: e^-inf = 0
    scratch.f[wb + s] = w;
    den += w;
  }
  float inv = den > 0.0 ? 1.0 / den : 0.0;
  uint d16 = D / 16u;
  uint c_lo = slice * d16 / pc.NSL, c_hi = (slice + 1u) * d16 / pc.NSL;
  uint ob = (t * pc.H + h) * D;
  for (uint cc = c_lo; cc < c_hi; ++cc) {
    uint ch = cc * 16u;
    vec4 acc[4] = vec4[4](vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
    for (uint s = 0u; s < n; ++s) {
      uint c = key_code(t, p, pos0, n_win, s, false);
      if (c == NONE) continue;
      float w = scratch.f[wb + s];
      vec4 k[4];
      key16(c, ch, k);
      acc[0] += w * k[0];
      acc[1] += w * k[1];
      acc[2] += w * k[2];
      acc[3] += w * k[3];
    }
    if (store) {
      uint o = ob + ch;
      stf5(o, acc[0].x * inv), stf5(o + 1u, acc[0].y * inv);
      stf5(o + 2u, acc[0].z * inv), stf5(o + 3u, acc[0].w * inv);
      stf5(o + 4u, acc[1].x * inv), stf5(o + 5u, acc[1].y * inv);
      stf5(o + 6u, acc[1].z * inv), stf5(o + 7u, acc[1].w * inv);
      stf5(o + 8u, acc[2].x * inv), stf5(o + 9u, acc[2].y * inv);
      stf5(o + 10u, acc[2].z * inv), stf5(o + 11u, acc[2].w * inv);
      stf5(o + 12u, acc[3].x * inv), stf5(o + 13u, acc[3].y * inv);
      stf5(o + 14u, acc[3].z * inv), stf5(o + 15u, acc[3].w * inv);
    }
  }
}
