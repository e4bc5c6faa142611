/* The CPU backend: one device ("cpu") whose buffers are host memory and whose kernels are the
 * reference (and optional fast) kernels of this folder, run on a thread pool. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu_kernels.h"
#include "cpu_pool.h"
#include "vnrt/backend_util.h"

#define CPU_BUFFER_ALIGN 64

typedef struct cpu_state {
  const vnrt_backend_host *host;
} cpu_state;

struct vnrt_backend_device {
  const vnrt_backend_host *host;
  cpu_pool *pool;
  /* VNRT_CPU_PROFILE=1: every node is timed and the totals per op are printed to stderr when
   * the device closes (atomics: the compute and copy threads may both run plans here). */
  int profile;
  int huge_pages; /* the cpu_huge_pages option: big buffers in transparent huge pages */
  atomic_uint_fast64_t op_ns[VNRT_OP_COUNT];
  atomic_uint_fast64_t op_calls[VNRT_OP_COUNT];
};

struct vnrt_backend_buffer {
  void *raw;     /* what host->alloc returned */
  uint8_t *data; /* raw rounded up to CPU_BUFFER_ALIGN */
  uint64_t size;
};

typedef struct cpu_exec_node {
  cpu_kernel_fn fn;
  cpu_kernel_args args;
  bool empty; /* every result has no elements: nothing to compute (cpu_outputs_empty) */
  /* A node whose kernel keeps every thread streaming memory (cpu_streamed_weight_'s nodes, and
   * moe_ffn): before it runs, the pool is handed `prefetch`, the next such nodes' weights, to
   * read while the serial nodes between run (cpu_pool_prefetch; only with cpu_prefetch_kib). */
  bool streams;
  int32_t n_prefetch;
  cpu_prefetch_range prefetch[CPU_POOL_PREFETCH_RANGES];
} cpu_exec_node;

struct vnrt_backend_exec {
  vnrt_backend_device *device;
  int32_t n_nodes;
  cpu_exec_node *nodes;
};

static vnrt_status cpu_init_(const vnrt_backend_host *host, void **out_state) {
  *out_state = NULL;
  cpu_state *state = host->alloc(host->core, sizeof *state);
  if (!state) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu: out of memory");
  state->host = host;
  *out_state = state;
  return VNRT_OK;
}

static void cpu_shutdown_(void *state) {
  if (!state) return;
  const vnrt_backend_host *host = ((cpu_state *)state)->host;
  host->free(host->core, state);
}

static uint32_t cpu_device_count_(void *state) { return 1; }

/* The "model name" line of /proc/cpuinfo (x86; other architectures may lack it). */
static int cpu_model_name_(char *buf, size_t size) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[512];
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0) continue;
    const char *colon = strchr(line, ':');
    if (!colon) continue;
    const char *s = colon + 1;
    while (*s == ' ' || *s == '\t') ++s;
    size_t len = strcspn(s, "\r\n");
    if (len == 0) continue;
    if (len >= size) len = size - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    found = 1;
  }
  fclose(f);
  return found;
}

