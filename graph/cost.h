/* The cost model (docs/ops.md, "Attribute limits and empty tensors"): an estimate of the work
 * one run of a node does, from its types and resolved params only. The plan compiler sums it
 * over the live nodes and refuses a plan over its limit (vnrt_plan_desc.max_work), so no graph
 * can make one run take unbounded time. Every quantity saturates at UINT64_MAX; nothing wraps. */
#ifndef VNRT_GRAPH_COST_H_
#define VNRT_GRAPH_COST_H_

#include "graph.h"

/* A node's estimate: arithmetic (flops, one per multiply or add, one per compare or transcendental
 * of the simpler ops) and elements moved (every element of its inputs and results; a gather
 * table counts only the rows one run can read). work = flops + elements. */
typedef struct vn_cost {
  uint64_t flops;
  uint64_t elements;
} vn_cost;

static inline uint64_t vn_sat_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}
static inline uint64_t vn_sat_mul(uint64_t a, uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

/* The element count of a type, saturating (negative dims count as 0). */
uint64_t vn_type_numel_sat(const vnrt_tensor_type *type);

/* The estimate of node nd of g (which inference has checked). */
vn_cost vn_node_cost(const vnrt_graph *g, const vn_node *nd);

static inline uint64_t vn_cost_work(vn_cost c) { return vn_sat_add(c.flops, c.elements); }

/* The built-in limit on the work of one run, and the environment variable that overrides it
 * when vnrt_plan_desc.max_work is 0. 1e17 operations: minutes for the largest accelerator,
 * far beyond every model and test vnrt ships. */
#define VN_DEFAULT_MAX_WORK 100000000000000000ull
#define VN_MAX_WORK_ENV "VNRT_MAX_RUN_WORK"

#endif /* VNRT_GRAPH_COST_H_ */
