/* GEMM for the OpenCL backend: vnrt's own kernels (shaders/opencl/gemm.cl) and clBLAST. Which
 * one runs a shape is measured once per device and shape at compile time (both are timed on
 * scratch buffers) and remembered in a ".gemm" file beside the program cache, whose key covers
 * device, driver and kernel source, so a new driver or kernel measures again. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_buffer.h"
#include "cl_gemm.h"
#include "cl_program.h"
#include "vnrt/backend_util.h"

#ifdef VNRT_OPENCL_CLBLAST
#include <clblast_c.h>
#endif

/* Below this many multiply-adds a GEMM is launch-bound: the own kernel is used unmeasured. */
#define CL_GEMM_MEASURE_MIN (1 << 18)
/* The result dtype value of f32 in the cast kernel's dtype codes (vnrt_dtype). */
#define CL_DT_F32 1

int cl_gemm_have_clblast(void) {
#ifdef VNRT_OPENCL_CLBLAST
  return 1;
#else
  return 0;
#endif
}

static uint64_t align256(uint64_t x) { return (x + 255) / 256 * 256; }

static int64_t batch_count(const cl_gemm_shape *s) { return s->batch[0] * s->batch[1]; }

const char *cl_gemm_impl_name(cl_gemm_impl impl) {
  switch (impl) {
    case CL_GEMM_TILED:
      return "tiled";
    case CL_GEMM_CLBLAST:
      return "clblast";
    case CL_GEMM_VEC:
      return "vec";
    case CL_GEMM_ROWS:
      return "rows";
    default:
      return "?";
  }
}

uint64_t cl_gemm_scratch_bytes(const cl_gemm_shape *s, cl_gemm_impl impl) {
  if (impl != CL_GEMM_CLBLAST) return 0;
  uint64_t bytes = 0;
  if (s->da != VNRT_F32) bytes += align256((uint64_t)s->a_numel * 4);
  if (s->db != VNRT_F32) bytes += align256((uint64_t)s->b_numel * 4);
  if (s->dc != VNRT_F32) bytes += align256((uint64_t)(batch_count(s) * s->M * s->N) * 4);
  return bytes;
}

/* ---- Own kernels ----------------------------------------------------------------------- */

static vnrt_status set_args(vnrt_backend_device *dev, cl_kernel k, const char *name, cl_uint *idx,
                            size_t size, const void *value) {
  cl_int err = clSetKernelArg(k, (*idx)++, size, value);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_INTERNAL, "clSetKernelArg(%s, %u): %d %s", name,
                   (unsigned)(*idx - 1), (int)err, cl_error_name(err));
  }
  return VNRT_OK;
}

#define VN_CL_GEMM_TRY_(expr)     \
  do {                            \
    vnrt_status t_ = (expr);      \
    if (t_ != VNRT_OK) return t_; \
  } while (0)

#define CL_SET_(k, name, idx, value)                                              \
  do {                                                                            \
    vnrt_status s_ = set_args(dev, (k), (name), &(idx), sizeof(value), &(value)); \
    if (s_ != VNRT_OK) return s_;                                                 \
  } while (0)

static size_t kernel_wg(vnrt_backend_device *dev, cl_kernel k) {
  size_t wg = 0;
  if (clGetKernelWorkGroupInfo(k, dev->desc->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) !=
      CL_SUCCESS) {
    wg = 1;
  }
  if (wg > dev->desc->max_wg) wg = dev->desc->max_wg;
  return wg;
}

static vnrt_status make_kernel(vnrt_backend_device *dev, const char *name, cl_kernel *out) {
  cl_int err = CL_SUCCESS;
  *out = clCreateKernel(dev->program, name, &err);
  if (!*out || err != CL_SUCCESS) {
    *out = NULL;
    return cl_fail(dev, VNRT_ERROR_DEVICE, "clCreateKernel(%s): %d %s", name, (int)err,
                   cl_error_name(err));
  }
  return VNRT_OK;
}

/* Creates the own kernel of call->impl (stepping down to what the device's work-group limits
 * allow) and binds its arguments. */
