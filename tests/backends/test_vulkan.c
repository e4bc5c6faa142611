/* Check suite for the Vulkan backend: the device and its capabilities (cross-checked with the
 * Vulkan API itself), an absent driver, allocation limits, every op against the CPU device in
 * the normal and the baseline shader variants under the Khronos validation layer (which must
 * stay silent), run-time index errors, the staging path, the copy stream's queue and timelines
 * (large transfers, copies from a second thread during runs, the logged choice), mixed
 * CPU/Vulkan plans with cached command buffers, the NaN-free choice of e4m3 GEMVs (writes,
 * queued async runs, a writer thread, moe_ffn and grouped_linear, CPU fallback copies), and
 * the on-disk pipeline cache, and kv_compress's states updated in place. */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vulkan/vulkan.h>

#include "kvc_ref.h"
#include "moe_ref.h"
#include "registry.h" /* vn_device_open: the backend device, for buffer-level copies */
#include "sweep.h"
#include "test_util.h"

#define TOL_ELEM 1e-7
#define TOL_GEMM 1e-6

/* ---- A context whose log we can read --------------------------------------------------- */

typedef struct log_capture {
  int n_validation;  /* ERROR messages that start with "vulkan validation" */
  int layer_enabled; /* saw "validation layer enabled" */
  char text[16384];  /* everything, newline-separated (truncated) */
  size_t used;
  char first_validation[1024];
  char copy_line[512]; /* the last "vulkan: copy stream: ..." line */
} log_capture;

static void capture_fn(void *user, vnrt_log_level level, const char *message) {
  log_capture *c = user;
  if (level == VNRT_LOG_ERROR && strstr(message, "vulkan validation") == message) {
    if (c->n_validation++ == 0) {
      snprintf(c->first_validation, sizeof c->first_validation, "%s", message);
    }
  }
  if (strstr(message, "validation layer enabled")) c->layer_enabled = 1;
  if (strstr(message, "vulkan: copy stream: ") == message) {
    snprintf(c->copy_line, sizeof c->copy_line, "%s", message);
  }
  int w = snprintf(c->text + c->used, sizeof c->text - c->used, "%s\n", message);
  if (w > 0 && c->used + (size_t)w < sizeof c->text) c->used += (size_t)w;
}

/* A context whose log (from `level` up) goes to cap. */
static vnrt_context *capture_context_at(log_capture *cap, vnrt_log_level level) {
  memset(cap, 0, sizeof *cap);
  vnrt_context_desc desc = {0};
  desc.log_fn = capture_fn;
  desc.log_user = cap;
  desc.log_level = level;
  desc.no_plugins = 1;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&desc, &ctx);
  ck_assert_msg(s == VNRT_OK && ctx, "vnrt_context_create: %s", vnrt_status_string(s));
  return ctx;
}

static vnrt_context *capture_context(log_capture *cap) {
  return capture_context_at(cap, VNRT_LOG_DEBUG);
}

/* The validation layer was asked for (VNRT_VK_VALIDATION) and must have been enabled. */
static void assert_layer_enabled(const log_capture *cap) {
  ck_assert_msg(cap->layer_enabled, "the validation layer was not enabled; log:\n%s", cap->text);
}

/* Destroys ctx (the layer reports leaks and late errors then), then asserts that it said
 * nothing. */
static void destroy_silent(vnrt_context *ctx, const log_capture *cap) {
  vnrt_context_destroy(ctx);
  ck_assert_msg(cap->n_validation == 0, "%d validation messages; the first: %s", cap->n_validation,
                cap->first_validation);
}

/* Sets (value != NULL) or clears an environment variable, remembering the old value. */
typedef struct saved_env {
  const char *name;
  char *old;
  int had;
} saved_env;

static saved_env env_set(const char *name, const char *value) {
  saved_env s = {name, NULL, 0};
  const char *o = getenv(name);
  if (o) {
    s.had = 1;
    s.old = strdup(o);
  }
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
  return s;
}

static void env_restore(saved_env *s) {
  if (s->had)
    setenv(s->name, s->old, 1);
  else
    unsetenv(s->name);
  free(s->old);
  s->old = NULL;
}

static vnrt_device *vulkan_device(vnrt_context *ctx) {
  vnrt_device *d = NULL;
  vnrt_status s = vnrt_device_select(ctx, "vulkan:0", &d);
  ck_assert_msg(s == VNRT_OK,
                "no vulkan device (is a Vulkan driver such as lavapipe "
                "installed?): %s",
                vnrt_context_last_error(ctx));
  return d;
}

static vnrt_device *cpu_device(vnrt_context *ctx) {
  vnrt_device *d = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &d));
  return d;
}

static int count_vulkan_devices(vnrt_context *ctx) {
  int n = 0;
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *d = NULL;
    vnrt_device_info info = {.struct_size = sizeof info};
    if (vnrt_device_get(ctx, i, &d) == VNRT_OK && vnrt_device_get_info(d, &info) == VNRT_OK &&
        strcmp(info.backend, "vulkan") == 0) {
      ++n;
    }
  }
  return n;
}

/* ---- Tensors --------------------------------------------------------------------------- */

/* Compares Vulkan's results of one graph with the CPU device's: floats by NMSE (NaN or Inf
 * where the CPU has none fails), integers exactly. */
static void compare_outputs(const char *what, const tu_tensor *vk, const tu_tensor *cpu,
                            int32_t n_out, double tol) {
  for (int32_t o = 0; o < n_out; ++o) {
    ck_assert_msg(vk[o].type.dtype == cpu[o].type.dtype && vk[o].type.rank == cpu[o].type.rank,
                  "%s: result %d types differ", what, o);
    int64_t n = tu_numel(&cpu[o]);
    ck_assert_int_eq(tu_numel(&vk[o]), n);
    if (cpu[o].type.dtype == VNRT_I32) {
      for (int64_t i = 0; i < n; ++i) {
        ck_assert_msg(tu_get(&vk[o], i) == tu_get(&cpu[o], i),
                      "%s: result %d[%lld] is %g on vulkan, %g on cpu", what, o, (long long)i,
                      tu_get(&vk[o], i), tu_get(&cpu[o], i));
      }
      continue;
    }
    double *ref = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(ref);
    for (int64_t i = 0; i < n; ++i) ref[i] = tu_get(&cpu[o], i);
    double e = tu_nmse(&vk[o], ref, n);
    free(ref);
    ck_assert_msg(e <= tol, "%s: result %d NMSE %.3g against the cpu > %.1g", what, o, e, tol);
  }
}

/* Runs a one-op graph on the CPU and on Vulkan (no fallback) and compares (sweep.c). */
static void vs_cpu(vnrt_context *ctx, const char *what, vnrt_op op, const tu_tensor *in,
                   int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out,
                   double tol) {
  tu_vs_cpu(ctx, vulkan_device(ctx), what, op, in, n_in, attrs, n_attrs, n_out, tol);
}

static const vnrt_dtype kFloats[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};

/* ---- Every op against the CPU ---------------------------------------------------------- */

static void ops_elementwise(vnrt_context *ctx) {
  const vnrt_op unary[] = {VNRT_OP_NEG,  VNRT_OP_EXP,      VNRT_OP_SQRT,         VNRT_OP_RSQRT,
                           VNRT_OP_TANH, VNRT_OP_RELU,     VNRT_OP_SIGMOID,      VNRT_OP_SILU,
                           VNRT_OP_GELU, VNRT_OP_SOFTPLUS, VNRT_OP_SQRT_SOFTPLUS};
  char what[128];
  for (size_t i = 0; i < sizeof unary / sizeof unary[0]; ++i) {
    for (int d = 0; d < 3; ++d) {
      int pos = unary[i] == VNRT_OP_SQRT || unary[i] == VNRT_OP_RSQRT;
      /* 301 elements: an odd count, so the last 16-bit value shares a word with nothing. */
      /* exp stays within f16's range; the rest crosses softplus's +-20 thresholds. */
      float lo = pos ? 0.05f : (unary[i] == VNRT_OP_EXP ? -8.0f : -25.0f);
      float hi = unary[i] == VNRT_OP_EXP ? 8.0f : 25.0f;
      tu_tensor x = tu_rnd(kFloats[d], 2, 7, 43, 0, 0, 10 + i, lo, hi);
      snprintf(what, sizeof what, "%s %s", vnrt_op_name(unary[i]), vnrt_dtype_name(kFloats[d]));
      vs_cpu(ctx, what, unary[i], &x, 1, NULL, 0, 1, TOL_ELEM);
      tu_tensor_free(&x);
    }
  }
  tu_tensor x = tu_rnd(VNRT_BF16, 3, 3, 5, 7, 0, 3, -4.0f, 4.0f);
  vnrt_attr sc = tu_attr_f("s", -1.75);
  vs_cpu(ctx, "scale bf16", VNRT_OP_SCALE, &x, 1, &sc, 1, 1, TOL_ELEM);
  vnrt_attr cl[2] = {tu_attr_f("min", -1.5), tu_attr_f("max", 0.25)};
  vs_cpu(ctx, "clamp both", VNRT_OP_CLAMP, &x, 1, cl, 2, 1, TOL_ELEM);
  vs_cpu(ctx, "clamp max only", VNRT_OP_CLAMP, &x, 1, cl + 1, 1, 1, TOL_ELEM);
  tu_tensor_free(&x);

  /* Broadcasting binary ops, in every float dtype. */
  const vnrt_op bin[4] = {VNRT_OP_ADD, VNRT_OP_SUB, VNRT_OP_MUL, VNRT_OP_DIV};
  for (int o = 0; o < 4; ++o) {
    for (int d = 0; d < 3; ++d) {
      tu_tensor ab[2] = {tu_rnd(kFloats[d], 4, 2, 1, 3, 5, 20 + o, -2.0f, 2.0f),
                         tu_rnd(kFloats[d], 3, 4, 1, 5, 0, 30 + o, 0.5f, 3.0f)};
      snprintf(what, sizeof what, "%s %s broadcast", vnrt_op_name(bin[o]),
               vnrt_dtype_name(kFloats[d]));
      vs_cpu(ctx, what, bin[o], ab, 2, NULL, 0, 1, TOL_ELEM);
      tu_free_all(ab, 2);
    }
  }
  tu_tensor same[2] = {tu_rnd(VNRT_F16, 2, 9, 33, 0, 0, 40, -3.0f, 3.0f),
                       tu_rnd(VNRT_F16, 2, 9, 33, 0, 0, 41, -3.0f, 3.0f)};
  vs_cpu(ctx, "add f16 same shape", VNRT_OP_ADD, same, 2, NULL, 0, 1, TOL_ELEM);
  vnrt_attr lim = tu_attr_f("limit", 1.25);
  vs_cpu(ctx, "swiglu f16 limit", VNRT_OP_SWIGLU, same, 2, &lim, 1, 1, TOL_ELEM);
  vs_cpu(ctx, "swiglu f16", VNRT_OP_SWIGLU, same, 2, NULL, 0, 1, TOL_ELEM);
  tu_free_all(same, 2);
}

