/* vnrt-validate: runs every op on every selected device against the CPU reference kernels.
 * This file runs, compares and reports; the cases are in validate/cases.c, their inputs in
 * validate/inputs.c. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "validate/validate.h"
#include "vnrt/inspect.h"
#include "vnrt/vnrt.h"

/* ---- Running and comparing ------------------------------------------------------------- */

typedef struct result {
  void *data[4];
  vnrt_tensor_type type[4];
} result;

static void free_result(result *r) {
  for (int i = 0; i < 4; ++i) free(r->data[i]), r->data[i] = NULL;
}

static vnrt_status run_case(vnrt_context *ctx, const vcase *c, void *const *inputs,
                            vnrt_device *device, vnrt_kernel_mode mode, result *out, char *err,
                            size_t err_size) {
  memset(out, 0, sizeof *out);
  vnrt_graph *g = NULL;
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_graph_create(ctx, &g);
  vnrt_value in[MAX_IN], res[4];
  const char *in_names[MAX_IN] = {"in0", "in1", "in2", "in3", "in4", "in5", "in6"};
  const char *out_names[4] = {"out0", "out1", "out2", "out3"};
  for (int32_t i = 0; i < c->n_in && s == VNRT_OK; ++i) {
    s = vnrt_graph_add_input(g, in_names[i], &c->in[i].type, 0, &in[i]);
  }
  vnrt_attr attrs[MAX_ATTRS];
  for (int32_t k = 0; k < c->n_attrs; ++k) {
    attrs[k] = c->attrs[k];
    if (attrs[k].kind == VNRT_ATTR_INTS) attrs[k].ints = c->lists[k];
  }
  if (s == VNRT_OK) {
    s = vnrt_graph_add_node(g, c->op, in, c->n_in, attrs, c->n_attrs, out_names, res, c->n_out);
  }
  for (int32_t i = 0; i < c->n_out && s == VNRT_OK; ++i) s = vnrt_graph_add_output(g, res[i]);
  vnrt_plan_desc desc = {0};
  desc.no_fallback = 1;
  desc.kernels = mode;
  if (s == VNRT_OK) s = vnrt_plan_create(ctx, g, device, &desc, &plan);
  for (int32_t i = 0; i < c->n_in && s == VNRT_OK; ++i) {
    s = vnrt_plan_set_input(plan, in_names[i], inputs[i], vnrt_tensor_type_bytes(&c->in[i].type));
  }
  if (s == VNRT_OK) s = vnrt_plan_run(plan);
  for (int32_t i = 0; i < c->n_out && s == VNRT_OK; ++i) {
    s = vnrt_plan_output_type(plan, out_names[i], &out->type[i]);
    size_t bytes = vnrt_tensor_type_bytes(&out->type[i]);
    out->data[i] = malloc(bytes ? bytes : 1);
    if (s == VNRT_OK && !out->data[i]) s = VNRT_ERROR_OUT_OF_MEMORY;
    if (s == VNRT_OK) s = vnrt_plan_read_output(plan, out_names[i], out->data[i], bytes);
  }
  if (s != VNRT_OK) {
    snprintf(err, err_size, "%s: %s", vnrt_status_string(s), vnrt_context_last_error(ctx));
    free_result(out);
  }
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  return s;
}

/* Compares one case's outputs, each against its own bound (vnrt_result_tolerance: a bf16 or
 * f16 result carries its final rounding); returns the NMSE of the output furthest over (or
 * nearest to) its bound, that bound in *out_tol (INFINITY for a mismatch of integers, shapes,
 * or non-finite values where the reference is finite). */
