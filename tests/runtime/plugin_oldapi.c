/* A plugin built for backend API version 1 (before vnrt_backend_node grew `params`): its node
 * array stride differs, so the core must refuse it with a logged reason rather than load it.
 * The slots exist only so that the table is otherwise acceptable; none is ever called. */
#include <stddef.h>

#include "vnrt/backend.h"

static vnrt_status init_(const vnrt_backend_host *host, void **out_state) {
  *out_state = NULL;
  return VNRT_OK;
}
static void shutdown_(void *state) {}
static uint32_t count_(void *state) { return 0; }
static vnrt_status info_(void *state, uint32_t i, vnrt_backend_device_info *out) {
  return VNRT_ERROR_NOT_FOUND;
}
static vnrt_status open_(void *state, uint32_t i, vnrt_backend_device **out) {
  return VNRT_ERROR_NOT_FOUND;
}
static void close_(vnrt_backend_device *d) {}
static vnrt_status alloc_(vnrt_backend_device *d, uint64_t bytes, vnrt_backend_buffer **out) {
  return VNRT_ERROR_UNSUPPORTED;
}
static void free_(vnrt_backend_device *d, vnrt_backend_buffer *b) {}
static vnrt_status write_(vnrt_backend_device *d, vnrt_backend_buffer *b, uint64_t off,
                          const void *src, uint64_t n) {
  return VNRT_ERROR_UNSUPPORTED;
}
static vnrt_status read_(vnrt_backend_device *d, vnrt_backend_buffer *b, uint64_t off, void *dst,
                         uint64_t n) {
  return VNRT_ERROR_UNSUPPORTED;
}
static int supports_(vnrt_backend_device *d, const vnrt_backend_graph *g, int32_t node) {
  return 0;
}
static vnrt_status compile_(vnrt_backend_device *d, const vnrt_backend_graph *g,
                            vnrt_backend_exec **out) {
  return VNRT_ERROR_UNSUPPORTED;
}
static vnrt_status run_(vnrt_backend_exec *e, int32_t first, int32_t count) {
  return VNRT_ERROR_UNSUPPORTED;
}
static void destroy_(vnrt_backend_exec *e) {}

static const vnrt_backend_i k_iface = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = 1,
    .name = "oldapi",
    .init = init_,
    .shutdown = shutdown_,
    .device_count = count_,
    .device_info = info_,
    .device_open = open_,
    .device_close = close_,
    .buffer_alloc = alloc_,
    .buffer_free = free_,
    .buffer_write = write_,
    .buffer_read = read_,
    .supports_node = supports_,
    .compile = compile_,
    .run = run_,
    .exec_destroy = destroy_,
};

__attribute__((visibility("default"))) const vnrt_backend_i *vnrt_backend_entry_v1(
    uint32_t core_api_version);
const vnrt_backend_i *vnrt_backend_entry_v1(uint32_t core_api_version) { return &k_iface; }
