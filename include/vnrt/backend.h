/* The backend interface: the one table of functions a vnrt backend implements.
 *
 * Built-in backends (cpu, vulkan, opencl) and vendor plugins implement the same table. A
 * plugin is a shared library exporting VNRT_BACKEND_ENTRY_SYMBOL (see vnrt_backend_entry_fn),
 * found in $VNRT_PLUGIN_PATH and the installed plugin directory; backends/template/ is a
 * compiling skeleton to copy. This header is installed: plugins need nothing private.
 *
 * Ownership: the core owns graphs and tensor tables it passes in (borrowed for the duration of
 * the call unless said otherwise); a backend owns its devices, buffers and execs, and frees
 * them in the matching *_close / *_free / *_destroy slot. Slots marked optional may be NULL.
 *
 * Rules every backend follows (docs/backends.md, "The contract"):
 * - Threading: `init` runs once per context, and contexts may be created from several threads
 *   at once, so init (and everything it reaches) must not keep unguarded process-wide state;
 *   each state, device, buffer and exec is used by one thread at a time, except buffer_write /
 *   buffer_read during `run` (see there).
 * - Aliasing: within a graph, an output never shares memory with an input of the same node, with
 *   one exception: kv_write and kv_scatter whose output 0 is the in-place update of a state
 *   (the executor gives output 0 and input 0 the same buffer and offset), and those kernels
 *   write only the rows they update; on a device with VNRT_CAP_STATE_INPLACE also kv_compress's
 *   outputs 2 and 3 (state_a', state_z') with its inputs 3 and 4; on a device with
 *   VNRT_CAP_RESHAPE_VIEW also reshape's output with its input (the reshape then does nothing).
 *   Tensors of different nodes may share arena memory when their lifetimes do not overlap.
 * - Reference mode: graph->kernels is the caller's vnrt_plan_desc.kernels, and the core does
 *   nothing else with it (it does not move nodes to the CPU). Under VNRT_KERNELS_REFERENCE a
 *   backend's supports_node and compile use its plainest kernel of each op (the cpu backend:
 *   the reference kernels of docs/ops.md): no tuned, fused or approximate variant; an op that
 *   only has such a variant is refused in supports_node, so it runs on the CPU reference.
 * - Unknown attributes: supports_node returns 0 for a node it cannot run exactly as typed: an op,
 *   dtype, parameter value (vnrt/op_params.h) or attribute (node->attrs) it does not know is
 *   refused, never ignored. Newer cores may add parameters; an older backend must not guess.
 * - Growth: every struct here is laid out as the backend's api_version defined it. The core
 *   serves a backend built against an older supported version in that version's layout, and
 *   backends index node and tensor arrays through vnrt_backend_graph_node / _tensor (strides).
 */
#ifndef VNRT_BACKEND_H_
#define VNRT_BACKEND_H_

#include <stdarg.h>

#include "vnrt/op_params.h"
#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface. A backend reports the version it was built against; the core
 * accepts a version it knows whose struct_size is at least the size that version defined.
 * Slots are only ever appended. Version 2 added vnrt_backend_node.params, which changed the
 * node array's stride: version 1 is refused. Version 3 added vnrt_backend_i.maturity,
 * vnrt_backend_graph's struct_size and strides, and vnrt_backend_device_info (the layout of
 * version 2's vnrt_device_info); this core serves versions 2 and 3 (docs/backends.md). */
#define VNRT_BACKEND_API_VERSION 3
#define VNRT_BACKEND_API_VERSION_MIN 2 /* the oldest version this core still serves */
#define VNRT_BACKEND_ENTRY_SYMBOL "vnrt_backend_entry_v1"

#define VNRT_MAX_NODE_INPUTS 8
#define VNRT_MAX_NODE_OUTPUTS 4

typedef struct vnrt_backend_device vnrt_backend_device;     /* defined by each backend */
typedef struct vnrt_backend_buffer vnrt_backend_buffer;     /* defined by each backend */
typedef struct vnrt_backend_exec vnrt_backend_exec;         /* defined by each backend */
typedef struct vnrt_backend_timeline vnrt_backend_timeline; /* defined by each backend */

/* What an asynchronous operation waits for before it starts and signals once it is done (the
 * optional async slots below): a NULL timeline means nothing to wait for / nothing to signal. */
