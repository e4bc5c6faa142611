/* Shadow mode (vnrt/inspect.h): after a node runs on its device, the CPU reference kernel of
 * the same node runs on the same inputs — read back from the device just before the node ran —
 * and the results are compared with the op's tolerance. Each node is judged on its own inputs,
 * so an error does not spread to the nodes after it; the first node out of tolerance is named
 * in the log and, given a directory, saved as a one-node graph with its inputs for vnrt-run. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "plan_inspect.h"
#include "vnrt/io.h"

static const char *const kIn[VNRT_MAX_NODE_INPUTS] = {"in0", "in1", "in2", "in3",
                                                      "in4", "in5", "in6", "in7"};
static const char *const kOut[VNRT_MAX_NODE_OUTPUTS] = {"out0", "out1", "out2", "out3"};

void vn_shadow_free_node(vnrt_plan *p, vn_node_stat *ns) {
  (void)p;
  vnrt_plan_destroy(ns->ref);
  vnrt_graph_destroy(ns->ref_graph);
  ns->ref = NULL;
  ns->ref_graph = NULL;
}

/* The node of step s alone, as a graph of its own on the CPU's reference kernels. A failure
 * leaves the node uncompared with the reason in its note (some nodes, such as an
 * engram_lookup served from a store's row cache, only exist inside their plan). */
static void build_ref(vnrt_plan *p, int32_t s, vn_node_stat *ns) {
  vnrt_context *ctx = p->ctx;
  const vnrt_graph *g = p->graph;
  const vn_node *nd = &g->nodes[p->order[s]];
  ns->ref_tried = true;
  vnrt_value in[VNRT_MAX_NODE_INPUTS], out[VNRT_MAX_NODE_OUTPUTS];
  vnrt_status st = vnrt_graph_create(ctx, &ns->ref_graph);
  for (int32_t i = 0; i < nd->n_inputs && st == VNRT_OK; ++i) {
    const vn_value *v = &g->values[nd->inputs[i]];
    st = vnrt_graph_add_input(ns->ref_graph, kIn[i], &v->type, v->kind == VN_VALUE_PARAM, &in[i]);
  }
  if (st == VNRT_OK) {
    st = vnrt_graph_add_node(ns->ref_graph, nd->op, in, nd->n_inputs, nd->attrs, nd->n_attrs, kOut,
                             out, nd->n_outputs);
  }
  for (int32_t o = 0; o < nd->n_outputs && st == VNRT_OK; ++o) {
    st = vnrt_graph_add_output(ns->ref_graph, out[o]);
  }
  if (st == VNRT_OK) {
    vnrt_plan_desc d = {0};
    d.kernels = VNRT_KERNELS_REFERENCE;
    d.no_fallback = 1;
    d.max_work = UINT64_MAX;
    d.profile_nodes = -1;
    d.shadow = VNRT_SHADOW_OFF;
    st = vnrt_plan_create(ctx, ns->ref_graph, vn_cpu_device(ctx), &d, &ns->ref);
  }
  if (st != VNRT_OK) {
    snprintf(ns->note, sizeof ns->note, "not compared: the node alone does not build: %s",
             vnrt_context_last_error(ctx));
    vn_shadow_free_node(p, ns);
    vn_clear_error(ctx);
  }
}

/* Copies value v's tensor on device slot d into *buf (grown as needed). */
static vnrt_status read_value(vnrt_plan *p, int32_t v, int32_t d, void **buf) {
  const vn_plan_device *pd = &p->devs[d];
  const vnrt_backend_tensor *bt = &pd->tensors[p->vals[v].local[d]];
  size_t bytes = vnrt_tensor_type_bytes(&bt->type);
  void *grown = vn_realloc(p->ctx, *buf, bytes ? bytes : 1);
  if (!grown) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "shadow: out of memory");
  *buf = grown;
  if (bytes == 0) return VNRT_OK;
  return vn_dev_read(pd->device, bt->buffer, bt->offset, grown, bytes);
}

vnrt_status vn_shadow_before(vnrt_plan *p, int32_t s) {
  vn_inspect *in = p->inspect;
  vn_node_stat *ns = &in->node[s];
  if (!ns->ref_tried) build_ref(p, s, ns);
  if (!ns->ref) return VNRT_OK;
  const vn_node *nd = &p->graph->nodes[p->order[s]];
  int32_t d = p->node_dev[p->order[s]];
  for (int32_t i = 0; i < nd->n_inputs; ++i) {
    int32_t v = nd->inputs[i];
    if (p->vals[v].no_storage || p->vals[v].local[d] < 0) {
      snprintf(ns->note, sizeof ns->note, "not compared: input '%s' has no storage on %s",
               p->graph->values[v].name, p->devs[d].device->info.spec);
      return VNRT_OK;
    }
    /* The inputs as the node will read them: before it runs, since an in-place update may
     * overwrite one. */
    VN_RETURN_IF_ERROR(read_value(p, v, d, &in->in[i]));
  }
  ns->note[0] = '\0';
  ns->checked = true; /* provisional: inputs captured */
  return VNRT_OK;
}

