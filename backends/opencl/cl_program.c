/* The OpenCL kernel program: all of shaders/opencl built as one program per device, with an
 * on-disk cache of the program binary. A cache entry carries a header (key, driver, size,
 * checksum); anything that does not match exactly is rebuilt from source, never trusted. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_program.h"
#include "vnrt/backend_util.h"

#define CL_CACHE_MAGIC "VNRTCLP1"
#define CL_CACHE_FORMAT 1u
/* A program binary larger than this is not a binary this backend wrote. */
#define CL_CACHE_MAX_BINARY (512u << 20)

/* The cache file header, in host byte order (the cache is per machine). */
typedef struct cl_cache_header {
  char magic[8];
  uint32_t format;
  uint32_t header_bytes;
  uint64_t key;
  uint64_t binary_bytes;
  uint64_t checksum; /* FNV-1a of the binary */
  char device[128];
  char driver[128];
} cl_cache_header;

/* ---- Cache location -------------------------------------------------------------------- */

/* mkdir -p; returns 0 on success. */
static int make_dirs(const char *path) {
  char tmp[1024];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof tmp) return -1;
  memcpy(tmp, path, len + 1);
  for (char *p = tmp + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
  struct stat st;
  return (stat(tmp, &st) == 0 && S_ISDIR(st.st_mode)) ? 0 : -1;
}

int cl_cache_dir(const vnrt_backend_host *host, char *buf, size_t size) {
  const char *root = vnrt_host_option(host, "cache_dir");
  int n = -1;
  if (root && root[0] && strcmp(root, "none") != 0) n = snprintf(buf, size, "%s/opencl", root);
  if (n <= 0 || (size_t)n >= size || make_dirs(buf) != 0) {
    buf[0] = '\0';
    return 0;
  }
  return 1;
}

int cl_cache_path(const vnrt_backend_device *dev, const char *suffix, char *buf, size_t size) {
  if (!dev->cache_dir[0]) return 0;
  int n = snprintf(buf, size, "%s/%016" PRIx64 "%s", dev->cache_dir, dev->program_key, suffix);
  return n > 0 && (size_t)n < size;
}

/* ---- Building -------------------------------------------------------------------------- */

/* The build log of program for dev, into buf (truncated to fit, keeping its start). */
static void build_log(vnrt_backend_device *dev, cl_program program, char *buf, size_t size) {
  buf[0] = '\0';
  size_t n = 0;
  if (clGetProgramBuildInfo(program, dev->desc->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) !=
          CL_SUCCESS ||
      n == 0) {
    return;
  }
  char *log = dev->host->alloc(dev->host->core, n + 1);
  if (!log) return;
  if (clGetProgramBuildInfo(program, dev->desc->id, CL_PROGRAM_BUILD_LOG, n, log, NULL) ==
      CL_SUCCESS) {
    log[n] = '\0';
    /* Trim trailing whitespace so the message ends cleanly. */
    size_t len = strlen(log);
    while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == ' ' || log[len - 1] == '\r')) {
      log[--len] = '\0';
    }
    snprintf(buf, size, "%s", log);
    if (len >= size && size > 4) memcpy(buf + size - 4, "...", 4);
  }
  dev->host->free(dev->host->core, log);
}

vnrt_status cl_program_build_source(vnrt_backend_device *dev, const char *const *sources,
                                    size_t n_sources, const char *options,
                                    cl_program *out_program) {
  *out_program = NULL;
  cl_int err = CL_SUCCESS;
  cl_program program = clCreateProgramWithSource(dev->context, (cl_uint)n_sources,
                                                 (const char **)sources, NULL, &err);
  if (!program || err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE, "clCreateProgramWithSource failed: %d %s", (int)err,
                   cl_error_name(err));
  }
  err = clBuildProgram(program, 1, &dev->desc->id, options ? options : "", NULL, NULL);
  if (err != CL_SUCCESS) {
    char log[1400];
    build_log(dev, program, log, sizeof log);
    clReleaseProgram(program);
    return cl_fail(dev, VNRT_ERROR_DEVICE,
                   "building the OpenCL kernels failed (clBuildProgram: %d %s, options \"%s\"); "
                   "build log:\n%s",
                   (int)err, cl_error_name(err), options ? options : "",
                   log[0] ? log : "(the driver gave no build log)");
  }
  *out_program = program;
  return VNRT_OK;
}