static vnrt_status prepare_own(vnrt_backend_device *dev, cl_gemm_call *call) {
  const cl_gemm_shape *s = &call->s;
  const cl_device_desc *desc = dev->desc;
  const char *name = NULL;
  size_t wx = 0, ts = 0, vec_m = 0, vec_n = 0;
  if (call->impl == CL_GEMM_ROWS) {
    name = "gemm_rows";
  } else if (call->impl == CL_GEMM_VEC) {
    if (s->trans_b)
      name = "gemm_vec_nt", vec_m = 4, vec_n = 4;
    else
      name = "gemm_vec_nn", vec_m = 8, vec_n = 2 * (size_t)desc->vec_width;
  } else if (desc->max_wi[0] >= 16 && desc->max_wi[1] >= 16 && desc->max_wg >= 256) {
    name = "gemm_t64", wx = 16, ts = 64;
  } else if (desc->max_wi[0] >= 8 && desc->max_wi[1] >= 8 && desc->max_wg >= 64) {
    name = "gemm_t32", wx = 8, ts = 32;
  } else {
    name = "gemm_naive";
  }
  VN_CL_GEMM_TRY_(make_kernel(dev, name, &call->kernel));
  /* A driver may allow fewer work-items for this kernel than for the device: step down. */
  if (wx && kernel_wg(dev, call->kernel) < wx * wx) {
    clReleaseKernel(call->kernel);
    call->kernel = NULL;
    if (wx == 16 && desc->max_wg >= 64) {
      name = "gemm_t32", wx = 8, ts = 32;
      VN_CL_GEMM_TRY_(make_kernel(dev, name, &call->kernel));
    }
    if (!call->kernel || kernel_wg(dev, call->kernel) < wx * wx) {
      if (call->kernel) clReleaseKernel(call->kernel);
      name = "gemm_naive", wx = 0, ts = 0;
      VN_CL_GEMM_TRY_(make_kernel(dev, name, &call->kernel));
    }
  }
  cl_kernel k = call->kernel;
  cl_uint i = 0;
  cl_int da = s->da, db = s->db, dc = s->dc;
  cl_long a_sm = s->K, a_sk = 1, a_bs0 = s->a_bstride[0], a_bs1 = s->a_bstride[1];
  cl_long b_sk = s->trans_b ? 1 : s->N, b_sn = s->trans_b ? s->K : 1;
  cl_long b_bs0 = s->b_bstride[0], b_bs1 = s->b_bstride[1];
  cl_ulong a_off = call->a_off, b_off = call->b_off, c_off = call->c_off;
  cl_int M = (cl_int)s->M, N = (cl_int)s->N, K = (cl_int)s->K, bd1 = (cl_int)s->batch[1];
  CL_SET_(k, name, i, call->a);
  CL_SET_(k, name, i, a_off);
  CL_SET_(k, name, i, da);
  CL_SET_(k, name, i, a_sm);
  CL_SET_(k, name, i, a_sk);
  CL_SET_(k, name, i, a_bs0);
  CL_SET_(k, name, i, a_bs1);
  CL_SET_(k, name, i, call->b);
  CL_SET_(k, name, i, b_off);
  CL_SET_(k, name, i, db);
  CL_SET_(k, name, i, b_sk);
  CL_SET_(k, name, i, b_sn);
  CL_SET_(k, name, i, b_bs0);
  CL_SET_(k, name, i, b_bs1);
  CL_SET_(k, name, i, call->c);
  CL_SET_(k, name, i, c_off);
  CL_SET_(k, name, i, dc);
  CL_SET_(k, name, i, M);
  CL_SET_(k, name, i, N);
  CL_SET_(k, name, i, K);
  CL_SET_(k, name, i, bd1);
  call->dim = 3;
  size_t batch = (size_t)batch_count(s);
  if (strcmp(name, "gemm_rows") == 0) {
    size_t wg = kernel_wg(dev, k);
    if (wg > desc->max_wi[0]) wg = desc->max_wi[0];
    size_t p = 1;
    while (p * 2 <= wg && p * 2 <= 64) p *= 2;
    cl_int err = clSetKernelArg(k, i, p * sizeof(float), NULL);
    if (err != CL_SUCCESS) {
      return cl_fail(dev, VNRT_ERROR_INTERNAL, "clSetKernelArg(gemm_rows local): %d %s", (int)err,
                     cl_error_name(err));
    }
    call->lws[0] = p, call->lws[1] = 1, call->lws[2] = 1;
    call->gws[0] = (size_t)s->N * p, call->gws[1] = (size_t)s->M, call->gws[2] = batch;
  } else if (vec_m) {
    /* Small fixed work-groups: enough of them to spread over every compute unit. */
    size_t lx = 8;
    while (lx > 1 && (lx > kernel_wg(dev, k) || lx > desc->max_wi[0])) lx /= 2;
    call->lws[0] = lx, call->lws[1] = 1, call->lws[2] = 1;
    call->gws[0] = ((size_t)s->N + vec_n - 1) / vec_n;
    call->gws[0] = (call->gws[0] + lx - 1) / lx * lx;
    call->gws[1] = ((size_t)s->M + vec_m - 1) / vec_m;
    call->gws[2] = batch;
  } else if (wx) {
    call->lws[0] = wx, call->lws[1] = wx, call->lws[2] = 1;
    call->gws[0] = ((size_t)s->N + ts - 1) / ts * wx;
    call->gws[1] = ((size_t)s->M + ts - 1) / ts * wx;
    call->gws[2] = batch;
  } else {
    call->lws[0] = 0; /* the driver picks */
    call->gws[0] = (size_t)s->N, call->gws[1] = (size_t)s->M, call->gws[2] = batch;
  }
  return VNRT_OK;
}

