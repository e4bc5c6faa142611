/* Check suite for the OpenCL backend: device listing against a direct OpenCL query, a missing
 * ICD, build logs in errors, the allocation limit, the program cache (hit, corrupt, truncated,
 * stale), every GEMM implementation against a double reference, the measured GEMM choice,
 * rope at long positions, and buffers in fine-grained SVM (host pointer, VNRT_CL_SVM=0). Op-by-op
 * agreement with the CPU is covered by test_cpu_*.c, which run on every device. */
/* 2.0 headers for the SVM capability query only. */
#define CL_TARGET_OPENCL_VERSION 200
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moe_ref.h"
#include "opencl/cl_program.h"
#include "sweep.h"
#include "test_util.h"
#include "vnrt/backend.h"

const vnrt_backend_i *opencl_backend_get(void);

/* ---- Helpers --------------------------------------------------------------------------- */

/* Usable devices as the backend's rules define them, by a direct query: OpenCL 1.2+, available,
 * with a compiler, full profile or cles_khr_int64. */
typedef struct direct_dev {
  cl_device_id id;
  char name[256];
  cl_ulong global_mem, max_alloc, local_mem;
  cl_bool unified;
  cl_device_type type;
  int fp16;
  int svm_fine_buffer; /* OpenCL 2.0+ with CL_DEVICE_SVM_FINE_GRAIN_BUFFER */
} direct_dev;

static int direct_devices(direct_dev *out, int cap) {
  cl_uint np = 0;
  if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0) return 0;
  cl_platform_id plats[16];
  if (np > 16) np = 16;
  clGetPlatformIDs(np, plats, NULL);
  int n = 0;
  for (cl_uint p = 0; p < np; ++p) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS) continue;
    cl_device_id ids[16];
    if (nd > 16) nd = 16;
    clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL);
    for (cl_uint i = 0; i < nd && n < cap; ++i) {
      char ver[256] = "", cver[256] = "", prof[64] = "", ext[8192] = "";
      cl_bool avail = 0, comp = 0;
      clGetDeviceInfo(ids[i], CL_DEVICE_VERSION, sizeof ver, ver, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_OPENCL_C_VERSION, sizeof cver, cver, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_PROFILE, sizeof prof, prof, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_EXTENSIONS, sizeof ext, ext, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_AVAILABLE, sizeof avail, &avail, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_COMPILER_AVAILABLE, sizeof comp, &comp, NULL);
      int maj = 0, min = 0, cmaj = 0, cmin = 0;
      sscanf(ver, "OpenCL %d.%d", &maj, &min);
      sscanf(cver, "OpenCL C %d.%d", &cmaj, &cmin);
      if (maj * 10 + min < 12 || cmaj * 10 + cmin < 12 || !avail || !comp) continue;
      if (strcmp(prof, "FULL_PROFILE") != 0 && !strstr(ext, "cles_khr_int64")) continue;
      direct_dev *d = &out[n++];
      memset(d, 0, sizeof *d);
      d->id = ids[i];
      clGetDeviceInfo(ids[i], CL_DEVICE_NAME, sizeof d->name, d->name, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->global_mem, &d->global_mem,
                      NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof d->max_alloc, &d->max_alloc,
                      NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_LOCAL_MEM_SIZE, sizeof d->local_mem, &d->local_mem, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof d->unified, &d->unified, NULL);
      clGetDeviceInfo(ids[i], CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
      d->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
      cl_device_svm_capabilities svm = 0;
      if (maj >= 2 &&
          clGetDeviceInfo(ids[i], CL_DEVICE_SVM_CAPABILITIES, sizeof svm, &svm, NULL) == CL_SUCCESS)
        d->svm_fine_buffer = (svm & CL_DEVICE_SVM_FINE_GRAIN_BUFFER) != 0;
    }
  }
  return n;
}

/* The vnrt device opencl:0 of ctx, or NULL when the machine has none. */
static vnrt_device *opencl0(vnrt_context *ctx) {
  vnrt_device *dev = NULL;
  return vnrt_device_select(ctx, "opencl:0", &dev) == VNRT_OK ? dev : NULL;
}

/* Skips (passes with a note) on machines without any OpenCL device, after checking that the
 * backend agrees there is none. */
#define REQUIRE_OPENCL(ctx)                                                         \
  do {                                                                              \
    if (!opencl0(ctx)) {                                                            \
      direct_dev dd_[4];                                                            \
      ck_assert_int_eq(direct_devices(dd_, 4), 0);                                  \
      fprintf(stderr, "%s: no OpenCL device on this machine; skipped\n", __func__); \
      vnrt_context_destroy(ctx);                                                    \
      return;                                                                       \
    }                                                                               \
  } while (0)

/* Log messages collected by a context (INFO and up). */
typedef struct log_buf {
  char text[65536];
  size_t len;
} log_buf;

static void collect_log(void *user, vnrt_log_level level, const char *message) {
  log_buf *b = user;
  int n = snprintf(b->text + b->len, sizeof b->text - b->len, "%s\n", message);
  if (n > 0 && b->len + (size_t)n < sizeof b->text) b->len += (size_t)n;
}

static vnrt_context *logging_context(log_buf *lb) {
  memset(lb, 0, sizeof *lb);
  vnrt_context_desc desc = {0};
  desc.log_fn = collect_log;
  desc.log_user = lb;
  desc.log_level = VNRT_LOG_INFO;
  desc.no_plugins = 1;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&desc, &ctx), VNRT_OK);
  return ctx;
}

/* A fake host for calling the backend table directly. */
typedef struct fake_host {
  vnrt_backend_host host;
  char msg[4096];
} fake_host;

static void fake_log(void *core, vnrt_log_level level, const char *fmt, ...) {}
static vnrt_status fake_error(void *core, vnrt_status status, const char *fmt, ...) {
  fake_host *h = core;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->msg, sizeof h->msg, fmt, ap);
  va_end(ap);
  return status;
}
static void *fake_alloc(void *core, size_t size) { return malloc(size); }
static void fake_free(void *core, void *p) { free(p); }
/* As the core's options with nothing set: key's environment variable, VNRT_<KEY>. */
static const char *fake_option(void *core, const char *key) {
  (void)core;
  char env[64] = "VNRT_";
  for (size_t i = 0; key[i] && i + 6 < sizeof env; ++i) {
    env[5 + i] = (char)(key[i] >= 'a' && key[i] <= 'z' ? key[i] - 'a' + 'A' : key[i]);
  }
  return getenv(env);
}

static void fake_host_init(fake_host *h) {
  memset(h, 0, sizeof *h);
  h->host = (vnrt_backend_host){
      sizeof(vnrt_backend_host), h, fake_log, fake_error, fake_alloc, fake_free, 1, fake_option};
}

/* A fresh temporary directory (removed by rm_rf). */
static void temp_dir(char *buf, size_t size) {
  snprintf(buf, size, "/tmp/vnrt-test-opencl-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(buf));
}

static void rm_rf(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char sub[1024];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
  } else {
    remove(path);
  }
}

/* The first file in dir whose name ends with suffix, into out; 0 if none. */
static int find_file(const char *dir, const char *suffix, char *out, size_t size) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name), s = strlen(suffix);
    if (n > s && strcmp(e->d_name + n - s, suffix) == 0) {
      snprintf(out, size, "%s/%s", dir, e->d_name);
      found = 1;
    }
  }
  closedir(d);
  return found;
}

/* Runs out = a + b ([3, 5] f32) on opencl:0 of ctx and checks every value. */
static void run_add_and_check(vnrt_context *ctx) {
  const int64_t dims[2] = {3, 5};
  tu_tensor in[2] = {tu_tensor_new(VNRT_F32, 2, dims), tu_tensor_new(VNRT_F32, 2, dims)};
  tu_fill_uniform(&in[0], 1, -2.0f, 2.0f);
  tu_fill_uniform(&in[1], 2, -2.0f, 2.0f);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ADD, in, 2, NULL, 0, 1);
  tu_tensor out;
  TU_OK(ctx, tu_run(ctx, g, opencl0(ctx), in, 2, &out, 1));
  for (int64_t i = 0; i < 15; ++i) {
    ck_assert_msg(tu_get(&out, i) == (double)(float)(tu_get(&in[0], i) + tu_get(&in[1], i)),
                  "add[%lld] = %g", (long long)i, tu_get(&out, i));
  }
  tu_tensor_free(&out);
  tu_tensor_free(&in[0]);
  tu_tensor_free(&in[1]);
  vnrt_graph_destroy(g);
}

/* ---- Devices --------------------------------------------------------------------------- */

