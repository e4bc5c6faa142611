/* The public model API (vnrt/model.h): a checkpoint opened once, and sessions that run its
 * forward graph (v4_graph.c) through a one-token decode plan and prefill plans of the chunk
 * lengths in use, all sharing the model's device weights bound from the mapped checkpoint. */
#define _POSIX_C_SOURCE 200809L
#include "vnrt/model.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "model_error.h"
#include "v4_graph.h"
#include "v4_plan.h"
#include "v4_scale.h"
#include "vnrt/inspect.h"
#include "vnrt/memory.h"

#define ERR_SIZE 1024
#define NAME_SIZE 128
#define MAX_PLANS 3 /* the decode plan and two prefill chunk lengths */
#define MAX_EXPERT_PLANS 64
#define MAX_DEVICES 8

static _Thread_local char g_error[ERR_SIZE];

const char *vnrt_model_last_error(void) { return g_error; }

vnrt_status vn_model_error(vnrt_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return st;
}

#define fail vn_model_error

/* Reads a caller's sized desc (its first member `size`) into dst[full]: size 0 or v1 (the first
 * sized release's) reads that prefix, sizeof the whole; members past it keep their default
 * (zero). Any other size is no version's and fails naming the struct. */
static vnrt_status read_desc_(const void *src, size_t v1, size_t full, void *dst,
                              const char *name) {
  memset(dst, 0, full);
  if (!src) return VNRT_OK;
  size_t size;
  memcpy(&size, src, sizeof size);
  if (size != 0 && size != v1 && size != full) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "%s.size is %zu: no version of %s had that size (0, %zu or %zu)", name, size, name,
                v1, full);
  }
  memcpy(dst, src, size ? size : v1);
  return VNRT_OK;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- Model ----------------------------------------------------------------------------- */

struct vnrt_model {
  vnrt_context *ctx;
  vn_checkpoint *ck;
  const vn_v4_config *cfg;
  vnrt_device *device;
  vnrt_numerics numerics;
  uint64_t memory_limit;
  int no_fallback;
  vn_v4_experts *experts; /* per layer, packed for moe_ffn */
  int32_t **tid2eid;      /* per hash layer, as i32 */
  uint64_t weight_bytes;
  uint64_t decode_bytes; /* weights read per decoded token (vn_v4_memory_plan's), for the info */
  /* A one-token plan of a one-position context that is never run: it holds the device weights
   * that every session's plans share (vnrt_plan_create_shared), made with the first session. */
  vnrt_plan *anchor;
  /* Set once a plan streams weights: it reads the packed experts from host memory, which must
   * then stay (otherwise they are packed when a plan binds them and freed right after). */
  int keep_packed;
  /* With vnrt_model_desc.engram_store: one store per Engram layer, bound to every plan. */
  vnrt_engram_store *stores[VN_V4_MAX_ENGRAM_LAYERS];
  vnrt_engram_binding bindings[VN_V4_MAX_ENGRAM_LAYERS];
  char table_names[VN_V4_MAX_ENGRAM_LAYERS][64];
  int32_t n_stores;
  /* vnrt_model_moe_experts: plans of a layer's expert slice for a row count (cached, LRU). */
  struct expert_plan {
    int32_t layer, first, count, k, dev;
    int64_t rows;
    vnrt_plan *plan;
    uint64_t last_use;
    /* Its own host buffers (so several can be staged at once): x and y [rows, C], ids and
     * weights [rows, k]; ids_tag: the run (m->tag) whose ids were staged early, else 0. */
    float *x, *y, *w;
    int32_t *ids;
    uint64_t ids_tag;
  } xplans[MAX_EXPERT_PLANS];
  uint64_t xclock;
  /* With several devices: values pass between plans on their copy streams (stage_input /
   * stage_output). tag numbers the runs; mv is the running session's move statistics; the
   * hash-routed layers' routes of this run [L][T, k], computed from the token ids at its
   * start. */
  int moves;
  uint64_t tag;
  vnrt_session_move_stats *mv;
  int32_t *early_routes;
  size_t early_cap;
  int64_t early_T;
  /* vnrt_model_desc.devices: the devices and the one of each segment (layer; L: the head). */
  vnrt_device *devs[MAX_DEVICES];
  char dev_spec[MAX_DEVICES][32];
  int32_t n_devs;
  int32_t *seg_dev;
  /* vnrt_model_desc.split_experts: device i holds experts [exp_first[i], exp_first[i + 1]) of
   * every layer, the rest is on devs[0]; the exchange's scratch. */
  int split_experts;
  int32_t exp_first[MAX_DEVICES + 1];
  float *sx;
  size_t sx_cap;
};

static void xp_free_buffers(struct expert_plan *e) {
  free(e->x);
  free(e->y);
  free(e->w);
  free(e->ids);
  e->x = e->y = e->w = NULL;
  e->ids = NULL;
  e->ids_tag = 0;
}

static void xp_free(struct expert_plan *e) {
  vnrt_plan_destroy(e->plan); /* first: its copy stream may still read the buffers */
  e->plan = NULL;
  xp_free_buffers(e);
}

void vnrt_model_close(vnrt_model *m) {
  if (!m) return;
  for (int i = 0; i < MAX_EXPERT_PLANS; ++i) xp_free(&m->xplans[i]);
  free(m->early_routes);
  free(m->seg_dev);
  free(m->sx);
  vnrt_plan_destroy(m->anchor);
  for (int32_t i = 0; m->cfg && i < m->cfg->num_hidden_layers; ++i) {
    if (m->experts) vn_v4_experts_free(&m->experts[i]);
    if (m->tid2eid) free(m->tid2eid[i]);
  }
  free(m->experts);
  free(m->tid2eid);
  for (int32_t i = 0; i < m->n_stores; ++i) vnrt_engram_store_destroy(m->stores[i]);
  vn_checkpoint_close(m->ck);
  free(m);
}

/* Bytes of the weights of each segment: layer j's in segment j, embed in the first, the head
 * and the other globals in the last. */
typedef struct seg_bytes {
  uint64_t *bytes;
  int32_t L;
} seg_bytes;

static int add_seg_bytes(void *user, const vn_v4_tensor_spec *t) {
  seg_bytes *sb = user;
  if (t->kind == VN_V4_KIND_MTP) return 0;
  /* An Engram table stays in the mapped checkpoint: its rows are copied out per run. */
  if (t->kind == VN_V4_KIND_ENGRAM && strstr(t->name, ".engram.embedding.")) return 0;
  const int32_t j = t->layer >= 0 && t->layer < sb->L ? t->layer
                    : t->kind == VN_V4_KIND_EMBED     ? 0
                                                      : sb->L;
  sb->bytes[j] += t->bytes;
  return 0;
}

/* Opens the devices of `list` and splits the L + 1 segments over them in order, each taking
 * a share of the weights in proportion to its memory budget. With Engram, the hash segment
 * runs on the first device and the rows come from the mapped checkpoint (local_engram_fetch),
 * so the tables count against no device. */
static vnrt_status place_layers(vnrt_model *m, const char *list) {
  const int32_t L = m->cfg->num_hidden_layers;
  uint64_t budget[MAX_DEVICES], total_budget = 0;
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char spec[64];
    if (len == 0 || len >= sizeof spec || m->n_devs == MAX_DEVICES) {
      return fail(VNRT_ERROR_INVALID_ARGUMENT,
                  "devices '%s': expected up to %d comma-separated device specs", list,
                  MAX_DEVICES);
    }
    memcpy(spec, p, len);
    spec[len] = '\0';
    vnrt_device *dev = NULL;
    vnrt_status st = vnrt_device_select(m->ctx, spec, &dev);
    if (st != VNRT_OK) {
      return fail(st, "devices '%s': device '%s': %s", list, spec, vnrt_context_last_error(m->ctx));
    }
    vnrt_device_info di = {.struct_size = sizeof di};
    vnrt_device_get_info(dev, &di);
    for (int32_t i = 0; i < m->n_devs; ++i) {
      if (m->devs[i] == dev) {
        return fail(VNRT_ERROR_INVALID_ARGUMENT, "devices '%s': '%s' is named twice", list,
                    di.spec);
      }
    }
    budget[m->n_devs] = di.memory_bytes;
    if (m->memory_limit && m->memory_limit < budget[m->n_devs]) {
      budget[m->n_devs] = m->memory_limit;
    }
    total_budget += budget[m->n_devs];
    snprintf(m->dev_spec[m->n_devs], sizeof m->dev_spec[0], "%s", di.spec);
    m->devs[m->n_devs++] = dev;
    p = end ? end + 1 : p + len;
  }
  m->device = m->devs[0];
  uint64_t *bytes = calloc((size_t)L + 1, sizeof *bytes);
  m->seg_dev = calloc((size_t)L + 1, sizeof *m->seg_dev);
  if (!bytes || !m->seg_dev) {
    free(bytes);
    return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  seg_bytes sb = {bytes, L};
  vn_v4_for_each_tensor(m->cfg, VN_V4_LIST_MODEL, add_seg_bytes, &sb);
  uint64_t total = 0, done = 0, used[MAX_DEVICES] = {0};
  if (m->split_experts) {
    /* The dense part on the first device; the experts of every layer split over all of
     * them in proportion to what each budget has left. */
    uint64_t by_kind[VN_V4_KIND_COUNT];
    vn_checkpoint_bytes_by_kind(m->ck, by_kind);
    const uint64_t routed = by_kind[VN_V4_KIND_ROUTED_EXPERTS];
    for (int32_t j = 0; j <= L; ++j) total += bytes[j];
    free(bytes);
    const uint64_t dense = total - routed;
    const int32_t E = m->cfg->n_routed_experts;
    uint64_t left[MAX_DEVICES], sum_left = 0;
    for (int32_t i = 0; i < m->n_devs; ++i) {
      left[i] = i == 0 ? (budget[0] > dense ? budget[0] - dense : 0) : budget[i];
      sum_left += left[i];
    }
    double cum = 0;
    m->exp_first[0] = 0;
    for (int32_t i = 0; i < m->n_devs; ++i) {
      cum += (double)left[i] / (double)(sum_left ? sum_left : 1);
      int32_t e = i == m->n_devs - 1 ? E : (int32_t)((double)E * cum + 0.5);
      if (e < m->exp_first[i]) e = m->exp_first[i];
      if (e > E) e = E;
      m->exp_first[i + 1] = e;
      const uint64_t held = routed / (uint64_t)E * (uint64_t)(e - m->exp_first[i]);
      if (held + (i == 0 ? dense : 0) > budget[i]) {
        return fail(VNRT_ERROR_OUT_OF_MEMORY,
                    "devices '%s': %s would hold %llu bytes of weights, over its budget of %llu",
                    list, m->dev_spec[i], (unsigned long long)(held + (i == 0 ? dense : 0)),
                    (unsigned long long)budget[i]);
      }
    }
    return VNRT_OK; /* seg_dev: all 0 */
  }
  for (int32_t j = 0; j <= L; ++j) total += bytes[j];
  /* Segment j goes to the first device whose cumulative share of the budgets covers the
   * middle of j's bytes. */
  for (int32_t j = 0; j <= L; ++j) {
    const double mid = ((double)done + 0.5 * (double)bytes[j]) / (double)(total ? total : 1);
    double cum = 0;
    int32_t i = 0;
    for (; i < m->n_devs - 1; ++i) {
      cum += (double)budget[i] / (double)(total_budget ? total_budget : 1);
      if (mid <= cum) break;
    }
    if (j > 0 && i < m->seg_dev[j - 1]) i = m->seg_dev[j - 1];
    while (i < m->n_devs - 1 && used[i] + bytes[j] > budget[i]) ++i; /* full: the next one */
    m->seg_dev[j] = i;
    used[i] += bytes[j];
    done += bytes[j];
  }
  free(bytes);
  for (int32_t i = 0; i < m->n_devs; ++i) {
    if (used[i] > budget[i]) {
      return fail(VNRT_ERROR_OUT_OF_MEMORY,
                  "devices '%s': %s would hold %llu bytes of weights, over its budget of %llu",
                  list, m->dev_spec[i], (unsigned long long)used[i], (unsigned long long)budget[i]);
    }
  }
  return VNRT_OK;
}

const char *vnrt_model_expert_device(const vnrt_model *m, int32_t expert) {
  if (!m || expert < 0 || expert >= m->cfg->n_routed_experts) return NULL;
  if (!m->split_experts) return NULL;
  for (int32_t i = 0; i < m->n_devs; ++i) {
    if (expert >= m->exp_first[i] && expert < m->exp_first[i + 1]) return m->dev_spec[i];
  }
  return NULL;
}

const char *vnrt_model_layer_device(const vnrt_model *m, int32_t layer) {
  if (!m || layer < 0 || layer > m->cfg->num_hidden_layers) return NULL;
  if (m->n_devs > 0) return m->dev_spec[m->seg_dev[layer]];
  static _Thread_local char spec[32];
  vnrt_device_info di = {.struct_size = sizeof di};
  if (vnrt_device_get_info(m->device, &di) != VNRT_OK) return NULL;
  snprintf(spec, sizeof spec, "%s", di.spec);
  return spec;
}

