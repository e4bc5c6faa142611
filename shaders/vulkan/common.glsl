// Shared by every vnrt compute shader: the one binding layout, dtype codes, exact f16/bf16
// conversions, typed loads/stores per binding and the run-time error record.
//
// Variant switches (set with -D by the build, chosen at run time by device features):
//   VN_S16  16-bit tensors through 16-bit storage (uint16_t); 0: packed in uint words, stores
//           by atomic and/or on the word so that neighbouring halves never race.
//   VN_SG   workgroup reductions through subgroup arithmetic; 0: shared-memory trees.
//   VN_I64  native 64-bit integers (ngram_hash); 0: uint32 pairs.
// Every variant computes in f32 and rounds f16/bf16 to nearest even in integer arithmetic, so
// results do not depend on a driver's conversion rounding.

#ifndef VN_S16
#define VN_S16 0
#endif
#ifndef VN_SG
#define VN_SG 0
#endif
#ifndef VN_I64
#define VN_I64 0
#endif

#if VN_S16
#extension GL_EXT_shader_16bit_storage : require
#endif

// Dtype codes: the values of vnrt_dtype.
#define DT_F32 1u
#define DT_F16 2u
#define DT_BF16 3u
#define DT_I32 4u

// Specialization constants: 0..7 the dtypes of tensor slots 0..7, 8 the op/mode, 9..11 flags
// whose meaning each shader documents.
layout(constant_id = 0) const uint DT0 = 1u;
layout(constant_id = 1) const uint DT1 = 1u;
layout(constant_id = 2) const uint DT2 = 1u;
layout(constant_id = 3) const uint DT3 = 1u;
layout(constant_id = 4) const uint DT4 = 1u;
layout(constant_id = 5) const uint DT5 = 1u;
layout(constant_id = 6) const uint DT6 = 1u;
layout(constant_id = 7) const uint DT7 = 1u;
layout(constant_id = 8) const uint OP = 0u;
layout(constant_id = 9) const uint SC0 = 0u;
layout(constant_id = 10) const uint SC1 = 0u;
layout(constant_id = 11) const uint SC2 = 0u;

// ---- Exact conversions ---------------------------------------------------------------------

bool vn_isnan(float v) { return (floatBitsToUint(v) & 0x7fffffffu) > 0x7f800000u; }

float vn_h2f(uint h) {
  uint s = (h & 0x8000u) << 16;
  uint e = (h >> 10) & 0x1fu;
  uint m = h & 0x3ffu;
  if (e == 0u) {
    float f = float(m) * 5.9604644775390625e-8;  // subnormal: m * 2^-24, exact
    return s != 0u ? -f : f;
  }
  if (e == 31u) return uintBitsToFloat(s | 0x7f800000u | (m << 13));
  return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));
}

// f32 -> f16 bits, round to nearest even (the same algorithm as vnrt_f32_to_f16).
uint vn_f2h(float v) {
  uint x = floatBitsToUint(v);
  uint sign = (x >> 16) & 0x8000u;
  uint e8 = (x >> 23) & 0xffu;
  uint mant = x & 0x7fffffu;
  if (e8 == 0xffu) return sign | 0x7c00u | (mant != 0u ? (0x200u | (mant >> 13)) : 0u);
  int e = int(e8) - 112;
  if (e >= 31) return sign | 0x7c00u;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000u;
    uint shift = uint(14 - e);
    uint hf = mant >> shift;
    uint rem = mant & ((1u << shift) - 1u);
    uint mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (hf & 1u) != 0u)) hf += 1u;
    return sign | hf;
  }
  uint hf = sign | (uint(e) << 10) | (mant >> 13);
  uint rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (hf & 1u) != 0u)) hf += 1u;
  return hf;
}

float vn_bf2f(uint b) { return uintBitsToFloat(b << 16); }

uint vn_f2bf(float v) {
  uint x = floatBitsToUint(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) return ((x >> 16) | 0x40u) & 0xffffu;
  x += 0x7fffu + ((x >> 16) & 1u);
  return x >> 16;
}

// float -> i32: truncation toward zero, saturating; NaN -> 0 (cast's rule).
int vn_f2i(float v) {
  if (vn_isnan(v)) return 0;
  if (v >= 2147483648.0) return 0x7fffffff;
  if (v <= -2147483648.0) return int(0x80000000u);
  return int(v);
}

// i32 -> f32, round to nearest even, in integer arithmetic.
float vn_i2f(int v) {
  uint u = v < 0 ? 0u - uint(v) : uint(v);
  int shift = max(findMSB(u) - 23, 0);
  uint m = u >> uint(shift);
  if (shift > 0) {
    uint rem = u & ((1u << uint(shift)) - 1u);
    uint mid = 1u << uint(shift - 1);
    if (rem > mid || (rem == mid && (m & 1u) != 0u)) m += 1u;
  }
  float f = ldexp(float(m), shift);
  return v < 0 ? -f : f;
}

// i32 -> f32 rounded to odd: a second rounding to f16/bf16 is then correctly rounded.
float vn_i2f_odd(int v) {
  uint u = v < 0 ? 0u - uint(v) : uint(v);
  int shift = max(findMSB(u) - 23, 0);
  uint m = u >> uint(shift);
  if (shift > 0 && (u & ((1u << uint(shift)) - 1u)) != 0u) m |= 1u;
  float f = ldexp(float(m), shift);
  return v < 0 ? -f : f;
}