START_TEST(test_devices_listed_with_capabilities) {
  vnrt_context *ctx = tu_context();
  direct_dev dd[16];
  int n_direct = direct_devices(dd, 16);
  int n_vnrt = 0;
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *dev = NULL;
    vnrt_device_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_device_get(ctx, i, &dev));
    TU_OK(ctx, vnrt_device_get_info(dev, &info));
    if (strcmp(info.backend, "opencl") != 0) continue;
    ck_assert_int_lt(n_vnrt, n_direct);
    const direct_dev *d = &dd[n_vnrt];
    char spec[32];
    snprintf(spec, sizeof spec, "opencl:%d", n_vnrt);
    ck_assert_str_eq(info.spec, spec);
    ck_assert_uint_eq(info.index, (uint32_t)n_vnrt);
    ck_assert_msg(strncmp(info.name, d->name, sizeof info.name - 1) == 0, "name %s vs %s",
                  info.name, d->name);
    ck_assert_uint_eq(info.memory_bytes, d->global_mem);
    ck_assert_uint_eq(info.max_buffer_bytes, d->max_alloc);
    ck_assert_uint_eq(info.shared_memory_bytes, d->local_mem);
    vnrt_device_type want =
        (d->type & CL_DEVICE_TYPE_CPU) ? VNRT_DEVICE_TYPE_SOFTWARE
        : (d->type & CL_DEVICE_TYPE_GPU)
            ? (d->unified ? VNRT_DEVICE_TYPE_GPU_INTEGRATED : VNRT_DEVICE_TYPE_GPU_DISCRETE)
            : VNRT_DEVICE_TYPE_ACCELERATOR;
    ck_assert_int_eq(info.type, want);
    ck_assert(info.caps & VNRT_CAP_F16_STORAGE);
    ck_assert_int_eq(!!(info.caps & VNRT_CAP_F16), d->fp16);
    ck_assert_int_eq(!!(info.caps & VNRT_CAP_UNIFIED_MEMORY), d->unified == CL_TRUE);
    ck_assert_msg(strstr(info.driver, "OpenCL C 1.") || strstr(info.driver, "OpenCL C 2.") ||
                      strstr(info.driver, "OpenCL C 3."),
                  "driver string names no OpenCL C version: %s", info.driver);
    ck_assert_uint_gt(info.max_workgroup_size, 0);
    /* opencl:N selects exactly this device. */
    vnrt_device *sel = NULL;
    TU_OK(ctx, vnrt_device_select(ctx, spec, &sel));
    ck_assert_ptr_eq(sel, dev);
    ++n_vnrt;
  }
  ck_assert_int_eq(n_vnrt, n_direct);
  vnrt_device *none = NULL;
  char past[32];
  snprintf(past, sizeof past, "opencl:%d", n_vnrt);
  ck_assert_int_ne(vnrt_device_select(ctx, past, &none), VNRT_OK);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_missing_icd_gives_zero_devices) {
  /* The ICD loader reads OCL_ICD_VENDORS once per process; Check runs each test in a fresh
   * child, so nothing has touched OpenCL yet. Without fork there is no clean way to test. */
  const char *fork_mode = getenv("CK_FORK");
  if (fork_mode && strcmp(fork_mode, "no") == 0) {
    fprintf(stderr, "test_missing_icd_gives_zero_devices: needs CK_FORK != no; skipped\n");
    return;
  }
  char dir[64];
  temp_dir(dir, sizeof dir);
  const char *old = getenv("OCL_ICD_VENDORS");
  char *saved = old ? strdup(old) : NULL;
  setenv("OCL_ICD_VENDORS", dir, 1);
  log_buf *lb = calloc(1, sizeof *lb);
  vnrt_context *ctx = logging_context(lb);
  int opencl_devices = 0;
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *dev = NULL;
    vnrt_device_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_device_get(ctx, i, &dev));
    TU_OK(ctx, vnrt_device_get_info(dev, &info));
    opencl_devices += strcmp(info.backend, "opencl") == 0;
  }
  ck_assert_int_eq(opencl_devices, 0);
  vnrt_device *dev = NULL;
  ck_assert_int_eq(vnrt_device_select(ctx, "opencl:0", &dev), VNRT_ERROR_NOT_FOUND);
  ck_assert_msg(strstr(lb->text, "CL_PLATFORM_NOT_FOUND_KHR"),
                "the skipped backend's reason is not logged: %s", lb->text);
  /* The context still works. */
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_context_destroy(ctx);
  free(lb);
  if (saved) {
    setenv("OCL_ICD_VENDORS", saved, 1);
    free(saved);
  } else {
    unsetenv("OCL_ICD_VENDORS");
  }
  rm_rf(dir);
}
END_TEST

/* ---- Build logs and allocation limits (through the backend table) ---------------------- */

/* The backend table, its state and opencl:0 opened through it, reporting to h. */
static vnrt_backend_device *open_device0(fake_host *h, const vnrt_backend_i **out_be,
                                         void **out_state) {
  fake_host_init(h);
  const vnrt_backend_i *be = opencl_backend_get();
  ck_assert_int_eq(be->init(&h->host, out_state), VNRT_OK);
  vnrt_backend_device *dev = NULL;
  ck_assert_msg(be->device_open(*out_state, 0, &dev) == VNRT_OK, "device_open: %s", h->msg);
  *out_be = be;
  return dev;
}

START_TEST(test_build_failure_surfaces_the_log) {
  fake_host h;
  fake_host_init(&h);
  const vnrt_backend_i *be = opencl_backend_get();
  void *state = NULL;
  if (be->init(&h.host, &state) != VNRT_OK || be->device_count(state) == 0) {
    direct_dev dd[4];
    ck_assert_int_eq(direct_devices(dd, 4), 0);
    if (state) be->shutdown(state);
    return;
  }
  vnrt_backend_device *dev = NULL;
  ck_assert_msg(be->device_open(state, 0, &dev) == VNRT_OK, "device_open: %s", h.msg);
  const char *src[1] = {
      "__kernel void broken(__global float *x) { x[0] = vnrt_undeclared_name_42; }\n"};
  cl_program prog = NULL;
  vnrt_status s = cl_program_build_source(dev, src, 1, "-cl-std=CL1.2", &prog);
  ck_assert_int_eq(s, VNRT_ERROR_DEVICE);
  ck_assert_ptr_null(prog);
  ck_assert_msg(strstr(h.msg, "build log") && strstr(h.msg, "vnrt_undeclared_name_42") &&
                    strstr(h.msg, "CL_BUILD_PROGRAM_FAILURE"),
                "the error does not carry the build log: %s", h.msg);
  /* A good program still builds on the same device. */
  const char *ok_src[1] = {"__kernel void fine(__global float *x) { x[0] = 1.0f; }\n"};
  ck_assert_int_eq(cl_program_build_source(dev, ok_src, 1, "-cl-std=CL1.2", &prog), VNRT_OK);
  clReleaseProgram(prog);
  be->device_close(dev);
  be->shutdown(state);
}
END_TEST

START_TEST(test_allocation_beyond_the_limit_names_it) {
  vnrt_context *ctx = tu_context();
  REQUIRE_OPENCL(ctx);
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(opencl0(ctx), &info));
  char limit[32];
  snprintf(limit, sizeof limit, "%llu", (unsigned long long)info.max_buffer_bytes);

  /* Through the backend table: one byte past CL_DEVICE_MAX_MEM_ALLOC_SIZE. */
  fake_host h;
  const vnrt_backend_i *be = NULL;
  void *state = NULL;
  vnrt_backend_device *dev = open_device0(&h, &be, &state);
  vnrt_backend_buffer *buf = NULL;
  ck_assert_int_eq(be->buffer_alloc(dev, info.max_buffer_bytes + 1, &buf),
                   VNRT_ERROR_OUT_OF_MEMORY);
  ck_assert_ptr_null(buf);
  ck_assert_msg(strstr(h.msg, "CL_DEVICE_MAX_MEM_ALLOC_SIZE") && strstr(h.msg, limit),
                "message does not name the limit %s: %s", limit, h.msg);
  /* A small buffer round-trips. */
  ck_assert_int_eq(be->buffer_alloc(dev, 1000, &buf), VNRT_OK);
  unsigned char w[1000], r[1000];
  for (int i = 0; i < 1000; ++i) w[i] = (unsigned char)(i * 7);
  ck_assert_int_eq(be->buffer_write(dev, buf, 0, w, 1000), VNRT_OK);
  memset(r, 0, sizeof r);
  ck_assert_int_eq(be->buffer_read(dev, buf, 100, r, 900), VNRT_OK);
  ck_assert_int_eq(memcmp(r, w + 100, 900), 0);
  ck_assert_int_eq(be->buffer_read(dev, buf, 900, r, 101), VNRT_ERROR_INVALID_ARGUMENT);
  be->buffer_free(dev, buf);
  be->device_close(dev);
  be->shutdown(state);

  /* Through a plan: an input one element past the limit (when the element count is one the
   * kernels take at all). */
  int64_t n = (int64_t)(info.max_buffer_bytes / 4) + 1;
  if (n <= INT32_MAX) {
    vnrt_graph *g = NULL;
    TU_OK(ctx, vnrt_graph_create(ctx, &g));
    vnrt_tensor_type t = {VNRT_F32, 1, {n}};
    vnrt_value x, y;
    TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, NULL, 0, NULL, &y, 1));
    TU_OK(ctx, vnrt_graph_add_output(g, y));
    vnrt_plan_desc pd = {0};
    pd.no_fallback = 1;
    vnrt_plan *plan = NULL;
    ck_assert_int_eq(vnrt_plan_create(ctx, g, opencl0(ctx), &pd, &plan), VNRT_ERROR_OUT_OF_MEMORY);
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "CL_DEVICE_MAX_MEM_ALLOC_SIZE") && strstr(msg, limit),
                  "plan error does not name the limit %s: %s", limit, msg);
    vnrt_graph_destroy(g);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- The program cache ----------------------------------------------------------------- */

/* A context with VNRT_CACHE_DIR=dir that runs an add on opencl:0; returns its log. */
static void cached_run(log_buf *lb) {
  vnrt_context *ctx = logging_context(lb);
  run_add_and_check(ctx);
  vnrt_context_destroy(ctx);
}

