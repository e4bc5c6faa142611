/* Context options: the one table of settings, the desc's "key=value" list, and the environment
 * read as their defaults (docs/api.md, "Options"). */
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"

typedef enum vn_option_kind {
  VN_OPT_TEXT,   /* free text, checked where it is used */
  VN_OPT_CHOICE, /* one of `choices` */
  VN_OPT_BYTES,  /* a byte count: 1048576, 512K, 256M, 1.5G */
  VN_OPT_UINT,   /* a decimal integer in [0, max] */
} vn_option_kind;

typedef struct vn_option_def {
  const char *key;
  const char *env;
  vn_option_kind kind;
  const char *choices; /* VN_OPT_CHOICE: '|'-separated */
  long max;            /* VN_OPT_UINT */
} vn_option_def;

/* Keep in the order and with the words of docs/api.md's table. */
static const vn_option_def k_options[] = {
    {"backends", "VNRT_BACKENDS", VN_OPT_TEXT, NULL, 0},
    {"device", "VNRT_DEVICE", VN_OPT_TEXT, NULL, 0},
    {"plugin_path", "VNRT_PLUGIN_PATH", VN_OPT_TEXT, NULL, 0},
    {"log", "VNRT_LOG", VN_OPT_CHOICE, "none|stderr|debug|info|warn|error", 0},
    {"cache_dir", "VNRT_CACHE_DIR", VN_OPT_TEXT, NULL, 0},
    {"device_memory_limit", "VNRT_DEVICE_MEMORY_LIMIT", VN_OPT_BYTES, NULL, 0},
    {"max_buffer", "VNRT_DEVICE_MAX_BUFFER", VN_OPT_BYTES, NULL, 0},
    {"max_run_work", "VNRT_MAX_RUN_WORK", VN_OPT_TEXT, NULL, 0},
    {"fault_inject", "VNRT_FAULT_INJECT", VN_OPT_TEXT, NULL, 0},
    {"cpu_isa", "VNRT_CPU_ISA", VN_OPT_CHOICE, "auto|generic|avx2|avx512", 0},
    {"cpu_spin_us", "VNRT_CPU_SPIN_US", VN_OPT_UINT, NULL, 1000000},
    {"cpu_prefetch_kib", "VNRT_CPU_PREFETCH_KIB", VN_OPT_UINT, NULL, 1048576},
    {"cpu_huge_pages", "VNRT_CPU_HUGE_PAGES", VN_OPT_CHOICE, "0|1", 0},
    {"cpu_affinity", "VNRT_CPU_AFFINITY", VN_OPT_CHOICE, "0|1", 0},
    {"cpu_hop", "VNRT_CPU_HOP", VN_OPT_CHOICE, "0|1", 0},
    {"cpu_profile", "VNRT_CPU_PROFILE", VN_OPT_CHOICE, "0|1", 0},
    {"cl_gemm", "VNRT_CL_GEMM", VN_OPT_CHOICE, "auto|own|tiled|clblast|vec|rows", 0},
    {"cl_svm", "VNRT_CL_SVM", VN_OPT_CHOICE, "0|1", 0},
    {"cl_local_mem", "VNRT_CL_LOCAL_MEM", VN_OPT_CHOICE, "auto|dedicated|emulated", 0},
    {"vk_cpu_kernels", "VNRT_VK_CPU_KERNELS", VN_OPT_CHOICE, "0|auto", 0},
    {"vk_copy_queue", "VNRT_VK_COPY_QUEUE", VN_OPT_CHOICE, "0|1|auto|shared", 0},
    {"vk_force_staging", "VNRT_VK_FORCE_STAGING", VN_OPT_CHOICE, "0|1", 0},
    {"vk_baseline", "VNRT_VK_BASELINE", VN_OPT_CHOICE, "0|1", 0},
    {"vk_validation", "VNRT_VK_VALIDATION", VN_OPT_CHOICE, "0|1|sync", 0},
    {"profile", "VNRT_PROFILE", VN_OPT_CHOICE, "0|1", 0},
    {"shadow", "VNRT_SHADOW", VN_OPT_CHOICE, "off|0|cpu", 0},
    {"shadow_dir", "VNRT_SHADOW_DIR", VN_OPT_TEXT, NULL, 0},
};
#define VN_N_OPTIONS ((int)(sizeof k_options / sizeof k_options[0]))

