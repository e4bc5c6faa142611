// sparse_attention (docs/ops.md, "DeepSeek-V4 attention"). For query t at position p and head h
// the key set is enumerated in order: the window positions lo..p (kv[j - pos0] for j >= pos0,
// else ring[j mod W]), then the compressed entries (HCA: comp[0 .. (p+1)/m); CSA:
// comp[idx[t, i]] with -1 skipped). An idx >= Sc is reported and skipped.
// Slots: 0 q[T, H, D] (DT0), 1 kv[T, D], 2 ring[W, D], 3 sinks[H], 4 pos0 (i32), 6 comp[Sc, D],
// 7 idx[T, K] (i32) — comp and idx sit in output slots (never written: the op has 7 inputs);
// 5 o[T, H, D]. SC0: 1 with comp; SC1: 1 with idx. pos0 < 0 is reported (no key is read).
//
// OP 0 (GPUs): a workgroup per (t, h). Keys go in chunks of WG: each invocation forms one
// key's score q.key (q in shared memory), the chunk's maximum updates the running one (online
// softmax, the sink as the starting maximum), each invocation turns its score into a weight,
// and each invocation accumulates its DPER channels of the output over the chunk's keys
// (coalesced key reads). Three barriers per chunk.
// OP 1, 2 (CPU devices, lavapipe: invocations are SIMD lanes of one thread and every buffer
// load is a per-lane loop, so what pays is arithmetic per load, which matmul.comp's
// register-blocked kernel has): over the query rows [t0, t0 + rows) of a chunk, with NS keys per
// row (the window and every entry a row could name),
//   1: gathers each row's keys into a dense f32 panel [rows, NS, D] in scratch (0 for no key)
//      and their codes;
//   then the host runs matmul.comp for the scores [rows, H, NS] = q . panel^T,
//   2: turns the scores into softmax weights in place (divided by the denominator, the sink's
//      term included; 0 for no key);
//   then matmul.comp again for o [rows, H, D] = weights . panel (K = V).
// The CPU path needs D to be a multiple of 4.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

#define VN_ERR_ENTRY 7u // an idx entry >= Sc (vk_exec.c words these)
#define VN_ERR_POS0 8u  // pos0 < 0
#define DPER 8u // channels per invocation: D <= WG * DPER (SA_DMAX in vk_ops_model.c)
#define DMAX 1024u

layout(push_constant) uniform PC {
  uint T, H, D, W, Sc, K, ratio;
  float scale;
  uint t0, rows, NS;          // OP 1, 2: the chunk's first query row, its rows, keys per row
  uint codes_off, scores_off; // OP 1, 2: scratch word offsets
} pc;

layout(set = 0, binding = 8, std430) buffer VnScratch4 { vec4 v[]; } s4;
layout(set = 0, binding = 1, std430) readonly buffer VnKv4 { vec4 v[]; } kv4;
layout(set = 0, binding = 2, std430) readonly buffer VnRing4 { vec4 v[]; } ring4;
layout(set = 0, binding = 6, std430) readonly buffer VnComp4 { vec4 v[]; } comp4;

shared float qs[DMAX];
shared float sc[WG];
shared uint code[WG]; // key source << 30 | row; 3 << 30: no key

const uint SRC_KV = 0u, SRC_RING = 1u, SRC_COMP = 2u, NONE = 0xc0000000u;

float key_ld(uint c, uint ch) {
  uint row = c & 0x3fffffffu, src = c >> 30;
  uint i = row * pc.D + ch;
  if (src == SRC_KV) return ldf1(i);
  if (src == SRC_RING) return ldf2(i);
  return ldf6(i);
}

