/* The supported and record functions of the op table (vk_ops.c) for the DeepSeek-V4 attention
 * ops (docs/ops.md, "DeepSeek-V4 attention"): kv_compress, kv_scatter and index_scores
 * (shaders/vulkan/v4.comp), sparse_attention (sparse_attention.comp) and grouped_linear
 * (matmul.comp batched over the groups for plain weights, quant.comp's GEMM with group
 * offsets for e4m3/e2m1 codes). The extended rope, topk and kv_write are in vk_ops_basic.c. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "vk_internal.h"

#define WG_V4 64u       /* WG of v4.comp */
#define WG_QGEMM 64u    /* WG of quant.comp */
#define QG_RM 4u        /* rows per invocation of quant.comp's GEMM */
#define SA_DMAX 1024    /* sparse_attention.comp: WG * DPER channels */
#define SA_WG 128u      /* WG of sparse_attention.comp */
#define SA_NS_MAX 80000 /* keys per query on CPU devices (llvmpipe's loop limit, below) */
#define WG_ELEM 128u
#define SD_TMAX 4         /* sparse_decode.comp: query rows of the decode path */
#define SD_ITER_MAX 60000 /* its loop iterations per invocation (llvmpipe stops at 65535) */

enum {
  V4_KVC_ENTRIES = 1,
  V4_KVC_STATES = 2,
  V4_SCATTER_MARK = 3,
  V4_SCATTER = 4,
  V4_INDEX = 5,
  V4_INDEX_COMBINE = 6,
  V4_SCATTER_INIT = 7,
  V4_KVC_RUN_ROWS = 8,
  V4_SCATTER_ONE = 9,
  V4_KVC_STEP = 10,
};

#define WHY(...) (snprintf(why, why_size, __VA_ARGS__), 0)

static bool is_float(vnrt_dtype d) { return d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16; }
static bool is_codes(vnrt_dtype d) { return d == VNRT_E4M3 || d == VNRT_E2M1; }

/* Whether n invocations (or workgroups, per_group 1) fit the grid and 32-bit indexing. */
static int grid_ok(const vnrt_backend_device *device, uint64_t n, uint64_t per_group, char *why,
                   size_t why_size) {
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  if (n >= (1ull << 31) || vk_div_up(n, per_group) > (uint64_t)lim->maxComputeWorkGroupCount[0] *
                                                         lim->maxComputeWorkGroupCount[1]) {
    return WHY("the grid exceeds maxComputeWorkGroupCount or 2^31 invocations");
  }
  return 1;
}

/* Whether every tensor of node has fewer than 2^31 elements (the kernels index with uint). */
static int sizes_ok(const vnrt_backend_graph *g, const vnrt_backend_node *node, char *why,
                    size_t why_size) {
  for (int i = 0; i < node->n_inputs; ++i) {
    if (vnrt_numel(vk_in_type(g, node, i)) >= (1ll << 31)) return WHY("a tensor exceeds 2^31");
  }
  for (int i = 0; i < node->n_outputs; ++i) {
    if (vnrt_numel(vk_out_type(g, node, i)) >= (1ll << 31)) return WHY("a tensor exceeds 2^31");
  }
  return 1;
}

/* v4.comp and sparse_attention.comp hold several passes, so their SPIR-V references every
 * slot: one left on the shared dummy buffer would be seen (by synchronization validation) as
 * read and written by unrelated dispatches with no barrier between. Unused slots get a
 * scratch word of this node instead, which the barrier tracking sees. */
static vnrt_status emit_padded(vk_builder *b, vk_dispatch_desc *d) {
  vk_dispatch_desc e = *d;
  for (int s = 0; s <= VK_SLOT_SCRATCH; ++s) {
    if (e.slots[s].kind == VK_VIEW_NONE) e.slots[s] = vk_scratch_view(b, 16);
  }
  return vk_emit(b, &e);
}

/* ---- kv_compress ----------------------------------------------------------------------- */

/* Whether state tensor `in` can be copied to `out` as a whole: the same tensor (no copy), or
 * ranges that do not overlap, of one size. */
static bool state_copyable(const vnrt_backend_graph *g, int32_t in, int32_t out) {
  const vnrt_backend_tensor *ti = &g->tensors[in], *to = &g->tensors[out];
  uint64_t bi = vnrt_tensor_type_bytes(&ti->type), bo = vnrt_tensor_type_bytes(&to->type);
  if (bi != bo || bi == 0 || ti->type.dtype != to->type.dtype) return false;
  if (ti->buffer == to->buffer && ti->offset == to->offset) return true;
  return ti->buffer != to->buffer || ti->offset + bi <= to->offset || to->offset + bo <= ti->offset;
}

/* Whether the executor gave tensors s and t the same place (an in-place state update). */
static bool same_place(vk_builder *b, int32_t s, int32_t t) {
  vk_view vs = vk_tensor_view(b, s), vt = vk_tensor_view(b, t);
  return vs.kind == vt.kind && vs.buffer == vt.buffer && vs.offset == vt.offset;
}

