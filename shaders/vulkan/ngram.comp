// ngram_hash: idx[t, (n-2)K + h] = (XOR_{j<n} int64(tok(t-j)) * mult[j]) floor-mod primes[c],
// with wrapping 64-bit multiplies; tok(t-j) is ids[t-j], or hist[N-1+(t-j)] before the
// sequence. One invocation per token. VN_I64: native 64-bit integers; otherwise uint32
// pairs (umulExtended) and a bitwise long division, so no optional feature is needed.
// Slots: 0 ids (i32), 1 hist (i32), 5 idx (i32); consts: mult as (lo, hi) pairs [N],
// then primes [cols].
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"
#if VN_I64
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#endif

layout(push_constant) uniform PC {
  uint T, N, K, cols;
} pc;

int tok(int tj) { return tj >= 0 ? ldi0(uint(tj)) : ldi1(uint(int(pc.N) - 1 + tj)); }

#if VN_I64
uint floor_mod(uint64_t mix, uint p) {
  bool neg = int64_t(mix) < 0l;
  uint64_t mag = neg ? (~mix + 1ul) : mix;
  uint r = uint(mag % uint64_t(p));
  return (neg && r != 0u) ? p - r : r;
}
#else
// (a * b) mod 2^64 on (lo, hi) pairs.
uvec2 mul64(uvec2 a, uvec2 b) {
  uint hi, lo;
  umulExtended(a.x, b.x, hi, lo);
  hi += a.x * b.y + a.y * b.x;
  return uvec2(lo, hi);
}

// The floor modulo of a two's complement 64-bit value by p in [1, 2^31).
uint floor_mod(uvec2 v, uint p) {
  bool neg = (v.y & 0x80000000u) != 0u;
  if (neg) v = uvec2(~v.x + 1u, ~v.y + (v.x == 0u ? 1u : 0u));
  uint r = v.y % p;
  for (int b = 31; b >= 0; --b) {
    r = (r << 1) | ((v.x >> uint(b)) & 1u);
    if (r >= p) r -= p;
  }
  return (neg && r != 0u) ? p - r : r;
}
#endif

void main() {
  uint t = vn_gid();
  if (t >= pc.T) return;
  uint pbase = 2u * pc.N;
#if VN_I64
  uint64_t mix = 0ul;
#else
  uvec2 mix = uvec2(0u);
#endif
  for (uint n = 1u; n <= pc.N; ++n) {
    // Order n's mix is order n-1's XOR one more term (j = n-1).
    int tk = tok(int(t) - int(n - 1u));
    uvec2 m = uvec2(consts.u[2u * (n - 1u)], consts.u[2u * (n - 1u) + 1u]);
#if VN_I64
    mix ^= uint64_t(int64_t(tk)) * ((uint64_t(m.y) << 32) | uint64_t(m.x));
#else
    uvec2 prod = mul64(uvec2(uint(tk), tk < 0 ? 0xffffffffu : 0u), m);
    mix ^= prod;
#endif
    if (n < 2u) continue;
    for (uint h = 0u; h < pc.K; ++h) {
      uint c = (n - 2u) * pc.K + h;
      sti5(t * pc.cols + c, int(floor_mod(mix, consts.u[pbase + c])));
    }
  }
}
