/* OpenCL lowering of the DeepSeek-V4 attention ops (docs/ops.md, "DeepSeek-V4 attention"):
 * kv_compress, kv_scatter (its rows checked on the device first), index_scores and
 * sparse_attention (pos0 and idx checked on the device, read after the run; a work-group per
 * (token, head) where local memory is real, three passes over chunks of tokens on CPU
 * drivers); shaders v4.cl. grouped_linear is in
 * cl_ops_quant.c, with the weight kernels it shares. */
#include "cl_ops.h"

#define ATT_MAXJ 8 /* as in attention.cl: output channels per work-item */
#define SA_WG_MAX 256
/* The most scratch the three-pass sparse_attention's scores take (a chunk of tokens; when one
 * token's scores exceed it, the one-pass kernel runs). */
#define SA_SCORES_MAX_BYTES ((uint64_t)64 << 20)
/* idx entries (T·K) up to which the first scores item checks them itself: a decode step's few
 * hundred; a prefill's are checked by check_below's items. */
#define SA_FUSED_IDX_MAX 4096

/* Whether graph tensor a and b are the same memory (the executor made a result in place). */
static int same_memory(const vnrt_backend_tensor *a, const vnrt_backend_tensor *b) {
  return a->buffer == b->buffer && a->offset == b->offset;
}

/* info: pos0 tensor. The CPU reference's words. */
static vnrt_status report_pos0(vnrt_backend_exec *exec, const cl_step *st, int32_t at) {
  const vnrt_backend_node *node = &exec->graph.nodes[st->node];
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE, "%s '%s': pos0 is negative",
                 vnrt_op_name(node->op), node->name);
}

/* The step that reads pos0's check from error slot `slot` (input `input` of the node): after
 * the run with deferred, else before anything is written. */
static vnrt_status pos0_step(cl_lower *L, int32_t input, int32_t slot, int deferred) {
  const int64_t info[1] = {L->node->inputs[input]};
  return deferred ? cl_add_deferred_check(L, slot, report_pos0, info, 1)
                  : cl_add_check(L, slot, report_pos0, info, 1);
}

/* Appends the check that input `input` (pos0, i32[1]) is >= 0: read before anything is
 * written, or with deferred after the run (kv_compress's and sparse_attention's kernels index
 * only inside their tensors whatever pos0 is: positions before 0 select no window key and no
 * compressed entry). */
static vnrt_status check_pos0(cl_lower *L, int32_t input, int deferred) {
  int32_t slot = cl_err_slot(L);
  cl_launch k;
  cl_launch_begin(L, "check_index", &k);
  cl_arg_in(&k, input);
  cl_arg_in(&k, input);
  cl_arg_i32(&k, 0);
  cl_arg_i32(&k, 1);
  cl_arg_i64(&k, 1);
  cl_arg_i64(&k, INT64_MAX);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  vnrt_status s = cl_launch_single(&k, 64);
  return s != VNRT_OK ? s : pos0_step(L, input, slot, deferred);
}

/* check_below (v4.cl) over the n values of input `input`: the first i with v[i] >= 0 and
 * v[i] / div >= bound into error slot `slot`, its value into slot + 1 (read after the run). */
static vnrt_status launch_check_below(cl_lower *L, int32_t input, int64_t n, int32_t div,
                                      int64_t bound, int32_t slot) {
  cl_launch k;
  cl_launch_begin(L, "check_below", &k);
  cl_arg_in(&k, input);
  cl_arg_i64(&k, n);
  cl_arg_i32(&k, div);
  cl_arg_i64(&k, bound);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  cl_arg_i32(&k, 1);
  return cl_launch_single(&k, 64);
}

/* ---- kv_compress ----------------------------------------------------------------------- */

