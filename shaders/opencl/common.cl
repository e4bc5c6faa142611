/* Shared by every vnrt OpenCL kernel: dtype codes, (buffer, offset) tensor arguments, exact
 * f16/bf16 loads and round-to-nearest-even stores, and work-group reductions. OpenCL C 1.2;
 * no extension is required (f16 goes through vload_half/vstore_half). */

/* Results must agree with the CPU reference, which does not fuse multiply-adds. */
#pragma OPENCL FP_CONTRACT OFF

/* VN_PF(p): a hint that the cache line at p is read soon, or nothing. Built with -DVN_PREFETCH
 * (PoCL, cl_program.c) it is clang's __builtin_prefetch: on a CPU the decode products below
 * wait on their weight rows' loads, rows too short for the hardware prefetchers to run ahead
 * of (OpenCL's prefetch() is a no-op there). A prefetch never faults, so an address past a
 * buffer's end is harmless. */
#ifdef VN_PREFETCH
#define VN_PF(p) __builtin_prefetch(p)
#else
#define VN_PF(p) ((void)(p))
#endif

/* VN_X86_512: where clang compiles the kernels for an x86 CPU with AVX-512 F, VL and BW (it
 * predefines __AVX512F__ and the others for its target CPU, as PoCL's does for the host), the
 * decode steps use its 512-bit builtins for what OpenCL C cannot say in one instruction:
 * VN_CVTPH16, 16 f16 bit patterns (ushort16) to floats (vcvtph2ps, exact); VN_PERM16,
 * table[idx & 15] lane by lane (vpermps; OpenCL's shuffle() with a variable mask is compiled
 * element by element). -DVN_NO_X86_512 keeps the portable steps (the test that compares the
 * two). */
#if defined(__clang__) && defined(__AVX512F__) && defined(__AVX512VL__) && \
    defined(__AVX512BW__) && !defined(VN_NO_X86_512)
#define VN_X86_512 1
#endif
#ifdef VN_X86_512
#define VN_CVTPH16(h) \
  __builtin_ia32_vcvtph2ps512_mask(as_short16(h), (float16)0.0f, (ushort)0xFFFF, 4)
#define VN_PERM16(table, idx) __builtin_ia32_permvarsf512((table), (idx))
/* VN_SHORT32: 32 shorts, one 512-bit register (clang's vector extension; OpenCL C's vectors
 * stop at 16 lanes), with its halves VN_LO16 / VN_HI16 as short16. VN_E4M3_F16_BITS32(p): the
 * 32 e4m3 codes at p as e4m3_f16_bits gives them, widened in one step. */
typedef short VN_SHORT32 __attribute__((ext_vector_type(32)));
typedef char vn_char32_ __attribute__((ext_vector_type(32)));
#define VN_LO16(v) \
  __builtin_shufflevector((v), (v), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define VN_HI16(v)                                                                              \
  __builtin_shufflevector((v), (v), 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, \
                          31)
VN_SHORT32 vn_e4m3_f16_bits32(__global const uchar *p) {
  char16 lo = as_char16(vload16(0, p)), hi = as_char16(vload16(1, p));
  vn_char32_ c = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                         14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                                         28, 29, 30, 31);
  VN_SHORT32 sx = __builtin_convertvector(c, VN_SHORT32);
  return (sx & (short)0x17F) << (short)7;
}
#define VN_E4M3_F16_BITS32(p) vn_e4m3_f16_bits32(p)
#endif

/* The values of vnrt_dtype. */
#define DT_F32 1
#define DT_F16 2
#define DT_BF16 3
#define DT_I32 4
#define DT_E4M3 5 /* FP8 e4m3fn codes (one byte) */
#define DT_E8M0 6 /* power-of-two scales (one byte) */
#define DT_E2M1 7 /* FP4 codes, two per byte, the even index in the low nibble */

/* A tensor argument is a buffer and a byte offset into it (offsets are multiples of 256). */
#define TENSOR(n) __global uchar *n##_b, ulong n##_o
#define PTR(n) (n##_b + n##_o)

