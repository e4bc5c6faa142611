/* Graph passes the compiler runs: topological order (dead nodes dropped) and liveness. */
#ifndef VNRT_GRAPH_PASSES_H_
#define VNRT_GRAPH_PASSES_H_

#include "graph.h"

/* Writes into order (capacity graph->n_nodes) the nodes that the graph's outputs and state
 * updates depend on,
 * each after all of its producers; ties keep insertion order. Fails on a cycle (which the
 * builder cannot create, but a corrupted graph could) with a message naming a node on it. */
vnrt_status vn_pass_topo_order(const vnrt_graph *graph, int32_t *order, int32_t *out_count,
                               char *err, size_t err_size);

/* A value's live range in steps of an order: defined at step first (-1 for inputs, params
 * and states) and read last at step last; graph outputs and state updates stay live to step n
 * (the end). A value that is never read and not an output has last == first. Values untouched
 * by the order get first == last == INT32_MIN. */
typedef struct vn_live_range {
  int32_t first, last;
} vn_live_range;

void vn_pass_liveness(const vnrt_graph *graph, const int32_t *order, int32_t n,
                      vn_live_range *ranges /* graph->n_values */);

#endif /* VNRT_GRAPH_PASSES_H_ */
