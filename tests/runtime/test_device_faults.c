/* Device-side fault injection (runtime/fault.h, docs/robustness.md): on every device, each
 * device call a small plan makes (open, alloc, write, read, map, compile, run) is failed in
 * turn; the failure is a clean status naming the device and the operation, nothing leaks (host
 * blocks through a counting allocator, device buffers and execs through the injector's
 * counts), and once the fault is cleared the same plan (or a new one) gives the clean run's
 * results. A device lost mid-run gives VNRT_ERROR_DEVICE and leaves the context's other devices
 * working. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "test_util.h"

enum { R = 4, C = 16, LAYERS = 3, NX = R * C, NW = C * C };

static float xin[NX], win[LAYERS][NW];

/* y = linear(linear(linear(x, w0), w1), w2), c2 = c + y with state c <- c2; outputs y and c2.
 * The params are what a tight budget streams, through the copy stream's thread. */
static vnrt_graph *small_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {R, C}}, tw = {VNRT_F32, 2, {C, C}};
  vnrt_value h, c, c2;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &h));
  for (int l = 0; l < LAYERS; ++l) {
    char wn[8], ln[8];
    snprintf(wn, sizeof wn, "w%d", l);
    snprintf(ln, sizeof ln, l == LAYERS - 1 ? "y" : "h%d", l);
    vnrt_value w;
    TU_OK(ctx, vnrt_graph_add_input(g, wn, &tw, 1, &w));
    vnrt_value in[2] = {h, w};
    const char *names[1] = {ln};
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, in, 2, NULL, 0, names, &h, 1));
  }
  TU_OK(ctx, vnrt_graph_add_state(g, "c", &tx, &c));
  const char *nc[1] = {"c2"};
  vnrt_value in2[2] = {c, h};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, in2, 2, NULL, 0, nc, &c2, 1));
  TU_OK(ctx, vnrt_graph_set_state_update(g, c, c2));
  TU_OK(ctx, vnrt_graph_add_output(g, h));
  TU_OK(ctx, vnrt_graph_add_output(g, c2));
  return g;
}

typedef struct results {
  float y[NX], c2[NX], c[NX];
} results;

/* Creates the plan if *plan is NULL, binds, runs once and reads everything back; stops at the
 * first failure, naming its step. */
static vnrt_status sequence(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev,
                            const vnrt_plan_desc *desc, vnrt_plan **plan, results *r,
                            const char **step) {
  vnrt_status s = VNRT_OK;
  memset(r, 0, sizeof *r);
  *step = "create";
  if (!*plan && (s = vnrt_plan_create(ctx, g, dev, desc, plan)) != VNRT_OK) return s;
  *step = "bind x";
  if ((s = vnrt_plan_set_input(*plan, "x", xin, sizeof xin)) != VNRT_OK) return s;
  for (int l = 0; l < LAYERS; ++l) {
    static const char *const names[LAYERS] = {"bind w0", "bind w1", "bind w2"};
    *step = names[l];
    if ((s = vnrt_plan_set_input(*plan, names[l] + 5, win[l], sizeof win[l])) != VNRT_OK) return s;
  }
  *step = "run";
  if ((s = vnrt_plan_run(*plan)) != VNRT_OK) return s;
  *step = "read y";
  if ((s = vnrt_plan_read_output(*plan, "y", r->y, sizeof r->y)) != VNRT_OK) return s;
  *step = "read c2";
  if ((s = vnrt_plan_read_output(*plan, "c2", r->c2, sizeof r->c2)) != VNRT_OK) return s;
  *step = "read state c";
  return vnrt_plan_read_state(*plan, "c", r->c, sizeof r->c);
}

static void check_same(const results *got, const results *want, const char *what) {
  if (memcmp(got, want, sizeof *got) != 0) {
    ck_abort_msg("%s: results differ from the clean run's (y[0] %g vs %g, c[0] %g vs %g)", what,
                 (double)got->y[0], (double)want->y[0], (double)got->c[0], (double)want->c[0]);
  }
}

/* The contexts here log nothing (injected failures are expected). */
static void quiet_log(void *user, vnrt_log_level level, const char *msg) {
  (void)user, (void)level, (void)msg;
}

static vnrt_context *counting_context(tu_alloc *a) {
  *a = (tu_alloc){.countdown = -1};
  vnrt_context_desc d = {0};
  d.allocator = tu_allocator(a);
  d.log_fn = quiet_log;
  d.log_level = VNRT_LOG_ERROR;
  d.no_plugins = 1;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  return ctx;
}

