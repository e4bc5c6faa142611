// Decode-sized products on CPU devices (lavapipe; docs/bench.md, "Vulkan decode on lavapipe"):
// linear and grouped_linear with M <= 4 rows of x, moe_ffn's two passes and the mHC mixing
// products, for weights of e4m3/e2m1 codes with e8m0 block scales (codes.glsl) or plain
// f32/f16/bf16 (slot 3, DT3; scales in slot 4 when SC2 = 1). On llvmpipe an invocation is a
// SIMD lane and every storage-buffer load a loop over the lanes with two branches each, while
// a texel fetch is a branch-free gather: the weights are read through their texel view
// (binding 11, 16-byte texels), and the scales and x through theirs where the host could make
// one (SC0 bits 3, 4), else as words (64-bit with VN_I64). A workgroup is one 8-lane vector
// owning RN weight rows; its lanes split each row along k in chunks of CV values (CV = 32 for
// e2m1, else 16), a chunk of x is loaded once and serves the RN rows, codes are decoded in
// registers, and the lanes are added up at the end (subgroupAdd with VN_SG, which the host
// runs only where a subgroup holds the workgroup; else one shared-memory pass). The host uses
// it only when every row length is a multiple of CV (and, for codes, every block's columns
// b1), so that chunks never straddle a block or a row.
//
// W[r][c] = dec(code[r L + c]) * 2^(scale[(r / b0) sc + c / b1] - 127) for a weight of rows of
// L codes (per expert for moe_ffn); a plain weight is read as it is.
//
//   OP 0 linear: y[m][n] = sum_k x[m][k] W[n][k], m < SC1 (1..4) into slot 5; x = slot 0 (DT0)
//        or the scratch at x_off (SC0 bit 0). grouped_linear: row n reads group n / gn of x,
//        whose rows are xs apart (gn = 0: no groups; the host keeps gn a multiple of RN).
//        push: M N K x_off b0 b1 sc gn xs.
//   OP 1 moe_ffn gate/up: h[p][f] = swiglu(gate_e x[t], up_e x[t], limit) (times weights[p]
//        when SC0 bit 2, act_quant) into the scratch at h_off, p = t k + i, e = experts[p]
//        (slot 1), weights slot 2; x = slot 0 or the scratch at x_off (SC0 bit 0).
//   OP 2 moe_ffn down: y[t][c] = sum_i a_i <w_down[e][c][:], h[p][:]>, a_i = weights[p] (1
//        when SC0 bit 2: the weight is already in h); h from the scratch (SC0 bit 0 set).
//        OP 1/2 push (quant.comp's layout): T C F k E limit x_off h_off b0 b1 sr sc.
// SC0 bit 1: the RN rows of a workgroup share their scale row (b0 a multiple of RN); bit 3: the
// scales are read through their byte texel view (binding 12); bit 4: x through its texel view
// (binding 13); bit 5: b0 and b1 are powers of two, pushed as their log2; bit 6: the e4m3
// weight holds no NaN code, no test (the host runs this variant only while it knows so); bit
// 7: the scales of two rows a fetch (rows_dot_rpairs); bit 8 (with bits 0 and 4): x in the
// scratch is bf16 (load_x).
// An expert outside its range is reported and clamped, as quant.comp does.
#version 450
#extension GL_GOOGLE_include_directive : require
#if VN_I64
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#endif
#if VN_SG
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#define WG 8
#include "common.glsl"
#include "codes.glsl"

#define RN 16u  // weight rows per workgroup (GV_RN in vk_ops_quant.c)
#define MMAX 4u // OP 0: rows of x
#define CV (DT3 == DT_E2M1 ? 32u : 16u)

layout(push_constant) uniform PC { uint u[24]; } pc;

#if !VN_SG
shared float red[RN * MMAX * uint(WG)];
#endif

