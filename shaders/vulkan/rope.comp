// rope: rotates the last `dims` channels of x[T, H, D] by position. One invocation per
// pass-through channel (c < first = D - dims) or per rotated pair.
// The angle pos * theta^(-2i/dims) is reduced to a fraction of a turn exactly: the host
// splits g_i = theta^(-2i/dims) / 2pi into g1 + g2 (12 significant bits each) + g3, and
// |pos| into 11-bit pieces, so every product below except pos*g3 is exact in f32 and
// fract() of it loses nothing. Long positions therefore keep their accuracy.
// Slot 0: x (DT0), slot 1: pos (i32), slot 5: result (DT5), consts: g1, g2, g3 per pair.
// SC0 = 1: interleaved pairs (2i, 2i+1); 0: pairs (i, i + dims/2). SC1 = 1: inverse, the
// rotation by the negative angle. YaRN changes only the frequencies, which the host computes.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

layout(push_constant) uniform PC {
  uint n; // T*H*(first + half)
  uint H, D, first, half_;
} pc;

// The angle of pair i at position p, as a fraction of a turn in [-0.5, 0.5].
float turns_of(int p, uint i) {
  uint ap = p < 0 ? 0u - uint(p) : uint(p);
  float pa[3];
  pa[0] = float(ap & 0x7ffu);
  pa[1] = float(ap & 0x3ff800u);
  pa[2] = float(ap & 0xffc00000u);
  float g1 = cf(3u * i), g2 = cf(3u * i + 1u), g3 = cf(3u * i + 2u);
  float t = 0.0;
  for (uint a = 0u; a < 3u; ++a) t += fract(pa[a] * g1) + fract(pa[a] * g2);
  t = fract(t + fract(float(ap) * g3));
  if (t > 0.5) t -= 1.0;
  return p < 0 ? -t : t;
}

void main() {
  uint j = vn_gid();
  if (j >= pc.n) return;
  uint per_row = pc.first + pc.half_;
  uint row = j / per_row, c = j % per_row;
  uint base = row * pc.D;
  if (c < pc.first) {
    stf5(base + c, ldf0(base + c));
    return;
  }
  uint i = c - pc.first;
  float ang = turns_of(ldi1(row / pc.H), i) * 6.283185307179586;
  float cs = cos(ang), sn = SC1 != 0u ? -sin(ang) : sin(ang);
  uint i1 = base + pc.first + (SC0 != 0u ? 2u * i : i);
  uint i2 = base + pc.first + (SC0 != 0u ? 2u * i + 1u : i + pc.half_);
  float x1 = ldf0(i1), x2 = ldf0(i2);
  stf5(i1, x1 * cs - x2 * sn);
  stf5(i2, x1 * sn + x2 * cs);
}