/* ---- clBLAST --------------------------------------------------------------------------- */

/* A cast kernel converting n elements of (src, src_off) dtype ds into (dst, dst_off) dtype dd. */
static vnrt_status make_cast(vnrt_backend_device *dev, cl_mem src, uint64_t src_off, int ds,
                             cl_mem dst, uint64_t dst_off, int dd, int64_t n, cl_kernel *out,
                             size_t *out_gws, size_t *out_lws) {
  VN_CL_GEMM_TRY_(make_kernel(dev, "cast_op", out));
  cl_kernel k = *out;
  cl_uint i = 0;
  cl_ulong so = src_off, d_o = dst_off;
  cl_int dsi = ds, ddi = dd;
  cl_long nn = n;
  CL_SET_(k, "cast_op", i, src);
  CL_SET_(k, "cast_op", i, so);
  CL_SET_(k, "cast_op", i, dsi);
  CL_SET_(k, "cast_op", i, dst);
  CL_SET_(k, "cast_op", i, d_o);
  CL_SET_(k, "cast_op", i, ddi);
  CL_SET_(k, "cast_op", i, nn);
  size_t wg = kernel_wg(dev, k);
  size_t p = 1;
  while (p * 2 <= wg && p * 2 <= 256 && p * 2 <= dev->desc->max_wi[0]) p *= 2;
  *out_lws = p;
  *out_gws = ((size_t)n + p - 1) / p * p;
  return VNRT_OK;
}

static vnrt_status prepare_clblast(vnrt_backend_device *dev, cl_gemm_call *call) {
  const cl_gemm_shape *s = &call->s;
  uint64_t off = call->scratch_off;
  if (s->da != VNRT_F32) {
    VN_CL_GEMM_TRY_(make_cast(dev, call->a, call->a_off, s->da, call->scratch, off, CL_DT_F32,
                              s->a_numel, &call->cvt[0], &call->cvt_gws[0], &call->cvt_lws));
    off += align256((uint64_t)s->a_numel * 4);
  }
  if (s->db != VNRT_F32) {
    VN_CL_GEMM_TRY_(make_cast(dev, call->b, call->b_off, s->db, call->scratch, off, CL_DT_F32,
                              s->b_numel, &call->cvt[1], &call->cvt_gws[1], &call->cvt_lws));
    off += align256((uint64_t)s->b_numel * 4);
  }
  if (s->dc != VNRT_F32) {
    VN_CL_GEMM_TRY_(make_cast(dev, call->scratch, off, CL_DT_F32, call->c, call->c_off, s->dc,
                              batch_count(s) * s->M * s->N, &call->cvt[2], &call->cvt_gws[2],
                              &call->cvt_lws));
  }
  return VNRT_OK;
}

