/* Device calls with counting and fault injection (fault.h, docs/robustness.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "registry.h"

static const char *const point_names[VN_FAULT_POINTS] = {"open", "alloc",   "write", "read",
                                                         "map",  "compile", "run"};

/* What each point is in the backend interface, for messages. */
static const char *const point_calls[VN_FAULT_POINTS] = {
    "device_open",     "buffer_alloc", "buffer_write", "buffer_read",
    "buffer_host_ptr", "compile",      "run"};

const char *vn_fault_point_name(vn_fault_point point) {
  return (unsigned)point < VN_FAULT_POINTS ? point_names[point] : NULL;
}

vnrt_status vn_fault_set(vnrt_device *device, vn_fault_point point, int64_t nth, bool lose) {
  if (!device || (unsigned)point >= VN_FAULT_POINTS || nth < 1) {
    return vn_error(device ? device->ctx : NULL, VNRT_ERROR_INVALID_ARGUMENT,
                    "vn_fault_set: needs a device, a point and nth >= 1");
  }
  vn_fault_state *f = &device->fault;
  atomic_store(&f->lose[point], lose);
  atomic_store(&f->fail_at[point], atomic_load(&f->calls[point]) + nth);
  return VNRT_OK;
}

void vn_fault_clear(vnrt_device *device) {
  vn_fault_state *f = &device->fault;
  for (int32_t i = 0; i < VN_FAULT_POINTS; ++i) {
    atomic_store(&f->fail_at[i], 0);
    atomic_store(&f->lose[i], false);
  }
  atomic_store(&f->lost, false);
}

int64_t vn_fault_calls(const vnrt_device *device, vn_fault_point point) {
  return (unsigned)point < VN_FAULT_POINTS ? atomic_load(&device->fault.calls[point]) : 0;
}

void vn_fault_live(const vnrt_device *device, int64_t *out_buffers, int64_t *out_execs) {
  if (out_buffers) *out_buffers = atomic_load(&device->fault.live_buffers);
  if (out_execs) *out_execs = atomic_load(&device->fault.live_execs);
}

/* Counts a call of point on device; returns VNRT_OK, or the injected failure, with its message
 * unless quiet. May run on the copy stream's thread: the counts are atomic, and the message goes
 * where a backend's own would (the context's last error, which the copy stream reports). */
static vnrt_status enter(vnrt_device *device, vn_fault_point point, bool quiet) {
  vn_fault_state *f = &device->fault;
  int64_t n = atomic_fetch_add_explicit(&f->calls[point], 1, memory_order_relaxed) + 1;
  bool lost = atomic_load_explicit(&f->lost, memory_order_relaxed);
  if (!lost && atomic_load_explicit(&f->fail_at[point], memory_order_relaxed) != n) {
    return VNRT_OK;
  }
  if (!lost && atomic_load(&f->lose[point])) {
    atomic_store(&f->lost, true);
    lost = true;
  }
  vnrt_status s = point == VN_FAULT_ALLOC && !lost ? VNRT_ERROR_OUT_OF_MEMORY : VNRT_ERROR_DEVICE;
  if (quiet) return s;
  if (lost) {
    return vn_error(device->ctx, s,
                    "device %s is lost (injected fault): %s (call %lld of %s) refused",
                    device->info.spec, point_calls[point], (long long)n, point_names[point]);
  }
  return vn_error(device->ctx, s, "device %s: %s failed (injected fault at call %lld of %s)",
                  device->info.spec, point_calls[point], (long long)n, point_names[point]);
}

vnrt_status vn_dev_open(vnrt_device *device, vnrt_backend_device **out) {
  *out = NULL;
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_OPEN, false));
  vn_backend *b = device->backend;
  return b->iface->device_open(b->state, device->index, out);
}

vnrt_status vn_dev_alloc(vnrt_device *device, uint64_t bytes, vnrt_backend_buffer **out) {
  *out = NULL;
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_ALLOC, false));
  vnrt_status s = device->backend->iface->buffer_alloc(device->opened, bytes, out);
  if (s == VNRT_OK) atomic_fetch_add(&device->fault.live_buffers, 1);
  if (s != VNRT_OK) *out = NULL;
  return s;
}

void vn_dev_free(vnrt_device *device, vnrt_backend_buffer *buffer) {
  if (!buffer) return;
  device->backend->iface->buffer_free(device->opened, buffer);
  atomic_fetch_sub(&device->fault.live_buffers, 1);
}

void *vn_dev_map(vnrt_device *device, vnrt_backend_buffer *buffer) {
  const vnrt_backend_i *i = device->backend->iface;
  if (!i->buffer_host_ptr) return NULL; /* no mapping to fail: not counted */
  /* A failed map is no error for the caller: it copies through buffer_read and buffer_write
   * instead (so no message either). */
  if (enter(device, VN_FAULT_MAP, true) != VNRT_OK) return NULL;
  return i->buffer_host_ptr(device->opened, buffer);
}

