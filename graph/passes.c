/* Topological ordering with dead-node elimination, and value liveness over an order. */
#include <stdio.h>
#include <string.h>

#include "passes.h"

vnrt_status vn_pass_topo_order(const vnrt_graph *g, int32_t *order, int32_t *out_count, char *err,
                               size_t err_size) {
  *out_count = 0;
  vnrt_context *ctx = g->ctx;
  int32_t n = g->n_nodes;
  /* state per node: 0 = unvisited, 1 = on the DFS stack, 2 = done */
  uint8_t *state = vn_calloc(ctx, (size_t)(n ? n : 1), 1);
  int32_t *stack = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *stack);
  int32_t *next_in = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *next_in);
  if (!state || !stack || !next_in) {
    vn_free(ctx, state), vn_free(ctx, stack), vn_free(ctx, next_in);
    snprintf(err, err_size, "out of memory ordering %d nodes", n);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  vnrt_status status = VNRT_OK;
  int32_t count = 0;
  /* Iterative post-order DFS from the outputs, in output order, so that producers come first
   * and independent branches keep the order in which the graph's author listed them. */
  /* Roots: the outputs, then the values states take after a run. */
  for (int32_t o = 0; o < g->n_outputs + g->n_states && status == VNRT_OK; ++o) {
    int32_t rv = o < g->n_outputs ? g->outputs[o] : g->values[g->states[o - g->n_outputs]].next;
    if (rv < 0) continue;
    int32_t root = g->values[rv].producer;
    if (root < 0 || state[root] == 2) continue;
    int32_t sp = 0;
    stack[sp++] = root;
    state[root] = 1;
    next_in[root] = 0;
    while (sp > 0) {
      int32_t node = stack[sp - 1];
      const vn_node *nd = &g->nodes[node];
      if (next_in[node] < nd->n_inputs) {
        int32_t v = nd->inputs[next_in[node]++];
        int32_t p = g->values[v].producer;
        if (p < 0 || state[p] == 2) continue;
        if (state[p] == 1) {
          snprintf(err, err_size, "cycle through node '%s'", g->values[nd->outputs[0]].name);
          status = VNRT_ERROR_INVALID_GRAPH;
          break;
        }
        state[p] = 1;
        next_in[p] = 0;
        stack[sp++] = p;
      } else {
        state[node] = 2;
        order[count++] = node;
        --sp;
      }
    }
  }
  vn_free(ctx, state);
  vn_free(ctx, stack);
  vn_free(ctx, next_in);
  if (status == VNRT_OK) *out_count = count;
  return status;
}

void vn_pass_liveness(const vnrt_graph *g, const int32_t *order, int32_t n, vn_live_range *ranges) {
  for (int32_t v = 0; v < g->n_values; ++v) {
    bool is_input = g->values[v].kind != VN_VALUE_NODE;
    ranges[v].first = is_input ? -1 : INT32_MIN;
    ranges[v].last = is_input ? -1 : INT32_MIN;
  }
  for (int32_t s = 0; s < n; ++s) {
    const vn_node *nd = &g->nodes[order[s]];
    for (int32_t i = 0; i < nd->n_inputs; ++i) {
      int32_t v = nd->inputs[i];
      if (ranges[v].last < s) ranges[v].last = s;
    }
    for (int32_t i = 0; i < nd->n_outputs; ++i) {
      ranges[nd->outputs[i]].first = s;
      if (ranges[nd->outputs[i]].last < s) ranges[nd->outputs[i]].last = s;
    }
  }
  for (int32_t o = 0; o < g->n_outputs; ++o) ranges[g->outputs[o]].last = n;
  for (int32_t i = 0; i < g->n_states; ++i) {
    int32_t next = g->values[g->states[i]].next;
    if (next >= 0) ranges[next].last = n; /* copied into the state after the run */
  }
}