START_TEST(test_program_cache_hit_corrupt_truncated_stale) {
  vnrt_context *probe = tu_context();
  REQUIRE_OPENCL(probe);
  vnrt_context_destroy(probe);
  char dir[64], sub[128], file[512];
  temp_dir(dir, sizeof dir);
  setenv("VNRT_CACHE_DIR", dir, 1);
  snprintf(sub, sizeof sub, "%s/opencl", dir);
  log_buf *lb = calloc(1, sizeof *lb);

  cached_run(lb); /* first: built from source and written */
  ck_assert_msg(strstr(lb->text, "kernels built from source") && strstr(lb->text, "no cache entry"),
                "first context did not build: %s", lb->text);
  ck_assert_msg(find_file(sub, ".clbin", file, sizeof file), "no cache file in %s", sub);
  struct stat st;
  ck_assert_int_eq(stat(file, &st), 0);
  long size = (long)st.st_size;
  ck_assert_int_gt(size, 300);

  cached_run(lb); /* second: a cache hit, no build */
  ck_assert_msg(
      strstr(lb->text, "kernels loaded from the cache") && !strstr(lb->text, "built from source"),
      "second context did not hit the cache: %s", lb->text);

  /* A flipped byte in the binary: detected by the checksum, rebuilt, rewritten. */
  FILE *f = fopen(file, "r+b");
  ck_assert_ptr_nonnull(f);
  fseek(f, size - 17, SEEK_SET);
  int c = fgetc(f);
  fseek(f, size - 17, SEEK_SET);
  fputc(c ^ 0x5a, f);
  fclose(f);
  cached_run(lb);
  ck_assert_msg(strstr(lb->text, "corrupt cache entry (checksum mismatch)") &&
                    strstr(lb->text, "built from source"),
                "a corrupt entry was not rebuilt: %s", lb->text);
  cached_run(lb);
  ck_assert_msg(strstr(lb->text, "loaded from the cache"),
                "the rebuilt entry was not rewritten: %s", lb->text);

  /* Truncated in the middle of the binary. */
  ck_assert_int_eq(truncate(file, size / 2), 0);
  cached_run(lb);
  ck_assert_msg(strstr(lb->text, "size mismatch") && strstr(lb->text, "built from source"),
                "a truncated entry was not rebuilt: %s", lb->text);

  /* A header whose key is another program's (as after a source or driver change). */
  f = fopen(file, "r+b");
  ck_assert_ptr_nonnull(f);
  fseek(f, 16, SEEK_SET); /* the key field follows magic[8], format and header size */
  c = fgetc(f);
  fseek(f, 16, SEEK_SET);
  fputc(c ^ 0xff, f);
  fclose(f);
  cached_run(lb);
  ck_assert_msg(strstr(lb->text, "stale cache entry") && strstr(lb->text, "built from source"),
                "a stale entry was not rebuilt: %s", lb->text);

  /* Garbage of the right size is not a program either. */
  f = fopen(file, "wb");
  ck_assert_ptr_nonnull(f);
  for (long i = 0; i < size; ++i) fputc((int)(i * 31), f);
  fclose(f);
  cached_run(lb);
  ck_assert_msg(strstr(lb->text, "foreign header") && strstr(lb->text, "built from source"),
                "a garbage entry was not rebuilt: %s", lb->text);

  free(lb);
  unsetenv("VNRT_CACHE_DIR");
  rm_rf(dir);
}
END_TEST

/* ---- GEMM ------------------------------------------------------------------------------ */

/* out[b][m][n] = Σ_k a·b in double for a matmul with batch broadcast (ranks 2..4). */
static void matmul_ref(const tu_tensor *a, const tu_tensor *b, const vnrt_tensor_type *o,
                       double *out) {
  int64_t M = a->type.dims[a->type.rank - 2], K = a->type.dims[a->type.rank - 1];
  int64_t N = b->type.dims[b->type.rank - 1];
  int64_t batch = vnrt_tensor_type_numel(o) / (M * N);
  int32_t nb = o->rank - 2;
  for (int64_t z = 0; z < batch; ++z) {
    /* Coordinates of z in o's batch dims, mapped to a's and b's (size-1 dims broadcast). */
    int64_t coord[2] = {0, 0}, rem = z;
    for (int32_t d = nb - 1; d >= 0; --d) {
      coord[d] = rem % o->dims[d];
      rem /= o->dims[d];
    }
    int64_t za = 0, zb = 0;
    for (int32_t d = 0; d < nb; ++d) {
      int32_t da = d - (nb - (a->type.rank - 2)), db = d - (nb - (b->type.rank - 2));
      if (da >= 0) za = za * a->type.dims[da] + (a->type.dims[da] == 1 ? 0 : coord[d]);
      if (db >= 0) zb = zb * b->type.dims[db] + (b->type.dims[db] == 1 ? 0 : coord[d]);
    }
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          acc += tu_get(a, za * M * K + m * K + k) * tu_get(b, zb * K * N + k * N + n);
        }
        out[(z * M + m) * N + n] = acc;
      }
    }
  }
}

/* Runs op on opencl:0 with VNRT_CL_GEMM=impl and checks against the double reference. */
static void check_gemm(vnrt_context *ctx, const char *impl, vnrt_op op, tu_tensor *in) {
  setenv("VNRT_CL_GEMM", impl, 1);
  vnrt_graph *g = tu_op_graph(ctx, op, in, 2, NULL, 0, 1);
  tu_tensor out;
  vnrt_status s = tu_run(ctx, g, opencl0(ctx), in, 2, &out, 1);
  unsetenv("VNRT_CL_GEMM");
  ck_assert_msg(s == VNRT_OK, "%s %s: %s", vnrt_op_name(op), impl, vnrt_context_last_error(ctx));
  int64_t n = tu_numel(&out);
  double *want = malloc(sizeof(double) * (size_t)n);
  if (op == VNRT_OP_MATMUL) {
    matmul_ref(&in[0], &in[1], &out.type, want);
  } else {
    int64_t K = in[1].type.dims[1], N = in[1].type.dims[0], M = tu_numel(&in[0]) / K;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k)
          acc += tu_get(&in[0], m * K + k) * tu_get(&in[1], j * K + k);
        want[m * N + j] = acc;
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) want[i] = tu_round_to(out.type.dtype, want[i]);
  double err = tu_nmse(&out, want, n);
  ck_assert_msg(err <= 1e-6, "%s with %s (%s result): NMSE %.3g", vnrt_op_name(op), impl,
                vnrt_dtype_name(out.type.dtype), err);
  free(want);
  tu_tensor_free(&out);
  vnrt_graph_destroy(g);
}

START_TEST(test_every_gemm_implementation_is_correct) {
  vnrt_context *ctx = tu_context();
  REQUIRE_OPENCL(ctx);
  const char *impls[] = {"vec", "tiled", "rows", "clblast"};
  /* linear with f16 weights and an odd K; with bf16 x (bf16 result) and few rows. */
  const int64_t xd[2] = {37, 70}, wd[2] = {45, 70}, x2d[3] = {2, 2, 67}, w2d[2] = {33, 67};
  tu_tensor lin[2] = {tu_tensor_new(VNRT_F32, 2, xd), tu_tensor_new(VNRT_F16, 2, wd)};
  tu_tensor lin2[2] = {tu_tensor_new(VNRT_BF16, 3, x2d), tu_tensor_new(VNRT_BF16, 2, w2d)};
  /* matmul with batch broadcast, bf16 a (bf16 result); and one with f32 a, f16 b. */
  const int64_t ad[4] = {2, 1, 19, 33}, bd[3] = {3, 33, 21}, a2d[2] = {70, 40}, b2d[2] = {40, 50};
  tu_tensor mm[2] = {tu_tensor_new(VNRT_BF16, 4, ad), tu_tensor_new(VNRT_F32, 3, bd)};
  tu_tensor mm2[2] = {tu_tensor_new(VNRT_F32, 2, a2d), tu_tensor_new(VNRT_F16, 2, b2d)};
  tu_tensor *sets[4] = {lin, lin2, mm, mm2};
  for (int i = 0; i < 4; ++i) {
    tu_fill_uniform(&sets[i][0], 10 + i, -1.0f, 1.0f);
    tu_fill_uniform(&sets[i][1], 20 + i, -1.0f, 1.0f);
  }
  for (int i = 0; i < 4; ++i) {
    check_gemm(ctx, impls[i], VNRT_OP_LINEAR, lin);
    check_gemm(ctx, impls[i], VNRT_OP_LINEAR, lin2);
    check_gemm(ctx, impls[i], VNRT_OP_MATMUL, mm);
    check_gemm(ctx, impls[i], VNRT_OP_MATMUL, mm2);
  }
  for (int i = 0; i < 4; ++i) {
    tu_tensor_free(&sets[i][0]);
    tu_tensor_free(&sets[i][1]);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_gemm_choice_is_measured_once_and_cached) {
  vnrt_context *probe = tu_context();
  REQUIRE_OPENCL(probe);
  vnrt_context_destroy(probe);
  char dir[64], sub[128], file[512];
  temp_dir(dir, sizeof dir);
  setenv("VNRT_CACHE_DIR", dir, 1);
  snprintf(sub, sizeof sub, "%s/opencl", dir);
  const int64_t xd[2] = {64, 96}, wd[2] = {80, 96}; /* 491520 multiply-adds: measured */
  tu_tensor in[2] = {tu_tensor_new(VNRT_F32, 2, xd), tu_tensor_new(VNRT_F32, 2, wd)};
  tu_fill_uniform(&in[0], 5, -1.0f, 1.0f);
  tu_fill_uniform(&in[1], 6, -1.0f, 1.0f);
  log_buf *lb = calloc(1, sizeof *lb);
  for (int round = 0; round < 2; ++round) {
    vnrt_context *ctx = logging_context(lb);
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_LINEAR, in, 2, NULL, 0, 1);
    tu_tensor out;
    TU_OK(ctx, tu_run(ctx, g, opencl0(ctx), in, 2, &out, 1));
    double got = tu_get(&out, 5 * 80 + 7), want = 0.0;
    for (int k = 0; k < 96; ++k) want += tu_get(&in[0], 5 * 96 + k) * tu_get(&in[1], 7 * 96 + k);
    ck_assert_msg(fabs(got - want) < 1e-4, "y[5, 7] = %g, want %g", got, want);
    tu_tensor_free(&out);
    vnrt_graph_destroy(g);
    vnrt_context_destroy(ctx);
    if (round == 0) {
      ck_assert_msg(strstr(lb->text, "GEMM nt 64x80x96") && strstr(lb->text, " -> "),
                    "the first plan did not measure: %s", lb->text);
      ck_assert_msg(find_file(sub, ".gemm", file, sizeof file), "no .gemm file in %s", sub);
      FILE *f = fopen(file, "r");
      char line[256] = "";
      ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
      fclose(f);
      ck_assert_msg(strncmp(line, "nt 64x80x96 b1 f32.f32.f32 ", 27) == 0 && strstr(line, " -> "),
                    "line: %s", line);
    } else {
      ck_assert_msg(!strstr(lb->text, "GEMM nt 64x80x96"), "the choice was measured again: %s",
                    lb->text);
    }
  }
  free(lb);
  tu_tensor_free(&in[0]);
  tu_tensor_free(&in[1]);
  unsetenv("VNRT_CACHE_DIR");
  rm_rf(dir);
}
END_TEST