static double compare(const result *got, const result *ref, int32_t n_out, vnrt_op op,
                      double *out_tol, char *why, size_t why_size) {
  double worst = 0.0, worst_ratio = -1.0;
  *out_tol = vnrt_op_tolerance(op);
  for (int32_t o = 0; o < n_out; ++o) {
    const vnrt_tensor_type *tg = &got->type[o], *tr = &ref->type[o];
    if (tg->dtype != tr->dtype || vnrt_tensor_type_numel(tg) != vnrt_tensor_type_numel(tr)) {
      snprintf(why, why_size, "output %d: type differs from the reference", o);
      return INFINITY;
    }
    int64_t n = vnrt_tensor_type_numel(tr);
    if (tr->dtype == VNRT_I32) {
      for (int64_t i = 0; i < n; ++i) {
        int32_t a = ((const int32_t *)got->data[o])[i], b = ((const int32_t *)ref->data[o])[i];
        if (a != b) {
          snprintf(why, why_size, "output %d: integer element %lld is %d, reference %d", o,
                   (long long)i, a, b);
          *out_tol = 0.0; /* integers match exactly */
          return INFINITY;
        }
      }
      continue;
    }
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      double a = load(got->data[o], tg->dtype, i), r = load(ref->data[o], tr->dtype, i);
      if (isinf(r) && a == r) continue; /* -inf of index_scores and topk: must match exactly */
      /* a non-finite value on either side must be matched exactly (an inf - inf or a NaN
       * would otherwise make the NMSE NaN, which compares as "not worse") */
      if (isfinite(r) != isfinite(a) || isnan(a) || isnan(r)) {
        snprintf(why, why_size, "output %d: element %lld is %g where the reference is %g", o,
                 (long long)i, a, r);
        return INFINITY;
      }
      num += (a - r) * (a - r);
      den += r * r;
    }
    double nmse = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
    const double tol = vnrt_result_tolerance(op, tr->dtype);
    const double ratio = nmse == 0.0 ? 0.0 : tol > 0.0 ? nmse / tol : INFINITY;
    if (ratio > worst_ratio) {
      worst = nmse;
      worst_ratio = ratio;
      *out_tol = tol;
      snprintf(why, why_size, "output %d: NMSE %.3g", o, nmse);
    }
  }
  return worst;
}

/* ---- Results --------------------------------------------------------------------------- */

typedef enum outcome {
  OUT_SKIPPED = 0,     /* not selected */
  OUT_PASS,            /* within tolerance */
  OUT_FAIL,            /* over tolerance, or the device failed */
  OUT_UNSUPPORTED,     /* the device cannot run it (no fallback) */
  OUT_REFERENCE_FAILED /* the CPU reference failed: counts as a failure */
} outcome;

static const char *outcome_name(outcome o) {
  static const char *const names[] = {"skipped", "pass", "fail", "unsupported", "reference-failed"};
  return names[o];
}

typedef struct case_result {
  outcome out;
  double nmse; /* worst NMSE; INFINITY: an exact mismatch or an error */
  double tol;  /* the bound it was held to (vnrt_result_tolerance of that output) */
  char message[320];
} case_result;

/* Per device and op: what ran. */
typedef struct row {
  int selected, passed, failed, unsupported;
  double worst;
} row;

/* The dtype a case is filed under in the coverage matrix: the first word of its label when
 * that is a dtype ("bf16 [3, 7]"), else its first floating-point input's; with "+e4m3" (or
 * another code dtype) when it reads quantized weights. Static storage per case. */