static void init_data(void) {
  for (int i = 0; i < NX; ++i) xin[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
  for (int i = 0; i < LAYERS * NW; ++i) win[i / NW][i % NW] = (float)((i * 53) % 29) / 32.0f - 0.4f;
}

static void check_no_device_leak(vnrt_context *ctx, const char *what) {
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_device *d = NULL;
    TU_OK(ctx, vnrt_device_get(ctx, i, &d));
    int64_t bufs = -1, execs = -1;
    vn_fault_live(d, &bufs, &execs);
    if (bufs != 0 || execs != 0) {
      ck_abort_msg("%s: %s keeps %lld buffers and %lld execs", what, d->info.spec, (long long)bufs,
                   (long long)execs);
    }
  }
}

/* Every call of every point that the life of a plan for target makes on dev (the target, or the
 * CPU serving its fallback nodes), failed in turn, with the params resident or streamed. */
static void fail_every_call(vnrt_device *target, vnrt_device *dev, vnrt_context *ctx, tu_alloc *a,
                            bool streamed) {
  const char *spec = dev->info.spec;
  vnrt_graph *g = small_graph(ctx);
  vnrt_plan_desc desc = {0};
  /* The clean run, which also opens the devices and warms the backends' caches. */
  results clean, got;
  const char *step = "";
  vnrt_plan *plan = NULL;
  TU_OK(ctx, sequence(ctx, g, target, &desc, &plan, &clean, &step));
  if (streamed) {
    vnrt_plan_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    desc.device_memory_limit = info.device_bytes - sizeof win[0];
    vnrt_plan_destroy(plan);
    plan = NULL;
    TU_OK(ctx, sequence(ctx, g, target, &desc, &plan, &got, &step));
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    ck_assert_int_ge(info.n_streamed_params, 1);
    check_same(&got, &clean, "streamed, no fault");
  }
  vnrt_plan_destroy(plan);
  plan = NULL;
  check_no_device_leak(ctx, "clean run");
  long live = a->live;
  /* Calls per point of one plan's life (create, bind, run, read). */
  int64_t before[VN_FAULT_POINTS], calls[VN_FAULT_POINTS];
  for (int pt = 0; pt < VN_FAULT_POINTS; ++pt) before[pt] = vn_fault_calls(dev, pt);
  TU_OK(ctx, sequence(ctx, g, target, &desc, &plan, &got, &step));
  vnrt_plan_destroy(plan);
  plan = NULL;
  for (int pt = 0; pt < VN_FAULT_POINTS; ++pt) calls[pt] = vn_fault_calls(dev, pt) - before[pt];
  ck_assert_int_eq(calls[VN_FAULT_OPEN], 0); /* opened once per context */
  ck_assert_int_ge(calls[VN_FAULT_ALLOC], 1);
  ck_assert_int_ge(calls[VN_FAULT_WRITE], 2);
  if (target == dev && strcmp(dev->info.backend, "template") != 0) { /* it runs the nodes */
    ck_assert_int_ge(calls[VN_FAULT_READ], 2);
    ck_assert_int_ge(calls[VN_FAULT_COMPILE], 1);
    ck_assert_int_ge(calls[VN_FAULT_RUN], 1);
  }
  printf(
      "%s%s%s: calls per plan: alloc %lld, write %lld, read %lld, map %lld, compile %lld, run "
      "%lld\n",
      target == dev ? "" : "fallback on ", spec, streamed ? " (streamed param)" : "",
      (long long)calls[VN_FAULT_ALLOC], (long long)calls[VN_FAULT_WRITE],
      (long long)calls[VN_FAULT_READ], (long long)calls[VN_FAULT_MAP],
      (long long)calls[VN_FAULT_COMPILE], (long long)calls[VN_FAULT_RUN]);

  for (int pt = VN_FAULT_ALLOC; pt < VN_FAULT_POINTS; ++pt) {
    const char *call = pt == VN_FAULT_ALLOC     ? "buffer_alloc"
                       : pt == VN_FAULT_WRITE   ? "buffer_write"
                       : pt == VN_FAULT_READ    ? "buffer_read"
                       : pt == VN_FAULT_MAP     ? "buffer_host_ptr"
                       : pt == VN_FAULT_COMPILE ? "compile"
                                                : "run";
    char steps[512] = "";
    for (int64_t n = 1; n <= calls[pt]; ++n) {
      TU_OK(ctx, vn_fault_set(dev, pt, n, false));
      int64_t at = vn_fault_calls(dev, pt);
      vnrt_status s = sequence(ctx, g, target, &desc, &plan, &got, &step);
      if (vn_fault_calls(dev, pt) < at + n) {
        ck_abort_msg("%s %s #%lld: the call was never made", spec, call, (long long)n);
      }
      if (pt == VN_FAULT_MAP) {
        /* A buffer that will not map is copied through buffer_read and buffer_write. */
        if (s != VNRT_OK) {
          ck_abort_msg("%s map #%lld: %s at %s: %s", spec, (long long)n, vnrt_status_string(s),
                       step, vnrt_context_last_error(ctx));
        }
        check_same(&got, &clean, "a failed map");
      } else {
        vnrt_status want = pt == VN_FAULT_ALLOC ? VNRT_ERROR_OUT_OF_MEMORY : VNRT_ERROR_DEVICE;
        const char *msg = vnrt_context_last_error(ctx);
        if (s != want || !strstr(msg, spec) || !strstr(msg, call) || !strstr(msg, "injected")) {
          ck_abort_msg("%s %s #%lld: %s at %s, want %s naming the device and the call: \"%s\"",
                       spec, call, (long long)n, vnrt_status_string(s), step,
                       vnrt_status_string(want), msg);
        }
        size_t used = strlen(steps);
        if (used + 20 < sizeof steps && !strstr(steps, step)) {
          snprintf(steps + used, sizeof steps - used, "%s%s", used ? ", " : "", step);
        }
      }
      vn_fault_clear(dev);
      /* The same plan when it was made (its states are undefined after a failed run:
       * docs/robustness.md), else a new one, gives the clean results. */
      if (plan) TU_OK(ctx, vnrt_plan_reset_state(plan));
      s = sequence(ctx, g, target, &desc, &plan, &got, &step);
      if (s != VNRT_OK) {
        ck_abort_msg("%s %s #%lld, cleared: %s at %s: %s", spec, call, (long long)n,
                     vnrt_status_string(s), step, vnrt_context_last_error(ctx));
      }
      check_same(&got, &clean, "after a cleared fault");
      vnrt_plan_destroy(plan);
      plan = NULL;
      check_no_device_leak(ctx, call);
      if (a->live != live) {
        ck_abort_msg("%s %s #%lld: %ld host blocks live after the plan is gone, %ld before", spec,
                     call, (long long)n, a->live, live);
      }
    }
    if (pt != VN_FAULT_MAP && calls[pt] > 0) printf("  %s: fails %s\n", call, steps);
  }
  vnrt_graph_destroy(g);
}

