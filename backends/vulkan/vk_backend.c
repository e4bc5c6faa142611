/* The Vulkan backend's table of functions (vnrt/backend.h); the op table is vk_ops.c. */
#include "vk_internal.h"

static const vnrt_backend_i vulkan_backend_ = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = VNRT_BACKEND_API_VERSION,
    .name = "vulkan",
    .init = vk_init,
    .shutdown = vk_shutdown,
    .device_count = vk_device_count,
    .device_info = vk_device_info,
    .device_open = vk_device_open,
    .device_close = vk_device_close,
    .buffer_alloc = vk_buffer_alloc,
    .buffer_free = vk_buffer_free,
    .buffer_host_ptr = vk_buffer_host_ptr,
    .buffer_write = vk_buffer_write,
    .buffer_read = vk_buffer_read,
    .supports_node = vk_supports_node,
    .compile = vk_compile,
    .run = vk_run,
    .exec_destroy = vk_exec_destroy,
    .maturity = VNRT_BACKEND_STABLE,
    .timeline_create = vk_timeline_create,
    .timeline_destroy = vk_timeline_destroy,
    .timeline_query = vk_timeline_query,
    .timeline_wait = vk_timeline_wait,
    .timeline_signal = vk_timeline_signal,
    .buffer_write_async = vk_buffer_write_async,
    .buffer_read_async = vk_buffer_read_async,
    .run_async = vk_run_async,
    .run_timed = vk_run_timed,
};

const vnrt_backend_i *vulkan_backend_get(void) { return &vulkan_backend_; }
