/* vnrt-generate: runs a DeepSeek-V4 checkpoint on a prompt and generates tokens with the model
 * API (vnrt/model.h); the text is streamed when the checkpoint has a tokenizer.json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ep_exchange.h"
#include "triad.h"
#include "vnrt/inspect.h"
#include "vnrt/io.h"
#include "vnrt/model.h"
#include "vnrt/tokenizer.h"
#include "vnrt/vnrt.h"

#ifdef VNRT_HAVE_MPI
#include <mpi.h>
#endif

/* "vnrt-generate", or "vnrt-generate: rank R of N" under --expert-parallel. */
static char g_prog[64] = "vnrt-generate";

static void usage(FILE *fp) {
  fprintf(fp,
          "usage: vnrt-generate --model DIR [--prompt TEXT | --prompt-ids \"1 2 3\"] [--chat]\n"
          "                     [--tokens N] [--device SPEC] [--numerics ref|f32]\n"
          "                     [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
          "                     [--max-context N] [--prefill-chunk N] [--memory-limit SIZE]\n"
          "                     [--threads N]\n"
          "                     [--logits-out FILE.npy] [--stats] [--roofline] [--profile]\n"
          "                     [--profile-nodes] [--plan] [--graph-out FILE [--graph-tokens N]]\n"
          "                     [--simulate-ranks N [--routes-out FILE]] [--scale-out N]\n"
          "                     [--ep-local N] [--expert-parallel [--ep-timeout S]]\n"
          "                     [--ep-wire f32|fp8] [--ep-waves W]\n"
          "                     [--devices LIST [--split layers|experts]]\n"
          "\n"
          "Runs the DeepSeek-V4 checkpoint in DIR (docs/deepseek-v4.md) on the prompt and\n"
          "generates --tokens tokens (default 16), printing the text as it goes when DIR has a\n"
          "tokenizer.json, and ends with one line `generated: <ids>`.\n"
          "  --prompt TEXT       the prompt as text (needs DIR/tokenizer.json); with --chat it is\n"
          "                      the user's message in DeepSeek's chat format\n"
          "  --prompt-ids IDS    the prompt as token ids (no tokenizer needed)\n"
          "  --device SPEC       cpu, vulkan:0, opencl:0... (default: auto)\n"
          "  --numerics ref|f32  DeepSeek's reference roundings (default) or all f32\n"
          "  --temperature T     0 (default) is greedy; else sampled with --top-k, --top-p and\n"
          "                      --seed (default 1; the same seed gives the same tokens)\n"
          "  --max-context N     positions of the sequence (default min(4096, max positions))\n"
          "  --prefill-chunk N   prompt tokens per prefill run (default 256)\n"
          "  --threads N         CPU worker threads (default: all cores)\n"
          "  --memory-limit SIZE device memory per plan (e.g. 64M, 2G); weights over it are\n"
          "                      streamed from the mapped checkpoint\n"
          "  --logits-out FILE   float32 [steps, vocab]: row 0 the logits after the prompt, then\n"
          "                      one row per generated token\n"
          "  --stats             timings (tokens/s), plan and memory figures on stderr\n"
          "  --roofline          the decode against the memory roofline on stderr: the weight\n"
          "                      bytes a token reads over a STREAM-like triad of host memory,\n"
          "                      passes right before and right after the decode (not between\n"
          "                      its steps), on the --threads count (docs/bench.md)\n"
          "  --profile           time every node (device clocks where the device has them)\n"
          "                      and print the last run's per-op table on stderr\n"
          "  --profile-nodes     --profile, and the last run's time of every node before the\n"
          "                      table\n"
          "  --plan              print the memory plan from DIR/config.json and exit (no weights\n"
          "                      needed)\n"
          "  --graph-out FILE    write the graph of one run of --graph-tokens N tokens (default\n"
          "                      1: a decode step) as vnir text to FILE and exit (no weights\n"
          "                      needed; with --max-context and --numerics): `vnrt-bench --graph\n"
          "                      FILE` then times the model's own nodes on any device\n"
          "  --simulate-ranks N  expert-parallel bookkeeping of N ranks over the run's real\n"
          "                      routing: the bytes each rank would send (docs/scale-out.md),\n"
          "                      printed on stderr at the end\n"
          "  --routes-out FILE   with --simulate-ranks: each run's routing as text lines\n"
          "                      `pos0 layer t e_0 ... e_k-1`\n"
          "  --scale-out N       print the scale-out model of DIR/config.json over N devices\n"
          "                      (weights per device, all-to-all bytes per token, bandwidth) with\n"
          "                      a synthetic uniform-routing run of --sim-tokens (default 4096)\n"
          "                      tokens, and exit (no weights needed)\n"
          "  --ep-local N        run the model expert parallel over N expert slices in this\n"
          "                      process (the exchange without MPI; same tokens)\n"
          "  --ep-engram-out FILE  expert parallel: each Engram fetch's global table rows as\n"
          "                      text lines `layer L table_rows R pos0 P tokens T rows ...`\n"
          "                      (rank 0 writes it)\n"
          "  --ep-engram-early   expert parallel: start every Engram layer's row fetch before\n"
          "                      layer 0 (one allgather each), finish it before its layer\n"
          "  --ep-shared-before  expert parallel: compute the shared expert before the exchange\n"
          "                      (default: while the dispatch is in flight)\n"
          "  --devices LIST      several devices in this process, e.g. cpu,vulkan:0,opencl:0: the\n"
          "                      layers split over them by memory budget (a pipeline); the\n"
          "                      placement is printed on stderr; --split experts splits every\n"
          "                      layer's routed experts over them instead (the rest on the\n"
          "                      first)\n"
          "  --expert-parallel   under mpirun: each rank owns a slice of every layer's routed\n"
          "                      experts and serves the tokens routed to it (MPI all-to-all);\n"
          "                      rank 0 prints the tokens, every rank its statistics on stderr\n"
          "                      (needs a build with MPI, meson -Dmpi=enabled)\n"
          "  --ep-timeout S      a step of the exchange that waits over S seconds (default 60)\n"
          "                      ends every rank with a message naming the layer and the step\n"
          "  --ep-waves W        each rank runs and returns the pairs it receives in W waves\n"
          "                      (default 2): a wave's results travel while the next runs\n"
          "  --ep-wire f32|fp8   the dispatched rows as f32 (default) or e4m3 with an e8m0 scale\n"
          "                      per 128 channels: 4x fewer bytes, the same tokens under the\n"
          "                      reference numerics (the experts quantize their input so)\n"
          "Exit status: 0 on success, 1 on a failure, 2 on a usage error.\n");
}

