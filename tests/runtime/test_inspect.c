/* Bring-up (vnrt/inspect.h): every node's placement, per-node times and the per-op table on
 * every device (cpu, vulkan:0, opencl:0 where built, the template plugin), shadow mode agreeing
 * everywhere on correct kernels, and naming — and saving for replay — the one node a test
 * plugin computes wrongly. */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "vnrt/inspect.h"
#include "vnrt/io.h"
#include "vnrt/vnrt.h"

#define LOG_MAX 256
static struct {
  int n;
  vnrt_log_level level[LOG_MAX];
  char text[LOG_MAX][1024];
} logged;

static void capture_log(void *user, vnrt_log_level level, const char *message) {
  (void)user;
  if (logged.n >= LOG_MAX) return;
  logged.level[logged.n] = level;
  snprintf(logged.text[logged.n], sizeof logged.text[0], "%s", message);
  logged.n++;
}

static const char *log_find(vnrt_log_level min, const char *a, const char *b) {
  for (int i = 0; i < logged.n; ++i) {
    if (logged.level[i] >= min && strstr(logged.text[i], a) && (!b || strstr(logged.text[i], b))) {
      return logged.text[i];
    }
  }
  return NULL;
}

/* A context that loads the template and buggy plugins and captures every message. */
static vnrt_context *plugin_context(void) {
  static char path[2048];
  const char *t = getenv("VNRT_TEST_PLUGIN_DIR"), *b = getenv("VNRT_TEST_BUGGY_DIR");
  ck_assert_msg(t && b, "VNRT_TEST_PLUGIN_DIR and VNRT_TEST_BUGGY_DIR must be set");
  snprintf(path, sizeof path, "%s:%s", t, b);
  vnrt_context_desc d = {0};
  d.plugin_path = path;
  d.log_fn = capture_log;
  d.log_level = VNRT_LOG_DEBUG;
  logged.n = 0;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  return ctx;
}

/* h = add(x, y); m = matmul(h, w); s = silu(m); t = add(s, h); output t. */
static vnrt_graph *small_graph(vnrt_context *ctx) {
  static const char text[] =
      "vnir 1\n"
      "input x: f32[4, 8]\ninput y: f32[4, 8]\nparam w: f32[8, 8]\n"
      "h = add(x, y)\nm = matmul(h, w)\ns = silu(m)\nt = add(s, h)\noutput t\n";
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, text, sizeof text - 1, "small", &g));
  return g;
}

static void bind_small(vnrt_context *ctx, vnrt_plan *plan) {
  float x[32], y[32], w[64];
  for (int i = 0; i < 32; ++i) x[i] = 0.1f * (float)(i % 7) - 0.3f, y[i] = 0.05f * (float)i;
  for (int i = 0; i < 64; ++i) w[i] = 0.02f * (float)((i * 5) % 11) - 0.1f;
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", x, sizeof x));
  TU_OK(ctx, vnrt_plan_set_input(plan, "y", y, sizeof y));
  TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w));
}

/* The specs the tests cover: every built-in device (as tu_device lists them in a context
 * without plugins), then the template and the buggy plugin. */
static char specs[16][32];
static int32_t n_spec;

static int32_t n_specs(vnrt_context *ctx) {
  (void)ctx;
  if (n_spec == 0) {
    vnrt_context *plain = tu_context();
    for (int32_t i = 0; i < tu_device_count(plain) && n_spec < 14; ++i) {
      snprintf(specs[n_spec++], sizeof specs[0], "%s", tu_device_spec(tu_device(plain, i)));
    }
    vnrt_context_destroy(plain);
    snprintf(specs[n_spec++], sizeof specs[0], "template:0");
    snprintf(specs[n_spec++], sizeof specs[0], "buggy:0");
  }
  return n_spec;
}

static vnrt_device *spec_device(vnrt_context *ctx, int32_t i) {
  n_specs(ctx);
  vnrt_device *d = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, specs[i], &d));
  return d;
}

