/* vnrt-make-checkpoint: writes a random DeepSeek-V4 checkpoint for a config.json in exactly the
 * real layout and formats (docs/deepseek-v4.md, "Loading"): FP8 weights by the 128x128 recipe,
 * FP4 routed experts by 1x32 groups, BF16/F32/I64 as the real files store them. It uses the
 * model library's config parser and tensor inventory, so what it writes is what the loader
 * checks; values come from f32 master weights drawn deterministically from the seed. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/v4_config.h"
#include "vnrt/io.h"
#include "vnrt/vnrt.h"

static const char kUsage[] =
    "usage: vnrt-make-checkpoint --config CONFIG.json --out DIR [--seed N]\n"
    "                            [--master NAME]...\n"
    "\n"
    "Writes DIR/config.json (a copy), the shards model-0000K-of-0000M.safetensors (shard 1\n"
    "embed.weight, one per decoder layer, one for head/norm/hc_head_*, one per MTP block) and\n"
    "DIR/model.safetensors.index.json (metadata.total_size, weight_map). Values are random\n"
    "(deterministic for a seed, default 1): linears ~ N(0, 1/fan_in) quantized by DeepSeek's\n"
    "recipes, norms near 1, distinct tid2eid rows.\n"
    "  --master NAME  also write the f32 master weight of the FP8/FP4 tensor NAME (before\n"
    "                 quantization) as DIR/master/NAME.npy, for checking the recipe\n"
    "  --help         show this help\n"
    "Exit status: 0 on success, 1 on a failure, 2 on a usage error.\n";

static void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("vnrt-make-checkpoint: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (code == 2) fputs("try 'vnrt-make-checkpoint --help'\n", stderr);
  exit(code);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) fail(1, "out of memory (%zu bytes)", n);
  return p;
}

/* ---- random numbers: one stream per tensor, from the seed and the tensor's name ------------ */

typedef struct rng {
  uint64_t s;
  double spare; /* the polar method's second value */
  bool has_spare;
} rng;

static uint64_t rng_next(rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static rng rng_for(uint64_t seed, const char *name) {
  uint64_t h = 1469598103934665603ull ^ seed; /* FNV-1a over the name */
  for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
  rng r = {h, 0, false};
  rng_next(&r);
  return r;
}

static double rng_uniform(rng *r) { /* (0, 1) */
  return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_normal(rng *r) { /* Marsaglia's polar method: two values per draw */
  if (r->has_spare) {
    r->has_spare = false;
    return r->spare;
  }
  double u, v, q;
  do {
    u = 2.0 * rng_uniform(r) - 1.0;
    v = 2.0 * rng_uniform(r) - 1.0;
    q = u * u + v * v;
  } while (q >= 1.0 || q == 0.0);
  double m = sqrt(-2.0 * log(q) / q);
  r->spare = v * m;
  r->has_spare = true;
  return u * m;
}

/* ---- values ---------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Standard deviation of a linear's master weight [out, in]: 1/sqrt(in) keeps activations O(1);
 * projections that add into the residual stream (wo_b, w2) are halved so the stream grows
 * slowly over the layers. */
static double linear_std(const char *name, int64_t in) {
  double s = 1.0 / sqrt((double)in);
  if (strstr(name, "wo_b.") || strstr(name, ".w2.")) s *= 0.5;
  return s;
}

/* f32 values of a non-quantized tensor (BF16 and F32 ones), n elements. */
static void fill_plain(const vn_v4_config *cfg, const vn_v4_tensor_spec *t, rng *r, float *v,
                       size_t n) {
  const char *name = t->name;
  const int64_t hc = cfg->hc_mult;
  if (ends_with(name, "norm.weight")) { /* every RMSNorm weight: near 1 */
    for (size_t i = 0; i < n; i++) v[i] = (float)(1.0 + 0.1 * rng_normal(r));
  } else if (ends_with(name, "_fn")) { /* mHC mixing: logits ~ N(0, 1) before the scale */
    double s = 1.0 / sqrt((double)t->dims[1]);
    for (size_t i = 0; i < n; i++) v[i] = (float)(s * rng_normal(r));
  } else if (ends_with(name, "_scale")) { /* mHC scales of the pre/post/comb logits */
    for (size_t i = 0; i < n; i++) v[i] = (float)(0.5 + 0.1 * rng_normal(r));
  } else if (ends_with(name, "_base")) {
    /* rows [pre (n), post (n), comb (n x n)]: comb leans to the identity so that Sinkhorn is
     * well-conditioned; hc_head_base is [n]. */
    for (size_t i = 0; i < n; i++) {
      double b = 0.3 * rng_normal(r);
      if (n == (size_t)((2 + hc) * hc) && i >= (size_t)(2 * hc)) {
        size_t j = i - (size_t)(2 * hc);
        if (j / (size_t)hc == j % (size_t)hc) b += 1.0;
      }
      v[i] = (float)b;
    }
  } else if (ends_with(name, "attn_sink")) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(0.5 * rng_normal(r));
  } else if (ends_with(name, ".ape")) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(0.5 * rng_normal(r));
  } else if (ends_with(name, "gate.bias")) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(0.1 * rng_normal(r));
  } else if (strcmp(name, "embed.weight") == 0 || ends_with(name, "engram.embedding.weight")) {
    for (size_t i = 0; i < n; i++) v[i] = (float)rng_normal(r);
  } else { /* BF16 linears: head, gate, compressor wkv/wgate, indexer weights_proj */
    double s = 1.0 / sqrt((double)t->dims[1]);
    for (size_t i = 0; i < n; i++) v[i] = (float)(s * rng_normal(r));
  }
}