static void ops_shape_and_cast(vnrt_context *ctx) {
  char what[128];
  for (int d = 0; d < 3; ++d) {
    tu_tensor x = tu_rnd(kFloats[d], 3, 3, 5, 7, 0, 50 + d, -4.0f, 4.0f);
    const int64_t shape[2] = {15, -1}, perm[3] = {2, 0, 1};
    vnrt_attr a = tu_attr_ints("shape", shape, 2);
    snprintf(what, sizeof what, "reshape %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_RESHAPE, &x, 1, &a, 1, 1, 0.0);
    a = tu_attr_ints("perm", perm, 3);
    snprintf(what, sizeof what, "transpose %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_TRANSPOSE, &x, 1, &a, 1, 1, 0.0);
    vnrt_attr sl[3] = {tu_attr_i("axis", -2), tu_attr_i("start", 1), tu_attr_i("len", 3)};
    snprintf(what, sizeof what, "slice %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_SLICE, &x, 1, sl, 3, 1, 0.0);
    tu_tensor ab[2] = {x, tu_rnd(kFloats[d], 3, 3, 2, 7, 0, 60 + d, -1.0f, 1.0f)};
    vnrt_attr ax = tu_attr_i("axis", 1);
    snprintf(what, sizeof what, "concat %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_CONCAT, ab, 2, &ax, 1, 1, 0.0);
    tu_tensor_free(&ab[1]);
    /* Casts between every pair, including to and from i32 (large magnitudes, NaN, Inf). */
    for (int e = 0; e < 4; ++e) {
      const char *names[4] = {"f32", "f16", "bf16", "i32"};
      vnrt_attr c = tu_attr_word("dtype", names[e]);
      snprintf(what, sizeof what, "cast %s -> %s", vnrt_dtype_name(kFloats[d]), names[e]);
      vs_cpu(ctx, what, VNRT_OP_CAST, &x, 1, &c, 1, 1, 0.0);
    }
    tu_tensor_free(&x);
  }
  tu_tensor big = tu_rnd(VNRT_F32, 1, 9, 0, 0, 0, 70, -1.0f, 1.0f);
  const double specials[9] = {3.0e9, -3.0e9, NAN, INFINITY, 65519.0, 65520.0, 1e-8, -2.5, 2.5};
  for (int i = 0; i < 9; ++i) tu_set(&big, i, specials[i]);
  for (int e = 0; e < 4; ++e) {
    const char *names[4] = {"f32", "f16", "bf16", "i32"};
    vnrt_attr c = tu_attr_word("dtype", names[e]);
    snprintf(what, sizeof what, "cast special f32 -> %s", names[e]);
    /* NaN stays NaN on both devices; compare bit patterns through the i32 view instead. */
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_CAST, &big, 1, &c, 1, 1);
    tu_tensor ref[1], got[1];
    TU_OK(ctx, tu_run(ctx, g, cpu_device(ctx), &big, 1, ref, 1));
    TU_OK(ctx, tu_run(ctx, g, vulkan_device(ctx), &big, 1, got, 1));
    size_t bytes = vnrt_tensor_type_bytes(&ref[0].type);
    ck_assert_msg(memcmp(ref[0].data, got[0].data, bytes) == 0, "%s: bits differ", what);
    tu_free_all(ref, 1);
    tu_free_all(got, 1);
    vnrt_graph_destroy(g);
  }
  tu_tensor_free(&big);
  const int32_t iv[8] = {0, 1, -7, 2049, 16777217, -2147483647 - 1, 2147483647, 65521};
  tu_tensor xi = tu_ints(1, 8, 0, iv);
  for (int e = 0; e < 3; ++e) {
    const char *names[3] = {"f32", "f16", "bf16"};
    vnrt_attr c = tu_attr_word("dtype", names[e]);
    vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_CAST, &xi, 1, &c, 1, 1);
    tu_tensor ref[1], got[1];
    TU_OK(ctx, tu_run(ctx, g, cpu_device(ctx), &xi, 1, ref, 1));
    TU_OK(ctx, tu_run(ctx, g, vulkan_device(ctx), &xi, 1, got, 1));
    ck_assert_msg(memcmp(ref[0].data, got[0].data, vnrt_tensor_type_bytes(&ref[0].type)) == 0,
                  "cast i32 -> %s: bits differ from the cpu", names[e]);
    tu_free_all(ref, 1);
    tu_free_all(got, 1);
    vnrt_graph_destroy(g);
  }
  tu_tensor_free(&xi);
  tu_tensor x2 = tu_rnd(VNRT_BF16, 2, 5, 24, 0, 0, 80, -1.0f, 1.0f);
  vnrt_attr n = tu_attr_i("n", 3);
  vs_cpu(ctx, "hc_expand bf16", VNRT_OP_HC_EXPAND, &x2, 1, &n, 1, 1, 0.0);
  tu_tensor_free(&x2);
}

static void ops_linalg(vnrt_context *ctx) {
  char what[128];
  /* Sizes that are not multiples of the 32x64x16 tiles, with broadcast batches. */
  tu_tensor mm[2] = {tu_rnd(VNRT_F32, 4, 2, 1, 37, 19, 90, -1.0f, 1.0f),
                     tu_rnd(VNRT_BF16, 3, 3, 19, 70, 0, 91, -1.0f, 1.0f)};
  vs_cpu(ctx, "matmul f32 x bf16 batched", VNRT_OP_MATMUL, mm, 2, NULL, 0, 1, TOL_GEMM);
  tu_free_all(mm, 2);
  tu_tensor mm2[2] = {tu_rnd(VNRT_F16, 2, 65, 40, 0, 0, 92, -1.0f, 1.0f),
                      tu_rnd(VNRT_F16, 2, 40, 3, 0, 0, 93, -1.0f, 1.0f)};
  vs_cpu(ctx, "matmul f16", VNRT_OP_MATMUL, mm2, 2, NULL, 0, 1, TOL_GEMM);
  tu_free_all(mm2, 2);
  for (int d = 0; d < 3; ++d) {
    tu_tensor lin[2] = {tu_rnd(VNRT_F32, 3, 2, 3, 100, 0, 94 + d, -1.0f, 1.0f),
                        tu_rnd(kFloats[d], 2, 130, 100, 0, 0, 97 + d, -0.5f, 0.5f)};
    snprintf(what, sizeof what, "linear f32 x %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_LINEAR, lin, 2, NULL, 0, 1, TOL_GEMM);
    tu_free_all(lin, 2);
  }
  tu_tensor lin1[2] = {tu_rnd(VNRT_BF16, 1, 200, 0, 0, 0, 100, -1.0f, 1.0f),
                       tu_rnd(VNRT_F16, 2, 7, 200, 0, 0, 101, -1.0f, 1.0f)};
  vs_cpu(ctx, "linear bf16 vector x f16", VNRT_OP_LINEAR, lin1, 2, NULL, 0, 1, TOL_GEMM);
  tu_free_all(lin1, 2);
  /* 4 rows: the largest product the matrix-vector kernel takes, with a ragged last group. */
  tu_tensor lin4[2] = {tu_rnd(VNRT_F16, 2, 4, 77, 0, 0, 102, -1.0f, 1.0f),
                       tu_rnd(VNRT_BF16, 2, 9, 77, 0, 0, 103, -1.0f, 1.0f)};
  vs_cpu(ctx, "linear 4 rows", VNRT_OP_LINEAR, lin4, 2, NULL, 0, 1, TOL_GEMM);
  tu_free_all(lin4, 2);

  for (int d = 0; d < 3; ++d) {
    tu_tensor rn[2] = {tu_rnd(kFloats[d], 3, 2, 3, 300, 0, 110 + d, -2.0f, 2.0f),
                       tu_rnd(VNRT_BF16, 1, 300, 0, 0, 0, 113 + d, 0.5f, 1.5f)};
    vnrt_attr eps = tu_attr_f("eps", 1e-5);
    snprintf(what, sizeof what, "rms_norm %s", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_RMS_NORM, rn, 2, &eps, 1, 1, TOL_ELEM);
    snprintf(what, sizeof what, "rms_norm %s unweighted", vnrt_dtype_name(kFloats[d]));
    vs_cpu(ctx, what, VNRT_OP_RMS_NORM, rn, 1, NULL, 0, 1, TOL_ELEM);
    for (int axis = -1; axis >= -3; --axis) {
      vnrt_attr ax = tu_attr_i("axis", axis);
      snprintf(what, sizeof what, "softmax %s axis %d", vnrt_dtype_name(kFloats[d]), axis);
      vs_cpu(ctx, what, VNRT_OP_SOFTMAX, rn, 1, &ax, 1, 1, TOL_ELEM);
    }
    tu_free_all(rn, 2);
  }
}

/* linear with act_quant = 128 on decode rows (M <= 4: quant.comp's fake_quant into the scratch,
 * then gemv.comp's product from it) at the rounding's edges. Block 0 of each row has
 * amax 447/256 (scale 2^-8: x = q / 256) and q at the rounding's edges: ties to even, a carry
 * into the exponent (15.5 -> 16), 447 -> 448, the subnormal quantum 2^-9 and its ties, -0;
 * block 1 is random. A value rounded otherwise moves the result far past the tolerance. */
static void act_quant_gemv(vnrt_context *ctx) {
  static const double edge[] = {447.0,       1.0625,       1.1875,    -2.125,    15.5,
                                -15.5,       3.5 / 512,    2.5 / 512, 0.5 / 512, -1.5 / 512,
                                7.9 / 512,   8.25 / 512,   -0.0,      239.0,     -0.4375,
                                100.0 / 3.0, 1.0 / 1024.0, 1.0e-3,    -447.0,    0.1};
  const int64_t K = 256, N = 48, nedge = (int64_t)(sizeof edge / sizeof edge[0]);
  for (int64_t M = 0; M <= 3; M += 1 + (M > 0)) { /* M = 0: one row of subnormal q */
    const int64_t xd[2] = {M ? M : 1, K}, wd[2] = {N, K}, sd[2] = {1, 2};
    tu_tensor in[3] = {tu_tensor_new(VNRT_F32, 2, xd), tu_tensor_new(VNRT_E4M3, 2, wd),
                       tu_tensor_new(VNRT_E8M0, 2, sd)};
    tu_fill_uniform(&in[0], 120 + (uint64_t)M, -3.0f, 3.0f);
    for (int64_t r = 0; r < M; ++r) {
      for (int64_t k = 0; k < 128; ++k) {
        double q = k < nedge ? edge[k] : (double)((k * 37 + r * 11) % 400) - 200.0;
        tu_set(&in[0], r * K + k, (r & 1 ? -q : q) / 256.0);
      }
    }
    /* M = 0: q = 447 at the start of each block (its weights are 0) and multiples of 2^-10
     * below 2^-6 elsewhere (half of them ties of the quantum 2^-9), so that the result is
     * made of the subnormal roundings alone. */
    for (int64_t k = 0; M == 0 && k < K; ++k) {
      double q = k % 128 == 0 ? 447.0 : (double)(k % 16) / 1024.0;
      tu_set(&in[0], k, (k & 32 ? -q : q) / 256.0);
    }
    uint8_t *w = in[1].data, *sc = in[2].data;
    for (int64_t i = 0; i < N * K; ++i) {
      uint8_t c = (uint8_t)(i * 37 + 11 + i / 7);
      w[i] = (c & 0x7f) == 0x7f ? (uint8_t)(c - 1) : c; /* no NaN codes */
      if (M == 0 && i % 128 == 0) w[i] = 0;
    }
    sc[0] = 126, sc[1] = 128;
    vnrt_attr aq = tu_attr_i("act_quant", 128);
    char what[96];
    snprintf(what, sizeof what, "linear e4m3 act_quant x[%lld, %lld] %s values",
             (long long)(M ? M : 1), (long long)K, M ? "edge" : "subnormal");
    vs_cpu(ctx, what, VNRT_OP_LINEAR, in, 3, &aq, 1, 1, 1e-12);
    tu_free_all(in, 3);
  }
}

/* Random codes (any byte: every e2m1 nibble is a value) and scales 2^(-7..7), every row's
 * differing from its neighbours'. */
static void fill_bytes(uint8_t *p, uint64_t n, uint64_t seed);
static void fill_fp4(tu_tensor *codes, tu_tensor *scale, uint64_t seed) {
  fill_bytes(codes->data, vnrt_tensor_type_bytes(&codes->type), seed);
  uint8_t *sc = scale->data;
  const int64_t n = tu_numel(scale), per_row = scale->type.dims[scale->type.rank - 1];
  for (int64_t i = 0; i < n; ++i) sc[i] = (uint8_t)(120 + (i * 5 + (i / per_row) * 3) % 15);
}

/* FP4 GEMVs whose rows hold 8 scales (256 codes, 1x32 blocks), so that gemv.comp reads two
 * rows' scales in one fetch (SC0 bit 7): a linear of 48 rows and moe_ffn's down projection
 * (F = 256, C = 64), against the CPU. Scales swapped between paired rows fail both. */
static void fp4_scale_pairs(vnrt_context *ctx) {
  const int64_t wd[2] = {48, 256}, sd[2] = {48, 8};
  tu_tensor lin[3] = {tu_rnd(VNRT_F32, 2, 1, 256, 0, 0, 150, -1.0f, 1.0f),
                      tu_tensor_new(VNRT_E2M1, 2, wd), tu_tensor_new(VNRT_E8M0, 2, sd)};
  fill_fp4(&lin[1], &lin[2], 151);
  vs_cpu(ctx, "linear e2m1 [48, 256]", VNRT_OP_LINEAR, lin, 3, NULL, 0, 1, TOL_GEMM);
  tu_free_all(lin, 3);
  const ffn_case fc = {1, 64, 256, 3, 2, 0.0, VNRT_F32, VNRT_F32, VNRT_E2M1, VNRT_E2M1};
  const int32_t ex[2] = {2, 0};
  tu_tensor moe[7];
  make_ffn_q_inputs(&fc, ex, 152, moe);
  fill_fp4(&moe[3], &moe[5], 154);
  fill_fp4(&moe[4], &moe[6], 155);
  vnrt_attr lim = tu_attr_f("limit", 7.0);
  vs_cpu(ctx, "moe_ffn e2m1 F = 256", VNRT_OP_MOE_FFN, moe, 7, &lim, 1, 1, TOL_GEMM);
  tu_free_all(moe, 7);
}

/* kv_scatter of one row (a decode step's; v4.comp OP 9) and of two (OP 7, 3, 4), exactly. */
static void kv_scatter_rows(vnrt_context *ctx) {
  const int32_t pos[4][2] = {{9, 0}, {-1, 0}, {0, 0}, {7, 7}};
  for (int c = 0; c < 4; ++c) {
    const int64_t n = c == 3 ? 2 : 1;
    tu_tensor in[3] = {tu_rnd(c == 2 ? VNRT_BF16 : VNRT_F32, 2, 6, 5, 0, 0, 130 + c, -1.0f, 1.0f),
                       tu_rnd(c == 2 ? VNRT_BF16 : VNRT_F32, 2, n, 5, 0, 0, 140 + c, 2.0f, 3.0f),
                       tu_ints(1, n, 0, pos[c])};
    vnrt_attr div = tu_attr_i("div", 2);
    char what[64];
    snprintf(what, sizeof what, "kv_scatter %lld row(s) at pos %d", (long long)n, pos[c][0]);
    vs_cpu(ctx, what, VNRT_OP_KV_SCATTER, in, 3, &div, 1, 1, 0.0);
    tu_free_all(in, 3);
  }
}

/* A chain of nodes, so that dispatches depend on earlier ones (read after write) and the
 * arena reuses memory (write after read): the barriers between them are what is tested. */
static void ops_chain(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {6, 48}}, tw = {VNRT_BF16, 2, {48, 48}};
  vnrt_value x, w, v[10];
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "w", &tw, 1, &w));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_RMS_NORM, &x, 1, NULL, 0, NULL, &v[0], 1));
  vnrt_value in2[2] = {v[0], w};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, in2, 2, NULL, 0, NULL, &v[1], 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SILU, &v[1], 1, NULL, 0, NULL, &v[2], 1));
  in2[0] = v[2], in2[1] = x;
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_MUL, in2, 2, NULL, 0, NULL, &v[3], 1));
  in2[0] = v[3], in2[1] = w;
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, in2, 2, NULL, 0, NULL, &v[4], 1));
  in2[0] = v[4], in2[1] = v[1];
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, in2, 2, NULL, 0, NULL, &v[5], 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SOFTMAX, &v[5], 1, NULL, 0, NULL, &v[6], 1));
  vnrt_attr k = tu_attr_i("k", 5);
  const char *names[2] = {"vals", "idx"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_TOPK, &v[6], 1, &k, 1, names, &v[7], 2));
  TU_OK(ctx, vnrt_graph_add_output(g, v[7]));
  TU_OK(ctx, vnrt_graph_add_output(g, v[8]));
  tu_tensor in[2] = {tu_rnd(VNRT_F32, 2, 6, 48, 0, 0, 600, -1.0f, 1.0f),
                     tu_rnd(VNRT_BF16, 2, 48, 48, 0, 0, 601, -0.3f, 0.3f)};
  tu_tensor ref[2], got[2];
  TU_OK(ctx, tu_run(ctx, g, cpu_device(ctx), in, 2, ref, 2));
  TU_OK(ctx, tu_run(ctx, g, vulkan_device(ctx), in, 2, got, 2));
  compare_outputs("chain", got, ref, 2, TOL_GEMM);
  tu_free_all(ref, 2);
  tu_free_all(got, 2);
  tu_free_all(in, 2);
  vnrt_graph_destroy(g);
}

/* ---- The register-blocked GEMM and the row-per-invocation norms against double ---------- */

/* Runs op on the Vulkan device and compares result 0 with ref (doubles, rounded to the
 * result's dtype first, so a 16-bit result is held to its own rounding). */
static void vs_double(vnrt_context *ctx, const char *what, vnrt_op op, const tu_tensor *in,
                      int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, const double *ref,
                      double tol) {
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, 1);
  tu_tensor got;
  vnrt_status s = tu_run(ctx, g, vulkan_device(ctx), in, n_in, &got, 1);
  ck_assert_msg(s == VNRT_OK, "%s on vulkan: %s: %s", what, vnrt_status_string(s),
                vnrt_context_last_error(ctx));
  int64_t n = tu_numel(&got);
  tu_tensor rounded = tu_tensor_new(got.type.dtype, got.type.rank, got.type.dims);
  double *r = malloc(sizeof(double) * (size_t)(n ? n : 1));
  ck_assert_ptr_nonnull(r);
  for (int64_t i = 0; i < n; ++i) {
    tu_set(&rounded, i, ref[i]);
    r[i] = tu_get(&rounded, i);
  }
  double e = tu_nmse(&got, r, n);
  ck_assert_msg(e <= tol, "%s: NMSE %.3g against the double reference > %.1g", what, e, tol);
  free(r);
  tu_tensor_free(&rounded);
  tu_tensor_free(&got);
  vnrt_graph_destroy(g);
}

/* C[z][m][n] = sum_k A[z][m][k] * B[z][k][n] in double; B is [N, K] when b_nk (linear). A is
 * [batch, M, K]; B has bbatch (1 or batch) matrices, broadcast when 1. */
static double *gemm_ref(const tu_tensor *a, const tu_tensor *b, int64_t batch, int64_t bbatch,
                        int64_t M, int64_t N, int64_t K, int b_nk) {
  int64_t total = batch * M * N;
  double *c = calloc((size_t)(total > 0 ? total : 1), sizeof(double));
  ck_assert_ptr_nonnull(c);
  for (int64_t z = 0; z < batch; ++z) {
    int64_t bz = bbatch == 1 ? 0 : z;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          int64_t bi = bz * K * N + (b_nk ? n * K + k : k * N + n);
          acc += tu_get(a, (z * M + m) * K + k) * tu_get(b, bi);
        }
        c[(z * M + m) * N + n] = acc;
      }
    }
  }
  return c;
}

static void gemm_tiles(vnrt_context *ctx) {
  /* linear x[M, K] . w[N, K]^T: M, N, K off the 16x8 tiles and the 4-wide vectors, K = 1,
   * a large K, columns across a whole workgroup's width, every weight dtype. */
  static const struct {
    int64_t M, N, K;
    vnrt_dtype x, w;
  } lin[] = {
      {17, 13, 5, VNRT_F32, VNRT_F32},     {33, 1030, 1, VNRT_F32, VNRT_F32},
      {20, 200, 4100, VNRT_F32, VNRT_F16}, {40, 70, 64, VNRT_F32, VNRT_BF16},
      {5, 9, 12, VNRT_F32, VNRT_F32},      {130, 24, 36, VNRT_F32, VNRT_F16},
      {23, 31, 40, VNRT_F16, VNRT_BF16},   {9, 17, 3, VNRT_BF16, VNRT_F32},
  };
  char what[160];
  for (size_t i = 0; i < sizeof lin / sizeof lin[0]; ++i) {
    tu_tensor in[2] = {tu_rnd(lin[i].x, 2, lin[i].M, lin[i].K, 0, 0, 300 + i, -1.0f, 1.0f),
                       tu_rnd(lin[i].w, 2, lin[i].N, lin[i].K, 0, 0, 320 + i, -1.0f, 1.0f)};
    double *ref = gemm_ref(&in[0], &in[1], 1, 1, lin[i].M, lin[i].N, lin[i].K, 1);
    snprintf(what, sizeof what, "linear tile x[%lld, %lld] %s . w[%lld] %s", (long long)lin[i].M,
             (long long)lin[i].K, vnrt_dtype_name(lin[i].x), (long long)lin[i].N,
             vnrt_dtype_name(lin[i].w));
    vs_double(ctx, what, VNRT_OP_LINEAR, in, 2, NULL, 0, ref, lin[i].x == VNRT_F32 ? 1e-9 : 1e-6);
    free(ref);
    tu_free_all(in, 2);
  }
  /* f16 weights, most of them subnormal (|w| < 2^-14): converted exactly, never flushed. */
  tu_tensor sub[2] = {tu_rnd(VNRT_F32, 2, 12, 16, 0, 0, 330, -1.0f, 1.0f),
                      tu_rnd(VNRT_F16, 2, 20, 16, 0, 0, 331, -1e-4f, 1e-4f)};
  double *sref = gemm_ref(&sub[0], &sub[1], 1, 1, 12, 20, 16, 1);
  vs_double(ctx, "linear tile, subnormal f16 weights", VNRT_OP_LINEAR, sub, 2, NULL, 0, sref, 1e-9);
  free(sref);
  tu_free_all(sub, 2);
  /* matmul a[M, K] @ b[K, N]: N a multiple of 4 (vec4 rows of b) and not, K = 1. */
  static const struct {
    int64_t M, N, K;
    vnrt_dtype b;
  } mm[] = {{19, 36, 28, VNRT_F16},
            {19, 37, 28, VNRT_F32},
            {70, 8, 1, VNRT_BF16},
            {6, 1028, 12, VNRT_F32}};
  for (size_t i = 0; i < sizeof mm / sizeof mm[0]; ++i) {
    tu_tensor in[2] = {tu_rnd(VNRT_F32, 2, mm[i].M, mm[i].K, 0, 0, 340 + i, -1.0f, 1.0f),
                       tu_rnd(mm[i].b, 2, mm[i].K, mm[i].N, 0, 0, 360 + i, -1.0f, 1.0f)};
    double *ref = gemm_ref(&in[0], &in[1], 1, 1, mm[i].M, mm[i].N, mm[i].K, 0);
    snprintf(what, sizeof what, "matmul tile [%lld, %lld] @ [%lld] %s", (long long)mm[i].M,
             (long long)mm[i].K, (long long)mm[i].N, vnrt_dtype_name(mm[i].b));
    vs_double(ctx, what, VNRT_OP_MATMUL, in, 2, NULL, 0, ref, 1e-9);
    free(ref);
    tu_free_all(in, 2);
  }
  /* A batch of 6 against one broadcast b. */
  tu_tensor bb[2] = {tu_rnd(VNRT_F32, 3, 6, 18, 8, 0, 380, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 2, 8, 12, 0, 0, 381, -1.0f, 1.0f)};
  double *ref = gemm_ref(&bb[0], &bb[1], 6, 1, 18, 12, 8, 0);
  vs_double(ctx, "matmul tile batched, b broadcast", VNRT_OP_MATMUL, bb, 2, NULL, 0, ref, 1e-9);
  free(ref);
  tu_free_all(bb, 2);
}