static vnrt_status cpu_device_info_(void *state, uint32_t index,
                                    vnrt_backend_device_info *out_info) {
  const vnrt_backend_host *host = ((cpu_state *)state)->host;
  memset(out_info, 0, sizeof *out_info);
  if (index != 0) {
    return host->error(host->core, VNRT_ERROR_NOT_FOUND,
                       "cpu: no device %" PRIu32 " (the cpu backend has one device, 0)", index);
  }
  snprintf(out_info->backend, sizeof out_info->backend, "cpu");
  if (!cpu_model_name_(out_info->name, sizeof out_info->name)) {
    snprintf(out_info->name, sizeof out_info->name, "cpu");
  }
  snprintf(out_info->driver, sizeof out_info->driver, "vnrt %s cpu kernels, %d threads",
           vnrt_version(NULL, NULL, NULL), (int)host->num_threads);
  snprintf(out_info->spec, sizeof out_info->spec, "cpu");
  out_info->type = VNRT_DEVICE_TYPE_CPU;
  out_info->index = 0;
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) out_info->memory_bytes = (uint64_t)pages * (uint64_t)page_size;
  /* One buffer can be as large as the address space lets a host allocation be. */
  out_info->max_buffer_bytes = out_info->memory_bytes;
  if (out_info->max_buffer_bytes == 0 || out_info->max_buffer_bytes > (uint64_t)PTRDIFF_MAX) {
    out_info->max_buffer_bytes = (uint64_t)PTRDIFF_MAX;
  }
  /* Kernels widen f16/bf16 to f32 (storage only, no f16 arithmetic); buffers are host memory. */
  out_info->caps = VNRT_CAP_F16_STORAGE | VNRT_CAP_UNIFIED_MEMORY | VNRT_CAP_STATE_INPLACE |
                   VNRT_CAP_RESHAPE_VIEW;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  out_info->compute_units = cores > 0 ? (uint32_t)cores : 1;
  out_info->subgroup_size = 0;
  out_info->max_workgroup_size = 1;
#ifdef _SC_LEVEL1_DCACHE_SIZE
  long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  if (l1 > 0) out_info->shared_memory_bytes = (uint64_t)l1;
#endif
  return VNRT_OK;
}

static vnrt_status cpu_device_open_(void *state, uint32_t index, vnrt_backend_device **out_device) {
  *out_device = NULL;
  const vnrt_backend_host *host = ((cpu_state *)state)->host;
  if (index != 0) {
    return host->error(host->core, VNRT_ERROR_NOT_FOUND,
                       "cpu: no device %" PRIu32 " (the cpu backend has one device, 0)", index);
  }
  vnrt_backend_device *device = host->alloc(host->core, sizeof *device);
  if (!device) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu: out of memory");
  memset(device, 0, sizeof *device);
  device->host = host;
  device->pool = NULL;
  device->profile = vnrt_host_option_flag(host, "cpu_profile", 0);
  device->huge_pages = vnrt_host_option_flag(host, "cpu_huge_pages", 1);
  vnrt_status s = cpu_pool_create(host, host->num_threads, &device->pool);
  if (s != VNRT_OK) {
    host->free(host->core, device);
    return s;
  }
  *out_device = device;
  return VNRT_OK;
}

/* The cpu_profile table (VNRT_CPU_PROFILE): per op, total time, calls and share, largest
 * first, as info lines through the context's log callback. */
static void cpu_profile_print_(vnrt_backend_device *device) {
  uint64_t total = 0;
  int32_t order[VNRT_OP_COUNT], n = 0;
  for (int32_t op = 0; op < VNRT_OP_COUNT; ++op) {
    uint64_t ns = atomic_load(&device->op_ns[op]);
    if (atomic_load(&device->op_calls[op]) == 0) continue;
    total += ns;
    int32_t i = n++;
    while (i > 0 && atomic_load(&device->op_ns[order[i - 1]]) < ns) order[i] = order[i - 1], --i;
    order[i] = op;
  }
  if (n == 0) return;
  const vnrt_backend_host *host = device->host;
  host->log(host->core, VNRT_LOG_INFO, "cpu profile (%d threads): %.3f ms in kernels",
            (int)cpu_pool_threads(device->pool), 1e-6 * (double)total);
  host->log(host->core, VNRT_LOG_INFO, "  %-16s %10s %10s %10s %6s", "op", "ms", "calls", "us/call",
            "share");
  for (int32_t i = 0; i < n; ++i) {
    const char *name = vnrt_op_name((vnrt_op)order[i]);
    double ns = (double)atomic_load(&device->op_ns[order[i]]);
    double calls = (double)atomic_load(&device->op_calls[order[i]]);
    host->log(host->core, VNRT_LOG_INFO, "  %-16s %10.3f %10.0f %10.2f %5.1f%%", name ? name : "?",
              1e-6 * ns, calls, 1e-3 * ns / calls, total ? 100.0 * ns / (double)total : 0.0);
  }
}