static int bad_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", g_prog);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see vnrt-generate --help)\n");
  return 2;
}

static int parse_i64(const char *s, long long lo, long long hi, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !end || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static int parse_f(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || !end || end == s || *end || v != v) return -1;
  *out = v;
  return 0;
}

/* "64M", "2G", "1048576", "0" (no limit): binary units. */
static int parse_size(const char *s, unsigned long long *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || !end || end == s || s[0] == '-') return -1;
  unsigned shift = 0;
  if (*end) {
    switch (*end) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      default:
        return -1;
    }
    if (end[1] && !(end[1] == 'B' && !end[2]) && !(end[1] == 'i' && end[2] == 'B' && !end[3])) {
      return -1;
    }
  }
  if (shift && v > (~0ull >> shift)) return -1;
  *out = v << shift;
  return 0;
}

/* Parses "1 2 3" (spaces or commas) into a new array. */
static int parse_ids(const char *s, int32_t **out, long long *count) {
  size_t cap = 16, n = 0;
  int32_t *ids = malloc(cap * sizeof *ids);
  if (!ids) return -1;
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') ++p;
    if (!*p) break;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < -2147483648LL || v > 2147483647LL ||
        (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')) {
      free(ids);
      return -1;
    }
    if (n == cap) {
      int32_t *grown = realloc(ids, 2 * cap * sizeof *ids);
      if (!grown) {
        free(ids);
        return -1;
      }
      ids = grown;
      cap *= 2;
    }
    ids[n++] = (int32_t)v;
    p = end;
  }
  *out = ids;
  *count = (long long)n;
  return 0;
}

typedef struct args {
  const char *model, *prompt, *prompt_ids, *device, *logits_out, *routes_out, *devices;
  const char *engram_out, *graph_out;
  int chat, stats, roofline, plan, f32, profile, profile_nodes;
  long long tokens, top_k, seed, max_context, chunk, threads;
  long long simulate_ranks, scale_out, sim_tokens, graph_tokens;
  int graph_tokens_set;
  long long ep_local, ep_fail_rank, ep_stall_rank, ep_stall_layer, ep_waves;
  int ep_fp8;
  double ep_timeout;
  int expert_parallel, split_experts, engram_early, shared_before;
  double temperature, top_p;
  unsigned long long memory_limit;
} args;

/* --graph-out: the graph of one run of a.graph_tokens tokens, as vnir text. */
static int write_graph(const args *a) {
  vnrt_context *ctx = NULL;
  vnrt_status st = vnrt_context_create(NULL, &ctx);
  if (st != VNRT_OK) {
    fprintf(stderr, "%s: cannot create a context: %s\n", g_prog, vnrt_status_string(st));
    return 1;
  }
  vnrt_model_graph_desc gd = {.size = sizeof gd,
                              .tokens = a->graph_tokens,
                              .max_context = a->max_context,
                              .numerics = a->f32 ? VNRT_NUMERICS_F32 : VNRT_NUMERICS_REF};
  size_t len = 0;
  char *text = NULL;
  int rc = 1;
  st = vnrt_model_graph_text(ctx, a->model, &gd, NULL, 0, &len);
  if (st == VNRT_OK && !(text = malloc(len + 1))) {
    fprintf(stderr, "%s: out of memory\n", g_prog);
  } else if (st == VNRT_OK) {
    st = vnrt_model_graph_text(ctx, a->model, &gd, text, len + 1, NULL);
  }
  if (st != VNRT_OK) {
    fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
  } else if (text) {
    FILE *fp = fopen(a->graph_out, "w");
    int ok = fp && fputs(text, fp) >= 0;
    if (fp && fclose(fp) != 0) ok = 0;
    if (!ok) {
      fprintf(stderr, "%s: cannot write %s: %s\n", g_prog, a->graph_out, strerror(errno));
      if (fp) remove(a->graph_out);
    }
    rc = ok ? 0 : 1;
  }
  free(text);
  vnrt_context_destroy(ctx);
  return rc;
}

