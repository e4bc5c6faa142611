// MoE routing, one workgroup per token.
//   OP 0 moe_route: slots 0 logits (DT0), 1 bias (DT1, SC1 = 1), 5 weights (f32), 6 experts.
//        s = score(logits); sel = s + bias selects (groups: a group scores the sum of its two
//        largest sel, the topk_group best stay eligible); experts = the k largest eligible
//        sel, descending, ties to the lower index; weights = the unbiased s of those.
//   OP 1 moe_hash_route: slots 0 logits, 1 ids (i32), 2 tid2eid[V, k] (i32), 5, 6 as above.
//        A token id outside [0, V) or a table entry outside [0, E) is reported and clamped.
// SC0: the score, 1 sigmoid, 2 softmax (over E), 3 sqrt_softplus.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
#include "reduce.glsl"

#define EMAX 1024u
#define GMAX 64u
#define KMAX 64u

layout(push_constant) uniform PC {
  uint T, E, k, n_group, topk_group, norm, V;
  float scale;
} pc;

shared float s_sc[EMAX];
shared float s_sel[EMAX];
shared float gscore[GMAX];
shared uint gkeep[GMAX];
shared int chosen[KMAX];
shared float bv_sh[WG];
shared int bi_sh[WG];

bool ranks_before(float va, int ia, float vb, int ib) {
  bool na = vn_isnan(va), nb = vn_isnan(vb);
  if (na || nb) return nb && (!na || ia < ib);
  return va > vb || (va == vb && ia < ib);
}

void main() {
  uint t = vn_group();
  if (t >= pc.T) return; // uniform across the workgroup
  uint l = gl_LocalInvocationID.x;
  uint E = pc.E;
  const float NEG_INF = uintBitsToFloat(0xff800000u);

  float mx = NEG_INF;
  for (uint e = l; e < E; e += WG) {
    float x = ldf0(t * E + e);
    if (SC0 == 1u) x = vn_sigmoid(x);
    else if (SC0 == 3u) x = sqrt(vn_softplus(x));
    else if (x > mx) mx = x;
    s_sc[e] = x;
  }
  if (SC0 == 2u) {
    mx = vn_max(mx);
    float sum = 0.0;
    for (uint e = l; e < E; e += WG) {
      float v = exp(s_sc[e] - mx);
      s_sc[e] = v;
      sum += v;
    }
    sum = vn_sum(sum);
    for (uint e = l; e < E; e += WG) s_sc[e] /= sum;
  }
  barrier();

  if (OP == 1u) {
    if (l == 0u) {
      int id = ldi1(t);
      if (id < 0 || uint(id) >= pc.V) {
        vn_report(VN_ERR_TOKEN, id, pc.V, t);
        id = clamp(id, 0, max(int(pc.V) - 1, 0));
      }
      for (uint i = 0u; i < pc.k; ++i) {
        int e = pc.V == 0u ? 0 : ldi2(uint(id) * pc.k + i);
        if (e < 0 || uint(e) >= E) {
          vn_report(VN_ERR_EXPERT, e, E, t * pc.k + i);
          e = clamp(e, 0, int(E) - 1);
        }
        chosen[i] = e;
      }
    }
  } else {
    for (uint e = l; e < E; e += WG) s_sel[e] = s_sc[e] + (SC1 != 0u ? ldf1(e) : 0.0);
    uint gsize = pc.n_group > 1u ? E / pc.n_group : E;
    barrier();
    if (pc.n_group > 1u) {
      if (l < pc.n_group) {
        uint g0 = l * gsize;
        uint b1 = 0u;
        for (uint i = 1u; i < gsize; ++i) b1 = s_sel[g0 + i] > s_sel[g0 + b1] ? i : b1;
        int b2 = -1;
        for (uint i = 0u; i < gsize; ++i) {
          if (i != b1 && (b2 < 0 || s_sel[g0 + i] > s_sel[g0 + uint(b2)])) b2 = int(i);
        }
        gscore[l] = s_sel[g0 + b1] + (b2 >= 0 ? s_sel[g0 + uint(b2)] : 0.0);
        gkeep[l] = 0u;
      }
      barrier();
      if (l == 0u) {
        for (uint r = 0u; r < pc.topk_group; ++r) {
          int best = -1;
          for (uint g = 0u; g < pc.n_group; ++g) {
            if (gkeep[g] == 0u && (best < 0 || gscore[g] > gscore[uint(best)])) best = int(g);
          }
          gkeep[uint(best)] = 1u;
        }
      }
      barrier();
    }
    float pv = 0.0;
    int pi = -1;
    for (uint r = 0u; r < pc.k; ++r) {
      float bv = 0.0;
      int bi = -1;
      for (uint e = l; e < E; e += WG) {
        if (pc.n_group > 1u && gkeep[e / gsize] == 0u) continue;
        float v = s_sel[e];
        if (pi >= 0 && !ranks_before(pv, pi, v, int(e))) continue;
        if (bi < 0 || ranks_before(v, int(e), bv, bi)) {
          bv = v;
          bi = int(e);
        }
      }
      bv_sh[l] = bv;
      bi_sh[l] = bi;
      barrier();
      for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (l < s && bi_sh[l + s] >= 0 &&
            (bi_sh[l] < 0 || ranks_before(bv_sh[l + s], bi_sh[l + s], bv_sh[l], bi_sh[l]))) {
          bv_sh[l] = bv_sh[l + s];
          bi_sh[l] = bi_sh[l + s];
        }
        barrier();
      }
      pv = bv_sh[0];
      pi = bi_sh[0];
      if (l == 0u) chosen[r] = pi;
      barrier();
    }
  }
  barrier();
  if (l == 0u) {
    float sum = 0.0;
    for (uint i = 0u; i < pc.k; ++i) sum += s_sc[uint(chosen[i])];
    for (uint i = 0u; i < pc.k; ++i) {
      float w = s_sc[uint(chosen[i])];
      if (pc.norm != 0u) w /= (sum + 1e-20);
      stf5(t * pc.k + i, w * pc.scale);
      sti6(t * pc.k + i, chosen[i]);
    }
  }
}
