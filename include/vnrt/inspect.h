/* vnrt/inspect.h: bring-up of a device or a model — where every node of a plan runs, how long
 * each takes, and how each compares with the CPU reference kernels given the same inputs
 * (shadow mode). docs/porting.md walks a port through them.
 *
 * Profiling and shadow mode are switched on per plan (vnrt_plan_desc.profile_nodes and
 * .shadow, or $VNRT_PROFILE=1 and $VNRT_SHADOW=cpu for plans whose desc leaves them 0). Either
 * makes the executor wait for every node (or run of nodes), so a profiled run is slower than a
 * plain one. A profiled node's time is the device's own where its backend measures it
 * (timestamp queries on Vulkan, profiling events on OpenCL, the clock around the kernel on the
 * CPU: vnrt_backend_i.run_timed), else the host clock around the node's own submit-and-wait;
 * vnrt_node_info.clock says which. Shadow mode always runs one node at a time, host clock.
 */
#ifndef VNRT_INSPECT_H_
#define VNRT_INSPECT_H_

#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The NMSE bound within which a device's result of op must agree with the CPU reference
 * kernels given the same inputs (docs/ops.md, "Agreement between backends"; vnrt-validate and
 * shadow mode use it, widened for 16-bit results by vnrt_result_tolerance): 1e-6 for ops that sum
 * long products (matmul, linear, attention, moe_ffn...), 1e-7 for the others. Integer results must
 * match exactly whatever the op. */
VNRT_API double vnrt_op_tolerance(vnrt_op op);
/* The bound for one result of op stored as dtype: vnrt_op_tolerance(op) for f32; for f16 and
 * bf16 results of ops that compute tol + sqrt(tol)·u (u = 2^-10 for f16, 2^-7 for bf16, the
 * largest relative step of a normal value), since two results that agree to tol before their
 * final rounding differ after it by one step in a share of at most about sqrt(tol)/u of the
 * elements (docs/ops.md, "Agreement between backends"); tol unwidened for ops that only move
 * or convert values (cast, reshape, slice, kv_write, ...); 0 (exact) for integer and
 * quantized dtypes. */
VNRT_API double vnrt_result_tolerance(vnrt_op op, vnrt_dtype dtype);

#define VNRT_NODE_MAX_INPUTS 8
#define VNRT_NODE_MAX_OUTPUTS 4

/* What timed a profiled node (vnrt_node_info.clock). */
typedef enum vnrt_node_clock {
  VNRT_NODE_CLOCK_NONE = 0,   /* not timed (the plan is not profiled) */
  VNRT_NODE_CLOCK_HOST = 1,   /* the host clock around the node's own submit-and-wait */
  VNRT_NODE_CLOCK_DEVICE = 2, /* the device's timer: its execution time alone */
} vnrt_node_clock;

/* "none", "host" or "device"; "?" for other values. */
VNRT_API const char *vnrt_node_clock_name(vnrt_node_clock clock);

/* One node of a plan: placement, time and shadow comparison. */
typedef struct vnrt_node_info {
  size_t struct_size; /* sizeof(vnrt_node_info) as the caller was built (docs/api.md) */
  int32_t step;       /* position in the plan's execution order */
  vnrt_op op;
  const char *name; /* its first result's name; valid while the plan lives */
  int32_t n_inputs, n_outputs;
  vnrt_tensor_type inputs[VNRT_NODE_MAX_INPUTS];
  vnrt_tensor_type outputs[VNRT_NODE_MAX_OUTPUTS];
  char device[32];   /* the spec of the device that runs it: "vulkan:0", "cpu" */
  int32_t partition; /* the run of consecutive nodes on one device it belongs to */
  int fallback;      /* nonzero: the target cannot run it, the CPU does */
  /* Profiling: */
  uint64_t runs;     /* profiled runs so far */
  uint64_t last_ns;  /* its time in the last profiled run */
  uint64_t total_ns; /* summed over the profiled runs */
  /* Shadow mode, for the last run: */
  int shadow_checked;    /* nonzero: compared with the CPU reference kernel */
  int shadow_failed;     /* nonzero: shadow_error is over tolerance */
  double shadow_error;   /* the worst NMSE of its outputs; INFINITY for integers, shapes or
                            non-finite values that differ */
  double tolerance;      /* the bound shadow_error was held to: vnrt_result_tolerance of
                            the output it came from (vnrt_op_tolerance(op) before a run) */
  char shadow_note[192]; /* what differs most, or why it was not checked */
  vnrt_node_clock clock; /* what timed last_ns */
} vnrt_node_info;

/* The nodes a run executes (vnrt_plan_info.n_nodes), and one of them by step. */
VNRT_API int32_t vnrt_plan_node_count(const vnrt_plan *plan);
VNRT_API vnrt_status vnrt_plan_get_node(const vnrt_plan *plan, int32_t step,
                                        vnrt_node_info *out_info);

/* What shadow mode found in the last run. */
typedef struct vnrt_shadow_report {
  size_t struct_size;   /* sizeof(vnrt_shadow_report) as the caller was built */
  int enabled;          /* nonzero: the plan shadows its nodes */
  int32_t n_checked;    /* nodes compared */
  int32_t n_failed;     /* nodes out of tolerance */
  int32_t n_unchecked;  /* nodes that could not be compared (the note says why) */
  int32_t first_failed; /* the step of the first node out of tolerance, or -1 */
  /* Where that node's one-node graph (.vnir) and inputs (.npy) were saved for a replay with
   * vnrt-run, "" when no directory was given (vnrt_plan_desc.shadow_dir, $VNRT_SHADOW_DIR). */
  char saved[512];
} vnrt_shadow_report;

VNRT_API vnrt_status vnrt_plan_get_shadow_report(const vnrt_plan *plan,
                                                 vnrt_shadow_report *out_report);

/* What vnrt_plan_print_profile prints. */
enum {
  VNRT_PROFILE_NODES = 1u << 0, /* one line per node: op, shapes, device, partition, time */
  VNRT_PROFILE_OPS = 1u << 1,   /* per op: nodes, total time, share, like a profiler's table */
};

/* The plan's nodes and per-op summary as text (times of the last profiled run; without
 * profiling only placement), into a new NUL-terminated string freed with vnrt_free. */
VNRT_API vnrt_status vnrt_plan_print_profile(const vnrt_plan *plan, uint32_t what, char **out_text);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_INSPECT_H_ */
