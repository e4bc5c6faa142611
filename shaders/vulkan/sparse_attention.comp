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
// OP 1..3 (CPU devices, lavapipe: invocations are SIMD lanes of one thread and every buffer
// load is a per-lane loop, so what pays is arithmetic per load; the one K=V head serves every
// query head): three barrier-free passes over the query rows [t0, t0 + rows of this chunk),
// with the scores of row (t - t0, h) at scratch[(tl H + h)(NS + 1) + s] and its denominator at
// + NS:
//   1: an invocation per (t, 4 heads, 4 keys): 16 dot products from 8 loads per 4 channels
//      (vec4 loads when SC2 = 1: q, kv, ring and comp f32; D is a multiple of 4); -inf for no
//      key.
//   2: an invocation per (t, h): the maximum with the sink, the weights e^(l - M) in place and
//      the denominator with the sink's term.
//   3: an invocation per (t, 4 heads, 8 channels): the weighted sum over the keys (whose codes
//      pass 1 left after the scores), each key load serving 4 heads, divided by the
//      denominator. The CPU passes need D to be a multiple of 8.
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
  uint t0, rows, NS; // OP 1..3: the chunk's first query row, its rows, scores per row
} pc;

layout(set = 0, binding = 0, std430) readonly buffer VnQ4 { vec4 v[]; } q4;
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

vec4 q4_ld(uint i) {
  if (SC2 != 0u) return q4.v[i >> 2];
  return vec4(ldf0(i), ldf0(i + 1u), ldf0(i + 2u), ldf0(i + 3u));
}

// Where pass 1 leaves the code of key s of chunk row tl for pass 3: after every score.
uint code_at(uint tl, uint s) { return pc.rows * pc.H * (pc.NS + 1u) + tl * pc.NS + s; }

void pass_scores(uint g) {
  uint hg = (pc.H + 3u) / 4u, sg = (pc.NS + 3u) / 4u;
  if (g >= pc.rows * hg * sg) return;
  if (g == 0u && ldi4(0u) < 0) vn_report(VN_ERR_POS0, ldi4(0u), 0u, 0u);
  uint tl = g / (hg * sg), r = g % (hg * sg);
  uint h0 = (r / sg) * 4u, s0 = (r % sg) * 4u, t = pc.t0 + tl;
  uint codes[4];
  for (uint k = 0u; k < 4u; ++k) codes[k] = key_code(t, s0 + k, h0 == 0u);
  uint c0 = codes[0] != NONE ? codes[0] : codes[1] != NONE ? codes[1] : codes[2] != NONE ? codes[2] : codes[3];
  if (c0 == NONE) c0 = 0u; // no key at all: read kv row 0 and store -inf
  uint kc[4];
  for (uint k = 0u; k < 4u; ++k) kc[k] = codes[k] != NONE ? codes[k] : c0;
  uint hmax = min(4u, pc.H - h0);
  uint qrow[4];
  for (uint j = 0u; j < 4u; ++j) qrow[j] = (t * pc.H + h0 + min(j, hmax - 1u)) * pc.D;
  vec4 acc[4][4];
  for (uint j = 0u; j < 4u; ++j)
    for (uint k = 0u; k < 4u; ++k) acc[j][k] = vec4(0.0);
  for (uint ch = 0u; ch < pc.D; ch += 4u) {
    vec4 kv[4], qv[4];
    for (uint k = 0u; k < 4u; ++k) kv[k] = key4(kc[k], ch);
    for (uint j = 0u; j < 4u; ++j) qv[j] = q4_ld(qrow[j] + ch);
    for (uint j = 0u; j < 4u; ++j)
      for (uint k = 0u; k < 4u; ++k) acc[j][k] += qv[j] * kv[k];
  }
  if (h0 == 0u) {
    for (uint k = 0u; k < 4u; ++k) {
      if (s0 + k < pc.NS) scratch.f[code_at(tl, s0 + k)] = uintBitsToFloat(codes[k]);
    }
  }
  for (uint j = 0u; j < hmax; ++j) {
    uint base = (tl * pc.H + h0 + j) * (pc.NS + 1u);
    for (uint k = 0u; k < 4u; ++k) {
      if (s0 + k >= pc.NS) break;
      vec4 a = acc[j][k];
      float dot = (a.x + a.y) + (a.z + a.w);
      scratch.f[base + s0 + k] = codes[k] != NONE ? pc.scale * dot : -1.0 / 0.0;
    }
  }
}

void pass_softmax(uint g) {
  if (g >= pc.rows * pc.H) return;
  uint h = g % pc.H, base = g * (pc.NS + 1u);
  float sink = ldf3(h), m = sink;
  for (uint s = 0u; s < pc.NS; ++s) m = max(m, scratch.f[base + s]);
  float den = 0.0;
  bool none = isinf(m) && m < 0.0; // no key and a -inf sink: every weight is 0
  for (uint s = 0u; s < pc.NS; ++s) {
    float w = none ? 0.0 : exp(scratch.f[base + s] - m);
    scratch.f[base + s] = w;
    den += w;
  }
  if (!(isinf(sink) && sink < 0.0)) den += exp(sink - m);
  scratch.f[base + pc.NS] = den;
}

void pass_values(uint g) {
  uint hg = (pc.H + 3u) / 4u, cg = pc.D / 8u;
  if (g >= pc.rows * hg * cg) return;
  uint tl = g / (hg * cg), r = g % (hg * cg);
  uint h0 = (r / cg) * 4u, ch = (r % cg) * 8u, t = pc.t0 + tl;
  uint hmax = min(4u, pc.H - h0);
  uint base[4];
  for (uint j = 0u; j < 4u; ++j) base[j] = (tl * pc.H + h0 + min(j, hmax - 1u)) * (pc.NS + 1u);
  vec4 acc[4][2];
  for (uint j = 0u; j < 4u; ++j) acc[j][0] = acc[j][1] = vec4(0.0);
  uint cb = code_at(tl, 0u);
  for (uint s = 0u; s < pc.NS; ++s) {
    uint c = floatBitsToUint(scratch.f[cb + s]);
    if (c == NONE) continue;
    vec4 ka = key4(c, ch), kb = key4(c, ch + 4u);
    for (uint j = 0u; j < 4u; ++j) {
      float w = scratch.f[base[j] + s];
      acc[j][0] += w * ka;
      acc[j][1] += w * kb;
    }
  }
  for (uint j = 0u; j < hmax; ++j) {
    float den = scratch.f[base[j] + pc.NS];
    uint o = (t * pc.H + h0 + j) * pc.D + ch;
    for (uint e = 0u; e < 4u; ++e) {
      stf5(o + e, den > 0.0 ? acc[j][0][e] / den : 0.0);
      stf5(o + 4u + e, den > 0.0 ? acc[j][1][e] / den : 0.0);
    }
  }
}

void main() {
  if (OP == 1u) {
    pass_scores(vn_gid());
    return;
  }
  if (OP == 2u) {
    pass_softmax(vn_gid());
    return;
  }
  if (OP == 3u) {
    pass_values(vn_gid());
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
