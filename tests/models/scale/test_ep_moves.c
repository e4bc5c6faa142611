/* Moves between plans on the copy streams (vnrt_plan_stage_input / _output, docs/scale-out.md,
 * "Several devices in one process"): on every device present, staged inputs and outputs give
 * the values of vnrt_plan_set_input / vnrt_plan_read_output, the run's statistics count their
 * bytes (no timing is checked), requests are consumed by a run,
 * a synchronous bind after a staged one wins, and bad names and sizes fail naming them. Then
 * the tiny checkpoint over cpu + vulkan:0 (f32): the session's move statistics (the boundary
 * bytes against the placement, overlapped <= copy time, sized-struct checks) and the logits
 * within 1e-4 of the CPU alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/model.h"
#include "vnrt/vnrt.h"

#include "model_check.h"

enum { N = 4096, V = 1024, HC = 4, C = 256 };

/* y = a + b, z = y * b; outputs y and z. */
static vnrt_graph *make_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  if (vnrt_graph_create(ctx, &g) != VNRT_OK) return NULL;
  vnrt_tensor_type t = {VNRT_F32, 1, {N}};
  vnrt_value a, b, y, z;
  int ok = vnrt_graph_add_input(g, "a", &t, 0, &a) == VNRT_OK &&
           vnrt_graph_add_input(g, "b", &t, 0, &b) == VNRT_OK;
  const char *ny = "y", *nz = "z";
  vnrt_value ab[2] = {a, b};
  ok = ok && vnrt_graph_add_node(g, VNRT_OP_ADD, ab, 2, NULL, 0, &ny, &y, 1) == VNRT_OK;
  vnrt_value yb[2] = {y, b};
  ok = ok && vnrt_graph_add_node(g, VNRT_OP_MUL, yb, 2, NULL, 0, &nz, &z, 1) == VNRT_OK;
  ok = ok && vnrt_graph_add_output(g, y) == VNRT_OK && vnrt_graph_add_output(g, z) == VNRT_OK;
  if (!ok) {
    vnrt_graph_destroy(g);
    return NULL;
  }
  return g;
}

