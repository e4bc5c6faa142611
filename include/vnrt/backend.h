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
 * node array's stride, so this core accepts 2 only (docs/backends.md). */
#define VNRT_BACKEND_API_VERSION 2
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
} vnrt_backend_graph;

typedef struct vnrt_backend_i {
  size_t struct_size;   /* sizeof(vnrt_backend_i) as the backend was built */
  uint32_t api_version; /* VNRT_BACKEND_API_VERSION as the backend was built */
  const char *name;     /* short lowercase name used in device specs: "vulkan" */

  /* Backend lifetime. init may find zero devices and still succeed. */
  vnrt_status (*init)(const vnrt_backend_host *host, void **out_state);
  void (*shutdown)(void *state);

  /* Devices. */
  uint32_t (*device_count)(void *state);
  vnrt_status (*device_info)(void *state, uint32_t index, vnrt_device_info *out_info);
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
   * node to the CPU fallback (or fails compilation when fallback is off). */
  int (*supports_node)(vnrt_backend_device *device, const vnrt_backend_graph *graph, int32_t node);
  /* Compiles all nodes of graph (every tensor has its buffer) into an exec: pipelines,
   * kernels, pre-recorded command buffers. graph stays valid until exec_destroy. */
  vnrt_status (*compile)(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                         vnrt_backend_exec **out_exec);
  /* Runs nodes [first, first + count) of the compiled graph and waits for them. A run-time
   * error (index out of range) returns its status through host->error. */
  vnrt_status (*run)(vnrt_backend_exec *exec, int32_t first, int32_t count);
  void (*exec_destroy)(vnrt_backend_exec *exec);

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
} vnrt_backend_i;

/* The entry point a plugin exports as VNRT_BACKEND_ENTRY_SYMBOL. It receives the core's
 * VNRT_BACKEND_API_VERSION and returns its table (static storage), or NULL to decline. */
typedef const vnrt_backend_i *(*vnrt_backend_entry_fn)(uint32_t core_api_version);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_BACKEND_H_ */
