/* Passes and the arena planner: order, liveness, and that no two live tensors overlap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "graph.h"
#include "passes.h"
#include "test_util.h"

static vnrt_value add_in(vnrt_graph *g, const char *name, int64_t n) {
  vnrt_tensor_type t = {VNRT_F32, 1, {n}};
  vnrt_value v = -1;
  ck_assert_int_eq(vnrt_graph_add_input(g, name, &t, 0, &v), VNRT_OK);
  return v;
}

static vnrt_value binop(vnrt_graph *g, vnrt_op op, vnrt_value a, vnrt_value b, const char *name) {
  vnrt_value in[2] = {a, b}, out = -1;
  const char *names[1] = {name};
  ck_assert_int_eq(vnrt_graph_add_node(g, op, in, 2, NULL, 0, names, &out, 1), VNRT_OK);
  return out;
}

START_TEST(topo_order_drops_dead_nodes_and_keeps_producers_first) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value x = add_in(g, "x", 8), y = add_in(g, "y", 8);
  vnrt_value a = binop(g, VNRT_OP_ADD, x, y, "a");
  vnrt_value dead = binop(g, VNRT_OP_MUL, x, x, "dead");
  vnrt_value b = binop(g, VNRT_OP_SUB, a, y, "b");
  vnrt_value c = binop(g, VNRT_OP_MUL, b, a, "c");
  (void)dead;
  TU_OK(ctx, vnrt_graph_add_output(g, c));
  int32_t order[8], n = 0;
  char err[256];
  ck_assert_int_eq(vn_pass_topo_order(g, order, &n, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(n, 3); /* "dead" is not needed by any output */
  ck_assert_int_eq(order[0], g->values[a].producer);
  ck_assert_int_eq(order[1], g->values[b].producer);
  ck_assert_int_eq(order[2], g->values[c].producer);

  vn_live_range r[16];
  vn_pass_liveness(g, order, n, r);
  ck_assert_int_eq(r[x].first, -1);
  ck_assert_int_eq(r[a].first, 0);
  ck_assert_int_eq(r[a].last, 2); /* read by c at step 2 */
  ck_assert_int_eq(r[b].first, 1);
  ck_assert_int_eq(r[b].last, 2);
  ck_assert_int_eq(r[c].last, 3); /* an output lives to the end */
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(topo_order_reports_a_cycle) {
  /* The builder cannot make a cycle; corrupt a graph by hand to prove the pass catches it. */
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value x = add_in(g, "x", 4);
  vnrt_value a = binop(g, VNRT_OP_ADD, x, x, "a");
  vnrt_value b = binop(g, VNRT_OP_ADD, a, x, "b");
  TU_OK(ctx, vnrt_graph_add_output(g, b));
  g->nodes[g->values[a].producer].inputs[1] = b;
  int32_t order[4], n = 0;
  char err[256] = "";
  ck_assert_int_eq(vn_pass_topo_order(g, order, &n, err, sizeof err), VNRT_ERROR_INVALID_GRAPH);
  ck_assert_ptr_nonnull(strstr(err, "cycle"));
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

static uint64_t rng(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

START_TEST(arena_never_overlaps_live_tensors) {
  vnrt_context *ctx = tu_context();
  uint64_t seed = 0x1234567ull;
  for (int trial = 0; trial < 300; ++trial) {
    int32_t n = 1 + (int32_t)(rng(&seed) % 40);
    vn_arena_request req[40];
    uint64_t off[40], total = 0, sum = 0, peak_live = 0;
    for (int32_t i = 0; i < n; ++i) {
      int32_t first = (int32_t)(rng(&seed) % 30);
      int32_t len = (int32_t)(rng(&seed) % 8);
      req[i] = (vn_arena_request){rng(&seed) % 5000, first, first + len};
      sum += (req[i].size + 255) / 256 * 256;
    }
    TU_OK(ctx, vn_arena_plan(ctx, req, n, 256, off, &total));
    for (int32_t s = 0; s < 40; ++s) {
      uint64_t live = 0;
      for (int32_t i = 0; i < n; ++i) {
        if (req[i].first <= s && s <= req[i].last) live += (req[i].size + 255) / 256 * 256;
      }
      if (live > peak_live) peak_live = live;
    }
    for (int32_t i = 0; i < n; ++i) {
      ck_assert_uint_eq(off[i] % 256, 0);
      ck_assert_uint_le(off[i] + req[i].size, total);
      for (int32_t j = i + 1; j < n; ++j) {
        bool time = !(req[i].last < req[j].first || req[j].last < req[i].first);
        bool space = off[i] < off[j] + req[j].size && off[j] < off[i] + req[i].size;
        ck_assert_msg(!(time && space && req[i].size && req[j].size),
                      "trial %d: tensors %d and %d overlap", trial, i, j);
      }
    }
    /* Never worse than one buffer each, never better than the peak of live bytes. */
    ck_assert_uint_le(total, sum);
    ck_assert_uint_ge(total, peak_live);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(arena_reuses_memory_of_dead_tensors) {
  vnrt_context *ctx = tu_context();
  /* A chain a -> b -> c -> d of equal sizes needs two slots, not four. */
  vn_arena_request req[4] = {{1024, 0, 1}, {1024, 1, 2}, {1024, 2, 3}, {1024, 3, 4}};
  uint64_t off[4], total = 0;
  TU_OK(ctx, vn_arena_plan(ctx, req, 4, 256, off, &total));
  ck_assert_uint_eq(total, 2048);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(plan_reports_arena_peak_below_naive) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value x = add_in(g, "x", 1024);
  vnrt_value v = x;
  char name[16];
  for (int i = 0; i < 8; ++i) {
    snprintf(name, sizeof name, "t%d", i);
    v = binop(g, VNRT_OP_ADD, v, x, name);
  }
  TU_OK(ctx, vnrt_graph_add_output(g, v));
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, NULL, &plan));
  vnrt_plan_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  ck_assert_int_eq(info.n_nodes, 8);
  ck_assert_uint_eq(info.naive_bytes, 8 * 4096);
  ck_assert_uint_eq(info.arena_bytes, 2 * 4096);
  /* And the packed plan still computes x * 9. */
  float in[1024], out[1024];
  for (int i = 0; i < 1024; ++i) in[i] = (float)i * 0.25f;
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", in, sizeof in));
  TU_OK(ctx, vnrt_plan_run(plan));
  TU_OK(ctx, vnrt_plan_read_output(plan, "t7", out, sizeof out));
  for (int i = 0; i < 1024; ++i) ck_assert_float_eq(out[i], in[i] * 9.0f);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("passes");
  TCase *tc = tcase_create("passes");
  tcase_add_test(tc, topo_order_drops_dead_nodes_and_keeps_producers_first);
  tcase_add_test(tc, topo_order_reports_a_cycle);
  tcase_add_test(tc, arena_never_overlaps_live_tensors);
  tcase_add_test(tc, arena_reuses_memory_of_dead_tensors);
  tcase_add_test(tc, plan_reports_arena_peak_below_naive);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