/* ---- The cache ------------------------------------------------------------------------- */

/* Loads the cache entry at path into a built program; on any mismatch returns 0 with why set. */
static int cache_load(vnrt_backend_device *dev, const char *path, cl_program *out, char *why,
                      size_t why_size) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, why_size, "no cache entry");
    return 0;
  }
  cl_cache_header h;
  unsigned char *bin = NULL;
  int ok = 0;
  long file_size = -1;
  if (fseek(f, 0, SEEK_END) == 0) file_size = ftell(f);
  if (fseek(f, 0, SEEK_SET) != 0) file_size = -1;
  if (file_size < (long)sizeof h || fread(&h, sizeof h, 1, f) != 1) {
    snprintf(why, why_size, "cache entry truncated (%ld bytes)", file_size);
  } else if (memcmp(h.magic, CL_CACHE_MAGIC, 8) != 0 || h.format != CL_CACHE_FORMAT ||
             h.header_bytes != sizeof h) {
    snprintf(why, why_size, "cache entry has a foreign header");
  } else if (h.key != dev->program_key) {
    snprintf(why, why_size, "stale cache entry (key %016" PRIx64 ")", h.key);
  } else if (h.binary_bytes == 0 || h.binary_bytes > CL_CACHE_MAX_BINARY ||
             (uint64_t)file_size != sizeof h + h.binary_bytes) {
    snprintf(why, why_size,
             "cache entry size mismatch (%ld bytes on disk, header says %" PRIu64 " + %zu)",
             file_size, h.binary_bytes, sizeof h);
  } else if (strncmp(h.driver, dev->desc->driver_version, sizeof h.driver - 1) != 0) {
    snprintf(why, why_size, "stale cache entry (driver %.60s)", h.driver);
  } else if (!(bin = dev->host->alloc(dev->host->core, (size_t)h.binary_bytes))) {
    snprintf(why, why_size, "out of host memory reading the cache");
  } else if (fread(bin, 1, (size_t)h.binary_bytes, f) != h.binary_bytes) {
    snprintf(why, why_size, "cache entry truncated");
  } else if (cl_fnv1a(CL_FNV_SEED, bin, (size_t)h.binary_bytes) != h.checksum) {
    snprintf(why, why_size, "corrupt cache entry (checksum mismatch)");
  } else {
    ok = 1;
  }
  fclose(f);
  if (ok) {
    cl_int err = CL_SUCCESS, bin_status = CL_SUCCESS;
    size_t len = (size_t)h.binary_bytes;
    const unsigned char *bins[1] = {bin};
    cl_program program =
        clCreateProgramWithBinary(dev->context, 1, &dev->desc->id, &len, bins, &bin_status, &err);
    if (!program || err != CL_SUCCESS || bin_status != CL_SUCCESS) {
      snprintf(why, why_size, "the driver rejected the cached binary (%d %s)",
               (int)(err != CL_SUCCESS ? err : bin_status),
               cl_error_name(err != CL_SUCCESS ? err : bin_status));
      if (program) clReleaseProgram(program);
      ok = 0;
    } else if ((err = clBuildProgram(program, 1, &dev->desc->id, dev->build_options, NULL, NULL)) !=
               CL_SUCCESS) {
      snprintf(why, why_size, "the cached binary did not build (%d %s)", (int)err,
               cl_error_name(err));
      clReleaseProgram(program);
      ok = 0;
    } else {
      *out = program;
    }
  }
  if (bin) dev->host->free(dev->host->core, bin);
  return ok;
}