VK_SUPPORTED_FN(vk_sup_kv_compress) {
  const vnrt_kv_compress_params *p = &node->params->kv_compress;
  const vnrt_tensor_type *ta = vk_in_type(g, node, 0);
  if (ta->rank != 2 || p->ratio < 1 || p->width < 1) return WHY("kv_compress needs a[T, c*d]");
  if (!sizes_ok(g, node, why, why_size)) return 0;
  uint64_t c = 1 + (uint64_t)(p->overlap != 0);
  if (device->phys->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && 2 * c * p->ratio > 65535) {
    /* an entry loops twice over its c*m slots; llvmpipe ends loops after 65535 iterations */
    return WHY("kv_compress: ratio %d exceeds lavapipe's loop limit", (int)p->ratio);
  }
  uint64_t states = c * (uint64_t)p->ratio * (uint64_t)ta->dims[1];
  const vnrt_tensor_type *te = vk_out_type(g, node, 0);
  if (!grid_ok(device, states, WG_V4, why, why_size)) return 0;
  return grid_ok(device, (uint64_t)vnrt_numel(te), WG_V4, why, why_size);
}

VK_RECORD_FN(vk_rec_kv_compress) {
  const vnrt_kv_compress_params *p = &node->params->kv_compress;
  const vnrt_tensor_type *ta = vk_in_type(g, node, 0), *te = vk_out_type(g, node, 0);
  uint64_t T = (uint64_t)ta->dims[0], m = (uint64_t)p->ratio, d = (uint64_t)p->width;
  uint64_t c = 1 + (uint64_t)(p->overlap != 0), N = (uint64_t)te->dims[0];
  vk_dispatch_desc dd;
  vk_desc_init(&dd, VK_SHADER_V4);
  if (T == 1 && N == 1 && same_place(b, node->inputs[3], node->outputs[2]) &&
      same_place(b, node->inputs[4], node->outputs[3])) {
    /* A decode step with both states in place (VNRT_CAP_STATE_INPLACE): OP 10, one dispatch
     * for the entry and the changed state rows, an invocation per channel k < d that alone
     * reads and writes state channels k and d + k (each dispatch is a round trip to
     * lavapipe's threads). The states are read and written at slots 5 and 6. */
    for (int i = 0; i < 3; ++i) vk_bind(b, &dd, i, node->inputs[i]);
    vk_bind(b, &dd, 3, node->inputs[5]);
    vk_bind(b, &dd, 5, node->outputs[2]);
    vk_bind(b, &dd, 6, node->outputs[3]);
    vk_bind(b, &dd, 7, node->outputs[0]);
    dd.slots[VK_SLOT_SCRATCH] = vk_tensor_view(b, node->outputs[1]);
    vk_push_u(&dd, 0, T), vk_push_u(&dd, 1, m), vk_push_u(&dd, 2, d), vk_push_u(&dd, 3, c);
    vk_push_u(&dd, 4, N), vk_push_u(&dd, 5, 3);
    dd.spec[8] = V4_KVC_STEP;
    vk_grid(b, vk_div_up(d, WG_V4), dd.groups);
    return emit_padded(b, &dd);
  }
  for (int i = 0; i < 5; ++i) vk_bind(b, &dd, i, node->inputs[i]);
  vk_bind(b, &dd, 7, node->inputs[5]); /* pos0: an output slot, never written (6 inputs) */
  vk_push_u(&dd, 0, T), vk_push_u(&dd, 1, m), vk_push_u(&dd, 2, d), vk_push_u(&dd, 3, c);
  vk_push_u(&dd, 4, N);
  if (N * d > 0) {
    vk_dispatch_desc e = dd;
    vk_bind(b, &e, 5, node->outputs[0]);
    vk_bind(b, &e, 6, node->outputs[1]);
    e.spec[8] = V4_KVC_ENTRIES;
    vk_grid(b, vk_div_up(N * d, WG_V4), e.groups);
    VK_TRY(emit_padded(b, &e));
  }
  vk_bind(b, &dd, 5, node->outputs[2]);
  vk_bind(b, &dd, 6, node->outputs[3]);
  if (c == 1 && state_copyable(g, node->inputs[3], node->outputs[2]) &&
      state_copyable(g, node->inputs[4], node->outputs[3])) {
    /* Without overlap only the rows of this run's positions in the open window change: the
     * states are copied as they are (a buffer copy, nothing where they are the same tensor:
     * the executor's in-place update) and OP 8 writes those rows, an invocation per (run row,
     * channel), from the run alone (safe in place for any T). */
    VK_TRY(vk_copy_same(b, node->inputs[3], node->outputs[2]));
    VK_TRY(vk_copy_same(b, node->inputs[4], node->outputs[3]));
    dd.spec[8] = V4_KVC_RUN_ROWS;
    vk_grid(b, vk_div_up(T * d > 0 ? T * d : 1, WG_V4), dd.groups); /* T = 0: pos0's check */
    return emit_padded(b, &dd);
  }
  /* OP 2: an invocation per (row r < m, channel) writes row m*overlap + r and, with overlap,
   * row r, having read both (the only rows they come from), so a state updated in place (the
   * executor gave the result the input's buffer and offset, VNRT_CAP_STATE_INPLACE) is safe for any
   * T; such a state gets only the rows that change (a decode step: the run's row, and the window
   * that closed). */
  uint32_t inplace = (same_place(b, node->inputs[3], node->outputs[2]) ? 1u : 0u) |
                     (same_place(b, node->inputs[4], node->outputs[3]) ? 2u : 0u);
  vk_push_u(&dd, 5, inplace);
  dd.spec[8] = V4_KVC_STATES;
  vk_grid(b, vk_div_up(m * c * d, WG_V4), dd.groups);
  return emit_padded(b, &dd);
}

