/* A skeleton vnrt backend plugin that a vendor copies to start a port (see README.md).
 *
 * It implements every slot of vnrt_backend_i honestly: one device, "template:0", whose buffers
 * live in host memory so the core can move data in and out, and which runs no op at all —
 * supports_node says no to everything, so the core sends every node to the CPU fallback (or
 * fails the plan with VNRT_ERROR_UNSUPPORTED when fallback is off). A port replaces the parts
 * marked PORT: one at a time, and every step keeps a working runtime.
 *
 * It includes only the installed public headers and links nothing of vnrt: all services
 * (logging, errors, the host allocator) come through the vnrt_backend_host table.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 (template_run_timed) */
#endif
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vnrt/backend.h"

/* Tensor offsets are multiples of 256 bytes; aligning buffer bases the same way keeps every
 * tensor suitably aligned for any vector width a kernel may use. */
#define TEMPLATE_ALIGN 256u

typedef struct template_state {
  const vnrt_backend_host *host;
  uint32_t n_devices;
} template_state;

struct vnrt_backend_device {
  template_state *state;
  uint32_t index;
};

struct vnrt_backend_buffer {
  void *raw;     /* what host->alloc returned */
  uint8_t *data; /* raw rounded up to TEMPLATE_ALIGN */
  uint64_t bytes;
};

struct vnrt_backend_exec {
  vnrt_backend_device *device;
  const vnrt_backend_graph *graph; /* borrowed: valid until exec_destroy */
};

/* ---- Backend lifetime ------------------------------------------------------------------- */

static vnrt_status template_init(const vnrt_backend_host *host, void **out_state) {
  *out_state = NULL;
  template_state *state = host->alloc(host->core, sizeof(*state));
  if (!state) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "template: out of host memory");
  }
  state->host = host;
  /* PORT: open the driver here and count its devices. Finding zero devices is not an error:
   * the backend then simply contributes none. */
  state->n_devices = 1;
  host->log(host->core, VNRT_LOG_DEBUG, "template: initialised with %u device(s)",
            state->n_devices);
  *out_state = state;
  return VNRT_OK;
}

static void template_shutdown(void *opaque) {
  template_state *state = opaque;
  if (!state) return;
  state->host->free(state->host->core, state);
}

/* ---- Devices ---------------------------------------------------------------------------- */

static uint32_t template_device_count(void *opaque) {
  const template_state *state = opaque;
  return state ? state->n_devices : 0;
}

/* Host RAM, since that is where this device's buffers live. */
static uint64_t template_host_memory_bytes(void) {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return (uint64_t)pages * (uint64_t)page_size;
}

static vnrt_status template_device_info(void *opaque, uint32_t index,
                                        vnrt_backend_device_info *out_info) {
  template_state *state = opaque;
  memset(out_info, 0, sizeof(*out_info));
  if (index >= state->n_devices) {
    return state->host->error(state->host->core, VNRT_ERROR_NOT_FOUND,
                              "template: no device %u (the backend has %u)", index,
                              state->n_devices);
  }
  /* PORT: report what the hardware really is and can do; the core selects devices and
   * kernel variants by these fields, never by name. */
  snprintf(out_info->backend, sizeof(out_info->backend), "template");
  snprintf(out_info->name, sizeof(out_info->name), "template (no ops)");
  snprintf(out_info->driver, sizeof(out_info->driver), "vnrt template backend");
  snprintf(out_info->spec, sizeof(out_info->spec), "template:%u", index);
  out_info->type = VNRT_DEVICE_TYPE_ACCELERATOR;
  out_info->index = index;
  out_info->memory_bytes = template_host_memory_bytes();
  out_info->max_buffer_bytes = out_info->memory_bytes;
  out_info->caps = VNRT_CAP_UNIFIED_MEMORY; /* buffers are host memory */
  out_info->compute_units = 1;
  out_info->subgroup_size = 0;
  out_info->max_workgroup_size = 1;
  out_info->shared_memory_bytes = 0;
  return VNRT_OK;
}

