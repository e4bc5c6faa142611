/* vnrt: the public C API of the portable, vendor-neutral compute runtime.
 *
 * Conventions (see docs/api.md):
 * - Every fallible call returns a vnrt_status; VNRT_OK is 0. When a call on a context fails,
 *   vnrt_context_last_error() returns a message with the details (node, shapes, limit).
 * - Results come back through out_* parameters, which are set to NULL/zero on entry.
 * - Description structs are zero-initialised for defaults: `vnrt_context_desc d = {0};`.
 * - Every desc, info and stats struct starts with `size_t struct_size`: the sizeof the caller
 *   was built with, or 0 for the first release's size (VNRT_1). The library touches only that
 *   prefix, so structs grow at their end without breaking older callers; a size no version had
 *   fails with VNRT_ERROR_INVALID_ARGUMENT (docs/api.md, "ABI and growth").
 * - The library never aborts, exits or prints on its own; it logs through the context's
 *   log callback only (default: nothing; the "log" option can send it to stderr).
 * - Handles are not thread-safe: use one context per thread, or serialise calls yourself.
 *   Independent contexts may be created, used and destroyed on different threads at once
 *   (docs/api.md, "Threads": driver start-up is serialised process-wide).
 */
#ifndef VNRT_VNRT_H_
#define VNRT_VNRT_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(VNRT_BUILDING_LIBRARY)
#define VNRT_API __declspec(dllexport)
#elif defined(__GNUC__)
#define VNRT_API __attribute__((visibility("default")))
#else
#define VNRT_API
#endif

/* ---- Version --------------------------------------------------------------------------- */
#define VNRT_VERSION_MAJOR 0
#define VNRT_VERSION_MINOR 1
#define VNRT_VERSION_PATCH 0

/* Library version as "MAJOR.MINOR.PATCH"; out-params may be NULL. */
VNRT_API const char *vnrt_version(int *out_major, int *out_minor, int *out_patch);

/* ---- Status ---------------------------------------------------------------------------- */
typedef enum vnrt_status {
  VNRT_OK = 0,
  VNRT_ERROR_INVALID_ARGUMENT = 1, /* a NULL handle, bad enum, bad attribute... */
  VNRT_ERROR_INVALID_GRAPH = 2,    /* the verifier rejected a graph or vnir text */
  VNRT_ERROR_SHAPE_MISMATCH = 3,   /* shapes or dtypes of a binding or op disagree */
  VNRT_ERROR_NOT_FOUND = 4,        /* no such name, device, file or tensor */
  VNRT_ERROR_UNSUPPORTED = 5,      /* a device cannot run an op/dtype and fallback is off */
  VNRT_ERROR_OUT_OF_MEMORY = 6,    /* host or device allocation failed */
  VNRT_ERROR_BUDGET_EXCEEDED = 7,  /* a device memory or work budget would be exceeded */
  VNRT_ERROR_OUT_OF_RANGE = 8,     /* a run-time index (token, expert, row) out of its bound */
  VNRT_ERROR_IO = 9,               /* a file could not be read, or is truncated or corrupt */
  VNRT_ERROR_DEVICE = 10,          /* the device or driver failed (device lost, build error) */
  VNRT_ERROR_INTERNAL = 11,        /* a bug in vnrt: please report it */
} vnrt_status;

/* A static name for a status, e.g. "VNRT_ERROR_SHAPE_MISMATCH". Never NULL. */
VNRT_API const char *vnrt_status_string(vnrt_status status);

/* ---- Context --------------------------------------------------------------------------- */
typedef struct vnrt_context vnrt_context;

typedef enum vnrt_log_level {
  VNRT_LOG_DEBUG = 0,
  VNRT_LOG_INFO = 1,
  VNRT_LOG_WARN = 2,
  VNRT_LOG_ERROR = 3,
} vnrt_log_level;

typedef void (*vnrt_log_fn)(void *user, vnrt_log_level level, const char *message);

/* Host allocator; all three functions or none. realloc is used for growing tables. */
typedef struct vnrt_allocator {
  void *(*malloc_fn)(void *user, size_t size);
  void *(*realloc_fn)(void *user, void *ptr, size_t size);
  void (*free_fn)(void *user, void *ptr);
  void *user;
} vnrt_allocator;