// The scale of weight row r at column c (scales from s_base on, sc per scale row).
layout(set = 0, binding = 12) uniform usamplerBuffer stex; // SC0 bit 3: slot 4 as bytes
float scale_at(uint s_base, uint r, uint c, uint b0, uint b1, uint sc) {
  if (SC2 == 0u) return 1.0;
  // SC0 bit 5: b0 and b1 are their log2 (powers of two): shifts, where a division is a scalar
  // div per lane on llvmpipe.
  uint i = (SC0 & 32u) != 0u ? s_base + (r >> b0) * sc + (c >> b1)
                              : s_base + (r / b0) * sc + c / b1;
  if ((SC0 & 8u) != 0u) return vn_e8m0(texelFetch(stex, int(i)).x);
  return vn_e8m0((b4.w[i >> 2] >> ((i & 3u) << 3)) & 0xffu);
}

// The weight's texels (binding 11, 16 bytes each: a uniform texel buffer over slot 3's
// range): on llvmpipe a texel fetch is a branch-free gather, where a storage-buffer load is a
// loop over the lanes with a bounds check each.
layout(set = 0, binding = 11) uniform usamplerBuffer wtex;
uvec4 wtx(uint t) { return texelFetch(wtex, int(t)); }

// x values i .. i+3 (i a multiple of 4): VN_I64 reads them as 64-bit words (half the per-lane
// loads of vn_x4).
#if VN_I64
layout(set = 0, binding = 0, std430) readonly buffer VnX64 { uint64_t v[]; } x64;
layout(set = 0, binding = 8, std430) readonly buffer VnS64 { uint64_t v[]; } s64;
vec4 ldx4(uint i) {
  if ((SC0 & 1u) != 0u) {
    uint j = i >> 1;
    return uintBitsToFloat(uvec4(unpackUint2x32(s64.v[j]), unpackUint2x32(s64.v[j + 1u])));
  }
  if (DT0 == DT_F32) {
    uint j = i >> 1;
    return uintBitsToFloat(uvec4(unpackUint2x32(x64.v[j]), unpackUint2x32(x64.v[j + 1u])));
  }
  uvec2 u = unpackUint2x32(x64.v[i >> 2]);
  if (DT0 == DT_BF16) {
    return uintBitsToFloat(uvec4(u.x << 16, u.x & 0xffff0000u, u.y << 16, u.y & 0xffff0000u));
  }
  return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
}
#else
vec4 ldx4(uint i) { return vn_x4(i); }
#endif

vec4 bf16x4(uvec2 ab) {
  return uintBitsToFloat(uvec4(ab.x << 16, ab.x & 0xffff0000u, ab.y << 16, ab.y & 0xffff0000u));
}
vec4 f16x4(uvec2 ab) { return vec4(unpackHalf2x16(ab.x), unpackHalf2x16(ab.y)); }

// sum_j W[wi + j] xv[j] over one chunk, wi (an element index) a multiple of CV: one texel of
// e4m3 or e2m1 codes, two of f16/bf16, four of f32. The codes are decoded without forming f32
// denormals: a subnormal code read as a denormal f32 and scaled up is exact but costs x86 a
// microcode assist per vector (e2m1 code 1, 0.5, is common: 4x slower on a random FP4 expert).
float chunk_dot(uint wi, vec4 xv[8]) {
  if (DT3 == DT_E4M3) { // through f16 (vn_e4m3_dot_2m8); times 2^8 is exact
    uvec4 q = wtx(wi >> 4);
    float d = (vn_e4m3_dot_2m8(q.x, xv[0]) + vn_e4m3_dot_2m8(q.y, xv[1])) +
              (vn_e4m3_dot_2m8(q.z, xv[2]) + vn_e4m3_dot_2m8(q.w, xv[3]));
    // NaN codes, flagged for the whole chunk (one test per 16 codes, not per pair); SC0 bit 6:
    // none, the weight's bytes are known to hold no NaN code (the host's vk_clean.c).
    if ((SC0 & 64u) != 0u) return 256.0 * d;
    return vn_e4m3_nan4(q) != 0u ? uintBitsToFloat(0x7fc00000u) : 256.0 * d;
  }
  if (DT3 == DT_E2M1) { // through f16 (vn_e2m1_dot_2m14); times 2^14 is exact
    uvec4 q = wtx(wi >> 5);
    return 16384.0 * ((vn_e2m1_dot_2m14(q.x, xv[0], xv[1]) + vn_e2m1_dot_2m14(q.y, xv[2], xv[3])) +
                      (vn_e2m1_dot_2m14(q.z, xv[4], xv[5]) + vn_e2m1_dot_2m14(q.w, xv[6], xv[7])));
  }
  if (DT3 == DT_F32) {
    uint t = wi >> 2;
    return (dot(uintBitsToFloat(wtx(t)), xv[0]) + dot(uintBitsToFloat(wtx(t + 1u)), xv[1])) +
           (dot(uintBitsToFloat(wtx(t + 2u)), xv[2]) + dot(uintBitsToFloat(wtx(t + 3u)), xv[3]));
  }
  uvec4 q0 = wtx(wi >> 3), q1 = wtx((wi >> 3) + 1u);
  if (DT3 == DT_BF16) {
    return (dot(bf16x4(q0.xy), xv[0]) + dot(bf16x4(q0.zw), xv[1])) +
           (dot(bf16x4(q1.xy), xv[2]) + dot(bf16x4(q1.zw), xv[3]));
  }
  return (dot(f16x4(q0.xy), xv[0]) + dot(f16x4(q0.zw), xv[1])) +
         (dot(f16x4(q1.xy), xv[2]) + dot(f16x4(q1.zw), xv[3]));
}

