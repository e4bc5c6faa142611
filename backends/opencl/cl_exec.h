/* Private to the OpenCL backend: a compiled graph (exec) as a list of steps per node, and the
 * builder the per-op lowering files (cl_ops_*.c) use to append kernel launches, run-time index
 * checks and GEMM calls at compile time. Running a plan only enqueues what was built here. */
#ifndef VNRT_BACKENDS_OPENCL_CL_EXEC_H_
#define VNRT_BACKENDS_OPENCL_CL_EXEC_H_

#include "cl_common.h"
#include "cl_gemm.h"

struct cl_step;

/* Formats the error of a failed index check; pos is the first bad position the check found. */
typedef vnrt_status (*cl_check_report_fn)(vnrt_backend_exec *exec, const struct cl_step *step,
                                          int32_t pos);

typedef enum cl_step_kind {
  CL_STEP_KERNEL, /* enqueue kernel over gws/lws */
  CL_STEP_CHECK,  /* read the error slot a check kernel wrote; on a bad index, report and stop */
  CL_STEP_GEMM,   /* a GEMM call (own kernel or clBLAST) */
} cl_step_kind;

typedef struct cl_step {
  cl_step_kind kind;
  int32_t node;
  cl_kernel kernel;
  const char *kernel_name;
  cl_uint dim;
  size_t gws[3], lws[3];
  int has_lws;
  /* CL_STEP_CHECK */
  int32_t err_slot;
  int deferred; /* read after the run by a synchronous run (its consumers are safe) */
  cl_check_report_fn report;
  int64_t info[6]; /* what the report needs: tensor indices and bounds */
  /* CL_STEP_GEMM */
  cl_gemm_call *gemm;
  uint64_t gemm_scratch; /* node-relative scratch offset of the call's conversions */
  int gemm_c_scratch;    /* the result goes to scratch at gemm_c_off (node-relative) */
  uint64_t gemm_c_off;
} cl_step;

/* A kernel argument bound once the exec's scratch and constant buffers exist. */
typedef enum cl_fixup_kind { CL_FIX_SCRATCH, CL_FIX_CONST, CL_FIX_ERR } cl_fixup_kind;
typedef struct cl_fixup {
  int32_t step;
  cl_uint arg;
  cl_fixup_kind kind;
  uint64_t offset; /* scratch: node-relative; const: absolute; err: unused (slots' base) */
} cl_fixup;

struct vnrt_backend_exec {
  vnrt_backend_device *dev;
  vnrt_backend_graph graph; /* the core's tables stay valid until exec_destroy */
  cl_step *steps;
  int32_t n_steps, cap_steps;
  int32_t *node_first; /* steps of node i: [node_first[i], node_first[i + 1]) */
  cl_fixup *fixups;
  int32_t n_fixups, cap_fixups;
  /* Scratch: [error slots][the largest node's scratch]; nodes run in order and share it. */
  cl_mem scratch;
  uint64_t scratch_capacity, scratch_node_bytes, scratch_err_bytes;
  int32_t n_err_slots;
  /* Small constant tables (rope frequencies, n-gram multipliers) uploaded once. */
  unsigned char *consts;
  uint64_t const_bytes, const_cap;
  cl_mem const_mem;
  uint64_t const_capacity;
  /* Timed runs only (cl_backend_run_timed): two events per step, allocated on the first. */
  cl_event *events;
  /* The error slots as read after a synchronous run with deferred checks (err_host_valid),
   * so their reports find a slot's value without another read. */
  int32_t *err_host;
  int err_host_valid;
};

/* What a lowering function sees of the node it lowers. */
typedef struct cl_lower {
  vnrt_backend_exec *exec;
  vnrt_backend_device *dev;
  const vnrt_backend_graph *graph;
  const vnrt_backend_node *node;
  int32_t node_index;
  uint64_t scratch_used; /* bytes of this node's scratch handed out so far */
} cl_lower;

static inline const vnrt_backend_tensor *cl_in(const cl_lower *L, int32_t i) {
  return &L->graph->tensors[L->node->inputs[i]];
}
static inline const vnrt_backend_tensor *cl_out(const cl_lower *L, int32_t i) {
  return &L->graph->tensors[L->node->outputs[i]];
}
static inline const vnrt_tensor_type *cl_in_type(const cl_lower *L, int32_t i) {
  return &cl_in(L, i)->type;
}
static inline const vnrt_tensor_type *cl_out_type(const cl_lower *L, int32_t i) {
  return &cl_out(L, i)->type;
}

