/* Deep copies of graphs: a plan keeps its own, so the user may destroy the graph it compiled. */
#include <string.h>

#include "graph.h"
#include "op_table.h"

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

vnrt_graph *vn_graph_clone(vnrt_context *ctx, const vnrt_graph *src) {
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
  /* The params' lists point into the attributes: resolve them again against the copies. */
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
  vnrt_graph_destroy(g);
  return NULL;
}