START_TEST(every_device_call_fails_cleanly_and_the_plan_recovers) {
  init_data();
  tu_alloc a;
  vnrt_context *ctx = counting_context(&a);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    fail_every_call(dev, dev, ctx, &a, false);
    fail_every_call(dev, dev, ctx, &a, true);
  }
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(a.live, 0);
}
END_TEST

START_TEST(a_failed_device_open_is_a_device_error_and_a_retry_opens_it) {
  init_data();
  tu_alloc a;
  vnrt_context *probe = counting_context(&a);
  int32_t n = tu_device_count(probe);
  vnrt_context_destroy(probe);
  for (int32_t di = 0; di < n; ++di) {
    vnrt_context *ctx = counting_context(&a);
    vnrt_device *dev = tu_device(ctx, di);
    const char *spec = dev->info.spec;
    vnrt_graph *g = small_graph(ctx);
    TU_OK(ctx, vn_fault_set(dev, VN_FAULT_OPEN, 1, false));
    vnrt_plan *plan = NULL;
    ck_assert_int_eq(vnrt_plan_create(ctx, g, dev, NULL, &plan), VNRT_ERROR_DEVICE);
    ck_assert_ptr_null(plan);
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(strstr(msg, spec) && strstr(msg, "device_open"), "%s", msg);
    check_no_device_leak(ctx, "failed open");
    vn_fault_clear(dev);
    results got;
    const char *step = "";
    TU_OK(ctx, sequence(ctx, g, dev, NULL, &plan, &got, &step));
    vnrt_plan_destroy(plan);
    vnrt_graph_destroy(g);
    vnrt_context_destroy(ctx);
    ck_assert_int_eq(a.live, 0);
  }
}
END_TEST

