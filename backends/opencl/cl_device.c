/* OpenCL platform and device enumeration through the ICD loader: capability probing at init,
 * device_info, and opening a device (context, in-order queue, the kernel program). */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_buffer.h"
#include "cl_common.h"
#include "cl_gemm.h"
#include "cl_program.h"
#include "opencl_backend.h"
#include "vnrt/backend_util.h"

/* ---- Small shared helpers -------------------------------------------------------------- */

const char *cl_error_name(cl_int err) {
  switch (err) {
#define CL_ERR_(e) \
  case e:          \
    return #e;
    CL_ERR_(CL_SUCCESS)
    CL_ERR_(CL_DEVICE_NOT_FOUND)
    CL_ERR_(CL_DEVICE_NOT_AVAILABLE)
    CL_ERR_(CL_COMPILER_NOT_AVAILABLE)
    CL_ERR_(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    CL_ERR_(CL_OUT_OF_RESOURCES)
    CL_ERR_(CL_OUT_OF_HOST_MEMORY)
    CL_ERR_(CL_PROFILING_INFO_NOT_AVAILABLE)
    CL_ERR_(CL_MEM_COPY_OVERLAP)
    CL_ERR_(CL_BUILD_PROGRAM_FAILURE)
    CL_ERR_(CL_MAP_FAILURE)
    CL_ERR_(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    CL_ERR_(CL_COMPILE_PROGRAM_FAILURE)
    CL_ERR_(CL_LINKER_NOT_AVAILABLE)
    CL_ERR_(CL_LINK_PROGRAM_FAILURE)
    CL_ERR_(CL_INVALID_VALUE)
    CL_ERR_(CL_INVALID_DEVICE_TYPE)
    CL_ERR_(CL_INVALID_PLATFORM)
    CL_ERR_(CL_INVALID_DEVICE)
    CL_ERR_(CL_INVALID_CONTEXT)
    CL_ERR_(CL_INVALID_QUEUE_PROPERTIES)
    CL_ERR_(CL_INVALID_COMMAND_QUEUE)
    CL_ERR_(CL_INVALID_MEM_OBJECT)
    CL_ERR_(CL_INVALID_BINARY)
    CL_ERR_(CL_INVALID_BUILD_OPTIONS)
    CL_ERR_(CL_INVALID_PROGRAM)
    CL_ERR_(CL_INVALID_PROGRAM_EXECUTABLE)
    CL_ERR_(CL_INVALID_KERNEL_NAME)
    CL_ERR_(CL_INVALID_KERNEL)
    CL_ERR_(CL_INVALID_ARG_INDEX)
    CL_ERR_(CL_INVALID_ARG_VALUE)
    CL_ERR_(CL_INVALID_ARG_SIZE)
    CL_ERR_(CL_INVALID_KERNEL_ARGS)
    CL_ERR_(CL_INVALID_WORK_DIMENSION)
    CL_ERR_(CL_INVALID_WORK_GROUP_SIZE)
    CL_ERR_(CL_INVALID_WORK_ITEM_SIZE)
    CL_ERR_(CL_INVALID_GLOBAL_OFFSET)
    CL_ERR_(CL_INVALID_EVENT_WAIT_LIST)
    CL_ERR_(CL_INVALID_OPERATION)
    CL_ERR_(CL_INVALID_BUFFER_SIZE)
    CL_ERR_(CL_INVALID_GLOBAL_WORK_SIZE)
#undef CL_ERR_
    case CL_PLATFORM_NOT_FOUND_KHR:
      return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
      return "?";
  }
}

vnrt_status cl_fail(vnrt_backend_device *dev, vnrt_status status, const char *fmt, ...) {
  char msg[1800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return dev->host->error(dev->host->core, status, "opencl (%s): %s", dev->desc->info.name, msg);
}

double cl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t cl_fnv1a(uint64_t h, const void *data, size_t size) {
  const unsigned char *p = data;
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* ---- Probing --------------------------------------------------------------------------- */

static void platform_string(cl_platform_id p, cl_platform_info what, char *buf, size_t size) {
  buf[0] = '\0';
  if (clGetPlatformInfo(p, what, size, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
  buf[size - 1] = '\0';
}

/* A device string; long strings (extension lists) are read whole into a host allocation. */
static char *device_string_alloc(const vnrt_backend_host *host, cl_device_id d,
                                 cl_device_info what) {
  size_t n = 0;
  if (clGetDeviceInfo(d, what, 0, NULL, &n) != CL_SUCCESS) n = 0;
  char *s = host->alloc(host->core, n + 1);
  if (!s) return NULL;
  s[0] = '\0';
  if (n && clGetDeviceInfo(d, what, n, s, NULL) != CL_SUCCESS) s[0] = '\0';
  s[n] = '\0';
  return s;
}

/* Copies src into buf of size bytes, truncating. */
static void copy_trunc(char *buf, size_t size, const char *src) {
  size_t n = strlen(src);
  if (n >= size) n = size - 1;
  memcpy(buf, src, n);
  buf[n] = '\0';
}

static void device_string(cl_device_id d, cl_device_info what, char *buf, size_t size) {
  buf[0] = '\0';
  size_t n = 0;
  if (clGetDeviceInfo(d, what, 0, NULL, &n) != CL_SUCCESS || n == 0) return;
  char tmp[1024];
  if (n > sizeof tmp) n = sizeof tmp;
  if (clGetDeviceInfo(d, what, n, tmp, NULL) != CL_SUCCESS) return;
  tmp[n - 1] = '\0';
  copy_trunc(buf, size, tmp);
}

/* Whether the space-separated extension list names ext exactly. */
static int has_extension(const char *list, const char *ext) {
  size_t len = strlen(ext);
  for (const char *p = list; p && (p = strstr(p, ext)) != NULL; p += len) {
    int starts = p == list || p[-1] == ' ';
    int ends = p[len] == '\0' || p[len] == ' ';
    if (starts && ends) return 1;
  }
  return 0;
}

/* "OpenCL 1.2 ..." or "OpenCL C 1.2 ..." -> 1, 2; 0, 0 when unparseable. */
static void parse_version(const char *s, const char *prefix, int *major, int *minor) {
  *major = *minor = 0;
  size_t n = strlen(prefix);
  if (strncmp(s, prefix, n) != 0) return;
  if (sscanf(s + n, "%d.%d", major, minor) != 2) *major = *minor = 0;
}

static int version_at_least(int major, int minor, int want_major, int want_minor) {
  return major > want_major || (major == want_major && minor >= want_minor);
}

/* Fills desc for device d of platform p; returns 0 (with a logged reason) if unusable, -1 when
 * out of host memory. */
static int probe_device(const vnrt_backend_host *host, cl_platform_id p, cl_device_id d,
                        cl_device_desc *desc) {
  memset(desc, 0, sizeof *desc);
  desc->platform = p;
  desc->id = d;
  vnrt_backend_device_info *info = &desc->info;
  platform_string(p, CL_PLATFORM_NAME, desc->platform_name, sizeof desc->platform_name);
  platform_string(p, CL_PLATFORM_VERSION, desc->platform_version, sizeof desc->platform_version);
  device_string(d, CL_DEVICE_NAME, info->name, sizeof info->name);
  device_string(d, CL_DEVICE_VERSION, desc->device_version, sizeof desc->device_version);
  device_string(d, CL_DRIVER_VERSION, desc->driver_version, sizeof desc->driver_version);
  device_string(d, CL_DEVICE_OPENCL_C_VERSION, desc->c_version, sizeof desc->c_version);

  int major = 0, minor = 0;
  parse_version(desc->device_version, "OpenCL ", &major, &minor);
  parse_version(desc->c_version, "OpenCL C ", &desc->c_major, &desc->c_minor);
  cl_bool available = CL_FALSE, compiler = CL_FALSE;
  clGetDeviceInfo(d, CL_DEVICE_AVAILABLE, sizeof available, &available, NULL);
  clGetDeviceInfo(d, CL_DEVICE_COMPILER_AVAILABLE, sizeof compiler, &compiler, NULL);
  char profile[64];
  device_string(d, CL_DEVICE_PROFILE, profile, sizeof profile);
  char *ext = device_string_alloc(host, d, CL_DEVICE_EXTENSIONS);
  if (!ext) return -1; /* out of host memory: cl_backend_init fails */
  const char *why = NULL;
  if (!version_at_least(major, minor, 1, 2))
    why = "it reports an OpenCL version below 1.2";
  else if (!version_at_least(desc->c_major, desc->c_minor, 1, 2))
    why = "its OpenCL C compiler is older than 1.2";
  else if (!available)
    why = "it is not available";
  else if (!compiler)
    why = "it has no OpenCL C compiler";
  else if (strcmp(profile, "FULL_PROFILE") != 0 && !has_extension(ext, "cles_khr_int64"))
    why = "it is an embedded-profile device without 64-bit integers (cles_khr_int64)";
  if (why) {
    host->log(host->core, VNRT_LOG_INFO, "opencl: device '%s' (%s) skipped: %s", info->name,
              desc->platform_name, why);
    if (ext) host->free(host->core, ext);
    return 0;
  }

  desc->has_fp16 = has_extension(ext, "cl_khr_fp16");
  desc->has_fp64 = has_extension(ext, "cl_khr_fp64");
  desc->has_subgroups =
      has_extension(ext, "cl_khr_subgroups") || has_extension(ext, "cl_intel_subgroups");
  if (ext) host->free(host->core, ext);
  if (!desc->has_subgroups && version_at_least(major, minor, 2, 1)) {
    /* OpenCL 2.1+ has sub-groups in core; 3.0 makes them optional (max is 0 when absent).
     * 0x105C is CL_DEVICE_MAX_NUM_SUB_GROUPS, named here because the 1.2 API level hides it. */
    cl_uint max_sub = 0;
    if (clGetDeviceInfo(d, 0x105C, sizeof max_sub, &max_sub, NULL) == CL_SUCCESS && max_sub > 0) {
      desc->has_subgroups = 1;
    }
  }

  cl_device_type type = 0;
  cl_bool unified = CL_FALSE;
  cl_ulong global_mem = 0, max_alloc = 0, local_mem = 0;
  cl_uint units = 0;
  size_t max_wg = 0;
  cl_device_fp_config fp = 0;
  cl_uint pref_vec = 0;
  cl_device_local_mem_type lmem_type = CL_LOCAL;
  clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  clGetDeviceInfo(d, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global_mem, &global_mem, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
  clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem, &local_mem, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof desc->max_wi, desc->max_wi, NULL);
  clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
  clGetDeviceInfo(d, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof pref_vec, &pref_vec, NULL);
  clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_TYPE, sizeof lmem_type, &lmem_type, NULL);
  desc->vec_width = pref_vec >= 16 ? 16 : pref_vec >= 8 ? 8 : 4;
  desc->local_mem_dedicated = lmem_type == CL_LOCAL;
  /* Kernels are chosen by whether local memory is real (GPU-like: work-group tiles and
   * reductions) or emulated in global memory (CPU drivers: a work-item per row, register
   * blocks). VNRT_CL_LOCAL_MEM=dedicated|emulated overrides what the driver reports, to try
   * (or test) the other family on a device. */
  const char *lm = vnrt_host_option(host, "cl_local_mem");
  if (lm && strcmp(lm, "dedicated") == 0) desc->local_mem_dedicated = 1;
  if (lm && strcmp(lm, "emulated") == 0) desc->local_mem_dedicated = 0;
  desc->unified_memory = unified == CL_TRUE;
  /* Fine-grained buffer SVM lets the host read and write buffers in place while kernels use
   * them (cl_buffer.c); the query exists from OpenCL 2.0 on only. */
  if (version_at_least(major, minor, 2, 0)) {
    cl_device_svm_capabilities svm = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_SVM_CAPABILITIES, sizeof svm, &svm, NULL) == CL_SUCCESS) {
      desc->svm_fine_buffer = (svm & CL_DEVICE_SVM_FINE_GRAIN_BUFFER) != 0;
    }
  }
  desc->correct_div_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
  desc->denormals = (fp & CL_FP_DENORM) != 0;
  desc->max_alloc = max_alloc;
  desc->local_mem = local_mem;
  desc->max_wg = max_wg ? max_wg : 1;
  for (int i = 0; i < 3; ++i) {
    if (desc->max_wi[i] == 0) desc->max_wi[i] = 1;
  }

  if (type & CL_DEVICE_TYPE_CPU) {
    info->type = VNRT_DEVICE_TYPE_SOFTWARE; /* PoCL and other CPU drivers emulate a device */
  } else if (type & CL_DEVICE_TYPE_GPU) {
    info->type =
        desc->unified_memory ? VNRT_DEVICE_TYPE_GPU_INTEGRATED : VNRT_DEVICE_TYPE_GPU_DISCRETE;
  } else {
    info->type = VNRT_DEVICE_TYPE_ACCELERATOR; /* ACCELERATOR and CUSTOM devices */
  }
  snprintf(info->backend, sizeof info->backend, "opencl");
  char driver[512];
  snprintf(driver, sizeof driver, "%s, driver %s, %s", desc->platform_name, desc->driver_version,
           desc->c_version);
  copy_trunc(info->driver, sizeof info->driver, driver);
  info->memory_bytes = global_mem;
  info->max_buffer_bytes = max_alloc;
  /* f16 storage needs only vload_half/vstore_half, which every OpenCL device has. */
  /* cl_reshape_lower: no-op; cl_kv_compress_lower: states updated in place (one launch that
   * writes the changed rows at T = 1, else built in scratch and copied over) */
  info->caps = VNRT_CAP_F16_STORAGE | VNRT_CAP_RESHAPE_VIEW | VNRT_CAP_STATE_INPLACE;
  if (desc->has_fp16) info->caps |= VNRT_CAP_F16;
  if (desc->has_subgroups) info->caps |= VNRT_CAP_SUBGROUPS;
  if (desc->unified_memory) info->caps |= VNRT_CAP_UNIFIED_MEMORY;
  /* Never VNRT_CAP_FP8 / VNRT_CAP_FP4: OpenCL C has no FP8/FP4 arithmetic, so the kernels
   * decode e4m3/e2m1 codes to f32 as they load them (shaders quant.cl). */
  info->compute_units = units;
  info->subgroup_size = 0; /* a per-kernel property in OpenCL; not known before a kernel */
  info->max_workgroup_size = (uint32_t)(max_wg > UINT32_MAX ? UINT32_MAX : max_wg);
  info->shared_memory_bytes = local_mem;
  return 1;
}

/* ---- Backend lifetime ------------------------------------------------------------------ */

/* The loader's platforms and their devices, listed once per process: platform and device IDs
 * stay valid for the process's lifetime, and drivers' first probe (PoCL's) is not safe to run
 * from two threads at once (docs/api.md, "Threads"). Fixed arrays: no context's allocator owns
 * process-wide memory. */
#define CL_MAX_PLATFORMS 16
#define CL_MAX_PLATFORM_DEVICES 64
static struct {
  pthread_once_t once;
  cl_int err; /* of clGetPlatformIDs */
  cl_uint n_platforms;
  cl_platform_id platforms[CL_MAX_PLATFORMS];
  cl_uint n_devices[CL_MAX_PLATFORMS];
  cl_device_id devices[CL_MAX_PLATFORMS][CL_MAX_PLATFORM_DEVICES];
} g_cl_probe = {.once = PTHREAD_ONCE_INIT};

static void cl_probe_once(void) {
  cl_uint n = 0;
  g_cl_probe.err = clGetPlatformIDs(0, NULL, &n);
  if (g_cl_probe.err != CL_SUCCESS || n == 0) return;
  if (n > CL_MAX_PLATFORMS) n = CL_MAX_PLATFORMS;
  g_cl_probe.err = clGetPlatformIDs(n, g_cl_probe.platforms, NULL);
  if (g_cl_probe.err != CL_SUCCESS) return;
  g_cl_probe.n_platforms = n;
  for (cl_uint p = 0; p < n; ++p) {
    cl_uint n_dev = 0;
    if (clGetDeviceIDs(g_cl_probe.platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev) !=
            CL_SUCCESS ||
        n_dev == 0) {
      continue;
    }
    if (n_dev > CL_MAX_PLATFORM_DEVICES) n_dev = CL_MAX_PLATFORM_DEVICES;
    if (clGetDeviceIDs(g_cl_probe.platforms[p], CL_DEVICE_TYPE_ALL, n_dev, g_cl_probe.devices[p],
                       NULL) == CL_SUCCESS) {
      g_cl_probe.n_devices[p] = n_dev;
    }
  }
}

vnrt_status cl_backend_init(const vnrt_backend_host *host, void **out_state) {
  *out_state = NULL;
  pthread_once(&g_cl_probe.once, cl_probe_once);
  cl_int err = g_cl_probe.err;
  cl_uint n_platforms = g_cl_probe.n_platforms;
  if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && n_platforms == 0)) {
    return host->error(host->core, VNRT_ERROR_NOT_FOUND,
                       "opencl: no OpenCL platform (clGetPlatformIDs: %d %s): no ICD is "
                       "installed, or OCL_ICD_VENDORS names none",
                       (int)err,
                       cl_error_name(err == CL_SUCCESS ? CL_PLATFORM_NOT_FOUND_KHR : err));
  }
  if (err != CL_SUCCESS) {
    return host->error(host->core, VNRT_ERROR_DEVICE, "opencl: clGetPlatformIDs failed: %d %s",
                       (int)err, cl_error_name(err));
  }
  cl_state *state = host->alloc(host->core, sizeof *state);
  if (!state) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "opencl: out of memory");
  memset(state, 0, sizeof *state);
  state->host = host;

  /* Devices are numbered across all platforms in the loader's platform order. */
  for (cl_uint p = 0; p < n_platforms; ++p) {
    cl_uint n_dev = g_cl_probe.n_devices[p];
    if (n_dev == 0) continue;
    cl_device_desc *grown =
        host->alloc(host->core, sizeof *grown * (state->n_devices + (size_t)n_dev));
    if (!grown) {
      cl_backend_shutdown(state);
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                         "opencl: out of memory listing devices");
    }
    if (state->n_devices) memcpy(grown, state->devices, sizeof *grown * state->n_devices);
    if (state->devices) host->free(host->core, state->devices);
    state->devices = grown;
    for (cl_uint i = 0; i < n_dev; ++i) {
      int ok = probe_device(host, g_cl_probe.platforms[p], g_cl_probe.devices[p][i],
                            &state->devices[state->n_devices]);
      if (ok < 0) {
        cl_backend_shutdown(state);
        return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                           "opencl: out of memory probing devices");
      }
      if (ok) {
        state->devices[state->n_devices].info.index = state->n_devices;
        snprintf(state->devices[state->n_devices].info.spec,
                 sizeof state->devices[state->n_devices].info.spec, "opencl:%u", state->n_devices);
        state->n_devices++;
      }
    }
  }
  *out_state = state;
  return VNRT_OK;
}