typedef struct vnrt_context_desc {
  size_t struct_size;       /* sizeof(vnrt_context_desc), or 0 (see the top of this file) */
  vnrt_allocator allocator; /* zero: the C library's malloc/realloc/free */
  vnrt_log_fn log_fn;       /* NULL: messages are dropped (option log=stderr: to stderr) */
  void *log_user;
  vnrt_log_level log_level; /* messages below this level are dropped; 0 = VNRT_LOG_DEBUG is
                               promoted to VNRT_LOG_WARN unless log_fn is set */
  const char *plugin_path;  /* ':'-separated plugin directories searched first, then
                               $VNRT_PLUGIN_PATH, then the installed plugin directory */
  int no_plugins;           /* nonzero: load no plugins at all */
  int num_threads;          /* CPU worker threads; 0: all online cores */
  /* Which backends to start, comma-separated ("cpu,vulkan"); NULL or "": every built-in one
   * and the plugins. The CPU backend always starts (it runs the fallback); naming a backend
   * that is neither built in nor a plugin fails with VNRT_ERROR_NOT_FOUND naming it. */
  const char *backends;
  /* Options as "key=value" pairs separated by ';' or newlines ("cache_dir=none;cpu_isa=generic"),
   * overriding the fields below and the environment (docs/api.md, "Options": every key, its
   * environment variable and default). An unknown key or a bad value fails with
   * VNRT_ERROR_INVALID_ARGUMENT naming it. NULL: none. */
  const char *options;
  const char *cache_dir;        /* kernel caches; NULL: $VNRT_CACHE_DIR, else $XDG_CACHE_HOME/vnrt
                                   or $HOME/.cache/vnrt; "none": no disk cache at all */
  uint64_t device_memory_limit; /* default for vnrt_plan_desc.device_memory_limit; 0: the env */
} vnrt_context_desc;

/* Creates a context. desc may be NULL for all defaults. On failure *out_ctx is NULL. */
VNRT_API vnrt_status vnrt_context_create(const vnrt_context_desc *desc, vnrt_context **out_ctx);
VNRT_API void vnrt_context_destroy(vnrt_context *ctx);
/* The detail message of the last failed call on ctx ("" if none). Valid until the next call. */
VNRT_API const char *vnrt_context_last_error(const vnrt_context *ctx);
/* The value an option has on ctx (docs/api.md, "Options"): the desc's, else its environment
 * variable's, else NULL; cache_dir gives the resolved directory or "none". NULL for an unknown
 * key. Valid until the next call on ctx. */
VNRT_API const char *vnrt_context_option(vnrt_context *ctx, const char *key);

/* ---- Data types and tensors ------------------------------------------------------------ */
typedef enum vnrt_dtype {
  VNRT_DTYPE_INVALID = 0,
  VNRT_F32 = 1,
  VNRT_F16 = 2,
  VNRT_BF16 = 3,
  VNRT_I32 = 4,
  /* Quantized storage (docs/ops.md, "Quantized weights"). Codes, not numbers: they are read only
   * as the weight operand of linear, matmul, moe_ffn and embedding, always with an e8m0 scale
   * tensor beside them, and stay in this form in host and device memory. */
  VNRT_E4M3 = 5, /* FP8 OCP e4m3fn: one byte, max +-448, no infinities, 0x7F/0xFF are NaN */
  VNRT_E8M0 = 6, /* power-of-two scales: one byte e, value 2^(e-127); 255 is NaN */
  VNRT_E2M1 = 7, /* FP4: two codes per byte along the last dim, the even index in the low
                    nibble; a nibble is sign + index into {0, .5, 1, 1.5, 2, 3, 4, 6} */
} vnrt_dtype;

#define VNRT_MAX_DIMS 4

VNRT_API const char *vnrt_dtype_name(vnrt_dtype dtype); /* "f32"...; "invalid" otherwise */
/* Bytes per element; 0 if invalid, and 0 for e2m1, whose elements are half a byte: use
 * vnrt_dtype_bits, or vnrt_tensor_type_bytes for a whole tensor. */
