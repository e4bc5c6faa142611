/* The supported and record functions of the op table (vk_ops.c) for elementwise, shape, linear
 * algebra, norm, indexing, rope and hadamard ops: which shader runs a node, with which
 * specialization constants, push constants and grid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"
#include "vnrt/backend_util.h"

/* Workgroup sizes of the shaders (local_size_x in shaders/vulkan). */
#define WG_ELEM 128u
#define MM_BM 32u
#define MM_BN 64u
#define MB_TM 16u /* matmul.comp OP >= 1: the most rows per invocation, and columns */
#define MB_TN 16u
#define MB_LANES 128u        /* invocations per workgroup */
#define WG_ROWNORM 128u      /* rownorm.comp */
#define RN_LANE_MIN_ROWS 32u /* rownorm.comp: fewest rows for one invocation per row */
#define MV_MMAX 4u           /* matvec.comp */
#define MV_NC 4u
#define WG_TOPK 128u          /* topk.comp */
#define TOPK_RANK_ROWS 8u     /* topk.comp OP 1 (O(E^2) a row): decode-sized calls only */
#define TOPK_RANK_ITER 60000u /* its loop trips (llvmpipe stops a shader at 65535) */
#define HD_DMAX 4096u         /* hadamard.comp: the longest row (its shared-memory buffer) */

static bool is_float(vnrt_dtype d) { return d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16; }

#define WHY(...) (snprintf(why, why_size, __VA_ARGS__), 0)

VK_SUPPORTED_FN(vk_sup_always) { return 1; }

VK_SUPPORTED_FN(vk_sup_elementwise) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *o0 = vk_out_type(g, node, 0);
  if (!is_float(t0->dtype) || o0->rank > 4) return WHY("expects float tensors of rank <= 4");
  return 1;
}

