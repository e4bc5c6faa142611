/* vnrt-run: runs a .vnir graph on a device with npy inputs and safetensors weights. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vnrt/inspect.h"
#include "vnrt/io.h"
#include "vnrt/vnrt.h"

static const char kUsage[] =
    "usage: vnrt-run GRAPH.vnir [options]\n"
    "Runs a vnir graph (once, or --runs N times) and writes or prints its outputs.\n"
    "\n"
    "  --device SPEC             cpu, vulkan, vulkan:1, opencl:0, ... (default: $VNRT_DEVICE,\n"
    "                            else the best device; see vnrt-info)\n"
    "  --weights FILE            a .safetensors file: binds every param by its exact name\n"
    "  --input NAME=FILE.npy     binds an input (or a param, overriding --weights); repeatable\n"
    "  --output NAME=FILE.npy    writes an output; repeatable. Without any --output or\n"
    "                            --save-state, each output's and state's name, type and\n"
    "                            first values are printed\n"
    "  --state NAME=FILE.npy     sets a state's value before the first run (default: zeros);\n"
    "                            repeatable\n"
    "  --runs N                  runs the graph N times (default 1); states carry over from\n"
    "                            one run to the next, inputs stay bound\n"
    "  --save-state NAME=FILE.npy\n"
    "                            writes a state after the last run; repeatable\n"
    "  --reference               run every node on the CPU's reference kernels of\n"
    "                            docs/ops.md (the answer a port must match); a --device\n"
    "                            other than cpu is then ignored, with a warning\n"
    "  --no-fallback             fail instead of running unsupported ops on the CPU\n"
    "  --max-work N              refuse a graph whose estimated work for one run is over N\n"
    "                            operations (1e12, 5000000; default: $VNRT_MAX_RUN_WORK, else\n"
    "                            1e17; docs/ops.md, \"Attribute limits and empty tensors\")\n"
    "  --stats                   print the plan (placement, memory) and the last run's\n"
    "                            statistics (stream times, overlap, bytes moved, Engram hit\n"
    "                            rate) to stderr\n"
    "  --nodes                   with --stats: time every node (the device's own timer where\n"
    "                            it has one, else the host clock around one submission each)\n"
    "                            and print each node's op, shapes, device, partition, time and\n"
    "                            clock, then a per-op table (nodes, total, share)\n"
    "  --shadow                  compare every node with the CPU reference kernel run on the\n"
    "                            same inputs; names the first node out of tolerance and\n"
    "                            saves it for replay in --shadow-dir; exit status 1 if any\n"
    "  --shadow-dir DIR          where --shadow saves that node (default: vnrt-shadow)\n"
    "  --verbose                 log informational messages (placement, fallbacks)\n"
    "  --help                    show this help\n"
    "\n"
    "An input's npy dtype must equal the declared dtype, except that <f4 data may bind f16 or\n"
    "bf16 (rounded to nearest even). Quantized params (e4m3, e8m0, e2m1) bind at their stored\n"
    "size from F8_E4M3, F8_E8M0 and I8 (packed FP4) tensors or |u1 .npy arrays (e2m1: last dim\n"
    "halved); NaN codes fail. Outputs are written as <f4, <f2 or <i4; bf16 is widened to <f4.\n"
    "Exit status: 0 on success, 1 on a failure, 2 on a usage error.\n";

/* How many values the summary of an output shows. */
#define PRINT_VALUES 8

typedef struct binding {
  const char *name; /* points into argv */
  const char *path;
} binding;

typedef struct options {
  const char *graph_path;
  const char *device;
  const char *weights;
  binding *inputs, *outputs, *states, *saves;
  int n_inputs, n_outputs, n_states, n_saves;
  long runs;
  uint64_t max_work; /* 0: the library's default */
  int reference, no_fallback, verbose, stats, nodes, shadow;
  const char *shadow_dir;
} options;

/* Files written so far under temporary names (docs/tools.md: outputs appear completely or not
 * at all). fail() removes them; commit_files() renames them to their real paths at the end. */
typedef struct pending_file {
  char *tmp;        /* owned */
  const char *path; /* the real path (points into argv) */
} pending_file;
static pending_file *g_pending;
static int g_n_pending;

static void remove_pending(void) {
  for (int i = 0; i < g_n_pending; i++) {
    remove(g_pending[i].tmp);
    free(g_pending[i].tmp);
  }
  free(g_pending);
  g_pending = NULL;
  g_n_pending = 0;
}

