/* DeepSeek-V4 config.json: the parsed, validated model description (docs/deepseek-v4.md,
 * "Loading"), and the checkpoint's tensor inventory derived from it.
 *
 * Field names are those of the real config.json. Every size is bounded (each dim <= 2^31, every
 * product checked) so that code computing shapes from a validated config cannot overflow. */
#ifndef VNRT_MODELS_V4_CONFIG_H_
#define VNRT_MODELS_V4_CONFIG_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

/* compress_ratios holds at most this many entries (V4-Pro: 62). */
#define VN_V4_MAX_RATIOS 512

/* The router's score function (`scoring_func`). V4 uses sqrtsoftplus; softmax and sigmoid are
 * parsed so that a caller can refuse them with a clear message. */
typedef enum vn_v4_scoring {
  VN_V4_SCORING_SQRTSOFTPLUS = 0,
  VN_V4_SCORING_SOFTMAX = 1,
  VN_V4_SCORING_SIGMOID = 2,
} vn_v4_scoring;

/* The routed experts' stored format (`expert_dtype`): "fp4" = I8 packed e2m1 + F8_E8M0 scale
 * per 1x32, "fp8" = F8_E4M3 + F8_E8M0 scale per 128x128. */
typedef enum vn_v4_expert_dtype {
  VN_V4_EXPERT_FP4 = 0,
  VN_V4_EXPERT_FP8 = 1,
} vn_v4_expert_dtype;

/* What a config without `expert_dtype` means: the one switch for that unconfirmed item (the
 * V4-Flash release ships FP4 experts; docs/deepseek-v4.md, "Loading"). */
#define VN_V4_DEFAULT_EXPERT_DTYPE VN_V4_EXPERT_FP4

typedef struct vn_v4_rope_scaling {
  char type[16];                            /* "yarn" (required) */
  double factor;                            /* > 0 */
  int64_t original_max_position_embeddings; /* > 0 */
  double beta_fast, beta_slow;              /* beta_fast > beta_slow > 0 */
} vn_v4_rope_scaling;

typedef struct vn_v4_quantization_config {
  char fmt[16];                 /* "e4m3" */
  char scale_fmt[16];           /* "ue8m0" */
  int64_t weight_block_size[2]; /* [128, 128] */
  char quant_method[16];        /* "fp8" */
  char activation_scheme[16];   /* "dynamic" */
} vn_v4_quantization_config;

/* Engram (optional, docs/deepseek-v4.md "Engram"): bounds of the config's Engram fields. */
#define VN_V4_MAX_ENGRAM_LAYERS 16 /* engram_layer_ids entries */
#define VN_V4_MAX_NGRAM 8          /* engram_max_ngram_size */
#define VN_V4_MAX_ENGRAM_HEADS 64  /* (engram_max_ngram_size - 1) * engram_n_head_per_ngram */

/* The Engram layers: hashed 2..N-gram memory added into the residual streams before a layer's
 * attention. n_layers = 0 (no engram_layer_ids) means no Engram. */
typedef struct vn_v4_engram {
  int32_t n_layers;                           /* entries of engram_layer_ids */
  int32_t layer_ids[VN_V4_MAX_ENGRAM_LAYERS]; /* distinct decoder layers */
  int32_t max_n;                              /* N: engram_max_ngram_size, [2, 8], default 3 */
  int32_t heads_per_ngram;                    /* K: engram_n_head_per_ngram, default 8 */
  int32_t heads;                              /* (N - 1) * K: table heads of a layer */
  int64_t head_dim;                           /* engram_head_dim, default 32 */
  int64_t vocab_size;  /* engram_vocab_size: the first table size tried, default 1009 */
  int32_t kernel_size; /* engram_kernel_size, [2, 16], default 4 */
  int32_t dilation;    /* engram_dilation, default N */
  int32_t pad_id;      /* engram_pad_id: the history of a new sequence, default 0 */
  uint64_t seed;       /* engram_seed: the hash multipliers' generator, default 0 */
  /* Derived per Engram layer (index into layer_ids): N odd multipliers, one distinct prime
   * table size per head, the heads' row offsets into the concatenated table, its rows. */
  int64_t mult[VN_V4_MAX_ENGRAM_LAYERS][VN_V4_MAX_NGRAM];
  int64_t primes[VN_V4_MAX_ENGRAM_LAYERS][VN_V4_MAX_ENGRAM_HEADS];
  int32_t offsets[VN_V4_MAX_ENGRAM_LAYERS][VN_V4_MAX_ENGRAM_HEADS];
  int64_t table_rows[VN_V4_MAX_ENGRAM_LAYERS];
} vn_v4_engram;