VK_SUPPORTED_FN(vk_sup_matmul) {
  if (vk_quant_matmul(node)) return vk_sup_qmatmul(device, g, node, why, why_size);
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  const vnrt_tensor_type *o0 = vk_out_type(g, node, 0);
  if (t0->rank < 2 || t1->rank < 2 || o0->rank < 2 || o0->rank > 4) {
    return WHY("matmul needs [..., M, K] x [..., K, N] with at most 2 batch dims");
  }
  int64_t batch = vnrt_dims_product(o0, 0, o0->rank - 2);
  if (vk_div_up((uint64_t)o0->dims[o0->rank - 1], MM_BN) > lim->maxComputeWorkGroupCount[0] ||
      vk_div_up((uint64_t)o0->dims[o0->rank - 2], MM_BM) > lim->maxComputeWorkGroupCount[1] ||
      (uint64_t)batch > lim->maxComputeWorkGroupCount[2]) {
    return WHY("the matmul grid exceeds maxComputeWorkGroupCount");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_linear) {
  if (vk_quant_linear(node)) return vk_sup_qlinear(device, g, node, why, why_size);
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  if (t0->rank < 1 || t1->rank != 2) return WHY("linear needs x[..., K] and w[N, K]");
  uint64_t rows = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  if (vk_div_up((uint64_t)t1->dims[0], MM_BN) > lim->maxComputeWorkGroupCount[0] ||
      vk_div_up(rows, MM_BM) > lim->maxComputeWorkGroupCount[1]) {
    return WHY("the linear grid exceeds maxComputeWorkGroupCount");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_transpose) {
  const vnrt_transpose_params *p = &node->params->transpose;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  if (p->rank != t0->rank) return WHY("transpose needs perm with one entry per dim");
  for (int32_t d = 0; d < p->rank; ++d) {
    if (p->perm[d] < 0 || p->perm[d] >= t0->rank) return WHY("perm entry out of range");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_slice) {
  int32_t axis = node->params->slice.axis;
  return axis >= 0 && axis < vk_in_type(g, node, 0)->rank ? 1 : WHY("axis out of range");
}

VK_SUPPORTED_FN(vk_sup_concat) {
  int32_t axis = node->params->concat.axis;
  return axis >= 0 && axis < vk_out_type(g, node, 0)->rank ? 1 : WHY("axis out of range");
}

VK_SUPPORTED_FN(vk_sup_softmax) {
  int32_t axis = node->params->softmax.axis;
  return axis >= 0 && axis < vk_in_type(g, node, 0)->rank ? 1 : WHY("axis out of range");
}

VK_SUPPORTED_FN(vk_sup_rms_norm) {
  return vk_in_type(g, node, 0)->rank >= 1 ? 1 : WHY("rms_norm needs x[..., D]");
}

VK_SUPPORTED_FN(vk_sup_embedding) {
  if (vk_quant_embedding(node)) return vk_sup_qembedding(device, g, node, why, why_size);
  return (vk_in_type(g, node, 0)->rank == 2 && vk_in_type(g, node, 1)->dtype == VNRT_I32)
             ? 1
             : WHY("embedding needs table[V, D] and i32 ids");
}

VK_SUPPORTED_FN(vk_sup_topk) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  int64_t k = node->params->topk.k;
  int64_t e = t0->rank > 0 ? t0->dims[t0->rank - 1] : 1;
  return (k >= 1 && k <= e) ? 1 : WHY("topk needs 1 <= k <= E");
}

VK_SUPPORTED_FN(vk_sup_rope) {
  const vnrt_rope_params *p = &node->params->rope;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  if (t0->rank != 3) return WHY("rope needs x[T, H, D]");
  if (p->dims <= 0 || p->dims > t0->dims[2] || p->dims % 2 != 0) {
    return WHY("rope dims must be even, in (0, D]");
  }
  if (!(p->theta > 0.0) || !isfinite(p->theta)) return WHY("rope theta must be positive");
  if (p->yarn_factor != 0.0 && (!(p->yarn_factor >= 1.0) || p->yarn_orig_ctx < 1 ||
                                !(p->beta_fast > 0.0) || !(p->beta_slow > 0.0))) {
    return WHY("rope YaRN needs yarn_factor >= 1, yarn_orig_ctx >= 1 and positive betas");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_hc_expand) {
  return vk_out_type(g, node, 0)->rank >= 2 ? 1 : WHY("hc_expand needs x[T, C]");
}

VK_SUPPORTED_FN(vk_sup_kv_write) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  const vnrt_tensor_type *tn = vk_in_type(g, node, 1), *tp = vk_in_type(g, node, 2);
  if (t0->rank < 1 || tn->rank != t0->rank || tn->dtype != t0->dtype || tp->dtype != VNRT_I32 ||
      vnrt_numel(tp) != 1) {
    return WHY("kv_write needs cache[S, ...], new[T, ...] of its dtype and pos[1] i32");
  }
  if (node->params->kv_write.ring && t0->dims[0] < 1) return WHY("a ring needs at least one row");
  return 1;
}

VK_SUPPORTED_FN(vk_sup_hadamard) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *o0 = vk_out_type(g, node, 0);
  if (!is_float(t0->dtype) || !is_float(o0->dtype)) return WHY("expects float tensors");
  if (t0->rank < 1) return WHY("hadamard needs x[..., D]");
  int64_t D = t0->dims[t0->rank - 1];
  if (D < 1 || (D & (D - 1)) != 0) return WHY("hadamard needs D a power of 2");
  if ((uint64_t)D > HD_DMAX) return WHY("hadamard kernel handles D <= %u", HD_DMAX);
  return 1;
}

/* ---- Recording ------------------------------------------------------------------------- */

/* A 1-D dispatch of n invocations in workgroups of wg. */
static void grid_1d(vk_builder *b, vk_dispatch_desc *d, uint64_t n, uint32_t wg) {
  vk_grid(b, vk_div_up(n, wg), d->groups);
}

/* One strided copy (copy.comp): iteration dims it[4], source/destination element strides. */
static vnrt_status emit_copy(vk_builder *b, int32_t src, int32_t dst, uint32_t op,
                             const uint64_t it[4], const uint64_t si[4], const uint64_t so[4],
                             uint64_t in_base, uint64_t out_base) {
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_COPY);
  vk_bind(b, &d, 0, src);
  vk_bind(b, &d, 5, dst);
  d.spec[8] = op;
  uint64_t n = it[0] * it[1] * it[2] * it[3];
  vk_push_u(&d, 0, n);
  for (int i = 1; i < 4; ++i) vk_push_u(&d, i, it[i] ? it[i] : 1);
  for (int i = 0; i < 4; ++i) vk_push_u(&d, 4 + i, si[i]);
  for (int i = 0; i < 4; ++i) vk_push_u(&d, 8 + i, so[i]);
  vk_push_u(&d, 12, in_base);
  vk_push_u(&d, 13, out_base);
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

/* One contiguous copy of n elements from src to dst, converting dtypes when they differ. */
static vnrt_status emit_flat_copy(vk_builder *b, int32_t src, int32_t dst, uint32_t op,
                                  uint64_t n) {
  uint64_t it[4] = {1, 1, 1, n}, s[4] = {0, 0, 0, 1};
  return emit_copy(b, src, dst, op, it, s, s, 0, 0);
}

vnrt_status vk_copy_same(vk_builder *b, int32_t src, int32_t dst) {
  vk_view vs = vk_tensor_view(b, src), vd = vk_tensor_view(b, dst);
  if (vs.kind == vd.kind && vs.buffer == vd.buffer && vs.offset == vd.offset) return VNRT_OK;
  const vnrt_backend_graph *g = vk_builder_graph(b);
  uint64_t bytes = vnrt_tensor_type_bytes(&g->tensors[dst].type);
  return vk_emit_copy(b, src, dst, bytes);
}

/* cast and reshape: one flat copy (reshape keeps the dtype, so no conversion). */
VK_RECORD_FN(vk_rec_flat_copy) {
  const vnrt_tensor_type *ti = vk_in_type(g, node, 0), *to = vk_out_type(g, node, 0);
  if (ti->dtype == to->dtype) return vk_copy_same(b, node->inputs[0], node->outputs[0]);
  return emit_flat_copy(b, node->inputs[0], node->outputs[0], ti->dtype != to->dtype ? 1 : 0,
                        (uint64_t)vnrt_numel(to));
}

VK_RECORD_FN(vk_rec_transpose) {
  const vnrt_transpose_params *p = &node->params->transpose;
  const vnrt_tensor_type *ti = vk_in_type(g, node, 0), *to = vk_out_type(g, node, 0);
  int32_t rank = ti->rank, pad = 4 - rank;
  int64_t in_stride[VNRT_MAX_DIMS], out_stride[VNRT_MAX_DIMS];
  uint64_t it[4] = {1, 1, 1, 1}, si[4] = {0}, so[4] = {0};
  vnrt_strides(ti, in_stride);
  vnrt_strides(to, out_stride);
  for (int32_t d = 0; d < rank; ++d) {
    it[pad + d] = (uint64_t)to->dims[d];
    si[pad + d] = (uint64_t)in_stride[p->perm[d]];
    so[pad + d] = (uint64_t)out_stride[d];
  }
  return emit_copy(b, node->inputs[0], node->outputs[0], 0, it, si, so, 0, 0);
}

VK_RECORD_FN(vk_rec_slice) {
  const vnrt_slice_params *p = &node->params->slice;
  const vnrt_tensor_type *ti = vk_in_type(g, node, 0), *to = vk_out_type(g, node, 0);
  int32_t axis = p->axis;
  int64_t dim = ti->dims[axis], len = to->dims[axis], start = p->start; /* start >= 0 */
  uint64_t outer = (uint64_t)vnrt_dims_product(ti, 0, axis);
  uint64_t inner = (uint64_t)vnrt_dims_product(ti, axis + 1, ti->rank);
  uint64_t it[4] = {1, outer, (uint64_t)len, inner};
  uint64_t si[4] = {0, (uint64_t)dim * inner, inner, 1};
  uint64_t so[4] = {0, (uint64_t)len * inner, inner, 1};
  return emit_copy(b, node->inputs[0], node->outputs[0], 0, it, si, so, (uint64_t)start * inner, 0);
}

VK_RECORD_FN(vk_rec_concat) {
  const vnrt_tensor_type *ta = vk_in_type(g, node, 0), *tb = vk_in_type(g, node, 1);
  const vnrt_tensor_type *to = vk_out_type(g, node, 0);
  int32_t axis = node->params->concat.axis, out = node->outputs[0];
  uint64_t outer = (uint64_t)vnrt_dims_product(to, 0, axis);
  uint64_t inner = (uint64_t)vnrt_dims_product(to, axis + 1, to->rank);
  uint64_t da = (uint64_t)ta->dims[axis], db = (uint64_t)tb->dims[axis];
  uint64_t so[4] = {0, (da + db) * inner, inner, 1};
  uint64_t ita[4] = {1, outer, da, inner}, sia[4] = {0, da * inner, inner, 1};
  uint64_t itb[4] = {1, outer, db, inner}, sib[4] = {0, db * inner, inner, 1};
  VK_TRY(emit_copy(b, node->inputs[0], out, 0, ita, sia, so, 0, 0));
  return emit_copy(b, node->inputs[1], out, 0, itb, sib, so, 0, da * inner);
}

VK_RECORD_FN(vk_rec_kv_write) {
  const vnrt_tensor_type *ti = vk_in_type(g, node, 0);
  int32_t in = node->inputs[0], out = node->outputs[0];
  /* Not in place: the cache first, then the new rows (the executor aliases the result with a
   * state's storage when it can, and then only the rows move). */
  VK_TRY(vk_copy_same(b, in, out));
  const vnrt_tensor_type *tn = vk_in_type(g, node, 1);
  uint64_t rows = (uint64_t)ti->dims[0];
  uint64_t row_elems = rows ? (uint64_t)vnrt_numel(ti) / rows : 0;
  uint64_t n = (uint64_t)vnrt_numel(tn);
  if (n == 0 || row_elems == 0) return VNRT_OK;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_COPY);
  vk_bind(b, &d, 0, node->inputs[1]);
  vk_bind(b, &d, 2, node->inputs[2]);
  vk_bind(b, &d, 5, out);
  d.spec[8] = 2;
  if (node->params->kv_write.ring) {
    /* Only the last min(T, S) positions land: the earlier ones would be overwritten. */
    uint64_t T = (uint64_t)tn->dims[0], keep = T < rows ? T : rows;
    d.spec[8] = 3;
    vk_push_u(&d, 12, (T - keep) * row_elems); /* in_base: the first kept element */
    n = keep * row_elems;
  }
  vk_push_u(&d, 0, n);
  vk_push_u(&d, 1, 1), vk_push_u(&d, 2, 1), vk_push_u(&d, 3, n);
  vk_push_u(&d, 14, rows), vk_push_u(&d, 15, row_elems);
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_hc_expand) {
  const vnrt_tensor_type *ti = vk_in_type(g, node, 0), *to = vk_out_type(g, node, 0);
  uint64_t C = ti->rank > 0 ? (uint64_t)ti->dims[ti->rank - 1] : 1;
  uint64_t n = (uint64_t)to->dims[to->rank - 2];
  uint64_t T = C ? (uint64_t)vnrt_numel(ti) / C : 0;
  uint64_t it[4] = {1, T, n, C}, si[4] = {0, C, 0, 1}, so[4] = {0, n * C, C, 1};
  return emit_copy(b, node->inputs[0], node->outputs[0], 0, it, si, so, 0, 0);
}