static vnrt_status enqueue_cast(vnrt_backend_device *dev, cl_kernel k, size_t gws, size_t lws) {
  cl_int err = clEnqueueNDRangeKernel(dev->queue, k, 1, NULL, &gws, &lws, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE, "converting a GEMM operand: %d %s", (int)err,
                   cl_error_name(err));
  }
  return VNRT_OK;
}

static vnrt_status enqueue_clblast(vnrt_backend_device *dev, const cl_gemm_call *call) {
#ifdef VNRT_OPENCL_CLBLAST
  const cl_gemm_shape *s = &call->s;
  /* Non-f32 operands are f32 copies in scratch, laid out like the originals. */
  uint64_t off = call->scratch_off;
  cl_mem a = call->a, b = call->b, c = call->c;
  uint64_t a_off = call->a_off, b_off = call->b_off, c_off = call->c_off;
  if (call->cvt[0]) {
    VN_CL_GEMM_TRY_(enqueue_cast(dev, call->cvt[0], call->cvt_gws[0], call->cvt_lws));
    a = call->scratch, a_off = off;
    off += align256((uint64_t)s->a_numel * 4);
  }
  if (call->cvt[1]) {
    VN_CL_GEMM_TRY_(enqueue_cast(dev, call->cvt[1], call->cvt_gws[1], call->cvt_lws));
    b = call->scratch, b_off = off;
    off += align256((uint64_t)s->b_numel * 4);
  }
  if (call->cvt[2]) c = call->scratch, c_off = off;
  cl_command_queue queue = dev->queue;
  for (int64_t z = 0; z < batch_count(s); ++z) {
    int64_t b0 = z / s->batch[1], b1 = z % s->batch[1];
    size_t ae = (size_t)(a_off / 4 + (uint64_t)(b0 * s->a_bstride[0] + b1 * s->a_bstride[1]));
    size_t be = (size_t)(b_off / 4 + (uint64_t)(b0 * s->b_bstride[0] + b1 * s->b_bstride[1]));
    size_t ce = (size_t)(c_off / 4 + (uint64_t)(z * s->M * s->N));
    CLBlastStatusCode st =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                     s->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)s->M,
                     (size_t)s->N, (size_t)s->K, 1.0f, a, ae, (size_t)s->K, b, be,
                     (size_t)(s->trans_b ? s->K : s->N), 0.0f, c, ce, (size_t)s->N, &queue, NULL);
    if (st != CLBlastSuccess) {
      return cl_fail(dev, VNRT_ERROR_DEVICE,
                     "CLBlastSgemm(%" PRId64 "x%" PRId64 "x%" PRId64 "): status %d", s->M, s->N,
                     s->K, (int)st);
    }
  }
  if (call->cvt[2]) {
    VN_CL_GEMM_TRY_(enqueue_cast(dev, call->cvt[2], call->cvt_gws[2], call->cvt_lws));
  }
  return VNRT_OK;
#else
  (void)enqueue_cast; /* only the clBLAST path converts operands */
  return cl_fail(dev, VNRT_ERROR_UNSUPPORTED, "this build of vnrt has no clBLAST");
#endif
}

/* ---- Calls ----------------------------------------------------------------------------- */

vnrt_status cl_gemm_prepare(vnrt_backend_device *dev, cl_gemm_call *call) {
  return call->impl == CL_GEMM_CLBLAST ? prepare_clblast(dev, call) : prepare_own(dev, call);
}

