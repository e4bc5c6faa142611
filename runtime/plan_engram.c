/* Engram stores in plans: store-served engram_lookup nodes read a device row cache, and the rows
 * a run needs are computed on the host and fetched on the copy stream as soon as it starts.
 *
 * engram_lookup(table, idx, offsets) becomes engram_lookup(cache, slots, zeros): cache is an
 * internal state of [slots + T·H, D] rows (the row cache, then a bypass region for lookups whose
 * distinct rows do not fit), slots an internal input the executor writes every run, zeros a
 * param of H zeros. idx depends only on inputs and states (ngram_hash of token ids). When it is
 * ngram_hash of an input and a state or input (the usual case) the copy job itself hashes with
 * the graph layer's vn_ngram_hash; otherwise a small CPU plan computes idx at run start. Either way
 * the job, on the copy thread, checks the rows, plans them through a vn_row_cache and copies the
 * misses while the compute stream runs the layers before the lookup. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "copy_stream.h"
#include "engram_store.h"
#include "plan.h"
#include "row_cache.h"

struct vn_engram_use {
  vnrt_plan *plan;
  vnrt_engram_store *store;
  int32_t node;                  /* the rewritten engram_lookup node */
  int32_t step;                  /* its position in the plan's order */
  int32_t table, idx, offsets;   /* values of the original inputs */
  int32_t cache, slot_in, zeros; /* the internal values that replace them */
  int32_t tokens, heads;
  int64_t n;     /* tokens x heads entries */
  int32_t slots; /* cache slots (0: no cache) */
  uint64_t row_bytes;
  vn_row_cache *rc;
  vnrt_plan *host_plan; /* computes idx on the CPU; NULL when idx is an input or hashed */
  int32_t *leaves;      /* values of this plan that feed host_plan, by the same names */
  int32_t n_leaves;
  void **leaf_bufs; /* for states: where their current value is read to */
  int32_t *idx_buf, *offs_buf, *slot_of;
  int64_t *rows;
  vn_row_fetch *fetch;
  int64_t n_fetch;
  void *staging; /* n rows, for devices whose memory the host cannot map */

  /* idx = ngram_hash(ids, hist) of two leaves: the job hashes with vn_ngram_hash. */
  int32_t hash_from;  /* the ngram_hash node, or -1 when idx is not hashed in the job */
  int32_t hash_in[2]; /* its inputs (leaves) */
  const vnrt_ngram_hash_params *hash; /* its params */
  void *hash_state[2];                /* for a state input: its value, read at run start */
  const void *hash_src[2];            /* this run's inputs: a host copy or hash_state */

  /* What slot_in holds on each device: slot_of rarely changes (never with the cache off), and
   * skipping an unchanged write saves a transfer on devices the host cannot map. */
  int32_t *slot_dev[VN_PLAN_MAX_DEVICES];
  bool slot_dev_valid[VN_PLAN_MAX_DEVICES];

  /* Written by the job; read on the compute thread once it has waited for the job. */
  char err[VN_ERROR_MAX];
  uint64_t run_rows, run_hits, run_bytes;
};

static bool is_leaf(const vn_value *v) { return v->kind != VN_VALUE_NODE; }

/* Copies the ancestors of value `target` into a new graph whose leaves are plain inputs, and
 * compiles it for the CPU. */
