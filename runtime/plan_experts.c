/* Hash-routed experts (DualPath prefetch): the expert weights of a moe_ffn whose experts come
 * from moe_hash_route of bound token ids and tid2eid are known before any compute, so a
 * streamed expert param streams only the experts a run uses. */
#include <string.h>

#include "plan.h"

vnrt_status vn_plan_find_hash_routed(vnrt_plan *p, vn_streamed *sp) {
  const vnrt_graph *g = p->graph;
  int32_t reader = -1, readers = 0;
  for (int32_t s = 0; s < p->n_order; ++s) {
    const vn_node *nd = &g->nodes[p->order[s]];
    for (int32_t k = 0; k < nd->n_inputs; ++k) {
      if (nd->inputs[k] == sp->value) reader = p->order[s], ++readers;
    }
  }
  if (readers != 1) return VNRT_OK;
  const vn_node *ffn = &g->nodes[reader];
  if (ffn->op != VNRT_OP_MOE_FFN || (ffn->inputs[3] != sp->value && ffn->inputs[4] != sp->value)) {
    return VNRT_OK;
  }
  const vn_value *ev = &g->values[ffn->inputs[1]];
  if (ev->kind != VN_VALUE_NODE || ev->slot != 1) return VNRT_OK;
  const vn_node *route = &g->nodes[ev->producer];
  if (route->op != VNRT_OP_MOE_HASH_ROUTE) return VNRT_OK;
  int32_t ids = route->inputs[1], table = route->inputs[2];
  if (g->values[ids].kind == VN_VALUE_NODE || g->values[table].kind == VN_VALUE_NODE ||
      p->vals[table].streamed) {
    return VNRT_OK;
  }
  sp->hash_ids = ids;
  sp->hash_table = table;
  sp->experts = g->values[sp->value].type.dims[0];
  sp->used = vn_calloc(p->ctx, (size_t)sp->experts, 1);
  for (int32_t k = 0; k < 2; ++k) {
    int32_t v = k ? table : ids;
    vn_plan_value *pv = &p->vals[v];
    if (!pv->shadow) pv->shadow = vn_calloc(p->ctx, 1, vnrt_tensor_type_bytes(&g->values[v].type));
    if (!pv->shadow) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  if (!sp->used) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  return VNRT_OK;
}

/* The whole param's bytes when an id is out of range: moe_hash_route then reports it. */
uint64_t vn_plan_mark_experts(vnrt_plan *p, vn_streamed *sp, bool *selective) {
  const vnrt_graph *g = p->graph;
  uint64_t total = vnrt_tensor_type_bytes(&g->values[sp->value].type);
  *selective = false;
  if (sp->hash_ids < 0) return total;
  const vnrt_tensor_type *tt = &g->values[sp->hash_table].type;
  const int32_t *ids = p->vals[sp->hash_ids].shadow, *table = p->vals[sp->hash_table].shadow;
  int64_t tokens = vnrt_tensor_type_numel(&g->values[sp->hash_ids].type);
  int64_t vocab = tt->dims[0], k = tt->dims[1];
  memset(sp->used, 0, (size_t)sp->experts);
  int64_t n_used = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) return total;
    for (int64_t i = 0; i < k; ++i) {
      int32_t e = table[ids[t] * k + i];
      if (e < 0 || e >= sp->experts) return total;
      n_used += !sp->used[e];
      sp->used[e] = 1;
    }
  }
  *selective = true;
  return total / (uint64_t)sp->experts * (uint64_t)n_used;
}
