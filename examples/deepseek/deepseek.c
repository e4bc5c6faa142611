/* deepseek: greedy generation with the tiny DeepSeek-V4-style model (mHC, MoE with hash and
 * top-k routing, Engram, sliding-window MQA with sinks) on any vnrt device.
 *
 *   ./build/examples/deepseek/deepseek                       # tiny config, generated weights
 *   ./build/examples/deepseek/deepseek --config examples/deepseek/configs/bench.json \
 *       --device vulkan --text "hello" --tokens 32 --stats
 *
 * Only the public API (vnrt/vnrt.h, vnrt/io.h) is used. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_config.h"
#include "ds_model.h"
#include "ds_roofline.h"
#include "ds_weights.h"
#include "vnrt/vnrt.h"

#ifndef DS_DEFAULT_CONFIG
#define DS_DEFAULT_CONFIG "examples/deepseek/configs/tiny.json"
#endif

static const char kUsage[] =
    "usage: deepseek [options]\n"
    "Greedy generation with the tiny DeepSeek-V4-style example model.\n"
    "\n"
    "  --config FILE     model config (JSON); default " DS_DEFAULT_CONFIG
    "\n"
    "  --weights FILE    .safetensors weights; without it, deterministic weights are\n"
    "                    generated into a temporary file first\n"
    "  --quant Q         store the big matrices quantized: fp8fp4 (FP8 attention and shared\n"
    "                    expert, FP4 routed experts), fp8, fp4 or none; overrides the config's\n"
    "                    weight_format (default: the config's, else the weights file's)\n"
    "  --device SPEC     cpu, vulkan, vulkan:1, opencl:0, ... (default: $VNRT_DEVICE, else\n"
    "                    the best device)\n"
    "  --prompt \"1 2 3\"  prompt token ids\n"
    "  --text STR        prompt as bytes (byte tokenizer: id = byte value)\n"
    "  --tokens N        tokens to generate (default 16)\n"
    "  --memory-limit B  device memory per plan, e.g. 64M, 1.5G or 2GiB (the grammar of\n"
    "                    $VNRT_DEVICE_MEMORY_LIMIT); over it, weights stay in the mapped file\n"
    "                    and stream to the device (default, or 0: $VNRT_DEVICE_MEMORY_LIMIT,\n"
    "                    else no limit)\n"
    "  --engram-cache N  device row cache of N rows for each Engram table, which is served from\n"
    "                    an Engram store over the mapped weights file (default 4096; 0: no\n"
    "                    cache, every step fetches its rows)\n"
    "  --engram-resident keep the Engram tables in device memory like other weights instead\n"
    "  --no-share        give the decode plan its own copy of the weights instead of sharing\n"
    "                    the prefill plan's (to compare memory)\n"
    "  --stats           print plan statistics and per-run statistics\n"
    "  --roofline        measure the memory bandwidth beside the decode steps (a STREAM-like\n"
    "                    triad over 256 MiB on the same thread count, one pass after each\n"
    "                    step) and print the bytes a decode step must read and decode speed\n"
    "                    as a fraction of that roofline\n"
    "  --threads N       CPU threads of the runtime and the triad (default: online cores)\n"
    "  --help            show this help\n";

typedef struct options {
  const char *config, *weights, *device, *prompt, *text, *quant;
  long tokens;
  int stats, roofline, threads;
  ds_model_options model;
} options;

/* A byte count with the library's grammar for $VNRT_DEVICE_MEMORY_LIMIT (docs/executor.md; the
 * library's parser is not public API, so this is the same grammar written again): a decimal
 * number with an optional fraction, then an optional unit K, M, G or T (powers of 1024, any
 * case) optionally followed by "B" or "iB", spaces allowed around the unit: "4096", "64M",
 * "1.5G", "2 GiB". A fraction is rounded down to whole bytes. A sign, an exponent, "nan",
 * "inf", trailing text and values above 2^64 - 1 bytes fail (-1: not a byte count, -2: too
 * large), leaving *out alone. Integer arithmetic only: no double is ever cast to an integer. */