/* Writes program's binary to path atomically (temp file + rename); failures are only logged. */
static void cache_store(vnrt_backend_device *dev, cl_program program, const char *path) {
  const vnrt_backend_host *host = dev->host;
  size_t size = 0;
  cl_int err = clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL);
  if (err != CL_SUCCESS || size == 0 || size > CL_CACHE_MAX_BINARY) {
    host->log(host->core, VNRT_LOG_INFO,
              "opencl (%s): the driver offers no program binary to "
              "cache (%d)",
              dev->desc->info.name, (int)err);
    return;
  }
  unsigned char *bin = host->alloc(host->core, size);
  if (!bin) return;
  unsigned char *bins[1] = {bin};
  err = clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL);
  if (err == CL_SUCCESS) {
    cl_cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CL_CACHE_MAGIC, 8);
    h.format = CL_CACHE_FORMAT;
    h.header_bytes = sizeof h;
    h.key = dev->program_key;
    h.binary_bytes = size;
    h.checksum = cl_fnv1a(CL_FNV_SEED, bin, size);
    snprintf(h.device, sizeof h.device, "%s", dev->desc->info.name);
    snprintf(h.driver, sizeof h.driver, "%s", dev->desc->driver_version);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%.1100s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
      remove(tmp);
      host->log(host->core, VNRT_LOG_INFO, "opencl (%s): could not write the cache entry %s",
                dev->desc->info.name, path);
    }
  }
  host->free(host->core, bin);
}

vnrt_status cl_program_open_device(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  const cl_device_desc *desc = dev->desc;
  /* No extension is needed by the kernels. VN_VW is the vector width of the register-blocked
   * GEMM kernels (the device's preferred float width); a driver that rounds single-precision
   * divide and sqrt correctly when asked gets the flag, so results match the CPU more closely. */
  /* VN_PREFETCH (common.cl's VN_PF) only where the compiler is known to be clang's, as on
   * PoCL: another vendor's compiler need not know __builtin_prefetch, and a GPU gains nothing
   * from it. (quant.cl's AVX-512 decode steps need no option: common.cl takes them where the
   * compiler says it targets AVX-512.) */
  const int pocl = desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE &&
                   strstr(desc->platform_name, "Portable Computing Language") != NULL;
  snprintf(dev->build_options, sizeof dev->build_options, "-cl-std=CL1.2 -DVN_VW=%d%s%s",
           desc->vec_width, desc->correct_div_sqrt ? " -cl-fp32-correctly-rounded-divide-sqrt" : "",
           pocl ? " -DVN_PREFETCH" : "");

  uint64_t key = CL_FNV_SEED;
  key = cl_fnv1a(key, CL_CACHE_MAGIC, 8);
  key = cl_fnv1a(key, desc->platform_name, strlen(desc->platform_name) + 1);
  key = cl_fnv1a(key, desc->platform_version, strlen(desc->platform_version) + 1);
  key = cl_fnv1a(key, desc->info.name, strlen(desc->info.name) + 1);
  key = cl_fnv1a(key, desc->device_version, strlen(desc->device_version) + 1);
  key = cl_fnv1a(key, desc->driver_version, strlen(desc->driver_version) + 1);
  key = cl_fnv1a(key, dev->build_options, strlen(dev->build_options) + 1);
  for (size_t i = 0; i < vn_cl_source_count; ++i) {
    key = cl_fnv1a(key, vn_cl_sources[i], strlen(vn_cl_sources[i]) + 1);
  }
  dev->program_key = key;
  if (!cl_cache_dir(host, dev->cache_dir, sizeof dev->cache_dir)) {
    host->log(host->core, VNRT_LOG_INFO,
              "opencl (%s): no disk cache (the cache_dir option is \"none\", or no usable "
              "directory); kernels are built every time",
              desc->info.name);
  }

  char path[1100], why[200] = "no cache directory";
  int have_path = cl_cache_path(dev, ".clbin", path, sizeof path);
  double t0 = cl_now();
  if (have_path && cache_load(dev, path, &dev->program, why, sizeof why)) {
    host->log(host->core, VNRT_LOG_INFO, "opencl (%s): kernels loaded from the cache %s (%.0f ms)",
              desc->info.name, path, 1e3 * (cl_now() - t0));
    return VNRT_OK;
  }
  t0 = cl_now();
  vnrt_status s = cl_program_build_source(dev, vn_cl_sources, vn_cl_source_count,
                                          dev->build_options, &dev->program);
  if (s != VNRT_OK) return s;
  host->log(host->core, VNRT_LOG_INFO, "opencl (%s): kernels built from source in %.0f ms (%s)%s%s",
            desc->info.name, 1e3 * (cl_now() - t0), why, have_path ? "; caching in " : "",
            have_path ? path : "");
  if (have_path) cache_store(dev, dev->program, path);
  return VNRT_OK;
}