START_TEST(nodes_list_placement_on_every_device) {
  vnrt_context *ctx = plugin_context();
  vnrt_graph *g = small_graph(ctx);
  for (int32_t i = 0; i < n_specs(ctx); ++i) {
    vnrt_device *dev = spec_device(ctx, i);
    vnrt_device_info di = {.struct_size = sizeof di};
    TU_OK(ctx, vnrt_device_get_info(dev, &di));
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
    ck_assert_int_eq(vnrt_plan_node_count(plan), 4);
    static const char *const names[] = {"h", "m", "s", "t"};
    static const vnrt_op ops[] = {VNRT_OP_ADD, VNRT_OP_MATMUL, VNRT_OP_SILU, VNRT_OP_ADD};
    bool is_template = strcmp(di.spec, "template:0") == 0, is_buggy = !strcmp(di.spec, "buggy:0");
    for (int32_t s = 0; s < 4; ++s) {
      vnrt_node_info ni = {.struct_size = sizeof ni};
      TU_OK(ctx, vnrt_plan_get_node(plan, s, &ni));
      ck_assert_str_eq(ni.name, names[s]);
      ck_assert_int_eq(ni.op, ops[s]);
      ck_assert_int_eq(ni.n_inputs, s == 2 ? 1 : 2);
      ck_assert_int_eq(ni.outputs[0].dims[0], 4);
      ck_assert_int_eq(ni.outputs[0].dims[1], 8);
      /* The template runs nothing; the buggy plugin everything but matmul. */
      bool on_cpu = is_template || (is_buggy && ops[s] == VNRT_OP_MATMUL);
      ck_assert_msg(!strcmp(ni.device, on_cpu ? "cpu" : di.spec), "%s node %s on %s", di.spec,
                    names[s], ni.device);
      ck_assert_int_eq(ni.fallback, on_cpu && strcmp(di.spec, "cpu") != 0);
      ck_assert_int_eq(ni.runs, 0);
      ck_assert(ni.tolerance == (ops[s] == VNRT_OP_MATMUL ? 1e-6 : 1e-7));
    }
    /* The buggy plugin: add | matmul on the cpu | silu, add = 3 partitions. */
    vnrt_node_info last = {.struct_size = sizeof last};
    TU_OK(ctx, vnrt_plan_get_node(plan, 3, &last));
    ck_assert_int_eq(last.partition, is_buggy ? 2 : 0);
    vnrt_node_info bad = {.struct_size = sizeof bad - 1};
    ck_assert_int_eq(vnrt_plan_get_node(plan, 0, &bad), VNRT_ERROR_INVALID_ARGUMENT);
    bad.struct_size = sizeof bad;
    ck_assert_int_eq(vnrt_plan_get_node(plan, 4, &bad), VNRT_ERROR_OUT_OF_RANGE);
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(profile_times_every_node_through_api_table_and_log) {
  vnrt_context *ctx = plugin_context();
  vnrt_graph *g = small_graph(ctx);
  for (int32_t i = 0; i < n_specs(ctx); ++i) {
    vnrt_device *dev = spec_device(ctx, i);
    vnrt_plan_desc pd = {0};
    pd.profile_nodes = 1;
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &pd, &plan));
    bind_small(ctx, plan);
    logged.n = 0;
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_run(plan));
    uint64_t sum = 0;
    for (int32_t s = 0; s < 4; ++s) {
      vnrt_node_info ni = {.struct_size = sizeof ni};
      TU_OK(ctx, vnrt_plan_get_node(plan, s, &ni));
      ck_assert_int_eq(ni.runs, 2);
      ck_assert_uint_ge(ni.total_ns, ni.last_ns);
      sum += ni.last_ns;
    }
    ck_assert_uint_gt(sum, 0);
    /* One debug line per node and run, naming node, op, shapes and device. */
    ck_assert_msg(log_find(VNRT_LOG_DEBUG, "'m' (matmul f32[4, 8], f32[8, 8] -> f32[4, 8])", "us"),
                  "no per-node log line");
    char *text = NULL;
    TU_OK(ctx, vnrt_plan_print_profile(plan, VNRT_PROFILE_NODES | VNRT_PROFILE_OPS, &text));
    ck_assert_ptr_nonnull(strstr(text, "time (us)"));
    ck_assert_ptr_nonnull(strstr(text, "share"));
    ck_assert_ptr_nonnull(strstr(text, "f32[4, 8], f32[8, 8] -> f32[4, 8]"));
    /* The per-op table: add has 2 nodes. */
    const char *row = strstr(text, "\nadd ");
    ck_assert_ptr_nonnull(row);
    int nodes = 0;
    ck_assert_int_eq(sscanf(row + 5, "%d", &nodes), 1);
    ck_assert_int_eq(nodes, 2);
    ck_assert_ptr_nonnull(strstr(text, "\ntotal "));
    vnrt_free(ctx, text);
    vnrt_plan_destroy(plan);
  }
  /* Without profiling: placement only, and the table says why there are no times. */
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, spec_device(ctx, 0), NULL, &plan));
  char *text = NULL;
  TU_OK(ctx, vnrt_plan_print_profile(plan, VNRT_PROFILE_OPS, &text));
  ck_assert_ptr_nonnull(strstr(text, "not profiled"));
  vnrt_free(ctx, text);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Profiled plans take each node's time from the device itself where its backend has
 * vnrt_backend_i.run_timed (cpu, vulkan, opencl, the template; the CPU fallback of a plugin
 * without it too) and the host clock elsewhere (the buggy plugin's own nodes); results are the
 * plain run's. */
START_TEST(profile_takes_the_device_clock_where_the_backend_has_one) {
  unsetenv("VNRT_BUGGY_NODE");
  vnrt_context *ctx = plugin_context();
  vnrt_graph *g = small_graph(ctx);
  for (int32_t i = 0; i < n_specs(ctx); ++i) {
    vnrt_device *dev = spec_device(ctx, i);
    bool is_buggy = strcmp(specs[i], "buggy:0") == 0;
    float want[32], got[32];
    vnrt_plan *plain = NULL, *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plain));
    bind_small(ctx, plain);
    TU_OK(ctx, vnrt_plan_run(plain));
    TU_OK(ctx, vnrt_plan_read_output(plain, "t", want, sizeof want));
    vnrt_plan_destroy(plain);
    vnrt_plan_desc pd = {0};
    pd.profile_nodes = 1;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &pd, &plan));
    bind_small(ctx, plan);
    for (int run = 0; run < 2; ++run) {
      logged.n = 0;
      TU_OK(ctx, vnrt_plan_run(plan));
      memset(got, 0, sizeof got);
      TU_OK(ctx, vnrt_plan_read_output(plan, "t", got, sizeof got));
      for (int k = 0; k < 32; ++k) {
        if (!(fabsf(got[k] - want[k]) <= 1e-5f * (1.0f + fabsf(want[k])))) {
          ck_abort_msg("%s run %d: t[%d] = %g, the plain run's %g", specs[i], run, k,
                       (double)got[k], (double)want[k]);
        }
      }
      vnrt_run_stats st = {.struct_size = sizeof st};
      TU_OK(ctx, vnrt_plan_get_run_stats(plan, &st));
      uint64_t sum = 0;
      for (int32_t s = 0; s < 4; ++s) {
        vnrt_node_info ni = {.struct_size = sizeof ni};
        TU_OK(ctx, vnrt_plan_get_node(plan, s, &ni));
        ck_assert_int_eq(ni.runs, run + 1);
        /* Every node does device work: a time of 0 means the timer was not read. */
        ck_assert_msg(ni.last_ns > 0, "%s node %s: no time", specs[i], ni.name);
        bool own = strcmp(ni.device, specs[i]) == 0;
        vnrt_node_clock want_clock =
            is_buggy && own ? VNRT_NODE_CLOCK_HOST : VNRT_NODE_CLOCK_DEVICE;
        ck_assert_msg(ni.clock == want_clock, "%s node %s on %s: clock %s, expected %s", specs[i],
                      ni.name, ni.device, vnrt_node_clock_name(ni.clock),
                      vnrt_node_clock_name(want_clock));
        ck_assert(ni.clock != VNRT_NODE_CLOCK_DEVICE ||
                  log_find(VNRT_LOG_DEBUG, ni.name, "(device clock)"));
        sum += ni.last_ns;
      }
      /* Not a timing assertion: device times in ns lie within the run (a unit error, ticks or
       * us taken for ns, would not). */
      ck_assert_msg(sum <= st.wall_ns + 5000000, "%s: nodes sum to %llu ns in a run of %llu ns",
                    specs[i], (unsigned long long)sum, (unsigned long long)st.wall_ns);
    }
    char *text = NULL;
    TU_OK(ctx, vnrt_plan_print_profile(plan, VNRT_PROFILE_NODES, &text));
    ck_assert_ptr_nonnull(strstr(text, " clock "));
    ck_assert_msg(strstr(text, " device "), "%s", text);
    ck_assert(!is_buggy || strstr(text, " host "));
    vnrt_free(ctx, text);
    vnrt_plan_destroy(plan);
  }
  ck_assert_str_eq(vnrt_node_clock_name(VNRT_NODE_CLOCK_NONE), "none");
  ck_assert_str_eq(vnrt_node_clock_name((vnrt_node_clock)9), "?");
  /* Unprofiled: no clock. */
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, spec_device(ctx, 0), NULL, &plan));
  bind_small(ctx, plan);
  TU_OK(ctx, vnrt_plan_run(plan));
  vnrt_node_info ni = {.struct_size = sizeof ni};
  TU_OK(ctx, vnrt_plan_get_node(plan, 0, &ni));
  ck_assert_int_eq(ni.clock, VNRT_NODE_CLOCK_NONE);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A device whose run_timed declines (no timer) is timed on the host clock, and told once. */