// SC0 bit 4: x (slot 0, or the scratch when SC0 bit 0) through its texel view at binding 13.
layout(set = 0, binding = 13) uniform usamplerBuffer xtex;

// x values i .. i + CV - 1 (i a multiple of CV).
void load_x(uint i, out vec4 xv[8]) {
  if ((SC0 & 16u) != 0u) {
    // SC0 bit 8 (with bits 0 and 4): the scratch holds bf16 (act_quant's values, exact in bf16:
    // quant.comp's fake_quant SC0 bit 3), half the texel fetches of f32.
    bool scr = (SC0 & 1u) != 0u, bf = scr ? (SC0 & 256u) != 0u : DT0 == DT_BF16;
    if (scr ? !bf : DT0 == DT_F32) {
      for (uint j = 0u; j < CV / 4u; ++j) xv[j] = uintBitsToFloat(texelFetch(xtex, int((i >> 2) + j)));
    } else {
      for (uint j = 0u; j < CV / 8u; ++j) {
        uvec4 q = texelFetch(xtex, int((i >> 3) + j));
        xv[2u * j] = bf ? bf16x4(q.xy) : f16x4(q.xy);
        xv[2u * j + 1u] = bf ? bf16x4(q.zw) : f16x4(q.zw);
      }
    }
    return;
  }
  for (uint j = 0u; j < CV / 4u; ++j) xv[j] = ldx4(i + 4u * j);
}

// SC0 bit 7 (one scale per row and chunk, b0 = 1 and b1 = CV, and 8 a row: sc = 8, L = 8 CV,
// one chunk a lane): the scales of rows row and row + 1 at one chunk through one fetch of slot
// 4's 16-byte texels (binding 14), where the byte texels of binding 12 take a fetch (a call of
// llvmpipe's texel function) per row and chunk. Scale bytes i and i + 8 for i % 16 < 8 (row
// even: lane l's i % 16 is l).
layout(set = 0, binding = 14) uniform usamplerBuffer stex16;
uvec2 scale_pair(uint i) {
  uvec4 q = texelFetch(stex16, int(i >> 4));
  bool lo = (i & 4u) == 0u;
  return (uvec2(lo ? q.x : q.y, lo ? q.z : q.w) >> ((i & 3u) << 3)) & 0xffu;
}