/* Builds one kernel launch: begin, add arguments in the kernel's order, end. Errors are kept in
 * the builder (later calls do nothing) and returned by cl_launch_end, so call sites stay flat. */
typedef struct cl_launch {
  cl_lower *L;
  int32_t step;
  cl_uint arg;
  vnrt_status status;
} cl_launch;

void cl_launch_begin(cl_lower *L, const char *kernel, cl_launch *k);
/* Tensor arguments: (buffer, offset), and with _dt also (int dtype). */
void cl_arg_in(cl_launch *k, int32_t i);
void cl_arg_in_dt(cl_launch *k, int32_t i);
void cl_arg_out(cl_launch *k, int32_t i);
void cl_arg_out_dt(cl_launch *k, int32_t i);
/* Input i if the node has it, else a stand-in (the first output) the kernel never reads. */
void cl_arg_opt_in_dt(cl_launch *k, int32_t i);
void cl_arg_opt_in(cl_launch *k, int32_t i);
void cl_arg_i32(cl_launch *k, int32_t v);
void cl_arg_i64(cl_launch *k, int64_t v);
void cl_arg_f32(cl_launch *k, float v);
void cl_arg_long4(cl_launch *k, const int64_t v[4]);
void cl_arg_local(cl_launch *k, size_t bytes);
/* (buffer, offset) of this node's scratch at offset (from cl_scratch), a constant table (from
 * cl_const), or the base of the error slots (the kernel indexes slot itself; from cl_err_slot). */
void cl_arg_scratch(cl_launch *k, uint64_t offset);
void cl_arg_const(cl_launch *k, uint64_t offset);
void cl_arg_err(cl_launch *k, int32_t slot);
/* The largest power-of-two work-group size <= want the kernel and device allow. */
size_t cl_launch_wg(cl_launch *k, size_t want);
/* Finishes the launch: items[d] work-items are needed in dimension d; with lws they are rounded
 * up to multiples of it (kernels guard the excess), without it the driver picks. */
vnrt_status cl_launch_end(cl_launch *k, cl_uint dim, const size_t *items, const size_t *lws);

/* Reserves bytes of this node's scratch (256-byte aligned); returns its node-relative offset. */
uint64_t cl_scratch(cl_lower *L, uint64_t bytes);
/* Appends a constant table; returns its offset (256-byte aligned), or UINT64_MAX when out of
 * host memory. */
uint64_t cl_const(cl_lower *L, const void *data, uint64_t bytes);
/* A fresh error slot for a check kernel. */
int32_t cl_err_slot(cl_lower *L);
/* Appends the host side of a check: after the check kernel, read slot; on a bad position call
 * report (info is copied into the step for it). */
vnrt_status cl_add_check(cl_lower *L, int32_t slot, cl_check_report_fn report, const int64_t *info,
                         int n_info);
/* Like cl_add_check for a check whose consumers clamp or skip a bad index (or stay inside
 * their tensors whatever it is): a synchronous run reads it after its last kernel instead of
 * waiting for the device at this point (a run-time error may be reported when the run ends,
 * backend.h). A report that needs the bad index's value takes it from check_index_val (slot
 * and slot + 1 from two cl_err_slot calls) by cl_check_value: by then the index tensor's
 * memory may hold a later node's result. */
vnrt_status cl_add_deferred_check(cl_lower *L, int32_t slot, cl_check_report_fn report,
                                  const int64_t *info, int n_info);
/* Value j (>= 1) a check's kernel stored after its slot (the bad index: j = 1). */
vnrt_status cl_check_value(vnrt_backend_exec *exec, const struct cl_step *st, int32_t j,
                           int32_t *out);
/* Appends a GEMM call (taken over by the exec) needing scratch_bytes of node scratch. With
 * c_in_scratch its result goes to this node's scratch at c_off (call->c is set later). */
vnrt_status cl_add_gemm(cl_lower *L, cl_gemm_call *call, uint64_t scratch_bytes, int c_in_scratch,
                        uint64_t c_off);

/* Reads one i32 of graph tensor t at element i (for error messages after a failed check). */
vnrt_status cl_read_i32(vnrt_backend_exec *exec, int32_t t, int64_t i, int32_t *out);

/* Dtype helpers. */
static inline int cl_is_float(vnrt_dtype dt) {
  return dt == VNRT_F32 || dt == VNRT_F16 || dt == VNRT_BF16;
}

/* Rounds n up to a multiple of m. */
static inline size_t cl_round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

#endif /* VNRT_BACKENDS_OPENCL_CL_EXEC_H_ */