vnrt_status vnrt_model_open(vnrt_context *ctx, const char *dir, const vnrt_model_desc *desc,
                            vnrt_model **out_model) {
  if (out_model) *out_model = NULL;
  if (!ctx || !dir || !out_model) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_open: ctx, dir and out_model are needed");
  }
  vnrt_model_desc d;
  /* The first sized release ended before `devices` (docs/api.md, "ABI and growth"). */
  vnrt_status rs =
      read_desc_(desc, offsetof(vnrt_model_desc, devices), sizeof d, &d, "vnrt_model_desc");
  if (rs != VNRT_OK) return rs;
  if (d.numerics != VNRT_NUMERICS_REF && d.numerics != VNRT_NUMERICS_F32) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_desc.numerics is %d: expected VNRT_NUMERICS_REF (0) or "
                "VNRT_NUMERICS_F32 (1)",
                (int)d.numerics);
  }
  vnrt_device *device = d.device;
  if (!device) {
    vnrt_status st = vnrt_device_select(ctx, d.device_spec, &device);
    if (st != VNRT_OK) {
      return fail(st, "device '%s': %s", d.device_spec ? d.device_spec : "auto",
                  vnrt_context_last_error(ctx));
    }
  }
  vnrt_model *m = calloc(1, sizeof *m);
  if (!m) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  m->ctx = ctx;
  m->device = device;
  m->numerics = d.numerics;
  m->memory_limit = d.memory_limit;
  m->no_fallback = d.no_fallback;
  char err[ERR_SIZE];
  vnrt_status st = vn_checkpoint_open(ctx, dir, &m->ck, err, sizeof err);
  if (st != VNRT_OK) {
    vnrt_model_close(m);
    return fail(st, "%s", err);
  }
  m->cfg = vn_checkpoint_config(m->ck);
  const int32_t L = m->cfg->num_hidden_layers;
  m->experts = calloc((size_t)L, sizeof *m->experts);
  m->tid2eid = calloc((size_t)L, sizeof *m->tid2eid);
  if (!m->experts || !m->tid2eid) {
    vnrt_model_close(m);
    return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  for (int32_t i = 0; i < L && st == VNRT_OK; ++i) {
    if (vn_v4_is_hash_layer(m->cfg, i)) {
      st = vn_checkpoint_tid2eid(m->ck, i, &m->tid2eid[i], err, sizeof err);
    }
  }
  if (st != VNRT_OK) {
    vnrt_model_close(m);
    return fail(st, "%s", err);
  }
  for (int32_t i = 0; d.engram_store && i < m->cfg->engram.n_layers && st == VNRT_OK; ++i) {
    /* The table as mapped (borrowed: the mapping outlives the stores). */
    const vn_v4_engram *e = &m->cfg->engram;
    snprintf(m->table_names[i], sizeof m->table_names[i], "layers.%d.engram.embedding.weight",
             (int)e->layer_ids[i]);
    vnrt_engram_store_desc sd = {0};
    sd.rows = e->table_rows[i];
    sd.dim = e->head_dim;
    sd.dtype = VNRT_BF16;
    sd.cache_slots = d.engram_cache_rows;
    size_t bytes = 0;
    st = vn_checkpoint_tensor(m->ck, m->table_names[i], NULL, &sd.host_data, &bytes, err,
                              sizeof err);
    if (st == VNRT_OK) {
      st = vnrt_engram_store_create(ctx, &sd, &m->stores[i]);
      if (st != VNRT_OK) {
        snprintf(err, sizeof err, "Engram store for '%s': %s", m->table_names[i],
                 vnrt_context_last_error(ctx));
      }
    }
    if (st == VNRT_OK) {
      m->bindings[i].param = m->table_names[i];
      m->bindings[i].store = m->stores[i];
      m->n_stores = i + 1;
    }
  }
  if (st != VNRT_OK) {
    vnrt_model_close(m);
    return fail(st, "%s", err);
  }
  if (d.devices && d.devices[0]) {
    m->split_experts = d.split_experts;
    st = place_layers(m, d.devices);
    if (st != VNRT_OK) {
      vnrt_model_close(m);
      return st;
    }
    m->moves = m->n_devs > 1; /* values pass between the devices on the copy streams */
  }
  uint64_t by_kind[VN_V4_KIND_COUNT];
  vn_checkpoint_bytes_by_kind(m->ck, by_kind);
  for (int k = 0; k < VN_V4_KIND_COUNT; ++k) {
    if (k != VN_V4_KIND_MTP) m->weight_bytes += by_kind[k];
  }
  vn_v4_memory plan; /* the config was validated: the plan cannot fail here */
  if (vn_v4_memory_plan(m->cfg, 1, &plan) == VNRT_OK) m->decode_bytes = plan.decode_bytes_per_token;
  *out_model = m;
  return VNRT_OK;
}

vnrt_status vnrt_model_get_info(const vnrt_model *m, vnrt_model_info *out) {
  if (!m || !out) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_get_info: NULL argument");
  /* The sizes of its releases: before `quantized`, before `decode_bytes_per_token`, and now. */
  const size_t v1 = offsetof(vnrt_model_info, quantized);
  const size_t v2 = offsetof(vnrt_model_info, decode_bytes_per_token);
  const size_t size = out->size ? out->size : sizeof *out;
  if (size != v1 && size != v2 && size != sizeof *out) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_info.size is %zu: no version of vnrt_model_info had that size (0, "
                "%zu, %zu or %zu)",
                out->size, v1, v2, sizeof *out);
  }
  vnrt_model_info full;
  vnrt_model_info *caller = out;
  out = &full;
  const vn_v4_config *c = m->cfg;
  memset(out, 0, sizeof *out);
  out->size = size;
  out->vocab_size = c->vocab_size;
  out->hidden_size = c->hidden_size;
  out->num_layers = c->num_hidden_layers;
  out->num_heads = c->num_attention_heads;
  out->head_dim = c->head_dim;
  out->n_routed_experts = c->n_routed_experts;
  out->num_experts_per_tok = c->num_experts_per_tok;
  out->num_hash_layers = c->num_hash_layers;
  out->sliding_window = c->sliding_window;
  out->max_position_embeddings = c->max_position_embeddings;
  for (int32_t i = 0; i < c->num_hidden_layers; ++i) {
    out->n_csa_layers += vn_v4_layer_ratio(c, i) == 4;
    out->n_hca_layers += vn_v4_layer_ratio(c, i) == 128;
  }
  out->bos_token_id = c->bos_token_id;
  out->eos_token_id = c->eos_token_id;
  out->weight_bytes = m->weight_bytes;
  out->numerics = m->numerics;
  vnrt_device_info di = {.struct_size = sizeof di};
  if (m->n_devs > 0) {
    size_t used = 0;
    for (int32_t i = 0; i < m->n_devs && used < sizeof out->device; ++i) {
      int n = snprintf(out->device + used, sizeof out->device - used, "%s%s", i ? "," : "",
                       m->dev_spec[i]);
      if (n < 0) break;
      used += (size_t)n;
    }
  } else if (vnrt_device_get_info(m->device, &di) == VNRT_OK) {
    snprintf(out->device, sizeof out->device, "%s", di.spec);
  }
  out->quantized = c->quantized;
  out->decode_bytes_per_token = m->decode_bytes;
  memcpy(caller, out, size);
  return VNRT_OK;
}

/* Copies text[len] into buf[capacity] (NUL-terminated, cut short) and its full length into
 * *out_length (may be NULL): the *_text functions' contract. */
static void put_text(const char *text, size_t len, char *buf, size_t capacity, size_t *out_length) {
  if (capacity > 0) {
    size_t n = len < capacity - 1 ? len : capacity - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
  }
  if (out_length) *out_length = len;
}

/* put_text, then frees text (malloc'd, as open_memstream's). */
static vnrt_status give_text(char *text, size_t len, char *buf, size_t capacity,
                             size_t *out_length) {
  put_text(text, len, buf, capacity, out_length);
  free(text);
  return VNRT_OK;
}

vnrt_status vnrt_model_plan_text(const char *dir, int64_t max_context, char *buf, size_t capacity,
                                 size_t *out_length) {
  if (out_length) *out_length = 0;
  if (!dir || (!buf && capacity > 0)) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_plan_text: NULL argument");
  }
  char path[4096], err[ERR_SIZE];
  snprintf(path, sizeof path, "%s/config.json", dir);
  vn_v4_config cfg;
  vnrt_status st = vn_v4_config_load(path, &cfg, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s", err);
  if (max_context == 0) {
    max_context = cfg.max_position_embeddings < 4096 ? cfg.max_position_embeddings : 4096;
  }
  vn_v4_memory plan;
  st = vn_v4_memory_plan(&cfg, max_context, &plan);
  if (st != VNRT_OK) {
    return fail(st, "%s: no memory plan for a context of %lld tokens", path,
                (long long)max_context);
  }
  char *text = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&text, &len);
  if (!fp) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  vn_v4_memory_plan_print(fp, &cfg, &plan);
  fclose(fp);
  return give_text(text, len, buf, capacity, out_length);
}

vnrt_status vnrt_model_graph_text(vnrt_context *ctx, const char *dir,
                                  const vnrt_model_graph_desc *desc, char *buf, size_t capacity,
                                  size_t *out_length) {
  if (out_length) *out_length = 0;
  if (!ctx || !dir || (!buf && capacity > 0)) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_graph_text: NULL argument");
  }
  vnrt_model_graph_desc d = {0};
  if (desc) {
    if (desc->size != 0 && desc->size != sizeof d) {
      return fail(VNRT_ERROR_INVALID_ARGUMENT,
                  "vnrt_model_graph_desc.size is %zu: no version of vnrt_model_graph_desc had "
                  "that size (0 or %zu)",
                  desc->size, sizeof d);
    }
    d = *desc;
  }
  if (d.numerics != VNRT_NUMERICS_REF && d.numerics != VNRT_NUMERICS_F32) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_graph_text: unknown numerics %d",
                (int)d.numerics);
  }
  char path[4096], err[ERR_SIZE];
  snprintf(path, sizeof path, "%s/config.json", dir);
  vn_v4_config cfg;
  vnrt_status st = vn_v4_config_load(path, &cfg, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s", err);
  const int64_t max_pos = cfg.max_position_embeddings;
  if (d.max_context == 0) d.max_context = max_pos < 4096 ? max_pos : 4096;
  if (d.tokens == 0) d.tokens = 1;
  if (d.max_context < 1 || d.max_context > max_pos || d.max_context > INT32_MAX) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_graph_text: max_context %lld must be in [1, "
                "max_position_embeddings = %lld]",
                (long long)d.max_context, (long long)max_pos);
  }
  if (d.tokens < 1 || d.tokens > d.max_context) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_graph_text: tokens %lld must be in [1, max_context = %lld]",
                (long long)d.tokens, (long long)d.max_context);
  }
  vn_v4_graph_options opt = {d.tokens, d.max_context, d.numerics == VNRT_NUMERICS_F32, 0, 0};
  vnrt_graph *g = NULL;
  st = vn_v4_graph_build(ctx, &cfg, &opt, &g, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s: %s", path, err);
  char *text = NULL;
  st = vnrt_graph_print(g, &text);
  if (st != VNRT_OK) {
    fail(st, "printing the graph: %s", vnrt_context_last_error(ctx));
    vnrt_graph_destroy(g);
    return st;
  }
  vnrt_graph_destroy(g);
  put_text(text, strlen(text), buf, capacity, out_length);
  vnrt_free(ctx, text);
  return VNRT_OK;
}