static int parse_args(int argc, char **argv, args *a) {
  memset(a, 0, sizeof *a);
  a->tokens = 16;
  a->seed = 1;
  a->ep_fail_rank = -1;
  a->ep_stall_rank = -1;
  a->ep_stall_layer = -1;
  a->ep_timeout = 60.0;
  a->ep_waves = 2;
  a->graph_tokens = 1;
  for (int i = 1; i < argc; ++i) {
    const char *o = argv[i];
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      usage(stdout);
      exit(0);
    }
    /* Switches without a value. */
    const struct {
      const char *name;
      int *flag;
    } switches[] = {{"--chat", &a->chat},
                    {"--stats", &a->stats},
                    {"--roofline", &a->roofline},
                    {"--profile", &a->profile},
                    {"--profile-nodes", &a->profile_nodes},
                    {"--plan", &a->plan},
                    {"--ep-shared-before", &a->shared_before},
                    {"--ep-engram-early", &a->engram_early}};
    size_t sw = 0;
    while (sw < sizeof switches / sizeof switches[0] && strcmp(o, switches[sw].name) != 0) ++sw;
    if (sw < sizeof switches / sizeof switches[0]) {
      *switches[sw].flag = 1;
      continue;
    }
    if (!strcmp(o, "--expert-parallel")) {
#ifndef VNRT_HAVE_MPI
      return bad_usage("%s: this vnrt-generate was built without MPI (meson -Dmpi=enabled)", o);
#endif
      a->expert_parallel = 1;
      continue;
    }
    if (strncmp(o, "--", 2) != 0) return bad_usage("unexpected argument '%s'", o);
    if (i + 1 >= argc) return bad_usage("%s needs a value", o);
    const char *v = argv[++i];
    long long n;
    double f;
    if (!strcmp(o, "--model")) {
      a->model = v;
    } else if (!strcmp(o, "--prompt")) {
      a->prompt = v;
    } else if (!strcmp(o, "--prompt-ids")) {
      a->prompt_ids = v;
    } else if (!strcmp(o, "--device")) {
      a->device = v;
    } else if (!strcmp(o, "--routes-out")) {
      a->routes_out = v;
    } else if (!strcmp(o, "--ep-engram-out")) {
      a->engram_out = v;
    } else if (!strcmp(o, "--simulate-ranks") || !strcmp(o, "--scale-out")) {
      if (parse_i64(v, 1, 4096, &n)) return bad_usage("%s: expected 1..4096 ranks", o);
      *(o[2] == 's' && o[3] == 'i' ? &a->simulate_ranks : &a->scale_out) = n;
    } else if (!strcmp(o, "--devices")) {
      a->devices = v;
    } else if (!strcmp(o, "--split")) {
      if (strcmp(v, "layers") && strcmp(v, "experts")) {
        return bad_usage("--split '%s': expected layers or experts", v);
      }
      a->split_experts = !strcmp(v, "experts");
    } else if (!strcmp(o, "--ep-local")) {
      if (parse_i64(v, 1, 4096, &n)) return bad_usage("--ep-local '%s': expected 1..4096", v);
      a->ep_local = n;
    } else if (!strcmp(o, "--ep-fail-rank")) { /* a test aid: that rank opens no model */
      if (parse_i64(v, 0, 4096, &n)) return bad_usage("--ep-fail-rank '%s': expected >= 0", v);
      a->ep_fail_rank = n;
    } else if (!strcmp(o, "--ep-stall")) { /* a test aid: RANK:LAYER or RANK:load stops */
      long long r = -1, l = -1;
      char tail = 0;
      const char *colon = strchr(v, ':');
      if (colon && !strcmp(colon, ":load") && sscanf(v, "%lld%c", &r, &tail) == 2 && tail == ':' &&
          r >= 0) {
        l = EP_STALL_LOAD;
      } else if (sscanf(v, "%lld:%lld%c", &r, &l, &tail) != 2 || r < 0 || l < 0) {
        return bad_usage("--ep-stall '%s': expected RANK:LAYER or RANK:load", v);
      }
      a->ep_stall_rank = r;
      a->ep_stall_layer = l;
    } else if (!strcmp(o, "--ep-timeout")) {
      if (parse_f(v, &f) || !(f > 0) || f > 1e6) {
        return bad_usage("--ep-timeout '%s': expected seconds > 0", v);
      }
      a->ep_timeout = f;
    } else if (!strcmp(o, "--ep-waves")) {
      if (parse_i64(v, 1, 64, &n)) return bad_usage("--ep-waves '%s': expected 1..64", v);
      a->ep_waves = n;
    } else if (!strcmp(o, "--ep-wire")) {
      if (strcmp(v, "f32") && strcmp(v, "fp8")) {
        return bad_usage("--ep-wire '%s': expected f32 or fp8", v);
      }
      a->ep_fp8 = !strcmp(v, "fp8");
    } else if (!strcmp(o, "--sim-tokens")) {
      if (parse_i64(v, 1, 1LL << 24, &n))
        return bad_usage("--sim-tokens '%s': expected 1..2^24", v);
      a->sim_tokens = n;
    } else if (!strcmp(o, "--logits-out")) {
      a->logits_out = v;
    } else if (!strcmp(o, "--graph-out")) {
      a->graph_out = v;
    } else if (!strcmp(o, "--graph-tokens")) {
      if (parse_i64(v, 1, 1LL << 31, &n)) {
        return bad_usage("--graph-tokens '%s': expected 1..2^31", v);
      }
      a->graph_tokens = n;
      a->graph_tokens_set = 1;
    } else if (!strcmp(o, "--numerics")) {
      if (strcmp(v, "ref") && strcmp(v, "f32")) {
        return bad_usage("--numerics '%s': expected ref or f32", v);
      }
      a->f32 = !strcmp(v, "f32");
    } else if (!strcmp(o, "--tokens")) {
      if (parse_i64(v, 0, 1LL << 30, &n)) return bad_usage("--tokens '%s': expected 0..2^30", v);
      a->tokens = n;
    } else if (!strcmp(o, "--top-k")) {
      if (parse_i64(v, 0, 1LL << 30, &n)) return bad_usage("--top-k '%s': expected >= 0", v);
      a->top_k = n;
    } else if (!strcmp(o, "--seed")) {
      if (parse_i64(v, 0, 0x7fffffffffffffffLL, &n)) {
        return bad_usage("--seed '%s': expected a non-negative integer", v);
      }
      a->seed = n;
    } else if (!strcmp(o, "--max-context")) {
      if (parse_i64(v, 1, 1LL << 31, &n)) return bad_usage("--max-context '%s': expected >= 1", v);
      a->max_context = n;
    } else if (!strcmp(o, "--prefill-chunk")) {
      if (parse_i64(v, 1, 1LL << 31, &n)) {
        return bad_usage("--prefill-chunk '%s': expected >= 1", v);
      }
      a->chunk = n;
    } else if (!strcmp(o, "--threads")) {
      if (parse_i64(v, 1, 4096, &n)) return bad_usage("--threads '%s': expected 1..4096", v);
      a->threads = n;
    } else if (!strcmp(o, "--temperature")) {
      if (parse_f(v, &f) || f < 0) return bad_usage("--temperature '%s': expected >= 0", v);
      a->temperature = f;
    } else if (!strcmp(o, "--top-p")) {
      if (parse_f(v, &f) || f < 0 || f > 1) return bad_usage("--top-p '%s': expected [0, 1]", v);
      a->top_p = f;
    } else if (!strcmp(o, "--memory-limit")) {
      if (parse_size(v, &a->memory_limit)) {
        return bad_usage("--memory-limit '%s': expected a size such as 64M or 2G", v);
      }
    } else {
      return bad_usage("unknown option '%s'", o);
    }
  }
  if (!a->model) return bad_usage("%s", "--model DIR is required");
  if (a->graph_tokens_set && !a->graph_out) {
    return bad_usage("%s", "--graph-tokens N needs --graph-out FILE");
  }
  if (a->graph_out && (a->plan || a->scale_out)) {
    return bad_usage("%s", "--graph-out, --plan and --scale-out each print one thing: pick one");
  }
  if (a->plan || a->scale_out || a->graph_out) return 0;
  if (a->routes_out && !a->simulate_ranks) {
    return bad_usage("%s", "--routes-out needs --simulate-ranks N");
  }
  if (!!a->prompt + !!a->prompt_ids != 1) {
    return bad_usage("%s", "give the prompt as --prompt TEXT or --prompt-ids IDS (one of them)");
  }
  if (a->chat && !a->prompt) return bad_usage("%s", "--chat needs --prompt TEXT");
  if (a->engram_out && !a->ep_local && !a->expert_parallel) {
    return bad_usage("%s", "--ep-engram-out needs --ep-local N or --expert-parallel");
  }
  if (a->ep_local && a->expert_parallel) {
    return bad_usage("%s", "--ep-local and --expert-parallel exclude each other");
  }
  if (a->ep_fp8 && a->f32) {
    /* Only the reference numerics quantize the experts' input: fp8 rows would round it. */
    return bad_usage("%s",
                     "--ep-wire fp8 needs --numerics ref (under f32 it would change the "
                     "experts' input)");
  }
  return 0;
}