/* ---- kv_scatter ------------------------------------------------------------------------ */

VK_SUPPORTED_FN(vk_sup_kv_scatter) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *tr = vk_in_type(g, node, 1);
  if (t0->rank < 1 || tr->rank != t0->rank || tr->dtype != t0->dtype) {
    return WHY("kv_scatter needs cache[S, ...] and rows[N, ...] of one dtype");
  }
  if (node->params->kv_scatter.div < 1) return WHY("kv_scatter needs div >= 1");
  if (!sizes_ok(g, node, why, why_size)) return 0;
  return grid_ok(device, (uint64_t)vnrt_numel(t0), WG_ELEM, why, why_size);
}

VK_RECORD_FN(vk_rec_kv_scatter) {
  const vnrt_tensor_type *tc = vk_in_type(g, node, 0), *tr = vk_in_type(g, node, 1);
  int32_t in = node->inputs[0], out = node->outputs[0];
  uint64_t S = (uint64_t)tc->dims[0], total = (uint64_t)vnrt_numel(tc);
  uint64_t row_elems = S ? total / S : 0, N = (uint64_t)tr->dims[0];
  /* The cache first (nothing when the executor gave the result the cache's own storage). */
  VK_TRY(vk_copy_same(b, in, out));
  if (N == 0 || row_elems == 0) return VNRT_OK;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_V4);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 2, node->inputs[2]);
  vk_push_u(&d, 0, N), vk_push_u(&d, 1, N * row_elems), vk_push_u(&d, 2, S);
  vk_push_u(&d, 3, row_elems), vk_push_u(&d, 4, (uint64_t)node->params->kv_scatter.div);
  if (N == 1) {
    /* A decode step's one row: no other row to win against, so one dispatch checks its pos
     * and copies it (each dispatch is a round trip to lavapipe's threads). */
    vk_bind(b, &d, 5, out);
    d.spec[8] = V4_SCATTER_ONE;
    vk_grid(b, vk_div_up(row_elems, WG_V4), d.groups);
    return emit_padded(b, &d);
  }
  d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, (S + 1) * 4);
  /* Every pos is looked at first (so that a bad one writes nothing, and of two rows for one
   * place only the later is written), then the rows are copied. */
  d.spec[8] = V4_SCATTER_INIT;
  vk_grid(b, vk_div_up(S + 1, WG_V4), d.groups);
  VK_TRY(emit_padded(b, &d));
  d.spec[8] = V4_SCATTER_MARK;
  vk_grid(b, vk_div_up(N, WG_V4), d.groups);
  VK_TRY(emit_padded(b, &d));
  vk_bind(b, &d, 5, out);
  d.spec[8] = V4_SCATTER;
  vk_grid(b, vk_div_up(N * row_elems, WG_V4), d.groups);
  return emit_padded(b, &d);
}

/* ---- index_scores ---------------------------------------------------------------------- */

VK_SUPPORTED_FN(vk_sup_index_scores) {
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tk = vk_in_type(g, node, 1);
  if (tq->rank != 3 || tk->rank != 2 || node->params->index_scores.ratio < 1) {
    return WHY("index_scores needs q[T, Hi, Di], k[S, Di] and ratio >= 1");
  }
  if (!sizes_ok(g, node, why, why_size)) return 0;
  return grid_ok(device, (uint64_t)tq->dims[0] * (uint64_t)tk->dims[0], WG_V4, why, why_size);
}

