// Quantized weights and fake quantization (docs/ops.md, "Quantized weights"): the kernels of
// fake_quant, of act_quant = 128, and of linear, matmul, embedding and moe_ffn when a weight is
// e4m3 or e2m1 codes with e8m0 block scales (or when act_quant is set on plain weights). No
// device here has FP8/FP4 arithmetic: codes are read as uint words of a uint[] buffer (no 8- or
// 16-bit storage feature needed), decoded to f32 in integer arithmetic, and every product and
// sum is f32. These are simple kernels (an invocation per output, or per few outputs); the
// plain-weight paths keep their own fast kernels.
//
// A weight W of logical dims [.., R, C] (slot 3, DT3) with codes and e8m0 scales (slot 4,
// [.., ceil(R/b0), ceil(C/b1)]): W[e][r][c] = dec(code[(e R + r) C + c]) *
// 2^(scale[(e SR + r / b0) SC + c / b1] - 127). A plain f32/f16/bf16 weight (SC2 = 0) is read
// as it is. e4m3 codes are bytes; e2m1 codes nibbles (the even index in the low nibble), so an
// e2m1 row of C codes is C/2 bytes and code i is nibble i of the tensor. SC0 bit 2: the rows
// reduced along are whole words of codes, and so is every block (decoded a word at a time).
//
//   OP 0 fake_quant: per row of D values, channels [start, start + nq*block) in nq blocks, each
//        quantized to SC1 (0 e4m3, 1 e2m1) with its power-of-two scale and dequantized; the
//        others copied. An invocation per (row, unit): a unit is one block, or up to PASS of
//        the copied channels. SC0 bit 0: read the scratch at in_off (else slot 0, DT0);
//        bit 1: write the scratch at out_off (else slot 5, DT5). In place is allowed: an
//        invocation reads its channels before it writes them. Bit 3 (with bit 1; start 0, no
//        copied channels): written as bf16 pairs, the GEMV's x (gemv.comp SC0 bit 8).
//   OP 1 qgemm: Y[m][n] = sum_k X[m][k] W(k, n) into slot 5, X = slot 0 (or the scratch at
//        x_off when SC0 bit 0); SC1 = 1: W(k, n) = w[n][k] (linear, R = N, C = K), else
//        W(k, n) = b[k][n] (matmul, R = K, C = N). An invocation per (n, RM rows).
//        grouped_linear (SC1 = 1, push gn = N/G and xs = G*K at 8, 9): output column n reads
//        x[m][(n / gn) K + k] (rows of x are xs apart); gn = 0: no groups.
//   OP 2 embedding: out[q][d] = table[ids[q]][d], table = the weight, ids slot 1.
//   OP 3 moe_ffn gate/up: h[p][f] = swiglu(gate_e x[t], up_e x[t], limit) (times weights[p]
//        when SC1 = 1, act_quant) into the scratch at h_off, p = t k + i, e = experts[p];
//        x = slot 0 or the scratch at x_off (SC0 bit 0); the weight is w_gate_up.
//   OP 4 moe_ffn down: y[t][c] = sum_i a_i <w_down[e][c][:], h[p][:]>, a_i = weights[p]
//        (1 when SC1 = 1: the weight is already in h); the weight is w_down.
// An id or expert outside its range is reported and clamped, as gather.comp and moe_ffn.comp do.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"

#include "codes.glsl"
#define RM 4u    // OP 1: rows per invocation (keep in step with QG_RM in vk_ops_quant.c)
#define PASS 128u // OP 0: copied channels per invocation (QF_PASS in vk_ops_quant.c)

layout(push_constant) uniform PC { uint u[24]; } pc;

float pcf(uint i) { return uintBitsToFloat(pc.u[i]); }

// ---- Encoders (exact; core/quant.c states them) --------------------------------------------

// f32 -> e4m3 code: round to nearest even, saturate to +-448 (infinities too), NaN -> 0x7F.
uint vn_f2e4m3(float v) {
  uint x = floatBitsToUint(v);
  uint ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fu;
  uint sign = (x >> 24) & 0x80u;
  if (ax >= 0x43e00000u) return sign | 0x7eu; // |v| >= 448
  if (ax < 0x3c800000u) {
    // |v| < 2^-6: the subnormal quantum 2^-9 (exact scaling); 8 is the smallest normal, 0x08.
    return sign | uint(roundEven(uintBitsToFloat(ax) * 512.0));
  }
  uint e = (ax >> 23) - 120u; // biased e4m3 exponent (f32 bias 127, e4m3 bias 7)
  uint q = (ax >> 20) & 7u;
  uint rem = ax & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (q & 1u) != 0u)) q += 1u;
  return sign | ((e << 3) + q); // q = 8 carries into the exponent; |v| < 448 stays <= 0x7E
}

