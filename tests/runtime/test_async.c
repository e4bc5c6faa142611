/* The optional async slots of backend.h (API 3) on every device that offers them: writes, runs
 * and reads queued with timeline waits and signals give the right data in the right order
 * (a read waits for a run's signal, a write for the run that reads the old bytes); and the
 * executor's DualPath over them gives results bit-identical to its host thread. Devices whose
 * backend declines (the CPU has no slots; PoCL's SVM buffers and lavapipe without a copy queue
 * return VNRT_ERROR_UNSUPPORTED) are skipped here: the meson variants VNRT_CL_SVM=0 and
 * VNRT_VK_COPY_QUEUE=shared turn them on. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "test_util.h"

#define N 1024 /* elements of each vector */
#define C 64   /* the MLP's width */
#define LAYERS 6

static bool has_slots(const vnrt_backend_i *i) {
  return i->timeline_create && i->timeline_destroy && i->timeline_query && i->timeline_wait &&
         i->timeline_signal && i->buffer_write_async && i->buffer_read_async && i->run_async;
}

/* The tensor of value `name` on the plan's target. */
static const vnrt_backend_tensor *tensor_of(vnrt_plan *p, const char *name) {
  int32_t v = vnrt_graph_find(p->graph, name);
  ck_assert_int_ge(v, 0);
  ck_assert_int_ge(p->vals[v].local[0], 0);
  return &p->devs[0].tensors[p->vals[v].local[0]];
}

static float a1[N], a2[N], b[N], out1[N], out2[N], back[N];

START_TEST(queued_writes_runs_and_reads_keep_timeline_order) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 1, {N}};
  vnrt_value in[2], y;
  TU_OK(ctx, vnrt_graph_add_input(g, "a", &t, 0, &in[0]));
  TU_OK(ctx, vnrt_graph_add_input(g, "b", &t, 0, &in[1]));
  const char *names[1] = {"y"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, in, 2, NULL, 0, names, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  for (int i = 0; i < N; ++i) a1[i] = (float)i, a2[i] = (float)(3 * i), b[i] = 0.5f * (float)i;
  int tested = 0;
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    const char *spec = tu_device_spec(dev);
    vnrt_plan *p = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &p));
    vn_plan_device *pd = &p->devs[0];
    const vnrt_backend_i *i = pd->iface;
    if (!has_slots(i)) {
      vnrt_plan_destroy(p);
      continue;
    }
    vnrt_backend_timeline *copy = NULL, *compute = NULL;
    vnrt_status s = i->timeline_create(pd->bdev, &copy);
    if (s == VNRT_ERROR_UNSUPPORTED) {
      fprintf(stderr, "%s: async slots declined: %s\n", spec, vnrt_context_last_error(ctx));
      vnrt_plan_destroy(p);
      continue;
    }
    TU_OK(ctx, s);
    TU_OK(ctx, i->timeline_create(pd->bdev, &compute));
    uint64_t value = 99;
    TU_OK(ctx, i->timeline_query(pd->bdev, copy, &value));
    ck_assert_uint_eq(value, 0);
    const vnrt_backend_tensor *ta = tensor_of(p, "a"), *tb = tensor_of(p, "b"),
                              *ty = tensor_of(p, "y");
    /* The run must be on the target (every device here runs add). */
    bool runs = p->n_parts == 1 && p->parts[0].dev == 0;
    vnrt_backend_sync sy;
    sy = (vnrt_backend_sync){.signal = copy, .signal_value = 1};
    TU_OK(ctx, i->buffer_write_async(pd->bdev, ta->buffer, ta->offset, a1, sizeof a1, &sy));
    sy = (vnrt_backend_sync){.signal = copy, .signal_value = 2};
    TU_OK(ctx, i->buffer_write_async(pd->bdev, tb->buffer, tb->offset, b, sizeof b, &sy));
    if (runs) {
      /* y = a1 + b once both writes are in; read y once the run is done; then a2 over a, but
       * only after the first run read a; run again and read. */
      sy = (vnrt_backend_sync){.wait = copy, .wait_value = 2, .signal = compute, .signal_value = 1};
      TU_OK(ctx, i->run_async(pd->exec, 0, pd->n_nodes, &sy));
      sy = (vnrt_backend_sync){.wait = compute, .wait_value = 1, .signal = copy, .signal_value = 3};
      TU_OK(ctx, i->buffer_read_async(pd->bdev, ty->buffer, ty->offset, out1, sizeof out1, &sy));
      sy = (vnrt_backend_sync){.wait = compute, .wait_value = 1, .signal = copy, .signal_value = 4};
      TU_OK(ctx, i->buffer_write_async(pd->bdev, ta->buffer, ta->offset, a2, sizeof a2, &sy));
      sy = (vnrt_backend_sync){.wait = copy, .wait_value = 4, .signal = compute, .signal_value = 2};
      TU_OK(ctx, i->run_async(pd->exec, 0, pd->n_nodes, &sy));
      sy = (vnrt_backend_sync){.wait = compute, .wait_value = 2, .signal = copy, .signal_value = 5};
      TU_OK(ctx, i->buffer_read_async(pd->bdev, ty->buffer, ty->offset, out2, sizeof out2, &sy));
      TU_OK(ctx, i->timeline_wait(pd->bdev, copy, 5, 60ull * 1000000000ull));
      TU_OK(ctx, i->timeline_query(pd->bdev, compute, &value));
      ck_assert_uint_ge(value, 2);
      TU_OK(ctx, i->run(pd->exec, 0, 0)); /* no run-time error was recorded */
      for (int k = 0; k < N; ++k) {
        if (out1[k] != a1[k] + b[k] || out2[k] != a2[k] + b[k]) {
          ck_abort_msg("%s: element %d: %g and %g, want %g and %g", spec, k, (double)out1[k],
                       (double)out2[k], (double)(a1[k] + b[k]), (double)(a2[k] + b[k]));
        }
      }
    } else {
      sy = (vnrt_backend_sync){.signal = copy, .signal_value = 5};
      TU_OK(ctx, i->buffer_read_async(pd->bdev, ta->buffer, ta->offset, back, sizeof back, &sy));
      TU_OK(ctx, i->timeline_wait(pd->bdev, copy, 5, 60ull * 1000000000ull));
      ck_assert_msg(memcmp(back, a1, sizeof a1) == 0, "%s: a read back differs", spec);
    }
    TU_OK(ctx, i->timeline_query(pd->bdev, copy, &value));
    ck_assert_uint_ge(value, 5);
    /* A host signal, an empty write that still orders, and a signal-only run. */
    TU_OK(ctx, i->timeline_signal(pd->bdev, compute, 10));
    TU_OK(ctx, i->timeline_wait(pd->bdev, compute, 10, 60ull * 1000000000ull));
    sy = (vnrt_backend_sync){.wait = compute, .wait_value = 10, .signal = copy, .signal_value = 6};
    TU_OK(ctx, i->buffer_write_async(pd->bdev, ta->buffer, ta->offset, a1, 0, &sy));
    if (runs) {
      sy =
          (vnrt_backend_sync){.wait = copy, .wait_value = 6, .signal = compute, .signal_value = 11};
      TU_OK(ctx, i->run_async(pd->exec, 0, 0, &sy));
      TU_OK(ctx, i->timeline_wait(pd->bdev, compute, 11, 60ull * 1000000000ull));
    }
    TU_OK(ctx, i->timeline_wait(pd->bdev, copy, 6, 60ull * 1000000000ull));
    i->timeline_destroy(pd->bdev, copy);
    i->timeline_destroy(pd->bdev, compute);
    vnrt_plan_destroy(p);
    ++tested;
  }
  fprintf(stderr, "async slots tested on %d device(s)\n", tested);
  if (getenv("VNRT_TEST_EXPECT_ASYNC")) ck_assert_int_gt(tested, 0);
  vnrt_graph_destroy(g);
}
END_TEST