// The code of key s of query t (NONE: no key), reporting an idx >= Sc when `report`.
uint key_code(uint t, uint s, bool report) {
  int p = ldi4(0u) + int(t);
  if (p < 0) return NONE;
  int lo = max(0, p - int(pc.W) + 1);
  uint n_win = uint(p - lo + 1);
  if (s < n_win) {
    int j = lo + int(s);
    int pos0 = ldi4(0u);
    return j >= pos0 ? (SRC_KV << 30) | uint(j - pos0) : (SRC_RING << 30) | (uint(j) % pc.W);
  }
  uint e = s - n_win;
  if (SC0 == 0u) return NONE;
  if (SC1 != 0u) {
    if (e >= pc.K) return NONE;
    int ix = ldi7(t * pc.K + e);
    if (ix >= 0 && uint(ix) >= pc.Sc) {
      if (report) vn_report(VN_ERR_ENTRY, ix, pc.Sc, t);
      return NONE;
    }
    return ix < 0 ? NONE : (SRC_COMP << 30) | uint(ix);
  }
  return e < min((uint(p) + 1u) / pc.ratio, pc.Sc) ? (SRC_COMP << 30) | e : NONE;
}

vec4 key4(uint c, uint ch) {
  uint row = c & 0x3fffffffu, src = c >> 30;
  uint i = row * pc.D + ch;
  if (SC2 != 0u) {
    if (src == SRC_KV) return kv4.v[i >> 2];
    if (src == SRC_RING) return ring4.v[i >> 2];
    return comp4.v[i >> 2];
  }
  if (src == SRC_KV) return vec4(ldf1(i), ldf1(i + 1u), ldf1(i + 2u), ldf1(i + 3u));
  if (src == SRC_RING) return vec4(ldf2(i), ldf2(i + 1u), ldf2(i + 2u), ldf2(i + 3u));
  return vec4(ldf6(i), ldf6(i + 1u), ldf6(i + 2u), ldf6(i + 3u));
}

// OP 1: the key panel of chunk row tl: panel[tl][s][ch] (f32; 0 for no key) at scratch word 0,
// and the key codes at codes_off + tl NS + s. An invocation per (tl, s, 4 channels).
void pass_gather(uint g) {
  uint cg = pc.D / 4u;
  if (g >= pc.rows * pc.NS * cg) return;
  uint ts = g / cg, ch = (g % cg) * 4u;
  uint tl = ts / pc.NS, s = ts % pc.NS, t = pc.t0 + tl;
  if (g == 0u && ldi4(0u) < 0) vn_report(VN_ERR_POS0, ldi4(0u), 0u, 0u);
  uint c = key_code(t, s, ch == 0u);
  vec4 k = c != NONE ? key4(c, ch) : vec4(0.0);
  uint o = ts * pc.D + ch;
  scratch.f[o] = k.x;
  scratch.f[o + 1u] = k.y;
  scratch.f[o + 2u] = k.z;
  scratch.f[o + 3u] = k.w;
  if (ch == 0u) scratch.f[pc.codes_off + ts] = uintBitsToFloat(c);
}

// OP 2: per (tl, h), the raw scores q.key at scores_off + (tl H + h) NS (from matmul.comp)
// become the weights e^(l - M) / den with l = scale q.key, M and den including the sink; no
// key weighs 0. Four keys per iteration (NS is a multiple of 4): llvmpipe ends a shader's loops
// after 65535 iterations in all, so the three loops take NS <= SA_NS_MAX (vk_ops_v4.c).
void pass_softmax(uint g) {
  if (g >= pc.rows * pc.H) return;
  uint tl = g / pc.H, h = g % pc.H;
  uint base = (pc.scores_off + g * pc.NS) >> 2, cb = (pc.codes_off + tl * pc.NS) >> 2;
  float sink = ldf3(h), m = sink;
  const vec4 ninf = vec4(-1.0 / 0.0);
  for (uint s = 0u; s < pc.NS / 4u; ++s) {
    bvec4 key = notEqual(floatBitsToUint(s4.v[cb + s]), uvec4(NONE));
    vec4 l = mix(ninf, pc.scale * s4.v[base + s], key);
    m = max(m, max(max(l.x, l.y), max(l.z, l.w)));
  }
  bool none = isinf(m) && m < 0.0; // no key and a -inf sink: every weight is 0
  float den = none || (isinf(sink) && sink < 0.0) ? 0.0 : exp(sink - m);
  for (uint s = 0u; s < pc.NS / 4u; ++s) {
    bvec4 key = notEqual(floatBitsToUint(s4.v[cb + s]), uvec4(NONE));
    vec4 w = exp(pc.scale * s4.v[base + s] - m);
    w = none ? vec4(0.0) : mix(vec4(0.0), w, key);
    s4.v[base + s] = w;
    den += (w.x + w.y) + (w.z + w.w);
  }
  float inv = den > 0.0 ? 1.0 / den : 0.0;
  for (uint s = 0u; s < pc.NS / 4u; ++s) s4.v[base + s] *= inv;
}

