/* DeepSeek-V4 config.json parsing and validation (v4_config.h), with json-c. */
#include "v4_config.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"

#define DIM_MAX ((int64_t)1 << 31)

typedef struct parser {
  json_object *root;
  char *err;
  size_t err_size;
  const char *file; /* message prefix */
  vnrt_status status;
} parser;

static const char *json_type_label(json_object *v) {
  switch (json_object_get_type(v)) {
    case json_type_null:
      return "null";
    case json_type_boolean:
      return "a boolean";
    case json_type_double:
      return "a number with a fraction";
    case json_type_int:
      return "an integer";
    case json_type_object:
      return "an object";
    case json_type_array:
      return "an array";
    case json_type_string:
      return "a string";
  }
  return "?";
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static bool
fail(parser *p, const char *fmt, ...) {
  if (p->status != VNRT_OK) return false; /* keep the first message */
  p->status = VNRT_ERROR_INVALID_ARGUMENT;
  if (p->err && p->err_size) {
    int n = snprintf(p->err, p->err_size, "%s: ", p->file);
    if (n < 0) n = 0;
    if ((size_t)n < p->err_size) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return false;
}

/* The member key of obj (obj_name for messages: "" at the top level); NULL when absent (an
 * error when required). */
static json_object *member(parser *p, json_object *obj, const char *obj_name, const char *key,
                           bool required) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(obj, key, &v) || v == NULL) {
    if (required) fail(p, "required field %s%s is missing", obj_name, key);
    return NULL;
  }
  return v;
}

static bool get_int(parser *p, json_object *obj, const char *obj_name, const char *key,
                    bool required, int64_t lo, int64_t hi, int64_t *out) {
  json_object *v = member(p, obj, obj_name, key, required);
  if (!v) return !required;
  if (!json_object_is_type(v, json_type_int))
    return fail(p, "%s%s must be an integer, not %s", obj_name, key, json_type_label(v));
  errno = 0;
  int64_t x = json_object_get_int64(v);
  if (errno == ERANGE || x < lo || x > hi)
    return fail(p, "%s%s is %s, which is outside [%lld, %lld]", obj_name, key,
                json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), (long long)lo,
                (long long)hi);
  *out = x;
  return true;
}

static bool get_i32(parser *p, json_object *obj, const char *key, bool required, int64_t lo,
                    int64_t hi, int32_t *out) {
  int64_t x = *out;
  if (!get_int(p, obj, "", key, required, lo, hi, &x)) return false;
  *out = (int32_t)x;
  return true;
}

/* A finite number (integer or not) in [lo, hi]. */
static bool get_num(parser *p, json_object *obj, const char *obj_name, const char *key,
                    bool required, double lo, double hi, double *out) {
  json_object *v = member(p, obj, obj_name, key, required);
  if (!v) return !required;
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
    return fail(p, "%s%s must be a number, not %s", obj_name, key, json_type_label(v));
  double x = json_object_get_double(v);
  if (!isfinite(x) || x < lo || x > hi)
    return fail(p, "%s%s is %g, which is outside [%g, %g]", obj_name, key, x, lo, hi);
  *out = x;
  return true;
}

static bool get_bool(parser *p, json_object *obj, const char *key, bool required, bool *out) {
  json_object *v = member(p, obj, "", key, required);
  if (!v) return !required;
  if (!json_object_is_type(v, json_type_boolean))
    return fail(p, "%s must be a boolean, not %s", key, json_type_label(v));
  *out = json_object_get_boolean(v);
  return true;
}

/* A string member copied into out[out_size]; when allowed is not NULL (a NULL-terminated
 * list) the value must be one of them. */
static bool get_str(parser *p, json_object *obj, const char *obj_name, const char *key,
                    bool required, const char *const *allowed, char *out, size_t out_size) {
  json_object *v = member(p, obj, obj_name, key, required);
  if (!v) return !required;
  if (!json_object_is_type(v, json_type_string))
    return fail(p, "%s%s must be a string, not %s", obj_name, key, json_type_label(v));
  const char *s = json_object_get_string(v);
  if (allowed) {
    bool ok = false;
    for (const char *const *a = allowed; *a; a++) ok = ok || strcmp(*a, s) == 0;
    if (!ok) {
      char list[128] = "";
      for (const char *const *a = allowed; *a; a++) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s\"%s\"", a == allowed ? "" : ", ", *a);
      }
      return fail(p, "%s%s is \"%.64s\", which is not supported (expected %s)", obj_name, key, s,
                  list);
    }
  }
  if (strlen(s) >= out_size)
    return fail(p, "%s%s \"%.64s\" is too long (at most %zu characters)", obj_name, key, s,
                out_size - 1);
  memcpy(out, s, strlen(s) + 1);
  return true;
}

static bool multiple_of(parser *p, const char *key, int64_t v, int64_t m, const char *why) {
  if (v % m != 0)
    return fail(p, "%s is %lld, which is not a multiple of %lld (%s)", key, (long long)v,
                (long long)m, why);
  return true;
}

/* quantization_config: present, DeepSeek's FP8 layout (only e4m3 with ue8m0 scales over
 * 128x128 blocks); absent or null, a dequantized checkpoint with BF16 weights. */
