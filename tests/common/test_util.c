/* Shared helpers for the Check suites: contexts, one-op graphs, runs on every device. */
#include "test_util.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vnrt_context *tu_context(void) {
  vnrt_context_desc desc = {0};
  desc.log_level = VNRT_LOG_ERROR;
  desc.no_plugins = 1;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&desc, &ctx);
  ck_assert_msg(s == VNRT_OK && ctx, "vnrt_context_create: %s", vnrt_status_string(s));
  return ctx;
}

/* Fails the test when an entry of $VNRT_TEST_DEVICES names no device of ctx: a plugin that did
 * not load must not turn the suite into a run over zero devices. */
static void check_listed_devices(vnrt_context *ctx) {
  const char *p = getenv("VNRT_TEST_DEVICES");
  while (p && *p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int found = 0;
    for (uint32_t i = 0; i < vnrt_device_count(ctx) && !found; ++i) {
      vnrt_device *d = NULL;
      vnrt_device_info info = {.struct_size = sizeof info};
      if (vnrt_device_get(ctx, i, &d) != VNRT_OK || vnrt_device_get_info(d, &info) != VNRT_OK) {
        continue;
      }
      found = (strlen(info.spec) == len && strncmp(info.spec, p, len) == 0) ||
              (strlen(info.backend) == len && strncmp(info.backend, p, len) == 0);
    }
    ck_assert_msg(found || len == 0, "VNRT_TEST_DEVICES names '%.*s', which is not a device here",
                  (int)len, p);
    p += len;
    if (*p == ',') ++p;
  }
}

vnrt_context *tu_conformance_context(int32_t threads) {
  const char *plugins = getenv("VNRT_PLUGIN_PATH");
  vnrt_context_desc desc = {0};
  desc.log_level = VNRT_LOG_ERROR;
  desc.no_plugins = !(plugins && plugins[0]);
  desc.num_threads = threads;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&desc, &ctx);
  ck_assert_msg(s == VNRT_OK && ctx, "vnrt_context_create: %s", vnrt_status_string(s));
  check_listed_devices(ctx);
  return ctx;
}

/* Whether spec (e.g. "vulkan:0") is in the comma-separated list, by full spec or backend. */
static int spec_listed(const char *list, const vnrt_device_info *info) {
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if ((strlen(info->spec) == len && strncmp(info->spec, p, len) == 0) ||
        (strlen(info->backend) == len && strncmp(info->backend, p, len) == 0)) {
      return 1;
    }
    p += len;
    if (*p == ',') ++p;
  }
  return 0;
}

static int device_selected(vnrt_device *d) {
  vnrt_device_info info = {.struct_size = sizeof info};
  if (vnrt_device_get_info(d, &info) != VNRT_OK) return 0;
  const char *list = getenv("VNRT_TEST_DEVICES");
  if (!list || !list[0]) return 1;
  return spec_listed(list, &info);
}

int32_t tu_device_count(vnrt_context *ctx) {
  int32_t n = 0;
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *d = NULL;
    if (vnrt_device_get(ctx, i, &d) == VNRT_OK && device_selected(d)) ++n;
  }
  return n;
}

vnrt_device *tu_device(vnrt_context *ctx, int32_t k) {
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *d = NULL;
    if (vnrt_device_get(ctx, i, &d) == VNRT_OK && device_selected(d) && k-- == 0) return d;
  }
  ck_abort_msg("tu_device: no device %d", k);
  return NULL;
}

const char *tu_device_spec(vnrt_device *device) {
  static __thread char spec[32];
  vnrt_device_info info = {.struct_size = sizeof info};
  if (vnrt_device_get_info(device, &info) != VNRT_OK) return "?";
  snprintf(spec, sizeof spec, "%s", info.spec);
  return spec;
}