float bf16_to_f32(ushort u) { return as_float((uint)u << 16); }

ushort f32_to_bf16(float f) {
  uint x = as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (ushort)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (ushort)(x >> 16);
}

/* Element i of a tensor of dtype dt, widened exactly to float. */
float ld(__global const uchar *p, int dt, long i) {
  switch (dt) {
    case DT_F16: return vload_half((size_t)i, (__global const half *)p);
    case DT_BF16: return bf16_to_f32(((__global const ushort *)p)[i]);
    case DT_I32: return (float)((__global const int *)p)[i];
    default: return ((__global const float *)p)[i];
  }
}

/* Stores v as dtype dt, rounding to nearest even for f16/bf16 (i32 truncates). */
void st(__global uchar *p, int dt, long i, float v) {
  switch (dt) {
    case DT_F16: vstore_half_rte(v, (size_t)i, (__global half *)p); break;
    case DT_BF16: ((__global ushort *)p)[i] = f32_to_bf16(v); break;
    case DT_I32: ((__global int *)p)[i] = convert_int_rtz(v); break;
    default: ((__global float *)p)[i] = v; break;
  }
}

/* The sum of a float8's lanes, pairwise. */
float hsum8(float8 v) { return ((v.s0 + v.s1) + (v.s2 + v.s3)) + ((v.s4 + v.s5) + (v.s6 + v.s7)); }

/* Elements [i, i + 16) of a float tensor of dtype dt, widened exactly (ld on 16 at once). */
float16 ld16(__global const uchar *p, int dt, long i) {
  switch (dt) {
    case DT_F16: return vload_half16(0, (__global const half *)p + i);
    case DT_BF16:
      return as_float16(convert_uint16(vload16(0, (__global const ushort *)p + i)) << 16);
    default: return vload16(0, (__global const float *)p + i);
  }
}

/* Stores 16 values at [i, i + 16) as st does (round to nearest even for f16/bf16). */
void st16(__global uchar *p, int dt, long i, float16 v) {
  switch (dt) {
    case DT_F16: vstore_half16_rte(v, 0, (__global half *)p + i); break;
    case DT_BF16: {
      uint16 x = as_uint16(v);
      uint16 r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
      r = select(r, (x >> 16) | 0x40u, (x & 0x7fffffffu) > 0x7f800000u);
      vstore16(convert_ushort16(r), 0, (__global ushort *)p + i);
      break;
    }
    default: vstore16(v, 0, (__global float *)p + i); break;
  }
}

/* ---- Quantized weights (docs/ops.md, "Quantized weights"): exact decoders built from bits,
 * so no math library call can flush or round them. Codes are read as uchar. */

/* 2^(code - 127); code 0 is 2^-127 (a float subnormal, built from its bits), 255 NaN. */
float e8m0_to_f32(uint code) {
  if (code == 255u) return as_float(0x7fc00000u);
  if (code == 0u) return as_float(0x00400000u);
  return as_float(code << 23);
}

/* e4m3fn: sign, 4-bit exponent (bias 7), 3-bit mantissa; exponent 0 is subnormal (m·2^-9);
 * 0x7F and 0xFF are NaN (no infinities). Built without f32 subnormals: a normal code's 7 low
 * bits placed at the top of an f32's exponent and mantissa, plus 120 on the exponent, are its
 * value; a subnormal code's mantissa m is converted and scaled by 2^-9 (exact). An f32
 * subnormal operand would cost a microcode assist per instruction on x86 CPUs (PoCL), and
 * FP8/FP4 weights hold subnormal codes in nearly every vector. */
float e4m3_to_f32(uint code) {
  uint mag = code & 0x7Fu;
  float v = mag < 8u ? (float)mag * 0x1p-9f : as_float((mag << 20) + (120u << 23));
  v = mag == 0x7Fu ? as_float(0x7fc00000u) : v;
  return as_float(as_uint(v) | ((code & 0x80u) << 24));
}