/* The bytes of a param: a checkpoint tensor, or one the loader made (experts, tid2eid). */
static vnrt_status param_data(vnrt_model *m, const char *name, const void **data, size_t *bytes) {
  int layer = -1, used = 0;
  if (sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0 &&
      layer < m->cfg->num_hidden_layers) {
    const char *rest = name + used;
    vn_v4_experts *e = &m->experts[layer];
    if (strncmp(rest, "ffn.experts.", 12) == 0 && !e->gate_up) {
      char err[ERR_SIZE];
      vnrt_status st = vn_checkpoint_pack_experts(m->ck, layer, e, err, sizeof err);
      if (st != VNRT_OK) return fail(st, "%s", err);
    }
    struct {
      const char *suffix;
      const void *data;
      size_t bytes;
    } made[] = {
        {VN_V4_EXPERTS_GATE_UP, e->gate_up, e->gate_up_bytes},
        {VN_V4_EXPERTS_GATE_UP ".scale", e->gate_up_scale, e->gate_up_scale_bytes},
        {VN_V4_EXPERTS_DOWN, e->down, e->down_bytes},
        {VN_V4_EXPERTS_DOWN ".scale", e->down_scale, e->down_scale_bytes},
        {"ffn.gate.tid2eid", m->tid2eid[layer],
         (size_t)m->cfg->vocab_size * (size_t)m->cfg->num_experts_per_tok * sizeof(int32_t)},
    };
    const int32_t ei = vn_v4_engram_index(m->cfg, layer);
    if (ei >= 0 && strcmp(rest, VN_V4_ENGRAM_OFFSETS) == 0) {
      *data = m->cfg->engram.offsets[ei];
      *bytes = (size_t)m->cfg->engram.heads * sizeof(int32_t);
      return VNRT_OK;
    }
    for (size_t i = 0; i < sizeof made / sizeof made[0]; ++i) {
      if (strcmp(rest, made[i].suffix) == 0) {
        if (!made[i].data) return fail(VNRT_ERROR_INTERNAL, "param '%s' was not loaded", name);
        *data = made[i].data;
        *bytes = made[i].bytes;
        return VNRT_OK;
      }
    }
  }
  char err[ERR_SIZE];
  vnrt_status st = vn_checkpoint_tensor(m->ck, name, NULL, data, bytes, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s", err);
  return VNRT_OK;
}

/* ---- Session --------------------------------------------------------------------------- */

typedef struct plan_slot {
  int64_t T; /* 0: empty */
  vnrt_plan *plan;
  uint64_t last_use;
} plan_slot;

typedef struct state_entry {
  char name[NAME_SIZE];
  size_t bytes;
} state_entry;

struct vnrt_session {
  vnrt_model *model;
  int64_t max_ctx, chunk;
  plan_slot plans[MAX_PLANS]; /* plans[0]: the decode plan (T = 1) */
  vnrt_plan *current;         /* the plan holding the sequence's states; NULL: all zero */
  uint64_t clock;
  state_entry *states;
  int32_t n_states;
  void *scratch;
  size_t scratch_bytes;
  int32_t *pos_buf;
  float *logits;
  int have_logits;
  int64_t pos;
  vnrt_session_stats stats;
  vnrt_session_move_stats mv; /* several devices: what the copy streams moved */
  int32_t pos0;               /* the run's first position, as staged into every segment */
  /* Expert-parallel simulation (ep_simulate_ranks > 0): the last run's routes [L][T, k]. */
  int32_t ep_ranks;
  vn_ep_tally ep;
  int32_t *routes;
  int64_t routes_T;
  /* Expert parallel (moe_exchange): per token count, the L + 1 segment plans. */
  vnrt_moe_exchange_fn exchange;
  vnrt_moe_exchange_fn exchange_finish; /* non-NULL: each shared expert is its own plan */
  void *exchange_user;
  struct ep_slot {
    int64_t T; /* 0: empty */
    vnrt_plan **seg;
    int32_t n_seg;
    uint64_t last_use;
    vn_v4_segment_types types;
  } eslots[MAX_PLANS];
  struct ep_slot *ecur;             /* the slot holding the states; NULL: all zero */
  int32_t *state_seg;               /* the segment of each state */
  void *ebuf[VN_V4_SEG_VALUES + 1]; /* the values handed on, and yr last */
  size_t ebuf_bytes[VN_V4_SEG_VALUES + 1];
  /* Engram under expert parallel: the fetch, the hash segment's rows of every Engram layer
   * (global: the head's offset added) [n_layers][T, H] and their fetched rows
   * [n_layers][T, H, Dh] bf16. */
  vnrt_engram_fetch_fn engram_fetch;
  void *engram_fetch_user;
  int engram_early;
  int32_t *erow_ids;
  uint16_t *erows;
  size_t erow_cap; /* T·H entries of one layer that the buffers hold */
};

static vnrt_status record_states_of(vnrt_session *s, vnrt_graph *const *gs, int32_t n_graphs) {
  int32_t n = 0;
  for (int32_t j = 0; j < n_graphs; ++j) n += vnrt_graph_state_count(gs[j]);
  s->states = calloc((size_t)(n > 0 ? n : 1), sizeof *s->states);
  s->state_seg = calloc((size_t)(n > 0 ? n : 1), sizeof *s->state_seg);
  if (!s->states || !s->state_seg) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  int32_t i = 0;
  for (int32_t j = 0; j < n_graphs; ++j) {
    const vnrt_graph *g = gs[j];
    for (int32_t q = 0; q < vnrt_graph_state_count(g); ++q, ++i) {
      vnrt_value v = vnrt_graph_state(g, q, NULL);
      vnrt_tensor_type t;
      vnrt_graph_value_type(g, v, &t);
      snprintf(s->states[i].name, sizeof s->states[i].name, "%s", vnrt_graph_value_name(g, v));
      s->states[i].bytes = vnrt_tensor_type_bytes(&t);
      s->state_seg[i] = j;
      if (s->states[i].bytes > s->scratch_bytes) s->scratch_bytes = s->states[i].bytes;
    }
  }
  s->n_states = n;
  s->scratch = malloc(s->scratch_bytes ? s->scratch_bytes : 1);
  if (!s->scratch) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  return VNRT_OK;
}

static vnrt_status record_states(vnrt_session *s, vnrt_graph *g) {
  return record_states_of(s, &g, 1);
}

/* Frees the packed experts after a bind when no plan reads them from host memory: a plan
 * copies a param it keeps resident, so only streamed params need the bytes later. The packs
 * are made again if a later plan binds them. */
static void release_packed(vnrt_model *m) {
  if (m->keep_packed) return;
  for (int32_t i = 0; i < m->cfg->num_hidden_layers; ++i) vn_v4_experts_free(&m->experts[i]);
}

static vnrt_status bind_weights(vnrt_model *m, const vnrt_graph *g, vnrt_plan *plan) {
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  if (vnrt_plan_get_info(plan, &pi) != VNRT_OK || pi.n_streamed_params > 0) m->keep_packed = 1;
  for (int32_t i = 0; i < vnrt_graph_input_count(g); ++i) {
    int is_param = 0;
    vnrt_value v = vnrt_graph_input(g, i, &is_param);
    if (!is_param) continue;
    const char *name = vnrt_graph_value_name(g, v);
    int served = 0; /* by an Engram store */
    for (int32_t k = 0; k < m->n_stores; ++k) served |= strcmp(name, m->table_names[k]) == 0;
    if (served) continue;
    const void *data = NULL;
    size_t bytes = 0;
    vnrt_status st = param_data(m, name, &data, &bytes);
    if (st != VNRT_OK) return st;
    vnrt_tensor_type t;
    vnrt_graph_value_type(g, v, &t);
    if (bytes != vnrt_tensor_type_bytes(&t)) {
      return fail(VNRT_ERROR_SHAPE_MISMATCH,
                  "tensor '%s' holds %zu bytes where the graph needs %zu (%s)", name, bytes,
                  vnrt_tensor_type_bytes(&t), vnrt_dtype_name(t.dtype));
    }
    /* Borrowed: the mapping outlives the plans, so streamed weights are read from it. */
    st = vnrt_plan_set_input_ref(plan, name, data, bytes);
    if (st != VNRT_OK) {
      return fail(st, "binding '%s': %s", name, vnrt_context_last_error(m->ctx));
    }
    /* A layer's last expert param (v4_graph.c declares down.scale last, down in a dequantized
     * checkpoint): its packs can go, so that at most one layer's are in memory at a time. */
    int layer = -1, used = 0;
    if (!m->keep_packed && sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0 &&
        layer >= 0 && layer < m->cfg->num_hidden_layers &&
        strcmp(name + used, m->cfg->quantized ? VN_V4_EXPERTS_DOWN ".scale" : VN_V4_EXPERTS_DOWN) ==
            0) {
      vn_v4_experts_free(&m->experts[layer]);
    }
  }
  release_packed(m);
  return VNRT_OK;
}

/* Makes the model's anchor plan and binds the weights to it (once per model). */
static vnrt_status make_anchor(vnrt_model *m) {
  if (m->anchor) return VNRT_OK;
  vn_v4_graph_options opt = {1, 1, m->numerics == VNRT_NUMERICS_F32, 0, 0};
  vnrt_graph *g = NULL;
  char err[ERR_SIZE];
  vnrt_status st = vn_v4_graph_build(m->ctx, m->cfg, &opt, &g, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s", err);
  vnrt_plan_desc pd = {0};
  pd.device_memory_limit = m->memory_limit;
  pd.no_fallback = m->no_fallback;
  pd.engram = m->n_stores ? m->bindings : NULL;
  pd.n_engram = m->n_stores;
  st = vnrt_plan_create(m->ctx, g, m->device, &pd, &m->anchor);
  if (st != VNRT_OK) {
    fail(st, "compiling the weights' plan: %s", vnrt_context_last_error(m->ctx));
  } else {
    st = bind_weights(m, g, m->anchor);
  }
  vnrt_graph_destroy(g);
  if (st != VNRT_OK) {
    vnrt_plan_destroy(m->anchor);
    m->anchor = NULL;
  }
  return st;
}

/* Compiles the plan for T tokens into slot, sharing the model's device weights. */
static vnrt_status compile_plan(vnrt_session *s, plan_slot *slot, int64_t T) {
  vnrt_model *m = s->model;
  double t0 = now_s();
  vnrt_status st = make_anchor(m);
  if (st != VNRT_OK) return st;
  vn_v4_graph_options opt = {T, s->max_ctx, m->numerics == VNRT_NUMERICS_F32, s->ep_ranks > 0, 0};
  vnrt_graph *g = NULL;
  char err[ERR_SIZE];
  st = vn_v4_graph_build(m->ctx, m->cfg, &opt, &g, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s", err);
  if (!s->states) st = record_states(s, g);
  vnrt_plan_desc pd = {0};
  pd.device_memory_limit = m->memory_limit;
  pd.no_fallback = m->no_fallback;
  pd.engram = m->n_stores ? m->bindings : NULL;
  pd.n_engram = m->n_stores;
  vnrt_plan *share = m->anchor;
  vnrt_plan *plan = NULL;
  if (st == VNRT_OK) {
    st = vnrt_plan_create_shared(m->ctx, g, m->device, &pd, share, &plan);
    if (st != VNRT_OK) {
      fail(st, "compiling the %lld-token plan: %s", (long long)T, vnrt_context_last_error(m->ctx));
    }
  }
  /* Weights shared with the anchor are bound already; a plan that streams weights or copies
   * some to the CPU for a fallback node holds its own and is bound too. */
  int bind = 0;
  if (st == VNRT_OK) {
    vnrt_plan_info a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
    st = vnrt_plan_get_info(plan, &a);
    if (st == VNRT_OK) st = vnrt_plan_get_info(share, &b);
    bind = st != VNRT_OK || a.n_streamed_params || a.n_fallback_nodes || b.n_streamed_params ||
           b.n_fallback_nodes;
    st = VNRT_OK;
  }
  if (st == VNRT_OK && bind) st = bind_weights(m, g, plan);
  vnrt_graph_destroy(g);
  if (st != VNRT_OK) {
    vnrt_plan_destroy(plan);
    return st;
  }
  slot->T = T;
  slot->plan = plan;
  slot->last_use = ++s->clock;
  s->stats.n_plans++;
  s->stats.compile_seconds += now_s() - t0;
  return VNRT_OK;
}

/* The plan for T tokens: cached, or compiled in place of the least recently used prefill plan
 * that does not hold the states. */
static vnrt_status get_plan(vnrt_session *s, int64_t T, vnrt_plan **out) {
  plan_slot *free_slot = NULL;
  for (int i = 0; i < MAX_PLANS; ++i) {
    if (s->plans[i].T == T) {
      s->plans[i].last_use = ++s->clock;
      *out = s->plans[i].plan;
      return VNRT_OK;
    }
  }
  for (int i = 1; i < MAX_PLANS; ++i) {
    plan_slot *p = &s->plans[i];
    if (p->T == 0) {
      free_slot = p;
      break;
    }
    if (p->plan == s->current) continue;
    if (!free_slot || p->last_use < free_slot->last_use) free_slot = p;
  }
  if (!free_slot) return fail(VNRT_ERROR_INTERNAL, "no free plan slot (a bug in vnrt)");
  if (free_slot->T != 0) {
    vnrt_plan_destroy(free_slot->plan);
    free_slot->plan = NULL;
    free_slot->T = 0;
  }
  vnrt_status st = compile_plan(s, free_slot, T);
  if (st != VNRT_OK) return st;
  *out = free_slot->plan;
  return VNRT_OK;
}

/* After a successful run of T tokens that took dt seconds: logits are current, the position
 * moves on, and the statistics count it as prefill or decode. */
static void session_advance_(vnrt_session *s, int decode, int64_t T, double dt) {
  s->have_logits = 1;
  s->pos += T;
  if (decode) {
    s->stats.decode_seconds += dt;
    s->stats.decode_runs++;
    s->stats.tokens_decoded += T;
  } else {
    s->stats.prefill_seconds += dt;
    s->stats.prefill_runs++;
    s->stats.tokens_prefilled += T;
  }
}

/* Makes plan hold the sequence's states: copied from the plan that holds them, or zero. */
static vnrt_status take_states(vnrt_session *s, vnrt_plan *plan) {
  vnrt_model *m = s->model;
  if (plan == s->current) return VNRT_OK;
  if (!s->current) {
    vnrt_status st = vnrt_plan_reset_state(plan);
    if (st != VNRT_OK) return fail(st, "reset: %s", vnrt_context_last_error(m->ctx));
    if (m->cfg->engram.n_layers > 0 && m->cfg->engram.pad_id != 0) {
      /* A new sequence's n-gram history is the pad id (docs/ops.md, ngram_hash). */
      int32_t pads[VN_V4_MAX_NGRAM];
      for (int i = 0; i < VN_V4_MAX_NGRAM; ++i) pads[i] = m->cfg->engram.pad_id;
      st = vnrt_plan_set_input(plan, VN_V4_ENGRAM_HIST, pads,
                               (size_t)(m->cfg->engram.max_n - 1) * sizeof(int32_t));
      if (st != VNRT_OK) {
        return fail(st, "reset: n-gram history: %s", vnrt_context_last_error(m->ctx));
      }
    }
  } else {
    for (int32_t i = 0; i < s->n_states; ++i) {
      const state_entry *e = &s->states[i];
      vnrt_status st = vnrt_plan_read_state(s->current, e->name, s->scratch, e->bytes);
      if (st == VNRT_OK) st = vnrt_plan_set_input(plan, e->name, s->scratch, e->bytes);
      if (st != VNRT_OK) {
        return fail(st, "handing state '%s' between plans: %s", e->name,
                    vnrt_context_last_error(m->ctx));
      }
    }
  }
  s->current = plan;
  return VNRT_OK;
}

/* ---- Expert parallel: the model cut at every MoE layer -------------------------------- */

static vnrt_status moe_experts_on(vnrt_model *m, int32_t dev_index, int32_t layer, int32_t first,
                                  int32_t count, const float *x, const int32_t *experts,
                                  const float *weights, int64_t rows, int32_t k, float *y);
/* The expert plans' steps (below vnrt_model_moe_experts). */
static vnrt_status xp_get(vnrt_model *m, int32_t dev_index, int32_t layer, int32_t first,
                          int32_t count, int64_t rows, int32_t k, struct expert_plan **out);
static vnrt_status xp_set_ids(vnrt_model *m, struct expert_plan *e, const int32_t *experts,
                              int64_t rows);
static vnrt_status xp_set_xw(vnrt_model *m, struct expert_plan *e, const float *x,
                             const float *weights, int64_t rows);
static vnrt_status xp_run(vnrt_model *m, struct expert_plan *e, int64_t rows);
static void count_moves(vnrt_model *m, vnrt_plan *plan);

/* The routes of hash-routed layer `layer` in this run, computed from the token ids when it
 * started (route_early), or NULL. */
static const int32_t *early_route(const vnrt_model *m, int32_t layer, int64_t T) {
  if (!m->moves || !m->early_routes || m->early_T != T || !vn_v4_is_hash_layer(m->cfg, layer)) {
    return NULL;
  }
  return m->early_routes + (size_t)layer * (size_t)T * (size_t)m->cfg->num_experts_per_tok;
}

/* Whether e's ids were staged at this run's start for exactly these routes. */
static int ids_staged_early(const vnrt_model *m, const struct expert_plan *e, int32_t layer,
                            const int32_t *experts, int64_t T) {
  const int32_t *r = early_route(m, layer, T);
  return r && e->ids_tag == m->tag &&
         memcmp(r, experts, (size_t)T * (size_t)m->cfg->num_experts_per_tok * sizeof *r) == 0;
}

/* With split experts: the pairs (token, slot) of experts in [first, first + count), in order,
 * into where[]; returns their number. */
static int64_t pairs_of(const int32_t *experts, int64_t n, int32_t first, int32_t count,
                        int32_t *where) {
  int64_t P = 0;
  for (int64_t q = 0; q < n; ++q) {
    if (experts[q] >= first && experts[q] < first + count) where[P++] = (int32_t)q;
  }
  return P;
}

/* Several devices without an exchange of the user's: a layer's routed experts, all of them,
 * on its segment's device, with the run's own T and k (so moe_ffn sums as in one graph). The
 * inputs go on the device's copy stream, the output comes back on it; a hash-routed layer's
 * ids were staged when the run started. */
static vnrt_status pipeline_exchange(void *user, int32_t layer, int64_t T, int64_t pos0,
                                     const float *x, const int32_t *experts, const float *weights,
                                     float *y) {
  (void)pos0;
  vnrt_model *m = user;
  const int32_t k = m->cfg->num_experts_per_tok;
  if (!m->moves) {
    return vnrt_model_moe_experts(m, layer, 0, m->cfg->n_routed_experts, x, experts, weights, T, k,
                                  y);
  }
  struct expert_plan *e = NULL;
  vnrt_status st = xp_get(m, m->seg_dev[layer], layer, 0, m->cfg->n_routed_experts, T, k, &e);
  if (st == VNRT_OK && !ids_staged_early(m, e, layer, experts, T)) {
    st = xp_set_ids(m, e, experts, T);
  }
  if (st == VNRT_OK) st = xp_set_xw(m, e, x, weights, T);
  if (st == VNRT_OK) st = xp_run(m, e, T);
  if (st == VNRT_OK) memcpy(y, e->y, (size_t)T * (size_t)m->cfg->hidden_size * sizeof *y);
  return st;
}

/* Several devices with split experts: each pair (token, slot) runs on the device holding its
 * expert (k = 1, the weight folded in as moe_ffn does), and the pairs are summed in slot
 * order, as moe_ffn sums them. Every device's rows are staged on its copy stream before the
 * first device runs, so the later devices' uploads overlap the earlier ones' experts. */
static vnrt_status split_exchange(void *user, int32_t layer, int64_t T, int64_t pos0,
                                  const float *x, const int32_t *experts, const float *weights,
                                  float *y) {
  (void)pos0;
  vnrt_model *m = user;
  const int64_t C = m->cfg->hidden_size, k = m->cfg->num_experts_per_tok, n = T * k;
  /* out [n, C], where [n], ids [n], ws [n] */
  const size_t need = (size_t)n * (size_t)(C + 3);
  if (need > m->sx_cap) {
    float *p = realloc(m->sx, need * sizeof *p);
    if (!p) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    m->sx = p;
    m->sx_cap = need;
  }
  float *out = m->sx, *ws = out + n * C;
  int32_t *where = (int32_t *)(ws + n), *ids = where + n;
  struct expert_plan *e[MAX_DEVICES] = {0};
  int64_t P[MAX_DEVICES] = {0}, at[MAX_DEVICES] = {0};
  vnrt_status st = VNRT_OK;
  int64_t done = 0;
  for (int32_t i = 0; i < m->n_devs && st == VNRT_OK; ++i) {
    const int32_t first = m->exp_first[i], count = m->exp_first[i + 1] - first;
    at[i] = done;
    P[i] = count > 0 ? pairs_of(experts, n, first, count, where + done) : 0;
    if (P[i] == 0) continue;
    const int32_t *wi = where + done;
    for (int64_t p = 0; p < P[i]; ++p)
      ids[done + p] = experts[wi[p]], ws[done + p] = weights[wi[p]];
    st = xp_get(m, i, layer, first, count, P[i], 1, &e[i]);
    if (st != VNRT_OK) break;
    if (!m->moves || !ids_staged_early(m, e[i], layer, experts, T)) {
      st = xp_set_ids(m, e[i], ids + done, P[i]);
    }
    for (int64_t p = 0; p < P[i] && st == VNRT_OK; ++p) {
      memcpy(e[i]->x + p * C, x + (wi[p] / k) * C, (size_t)C * sizeof *x);
    }
    if (st == VNRT_OK) st = xp_set_xw(m, e[i], NULL, ws + done, P[i]);
    if (st == VNRT_OK && m->mv && i > 0) { /* to a device other than the dense part's and back */
      m->mv->bytes_routed += (uint64_t)e[i]->rows *
                             ((uint64_t)C * 2 * sizeof(float) + sizeof(int32_t) + sizeof(float));
    }
    done += P[i];
  }
  for (int32_t i = 0; i < m->n_devs && st == VNRT_OK; ++i) {
    if (P[i] == 0) continue;
    st = xp_run(m, e[i], P[i]);
    for (int64_t p = 0; p < P[i] && st == VNRT_OK; ++p) {
      memcpy(out + (int64_t)where[at[i] + p] * C, e[i]->y + p * C, (size_t)C * sizeof *out);
    }
  }
  if (st != VNRT_OK) return st;
  for (int64_t t = 0; t < T; ++t) {
    float *dst = y + t * C;
    for (int64_t c = 0; c < C; ++c) dst[c] = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      const float *row = out + (t * k + i) * C;
      for (int64_t c = 0; c < C; ++c) dst[c] += row[c];
    }
  }
  return VNRT_OK;
}

/* At the start of a run through several devices: every hash-routed layer's routes from the
 * token ids (tid2eid), and the expert ids staged into the plans that will take them, so that
 * only the rows and weights move at the layer. Returns the bytes staged. */
static vnrt_status route_early(vnrt_model *m, const int32_t *tok, int64_t T, uint64_t *bytes) {
  const vn_v4_config *c = m->cfg;
  const int64_t k = c->num_experts_per_tok, n = T * k;
  const size_t total = (size_t)c->num_hidden_layers * (size_t)n;
  if (total > m->early_cap) {
    int32_t *p = realloc(m->early_routes, total * sizeof *p);
    if (!p) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    m->early_routes = p;
    m->early_cap = total;
  }
  m->early_T = T;
  int32_t *where = malloc((size_t)n * 2 * sizeof *where);
  if (!where) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  int32_t *ids = where + n;
  vnrt_status st = VNRT_OK;
  for (int32_t j = 0; j < c->num_hidden_layers && st == VNRT_OK; ++j) {
    if (!vn_v4_is_hash_layer(c, j)) continue;
    int32_t *r = m->early_routes + (size_t)j * (size_t)n;
    for (int64_t t = 0; t < T; ++t) {
      memcpy(r + t * k, m->tid2eid[j] + (size_t)tok[t] * (size_t)k, (size_t)k * sizeof *r);
    }
    for (int32_t i = 0; i < (m->split_experts ? m->n_devs : 1) && st == VNRT_OK; ++i) {
      const int32_t first = m->split_experts ? m->exp_first[i] : 0;
      const int32_t count = m->split_experts ? m->exp_first[i + 1] - first : c->n_routed_experts;
      struct expert_plan *e = NULL;
      int64_t rows = T;
      const int32_t *rid = r;
      if (m->split_experts) {
        rows = count > 0 ? pairs_of(r, n, first, count, where) : 0;
        for (int64_t p = 0; p < rows; ++p) ids[p] = r[where[p]];
        rid = ids;
        if (rows == 0) continue;
        st = xp_get(m, i, j, first, count, rows, 1, &e);
      } else {
        st = xp_get(m, m->seg_dev[j], j, first, count, rows, (int32_t)k, &e);
      }
      if (st == VNRT_OK) st = xp_set_ids(m, e, rid, rows);
      if (st != VNRT_OK) break;
      e->ids_tag = m->tag;
      *bytes += (uint64_t)e->rows * (uint64_t)e->k * sizeof(int32_t);
    }
  }
  free(where);
  return st;
}

/* Compiles the L + 1 segment plans for T tokens into slot (the decode slot's bind the weights,
 * the others share them; none holds the routed experts), and with exchange_finish the L shared
 * expert pieces after them. */
static vnrt_status ep_compile(vnrt_session *s, struct ep_slot *slot, int64_t T) {
  vnrt_model *m = s->model;
  double t0 = now_s();
  const int32_t base = vn_v4_segment_count(m->cfg);
  const int32_t n = base + (s->exchange_finish ? m->cfg->num_hidden_layers : 0);
  vnrt_graph **g = calloc((size_t)n, sizeof *g);
  vnrt_plan **p = calloc((size_t)n, sizeof *p);
  if (!g || !p) {
    free(g);
    free(p);
    return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  vn_v4_graph_options opt = {T, s->max_ctx, m->numerics == VNRT_NUMERICS_F32, 0,
                             s->exchange_finish != NULL};
  char err[ERR_SIZE];
  vnrt_status st =
      vn_v4_graph_build_segments(m->ctx, m->cfg, &opt, g, &slot->types, err, sizeof err);
  if (st != VNRT_OK) {
    free(g);
    free(p);
    return fail(st, "%s", err);
  }
  if (!s->states) st = record_states_of(s, g, n);
  vnrt_plan_desc pd = {0};
  pd.device_memory_limit = m->memory_limit;
  pd.no_fallback = m->no_fallback;
  for (int32_t i = 0; i < n && st == VNRT_OK; ++i) {
    /* (the Engram hash segment, past the head, reads no weights: the first device's) */
    const int32_t at = i <= m->cfg->num_hidden_layers ? i : i >= base ? i - base : 0;
    vnrt_device *dev = m->n_devs > 0 ? m->devs[m->seg_dev[at]] : m->device;
    /* The decode slot's segments hold the weights; the others share them. */
    vnrt_plan *share = slot != &s->eslots[0] && s->eslots[0].seg ? s->eslots[0].seg[i] : NULL;
    st = vnrt_plan_create_shared(m->ctx, g[i], dev, &pd, share, &p[i]);
    if (st != VNRT_OK) {
      fail(st, "compiling segment %d of the %lld-token plan: %s", (int)i, (long long)T,
           vnrt_context_last_error(m->ctx));
      break;
    }
    int bind = !share;
    if (share) { /* as compile_plan: a plan that streams or falls back binds its own */
      vnrt_plan_info a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
      bind = vnrt_plan_get_info(p[i], &a) != VNRT_OK || vnrt_plan_get_info(share, &b) != VNRT_OK ||
             a.n_streamed_params || a.n_fallback_nodes || b.n_streamed_params || b.n_fallback_nodes;
    }
    if (bind) st = bind_weights(m, g[i], p[i]);
  }
  for (int32_t i = 0; i < n; ++i) vnrt_graph_destroy(g[i]);
  free(g);
  if (st != VNRT_OK) {
    for (int32_t i = 0; i < n; ++i) vnrt_plan_destroy(p[i]);
    free(p);
    return st;
  }
  slot->T = T;
  slot->seg = p;
  slot->n_seg = n;
  slot->last_use = ++s->clock;
  s->stats.n_plans += n;
  s->stats.compile_seconds += now_s() - t0;
  return VNRT_OK;
}

static vnrt_status ep_get_slot(vnrt_session *s, int64_t T, struct ep_slot **out) {
  struct ep_slot *free_slot = NULL;
  for (int i = 0; i < MAX_PLANS; ++i) {
    if (s->eslots[i].T == T) {
      s->eslots[i].last_use = ++s->clock;
      *out = &s->eslots[i];
      return VNRT_OK;
    }
  }
  for (int i = 1; i < MAX_PLANS; ++i) {
    struct ep_slot *p = &s->eslots[i];
    if (p->T == 0) {
      free_slot = p;
      break;
    }
    if (p == s->ecur) continue;
    if (!free_slot || p->last_use < free_slot->last_use) free_slot = p;
  }
  if (!free_slot) return fail(VNRT_ERROR_INTERNAL, "no free plan slot (a bug in vnrt)");
  if (free_slot->T != 0) {
    for (int32_t j = 0; j < free_slot->n_seg; ++j) vnrt_plan_destroy(free_slot->seg[j]);
    free(free_slot->seg);
    free_slot->seg = NULL;
    free_slot->T = 0;
  }
  vnrt_status st = ep_compile(s, free_slot, T);
  if (st != VNRT_OK) return st;
  *out = free_slot;
  return VNRT_OK;
}

static vnrt_status ep_take_states(vnrt_session *s, struct ep_slot *slot) {
  vnrt_model *m = s->model;
  if (slot == s->ecur) return VNRT_OK;
  if (!s->ecur) {
    for (int32_t j = 0; j < slot->n_seg; ++j) {
      vnrt_status st = vnrt_plan_reset_state(slot->seg[j]);
      if (st != VNRT_OK) return fail(st, "reset: %s", vnrt_context_last_error(m->ctx));
    }
    if (m->cfg->engram.n_layers > 0 && m->cfg->engram.pad_id != 0) {
      /* The hash segment holds the n-gram history: a new sequence's is the pad id. */
      int32_t pads[VN_V4_MAX_NGRAM];
      for (int i = 0; i < VN_V4_MAX_NGRAM; ++i) pads[i] = m->cfg->engram.pad_id;
      vnrt_status st =
          vnrt_plan_set_input(slot->seg[m->cfg->num_hidden_layers + 1], VN_V4_ENGRAM_HIST, pads,
                              (size_t)(m->cfg->engram.max_n - 1) * sizeof(int32_t));
      if (st != VNRT_OK) {
        return fail(st, "reset: n-gram history: %s", vnrt_context_last_error(m->ctx));
      }
    }
  } else {
    for (int32_t i = 0; i < s->n_states; ++i) {
      const state_entry *e = &s->states[i];
      const int32_t j = s->state_seg[i];
      vnrt_status st = vnrt_plan_read_state(s->ecur->seg[j], e->name, s->scratch, e->bytes);
      if (st == VNRT_OK) st = vnrt_plan_set_input(slot->seg[j], e->name, s->scratch, e->bytes);
      if (st != VNRT_OK) {
        return fail(st, "handing state '%s' between plans: %s", e->name,
                    vnrt_context_last_error(m->ctx));
      }
    }
  }
  s->ecur = slot;
  return VNRT_OK;
}

/* The built-in Engram fetch: the rows from this process's mapped checkpoint. */
static vnrt_status local_engram_fetch(void *user, const vnrt_engram_fetch *f) {
  vnrt_model *m = user;
  const int32_t ei = vn_v4_engram_index(m->cfg, f->layer);
  char name[64];
  snprintf(name, sizeof name, "layers.%d.engram.embedding.weight", (int)f->layer);
  const void *data = NULL;
  size_t bytes = 0;
  vnrt_status st = param_data(m, name, &data, &bytes);
  if (st != VNRT_OK) return st;
  const size_t row = (size_t)f->head_dim * sizeof(uint16_t);
  const int64_t R = m->cfg->engram.table_rows[ei];
  for (int64_t q = 0; q < f->tokens * f->heads; ++q) {
    if (f->rows[q] < 0 || f->rows[q] >= R || (size_t)(f->rows[q] + 1) * row > bytes) {
      return fail(VNRT_ERROR_INTERNAL, "Engram row %d outside the table (a bug)", (int)f->rows[q]);
    }
    memcpy(f->out + (size_t)q * (size_t)f->head_dim, (const char *)data + (size_t)f->rows[q] * row,
           row);
  }
  return VNRT_OK;
}

/* Runs the hash segment (the n-gram history and every Engram layer's hashed rows) and keeps
 * the rows, the heads' table offsets added, for ep_engram_rows. */
static vnrt_status ep_engram_hash(vnrt_session *s, struct ep_slot *slot, const int32_t *ids,
                                  int64_t T, int32_t pos0) {
  vnrt_model *m = s->model;
  const vn_v4_engram *e = &m->cfg->engram;
  const size_t n = (size_t)T * (size_t)e->heads;
  if (n > s->erow_cap) {
    int32_t *a = realloc(s->erow_ids, n * (size_t)e->n_layers * sizeof *a);
    if (a) s->erow_ids = a;
    uint16_t *r = realloc(s->erows, n * (size_t)e->n_layers * (size_t)e->head_dim * sizeof *r);
    if (r) s->erows = r;
    if (!a || !r) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    s->erow_cap = n;
  }
  vnrt_plan *plan = slot->seg[m->cfg->num_hidden_layers + 1];
  vnrt_status st = vnrt_plan_set_input(plan, VN_V4_IN_IDS, ids, (size_t)T * sizeof(int32_t));
  if (st == VNRT_OK) {
    st = vnrt_plan_set_input(plan, VN_V4_IN_POS, s->pos_buf, (size_t)T * sizeof(int32_t));
  }
  if (st == VNRT_OK) st = vnrt_plan_set_input(plan, VN_V4_IN_POS0, &pos0, sizeof pos0);
  if (st == VNRT_OK) st = vnrt_plan_run(plan);
  if (st != VNRT_OK) {
    return fail(st, "running %lld tokens at position %lld, the Engram hash segment: %s",
                (long long)T, (long long)pos0, vnrt_context_last_error(m->ctx));
  }
  for (int32_t ei = 0; ei < e->n_layers; ++ei) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d", VN_V4_SEG_ENGRAM_IDX, (int)e->layer_ids[ei]);
    int32_t *rows = s->erow_ids + (size_t)ei * n;
    st = vnrt_plan_read_output(plan, name, rows, n * sizeof(int32_t));
    if (st != VNRT_OK) {
      return fail(st, "the Engram hash segment: reading '%s': %s", name,
                  vnrt_context_last_error(m->ctx));
    }
    for (size_t q = 0; q < n; ++q) rows[q] += e->offsets[ei][q % (size_t)e->heads];
  }
  return VNRT_OK;
}

/* Calls the session's Engram fetch (or the checkpoint's) for layer index ei at `stage`. */
static vnrt_status ep_engram_call(vnrt_session *s, int32_t ei, int64_t T, int32_t pos0,
                                  int32_t stage) {
  vnrt_model *m = s->model;
  const vn_v4_engram *e = &m->cfg->engram;
  const size_t n = (size_t)T * (size_t)e->heads;
  vnrt_engram_fetch f = {.struct_size = sizeof f};
  f.layer = e->layer_ids[ei];
  f.tokens = T;
  f.pos0 = pos0;
  f.heads = e->heads;
  f.head_dim = (int32_t)e->head_dim;
  f.table_rows = e->table_rows[ei];
  f.rows = s->erow_ids + (size_t)ei * n;
  f.out = s->erows + (size_t)ei * n * (size_t)e->head_dim;
  f.stage = stage;
  g_error[0] = 0;
  vnrt_status st =
      s->engram_fetch ? s->engram_fetch(s->engram_fetch_user, &f) : local_engram_fetch(m, &f);
  if (st != VNRT_OK) {
    char why[ERR_SIZE];
    snprintf(why, sizeof why, "%s", g_error);
    return fail(st, "running %lld tokens at position %lld: the Engram fetch of layer %d failed%s%s",
                (long long)T, (long long)pos0, (int)f.layer, why[0] ? ": " : "", why);
  }
  return VNRT_OK;
}

/* Fetches Engram layer `layer`'s rows (or finishes a fetch started early) and sets them as
 * the input of the layer's segment. */
static vnrt_status ep_engram_rows(vnrt_session *s, vnrt_plan *plan, int32_t layer, int64_t T,
                                  int32_t pos0) {
  vnrt_model *m = s->model;
  const vn_v4_engram *e = &m->cfg->engram;
  const int32_t ei = vn_v4_engram_index(m->cfg, layer);
  const size_t n = (size_t)T * (size_t)e->heads;
  vnrt_status st =
      ep_engram_call(s, ei, T, pos0, s->engram_early ? VNRT_ENGRAM_FINISH : VNRT_ENGRAM_NOW);
  if (st != VNRT_OK) return st;
  char name[64];
  snprintf(name, sizeof name, "%s.%d", VN_V4_SEG_ENGRAM_ROWS, (int)layer);
  st = vnrt_plan_set_input(plan, name, s->erows + (size_t)ei * n * (size_t)e->head_dim,
                           n * (size_t)e->head_dim * sizeof(uint16_t));
  if (st != VNRT_OK) {
    return fail(st, "segment %d: input '%s': %s", (int)layer, name,
                vnrt_context_last_error(m->ctx));
  }
  return VNRT_OK;
}

/* A failed run: the states may be half updated, so the sequence starts over. */
static vnrt_status ep_failed(vnrt_session *s, vnrt_status st) {
  s->model->mv = NULL;
  /* Writes staged for segments that did not run borrow the caller's ids: done before return
   * (their own failure, if any, is the next run's). */
  for (int i = 0; s->model->moves && i < MAX_PLANS; ++i) {
    for (int32_t j = 0; s->eslots[i].seg && j < s->eslots[i].n_seg; ++j) {
      vnrt_plan_wait_staged(s->eslots[i].seg[j]);
    }
  }
  s->ecur = NULL;
  s->pos = 0;
  s->have_logits = 0;
  return st;
}

/* Layer j's shared expert, its own plan: x (ebuf[3]) in, ys (ebuf[6]) out. */
static vnrt_status ep_shared(vnrt_session *s, struct ep_slot *slot, int32_t j, int64_t T,
                             int32_t pos0) {
  vnrt_model *m = s->model;
  vnrt_plan *plan = slot->seg[vn_v4_segment_count(m->cfg) + j];
  const vn_v4_segment_types *ty = &slot->types;
  vnrt_status st = vnrt_plan_set_input(plan, VN_V4_SEG_HF VN_V4_SEG_IN, s->ebuf[3],
                                       vnrt_tensor_type_bytes(&ty->t[3]));
  if (st == VNRT_OK) st = vnrt_plan_run(plan);
  if (st == VNRT_OK) {
    st = vnrt_plan_read_output(plan, VN_V4_SEG_YS, s->ebuf[6], vnrt_tensor_type_bytes(&ty->t[6]));
  }
  if (st != VNRT_OK) {
    return fail(st, "running %lld tokens at position %lld, the shared expert of layer %d: %s",
                (long long)T, (long long)pos0, (int)j, vnrt_context_last_error(m->ctx));
  }
  vnrt_run_stats rs = {.struct_size = sizeof rs};
  if (vnrt_plan_get_run_stats(plan, &rs) == VNRT_OK) {
    s->stats.bytes_weights_streamed += rs.bytes_weights;
    s->stats.bytes_transfers += rs.bytes_transfers;
  }
  return VNRT_OK;
}

/* Several devices: the values segment jn takes from segment jn - 1 (in s->ebuf), staged on its
 * copy stream: X, post, comb and ys (after == 0: as soon as segment jn - 1 has run, so that
 * they move while its layer's experts compute), or yr (after == 1: from the exchange; and ys
 * when a shared piece made it). They stay unchanged until segment jn has run. */
static vnrt_status stage_boundary(vnrt_session *s, struct ep_slot *slot, int32_t jn, int after) {
  vnrt_model *m = s->model;
  const vn_v4_segment_types *ty = &slot->types;
  const struct {
    const char *name;
    int buf, type, after;
  } in[5] = {{VN_V4_SEG_X VN_V4_SEG_IN, 0, 0, 0},
             {VN_V4_SEG_POST VN_V4_SEG_IN, 1, 1, 0},
             {VN_V4_SEG_COMB VN_V4_SEG_IN, 2, 2, 0},
             {VN_V4_SEG_YS VN_V4_SEG_IN, 6, 6, s->exchange_finish != NULL},
             {VN_V4_SEG_YR, 7, 3, 1}};
  for (int i = 0; i < 5; ++i) {
    if (in[i].after != after) continue;
    const size_t bytes = vnrt_tensor_type_bytes(&ty->t[in[i].type]);
    vnrt_status st = vnrt_plan_stage_input(slot->seg[jn], in[i].name, s->ebuf[in[i].buf], bytes);
    if (st != VNRT_OK) {
      return fail(st, "segment %d: input '%s': %s", (int)jn, in[i].name,
                  vnrt_context_last_error(m->ctx));
    }
    if (m->seg_dev[jn] != m->seg_dev[jn - 1]) s->mv.bytes_boundaries += bytes;
  }
  return VNRT_OK;
}

/* Several devices, at the start of a run: the token ids and positions of every segment, every
 * Engram layer's rows (fetched now) and the hash-routed layers' expert ids are staged on the
 * copy streams of the plans that take them, so that they move while the earlier segments
 * compute. ids, the positions and *pos0 stay unchanged until the run ends. */
static vnrt_status moves_early(vnrt_session *s, struct ep_slot *slot, const int32_t *ids, int64_t T,
                               const int32_t *pos0) {
  vnrt_model *m = s->model;
  const int32_t L = m->cfg->num_hidden_layers;
  uint64_t early = 0;
  for (int32_t j = 0; j <= L; ++j) {
    const struct {
      const char *name;
      const void *data;
      size_t bytes;
    } in[3] = {{VN_V4_IN_IDS, ids, (size_t)T * sizeof(int32_t)},
               {VN_V4_IN_POS, s->pos_buf, (size_t)T * sizeof(int32_t)},
               {VN_V4_IN_POS0, pos0, sizeof *pos0}};
    for (int i = 0; i < 3; ++i) {
      vnrt_status st = vnrt_plan_stage_input(slot->seg[j], in[i].name, in[i].data, in[i].bytes);
      if (st != VNRT_OK) {
        return fail(st, "segment %d: input '%s': %s", (int)j, in[i].name,
                    vnrt_context_last_error(m->ctx));
      }
      early += in[i].bytes;
    }
  }
  const vn_v4_engram *e = &m->cfg->engram;
  const size_t n = (size_t)T * (size_t)e->heads;
  for (int32_t ei = 0; ei < e->n_layers; ++ei) {
    const int32_t layer = e->layer_ids[ei];
    vnrt_status st =
        ep_engram_call(s, ei, T, *pos0, s->engram_early ? VNRT_ENGRAM_FINISH : VNRT_ENGRAM_NOW);
    if (st != VNRT_OK) return st;
    char name[64];
    snprintf(name, sizeof name, "%s.%d", VN_V4_SEG_ENGRAM_ROWS, (int)layer);
    const size_t bytes = n * (size_t)e->head_dim * sizeof(uint16_t);
    st = vnrt_plan_stage_input(slot->seg[layer], name,
                               s->erows + (size_t)ei * n * (size_t)e->head_dim, bytes);
    if (st != VNRT_OK) {
      return fail(st, "segment %d: input '%s': %s", (int)layer, name,
                  vnrt_context_last_error(m->ctx));
    }
    s->mv.bytes_engram += bytes;
    early += bytes;
  }
  vnrt_status st = route_early(m, ids, T, &early);
  s->mv.bytes_early += early;
  return st;
}

static vnrt_status ep_run_chunk(vnrt_session *s, const int32_t *ids, int64_t T, int decode) {
  static const char *const names[VN_V4_SEG_VALUES + 1] = {
      VN_V4_SEG_X, VN_V4_SEG_POST, VN_V4_SEG_COMB, VN_V4_SEG_HF,
      VN_V4_SEG_W, VN_V4_SEG_E,    VN_V4_SEG_YS,   VN_V4_SEG_YR};
  vnrt_model *m = s->model;
  struct ep_slot *slot = NULL;
  vnrt_status st = ep_get_slot(s, T, &slot);
  if (st == VNRT_OK) st = ep_take_states(s, slot);
  if (st != VNRT_OK) return st;
  const vn_v4_segment_types *ty = &slot->types;
  if (ty->t[3].dtype != VNRT_F32 || ty->t[4].dtype != VNRT_F32 || ty->t[5].dtype != VNRT_I32) {
    return fail(VNRT_ERROR_INTERNAL, "expert parallel: unexpected MoE value types (a bug)");
  }
  for (int i = 0; i <= VN_V4_SEG_VALUES; ++i) {
    const size_t bytes = vnrt_tensor_type_bytes(&ty->t[i < VN_V4_SEG_VALUES ? i : 3]);
    if (bytes > s->ebuf_bytes[i]) {
      void *grown = realloc(s->ebuf[i], bytes);
      if (!grown) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
      s->ebuf[i] = grown;
      s->ebuf_bytes[i] = bytes;
    }
  }
  for (int64_t t = 0; t < T; ++t) s->pos_buf[t] = (int32_t)(s->pos + t);
  int32_t pos0 = (int32_t)s->pos;
  double t0 = now_s();
  const int32_t L = m->cfg->num_hidden_layers;
  /* Several devices: what is known before the layers run moves now, on the copy streams of
   * the plans that take it, while the earlier segments compute. */
  const int mv = m->moves;
  if (mv) {
    m->mv = &s->mv;
    ++m->tag;
    s->mv.runs++;
    s->mv.tokens += T;
  }
  if (m->cfg->engram.n_layers > 0) st = ep_engram_hash(s, slot, ids, T, pos0);
  for (int32_t ei = 0; s->engram_early && ei < m->cfg->engram.n_layers && st == VNRT_OK; ++ei) {
    st = ep_engram_call(s, ei, T, pos0, VNRT_ENGRAM_START); /* the rows fly from here on */
  }
  s->pos0 = pos0; /* (staged: it must outlive a failed run's pending writes) */
  if (mv && st == VNRT_OK) st = moves_early(s, slot, ids, T, &s->pos0);
  for (int32_t j = 0; j <= L && st == VNRT_OK; ++j) {
    vnrt_plan *plan = slot->seg[j];
    if (!mv && vn_v4_engram_index(m->cfg, j) >= 0) {
      st = ep_engram_rows(s, plan, j, T, pos0);
      if (st != VNRT_OK) break;
    }
    struct {
      const char *name;
      const void *data;
      size_t bytes;
    } in[8] = {{VN_V4_IN_IDS, ids, (size_t)T * sizeof(int32_t)},
               {VN_V4_IN_POS, s->pos_buf, (size_t)T * sizeof(int32_t)},
               {VN_V4_IN_POS0, &pos0, sizeof pos0},
               {VN_V4_SEG_X VN_V4_SEG_IN, s->ebuf[0], vnrt_tensor_type_bytes(&ty->t[0])},
               {VN_V4_SEG_POST VN_V4_SEG_IN, s->ebuf[1], vnrt_tensor_type_bytes(&ty->t[1])},
               {VN_V4_SEG_COMB VN_V4_SEG_IN, s->ebuf[2], vnrt_tensor_type_bytes(&ty->t[2])},
               {VN_V4_SEG_YS VN_V4_SEG_IN, s->ebuf[6], vnrt_tensor_type_bytes(&ty->t[6])},
               {names[7], s->ebuf[7], vnrt_tensor_type_bytes(&ty->t[3])}};
    for (int i = 0; !mv && i < (j > 0 ? 8 : 3) && st == VNRT_OK; ++i) {
      st = vnrt_plan_set_input(plan, in[i].name, in[i].data, in[i].bytes);
      if (st != VNRT_OK) {
        fail(st, "segment %d: input '%s': %s", (int)j, in[i].name, vnrt_context_last_error(m->ctx));
      }
    }
    /* Its outputs come back on its copy stream while its later steps run. */
    for (int i = 0; mv && i < (j < L ? VN_V4_SEG_VALUES : 0) && st == VNRT_OK; ++i) {
      if (i == 6 && s->exchange_finish) continue; /* ys: from the shared piece */
      st = vnrt_plan_stage_output(plan, names[i], s->ebuf[i], vnrt_tensor_type_bytes(&ty->t[i]));
      if (st != VNRT_OK) {
        fail(st, "segment %d: output '%s': %s", (int)j, names[i], vnrt_context_last_error(m->ctx));
      }
    }
    if (mv && j == L && st == VNRT_OK) {
      st = vnrt_plan_stage_output(plan, VN_V4_OUT_LOGITS, s->logits,
                                  (size_t)m->cfg->vocab_size * sizeof(float));
      if (st != VNRT_OK) fail(st, "the logits: %s", vnrt_context_last_error(m->ctx));
    }
    if (st == VNRT_OK) {
      st = vnrt_plan_run(plan);
      if (st != VNRT_OK) {
        fail(st, "running %lld tokens at position %lld, segment %d: %s", (long long)T,
             (long long)pos0, (int)j, vnrt_context_last_error(m->ctx));
      }
    }
    vnrt_run_stats rs = {.struct_size = sizeof rs};
    if (st == VNRT_OK && vnrt_plan_get_run_stats(plan, &rs) == VNRT_OK) {
      s->stats.bytes_weights_streamed += rs.bytes_weights;
      s->stats.bytes_transfers += rs.bytes_transfers;
    }
    if (st == VNRT_OK && mv) count_moves(m, plan);
    if (st != VNRT_OK || j == L) break;
    for (int i = 0; !mv && i < VN_V4_SEG_VALUES && st == VNRT_OK; ++i) {
      if (i == 6 && s->exchange_finish) continue; /* ys: from the shared piece */
      st = vnrt_plan_read_output(plan, names[i], s->ebuf[i], vnrt_tensor_type_bytes(&ty->t[i]));
      if (st != VNRT_OK) {
        fail(st, "segment %d: reading '%s': %s", (int)j, names[i], vnrt_context_last_error(m->ctx));
      }
    }
    /* The values segment j + 1 takes from this one move to its device now, under the layer's
     * routed experts; yr (and ys from a shared piece) once the exchange has made it. */
    if (st == VNRT_OK && mv) st = stage_boundary(s, slot, j + 1, 0);
    if (st == VNRT_OK && s->ep_ranks > 0) {
      const size_t n = (size_t)T * (size_t)m->cfg->num_experts_per_tok;
      memcpy(s->routes + (size_t)j * n, s->ebuf[5], n * sizeof(int32_t));
      vn_ep_tally_add(&s->ep, s->ebuf[5], T, s->pos);
    }
    if (st == VNRT_OK) {
      st =
          s->exchange(s->exchange_user, j, T, pos0, s->ebuf[3], s->ebuf[5], s->ebuf[4], s->ebuf[7]);
      if (st == VNRT_OK && s->exchange_finish) { /* the shared expert under the exchange */
        vnrt_status sst = ep_shared(s, slot, j, T, pos0);
        st = s->exchange_finish(s->exchange_user, j, T, pos0, s->ebuf[3], s->ebuf[5], s->ebuf[4],
                                s->ebuf[7]);
        if (sst != VNRT_OK) return ep_failed(s, sst);
      }
      if (st != VNRT_OK) {
        char why[ERR_SIZE];
        snprintf(why, sizeof why, "%s", g_error);
        fail(st, "running %lld tokens at position %lld: the MoE exchange of layer %d failed%s%s",
             (long long)T, (long long)pos0, (int)j, why[0] ? ": " : "", why);
      }
    }
    if (st == VNRT_OK && mv) st = stage_boundary(s, slot, j + 1, 1);
  }
  double dt = now_s() - t0;
  m->mv = NULL;
  if (st == VNRT_OK && !mv) {
    st = vnrt_plan_read_output(slot->seg[L], VN_V4_OUT_LOGITS, s->logits,
                               (size_t)m->cfg->vocab_size * sizeof(float));
    if (st != VNRT_OK) fail(st, "reading the logits: %s", vnrt_context_last_error(m->ctx));
  }
  if (st != VNRT_OK) return ep_failed(s, st);
  if (s->ep_ranks > 0) s->routes_T = T;
  session_advance_(s, decode, T, dt);
  return VNRT_OK;
}

vnrt_status vnrt_model_engram_rows(vnrt_model *m, int32_t layer, int64_t first, int64_t count,
                                   void *out, size_t capacity, int64_t *out_rows,
                                   int32_t *out_head_dim) {
  if (!m) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_engram_rows: no model");
  const int32_t ei =
      layer >= 0 && layer < m->cfg->num_hidden_layers ? vn_v4_engram_index(m->cfg, layer) : -1;
  if (ei < 0) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_engram_rows: layer %d has no Engram",
                (int)layer);
  }
  const int64_t R = m->cfg->engram.table_rows[ei], D = m->cfg->engram.head_dim;
  if (out_rows) *out_rows = R;
  if (out_head_dim) *out_head_dim = (int32_t)D;
  if (!out) return VNRT_OK;
  const size_t row = (size_t)D * sizeof(uint16_t);
  if (first < 0 || count < 0 || first > R || count > R - first || capacity / row < (size_t)count) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_engram_rows: rows [%lld, %lld + %lld) of a %lld-row table into %zu "
                "bytes",
                (long long)first, (long long)first, (long long)count, (long long)R, capacity);
  }
  char name[64];
  snprintf(name, sizeof name, "layers.%d.engram.embedding.weight", (int)layer);
  const void *data = NULL;
  size_t bytes = 0;
  vnrt_status st = param_data(m, name, &data, &bytes);
  if (st != VNRT_OK) return st;
  if (bytes != (size_t)R * row) {
    return fail(VNRT_ERROR_SHAPE_MISMATCH, "'%s' holds %zu bytes where %lld rows need %zu", name,
                bytes, (long long)R, (size_t)R * row);
  }
  memcpy(out, (const char *)data + (size_t)first * row, (size_t)count * row);
  return VNRT_OK;
}

