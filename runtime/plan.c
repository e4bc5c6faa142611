/* Plans: compile a graph for a device (order, placement with CPU fallback, liveness-packed
 * arenas, per-device backend graphs). Running them is plan_run.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "op_table.h"
#include "budget.h"
#include "copy_stream.h"
#include "passes.h"
#include "plan.h"

/* ---- Graph copy ------------------------------------------------------------------------ */

/* Copies normalised attributes; keys are the op table's static strings and are shared. */
static vnrt_attr *copy_attrs(vnrt_context *ctx, const vnrt_attr *src, int32_t n) {
  vnrt_attr *a = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *a);
  if (!a) return NULL;
  for (int32_t i = 0; i < n; ++i) {
    a[i] = src[i];
    a[i].ints = NULL, a[i].floats = NULL, a[i].word = NULL;
  }
  bool ok = true;
  for (int32_t i = 0; i < n && ok; ++i) {
    if (src[i].kind == VNRT_ATTR_INTS && src[i].count > 0) {
      int64_t *v = vn_calloc(ctx, (size_t)src[i].count, sizeof *v);
      if ((ok = v != NULL)) memcpy(v, src[i].ints, (size_t)src[i].count * sizeof *v);
      a[i].ints = v;
    }
    if (ok && src[i].kind == VNRT_ATTR_FLOATS && src[i].count > 0) {
      double *v = vn_calloc(ctx, (size_t)src[i].count, sizeof *v);
      if ((ok = v != NULL)) memcpy(v, src[i].floats, (size_t)src[i].count * sizeof *v);
      a[i].floats = v;
    }
    if (ok && src[i].kind == VNRT_ATTR_WORD && src[i].word) {
      a[i].word = vn_strdup(ctx, src[i].word);
      ok = a[i].word != NULL;
    }
  }
  if (!ok) {
    vn_attrs_free(ctx, a, n);
    return NULL;
  }
  return a;
}

/* The copy is a graph like any other: its lookup index is built lazily by graph.c. */
static void free_graph_copy(vnrt_context *ctx, vnrt_graph *g) {
  (void)ctx;
  vnrt_graph_destroy(g);
}

/* A deep copy that owns its names and attributes, so the user may destroy the source graph. */
static vnrt_graph *copy_graph(vnrt_context *ctx, const vnrt_graph *src) {
  vnrt_graph *g = vn_calloc(ctx, 1, sizeof *g);
  if (!g) return NULL;
  g->ctx = ctx;
  g->values = vn_calloc(ctx, (size_t)(src->n_values ? src->n_values : 1), sizeof *g->values);
  g->nodes = vn_calloc(ctx, (size_t)(src->n_nodes ? src->n_nodes : 1), sizeof *g->nodes);
  g->inputs = vn_calloc(ctx, (size_t)(src->n_inputs ? src->n_inputs : 1), sizeof *g->inputs);
  g->outputs = vn_calloc(ctx, (size_t)(src->n_outputs ? src->n_outputs : 1), sizeof *g->outputs);
  g->states = vn_calloc(ctx, (size_t)(src->n_states ? src->n_states : 1), sizeof *g->states);
  if (!g->values || !g->nodes || !g->inputs || !g->outputs || !g->states) goto fail;
  for (int32_t v = 0; v < src->n_values; ++v) {
    g->values[v] = src->values[v];
    g->values[v].name = vn_strdup(ctx, src->values[v].name);
    g->n_values = v + 1;
    if (!g->values[v].name) goto fail;
  }
  for (int32_t i = 0; i < src->n_nodes; ++i) {
    g->nodes[i] = src->nodes[i];
    g->nodes[i].attrs = copy_attrs(ctx, src->nodes[i].attrs, src->nodes[i].n_attrs);
    g->n_nodes = i + 1;
    if (!g->nodes[i].attrs) {
      g->nodes[i].n_attrs = 0;
      goto fail;
    }
  }
  for (int32_t i = 0; i < g->n_nodes; ++i) vn_node_resolve_params(g, &g->nodes[i]);
  /* (memcpy from a NULL array is undefined even for 0 bytes) */
  if (src->n_inputs) memcpy(g->inputs, src->inputs, (size_t)src->n_inputs * sizeof *g->inputs);
  if (src->n_outputs) memcpy(g->outputs, src->outputs, (size_t)src->n_outputs * sizeof *g->outputs);
  if (src->n_states) memcpy(g->states, src->states, (size_t)src->n_states * sizeof *g->states);
  g->n_inputs = src->n_inputs;
  g->n_outputs = src->n_outputs;
  g->n_states = src->n_states;
  g->cap_values = g->n_values, g->cap_nodes = g->n_nodes;
  g->cap_inputs = g->n_inputs, g->cap_outputs = g->n_outputs, g->cap_states = g->n_states;
  return g;
fail:
  free_graph_copy(ctx, g);
  return NULL;
}

/* ---- Compilation ----------------------------------------------------------------------- */

