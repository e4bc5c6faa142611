/* A plan's device memory: every device laid out in buffers its backend accepts (memory/layout.h),
 * params streamed from host memory while the target is over its budget (memory/budget.h), and
 * the buffers allocated. */
#include <stdio.h>

#include "plan.h"

/* The planner's limit per buffer on device slot d: the device's largest buffer, lowered (never
 * raised) by VNRT_DEVICE_MAX_BUFFER, rounded down to a multiple of VN_TENSOR_ALIGN so that
 * aligned slots fill it exactly. 0: no limit. */
static void set_max_buffer(const vnrt_plan *p, vn_plan_device *pd) {
  uint64_t own = pd->device->info.max_buffer_bytes, lim = own;
  pd->max_buffer_lowered = false;
  if (p->max_buffer_env && (own == 0 || p->max_buffer_env < own)) {
    lim = p->max_buffer_env;
    pd->max_buffer_lowered = true;
  }
  if (lim) lim = lim < VN_TENSOR_ALIGN ? VN_TENSOR_ALIGN : lim / VN_TENSOR_ALIGN * VN_TENSOR_ALIGN;
  pd->max_buffer = lim;
}

/* The error for a tensor that no buffer under a lowered limit can hold. */
static vnrt_status too_large(vnrt_plan *p, const vn_plan_device *pd, const char *name,
                             uint64_t bytes) {
  return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY,
                  "tensor '%s' is %llu bytes, more than the largest buffer a plan may use on %s: "
                  "%llu bytes (%s lowers the device's own %llu)",
                  name, (unsigned long long)bytes, pd->device->info.spec,
                  (unsigned long long)pd->max_buffer, VN_MAX_BUFFER_ENV,
                  (unsigned long long)pd->device->info.max_buffer_bytes);
}

/* Lays out device slot d: a tensor for every value live there (range first != -2); inputs,
 * params and states in io slots; a state's in-place update in the state's slot; a shared param
 * in the other plan's memory; everything else in the arena by liveness — streamed params too,
 * from their stream start. Allocates nothing on the device: vn_plan_alloc_buffers does. */
static vnrt_status layout_device(vnrt_plan *p, int32_t d,
                                 vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  int32_t nv = g->n_values;
  vn_plan_device *pd = &p->devs[d];
  vn_free(ctx, pd->tensors);
  vn_free(ctx, pd->slots);
  pd->tensors = NULL;
  pd->slots = NULL;
  pd->n_tensors = 0;
  vn_layout_free(ctx, &pd->layout);
  set_max_buffer(p, pd);
  const uint64_t cap = pd->max_buffer;
  int32_t count = 0;
  for (int32_t v = 0; v < nv; ++v) count += range[v][d].first != -2;
  pd->tensors = vn_calloc(ctx, (size_t)(count ? count : 1), sizeof *pd->tensors);
  pd->slots = vn_calloc(ctx, (size_t)(count ? count : 1), sizeof *pd->slots);
  if (!pd->tensors || !pd->slots) {
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning tensors");
  }
  for (int32_t v = 0; v < nv; ++v) {
    vn_plan_value *pv = &p->vals[v];
    pv->local[d] = -1;
    if (range[v][d].first == -2) continue;
    int32_t t = pd->n_tensors++;
    pv->local[d] = t;
    vnrt_backend_tensor *bt = &pd->tensors[t];
    bt->type = g->values[v].type;
    bt->name = g->values[v].name;
    uint64_t bytes = vnrt_tensor_type_bytes(&bt->type);
    if (cap && vn_align_up(bytes, VN_TENSOR_ALIGN) > cap && pd->max_buffer_lowered) {
      return too_large(p, pd, bt->name, bytes);
    }
    vn_slot *sl = &pd->slots[t];
    *sl = (vn_slot){.kind = VN_SLOT_ARENA,
                    .bytes = bytes,
                    .first = range[v][d].first,
                    .last = range[v][d].last,
                    .alias = -1};
    if (pv->alias >= 0 && d == 0) {
      sl->kind = VN_SLOT_ALIAS; /* the state's storage: its slot is known below */
    } else if (d == 0 && pv->share.store >= 0) {
      sl->kind = VN_SLOT_EXTERNAL; /* another plan's memory: vn_plan_alloc_buffers points at it */
      sl->offset = pv->share.off;
    } else if (d == 0 && pv->streamed) {
      int32_t k = 0;
      while (p->stream[k].value != v) ++k;
      sl->first = p->stream[k].start, sl->last = p->stream[k].last;
    } else if (g->values[v].kind != VN_VALUE_NODE) {
      sl->kind = VN_SLOT_IO;
    }
  }
  for (int32_t v = 0; v < nv && d == 0; ++v) {
    const vn_plan_value *pv = &p->vals[v];
    if (pv->alias < 0 || pv->local[0] < 0) continue;
    vn_slot *sl = &pd->slots[pv->local[0]];
    const int32_t to = p->vals[pv->alias].local[0];
    if (g->values[pv->alias].kind == VN_VALUE_NODE) {
      /* A reshape's view of a node's result (build_devices): the root's memory lives as long
       * as either; a root outside the arena (none today) leaves the view its own memory. */
      vn_slot *root = to >= 0 ? &pd->slots[to] : NULL;
      if (!root || root->kind != VN_SLOT_ARENA) {
        sl->kind = VN_SLOT_ARENA;
        continue;
      }
      if (sl->first < root->first) root->first = sl->first;
      if (sl->last > root->last) root->last = sl->last;
    }
    sl->alias = to;
  }
  VN_RETURN_IF_ERROR(
      vn_layout_plan(ctx, pd->slots, pd->n_tensors, cap, VN_TENSOR_ALIGN, &pd->layout));
  for (int32_t t = 0; t < pd->n_tensors; ++t) pd->tensors[t].offset = pd->slots[t].offset;
  return VNRT_OK;
}