static bool parse_quantization(parser *p, json_object *r, vn_v4_config *c) {
  json_object *qc = member(p, r, "", "quantization_config", false);
  c->quantized = qc && !json_object_is_type(qc, json_type_null);
  if (c->quantized && !json_object_is_type(qc, json_type_object))
    return fail(p, "quantization_config must be an object, not %s", json_type_label(qc));
  vn_v4_quantization_config *q = &c->quantization_config;
  memset(q, 0, sizeof *q);
  if (!c->quantized) return true; /* a dequantized (BF16) checkpoint */
  static const char *const kFmt[] = {"e4m3", NULL}, *const kScaleFmt[] = {"ue8m0", NULL},
                           *const kMethod[] = {"fp8", NULL}, *const kScheme[] = {"dynamic", NULL};
  if (!get_str(p, qc, "quantization_config.", "fmt", true, kFmt, q->fmt, sizeof q->fmt) ||
      !get_str(p, qc, "quantization_config.", "scale_fmt", true, kScaleFmt, q->scale_fmt,
               sizeof q->scale_fmt) ||
      !get_str(p, qc, "quantization_config.", "quant_method", true, kMethod, q->quant_method,
               sizeof q->quant_method) ||
      !get_str(p, qc, "quantization_config.", "activation_scheme", true, kScheme,
               q->activation_scheme, sizeof q->activation_scheme))
    return false;
  json_object *wbs = member(p, qc, "quantization_config.", "weight_block_size", true);
  if (!wbs) return false;
  if (!json_object_is_type(wbs, json_type_array) || json_object_array_length(wbs) != 2)
    return fail(p, "quantization_config.weight_block_size must be an array of 2 integers");
  for (size_t i = 0; i < 2; i++) {
    json_object *e = json_object_array_get_idx(wbs, i);
    if (!json_object_is_type(e, json_type_int) || json_object_get_int64(e) != 128)
      return fail(p,
                  "quantization_config.weight_block_size[%zu] is %s; only [128, 128] is "
                  "supported",
                  i, json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
    q->weight_block_size[i] = 128;
  }
  return true;
}

static bool parse_fields(parser *p, vn_v4_config *c) {
  json_object *r = p->root;
  if (!json_object_is_type(r, json_type_object))
    return fail(p, "the top level must be a JSON object, not %s", json_type_label(r));
  static const char *const kModelType[] = {"deepseek_v4", NULL};
  char model_type[32];
  if (!get_str(p, r, "", "model_type", true, kModelType, model_type, sizeof model_type))
    return false;

  bool ok =
      get_int(p, r, "", "vocab_size", true, 1, DIM_MAX, &c->vocab_size) &&
      get_int(p, r, "", "hidden_size", true, 1, DIM_MAX, &c->hidden_size) &&
      get_i32(p, r, "num_hidden_layers", true, 1, VN_V4_MAX_RATIOS, &c->num_hidden_layers) &&
      get_i32(p, r, "num_attention_heads", true, 1, 65536, &c->num_attention_heads) &&
      get_i32(p, r, "num_key_value_heads", true, 1, 1, &c->num_key_value_heads) &&
      get_int(p, r, "", "head_dim", true, 1, DIM_MAX, &c->head_dim) &&
      get_int(p, r, "", "qk_rope_head_dim", true, 0, DIM_MAX, &c->qk_rope_head_dim) &&
      get_int(p, r, "", "q_lora_rank", true, 1, DIM_MAX, &c->q_lora_rank) &&
      get_i32(p, r, "o_groups", true, 1, 65536, &c->o_groups) &&
      get_int(p, r, "", "o_lora_rank", true, 1, DIM_MAX, &c->o_lora_rank) &&
      get_int(p, r, "", "sliding_window", true, 1, DIM_MAX, &c->sliding_window) &&
      get_num(p, r, "", "compress_rope_theta", true, 1e-30, 1e30, &c->compress_rope_theta) &&
      get_num(p, r, "", "rope_theta", true, 1e-30, 1e30, &c->rope_theta) &&
      get_int(p, r, "", "max_position_embeddings", true, 1, (int64_t)1 << 40,
              &c->max_position_embeddings) &&
      get_i32(p, r, "index_n_heads", true, 1, 65536, &c->index_n_heads) &&
      get_int(p, r, "", "index_head_dim", true, 1, DIM_MAX, &c->index_head_dim) &&
      get_int(p, r, "", "index_topk", true, 1, DIM_MAX, &c->index_topk) &&
      get_i32(p, r, "n_routed_experts", true, 1, 65536, &c->n_routed_experts) &&
      get_i32(p, r, "n_shared_experts", true, 1, 1, &c->n_shared_experts) &&
      get_i32(p, r, "num_experts_per_tok", true, 1, 65536, &c->num_experts_per_tok) &&
      get_int(p, r, "", "moe_intermediate_size", true, 1, DIM_MAX, &c->moe_intermediate_size) &&
      get_i32(p, r, "num_hash_layers", true, 0, VN_V4_MAX_RATIOS, &c->num_hash_layers) &&
      get_bool(p, r, "norm_topk_prob", true, &c->norm_topk_prob) &&
      get_num(p, r, "", "routed_scaling_factor", true, 1e-30, 1e30, &c->routed_scaling_factor) &&
      get_num(p, r, "", "swiglu_limit", true, 0, 1e30, &c->swiglu_limit) &&
      get_i32(p, r, "hc_mult", true, 1, 64, &c->hc_mult) &&
      get_i32(p, r, "hc_sinkhorn_iters", true, 1, 1000, &c->hc_sinkhorn_iters) &&
      get_num(p, r, "", "hc_eps", true, 0, 1, &c->hc_eps) &&
      get_num(p, r, "", "rms_norm_eps", true, 0, 1, &c->rms_norm_eps) &&
      get_i32(p, r, "num_nextn_predict_layers", false, 0, 16, &c->num_nextn_predict_layers) &&
      get_bool(p, r, "tie_word_embeddings", false, &c->tie_word_embeddings) &&
      get_bool(p, r, "attention_bias", false, &c->attention_bias) &&
      get_int(p, r, "", "bos_token_id", false, 0, DIM_MAX, &c->bos_token_id) &&
      get_int(p, r, "", "eos_token_id", false, 0, DIM_MAX, &c->eos_token_id);
  if (!ok) return false;

  static const char *const kAct[] = {"silu", NULL};
  if (!get_str(p, r, "", "hidden_act", true, kAct, c->hidden_act, sizeof c->hidden_act))
    return false;
  if (!get_str(p, r, "", "torch_dtype", false, NULL, c->torch_dtype, sizeof c->torch_dtype))
    return false;
  if (!get_str(p, r, "", "topk_method", true, NULL, c->topk_method, sizeof c->topk_method))
    return false;

  static const char *const kScoring[] = {"sqrtsoftplus", "softmax", "sigmoid", NULL};
  char scoring[16];
  if (!get_str(p, r, "", "scoring_func", true, kScoring, scoring, sizeof scoring)) return false;
  c->scoring_func = strcmp(scoring, "sqrtsoftplus") == 0 ? VN_V4_SCORING_SQRTSOFTPLUS
                    : strcmp(scoring, "softmax") == 0    ? VN_V4_SCORING_SOFTMAX
                                                         : VN_V4_SCORING_SIGMOID;

  static const char *const kExpert[] = {"fp4", "fp8", NULL};
  char expert[8];
  c->expert_dtype = VN_V4_DEFAULT_EXPERT_DTYPE;
  json_object *ed = member(p, r, "", "expert_dtype", false);
  if (ed && !json_object_is_type(ed, json_type_null)) {
    if (!get_str(p, r, "", "expert_dtype", true, kExpert, expert, sizeof expert)) return false;
    c->expert_dtype = strcmp(expert, "fp4") == 0 ? VN_V4_EXPERT_FP4 : VN_V4_EXPERT_FP8;
    c->expert_dtype_present = true;
  }

  /* rope_scaling */
  json_object *rs = member(p, r, "", "rope_scaling", true);
  if (!rs) return false;
  if (!json_object_is_type(rs, json_type_object))
    return fail(p, "rope_scaling must be an object, not %s", json_type_label(rs));
  static const char *const kYarn[] = {"yarn", NULL};
  vn_v4_rope_scaling *y = &c->rope_scaling;
  /* HF writes the kind as "type" (older) or "rope_type". */
  const char *type_key = json_object_object_get_ex(rs, "type", NULL) ? "type" : "rope_type";
  if (!get_str(p, rs, "rope_scaling.", type_key, true, kYarn, y->type, sizeof y->type) ||
      !get_num(p, rs, "rope_scaling.", "factor", true, 1e-30, 1e30, &y->factor) ||
      !get_int(p, rs, "rope_scaling.", "original_max_position_embeddings", true, 1,
               (int64_t)1 << 40, &y->original_max_position_embeddings) ||
      !get_num(p, rs, "rope_scaling.", "beta_fast", true, 1e-30, 1e30, &y->beta_fast) ||
      !get_num(p, rs, "rope_scaling.", "beta_slow", true, 1e-30, 1e30, &y->beta_slow))
    return false;
  if (!(y->beta_fast > y->beta_slow))
    return fail(p, "rope_scaling.beta_fast (%g) must be greater than rope_scaling.beta_slow (%g)",
                y->beta_fast, y->beta_slow);

  if (!parse_quantization(p, r, c)) return false;

  /* compress_ratios */
  json_object *cr = member(p, r, "", "compress_ratios", true);
  if (!cr) return false;
  if (!json_object_is_type(cr, json_type_array))
    return fail(p, "compress_ratios must be an array, not %s", json_type_label(cr));
  size_t n = json_object_array_length(cr);
  if (n < (size_t)c->num_hidden_layers || n > VN_V4_MAX_RATIOS)
    return fail(p,
                "compress_ratios has %zu entries; it needs one per layer: at least "
                "num_hidden_layers (%d) and at most %d",
                n, c->num_hidden_layers, VN_V4_MAX_RATIOS);
  if (n < (size_t)c->num_hidden_layers + (size_t)c->num_nextn_predict_layers)
    return fail(p,
                "compress_ratios has %zu entries, fewer than num_hidden_layers + "
                "num_nextn_predict_layers (%d + %d)",
                n, c->num_hidden_layers, c->num_nextn_predict_layers);
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(cr, i);
    int64_t v = json_object_is_type(e, json_type_int) ? json_object_get_int64(e) : -1;
    if (!json_object_is_type(e, json_type_int) || (v != 0 && v != 4 && v != 128))
      return fail(p, "compress_ratios[%zu] is %s; each ratio must be 0, 4 or 128", i,
                  json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
    c->compress_ratios[i] = (int32_t)v;
  }
  c->n_compress_ratios = (int32_t)n;
  return true;
}

/* Relations between fields, and the sizes' products. */
static bool check_relations(parser *p, vn_v4_config *c) {
  const char *aq = "activation quantization works in blocks of 128";
  if (!multiple_of(p, "hidden_size", c->hidden_size, 128, aq) ||
      !multiple_of(p, "q_lora_rank", c->q_lora_rank, 128, aq) ||
      !multiple_of(p, "moe_intermediate_size", c->moe_intermediate_size, 128, aq) ||
      !multiple_of(p, "o_lora_rank", c->o_lora_rank, 128, aq) ||
      !multiple_of(p, "qk_rope_head_dim", c->qk_rope_head_dim, 2, "RoPE rotates pairs"))
    return false;
  if (c->head_dim <= c->qk_rope_head_dim)
    return fail(p, "head_dim (%lld) must be greater than qk_rope_head_dim (%lld)",
                (long long)c->head_dim, (long long)c->qk_rope_head_dim);
  if (!multiple_of(p, "head_dim - qk_rope_head_dim", c->head_dim - c->qk_rope_head_dim, 64,
                   "the KV cache quantizes the non-RoPE channels in blocks of 64"))
    return false;
  if (c->num_attention_heads % c->o_groups != 0)
    return fail(p, "num_attention_heads (%d) is not divisible by o_groups (%d)",
                c->num_attention_heads, c->o_groups);
  /* wo_a's input is H * D / G, quantized per 128. */
  if (!multiple_of(p, "num_attention_heads * head_dim / o_groups",
                   (int64_t)c->num_attention_heads * c->head_dim / c->o_groups, 128, aq))
    return false;
  int64_t di = c->index_head_dim;
  if ((di & (di - 1)) != 0)
    return fail(p,
                "index_head_dim is %lld, which is not a power of 2 (the indexer's Hadamard "
                "transform)",
                (long long)di);
  if (!multiple_of(p, "index_head_dim", di, 32, "FP4 activation blocks of 32")) return false;
  if (di <= c->qk_rope_head_dim)
    return fail(p, "index_head_dim (%lld) must be greater than qk_rope_head_dim (%lld)",
                (long long)di, (long long)c->qk_rope_head_dim);
  if (c->num_experts_per_tok > c->n_routed_experts)
    return fail(p, "num_experts_per_tok (%d) is greater than n_routed_experts (%d)",
                c->num_experts_per_tok, c->n_routed_experts);
  if (c->num_hash_layers > c->num_hidden_layers)
    return fail(p, "num_hash_layers (%d) is greater than num_hidden_layers (%d)",
                c->num_hash_layers, c->num_hidden_layers);
  if (c->tie_word_embeddings)
    return fail(p,
                "tie_word_embeddings is true, which is not supported (V4 has its own "
                "head.weight)");
  if (c->attention_bias) return fail(p, "attention_bias is true, which is not supported");
  if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
    return fail(p, "bos_token_id (%lld) / eos_token_id (%lld) must be below vocab_size (%lld)",
                (long long)c->bos_token_id, (long long)c->eos_token_id, (long long)c->vocab_size);

  /* Products that shape tensors: each must stay <= 2^31 (a row or dim) and every tensor's
   * element count <= 2^62, so that byte sizes and offsets fit in 64 bits with room. */
  const int64_t H = c->num_attention_heads, D = c->head_dim, G = c->o_groups;
  struct {
    const char *what;
    int64_t a, b;
  } dims[] = {
      {"num_attention_heads * head_dim", H, D},
      {"o_groups * o_lora_rank", G, c->o_lora_rank},
      {"index_n_heads * index_head_dim", c->index_n_heads, di},
      {"(2 + hc_mult) * hc_mult", 2 + (int64_t)c->hc_mult, c->hc_mult},
      {"hc_mult * hidden_size", c->hc_mult, c->hidden_size},
      {"2 * moe_intermediate_size", 2, c->moe_intermediate_size},
      {"2 * head_dim", 2, D},
      {"2 * index_head_dim", 2, di},
  };
  for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
    if (dims[i].a * dims[i].b > DIM_MAX)
      return fail(p, "%s is %lld, more than 2^31", dims[i].what,
                  (long long)(dims[i].a * dims[i].b));
  /* Every tensor is at most two of these dims: a product of two values <= 2^31 is <= 2^62.
   * The whole checkpoint: per layer at most ~(E * 3 + 64) such tensors, times <= 512 layers,
   * can still overflow; the inventory walk sums in unsigned 64 bits and the plan checks. */
  return true;
}

/* ---- Engram (optional) ----------------------------------------------------------------- */

/* splitmix64: the generator of the Engram hash multipliers. */
static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static bool is_prime(int64_t v) {
  if (v < 2) return false;
  for (int64_t d = 2; d * d <= v; ++d)
    if (v % d == 0) return false;
  return true;
}

/* The engram_* fields: absent engram_layer_ids = no Engram (and then no other engram_* field
 * may be set). The multipliers and table sizes are derived as docs/deepseek-v4.md says. */
static bool parse_engram(parser *p, vn_v4_config *c) {
  json_object *r = p->root;
  vn_v4_engram *e = &c->engram;
  static const char *const kFields[] = {"engram_max_ngram_size",
                                        "engram_n_head_per_ngram",
                                        "engram_head_dim",
                                        "engram_vocab_size",
                                        "engram_kernel_size",
                                        "engram_dilation",
                                        "engram_pad_id",
                                        "engram_seed",
                                        NULL};
  json_object *ids = member(p, r, "", "engram_layer_ids", false);
  if (!ids || json_object_is_type(ids, json_type_null)) {
    for (const char *const *f = kFields; *f; f++)
      if (member(p, r, "", *f, false))
        return fail(p, "%s is set but engram_layer_ids is absent (no Engram layers)", *f);
    return true;
  }
  if (!json_object_is_type(ids, json_type_array))
    return fail(p, "engram_layer_ids must be an array of layer indices, not %s",
                json_type_label(ids));
  size_t n = json_object_array_length(ids);
  if (n > VN_V4_MAX_ENGRAM_LAYERS)
    return fail(p, "engram_layer_ids has %zu entries, more than %d", n, VN_V4_MAX_ENGRAM_LAYERS);
  for (size_t i = 0; i < n; i++) {
    json_object *v = json_object_array_get_idx(ids, i);
    int64_t x = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
    if (!json_object_is_type(v, json_type_int) || x < 0 || x >= c->num_hidden_layers)
      return fail(p, "engram_layer_ids[%zu] is %s, which is not a decoder layer in [0, %d)", i,
                  json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), c->num_hidden_layers);
    for (size_t j = 0; j < i; j++)
      if (e->layer_ids[j] == (int32_t)x)
        return fail(p, "engram_layer_ids lists layer %lld twice", (long long)x);
    e->layer_ids[i] = (int32_t)x;
  }
  e->n_layers = (int32_t)n;
  e->max_n = 3;
  e->heads_per_ngram = 8;
  e->head_dim = 32;
  e->vocab_size = 1009;
  e->kernel_size = 4;
  e->pad_id = 0;
  int64_t seed = 0;
  if (!get_i32(p, r, "engram_max_ngram_size", false, 2, VN_V4_MAX_NGRAM, &e->max_n)) return false;
  e->dilation = e->max_n;
  if (!get_i32(p, r, "engram_n_head_per_ngram", false, 1, VN_V4_MAX_ENGRAM_HEADS / (e->max_n - 1),
               &e->heads_per_ngram) ||
      !get_int(p, r, "", "engram_head_dim", false, 1, 65536, &e->head_dim) ||
      !get_int(p, r, "", "engram_vocab_size", false, 2, (int64_t)1 << 26, &e->vocab_size) ||
      !get_i32(p, r, "engram_kernel_size", false, 2, 16, &e->kernel_size) ||
      !get_i32(p, r, "engram_dilation", false, 1, 64, &e->dilation) ||
      !get_i32(p, r, "engram_pad_id", false, 0, c->vocab_size - 1, &e->pad_id) ||
      !get_int(p, r, "", "engram_seed", false, 0, INT64_MAX, &seed))
    return false;
  e->seed = (uint64_t)seed;
  e->heads = (e->max_n - 1) * e->heads_per_ngram;
  if (e->heads * e->head_dim > DIM_MAX)
    return fail(p,
                "(engram_max_ngram_size - 1) * engram_n_head_per_ngram * engram_head_dim is "
                "%lld, more than 2^31",
                (long long)(e->heads * e->head_dim));
  if (c->vocab_size >= ((int64_t)1 << 24))
    return fail(p, "vocab_size (%lld) must be below 2^24 with Engram (the n-gram hash)",
                (long long)c->vocab_size);
  /* Per Engram layer: N odd multipliers below 2^39 (token x multiplier never overflows),
   * then one distinct prime table size per head of every layer, searched upward from
   * engram_vocab_size across the layers. */
  int64_t candidate = e->vocab_size;
  for (int32_t li = 0; li < e->n_layers; li++) {
    uint64_t state = e->seed + 10007ull * (uint64_t)e->layer_ids[li];
    for (int32_t j = 0; j < e->max_n; j++)
      e->mult[li][j] = (int64_t)((splitmix64(&state) >> 25) | 1u);
    int64_t total = 0;
    for (int32_t h = 0; h < e->heads; h++) {
      while (!is_prime(candidate)) candidate++;
      e->offsets[li][h] = (int32_t)total;
      e->primes[li][h] = candidate++;
      total += e->primes[li][h];
      if (total > INT32_MAX)
        return fail(p, "the Engram table of layer %d has more than 2^31 - 1 rows",
                    e->layer_ids[li]);
    }
    e->table_rows[li] = total;
  }
  return true;
}

