/* Running plans: bindings, the run loop with cross-device transfers, outputs and states. */
#include <stdio.h>
#include <string.h>

#include "plan.h"

/* ---- Bindings and running -------------------------------------------------------------- */

/* An input, param or state by name, or -1. */
static int32_t find_input(const vnrt_plan *p, const char *name) {
  int32_t v = name ? vnrt_graph_find(p->graph, name) : -1;
  return (v >= 0 && p->graph->values[v].kind != VN_VALUE_NODE) ? v : -1;
}

static vnrt_status no_input(vnrt_plan *p, const char *name) {
  char list[512] = "";
  size_t used = 0;
  for (int32_t i = 0; i < p->graph->n_inputs && used + 1 < sizeof list; ++i) {
    int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                     p->graph->values[p->graph->inputs[i]].name);
    if (w < 0) break;
    used += (size_t)w;
  }
  return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "no input or param named '%s' (the graph has: %s)",
                  name ? name : "(null)", list);
}

vnrt_status vnrt_plan_input_type(const vnrt_plan *plan, const char *name,
                                 vnrt_tensor_type *out_type) {
  if (!plan || !out_type) return VNRT_ERROR_INVALID_ARGUMENT;
  memset(out_type, 0, sizeof *out_type);
  int32_t v = find_input(plan, name);
  if (v < 0) return no_input((vnrt_plan *)plan, name);
  *out_type = plan->graph->values[v].type;
  return VNRT_OK;
}

vnrt_status vnrt_plan_set_input(vnrt_plan *p, const char *name, const void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  int32_t v = find_input(p, name);
  if (v < 0) return no_input(p, name);
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  size_t want = vnrt_tensor_type_bytes(t);
  if (bytes != want) {
    char tbuf[160];
    return vn_error(p->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "input '%s' is %s (%zu bytes) but %zu bytes were given", name,
                    vn_type_str(t, tbuf, sizeof tbuf), want, bytes);
  }
  if (!data && bytes) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "input '%s': NULL data", name);
  }
  p->bound[v] = false;
  for (int32_t d = 0; d < p->n_devs; ++d) {
    int32_t t_idx = p->local[v][d];
    if (t_idx < 0 || bytes == 0) continue;
    vn_plan_device *pd = &p->devs[d];
    VN_RETURN_IF_ERROR(pd->iface->buffer_write(pd->bdev, pd->io, pd->tensors[t_idx].offset, data,
                                               bytes));
  }
  p->bound[v] = true;
  return VNRT_OK;
}

/* Copies tensor ts of device slot src into tensor td of device slot dst (through the staging
 * buffer unless the source is host-visible). */
static vnrt_status copy_tensor(vnrt_plan *p, int32_t src_dev, const vnrt_backend_tensor *ts,
                               int32_t dst_dev, const vnrt_backend_tensor *td) {
  vn_plan_device *src = &p->devs[src_dev], *dst = &p->devs[dst_dev];
  uint64_t bytes = vnrt_tensor_type_bytes(&ts->type);
  if (bytes == 0) return VNRT_OK;
  void *src_ptr = src->iface->buffer_host_ptr ? src->iface->buffer_host_ptr(src->bdev, ts->buffer)
                                              : NULL;
  if (src_ptr) {
    return dst->iface->buffer_write(dst->bdev, td->buffer, td->offset,
                                    (const char *)src_ptr + ts->offset, bytes);
  }
  VN_RETURN_IF_ERROR(src->iface->buffer_read(src->bdev, ts->buffer, ts->offset, p->staging, bytes));
  return dst->iface->buffer_write(dst->bdev, td->buffer, td->offset, p->staging, bytes);
}

static vnrt_status run_transfer(vnrt_plan *p, const vn_transfer *tr) {
  return copy_tensor(p, tr->src, &p->devs[tr->src].tensors[p->local[tr->value][tr->src]], tr->dst,
                     &p->devs[tr->dst].tensors[p->local[tr->value][tr->dst]]);
}

/* After a run: every state takes its next value, in each device's replica. */
static vnrt_status update_states(vnrt_plan *p) {
  const vnrt_graph *g = p->graph;
  for (int32_t i = 0; i < g->n_states; ++i) {
    int32_t st = g->states[i], next = g->values[st].next;
    if (next < 0) continue;
    int32_t h = p->home[next];
    const vnrt_backend_tensor *src = &p->devs[h].tensors[p->local[next][h]];
    for (int32_t d = 0; d < p->n_devs; ++d) {
      if (p->local[st][d] < 0 || (d == 0 && p->alias[next] == st)) continue;
      VN_RETURN_IF_ERROR(copy_tensor(p, h, src, d, &p->devs[d].tensors[p->local[st][d]]));
    }
  }
  return VNRT_OK;
}

vnrt_status vnrt_plan_run(vnrt_plan *p) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  p->ran = false;
  for (int32_t i = 0; i < p->graph->n_inputs; ++i) {
    int32_t v = p->graph->inputs[i];
    if (!p->bound[v]) {
      return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "%s '%s' is not bound: call vnrt_plan_set_input first",
                      p->graph->values[v].kind == VN_VALUE_PARAM ? "param" : "input",
                      p->graph->values[v].name);
    }
  }
  for (int32_t pi = 0; pi < p->n_parts; ++pi) {
    const vn_partition *part = &p->parts[pi];
    for (int32_t t = 0; t < part->n_transfers; ++t) {
      VN_RETURN_IF_ERROR(run_transfer(p, &p->transfers[part->first_transfer + t]));
    }
    vn_plan_device *pd = &p->devs[part->dev];
    VN_RETURN_IF_ERROR(pd->iface->run(pd->exec, part->first, part->count));
  }
  VN_RETURN_IF_ERROR(update_states(p));
  p->ran = true;
  return VNRT_OK;
}