static void fill_node(const vnrt_graph *g, int32_t node, vnrt_backend_node *out) {
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
static vnrt_status place_nodes(vnrt_plan *p, const vnrt_plan_desc *desc) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  vn_plan_device *target = &p->devs[0];
  /* The query graph: every value as a tensor (index = value id), no buffers yet. */
  vnrt_backend_tensor *tensors = vn_calloc(ctx, (size_t)(g->n_values ? g->n_values : 1),
                                           sizeof *tensors);
  vnrt_backend_node *nodes = vn_calloc(ctx, (size_t)(p->n_order ? p->n_order : 1),
                                       sizeof *nodes);
  if (!tensors || !nodes) {
    vn_free(ctx, tensors), vn_free(ctx, nodes);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory placing %d nodes", p->n_order);
  }
  for (int32_t v = 0; v < g->n_values; ++v) {
    tensors[v].type = g->values[v].type;
    tensors[v].name = g->values[v].name;
  }
  for (int32_t s = 0; s < p->n_order; ++s) fill_node(g, p->order[s], &nodes[s]);
  vnrt_backend_graph query = {g->n_values, tensors, p->n_order, nodes,
                              desc ? desc->kernels : VNRT_KERNELS_FAST};
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
      snprintf(first_fallback, sizeof first_fallback, "'%s' (%s)",
               g->values[nd->outputs[0]].name, vnrt_op_name(nd->op));
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

uint64_t vn_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

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

/* Liveness packing into chunks of at most cap bytes, for when one arena would be larger: the
 * arena planner's greedy (largest first, each at the lowest offset that collides with no
 * time-overlapping tensor) run over the chunks in turn, a new chunk opened for a tensor no chunk
 * has room for, so no tensor straddles two. A tensor larger than cap (beyond the device's own
 * limit: a lowered limit is checked before) opens a chunk of its size. Sets offsets[i] and
 * chunk[i] per request, chunk_bytes[c] (room for n entries) and *out_chunks. */
static vnrt_status pack_chunks(vnrt_context *ctx, const vn_arena_request *req, int32_t n,
                               uint64_t cap, uint64_t *offsets, int32_t *chunk,
                               uint64_t *chunk_bytes, int32_t *out_chunks) {
  *out_chunks = 0;
  int32_t *by_size = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *by_size);
  int32_t *placed = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *placed);
  if (!by_size || !placed) {
    vn_free(ctx, by_size), vn_free(ctx, placed);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning %d tensors", n);
  }
  /* The arena planner's order: size descending, then first use (insertion sort, stable). */
  for (int32_t i = 0; i < n; ++i) {
    int32_t j = i;
    while (j > 0 && (req[by_size[j - 1]].size < req[i].size ||
                     (req[by_size[j - 1]].size == req[i].size &&
                      req[by_size[j - 1]].first > req[i].first))) {
      by_size[j] = by_size[j - 1];
      --j;
    }
    by_size[j] = i;
  }
  int32_t n_chunks = 0, n_placed = 0;
  for (int32_t k = 0; k < n; ++k) {
    int32_t i = by_size[k];
    uint64_t size = vn_align_up(req[i].size, VN_TENSOR_ALIGN);
    offsets[i] = 0;
    chunk[i] = -1;
    for (int32_t c = 0; c < n_chunks && chunk[i] < 0 && size <= cap; ++c) {
      uint64_t best = UINT64_MAX;
      for (int32_t a = -1; a < n_placed; ++a) {
        uint64_t cand = 0;
        if (a >= 0) {
          int32_t q = placed[a];
          if (chunk[q] != c || req[q].last < req[i].first || req[i].last < req[q].first) continue;
          cand = offsets[q] + vn_align_up(req[q].size, VN_TENSOR_ALIGN);
        }
        if (cand >= best || cand + size > cap) continue;
        bool ok = true;
        for (int32_t b = 0; b < n_placed && ok; ++b) {
          int32_t q = placed[b];
          if (chunk[q] != c || req[q].last < req[i].first || req[i].last < req[q].first) continue;
          uint64_t qs = offsets[q], qe = qs + vn_align_up(req[q].size, VN_TENSOR_ALIGN);
          if (cand < qe && qs < cand + size) ok = false;
        }
        if (ok) best = cand;
      }
      if (best != UINT64_MAX) chunk[i] = c, offsets[i] = best;
    }
    if (chunk[i] < 0) {
      chunk[i] = n_chunks;
      chunk_bytes[n_chunks++] = 0;
    }
    placed[n_placed++] = i;
    if (offsets[i] + size > chunk_bytes[chunk[i]]) chunk_bytes[chunk[i]] = offsets[i] + size;
  }
  vn_free(ctx, by_size);
  vn_free(ctx, placed);
  *out_chunks = n_chunks;
  return VNRT_OK;
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

/* Lays out device slot d: a tensor for every value live there (range first != -2), inputs,
 * params and states in fixed io slots packed in value order into buffers of at most
 * max_buffer bytes, everything else packed by liveness into the arena — streamed params too,
 * from their stream start — in one buffer, or in several when one would pass the limit.
 * Allocates nothing on the device: buf_of and buf_bytes say what build_devices allocates. */
