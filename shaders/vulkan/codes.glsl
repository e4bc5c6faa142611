// The decoders of the quantized weight codes (docs/ops.md, "Quantized weights"), shared by
// quant.comp and gemv.comp: e4m3 and e2m1 codes and e8m0 scales to f32, exactly (core/quant.c
// states the codecs), in integer arithmetic; and vn_x4, the activation loads of both.

#define DT_E4M3 5u
#define DT_E8M0 6u
#define DT_E2M1 7u

float vn_e4m3(uint c) {
  uint s = (c & 0x80u) << 24;
  uint em = c & 0x7fu;
  if (em == 0x7fu) return uintBitsToFloat(s | 0x7fc00000u);
  if (em < 8u) {
    float f = float(em) * 0.001953125; // subnormal: m * 2^-9
    return s != 0u ? -f : f;
  }
  // exponent e = em >> 3 (bias 7) -> f32 field e + 120; the 3 mantissa bits on top.
  return uintBitsToFloat(s | ((em + (120u << 3)) << 20));
}

// e2m1: twice the magnitude of code c & 7 is nibble c & 7 of this constant table (0 1 2 3 4
// 6 8 12); bit 3 is the sign. A table in a register: llvmpipe runs an indexed const array
// per lane through memory, 10x slower here.
#define E2M1_X2 0xC8643210u

float vn_e2m1(uint c) {
  float mag = float((E2M1_X2 >> ((c & 7u) << 2)) & 0xfu) * 0.5;
  return uintBitsToFloat(floatBitsToUint(mag) | ((c & 8u) << 28));
}

float vn_e8m0(uint c) {
  if (c == 255u) return uintBitsToFloat(0x7fc00000u);
  if (c == 0u) return ldexp(1.0, -127); // 2^-127, an f32 subnormal
  return uintBitsToFloat(c << 23);
}

// Four e4m3 codes of a word, without branches: a normal code is an f32 with the exponent
// rebased (+120); a subnormal one (exponent field 0) is read as exponent 1 less 2^-6.
vec4 vn_e4m3x4(uint wd) {
  uvec4 c = (uvec4(wd) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu;
  uvec4 em = c & 0x7fu;
  vec4 nrm = uintBitsToFloat((em << 20) + (120u << 23));
  vec4 sub = uintBitsToFloat((em << 20) + (121u << 23)) - 0.015625;
  vec4 mag = mix(nrm, sub, lessThan(em, uvec4(8u)));
  mag = mix(mag, vec4(uintBitsToFloat(0x7fc00000u)), equal(em, uvec4(0x7fu)));
  return uintBitsToFloat(floatBitsToUint(mag) | ((c & 0x80u) << 24));
}

// sum_i dec(code i of wd) x[i] times 2^-8, NaN codes read as finite (vn_e4m3_nan4 flags them):
// code s eeee mmm is the f16 s 0eeee mmm 0000000, whose exponent bias is 8 more (subnormal codes
// become f16 subnormals, exactly), and unpackHalf2x16 widens a pair (F16C's vcvtph2ps on
// llvmpipe). Codes 0 and 2 are moved into place by shifts left (the sign one further), codes 1
// and 3 by a shift right by one (their signs are in place already): about half the integer
// work of vn_e4m3x4 and two thirds of placing each pair's bytes first.
float vn_e4m3_dot_2m8(uint wd, vec4 x) {
  vec2 a = unpackHalf2x16(((wd << 7) & 0x3f803f80u) | ((wd << 8) & 0x80008000u));
  vec2 b = unpackHalf2x16(((wd >> 1) & 0x3f803f80u) | (wd & 0x80008000u));
  return (a.x * x.x + b.x * x.y) + (a.y * x.z + b.y * x.w);
}

// Bit 7 of a byte of the result is set where that byte of some word of q is an e4m3 NaN code
// (eeee mmm all ones: adding 1 to the low 7 bits carries into bit 7, never further).
uint vn_e4m3_nan4(uvec4 q) {
  uvec4 t = (q & 0x7f7f7f7fu) + 0x01010101u;
  return ((t.x | t.y) | (t.z | t.w)) & 0x80808080u;
}

// sum_i dec(code i of wd) x[i] over the 8 codes of wd (codes 0..3 against xa, 4..7 against
// xb) times 2^-14, through f16 pairs (codes i, i + 4): code s ee m is the f16 s 000 eem 0⁹
// (bias 15 for e2m1's 1; subnormal m = 1 is the f16 subnormal 2^-15). Nibble i's eem goes
// from bit 4i to 9 and its sign from 4i + 3 to 15 (and the pair's other code 16 higher): two
// shifts and a merge per pair.
float vn_e2m1_dot_2m14(uint wd, vec4 xa, vec4 xb) {
  vec2 p0 = unpackHalf2x16(((wd << 9) & 0x0e000e00u) | ((wd << 12) & 0x80008000u));
  vec2 p1 = unpackHalf2x16(((wd << 5) & 0x0e000e00u) | ((wd << 8) & 0x80008000u));
  vec2 p2 = unpackHalf2x16(((wd << 1) & 0x0e000e00u) | ((wd << 4) & 0x80008000u));
  vec2 p3 = unpackHalf2x16(((wd >> 3) & 0x0e000e00u) | (wd & 0x80008000u));
  return (dot(p0, vec2(xa.x, xb.x)) + dot(p1, vec2(xa.y, xb.y))) +
         (dot(p2, vec2(xa.z, xb.z)) + dot(p3, vec2(xa.w, xb.w)));
}

// The four e2m1 codes in the low 16 bits of wd (vn_e2m1 four at a time).
vec4 vn_e2m1x4(uint wd) {
  uvec4 c = (uvec4(wd) >> uvec4(0u, 4u, 8u, 12u)) & 0xfu;
  vec4 mag = vec4((uvec4(E2M1_X2) >> ((c & 7u) << 2)) & 0xfu) * 0.5;
  return uintBitsToFloat(floatBitsToUint(mag) | ((c & 8u) << 28));
}

// x values i .. i+3, i a multiple of 4: the scratch (f32) when SC0 bit 0 is set, else slot 0
// (DT0): one vec4 of f32, or two words of f16/bf16 (widening is exact).
layout(set = 0, binding = 0, std430) readonly buffer VnX4 { vec4 v[]; } x4f;
layout(set = 0, binding = 0, std430) readonly buffer VnX4h { uvec2 v[]; } x4h;
layout(set = 0, binding = 8, std430) readonly buffer VnS4 { vec4 v[]; } s4;
vec4 vn_x4(uint i) {
  if ((SC0 & 1u) != 0u) return s4.v[i >> 2];
  if (DT0 == DT_F32) return x4f.v[i >> 2];
  uvec2 u = x4h.v[i >> 2];
  if (DT0 == DT_BF16) {
    return uintBitsToFloat(uvec4(u.x << 16, u.x & 0xffff0000u, u.y << 16, u.y & 0xffff0000u));
  }
  return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
}