/* FP8 (128x128 blocks) or FP4 (1x32 groups) codes and e8m0 scales of master w [out, in]. */
static void quantize(const float *w, int64_t out, int64_t in, bool fp4, uint8_t *codes,
                     uint8_t *scales) {
  if (fp4) {
    const int64_t groups = in / 32;
    memset(codes, 0, (size_t)(out * in / 2));
    for (int64_t r = 0; r < out; r++)
      for (int64_t g = 0; g < groups; g++) {
        const float *x = w + r * in + g * 32;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        uint8_t sc = vnrt_quant_block_scale(VNRT_E2M1, amax);
        scales[r * groups + g] = sc;
        float inv = 1.0f / vnrt_e8m0_to_f32(sc); /* a power of two: exact */
        for (int i = 0; i < 32; i++) {
          int64_t c = g * 32 + i;
          uint8_t nib = vnrt_f32_to_e2m1(x[i] * inv) & 0xF;
          codes[r * (in / 2) + c / 2] |= (uint8_t)(c % 2 ? nib << 4 : nib);
        }
      }
    return;
  }
  const int64_t br = (out + 127) / 128, bc = (in + 127) / 128;
  for (int64_t i = 0; i < br; i++)
    for (int64_t j = 0; j < bc; j++) {
      int64_t r1 = i * 128 + 128 < out ? i * 128 + 128 : out;
      int64_t c1 = j * 128 + 128 < in ? j * 128 + 128 : in;
      float amax = 0;
      for (int64_t r = i * 128; r < r1; r++)
        for (int64_t c = j * 128; c < c1; c++) amax = fmaxf(amax, fabsf(w[r * in + c]));
      uint8_t sc = vnrt_quant_block_scale(VNRT_E4M3, amax);
      scales[i * bc + j] = sc;
      float inv = 1.0f / vnrt_e8m0_to_f32(sc);
      for (int64_t r = i * 128; r < r1; r++)
        for (int64_t c = j * 128; c < c1; c++)
          codes[r * in + c] = vnrt_f32_to_e4m3(w[r * in + c] * inv);
    }
}

/* codes x scale as BF16 [out, in]: exact, since an e4m3 or e2m1 value times a power of two
 * has at most 4 significant bits and stays in BF16's exponent range. */