typedef struct vn_v4_config {
  /* Sizes. Every one is > 0 and <= 2^31 after a successful parse. */
  int64_t vocab_size;
  int64_t hidden_size;         /* C: a multiple of 128 (activation quantization blocks) */
  int32_t num_hidden_layers;   /* L: decoder layers, MTP excluded */
  int32_t num_attention_heads; /* H: a multiple of o_groups */
  int32_t num_key_value_heads; /* must be 1 (one shared K=V head) */
  int64_t head_dim;            /* D > qk_rope_head_dim */
  int64_t qk_rope_head_dim;    /* r: the trailing r channels of a head are rotated; even */
  int64_t q_lora_rank;         /* a multiple of 128 */
  int32_t o_groups;            /* G */
  int64_t o_lora_rank;         /* R: a multiple of 128 */
  int64_t sliding_window;
  /* One ratio per layer (0, 4 or 128): entries [0, L) are the decoder layers, entry L the
   * first MTP layer. The file may hold more than L entries (the MTP layers, and later
   * revisions add speculative stages): at least L are required, all are kept and checked. */
  int32_t compress_ratios[VN_V4_MAX_RATIOS];
  int32_t n_compress_ratios;
  double compress_rope_theta; /* RoPE base of ratio != 0 layers (with YaRN) */
  double rope_theta;          /* RoPE base of ratio 0 layers */
  vn_v4_rope_scaling rope_scaling;
  int64_t max_position_embeddings;
  int32_t index_n_heads;  /* Hi */
  int64_t index_head_dim; /* Di: a power of 2, a multiple of 32, > qk_rope_head_dim */
  int64_t index_topk;
  int32_t n_routed_experts;      /* E */
  int32_t n_shared_experts;      /* must be 1 */
  int32_t num_experts_per_tok;   /* k <= E */
  int64_t moe_intermediate_size; /* F: a multiple of 128 */
  int32_t num_hash_layers;       /* layers [0, num_hash_layers) route by tid2eid */
  vn_v4_scoring scoring_func;
  char topk_method[32]; /* kept as read ("noaux_tc"); not used by the forward pass */
  bool norm_topk_prob;
  double routed_scaling_factor;
  double swiglu_limit;       /* 0 = no clamp */
  int32_t hc_mult;           /* n: residual streams */
  int32_t hc_sinkhorn_iters; /* [1, 1000] */
  double hc_eps;
  double rms_norm_eps;
  int32_t num_nextn_predict_layers; /* MTP layers (0 or more); their tensors are skipped */
  char hidden_act[16];              /* "silu" (required) */
  bool tie_word_embeddings;         /* must be false */
  bool attention_bias;              /* must be false */
  char torch_dtype[16];             /* as read ("bfloat16"); "" when absent */
  /* quantization_config present: DeepSeek's FP8/FP4 layout. Absent (or null): a dequantized
   * checkpoint (a BF16 conversion), where every weight the quantized layout stores as FP8/FP4
   * is a BF16 [out, in] without a `.scale` (docs/deepseek-v4.md, "Dequantized checkpoints"). */
  bool quantized;
  vn_v4_quantization_config quantization_config; /* zeroed when !quantized */
  vn_v4_expert_dtype expert_dtype;               /* VN_V4_DEFAULT_EXPERT_DTYPE when absent */
  bool expert_dtype_present;                     /* whether the file named it */
  int64_t bos_token_id, eos_token_id;            /* -1 when absent */
  vn_v4_engram engram;                           /* n_layers = 0: no Engram */
} vn_v4_config;

/* Parses and validates config.json text (len bytes; need not be NUL-terminated) into *out.
 * On failure returns VNRT_ERROR_INVALID_ARGUMENT (VNRT_ERROR_OUT_OF_MEMORY when allocation
 * fails) with a message in err[err_size] that names the field and what is wrong with it:
 * "config.json: hidden_size is 1000, which is not a multiple of 128". *out is zeroed then. */
vnrt_status vn_v4_config_parse(const char *json_text, size_t len, vn_v4_config *out, char *err,
                               size_t err_size);

/* vn_v4_config_parse with name (e.g. the file's path) starting its messages instead of
 * "config.json". */
vnrt_status vn_v4_config_parse_named(const char *json_text, size_t len, const char *name,
                                     vn_v4_config *out, char *err, size_t err_size);

/* vn_v4_config_parse on the file at path (its messages start with the path). */
vnrt_status vn_v4_config_load(const char *path, vn_v4_config *out, char *err, size_t err_size);

/* Compress ratio of layer i (0 <= i < n_compress_ratios; -1 outside). */
int32_t vn_v4_layer_ratio(const vn_v4_config *cfg, int32_t layer);

