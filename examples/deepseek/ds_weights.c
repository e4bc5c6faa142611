/* ds_weights: the model's tensor list (names after Hugging Face's DeepSeek-V3/V4 modules) and
 * a deterministic generator whose scales keep every activation O(1). */
#include "ds_weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/io.h"

typedef struct spec_list {
  ds_tensor_spec *items;
  int32_t count, cap;
  int oom;
} spec_list;

static ds_tensor_spec *add(spec_list *l, int32_t layer, vnrt_dtype dtype, int32_t rank,
                           const int64_t *dims, ds_init init, double lo, double hi, const char *fmt,
                           ...) __attribute__((format(printf, 9, 10)));
static ds_tensor_spec *add(spec_list *l, int32_t layer, vnrt_dtype dtype, int32_t rank,
                           const int64_t *dims, ds_init init, double lo, double hi, const char *fmt,
                           ...) {
  if (l->oom) return NULL;
  if (l->count == l->cap) {
    int32_t cap = l->cap ? l->cap * 2 : 64;
    ds_tensor_spec *grown = realloc(l->items, (size_t)cap * sizeof *grown);
    if (!grown) {
      l->oom = 1;
      return NULL;
    }
    l->items = grown;
    l->cap = cap;
  }
  ds_tensor_spec *s = &l->items[l->count++];
  memset(s, 0, sizeof *s);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->name, sizeof s->name, fmt, ap);
  va_end(ap);
  s->type.dtype = dtype;
  s->type.rank = rank;
  for (int32_t i = 0; i < rank; ++i) s->type.dims[i] = dims[i];
  s->init = init;
  s->lo = (float)lo;
  s->hi = (float)hi;
  s->layer = layer;
  return s;
}

#define DIMS(...) \
  (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) { __VA_ARGS__ }

/* A matrix read as x · wᵀ with x of unit RMS: entries of variance 1/fan_in (times gain) keep
 * the result at unit RMS. */
static double lim(int64_t fan_in, double gain) { return gain * sqrt(3.0 / (double)fan_in); }