vnrt_status vnrt_model_moe_experts(vnrt_model *m, int32_t layer, int32_t first, int32_t count,
                                   const float *x, const int32_t *experts, const float *weights,
                                   int64_t rows, int32_t k, float *y) {
  if (!m) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_moe_experts: NULL argument");
  int32_t dev = 0; /* the layer's device, or with split experts the one holding `first` */
  if (m->n_devs > 0 && layer >= 0 && layer < m->cfg->num_hidden_layers) {
    dev = m->seg_dev[layer];
    for (int32_t i = 0; m->split_experts && i < m->n_devs; ++i) {
      if (first >= m->exp_first[i] && first < m->exp_first[i + 1]) dev = i;
    }
  }
  return moe_experts_on(m, dev, layer, first, count, x, experts, weights, rows, k, y);
}

/* The plan of `layer`'s experts [first, first + count) for `rows` rows of k pairs on device
 * dev_index (cached; compiled and bound on a miss), with its host buffers. */
static vnrt_status xp_check(const vnrt_model *m, int32_t layer, int32_t first, int32_t count,
                            int64_t rows, int32_t k) {
  const vn_v4_config *c = m->cfg;
  if (layer < 0 || layer >= c->num_hidden_layers || first < 0 || count < 1 ||
      first > c->n_routed_experts - count || rows < 0 || rows > (1 << 24) || k < 1 || k > 64) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_moe_experts: layer %d, experts [%d, %d), %lld rows of %d: expected a "
                "layer in [0, %d), a slice of [0, %d), rows in [0, 2^24], k in [1, 64]",
                (int)layer, (int)first, (int)first + (int)count, (long long)rows, (int)k,
                (int)c->num_hidden_layers, (int)c->n_routed_experts);
  }
  return VNRT_OK;
}

