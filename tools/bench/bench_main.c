/* vnrt-bench: times graphs on a device against baselines measured in the same run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static const char *const kUsage =
    "usage: vnrt-bench [--device SPEC] [--op NAME]... [--json FILE] [--reps N] [--quick]\n"
    "                  [--threads N] [--hot] [--min] [--cpu-time] [--check] [--no-cpu]\n"
    "                  [--if-present]\n"
    "                  [--plot FILE.svg] [--graph FILE.vnir] [--list]\n"
    "Times graphs on a device with vnrt_plan_run, next to baselines measured in the same run:\n"
    "OpenBLAS sgemm on the same shapes and thread count, a STREAM-like triad for memory\n"
    "bandwidth, on a device other than the CPU the same graph on the CPU backend, and on an\n"
    "OpenCL device clBLAST's sgemm called directly (docs/bench.md).\n"
    "  --device SPEC   cpu, vulkan, vulkan:1, opencl:0, ... (default: $VNRT_DEVICE, else the\n"
    "                  best device)\n"
    "  --op NAME       only this case (repeatable; default: all; --list names them)\n"
    "  --json FILE     also write the results as JSON\n"
    "  --plot FILE.svg also draw each result's speed over its peers (OpenBLAS, the triad,\n"
    "                  the CPU backend, clBLAST...) as an SVG bar chart\n"
    "  --graph FILE    time the graph in FILE.vnir instead of the cases: the whole run, then\n"
    "                  every node (op, shapes, device, share), random inputs and weights\n"
    "  --reps N        timed runs per case (default 10; the median is reported)\n"
    "  --quick         2 timed runs per case and a smaller triad: a smoke test, not a measure\n"
    "  --threads N     CPU threads for vnrt, OpenBLAS and the triad (default: online cores)\n"
    "  --hot           do not evict the caches before each timed run\n"
    "  --min           report the fastest run instead of the median (for a busy machine)\n"
    "  --cpu-time      time by the calling thread's CPU time, not the clock (with --threads 1:\n"
    "                  what other processes take of the core is not counted)\n"
    "  --check         also run each case with the CPU reference kernels and report the NMSE\n"
    "                  of every output (exit status 1 beyond docs/ops.md's tolerance); with\n"
    "                  --graph, one shadowed run: every node beside its reference kernel\n"
    "  --no-cpu        on another device, do not time the CPU backend beside it\n"
    "  --if-present    exit with status 77 (skipped) when the device does not exist\n"
    "  --list          list the cases and exit\n"
    "A case the device cannot run in full (some node falls back to the CPU) is marked\n"
    "FALLBACK, and its time is left out of the JSON's times and the plot.\n";

typedef struct bench_case {
  const char *name;
  void (*run)(void);
  const char *what;
} bench_case;

static const bench_case kCases[] = {
    {"linear", bench_linear,
     "x[M,2048]·w[5632,2048]ᵀ, f32 and f16 weights, M = 1..512; x[M,4096]·w[16384,4096]ᵀ, "
     "FP8/FP4 weights, M = 1 and 64"},
    {"matmul", bench_matmul, "f32 a·b, 256x1024x1024 and 64x2048x2048"},
    {"moe_ffn", bench_moe,
     "64 experts top-6, C=1024 F=512, f16 weights, T = 1 and 128; FP4 weights, T = 1"},
    {"hc_pre", bench_hc_pre, "mHC pre-mix, n=4 C=4096, T = 1 and 128"},
    {"attention", bench_attention, "decode attention, 4096 keys, 16 heads, MQA"},
    {"rms_norm", bench_rms_norm, "f32 rows of 4096, 1 / 128 / 4096 rows"},
    {"softmax", bench_softmax, "f32 rows of 4096, 1 / 128 / 4096 rows"},
    {"dispatch", bench_dispatch, "us per small op: own plan run vs inside a 64-op plan"},
    {"engram", bench_engram, "Engram store gather from a file-mapped table vs the triad"},
    {"dualpath", bench_dualpath, "decode loop: Engram tables resident / DualPath / serialised"},
    {"sparse_attention", bench_sparse_attention,
     "V4 decode: H=64 D=512, window 128 + 512 selected (CSA) or all visible (HCA); T=8"},
    {"index_scores", bench_index_scores, "V4 lightning indexer Hi=64 Di=128, S = 4096 / 16384"},
    {"grouped_linear", bench_grouped_linear, "V4 wo_a: 8 groups of 4096 -> 1024, bf16 / e4m3"},
    {"v4_linear", bench_v4_linear,
     "V4 decode linears (v4-bench shapes): e4m3 with act_quant on bf16 / f32 x, bf16 on f32 x"},
    {"v4_prefill", bench_v4_prefill,
     "V4 prefill linears (v4-bench shapes), M = 256 and 512, f32 and e4m3 weights vs OpenBLAS"},
};
enum { N_CASES = (int)(sizeof kCases / sizeof kCases[0]) };

static bool want[N_CASES];

static int parse_int(const char *flag, const char *s, int lo) {
  char *end = NULL;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || *end || errno || v < lo || v > 1000000) die("%s needs an integer >= %d", flag, lo);
  return (int)v;
}

static void list_cases(FILE *f) {
  for (int c = 0; c < N_CASES; ++c) fprintf(f, "  %-10s %s\n", kCases[c].name, kCases[c].what);
}

static bool any_case;

static void parse_args(int argc, char **argv) {
  bool no_cpu = false;
  opt.reps = 10;
  opt.warmup = 2;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(kUsage, stdout);
      exit(0);
    } else if (strcmp(a, "--list") == 0) {
      list_cases(stdout);
      exit(0);
    } else if (strcmp(a, "--device") == 0) {
      if (!next) die("--device needs a SPEC");
      opt.device = next, ++i;
    } else if (strcmp(a, "--op") == 0) {
      int found = -1;
      for (int c = 0; next && c < N_CASES; ++c) {
        if (strcmp(next, kCases[c].name) == 0) found = c;
      }
      if (found < 0) {
        fprintf(stderr, "cases:\n");
        list_cases(stderr);
        die("--op needs one of the cases above (got '%s')", next ? next : "");
      }
      want[found] = any_case = true, ++i;
    } else if (strcmp(a, "--plot") == 0) {
      if (!next) die("--plot needs a FILE.svg");
      opt.plot = next, ++i;
    } else if (strcmp(a, "--graph") == 0) {
      if (!next) die("--graph needs a FILE.vnir");
      opt.graph = next, ++i;
    } else if (strcmp(a, "--json") == 0) {
      if (!next) die("--json needs a FILE");
      opt.json = next, ++i;
    } else if (strcmp(a, "--reps") == 0) {
      opt.reps = parse_int("--reps", next, 1), ++i;
    } else if (strcmp(a, "--threads") == 0) {
      opt.threads = parse_int("--threads", next, 1), ++i;
    } else if (strcmp(a, "--quick") == 0) {
      opt.quick = true;
    } else if (strcmp(a, "--hot") == 0) {
      opt.hot = true;
    } else if (strcmp(a, "--min") == 0) {
      opt.stat_min = true;
    } else if (strcmp(a, "--cpu-time") == 0) {
      opt.cpu_time = true;
    } else if (strcmp(a, "--check") == 0) {
      opt.check = true;
    } else if (strcmp(a, "--if-present") == 0) {
      opt.if_present = true;
    } else if (strcmp(a, "--no-cpu") == 0) {
      no_cpu = true;
    } else {
      fprintf(stderr, "%s", kUsage);
      die("unknown argument '%s'", a);
    }
  }
  if (!any_case) {
    for (int c = 0; c < N_CASES; ++c) want[c] = true;
  }
  if (opt.quick) opt.reps = 2, opt.warmup = 1;
  if (opt.threads == 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    opt.threads = cores > 0 ? (int)cores : 1;
  }
  if (opt.cpu_time && opt.threads != 1) {
    die("--cpu-time counts the calling thread's CPU time: it needs --threads 1");
  }
  opt.vs_cpu = !no_cpu; /* cleared below when the device is the CPU */
}

