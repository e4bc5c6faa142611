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

/* "sqrt_softplus", "sigmoid" or "softmax": the moe_route attribute word. */
const char *ds_score_word(ds_score score);

#endif /* DS_CONFIG_H_ */
