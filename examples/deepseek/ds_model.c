/* ds_model: checks and binds the memory-mapped weights, and runs prefill and decode plans
 * that share states; the forward graph they run is built in ds_graph.c. */
#include "ds_model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_weights.h"
#include "vnrt/io.h"
#include "vnrt/memory.h"

/* ---- The model: weights, plans, sequence ------------------------------------------------ */

typedef struct state_entry {
  char name[DS_NAME_SIZE];
  size_t bytes;
} state_entry;

struct ds_model {
  vnrt_context *ctx;
  ds_config cfg;
  char *weights_path;
  vnrt_safetensors *file;
  ds_tensor_spec *specs;
  int32_t n_specs;
  void **derived; /* per spec: the bytes of a derived tensor, else NULL */
  vnrt_plan *prefill, *decode;
  int64_t prefill_len;
  state_entry *states;
  int32_t n_states;
  void *scratch; /* a state in transit from the prefill plan to the decode plan */
  size_t scratch_bytes;
  int32_t *pos_buf;
  int64_t pos; /* tokens in the current sequence */
  int started; /* a prefill ran since the last compile */
  ds_timing timing;
  vnrt_run_stats prefill_stats, decode_stats;
  ds_model_options options;
  vnrt_engram_store *stores[DS_MAX_ENGRAM_LAYERS]; /* with options.engram_store */
  char err[DS_ERR_SIZE];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static vnrt_status merr(ds_model *m, vnrt_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vnrt_status merr(ds_model *m, vnrt_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->err, sizeof m->err, fmt, ap);
  va_end(ap);
  return st;
}

/* "bf16[4096, 256]" */
static const char *type_str(const vnrt_tensor_type *t, char *buf, size_t size) {
  int used = snprintf(buf, size, "%s[", vnrt_dtype_name(t->dtype));
  for (int32_t i = 0; i < t->rank && used > 0 && (size_t)used < size; ++i) {
    used +=
        snprintf(buf + used, size - (size_t)used, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  }
  if (used > 0 && (size_t)used < size) snprintf(buf + used, size - (size_t)used, "]");
  return buf;
}

static int same_type(const vnrt_tensor_type *a, const vnrt_tensor_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int32_t i = 0; i < a->rank; ++i) {
    if (a->dims[i] != b->dims[i]) return 0;
  }
  return 1;
}

/* The first tensor of the file that the model does not use, or NULL. */
static const char *first_unexpected(const ds_model *m) {
  for (int32_t i = 0; i < vnrt_safetensors_count(m->file); ++i) {
    const char *name = vnrt_safetensors_name(m->file, i);
    const ds_tensor_spec *s = ds_tensor_spec_find(m->specs, m->n_specs, name);
    if (!s || s->derived) return name;
  }
  return NULL;
}

static vnrt_status check_weights(ds_model *m, const char *path) {
  for (int32_t i = 0; i < m->n_specs; ++i) {
    const ds_tensor_spec *s = &m->specs[i];
    if (s->derived) continue;
    vnrt_tensor_type t;
    vnrt_status st = vnrt_safetensors_find(m->file, s->name, &t, NULL, NULL);
    char want[96], got[96];
    if (st == VNRT_ERROR_NOT_FOUND) {
      const char *other = first_unexpected(m);
      return merr(m, st, "%s: missing tensor '%s' (%s)%s%s%s", path, s->name,
                  type_str(&s->type, want, sizeof want),
                  other ? "; the file has an unexpected tensor '" : "", other ? other : "",
                  other ? "' (misnamed?)" : "");
    }
    if (st != VNRT_OK) {
      return merr(m, st, "%s: tensor '%s': %s", path, s->name, vnrt_context_last_error(m->ctx));
    }
    if (!same_type(&t, &s->type)) {
      return merr(m, VNRT_ERROR_SHAPE_MISMATCH, "%s: tensor '%s' is %s but the config needs %s",
                  path, s->name, type_str(&t, got, sizeof got),
                  type_str(&s->type, want, sizeof want));
    }
  }
  const char *other = first_unexpected(m);
  if (other) {
    return merr(m, VNRT_ERROR_INVALID_ARGUMENT,
                "%s: unexpected tensor '%s': not part of the model this config describes", path,
                other);
  }
  return VNRT_OK;
}

/* A config without weight_format takes each group's format from the file: from the dtype of
 * the group's first matrix (e4m3: fp8, e2m1: fp4), so that the output of vnrt-quantize loads
 * with the unquantized config. check_weights then holds every matrix to it. */
static void take_formats(ds_model *m) {
  static const char *const first[DS_WG_COUNT] = {
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.mlp.shared_experts.gate_proj.weight",
      "model.layers.0.mlp.experts.gate_up_proj",
  };
  for (int g = 0; g < DS_WG_COUNT; ++g) {
    vnrt_tensor_type t;
    ds_wformat f = DS_WF_NONE;
    if (vnrt_safetensors_find(m->file, first[g], &t, NULL, NULL) == VNRT_OK) {
      if (t.dtype == VNRT_E4M3) f = DS_WF_FP8;
      if (t.dtype == VNRT_E2M1) f = DS_WF_FP4;
    }
    m->cfg.weight_format[g] = f;
  }
}

vnrt_status ds_model_open(vnrt_context *ctx, const ds_config *cfg, const char *weights_path,
                          ds_model **out_model, char *err, size_t err_size) {
  *out_model = NULL;
  ds_model *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, err_size, "out of memory");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  m->ctx = ctx;
  m->cfg = *cfg;
  m->weights_path = strdup(weights_path ? weights_path : "");
  vnrt_status st = m->weights_path ? VNRT_OK : VNRT_ERROR_OUT_OF_MEMORY;
  char why[DS_ERR_SIZE];
  if (st != VNRT_OK) {
    merr(m, st, "out of memory");
  } else if (ds_config_finish(&m->cfg, why, sizeof why)) {
    st = merr(m, VNRT_ERROR_INVALID_ARGUMENT, "config: %s", why);
  } else if ((st = vnrt_safetensors_open(ctx, weights_path, &m->file)) != VNRT_OK) {
    merr(m, st, "%s", vnrt_context_last_error(ctx));
  } else {
    if (!m->cfg.weight_format_given) take_formats(m);
    if (ds_config_finish(&m->cfg, why, sizeof why)) {
      st = merr(m, VNRT_ERROR_INVALID_ARGUMENT, "%s: the weights' formats: %s", weights_path, why);
    } else if (ds_tensor_specs(&m->cfg, &m->specs, &m->n_specs)) {
      st = merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory listing the tensors");
    } else {
      st = check_weights(m, weights_path);
    }
  }
  if (st == VNRT_OK) {
    m->derived = calloc((size_t)m->n_specs, sizeof *m->derived);
    m->pos_buf = calloc((size_t)m->cfg.max_seq, sizeof *m->pos_buf);
    if (!m->derived || !m->pos_buf) st = merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    for (int32_t i = 0; i < m->n_specs && st == VNRT_OK; ++i) {
      if (!m->specs[i].derived) continue;
      m->derived[i] = malloc(vnrt_tensor_type_bytes(&m->specs[i].type) + 1);
      if (!m->derived[i]) {
        st = merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
      } else {
        ds_tensor_fill(&m->cfg, &m->specs[i], m->derived[i]);
      }
    }
  }
  if (st != VNRT_OK) {
    snprintf(err, err_size, "%s", m->err);
    ds_model_close(m);
    return st;
  }
  *out_model = m;
  return VNRT_OK;
}

