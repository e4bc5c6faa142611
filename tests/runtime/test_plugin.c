/* Plugin loading: the template backend found through plugin_path and VNRT_PLUGIN_PATH, its
 * device listed, its unsupported ops failing or falling back to the CPU, broken plugin files
 * skipped with a warning, and no_plugins honoured. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "vnrt/vnrt.h"

/* ---- Captured log ----------------------------------------------------------------------- */

#define LOG_MAX 64
static struct {
  int n;
  vnrt_log_level level[LOG_MAX];
  char text[LOG_MAX][512];
} logged;

static void capture_log(void *user, vnrt_log_level level, const char *message) {
  (void)user;
  if (logged.n >= LOG_MAX) return;
  logged.level[logged.n] = level;
  snprintf(logged.text[logged.n], sizeof(logged.text[0]), "%s", message);
  logged.n++;
}

/* Whether one message at >= min_level contains needle and also needle2 (if not NULL). */
static int log_has2(vnrt_log_level min_level, const char *needle, const char *needle2) {
  for (int i = 0; i < logged.n; ++i) {
    if (logged.level[i] >= min_level && strstr(logged.text[i], needle) &&
        (!needle2 || strstr(logged.text[i], needle2))) {
      return 1;
    }
  }
  return 0;
}
static int log_has(vnrt_log_level min_level, const char *needle) {
  return log_has2(min_level, needle, NULL);
}

static void dump_log(void) {
  for (int i = 0; i < logged.n; ++i)
    fprintf(stderr, "  log[%d]: %s\n", logged.level[i], logged.text[i]);
}

/* ---- Helpers ---------------------------------------------------------------------------- */

static const char *plugin_dir(void) {
  const char *dir = getenv("VNRT_TEST_PLUGIN_DIR");
  ck_assert_msg(dir && dir[0], "VNRT_TEST_PLUGIN_DIR is not set (tests/runtime/meson.build)");
  return dir;
}

/* A context with every message captured; plugin_path NULL means "use VNRT_PLUGIN_PATH". */
static vnrt_context *plugin_context(const char *plugin_path, int no_plugins) {
  memset(&logged, 0, sizeof(logged));
  vnrt_context_desc desc = {0};
  desc.log_fn = capture_log;
  desc.log_level = VNRT_LOG_DEBUG;
  desc.plugin_path = plugin_path;
  desc.no_plugins = no_plugins;
  desc.num_threads = 1;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&desc, &ctx);
  if (s != VNRT_OK) dump_log();
  ck_assert_msg(s == VNRT_OK, "vnrt_context_create: %s", vnrt_status_string(s));
  ck_assert_ptr_nonnull(ctx);
  return ctx;
}

static int has_backend(vnrt_context *ctx, const char *name) {
  const char *names[32];
  uint32_t n = vnrt_backend_names(ctx, names, 32);
  ck_assert_uint_le(n, 32);
  for (uint32_t i = 0; i < n; ++i) {
    if (strcmp(names[i], name) == 0) return 1;
  }
  return 0;
}

/* The device whose spec is `spec` found by walking the device list, or NULL. */
static vnrt_device *find_listed(vnrt_context *ctx, const char *spec, vnrt_device_info *out_info) {
  uint32_t n = vnrt_device_count(ctx);
  for (uint32_t i = 0; i < n; ++i) {
    vnrt_device *d = NULL;
    TU_OK(ctx, vnrt_device_get(ctx, i, &d));
    TU_OK(ctx, vnrt_device_get_info(d, out_info));
    if (strcmp(out_info->spec, spec) == 0) return d;
  }
  return NULL;
}

/* h = x + b; y = linear(h, w): two nodes, neither of which the template device runs. */
enum { T = 3, K = 5, N = 4 };

static vnrt_graph *two_node_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type xt = {VNRT_F32, 2, {T, K, 0, 0}};
  vnrt_tensor_type bt = {VNRT_F32, 1, {K, 0, 0, 0}};
  vnrt_tensor_type wt = {VNRT_F32, 2, {N, K, 0, 0}};
  vnrt_value x, b, w, h, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &xt, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "b", &bt, 0, &b));
  TU_OK(ctx, vnrt_graph_add_input(g, "w", &wt, 1, &w));
  const char *h_name = "h", *y_name = "y";
  vnrt_value xb[2] = {x, b};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, xb, 2, NULL, 0, &h_name, &h, 1));
  vnrt_value hw[2] = {h, w};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, hw, 2, NULL, 0, &y_name, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  return g;
}