static void cpu_device_close_(vnrt_backend_device *device) {
  if (!device) return;
  if (device->profile) cpu_profile_print_(device);
  cpu_pool_destroy(device->pool);
  device->host->free(device->host->core, device);
}

static vnrt_status cpu_buffer_alloc_(vnrt_backend_device *device, uint64_t bytes,
                                     vnrt_backend_buffer **out_buffer) {
  *out_buffer = NULL;
  const vnrt_backend_host *host = device->host;
  /* Over-allocate and align by hand: the host allocator owns every byte, and it promises no
   * more than malloc's alignment. The extra CPU_BUFFER_ALIGN also makes a 0-byte buffer real. */
  if (bytes > (uint64_t)SIZE_MAX - CPU_BUFFER_ALIGN) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "cpu: buffer of %" PRIu64 " bytes exceeds the address space", bytes);
  }
  vnrt_backend_buffer *buffer = host->alloc(host->core, sizeof *buffer);
  if (!buffer) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu: out of memory");
  uint64_t align = CPU_BUFFER_ALIGN;
  /* Buffers of VNRT_HUGE_MIN_BYTES and more start on a huge-page boundary and ask for
   * transparent huge pages (vnrt_advise_huge_pages; THP's "madvise" mode is Debian's default). */
#ifdef MADV_HUGEPAGE
  if (bytes >= VNRT_HUGE_MIN_BYTES && bytes <= (uint64_t)SIZE_MAX - VNRT_HUGE_PAGE_BYTES &&
      device->huge_pages) {
    align = VNRT_HUGE_PAGE_BYTES;
  }
#endif
  buffer->raw = host->alloc(host->core, (size_t)(bytes + align));
  if (!buffer->raw) {
    host->free(host->core, buffer);
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "cpu: cannot allocate a buffer of %" PRIu64 " bytes", bytes);
  }
  uintptr_t p = (uintptr_t)buffer->raw;
  p = (p + align - 1) & ~(uintptr_t)(align - 1);
  buffer->data = (uint8_t *)p;
  /* Advice only: where THP is off or the allocator's memory is not anonymous, nothing changes. */
  if (align == VNRT_HUGE_PAGE_BYTES) vnrt_advise_huge_pages(buffer->data, bytes);
  buffer->size = bytes;
  *out_buffer = buffer;
  return VNRT_OK;
}

static void cpu_buffer_free_(vnrt_backend_device *device, vnrt_backend_buffer *buffer) {
  if (!buffer) return;
  device->host->free(device->host->core, buffer->raw);
  device->host->free(device->host->core, buffer);
}

static void *cpu_buffer_host_ptr_(vnrt_backend_device *device, vnrt_backend_buffer *buffer) {
  return buffer ? buffer->data : NULL;
}

static vnrt_status cpu_check_range_(vnrt_backend_device *device, const vnrt_backend_buffer *buffer,
                                    const char *what, uint64_t offset, uint64_t bytes) {
  if (offset > buffer->size || bytes > buffer->size - offset) {
    return device->host->error(device->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                               "cpu buffer %s: offset %" PRIu64 " + %" PRIu64
                               " bytes is past the buffer's size of %" PRIu64 " bytes",
                               what, offset, bytes, buffer->size);
  }
  return VNRT_OK;
}

static vnrt_status cpu_buffer_write_(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                     uint64_t offset, const void *src, uint64_t bytes) {
  vnrt_status s = cpu_check_range_(device, buffer, "write", offset, bytes);
  if (s != VNRT_OK) return s;
  if (bytes) memcpy(buffer->data + offset, src, (size_t)bytes);
  return VNRT_OK;
}

static vnrt_status cpu_buffer_read_(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                    uint64_t offset, void *dst, uint64_t bytes) {
  vnrt_status s = cpu_check_range_(device, buffer, "read", offset, bytes);
  if (s != VNRT_OK) return s;
  if (bytes) memcpy(dst, buffer->data + offset, (size_t)bytes);
  return VNRT_OK;
}