static vnrt_status build_host_plan(vnrt_plan *p, vn_engram_use *u, int32_t target) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  bool *need = vn_calloc(ctx, (size_t)g->n_nodes + 1, sizeof *need);
  int32_t *map = vn_calloc(ctx, (size_t)g->n_values + 1, sizeof *map);
  u->leaves = vn_calloc(ctx, (size_t)g->n_values + 1, sizeof *u->leaves);
  if (!need || !map || !u->leaves) {
    vn_free(ctx, need), vn_free(ctx, map);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning an Engram prefetch");
  }
  need[g->values[target].producer] = true;
  /* Nodes are in a topological insertion order: one backward sweep marks every ancestor. */
  for (int32_t i = g->n_nodes - 1; i >= 0; --i) {
    if (!need[i]) continue;
    for (int32_t k = 0; k < g->nodes[i].n_inputs; ++k) {
      const vn_value *iv = &g->values[g->nodes[i].inputs[k]];
      if (!is_leaf(iv)) need[iv->producer] = true;
    }
  }
  vnrt_graph *hg = NULL;
  vnrt_status s = vnrt_graph_create(ctx, &hg);
  char err[512] = "";
  for (int32_t v = 0; v < g->n_values; ++v) map[v] = -1;
  for (int32_t i = 0; i < g->n_nodes && s == VNRT_OK; ++i) {
    if (!need[i]) continue;
    const vn_node *nd = &g->nodes[i];
    int32_t in[VNRT_MAX_NODE_INPUTS];
    for (int32_t k = 0; k < nd->n_inputs && s == VNRT_OK; ++k) {
      int32_t v = nd->inputs[k];
      if (map[v] < 0 && is_leaf(&g->values[v])) {
        s = vn_graph_add_input(hg, g->values[v].name, &g->values[v].type, 0, &map[v], err,
                               sizeof err);
        u->leaves[u->n_leaves++] = v;
      }
      in[k] = map[v];
    }
    const char *names[VNRT_MAX_NODE_OUTPUTS];
    int32_t outs[VNRT_MAX_NODE_OUTPUTS];
    for (int32_t k = 0; k < nd->n_outputs; ++k) names[k] = g->values[nd->outputs[k]].name;
    if (s == VNRT_OK) {
      s = vn_graph_add_node(hg, nd->op, in, nd->n_inputs, nd->attrs, nd->n_attrs, names, outs,
                            nd->n_outputs, err, sizeof err);
    }
    for (int32_t k = 0; k < nd->n_outputs && s == VNRT_OK; ++k) map[nd->outputs[k]] = outs[k];
  }
  if (s == VNRT_OK) s = vn_graph_add_output(hg, map[target], err, sizeof err);
  if (s != VNRT_OK && err[0]) vn_error(ctx, s, "Engram prefetch plan: %s", err);
  vnrt_device *cpu = vn_cpu_device(ctx);
  if (s == VNRT_OK) s = vnrt_plan_create(ctx, hg, cpu, NULL, &u->host_plan);
  vnrt_graph_destroy(hg);
  vn_free(ctx, need);
  vn_free(ctx, map);
  return s;
}

static vnrt_status add_internal(vnrt_plan *p, int32_t k, const char *what, vn_value_kind kind,
                                const vnrt_tensor_type *type, int32_t *out) {
  char name[64], err[256];
  snprintf(name, sizeof name, "_engram%d.%s", (int)k, what);
  vnrt_status s =
      kind == VN_VALUE_STATE
          ? vn_graph_add_state(p->graph, name, type, out, err, sizeof err)
          : vn_graph_add_input(p->graph, name, type, kind == VN_VALUE_PARAM, out, err, sizeof err);
  if (s != VNRT_OK) return vn_error(p->ctx, s, "Engram rewrite: %s", err);
  return VNRT_OK;
}

