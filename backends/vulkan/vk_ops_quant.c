/* Quantized weights on Vulkan (docs/ops.md, "Quantized weights"): fake_quant, and linear,
 * matmul, embedding and moe_ffn when a weight is e4m3/e2m1 codes with e8m0 block scales or when
 * act_quant = 128 asks for the activation to be rounded to e4m3 first. Every kernel is a pass
 * of shaders/vulkan/quant.comp (its header says what each OP computes); the plain-weight paths
 * of vk_ops_basic.c and vk_ops_model.c call in here only for those nodes, and keep their own
 * kernels for everything else. No device has native FP8/FP4 math (VNRT_CAP_FP8/FP4 are never
 * set): codes are decoded to f32 inside the kernels. */
#include <stdio.h>

#include "vk_internal.h"

#define WG_QUANT 64u /* WG of quant.comp */
#define QG_RM 4u     /* rows per invocation of OP 1 (RM in quant.comp) */
#define QF_PASS 128u /* copied channels per invocation of OP 0 (PASS in quant.comp) */
#define ACT_BLOCK 128

enum { QOP_FAKE_QUANT = 0, QOP_GEMM = 1, QOP_EMBEDDING = 2, QOP_GATE_UP = 3, QOP_DOWN = 4 };

#define WHY(...) (snprintf(why, why_size, __VA_ARGS__), 0)

static bool is_float(vnrt_dtype d) { return d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16; }
static bool is_codes(vnrt_dtype d) { return d == VNRT_E4M3 || d == VNRT_E2M1; }

bool vk_quant_linear(const vnrt_backend_node *node) {
  return is_codes(node->params->linear.w.codes) || node->params->linear.act_quant != 0;
}
bool vk_quant_matmul(const vnrt_backend_node *node) {
  return is_codes(node->params->matmul.b.codes);
}
bool vk_quant_embedding(const vnrt_backend_node *node) {
  return is_codes(node->params->embedding.table.codes);
}
bool vk_quant_moe_ffn(const vnrt_backend_node *node) {
  const vnrt_moe_ffn_params *p = &node->params->moe_ffn;
  return is_codes(p->w_gate_up.codes) || is_codes(p->w_down.codes) || p->act_quant != 0;
}

/* Whether weight input w (logical [.., R, C]) is plain float or codes with an e8m0 scale of
 * [.., ceil(R/b0), ceil(C/b1)] at q->scale_input, as the graph checked; a kernel that trusts
 * these dims must not meet anything else. */
static int weight_ok(const vnrt_backend_graph *g, const vnrt_backend_node *node, int w,
                     const vnrt_quant_weight *q, const char *what, char *why, size_t why_size) {
  const vnrt_tensor_type *tw = vk_in_type(g, node, w);
  if (!is_codes(q->codes)) {
    return is_float(tw->dtype) ? 1 : WHY("%s must be f32/f16/bf16 or e4m3/e2m1 codes", what);
  }
  if (tw->dtype != q->codes || tw->rank < 2 || q->block[0] < 1 || q->block[1] < 1 ||
      q->scale_input < 0 || q->scale_input >= node->n_inputs) {
    return WHY("%s: codes without a usable scale and block", what);
  }
  const vnrt_tensor_type *ts = vk_in_type(g, node, q->scale_input);
  int32_t r = tw->rank;
  if (ts->dtype != VNRT_E8M0 || ts->rank != r ||
      ts->dims[r - 2] != (int64_t)vk_div_up((uint64_t)tw->dims[r - 2], (uint64_t)q->block[0]) ||
      ts->dims[r - 1] != (int64_t)vk_div_up((uint64_t)tw->dims[r - 1], (uint64_t)q->block[1])) {
    return WHY("%s: its scale is not e8m0 of one value per block", what);
  }
  for (int32_t i = 0; i < r - 2; ++i) {
    if (ts->dims[i] != tw->dims[i]) return WHY("%s: its scale's leading dims differ", what);
  }
  return 1;
}