typedef struct vnrt_backend_sync {
  vnrt_backend_timeline *wait;
  uint64_t wait_value;
  vnrt_backend_timeline *signal;
  uint64_t signal_value;
} vnrt_backend_sync;

/* What a backend reports about one of its devices (device_info). The core clears it, then
 * overwrites backend, spec and index itself; vnrt_device_info is the public view of it. */
typedef struct vnrt_backend_device_info {
  char backend[16]; /* ignored: the core sets it */
  char name[128];   /* e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" */
  char driver[128]; /* driver/version string, may be empty */
  char spec[32];    /* ignored: the core sets it */
  vnrt_device_type type;
  uint32_t index;            /* ignored: the core sets it */
  uint64_t memory_bytes;     /* device-local memory (host RAM for the CPU) */
  uint64_t max_buffer_bytes; /* the largest single buffer */
  uint32_t caps;             /* VNRT_CAP_* bits */
  uint32_t compute_units;
  uint32_t subgroup_size; /* 0 if unknown */
  uint32_t max_workgroup_size;
  uint64_t shared_memory_bytes;
} vnrt_backend_device_info;

/* How far a port has come. An experimental backend's devices are listed and can be chosen by
 * spec ("mydev:0", $VNRT_DEVICE), but "auto" never picks one while a stable device exists. */
typedef enum vnrt_backend_maturity {
  VNRT_BACKEND_EXPERIMENTAL = 0, /* the default, and what API 2 backends are taken to be */
  VNRT_BACKEND_STABLE = 1,       /* passes vnrt-validate and the conformance suite */
} vnrt_backend_maturity;

/* Services the core offers a backend. Valid from init until shutdown. */
typedef struct vnrt_backend_host {
  size_t struct_size;
  void *core; /* pass back as the first argument of every function below */
  /* Logs a printf-style message through the context's log callback. */
  void (*log)(void *core, vnrt_log_level level, const char *fmt, ...);
  /* Records the detail message of a failure and returns status, so a backend writes
   * `return host->error(host->core, VNRT_ERROR_DEVICE, "vkCreateBuffer: %d", r);` */
  vnrt_status (*error)(void *core, vnrt_status status, const char *fmt, ...);
  /* The context's host allocator. */
  void *(*alloc)(void *core, size_t size);
  void (*free)(void *core, void *ptr);
  int32_t num_threads; /* CPU worker threads the context asks for (>= 1) */
  /* The value of a context option ("cpu_isa", "cache_dir"...: docs/api.md, "Options"), set by
   * the context desc or defaulting to its environment variable; NULL if unset or unknown. A
   * backend reads its settings here, never with getenv. Valid until the next call. Absent
   * (struct_size smaller) in cores older than this slot: vnrt_host_option checks. */
  const char *(*option)(void *core, const char *key);
} vnrt_backend_host;

/* A tensor of a graph as a backend sees it. */
typedef struct vnrt_backend_tensor {
  vnrt_tensor_type type;
  const char *name;
  vnrt_backend_buffer *buffer; /* where it lives on this device; NULL in supports_node */
  uint64_t offset;             /* byte offset in buffer; a multiple of 256 */
} vnrt_backend_tensor;

/* A node: op, tensors by index into vnrt_backend_graph.tensors, and its parameters. A backend
 * reads the op's typed parameters (vnrt/op_params.h: defaults and shape-derived values already
 * resolved); attrs is the node's attribute list as written, for messages and tools only. */
typedef struct vnrt_backend_node {
  vnrt_op op;
  const char *name; /* the first result's name, for messages */
  int32_t n_inputs; /* optional trailing inputs that were left off are not counted */
  int32_t inputs[VNRT_MAX_NODE_INPUTS];
  int32_t n_outputs;
  int32_t outputs[VNRT_MAX_NODE_OUTPUTS];
  int32_t n_attrs;
  const vnrt_attr *attrs;       /* for messages; kernels read params */
  const vnrt_op_params *params; /* never NULL; zero for ops without parameters (API 2) */
} vnrt_backend_node;