static void drop_plans(ds_model *m) {
  vnrt_plan_destroy(m->prefill);
  vnrt_plan_destroy(m->decode);
  m->prefill = m->decode = NULL;
  for (int32_t i = 0; i < DS_MAX_ENGRAM_LAYERS; ++i) {
    vnrt_engram_store_destroy(m->stores[i]); /* after the plans that borrow them */
    m->stores[i] = NULL;
  }
  free(m->states);
  m->states = NULL;
  m->n_states = 0;
  m->started = 0;
  m->pos = 0;
}

void ds_model_close(ds_model *m) {
  if (!m) return;
  drop_plans(m);
  for (int32_t i = 0; m->derived && i < m->n_specs; ++i) free(m->derived[i]);
  free(m->derived);
  free(m->specs);
  free(m->scratch);
  free(m->pos_buf);
  free(m->weights_path);
  vnrt_safetensors_close(m->file);
  free(m);
}

/* Compiles the graph for T tokens; the first compile also records the states' names. */
static vnrt_status compile_one(ds_model *m, vnrt_device *device, int64_t T,
                               const vnrt_plan_desc *desc, vnrt_plan *share, vnrt_plan **out,
                               double *seconds) {
  vnrt_graph *g = NULL;
  char why[DS_ERR_SIZE];
  vnrt_status st = ds_graph_build(m->ctx, &m->cfg, T, &g, why, sizeof why);
  if (st != VNRT_OK) return merr(m, st, "building the %lld-token graph: %s", (long long)T, why);
  if (!m->states) {
    int32_t n = vnrt_graph_state_count(g);
    m->states = calloc((size_t)(n > 0 ? n : 1), sizeof *m->states);
    if (!m->states) {
      vnrt_graph_destroy(g);
      return merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    for (int32_t i = 0; i < n; ++i) {
      vnrt_value v = vnrt_graph_state(g, i, NULL);
      vnrt_tensor_type t;
      vnrt_graph_value_type(g, v, &t);
      snprintf(m->states[i].name, sizeof m->states[i].name, "%s", vnrt_graph_value_name(g, v));
      m->states[i].bytes = vnrt_tensor_type_bytes(&t);
      if (m->states[i].bytes > m->scratch_bytes) {
        void *grown = realloc(m->scratch, m->states[i].bytes);
        if (!grown) {
          vnrt_graph_destroy(g);
          return merr(m, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
        }
        m->scratch = grown;
        m->scratch_bytes = m->states[i].bytes;
      }
    }
    m->n_states = n;
  }
  double t0 = now_s();
  st = vnrt_plan_create_shared(m->ctx, g, device, desc, share, out);
  *seconds = now_s() - t0;
  vnrt_graph_destroy(g);
  if (st != VNRT_OK) {
    return merr(m, st, "compiling the %lld-token plan: %s", (long long)T,
                vnrt_context_last_error(m->ctx));
  }
  return VNRT_OK;
}

/* The Engram store serving a tensor, or NULL. */
static vnrt_engram_store *store_for(const ds_model *m, const ds_tensor_spec *s) {
  if (!m->options.engram_store || !strstr(s->name, ".engram.embedding.weight")) return NULL;
  int32_t ei = ds_config_engram_index(&m->cfg, s->layer);
  return ei >= 0 ? m->stores[ei] : NULL;
}

static vnrt_status bind_weights(ds_model *m, vnrt_plan *plan) {
  for (int32_t i = 0; i < m->n_specs; ++i) {
    const ds_tensor_spec *s = &m->specs[i];
    if (store_for(m, s)) continue; /* the plan reads it through the store */
    const void *data = m->derived[i];
    size_t bytes = vnrt_tensor_type_bytes(&s->type);
    if (!s->derived) {
      vnrt_tensor_type t; /* checked against the spec when the file was opened */
      vnrt_status st = vnrt_safetensors_find(m->file, s->name, &t, &data, &bytes);
      if (st != VNRT_OK) {
        return merr(m, st, "tensor '%s': %s", s->name, vnrt_context_last_error(m->ctx));
      }
    }
    /* Borrowed: the mapping outlives the plans, so streamed weights are read from it. */
    vnrt_status st = vnrt_plan_set_input_ref(plan, s->name, data, bytes);
    if (st != VNRT_OK) {
      return merr(m, st, "binding '%s': %s", s->name, vnrt_context_last_error(m->ctx));
    }
  }
  return VNRT_OK;
}

vnrt_status ds_model_compile(ds_model *m, vnrt_device *device, int64_t prefill_len,
                             const ds_model_options *options) {
  if (!m) return VNRT_ERROR_INVALID_ARGUMENT;
  drop_plans(m);
  memset(&m->options, 0, sizeof m->options);
  if (options) m->options = *options;
  if (prefill_len < 1 || prefill_len > m->cfg.max_seq) {
    return merr(m, VNRT_ERROR_INVALID_ARGUMENT,
                "a prompt of %lld tokens: must be in [1, max_position_embeddings = %lld]",
                (long long)prefill_len, (long long)m->cfg.max_seq);
  }
  memset(&m->timing, 0, sizeof m->timing);
  memset(&m->prefill_stats, 0, sizeof m->prefill_stats);
  memset(&m->decode_stats, 0, sizeof m->decode_stats);
  vnrt_plan_desc desc = {0};
  desc.device_memory_limit = m->options.device_memory_limit;
  vnrt_engram_binding bindings[DS_MAX_ENGRAM_LAYERS];
  char table_names[DS_MAX_ENGRAM_LAYERS][DS_NAME_SIZE];
  vnrt_status st = VNRT_OK;
  if (m->options.engram_store) {
    for (int32_t i = 0; i < m->cfg.n_engram && st == VNRT_OK; ++i) {
      snprintf(table_names[i], sizeof table_names[i], "model.layers.%d.engram.embedding.weight",
               (int)m->cfg.engram_layer[i]);
      vnrt_engram_store_desc sd = {0};
      sd.file_path = m->weights_path;
      sd.tensor_name = table_names[i];
      sd.cache_slots = m->options.engram_cache_rows;
      st = vnrt_engram_store_create(m->ctx, &sd, &m->stores[i]);
      if (st != VNRT_OK) {
        merr(m, st, "Engram store for %s: %s", table_names[i], vnrt_context_last_error(m->ctx));
      }
      bindings[i].param = table_names[i];
      bindings[i].store = m->stores[i];
    }
    desc.engram = bindings;
    desc.n_engram = m->cfg.n_engram;
  }
  if (st == VNRT_OK) {
    st =
        compile_one(m, device, prefill_len, &desc, NULL, &m->prefill, &m->timing.compile_prefill_s);
  }
  if (st == VNRT_OK) {
    st = compile_one(m, device, 1, &desc, m->options.no_share ? NULL : m->prefill, &m->decode,
                     &m->timing.compile_decode_s);
  }
  double t0 = now_s();
  if (st == VNRT_OK) st = bind_weights(m, m->prefill);
  /* Every weight has the same name and shape in both graphs, so vnrt_plan_create_shared shares
   * all of them unless a plan streams some or replicates some for CPU fallback: then the
   * decode plan gets its own bindings too (a shared one is just written again). */
  vnrt_plan_info pi = {0}, di = {0};
  if (st == VNRT_OK) st = vnrt_plan_get_info(m->prefill, &pi);
  if (st == VNRT_OK) st = vnrt_plan_get_info(m->decode, &di);
  int all_shared = !m->options.no_share && pi.n_streamed_params == 0 && di.n_streamed_params == 0 &&
                   pi.n_fallback_nodes == 0 && di.n_fallback_nodes == 0;
  if (st == VNRT_OK && !all_shared) st = bind_weights(m, m->decode);
  m->timing.bind_s = now_s() - t0;
  if (st != VNRT_OK) {
    drop_plans(m);
    return st;
  }
  m->prefill_len = prefill_len;
  return VNRT_OK;
}

/* Binds the per-run inputs for tokens [first, first + T) of the sequence. */
static vnrt_status bind_step(ds_model *m, vnrt_plan *plan, const int32_t *ids, int64_t T,
                             int64_t first) {
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= m->cfg.vocab) {
      return merr(m, VNRT_ERROR_OUT_OF_RANGE,
                  "token id %d at position %lld is outside the vocabulary [0, %lld)", (int)ids[t],
                  (long long)(first + t), (long long)m->cfg.vocab);
    }
    m->pos_buf[t] = (int32_t)(first + t);
  }
  int32_t start = (int32_t)first, kv_len = (int32_t)(first + T);
  struct {
    const char *name;
    const void *data;
    size_t bytes;
  } in[4] = {{"ids", ids, (size_t)T * sizeof(int32_t)},
             {"pos", m->pos_buf, (size_t)T * sizeof(int32_t)},
             {"start", &start, sizeof start},
             {"kv_len", &kv_len, sizeof kv_len}};
  for (int i = 0; i < 4; ++i) {
    vnrt_status st = vnrt_plan_set_input(plan, in[i].name, in[i].data, in[i].bytes);
    if (st != VNRT_OK) {
      return merr(m, st, "input '%s': %s", in[i].name, vnrt_context_last_error(m->ctx));
    }
  }
  return VNRT_OK;
}