static void test_plan(vnrt_context *ctx, const char *spec) {
  vnrt_device *dev = NULL;
  if (vnrt_device_select(ctx, spec, &dev) != VNRT_OK) {
    printf("%s: not present, skipped\n", spec);
    return;
  }
  vnrt_graph *g = make_graph(ctx);
  CHECK(g != NULL, "building the graph: %s", vnrt_context_last_error(ctx));
  vnrt_plan *p = NULL;
  CHECK(g && vnrt_plan_create(ctx, g, dev, NULL, &p) == VNRT_OK, "%s: plan: %s", spec,
        vnrt_context_last_error(ctx));
  vnrt_graph_destroy(g);
  if (!p) return;
  float *a = malloc(4 * N * sizeof *a), *b = a + N, *y = b + N, *z = y + N;
  if (!a) return;
  for (int i = 0; i < N; ++i) a[i] = (float)(i % 17) - 8.0f, b[i] = 0.25f * (float)(i % 5);
  CHECK(vnrt_plan_stage_input(p, "a", a, N * sizeof *a) == VNRT_OK, "%s: stage a: %s", spec,
        vnrt_context_last_error(ctx));
  CHECK(vnrt_plan_stage_input(p, "b", b, N * sizeof *b) == VNRT_OK, "%s: stage b", spec);
  CHECK(vnrt_plan_stage_output(p, "y", y, N * sizeof *y) == VNRT_OK, "%s: stage y", spec);
  CHECK(vnrt_plan_stage_output(p, "z", z, N * sizeof *z) == VNRT_OK, "%s: stage z", spec);
  CHECK(vnrt_plan_run(p) == VNRT_OK, "%s: run: %s", spec, vnrt_context_last_error(ctx));
  int bad = 0;
  for (int i = 0; i < N; ++i) {
    const float wy = a[i] + b[i], wz = wy * b[i];
    if (y[i] != wy || z[i] != wz) bad++;
  }
  CHECK(bad == 0, "%s: %d staged values differ from a + b, (a + b) * b", spec, bad);
  vnrt_run_stats rs = {.struct_size = sizeof rs};
  CHECK(vnrt_plan_get_run_stats(p, &rs) == VNRT_OK, "%s: stats", spec);
  CHECK(rs.bytes_staged == 4u * N * sizeof(float), "%s: bytes_staged %llu, want %zu", spec,
        (unsigned long long)rs.bytes_staged, 4u * N * sizeof(float));
  /* A run consumes the output requests: the next one leaves y alone. A synchronous bind after
   * a staged one of the same input wins. */
  for (int i = 0; i < N; ++i) y[i] = -1.0f;
  float *a2 = malloc(N * sizeof *a2);
  if (!a2) {
    free(a);
    vnrt_plan_destroy(p);
    return;
  }
  for (int i = 0; i < N; ++i) a2[i] = 1.0f;
  CHECK(vnrt_plan_stage_input(p, "a", a, N * sizeof *a) == VNRT_OK, "%s: stage a again", spec);
  CHECK(vnrt_plan_set_input(p, "a", a2, N * sizeof *a2) == VNRT_OK, "%s: set a", spec);
  CHECK(vnrt_plan_run(p) == VNRT_OK, "%s: second run", spec);
  CHECK(y[0] == -1.0f && y[N - 1] == -1.0f, "%s: an unrequested output was written", spec);
  CHECK(vnrt_plan_read_output(p, "y", y, N * sizeof *y) == VNRT_OK, "%s: read y", spec);
  bad = 0;
  for (int i = 0; i < N; ++i) bad += y[i] != 1.0f + b[i];
  CHECK(bad == 0, "%s: the staged write overtook the synchronous one (%d values)", spec, bad);
  vnrt_plan_get_run_stats(p, &rs);
  CHECK(rs.bytes_staged == N * sizeof(float), "%s: second run staged %llu bytes", spec,
        (unsigned long long)rs.bytes_staged);
  /* Once vnrt_plan_wait_staged returns, the staged data may change: the run sees the old. */
  CHECK(vnrt_plan_wait_staged(p) == VNRT_OK, "%s: nothing pending", spec);
  for (int i = 0; i < N; ++i) a2[i] = 2.0f;
  CHECK(vnrt_plan_stage_input(p, "a", a2, N * sizeof *a2) == VNRT_OK, "%s: stage 2s", spec);
  CHECK(vnrt_plan_wait_staged(p) == VNRT_OK, "%s: wait: %s", spec, vnrt_context_last_error(ctx));
  for (int i = 0; i < N; ++i) a2[i] = 3.0f;
  CHECK(vnrt_plan_stage_output(p, "y", y, N * sizeof *y) == VNRT_OK && vnrt_plan_run(p) == VNRT_OK,
        "%s: third run: %s", spec, vnrt_context_last_error(ctx));
  bad = 0;
  for (int i = 0; i < N; ++i) bad += y[i] != 2.0f + b[i];
  CHECK(bad == 0, "%s: %d values not from the data as staged", spec, bad);
  /* errors name the value */
  CHECK(vnrt_plan_stage_input(p, "nope", a, N * sizeof *a) == VNRT_ERROR_NOT_FOUND &&
            strstr(vnrt_context_last_error(ctx), "'nope'"),
        "%s: unknown input: %s", spec, vnrt_context_last_error(ctx));
  CHECK(vnrt_plan_stage_input(p, "a", a, 4) == VNRT_ERROR_SHAPE_MISMATCH &&
            strstr(vnrt_context_last_error(ctx), "'a'"),
        "%s: short input: %s", spec, vnrt_context_last_error(ctx));
  CHECK(vnrt_plan_stage_output(p, "a", y, N * sizeof *y) == VNRT_ERROR_NOT_FOUND &&
            strstr(vnrt_context_last_error(ctx), "no output named 'a'"),
        "%s: an input as output: %s", spec, vnrt_context_last_error(ctx));
  CHECK(vnrt_plan_stage_output(p, "z", y, 8) == VNRT_ERROR_SHAPE_MISMATCH, "%s: short output: %s",
        spec, vnrt_context_last_error(ctx));
  CHECK(vnrt_plan_stage_output(p, "z", NULL, N * sizeof *y) == VNRT_ERROR_INVALID_ARGUMENT,
        "%s: NULL output: %s", spec, vnrt_context_last_error(ctx));
  free(a2);
  free(a);
  vnrt_plan_destroy(p);
}

static int run_model(vnrt_context *ctx, const char *dir, const char *devices, float *logits,
                     vnrt_model **out_m, vnrt_session **out_s) {
  vnrt_model_desc d = {.size = sizeof d}; /* `devices` came after the first sized release */
  d.device_spec = "cpu";
  d.numerics = VNRT_NUMERICS_F32;
  d.devices = devices;
  d.memory_limit = devices ? 5u << 20 : 0;
  const int32_t ids[8] = {3, 14, 15, 92, 65, 35, 89, 79};
  *out_m = NULL;
  *out_s = NULL;
  if (vnrt_model_open(ctx, dir, &d, out_m) != VNRT_OK) return 0;
  vnrt_session_desc sd = {.size = sizeof sd};
  sd.prefill_chunk = 5;
  CHECK(vnrt_session_create(*out_m, &sd, out_s) == VNRT_OK, "%s: session: %s",
        devices ? devices : "cpu", vnrt_model_last_error());
  if (!*out_s) return 0;
  const int32_t next = 32;
  CHECK(vnrt_session_prefill(*out_s, ids, 8) == VNRT_OK &&
            vnrt_session_decode(*out_s, &next, 1) == VNRT_OK &&
            vnrt_session_logits(*out_s, logits, V) == VNRT_OK,
        "%s: run: %s", devices ? devices : "cpu", vnrt_model_last_error());
  return 1;
}

