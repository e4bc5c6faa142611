/* Private to the OpenCL backend: the OpenCL headers at the 1.2 API level, the backend's state,
 * device and buffer structures, and small helpers every file of the backend shares. */
#ifndef VNRT_BACKENDS_OPENCL_CL_COMMON_H_
#define VNRT_BACKENDS_OPENCL_CL_COMMON_H_

/* OpenCL 1.2 entry points, so that every conformant 1.2+ driver works; the 2.0 headers are
 * used only for shared virtual memory (clSVMAlloc), which is called only on devices that report
 * OpenCL 2.0+ and fine-grained buffer SVM. The 1.2 calls 2.0 deprecated (clCreateCommandQueue)
 * stay the portable choice. */
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 200
#endif
#ifndef CL_USE_DEPRECATED_OPENCL_1_2_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#endif
#include <CL/cl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vnrt/backend.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

/* What probing learned about one device (filled by cl_device.c at init). */
typedef struct cl_device_desc {
  cl_platform_id platform;
  cl_device_id id;
  vnrt_backend_device_info info; /* what device_info reports */
  char platform_name[128];
  char platform_version[128];
  char device_version[128]; /* "OpenCL 3.0 PoCL ..." */
  char driver_version[128];
  char c_version[64];   /* CL_DEVICE_OPENCL_C_VERSION */
  int c_major, c_minor; /* OpenCL C version the compiler accepts */
  int has_fp16;         /* cl_khr_fp16: f16 arithmetic (kernels only need vload_half) */
  int has_fp64;
  int has_subgroups;
  int unified_memory;      /* CL_DEVICE_HOST_UNIFIED_MEMORY */
  int correct_div_sqrt;    /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT for single precision */
  int denormals;           /* CL_FP_DENORM for single precision: subnormals are not flushed */
  uint64_t max_alloc;      /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
  uint64_t local_mem;      /* CL_DEVICE_LOCAL_MEM_SIZE */
  size_t max_wg;           /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
  size_t max_wi[3];        /* CL_DEVICE_MAX_WORK_ITEM_SIZES */
  int vec_width;           /* float vector width the GEMM kernels use: 4, 8 or 16 */
  int local_mem_dedicated; /* CL_DEVICE_LOCAL_MEM_TYPE is CL_LOCAL (not emulated in global) */
  int svm_fine_buffer;     /* OpenCL 2.0+ with CL_DEVICE_SVM_FINE_GRAIN_BUFFER */
} cl_device_desc;

typedef struct cl_state {
  const vnrt_backend_host *host;
  uint32_t n_devices;
  cl_device_desc *devices;
} cl_state;

/* A pooled cl_mem: buffers freed by one plan are kept for the next (cl_buffer.c). svm is the
 * fine-grained SVM allocation under it (the cl_mem was created over it with
 * CL_MEM_USE_HOST_PTR), or NULL for an ordinary buffer. */
typedef struct cl_pool_entry {
  cl_mem mem;
  uint64_t capacity;
  void *svm;
} cl_pool_entry;

#define CL_POOL_MAX_ENTRIES 32

/* A remembered GEMM choice (cl_gemm.c), loaded from and appended to the cache. */
typedef struct cl_gemm_choice {
  char key[112];
  int impl;
} cl_gemm_choice;

struct vnrt_backend_device {
  const vnrt_backend_host *host;
  const cl_device_desc *desc;
  cl_context context;
  cl_command_queue queue;      /* the compute stream: every kernel and GEMM */
  bool profiling;              /* queue has CL_QUEUE_PROFILING_ENABLE (timed runs) */
  cl_command_queue copy_queue; /* the copy stream: buffer writes (DualPath), in order */
  /* The last write on copy_queue not yet waited for by queue (NULL: none); under copy_lock,
   * since the copy stream writes from its own thread while a run enqueues. */
  cl_event copy_event;
  pthread_mutex_t copy_lock;
  /* Buffers are fine-grained SVM allocations wrapped in cl_mem objects, so the host reads and
   * writes them in place (buffer_host_ptr): the device reports fine-grained buffer SVM and
   * VNRT_CL_SVM is not 0. */
  int svm;
  /* SVM buffers of 8 MiB and more are advised into transparent huge pages (cl_buffer.c; the
   * cpu_huge_pages option, as for the CPU backend's buffers, since they are host memory). */
  int huge_pages;
  cl_program program;   /* every kernel of shaders/opencl, built once per open */
  char cache_dir[1024]; /* "" when the on-disk cache is off or unusable */
  uint64_t program_key; /* device + driver + source + options; names the cache files */
  char build_options[256];
  /* The pool of free buffers and the bytes they hold. */
  cl_pool_entry pool[CL_POOL_MAX_ENTRIES];
  int32_t n_pool;
  uint64_t pool_bytes, pool_limit;
  /* GEMM implementation choices by shape (cl_gemm.c). */
  cl_gemm_choice *gemm_choices;
  int32_t n_gemm_choices, cap_gemm_choices;
  int gemm_choices_loaded;
};

struct vnrt_backend_buffer {
  cl_mem mem;
  uint64_t size;     /* what was asked for: the valid range */
  uint64_t capacity; /* what the cl_mem holds (a pooled buffer may be larger) */
  void *svm;         /* the fine-grained SVM memory under mem (buffer_host_ptr), or NULL */
};

/* buffer_host_ptr: the SVM memory under buf (the host reads and writes it in place, with the
 * ordering the executor already keeps), or NULL for an ordinary cl_mem (cl_buffer.c). */
void *cl_backend_buffer_host_ptr(vnrt_backend_device *device, vnrt_backend_buffer *buffer);

/* The copy queue's latest write not yet waited for (the caller releases it), or NULL. */
cl_event cl_take_copy_event(vnrt_backend_device *dev);

/* A static name for an OpenCL error code ("CL_OUT_OF_RESOURCES"), or "?" if unknown. */
const char *cl_error_name(cl_int err);

/* host->error with the device's name prefixed: "opencl (NAME): ...". */
vnrt_status cl_fail(vnrt_backend_device *dev, vnrt_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic time in seconds, for build and GEMM timing. */
double cl_now(void);

/* FNV-1a 64-bit hash, chained through h (start with CL_FNV_SEED). */
#define CL_FNV_SEED 0xcbf29ce484222325ull
uint64_t cl_fnv1a(uint64_t h, const void *data, size_t size);

#endif /* VNRT_BACKENDS_OPENCL_CL_COMMON_H_ */