static vnrt_status template_device_open(void *opaque, uint32_t index,
                                        vnrt_backend_device **out_device) {
  template_state *state = opaque;
  *out_device = NULL;
  if (index >= state->n_devices) {
    return state->host->error(state->host->core, VNRT_ERROR_NOT_FOUND,
                              "template: no device %u (the backend has %u)", index,
                              state->n_devices);
  }
  vnrt_backend_device *device = state->host->alloc(state->host->core, sizeof(*device));
  if (!device) {
    return state->host->error(state->host->core, VNRT_ERROR_OUT_OF_MEMORY,
                              "template: out of host memory opening device %u", index);
  }
  /* PORT: create the device's queues (a compute and a copy stream) here. */
  device->state = state;
  device->index = index;
  *out_device = device;
  return VNRT_OK;
}

static void template_device_close(vnrt_backend_device *device) {
  if (!device) return;
  const vnrt_backend_host *host = device->state->host;
  host->free(host->core, device);
}

/* ---- Buffers ---------------------------------------------------------------------------- */

static vnrt_status template_buffer_alloc(vnrt_backend_device *device, uint64_t bytes,
                                         vnrt_backend_buffer **out_buffer) {
  const vnrt_backend_host *host = device->state->host;
  *out_buffer = NULL;
  /* PORT: allocate device memory instead. Keep the size checks: a request the device cannot
   * hold must fail with a message, not wrap around. */
  if (bytes > (uint64_t)SIZE_MAX - TEMPLATE_ALIGN) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "template: buffer of %llu bytes exceeds the address space",
                       (unsigned long long)bytes);
  }
  vnrt_backend_buffer *buffer = host->alloc(host->core, sizeof(*buffer));
  if (!buffer) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "template: out of host memory");
  }
  /* A zero-byte buffer still gets a valid, distinct address. */
  buffer->raw = host->alloc(host->core, (size_t)bytes + TEMPLATE_ALIGN);
  if (!buffer->raw) {
    host->free(host->core, buffer);
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "template: cannot allocate a buffer of %llu bytes",
                       (unsigned long long)bytes);
  }
  uintptr_t base = ((uintptr_t)buffer->raw + TEMPLATE_ALIGN - 1) & ~(uintptr_t)(TEMPLATE_ALIGN - 1);
  buffer->data = (uint8_t *)base;
  buffer->bytes = bytes;
  *out_buffer = buffer;
  return VNRT_OK;
}

static void template_buffer_free(vnrt_backend_device *device, vnrt_backend_buffer *buffer) {
  if (!buffer) return;
  const vnrt_backend_host *host = device->state->host;
  host->free(host->core, buffer->raw);
  host->free(host->core, buffer);
}

/* Optional slot: only for memory the host can address directly. A discrete device with no
 * host-visible memory leaves this slot NULL. */
static void *template_buffer_host_ptr(vnrt_backend_device *device, vnrt_backend_buffer *buffer) {
  (void)device;
  return buffer ? buffer->data : NULL;
}

/* Rejects [offset, offset + bytes) outside the buffer, without overflowing. */
static vnrt_status template_check_range(vnrt_backend_device *device,
                                        const vnrt_backend_buffer *buffer, uint64_t offset,
                                        uint64_t bytes, const char *what) {
  if (offset > buffer->bytes || bytes > buffer->bytes - offset) {
    const vnrt_backend_host *host = device->state->host;
    return host->error(host->core, VNRT_ERROR_OUT_OF_RANGE,
                       "template: %s of %llu bytes at offset %llu exceeds the buffer's %llu bytes",
                       what, (unsigned long long)bytes, (unsigned long long)offset,
                       (unsigned long long)buffer->bytes);
  }
  return VNRT_OK;
}