VNRT_API size_t vnrt_dtype_size(vnrt_dtype dtype);
VNRT_API uint32_t vnrt_dtype_bits(vnrt_dtype dtype); /* bits per element; 0 if invalid */

/* A tensor's type: dtype and up to 4 dims, outermost first, row-major. rank 0 is a scalar. */
typedef struct vnrt_tensor_type {
  vnrt_dtype dtype;
  int32_t rank;
  int64_t dims[VNRT_MAX_DIMS];
} vnrt_tensor_type;

/* Element count (1 for a scalar) and byte size of a type (e2m1: half a byte per element; its
 * last dim is even, so rows are whole bytes). */
VNRT_API int64_t vnrt_tensor_type_numel(const vnrt_tensor_type *type);
VNRT_API size_t vnrt_tensor_type_bytes(const vnrt_tensor_type *type);

/* f16/bf16 conversion helpers (round to nearest even). */
VNRT_API uint16_t vnrt_f32_to_f16(float value);
VNRT_API float vnrt_f16_to_f32(uint16_t bits);
VNRT_API uint16_t vnrt_f32_to_bf16(float value);
VNRT_API float vnrt_bf16_to_f32(uint16_t bits);

/* FP8/FP4 codecs (docs/ops.md, "Quantized weights"). Decoders are exact. Encoders round to
 * nearest even and saturate: e4m3 to +-448, e2m1 to +-6; NaN encodes as e4m3 0x7F and e2m1
 * +6 (e2m1 has no NaN). vnrt_e8m0_to_f32(0) is 2^-127 (a subnormal), 255 is NaN. */
VNRT_API float vnrt_e4m3_to_f32(uint8_t code);
VNRT_API uint8_t vnrt_f32_to_e4m3(float value);
VNRT_API float vnrt_e8m0_to_f32(uint8_t code);
VNRT_API float vnrt_e2m1_to_f32(uint8_t nibble); /* the low 4 bits */
VNRT_API uint8_t vnrt_f32_to_e2m1(float value);  /* a nibble: 0..15 */
/* The power-of-two block scale of the reference recipe for a block whose largest magnitude is
 * amax: 2^ceil(log2(max(amax, floor) / fmt_max)), as an e8m0 code. fmt is VNRT_E4M3 (fmt_max
 * 448, floor 1e-4) or VNRT_E2M1 (fmt_max 6, floor 6*2^-126); 255 (NaN) for another dtype or a
 * NaN amax. */
VNRT_API uint8_t vnrt_quant_block_scale(vnrt_dtype fmt, float amax);

/* ---- Devices --------------------------------------------------------------------------- */
typedef enum vnrt_device_type {
  VNRT_DEVICE_TYPE_CPU = 0,
  VNRT_DEVICE_TYPE_GPU_DISCRETE = 1,
  VNRT_DEVICE_TYPE_GPU_INTEGRATED = 2,
  VNRT_DEVICE_TYPE_ACCELERATOR = 3, /* NPUs and other accelerators */
  VNRT_DEVICE_TYPE_SOFTWARE = 4,    /* a CPU-emulated device: lavapipe, PoCL */
} vnrt_device_type;

/* Capability bits of a device. */
enum {
  VNRT_CAP_F16 = 1u << 0, /* f16 arithmetic */
  VNRT_CAP_F16_STORAGE = 1u << 1,
  VNRT_CAP_INT8 = 1u << 2,
  VNRT_CAP_SUBGROUPS = 1u << 3,
  VNRT_CAP_TIMELINE = 1u << 4, /* timeline semaphores or equivalent */
  VNRT_CAP_UNIFIED_MEMORY = 1u << 5,
  VNRT_CAP_COPY_QUEUE = 1u << 6, /* a dedicated transfer queue */
  VNRT_CAP_FP8 = 1u << 7,        /* native FP8 (e4m3) arithmetic; without it kernels widen */
  VNRT_CAP_FP4 = 1u << 8,        /* native FP4 (e2m1) arithmetic; without it kernels widen */
  /* kv_compress's state_a' and state_z' may share their input states' memory (the executor's
   * in-place state updates, docs/executor.md); kv_write and kv_scatter always may */
  VNRT_CAP_STATE_INPLACE = 1u << 9,
  /* reshape's result may share its input's memory (the executor's views, docs/executor.md):
   * its kernel then sees the same buffer and offset on both sides and does nothing */
  VNRT_CAP_RESHAPE_VIEW = 1u << 10,
};

