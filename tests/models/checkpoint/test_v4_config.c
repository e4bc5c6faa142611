/* DeepSeek-V4 config.json parsing (models/v4_config.h) and the memory plan (models/v4_plan.h):
 * the shipped configs parse with their values; every class of bad config fails with a message
 * naming the field; the plan of the real V4-Flash config gives the real checkpoint's tensor
 * count and payload bytes (159,609,485,896 bytes in 69,187 tensors, MTP included) and state
 * sizes computed here by hand from the formulas in docs/deepseek-v4.md; the graphs of the tiny
 * configs update every state in place on the CPU. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/v4_config.h"
#include "models/v4_graph.h"
#include "models/v4_plan.h"
#include "test_util.h"

static char *read_config(const char *name) {
  const char *root = getenv("VNRT_TEST_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/models/configs/%s", root ? root : ".", name);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static void load(const char *name, vn_v4_config *c) {
  const char *root = getenv("VNRT_TEST_SOURCE_DIR");
  char path[1024], err[512];
  snprintf(path, sizeof path, "%s/models/configs/%s", root ? root : ".", name);
  vnrt_status s = vn_v4_config_load(path, c, err, sizeof err);
  ck_assert_msg(s == VNRT_OK, "%s: %s", name, err);
}

START_TEST(flash_values) {
  vn_v4_config c;
  load("v4-flash.json", &c);
  ck_assert_int_eq(c.vocab_size, 129280);
  ck_assert_int_eq(c.hidden_size, 4096);
  ck_assert_int_eq(c.num_hidden_layers, 43);
  ck_assert_int_eq(c.num_attention_heads, 64);
  ck_assert_int_eq(c.head_dim, 512);
  ck_assert_int_eq(c.qk_rope_head_dim, 64);
  ck_assert_int_eq(c.q_lora_rank, 1024);
  ck_assert_int_eq(c.o_groups, 8);
  ck_assert_int_eq(c.o_lora_rank, 1024);
  ck_assert_int_eq(c.sliding_window, 128);
  ck_assert_int_eq(c.n_compress_ratios, 44);
  int csa = 0, hca = 0, swa = 0;
  for (int i = 0; i < 43; i++) {
    int r = vn_v4_layer_ratio(&c, i);
    csa += r == 4, hca += r == 128, swa += r == 0;
  }
  ck_assert_int_eq(csa, 21);
  ck_assert_int_eq(hca, 20);
  ck_assert_int_eq(swa, 2);
  ck_assert_int_eq(vn_v4_layer_ratio(&c, 43), 0); /* MTP */
  ck_assert_int_eq(vn_v4_layer_ratio(&c, 44), -1);
  ck_assert(vn_v4_is_hash_layer(&c, 2) && !vn_v4_is_hash_layer(&c, 3));
  ck_assert(c.compress_rope_theta == 160000 && c.rope_theta == 10000);
  ck_assert_str_eq(c.rope_scaling.type, "yarn");
  ck_assert(c.rope_scaling.factor == 16 && c.rope_scaling.beta_fast == 32 &&
            c.rope_scaling.beta_slow == 1);
  ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 65536);
  ck_assert_int_eq(c.max_position_embeddings, 1048576);
  ck_assert_int_eq(c.index_n_heads, 64);
  ck_assert_int_eq(c.index_head_dim, 128);
  ck_assert_int_eq(c.index_topk, 512);
  ck_assert_int_eq(c.n_routed_experts, 256);
  ck_assert_int_eq(c.num_experts_per_tok, 6);
  ck_assert_int_eq(c.moe_intermediate_size, 2048);
  ck_assert_int_eq(c.num_hash_layers, 3);
  ck_assert_int_eq(c.scoring_func, VN_V4_SCORING_SQRTSOFTPLUS);
  ck_assert_str_eq(c.topk_method, "noaux_tc");
  ck_assert(c.norm_topk_prob);
  ck_assert(c.routed_scaling_factor == 1.5 && c.swiglu_limit == 10.0);
  ck_assert(c.hc_mult == 4 && c.hc_sinkhorn_iters == 20 && c.hc_eps == 1e-6);
  ck_assert(c.rms_norm_eps == 1e-6);
  ck_assert_int_eq(c.num_nextn_predict_layers, 1);
  ck_assert_str_eq(c.hidden_act, "silu");
  ck_assert(!c.tie_word_embeddings && !c.attention_bias);
  ck_assert_str_eq(c.torch_dtype, "bfloat16");
  ck_assert_str_eq(c.quantization_config.fmt, "e4m3");
  ck_assert_str_eq(c.quantization_config.scale_fmt, "ue8m0");
  ck_assert_int_eq(c.quantization_config.weight_block_size[1], 128);
  ck_assert(c.expert_dtype == VN_V4_EXPERT_FP4 && c.expert_dtype_present);
  ck_assert_int_eq(c.bos_token_id, 0);
  ck_assert_int_eq(c.eos_token_id, 1);
}
END_TEST

