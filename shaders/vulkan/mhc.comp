// mHC (DeepSeek-V4 hyper-connections): the per-token tails of hc_pre and hc_head, hc_post and
// sinkhorn. The mixing products fn . X[t] are a GEMM (matmul.comp) into scratch beforehand.
//   OP 0 hc_pre tail  (one workgroup per token): slots 0 X, 2 scale, 3 base, 5 x, 6 post,
//        7 comb, scratch = mix[T, (n+2)n] (fn rows ordered pre, post, comb).
//   OP 1 hc_head tail (one workgroup per token): slots 0 X, 2 scale, 3 base, 5 x,
//        scratch = mix[T, n].
//   OP 2 hc_post (one invocation per element): slots 0 X, 1 y, 2 post, 3 comb, 5 X'.
//        comb is applied transposed: X'[t,k] = post[t,k] y[t] + sum_j comb[t,j,k] X[t,j].
//   OP 3 sinkhorn (one workgroup per matrix): slots 0 L, 5 result.
// Sinkhorn runs on one invocation in the CPU reference's order (n <= NMAX is small).
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
#include "reduce.glsl"

#define NMAX 16u

layout(push_constant) uniform PC {
  uint T; // tokens (OP 0..2) or matrices (OP 3)
  uint n, C, iters;
  float eps, norm_eps;
} pc;

shared float sm[NMAX * NMAX];
shared float wsh[NMAX];

// Row softmax + eps, column normalisation, then iters-1 rounds of (row, column); every
// divide adds eps. In place on sm[n][n].
void sinkhorn_sm(uint n, uint iters, float eps) {
  for (uint i = 0u; i < n; ++i) {
    float mx = sm[i * n];
    for (uint j = 1u; j < n; ++j) mx = sm[i * n + j] > mx ? sm[i * n + j] : mx;
    float sum = 0.0;
    for (uint j = 0u; j < n; ++j) {
      sm[i * n + j] = exp(sm[i * n + j] - mx);
      sum += sm[i * n + j];
    }
    for (uint j = 0u; j < n; ++j) sm[i * n + j] = sm[i * n + j] / sum + eps;
  }
  uint rounds = iters > 1u ? iters : 1u;
  for (uint it = 0u; it < rounds; ++it) {
    if (it > 0u) {
      for (uint i = 0u; i < n; ++i) {
        float sum = 0.0;
        for (uint j = 0u; j < n; ++j) sum += sm[i * n + j];
        for (uint j = 0u; j < n; ++j) sm[i * n + j] /= (sum + eps);
      }
    }
    for (uint j = 0u; j < n; ++j) {
      float sum = 0.0;
      for (uint i = 0u; i < n; ++i) sum += sm[i * n + j];
      for (uint i = 0u; i < n; ++i) sm[i * n + j] /= (sum + eps);
    }
  }
}

void main() {
  uint l = gl_LocalInvocationID.x;
  uint n = pc.n, C = pc.C;
  if (OP == 2u) {
    uint i = vn_gid();
    if (i >= pc.T * n * C) return;
    uint c = i % C, k = (i / C) % n, t = i / (n * C);
    float acc = ldf2(t * n + k) * ldf1(t * C + c);
    for (uint j = 0u; j < n; ++j) acc += ldf3((t * n + j) * n + k) * ldf0((t * n + j) * C + c);
    stf5(i, acc);
    return;
  }
  uint t = vn_group();
  if (t >= pc.T) return; // uniform across the workgroup
  if (OP == 3u) {
    if (l == 0u) {
      for (uint r = 0u; r < n * n; ++r) sm[r] = ldf0(t * n * n + r);
      sinkhorn_sm(n, pc.iters, pc.eps);
      for (uint r = 0u; r < n * n; ++r) stf5(t * n * n + r, sm[r]);
    }
    return;
  }
  uint nc = n * C;
  float ss = 0.0;
  for (uint i = l; i < nc; i += WG) {
    float v = ldf0(t * nc + i);
    ss += v * v;
  }
  ss = vn_sum(ss);
  float inv = 1.0 / sqrt(ss / float(nc) + pc.norm_eps);
  if (l == 0u) {
    if (OP == 0u) {
      uint mb = t * (n + 2u) * n;
      float s0 = ldf2(0u), s1 = ldf2(1u), s2 = ldf2(2u);
      for (uint j = 0u; j < n; ++j) {
        wsh[j] = vn_sigmoid(scratch.f[mb + j] * inv * s0 + ldf3(j)) + pc.eps;
        stf6(t * n + j, 2.0 * vn_sigmoid(scratch.f[mb + n + j] * inv * s1 + ldf3(n + j)));
      }
      for (uint r = 0u; r < n * n; ++r) {
        sm[r] = scratch.f[mb + 2u * n + r] * inv * s2 + ldf3(2u * n + r);
      }
      sinkhorn_sm(n, pc.iters, pc.eps);
      for (uint r = 0u; r < n * n; ++r) stf7(t * n * n + r, sm[r]);
    } else {
      float s0 = ldf2(0u);
      for (uint j = 0u; j < n; ++j) {
        wsh[j] = vn_sigmoid(scratch.f[t * n + j] * inv * s0 + ldf3(j)) + pc.eps;
      }
    }
  }
  barrier();
  for (uint c = l; c < C; c += WG) {
    float acc = 0.0;
    for (uint j = 0u; j < n; ++j) acc += wsh[j] * ldf0((t * n + j) * C + c);
    stf5(t * C + c, acc);
  }
}