vnrt_status cl_gemm_enqueue(vnrt_backend_device *dev, const cl_gemm_call *call, cl_event *out_begin,
                            cl_event *out_end) {
  if (out_begin) *out_begin = NULL;
  if (out_end) *out_end = NULL;
  if (call->impl == CL_GEMM_CLBLAST) {
    /* Casts and one clBLAST call per batch: markers around them all. */
    cl_int err = out_begin ? clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, out_begin) : 0;
    vnrt_status s = err == CL_SUCCESS ? enqueue_clblast(dev, call) : VNRT_OK;
    if (s == VNRT_OK && err == CL_SUCCESS && out_end) {
      err = clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, out_end);
    }
    if (err != CL_SUCCESS) {
      return cl_fail(dev, VNRT_ERROR_DEVICE, "enqueueing a marker around a GEMM: %d %s", (int)err,
                     cl_error_name(err));
    }
    return s;
  }
  cl_int err = clEnqueueNDRangeKernel(dev->queue, call->kernel, call->dim, NULL, call->gws,
                                      call->lws[0] ? call->lws : NULL, 0, NULL, out_end);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE,
                   "enqueueing a GEMM (%" PRId64 "x%" PRId64 "x%" PRId64 "): %d %s", call->s.M,
                   call->s.N, call->s.K, (int)err, cl_error_name(err));
  }
  return VNRT_OK;
}

void cl_gemm_release(cl_gemm_call *call) {
  if (call->kernel) clReleaseKernel(call->kernel);
  for (int i = 0; i < 3; ++i) {
    if (call->cvt[i]) clReleaseKernel(call->cvt[i]);
  }
  call->kernel = NULL;
  memset(call->cvt, 0, sizeof call->cvt);
}

/* ---- Choosing -------------------------------------------------------------------------- */

/* The shape, dtypes and kernel family (local memory real or emulated: the candidates differ)
 * of a GEMM: "nt 64x80x96 b1 f32.f16.f32 lmem". */
static void shape_key(vnrt_backend_device *dev, const cl_gemm_shape *s, char *buf, size_t size) {
  snprintf(buf, size, "%s %" PRId64 "x%" PRId64 "x%" PRId64 " b%" PRId64 " %s.%s.%s %s",
           s->trans_b ? "nt" : "nn", s->M, s->N, s->K, batch_count(s), vnrt_dtype_name(s->da),
           vnrt_dtype_name(s->db), vnrt_dtype_name(s->dc),
           dev->desc->local_mem_dedicated ? "lmem" : "gmem");
}

static void remember(vnrt_backend_device *dev, const char *key, int impl) {
  const vnrt_backend_host *host = dev->host;
  for (int32_t i = 0; i < dev->n_gemm_choices; ++i) {
    if (strcmp(dev->gemm_choices[i].key, key) == 0) {
      dev->gemm_choices[i].impl = impl;
      return;
    }
  }
  if (dev->n_gemm_choices == dev->cap_gemm_choices) {
    int32_t cap = dev->cap_gemm_choices ? 2 * dev->cap_gemm_choices : 16;
    cl_gemm_choice *p = host->alloc(host->core, sizeof *p * (size_t)cap);
    if (!p) return;
    if (dev->gemm_choices) {
      memcpy(p, dev->gemm_choices, sizeof *p * (size_t)dev->n_gemm_choices);
      host->free(host->core, dev->gemm_choices);
    }
    dev->gemm_choices = p;
    dev->cap_gemm_choices = cap;
  }
  cl_gemm_choice *c = &dev->gemm_choices[dev->n_gemm_choices++];
  snprintf(c->key, sizeof c->key, "%s", key);
  c->impl = impl;
}

/* Lines of the .gemm file: "<key> -> <impl> <µs per candidate...>"; the last line of a key
 * wins, and lines that do not parse are ignored. */
static void load_choices(vnrt_backend_device *dev) {
  dev->gemm_choices_loaded = 1;
  char path[1100];
  if (!cl_cache_path(dev, ".gemm", path, sizeof path)) return;
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    char *arrow = strstr(line, " -> ");
    if (!arrow) continue;
    *arrow = '\0';
    const char *what = arrow + 4;
    for (int impl = CL_GEMM_TILED; impl <= CL_GEMM_ROWS; ++impl) {
      const char *name = cl_gemm_impl_name((cl_gemm_impl)impl);
      size_t len = strlen(name);
      if (strncmp(what, name, len) == 0 && what[len] == ' ') remember(dev, line, impl);
    }
  }
  fclose(f);
}

static void store_choice(vnrt_backend_device *dev, const char *key, int impl, const char *times) {
  char path[1100];
  if (!cl_cache_path(dev, ".gemm", path, sizeof path)) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  /* One short line per write: appends from concurrent processes stay whole. */
  char line[256];
  int n = snprintf(line, sizeof line, "%s -> %s %s\n", key, cl_gemm_impl_name((cl_gemm_impl)impl),
                   times);
  if (n > 0 && (size_t)n < sizeof line) fwrite(line, 1, (size_t)n, f);
  fclose(f);
}