/* The template plugin's synchronous slots (backends/template): copies through a buffer of its
 * own, in timeline order. Runs where tests/runtime/meson.build gives the plugin's folder. */
START_TEST(the_template_plugin_shows_the_slots) {
  const char *dir = getenv("VNRT_TEST_PLUGIN_DIR");
  if (!dir || !dir[0]) {
    printf("no VNRT_TEST_PLUGIN_DIR: the plugin case is skipped\n");
    return;
  }
  vnrt_context_desc d = {0};
  d.log_level = VNRT_LOG_ERROR;
  d.plugin_path = dir;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_device *tpl = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "template:0", &tpl));
  vnrt_backend_device *bdev = NULL;
  TU_OK(ctx, vn_device_open(tpl, &bdev)); /* closed with the context */
  const vnrt_backend_i *i = tpl->backend->iface;
  ck_assert(has_slots(i));
  vnrt_backend_buffer *buf = NULL;
  TU_OK(ctx, i->buffer_alloc(bdev, sizeof a1, &buf));
  vnrt_backend_timeline *tl = NULL;
  TU_OK(ctx, i->timeline_create(bdev, &tl));
  for (int k = 0; k < N; ++k) a1[k] = (float)k;
  vnrt_backend_sync sy = {.signal = tl, .signal_value = 1};
  TU_OK(ctx, i->buffer_write_async(bdev, buf, 0, a1, sizeof a1, &sy));
  sy = (vnrt_backend_sync){.wait = tl, .wait_value = 1, .signal = tl, .signal_value = 2};
  TU_OK(ctx, i->buffer_read_async(bdev, buf, 0, back, sizeof back, &sy));
  TU_OK(ctx, i->timeline_wait(bdev, tl, 2, 0));
  ck_assert(memcmp(back, a1, sizeof a1) == 0);
  /* A value nothing will signal is an error, not a hang. */
  sy = (vnrt_backend_sync){.wait = tl, .wait_value = 7};
  ck_assert_int_eq(i->buffer_write_async(bdev, buf, 0, a1, sizeof a1, &sy), VNRT_ERROR_DEVICE);
  TU_OK(ctx, i->timeline_signal(bdev, tl, 7));
  TU_OK(ctx, i->buffer_write_async(bdev, buf, 0, a1, sizeof a1, &sy));
  uint64_t value = 0;
  TU_OK(ctx, i->timeline_query(bdev, tl, &value));
  ck_assert_uint_eq(value, 7);
  i->timeline_destroy(bdev, tl);
  i->buffer_free(bdev, buf);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A run-time error the device finds in a queued run (an id out of range) is returned by
 * run_async when it had to block for the check, else by the next synchronous run. */