/* ---- rope at long positions ------------------------------------------------------------ */

START_TEST(test_rope_keeps_long_positions_accurate) {
  /* Angles of millions of radians: an f32 product pos·f alone would be off by ~0.5 rad. */
  vnrt_context *ctx = tu_context();
  REQUIRE_OPENCL(ctx);
  const int64_t T = 4, H = 2, D = 32, xd[3] = {T, H, D}, pd[1] = {T};
  tu_tensor in[2] = {tu_tensor_new(VNRT_F32, 3, xd), tu_tensor_new(VNRT_I32, 1, pd)};
  tu_fill_uniform(&in[0], 77, -1.0f, 1.0f);
  const int32_t pos[4] = {8000000, 16777215, 1234567, 3};
  memcpy(in[1].data, pos, sizeof pos);
  vnrt_attr attrs[1] = {tu_attr_i("interleaved", 0)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_ROPE, in, 2, attrs, 1, 1);
  tu_tensor out;
  TU_OK(ctx, tu_run(ctx, g, opencl0(ctx), in, 2, &out, 1));
  double want[4 * 2 * 32];
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < D / 2; ++i) {
        double a = pos[t] * pow(10000.0, -2.0 * (double)i / (double)D);
        int64_t r = (t * H + h) * D;
        double x1 = tu_get(&in[0], r + i), x2 = tu_get(&in[0], r + i + D / 2);
        want[r + i] = x1 * cos(a) - x2 * sin(a);
        want[r + i + D / 2] = x1 * sin(a) + x2 * cos(a);
      }
    }
  }
  double err = tu_nmse(&out, want, T * H * D);
  ck_assert_msg(err <= 1e-10, "rope at long positions: NMSE %.3g", err);
  tu_tensor_free(&out);
  tu_tensor_free(&in[0]);
  tu_tensor_free(&in[1]);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Several index checks in one plan -------------------------------------------------- */

/* e1 = embedding(t1, ids1), e2 = embedding(t2, ids2), y = add(e1, e2): two checks, two slots. */
static vnrt_status run_two_embeddings(vnrt_context *ctx, const int32_t *ids1, const int32_t *ids2,
                                      float *y) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tt1 = {VNRT_F32, 2, {10, 4}}, tt2 = {VNRT_F32, 2, {7, 4}};
  vnrt_tensor_type ti = {VNRT_I32, 1, {3}};
  vnrt_value t1, t2, i1, i2, e1, e2, out;
  TU_OK(ctx, vnrt_graph_add_input(g, "t1", &tt1, 1, &t1));
  TU_OK(ctx, vnrt_graph_add_input(g, "t2", &tt2, 1, &t2));
  TU_OK(ctx, vnrt_graph_add_input(g, "ids1", &ti, 0, &i1));
  TU_OK(ctx, vnrt_graph_add_input(g, "ids2", &ti, 0, &i2));
  const char *n1[] = {"e1"}, *n2[] = {"e2"}, *n3[] = {"y"};
  TU_OK(ctx,
        vnrt_graph_add_node(g, VNRT_OP_EMBEDDING, (vnrt_value[]){t1, i1}, 2, NULL, 0, n1, &e1, 1));
  TU_OK(ctx,
        vnrt_graph_add_node(g, VNRT_OP_EMBEDDING, (vnrt_value[]){t2, i2}, 2, NULL, 0, n2, &e2, 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, (vnrt_value[]){e1, e2}, 2, NULL, 0, n3, &out, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, out));
  vnrt_plan_desc pd = {0};
  pd.no_fallback = 1;
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, opencl0(ctx), &pd, &plan));
  float tab1[40], tab2[28];
  for (int i = 0; i < 40; ++i) tab1[i] = (float)i;
  for (int i = 0; i < 28; ++i) tab2[i] = 100.0f * (float)i;
  TU_OK(ctx, vnrt_plan_set_input(plan, "t1", tab1, sizeof tab1));
  TU_OK(ctx, vnrt_plan_set_input(plan, "t2", tab2, sizeof tab2));
  TU_OK(ctx, vnrt_plan_set_input(plan, "ids1", ids1, 12));
  TU_OK(ctx, vnrt_plan_set_input(plan, "ids2", ids2, 12));
  vnrt_status s = vnrt_plan_run(plan);
  if (s == VNRT_OK) s = vnrt_plan_read_output(plan, "y", y, 12 * sizeof(float));
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  return s;
}

START_TEST(test_each_index_check_has_its_own_slot) {
  vnrt_context *ctx = tu_context();
  REQUIRE_OPENCL(ctx);
  const int32_t good1[3] = {9, 0, 4}, good2[3] = {6, 2, 0}, bad2[3] = {1, 7, 2};
  float y[12];
  TU_OK(ctx, run_two_embeddings(ctx, good1, good2, y));
  for (int i = 0; i < 3; ++i) {
    for (int d = 0; d < 4; ++d) {
      float want = (float)(good1[i] * 4 + d) + 100.0f * (float)(good2[i] * 4 + d);
      ck_assert_msg(y[i * 4 + d] == want, "y[%d, %d] = %g, want %g", i, d, y[i * 4 + d], want);
    }
  }
  /* The second embedding's id 7 of 7 rows: reported for that node, not the first. */
  ck_assert_int_eq(run_two_embeddings(ctx, good1, bad2, y), VNRT_ERROR_OUT_OF_RANGE);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "'e2'") && strstr(msg, "id 7 at position 1") && strstr(msg, "[0, 7)"),
                "message: %s", msg);
  /* Both bad: the checks are read after the run, and the first node's is reported. */
  const int32_t bad1[3] = {9, 0, -4};
  ck_assert_int_eq(run_two_embeddings(ctx, bad1, bad2, y), VNRT_ERROR_OUT_OF_RANGE);
  msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "'e1'") && strstr(msg, "id -4 at position 2"), "message: %s", msg);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- The GPU-style kernel family on this device ---------------------------------------- */

/* Runs op on the cpu and on opencl:0 and compares every output (NMSE <= tol; i32 exactly). */
static void vs_cpu(vnrt_context *ctx, const char *what, vnrt_op op, const tu_tensor *ins,
                   int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out,
                   double tol) {
  vnrt_graph *g = tu_op_graph(ctx, op, ins, n_in, attrs, n_attrs, n_out);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  tu_tensor ref[4], got[4];
  TU_OK(ctx, tu_run(ctx, g, cpu, ins, n_in, ref, n_out));
  vnrt_status s = tu_run(ctx, g, opencl0(ctx), ins, n_in, got, n_out);
  ck_assert_msg(s == VNRT_OK, "%s: %s", what, vnrt_context_last_error(ctx));
  for (int32_t o = 0; o < n_out; ++o) {
    int64_t n = tu_numel(&ref[o]);
    ck_assert_int_eq(tu_numel(&got[o]), n);
    double *want = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; ++i) want[i] = tu_get(&ref[o], i);
    if (ref[o].type.dtype == VNRT_I32) {
      for (int64_t i = 0; i < n; ++i) {
        ck_assert_msg(tu_get(&got[o], i) == want[i], "%s: out%d[%lld] = %g, cpu %g", what, o,
                      (long long)i, tu_get(&got[o], i), want[i]);
      }
    } else {
      double err = tu_nmse(&got[o], want, n);
      ck_assert_msg(err <= tol, "%s: out%d NMSE %.3g vs the cpu", what, o, err);
    }
    free(want);
    tu_tensor_free(&ref[o]);
    tu_tensor_free(&got[o]);
  }
  vnrt_graph_destroy(g);
}

static tu_tensor rnd(vnrt_dtype dt, int32_t rank, const int64_t *dims, uint64_t seed, float lo,
                     float hi) {
  tu_tensor t = tu_tensor_new(dt, rank, dims);
  tu_fill_uniform(&t, seed, lo, hi);
  return t;
}

static void free_all(tu_tensor *t, int n) {
  for (int i = 0; i < n; ++i) tu_tensor_free(&t[i]);
}

/* hc_pre on a CPU driver (PoCL, default local memory): hc_pre_mix splits the mix GEMV over S
 * slices of the n·C inputs (S = 8 for a decode token, fewer from 17 tokens on: T·S <= 128, S = 1
 * from 128 tokens) and hc_pre_collapse sums their squares, 16 channels an item where n·C is a
 * multiple of 16. Against the CPU backend: f32 and bf16 X, f32 and f16 fn, T = 1, 40, 130. */
