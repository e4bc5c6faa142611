/* Plans: compile a graph for a device — a copy of the graph, its order, placement with CPU
 * fallback (plan_place.c), homes, transfers and partitions, device memory (plan_memory.c, with
 * params shared with another plan: plan_share.c), per-device backend graphs. Running them is
 * plan_run.c. */
#include <stdio.h>
#include <stdlib.h>

#include "copy_stream.h"
#include "cost.h"
#include "options.h"
#include "plan.h"
#include "plan_inspect.h"
#include "sized.h"

/* The work limit of one run: desc's max_work, else $VNRT_MAX_RUN_WORK, else the built-in. */
static vnrt_status work_limit(vnrt_context *ctx, const vnrt_plan_desc *desc, uint64_t *out) {
  *out = VN_DEFAULT_MAX_WORK;
  if (desc && desc->max_work) {
    *out = desc->max_work;
    return VNRT_OK;
  }
  const char *env = vn_option(ctx, "max_run_work");
  if (!env || !*env) return VNRT_OK;
  char *end = NULL;
  double v = strtod(env, &end);
  while (end && (*end == ' ' || *end == '\t')) ++end;
  if (!end || end == env || *end || !(v >= 1)) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s=\"%s\" is not a positive operation count such as 1e15 or 250000000",
                    VN_MAX_WORK_ENV, env);
  }
  *out = v >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)v;
  return VNRT_OK;
}

/* The cost model over the nodes one run executes (docs/ops.md, "Attribute limits and empty
 * tensors"): records the estimate in p->info and refuses a plan over the limit, naming the
 * most expensive node. */
static vnrt_status check_work(vnrt_plan *p, const vnrt_plan_desc *desc) {
  uint64_t limit = 0;
  VN_RETURN_IF_ERROR(work_limit(p->ctx, desc, &limit));
  const vnrt_graph *g = p->graph;
  uint64_t total = 0, top_work = 0;
  int32_t top = -1;
  vn_cost top_cost = {0, 0};
  for (int32_t s = 0; s < p->n_order; ++s) {
    const vn_node *nd = &g->nodes[p->order[s]];
    vn_cost c = vn_node_cost(g, nd);
    uint64_t w = vn_cost_work(c);
    total = vn_sat_add(total, w);
    if (top < 0 || w > top_work) top = p->order[s], top_work = w, top_cost = c;
  }
  p->info.work = total;
  p->info.work_limit = limit;
  if (total <= limit) return VNRT_OK;
  const vn_node *nd = &g->nodes[top];
  return vn_error(p->ctx, VNRT_ERROR_BUDGET_EXCEEDED,
                  "the estimated work of one run is %llu operations (%.3g), over the limit of "
                  "%llu (%.3g; vnrt_plan_desc.max_work or $%s); the most expensive node is '%s' "
                  "(%s: %llu operations, %llu arithmetic and %llu elements moved)",
                  (unsigned long long)total, (double)total, (unsigned long long)limit,
                  (double)limit, VN_MAX_WORK_ENV, g->values[nd->outputs[0]].name,
                  vnrt_op_name(nd->op), (unsigned long long)top_work,
                  (unsigned long long)top_cost.flops, (unsigned long long)top_cost.elements);
}

/* The input that output `out` of an `op` node updates in place when it is a state's update,
 * or -1: kv_write's and kv_scatter's cache on every device (docs/backends.md); kv_compress's
 * state_a and state_z where the device's kernels allow it (VNRT_CAP_STATE_INPLACE). */
static int32_t in_place_input(vnrt_op op, int32_t out, uint32_t caps) {
  switch (op) {
    case VNRT_OP_KV_WRITE:
    case VNRT_OP_KV_SCATTER:
      return out == 0 ? 0 : -1;
    case VNRT_OP_KV_COMPRESS:
      return (caps & VNRT_CAP_STATE_INPLACE) && (out == 2 || out == 3) ? out + 1 : -1;
    default:
      return -1;
  }
}

