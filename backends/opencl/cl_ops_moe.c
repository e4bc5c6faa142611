/* OpenCL lowering of the MoE ops: moe_route, moe_hash_route (token ids and table entries
 * checked on the device first) and moe_ffn (expert ids checked first, then the up and down
 * passes over (token, slot) pairs; shaders moe.cl, index.cl; with quantized experts or
 * act_quant the passes of cl_ops_quant.c). */
#include "cl_ops.h"

/* The kernels take the score function as vnrt_score_fn's value (moe.cl's SCORE_*). */
_Static_assert(VNRT_SCORE_SIGMOID == 0 && VNRT_SCORE_SOFTMAX == 1 && VNRT_SCORE_SQRT_SOFTPLUS == 2,
               "moe.cl's SCORE_* codes are vnrt_score_fn's values");

/* x[..., last] float, with T = numel / last rows; 0 if x is not. */
static int float_rows(const vnrt_backend_graph *g, const vnrt_backend_node *node, int64_t *last,
                      int64_t *T) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0);
  if (!cl_is_float(x->dtype) || x->rank < 1) return 0;
  *last = x->dims[x->rank - 1];
  *T = *last > 0 ? vnrt_numel(x) / *last : 0;
  return 1;
}

/* The routers' results: float weights and i32 experts, over E = last > 0 experts. */
static int route_outputs(const vnrt_backend_graph *g, const vnrt_backend_node *node, int64_t last) {
  return node->n_outputs == 2 && cl_is_float(cl_q_out(g, node, 0)->dtype) &&
         cl_q_out(g, node, 1)->dtype == VNRT_I32 && last != 0;
}

int cl_moe_ffn_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                        const vnrt_backend_node *node) {
  if (cl_q_moe_ffn_node(node)) return cl_q_moe_ffn_supports(dev, g, node);
  int64_t last, T;
  if (!float_rows(g, node, &last, &T)) return 0;
  const vnrt_tensor_type *ex = cl_q_in(g, node, 1), *w = cl_q_in(g, node, 2);
  const vnrt_tensor_type *gu = cl_q_in(g, node, 3), *wd = cl_q_in(g, node, 4);
  if (ex->dtype != VNRT_I32 || ex->rank < 1 || !cl_is_float(w->dtype) || !cl_is_float(gu->dtype) ||
      !cl_is_float(wd->dtype) || gu->rank != 3 || wd->rank != 3 ||
      !cl_is_float(cl_q_out(g, node, 0)->dtype) || last == 0) {
    return 0;
  }
  int64_t k = ex->dims[ex->rank - 1], C = last, F = gu->dims[1] / 2, E = gu->dims[0];
  return vnrt_numel(ex) == T * k && vnrt_numel(w) == T * k && gu->dims[1] == 2 * F &&
         gu->dims[2] == C && wd->dims[0] == E && wd->dims[1] == C && wd->dims[2] == F;
}

int cl_moe_hash_route_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                               const vnrt_backend_node *node) {
  int64_t last, T;
  if (!float_rows(g, node, &last, &T) || !route_outputs(g, node, last)) return 0;
  const vnrt_tensor_type *ids = cl_q_in(g, node, 1), *tab = cl_q_in(g, node, 2);
  return ids->dtype == VNRT_I32 && tab->dtype == VNRT_I32 && tab->rank == 2 &&
         vnrt_numel(ids) == T && vnrt_numel(cl_q_out(g, node, 1)) == T * tab->dims[1] &&
         T * (tab->dims[1] + 1) <= INT32_MAX;
}

int cl_moe_route_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                          const vnrt_backend_node *node) {
  const vnrt_moe_route_params *p = &node->params->moe_route;
  int64_t last, T;
  if (!float_rows(g, node, &last, &T) || !route_outputs(g, node, last)) return 0;
  int64_t E = last;
  if (p->has_bias) {
    const vnrt_tensor_type *b = cl_q_in(g, node, 1);
    if (!cl_is_float(b->dtype) || vnrt_numel(b) != E) return 0;
  }
  int64_t k = p->k, n_group = p->n_group, topk_group = p->topk_group;
  if (n_group > 1 && (E % n_group != 0 || topk_group < 1 || topk_group > n_group)) return 0;
  int64_t eligible = n_group > 1 ? topk_group * (E / n_group) : E;
  return k >= 1 && k <= eligible && vnrt_numel(cl_q_out(g, node, 1)) == T * k;
}