static const char *case_dtype(const vcase *c) {
  static char buf[256][24];
  static const vnrt_dtype all[] = {VNRT_F32, VNRT_F16, VNRT_BF16, VNRT_I32};
  const char *base = NULL;
  for (size_t k = 0; k < sizeof all / sizeof all[0] && !base; ++k) {
    const char *n = vnrt_dtype_name(all[k]);
    size_t len = strlen(n);
    if (!strncmp(c->label, n, len) && (c->label[len] == ' ' || !c->label[len])) base = n;
  }
  const char *quant = NULL;
  for (int32_t i = 0; i < c->n_in; ++i) {
    vnrt_dtype d = c->in[i].type.dtype;
    if (!base && (d == VNRT_F32 || d == VNRT_F16 || d == VNRT_BF16)) base = vnrt_dtype_name(d);
    if (!quant && (d == VNRT_E4M3 || d == VNRT_E2M1)) quant = vnrt_dtype_name(d);
  }
  if (!base) base = vnrt_dtype_name(c->in[0].type.dtype);
  if (!quant || !strcmp(quant, base)) return base;
  char *out = buf[(c - cases) % 256];
  snprintf(out, sizeof buf[0], "%s+%s", base, quant);
  return out;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: vnrt-validate [--device SPEC|all]... [--op NAME]... [--seed N] [--case N]\n"
          "                     [--plugin-path DIR] [--json FILE] [--matrix FILE.md|.html]\n"
          "                     [--quiet] [--list]\n"
          "Runs every op on each selected device (default: all, plugins included) over several\n"
          "shapes and dtypes against the CPU reference kernels of docs/ops.md, with its\n"
          "tolerances. On the cpu device it checks the fast kernels against the reference\n"
          "kernels. Progress goes to stderr (--quiet: none), the results table and the coverage\n"
          "of each device (cases passed / selected) to stdout.\n"
          "  --device SPEC     cpu, vulkan:0, a plugin's device...; repeatable; 'all' (default)\n"
          "  --op NAME         only this op; repeatable (also filters --list)\n"
          "  --case N          only case N of --list (also filters --list)\n"
          "  --plugin-path DIR load the plugins in DIR (':'-separated) before $VNRT_PLUGIN_PATH\n"
          "  --json FILE       every case with device, driver, vnrt version, NMSE, tolerance and\n"
          "                    message, and the coverage per op and device\n"
          "  --matrix FILE     a coverage matrix (ops x dtypes x devices) to publish: Markdown,\n"
          "                    or HTML when FILE ends in .html\n"
          "Exits 1 on any failure or when no case ran, 2 on a usage error.\n");
}

/* Parses a whole decimal number in [0, max] (no sign, no trailing text, no overflow). */
static bool parse_u64(const char *text, uint64_t max, uint64_t *out) {
  char *end = NULL;
  if (!text || !(*text >= '0' && *text <= '9')) return false;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno == ERANGE || end == text || *end != '\0' || v > max) return false;
  *out = (uint64_t)v;
  return true;
}

typedef struct options {
  const char *devices[64];
  int n_devices;
  const char *ops[64];
  int n_ops;
  int only_case, list, quiet;
  uint64_t seed;
  const char *json_path, *matrix_path, *plugin_path;
} options;

static bool case_selected(const options *o, int32_t c) {
  if (o->only_case >= 0 && c != o->only_case) return false;
  if (o->n_ops == 0) return true;
  for (int i = 0; i < o->n_ops; ++i) {
    if (!strcmp(o->ops[i], vnrt_op_name(cases[c].op))) return true;
  }
  return false;
}

/* Returns 0 to go on, else the exit code. */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->only_case = -1;
  o->seed = 1;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return -1;
    } else if (!strcmp(a, "--list")) {
      o->list = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      o->quiet = 1;
    } else if (v && !strcmp(a, "--device")) {
      if (o->n_devices < 64) o->devices[o->n_devices++] = v;
      ++i;
    } else if (v && !strcmp(a, "--op")) {
      if (o->n_ops < 64) o->ops[o->n_ops++] = v;
      ++i;
    } else if (v && !strcmp(a, "--seed")) {
      if (!parse_u64(v, UINT64_MAX, &o->seed)) {
        fprintf(stderr,
                "vnrt-validate: --seed wants a whole number in [0, 18446744073709551615], not "
                "'%s'\n",
                v);
        return 2;
      }
      ++i;
    } else if (v && !strcmp(a, "--case")) {
      uint64_t c = 0;
      if (!parse_u64(v, INT_MAX, &c)) {
        fprintf(stderr, "vnrt-validate: --case wants a case number (see --list), not '%s'\n", v);
        return 2;
      }
      o->only_case = (int)c, ++i;
    } else if (v && !strcmp(a, "--json")) {
      o->json_path = v, ++i;
    } else if (v && !strcmp(a, "--matrix")) {
      o->matrix_path = v, ++i;
    } else if (v && !strcmp(a, "--plugin-path")) {
      o->plugin_path = v, ++i;
    } else {
      fprintf(stderr, "vnrt-validate: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  for (int i = 0; i < o->n_ops; ++i) {
    if (vnrt_op_from_name(o->ops[i]) == VNRT_OP_INVALID) {
      fprintf(stderr, "vnrt-validate: unknown op '%s'\n", o->ops[i]);
      return 2;
    }
  }
  if (o->n_devices == 0) o->devices[o->n_devices++] = "all";
  return 0;
}