/* Whether n invocations fit the device's grid and an f32 scratch of `words` one binding. */
static int grid_scratch_ok(const vnrt_backend_device *device, uint64_t n, uint64_t words, char *why,
                           size_t why_size) {
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  uint64_t groups = vk_div_up(n, WG_QUANT);
  if (n >= (1ull << 32) ||
      groups > (uint64_t)lim->maxComputeWorkGroupCount[0] * lim->maxComputeWorkGroupCount[1]) {
    return WHY("the quantized kernel's grid exceeds maxComputeWorkGroupCount");
  }
  if (words >= (1ull << 31) || words * 4 > lim->maxStorageBufferRange) {
    return WHY("the quantized kernel's scratch exceeds maxStorageBufferRange");
  }
  return 1;
}

/* Binds weight w to slot 3 and, for codes, its scale to slot 4 (SC2 = 1). L: the length of
 * the rows the kernel reduces along (0: none); when L and the block's columns are whole words
 * of codes, sets SC0 bit 2 (row_dot in quant.comp decodes word by word). */
static void bind_weight(vk_builder *b, vk_dispatch_desc *d, const vnrt_backend_node *node, int w,
                        const vnrt_quant_weight *q, uint64_t L) {
  vk_bind(b, d, 3, node->inputs[w]);
  if (!is_codes(q->codes)) return;
  vk_bind(b, d, 4, node->inputs[q->scale_input]);
  d->spec[11] = 1; /* quant.comp keeps its NaN test: only gemv.comp has a clean variant */
  uint64_t per = q->codes == VNRT_E2M1 ? 8 : 4;
  if (L > 0 && L % per == 0 && (uint64_t)q->block[1] % per == 0) d->spec[9] |= 4;
}

/* The block shape and the scale matrix's rows and columns pushed at push[i..i+3] (b0 b1 sr
 * sc), for a weight of R x C (per leading index); a plain weight is one block per row (its
 * scales are never read). */
static void push_blocks(vk_dispatch_desc *d, int i, const vnrt_quant_weight *q, uint64_t R,
                        uint64_t C) {
  bool qd = is_codes(q->codes);
  uint64_t b0 = qd ? (uint64_t)q->block[0] : 1;
  uint64_t b1 = qd ? (uint64_t)q->block[1] : (C ? C : 1);
  vk_push_u(d, i, b0), vk_push_u(d, i + 1, b1);
  vk_push_u(d, i + 2, qd ? vk_div_up(R, b0) : 0), vk_push_u(d, i + 3, qd ? vk_div_up(C, b1) : 0);
}

/* OP 0 over `rows` rows of D: channels [start, start + nq*block) in blocks, to fmt. src/dst: a
 * tensor (slot 0 / 5) or, when < 0, the scratch view at word offset in_off / out_off. */
static vnrt_status emit_fake_quant(vk_builder *b, int32_t src, int32_t dst, vk_view scratch,
                                   uint64_t in_off, uint64_t out_off, vnrt_dtype fmt, uint64_t rows,
                                   uint64_t D, uint64_t start, uint64_t nq, uint64_t block,
                                   bool bf16_out) {
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_QUANT);
  d.spec[8] = QOP_FAKE_QUANT;
  if (bf16_out) d.spec[9] |= 8; /* into the scratch as bf16 pairs (SC0 bit 3) */
  if (src >= 0) {
    vk_bind(b, &d, 0, src);
  } else {
    d.spec[9] |= 1;
  }
  if (dst >= 0) {
    vk_bind(b, &d, 5, dst);
  } else {
    d.spec[9] |= 2;
  }
  if (src < 0 || dst < 0) d.slots[VK_SLOT_SCRATCH] = scratch;
  d.spec[10] = fmt == VNRT_E2M1;
  vk_push_u(&d, 0, rows), vk_push_u(&d, 1, D), vk_push_u(&d, 2, start), vk_push_u(&d, 3, nq);
  vk_push_u(&d, 4, block), vk_push_u(&d, 5, in_off), vk_push_u(&d, 6, out_off);
  uint64_t units = nq + vk_div_up(D - nq * block, QF_PASS);
  vk_grid(b, vk_div_up(rows * units, WG_QUANT), d.groups);
  return vk_emit(b, &d);
}

/* ---- fake_quant ------------------------------------------------------------------------ */