static void dequantize(const uint8_t *codes, const uint8_t *scales, int64_t out, int64_t in,
                       bool fp4, uint8_t *bf16) {
  const int64_t bc = (in + 127) / 128;
  for (int64_t r = 0; r < out; r++)
    for (int64_t c = 0; c < in; c++) {
      float v;
      if (fp4) {
        uint8_t byte = codes[r * (in / 2) + c / 2];
        v = vnrt_e2m1_to_f32(c % 2 ? byte >> 4 : byte) *
            vnrt_e8m0_to_f32(scales[r * (in / 32) + c / 32]);
      } else {
        v = vnrt_e4m3_to_f32(codes[r * in + c]) *
            vnrt_e8m0_to_f32(scales[(r / 128) * bc + c / 128]);
      }
      uint16_t h = vnrt_f32_to_bf16(v);
      bf16[2 * (r * in + c)] = (uint8_t)h;
      bf16[2 * (r * in + c) + 1] = (uint8_t)(h >> 8);
    }
}

/* ---- shards ---------------------------------------------------------------------------- */

typedef struct specs {
  vn_v4_tensor_spec *v;
  size_t n, cap;
} specs;

static int collect(void *user, const vn_v4_tensor_spec *t) {
  specs *s = user;
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    if (!s->v) fail(1, "out of memory");
  }
  s->v[s->n++] = *t;
  return 0;
}

typedef struct gen {
  vnrt_context *ctx;
  const vn_v4_config *cfg;
  const char *out_dir;
  uint64_t seed;
  const char **masters;
  int n_masters;
} gen;

static void check(gen *g, vnrt_status s, const char *what) {
  if (s != VNRT_OK) fail(1, "%s: %s", what, vnrt_context_last_error(g->ctx));
}

static bool wants_master(const gen *g, const char *name) {
  for (int i = 0; i < g->n_masters; i++)
    if (strcmp(g->masters[i], name) == 0) return true;
  return false;
}