/* ---- Tests ------------------------------------------------------------------------------ */

START_TEST(template_device_is_listed_with_its_info) {
  vnrt_context *ctx = plugin_context(plugin_dir(), 0);
  ck_assert_msg(has_backend(ctx, "template"), "backend 'template' not registered");
  ck_assert_msg(has_backend(ctx, "cpu"), "built-in cpu backend missing next to the plugin");

  vnrt_device_info info = {.struct_size = sizeof info};
  vnrt_device *listed = find_listed(ctx, "template:0", &info);
  ck_assert_msg(listed != NULL, "device template:0 not in the device list");
  ck_assert_str_eq(info.backend, "template");
  ck_assert_str_eq(info.name, "template (no ops)");
  ck_assert_int_eq(info.type, VNRT_DEVICE_TYPE_ACCELERATOR);
  ck_assert_uint_eq(info.index, 0);
  ck_assert_uint_ne(info.caps & VNRT_CAP_UNIFIED_MEMORY, 0);

  /* cpu stays first: plugins come after the built-in backends. */
  vnrt_device *first = NULL;
  vnrt_device_info first_info = {.struct_size = sizeof first_info};
  TU_OK(ctx, vnrt_device_get(ctx, 0, &first));
  TU_OK(ctx, vnrt_device_get_info(first, &first_info));
  ck_assert_str_eq(first_info.backend, "cpu");

  vnrt_device *selected = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "template:0", &selected));
  ck_assert_ptr_eq(selected, listed);
  selected = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "template", &selected));
  ck_assert_ptr_eq(selected, listed);
  ck_assert_int_eq(vnrt_device_select(ctx, "template:1", &selected), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(selected);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(plugin_found_through_env_when_plugin_path_is_null) {
  ck_assert_int_eq(setenv("VNRT_PLUGIN_PATH", plugin_dir(), 1), 0);
  vnrt_context *ctx = plugin_context(NULL, 0);
  ck_assert(has_backend(ctx, "template"));
  vnrt_device_info info = {.struct_size = sizeof info};
  ck_assert_ptr_nonnull(find_listed(ctx, "template:0", &info));
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(no_fallback_fails_naming_op_and_device) {
  vnrt_context *ctx = plugin_context(plugin_dir(), 0);
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "template:0", &dev));
  vnrt_graph *g = two_node_graph(ctx);

  vnrt_plan_desc desc = {0};
  desc.no_fallback = 1;
  vnrt_plan *plan = (vnrt_plan *)&desc; /* must be reset to NULL on failure */
  vnrt_status s = vnrt_plan_create(ctx, g, dev, &desc, &plan);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s == VNRT_ERROR_UNSUPPORTED, "expected VNRT_ERROR_UNSUPPORTED, got %s: %s",
                vnrt_status_string(s), msg);
  ck_assert_ptr_null(plan);
  /* The first node in order is the add: the message names it, its op and the device. */
  ck_assert_msg(strstr(msg, "add"), "message does not name the op 'add': %s", msg);
  ck_assert_msg(strstr(msg, "'h'"), "message does not name the node 'h': %s", msg);
  ck_assert_msg(strstr(msg, "template:0"), "message does not name the device: %s", msg);

  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(fallback_runs_every_node_on_the_cpu_correctly) {
  vnrt_context *ctx = plugin_context(plugin_dir(), 0);
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "template:0", &dev));
  vnrt_graph *g = two_node_graph(ctx);

  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
  vnrt_graph_destroy(g); /* the plan must not need the graph any more */
  vnrt_plan_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  ck_assert_int_eq(info.n_nodes, 2);
  ck_assert_int_eq(info.n_fallback_nodes, 2);
  /* Falling back is never silent: a note names the device and the CPU. */
  if (!log_has2(VNRT_LOG_INFO, "template:0", "cpu")) dump_log();
  ck_assert_msg(log_has2(VNRT_LOG_INFO, "template:0", "cpu"), "no logged fallback note");

  float x[T * K], b[K], w[N * K], y[T * N];
  for (int i = 0; i < T * K; ++i) x[i] = (float)((i * 7) % 11) * 0.25f - 1.0f;
  for (int i = 0; i < K; ++i) b[i] = 0.5f - (float)i * 0.125f;
  for (int i = 0; i < N * K; ++i) w[i] = (float)((i * 5) % 9) * 0.1875f - 0.75f;
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", x, sizeof(x)));
  TU_OK(ctx, vnrt_plan_set_input(plan, "b", b, sizeof(b)));
  TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof(w)));
  for (int run = 0; run < 2; ++run) { /* a second run must give the same answer */
    memset(y, 0, sizeof(y));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "y", y, sizeof(y)));
    for (int t = 0; t < T; ++t) {
      for (int n = 0; n < N; ++n) {
        double want = 0.0;
        for (int k = 0; k < K; ++k) {
          want += ((double)x[t * K + k] + (double)b[k]) * (double)w[n * K + k];
        }
        ck_assert_msg(fabs((double)y[t * N + n] - want) <= 1e-5 * (1.0 + fabs(want)),
                      "run %d: y[%d][%d] = %.9g, expected %.9g", run, t, n, y[t * N + n], want);
      }
    }
  }
  vnrt_plan_destroy(plan);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Copies src to dst; returns 0 on success. */