/* ---- Writers --------------------------------------------------------------------------- */

static double pct(int num, int den) { return den ? 100.0 * num / den : 0.0; }

static json_object *nmse_json(double nmse, outcome out) {
  if (out != OUT_PASS && out != OUT_FAIL) return NULL;
  return isfinite(nmse) ? json_object_new_double(nmse) : json_object_new_string("inf");
}

static int write_json(const options *o, FILE *f, vnrt_device_info *info, int n_dev,
                      case_result *res, row *rows, int total_ran, int total_failed) {
  json_object *root = json_object_new_object();
  json_object_object_add(root, "tool", json_object_new_string("vnrt-validate"));
  json_object_object_add(root, "vnrt_version", json_object_new_string(vnrt_version(0, 0, 0)));
  json_object_object_add(root, "seed", json_object_new_uint64(o->seed));
  json_object *devs = json_object_new_array();
  for (int d = 0; d < n_dev; ++d) {
    json_object *j = json_object_new_object();
    json_object_object_add(j, "spec", json_object_new_string(info[d].spec));
    json_object_object_add(j, "backend", json_object_new_string(info[d].backend));
    json_object_object_add(j, "name", json_object_new_string(info[d].name));
    json_object_object_add(j, "driver", json_object_new_string(info[d].driver));
    int sel = 0, pass = 0, fail = 0, uns = 0;
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      const row *r = &rows[d * VNRT_OP_COUNT + op];
      sel += r->selected, pass += r->passed, fail += r->failed, uns += r->unsupported;
    }
    json_object_object_add(j, "cases", json_object_new_int(sel));
    json_object_object_add(j, "passed", json_object_new_int(pass));
    json_object_object_add(j, "failed", json_object_new_int(fail));
    json_object_object_add(j, "unsupported", json_object_new_int(uns));
    json_object_object_add(j, "coverage", json_object_new_double(pct(pass, sel) / 100.0));
    json_object_array_add(devs, j);
  }
  json_object_object_add(root, "devices", devs);
  json_object *all = json_object_new_array(), *failures = json_object_new_array();
  for (int d = 0; d < n_dev; ++d) {
    for (int32_t c = 0; c < n_cases; ++c) {
      const case_result *cr = &res[(size_t)d * (size_t)n_cases + (size_t)c];
      if (cr->out == OUT_SKIPPED) continue;
      json_object *j = json_object_new_object();
      json_object_object_add(j, "device", json_object_new_string(info[d].spec));
      json_object_object_add(j, "op", json_object_new_string(vnrt_op_name(cases[c].op)));
      json_object_object_add(j, "case", json_object_new_int(c));
      json_object_object_add(j, "label", json_object_new_string(cases[c].label));
      json_object_object_add(j, "dtype", json_object_new_string(case_dtype(&cases[c])));
      json_object_object_add(j, "status", json_object_new_string(outcome_name(cr->out)));
      json_object_object_add(j, "nmse", nmse_json(cr->nmse, cr->out));
      json_object_object_add(
          j, "tolerance",
          json_object_new_double(cr->tol >= 0.0 ? cr->tol : vnrt_op_tolerance(cases[c].op)));
      json_object_object_add(j, "message", json_object_new_string(cr->message));
      if (cr->out == OUT_FAIL || cr->out == OUT_REFERENCE_FAILED) {
        json_object_array_add(failures, json_object_get(j));
      }
      json_object_array_add(all, j);
    }
  }
  json_object_object_add(root, "failures", failures);
  json_object_object_add(root, "cases", all);
  json_object *results = json_object_new_array();
  for (int d = 0; d < n_dev; ++d) {
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      const row *r = &rows[d * VNRT_OP_COUNT + op];
      if (!r->selected) continue;
      json_object *j = json_object_new_object();
      int ran = r->passed + r->failed;
      json_object_object_add(j, "op", json_object_new_string(vnrt_op_name((vnrt_op)op)));
      json_object_object_add(j, "device", json_object_new_string(info[d].spec));
      json_object_object_add(j, "cases", json_object_new_int(r->selected));
      json_object_object_add(j, "ran", json_object_new_int(ran));
      json_object_object_add(j, "passed", json_object_new_int(r->passed));
      json_object_object_add(j, "failed", json_object_new_int(r->failed));
      json_object_object_add(j, "unsupported", json_object_new_int(r->unsupported));
      json_object_object_add(j, "coverage",
                             json_object_new_double(pct(r->passed, r->selected) / 100.0));
      json_object_object_add(j, "worst_nmse",
                             ran == 0          ? NULL
                             : isinf(r->worst) ? json_object_new_string("inf")
                                               : json_object_new_double(r->worst));
      json_object_array_add(results, j);
    }
  }
  json_object_object_add(root, "results", results);
  json_object_object_add(root, "cases_ran", json_object_new_int(total_ran));
  json_object_object_add(root, "failed", json_object_new_int(total_failed));
  bool ok = fputs(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY), f) >= 0;
  ok = fputc('\n', f) != EOF && ok;
  json_object_put(root);
  if (fclose(f) != 0 || !ok) {
    fprintf(stderr, "vnrt-validate: cannot write %s: %s\n", o->json_path, strerror(errno));
    return 2;
  }
  return 0;
}

