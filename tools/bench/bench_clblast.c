/* vnrt-bench's OpenCL GEMM peers: clBLAST's sgemm called directly on the same OpenCL device,
 * and the same graph with vnrt forced onto its clBLAST path, timed beside linear and matmul. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#if defined(VNRT_BENCH_CLBLAST)
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <clblast_c.h>

#ifndef VNRT_BENCH_CLBLAST_VERSION
#define VNRT_BENCH_CLBLAST_VERSION "?"
#endif

/* The directly opened device: one context and queue for the whole run, so that clBLAST
 * compiles its kernels once (its program cache is keyed by context and device). */
static struct {
  int tried, ok;
  cl_context context;
  cl_command_queue queue;
} cl;

struct opencl_peers {
  cl_mem a, b, c;
  size_t m, n, k;
  bool trans_b;
  bench_graph forced; /* the case's graph, compiled with VNRT_CL_GEMM=clblast */
  vnrt_plan *forced_plan;
  double forced_vs_direct; /* speed of vnrt's clBLAST path over direct clBLAST; 0: none */
  char note[128];
};

static void close_device(void) {
  CLBlastClearCache();
  if (cl.queue) clReleaseCommandQueue(cl.queue);
  if (cl.context) clReleaseContext(cl.context);
  memset(&cl, 0, sizeof cl);
}

/* Devices across all platforms in the ICD loader's order, as vnrt numbers `opencl:N`. vnrt
 * skips devices it cannot use (below OpenCL 1.2, no compiler, ...), so the index alone may
 * point elsewhere: the device at vnrt's index is taken when its name matches, else the first
 * device of that name. */
static bool open_device(void) {
  cl_uint n_plat = 0;
  if (clGetPlatformIDs(0, NULL, &n_plat) != CL_SUCCESS || n_plat == 0) return false;
  cl_platform_id *plats = xmalloc(sizeof *plats * n_plat);
  cl_device_id *devs = NULL;
  cl_platform_id *dev_plat = NULL;
  cl_uint n_devs = 0;
  if (clGetPlatformIDs(n_plat, plats, NULL) != CL_SUCCESS) n_plat = 0;
  for (cl_uint p = 0; p < n_plat; ++p) {
    cl_uint n = 0;
    if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n) != CL_SUCCESS || n == 0) continue;
    devs = realloc(devs, sizeof *devs * (n_devs + n));
    dev_plat = realloc(dev_plat, sizeof *dev_plat * (n_devs + n));
    if (!devs || !dev_plat) die("out of memory");
    if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, n, devs + n_devs, NULL) != CL_SUCCESS)
      continue;
    for (cl_uint i = 0; i < n; ++i) dev_plat[n_devs + i] = plats[p];
    n_devs += n;
  }
  int pick = -1;
  for (cl_uint i = 0; i < n_devs; ++i) {
    char name[256] = "";
    clGetDeviceInfo(devs[i], CL_DEVICE_NAME, sizeof name - 1, name, NULL);
    if (strcmp(name, device_info.name) != 0) continue;
    if (pick < 0 || i == device_info.index) pick = (int)i;
  }
  bool ok = false;
  if (pick < 0) {
    printf("(clBLAST peers: no OpenCL device named '%s' found directly; left out)\n",
           device_info.name);
  } else {
    cl_int err = CL_SUCCESS;
    cl_context_properties props[3] = {CL_CONTEXT_PLATFORM, (cl_context_properties)dev_plat[pick],
                                      0};
    cl.context = clCreateContext(props, 1, &devs[pick], NULL, NULL, &err);
    if (cl.context && err == CL_SUCCESS) {
      cl.queue = clCreateCommandQueue(cl.context, devs[pick], 0, &err);
    }
    ok = cl.queue && err == CL_SUCCESS;
    if (!ok) {
      printf("(clBLAST peers: cannot open '%s' directly: OpenCL error %d; left out)\n",
             device_info.name, (int)err);
      close_device();
    } else {
      printf(
          "(peers: clBLAST %s sgemm called directly on '%s' (loader device %d), f32 operands"
          " uploaded once; vnrt clblast = this graph compiled with VNRT_CL_GEMM=clblast)\n",
          VNRT_BENCH_CLBLAST_VERSION, device_info.name, pick);
      atexit(close_device);
    }
  }
  free(plats);
  free(devs);
  free(dev_plat);
  return ok;
}

static cl_mem upload(const float *host, size_t n) {
  cl_int err = CL_SUCCESS;
  cl_mem m = clCreateBuffer(cl.context, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &err);
  if (!m || err != CL_SUCCESS) die("clCreateBuffer(%zu floats): OpenCL error %d", n, (int)err);
  if (host) {
    err = clEnqueueWriteBuffer(cl.queue, m, CL_TRUE, 0, n * sizeof(float), host, 0, NULL, NULL);
    if (err != CL_SUCCESS) die("clEnqueueWriteBuffer: OpenCL error %d", (int)err);
  }
  return m;
}