VK_RECORD_FN(vk_rec_index_scores) {
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tk = vk_in_type(g, node, 1);
  uint64_t T = (uint64_t)tq->dims[0], S = (uint64_t)tk->dims[0];
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_V4);
  for (int i = 0; i < 4; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = V4_INDEX;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, S), vk_push_u(&d, 2, (uint64_t)tq->dims[1]);
  vk_push_u(&d, 3, (uint64_t)tq->dims[2]);
  vk_push_u(&d, 4, (uint64_t)node->params->index_scores.ratio);
  uint64_t Hi = (uint64_t)tq->dims[1], Di = (uint64_t)tq->dims[2];
  uint64_t cap = vk_builder_device(b)->phys->props.limits.maxStorageBufferRange / 4;
  uint64_t chunk =
      Hi * S > 0 && cap / (Hi * S + Hi * Di + 64) < T ? cap / (Hi * S + Hi * Di + 64) : T;
  if (chunk > 65535) chunk = 65535;
  if (vk_builder_cpu_kernels(b) && chunk > 0 && S > 0) {
    /* CPU devices: the head products q[t] (Hi x Di) . k^T as matmul.comp GEMMs (each k row
     * loaded once serves a block of heads), then the weighted relu sum per (t, j). */
    bool whole = chunk >= T;
    uint64_t n_p = vk_div_up(chunk * Hi * S, 64) * 64;
    vk_view sv = vk_scratch_view(b, (n_p + (whole ? 0 : chunk * Hi * Di)) * 4);
    d.slots[VK_SLOT_SCRATCH] = sv;
    d.spec[8] = V4_INDEX_COMBINE;
    for (uint64_t t0 = 0; t0 < T; t0 += chunk) {
      uint64_t rows = T - t0 < chunk ? T - t0 : chunk;
      vk_dispatch_desc m;
      vk_desc_init(&m, VK_SHADER_MATMUL);
      if (whole) {
        vk_bind(b, &m, 0, node->inputs[0]);
      } else {
        vk_view qv = sv;
        qv.offset += n_p * 4, qv.range = rows * Hi * Di * 4;
        vk_dispatch_desc cp;
        vk_desc_init(&cp, VK_SHADER_COPY);
        vk_bind(b, &cp, 0, node->inputs[0]);
        cp.slots[5] = qv;
        cp.spec[5] = VNRT_F32;
        cp.spec[8] = tq->dtype == VNRT_F32 ? 0 : 1;
        uint64_t n = rows * Hi * Di;
        vk_push_u(&cp, 0, n), vk_push_u(&cp, 1, 1), vk_push_u(&cp, 2, 1), vk_push_u(&cp, 3, n);
        vk_push_u(&cp, 7, 1), vk_push_u(&cp, 11, 1), vk_push_u(&cp, 12, t0 * Hi * Di);
        vk_grid(b, vk_div_up(n, WG_ELEM), cp.groups);
        VK_TRY(vk_emit(b, &cp));
        m.slots[0] = qv;
        m.spec[0] = VNRT_F32;
      }
      vk_bind(b, &m, 1, node->inputs[1]);
      vk_view pv = sv;
      pv.range = rows * Hi * S * 4;
      m.slots[5] = pv;
      m.spec[5] = VNRT_F32;
      m.spec[9] = 1, m.spec[10] = 0; /* k [S, Di]: linear's w */
      vk_push_u(&m, 0, Hi), vk_push_u(&m, 1, S), vk_push_u(&m, 2, Di);
      vk_push_u(&m, 3, Di), vk_push_u(&m, 4, 1), vk_push_u(&m, 5, 1), vk_push_u(&m, 6, Di);
      vk_push_u(&m, 7, rows), vk_push_u(&m, 8, 0), vk_push_u(&m, 9, Hi * Di);
      vk_push_u(&m, 10, 0), vk_push_u(&m, 11, 0);
      VK_TRY(vk_emit_gemm(b, &m, Hi, S, rows, true));
      vk_push_u(&d, 5, rows), vk_push_u(&d, 6, t0);
      vk_grid(b, vk_div_up(rows * S, WG_V4), d.groups);
      VK_TRY(emit_padded(b, &d));
    }
    return VNRT_OK;
  }
  vk_grid(b, vk_div_up(T * S, WG_V4), d.groups);
  return emit_padded(b, &d);
}

/* ---- sparse_attention ------------------------------------------------------------------ */

VK_SUPPORTED_FN(vk_sup_sparse_attention) {
  const vnrt_sparse_attention_params *p = &node->params->sparse_attention;
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tr = vk_in_type(g, node, 2);
  if (tq->rank != 3 || tr->rank != 2 || tr->dims[0] < 1) {
    return WHY("sparse_attention needs q[T, H, D] and ring[W >= 1, D]");
  }
  if (tq->dims[2] > SA_DMAX) return WHY("sparse_attention kernel handles D <= %d", SA_DMAX);
  if (node->n_inputs > 5 && p->ratio < 1) return WHY("comp needs ratio >= 1");
  if (!sizes_ok(g, node, why, why_size)) return 0;
  if (device->phys->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    /* llvmpipe ends a shader's loops after 65535 iterations in all (the CPU passes loop 3 NS/4
     * times per query row and head, the GPU kernel (D + 2 WG) times per WG keys) */
    uint64_t K = node->n_inputs > 6 ? (uint64_t)vk_in_type(g, node, 6)->dims[1] : 0;
    uint64_t Sc = node->n_inputs > 5 ? (uint64_t)vk_in_type(g, node, 5)->dims[0] : 0;
    uint64_t NS = (uint64_t)tr->dims[0] + (K ? K : Sc);
    if (NS > SA_NS_MAX) {
      return WHY("sparse_attention: %" PRIu64 " keys per query exceed lavapipe's loop limit (%d)",
                 NS, SA_NS_MAX);
    }
  }
  return grid_ok(device, (uint64_t)tq->dims[0] * (uint64_t)tq->dims[1], 1, why, why_size);
}

