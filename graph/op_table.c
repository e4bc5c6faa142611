/* The op table: every op's name, arity, attribute schema (docs/ops.md) and inference function,
 * plus normalisation of user attributes against that schema. */
#include "op_table.h"

#include <stdio.h>
#include <string.h>

/* The inference functions live in infer_basic.c and infer_model.c, one per op, named vn_infer_<op>.
 */
#define VN_DECLARE_INFER_(ID, name, min_in, max_in, n_out)                                      \
  vnrt_status vn_infer_##name(const vnrt_tensor_type *in, int32_t n_in, const vnrt_attr *attrs, \
                              int32_t n_attrs, vnrt_tensor_type *out, char *err, size_t err_size);
VNRT_OP_LIST(VN_DECLARE_INFER_)
#undef VN_DECLARE_INFER_

static const char *const k_dtype_words[] = {"f32", "f16", "bf16", "i32", NULL};
static const char *const k_quant_fmt_words[] = {"e4m3", "e2m1", NULL};
static const char *const k_score_words[] = {"sigmoid", "softmax", "sqrt_softplus", NULL};

/* Schema rows. REQ: must be given; OPT: may be absent (no default); DEF_*: default filled. */
#define REQ_I(k) \
  { .key = k, .kind = VNRT_ATTR_INT, .required = true }
#define REQ_F(k) \
  { .key = k, .kind = VNRT_ATTR_FLOAT, .required = true }
#define REQ_INTS(k) \
  { .key = k, .kind = VNRT_ATTR_INTS, .required = true }
#define REQ_W(k, w) \
  { .key = k, .kind = VNRT_ATTR_WORD, .required = true, .words = w }
#define OPT_INTS(k) \
  { .key = k, .kind = VNRT_ATTR_INTS, .optional = true }
#define OPT_I(k) \
  { .key = k, .kind = VNRT_ATTR_INT, .optional = true }
#define OPT_F(k) \
  { .key = k, .kind = VNRT_ATTR_FLOAT, .optional = true }
#define DEF_I(k, v) \
  { .key = k, .kind = VNRT_ATTR_INT, .default_i = (v) }
#define DEF_F(k, v) \
  { .key = k, .kind = VNRT_ATTR_FLOAT, .default_f = (v) }

static const vn_attr_schema k_scale[] = {REQ_F("s")};
static const vn_attr_schema k_clamp[] = {OPT_F("min"), OPT_F("max")};
static const vn_attr_schema k_cast[] = {REQ_W("dtype", k_dtype_words)};
static const vn_attr_schema k_reshape[] = {REQ_INTS("shape")};
static const vn_attr_schema k_transpose[] = {REQ_INTS("perm")};
static const vn_attr_schema k_slice[] = {REQ_I("axis"), REQ_I("start"), REQ_I("len")};
static const vn_attr_schema k_concat[] = {REQ_I("axis")};
static const vn_attr_schema k_rms_norm[] = {DEF_F("eps", 1e-6)};
static const vn_attr_schema k_softmax[] = {DEF_I("axis", -1)};
static const vn_attr_schema k_swiglu[] = {DEF_F("limit", 0.0)};
/* The YaRN and inverse attributes are optional so that graphs without them print as before;
 * absent means no YaRN, beta_fast 32, beta_slow 1, inverse 0 (graph/params.c). */
static const vn_attr_schema k_rope[] = {
    DEF_F("theta", 10000.0), OPT_I("dims"),      DEF_I("interleaved", 1), OPT_F("yarn_factor"),
    OPT_I("yarn_orig_ctx"),  OPT_F("beta_fast"), OPT_F("beta_slow"),      OPT_I("inverse")};
static const vn_attr_schema k_attention[] = {OPT_F("scale"), DEF_I("causal", 1),
                                             DEF_I("window", 0)};
static const vn_attr_schema k_topk[] = {REQ_I("k"), OPT_I("fill")};
static const vn_attr_schema k_hc_expand[] = {DEF_I("n", 4)};
static const vn_attr_schema k_hc_pre[] = {DEF_I("iters", 20), DEF_F("eps", 1e-6),
                                          DEF_F("norm_eps", 1e-6)};
