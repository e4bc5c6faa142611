/* The OpenCL backend's interface table: OpenCL 1.2+ devices of every platform the ICD loader
 * lists, numbered opencl:0, opencl:1, ... across platforms. */
#include "opencl_backend.h"

static const vnrt_backend_i opencl_backend_ = {
    .struct_size = sizeof(vnrt_backend_i),
    .api_version = VNRT_BACKEND_API_VERSION,
    .name = "opencl",
    .init = cl_backend_init,
    .shutdown = cl_backend_shutdown,
    .device_count = cl_backend_device_count,
    .device_info = cl_backend_device_info,
    .device_open = cl_backend_device_open,
    .device_close = cl_backend_device_close,
    .buffer_alloc = cl_backend_buffer_alloc,
    .buffer_free = cl_backend_buffer_free,
    /* The memory of fine-grained SVM buffers; NULL for ordinary ones (cl_buffer.c). */
    .buffer_host_ptr = cl_backend_buffer_host_ptr,
    .buffer_write = cl_backend_buffer_write,
    .buffer_read = cl_backend_buffer_read,
    .supports_node = cl_backend_supports_node,
    .compile = cl_backend_compile,
    .run = cl_backend_run,
    .exec_destroy = cl_backend_exec_destroy,
    .maturity = VNRT_BACKEND_STABLE,
    .timeline_create = cl_timeline_create,
    .timeline_destroy = cl_timeline_destroy,
    .timeline_query = cl_timeline_query,
    .timeline_wait = cl_timeline_wait,
    .timeline_signal = cl_timeline_signal,
    .buffer_write_async = cl_backend_buffer_write_async,
    .buffer_read_async = cl_backend_buffer_read_async,
    .run_async = cl_backend_run_async,
    .run_timed = cl_backend_run_timed,
};

const vnrt_backend_i *opencl_backend_get(void);
const vnrt_backend_i *opencl_backend_get(void) { return &opencl_backend_; }
