/* vnrt-bench --graph FILE.vnir: a whole graph's time on the device and every node's share of
 * it (vnrt/inspect.h), with the nodes the device cannot run marked and kept out of its total. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "vnrt/inspect.h"

/* Random host data for the value `name` of type t, as a checkpoint's would look to the
 * kernels: floats uniform in [-1, 1); integers 0 (a valid index and expert everywhere), but a
 * hash-routing table (an i32 [rows, k] named *tid2eid, as the V4 model's) k distinct experts
 * a row, so that a hash layer reads k experts as the model does; quantized weights random codes
 * (e4m3 without its NaN codes; e2m1 has none) and e8m0 scales 2^-9..2^-6 (codes 118..121, as
 * vnrt-bench's cases and a checkpoint have them): a scale code of 0 sends FP4 to the slow exact
 * path, NaN codes FP8. */
static void *random_data(const char *name, const vnrt_tensor_type *t, size_t *out_bytes) {
  input_desc in = {.name = name, .type = *t, .g = GEN_UNIFORM, .lo = -1.0, .hi = 1.0};
  const size_t len = strlen(name);
  if (t->dtype == VNRT_E4M3 || t->dtype == VNRT_E2M1) {
    in.g = GEN_CODES;
  } else if (t->dtype == VNRT_E8M0) {
    in.g = GEN_CODES, in.lo = 118.0, in.hi = 121.0;
  } else if (t->dtype == VNRT_I32 && t->rank == 2 && t->dims[1] > 0 && len >= 7 &&
             !strcmp(name + len - 7, "tid2eid")) {
    in.g = GEN_EXPERTS, in.hi = (double)t->dims[1];
  } else if (t->dtype == VNRT_I32) {
    in.lo = in.hi = 0.0;
  }
  return bench_make_data(&in, out_bytes);
}

/* A plan of g on the device with random inputs; profile: time every node; shadow: compare
 * every node with the CPU reference kernel on the same inputs (vnrt/inspect.h). */
static vnrt_plan *graph_plan(vnrt_graph *g, int profile, int shadow) {
  vnrt_plan_desc pd = {0};
  pd.profile_nodes = profile ? 1 : -1;
  pd.shadow = shadow ? VNRT_SHADOW_CPU : VNRT_SHADOW_OFF;
  vnrt_plan *plan = NULL;
  check(vnrt_plan_create(ctx, g, device, &pd, &plan), "vnrt_plan_create");
  for (int32_t i = 0; i < vnrt_graph_input_count(g); ++i) {
    vnrt_value v = vnrt_graph_input(g, i, NULL);
    vnrt_tensor_type t;
    check(vnrt_graph_value_type(g, v, &t), "vnrt_graph_value_type");
    size_t bytes = 0;
    const char *name = vnrt_graph_value_name(g, v);
    void *data = random_data(name, &t, &bytes);
    check(vnrt_plan_set_input(plan, name, data, bytes), "vnrt_plan_set_input");
    free(data);
  }
  return plan;
}

/* --check: one run of a shadowed plan, every node beside the CPU reference kernel on the
 * same inputs (its own inputs, so errors do not compound over the graph); prints the nodes
 * out of docs/ops.md's tolerance and the one nearest its bound (*out_errors: per step, for
 * the JSON; -1 where a node was not checked). */
static void graph_shadow_check(vnrt_graph *g, int32_t n, double *out_errors) {
  vnrt_plan *plan = graph_plan(g, 0, 1);
  check(vnrt_plan_run(plan), "vnrt_plan_run (shadowed)");
  vnrt_shadow_report rep = {.struct_size = sizeof rep};
  check(vnrt_plan_get_shadow_report(plan, &rep), "vnrt_plan_get_shadow_report");
  double worst_ratio = -1.0;
  int32_t worst_step = -1;
  for (int32_t s = 0; s < n && s < vnrt_plan_node_count(plan); ++s) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    check(vnrt_plan_get_node(plan, s, &ni), "vnrt_plan_get_node");
    out_errors[s] = ni.shadow_checked ? ni.shadow_error : -1.0;
    if (!ni.shadow_checked) continue;
    /* the node nearest to (or furthest over) its own bound */
    const double ratio = ni.shadow_error == 0.0 ? 0.0
                         : ni.tolerance > 0.0   ? ni.shadow_error / ni.tolerance
                                                : INFINITY;
    if (worst_step < 0 || !(ratio <= worst_ratio)) {
      worst_ratio = ratio, worst_step = s;
    }
    if (ni.shadow_failed) {
      printf("CHECK FAIL step %d  %s (%s on %s): NMSE %.3g over the tolerance %.3g: %s\n", s,
             ni.name, vnrt_op_name(ni.op), ni.device, ni.shadow_error, ni.tolerance,
             ni.shadow_note);
    }
  }
  printf(
      "check (each node beside the CPU reference kernels on its own inputs, docs/ops.md "
      "tolerances): %d nodes compared, %d over tolerance, %d not compared",
      rep.n_checked, rep.n_failed, rep.n_unchecked);
  if (worst_step >= 0) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    check(vnrt_plan_get_node(plan, worst_step, &ni), "vnrt_plan_get_node");
    printf("; worst NMSE %.3g of its bound %.3g (step %d, %s)", ni.shadow_error, ni.tolerance,
           worst_step, ni.name);
  }
  printf("\n");
  if (rep.n_failed > 0) note_check_failed();
  vnrt_plan_destroy(plan);
}

