/* vnrt-quantize: converts the float weights (rank >= 2) of a safetensors file to FP8 (e4m3,
 * 128x128 blocks) or FP4 (e2m1, 1x32 groups) over the last two dims, with power-of-two e8m0
 * scales, DeepSeek's recipe; one run may give each tensor its own format (docs/tools.md,
 * "vnrt-quantize"; docs/ops.md, "Quantized weights"). */
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vnrt/io.h"
#include "vnrt/vnrt.h"

static const char kUsage[] =
    "usage: vnrt-quantize --format fp8|fp4 [--match REGEX] [--format F [--match REGEX]]...\n"
    "                     IN.safetensors OUT.safetensors\n"
    "\n"
    "Converts f32/f16/bf16 tensors of rank >= 2 to quantized codes plus an e8m0 scale tensor.\n"
    "The block covers the last two dims (R, C); leading dims (packed experts [E, R, C]) are\n"
    "kept in the scale:\n"
    "  fp8  e4m3 codes, one scale per 128x128 block: scale [..., ceil(R/128), ceil(C/128)]\n"
    "  fp4  e2m1 codes (stored as I8, two per byte), one scale per 1x32 group: scale\n"
    "       [..., R, ceil(C/32)]; a tensor whose last dim is odd is copied unchanged, with a note\n"
    "Each --format starts a rule; the --match after it (for the first rule, also one before it)\n"
    "is the rule's REGEX (POSIX extended, searched in the tensor name; default '\\.weight$').\n"
    "A tensor takes the format of the first rule whose REGEX it matches, e.g. FP8 attention and\n"
    "FP4 routed experts in one run:\n"
    "  --format fp8 --match 'self_attn' --format fp4 --match 'mlp\\.experts\\.'\n"
    "Every rule must match a tensor that no earlier rule took.\n"
    "Per block: s = 2^ceil(log2(max(amax, floor) / fmt_max)), code = round-to-nearest-even(W/s).\n"
    "A tensor X.weight becomes X.weight (codes) and X.scale; another name N becomes N and\n"
    "N.scale. Every other tensor and the __metadata__ are copied unchanged.\n"
    "\n"
    "  --help   show this help\n"
    "Exit status: 0 on success, 1 on a failure, 2 on a usage error.\n";

static void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("vnrt-quantize: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (code == 2) fputs("try 'vnrt-quantize --help'\n", stderr);
  exit(code);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) fail(1, "out of memory (%zu bytes)", n);
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