// rows_dot for SC0 bit 7 (the host sees that nr = RN and row0 is even): rows in pairs.
void rows_dot_rpairs(uint w_base, uint s_base, uint row0, uint L, uint x0, uint sc, float a,
                     inout float acc[RN]) {
  uint ch = gl_LocalInvocationID.x, c = ch * CV;
  vec4 xv[8];
  load_x(x0 + c, xv);
  for (uint r = 0u; r < RN; r += 2u) {
    uint row = row0 + r;
    uvec2 sp = scale_pair(s_base + row * sc + ch);
    acc[r] += a * vn_e8m0(sp.x) * chunk_dot(w_base + row * L + c, xv);
    acc[r + 1u] += a * vn_e8m0(sp.y) * chunk_dot(w_base + (row + 1u) * L + c, xv);
  }
}

// acc[r] += a * sum_c W[row0 + r][c] x[x0 + c] over this lane's chunks, r < nr: rows of L
// values from element w_base, their scales from s_base.
void rows_dot(uint w_base, uint s_base, uint row0, uint nr, uint L, uint x0, uint b0, uint b1,
              uint sc, float a, inout float acc[RN]) {
  if ((SC0 & 128u) != 0u) {
    rows_dot_rpairs(w_base, s_base, row0, L, x0, sc, a, acc);
    return;
  }
  for (uint ch = gl_LocalInvocationID.x; ch < L / CV; ch += uint(WG)) {
    uint c = ch * CV;
    vec4 xv[8];
    load_x(x0 + c, xv);
    float s0 = (SC0 & 2u) != 0u ? scale_at(s_base, row0, c, b0, b1, sc) : 1.0;
    // A loop to a constant without a break, so that it unrolls and acc stays in registers (an
    // array indexed by a variable is a per-lane memory access on llvmpipe): rows past the
    // last are read again as the last, and never stored.
    for (uint r = 0u; r < RN; ++r) {
      uint row = row0 + min(r, nr - 1u);
      float s = (SC0 & 2u) != 0u ? s0 : scale_at(s_base, row, c, b0, b1, sc);
      acc[r] += a * s * chunk_dot(w_base + row * L + c, xv);
    }
  }
}

// The lanes' partial sums are added up through shared memory: each lane puts its value i, and
// after a barrier red_sum(i) adds up value i of every lane. VN_SG: by subgroupAdd instead (the
// host runs this variant only where a subgroup holds the whole workgroup), with no barrier,
// which spares llvmpipe its coroutine switch.
#if !VN_SG
void red_put(uint i, float v) { red[i * uint(WG) + gl_LocalInvocationID.x] = v; }
float red_sum(uint i) {
  float s = 0.0;
  for (uint l = 0u; l < uint(WG); ++l) s += red[i * uint(WG) + l];
  return s;
}
#endif

// h = swiglu(gs, us) (times the routing weight when SC0 bit 2) into the scratch.
void store_h(uint i, uint p, float gs, float us) {
  float limit = uintBitsToFloat(pc.u[5]);
  if (limit > 0.0) {
    gs = gs < limit ? gs : limit;
    us = us < -limit ? -limit : (us > limit ? limit : us);
  }
  float h = gs / (1.0 + exp(-gs)) * us;
  if ((SC0 & 4u) != 0u) h *= ldf2(p);
  scratch.f[i] = h;
}

void linear() {
  uint N = pc.u[1], K = pc.u[2], x_off = pc.u[3], b0 = pc.u[4], b1 = pc.u[5], sc = pc.u[6];
  uint gn = pc.u[7], xs = pc.u[8];
  uint n0 = vn_group() * RN;
  if (n0 >= N) return; // uniform across the workgroup
  uint nr = min(RN, N - n0);
  uint xg = gn != 0u ? (n0 / gn) * K : 0u;
  for (uint m = 0u; m < SC1; ++m) {
    float acc[RN];
    for (uint r = 0u; r < RN; ++r) acc[r] = 0.0;
    rows_dot(0u, 0u, n0, nr, K, x_off + m * xs + xg, b0, b1, sc, 1.0, acc);
#if VN_SG
    for (uint r = 0u; r < RN; ++r) {
      float t = subgroupAdd(acc[r]);
      if (r < nr && gl_SubgroupInvocationID == r % uint(WG)) stf5(m * N + n0 + r, t);
    }
#else
    for (uint r = 0u; r < RN; ++r) red_put(r * MMAX + m, acc[r]);
#endif
  }
#if !VN_SG
  barrier();
  for (uint r = gl_LocalInvocationID.x; r < nr; r += uint(WG)) {
    for (uint m = 0u; m < SC1; ++m) stf5(m * N + n0 + r, red_sum(r * MMAX + m));
  }
#endif
}

