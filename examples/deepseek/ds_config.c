/* ds_config: a strict reader for the model's JSON configuration (one object of numbers,
 * strings, number lists and the weight_format object) and the checks and derived values of
 * ds_config.h. */
#include "ds_config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failf(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t err_size, const char *fmt, ...) {
  if (err && err_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* ---- The keys ------------------------------------------------------------------------- */

typedef enum key_kind {
  KEY_INT,     /* an integral number into an int64_t */
  KEY_INT32,   /* an integral number into an int32_t */
  KEY_U64,     /* a non-negative integral number into a uint64_t */
  KEY_FLOAT,   /* a number into a double */
  KEY_SCORE,   /* "sqrtsoftplus" | "sigmoid" | "softmax" */
  KEY_DTYPE,   /* "bf16" | "f16" | "f32" */
  KEY_LAYERS,  /* a list of integral numbers into engram_layer[] / n_engram */
  KEY_TEXT,    /* any string, kept only for the reader (model_type, description) */
  KEY_WFORMAT, /* {"attention" | "shared" | "experts": "fp8" | "fp4" | "none"} */
} key_kind;

typedef struct key_spec {
  const char *key;
  key_kind kind;
  size_t offset;
  int required;
} key_spec;

#define KEY(name, kind, field, req) \
  { name, kind, offsetof(ds_config, field), req }
static const key_spec k_keys[] = {
    KEY("hidden_size", KEY_INT, hidden, 1),
    KEY("num_hidden_layers", KEY_INT, layers, 1),
    KEY("vocab_size", KEY_INT, vocab, 1),
    KEY("num_attention_heads", KEY_INT, heads, 1),
    KEY("head_dim", KEY_INT, head_dim, 1),
    KEY("qk_rope_head_dim", KEY_INT, rope_dim, 1),
    KEY("rope_theta", KEY_FLOAT, rope_theta, 0),
    KEY("sliding_window", KEY_INT, window, 1),
    KEY("max_position_embeddings", KEY_INT, max_seq, 1),
    KEY("hc_mult", KEY_INT, hc_mult, 0),
    KEY("hc_sinkhorn_iters", KEY_INT, hc_iters, 0),
    KEY("hc_eps", KEY_FLOAT, hc_eps, 0),
    KEY("rms_norm_eps", KEY_FLOAT, norm_eps, 0),
    KEY("n_routed_experts", KEY_INT, experts, 1),
    KEY("num_experts_per_tok", KEY_INT, top_k, 1),
    KEY("moe_intermediate_size", KEY_INT, expert_ffn, 1),
    KEY("n_shared_experts", KEY_INT, shared, 0),
    KEY("routed_scaling_factor", KEY_FLOAT, route_scale, 0),
    KEY("scoring_func", KEY_SCORE, score, 0),
    KEY("swiglu_limit", KEY_FLOAT, swiglu_limit, 0),
    KEY("num_hash_layers", KEY_INT, hash_layers, 0),
    KEY("engram_layer_ids", KEY_LAYERS, engram_layer, 0),
    KEY("engram_max_ngram_size", KEY_INT, ngram, 0),
    KEY("engram_n_head_per_ngram", KEY_INT, ngram_heads, 0),
    KEY("engram_head_dim", KEY_INT, engram_dim, 0),
    KEY("engram_vocab_size", KEY_INT, engram_rows, 0),
    KEY("engram_kernel_size", KEY_INT, conv_kernel, 0),
    KEY("engram_pad_id", KEY_INT32, pad_id, 0),
    KEY("engram_seed", KEY_U64, engram_seed, 0),
    KEY("weight_dtype", KEY_DTYPE, weight_dtype, 0),
    KEY("init_seed", KEY_U64, init_seed, 0),
    KEY("weight_format", KEY_WFORMAT, weight_format, 0),
    {"model_type", KEY_TEXT, 0, 0},
    {"description", KEY_TEXT, 0, 0},
};
#define N_KEYS (sizeof k_keys / sizeof k_keys[0])

static void set_defaults(ds_config *c) {
  memset(c, 0, sizeof *c);
  c->rope_theta = 10000.0;
  c->hc_mult = 4;
  c->hc_iters = 20;
  c->hc_eps = 1e-6;
  c->norm_eps = 1e-6;
  c->shared = 1;
  c->route_scale = 1.5;
  c->score = DS_SCORE_SQRT_SOFTPLUS;
  c->swiglu_limit = 10.0;
  c->ngram = 3;
  c->ngram_heads = 8;
  c->engram_dim = 32;
  c->engram_rows = 1009;
  c->conv_kernel = 4;
  c->weight_dtype = VNRT_BF16;
}

/* ---- A strict JSON reader ---------------------------------------------------------------- */

typedef struct reader {
  const char *s;
  size_t n, i;
  const char *name;
  char *err;
  size_t err_size;
} reader;

static int rfail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rfail(reader *r, const char *fmt, ...) {
  int line = 1, col = 1;
  for (size_t k = 0; k < r->i && k < r->n; ++k) {
    if (r->s[k] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return failf(r->err, r->err_size, "%s:%d:%d: %s", r->name, line, col, msg);
}

static void skip_ws(reader *r) {
  while (r->i < r->n &&
         (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' || r->s[r->i] == '\r')) {
    ++r->i;
  }
}

static int peek(reader *r) { return r->i < r->n ? (unsigned char)r->s[r->i] : -1; }

/* A string without escapes other than \" \\ \/ (config values never need more). */
static int read_string(reader *r, char *out, size_t out_size) {
  if (peek(r) != '"') return rfail(r, "expected a string");
  ++r->i;
  size_t len = 0;
  for (;;) {
    int c = peek(r);
    if (c < 0) return rfail(r, "unterminated string");
    if (c == '"') break;
    if (c < 0x20) return rfail(r, "control character in a string");
    if (c == '\\') {
      ++r->i;
      c = peek(r);
      if (c != '"' && c != '\\' && c != '/') {
        return rfail(r, "unsupported escape in a string (only \\\" \\\\ \\/)");
      }
    }
    if (len + 1 >= out_size) return rfail(r, "string longer than %zu bytes", out_size - 1);
    out[len++] = (char)c;
    ++r->i;
  }
  ++r->i;
  out[len] = '\0';
  return 0;
}

/* A JSON number (the grammar of RFC 8259, checked before strtod sees it). */
static int read_number(reader *r, double *out) {
  size_t start = r->i;
  if (peek(r) == '-') ++r->i;
  if (peek(r) == '0') {
    ++r->i;
  } else if (peek(r) >= '1' && peek(r) <= '9') {
    while (peek(r) >= '0' && peek(r) <= '9') ++r->i;
  } else {
    return rfail(r, "expected a value");
  }
  if (peek(r) == '.') {
    ++r->i;
    if (!(peek(r) >= '0' && peek(r) <= '9')) return rfail(r, "expected a digit after '.'");
    while (peek(r) >= '0' && peek(r) <= '9') ++r->i;
  }
  if (peek(r) == 'e' || peek(r) == 'E') {
    ++r->i;
    if (peek(r) == '+' || peek(r) == '-') ++r->i;
    if (!(peek(r) >= '0' && peek(r) <= '9')) return rfail(r, "expected a digit in the exponent");
    while (peek(r) >= '0' && peek(r) <= '9') ++r->i;
  }
  char buf[64];
  size_t len = r->i - start;
  if (len >= sizeof buf) return rfail(r, "number too long");
  memcpy(buf, r->s + start, len);
  buf[len] = '\0';
  errno = 0;
  *out = strtod(buf, NULL);
  if (errno == ERANGE || !isfinite(*out)) {
    r->i = start;
    return rfail(r, "number %s is out of range", buf);
  }
  return 0;
}

static int want_integral(reader *r, size_t at, const char *key, double v, double lo, double hi) {
  if (v != floor(v) || v < lo || v > hi) {
    r->i = at;
    return rfail(r, "\"%s\" must be an integer in [%.0f, %.0f], not %g", key, lo, hi, v);
  }
  return 0;
}

static const char *const k_group_keys[DS_WG_COUNT] = {"attention", "shared", "experts"};

static int wformat_from_word(const char *w, ds_wformat *out) {
  if (!strcmp(w, "fp8")) {
    *out = DS_WF_FP8;
  } else if (!strcmp(w, "fp4")) {
    *out = DS_WF_FP4;
  } else if (!strcmp(w, "none")) {
    *out = DS_WF_NONE;
  } else {
    return -1;
  }
  return 0;
}

/* {"attention": "fp8", "shared": "fp8", "experts": "fp4"}: groups left out stay "none". */
static int read_wformat(reader *r, const char *key, ds_config *c) {
  if (peek(r) != '{') {
    return rfail(
        r, "\"%s\" must be an object such as {\"attention\": \"fp8\", \"experts\": \"fp4\"}", key);
  }
  ++r->i;
  int seen[DS_WG_COUNT] = {0};
  skip_ws(r);
  if (peek(r) == '}') {
    ++r->i;
    c->weight_format_given = 1;
    return 0;
  }
  for (;;) {
    skip_ws(r);
    size_t at = r->i;
    char group[64], word[64];
    if (peek(r) != '"') return rfail(r, "expected a group name in \"%s\"", key);
    if (read_string(r, group, sizeof group)) return -1;
    int g = 0;
    while (g < DS_WG_COUNT && strcmp(k_group_keys[g], group) != 0) ++g;
    if (g == DS_WG_COUNT) {
      r->i = at;
      return rfail(
          r,
          "\"%s\" has an unknown group \"%s\": expected \"attention\", \"shared\" or \"experts\"",
          key, group);
    }
    if (seen[g]) {
      r->i = at;
      return rfail(r, "\"%s\" gives \"%s\" twice", key, group);
    }
    seen[g] = 1;
    skip_ws(r);
    if (peek(r) != ':') return rfail(r, "expected ':' after \"%s\"", group);
    ++r->i;
    skip_ws(r);
    at = r->i;
    if (peek(r) != '"') return rfail(r, "\"%s\".\"%s\" must be a string", key, group);
    if (read_string(r, word, sizeof word)) return -1;
    if (wformat_from_word(word, &c->weight_format[g])) {
      r->i = at;
      return rfail(r, "\"%s\".\"%s\" is \"%s\": expected \"fp8\", \"fp4\" or \"none\"", key, group,
                   word);
    }
    skip_ws(r);
    if (peek(r) == ',') {
      ++r->i;
      skip_ws(r);
      if (peek(r) == '}') return rfail(r, "trailing ',' before '}' in \"%s\"", key);
      continue;
    }
    if (peek(r) == '}') {
      ++r->i;
      break;
    }
    return rfail(r, "expected ',' or '}' in \"%s\"", key);
  }
  c->weight_format_given = 1;
  return 0;
}

static int read_value(reader *r, const key_spec *k, ds_config *c) {
  char *field = (char *)c + k->offset;
  size_t at = r->i;
  switch (k->kind) {
    case KEY_INT:
    case KEY_INT32:
    case KEY_U64:
    case KEY_FLOAT: {
      if (peek(r) == '"') return rfail(r, "\"%s\" must be a number, not a string", k->key);
      double v;
      if (read_number(r, &v)) return -1;
      if (k->kind == KEY_FLOAT) {
        memcpy(field, &v, sizeof v);
      } else if (k->kind == KEY_INT) {
        if (want_integral(r, at, k->key, v, -9007199254740992.0, 9007199254740992.0)) return -1;
        int64_t x = (int64_t)v;
        memcpy(field, &x, sizeof x);
      } else if (k->kind == KEY_INT32) {
        if (want_integral(r, at, k->key, v, -2147483648.0, 2147483647.0)) return -1;
        int32_t x = (int32_t)v;
        memcpy(field, &x, sizeof x);
      } else {
        if (want_integral(r, at, k->key, v, 0.0, 9007199254740992.0)) return -1;
        uint64_t x = (uint64_t)v;
        memcpy(field, &x, sizeof x);
      }
      return 0;
    }
    case KEY_SCORE:
    case KEY_DTYPE:
    case KEY_TEXT: {
      char s[256];
      if (peek(r) != '"') return rfail(r, "\"%s\" must be a string", k->key);
      if (read_string(r, s, sizeof s)) return -1;
      if (k->kind == KEY_SCORE) {
        ds_score v;
        if (!strcmp(s, "sqrtsoftplus") || !strcmp(s, "sqrt_softplus")) {
          v = DS_SCORE_SQRT_SOFTPLUS;
        } else if (!strcmp(s, "sigmoid")) {
          v = DS_SCORE_SIGMOID;
        } else if (!strcmp(s, "softmax")) {
          v = DS_SCORE_SOFTMAX;
        } else {
          r->i = at;
          return rfail(r, "\"%s\" is \"%s\": expected \"sqrtsoftplus\", \"sigmoid\" or \"softmax\"",
                       k->key, s);
        }
        memcpy(field, &v, sizeof v);
      } else if (k->kind == KEY_DTYPE) {
        vnrt_dtype v;
        if (!strcmp(s, "bf16")) {
          v = VNRT_BF16;
        } else if (!strcmp(s, "f16")) {
          v = VNRT_F16;
        } else if (!strcmp(s, "f32")) {
          v = VNRT_F32;
        } else {
          r->i = at;
          return rfail(r, "\"%s\" is \"%s\": expected \"bf16\", \"f16\" or \"f32\"", k->key, s);
        }
        memcpy(field, &v, sizeof v);
      }
      return 0;
    }
    case KEY_LAYERS: {
      if (peek(r) != '[') return rfail(r, "\"%s\" must be a list of layer indices", k->key);
      ++r->i;
      skip_ws(r);
      int32_t n = 0;
      if (peek(r) == ']') {
        ++r->i;
      } else {
        for (;;) {
          skip_ws(r);
          size_t item_at = r->i;
          double v;
          if (read_number(r, &v)) return -1;
          if (want_integral(r, item_at, k->key, v, 0.0, 1e9)) return -1;
          if (n == DS_MAX_ENGRAM_LAYERS) {
            r->i = item_at;
            return rfail(r, "\"%s\" has more than %d entries", k->key, DS_MAX_ENGRAM_LAYERS);
          }
          c->engram_layer[n++] = (int64_t)v;
          skip_ws(r);
          if (peek(r) == ',') {
            ++r->i;
            continue;
          }
          if (peek(r) == ']') {
            ++r->i;
            break;
          }
          return rfail(r, "expected ',' or ']' in \"%s\"", k->key);
        }
      }
      c->n_engram = n;
      return 0;
    }
    case KEY_WFORMAT:
      return read_wformat(r, k->key, c);
  }
  return rfail(r, "internal: unknown key kind");
}

int ds_config_parse(const char *text, size_t length, const char *name, ds_config *out, char *err,
                    size_t err_size) {
  if (!out) return failf(err, err_size, "ds_config_parse: NULL config");
  set_defaults(out);
  reader r = {text ? text : "", text ? length : 0, 0, name ? name : "config", err, err_size};
  int seen[N_KEYS] = {0};
  skip_ws(&r);
  if (peek(&r) != '{') return rfail(&r, "expected '{' (the config is one JSON object)");
  ++r.i;
  skip_ws(&r);
  if (peek(&r) == '}') {
    ++r.i;
  } else {
    for (;;) {
      skip_ws(&r);
      size_t key_at = r.i;
      char key[128];
      if (peek(&r) != '"') return rfail(&r, "expected a key string");
      if (read_string(&r, key, sizeof key)) return -1;
      size_t ki = 0;
      while (ki < N_KEYS && strcmp(k_keys[ki].key, key) != 0) ++ki;
      if (ki == N_KEYS) {
        r.i = key_at;
        return rfail(&r, "unknown key \"%s\"", key);
      }
      if (seen[ki]) {
        r.i = key_at;
        return rfail(&r, "key \"%s\" is given twice", key);
      }
      seen[ki] = 1;
      skip_ws(&r);
      if (peek(&r) != ':') return rfail(&r, "expected ':' after \"%s\"", key);
      ++r.i;
      skip_ws(&r);
      if (read_value(&r, &k_keys[ki], out)) return -1;
      skip_ws(&r);
      if (peek(&r) == ',') {
        ++r.i;
        skip_ws(&r);
        if (peek(&r) == '}') return rfail(&r, "trailing ',' before '}'");
        continue;
      }
      if (peek(&r) == '}') {
        ++r.i;
        break;
      }
      return rfail(&r, "expected ',' or '}'");
    }
  }
  skip_ws(&r);
  if (r.i != r.n) return rfail(&r, "unexpected text after the config object");
  for (size_t ki = 0; ki < N_KEYS; ++ki) {
    if (k_keys[ki].required && !seen[ki]) {
      return failf(err, err_size, "%s: missing required key \"%s\"", r.name, k_keys[ki].key);
    }
  }
  char why[DS_ERR_SIZE];
  if (ds_config_finish(out, why, sizeof why)) {
    return failf(err, err_size, "%s: %s", r.name, why);
  }
  return 0;
}

int ds_config_load(const char *path, ds_config *out, char *err, size_t err_size) {
  FILE *f = fopen(path, "rb");
  if (!f) return failf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
  char *text = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 > cap) {
      cap = cap ? cap * 2 : 8192;
      if (cap > ((size_t)1 << 20)) {
        free(text);
        fclose(f);
        return failf(err, err_size, "%s: larger than 1 MiB: not a config", path);
      }
      char *grown = realloc(text, cap);
      if (!grown) {
        free(text);
        fclose(f);
        return failf(err, err_size, "%s: out of memory", path);
      }
      text = grown;
    }
    size_t got = fread(text + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(text);
    return failf(err, err_size, "%s: read error", path);
  }
  int rc = ds_config_parse(text, len, path, out, err, err_size);
  free(text);
  return rc;
}

/* ---- Checks and derived values ---------------------------------------------------------- */

static int range(char *err, size_t err_size, const char *key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return failf(err, err_size, "\"%s\" = %lld must be in [%lld, %lld]", key, (long long)v,
                 (long long)lo, (long long)hi);
  }
  return 0;
}

static int is_prime(int64_t v) {
  if (v < 2) return 0;
  for (int64_t d = 2; d * d <= v; ++d) {
    if (v % d == 0) return 0;
  }
  return 1;
}

/* splitmix64: a small, well-mixed generator for deterministic parameters. */
static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int ds_config_finish(ds_config *c, char *err, size_t err_size) {
  if (!c) return failf(err, err_size, "NULL config");
#define RANGE(key, v, lo, hi) \
  if (range(err, err_size, key, (v), (lo), (hi))) return -1
  RANGE("hidden_size", c->hidden, 1, 1 << 16);
  RANGE("num_hidden_layers", c->layers, 1, 256);
  RANGE("vocab_size", c->vocab, 2, 1 << 24);
  RANGE("num_attention_heads", c->heads, 1, 1024);
  RANGE("head_dim", c->head_dim, 2, 4096);
  if (c->head_dim % 2)
    return failf(err, err_size, "\"head_dim\" = %lld must be even", (long long)c->head_dim);
  RANGE("qk_rope_head_dim", c->rope_dim, 0, c->head_dim);
  if (c->rope_dim % 2) {
    return failf(err, err_size, "\"qk_rope_head_dim\" = %lld must be even", (long long)c->rope_dim);
  }
  if (!(c->rope_theta > 0.0)) return failf(err, err_size, "\"rope_theta\" must be > 0");
  RANGE("sliding_window", c->window, 0, 1 << 24);
  RANGE("max_position_embeddings", c->max_seq, 1, 1 << 20);
  RANGE("hc_mult", c->hc_mult, 1, 16);
  RANGE("hc_sinkhorn_iters", c->hc_iters, 1, 1000);
  if (!(c->hc_eps >= 0.0)) return failf(err, err_size, "\"hc_eps\" must be >= 0");
  if (!(c->norm_eps >= 0.0)) return failf(err, err_size, "\"rms_norm_eps\" must be >= 0");
  RANGE("n_routed_experts", c->experts, 1, 4096);
  RANGE("num_experts_per_tok", c->top_k, 1, c->experts);
  RANGE("moe_intermediate_size", c->expert_ffn, 1, 1 << 20);
  RANGE("n_shared_experts", c->shared, 0, 16);
  if (!(c->route_scale > 0.0)) return failf(err, err_size, "\"routed_scaling_factor\" must be > 0");
  if (!(c->swiglu_limit >= 0.0)) return failf(err, err_size, "\"swiglu_limit\" must be >= 0");
  if ((int)c->score < 0 || c->score > DS_SCORE_SOFTMAX) {
    return failf(err, err_size, "\"scoring_func\" is not a known score");
  }
  RANGE("num_hash_layers", c->hash_layers, 0, c->layers);
  if (c->weight_dtype != VNRT_F32 && c->weight_dtype != VNRT_F16 && c->weight_dtype != VNRT_BF16) {
    return failf(err, err_size, "\"weight_dtype\" must be bf16, f16 or f32");
  }
  for (int g = 0; g < DS_WG_COUNT; ++g) {
    if (c->weight_format[g] != DS_WF_NONE && c->weight_format[g] != DS_WF_FP8 &&
        c->weight_format[g] != DS_WF_FP4) {
      return failf(err, err_size, "\"weight_format\".\"%s\" must be fp8, fp4 or none",
                   k_group_keys[g]);
    }
  }
  /* FP4 packs two codes per byte along a row, so every row length of an FP4 group is even. */
  const int64_t row_lengths[DS_WG_COUNT][2] = {{c->hidden, c->heads * c->head_dim},
                                               {c->hidden, c->shared * c->expert_ffn},
                                               {c->hidden, c->expert_ffn}};
  for (int g = 0; g < DS_WG_COUNT; ++g) {
    for (int j = 0; j < 2 && c->weight_format[g] == DS_WF_FP4; ++j) {
      if (row_lengths[g][j] % 2) {
        return failf(err, err_size,
                     "\"weight_format\".\"%s\" = \"fp4\" packs two codes per byte, but a row has "
                     "%lld (odd) inputs",
                     k_group_keys[g], (long long)row_lengths[g][j]);
      }
    }
  }
  RANGE("engram_layer_ids (count)", c->n_engram, 0, DS_MAX_ENGRAM_LAYERS);
  for (int32_t i = 0; i < c->n_engram; ++i) {
    RANGE("engram_layer_ids", c->engram_layer[i], 0, c->layers - 1);
    for (int32_t j = 0; j < i; ++j) {
      if (c->engram_layer[j] == c->engram_layer[i]) {
        return failf(err, err_size, "\"engram_layer_ids\" lists layer %lld twice",
                     (long long)c->engram_layer[i]);
      }
    }
  }
  c->engram_heads_total = 0;
  memset(c->engram_mult, 0, sizeof c->engram_mult);
  memset(c->engram_primes, 0, sizeof c->engram_primes);
  memset(c->engram_table_rows, 0, sizeof c->engram_table_rows);
  if (c->n_engram == 0) return 0;
  RANGE("engram_max_ngram_size", c->ngram, 2, DS_MAX_NGRAM);
  RANGE("engram_n_head_per_ngram", c->ngram_heads, 1, DS_MAX_ENGRAM_HEADS / (c->ngram - 1));
  RANGE("engram_head_dim", c->engram_dim, 1, 4096);
  RANGE("engram_vocab_size", c->engram_rows, 2, 1 << 26);
  RANGE("engram_kernel_size", c->conv_kernel, 2, 16); /* short_conv keeps a history */
  RANGE("engram_pad_id", c->pad_id, 0, c->vocab - 1);
  c->engram_heads_total = (c->ngram - 1) * c->ngram_heads;

  /* Like the Engram demo: per layer, odd multipliers from a seeded generator, small enough
   * that token x multiplier never overflows int64 (vocab < 2^24, multiplier < 2^39); and one
   * distinct prime table size per head of every layer, searched upward from
   * engram_vocab_size. */
  int64_t candidate = c->engram_rows;
  for (int32_t li = 0; li < c->n_engram; ++li) {
    uint64_t state = c->engram_seed + 10007ull * (uint64_t)c->engram_layer[li];
    for (int64_t j = 0; j < c->ngram; ++j) {
      c->engram_mult[li][j] = (int64_t)((splitmix64(&state) >> 25) | 1u);
    }
    int64_t total = 0;
    for (int64_t h = 0; h < c->engram_heads_total; ++h) {
      while (!is_prime(candidate)) ++candidate;
      c->engram_primes[li][h] = candidate++;
      total += c->engram_primes[li][h];
    }
    if (total > INT32_MAX) {
      return failf(err, err_size, "engram tables of %lld rows exceed the i32 row offsets",
                   (long long)total);
    }
    c->engram_table_rows[li] = total;
  }
  return 0;
#undef RANGE
}

int32_t ds_config_engram_index(const ds_config *cfg, int64_t layer) {
  for (int32_t i = 0; i < cfg->n_engram; ++i) {
    if (cfg->engram_layer[i] == layer) return i;
  }
  return -1;
}

int ds_config_set_quant(ds_config *cfg, const char *word, char *err, size_t err_size) {
  ds_wformat att, shared, experts;
  if (word && !strcmp(word, "fp8fp4")) {
    att = shared = DS_WF_FP8;
    experts = DS_WF_FP4;
  } else if (word && !wformat_from_word(word, &att)) {
    shared = experts = att;
  } else {
    return failf(err, err_size,
                 "quantization \"%s\": expected fp8fp4 (FP8 attention and shared expert, FP4 "
                 "routed experts), fp8, fp4 or none",
                 word ? word : "(null)");
  }
  cfg->weight_format[DS_WG_ATTENTION] = att;
  cfg->weight_format[DS_WG_SHARED] = shared;
  cfg->weight_format[DS_WG_EXPERTS] = experts;
  cfg->weight_format_given = 1;
  return 0;
}

const char *ds_wformat_word(ds_wformat format) {
  switch (format) {
    case DS_WF_FP8:
      return "fp8";
    case DS_WF_FP4:
      return "fp4";
    case DS_WF_NONE:
    default:
      return "none";
  }
}

const char *ds_config_quant_str(const ds_config *cfg, char *buf, size_t size) {
  int used = 0, any = 0;
  if (size) buf[0] = 0;
  for (int g = 0; g < DS_WG_COUNT; ++g) {
    if (cfg->weight_format[g] == DS_WF_NONE) continue;
    if (used >= 0 && (size_t)used < size) {
      used += snprintf(buf + used, size - (size_t)used, "%s%s %s", any ? ", " : "",
                       ds_wformat_word(cfg->weight_format[g]), k_group_keys[g]);
    }
    any = 1;
  }
  if (!any && size) snprintf(buf, size, "none");
  return buf;
}

const char *ds_score_word(ds_score score) {
  switch (score) {
    case DS_SCORE_SIGMOID:
      return "sigmoid";
    case DS_SCORE_SOFTMAX:
      return "softmax";
    case DS_SCORE_SQRT_SOFTPLUS:
    default:
      return "sqrt_softplus";
  }
}
