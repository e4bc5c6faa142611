// sparse_attention (docs/ops.md, "DeepSeek-V4 attention"): a workgroup per (query t, head h).
// The key set is enumerated in order: the window positions lo..p (kv[j - pos0] for j >= pos0,
// else ring[j mod W]), then the compressed entries (HCA: comp[0 .. (p+1)/m); CSA: comp[idx[t, i]]
// with -1 skipped). Keys go in chunks of WG: each invocation forms one key's score q.key (q in
// shared memory), the chunk's maximum updates the running one (online softmax, the sink as the
// starting maximum), each invocation turns its score into a weight, and then each invocation
// accumulates its DPER channels of the output over the chunk's keys (coalesced key reads).
// Three barriers per chunk; on CPU devices (lavapipe) a workgroup is one thread's SIMD loop,
// so a decode step of H heads is H workgroups.
// Slots: 0 q[T, H, D] (DT0), 1 kv[T, D], 2 ring[W, D], 3 sinks[H], 4 pos0 (i32), 6 comp[Sc, D],
// 7 idx[T, K] (i32) — comp and idx sit in output slots (never written: an op has 7 inputs);
// 5 o[T, H, D]. SC0: 1 with comp; SC1: 1 with idx. An idx >= Sc is reported and skipped.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

#define VN_ERR_ENTRY 7u // an idx entry >= Sc (vk_exec.c words it)
#define DPER 8u // channels per invocation: D <= WG * DPER (SA_DMAX in vk_ops_model.c)
#define DMAX 1024u

layout(push_constant) uniform PC {
  uint T, H, D, W, Sc, K, ratio;
  float scale;
} pc;

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

void main() {
  uint wg = vn_group();
  if (wg >= pc.T * pc.H) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  uint t = wg / pc.H, h = wg % pc.H;
  uint D = pc.D;
  int pos0 = ldi4(0u);
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