/* Adds one run's statistics to a sum (overlap summed too: averaged when reported). */
static void add_stats(vnrt_run_stats *sum, const vnrt_run_stats *r) {
  sum->wall_ns += r->wall_ns;
  sum->compute_ns += r->compute_ns;
  sum->copy_ns += r->copy_ns;
  sum->stall_ns += r->stall_ns;
  sum->overlap += r->overlap;
  sum->bytes_weights += r->bytes_weights;
  sum->bytes_engram += r->bytes_engram;
  sum->bytes_transfers += r->bytes_transfers;
  sum->engram_rows += r->engram_rows;
  sum->engram_hits += r->engram_hits;
}

static vnrt_status run_and_read(ds_model *m, vnrt_plan *plan, float *logits, int64_t T,
                                double *seconds, vnrt_run_stats *stats, const char *what) {
  double t0 = now_s();
  vnrt_status st = vnrt_plan_run(plan);
  *seconds += now_s() - t0;
  if (st != VNRT_OK) return merr(m, st, "%s: %s", what, vnrt_context_last_error(m->ctx));
  vnrt_run_stats r;
  if (vnrt_plan_get_run_stats(plan, &r) == VNRT_OK) add_stats(stats, &r);
  if (logits) {
    st = vnrt_plan_read_output(plan, "logits", logits,
                               (size_t)T * (size_t)m->cfg.vocab * sizeof(float));
    if (st != VNRT_OK) {
      return merr(m, st, "%s: reading logits: %s", what, vnrt_context_last_error(m->ctx));
    }
  }
  return VNRT_OK;
}