/* A matmul.comp dispatch of A = input 0, B = input 1 into output 0, without push constants. */
static void gemm_desc(vk_builder *b, const vnrt_backend_node *node, vk_dispatch_desc *d) {
  vk_desc_init(d, VK_SHADER_MATMUL);
  vk_bind(b, d, 0, node->inputs[0]);
  vk_bind(b, d, 1, node->inputs[1]);
  vk_bind(b, d, 5, node->outputs[0]);
}

/* matmul.comp's push constants: M N K a_rs a_cs b_rs b_cs nb1 a_bs0 a_bs1 b_bs0 b_bs1. */
static void gemm_push(vk_dispatch_desc *d, uint64_t M, uint64_t N, uint64_t K,
                      const uint64_t a_b_strides[4], uint64_t nb1, const int64_t abs[2],
                      const int64_t bbs[2]) {
  vk_push_u(d, 0, M), vk_push_u(d, 1, N), vk_push_u(d, 2, K);
  for (int i = 0; i < 4; ++i) vk_push_u(d, 3 + i, a_b_strides[i]);
  vk_push_u(d, 7, nb1);
  vk_push_u(d, 8, (uint64_t)abs[0]), vk_push_u(d, 9, (uint64_t)abs[1]);
  vk_push_u(d, 10, (uint64_t)bbs[0]), vk_push_u(d, 11, (uint64_t)bbs[1]);
}