vnrt_status vn_v4_config_parse(const char *json_text, size_t len, vn_v4_config *out, char *err,
                               size_t err_size) {
  return vn_v4_config_parse_named(json_text, len, "config.json", out, err, err_size);
}

vnrt_status vn_v4_config_parse_named(const char *json_text, size_t len, const char *name,
                                     vn_v4_config *out, char *err, size_t err_size) {
  if (err && err_size) err[0] = '\0';
  if (!out) return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "out is NULL");
  memset(out, 0, sizeof *out);
  out->bos_token_id = out->eos_token_id = -1;
  out->num_nextn_predict_layers = 0;
  parser p = {.err = err, .err_size = err_size, .file = name ? name : "config.json"};
  if (!json_text)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: no text", p.file);
  if (len > (size_t)INT32_MAX)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: too large (%zu bytes)",
                         p.file, len);
  json_tokener *tok = json_tokener_new();
  if (!tok) return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  p.root = json_tokener_parse_ex(tok, json_text, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t consumed = tok->char_offset;
  json_tokener_free(tok);
  if (!p.root || jerr != json_tokener_success) {
    if (p.root) json_object_put(p.root);
    return vn_model_fail(
        err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: not valid JSON (%s, near byte %zu)",
        p.file,
        jerr == json_tokener_continue ? "unexpected end of text" : json_tokener_error_desc(jerr),
        consumed);
  }
  for (size_t i = consumed; i < len; i++)
    if (json_text[i] != ' ' && json_text[i] != '\n' && json_text[i] != '\r' &&
        json_text[i] != '\t' && json_text[i] != '\0') {
      json_object_put(p.root);
      return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                           "%s: not valid JSON (text after the object, at byte %zu)", p.file, i);
    }
  bool ok = parse_fields(&p, out) && check_relations(&p, out) && parse_engram(&p, out);
  json_object_put(p.root);
  if (!ok) {
    vnrt_status s = p.status != VNRT_OK ? p.status : VNRT_ERROR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    return s;
  }
  return VNRT_OK;
}