/* One direct clBLAST GEMM, waited for: what an application calling clBLAST itself gets. */
static void clblast_run(void *user) {
  opencl_peers *p = user;
  CLBlastStatusCode st = CLBlastSgemm(
      CLBlastLayoutRowMajor, CLBlastTransposeNo,
      p->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, p->m, p->n, p->k, 1.0f, p->a, 0, p->k,
      p->b, 0, p->trans_b ? p->k : p->n, 0.0f, p->c, 0, p->n, &cl.queue, NULL);
  if (st != CLBlastSuccess) die("CLBlastSgemm(%zux%zux%zu): status %d", p->m, p->n, p->k, (int)st);
  cl_int err = clFinish(cl.queue);
  if (err != CL_SUCCESS) die("clFinish: OpenCL error %d", (int)err);
}

/* Compiles the case's graph with VNRT_CL_GEMM=clblast, which the OpenCL backend reads when it
 * chooses each GEMM's implementation at plan creation; the previous value is restored after. */
static vnrt_plan *forced_clblast_plan(bench_graph *bg) {
  const char *old = getenv("VNRT_CL_GEMM");
  char *saved = old ? strcpy(xmalloc(strlen(old) + 1), old) : NULL;
  if (setenv("VNRT_CL_GEMM", "clblast", 1) != 0) die("setenv failed");
  graph_inputs(bg);
  vnrt_plan *plan = make_plan(bg, device, VNRT_KERNELS_FAST);
  if (saved ? setenv("VNRT_CL_GEMM", saved, 1) != 0 : unsetenv("VNRT_CL_GEMM") != 0) {
    die("restoring VNRT_CL_GEMM failed");
  }
  free(saved);
  return plan;
}

int opencl_peers_prepare(opencl_peers **out, vnrt_op op, const input_desc *ins, int n_in, int64_t m,
                         int64_t n, int64_t k, bool trans_b, baseline *bls) {
  *out = NULL;
  if (strcmp(device_info.backend, "opencl") != 0) return 0;
  if (!cl.tried) cl.tried = 1, cl.ok = open_device();
  if (!cl.ok) return 0;
  opencl_peers *p = xmalloc(sizeof *p);
  memset(p, 0, sizeof *p);
  p->m = (size_t)m, p->n = (size_t)n, p->k = (size_t)k, p->trans_b = trans_b;
  /* f32 operands whatever the case's weight dtype: clBLAST's sgemm is what an application
   * would call, after converting f16 weights on the host once. */
  float *host = xmalloc(sizeof(float) * (size_t)(m * k > n * k ? m * k : n * k));
  for (int64_t i = 0; i < m * k; ++i) host[i] = (float)(2.0 * rng_uniform() - 1.0);
  p->a = upload(host, (size_t)(m * k));
  for (int64_t i = 0; i < n * k; ++i) host[i] = (float)(0.1 * rng_uniform() - 0.05);
  p->b = upload(host, (size_t)(n * k));
  p->c = upload(NULL, (size_t)(m * n));
  free(host);
  p->forced = (bench_graph){.op = op, .ins = ins, .n_in = n_in, .n_out = 1};
  p->forced_plan = forced_clblast_plan(&p->forced);
  bls[0] = (baseline){clblast_run, p, 0.0, 0.0};
  bls[1] = (baseline){plan_run_baseline, p->forced_plan, 0.0, 0.0};
  *out = p;
  return 2;
}

void opencl_peers_add(opencl_peers *p, const baseline *bls, result *r) {
  if (!p) return;
  add_peer(r, "clBLAST", bls[0].seconds);
  add_peer(r, "vnrt clblast", bls[1].seconds);
  if (bls[0].seconds > 0.0 && bls[1].seconds > 0.0) {
    p->forced_vs_direct = bls[0].seconds / bls[1].seconds;
    snprintf(p->note, sizeof p->note, "%s %s", r->op, r->shape);
  }
}

void opencl_peers_finish(opencl_peers *p) {
  if (!p) return;
  /* The overhead figure itself (the target: >= 0.9 at M >= 64), on a line under the
   * case's row. */
  if (p->forced_vs_direct > 0.0) {
    add_figure("  vnrt clblast / direct clBLAST (speed)", p->forced_vs_direct, "x", p->note);
  }
  vnrt_plan_destroy(p->forced_plan);
  graph_free(&p->forced);
  clReleaseMemObject(p->a);
  clReleaseMemObject(p->b);
  clReleaseMemObject(p->c);
  free(p);
}

#else /* no clBLAST at build time: no OpenCL peers */

struct opencl_peers {
  int unused;
};

int opencl_peers_prepare(opencl_peers **out, vnrt_op op, const input_desc *ins, int n_in, int64_t m,
                         int64_t n, int64_t k, bool trans_b, baseline *bls) {
  (void)op, (void)ins, (void)n_in, (void)m, (void)n, (void)k, (void)trans_b, (void)bls;
  *out = NULL;
  return 0;
}

void opencl_peers_add(opencl_peers *p, const baseline *bls, result *r) {
  (void)p, (void)bls, (void)r;
}

void opencl_peers_finish(opencl_peers *p) { (void)p; }

#endif