/* rms_norm over rows of len (contiguous) in double. */
static double *rms_ref(const tu_tensor *x, const tu_tensor *w, int64_t rows, int64_t len,
                       double eps) {
  double *y = malloc(sizeof(double) * (size_t)(rows * len));
  ck_assert_ptr_nonnull(y);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t a = 0; a < len; ++a) ss += tu_get(x, r * len + a) * tu_get(x, r * len + a);
    double inv = 1.0 / sqrt(ss / (double)len + eps);
    for (int64_t a = 0; a < len; ++a) {
      y[r * len + a] = tu_get(x, r * len + a) * inv * (w ? tu_get(w, a) : 1.0);
    }
  }
  return y;
}

/* softmax of x[outer, len, inner] along len in double. */
static double *softmax_ref(const tu_tensor *x, int64_t outer, int64_t len, int64_t inner) {
  double *y = malloc(sizeof(double) * (size_t)(outer * len * inner));
  ck_assert_ptr_nonnull(y);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      int64_t base = o * len * inner + i;
      double mx = -INFINITY, s = 0.0;
      for (int64_t a = 0; a < len; ++a) mx = fmax(mx, tu_get(x, base + a * inner));
      for (int64_t a = 0; a < len; ++a) s += exp(tu_get(x, base + a * inner) - mx);
      for (int64_t a = 0; a < len; ++a) {
        y[base + a * inner] = exp(tu_get(x, base + a * inner) - mx) / s;
      }
    }
  }
  return y;
}

static void norm_rows(vnrt_context *ctx) {
  /* Enough rows for one invocation per row on a CPU device; vec4 rows (len % 4 == 0) and
   * scalar ones, 16-bit results written as whole words, a row count off the workgroup. */
  static const struct {
    int64_t rows, len;
    vnrt_dtype x;
  } rn[] = {{40, 4100, VNRT_F32}, {37, 301, VNRT_F16}, {64, 64, VNRT_BF16}, {300, 12, VNRT_F16}};
  char what[128];
  for (size_t i = 0; i < sizeof rn / sizeof rn[0]; ++i) {
    tu_tensor in[2] = {tu_rnd(rn[i].x, 2, rn[i].rows, rn[i].len, 0, 0, 400 + i, -2.0f, 2.0f),
                       tu_rnd(VNRT_BF16, 1, rn[i].len, 0, 0, 0, 410 + i, 0.5f, 1.5f)};
    vnrt_attr eps = tu_attr_f("eps", 1e-5);
    double tol = rn[i].x == VNRT_F32 ? 1e-10 : 1e-6;
    double *ref = rms_ref(&in[0], &in[1], rn[i].rows, rn[i].len, (double)(float)1e-5);
    snprintf(what, sizeof what, "rms_norm rows [%lld, %lld] %s", (long long)rn[i].rows,
             (long long)rn[i].len, vnrt_dtype_name(rn[i].x));
    vs_double(ctx, what, VNRT_OP_RMS_NORM, in, 2, &eps, 1, ref, tol);
    free(ref);
    ref = softmax_ref(&in[0], rn[i].rows, rn[i].len, 1);
    snprintf(what, sizeof what, "softmax rows [%lld, %lld] %s", (long long)rn[i].rows,
             (long long)rn[i].len, vnrt_dtype_name(rn[i].x));
    vs_double(ctx, what, VNRT_OP_SOFTMAX, in, 1, NULL, 0, ref, tol);
    free(ref);
    tu_free_all(in, 2);
  }
  /* Values near zero and a large eps (mean(x²) well below it), so that where eps goes matters,
   * on the row-per-invocation path (>= 32 rows) and the workgroup one. */
  for (int64_t rows = 8; rows <= 40; rows += 32) {
    tu_tensor in[2] = {tu_rnd(VNRT_F32, 2, rows, 36, 0, 0, 415 + rows, -0.1f, 0.1f),
                       tu_rnd(VNRT_F32, 1, 36, 0, 0, 0, 416, 0.5f, 1.5f)};
    vnrt_attr eps = tu_attr_f("eps", 1e-2);
    double *ref = rms_ref(&in[0], &in[1], rows, 36, (double)(float)1e-2);
    snprintf(what, sizeof what, "rms_norm rows [%lld, 36] eps 1e-2, small values", (long long)rows);
    vs_double(ctx, what, VNRT_OP_RMS_NORM, in, 2, &eps, 1, ref, 1e-10);
    free(ref);
    tu_free_all(in, 2);
  }
  /* Masked logits: rows that start with a run of -inf (the online max must not form
   * -inf - -inf), in vec4 and scalar rows. */
  for (int64_t len = 36; len <= 37; ++len) {
    tu_tensor x = tu_rnd(VNRT_F32, 2, 48, len, 0, 0, 420 + len, -3.0f, 3.0f);
    for (int64_t r = 0; r < 48; r += 2) {
      for (int64_t a = 0; a < 1 + r % 9; ++a) tu_set(&x, r * len + a, -INFINITY);
    }
    double *ref = softmax_ref(&x, 48, len, 1);
    snprintf(what, sizeof what, "softmax rows with leading -inf, len %lld", (long long)len);
    vs_double(ctx, what, VNRT_OP_SOFTMAX, &x, 1, NULL, 0, ref, 1e-10);
    free(ref);
    tu_tensor_free(&x);
  }
  /* Along the first axis: 40 strided rows. */
  tu_tensor x = tu_rnd(VNRT_F32, 2, 50, 40, 0, 0, 430, -3.0f, 3.0f);
  vnrt_attr ax = tu_attr_i("axis", 0);
  double *ref = softmax_ref(&x, 1, 50, 40);
  vs_double(ctx, "softmax strided rows", VNRT_OP_SOFTMAX, &x, 1, &ax, 1, ref, 1e-10);
  free(ref);
  tu_tensor_free(&x);
}

/* attention in double (docs/ops.md): query t sits at kv - T + t (kv: kv_len or S), sees keys
 * in [qpos - window + 1, qpos] (causal) within [0, kv), logits scaled by 1/sqrt(D), a sink
 * adds exp(sink) to the denominator; a query that sees no key yields 0. */
static double *attention_ref(const tu_tensor *q, const tu_tensor *k, const tu_tensor *v,
                             const tu_tensor *sinks, int64_t kv, int causal, int64_t window) {
  int64_t T = q->type.dims[0], Hq = q->type.dims[1], D = q->type.dims[2];
  int64_t Hkv = k->type.dims[1], Dv = v->type.dims[2];
  double *out = calloc((size_t)(T * Hq * Dv), sizeof(double));
  double *p = malloc(sizeof(double) * (size_t)(kv > 0 ? kv : 1));
  ck_assert_ptr_nonnull(out);
  ck_assert_ptr_nonnull(p);
  for (int64_t t = 0; t < T; ++t) {
    int64_t qpos = kv - T + t, lo = 0, hi = kv - 1;
    if (causal && qpos < hi) hi = qpos;
    if (window > 0 && qpos - window + 1 > lo) lo = qpos - window + 1;
    for (int64_t h = 0; h < Hq; ++h) {
      if (lo > hi) continue;
      int64_t g = h / (Hq / Hkv);
      double m = sinks ? tu_get(sinks, h) : -INFINITY;
      for (int64_t s = lo; s <= hi; ++s) {
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) {
          dot += tu_get(q, (t * Hq + h) * D + d) * tu_get(k, (s * Hkv + g) * D + d);
        }
        p[s] = dot / sqrt((double)D);
        if (p[s] > m) m = p[s];
      }
      double l = sinks ? exp(tu_get(sinks, h) - m) : 0.0;
      for (int64_t s = lo; s <= hi; ++s) l += (p[s] = exp(p[s] - m));
      for (int64_t dv = 0; dv < Dv; ++dv) {
        double a = 0.0;
        for (int64_t s = lo; s <= hi; ++s) a += p[s] * tu_get(v, (s * Hkv + g) * Dv + dv);
        out[(t * Hq + h) * Dv + dv] = a / l;
      }
    }
  }
  free(p);
  return out;
}

/* attention's edge cases against double: MQA/GQA groups that are not a multiple of the 4-head
 * block, S not a multiple of the 4-key block, decode (T = 1) and prefill, causal and windowed,
 * sinks, kv_len (fewer rows than S, also 0: no key at all), f16/bf16 k and v. */
static void attention_cases(vnrt_context *ctx) {
  struct {
    int64_t T, S, Hq, Hkv, D, Dv;
    int causal, window, sinks, kv_len;
    vnrt_dtype kdt;
  } cases[] = {
      {1, 37, 6, 1, 16, 8, 1, 0, 0, -1, VNRT_F32}, {1, 130, 8, 2, 32, 12, 1, 0, 1, -1, VNRT_F32},
      {7, 7, 5, 5, 8, 16, 1, 0, 0, -1, VNRT_F32},  {6, 41, 4, 2, 12, 4, 1, 5, 1, -1, VNRT_F16},
      {3, 19, 9, 3, 8, 8, 0, 0, 1, -1, VNRT_BF16}, {1, 40, 6, 2, 16, 8, 1, 0, 1, 23, VNRT_F32},
      {2, 12, 3, 1, 8, 4, 1, 4, 0, 9, VNRT_F16},   {1, 16, 4, 1, 8, 8, 1, 0, 1, 0, VNRT_F32},
      {4, 9, 2, 1, 8, 8, 0, 2, 0, -1, VNRT_F32},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
    int32_t kvl[1] = {(int32_t)cases[c].kv_len};
    tu_tensor in[5] = {
        tu_rnd(VNRT_F32, 3, cases[c].T, cases[c].Hq, cases[c].D, 0, 400 + (int)c, -1.0f, 1.0f),
        tu_rnd(cases[c].kdt, 3, cases[c].S, cases[c].Hkv, cases[c].D, 0, 420 + (int)c, -1.5f, 1.5f),
        tu_rnd(cases[c].kdt, 3, cases[c].S, cases[c].Hkv, cases[c].Dv, 0, 440 + (int)c, -1.0f,
               1.0f),
        tu_rnd(VNRT_F32, 1, cases[c].Hq, 0, 0, 0, 460 + (int)c, -1.0f, 1.0f),
        tu_ints(1, 1, 0, kvl)};
    int64_t kv = cases[c].kv_len >= 0 ? cases[c].kv_len : cases[c].S;
    double *ref = attention_ref(&in[0], &in[1], &in[2], cases[c].sinks ? &in[3] : NULL, kv,
                                cases[c].causal, cases[c].window);
    vnrt_attr a[2] = {tu_attr_i("causal", cases[c].causal), tu_attr_i("window", cases[c].window)};
    char what[96];
    snprintf(what, sizeof what, "attention edge case %zu", c);
    if (cases[c].kv_len >= 0 && !cases[c].sinks) {
      /* kv_len needs the sinks slot: give sinks of -inf weight through a huge negative. */
      for (int64_t h = 0; h < cases[c].Hq; ++h) tu_set(&in[3], h, -1e30);
    }
    vs_double(ctx, what, VNRT_OP_ATTENTION, in, cases[c].kv_len >= 0 ? 5 : (cases[c].sinks ? 4 : 3),
              a, 2, ref, TOL_GEMM);
    free(ref);
    tu_free_all(in, 5);
  }
}

/* moe_ffn in double (docs/ops.md): y[t] = sum_i w[t,i] down_e(silu(g) u), g = gate_e x[t]
 * (clamped above at limit), u = up_e x[t] (clamped to [-limit, limit]) when limit > 0. */
static double *moe_ffn_ref(const tu_tensor *x, const tu_tensor *ex, const tu_tensor *w,
                           const tu_tensor *wgu, const tu_tensor *wd, double limit) {
  int64_t T = x->type.dims[0], C = x->type.dims[1], k = ex->type.dims[1];
  int64_t F = wgu->type.dims[1] / 2;
  double *y = calloc((size_t)(T * C), sizeof(double));
  double *h = malloc(sizeof(double) * (size_t)F);
  ck_assert_ptr_nonnull(y);
  ck_assert_ptr_nonnull(h);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < k; ++i) {
      int64_t e = (int64_t)tu_get(ex, t * k + i);
      for (int64_t f = 0; f < F; ++f) {
        double g = 0.0, u = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          g += tu_get(wgu, (e * 2 * F + f) * C + c) * tu_get(x, t * C + c);
          u += tu_get(wgu, (e * 2 * F + F + f) * C + c) * tu_get(x, t * C + c);
        }
        if (limit > 0.0) {
          g = g < limit ? g : limit;
          u = u < -limit ? -limit : (u > limit ? limit : u);
        }
        h[f] = g / (1.0 + exp(-g)) * u;
      }
      for (int64_t c = 0; c < C; ++c) {
        double a = 0.0;
        for (int64_t f = 0; f < F; ++f) a += tu_get(wd, (e * C + c) * F + f) * h[f];
        y[t * C + c] += tu_get(w, t * k + i) * a;
      }
    }
  }
  free(h);
  return y;
}

/* moe_ffn's cases against double: decode (T = 1) and a few tokens, experts repeated across
 * tokens, f16/bf16/f32 weights and x, the limit clamp, C and F off the eight-wide loads and
 * the 8-row blocks of the CPU passes, f16 weights in the subnormal range (their conversion
 * must be exact), a single expert. */
static void moe_ffn_cases(vnrt_context *ctx) {
  struct {
    int64_t T, C, F, E, k;
    vnrt_dtype xdt, wdt, ddt;
    double limit;
    float wlo;
  } cases[] = {
      {1, 64, 32, 8, 6, VNRT_F32, VNRT_F16, VNRT_F16, 0.0, 0.3f},
      {4, 40, 24, 5, 3, VNRT_F32, VNRT_BF16, VNRT_BF16, 0.4, 0.3f},
      {4, 37, 13, 3, 2, VNRT_F16, VNRT_F32, VNRT_F32, 0.0, 0.3f},
      {3, 42, 22, 4, 3, VNRT_BF16, VNRT_F16, VNRT_BF16, 0.3, 0.3f},
      {2, 20, 12, 6, 4, VNRT_F32, VNRT_F32, VNRT_F16, 0.25, 0.3f},
      {5, 8, 4, 1, 1, VNRT_F32, VNRT_F16, VNRT_F32, 0.0, 0.3f},
      {2, 32, 16, 3, 2, VNRT_F32, VNRT_F16, VNRT_F16, 0.0, 2e-4f},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
    int64_t T = cases[c].T, C = cases[c].C, F = cases[c].F, E = cases[c].E, k = cases[c].k;
    int32_t ex[64];
    ck_assert_int_le(T * k, 64);
    /* Token t's slot i: a pattern that repeats experts across tokens. */
    for (int64_t j = 0; j < T * k; ++j) ex[j] = (int32_t)(((j / k) * 2 + (j % k) * 3) % E);
    float wlo = cases[c].wlo;
    tu_tensor in[5] = {tu_rnd(cases[c].xdt, 2, T, C, 0, 0, 500 + (int)c, -1.0f, 1.0f),
                       tu_ints(2, T, k, ex),
                       tu_rnd(VNRT_F32, 2, T, k, 0, 0, 520 + (int)c, 0.1f, 1.0f),
                       tu_rnd(cases[c].wdt, 3, E, 2 * F, C, 0, 540 + (int)c, -wlo, wlo),
                       tu_rnd(cases[c].ddt, 3, E, C, F, 0, 560 + (int)c, -0.3f, 0.3f)};
    double *ref = moe_ffn_ref(&in[0], &in[1], &in[2], &in[3], &in[4], cases[c].limit);
    vnrt_attr lim = tu_attr_f("limit", cases[c].limit);
    char what[96];
    snprintf(what, sizeof what, "moe_ffn case %zu", c);
    vs_double(ctx, what, VNRT_OP_MOE_FFN, in, 5, &lim, 1, ref, TOL_GEMM);
    free(ref);
    tu_free_all(in, 5);
  }
}

/* The ops whose kernels differ between CPU-type devices and GPUs (vk_builder_cpu_kernels). */
static void kernel_variant_ops(vnrt_context *ctx) {
  ops_chain(ctx);
  ops_linalg(ctx);
  gemm_tiles(ctx);
  norm_rows(ctx);
  tu_sweep_index_rope_attention(ctx, vulkan_device(ctx));
  attention_cases(ctx);
  tu_sweep_mhc_moe(ctx, vulkan_device(ctx));
  moe_ffn_cases(ctx);
  act_quant_gemv(ctx);
  fp4_scale_pairs(ctx);
  kv_scatter_rows(ctx);
}

static void all_ops(vnrt_context *ctx) {
  kernel_variant_ops(ctx);
  ops_elementwise(ctx);
  ops_shape_and_cast(ctx);
  tu_sweep_engram(ctx, vulkan_device(ctx));
}

/* Every op, under the validation layer, in the given variant mode; the normal mode also
 * validates synchronization (a missing barrier is reported as a hazard). */
static void ops_under_validation(int baseline) {
  saved_env v = env_set("VNRT_VK_VALIDATION", baseline ? "1" : "sync");
  saved_env b = env_set("VNRT_VK_BASELINE", baseline ? "1" : NULL);
  log_capture cap;
  vnrt_context *ctx = capture_context(&cap);
  assert_layer_enabled(&cap);
  all_ops(ctx);
  env_restore(&b);
  env_restore(&v);
  destroy_silent(ctx, &cap);
}

START_TEST(test_ops_match_cpu_under_validation) { ops_under_validation(0); }
END_TEST

START_TEST(test_ops_match_cpu_baseline_under_validation) { ops_under_validation(1); }
END_TEST

/* On a CPU device (lavapipe) GEMMs, norms, attention and moe_ffn run kernels written for it;
 * the ones for GPUs (matvec.comp, the shared-memory tiles, a workgroup per row) are forced
 * here so that they stay covered, under the validation layer. */