static void format_type(char *buf, size_t cap, const vnrt_tensor_type *t) {
  size_t n = (size_t)snprintf(buf, cap, "%s[", vnrt_dtype_name(t->dtype));
  for (int32_t i = 0; i < t->rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Element i of a float tensor in a (possibly unaligned) mapping. */
static float load(const uint8_t *p, vnrt_dtype dtype, size_t i) {
  if (dtype == VNRT_F32) {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, p + 2 * i, 2);
  return dtype == VNRT_F16 ? vnrt_f16_to_f32(h) : vnrt_bf16_to_f32(h);
}

typedef struct quant_format {
  const char *name;
  vnrt_dtype dtype;
  int64_t block_rows, block_cols;
} quant_format;

static const quant_format kFp8 = {"fp8", VNRT_E4M3, 128, 128};
static const quant_format kFp4 = {"fp4", VNRT_E2M1, 1, 32};

/* One output tensor: a copy of input tensor `src`, or its codes or scale in format `fmt`. */
enum { OUT_COPY, OUT_CODES, OUT_SCALE };
typedef struct out_tensor {
  char *name;
  vnrt_tensor_type type;
  int kind;
  int32_t src; /* index of the input tensor */
  const quant_format *fmt;
} out_tensor;

/* A --format rule: tensors whose names match `match` (and no earlier rule's) take `fmt`. */
typedef struct rule {
  const quant_format *fmt;
  const char *match; /* NULL until given: the default */
  regex_t re;
  int32_t n_matched, n_converted;
} rule;

/* Quantizes the float tensor `w` [..., R, C] into codes (e4m3 bytes, or packed e2m1) and
 * scales [..., ceil(R/bR), ceil(C/bC)], block by block over the last two dims of each leading
 * index. A value that is not finite fails it: returns 0 with a message in err. */
static int quantize(const char *name, const uint8_t *w, const vnrt_tensor_type *type,
                    const quant_format *fmt, uint8_t *codes, uint8_t *scales, char *err,
                    size_t err_size) {
  const int32_t rank = type->rank;
  const int64_t R = type->dims[rank - 2], C = type->dims[rank - 1];
  const int64_t bR = fmt->block_rows, bC = fmt->block_cols;
  const int64_t nbr = (R + bR - 1) / bR, nbc = (C + bC - 1) / bC;
  int64_t lead = 1;
  for (int32_t d = 0; d < rank - 2; d++) lead *= type->dims[d];
  for (int64_t m = 0; m < lead; m++) {
    const int64_t base = m * R * C; /* element index of the matrix's first value */
    for (int64_t br = 0; br < nbr; br++) {
      for (int64_t bc = 0; bc < nbc; bc++) {
        const int64_t r1 = br * bR + bR < R ? br * bR + bR : R;
        const int64_t c1 = bc * bC + bC < C ? bc * bC + bC : C;
        float amax = 0.0f;
        for (int64_t r = br * bR; r < r1; r++) {
          for (int64_t c = bc * bC; c < c1; c++) {
            const float v = load(w, type->dtype, (size_t)(base + r * C + c));
            if (!isfinite(v)) {
              if (rank == 2)
                snprintf(err, err_size,
                         "tensor '%s' has a non-finite value (%g) at [%lld, %lld]: cannot "
                         "quantize",
                         name, (double)v, (long long)r, (long long)c);
              else
                snprintf(err, err_size,
                         "tensor '%s' has a non-finite value (%g) at matrix %lld (of the leading "
                         "dims), [%lld, %lld]: cannot quantize",
                         name, (double)v, (long long)m, (long long)r, (long long)c);
              return 0;
            }
            amax = fmaxf(amax, fabsf(v));
          }
        }
        const uint8_t sc = vnrt_quant_block_scale(fmt->dtype, amax);
        const float s = vnrt_e8m0_to_f32(sc);
        scales[(m * nbr + br) * nbc + bc] = sc;
        for (int64_t r = br * bR; r < r1; r++) {
          for (int64_t c = bc * bC; c < c1; c++) {
            const size_t i = (size_t)(base + r * C + c);
            const float x = load(w, type->dtype, i) / s; /* exact: s is a power of two */
            if (fmt->dtype == VNRT_E4M3) {
              codes[i] = vnrt_f32_to_e4m3(x);
            } else {
              /* Two codes per byte along the row (C is even, so rows start on a byte): the
               * even column in the low nibble. */
              const uint8_t q = vnrt_f32_to_e2m1(x);
              uint8_t *b = &codes[i / 2];
              *b = (i % 2) ? (uint8_t)((*b & 0x0Fu) | (q << 4)) : (uint8_t)((*b & 0xF0u) | q);
            }
          }
        }
      }
    }
  }
  return 1;
}

static int is_float(vnrt_dtype dtype) {
  return dtype == VNRT_F32 || dtype == VNRT_F16 || dtype == VNRT_BF16;
}

static void quiet_log(void *user, vnrt_log_level level, const char *message) {
  (void)user;
  (void)level;
  (void)message;
}

/* Whether a and b name the same existing file. */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int main(int argc, char **argv) {
  rule *rules = xmalloc(sizeof(rule) * (size_t)argc);
  int n_rules = 0;
  const char *match_before = NULL; /* a --match before the first --format */
  const char *in_path = NULL, *out_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else if (strcmp(a, "--format") == 0) {
      if (i + 1 >= argc) fail(2, "--format needs fp8 or fp4");
      const char *f = argv[++i];
      const quant_format *fmt = NULL;
      if (strcmp(f, "fp8") == 0)
        fmt = &kFp8;
      else if (strcmp(f, "fp4") == 0)
        fmt = &kFp4;
      else
        fail(2, "--format %s: expected fp8 or fp4", f);
      memset(&rules[n_rules], 0, sizeof rules[n_rules]);
      rules[n_rules].fmt = fmt;
      rules[n_rules].match = n_rules == 0 ? match_before : NULL;
      n_rules++;
    } else if (strcmp(a, "--match") == 0) {
      if (i + 1 >= argc) fail(2, "--match needs a REGEX");
      const char *m = argv[++i];
      if (n_rules == 0 && !match_before)
        match_before = m;
      else if (n_rules > 0 && !rules[n_rules - 1].match)
        rules[n_rules - 1].match = m;
      else
        fail(2, "--match '%s' has no --format of its own (give each --match after its --format)",
             m);
    } else if (a[0] == '-' && a[1] != '\0') {
      fail(2, "unknown option '%s'", a);
    } else if (!in_path) {
      in_path = a;
    } else if (!out_path) {
      out_path = a;
    } else {
      fail(2, "unexpected argument '%s' (IN and OUT are already given)", a);
    }
  }
  if (n_rules == 0) fail(2, "--format fp8|fp4 is required");
  if (!in_path || !out_path) fail(2, "IN.safetensors and OUT.safetensors are required");
  for (int k = 0; k < n_rules; k++) {
    rule *r = &rules[k];
    if (!r->match) r->match = "\\.weight$";
    int rc = regcomp(&r->re, r->match, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char msg[256];
      regerror(rc, &r->re, msg, sizeof msg);
      fail(2, "--match '%s': bad regular expression: %s", r->match, msg);
    }
  }
  if (same_file(in_path, out_path))
    fail(1, "%s: OUT is the input file; write the converted file elsewhere", out_path);

  vnrt_context_desc cdesc = {0};
  cdesc.log_fn = quiet_log; /* failures come back as statuses, reported once by fail() */
  cdesc.log_level = VNRT_LOG_ERROR;
  cdesc.no_plugins = 1;
  vnrt_context *ctx = NULL;
  if (vnrt_context_create(&cdesc, &ctx) != VNRT_OK) fail(1, "cannot create a vnrt context");
  vnrt_safetensors *in = NULL;
  if (vnrt_safetensors_open(ctx, in_path, &in) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));

  /* The output's tensors, in the input's order with each scale after its codes. */
  const int32_t n_in = vnrt_safetensors_count(in);
  out_tensor *outs = xmalloc(sizeof(out_tensor) * (size_t)(2 * n_in));
  int32_t n_out = 0, n_converted = 0;
  for (int32_t i = 0; i < n_in; i++) {
    const char *name = vnrt_safetensors_name(in, i);
    vnrt_tensor_type t;
    if (vnrt_safetensors_find(in, name, &t, NULL, NULL) != VNRT_OK)
      fail(1, "cannot copy tensor '%s': %s", name, vnrt_context_last_error(ctx));
    rule *r = NULL; /* the first rule that matches decides */
    for (int k = 0; k < n_rules && !r; k++)
      if (regexec(&rules[k].re, name, 0, NULL, 0) == 0) r = &rules[k];
    int convert = 0;
    if (r) {
      r->n_matched++;
      char tbuf[160];
      format_type(tbuf, sizeof tbuf, &t);
      if (!is_float(t.dtype) || t.rank < 2)
        fprintf(stderr,
                "vnrt-quantize: note: '%s' matches but is %s, not an f32/f16/bf16 tensor of rank "
                ">= 2: copied unchanged\n",
                name, tbuf);
      else if (r->fmt->dtype == VNRT_E2M1 && t.dims[t.rank - 1] % 2 != 0)
        fprintf(stderr,
                "vnrt-quantize: note: '%s' is %s: fp4 packs two codes per byte and needs an even "
                "last dim: copied unchanged\n",
                name, tbuf);
      else
        convert = 1;
    }
    if (!convert) {
      outs[n_out++] = (out_tensor){xstrdup(name), t, OUT_COPY, i, NULL};
      continue;
    }
    r->n_converted++;
    n_converted++;
    const quant_format *fmt = r->fmt;
    vnrt_tensor_type codes = t, scale = t;
    codes.dtype = fmt->dtype;
    scale.dtype = VNRT_E8M0;
    scale.dims[t.rank - 2] = (t.dims[t.rank - 2] + fmt->block_rows - 1) / fmt->block_rows;
    scale.dims[t.rank - 1] = (t.dims[t.rank - 1] + fmt->block_cols - 1) / fmt->block_cols;
    /* X.weight -> X.scale, another name N -> N.scale (as DeepSeek-V4 checkpoints name them). */
    size_t len = strlen(name);
    const size_t suffix = strlen(".weight");
    size_t stem = len > suffix && strcmp(name + len - suffix, ".weight") == 0 ? len - suffix : len;
    char *scale_name = xmalloc(stem + sizeof ".scale");
    memcpy(scale_name, name, stem);
    memcpy(scale_name + stem, ".scale", sizeof ".scale");
    outs[n_out++] = (out_tensor){xstrdup(name), codes, OUT_CODES, i, fmt};
    outs[n_out++] = (out_tensor){scale_name, scale, OUT_SCALE, i, fmt};
  }
  /* Each rule must convert something: a rule that does not is a mistyped REGEX, or one that
   * an earlier rule shadows. */
  for (int k = 0; k < n_rules; k++) {
    const rule *r = &rules[k];
    if (r->n_matched == 0)
      fail(1, "%s: no tensor name matches '%s' (of %d tensors%s); nothing to convert to %s",
           in_path, r->match, (int)n_in, k ? ", less those an earlier --match took" : "",
           r->fmt->name);
    if (r->n_converted == 0)
      fail(1, "%s: %d tensors match '%s' but none can be converted to %s (see the notes above)",
           in_path, (int)r->n_matched, r->match, r->fmt->name);
  }
  for (int k = 0; k < n_rules; k++) regfree(&rules[k].re);
  /* A scale's name taken by another tensor: the input is probably quantized already. */
  for (int32_t i = 0; i < n_out; i++)
    for (int32_t j = 0; j < i; j++)
      if (strcmp(outs[i].name, outs[j].name) == 0) {
        const out_tensor *s = outs[i].kind == OUT_SCALE ? &outs[i] : &outs[j];
        fail(1,
             "%s: the scale of '%s' would be named '%s', but the file already has a tensor of "
             "that name (is it quantized already? narrow --match)",
             in_path, vnrt_safetensors_name(in, s->src), s->name);
      }

  const int32_t n_meta = vnrt_safetensors_metadata_count(in);
  const char **meta = xmalloc(sizeof(char *) * (size_t)(2 * n_meta));
  for (int32_t i = 0; i < n_meta; i++) {
    meta[2 * i] = vnrt_safetensors_metadata_key(in, i);
    meta[2 * i + 1] = vnrt_safetensors_metadata(in, meta[2 * i]);
  }
  const char **names = xmalloc(sizeof(char *) * (size_t)n_out);
  vnrt_tensor_type *types = xmalloc(sizeof(vnrt_tensor_type) * (size_t)n_out);
  for (int32_t i = 0; i < n_out; i++) {
    names[i] = outs[i].name;
    types[i] = outs[i].type;
  }
  vnrt_safetensors_writer *w = NULL;
  if (vnrt_safetensors_writer_open(ctx, out_path, names, types, n_out, meta, n_meta, &w) != VNRT_OK)
    fail(1, "%s", vnrt_context_last_error(ctx));

  /* One tensor at a time: only the codes and scale being made are held in memory. */
  uint64_t bytes_before = 0, bytes_after = 0;
  for (int32_t i = 0; i < n_out; i++) {
    const out_tensor *o = &outs[i];
    const char *src_name = vnrt_safetensors_name(in, o->src);
    vnrt_tensor_type t;
    const void *data = NULL;
    size_t bytes = 0;
    vnrt_status s = vnrt_safetensors_find(in, src_name, &t, &data, &bytes);
    if (s == VNRT_OK && o->kind == OUT_COPY) {
      s = vnrt_safetensors_writer_put(w, data, bytes);
    } else if (s == VNRT_OK) {
      /* codes, then its scale as the next output */
      const out_tensor *sc = &outs[i + 1];
      size_t code_bytes = vnrt_tensor_type_bytes(&o->type);
      size_t scale_bytes = vnrt_tensor_type_bytes(&sc->type);
      uint8_t *codes = xmalloc(code_bytes), *scales = xmalloc(scale_bytes);
      memset(codes, 0, code_bytes);
      char err[256];
      if (!quantize(src_name, data, &t, o->fmt, codes, scales, err, sizeof err)) {
        vnrt_safetensors_writer_close(w); /* removes the incomplete file */
        fail(1, "%s: %s", in_path, err);
      }
      s = vnrt_safetensors_writer_put(w, codes, code_bytes);
      if (s == VNRT_OK) s = vnrt_safetensors_writer_put(w, scales, scale_bytes);
      free(codes);
      free(scales);
      bytes_before += bytes;
      bytes_after += code_bytes + scale_bytes;
      i++;
    }
    if (s != VNRT_OK) {
      fprintf(stderr, "vnrt-quantize: %s\n", vnrt_context_last_error(ctx));
      vnrt_safetensors_writer_close(w);
      exit(1);
    }
  }
  if (vnrt_safetensors_writer_close(w) != VNRT_OK) fail(1, "%s", vnrt_context_last_error(ctx));
  /* e.g. "8 tensors to fp8, 4 to fp4": the formats in the order the rules first name them */
  char summary[128] = "";
  size_t len = 0;
  for (int k = 0; k < n_rules; k++) {
    int first = 1, count = 0;
    for (int j = 0; j < n_rules; j++) {
      if (rules[j].fmt != rules[k].fmt) continue;
      first &= j >= k;
      count += rules[j].n_converted;
    }
    if (first && len < sizeof summary)
      len += (size_t)snprintf(summary + len, sizeof summary - len, "%s%d%s to %s", len ? ", " : "",
                              count, len ? "" : " tensors", rules[k].fmt->name);
  }
  printf("%s: %s (%llu -> %llu bytes), %d copied\n", out_path, summary,
         (unsigned long long)bytes_before, (unsigned long long)bytes_after,
         (int)(n_in - n_converted));

  for (int32_t i = 0; i < n_out; i++) free(outs[i].name);
  free(outs);
  free(rules);
  free(names);
  free(types);
  free(meta);
  vnrt_safetensors_close(in);
  vnrt_context_destroy(ctx);
  return 0;
}