/* One cell of the matrix for (op, dtype) on device d: "3/3", "1/3 ✗", "unsupported". */
static void matrix_cell(const case_result *res, int d, vnrt_op op, const char *dtype, char *buf,
                        size_t size, int *state) {
  int sel = 0, pass = 0, fail = 0, uns = 0;
  for (int32_t c = 0; c < n_cases; ++c) {
    const case_result *cr = &res[(size_t)d * (size_t)n_cases + (size_t)c];
    if (cr->out == OUT_SKIPPED || cases[c].op != op || strcmp(case_dtype(&cases[c]), dtype)) {
      continue;
    }
    sel++;
    pass += cr->out == OUT_PASS;
    fail += cr->out == OUT_FAIL || cr->out == OUT_REFERENCE_FAILED;
    uns += cr->out == OUT_UNSUPPORTED;
  }
  *state = sel == 0 ? 0 : fail ? 3 : uns == sel ? 2 : pass == sel ? 1 : 4;
  if (sel == 0) {
    snprintf(buf, size, " ");
  } else if (*state == 2) {
    snprintf(buf, size, "unsupported");
  } else {
    snprintf(buf, size, "%s %d/%d%s",
             fail          ? "FAIL"
             : pass == sel ? "pass"
                           : "part",
             pass, sel, uns ? " (rest unsupported)" : "");
  }
}