vnrt_status cl_moe_route_lower(cl_lower *L) {
  const vnrt_moe_route_params *p = &L->node->params->moe_route;
  const vnrt_tensor_type *lt = cl_in_type(L, 0);
  int64_t E = lt->dims[lt->rank - 1], T = vnrt_numel(lt) / E;
  int64_t n_group = p->n_group, G = n_group > 1 ? n_group : 1;
  if (T == 0) return VNRT_OK;
  uint64_t work = cl_scratch(L, (uint64_t)(T * (3 * E + 2 * G)) * 4);
  cl_launch k;
  cl_launch_begin(L, "moe_route", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_opt_in_dt(&k, 1);
  cl_arg_i32(&k, p->has_bias);
  cl_arg_out_dt(&k, 0);
  cl_arg_out(&k, 1);
  cl_arg_scratch(&k, work);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)E);
  cl_arg_i32(&k, p->k);
  cl_arg_i32(&k, (int32_t)p->score);
  cl_arg_i32(&k, (int32_t)n_group);
  cl_arg_i32(&k, p->topk_group);
  cl_arg_i32(&k, p->norm);
  cl_arg_f32(&k, (float)p->scale);
  return cl_launch_1d(&k, T);
}

/* info: ids tensor, tid2eid tensor, V, k, E. Position t·(k+1) is ids[t] itself, t·(k+1)+1+i
 * entry i of its table row. */
static vnrt_status report_hash_route(vnrt_backend_exec *exec, const cl_step *st, int32_t pos) {
  const char *name = exec->graph.nodes[st->node].name;
  int64_t k = st->info[3];
  int64_t t = pos / (k + 1), r = pos % (k + 1);
  int32_t id = 0, e = 0;
  /* The check kept the id and the entry next to its slot (check_hash_route). */
  vnrt_status s = cl_check_value(exec, st, 1, &id);
  if (s != VNRT_OK) return s;
  if (r == 0) {
    return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                   "moe_hash_route '%s': token id %d (token %lld) is outside [0, %lld) of "
                   "tid2eid",
                   name, (int)id, (long long)t, (long long)st->info[2]);
  }
  s = cl_check_value(exec, st, 2, &e);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "moe_hash_route '%s': expert id %d (tid2eid[%d, %lld]) is outside [0, %lld)", name,
                 (int)e, (int)id, (long long)(r - 1), (long long)st->info[4]);
}

vnrt_status cl_moe_hash_route_lower(cl_lower *L) {
  const vnrt_moe_hash_route_params *p = &L->node->params->moe_hash_route;
  const vnrt_tensor_type *lt = cl_in_type(L, 0), *tab = cl_in_type(L, 2);
  int64_t E = lt->dims[lt->rank - 1], T = vnrt_numel(lt) / E;
  int64_t V = tab->dims[0], kk = tab->dims[1];
  if (T == 0) return VNRT_OK;
  int32_t slot = cl_err_slot(L);
  (void)cl_err_slot(L); /* slot + 1, slot + 2: the bad position's id and entry */
  (void)cl_err_slot(L);
  cl_launch k;
  cl_launch_begin(L, "check_hash_route", &k);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 2);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)V);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)E);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  vnrt_status s = cl_launch_single(&k, 64);
  if (s != VNRT_OK) return s;
  const int64_t info[5] = {L->node->inputs[1], L->node->inputs[2], V, kk, E};
  s = cl_add_deferred_check(L, slot, report_hash_route, info, 5);
  if (s != VNRT_OK) return s;
  uint64_t work = cl_scratch(L, (uint64_t)(T * E) * 4);
  cl_launch_begin(L, "moe_hash_route", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 2);
  cl_arg_out_dt(&k, 0);
  cl_arg_out(&k, 1);
  cl_arg_scratch(&k, work);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)E);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)p->score);
  cl_arg_i32(&k, p->norm);
  cl_arg_f32(&k, (float)p->scale);
  cl_arg_i32(&k, (int32_t)V);
  return cl_launch_1d(&k, T);
}