START_TEST(shipped_configs) {
  vn_v4_config c;
  load("v4-tiny.json", &c);
  ck_assert_int_eq(c.hidden_size, 256);
  ck_assert_int_eq(c.num_hidden_layers, 4);
  ck_assert_int_eq(c.compress_ratios[1], 4);
  ck_assert_int_eq(c.compress_ratios[2], 128);
  ck_assert_int_eq(c.num_hash_layers, 2);
  ck_assert_int_eq(c.index_topk, 8);
  ck_assert_int_eq(c.n_routed_experts, 16);
  load("v4-tiny2.json", &c);
  ck_assert_int_eq(c.hidden_size, 384);
  ck_assert_int_eq(c.num_hidden_layers, 3);
  ck_assert_int_eq(c.compress_ratios[0], 4);
  ck_assert_int_eq(c.vocab_size, 2000);
  load("v4-bench.json", &c);
  ck_assert_int_eq(c.num_hidden_layers, 8);
  ck_assert_int_eq(c.n_routed_experts, 64);
}
END_TEST

/* The tiny config with field (may be "a.b") set to the JSON value (NULL deletes it), parsed;
 * returns the status and leaves the message in err. */
static vnrt_status parse_edited_from(const char *base, const char *field, const char *value,
                                     vn_v4_config *c, char *err, size_t err_size) {
  json_object *root = json_tokener_parse(read_config(base));
  ck_assert_ptr_nonnull(root);
  json_object *obj = root;
  char key[128];
  snprintf(key, sizeof key, "%s", field);
  char *dot = strchr(key, '.');
  if (dot) {
    *dot = '\0';
    ck_assert(json_object_object_get_ex(root, key, &obj));
    memmove(key, dot + 1, strlen(dot + 1) + 1);
  }
  if (value) {
    json_object *v = json_tokener_parse(value);
    ck_assert_msg(v != NULL || strcmp(value, "null") == 0, "bad test value %s", value);
    json_object_object_add(obj, key, v);
  } else {
    json_object_object_del(obj, key);
  }
  const char *text = json_object_to_json_string(root);
  vnrt_status s = vn_v4_config_parse(text, strlen(text), c, err, err_size);
  json_object_put(root);
  return s;
}

static vnrt_status parse_edited(const char *field, const char *value, vn_v4_config *c, char *err,
                                size_t err_size) {
  return parse_edited_from("v4-tiny.json", field, value, c, err, err_size);
}

static void expect_bad_from(const char *base, const char *field, const char *value,
                            const char *fragment) {
  vn_v4_config c;
  char err[512] = "";
  vnrt_status s = parse_edited_from(base, field, value, &c, err, sizeof err);
  if (s != VNRT_ERROR_INVALID_ARGUMENT)
    ck_abort_msg("%s = %s: status %d (%s), expected INVALID_ARGUMENT", field,
                 value ? value : "(deleted)", (int)s, err);
  if (!strstr(err, fragment))
    ck_abort_msg("%s = %s: message '%s' lacks '%s'", field, value ? value : "(deleted)", err,
                 fragment);
  if (c.hidden_size != 0) ck_abort_msg("%s: *out not cleared on failure", field);
}

static void expect_bad(const char *field, const char *value, const char *fragment) {
  expect_bad_from("v4-tiny.json", field, value, fragment);
}