VK_SUPPORTED_FN(vk_sup_fake_quant) {
  const vnrt_fake_quant_params *p = &node->params->fake_quant;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *o0 = vk_out_type(g, node, 0);
  if (!is_float(t0->dtype) || !is_float(o0->dtype) || t0->rank < 1) {
    return WHY("fake_quant needs float x[..., D]");
  }
  if (p->fmt != VNRT_E4M3 && p->fmt != VNRT_E2M1) return WHY("fake_quant fmt must be e4m3/e2m1");
  int64_t D = t0->dims[t0->rank - 1];
  if (p->block < 1 || p->start < 0 || p->len < 0 || p->start + p->len > D) {
    return WHY("fake_quant block/start/len do not fit D");
  }
  uint64_t rows = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  uint64_t nq = (uint64_t)(p->len / p->block);
  return grid_scratch_ok(device, rows * (nq + vk_div_up((uint64_t)D, QF_PASS)), 0, why, why_size);
}

VK_RECORD_FN(vk_rec_fake_quant) {
  const vnrt_fake_quant_params *p = &node->params->fake_quant;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t D = (uint64_t)t0->dims[t0->rank - 1];
  uint64_t rows = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  if (rows == 0 || D == 0) return VNRT_OK;
  vk_view none = {0};
  return emit_fake_quant(b, node->inputs[0], node->outputs[0], none, 0, 0, p->fmt, rows, D,
                         (uint64_t)p->start, (uint64_t)(p->len / p->block), (uint64_t)p->block,
                         false);
}

/* ---- gemv.comp: decode-sized products on CPU devices -------------------------------------- */

#define GV_RN 16u /* weight rows per workgroup (RN in gemv.comp) */
#define GV_WG 8u  /* invocations per workgroup (WG in gemv.comp) */

/* Values per chunk of gemv.comp for weight dtype w (CV there). */
static uint64_t gemv_cv(vnrt_dtype w) { return w == VNRT_E2M1 ? 32 : 16; }

bool vk_gemv_ok(vk_builder *b, vnrt_dtype x, int32_t w_tensor, const vnrt_quant_weight *q,
                uint64_t L) {
  vnrt_dtype w = vk_builder_graph(b)->tensors[w_tensor].type.dtype;
  if (!vk_builder_cpu_kernels(b) || !is_float(x) || !vk_texel_ok(b, w_tensor, VK_TEXEL_BYTES)) {
    return false;
  }
  /* Its subgroup variant adds up a workgroup's lanes as one subgroup. */
  const vnrt_backend_device *dev = vk_builder_device(b);
  if ((dev->variant & vk_shader_variants(VK_SHADER_GEMV) & VK_VARIANT_SG) &&
      dev->phys->subgroup_size < GV_WG) {
    return false;
  }
  if (!(q && is_codes(q->codes)) && !is_float(w)) return false;
  uint64_t cv = gemv_cv(w);
  if (L == 0 || L % cv != 0) return false;
  return !(q && is_codes(q->codes)) || (uint64_t)q->block[1] % cv == 0;
}

/* x through texels too (SC0 bit 4) where its view allows: slot 0's, or the scratch's. */
static void gemv_x_texels(vk_builder *b, vk_dispatch_desc *d, bool scratch) {
  int slot = scratch ? VK_SLOT_SCRATCH : 0;
  if (vk_texel_view_ok(b, &d->slots[slot], VK_TEXEL_BYTES)) {
    d->texel_x = (int8_t)slot;
    d->spec[9] |= 16;
  }
}

/* Sets the weight of a gemv.comp dispatch: input w in slot 3, and for codes its scale in slot 4
 * (SC2 = 1), with push[i], push[i + 1] = b0 b1 (their log2 and SC0 bit 5 when both are powers
 * of two: llvmpipe divides lane by lane) and push[sc_at] = sc (scales per scale row) for rows of
 * L; SC0 bit 1 when the rows of a workgroup share one scale row. With one scale per row and
 * chunk (FP4's 1x32 blocks) and 8 a row (L = 256 e2m1 codes: the bench model's down
 * projection), SC0 bit 7: two rows' scales a texel fetch (slot 4's 16-byte texels), when every
 * group of GV_RN rows is whole (`rows`, each pass's rows per expert or half, a multiple of it).
 * The same for a row's chunks ch and ch + 8 (sc a multiple of 16) was slower (docs/bench.md,
 * "Vulkan, stop 28"). */