START_TEST(a_queued_runs_index_error_is_reported_by_the_next_run) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tt = {VNRT_F32, 2, {8, 4}}, ti = {VNRT_I32, 1, {2}};
  vnrt_value in[2], y;
  TU_OK(ctx, vnrt_graph_add_input(g, "table", &tt, 0, &in[0]));
  TU_OK(ctx, vnrt_graph_add_input(g, "ids", &ti, 0, &in[1]));
  const char *names[1] = {"y"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_EMBEDDING, in, 2, NULL, 0, names, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  static float table[8 * 4];
  static int32_t bad[2] = {1, 99}, good[2] = {1, 7};
  for (int k = 0; k < 32; ++k) table[k] = (float)k;
  int tested = 0;
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    const char *spec = tu_device_spec(dev);
    vnrt_plan *p = NULL;
    vnrt_plan_desc desc = {.no_fallback = 1};
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &desc, &p));
    vn_plan_device *pd = &p->devs[0];
    const vnrt_backend_i *i = pd->iface;
    vnrt_backend_timeline *tl = NULL;
    if (!has_slots(i) || i->timeline_create(pd->bdev, &tl) != VNRT_OK) {
      vnrt_plan_destroy(p);
      continue;
    }
    const vnrt_backend_tensor *tt_ = tensor_of(p, "table"), *tid = tensor_of(p, "ids");
    vnrt_backend_sync sy = {.signal = tl, .signal_value = 1};
    TU_OK(ctx, i->buffer_write_async(pd->bdev, tt_->buffer, tt_->offset, table, sizeof table, &sy));
    sy = (vnrt_backend_sync){.signal = tl, .signal_value = 2};
    TU_OK(ctx, i->buffer_write_async(pd->bdev, tid->buffer, tid->offset, bad, sizeof bad, &sy));
    sy = (vnrt_backend_sync){.wait = tl, .wait_value = 2, .signal = tl, .signal_value = 3};
    vnrt_status s = i->run_async(pd->exec, 0, pd->n_nodes, &sy);
    if (s == VNRT_OK) {
      TU_OK(ctx, i->timeline_wait(pd->bdev, tl, 3, 60ull * 1000000000ull));
      s = i->run(pd->exec, 0, 0);
    }
    ck_assert_msg(s == VNRT_ERROR_OUT_OF_RANGE, "%s: status %d, want out of range", spec, (int)s);
    ck_assert_msg(strstr(vnrt_context_last_error(ctx), "99") != NULL, "%s: message '%s'", spec,
                  vnrt_context_last_error(ctx));
    /* Reported once: with good ids the exec runs on. */
    TU_OK(ctx, i->buffer_write(pd->bdev, tid->buffer, tid->offset, good, sizeof good));
    TU_OK(ctx, i->run(pd->exec, 0, pd->n_nodes));
    TU_OK(ctx, i->run(pd->exec, 0, 0));
    i->timeline_destroy(pd->bdev, tl);
    vnrt_plan_destroy(p);
    ++tested;
  }
  if (getenv("VNRT_TEST_EXPECT_ASYNC")) ck_assert_int_gt(tested, 0);
  vnrt_graph_destroy(g);
}
END_TEST

/* ---- The executor: streamed params over the slots and over the host thread ---------------- */

static float weights[LAYERS][C * C], xin[4 * C];

/* Runs the MLP three times with weights streamed under a budget of about two layers; returns
 * whether the plan used the async slots. */
