/* deepseek: greedy generation with a real-format DeepSeek-V4 checkpoint through the model
 * API (vnrt/model.h) — the thin client of the model library. By default it runs the tiny
 * checkpoint with Engram layers that the build generates from models/configs/v4-tiny-engram.json
 * (vnrt-make-checkpoint; random weights, so the ids are meaningless).
 *
 *   ./build/examples/deepseek/deepseek --stats
 *   ./build/examples/deepseek/deepseek --model /path/to/ckpt --device vulkan --tokens 32
 *
 * Only the public API (vnrt/vnrt.h, vnrt/model.h) is used. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vnrt/model.h"
#include "vnrt/vnrt.h"

#ifndef DS_DEFAULT_MODEL
#define DS_DEFAULT_MODEL "build/examples/deepseek/v4-tiny-engram"
#endif

static const char kUsage[] =
    "usage: deepseek [--model DIR] [--device SPEC] [--prompt \"1 2 3\"] [--tokens N]\n"
    "                [--numerics ref|f32] [--memory-limit B] [--stats]\n"
    "  --model DIR       a DeepSeek-V4 checkpoint (config.json, index, shards); default the\n"
    "                    tiny one with Engram that the build generates:\n"
    "                    " DS_DEFAULT_MODEL
    "\n"
    "  --device SPEC     cpu, vulkan, vulkan:1, opencl:0, ... (default: $VNRT_DEVICE, else the\n"
    "                    best device)\n"
    "  --prompt IDS      prompt token ids (default \"1 2 3 4 5 6 7 8\")\n"
    "  --tokens N        tokens to generate (default 16)\n"
    "  --numerics N      ref (DeepSeek's roundings, default) or f32\n"
    "  --memory-limit B  device memory per plan, e.g. 64M, 1.5G or 2GiB (the grammar of\n"
    "                    $VNRT_DEVICE_MEMORY_LIMIT; 0: none); weights over it are streamed\n"
    "  --engram-cache N  serve the Engram tables from Engram stores (vnrt/memory.h) over the\n"
    "                    mapped checkpoint, each with a device row cache of N rows (0: none)\n"
    "  --stats           tokens/s, plan, memory and streaming figures\n"
    "Prints `generated: <ids>`; exit 0 on success, 1 on a failure, 2 on a usage error.\n";

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

typedef struct options {
  const char *model, *device, *prompt;
  long tokens, engram_cache; /* engram_cache < 0: no Engram stores */
  int f32, stats;
  uint64_t memory_limit;
} options;

static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const int has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(kUsage, stdout);
      return 1;
    } else if (!strcmp(a, "--model") && has) {
      o->model = argv[++i];
    } else if (!strcmp(a, "--device") && has) {
      o->device = argv[++i];
    } else if (!strcmp(a, "--prompt") && has) {
      o->prompt = argv[++i];
    } else if (!strcmp(a, "--tokens") && has) {
      char *end = NULL;
      errno = 0;
      o->tokens = strtol(argv[++i], &end, 10);
      if (errno || !end || *end || end == argv[i] || o->tokens < 0 || o->tokens > 1000000) {
        fprintf(stderr, "deepseek: --tokens wants 0..1000000, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--numerics") && has) {
      const char *v = argv[++i];
      if (strcmp(v, "ref") != 0 && strcmp(v, "f32") != 0) {
        fprintf(stderr, "deepseek: --numerics wants ref or f32, not '%s'\n", v);
        return 2;
      }
      o->f32 = !strcmp(v, "f32");
    } else if (!strcmp(a, "--memory-limit") && has) {
      int bad = parse_bytes(argv[++i], &o->memory_limit);
      if (bad == -2) {
        fprintf(stderr,
                "deepseek: --memory-limit '%s' does not fit in 64 bits (at most "
                "18446744073709551615 bytes)\n",
                argv[i]);
        return 2;
      } else if (bad) {
        fprintf(stderr,
                "deepseek: --memory-limit wants a byte count such as 1048576, 512K, 64M, "
                "1.5G or 2GiB (0: no limit of its own), not '%s'\n",
                argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--engram-cache") && has) {
      char *end = NULL;
      errno = 0;
      o->engram_cache = strtol(argv[++i], &end, 10);
      if (errno || !end || *end || end == argv[i] || o->engram_cache < 0 ||
          o->engram_cache > (1L << 30)) {
        fprintf(stderr, "deepseek: --engram-cache wants 0..2^30 rows, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--stats")) {
      o->stats = 1;
    } else {
      fprintf(stderr, "deepseek: unknown option or missing value: '%s' (see --help)\n", a);
      return 2;
    }
  }
  return 0;
}

/* "1 2 3" (spaces or commas) into ids[cap]; the count, or -1 on bad text. */
static int64_t parse_ids(const char *s, int32_t *ids, int64_t cap) {
  int64_t n = 0;
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\t') ++p;
    if (!*p) break;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < 0 || v > INT32_MAX || n == cap) return -1;
    ids[n++] = (int32_t)v;
    p = end;
  }
  return n;
}

static int failed(const char *what) {
  fprintf(stderr, "deepseek: %s: %s\n", what, vnrt_model_last_error());
  return 1;
}