int cl_kv_compress_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                            const vnrt_backend_node *node) {
  const vnrt_kv_compress_params *p = &node->params->kv_compress;
  for (int32_t i = 0; i < 5; ++i) {
    if (cl_q_in(g, node, i)->dtype != VNRT_F32) return 0;
  }
  const vnrt_tensor_type *a = cl_q_in(g, node, 0), *sa = cl_q_in(g, node, 3);
  const vnrt_tensor_type *pos0 = cl_q_in(g, node, 5), *e = cl_q_out(g, node, 0);
  const int64_t c = 1 + (p->overlap != 0);
  return p->ratio >= 1 && a->rank == 2 && a->dims[1] == c * p->width && sa->rank == 2 &&
         sa->dims[0] == c * p->ratio && sa->dims[1] == a->dims[1] && pos0->dtype == VNRT_I32 &&
         vnrt_numel(pos0) == 1 && e->dtype == VNRT_F32 && e->rank == 2 && e->dims[1] == p->width &&
         cl_q_out(g, node, 1)->dtype == VNRT_I32 && cl_q_out(g, node, 2)->dtype == VNRT_F32 &&
         cl_q_out(g, node, 3)->dtype == VNRT_F32;
}

/* Appends the state kernel writing into (na, nz): outputs 2 and 3, or scratch (na_s, nz_s);
 * inplace: outputs 2 and 3 are the input states and T is 1 (only the changed rows are written). */
static vnrt_status kv_compress_state(cl_lower *L, int to_scratch, uint64_t na_s, uint64_t nz_s,
                                     int inplace) {
  const vnrt_kv_compress_params *p = &L->node->params->kv_compress;
  const vnrt_tensor_type *a = cl_in_type(L, 0);
  int64_t c = 1 + (p->overlap != 0), cd = a->dims[1];
  /* Whole vectors of 16 channels: the kernel that moves rows 16 values at a time. */
  const int v16 = cd % 16 == 0;
  cl_launch k;
  cl_launch_begin(L, v16 ? "kv_compress_state16" : "kv_compress_state", &k);
  for (int32_t i = 0; i < 6; ++i) cl_arg_in(&k, i);
  if (to_scratch) {
    cl_arg_scratch(&k, na_s);
    cl_arg_scratch(&k, nz_s);
  } else {
    cl_arg_out(&k, 2);
    cl_arg_out(&k, 3);
  }
  cl_arg_i32(&k, p->ratio);
  cl_arg_i32(&k, p->overlap != 0);
  cl_arg_i64(&k, a->dims[0]);
  cl_arg_i64(&k, cd);
  cl_arg_i32(&k, inplace);
  return cl_launch_2d(&k, v16 ? cd / 16 : cd, c * p->ratio);
}

vnrt_status cl_kv_compress_lower(cl_lower *L) {
  const vnrt_kv_compress_params *p = &L->node->params->kv_compress;
  const vnrt_tensor_type *a = cl_in_type(L, 0), *e = cl_out_type(L, 0);
  int64_t c = 1 + (p->overlap != 0), cd = a->dims[1];
  vnrt_status s = VNRT_OK;
  /* pos0's check is the entries kernel's first item's (one launch fewer a node); without
   * entries to compute, a check kernel of its own. Read after the run either way. */
  const int fused_check = p->width > 0 && e->dims[0] > 0;
  int32_t slot = fused_check ? cl_err_slot(L) : -1;
  if (!fused_check) s = check_pos0(L, 5, 1);
  if (s != VNRT_OK) return s;
  cl_launch k;
  /* Entries first: they read the old states, which the state results may overwrite. */
  cl_launch_begin(L, "kv_compress_entries", &k);
  for (int32_t i = 0; i < 6; ++i) cl_arg_in(&k, i);
  cl_arg_out(&k, 0);
  cl_arg_out(&k, 1);
  cl_arg_i32(&k, p->ratio);
  cl_arg_i32(&k, p->overlap != 0);
  cl_arg_i64(&k, p->width);
  cl_arg_i64(&k, a->dims[0]);
  cl_arg_i64(&k, e->dims[0]);
  cl_arg_err(&k, 0); /* the error buffer (its offset is fixed up; the slot is the next arg) */
  cl_arg_i32(&k, slot);
  s = cl_launch_2d(&k, p->width, e->dims[0]);
  if (s != VNRT_OK) return s;
  if (fused_check) {
    s = pos0_step(L, 5, slot, 1);
    if (s != VNRT_OK) return s;
  }
  if (!same_memory(cl_in(L, 3), cl_out(L, 2)) && !same_memory(cl_in(L, 4), cl_out(L, 3))) {
    return kv_compress_state(L, 0, 0, 0, 0);
  }
  /* A decode step (T = 1) updates both states in place without moving a row it reads
   * (kv_compress_state): one launch that writes the changed rows, not the whole states twice. */
  if (a->dims[0] == 1 && same_memory(cl_in(L, 3), cl_out(L, 2)) &&
      same_memory(cl_in(L, 4), cl_out(L, 3))) {
    return kv_compress_state(L, 0, 0, 0, 1);
  }
  /* A state updated in place: rows move between windows, so build the new states in scratch
   * and copy them over. */
  int64_t n = c * p->ratio * cd;
  uint64_t na = cl_scratch(L, (uint64_t)n * 4), nz = cl_scratch(L, (uint64_t)n * 4);
  s = kv_compress_state(L, 1, na, nz, 0);
  for (int32_t i = 0; i < 2 && s == VNRT_OK; ++i) {
    cl_launch_begin(L, "copy_f32", &k);
    cl_arg_scratch(&k, i == 0 ? na : nz);
    cl_arg_out(&k, 2 + i);
    cl_arg_i64(&k, n);
    s = cl_launch_1d(&k, n);
  }
  return s;
}