START_TEST(test_hc_pre_split_matches_cpu) {
  vnrt_context *ctx = tu_context();
  REQUIRE_OPENCL(ctx);
  const struct {
    int64_t T;
    vnrt_dtype xt, ft;
  } cases[] = {{1, VNRT_F32, VNRT_F32},
               {40, VNRT_F32, VNRT_F32},
               {130, VNRT_F32, VNRT_F32},
               {2, VNRT_BF16, VNRT_F16}};
  for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); ++i) {
    const int64_t X[3] = {cases[i].T, 4, 64}, fn[2] = {24, 256}, sc[1] = {3}, base[1] = {24};
    const uint64_t seed = 30 + 4 * (uint64_t)i;
    tu_tensor in[4] = {
        rnd(cases[i].xt, 3, X, seed, -2, 2), rnd(cases[i].ft, 2, fn, seed + 1, -0.1f, 0.1f),
        rnd(VNRT_F32, 1, sc, seed + 2, 0.5f, 1.5f), rnd(VNRT_F32, 1, base, seed + 3, -0.5f, 0.5f)};
    char what[64];
    snprintf(what, sizeof what, "hc_pre split, T = %lld", (long long)cases[i].T);
    vs_cpu(ctx, what, VNRT_OP_HC_PRE, in, 4, NULL, 0, 3, 1e-7);
    free_all(in, 4);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_gpu_kernel_family_matches_cpu) {
  /* PoCL reports local memory emulated in global memory, so by default it runs the CPU-style
   * kernels; the override makes it run the work-group kernels GPUs get, so they are tested. */
  setenv("VNRT_CL_LOCAL_MEM", "dedicated", 1);
  vnrt_context *ctx = tu_context();
  unsetenv("VNRT_CL_LOCAL_MEM");
  REQUIRE_OPENCL(ctx);
  {
    const int64_t q[3] = {6, 4, 16}, kv[3] = {6, 2, 16};
    tu_tensor in[3] = {rnd(VNRT_F32, 3, q, 1, -1, 1), rnd(VNRT_F32, 3, kv, 2, -1, 1),
                       rnd(VNRT_F32, 3, kv, 3, -1, 1)};
    vs_cpu(ctx, "attention GQA causal", VNRT_OP_ATTENTION, in, 3, NULL, 0, 1, 1e-6);
    free_all(in, 3);
  }
  {
    /* Dv = 200 needs several channels per work-item; window and sinks. */
    const int64_t q[3] = {2, 8, 32}, k[3] = {70, 1, 32}, v[3] = {70, 1, 200}, sk[1] = {8};
    tu_tensor in[4] = {rnd(VNRT_F32, 3, q, 4, -1, 1), rnd(VNRT_F16, 3, k, 5, -1, 1),
                       rnd(VNRT_BF16, 3, v, 6, -1, 1), rnd(VNRT_F32, 1, sk, 7, -2, 2)};
    vnrt_attr a[1] = {tu_attr_i("window", 9)};
    vs_cpu(ctx, "attention window sinks Dv 200", VNRT_OP_ATTENTION, in, 4, a, 1, 1, 1e-6);
    free_all(in, 4);
  }
  {
    const int64_t q[3] = {2, 4, 16}, kv[3] = {32, 2, 16}, sk[1] = {4}, one[1] = {1};
    tu_tensor in[5] = {rnd(VNRT_F32, 3, q, 8, -1, 1), rnd(VNRT_F32, 3, kv, 9, -1, 1),
                       rnd(VNRT_F32, 3, kv, 10, -1, 1), rnd(VNRT_F32, 1, sk, 11, -1, 1),
                       tu_tensor_new(VNRT_I32, 1, one)};
    ((int32_t *)in[4].data)[0] = 20;
    vs_cpu(ctx, "attention kv_len", VNRT_OP_ATTENTION, in, 5, NULL, 0, 1, 1e-6);
    free_all(in, 5);
  }
  {
    const int64_t x[2] = {5, 300}, w[1] = {300};
    tu_tensor in[2] = {rnd(VNRT_BF16, 2, x, 12, -3, 3), rnd(VNRT_F32, 1, w, 13, 0.5f, 1.5f)};
    vs_cpu(ctx, "rms_norm", VNRT_OP_RMS_NORM, in, 2, NULL, 0, 1, 1e-7);
    vnrt_attr a[1] = {tu_attr_i("axis", 0)};
    vs_cpu(ctx, "softmax axis 0", VNRT_OP_SOFTMAX, in, 1, a, 1, 1, 1e-7);
    free_all(in, 2);
  }
  {
    /* linear: decode (gemm_rows) and a tile-sized one (gemm_t64/t32), both below the
     * measurement threshold so the GPU defaults run. */
    const int64_t x1[2] = {1, 300}, w[2] = {70, 300}, x2[2] = {9, 300};
    tu_tensor in[2] = {rnd(VNRT_F32, 2, x1, 14, -1, 1), rnd(VNRT_F16, 2, w, 15, -1, 1)};
    vs_cpu(ctx, "linear decode", VNRT_OP_LINEAR, in, 2, NULL, 0, 1, 1e-6);
    tu_tensor_free(&in[0]);
    in[0] = rnd(VNRT_F32, 2, x2, 16, -1, 1);
    vs_cpu(ctx, "linear tiled", VNRT_OP_LINEAR, in, 2, NULL, 0, 1, 1e-6);
    free_all(in, 2);
  }
  {
    const int64_t X[3] = {3, 4, 64}, fn[2] = {24, 256}, sc[1] = {3}, base[1] = {24};
    tu_tensor in[4] = {rnd(VNRT_F32, 3, X, 17, -2, 2), rnd(VNRT_F32, 2, fn, 18, -0.1f, 0.1f),
                       rnd(VNRT_F32, 1, sc, 19, 0.5f, 1.5f),
                       rnd(VNRT_F32, 1, base, 20, -0.5f, 0.5f)};
    vs_cpu(ctx, "hc_pre", VNRT_OP_HC_PRE, in, 4, NULL, 0, 3, 1e-7);
    free_all(in, 4);
  }
  {
    const int64_t x[2] = {5, 32}, ex[2] = {5, 2}, wt[2] = {5, 2}, gu[3] = {4, 48, 32},
                  wd[3] = {4, 32, 24};
    tu_tensor in[5] = {rnd(VNRT_F32, 2, x, 21, -1, 1), tu_tensor_new(VNRT_I32, 2, ex),
                       rnd(VNRT_F32, 2, wt, 22, 0, 1), rnd(VNRT_BF16, 3, gu, 23, -0.3f, 0.3f),
                       rnd(VNRT_F16, 3, wd, 24, -0.3f, 0.3f)};
    const int32_t e[10] = {0, 3, 1, 2, 3, 0, 2, 1, 1, 3};
    memcpy(in[1].data, e, sizeof e);
    vs_cpu(ctx, "moe_ffn", VNRT_OP_MOE_FFN, in, 5, NULL, 0, 1, 1e-6);
    free_all(in, 5);
  }
  {
    const int64_t h[3] = {3, 2, 40}, v[2] = {3, 40}, w[2] = {2, 40};
    tu_tensor in[5] = {rnd(VNRT_F32, 3, h, 25, -2, 2), rnd(VNRT_F32, 3, h, 26, -2, 2),
                       rnd(VNRT_F32, 2, v, 27, -2, 2), rnd(VNRT_F32, 2, w, 28, 0.5f, 1.5f),
                       rnd(VNRT_F32, 2, w, 29, 0.5f, 1.5f)};
    vs_cpu(ctx, "engram_gate", VNRT_OP_ENGRAM_GATE, in, 5, NULL, 0, 1, 1e-7);
    free_all(in, 5);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- The same result sweep as test_vulkan's, against the CPU (tests/common/sweep.c) --- */

/* The sweep with the CPU-style kernels PoCL runs by default, and with the work-group kernels
 * GPUs get (VNRT_CL_LOCAL_MEM=dedicated). */
static void sweep(const char *local_mem) {
  if (local_mem) setenv("VNRT_CL_LOCAL_MEM", local_mem, 1);
  vnrt_context *ctx = tu_context();
  if (local_mem) unsetenv("VNRT_CL_LOCAL_MEM");
  REQUIRE_OPENCL(ctx);
  tu_sweep_index_rope_attention(ctx, opencl0(ctx));
  tu_sweep_mhc_moe(ctx, opencl0(ctx));
  tu_sweep_engram(ctx, opencl0(ctx));
  vnrt_context_destroy(ctx);
}

START_TEST(test_ops_match_cpu) { sweep(NULL); }
END_TEST

START_TEST(test_ops_match_cpu_work_group_kernels) { sweep("dedicated"); }
END_TEST

/* ---- Buffers in fine-grained SVM ------------------------------------------------------- */

/* Compiles y = -x through the backend table, x at byte 0 and y at byte 1024 of buf, n f32. */
static vnrt_backend_exec *compile_neg(const vnrt_backend_i *be, vnrt_backend_device *dev,
                                      vnrt_backend_buffer *buf, int64_t n, fake_host *h) {
  static vnrt_backend_tensor t[2];
  static vnrt_backend_node node;
  t[0] = (vnrt_backend_tensor){{VNRT_F32, 1, {n}}, "x", buf, 0};
  t[1] = (vnrt_backend_tensor){{VNRT_F32, 1, {n}}, "y", buf, 1024};
  memset(&node, 0, sizeof node);
  node.op = VNRT_OP_NEG;
  node.name = "y";
  node.n_inputs = 1;
  node.inputs[0] = 0;
  node.n_outputs = 1;
  node.outputs[0] = 1;
  static vnrt_backend_graph g;
  g = (vnrt_backend_graph){2,
                           t,
                           1,
                           &node,
                           VNRT_KERNELS_FAST,
                           sizeof(vnrt_backend_graph),
                           sizeof(vnrt_backend_tensor),
                           sizeof(vnrt_backend_node)};
  vnrt_backend_exec *exec = NULL;
  ck_assert_msg(be->compile(dev, &g, &exec) == VNRT_OK, "compile: %s", h->msg);
  return exec;
}

/* With svm_env as VNRT_CL_SVM (NULL: unset): whether buffer_host_ptr is there as the device's
 * SVM capability says, and that a kernel and the host see each other's data through it (or
 * through buffer_read/buffer_write without it), over two runs of one exec and a pooled buffer. */
static void check_host_pointer(const char *svm_env, int want_ptr) {
  if (svm_env) {
    setenv("VNRT_CL_SVM", svm_env, 1);
  } else {
    unsetenv("VNRT_CL_SVM"); /* the suite may run with VNRT_CL_SVM=0 (test_opencl_nosvm) */
  }
  fake_host h;
  const vnrt_backend_i *be = NULL;
  void *state = NULL;
  vnrt_backend_device *dev = open_device0(&h, &be, &state);
  unsetenv("VNRT_CL_SVM");
  ck_assert_ptr_nonnull(be->buffer_host_ptr);

  enum { N = 200 };
  vnrt_backend_buffer *buf = NULL;
  ck_assert_int_eq(be->buffer_alloc(dev, 2048, &buf), VNRT_OK);
  float *p = be->buffer_host_ptr(dev, buf);
  ck_assert_msg((p != NULL) == want_ptr, "VNRT_CL_SVM=%s: host pointer %p, want %s",
                svm_env ? svm_env : "(unset)", (void *)p, want_ptr ? "one" : "none");
  vnrt_backend_exec *exec = compile_neg(be, dev, buf, N, &h);
  for (int round = 0; round < 2; ++round) {
    float x[N], y[N];
    for (int i = 0; i < N; ++i) x[i] = (float)((double)(i - 77) * 0.25 + round * 1000.0);
    if (p) {
      memcpy(p, x, sizeof x); /* straight into the memory the kernel reads */
      memset((char *)p + 1024, 0xff, sizeof y);
    } else {
      ck_assert_int_eq(be->buffer_write(dev, buf, 0, x, sizeof x), VNRT_OK);
    }
    ck_assert_msg(be->run(exec, 0, 1) == VNRT_OK, "run: %s", h.msg);
    if (p) {
      memcpy(y, (char *)p + 1024, sizeof y); /* the kernel's result, in place */
    } else {
      ck_assert_int_eq(be->buffer_read(dev, buf, 1024, y, sizeof y), VNRT_OK);
    }
    for (int i = 0; i < N; ++i) {
      double want = -((double)(i - 77) * 0.25 + round * 1000.0);
      ck_assert_msg((double)y[i] == want, "round %d: y[%d] = %g, want %g", round, i, y[i], want);
    }
    if (p) {
      /* buffer_read and buffer_write agree with the pointer. */
      float r[N];
      ck_assert_int_eq(be->buffer_read(dev, buf, 1024, r, sizeof r), VNRT_OK);
      ck_assert_int_eq(memcmp(r, y, sizeof r), 0);
      const float w[2] = {3.5f, -8.25f};
      ck_assert_int_eq(be->buffer_write(dev, buf, 8, w, sizeof w), VNRT_OK);
      ck_assert(p[2] == 3.5f && p[3] == -8.25f);
    }
  }
  be->exec_destroy(exec);
  /* A pooled buffer keeps its SVM memory (and an ordinary one has none). */
  be->buffer_free(dev, buf);
  vnrt_backend_buffer *again = NULL;
  ck_assert_int_eq(be->buffer_alloc(dev, 2000, &again), VNRT_OK);
  ck_assert_ptr_eq(be->buffer_host_ptr(dev, again), p);
  be->buffer_free(dev, again);
  be->device_close(dev);
  be->shutdown(state);
}

/* The first OpenCL device, queried directly; the test returns (skipped) without one. */
#define REQUIRE_DIRECT_DEV0(dd)                  \
  direct_dev dd[16];                             \
  do {                                           \
    vnrt_context *ctx_ = tu_context();           \
    REQUIRE_OPENCL(ctx_);                        \
    vnrt_context_destroy(ctx_);                  \
    ck_assert_int_gt(direct_devices(dd, 16), 0); \
  } while (0)

START_TEST(test_svm_buffers_are_shared_with_the_host) {
  REQUIRE_DIRECT_DEV0(dd);
  if (!dd[0].svm_fine_buffer) {
    fprintf(stderr, "%s: %s has no fine-grained buffer SVM; only the ordinary path runs\n",
            __func__, dd[0].name);
  }
  check_host_pointer(NULL, dd[0].svm_fine_buffer);
  check_host_pointer("0", 0);
  check_host_pointer("1", dd[0].svm_fine_buffer);
}
END_TEST

/* Whether the mapping of this process that holds address a is advised MADV_HUGEPAGE ("hg" in
 * its VmFlags, /proc/self/smaps): 1, 0, or -1 where that cannot be read (not Linux). */
static int advised_huge(const void *a) {
#ifdef __linux__
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int in = 0, found = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo = 0, hi = 0;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)a >= lo && (uintptr_t)a < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      found = strstr(line, " hg") != NULL;
      break;
    }
  }
  fclose(f);
  return found;