/* Orders the streamed params by first use on the target and gives each its stream window: with
 * depth D in flight, param j's copy may start once param j-D's last reader is done. */
static void order_streamed(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  const vnrt_graph *g = p->graph;
  p->n_stream = 0;
  for (int32_t v = 0; v < g->n_values; ++v) {
    if (!p->vals[v].streamed) continue;
    /* A param's range starts at -1 (bound before the run): find the step that first reads it. */
    int32_t first = range[v][0].last;
    for (int32_t s = 0; s < p->n_order && first == range[v][0].last; ++s) {
      const vn_node *nd = &g->nodes[p->order[s]];
      if (p->node_dev[p->order[s]] != 0) continue;
      for (int32_t k = 0; k < nd->n_inputs; ++k) {
        if (nd->inputs[k] == v && s < first) first = s;
      }
    }
    vn_streamed sp = {v, first, 0, range[v][0].last, -1, -1, 0, NULL};
    int32_t k = p->n_stream++;
    while (k > 0 && p->stream[k - 1].first > sp.first) {
      p->stream[k] = p->stream[k - 1];
      --k;
    }
    p->stream[k] = sp;
  }
  for (int32_t j = 0; j < p->n_stream; ++j) {
    vn_streamed *sp = &p->stream[j];
    int32_t start = 0;
    if (j >= p->prefetch_depth) start = p->stream[j - p->prefetch_depth].last + 1;
    sp->start = start < sp->first ? start : sp->first;
  }
}

/* Over the target's budget: the error naming what the plan needs and its largest tensor. */
static vnrt_status over_budget(vnrt_plan *p, uint64_t need) {
  const vnrt_graph *g = p->graph;
  const vn_plan_device *t = &p->devs[0];
  int32_t big = -1;
  uint64_t big_bytes = 0;
  for (int32_t v = 0; v < g->n_values; ++v) {
    uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
    if (p->vals[v].local[0] >= 0 && bytes > big_bytes) big = v, big_bytes = bytes;
  }
  return vn_error(p->ctx, VNRT_ERROR_BUDGET_EXCEEDED,
                  "plan for %s needs %llu bytes of device memory (intermediates %llu, "
                  "inputs/params/states %llu, with %d params streamed) but %llu are "
                  "available; the largest tensor is '%s' (%llu bytes)",
                  t->device->info.spec, (unsigned long long)need,
                  (unsigned long long)t->layout.arena_bytes, (unsigned long long)t->layout.io_bytes,
                  p->n_stream, (unsigned long long)p->budget.limit,
                  big >= 0 ? g->values[big].name : "?", (unsigned long long)big_bytes);
}

