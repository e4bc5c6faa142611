/* OpenCL buffers: a small per-device pool of cl_mem objects (plans come and go; their arenas
 * are reused), allocation checked against CL_DEVICE_MAX_MEM_ALLOC_SIZE, and reads/writes —
 * in place on fine-grained SVM buffers, otherwise synchronous queue calls. */
#include <inttypes.h>
#include <string.h>

#include "cl_buffer.h"
#include "opencl_backend.h"
#include "vnrt/backend_util.h"

/* Capacities are rounded up so that slightly different sizes share pooled buffers. */
#define CL_BUFFER_GRANULE 4096u

/* A cl_mem over a fresh fine-grained SVM allocation of cap bytes (CL_MEM_USE_HOST_PTR over an
 * SVM pointer: OpenCL 2.0 makes the shared memory the buffer's storage, so kernels take the
 * cl_mem as ever and the host reads and writes the pointer); NULL mem when either call fails. */
static cl_mem svm_buffer(vnrt_backend_device *dev, uint64_t cap, void **out_svm, cl_int *out_err) {
  *out_svm = NULL;
  void *p =
      clSVMAlloc(dev->context, CL_MEM_READ_WRITE | CL_MEM_SVM_FINE_GRAIN_BUFFER, (size_t)cap, 0);
  /* Transparent huge pages (vnrt_advise_huge_pages): on a CPU driver such as PoCL the SVM
   * memory is the kernels' memory, handed out untouched by the pool. PoCL 3.1 does not return a
   * 2 MiB-aligned pointer when asked (test_opencl saw 0x...ff080), so only the whole huge pages
   * inside are advised: at most 4 MiB of a buffer's edges stay in
   * 4 KiB pages (1% of the V4 bench model's 375 MB io buffer). */
  if (p && dev->huge_pages && cap >= VNRT_HUGE_MIN_BYTES) vnrt_advise_huge_pages(p, cap);
  if (!p) {
    *out_err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
    return NULL;
  }
  cl_int err = CL_SUCCESS;
  cl_mem mem =
      clCreateBuffer(dev->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, (size_t)cap, p, &err);
  if (!mem || err != CL_SUCCESS) {
    if (mem) clReleaseMemObject(mem);
    clSVMFree(dev->context, p);
    *out_err = err != CL_SUCCESS ? err : CL_MEM_OBJECT_ALLOCATION_FAILURE;
    return NULL;
  }
  *out_svm = p;
  return mem;
}

/* Frees a buffer for good. Every caller has finished both queues first (buffer_free, plan and
 * GEMM teardown, device close; pooled buffers are idle), as clSVMFree does not wait for commands
 * that use the memory; the cl_mem goes before the memory under it. */
static void cl_mem_release(vnrt_backend_device *dev, cl_mem mem, void *svm) {
  clReleaseMemObject(mem);
  if (svm) clSVMFree(dev->context, svm);
}

/* cl_mem_get, also returning the SVM memory under the buffer (NULL for an ordinary one). */
static vnrt_status mem_get(vnrt_backend_device *dev, uint64_t bytes, const char *what,
                           cl_mem *out_mem, uint64_t *out_capacity, void **out_svm) {
  *out_mem = NULL;
  *out_capacity = 0;
  *out_svm = NULL;
  const cl_device_desc *desc = dev->desc;
  if (bytes == 0) bytes = 1;
  if (bytes > desc->max_alloc) {
    return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY,
                   "%s of %" PRIu64
                   " bytes exceeds the device's largest single allocation, "
                   "CL_DEVICE_MAX_MEM_ALLOC_SIZE = %" PRIu64 " bytes",
                   what, bytes, desc->max_alloc);
  }
  /* The smallest pooled buffer that fits without wasting more than its request. */
  int32_t best = -1;
  for (int32_t i = 0; i < dev->n_pool; ++i) {
    uint64_t cap = dev->pool[i].capacity;
    if (cap >= bytes && cap <= 2 * bytes + CL_BUFFER_GRANULE &&
        (best < 0 || cap < dev->pool[best].capacity)) {
      best = i;
    }
  }
  if (best >= 0) {
    *out_mem = dev->pool[best].mem;
    *out_capacity = dev->pool[best].capacity;
    *out_svm = dev->pool[best].svm;
    dev->pool_bytes -= dev->pool[best].capacity;
    dev->pool[best] = dev->pool[--dev->n_pool];
    return VNRT_OK;
  }
  uint64_t cap = (bytes + CL_BUFFER_GRANULE - 1) / CL_BUFFER_GRANULE * CL_BUFFER_GRANULE;
  if (cap > desc->max_alloc) cap = bytes;
  cl_int err = CL_SUCCESS;
  cl_mem mem = NULL;
  void *svm = NULL;
  if (dev->svm) {
    mem = svm_buffer(dev, cap, &svm, &err);
    if (!mem && dev->n_pool > 0) {
      cl_pool_drain(dev);
      mem = svm_buffer(dev, cap, &svm, &err);
    }
    /* Still none: an ordinary buffer below (buffer_host_ptr is NULL for it, which the executor
     * handles per buffer). */
  }
  if (!mem) {
    /* Where the device shares host memory, let the driver place the buffer there: transfers
     * then need no copy across a bus. */
    cl_mem_flags flags = CL_MEM_READ_WRITE | (desc->unified_memory ? CL_MEM_ALLOC_HOST_PTR : 0);
    mem = clCreateBuffer(dev->context, flags, (size_t)cap, NULL, &err);
    if (!mem && desc->unified_memory) {
      mem = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, (size_t)cap, NULL, &err);
    }
  }
  if (!mem || err != CL_SUCCESS) {
    /* A pooled buffer may hold the memory this one needs: give it all back and retry. */
    if (dev->n_pool > 0) {
      cl_pool_drain(dev);
      mem = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, (size_t)cap, NULL, &err);
    }
    if (!mem || err != CL_SUCCESS) {
      return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY,
                     "cannot allocate %s of %" PRIu64 " bytes: clCreateBuffer: %d %s", what, bytes,
                     (int)err, cl_error_name(err));
    }
  }
  *out_mem = mem;
  *out_capacity = cap;
  *out_svm = svm;
  return VNRT_OK;
}