typedef struct vnrt_device_info {
  size_t struct_size; /* set by the caller: sizeof(vnrt_device_info), or 0 */
  char backend[16];   /* "cpu", "vulkan", "opencl", or a plugin's name */
  char name[128];     /* e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" */
  char driver[128];   /* driver/version string, may be empty */
  char spec[32];      /* the spec string that selects it, e.g. "vulkan:0" */
  vnrt_device_type type;
  uint32_t index;            /* index within its backend */
  uint64_t memory_bytes;     /* device-local memory (host RAM for the CPU) */
  uint64_t max_buffer_bytes; /* the largest single buffer */
  uint32_t caps;             /* VNRT_CAP_* bits */
  uint32_t compute_units;
  uint32_t subgroup_size; /* 0 if unknown */
  uint32_t max_workgroup_size;
  uint64_t shared_memory_bytes;
} vnrt_device_info;

typedef struct vnrt_device vnrt_device; /* borrowed from its context; never freed by the user */

/* Number of devices across all backends (built-in and plugins). */
VNRT_API uint32_t vnrt_device_count(vnrt_context *ctx);
/* The i-th device, in a stable order: cpu first, then backends in registration order. */
VNRT_API vnrt_status vnrt_device_get(vnrt_context *ctx, uint32_t i, vnrt_device **out_device);
VNRT_API vnrt_status vnrt_device_get_info(const vnrt_device *device, vnrt_device_info *out_info);

/* Selects a device by spec: "cpu", "vulkan", "vulkan:1", "opencl:0", a plugin's name, or
 * "auto"/NULL/"" = $VNRT_DEVICE if set, else the best device (hardware before software,
 * software devices such as lavapipe and PoCL only when nothing else exists). */
VNRT_API vnrt_status vnrt_device_select(vnrt_context *ctx, const char *spec,
                                        vnrt_device **out_device);

/* Names of registered backends, in order; returns the count. names may be NULL. */
VNRT_API uint32_t vnrt_backend_names(vnrt_context *ctx, const char **names, uint32_t capacity);

/* ---- Graphs ---------------------------------------------------------------------------- */
typedef struct vnrt_graph vnrt_graph;
typedef int32_t vnrt_value; /* a value of a graph; negative = invalid */

/* Ops come from the table in vnrt/ops.h: VNRT_OP_ADD, VNRT_OP_MATMUL, ... */
VNRT_API const char *vnrt_op_name(vnrt_op op);        /* "add"...; NULL if out of range */
VNRT_API vnrt_op vnrt_op_from_name(const char *name); /* VNRT_OP_INVALID if unknown */

typedef enum vnrt_attr_kind {
  VNRT_ATTR_INT = 1,   /* an integer */
  VNRT_ATTR_FLOAT = 2, /* a real number (integers are accepted where floats are expected) */
  VNRT_ATTR_INTS = 3,  /* a list of integers */
  VNRT_ATTR_FLOATS = 4,
  VNRT_ATTR_WORD = 5, /* an enum word such as "sigmoid" or "f16" */
} vnrt_attr_kind;

/* One attribute of a node, as written in vnir: `key=value`. Pointers are borrowed; the graph
 * copies what it keeps. */
typedef struct vnrt_attr {
  const char *key;
  vnrt_attr_kind kind;
  int64_t i;
  double f;
  const int64_t *ints;
  const double *floats;
  int32_t count; /* list length for INTS/FLOATS */
  const char *word;
} vnrt_attr;

VNRT_API vnrt_status vnrt_graph_create(vnrt_context *ctx, vnrt_graph **out_graph);
VNRT_API void vnrt_graph_destroy(vnrt_graph *graph);

/* Declares a run-time input (is_param = 0) or a weight (is_param = 1). */
VNRT_API vnrt_status vnrt_graph_add_input(vnrt_graph *graph, const char *name,
                                          const vnrt_tensor_type *type, int is_param,
                                          vnrt_value *out_value);