START_TEST(profile_falls_back_to_the_host_clock_when_the_device_declines) {
  unsetenv("VNRT_BUGGY_NODE");
  setenv("VNRT_BUGGY_DECLINE_TIMER", "1", 1);
  vnrt_context *ctx = plugin_context();
  unsetenv("VNRT_BUGGY_DECLINE_TIMER");
  vnrt_graph *g = small_graph(ctx);
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "buggy:0", &dev));
  vnrt_plan_desc pd = {0};
  pd.profile_nodes = 1;
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &pd, &plan));
  bind_small(ctx, plan);
  logged.n = 0;
  TU_OK(ctx, vnrt_plan_run(plan));
  TU_OK(ctx, vnrt_plan_run(plan));
  int told = 0;
  for (int i = 0; i < logged.n; ++i) told += strstr(logged.text[i], "does not time nodes") != NULL;
  ck_assert_int_eq(told, 1);
  ck_assert_ptr_nonnull(log_find(VNRT_LOG_INFO, "does not time nodes", "no timer"));
  for (int32_t s = 0; s < 4; ++s) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    TU_OK(ctx, vnrt_plan_get_node(plan, s, &ni));
    ck_assert_int_eq(ni.runs, 2);
    ck_assert_uint_gt(ni.last_ns, 0);
    /* The matmul falls back to the cpu, which times it itself. */
    ck_assert_int_eq(ni.clock,
                     ni.op == VNRT_OP_MATMUL ? VNRT_NODE_CLOCK_DEVICE : VNRT_NODE_CLOCK_HOST);
  }
  ck_assert_str_eq(vnrt_context_last_error(ctx), "");
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(shadow_agrees_on_correct_kernels_everywhere) {
  unsetenv("VNRT_BUGGY_NODE");
  vnrt_context *ctx = plugin_context();
  vnrt_graph *g = small_graph(ctx);
  for (int32_t i = 0; i < n_specs(ctx); ++i) {
    vnrt_plan_desc pd = {0};
    pd.shadow = VNRT_SHADOW_CPU;
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, spec_device(ctx, i), &pd, &plan));
    bind_small(ctx, plan);
    TU_OK(ctx, vnrt_plan_run(plan));
    vnrt_shadow_report r = {.struct_size = sizeof r};
    TU_OK(ctx, vnrt_plan_get_shadow_report(plan, &r));
    ck_assert_int_eq(r.enabled, 1);
    ck_assert_int_eq(r.n_checked, 4);
    ck_assert_int_eq(r.n_failed, 0);
    ck_assert_int_eq(r.first_failed, -1);
    ck_assert_str_eq(r.saved, "");
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && st.st_size > 0;
}