static int cpu_supports_node_(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                              int32_t node) {
  if (!graph || node < 0 || node >= graph->n_nodes) return 0;
  return cpu_op_kernel(graph->nodes[node].op, graph->kernels) != NULL;
}

/* Resolves tensor t of graph to its data pointer, checking it lies inside its buffer. */
static vnrt_status cpu_tensor_data_(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                                    const vnrt_backend_node *node, int32_t t, void **out_data) {
  const vnrt_backend_host *host = device->host;
  *out_data = NULL;
  if (t < 0 || t >= graph->n_tensors) {
    return host->error(host->core, VNRT_ERROR_INTERNAL,
                       "cpu compile: node '%s' refers to tensor %d of %d", node->name, (int)t,
                       (int)graph->n_tensors);
  }
  const vnrt_backend_tensor *tensor = &graph->tensors[t];
  uint64_t bytes = vnrt_tensor_type_bytes(&tensor->type);
  if (!tensor->buffer) {
    if (bytes == 0) return VNRT_OK;
    return host->error(host->core, VNRT_ERROR_INTERNAL,
                       "cpu compile: tensor '%s' of node '%s' has no buffer", tensor->name,
                       node->name);
  }
  const vnrt_backend_buffer *buffer = tensor->buffer;
  if (tensor->offset > buffer->size || bytes > buffer->size - tensor->offset) {
    return host->error(host->core, VNRT_ERROR_INTERNAL,
                       "cpu compile: tensor '%s' of node '%s' (%" PRIu64 " bytes at offset %" PRIu64
                       ") is past its buffer's %" PRIu64 " bytes",
                       tensor->name, node->name, bytes, tensor->offset, buffer->size);
  }
  *out_data = buffer->data + tensor->offset;
  return VNRT_OK;
}

static void cpu_exec_destroy_(vnrt_backend_exec *exec) {
  if (!exec) return;
  const vnrt_backend_host *host = exec->device->host;
  if (exec->nodes) host->free(host->core, exec->nodes);
  host->free(host->core, exec);
}

/* The weight a decode-like node streams: input 1 of linear, grouped_linear or hc_pre (its f32
 * mixing projection) when it is at least 64 KiB and 16 times the activation (prefill, which
 * reuses each weight byte across many rows, is left alone). Its bytes in *bytes; NULL when the
 * node has none. */
static const void *cpu_streamed_weight_(const cpu_kernel_args *a, int64_t *bytes) {
  const vnrt_op op = a->node->op;
  if ((op != VNRT_OP_LINEAR && op != VNRT_OP_GROUPED_LINEAR && op != VNRT_OP_HC_PRE) ||
      a->n_in < 2) {
    return NULL;
  }
  const int64_t w = (int64_t)vnrt_tensor_type_bytes(a->in_type[1]);
  const int64_t x = (int64_t)vnrt_tensor_type_bytes(a->in_type[0]);
  if (w < (64 << 10) || w < 16 * x) return NULL;
  *bytes = w;
  return a->in[1];
}

/* Fills every streaming node's prefetch list: the weights of the streamed linears after it, in
 * order (wrapping round to the graph's start: a decode plan runs again for the next token), up
 * to the pool's budget. Best effort: without memory for its scratch array it plans nothing. */
