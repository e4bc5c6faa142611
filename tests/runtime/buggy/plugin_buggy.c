/* A test plugin with a wrong kernel, for shadow mode (vnrt/inspect.h): device "buggy:0" runs
 * elementwise add, mul and silu on f32 tensors of one shape, and add on bf16 ones (rounded to
 * nearest even), in host memory, and gets them right — except the node whose name is
 * $VNRT_BUGGY_NODE (or every node of the op named by $VNRT_BUGGY_OP), whose result has its
 * first element off by 0.5. Shadow mode must name that node and no other. With
 * $VNRT_BUGGY_STEPS=N a buggy bf16 result instead has every N-th element one bf16 step up: a
 * rounding that went the other way (N large: what two correct kernels may differ by, within
 * vnrt_result_tolerance) or a systematic one (N = 2: a truncating kernel, beyond it). With
 * $VNRT_BUGGY_DECLINE_TIMER set when the plugin loads, its table has a run_timed slot that declines
 * (a device without a timer): profiled plans must fall back to the host clock. Built like a vendor
 * plugin: the public headers only. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/backend.h"

typedef struct bug_state {
  const vnrt_backend_host *host;
} bug_state;

struct vnrt_backend_device {
  bug_state *state;
};

struct vnrt_backend_buffer {
  void *raw;
  uint8_t *data; /* raw rounded up to 256 bytes */
  uint64_t bytes;
};

struct vnrt_backend_exec {
  vnrt_backend_device *device;
  const vnrt_backend_graph *graph;
};

static vnrt_status bug_init(const vnrt_backend_host *host, void **out_state) {
  bug_state *s = host->alloc(host->core, sizeof *s);
  *out_state = s;
  if (!s) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "buggy: out of memory");
  s->host = host;
  return VNRT_OK;
}

static void bug_shutdown(void *state) {
  bug_state *s = state;
  if (s) s->host->free(s->host->core, s);
}

static uint32_t bug_device_count(void *state) { return state ? 1 : 0; }

static vnrt_status bug_device_info(void *state, uint32_t index, vnrt_backend_device_info *out) {
  bug_state *s = state;
  memset(out, 0, sizeof *out);
  if (index != 0) return s->host->error(s->host->core, VNRT_ERROR_NOT_FOUND, "buggy: no device");
  strcpy(out->backend, "buggy");
  strcpy(out->name, "buggy (a wrong kernel for shadow mode tests)");
  strcpy(out->driver, "vnrt test plugin");
  strcpy(out->spec, "buggy:0");
  out->type = VNRT_DEVICE_TYPE_SOFTWARE; /* never chosen by "auto" over a real device */
  out->memory_bytes = 1ull << 32;
  out->max_buffer_bytes = 1ull << 32;
  out->caps = VNRT_CAP_UNIFIED_MEMORY;
  out->compute_units = 1;
  out->max_workgroup_size = 1;
  return VNRT_OK;
}

static vnrt_status bug_device_open(void *state, uint32_t index, vnrt_backend_device **out) {
  bug_state *s = state;
  *out = NULL;
  if (index != 0) return s->host->error(s->host->core, VNRT_ERROR_NOT_FOUND, "buggy: no device");
  vnrt_backend_device *d = s->host->alloc(s->host->core, sizeof *d);
  if (!d) return s->host->error(s->host->core, VNRT_ERROR_OUT_OF_MEMORY, "buggy: out of memory");
  d->state = s;
  *out = d;
  return VNRT_OK;
}

static void bug_device_close(vnrt_backend_device *d) {
  if (d) d->state->host->free(d->state->host->core, d);
}

static vnrt_status bug_buffer_alloc(vnrt_backend_device *d, uint64_t bytes,
                                    vnrt_backend_buffer **out) {
  const vnrt_backend_host *h = d->state->host;
  *out = NULL;
  if (bytes > (1ull << 40)) return h->error(h->core, VNRT_ERROR_OUT_OF_MEMORY, "buggy: too big");
  vnrt_backend_buffer *b = h->alloc(h->core, sizeof *b);
  if (!b) return h->error(h->core, VNRT_ERROR_OUT_OF_MEMORY, "buggy: out of memory");
  b->raw = h->alloc(h->core, (size_t)bytes + 256);
  if (!b->raw) {
    h->free(h->core, b);
    return h->error(h->core, VNRT_ERROR_OUT_OF_MEMORY, "buggy: out of memory");
  }
  b->data = (uint8_t *)(((uintptr_t)b->raw + 255) & ~(uintptr_t)255);
  b->bytes = bytes;
  *out = b;
  return VNRT_OK;
}