struct vn_options {
  char *value[VN_N_OPTIONS]; /* set by the desc; NULL: the environment's */
  char cache_dir[1024];      /* the resolved cache_dir of the last lookup */
};

static int find_key(const char *key, size_t len) {
  for (int i = 0; i < VN_N_OPTIONS; ++i) {
    if (strlen(k_options[i].key) == len && strncmp(k_options[i].key, key, len) == 0) return i;
  }
  return -1;
}

const char *vn_option_env(const char *key) {
  int i = key ? find_key(key, strlen(key)) : -1;
  return i >= 0 ? k_options[i].env : key;
}

static bool in_choices(const char *choices, const char *v) {
  size_t len = strlen(v);
  for (const char *p = choices; *p;) {
    const char *end = strchr(p, '|');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == len && strncmp(p, v, n) == 0) return true;
    p += n;
    if (*p == '|') ++p;
  }
  return false;
}

/* Checks an explicitly set value against its kind. */
static vnrt_status check_value(vnrt_context *ctx, const vn_option_def *o, const char *v) {
  switch (o->kind) {
    case VN_OPT_TEXT:
      return VNRT_OK;
    case VN_OPT_CHOICE:
      if (in_choices(o->choices, v)) return VNRT_OK;
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_context_desc option %s=\"%s\": expected one of %s", o->key, v,
                      o->choices);
    case VN_OPT_BYTES: {
      uint64_t bytes = 0;
      if (vn_budget_parse(ctx, v, &bytes) == VNRT_OK) return VNRT_OK;
      char msg[VN_ERROR_MAX];
      snprintf(msg, sizeof msg, "%s", ctx->last_error);
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_context_desc option %s: %s", o->key,
                      msg);
    }
    case VN_OPT_UINT: {
      char *end = NULL;
      long n = strtol(v, &end, 10);
      if (v[0] >= '0' && v[0] <= '9' && end && !*end && n >= 0 && n <= o->max) return VNRT_OK;
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_context_desc option %s=\"%s\": expected an integer in [0, %ld]", o->key,
                      v, o->max);
    }
  }
  return VNRT_OK;
}

/* Sets key (len bytes) to value (vlen bytes), checked. */
static vnrt_status set_option(vnrt_context *ctx, struct vn_options *opts, const char *key,
                              size_t len, const char *value, size_t vlen) {
  int i = find_key(key, len);
  if (i < 0) {
    char known[512];
    size_t used = 0;
    known[0] = '\0';
    for (int k = 0; k < VN_N_OPTIONS && used + 1 < sizeof known; ++k) {
      int w = snprintf(known + used, sizeof known - used, "%s%s", k ? ", " : "", k_options[k].key);
      if (w < 0) break;
      used += (size_t)w;
    }
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_context_desc option \"%.*s\" is unknown (options: %s)",
                    (int)(len < 100 ? len : 100), key, known);
  }
  char *v = vn_malloc(ctx, vlen + 1);
  if (!v) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory storing an option");
  memcpy(v, value, vlen);
  v[vlen] = '\0';
  vnrt_status s = check_value(ctx, &k_options[i], v);
  if (s != VNRT_OK) {
    vn_free(ctx, v);
    return s;
  }
  vn_free(ctx, opts->value[i]);
  opts->value[i] = v;
  return VNRT_OK;
}