void main() {
  if (OP == 1u) {
    pass_gather(vn_gid());
    return;
  }
  if (OP == 2u) {
    pass_softmax(vn_gid());
    return;
  }
  uint wg = vn_group();
  if (wg >= pc.T * pc.H) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  uint t = wg / pc.H, h = wg % pc.H;
  uint D = pc.D;
  int pos0 = ldi4(0u);
  if (pos0 < 0 && wg == 0u && l == 0u) vn_report(VN_ERR_POS0, pos0, 0u, 0u);
  int p = pos0 + int(t);
  uint qo = (t * pc.H + h) * D;
  for (uint c = l; c < D; c += WG) qs[c] = ldf0(qo + c);
  // Window [lo, p]; positions before 0 do not exist.
  int lo = max(0, p - int(pc.W) + 1);
  uint n_win = p >= 0 ? uint(p - lo + 1) : 0u;
  uint n_comp = 0u;
  if (SC0 != 0u) {
    if (SC1 != 0u) {
      n_comp = pc.K;
    } else if (p >= 0) {
      n_comp = min((uint(p) + 1u) / pc.ratio, pc.Sc);
    }
  }
  uint n = n_win + n_comp;
  float sink = ldf3(h);
  float m_run = sink, l_run = 0.0;
  float acc[DPER];
  for (uint r = 0u; r < DPER; ++r) acc[r] = 0.0;
  barrier();
  for (uint base = 0u; base < n; base += WG) {
    uint s = base + l;
    uint c = NONE;
    if (s < n_win) {
      int j = lo + int(s);
      c = j >= pos0 ? (SRC_KV << 30) | uint(j - pos0) : (SRC_RING << 30) | (uint(j) % pc.W);
    } else if (s < n) {
      uint e = s - n_win;
      if (SC1 != 0u) {
        int ix = ldi7(t * pc.K + e);
        if (ix >= 0 && uint(ix) >= pc.Sc) {
          vn_report(VN_ERR_ENTRY, ix, pc.Sc, t);
        } else if (ix >= 0) {
          c = (SRC_COMP << 30) | uint(ix);
        }
      } else {
        c = (SRC_COMP << 30) | e;
      }
    }
    float score = -1.0 / 0.0;
    if (c != NONE) {
      float dot = 0.0;
      for (uint ch = 0u; ch < D; ++ch) dot += qs[ch] * key_ld(c, ch);
      score = pc.scale * dot;
    }
    code[l] = c;
    sc[l] = score;
    barrier();
    uint cn = min(uint(WG), n - base);
    float cmax = m_run;
    for (uint i = 0u; i < cn; ++i) {
      if (code[i] != NONE) cmax = max(cmax, sc[i]);
    }
    // Rescale what was summed so far to the new maximum (nothing to rescale while it is -inf).
    float alpha = (m_run == cmax || isinf(m_run)) ? 1.0 : exp(m_run - cmax);
    float wv = (c != NONE && !isinf(cmax)) ? exp(score - cmax) : 0.0;
    barrier();
    sc[l] = wv;
    barrier();
    l_run *= alpha;
    for (uint r = 0u; r < DPER; ++r) acc[r] *= alpha;
    for (uint i = 0u; i < cn; ++i) {
      float pw = sc[i];
      l_run += pw;
      if (pw == 0.0) continue;
      uint ci = code[i];
      for (uint r = 0u; r < DPER; ++r) {
        uint ch = l + r * WG;
        if (ch < D) acc[r] += pw * key_ld(ci, ch);
      }
    }
    m_run = cmax;
    barrier();
  }
  float den = l_run + (isinf(sink) && sink < 0.0 ? 0.0 : exp(sink - m_run));
  for (uint r = 0u; r < DPER; ++r) {
    uint ch = l + r * WG;
    if (ch < D) stf5(qo + ch, den > 0.0 ? acc[r] / den : 0.0);
  }
}