static void bug_buffer_free(vnrt_backend_device *d, vnrt_backend_buffer *b) {
  if (!b) return;
  d->state->host->free(d->state->host->core, b->raw);
  d->state->host->free(d->state->host->core, b);
}

static void *bug_host_ptr(vnrt_backend_device *d, vnrt_backend_buffer *b) {
  (void)d;
  return b ? b->data : NULL;
}

static vnrt_status bug_write(vnrt_backend_device *d, vnrt_backend_buffer *b, uint64_t off,
                             const void *src, uint64_t bytes) {
  if (off > b->bytes || bytes > b->bytes - off) {
    return d->state->host->error(d->state->host->core, VNRT_ERROR_OUT_OF_RANGE, "buggy: write");
  }
  if (bytes) memcpy(b->data + off, src, (size_t)bytes);
  return VNRT_OK;
}

static vnrt_status bug_read(vnrt_backend_device *d, vnrt_backend_buffer *b, uint64_t off, void *dst,
                            uint64_t bytes) {
  if (off > b->bytes || bytes > b->bytes - off) {
    return d->state->host->error(d->state->host->core, VNRT_ERROR_OUT_OF_RANGE, "buggy: read");
  }
  if (bytes) memcpy(dst, b->data + off, (size_t)bytes);
  return VNRT_OK;
}

static int same_f32(const vnrt_tensor_type *a, const vnrt_tensor_type *b) {
  if (a->dtype != VNRT_F32 || b->dtype != VNRT_F32 || a->rank != b->rank) return 0;
  for (int32_t i = 0; i < a->rank; ++i) {
    if (a->dims[i] != b->dims[i]) return 0;
  }
  return 1;
}

static int same_bf16(const vnrt_tensor_type *a, const vnrt_tensor_type *b) {
  vnrt_tensor_type fa = *a, fb = *b;
  if (a->dtype != VNRT_BF16 || b->dtype != VNRT_BF16) return 0;
  fa.dtype = fb.dtype = VNRT_F32;
  return same_f32(&fa, &fb);
}

static int bug_supports(vnrt_backend_device *d, const vnrt_backend_graph *g, int32_t node) {
  (void)d;
  const vnrt_backend_node *n = &g->nodes[node];
  const vnrt_tensor_type *out = &g->tensors[n->outputs[0]].type;
  if (n->op == VNRT_OP_ADD && out->dtype == VNRT_BF16) {
    return same_bf16(&g->tensors[n->inputs[0]].type, out) &&
           same_bf16(&g->tensors[n->inputs[1]].type, out);
  }
  if (n->op == VNRT_OP_SILU) return same_f32(&g->tensors[n->inputs[0]].type, out);
  if (n->op != VNRT_OP_ADD && n->op != VNRT_OP_MUL) return 0;
  return same_f32(&g->tensors[n->inputs[0]].type, out) &&
         same_f32(&g->tensors[n->inputs[1]].type, out);
}

static vnrt_status bug_compile(vnrt_backend_device *d, const vnrt_backend_graph *g,
                               vnrt_backend_exec **out) {
  const vnrt_backend_host *h = d->state->host;
  vnrt_backend_exec *e = h->alloc(h->core, sizeof *e);
  *out = e;
  if (!e) return h->error(h->core, VNRT_ERROR_OUT_OF_MEMORY, "buggy: out of memory");
  e->device = d;
  e->graph = g;
  return VNRT_OK;
}

static float *tensor_f32(const vnrt_backend_graph *g, int32_t t) {
  return (float *)(g->tensors[t].buffer->data + g->tensors[t].offset);
}