static void gemv_weight(vk_builder *b, vk_dispatch_desc *d, const vnrt_backend_node *node, int w,
                        const vnrt_quant_weight *q, uint64_t L, uint64_t rows, int i, int sc_at) {
  vk_bind(b, d, 3, node->inputs[w]);
  d->texel3 = true;
  if (!(q && is_codes(q->codes))) {
    vk_push_u(d, i, 1), vk_push_u(d, i + 1, L), vk_push_u(d, sc_at, 0);
    return;
  }
  vk_bind(b, d, 4, node->inputs[q->scale_input]);
  d->spec[11] = 1;
  if (q->codes == VNRT_E4M3) { /* SC0 bit 6: no NaN test while the codes are known NaN-free */
    d->clean_spec = 9;
    d->clean_bits = 64;
  }
  if (vk_texel_ok(b, node->inputs[q->scale_input], 1)) {
    d->texel4 = true; /* scales through texels (binding 12) too */
    d->spec[9] |= 8;
  }
  uint64_t b0 = (uint64_t)q->block[0], b1 = (uint64_t)q->block[1];
  if (b0 % GV_RN == 0) d->spec[9] |= 2;
  uint64_t sc = vk_div_up(L, b1);
  if (b0 == 1 && b1 == gemv_cv(q->codes) && sc == 8 && rows % GV_RN == 0 && d->texel_y < 0 &&
      vk_texel_ok(b, node->inputs[q->scale_input], VK_TEXEL_BYTES)) {
    d->spec[9] |= 128;
    d->texel_y = 4; /* binding 14: slot 4 as 16-byte texels */
  }
  if ((b0 & (b0 - 1)) == 0 && (b1 & (b1 - 1)) == 0) { /* SC0 bit 5: their log2 instead */
    d->spec[9] |= 32;
    b0 = (uint64_t)__builtin_ctzll(b0), b1 = (uint64_t)__builtin_ctzll(b1);
  }
  vk_push_u(d, i, b0), vk_push_u(d, i + 1, b1), vk_push_u(d, sc_at, sc);
}

vnrt_status vk_emit_gemv_linear(vk_builder *b, const vnrt_backend_node *node,
                                const vnrt_quant_weight *q, const vk_view *x_scratch, bool x_bf16,
                                uint64_t M, uint64_t N, uint64_t K, uint64_t gn, uint64_t xs,
                                const vk_view *out) {
  if (M == 0 || N == 0) return VNRT_OK;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_GEMV);
  d.spec[8] = 0;
  d.spec[10] = (uint32_t)M;
  if (x_scratch) {
    d.slots[VK_SLOT_SCRATCH] = *x_scratch;
    d.spec[9] |= 1;
  } else {
    vk_bind(b, &d, 0, node->inputs[0]);
  }
  gemv_x_texels(b, &d, x_scratch != NULL);
  if (x_bf16) d.spec[9] |= 256; /* x_bf16 implies bit 16: the caller made the same texel test */
  gemv_weight(b, &d, node, 1, q, K, N, 4, 6);
  if (out) {
    d.slots[5] = *out;
    d.spec[5] = VNRT_F32;
  } else {
    vk_bind(b, &d, 5, node->outputs[0]);
  }
  vk_push_u(&d, 0, M), vk_push_u(&d, 1, N), vk_push_u(&d, 2, K), vk_push_u(&d, 3, 0);
  vk_push_u(&d, 7, gn), vk_push_u(&d, 8, xs);
  vk_grid(b, vk_div_up(N, GV_RN), d.groups);
  return vk_emit(b, &d);
}

/* ---- linear and matmul ----------------------------------------------------------------- */

VK_SUPPORTED_FN(vk_sup_qlinear) {
  const vnrt_linear_params *p = &node->params->linear;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  if (t0->rank < 1 || t1->rank != 2 || !is_float(t0->dtype)) {
    return WHY("linear needs float x[..., K] and w[N, K]");
  }
  if (!weight_ok(g, node, 1, &p->w, "w", why, why_size)) return 0;
  if (p->act_quant != 0 && p->act_quant != ACT_BLOCK) return WHY("act_quant must be 0 or 128");
  uint64_t K = (uint64_t)t1->dims[1], N = (uint64_t)t1->dims[0];
  uint64_t M = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  if (p->act_quant && K % ACT_BLOCK != 0) return WHY("act_quant needs K a multiple of 128");
  if (!grid_scratch_ok(device, N * vk_div_up(M, QG_RM), p->act_quant ? M * K : 0, why, why_size)) {
    return 0;
  }
  return p->act_quant ? grid_scratch_ok(device, M * (K / ACT_BLOCK), 0, why, why_size) : 1;
}

