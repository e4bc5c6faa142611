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
  s->quant_pair = -1;
  s->master = dtype;
  return s;
}

void ds_scale_name(const char *weight_name, char *out, size_t size) {
  const size_t n = strlen(weight_name), suffix = strlen(".weight");
  const int stem =
      n > suffix && !strcmp(weight_name + n - suffix, ".weight") ? (int)(n - suffix) : (int)n;
  if (snprintf(out, size, "%.*s.scale", stem, weight_name) >= (int)size && size) {
    out[0] = 0; /* too long for a name: no tensor has it */
  }
}

void ds_quant_block(vnrt_dtype codes, int64_t block[2]) {
  block[0] = codes == VNRT_E2M1 ? 1 : 128;
  block[1] = codes == VNRT_E2M1 ? 32 : 128;
}

/* A big matrix of group g: weight_dtype, or codes of the group's format followed by their
 * e8m0 scale [leading dims..., ceil(rows / block rows), ceil(cols / block cols)]. */
static void add_matrix(spec_list *l, const ds_config *c, ds_wgroup g, int32_t layer, int32_t rank,
                       const int64_t *dims, double lo, double hi, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));
static void add_matrix(spec_list *l, const ds_config *c, ds_wgroup g, int32_t layer, int32_t rank,
                       const int64_t *dims, double lo, double hi, const char *fmt, ...) {
  char name[DS_NAME_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  const ds_wformat f = c->weight_format[g];
  if (f == DS_WF_NONE) {
    add(l, layer, c->weight_dtype, rank, dims, DS_INIT_UNIFORM, lo, hi, "%s", name);
    return;
  }
  const vnrt_dtype codes = f == DS_WF_FP4 ? VNRT_E2M1 : VNRT_E4M3;
  ds_tensor_spec *w = add(l, layer, codes, rank, dims, DS_INIT_UNIFORM, lo, hi, "%s", name);
  if (!w) return;
  w->master = c->weight_dtype;
  int64_t blk[2], sdims[VNRT_MAX_DIMS];
  ds_quant_block(codes, blk);
  for (int32_t i = 0; i < rank; ++i) sdims[i] = dims[i];
  sdims[rank - 2] = (dims[rank - 2] + blk[0] - 1) / blk[0];
  sdims[rank - 1] = (dims[rank - 1] + blk[1] - 1) / blk[1];
  char scale_name[DS_NAME_SIZE];
  ds_scale_name(name, scale_name, sizeof scale_name);
  ds_tensor_spec *sc =
      add(l, layer, VNRT_E8M0, rank, sdims, DS_INIT_QUANT_SCALE, 0, 0, "%s", scale_name);
  if (!sc) return;
  /* add may have moved the list: find the codes again by position. */
  l->items[l->count - 2].quant_pair = l->count - 1;
  sc->quant_pair = l->count - 2;
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
        add_matrix(&l, c, DS_WG_ATTENTION, li, DIMS(Hq * D, C), -lim(C, 1), lim(C, 1),
                   "model.layers.%d.self_attn.q_proj.weight", li);
        add_matrix(&l, c, DS_WG_ATTENTION, li, DIMS(D, C), -lim(C, 1), lim(C, 1),
                   "model.layers.%d.self_attn.k_proj.weight", li);
        add_matrix(&l, c, DS_WG_ATTENTION, li, DIMS(D, C), -lim(C, 1), lim(C, 1),
                   "model.layers.%d.self_attn.v_proj.weight", li);
        add_matrix(&l, c, DS_WG_ATTENTION, li, DIMS(C, Hq * D), -lim(Hq * D, out_gain),
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
    add_matrix(&l, c, DS_WG_EXPERTS, li, DIMS(E, 2 * F, C), -lim(C, 1), lim(C, 1),
               "model.layers.%d.mlp.experts.gate_up_proj", li);
    add_matrix(&l, c, DS_WG_EXPERTS, li, DIMS(E, C, F), -lim(F, out_gain), lim(F, out_gain),
               "model.layers.%d.mlp.experts.down_proj", li);
    if (Fs > 0) {
      add_matrix(&l, c, DS_WG_SHARED, li, DIMS(Fs, C), -lim(C, 1), lim(C, 1),
                 "model.layers.%d.mlp.shared_experts.gate_proj.weight", li);
      add_matrix(&l, c, DS_WG_SHARED, li, DIMS(Fs, C), -lim(C, 1), lim(C, 1),
                 "model.layers.%d.mlp.shared_experts.up_proj.weight", li);
      add_matrix(&l, c, DS_WG_SHARED, li, DIMS(C, Fs), -lim(Fs, out_gain), lim(Fs, out_gain),
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
    case DS_INIT_QUANT_SCALE:
      break; /* filled with its codes by ds_tensor_fill_quant */
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

/* v as the master dtype stores it. */
static float round_to(vnrt_dtype dtype, double v) {
  switch (dtype) {
    case VNRT_F16:
      return vnrt_f16_to_f32(vnrt_f32_to_f16((float)v));
    case VNRT_BF16:
      return vnrt_bf16_to_f32(vnrt_f32_to_bf16((float)v));
    default:
      return (float)v;
  }
}

int ds_tensor_fill_quant(const ds_config *cfg, const ds_tensor_spec *spec, void *codes_data,
                         void *scale_data) {
  const vnrt_tensor_type *t = &spec->type;
  const vnrt_dtype fmt = t->dtype;
  const int32_t r = t->rank;
  if ((fmt != VNRT_E4M3 && fmt != VNRT_E2M1) || r < 2) return -1;
  const int64_t numel = vnrt_tensor_type_numel(t);
  const int64_t rows = t->dims[r - 2], cols = t->dims[r - 1], lead = numel / (rows * cols);
  int64_t blk[2];
  ds_quant_block(fmt, blk);
  const int64_t brows = (rows + blk[0] - 1) / blk[0], bcols = (cols + blk[1] - 1) / blk[1];
  float *w = malloc((size_t)numel * sizeof *w);
  float *amax = calloc((size_t)(lead * brows * bcols), sizeof *amax);
  if (!w || !amax) {
    free(w);
    free(amax);
    return -1;
  }
  /* The master values: the same draws as an unquantized tensor of this name. */
  uint64_t state = name_seed(cfg->init_seed, spec->name);
  for (int64_t i = 0; i < numel; ++i) {
    w[i] = round_to(spec->master, spec->lo + (spec->hi - spec->lo) * next_unit(&state));
  }
  for (int64_t i = 0; i < numel; ++i) {
    const int64_t m = i / (rows * cols), row = i / cols % rows, col = i % cols;
    float *a = &amax[(m * brows + row / blk[0]) * bcols + col / blk[1]];
    if (fabsf(w[i]) > *a) *a = fabsf(w[i]);
  }
  const int64_t n_blocks = lead * brows * bcols;
  uint8_t *codes = codes_data, *scale = scale_data ? scale_data : malloc((size_t)n_blocks);
  if (!scale) {
    free(w);
    free(amax);
    return -1;
  }
  for (int64_t b = 0; b < n_blocks; ++b) scale[b] = vnrt_quant_block_scale(fmt, amax[b]);
  if (codes && fmt == VNRT_E2M1) memset(codes, 0, vnrt_tensor_type_bytes(t));
  for (int64_t i = 0; codes && i < numel; ++i) {
    const int64_t m = i / (rows * cols), row = i / cols % rows, col = i % cols;
    /* The scale is a power of two, so w / s is exact. */
    const float q =
        w[i] / vnrt_e8m0_to_f32(scale[(m * brows + row / blk[0]) * bcols + col / blk[1]]);
    if (fmt == VNRT_E4M3) {
      codes[i] = vnrt_f32_to_e4m3(q);
    } else {
      /* Rows have an even length, so element i is nibble i of the tensor: even in the low. */
      codes[i / 2] |= (uint8_t)(vnrt_f32_to_e2m1(q) << (i % 2 ? 4 : 0));
    }
  }
  if (scale != scale_data) free(scale);
  free(w);
  free(amax);
  return 0;
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
    if (specs[i].derived || specs[i].init == DS_INIT_QUANT_SCALE) continue; /* scale: below */
    const int32_t pair = specs[i].quant_pair;
    const int32_t parts = pair >= 0 ? 2 : 1; /* codes and their scale, or a plain tensor */
    for (int32_t p = 0; p < parts && st == VNRT_OK; ++p) {
      const ds_tensor_spec *s = &specs[p ? pair : i];
      size_t bytes = vnrt_tensor_type_bytes(&s->type);
      datas[n] = malloc(bytes ? bytes : 1);
      if (!datas[n]) {
        snprintf(err, err_size, "out of memory for %s (%zu bytes)", s->name, bytes);
        st = VNRT_ERROR_OUT_OF_MEMORY;
        break;
      }
      names[n] = s->name;
      types[n] = s->type;
      ++n;
    }
    if (st != VNRT_OK) break;
    if (pair < 0) {
      ds_tensor_fill(cfg, &specs[i], datas[n - 1]);
    } else if (ds_tensor_fill_quant(cfg, &specs[i], datas[n - 2], datas[n - 1])) {
      snprintf(err, err_size, "out of memory quantizing %s", specs[i].name);
      st = VNRT_ERROR_OUT_OF_MEMORY;
    }
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