static int copy_file(const char *src, const char *dst) {
  FILE *in = fopen(src, "rb");
  if (!in) return -1;
  FILE *out = fopen(dst, "wb");
  if (!out) {
    fclose(in);
    return -1;
  }
  char buf[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
    if (fwrite(buf, 1, n, out) != n) rc = -1;
  }
  if (ferror(in)) rc = -1;
  fclose(in);
  if (fclose(out) != 0) rc = -1;
  return rc;
}

START_TEST(broken_plugin_files_are_skipped_with_a_warning) {
  char dir[] = "/tmp/vnrt-test-plugin-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));

  /* A file named like a plugin that is not an ELF object at all. */
  char garbage[sizeof(dir) + 16];
  snprintf(garbage, sizeof(garbage), "%s/x.so", dir);
  FILE *f = fopen(garbage, "wb");
  ck_assert_ptr_nonnull(f);
  fputs("this is not a shared library\n", f);
  fclose(f);

  /* A real shared library that lacks the entry symbol: libvnrt.so itself. */
  const char *lib = getenv("VNRT_TEST_NONPLUGIN_SO");
  ck_assert_msg(lib && lib[0], "VNRT_TEST_NONPLUGIN_SO is not set (tests/runtime/meson.build)");
  char notplugin[sizeof(dir) + 32];
  snprintf(notplugin, sizeof(notplugin), "%s/libnotaplugin.so", dir);
  ck_assert_msg(copy_file(lib, notplugin) == 0, "cannot copy %s: %s", lib, strerror(errno));

  /* The broken directory comes first: the good plugin after it must still load. */
  char path[4096];
  snprintf(path, sizeof(path), "%s:%s", dir, plugin_dir());
  vnrt_context *ctx = plugin_context(path, 0);
  int warned_garbage = log_has(VNRT_LOG_WARN, "x.so");
  int warned_notplugin = log_has(VNRT_LOG_WARN, "libnotaplugin.so");
  int loaded_template = has_backend(ctx, "template");
  vnrt_context_destroy(ctx);

  unlink(garbage);
  unlink(notplugin);
  rmdir(dir);
  if (!warned_garbage || !warned_notplugin) dump_log();
  ck_assert_msg(warned_garbage, "no warning names the garbage file x.so");
  ck_assert_msg(warned_notplugin, "no warning names libnotaplugin.so (no entry symbol)");
  ck_assert_msg(loaded_template, "a broken file stopped the next directory's plugin loading");
}
END_TEST

/* A plugin built for backend API version 1 (nodes without params, another array stride) is
 * skipped with a warning that says why, and the context still works. */