VK_SUPPORTED_FN(vk_sup_qmatmul) {
  const vnrt_matmul_params *p = &node->params->matmul;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  if (t0->rank < 2 || t1->rank != 2 || !is_float(t0->dtype)) {
    return WHY("matmul with a quantized b needs float a[..., M, K] and b[K, N]");
  }
  if (!weight_ok(g, node, 1, &p->b, "b", why, why_size)) return 0;
  uint64_t M = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  return grid_scratch_ok(device, (uint64_t)t1->dims[1] * vk_div_up(M, QG_RM), 0, why, why_size);
}

/* Y[M, N] = X[M, K] W(k, n) through OP 1, X = input 0 rounded first when act_quant. */
static vnrt_status record_qgemm(vk_builder *b, const vnrt_backend_graph *g,
                                const vnrt_backend_node *node, const vnrt_quant_weight *q,
                                bool transposed, int32_t act_quant, uint64_t M, uint64_t N,
                                uint64_t K) {
  if (M == 0 || N == 0) return VNRT_OK;
  vk_view xs = {0};
  /* A decode-sized linear on a CPU device: gemv.comp, reading act_quant's x as bf16 texels
   * where the scratch allows texels (half the fetches of f32; the values are exact in bf16). */
  bool gemv = transposed && M <= VK_GEMV_MMAX &&
              vk_gemv_ok(b, vk_in_type(g, node, 0)->dtype, node->inputs[1], q, K);
  bool x_bf16 = false;
  if (act_quant) {
    xs = vk_scratch_view(b, M * K * 4);
    x_bf16 = gemv && vk_texel_view_ok(b, &xs, VK_TEXEL_BYTES);
    VK_TRY(emit_fake_quant(b, node->inputs[0], -1, xs, 0, 0, VNRT_E4M3, M, K, 0,
                           K / (uint64_t)act_quant, (uint64_t)act_quant, x_bf16));
  }
  if (gemv) {
    return vk_emit_gemv_linear(b, node, q, act_quant ? &xs : NULL, x_bf16, M, N, K, 0, K, NULL);
  }
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_QUANT);
  d.spec[8] = QOP_GEMM;
  if (act_quant) {
    d.slots[VK_SLOT_SCRATCH] = xs;
    d.spec[9] = 1;
  } else {
    vk_bind(b, &d, 0, node->inputs[0]);
  }
  bind_weight(b, &d, node, 1, q, transposed ? K : 0);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[10] = transposed;
  vk_push_u(&d, 0, M), vk_push_u(&d, 1, N), vk_push_u(&d, 2, K), vk_push_u(&d, 3, 0);
  push_blocks(&d, 4, q, transposed ? N : K, transposed ? K : N);
  vk_grid(b, vk_div_up(N * vk_div_up(M, QG_RM), WG_QUANT), d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_qlinear) {
  const vnrt_linear_params *p = &node->params->linear;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  uint64_t M = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  return record_qgemm(b, g, node, &p->w, true, p->act_quant, M, (uint64_t)t1->dims[0],
                      (uint64_t)t1->dims[1]);
}

VK_RECORD_FN(vk_rec_qmatmul) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  /* b is rank 2: a's batch dims and rows flatten into M (a and the result are dense). */
  uint64_t M = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  return record_qgemm(b, g, node, &node->params->matmul.b, false, 0, M, (uint64_t)t1->dims[1],
                      (uint64_t)t1->dims[0]);
}

/* ---- embedding ------------------------------------------------------------------------- */

VK_SUPPORTED_FN(vk_sup_qembedding) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  if (t0->rank != 2 || t1->dtype != VNRT_I32) return WHY("embedding needs table[V, D], i32 ids");
  if (!weight_ok(g, node, 0, &node->params->embedding.table, "table", why, why_size)) return 0;
  return grid_scratch_ok(device, (uint64_t)vnrt_numel(vk_out_type(g, node, 0)), 0, why, why_size);
}