/* Builds tensors, transfers, partitions and memory for every device slot, then compiles. */
static vnrt_status build_devices(vnrt_plan *p, vnrt_kernel_mode kernels) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  int32_t nv = g->n_values, n = p->n_order;
  vnrt_status status = VNRT_OK;

  /* In-place state updates (docs/executor.md): a state whose update is a node result that
   * in_place_input names writes straight into the state's storage instead of being copied
   * after the run (a KV cache or a compressed cache changes a few rows a step), when the
   * writer runs on the target and reads the state only there, the state is no output, and
   * every other node that reads the state runs before the writer: those read the old rows
   * before they change, as a copy would have kept them (the sliding-window ring, read by
   * attention and then written). Backends already order a node's reads before a later node's
   * writes of the same bytes (arena memory is reused that way). */
  const uint32_t caps = p->devs[0].device->info.caps;
  for (int32_t v = 0; v < nv; ++v) p->vals[v].alias = -1;
  for (int32_t i = 0; i < g->n_states; ++i) {
    int32_t st = g->states[i], next = g->values[st].next;
    if (next < 0) continue;
    int32_t prod = g->values[next].producer;
    if (prod < 0 || p->node_dev[prod] != 0) continue;
    const vn_node *wn = &g->nodes[prod];
    int32_t out = 0;
    while (out < wn->n_outputs && wn->outputs[out] != next) ++out;
    const int32_t in = in_place_input(wn->op, out, caps);
    if (in < 0 || in >= wn->n_inputs || wn->inputs[in] != st) continue;
    bool ok = true, seen_writer = false;
    for (int32_t k = 0; k < n && ok; ++k) {
      const vn_node *nd = &g->nodes[p->order[k]];
      const bool writer = p->order[k] == prod;
      for (int32_t j = 0; j < nd->n_inputs; ++j) {
        /* the writer reading the state elsewhere too, or a reader after the writer */
        if (nd->inputs[j] == st && (writer ? j != in : seen_writer)) ok = false;
      }
      seen_writer |= writer;
    }
    for (int32_t o = 0; o < g->n_outputs; ++o) ok &= g->outputs[o] != st;
    if (ok) {
      p->vals[next].alias = st;
      p->info.n_inplace_updates++;
    }
  }
  /* Reshapes as views (docs/executor.md): on a target with VNRT_CAP_RESHAPE_VIEW, a reshape
   * whose input is a node's result takes that result's memory (the root of a chain of
   * reshapes), which then lives as long as either; the kernel sees the same buffer and offset
   * on both sides and does nothing. A result that is a state's in-place update keeps its own
   * memory. */
  for (int32_t k = 0; k < n && (caps & VNRT_CAP_RESHAPE_VIEW); ++k) {
    const vn_node *nd = &g->nodes[p->order[k]];
    if (nd->op != VNRT_OP_RESHAPE || p->node_dev[p->order[k]] != 0) continue;
    int32_t x = nd->inputs[0], r = nd->outputs[0];
    int32_t root = p->vals[x].alias >= 0 ? p->vals[x].alias : x;
    if (p->vals[r].alias >= 0 || g->values[root].kind != VN_VALUE_NODE) continue;
    p->vals[r].alias = root;
  }

  /* Homes: a node's results live where it runs; inputs, params and states on the target. */
  for (int32_t v = 0; v < nv; ++v) {
    int32_t prod = g->values[v].producer;
    p->vals[v].home = (g->values[v].kind == VN_VALUE_NODE && prod >= 0 && p->node_dev[prod] >= 0)
                          ? p->node_dev[prod]
                          : 0;
    for (int32_t d = 0; d < VN_PLAN_MAX_DEVICES; ++d) p->vals[v].local[d] = -1;
  }

  uint64_t max_transfer = 0; /* the staging buffer's size */

  /* Transfers, partitions, and per-device live ranges (steps are positions in order). */
  vn_live_range(*range)[VN_PLAN_MAX_DEVICES] = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *range);
  p->parts = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *p->parts);
  p->transfers = vn_calloc(ctx, (size_t)(n ? n : 1) * VNRT_MAX_NODE_INPUTS, sizeof *p->transfers);
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
        int32_t home = p->vals[v].home;
        if (!is_input && home != d) {
          /* First use of a foreign value on d: copy it at the start of this partition, and
           * keep its home copy alive until then. */
          p->transfers[p->n_transfers++] = (vn_transfer){v, home, d};
          part->n_transfers++;
          range[v][d].first = part->first;
          vn_live_range *h = &range[v][home];
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
    vn_live_range *r = &range[v][p->vals[v].home];
    r->last = n;
    if (r->first == -2) r->first = -1;
  }
  for (int32_t i = 0; i < g->n_inputs + g->n_states; ++i) {
    int32_t v = i < g->n_inputs ? g->inputs[i] : g->states[i - g->n_inputs];
    if (range[v][0].first == -2 && !p->vals[v].no_storage) {
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
  if (p->share_src) vn_plan_choose_shared(p, range);
  status = vn_plan_choose_streamed(p, range);
  for (int32_t d = 0; d < p->n_devs && status == VNRT_OK; ++d) status = vn_plan_alloc_buffers(p, d);
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
      vn_plan_fill_node(g, p->order[s], bn);
      for (int32_t i = 0; i < bn->n_inputs; ++i)
        bn->inputs[i] = p->vals[bn->inputs[i]].local[part->dev];
      for (int32_t i = 0; i < bn->n_outputs; ++i) {
        bn->outputs[i] = p->vals[bn->outputs[i]].local[part->dev];
      }
    }
    part->first = first_local; /* from now on: an index into the device's node list */
  }
  for (int32_t d = 0; d < p->n_devs; ++d) {
    vn_plan_device *pd = &p->devs[d];
    pd->graph = (vnrt_backend_graph){pd->n_tensors,
                                     pd->tensors,
                                     pd->n_nodes,
                                     pd->nodes,
                                     kernels,
                                     sizeof(vnrt_backend_graph),
                                     sizeof(vnrt_backend_tensor),
                                     sizeof(vnrt_backend_node)};
    if (pd->n_nodes == 0) continue;
    VN_RETURN_IF_ERROR(vn_dev_compile(pd->device, &pd->graph, &pd->exec));
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
  vn_inspect_destroy(p);
  vn_plan_async_destroy(p);
  vn_plan_engram_destroy(p);
  int32_t nv = p->graph ? p->graph->n_values : 0;
  for (int32_t v = 0; p->vals && v < nv; ++v) {
    vn_free(ctx, p->vals[v].host_owned);
    vn_free(ctx, p->vals[v].shadow);
  }
  for (int32_t d = 0; d < p->n_devs; ++d) {
    vn_plan_device *pd = &p->devs[d];
    vn_dev_exec_destroy(pd->device, pd->exec);
    for (int32_t b = d == 0 ? pd->layout.n_io_bufs : 0; pd->bufs && b < pd->layout.n_bufs; ++b) {
      vn_dev_free(pd->device, pd->bufs[b]); /* (io: p->io's) */
    }
    vn_free(ctx, pd->bufs);
    vn_layout_free(ctx, &pd->layout);
    vn_free(ctx, pd->slots);
    vn_free(ctx, pd->tensors);
    vn_free(ctx, pd->nodes);
  }
  vnrt_graph_destroy(p->graph);
  vn_free(ctx, p->order);
  vn_free(ctx, p->node_dev);
  vn_free(ctx, p->vals);
  for (int32_t j = 0; p->stream && j < p->n_stream; ++j) vn_free(ctx, p->stream[j].used);
  vn_free(ctx, p->stream);
  vn_free(ctx, p->steps);
  vn_free(ctx, p->jobs);
  vn_free(ctx, p->reads);
  vn_io_store_release(p->io); /* frees the bound flags, and the io buffers unless shared */
  for (int32_t k = 0; k < p->n_stores; ++k) vn_io_store_release(p->stores[k]);
  vn_free(ctx, p->stores);
  vn_free(ctx, p->parts);
  vn_free(ctx, p->transfers);
  vn_free(ctx, p->staging);
  vn_free(ctx, p);
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
  /* The caller's desc as this library's full struct: members past its struct_size default. */
  vnrt_plan_desc full;
  if (desc) {
    if (vn_sized_read(ctx, &vn_sized_plan_desc, desc, &full) != VNRT_OK) {
      char msg[VN_ERROR_MAX];
      snprintf(msg, sizeof msg, "%s", ctx->last_error);
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s: %s", fn, msg);
    }
    desc = &full;
  }
  /* Every enum and count of the desc, before any work (docs/api.md: a bad enum is
   * INVALID_ARGUMENT). */
  if (desc && desc->kernels != VNRT_KERNELS_FAST && desc->kernels != VNRT_KERNELS_REFERENCE) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s: vnrt_plan_desc.kernels=%d is not a vnrt_kernel_mode (0 FAST, "
                    "1 REFERENCE)",
                    fn, (int)desc->kernels);
  }
  if (desc && desc->prefetch_depth < 0) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s: vnrt_plan_desc.prefetch_depth=%d is negative (0: the default, 2)", fn,
                    (int)desc->prefetch_depth);
  }
  if (desc && desc->n_engram < 0) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s: vnrt_plan_desc.n_engram=%d is negative",
                    fn, (int)desc->n_engram);
  }
  bool updates_state = false;
  for (int32_t i = 0; i < graph->n_states; ++i) {
    updates_state |= graph->values[graph->states[i]].next >= 0;
  }
  if (graph->n_outputs == 0 && !updates_state) {
    return vn_error(ctx, VNRT_ERROR_INVALID_GRAPH, "the graph has no outputs");
  }
  vn_clear_error(ctx);
  vnrt_plan *p = vn_calloc(ctx, 1, sizeof *p);
  if (!p) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating a plan");
  p->ctx = ctx;
  vnrt_status status = VNRT_OK;
  p->graph = vn_graph_clone(ctx, graph);
  if (!p->graph) {
    vnrt_plan_destroy(p);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating a plan");
  }
  /* Engram stores rewrite the plan's graph (adding values), so they come before sizing. */
  p->prefetch_depth = desc && desc->prefetch_depth > 0 ? desc->prefetch_depth : 2;
  p->serial = desc && desc->serialize_copies;
  uint64_t limit = 0;
  status = vn_budget_limit_from_env(ctx, desc ? desc->device_memory_limit : 0, &limit);
  vn_budget_init(&p->budget, ctx, limit);
  const char *max_buffer = vn_option(ctx, "max_buffer");
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
  p->vals = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->vals);
  p->io = vn_io_store_new(ctx, nv);
  p->stream = vn_calloc(ctx, (size_t)(nv ? nv : 1), sizeof *p->stream);
  p->steps = vn_calloc(ctx, (size_t)nn + 1, sizeof *p->steps);
  if (!p->order || !p->node_dev || !p->vals || !p->io || !p->stream || !p->steps) {
    vnrt_plan_destroy(p);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating a plan");
  }
  for (int32_t i = 0; i < nn; ++i) p->node_dev[i] = -1;
  for (int32_t v = 0; v < nv; ++v) p->vals[v].share.store = -1;
  p->share_src = share;

  vn_plan_engram_mark(p);
  char err[512] = "";
  status = vn_pass_topo_order(p->graph, p->order, &p->n_order, err, sizeof err);
  if (status != VNRT_OK) vn_error(ctx, status, "%s", err);
  p->info.n_nodes = p->n_order;
  if (status == VNRT_OK) status = check_work(p, desc);

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
  if (status == VNRT_OK) status = vn_plan_place(p, desc);
  if (status == VNRT_OK) {
    status = build_devices(p, desc ? desc->kernels : VNRT_KERNELS_FAST);
  }
  p->share_src = NULL;
  if (status == VNRT_OK) vn_plan_mark_exportable(p);
  if (status == VNRT_OK) status = vnrt_plan_reset_state(p);
  if (status == VNRT_OK) status = vn_plan_engram_prepare(p);
  if (status == VNRT_OK) status = vn_inspect_create(p, desc);
  for (int32_t j = 0; status == VNRT_OK && j < p->n_stream; ++j) {
    /* The copy of a streamed param may start once step start-1 is done: split there. */
    p->steps[p->stream[j].start].signal = true;
    status = vn_plan_find_hash_routed(p, &p->stream[j]);
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

vnrt_status vnrt_plan_create_shared(vnrt_context *ctx, const vnrt_graph *graph, vnrt_device *device,
                                    const vnrt_plan_desc *desc, vnrt_plan *share_params_with,
                                    vnrt_plan **out_plan) {
  return create_plan(ctx, graph, device, desc, share_params_with, out_plan,
                     "vnrt_plan_create_shared");
}

vnrt_status vnrt_plan_get_info(const vnrt_plan *plan, vnrt_plan_info *out_info) {
  if (!plan || !out_info) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_plan_info info = plan->info;
  info.struct_size = sizeof info;
  return vn_sized_write(plan->ctx, &vn_sized_plan_info, &info, out_info);
}