vnrt_status vn_plan_engram_rewrite(vnrt_plan *p, const vnrt_plan_desc *desc) {
  if (!desc || desc->n_engram <= 0) return VNRT_OK;
  vnrt_context *ctx = p->ctx;
  vnrt_graph *g = p->graph;
  if (!desc->engram) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "n_engram is %d but engram is NULL",
                    desc->n_engram);
  }
  int32_t uses = 0;
  for (int32_t i = 0; i < g->n_nodes; ++i) uses += g->nodes[i].op == VNRT_OP_ENGRAM_LOOKUP;
  p->engram = vn_calloc(ctx, (size_t)(uses ? uses : 1), sizeof *p->engram);
  if (!p->engram) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  for (int32_t b = 0; b < desc->n_engram; ++b) {
    const vnrt_engram_binding *eb = &desc->engram[b];
    int32_t table = eb->param ? vnrt_graph_find(g, eb->param) : -1;
    if (table < 0 || g->values[table].kind != VN_VALUE_PARAM || !eb->store) {
      return vn_error(
          ctx, VNRT_ERROR_NOT_FOUND, "Engram binding %d: %s", (int)b,
          !eb->store ? "the store is NULL" : "no param of that name (it must be a param)");
    }
    const vnrt_tensor_type table_type = g->values[table].type; /* values may move below */
    const vnrt_tensor_type *tt = &table_type;
    vnrt_engram_store *st = eb->store;
    if (tt->rank != 2 || tt->dims[0] != vn_engram_store_rows(st) ||
        tt->dims[1] != vn_engram_store_dim(st) || tt->dtype != vn_engram_store_dtype(st)) {
      char ts[160];
      return vn_error(ctx, VNRT_ERROR_SHAPE_MISMATCH,
                      "Engram binding for '%s': the param is %s but the store holds %s[%lld, %lld]",
                      eb->param, vn_type_str(tt, ts, sizeof ts),
                      vnrt_dtype_name(vn_engram_store_dtype(st)),
                      (long long)vn_engram_store_rows(st), (long long)vn_engram_store_dim(st));
    }
    int32_t served = 0, n_nodes = g->n_nodes;
    for (int32_t i = 0; i < n_nodes; ++i) {
      vn_node *nd = &g->nodes[i];
      bool reads = false;
      for (int32_t k = 0; k < nd->n_inputs; ++k) reads |= nd->inputs[k] == table;
      if (!reads) continue;
      if (nd->op != VNRT_OP_ENGRAM_LOOKUP || nd->inputs[0] != table) {
        return vn_error(ctx, VNRT_ERROR_INVALID_GRAPH,
                        "param '%s' is served by an Engram store, so only engram_lookup may read "
                        "it as its table, but node '%s' (%s) reads it",
                        eb->param, g->values[nd->outputs[0]].name, vnrt_op_name(nd->op));
      }
      int32_t offsets = nd->inputs[2];
      if (g->values[offsets].kind == VN_VALUE_NODE) {
        return vn_error(ctx, VNRT_ERROR_INVALID_GRAPH,
                        "engram_lookup '%s': to prefetch its rows, offsets must be an input or "
                        "param, not computed by node '%s'",
                        g->values[nd->outputs[0]].name, g->values[offsets].name);
      }
      vn_engram_use *u = &p->engram[p->n_engram];
      memset(u, 0, sizeof *u);
      u->plan = p;
      u->store = st;
      u->node = i;
      u->table = table;
      u->idx = nd->inputs[1];
      u->offsets = offsets;
      u->tokens = (int32_t)g->values[u->idx].type.dims[0];
      u->heads = (int32_t)g->values[u->idx].type.dims[1];
      u->n = (int64_t)u->tokens * u->heads;
      u->row_bytes = vn_engram_store_row_bytes(st);
      vn_row_cache *sc = vn_engram_store_cache(st);
      u->slots = sc ? vn_row_cache_slots(sc) : 0;
      if (sc) {
        VN_RETURN_IF_ERROR(
            vn_row_cache_create(ctx, u->slots, vn_row_cache_eviction(sc), u->row_bytes, &u->rc));
      }
      ++p->n_engram;
      int32_t k = p->n_engram - 1;
      vnrt_tensor_type ct = {tt->dtype, 2, {u->slots + u->n, tt->dims[1]}};
      vnrt_tensor_type si = {VNRT_I32, 2, {u->tokens, u->heads}};
      vnrt_tensor_type zt = {VNRT_I32, 1, {u->heads}};
      VN_RETURN_IF_ERROR(add_internal(p, k, "cache", VN_VALUE_STATE, &ct, &u->cache));
      VN_RETURN_IF_ERROR(add_internal(p, k, "slots", VN_VALUE_INPUT, &si, &u->slot_in));
      VN_RETURN_IF_ERROR(add_internal(p, k, "zeros", VN_VALUE_PARAM, &zt, &u->zeros));
      nd = &g->nodes[i]; /* adding values may have moved nothing here, but stay safe */
      nd->inputs[0] = u->cache;
      nd->inputs[1] = u->slot_in;
      nd->inputs[2] = u->zeros;
      u->hash_from = -1;
      if (g->values[u->idx].kind == VN_VALUE_NODE) {
        const vn_node *hn = &g->nodes[g->values[u->idx].producer];
        if (hn->op == VNRT_OP_NGRAM_HASH && hn->n_inputs == 2 &&
            is_leaf(&g->values[hn->inputs[0]]) && is_leaf(&g->values[hn->inputs[1]])) {
          u->hash_from = g->values[u->idx].producer;
          u->hash_in[0] = hn->inputs[0];
          u->hash_in[1] = hn->inputs[1];
        } else {
          VN_RETURN_IF_ERROR(build_host_plan(p, u, u->idx));
        }
      }
      ++served;
    }
    if (served == 0) {
      return vn_error(ctx, VNRT_ERROR_INVALID_GRAPH,
                      "Engram binding for '%s': no engram_lookup reads it as its table", eb->param);
    }
    /* The table is host or file-mapped memory, never the device's: accounted where it lives. */
    VN_RETURN_IF_ERROR(vn_budget_reserve(&p->budget, vn_engram_store_tier(st),
                                         vn_engram_store_table_bytes(st), eb->param));
  }
  p->info.n_engram_lookups = p->n_engram;
  return VNRT_OK;
}

