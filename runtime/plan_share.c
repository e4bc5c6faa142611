/* Params shared between plans (vnrt_plan_create_shared): a plan points its params at another
 * plan's device memory where that plan has the same param resident on the same target, and
 * the io stores holding that memory are refcounted so either plan may be destroyed first. */
#include "plan.h"

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
    vn_dev_free(s->device, s->bufs[b]);
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
void vn_plan_mark_exportable(vnrt_plan *p) {
  const vnrt_graph *g = p->graph;
  for (int32_t v = 0; v < g->n_values; ++v) {
    vn_plan_value *pv = &p->vals[v];
    pv->exportable = g->values[v].kind == VN_VALUE_PARAM && pv->local[0] >= 0 && !pv->streamed &&
                     !pv->no_storage && !p->io->bound[v] && (p->n_devs < 2 || pv->local[1] < 0);
  }
}

/* Points p's params at src's device memory where src has a param of the same name, dtype and
 * shape that it may share (vn_plan_mark_exportable), on the same target, and p's own param
 * would live in its io buffers on the target only. Before layout: shared params take no slot
 * and are never streamed. Takes a reference on every store src's params live in. */
void vn_plan_choose_shared(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]) {
  vnrt_context *ctx = p->ctx;
  const vnrt_plan *src = p->share_src;
  const vnrt_graph *g = p->graph;
  int32_t n_params = 0;
  for (int32_t v = 0; v < g->n_values; ++v) n_params += g->values[v].kind == VN_VALUE_PARAM;
  if (src->devs[0].device != p->devs[0].device) {
    vn_log(ctx, VNRT_LOG_INFO,
           "plan for %s: shares no params (0 of %d, 0 bytes): the other "
           "plan is for %s",
           p->devs[0].device->info.spec, n_params, src->devs[0].device->info.spec);
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
    vn_plan_value *pv = &p->vals[v];
    if (val->kind != VN_VALUE_PARAM || pv->no_storage || p->io->bound[v] ||
        range[v][0].first == -2 || range[v][1].first != -2) {
      continue;
    }
    int32_t w = vnrt_graph_find(src->graph, val->name);
    if (w < 0 || !src->vals[w].exportable || !same_type(&val->type, &src->graph->values[w].type)) {
      continue;
    }
    const vn_plan_value *sw = &src->vals[w];
    if (sw->share.store >= 0) { /* itself shared: the memory of the plan it shares */
      pv->share = sw->share;
      pv->share.store = sw->share.store + 1;
    } else {
      const vnrt_backend_tensor *bt = &src->devs[0].tensors[sw->local[0]];
      pv->share.store = 0;
      pv->share.value = w;
      pv->share.buf = bt->buffer;
      pv->share.off = bt->offset;
    }
    p->n_shared++;
    p->shared_bytes += vnrt_tensor_type_bytes(&val->type);
  }
  vn_log(ctx, VNRT_LOG_INFO,
         "plan for %s: shares %d of %d params (%llu bytes) with another "
         "plan",
         p->devs[0].device->info.spec, p->n_shared, n_params, (unsigned long long)p->shared_bytes);
}