static vnrt_status set_text(vnrt_context *ctx, struct vn_options *opts, const char *key,
                            const char *value) {
  return set_option(ctx, opts, key, strlen(key), value, strlen(value));
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* "key=value" pairs separated by ';' or newlines; spaces around keys and values are dropped. */
static vnrt_status parse_list(vnrt_context *ctx, struct vn_options *opts, const char *list) {
  for (const char *p = list; *p;) {
    size_t len = strcspn(p, ";\n");
    const char *b = p, *e = p + len;
    p = *e ? e + 1 : e;
    while (b < e && is_space(*b)) ++b;
    while (e > b && is_space(e[-1])) --e;
    if (b == e) continue;
    const char *eq = memchr(b, '=', (size_t)(e - b));
    if (!eq) {
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_context_desc.options: \"%.*s\" is not key=value",
                      (int)(e - b < 100 ? e - b : 100), b);
    }
    const char *ke = eq, *vb = eq + 1;
    while (ke > b && is_space(ke[-1])) --ke;
    while (vb < e && is_space(*vb)) ++vb;
    VN_RETURN_IF_ERROR(set_option(ctx, opts, b, (size_t)(ke - b), vb, (size_t)(e - vb)));
  }
  return VNRT_OK;
}

static const char *host_option(void *core, const char *key) {
  return vn_option((vnrt_context *)core, key);
}

vnrt_status vn_options_create(vnrt_context *ctx, const vnrt_context_desc *desc) {
  struct vn_options *opts = vn_calloc(ctx, 1, sizeof *opts);
  if (!opts) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for the options");
  ctx->options = opts;
  ctx->host.option = host_option;
  vnrt_status s = VNRT_OK;
  if (desc->backends) s = set_text(ctx, opts, "backends", desc->backends);
  if (s == VNRT_OK && desc->cache_dir) s = set_text(ctx, opts, "cache_dir", desc->cache_dir);
  if (s == VNRT_OK && desc->device_memory_limit) {
    char text[32];
    snprintf(text, sizeof text, "%llu", (unsigned long long)desc->device_memory_limit);
    s = set_text(ctx, opts, "device_memory_limit", text);
  }
  if (s == VNRT_OK && desc->options) s = parse_list(ctx, opts, desc->options);
  /* The default logger writes nothing; log=stderr (warnings and errors, or desc.log_level) or
   * log=LEVEL (that level and above) opts in. Read even after a failure, to report it. */
  const char *log = vn_option(ctx, "log");
  static const char *const levels[] = {"debug", "info", "warn", "error"};
  ctx->log_stderr = log && log[0] && strcmp(log, "none") != 0;
  for (int l = 0; ctx->log_stderr && !desc->log_fn && l < 4; ++l) {
    if (strcmp(log, levels[l]) == 0) ctx->log_level = (vnrt_log_level)l;
  }
  if (s != VNRT_OK) vn_options_destroy(ctx);
  return s;
}

void vn_options_destroy(vnrt_context *ctx) {
  struct vn_options *opts = ctx->options;
  if (!opts) return;
  for (int i = 0; i < VN_N_OPTIONS; ++i) vn_free(ctx, opts->value[i]);
  vn_free(ctx, opts);
  ctx->options = NULL;
}

bool vn_option_is_set(const vnrt_context *ctx, const char *key) {
  int i = key ? find_key(key, strlen(key)) : -1;
  return i >= 0 && ctx && ctx->options && ctx->options->value[i];
}

const char *vn_option(vnrt_context *ctx, const char *key) {
  int i = key ? find_key(key, strlen(key)) : -1;
  if (i < 0) return NULL;
  const char *v = ctx && ctx->options ? ctx->options->value[i] : NULL;
  if (!v) v = getenv(k_options[i].env);
  if (strcmp(key, "cache_dir") != 0 || !ctx || !ctx->options) return v;
  /* The cache root: set, else the XDG or home default; "none" when there is none. */
  char *out = ctx->options->cache_dir;
  size_t size = sizeof ctx->options->cache_dir;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n = -1;
  if (v && v[0]) {
    n = snprintf(out, size, "%s", v);
  } else if (xdg && xdg[0] == '/') {
    n = snprintf(out, size, "%s/vnrt", xdg);
  } else if (home && home[0]) {
    n = snprintf(out, size, "%s/.cache/vnrt", home);
  }
  if (n <= 0 || (size_t)n >= size) snprintf(out, size, "none");
  return out;
}