// ---- Bindings ------------------------------------------------------------------------------
// Slots 0..4: inputs (read only); 5..7: outputs; 8: scratch (f32 words); 9: this node's error
// record; 10: constants the host prepared at compile time (u32 words).

#if VN_S16
#define VN_H16(n, Q) layout(set = 0, binding = n, std430) Q buffer VnH##n { uint16_t h[]; } h##n;
#define VN_LD16(n, i) uint(h##n.h[i])
#else
#define VN_H16(n, Q)
#define VN_LD16(n, i) ((b##n.w[(i) >> 1] >> (((i) & 1u) << 4)) & 0xffffu)
#endif

// Loads of slot n: ldw (raw 32-bit word), ld16 (raw 16-bit), ldi (i32), ldf (any dtype as f32).
#define VN_LOADS(n)                                                       \
  uint ldw##n(uint i) { return b##n.w[i]; }                                \
  uint ld16_##n(uint i) { return VN_LD16(n, i); }                           \
  int ldi##n(uint i) { return int(b##n.w[i]); }                            \
  float ldf##n(uint i) {                                                   \
    if (DT##n == DT_F32) return uintBitsToFloat(b##n.w[i]);               \
    if (DT##n == DT_I32) return float(int(b##n.w[i]));                    \
    if (DT##n == DT_F16) return vn_h2f(ld16_##n(i));                        \
    return vn_bf2f(ld16_##n(i));                                            \
  }

#if VN_S16
#define VN_ST16(n) \
  void st16_##n(uint i, uint bits) { h##n.h[i] = uint16_t(bits); }
#else
#define VN_ST16(n)                                                        \
  void st16_##n(uint i, uint bits) {                                        \
    uint sh = (i & 1u) << 4;                                               \
    atomicAnd(b##n.w[i >> 1], ~(0xffffu << sh));                          \
    atomicOr(b##n.w[i >> 1], (bits & 0xffffu) << sh);                     \
  }
#endif

#define VN_STORES(n)                                                      \
  VN_ST16(n)                                                              \
  void stw##n(uint i, uint v) { b##n.w[i] = v; }                           \
  void sti##n(uint i, int v) { b##n.w[i] = uint(v); }                      \
  void stf##n(uint i, float v) {                                           \
    if (DT##n == DT_F32) { b##n.w[i] = floatBitsToUint(v); return; }      \
    if (DT##n == DT_I32) { b##n.w[i] = uint(vn_f2i(v)); return; }         \
    st16_##n(i, DT##n == DT_F16 ? vn_f2h(v) : vn_f2bf(v));                 \
  }

#define VN_IN(n)                                                                        \
  layout(set = 0, binding = n, std430) readonly buffer VnW##n { uint w[]; } b##n;       \
  VN_H16(n, readonly)                                                                   \
  VN_LOADS(n)

#define VN_OUT(n)                                                                       \
  layout(set = 0, binding = n, std430) buffer VnW##n { uint w[]; } b##n;                \
  VN_H16(n, )                                                                           \
  VN_LOADS(n)                                                                           \
  VN_STORES(n)

VN_IN(0)
VN_IN(1)
VN_IN(2)
VN_IN(3)
VN_IN(4)
VN_OUT(5)
VN_OUT(6)
VN_OUT(7)

layout(set = 0, binding = 8, std430) buffer VnScratch { float f[]; } scratch;
layout(set = 0, binding = 9, std430) buffer VnErr { uint e[]; } vn_err;
layout(set = 0, binding = 10, std430) readonly buffer VnConst { uint u[]; } consts;

float cf(uint i) { return uintBitsToFloat(consts.u[i]); }

// Error kinds the host turns into words: keep in step with vk_exec.c.
#define VN_ERR_ID 1u
#define VN_ERR_ROW 2u
#define VN_ERR_EXPERT 3u
#define VN_ERR_TOKEN 4u
#define VN_ERR_ROWS 5u   // value: first row, bound: rows, pos: how many rows
#define VN_ERR_KV_LEN 6u // value: kv_len, bound: rows (inclusive)

// Records the first run-time index error of this node; the caller clamps and carries on, so
// no memory outside a tensor is read.
void vn_report(uint kind, int value, uint bound, uint pos) {
  if (atomicCompSwap(vn_err.e[0], 0u, 1u) == 0u) {
    vn_err.e[1] = kind;
    vn_err.e[2] = uint(value);
    vn_err.e[3] = bound;
    vn_err.e[4] = pos;
  }
}

// The linear index of this workgroup in a grid folded into x and y (x is capped at the
// device's maxComputeWorkGroupCount[0]).
uint vn_group() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// One-dimensional shaders define WG (their workgroup size, an int literal) before including
// this file, which declares it here: gl_WorkGroupSize is not usable in functions that precede
// the declaration.
#ifdef WG
layout(local_size_x = WG) in;
uint vn_gid() { return vn_group() * uint(WG) + gl_LocalInvocationID.x; }
#endif

// Numerics shared by several shaders; the formulas are docs/ops.md's, in f32.
float vn_sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }
float vn_softplus(float x) {
  if (x > 20.0) return x;
  if (x < -20.0) return exp(x);
  return log(1.0 + exp(x));
}
// tanh for any x: a driver's tanh may form inf/inf for large |x|; |x| >= 9 is +-1 in f32.
float vn_tanh(float x) { return tanh(clamp(x, -9.0, 9.0)); }