/* Every failure ends here: one line on stderr, then a non-zero exit. */
static void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(int code, const char *fmt, ...) {
  remove_pending();
  va_list ap;
  va_start(ap, fmt);
  fputs("vnrt-run: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(code);
}

static void log_to_stderr(void *user, vnrt_log_level level, const char *message) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  /* Errors come back as statuses and are reported once by fail(); do not print them twice. */
  if (level >= VNRT_LOG_ERROR) return;
  fprintf(stderr, "vnrt-run: %s: %s\n", names[level], message);
}

static void format_type(char *buf, size_t cap, const vnrt_tensor_type *t) {
  size_t n = (size_t)snprintf(buf, cap, "%s[", vnrt_dtype_name(t->dtype));
  for (int32_t i = 0; i < t->rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

static int same_shape(const vnrt_tensor_type *a, const vnrt_tensor_type *b) {
  if (a->rank != b->rank) return 0;
  for (int32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static binding *find_binding(binding *list, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(list[i].name, name) == 0) return &list[i];
  return NULL;
}

/* Parses NAME=FILE into list (names and paths point into a copy of arg). */
static void add_binding(binding **list, int *n, const char *opt, const char *arg) {
  if (!arg) fail(2, "%s needs NAME=FILE.npy", opt);
  char *copy = strdup(arg);
  char *eq = copy ? strchr(copy, '=') : NULL;
  if (!copy) fail(1, "out of memory");
  if (!eq || eq == copy || !eq[1]) fail(2, "%s %s: expected NAME=FILE.npy", opt, arg);
  *eq = '\0';
  if (find_binding(*list, *n, copy)) fail(2, "%s %s: '%s' is given twice", opt, arg, copy);
  binding *grown = realloc(*list, sizeof(binding) * (size_t)(*n + 1));
  if (!grown) fail(1, "out of memory");
  *list = grown;
  (*list)[*n] = (binding){copy, eq + 1};
  (*n)++;
}

static options parse_args(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.runs = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(kUsage, stdout);
      exit(0);
    } else if (strcmp(a, "--device") == 0) {
      if (!next) fail(2, "--device needs a SPEC (e.g. cpu, vulkan:0)");
      o.device = next;
      i++;
    } else if (strcmp(a, "--weights") == 0) {
      if (!next) fail(2, "--weights needs a FILE.safetensors");
      o.weights = next;
      i++;
    } else if (strcmp(a, "--input") == 0) {
      add_binding(&o.inputs, &o.n_inputs, a, next);
      i++;
    } else if (strcmp(a, "--output") == 0) {
      add_binding(&o.outputs, &o.n_outputs, a, next);
      i++;
    } else if (strcmp(a, "--state") == 0) {
      add_binding(&o.states, &o.n_states, a, next);
      i++;
    } else if (strcmp(a, "--save-state") == 0) {
      add_binding(&o.saves, &o.n_saves, a, next);
      i++;
    } else if (strcmp(a, "--runs") == 0) {
      char *end = NULL;
      errno = 0;
      long n = next ? strtol(next, &end, 10) : 0;
      if (!next) fail(2, "--runs needs a whole number of runs from 1 to %d", INT_MAX);
      if (end == next || *end || errno || n < 1 || n > INT_MAX)
        fail(2, "--runs needs a whole number of runs from 1 to %d, got '%s'", INT_MAX, next);
      o.runs = n;
      i++;
    } else if (strcmp(a, "--max-work") == 0) {
      char *end = NULL;
      double n = next ? strtod(next, &end) : 0;
      if (!next || end == next || *end || !(n >= 1))
        fail(2, "--max-work needs a positive operation count such as 1e12, got '%s'",
             next ? next : "");
      o.max_work = n >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)n;
      i++;
    } else if (strcmp(a, "--reference") == 0) {
      o.reference = 1;
    } else if (strcmp(a, "--no-fallback") == 0) {
      o.no_fallback = 1;
    } else if (strcmp(a, "--stats") == 0) {
      o.stats = 1;
    } else if (strcmp(a, "--nodes") == 0) {
      o.nodes = 1;
    } else if (strcmp(a, "--shadow") == 0) {
      o.shadow = 1;
    } else if (strcmp(a, "--shadow-dir") == 0) {
      if (!next) fail(2, "--shadow-dir needs a DIR");
      o.shadow_dir = next;
      i++;
    } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
      o.verbose = 1;
    } else if (a[0] == '-' && a[1]) {
      fail(2, "unknown option '%s' (see vnrt-run --help)", a);
    } else if (o.graph_path) {
      fail(2, "more than one graph given ('%s' and '%s')", o.graph_path, a);
    } else {
      o.graph_path = a;
    }
  }
  if (!o.graph_path) fail(2, "no graph given (usage: vnrt-run GRAPH.vnir [options]; see --help)");
  if (o.nodes && !o.stats) fail(2, "--nodes goes with --stats (vnrt-run GRAPH --stats --nodes)");
  if (o.shadow_dir && !o.shadow) fail(2, "--shadow-dir goes with --shadow");
  if (o.shadow && o.reference)
    fail(2, "--shadow compares a device with the reference kernels; --reference runs only those");
  return o;
}