int main(int argc, char **argv) {
  /* A command-line tool shows the library's warnings (the library is silent by default:
   * docs/api.md, "Options"); VNRT_LOG set by the user wins. */
  setenv("VNRT_LOG", "warn", 0);
  options o = {DS_DEFAULT_MODEL, NULL, "1 2 3 4 5 6 7 8", 16, -1, 0, 0, 0};
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc == 1 ? 0 : rc;
  enum { MAX_PROMPT = 4096 };
  static int32_t prompt[MAX_PROMPT];
  const int64_t n_prompt = parse_ids(o.prompt, prompt, MAX_PROMPT);
  if (n_prompt < 1) {
    fprintf(stderr, "deepseek: --prompt wants 1..%d token ids, not '%s'\n", MAX_PROMPT, o.prompt);
    return 2;
  }
  if (access(o.model, R_OK) != 0) {
    fprintf(stderr,
            "deepseek: no checkpoint at '%s' (the default one is made by `ninja -C build`; "
            "any V4 checkpoint can be passed with --model)\n",
            o.model);
    return 1;
  }
  vnrt_context *ctx = NULL;
  if (vnrt_context_create(NULL, &ctx) != VNRT_OK) {
    fprintf(stderr, "deepseek: cannot create a vnrt context\n");
    return 1;
  }
  vnrt_model_desc md = {0};
  md.size = sizeof md;
  md.device_spec = o.device;
  md.numerics = o.f32 ? VNRT_NUMERICS_F32 : VNRT_NUMERICS_REF;
  md.memory_limit = o.memory_limit;
  md.engram_store = o.engram_cache >= 0;
  md.engram_cache_rows = o.engram_cache >= 0 ? o.engram_cache : 0;
  vnrt_model *model = NULL;
  vnrt_session *s = NULL;
  float *logits = NULL;
  int32_t *gen = NULL;
  rc = 1;
  vnrt_model_info info = {0};
  if (vnrt_model_open(ctx, o.model, &md, &model) != VNRT_OK) {
    failed(o.model);
    goto done;
  }
  if (vnrt_model_get_info(model, &info) != VNRT_OK) {
    failed("model info");
    goto done;
  }
  vnrt_session_desc sd = {0};
  sd.size = sizeof sd;
  int64_t ctx_len = n_prompt + o.tokens;
  sd.max_context = ctx_len < 256 ? 256 : ctx_len;
  if (sd.max_context > info.max_position_embeddings) sd.max_context = info.max_position_embeddings;
  if (vnrt_session_create(model, &sd, &s) != VNRT_OK) {
    failed("session");
    goto done;
  }
  logits = malloc((size_t)info.vocab_size * sizeof *logits);
  gen = malloc(((size_t)o.tokens + 1) * sizeof *gen);
  if (!logits || !gen) {
    fprintf(stderr, "deepseek: out of memory\n");
    goto done;
  }
  for (int64_t i = 0; i < n_prompt; ++i) {
    if (prompt[i] >= info.vocab_size) {
      fprintf(stderr, "deepseek: prompt id %d is outside the vocabulary (%lld ids)\n",
              (int)prompt[i], (long long)info.vocab_size);
      goto done;
    }
  }
  if (vnrt_session_prefill(s, prompt, n_prompt) != VNRT_OK) {
    failed("prefill");
    goto done;
  }
  for (long t = 0; t < o.tokens; ++t) {
    if (vnrt_session_logits(s, logits, (size_t)info.vocab_size) != VNRT_OK ||
        vnrt_sample(logits, info.vocab_size, NULL, NULL, &gen[t]) != VNRT_OK) {
      failed("sampling");
      goto done;
    }
    if (t + 1 < o.tokens && vnrt_session_decode(s, &gen[t], 1) != VNRT_OK) {
      failed("decode");
      goto done;
    }
  }
  printf("generated:");
  for (long t = 0; t < o.tokens; ++t) printf(" %d", (int)gen[t]);
  printf("\n");
  if (o.stats) {
    vnrt_session_stats st = {0};
    st.size = sizeof st;
    if (vnrt_session_get_stats(s, &st) != VNRT_OK) {
      failed("stats");
      goto done;
    }
    const double mib = 1024.0 * 1024.0;
    fprintf(stderr, "device %s, %d layers, vocab %lld, weights %.1f MiB\n", info.device,
            (int)info.num_layers, (long long)info.vocab_size, (double)st.weight_bytes / mib);
    fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s)\n",
            (long long)st.tokens_prefilled, st.prefill_seconds,
            st.prefill_seconds > 0 ? (double)st.tokens_prefilled / st.prefill_seconds : 0.0);
    fprintf(stderr, "decode: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)st.tokens_decoded,
            st.decode_seconds,
            st.decode_seconds > 0 ? (double)st.tokens_decoded / st.decode_seconds : 0.0);
    fprintf(stderr,
            "decode plan: %d nodes, %d on the CPU (fallback), device %.1f MiB, state %.1f MiB, "
            "%d params streamed\n",
            (int)st.n_nodes, (int)st.n_fallback_nodes, (double)st.device_bytes / mib,
            (double)st.state_bytes / mib, (int)st.n_streamed_params);
  }
  rc = 0;
done:
  free(logits);
  free(gen);
  vnrt_session_destroy(s);
  vnrt_model_close(model);
  vnrt_context_destroy(ctx);
  return rc;
}