vnrt_status cl_mem_get(vnrt_backend_device *dev, uint64_t bytes, const char *what, cl_mem *out_mem,
                       uint64_t *out_capacity) {
  void *svm = NULL; /* found again from the cl_mem when it is put back */
  return mem_get(dev, bytes, what, out_mem, out_capacity, &svm);
}

/* The SVM memory under mem, or NULL: only SVM buffers are made with CL_MEM_USE_HOST_PTR, and
 * CL_MEM_HOST_PTR is NULL for every other buffer. */
static void *svm_of(vnrt_backend_device *dev, cl_mem mem) {
  void *p = NULL;
  if (!dev->svm || clGetMemObjectInfo(mem, CL_MEM_HOST_PTR, sizeof p, &p, NULL) != CL_SUCCESS) {
    return NULL;
  }
  return p;
}

/* Returns a buffer (and the SVM memory under it, or NULL) to the pool, or frees it. */
static void mem_put(vnrt_backend_device *dev, cl_mem mem, uint64_t capacity, void *svm) {
  if (!mem) return;
  if (dev->n_pool < CL_POOL_MAX_ENTRIES && dev->pool_bytes + capacity <= dev->pool_limit) {
    dev->pool[dev->n_pool++] = (cl_pool_entry){mem, capacity, svm};
    dev->pool_bytes += capacity;
    return;
  }
  cl_mem_release(dev, mem, svm);
}

void cl_mem_put(vnrt_backend_device *dev, cl_mem mem, uint64_t capacity) {
  if (mem) mem_put(dev, mem, capacity, svm_of(dev, mem));
}

void cl_pool_drain(vnrt_backend_device *dev) {
  for (int32_t i = 0; i < dev->n_pool; ++i) cl_mem_release(dev, dev->pool[i].mem, dev->pool[i].svm);
  dev->n_pool = 0;
  dev->pool_bytes = 0;
}

vnrt_status cl_backend_buffer_alloc(vnrt_backend_device *dev, uint64_t bytes,
                                    vnrt_backend_buffer **out_buffer) {
  *out_buffer = NULL;
  const vnrt_backend_host *host = dev->host;
  vnrt_backend_buffer *buf = host->alloc(host->core, sizeof *buf);
  if (!buf) return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory");
  memset(buf, 0, sizeof *buf);
  vnrt_status s = mem_get(dev, bytes, "a buffer", &buf->mem, &buf->capacity, &buf->svm);
  if (s != VNRT_OK) {
    host->free(host->core, buf);
    return s;
  }
  buf->size = bytes;
  *out_buffer = buf;
  return VNRT_OK;
}

/* Remembers ev as the copy queue's latest write (the compute queue waits for it). */
static void cl_note_copy(vnrt_backend_device *dev, cl_event ev) {
  pthread_mutex_lock(&dev->copy_lock);
  cl_event old = dev->copy_event;
  dev->copy_event = ev;
  pthread_mutex_unlock(&dev->copy_lock);
  if (old) clReleaseEvent(old);
}

