/* Private to the runtime: bring-up instrumentation of a plan (vnrt/inspect.h) — per-node
 * timing (plan_inspect.c) and shadow comparison with the CPU reference kernels
 * (plan_shadow.c). The run loop (plan_run.c) calls the hooks around each node. */
#ifndef VNRT_RUNTIME_PLAN_INSPECT_H_
#define VNRT_RUNTIME_PLAN_INSPECT_H_

#include "plan.h"
#include "vnrt/inspect.h"

#define VN_PROFILE_ENV "VNRT_PROFILE"
#define VN_SHADOW_ENV "VNRT_SHADOW"
#define VN_SHADOW_DIR_ENV "VNRT_SHADOW_DIR"

/* Per step: times, and the shadow comparison with the node's one-node reference plan. */
typedef struct vn_node_stat {
  uint64_t runs, last_ns, total_ns;
  vnrt_node_clock clock; /* what timed last_ns */
  bool checked, failed;
  double error;
  double tol; /* the bound error was held to (vnrt_result_tolerance of its output) */
  char note[192];
  vnrt_graph *ref_graph; /* the node alone: inputs in0.., outputs out0.. (built on first use) */
  vnrt_plan *ref;        /* ref_graph on the CPU's reference kernels */
  bool ref_tried;        /* building them was tried (ref NULL: it failed, note says why) */
} vn_node_stat;

struct vn_inspect {
  bool profile, shadow;
  char *shadow_dir;                                            /* owned; NULL: nothing saved */
  vn_node_stat *node;                                          /* per step */
  void *in[VNRT_MAX_NODE_INPUTS], *out[VNRT_MAX_NODE_OUTPUTS]; /* this node's host copies */
  vnrt_shadow_report report;
  bool saved; /* a failure was saved already (once per plan) */
  /* Device timing (vnrt_backend_i.run_timed): per step, the time the device last reported;
   * per device slot, whether its backend times nodes itself (cleared when it declines). */
  uint64_t *dev_ns;
  bool timer[VN_PLAN_MAX_DEVICES];
};

/* Sets p->inspect from desc and the environment (NULL when neither profiling nor shadow mode
 * is on) and frees it. */
vnrt_status vn_inspect_create(vnrt_plan *p, const vnrt_plan_desc *desc);
void vn_inspect_destroy(vnrt_plan *p);

/* Run hooks: at the start and end of a run, and around the node at step s (device slot d). */
void vn_inspect_begin_run(vnrt_plan *p);
void vn_inspect_end_run(vnrt_plan *p);
vnrt_status vn_inspect_before(vnrt_plan *p, int32_t s);
vnrt_status vn_inspect_after(vnrt_plan *p, int32_t s, uint64_t ns);

/* Runs steps [s, e) of partition part (device slot d, its nodes from exec node `first`) with
 * the device timing each node, and records the times. Returns VNRT_ERROR_UNSUPPORTED, having
 * run nothing, when the device cannot: the caller runs them node by node on the host clock.
 * Only for profiled plans without shadow mode, whose device has a timer
 * (vn_inspect_device_timed). */
vnrt_status vn_inspect_run_timed(vnrt_plan *p, int32_t d, int32_t first, int32_t s, int32_t e);
bool vn_inspect_device_timed(const vnrt_plan *p, int32_t d);

/* Shadow mode (plan_shadow.c). */
vnrt_status vn_shadow_before(vnrt_plan *p, int32_t s);
vnrt_status vn_shadow_after(vnrt_plan *p, int32_t s);
void vn_shadow_free_node(vnrt_plan *p, vn_node_stat *ns);

/* "name (op in0type, in1type -> out0type)" of step s, cut to fit buf. */
const char *vn_inspect_node_str(const vnrt_plan *p, int32_t s, char *buf, size_t size);

#endif /* VNRT_RUNTIME_PLAN_INSPECT_H_ */