static const vn_attr_schema k_hc_head[] = {DEF_F("eps", 1e-6), DEF_F("norm_eps", 1e-6)};
static const vn_attr_schema k_sinkhorn[] = {DEF_I("iters", 20), DEF_F("eps", 1e-6)};
static const vn_attr_schema k_moe_route[] = {REQ_I("k"),          REQ_W("score", k_score_words),
                                             DEF_I("n_group", 1), DEF_I("topk_group", 1),
                                             DEF_I("norm", 1),    DEF_F("scale", 1.0)};
static const vn_attr_schema k_moe_hash_route[] = {REQ_W("score", k_score_words), DEF_I("norm", 1),
                                                  DEF_F("scale", 1.0)};
/* act_quant is optional rather than defaulted so that graphs without it print as before; its
 * absence means 0 (graph/params.c). */
static const vn_attr_schema k_moe_ffn[] = {DEF_F("limit", 0.0), OPT_I("act_quant"),
                                           OPT_INTS("block")};
static const vn_attr_schema k_linear[] = {OPT_I("act_quant"), OPT_INTS("block")};
static const vn_attr_schema k_matmul[] = {OPT_INTS("block")};
static const vn_attr_schema k_embedding[] = {OPT_INTS("block")};
static const vn_attr_schema k_fake_quant[] = {REQ_W("fmt", k_quant_fmt_words), OPT_I("block"),
                                              DEF_I("start", 0), DEF_I("len", 0)};
static const vn_attr_schema k_ngram_hash[] = {REQ_INTS("mult"), REQ_INTS("primes"), OPT_I("max_n"),
                                              OPT_I("heads")};
static const vn_attr_schema k_engram_gate[] = {DEF_F("eps", 1e-6), DEF_I("sqrt_gate", 1)};
static const vn_attr_schema k_short_conv[] = {REQ_I("dilation"), DEF_F("eps", 1e-6)};
static const vn_attr_schema k_kv_write[] = {OPT_I("ring")};
static const vn_attr_schema k_kv_compress[] = {REQ_I("ratio"), DEF_I("overlap", 0)};
static const vn_attr_schema k_kv_scatter[] = {DEF_I("div", 1)};
static const vn_attr_schema k_index_scores[] = {REQ_I("ratio")};
static const vn_attr_schema k_sparse_attention[] = {OPT_F("scale"), DEF_I("ratio", 0)};
static const vn_attr_schema k_grouped_linear[] = {REQ_I("groups"), OPT_INTS("block")};