// f32 -> e2m1 nibble: round to nearest, ties to the even code, saturate to +-6, NaN -> 7.
uint vn_f2e2m1(float v) {
  uint x = floatBitsToUint(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 7u;
  uint sign = (x >> 28) & 8u;
  float a = uintBitsToFloat(x & 0x7fffffffu);
  const float mid[7] = float[7](0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0);
  uint i = 0u;
  while (i < 7u && (a > mid[i] || (a == mid[i] && ((i + 1u) & 1u) == 0u))) ++i;
  return sign | i;
}

// The exponent c of the block scale 2^c for amax (vnrt_quant_block_scale: c = ceil(log2(
// max(amax, floor) / fmt_max)), the e8m0 code c + 127), from the bits of A = max(amax, floor)
// = 2^eA * mA: A / 448 = 2^(eA-8) (mA / 1.75), so c = eA - 8 + (mA > 1.75); A / 6 = 2^(eA-2)
// (mA / 1.5), so c = eA - 2 + (mA > 1.5). The f32 quotient the reference rounds is a power of
// two only when the exact one is, so this is its ceil exactly. Infinite amax: code 254.
int block_scale_exp(float amax, uint fmt) {
  uint fl = fmt == 0u ? 0x38d1b717u : 0x01c00000u; // 1e-4f, 6 * 2^-126
  uint ax = max(floatBitsToUint(amax), fl);         // amax >= 0 and not NaN: bits order as values
  if (ax >= 0x7f800000u) return 127;
  int eA = int(ax >> 23) - 127;
  uint m = ax & 0x7fffffu;
  int c = fmt == 0u ? eA - 8 + (m > 0x600000u ? 1 : 0) : eA - 2 + (m > 0x400000u ? 1 : 0);
  return clamp(c, -127, 127);
}

// ---- Loads -----------------------------------------------------------------------------------
// Every weight is in slot 3 (DT3) and its scales in slot 4.

float vn_w(uint i) {
  if (DT3 == DT_E4M3) return vn_e4m3((b3.w[i >> 2] >> ((i & 3u) << 3)) & 0xffu);
  if (DT3 == DT_E2M1) return vn_e2m1((b3.w[i >> 3] >> ((i & 7u) << 2)) & 0xfu);
  return ldf3(i);
}
float vn_s(uint i) { return SC2 != 0u ? vn_e8m0((b4.w[i >> 2] >> ((i & 3u) << 3)) & 0xffu) : 1.0; }

// x value i of the reduction: the scratch (SC0 bit 0) or slot 0.
float vn_x(uint i) { return (SC0 & 1u) != 0u ? scratch.f[i] : ldf0(i); }

// acc[j] += sum_{c < L} x[x0 + j xs + c] W[w0 + c] for j < nx: one row of W (L values from
// element w0, its scales from s0 on, one per b1 columns) against nx rows of x. The partial
// sum of each block is multiplied by its power-of-two scale (the same products as scaling
// each weight). SC0 bit 2 (L and b1 multiples of the codes per word): whole words decoded at
// once.
void row_dot(uint w0, uint L, uint s0, uint b1, uint x0, uint xs, uint nx, inout float acc[RM]) {
  for (uint c0 = 0u, sb = s0; c0 < L; c0 += b1, ++sb) {
    uint c1 = min(c0 + b1, L);
    float part[RM];
    for (uint j = 0u; j < RM; ++j) part[j] = 0.0;
    if ((SC0 & 4u) != 0u && DT3 == DT_E4M3) {
      for (uint c = c0; c < c1; c += 4u) {
        vec4 w = vn_e4m3x4(b3.w[(w0 + c) >> 2]);
        for (uint j = 0u; j < RM; ++j) {
          if (j >= nx) break;
          vec4 xv = vn_x4(x0 + j * xs + c);
          part[j] += (w.x * xv.x + w.y * xv.y) + (w.z * xv.z + w.w * xv.w);
        }
      }
    } else if ((SC0 & 4u) != 0u && DT3 == DT_E2M1) {
      for (uint c = c0; c < c1; c += 8u) {
        uint wd = b3.w[(w0 + c) >> 3];
        vec4 wa = vn_e2m1x4(wd), wb = vn_e2m1x4(wd >> 16);
        for (uint j = 0u; j < RM; ++j) {
          if (j >= nx) break;
          vec4 xa = vn_x4(x0 + j * xs + c), xb = vn_x4(x0 + j * xs + c + 4u);
          part[j] += ((wa.x * xa.x + wa.y * xa.y) + (wa.z * xa.z + wa.w * xa.w)) +
                     ((wb.x * xb.x + wb.y * xb.y) + (wb.z * xb.z + wb.w * xb.w));
        }
      }
    } else {
      for (uint c = c0; c < c1; ++c) {
        float w = vn_w(w0 + c);
        for (uint j = 0u; j < RM; ++j) {
          if (j >= nx) break;
          part[j] += w * vn_x(x0 + j * xs + c);
        }
      }
    }
    float sv = vn_s(sb);
    for (uint j = 0u; j < RM; ++j) acc[j] += part[j] * sv;
  }
}

// ---- OP 0: fake_quant --------------------------------------------------------------------------

// push: rows D start nq block in_off out_off
layout(set = 0, binding = 8, std430) buffer VnScratchU { uint u[]; } scratch_u; // SC0 bit 3
float fq_ld(uint i) { return (SC0 & 1u) != 0u ? scratch.f[pc.u[5] + i] : ldf0(i); }
void fq_st(uint i, float v) {
  if ((SC0 & 2u) != 0u) {
    scratch.f[pc.u[6] + i] = v;
  } else {
    stf5(i, v);
  }
}

float fq_round(float q) {
  return SC1 == 0u ? vn_e4m3(vn_f2e4m3(q)) : vn_e2m1(vn_f2e2m1(q));
}

void fake_quant(uint g) {
  uint rows = pc.u[0], D = pc.u[1], start = pc.u[2], nq = pc.u[3], block = pc.u[4];
  uint npass = D - nq * block, units = nq + (npass + PASS - 1u) / PASS;
  if (g >= rows * units) return;
  uint r = g / units, u = g % units, base = r * D;
  if (u < nq) {
    uint b0 = base + start + u * block;
    float amax = 0.0;
    for (uint i = 0u; i < block; ++i) {
      float a = abs(fq_ld(b0 + i));
      if (!vn_isnan(a) && a > amax) amax = a; // NaN ignored, as fmaxf does
    }
    int c = block_scale_exp(amax, SC1);
    float s = uintBitsToFloat(uint(c + 127) << 23);
    // 1 / s = 2^-c exactly, in one or (c = 127) two normal factors.
    float inv0 = uintBitsToFloat(uint(127 - min(c, 126)) << 23);
    float inv1 = c == 127 ? 0.5 : 1.0;
    if ((SC0 & 8u) != 0u) {
      // SC0 bit 3 (set with bit 1, for start 0 and no copied channels, block and D even): the
      // results as bf16 pairs into the scratch, element i in word out_off + i / 2 (exact: an
      // e4m3 value times a power of two, or an infinity, or a NaN with its quiet bit).
      for (uint i = 0u; i < block; i += 2u) {
        float v0 = fq_round(fq_ld(b0 + i) * inv0 * inv1) * s;
        float v1 = fq_round(fq_ld(b0 + i + 1u) * inv0 * inv1) * s;
        scratch_u.u[pc.u[6] + (b0 + i) / 2u] =
            (floatBitsToUint(v0) >> 16) | (floatBitsToUint(v1) & 0xffff0000u);
      }
      return;
    }
    for (uint i = 0u; i < block; ++i) {
      float q = fq_ld(b0 + i) * inv0 * inv1;
      fq_st(b0 + i, fq_round(q) * s);
    }
    return;
  }
  uint p0 = (u - nq) * PASS, p1 = min(p0 + PASS, npass);
  for (uint p = p0; p < p1; ++p) {
    uint i = base + (p < start ? p : p + nq * block);
    fq_st(i, fq_ld(i));
  }
}

// ---- OP 1: qgemm -------------------------------------------------------------------------------

// push: M N K x_off b0 b1 sr sc
void qgemm(uint g) {
  uint M = pc.u[0], N = pc.u[1], K = pc.u[2], x_off = pc.u[3], b0 = pc.u[4], b1 = pc.u[5];
  uint sc = pc.u[7];
  uint mb = (M + RM - 1u) / RM;
  if (g >= N * mb) return;
  uint n = g % N, m0 = (g / N) * RM, nm = min(RM, M - m0);
  float acc[RM];
  for (uint j = 0u; j < RM; ++j) acc[j] = 0.0;
  if (SC1 != 0u) {
    // grouped_linear: output n reads group n / gn of x, whose rows are xs apart.
    uint gn = pc.u[8], xs = gn != 0u ? pc.u[9] : K, xg = gn != 0u ? (n / gn) * K : 0u;
    row_dot(n * K, K, (n / b0) * sc, b1, x_off + m0 * xs + xg, xs, nm, acc);
  } else {
    // b[K, N]: a column of codes, one scale per b0 of its rows.
    uint cs = n / b1;
    for (uint k = 0u; k < K; ++k) {
      float w = vn_w(k * N + n) * vn_s((k / b0) * sc + cs);
      for (uint j = 0u; j < RM; ++j) {
        if (j >= nm) break;
        acc[j] += vn_x(x_off + (m0 + j) * K + k) * w;
      }
    }
  }
  for (uint j = 0u; j < RM; ++j) {
    if (j >= nm) break;
    stf5((m0 + j) * N + n, acc[j]);
  }
}

// ---- OP 2: embedding ---------------------------------------------------------------------------

// push: n D R b0 b1 sr sc
void embedding(uint i) {
  uint n = pc.u[0], D = pc.u[1], R = pc.u[2], b0 = pc.u[3], b1 = pc.u[4], sc = pc.u[6];
  if (i >= n) return;
  uint q = i / D, d = i % D;
  int row = ldi1(q);
  if (row < 0 || uint(row) >= R) {
    if (d == 0u) vn_report(VN_ERR_ID, row, R, q);
    if (R == 0u) {
      stf5(i, 0.0);
      return;
    }
    row = clamp(row, 0, int(R) - 1);
  }
  uint r = uint(row);
  stf5(i, vn_w(r * D + d) * vn_s((r / b0) * sc + d / b1));
}

// ---- OP 3 / OP 4: moe_ffn ----------------------------------------------------------------------

// push: T C F k E limit x_off h_off b0 b1 sr sc
uint expert_of(uint p, bool report) {
  int e = ldi1(p);
  uint E = pc.u[4];
  if (e < 0 || uint(e) >= E) {
    if (report) vn_report(VN_ERR_EXPERT, e, E, p);
    e = clamp(e, 0, int(E) - 1);
  }
  return uint(e);
}

void moe_gate_up(uint g) {
  uint T = pc.u[0], C = pc.u[1], F = pc.u[2], k = pc.u[3];
  float limit = pcf(5);
  uint x_off = pc.u[6], h_off = pc.u[7], b0 = pc.u[8], b1 = pc.u[9], sr = pc.u[10];
  uint sc = pc.u[11];
  if (g >= T * k * F) return;
  uint p = g / F, f = g % F, t = p / k;
  uint e = expert_of(p, f == 0u);
  uint rg = f, ru = F + f, wbase = e * 2u * F * C, sbase = e * sr * sc;
  float ga[RM], ua[RM];
  for (uint j = 0u; j < RM; ++j) ga[j] = ua[j] = 0.0;
  row_dot(wbase + rg * C, C, sbase + (rg / b0) * sc, b1, x_off + t * C, 0u, 1u, ga);
  row_dot(wbase + ru * C, C, sbase + (ru / b0) * sc, b1, x_off + t * C, 0u, 1u, ua);
  float gs = ga[0], us = ua[0];
  if (limit > 0.0) {
    gs = gs < limit ? gs : limit;
    us = us < -limit ? -limit : (us > limit ? limit : us);
  }
  float h = gs / (1.0 + exp(-gs)) * us;
  if (SC1 != 0u) h *= ldf2(p);
  scratch.f[h_off + p * F + f] = h;
}

// The down projection's input h is always in the scratch: the host sets SC0 bit 0.
void moe_down(uint g) {
  uint T = pc.u[0], C = pc.u[1], F = pc.u[2], k = pc.u[3];
  uint h_off = pc.u[7], b0 = pc.u[8], b1 = pc.u[9], sr = pc.u[10], sc = pc.u[11];
  if (g >= T * C) return;
  uint t = g / C, c = g % C;
  float y = 0.0;
  for (uint i = 0u; i < k; ++i) {
    uint p = t * k + i;
    uint e = expert_of(p, false); // OP 3 reported it
    float acc[RM];
    for (uint j = 0u; j < RM; ++j) acc[j] = 0.0;
    row_dot((e * C + c) * F, F, e * sr * sc + (c / b0) * sc, b1, h_off + p * F, 0u, 1u, acc);
    y += SC1 != 0u ? acc[0] : ldf2(p) * acc[0];
  }
  stf5(t * C + c, y);
}

void main() {
  uint g = vn_gid();
  if (OP == 0u) {
    fake_quant(g);
  } else if (OP == 1u) {
    qgemm(g);
  } else if (OP == 2u) {
    embedding(g);
  } else if (OP == 3u) {
    moe_gate_up(g);
  } else {
    moe_down(g);
  }
}