static int32_t find_output(const vnrt_plan *p, const char *name) {
  for (int32_t o = 0; name && o < p->graph->n_outputs; ++o) {
    if (strcmp(p->graph->values[p->graph->outputs[o]].name, name) == 0) return p->graph->outputs[o];
  }
  return -1;
}

static vnrt_status no_output(vnrt_plan *p, const char *name) {
  char list[512] = "";
  size_t used = 0;
  for (int32_t i = 0; i < p->graph->n_outputs && used + 1 < sizeof list; ++i) {
    int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                     p->graph->values[p->graph->outputs[i]].name);
    if (w < 0) break;
    used += (size_t)w;
  }
  return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "no output named '%s' (the graph has: %s)",
                  name ? name : "(null)", list);
}

int32_t vnrt_plan_output_count(const vnrt_plan *plan) { return plan ? plan->graph->n_outputs : 0; }

const char *vnrt_plan_output_name(const vnrt_plan *plan, int32_t i) {
  if (!plan || i < 0 || i >= plan->graph->n_outputs) return NULL;
  return plan->graph->values[plan->graph->outputs[i]].name;
}

vnrt_status vnrt_plan_output_type(const vnrt_plan *plan, const char *name,
                                  vnrt_tensor_type *out_type) {
  if (!plan || !out_type) return VNRT_ERROR_INVALID_ARGUMENT;
  memset(out_type, 0, sizeof *out_type);
  int32_t v = find_output(plan, name);
  if (v < 0) return no_output((vnrt_plan *)plan, name);
  *out_type = plan->graph->values[v].type;
  return VNRT_OK;
}

vnrt_status vnrt_plan_read_output(vnrt_plan *p, const char *name, void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  int32_t v = find_output(p, name);
  if (v < 0) return no_output(p, name);
  if (!p->ran) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "output '%s': the plan has no successful run to read from", name);
  }
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  size_t want = vnrt_tensor_type_bytes(t);
  if (bytes != want) {
    char tbuf[160];
    return vn_error(p->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "output '%s' is %s (%zu bytes) but a buffer of %zu bytes was given", name,
                    vn_type_str(t, tbuf, sizeof tbuf), want, bytes);
  }
  if (bytes == 0) return VNRT_OK;
  if (!data) return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "output '%s': NULL data", name);
  int32_t d = p->home[v];
  vn_plan_device *pd = &p->devs[d];
  const vnrt_backend_tensor *bt = &pd->tensors[p->local[v][d]];
  return pd->iface->buffer_read(pd->bdev, bt->buffer, bt->offset, data, bytes);
}

static int32_t find_state(const vnrt_plan *p, const char *name) {
  int32_t v = name ? vnrt_graph_find(p->graph, name) : -1;
  return (v >= 0 && p->graph->values[v].kind == VN_VALUE_STATE) ? v : -1;
}

vnrt_status vnrt_plan_read_state(vnrt_plan *p, const char *name, void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  int32_t v = find_state(p, name);
  if (v < 0) {
    return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "no state named '%s'", name ? name : "(null)");
  }
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  size_t want = vnrt_tensor_type_bytes(t);
  if (bytes != want) {
    char tbuf[160];
    return vn_error(p->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "state '%s' is %s (%zu bytes) but a buffer of %zu bytes was given", name,
                    vn_type_str(t, tbuf, sizeof tbuf), want, bytes);
  }
  if (bytes == 0) return VNRT_OK;
  if (!data) return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "state '%s': NULL data", name);
  vn_plan_device *pd = &p->devs[0];
  const vnrt_backend_tensor *bt = &pd->tensors[p->local[v][0]];
  return pd->iface->buffer_read(pd->bdev, bt->buffer, bt->offset, data, bytes);
}

vnrt_status vnrt_plan_reset_state(vnrt_plan *p) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  const vnrt_graph *g = p->graph;
  uint64_t largest = 0;
  for (int32_t i = 0; i < g->n_states; ++i) {
    uint64_t bytes = vnrt_tensor_type_bytes(&g->values[g->states[i]].type);
    if (bytes > largest) largest = bytes;
  }
  if (largest == 0) return VNRT_OK;
  void *zeros = vn_calloc(p->ctx, 1, (size_t)largest);
  if (!zeros) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory zeroing states");
  vnrt_status status = VNRT_OK;
  for (int32_t i = 0; i < g->n_states && status == VNRT_OK; ++i) {
    int32_t v = g->states[i];
    uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
    for (int32_t d = 0; d < p->n_devs && status == VNRT_OK && bytes; ++d) {
      if (p->local[v][d] < 0) continue;
      const vnrt_backend_tensor *bt = &p->devs[d].tensors[p->local[v][d]];
      status = p->devs[d].iface->buffer_write(p->devs[d].bdev, bt->buffer, bt->offset, zeros, bytes);
    }
  }
  vn_free(p->ctx, zeros);
  return status;
}