/* Adds a node. Its results' types are inferred and checked now: a bad node is rejected with a
 * message naming it, and the graph is left unchanged. out_names may be NULL (names are then
 * generated as "%N"); out_values receives n_outputs values and n_outputs must equal the op's
 * result count. */
VNRT_API vnrt_status vnrt_graph_add_node(vnrt_graph *graph, vnrt_op op, const vnrt_value *inputs,
                                         int32_t n_inputs, const vnrt_attr *attrs, int32_t n_attrs,
                                         const char *const *out_names, vnrt_value *out_values,
                                         int32_t n_outputs);

/* Declares a persistent state (a KV cache, a convolution or n-gram history): owned by each
 * plan, zero when the plan is created, kept across runs, settable with vnrt_plan_set_input and
 * readable with vnrt_plan_read_state. */
VNRT_API vnrt_status vnrt_graph_add_state(vnrt_graph *graph, const char *name,
                                          const vnrt_tensor_type *type, vnrt_value *out_value);
/* After every run, state takes the value next (same dtype and shape; computed by a node). When
 * next is kv_write(state, ...) or kv_scatter(state, ...), the state is no output and every other
 * node that reads state runs before that write, the write happens in place. */
VNRT_API vnrt_status vnrt_graph_set_state_update(vnrt_graph *graph, vnrt_value state,
                                                 vnrt_value next);
/* States in declaration order; out_next (may be NULL) receives the update value or -1. */
VNRT_API int32_t vnrt_graph_state_count(const vnrt_graph *graph);
VNRT_API vnrt_value vnrt_graph_state(const vnrt_graph *graph, int32_t i, vnrt_value *out_next);

/* Marks a value as an output of the graph (outputs are kept in marking order). */
VNRT_API vnrt_status vnrt_graph_add_output(vnrt_graph *graph, vnrt_value value);

VNRT_API vnrt_status vnrt_graph_value_type(const vnrt_graph *graph, vnrt_value value,
                                           vnrt_tensor_type *out_type);
VNRT_API const char *vnrt_graph_value_name(const vnrt_graph *graph, vnrt_value value);
VNRT_API vnrt_value vnrt_graph_find(const vnrt_graph *graph, const char *name); /* -1: none */

/* Declared inputs and params in declaration order; outputs in marking order. */
VNRT_API int32_t vnrt_graph_input_count(const vnrt_graph *graph);
VNRT_API vnrt_value vnrt_graph_input(const vnrt_graph *graph, int32_t i, int *out_is_param);
VNRT_API int32_t vnrt_graph_output_count(const vnrt_graph *graph);
VNRT_API vnrt_value vnrt_graph_output(const vnrt_graph *graph, int32_t i);

/* Parses vnir text (spec: docs/vnir.md). filename is used in messages only and may be NULL.
 * On error the message is "file:line:col: message" and *out_graph is NULL. */
VNRT_API vnrt_status vnrt_graph_parse(vnrt_context *ctx, const char *text, size_t length,
                                      const char *filename, vnrt_graph **out_graph);
VNRT_API vnrt_status vnrt_graph_parse_file(vnrt_context *ctx, const char *path,
                                           vnrt_graph **out_graph);
/* Prints canonical vnir into a newly allocated NUL-terminated string; free with vnrt_free. */
VNRT_API vnrt_status vnrt_graph_print(const vnrt_graph *graph, char **out_text);
/* Frees memory that vnrt returned to the caller (strings, buffers). */
VNRT_API void vnrt_free(vnrt_context *ctx, void *ptr);

/* ---- Plans ----------------------------------------------------------------------------- */
typedef struct vnrt_plan vnrt_plan;

typedef enum vnrt_kernel_mode {
  VNRT_KERNELS_FAST = 0,      /* each backend's best kernels */
  VNRT_KERNELS_REFERENCE = 1, /* the CPU reference kernels of docs/ops.md (validation) for the
                                 nodes the CPU runs; a plan for another device still runs its
                                 own kernels (vnrt-run --reference plans for the cpu instead) */
} vnrt_kernel_mode;