static double load_elem(const void *data, vnrt_dtype dt, int64_t i) {
  switch (dt) {
    case VNRT_F32:
      return ((const float *)data)[i];
    case VNRT_F16:
      return vnrt_f16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_BF16:
      return vnrt_bf16_to_f32(((const uint16_t *)data)[i]);
    default:
      return NAN;
  }
}

/* The NMSE of got against ref (both of type t); INFINITY, with the element named in why, for
 * integers or bytes that differ or a non-finite value that does not match. */
static double compare(const void *got, const void *ref, const vnrt_tensor_type *t, int32_t o,
                      char *why, size_t size) {
  int64_t n = vnrt_tensor_type_numel(t);
  if (t->dtype != VNRT_F32 && t->dtype != VNRT_F16 && t->dtype != VNRT_BF16) {
    size_t bytes = vnrt_tensor_type_bytes(t);
    for (size_t i = 0; i < bytes; ++i) {
      if (((const uint8_t *)got)[i] != ((const uint8_t *)ref)[i]) {
        if (t->dtype == VNRT_I32) {
          int64_t e = (int64_t)(i / 4);
          snprintf(why, size, "out%d: element %lld is %d, reference %d", o, (long long)e,
                   ((const int32_t *)got)[e], ((const int32_t *)ref)[e]);
        } else {
          snprintf(why, size, "out%d: byte %zu is 0x%02X, reference 0x%02X", o, i,
                   ((const uint8_t *)got)[i], ((const uint8_t *)ref)[i]);
        }
        return INFINITY;
      }
    }
    return 0.0;
  }
  double num = 0.0, den = 0.0, worst_abs = -1.0;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < n; ++i) {
    double a = load_elem(got, t->dtype, i), r = load_elem(ref, t->dtype, i);
    if (isinf(r) && a == r) continue;
    if (isfinite(r) != isfinite(a) || isnan(a) || isnan(r)) {
      snprintf(why, size, "out%d: element %lld is %g, reference %g", o, (long long)i, a, r);
      return INFINITY;
    }
    num += (a - r) * (a - r);
    den += r * r;
    if (fabs(a - r) > worst_abs) worst_abs = fabs(a - r), worst_i = i;
  }
  double nmse = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
  if (n > 0) {
    snprintf(why, size, "out%d: NMSE %.3g; largest difference at element %lld: %g, reference %g", o,
             nmse, (long long)worst_i, load_elem(got, t->dtype, worst_i),
             load_elem(ref, t->dtype, worst_i));
  }
  return nmse;
}

/* Saves the one-node graph of step s, its inputs and both results under the shadow directory,
 * and logs how to replay it. */
static void save_failure(vnrt_plan *p, int32_t s, void *const *ref_out) {
  vn_inspect *in = p->inspect;
  vnrt_context *ctx = p->ctx;
  vn_node_stat *ns = &in->node[s];
  const vn_node *nd = &p->graph->nodes[p->order[s]];
  int32_t d = p->node_dev[p->order[s]];
  in->saved = true;
  if (mkdir(in->shadow_dir, 0777) != 0 && errno != EEXIST) {
    vn_log(ctx, VNRT_LOG_WARN, "shadow: cannot create %s: %s", in->shadow_dir, strerror(errno));
    return;
  }
  char base[256], safe[64];
  const char *name = p->graph->values[nd->outputs[0]].name;
  size_t k = 0;
  for (; name[k] && k + 1 < sizeof safe; ++k) {
    safe[k] = isalnum((unsigned char)name[k]) || name[k] == '-' ? name[k] : '_';
  }
  safe[k] = '\0';
  snprintf(base, sizeof base, "%s/%s", in->shadow_dir, safe);
  char path[320], cmd[2048];
  char *text = NULL;
  vnrt_status st = vnrt_graph_print(ns->ref_graph, &text);
  snprintf(path, sizeof path, "%s.vnir", base);
  FILE *f = st == VNRT_OK ? fopen(path, "w") : NULL;
  bool ok = f && fputs(text, f) >= 0;
  if (f && fclose(f) != 0) ok = false;
  vnrt_free(ctx, text);
  size_t used = (size_t)snprintf(cmd, sizeof cmd, "vnrt-run %s --device %s", path,
                                 p->devs[d].device->info.spec);
  for (int32_t i = 0; ok && i < nd->n_inputs; ++i) {
    snprintf(path, sizeof path, "%s.%s.npy", base, kIn[i]);
    ok = vnrt_npy_write(ctx, path, &p->graph->values[nd->inputs[i]].type, in->in[i]) == VNRT_OK;
    if (used < sizeof cmd) {
      used += (size_t)snprintf(cmd + used, sizeof cmd - used, " --input %s=%s", kIn[i], path);
    }
  }
  for (int32_t o = 0; ok && o < nd->n_outputs; ++o) {
    const vnrt_tensor_type *t = &p->graph->values[nd->outputs[o]].type;
    snprintf(path, sizeof path, "%s.%s.device.npy", base, kOut[o]);
    ok = vnrt_npy_write(ctx, path, t, in->out[o]) == VNRT_OK;
    snprintf(path, sizeof path, "%s.%s.ref.npy", base, kOut[o]);
    ok = ok && vnrt_npy_write(ctx, path, t, ref_out[o]) == VNRT_OK;
  }
  if (!ok) {
    vn_log(ctx, VNRT_LOG_WARN, "shadow: cannot save node '%s' in %s: %s", name, in->shadow_dir,
           vnrt_context_last_error(ctx));
    return;
  }
  snprintf(in->report.saved, sizeof in->report.saved, "%s", base);
  vn_log(ctx, VNRT_LOG_WARN,
         "shadow: saved as %s.vnir with its inputs (.inN.npy) and both results (.outN.device.npy, "
         ".outN.ref.npy); replay: %s",
         base, cmd);
}