/* Each op's schema, by its X-macro name: an op missing here fails to compile. */
#define SCHEMA_(name) k_##name, (int32_t)VN_ARRAY_SIZE(k_##name)
#define NONE_ NULL, 0
#define VN_SCHEMA_add NONE_
#define VN_SCHEMA_sub NONE_
#define VN_SCHEMA_mul NONE_
#define VN_SCHEMA_div NONE_
#define VN_SCHEMA_scale SCHEMA_(scale)
#define VN_SCHEMA_neg NONE_
#define VN_SCHEMA_exp NONE_
#define VN_SCHEMA_sqrt NONE_
#define VN_SCHEMA_rsqrt NONE_
#define VN_SCHEMA_tanh NONE_
#define VN_SCHEMA_relu NONE_
#define VN_SCHEMA_sigmoid NONE_
#define VN_SCHEMA_silu NONE_
#define VN_SCHEMA_gelu NONE_
#define VN_SCHEMA_softplus NONE_
#define VN_SCHEMA_sqrt_softplus NONE_
#define VN_SCHEMA_clamp SCHEMA_(clamp)
#define VN_SCHEMA_cast SCHEMA_(cast)
#define VN_SCHEMA_reshape SCHEMA_(reshape)
#define VN_SCHEMA_transpose SCHEMA_(transpose)
#define VN_SCHEMA_slice SCHEMA_(slice)
#define VN_SCHEMA_concat SCHEMA_(concat)
#define VN_SCHEMA_matmul SCHEMA_(matmul)
#define VN_SCHEMA_linear SCHEMA_(linear)
#define VN_SCHEMA_rms_norm SCHEMA_(rms_norm)
#define VN_SCHEMA_softmax SCHEMA_(softmax)
#define VN_SCHEMA_swiglu SCHEMA_(swiglu)
#define VN_SCHEMA_rope SCHEMA_(rope)
#define VN_SCHEMA_attention SCHEMA_(attention)
#define VN_SCHEMA_embedding SCHEMA_(embedding)
#define VN_SCHEMA_topk SCHEMA_(topk)
#define VN_SCHEMA_hc_expand SCHEMA_(hc_expand)
#define VN_SCHEMA_hc_pre SCHEMA_(hc_pre)
#define VN_SCHEMA_hc_post NONE_
#define VN_SCHEMA_hc_head SCHEMA_(hc_head)
#define VN_SCHEMA_sinkhorn SCHEMA_(sinkhorn)
#define VN_SCHEMA_moe_route SCHEMA_(moe_route)
#define VN_SCHEMA_moe_hash_route SCHEMA_(moe_hash_route)
#define VN_SCHEMA_moe_ffn SCHEMA_(moe_ffn)
#define VN_SCHEMA_ngram_hash SCHEMA_(ngram_hash)
#define VN_SCHEMA_engram_lookup NONE_
#define VN_SCHEMA_engram_gate SCHEMA_(engram_gate)
#define VN_SCHEMA_short_conv SCHEMA_(short_conv)
#define VN_SCHEMA_kv_write SCHEMA_(kv_write)
#define VN_SCHEMA_hadamard NONE_
#define VN_SCHEMA_fake_quant SCHEMA_(fake_quant)
#define VN_SCHEMA_kv_compress SCHEMA_(kv_compress)
#define VN_SCHEMA_kv_scatter SCHEMA_(kv_scatter)
#define VN_SCHEMA_index_scores SCHEMA_(index_scores)
#define VN_SCHEMA_sparse_attention SCHEMA_(sparse_attention)
#define VN_SCHEMA_grouped_linear SCHEMA_(grouped_linear)