/* Fills n elements of dtype dt of (mem, 0) with a small constant (timing data). */
static cl_int fill(vnrt_backend_device *dev, cl_mem mem, vnrt_dtype dt, int64_t n) {
  if (n <= 0) return CL_SUCCESS;
  if (dt == VNRT_F32) {
    cl_float v = 0.25f;
    return clEnqueueFillBuffer(dev->queue, mem, &v, sizeof v, 0, (size_t)n * 4, 0, NULL, NULL);
  }
  cl_ushort v = dt == VNRT_F16 ? 0x3400 : 0x3e80; /* 0.25 as f16 / bf16 */
  return clEnqueueFillBuffer(dev->queue, mem, &v, sizeof v, 0, (size_t)n * 2, 0, NULL, NULL);
}

/* Seconds per run of impl on scratch buffers (best of a few, after a warm-up that also
 * absorbs any just-in-time kernel compilation), or a negative value if it failed. */
static double time_impl(vnrt_backend_device *dev, const cl_gemm_shape *s, cl_gemm_impl impl,
                        cl_mem a, cl_mem b, cl_mem c, cl_mem scratch) {
  cl_gemm_call call;
  memset(&call, 0, sizeof call);
  call.s = *s;
  call.impl = impl;
  call.a = a, call.b = b, call.c = c, call.scratch = scratch;
  double best = -1.0;
  if (cl_gemm_prepare(dev, &call) == VNRT_OK &&
      cl_gemm_enqueue(dev, &call, NULL, NULL) == VNRT_OK && clFinish(dev->queue) == CL_SUCCESS) {
    double total = 0.0;
    for (int r = 0; r < 5 && total < 0.05; ++r) {
      double t0 = cl_now();
      if (cl_gemm_enqueue(dev, &call, NULL, NULL) != VNRT_OK ||
          clFinish(dev->queue) != CL_SUCCESS) {
        best = -1.0;
        break;
      }
      double t = cl_now() - t0;
      total += t;
      if (best < 0.0 || t < best) best = t;
    }
  }
  cl_gemm_release(&call);
  return best;
}

/* The own kernel that suits dev for s when nothing is measured. */
static cl_gemm_impl default_impl(vnrt_backend_device *dev, const cl_gemm_shape *s) {
  if (!dev->desc->local_mem_dedicated) return CL_GEMM_VEC;
  return s->M <= 4 && s->K >= 64 ? CL_GEMM_ROWS : CL_GEMM_TILED;
}