/* A view of `words` f32 words at word `at` of the scratch range v. */
static vk_view sub_view(vk_view v, uint64_t at, uint64_t words) {
  v.offset += at * 4;
  v.range = words * 4;
  return v;
}

/* sparse_attention on CPU devices (sparse_attention.comp OP 1, 2 between two matmul.comp
 * GEMMs), chunk by chunk. Scratch words: the panel [rows, NS, D], codes [rows, NS], scores
 * [rows, H, NS], and with several chunks q [rows, H, D] and o [rows, H, D] (copied in and out:
 * the GEMMs address their operands from word 0). Sub-ranges start at multiples of 64 words. */
static vnrt_status record_sparse_cpu(vk_builder *b, const vnrt_backend_graph *g,
                                     const vnrt_backend_node *node, vk_dispatch_desc *d, uint64_t T,
                                     uint64_t H, uint64_t D, uint64_t NS, uint64_t chunk) {
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *to = vk_out_type(g, node, 0);
  bool whole = chunk >= T;
  uint64_t a = 64; /* alignment of sub-ranges, in words (256 bytes) */
  uint64_t n_panel = vk_div_up(chunk * NS * D, a) * a, n_codes = vk_div_up(chunk * NS, a) * a;
  uint64_t n_scores = vk_div_up(chunk * H * NS, a) * a, n_q = vk_div_up(chunk * H * D, a) * a;
  uint64_t off_codes = n_panel, off_scores = off_codes + n_codes, off_q = off_scores + n_scores;
  uint64_t off_o = off_q + (whole ? 0 : n_q), total = off_o + (whole ? 0 : n_q);
  vk_view sv = vk_scratch_view(b, total * 4);
  bool f32 = true;
  for (int i = 1; i < node->n_inputs && i < 6; ++i) {
    if (i != 3 && i != 4) f32 = f32 && vk_in_type(g, node, i)->dtype == VNRT_F32;
  }
  d->spec[11] = f32;
  d->slots[VK_SLOT_SCRATCH] = sv;
  vk_push_u(d, 10, NS), vk_push_u(d, 11, off_codes), vk_push_u(d, 12, off_scores);
  for (uint64_t t0 = 0; t0 < T; t0 += chunk) {
    uint64_t rows = T - t0 < chunk ? T - t0 : chunk;
    vk_push_u(d, 8, t0), vk_push_u(d, 9, rows);
    d->spec[8] = 1; /* the key panels */
    vk_grid(b, vk_div_up(rows * NS * (D / 4), SA_WG), d->groups);
    VK_TRY(emit_padded(b, d));
    /* q of the chunk: the tensor itself, or a copy at off_q */
    vk_dispatch_desc m;
    vk_desc_init(&m, VK_SHADER_MATMUL);
    if (whole) {
      vk_bind(b, &m, 0, node->inputs[0]);
    } else {
      vk_dispatch_desc cp;
      vk_desc_init(&cp, VK_SHADER_COPY);
      vk_bind(b, &cp, 0, node->inputs[0]);
      cp.slots[5] = sub_view(sv, off_q, rows * H * D);
      cp.spec[5] = VNRT_F32;
      cp.spec[8] = tq->dtype == VNRT_F32 ? 0 : 1;
      uint64_t n = rows * H * D;
      vk_push_u(&cp, 0, n), vk_push_u(&cp, 1, 1), vk_push_u(&cp, 2, 1), vk_push_u(&cp, 3, n);
      vk_push_u(&cp, 7, 1), vk_push_u(&cp, 11, 1), vk_push_u(&cp, 12, t0 * H * D);
      vk_grid(b, vk_div_up(n, SA_WG), cp.groups);
      VK_TRY(vk_emit(b, &cp));
      m.slots[0] = sub_view(sv, off_q, rows * H * D);
      m.spec[0] = VNRT_F32;
    }
    /* scores [rows][H][NS] = q[t] (H x D) . panel[t]^T (the panel is [NS, D]: linear's w) */
    m.slots[1] = sub_view(sv, 0, rows * NS * D);
    m.spec[1] = VNRT_F32;
    m.slots[5] = sub_view(sv, off_scores, rows * H * NS);
    m.spec[5] = VNRT_F32;
    m.spec[9] = 1, m.spec[10] = 0;
    vk_push_u(&m, 0, H), vk_push_u(&m, 1, NS), vk_push_u(&m, 2, D);
    vk_push_u(&m, 3, D), vk_push_u(&m, 4, 1), vk_push_u(&m, 5, 1), vk_push_u(&m, 6, D);
    vk_push_u(&m, 7, rows), vk_push_u(&m, 8, 0), vk_push_u(&m, 9, H * D);
    vk_push_u(&m, 10, 0), vk_push_u(&m, 11, NS * D);
    VK_TRY(vk_emit_gemm(b, &m, H, NS, rows, true));
    d->spec[8] = 2; /* the weights */
    vk_grid(b, vk_div_up(rows * H, SA_WG), d->groups);
    VK_TRY(emit_padded(b, d));
    /* o [rows][H][D] = weights[t] (H x NS) . panel[t] (NS x D) */
    vk_desc_init(&m, VK_SHADER_MATMUL);
    m.slots[0] = sub_view(sv, off_scores, rows * H * NS);
    m.spec[0] = VNRT_F32;
    m.slots[1] = sub_view(sv, 0, rows * NS * D);
    m.spec[1] = VNRT_F32;
    if (whole) {
      vk_bind(b, &m, 5, node->outputs[0]);
    } else {
      m.slots[5] = sub_view(sv, off_o, rows * H * D);
      m.spec[5] = VNRT_F32;
    }
    m.spec[9] = 1, m.spec[10] = 1;
    vk_push_u(&m, 0, H), vk_push_u(&m, 1, D), vk_push_u(&m, 2, NS);
    vk_push_u(&m, 3, NS), vk_push_u(&m, 4, 1), vk_push_u(&m, 5, D), vk_push_u(&m, 6, 1);
    vk_push_u(&m, 7, rows), vk_push_u(&m, 8, 0), vk_push_u(&m, 9, H * NS);
    vk_push_u(&m, 10, 0), vk_push_u(&m, 11, NS * D);
    VK_TRY(vk_emit_gemm(b, &m, H, D, rows, false));
    if (!whole) {
      vk_dispatch_desc cp;
      vk_desc_init(&cp, VK_SHADER_COPY);
      cp.slots[0] = sub_view(sv, off_o, rows * H * D);
      cp.spec[0] = VNRT_F32;
      vk_bind(b, &cp, 5, node->outputs[0]);
      cp.spec[8] = to->dtype == VNRT_F32 ? 0 : 1;
      uint64_t n = rows * H * D;
      vk_push_u(&cp, 0, n), vk_push_u(&cp, 1, 1), vk_push_u(&cp, 2, 1), vk_push_u(&cp, 3, n);
      vk_push_u(&cp, 7, 1), vk_push_u(&cp, 11, 1), vk_push_u(&cp, 13, t0 * H * D);
      vk_grid(b, vk_div_up(n, SA_WG), cp.groups);
      VK_TRY(vk_emit(b, &cp));
    }
  }
  return VNRT_OK;
}

