/* Bring-up instrumentation of plans (vnrt/inspect.h): where each node runs, its time per run,
 * a profiler's per-op table, and the switches for profiling and shadow mode. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy_stream.h"
#include "fault.h"
#include "options.h"
#include "plan_inspect.h"
#include "sized.h"

double vnrt_op_tolerance(vnrt_op op) {
  switch (op) {
    case VNRT_OP_MATMUL:
    case VNRT_OP_LINEAR:
    case VNRT_OP_ATTENTION:
    case VNRT_OP_MOE_FFN:
    case VNRT_OP_GROUPED_LINEAR:
    case VNRT_OP_INDEX_SCORES:
    case VNRT_OP_SPARSE_ATTENTION:
      return 1e-6;
    default:
      return 1e-7;
  }
}

double vnrt_result_tolerance(vnrt_op op, vnrt_dtype dtype) {
  const double tol = vnrt_op_tolerance(op);
  switch (op) {
    /* Ops that move or convert values compute nothing that could round differently: the
     * same input gives the same 16-bit result (cast rounds to nearest even), so their bound
     * is not widened, and a truncating f32 -> f16 cast (NMSE ~2.5e-7) still fails. */
    case VNRT_OP_CAST:
    case VNRT_OP_RESHAPE:
    case VNRT_OP_TRANSPOSE:
    case VNRT_OP_SLICE:
    case VNRT_OP_CONCAT:
    case VNRT_OP_EMBEDDING:
    case VNRT_OP_HC_EXPAND:
    case VNRT_OP_ENGRAM_LOOKUP:
    case VNRT_OP_KV_WRITE:
    case VNRT_OP_KV_SCATTER:
      return dtype == VNRT_F32 || dtype == VNRT_F16 || dtype == VNRT_BF16 ? tol : 0.0;
    default:
      break;
  }
  switch (dtype) {
    case VNRT_F32:
      return tol;
    case VNRT_F16:
      return tol + sqrt(tol) * 0x1p-10;
    case VNRT_BF16:
      return tol + sqrt(tol) * 0x1p-7;
    default:
      return 0.0;
  }
}

const char *vnrt_node_clock_name(vnrt_node_clock clock) {
  switch (clock) {
    case VNRT_NODE_CLOCK_NONE:
      return "none";
    case VNRT_NODE_CLOCK_HOST:
      return "host";
    case VNRT_NODE_CLOCK_DEVICE:
      return "device";
  }
  return "?";
}

/* Whether a backend's table has the run_timed slot (an optional API 3 slot: older tables end
 * before it). */
static bool has_timed_slot(const vnrt_backend_i *i) {
  return i->struct_size >= offsetof(vnrt_backend_i, run_timed) + sizeof i->run_timed &&
         i->run_timed != NULL;
}

/* ---- Switches -------------------------------------------------------------------------- */