/* Name, arity and result count come straight from VNRT_OP_LIST, so the table cannot drift. */
#define VN_OP_ROW_(ID, name, min_in, max_in, n_out) \
  [VNRT_OP_##ID] = {#name, min_in, max_in, n_out, VN_SCHEMA_##name, vn_infer_##name},
static const vn_op_info k_ops[VNRT_OP_COUNT] = {VNRT_OP_LIST(VN_OP_ROW_)};
#undef VN_OP_ROW_

#define VN_CHECK_ROW_(ID, name, min_in, max_in, n_out)                                \
  _Static_assert(min_in >= 1 && min_in <= max_in && max_in <= VNRT_MAX_NODE_INPUTS && \
                     n_out >= 1 && n_out <= VNRT_MAX_NODE_OUTPUTS,                    \
                 #name ": arity exceeds the node limits");
VNRT_OP_LIST(VN_CHECK_ROW_)
#undef VN_CHECK_ROW_

bool vn_op_quant_input(vnrt_op op, int32_t input) {
  switch (op) {
    case VNRT_OP_LINEAR:
    case VNRT_OP_MATMUL:
    case VNRT_OP_GROUPED_LINEAR:
      return input == 1 || input == 2; /* the weight and its scale */
    case VNRT_OP_EMBEDDING:
      return input == 0 || input == 2; /* the table and its scale */
    case VNRT_OP_MOE_FFN:
      return input >= 3; /* w_gate_up, w_down and their scales */
    default:
      return false;
  }
}

const vn_op_info *vn_op_info_get(vnrt_op op) {
  if ((int)op < 0 || (int)op >= VNRT_OP_COUNT) return NULL;
  return &k_ops[op];
}

static const char *kind_name(vnrt_attr_kind kind) {
  switch (kind) {
    case VNRT_ATTR_INT:
      return "an integer";
    case VNRT_ATTR_FLOAT:
      return "a number";
    case VNRT_ATTR_INTS:
      return "a list of integers";
    case VNRT_ATTR_FLOATS:
      return "a list of numbers";
    case VNRT_ATTR_WORD:
      return "a word";
  }
  return "an unknown kind";
}

/* Writes "a, b, c" (the schema's keys) into buf for messages. */
static const char *schema_keys(const vn_op_info *info, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  if (info->n_attrs == 0) {
    snprintf(buf, size, "none");
    return buf;
  }
  for (int32_t i = 0; i < info->n_attrs && used < size; ++i) {
    int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", info->attrs[i].key);
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

/* Writes "a|b|c" (allowed words) into buf for messages. */
static const char *word_list(const char *const *words, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; words[i] && used < size; ++i) {
    int n = snprintf(buf + used, size - used, "%s%s", i ? "|" : "", words[i]);
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

void vn_attrs_free(vnrt_context *ctx, vnrt_attr *attrs, int32_t n) {
  if (!attrs) return;
  for (int32_t i = 0; i < n; ++i) {
    vn_free(ctx, (void *)attrs[i].ints);
    vn_free(ctx, (void *)attrs[i].floats);
    vn_free(ctx, (void *)attrs[i].word);
  }
  vn_free(ctx, attrs);
}

/* Checks one given attribute against its schema row and writes its normalised copy into
 * *dst (lists and words copied). */
static vnrt_status normalize_one(vnrt_context *ctx, const vn_op_info *info, const vn_attr_schema *s,
                                 const vnrt_attr *a, vnrt_attr *dst, char *err, size_t err_size) {
  memset(dst, 0, sizeof *dst);
  dst->key = s->key;
  dst->kind = s->kind;
  bool kind_ok = a->kind == s->kind || (s->kind == VNRT_ATTR_FLOAT && a->kind == VNRT_ATTR_INT);
  if (!kind_ok) {
    snprintf(err, err_size, "attribute '%s' must be %s, not %s", s->key, kind_name(s->kind),
             kind_name(a->kind));
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  switch (s->kind) {
    case VNRT_ATTR_INT:
      dst->i = a->i;
      break;
    case VNRT_ATTR_FLOAT:
      dst->f = a->kind == VNRT_ATTR_INT ? (double)a->i : a->f;
      break;
    case VNRT_ATTR_INTS:
      if (a->count < 0 || (a->count > 0 && !a->ints)) {
        snprintf(err, err_size, "attribute '%s' has a bad list (count %d)", s->key, (int)a->count);
        return VNRT_ERROR_INVALID_ARGUMENT;
      }
      dst->count = a->count;
      if (a->count > 0) {
        int64_t *copy = vn_calloc(ctx, (size_t)a->count, sizeof *copy);
        if (!copy) {
          snprintf(err, err_size, "out of memory copying attribute '%s'", s->key);
          return VNRT_ERROR_OUT_OF_MEMORY;
        }
        memcpy(copy, a->ints, (size_t)a->count * sizeof *copy);
        dst->ints = copy;
      }
      break;
    case VNRT_ATTR_WORD: {
      if (!a->word) {
        snprintf(err, err_size, "attribute '%s' has no word", s->key);
        return VNRT_ERROR_INVALID_ARGUMENT;
      }
      if (s->words) {
        bool found = false;
        for (int32_t w = 0; s->words[w]; ++w) found = found || strcmp(s->words[w], a->word) == 0;
        if (!found) {
          char buf[128];
          snprintf(err, err_size, "attribute '%s' is '%s', expected one of %s", s->key, a->word,
                   word_list(s->words, buf, sizeof buf));
          return VNRT_ERROR_INVALID_ARGUMENT;
        }
      }
      char *copy = vn_strdup(ctx, a->word);
      if (!copy) {
        snprintf(err, err_size, "out of memory copying attribute '%s'", s->key);
        return VNRT_ERROR_OUT_OF_MEMORY;
      }
      dst->word = copy;
      break;
    }
    case VNRT_ATTR_FLOATS: /* no schema uses float lists yet */
    default:
      snprintf(err, err_size, "attribute '%s' has an unsupported kind", s->key);
      return VNRT_ERROR_INTERNAL;
  }
  return VNRT_OK;
}

vnrt_status vn_attrs_normalize(vnrt_context *ctx, vnrt_op op, const vnrt_attr *attrs,
                               int32_t n_attrs, vnrt_attr **out_attrs, int32_t *out_n, char *err,
                               size_t err_size) {
  if (out_attrs) *out_attrs = NULL;
  if (out_n) *out_n = 0;
  if (err && err_size) err[0] = '\0';
  const vn_op_info *info = vn_op_info_get(op);
  if (!info || !out_attrs || !out_n || !err || err_size == 0) {
    if (err && err_size) snprintf(err, err_size, "bad arguments to attribute normalisation");
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (n_attrs < 0 || (n_attrs > 0 && !attrs)) {
    snprintf(err, err_size, "bad attribute list (count %d)", (int)n_attrs);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }

  /* Every given key must be known and given once. */
  for (int32_t i = 0; i < n_attrs; ++i) {
    if (!attrs[i].key) {
      snprintf(err, err_size, "attribute %d has no key", (int)i);
      return VNRT_ERROR_INVALID_ARGUMENT;
    }
    bool known = false;
    for (int32_t s = 0; s < info->n_attrs; ++s) {
      known = known || strcmp(info->attrs[s].key, attrs[i].key) == 0;
    }
    if (!known) {
      char buf[256];
      snprintf(err, err_size, "unknown attribute '%s' (%s takes: %s)", attrs[i].key, info->name,
               schema_keys(info, buf, sizeof buf));
      return VNRT_ERROR_INVALID_ARGUMENT;
    }
    for (int32_t j = 0; j < i; ++j) {
      if (strcmp(attrs[j].key, attrs[i].key) == 0) {
        snprintf(err, err_size, "attribute '%s' is given twice", attrs[i].key);
        return VNRT_ERROR_INVALID_ARGUMENT;
      }
    }
  }

  if (info->n_attrs == 0) return VNRT_OK;
  vnrt_attr *out = vn_calloc(ctx, (size_t)info->n_attrs, sizeof *out);
  if (!out) {
    snprintf(err, err_size, "out of memory normalising attributes");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  int32_t n = 0;
  for (int32_t s = 0; s < info->n_attrs; ++s) {
    const vn_attr_schema *schema = &info->attrs[s];
    const vnrt_attr *given = NULL;
    for (int32_t i = 0; i < n_attrs && !given; ++i) {
      if (strcmp(attrs[i].key, schema->key) == 0) given = &attrs[i];
    }
    if (given) {
      vnrt_status st = normalize_one(ctx, info, schema, given, &out[n], err, err_size);
      if (st != VNRT_OK) {
        vn_attrs_free(ctx, out, n);
        return st;
      }
      ++n;
      continue;
    }
    if (schema->required) {
      snprintf(err, err_size, "missing required attribute '%s'", schema->key);
      vn_attrs_free(ctx, out, n);
      return VNRT_ERROR_INVALID_ARGUMENT;
    }
    if (schema->optional) continue;
    vnrt_attr *d = &out[n];
    d->key = schema->key;
    d->kind = schema->kind;
    if (schema->kind == VNRT_ATTR_INT) {
      d->i = schema->default_i;
    } else if (schema->kind == VNRT_ATTR_FLOAT) {
      d->f = schema->default_f;
    } else if (schema->kind == VNRT_ATTR_WORD && schema->default_word) {
      char *copy = vn_strdup(ctx, schema->default_word);
      if (!copy) {
        snprintf(err, err_size, "out of memory normalising attributes");
        vn_attrs_free(ctx, out, n);
        return VNRT_ERROR_OUT_OF_MEMORY;
      }
      d->word = copy;
    }
    ++n;
  }
  if (n == 0) {
    vn_free(ctx, out);
    out = NULL;
  }
  *out_attrs = out;
  *out_n = n;
  return VNRT_OK;
}