vnrt_status ds_model_prefill(ds_model *m, const int32_t *ids, float *logits) {
  if (!m || !ids) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!m->prefill) return merr(m, VNRT_ERROR_INVALID_ARGUMENT, "prefill: no compiled plans");
  m->started = 0;
  vnrt_status st = vnrt_plan_reset_state(m->prefill);
  if (st != VNRT_OK) return merr(m, st, "reset: %s", vnrt_context_last_error(m->ctx));
  if (m->cfg.n_engram > 0) {
    /* A new sequence has only pad tokens before its first one. */
    int32_t pads[DS_MAX_NGRAM];
    for (int i = 0; i < DS_MAX_NGRAM; ++i) pads[i] = m->cfg.pad_id;
    st = vnrt_plan_set_input(m->prefill, DS_NGRAM_HIST_STATE, pads,
                             (size_t)(m->cfg.ngram - 1) * sizeof(int32_t));
    if (st != VNRT_OK) return merr(m, st, "n-gram history: %s", vnrt_context_last_error(m->ctx));
  }
  st = bind_step(m, m->prefill, ids, m->prefill_len, 0);
  if (st == VNRT_OK) {
    st = run_and_read(m, m->prefill, logits, m->prefill_len, &m->timing.prefill_s,
                      &m->prefill_stats, "prefill");
  }
  if (st != VNRT_OK) return st;
  m->timing.prefill_runs++;
  /* The decode plan continues from the prefill plan's caches and histories. */
  for (int32_t i = 0; i < m->n_states; ++i) {
    const state_entry *s = &m->states[i];
    st = vnrt_plan_read_state(m->prefill, s->name, m->scratch, s->bytes);
    if (st == VNRT_OK) st = vnrt_plan_set_input(m->decode, s->name, m->scratch, s->bytes);
    if (st != VNRT_OK) {
      return merr(m, st, "handing state '%s' to the decode plan: %s", s->name,
                  vnrt_context_last_error(m->ctx));
    }
  }
  m->pos = m->prefill_len;
  m->started = 1;
  return VNRT_OK;
}