static int is_buggy(const vnrt_backend_node *n) {
  const char *node = getenv("VNRT_BUGGY_NODE"), *op = getenv("VNRT_BUGGY_OP");
  if (node && n->name && strcmp(node, n->name) == 0) return 1;
  return op && ((n->op == VNRT_OP_ADD && !strcmp(op, "add")) ||
                (n->op == VNRT_OP_MUL && !strcmp(op, "mul")) ||
                (n->op == VNRT_OP_SILU && !strcmp(op, "silu")));
}

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint16_t f32_to_bf16(float f) { /* nearest, ties to even; the inputs here are finite */
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* bf16 add: y = bf16(a + b); a buggy node per $VNRT_BUGGY_STEPS, or its first element + 0.5. */
static void bug_add_bf16(const vnrt_backend_graph *g, const vnrt_backend_node *n, int64_t numel) {
  const vnrt_backend_tensor *ta = &g->tensors[n->inputs[0]], *tb = &g->tensors[n->inputs[1]];
  const vnrt_backend_tensor *ty = &g->tensors[n->outputs[0]];
  const uint16_t *a = (const uint16_t *)(ta->buffer->data + ta->offset);
  const uint16_t *b = (const uint16_t *)(tb->buffer->data + tb->offset);
  uint16_t *y = (uint16_t *)(ty->buffer->data + ty->offset);
  for (int64_t i = 0; i < numel; ++i) y[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
  if (numel == 0 || !is_buggy(n)) return;
  const char *steps = getenv("VNRT_BUGGY_STEPS");
  const long every = steps ? strtol(steps, NULL, 10) : 0;
  if (every <= 0) {
    y[0] = f32_to_bf16(bf16_to_f32(y[0]) + 0.5f);
    return;
  }
  for (int64_t i = 0; i < numel; i += every) {
    /* one step away from 0 (the largest finite value stays: its step up is infinity) */
    if ((y[i] & 0x7fffu) < 0x7f7fu) y[i] = (uint16_t)(y[i] + 1u);
  }
}

static vnrt_status bug_run(vnrt_backend_exec *e, int32_t first, int32_t count) {
  const vnrt_backend_graph *g = e->graph;
  for (int32_t k = first; k < first + count; ++k) {
    const vnrt_backend_node *n = &g->nodes[k];
    const vnrt_tensor_type *t = &g->tensors[n->outputs[0]].type;
    int64_t numel = 1;
    for (int32_t i = 0; i < t->rank; ++i) numel *= t->dims[i];
    if (t->dtype == VNRT_BF16) {
      bug_add_bf16(g, n, numel);
      continue;
    }
    float *y = tensor_f32(g, n->outputs[0]);
    const float *a = tensor_f32(g, n->inputs[0]);
    const float *b = n->op == VNRT_OP_SILU ? NULL : tensor_f32(g, n->inputs[1]);
    for (int64_t i = 0; i < numel; ++i) {
      y[i] = n->op == VNRT_OP_ADD   ? a[i] + b[i]
             : n->op == VNRT_OP_MUL ? a[i] * b[i]
                                    : a[i] / (1.0f + expf(-a[i]));
    }
    if (numel > 0 && is_buggy(n)) y[0] += 0.5f; /* the injected bug */
  }
  return VNRT_OK;
}

static vnrt_status bug_run_timed(vnrt_backend_exec *e, int32_t first, int32_t count,
                                 uint64_t *out_ns) {
  (void)first, (void)count, (void)out_ns;
  const vnrt_backend_host *host = e->device->state->host;
  return host->error(host->core, VNRT_ERROR_UNSUPPORTED, "buggy: this device has no timer");
}

static void bug_exec_destroy(vnrt_backend_exec *e) {
  if (e) e->device->state->host->free(e->device->state->host->core, e);
}

static const vnrt_backend_i bug_backend = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = VNRT_BACKEND_API_VERSION,
    .name = "buggy",
    .init = bug_init,
    .shutdown = bug_shutdown,
    .device_count = bug_device_count,
    .device_info = bug_device_info,
    .device_open = bug_device_open,
    .device_close = bug_device_close,
    .buffer_alloc = bug_buffer_alloc,
    .buffer_free = bug_buffer_free,
    .buffer_host_ptr = bug_host_ptr,
    .buffer_write = bug_write,
    .buffer_read = bug_read,
    .supports_node = bug_supports,
    .compile = bug_compile,
    .run = bug_run,
    .exec_destroy = bug_exec_destroy,
};

__attribute__((visibility("default"))) const vnrt_backend_i *vnrt_backend_entry_v1(uint32_t v);

const vnrt_backend_i *vnrt_backend_entry_v1(uint32_t v) {
  static vnrt_backend_i declining; /* bug_backend with a run_timed that declines */
  if (v < VNRT_BACKEND_API_VERSION) return NULL;
  if (!getenv("VNRT_BUGGY_DECLINE_TIMER")) return &bug_backend;
  declining = bug_backend;
  declining.run_timed = bug_run_timed;
  return &declining;
}
