// attention: softmax(q.k^T * scale) . v per query row, with GQA (query head h reads kv head
// h / (Hq/Hkv)), causal and sliding-window masks over absolute positions (query t sits at
// S - T + t) and optional per-head sink logits. One workgroup per (t, h); keys are taken in
// chunks of WG with an online (running max) softmax, so S is unbounded.
// Slots: 0 q (DT0), 1 k (DT1), 2 v (DT2), 3 sinks (DT3, SC0 = 1), 4 kv_len (i32, SC1 = 1:
// only the first kv_len rows of k and v exist; outside [0, S] it is reported), 5 result (DT5).
// Limits (checked by the host): D <= DMAX, Dv <= WG * DVPER.
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

void main() {
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