static vnrt_status measure(vnrt_backend_device *dev, const cl_gemm_shape *s, const char *key,
                           int with_clblast, cl_gemm_impl *out) {
  const vnrt_backend_host *host = dev->host;
  cl_mem mem[4] = {NULL, NULL, NULL, NULL};
  uint64_t cap[4] = {0, 0, 0, 0};
  uint64_t bytes[4] = {
      (uint64_t)s->a_numel * vnrt_dtype_size(s->da),
      (uint64_t)s->b_numel * vnrt_dtype_size(s->db),
      (uint64_t)(batch_count(s) * s->M * s->N) * vnrt_dtype_size(s->dc),
      cl_gemm_scratch_bytes(s, CL_GEMM_CLBLAST),
  };
  vnrt_status st = VNRT_OK;
  for (int i = 0; i < 4 && st == VNRT_OK; ++i) {
    st = cl_mem_get(dev, bytes[i] ? bytes[i] : 4, "a GEMM timing buffer", &mem[i], &cap[i]);
  }
  const cl_gemm_impl cands[4] = {CL_GEMM_VEC, CL_GEMM_TILED, CL_GEMM_ROWS, CL_GEMM_CLBLAST};
  double t[4] = {-1.0, -1.0, -1.0, -1.0};
  if (st == VNRT_OK && fill(dev, mem[0], s->da, s->a_numel) == CL_SUCCESS &&
      fill(dev, mem[1], s->db, s->b_numel) == CL_SUCCESS) {
    for (int i = 0; i < 4; ++i) {
      if (cands[i] == CL_GEMM_CLBLAST && !with_clblast) continue;
      if (cands[i] == CL_GEMM_ROWS && s->M > 16) continue; /* a group per output: few rows */
      /* Local-memory tiles and reductions only pay where local memory is real (not emulated
       * in global memory, as on CPU drivers). */
      if ((cands[i] == CL_GEMM_TILED || cands[i] == CL_GEMM_ROWS) &&
          !dev->desc->local_mem_dedicated) {
        continue;
      }
      t[i] = time_impl(dev, s, cands[i], mem[0], mem[1], mem[2], mem[3]);
    }
  }
  clFinish(dev->queue);
  for (int i = 0; i < 4; ++i) {
    if (mem[i]) cl_mem_put(dev, mem[i], cap[i]);
  }
  cl_gemm_impl impl = default_impl(dev, s);
  double best = -1.0;
  for (int i = 0; i < 4; ++i) {
    if (t[i] > 0.0 && (best < 0.0 || t[i] < best)) best = t[i], impl = cands[i];
  }
  if (st != VNRT_OK || best < 0.0) {
    /* No room (or no candidate ran): not an error for the plan, just nothing recorded. */
    host->log(host->core, VNRT_LOG_INFO, "opencl (%s): GEMM %s not measured; using %s",
              dev->desc->info.name, key, cl_gemm_impl_name(impl));
    *out = impl;
    return VNRT_OK;
  }
  char times[128];
  snprintf(times, sizeof times, "vec %.0f tiled %.0f rows %.0f clblast %.0f", 1e6 * t[0],
           1e6 * t[1], 1e6 * t[2], 1e6 * t[3]);
  host->log(host->core, VNRT_LOG_INFO, "opencl (%s): GEMM %s: %s (us) -> %s", dev->desc->info.name,
            key, times, cl_gemm_impl_name(impl));
  if (with_clblast) { /* a full measurement: remember it */
    remember(dev, key, impl);
    store_choice(dev, key, impl, times);
  }
  *out = impl;
  return VNRT_OK;
}

vnrt_status cl_gemm_choose(vnrt_backend_device *dev, const cl_gemm_shape *s,
                           cl_gemm_impl *out_impl) {
  *out_impl = default_impl(dev, s);
  const char *force = vnrt_host_option(dev->host, "cl_gemm");
  if (force && force[0] && strcmp(force, "auto") != 0 && strcmp(force, "own") != 0) {
    for (int impl = CL_GEMM_TILED; impl <= CL_GEMM_ROWS; ++impl) {
      if (strcmp(force, cl_gemm_impl_name((cl_gemm_impl)impl)) != 0) continue;
      if (impl == CL_GEMM_CLBLAST && (!cl_gemm_have_clblast() || s->K == 0)) break;
      *out_impl = (cl_gemm_impl)impl;
      return VNRT_OK;
    }
    return VNRT_OK; /* an unknown or unavailable choice: the default */
  }
  int with_clblast = cl_gemm_have_clblast() && s->K > 0 && !(force && strcmp(force, "own") == 0);
  if ((double)s->M * (double)s->N * (double)s->K * (double)batch_count(s) < CL_GEMM_MEASURE_MIN) {
    return VNRT_OK;
  }
  char key[112];
  shape_key(dev, s, key, sizeof key);
  if (with_clblast) {
    if (!dev->gemm_choices_loaded) load_choices(dev);
    for (int32_t i = 0; i < dev->n_gemm_choices; ++i) {
      if (strcmp(dev->gemm_choices[i].key, key) == 0) {
        *out_impl = (cl_gemm_impl)dev->gemm_choices[i].impl;
        return VNRT_OK;
      }
    }
  }
  return measure(dev, s, key, with_clblast, out_impl);
}

void cl_gemm_forget(vnrt_backend_device *dev) {
  if (dev->gemm_choices) dev->host->free(dev->host->core, dev->gemm_choices);
  dev->gemm_choices = NULL;
  dev->n_gemm_choices = dev->cap_gemm_choices = 0;
  dev->gemm_choices_loaded = 0;
}