/* info: experts tensor, k, E. */
static vnrt_status report_ffn(vnrt_backend_exec *exec, const cl_step *st, int32_t pos) {
  int32_t e = 0;
  vnrt_status s = cl_read_i32(exec, (int32_t)st->info[0], pos, &e);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "moe_ffn '%s': expert id %d (experts[%lld, %lld]) is outside [0, %lld)",
                 exec->graph.nodes[st->node].name, (int)e, (long long)(pos / st->info[1]),
                 (long long)(pos % st->info[1]), (long long)st->info[2]);
}

/* The same for the quantized passes' deferred check (the id stored next to its slot). */
static vnrt_status report_ffn_deferred(vnrt_backend_exec *exec, const cl_step *st, int32_t pos) {
  int32_t e = 0;
  vnrt_status s = cl_check_value(exec, st, 1, &e);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "moe_ffn '%s': expert id %d (experts[%lld, %lld]) is outside [0, %lld)",
                 exec->graph.nodes[st->node].name, (int)e, (long long)(pos / st->info[1]),
                 (long long)(pos % st->info[1]), (long long)st->info[2]);
}

/* One grouped expert GEMM: out[p, r] = W[e(p), r, :]·in[p / in_div, :] over rows x K. */
static vnrt_status launch_grouped(cl_lower *L, int32_t w_input, int in_input, uint64_t in_scratch,
                                  int in_div, uint64_t out, uint64_t order, uint64_t blocks,
                                  int64_t rows, int64_t K, uint64_t max_blocks) {
  cl_launch k;
  cl_launch_begin(L, "moe_gemm_grouped", &k);
  cl_arg_in_dt(&k, w_input);
  if (in_input >= 0) {
    cl_arg_in_dt(&k, in_input);
  } else {
    cl_arg_scratch(&k, in_scratch);
    cl_arg_i32(&k, VNRT_F32);
  }
  cl_arg_i32(&k, in_div);
  cl_arg_scratch(&k, out);
  cl_arg_scratch(&k, order);
  cl_arg_scratch(&k, blocks);
  cl_arg_i32(&k, (int32_t)rows);
  cl_arg_i32(&k, (int32_t)K);
  size_t wg = cl_launch_wg(&k, 8);
  size_t items[2] = {(size_t)(rows + 3) / 4, (size_t)max_blocks}, lws[2] = {wg, 1};
  return cl_launch_end(&k, 2, items, lws);
}

static vnrt_status lower_ffn_grouped(cl_lower *L, int64_t T, int64_t C, int64_t F, int64_t kk,
                                     int64_t E, uint64_t max_blocks) {
  int64_t pairs = T * kk;
  uint64_t counts = cl_scratch(L, (uint64_t)E * 4);
  uint64_t order = cl_scratch(L, (uint64_t)pairs * 4);
  uint64_t blocks = cl_scratch(L, (4 + 4 * max_blocks) * 4);
  uint64_t gu = cl_scratch(L, (uint64_t)(pairs * 2 * F) * 4);
  uint64_t h = cl_scratch(L, (uint64_t)(pairs * F) * 4);
  uint64_t yp = cl_scratch(L, (uint64_t)(pairs * C) * 4);
  cl_launch k;
  cl_launch_begin(L, "moe_sort", &k);
  cl_arg_in(&k, 1);
  cl_arg_i64(&k, pairs);
  cl_arg_i32(&k, (int32_t)E);
  cl_arg_scratch(&k, counts);
  cl_arg_scratch(&k, order);
  cl_arg_scratch(&k, blocks);
  const size_t one = 1;
  vnrt_status s = cl_launch_end(&k, 1, &one, &one);
  if (s != VNRT_OK) return s;
  /* gate and up rows together: gu[p] = w_gate_up[e]·x[t] (2F values), t = p / k. */
  s = launch_grouped(L, 3, 0, 0, (int)kk, gu, order, blocks, 2 * F, C, max_blocks);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "moe_swiglu", &k);
  cl_arg_scratch(&k, gu);
  cl_arg_scratch(&k, h);
  cl_arg_i64(&k, pairs);
  cl_arg_i32(&k, (int32_t)F);
  cl_arg_f32(&k, (float)L->node->params->moe_ffn.limit);
  s = cl_launch_2d(&k, F, pairs);
  if (s != VNRT_OK) return s;
  s = launch_grouped(L, 4, -1, h, 1, yp, order, blocks, C, F, max_blocks);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "moe_combine", &k);
  cl_arg_scratch(&k, yp);
  cl_arg_in_dt(&k, 2);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)C);
  return cl_launch_2d(&k, C, T);
}