/* The part of a plan one device runs: its tensor table and nodes in execution order. */
typedef struct vnrt_backend_graph {
  int32_t n_tensors;
  const vnrt_backend_tensor *tensors;
  int32_t n_nodes;
  const vnrt_backend_node *nodes;
  vnrt_kernel_mode kernels;
  /* API 3: sizeof(vnrt_backend_graph) and the byte distance between consecutive elements of
   * tensors and nodes, as the core built them; read elements through the accessors below. */
  size_t struct_size;
  size_t tensor_stride;
  size_t node_stride;
} vnrt_backend_graph;

/* Element i of graph's tensor and node arrays, by the core's strides. */
static inline const vnrt_backend_tensor *vnrt_backend_graph_tensor(const vnrt_backend_graph *graph,
                                                                   int32_t i) {
  return (const vnrt_backend_tensor *)(const void *)((const char *)graph->tensors +
                                                     (size_t)i * graph->tensor_stride);
}
static inline const vnrt_backend_node *vnrt_backend_graph_node(const vnrt_backend_graph *graph,
                                                               int32_t i) {
  return (const vnrt_backend_node *)(const void *)((const char *)graph->nodes +
                                                   (size_t)i * graph->node_stride);
}

typedef struct vnrt_backend_i {
  size_t struct_size;   /* sizeof(vnrt_backend_i) as the backend was built */
  uint32_t api_version; /* VNRT_BACKEND_API_VERSION as the backend was built */
  const char *name;     /* short lowercase name used in device specs: "vulkan" */

  /* Backend lifetime. init may find zero devices and still succeed. */
  vnrt_status (*init)(const vnrt_backend_host *host, void **out_state);
  void (*shutdown)(void *state);

  /* Devices. */
  uint32_t (*device_count)(void *state);
  vnrt_status (*device_info)(void *state, uint32_t index, vnrt_backend_device_info *out_info);
  vnrt_status (*device_open)(void *state, uint32_t index, vnrt_backend_device **out_device);
  void (*device_close)(vnrt_backend_device *device);

  /* Buffers: device memory of `bytes` bytes, contents undefined. */
  vnrt_status (*buffer_alloc)(vnrt_backend_device *device, uint64_t bytes,
                              vnrt_backend_buffer **out_buffer);
  void (*buffer_free)(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
  /* Optional: the host address of a host-visible buffer (zero-copy), else NULL. */
  void *(*buffer_host_ptr)(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
  /* Synchronous copies between host memory and a buffer. The executor's copy stream (DualPath,
   * docs/executor.md) calls buffer_write from its own thread while `run` executes on another
   * thread, on different byte ranges: a backend must allow that (e.g. lock its queue). */
  vnrt_status (*buffer_write)(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                              uint64_t offset, const void *src, uint64_t bytes);
  vnrt_status (*buffer_read)(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                             uint64_t offset, void *dst, uint64_t bytes);

  /* Whether the device runs graph->nodes[node] as typed. Must not fail; returning 0 sends the
   * node to the CPU fallback (or fails compilation when fallback is off). Returns 0 for any op,
   * dtype, parameter or attribute it does not know (the unknown-attribute rule above). */
  int (*supports_node)(vnrt_backend_device *device, const vnrt_backend_graph *graph, int32_t node);
  /* Compiles all nodes of graph (every tensor has its buffer) into an exec: pipelines,
   * kernels, pre-recorded command buffers. graph stays valid until exec_destroy. */
  vnrt_status (*compile)(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                         vnrt_backend_exec **out_exec);
  /* Runs nodes [first, first + count) of the compiled graph and waits for them. A run-time
   * error (index out of range) returns its status through host->error. */
  vnrt_status (*run)(vnrt_backend_exec *exec, int32_t first, int32_t count);
  void (*exec_destroy)(vnrt_backend_exec *exec);

  /* API 3. Whether "auto" may choose this backend's devices (vnrt_backend_maturity). */
  vnrt_backend_maturity maturity;

  /* ---- Optional, API 3: asynchronous copies and runs. NULL = not provided. ----------------
   * The executor's DualPath (docs/executor.md) uses these when a backend provides all eight
   * and timeline_create succeeds on the device; otherwise (or when timeline_create returns
   * VNRT_ERROR_UNSUPPORTED, e.g. on a device whose buffers the host writes in place) it keeps
   * its host thread calling buffer_write. backends/template/ shows a synchronous version.
   *
   * A timeline is a device object holding a 64-bit value that starts at 0 and only grows, like
   * a Vulkan timeline semaphore. A value is reached once the operation that signals it, or one
   * that signals a larger value, has finished (or the host signalled it). Rules the caller
   * keeps, so a backend can map a timeline onto in-order queues and events:
   * - signals on one timeline are queued in increasing value order, from one thread at a time;
   * - an operation waits only for a value whose signal is already queued (or reached): no
   *   wait-before-signal, so a call that blocks (e.g. on free staging memory) never deadlocks;
   * - a write or read queued through these slots uses host memory (src, dst) until its signal
   *   value is reached: the caller keeps it valid and unchanged until then, and does not touch
   *   the buffer bytes involved with other calls meanwhile;
   * - copies (write_async, read_async) run in the order queued, as one copy stream; runs
   *   (run_async) in the order queued, as one compute stream; between the two streams there is
   *   no order but the timelines'. Synchronous slots (buffer_write, run, ...) still see every
   *   earlier synchronous call's effect; the caller waits for async work before mixing them on
   *   the same bytes.
   * Any of these calls may block (for staging memory, a device-side check) and still be
   * correct; an asynchronous slot implemented synchronously (wait, do, signal) is valid.
   * Destroying a timeline, or the buffers or exec involved, with work pending is the caller's
   * error: it waits for the last signalled values first. */
  vnrt_status (*timeline_create)(vnrt_backend_device *device, vnrt_backend_timeline **out_timeline);
  void (*timeline_destroy)(vnrt_backend_device *device, vnrt_backend_timeline *timeline);
  /* The value reached now (never blocks). */
  vnrt_status (*timeline_query)(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                                uint64_t *out_value);
  /* Blocks until value is reached; VNRT_ERROR_DEVICE when timeout_ns passes first. */
  vnrt_status (*timeline_wait)(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                               uint64_t value, uint64_t timeout_ns);
  /* Sets the value from the host (greater than every value signalled or queued before). */
  vnrt_status (*timeline_signal)(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                                 uint64_t value);
  /* Queues a copy of bytes from src into buffer at offset on the device's copy stream: it starts
   * once sync->wait reaches sync->wait_value and signals sync->signal_value when the data is in
   * the buffer. Returns once queued (or done). */
  vnrt_status (*buffer_write_async)(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                    uint64_t offset, const void *src, uint64_t bytes,
                                    const vnrt_backend_sync *sync);
  /* The same from the buffer into dst: dst holds the data once the signal value is reached. */
  vnrt_status (*buffer_read_async)(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                   uint64_t offset, void *dst, uint64_t bytes,
                                   const vnrt_backend_sync *sync);
  /* Queues nodes [first, first + count) like run, without waiting for them: they start once
   * the wait value is reached and signal when done. A run-time error the device finds (an index
   * out of range) is returned by the next synchronous `run` of this exec — the executor calls
   * run(exec, 0, 0) after waiting for its last signal — or by this call when it had to block. */
  vnrt_status (*run_async)(vnrt_backend_exec *exec, int32_t first, int32_t count,
                           const vnrt_backend_sync *sync);

  /* ---- Optional, API 3: device timing. NULL = not provided. ----------------------------
   * Runs nodes [first, first + count) like run, waits for them, and writes out_ns[i], the
   * device's execution time of node first + i in nanoseconds, measured by the device itself:
   * timestamp queries around each node's dispatches (Vulkan), profiling events of its kernels
   * summed (OpenCL), the clock around its kernel (the CPU). A node with no device work gets 0.
   * Profiled plans (vnrt/inspect.h) call it instead of submitting one node at a time with the
   * host clock around each; ordinary runs never do, so a backend keeps its timing setup (query
   * pools, instrumented command buffers) apart from them. A device without a usable timer
   * returns VNRT_ERROR_UNSUPPORTED having run nothing, and the core times it with the host
   * clock. Errors as in run. */
  vnrt_status (*run_timed)(vnrt_backend_exec *exec, int32_t first, int32_t count, uint64_t *out_ns);
} vnrt_backend_i;

/* The entry point a plugin exports as VNRT_BACKEND_ENTRY_SYMBOL. It receives the core's
 * VNRT_BACKEND_API_VERSION and returns its table (static storage), or NULL to decline. */
typedef const vnrt_backend_i *(*vnrt_backend_entry_fn)(uint32_t core_api_version);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_BACKEND_H_ */