uint expert_of(uint p, bool report) {
  int e = ldi1(p);
  uint E = pc.u[4];
  if (e < 0 || uint(e) >= E) {
    if (report) vn_report(VN_ERR_EXPERT, e, E, p);
    e = clamp(e, 0, int(E) - 1);
  }
  return uint(e);
}

void moe_gate_up() {
  uint T = pc.u[0], C = pc.u[1], F = pc.u[2], k = pc.u[3];
  uint x_off = pc.u[6], h_off = pc.u[7], b0 = pc.u[8], b1 = pc.u[9], sr = pc.u[10];
  uint sc = pc.u[11];
  uint fb = (F + RN - 1u) / RN, g = vn_group();
  uint p = g / fb, f0 = (g % fb) * RN;
  if (p >= T * k) return; // uniform across the workgroup
  uint nr = min(RN, F - f0), t = p / k, l = gl_LocalInvocationID.x;
  uint e = expert_of(p, f0 == 0u && l == 0u);
  uint wb = e * 2u * F * C, sb = e * sr * sc;
  float ga[RN], ua[RN];
  for (uint r = 0u; r < RN; ++r) ga[r] = ua[r] = 0.0;
  rows_dot(wb, sb, f0, nr, C, x_off + t * C, b0, b1, sc, 1.0, ga);
  rows_dot(wb, sb, F + f0, nr, C, x_off + t * C, b0, b1, sc, 1.0, ua);
#if VN_SG
  for (uint r = 0u; r < RN; ++r) {
    float gs = subgroupAdd(ga[r]), us = subgroupAdd(ua[r]);
    if (r < nr && gl_SubgroupInvocationID == r % uint(WG)) store_h(h_off + p * F + f0 + r, p, gs, us);
  }
#else
  for (uint r = 0u; r < RN; ++r) {
    red_put(r, ga[r]);
    red_put(RN + r, ua[r]);
  }
  barrier();
  for (uint r = l; r < nr; r += uint(WG)) store_h(h_off + p * F + f0 + r, p, red_sum(r), red_sum(RN + r));
#endif
}

void moe_down() {
  uint T = pc.u[0], C = pc.u[1], F = pc.u[2], k = pc.u[3];
  uint h_off = pc.u[7], b0 = pc.u[8], b1 = pc.u[9], sr = pc.u[10], sc = pc.u[11];
  uint cb = (C + RN - 1u) / RN, g = vn_group();
  uint t = g / cb, c0 = (g % cb) * RN;
  if (t >= T) return; // uniform across the workgroup
  uint nr = min(RN, C - c0);
  float acc[RN];
  for (uint r = 0u; r < RN; ++r) acc[r] = 0.0;
  for (uint i = 0u; i < k; ++i) {
    uint p = t * k + i;
    uint e = expert_of(p, false); // OP 1 reported it
    float a = (SC0 & 4u) != 0u ? 1.0 : ldf2(p);
    rows_dot(e * C * F, e * sr * sc, c0, nr, F, h_off + p * F, b0, b1, sc, a, acc);
  }
#if VN_SG
  for (uint r = 0u; r < RN; ++r) {
    float y = subgroupAdd(acc[r]);
    if (r < nr && gl_SubgroupInvocationID == r % uint(WG)) stf5(t * C + c0 + r, y);
  }
#else
  for (uint r = 0u; r < RN; ++r) red_put(r, acc[r]);
  barrier();
  for (uint r = gl_LocalInvocationID.x; r < nr; r += uint(WG)) stf5(t * C + c0 + r, red_sum(r));
#endif
}

void main() {
  if (OP == 0u) {
    linear();
  } else if (OP == 1u) {
    moe_gate_up();
  } else {
    moe_down();
  }
}