VK_RECORD_FN(vk_rec_matmul) {
  if (vk_quant_matmul(node)) return vk_rec_qmatmul(b, g, node, code);
  const vnrt_tensor_type *ta = vk_in_type(g, node, 0), *tb = vk_in_type(g, node, 1);
  const vnrt_tensor_type *to = vk_out_type(g, node, 0);
  vk_dispatch_desc d;
  gemm_desc(b, node, &d);
  uint64_t M = (uint64_t)ta->dims[ta->rank - 2], K = (uint64_t)ta->dims[ta->rank - 1];
  uint64_t N = (uint64_t)tb->dims[tb->rank - 1];
  int32_t nb = to->rank - 2;
  uint64_t batch = (uint64_t)vnrt_dims_product(to, 0, nb);
  uint64_t nb1 = nb >= 1 ? (uint64_t)to->dims[to->rank - 3] : 1;
  int64_t abs[2], bbs[2];
  vnrt_matmul_batch_strides(ta, nb, abs);
  vnrt_matmul_batch_strides(tb, nb, bbs);
  /* A: [M, K] row-major; B: [K, N] row-major. */
  const uint64_t st[4] = {K, 1, N, 1};
  gemm_push(&d, M, N, K, st, nb1, abs, bbs);
  d.spec[9] = 1, d.spec[10] = 1;
  return vk_emit_gemm(b, &d, M, N, batch, false);
}