/* ---- kv_scatter ------------------------------------------------------------------------ */

/* The bytes of one row of t (rank >= 1), or 0 when a row is not whole bytes. */
static int64_t row_bytes(const vnrt_tensor_type *t) {
  int64_t per = 1;
  for (int32_t d = 1; d < t->rank; ++d) per *= t->dims[d];
  uint64_t bits = (uint64_t)per * vnrt_dtype_bits(t->dtype);
  return bits % 8 == 0 ? (int64_t)(bits / 8) : 0;
}

int cl_kv_scatter_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                           const vnrt_backend_node *node) {
  const vnrt_tensor_type *c = cl_q_in(g, node, 0), *r = cl_q_in(g, node, 1);
  const vnrt_tensor_type *pos = cl_q_in(g, node, 2), *o = cl_q_out(g, node, 0);
  if (c->rank < 1 || r->rank != c->rank || r->dtype != c->dtype || o->dtype != c->dtype ||
      pos->dtype != VNRT_I32 || vnrt_numel(pos) != r->dims[0] || vnrt_numel(o) != vnrt_numel(c) ||
      node->params->kv_scatter.div < 1) {
    return 0;
  }
  for (int32_t d = 1; d < c->rank; ++d) {
    if (r->dims[d] != c->dims[d]) return 0;
  }
  return row_bytes(c) > 0 || vnrt_numel(c) == 0 || vnrt_numel(r) == 0;
}

/* info: pos tensor, div, S. */
static vnrt_status report_kv_scatter(vnrt_backend_exec *exec, const cl_step *st, int32_t at) {
  int32_t pos = 0;
  vnrt_status s = cl_check_value(exec, st, 1, &pos);
  if (s != VNRT_OK) return s;
  /* The CPU reference's words. */
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "kv_scatter '%s': row %lld (pos %d / %lld) of rows[%d] is outside the cache's "
                 "%lld rows",
                 exec->graph.nodes[st->node].name, (long long)(pos / st->info[1]), (int)pos,
                 (long long)st->info[1], (int)at, (long long)st->info[2]);
}