/* 16 e4m3 codes times 2^-8, by way of f16: a code's sign, exponent and mantissa placed in an
 * f16 (exponent bias 15 for e4m3's 7) read as the code's value times 2^-8, subnormal codes as
 * f16 subnormals; the f16 -> f32 conversion (vload_half) is exact and, on x86, a hardware
 * conversion that takes f16 subnormals at full speed. NaN codes are patched in after. */
/* The f16 bits of e4m3 codes sign-extended to 16 bits (sx): sign-extended, a code is 0xFF80 |
 * mag when negative, so & 0x17F leaves the sign at bit 8 next to the 7 magnitude bits, and << 7
 * puts both in their f16 places (3 operations where masking sign and magnitude apart took 6).
 * A NaN code (mag 0x7F) becomes the finite f16 0x3F80 / 0xBF80: callers patch NaN in or test
 * for it (e4m3_to_f32x16_div256's select). */
ushort16 e4m3_f16_bits(short16 sx) { return as_ushort16((sx & (short)0x17F) << (short)7); }

float16 e4m3_to_f32x16_div256(uchar16 code) {
  short16 sx = convert_short16(as_char16(code));
  ushort16 h = e4m3_f16_bits(sx);
  h = select(h, (ushort16)0x7E00u, (sx & (short)0x7F) == (short)0x7F);
  return vload_half16(0, (__private const half *)&h);
}

/* e4m3_to_f32 on 16 codes at once. */
float16 e4m3_to_f32x16(uchar16 code) { return e4m3_to_f32x16_div256(code) * 256.0f; }

/* e2m1 by nibble: the sign is bit 3, magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
__constant float k_e2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* 16 e2m1 nibbles (one per lane, in bits 0-3) decoded by bits: magnitude indexes 2-7 placed at
 * the top of an f32's exponent and mantissa, plus 126 on the exponent, are their values; 0 and
 * 1 (0 and 0.5) are the index times 0.5. No f32 subnormal is formed (see e4m3_to_f32). */
float16 e2m1_nibbles_to_f32x16(uint16 c) {
  uint16 mag = c & 7u;
  float16 v = select(as_float16((mag << 22) + (126u << 23)), convert_float16(mag) * 0.5f,
                     mag < 2u);
  return as_float16(as_uint16(v) | ((c & 8u) << 28));
}

/* 16 e2m1 nibbles (bits 0-3 of each lane) times 2^-14, by way of f16 as e4m3_to_f32x16_div256:
 * the magnitude's exponent and mantissa bits placed at f16's (bias 15 for e2m1's 1), index 1
 * (0.5) an f16 subnormal. */
float16 e2m1_nibbles_to_f32x16_div16384(ushort16 c) {
  ushort16 h = ((c & (ushort)7u) << (ushort)9) | ((c & (ushort)8u) << (ushort)12);
  return vload_half16(0, (__private const half *)&h);
}

/* The even (low nibble) and odd (high nibble) codes of 16 bytes, one byte per ushort lane, as
 * e2m1_nibbles_to_f32x16_div16384 of each: a nibble shifted so that its sign lands on bit 15,
 * then shifted right arithmetically by 3, leaves the sign on bit 15 and the magnitude on bits
 * 9-11 (& 0x8E00 clears the sign's copies between): 3 operations a nibble instead of 5. */
ushort16 e2m1_lo_bits(ushort16 c) {
  return as_ushort16(as_short16(c << (ushort)12) >> (short)3) & (ushort)0x8E00u;
}
ushort16 e2m1_hi_bits(ushort16 c) {
  return as_ushort16(as_short16(c << (ushort)8) >> (short)3) & (ushort)0x8E00u;
}
float16 e2m1_lo_div16384(ushort16 c) {
  ushort16 h = e2m1_lo_bits(c);
  return vload_half16(0, (__private const half *)&h);
}
float16 e2m1_hi_div16384(ushort16 c) {
  ushort16 h = e2m1_hi_bits(c);
  return vload_half16(0, (__private const half *)&h);
}