vnrt_status vn_v4_config_load(const char *path, vn_v4_config *out, char *err, size_t err_size) {
  if (out) memset(out, 0, sizeof *out);
  if (!path) return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "path is NULL");
  char *buf = NULL;
  size_t len = 0;
  vnrt_status s = vn_model_read_file(path, (size_t)64 << 20, &buf, &len, err, err_size);
  if (s != VNRT_OK) return s;
  s = vn_v4_config_parse_named(buf, len, path, out, err, err_size);
  free(buf);
  return s;
}

int32_t vn_v4_layer_ratio(const vn_v4_config *cfg, int32_t layer) {
  if (!cfg || layer < 0 || layer >= cfg->n_compress_ratios) return -1;
  return cfg->compress_ratios[layer];
}

int32_t vn_v4_engram_index(const vn_v4_config *cfg, int32_t layer) {
  if (!cfg) return -1;
  for (int32_t i = 0; i < cfg->engram.n_layers; i++)
    if (cfg->engram.layer_ids[i] == layer) return i;
  return -1;
}

bool vn_v4_is_hash_layer(const vn_v4_config *cfg, int32_t layer) {
  return cfg && layer >= 0 && layer < cfg->num_hidden_layers && layer < cfg->num_hash_layers;
}

/* ---- tensor inventory ------------------------------------------------------------------ */