/* sparse_attention of a few query rows on CPU devices: sparse_decode.comp, one dispatch, where
 * q, ring and comp are f32 tensors it can read as texels. Returns false (nothing emitted) where
 * it does not apply. */
static bool record_sparse_decode(vk_builder *b, const vnrt_backend_graph *g,
                                 const vnrt_backend_node *node, vnrt_status *out) {
  const vnrt_sparse_attention_params *p = &node->params->sparse_attention;
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tr = vk_in_type(g, node, 2);
  uint64_t T = (uint64_t)tq->dims[0], H = (uint64_t)tq->dims[1], D = (uint64_t)tq->dims[2];
  uint64_t W = (uint64_t)tr->dims[0], Sc = 0, K = 0;
  if (!vk_builder_cpu_kernels(b) || T == 0 || T > SD_TMAX || D % 16 != 0 || H == 0) return false;
  bool comp = node->n_inputs > 5, idx = node->n_inputs > 6;
  if (comp) Sc = (uint64_t)vk_in_type(g, node, 5)->dims[0];
  if (idx) K = (uint64_t)vk_in_type(g, node, 6)->dims[1];
  if (tq->dtype != VNRT_F32 || tr->dtype != VNRT_F32 ||
      (comp && vk_in_type(g, node, 5)->dtype != VNRT_F32)) {
    return false;
  }
  if (!vk_texel_ok(b, node->inputs[0], VK_TEXEL_BYTES) ||
      !vk_texel_ok(b, node->inputs[2], VK_TEXEL_BYTES) ||
      (comp && Sc > 0 && !vk_texel_ok(b, node->inputs[5], VK_TEXEL_BYTES))) {
    return false;
  }
  uint64_t NS = W + (idx ? K : Sc); /* bounds any row's keys */
  uint64_t HG = vk_div_up(H, 8), NSL = T * HG >= 2 ? 1 : 2, d16 = D / 16;
  if (NS * (d16 + 2 + vk_div_up(d16, NSL)) + d16 > SD_ITER_MAX) return false;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_SPARSE_DECODE);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 2, node->inputs[3]); /* sinks */
  vk_bind(b, &d, 3, node->inputs[2]); /* ring */
  vk_bind(b, &d, 4, node->inputs[4]); /* pos0 */
  vk_bind(b, &d, 5, node->outputs[0]);
  d.texel_x = 0;
  d.texel3 = true;
  if (comp && Sc > 0) {
    vk_bind(b, &d, 6, node->inputs[5]);
    d.texel_y = 6;
    d.spec[9] = 1;
  }
  if (idx) {
    vk_bind(b, &d, 7, node->inputs[6]);
    d.spec[10] = 1;
  }
  uint64_t groups = T * HG * NSL;
  d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, groups * 8 * (NS ? NS : 1) * 4);
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, H), vk_push_u(&d, 2, D);
  vk_push_u(&d, 3, W), vk_push_u(&d, 4, Sc), vk_push_u(&d, 5, K);
  vk_push_u(&d, 6, p->ratio > 0 ? (uint64_t)p->ratio : 1);
  vk_push_f(&d, 7, p->scale);
  vk_push_u(&d, 8, NS), vk_push_u(&d, 9, NSL), vk_push_u(&d, 10, HG);
  vk_grid(b, groups, d.groups);
  *out = emit_padded(b, &d);
  return true;
}