vnrt_status ds_model_decode(ds_model *m, int32_t id, float *logits) {
  if (!m) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!m->started) {
    return merr(m, VNRT_ERROR_INVALID_ARGUMENT, "decode: no sequence (run a prefill first)");
  }
  if (m->pos >= m->cfg.max_seq) {
    return merr(m, VNRT_ERROR_OUT_OF_RANGE,
                "decode: the KV cache is full (max_position_embeddings = %lld tokens)",
                (long long)m->cfg.max_seq);
  }
  vnrt_status st = bind_step(m, m->decode, &id, 1, m->pos);
  if (st == VNRT_OK) {
    st = run_and_read(m, m->decode, logits, 1, &m->timing.decode_s, &m->decode_stats, "decode");
  }
  if (st != VNRT_OK) return st;
  m->timing.decode_runs++;
  m->pos++;
  return VNRT_OK;
}

int64_t ds_model_position(const ds_model *m) { return m ? m->pos : 0; }
const char *ds_model_error(const ds_model *m) { return m ? m->err : "no model"; }
const ds_config *ds_model_config(const ds_model *m) { return m ? &m->cfg : NULL; }

vnrt_status ds_model_plan_info(const ds_model *m, vnrt_plan_info *prefill, vnrt_plan_info *decode) {
  if (!m || !m->prefill) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_status st = VNRT_OK;
  if (prefill) st = vnrt_plan_get_info(m->prefill, prefill);
  if (st == VNRT_OK && decode) st = vnrt_plan_get_info(m->decode, decode);
  return st;
}

void ds_model_timing(const ds_model *m, ds_timing *out) {
  if (m) {
    *out = m->timing;
  } else {
    memset(out, 0, sizeof *out);
  }
}

static void finish_stats(const vnrt_run_stats *sum, int64_t runs, vnrt_run_stats *out) {
  *out = *sum;
  out->overlap = runs > 0 ? sum->overlap / (double)runs : 0.0;
  out->engram_hit_rate =
      sum->engram_rows ? (double)sum->engram_hits / (double)sum->engram_rows : 0.0;
}

void ds_model_run_stats(const ds_model *m, vnrt_run_stats *prefill, vnrt_run_stats *decode) {
  vnrt_run_stats zero = {0};
  if (prefill) finish_stats(m ? &m->prefill_stats : &zero, m ? m->timing.prefill_runs : 0, prefill);
  if (decode) finish_stats(m ? &m->decode_stats : &zero, m ? m->timing.decode_runs : 0, decode);
}

int32_t ds_argmax(const float *v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return (int32_t)best;
}