const char *vn_v4_kind_name(vn_v4_kind kind) {
  static const char *const kNames[VN_V4_KIND_COUNT] = {
      "attention", "compressor", "indexer", "shared expert", "routed experts", "router", "embed",
      "head",      "mHC",        "norms",   "MTP",           "Engram"};
  return (unsigned)kind < VN_V4_KIND_COUNT ? kNames[kind] : "?";
}

typedef struct walker {
  const vn_v4_config *cfg;
  vn_v4_tensor_fn fn;
  void *user;
  int rc;
  const char *prefix; /* "layers.3." / "mtp.0." / "" */
  int32_t layer;
  bool mtp; /* every tensor is VN_V4_KIND_MTP */
} walker;

/* One tensor to the walker's callback; dequantized: 8 or 4 for a dequantized weight (the
 * FP8/FP4 format emit_quant chose), else 0. */
static void emit_as(walker *w, const char *suffix, vn_v4_storage storage, vn_v4_kind kind,
                    int32_t rank, int64_t d0, int64_t d1, int64_t logical_in, int32_t dequantized) {
  if (w->rc) return;
  static const char *const kDtype[] = {"BF16", "F32", "F8_E4M3", "I8", "F8_E8M0", "I64"};
  static const uint32_t kSize[] = {2, 4, 1, 1, 1, 8};
  vn_v4_tensor_spec t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s%s", w->prefix, suffix);
  t.storage = storage;
  t.dtype = kDtype[storage];
  t.rank = rank;
  t.dims[0] = d0;
  t.dims[1] = rank == 2 ? d1 : 0;
  t.logical_in = logical_in;
  t.dequantized = dequantized;
  t.bytes = (uint64_t)d0 * (uint64_t)(rank == 2 ? d1 : 1) * kSize[storage];
  t.kind = w->mtp ? VN_V4_KIND_MTP : kind;
  t.layer = w->layer;
  w->rc = w->fn(w->user, &t);
}

