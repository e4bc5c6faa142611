/* OpenCL lowering of embedding (ids checked on the device before the gather, so a bad id
 * writes nothing and is reported with its position; a quantized table's gather is in
 * cl_ops_quant.c), topk (with fill), kv_scatter and the V4 lightning indexer's index_scores
 * (shaders index.cl). */
#include "cl_ops.h"

int cl_embedding_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                          const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  const vnrt_tensor_type *ids = cl_q_in(g, node, 1);
  if (node->params->embedding.table.codes != VNRT_DTYPE_INVALID) {
    return cl_q_embedding_supports(dev, g, node);
  }
  return cl_is_float(x->dtype) && cl_is_float(o->dtype) && x->rank == 2 && ids->dtype == VNRT_I32 &&
         vnrt_numel(o) == vnrt_numel(ids) * x->dims[1];
}

int cl_topk_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                     const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (!cl_is_float(x->dtype) || !cl_is_float(o->dtype)) return 0;
  int64_t k = node->params->topk.k;
  int64_t e = x->rank > 0 ? x->dims[x->rank - 1] : 1;
  return node->n_outputs == 2 && cl_q_out(g, node, 1)->dtype == VNRT_I32 && k >= 1 && k <= e;
}

/* Reports the first bad id of an embedding. info: ids tensor, V. */
static vnrt_status report_embedding(vnrt_backend_exec *exec, const cl_step *st, int32_t pos) {
  int32_t id = 0;
  vnrt_status s = cl_check_value(exec, st, 1, &id);
  if (s != VNRT_OK) return s;
  return cl_fail(exec->dev, VNRT_ERROR_OUT_OF_RANGE,
                 "embedding '%s': id %d at position %d out of range [0, %lld)",
                 exec->graph.nodes[st->node].name, (int)id, (int)pos, (long long)st->info[1]);
}

vnrt_status cl_embedding_lower(cl_lower *L) {
  const vnrt_tensor_type *table = cl_in_type(L, 0), *ids = cl_in_type(L, 1);
  int64_t V = table->dims[0], D = table->dims[1], n = vnrt_numel(ids);
  if (n == 0) return VNRT_OK;
  /* Read after the run: the gathers clamp ids to [0, V). */
  int32_t slot = cl_err_slot(L);
  (void)cl_err_slot(L); /* slot + 1: the bad id */
  cl_launch k;
  cl_launch_begin(L, "check_index_val", &k);
  cl_arg_in(&k, 1);
  cl_arg_in(&k, 1); /* no offsets */
  cl_arg_i32(&k, 0);
  cl_arg_i32(&k, 1);
  cl_arg_i64(&k, n);
  cl_arg_i64(&k, V);
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  vnrt_status s = cl_launch_single(&k, 64);
  if (s != VNRT_OK) return s;
  const int64_t info[2] = {L->node->inputs[1], V};
  s = cl_add_deferred_check(L, slot, report_embedding, info, 2);
  if (s != VNRT_OK) return s;
  if (L->node->params->embedding.table.codes != VNRT_DTYPE_INVALID) {
    return cl_q_embedding_gather(L);
  }
  cl_launch_begin(L, "embedding", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in(&k, 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  cl_arg_i64(&k, n);
  cl_arg_i64(&k, V);
  return cl_launch_2d(&k, D, n);
}

vnrt_status cl_topk_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t e = x->rank > 0 ? x->dims[x->rank - 1] : 1;
  int64_t rows = e > 0 ? vnrt_numel(x) / e : 0;
  cl_launch k;
  cl_launch_begin(L, "topk", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_out(&k, 1);
  cl_arg_i64(&k, rows);
  cl_arg_i32(&k, (int32_t)e);
  cl_arg_i32(&k, L->node->params->topk.k);
  cl_arg_i32(&k, L->node->params->topk.has_fill);
  cl_arg_i32(&k, L->node->params->topk.fill);
  return cl_launch_1d(&k, rows);
}