typedef struct vnrt_engram_store vnrt_engram_store; /* vnrt/memory.h */

/* Serves the table param of engram_lookup nodes from an Engram store (vnrt/memory.h) instead of
 * device memory: the device keeps a row cache, and the rows a run needs are prefetched on the
 * copy stream as soon as the run starts (their indices depend only on inputs and states). */
typedef struct vnrt_engram_binding {
  const char *param;        /* name of the table param */
  vnrt_engram_store *store; /* borrowed; must outlive the plan */
} vnrt_engram_binding;

typedef enum vnrt_shadow_mode {
  VNRT_SHADOW_DEFAULT = 0, /* $VNRT_SHADOW decides */
  VNRT_SHADOW_OFF = 1,
  VNRT_SHADOW_CPU = 2, /* compare every node with the CPU reference kernels */
} vnrt_shadow_mode;

typedef struct vnrt_plan_desc {
  size_t struct_size; /* sizeof(vnrt_plan_desc), or 0 (see the top of this file) */
  int no_fallback;    /* nonzero: an op the device cannot run fails compilation instead of
                         falling back to the CPU (with a logged note) */
  vnrt_kernel_mode kernels;
  /* Device memory the plan may use, in bytes; 0: $VNRT_DEVICE_MEMORY_LIMIT ("256M", "2G"...)
   * if set, else no limit. Over the limit, params are kept in host memory and streamed to the
   * device before the nodes that read them (largest first); a plan that cannot fit even so
   * fails to compile with the numbers: needed, available, and the largest tensor. */
  uint64_t device_memory_limit;
  int32_t prefetch_depth; /* streamed params in flight at once; 0: 2 */
  int serialize_copies;   /* nonzero: no copy stream; each copy runs on the compute stream
                             right before the node that needs it (to measure what DualPath
                             hides) */
  const vnrt_engram_binding *engram;
  int32_t n_engram;
  /* The most work one run may take, in the operations of docs/ops.md's cost model (arithmetic
   * plus elements moved, summed over the nodes a run executes); 0: $VNRT_MAX_RUN_WORK ("1e15",
   * "250000000") if set, else 1e17. A plan whose estimate is over it fails to compile with
   * VNRT_ERROR_BUDGET_EXCEEDED and the numbers: estimate, limit, and the most expensive node.
   * UINT64_MAX: no limit. */
  uint64_t max_work;
  /* Bring-up (vnrt/inspect.h, docs/porting.md). Nonzero: time every node of every run
   * (vnrt_plan_get_node); 0: on when $VNRT_PROFILE is 1. */
  int profile_nodes;
  /* Shadow mode: after each node runs on its device, run the CPU reference kernel of the node
   * on the same inputs and compare (vnrt_plan_get_shadow_report); 0: $VNRT_SHADOW ("cpu" or
   * "off"), else off. */
  vnrt_shadow_mode shadow;
  /* Where shadow mode saves the first node out of tolerance (a one-node .vnir and its inputs
   * as .npy, to replay with vnrt-run); NULL: $VNRT_SHADOW_DIR, else nothing is saved. */
  const char *shadow_dir;
} vnrt_plan_desc;

/* Compiles graph for device. The graph may be destroyed afterwards. desc may be NULL. */
VNRT_API vnrt_status vnrt_plan_create(vnrt_context *ctx, const vnrt_graph *graph,
                                      vnrt_device *device, const vnrt_plan_desc *desc,
                                      vnrt_plan **out_plan);
/* Like vnrt_plan_create, but params of the new plan use the device memory of the same params
 * of share_params_with (weights shared between, e.g., the prefill and decode graphs of one
 * model). A param of the new plan is shared when share_params_with has a param of the same
 * name, dtype and shape and both plans keep it resident in the target's memory: the two plans
 * are for the same device, neither streams it (see device_memory_limit; a shared param is never
 * streamed by the new plan and does not count against its limit), neither copies it to the CPU
 * for a node that falls back there, and it is not a table served by an Engram store. Other
 * params — mismatched, streamed, or of a plan for another device — are the new plan's own, as
 * with vnrt_plan_create. Binding a shared param through either plan binds it for both (a plan
 * that reads it on the host too, such as a hash-routing table or Engram offsets, reads it back
 * from the device on its next run). The plans may be destroyed in either order: the memory
 * holding the new plan's shared params (share_params_with's inputs, params and states) is
 * freed when the last plan using it is. Plans that share are used from one thread at a time.
 * An info log line gives the number of params and bytes shared; vnrt_plan_info.device_bytes
 * of the new plan excludes them (weight_bytes still counts every param it reads). A
 * share_params_with of another plan that shares counts through to the memory that one uses.
 * share_params_with NULL: exactly vnrt_plan_create. */