/* Prints the text of ids[0..n) that is new since *printed bytes (decoding the whole tail keeps
 * multi-byte characters whole). */
static void stream_text(vnrt_tokenizer *tok, const int32_t *ids, size_t n, size_t *printed) {
  size_t len = 0;
  if (vnrt_tokenizer_decode(tok, ids, n, 0, NULL, 0, &len) != VNRT_ERROR_OUT_OF_RANGE && len == 0) {
    return;
  }
  char *text = malloc(len + 1);
  if (!text) return;
  if (vnrt_tokenizer_decode(tok, ids, n, 0, text, len + 1, &len) == VNRT_OK && len > *printed) {
    fwrite(text + *printed, 1, len - *printed, stdout);
    fflush(stdout);
    *printed = len;
  }
  free(text);
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Appends the last run's routing (of a prefill: its last chunk) (vnrt_session_routes) as lines
 * `pos0 layer t e_0 ... e_k-1`. */
static int write_routes(FILE *fp, const vnrt_session *s, const vnrt_model_info *info,
                        long long max_tokens) {
  const int64_t k = info->num_experts_per_tok;
  size_t cap = (size_t)max_tokens * (size_t)k;
  int32_t *r = malloc(cap * sizeof *r);
  int rc = r ? 0 : -1;
  for (int32_t l = 0; rc == 0 && l < info->num_layers; ++l) {
    int64_t T = 0;
    if (vnrt_session_routes(s, l, r, cap, &T) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
      rc = -1;
      break;
    }
    const int64_t pos0 = vnrt_session_position(s) - T;
    for (int64_t t = 0; t < T; ++t) {
      fprintf(fp, "%lld %d %lld", (long long)pos0, (int)l, (long long)t);
      for (int64_t j = 0; j < k; ++j) fprintf(fp, " %d", (int)r[t * k + j]);
      fputc('\n', fp);
    }
  }
  free(r);
  return rc;
}

static int cmp_double_(const void *x, const void *y) {
  const double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* --roofline's triad passes, ROOFLINE_PASSES right before the decode and as many right after
 * it, in the same window but never between its steps: a pass between steps leaves a device
 * driver's worker threads idle for the ~10 ms it takes, and PoCL then started each step
 * ~3 ms slower (docs/bench.md, "OpenCL, stop 29"), the CPU backend no slower. */
#define ROOFLINE_PASSES 5

static void roofline_passes(tool_triad *tri, double *t, long long *n) {
  for (int i = 0; i < ROOFLINE_PASSES; ++i) {
    const double s = tool_triad_pass(tri);
    if (s > 0.0) t[(*n)++] = s;
  }
}

/* --roofline's lines: the weights a token reads (the plan's figure, stored size), the triad's
 * median over the passes before and after the decode, the tokens/s that bandwidth allows, and
 * the decode's fraction of it. */
static void print_roofline(const tool_triad *tri, double *t, long long n, const vnrt_session *s,
                           const vnrt_model_info *info) {
  vnrt_session_stats st = {0};
  st.size = sizeof st;
  if (vnrt_session_get_stats(s, &st) != VNRT_OK || n == 0 || st.decode_seconds <= 0.0 ||
      info->decode_bytes_per_token == 0) {
    fprintf(stderr, "roofline: no decode step ran (--tokens 2 or more)\n");
    return;
  }
  qsort(t, (size_t)n, sizeof *t, cmp_double_);
  const double gbps = tool_triad_gbps(tri, n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]));
  const double gb = (double)info->decode_bytes_per_token / 1e9;
  const double tps = (double)st.tokens_decoded / st.decode_seconds, bound = gbps / gb;
  fprintf(stderr,
          "roofline: %.4f GB (%llu bytes) of weights per token (stored size); triad %.2f GB/s "
          "(median of %lld passes, half before and half after the decode, %d threads) -> at "
          "most %.1f "
          "tokens/s\n"
          "roofline: decode %.1f tokens/s = %.3f of the roofline\n",
          gb, (unsigned long long)info->decode_bytes_per_token, gbps, n, tri->threads, bound, tps,
          tps / bound);
}

