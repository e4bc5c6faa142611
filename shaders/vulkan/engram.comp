// Engram gating and short convolution.
//   OP 0 engram_gate (one workgroup per (t, m)): g = <rms_norm(h, wh), rms_norm(k, wk)> / sqrt(C),
//        signed sqrt if SC0 = 1, u = sigmoid(g) * v[t]. Slots: 0 h, 1 k, 2 v, 3 wh, 4 wk, 5 u.
//   OP 1 short_conv norm (one workgroup per (t, m)): scratch z[t, m, :] = rms_norm(u, wn[m]).
//   OP 2 short_conv (one invocation per element of y, then of hist_out): Z = hist then z;
//        y[t,m,c] = silu(sum_i w[q,i] Z[P+t-(K-1-i)dil, m, c]) + u[t,m,c]; hist_out = last P
//        rows of Z. Slots: 0 u, 1 hist, 2 wn, 3 w[M*C, K], 5 y, 6 hist_out.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
#include "reduce.glsl"

layout(push_constant) uniform PC {
  uint T, M, C, K, P, dil;
  float eps;
} pc;

float z_at(uint r, uint q) {
  uint MC = pc.M * pc.C;
  return r < pc.P ? ldf1(r * MC + q) : scratch.f[(r - pc.P) * MC + q];
}

void main() {
  uint l = gl_LocalInvocationID.x;
  uint C = pc.C;
  if (OP == 2u) {
    uint i = vn_gid();
    uint MC = pc.M * C, ny = pc.T * MC;
    if (i >= ny + pc.P * MC) return;
    if (i < ny) {
      uint t = i / MC, q = i % MC;
      float acc = 0.0;
      for (uint j = 0u; j < pc.K; ++j) {
        acc += ldf3(q * pc.K + j) * z_at(pc.P + t - (pc.K - 1u - j) * pc.dil, q);
      }
      stf5(i, acc / (1.0 + exp(-acc)) + ldf0(i));
    } else {
      uint r = (i - ny) / MC, q = (i - ny) % MC;
      stf6(i - ny, z_at(pc.T + r, q));
    }
    return;
  }
  uint r = vn_group();
  if (r >= pc.T * pc.M) return; // uniform across the workgroup
  uint off = r * C, m = r % pc.M, t = r / pc.M;
  if (OP == 1u) {
    float ss = 0.0;
    for (uint c = l; c < C; c += WG) {
      float v = ldf0(off + c);
      ss += v * v;
    }
    float inv = 1.0 / sqrt(vn_sum(ss) / float(C) + pc.eps);
    for (uint c = l; c < C; c += WG) scratch.f[off + c] = ldf0(off + c) * inv * ldf2(m * C + c);
    return;
  }
  float sh = 0.0, sk = 0.0;
  for (uint c = l; c < C; c += WG) {
    float hv = ldf0(off + c), kv = ldf1(off + c);
    sh += hv * hv;
    sk += kv * kv;
  }
  float rh = 1.0 / sqrt(vn_sum(sh) / float(C) + pc.eps);
  float rk = 1.0 / sqrt(vn_sum(sk) / float(C) + pc.eps);
  float g = 0.0;
  for (uint c = l; c < C; c += WG) {
    g += (ldf0(off + c) * rh * ldf3(m * C + c)) * (ldf1(off + c) * rk * ldf4(m * C + c));
  }
  g = vn_sum(g) * (1.0 / sqrt(float(C)));
  if (SC0 != 0u) {
    float sgn = g > 0.0 ? 1.0 : (g < 0.0 ? -1.0 : 0.0);
    g = sgn * sqrt(max(abs(g), 1e-6));
  }
  float alpha = 1.0 / (1.0 + exp(-g));
  for (uint c = l; c < C; c += WG) stf5(off + c, alpha * ldf2(t * C + c));
}