#else
  (void)a;
  return -1;
#endif
}

/* SVM buffers of 8 MiB and more on a CPU driver are advised into transparent huge pages
 * (cl_buffer.c: the whole 2 MiB pages inside them) unless VNRT_CPU_HUGE_PAGES=0, smaller ones
 * and a GPU driver's never; either way a kernel computes right in such a buffer, written and
 * read through the pointer. */
START_TEST(test_big_svm_buffers_are_advised_huge_pages) {
  REQUIRE_DIRECT_DEV0(dd);
  if (!dd[0].svm_fine_buffer) {
    fprintf(stderr, "%s: %s has no fine-grained buffer SVM; skipped\n", __func__, dd[0].name);
    return;
  }
  const uint64_t sizes[2] = {(uint64_t)16 << 20, (uint64_t)4 << 20};
  for (int c = 0; c < 3; ++c) {
    const int off = c == 1, small = c == 2;
    const uint64_t bytes = sizes[small];
    unsetenv("VNRT_CL_SVM");
    if (off) {
      setenv("VNRT_CPU_HUGE_PAGES", "0", 1);
    } else {
      unsetenv("VNRT_CPU_HUGE_PAGES");
    }
    fake_host h;
    const vnrt_backend_i *be = NULL;
    void *state = NULL;
    vnrt_backend_device *dev = open_device0(&h, &be, &state);
    unsetenv("VNRT_CPU_HUGE_PAGES");
    vnrt_backend_buffer *buf = NULL;
    ck_assert_int_eq(be->buffer_alloc(dev, bytes, &buf), VNRT_OK);
    float *p = be->buffer_host_ptr(dev, buf);
    ck_assert_ptr_nonnull(p);
    /* Its middle lies inside a whole 2 MiB page of the 16 MiB buffer wherever it starts. */
    const int adv = advised_huge((const char *)p + ((size_t)bytes / 2));
    const int cpu_driver = (dd[0].type & CL_DEVICE_TYPE_CPU) != 0;
#ifdef __linux__
    ck_assert_msg(adv >= 0, "no VmFlags for the buffer in /proc/self/smaps");
#endif
    if (adv >= 0) {
      ck_assert_msg(adv == (cpu_driver && !off && !small),
                    "%llu-byte buffer, huge pages %s, %s driver: advised %d",
                    (unsigned long long)bytes, off ? "off" : "on", cpu_driver ? "CPU" : "GPU", adv);
    }
    enum { N = 256 };               /* x at bytes [0, 1024), y at [1024, 2048) (compile_neg) */
    memset(p, 0x5a, (size_t)bytes); /* every page touched */
    vnrt_backend_exec *exec = compile_neg(be, dev, buf, N, &h);
    for (int i = 0; i < N; ++i) p[i] = (float)(i * 3 - 200) * 0.5f;
    ck_assert_msg(be->run(exec, 0, 1) == VNRT_OK, "run: %s", h.msg);
    for (int i = 0; i < N; ++i) {
      float want = -((float)(i * 3 - 200) * 0.5f), got = p[256 + i];
      if (got != want)
        ck_abort_msg("case %d: y[%d] = %g, want %g", c, i, (double)got, (double)want);
    }
    ck_assert(((unsigned char *)p)[bytes - 1] == 0x5a);
    be->exec_destroy(exec);
    be->buffer_free(dev, buf);
    be->device_close(dev);
    be->shutdown(state);
  }
}
END_TEST

/* Every run of a plan on opencl:0 agrees with the CPU both ways (the executor then copies
 * through the pointer or through the queues). */
START_TEST(test_plan_results_match_with_and_without_svm) {
  for (int mode = 0; mode < 2; ++mode) {
    setenv("VNRT_CL_SVM", mode ? "1" : "0", 1);
    vnrt_context *ctx = tu_context();
    unsetenv("VNRT_CL_SVM");
    REQUIRE_OPENCL(ctx);
    for (int rep = 0; rep < 3; ++rep) run_add_and_check(ctx);
    vnrt_context_destroy(ctx);
  }
}
END_TEST

/* ---- Quantized rows: scales past the one-product range --------------------------------- */

/* Runs op on the cpu and on opencl:0 and compares output 0 element by element: within 1e-4 of
 * the element's magnitude plus 1e-6 of the largest |value| below 2^100 (the rows with huge
 * scales are compared to their own size); NaN where the cpu has NaN. */