vnrt_status cl_moe_ffn_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *ex = cl_in_type(L, 1), *gu = cl_in_type(L, 3);
  int64_t C = x->dims[x->rank - 1], T = vnrt_numel(x) / C;
  int64_t kk = ex->dims[ex->rank - 1], E = gu->dims[0], F = gu->dims[1] / 2;
  int64_t pairs = T * kk;
  if (T == 0) return VNRT_OK;
  cl_launch k;
  /* The quantized passes clamp expert ids: their check is read after the run; the fused ones
   * check the ids in their up pass, which the check step follows. */
  const int deferred = cl_q_moe_ffn_node(L->node);
  if (deferred && cl_q_moe_ffn_fused(L)) {
    int32_t slot = cl_err_slot(L);
    (void)cl_err_slot(L); /* slot + 1: the bad id */
    uint64_t h = 0;
    vnrt_status s = cl_q_moe_ffn_fused_up(L, slot, &h);
    if (s != VNRT_OK) return s;
    const int64_t info[3] = {L->node->inputs[1], kk, E};
    s = cl_add_deferred_check(L, slot, report_ffn_deferred, info, 3);
    return s != VNRT_OK ? s : cl_q_moe_ffn_fused_down(L, h);
  }
  if (pairs > 0) {
    int32_t slot = cl_err_slot(L);
    if (deferred) (void)cl_err_slot(L); /* slot + 1: the bad id */
    cl_launch_begin(L, deferred ? "check_index_val" : "check_index", &k);
    cl_arg_in(&k, 1);
    cl_arg_in(&k, 1);
    cl_arg_i32(&k, 0);
    cl_arg_i32(&k, 1);
    cl_arg_i64(&k, pairs);
    cl_arg_i64(&k, E);
    cl_arg_err(&k, slot);
    cl_arg_i32(&k, slot);
    vnrt_status s = cl_launch_single(&k, 64);
    if (s != VNRT_OK) return s;
    const int64_t info[3] = {L->node->inputs[1], kk, E};
    s = deferred ? cl_add_deferred_check(L, slot, report_ffn_deferred, info, 3)
                 : cl_add_check(L, slot, report_ffn, info, 3);
    if (s != VNRT_OK) return s;
  }
  if (cl_q_moe_ffn_node(L->node)) return cl_q_moe_ffn_passes(L);
  /* Expert GEMMs when their scratch fits comfortably: pairs sorted by expert, each block of
   * pairs multiplied by its expert's weights once. Otherwise gather-GEMVs per pair, whose
   * scratch is only the hidden activations. */
  uint64_t max_blocks = (uint64_t)(pairs + 3) / 4 + (uint64_t)(E < pairs ? E : pairs);
  uint64_t grouped_bytes = 4 * ((uint64_t)E + (uint64_t)pairs + 4 + 4 * max_blocks +
                                (uint64_t)pairs * (3 * (uint64_t)F + (uint64_t)C)) +
                           6 * 256;
  uint64_t budget = L->dev->desc->max_alloc < (1ull << 30) ? L->dev->desc->max_alloc : (1ull << 30);
  if (grouped_bytes <= budget / 2) return lower_ffn_grouped(L, T, C, F, kk, E, max_blocks);
  uint64_t h = cl_scratch(L, (uint64_t)(pairs * F) * 4);
  cl_launch_begin(L, "moe_ffn_up", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_in_dt(&k, 3);
  cl_arg_scratch(&k, h);
  cl_arg_i64(&k, pairs);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)C);
  cl_arg_i32(&k, (int32_t)F);
  cl_arg_f32(&k, (float)L->node->params->moe_ffn.limit);
  vnrt_status s = cl_launch_2d(&k, F, pairs);
  if (s != VNRT_OK) return s;
  cl_launch_begin(L, "moe_ffn_down", &k);
  cl_arg_in(&k, 1);
  cl_arg_in_dt(&k, 2);
  cl_arg_in_dt(&k, 4);
  cl_arg_scratch(&k, h);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)C);
  cl_arg_i32(&k, (int32_t)F);
  return cl_launch_2d(&k, C, T);
}