static vnrt_status template_buffer_write(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                         uint64_t offset, const void *src, uint64_t bytes) {
  vnrt_status s = template_check_range(device, buffer, offset, bytes, "write");
  if (s != VNRT_OK) return s;
  /* PORT: a host-to-device copy, finished before returning. */
  if (bytes) memcpy(buffer->data + offset, src, (size_t)bytes);
  return VNRT_OK;
}

static vnrt_status template_buffer_read(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                        uint64_t offset, void *dst, uint64_t bytes) {
  vnrt_status s = template_check_range(device, buffer, offset, bytes, "read");
  if (s != VNRT_OK) return s;
  /* PORT: a device-to-host copy, finished before returning. */
  if (bytes) memcpy(dst, buffer->data + offset, (size_t)bytes);
  return VNRT_OK;
}

/* ---- Compilation and execution ---------------------------------------------------------- */

/* Op names from the public op table, so messages need nothing from libvnrt. */
static const char *const template_op_names[] = {
#define TEMPLATE_OP_NAME_(ID, name, min_in, max_in, n_out) #name,
    VNRT_OP_LIST(TEMPLATE_OP_NAME_)
#undef TEMPLATE_OP_NAME_
};

static const char *template_op_name(vnrt_op op) {
  if (op < 0 || (size_t)op >= sizeof(template_op_names) / sizeof(template_op_names[0])) {
    return "unknown op";
  }
  return template_op_names[op];
}

static int template_supports_node(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                                  int32_t node) {
  (void)device;
  (void)graph;
  (void)node;
  /* PORT: return 1 for each (op, dtypes, attributes) combination a kernel exists for, e.g.
   *   const vnrt_backend_node *n = vnrt_backend_graph_node(graph, node);
   *   return n->op == VNRT_OP_ADD && n->n_attrs == 0 &&
   *          vnrt_backend_graph_tensor(graph, n->inputs[0])->type.dtype == VNRT_F32;
   * Everything else keeps going to the CPU, so ops can be ported one at a time. Refuse what you
   * do not know (an attribute, a parameter value): never ignore it. */
  return 0;
}

static vnrt_status template_compile(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                                    vnrt_backend_exec **out_exec) {
  const vnrt_backend_host *host = device->state->host;
  *out_exec = NULL;
  if (graph->n_nodes > 0) {
    /* The core only hands over nodes supports_node accepted, so reaching this is a core
     * bug — but a port in progress must still fail loudly, never run nothing silently. */
    const vnrt_backend_node *n = vnrt_backend_graph_node(graph, 0);
    return host->error(host->core, VNRT_ERROR_UNSUPPORTED,
                       "template: device template:%u runs no ops yet (op %s, node '%s'); "
                       "implement compile/run in backends/template/template_backend.c",
                       device->index, template_op_name(n->op), n->name ? n->name : "?");
  }
  /* An empty partition has nothing to compile: its exec runs nothing. */
  vnrt_backend_exec *exec = host->alloc(host->core, sizeof(*exec));
  if (!exec) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "template: out of host memory");
  }
  exec->device = device;
  exec->graph = graph;
  *out_exec = exec;
  return VNRT_OK;
}

static vnrt_status template_run(vnrt_backend_exec *exec, int32_t first, int32_t count) {
  const vnrt_backend_host *host = exec->device->state->host;
  /* PORT: submit the pre-recorded work for nodes [first, first + count) and wait for it. */
  if (first < 0 || count < 0 || count > exec->graph->n_nodes - first) {
    return host->error(host->core, VNRT_ERROR_INVALID_ARGUMENT,
                       "template: run of nodes [%d, %d) outside the %d compiled nodes", (int)first,
                       (int)first + (int)count, (int)exec->graph->n_nodes);
  }
  return VNRT_OK; /* compile accepts only empty graphs, so there is nothing to run */
}

static void template_exec_destroy(vnrt_backend_exec *exec) {
  if (!exec) return;
  const vnrt_backend_host *host = exec->device->state->host;
  host->free(host->core, exec);
}