vnrt_status vn_dev_write(vnrt_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                         const void *src, uint64_t bytes) {
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_WRITE, false));
  return device->backend->iface->buffer_write(device->opened, buffer, offset, src, bytes);
}

vnrt_status vn_dev_write_async(vnrt_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                               const void *src, uint64_t bytes, const vnrt_backend_sync *sync) {
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_WRITE, false));
  return device->backend->iface->buffer_write_async(device->opened, buffer, offset, src, bytes,
                                                    sync);
}

vnrt_status vn_dev_read(vnrt_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                        void *dst, uint64_t bytes) {
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_READ, false));
  return device->backend->iface->buffer_read(device->opened, buffer, offset, dst, bytes);
}

vnrt_status vn_dev_compile(vnrt_device *device, const vnrt_backend_graph *graph,
                           vnrt_backend_exec **out) {
  *out = NULL;
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_COMPILE, false));
  vnrt_status s = device->backend->iface->compile(device->opened, graph, out);
  if (s == VNRT_OK) atomic_fetch_add(&device->fault.live_execs, 1);
  if (s != VNRT_OK) *out = NULL;
  return s;
}

vnrt_status vn_dev_run(vnrt_device *device, vnrt_backend_exec *exec, int32_t first, int32_t count) {
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_RUN, false));
  return device->backend->iface->run(exec, first, count);
}

vnrt_status vn_dev_run_timed(vnrt_device *device, vnrt_backend_exec *exec, int32_t first,
                             int32_t count, uint64_t *out_ns) {
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_RUN, false));
  return device->backend->iface->run_timed(exec, first, count, out_ns);
}

vnrt_status vn_dev_run_async(vnrt_device *device, vnrt_backend_exec *exec, int32_t first,
                             int32_t count, const vnrt_backend_sync *sync) {
  VN_RETURN_IF_ERROR(enter(device, VN_FAULT_RUN, false));
  return device->backend->iface->run_async(exec, first, count, sync);
}

void vn_dev_exec_destroy(vnrt_device *device, vnrt_backend_exec *exec) {
  if (!exec) return;
  device->backend->iface->exec_destroy(exec);
  atomic_fetch_sub(&device->fault.live_execs, 1);
}

/* ---- $VNRT_FAULT_INJECT ---------------------------------------------------------------- */

/* One entry: SPEC/POINT/N or SPEC/POINT/N/lost. Returns false when malformed. */
static bool parse_entry(vnrt_context *ctx, const char *entry, size_t len) {
  char buf[128];
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, entry, len);
  buf[len] = '\0';
  char *field[5] = {buf};
  int32_t n = 1;
  for (char *c = buf; *c; ++c) {
    if (*c != '/') continue;
    if (n == 5) return false;
    *c = '\0';
    field[n++] = c + 1;
  }
  if (n < 3 || n > 4 || !field[0][0]) return false;
  if (n == 4 && strcmp(field[3], "lost") != 0) return false;
  int32_t point = -1;
  for (int32_t i = 0; i < VN_FAULT_POINTS; ++i) {
    if (strcmp(field[1], point_names[i]) == 0) point = i;
  }
  char *end = NULL;
  long long nth = strtoll(field[2], &end, 10);
  if (point < 0 || !field[2][0] || *end || nth < 1) return false;
  for (int32_t d = 0; d < ctx->registry->n_devices; ++d) {
    vnrt_device *dev = &ctx->registry->devices[d];
    if (strcmp(dev->info.spec, field[0]) != 0) continue;
    vn_fault_set(dev, (vn_fault_point)point, nth, n == 4);
    vn_log(ctx, VNRT_LOG_WARN, "VNRT_FAULT_INJECT: call %lld of %s on %s will fail%s", nth,
           point_names[point], dev->info.spec, n == 4 ? " and lose the device" : "");
    return true;
  }
  vn_log(ctx, VNRT_LOG_WARN, "VNRT_FAULT_INJECT: no device '%s' here: entry skipped", field[0]);
  return true;
}

vnrt_status vn_fault_from_env(vnrt_context *ctx) {
  const char *env = vn_option(ctx, "fault_inject");
  if (!env || !env[0]) return VNRT_OK;
  for (const char *p = env; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (!parse_entry(ctx, p, len)) {
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "VNRT_FAULT_INJECT=\"%s\": entry \"%.*s\" is not DEVICE/POINT/N[/lost] "
                      "(POINT: open, alloc, write, read, map, compile or run; N >= 1)",
                      env, (int)(len < 100 ? len : 100), p);
    }
    p += len;
    if (*p == ',') ++p;
  }
  return VNRT_OK;
}
