/* Private to the OpenCL backend: the functions behind its vnrt_backend_i table, by file. */
#ifndef VNRT_BACKENDS_OPENCL_OPENCL_BACKEND_H_
#define VNRT_BACKENDS_OPENCL_OPENCL_BACKEND_H_

#include "cl_common.h"

/* cl_device.c */
vnrt_status cl_backend_init(const vnrt_backend_host *host, void **out_state);
void cl_backend_shutdown(void *state);
uint32_t cl_backend_device_count(void *state);
vnrt_status cl_backend_device_info(void *state, uint32_t index, vnrt_backend_device_info *out_info);
vnrt_status cl_backend_device_open(void *state, uint32_t index, vnrt_backend_device **out_device);
void cl_backend_device_close(vnrt_backend_device *device);

/* cl_buffer.c */
vnrt_status cl_backend_buffer_alloc(vnrt_backend_device *device, uint64_t bytes,
                                    vnrt_backend_buffer **out_buffer);
void cl_backend_buffer_free(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
vnrt_status cl_backend_buffer_write(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                    uint64_t offset, const void *src, uint64_t bytes);
vnrt_status cl_backend_buffer_read(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                   uint64_t offset, void *dst, uint64_t bytes);

/* cl_exec.c */
int cl_backend_supports_node(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                             int32_t node);
vnrt_status cl_backend_compile(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                               vnrt_backend_exec **out_exec);
vnrt_status cl_backend_run(vnrt_backend_exec *exec, int32_t first, int32_t count);
vnrt_status cl_backend_run_timed(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                 uint64_t *out_ns);
void cl_backend_exec_destroy(vnrt_backend_exec *exec);
vnrt_status cl_backend_run_async(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                 const vnrt_backend_sync *sync);

/* cl_async.c: the optional async slots (backend.h, API 3), on devices without SVM buffers. */
vnrt_status cl_timeline_create(vnrt_backend_device *device, vnrt_backend_timeline **out_timeline);
void cl_timeline_destroy(vnrt_backend_device *device, vnrt_backend_timeline *timeline);
vnrt_status cl_timeline_query(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                              uint64_t *out_value);
vnrt_status cl_timeline_wait(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                             uint64_t value, uint64_t timeout_ns);
vnrt_status cl_timeline_signal(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                               uint64_t value);
vnrt_status cl_backend_buffer_write_async(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                          uint64_t offset, const void *src, uint64_t bytes,
                                          const vnrt_backend_sync *sync);
vnrt_status cl_backend_buffer_read_async(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                         uint64_t offset, void *dst, uint64_t bytes,
                                         const vnrt_backend_sync *sync);
/* A run's wait (a barrier) before its kernels, and its signal (a marker) after them. */
vnrt_status cl_async_run_begin(vnrt_backend_device *device, const vnrt_backend_sync *sync);
vnrt_status cl_async_run_end(vnrt_backend_device *device, const vnrt_backend_sync *sync);

#endif /* VNRT_BACKENDS_OPENCL_OPENCL_BACKEND_H_ */