vnrt_status vn_inspect_create(vnrt_plan *p, const vnrt_plan_desc *desc) {
  vnrt_context *ctx = p->ctx;
  bool profile = false, shadow = false;
  if (desc && desc->profile_nodes != 0) {
    profile = desc->profile_nodes > 0;
  } else {
    const char *env = vn_option(ctx, "profile");
    profile = env && strcmp(env, "1") == 0;
  }
  vnrt_shadow_mode mode = desc ? desc->shadow : VNRT_SHADOW_DEFAULT;
  if (mode != VNRT_SHADOW_DEFAULT && mode != VNRT_SHADOW_OFF && mode != VNRT_SHADOW_CPU) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_plan_desc.shadow=%d is not a vnrt_shadow_mode (0 DEFAULT, 1 OFF, 2 CPU)",
                    (int)mode);
  }
  if (mode == VNRT_SHADOW_DEFAULT) {
    const char *env = vn_option(ctx, "shadow");
    if (env && *env && strcmp(env, "off") != 0 && strcmp(env, "0") != 0) {
      if (strcmp(env, "cpu") != 0) {
        return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "%s=\"%s\": expected \"cpu\" (compare every node with the CPU reference "
                        "kernels) or \"off\"",
                        VN_SHADOW_ENV, env);
      }
      shadow = true;
    }
  } else {
    shadow = mode == VNRT_SHADOW_CPU;
  }
  if (!profile && !shadow) return VNRT_OK;
  vn_inspect *in = vn_calloc(ctx, 1, sizeof *in);
  if (!in) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for node statistics");
  p->inspect = in;
  in->profile = profile;
  in->shadow = shadow;
  in->report.enabled = shadow;
  in->report.first_failed = -1;
  in->node = vn_calloc(ctx, (size_t)(p->n_order ? p->n_order : 1), sizeof *in->node);
  if (!in->node)
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for node statistics");
  /* Device timing: profiled plans whose devices time their own nodes; shadow mode keeps its
   * node-by-node run (it compares each node's results before the next one runs). */
  bool any_timer = false;
  for (int32_t d = 0; profile && !shadow && d < p->n_devs; ++d) {
    in->timer[d] = has_timed_slot(p->devs[d].iface);
    any_timer |= in->timer[d];
  }
  if (any_timer) {
    in->dev_ns = vn_calloc(ctx, (size_t)(p->n_order ? p->n_order : 1), sizeof *in->dev_ns);
    if (!in->dev_ns)
      return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for node statistics");
  }
  const char *dir = desc && desc->shadow_dir ? desc->shadow_dir : vn_option(ctx, "shadow_dir");
  if (shadow && dir && *dir) {
    in->shadow_dir = vn_strdup(ctx, dir);
    if (!in->shadow_dir) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  if (shadow) {
    vn_log(ctx, VNRT_LOG_INFO,
           "plan for %s: shadow mode: every node is compared with the cpu reference kernels%s%s",
           p->devs[0].device->info.spec, in->shadow_dir ? "; the first failure is saved in " : "",
           in->shadow_dir ? in->shadow_dir : "");
  }
  return VNRT_OK;
}

void vn_inspect_destroy(vnrt_plan *p) {
  vn_inspect *in = p->inspect;
  if (!in) return;
  for (int32_t s = 0; in->node && s < p->n_order; ++s) vn_shadow_free_node(p, &in->node[s]);
  for (int i = 0; i < VNRT_MAX_NODE_INPUTS; ++i) vn_free(p->ctx, in->in[i]);
  for (int i = 0; i < VNRT_MAX_NODE_OUTPUTS; ++i) vn_free(p->ctx, in->out[i]);
  vn_free(p->ctx, in->node);
  vn_free(p->ctx, in->dev_ns);
  vn_free(p->ctx, in->shadow_dir);
  vn_free(p->ctx, in);
  p->inspect = NULL;
}

/* ---- Run hooks ------------------------------------------------------------------------- */

void vn_inspect_begin_run(vnrt_plan *p) {
  vn_inspect *in = p->inspect;
  if (!in) return;
  in->report.n_checked = in->report.n_failed = in->report.n_unchecked = 0;
  in->report.first_failed = -1;
  for (int32_t s = 0; s < p->n_order; ++s) {
    vn_node_stat *ns = &in->node[s];
    ns->checked = ns->failed = false;
    ns->error = 0.0;
    ns->tol = vnrt_op_tolerance(p->graph->nodes[p->order[s]].op);
    if (in->shadow && ns->ref) ns->note[0] = '\0';
  }
}

vnrt_status vn_inspect_before(vnrt_plan *p, int32_t s) {
  return p->inspect->shadow ? vn_shadow_before(p, s) : VNRT_OK;
}

/* Records step s's time, measured by clock. */
static void record_time(vnrt_plan *p, int32_t s, uint64_t ns, vnrt_node_clock clock) {
  vn_node_stat *st = &p->inspect->node[s];
  st->runs++;
  st->last_ns = ns;
  st->total_ns += ns;
  st->clock = clock;
  if (p->ctx->log_level <= VNRT_LOG_DEBUG) {
    char what[256];
    vn_log(p->ctx, VNRT_LOG_DEBUG, "node %d %s on %s: %.3f us (%s clock)", s,
           vn_inspect_node_str(p, s, what, sizeof what),
           p->devs[p->node_dev[p->order[s]]].device->info.spec, (double)ns * 1e-3,
           vnrt_node_clock_name(clock));
  }
}