START_TEST(a_device_lost_mid_run_leaves_the_other_devices_working) {
  init_data();
  tu_alloc a;
  vnrt_context *ctx = counting_context(&a);
  int32_t n = tu_device_count(ctx);
  vnrt_graph *g = small_graph(ctx);
  results clean[8], got;
  const char *step = "";
  vnrt_plan *plans[8] = {0};
  ck_assert_int_le(n, 8);
  for (int32_t di = 0; di < n; ++di) {
    TU_OK(ctx, sequence(ctx, g, tu_device(ctx, di), NULL, &plans[di], &clean[di], &step));
  }
  for (int32_t lost = 0; lost < n; ++lost) {
    vnrt_device *dev = tu_device(ctx, lost);
    const char *spec = dev->info.spec;
    /* Lost at its first submit of the next run: the run fails, and so does every later call
     * on that device. */
    TU_OK(ctx, vn_fault_set(dev, VN_FAULT_RUN, 1, true));
    ck_assert_int_eq(vnrt_plan_run(plans[lost]), VNRT_ERROR_DEVICE);
    ck_assert_msg(strstr(vnrt_context_last_error(ctx), spec), "%s", vnrt_context_last_error(ctx));
    ck_assert_int_eq(vnrt_plan_run(plans[lost]), VNRT_ERROR_DEVICE);
    ck_assert_msg(strstr(vnrt_context_last_error(ctx), "lost"), "%s", vnrt_context_last_error(ctx));
    float c[NX];
    ck_assert_int_eq(vnrt_plan_read_state(plans[lost], "c", c, sizeof c), VNRT_ERROR_DEVICE);
    ck_assert_int_eq(vnrt_plan_read_output(plans[lost], "y", c, sizeof c),
                     VNRT_ERROR_INVALID_ARGUMENT); /* no successful run to read from */
    vnrt_plan *fresh = NULL;
    ck_assert_int_eq(vnrt_plan_create(ctx, g, dev, NULL, &fresh), VNRT_ERROR_DEVICE);
    ck_assert_ptr_null(fresh);
    /* The other devices: their existing plans and new ones still run, with the same results.
     * A plan whose target is another device keeps working only while it uses nothing of the
     * lost one (the CPU serves every plan's fallback, which these plans do not need). */
    for (int32_t other = 0; other < n; ++other) {
      if (other == lost) continue;
      vnrt_device *od = tu_device(ctx, other);
      TU_OK(ctx, vnrt_plan_reset_state(plans[other]));
      TU_OK(ctx, sequence(ctx, g, od, NULL, &plans[other], &got, &step));
      check_same(&got, &clean[other], "another device's plan while one is lost");
      vnrt_plan *p2 = NULL;
      vnrt_status s = sequence(ctx, g, od, NULL, &p2, &got, &step);
      if (s != VNRT_OK) {
        ck_abort_msg("%s lost: a new plan on %s: %s at %s: %s", spec, od->info.spec,
                     vnrt_status_string(s), step, vnrt_context_last_error(ctx));
      }
      check_same(&got, &clean[other], "a new plan on another device while one is lost");
      vnrt_plan_destroy(p2);
    }
    /* A plan on the lost device can be destroyed (its frees reach the backend), and once the
     * loss is cleared a new plan there works. */
    vnrt_plan_destroy(plans[lost]);
    plans[lost] = NULL;
    vn_fault_clear(dev);
    TU_OK(ctx, sequence(ctx, g, dev, NULL, &plans[lost], &got, &step));
    check_same(&got, &clean[lost], "after the loss is cleared");
  }
  for (int32_t di = 0; di < n; ++di) vnrt_plan_destroy(plans[di]);
  check_no_device_leak(ctx, "lost devices");
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(a.live, 0);
}
END_TEST

/* Lost while the copy stream's thread writes a streamed param, in the middle of a run: the run
 * fails with the device's error, the queued copies are dropped, and once the loss is cleared
 * the plan runs again with the clean results. */