int main(int argc, char **argv) {
  /* A command-line tool shows the library's warnings (the library is silent by default:
   * docs/api.md, "Options"); VNRT_LOG set by the user wins. */
  setenv("VNRT_LOG", "warn", 0);
  args a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  ep_exchange ex = {0};
  ex.rank = -1;
  ex.ranks = (int32_t)a.ep_local;
#ifdef VNRT_HAVE_MPI
  if (a.expert_parallel && !a.plan && !a.scale_out && !a.graph_out) {
    int rank = 0, size = 1;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    ex.mpi = 1;
    ex.rank = rank;
    ex.ranks = size;
    snprintf(g_prog, sizeof g_prog, "vnrt-generate: rank %d of %d", rank, size);
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) return 1; /* rank 0 prints */
  }
#endif
  if (a.plan) {
    size_t len = 0;
    if (vnrt_model_plan_text(a.model, a.max_context, NULL, 0, &len) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
      return 1;
    }
    char *text = malloc(len + 1);
    if (!text || vnrt_model_plan_text(a.model, a.max_context, text, len + 1, NULL) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, text ? vnrt_model_last_error() : "out of memory");
      free(text);
      return 1;
    }
    fputs(text, stdout);
    free(text);
    return 0;
  }
  if (a.graph_out) return write_graph(&a);
  if (a.scale_out) {
    size_t len = 0;
    const int32_t N = (int32_t)a.scale_out;
    if (vnrt_model_scale_text(a.model, N, a.sim_tokens, NULL, 0, &len) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
      return 1;
    }
    char *text = malloc(len + 1);
    if (!text || vnrt_model_scale_text(a.model, N, a.sim_tokens, text, len + 1, NULL) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, text ? vnrt_model_last_error() : "out of memory");
      free(text);
      return 1;
    }
    fputs(text, stdout);
    free(text);
    return 0;
  }

  vnrt_context *ctx = NULL;
  vnrt_model *model = NULL;
  vnrt_session *session = NULL;
  vnrt_tokenizer *tok = NULL;
  int32_t *ids = NULL;
  float *rows = NULL;
  FILE *routes_fp = NULL;
  long long n_prompt = 0;
  tool_triad tri = {0};
  double tri_s[2 * ROOFLINE_PASSES]; /* --roofline: each pass's time, before and after */
  long long tri_n = 0;
  rc = 1;
  vnrt_context_desc cd = {0};
  cd.num_threads = (int)a.threads;
  a.profile |= a.profile_nodes;
  if (a.profile) cd.options = "profile=1";
  if (vnrt_context_create(&cd, &ctx) != VNRT_OK) {
    fprintf(stderr, "%s: cannot create a context\n", g_prog);
    return 1;
  }
  char tok_path[4096];
  snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", a.model);
  if (file_exists(tok_path)) {
    char err[1024];
    if (vnrt_tokenizer_open(ctx, tok_path, &tok, err, sizeof err) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, err);
      goto done;
    }
  } else if (a.prompt) {
    fprintf(stderr, "%s: --prompt TEXT needs %s (use --prompt-ids without one)\n", g_prog,
            tok_path);
    goto done;
  }
  if (a.prompt_ids) {
    if (parse_ids(a.prompt_ids, &ids, &n_prompt)) {
      fprintf(stderr, "%s: --prompt-ids '%s': expected integers\n", g_prog, a.prompt_ids);
      rc = 2;
      goto done;
    }
  } else {
    size_t count = 0;
    vnrt_chat_message msg = {"user", a.prompt};
    vnrt_status st = a.chat ? vnrt_tokenizer_chat_encode(
                                  tok, &msg, 1, VNRT_CHAT_ADD_GENERATION_PROMPT, NULL, 0, &count)
                            : vnrt_tokenizer_encode(tok, a.prompt, strlen(a.prompt),
                                                    VNRT_TOKENIZE_ADD_BOS, NULL, 0, &count);
    ids = malloc((count ? count : 1) * sizeof *ids);
    if (ids) {
      st = a.chat ? vnrt_tokenizer_chat_encode(tok, &msg, 1, VNRT_CHAT_ADD_GENERATION_PROMPT, ids,
                                               count, &count)
                  : vnrt_tokenizer_encode(tok, a.prompt, strlen(a.prompt), VNRT_TOKENIZE_ADD_BOS,
                                          ids, count, &count);
    }
    if (!ids || st != VNRT_OK) {
      fprintf(stderr, "%s: encoding the prompt: %s\n", g_prog,
              ids ? vnrt_tokenizer_last_error(tok) : "out of memory");
      goto done;
    }
    n_prompt = (long long)count;
  }
  if (n_prompt < 1) {
    fprintf(stderr, "%s: the prompt is empty (at least one token is needed)\n", g_prog);
    goto done;
  }
  int32_t *grown = realloc(ids, (size_t)(n_prompt + a.tokens + 1) * sizeof *ids);
  if (!grown) {
    fprintf(stderr, "%s: out of memory\n", g_prog);
    goto done;
  }
  ids = grown;

  vnrt_model_desc md = {0};
  md.size = sizeof md;
  md.device_spec = a.device;
  md.numerics = a.f32 ? VNRT_NUMERICS_F32 : VNRT_NUMERICS_REF;
  md.memory_limit = a.memory_limit;
  md.devices = a.devices;
  md.split_experts = a.split_experts;
  char fail_dir[4096];
  const char *model_dir = a.model;
  if (ex.mpi && ex.rank == a.ep_fail_rank) {
    snprintf(fail_dir, sizeof fail_dir, "%s/no-such-checkpoint", a.model);
    model_dir = fail_dir;
  }
  if (vnrt_model_open(ctx, model_dir, &md, &model) != VNRT_OK) {
    fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
    goto done;
  }
  vnrt_model_info info = {0};
  info.size = sizeof info;
  vnrt_model_get_info(model, &info);
  if (a.devices && a.split_experts) { /* the placement: the experts' slices */
    fprintf(stderr, "placement: dense part on %s; experts of every layer:",
            vnrt_model_layer_device(model, 0));
    for (int32_t e = 0, start = 0; e < info.n_routed_experts; ++e) {
      const char *d = vnrt_model_expert_device(model, e);
      const char *next =
          e + 1 < info.n_routed_experts ? vnrt_model_expert_device(model, e + 1) : NULL;
      if (next && d && !strcmp(d, next)) continue;
      fprintf(stderr, " [%d, %d) on %s;", (int)start, (int)e + 1, d ? d : "?");
      start = e + 1;
    }
    fprintf(stderr, "\n");
  } else if (a.devices) { /* the placement: runs of layers per device */
    fprintf(stderr, "placement:");
    for (int32_t l = 0, start = 0; l <= info.num_layers; ++l) {
      const char *d = vnrt_model_layer_device(model, l);
      const char *next = l < info.num_layers ? vnrt_model_layer_device(model, l + 1) : NULL;
      if (next && d && !strcmp(d, next)) continue;
      if (start == info.num_layers) {
        fprintf(stderr, " head on %s;", d ? d : "?");
      } else {
        fprintf(stderr, " layers %d-%d%s on %s;", (int)start,
                (int)(l < info.num_layers ? l : l - 1), l == info.num_layers ? " + head" : "",
                d ? d : "?");
      }
      start = l + 1;
    }
    fprintf(stderr, "\n");
  }
  vnrt_session_desc sd = {0};
  sd.size = sizeof sd;
  sd.max_context = a.max_context;
  sd.prefill_chunk = a.chunk;
  sd.ep_simulate_ranks = (int32_t)a.simulate_ranks;
  if (ex.ranks > 0) {
    if (ex.ranks > info.n_routed_experts) {
      fprintf(stderr, "%s: %d ranks for %d experts: at most one rank per expert\n", g_prog,
              (int)ex.ranks, (int)info.n_routed_experts);
      goto done;
    }
    if (a.ep_fp8 && !info.quantized) {
      /* The experts' input is rounded to e4m3 only in front of FP8/FP4 weights. */
      fprintf(stderr,
              "%s: --ep-wire fp8 needs FP8/FP4 experts: this checkpoint is dequantized (BF16), "
              "so e4m3 rows would change the experts' input\n",
              g_prog);
      goto done;
    }
    if (a.ep_fp8 && info.hidden_size % 128 != 0) {
      fprintf(stderr, "%s: --ep-wire fp8: hidden size %lld is not a multiple of 128\n", g_prog,
              (long long)info.hidden_size);
      goto done;
    }
    ex.model = model;
    ex.wire = a.ep_fp8 ? EP_WIRE_FP8 : EP_WIRE_F32;
    ex.timeout_s = a.ep_timeout;
    ex.waves = (int32_t)a.ep_waves;
    ex.stall_rank = (int32_t)a.ep_stall_rank;
    ex.stall_layer = (int32_t)a.ep_stall_layer;
    ex.experts = info.n_routed_experts;
    ex.k = info.num_experts_per_tok;
    ex.hidden = info.hidden_size;
    sd.moe_exchange = a.shared_before ? ep_exchange_run : ep_exchange_start;
    sd.moe_exchange_finish = a.shared_before ? NULL : ep_exchange_finish;
    sd.moe_exchange_user = &ex;
    ex.shared_apart = !a.shared_before;
    /* Engram tables sharded by row: each rank holds its slice, rows fetched from the owner. */
    sd.engram_fetch = ep_engram_fetch;
    sd.engram_fetch_user = &ex;
    sd.engram_fetch_early = a.engram_early;
    if (a.engram_out && ex.rank <= 0) {
      ex.engram_log = fopen(a.engram_out, "w");
      if (!ex.engram_log) {
        fprintf(stderr, "%s: cannot write %s\n", g_prog, a.engram_out);
        goto done;
      }
    }
  }
  if (a.routes_out) {
    routes_fp = fopen(a.routes_out, "w");
    if (!routes_fp) {
      fprintf(stderr, "%s: cannot write %s\n", g_prog, a.routes_out);
      goto done;
    }
  }
  if (vnrt_session_create(model, &sd, &session) != VNRT_OK) {
    fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
    goto done;
  }
  if (ex.mpi) ep_all_ready(&ex); /* the loads may differ by more than one step's timeout */
  const int64_t V = info.vocab_size;
  const long long steps = a.tokens + 1;
  rows = malloc((size_t)(a.logits_out ? steps : 1) * (size_t)V * sizeof *rows);
  if (!rows) {
    fprintf(stderr, "%s: out of memory\n", g_prog);
    goto done;
  }
  if (vnrt_session_prefill(session, ids, n_prompt) != VNRT_OK) {
    fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
    goto done;
  }
  if (routes_fp && write_routes(routes_fp, session, &info, a.chunk ? a.chunk : 256) != 0) goto done;
  if (a.roofline && a.tokens >= 2) { /* fewer: no decode step, print_roofline says so */
    /* ~256 MiB, far beyond the caches, on the threads the CPU backend runs on. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = a.threads > 0 ? (int)a.threads : cores > 0 ? (int)cores : 1;
    if (tool_triad_init(&tri, (size_t)256 << 20, threads) != 0) {
      fprintf(stderr, "%s: --roofline: no memory or threads for the 256 MiB triad\n", g_prog);
      goto done;
    }
    roofline_passes(&tri, tri_s, &tri_n);
  }
  size_t printed = 0;
  if (tok) stream_text(tok, ids, (size_t)n_prompt, &printed);
  vnrt_sampler_desc smp = {0};
  smp.size = sizeof smp;
  smp.temperature = (float)a.temperature;
  smp.top_k = (int32_t)a.top_k;
  smp.top_p = (float)a.top_p;
  smp.seed = (uint64_t)a.seed;
  uint64_t rng = 0;
  long long n = n_prompt, row = 0;
  for (long long i = 0; i < a.tokens; ++i) {
    float *lg = rows + (a.logits_out ? row * V : 0);
    int32_t id = -1;
    if (vnrt_session_logits(session, lg, (size_t)V) != VNRT_OK ||
        vnrt_sample(lg, V, &smp, &rng, &id) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
      goto done;
    }
    ++row;
    ids[n++] = id;
    if (tok) stream_text(tok, ids, (size_t)n, &printed);
    if (i + 1 == a.tokens) break; /* the last token's logits are not needed */
    if (vnrt_session_decode(session, &id, 1) != VNRT_OK) {
      fprintf(stderr, "%s: %s\n", g_prog, vnrt_model_last_error());
      goto done;
    }
    if (routes_fp && write_routes(routes_fp, session, &info, a.chunk ? a.chunk : 256) != 0)
      goto done;
  }
  if (tri.threads > 0) roofline_passes(&tri, tri_s, &tri_n); /* --roofline's triad is set up */
  if (a.tokens == 0 && vnrt_session_logits(session, rows, (size_t)V) == VNRT_OK) row = 1;
  if (tok) printf("\n");
  printf("generated:");
  for (long long i = n_prompt; i < n; ++i) printf(" %d", (int)ids[i]);
  printf("\n");
  if (a.logits_out) {
    vnrt_tensor_type t = {VNRT_F32, 2, {row, V, 0, 0}};
    if (vnrt_npy_write(ctx, a.logits_out, &t, rows) != VNRT_OK) {
      fprintf(stderr, "%s: writing %s: %s\n", g_prog, a.logits_out, vnrt_context_last_error(ctx));
      goto done;
    }
  }
  fflush(stdout);
  if (a.stats) {
    vnrt_session_stats s = {0};
    s.size = sizeof s;
    vnrt_session_get_stats(session, &s);
    fprintf(stderr,
            "device %s, numerics %s, %d layers, vocab %lld, weights %.1f MiB\n"
            "prefill: %lld tokens in %.3f s (%.1f tokens/s, %lld runs)\n"
            "decode: %lld tokens in %.3f s (%.1f tokens/s)\n"
            "compile: %d plans in %.3f s\n"
            "decode plan: %d nodes, %d on the CPU (fallback), device %.1f MiB, weights %.1f "
            "MiB, state %.1f MiB, %d params streamed (%.1f MiB)\n"
            "streamed during runs: %.1f MiB weights, %.1f MiB transfers\n",
            info.device, a.f32 ? "f32" : "ref", (int)info.num_layers, (long long)V,
            (double)info.weight_bytes / 1048576.0, (long long)s.tokens_prefilled, s.prefill_seconds,
            s.prefill_seconds > 0 ? (double)s.tokens_prefilled / s.prefill_seconds : 0.0,
            (long long)s.prefill_runs, (long long)s.tokens_decoded, s.decode_seconds,
            s.decode_seconds > 0 ? (double)s.tokens_decoded / s.decode_seconds : 0.0,
            (int)s.n_plans, s.compile_seconds, (int)s.n_nodes, (int)s.n_fallback_nodes,
            (double)s.device_bytes / 1048576.0, (double)s.weight_bytes / 1048576.0,
            (double)s.state_bytes / 1048576.0, (int)s.n_streamed_params,
            (double)s.streamed_bytes / 1048576.0, (double)s.bytes_weights_streamed / 1048576.0,
            (double)s.bytes_transfers / 1048576.0);
    vnrt_session_move_stats mv = {.size = sizeof mv};
    if (vnrt_session_get_move_stats(session, &mv) == VNRT_OK && mv.runs > 0) {
      /* --devices: what passed between the devices, per step (a prefill chunk or a decode
       * step), and how much of the copy streams' time the compute hid (docs/scale-out.md). */
      const double r = (double)mv.runs;
      fprintf(stderr,
              "moves: %lld steps, %lld tokens; between devices %llu bytes (boundaries %llu, "
              "routed %llu), Engram rows %llu bytes; on the copy streams %llu bytes (%llu "
              "staged at the step's start)\n"
              "moves per step: between devices %.0f bytes, copy streams %.6f s, waited "
              "%.6f s, overlapped %.6f s (%.1f%%)\n",
              (long long)mv.runs, (long long)mv.tokens,
              (unsigned long long)(mv.bytes_boundaries + mv.bytes_routed),
              (unsigned long long)mv.bytes_boundaries, (unsigned long long)mv.bytes_routed,
              (unsigned long long)mv.bytes_engram, (unsigned long long)mv.bytes_moved,
              (unsigned long long)mv.bytes_early,
              (double)(mv.bytes_boundaries + mv.bytes_routed) / r, mv.copy_seconds / r,
              mv.wait_seconds / r, mv.overlapped_seconds / r,
              mv.copy_seconds > 0 ? 100.0 * mv.overlapped_seconds / mv.copy_seconds : 0.0);
    }
  }
  if (a.profile) {
    const uint32_t what = VNRT_PROFILE_OPS | (a.profile_nodes ? VNRT_PROFILE_NODES : 0u);
    size_t need = 0;
    vnrt_session_profile_text(session, what, NULL, 0, &need);
    char *text = malloc(need + 1);
    if (text && vnrt_session_profile_text(session, what, text, need + 1, NULL) == VNRT_OK) {
      fprintf(stderr, "last run, %s:\n%s", a.profile_nodes ? "per node and per op" : "per op",
              text);
    }
    free(text);
  }
  if (ex.ranks > 0) {
    vnrt_session_stats es = {0};
    es.size = sizeof es;
    vnrt_session_get_stats(session, &es);
    ep_exchange_print(stderr, &ex, es.tokens_prefilled + es.tokens_decoded,
                      es.prefill_seconds + es.decode_seconds);
  }