START_TEST(test_gpu_kernels_match_under_validation) {
  saved_env v = env_set("VNRT_VK_VALIDATION", "1");
  saved_env k = env_set("VNRT_VK_CPU_KERNELS", "0");
  log_capture cap;
  vnrt_context *ctx = capture_context(&cap);
  assert_layer_enabled(&cap);
  kernel_variant_ops(ctx);
  env_restore(&k);
  env_restore(&v);
  destroy_silent(ctx, &cap);
}
END_TEST

/* ---- Device and capabilities ----------------------------------------------------------- */

START_TEST(test_device_listed_with_capabilities) {
  vnrt_context *ctx = tu_context();
  vnrt_device *dev = vulkan_device(ctx);
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_str_eq(info.backend, "vulkan");
  ck_assert_str_eq(info.spec, "vulkan:0");
  ck_assert_uint_gt(strlen(info.name), 0);
  ck_assert_uint_gt(strlen(info.driver), 0);

  /* Cross-check every reported field with the Vulkan API, for the device of the same name. */
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                           .apiVersion = VK_API_VERSION_1_1};
  VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                              .pApplicationInfo = &app};
  VkInstance inst;
  ck_assert_int_eq(vkCreateInstance(&ici, NULL, &inst), VK_SUCCESS);
  uint32_t n = 8;
  VkPhysicalDevice pds[8];
  vkEnumeratePhysicalDevices(inst, &n, pds);
  int found = 0;
  for (uint32_t i = 0; i < n && !found; ++i) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(pds[i], &p);
    if (strncmp(p.deviceName, info.name, sizeof info.name - 1) != 0) continue;
    found = 1;
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                    .pNext = &s16};
    vkGetPhysicalDeviceFeatures2(pds[i], &f2);
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &sg};
    vkGetPhysicalDeviceProperties2(pds[i], &p2);
    vnrt_device_type want_type =
        p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU            ? VNRT_DEVICE_TYPE_SOFTWARE
        : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU ? VNRT_DEVICE_TYPE_GPU_DISCRETE
        : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_OTHER        ? VNRT_DEVICE_TYPE_ACCELERATOR
                                                               : VNRT_DEVICE_TYPE_GPU_INTEGRATED;
    ck_assert_int_eq(info.type, want_type);
    ck_assert_uint_eq(info.max_buffer_bytes, p.limits.maxStorageBufferRange);
    ck_assert_uint_eq(info.max_workgroup_size, p.limits.maxComputeWorkGroupInvocations);
    ck_assert_uint_eq(info.shared_memory_bytes, p.limits.maxComputeSharedMemorySize);
    ck_assert_uint_eq(info.subgroup_size, sg.subgroupSize);
    ck_assert_int_eq(!!(info.caps & VNRT_CAP_F16_STORAGE), !!s16.storageBuffer16BitAccess);
    int arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    ck_assert_int_eq(!!(info.caps & VNRT_CAP_SUBGROUPS), arith);
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pds[i], &mp);
    uint64_t local = 0;
    for (uint32_t h = 0; h < mp.memoryHeapCount; ++h) {
      if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
        local += mp.memoryHeaps[h].size;
    }
    ck_assert_uint_eq(info.memory_bytes, local);
  }
  vkDestroyInstance(inst, NULL);
  ck_assert_msg(found, "no physical device named '%s'", info.name);
  /* Software devices are never the automatic choice while the cpu exists. */
  if (info.type == VNRT_DEVICE_TYPE_SOFTWARE) {
    saved_env e = env_set("VNRT_DEVICE", NULL);
    vnrt_device *best = NULL;
    TU_OK(ctx, vnrt_device_select(ctx, "auto", &best));
    ck_assert_str_eq(tu_device_spec(best), "cpu");
    env_restore(&e);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_absent_driver_gives_no_devices) {
  /* The loader reads these at vkCreateInstance: point them at nothing. */
  saved_env a = env_set("VK_ICD_FILENAMES", "/nonexistent/vnrt-no-driver.json");
  saved_env b = env_set("VK_DRIVER_FILES", "/nonexistent/vnrt-no-driver.json");
  saved_env c = env_set("VK_ADD_DRIVER_FILES", NULL);
  saved_env v = env_set("VNRT_VK_VALIDATION", "1");
  log_capture cap;
  vnrt_context *ctx = capture_context(&cap);
  env_restore(&v);
  env_restore(&c);
  env_restore(&b);
  env_restore(&a);
  ck_assert_int_eq(count_vulkan_devices(ctx), 0);
  const char *names[8];
  uint32_t nb = vnrt_backend_names(ctx, names, 8);
  for (uint32_t i = 0; i < nb && i < 8; ++i) ck_assert_str_ne(names[i], "vulkan");
  vnrt_device *d = NULL;
  ck_assert_int_eq(vnrt_device_select(ctx, "vulkan", &d), VNRT_ERROR_NOT_FOUND);
  ck_assert_msg(strstr(cap.text, "vulkan") != NULL, "the skip is not logged:\n%s", cap.text);
  /* The context still works. */
  tu_tensor x = tu_rnd(VNRT_F32, 1, 5, 0, 0, 0, 1, -1.0f, 1.0f);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_NEG, &x, 1, NULL, 0, 1);
  tu_tensor out[1];
  TU_OK(ctx, tu_run(ctx, g, cpu_device(ctx), &x, 1, out, 1));
  for (int i = 0; i < 5; ++i) ck_assert_double_eq(tu_get(&out[0], i), -tu_get(&x, i));
  tu_free_all(out, 1);
  vnrt_graph_destroy(g);
  tu_tensor_free(&x);
  vnrt_context_destroy(ctx);
  /* And a later context finds the driver again. */
  vnrt_context *ctx2 = tu_context();
  ck_assert_int_ge(count_vulkan_devices(ctx2), 1);
  vnrt_context_destroy(ctx2);
}
END_TEST

/* ---- Memory limits --------------------------------------------------------------------- */

START_TEST(test_allocation_beyond_heap_names_the_limit) {
  log_capture cap;
  vnrt_context *ctx = capture_context(&cap);
  /* 4 TiB of input: more than any heap. */
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 2, {1 << 20, 1 << 20}};
  vnrt_value x, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_NEG, &x, 1, NULL, 0, NULL, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_plan_create(ctx, g, vulkan_device(ctx), NULL, &plan);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_int_eq(s, VNRT_ERROR_OUT_OF_MEMORY);
  ck_assert_ptr_null(plan);
  ck_assert_msg(strstr(msg, "heap") != NULL && strstr(msg, "vulkan") != NULL,
                "the message does not name the heap: %s", msg);
  vnrt_graph_destroy(g);

  /* A tensor beyond maxStorageBufferRange (but within the heap) cannot be bound: the node is
   * declined with a note naming the limit, and runs on the CPU when fallback is allowed. */
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(vulkan_device(ctx), &info));
  int64_t n = (int64_t)(info.max_buffer_bytes / 4) + 64;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type small = {VNRT_F32, 2, {1, 64}};
  vnrt_value xs, big, back;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &small, 0, &xs));
  vnrt_attr en = tu_attr_i("n", n / 64);
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_HC_EXPAND, &xs, 1, &en, 1, NULL, &big, 1));
  vnrt_attr sl[3] = {tu_attr_i("axis", 1), tu_attr_i("start", n / 64 - 1), tu_attr_i("len", 1)};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SLICE, &big, 1, sl, 3, NULL, &back, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, back));
  vnrt_plan_desc strict = {.no_fallback = 1};
  cap.used = 0;
  cap.text[0] = '\0';
  s = vnrt_plan_create(ctx, g, vulkan_device(ctx), &strict, &plan);
  ck_assert_int_eq(s, VNRT_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(cap.text, "maxStorageBufferRange") != NULL,
                "no note names maxStorageBufferRange:\n%s", cap.text);
  TU_OK(ctx, vnrt_plan_create(ctx, g, vulkan_device(ctx), NULL, &plan));
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  TU_OK(ctx, vnrt_plan_get_info(plan, &pi));
  ck_assert_int_eq(pi.n_fallback_nodes, 2);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Run-time index errors ------------------------------------------------------------- */

static void expect_range_error(vnrt_context *ctx, vnrt_op op, const tu_tensor *in, int32_t n_in,
                               const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out,
                               const char *const *words) {
  vnrt_graph *g = tu_op_graph(ctx, op, in, n_in, attrs, n_attrs, n_out);
  tu_tensor out[4];
  vnrt_status s = tu_run(ctx, g, vulkan_device(ctx), in, n_in, out, n_out);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s == VNRT_ERROR_OUT_OF_RANGE, "%s: got %s: %s", vnrt_op_name(op),
                vnrt_status_string(s), msg);
  for (int i = 0; words[i]; ++i) {
    ck_assert_msg(strstr(msg, words[i]) != NULL, "'%s' missing from: %s", words[i], msg);
  }
  vnrt_graph_destroy(g);
}

START_TEST(test_index_errors_are_reported) {
  vnrt_context *ctx = tu_context();
  const int32_t bad_ids[3] = {1, 12, 0};
  tu_tensor emb[2] = {tu_rnd(VNRT_F32, 2, 5, 4, 0, 0, 1, -1.0f, 1.0f), tu_ints(1, 3, 0, bad_ids)};
  const char *const w1[] = {"embedding", "out0", "12", "[0, 5)", NULL};
  expect_range_error(ctx, VNRT_OP_EMBEDDING, emb, 2, NULL, 0, 1, w1);
  tu_set(&emb[1], 1, -2.0);
  const char *const w2[] = {"embedding", "-2", NULL};
  expect_range_error(ctx, VNRT_OP_EMBEDDING, emb, 2, NULL, 0, 1, w2);
  tu_free_all(emb, 2);

  const int32_t idx[4] = {0, 1, 2, 3}, offs[2] = {0, 5};
  tu_tensor lk[3] = {tu_rnd(VNRT_F32, 2, 7, 3, 0, 0, 2, -1.0f, 1.0f), tu_ints(2, 2, 2, idx),
                     tu_ints(1, 2, 0, offs)};
  const char *const w3[] = {"engram_lookup", "row", "8", "[0, 7)", NULL};
  expect_range_error(ctx, VNRT_OP_ENGRAM_LOOKUP, lk, 3, NULL, 0, 1, w3);
  tu_free_all(lk, 3);

  const int32_t ex[4] = {0, 1, 5, 2};
  tu_tensor ffn[5] = {tu_rnd(VNRT_F32, 2, 2, 8, 0, 0, 3, -1.0f, 1.0f), tu_ints(2, 2, 2, ex),
                      tu_rnd(VNRT_F32, 2, 2, 2, 0, 0, 4, 0.0f, 1.0f),
                      tu_rnd(VNRT_F32, 3, 3, 6, 8, 0, 5, -1.0f, 1.0f),
                      tu_rnd(VNRT_F32, 3, 3, 8, 3, 0, 6, -1.0f, 1.0f)};
  const char *const w4[] = {"moe_ffn", "expert id", "5", "[0, 3)", NULL};
  expect_range_error(ctx, VNRT_OP_MOE_FFN, ffn, 5, NULL, 0, 1, w4);
  tu_free_all(ffn, 5);

  const int32_t tok[2] = {1, 4}, tab[6] = {0, 1, 1, 2, 2, 0};
  tu_tensor hr[3] = {tu_rnd(VNRT_F32, 2, 2, 3, 0, 0, 7, -1.0f, 1.0f), tu_ints(1, 2, 0, tok),
                     tu_ints(2, 3, 2, tab)};
  vnrt_attr sc = tu_attr_word("score", "softmax");
  const char *const w5[] = {"moe_hash_route", "token id", "4", "[0, 3)", NULL};
  expect_range_error(ctx, VNRT_OP_MOE_HASH_ROUTE, hr, 3, &sc, 1, 2, w5);
  tu_free_all(hr, 3);

  /* kv_scatter of one row (v4.comp OP 9): 52 div 4 = row 13 of a cache of 7 rows. */
  const int32_t spos[1] = {52};
  tu_tensor ks[3] = {tu_rnd(VNRT_F32, 2, 7, 3, 0, 0, 11, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 2, 1, 3, 0, 0, 12, -1.0f, 1.0f), tu_ints(1, 1, 0, spos)};
  vnrt_attr div = tu_attr_i("div", 4);
  const char *const w9[] = {"kv_scatter", "13", "7", NULL};
  expect_range_error(ctx, VNRT_OP_KV_SCATTER, ks, 3, &div, 1, 1, w9);
  tu_free_all(ks, 3);

  const int32_t pos[1] = {5};
  tu_tensor kw[3] = {tu_rnd(VNRT_F32, 2, 6, 3, 0, 0, 9, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 2, 2, 3, 0, 0, 10, -1.0f, 1.0f), tu_ints(1, 1, 0, pos)};
  const char *const w6[] = {"kv_write", "rows [5, 7)", "[0, 6)", NULL};
  expect_range_error(ctx, VNRT_OP_KV_WRITE, kw, 3, NULL, 0, 1, w6);
  tu_free_all(kw, 3);
  const int32_t len[1] = {11};
  tu_tensor at[5] = {tu_rnd(VNRT_F32, 3, 1, 1, 4, 0, 11, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 3, 10, 1, 4, 0, 12, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 3, 10, 1, 4, 0, 13, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 1, 1, 0, 0, 0, 14, -1.0f, 1.0f), tu_ints(1, 1, 0, len)};
  const char *const w7[] = {"attention", "kv_len 11", "[0, 10]", NULL};
  expect_range_error(ctx, VNRT_OP_ATTENTION, at, 5, NULL, 0, 1, w7);
  tu_free_all(at, 5);

  /* A plan that failed runs again cleanly once its input is valid (the record is reset). */
  const int32_t ids[2] = {9, 1};
  tu_tensor e2[2] = {tu_rnd(VNRT_F32, 2, 10, 4, 0, 0, 8, -1.0f, 1.0f), tu_ints(1, 2, 0, ids)};
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_EMBEDDING, e2, 2, NULL, 0, 1);
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, vulkan_device(ctx), NULL, &plan));
  TU_OK(ctx, vnrt_plan_set_input(plan, "in0", e2[0].data, 160));
  const int32_t bad[2] = {10, 1};
  TU_OK(ctx, vnrt_plan_set_input(plan, "in1", bad, sizeof bad));
  ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_OUT_OF_RANGE);
  TU_OK(ctx, vnrt_plan_set_input(plan, "in1", ids, sizeof ids));
  TU_OK(ctx, vnrt_plan_run(plan));
  float got[8];
  TU_OK(ctx, vnrt_plan_read_output(plan, "out0", got, sizeof got));
  for (int i = 0; i < 4; ++i) {
    ck_assert_float_eq(got[i], ((float *)e2[0].data)[9 * 4 + i]);
    ck_assert_float_eq(got[4 + i], ((float *)e2[0].data)[1 * 4 + i]);
  }
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  tu_free_all(e2, 2);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Staging, mixed plans, cached command buffers -------------------------------------- */

START_TEST(test_staging_path_matches) {
  saved_env st = env_set("VNRT_VK_FORCE_STAGING", "1");
  vnrt_context *ctx = tu_context();
  env_restore(&st);
  /* 36 MB: several 8 MiB staging chunks each way, and more workgroups than fit in x. */
  tu_tensor ab[2] = {tu_rnd(VNRT_F32, 2, 2600, 3500, 0, 0, 300, -1.0f, 1.0f),
                     tu_rnd(VNRT_F32, 1, 3500, 0, 0, 0, 301, -1.0f, 1.0f)};
  vs_cpu(ctx, "add through staging", VNRT_OP_ADD, ab, 2, NULL, 0, 1, 0.0);
  tu_free_all(ab, 2);
  tu_tensor x = tu_rnd(VNRT_F16, 2, 3, 77, 0, 0, 302, -1.0f, 1.0f);
  vs_cpu(ctx, "gelu f16 through staging", VNRT_OP_GELU, &x, 1, NULL, 0, 1, TOL_ELEM);
  tu_tensor_free(&x);
  vnrt_context_destroy(ctx);
}
END_TEST

/* x -> linear -> logits[E = 2048] -> moe_route (beyond the Vulkan kernel's 1024 experts: runs
 * on the cpu) -> moe_ffn -> + x: three partitions, run twice with different inputs. */