/* Writes tensors [begin, end) of sp as one shard file. */
static void write_shard(gen *g, const specs *sp, size_t begin, size_t end, const char *path) {
  const int32_t count = (int32_t)(end - begin);
  const char **names = xmalloc(sizeof(char *) * (size_t)count);
  const char **dtypes = xmalloc(sizeof(char *) * (size_t)count);
  int32_t *ranks = xmalloc(sizeof(int32_t) * (size_t)count);
  const int64_t **dims = xmalloc(sizeof(int64_t *) * (size_t)count);
  for (int32_t i = 0; i < count; i++) {
    const vn_v4_tensor_spec *t = &sp->v[begin + (size_t)i];
    names[i] = t->name;
    dtypes[i] = t->dtype;
    ranks[i] = t->rank;
    dims[i] = t->dims;
  }
  vnrt_safetensors_writer *w = NULL;
  static const char *const kMeta[] = {"format", "pt"};
  check(g,
        vnrt_safetensors_writer_open_stored(g->ctx, path, names, dtypes, ranks, dims, count, kMeta,
                                            1, &w),
        path);
  uint8_t *pending_scale = NULL; /* the scale of the quantized weight just written */
  size_t pending_bytes = 0;
  for (size_t i = begin; i < end; i++) {
    const vn_v4_tensor_spec *t = &sp->v[i];
    rng r = rng_for(g->seed, t->name);
    const size_t bytes = (size_t)t->bytes;
    if (t->storage == VN_V4_STORE_SCALE) {
      if (!pending_scale || pending_bytes != bytes)
        fail(1, "%s: scale without its weight", t->name);
      check(g, vnrt_safetensors_writer_put(w, pending_scale, bytes), path);
      free(pending_scale);
      pending_scale = NULL;
      continue;
    }
    if (t->storage == VN_V4_STORE_FP8 || t->storage == VN_V4_STORE_FP4 || t->dequantized) {
      const bool fp4 = t->storage == VN_V4_STORE_FP4 || t->dequantized == 4;
      const int64_t out = t->dims[0], in = t->logical_in;
      float *m = xmalloc(sizeof(float) * (size_t)(out * in));
      double s = linear_std(t->name, in);
      for (int64_t k = 0; k < out * in; k++) m[k] = (float)(s * rng_normal(&r));
      if (wants_master(g, t->name)) {
        char mpath[4096];
        snprintf(mpath, sizeof mpath, "%s/master/%s.npy", g->out_dir, t->name);
        vnrt_tensor_type mt = {VNRT_F32, 2, {out, in}};
        check(g, vnrt_npy_write(g->ctx, mpath, &mt, m), mpath);
      }
      pending_bytes =
          fp4 ? (size_t)(out * (in / 32)) : (size_t)(((out + 127) / 128) * ((in + 127) / 128));
      pending_scale = xmalloc(pending_bytes);
      uint8_t *codes = xmalloc(fp4 ? (size_t)(out * in / 2) : (size_t)(out * in));
      quantize(m, out, in, fp4, codes, pending_scale);
      if (t->dequantized) { /* a dequantized checkpoint: the same values, exactly, in BF16 */
        uint8_t *buf = xmalloc(bytes);
        dequantize(codes, pending_scale, out, in, fp4, buf);
        free(pending_scale);
        pending_scale = NULL;
        free(codes);
        codes = buf;
      }
      free(m);
      check(g, vnrt_safetensors_writer_put(w, codes, bytes), path);
      free(codes);
      continue;
    }
    uint8_t *buf = xmalloc(bytes);
    const size_t n = (size_t)(t->dims[0] * (t->rank == 2 ? t->dims[1] : 1));
    if (t->storage == VN_V4_STORE_I64) { /* tid2eid: k distinct experts per token */
      const int64_t k = t->dims[1], E = g->cfg->n_routed_experts;
      int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)E);
      for (int64_t row = 0; row < t->dims[0]; row++) {
        for (int64_t e = 0; e < E; e++) perm[e] = (int32_t)e;
        for (int64_t j = 0; j < k; j++) { /* partial Fisher-Yates */
          int64_t pick = j + (int64_t)(rng_next(&r) % (uint64_t)(E - j));
          int32_t tmp = perm[j];
          perm[j] = perm[pick];
          perm[pick] = tmp;
          uint64_t v = (uint64_t)perm[j];
          for (int b = 0; b < 8; b++) buf[(row * k + j) * 8 + b] = (uint8_t)(v >> (8 * b));
        }
      }
      free(perm);
    } else {
      float *v = xmalloc(sizeof(float) * n);
      fill_plain(g->cfg, t, &r, v, n);
      if (t->storage == VN_V4_STORE_BF16) {
        for (size_t k = 0; k < n; k++) {
          uint16_t h = vnrt_f32_to_bf16(v[k]);
          buf[2 * k] = (uint8_t)h;
          buf[2 * k + 1] = (uint8_t)(h >> 8);
        }
      } else {
        memcpy(buf, v, n * 4); /* F32, little-endian hosts */
      }
      free(v);
    }
    check(g, vnrt_safetensors_writer_put(w, buf, bytes), path);
    free(buf);
  }
  free(pending_scale);
  check(g, vnrt_safetensors_writer_close(w), path);
  free(names);
  free(dtypes);
  free(ranks);
  free(dims);
}

static void json_string(FILE *fp, const char *s) {
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', fp);
    fputc(*s, fp);
  }
  fputc('"', fp);
}

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  if (!in) fail(1, "%s: cannot open: %s", from, strerror(errno));
  FILE *out = fopen(to, "wb");
  if (!out) fail(1, "%s: cannot create: %s", to, strerror(errno));
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n) fail(1, "%s: write failed", to);
  fclose(in);
  if (fclose(out) != 0) fail(1, "%s: write failed", to);
}

static void make_dir(const char *path) {
  if (mkdir(path, 0777) != 0 && errno != EEXIST)
    fail(1, "%s: cannot create the directory: %s", path, strerror(errno));
}