void cl_backend_shutdown(void *state_) {
  cl_state *state = state_;
  if (!state) return;
  const vnrt_backend_host *host = state->host;
  if (state->devices) host->free(host->core, state->devices);
  host->free(host->core, state);
}

uint32_t cl_backend_device_count(void *state_) { return ((cl_state *)state_)->n_devices; }

vnrt_status cl_backend_device_info(void *state_, uint32_t index,
                                   vnrt_backend_device_info *out_info) {
  cl_state *state = state_;
  memset(out_info, 0, sizeof *out_info);
  if (index >= state->n_devices) {
    return state->host->error(state->host->core, VNRT_ERROR_NOT_FOUND,
                              "opencl: no device %" PRIu32 " (%" PRIu32 " usable devices)", index,
                              state->n_devices);
  }
  *out_info = state->devices[index].info;
  return VNRT_OK;
}

/* ---- Opening a device ------------------------------------------------------------------ */

vnrt_status cl_backend_device_open(void *state_, uint32_t index, vnrt_backend_device **out_device) {
  *out_device = NULL;
  cl_state *state = state_;
  const vnrt_backend_host *host = state->host;
  if (index >= state->n_devices) {
    return host->error(host->core, VNRT_ERROR_NOT_FOUND,
                       "opencl: no device %" PRIu32 " (%" PRIu32 " usable devices)", index,
                       state->n_devices);
  }
  vnrt_backend_device *dev = host->alloc(host->core, sizeof *dev);
  if (!dev) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "opencl: out of memory");
  memset(dev, 0, sizeof *dev);
  dev->host = host;
  dev->desc = &state->devices[index];
  /* Keep at most an eighth of the device's memory idle in the pool. */
  dev->pool_limit = dev->desc->info.memory_bytes / 8;
  if (pthread_mutex_init(&dev->copy_lock, NULL) != 0) {
    host->free(host->core, dev);
    return host->error(host->core, VNRT_ERROR_DEVICE, "opencl: pthread_mutex_init failed");
  }

  cl_int err = CL_SUCCESS;
  cl_context_properties props[3] = {CL_CONTEXT_PLATFORM, (cl_context_properties)dev->desc->platform,
                                    0};
  dev->context = clCreateContext(props, 1, &dev->desc->id, NULL, NULL, &err);
  if (!dev->context || err != CL_SUCCESS) {
    vnrt_status s = cl_fail(dev, VNRT_ERROR_DEVICE, "clCreateContext failed: %d %s", (int)err,
                            cl_error_name(err));
    pthread_mutex_destroy(&dev->copy_lock);
    host->free(host->core, dev);
    return s;
  }
  /* Profiling on the compute queue lets timed runs (cl_backend_run_timed) read each kernel's
   * start and end; every OpenCL 1.x device supports it, and a command enqueued without an
   * event (every ordinary run) costs nothing more. Without it, timed runs decline. */
  dev->queue = clCreateCommandQueue(dev->context, dev->desc->id, CL_QUEUE_PROFILING_ENABLE, &err);
  dev->profiling = dev->queue && err == CL_SUCCESS;
  if (!dev->profiling) {
    if (dev->queue) clReleaseCommandQueue(dev->queue);
    dev->queue = clCreateCommandQueue(dev->context, dev->desc->id, 0, &err);
  }
  if (!dev->queue || err != CL_SUCCESS) {
    vnrt_status s = cl_fail(dev, VNRT_ERROR_DEVICE, "clCreateCommandQueue failed: %d %s", (int)err,
                            cl_error_name(err));
    cl_backend_device_close(dev);
    return s;
  }
  /* DualPath's copy stream writes on a second in-order queue, so that a write waits only for
   * earlier writes, not for the kernels queued on the compute queue (the executor orders the
   * two: a write never targets memory a running node reads, and a run waits for the last
   * write through an event before its first kernel). */
  dev->copy_queue = clCreateCommandQueue(dev->context, dev->desc->id, 0, &err);
  if (!dev->copy_queue || err != CL_SUCCESS) {
    vnrt_status s =
        cl_fail(dev, VNRT_ERROR_DEVICE, "clCreateCommandQueue (the copy queue) failed: %d %s",
                (int)err, cl_error_name(err));
    cl_backend_device_close(dev);
    return s;
  }
  vnrt_status s = cl_program_open_device(dev);
  if (s != VNRT_OK) {
    cl_backend_device_close(dev);
    return s;
  }
  /* Buffers in fine-grained SVM where the device has it: buffer_host_ptr then gives the
   * executor the memory itself, and the copy stream writes Engram rows there with no queue call
   * (each blocking call costs ~0.1 ms on PoCL). VNRT_CL_SVM=0 keeps ordinary buffers. */
  const int svm_off = !vnrt_host_option_flag(host, "cl_svm", 1);
  dev->svm = dev->desc->svm_fine_buffer && !svm_off;
  /* Huge pages only where the SVM memory is the host's own (CPU drivers): a GPU driver's SVM
   * pointer is its mapping, not ours to advise. */
  dev->huge_pages = dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE &&
                    vnrt_host_option_flag(host, "cpu_huge_pages", 1);
  host->log(host->core, VNRT_LOG_INFO, "opencl (%s): buffers: %s", dev->desc->info.name,
            dev->svm ? "fine-grained SVM, read and written in place by the host (buffer_host_ptr)"
            : svm_off && dev->desc->svm_fine_buffer
                ? "ordinary cl_mem through queue calls (VNRT_CL_SVM=0; the device has "
                  "fine-grained buffer SVM)"
                : "ordinary cl_mem through queue calls (no fine-grained buffer SVM)");
  host->log(host->core, VNRT_LOG_INFO,
            "opencl: copy stream: a second in-order queue, ordered by events%s",
            dev->svm ? " (for ordinary buffers; SVM buffers are written in place)" : "");
  *out_device = dev;
  return VNRT_OK;
}

void cl_backend_device_close(vnrt_backend_device *dev) {
  if (!dev) return;
  if (dev->copy_queue) clFinish(dev->copy_queue);
  if (dev->queue) clFinish(dev->queue);
  if (dev->copy_event) clReleaseEvent(dev->copy_event);
  cl_pool_drain(dev);
  cl_gemm_forget(dev);
  if (dev->program) clReleaseProgram(dev->program);
  if (dev->copy_queue) clReleaseCommandQueue(dev->copy_queue);
  if (dev->queue) clReleaseCommandQueue(dev->queue);
  pthread_mutex_destroy(&dev->copy_lock);
  if (dev->context) clReleaseContext(dev->context);
  dev->host->free(dev->host->core, dev);
}