static vnrt_status xp_get(vnrt_model *m, int32_t dev_index, int32_t layer, int32_t first,
                          int32_t count, int64_t rows, int32_t k, struct expert_plan **out) {
  const vn_v4_config *c = m->cfg;
  vnrt_status st = xp_check(m, layer, first, count, rows, k);
  if (st != VNRT_OK) return st;
  /* Rows are padded to a power of two >= 8 (zero rows, weight 0) so that few plans serve every
   * count. */
  int64_t P = 8; /* a decode step's pairs all fit the smallest */
  while (P < rows) P *= 2;
  struct expert_plan *hit = NULL, *victim = &m->xplans[0];
  for (int i = 0; i < MAX_EXPERT_PLANS; ++i) {
    struct expert_plan *e = &m->xplans[i];
    if (e->plan && e->layer == layer && e->first == first && e->count == count && e->k == k &&
        e->rows == P && e->dev == dev_index) {
      hit = e;
      break;
    }
    if (!e->plan || (victim->plan && e->last_use < victim->last_use)) victim = e;
  }
  char err[ERR_SIZE];
  if (!hit) {
    hit = victim;
    xp_free(hit);
    vnrt_graph *g = NULL;
    st = vn_v4_graph_build_experts(m->ctx, c, layer, P, k, count, m->numerics == VNRT_NUMERICS_F32,
                                   &g, err, sizeof err);
    if (st != VNRT_OK) {
      xp_free(hit);
      return fail(st, "%s", err);
    }
    vnrt_plan_desc pd = {0};
    pd.device_memory_limit = m->memory_limit;
    pd.no_fallback = m->no_fallback;
    st = vnrt_plan_create(m->ctx, g, m->n_devs > 0 ? m->devs[dev_index] : m->device, &pd,
                          &hit->plan);
    if (st != VNRT_OK) {
      fail(st, "compiling layer %d's experts [%d, %d): %s", (int)layer, (int)first,
           (int)(first + count), vnrt_context_last_error(m->ctx));
    }
    vnrt_plan_info pi = {.struct_size = sizeof pi};
    if (st == VNRT_OK && (vnrt_plan_get_info(hit->plan, &pi) != VNRT_OK || pi.n_streamed_params))
      m->keep_packed = 1;
    /* Bind the slice of each packed param: [E, ...] holds the experts one after another. */
    for (int32_t i = 0; st == VNRT_OK && i < vnrt_graph_input_count(g); ++i) {
      int is_param = 0;
      vnrt_value v = vnrt_graph_input(g, i, &is_param);
      if (!is_param) continue;
      const char *name = vnrt_graph_value_name(g, v);
      const void *data = NULL;
      size_t bytes = 0;
      st = param_data(m, name, &data, &bytes);
      if (st != VNRT_OK) break;
      vnrt_tensor_type t;
      vnrt_graph_value_type(g, v, &t);
      const size_t per = bytes / (size_t)c->n_routed_experts;
      if (per * (size_t)c->n_routed_experts != bytes ||
          per * (size_t)count != vnrt_tensor_type_bytes(&t)) {
        st = fail(VNRT_ERROR_SHAPE_MISMATCH, "tensor '%s': %zu bytes do not split into %d experts",
                  name, bytes, (int)c->n_routed_experts);
        break;
      }
      st = vnrt_plan_set_input_ref(hit->plan, name, (const char *)data + per * (size_t)first,
                                   per * (size_t)count);
      if (st != VNRT_OK) fail(st, "binding '%s': %s", name, vnrt_context_last_error(m->ctx));
    }
    vnrt_graph_destroy(g);
    if (!m->keep_packed) vn_v4_experts_free(&m->experts[layer]);
    if (st != VNRT_OK) {
      xp_free(hit);
      return st;
    }
    hit->layer = layer;
    hit->first = first;
    hit->count = count;
    hit->k = k;
    hit->rows = P;
    hit->dev = dev_index;
  }
  hit->last_use = ++m->xclock;
  if (!hit->x) { /* (freed after each call on one device: see moe_experts_on) */
    const int64_t C = c->hidden_size;
    hit->x = malloc((size_t)P * (size_t)C * sizeof *hit->x);
    hit->y = malloc((size_t)P * (size_t)C * sizeof *hit->y);
    hit->w = malloc((size_t)P * (size_t)k * sizeof *hit->w);
    hit->ids = malloc((size_t)P * (size_t)k * sizeof *hit->ids);
    hit->ids_tag = 0;
    if (!hit->x || !hit->y || !hit->w || !hit->ids) {
      xp_free_buffers(hit);
      return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
  }
  *out = hit;
  return VNRT_OK;
}

/* Binds an input of an expert plan: staged on its copy stream with several devices (the plan's
 * buffers stay unchanged until its run), else written now. */
static vnrt_status xp_bind(vnrt_model *m, struct expert_plan *e, const char *name, const void *data,
                           size_t bytes) {
  vnrt_status st = m->moves ? vnrt_plan_stage_input(e->plan, name, data, bytes)
                            : vnrt_plan_set_input(e->plan, name, data, bytes);
  if (st != VNRT_OK) {
    return fail(st, "layer %d's experts [%d, %d): input '%s': %s", (int)e->layer, (int)e->first,
                (int)(e->first + e->count), name, vnrt_context_last_error(m->ctx));
  }
  return VNRT_OK;
}

/* The ids of rows rows (global expert ids, k per row) into e's buffer, made local to its slice
 * and padded with 0, then bound. */
static vnrt_status xp_set_ids(vnrt_model *m, struct expert_plan *e, const int32_t *experts,
                              int64_t rows) {
  const int64_t k = e->k;
  for (int64_t i = 0; i < rows * k; ++i) {
    if (experts[i] < e->first || experts[i] >= e->first + e->count) {
      return fail(VNRT_ERROR_OUT_OF_RANGE,
                  "vnrt_model_moe_experts: expert %d (row %lld) is not in this slice [%d, %d)",
                  (int)experts[i], (long long)(i / k), (int)e->first, (int)(e->first + e->count));
    }
    e->ids[i] = experts[i] - e->first;
  }
  for (int64_t i = rows * k; i < e->rows * k; ++i) e->ids[i] = 0;
  e->ids_tag = 0;
  return xp_bind(m, e, VN_V4_EXP_IDS, e->ids, (size_t)(e->rows * k) * sizeof(int32_t));
}

/* The weights (rows · k) into e's buffer, padded with 0, and x's rows (already in e->x unless
 * x is given), padded with zero rows; both bound. */
static vnrt_status xp_set_xw(vnrt_model *m, struct expert_plan *e, const float *x,
                             const float *weights, int64_t rows) {
  const int64_t C = m->cfg->hidden_size, k = e->k, P = e->rows;
  memcpy(e->w, weights, (size_t)(rows * k) * sizeof *e->w);
  for (int64_t i = rows * k; i < P * k; ++i) e->w[i] = 0.0f;
  if (x) memcpy(e->x, x, (size_t)rows * (size_t)C * sizeof *e->x);
  memset(e->x + rows * C, 0, (size_t)(P - rows) * (size_t)C * sizeof *e->x);
  vnrt_status st = xp_bind(m, e, VN_V4_EXP_X, e->x, (size_t)(P * C) * sizeof *e->x);
  if (st == VNRT_OK) st = xp_bind(m, e, VN_V4_EXP_W, e->w, (size_t)(P * k) * sizeof *e->w);
  return st;
}

/* Adds a plan's last run to the running session's move statistics. */
static void count_moves(vnrt_model *m, vnrt_plan *plan) {
  vnrt_run_stats rs = {.struct_size = sizeof rs};
  if (!m->mv || vnrt_plan_get_run_stats(plan, &rs) != VNRT_OK) return;
  m->mv->bytes_moved += rs.bytes_staged;
  m->mv->copy_seconds += 1e-9 * (double)rs.staged_ns;
  m->mv->wait_seconds += 1e-9 * (double)rs.staged_wait_ns;
  if (rs.staged_ns > rs.staged_wait_ns) {
    m->mv->overlapped_seconds += 1e-9 * (double)(rs.staged_ns - rs.staged_wait_ns);
  }
}

/* Runs e; its output (read back on its copy stream with several devices) lands in e->y. */
static vnrt_status xp_run(vnrt_model *m, struct expert_plan *e, int64_t rows) {
  const size_t bytes = (size_t)(e->rows * m->cfg->hidden_size) * sizeof *e->y;
  char out_name[NAME_SIZE];
  snprintf(out_name, sizeof out_name, "l%d.ffn.routed", (int)e->layer);
  vnrt_status st = m->moves ? vnrt_plan_stage_output(e->plan, out_name, e->y, bytes) : VNRT_OK;
  if (st == VNRT_OK) st = vnrt_plan_run(e->plan);
  if (st == VNRT_OK && !m->moves) st = vnrt_plan_read_output(e->plan, out_name, e->y, bytes);
  if (st != VNRT_OK) {
    return fail(st, "layer %d's experts [%d, %d) on %lld rows: %s", (int)e->layer, (int)e->first,
                (int)(e->first + e->count), (long long)rows, vnrt_context_last_error(m->ctx));
  }
  count_moves(m, e->plan);
  return VNRT_OK;
}

static vnrt_status moe_experts_on(vnrt_model *m, int32_t dev_index, int32_t layer, int32_t first,
                                  int32_t count, const float *x, const int32_t *experts,
                                  const float *weights, int64_t rows, int32_t k, float *y) {
  if (!m || (rows > 0 && (!x || !experts || !weights || !y))) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_moe_experts: NULL argument");
  }
  if (rows == 0) return xp_check(m, layer, first, count, rows, k);
  struct expert_plan *e = NULL;
  vnrt_status st = xp_get(m, dev_index, layer, first, count, rows, k, &e);
  if (st != VNRT_OK) return st;
  st = xp_set_ids(m, e, experts, rows);
  if (st == VNRT_OK) st = xp_set_xw(m, e, x, weights, rows);
  if (st == VNRT_OK) st = xp_run(m, e, rows);
  if (st == VNRT_OK) memcpy(y, e->y, (size_t)rows * (size_t)m->cfg->hidden_size * sizeof *y);
  /* On one device nothing is staged: the host buffers go, as the plans of every row count
   * would otherwise each keep [rows, C] twice (the device memory is the plan's). */
  if (!m->moves) xp_free_buffers(e);
  return st;
}