VNRT_API vnrt_status vnrt_plan_create_shared(vnrt_context *ctx, const vnrt_graph *graph,
                                             vnrt_device *device, const vnrt_plan_desc *desc,
                                             vnrt_plan *share_params_with, vnrt_plan **out_plan);
VNRT_API void vnrt_plan_destroy(vnrt_plan *plan);

/* Binds an input or param by name: copies `bytes` bytes of host data into the plan. The data
 * must match the declared type exactly (dtype and byte count); see vnrt_plan_input_type. A
 * param bound once stays bound across runs. On a state it sets the state's current value. */
VNRT_API vnrt_status vnrt_plan_set_input(vnrt_plan *plan, const char *name, const void *data,
                                         size_t bytes);
VNRT_API vnrt_status vnrt_plan_input_type(const vnrt_plan *plan, const char *name,
                                          vnrt_tensor_type *out_type);

/* Like vnrt_plan_set_input, but a streamed param (see device_memory_limit) keeps only the
 * pointer: memory-mapped weights are read from the mapping when they are streamed, never copied
 * into host memory. data must stay valid and unchanged until the plan is destroyed or the
 * param is bound again. Other values are copied as by vnrt_plan_set_input. */
VNRT_API vnrt_status vnrt_plan_set_input_ref(vnrt_plan *plan, const char *name, const void *data,
                                             size_t bytes);

/* Runs the plan. Every input and param must be bound. A run-time error (an index out of
 * range) fails the run with a message naming op, value and bound; outputs are then invalid. */
VNRT_API vnrt_status vnrt_plan_run(vnrt_plan *plan);

/* Output access after a successful run, by name or by position. */
VNRT_API int32_t vnrt_plan_output_count(const vnrt_plan *plan);
VNRT_API const char *vnrt_plan_output_name(const vnrt_plan *plan, int32_t i);
VNRT_API vnrt_status vnrt_plan_output_type(const vnrt_plan *plan, const char *name,
                                           vnrt_tensor_type *out_type);
/* Copies an output into host memory; bytes must equal the output's byte size. */
VNRT_API vnrt_status vnrt_plan_read_output(vnrt_plan *plan, const char *name, void *data,
                                           size_t bytes);

/* Moves on the plan's copy stream (DualPath, docs/executor.md), for a model placed over
 * several devices that hands values from one plan to the next (docs/scale-out.md, "Several
 * devices in one process"): asynchronous versions of vnrt_plan_set_input and
 * vnrt_plan_read_output.
 *
 * vnrt_plan_stage_input binds run-time input `name` (not a param or state) as
 * vnrt_plan_set_input does, but queues the write on the plan's copy stream and returns at
 * once: it overlaps whatever the caller does meanwhile, such as running other plans. data is
 * borrowed: it must stay valid and unchanged until the plan's next vnrt_plan_run returns (or
 * its next vnrt_plan_set_input or vnrt_plan_wait_staged, which wait for the staged writes). The
 * next run waits for the staged writes before its first step and returns their failure, if any. A
 * plan without a copy stream (serialize_copies) writes at once. */
VNRT_API vnrt_status vnrt_plan_stage_input(vnrt_plan *plan, const char *name, const void *data,
                                           size_t bytes);
/* Waits for the plan's staged input writes (so their data may be freed or changed) and
 * returns the first one's failure, naming it; VNRT_OK when none is pending. The next run
 * would wait for them anyway: this is for a caller that gives up before running the plan. */