VK_RECORD_FN(vk_rec_linear) {
  if (vk_quant_linear(node)) return vk_rec_qlinear(b, g, node, code);
  const vnrt_tensor_type *ta = vk_in_type(g, node, 0), *tb = vk_in_type(g, node, 1);
  vk_dispatch_desc d;
  gemm_desc(b, node, &d);
  uint64_t K = (uint64_t)tb->dims[1], N = (uint64_t)tb->dims[0];
  uint64_t M = (uint64_t)vnrt_dims_product(ta, 0, ta->rank - 1);
  /* A decode-sized linear on a CPU device: gemv.comp. */
  if (M >= 1 && M <= VK_GEMV_MMAX && vk_gemv_ok(b, ta->dtype, node->inputs[1], NULL, K)) {
    return vk_emit_gemv_linear(b, node, NULL, NULL, false, M, N, K, 0, K, NULL);
  }
  /* B[k][n] = w[n][k]: stride 1 along k, K along n. */
  const uint64_t st[4] = {K, 1, 1, K};
  const int64_t zero[2] = {0, 0};
  gemm_push(&d, M, N, K, st, 1, zero, zero);
  d.spec[9] = 1, d.spec[10] = 0;
  return vk_emit_gemm(b, &d, M, N, 1, true);
}

/* Whether to use the kernels written for CPU devices (invocations are SIMD lanes of a thread,
 * every buffer load a per-lane loop, a barrier a coroutine switch: llvmpipe/lavapipe) rather
 * than those written for GPUs. VNRT_VK_CPU_KERNELS=0 forces the GPU ones, so that tests cover
 * them on lavapipe. */
