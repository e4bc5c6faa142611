/* Placement: which device runs each node of a plan — the target if it can, else the CPU. */
#include <stdio.h>
#include <string.h>

#include "plan.h"

void vn_plan_fill_node(const vnrt_graph *g, int32_t node, vnrt_backend_node *out) {
  const vn_node *nd = &g->nodes[node];
  memset(out, 0, sizeof *out);
  out->op = nd->op;
  out->name = g->values[nd->outputs[0]].name;
  out->n_inputs = nd->n_inputs;
  out->n_outputs = nd->n_outputs;
  for (int32_t i = 0; i < nd->n_inputs; ++i) out->inputs[i] = nd->inputs[i];
  for (int32_t i = 0; i < nd->n_outputs; ++i) out->outputs[i] = nd->outputs[i];
  out->n_attrs = nd->n_attrs;
  out->attrs = nd->attrs;
  out->params = &nd->params;
}

/* Decides which device runs each live node: the target if it can, else the CPU. */
vnrt_status vn_plan_place(vnrt_plan *p, const vnrt_plan_desc *desc) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  vn_plan_device *target = &p->devs[0];
  /* The query graph: every value as a tensor (index = value id), no buffers yet. */
  vnrt_backend_tensor *tensors =
      vn_calloc(ctx, (size_t)(g->n_values ? g->n_values : 1), sizeof *tensors);
  vnrt_backend_node *nodes = vn_calloc(ctx, (size_t)(p->n_order ? p->n_order : 1), sizeof *nodes);
  if (!tensors || !nodes) {
    vn_free(ctx, tensors), vn_free(ctx, nodes);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory placing %d nodes", p->n_order);
  }
  for (int32_t v = 0; v < g->n_values; ++v) {
    tensors[v].type = g->values[v].type;
    tensors[v].name = g->values[v].name;
  }
  for (int32_t s = 0; s < p->n_order; ++s) vn_plan_fill_node(g, p->order[s], &nodes[s]);
  vnrt_backend_graph query = {g->n_values,
                              tensors,
                              p->n_order,
                              nodes,
                              desc ? desc->kernels : VNRT_KERNELS_FAST,
                              sizeof(vnrt_backend_graph),
                              sizeof(vnrt_backend_tensor),
                              sizeof(vnrt_backend_node)};
  vnrt_status status = VNRT_OK;
  int32_t n_fallback = 0;
  char first_fallback[256] = "";
  for (int32_t s = 0; s < p->n_order && status == VNRT_OK; ++s) {
    int32_t node = p->order[s];
    if (target->iface->supports_node(target->bdev, &query, s)) {
      p->node_dev[node] = 0;
      continue;
    }
    char tbuf[160];
    const vn_node *nd = &g->nodes[node];
    const char *spec = target->device->info.spec;
    if (p->n_devs == 1 || (desc && desc->no_fallback)) {
      status = vn_error(ctx, VNRT_ERROR_UNSUPPORTED,
                        "device %s cannot run node '%s' (%s with input %s)%s", spec,
                        g->values[nd->outputs[0]].name, vnrt_op_name(nd->op),
                        vn_type_str(&g->values[nd->inputs[0]].type, tbuf, sizeof tbuf),
                        p->n_devs == 1 ? "" : " and fallback to the CPU is off");
      break;
    }
    /* The CPU must run it; if it cannot either, nobody can. */
    vn_plan_device *cpu = &p->devs[1];
    if (!cpu->iface->supports_node(cpu->bdev, &query, s)) {
      status = vn_error(ctx, VNRT_ERROR_UNSUPPORTED,
                        "no device can run node '%s' (%s with input %s): neither %s nor the cpu",
                        g->values[nd->outputs[0]].name, vnrt_op_name(nd->op),
                        vn_type_str(&g->values[nd->inputs[0]].type, tbuf, sizeof tbuf), spec);
      break;
    }
    p->node_dev[node] = 1;
    if (n_fallback++ == 0) {
      snprintf(first_fallback, sizeof first_fallback, "'%s' (%s)", g->values[nd->outputs[0]].name,
               vnrt_op_name(nd->op));
    }
  }
  if (status == VNRT_OK && n_fallback > 0) {
    vn_log(ctx, VNRT_LOG_WARN, "plan for %s: %d of %d nodes run on the cpu instead (first: %s)",
           target->device->info.spec, n_fallback, p->n_order, first_fallback);
  }
  p->info.n_fallback_nodes = n_fallback;
  vn_free(ctx, tensors);
  vn_free(ctx, nodes);
  return status;
}