static vnrt_status layout_device(vnrt_plan *p, int32_t d,
                                 vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  int32_t nv = g->n_values;
  vn_plan_device *pd = &p->devs[d];
  vn_free(ctx, pd->tensors);
  vn_free(ctx, pd->buf_of);
  vn_free(ctx, pd->buf_bytes);
  pd->tensors = NULL;
  pd->buf_of = NULL;
  pd->buf_bytes = NULL;
  pd->n_tensors = pd->n_bufs = pd->n_io_bufs = 0;
  pd->arena_bytes = pd->io_bytes = 0;
  set_max_buffer(p, pd);
  const uint64_t cap = pd->max_buffer;
  int32_t count = 0;
  for (int32_t v = 0; v < nv; ++v) count += range[v][d].first != -2;
  size_t n_alloc = (size_t)(count ? count : 1);
  pd->tensors = vn_calloc(ctx, n_alloc, sizeof *pd->tensors);
  pd->buf_of = vn_calloc(ctx, n_alloc, sizeof *pd->buf_of);
  /* Each buffer holds at least one tensor, but an arena chunk of empty tensors only: count+1. */
  pd->buf_bytes = vn_calloc(ctx, n_alloc + 1, sizeof *pd->buf_bytes);
  vn_arena_request *req = vn_calloc(ctx, n_alloc, sizeof *req);
  uint64_t *offs = vn_calloc(ctx, n_alloc, sizeof *offs);
  int32_t *req_of = vn_calloc(ctx, n_alloc, sizeof *req_of);
  int32_t *chunk = vn_calloc(ctx, n_alloc, sizeof *chunk);
  vnrt_status status = VNRT_OK;
  if (!pd->tensors || !pd->buf_of || !pd->buf_bytes || !req || !offs || !req_of || !chunk) {
    status = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning tensors");
  }
  int32_t n_req = 0, io_open = -1; /* the io buffer being filled */
  for (int32_t v = 0; v < nv && status == VNRT_OK; ++v) {
    p->local[v][d] = -1;
    if (range[v][d].first == -2) continue;
    int32_t t = pd->n_tensors++;
    p->local[v][d] = t;
    vnrt_backend_tensor *bt = &pd->tensors[t];
    bt->type = g->values[v].type;
    bt->name = g->values[v].name;
    req_of[t] = -1;
    pd->buf_of[t] = -1;
    uint64_t bytes = vnrt_tensor_type_bytes(&bt->type);
    uint64_t slot = vn_align_up(bytes, VN_TENSOR_ALIGN);
    if (cap && slot > cap && pd->max_buffer_lowered) {
      status = too_large(p, pd, bt->name, bytes);
    } else if (p->alias[v] >= 0 && d == 0) {
      /* The state's storage: resolved below. */
    } else if (d == 0 && p->share_store[v] >= 0) {
      bt->offset = p->share_off[v]; /* another plan's memory: alloc_buffers points at it */
    } else if (d == 0 && p->streamed[v]) {
      int32_t k = 0;
      while (p->stream[k].value != v) ++k;
      req[n_req] = (vn_arena_request){bytes, p->stream[k].start, p->stream[k].last};
      req_of[t] = n_req++;
    } else if (g->values[v].kind != VN_VALUE_NODE) {
      /* The next slot of the open io buffer, or a new buffer where it would pass the limit. */
      if (io_open < 0 ||
          (cap && pd->buf_bytes[io_open] > 0 && pd->buf_bytes[io_open] + slot > cap)) {
        io_open = pd->n_bufs++;
      }
      pd->buf_of[t] = io_open;
      bt->offset = pd->buf_bytes[io_open];
      pd->buf_bytes[io_open] += slot;
      pd->io_bytes += slot;
    } else {
      req[n_req] = (vn_arena_request){bytes, range[v][d].first, range[v][d].last};
      req_of[t] = n_req++;
    }
  }
  pd->n_io_bufs = pd->n_bufs;
  uint64_t total = 0;
  int32_t n_chunks = 0;
  if (status == VNRT_OK) status = vn_arena_plan(ctx, req, n_req, VN_TENSOR_ALIGN, offs, &total);
  if (status == VNRT_OK && n_req > 0) {
    if (!cap || total <= cap) {
      /* One arena, as packed. */
      n_chunks = 1;
      pd->buf_bytes[pd->n_bufs] = total;
    } else {
      status = pack_chunks(ctx, req, n_req, cap, offs, chunk, &pd->buf_bytes[pd->n_bufs],
                           &n_chunks);
    }
  }
  if (status == VNRT_OK) {
    for (int32_t c = 0; c < n_chunks; ++c) pd->arena_bytes += pd->buf_bytes[pd->n_bufs + c];
  }
  for (int32_t v = 0; v < nv && status == VNRT_OK; ++v) {
    int32_t t = p->local[v][d];
    if (t < 0) continue;
    if (req_of[t] >= 0) {
      pd->tensors[t].offset = offs[req_of[t]];
      pd->buf_of[t] = pd->n_bufs + chunk[req_of[t]];
    }
    if (p->alias[v] >= 0 && d == 0) {
      int32_t ts = p->local[p->alias[v]][0];
      pd->tensors[t].offset = pd->tensors[ts].offset;
      pd->buf_of[t] = pd->buf_of[ts];
    }
  }
  if (status == VNRT_OK) pd->n_bufs += n_chunks;
  vn_free(ctx, req);
  vn_free(ctx, offs);
  vn_free(ctx, req_of);
  vn_free(ctx, chunk);
  return status;
}

/* Orders the streamed params by first use on the target and gives each its stream window: with
 * depth D in flight, param j's copy may start once param j-D's last reader is done. */