START_TEST(shadow_names_and_saves_the_node_a_plugin_gets_wrong) {
  char dir[] = "/tmp/vnrt_shadow.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  setenv("VNRT_BUGGY_NODE", "t", 1); /* the plugin's add is wrong on node t only */
  vnrt_context *ctx = plugin_context();
  vnrt_graph *g = small_graph(ctx);
  vnrt_device *dev = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "buggy:0", &dev));
  vnrt_plan_desc pd = {0};
  pd.shadow = VNRT_SHADOW_CPU;
  pd.shadow_dir = dir;
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &pd, &plan));
  bind_small(ctx, plan);
  TU_OK(ctx, vnrt_plan_run(plan)); /* shadow mode reports; the run itself succeeds */
  vnrt_shadow_report r = {.struct_size = sizeof r};
  TU_OK(ctx, vnrt_plan_get_shadow_report(plan, &r));
  ck_assert_int_eq(r.n_checked, 4);
  ck_assert_int_eq(r.n_failed, 1);
  ck_assert_int_eq(r.first_failed, 3);
  for (int32_t s = 0; s < 4; ++s) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    TU_OK(ctx, vnrt_plan_get_node(plan, s, &ni));
    ck_assert_int_eq(ni.shadow_checked, 1);
    ck_assert_msg(ni.shadow_failed == (s == 3), "node %s failed=%d", ni.name, ni.shadow_failed);
    if (s == 3) {
      ck_assert(ni.shadow_error > ni.tolerance);
      ck_assert_ptr_nonnull(strstr(ni.shadow_note, "element 0"));
    } else {
      ck_assert(ni.shadow_error <= ni.tolerance);
    }
  }
  /* The log names the node, its op and shapes, the error and how to replay it. */
  ck_assert_msg(
      log_find(VNRT_LOG_WARN, "node 't' (add f32[4, 8], f32[4, 8] -> f32[4, 8])", "buggy:0"),
      "no warning naming node t");
  ck_assert_ptr_nonnull(log_find(VNRT_LOG_WARN, "replay: vnrt-run", "--input in1="));
  char path[512];
  snprintf(path, sizeof path, "%s/t", dir);
  ck_assert_str_eq(r.saved, path);
  const char *const files[] = {"t.vnir", "t.in0.npy", "t.in1.npy", "t.out0.device.npy",
                               "t.out0.ref.npy"};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; ++k) {
    snprintf(path, sizeof path, "%s/%s", dir, files[k]);
    ck_assert_msg(file_exists(path), "%s was not saved", path);
  }
  /* Replay: the saved graph and inputs reproduce the bug on the plugin, and the reference
   * result on the cpu. */
  vnrt_graph *one = NULL;
  snprintf(path, sizeof path, "%s/t.vnir", dir);
  TU_OK(ctx, vnrt_graph_parse_file(ctx, path, &one));
  float dev_out[32], cpu_out[32], saved_ref[32];
  setenv("VNRT_BUGGY_OP", "add", 1); /* the saved node is called out0: bug every add */
  for (int k = 0; k < 2; ++k) {
    vnrt_device *d = dev;
    if (k == 1) TU_OK(ctx, vnrt_device_select(ctx, "cpu", &d));
    vnrt_plan *rp = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, one, d, NULL, &rp));
    for (int in = 0; in < 2; ++in) {
      vnrt_tensor_type t;
      void *data = NULL;
      snprintf(path, sizeof path, "%s/t.in%d.npy", dir, in);
      TU_OK(ctx, vnrt_npy_read(ctx, path, &t, &data));
      char name[8];
      snprintf(name, sizeof name, "in%d", in);
      TU_OK(ctx, vnrt_plan_set_input(rp, name, data, vnrt_tensor_type_bytes(&t)));
      vnrt_free(ctx, data);
    }
    TU_OK(ctx, vnrt_plan_run(rp));
    TU_OK(ctx, vnrt_plan_read_output(rp, "out0", k ? cpu_out : dev_out, sizeof dev_out));
    vnrt_plan_destroy(rp);
  }
  vnrt_tensor_type t;
  void *data = NULL;
  snprintf(path, sizeof path, "%s/t.out0.ref.npy", dir);
  TU_OK(ctx, vnrt_npy_read(ctx, path, &t, &data));
  memcpy(saved_ref, data, sizeof saved_ref);
  vnrt_free(ctx, data);
  ck_assert_float_eq_tol(dev_out[0] - cpu_out[0], 0.5f, 1e-6f);
  for (int k = 0; k < 32; ++k) {
    if (cpu_out[k] != saved_ref[k]) ck_abort_msg("replayed cpu element %d differs", k);
  }
  vnrt_graph_destroy(one);
  unsetenv("VNRT_BUGGY_OP");
  /* A second run reports again but saves once. */
  TU_OK(ctx, vnrt_plan_run(plan));
  TU_OK(ctx, vnrt_plan_get_shadow_report(plan, &r));
  ck_assert_int_eq(r.n_failed, 1);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  unsetenv("VNRT_BUGGY_NODE");
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(shadow_and_profile_from_the_environment) {
  vnrt_context *ctx = plugin_context();
  vnrt_graph *g = small_graph(ctx);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  setenv("VNRT_SHADOW", "cpu", 1);
  setenv("VNRT_PROFILE", "1", 1);
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, NULL, &plan));
  bind_small(ctx, plan);
  TU_OK(ctx, vnrt_plan_run(plan));
  vnrt_shadow_report r = {.struct_size = sizeof r};
  TU_OK(ctx, vnrt_plan_get_shadow_report(plan, &r));
  ck_assert_int_eq(r.enabled, 1);
  ck_assert_int_eq(r.n_checked, 4);
  vnrt_node_info ni = {.struct_size = sizeof ni};
  TU_OK(ctx, vnrt_plan_get_node(plan, 0, &ni));
  ck_assert_int_eq(ni.runs, 1);
  ck_assert_int_eq(ni.clock, VNRT_NODE_CLOCK_HOST); /* shadow mode: node by node */
  vnrt_plan_destroy(plan);
  /* The desc wins over the environment. */
  vnrt_plan_desc pd = {0};
  pd.shadow = VNRT_SHADOW_OFF;
  pd.profile_nodes = -1;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, &pd, &plan));
  bind_small(ctx, plan);
  TU_OK(ctx, vnrt_plan_run(plan));
  TU_OK(ctx, vnrt_plan_get_shadow_report(plan, &r));
  ck_assert_int_eq(r.enabled, 0);
  ck_assert_int_eq(r.first_failed, -1);
  TU_OK(ctx, vnrt_plan_get_node(plan, 0, &ni));
  ck_assert_int_eq(ni.runs, 0);
  vnrt_plan_destroy(plan);
  /* A bad value is an error naming the variable. */
  setenv("VNRT_SHADOW", "gpu", 1);
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu, NULL, &plan), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "VNRT_SHADOW"));
  pd.shadow = (vnrt_shadow_mode)7;
  unsetenv("VNRT_SHADOW");
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu, &pd, &plan), VNRT_ERROR_INVALID_ARGUMENT);
  unsetenv("VNRT_PROFILE");
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* vnrt_result_tolerance: the op's bound for f32 results, that bound plus one rounding step's
 * share for bf16 and f16 (docs/ops.md, "Agreement between backends"), exact for integers and
 * codes. */