#define MIX_T 3
#define MIX_C 8
START_TEST(test_mixed_plan_reruns) {
  vnrt_context *ctx = tu_context();
  const int64_t T = MIX_T, C = MIX_C, E = 2048, F = 4, k = 2;
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {T, C}}, tw = {VNRT_F32, 2, {E, C}};
  vnrt_tensor_type tgu = {VNRT_BF16, 3, {E, 2 * F, C}}, td = {VNRT_F16, 3, {E, C, F}};
  vnrt_value x, w, gu, dn, logits, route[2], y, out;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "w", &tw, 1, &w));
  TU_OK(ctx, vnrt_graph_add_input(g, "gu", &tgu, 1, &gu));
  TU_OK(ctx, vnrt_graph_add_input(g, "dn", &td, 1, &dn));
  vnrt_value lin_in[2] = {x, w};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, lin_in, 2, NULL, 0, NULL, &logits, 1));
  vnrt_attr ra[2] = {tu_attr_i("k", k), tu_attr_word("score", "softmax")};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_MOE_ROUTE, &logits, 1, ra, 2, NULL, route, 2));
  vnrt_value ffn_in[5] = {x, route[1], route[0], gu, dn};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_MOE_FFN, ffn_in, 5, NULL, 0, NULL, &y, 1));
  vnrt_value add_in[2] = {y, x};
  const char *out_name[1] = {"out"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, add_in, 2, NULL, 0, out_name, &out, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, out));

  tu_tensor pw = tu_rnd(VNRT_F32, 2, E, C, 0, 0, 400, -1.0f, 1.0f);
  tu_tensor pgu = tu_rnd(VNRT_BF16, 3, E, 2 * F, C, 0, 401, -0.5f, 0.5f);
  tu_tensor pdn = tu_rnd(VNRT_F16, 3, E, C, F, 0, 402, -0.5f, 0.5f);
  vnrt_plan *plans[2] = {NULL, NULL};
  TU_OK(ctx, vnrt_plan_create(ctx, g, vulkan_device(ctx), NULL, &plans[0]));
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu_device(ctx), NULL, &plans[1]));
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  TU_OK(ctx, vnrt_plan_get_info(plans[0], &pi));
  ck_assert_int_eq(pi.n_fallback_nodes, 1);
  ck_assert_int_eq(pi.n_partitions, 3);
  for (int p = 0; p < 2; ++p) {
    TU_OK(ctx, vnrt_plan_set_input(plans[p], "w", pw.data, vnrt_tensor_type_bytes(&pw.type)));
    TU_OK(ctx, vnrt_plan_set_input(plans[p], "gu", pgu.data, vnrt_tensor_type_bytes(&pgu.type)));
    TU_OK(ctx, vnrt_plan_set_input(plans[p], "dn", pdn.data, vnrt_tensor_type_bytes(&pdn.type)));
  }
  for (int round = 0; round < 3; ++round) {
    tu_tensor xv = tu_rnd(VNRT_F32, 2, T, C, 0, 0, 410 + round, -1.0f, 1.0f);
    float res[2][MIX_T * MIX_C];
    for (int p = 0; p < 2; ++p) {
      TU_OK(ctx, vnrt_plan_set_input(plans[p], "x", xv.data, sizeof(float) * T * C));
      TU_OK(ctx, vnrt_plan_run(plans[p]));
      TU_OK(ctx, vnrt_plan_read_output(plans[p], "out", res[p], sizeof res[p]));
    }
    double num = 0, den = 0;
    for (int i = 0; i < T * C; ++i) {
      num += ((double)res[0][i] - res[1][i]) * ((double)res[0][i] - res[1][i]);
      den += (double)res[1][i] * res[1][i];
    }
    ck_assert_msg(num <= TOL_GEMM * den, "round %d: NMSE %g", round, num / den);
    tu_tensor_free(&xv);
  }
  vnrt_plan_destroy(plans[0]);
  vnrt_plan_destroy(plans[1]);
  tu_tensor_free(&pw);
  tu_tensor_free(&pgu);
  tu_tensor_free(&pdn);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- The copy stream's queue (vk_copy.c) ----------------------------------------------- */

/* One copy-queue setting: VNRT_VK_COPY_QUEUE (NULL: unset) and VNRT_VK_FORCE_STAGING. */
typedef struct copyq_env {
  const char *copy_queue;
  int staging;
} copyq_env;

/* A context for the setting, under synchronization validation (which must stay silent). */
static vnrt_context *copyq_context(copyq_env e, log_capture *cap) {
  saved_env v = env_set("VNRT_VK_VALIDATION", "sync");
  saved_env q = env_set("VNRT_VK_COPY_QUEUE", e.copy_queue);
  saved_env st = env_set("VNRT_VK_FORCE_STAGING", e.staging ? "1" : NULL);
  vnrt_context *ctx = capture_context(cap);
  env_restore(&st);
  env_restore(&q);
  env_restore(&v);
  assert_layer_enabled(cap);
  return ctx;
}

/* The backend device behind vulkan:0, opened (opening logs the copy stream's choice). */
typedef struct vk_handle {
  const vnrt_backend_i *iface;
  vnrt_backend_device *bdev;
} vk_handle;

static vk_handle backend_device(vnrt_context *ctx) {
  vnrt_device *d = vulkan_device(ctx);
  vk_handle h = {d->backend->iface, NULL};
  TU_OK(ctx, vn_device_open(d, &h.bdev));
  return h;
}

/* The logged choice is the one the setting and the device's capabilities call for. */
static void check_copy_line(vnrt_context *ctx, copyq_env e, const log_capture *cap) {
  const char *line = cap->copy_line;
  ck_assert_msg(line[0], "no copy stream line logged; log:\n%s", cap->text);
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(vulkan_device(ctx), &info));
  int off = e.copy_queue && strcmp(e.copy_queue, "0") == 0;
  if (off || !(info.caps & VNRT_CAP_TIMELINE)) {
    ck_assert_msg(strstr(line, off ? "(VNRT_VK_COPY_QUEUE=0)" : "(no timeline semaphores)"), "%s",
                  line);
    if (e.staging)
      ck_assert_msg(strstr(line, "host thread staging through the compute queue"), "%s", line);
  } else if (e.copy_queue) {
    ck_assert_msg(strstr(line, "vulkan: copy stream: the compute queue itself (family ") == line &&
                      strstr(line, "VNRT_VK_COPY_QUEUE=shared), timeline semaphores"),
                  "%s", line);
  } else if (info.caps & VNRT_CAP_COPY_QUEUE) {
    ck_assert_msg(strstr(line, "vulkan: copy stream: dedicated transfer queue (family ") == line,
                  "%s", line);
  } else {
    ck_assert_msg(strstr(line, "vulkan: copy stream: second compute queue (family ") == line ||
                      strstr(line, "(one queue)"),
                  "%s", line);
  }
  /* Staged buffers are never described as mapped. */
  if (e.staging) ck_assert_msg(!strstr(line, "mapped"), "%s", line);
}

/* Deterministic bytes (xorshift), different for each seed. */
static void fill_bytes(uint8_t *p, uint64_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (uint8_t)(x >> 24);
  }
}

/* The first index where a and b differ, or -1. */
static int64_t first_difference(const uint8_t *a, const uint8_t *b, uint64_t n) {
  if (memcmp(a, b, (size_t)n) == 0) return -1;
  for (uint64_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return (int64_t)i;
  }
  return -1;
}

/* More than two 8 MiB staging chunks, and an odd size. */
#define COPYQ_BYTES ((19ull << 20) + 5)

/* Writes at odd offsets and sizes (across and straddling the staging chunks), and after each
 * reads the whole buffer and the range written, checking every byte against a host mirror. */
static void round_trips(vnrt_context *ctx, vk_handle h, int staged) {
  const uint64_t size = COPYQ_BYTES, chunk = 8ull << 20;
  vnrt_backend_buffer *buf = NULL;
  TU_OK(ctx, h.iface->buffer_alloc(h.bdev, size, &buf));
  /* Staged buffers are not mapped: the copies below really go through the copy queue. */
  if (staged) ck_assert_ptr_null(h.iface->buffer_host_ptr(h.bdev, buf));
  uint8_t *mirror = malloc(size), *src = malloc(size), *got = malloc(size);
  ck_assert(mirror && src && got);
  const uint64_t w[][2] = {
      {0, size},  {4093, size - 4093 - 11}, {chunk - 3, 7}, {2 * chunk + 1, 1}, {size - 1, 1},
      {12345, 0}, {1, 2 * chunk + 1}};
  for (int i = 0; i < (int)(sizeof w / sizeof w[0]); ++i) {
    fill_bytes(src, w[i][1], 1000 + (uint64_t)i);
    TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, w[i][0], src, w[i][1]));
    memcpy(mirror + w[i][0], src, (size_t)w[i][1]);
    const uint64_t r[][2] = {{0, size}, {w[i][0], w[i][1]}};
    for (int j = 0; j < 2; ++j) {
      memset(got, 0xA5, (size_t)r[j][1]);
      TU_OK(ctx, h.iface->buffer_read(h.bdev, buf, r[j][0], got, r[j][1]));
      int64_t d = first_difference(got, mirror + r[j][0], r[j][1]);
      ck_assert_msg(d < 0,
                    "after write %d of %llu bytes at %llu: reading %llu bytes at %llu, byte %lld "
                    "is %u, not %u",
                    i, (unsigned long long)w[i][1], (unsigned long long)w[i][0],
                    (unsigned long long)r[j][1], (unsigned long long)r[j][0], (long long)d,
                    got[d < 0 ? 0 : d], mirror[r[j][0] + (uint64_t)(d < 0 ? 0 : d)]);
    }
  }
  ck_assert_int_eq(h.iface->buffer_write(h.bdev, buf, size - 1, src, 2),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(h.iface->buffer_read(h.bdev, buf, size + 1, got, 0),
                   VNRT_ERROR_INVALID_ARGUMENT);
  h.iface->buffer_free(h.bdev, buf);
  free(mirror), free(src), free(got);
}

static const copyq_env kCopyqEnvs[] = {{"shared", 1}, {"0", 1}, {NULL, 1}, {"shared", 0}};

START_TEST(test_copy_queue_round_trips_large_buffers) {
  copyq_env e = kCopyqEnvs[_i];
  log_capture cap;
  vnrt_context *ctx = copyq_context(e, &cap);
  vk_handle h = backend_device(ctx);
  check_copy_line(ctx, e, &cap);
  round_trips(ctx, h, e.staging);
  destroy_silent(ctx, &cap);
}
END_TEST

/* A second thread's round trips through the same device, while the test thread runs a plan. */
typedef struct copier {
  vk_handle h;
  vnrt_backend_buffer *buf;
  _Atomic int stop, rounds, bad; /* msg is written before bad is set */
  char msg[256];
} copier;

static void *copier_main(void *arg) {
  copier *c = arg;
  const uint64_t size = COPYQ_BYTES;
  uint8_t *src = malloc(size), *got = malloc(size);
  if (!src || !got) {
    snprintf(c->msg, sizeof c->msg, "out of memory");
    atomic_store(&c->bad, 1);
  }
  for (int r = 0; !atomic_load(&c->bad) && (r < 2 || !atomic_load(&c->stop)); ++r) {
    uint64_t off = (uint64_t)r * 997 % 4096, len = size - off - (uint64_t)(r % 7);
    fill_bytes(src, len, 5000 + (uint64_t)r);
    vnrt_status s = c->h.iface->buffer_write(c->h.bdev, c->buf, off, src, len);
    if (s == VNRT_OK) s = c->h.iface->buffer_read(c->h.bdev, c->buf, off, got, len);
    int64_t d = s == VNRT_OK ? first_difference(got, src, len) : -1;
    if (s != VNRT_OK || d >= 0) {
      snprintf(c->msg, sizeof c->msg, "round %d: %s, first differing byte %lld", r,
               vnrt_status_string(s), (long long)d);
      atomic_store(&c->bad, 1);
    }
    atomic_store(&c->rounds, r + 1);
  }
  free(src), free(got);
  return NULL;
}

#define IL_T 16
#define IL_K 384
#define IL_N 256
START_TEST(test_copy_queue_writes_interleave_with_runs) {
  copyq_env e = kCopyqEnvs[_i];
  log_capture cap;
  vnrt_context *ctx = copyq_context(e, &cap);
  vk_handle h = backend_device(ctx);
  /* y = tanh(x·wᵀ): the plan's input and output go through staged copies too. */
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {IL_T, IL_K}}, tw = {VNRT_F32, 2, {IL_N, IL_K}};
  vnrt_value x, w, lin, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "w", &tw, 1, &w));
  vnrt_value in[2] = {x, w};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, in, 2, NULL, 0, NULL, &lin, 1));
  const char *yn[1] = {"y"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_TANH, &lin, 1, NULL, 0, yn, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  vnrt_plan_desc pd = {.no_fallback = 1};
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, vulkan_device(ctx), &pd, &plan));
  tu_tensor pw = tu_rnd(VNRT_F32, 2, IL_N, IL_K, 0, 0, 600, -0.1f, 0.1f);
  TU_OK(ctx, vnrt_plan_set_input(plan, "w", pw.data, sizeof(float) * IL_N * IL_K));

  copier c = {.h = h};
  TU_OK(ctx, h.iface->buffer_alloc(h.bdev, COPYQ_BYTES, &c.buf));
  pthread_t thread;
  ck_assert_int_eq(pthread_create(&thread, NULL, copier_main, &c), 0);
  static float got[IL_T * IL_N];
  int runs = 0;
  double worst = 0;
  for (; runs < 200 && (runs < 6 || atomic_load(&c.rounds) < 2) && !atomic_load(&c.bad); ++runs) {
    tu_tensor xv = tu_rnd(VNRT_F32, 2, IL_T, IL_K, 0, 0, 610 + (uint64_t)runs, -1.0f, 1.0f);
    TU_OK(ctx, vnrt_plan_set_input(plan, "x", xv.data, sizeof(float) * IL_T * IL_K));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "y", got, sizeof got));
    const float *xd = xv.data, *wd = pw.data;
    for (int t = 0; t < IL_T; ++t) {
      for (int n = 0; n < IL_N; ++n) {
        double acc = 0;
        for (int k = 0; k < IL_K; ++k) acc += (double)xd[t * IL_K + k] * wd[n * IL_K + k];
        double err = fabs(got[t * IL_N + n] - tanh(acc));
        if (err > worst) worst = err;
      }
    }
    tu_tensor_free(&xv);
  }
  atomic_store(&c.stop, 1);
  ck_assert_int_eq(pthread_join(thread, NULL), 0);
  ck_assert_msg(!atomic_load(&c.bad), "the copying thread: %s", c.msg);
  ck_assert_msg(worst < 1e-5, "largest error against the double reference: %g", worst);
  ck_assert_int_ge(runs, 6);
  ck_assert_int_ge(atomic_load(&c.rounds), 2);
  h.iface->buffer_free(h.bdev, c.buf);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  tu_tensor_free(&pw);
  destroy_silent(ctx, &cap);
}
END_TEST

/* A value VNRT_VK_COPY_QUEUE does not know is named in a warning; the choice is by capability. */
START_TEST(test_copy_queue_unknown_setting_warns) {
  saved_env q = env_set("VNRT_VK_COPY_QUEUE", "sideways");
  log_capture cap;
  vnrt_context *ctx = capture_context(&cap);
  env_restore(&q);
  vulkan_device(ctx);
  vk_handle h = backend_device(ctx);
  (void)h;
  ck_assert_msg(strstr(cap.text, "VNRT_VK_COPY_QUEUE='sideways' is not 0, 1, auto or shared"), "%s",
                cap.text);
  ck_assert_msg(cap.copy_line[0] && !strstr(cap.copy_line, "VNRT_VK_COPY_QUEUE="), "%s",
                cap.copy_line);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- gemv.comp's e4m3 products without the NaN test (vk_clean.c) ---------------------- */

/* Counts the lines "vulkan: A of B e4m3 GEMVs run without the NaN test ..." with that A, B. */
static int count_clean_lines(const log_capture *cap, int a, int b) {
  char want[96];
  snprintf(want, sizeof want, "vulkan: %d of %d e4m3 GEMVs run without the NaN test", a, b);
  int n = 0;
  for (const char *p = cap->text; (p = strstr(p, want)) != NULL; p += strlen(want)) ++n;
  return n;
}

/* A backend graph of n_nodes nodes over n tensors, fast kernels. */
static vnrt_backend_graph nodes_graph(int32_t n, vnrt_backend_tensor *t, int32_t n_nodes,
                                      vnrt_backend_node *nodes) {
  return (vnrt_backend_graph){n,
                              t,
                              n_nodes,
                              nodes,
                              VNRT_KERNELS_FAST,
                              sizeof(vnrt_backend_graph),
                              sizeof(vnrt_backend_tensor),
                              sizeof(vnrt_backend_node)};
}

static vnrt_backend_graph one_node_graph(int32_t n, vnrt_backend_tensor *t,
                                         vnrt_backend_node *node) {
  return nodes_graph(n, t, 1, node);
}

enum { GN_K = 64, GN_N = 40, GN_X = 0, GN_W = 4096, GN_S = 8192, GN_Y = 12288, GN_BYTES = 16384 };
enum { GN_Y1 = GN_Y + 1024 }; /* the second y of compile_e4m3_linears */

/* y = linear(x, w, s) through the backend table, x f32[1, 64], w e4m3[40, 64] with 8x32 blocks,
 * all in buf: a decode-sized e4m3 GEMV (gemv.comp on a CPU device). */
/* compile_e4m3_linear with n_nodes (1 or 2) such linears of the same x, w and s, node i
 * writing its y at GN_Y or GN_Y1 ("y", or "y0" and "y1"): with two, two dispatches with a
 * NaN-free variant, run as two ranges. */
static vnrt_backend_exec *compile_e4m3_linears(vnrt_context *ctx, vk_handle h,
                                               vnrt_backend_buffer *buf, int32_t n_nodes) {
  static vnrt_backend_tensor t[5];
  static vnrt_backend_node nodes[2];
  static vnrt_op_params params;
  static const char *const names[2][2] = {{"y", ""}, {"y0", "y1"}};
  t[0] = (vnrt_backend_tensor){{VNRT_F32, 2, {1, GN_K}}, "x", buf, GN_X};
  t[1] = (vnrt_backend_tensor){{VNRT_E4M3, 2, {GN_N, GN_K}}, "w", buf, GN_W};
  t[2] = (vnrt_backend_tensor){{VNRT_E8M0, 2, {GN_N / 8, GN_K / 32}}, "s", buf, GN_S};
  memset(&params, 0, sizeof params);
  params.linear.w = (vnrt_quant_weight){VNRT_E4M3, {8, 32}, 2};
  for (int32_t i = 0; i < n_nodes; ++i) {
    const char *name = names[n_nodes - 1][i];
    t[3 + i] = (vnrt_backend_tensor){{VNRT_F32, 2, {1, GN_N}}, name, buf, i ? GN_Y1 : GN_Y};
    memset(&nodes[i], 0, sizeof nodes[i]);
    nodes[i].op = VNRT_OP_LINEAR;
    nodes[i].name = name;
    nodes[i].n_inputs = 3;
    nodes[i].inputs[0] = 0, nodes[i].inputs[1] = 1, nodes[i].inputs[2] = 2;
    nodes[i].n_outputs = 1;
    nodes[i].outputs[0] = 3 + i;
    nodes[i].params = &params;
  }
  static vnrt_backend_graph g;
  g = nodes_graph(3 + n_nodes, t, n_nodes, nodes);
  ck_assert_msg(h.iface->supports_node(h.bdev, &g, 0), "linear e4m3 not supported");
  vnrt_backend_exec *exec = NULL;
  TU_OK(ctx, h.iface->compile(h.bdev, &g, &exec));
  return exec;
}

static vnrt_backend_exec *compile_e4m3_linear(vnrt_context *ctx, vk_handle h,
                                              vnrt_backend_buffer *buf) {
  return compile_e4m3_linears(ctx, h, buf, 1);
}

/* A second graph, v = neg(u) for u f32[4] at GN_NEG, v written over w's first 16 codes. */
enum { GN_NEG = 10240 };
static vnrt_backend_exec *compile_neg_over_w(vnrt_context *ctx, vk_handle h,
                                             vnrt_backend_buffer *buf) {
  static vnrt_backend_tensor t[2];
  static vnrt_backend_node node;
  static vnrt_op_params params;
  t[0] = (vnrt_backend_tensor){{VNRT_F32, 1, {4}}, "u", buf, GN_NEG};
  t[1] = (vnrt_backend_tensor){{VNRT_F32, 1, {4}}, "v", buf, GN_W};
  memset(&params, 0, sizeof params);
  memset(&node, 0, sizeof node);
  node.op = VNRT_OP_NEG;
  node.name = "v";
  node.n_inputs = 1;
  node.n_outputs = 1;
  node.outputs[0] = 1;
  node.params = &params;
  static vnrt_backend_graph g;
  g = one_node_graph(2, t, &node);
  vnrt_backend_exec *exec = NULL;
  TU_OK(ctx, h.iface->compile(h.bdev, &g, &exec));
  return exec;
}

static void run_e4m3_linear(vnrt_context *ctx, vk_handle h, vnrt_backend_exec *exec,
                            vnrt_backend_buffer *buf, float y[GN_N]) {
  TU_OK(ctx, h.iface->run(exec, 0, 1));
  TU_OK(ctx, h.iface->buffer_read(h.bdev, buf, GN_Y, y, sizeof(float) * GN_N));
}

/* y against want bit for bit, but row nan_row (>= 0), which must be NaN. */
static void check_rows(const char *what, const float *y, const float *want, int nan_row) {
  for (int n = 0; n < GN_N; ++n) {
    if (n == nan_row) {
      ck_assert_msg(isnan(y[n]), "%s: y[%d] = %g, not NaN (a NaN code in its row)", what, n,
                    (double)y[n]);
    } else {
      ck_assert_msg(memcmp(&y[n], &want[n], sizeof *y) == 0, "%s: y[%d] = %.9g, not %.9g", what, n,
                    (double)y[n], (double)want[n]);
    }
  }
}

/* e4m3 codes of every value but the NaNs (0x7F, 0xFF), varied by seed. */
static void nan_free_codes(uint8_t *w, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t c = (uint8_t)((uint64_t)i * 73 + 5 + (uint64_t)i / 11 + seed * 29);
    w[i] = (c & 0x7f) == 0x7f ? (uint8_t)(c - 1) : c;
  }
}