static void order_streamed(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  const vnrt_graph *g = p->graph;
  p->n_stream = 0;
  for (int32_t v = 0; v < g->n_values; ++v) {
    if (!p->streamed[v]) continue;
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

vnrt_status vn_plan_choose_streamed(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  for (;;) {
    order_streamed(p, range);
    for (int32_t d = 0; d < p->n_devs; ++d) VN_RETURN_IF_ERROR(layout_device(p, d, range));
    vn_plan_device *t = &p->devs[0];
    uint64_t need = t->arena_bytes + t->io_bytes;
    if (!p->device_limit || need <= p->device_limit) break;
    /* Stream the largest param the target still holds. Params first read by a node on the
     * target only: a CPU-fallback reader keeps its own replica anyway. */
    int32_t pick = -1;
    uint64_t pick_bytes = 0;
    for (int32_t v = 0; v < g->n_values; ++v) {
      uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      if (g->values[v].kind == VN_VALUE_PARAM && !p->streamed[v] && range[v][0].last >= 0 &&
          p->share_store[v] < 0 && bytes > pick_bytes) {
        pick = v, pick_bytes = bytes;
      }
    }
    if (pick < 0) {
      int32_t big = -1;
      uint64_t big_bytes = 0;
      for (int32_t v = 0; v < g->n_values; ++v) {
        uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
        if (p->local[v][0] >= 0 && bytes > big_bytes) big = v, big_bytes = bytes;
      }
      return vn_error(ctx, VNRT_ERROR_BUDGET_EXCEEDED,
                      "plan for %s needs %llu bytes of device memory (intermediates %llu, "
                      "inputs/params/states %llu, with %d params streamed) but %llu are "
                      "available; the largest tensor is '%s' (%llu bytes)",
                      t->device->info.spec, (unsigned long long)need,
                      (unsigned long long)t->arena_bytes, (unsigned long long)t->io_bytes,
                      p->n_stream, (unsigned long long)p->device_limit,
                      big >= 0 ? g->values[big].name : "?", (unsigned long long)big_bytes);
    }
    p->streamed[pick] = true;
  }
  p->info.n_streamed_params = p->n_stream;
  p->info.streamed_bytes = 0;
  for (int32_t j = 0; j < p->n_stream; ++j) {
    p->info.streamed_bytes += vnrt_tensor_type_bytes(&g->values[p->stream[j].value].type);
  }
  for (int32_t d = 0; d < p->n_devs; ++d) {
    vn_plan_device *pd = &p->devs[d];
    p->info.arena_bytes += pd->arena_bytes;
    for (int32_t v = 0; v < g->n_values; ++v) {
      if (p->local[v][d] < 0) continue;
      uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      if (g->values[v].kind == VN_VALUE_PARAM && !(d == 0 && p->streamed[v])) {
        p->info.weight_bytes += bytes;
      }
      if (g->values[v].kind == VN_VALUE_STATE && d == 0) p->info.state_bytes += bytes;
      if (g->values[v].kind == VN_VALUE_NODE && p->home[v] == d) {
        p->info.naive_bytes += vn_align_up(bytes, VN_TENSOR_ALIGN);
      }
    }
  }
  p->info.device_bytes = p->devs[0].arena_bytes + p->devs[0].io_bytes;
  p->info.device_limit = p->device_limit;
  return VNRT_OK;
}

/* Allocates the buffers layout_device planned for device slot d and points every tensor at its
 * own. A failed allocation names the buffer's tensors: the backend's message names its limit. */
static vnrt_status alloc_buffers(vnrt_plan *p, int32_t d) {
  vnrt_context *ctx = p->ctx;
  vn_plan_device *pd = &p->devs[d];
  pd->bufs = vn_calloc(ctx, (size_t)(pd->n_bufs ? pd->n_bufs : 1), sizeof *pd->bufs);
  if (!pd->bufs) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  if (d == 0) {
    /* The target's io buffers belong to the plan's io store: plans sharing params keep them. */
    vn_io_store *io = p->io;
    io->iface = pd->iface, io->bdev = pd->bdev;
    io->bufs = vn_calloc(ctx, (size_t)(pd->n_io_bufs ? pd->n_io_bufs : 1), sizeof *io->bufs);
    if (!io->bufs) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    io->n_bufs = pd->n_io_bufs;
  }
  uint64_t largest = 0;
  for (int32_t b = 0; b < pd->n_bufs; ++b) {
    uint64_t bytes = pd->buf_bytes[b] ? pd->buf_bytes[b] : VN_TENSOR_ALIGN;
    if (bytes > largest) largest = bytes;
    vnrt_status st = pd->iface->buffer_alloc(pd->bdev, bytes, &pd->bufs[b]);
    if (st == VNRT_OK && d == 0 && b < pd->n_io_bufs) p->io->bufs[b] = pd->bufs[b];
    if (st == VNRT_OK) continue;
    pd->bufs[b] = NULL;
    int32_t first = -1, n_in = 0;
    for (int32_t t = 0; t < pd->n_tensors; ++t) {
      if (pd->buf_of[t] != b) continue;
      if (first < 0) first = t;
      ++n_in;
    }
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    return vn_error(ctx, st, "plan for %s: %s buffer %d of %d (%llu bytes, holding '%s' and %d "
                    "more tensors): %s",
                    pd->device->info.spec, b < pd->n_io_bufs ? "io" : "arena", (int)b + 1,
                    (int)pd->n_bufs, (unsigned long long)bytes,
                    first >= 0 ? pd->tensors[first].name : "", n_in > 0 ? n_in - 1 : 0, msg);
  }
  for (int32_t v = 0; v < p->graph->n_values; ++v) {
    int32_t t = p->local[v][d];
    if (t >= 0) pd->tensors[t].buffer = pd->buf_of[t] >= 0 ? pd->bufs[pd->buf_of[t]] : p->share_buf[v];
  }
  if (pd->n_io_bufs > 1 || pd->n_bufs - pd->n_io_bufs > 1) {
    vn_log(ctx, VNRT_LOG_INFO,
           "plan for %s: %d io buffers (%llu bytes) and %d arena buffers (%llu bytes), the "
           "largest %llu bytes under a limit of %llu%s",
           pd->device->info.spec, (int)pd->n_io_bufs, (unsigned long long)pd->io_bytes,
           (int)(pd->n_bufs - pd->n_io_bufs), (unsigned long long)pd->arena_bytes,
           (unsigned long long)largest, (unsigned long long)pd->max_buffer,
           pd->max_buffer_lowered ? " (" VN_MAX_BUFFER_ENV ")" : "");
  }
  return VNRT_OK;
}

/* ---- Shared params ---------------------------------------------------------------------- */

vn_io_store *vn_io_store_new(vnrt_context *ctx, int32_t n_values) {
  vn_io_store *s = vn_calloc(ctx, 1, sizeof *s);
  if (!s) return NULL;
  s->refs = 1;
  s->ctx = ctx;
  s->bound = vn_calloc(ctx, (size_t)(n_values ? n_values : 1), sizeof *s->bound);
  s->gen = vn_calloc(ctx, (size_t)(n_values ? n_values : 1), sizeof *s->gen);
  if (!s->bound || !s->gen) {
    vn_io_store_release(s);
    return NULL;
  }
  return s;
}

void vn_io_store_release(vn_io_store *s) {
  if (!s || --s->refs > 0) return;
  for (int32_t b = 0; s->bufs && b < s->n_bufs; ++b) {
    if (s->bufs[b]) s->iface->buffer_free(s->bdev, s->bufs[b]);
  }
  vn_free(s->ctx, s->bufs);
  vn_free(s->ctx, s->bound);
  vn_free(s->ctx, s->gen);
  vn_free(s->ctx, s);
}

static bool same_type(const vnrt_tensor_type *a, const vnrt_tensor_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int32_t i = 0; i < a->rank; ++i) {
    if (a->dims[i] != b->dims[i]) return false;
  }
  return true;
}

/* Which params of p another plan may share: resident on the target in the io buffers — not
 * streamed, not served by an Engram store, not replicated on the CPU for a fallback node (a
 * binding through the other plan would not reach the replica) and not bound by the executor
 * itself (Engram's internal params). Set once the plan is built, before any user binding. */
static void mark_exportable(vnrt_plan *p) {
  const vnrt_graph *g = p->graph;
  for (int32_t v = 0; v < g->n_values; ++v) {
    p->exportable[v] = g->values[v].kind == VN_VALUE_PARAM && p->local[v][0] >= 0 &&
                       !p->streamed[v] && !p->no_storage[v] && !p->bound[v] &&
                       (p->n_devs < 2 || p->local[v][1] < 0);
  }
}

/* Points p's params at src's device memory where src has a param of the same name, dtype and
 * shape that it may share (mark_exportable), on the same target, and p's own param would live
 * in its io buffers on the target only. Before layout: shared params take no slot and are never
 * streamed. Takes a reference on every store src's params live in. */
static void choose_shared(vnrt_plan *p, const vnrt_plan *src,
                          vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  int32_t n_params = 0;
  for (int32_t v = 0; v < g->n_values; ++v) n_params += g->values[v].kind == VN_VALUE_PARAM;
  if (src->devs[0].device != p->devs[0].device) {
    vn_log(ctx, VNRT_LOG_INFO, "plan for %s: shares no params (0 of %d, 0 bytes): the other "
           "plan is for %s", p->devs[0].device->info.spec, n_params,
           src->devs[0].device->info.spec);
    return;
  }
  p->stores = vn_calloc(ctx, (size_t)src->n_stores + 1, sizeof *p->stores);
  if (!p->stores) return; /* sharing is an optimisation: without memory for it, share nothing */
  p->stores[0] = src->io;
  for (int32_t k = 0; k < src->n_stores; ++k) p->stores[k + 1] = src->stores[k];
  p->n_stores = src->n_stores + 1;
  for (int32_t k = 0; k < p->n_stores; ++k) p->stores[k]->refs++;
  for (int32_t v = 0; v < g->n_values; ++v) {
    const vn_value *val = &g->values[v];
    if (val->kind != VN_VALUE_PARAM || p->no_storage[v] || p->bound[v] ||
        range[v][0].first == -2 || range[v][1].first != -2) {
      continue;
    }
    int32_t w = vnrt_graph_find(src->graph, val->name);
    if (w < 0 || !src->exportable[w] || !same_type(&val->type, &src->graph->values[w].type)) {
      continue;
    }
    if (src->share_store[w] >= 0) { /* itself shared: the memory of the plan it shares */
      p->share_store[v] = src->share_store[w] + 1;
      p->share_value[v] = src->share_value[w];
      p->share_buf[v] = src->share_buf[w];
      p->share_off[v] = src->share_off[w];
    } else {
      const vnrt_backend_tensor *bt = &src->devs[0].tensors[src->local[w][0]];
      p->share_store[v] = 0;
      p->share_value[v] = w;
      p->share_buf[v] = bt->buffer;
      p->share_off[v] = bt->offset;
    }
    p->n_shared++;
    p->shared_bytes += vnrt_tensor_type_bytes(&val->type);
  }
  vn_log(ctx, VNRT_LOG_INFO, "plan for %s: shares %d of %d params (%llu bytes) with another "
         "plan", p->devs[0].device->info.spec, p->n_shared, n_params,
         (unsigned long long)p->shared_bytes);
}

/* Builds tensors, transfers, partitions and memory for every device slot, then compiles. */
static vnrt_status build_devices(vnrt_plan *p, vnrt_kernel_mode kernels) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  int32_t nv = g->n_values, n = p->n_order;
  vnrt_status status = VNRT_OK;

  /* In-place state updates: next = kv_write(state, ...) on the target, with no other reader of
   * the state, writes straight into the state's storage instead of copying after the run. */
  for (int32_t v = 0; v < nv; ++v) p->alias[v] = -1;
  for (int32_t i = 0; i < g->n_states; ++i) {
    int32_t st = g->states[i], next = g->values[st].next;
    if (next < 0) continue;
    int32_t prod = g->values[next].producer;
    if (g->nodes[prod].op != VNRT_OP_KV_WRITE || g->nodes[prod].inputs[0] != st ||
        p->node_dev[prod] != 0) {
      continue;
    }
    int32_t readers = 0;
    for (int32_t k = 0; k < n; ++k) {
      const vn_node *nd = &g->nodes[p->order[k]];
      for (int32_t j = 0; j < nd->n_inputs; ++j) readers += nd->inputs[j] == st;
    }
    bool is_output = false;
    for (int32_t o = 0; o < g->n_outputs; ++o) is_output |= g->outputs[o] == st;
    if (readers == 1 && !is_output) {
      p->alias[next] = st;
      p->info.n_inplace_updates++;
    }
  }

  /* Homes: a node's results live where it runs; inputs, params and states on the target. */
  for (int32_t v = 0; v < nv; ++v) {
    int32_t prod = g->values[v].producer;
    p->home[v] = (g->values[v].kind == VN_VALUE_NODE && prod >= 0 && p->node_dev[prod] >= 0)
                     ? p->node_dev[prod]
                     : 0;
    for (int32_t d = 0; d < VN_PLAN_MAX_DEVICES; ++d) p->local[v][d] = -1;
  }

  uint64_t max_transfer = 0; /* the staging buffer's size */

  /* Transfers, partitions, and per-device live ranges (steps are positions in order). */
  vn_live_range(*range)[VN_PLAN_MAX_DEVICES] = vn_calloc(ctx, (size_t)(nv ? nv : 1),
                                                          sizeof *range);
  p->parts = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *p->parts);
  p->transfers = vn_calloc(ctx, (size_t)(n ? n : 1) * VNRT_MAX_NODE_INPUTS,
                           sizeof *p->transfers);
  if (!range || !p->parts || !p->transfers) {
    vn_free(ctx, range);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning %d nodes", n);
  }
  for (int32_t v = 0; v < nv; ++v) {
    for (int32_t d = 0; d < VN_PLAN_MAX_DEVICES; ++d) range[v][d] = (vn_live_range){-2, -2};
  }
  for (int32_t s = 0; s < n; ++s) {
    const vn_node *nd = &g->nodes[p->order[s]];
    int32_t d = p->node_dev[p->order[s]];
    if (p->n_parts == 0 || p->parts[p->n_parts - 1].dev != d) {
      p->parts[p->n_parts++] = (vn_partition){d, s, 0, p->n_transfers, 0, s};
    }
    vn_partition *part = &p->parts[p->n_parts - 1];
    part->count++;
    for (int32_t i = 0; i < nd->n_inputs; ++i) {
      int32_t v = nd->inputs[i];
      if (range[v][d].first == -2) {
        bool is_input = g->values[v].kind != VN_VALUE_NODE;
        if (!is_input && p->home[v] != d) {
          /* First use of a foreign value on d: copy it at the start of this partition, and
           * keep its home copy alive until then. */
          p->transfers[p->n_transfers++] = (vn_transfer){v, p->home[v], d};
          part->n_transfers++;
          range[v][d].first = part->first;
          vn_live_range *h = &range[v][p->home[v]];
          if (h->last < part->first) h->last = part->first;
        } else {
          range[v][d].first = -1;
        }
      }
      if (range[v][d].last < s) range[v][d].last = s;
    }
    for (int32_t i = 0; i < nd->n_outputs; ++i) {
      int32_t v = nd->outputs[i];
      range[v][d].first = s;
      if (range[v][d].last < s) range[v][d].last = s;
    }
  }
  for (int32_t o = 0; o < g->n_outputs + g->n_states; ++o) {
    /* Outputs, and the values states take, are read after the run. */
    int32_t v = o < g->n_outputs ? g->outputs[o] : g->values[g->states[o - g->n_outputs]].next;
    if (v < 0) continue;
    range[v][p->home[v]].last = n;
    if (range[v][p->home[v]].first == -2) range[v][p->home[v]].first = -1;
  }
  for (int32_t i = 0; i < g->n_inputs + g->n_states; ++i) {
    int32_t v = i < g->n_inputs ? g->inputs[i] : g->states[i - g->n_inputs];
    if (range[v][0].first == -2 && !p->no_storage[v]) {
      range[v][0] = (vn_live_range){-1, -1}; /* always on the target */
    }
    if (i >= g->n_inputs) {
      /* A state is copied into each of its replicas after a run: stage the largest. */
      uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      if (bytes > max_transfer) max_transfer = bytes;
    }
  }

  /* Memory: lay out every device; over the target's budget, stream params (largest first)
   * until it fits or there is nothing left to stream. */
  if (p->share_src) choose_shared(p, p->share_src, range);
  status = vn_plan_choose_streamed(p, range);
  for (int32_t d = 0; d < p->n_devs && status == VNRT_OK; ++d) status = alloc_buffers(p, d);
  for (int32_t k = 0; k < p->n_transfers; ++k) {
    uint64_t bytes = vnrt_tensor_type_bytes(&g->values[p->transfers[k].value].type);
    if (bytes > max_transfer) max_transfer = bytes;
  }
  vn_free(ctx, range);
  if (status != VNRT_OK) return status;

  /* Per-device node lists in order, remapped to local tensor indices; partitions index them. */
  for (int32_t d = 0; d < p->n_devs; ++d) {
    vn_plan_device *pd = &p->devs[d];
    pd->nodes = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *pd->nodes);
    if (!pd->nodes) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  for (int32_t pi = 0; pi < p->n_parts; ++pi) {
    vn_partition *part = &p->parts[pi];
    vn_plan_device *pd = &p->devs[part->dev];
    int32_t first_local = pd->n_nodes;
    for (int32_t s = part->first; s < part->first + part->count; ++s) {
      vnrt_backend_node *bn = &pd->nodes[pd->n_nodes++];
      fill_node(g, p->order[s], bn);
      for (int32_t i = 0; i < bn->n_inputs; ++i) bn->inputs[i] = p->local[bn->inputs[i]][part->dev];
      for (int32_t i = 0; i < bn->n_outputs; ++i) {
        bn->outputs[i] = p->local[bn->outputs[i]][part->dev];
      }
    }
    part->first = first_local; /* from now on: an index into the device's node list */
  }
  for (int32_t d = 0; d < p->n_devs; ++d) {
    vn_plan_device *pd = &p->devs[d];
    pd->graph = (vnrt_backend_graph){pd->n_tensors, pd->tensors, pd->n_nodes, pd->nodes, kernels};
    if (pd->n_nodes == 0) continue;
    VN_RETURN_IF_ERROR(pd->iface->compile(pd->bdev, &pd->graph, &pd->exec));
  }
  if (max_transfer > 0) {
    p->staging = vn_malloc(ctx, (size_t)max_transfer);
    p->staging_bytes = max_transfer;
    if (!p->staging) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for staging");
  }
  p->info.n_partitions = p->n_parts;
  return VNRT_OK;
}