static void emit(walker *w, const char *suffix, vn_v4_storage storage, vn_v4_kind kind,
                 int32_t rank, int64_t d0, int64_t d1, int64_t logical_in) {
  emit_as(w, suffix, storage, kind, rank, d0, d1, logical_in, 0);
}

/* A quantized weight [out, in] and its scale, right after it; in a dequantized checkpoint the
 * weight alone, in BF16. */
static void emit_quant(walker *w, const char *base, bool fp4, vn_v4_kind kind, int64_t out,
                       int64_t in) {
  char name[96];
  snprintf(name, sizeof name, "%s.weight", base);
  if (!w->cfg->quantized) { /* dequantized: BF16 [out, in], no scale */
    emit_as(w, name, VN_V4_STORE_BF16, kind, 2, out, in, in, fp4 ? 4 : 8);
    return;
  }
  if (fp4) {
    emit(w, name, VN_V4_STORE_FP4, kind, 2, out, in / 2, in);
    snprintf(name, sizeof name, "%s.scale", base);
    emit(w, name, VN_V4_STORE_SCALE, kind, 2, out, in / 32, in);
  } else {
    emit(w, name, VN_V4_STORE_FP8, kind, 2, out, in, in);
    snprintf(name, sizeof name, "%s.scale", base);
    emit(w, name, VN_V4_STORE_SCALE, kind, 2, (out + 127) / 128, (in + 127) / 128, in);
  }
}

