/* quickstart: build a small graph with the C API, compile it for the best device, run it.
 *
 *   ./build/examples/quickstart [--device SPEC]
 *
 * The graph is the example of docs/vnir.md: h = linear(x, w1) with f16 weights, an RMS norm,
 * and a softmax. Every step returns a status; on failure the context says why. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/vnrt.h"

#define CHECK(ctx, expr)                                              \
  do {                                                                \
    vnrt_status s_ = (expr);                                          \
    if (s_ != VNRT_OK) {                                              \
      fprintf(stderr, "quickstart: %s: %s\n", vnrt_status_string(s_), \
              vnrt_context_last_error(ctx));                          \
      exit(1);                                                        \
    }                                                                 \
  } while (0)

enum { T = 4, C = 64, N = 128 };

int main(int argc, char **argv) {
  const char *spec = NULL; /* NULL: $VNRT_DEVICE, else the best device */
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      spec = argv[++i];
    } else {
      fprintf(stderr, "usage: quickstart [--device SPEC]\n");
      return 2;
    }
  }

  vnrt_context *ctx = NULL;
  if (vnrt_context_create(NULL, &ctx) != VNRT_OK) return 1;
  vnrt_device *device = NULL;
  CHECK(ctx, vnrt_device_select(ctx, spec, &device));
  vnrt_device_info info = {.struct_size = sizeof info};
  CHECK(ctx, vnrt_device_get_info(device, &info));
  printf("vnrt %s on %s (%s)\n", vnrt_version(NULL, NULL, NULL), info.spec, info.name);

  /* The graph: inputs and weights are declared with types; results are inferred. */
  vnrt_graph *g = NULL;
  CHECK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {T, C}}, tw = {VNRT_F16, 2, {N, C}}, tg = {VNRT_F32, 1, {N}};
  vnrt_value x, w1, gain, h, y, p;
  CHECK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  CHECK(ctx, vnrt_graph_add_input(g, "w1", &tw, 1, &w1));
  CHECK(ctx, vnrt_graph_add_input(g, "g", &tg, 1, &gain));
  const char *hn[] = {"h"}, *yn[] = {"y"}, *pn[] = {"p"};
  vnrt_value lin_in[2] = {x, w1}, norm_in[2] = {0, gain};
  CHECK(ctx, vnrt_graph_add_node(g, VNRT_OP_LINEAR, lin_in, 2, NULL, 0, hn, &h, 1));
  norm_in[0] = h;
  vnrt_attr eps = {.key = "eps", .kind = VNRT_ATTR_FLOAT, .f = 1e-6};
  CHECK(ctx, vnrt_graph_add_node(g, VNRT_OP_RMS_NORM, norm_in, 2, &eps, 1, yn, &y, 1));
  CHECK(ctx, vnrt_graph_add_node(g, VNRT_OP_SOFTMAX, &y, 1, NULL, 0, pn, &p, 1));
  CHECK(ctx, vnrt_graph_add_output(g, y));
  CHECK(ctx, vnrt_graph_add_output(g, p));

  char *text = NULL;
  if (vnrt_graph_print(g, &text) == VNRT_OK) {
    printf("\n%s\n", text);
    vnrt_free(ctx, text);
  }

  /* Compile once; bind weights once; run. */
  vnrt_plan *plan = NULL;
  CHECK(ctx, vnrt_plan_create(ctx, g, device, NULL, &plan));
  vnrt_graph_destroy(g); /* the plan keeps what it needs */
  static float xs[T * C], gs[N];
  static uint16_t ws[N * C];
  for (int i = 0; i < T * C; ++i) xs[i] = sinf(0.1f * (float)i);
  for (int i = 0; i < N * C; ++i) ws[i] = vnrt_f32_to_f16(0.05f * cosf(0.37f * (float)i));
  for (int i = 0; i < N; ++i) gs[i] = 1.0f + 0.01f * (float)i;
  CHECK(ctx, vnrt_plan_set_input(plan, "x", xs, sizeof xs));
  CHECK(ctx, vnrt_plan_set_input(plan, "w1", ws, sizeof ws));
  CHECK(ctx, vnrt_plan_set_input(plan, "g", gs, sizeof gs));
  CHECK(ctx, vnrt_plan_run(plan));

  static float ys[T * N], ps[T * N];
  CHECK(ctx, vnrt_plan_read_output(plan, "y", ys, sizeof ys));
  CHECK(ctx, vnrt_plan_read_output(plan, "p", ps, sizeof ps));
  for (int t = 0; t < T; ++t) {
    double sum = 0.0, ms = 0.0;
    int arg = 0;
    for (int n = 0; n < N; ++n) {
      sum += ps[t * N + n];
      ms += (double)ys[t * N + n] * ys[t * N + n] / (gs[n] * gs[n]);
      if (ps[t * N + n] > ps[t * N + arg]) arg = n;
    }
    printf("token %d: mean((y/g)^2) = %.4f, softmax sums to %.6f, argmax %d (p = %.4f)\n", t,
           ms / N, sum, arg, ps[t * N + arg]);
  }
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  CHECK(ctx, vnrt_plan_get_info(plan, &pi));
  printf("plan: %d nodes, %d on the cpu as fallback, intermediates %llu bytes (naive %llu)\n",
         pi.n_nodes, pi.n_fallback_nodes, (unsigned long long)pi.arena_bytes,
         (unsigned long long)pi.naive_bytes);
  vnrt_plan_destroy(plan);
  vnrt_context_destroy(ctx);
  return 0;
}