void vnrt_plan_destroy(vnrt_plan *p) {
  if (!p) return;
  vnrt_context *ctx = p->ctx;
  vn_copy_stream_destroy(p->copy); /* first: its thread may still touch buffers */
  vn_plan_engram_destroy(p);
  int32_t nv = p->graph ? p->graph->n_values : 0;
  for (int32_t v = 0; v < nv; ++v) {
    if (p->host_owned) vn_free(ctx, p->host_owned[v]);
    if (p->shadow) vn_free(ctx, p->shadow[v]);
  }
  for (int32_t d = 0; d < p->n_devs; ++d) {
    vn_plan_device *pd = &p->devs[d];
    if (pd->exec) pd->iface->exec_destroy(pd->exec);
    for (int32_t b = d == 0 ? pd->n_io_bufs : 0; pd->bufs && b < pd->n_bufs; ++b) {
      if (pd->bufs[b]) pd->iface->buffer_free(pd->bdev, pd->bufs[b]); /* (io: p->io's) */
    }
    vn_free(ctx, pd->bufs);
    vn_free(ctx, pd->buf_bytes);
    vn_free(ctx, pd->buf_of);
    vn_free(ctx, pd->tensors);
    vn_free(ctx, pd->nodes);
  }
  free_graph_copy(ctx, p->graph);
  vn_free(ctx, p->order);
  vn_free(ctx, p->node_dev);
  vn_free(ctx, p->local);
  vn_free(ctx, p->host_owned);
  vn_free(ctx, p->shadow);
  vn_free(ctx, (void *)p->host_src);
  vn_free(ctx, p->streamed);
  vn_free(ctx, p->no_storage);
  for (int32_t j = 0; p->stream && j < p->n_stream; ++j) vn_free(ctx, p->stream[j].used);
  vn_free(ctx, p->stream);
  vn_free(ctx, p->need);
  vn_free(ctx, p->jobs);
  vn_free(ctx, p->job_for_step);
  vn_free(ctx, p->signal_at);
  vn_free(ctx, p->home);
  vn_free(ctx, p->alias);
  vn_io_store_release(p->io); /* frees p->bound, and the io buffers unless shared */
  for (int32_t k = 0; k < p->n_stores; ++k) vn_io_store_release(p->stores[k]);
  vn_free(ctx, p->stores);
  vn_free(ctx, p->share_store);
  vn_free(ctx, p->share_value);
  vn_free(ctx, p->share_buf);
  vn_free(ctx, p->share_off);
  vn_free(ctx, p->seen_gen);
  vn_free(ctx, p->exportable);
  vn_free(ctx, p->parts);
  vn_free(ctx, p->transfers);
  vn_free(ctx, p->staging);
  vn_free(ctx, p);
}