/* Converts data of type `from` to `to` where vnir's npy rule allows it (f32 -> f16/bf16) and
 * returns a new buffer, or NULL if the types are incompatible. An unaligned source (a
 * safetensors mapping) is read with memcpy. */
static void *convert(const void *data, const vnrt_tensor_type *from, const vnrt_tensor_type *to) {
  if (!same_shape(from, to)) return NULL;
  size_t n = (size_t)vnrt_tensor_type_numel(to);
  size_t bytes = vnrt_tensor_type_bytes(to);
  void *out = malloc(bytes ? bytes : 1);
  if (!out) fail(1, "out of memory");
  if (from->dtype == to->dtype) {
    memcpy(out, data, bytes);
    return out;
  }
  if (from->dtype != VNRT_F32 || (to->dtype != VNRT_F16 && to->dtype != VNRT_BF16)) {
    free(out);
    return NULL;
  }
  uint16_t *dst = out;
  for (size_t i = 0; i < n; i++) {
    float f;
    memcpy(&f, (const char *)data + 4 * i, 4);
    dst[i] = to->dtype == VNRT_F16 ? vnrt_f32_to_f16(f) : vnrt_f32_to_bf16(f);
  }
  return out;
}

/* Binds one graph input from data of type have (read from source), or fails naming both
 * types. */
static void bind(vnrt_context *ctx, vnrt_plan *plan, const char *kind, const char *name,
                 const vnrt_tensor_type *want, const vnrt_tensor_type *have, const void *data,
                 const char *source) {
  void *converted = convert(data, have, want);
  if (!converted) {
    char w[96], h[96];
    format_type(w, sizeof w, want);
    format_type(h, sizeof h, have);
    fail(1, "shape/dtype mismatch for %s '%s': %s holds %s but the graph declares %s", kind, name,
         source, h, w);
  }
  vnrt_status s = vnrt_plan_set_input(plan, name, converted, vnrt_tensor_type_bytes(want));
  free(converted);
  if (s != VNRT_OK) fail(1, "binding %s '%s': %s", kind, name, vnrt_context_last_error(ctx));
}

static int graph_has_input(const vnrt_graph *g, const char *name, int *out_is_param) {
  for (int32_t i = 0; i < vnrt_graph_input_count(g); i++) {
    int is_param = 0;
    vnrt_value v = vnrt_graph_input(g, i, &is_param);
    const char *n = vnrt_graph_value_name(g, v);
    if (n && strcmp(n, name) == 0) {
      if (out_is_param) *out_is_param = is_param;
      return 1;
    }
  }
  return 0;
}

static int graph_has_output(const vnrt_graph *g, const char *name) {
  for (int32_t i = 0; i < vnrt_graph_output_count(g); i++) {
    const char *n = vnrt_graph_value_name(g, vnrt_graph_output(g, i));
    if (n && strcmp(n, name) == 0) return 1;
  }
  return 0;
}

static int graph_has_state(const vnrt_graph *g, const char *name) {
  for (int32_t i = 0; i < vnrt_graph_state_count(g); i++) {
    const char *n = vnrt_graph_value_name(g, vnrt_graph_state(g, i, NULL));
    if (n && strcmp(n, name) == 0) return 1;
  }
  return 0;
}

enum { LIST_INPUTS, LIST_OUTPUTS, LIST_STATES };