/* The values that need no device storage, are bound by the executor, or need host shadows. */
void vn_plan_engram_mark(vnrt_plan *p) {
  for (int32_t k = 0; k < p->n_engram; ++k) {
    vn_engram_use *u = &p->engram[k];
    p->vals[u->table].no_storage = true;
    p->io->bound[u->table] = p->io->bound[u->slot_in] = p->io->bound[u->zeros] = true;
  }
}

/* What the job's hashing needs: the node's params, and a buffer per state input, whose value
 * is read at run start. */
static vnrt_status prepare_hash(vnrt_plan *p, vn_engram_use *u) {
  const vnrt_graph *g = p->graph;
  u->hash = &g->nodes[u->hash_from].params.ngram_hash;
  for (int32_t i = 0; i < 2; ++i) {
    const vn_value *v = &g->values[u->hash_in[i]];
    if (v->kind == VN_VALUE_STATE) {
      u->hash_state[i] = vn_calloc(p->ctx, 1, vnrt_tensor_type_bytes(&v->type) + 1);
      if (!u->hash_state[i]) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
  }
  return VNRT_OK;
}

vnrt_status vn_plan_engram_prepare(vnrt_plan *p) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  for (int32_t k = 0; k < p->n_engram; ++k) {
    vn_engram_use *u = &p->engram[k];
    for (int32_t s = 0; s < p->n_order; ++s) {
      if (p->order[s] == u->node) u->step = s;
    }
    u->idx_buf = vn_calloc(ctx, (size_t)u->n, sizeof *u->idx_buf);
    u->offs_buf = vn_calloc(ctx, (size_t)u->heads, sizeof *u->offs_buf);
    u->slot_of = vn_calloc(ctx, (size_t)u->n, sizeof *u->slot_of);
    for (int32_t d = 0; d < p->n_devs; ++d) {
      u->slot_dev[d] = vn_calloc(ctx, (size_t)u->n, sizeof *u->slot_dev[d]);
      if (!u->slot_dev[d]) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    u->rows = vn_calloc(ctx, (size_t)u->n, sizeof *u->rows);
    u->fetch = vn_calloc(ctx, (size_t)u->n, sizeof *u->fetch);
    u->staging = vn_malloc(ctx, (size_t)(u->n * (int64_t)u->row_bytes));
    u->leaf_bufs = vn_calloc(ctx, (size_t)u->n_leaves + 1, sizeof *u->leaf_bufs);
    if (!u->idx_buf || !u->offs_buf || !u->slot_of || !u->rows || !u->fetch || !u->staging ||
        !u->leaf_bufs) {
      return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for an Engram lookup");
    }
    /* Host copies: what the prefetch reads of the inputs and params the user binds. */
    int32_t need_shadow[VNRT_MAX_NODE_INPUTS + 2];
    int32_t n_need = 0;
    need_shadow[n_need++] = u->offsets;
    if (u->hash_from >= 0) {
      VN_RETURN_IF_ERROR(prepare_hash(p, u));
      for (int32_t i = 0; i < 2; ++i) {
        if (g->values[u->hash_in[i]].kind != VN_VALUE_STATE) need_shadow[n_need++] = u->hash_in[i];
      }
    } else if (!u->host_plan) {
      need_shadow[n_need++] = u->idx;
    }
    for (int32_t i = 0; i < n_need; ++i) {
      int32_t v = need_shadow[i];
      if (!p->vals[v].shadow) {
        p->vals[v].shadow = vn_calloc(ctx, 1, vnrt_tensor_type_bytes(&g->values[v].type));
        if (!p->vals[v].shadow) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
      }
    }
    for (int32_t l = 0; l < u->n_leaves; ++l) {
      int32_t v = u->leaves[l];
      size_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      if (g->values[v].kind == VN_VALUE_STATE) {
        u->leaf_bufs[l] = vn_calloc(ctx, 1, bytes);
        if (!u->leaf_bufs[l]) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
      } else if (!p->vals[v].shadow) {
        p->vals[v].shadow = vn_calloc(ctx, 1, bytes);
        if (!p->vals[v].shadow) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
      }
    }
    /* The zero offsets, on every device that reads them. */
    for (int32_t d = 0; d < p->n_devs; ++d) {
      int32_t t = p->vals[u->zeros].local[d];
      if (t < 0) continue;
      const vnrt_backend_tensor *bt = &p->devs[d].tensors[t];
      VN_RETURN_IF_ERROR(vn_dev_write(p->devs[d].device, bt->buffer, bt->offset, u->offs_buf,
                                      sizeof(int32_t) * (size_t)u->heads));
    }
    p->info.engram_cache_bytes += vnrt_tensor_type_bytes(&g->values[u->cache].type);
  }
  return VNRT_OK;
}

void vn_plan_engram_destroy(vnrt_plan *p) {
  vnrt_context *ctx = p->ctx;
  for (int32_t k = 0; k < p->n_engram; ++k) {
    vn_engram_use *u = &p->engram[k];
    vnrt_plan_destroy(u->host_plan);
    vn_free(ctx, u->hash_state[0]);
    vn_free(ctx, u->hash_state[1]);
    vn_row_cache_destroy(u->rc);
    for (int32_t l = 0; u->leaf_bufs && l < u->n_leaves; ++l) vn_free(ctx, u->leaf_bufs[l]);
    vn_free(ctx, u->leaf_bufs);
    vn_free(ctx, u->leaves);
    vn_free(ctx, u->idx_buf);
    vn_free(ctx, u->offs_buf);
    vn_free(ctx, u->slot_of);
    for (int32_t d = 0; d < VN_PLAN_MAX_DEVICES; ++d) vn_free(ctx, u->slot_dev[d]);
    vn_free(ctx, u->rows);
    vn_free(ctx, u->fetch);
    vn_free(ctx, u->staging);
  }
  vn_free(ctx, p->engram);
  p->engram = NULL;
  p->n_engram = 0;
}

/* Records the job's failure in its own buffer (the copy stream reports it on the compute
 * thread), naming the lookup. */
static vnrt_status job_fail(vn_engram_use *u, vnrt_status status, const char *fmt, ...) {
  char msg[VN_ERROR_MAX - 128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const vnrt_graph *g = u->plan->graph;
  snprintf(u->err, sizeof u->err, "engram_lookup '%s': %s",
           g->values[g->nodes[u->node].outputs[0]].name, msg);
  return status;
}

/* The job's first half: idx (hashed here unless the compute thread made it), the checked rows,
 * and the cache plan: which entries read which slot, and which rows to fetch into which slot. */
static vnrt_status plan_rows(vn_engram_use *u) {
  if (u->hash_from >= 0) {
    /* (Inference checked the params and shapes: hashing cannot fail.) */
    vn_ngram_hash(u->hash, u->hash_src[0], u->tokens, u->hash_src[1], u->idx_buf);
  }
  const int64_t R = vn_engram_store_rows(u->store);
  for (int64_t t = 0; t < u->tokens; ++t) {
    for (int32_t h = 0; h < u->heads; ++h) {
      const int64_t i = t * u->heads + h;
      const int64_t row = (int64_t)u->offs_buf[h] + u->idx_buf[i];
      if (row < 0 || row >= R) {
        return job_fail(u, VNRT_ERROR_OUT_OF_RANGE,
                        "row %lld (offsets[%d]=%d + idx[%lld, %d]=%d) is out of range [0, %lld) "
                        "of its Engram table",
                        (long long)row, h, u->offs_buf[h], (long long)t, h, u->idx_buf[i],
                        (long long)R);
      }
      u->rows[i] = row;
    }
  }
  vn_row_cache_stats before = {0}, after = {0};
  int64_t next = 0;
  u->n_fetch = 0;
  if (u->rc) {
    vn_row_cache_stats_get(u->rc, &before);
    vnrt_status s =
        vn_row_cache_plan(u->rc, u->rows, u->n, 0, u->slot_of, u->fetch, &u->n_fetch, &next);
    if (s != VNRT_OK) return job_fail(u, s, "planning the row cache failed");
    vn_row_cache_stats_get(u->rc, &after);
  }
  vnrt_engram_stats delta = {0};
  delta.lookups = 1;
  delta.rows_requested = (uint64_t)u->n;
  if (u->rc && next == u->n) {
    delta.unique_rows = after.unique - before.unique;
    delta.hits = after.hits - before.hits;
    delta.misses = after.misses - before.misses;
    delta.evictions = after.evictions - before.evictions;
  } else {
    /* No cache, or this lookup's distinct rows do not fit in it: every entry gets its own row
     * in the bypass region after the cache (the cache keeps nothing of this lookup). */
    if (u->rc) vn_row_cache_clear(u->rc);
    for (int64_t i = 0; i < u->n; ++i) {
      u->slot_of[i] = u->slots + (int32_t)i;
      u->fetch[i] = (vn_row_fetch){u->rows[i], u->slots + (int32_t)i};
    }
    u->n_fetch = u->n;
    delta.unique_rows = delta.misses = (uint64_t)u->n;
  }
  vn_engram_store_record(u->store, &delta); /* atomics: safe beside other threads */
  u->run_rows += delta.unique_rows;
  u->run_hits += delta.hits;
  u->run_bytes += (uint64_t)u->n_fetch * u->row_bytes;
  return VNRT_OK;
}

/* The copy job: the rows of the lookup (plan_rows), then fetched rows into their slots and the
 * slot of every entry, on each device that holds the cache. */
static vnrt_status fetch_job(void *user, const vn_copy_job *job) {
  vn_engram_use *u = user;
  vnrt_plan *p = u->plan;
  u->err[0] = '\0';
  VN_RETURN_IF_ERROR(plan_rows(u));
  for (int32_t d = 0; d < p->n_devs; ++d) {
    int32_t tc = p->vals[u->cache].local[d], ts = p->vals[u->slot_in].local[d];
    if (tc < 0 && ts < 0) continue;
    vn_plan_device *pd = &p->devs[d];
    if (tc >= 0 && u->n_fetch > 0) {
      const vnrt_backend_tensor *bt = &pd->tensors[tc];
      void *base = vn_dev_map(pd->device, bt->buffer);
      if (base) {
        VN_RETURN_IF_ERROR(vn_engram_store_fetch_to_slots(u->store, u->fetch, u->n_fetch,
                                                          (char *)base + bt->offset, u->row_bytes));
      } else {
        for (int64_t i = 0; i < u->n_fetch; ++i) u->rows[i] = u->fetch[i].row;
        VN_RETURN_IF_ERROR(vn_engram_store_gather_rows(u->store, u->rows, u->n_fetch, u->staging));
        /* Consecutive slots go in one write. */
        for (int64_t i = 0; i < u->n_fetch;) {
          int64_t j = i + 1;
          while (j < u->n_fetch && u->fetch[j].slot == u->fetch[j - 1].slot + 1) ++j;
          VN_RETURN_IF_ERROR(vn_dev_write(
              pd->device, bt->buffer, bt->offset + (uint64_t)u->fetch[i].slot * u->row_bytes,
              (char *)u->staging + (uint64_t)i * u->row_bytes, (uint64_t)(j - i) * u->row_bytes));
          i = j;
        }
      }
    }
    const size_t slot_bytes = sizeof(int32_t) * (size_t)u->n;
    if (ts >= 0 && !(u->slot_dev_valid[d] && memcmp(u->slot_dev[d], u->slot_of, slot_bytes) == 0)) {
      const vnrt_backend_tensor *bt = &pd->tensors[ts];
      u->slot_dev_valid[d] = false;
      VN_RETURN_IF_ERROR(vn_dev_write(pd->device, bt->buffer, bt->offset, u->slot_of, slot_bytes));
      memcpy(u->slot_dev[d], u->slot_of, slot_bytes);
      u->slot_dev_valid[d] = true;
    }
  }
  (void)job;
  return VNRT_OK;
}

/* On the compute thread at run start: what the job reads of this run's inputs and states (a
 * state's device copy may be overwritten by the run's end), or idx itself when a CPU plan
 * computes it; fills *job. */
static vnrt_status prefetch_one(vnrt_plan *p, vn_engram_use *u, vn_copy_job *job) {
  const vnrt_graph *g = p->graph;
  if (u->host_plan) {
    for (int32_t l = 0; l < u->n_leaves; ++l) {
      int32_t v = u->leaves[l];
      size_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
      const void *src = p->vals[v].shadow;
      if (g->values[v].kind == VN_VALUE_STATE) {
        VN_RETURN_IF_ERROR(vnrt_plan_read_state(p, g->values[v].name, u->leaf_bufs[l], bytes));
        src = u->leaf_bufs[l];
      }
      VN_RETURN_IF_ERROR(vnrt_plan_set_input(u->host_plan, g->values[v].name, src, bytes));
    }
    VN_RETURN_IF_ERROR(vnrt_plan_run(u->host_plan));
    VN_RETURN_IF_ERROR(vnrt_plan_read_output(u->host_plan, g->values[u->idx].name, u->idx_buf,
                                             sizeof(int32_t) * (size_t)u->n));
  } else if (u->hash_from >= 0) {
    for (int32_t i = 0; i < 2; ++i) {
      int32_t v = u->hash_in[i];
      if (!u->hash_state[i]) {
        u->hash_src[i] = p->vals[v].shadow;
        continue;
      }
      /* Layers usually hash the same history: read each state once per run. */
      const void *earlier = NULL;
      for (int32_t k = 0; k < (int32_t)(u - p->engram) && !earlier; ++k) {
        const vn_engram_use *o = &p->engram[k];
        for (int32_t j = 0; j < 2 && o->hash_from >= 0; ++j) {
          if (o->hash_in[j] == v && o->hash_state[j]) earlier = o->hash_state[j];
        }
      }
      if (earlier) {
        memcpy(u->hash_state[i], earlier, vnrt_tensor_type_bytes(&g->values[v].type));
        u->hash_src[i] = u->hash_state[i];
        continue;
      }
      vn_plan_device *pd = &p->devs[0];
      const vnrt_backend_tensor *bt = &pd->tensors[p->vals[v].local[0]];
      VN_RETURN_IF_ERROR(vn_dev_read(pd->device, bt->buffer, bt->offset, u->hash_state[i],
                                     vnrt_tensor_type_bytes(&g->values[v].type)));
      u->hash_src[i] = u->hash_state[i];
    }
  } else {
    memcpy(u->idx_buf, p->vals[u->idx].shadow, sizeof(int32_t) * (size_t)u->n);
  }
  memcpy(u->offs_buf, p->vals[u->offsets].shadow, sizeof(int32_t) * (size_t)u->heads);
  *job = (vn_copy_job){
      .after = p->compute_base,
      .fn = fetch_job,
      .user = u,
      .error = u->err,
      .lazy = vn_copy_small_is_lazy(p->ctx) && (uint64_t)u->n * u->row_bytes < VN_COPY_LAZY_BYTES};
  return VNRT_OK;
}

vnrt_status vn_plan_engram_prefetch(vnrt_plan *p, vn_copy_job *jobs, int32_t *n_jobs) {
  for (int32_t k = 0; k < p->n_engram; ++k) {
    vn_engram_use *u = &p->engram[k];
    u->run_rows = u->run_hits = u->run_bytes = 0;
    VN_RETURN_IF_ERROR(prefetch_one(p, u, &jobs[*n_jobs]));
    p->steps[u->step].job = *n_jobs;
    ++*n_jobs;
  }
  return VNRT_OK;
}

void vn_plan_engram_collect(vnrt_plan *p) {
  for (int32_t k = 0; k < p->n_engram; ++k) {
    const vn_engram_use *u = &p->engram[k];
    p->stats.engram_rows += u->run_rows;
    p->stats.engram_hits += u->run_hits;
    p->stats.bytes_engram += u->run_bytes;
  }
}