tu_tensor tu_tensor_new(vnrt_dtype dtype, int32_t rank, const int64_t *dims) {
  tu_tensor t;
  memset(&t, 0, sizeof t);
  t.type.dtype = dtype;
  t.type.rank = rank;
  for (int32_t i = 0; i < rank; ++i) t.type.dims[i] = dims[i];
  size_t bytes = vnrt_tensor_type_bytes(&t.type);
  t.data = calloc(1, bytes ? bytes : 1);
  ck_assert_ptr_nonnull(t.data);
  return t;
}

void tu_tensor_free(tu_tensor *t) {
  free(t->data);
  t->data = NULL;
}

int64_t tu_numel(const tu_tensor *t) { return vnrt_tensor_type_numel(&t->type); }

double tu_get(const tu_tensor *t, int64_t i) {
  switch (t->type.dtype) {
    case VNRT_F32:
      return ((const float *)t->data)[i];
    case VNRT_F16:
      return vnrt_f16_to_f32(((const uint16_t *)t->data)[i]);
    case VNRT_BF16:
      return vnrt_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case VNRT_I32:
      return ((const int32_t *)t->data)[i];
    default:
      return NAN;
  }
}

void tu_set(tu_tensor *t, int64_t i, double v) {
  switch (t->type.dtype) {
    case VNRT_F32:
      ((float *)t->data)[i] = (float)v;
      break;
    case VNRT_F16:
      ((uint16_t *)t->data)[i] = vnrt_f32_to_f16((float)v);
      break;
    case VNRT_BF16:
      ((uint16_t *)t->data)[i] = vnrt_f32_to_bf16((float)v);
      break;
    case VNRT_I32:
      ((int32_t *)t->data)[i] = (int32_t)v;
      break;
    default:
      break;
  }
}

/* splitmix64: small, deterministic and good enough for test data. */
static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void tu_fill_uniform(tu_tensor *t, uint64_t seed, float lo, float hi) {
  uint64_t s = seed * 0x2545f4914f6cdd1dull + 1;
  int64_t n = tu_numel(t);
  for (int64_t i = 0; i < n; ++i) {
    double u = (double)(next_u64(&s) >> 11) * 0x1.0p-53;
    tu_set(t, i, lo + (hi - lo) * u);
  }
}

vnrt_graph *tu_mlp_graph(vnrt_context *ctx, int layers, int64_t c) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {4, c}}, tw = {VNRT_F32, 2, {c, c}};
  vnrt_value h;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &h));
  for (int l = 0; l < layers; ++l) {
    char wn[16], ln[16], rn[16];
    snprintf(wn, sizeof wn, "w%d", l), snprintf(ln, sizeof ln, "l%d", l);
    snprintf(rn, sizeof rn, "r%d", l);
    vnrt_value w, lin, r;
    TU_OK(ctx, vnrt_graph_add_input(g, wn, &tw, 1, &w));
    vnrt_value in[2] = {h, w};
    const char *n1[1] = {ln}, *n2[1] = {rn};
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, in, 2, NULL, 0, n1, &lin, 1));
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_TANH, &lin, 1, NULL, 0, n2, &r, 1));
    h = r;
  }
  TU_OK(ctx, vnrt_graph_add_output(g, h));
  return g;
}

vnrt_graph *tu_op_graph(vnrt_context *ctx, vnrt_op op, const tu_tensor *inputs, int32_t n_in,
                        const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value in[8], out[4];
  char names[4][16];
  const char *out_names[4];
  ck_assert_int_le(n_in, 8);
  ck_assert_int_le(n_out, 4);
  for (int32_t i = 0; i < n_in; ++i) {
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    TU_OK(ctx, vnrt_graph_add_input(g, name, &inputs[i].type, 0, &in[i]));
  }
  for (int32_t i = 0; i < n_out; ++i) {
    snprintf(names[i], sizeof names[i], "out%d", i);
    out_names[i] = names[i];
  }
  vnrt_status s = vnrt_graph_add_node(g, op, in, n_in, attrs, n_attrs, out_names, out, n_out);
  if (s != VNRT_OK) {
    ck_abort_msg("tu_op_graph(%s): %s: %s", vnrt_op_name(op), vnrt_status_string(s),
                 vnrt_context_last_error(ctx));
  }
  for (int32_t i = 0; i < n_out; ++i) TU_OK(ctx, vnrt_graph_add_output(g, out[i]));
  return g;
}

