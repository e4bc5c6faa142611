/* Private to the OpenCL backend: device buffers from a per-device pool of cl_mem objects. */
#ifndef VNRT_BACKENDS_OPENCL_CL_BUFFER_H_
#define VNRT_BACKENDS_OPENCL_CL_BUFFER_H_

#include "cl_common.h"

/* A cl_mem of at least bytes (reused from the pool when one fits), checked against the device's
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE; what says what it is for, in messages. */
vnrt_status cl_mem_get(vnrt_backend_device *dev, uint64_t bytes, const char *what, cl_mem *out_mem,
                       uint64_t *out_capacity);
/* Returns a cl_mem to the pool (or releases it when the pool is full). */
void cl_mem_put(vnrt_backend_device *dev, cl_mem mem, uint64_t capacity);
/* Releases every pooled buffer. */
void cl_pool_drain(vnrt_backend_device *dev);

/* VNRT_OK when [offset, offset + bytes) lies in buf, else INVALID_ARGUMENT naming what ("write",
 * "async read", ...) and the sizes. */
vnrt_status cl_buffer_check_range(vnrt_backend_device *dev, const vnrt_backend_buffer *buf,
                                  const char *what, uint64_t offset, uint64_t bytes);

#endif /* VNRT_BACKENDS_OPENCL_CL_BUFFER_H_ */
