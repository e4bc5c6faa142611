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

#include "validate/validate.h"
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

static bool exact_op(vnrt_op op) {
  return op == VNRT_OP_MATMUL || op == VNRT_OP_LINEAR || op == VNRT_OP_ATTENTION ||
         op == VNRT_OP_MOE_FFN || op == VNRT_OP_GROUPED_LINEAR || op == VNRT_OP_INDEX_SCORES ||
         op == VNRT_OP_SPARSE_ATTENTION;
}

/* Compares one case's outputs; returns the worst NMSE (INFINITY for a mismatch of integers,
 * shapes, or non-finite values where the reference is finite). */
static double compare(const result *got, const result *ref, int32_t n_out, char *why,
                      size_t why_size) {
  double worst = 0.0;
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
    if (nmse > worst) {
      worst = nmse;
      snprintf(why, why_size, "output %d: NMSE %.3g", o, nmse);
    }
  }
  return worst;
}

/* ---- Reporting ------------------------------------------------------------------------- */

typedef struct row {
  vnrt_op op;
  char device[32];
  int cases, passed, failed, unsupported;
  double worst;
} row;

static void usage(FILE *f) {
  fprintf(f,
          "usage: vnrt-validate [--device SPEC|all] [--op NAME]... [--seed N] [--case N]\n"
          "                     [--json FILE] [--list]\n"
          "Runs every op on each selected device (default: all) over several shapes and dtypes\n"
          "against the CPU reference kernels of docs/ops.md, with its tolerances. On the cpu\n"
          "device it checks the fast kernels against the reference kernels. Exits 1 on any\n"
          "failure or when no case ran.\n");
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

int main(int argc, char **argv) {
  const char *device_spec = "all", *json_path = NULL;
  const char *ops[64];
  int n_ops = 0, only_case = -1, list = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--list")) {
      list = 1;
    } else if (v && !strcmp(a, "--device")) {
      device_spec = v, ++i;
    } else if (v && !strcmp(a, "--op")) {
      if (n_ops < 64) ops[n_ops++] = v;
      ++i;
    } else if (v && !strcmp(a, "--seed")) {
      if (!parse_u64(v, UINT64_MAX, &seed)) {
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
      only_case = (int)c, ++i;
    } else if (v && !strcmp(a, "--json")) {
      json_path = v, ++i;
    } else {
      fprintf(stderr, "vnrt-validate: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  for (int i = 0; i < n_ops; ++i) {
    if (vnrt_op_from_name(ops[i]) == VNRT_OP_INVALID) {
      fprintf(stderr, "vnrt-validate: unknown op '%s'\n", ops[i]);
      return 2;
    }
  }
  build_cases();
  if (list) {
    for (int32_t c = 0; c < n_cases; ++c) {
      printf("%3d  %-16s %s\n", c, vnrt_op_name(cases[c].op), cases[c].label);
    }
    free(cases);
    return 0;
  }

  vnrt_context_desc cd = {0};
  cd.log_level = VNRT_LOG_ERROR;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&cd, &ctx);
  if (s != VNRT_OK) {
    fprintf(stderr, "vnrt-validate: cannot create a context: %s\n", vnrt_status_string(s));
    free(cases);
    return 2;
  }
  vnrt_device *cpu = NULL;
  vnrt_device_select(ctx, "cpu", &cpu);
  vnrt_device *devices[64];
  int n_dev = 0;
  if (!strcmp(device_spec, "all")) {
    for (uint32_t i = 0; i < vnrt_device_count(ctx) && n_dev < 64; ++i) {
      vnrt_device_get(ctx, i, &devices[n_dev++]);
    }
  } else if (vnrt_device_select(ctx, device_spec, &devices[0]) == VNRT_OK) {
    n_dev = 1;
  } else {
    fprintf(stderr, "vnrt-validate: %s\n", vnrt_context_last_error(ctx));
    free(cases);
    vnrt_context_destroy(ctx);
    return 2;
  }

  row *rows = calloc((size_t)n_dev * VNRT_OP_COUNT, sizeof *rows);
  if (!rows) {
    fprintf(stderr, "vnrt-validate: out of memory\n");
    free(cases);
    vnrt_context_destroy(ctx);
    return 2;
  }
  FILE *json = NULL;
  if (json_path) {
    json = fopen(json_path, "w");
    if (!json) {
      fprintf(stderr, "vnrt-validate: cannot write %s: %s\n", json_path, strerror(errno));
      free(rows);
      free(cases);
      vnrt_context_destroy(ctx);
      return 2;
    }
    fprintf(json, "{\n  \"seed\": %llu,\n  \"failures\": [", (unsigned long long)seed);
  }
  int total_ran = 0, total_failed = 0, n_fail_json = 0;
  for (int d = 0; d < n_dev; ++d) {
    vnrt_device_info info = {.struct_size = sizeof info};
    vnrt_device_get_info(devices[d], &info);
    bool is_cpu = devices[d] == cpu;
    for (int32_t c = 0; c < n_cases; ++c) {
      const vcase *vc = &cases[c];
      if (only_case >= 0 && c != only_case) continue;
      bool selected = n_ops == 0;
      for (int i = 0; i < n_ops; ++i) selected |= !strcmp(ops[i], vnrt_op_name(vc->op));
      if (!selected) continue;
      row *r = &rows[d * VNRT_OP_COUNT + vc->op];
      r->op = vc->op;
      snprintf(r->device, sizeof r->device, "%s", info.spec);
      void *inputs[MAX_IN] = {0};
      for (int32_t i = 0; i < vc->n_in; ++i) {
        inputs[i] = make_input(&vc->in[i], seed * 1000003u + (uint64_t)c * 31u + (uint64_t)i);
      }
      result ref, got;
      char err[2048] = "", why[256] = "";
      /* The reference always runs the CPU's reference kernels. */
      s = run_case(ctx, vc, inputs, cpu, VNRT_KERNELS_REFERENCE, &ref, err, sizeof err);
      if (s != VNRT_OK) {
        r->cases++, r->failed++, total_failed++;
        printf("FAIL %s %s [%s]: the reference failed: %s\n", info.spec, vnrt_op_name(vc->op),
               vc->label, err);
      } else {
        s = run_case(ctx, vc, inputs, devices[d], VNRT_KERNELS_FAST, &got, err, sizeof err);
        if (s == VNRT_ERROR_UNSUPPORTED) {
          r->unsupported++;
        } else {
          r->cases++;
          total_ran++;
          double nmse = s == VNRT_OK ? compare(&got, &ref, vc->n_out, why, sizeof why) : INFINITY;
          double tol = exact_op(vc->op) ? 1e-6 : 1e-7;
          if (s != VNRT_OK || !(nmse <= tol)) {
            r->failed++, total_failed++;
            printf(
                "FAIL %s %s [%s]: %s\n  replay: vnrt-validate --device %s --op %s --case %d "
                "--seed %llu\n",
                info.spec, vnrt_op_name(vc->op), vc->label, s != VNRT_OK ? err : why, info.spec,
                vnrt_op_name(vc->op), c, (unsigned long long)seed);
            if (json) {
              fprintf(json,
                      "%s\n    {\"device\": \"%s\", \"op\": \"%s\", \"case\": %d, "
                      "\"label\": \"%s\"}",
                      n_fail_json++ ? "," : "", info.spec, vnrt_op_name(vc->op), c, vc->label);
            }
          } else {
            r->passed++;
          }
          if (s == VNRT_OK && nmse > r->worst) r->worst = nmse;
          if (s != VNRT_OK || isinf(nmse)) r->worst = INFINITY;
          free_result(&got);
        }
        free_result(&ref);
      }
      for (int32_t i = 0; i < vc->n_in; ++i) free(inputs[i]);
    }
    (void)is_cpu;
  }

  printf("\n%-16s %-10s %6s %7s %7s %12s %11s\n", "op", "device", "cases", "passed", "failed",
         "unsupported", "worst NMSE");
  int n_unsupported_rows = 0;
  for (int d = 0; d < n_dev; ++d) {
    for (int op = 0; op < VNRT_OP_COUNT; ++op) {
      const row *r = &rows[d * VNRT_OP_COUNT + op];
      if (!r->device[0]) continue;
      printf("%-16s %-10s %6d %7d %7d %12d %11.2e%s\n", vnrt_op_name(r->op), r->device, r->cases,
             r->passed, r->failed, r->unsupported, r->worst,
             r->unsupported ? "  (unsupported cases are not passes)" : "");
      n_unsupported_rows += r->unsupported > 0;
    }
  }
  printf("\n%d cases ran, %d failed", total_ran, total_failed);
  if (n_unsupported_rows) {
    printf("; unsupported on some devices:");
    for (int d = 0; d < n_dev; ++d) {
      for (int op = 0; op < VNRT_OP_COUNT; ++op) {
        const row *r = &rows[d * VNRT_OP_COUNT + op];
        if (r->device[0] && r->unsupported) printf(" %s@%s", vnrt_op_name(r->op), r->device);
      }
    }
  }
  printf("\n");
  if (json) {
    fprintf(json, "\n  ],\n  \"results\": [");
    int first = 1;
    for (int d = 0; d < n_dev; ++d) {
      for (int op = 0; op < VNRT_OP_COUNT; ++op) {
        const row *r = &rows[d * VNRT_OP_COUNT + op];
        if (!r->device[0]) continue;
        fprintf(json,
                "%s\n    {\"op\": \"%s\", \"device\": \"%s\", \"cases\": %d, \"passed\": %d, "
                "\"failed\": %d, \"unsupported\": %d, \"worst_nmse\": %.6g}",
                first ? "" : ",", vnrt_op_name(r->op), r->device, r->cases, r->passed, r->failed,
                r->unsupported, isinf(r->worst) ? -1.0 : r->worst);
        first = 0;
      }
    }
    fprintf(json, "\n  ],\n  \"cases_ran\": %d,\n  \"failed\": %d\n}\n", total_ran, total_failed);
    fclose(json);
  }
  free(rows);
  free(cases);
  vnrt_context_destroy(ctx);
  if (total_ran == 0) {
    fprintf(stderr, "vnrt-validate: no case ran: that is a failure, not a pass\n");
    return 1;
  }
  return total_failed ? 1 : 0;
}