int main(int argc, char **argv) {
  const char *config = NULL, *out_dir = NULL;
  uint64_t seed = 1;
  const char **masters = xmalloc(sizeof(char *) * (size_t)argc);
  int n_masters = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) fail(2, "%s needs a value or is unknown", a);
    if (strcmp(a, "--config") == 0) {
      config = argv[++i];
    } else if (strcmp(a, "--out") == 0) {
      out_dir = argv[++i];
    } else if (strcmp(a, "--seed") == 0) {
      char *end;
      errno = 0;
      seed = strtoull(argv[++i], &end, 10);
      if (errno || *end || !argv[i][0] || argv[i][0] == '-')
        fail(2, "--seed needs a non-negative integer, not '%s'", argv[i]);
    } else if (strcmp(a, "--master") == 0) {
      masters[n_masters++] = argv[++i];
    } else {
      fail(2, "unknown option '%s'", a);
    }
  }
  if (!config || !out_dir) fail(2, "--config and --out are required");

  vn_v4_config cfg;
  char err[1024];
  if (vn_v4_config_load(config, &cfg, err, sizeof err) != VNRT_OK) fail(1, "%s", err);
  vnrt_context *ctx = NULL;
  vnrt_context_desc desc;
  memset(&desc, 0, sizeof desc);
  if (vnrt_context_create(&desc, &ctx) != VNRT_OK) fail(1, "cannot create a vnrt context");
  gen g = {ctx, &cfg, out_dir, seed, masters, n_masters};

  specs sp = {0};
  vn_v4_for_each_tensor(&cfg, VN_V4_LIST_MODEL | VN_V4_LIST_MTP, collect, &sp);
  for (int i = 0; i < n_masters; i++) {
    bool found = false;
    for (size_t k = 0; k < sp.n && !found; k++)
      found = strcmp(sp.v[k].name, masters[i]) == 0 &&
              (sp.v[k].storage == VN_V4_STORE_FP8 || sp.v[k].storage == VN_V4_STORE_FP4 ||
               sp.v[k].dequantized);
    if (!found) fail(2, "--master %s: no FP8 or FP4 weight of that name", masters[i]);
  }

  make_dir(out_dir);
  if (n_masters) {
    char mdir[4096];
    snprintf(mdir, sizeof mdir, "%s/master", out_dir);
    make_dir(mdir);
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", out_dir);
  copy_file(config, path);

  /* Shards: embed alone, one per layer, the head group, one per MTP block. */
  const int32_t L = cfg.num_hidden_layers, shards = 2 + L + cfg.num_nextn_predict_layers;
  int32_t *shard_of = xmalloc(sizeof(int32_t) * sp.n);
  for (size_t k = 0; k < sp.n; k++) {
    const vn_v4_tensor_spec *t = &sp.v[k];
    shard_of[k] = strcmp(t->name, "embed.weight") == 0 ? 0
                  : t->layer >= L                      ? 2 + t->layer
                  : t->layer >= 0                      ? 1 + t->layer
                                                       : 1 + L;
  }
  uint64_t total = 0;
  for (int32_t s = 0; s < shards; s++) {
    /* The inventory lists each shard's tensors contiguously. */
    size_t begin = 0;
    while (begin < sp.n && shard_of[begin] != s) begin++;
    size_t end = begin;
    while (end < sp.n && shard_of[end] == s) end++;
    for (size_t k = end; k < sp.n; k++)
      if (shard_of[k] == s) fail(1, "internal: shard %d is not contiguous", (int)s);
    snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", out_dir, (int)s + 1,
             (int)shards);
    write_shard(&g, &sp, begin, end, path);
    for (size_t k = begin; k < end; k++) total += sp.v[k].bytes;
  }

  snprintf(path, sizeof path, "%s/model.safetensors.index.json", out_dir);
  FILE *fp = fopen(path, "w");
  if (!fp) fail(1, "%s: cannot create: %s", path, strerror(errno));
  fprintf(fp, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
          (unsigned long long)total);
  for (size_t k = 0; k < sp.n; k++) {
    char file[64];
    snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", (int)shard_of[k] + 1,
             (int)shards);
    fputs("    ", fp);
    json_string(fp, sp.v[k].name);
    fputs(": ", fp);
    json_string(fp, file);
    fputs(k + 1 < sp.n ? ",\n" : "\n", fp);
  }
  fputs("  }\n}\n", fp);
  if (fclose(fp) != 0) fail(1, "%s: write failed", path);
  printf("%s: %d shards, %zu tensors, %llu bytes\n", out_dir, (int)shards, sp.n,
         (unsigned long long)total);
  free(shard_of);
  free(sp.v);
  free(masters);
  vnrt_context_destroy(ctx);
  return 0;
}