static void emit_hc(walker *w, const char *which, int64_t rows) {
  const vn_v4_config *c = w->cfg;
  const int64_t n = c->hc_mult;
  char name[64];
  snprintf(name, sizeof name, "hc_%s_fn", which);
  emit(w, name, VN_V4_STORE_F32, VN_V4_KIND_MHC, 2, rows, n * c->hidden_size, 0);
  snprintf(name, sizeof name, "hc_%s_base", which);
  emit(w, name, VN_V4_STORE_F32, VN_V4_KIND_MHC, 1, rows, 0, 0);
  snprintf(name, sizeof name, "hc_%s_scale", which);
  emit(w, name, VN_V4_STORE_F32, VN_V4_KIND_MHC, 1, rows == n ? 1 : 3, 0, 0);
}

/* The Engram tensors of decoder layer w->layer (Engram index ei). */
static void emit_engram(walker *w, int32_t ei) {
  const vn_v4_config *c = w->cfg;
  const vn_v4_engram *e = &c->engram;
  const int64_t C = c->hidden_size, n = c->hc_mult, HD = e->heads * e->head_dim;
  const vn_v4_storage bf = VN_V4_STORE_BF16, f32 = VN_V4_STORE_F32;
  const vn_v4_kind k = VN_V4_KIND_ENGRAM;
  emit(w, "engram.embedding.weight", bf, k, 2, e->table_rows[ei], e->head_dim, 0);
  emit(w, "engram.value_proj.weight", bf, k, 2, C, HD, 0);
  emit(w, "engram.key_proj.weight", bf, k, 2, n * C, HD, 0);
  emit(w, "engram.h_norm.weight", f32, k, 2, n, C, 0);
  emit(w, "engram.k_norm.weight", f32, k, 2, n, C, 0);
  emit(w, "engram.conv_norm.weight", f32, k, 2, n, C, 0);
  emit(w, "engram.conv.weight", f32, k, 2, n * C, e->kernel_size, 0);
}