vnrt_status cl_kv_scatter_lower(cl_lower *L) {
  const vnrt_tensor_type *c = cl_in_type(L, 0), *r = cl_in_type(L, 1);
  const int32_t div = L->node->params->kv_scatter.div;
  int64_t S = c->dims[0], N = r->dims[0];
  cl_launch k;
  vnrt_status s = VNRT_OK;
  /* Every row's target must lie in the cache: checked after the run (the kernel skips a row
   * whose target does not) by the kernel's item 0 when it runs, else by check_below. */
  const int64_t rb = row_bytes(c);
  const int32_t slot = N > 0 ? cl_err_slot(L) : -1;
  if (N > 0) (void)cl_err_slot(L); /* slot + 1: the bad position */
  const int64_t info[3] = {L->node->inputs[2], div, S};
  if (N > 0 && rb == 0) {
    s = launch_check_below(L, 2, N, div, S, slot);
    if (s != VNRT_OK) return s;
    s = cl_add_deferred_check(L, slot, report_kv_scatter, info, 3);
    if (s != VNRT_OK) return s;
  }
  /* In place when the executor gave the result the cache's memory; else copy the cache. */
  if (!same_memory(cl_in(L, 0), cl_out(L, 0))) {
    int64_t bytes = (int64_t)vnrt_tensor_type_bytes(c);
    int esize = bytes % 4 == 0 ? 4 : 1;
    int64_t n = bytes / esize;
    int64_t dims[4] = {1, 1, 1, n}, st1[4] = {0, 0, 0, 1};
    cl_launch_begin(L, "copy_strided", &k);
    cl_arg_in(&k, 0);
    cl_arg_out(&k, 0);
    cl_arg_i32(&k, esize);
    cl_arg_i64(&k, n);
    cl_arg_long4(&k, dims);
    cl_arg_long4(&k, st1);
    cl_arg_i64(&k, 0);
    cl_arg_long4(&k, st1);
    cl_arg_i64(&k, 0);
    s = cl_launch_1d(&k, n);
    if (s != VNRT_OK) return s;
  }
  if (N == 0 || rb == 0) return VNRT_OK;
  int wide = rb % 4 == 0;
  int64_t units = wide ? rb / 4 : rb;
  cl_launch_begin(L, "kv_scatter", &k);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 2);
  cl_arg_out(&k, 0);
  cl_arg_i64(&k, units);
  cl_arg_i32(&k, wide);
  cl_arg_i32(&k, (int32_t)N);
  cl_arg_i32(&k, div);
  cl_arg_i64(&k, S);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  s = cl_launch_1d(&k, units);
  return s != VNRT_OK ? s : cl_add_deferred_check(L, slot, report_kv_scatter, info, 3);
}

/* ---- index_scores ---------------------------------------------------------------------- */

int cl_index_scores_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                             const vnrt_backend_node *node) {
  const vnrt_tensor_type *q = cl_q_in(g, node, 0), *k = cl_q_in(g, node, 1);
  const vnrt_tensor_type *w = cl_q_in(g, node, 2), *pos = cl_q_in(g, node, 3);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  return cl_is_float(q->dtype) && cl_is_float(k->dtype) && cl_is_float(w->dtype) && q->rank == 3 &&
         k->rank == 2 && k->dims[1] == q->dims[2] && vnrt_numel(w) == q->dims[0] * q->dims[1] &&
         pos->dtype == VNRT_I32 && vnrt_numel(pos) == q->dims[0] && o->dtype == VNRT_F32 &&
         vnrt_numel(o) == q->dims[0] * k->dims[0] && node->params->index_scores.ratio >= 1;
}

vnrt_status cl_index_scores_lower(cl_lower *L) {
  const vnrt_tensor_type *q = cl_in_type(L, 0), *kt = cl_in_type(L, 1);
  int64_t T = q->dims[0], S = kt->dims[0];
  cl_launch k;
  cl_launch_begin(L, "index_scores", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in_dt(&k, 1);
  cl_arg_in_dt(&k, 2);
  cl_arg_in(&k, 3);
  cl_arg_out(&k, 0);
  cl_arg_i32(&k, (int32_t)S);
  cl_arg_i32(&k, (int32_t)T);
  cl_arg_i32(&k, (int32_t)q->dims[1]);
  cl_arg_i32(&k, (int32_t)q->dims[2]);
  cl_arg_i32(&k, L->node->params->index_scores.ratio);
  return cl_launch_2d(&k, (S + 3) / 4, T);
}

/* ---- sparse_attention ------------------------------------------------------------------ */

/* The work-group size sparse_attention asks for: enough items for D in ATT_MAXJ channels. */
static size_t sa_want_wg(int64_t D) {
  size_t want = 64;
  while ((int64_t)want * ATT_MAXJ < D && want < SA_WG_MAX) want *= 2;
  return want;
}

int cl_sparse_attention_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                                 const vnrt_backend_node *node) {
  const vnrt_sparse_attention_params *p = &node->params->sparse_attention;
  const vnrt_tensor_type *q = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  const vnrt_tensor_type *kv = cl_q_in(g, node, 1), *ring = cl_q_in(g, node, 2);
  const vnrt_tensor_type *sk = cl_q_in(g, node, 3), *pos0 = cl_q_in(g, node, 4);
  if (!cl_is_float(q->dtype) || !cl_is_float(o->dtype) || !cl_is_float(kv->dtype) ||
      !cl_is_float(ring->dtype) || !cl_is_float(sk->dtype) || q->rank != 3 || kv->rank != 2 ||
      ring->rank != 2 || ring->dims[0] < 1 || kv->dims[0] != q->dims[0] ||
      kv->dims[1] != q->dims[2] || ring->dims[1] != q->dims[2] || vnrt_numel(sk) != q->dims[1] ||
      pos0->dtype != VNRT_I32 || vnrt_numel(pos0) != 1 || vnrt_numel(o) != vnrt_numel(q)) {
    return 0;
  }
  if (node->n_inputs > 5) {
    const vnrt_tensor_type *comp = cl_q_in(g, node, 5);
    if (!cl_is_float(comp->dtype) || comp->rank != 2 || comp->dims[1] != q->dims[2] ||
        p->ratio < 1) {
      return 0;
    }
  }
  if (node->n_inputs > 6) {
    const vnrt_tensor_type *idx = cl_q_in(g, node, 6);
    if (idx->dtype != VNRT_I32 || idx->rank != 2 || idx->dims[0] != q->dims[0]) return 0;
  }
  /* Where the work-group kernel does not fit (D too wide for the device's work-groups or
   * local memory), the CPU drivers' kernels run instead: every device takes the node. */
  return 1;
}

