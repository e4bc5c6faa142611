/* Op dispatch for elementwise, shape, linear algebra, norm, indexing and rope ops: which
 * shader runs a node, with which specialization constants, push constants and grid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

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

/* Op codes of unary.comp and binary.comp. */
static uint32_t unary_code(vnrt_op op) {
  switch (op) {
    case VNRT_OP_NEG:
      return 1;
    case VNRT_OP_EXP:
      return 2;
    case VNRT_OP_SQRT:
      return 3;
    case VNRT_OP_RSQRT:
      return 4;
    case VNRT_OP_TANH:
      return 5;
    case VNRT_OP_RELU:
      return 6;
    case VNRT_OP_SIGMOID:
      return 7;
    case VNRT_OP_SILU:
      return 8;
    case VNRT_OP_GELU:
      return 9;
    case VNRT_OP_SOFTPLUS:
      return 10;
    case VNRT_OP_SQRT_SOFTPLUS:
      return 11;
    case VNRT_OP_CLAMP:
      return 12;
    case VNRT_OP_SCALE:
      return 13;
    default:
      return 0;
  }
}

static uint32_t binary_code(vnrt_op op) {
  switch (op) {
    case VNRT_OP_ADD:
      return 1;
    case VNRT_OP_SUB:
      return 2;
    case VNRT_OP_MUL:
      return 3;
    case VNRT_OP_DIV:
      return 4;
    case VNRT_OP_SWIGLU:
      return 5;
    default:
      return 0;
  }
}

bool vk_ops_basic_has(vnrt_op op) {
  if (unary_code(op) || binary_code(op)) return true;
  switch (op) {
    case VNRT_OP_CAST:
    case VNRT_OP_RESHAPE:
    case VNRT_OP_TRANSPOSE:
    case VNRT_OP_SLICE:
    case VNRT_OP_CONCAT:
    case VNRT_OP_MATMUL:
    case VNRT_OP_LINEAR:
    case VNRT_OP_RMS_NORM:
    case VNRT_OP_SOFTMAX:
    case VNRT_OP_EMBEDDING:
    case VNRT_OP_TOPK:
    case VNRT_OP_ROPE:
    case VNRT_OP_HC_EXPAND:
    case VNRT_OP_KV_WRITE:
      return true;
    default:
      return false;
  }
}

static int64_t numel(const vnrt_tensor_type *t) { return vnrt_tensor_type_numel(t); }

static bool is_float(vnrt_dtype d) { return d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16; }

static int64_t norm_axis(int64_t axis, int32_t rank) {
  if (axis < 0) axis += rank;
  return (axis < 0 || axis >= rank) ? -1 : axis;
}

/* Batch strides of a matmul operand against nb result batch dims (right-aligned, padded to
 * 2; broadcast dims get stride 0), as the CPU reference computes them. */
static void batch_strides(const vnrt_tensor_type *t, int32_t nb, uint64_t out[2]) {
  int32_t tb = t->rank - 2;
  uint64_t s = (uint64_t)(t->dims[t->rank - 2] * t->dims[t->rank - 1]);
  out[0] = out[1] = 0;
  for (int32_t d = nb - 1; d >= 0; --d) {
    int32_t td = d - (nb - tb);
    if (td < 0) break;
    out[2 - nb + d] = t->dims[td] == 1 ? 0 : s;
    s *= (uint64_t)t->dims[td];
  }
}

#define WHY(...) (snprintf(why, why_size, __VA_ARGS__), 0)