START_TEST(version_1_plugin_is_refused_with_a_warning) {
  char dir[] = "/tmp/vnrt-test-plugin-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *lib = getenv("VNRT_TEST_OLDAPI_SO");
  ck_assert_msg(lib && lib[0], "VNRT_TEST_OLDAPI_SO is not set (tests/runtime/meson.build)");
  char copy[sizeof(dir) + 32];
  snprintf(copy, sizeof(copy), "%s/libvnrt_backend_oldapi.so", dir);
  ck_assert_msg(copy_file(lib, copy) == 0, "cannot copy %s: %s", lib, strerror(errno));
  vnrt_context *ctx = plugin_context(dir, 0);
  int warned = log_has(VNRT_LOG_WARN, "unsupported api_version");
  int loaded = has_backend(ctx, "oldapi");
  int cpu = has_backend(ctx, "cpu");
  vnrt_context_destroy(ctx);
  unlink(copy);
  rmdir(dir);
  if (!warned) dump_log();
  ck_assert_msg(warned, "no warning says the version-1 plugin's api_version is unsupported");
  ck_assert_msg(log_has2(VNRT_LOG_WARN, "api_version 1", "versions 2 to 3"),
                "the warning does not name the plugin's version and the versions served");
  ck_assert_msg(!loaded, "a version-1 plugin was registered");
  ck_assert_msg(cpu, "the context lost its cpu backend");
}
END_TEST

/* A plugin built against backend API 2 (vnrt 0.1.0's headers, tests/abi/plugin_v2.c) is still
 * served: its f32 add runs on it, reading this core's graphs through version 2's layout, and
 * the rest falls back to the CPU. Having no maturity member, it is experimental: "auto" keeps
 * the CPU although it reports an accelerator. */
START_TEST(version_2_plugin_is_served) {
  char dir[] = "/tmp/vnrt-test-plugin-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *lib = getenv("VNRT_TEST_V2_SO");
  ck_assert_msg(lib && lib[0], "VNRT_TEST_V2_SO is not set (tests/runtime/meson.build)");
  char copy[sizeof(dir) + 32];
  snprintf(copy, sizeof(copy), "%s/libvnrt_backend_apitwo.so", dir);
  ck_assert_msg(copy_file(lib, copy) == 0, "cannot copy %s: %s", lib, strerror(errno));
  vnrt_context *ctx = plugin_context(dir, 0);
  unlink(copy);
  rmdir(dir);
  if (!log_has2(VNRT_LOG_INFO, "'apitwo' (API 2, experimental", NULL)) dump_log();
  ck_assert_msg(log_has2(VNRT_LOG_INFO, "'apitwo' (API 2, experimental", NULL),
                "no log line says the API 2 plugin loaded as experimental");
  ck_assert_int_eq(unsetenv("VNRT_DEVICE"), 0);
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "auto", &dev));
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_str_eq(info.spec, "cpu");
  TU_OK(ctx, vnrt_device_select(ctx, "apitwo:0", &dev));
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_str_eq(info.name, "apitwo (f32 add)");
  ck_assert_int_eq(info.type, VNRT_DEVICE_TYPE_ACCELERATOR);

  /* h = x + x2 (on the plugin), y = linear(h, w) (on the CPU). */
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type xt = {VNRT_F32, 2, {T, K, 0, 0}}, wt = {VNRT_F32, 2, {N, K, 0, 0}};
  vnrt_value x, x2, w, h, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &xt, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "x2", &xt, 0, &x2));
  TU_OK(ctx, vnrt_graph_add_input(g, "w", &wt, 1, &w));
  const char *h_name = "h", *y_name = "y";
  vnrt_value xx[2] = {x, x2};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, xx, 2, NULL, 0, &h_name, &h, 1));
  vnrt_value hw[2] = {h, w};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, hw, 2, NULL, 0, &y_name, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
  vnrt_graph_destroy(g);
  vnrt_plan_info pinfo = {.struct_size = sizeof pinfo};
  TU_OK(ctx, vnrt_plan_get_info(plan, &pinfo));
  ck_assert_int_eq(pinfo.n_nodes, 2);
  ck_assert_int_eq(pinfo.n_fallback_nodes, 1); /* linear; add runs on the plugin */

  float xv[T * K], x2v[T * K], wv[N * K], yv[T * N];
  for (int i = 0; i < T * K; ++i) xv[i] = (float)((i * 7) % 11) * 0.25f - 1.0f;
  for (int i = 0; i < T * K; ++i) x2v[i] = (float)((i * 3) % 5) * 0.5f + 0.125f;
  for (int i = 0; i < N * K; ++i) wv[i] = (float)((i * 5) % 9) * 0.1875f - 0.75f;
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", xv, sizeof(xv)));
  TU_OK(ctx, vnrt_plan_set_input(plan, "x2", x2v, sizeof(x2v)));
  TU_OK(ctx, vnrt_plan_set_input(plan, "w", wv, sizeof(wv)));
  TU_OK(ctx, vnrt_plan_run(plan));
  TU_OK(ctx, vnrt_plan_read_output(plan, "y", yv, sizeof(yv)));
  for (int t = 0; t < T; ++t) {
    for (int n = 0; n < N; ++n) {
      double want = 0.0;
      for (int k = 0; k < K; ++k) {
        want += ((double)xv[t * K + k] + (double)x2v[t * K + k]) * (double)wv[n * K + k];
      }
      ck_assert_msg(fabs((double)yv[t * N + n] - want) <= 1e-5 * (1.0 + fabs(want)),
                    "y[%d][%d] = %.9g, expected %.9g", t, n, yv[t * N + n], want);
    }
  }
  vnrt_plan_destroy(plan);
  vnrt_context_destroy(ctx);
}
END_TEST