vnrt_status vn_inspect_after(vnrt_plan *p, int32_t s, uint64_t ns) {
  vn_inspect *in = p->inspect;
  if (in->profile) record_time(p, s, ns, VNRT_NODE_CLOCK_HOST);
  return in->shadow ? vn_shadow_after(p, s) : VNRT_OK;
}

bool vn_inspect_device_timed(const vnrt_plan *p, int32_t d) {
  const vn_inspect *in = p->inspect;
  return in && in->profile && !in->shadow && in->dev_ns && in->timer[d];
}

vnrt_status vn_inspect_run_timed(vnrt_plan *p, int32_t d, int32_t first, int32_t s, int32_t e) {
  vn_inspect *in = p->inspect;
  vn_plan_device *pd = &p->devs[d];
  uint64_t *ns = in->dev_ns + s;
  memset(ns, 0, sizeof *ns * (size_t)(e - s));
  vnrt_status st = vn_dev_run_timed(pd->device, pd->exec, first, e - s, ns);
  if (st == VNRT_ERROR_UNSUPPORTED) {
    /* No usable timer on this device (backend.h: nothing ran): the host clock from now on. */
    vn_log(p->ctx, VNRT_LOG_INFO,
           "plan for %s: the device does not time nodes (%s); the host clock times them",
           pd->device->info.spec, p->ctx->last_error);
    vn_clear_error(p->ctx);
    in->timer[d] = false;
    return VNRT_ERROR_UNSUPPORTED;
  }
  VN_RETURN_IF_ERROR(st);
  for (int32_t k = s; k < e; ++k) record_time(p, k, in->dev_ns[k], VNRT_NODE_CLOCK_DEVICE);
  return VNRT_OK;
}

void vn_inspect_end_run(vnrt_plan *p) {
  vn_inspect *in = p->inspect;
  if (!in || !in->shadow) return;
  const vnrt_shadow_report *r = &in->report;
  if (r->n_failed == 0) {
    vn_log(p->ctx, VNRT_LOG_INFO,
           "shadow: %d nodes agree with the cpu reference kernels (%d could not be compared)",
           r->n_checked, r->n_unchecked);
    return;
  }
  char what[256];
  vn_log(p->ctx, VNRT_LOG_WARN,
         "shadow: %d of %d nodes compared are out of tolerance; the first is step %d %s",
         r->n_failed, r->n_checked, r->first_failed,
         vn_inspect_node_str(p, r->first_failed, what, sizeof what));
}

/* ---- Queries --------------------------------------------------------------------------- */

/* "in0type, in1type -> out0type" of step s. */
static const char *shapes_str(const vnrt_plan *p, int32_t s, char *buf, size_t size) {
  const vnrt_graph *g = p->graph;
  const vn_node *nd = &g->nodes[p->order[s]];
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t k = 0; k < nd->n_inputs + nd->n_outputs && used < size; ++k) {
    int32_t v = k < nd->n_inputs ? nd->inputs[k] : nd->outputs[k - nd->n_inputs];
    char t[96];
    const char *sep = k == 0 ? "" : k == nd->n_inputs ? " -> " : ", ";
    used += (size_t)snprintf(buf + used, size - used, "%s%s", sep,
                             vn_type_str(&g->values[v].type, t, sizeof t));
  }
  return buf;
}

const char *vn_inspect_node_str(const vnrt_plan *p, int32_t s, char *buf, size_t size) {
  const vnrt_graph *g = p->graph;
  const vn_node *nd = &g->nodes[p->order[s]];
  char shapes[256];
  snprintf(buf, size, "'%s' (%s %s)", g->values[nd->outputs[0]].name, vnrt_op_name(nd->op),
           shapes_str(p, s, shapes, sizeof shapes));
  return buf;
}

int32_t vnrt_plan_node_count(const vnrt_plan *plan) { return plan ? plan->n_order : 0; }

