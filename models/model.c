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
#include "vnrt/memory.h"

#define ERR_SIZE 1024
#define NAME_SIZE 128
#define MAX_PLANS 3 /* the decode plan and two prefill chunk lengths */

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
};

void vnrt_model_close(vnrt_model *m) {
  if (!m) return;
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

vnrt_status vnrt_model_open(vnrt_context *ctx, const char *dir, const vnrt_model_desc *desc,
                            vnrt_model **out_model) {
  if (out_model) *out_model = NULL;
  if (!ctx || !dir || !out_model) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_open: ctx, dir and out_model are needed");
  }
  vnrt_model_desc d = {0};
  if (desc) {
    if (desc->size != 0 && desc->size != sizeof d) {
      return fail(
          VNRT_ERROR_INVALID_ARGUMENT,
          "vnrt_model_desc.size is %zu: no version of vnrt_model_desc had that size (0 or %zu)",
          desc->size, sizeof d);
    }
    d = *desc;
  }
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
  uint64_t by_kind[VN_V4_KIND_COUNT];
  vn_checkpoint_bytes_by_kind(m->ck, by_kind);
  for (int k = 0; k < VN_V4_KIND_COUNT; ++k) {
    if (k != VN_V4_KIND_MTP) m->weight_bytes += by_kind[k];
  }
  *out_model = m;
  return VNRT_OK;
}

vnrt_status vnrt_model_get_info(const vnrt_model *m, vnrt_model_info *out) {
  if (!m || !out) return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_model_get_info: NULL argument");
  if (out->size != 0 && out->size != sizeof *out) {
    return fail(
        VNRT_ERROR_INVALID_ARGUMENT,
        "vnrt_model_info.size is %zu: no version of vnrt_model_info had that size (0 or %zu)",
        out->size, sizeof *out);
  }
  const vn_v4_config *c = m->cfg;
  memset(out, 0, sizeof *out);
  out->size = sizeof *out;
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
  if (vnrt_device_get_info(m->device, &di) == VNRT_OK) {
    snprintf(out->device, sizeof out->device, "%s", di.spec);
  }
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
  if (capacity > 0) {
    size_t n = len < capacity - 1 ? len : capacity - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
  }
  if (out_length) *out_length = len;
  free(text);
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
  /* Expert-parallel simulation (ep_simulate_ranks > 0): the last run's routes [L][T, k]. */
  int32_t ep_ranks;
  vn_ep_tally ep;
  int32_t *routes;
  int64_t routes_T;
};

static vnrt_status record_states(vnrt_session *s, const vnrt_graph *g) {
  int32_t n = vnrt_graph_state_count(g);
  s->states = calloc((size_t)(n > 0 ? n : 1), sizeof *s->states);
  if (!s->states) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  for (int32_t i = 0; i < n; ++i) {
    vnrt_value v = vnrt_graph_state(g, i, NULL);
    vnrt_tensor_type t;
    vnrt_graph_value_type(g, v, &t);
    snprintf(s->states[i].name, sizeof s->states[i].name, "%s", vnrt_graph_value_name(g, v));
    s->states[i].bytes = vnrt_tensor_type_bytes(&t);
    if (s->states[i].bytes > s->scratch_bytes) s->scratch_bytes = s->states[i].bytes;
  }
  s->n_states = n;
  s->scratch = malloc(s->scratch_bytes ? s->scratch_bytes : 1);
  if (!s->scratch) return fail(VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  return VNRT_OK;
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
    /* A layer's last expert param (v4_graph.c declares down.scale last): its packs can go, so
     * that at most one layer's are in memory at a time. */
    int layer = -1, used = 0;
    if (!m->keep_packed && sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0 &&
        layer >= 0 && layer < m->cfg->num_hidden_layers &&
        strcmp(name + used, VN_V4_EXPERTS_DOWN ".scale") == 0) {
      vn_v4_experts_free(&m->experts[layer]);
    }
  }
  release_packed(m);
  return VNRT_OK;
}

/* Makes the model's anchor plan and binds the weights to it (once per model). */
static vnrt_status make_anchor(vnrt_model *m) {
  if (m->anchor) return VNRT_OK;
  vn_v4_graph_options opt = {1, 1, m->numerics == VNRT_NUMERICS_F32, 0};
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
  vn_v4_graph_options opt = {T, s->max_ctx, m->numerics == VNRT_NUMERICS_F32, s->ep_ranks > 0};
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

void vnrt_session_destroy(vnrt_session *s) {
  if (!s) return;
  for (int i = MAX_PLANS - 1; i >= 0; --i) vnrt_plan_destroy(s->plans[i].plan);
  free(s->states);
  free(s->scratch);
  free(s->pos_buf);
  free(s->logits);
  free(s->routes);
  vn_ep_tally_free(&s->ep);
  free(s);
}

vnrt_status vnrt_session_create(vnrt_model *m, const vnrt_session_desc *desc, vnrt_session **out) {
  if (out) *out = NULL;
  if (!m || !out) {
    return fail(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_session_create: model and out are needed");
  }
  vnrt_session_desc d = {0};
  if (desc) {
    /* The first sized release ended before ep_simulate_ranks (docs/api.md, "ABI and
     * growth"): its size and 0 read that prefix, the rest keeps its default. */
    const size_t v1 = offsetof(vnrt_session_desc, ep_simulate_ranks);
    if (desc->size != 0 && desc->size != v1 && desc->size != sizeof d) {
      return fail(VNRT_ERROR_INVALID_ARGUMENT,
                  "vnrt_session_desc.size is %zu: no version of vnrt_session_desc had that size "
                  "(0, %zu or %zu)",
                  desc->size, v1, sizeof d);
    }
    memcpy(&d, desc, desc->size ? desc->size : v1);
  }
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
  vnrt_status st = compile_plan(s, &s->plans[0], 1);
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

/* Copies text[len] into buf[capacity] (NUL-terminated, cut short) and frees it. */
static vnrt_status give_text(char *text, size_t len, char *buf, size_t capacity,
                             size_t *out_length) {
  if (capacity > 0) {
    size_t n = len < capacity - 1 ? len : capacity - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
  }
  if (out_length) *out_length = len;
  free(text);
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