cl_event cl_take_copy_event(vnrt_backend_device *dev) {
  pthread_mutex_lock(&dev->copy_lock);
  cl_event ev = dev->copy_event;
  dev->copy_event = NULL;
  pthread_mutex_unlock(&dev->copy_lock);
  return ev;
}

void cl_backend_buffer_free(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  if (!buf) return;
  /* Kernels or writes still queued may use it: the pool hands it out again only after. */
  clFinish(dev->copy_queue);
  clFinish(dev->queue);
  mem_put(dev, buf->mem, buf->capacity, buf->svm);
  dev->host->free(dev->host->core, buf);
}

vnrt_status cl_buffer_check_range(vnrt_backend_device *dev, const vnrt_backend_buffer *buf,
                                  const char *what, uint64_t offset, uint64_t bytes) {
  if (offset > buf->size || bytes > buf->size - offset) {
    return cl_fail(dev, VNRT_ERROR_INVALID_ARGUMENT,
                   "buffer %s: offset %" PRIu64 " + %" PRIu64
                   " bytes is past the buffer's size of %" PRIu64 " bytes",
                   what, offset, bytes, buf->size);
  }
  return VNRT_OK;
}

/* On a fine-grained SVM buffer the host and the device share the memory at the granularity of
 * single loads and stores, consistent at synchronisation points (OpenCL 2.0 memory model): a
 * host store made before a kernel is enqueued is seen by that kernel, and a kernel's results
 * are seen by the host once it has waited for the kernel (cl_backend_run ends with clFinish).
 * The executor keeps exactly that order — the copy stream's writes happen before the host
 * enqueues their readers, and a copy never targets bytes a running node uses — so the pointer
 * is handed out as is, and reads and writes are a memcpy. An ordinary buffer has none: under
 * OpenCL 1.2 a mapped buffer must not be used by kernels while mapped, so a persistent mapping
 * would be invalid; its transfers go through the queues. */
void *cl_backend_buffer_host_ptr(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  (void)dev;
  return buf ? buf->svm : NULL;
}

vnrt_status cl_backend_buffer_write(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                    uint64_t offset, const void *src, uint64_t bytes) {
  vnrt_status s = cl_buffer_check_range(dev, buf, "write", offset, bytes);
  if (s != VNRT_OK) return s;
  if (bytes == 0) return VNRT_OK;
  if (buf->svm) {
    /* No kernel reads these bytes now, and the reader is enqueued after this returns. */
    memcpy((char *)buf->svm + offset, src, (size_t)bytes);
    return VNRT_OK;
  }
  /* On the copy queue (it may be called from the copy stream's thread while a run enqueues
   * kernels); blocking, so src may be reused at once. Its event makes the next run's kernels
   * wait for it (cl_backend_run), as the copy and compute queues are not ordered otherwise. */
  cl_event ev = NULL;
  cl_int err = clEnqueueWriteBuffer(dev->copy_queue, buf->mem, CL_TRUE, (size_t)offset,
                                    (size_t)bytes, src, 0, NULL, &ev);
  if (err == CL_SUCCESS) cl_note_copy(dev, ev);
  if (err != CL_SUCCESS) {
    return cl_fail(
        dev, err == CL_MEM_OBJECT_ALLOCATION_FAILURE ? VNRT_ERROR_OUT_OF_MEMORY : VNRT_ERROR_DEVICE,
        "writing %" PRIu64 " bytes at offset %" PRIu64 ": clEnqueueWriteBuffer: %d %s", bytes,
        offset, (int)err, cl_error_name(err));
  }
  return VNRT_OK;
}

vnrt_status cl_backend_buffer_read(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                   uint64_t offset, void *dst, uint64_t bytes) {
  vnrt_status s = cl_buffer_check_range(dev, buf, "read", offset, bytes);
  if (s != VNRT_OK) return s;
  if (bytes == 0) return VNRT_OK;
  if (buf->svm) {
    /* Reads come between runs, and every run has waited for its kernels (clFinish): the
     * results are in the shared memory. */
    memcpy(dst, (const char *)buf->svm + offset, (size_t)bytes);
    return VNRT_OK;
  }
  cl_int err = clEnqueueReadBuffer(dev->queue, buf->mem, CL_TRUE, (size_t)offset, (size_t)bytes,
                                   dst, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE,
                   "reading %" PRIu64 " bytes at offset %" PRIu64 ": clEnqueueReadBuffer: %d %s",
                   bytes, offset, (int)err, cl_error_name(err));
  }
  return VNRT_OK;
}