bool vk_builder_cpu_kernels(vk_builder *b) {
  const char *env = vnrt_host_option(vk_builder_host(b), "vk_cpu_kernels");
  if (env && strcmp(env, "0") == 0) return false;
  return vk_builder_device(b)->phys->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

/* Whether matmul.comp OP 1 may read A and B as vec4: the contiguous dim of each is a multiple
 * of 4 long and every row and batch starts at a multiple of 4 elements. */
static bool gemm_vec4_ok(const vk_dispatch_desc *d) {
  const uint32_t *p = d->push; /* M N K a_rs a_cs b_rs b_cs nb1 a_bs0 a_bs1 b_bs0 b_bs1 */
  bool ok = p[2] % 4 == 0 && p[4] == 1 && p[3] % 4 == 0;
  for (int i = 8; i < 12; ++i) ok = ok && p[i] % 4 == 0;
  if (d->spec[10]) return ok && p[6] == 1 && p[5] % 4 == 0 && p[1] % 4 == 0;
  return ok && p[5] == 1 && p[6] % 4 == 0;
}

/* The register-blocked matmul.comp: log2 of its invocations along n (OP - 1), chosen so that
 * padded columns waste the least work (a proxy that also counts workgroups, up to 4, as
 * parallelism; rows past M cost next to nothing, as invocations past M return at once),
 * preferring more along n (each B element read by more rows); -1 when no grid fits the device
 * (rows in x). */
static int gemm_blocked_ln(const VkPhysicalDeviceLimits *lim, uint64_t M, uint64_t N, uint64_t tm,
                           uint32_t groups[2]) {
  int best = -1;
  double best_cost = 0.0;
  for (int l = 7; l >= 0; --l) {
    uint64_t ln = 1u << l, lm = MB_LANES / ln;
    uint64_t gx = vk_div_up(M, lm * tm), gy = vk_div_up(N, ln * MB_TN);
    if (gx > lim->maxComputeWorkGroupCount[0] || gy > lim->maxComputeWorkGroupCount[1]) continue;
    uint64_t g = gx * gy;
    double rows = (double)(vk_div_up(M, tm) * tm), cols = (double)(gy * ln * MB_TN);
    double cost = rows * cols / (double)(g < 1 ? 1 : g < 4 ? g : 4);
    if (best < 0 || cost < best_cost) {
      best = l, best_cost = cost;
      groups[0] = (uint32_t)gx, groups[1] = (uint32_t)gy;
    }
  }
  return best;
}

vnrt_status vk_emit_gemm(vk_builder *b, vk_dispatch_desc *d, uint64_t M, uint64_t N, uint64_t batch,
                         bool b_k_contiguous) {
  const VkPhysicalDeviceLimits *lim = &vk_builder_device(b)->phys->props.limits;
  uint32_t groups[2] = {0, 0};
  uint64_t tm = M <= MB_TM ? (M ? M : 1) : vk_div_up(M, vk_div_up(M, MB_TM));
  int ln = vk_builder_cpu_kernels(b) ? gemm_blocked_ln(lim, M, N, tm, groups) : -1;
  if (ln >= 0) {
    /* On a CPU device at every M, a single row included: on lavapipe it beats matvec.comp
     * (1.4 vs 3.2 GFLOP per CPU-second at M = 4, docs/vulkan.md). */
    d->shader = VK_SHADER_MATMUL;
    d->spec[8] = 1 + (uint32_t)ln;
    d->spec[9] = (uint32_t)tm;
    d->spec[11] = gemm_vec4_ok(d);
    d->groups[0] = groups[0];
    d->groups[1] = groups[1];
  } else if (M >= 1 && M <= MV_MMAX && b_k_contiguous) {
    /* Decode-sized products: tiles of 32 rows would mostly compute padding. */
    d->shader = VK_SHADER_MATVEC;
    d->spec[9] = d->spec[10] = 0;
    d->spec[11] = (uint32_t)M;
    vk_grid(b, vk_div_up(N, MV_NC), d->groups);
  } else {
    d->shader = VK_SHADER_MATMUL;
    d->groups[0] = (uint32_t)vk_div_up(N, MM_BN);
    d->groups[1] = (uint32_t)vk_div_up(M, MM_BM);
  }
  d->groups[2] = (uint32_t)batch;
  return vk_emit(b, d);
}

/* Splits g = theta^(-2i/dims) / 2pi (turns per position) into g1 + g2 + g3 with g1 and g2
 * of 12 significant bits, so that rope.comp's products with 11-bit pieces of pos are exact. */
static void split_turns(double g, float out[3]) {
  double parts[2] = {0.0, 0.0}, r = g;
  for (int k = 0; k < 2; ++k) {
    if (r <= 0.0) break;
    int e;
    double m = frexp(r, &e);
    parts[k] = ldexp(floor(ldexp(m, 12)), e - 12);
    r -= parts[k];
  }
  out[0] = (float)parts[0];
  out[1] = (float)parts[1];
  out[2] = (float)r;
}

VK_RECORD_FN(vk_rec_rope) {
  const vnrt_rope_params *p = &node->params->rope;
  const vnrt_backend_host *host = vk_builder_host(b);
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0);
  uint64_t T = (uint64_t)tx->dims[0], H = (uint64_t)tx->dims[1], D = (uint64_t)tx->dims[2];
  uint64_t half = (uint64_t)p->dims / 2, first = D - (uint64_t)p->dims;
  float *tab = host->alloc(host->core, sizeof(float) * 3 * (half ? half : 1));
  if (!tab) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  for (uint64_t i = 0; i < half; ++i) {
    /* The CPU reference forms the angle in double; so does this table. */
    double gi = vnrt_rope_freq(p, (int64_t)i) / (2.0 * M_PI);
    split_turns(gi, tab + 3 * i);
  }
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_ROPE);
  vnrt_status s = vk_const_view(b, tab, sizeof(float) * 3 * half, &d.slots[VK_SLOT_CONST]);
  host->free(host->core, tab);
  VK_TRY(s);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[9] = p->interleaved != 0;
  d.spec[10] = p->inverse != 0;
  uint64_t n = T * H * (first + half);
  vk_push_u(&d, 0, n), vk_push_u(&d, 1, H), vk_push_u(&d, 2, D), vk_push_u(&d, 3, first);
  vk_push_u(&d, 4, half);
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_unary) {
  uint64_t n = (uint64_t)vnrt_numel(vk_out_type(g, node, 0));
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_UNARY);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = code;
  vk_push_u(&d, 0, n);
  if (node->op == VNRT_OP_CLAMP) {
    const vnrt_clamp_params *p = &node->params->clamp;
    vk_push_u(&d, 1, p->has_min != 0), vk_push_u(&d, 2, p->has_max != 0);
    vk_push_f(&d, 3, p->has_min ? p->min : 0.0);
    vk_push_f(&d, 4, p->has_max ? p->max : 0.0);
  } else if (node->op == VNRT_OP_SCALE) {
    vk_push_f(&d, 3, node->params->scale.s);
  }
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_binary) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *t1 = vk_in_type(g, node, 1);
  const vnrt_tensor_type *o0 = vk_out_type(g, node, 0);
  uint64_t n = (uint64_t)vnrt_numel(o0);
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_BINARY);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = code;
  int32_t rank = o0->rank, pad = 4 - rank;
  int64_t dims[4], sa[VNRT_MAX_DIMS], sb[VNRT_MAX_DIMS];
  vnrt_dims4(o0, dims);
  vnrt_broadcast_strides(t0, rank, sa);
  vnrt_broadcast_strides(t1, rank, sb);
  d.spec[9] = vnrt_numel(t0) == (int64_t)n && vnrt_numel(t1) == (int64_t)n;
  vk_push_u(&d, 0, n);
  for (int i = 1; i < 4; ++i) vk_push_u(&d, i, dims[i] ? (uint64_t)dims[i] : 1);
  for (int i = 0; i < 4; ++i) {
    vk_push_u(&d, 4 + i, i < pad ? 0 : (uint64_t)sa[i - pad]);
    vk_push_u(&d, 8 + i, i < pad ? 0 : (uint64_t)sb[i - pad]);
  }
  vk_push_f(&d, 12, node->op == VNRT_OP_SWIGLU ? node->params->swiglu.limit : 0.0);
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