void vnrt_session_destroy(vnrt_session *s) {
  if (!s) return;
  for (int i = MAX_PLANS - 1; i >= 0; --i) vnrt_plan_destroy(s->plans[i].plan);
  free(s->states);
  free(s->scratch);
  free(s->pos_buf);
  free(s->logits);
  free(s->routes);
  vn_ep_tally_free(&s->ep);
  for (int i = 0; i < MAX_PLANS; ++i) {
    for (int32_t j = 0; s->eslots[i].seg && j < s->eslots[i].n_seg; ++j) {
      vnrt_plan_destroy(s->eslots[i].seg[j]);
    }
    free(s->eslots[i].seg);
  }
  for (int i = 0; i <= VN_V4_SEG_VALUES; ++i) free(s->ebuf[i]);
  free(s->state_seg);
  free(s->erow_ids);
  free(s->erows);
  free(s);
}

vnrt_status vnrt_session_create(vnrt_model *m, const vnrt_session_desc *desc, vnrt_session **out) {
  if (out) *out = NULL;
  if (!m || !out) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_create: model and out are needed");
  }
  vnrt_session_desc d;
  /* The first sized release ended before ep_simulate_ranks (docs/api.md, "ABI and growth"). */
  vnrt_status rs = read_desc_(desc, offsetof(vnrt_session_desc, ep_simulate_ranks), sizeof d, &d,
                              "vnrt_session_desc");
  if (rs != VNRT_OK) return rs;
  const int64_t max_pos = m->cfg->max_position_embeddings;
  if (d.max_context == 0) d.max_context = max_pos < 4096 ? max_pos : 4096;
  if (d.max_context < 1 || d.max_context > max_pos || d.max_context > INT32_MAX) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "max_context %lld: must be in [1, max_position_embeddings = %lld]",
                (long long)d.max_context, (long long)max_pos);
  }
  if (d.prefill_chunk == 0) d.prefill_chunk = 256;
  if (d.prefill_chunk < 1) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "prefill_chunk %lld: must be >= 1",
                (long long)d.prefill_chunk);
  }
  if (d.prefill_chunk > d.max_context) d.prefill_chunk = d.max_context;
  vnrt_session *s = calloc(1, sizeof *s);
  if (!s) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  s->model = m;
  s->max_ctx = d.max_context;
  s->chunk = d.prefill_chunk;
  s->stats.size = sizeof s->stats;
  s->pos_buf = malloc((size_t)s->chunk * sizeof *s->pos_buf);
  s->logits = malloc((size_t)m->cfg->vocab_size * sizeof *s->logits);
  if (d.ep_simulate_ranks != 0) {
    const vn_v4_config *c = m->cfg;
    if (d.ep_simulate_ranks < 0 || d.ep_simulate_ranks > c->n_routed_experts ||
        d.ep_simulate_ranks > VN_EP_MAX_RANKS) {
      vnrt_session_destroy(s);
      return fail(VNRT_ERROR_INVALID_ARGUMENT,
                  "ep_simulate_ranks %d: must be in [1, min(%d experts, %d)]",
                  (int)d.ep_simulate_ranks, (int)c->n_routed_experts, VN_EP_MAX_RANKS);
    }
    s->ep_ranks = d.ep_simulate_ranks;
    if (vn_ep_tally_init(&s->ep, s->ep_ranks, c->n_routed_experts, c->num_experts_per_tok,
                         c->hidden_size) != VNRT_OK) {
      vnrt_session_destroy(s);
      return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    s->routes = malloc((size_t)c->num_hidden_layers * (size_t)s->chunk *
                       (size_t)c->num_experts_per_tok * sizeof *s->routes);
    if (!s->routes) {
      vnrt_session_destroy(s);
      return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
  }
  if (!s->pos_buf || !s->logits) {
    vnrt_session_destroy(s);
    return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  s->exchange = d.moe_exchange;
  s->exchange_finish = d.moe_exchange ? d.moe_exchange_finish : NULL;
  s->exchange_user = d.moe_exchange_user;
  s->engram_fetch = d.engram_fetch;
  s->engram_fetch_user = d.engram_fetch_user;
  s->engram_early = d.engram_fetch && d.engram_fetch_early;
  if (!s->exchange && m->n_devs > 1) { /* each layer's experts on its device, or split */
    s->exchange = m->split_experts ? split_exchange : pipeline_exchange;
    s->exchange_user = m;
  }
  vnrt_status st = s->exchange ? ep_compile(s, &s->eslots[0], 1) : compile_plan(s, &s->plans[0], 1);
  if (st != VNRT_OK) {
    vnrt_session_destroy(s);
    return st;
  }
  *out = s;
  return VNRT_OK;
}

vnrt_status vnrt_session_reset(vnrt_session *s) {
  if (!s) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_reset: NULL session");
  s->current = NULL;
  s->ecur = NULL;
  s->pos = 0;
  s->have_logits = 0;
  return VNRT_OK;
}

int64_t vnrt_session_position(const vnrt_session *s) { return s ? s->pos : 0; }

static vnrt_status check_ids(const vnrt_session *s, const int32_t *ids, int64_t n,
                             const char *what) {
  if (!s || !ids || n < 1) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "%s: %s", what,
                !s     ? "NULL session"
                : !ids ? "NULL ids"
                       : "no tokens (n < 1)");
  }
  const int64_t V = s->model->cfg->vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= V) {
      return fail(VNRT_ERROR_OUT_OF_RANGE,
                  "%s: token id %d (at index %lld) is outside the vocabulary [0, %lld)", what,
                  (int)ids[i], (long long)i, (long long)V);
    }
  }
  if (n > s->max_ctx - s->pos) {
    return fail(VNRT_ERROR_OUT_OF_RANGE,
                "%s: %lld more tokens at position %lld exceed the context of %lld tokens "
                "(max_context)",
                what, (long long)n, (long long)s->pos, (long long)s->max_ctx);
  }
  return VNRT_OK;
}