int tu_fallback_allowed(void) {
  const char *v = getenv("VNRT_TEST_FALLBACK");
  return v && strcmp(v, "1") == 0;
}

vnrt_kernel_mode tu_kernel_mode(void) {
  const char *v = getenv("VNRT_TEST_KERNELS");
  return v && strcmp(v, "reference") == 0 ? VNRT_KERNELS_REFERENCE : VNRT_KERNELS_FAST;
}

vnrt_status tu_run_desc(vnrt_context *ctx, const vnrt_graph *graph, vnrt_device *device,
                        const vnrt_plan_desc *desc, const tu_tensor *inputs, int32_t n_in,
                        tu_tensor *outs, int32_t n_out, int32_t *out_fallback_nodes) {
  vnrt_plan *plan = NULL;
  for (int32_t i = 0; i < n_out; ++i) memset(&outs[i], 0, sizeof outs[i]);
  if (out_fallback_nodes) *out_fallback_nodes = 0;
  vnrt_status s = vnrt_plan_create(ctx, graph, device, desc, &plan);
  if (s != VNRT_OK) return s;
  if (out_fallback_nodes) {
    vnrt_plan_info info = {0};
    s = vnrt_plan_get_info(plan, &info);
    *out_fallback_nodes = info.n_fallback_nodes;
  }
  for (int32_t i = 0; i < n_in && s == VNRT_OK; ++i) {
    int is_param = 0;
    vnrt_value v = vnrt_graph_input(graph, i, &is_param);
    s = vnrt_plan_set_input(plan, vnrt_graph_value_name(graph, v), inputs[i].data,
                            vnrt_tensor_type_bytes(&inputs[i].type));
  }
  if (s == VNRT_OK) s = vnrt_plan_run(plan);
  for (int32_t i = 0; i < n_out && s == VNRT_OK; ++i) {
    const char *name = vnrt_plan_output_name(plan, i);
    vnrt_tensor_type t;
    s = vnrt_plan_output_type(plan, name, &t);
    if (s != VNRT_OK) break;
    outs[i] = tu_tensor_new(t.dtype, t.rank, t.dims);
    s = vnrt_plan_read_output(plan, name, outs[i].data, vnrt_tensor_type_bytes(&t));
  }
  if (s != VNRT_OK) {
    vnrt_plan_destroy(plan); /* leaves the context's last error alone */
    for (int32_t i = 0; i < n_out; ++i) tu_tensor_free(&outs[i]);
    return s;
  }
  vnrt_plan_destroy(plan);
  return VNRT_OK;
}

vnrt_status tu_run(vnrt_context *ctx, vnrt_graph *graph, vnrt_device *device,
                   const tu_tensor *inputs, int32_t n_in, tu_tensor *outs, int32_t n_out) {
  vnrt_plan_desc desc = {.no_fallback = !tu_fallback_allowed(), .kernels = tu_kernel_mode()};
  return tu_run_desc(ctx, graph, device, &desc, inputs, n_in, outs, n_out, NULL);
}

vnrt_status tu_run_fallback(vnrt_context *ctx, vnrt_graph *graph, vnrt_device *device,
                            const tu_tensor *inputs, int32_t n_in, tu_tensor *outs, int32_t n_out,
                            int32_t *out_fallback_nodes) {
  vnrt_plan_desc desc = {.kernels = tu_kernel_mode()};
  return tu_run_desc(ctx, graph, device, &desc, inputs, n_in, outs, n_out, out_fallback_nodes);
}

double tu_nmse(const tu_tensor *got, const double *expected, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double a = tu_get(got, i), r = expected[i];
    if (isfinite(r) && !isfinite(a)) return INFINITY;
    num += (a - r) * (a - r);
    den += r * r;
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
  return num / den;
}