/* The tensors of one decoder block (a layer or an MTP block's inner layer). */
static void emit_block(walker *w, int32_t ratio, bool hash) {
  const vn_v4_config *c = w->cfg;
  const int64_t C = c->hidden_size, H = c->num_attention_heads, D = c->head_dim;
  const int64_t G = c->o_groups, R = c->o_lora_rank, Rq = c->q_lora_rank;
  const int64_t n = c->hc_mult, E = c->n_routed_experts, F = c->moe_intermediate_size;
  const int64_t Hi = c->index_n_heads, Di = c->index_head_dim;
  const vn_v4_storage bf = VN_V4_STORE_BF16, f32 = VN_V4_STORE_F32;
  emit_hc(w, "attn", (2 + n) * n);
  emit_hc(w, "ffn", (2 + n) * n);
  emit(w, "attn_norm.weight", bf, VN_V4_KIND_NORMS, 1, C, 0, 0);
  emit(w, "ffn_norm.weight", bf, VN_V4_KIND_NORMS, 1, C, 0, 0);
  emit_quant(w, "attn.wq_a", false, VN_V4_KIND_ATTENTION, Rq, C);
  emit(w, "attn.q_norm.weight", bf, VN_V4_KIND_NORMS, 1, Rq, 0, 0);
  emit_quant(w, "attn.wq_b", false, VN_V4_KIND_ATTENTION, H * D, Rq);
  emit_quant(w, "attn.wkv", false, VN_V4_KIND_ATTENTION, D, C);
  emit(w, "attn.kv_norm.weight", bf, VN_V4_KIND_NORMS, 1, D, 0, 0);
  emit(w, "attn.attn_sink", f32, VN_V4_KIND_ATTENTION, 1, H, 0, 0);
  emit_quant(w, "attn.wo_a", false, VN_V4_KIND_ATTENTION, G * R, H * D / G);
  emit_quant(w, "attn.wo_b", false, VN_V4_KIND_ATTENTION, C, G * R);
  if (ratio != 0) {
    const int64_t coff = ratio == 4 ? 2 : 1;
    emit(w, "attn.compressor.wkv.weight", bf, VN_V4_KIND_COMPRESSOR, 2, coff * D, C, 0);
    emit(w, "attn.compressor.wgate.weight", bf, VN_V4_KIND_COMPRESSOR, 2, coff * D, C, 0);
    emit(w, "attn.compressor.ape", f32, VN_V4_KIND_COMPRESSOR, 2, ratio, coff * D, 0);
    emit(w, "attn.compressor.norm.weight", bf, VN_V4_KIND_NORMS, 1, D, 0, 0);
  }
  if (ratio == 4) {
    emit_quant(w, "attn.indexer.wq_b", false, VN_V4_KIND_INDEXER, Hi * Di, Rq);
    emit(w, "attn.indexer.weights_proj.weight", bf, VN_V4_KIND_INDEXER, 2, Hi, C, 0);
    emit(w, "attn.indexer.compressor.wkv.weight", bf, VN_V4_KIND_INDEXER, 2, 2 * Di, C, 0);
    emit(w, "attn.indexer.compressor.wgate.weight", bf, VN_V4_KIND_INDEXER, 2, 2 * Di, C, 0);
    emit(w, "attn.indexer.compressor.ape", f32, VN_V4_KIND_INDEXER, 2, 4, 2 * Di, 0);
    emit(w, "attn.indexer.compressor.norm.weight", bf, VN_V4_KIND_NORMS, 1, Di, 0, 0);
  }
  emit(w, "ffn.gate.weight", bf, VN_V4_KIND_ROUTER, 2, E, C, 0);
  if (hash)
    emit(w, "ffn.gate.tid2eid", VN_V4_STORE_I64, VN_V4_KIND_ROUTER, 2, c->vocab_size,
         c->num_experts_per_tok, 0);
  else
    emit(w, "ffn.gate.bias", f32, VN_V4_KIND_ROUTER, 1, E, 0, 0);
  const bool fp4 = c->expert_dtype == VN_V4_EXPERT_FP4;
  for (int64_t e = 0; e < E && !w->rc; e++) {
    char base[64];
    snprintf(base, sizeof base, "ffn.experts.%lld.w1", (long long)e);
    emit_quant(w, base, fp4, VN_V4_KIND_ROUTED_EXPERTS, F, C);
    snprintf(base, sizeof base, "ffn.experts.%lld.w2", (long long)e);
    emit_quant(w, base, fp4, VN_V4_KIND_ROUTED_EXPERTS, C, F);
    snprintf(base, sizeof base, "ffn.experts.%lld.w3", (long long)e);
    emit_quant(w, base, fp4, VN_V4_KIND_ROUTED_EXPERTS, F, C);
  }
  emit_quant(w, "ffn.shared_experts.w1", false, VN_V4_KIND_SHARED_EXPERT, F, C);
  emit_quant(w, "ffn.shared_experts.w2", false, VN_V4_KIND_SHARED_EXPERT, C, F);
  emit_quant(w, "ffn.shared_experts.w3", false, VN_V4_KIND_SHARED_EXPERT, F, C);
}

int vn_v4_for_each_tensor(const vn_v4_config *cfg, int which, vn_v4_tensor_fn fn, void *user) {
  if (!cfg || !fn) return 0;
  walker w = {.cfg = cfg, .fn = fn, .user = user, .prefix = "", .layer = -1};
  const int64_t C = cfg->hidden_size, V = cfg->vocab_size, n = cfg->hc_mult;
  const int32_t L = cfg->num_hidden_layers;
  char prefix[48];
  if (which & VN_V4_LIST_MODEL) {
    emit(&w, "embed.weight", VN_V4_STORE_BF16, VN_V4_KIND_EMBED, 2, V, C, 0);
    for (int32_t i = 0; i < L && !w.rc; i++) {
      snprintf(prefix, sizeof prefix, "layers.%d.", i);
      w.prefix = prefix;
      w.layer = i;
      emit_block(&w, cfg->compress_ratios[i], vn_v4_is_hash_layer(cfg, i));
      if (vn_v4_engram_index(cfg, i) >= 0) emit_engram(&w, vn_v4_engram_index(cfg, i));
    }
    w.prefix = "";
    w.layer = -1;
    emit(&w, "head.weight", VN_V4_STORE_BF16, VN_V4_KIND_HEAD, 2, V, C, 0);
    emit(&w, "norm.weight", VN_V4_STORE_BF16, VN_V4_KIND_NORMS, 1, C, 0, 0);
    emit_hc(&w, "head", n);
  }
  if (which & VN_V4_LIST_MTP) {
    w.mtp = true;
    for (int32_t j = 0; j < cfg->num_nextn_predict_layers && !w.rc; j++) {
      snprintf(prefix, sizeof prefix, "mtp.%d.", j);
      w.prefix = prefix;
      w.layer = L + j;
      emit_quant(&w, "e_proj", false, VN_V4_KIND_MTP, C, C);
      emit_quant(&w, "h_proj", false, VN_V4_KIND_MTP, C, C);
      emit(&w, "enorm.weight", VN_V4_STORE_BF16, VN_V4_KIND_MTP, 1, C, 0, 0);
      emit(&w, "hnorm.weight", VN_V4_STORE_BF16, VN_V4_KIND_MTP, 1, C, 0, 0);
      emit(&w, "norm.weight", VN_V4_STORE_BF16, VN_V4_KIND_MTP, 1, C, 0, 0);
      emit_hc(&w, "head", n);
      emit_block(&w, cfg->compress_ratios[L + j], false);
    }
  }
  return w.rc;
}