static bool is_prime_i64(int64_t v) {
  if (v < 2) return false;
  for (int64_t d = 2; d * d <= v; d++)
    if (v % d == 0) return false;
  return true;
}

typedef struct engram_count {
  int n;
  uint64_t bytes;
  int layers[8];
} engram_count;

static int count_engram(void *user, const vn_v4_tensor_spec *t) {
  engram_count *e = user;
  if (strstr(t->name, ".engram.")) {
    if (t->kind != VN_V4_KIND_ENGRAM) ck_abort_msg("%s: kind %d", t->name, (int)t->kind);
    if (e->n < 64 && t->layer >= 0 && t->layer < 8) e->layers[t->layer]++;
    e->n++;
    e->bytes += t->bytes;
  } else if (t->kind == VN_V4_KIND_ENGRAM) {
    ck_abort_msg("%s is of kind Engram", t->name);
  }
  return 0;
}

/* The Engram option: fields, derived hash parameters, tensors, and bad values. */
START_TEST(engram_configs) {
  vn_v4_config c;
  load("v4-tiny.json", &c);
  ck_assert_int_eq(c.engram.n_layers, 0);
  engram_count none = {0};
  vn_v4_for_each_tensor(&c, VN_V4_LIST_MODEL, count_engram, &none);
  ck_assert_int_eq(none.n, 0);
  load("v4-tiny-engram.json", &c);
  const vn_v4_engram *e = &c.engram;
  ck_assert_int_eq(e->n_layers, 2);
  ck_assert_int_eq(e->layer_ids[0], 1);
  ck_assert_int_eq(e->layer_ids[1], 3);
  ck_assert_int_eq(vn_v4_engram_index(&c, 3), 1);
  ck_assert_int_eq(vn_v4_engram_index(&c, 0), -1);
  ck_assert_int_eq(e->max_n, 3);
  ck_assert_int_eq(e->heads, 8); /* (3 - 1) * 4 */
  ck_assert_int_eq(e->dilation, 3);
  int64_t last = e->vocab_size - 1;
  for (int l = 0; l < e->n_layers; l++) {
    for (int j = 0; j < e->max_n; j++) {
      if ((e->mult[l][j] & 1) == 0 || e->mult[l][j] <= 0 || e->mult[l][j] >= ((int64_t)1 << 39))
        ck_abort_msg("mult[%d][%d] = %lld", l, j, (long long)e->mult[l][j]);
    }
    int64_t off = 0;
    for (int h = 0; h < e->heads; h++) {
      if (!is_prime_i64(e->primes[l][h]) || e->primes[l][h] <= last || e->offsets[l][h] != off)
        ck_abort_msg("layer %d head %d: prime %lld after %lld, offset %d (expected %lld)", l, h,
                     (long long)e->primes[l][h], (long long)last, e->offsets[l][h], (long long)off);
      last = e->primes[l][h];
      off += e->primes[l][h];
    }
    ck_assert_int_eq(e->table_rows[l], off);
  }
  ck_assert_int_eq(e->primes[0][0], 257); /* engram_vocab_size is prime */
  engram_count cnt = {0};
  vn_v4_for_each_tensor(&c, VN_V4_LIST_MODEL, count_engram, &cnt);
  ck_assert_int_eq(cnt.n, 14); /* 7 per Engram layer */
  ck_assert_int_eq(cnt.layers[1], 7);
  ck_assert_int_eq(cnt.layers[3], 7);
  ck_assert_int_eq(cnt.layers[0] + cnt.layers[2], 0);
  /* table bf16 + value_proj, key_proj bf16 + three f32 [n, C] norms + f32 conv [n C, K] */
  const uint64_t C = 256, n = 4, HD = 8 * 32;
  uint64_t want = 0;
  for (int l = 0; l < 2; l++)
    want += (uint64_t)e->table_rows[l] * 32 * 2 + C * HD * 2 + n * C * HD * 2 + 3 * n * C * 4 +
            n * C * 4 * 4;
  ck_assert_uint_eq(cnt.bytes, want);
  /* The memory plan: the Engram row, its states, and H table rows per token per layer read. */
  vn_v4_config plain;
  load("v4-tiny.json", &plain);
  vn_v4_memory mp, me;
  ck_assert_int_eq(vn_v4_memory_plan(&plain, 256, &mp), VNRT_OK);
  ck_assert_int_eq(vn_v4_memory_plan(&c, 256, &me), VNRT_OK);
  ck_assert_uint_eq(me.weight_bytes[VN_V4_KIND_ENGRAM], want);
  ck_assert_uint_eq(mp.weight_bytes[VN_V4_KIND_ENGRAM], 0);
  ck_assert_uint_eq(me.state_fixed_bytes - mp.state_fixed_bytes, 2 * 4 + 2 * 3 * 3 * n * C * 4);
  const uint64_t tables = (uint64_t)(e->table_rows[0] + e->table_rows[1]) * 32 * 2;
  ck_assert_uint_eq(me.decode_bytes_per_token - mp.decode_bytes_per_token,
                    want - tables + 2 * 8 * 32 * 2);

  const char *eg = "v4-tiny-engram.json";
  expect_bad_from(eg, "engram_layer_ids", "[1, 4]",
                  "engram_layer_ids[1] is 4, which is not a decoder layer in [0, 4)");
  expect_bad_from(eg, "engram_layer_ids", "[1, 1]", "engram_layer_ids lists layer 1 twice");
  expect_bad_from(eg, "engram_layer_ids", "3", "engram_layer_ids must be an array");
  expect_bad_from(eg, "engram_layer_ids", "[\"1\"]", "engram_layer_ids[0] is \"1\"");
  expect_bad_from(eg, "engram_max_ngram_size", "1", "engram_max_ngram_size is 1, which is outside");
  expect_bad_from(eg, "engram_max_ngram_size", "9", "engram_max_ngram_size is 9");
  expect_bad_from(eg, "engram_n_head_per_ngram", "33", "engram_n_head_per_ngram is 33");
  expect_bad_from(eg, "engram_head_dim", "0", "engram_head_dim is 0");
  expect_bad_from(eg, "engram_vocab_size", "1", "engram_vocab_size is 1");
  expect_bad_from(eg, "engram_kernel_size", "1", "engram_kernel_size is 1, which is outside");
  expect_bad_from(eg, "engram_dilation", "0", "engram_dilation is 0");
  expect_bad_from(eg, "engram_pad_id", "1024", "engram_pad_id is 1024");
  expect_bad_from(eg, "engram_seed", "-1", "engram_seed is -1");
  expect_bad_from(eg, "engram_kernel_size", "\"4\"", "engram_kernel_size must be an integer");
  expect_bad_from(eg, "engram_vocab_size", "2147483000",
                  "engram_vocab_size is 2147483000, which is outside");
  expect_bad_from(eg, "engram_layer_ids", NULL, "is set but engram_layer_ids is absent");
  expect_bad("engram_seed", "3", "engram_seed is set but engram_layer_ids is absent");
  /* null engram_layer_ids = no Engram */
  char err[512] = "";
  ck_assert_int_eq(parse_edited("engram_layer_ids", "null", &c, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(c.engram.n_layers, 0);
}
END_TEST

START_TEST(bad_configs) {
  expect_bad("model_type", "\"deepseek_v3\"", "model_type is \"deepseek_v3\"");
  expect_bad("hidden_size", NULL, "required field hidden_size is missing");
  expect_bad("rope_scaling.factor", NULL, "required field rope_scaling.factor is missing");
  expect_bad("hidden_size", "\"256\"", "hidden_size must be an integer, not a string");
  expect_bad("hidden_size", "256.5", "hidden_size must be an integer");
  expect_bad("rope_theta", "\"x\"", "rope_theta must be a number");
  expect_bad("norm_topk_prob", "1", "norm_topk_prob must be a boolean");
  expect_bad("compress_ratios", "4", "compress_ratios must be an array");
  expect_bad("hidden_size", "200", "hidden_size is 200, which is not a multiple of 128");
  expect_bad("hidden_size", "4294967296", "hidden_size is 4294967296, which is outside");
  expect_bad("q_lora_rank", "100", "q_lora_rank is 100, which is not a multiple of 128");
  expect_bad("moe_intermediate_size", "96", "moe_intermediate_size is 96");
  expect_bad("o_lora_rank", "64", "o_lora_rank is 64");
  expect_bad("head_dim", "64", "head_dim (64) must be greater than qk_rope_head_dim (64)");
  expect_bad("head_dim", "160", "head_dim - qk_rope_head_dim is 96");
  expect_bad("index_head_dim", "96", "index_head_dim is 96, which is not a power of 2");
  expect_bad("index_head_dim", "16", "index_head_dim is 16, which is not a multiple of 32");
  expect_bad("index_head_dim", "64", "index_head_dim (64) must be greater than");
  expect_bad("num_attention_heads", "3", "num_attention_heads (3) is not divisible by o_groups");
  expect_bad("vocab_size", "0", "vocab_size is 0, which is outside");
  expect_bad("vocab_size", "-5", "vocab_size is -5");
  expect_bad("num_experts_per_tok", "17",
             "num_experts_per_tok (17) is greater than n_routed_experts (16)");
  expect_bad("num_key_value_heads", "2", "num_key_value_heads is 2");
  expect_bad("n_shared_experts", "2", "n_shared_experts is 2");
  expect_bad("compress_ratios", "[0, 4, 128]", "compress_ratios has 3 entries");
  expect_bad("compress_ratios", "[0, 4, 128, 4]",
             "fewer than num_hidden_layers + num_nextn_predict_layers");
  expect_bad("compress_ratios", "[0, 4, 64, 4, 0]", "compress_ratios[2] is 64");
  expect_bad("compress_ratios", "[0, 4, \"128\", 4, 0]", "compress_ratios[2] is \"128\"");
  expect_bad("hc_sinkhorn_iters", "0", "hc_sinkhorn_iters is 0, which is outside [1, 1000]");
  expect_bad("hc_sinkhorn_iters", "1001", "hc_sinkhorn_iters is 1001");
  expect_bad("tie_word_embeddings", "true", "tie_word_embeddings is true");
  expect_bad("attention_bias", "true", "attention_bias is true");
  expect_bad("expert_dtype", "\"int4\"", "expert_dtype is \"int4\", which is not supported");
  expect_bad("scoring_func", "\"relu\"", "scoring_func is \"relu\"");
  expect_bad("hidden_act", "\"gelu\"", "hidden_act is \"gelu\"");
  expect_bad("rope_scaling.type", "\"linear\"", "rope_scaling.type is \"linear\"");
  expect_bad("rope_scaling.beta_fast", "0.5", "rope_scaling.beta_fast (0.5) must be greater");
  expect_bad("quantization_config.fmt", "\"e5m2\"", "quantization_config.fmt is \"e5m2\"");
  expect_bad("quantization_config.weight_block_size", "[64, 64]",
             "quantization_config.weight_block_size[0] is 64");
  expect_bad("num_hash_layers", "5", "num_hash_layers (5) is greater than num_hidden_layers");
  expect_bad("eos_token_id", "1024", "eos_token_id (1024) must be below vocab_size");
  expect_bad("rope_scaling", "[1]", "rope_scaling must be an object, not an array");
  /* A product beyond 2^31: H * D = 16384 * 262144. */
  vn_v4_config c;
  char err[512];
  json_object *root = json_tokener_parse(read_config("v4-tiny.json"));
  json_object_object_add(root, "num_attention_heads", json_object_new_int64(16384));
  json_object_object_add(root, "head_dim", json_object_new_int64(262144));
  const char *text = json_object_to_json_string(root);
  ck_assert_int_eq(vn_v4_config_parse(text, strlen(text), &c, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "num_attention_heads * head_dim is 4294967296, more than 2^31"), "%s",
                err);
  json_object_put(root);
}
END_TEST

START_TEST(not_json) {
  vn_v4_config c;
  char err[512];
  ck_assert_int_eq(vn_v4_config_parse("{\"model_type\": ", 15, &c, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "config.json: not valid JSON"), "%s", err);
  ck_assert_int_eq(vn_v4_config_parse("[1, 2]", 6, &c, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "the top level must be a JSON object, not an array"), "%s", err);
  ck_assert_int_eq(vn_v4_config_parse("{} x", 4, &c, err, sizeof err), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "text after the object"), "%s", err);
  ck_assert_int_eq(vn_v4_config_load("/nonexistent/config.json", &c, err, sizeof err),
                   VNRT_ERROR_IO);
  ck_assert_msg(strstr(err, "/nonexistent/config.json: cannot open"), "%s", err);
}
END_TEST

START_TEST(optional_fields) {
  vn_v4_config c;
  char err[512];
  /* No expert_dtype: the default (FP4), and the config says it was absent. */
  ck_assert_int_eq(parse_edited("expert_dtype", NULL, &c, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(c.expert_dtype, VN_V4_DEFAULT_EXPERT_DTYPE);
  ck_assert_int_eq(c.expert_dtype, VN_V4_EXPERT_FP4);
  ck_assert(!c.expert_dtype_present);
  ck_assert_int_eq(parse_edited("expert_dtype", "\"fp8\"", &c, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(c.expert_dtype, VN_V4_EXPERT_FP8);
  ck_assert_int_eq(parse_edited("scoring_func", "\"softmax\"", &c, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(c.scoring_func, VN_V4_SCORING_SOFTMAX);
  ck_assert_int_eq(parse_edited("bos_token_id", NULL, &c, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(c.bos_token_id, -1);
  ck_assert_int_eq(c.eos_token_id, 1);
  /* More ratios than layers + MTP (later revisions add speculative stages): kept. */
  ck_assert_int_eq(parse_edited("compress_ratios", "[0, 4, 128, 4, 0, 0]", &c, err, sizeof err),
                   VNRT_OK);
  ck_assert_int_eq(c.n_compress_ratios, 6);
  /* HF's newer spelling of the YaRN kind. */
  json_object *root = json_tokener_parse(read_config("v4-tiny.json"));
  json_object *rs;
  ck_assert(json_object_object_get_ex(root, "rope_scaling", &rs));
  json_object_object_del(rs, "type");
  json_object_object_add(rs, "rope_type", json_object_new_string("yarn"));
  const char *text = json_object_to_json_string(root);
  ck_assert_int_eq(vn_v4_config_parse(text, strlen(text), &c, err, sizeof err), VNRT_OK);
  json_object_put(root);
}
END_TEST

typedef struct count_ctx {
  uint64_t n, bytes, by_dtype[6];
} count_ctx;

static int count_tensor(void *user, const vn_v4_tensor_spec *t) {
  count_ctx *c = user;
  c->n++;
  c->bytes += t->bytes;
  static const char *const kD[] = {"BF16", "F32", "F8_E4M3", "F8_E8M0", "I8", "I64"};
  for (int i = 0; i < 6; i++)
    if (strcmp(t->dtype, kD[i]) == 0) c->by_dtype[i]++;
  return 0;
}

/* A dequantized checkpoint (no quantization_config): every FP8/FP4 weight becomes BF16
 * [out, in] without a scale; the other tensors stay; a non-object value is refused. */
START_TEST(dequantized_layout) {
  vn_v4_config q, b;
  char err[512];
  ck_assert_int_eq(parse_edited("quantization_config",
                                "{\"fmt\": \"e4m3\", \"scale_fmt\": "
                                "\"ue8m0\", \"quant_method\": \"fp8\", \"activation_scheme\": "
                                "\"dynamic\", \"weight_block_size\": [128, 128]}",
                                &q, err, sizeof err),
                   VNRT_OK);
  ck_assert(q.quantized);
  ck_assert_int_eq(parse_edited("quantization_config", NULL, &b, err, sizeof err), VNRT_OK);
  ck_assert(!b.quantized && b.quantization_config.fmt[0] == '\0');
  ck_assert_int_eq(parse_edited("quantization_config", "null", &b, err, sizeof err), VNRT_OK);
  ck_assert(!b.quantized);
  expect_bad("quantization_config", "[1]", "quantization_config must be an object, not an array");
  count_ctx cq = {0}, cb = {0};
  vn_v4_for_each_tensor(&q, VN_V4_LIST_MODEL, count_tensor, &cq);
  vn_v4_for_each_tensor(&b, VN_V4_LIST_MODEL, count_tensor, &cb);
  /* by_dtype: BF16, F32, F8_E4M3, F8_E8M0, I8, I64. Each weight keeps its place; its scale goes. */
  const uint64_t quantized = cq.by_dtype[2] + cq.by_dtype[4];
  ck_assert_uint_gt(quantized, 100);
  ck_assert_uint_eq(cq.by_dtype[3], quantized);
  ck_assert_uint_eq(cb.by_dtype[2] + cb.by_dtype[3] + cb.by_dtype[4], 0);
  ck_assert_uint_eq(cb.by_dtype[0], cq.by_dtype[0] + quantized);
  ck_assert_uint_eq(cb.n, cq.n - quantized);
  ck_assert_uint_eq(cb.by_dtype[1], cq.by_dtype[1]);
  ck_assert_uint_eq(cb.by_dtype[5], cq.by_dtype[5]);
}
END_TEST

START_TEST(flash_plan) {
  vn_v4_config c;
  load("v4-flash.json", &c);
  vn_v4_memory m;
  ck_assert_int_eq(vn_v4_memory_plan(&c, 1048576, &m), VNRT_OK);
  /* The real V4-Flash inventory (docs/deepseek-v4.md, "Memory plan"). */
  ck_assert_uint_eq(m.tensor_count_with_mtp, 69187);
  ck_assert_uint_eq(m.weights_with_mtp, 159609485896ull);
  ck_assert_uint_eq(m.tensor_count, 69187 - 1575);
  ck_assert_uint_eq(m.weight_bytes[VN_V4_KIND_MTP], 3593787756ull);
  ck_assert_uint_eq(m.weights_total, 159609485896ull - 3593787756ull);
  /* Routed experts by hand: 43 layers x 256 experts x 3 matrices of 2048 x 4096 FP4 codes
   * (half a byte each) plus one e8m0 scale per 32. */
  ck_assert_uint_eq(m.weight_bytes[VN_V4_KIND_ROUTED_EXPERTS],
                    43ull * 256 * 3 * (2048ull * 4096 / 2 + 2048ull * 4096 / 32));
  ck_assert_uint_eq(m.weight_bytes[VN_V4_KIND_EMBED], 129280ull * 4096 * 2);
  ck_assert_uint_eq(m.weight_bytes[VN_V4_KIND_HEAD], 129280ull * 4096 * 2);
  /* Per-layer tensor counts of the real files: 1,565 / 1,569 / 1,576 (ratio 0 / 128 / 4). */
  count_ctx all = {0};
  vn_v4_for_each_tensor(&c, VN_V4_LIST_MODEL, count_tensor, &all);
  ck_assert_uint_eq(all.n, 6 + 2 * 1565 + 20 * 1569 + 21 * 1576);
  /* Decode: one embedding row, 6 of 256 experts. */
  uint64_t want = m.weights_total - m.weight_bytes[VN_V4_KIND_EMBED] + 4096 * 2 -
                  m.weight_bytes[VN_V4_KIND_ROUTED_EXPERTS] +
                  m.weight_bytes[VN_V4_KIND_ROUTED_EXPERTS] / 256 * 6;
  ck_assert_uint_eq(m.decode_bytes_per_token, want);
  /* State: 3,440 f32 values per token; fixed = rings + compressor states. */
  ck_assert(m.state_bytes_per_token == 3440.0 * 4);
  uint64_t fixed = 43ull * 128 * 512 * 4 + 21ull * 2 * 8 * 1024 * 4 + 20ull * 2 * 128 * 512 * 4 +
                   21ull * 2 * 8 * 256 * 4;
  ck_assert_uint_eq(m.state_fixed_bytes, fixed);
  ck_assert_uint_eq(m.state_bytes_at_max_ctx, fixed + 21ull * (1048576 / 4) * (512 + 128) * 4 +
                                                  20ull * (1048576 / 128) * 512 * 4);
  ck_assert_int_eq(m.prefill_tokens, 4096);
  /* The arena formula by hand for Flash, per token: 2nC 32768 + (2+n)n 24 + C 4096 + Rq 1024
   * + 2HD 65536 + D 512 + 4D 2048 + Hi*Di 8192 + 4Di 512 + G*R 8192 + P/4 1024 + H(W+topk)
   * 40960 + E 256 + 2kF 24576 + 2F 4096 + C 4096 = 197912; plus the logits row. */
  ck_assert_uint_eq(m.prefill_arena_bytes, 4ull * (4096ull * 197912 + 129280));
  ck_assert_uint_eq(vn_v4_prefill_arena_bytes(&c, 4096), m.prefill_arena_bytes);
  ck_assert_uint_eq(vn_v4_prefill_arena_bytes(&c, 0), 0);
  ck_assert_int_eq(vn_v4_memory_plan(&c, 0, &m), VNRT_ERROR_INVALID_ARGUMENT);
  /* The table prints every kind. */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ck_assert_int_eq(vn_v4_memory_plan(&c, 1048576, &m), VNRT_OK);
  vn_v4_memory_plan_print(f, &c, &m);
  fclose(f);
  ck_assert_msg(strstr(text, "routed experts") && strstr(text, "159609485896"), "%s", text);
  free(text);
}
END_TEST

START_TEST(flash_dtype_counts) {
  /* Per-dtype tensor counts of one CSA layer of the real file (INVF in the reference): the
   * layer's 1,576 tensors. */
  vn_v4_config c;
  load("v4-flash.json", &c);
  c.num_hidden_layers = 3; /* layers 0, 1 (ratio 0) and 2 (ratio 4, hash) */
  count_ctx three = {0};
  vn_v4_for_each_tensor(&c, VN_V4_LIST_MODEL, count_tensor, &three);
  ck_assert_uint_eq(three.n, 6 + 1565 * 2 + 1576);
  ck_assert_uint_eq(three.by_dtype[5], 3);           /* I64: tid2eid of layers 0-2 */
  ck_assert_uint_eq(three.by_dtype[4], 3 * 256 * 3); /* I8: the routed experts */
}
END_TEST

/* The decode and prefill graphs update every state in place on the CPU (docs/executor.md,
 * "In-place state updates"): the window ring is read by sparse_attention before its kv_write,
 * the compressed caches by kv_scatter only, the compressors' states by kv_compress only. A graph
 * change that put a reader after a writer would copy the state every step. */
START_TEST(graph_states_update_in_place_on_the_cpu) {
  const char *names[2] = {"v4-tiny.json", "v4-tiny2.json"};
  vnrt_context *ctx = tu_context();
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  for (int k = 0; k < 2; ++k) {
    vn_v4_config c;
    load(names[k], &c);
    for (int64_t t = 1; t <= 5; t += 4) {
      vn_v4_graph_options o = {.tokens = t, .max_context = 256};
      vnrt_graph *g = NULL;
      char err[512];
      vnrt_status s = vn_v4_graph_build(ctx, &c, &o, &g, err, sizeof err);
      ck_assert_msg(s == VNRT_OK, "%s: %s", names[k], err);
      int32_t updated = 0;
      for (int32_t i = 0; i < vnrt_graph_state_count(g); ++i) {
        vnrt_value next = -1;
        vnrt_graph_state(g, i, &next);
        updated += next >= 0;
      }
      vnrt_plan *plan = NULL;
      TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, NULL, &plan));
      vnrt_plan_info info = {.struct_size = sizeof info};
      TU_OK(ctx, vnrt_plan_get_info(plan, &info));
      if (updated == 0 || info.n_inplace_updates != updated) {
        ck_abort_msg("%s, T = %lld: %d of %d state updates in place", names[k], (long long)t,
                     (int)info.n_inplace_updates, (int)updated);
      }
      vnrt_plan_destroy(plan);
      vnrt_graph_destroy(g);
    }
  }
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("v4_config");
  TCase *tc = tcase_create("v4_config");
  tcase_add_test(tc, flash_values);
  tcase_add_test(tc, shipped_configs);
  tcase_add_test(tc, bad_configs);
  tcase_add_test(tc, engram_configs);
  tcase_add_test(tc, graph_states_update_in_place_on_the_cpu);
  tcase_add_test(tc, not_json);
  tcase_add_test(tc, optional_fields);
  tcase_add_test(tc, flash_plan);
  tcase_add_test(tc, dequantized_layout);
  tcase_add_test(tc, flash_dtype_counts);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