/* Whether the work-group kernel suits dev for heads of width D: real local memory, D within
 * ATT_MAXJ channels per item of a work-group the device allows, q and 4 wg-sized arrays in
 * local memory. */
static int sa_wg_fits(const vnrt_backend_device *dev, int64_t D) {
  if (!dev->desc->local_mem_dedicated) return 0;
  size_t wg = sa_want_wg(D);
  size_t dev_wg =
      dev->desc->max_wg < dev->desc->max_wi[0] ? dev->desc->max_wg : dev->desc->max_wi[0];
  return wg <= dev_wg && (int64_t)wg * ATT_MAXJ >= D &&
         (uint64_t)(D + 4 * (int64_t)wg) * 4 <= dev->desc->local_mem;
}

/* The arguments every sparse_attention kernel takes first (v4.cl's SA_ARGS). */
static void sa_args(cl_lower *L, cl_launch *k) {
  const vnrt_sparse_attention_params *p = &L->node->params->sparse_attention;
  const vnrt_tensor_type *q = cl_in_type(L, 0), *ring = cl_in_type(L, 2);
  const int has_comp = L->node->n_inputs > 5, has_idx = L->node->n_inputs > 6;
  cl_arg_in_dt(k, 0);
  cl_arg_in_dt(k, 1);
  cl_arg_in_dt(k, 2);
  cl_arg_in_dt(k, 3);
  cl_arg_in(k, 4);
  cl_arg_opt_in_dt(k, 5);
  cl_arg_opt_in(k, 6);
  cl_arg_out_dt(k, 0);
  cl_arg_i32(k, (int32_t)q->dims[0]);
  cl_arg_i32(k, (int32_t)q->dims[1]);
  cl_arg_i32(k, (int32_t)q->dims[2]);
  cl_arg_i32(k, (int32_t)ring->dims[0]);
  cl_arg_i32(k, has_comp);
  cl_arg_i32(k, has_idx);
  cl_arg_i32(k, has_comp ? p->ratio : 1);
  cl_arg_i32(k, has_comp ? (int32_t)cl_in_type(L, 5)->dims[0] : 0);
  cl_arg_i32(k, has_idx ? (int32_t)cl_in_type(L, 6)->dims[1] : 0);
  cl_arg_f32(k, (float)p->scale);
}

/* info: idx tensor, Sc, K. */
static vnrt_status report_sparse_idx(vnrt_backend_exec *exec, const cl_step *st, int32_t at) {
  int32_t v = 0;
  vnrt_status s = cl_check_value(exec, st, 1, &v);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "sparse_attention '%s': idx[%lld, %lld] = %d is outside comp's %lld entries",
                 exec->graph.nodes[st->node].name, (long long)(at / st->info[2]),
                 (long long)(at % st->info[2]), (int)v, (long long)st->info[1]);
}