static void test_model(vnrt_context *ctx, const char *dir) {
  vnrt_device *dev = NULL;
  if (vnrt_device_select(ctx, "vulkan:0", &dev) != VNRT_OK) {
    printf("no vulkan:0: the model part is skipped\n");
    return;
  }
  float *one = malloc(2 * V * sizeof *one), *two = one + V;
  vnrt_model *m1 = NULL, *m2 = NULL;
  vnrt_session *s1 = NULL, *s2 = NULL;
  CHECK(one && run_model(ctx, dir, NULL, one, &m1, &s1), "cpu alone: %s", vnrt_model_last_error());
  CHECK(one && run_model(ctx, dir, "cpu,vulkan:0", two, &m2, &s2), "cpu,vulkan:0: %s",
        vnrt_model_last_error());
  if (s1 && s2) {
    double worst = 0;
    for (int i = 0; i < V; ++i) worst = fmax(worst, fabs((double)one[i] - (double)two[i]));
    CHECK(worst < 1e-4, "cpu,vulkan:0: logits differ from the cpu's by %g", worst);
    /* The boundaries between the two devices, each token: X [hc, C], post [hc], comb [hc, hc],
     * ys and yr [C], all f32 under f32 numerics. */
    int crossings = 0;
    for (int32_t j = 1; j <= 4; ++j) {
      crossings += strcmp(vnrt_model_layer_device(m2, j), vnrt_model_layer_device(m2, j - 1)) != 0;
    }
    vnrt_session_move_stats mv = {.size = sizeof mv};
    CHECK(vnrt_session_get_move_stats(s2, &mv) == VNRT_OK, "move stats: %s",
          vnrt_model_last_error());
    const uint64_t per_token = 4u * (HC * C + HC + HC * HC + 2 * C);
    CHECK(crossings >= 1 && mv.tokens == 9 && mv.runs == 3, "%d crossings, %lld tokens, %lld runs",
          crossings, (long long)mv.tokens, (long long)mv.runs);
    CHECK(mv.bytes_boundaries == (uint64_t)mv.tokens * (uint64_t)crossings * per_token,
          "boundary bytes %llu, want %llu", (unsigned long long)mv.bytes_boundaries,
          (unsigned long long)((uint64_t)mv.tokens * (uint64_t)crossings * per_token));
    CHECK(mv.bytes_routed == 0 && mv.bytes_engram == 0 && mv.bytes_early > 0 &&
              mv.bytes_moved >= mv.bytes_boundaries + mv.bytes_early,
          "bytes: routed %llu engram %llu early %llu moved %llu",
          (unsigned long long)mv.bytes_routed, (unsigned long long)mv.bytes_engram,
          (unsigned long long)mv.bytes_early, (unsigned long long)mv.bytes_moved);
    CHECK(mv.copy_seconds > 0 && mv.overlapped_seconds >= 0 &&
              mv.overlapped_seconds <= mv.copy_seconds && mv.wait_seconds >= 0,
          "times: copy %g wait %g overlapped %g", mv.copy_seconds, mv.wait_seconds,
          mv.overlapped_seconds);
    vnrt_session_move_stats zero = {0};
    CHECK(vnrt_session_get_move_stats(s2, &zero) == VNRT_OK && zero.runs == 3, "size 0: %s",
          vnrt_model_last_error());
    vnrt_session_move_stats odd = {.size = 12};
    CHECK(vnrt_session_get_move_stats(s2, &odd) == VNRT_ERROR_INVALID_ARGUMENT &&
              strstr(vnrt_model_last_error(), "vnrt_session_move_stats.size is 12"),
          "a size no version had: %s", vnrt_model_last_error());
    vnrt_session_move_stats none = {.size = sizeof none};
    CHECK(vnrt_session_get_move_stats(s1, &none) == VNRT_OK && none.runs == 0 &&
              none.bytes_moved == 0,
          "one device moves nothing: %lld runs", (long long)none.runs);
  }
  vnrt_session_destroy(s1);
  vnrt_session_destroy(s2);
  vnrt_model_close(m1);
  vnrt_model_close(m2);
  free(one);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_ep_moves CHECKPOINT_DIR\n");
    return 2;
  }
  vnrt_context *ctx = NULL;
  if (vnrt_context_create(NULL, &ctx) != VNRT_OK) return 1;
  const char *specs[] = {"cpu", "vulkan:0", "opencl:0"};
  for (int i = 0; i < 3; ++i) test_plan(ctx, specs[i]);
  test_model(ctx, argv[1]);
  vnrt_context_destroy(ctx);
  if (g_failures) fprintf(stderr, "%d failures\n", g_failures);
  return g_failures ? 1 : 0;
}