/* Whether decoder layer i routes by tid2eid (i < num_hash_layers; MTP layers never do). */
bool vn_v4_is_hash_layer(const vn_v4_config *cfg, int32_t layer);

/* Index of decoder layer i in cfg->engram.layer_ids, or -1 when it has no Engram. */
int32_t vn_v4_engram_index(const vn_v4_config *cfg, int32_t layer);

/* ---- tensor inventory ------------------------------------------------------------------ */

/* What a weight is for: the memory plan's rows (vn_v4_memory_plan) and the checkpoint's byte
 * counts (vn_checkpoint_bytes_by_kind) use the same classes. */
typedef enum vn_v4_kind {
  VN_V4_KIND_ATTENTION = 0,  /* wq_a, wq_b, wkv, wo_a, wo_b (+ scales), attn_sink */
  VN_V4_KIND_COMPRESSOR,     /* attn.compressor.* except its norm */
  VN_V4_KIND_INDEXER,        /* attn.indexer.* except its compressor's norm */
  VN_V4_KIND_SHARED_EXPERT,  /* ffn.shared_experts.* */
  VN_V4_KIND_ROUTED_EXPERTS, /* ffn.experts.* */
  VN_V4_KIND_ROUTER,         /* ffn.gate.weight, ffn.gate.bias, ffn.gate.tid2eid */
  VN_V4_KIND_EMBED,          /* embed.weight */
  VN_V4_KIND_HEAD,           /* head.weight */
  VN_V4_KIND_MHC,            /* hc_* (per layer and hc_head_*) */
  VN_V4_KIND_NORMS,          /* every RMSNorm weight, final norm included */
  VN_V4_KIND_MTP,            /* every mtp.* tensor (skipped by the loader) */
  VN_V4_KIND_ENGRAM,         /* layers.N.engram.* (Engram layers only) */
  VN_V4_KIND_COUNT
} vn_v4_kind;

/* Printable name of a kind ("attention", "routed experts", ...; "?" outside the range). */
const char *vn_v4_kind_name(vn_v4_kind kind);

/* How a tensor's values are stored. */
typedef enum vn_v4_storage {
  VN_V4_STORE_BF16 = 0,
  VN_V4_STORE_F32,
  VN_V4_STORE_FP8,   /* F8_E4M3 codes; its scale follows as the next tensor */
  VN_V4_STORE_FP4,   /* I8, two e2m1 codes per byte; its scale follows as the next tensor */
  VN_V4_STORE_SCALE, /* F8_E8M0 scale of the tensor before it */
  VN_V4_STORE_I64,   /* tid2eid */
} vn_v4_storage;

/* One tensor the checkpoint must hold. */
typedef struct vn_v4_tensor_spec {
  char name[128];    /* "layers.3.attn.wq_a.weight" */
  const char *dtype; /* safetensors dtype: "BF16", "F32", "F8_E4M3", "F8_E8M0", "I8", "I64" */
  vn_v4_storage storage;
  int32_t rank;        /* 1 or 2 */
  int64_t dims[2];     /* as stored: an I8 tensor's last dim counts bytes (in / 2) */
  int64_t logical_in;  /* FP8/FP4 weights and their scales: the weight's input dim; else 0 */
  int32_t dequantized; /* a BF16 weight of a dequantized checkpoint: 8 or 4, the FP8/FP4 format
                        * the quantized layout stores it in (its recipe); else 0 */
  uint64_t bytes;      /* stored payload bytes */
  vn_v4_kind kind;
  int32_t layer; /* decoder layer; L + j for MTP block j; -1 for globals */
} vn_v4_tensor_spec;

/* Which tensors vn_v4_for_each_tensor lists. */
enum {
  VN_V4_LIST_MODEL = 1, /* embed, layers.*, head, norm, hc_head_* */
  VN_V4_LIST_MTP = 2,   /* mtp.J.* for J < num_nextn_predict_layers */
};

/* Calls fn(user, spec) for every tensor of the real checkpoint layout (docs/deepseek-v4.md,
 * "Checkpoint") in this order: embed.weight; layers 0..L-1 (each layer's tensors together,
 * a weight's .scale right after it); head.weight, norm.weight, hc_head_fn/base/scale; then
 * mtp.0.* ... . A nonzero return from fn stops the walk and is returned; otherwise 0. */
typedef int (*vn_v4_tensor_fn)(void *user, const vn_v4_tensor_spec *spec);
int vn_v4_for_each_tensor(const vn_v4_config *cfg, int which, vn_v4_tensor_fn fn, void *user);

#endif /* VNRT_MODELS_V4_CONFIG_H_ */