static int write_matrix(const options *o, FILE *f, const vnrt_device_info *info, int n_dev,
                        const case_result *res, const row *rows) {
  size_t len = strlen(o->matrix_path);
  bool html = len > 5 && !strcmp(o->matrix_path + len - 5, ".html");
  if (html) {
    fprintf(f,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vnrt coverage</title>\n"
            "<style>td,th{border:1px solid #999;padding:2px 6px;font:13px sans-serif}"
            "table{border-collapse:collapse}.s1{background:#c8f0c8}.s2{background:#ddd}"
            ".s3{background:#f4b0b0}.s4{background:#f4e4a0}</style></head><body>\n");
    fprintf(f,
            "<h1>vnrt op coverage</h1>\n<p>vnrt %s, vnrt-validate seed %llu. A cell: cases "
            "passed / cases for that op and dtype against the CPU reference kernels of "
            "docs/ops.md.</p>\n<ul>\n",
            vnrt_version(0, 0, 0), (unsigned long long)o->seed);
  } else {
    fprintf(f,
            "# vnrt op coverage\n\nvnrt %s, vnrt-validate seed %llu. A cell: cases passed / "
            "cases for that op and dtype against the CPU reference kernels of docs/ops.md "
            "(FAIL: a case out of tolerance; unsupported: the device runs none of them).\n\n",
            vnrt_version(0, 0, 0), (unsigned long long)o->seed);
  }
  for (int d = 0; d < n_dev; ++d) {
    int sel = 0, pass = 0;
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      sel += rows[d * VNRT_OP_COUNT + op].selected, pass += rows[d * VNRT_OP_COUNT + op].passed;
    }
    fprintf(f,
            html ? "<li><b>%s</b>: %s (%s), driver %s: %d of %d cases pass (%.1f%%)</li>\n"
                 : "- **%s**: %s (%s), driver %s: %d of %d cases pass (%.1f%%)\n",
            info[d].spec, info[d].name, info[d].backend, info[d].driver[0] ? info[d].driver : "-",
            pass, sel, pct(pass, sel));
  }
  fprintf(f, html ? "</ul>\n<table>\n<tr><th>op</th><th>dtype</th>" : "\n| op | dtype |");
  for (int d = 0; d < n_dev; ++d) fprintf(f, html ? "<th>%s</th>" : " %s |", info[d].spec);
  fprintf(f, html ? "</tr>\n" : "\n|---|---|");
  if (!html) {
    for (int d = 0; d < n_dev; ++d) fprintf(f, "---|");
    fprintf(f, "\n");
  }
  for (int op = 0; op < VNRT_OP_COUNT; ++op) {
    /* The op's dtypes, in case order. */
    const char *seen[16];
    int n_seen = 0;
    for (int32_t c = 0; c < n_cases; ++c) {
      if ((int)cases[c].op != op) continue;
      bool any = false;
      for (int d = 0; d < n_dev; ++d) any |= res[(size_t)d * (size_t)n_cases + (size_t)c].out != 0;
      if (!any) continue;
      const char *dt = case_dtype(&cases[c]);
      bool dup = false;
      for (int k = 0; k < n_seen; ++k) dup |= !strcmp(seen[k], dt);
      if (!dup && n_seen < 16) seen[n_seen++] = dt;
    }
    for (int k = 0; k < n_seen; ++k) {
      fprintf(f, html ? "<tr><td>%s</td><td>%s</td>" : "| %s | %s |", vnrt_op_name((vnrt_op)op),
              seen[k]);
      for (int d = 0; d < n_dev; ++d) {
        char cell[64];
        int state = 0;
        matrix_cell(res, d, (vnrt_op)op, seen[k], cell, sizeof cell, &state);
        if (html) {
          fprintf(f, "<td class=\"s%d\">%s</td>", state, cell);
        } else {
          fprintf(f, " %s |", cell);
        }
      }
      fprintf(f, html ? "</tr>\n" : "\n");
    }
  }
  if (html) fprintf(f, "</table>\n</body></html>\n");
  if (fclose(f) != 0) {
    fprintf(stderr, "vnrt-validate: cannot write %s: %s\n", o->matrix_path, strerror(errno));
    return 2;
  }
  return 0;
}