/* The e4m3 GEMV tests' inputs, written to buf: x[k] = ((k·a mod m) − m/2)/8, NaN-free codes of
 * `seed` (nan_free_codes), scale codes s0 + i (mod sm when sm > 0). */
static void write_gn_inputs(vnrt_context *ctx, vk_handle h, vnrt_backend_buffer *buf, int a, int m,
                            uint64_t seed, int s0, int sm, float *x, uint8_t *w, uint8_t *sc) {
  const int n_sc = (GN_N / 8) * (GN_K / 32);
  for (int k = 0; k < GN_K; ++k) x[k] = (float)((k * a % m) - m / 2) / 8.0f;
  nan_free_codes(w, GN_N * GN_K, seed);
  for (int i = 0; i < n_sc; ++i) sc[i] = (uint8_t)(s0 + (sm > 0 ? i % sm : i));
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_X, x, sizeof(float) * GN_K));
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_W, w, (size_t)GN_N * GN_K));
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_S, sc, (size_t)n_sc));
}

/* Whether gemv.comp runs (and so the NaN-free choice is made): CPU devices, unless
 * VNRT_VK_CPU_KERNELS=0. */
static int gemv_runs(vnrt_context *ctx) {
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(vulkan_device(ctx), &info));
  const char *ck = getenv("VNRT_VK_CPU_KERNELS");
  return (info.type == VNRT_DEVICE_TYPE_CPU || info.type == VNRT_DEVICE_TYPE_SOFTWARE) &&
         !(ck && strcmp(ck, "0") == 0);
}

/* A weight written with no NaN code runs without the NaN test, bit for bit as with it; a NaN
 * code written into it (even one byte, or by another graph's kernel), or its buffer's host
 * address handed out, brings the test back and the row's result is NaN; writing the codes back
 * clean drops it again (but after the host address). */
START_TEST(test_gemv_nan_test_only_for_weights_not_known_clean) {
  log_capture cap;
  /* Under synchronization validation: dropping and recording the command buffers again when
   * the choice changes must stay silent. */
  saved_env val = env_set("VNRT_VK_VALIDATION", "sync");
  vnrt_context *ctx = capture_context(&cap);
  env_restore(&val);
  int gemv = gemv_runs(ctx);
  vk_handle h = backend_device(ctx);
  vnrt_backend_buffer *buf = NULL;
  TU_OK(ctx, h.iface->buffer_alloc(h.bdev, GN_BYTES, &buf));
  float x[GN_K];
  uint8_t w[GN_N * GN_K], sc[(GN_N / 8) * (GN_K / 32)];
  write_gn_inputs(ctx, h, buf, 37, 29, 0, 120, 0, x, w, sc); /* scale code 127 among them */
  vnrt_backend_exec *exec = compile_e4m3_linear(ctx, h, buf);

  /* The reference, in double (exact codecs; the sums are f32's, so a tolerance). */
  float y[GN_N], clean[GN_N];
  run_e4m3_linear(ctx, h, exec, buf, clean);
  for (int n = 0; n < GN_N; ++n) {
    double want = 0.0, mag = 0.0;
    for (int k = 0; k < GN_K; ++k) {
      double v = (double)vnrt_e4m3_to_f32(w[n * GN_K + k]) *
                 (double)vnrt_e8m0_to_f32(sc[(n / 8) * (GN_K / 32) + k / 32]) * (double)x[k];
      want += v, mag += fabs(v);
    }
    ck_assert_msg(fabs((double)clean[n] - want) <= 1e-6 * mag + 1e-30, "y[%d] = %.9g, want %.9g", n,
                  (double)clean[n], want);
  }
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 1, 1), 1);

  /* One NaN code, written alone. */
  const int row = 5, at = row * GN_K + 3;
  const uint8_t nan_code = 0xFF;
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_W + at, &nan_code, 1));
  run_e4m3_linear(ctx, h, exec, buf, y);
  check_rows("a NaN code written", y, clean, row);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 0, 1), 1);
  /* The code written back: clean again, the same bits. */
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_W + at, &w[at], 1));
  run_e4m3_linear(ctx, h, exec, buf, y);
  check_rows("the code written back", y, clean, -1);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 1, 1), 2);

  /* Another graph's kernel writes over row 0's first codes: -(-FLT_MAX) is bytes FF FF 7F 7F,
   * NaN codes. */
  const float u[4] = {-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX};
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_NEG, u, sizeof u));
  vnrt_backend_exec *neg = compile_neg_over_w(ctx, h, buf);
  TU_OK(ctx, h.iface->run(neg, 0, 1));
  h.iface->exec_destroy(neg);
  run_e4m3_linear(ctx, h, exec, buf, y);
  check_rows("a kernel's NaN codes", y, clean, 0);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 0, 1), 2);
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_W, w, sizeof w));
  run_e4m3_linear(ctx, h, exec, buf, y);
  check_rows("written back after the kernel", y, clean, -1);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 1, 1), 3);

  /* x, the bytes up to w and w in one write of two of the scan's 4 KiB blocks (the scales stay
   * out: 127 among them is a 0x7F byte), a NaN code deep in the second block, then the same
   * bytes with the code clean. */
  static uint8_t image[GN_S];
  memset(image, 0, sizeof image);
  memcpy(image + GN_X, x, sizeof x);
  memcpy(image + GN_W, w, sizeof w);
  const int row2 = 37, at2 = row2 * GN_K + 13;
  image[GN_W + at2] = 0x7F;
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, 0, image, sizeof image));
  run_e4m3_linear(ctx, h, exec, buf, y);
  check_rows("a NaN code in a two-block write", y, clean, row2);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 0, 1), 3);
  image[GN_W + at2] = w[at2];
  TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, 0, image, sizeof image));
  run_e4m3_linear(ctx, h, exec, buf, y);
  check_rows("a clean two-block write", y, clean, -1);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 1, 1), 4);

  /* Through the copy stream (buffer_write_async, waited on): a NaN code is seen there too. That
   * is the graph's 8th change of choice (VK_MAX_SWITCHES), so the clean codes written back
   * after it keep the tested pipeline: the same bits, and no new "1 of 1" line. */
  vnrt_backend_timeline *tl = NULL;
  /* (Timelines need a copy queue: test_vulkan_copyq's VNRT_VK_COPY_QUEUE=shared on lavapipe.) */
  if (h.iface->buffer_write_async && h.iface->timeline_create &&
      h.iface->timeline_create(h.bdev, &tl) == VNRT_OK) {
    for (int pass = 0; pass < 2; ++pass) {
      const uint8_t code = pass == 0 ? 0xFF : w[at2];
      vnrt_backend_sync sync = {.signal = tl, .signal_value = (uint64_t)pass + 1};
      TU_OK(ctx, h.iface->buffer_write_async(h.bdev, buf, GN_W + at2, &code, 1, &sync));
      TU_OK(ctx, h.iface->timeline_wait(h.bdev, tl, (uint64_t)pass + 1, UINT64_C(10000000000)));
      run_e4m3_linear(ctx, h, exec, buf, y);
      check_rows(pass == 0 ? "a NaN code written async" : "written back async past the limit", y,
                 clean, pass == 0 ? row2 : -1);
      if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 0, 1), 4);
      if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 1, 1), 4);
    }
    h.iface->timeline_destroy(h.bdev, tl);
  }

  /* Through the host address, where there is one. Not handed out while a compiled graph may
   * read the buffer without the test (the caller copies instead); once the graph is gone it
   * is, and writes there are not seen, so the test stays from then on, in a graph compiled
   * again (which gives the same bits on clean codes). */
  if (gemv && h.iface->buffer_host_ptr) {
    ck_assert_ptr_null(h.iface->buffer_host_ptr(h.bdev, buf));
  }
  h.iface->exec_destroy(exec);
  uint8_t *p = h.iface->buffer_host_ptr ? h.iface->buffer_host_ptr(h.bdev, buf) : NULL;
  exec = compile_e4m3_linear(ctx, h, buf);
  /* The new graph takes the tested pipeline from its first run: no line of a change. */
  const int lines0 = count_clean_lines(&cap, 0, 1), lines1 = count_clean_lines(&cap, 1, 1);
  if (p) {
    p[GN_W + at] = 0x7F;
    run_e4m3_linear(ctx, h, exec, buf, y);
    check_rows("a NaN code through the host address", y, clean, row);
    p[GN_W + at] = w[at];
    run_e4m3_linear(ctx, h, exec, buf, y);
    check_rows("the code back through the host address", y, clean, -1);
    TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_W, w, sizeof w));
    run_e4m3_linear(ctx, h, exec, buf, y);
    check_rows("rewritten after the host address", y, clean, -1);
    ck_assert_int_eq(count_clean_lines(&cap, 0, 1), lines0);
    ck_assert_int_eq(count_clean_lines(&cap, 1, 1), lines1);
  }
  h.iface->exec_destroy(exec);
  h.iface->buffer_free(h.bdev, buf);
  assert_layer_enabled(&cap);
  destroy_silent(ctx, &cap);
}
END_TEST

/* ---- The NaN-free choice under async runs, threads, moe_ffn/grouped_linear, fallback ------- */

/* A capturing context at info level (the choice's lines; debug would fill the capture), under
 * synchronization validation when sync_val. */
static vnrt_context *clean_context(log_capture *cap, int sync_val) {
  saved_env val = env_set("VNRT_VK_VALIDATION", sync_val ? "sync" : NULL);
  vnrt_context *ctx = capture_context_at(cap, VNRT_LOG_INFO);
  env_restore(&val);
  return ctx;
}

/* got against a double reference: NaN exactly where the reference is NaN, elsewhere within
 * rel of the largest finite |ref|. */
static void check_nan_ref(const char *what, const float *got, const double *ref, int64_t n,
                          double rel) {
  double big = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!isnan(ref[i]) && fabs(ref[i]) > big) big = fabs(ref[i]);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (isnan(ref[i])) {
      ck_assert_msg(isnan(got[i]), "%s: [%lld] = %.9g, want NaN (a NaN code read)", what,
                    (long long)i, (double)got[i]);
    } else {
      ck_assert_msg(fabs((double)got[i] - ref[i]) <= rel * big + 1e-30,
                    "%s: [%lld] = %.9g, want %.9g", what, (long long)i, (double)got[i], ref[i]);
    }
  }
}

/* y[n] = sum_k x[k] dec(w[n][k]) scale, for an e4m3 [N, K] weight with b0 x b1 blocks, in
 * double (NaN codes give NaN). */
static void e4m3_gemv_ref(const float *x, const uint8_t *w, const uint8_t *sc, int64_t N, int64_t K,
                          int64_t b0, int64_t b1, double *y) {
  for (int64_t n = 0; n < N; ++n) {
    double acc = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      acc += (double)vnrt_e4m3_to_f32(w[n * K + k]) *
             (double)vnrt_e8m0_to_f32(sc[(n / b0) * ((K + b1 - 1) / b1) + k / b1]) * (double)x[k];
    }
    y[n] = acc;
  }
}

/* The 48x64 e4m3 GEMV of the plan tests at `step`: y against the double reference, and where
 * gemv.comp runs, its one GEMV logged NaN-free and none with the test. */
static void check_plan_step(const char *where, int step, const float *got, const float *x,
                            const uint8_t *w, const uint8_t *sc, int gemv, const log_capture *cap) {
  double ref[48];
  e4m3_gemv_ref(x, w, sc, 48, 64, 16, 32, ref);
  char what[96];
  snprintf(what, sizeof what, "%s, step %d", where, step);
  check_nan_ref(what, got, ref, 48, 1e-5);
  if (gemv) {
    ck_assert_msg(count_clean_lines(cap, 1, 1) == 1 && count_clean_lines(cap, 0, 1) == 0,
                  "step %d: log\n%s", step, cap->text);
  }
}

/* Reads y0 and y1 back and checks them: bit for bit against want, but row nan_row of each
 * (-1: none), which must be NaN. */
static void check_two(vnrt_context *ctx, vk_handle h, vnrt_backend_buffer *buf, const char *what,
                      const float *want, int nan0, int nan1) {
  float y[GN_N];
  char w2[96];
  TU_OK(ctx, h.iface->buffer_read(h.bdev, buf, GN_Y, y, sizeof y));
  snprintf(w2, sizeof w2, "%s, y0", what);
  check_rows(w2, y, want, nan0);
  TU_OK(ctx, h.iface->buffer_read(h.bdev, buf, GN_Y1, y, sizeof y));
  snprintf(w2, sizeof w2, "%s, y1", what);
  check_rows(w2, y, want, nan1);
}

/* A weight's NaN-free choice changes while asynchronous runs of the graph that recorded the old
 * choice are queued: run_async of node 0 (recorded and cached before, NaN-free), a write of a
 * NaN code queued after it on the copy stream, run_async of node 1 (its command buffer was
 * also recorded NaN-free, and must not be submitted again): node 0 reads the clean codes as
 * numbers, node 1 the NaN; then the reverse (NaN code, then clean again). Outputs are filled
 * with a sentinel before each sequence, so each result is that sequence's. Under
 * synchronization validation: freeing the command buffers of queued runs would be reported. */