VK_RECORD_FN(vk_rec_qembedding) {
  const vnrt_quant_weight *q = &node->params->embedding.table;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t n = (uint64_t)vnrt_numel(vk_out_type(g, node, 0)), D = (uint64_t)t0->dims[1];
  if (n == 0) return VNRT_OK;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_QUANT);
  d.spec[8] = QOP_EMBEDDING;
  bind_weight(b, &d, node, 0, q, 0);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 5, node->outputs[0]);
  vk_push_u(&d, 0, n), vk_push_u(&d, 1, D), vk_push_u(&d, 2, (uint64_t)t0->dims[0]);
  push_blocks(&d, 3, q, (uint64_t)t0->dims[0], D);
  vk_grid(b, vk_div_up(n, WG_QUANT), d.groups);
  return vk_emit(b, &d);
}

/* ---- moe_ffn --------------------------------------------------------------------------- */

VK_SUPPORTED_FN(vk_sup_qmoe_ffn) {
  const vnrt_moe_ffn_params *p = &node->params->moe_ffn;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *te = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tg = vk_in_type(g, node, 3), *tw = vk_in_type(g, node, 2);
  if (t0->rank != 2 || te->rank != 2 || tg->rank != 3 || tg->dims[0] < 1 || !is_float(t0->dtype) ||
      !is_float(tw->dtype) || te->dtype != VNRT_I32) {
    return WHY("moe_ffn needs x[T, C], experts[T, k] i32, w_gate_up[E >= 1, 2F, C]");
  }
  if (!weight_ok(g, node, 3, &p->w_gate_up, "w_gate_up", why, why_size) ||
      !weight_ok(g, node, 4, &p->w_down, "w_down", why, why_size)) {
    return 0;
  }
  if (p->act_quant != 0 && p->act_quant != ACT_BLOCK) return WHY("act_quant must be 0 or 128");
  uint64_t T = (uint64_t)t0->dims[0], C = (uint64_t)t0->dims[1], k = (uint64_t)te->dims[1];
  uint64_t F = (uint64_t)tg->dims[1] / 2;
  if (p->act_quant && (C % ACT_BLOCK != 0 || F % ACT_BLOCK != 0)) {
    return WHY("act_quant needs C and F multiples of 128");
  }
  uint64_t words = T * k * F + (p->act_quant ? T * C : 0);
  return grid_scratch_ok(device, T * k * F, words, why, why_size) &&
         grid_scratch_ok(device, T * C, 0, why, why_size);
}

/* moe_ffn's gate/up and down passes through gemv.comp on a CPU device (after act_quant's
 * rounding of x into s at x_off, when set): h into s at h_off, then y. */
static vnrt_status gemv_moe(vk_builder *b, const vnrt_backend_node *node, vk_view s, uint64_t T,
                            uint64_t C, uint64_t F, uint64_t k, uint64_t E, uint64_t x_off,
                            uint64_t h_off) {
  const vnrt_moe_ffn_params *p = &node->params->moe_ffn;
  bool aq = p->act_quant != 0;
  vk_dispatch_desc d;
  for (int pass = 1; pass <= 2; ++pass) {
    if (pass == 2 && aq) {
      /* The down projection's input rounded per row of F, in place. */
      VK_TRY(emit_fake_quant(b, -1, -1, s, h_off, h_off, VNRT_E4M3, T * k, F, 0, F / ACT_BLOCK,
                             ACT_BLOCK, false));
    }
    vk_desc_init(&d, VK_SHADER_GEMV);
    d.spec[8] = (uint32_t)pass;
    if (aq) d.spec[9] |= 4;
    if (pass == 1 && !aq) {
      vk_bind(b, &d, 0, node->inputs[0]);
    } else {
      d.spec[9] |= 1; /* x (pass 1) or h (pass 2) from the scratch */
    }
    vk_bind(b, &d, 1, node->inputs[1]);
    vk_bind(b, &d, 2, node->inputs[2]);
    const vnrt_quant_weight *q = pass == 1 ? &p->w_gate_up : &p->w_down;
    uint64_t R = pass == 1 ? 2 * F : C, L = pass == 1 ? C : F;
    gemv_weight(b, &d, node, pass == 1 ? 3 : 4, q, L, pass == 1 ? F : C, 8, 11);
    vk_push_u(&d, 10, is_codes(q->codes) ? vk_div_up(R, (uint64_t)q->block[0]) : 0);
    if (pass == 2) vk_bind(b, &d, 5, node->outputs[0]);
    d.slots[VK_SLOT_SCRATCH] = s;
    gemv_x_texels(b, &d, (d.spec[9] & 1) != 0);
    vk_push_u(&d, 0, T), vk_push_u(&d, 1, C), vk_push_u(&d, 2, F), vk_push_u(&d, 3, k);
    vk_push_u(&d, 4, E), vk_push_f(&d, 5, p->limit);
    vk_push_u(&d, 6, x_off), vk_push_u(&d, 7, h_off);
    uint64_t groups = pass == 1 ? T * k * vk_div_up(F, GV_RN) : T * vk_div_up(C, GV_RN);
    vk_grid(b, groups, d.groups);
    VK_TRY(vk_emit(b, &d));
  }
  return VNRT_OK;
}