vnrt_status vnrt_plan_get_node(const vnrt_plan *p, int32_t step, vnrt_node_info *user) {
  if (!p || !user) return VNRT_ERROR_INVALID_ARGUMENT;
  size_t bytes;
  VN_RETURN_IF_ERROR(vn_sized_check(p->ctx, &vn_sized_node_info, user->struct_size, &bytes));
  if (step < 0 || step >= p->n_order) {
    return vn_error(p->ctx, VNRT_ERROR_OUT_OF_RANGE,
                    "vnrt_plan_get_node: step %d is not in [0, %d)", step, p->n_order);
  }
  vnrt_node_info full = {.struct_size = sizeof full}, *out = &full;
  const vnrt_graph *g = p->graph;
  const vn_node *nd = &g->nodes[p->order[step]];
  int32_t d = p->node_dev[p->order[step]];
  out->step = step;
  out->op = nd->op;
  out->name = g->values[nd->outputs[0]].name;
  out->n_inputs = nd->n_inputs;
  out->n_outputs = nd->n_outputs;
  for (int32_t i = 0; i < nd->n_inputs; ++i) out->inputs[i] = g->values[nd->inputs[i]].type;
  for (int32_t i = 0; i < nd->n_outputs; ++i) out->outputs[i] = g->values[nd->outputs[i]].type;
  snprintf(out->device, sizeof out->device, "%s", p->devs[d].device->info.spec);
  out->fallback = d != 0;
  for (int32_t pi = 0; pi < p->n_parts; ++pi) {
    if (step >= p->parts[pi].step && step < p->parts[pi].step + p->parts[pi].count) {
      out->partition = pi;
    }
  }
  out->tolerance = vnrt_op_tolerance(nd->op);
  if (p->inspect && p->inspect->node[step].checked) out->tolerance = p->inspect->node[step].tol;
  const vn_inspect *in = p->inspect;
  if (in) {
    const vn_node_stat *ns = &in->node[step];
    out->runs = ns->runs;
    out->last_ns = ns->last_ns;
    out->total_ns = ns->total_ns;
    out->clock = ns->runs ? ns->clock : VNRT_NODE_CLOCK_NONE;
    out->shadow_checked = ns->checked;
    out->shadow_failed = ns->failed;
    out->shadow_error = ns->error;
    snprintf(out->shadow_note, sizeof out->shadow_note, "%s", ns->note);
  }
  return vn_sized_write(p->ctx, &vn_sized_node_info, &full, user);
}

vnrt_status vnrt_plan_get_shadow_report(const vnrt_plan *p, vnrt_shadow_report *user) {
  if (!p || !user) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_shadow_report full = {.first_failed = -1};
  if (p->inspect) full = p->inspect->report;
  full.struct_size = sizeof full;
  return vn_sized_write(p->ctx, &vn_sized_shadow_report, &full, user);
}

/* ---- The profile as text --------------------------------------------------------------- */

typedef struct text_buf {
  vnrt_context *ctx;
  char *s;
  size_t len, cap;
  bool oom;
} text_buf;

static void put(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_buf *t, const char *fmt, ...) {
  if (t->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->s && t->len + (size_t)n < t->cap) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
    char *grown = vn_realloc(t->ctx, t->s, cap);
    if (!grown) {
      t->oom = true;
      return;
    }
    t->s = grown;
    t->cap = cap;
  }
}