START_TEST(test_gemv_choice_changes_under_async_runs) {
  log_capture cap;
  vnrt_context *ctx = clean_context(&cap, 1);
  int gemv = gemv_runs(ctx);
  vk_handle h = backend_device(ctx);
  vnrt_backend_timeline *tl = NULL;
  /* Async runs and copies need timelines (test_vulkan_copyq on lavapipe). */
  if (!h.iface->run_async || !h.iface->buffer_write_async || !h.iface->timeline_create ||
      h.iface->timeline_create(h.bdev, &tl) != VNRT_OK) {
    vnrt_context_destroy(ctx);
    return;
  }
  vnrt_backend_buffer *buf = NULL;
  TU_OK(ctx, h.iface->buffer_alloc(h.bdev, GN_BYTES, &buf));
  float x[GN_K];
  uint8_t w[GN_N * GN_K], sc[(GN_N / 8) * (GN_K / 32)];
  write_gn_inputs(ctx, h, buf, 37, 29, 1, 122, 5, x, w, sc);
  vnrt_backend_exec *exec = compile_e4m3_linears(ctx, h, buf, 2);
  /* Both ranges recorded (and cached) NaN-free; the results against double. */
  TU_OK(ctx, h.iface->run(exec, 0, 1));
  TU_OK(ctx, h.iface->run(exec, 1, 1));
  float clean[GN_N];
  double ref[GN_N];
  TU_OK(ctx, h.iface->buffer_read(h.bdev, buf, GN_Y, clean, sizeof clean));
  e4m3_gemv_ref(x, w, sc, GN_N, GN_K, 8, 32, ref);
  check_nan_ref("NaN-free codes", clean, ref, GN_N, 1e-6);
  check_two(ctx, h, buf, "NaN-free codes", clean, -1, -1);
  if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 2, 2), 1);

  const int row = 11, at = row * GN_K + 40;
  float fill[GN_N];
  for (int n = 0; n < GN_N; ++n) fill[n] = -12345.0f;
  uint64_t v = 0;
  for (int pass = 0; pass < 2; ++pass) {
    /* pass 0: NaN-free -> a NaN code; pass 1: back. Node 0 reads the codes before the write,
     * node 1 after it. */
    TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_Y, fill, sizeof fill));
    TU_OK(ctx, h.iface->buffer_write(h.bdev, buf, GN_Y1, fill, sizeof fill));
    const uint8_t code = pass == 0 ? 0xFF : w[at];
    vnrt_backend_sync s0 = {.signal = tl, .signal_value = v + 1};
    TU_OK(ctx, h.iface->run_async(exec, 0, 1, &s0));
    vnrt_backend_sync s1 = {.wait = tl, .wait_value = v + 1, .signal = tl, .signal_value = v + 2};
    TU_OK(ctx, h.iface->buffer_write_async(h.bdev, buf, GN_W + at, &code, 1, &s1));
    vnrt_backend_sync s2 = {.wait = tl, .wait_value = v + 2, .signal = tl, .signal_value = v + 3};
    TU_OK(ctx, h.iface->run_async(exec, 1, 1, &s2));
    v += 3;
    TU_OK(ctx, h.iface->timeline_wait(h.bdev, tl, v, UINT64_C(10000000000)));
    TU_OK(ctx, h.iface->run(exec, 0, 0)); /* the queued runs' records */
    check_two(ctx, h, buf, pass == 0 ? "a NaN code written between queued runs" : "written back",
              clean, pass == 0 ? -1 : row, pass == 0 ? row : -1);
    if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 0, 2), 1);
    if (gemv) ck_assert_int_eq(count_clean_lines(&cap, 2, 2), 1 + pass);
  }
  /* And synchronous runs of both ranges after it all: NaN-free, the same bits. */
  TU_OK(ctx, h.iface->run(exec, 0, 2));
  check_two(ctx, h, buf, "synchronous after", clean, -1, -1);
  h.iface->timeline_destroy(h.bdev, tl);
  h.iface->exec_destroy(exec);
  h.iface->buffer_free(h.bdev, buf);
  assert_layer_enabled(&cap);
  destroy_silent(ctx, &cap);
}
END_TEST

/* The writer thread of test_gemv_choice_with_a_writer_thread. */
typedef struct weight_writer {
  vnrt_context *ctx;
  vk_handle h;
  vnrt_backend_buffer *buf;
  const uint8_t *w;     /* the NaN-free codes */
  pthread_mutex_t lock; /* held by a run and its read-back, and by a write of the weight */
  int version;          /* odd: a NaN code in row GW_ROW (under lock) */
  _Atomic int runs, stop, bad, neighbour_writes;
  char msg[256];
} weight_writer;

enum { GW_ROW = 23, GW_AT = GW_ROW * GN_K + 9, GW_VERSIONS = 6, GW_SPAN = 64 };

static void *weight_writer_main(void *arg) {
  weight_writer *c = arg;
  uint8_t nan_bytes[GW_SPAN], clean_bytes[GW_SPAN];
  memset(nan_bytes, 0xFF, sizeof nan_bytes);
  nan_free_codes(clean_bytes, GW_SPAN, 9);
  for (int i = 0; !atomic_load(&c->stop) && !atomic_load(&c->bad); ++i) {
    /* Beside the weight, during runs (backend.h: buffer_write from another thread while `run`
     * executes, on other bytes): NaN bytes ending where the weight starts or starting where
     * it ends, then NaN-free ones. */
    uint64_t at = i % 2 ? GN_W + GN_N * GN_K : GN_W - GW_SPAN;
    vnrt_status s = c->h.iface->buffer_write(c->h.bdev, c->buf, at,
                                             i % 4 < 2 ? nan_bytes : clean_bytes, GW_SPAN);
    if (s != VNRT_OK) {
      snprintf(c->msg, sizeof c->msg, "neighbour write %d: %s", i, vnrt_status_string(s));
      atomic_store(&c->bad, 1);
    }
    atomic_fetch_add(&c->neighbour_writes, 1);
    /* The weight itself between runs (under the lock): a NaN code, then back, every 6 runs. */
    int want = atomic_load(&c->runs) / 6;
    pthread_mutex_lock(&c->lock);
    if (want > c->version && c->version < GW_VERSIONS) {
      c->version++;
      const uint8_t code = c->version % 2 ? 0xFF : c->w[GW_AT];
      s = c->h.iface->buffer_write(c->h.bdev, c->buf, GN_W + GW_AT, &code, 1);
      if (s != VNRT_OK) {
        snprintf(c->msg, sizeof c->msg, "weight write: %s", vnrt_status_string(s));
        atomic_store(&c->bad, 1);
      }
    }
    pthread_mutex_unlock(&c->lock);
  }
  return NULL;
}

/* A writer thread updates a weight between runs of another thread (the two ordered by a lock,
 * as backend.h asks for writes of bytes a run reads) and writes NaN and NaN-free bytes right
 * beside it during the runs (allowed: other bytes). Each run's y is the weight version's
 * (row GW_ROW NaN exactly while the NaN code is in), and the choice changes exactly when the
 * version's NaN-ness does: writes beside the weight never take its range out. */
START_TEST(test_gemv_choice_with_a_writer_thread) {
  log_capture cap;
  vnrt_context *ctx = clean_context(&cap, 0);
  int gemv = gemv_runs(ctx);
  vk_handle h = backend_device(ctx);
  vnrt_backend_buffer *buf = NULL;
  TU_OK(ctx, h.iface->buffer_alloc(h.bdev, GN_BYTES, &buf));
  float x[GN_K];
  uint8_t w[GN_N * GN_K], sc[(GN_N / 8) * (GN_K / 32)];
  write_gn_inputs(ctx, h, buf, 41, 31, 10, 121, 4, x, w, sc);
  vnrt_backend_exec *exec = compile_e4m3_linear(ctx, h, buf);
  float clean[GN_N], y[GN_N];
  double ref[GN_N];
  run_e4m3_linear(ctx, h, exec, buf, clean);
  e4m3_gemv_ref(x, w, sc, GN_N, GN_K, 8, 32, ref);
  check_nan_ref("before the writer", clean, ref, GN_N, 1e-6);

  static weight_writer c;
  memset(&c, 0, sizeof c);
  c.ctx = ctx, c.h = h, c.buf = buf, c.w = w;
  ck_assert_int_eq(pthread_mutex_init(&c.lock, NULL), 0);
  pthread_t thread;
  ck_assert_int_eq(pthread_create(&thread, NULL, weight_writer_main, &c), 0);
  int changes = 1, last = 0, runs = 0; /* the choice's changes: the first run's, then parity */
  for (int v = 0; !atomic_load(&c.bad) && (runs < 40 || (v < GW_VERSIONS && runs < 400)); ++runs) {
    pthread_mutex_lock(&c.lock);
    v = c.version;
    run_e4m3_linear(ctx, h, exec, buf, y);
    pthread_mutex_unlock(&c.lock);
    atomic_store(&c.runs, runs + 1);
    char what[64];
    snprintf(what, sizeof what, "run %d, weight version %d", runs, v);
    check_rows(what, y, clean, v % 2 ? GW_ROW : -1);
    changes += v % 2 != last;
    last = v % 2;
    if (runs % 8 == 7) sched_yield(); /* let the writer in */
  }
  atomic_store(&c.stop, 1);
  ck_assert_int_eq(pthread_join(thread, NULL), 0);
  ck_assert_msg(!atomic_load(&c.bad), "the writer: %s", c.msg);
  ck_assert_int_eq(c.version, GW_VERSIONS);
  ck_assert_int_ge(atomic_load(&c.neighbour_writes), 2);
  if (gemv) {
    ck_assert_msg(count_clean_lines(&cap, 1, 1) + count_clean_lines(&cap, 0, 1) == changes,
                  "%d changes of the NaN code's presence over %d runs; log:\n%s", changes, runs,
                  cap.text);
  }
  pthread_mutex_destroy(&c.lock);
  h.iface->exec_destroy(exec);
  h.iface->buffer_free(h.bdev, buf);
  vnrt_context_destroy(ctx);
}
END_TEST

/* One node over host tensors placed one after another (256-byte aligned) in one backend
 * buffer: inputs 0 .. n_in - 1, then the output. */
typedef struct bk_node {
  vnrt_backend_tensor t[8];
  uint64_t off[8];
  int32_t n;
  vnrt_backend_node node;
  vnrt_op_params params;
  vnrt_backend_graph g;
  vnrt_backend_buffer *buf;
  vnrt_backend_exec *exec;
} bk_node;

static void bk_node_compile(vnrt_context *ctx, vk_handle h, bk_node *b, vnrt_op op,
                            const tu_tensor *in, int32_t n_in, const vnrt_tensor_type *out) {
  uint64_t at = 0;
  b->n = n_in + 1;
  for (int32_t i = 0; i < b->n; ++i) {
    const vnrt_tensor_type *ty = i < n_in ? &in[i].type : out;
    b->off[i] = at;
    at += (vnrt_tensor_type_bytes(ty) + 255) / 256 * 256;
  }
  TU_OK(ctx, h.iface->buffer_alloc(h.bdev, at, &b->buf));
  for (int32_t i = 0; i < b->n; ++i) {
    b->t[i] = (vnrt_backend_tensor){i < n_in ? in[i].type : *out, i < n_in ? "in" : "out", b->buf,
                                    b->off[i]};
    if (i < n_in) {
      TU_OK(ctx, h.iface->buffer_write(h.bdev, b->buf, b->off[i], in[i].data,
                                       vnrt_tensor_type_bytes(&in[i].type)));
    }
  }
  memset(&b->node, 0, sizeof b->node);
  b->node.op = op;
  b->node.name = "out";
  b->node.n_inputs = n_in;
  for (int32_t i = 0; i < n_in; ++i) b->node.inputs[i] = i;
  b->node.n_outputs = 1;
  b->node.outputs[0] = n_in;
  b->node.params = &b->params;
  b->g = one_node_graph(b->n, b->t, &b->node);
  ck_assert_msg(h.iface->supports_node(h.bdev, &b->g, 0), "%s not supported", vnrt_op_name(op));
  TU_OK(ctx, h.iface->compile(h.bdev, &b->g, &b->exec));
}

/* Byte `at` of input i set to code (a single-byte write). */
static void bk_node_poke(vnrt_context *ctx, vk_handle h, bk_node *b, int32_t i, int64_t at,
                         uint8_t code) {
  TU_OK(ctx, h.iface->buffer_write(h.bdev, b->buf, b->off[i] + (uint64_t)at, &code, 1));
}

/* The node run, its output (n floats) read. */
static void bk_node_run(vnrt_context *ctx, vk_handle h, bk_node *b, float *y, size_t n) {
  TU_OK(ctx, h.iface->run(b->exec, 0, 1));
  TU_OK(ctx, h.iface->buffer_read(h.bdev, b->buf, b->off[b->n - 1], y, sizeof *y * n));
}

static void bk_node_free(vk_handle h, bk_node *b) {
  h.iface->exec_destroy(b->exec);
  h.iface->buffer_free(h.bdev, b->buf);
}

/* An e4m3 tensor's values times their e8m0 scales (blocks 1 x b1 over the last dim), as f32. */
static tu_tensor dequant_rows(const tu_tensor *codes, const tu_tensor *scale, int64_t b1) {
  tu_tensor f = tu_tensor_new(VNRT_F32, codes->type.rank, codes->type.dims);
  const uint8_t *c = codes->data, *s = scale->data;
  int64_t n = tu_numel(codes), L = codes->type.dims[codes->type.rank - 1];
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = i / L, col = i % L;
    ((float *)f.data)[i] =
        vnrt_e4m3_to_f32(c[i]) * vnrt_e8m0_to_f32(s[r * ((L + b1 - 1) / b1) + col / b1]);
  }
  return f;
}

/* moe_ffn with e4m3 experts (1 x 32 blocks), through the backend table, against double
 * (moe_ffn_ref over the decoded weights; limit 0, so that no clamp hides a NaN): NaN-free
 * codes, then a NaN code in the gate/up rows of an expert only token 0 uses (token 0's outputs
 * all NaN, token 1's exact), one in an expert no token uses (all exact, through the tested
 * kernel), one in the down rows of an expert only token 1 uses (that output alone NaN), and
 * NaN-free again. The gate/up and down passes each choose by their own weight. (The public API
 * refuses NaN codes when binding, docs/api.md "Binding": only the backend table writes them.) */
static void moe_e4m3_nan_codes(vnrt_context *ctx, vk_handle h, const log_capture *cap, int gemv) {
  const int64_t T = 2, C = 64, F = 32, E = 4;
  const ffn_case fc = {T, C, F, E, 2, 0.0, VNRT_F32, VNRT_F32, VNRT_E4M3, VNRT_E4M3};
  const int32_t ex[4] = {1, 3, 3, 0}; /* token 0: experts 1, 3; token 1: 3, 0; 2 unused */
  tu_tensor in[7];
  make_ffn_q_inputs(&fc, ex, 700, in);
  nan_free_codes(in[3].data, E * 2 * F * C, 2);
  nan_free_codes(in[4].data, E * C * F, 3);
  for (int64_t i = 0; i < tu_numel(&in[5]); ++i)
    ((uint8_t *)in[5].data)[i] = (uint8_t)(118 + i % 3);
  for (int64_t i = 0; i < tu_numel(&in[6]); ++i)
    ((uint8_t *)in[6].data)[i] = (uint8_t)(119 + i % 3);
  static bk_node b;
  memset(&b, 0, sizeof b);
  b.params.moe_ffn.limit = 0.0;
  b.params.moe_ffn.w_gate_up = (vnrt_quant_weight){VNRT_E4M3, {1, 32}, 5};
  b.params.moe_ffn.w_down = (vnrt_quant_weight){VNRT_E4M3, {1, 32}, 6};
  const vnrt_tensor_type ty = {VNRT_F32, 2, {T, C}};
  bk_node_compile(ctx, h, &b, VNRT_OP_MOE_FFN, in, 7, &ty);
  uint8_t *gu = in[3].data, *dn = in[4].data;
  struct {
    const char *what;
    int64_t gu_at, dn_at; /* a NaN code there (-1: none) */
    int both, one;        /* the lines "2 of 2" and "1 of 2" logged so far */
  } steps[] = {
      {"NaN-free experts", -1, -1, 1, 0},
      {"a NaN code in expert 1's gate/up", (1 * 2 * F + 5) * C + 17, -1, 1, 1},
      {"a NaN code in unused expert 2's gate/up", (2 * 2 * F + F + 3) * C + 60, -1, 1, 1},
      {"a NaN code in expert 0's down row 9", -1, (0 * C + 9) * F + 30, 1, 2},
      {"NaN-free again", -1, -1, 2, 2},
  };
  int64_t gu_prev = -1, dn_prev = -1;
  float y[2 * 64];
  for (size_t s = 0; s < sizeof steps / sizeof steps[0]; ++s) {
    /* The previous step's NaN code back, then this step's. */
    if (gu_prev >= 0) bk_node_poke(ctx, h, &b, 3, gu_prev, gu[gu_prev]);
    if (dn_prev >= 0) bk_node_poke(ctx, h, &b, 4, dn_prev, dn[dn_prev]);
    uint8_t gu_old = 0, dn_old = 0;
    if (steps[s].gu_at >= 0) gu_old = gu[steps[s].gu_at], gu[steps[s].gu_at] = 0x7F;
    if (steps[s].dn_at >= 0) dn_old = dn[steps[s].dn_at], dn[steps[s].dn_at] = 0xFF;
    tu_tensor fgu = dequant_rows(&in[3], &in[5], 32), fdn = dequant_rows(&in[4], &in[6], 32);
    double *ref = moe_ffn_ref(&in[0], &in[1], &in[2], &fgu, &fdn, 0.0);
    if (s == 1 || s == 3) { /* the reference itself: NaN where the code is read */
      ck_assert(isnan(ref[s == 1 ? 0 : C + 9]) && !isnan(ref[s == 1 ? C : C + 8]));
    }
    if (steps[s].gu_at >= 0) bk_node_poke(ctx, h, &b, 3, steps[s].gu_at, 0x7F);
    if (steps[s].dn_at >= 0) bk_node_poke(ctx, h, &b, 4, steps[s].dn_at, 0xFF);
    bk_node_run(ctx, h, &b, y, (size_t)(T * C));
    char what[96];
    snprintf(what, sizeof what, "moe_ffn e4m3: %s", steps[s].what);
    check_nan_ref(what, y, ref, T * C, 1e-5);
    if (gemv) {
      ck_assert_int_eq(count_clean_lines(cap, 2, 2), steps[s].both);
      ck_assert_int_eq(count_clean_lines(cap, 1, 2), steps[s].one);
      ck_assert_int_eq(count_clean_lines(cap, 0, 2), 0);
    }
    free(ref);
    tu_tensor_free(&fgu);
    tu_tensor_free(&fdn);
    if (steps[s].gu_at >= 0) gu[steps[s].gu_at] = gu_old;
    if (steps[s].dn_at >= 0) dn[steps[s].dn_at] = dn_old;
    gu_prev = steps[s].gu_at, dn_prev = steps[s].dn_at;
  }
  bk_node_free(h, &b);
  tu_free_all(in, 7);
}

/* grouped_linear with e4m3 weights (G = 3 groups of N = 16 rows, K = 64, 16 x 32 blocks) on a
 * decode row, through the backend table: NaN-free, a NaN code in row 21 (group 1: y[21] alone
 * NaN), NaN-free again. */