/* The idx check's step (slot, its value in slot + 1), read after the run: idx values >= Sc
 * are errors (negative ones mean "none"); the kernels skip such entries. */
static vnrt_status sa_idx_check_step(cl_lower *L, int32_t slot) {
  const int64_t Sc = L->node->n_inputs > 5 ? cl_in_type(L, 5)->dims[0] : 0;
  const int64_t info[3] = {L->node->inputs[6], Sc, cl_in_type(L, 6)->dims[1]};
  return cl_add_deferred_check(L, slot, report_sparse_idx, info, 3);
}

/* pos0's and idx's checks as kernels of their own (the paths that do not fuse them). */
static vnrt_status sa_checks(cl_lower *L) {
  const int has_idx = L->node->n_inputs > 6;
  const int64_t T = cl_in_type(L, 0)->dims[0], K = has_idx ? cl_in_type(L, 6)->dims[1] : 0;
  const int64_t Sc = L->node->n_inputs > 5 ? cl_in_type(L, 5)->dims[0] : 0;
  vnrt_status s = check_pos0(L, 4, 1);
  if (s != VNRT_OK || !has_idx || T * K <= 0) return s;
  int32_t slot = cl_err_slot(L);
  (void)cl_err_slot(L); /* slot + 1: the bad entry (read after the run: the kernels skip it) */
  s = launch_check_below(L, 6, T * K, 1, Sc, slot);
  return s != VNRT_OK ? s : sa_idx_check_step(L, slot);
}

/* CPU drivers: the three passes of v4.cl (scores for 4 heads per item, softmax per row, the
 * weighted sum of keys for 4 heads per item), keys loaded once for 4 heads, over chunks of
 * tokens whose scores (NK, the largest key set a query can have, per head) fit in
 * SA_SCORES_MAX_BYTES of scratch. */
static vnrt_status sa_three_pass(cl_lower *L, int64_t NK) {
  const vnrt_tensor_type *q = cl_in_type(L, 0);
  int64_t T = q->dims[0], H = q->dims[1], D = q->dims[2], HG = (H + 3) / 4;
  const int f32 = q->dtype == VNRT_F32 && cl_out_type(L, 0)->dtype == VNRT_F32 &&
                  cl_in_type(L, 1)->dtype == VNRT_F32 && cl_in_type(L, 2)->dtype == VNRT_F32 &&
                  (L->node->n_inputs <= 5 || cl_in_type(L, 5)->dtype == VNRT_F32);
  const int vec = f32 && D % L->dev->desc->vec_width == 0;
  int64_t Tc = (int64_t)(SA_SCORES_MAX_BYTES / ((uint64_t)(H * NK) * 4));
  if (Tc > T) Tc = T;
  uint64_t sc = cl_scratch(L, (uint64_t)(Tc * H * NK) * 4);
  /* The checks of pos0 and idx are the first scores launch's first item's (two launches fewer
   * a node) where that item's scan of idx is short (decode); at prefill, or when there is no
   * scores launch, kernels of their own (check_below spreads the scan over its items). */
  if (T <= 0 || HG <= 0 || NK <= 0) return sa_checks(L);
  const int64_t K = L->node->n_inputs > 6 ? cl_in_type(L, 6)->dims[1] : 0;
  const int has_idx = K > 0;
  const int fuse = T * K <= SA_FUSED_IDX_MAX;
  vnrt_status s = fuse ? VNRT_OK : sa_checks(L);
  if (s != VNRT_OK) return s;
  const int32_t pslot = fuse ? cl_err_slot(L) : -1, islot = fuse && has_idx ? cl_err_slot(L) : -1;
  if (islot >= 0) (void)cl_err_slot(L); /* islot + 1: the bad entry */
  for (int64_t t0 = 0; t0 < T && s == VNRT_OK; t0 += Tc) {
    const int64_t n = T - t0 < Tc ? T - t0 : Tc;
    cl_launch k;
    cl_launch_begin(L, "sparse_attention_scores", &k);
    sa_args(L, &k);
    cl_arg_scratch(&k, sc);
    cl_arg_i32(&k, (int32_t)NK);
    cl_arg_i32(&k, (int32_t)t0);
    cl_arg_i32(&k, (int32_t)n);
    cl_arg_err(&k, 0);
    cl_arg_i32(&k, t0 == 0 ? pslot : -1);
    cl_arg_i32(&k, t0 == 0 ? islot : -1);
    s = cl_launch_2d(&k, NK, n * HG);
    if (s != VNRT_OK) break;
    if (t0 == 0 && fuse) {
      s = pos0_step(L, 4, pslot, 1);
      if (s == VNRT_OK && has_idx) s = sa_idx_check_step(L, islot);
      if (s != VNRT_OK) break;
    }
    /* A work-group of a few (token, head) rows on CPU drivers (one of all the rows left the
     * other cores idle); 256 rows where local memory is real. */
    cl_launch_begin(L, "sparse_attention_softmax", &k);
    cl_arg_in_dt(&k, 3);
    cl_arg_scratch(&k, sc);
    cl_arg_i32(&k, (int32_t)n);
    cl_arg_i32(&k, (int32_t)H);
    cl_arg_i32(&k, (int32_t)NK);
    size_t swg = cl_launch_wg(&k, L->dev->desc->local_mem_dedicated ? 256 : 4);
    size_t rows = (size_t)(n * H);
    s = cl_launch_end(&k, 1, &rows, &swg);
    if (s != VNRT_OK) break;
    cl_launch_begin(L, "sparse_attention_out", &k);
    sa_args(L, &k);
    cl_arg_scratch(&k, sc);
    cl_arg_i32(&k, (int32_t)NK);
    cl_arg_i32(&k, (int32_t)t0);
    cl_arg_i32(&k, (int32_t)n);
    cl_arg_i32(&k, vec);
    s = cl_launch_2d(&k, vec ? D / L->dev->desc->vec_width : D, n * HG);
  }
  return s;
}