START_TEST(result_tolerance_by_dtype) {
  const vnrt_op ops[2] = {VNRT_OP_ADD, VNRT_OP_LINEAR};
  for (int i = 0; i < 2; ++i) {
    const double tol = vnrt_op_tolerance(ops[i]);
    ck_assert(vnrt_result_tolerance(ops[i], VNRT_F32) == tol);
    ck_assert(fabs(vnrt_result_tolerance(ops[i], VNRT_BF16) - (tol + sqrt(tol) / 128.0)) < 1e-18);
    ck_assert(fabs(vnrt_result_tolerance(ops[i], VNRT_F16) - (tol + sqrt(tol) / 1024.0)) < 1e-18);
    ck_assert(vnrt_result_tolerance(ops[i], VNRT_I32) == 0.0);
    ck_assert(vnrt_result_tolerance(ops[i], VNRT_E4M3) == 0.0);
  }
  /* Ops that only move or convert values are not widened: a truncating cast still fails. */
  ck_assert(vnrt_result_tolerance(VNRT_OP_CAST, VNRT_F16) == vnrt_op_tolerance(VNRT_OP_CAST));
  ck_assert(vnrt_result_tolerance(VNRT_OP_SLICE, VNRT_BF16) == vnrt_op_tolerance(VNRT_OP_SLICE));
  ck_assert(vnrt_result_tolerance(VNRT_OP_KV_WRITE, VNRT_I32) == 0.0);
  /* add: 1e-7 + sqrt(1e-7)/128 */
  ck_assert(vnrt_result_tolerance(VNRT_OP_ADD, VNRT_BF16) > 2.5e-6);
  ck_assert(vnrt_result_tolerance(VNRT_OP_ADD, VNRT_BF16) < 2.6e-6);
}
END_TEST

int main(void) {
  Suite *s = suite_create("inspect");
  TCase *tc = tcase_create("inspect");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, result_tolerance_by_dtype);
  tcase_add_test(tc, nodes_list_placement_on_every_device);
  tcase_add_test(tc, profile_times_every_node_through_api_table_and_log);
  tcase_add_test(tc, profile_takes_the_device_clock_where_the_backend_has_one);
  tcase_add_test(tc, profile_falls_back_to_the_host_clock_when_the_device_declines);
  tcase_add_test(tc, shadow_agrees_on_correct_kernels_everywhere);
  tcase_add_test(tc, shadow_names_and_saves_the_node_a_plugin_gets_wrong);
  tcase_add_test(tc, shadow_and_profile_from_the_environment);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