/* The template declares itself experimental: its device (an accelerator) is listed and can be
 * chosen by spec, or by $VNRT_DEVICE, but "auto" never picks it over the CPU. */
START_TEST(experimental_plugin_is_never_the_auto_default) {
  vnrt_context *ctx = plugin_context(plugin_dir(), 0);
  ck_assert_int_eq(unsetenv("VNRT_DEVICE"), 0);
  vnrt_device *dev = NULL;
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_select(ctx, NULL, &dev));
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_msg(strcmp(info.backend, "template") != 0, "auto chose %s", info.spec);
  TU_OK(ctx, vnrt_device_select(ctx, "template", &dev));
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_str_eq(info.spec, "template:0");
  ck_assert_int_eq(info.type, VNRT_DEVICE_TYPE_ACCELERATOR); /* outranks the CPU if stable */
  ck_assert_int_eq(setenv("VNRT_DEVICE", "template:0", 1), 0);
  TU_OK(ctx, vnrt_device_select(ctx, "auto", &dev));
  ck_assert_int_eq(unsetenv("VNRT_DEVICE"), 0);
  TU_OK(ctx, vnrt_device_get_info(dev, &info));
  ck_assert_str_eq(info.spec, "template:0");
  ck_assert_msg(log_has2(VNRT_LOG_INFO, "'template' (API 3, experimental", NULL),
                "no log line says the template loaded as experimental");
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(no_plugins_loads_nothing) {
  ck_assert_int_eq(setenv("VNRT_PLUGIN_PATH", plugin_dir(), 1), 0);
  vnrt_context *ctx = plugin_context(plugin_dir(), 1);
  ck_assert_msg(!has_backend(ctx, "template"), "no_plugins = 1 still registered 'template'");
  vnrt_device_info info = {.struct_size = sizeof info};
  ck_assert_ptr_null(find_listed(ctx, "template:0", &info));
  vnrt_device *dev = NULL;
  ck_assert_int_eq(vnrt_device_select(ctx, "template:0", &dev), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(dev);
  ck_assert(has_backend(ctx, "cpu"));
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("plugin");
  TCase *tc = tcase_create("template");
  tcase_add_test(tc, template_device_is_listed_with_its_info);
  tcase_add_test(tc, plugin_found_through_env_when_plugin_path_is_null);
  tcase_add_test(tc, no_fallback_fails_naming_op_and_device);
  tcase_add_test(tc, fallback_runs_every_node_on_the_cpu_correctly);
  tcase_add_test(tc, broken_plugin_files_are_skipped_with_a_warning);
  tcase_add_test(tc, version_1_plugin_is_refused_with_a_warning);
  tcase_add_test(tc, version_2_plugin_is_served);
  tcase_add_test(tc, experimental_plugin_is_never_the_auto_default);
  tcase_add_test(tc, no_plugins_loads_nothing);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