START_TEST(a_device_lost_on_the_copy_thread_fails_the_run_cleanly) {
  init_data();
  tu_alloc a;
  vnrt_context *ctx = counting_context(&a);
  vnrt_graph *g = small_graph(ctx);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    results clean, got;
    const char *step = "";
    vnrt_plan *plan = NULL;
    TU_OK(ctx, sequence(ctx, g, dev, NULL, &plan, &clean, &step));
    vnrt_plan_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    vnrt_plan_destroy(plan);
    plan = NULL;
    vnrt_plan_desc desc = {0};
    desc.device_memory_limit = info.device_bytes - sizeof win[0];
    TU_OK(ctx, sequence(ctx, g, dev, &desc, &plan, &got, &step));
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    ck_assert_int_ge(info.n_streamed_params, 1);
    TU_OK(ctx, vnrt_plan_reset_state(plan));
    /* The run's first write is a streamed param's: a copy-stream job (on the copy thread, or on
     * the compute thread waiting for it). */
    TU_OK(ctx, vn_fault_set(dev, VN_FAULT_WRITE, 1, true));
    ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_DEVICE);
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(strstr(msg, dev->info.spec) && strstr(msg, "lost") && strstr(msg, "buffer_write"),
                  "%s", msg);
    ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_DEVICE);
    vn_fault_clear(dev);
    TU_OK(ctx, vnrt_plan_reset_state(plan));
    TU_OK(ctx, sequence(ctx, g, dev, &desc, &plan, &got, &step));
    check_same(&got, &clean, "after a loss on the copy thread is cleared");
    vnrt_plan_destroy(plan);
    check_no_device_leak(ctx, "lost on the copy thread");
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(a.live, 0);
}
END_TEST

START_TEST(vnrt_fault_inject_arms_faults_and_rejects_a_malformed_value) {
  init_data();
  tu_alloc a;
  setenv("VNRT_FAULT_INJECT", "cpu/run/2,nosuch:3/alloc/1", 1);
  vnrt_context *ctx = counting_context(&a);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_graph *g = small_graph(ctx);
  vnrt_plan *plan = NULL;
  results got;
  const char *step = "";
  TU_OK(ctx, sequence(ctx, g, cpu, NULL, &plan, &got, &step));
  ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_DEVICE);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "cpu: run failed"));
  TU_OK(ctx, vnrt_plan_run(plan)); /* once */
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  const char *bad[] = {"cpu/bogus/1", "cpu/run/0", "cpu/run", "cpu/run/1/gone", "/run/1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    setenv("VNRT_FAULT_INJECT", bad[i], 1);
    vnrt_context_desc d = {0};
    d.log_fn = quiet_log;
    d.no_plugins = 1;
    ctx = NULL;
    ck_assert_msg(vnrt_context_create(&d, &ctx) == VNRT_ERROR_INVALID_ARGUMENT, "%s", bad[i]);
    ck_assert_ptr_null(ctx);
  }
  unsetenv("VNRT_FAULT_INJECT");
  ck_assert_int_eq(a.live, 0);
}
END_TEST

/* The template plugin runs no op: every node of its plans runs on the CPU, so the plan's values
 * cross between the devices (map, or read and write through the staging buffer). Each device's
 * calls are failed in turn. Runs where tests/runtime/meson.build gives the plugin's folder. */
START_TEST(every_call_of_a_plan_with_cpu_fallback_fails_cleanly) {
  const char *dir = getenv("VNRT_TEST_PLUGIN_DIR");
  if (!dir || !dir[0]) {
    printf("no VNRT_TEST_PLUGIN_DIR: the plugin case is skipped\n");
    return;
  }
  init_data();
  tu_alloc a = {.countdown = -1};
  vnrt_context_desc d = {0};
  d.allocator = tu_allocator(&a);
  d.log_fn = quiet_log;
  d.log_level = VNRT_LOG_ERROR;
  d.plugin_path = dir;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_device *tpl = NULL, *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "template:0", &tpl));
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  /* (No streamed case: params read by CPU nodes live on the CPU, not streamed.) */
  fail_every_call(tpl, tpl, ctx, &a, false);
  fail_every_call(tpl, cpu, ctx, &a, false);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(a.live, 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("device_faults");
  TCase *tc = tcase_create("faults");
  tcase_add_test(tc, every_device_call_fails_cleanly_and_the_plan_recovers);
  tcase_add_test(tc, every_call_of_a_plan_with_cpu_fallback_fails_cleanly);
  tcase_add_test(tc, a_failed_device_open_is_a_device_error_and_a_retry_opens_it);
  tcase_add_test(tc, a_device_lost_mid_run_leaves_the_other_devices_working);
  tcase_add_test(tc, a_device_lost_on_the_copy_thread_fails_the_run_cleanly);
  tcase_add_test(tc, vnrt_fault_inject_arms_faults_and_rejects_a_malformed_value);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