VK_RECORD_FN(vk_rec_qmoe_ffn) {
  const vnrt_moe_ffn_params *p = &node->params->moe_ffn;
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0), *te = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tg = vk_in_type(g, node, 3);
  uint64_t T = (uint64_t)tx->dims[0], C = (uint64_t)tx->dims[1], k = (uint64_t)te->dims[1];
  uint64_t F = (uint64_t)tg->dims[1] / 2, E = (uint64_t)tg->dims[0];
  if (T == 0 || C == 0) return VNRT_OK;
  bool aq = p->act_quant != 0;
  uint64_t x_off = 0, h_off = aq ? (T * C + 3) / 4 * 4 : 0; /* h rows start on vec4s */
  vk_view s = vk_scratch_view(b, (h_off + T * k * F) * 4);
  if (aq) {
    VK_TRY(emit_fake_quant(b, node->inputs[0], -1, s, 0, x_off, VNRT_E4M3, T, C, 0, C / ACT_BLOCK,
                           ACT_BLOCK, false));
  }
  if (vk_gemv_ok(b, tx->dtype, node->inputs[3], &p->w_gate_up, C) &&
      vk_gemv_ok(b, VNRT_F32, node->inputs[4], &p->w_down, F)) {
    return gemv_moe(b, node, s, T, C, F, k, E, x_off, h_off);
  }
  /* gate/up: h (times the routing weight when act_quant) into the scratch. */
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_QUANT);
  d.spec[8] = QOP_GATE_UP;
  d.spec[9] = aq;
  d.spec[10] = aq;
  if (!aq) vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 2, node->inputs[2]);
  bind_weight(b, &d, node, 3, &p->w_gate_up, C);
  d.slots[VK_SLOT_SCRATCH] = s;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, C), vk_push_u(&d, 2, F), vk_push_u(&d, 3, k);
  vk_push_u(&d, 4, E), vk_push_f(&d, 5, p->limit);
  vk_push_u(&d, 6, x_off), vk_push_u(&d, 7, h_off);
  push_blocks(&d, 8, &p->w_gate_up, 2 * F, C);
  if (F > 0) {
    vk_grid(b, vk_div_up(T * k * F, WG_QUANT), d.groups);
    VK_TRY(vk_emit(b, &d));
  }
  /* The down projection's input rounded per row of F, in place. */
  if (aq && F > 0) {
    VK_TRY(emit_fake_quant(b, -1, -1, s, h_off, h_off, VNRT_E4M3, T * k, F, 0, F / ACT_BLOCK,
                           ACT_BLOCK, false));
  }
  vk_desc_init(&d, VK_SHADER_QUANT);
  d.spec[8] = QOP_DOWN;
  d.spec[9] = 1; /* h from the scratch */
  d.spec[10] = aq;
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 2, node->inputs[2]);
  bind_weight(b, &d, node, 4, &p->w_down, F);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.slots[VK_SLOT_SCRATCH] = s;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, C), vk_push_u(&d, 2, F), vk_push_u(&d, 3, k);
  vk_push_u(&d, 4, E), vk_push_u(&d, 7, h_off);
  push_blocks(&d, 8, &p->w_down, C, F);
  vk_grid(b, vk_div_up(T * C, WG_QUANT), d.groups);
  return vk_emit(b, &d);
}
