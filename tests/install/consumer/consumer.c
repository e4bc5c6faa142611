/* A tiny program built against an installed vnrt (pkg-config and CMake), proving that the
 * installed headers and library are enough to create a context, build, compile and run a graph. */
#include <math.h>
#include <stdio.h>
#include <vnrt/vnrt.h>

#define CHECK(ctx, expr)                                                              \
  do {                                                                                \
    vnrt_status s_ = (expr);                                                          \
    if (s_ != VNRT_OK) {                                                              \
      fprintf(stderr, "consumer: %s failed: %s: %s\n", #expr, vnrt_status_string(s_), \
              (ctx) ? vnrt_context_last_error(ctx) : "");                             \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

int main(void) {
  int major = -1, minor = -1, patch = -1;
  const char *version = vnrt_version(&major, &minor, &patch);
  if (major != VNRT_VERSION_MAJOR || minor != VNRT_VERSION_MINOR || patch != VNRT_VERSION_PATCH) {
    fprintf(stderr, "consumer: header says %d.%d.%d but library says %s\n", VNRT_VERSION_MAJOR,
            VNRT_VERSION_MINOR, VNRT_VERSION_PATCH, version);
    return 1;
  }

  vnrt_context_desc desc = {0};
  desc.no_plugins = 1; /* the staged tree's plugin directory is not where the library looks */
  vnrt_context *ctx = NULL;
  CHECK(ctx, vnrt_context_create(&desc, &ctx));

  vnrt_device *cpu = NULL;
  CHECK(ctx, vnrt_device_select(ctx, "cpu", &cpu));

  /* y = a + b on a [2, 3] f32 tensor. */
  vnrt_graph *graph = NULL;
  CHECK(ctx, vnrt_graph_create(ctx, &graph));
  vnrt_tensor_type type = {VNRT_F32, 2, {2, 3, 0, 0}};
  vnrt_value a, b, y;
  CHECK(ctx, vnrt_graph_add_input(graph, "a", &type, 0, &a));
  CHECK(ctx, vnrt_graph_add_input(graph, "b", &type, 0, &b));
  vnrt_value ab[2] = {a, b};
  const char *y_name = "y";
  CHECK(ctx, vnrt_graph_add_node(graph, VNRT_OP_ADD, ab, 2, NULL, 0, &y_name, &y, 1));
  CHECK(ctx, vnrt_graph_add_output(graph, y));

  vnrt_plan *plan = NULL;
  CHECK(ctx, vnrt_plan_create(ctx, graph, cpu, NULL, &plan));
  vnrt_graph_destroy(graph);

  float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {0.5f, -1, 10, 0, -4, 100}, yv[6] = {0};
  CHECK(ctx, vnrt_plan_set_input(plan, "a", av, sizeof(av)));
  CHECK(ctx, vnrt_plan_set_input(plan, "b", bv, sizeof(bv)));
  CHECK(ctx, vnrt_plan_run(plan));
  CHECK(ctx, vnrt_plan_read_output(plan, "y", yv, sizeof(yv)));
  for (int i = 0; i < 6; ++i) {
    if (fabsf(yv[i] - (av[i] + bv[i])) > 0.0f) {
      fprintf(stderr, "consumer: y[%d] = %g, expected %g\n", i, yv[i], av[i] + bv[i]);
      return 1;
    }
  }
  vnrt_plan_destroy(plan);
  vnrt_context_destroy(ctx);
  printf("consumer: vnrt %s OK\n", version);
  return 0;
}