static void vs_cpu_each(vnrt_context *ctx, const char *what, vnrt_op op, const tu_tensor *ins,
                        int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs) {
  vnrt_graph *g = tu_op_graph(ctx, op, ins, n_in, attrs, n_attrs, 1);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  tu_tensor ref, got;
  TU_OK(ctx, tu_run(ctx, g, cpu, ins, n_in, &ref, 1));
  vnrt_status s = tu_run(ctx, g, opencl0(ctx), ins, n_in, &got, 1);
  ck_assert_msg(s == VNRT_OK, "%s: %s", what, vnrt_context_last_error(ctx));
  const int64_t n = tu_numel(&ref);
  ck_assert_int_eq(tu_numel(&got), n);
  double small = 0.0, big = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double w = fabs(tu_get(&ref, i));
    if (w < 0x1p100 && w > small) small = w;
    if (w >= 0x1p100 && w > big) big = w;
  }
  ck_assert_msg(small > 0.0 && big > 0.0, "%s: want ordinary and huge values", what);
  for (int64_t i = 0; i < n; ++i) {
    const double w = tu_get(&ref, i), v = tu_get(&got, i);
    if (isnan(w) || isnan(v)) {
      if (isnan(w) != isnan(v)) ck_abort_msg("%s: [%lld] = %g, cpu %g", what, (long long)i, v, w);
      continue;
    }
    if (!(fabs(v - w) <= 1e-4 * fabs(w) + 1e-6 * small)) {
      ck_abort_msg("%s: [%lld] = %.9g, cpu %.9g", what, (long long)i, v, w);
    }
  }
  tu_tensor_free(&ref);
  tu_tensor_free(&got);
  vnrt_graph_destroy(g);
}

/* The four-row FP8/FP4 kernels scale a block by one product by 2^(code - 119) (e4m3) or
 * 2^(code - 113) (e2m1) up to codes 246 / 240 and by two products above; both agree with
 * the cpu. (NaN codes and scales are refused when bound: runtime/plan_run.c.) */
START_TEST(test_quantized_rows_keep_large_scales) {
  vnrt_context *ctx = tu_context();
  REQUIRE_OPENCL(ctx);
  uint64_t r = 12345;
  /* linear, x [2, 64] by e4m3 w [9, 64] with 1x16 blocks (N not a multiple of 4): rows 5 and
   * 6 hold block scales of 2^120 and 2^123. */
  const int64_t xd[2] = {2, 64}, wd[2] = {9, 64}, sd[2] = {9, 4};
  tu_tensor lin[3] = {rnd(VNRT_F32, 2, xd, 71, -1.0f, 1.0f), tu_tensor_new(VNRT_E4M3, 2, wd),
                      tu_tensor_new(VNRT_E8M0, 2, sd)};
  uint8_t *w = lin[1].data, *sc = lin[2].data;
  for (int64_t i = 0; i < 9 * 64; ++i) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    /* exponent field 4..8: magnitudes 2^-3..2^1, so 16 products times 2^123 stay finite */
    w[i] = (uint8_t)(((r >> 33) & 0x80) | (4 + (r >> 40) % 5) << 3 | ((r >> 50) & 7));
  }
  for (int64_t i = 0; i < 9 * 4; ++i) sc[i] = (uint8_t)(120 + i % 8);
  sc[5 * 4 + 1] = 247;
  sc[6 * 4 + 2] = 250;
  const int64_t blk8[2] = {1, 16};
  const vnrt_attr la[1] = {tu_attr_ints("block", blk8, 2)};
  vs_cpu_each(ctx, "linear e4m3, scales 247 and 250", VNRT_OP_LINEAR, lin, 3, la, 1);
  free_all(lin, 3);
  /* moe_ffn with e2m1 experts (C = 64, F = 32, E = 4, k = 2): a gate row's block and a down
   * row's block with scales 2^114 and 2^116; limit 10 keeps the gate finite. */
  const ffn_case fc = {1, 64, 32, 4, 2, 0.0, VNRT_F32, VNRT_F32, VNRT_E2M1, VNRT_E2M1};
  const int32_t ex[2] = {1, 3};
  tu_tensor moe[7];
  make_ffn_q_inputs(&fc, ex, 72, moe);
  tu_set(&moe[2], 0, 0.6);
  tu_set(&moe[2], 1, 0.4);
  for (int i = 3; i < 5; ++i) {
    uint8_t *b = moe[i].data;
    for (int64_t j = 0; j < tu_numel(&moe[i]) / 2; ++j) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      b[j] = (uint8_t)(r >> 40);
    }
  }
  for (int i = 5; i < 7; ++i) {
    uint8_t *b = moe[i].data;
    for (int64_t j = 0; j < tu_numel(&moe[i]); ++j) b[j] = (uint8_t)(118 + j % 6);
  }
  ((uint8_t *)moe[5].data)[(1 * 64 + 3) * 2 + 1] = 241;
  ((uint8_t *)moe[6].data)[3 * 64 + 7] = 243;
  const vnrt_attr ma[1] = {tu_attr_f("limit", 10.0)};
  vs_cpu_each(ctx, "moe_ffn e2m1, scales 241 and 243", VNRT_OP_MOE_FFN, moe, 7, ma, 1);
  /* The fused up pass checks the expert ids as it runs: id 9 of 4 experts is refused. */
  tu_set(&moe[1], 1, 9);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_MOE_FFN, moe, 7, ma, 1, 1);
  tu_tensor got[1];
  ck_assert_int_eq(tu_run(ctx, g, opencl0(ctx), moe, 7, got, 1), VNRT_ERROR_OUT_OF_RANGE);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "expert id 9 (experts[0, 1])"), "message: %s", msg);
  vnrt_graph_destroy(g);
  free_all(moe, 7);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- The AVX-512 decode steps against the portable ones --------------------------------- */

/* A raw kernel launch on dev's queue: n_args (size, value) pairs, then gws/lws in 2-D. */
typedef struct raw_arg {
  size_t size;
  const void *value;
} raw_arg;

static void raw_run(vnrt_backend_device *dev, cl_program prog, const char *name,
                    const raw_arg *args, int n_args, const size_t gws[2], const size_t lws[2]) {
  cl_int err = CL_SUCCESS;
  cl_kernel k = clCreateKernel(prog, name, &err);
  ck_assert_msg(k && err == CL_SUCCESS, "clCreateKernel(%s): %d", name, (int)err);
  for (int i = 0; i < n_args; ++i) {
    err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
    if (err != CL_SUCCESS) ck_abort_msg("%s: clSetKernelArg(%d): %d", name, i, (int)err);
  }
  err = clEnqueueNDRangeKernel(dev->queue, k, 2, NULL, gws, lws, 0, NULL, NULL);
  ck_assert_msg(err == CL_SUCCESS, "%s: enqueue: %d", name, (int)err);
  ck_assert_int_eq(clFinish(dev->queue), CL_SUCCESS);
  clReleaseKernel(k);
}

static cl_mem raw_buf(vnrt_backend_device *dev, size_t bytes, const void *data) {
  cl_int err = CL_SUCCESS;
  cl_mem m = clCreateBuffer(dev->context, CL_MEM_READ_WRITE | (data ? CL_MEM_COPY_HOST_PTR : 0),
                            bytes, (void *)data, &err);
  ck_assert_msg(m && err == CL_SUCCESS, "clCreateBuffer(%zu): %d", bytes, (int)err);
  return m;
}

static void raw_read(vnrt_backend_device *dev, cl_mem m, size_t bytes, void *out) {
  ck_assert_int_eq(clEnqueueReadBuffer(dev->queue, m, CL_TRUE, 0, bytes, out, 0, NULL, NULL),
                   CL_SUCCESS);
}

static uint8_t next_byte(uint64_t *r) {
  *r = *r * 6364136223846793005ull + 1442695040888963407ull;
  return (uint8_t)(*r >> 40);
}

#define RAW_T(m) \
  {sizeof(cl_mem), &(m)}, { sizeof(cl_ulong), &zero }
#define RAW_I(v) \
  { sizeof(cl_int), &(v) }
#define RAW_L(v) \
  { sizeof(cl_long), &(v) }

/* Runs qgemv4_e4m3_aq (x [2, 304] f32 by e4m3 w [38, 304], 128x128 blocks, act_quant 16; 38
 * rows leave a partial four, the last block of 48 codes a 32-code step and a 16-code one; row
 * 5 holds a NaN code) and the e2m1 moe_ffn passes (C = DK_C, F = DK_F, 4 experts, k = 2,
 * act_quant 32) from prog; their results go to y8 [2·38], h [2·DK_F] and y4 [DK_C]. */
enum { DK_C = 160, DK_F = 96 }; /* run_decode_kernels' moe_ffn: channels, features */