vnrt_attr tu_attr_i(const char *key, int64_t v) {
  vnrt_attr a;
  memset(&a, 0, sizeof a);
  a.key = key;
  a.kind = VNRT_ATTR_INT;
  a.i = v;
  return a;
}

vnrt_attr tu_attr_f(const char *key, double v) {
  vnrt_attr a;
  memset(&a, 0, sizeof a);
  a.key = key;
  a.kind = VNRT_ATTR_FLOAT;
  a.f = v;
  return a;
}

vnrt_attr tu_attr_ints(const char *key, const int64_t *v, int32_t count) {
  vnrt_attr a;
  memset(&a, 0, sizeof a);
  a.key = key;
  a.kind = VNRT_ATTR_INTS;
  a.ints = v;
  a.count = count;
  return a;
}

vnrt_attr tu_attr_word(const char *key, const char *word) {
  vnrt_attr a;
  memset(&a, 0, sizeof a);
  a.key = key;
  a.kind = VNRT_ATTR_WORD;
  a.word = word;
  return a;
}

static void *tu_alloc_malloc(void *user, size_t size) {
  tu_alloc *a = user;
  if (a->countdown == 0) return NULL;
  if (a->countdown > 0) --a->countdown;
  void *p = malloc(size);
  if (p) ++a->live, ++a->total;
  return p;
}

static void *tu_alloc_realloc(void *user, void *ptr, size_t size) {
  tu_alloc *a = user;
  if (a->countdown == 0) return NULL;
  if (a->countdown > 0) --a->countdown;
  void *p = realloc(ptr, size);
  if (p && !ptr) ++a->live, ++a->total;
  return p;
}

static void tu_alloc_free(void *user, void *ptr) {
  tu_alloc *a = user;
  if (ptr) --a->live;
  free(ptr);
}

vnrt_allocator tu_allocator(tu_alloc *a) {
  return (vnrt_allocator){tu_alloc_malloc, tu_alloc_realloc, tu_alloc_free, a};
}

/* On a sanitized build (VNRT_SANITIZED, tools/ci_sanitize.sh): keeps the drivers and layers
 * that the Vulkan and OpenCL loaders open loaded to the end of the process (RTLD_NODELETE), so
 * that LeakSanitizer's report at exit can still name the library of each allocation and the
 * suppressions of tools/sanitize/lsan.supp match. Unloaded, their leaks show as "<unknown
 * module>" frames that no suppression can tell from anyone's. Nothing is called in them. */
static void pin_driver_libraries(void) {
  const char *v = getenv("VNRT_SANITIZED");
  if (!v || !*v) return;
  static const char *const libs[] = {"libVkLayer_khronos_validation.so", "libvulkan_lvp.so",
                                     "libpocl.so.2"};
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; ++i)
    (void)dlopen(libs[i], RTLD_LAZY | RTLD_LOCAL | RTLD_NODELETE);
}

int tu_run_suite(Suite *suite) {
  pin_driver_libraries();
  SRunner *sr = srunner_create(suite);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}

double tu_nmse_d(const double *a, const double *ref, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? num / den : num;
}

double tu_round_to(vnrt_dtype dt, double v) {
  switch (dt) {
    case VNRT_F32:
      return (float)v;
    case VNRT_F16:
      return vnrt_f16_to_f32(vnrt_f32_to_f16((float)v));
    case VNRT_BF16:
      return vnrt_bf16_to_f32(vnrt_f32_to_bf16((float)v));
    default:
      return v;
  }
}

double *tu_values(const tu_tensor *t) {
  int64_t n = tu_numel(t);
  double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (int64_t i = 0; i < n; ++i) v[i] = tu_get(t, i);
  return v;
}

double *tu_dalloc(int64_t n) {
  double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
  ck_assert_ptr_nonnull(v);
  return v;
}
