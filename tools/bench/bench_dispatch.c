/* vnrt-bench's dispatch-overhead case: what one small op costs inside a recorded plan, and
 * what it costs as a plan of its own (one submit per op), on the same device in one run. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

enum { kChainOps = 64, kElems = 1024, kTinyOps = 1000, kTinyElems = 64 };

/* A plan of `n_ops` scale nodes over x[kElems]: a chain (each reads the previous result, so
 * every dispatch waits on the one before) or a fan (all read x; every result an output). */
static vnrt_plan *small_ops_plan(int n_ops, bool chain, float *x) {
  vnrt_graph *g = NULL;
  check(vnrt_graph_create(ctx, &g), "vnrt_graph_create");
  vnrt_tensor_type t = ttype(VNRT_F32, 1, kElems, 0, 0);
  vnrt_value in, v;
  check(vnrt_graph_add_input(g, "x", &t, 0, &in), "vnrt_graph_add_input");
  vnrt_attr s = {.key = "s", .kind = VNRT_ATTR_FLOAT, .f = 1.0009765625};
  v = in;
  for (int i = 0; i < n_ops; ++i) {
    vnrt_value src = chain ? v : in;
    check(vnrt_graph_add_node(g, VNRT_OP_SCALE, &src, 1, &s, 1, NULL, &v, 1),
          "vnrt_graph_add_node");
    if (!chain || i == n_ops - 1) check(vnrt_graph_add_output(g, v), "vnrt_graph_add_output");
  }
  vnrt_plan *plan = NULL;
  vnrt_plan_desc pd = {.kernels = VNRT_KERNELS_FAST};
  check(vnrt_plan_create(ctx, g, device, &pd, &plan), "vnrt_plan_create");
  vnrt_graph_destroy(g);
  check(vnrt_plan_set_input(plan, "x", x, sizeof(float) * kElems), "vnrt_plan_set_input");
  return plan;
}

/* A plan of kTinyOps adds over x[1, kTinyElems], each adding x to the last result: what a
 * decode step's many tiny nodes (residual adds, per-head pieces) cost beyond their work. */
static vnrt_plan *tiny_adds_plan(float *x) {
  vnrt_graph *g = NULL;
  check(vnrt_graph_create(ctx, &g), "vnrt_graph_create");
  vnrt_tensor_type t = ttype(VNRT_F32, 2, 1, kTinyElems, 0);
  vnrt_value in, v;
  check(vnrt_graph_add_input(g, "x", &t, 0, &in), "vnrt_graph_add_input");
  v = in;
  for (int i = 0; i < kTinyOps; ++i) {
    vnrt_value args[2] = {v, in};
    check(vnrt_graph_add_node(g, VNRT_OP_ADD, args, 2, NULL, 0, NULL, &v, 1),
          "vnrt_graph_add_node");
  }
  check(vnrt_graph_add_output(g, v), "vnrt_graph_add_output");
  vnrt_plan *plan = NULL;
  vnrt_plan_desc pd = {.kernels = VNRT_KERNELS_FAST};
  check(vnrt_plan_create(ctx, g, device, &pd, &plan), "vnrt_plan_create");
  vnrt_graph_destroy(g);
  check(vnrt_plan_set_input(plan, "x", x, sizeof(float) * kTinyElems), "vnrt_plan_set_input");
  return plan;
}

/* Median seconds of one vnrt_plan_run (caches left warm: the data is 4 KiB). */
static double time_runs(vnrt_plan *plan) {
  int reps = opt.quick ? 20 : 200;
  double *t = xmalloc(sizeof *t * (size_t)reps);
  for (int w = 0; w < 5; ++w) check(vnrt_plan_run(plan), "vnrt_plan_run");
  for (int r = 0; r < reps; ++r) {
    double t0 = now_s();
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    t[r] = now_s() - t0;
  }
  double m = median(t, reps);
  free(t);
  return m;
}

void bench_dispatch(void) {
  float *x = xmalloc(sizeof(float) * kElems);
  for (int i = 0; i < kElems; ++i) x[i] = (float)(rng_uniform() - 0.5);
  vnrt_plan *one = small_ops_plan(1, true, x);
  vnrt_plan *chain = small_ops_plan(kChainOps, true, x);
  vnrt_plan *fan = small_ops_plan(kChainOps, false, x);
  /* Interleaved, so that a change in load hits all three alike. */
  double t_one = 0, t_chain = 0, t_fan = 0;
  int rounds = opt.quick ? 1 : 3;
  for (int r = 0; r < rounds; ++r) {
    t_one += time_runs(one) / rounds;
    t_chain += time_runs(chain) / rounds;
    t_fan += time_runs(fan) / rounds;
  }
  vnrt_plan_destroy(one);
  vnrt_plan_destroy(chain);
  vnrt_plan_destroy(fan);
  vnrt_plan *tiny = tiny_adds_plan(x);
  double t_tiny = time_runs(tiny);
  vnrt_plan_destroy(tiny);
  free(x);

  /* One row of rms_norm and softmax called back to back (warm caches): the op's own cost in
   * a decode step, where the row was just written by the node before. The cold-cache rows of
   * the rms_norm and softmax cases add the DRAM and TLB misses of an evicted 16 KiB row. */
  const input_desc rows_in[2] = {
      {"x", ttype(VNRT_F32, 2, 1, 4096, 0), 0, GEN_UNIFORM, -2.0, 2.0},
      {"w", ttype(VNRT_F32, 1, 4096, 0, 0), 1, GEN_UNIFORM, 0.5, 1.5},
  };
  const vnrt_op row_ops[2] = {VNRT_OP_RMS_NORM, VNRT_OP_SOFTMAX};
  double t_row[2];
  for (int o = 0; o < 2; ++o) {
    bench_graph bg = {.op = row_ops[o], .ins = rows_in, .n_in = o == 0 ? 2 : 1, .n_out = 1};
    graph_inputs(&bg);
    vnrt_plan *p = make_plan(&bg, device, VNRT_KERNELS_FAST);
    t_row[o] = time_runs(p);
    vnrt_plan_destroy(p);
    graph_free(&bg);
  }

  char note[96];
  printf("\n");
  add_figure("dispatch: one scale[1024] as its own plan run", t_one * 1e6, "us",
             "one submit (or pool round) per op");
  snprintf(note, sizeof note, "per op in one %d-op plan run: each op waits on the last", kChainOps);
  add_figure("dispatch: scale[1024] in a recorded chain", t_chain * 1e6 / kChainOps, "us", note);
  snprintf(note, sizeof note, "per op in one %d-op plan run: no dependencies", kChainOps);
  add_figure("dispatch: scale[1024] in a recorded fan", t_fan * 1e6 / kChainOps, "us", note);
  add_figure("dispatch: own plan / in a recorded chain", t_one / (t_chain / kChainOps), "x",
             "how much a plan saves per small op");
  snprintf(note, sizeof note, "per node in one %d-node plan run, each adding x to the last",
           kTinyOps);
  add_figure("dispatch: add[1,64] in a recorded chain", t_tiny * 1e6 / kTinyOps, "us", note);
  add_figure("rms_norm f32 x[1,4096] w[4096], warm", t_row[0] * 1e6, "us",
             "one plan run, back to back (caches warm)");
  add_figure("softmax f32 x[1,4096], warm", t_row[1] * 1e6, "us",
             "one plan run, back to back (caches warm)");
}
