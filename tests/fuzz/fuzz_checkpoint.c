/* A checkpoint directory (models/checkpoint.c): the input is split into
 * model.safetensors.index.json (its first 2 bytes give that file's length) and one shard,
 * model-00001-of-00001.safetensors; config.json is the tiny config. Opening runs the index,
 * total_size, shard and inventory checks; every failure must name its cause. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fuzz.h"

static const char k_config[] =
    "{\"architectures\":[\"DeepseekV4ForCausalLM\"],\"model_type\":\"deepseek_v4\","
    "\"vocab_size\":64,\"hidden_size\":128,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
    "\"num_key_value_heads\":1,\"head_dim\":128,\"qk_rope_head_dim\":64,\"q_lora_rank\":128,"
    "\"o_groups\":1,\"o_lora_rank\":128,\"sliding_window\":8,\"compress_ratios\":[0,0],"
    "\"compress_rope_theta\":160000,\"rope_theta\":10000,\"rope_scaling\":{\"type\":\"yarn\","
    "\"factor\":16,\"original_max_position_embeddings\":65536,\"beta_fast\":32,\"beta_slow\":1},"
    "\"max_position_embeddings\":4096,\"index_n_heads\":2,\"index_head_dim\":128,"
    "\"index_topk\":4,\"n_routed_experts\":4,\"n_shared_experts\":1,\"num_experts_per_tok\":2,"
    "\"moe_intermediate_size\":128,\"num_hash_layers\":0,\"scoring_func\":\"sqrtsoftplus\","
    "\"topk_method\":\"noaux_tc\",\"norm_topk_prob\":true,\"routed_scaling_factor\":1.5,"
    "\"swiglu_limit\":10.0,\"hc_mult\":4,\"hc_sinkhorn_iters\":20,\"hc_eps\":1e-6,"
    "\"rms_norm_eps\":1e-6,\"num_nextn_predict_layers\":1,\"hidden_act\":\"silu\","
    "\"tie_word_embeddings\":false,\"attention_bias\":false,\"torch_dtype\":\"bfloat16\","
    "\"expert_dtype\":\"fp4\",\"quantization_config\":{\"activation_scheme\":\"dynamic\","
    "\"fmt\":\"e4m3\",\"quant_method\":\"fp8\",\"scale_fmt\":\"ue8m0\","
    "\"weight_block_size\":[128,128]}}";

static int put(const char *dir, const char *name, const void *data, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, n, f);
  fclose(f);
  return w == n ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > (256u << 10)) return 0;
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/vnrt-fuzz-ckpt-XXXXXX");
    FUZZ_CHECK(mkdtemp(dir) != NULL, "a scratch folder");
    FUZZ_CHECK(put(dir, "config.json", k_config, sizeof k_config - 1) == 0, "config.json");
  }
  size_t n_index = (size_t)(data[0] | (data[1] << 8));
  if (n_index > size - 2) n_index = size - 2;
  if (put(dir, "model.safetensors.index.json", data + 2, n_index) != 0 ||
      put(dir, "model-00001-of-00001.safetensors", data + 2 + n_index, size - 2 - n_index) != 0) {
    return 0;
  }
  vn_checkpoint *ck = NULL;
  char err[512] = "";
  if (vn_checkpoint_open(fuzz_context(), dir, &ck, err, sizeof err) == VNRT_OK) {
    vn_checkpoint_close(ck);
  } else {
    FUZZ_CHECK(strlen(err) > 0, "a refused checkpoint says why");
  }
  return 0;
}