vnrt_status vn_shadow_after(vnrt_plan *p, int32_t s) {
  vn_inspect *in = p->inspect;
  vn_node_stat *ns = &in->node[s];
  if (!ns->checked) {
    in->report.n_unchecked++;
    return VNRT_OK;
  }
  vnrt_context *ctx = p->ctx;
  const vn_node *nd = &p->graph->nodes[p->order[s]];
  int32_t d = p->node_dev[p->order[s]];
  for (int32_t o = 0; o < nd->n_outputs; ++o) {
    VN_RETURN_IF_ERROR(read_value(p, nd->outputs[o], d, &in->out[o]));
  }
  vnrt_status st = VNRT_OK;
  for (int32_t i = 0; i < nd->n_inputs && st == VNRT_OK; ++i) {
    st = vnrt_plan_set_input(ns->ref, kIn[i], in->in[i],
                             vnrt_tensor_type_bytes(&p->graph->values[nd->inputs[i]].type));
  }
  if (st == VNRT_OK) st = vnrt_plan_run(ns->ref);
  void *ref_out[VNRT_MAX_NODE_OUTPUTS] = {0};
  /* Each output against its own bound (vnrt_result_tolerance: a bf16 result carries its final
   * rounding); the node's error is that of the output furthest over, or nearest to, it. */
  double worst = 0.0, worst_tol = vnrt_op_tolerance(nd->op), worst_ratio = -1.0;
  char why[160] = "", worst_why[160] = "";
  for (int32_t o = 0; o < nd->n_outputs && st == VNRT_OK; ++o) {
    const vnrt_tensor_type *t = &p->graph->values[nd->outputs[o]].type;
    size_t bytes = vnrt_tensor_type_bytes(t);
    ref_out[o] = vn_malloc(ctx, bytes ? bytes : 1);
    if (!ref_out[o]) st = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "shadow: out of memory");
    if (st == VNRT_OK) st = vnrt_plan_read_output(ns->ref, kOut[o], ref_out[o], bytes);
    if (st != VNRT_OK) break;
    double e = compare(in->out[o], ref_out[o], t, o, why, sizeof why);
    const double tol = vnrt_result_tolerance(nd->op, t->dtype);
    const double ratio = e == 0.0 ? 0.0 : tol > 0.0 ? e / tol : INFINITY;
    if (o == 0 || !(ratio <= worst_ratio)) {
      worst = e;
      worst_tol = tol;
      worst_ratio = ratio;
      snprintf(worst_why, sizeof worst_why, "%s", why);
    }
  }
  if (st != VNRT_OK) {
    ns->checked = false;
    snprintf(ns->note, sizeof ns->note, "not compared: the reference kernel failed: %s",
             vnrt_context_last_error(ctx));
    vn_clear_error(ctx);
    in->report.n_unchecked++;
  } else {
    double tol = worst_tol;
    ns->error = worst;
    ns->tol = tol;
    ns->failed = !(worst <= tol);
    snprintf(ns->note, sizeof ns->note, "%s", worst_why);
    in->report.n_checked++;
    if (ns->failed) {
      in->report.n_failed++;
      if (in->report.first_failed < 0) {
        in->report.first_failed = s;
        char what[256];
        vn_log(ctx, VNRT_LOG_WARN,
               "shadow: node %s at step %d on %s differs from the cpu reference kernel: NMSE "
               "%.3g over the tolerance %.2g (%s)",
               vn_inspect_node_str(p, s, what, sizeof what), s, p->devs[d].device->info.spec, worst,
               tol, worst_why);
        if (in->shadow_dir && !in->saved) save_failure(p, s, ref_out);
      }
    }
  }
  for (int32_t o = 0; o < nd->n_outputs; ++o) vn_free(ctx, ref_out[o]);
  return VNRT_OK;
}