void bench_graph_file(void) {
  vnrt_graph *g = NULL;
  check(vnrt_graph_parse_file(ctx, opt.graph, &g), "vnrt_graph_parse_file");
  /* The whole run, unprofiled: the graph's real time. */
  vnrt_plan *plan = graph_plan(g, 0, 0);
  double *runs = xmalloc(sizeof(double) * (size_t)opt.reps);
  for (int w = 0; w < opt.warmup; ++w) check(vnrt_plan_run(plan), "vnrt_plan_run");
  for (int r = 0; r < opt.reps; ++r) {
    evict_caches();
    double t0 = now_s();
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    runs[r] = now_s() - t0;
  }
  double whole = median(runs, opt.reps);
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  check(vnrt_plan_get_info(plan, &pi), "vnrt_plan_get_info");
  vnrt_plan_destroy(plan);

  /* Node by node: each node's median over the timed runs of a profiled plan. */
  plan = graph_plan(g, 1, 0);
  int32_t n = vnrt_plan_node_count(plan);
  double *node_t = xmalloc(sizeof(double) * (size_t)(n ? n : 1) * (size_t)opt.reps);
  for (int w = 0; w < opt.warmup; ++w) check(vnrt_plan_run(plan), "vnrt_plan_run");
  for (int r = 0; r < opt.reps; ++r) {
    evict_caches();
    check(vnrt_plan_run(plan), "vnrt_plan_run");
    for (int32_t s = 0; s < n; ++s) {
      vnrt_node_info ni = {.struct_size = sizeof ni};
      check(vnrt_plan_get_node(plan, s, &ni), "vnrt_plan_get_node");
      node_t[(size_t)s * (size_t)opt.reps + (size_t)r] = (double)ni.last_ns * 1e-9;
    }
  }
  double *med = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
  double dev_total = 0.0, cpu_total = 0.0;
  for (int32_t s = 0; s < n; ++s) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    check(vnrt_plan_get_node(plan, s, &ni), "vnrt_plan_get_node");
    med[s] = median(&node_t[(size_t)s * (size_t)opt.reps], opt.reps);
    if (ni.fallback) {
      cpu_total += med[s];
    } else {
      dev_total += med[s];
    }
  }
  printf(
      "graph %s on %s: %d nodes in %d partitions, %d on the cpu (fallback); whole run %.3f ms "
      "(%s of %d, %s caches); memory bandwidth (triad) %.2f GB/s\n\n",
      opt.graph, device_info.spec, pi.n_nodes, pi.n_partitions, pi.n_fallback_nodes, whole * 1e3,
      opt.stat_min ? "fastest" : "median", opt.reps, opt.hot ? "hot" : "cold", bandwidth_gbps);
  printf("%5s  %-24s %-16s %-12s %12s %7s %-6s  %s\n", "step", "node", "op", "device", "time (us)",
         "share", "clock", "shapes");
  for (int32_t s = 0; s < n; ++s) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    check(vnrt_plan_get_node(plan, s, &ni), "vnrt_plan_get_node");
    char shapes[256] = "", dev[40];
    size_t used = 0;
    for (int32_t k = 0; k < ni.n_inputs + ni.n_outputs && used < sizeof shapes; ++k) {
      const vnrt_tensor_type *t = k < ni.n_inputs ? &ni.inputs[k] : &ni.outputs[k - ni.n_inputs];
      used += (size_t)snprintf(shapes + used, sizeof shapes - used, "%s%s[",
                               k == 0             ? ""
                               : k == ni.n_inputs ? " -> "
                                                  : ", ",
                               vnrt_dtype_name(t->dtype));
      for (int32_t d = 0; d < t->rank && used < sizeof shapes; ++d) {
        used += (size_t)snprintf(shapes + used, sizeof shapes - used, "%s%lld", d ? ", " : "",
                                 (long long)t->dims[d]);
      }
      if (used < sizeof shapes) used += (size_t)snprintf(shapes + used, sizeof shapes - used, "]");
    }
    snprintf(dev, sizeof dev, "%s%s", ni.device, ni.fallback ? "*" : "");
    /* A fallback node's share is of the cpu's time, not the device's. */
    double total = ni.fallback ? cpu_total : dev_total;
    printf("%5d  %-24.24s %-16s %-12s %12.3f %6.1f%% %-6s  %s\n", s, ni.name, vnrt_op_name(ni.op),
           dev, med[s] * 1e6, total > 0 ? 100.0 * med[s] / total : 0.0,
           vnrt_node_clock_name(ni.clock), shapes);
  }
  printf("\n%s: %.3f ms in its %d nodes", device_info.spec, dev_total * 1e3,
         pi.n_nodes - pi.n_fallback_nodes);
  if (pi.n_fallback_nodes) {
    printf(
        "; cpu (fallback, marked *, excluded from the device's time and share): %.3f ms in "
        "%d nodes",
        cpu_total * 1e3, pi.n_fallback_nodes);
  }
  printf(
      "\n(per-node times come from a profiled plan: clock \"device\" is the device's own timer, "
      "each node alone; \"host\" the host clock around one node's submission, so their sum "
      "exceeds the whole run's time by the submission overhead)\n");
  double *errs = NULL;
  if (opt.check) {
    errs = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int32_t s = 0; s < n; ++s) errs[s] = -1.0;
    graph_shadow_check(g, n, errs);
  }
  if (opt.json) {
    FILE *f = fopen(opt.json, "w");
    if (!f) die("cannot write %s: %s", opt.json, strerror(errno));
    fprintf(f,
            "{\"graph\": \"%s\", \"device\": \"%s\", \"device_name\": \"%s\", \"reps\": %d, "
            "\"cold_caches\": %s, \"bandwidth_gbps\": %.6g, "
            "\"whole_run_ms\": %.6g, \"device_ms\": %.6g, \"fallback_ms\": %.6g, "
            "\"fallback_nodes\": %d, \"nodes\": [",
            opt.graph, device_info.spec, device_info.name, opt.reps, opt.hot ? "false" : "true",
            bandwidth_gbps, whole * 1e3, dev_total * 1e3, cpu_total * 1e3, pi.n_fallback_nodes);
    for (int32_t s = 0; s < n; ++s) {
      vnrt_node_info ni = {.struct_size = sizeof ni};
      check(vnrt_plan_get_node(plan, s, &ni), "vnrt_plan_get_node");
      fprintf(f,
              "%s\n  {\"step\": %d, \"name\": \"%s\", \"op\": \"%s\", \"device\": \"%s\", "
              "\"partition\": %d, \"fallback\": %s, \"time_us\": %.6g, \"clock\": \"%s\"",
              s ? "," : "", s, ni.name, vnrt_op_name(ni.op), ni.device, ni.partition,
              ni.fallback ? "true" : "false", med[s] * 1e6, vnrt_node_clock_name(ni.clock));
      /* --check: the node's NMSE against the reference; null: not compared; "inf" (JSON has
       * no infinity) for a mismatch of integers or of non-finite values, as vnrt-validate. */
      if (errs && errs[s] >= 0.0 && !isfinite(errs[s])) {
        fprintf(f, ", \"nmse\": \"inf\"");
      } else if (errs && errs[s] >= 0.0) {
        fprintf(f, ", \"nmse\": %.6g", errs[s]);
      } else if (errs) {
        fprintf(f, ", \"nmse\": null");
      }
      fprintf(f, "}");
    }
    fprintf(f, "\n]}\n");
    if (fclose(f) != 0) die("cannot write %s: %s", opt.json, strerror(errno));
  }
  free(errs);
  free(med);
  free(node_t);
  free(runs);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
}