/* "a, b, c": the names of the graph's inputs, outputs or states, for hints. */
static void list_names(const vnrt_graph *g, int which, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  int32_t count = which == LIST_OUTPUTS  ? vnrt_graph_output_count(g)
                  : which == LIST_STATES ? vnrt_graph_state_count(g)
                                         : vnrt_graph_input_count(g);
  for (int32_t i = 0; i < count && n < cap; i++) {
    vnrt_value v = which == LIST_OUTPUTS  ? vnrt_graph_output(g, i)
                   : which == LIST_STATES ? vnrt_graph_state(g, i, NULL)
                                          : vnrt_graph_input(g, i, NULL);
    const char *name = vnrt_graph_value_name(g, v);
    n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", name ? name : "?");
  }
  if (count == 0) snprintf(buf, cap, "none");
}

/* Reads an output (state == NULL) or the state of that type into a new buffer. */
static void *read_value(vnrt_context *ctx, vnrt_plan *plan, const char *name,
                        const vnrt_tensor_type *state, vnrt_tensor_type *out_type) {
  const char *kind = state ? "state" : "output";
  if (state) {
    *out_type = *state;
  } else if (vnrt_plan_output_type(plan, name, out_type) != VNRT_OK) {
    fail(1, "output '%s': %s", name, vnrt_context_last_error(ctx));
  }
  size_t bytes = vnrt_tensor_type_bytes(out_type);
  void *data = malloc(bytes ? bytes : 1);
  if (!data) fail(1, "out of memory");
  vnrt_status s = state ? vnrt_plan_read_state(plan, name, data, bytes)
                        : vnrt_plan_read_output(plan, name, data, bytes);
  if (s != VNRT_OK) fail(1, "reading %s '%s': %s", kind, name, vnrt_context_last_error(ctx));
  return data;
}

/* Prints "NAME: TYPE = [v0, v1, ...]" (states prefixed with "state "). */
static void print_value(vnrt_context *ctx, vnrt_plan *plan, const char *name,
                        const vnrt_tensor_type *state) {
  vnrt_tensor_type t;
  void *data = read_value(ctx, plan, name, state, &t);
  char type[96];
  format_type(type, sizeof type, &t);
  int64_t n = vnrt_tensor_type_numel(&t);
  printf("%s%s: %s = [", state ? "state " : "", name, type);
  for (int64_t i = 0; i < n && i < PRINT_VALUES; i++) {
    if (i) printf(", ");
    if (t.dtype == VNRT_I32) {
      printf("%d", (int)((const int32_t *)data)[i]);
    } else {
      double v = t.dtype == VNRT_F32   ? (double)((const float *)data)[i]
                 : t.dtype == VNRT_F16 ? (double)vnrt_f16_to_f32(((const uint16_t *)data)[i])
                                       : (double)vnrt_bf16_to_f32(((const uint16_t *)data)[i]);
      printf("%.6g", v);
    }
  }
  if (n > PRINT_VALUES) printf(", ... (%lld values)", (long long)n);
  printf("]\n");
  free(data);
}

/* Writes an output (state == NULL) or a state to a temporary file next to b's npy file (same
 * directory, so that the final rename cannot cross file systems); commit_files() renames it. */
static void write_value(vnrt_context *ctx, vnrt_plan *plan, const binding *b,
                        const vnrt_tensor_type *state) {
  vnrt_tensor_type t;
  void *data = read_value(ctx, plan, b->name, state, &t);
  size_t len = strlen(b->path) + 48;
  char *tmp = malloc(len);
  pending_file *grown = realloc(g_pending, sizeof(pending_file) * (size_t)(g_n_pending + 1));
  if (!tmp || !grown) {
    free(tmp);
    free(data);
    fail(1, "out of memory");
  }
  g_pending = grown;
  snprintf(tmp, len, "%s.vnrt-run-%ld-%d.tmp", b->path, (long)getpid(), g_n_pending);
  g_pending[g_n_pending].tmp = tmp;
  g_pending[g_n_pending].path = b->path;
  g_n_pending++;
  if (vnrt_npy_write(ctx, tmp, &t, data) != VNRT_OK) {
    /* The library names the temporary file; name the path the user gave instead. */
    free(data);
    fail(1, "%s '%s': cannot write %s: %s", state ? "state" : "output", b->name, b->path,
         vnrt_context_last_error(ctx));
  }
  free(data);
}