static void grouped_e4m3_nan_codes(vnrt_context *ctx, vk_handle h, const log_capture *cap,
                                   int gemv) {
  const int64_t G = 3, N = 16, K = 64;
  const int64_t wd[2] = {G * N, K}, sd[2] = {G * N / 16, K / 32};
  tu_tensor in[3] = {tu_rnd(VNRT_F32, 2, 1, G * K, 0, 0, 710, -1.0f, 1.0f),
                     tu_tensor_new(VNRT_E4M3, 2, wd), tu_tensor_new(VNRT_E8M0, 2, sd)};
  nan_free_codes(in[1].data, G * N * K, 4);
  for (int64_t i = 0; i < tu_numel(&in[2]); ++i)
    ((uint8_t *)in[2].data)[i] = (uint8_t)(120 + i % 4);
  static bk_node b;
  memset(&b, 0, sizeof b);
  b.params.grouped_linear.groups = (int32_t)G;
  b.params.grouped_linear.w = (vnrt_quant_weight){VNRT_E4M3, {16, 32}, 2};
  const vnrt_tensor_type ty = {VNRT_F32, 2, {1, G * N}};
  bk_node_compile(ctx, h, &b, VNRT_OP_GROUPED_LINEAR, in, 3, &ty);
  uint8_t *w = in[1].data;
  const float *x = in[0].data;
  const int64_t at = 21 * K + 50;
  const uint8_t keep = w[at];
  for (int step = 0; step < 3; ++step) {
    w[at] = step == 1 ? 0xFF : keep;
    double ref[48];
    for (int64_t g = 0; g < G; ++g) {
      e4m3_gemv_ref(x + g * K, w + g * N * K, (const uint8_t *)in[2].data + g * (N / 16) * (K / 32),
                    N, K, 16, 32, ref + g * N);
    }
    ck_assert(isnan(ref[21]) == (step == 1) && !isnan(ref[20]));
    float y[48];
    if (step > 0) bk_node_poke(ctx, h, &b, 1, at, w[at]);
    bk_node_run(ctx, h, &b, y, (size_t)(G * N));
    check_nan_ref(step == 1 ? "grouped_linear e4m3, a NaN code" : "grouped_linear e4m3 NaN-free", y,
                  ref, G * N, 1e-5);
    if (gemv) {
      ck_assert_int_eq(count_clean_lines(cap, 1, 1), step == 0 ? 1 : step);
      ck_assert_int_eq(count_clean_lines(cap, 0, 1), step >= 1);
    }
  }
  w[at] = keep;
  bk_node_free(h, &b);
  tu_free_all(in, 3);
}

/* moe_ffn's and grouped_linear's e4m3 products (gemv.comp on a CPU device) with NaN codes read
 * and not read, under synchronization validation. */
START_TEST(test_moe_and_grouped_e4m3_nan_codes) {
  log_capture cap;
  vnrt_context *ctx = clean_context(&cap, 1);
  int gemv = gemv_runs(ctx);
  vk_handle h = backend_device(ctx);
  moe_e4m3_nan_codes(ctx, h, &cap, gemv);
  grouped_e4m3_nan_codes(ctx, h, &cap, gemv);
  assert_layer_enabled(&cap);
  destroy_silent(ctx, &cap);
}
END_TEST

/* y = linear(x, w, s) with w e4m3 [48, 64] (16 x 32 blocks) as params "w" and "s" of graph g,
 * from value x; the result named name. */
static vnrt_value add_e4m3_linear(vnrt_context *ctx, vnrt_graph *g, vnrt_value x, const char *w,
                                  const char *s, const char *name) {
  vnrt_tensor_type tw = {VNRT_E4M3, 2, {48, 64}}, ts = {VNRT_E8M0, 2, {3, 2}};
  vnrt_value in[3] = {x, 0, 0}, y;
  TU_OK(ctx, vnrt_graph_add_input(g, w, &tw, 1, &in[1]));
  TU_OK(ctx, vnrt_graph_add_input(g, s, &ts, 1, &in[2]));
  const char *names[1] = {name};
  const int64_t blk[2] = {16, 32};
  vnrt_attr block = tu_attr_ints("block", blk, 2);
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, in, 3, &block, 1, names, &y, 1));
  return y;
}

/* The two fallback tests' plan: moe_route (which the Vulkan backend sends to the CPU) over
 * `logits` into route, then y = the e4m3 linear of x; y and route[0] marked, g destroyed, one
 * fallback node checked. */
static vnrt_plan *route_and_e4m3_plan(vnrt_context *ctx, vnrt_graph *g, vnrt_value logits,
                                      vnrt_value x, vnrt_value *route, vnrt_plan_info *pi) {
  vnrt_attr ra[2] = {tu_attr_i("k", 2), tu_attr_word("score", "softmax")};
  const char *rn[2] = {"rw", "ri"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_MOE_ROUTE, &logits, 1, ra, 2, rn, route, 2));
  vnrt_value y = add_e4m3_linear(ctx, g, x, "w", "s", "y");
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  TU_OK(ctx, vnrt_graph_add_output(g, route[0]));
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, vulkan_device(ctx), NULL, &plan));
  vnrt_graph_destroy(g);
  *pi = (vnrt_plan_info){.struct_size = sizeof *pi};
  TU_OK(ctx, vnrt_plan_get_info(plan, pi));
  ck_assert_int_eq(pi->n_fallback_nodes, 1);
  return plan;
}

/* A plan whose moe_route (2048 experts) falls back to the CPU, fed from a linear on vulkan:0
 * (a transfer out of the device: the CPU reads the arena buffer through its host address,
 * which vk_clean.c never trusts again) beside an e4m3 GEMV y whose weight is a param (the io
 * buffer). The transfers must neither lose the weight's NaN-free state nor keep it past a
 * write: over four runs (new NaN-free codes bound before the third; the public API refuses NaN
 * codes, docs/api.md "Binding"), y against double, and one choice only, NaN-free. */
START_TEST(test_gemv_nan_free_beside_cpu_fallback) {
  log_capture cap;
  vnrt_context *ctx = clean_context(&cap, 0);
  int gemv = gemv_runs(ctx);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {1, 64}}, tl = {VNRT_F32, 2, {2048, 64}};
  vnrt_value x, wl, logits, route[2];
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "wl", &tl, 1, &wl));
  vnrt_value lin_in[2] = {x, wl};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, lin_in, 2, NULL, 0, NULL, &logits, 1));
  vnrt_plan_info pi;
  vnrt_plan *plan = route_and_e4m3_plan(ctx, g, logits, x, route, &pi);
  tu_tensor pl = tu_rnd(VNRT_F32, 2, 2048, 64, 0, 0, 720, -1.0f, 1.0f);
  tu_tensor xv = tu_rnd(VNRT_F32, 2, 1, 64, 0, 0, 721, -1.0f, 1.0f);
  uint8_t w[48 * 64], sc[6] = {121, 122, 123, 121, 122, 123};
  nan_free_codes(w, 48 * 64, 5);
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", xv.data, sizeof(float) * 64));
  TU_OK(ctx, vnrt_plan_set_input(plan, "wl", pl.data, vnrt_tensor_type_bytes(&pl.type)));
  TU_OK(ctx, vnrt_plan_set_input(plan, "s", sc, sizeof sc));
  for (int step = 0; step < 4; ++step) {
    if (step == 2) nan_free_codes(w, 48 * 64, 6);
    if (step != 1) TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w));
    TU_OK(ctx, vnrt_plan_run(plan));
    float got[48], rw[2];
    TU_OK(ctx, vnrt_plan_read_output(plan, "y", got, sizeof got));
    TU_OK(ctx, vnrt_plan_read_output(plan, "rw", rw, sizeof rw));
    ck_assert(fabs((double)rw[0] + rw[1] - 1.0) < 1e-5); /* the CPU node ran */
    check_plan_step("beside a CPU fallback", step, got, xv.data, w, sc, gemv, &cap);
  }
  vnrt_plan_destroy(plan);
  tu_tensor_free(&pl);
  tu_tensor_free(&xv);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Top-2 softmax routing weights of one row of logits (moe_route, norm 1): the two largest
 * e^l over their sum, largest first. */
static void top2_weights(const float *l, int64_t E, double out[2]) {
  int64_t a = 0, b = -1;
  for (int64_t i = 1; i < E; ++i) {
    if (l[i] > l[a])
      b = a, a = i;
    else if (b < 0 || l[i] > l[b])
      b = i;
  }
  double eb = exp((double)l[b] - (double)l[a]);
  out[0] = 1.0 / (1.0 + eb), out[1] = eb / (1.0 + eb);
}

/* A state written in place on vulkan:0 (kv_write) that a CPU fallback node (moe_route over
 * 2048 experts) reads: after each run the executor copies the state to its CPU replica out of
 * the buffer that also holds the plan's params. That copy went through the buffer's host
 * address, which made every weight there unclean for good (the e4m3 GEMV beside it took the
 * NaN test from the second run on); the buffer now keeps its address while GEMVs may read it
 * without the test, and the copy goes through buffer_read. Over four runs: the routing weights
 * of the rows written by the earlier runs (the replica right), y against double (new NaN-free
 * codes bound before the third run), and one choice only, NaN-free. */
START_TEST(test_gemv_nan_free_state_to_cpu) {
  log_capture cap;
  vnrt_context *ctx = clean_context(&cap, 0);
  int gemv = gemv_runs(ctx);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  enum { NE = 2048 };
  vnrt_tensor_type tx = {VNRT_F32, 2, {1, 64}}, tc = {VNRT_F32, 2, {2, NE}},
                   tr = {VNRT_F32, 2, {1, NE}}, tp = {VNRT_I32, 1, {1}};
  vnrt_value x, cache, r, pos, route[2], nc;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "r", &tr, 0, &r));
  TU_OK(ctx, vnrt_graph_add_input(g, "pos", &tp, 0, &pos));
  TU_OK(ctx, vnrt_graph_add_state(g, "cache", &tc, &cache));
  vnrt_value kin[3] = {cache, r, pos};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_KV_WRITE, kin, 3, NULL, 0, NULL, &nc, 1));
  TU_OK(ctx, vnrt_graph_set_state_update(g, cache, nc));
  vnrt_plan_info pi;
  vnrt_plan *plan = route_and_e4m3_plan(ctx, g, cache, x, route, &pi);
  ck_assert_int_eq(pi.n_inplace_updates, 1);
  tu_tensor xv = tu_rnd(VNRT_F32, 2, 1, 64, 0, 0, 730, -1.0f, 1.0f);
  tu_tensor rv[4];
  uint8_t w[48 * 64], sc[6] = {121, 122, 123, 121, 122, 123};
  nan_free_codes(w, 48 * 64, 7);
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", xv.data, sizeof(float) * 64));
  TU_OK(ctx, vnrt_plan_set_input(plan, "s", sc, sizeof sc));
  for (int step = 0; step < 4; ++step) {
    if (step == 0 || step == 2) {
      if (step == 2) nan_free_codes(w, 48 * 64, 8);
      TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w));
    }
    rv[step] = tu_rnd(VNRT_F32, 2, 1, NE, 0, 0, 731 + (uint64_t)step, -4.0f, 4.0f);
    int32_t row = step % 2;
    TU_OK(ctx, vnrt_plan_set_input(plan, "r", rv[step].data, sizeof(float) * NE));
    TU_OK(ctx, vnrt_plan_set_input(plan, "pos", &row, sizeof row));
    TU_OK(ctx, vnrt_plan_run(plan));
    /* moe_route read the cache before this run's write: row j holds the latest earlier run
     * that wrote it, or zeros (equal logits: 1/2 each). */
    float rw[4], got[48];
    TU_OK(ctx, vnrt_plan_read_output(plan, "rw", rw, sizeof rw));
    for (int j = 0; j < 2; ++j) {
      int from = step - 1 - ((step - 1 - j) % 2 + 2) % 2; /* the last earlier step with row j */
      double want[2] = {0.5, 0.5};
      if (from >= 0) top2_weights(rv[from].data, NE, want);
      for (int i = 0; i < 2; ++i) {
        ck_assert_msg(fabs(rw[j * 2 + i] - want[i]) < 1e-5, "step %d: rw[%d][%d] = %g, want %g",
                      step, j, i, (double)rw[j * 2 + i], want[i]);
      }
    }
    TU_OK(ctx, vnrt_plan_read_output(plan, "y", got, sizeof got));
    check_plan_step("beside a state copied to the cpu", step, got, xv.data, w, sc, gemv, &cap);
  }
  vnrt_plan_destroy(plan);
  tu_free_all(rv, 4);
  tu_tensor_free(&xv);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- Pipeline cache on disk ------------------------------------------------------------ */

static int cache_files(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/vnrt", dir);
  DIR *d = opendir(path);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    n += strncmp(e->d_name, "vulkan-", 7) == 0 && len > 4 &&
         strcmp(e->d_name + len - 4, ".bin") == 0;
  }
  closedir(d);
  return n;
}

static void run_one_op(vnrt_context *ctx) {
  tu_tensor x = tu_rnd(VNRT_F32, 1, 9, 0, 0, 0, 500, -1.0f, 1.0f);
  vs_cpu(ctx, "tanh", VNRT_OP_TANH, &x, 1, NULL, 0, 1, TOL_ELEM);
  tu_tensor_free(&x);
}

START_TEST(test_pipeline_cache_on_disk) {
  char dir[] = "/tmp/vnrt-vkcache-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  saved_env x = env_set("XDG_CACHE_HOME", dir);
  vnrt_context *ctx = tu_context();
  run_one_op(ctx);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(cache_files(dir), 1);
  /* Loading it back works (and a second run rewrites the same file). */
  ctx = tu_context();
  run_one_op(ctx);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(cache_files(dir), 1);
  env_restore(&x);

  /* A cache directory that cannot exist (under a regular file) is only a warning. */
  char file[600], bad[700];
  snprintf(file, sizeof file, "%s/plainfile", dir);
  FILE *f = fopen(file, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  snprintf(bad, sizeof bad, "%s/sub", file);
  x = env_set("XDG_CACHE_HOME", bad);
  /* Mesa keeps its own shader cache under XDG_CACHE_HOME too; point it elsewhere so that it
   * does not complain on stderr. */
  saved_env mesa = env_set("MESA_SHADER_CACHE_DIR", dir);
  log_capture cap;
  ctx = capture_context(&cap);
  run_one_op(ctx);
  vnrt_context_destroy(ctx);
  env_restore(&mesa);
  env_restore(&x);
  ck_assert_msg(strstr(cap.text, "pipeline cache") != NULL, "no warning logged:\n%s", cap.text);

  /* Clean up (Mesa may have left its cache here as well). */
  remove(file);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- kv_compress states in place -------------------------------------------------------- */

/* kv_compress's states updated in place (VNRT_CAP_STATE_INPLACE; vk_rec_kv_compress): with
 * and without overlap, runs of 1 (a decode step: OP 10, one dispatch), 3 and 5 (OP 2 or OP 8 in
 * place, across one window and two) against plain C (kvc_ref.h, which test_state runs on
 * every device), here under synchronization validation: a missing barrier between a read of
 * a state row and its write is reported. */
START_TEST(test_kv_compress_states_in_place) {
  saved_env v = env_set("VNRT_VK_VALIDATION", "sync");
  log_capture cap;
  vnrt_context *ctx = capture_context_at(&cap, VNRT_LOG_INFO);
  assert_layer_enabled(&cap);
  vnrt_device *dev = vulkan_device(ctx);
  vnrt_device_info di = {.struct_size = sizeof di};
  TU_OK(ctx, vnrt_device_get_info(dev, &di));
  ck_assert(di.caps & VNRT_CAP_STATE_INPLACE);
  kvc_check_runs(ctx, dev);
  env_restore(&v);
  destroy_silent(ctx, &cap);
}
END_TEST

int main(void) {
  Suite *s = suite_create("vulkan");
  TCase *dev = tcase_create("device");
  tcase_add_test(dev, test_device_listed_with_capabilities);
  tcase_add_test(dev, test_absent_driver_gives_no_devices);
  tcase_add_test(dev, test_allocation_beyond_heap_names_the_limit);
  tcase_add_test(dev, test_pipeline_cache_on_disk);
  suite_add_tcase(s, dev);
  TCase *ops = tcase_create("ops");
  tcase_set_timeout(ops, 240);
  tcase_add_test(ops, test_ops_match_cpu_under_validation);
  tcase_add_test(ops, test_ops_match_cpu_baseline_under_validation);
  tcase_add_test(ops, test_gpu_kernels_match_under_validation);
  suite_add_tcase(s, ops);
  TCase *run = tcase_create("run");
  tcase_add_test(run, test_index_errors_are_reported);
  tcase_add_test(run, test_staging_path_matches);
  tcase_add_test(run, test_mixed_plan_reruns);
  const int n_envs = (int)(sizeof kCopyqEnvs / sizeof kCopyqEnvs[0]);
  tcase_add_loop_test(run, test_copy_queue_round_trips_large_buffers, 0, n_envs);
  tcase_add_loop_test(run, test_copy_queue_writes_interleave_with_runs, 0, 3);
  tcase_add_test(run, test_copy_queue_unknown_setting_warns);
  tcase_add_test(run, test_gemv_nan_test_only_for_weights_not_known_clean);
  tcase_add_test(run, test_kv_compress_states_in_place);
  suite_add_tcase(s, run);
  TCase *clean = tcase_create("clean"); /* the NaN-free choice (vk_clean.c) */
  tcase_add_test(clean, test_gemv_choice_changes_under_async_runs);
  tcase_add_test(clean, test_moe_and_grouped_e4m3_nan_codes);
  tcase_add_test(clean, test_gemv_nan_free_beside_cpu_fallback);
  tcase_add_test(clean, test_gemv_nan_free_state_to_cpu);
  tcase_add_test(clean, test_gemv_choice_with_a_writer_thread);
  suite_add_tcase(s, clean);
  return tu_run_suite(s);
}