/* acc·2^e·(the e8m0 scale code): one product by 2^(code - 127 + e) where that is a normal
 * float (equal to the two exact products by powers of two), else the two products. */
float16 times_pow2_e8m0(float16 acc, int e, uint code) {
  if (code >= 1u && code + (uint)e <= 254u) return acc * as_float((code + (uint)e) << 23);
  return (acc * as_float((uint)(127 + e) << 23)) * e8m0_to_f32(code);
}

/* t + a·2^e·(the e8m0 scale code) on 8 lanes: one fused product by 2^(code - 127 + e) where
 * that is a normal float (code 0 included: 2^-127 times 2^e for e >= 1), else the two exact
 * products of times_pow2_e8m0. */
float8 fma_pow2_e8m0_8(float8 a, int e, uint code, float8 t) {
  if (code + (uint)e <= 254u) return fma(a, (float8)as_float((code + (uint)e) << 23), t);
  return t + (a * as_float((uint)(127 + e) << 23)) * e8m0_to_f32(code);
}

/* 16 e2m1 codes from 8 bytes (even index in each byte's low nibble) at once. */
float16 e2m1_to_f32x16(uchar8 b) {
  uint8 lo = convert_uint8(b) & 0xFu, hi = convert_uint8(b) >> 4;
  uint16 c = (uint16)(lo.s0, hi.s0, lo.s1, hi.s1, lo.s2, hi.s2, lo.s3, hi.s3, lo.s4, hi.s4,
                      lo.s5, hi.s5, lo.s6, hi.s6, lo.s7, hi.s7);
  return e2m1_nibbles_to_f32x16(c);
}

/* Element i (logical) of a weight of dtype dt, decoded but not scaled: codes for e4m3/e2m1,
 * else the float load. */
float ld_code(__global const uchar *p, int dt, long i) {
  if (dt == DT_E4M3) return e4m3_to_f32(p[i]);
  if (dt == DT_E2M1) {
    uint b = p[i >> 1];
    return k_e2m1[(i & 1) ? (b >> 4) : (b & 0xFu)];
  }
  return ld(p, dt, i);
}

int is_codes(int dt) { return dt == DT_E4M3 || dt == DT_E2M1; }

int ldi(__global const uchar *p, long i) { return ((__global const int *)p)[i]; }

float sigmoid_f(float x) { return 1.0f / (1.0f + exp(-x)); }

float softplus_f(float x) {
  if (x > 20.0f) return x;
  if (x < -20.0f) return exp(x);
  return log(1.0f + exp(x));
}

/* Work-group reductions over red[0, wg) (wg a power of two). Every work-item of the group
 * must call them; all get the result. red is reused, so calls may follow each other. */
float wg_sum(__local float *red, float v) {
  int lid = get_local_id(0), wg = get_local_size(0);
  barrier(CLK_LOCAL_MEM_FENCE);
  red[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = wg / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] += red[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  return red[0];
}

float wg_max(__local float *red, float v) {
  int lid = get_local_id(0), wg = get_local_size(0);
  barrier(CLK_LOCAL_MEM_FENCE);
  red[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = wg / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  return red[0];
}

int wg_min_i(__local int *red, int v) {
  int lid = get_local_id(0), wg = get_local_size(0);
  barrier(CLK_LOCAL_MEM_FENCE);
  red[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = wg / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] = min(red[lid], red[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  return red[0];
}

/* moe_ffn's activation between its passes (docs/ops.md "moe_ffn"): with limit > 0 the gate is
 * clipped above at limit and the up value to [-limit, limit], then silu(g) * u. */
float moe_act(float g, float u, float limit) {
  if (limit > 0.0f) {
    g = g < limit ? g : limit;
    u = u < -limit ? -limit : (u > limit ? limit : u);
  }
  return g / (1.0f + exp(-g)) * u;
}