/* rownorm.comp over rows of len elements, inner apart (rows contiguous when inner is 1). */
static vnrt_status emit_rownorm(vk_builder *b, vk_dispatch_desc *d, uint64_t rows, uint64_t len,
                                uint64_t inner) {
  vk_push_u(d, 0, rows), vk_push_u(d, 1, len), vk_push_u(d, 2, inner);
  /* On a CPU device (invocations are SIMD lanes of a thread) one invocation per row beats a
   * workgroup per row as soon as there are rows enough to fill a few lane vectors. */
  if (vk_builder_cpu_kernels(b) && rows >= RN_LANE_MIN_ROWS) {
    /* Fewer rows per workgroup when there are few: workgroups are what threads share (idle
     * invocations of a workgroup cost little, whole lane vectors of them nothing). */
    uint64_t rpg = WG_ROWNORM;
    while (rpg > 8 && rows / rpg < 8) rpg /= 2;
    d->spec[10] = 1;
    d->spec[11] = inner == 1 && len % 4 == 0;
    vk_push_u(d, 4, rpg);
    grid_1d(b, d, rows, (uint32_t)rpg);
  } else {
    vk_grid(b, rows, d->groups);
  }
  return vk_emit(b, d);
}

VK_RECORD_FN(vk_rec_rms_norm) {
  const vnrt_rms_norm_params *p = &node->params->rms_norm;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_ROWNORM);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 1;
  if (p->has_weight) {
    vk_bind(b, &d, 1, node->inputs[1]);
    d.spec[9] = 1;
  }
  vk_push_f(&d, 3, p->eps);
  uint64_t len = (uint64_t)t0->dims[t0->rank - 1];
  uint64_t rows = len ? (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1) : 0;
  return emit_rownorm(b, &d, rows, len, 1);
}