VNRT_API vnrt_status vnrt_plan_wait_staged(vnrt_plan *plan);
/* Asks the next vnrt_plan_run to copy output `name` into data (bytes: its byte size) on the
 * plan's copy stream as soon as the step computing it is done, while the later steps run.
 * When the run returns VNRT_OK, data holds what vnrt_plan_read_output would give; after a
 * failed run its content is undefined. Each run consumes the requests (ask again for the next
 * one); asking twice for one output keeps the last data. */
VNRT_API vnrt_status vnrt_plan_stage_output(vnrt_plan *plan, const char *name, void *data,
                                            size_t bytes);

/* Copies a state's current value into host memory; bytes must equal its byte size. */
VNRT_API vnrt_status vnrt_plan_read_state(vnrt_plan *plan, const char *name, void *data,
                                          size_t bytes);
/* Sets every state of the plan back to zero (as when the plan was created). After a failed
 * run, states updated in place may hold rows written before the failure (docs/executor.md). */
VNRT_API vnrt_status vnrt_plan_reset_state(vnrt_plan *plan);

typedef struct vnrt_plan_info {
  size_t struct_size; /* set by the caller: sizeof(vnrt_plan_info), or 0 */
  int32_t n_nodes;
  int32_t n_partitions;        /* runs of consecutive nodes on one device */
  int32_t n_fallback_nodes;    /* nodes sent to the CPU because the device cannot run them */
  uint64_t arena_bytes;        /* peak bytes of intermediates (one arena per device) */
  uint64_t naive_bytes;        /* bytes if every intermediate had its own buffer */
  uint64_t weight_bytes;       /* params */
  uint64_t state_bytes;        /* states, per replica */
  int32_t n_inplace_updates;   /* state updates written in place (no copy after a run) */
  uint64_t device_bytes;       /* device memory of the target: arena, bindings, caches */
  uint64_t device_limit;       /* the budget it was planned for (0: none) */
  int32_t n_streamed_params;   /* params kept in host memory and streamed (over budget) */
  uint64_t streamed_bytes;     /* their size */
  int32_t n_engram_lookups;    /* engram_lookup nodes served from Engram stores */
  uint64_t engram_cache_bytes; /* device row caches of those stores */
  uint64_t work;               /* the cost model's estimate of one run (see max_work) */
  uint64_t work_limit;         /* the limit it was checked against */
} vnrt_plan_info;

VNRT_API vnrt_status vnrt_plan_get_info(const vnrt_plan *plan, vnrt_plan_info *out_info);

/* What the last run did: time on each stream, what moved, and how well the copy stream hid
 * behind compute (DualPath). */
typedef struct vnrt_run_stats {
  size_t struct_size;     /* set by the caller: sizeof(vnrt_run_stats), or 0 */
  uint64_t wall_ns;       /* the whole vnrt_plan_run */
  uint64_t compute_ns;    /* the compute stream: nodes, transfers between devices, state updates */
  uint64_t copy_ns;       /* the copy stream: streamed params and Engram rows */
  uint64_t stall_ns;      /* compute waiting for copies */
  double overlap;         /* share of the shorter stream hidden behind the other, in [0, 1] */
  uint64_t bytes_weights; /* streamed params, host to device */
  uint64_t bytes_engram;  /* Engram rows, host or file to device */
  uint64_t bytes_transfers; /* between devices (CPU fallback) and state updates */
  uint64_t engram_rows;     /* distinct rows asked for (summed over lookups) */
  uint64_t engram_hits;     /* of those, found in a device row cache */
  double engram_hit_rate;   /* hits / rows; 0 when there were none */
  /* Moves staged with vnrt_plan_stage_input (since the previous run) and
   * vnrt_plan_stage_output (this run), on the copy stream; not in copy_ns or stall_ns: */
  uint64_t bytes_staged;   /* bytes written and read back */
  uint64_t staged_ns;      /* their time on the copy stream */
  uint64_t staged_wait_ns; /* what the caller's thread waited for them (the run's start, its
                              end); staged_ns minus this, when positive, overlapped other work */
} vnrt_run_stats;

VNRT_API vnrt_status vnrt_plan_get_run_stats(const vnrt_plan *plan, vnrt_run_stats *out_stats);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_VNRT_H_ */