/* Whether streamed param sp is the expert weights of a moe_ffn whose experts come from
 * moe_hash_route of bound ids and tid2eid: then a run streams only the experts it uses, known
 * from token ids before any compute (DualPath prefetch of hash-routed experts). */
static vnrt_status find_hash_routed(vnrt_plan *p, vn_streamed *sp) {
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
      p->streamed[table]) {
    return VNRT_OK;
  }
  sp->hash_ids = ids;
  sp->hash_table = table;
  sp->experts = g->values[sp->value].type.dims[0];
  sp->used = vn_calloc(p->ctx, (size_t)sp->experts, 1);
  for (int32_t k = 0; k < 2; ++k) {
    int32_t v = k ? table : ids;
    if (!p->shadow[v]) p->shadow[v] = vn_calloc(p->ctx, 1, vnrt_tensor_type_bytes(&g->values[v].type));
    if (!p->shadow[v]) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  if (!sp->used) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  return VNRT_OK;
}

static vnrt_status create_plan(vnrt_context *ctx, const vnrt_graph *graph, vnrt_device *device,
                               const vnrt_plan_desc *desc, const vnrt_plan *share,
                               vnrt_plan **out_plan, const char *fn) {
  if (out_plan) *out_plan = NULL;
  if (!ctx || !graph || !device || !out_plan) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s: NULL argument", fn);
  }
  if (graph->ctx != ctx || device->ctx != ctx || (share && share->ctx != ctx)) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s: the graph, device or plan to share with belongs to another context", fn);
  }
  bool updates_state = false;
  for (int32_t i = 0; i < graph->n_states; ++i) updates_state |= graph->values[graph->states[i]].next >= 0;
  if (graph->n_outputs == 0 && !updates_state) {
    return vn_error(ctx, VNRT_ERROR_INVALID_GRAPH, "the graph has no outputs");
  }
  vn_clear_error(ctx);
  vnrt_plan *p = vn_calloc(ctx, 1, sizeof *p);
  if (!p) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating a plan");
  p->ctx = ctx;
  vnrt_status status = VNRT_OK;
  p->graph = copy_graph(ctx, graph);
  if (!p->graph) {
    vnrt_plan_destroy(p);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating a plan");
  }
  /* Engram stores rewrite the plan's graph (adding values), so they come before sizing. */
  p->prefetch_depth = desc && desc->prefetch_depth > 0 ? desc->prefetch_depth : 2;
  p->serial = desc && desc->serialize_copies;
  status = vn_budget_limit_from_env(ctx, desc ? desc->device_memory_limit : 0, &p->device_limit);
  const char *max_buffer = getenv(VN_MAX_BUFFER_ENV);
  if (status == VNRT_OK && max_buffer && *max_buffer) {
    status = vn_budget_parse(ctx, max_buffer, &p->max_buffer_env);
    if (status != VNRT_OK) {
      vn_error(ctx, status, "%s=\"%s\" is not a byte count such as 1048576, 64K, 256M or 1G",
               VN_MAX_BUFFER_ENV, max_buffer);
    }
  }
  if (status == VNRT_OK) status = vn_plan_engram_rewrite(p, desc);
  if (status != VNRT_OK) {
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    vnrt_plan_destroy(p);
    return vn_error(ctx, status, "%s", msg);
  }
  int32_t nv = p->graph->n_values, nn = p->graph->n_nodes;
  p->order = vn_calloc(ctx, (size_t)(nn ? nn : 1), sizeof *p->order);
  p->node_dev = vn_calloc(ctx, (size_t)(nn ? nn : 1), sizeof *p->node_dev);
  p->local = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->local);
  p->home = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->home);
  p->alias = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->alias);
  p->io = vn_io_store_new(ctx, nv);
  p->bound = p->io ? p->io->bound : NULL;
  p->share_store = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->share_store);
  p->share_value = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->share_value);
  p->share_buf = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->share_buf);
  p->share_off = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->share_off);
  p->seen_gen = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->seen_gen);
  p->exportable = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->exportable);
  p->streamed = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->streamed);
  p->no_storage = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->no_storage);
  p->host_src = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->host_src);
  p->host_owned = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->host_owned);
  p->shadow = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->shadow);
  p->stream = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->stream);
  p->need = vn_calloc(ctx, (size_t)nn + 1, sizeof *p->need);
  p->job_for_step = vn_calloc(ctx, (size_t)nn + 1, sizeof *p->job_for_step);
  p->signal_at = vn_calloc(ctx, (size_t)nn + 1, sizeof *p->signal_at);
  if (!p->graph || !p->order || !p->node_dev || !p->local || !p->home || !p->alias || !p->bound ||
      !p->streamed || !p->no_storage || !p->host_src || !p->host_owned || !p->shadow ||
      !p->stream || !p->need || !p->signal_at || !p->job_for_step || !p->share_store ||
      !p->share_value || !p->share_buf || !p->share_off || !p->seen_gen || !p->exportable) {
    vnrt_plan_destroy(p);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating a plan");
  }
  for (int32_t i = 0; i < nn; ++i) p->node_dev[i] = -1;
  for (int32_t v = 0; v < nv; ++v) p->share_store[v] = -1;
  p->share_src = share;

  vn_plan_engram_mark(p);
  char err[512] = "";
  status = vn_pass_topo_order(p->graph, p->order, &p->n_order, err, sizeof err);
  if (status != VNRT_OK) vn_error(ctx, status, "%s", err);
  p->info.n_nodes = p->n_order;

  vnrt_device *cpu = vn_cpu_device(ctx);
  p->devs[0].device = device;
  p->n_devs = 1;
  if (device != cpu) {
    p->devs[1].device = cpu;
    p->n_devs = 2;
  }
  for (int32_t d = 0; d < p->n_devs && status == VNRT_OK; ++d) {
    p->devs[d].iface = p->devs[d].device->backend->iface;
    status = vn_device_open(p->devs[d].device, &p->devs[d].bdev);
  }
  if (status == VNRT_OK) status = place_nodes(p, desc);
  if (status == VNRT_OK) {
    status = build_devices(p, desc ? desc->kernels : VNRT_KERNELS_FAST);
  }
  p->share_src = NULL;
  if (status == VNRT_OK) mark_exportable(p);
  if (status == VNRT_OK) status = vnrt_plan_reset_state(p);
  if (status == VNRT_OK) status = vn_plan_engram_prepare(p);
  for (int32_t j = 0; status == VNRT_OK && j < p->n_stream; ++j) {
    /* The copy of a streamed param may start once step start-1 is done: split there. */
    p->signal_at[p->stream[j].start] = true;
    status = find_hash_routed(p, &p->stream[j]);
  }
  if (status != VNRT_OK) {
    /* Keep the failing step's message while the plan's resources are released. */
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    vnrt_plan_destroy(p);
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", msg);
    return status;
  }
  *out_plan = p;
  return VNRT_OK;
}

vnrt_status vnrt_plan_create(vnrt_context *ctx, const vnrt_graph *graph, vnrt_device *device,
                             const vnrt_plan_desc *desc, vnrt_plan **out_plan) {
  return create_plan(ctx, graph, device, desc, NULL, out_plan, "vnrt_plan_create");
}

vnrt_status vnrt_plan_create_shared(vnrt_context *ctx, const vnrt_graph *graph,
                                    vnrt_device *device, const vnrt_plan_desc *desc,
                                    vnrt_plan *share_params_with, vnrt_plan **out_plan) {
  return create_plan(ctx, graph, device, desc, share_params_with, out_plan,
                     "vnrt_plan_create_shared");
}

vnrt_status vnrt_plan_get_info(const vnrt_plan *plan, vnrt_plan_info *out_info) {
  if (!plan || !out_info) return VNRT_ERROR_INVALID_ARGUMENT;
  *out_info = plan->info;
  return VNRT_OK;
}