/* Runs ids[0..T) at the next positions on the plan for T tokens. */
static vnrt_status run_chunk(vnrt_session *s, const int32_t *ids, int64_t T, int decode) {
  if (s->exchange) return ep_run_chunk(s, ids, T, decode);
  vnrt_model *m = s->model;
  vnrt_plan *plan = NULL;
  vnrt_status st = get_plan(s, T, &plan);
  if (st == VNRT_OK) st = take_states(s, plan);
  if (st != VNRT_OK) return st;
  for (int64_t t = 0; t < T; ++t) s->pos_buf[t] = (int32_t)(s->pos + t);
  int32_t pos0 = (int32_t)s->pos;
  struct {
    const char *name;
    const void *data;
    size_t bytes;
  } in[3] = {{VN_V4_IN_IDS, ids, (size_t)T * sizeof(int32_t)},
             {VN_V4_IN_POS, s->pos_buf, (size_t)T * sizeof(int32_t)},
             {VN_V4_IN_POS0, &pos0, sizeof pos0}};
  for (int i = 0; i < 3; ++i) {
    st = vnrt_plan_set_input(plan, in[i].name, in[i].data, in[i].bytes);
    if (st != VNRT_OK) {
      return fail(st, "input '%s': %s", in[i].name, vnrt_context_last_error(m->ctx));
    }
  }
  double t0 = now_s();
  st = vnrt_plan_run(plan);
  double dt = now_s() - t0;
  if (st != VNRT_OK) {
    /* The states may be half updated: the sequence cannot go on. */
    s->current = NULL;
    s->pos = 0;
    s->have_logits = 0;
    return fail(st, "running %lld tokens at position %lld: %s (the session was reset)",
                (long long)T, (long long)pos0, vnrt_context_last_error(m->ctx));
  }
  vnrt_run_stats rs = {.struct_size = sizeof rs};
  if (vnrt_plan_get_run_stats(plan, &rs) == VNRT_OK) {
    s->stats.bytes_weights_streamed += rs.bytes_weights;
    s->stats.bytes_transfers += rs.bytes_transfers;
  }
  st = vnrt_plan_read_output(plan, VN_V4_OUT_LOGITS, s->logits,
                             (size_t)m->cfg->vocab_size * sizeof(float));
  if (st != VNRT_OK) {
    return fail(st, "reading the logits: %s", vnrt_context_last_error(m->ctx));
  }
  if (s->ep_ranks > 0) {
    const vn_v4_config *c = m->cfg;
    const size_t per_layer = (size_t)T * (size_t)c->num_experts_per_tok;
    for (int32_t l = 0; l < c->num_hidden_layers; ++l) {
      char name[NAME_SIZE];
      vn_v4_route_output_name(l, name, sizeof name);
      int32_t *r = s->routes + (size_t)l * per_layer;
      st = vnrt_plan_read_output(plan, name, r, per_layer * sizeof *r);
      if (st != VNRT_OK) {
        return fail(st, "reading the routes '%s': %s", name, vnrt_context_last_error(m->ctx));
      }
      vn_ep_tally_add(&s->ep, r, T, s->pos);
    }
    s->routes_T = T;
  }
  session_advance_(s, decode, T, dt);
  return VNRT_OK;
}