vnrt_status vnrt_plan_print_profile(const vnrt_plan *p, uint32_t what, char **out_text) {
  if (out_text) *out_text = NULL;
  if (!p || !out_text) return VNRT_ERROR_INVALID_ARGUMENT;
  text_buf t = {.ctx = p->ctx};
  const vn_inspect *in = p->inspect;
  bool timed = in && in->profile, shadow = in && in->shadow;
  uint64_t total = 0;
  for (int32_t s = 0; timed && s < p->n_order; ++s) total += in->node[s].last_ns;
  if (what & VNRT_PROFILE_NODES) {
    put(&t, "%5s  %-24s %-16s %-10s %4s %12s%s%s  %s\n", "step", "node", "op", "device", "part",
        timed ? "time (us)" : "", timed ? " clock " : "", shadow ? "   NMSE vs cpu ref" : "",
        "shapes (inputs -> outputs)");
    for (int32_t s = 0; s < p->n_order; ++s) {
      vnrt_node_info ni = {.struct_size = sizeof ni};
      if (vnrt_plan_get_node(p, s, &ni) != VNRT_OK) continue;
      char dev[40];
      snprintf(dev, sizeof dev, "%s%s", ni.device, ni.fallback ? "*" : "");
      put(&t, "%5d  %-24.24s %-16s %-10s %4d ", s, ni.name, vnrt_op_name(ni.op), dev, ni.partition);
      if (timed) {
        put(&t, "%12.3f %-6s", (double)ni.last_ns * 1e-3, vnrt_node_clock_name(ni.clock));
      } else {
        put(&t, "%12s", "");
      }
      if (shadow) {
        if (!ni.shadow_checked) {
          put(&t, "   %-15s", "not compared");
        } else {
          put(&t, "   %9.2e %-5s", ni.shadow_error, ni.shadow_failed ? "FAIL" : "ok");
        }
      }
      char shapes[256];
      put(&t, "  %s\n", shapes_str(p, s, shapes, sizeof shapes));
    }
    bool any_fallback = false;
    for (int32_t s = 0; s < p->n_order; ++s) any_fallback |= p->node_dev[p->order[s]] != 0;
    if (any_fallback) put(&t, "(* the target cannot run the node: the cpu runs it instead)\n");
    if (timed) {
      put(&t,
          "(clock: device = the device's own timer, the node's execution alone; host = the "
          "host clock around its submit-and-wait)\n");
    }
  }
  if ((what & VNRT_PROFILE_OPS) && timed) {
    if (what & VNRT_PROFILE_NODES) put(&t, "\n");
    put(&t, "%-16s %6s %6s %14s %12s %7s\n", "op", "nodes", "on cpu", "total (us)", "mean (us)",
        "share");
    /* Ops by total time, largest first (selection over a table of VNRT_OP_COUNT rows). */
    uint64_t op_ns[VNRT_OP_COUNT] = {0};
    int32_t op_n[VNRT_OP_COUNT] = {0}, op_cpu[VNRT_OP_COUNT] = {0};
    bool done[VNRT_OP_COUNT] = {0};
    for (int32_t s = 0; s < p->n_order; ++s) {
      const vn_node *nd = &p->graph->nodes[p->order[s]];
      op_ns[nd->op] += in->node[s].last_ns;
      op_n[nd->op]++;
      op_cpu[nd->op] += p->node_dev[p->order[s]] != 0;
    }
    for (;;) {
      int best = -1;
      for (int o = 0; o < VNRT_OP_COUNT; ++o) {
        if (op_n[o] && !done[o] && (best < 0 || op_ns[o] > op_ns[best])) best = o;
      }
      if (best < 0) break;
      done[best] = true;
      put(&t, "%-16s %6d %6d %14.3f %12.3f %6.1f%%\n", vnrt_op_name((vnrt_op)best), op_n[best],
          op_cpu[best], (double)op_ns[best] * 1e-3, (double)op_ns[best] * 1e-3 / op_n[best],
          total ? 100.0 * (double)op_ns[best] / (double)total : 0.0);
    }
    put(&t, "%-16s %6d %6d %14.3f\n", "total", p->n_order, p->info.n_fallback_nodes,
        (double)total * 1e-3);
  } else if (what & VNRT_PROFILE_OPS) {
    put(&t, "(no per-op times: the plan was not profiled; see vnrt_plan_desc.profile_nodes)\n");
  }
  if (t.oom) {
    vn_free(p->ctx, t.s);
    return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory printing a profile");
  }
  if (!t.s) t.s = vn_strdup(p->ctx, "");
  if (!t.s) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory printing a profile");
  *out_text = t.s;
  return VNRT_OK;
}