VK_RECORD_FN(vk_rec_sparse_attention) {
  const vnrt_sparse_attention_params *p = &node->params->sparse_attention;
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tr = vk_in_type(g, node, 2);
  uint64_t T = (uint64_t)tq->dims[0], H = (uint64_t)tq->dims[1], D = (uint64_t)tq->dims[2];
  vnrt_status st = VNRT_OK;
  if (record_sparse_decode(b, g, node, &st)) return st;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_SPARSE_ATTENTION);
  for (int i = 0; i < 5; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  uint64_t Sc = 0, K = 0;
  if (node->n_inputs > 5) { /* comp and idx go in output slots: the op has 7 inputs */
    vk_bind(b, &d, 6, node->inputs[5]);
    Sc = (uint64_t)vk_in_type(g, node, 5)->dims[0];
    d.spec[9] = 1;
  }
  if (node->n_inputs > 6) {
    vk_bind(b, &d, 7, node->inputs[6]);
    K = (uint64_t)vk_in_type(g, node, 6)->dims[1];
    d.spec[10] = 1;
  }
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, H), vk_push_u(&d, 2, D);
  vk_push_u(&d, 3, (uint64_t)tr->dims[0]), vk_push_u(&d, 4, Sc), vk_push_u(&d, 5, K);
  vk_push_u(&d, 6, p->ratio > 0 ? (uint64_t)p->ratio : 1);
  vk_push_f(&d, 7, p->scale);
  /* CPU devices: chunks of query rows whose key panels and scores fit one scratch binding
   * (NS bounds any row's keys: the window and every entry it could name). */
  uint64_t NS = vk_div_up((uint64_t)tr->dims[0] + (K ? K : Sc), 4) * 4; /* vec4 rows */
  uint64_t per_row = NS * D + NS + H * NS + 2 * H * D; /* panel, codes, scores, q and o copies */
  uint64_t cap = vk_builder_device(b)->phys->props.limits.maxStorageBufferRange / 4;
  if (cap > (1ull << 31) - 1) cap = (1ull << 31) - 1;
  cap -= 1024; /* the sub-ranges' alignment */
  uint64_t chunk = cap / per_row < T ? cap / per_row : T;
  if (chunk > 65535) chunk = 65535; /* the GEMMs' batch is grid z */
  if (vk_builder_cpu_kernels(b) && D % 4 == 0 && chunk > 0) {
    return record_sparse_cpu(b, g, node, &d, T, H, D, NS, chunk);
  }
  vk_grid(b, T * H, d.groups);
  return emit_padded(b, &d);
}

/* ---- grouped_linear -------------------------------------------------------------------- */

VK_SUPPORTED_FN(vk_sup_grouped_linear) {
  const vnrt_grouped_linear_params *p = &node->params->grouped_linear;
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0), *tw = vk_in_type(g, node, 1);
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  if (tx->rank < 1 || tw->rank != 2 || p->groups < 1 || tw->dims[0] % p->groups != 0 ||
      !is_float(tx->dtype)) {
    return WHY("grouped_linear needs float x[..., G*K] and w[G*N, K]");
  }
  if (!sizes_ok(g, node, why, why_size)) return 0;
  uint64_t G = (uint64_t)p->groups, N = (uint64_t)tw->dims[0] / G;
  uint64_t M = (uint64_t)vnrt_dims_product(tx, 0, tx->rank - 1);
  if (is_codes(p->w.codes)) {
    if (tw->dtype != p->w.codes || p->w.block[0] < 1 || p->w.block[1] < 1 || p->w.scale_input < 0 ||
        p->w.scale_input >= node->n_inputs ||
        vk_in_type(g, node, p->w.scale_input)->dtype != VNRT_E8M0) {
      return WHY("grouped_linear: codes without a usable e8m0 scale and block");
    }
    return grid_ok(device, G * N * vk_div_up(M, QG_RM), WG_QGEMM, why, why_size);
  }
  if (!is_float(tw->dtype)) return WHY("grouped_linear: w must be float or e4m3/e2m1 codes");
  if (M * G * N * 4 > lim->maxStorageBufferRange) return WHY("the group results exceed a binding");
  if (G > lim->maxComputeWorkGroupCount[2] || vk_div_up(M, 32) > lim->maxComputeWorkGroupCount[1] ||
      vk_div_up(N, 64) > lim->maxComputeWorkGroupCount[0]) {
    return WHY("the grouped GEMM grid exceeds maxComputeWorkGroupCount");
  }
  return 1;
}