/* Every file was written: move each to its real name. A rename that fails (rare: same
 * directory) removes the files already moved and the temporaries left. */
static void commit_files(void) {
  for (int i = 0; i < g_n_pending; i++) {
    if (rename(g_pending[i].tmp, g_pending[i].path) != 0) {
      int err = errno;
      for (int j = 0; j < i; j++) remove(g_pending[j].path);
      /* The moved ones are gone; drop them from the list that fail() cleans. */
      const char *path = g_pending[i].path;
      for (int j = 0; j < i; j++) free(g_pending[j].tmp);
      memmove(g_pending, g_pending + i, sizeof(pending_file) * (size_t)(g_n_pending - i));
      g_n_pending -= i;
      fail(1, "moving %s into place: %s", path, strerror(err));
    }
  }
  for (int i = 0; i < g_n_pending; i++) free(g_pending[i].tmp);
  free(g_pending);
  g_pending = NULL;
  g_n_pending = 0;
}

/* The declared type of the state called name (the caller checked that it exists). */
static vnrt_tensor_type state_type(vnrt_context *ctx, const vnrt_graph *g, const char *name) {
  vnrt_tensor_type t;
  if (vnrt_graph_value_type(g, vnrt_graph_find(g, name), &t) != VNRT_OK)
    fail(1, "state '%s': %s", name, vnrt_context_last_error(ctx));
  return t;
}

/* --stats: what the plan placed where, and what its last run did (docs/executor.md). */
static void print_stats(const vnrt_plan *plan) {
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  vnrt_run_stats rs = {.struct_size = sizeof rs};
  if (vnrt_plan_get_info(plan, &pi) != VNRT_OK || vnrt_plan_get_run_stats(plan, &rs) != VNRT_OK) {
    return;
  }
  const double mib = 1.0 / (1024.0 * 1024.0), ms = 1e-6;
  fprintf(stderr,
          "plan: %d nodes in %d partitions, %d on the cpu as fallback; device memory %.2f MiB "
          "(budget %.2f MiB, 0 = none): intermediates %.2f MiB (naive %.2f), weights %.2f MiB, "
          "states %.2f MiB; %d params streamed (%.2f MiB); %d Engram lookups from stores\n",
          pi.n_nodes, pi.n_partitions, pi.n_fallback_nodes, (double)pi.device_bytes * mib,
          (double)pi.device_limit * mib, (double)pi.arena_bytes * mib, (double)pi.naive_bytes * mib,
          (double)pi.weight_bytes * mib, (double)pi.state_bytes * mib, pi.n_streamed_params,
          (double)pi.streamed_bytes * mib, pi.n_engram_lookups);
  fprintf(stderr, "plan work: %.4g operations per run (limit %.4g)\n", (double)pi.work,
          (double)pi.work_limit);
  fprintf(stderr,
          "last run: wall %.3f ms, compute %.3f ms, copy %.3f ms, stalled %.3f ms, overlap "
          "%.0f%%; moved: weights %.3f MiB, Engram rows %.3f MiB, between devices %.3f MiB; "
          "Engram rows %llu, hits %llu (%.1f%%)\n",
          (double)rs.wall_ns * ms, (double)rs.compute_ns * ms, (double)rs.copy_ns * ms,
          (double)rs.stall_ns * ms, rs.overlap * 100.0, (double)rs.bytes_weights * mib,
          (double)rs.bytes_engram * mib, (double)rs.bytes_transfers * mib,
          (unsigned long long)rs.engram_rows, (unsigned long long)rs.engram_hits,
          rs.engram_hit_rate * 100.0);
}

/* --stats --nodes: every node's placement and time, then the per-op table (vnrt/inspect.h). */
static void print_nodes(vnrt_context *ctx, const vnrt_plan *plan) {
  char *text = NULL;
  if (vnrt_plan_print_profile(plan, VNRT_PROFILE_NODES | VNRT_PROFILE_OPS, &text) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));
  fputs(text, stderr);
  vnrt_free(ctx, text);
}

/* --shadow: one line per node out of tolerance on stderr (the library logged the first in
 * full); returns the count. */
