// Elementwise unary ops of docs/ops.md (activations, scale, clamp): out[i] = f(x[i]).
// OP (spec constant) picks f; codes match vk_ops.c (U_*). Slot 0: x, slot 5: result.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

layout(push_constant) uniform PC {
  uint n;
  uint has_min, has_max;
  float lo, hi; // clamp bounds, or s for scale (lo)
} pc;

#define U_NEG 1u
#define U_EXP 2u
#define U_SQRT 3u
#define U_RSQRT 4u
#define U_TANH 5u
#define U_RELU 6u
#define U_SIGMOID 7u
#define U_SILU 8u
#define U_GELU 9u
#define U_SOFTPLUS 10u
#define U_SQRT_SOFTPLUS 11u
#define U_CLAMP 12u
#define U_SCALE 13u

void main() {
  uint i = vn_gid();
  if (i >= pc.n) return;
  float x = ldf0(i);
  float r = x;
  if (OP == U_NEG) r = -x;
  else if (OP == U_EXP) r = exp(x);
  else if (OP == U_SQRT) r = sqrt(x);
  else if (OP == U_RSQRT) r = 1.0 / sqrt(x);
  else if (OP == U_TANH) r = vn_tanh(x);
  else if (OP == U_RELU) r = x > 0.0 ? x : 0.0;
  else if (OP == U_SIGMOID) r = vn_sigmoid(x);
  else if (OP == U_SILU) r = x * vn_sigmoid(x);
  else if (OP == U_GELU) {
    const float k = 0.7978845608028654;
    r = 0.5 * x * (1.0 + vn_tanh(k * (x + 0.044715 * x * x * x)));
  } else if (OP == U_SOFTPLUS) r = vn_softplus(x);
  else if (OP == U_SQRT_SOFTPLUS) r = sqrt(vn_softplus(x));
  else if (OP == U_CLAMP) {
    if (pc.has_min != 0u && x < pc.lo) r = pc.lo;
    if (pc.has_max != 0u && r > pc.hi) r = pc.hi;
  } else if (OP == U_SCALE) r = x * pc.lo;
  stf5(i, r);
}