#ifdef VNRT_HAVE_MPI
  if (ex.mpi) { /* every rank must have generated the same tokens */
    uint64_t h = 1469598103934665603ull;
    for (long long i = n_prompt; i < n; ++i) h = (h ^ (unsigned)ids[i]) * 1099511628211ull;
    if (!ep_same_on_all_ranks(&ex, h)) {
      fprintf(stderr, "%s: the ranks generated different tokens\n", g_prog);
      goto done;
    }
  }
#endif
  if (a.simulate_ranks) {
    size_t len = 0;
    vnrt_session_ep_text(session, NULL, 0, &len);
    char *text = malloc(len + 1);
    if (text && vnrt_session_ep_text(session, text, len + 1, NULL) == VNRT_OK) {
      fputs(text, stderr);
    }
    free(text);
  }
  rc = 0;
  if (a.roofline) print_roofline(&tri, tri_s, tri_n, session, &info);
done:
  tool_triad_free(&tri);
  if (routes_fp && fclose(routes_fp) != 0 && rc == 0) {
    fprintf(stderr, "%s: writing %s failed\n", g_prog, a.routes_out);
    rc = 1;
  }
  free(rows);
  free(ids);
  vnrt_session_destroy(session);
  vnrt_model_close(model);
  vnrt_tokenizer_destroy(tok);
  vnrt_context_destroy(ctx);
  const int ep_mpi = ex.mpi;
  (void)ep_mpi;
  if (ex.engram_log) fclose(ex.engram_log);
  ep_exchange_free(&ex);
#ifdef VNRT_HAVE_MPI
  if (ep_mpi) {
    if (rc != 0) {
      /* The others may wait in a collective for this rank: end them all, with the reason
       * above naming this rank. */
      fprintf(stderr, "%s: failed; aborting every rank\n", g_prog);
      fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
  }
#endif
  return rc;
}