static void cpu_plan_prefetch_(vnrt_backend_exec *exec) {
  cpu_pool *pool = exec->device->pool;
  const vnrt_backend_host *host = exec->device->host;
  const int64_t budget = cpu_pool_prefetch_budget(pool);
  const int32_t n = exec->n_nodes;
  if (budget <= 0 || n <= 0) return;
  /* Each node's streamed weight (NULL: none), then next[i]: the first node after i
   * (cyclically) with one, -1 where none. */
  cpu_prefetch_range *w = host->alloc(host->core, sizeof *w * (size_t)n);
  int32_t *next = host->alloc(host->core, sizeof *next * (size_t)n);
  if (w && next) {
    const int32_t parts = cpu_pool_threads(pool);
    for (int32_t i = 0; i < n; ++i) {
      w[i] = (cpu_prefetch_range){NULL, 0, parts};
      if (!exec->nodes[i].empty) {
        w[i].data = cpu_streamed_weight_(&exec->nodes[i].args, &w[i].bytes);
      }
    }
    int32_t seen = -1;
    for (int pass = 0; pass < 2; ++pass) {
      for (int32_t i = n - 1; i >= 0; --i) {
        next[i] = seen;
        if (w[i].data) seen = i;
      }
    }
    for (int32_t i = 0; i < n; ++i) {
      cpu_exec_node *en = &exec->nodes[i];
      en->streams = w[i].data || en->args.node->op == VNRT_OP_MOE_FFN;
      int64_t left = budget;
      for (int32_t j = next[i];
           en->streams && j >= 0 && left > 0 && en->n_prefetch < CPU_POOL_PREFETCH_RANGES;
           j = next[j]) {
        if (en->n_prefetch > 0 && j == next[i]) break; /* round the whole graph already */
        cpu_prefetch_range r = w[j];
        if (r.bytes > left) r.bytes = left;
        en->prefetch[en->n_prefetch++] = r;
        left -= r.bytes;
      }
    }
  }
  if (w) host->free(host->core, w);
  if (next) host->free(host->core, next);
}

static vnrt_status cpu_compile_(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                                vnrt_backend_exec **out_exec) {
  *out_exec = NULL;
  const vnrt_backend_host *host = device->host;
  vnrt_backend_exec *exec = host->alloc(host->core, sizeof *exec);
  if (!exec) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu: out of memory");
  exec->device = device;
  exec->n_nodes = graph->n_nodes;
  exec->nodes = NULL;
  if (graph->n_nodes > 0) {
    exec->nodes = host->alloc(host->core, sizeof(cpu_exec_node) * (size_t)graph->n_nodes);
    if (!exec->nodes) {
      cpu_exec_destroy_(exec);
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu: out of memory");
    }
    memset(exec->nodes, 0, sizeof(cpu_exec_node) * (size_t)graph->n_nodes);
  }
  for (int32_t i = 0; i < graph->n_nodes; ++i) {
    const vnrt_backend_node *node = &graph->nodes[i];
    cpu_exec_node *en = &exec->nodes[i];
    en->fn = cpu_op_kernel(node->op, graph->kernels);
    if (!en->fn) {
      const char *op = vnrt_op_name(node->op);
      cpu_exec_destroy_(exec);
      return host->error(host->core, VNRT_ERROR_UNSUPPORTED,
                         "cpu: no kernel for op '%s' (node '%s')", op ? op : "?", node->name);
    }
    if (node->n_inputs < 0 || node->n_inputs > VNRT_MAX_NODE_INPUTS || node->n_outputs < 0 ||
        node->n_outputs > VNRT_MAX_NODE_OUTPUTS) {
      cpu_exec_destroy_(exec);
      return host->error(host->core, VNRT_ERROR_INTERNAL,
                         "cpu compile: node '%s' has %d inputs and %d outputs", node->name,
                         (int)node->n_inputs, (int)node->n_outputs);
    }
    cpu_kernel_args *a = &en->args;
    a->node = node;
    a->n_in = node->n_inputs;
    a->n_out = node->n_outputs;
    a->pool = device->pool;
    a->host = host;
    vnrt_status s = VNRT_OK;
    for (int32_t j = 0; s == VNRT_OK && j < node->n_inputs; ++j) {
      void *data = NULL;
      s = cpu_tensor_data_(device, graph, node, node->inputs[j], &data);
      if (s == VNRT_OK) {
        a->in[j] = data;
        a->in_type[j] = &graph->tensors[node->inputs[j]].type;
      }
    }
    for (int32_t j = 0; s == VNRT_OK && j < node->n_outputs; ++j) {
      s = cpu_tensor_data_(device, graph, node, node->outputs[j], &a->out[j]);
      if (s == VNRT_OK) a->out_type[j] = &graph->tensors[node->outputs[j]].type;
    }
    if (s != VNRT_OK) {
      cpu_exec_destroy_(exec);
      return s;
    }
    en->empty = cpu_outputs_empty(a);
  }
  cpu_plan_prefetch_(exec);
  *out_exec = exec;
  return VNRT_OK;
}