VK_RECORD_FN(vk_rec_softmax) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  int32_t axis = node->params->softmax.axis;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_ROWNORM);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 2;
  uint64_t len = (uint64_t)t0->dims[axis];
  uint64_t outer = (uint64_t)vnrt_dims_product(t0, 0, axis);
  uint64_t inner = (uint64_t)vnrt_dims_product(t0, axis + 1, t0->rank);
  return emit_rownorm(b, &d, len ? outer * inner : 0, len, inner);
}

VK_RECORD_FN(vk_rec_embedding) {
  if (vk_quant_embedding(node)) return vk_rec_qembedding(b, g, node, code);
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t n = (uint64_t)vnrt_numel(vk_out_type(g, node, 0));
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_GATHER);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 0;
  vk_push_u(&d, 0, n), vk_push_u(&d, 1, (uint64_t)t0->dims[1]), vk_push_u(&d, 2, 1);
  vk_push_u(&d, 3, (uint64_t)t0->dims[0]);
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_topk) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t E = t0->rank > 0 ? (uint64_t)t0->dims[t0->rank - 1] : 1;
  uint64_t rows = E ? (uint64_t)vnrt_numel(t0) / E : 0;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_TOPK);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  vk_bind(b, &d, 6, node->outputs[1]);
  vk_push_u(&d, 0, rows), vk_push_u(&d, 1, E);
  vk_push_u(&d, 2, (uint64_t)node->params->topk.k);
  d.spec[9] = node->params->topk.has_fill != 0;
  vk_push_u(&d, 3, (uint32_t)node->params->topk.fill);
  if (vk_builder_cpu_kernels(b) && t0->dtype == VNRT_F32 && rows <= TOPK_RANK_ROWS && E % 4 == 0 &&
      E / 4 <= TOPK_RANK_ITER && vk_texel_ok(b, node->inputs[0], VK_TEXEL_BYTES)) {
    /* OP 1: an invocation per element, its rank counted against the row read as texels. */
    vk_bind(b, &d, 3, node->inputs[0]);
    d.texel3 = true;
    d.spec[8] = 1;
    vk_grid(b, vk_div_up(rows * E, WG_TOPK), d.groups);
    return vk_emit(b, &d);
  }
  vk_grid(b, rows, d.groups);
  return vk_emit(b, &d);
}

/* A workgroup per row: the butterflies in shared memory, as cpu_ref_hadamard orders them. */
VK_RECORD_FN(vk_rec_hadamard) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t D = (uint64_t)t0->dims[t0->rank - 1];
  uint64_t rows = (uint64_t)vnrt_dims_product(t0, 0, t0->rank - 1);
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_HADAMARD);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  vk_push_u(&d, 0, rows), vk_push_u(&d, 1, D);
  vk_push_f(&d, 2, 1.0 / sqrt((double)D)); /* rounded to f32 once, as the reference does */
  vk_grid(b, rows, d.groups);
  return vk_emit(b, &d);
}