int ds_tensor_specs(const ds_config *c, ds_tensor_spec **out_specs, int32_t *out_count) {
  *out_specs = NULL;
  *out_count = 0;
  spec_list l = {0};
  const int64_t C = c->hidden, n = c->hc_mult, D = c->head_dim, Hq = c->heads;
  const int64_t E = c->experts, F = c->expert_ffn, Fs = c->shared * c->expert_ffn;
  const vnrt_dtype wd = c->weight_dtype;
  /* Sub-layer outputs are scaled down so the streams grow slowly over 2L additions. */
  const double out_gain = 1.0 / sqrt(2.0 * (double)c->layers);
  const double u1 = sqrt(3.0); /* uniform of unit variance */

  add(&l, -1, wd, DIMS(c->vocab, C), DS_INIT_UNIFORM, -u1, u1, "model.embed_tokens.weight");
  for (int32_t li = 0; li < (int32_t)c->layers; ++li) {
    int32_t ei = ds_config_engram_index(c, li);
    if (ei >= 0) {
      const int64_t H = c->engram_heads_total, Dh = c->engram_dim, dm = H * Dh;
      add(&l, li, wd, DIMS(c->engram_table_rows[ei], Dh), DS_INIT_UNIFORM, -u1, u1,
          "model.layers.%d.engram.embedding.weight", li);
      ds_tensor_spec *off = add(&l, li, VNRT_I32, DIMS(H), DS_INIT_OFFSETS, 0, 0,
                                "model.layers.%d.engram.embedding.offsets", li);
      if (off) off->derived = 1;
      add(&l, li, wd, DIMS(C, dm), DS_INIT_UNIFORM, -lim(dm, 1), lim(dm, 1),
          "model.layers.%d.engram.value_proj.weight", li);
      add(&l, li, wd, DIMS(n * C, dm), DS_INIT_UNIFORM, -lim(dm, 1), lim(dm, 1),
          "model.layers.%d.engram.key_proj.weight", li);
      add(&l, li, VNRT_F32, DIMS(n, C), DS_INIT_UNIFORM, 0.8, 1.2,
          "model.layers.%d.engram.norm_h.weight", li);
      add(&l, li, VNRT_F32, DIMS(n, C), DS_INIT_UNIFORM, 0.8, 1.2,
          "model.layers.%d.engram.norm_k.weight", li);
      add(&l, li, VNRT_F32, DIMS(n, C), DS_INIT_UNIFORM, 0.8, 1.2,
          "model.layers.%d.engram.conv_norm.weight", li);
      add(&l, li, VNRT_F32, DIMS(n * C, c->conv_kernel), DS_INIT_UNIFORM, -0.5, 0.5,
          "model.layers.%d.engram.conv.weight", li);
    }
    static const char *const sites[2] = {"attn_hc", "ffn_hc"};
    for (int s = 0; s < 2; ++s) {
      add(&l, li, VNRT_F32, DIMS((n + 2) * n, n * C), DS_INIT_UNIFORM, -lim(n * C, 1),
          lim(n * C, 1), "model.layers.%d.%s.fn", li, sites[s]);
      add(&l, li, VNRT_F32, DIMS((n + 2) * n), DS_INIT_HC_BASE, -0.5, 0.5,
          "model.layers.%d.%s.base", li, sites[s]);
      add(&l, li, VNRT_F32, DIMS(3), DS_INIT_UNIFORM, 0.3, 0.7, "model.layers.%d.%s.scale", li,
          sites[s]);
      if (s == 0) {
        add(&l, li, VNRT_F32, DIMS(C), DS_INIT_UNIFORM, 0.8, 1.2,
            "model.layers.%d.input_layernorm.weight", li);
        add(&l, li, wd, DIMS(Hq * D, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
            "model.layers.%d.self_attn.q_proj.weight", li);
        add(&l, li, wd, DIMS(D, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
            "model.layers.%d.self_attn.k_proj.weight", li);
        add(&l, li, wd, DIMS(D, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
            "model.layers.%d.self_attn.v_proj.weight", li);
        add(&l, li, wd, DIMS(C, Hq * D), DS_INIT_UNIFORM, -lim(Hq * D, out_gain),
            lim(Hq * D, out_gain), "model.layers.%d.self_attn.o_proj.weight", li);
        add(&l, li, VNRT_F32, DIMS(Hq), DS_INIT_UNIFORM, -1.0, 1.0,
            "model.layers.%d.self_attn.sinks", li);
      }
    }
    add(&l, li, VNRT_F32, DIMS(C), DS_INIT_UNIFORM, 0.8, 1.2,
        "model.layers.%d.post_attention_layernorm.weight", li);
    add(&l, li, VNRT_F32, DIMS(E, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
        "model.layers.%d.mlp.gate.weight", li);
    if (li < c->hash_layers) {
      add(&l, li, VNRT_I32, DIMS(c->vocab, c->top_k), DS_INIT_TID2EID, 0, 0,
          "model.layers.%d.mlp.gate.tid2eid", li);
    } else {
      add(&l, li, VNRT_F32, DIMS(E), DS_INIT_UNIFORM, -0.1, 0.1,
          "model.layers.%d.mlp.gate.e_score_correction_bias", li);
    }
    add(&l, li, wd, DIMS(E, 2 * F, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
        "model.layers.%d.mlp.experts.gate_up_proj", li);
    add(&l, li, wd, DIMS(E, C, F), DS_INIT_UNIFORM, -lim(F, out_gain), lim(F, out_gain),
        "model.layers.%d.mlp.experts.down_proj", li);
    if (Fs > 0) {
      add(&l, li, wd, DIMS(Fs, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
          "model.layers.%d.mlp.shared_experts.gate_proj.weight", li);
      add(&l, li, wd, DIMS(Fs, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1),
          "model.layers.%d.mlp.shared_experts.up_proj.weight", li);
      add(&l, li, wd, DIMS(C, Fs), DS_INIT_UNIFORM, -lim(Fs, out_gain), lim(Fs, out_gain),
          "model.layers.%d.mlp.shared_experts.down_proj.weight", li);
    }
  }
  add(&l, -1, VNRT_F32, DIMS(n, n * C), DS_INIT_UNIFORM, -lim(n * C, 1), lim(n * C, 1),
      "model.hc_head.fn");
  add(&l, -1, VNRT_F32, DIMS(n), DS_INIT_UNIFORM, -0.5, 0.5, "model.hc_head.base");
  add(&l, -1, VNRT_F32, DIMS(1), DS_INIT_UNIFORM, 0.3, 0.7, "model.hc_head.scale");
  add(&l, -1, VNRT_F32, DIMS(C), DS_INIT_UNIFORM, 0.8, 1.2, "model.norm.weight");
  add(&l, -1, wd, DIMS(c->vocab, C), DS_INIT_UNIFORM, -lim(C, 1), lim(C, 1), "lm_head.weight");
  if (l.oom) {
    free(l.items);
    return -1;
  }
  *out_specs = l.items;
  *out_count = l.count;
  return 0;
}

const ds_tensor_spec *ds_tensor_spec_find(const ds_tensor_spec *specs, int32_t count,
                                          const char *name) {
  for (int32_t i = 0; i < count; ++i) {
    if (!strcmp(specs[i].name, name)) return &specs[i];
  }
  return NULL;
}

/* splitmix64, seeded per tensor by its name, so that one tensor's values do not depend on
 * which others exist or their order. */
static uint64_t next_u64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double next_unit(uint64_t *state) { return (double)(next_u64(state) >> 11) * 0x1p-53; }

static uint64_t name_seed(uint64_t seed, const char *name) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)name; *p; ++p) {
    h = (h ^ *p) * 0x100000001b3ull;
  }
  return h ^ (seed * 0x9E3779B97F4A7C15ull);
}

static void store(vnrt_dtype dtype, void *data, int64_t i, double v) {
  switch (dtype) {
    case VNRT_F16:
      ((uint16_t *)data)[i] = vnrt_f32_to_f16((float)v);
      break;
    case VNRT_BF16:
      ((uint16_t *)data)[i] = vnrt_f32_to_bf16((float)v);
      break;
    case VNRT_I32:
      ((int32_t *)data)[i] = (int32_t)v;
      break;
    default:
      ((float *)data)[i] = (float)v;
      break;
  }
}

void ds_tensor_fill(const ds_config *cfg, const ds_tensor_spec *spec, void *data) {
  uint64_t state = name_seed(cfg->init_seed, spec->name);
  const int64_t numel = vnrt_tensor_type_numel(&spec->type);
  const vnrt_dtype dt = spec->type.dtype;
  switch (spec->init) {
    case DS_INIT_UNIFORM:
      for (int64_t i = 0; i < numel; ++i) {
        store(dt, data, i, spec->lo + (spec->hi - spec->lo) * next_unit(&state));
      }
      break;
    case DS_INIT_HC_BASE: {
      /* Rows [pre (n), post (n), comb (n x n)]: comb leans to the identity (a plain residual
       * per stream) but mixes visibly, so that a transposed comb shows; the gates anywhere in
       * (lo, hi). */
      const int64_t n = cfg->hc_mult;
      for (int64_t i = 0; i < numel; ++i) {
        double u = next_unit(&state);
        double v;
        if (i < 2 * n) {
          v = spec->lo + (spec->hi - spec->lo) * u;
        } else {
          int64_t r = (i - 2 * n) / n, col = (i - 2 * n) % n;
          v = (r == col ? 1.0 : 0.0) + 2.0 * (u - 0.5);
        }
        store(dt, data, i, v);
      }
      break;
    }
    case DS_INIT_TID2EID: {
      const int64_t k = spec->type.dims[1], experts = cfg->experts;
      int32_t *out = data;
      for (int64_t t = 0; t < spec->type.dims[0]; ++t) {
        for (int64_t j = 0; j < k; ++j) {
          int32_t e;
          int dup;
          do {
            e = (int32_t)(next_u64(&state) % (uint64_t)experts);
            dup = 0;
            for (int64_t q = 0; q < j; ++q) dup |= out[t * k + q] == e;
          } while (dup);
          out[t * k + j] = e;
        }
      }
      break;
    }
    case DS_INIT_OFFSETS: {
      int32_t ei = ds_config_engram_index(cfg, spec->layer);
      int64_t acc = 0;
      for (int64_t h = 0; h < numel; ++h) {
        ((int32_t *)data)[h] = (int32_t)acc;
        acc += ei >= 0 ? cfg->engram_primes[ei][h] : 0;
      }
      break;
    }
  }
}

uint64_t ds_weights_bytes(const ds_config *cfg) {
  ds_tensor_spec *specs = NULL;
  int32_t count = 0;
  if (ds_tensor_specs(cfg, &specs, &count)) return 0;
  uint64_t total = 0;
  for (int32_t i = 0; i < count; ++i) {
    if (!specs[i].derived) total += vnrt_tensor_type_bytes(&specs[i].type);
  }
  free(specs);
  return total;
}

vnrt_status ds_weights_generate(vnrt_context *ctx, const ds_config *cfg, const char *path,
                                char *err, size_t err_size) {
  ds_tensor_spec *specs = NULL;
  int32_t count = 0;
  if (ds_tensor_specs(cfg, &specs, &count)) {
    snprintf(err, err_size, "out of memory listing the tensors");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  const char **names = calloc((size_t)count, sizeof *names);
  vnrt_tensor_type *types = calloc((size_t)count, sizeof *types);
  void **datas = calloc((size_t)count, sizeof *datas);
  vnrt_status st = VNRT_OK;
  int32_t n = 0;
  if (!names || !types || !datas) {
    snprintf(err, err_size, "out of memory");
    st = VNRT_ERROR_OUT_OF_MEMORY;
  }
  for (int32_t i = 0; i < count && st == VNRT_OK; ++i) {
    if (specs[i].derived) continue;
    size_t bytes = vnrt_tensor_type_bytes(&specs[i].type);
    datas[n] = malloc(bytes ? bytes : 1);
    if (!datas[n]) {
      snprintf(err, err_size, "out of memory for %s (%zu bytes)", specs[i].name, bytes);
      st = VNRT_ERROR_OUT_OF_MEMORY;
      break;
    }
    ds_tensor_fill(cfg, &specs[i], datas[n]);
    names[n] = specs[i].name;
    types[n] = specs[i].type;
    ++n;
  }
  if (st == VNRT_OK) {
    st = vnrt_safetensors_write(ctx, path, names, types, (const void *const *)datas, n);
    if (st != VNRT_OK) snprintf(err, err_size, "%s", vnrt_context_last_error(ctx));
  }
  for (int32_t i = 0; datas && i < n; ++i) free(datas[i]);
  free(datas);
  free(types);
  free(names);
  free(specs);
  return st;
}