/* Runs nodes [first, first + count); with out_ns (run_timed), out_ns[i] is node first + i's
 * time on the monotonic clock around its kernel. */
static vnrt_status cpu_run_nodes_(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                  uint64_t *out_ns) {
  const vnrt_backend_host *host = exec->device->host;
  if (first < 0 || count < 0 || first > exec->n_nodes || count > exec->n_nodes - first) {
    return host->error(host->core, VNRT_ERROR_INTERNAL,
                       "cpu run: nodes [%d, %d) outside the compiled %d nodes", (int)first,
                       (int)first + (int)count, (int)exec->n_nodes);
  }
  vnrt_backend_device *device = exec->device;
  /* cpu_affinity: this thread on its own core for the run (cpu_pool.h). */
  cpu_pool_binding bind = {0};
  if (count > 0) cpu_pool_bind_caller(device->pool, &bind);
  for (int32_t i = first; i < first + count; ++i) {
    const cpu_exec_node *en = &exec->nodes[i];
    struct timespec t0, t1;
    bool timed = device->profile || out_ns;
    if (out_ns) out_ns[i - first] = 0;
    if (en->empty) continue; /* an f32[1e12, 0] result must not loop over its 1e12 rows */
    if (en->streams) cpu_pool_prefetch(device->pool, en->prefetch, en->n_prefetch);
    if (timed) clock_gettime(CLOCK_MONOTONIC, &t0);
    vnrt_status s = en->fn(&en->args);
    if (s != VNRT_OK) { /* the kernel reported its detail through host->error */
      cpu_pool_unbind_caller(&bind);
      return s;
    }
    if (timed) {
      clock_gettime(CLOCK_MONOTONIC, &t1);
      int64_t ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
      if (ns < 0) ns = 0;
      if (out_ns) out_ns[i - first] = (uint64_t)ns;
      vnrt_op op = en->args.node->op;
      if (device->profile && (int)op >= 0 && op < VNRT_OP_COUNT) {
        atomic_fetch_add(&device->op_ns[op], (uint_fast64_t)ns);
        atomic_fetch_add(&device->op_calls[op], 1);
      }
    }
  }
  cpu_pool_unbind_caller(&bind);
  return VNRT_OK;
}

static vnrt_status cpu_run_(vnrt_backend_exec *exec, int32_t first, int32_t count) {
  return cpu_run_nodes_(exec, first, count, NULL);
}

/* The CPU's device time is the clock around each kernel (its worker threads included). */
static vnrt_status cpu_run_timed_(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                  uint64_t *out_ns) {
  return cpu_run_nodes_(exec, first, count, out_ns);
}

static const vnrt_backend_i cpu_backend_ = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = VNRT_BACKEND_API_VERSION,
    .name = "cpu",
    .init = cpu_init_,
    .shutdown = cpu_shutdown_,
    .device_count = cpu_device_count_,
    .device_info = cpu_device_info_,
    .device_open = cpu_device_open_,
    .device_close = cpu_device_close_,
    .buffer_alloc = cpu_buffer_alloc_,
    .buffer_free = cpu_buffer_free_,
    .buffer_host_ptr = cpu_buffer_host_ptr_,
    .buffer_write = cpu_buffer_write_,
    .buffer_read = cpu_buffer_read_,
    .supports_node = cpu_supports_node_,
    .compile = cpu_compile_,
    .run = cpu_run_,
    .exec_destroy = cpu_exec_destroy_,
    .maturity = VNRT_BACKEND_STABLE,
    .run_timed = cpu_run_timed_,
};

const vnrt_backend_i *cpu_backend_get(void) { return &cpu_backend_; }