/* ---- Optional: asynchronous copies and runs (backend.h, API 3) --------------------------
 *
 * The executor's DualPath gives a device's copy engine the weights it streams through these
 * slots. This skeleton implements them synchronously, which backend.h allows: each call checks
 * that its wait value is reached (with no wait-before-signal, a value not reached now never
 * will be, as nothing here runs later), does the work, and signals at once. A port with a copy
 * engine keeps the timeline as a device object (a timeline semaphore, an event per value)
 * and queues the copy on its copy queue instead. Leaving all eight slots NULL is also fine: the
 * executor then streams with its own host thread through buffer_write. */

struct vnrt_backend_timeline {
  uint64_t value; /* PORT: a device timeline semaphore or event counter */
};

static vnrt_status template_timeline_create(vnrt_backend_device *device,
                                            vnrt_backend_timeline **out_timeline) {
  const vnrt_backend_host *host = device->state->host;
  *out_timeline = host->alloc(host->core, sizeof(**out_timeline));
  if (!*out_timeline) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "template: out of host memory");
  }
  (*out_timeline)->value = 0;
  return VNRT_OK;
}

static void template_timeline_destroy(vnrt_backend_device *device,
                                      vnrt_backend_timeline *timeline) {
  if (timeline) device->state->host->free(device->state->host->core, timeline);
}

static vnrt_status template_timeline_query(vnrt_backend_device *device,
                                           vnrt_backend_timeline *timeline, uint64_t *out_value) {
  (void)device;
  *out_value = timeline->value;
  return VNRT_OK;
}

static vnrt_status template_timeline_wait(vnrt_backend_device *device,
                                          vnrt_backend_timeline *timeline, uint64_t value,
                                          uint64_t timeout_ns) {
  (void)timeout_ns; /* PORT: a bounded wait on the device object */
  if (timeline->value >= value) return VNRT_OK;
  const vnrt_backend_host *host = device->state->host;
  return host->error(host->core, VNRT_ERROR_DEVICE,
                     "template: timeline value %llu is not reached (at %llu) and nothing "
                     "queued will signal it",
                     (unsigned long long)value, (unsigned long long)timeline->value);
}

static vnrt_status template_timeline_signal(vnrt_backend_device *device,
                                            vnrt_backend_timeline *timeline, uint64_t value) {
  (void)device;
  if (value > timeline->value) timeline->value = value;
  return VNRT_OK;
}

/* Before an operation: its wait value must be reached (synchronous work has nothing pending). */
static vnrt_status template_sync_begin(vnrt_backend_device *device, const vnrt_backend_sync *sync) {
  if (!sync || !sync->wait) return VNRT_OK;
  return template_timeline_wait(device, sync->wait, sync->wait_value, 0);
}

static void template_sync_end(const vnrt_backend_sync *sync) {
  if (sync && sync->signal && sync->signal_value > sync->signal->value) {
    sync->signal->value = sync->signal_value;
  }
}

static vnrt_status template_buffer_write_async(vnrt_backend_device *device,
                                               vnrt_backend_buffer *buffer, uint64_t offset,
                                               const void *src, uint64_t bytes,
                                               const vnrt_backend_sync *sync) {
  /* PORT: queue the copy on the copy engine, waiting for and signalling device objects. */
  vnrt_status s = template_sync_begin(device, sync);
  if (s == VNRT_OK) s = template_buffer_write(device, buffer, offset, src, bytes);
  if (s == VNRT_OK) template_sync_end(sync);
  return s;
}

static vnrt_status template_buffer_read_async(vnrt_backend_device *device,
                                              vnrt_backend_buffer *buffer, uint64_t offset,
                                              void *dst, uint64_t bytes,
                                              const vnrt_backend_sync *sync) {
  vnrt_status s = template_sync_begin(device, sync);
  if (s == VNRT_OK) s = template_buffer_read(device, buffer, offset, dst, bytes);
  if (s == VNRT_OK) template_sync_end(sync);
  return s;
}