static void run_decode_kernels(vnrt_backend_device *dev, cl_program prog, float *y8, float *h,
                               float *y4) {
  const cl_ulong zero = 0;
  uint64_t r = 99;
  /* e4m3 linear */
  enum { M8 = 2, N8 = 38, K8 = 304 };
  float x8[M8 * K8];
  uint8_t w8[N8 * K8], s8[1 * 3];
  for (int i = 0; i < M8 * K8; ++i) x8[i] = (float)(next_byte(&r) % 201) / 100.0f - 1.0f;
  for (int i = 0; i < N8 * K8; ++i) {
    w8[i] = next_byte(&r);
    if ((w8[i] & 0x7F) == 0x7F) w8[i] = (uint8_t)(w8[i] - 1); /* no NaN codes */
  }
  w8[5 * K8 + 200] = 0xFF;
  s8[0] = 119, s8[1] = 122, s8[2] = 117;
  cl_mem bx = raw_buf(dev, sizeof x8, x8), bw = raw_buf(dev, sizeof w8, w8);
  cl_mem bs = raw_buf(dev, sizeof s8, s8), bo = raw_buf(dev, sizeof(float) * M8 * N8, NULL);
  cl_int f32 = VNRT_F32, aq8 = 16, e4m3 = VNRT_E4M3, blk = 128;
  cl_long M = M8, N = N8, K = K8, G = 1;
  const raw_arg a8[] = {RAW_T(bx), RAW_I(f32), RAW_I(aq8), RAW_T(bw), RAW_I(e4m3),
                        RAW_T(bs), RAW_I(blk), RAW_I(blk), RAW_T(bo), RAW_I(f32),
                        RAW_L(M),  RAW_L(N),   RAW_L(K),   RAW_L(G),  {K8 * sizeof(float), NULL}};
  const size_t g8[2] = {12, M8}, l8[2] = {4, 1};
  raw_run(dev, prog, "qgemv4_e4m3_aq", a8, (int)(sizeof a8 / sizeof a8[0]), g8, l8);
  raw_read(dev, bo, sizeof(float) * M8 * N8, y8);
  cl_mem ms[] = {bx, bw, bs, bo};
  for (int i = 0; i < 4; ++i) clReleaseMemObject(ms[i]);
  /* e2m1 moe_ffn, both passes: K = 160 (gate/up) and 96 (down), one scale per 32 codes, so
   * the AVX-512 dots take their four-block turns and a remaining block */
  enum { C = DK_C, F = DK_F, E = 4, KK = 2 };
  float x[C], wt[KK] = {0.6f, 0.4f};
  cl_int ex[KK] = {1, 3}, err_init[4] = {-1, -1, -1, -1};
  static uint8_t gu[E * 2 * F * C / 2], gus[E * 2 * F * (C / 32)], dn[E * C * F / 2],
      dns[E * C * (F / 32)];
  for (int i = 0; i < C; ++i) x[i] = (float)(next_byte(&r) % 201) / 50.0f - 2.0f;
  for (size_t i = 0; i < sizeof gu; ++i) gu[i] = next_byte(&r);
  for (size_t i = 0; i < sizeof dn; ++i) dn[i] = next_byte(&r);
  for (size_t i = 0; i < sizeof gus; ++i) gus[i] = (uint8_t)(120 + next_byte(&r) % 5);
  for (size_t i = 0; i < sizeof dns; ++i) dns[i] = (uint8_t)(120 + next_byte(&r) % 5);
  cl_mem mx = raw_buf(dev, sizeof x, x), mex = raw_buf(dev, sizeof ex, ex);
  cl_mem mwt = raw_buf(dev, sizeof wt, wt), mgu = raw_buf(dev, sizeof gu, gu);
  cl_mem mgus = raw_buf(dev, sizeof gus, gus), mdn = raw_buf(dev, sizeof dn, dn);
  cl_mem mdns = raw_buf(dev, sizeof dns, dns), mh = raw_buf(dev, sizeof(float) * KK * F, NULL);
  cl_mem my = raw_buf(dev, sizeof(float) * C, NULL);
  cl_mem merr = raw_buf(dev, sizeof err_init, err_init);
  cl_int aq = 32, e2m1 = VNRT_E2M1, b0 = 1, b1 = 32, kk = KK, cc = C, ff = F, ee = E, slot = 0;
  cl_long pairs = KK, T = 1;
  cl_float limit = 10.0f;
  const raw_arg up[] = {RAW_T(mx),
                        RAW_I(f32),
                        RAW_I(aq),
                        RAW_T(mex),
                        RAW_T(mgu),
                        RAW_I(e2m1),
                        RAW_T(mgus),
                        RAW_I(b0),
                        RAW_I(b1),
                        RAW_T(mh),
                        RAW_L(pairs),
                        RAW_I(kk),
                        RAW_I(cc),
                        RAW_I(ff),
                        {4, &limit},
                        RAW_I(ee),
                        {C * sizeof(float), NULL},
                        RAW_T(merr),
                        RAW_I(slot)};
  const size_t gup[2] = {F / 2, KK}, lup[2] = {4, 1};
  raw_run(dev, prog, "moe_ffn_up_e2m1x4", up, (int)(sizeof up / sizeof up[0]), gup, lup);
  raw_read(dev, mh, sizeof(float) * KK * F, h);
  const raw_arg down[] = {
      RAW_T(mex),  RAW_T(mwt), RAW_I(f32), RAW_I(aq), RAW_T(mdn), RAW_I(e2m1),
      RAW_T(mdns), RAW_I(b0),  RAW_I(b1),  RAW_T(mh), RAW_T(my),  RAW_I(f32),
      RAW_L(T),    RAW_I(kk),  RAW_I(cc),  RAW_I(ff), RAW_I(ee),  {KK * F * sizeof(float), NULL}};
  const size_t gdn[2] = {C / 4, 1}, ldn[2] = {4, 1};
  raw_run(dev, prog, "moe_ffn_down_e2m1x4", down, (int)(sizeof down / sizeof down[0]), gdn, ldn);
  raw_read(dev, my, sizeof(float) * C, y4);
  cl_mem mm[] = {mx, mex, mwt, mgu, mgus, mdn, mdns, mh, my, merr};
  for (int i = 0; i < 10; ++i) clReleaseMemObject(mm[i]);
}

/* Where clang compiles for AVX-512 (PoCL here) the four-row FP8/FP4 dots take 512-bit builtins
 * (VN_X86_512, common.cl); the device runs only that path, so here the portable one is built
 * too (-DVN_NO_X86_512) and both must agree: e4m3 bit for bit (the same sums in the same
 * order), e2m1 to float rounding (its lanes are summed in another order). Elsewhere both builds
 * are the portable kernels. */
START_TEST(test_x86_decode_steps_match_the_portable_ones) {
  fake_host h;
  const vnrt_backend_i *be = NULL;
  void *state = NULL;
  fake_host_init(&h);
  be = opencl_backend_get();
  if (be->init(&h.host, &state) != VNRT_OK || be->device_count(state) == 0) {
    if (state) be->shutdown(state);
    return;
  }
  be->shutdown(state);
  vnrt_backend_device *dev = open_device0(&h, &be, &state);
  {
    char opts[sizeof dev->build_options + 32];
    snprintf(opts, sizeof opts, "%s -DVN_NO_X86_512", dev->build_options);
    cl_program portable = NULL;
    ck_assert_msg(
        cl_program_build_source(dev, vn_cl_sources, vn_cl_source_count, opts, &portable) == VNRT_OK,
        "%s", h.msg);
    float y8[2][2 * 38], hh[2][2 * DK_F], y4[2][DK_C];
    run_decode_kernels(dev, dev->program, y8[0], hh[0], y4[0]);
    run_decode_kernels(dev, portable, y8[1], hh[1], y4[1]);
    clReleaseProgram(portable);
    for (int i = 0; i < 2 * 38; ++i) {
      if (i % 38 == 5) { /* the NaN code's row */
        if (!isnan(y8[0][i]) || !isnan(y8[1][i])) {
          ck_abort_msg("qgemv4_e4m3_aq [%d]: %.9g (AVX-512), %.9g, not NaN", i, y8[0][i], y8[1][i]);
        }
        continue;
      }
      if (memcmp(&y8[0][i], &y8[1][i], sizeof(float)) != 0) {
        ck_abort_msg("qgemv4_e4m3_aq [%d]: %.9g (AVX-512) vs %.9g", i, y8[0][i], y8[1][i]);
      }
    }
    const float *got[2] = {hh[0], y4[0]}, *want[2] = {hh[1], y4[1]};
    const int n[2] = {2 * DK_F, DK_C};
    for (int j = 0; j < 2; ++j) {
      for (int i = 0; i < n[j]; ++i) {
        float d = fabsf(got[j][i] - want[j][i]), m = fabsf(want[j][i]);
        if (!(d <= 1e-5f * (m > 1.0f ? m : 1.0f))) {
          ck_abort_msg("moe_ffn e2m1 %s [%d]: %.9g (AVX-512) vs %.9g", j ? "down" : "up", i,
                       got[j][i], want[j][i]);
        }
      }
    }
  }
  be->device_close(dev);
  be->shutdown(state);
}
END_TEST

static Suite *opencl_suite(void) {
  Suite *s = suite_create("opencl");
  TCase *dev = tcase_create("devices");
  tcase_set_timeout(dev, 240); /* the first open may build the program from source */
  tcase_add_test(dev, test_devices_listed_with_capabilities);
  tcase_add_test(dev, test_missing_icd_gives_zero_devices);
  tcase_add_test(dev, test_build_failure_surfaces_the_log);
  tcase_add_test(dev, test_allocation_beyond_the_limit_names_it);
  suite_add_tcase(s, dev);
  TCase *svm = tcase_create("svm");
  tcase_set_timeout(svm, 240);
  tcase_add_test(svm, test_svm_buffers_are_shared_with_the_host);
  tcase_add_test(svm, test_big_svm_buffers_are_advised_huge_pages);
  tcase_add_test(svm, test_plan_results_match_with_and_without_svm);
  suite_add_tcase(s, svm);
  TCase *cache = tcase_create("cache");
  tcase_set_timeout(cache, 240);
  tcase_add_test(cache, test_program_cache_hit_corrupt_truncated_stale);
  suite_add_tcase(s, cache);
  TCase *gemm = tcase_create("gemm");
  tcase_set_timeout(gemm, 240);
  tcase_add_test(gemm, test_every_gemm_implementation_is_correct);
  tcase_add_test(gemm, test_gemm_choice_is_measured_once_and_cached);
  suite_add_tcase(s, gemm);
  TCase *ops = tcase_create("ops");
  tcase_set_timeout(ops, 240);
  tcase_add_test(ops, test_rope_keeps_long_positions_accurate);
  tcase_add_test(ops, test_gpu_kernel_family_matches_cpu);
  tcase_add_test(ops, test_hc_pre_split_matches_cpu);
  tcase_add_test(ops, test_ops_match_cpu);
  tcase_add_test(ops, test_ops_match_cpu_work_group_kernels);
  tcase_add_test(ops, test_each_index_check_has_its_own_slot);
  tcase_add_test(ops, test_quantized_rows_keep_large_scales);
  tcase_add_test(ops, test_x86_decode_steps_match_the_portable_ones);
  suite_add_tcase(s, ops);
  return s;
}

int main(void) { return tu_run_suite(opencl_suite()); }