int main(int argc, char **argv) {
  /* A command-line tool shows the library's warnings (the library is silent by default:
   * docs/api.md, "Options"); VNRT_LOG set by the user wins. */
  setenv("VNRT_LOG", "warn", 0);
  parse_args(argc, argv);
  vnrt_context_desc cd = {.num_threads = opt.threads};
  if (vnrt_context_create(&cd, &ctx) != VNRT_OK) die("cannot create a vnrt context");
  vnrt_status found = vnrt_device_select(ctx, opt.device, &device);
  if (found == VNRT_ERROR_NOT_FOUND && opt.if_present) {
    /* 77: "skipped" to meson and automake test harnesses. */
    printf("vnrt-bench: skipped: %s\n", vnrt_context_last_error(ctx));
    vnrt_context_destroy(ctx);
    return 77;
  }
  check(found, "vnrt_device_select");
  check(vnrt_device_get_info(device, &device_info), "vnrt_device_get_info");
  opt.vs_cpu = opt.vs_cpu && strcmp(device_info.backend, "cpu") != 0;

  if (opt.graph && (any_case || opt.plot))
    die("--graph times one graph: it takes no --op or --plot");
  /* The triad: the cases' and the graph's bandwidth beside them, and its arrays evict the
   * caches before each timed run (unless --hot). */
  measure_bandwidth();
  if (opt.graph) {
    bench_graph_file();
    free_bandwidth();
    vnrt_context_destroy(ctx);
    if (any_check_failed()) {
      fprintf(stderr, "vnrt-bench: some nodes differ from the reference beyond tolerance\n");
      return 1;
    }
    return 0;
  }
  blas_set_threads(opt.threads);
  printf("vnrt-bench: device %s (%s), %d threads, %d timed runs per case (%s%s), %s caches\n",
         device_info.spec, device_info.name, opt.threads, opt.reps,
         opt.stat_min ? "fastest" : "median", opt.cpu_time ? ", thread CPU time" : "",
         opt.hot ? "hot" : "cold");
  printf("baselines: OpenBLAS sgemm (%s); memory bandwidth (triad): %.2f GB/s%s\n\n",
         blas_description(), bandwidth_gbps,
         opt.vs_cpu ? "; the CPU backend on the same graphs" : "");
  print_header();
  for (int c = 0; c < N_CASES; ++c) {
    if (want[c]) kCases[c].run();
  }
  if (opt.json) write_json(opt.json, blas_description());
  if (opt.plot) write_plot(opt.plot);
  free_bandwidth();
  vnrt_context_destroy(ctx);
  if (any_check_failed()) {
    fprintf(stderr, "vnrt-bench: some results differ from the reference beyond tolerance\n");
    return 1;
  }
  return 0;
}