/* ---- Main ------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  build_cases();
  if (o.only_case >= n_cases) {
    fprintf(stderr, "vnrt-validate: --case %d: there are %d cases (0 to %d; see --list)\n",
            o.only_case, n_cases, n_cases - 1);
    free(cases);
    return 2;
  }
  if (o.list) {
    for (int32_t c = 0; c < n_cases; ++c) {
      if (case_selected(&o, c))
        printf("%3d  %-16s %s\n", c, vnrt_op_name(cases[c].op), cases[c].label);
    }
    free(cases);
    return 0;
  }

  /* Output files are opened first, so that a bad path fails before a long run. */
  FILE *files[2] = {NULL, NULL};
  const char *paths[2] = {o.json_path, o.matrix_path};
  for (int k = 0; k < 2; ++k) {
    if (paths[k] && !(files[k] = fopen(paths[k], "w"))) {
      fprintf(stderr, "vnrt-validate: cannot write %s: %s\n", paths[k], strerror(errno));
      if (k) fclose(files[0]);
      free(cases);
      return 2;
    }
  }
  vnrt_context_desc cd = {0};
  cd.log_level = VNRT_LOG_ERROR;
  cd.plugin_path = o.plugin_path;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&cd, &ctx);
  if (s != VNRT_OK) {
    fprintf(stderr, "vnrt-validate: cannot create a context: %s\n", vnrt_status_string(s));
    for (int k = 0; k < 2; ++k)
      if (files[k]) fclose(files[k]);
    free(cases);
    return 2;
  }
  vnrt_device *cpu = NULL;
  vnrt_device_select(ctx, "cpu", &cpu);
  vnrt_device *devices[64];
  int n_dev = 0;
  for (int k = 0; k < o.n_devices; ++k) {
    if (!strcmp(o.devices[k], "all")) {
      for (uint32_t i = 0; i < vnrt_device_count(ctx) && n_dev < 64; ++i) {
        vnrt_device_get(ctx, i, &devices[n_dev++]);
      }
    } else if (vnrt_device_select(ctx, o.devices[k], &devices[n_dev]) == VNRT_OK) {
      n_dev++;
    } else {
      fprintf(stderr, "vnrt-validate: %s\n", vnrt_context_last_error(ctx));
      for (int f = 0; f < 2; ++f)
        if (files[f]) fclose(files[f]);
      free(cases);
      vnrt_context_destroy(ctx);
      return 2;
    }
  }

  vnrt_device_info *info = calloc((size_t)n_dev, sizeof *info);
  row *rows = calloc((size_t)n_dev * VNRT_OP_COUNT, sizeof *rows);
  case_result *res = calloc((size_t)n_dev * (size_t)n_cases, sizeof *res);
  if (!rows || !res || !info) {
    fprintf(stderr, "vnrt-validate: out of memory\n");
    return 2;
  }
  int n_selected = 0;
  for (int32_t c = 0; c < n_cases; ++c) n_selected += case_selected(&o, c);
  int total_ran = 0, total_failed = 0;
  for (int d = 0; d < n_dev; ++d) {
    info[d].struct_size = sizeof info[d];
    vnrt_device_get_info(devices[d], &info[d]);
    int done = 0;
    for (int32_t c = 0; c < n_cases; ++c) {
      const vcase *vc = &cases[c];
      if (!case_selected(&o, c)) continue;
      row *r = &rows[d * VNRT_OP_COUNT + vc->op];
      case_result *cr = &res[(size_t)d * (size_t)n_cases + (size_t)c];
      r->selected++;
      ++done;
      void *inputs[MAX_IN] = {0};
      for (int32_t i = 0; i < vc->n_in; ++i) {
        inputs[i] = make_input(&vc->in[i], o.seed * 1000003u + (uint64_t)c * 31u + (uint64_t)i);
      }
      result ref, got;
      char err[2048] = "", why[256] = "";
      /* The reference always runs the CPU's reference kernels. */
      s = run_case(ctx, vc, inputs, cpu, VNRT_KERNELS_REFERENCE, &ref, err, sizeof err);
      double tol = vnrt_op_tolerance(vc->op);
      cr->tol = -1.0; /* set once an output is compared */
      if (s != VNRT_OK) {
        cr->out = OUT_REFERENCE_FAILED;
        cr->nmse = INFINITY;
        snprintf(cr->message, sizeof cr->message, "the reference failed: %s", err);
        r->failed++, total_failed++;
        printf("FAIL %s %s [%s]: the reference failed: %s\n", info[d].spec, vnrt_op_name(vc->op),
               vc->label, err);
      } else {
        s = run_case(ctx, vc, inputs, devices[d], VNRT_KERNELS_FAST, &got, err, sizeof err);
        if (s == VNRT_ERROR_UNSUPPORTED) {
          cr->out = OUT_UNSUPPORTED;
          snprintf(cr->message, sizeof cr->message, "%s", err);
          r->unsupported++;
        } else {
          total_ran++;
          double nmse = s == VNRT_OK ? compare(&got, &ref, vc->n_out, vc->op, &tol, why, sizeof why)
                                     : INFINITY;
          cr->nmse = nmse;
          cr->tol = tol;
          if (s != VNRT_OK || !(nmse <= tol)) {
            cr->out = OUT_FAIL;
            snprintf(cr->message, sizeof cr->message, "%s%s", s != VNRT_OK ? err : why,
                     s == VNRT_OK ? " over the tolerance" : "");
            r->failed++, total_failed++;
            printf(
                "FAIL %s %s [%s]: %s (tolerance %.2g)\n  replay: vnrt-validate --device %s "
                "--op %s --case %d --seed %llu\n",
                info[d].spec, vnrt_op_name(vc->op), vc->label, s != VNRT_OK ? err : why, tol,
                info[d].spec, vnrt_op_name(vc->op), c, (unsigned long long)o.seed);
          } else {
            cr->out = OUT_PASS;
            snprintf(cr->message, sizeof cr->message, "%s", why);
            r->passed++;
          }
          if (s == VNRT_OK && nmse > r->worst) r->worst = nmse;
          if (s != VNRT_OK || isinf(nmse)) r->worst = INFINITY;
          free_result(&got);
        }
        free_result(&ref);
      }
      for (int32_t i = 0; i < vc->n_in; ++i) free(inputs[i]);
      /* Progress: a line per op and device once its last case is done. */
      bool last = true;
      for (int32_t k = c + 1; k < n_cases && last; ++k) {
        last = !(cases[k].op == vc->op && case_selected(&o, k));
      }
      if (last && !o.quiet) {
        fprintf(stderr,
                "vnrt-validate: %s [%d/%d cases] %-16s %d passed, %d failed, %d unsupported\n",
                info[d].spec, done, n_selected, vnrt_op_name(vc->op), r->passed, r->failed,
                r->unsupported);
      }
    }
  }

  printf("\n%-16s %-12s %6s %6s %7s %7s %12s %9s  %s\n", "op", "device", "cases", "ran", "passed",
         "failed", "unsupported", "coverage", "worst NMSE");
  for (int d = 0; d < n_dev; ++d) {
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      const row *r = &rows[d * VNRT_OP_COUNT + op];
      if (!r->selected) continue;
      int ran = r->passed + r->failed;
      char worst[48];
      if (ran == 0) {
        snprintf(worst, sizeof worst, "-  (ran nothing)");
      } else if (isinf(r->worst)) {
        snprintf(worst, sizeof worst, "inf");
      } else {
        snprintf(worst, sizeof worst, "%.2e", r->worst);
      }
      printf("%-16s %-12s %6d %6d %7d %7d %12d %8.1f%%  %s\n", vnrt_op_name((vnrt_op)op),
             info[d].spec, r->selected, ran, r->passed, r->failed, r->unsupported,
             pct(r->passed, r->selected), worst);
    }
  }
  printf("\ncoverage (cases passed of those selected; an unsupported case is not a pass):\n");
  for (int d = 0; d < n_dev; ++d) {
    int sel = 0, pass = 0, fail = 0, uns = 0, ops = 0, ops_full = 0, ops_none = 0;
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      const row *r = &rows[d * VNRT_OP_COUNT + op];
      if (!r->selected) continue;
      ops++;
      ops_full += r->passed == r->selected;
      ops_none += r->passed + r->failed == 0;
      sel += r->selected, pass += r->passed, fail += r->failed, uns += r->unsupported;
    }
    printf(
        "  %-12s %5.1f%%: %d cases, %d passed, %d failed, %d unsupported; ops: %d of %d all "
        "pass, %d ran nothing\n",
        info[d].spec, pct(pass, sel), sel, pass, fail, uns, ops_full, ops, ops_none);
  }
  printf("\n%d cases ran, %d failed\n", total_ran, total_failed);
  int write_rc = 0;
  if (o.json_path) {
    write_rc = write_json(&o, files[0], info, n_dev, res, rows, total_ran, total_failed);
  }
  if (o.matrix_path) {
    int m = write_matrix(&o, files[1], info, n_dev, res, rows);
    write_rc = write_rc ? write_rc : m;
  }
  free(rows);
  free(res);
  free(info);
  free(cases);
  vnrt_context_destroy(ctx);
  if (write_rc) return write_rc;
  if (total_ran == 0) {
    fprintf(stderr, "vnrt-validate: no case ran: that is a failure, not a pass\n");
    return 1;
  }
  return total_failed ? 1 : 0;
}