int vk_ops_basic_supported(const vnrt_backend_device *dev, const vnrt_backend_graph *g,
                           const vnrt_backend_node *node, char *why, size_t why_size) {
  const VkPhysicalDeviceLimits *lim = &dev->phys->props.limits;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  const vnrt_tensor_type *o0 = vk_out_type(g, node, 0);
  switch (node->op) {
    case VNRT_OP_MATMUL: {
      const vnrt_tensor_type *t1 = vk_in_type(g, node, 1);
      if (t0->rank < 2 || t1->rank < 2 || o0->rank < 2 || o0->rank > 4) {
        return WHY("matmul needs [..., M, K] x [..., K, N] with at most 2 batch dims");
      }
      int64_t batch = numel(o0) / (o0->dims[o0->rank - 2] * o0->dims[o0->rank - 1] > 0
                                       ? o0->dims[o0->rank - 2] * o0->dims[o0->rank - 1]
                                       : 1);
      if (vk_div_up((uint64_t)o0->dims[o0->rank - 1], MM_BN) > lim->maxComputeWorkGroupCount[0] ||
          vk_div_up((uint64_t)o0->dims[o0->rank - 2], MM_BM) > lim->maxComputeWorkGroupCount[1] ||
          (uint64_t)batch > lim->maxComputeWorkGroupCount[2]) {
        return WHY("the matmul grid exceeds maxComputeWorkGroupCount");
      }
      return 1;
    }
    case VNRT_OP_LINEAR: {
      const vnrt_tensor_type *t1 = vk_in_type(g, node, 1);
      if (t0->rank < 1 || t1->rank != 2) return WHY("linear needs x[..., K] and w[N, K]");
      uint64_t rows =
          t0->dims[t0->rank - 1] > 0 ? (uint64_t)(numel(t0) / t0->dims[t0->rank - 1]) : 1;
      if (vk_div_up((uint64_t)t1->dims[0], MM_BN) > lim->maxComputeWorkGroupCount[0] ||
          vk_div_up(rows, MM_BM) > lim->maxComputeWorkGroupCount[1]) {
        return WHY("the linear grid exceeds maxComputeWorkGroupCount");
      }
      return 1;
    }
    case VNRT_OP_TRANSPOSE: {
      const vnrt_attr *perm = vnrt_node_attr(node, "perm");
      if (!perm || perm->kind != VNRT_ATTR_INTS || perm->count != t0->rank) {
        return WHY("transpose needs perm with one entry per dim");
      }
      for (int32_t d = 0; d < perm->count; ++d) {
        if (perm->ints[d] < 0 || perm->ints[d] >= t0->rank) return WHY("perm entry out of range");
      }
      return 1;
    }
    case VNRT_OP_SLICE:
      return norm_axis(vnrt_node_attr_i(node, "axis", 0), t0->rank) >= 0 ? 1
                                                                         : WHY("axis out of range");
    case VNRT_OP_CONCAT:
      return norm_axis(vnrt_node_attr_i(node, "axis", 0), o0->rank) >= 0 ? 1
                                                                         : WHY("axis out of range");
    case VNRT_OP_SOFTMAX:
      return norm_axis(vnrt_node_attr_i(node, "axis", -1), t0->rank) >= 0
                 ? 1
                 : WHY("axis out of range");
    case VNRT_OP_RMS_NORM:
      return t0->rank >= 1 ? 1 : WHY("rms_norm needs x[..., D]");
    case VNRT_OP_EMBEDDING:
      return (t0->rank == 2 && vk_in_type(g, node, 1)->dtype == VNRT_I32)
                 ? 1
                 : WHY("embedding needs table[V, D] and i32 ids");
    case VNRT_OP_TOPK: {
      int64_t k = vnrt_node_attr_i(node, "k", 0);
      int64_t e = t0->rank > 0 ? t0->dims[t0->rank - 1] : 1;
      return (k >= 1 && k <= e) ? 1 : WHY("topk needs 1 <= k <= E");
    }
    case VNRT_OP_ROPE: {
      if (t0->rank != 3) return WHY("rope needs x[T, H, D]");
      int64_t D = t0->dims[2], dims = vnrt_node_attr_i(node, "dims", D);
      double theta = vnrt_node_attr_f(node, "theta", 10000.0);
      if (dims <= 0 || dims > D || dims % 2 != 0) return WHY("rope dims must be even, in (0, D]");
      if (!(theta > 0.0) || !isfinite(theta)) return WHY("rope theta must be positive");
      return 1;
    }
    case VNRT_OP_HC_EXPAND:
      return o0->rank >= 2 ? 1 : WHY("hc_expand needs x[T, C]");
    case VNRT_OP_CAST:
    case VNRT_OP_RESHAPE:
      return 1;
    case VNRT_OP_KV_WRITE: {
      const vnrt_tensor_type *tn = vk_in_type(g, node, 1), *tp = vk_in_type(g, node, 2);
      if (t0->rank < 1 || tn->rank != t0->rank || tn->dtype != t0->dtype || tp->dtype != VNRT_I32 ||
          numel(tp) != 1) {
        return WHY("kv_write needs cache[S, ...], new[T, ...] of its dtype and pos[1] i32");
      }
      return 1;
    }
    default:
      break;
  }
  if (unary_code(node->op) || binary_code(node->op)) {
    if (!is_float(t0->dtype) || o0->rank > 4) return WHY("expects float tensors of rank <= 4");
    return 1;
  }
  return WHY("no kernel");
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

/* [outer, axis, inner] sizes of t around axis. */
static void split_axis(const vnrt_tensor_type *t, int32_t axis, uint64_t *outer, uint64_t *inner) {
  uint64_t o = 1, in = 1;
  for (int32_t d = 0; d < axis; ++d) o *= (uint64_t)t->dims[d];
  for (int32_t d = axis + 1; d < t->rank; ++d) in *= (uint64_t)t->dims[d];
  *outer = o;
  *inner = in;
}

static vnrt_status record_copy_ops(vk_builder *b, const vnrt_backend_graph *g,
                                   const vnrt_backend_node *node) {
  const vnrt_tensor_type *ti = vk_in_type(g, node, 0), *to = vk_out_type(g, node, 0);
  int32_t in = node->inputs[0], out = node->outputs[0];
  switch (node->op) {
    case VNRT_OP_RESHAPE:
    case VNRT_OP_CAST: {
      uint64_t n = (uint64_t)numel(to);
      uint64_t it[4] = {1, 1, 1, n}, s[4] = {0, 0, 0, 1};
      uint32_t op = (node->op == VNRT_OP_CAST && ti->dtype != to->dtype) ? 1 : 0;
      return emit_copy(b, in, out, op, it, s, s, 0, 0);
    }
    case VNRT_OP_TRANSPOSE: {
      const vnrt_attr *perm = vnrt_node_attr(node, "perm");
      int32_t rank = ti->rank, pad = 4 - rank;
      uint64_t in_stride[4], it[4] = {1, 1, 1, 1}, si[4] = {0}, so[4] = {0};
      uint64_t s = 1;
      for (int32_t d = rank - 1; d >= 0; --d) {
        in_stride[d] = s;
        s *= (uint64_t)ti->dims[d];
      }
      s = 1;
      for (int32_t d = rank - 1; d >= 0; --d) {
        it[pad + d] = (uint64_t)to->dims[d];
        si[pad + d] = in_stride[perm->ints[d]];
        so[pad + d] = s;
        s *= (uint64_t)to->dims[d];
      }
      return emit_copy(b, in, out, 0, it, si, so, 0, 0);
    }
    case VNRT_OP_SLICE: {
      int32_t axis = (int32_t)norm_axis(vnrt_node_attr_i(node, "axis", 0), ti->rank);
      int64_t dim = ti->dims[axis], len = to->dims[axis];
      int64_t start = vnrt_node_attr_i(node, "start", 0);
      if (start < 0) start += dim;
      uint64_t outer, inner;
      split_axis(ti, axis, &outer, &inner);
      uint64_t it[4] = {1, outer, (uint64_t)len, inner};
      uint64_t si[4] = {0, (uint64_t)dim * inner, inner, 1};
      uint64_t so[4] = {0, (uint64_t)len * inner, inner, 1};
      return emit_copy(b, in, out, 0, it, si, so, (uint64_t)start * inner, 0);
    }
    case VNRT_OP_CONCAT: {
      int32_t axis = (int32_t)norm_axis(vnrt_node_attr_i(node, "axis", 0), to->rank);
      const vnrt_tensor_type *tb = vk_in_type(g, node, 1);
      uint64_t outer, inner;
      split_axis(to, axis, &outer, &inner);
      uint64_t da = (uint64_t)ti->dims[axis], db = (uint64_t)tb->dims[axis];
      uint64_t so[4] = {0, (da + db) * inner, inner, 1};
      uint64_t ita[4] = {1, outer, da, inner}, sia[4] = {0, da * inner, inner, 1};
      uint64_t itb[4] = {1, outer, db, inner}, sib[4] = {0, db * inner, inner, 1};
      VK_TRY(emit_copy(b, in, out, 0, ita, sia, so, 0, 0));
      return emit_copy(b, node->inputs[1], out, 0, itb, sib, so, 0, da * inner);
    }
    case VNRT_OP_KV_WRITE: {
      /* Not in place: the cache first, then the new rows (the executor aliases the result
       * with a state's storage when it can, and then only the rows move). */
      vk_view vc = vk_tensor_view(b, in), vo = vk_tensor_view(b, out);
      if (vc.buffer != vo.buffer || vc.offset != vo.offset) {
        uint64_t n = (uint64_t)numel(to);
        uint64_t it[4] = {1, 1, 1, n}, s[4] = {0, 0, 0, 1};
        VK_TRY(emit_copy(b, in, out, 0, it, s, s, 0, 0));
      }
      const vnrt_tensor_type *tn = vk_in_type(g, node, 1);
      uint64_t rows = (uint64_t)ti->dims[0];
      uint64_t row_elems = rows ? (uint64_t)numel(ti) / rows : 0;
      uint64_t n = (uint64_t)numel(tn);
      if (n == 0 || row_elems == 0) return VNRT_OK;
      vk_dispatch_desc d;
      vk_desc_init(&d, VK_SHADER_COPY);
      vk_bind(b, &d, 0, node->inputs[1]);
      vk_bind(b, &d, 2, node->inputs[2]);
      vk_bind(b, &d, 5, out);
      d.spec[8] = 2;
      vk_push_u(&d, 0, n);
      vk_push_u(&d, 1, 1), vk_push_u(&d, 2, 1), vk_push_u(&d, 3, n);
      vk_push_u(&d, 14, rows), vk_push_u(&d, 15, row_elems);
      grid_1d(b, &d, n, WG_ELEM);
      return vk_emit(b, &d);
    }
    case VNRT_OP_HC_EXPAND: {
      uint64_t C = ti->rank > 0 ? (uint64_t)ti->dims[ti->rank - 1] : 1;
      uint64_t n = (uint64_t)to->dims[to->rank - 2];
      uint64_t T = C ? (uint64_t)numel(ti) / C : 0;
      uint64_t it[4] = {1, T, n, C}, si[4] = {0, C, 0, 1}, so[4] = {0, n * C, C, 1};
      return emit_copy(b, in, out, 0, it, si, so, 0, 0);
    }
    default:
      return VNRT_ERROR_INTERNAL;
  }
}

static vnrt_status record_linalg(vk_builder *b, const vnrt_backend_graph *g,
                                 const vnrt_backend_node *node) {
  const vnrt_tensor_type *ta = vk_in_type(g, node, 0), *tb = vk_in_type(g, node, 1);
  const vnrt_tensor_type *to = vk_out_type(g, node, 0);
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MATMUL);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 5, node->outputs[0]);
  uint64_t M, N, K, batch = 1, nb1 = 1, abs[2] = {0, 0}, bbs[2] = {0, 0};
  if (node->op == VNRT_OP_MATMUL) {
    M = (uint64_t)ta->dims[ta->rank - 2];
    K = (uint64_t)ta->dims[ta->rank - 1];
    N = (uint64_t)tb->dims[tb->rank - 1];
    int32_t nb = to->rank - 2;
    for (int32_t i = 0; i < nb; ++i) batch *= (uint64_t)to->dims[i];
    if (nb >= 1) nb1 = (uint64_t)to->dims[to->rank - 3];
    batch_strides(ta, nb, abs);
    batch_strides(tb, nb, bbs);
    /* A: [M, K] row-major; B: [K, N] row-major. */
    vk_push_u(&d, 3, K), vk_push_u(&d, 4, 1), vk_push_u(&d, 5, N), vk_push_u(&d, 6, 1);
    d.spec[9] = 1, d.spec[10] = 1;
  } else {
    K = (uint64_t)tb->dims[1];
    N = (uint64_t)tb->dims[0];
    M = 1;
    for (int32_t i = 0; i < ta->rank - 1; ++i) M *= (uint64_t)ta->dims[i];
    /* B[k][n] = w[n][k]: stride 1 along k, K along n. */
    vk_push_u(&d, 3, K), vk_push_u(&d, 4, 1), vk_push_u(&d, 5, 1), vk_push_u(&d, 6, K);
    d.spec[9] = 1, d.spec[10] = 0;
  }
  vk_push_u(&d, 0, M), vk_push_u(&d, 1, N), vk_push_u(&d, 2, K);
  vk_push_u(&d, 7, nb1);
  vk_push_u(&d, 8, abs[0]), vk_push_u(&d, 9, abs[1]);
  vk_push_u(&d, 10, bbs[0]), vk_push_u(&d, 11, bbs[1]);
  return vk_emit_gemm(b, &d, M, N, batch, node->op == VNRT_OP_LINEAR);
}