VK_RECORD_FN(vk_rec_grouped_linear) {
  const vnrt_grouped_linear_params *p = &node->params->grouped_linear;
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0), *tw = vk_in_type(g, node, 1);
  uint64_t G = (uint64_t)p->groups, K = (uint64_t)tw->dims[1], N = (uint64_t)tw->dims[0] / G;
  uint64_t M = (uint64_t)vnrt_dims_product(tx, 0, tx->rank - 1);
  if (M == 0 || N == 0) return VNRT_OK;
  vk_dispatch_desc d;
  if (M <= VK_GEMV_MMAX && N % 16 == 0 && vk_gemv_ok(b, tx->dtype, node->inputs[1], &p->w, K)) {
    /* Decode-sized on a CPU device: gemv.comp, each workgroup's rows in one group. */
    return vk_emit_gemv_linear(b, node, &p->w, NULL, false, M, G * N, K, N, G * K, NULL);
  }
  if (is_codes(p->w.codes)) {
    /* quant.comp's GEMM over all G*N rows of w, each output reading its group of x. */
    const vnrt_quant_weight *q = &p->w;
    vk_desc_init(&d, VK_SHADER_QUANT);
    d.spec[8] = 1; /* QOP_GEMM */
    vk_bind(b, &d, 0, node->inputs[0]);
    vk_bind(b, &d, 3, node->inputs[1]);
    vk_bind(b, &d, 4, node->inputs[q->scale_input]);
    vk_bind(b, &d, 5, node->outputs[0]);
    d.spec[10] = 1; /* transposed: w[n][k] */
    d.spec[11] = 1; /* codes with scales */
    uint64_t per = q->codes == VNRT_E2M1 ? 8 : 4;
    if (K % per == 0 && (uint64_t)q->block[1] % per == 0) d.spec[9] |= 4;
    uint64_t b0 = (uint64_t)q->block[0], b1 = (uint64_t)q->block[1];
    vk_push_u(&d, 0, M), vk_push_u(&d, 1, G * N), vk_push_u(&d, 2, K), vk_push_u(&d, 3, 0);
    vk_push_u(&d, 4, b0), vk_push_u(&d, 5, b1);
    vk_push_u(&d, 6, vk_div_up(G * N, b0)), vk_push_u(&d, 7, vk_div_up(K, b1));
    vk_push_u(&d, 8, N), vk_push_u(&d, 9, G * K);
    vk_grid(b, vk_div_up(G * N * vk_div_up(M, QG_RM), WG_QGEMM), d.groups);
    return vk_emit(b, &d);
  }
  /* Plain weights: matmul.comp with the groups as its batch, C[g][m][n] = x[m][gK + k] .
   * w[gN + n][k]. One row (decode) is already y's layout; more rows land in scratch as
   * [G, M, N] and are copied to y[M, G, N]. */
  vk_desc_init(&d, VK_SHADER_MATMUL);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_view tmp = {0};
  if (M == 1) {
    vk_bind(b, &d, 5, node->outputs[0]);
  } else {
    tmp = vk_scratch_view(b, G * M * N * 4);
    d.slots[5] = tmp;
    d.spec[5] = VNRT_F32;
  }
  d.spec[9] = 1, d.spec[10] = 0; /* A contiguous along k; B (w) along k */
  vk_push_u(&d, 0, M), vk_push_u(&d, 1, N), vk_push_u(&d, 2, K);
  vk_push_u(&d, 3, G * K), vk_push_u(&d, 4, 1), vk_push_u(&d, 5, 1), vk_push_u(&d, 6, K);
  vk_push_u(&d, 7, G); /* nb1: the groups are the inner batch dim */
  vk_push_u(&d, 8, 0), vk_push_u(&d, 9, K), vk_push_u(&d, 10, 0), vk_push_u(&d, 11, N * K);
  VK_TRY(vk_emit_gemm(b, &d, M, N, G, true));
  if (M == 1) return VNRT_OK;
  /* [G, M, N] f32 -> y[M, G, N] in y's dtype (copy.comp OP 1 rounds as a direct store would). */
  vk_dispatch_desc cp;
  vk_desc_init(&cp, VK_SHADER_COPY);
  cp.slots[0] = tmp;
  cp.spec[0] = VNRT_F32;
  vk_bind(b, &cp, 5, node->outputs[0]);
  cp.spec[8] = vk_out_type(g, node, 0)->dtype == VNRT_F32 ? 0 : 1;
  uint64_t n = M * G * N;
  vk_push_u(&cp, 0, n), vk_push_u(&cp, 1, M), vk_push_u(&cp, 2, G), vk_push_u(&cp, 3, N);
  /* iteration (i1, i2, i3) = (m, g, n): source g*M*N + m*N + n, destination (m*G + g)*N + n */
  vk_push_u(&cp, 5, N), vk_push_u(&cp, 6, M * N), vk_push_u(&cp, 7, 1);
  vk_push_u(&cp, 9, G * N), vk_push_u(&cp, 10, N), vk_push_u(&cp, 11, 1);
  vk_grid(b, vk_div_up(n, WG_ELEM), cp.groups);
  return vk_emit(b, &cp);
}