vnrt_status cl_sparse_attention_lower(cl_lower *L) {
  const vnrt_tensor_type *q = cl_in_type(L, 0), *ring = cl_in_type(L, 2);
  const int has_comp = L->node->n_inputs > 5, has_idx = L->node->n_inputs > 6;
  int64_t T = q->dims[0], H = q->dims[1], D = q->dims[2];
  int64_t Sc = has_comp ? cl_in_type(L, 5)->dims[0] : 0;
  int64_t K = has_idx ? cl_in_type(L, 6)->dims[1] : 0;
  cl_launch k;
  vnrt_status s = VNRT_OK;
  if (sa_wg_fits(L->dev, D)) {
    cl_launch_begin(L, "sparse_attention", &k);
    size_t wg = cl_launch_wg(&k, sa_want_wg(D));
    if (k.status != VNRT_OK) return k.status;
    if ((int64_t)wg * ATT_MAXJ >= D) {
      /* The checks' kernels after it (their steps are read after the run; the kernel skips
       * bad entries): cl_launch_begin has taken this launch's step already, so nothing can be
       * added before its cl_launch_end. */
      sa_args(L, &k);
      cl_arg_local(&k, sizeof(float) * (size_t)(D > 0 ? D : 1));
      cl_arg_local(&k, sizeof(float) * wg);
      cl_arg_local(&k, sizeof(int32_t) * wg);
      cl_arg_local(&k, sizeof(int32_t) * wg);
      cl_arg_local(&k, sizeof(float) * wg);
      size_t items = (size_t)(T * H) * wg;
      s = cl_launch_end(&k, 1, &items, &wg);
      return s != VNRT_OK ? s : sa_checks(L);
    }
    /* The kernel allows smaller work-groups than D needs: drop the launch (no items). */
    size_t none = 0;
    s = cl_launch_end(&k, 1, &none, NULL);
    if (s != VNRT_OK) return s;
  }
  int64_t NK = ring->dims[0] + (has_idx ? K : Sc);
  if ((uint64_t)H * (uint64_t)NK * 4 <= SA_SCORES_MAX_BYTES) return sa_three_pass(L, NK);
  /* One token's scores exceed the scratch bound: a work-item per (token, head). */
  s = sa_checks(L);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "sparse_attention_rows", &k);
  sa_args(L, &k);
  cl_arg_scratch(&k, cl_scratch(L, (uint64_t)(T * H * D) * 4));
  size_t one = 1, items = (size_t)(T * H);
  return cl_launch_end(&k, 1, &items, &one);
}