vnrt_status vnrt_session_prefill(vnrt_session *s, const int32_t *ids, int64_t n) {
  vnrt_status st = check_ids(s, ids, n, "prefill");
  for (int64_t done = 0; st == VNRT_OK && done < n;) {
    int64_t T = n - done < s->chunk ? n - done : s->chunk;
    st = run_chunk(s, ids + done, T, 0);
    done += T;
  }
  return st;
}

vnrt_status vnrt_session_decode(vnrt_session *s, const int32_t *ids, int64_t n) {
  vnrt_status st = check_ids(s, ids, n, "decode");
  for (int64_t i = 0; st == VNRT_OK && i < n; ++i) st = run_chunk(s, ids + i, 1, 1);
  return st;
}

vnrt_status vnrt_session_logits(const vnrt_session *s, float *out, size_t capacity) {
  if (!s || !out) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_logits: NULL argument");
  const int64_t V = s->model->cfg->vocab_size;
  if (capacity < (size_t)V) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_session_logits: capacity %zu is less than the vocabulary (%lld)", capacity,
                (long long)V);
  }
  if (!s->have_logits) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_logits: no token was run yet");
  }
  memcpy(out, s->logits, (size_t)V * sizeof *out);
  return VNRT_OK;
}

vnrt_status vnrt_session_get_move_stats(const vnrt_session *s, vnrt_session_move_stats *out) {
  if (!s || !out) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_get_move_stats: NULL");
  vnrt_session_move_stats d;
  /* Out-struct: the caller's prefix is written, a size no version had fails. */
  size_t size = out->size;
  if (size != 0 && size != sizeof d) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_session_move_stats.size is %zu: no version of "
                "vnrt_session_move_stats had that size (0 or %zu)",
                size, sizeof d);
  }
  d = s->mv;
  d.size = sizeof d;
  memcpy(out, &d, sizeof d);
  return VNRT_OK;
}

vnrt_status vnrt_session_get_stats(const vnrt_session *s, vnrt_session_stats *out) {
  if (!s || !out) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_get_stats: NULL");
  if (out->size != 0 && out->size != sizeof *out) {
    return fail(
        VNRT_ERROR_INVALID_ARGUMENT,
        "vnrt_session_stats.size is %zu: no version of vnrt_session_stats had that size (0 or %zu)",
        out->size, sizeof *out);
  }
  *out = s->stats;
  vnrt_plan_info pi = {.struct_size = sizeof pi};
  /* Expert parallel: the decode slot's segments summed. */
  for (int32_t j = 0; s->eslots[0].seg && j < s->eslots[0].n_seg; ++j) {
    if (vnrt_plan_get_info(s->eslots[0].seg[j], &pi) != VNRT_OK) continue;
    out->n_nodes += pi.n_nodes;
    out->n_fallback_nodes += pi.n_fallback_nodes;
    out->device_bytes += pi.device_bytes;
    out->weight_bytes += pi.weight_bytes;
    out->state_bytes += pi.state_bytes;
    out->n_streamed_params += pi.n_streamed_params;
    out->streamed_bytes += pi.streamed_bytes;
  }
  if (s->plans[0].plan && vnrt_plan_get_info(s->plans[0].plan, &pi) == VNRT_OK) {
    out->n_nodes = pi.n_nodes;
    out->n_fallback_nodes = pi.n_fallback_nodes;
    out->device_bytes = pi.device_bytes;
    out->weight_bytes = pi.weight_bytes;
    out->state_bytes = pi.state_bytes;
    out->n_streamed_params = pi.n_streamed_params;
    out->streamed_bytes = pi.streamed_bytes;
  }
  return VNRT_OK;
}

/* ---- Scale-out ------------------------------------------------------------------------- */

vnrt_status vnrt_session_routes(const vnrt_session *s, int32_t layer, int32_t *out, size_t capacity,
                                int64_t *out_tokens) {
  if (out_tokens) *out_tokens = 0;
  if (!s || !out) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_routes: NULL argument");
  const vn_v4_config *c = s->model->cfg;
  if (s->ep_ranks < 1) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_session_routes: the session keeps no routes (ep_simulate_ranks is 0)");
  }
  if (layer < 0 || layer >= c->num_hidden_layers) {
    return fail(VNRT_ERROR_OUT_OF_RANGE, "vnrt_session_routes: layer %d is outside [0, %d)",
                (int)layer, (int)c->num_hidden_layers);
  }
  if (s->routes_T < 1 || !s->have_logits) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_routes: no token was run yet");
  }
  const size_t n = (size_t)s->routes_T * (size_t)c->num_experts_per_tok;
  if (capacity < n) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_session_routes: capacity %zu is less than the %zu routes of the last run",
                capacity, n);
  }
  memcpy(out, s->routes + (size_t)layer * n, n * sizeof *out);
  if (out_tokens) *out_tokens = s->routes_T;
  return VNRT_OK;
}

vnrt_status vnrt_session_ep_text(const vnrt_session *s, char *buf, size_t capacity,
                                 size_t *out_length) {
  if (out_length) *out_length = 0;
  if (!s || (!buf && capacity > 0)) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_ep_text: NULL argument");
  }
  if (s->ep_ranks < 1) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_session_ep_text: the session simulates no ranks (ep_simulate_ranks is 0)");
  }
  char *text = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&text, &len);
  if (!fp) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  vn_ep_tally_print(fp, &s->ep);
  fclose(fp);
  return give_text(text, len, buf, capacity, out_length);
}

vnrt_status vnrt_session_profile_text(const vnrt_session *s, uint32_t what, char *buf,
                                      size_t capacity, size_t *out_length) {
  if (out_length) *out_length = 0;
  if (!s || (!buf && capacity > 0)) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_profile_text: NULL argument");
  }
  vnrt_plan *const *plans = s->ecur ? s->ecur->seg : &s->current;
  int32_t n = s->ecur ? s->ecur->n_seg : s->current ? 1 : 0;
  if (n == 0)
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_profile_text: no token was run yet");
  char *text = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&text, &len);
  if (!fp) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  vnrt_context *ctx = s->model->ctx;
  for (int32_t j = 0; j < n; ++j) {
    char *one = NULL;
    vnrt_status st = vnrt_plan_print_profile(plans[j], what, &one);
    if (st != VNRT_OK) {
      fclose(fp);
      free(text);
      return fail(st, "vnrt_session_profile_text: %s", vnrt_context_last_error(ctx));
    }
    if (n > 1) fprintf(fp, "segment %d of %d:\n", (int)j, (int)n);
    fputs(one, fp);
    vnrt_free(ctx, one);
  }
  fclose(fp);
  return give_text(text, len, buf, capacity, out_length);
}

vnrt_status vnrt_model_scale_text(const char *dir, int32_t ranks, int64_t tokens, char *buf,
                                  size_t capacity, size_t *out_length) {
  if (out_length) *out_length = 0;
  if (!dir || (!buf && capacity > 0)) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_scale_text: NULL argument");
  }
  if (tokens == 0) tokens = 4096;
  if (tokens < 1 || tokens > (1 << 24)) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_scale_text: tokens %lld outside [1, 2^24]",
                (long long)tokens);
  }
  char path[4096], err[ERR_SIZE];
  snprintf(path, sizeof path, "%s/config.json", dir);
  vn_v4_config cfg;
  vnrt_status st = vn_v4_config_load(path, &cfg, err, sizeof err);
  if (st != VNRT_OK) return fail(st, "%s", err);
  if (ranks < 1 || ranks > cfg.n_routed_experts || ranks > VN_EP_MAX_RANKS) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT,
                "vnrt_model_scale_text: %d ranks: must be in [1, min(%d experts, %d)]", (int)ranks,
                (int)cfg.n_routed_experts, VN_EP_MAX_RANKS);
  }
  char *text = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&text, &len);
  if (!fp) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  st = vn_v4_scale_print(fp, &cfg, ranks, tokens, 1);
  fclose(fp);
  if (st != VNRT_OK) {
    free(text);
    return fail(st, "%s: no scale-out model for %d ranks", path, (int)ranks);
  }
  return give_text(text, len, buf, capacity, out_length);
}
