/* ds_config: the tiny DeepSeek-V4-style model's configuration, read from a strict JSON file,
 * checked, and completed with the Engram hash parameters it implies. */
#ifndef DS_CONFIG_H_
#define DS_CONFIG_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

#define DS_MAX_ENGRAM_LAYERS 4 /* Engram sites per model */
#define DS_MAX_NGRAM 4         /* largest N of the N-gram hash */
#define DS_MAX_ENGRAM_HEADS 64 /* (N-1)*K */
#define DS_ERR_SIZE 1024       /* room for one error message */

typedef enum ds_score {
  DS_SCORE_SQRT_SOFTPLUS = 0, /* DeepSeek-V4 */
  DS_SCORE_SIGMOID = 1,       /* DeepSeek-V3 */
  DS_SCORE_SOFTMAX = 2,
} ds_score;

/* How a group of big matrices is stored (docs: README.md, "Quantized weights"). */
typedef enum ds_wformat {
  DS_WF_NONE = 0, /* weight_dtype, no scale */
  DS_WF_FP8 = 1,  /* e4m3 codes with an e8m0 scale per 128 x 128 block */
  DS_WF_FP4 = 2,  /* packed e2m1 codes with an e8m0 scale per 1 x 32 group */
} ds_wformat;

/* The groups of matrices weight_format sets. */
typedef enum ds_wgroup {
  DS_WG_ATTENTION = 0, /* q/k/v/o projections */
  DS_WG_SHARED = 1,    /* the shared expert's gate/up/down */
  DS_WG_EXPERTS = 2,   /* the routed experts' gate_up_proj and down_proj */
  DS_WG_COUNT = 3,
} ds_wgroup;

/* Every size of the model. Keys of the JSON file are given in brackets. */
typedef struct ds_config {
  int64_t hidden;      /* C [hidden_size] */
  int64_t layers;      /* L [num_hidden_layers] */
  int64_t vocab;       /* V [vocab_size] */
  int64_t heads;       /* Hq [num_attention_heads]; one shared KV head (MQA) */
  int64_t head_dim;    /* D [head_dim] */
  int64_t rope_dim;    /* rotated channels, the last ones of a head [qk_rope_head_dim] */
  double rope_theta;   /* [rope_theta], default 10000 */
  int64_t window;      /* sliding window; 0 = full causal attention [sliding_window] */
  int64_t max_seq;     /* KV cache rows [max_position_embeddings] */
  int64_t hc_mult;     /* n residual streams [hc_mult] */
  int64_t hc_iters;    /* Sinkhorn iterations [hc_sinkhorn_iters], default 20 */
  double hc_eps;       /* [hc_eps], default 1e-6 */
  double norm_eps;     /* [rms_norm_eps], default 1e-6 */
  int64_t experts;     /* E [n_routed_experts] */
  int64_t top_k;       /* k [num_experts_per_tok] */
  int64_t expert_ffn;  /* F [moe_intermediate_size] */
  int64_t shared;      /* [n_shared_experts] (0 or more); shared hidden = shared * F */
  double route_scale;  /* [routed_scaling_factor] */
  ds_score score;      /* [scoring_func]: "sqrtsoftplus" (default), "sigmoid", "softmax" */
  double swiglu_limit; /* [swiglu_limit]; 0 = no clamp */
  int64_t hash_layers; /* the first layers route by tid2eid [num_hash_layers] */
  int32_t n_engram;    /* how many engram_layer_ids */
  int64_t engram_layer[DS_MAX_ENGRAM_LAYERS]; /* [engram_layer_ids] */
  int64_t ngram;                              /* N [engram_max_ngram_size]: orders 2..N */
  int64_t ngram_heads;     /* K [engram_n_head_per_ngram]: hash heads per order */
  int64_t engram_dim;      /* per-head row width [engram_head_dim] */
  int64_t engram_rows;     /* rows per head before rounding up to a prime [engram_vocab_size] */
  int64_t conv_kernel;     /* short_conv kernel [engram_kernel_size], default 4 */
  int32_t pad_id;          /* token before the sequence start [engram_pad_id], default 0 */
  uint64_t engram_seed;    /* seeds the hash multipliers [engram_seed], default 0 */
  vnrt_dtype weight_dtype; /* big matrices: "bf16" (default), "f16" or "f32" [weight_dtype] */
  uint64_t init_seed;      /* seeds the weight generator [init_seed], default 0 */
  /* [weight_format]: {"attention": "fp8", "shared": "fp8", "experts": "fp4"}, each "fp8",
   * "fp4" or "none" (weight_dtype; the default). Quantized matrices are generated as
   * weight_dtype masters and then quantized. */
  ds_wformat weight_format[DS_WG_COUNT];
  /* Nonzero when the config gave weight_format: a weights file must match it. Otherwise
   * ds_model_open takes each group's format from the file. */
  int weight_format_given;

  /* Derived by ds_config_finish, not read from the file. */
  int64_t engram_heads_total;                                       /* H = (N-1)*K */
  int64_t engram_mult[DS_MAX_ENGRAM_LAYERS][DS_MAX_NGRAM];          /* odd hash multipliers */
  int64_t engram_primes[DS_MAX_ENGRAM_LAYERS][DS_MAX_ENGRAM_HEADS]; /* distinct table sizes */
  int64_t engram_table_rows[DS_MAX_ENGRAM_LAYERS];                  /* sum of a layer's primes */
} ds_config;

/* Parses JSON text (one object of the keys above, nothing else) into *out and finishes it.
 * Unknown or repeated keys, a wrong type, a missing required key, a value out of range or
 * malformed JSON fail with a message "name:line:col: ..." or "name: key ...". Returns 0 on
 * success, -1 on failure. name is used in messages only. */
int ds_config_parse(const char *text, size_t length, const char *name, ds_config *out, char *err,
                    size_t err_size);
/* Reads and parses a file. */
int ds_config_load(const char *path, ds_config *out, char *err, size_t err_size);

/* Checks every size and derives the Engram hash parameters (multipliers from engram_seed,
 * distinct primes at or above engram_vocab_size). Call it again after changing a field by
 * hand. Returns 0, or -1 with a message. */
int ds_config_finish(ds_config *cfg, char *err, size_t err_size);

/* Index of layer in engram_layer[], or -1 if the layer has no Engram. */
int32_t ds_config_engram_index(const ds_config *cfg, int64_t layer);

/* Sets every group's format from a word: "fp8fp4" (FP8 attention and shared expert, FP4
 * routed experts: DeepSeek-V4's layout), "fp8" (all FP8), "fp4" (all FP4) or "none", and marks
 * the formats as given. Returns 0, or -1 with a message for another word. */
int ds_config_set_quant(ds_config *cfg, const char *word, char *err, size_t err_size);

/* "fp8", "fp4" or "none". */
const char *ds_wformat_word(ds_wformat format);

/* "fp8 attention, fp8 shared, fp4 experts", or "none" when nothing is quantized. */
const char *ds_config_quant_str(const ds_config *cfg, char *buf, size_t size);

/* "sqrt_softplus", "sigmoid" or "softmax": the moe_route attribute word. */
const char *ds_score_word(ds_score score);

#endif /* DS_CONFIG_H_ */