static int is_space_c(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit_c(char c) { return c >= '0' && c <= '9'; }
static char lower_c(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static int parse_bytes(const char *text, uint64_t *out) {
  const char *p = text;
  while (is_space_c(*p)) ++p;
  if (!is_digit_c(*p)) return -1;
  uint64_t whole = 0;
  for (; is_digit_c(*p); ++p) {
    uint64_t d = (uint64_t)(*p - '0');
    if (whole > (UINT64_MAX - d) / 10) return -2;
    whole = whole * 10 + d;
  }
  /* The fraction as num/den with at most 18 digits (later ones cannot change whole bytes of a
   * unit of at most 2^40). */
  uint64_t num = 0, den = 1;
  if (*p == '.') {
    ++p;
    if (!is_digit_c(*p)) return -1;
    for (int n = 0; is_digit_c(*p); ++p, ++n)
      if (n < 18) num = num * 10 + (uint64_t)(*p - '0'), den *= 10;
  }
  while (is_space_c(*p)) ++p;
  int shift = 0;
  switch (lower_c(*p)) {
    case 'k':
      shift = 10;
      break;
    case 'm':
      shift = 20;
      break;
    case 'g':
      shift = 30;
      break;
    case 't':
      shift = 40;
      break;
    default:
      break;
  }
  if (shift) {
    ++p;
    if (lower_c(p[0]) == 'i' && lower_c(p[1]) == 'b')
      p += 2;
    else if (lower_c(*p) == 'b')
      ++p;
  } else if (lower_c(*p) == 'b') {
    ++p;
  }
  while (is_space_c(*p)) ++p;
  if (*p != '\0') return -1;
  uint64_t mult = (uint64_t)1 << shift;
  if (whole > UINT64_MAX / mult) return -2;
  uint64_t bytes = whole * mult;
  /* floor(num * 2^shift / den) by long division, one bit at a time: num < den <= 10^18 < 2^60,
   * so the remainder never overflows when doubled. */
  uint64_t extra = 0, rem = num;
  for (int b = 0; b < shift; ++b) {
    extra <<= 1;
    rem <<= 1;
    if (rem >= den) rem -= den, extra |= 1;
  }
  if (bytes > UINT64_MAX - extra) return -2;
  *out = bytes + extra;
  return 0;
}

static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  /* Engram tables live in Engram stores over the mapped weights file by default: the device
   * keeps a row cache and DualPath prefetches each step's rows (docs/executor.md). */
  o->model.engram_store = 1;
  o->model.engram_cache_rows = 4096;
  o->config = DS_DEFAULT_CONFIG;
  o->tokens = 16;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    int has = i + 1 < argc;
    if (!strcmp(a, "--config") && has) {
      o->config = argv[++i];
    } else if (!strcmp(a, "--weights") && has) {
      o->weights = argv[++i];
    } else if (!strcmp(a, "--quant") && has) {
      o->quant = argv[++i];
    } else if (!strcmp(a, "--device") && has) {
      o->device = argv[++i];
    } else if (!strcmp(a, "--prompt") && has) {
      o->prompt = argv[++i];
    } else if (!strcmp(a, "--text") && has) {
      o->text = argv[++i];
    } else if (!strcmp(a, "--tokens") && has) {
      char *end = NULL;
      errno = 0;
      o->tokens = strtol(argv[++i], &end, 10);
      if (errno || !end || *end || o->tokens < 1) {
        fprintf(stderr, "deepseek: --tokens wants a positive integer, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--no-share")) {
      o->model.no_share = 1;
    } else if (!strcmp(a, "--memory-limit") && has) {
      int bad = parse_bytes(argv[++i], &o->model.device_memory_limit);
      if (bad == -2) {
        fprintf(stderr,
                "deepseek: --memory-limit '%s' does not fit in 64 bits (at most "
                "18446744073709551615 bytes)\n",
                argv[i]);
        return 2;
      } else if (bad) {
        fprintf(stderr,
                "deepseek: --memory-limit wants a byte count such as 1048576, 512K, 64M, 1.5G "
                "or 2GiB (0: no limit of its own), not '%s'\n",
                argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--engram-cache") && has) {
      char *end = NULL;
      errno = 0;
      long rows = strtol(argv[++i], &end, 10);
      if (errno || !end || *end || rows < 0) {
        fprintf(stderr, "deepseek: --engram-cache wants a row count, not '%s'\n", argv[i]);
        return 2;
      }
      o->model.engram_store = 1;
      o->model.engram_cache_rows = rows;
    } else if (!strcmp(a, "--engram-resident")) {
      o->model.engram_store = 0;
    } else if (!strcmp(a, "--stats")) {
      o->stats = 1;
    } else if (!strcmp(a, "--roofline")) {
      o->roofline = 1;
    } else if (!strcmp(a, "--threads") && has) {
      char *end = NULL;
      errno = 0;
      long t = strtol(argv[++i], &end, 10);
      if (errno || !end || *end || t < 1 || t > 256) {
        fprintf(stderr, "deepseek: --threads wants an integer in [1, 256], not '%s'\n", argv[i]);
        return 2;
      }
      o->threads = (int)t;
    } else if (!strcmp(a, "--help")) {
      fputs(kUsage, stdout);
      return 1;
    } else {
      fprintf(stderr, "deepseek: unknown or incomplete option '%s'\n%s", a, kUsage);
      return 2;
    }
  }
  if (o->prompt && o->text) {
    fprintf(stderr, "deepseek: give --prompt or --text, not both\n");
    return 2;
  }
  return 0;
}

/* The prompt as token ids: --prompt ids, --text bytes, or a default. *out is malloc'ed. */
static int make_prompt(const options *o, const ds_config *cfg, int32_t **out, int64_t *out_n) {
  const char *text = o->text;
  if (!o->prompt && !text) {
    if (cfg->vocab >= 256) {
      text = "DeepSeek";
    } else {
      static const char *const def = "1 2 3 4 5 6 7 8";
      options tmp = *o;
      tmp.prompt = def;
      return make_prompt(&tmp, cfg, out, out_n);
    }
  }
  size_t cap = text ? strlen(text) + 1 : strlen(o->prompt) + 1;
  int32_t *ids = malloc(cap * sizeof *ids);
  if (!ids) return -1;
  int64_t n = 0;
  if (text) {
    if (cfg->vocab < 256) {
      fprintf(stderr, "deepseek: --text needs vocab_size >= 256 (byte tokens)\n");
      free(ids);
      return -1;
    }
    for (const unsigned char *p = (const unsigned char *)text; *p; ++p) ids[n++] = *p;
  } else {
    const char *p = o->prompt;
    while (*p) {
      char *end = NULL;
      errno = 0;
      long v = strtol(p, &end, 10);
      if (end == p) {
        if (*p == ' ' || *p == ',' || *p == '\t') {
          ++p;
          continue;
        }
        fprintf(stderr, "deepseek: --prompt: '%s' is not a list of token ids\n", o->prompt);
        free(ids);
        return -1;
      }
      if (errno || v < 0 || v >= cfg->vocab) {
        fprintf(stderr, "deepseek: --prompt: token %ld is outside [0, %lld)\n", v,
                (long long)cfg->vocab);
        free(ids);
        return -1;
      }
      ids[n++] = (int32_t)v;
      p = end;
    }
  }
  if (n == 0) {
    fprintf(stderr, "deepseek: the prompt is empty\n");
    free(ids);
    return -1;
  }
  *out = ids;
  *out_n = n;
  return 0;
}

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void print_plan(const char *what, const vnrt_plan_info *p) {
  printf(
      "  %s plan: %d nodes in %d partitions, %d on the cpu as fallback, %d in-place state "
      "updates\n",
      what, p->n_nodes, p->n_partitions, p->n_fallback_nodes, p->n_inplace_updates);
  printf(
      "    arena %.2f MiB (naive %.2f MiB), weights %.2f MiB, states %.2f MiB; on the device "
      "%.2f MiB (budget %.2f MiB, 0 = none)\n",
      mib(p->arena_bytes), mib(p->naive_bytes), mib(p->weight_bytes), mib(p->state_bytes),
      mib(p->device_bytes), mib(p->device_limit));
  printf(
      "    streamed weights: %d (%.2f MiB); Engram lookups served from stores: %d (row caches "
      "%.2f MiB)\n",
      p->n_streamed_params, mib(p->streamed_bytes), p->n_engram_lookups,
      mib(p->engram_cache_bytes));
}

/* The runtime's per-run statistics (vnrt_plan_get_run_stats), summed over the runs. New
 * counters of vnrt_run_stats belong here. */
static void print_run_stats(const char *what, const vnrt_run_stats *s, int64_t runs) {
  if (runs == 0) return;
  printf(
      "  %s (%lld runs): wall %.2f ms, compute stream %.2f ms, copy stream %.2f ms, stalled "
      "%.2f ms, copy/compute overlap %.0f%%\n",
      what, (long long)runs, 1e-6 * (double)s->wall_ns, 1e-6 * (double)s->compute_ns,
      1e-6 * (double)s->copy_ns, 1e-6 * (double)s->stall_ns, 100.0 * s->overlap);
  printf(
      "    bytes moved: weights %.2f MiB, Engram rows %.2f MiB, between devices and states "
      "%.2f MiB; Engram rows %llu, cache hits %llu (hit rate %.1f%%)\n",
      mib(s->bytes_weights), mib(s->bytes_engram), mib(s->bytes_transfers),
      (unsigned long long)s->engram_rows, (unsigned long long)s->engram_hits,
      100.0 * s->engram_hit_rate);
}

/* The decode roofline: bytes a step must read (mean over the decode steps, whose KV reads
 * grow with the position), the triad bandwidth measured beside the decode steps (triad_s over
 * triad_passes passes of triad_bytes), and decode tokens/s × bytes/token ÷ bandwidth. */
static int print_roofline(const ds_config *cfg, int64_t n_prompt, const ds_timing *tm, int threads,
                          double triad_s, int64_t triad_passes, uint64_t triad_bytes) {
  if (tm->decode_runs < 1 || tm->decode_s <= 0 || triad_passes < 1 || triad_s <= 0) {
    fprintf(stderr, "deepseek: --roofline needs decode steps (--tokens 2 or more)\n");
    return -1;
  }
  ds_decode_bytes sum, b;
  memset(&sum, 0, sizeof sum);
  for (int64_t i = 1; i <= tm->decode_runs; ++i) {
    if (ds_decode_bytes_at(cfg, n_prompt + i, &b)) {
      fprintf(stderr, "deepseek: out of memory\n");
      return -1;
    }
    sum.attention += b.attention, sum.kv_cache += b.kv_cache, sum.routed += b.routed;
    sum.shared += b.shared, sum.router += b.router, sum.mhc += b.mhc, sum.engram += b.engram;
    sum.norms += b.norms, sum.embed_head += b.embed_head, sum.total += b.total;
  }
  const double steps = (double)tm->decode_runs, mb = 1e6 * steps;
  const double gbps = (double)triad_bytes * (double)triad_passes / triad_s / 1e9;
  const double per_token = (double)sum.total / steps;
  const double tps = steps / tm->decode_s;
  printf(
      "roofline: a decode step reads %.2f MB (mean of %lld steps at KV lengths %lld..%lld): "
      "attention %.2f, KV cache %.2f, routed experts %.2f (%lld of %lld per layer), shared "
      "experts %.2f, router %.2f, mHC %.2f, Engram %.2f, norms %.2f, embedding row + LM head "
      "%.2f\n",
      per_token / 1e6, (long long)tm->decode_runs, (long long)(n_prompt + 1),
      (long long)(n_prompt + tm->decode_runs), (double)sum.attention / mb,
      (double)sum.kv_cache / mb, (double)sum.routed / mb, (long long)cfg->top_k,
      (long long)cfg->experts, (double)sum.shared / mb, (double)sum.router / mb,
      (double)sum.mhc / mb, (double)sum.engram / mb, (double)sum.norms / mb,
      (double)sum.embed_head / mb);
  printf(
      "  memory bandwidth: %.2f GB/s (STREAM-like triad over %.0f MiB on %d threads, one pass "
      "after each decode step, %lld passes)\n",
      gbps, (double)triad_bytes / (1024.0 * 1024.0), threads, (long long)triad_passes);
  printf(
      "  decode: %.1f tokens/s x %.2f MB = %.2f GB/s = %.2f of the roofline (%.1f tokens/s at "
      "the triad bandwidth)\n",
      tps, per_token / 1e6, tps * per_token / 1e9, tps * per_token / 1e9 / gbps,
      gbps * 1e9 / per_token);
  return 0;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc == 1 ? 0 : rc;

  ds_config cfg;
  char err[DS_ERR_SIZE];
  if (ds_config_load(o.config, &cfg, err, sizeof err) ||
      (o.quant && ds_config_set_quant(&cfg, o.quant, err, sizeof err))) {
    fprintf(stderr, "deepseek: %s\n", err);
    return 1;
  }
  int32_t *prompt = NULL;
  int64_t n_prompt = 0;
  if (make_prompt(&o, &cfg, &prompt, &n_prompt)) return 1;
  if (n_prompt + o.tokens - 1 > cfg.max_seq) {
    fprintf(stderr,
            "deepseek: %lld prompt tokens + %ld generated exceed max_position_embeddings = %lld\n",
            (long long)n_prompt, o.tokens, (long long)cfg.max_seq);
    free(prompt);
    return 1;
  }

  vnrt_context *ctx = NULL;
  vnrt_context_desc desc;
  memset(&desc, 0, sizeof desc);
  desc.num_threads = o.threads;
  if (vnrt_context_create(&desc, &ctx) != VNRT_OK) {
    fprintf(stderr, "deepseek: cannot create a vnrt context\n");
    free(prompt);
    return 1;
  }
  ds_model *model = NULL;
  float *logits = NULL;
  int32_t *out_ids = NULL;
  char tmp_path[] = "/tmp/deepseek-weights-XXXXXX";
  int tmp_made = 0;
  ds_triad *triad = NULL;
  int triad_threads = 1;
  double triad_s = 0.0;
  int64_t triad_passes = 0;
  rc = 1;

  const char *weights = o.weights;
  if (!weights) {
    int fd = mkstemp(tmp_path);
    if (fd < 0) {
      fprintf(stderr, "deepseek: cannot create a temporary file: %s\n", strerror(errno));
      goto done;
    }
    close(fd);
    tmp_made = 1;
    vnrt_status st = ds_weights_generate(ctx, &cfg, tmp_path, err, sizeof err);
    if (st != VNRT_OK) {
      fprintf(stderr, "deepseek: generating weights: %s\n", err);
      goto done;
    }
    weights = tmp_path;
  }

  vnrt_device *device = NULL;
  if (vnrt_device_select(ctx, o.device, &device) != VNRT_OK) {
    fprintf(stderr, "deepseek: %s\n", vnrt_context_last_error(ctx));
    goto done;
  }
  vnrt_device_info info;
  vnrt_device_get_info(device, &info);

  if (ds_model_open(ctx, &cfg, weights, &model, err, sizeof err) != VNRT_OK) {
    fprintf(stderr, "deepseek: %s\n", err);
    goto done;
  }
  cfg = *ds_model_config(model); /* with the weights file's formats */
  printf(
      "model: %s: C=%lld L=%lld V=%lld, MQA %lldx%lld (rope %lld, window %lld), mHC n=%lld, "
      "MoE %lld experts top-%lld (%lld hash layers), Engram at %d layers\n",
      o.config, (long long)cfg.hidden, (long long)cfg.layers, (long long)cfg.vocab,
      (long long)cfg.heads, (long long)cfg.head_dim, (long long)cfg.rope_dim, (long long)cfg.window,
      (long long)cfg.hc_mult, (long long)cfg.experts, (long long)cfg.top_k,
      (long long)cfg.hash_layers, (int)cfg.n_engram);
  char quant[128];
  ds_config_quant_str(&cfg, quant, sizeof quant);
  const int quantized = strcmp(quant, "none") != 0;
  printf("weights: %s (%.1f MiB%s%s%s)\n", o.weights ? o.weights : "generated",
         mib(ds_weights_bytes(&cfg)), o.weights ? "" : ", deterministic",
         quantized ? "; quantized: " : "", quantized ? quant : "");
  printf("device: %s (%s)\n", info.spec, info.name);

  if (ds_model_compile(model, device, n_prompt, &o.model) != VNRT_OK) {
    fprintf(stderr, "deepseek: %s\n", ds_model_error(model));
    goto done;
  }
  if (o.roofline) {
    triad_threads = o.threads;
    if (triad_threads < 1) {
      long cores = sysconf(_SC_NPROCESSORS_ONLN);
      triad_threads = cores > 0 ? (int)cores : 1;
    }
    if (ds_triad_create(triad_threads, 256ull << 20, &triad, err, sizeof err)) {
      fprintf(stderr, "deepseek: %s\n", err);
      goto done;
    }
  }
  logits = malloc((size_t)n_prompt * (size_t)cfg.vocab * sizeof *logits);
  out_ids = malloc((size_t)o.tokens * sizeof *out_ids);
  if (!logits || !out_ids) {
    fprintf(stderr, "deepseek: out of memory\n");
    goto done;
  }
  if (ds_model_prefill(model, prompt, logits) != VNRT_OK) {
    fprintf(stderr, "deepseek: %s\n", ds_model_error(model));
    goto done;
  }
  out_ids[0] = ds_argmax(logits + (n_prompt - 1) * cfg.vocab, cfg.vocab);
  for (long i = 1; i < o.tokens; ++i) {
    if (ds_model_decode(model, out_ids[i - 1], logits) != VNRT_OK) {
      fprintf(stderr, "deepseek: %s\n", ds_model_error(model));
      goto done;
    }
    out_ids[i] = ds_argmax(logits, cfg.vocab);
    /* The bandwidth is measured beside the decode steps, pass by pass, so that a change in
     * the machine's load hits both alike. */
    if (triad) {
      const double s = ds_triad_pass(triad);
      if (s < 0) {
        fprintf(stderr, "deepseek: triad: cannot start %d threads\n", triad_threads);
        goto done;
      }
      triad_s += s;
      ++triad_passes;
    }
  }

  printf("prompt (%lld tokens):", (long long)n_prompt);
  for (int64_t i = 0; i < n_prompt; ++i) printf(" %d", (int)prompt[i]);
  printf("\ngenerated (%ld tokens):", o.tokens);
  for (long i = 0; i < o.tokens; ++i) printf(" %d", (int)out_ids[i]);
  printf("\n");
  if (o.text) {
    printf("as bytes: \"");
    for (long i = 0; i < o.tokens; ++i) {
      int v = out_ids[i];
      if (v >= 0x20 && v < 0x7f && v != '"' && v != '\\') {
        putchar(v);
      } else {
        printf("\\x%02x", v & 0xff);
      }
    }
    printf("\"\n");
  }

  ds_timing tm;
  ds_model_timing(model, &tm);
  vnrt_plan_info pi, di;
  if (ds_model_plan_info(model, &pi, &di) != VNRT_OK) {
    fprintf(stderr, "deepseek: plan info: %s\n", vnrt_context_last_error(ctx));
    goto done;
  }
  printf("compile: prefill %.0f ms, decode %.0f ms, binding weights %.0f ms\n",
         1e3 * tm.compile_prefill_s, 1e3 * tm.compile_decode_s, 1e3 * tm.bind_s);
  printf("prefill: %lld tokens in %.1f ms = %.1f tokens/s\n", (long long)n_prompt,
         1e3 * tm.prefill_s, tm.prefill_s > 0 ? (double)n_prompt / tm.prefill_s : 0.0);
  if (tm.decode_runs > 0) {
    printf("decode: %lld tokens in %.1f ms = %.1f tokens/s\n", (long long)tm.decode_runs,
           1e3 * tm.decode_s, tm.decode_s > 0 ? (double)tm.decode_runs / tm.decode_s : 0.0);
  }
  /* Both plans stay alive together, each with its own arena, inputs and states; the decode
   * plan's device_bytes leaves out the weights it shares with the prefill plan, so the sum
   * counts them once. */
  uint64_t peak_p = pi.device_bytes, peak_d = di.device_bytes;
  printf(
      "peak device memory: %.2f MiB (prefill plan %.2f + decode plan %.2f: arenas, inputs, "
      "states and weights, %s)\n",
      mib(peak_p + peak_d), mib(peak_p), mib(peak_d),
      o.model.no_share ? "each plan with its own weights (--no-share)"
                       : "the weights the plans share counted once");
  printf("fallback nodes: prefill %d of %d, decode %d of %d\n", pi.n_fallback_nodes, pi.n_nodes,
         di.n_fallback_nodes, di.n_nodes);
  if (o.stats) {
    printf("stats:\n");
    print_plan("prefill", &pi);
    print_plan("decode", &di);
    vnrt_run_stats ps, ds;
    ds_model_run_stats(model, &ps, &ds);
    print_run_stats("prefill", &ps, tm.prefill_runs);
    print_run_stats("decode", &ds, tm.decode_runs);
  }
  if (o.roofline && print_roofline(&cfg, n_prompt, &tm, triad_threads, triad_s, triad_passes,
                                   ds_triad_bytes(triad))) {
    goto done;
  }
  rc = 0;

done:
  ds_triad_destroy(triad);
  free(out_ids);
  free(logits);
  free(prompt);
  ds_model_close(model);
  if (tmp_made) remove(tmp_path);
  vnrt_context_destroy(ctx);
  return rc;
}