static vnrt_status template_run_async(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                      const vnrt_backend_sync *sync) {
  /* PORT: submit without waiting; remember what run-time checks to report at the next run. */
  vnrt_status s = template_sync_begin(exec->device, sync);
  if (s == VNRT_OK) s = template_run(exec, first, count);
  if (s == VNRT_OK) template_sync_end(sync);
  return s;
}

/* Device timing (optional): runs nodes like template_run and reports each one's execution time,
 * so profiled plans (vnrt-run --stats --nodes) show the device's own times instead of the host
 * clock around one submit-and-wait per node. */
static vnrt_status template_run_timed(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                      uint64_t *out_ns) {
  /* PORT: record the nodes once more into a command list of its own, with a timestamp written
   * before and after each node's kernels (a query pool, profiling events: whatever the device
   * has), submit it, wait, and convert the ticks to ns. Keep that list apart from what `run`
   * submits, so ordinary runs pay nothing. A device without a timer returns
   * VNRT_ERROR_UNSUPPORTED before running anything: the core then uses the host clock.
   * The template's "device" is the host, so its clock here is the host's monotonic clock. */
  for (int32_t i = 0; i < count; ++i) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vnrt_status s = template_run(exec, first + i, 1);
    if (s != VNRT_OK) return s;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
    out_ns[i] = ns > 0 ? (uint64_t)ns : 1; /* PORT: 0 only for a node with no device work */
  }
  return VNRT_OK;
}

/* ---- The table and the entry point ------------------------------------------------------ */

static const vnrt_backend_i template_backend = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = VNRT_BACKEND_API_VERSION,
    .name = "template", /* PORT: your backend's short lowercase name, used in device specs */
    .init = template_init,
    .shutdown = template_shutdown,
    .device_count = template_device_count,
    .device_info = template_device_info,
    .device_open = template_device_open,
    .device_close = template_device_close,
    .buffer_alloc = template_buffer_alloc,
    .buffer_free = template_buffer_free,
    .buffer_host_ptr = template_buffer_host_ptr,
    .buffer_write = template_buffer_write,
    .buffer_read = template_buffer_read,
    .supports_node = template_supports_node,
    .compile = template_compile,
    .run = template_run,
    .exec_destroy = template_exec_destroy,
    /* PORT: VNRT_BACKEND_STABLE once vnrt-validate and the conformance suite pass on your
     * device (docs/backends.md); until then "auto" never picks it over the CPU. */
    .maturity = VNRT_BACKEND_EXPERIMENTAL,
    /* Optional (API 3); may be left NULL. */
    .timeline_create = template_timeline_create,
    .timeline_destroy = template_timeline_destroy,
    .timeline_query = template_timeline_query,
    .timeline_wait = template_timeline_wait,
    .timeline_signal = template_timeline_signal,
    .buffer_write_async = template_buffer_write_async,
    .buffer_read_async = template_buffer_read_async,
    .run_async = template_run_async,
    .run_timed = template_run_timed, /* optional (API 3); NULL: the core uses the host clock */
};

/* The one exported symbol (its name is VNRT_BACKEND_ENTRY_SYMBOL). Default visibility keeps it
 * exported even when the rest of the plugin is built with -fvisibility=hidden. */
#if defined(_WIN32)
#define TEMPLATE_EXPORT __declspec(dllexport)
#else
#define TEMPLATE_EXPORT __attribute__((visibility("default")))
#endif

TEMPLATE_EXPORT const vnrt_backend_i *vnrt_backend_entry_v1(uint32_t core_api_version);

const vnrt_backend_i *vnrt_backend_entry_v1(uint32_t core_api_version) {
  /* A core older than the interface this plugin was built against cannot use its table. */
  if (core_api_version < VNRT_BACKEND_API_VERSION) return NULL;
  return &template_backend;
}
