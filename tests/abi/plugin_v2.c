/* A plugin built against backend API version 2 (vnrt 0.1.0's headers, frozen in tests/abi/v0):
 * vnrt 0.1.0's template backend, renamed "apitwo", plus one op — f32 add of two same-shaped
 * inputs — so that a newer core must hand it graphs, nodes and tensors in version 2's layout
 * for its results to be right (tests/runtime/test_plugin.c). Do not update it to newer
 * headers: it stands for a plugin a vendor built and shipped against 0.1.0.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
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
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "apitwo: out of host memory");
  }
  state->host = host;
  /* PORT: open the driver here and count its devices. Finding zero devices is not an error:
   * the backend then simply contributes none. */
  state->n_devices = 1;
  host->log(host->core, VNRT_LOG_DEBUG, "apitwo: initialised with %u device(s)", state->n_devices);
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

static vnrt_status template_device_info(void *opaque, uint32_t index, vnrt_device_info *out_info) {
  template_state *state = opaque;
  memset(out_info, 0, sizeof(*out_info));
  if (index >= state->n_devices) {
    return state->host->error(state->host->core, VNRT_ERROR_NOT_FOUND,
                              "apitwo: no device %u (the backend has %u)", index, state->n_devices);
  }
  /* PORT: report what the hardware really is and can do; the core selects devices and
   * kernel variants by these fields, never by name. */
  snprintf(out_info->backend, sizeof(out_info->backend), "template");
  snprintf(out_info->name, sizeof(out_info->name), "apitwo (f32 add)");
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
                              "apitwo: no device %u (the backend has %u)", index, state->n_devices);
  }
  vnrt_backend_device *device = state->host->alloc(state->host->core, sizeof(*device));
  if (!device) {
    return state->host->error(state->host->core, VNRT_ERROR_OUT_OF_MEMORY,
                              "apitwo: out of host memory opening device %u", index);
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
                       "apitwo: buffer of %llu bytes exceeds the address space",
                       (unsigned long long)bytes);
  }
  vnrt_backend_buffer *buffer = host->alloc(host->core, sizeof(*buffer));
  if (!buffer) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "apitwo: out of host memory");
  }
  /* A zero-byte buffer still gets a valid, distinct address. */
  buffer->raw = host->alloc(host->core, (size_t)bytes + TEMPLATE_ALIGN);
  if (!buffer->raw) {
    host->free(host->core, buffer);
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "apitwo: cannot allocate a buffer of %llu bytes", (unsigned long long)bytes);
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
                       "apitwo: %s of %llu bytes at offset %llu exceeds the buffer's %llu bytes",
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
  const vnrt_backend_node *n = &graph->nodes[node];
  if (n->op != VNRT_OP_ADD || n->n_inputs != 2 || n->n_outputs != 1 || n->n_attrs != 0) return 0;
  const vnrt_tensor_type *a = &graph->tensors[n->inputs[0]].type;
  const vnrt_tensor_type *b = &graph->tensors[n->inputs[1]].type;
  const vnrt_tensor_type *y = &graph->tensors[n->outputs[0]].type;
  if (a->dtype != VNRT_F32 || b->dtype != VNRT_F32 || y->dtype != VNRT_F32) return 0;
  if (a->rank != y->rank || b->rank != y->rank) return 0;
  for (int32_t d = 0; d < y->rank; ++d) {
    if (a->dims[d] != y->dims[d] || b->dims[d] != y->dims[d]) return 0;
  }
  return 1;
}

static vnrt_status template_compile(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                                    vnrt_backend_exec **out_exec) {
  const vnrt_backend_host *host = device->state->host;
  *out_exec = NULL;
  for (int32_t i = 0; i < graph->n_nodes; ++i) {
    if (!template_supports_node(device, graph, i)) {
      const vnrt_backend_node *n = &graph->nodes[i];
      return host->error(host->core, VNRT_ERROR_UNSUPPORTED, "apitwo: cannot run op %s ('%s')",
                         template_op_name(n->op), n->name ? n->name : "?");
    }
  }
  vnrt_backend_exec *exec = host->alloc(host->core, sizeof(*exec));
  if (!exec) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "apitwo: out of host memory");
  }
  exec->device = device;
  exec->graph = graph;
  *out_exec = exec;
  return VNRT_OK;
}

static float *template_tensor_data(const vnrt_backend_graph *graph, int32_t t) {
  const vnrt_backend_tensor *tensor = &graph->tensors[t];
  return (float *)(void *)(tensor->buffer->data + tensor->offset);
}

static vnrt_status template_run(vnrt_backend_exec *exec, int32_t first, int32_t count) {
  const vnrt_backend_host *host = exec->device->state->host;
  const vnrt_backend_graph *graph = exec->graph;
  if (first < 0 || count < 0 || count > graph->n_nodes - first) {
    return host->error(host->core, VNRT_ERROR_INVALID_ARGUMENT,
                       "apitwo: run of nodes [%d, %d) outside the %d compiled nodes", (int)first,
                       (int)first + (int)count, (int)graph->n_nodes);
  }
  for (int32_t i = first; i < first + count; ++i) {
    const vnrt_backend_node *n = &graph->nodes[i];
    const float *a = template_tensor_data(graph, n->inputs[0]);
    const float *b = template_tensor_data(graph, n->inputs[1]);
    float *y = template_tensor_data(graph, n->outputs[0]);
    const vnrt_tensor_type *type = &graph->tensors[n->outputs[0]].type;
    int64_t numel = 1;
    for (int32_t d = 0; d < type->rank; ++d) numel *= type->dims[d];
    for (int64_t k = 0; k < numel; ++k) y[k] = a[k] + b[k];
  }
  return VNRT_OK;
}

static void template_exec_destroy(vnrt_backend_exec *exec) {
  if (!exec) return;
  const vnrt_backend_host *host = exec->device->state->host;
  host->free(host->core, exec);
}

/* ---- The table and the entry point ------------------------------------------------------ */

static const vnrt_backend_i template_backend = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = VNRT_BACKEND_API_VERSION,
    .name = "apitwo",
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