static bool run_streamed(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev, bool async,
                         uint64_t limit, float *out) {
  vnrt_plan_desc desc = {0};
  desc.device_memory_limit = limit;
  vnrt_plan *p = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, limit ? &desc : NULL, &p));
  vn_plan_set_async(p, async);
  TU_OK(ctx, vnrt_plan_set_input(p, "x", xin, sizeof xin));
  for (int l = 0; l < LAYERS; ++l) {
    char wn[16];
    snprintf(wn, sizeof wn, "w%d", l);
    TU_OK(ctx, vnrt_plan_set_input(p, wn, weights[l], sizeof weights[l]));
  }
  for (int r = 0; r < 3; ++r) TU_OK(ctx, vnrt_plan_run(p));
  char name[16];
  snprintf(name, sizeof name, "r%d", LAYERS - 1);
  TU_OK(ctx, vnrt_plan_read_output(p, name, out, 4 * C * sizeof(float)));
  vnrt_plan_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_plan_get_info(p, &info));
  if (limit) ck_assert_int_gt(info.n_streamed_params, 0);
  bool used = p->async_mode > 0;
  vnrt_plan_destroy(p);
  return used;
}

START_TEST(dualpath_over_the_slots_matches_the_host_thread) {
  vnrt_context *ctx = tu_context();
  tu_tensor t = tu_tensor_new(VNRT_F32, 1, (int64_t[]){LAYERS * C * C + 4 * C});
  tu_fill_uniform(&t, 11, -0.3f, 0.3f);
  memcpy(weights, t.data, sizeof weights);
  memcpy(xin, (float *)t.data + LAYERS * C * C, sizeof xin);
  tu_tensor_free(&t);
  vnrt_graph *g = tu_mlp_graph(ctx, LAYERS, C);
  int used = 0;
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    float ref[4 * C], host[4 * C], dev_out[4 * C];
    vnrt_plan *p = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &p));
    vnrt_plan_info full = {.struct_size = sizeof full};
    TU_OK(ctx, vnrt_plan_get_info(p, &full));
    vnrt_plan_destroy(p);
    uint64_t limit = full.device_bytes - 3 * C * C * sizeof(float);
    run_streamed(ctx, g, dev, false, 0, ref);
    ck_assert(!run_streamed(ctx, g, dev, false, limit, host));
    used += run_streamed(ctx, g, dev, true, limit, dev_out);
    ck_assert_msg(memcmp(host, ref, sizeof ref) == 0, "%s: host thread differs",
                  tu_device_spec(dev));
    ck_assert_msg(memcmp(dev_out, ref, sizeof ref) == 0, "%s: async slots differ",
                  tu_device_spec(dev));
  }
  fprintf(stderr, "DualPath used the async slots on %d device(s)\n", used);
  if (getenv("VNRT_TEST_EXPECT_ASYNC")) ck_assert_int_gt(used, 0);
  vnrt_graph_destroy(g);
}
END_TEST

/* docs/api.md, "Running a plan does not allocate": also with params streamed over the slots
 * (the timelines and the per-job values are made at the first run). */
START_TEST(streamed_runs_over_the_slots_do_not_allocate) {
  tu_alloc counts = {.countdown = -1};
  vnrt_context_desc d = {.allocator = tu_allocator(&counts), .num_threads = 2};
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_graph *g = tu_mlp_graph(ctx, LAYERS, C);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    vnrt_plan *p = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &p));
    vnrt_plan_info full = {.struct_size = sizeof full};
    TU_OK(ctx, vnrt_plan_get_info(p, &full));
    vnrt_plan_destroy(p);
    vnrt_plan_desc desc = {0};
    desc.device_memory_limit = full.device_bytes - 3 * C * C * sizeof(float);
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &desc, &p));
    TU_OK(ctx, vnrt_plan_set_input(p, "x", xin, sizeof xin));
    for (int l = 0; l < LAYERS; ++l) {
      char wn[16];
      snprintf(wn, sizeof wn, "w%d", l);
      TU_OK(ctx, vnrt_plan_set_input_ref(p, wn, weights[l], sizeof weights[l]));
    }
    TU_OK(ctx, vnrt_plan_run(p)); /* warm-up */
    const long before = counts.total;
    for (int r = 0; r < 4; ++r) TU_OK(ctx, vnrt_plan_run(p));
    ck_assert_msg(counts.total == before, "%s (%s): 4 streamed runs made %ld host allocations",
                  tu_device_spec(dev), p->async_mode > 0 ? "async slots" : "host thread",
                  counts.total - before);
    vnrt_plan_destroy(p);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(counts.live, 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("async");
  TCase *tc = tcase_create("async");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, queued_writes_runs_and_reads_keep_timeline_order);
  tcase_add_test(tc, the_template_plugin_shows_the_slots);
  tcase_add_test(tc, a_queued_runs_index_error_is_reported_by_the_next_run);
  tcase_add_test(tc, dualpath_over_the_slots_matches_the_host_thread);
  tcase_add_test(tc, streamed_runs_over_the_slots_do_not_allocate);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