vnrt_status vn_plan_choose_streamed(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  const vnrt_graph *g = p->graph;
  const vn_plan_device *t = &p->devs[0];
  uint64_t need = 0;
  for (;;) {
    order_streamed(p, range);
    for (int32_t d = 0; d < p->n_devs; ++d) VN_RETURN_IF_ERROR(layout_device(p, d, range));
    need = t->layout.arena_bytes + t->layout.io_bytes;
    if (need <= vn_budget_available(&p->budget)) break;
    /* Stream the largest param the target still holds. Params first read by a node on the
     * target only: a CPU-fallback reader keeps its own replica anyway. */
    int32_t pick = -1;
    uint64_t pick_bytes = 0;
    for (int32_t v = 0; v < g->n_values; ++v) {
      const vn_plan_value *pv = &p->vals[v];
      uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      if (g->values[v].kind == VN_VALUE_PARAM && !pv->streamed && range[v][0].last >= 0 &&
          pv->share.store < 0 && bytes > pick_bytes) {
        pick = v, pick_bytes = bytes;
      }
    }
    if (pick < 0) return over_budget(p, need);
    p->vals[pick].streamed = true;
  }
  /* It fits: the target's buffers are reserved in its budget's device tier, the streamed
   * params, read from host memory, in its host tier. */
  uint64_t streamed_bytes = 0;
  for (int32_t j = 0; j < p->n_stream; ++j) {
    streamed_bytes += vnrt_tensor_type_bytes(&g->values[p->stream[j].value].type);
  }
  VN_RETURN_IF_ERROR(vn_budget_reserve(&p->budget, VN_TIER_DEVICE, need, "the plan's buffers"));
  VN_RETURN_IF_ERROR(
      vn_budget_reserve(&p->budget, VN_TIER_HOST, streamed_bytes, "streamed params"));
  p->info.n_streamed_params = p->n_stream;
  p->info.streamed_bytes = streamed_bytes;
  for (int32_t d = 0; d < p->n_devs; ++d) {
    const vn_plan_device *pd = &p->devs[d];
    p->info.arena_bytes += pd->layout.arena_bytes;
    for (int32_t v = 0; v < g->n_values; ++v) {
      const vn_plan_value *pv = &p->vals[v];
      if (pv->local[d] < 0) continue;
      uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      if (g->values[v].kind == VN_VALUE_PARAM && !(d == 0 && pv->streamed)) {
        p->info.weight_bytes += bytes;
      }
      if (g->values[v].kind == VN_VALUE_STATE && d == 0) p->info.state_bytes += bytes;
      if (g->values[v].kind == VN_VALUE_NODE && pv->home == d) {
        p->info.naive_bytes += vn_align_up(bytes, VN_TENSOR_ALIGN);
      }
    }
  }
  p->info.device_bytes = vn_budget_used(&p->budget, VN_TIER_DEVICE);
  p->info.device_limit = p->budget.limit;
  return VNRT_OK;
}

vnrt_status vn_plan_alloc_buffers(vnrt_plan *p, int32_t d) {
  vnrt_context *ctx = p->ctx;
  vn_plan_device *pd = &p->devs[d];
  const vn_layout *l = &pd->layout;
  pd->bufs = vn_calloc(ctx, (size_t)(l->n_bufs ? l->n_bufs : 1), sizeof *pd->bufs);
  if (!pd->bufs) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  if (d == 0) {
    /* The target's io buffers belong to the plan's io store: plans sharing params keep them. */
    vn_io_store *io = p->io;
    io->iface = pd->iface, io->bdev = pd->bdev, io->device = pd->device;
    io->bufs = vn_calloc(ctx, (size_t)(l->n_io_bufs ? l->n_io_bufs : 1), sizeof *io->bufs);
    if (!io->bufs) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    io->n_bufs = l->n_io_bufs;
  }
  uint64_t largest = 0;
  for (int32_t b = 0; b < l->n_bufs; ++b) {
    uint64_t bytes = l->buf_bytes[b] ? l->buf_bytes[b] : VN_TENSOR_ALIGN;
    if (bytes > largest) largest = bytes;
    vnrt_status st = vn_dev_alloc(pd->device, bytes, &pd->bufs[b]);
    if (st == VNRT_OK && d == 0 && b < l->n_io_bufs) p->io->bufs[b] = pd->bufs[b];
    if (st == VNRT_OK) continue;
    pd->bufs[b] = NULL;
    int32_t first = -1, n_in = 0;
    for (int32_t t = 0; t < pd->n_tensors; ++t) {
      if (pd->slots[t].buffer != b) continue;
      if (first < 0) first = t;
      ++n_in;
    }
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    return vn_error(ctx, st,
                    "plan for %s: %s buffer %d of %d (%llu bytes, holding '%s' and %d "
                    "more tensors): %s",
                    pd->device->info.spec, b < l->n_io_bufs ? "io" : "arena", (int)b + 1,
                    (int)l->n_bufs, (unsigned long long)bytes,
                    first >= 0 ? pd->tensors[first].name : "", n_in > 0 ? n_in - 1 : 0, msg);
  }
  for (int32_t v = 0; v < p->graph->n_values; ++v) {
    int32_t t = p->vals[v].local[d];
    if (t < 0) continue;
    int32_t b = pd->slots[t].buffer;
    pd->tensors[t].buffer = b >= 0 ? pd->bufs[b] : p->vals[v].share.buf;
  }
  if (l->n_io_bufs > 1 || l->n_bufs - l->n_io_bufs > 1) {
    vn_log(ctx, VNRT_LOG_INFO,
           "plan for %s: %d io buffers (%llu bytes) and %d arena buffers (%llu bytes), the "
           "largest %llu bytes under a limit of %llu%s",
           pd->device->info.spec, (int)l->n_io_bufs, (unsigned long long)l->io_bytes,
           (int)(l->n_bufs - l->n_io_bufs), (unsigned long long)l->arena_bytes,
           (unsigned long long)largest, (unsigned long long)pd->max_buffer,
           pd->max_buffer_lowered ? " (" VN_MAX_BUFFER_ENV ")" : "");
  }
  return VNRT_OK;
}