static int report_shadow(const vnrt_plan *plan) {
  vnrt_shadow_report r = {.struct_size = sizeof r};
  if (vnrt_plan_get_shadow_report(plan, &r) != VNRT_OK) return 0;
  for (int32_t s = 0; s < vnrt_plan_node_count(plan); s++) {
    vnrt_node_info ni = {.struct_size = sizeof ni};
    if (vnrt_plan_get_node(plan, s, &ni) != VNRT_OK || !ni.shadow_failed) continue;
    fprintf(stderr, "shadow: FAIL step %d '%s' (%s on %s): NMSE %.3g > %.3g: %s\n", s, ni.name,
            vnrt_op_name(ni.op), ni.device, ni.shadow_error, ni.tolerance, ni.shadow_note);
  }
  fprintf(stderr,
          "shadow: %d nodes compared with the cpu reference kernels, %d out of tolerance, "
          "%d not compared%s%s\n",
          r.n_checked, r.n_failed, r.n_unchecked, r.saved[0] ? "; first failure saved as " : "",
          r.saved);
  return r.n_failed;
}

int main(int argc, char **argv) {
  options o = parse_args(argc, argv);

  vnrt_context_desc desc = {0};
  desc.log_fn = log_to_stderr;
  desc.log_level = o.verbose ? VNRT_LOG_INFO : VNRT_LOG_WARN;
  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(&desc, &ctx);
  if (s != VNRT_OK) fail(1, "cannot create a context: %s", vnrt_status_string(s));

  vnrt_graph *graph = NULL;
  if (vnrt_graph_parse_file(ctx, o.graph_path, &graph) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));

  /* Names on the command line are checked before any slow work, so a typo fails at once. */
  char names[1024];
  for (int i = 0; i < o.n_inputs; i++) {
    const char *name = o.inputs[i].name;
    if (!graph_has_input(graph, name, NULL)) {
      list_names(graph, LIST_INPUTS, names, sizeof names);
      fail(2, "--input %s: the graph has no input or param named '%s' (it has: %s)%s", name, name,
           names, graph_has_state(graph, name) ? "; it is a state: use --state" : "");
    }
  }
  for (int i = 0; i < o.n_outputs; i++) {
    if (!graph_has_output(graph, o.outputs[i].name)) {
      list_names(graph, LIST_OUTPUTS, names, sizeof names);
      fail(2, "--output %s: the graph has no output named '%s' (its outputs: %s)%s",
           o.outputs[i].name, o.outputs[i].name, names,
           graph_has_state(graph, o.outputs[i].name) ? "; it is a state: use --save-state" : "");
    }
  }
  for (int pass = 0; pass < 2; pass++) {
    const binding *list = pass ? o.saves : o.states;
    for (int i = 0; i < (pass ? o.n_saves : o.n_states); i++) {
      if (!graph_has_state(graph, list[i].name)) {
        list_names(graph, LIST_STATES, names, sizeof names);
        fail(2, "%s %s: the graph has no state named '%s' (its states: %s)",
             pass ? "--save-state" : "--state", list[i].name, list[i].name, names);
      }
    }
  }

  vnrt_device *device = NULL;
  if (o.reference && o.device && strcmp(o.device, "cpu") != 0)
    fprintf(stderr,
            "vnrt-run: warning: --reference runs every node on the cpu's reference "
            "kernels; --device %s is ignored\n",
            o.device);
  if (vnrt_device_select(ctx, o.reference ? "cpu" : o.device, &device) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));

  vnrt_safetensors *weights = NULL;
  if (o.weights && vnrt_safetensors_open(ctx, o.weights, &weights) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));

  vnrt_plan_desc pdesc = {0};
  pdesc.no_fallback = o.no_fallback;
  pdesc.kernels = o.reference ? VNRT_KERNELS_REFERENCE : VNRT_KERNELS_FAST;
  pdesc.max_work = o.max_work;
  pdesc.profile_nodes = o.nodes ? 1 : 0;
  if (o.shadow) {
    pdesc.shadow = VNRT_SHADOW_CPU;
    pdesc.shadow_dir = o.shadow_dir ? o.shadow_dir : "vnrt-shadow";
  }
  vnrt_plan *plan = NULL;
  if (vnrt_plan_create(ctx, graph, device, &pdesc, &plan) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));

  for (int32_t i = 0; i < vnrt_graph_input_count(graph); i++) {
    int is_param = 0;
    vnrt_value v = vnrt_graph_input(graph, i, &is_param);
    const char *name = vnrt_graph_value_name(graph, v);
    const char *kind = is_param ? "param" : "input";
    vnrt_tensor_type want;
    if (vnrt_graph_value_type(graph, v, &want) != VNRT_OK)
      fail(1, "%s '%s': %s", kind, name, vnrt_context_last_error(ctx));
    binding *b = find_binding(o.inputs, o.n_inputs, name);
    if (b) {
      vnrt_tensor_type have;
      void *data = NULL;
      /* |u1 arrays hold codes of the declared dtype (never widened). */
      if (vnrt_npy_read_as(ctx, b->path, want.dtype, &have, &data) != VNRT_OK)
        fail(1, "%s '%s': %s", kind, name, vnrt_context_last_error(ctx));
      bind(ctx, plan, kind, name, &want, &have, data, b->path);
      vnrt_free(ctx, data);
      continue;
    }
    char type[96];
    format_type(type, sizeof type, &want);
    if (is_param && weights) {
      vnrt_tensor_type have;
      const void *data = NULL;
      s = vnrt_safetensors_find(weights, name, &have, &data, NULL);
      if (s == VNRT_ERROR_NOT_FOUND)
        fail(1,
             "missing binding for param '%s' (%s): %s has no tensor of that name and no "
             "--input %s=FILE.npy was given",
             name, type, o.weights, name);
      if (s != VNRT_OK) fail(1, "param '%s': %s", name, vnrt_context_last_error(ctx));
      bind(ctx, plan, kind, name, &want, &have, data, o.weights);
      continue;
    }
    fail(1, "missing binding for %s '%s' (%s): pass --input %s=FILE.npy%s", kind, name, type, name,
         is_param && !weights ? " or --weights FILE.safetensors" : "");
  }

  /* States start at zero; --state overrides that before the first run only. */
  for (int i = 0; i < o.n_states; i++) {
    const binding *b = &o.states[i];
    vnrt_tensor_type want = state_type(ctx, graph, b->name), have;
    void *data = NULL;
    if (vnrt_npy_read_as(ctx, b->path, want.dtype, &have, &data) != VNRT_OK)
      fail(1, "state '%s': %s", b->name, vnrt_context_last_error(ctx));
    bind(ctx, plan, "state", b->name, &want, &have, data, b->path);
    vnrt_free(ctx, data);
  }

  for (long r = 0; r < o.runs; r++) {
    if (vnrt_plan_run(plan) != VNRT_OK) {
      if (o.runs > 1) fail(1, "run %ld of %ld: %s", r + 1, o.runs, vnrt_context_last_error(ctx));
      fail(1, "%s", vnrt_context_last_error(ctx));
    }
  }
  if (o.stats) print_stats(plan);
  if (o.stats && o.nodes) print_nodes(ctx, plan);
  int shadow_failed = o.shadow ? report_shadow(plan) : 0;

  if (o.n_outputs || o.n_saves) {
    for (int i = 0; i < o.n_outputs; i++) write_value(ctx, plan, &o.outputs[i], NULL);
    for (int i = 0; i < o.n_saves; i++) {
      vnrt_tensor_type t = state_type(ctx, graph, o.saves[i].name);
      write_value(ctx, plan, &o.saves[i], &t);
    }
    commit_files();
  } else {
    for (int32_t i = 0; i < vnrt_plan_output_count(plan); i++)
      print_value(ctx, plan, vnrt_plan_output_name(plan, i), NULL);
    for (int32_t i = 0; i < vnrt_graph_state_count(graph); i++) {
      const char *name = vnrt_graph_value_name(graph, vnrt_graph_state(graph, i, NULL));
      vnrt_tensor_type t = state_type(ctx, graph, name);
      print_value(ctx, plan, name, &t);
    }
  }
  if (fflush(stdout) != 0) fail(1, "writing to stdout: %s", strerror(errno));

  vnrt_plan_destroy(plan);
  vnrt_safetensors_close(weights);
  vnrt_graph_destroy(graph);
  vnrt_context_destroy(ctx);
  for (int i = 0; i < o.n_inputs; i++) free((void *)o.inputs[i].name);
  for (int i = 0; i < o.n_outputs; i++) free((void *)o.outputs[i].name);
  for (int i = 0; i < o.n_states; i++) free((void *)o.states[i].name);
  for (int i = 0; i < o.n_saves; i++) free((void *)o.saves[i].name);
  free(o.inputs);
  free(o.outputs);
  free(o.states);
  free(o.saves);
  return shadow_failed ? 1 : 0;
}