/* Whether to use the kernels written for CPU devices (invocations are SIMD lanes of a thread,
 * every buffer load a per-lane loop, a barrier a coroutine switch: llvmpipe/lavapipe) rather
 * than those written for GPUs. VNRT_VK_CPU_KERNELS=0 forces the GPU ones, so that tests cover
 * them on lavapipe. */
bool vk_builder_cpu_kernels(vk_builder *b) {
  const char *env = getenv("VNRT_VK_CPU_KERNELS");
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

static vnrt_status record_rope(vk_builder *b, const vnrt_backend_graph *g,
                               const vnrt_backend_node *node) {
  const vnrt_backend_host *host = vk_builder_host(b);
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0);
  uint64_t T = (uint64_t)tx->dims[0], H = (uint64_t)tx->dims[1], D = (uint64_t)tx->dims[2];
  int64_t dims = vnrt_node_attr_i(node, "dims", (int64_t)D);
  double theta = vnrt_node_attr_f(node, "theta", 10000.0);
  uint64_t half = (uint64_t)dims / 2, first = D - (uint64_t)dims;
  float *tab = host->alloc(host->core, sizeof(float) * 3 * (half ? half : 1));
  if (!tab) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  for (uint64_t i = 0; i < half; ++i) {
    /* The CPU reference forms the angle in double; so does this table. */
    double gi = pow(theta, -2.0 * (double)i / (double)dims) / (2.0 * M_PI);
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
  d.spec[9] = vnrt_node_attr_i(node, "interleaved", 1) != 0;
  uint64_t n = T * H * (first + half);
  vk_push_u(&d, 0, n), vk_push_u(&d, 1, H), vk_push_u(&d, 2, D), vk_push_u(&d, 3, first);
  vk_push_u(&d, 4, half);
  grid_1d(b, &d, n, WG_ELEM);
  return vk_emit(b, &d);
}

vnrt_status vk_ops_basic_record(vk_builder *b, const vnrt_backend_graph *g,
                                const vnrt_backend_node *node) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *o0 = vk_out_type(g, node, 0);
  uint64_t n_out = (uint64_t)numel(o0);
  vk_dispatch_desc d;
  uint32_t code = unary_code(node->op);
  if (code) {
    vk_desc_init(&d, VK_SHADER_UNARY);
    vk_bind(b, &d, 0, node->inputs[0]);
    vk_bind(b, &d, 5, node->outputs[0]);
    d.spec[8] = code;
    vk_push_u(&d, 0, n_out);
    if (node->op == VNRT_OP_CLAMP) {
      const vnrt_attr *lo = vnrt_node_attr(node, "min"), *hi = vnrt_node_attr(node, "max");
      vk_push_u(&d, 1, lo != NULL), vk_push_u(&d, 2, hi != NULL);
      vk_push_f(&d, 3, lo ? vnrt_node_attr_f(node, "min", 0.0) : 0.0);
      vk_push_f(&d, 4, hi ? vnrt_node_attr_f(node, "max", 0.0) : 0.0);
    } else if (node->op == VNRT_OP_SCALE) {
      vk_push_f(&d, 3, vnrt_node_attr_f(node, "s", 1.0));
    }
    grid_1d(b, &d, n_out, WG_ELEM);
    return vk_emit(b, &d);
  }
  code = binary_code(node->op);
  if (code) {
    const vnrt_tensor_type *t1 = vk_in_type(g, node, 1);
    vk_desc_init(&d, VK_SHADER_BINARY);
    vk_bind(b, &d, 0, node->inputs[0]);
    vk_bind(b, &d, 1, node->inputs[1]);
    vk_bind(b, &d, 5, node->outputs[0]);
    d.spec[8] = code;
    int32_t rank = o0->rank, pad = 4 - rank;
    uint64_t dims[4] = {1, 1, 1, 1}, sa[4] = {0}, sb[4] = {0};
    bool same = numel(t0) == (int64_t)n_out && numel(t1) == (int64_t)n_out;
    const vnrt_tensor_type *ops[2] = {t0, t1};
    uint64_t *strides[2] = {sa, sb};
    for (int k = 0; k < 2; ++k) {
      /* Right-aligned; an extent-1 or missing dim repeats (stride 0). */
      uint64_t s = 1;
      for (int32_t dd = rank - 1; dd >= 0; --dd) {
        int32_t id = dd - (rank - ops[k]->rank);
        if (id < 0) continue;
        strides[k][pad + dd] = ops[k]->dims[id] == 1 ? 0 : s;
        s *= (uint64_t)ops[k]->dims[id];
      }
    }
    for (int32_t dd = 0; dd < rank; ++dd) dims[pad + dd] = (uint64_t)o0->dims[dd];
    d.spec[9] = same;
    vk_push_u(&d, 0, n_out);
    for (int i = 1; i < 4; ++i) vk_push_u(&d, i, dims[i] ? dims[i] : 1);
    for (int i = 0; i < 4; ++i) vk_push_u(&d, 4 + i, sa[i]), vk_push_u(&d, 8 + i, sb[i]);
    vk_push_f(&d, 12, node->op == VNRT_OP_SWIGLU ? vnrt_node_attr_f(node, "limit", 0.0) : 0.0);
    grid_1d(b, &d, n_out, WG_ELEM);
    return vk_emit(b, &d);
  }
  switch (node->op) {
    case VNRT_OP_CAST:
    case VNRT_OP_RESHAPE:
    case VNRT_OP_TRANSPOSE:
    case VNRT_OP_SLICE:
    case VNRT_OP_CONCAT:
    case VNRT_OP_HC_EXPAND:
    case VNRT_OP_KV_WRITE:
      return record_copy_ops(b, g, node);
    case VNRT_OP_MATMUL:
    case VNRT_OP_LINEAR:
      return record_linalg(b, g, node);
    case VNRT_OP_ROPE:
      return record_rope(b, g, node);
    case VNRT_OP_RMS_NORM:
    case VNRT_OP_SOFTMAX: {
      vk_desc_init(&d, VK_SHADER_ROWNORM);
      vk_bind(b, &d, 0, node->inputs[0]);
      vk_bind(b, &d, 5, node->outputs[0]);
      uint64_t outer, inner, len;
      if (node->op == VNRT_OP_RMS_NORM) {
        len = (uint64_t)t0->dims[t0->rank - 1];
        inner = 1;
        outer = len ? n_out / len : 0;
        d.spec[8] = 1;
        if (node->n_inputs > 1) {
          vk_bind(b, &d, 1, node->inputs[1]);
          d.spec[9] = 1;
        }
        vk_push_f(&d, 3, vnrt_node_attr_f(node, "eps", 1e-6));
      } else {
        int32_t axis = (int32_t)norm_axis(vnrt_node_attr_i(node, "axis", -1), t0->rank);
        len = (uint64_t)t0->dims[axis];
        split_axis(t0, axis, &outer, &inner);
        d.spec[8] = 2;
      }
      uint64_t rows = len ? outer * inner : 0;
      vk_push_u(&d, 0, rows), vk_push_u(&d, 1, len), vk_push_u(&d, 2, inner);
      /* On a CPU device (invocations are SIMD lanes of a thread) one invocation per row beats
       * a workgroup per row as soon as there are rows enough to fill a few lane vectors. */
      if (vk_builder_cpu_kernels(b) && rows >= RN_LANE_MIN_ROWS) {
        /* Fewer rows per workgroup when there are few: workgroups are what threads share
         * (idle invocations of a workgroup cost little, whole lane vectors of them nothing). */
        uint64_t rpg = WG_ROWNORM;
        while (rpg > 8 && rows / rpg < 8) rpg /= 2;
        d.spec[10] = 1;
        d.spec[11] = inner == 1 && len % 4 == 0;
        vk_push_u(&d, 4, rpg);
        grid_1d(b, &d, rows, (uint32_t)rpg);
      } else {
        vk_grid(b, rows, d.groups);
      }
      return vk_emit(b, &d);
    }
    case VNRT_OP_EMBEDDING: {
      vk_desc_init(&d, VK_SHADER_GATHER);
      vk_bind(b, &d, 0, node->inputs[0]);
      vk_bind(b, &d, 1, node->inputs[1]);
      vk_bind(b, &d, 5, node->outputs[0]);
      d.spec[8] = 0;
      vk_push_u(&d, 0, n_out), vk_push_u(&d, 1, t0->dims[1]), vk_push_u(&d, 2, 1);
      vk_push_u(&d, 3, t0->dims[0]);
      grid_1d(b, &d, n_out, WG_ELEM);
      return vk_emit(b, &d);
    }
    case VNRT_OP_TOPK: {
      uint64_t E = t0->rank > 0 ? (uint64_t)t0->dims[t0->rank - 1] : 1;
      uint64_t rows = E ? (uint64_t)numel(t0) / E : 0;
      vk_desc_init(&d, VK_SHADER_TOPK);
      vk_bind(b, &d, 0, node->inputs[0]);
      vk_bind(b, &d, 5, node->outputs[0]);
      vk_bind(b, &d, 6, node->outputs[1]);
      vk_push_u(&d, 0, rows), vk_push_u(&d, 1, E);
      vk_push_u(&d, 2, (uint64_t)vnrt_node_attr_i(node, "k", 1));
      vk_grid(b, rows, d.groups);
      return vk_emit(b, &d);
    }
    default:
      return vk_builder_host(b)->error(vk_builder_host(b)->core, VNRT_ERROR_INTERNAL,
                                       "vulkan: no recorder for op %s", vnrt_op_name(node->op));
  }
}
