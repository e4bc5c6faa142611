/* ds_model: the tiny DeepSeek-V4-style model as vnrt graphs — a prefill plan (T = prompt
 * length) and a decode plan (T = 1), compiled once, fed from memory-mapped safetensors weights,
 * with the KV caches and Engram histories kept as plan states. */
#ifndef DS_MODEL_H_
#define DS_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#include "ds_config.h"
#include "vnrt/vnrt.h"

/* Builds the forward graph for T tokens (see README.md for the architecture). Inputs: "ids"
 * [T] i32, "pos" [T] i32 (rope positions), "start" [1] i32 (the KV cache row of ids[0]),
 * "kv_len" [1] i32 (= start + T); params: every tensor of ds_tensor_specs by its name; states:
 * the KV caches, the short_conv histories and the n-gram history; output: "logits" [T, V]. */
vnrt_status ds_graph_build(vnrt_context *ctx, const ds_config *cfg, int64_t tokens,
                           vnrt_graph **out_graph, char *err, size_t err_size);

/* Name of the n-gram history state (the last N-1 token ids), shared by the Engram layers. */
#define DS_NGRAM_HIST_STATE "model.engram.ngram_hist"

typedef struct ds_model ds_model;

/* Opens the weights (memory-mapped) and checks them against cfg: every tensor of the model
 * must be there with its exact name, dtype and shape, and nothing else. When cfg gives no
 * weight_format, each group's format is the file's (an e4m3 or e2m1 first matrix of the group:
 * fp8 or fp4, codes with their X.scale beside them); ds_model_config then says which. A missing,
 * misnamed, mis-typed or unexpected tensor fails with a message naming it (VNRT_ERROR_NOT_FOUND,
 * VNRT_ERROR_SHAPE_MISMATCH or VNRT_ERROR_INVALID_ARGUMENT). The config is copied; ctx is
 * borrowed and must outlive the model. */
vnrt_status ds_model_open(vnrt_context *ctx, const ds_config *cfg, const char *weights_path,
                          ds_model **out_model, char *err, size_t err_size);
void ds_model_close(ds_model *model);

/* How the plans place memory. Zero-initialise for the defaults. */
typedef struct ds_model_options {
  /* Device memory each plan may use; over it, weights stay in the mapped file and are streamed
   * to the device on the copy stream. 0: $VNRT_DEVICE_MEMORY_LIMIT if set, else no limit. */
  uint64_t device_memory_limit;
  /* Nonzero: the Engram tables are served from Engram stores over the mapped weights file
   * (vnrt/memory.h) instead of device memory; their rows are prefetched on the copy stream. */
  int engram_store;
  int64_t engram_cache_rows; /* rows of each table's device row cache; 0: no cache */
  /* Nonzero: each plan holds its own copy of the weights (as before vnrt_plan_create_shared;
   * for comparing). By default the decode plan uses the prefill plan's device weights. */
  int no_share;
} ds_model_options;

/* Compiles the prefill graph for prompts of prefill_len tokens and the decode graph (one
 * token) for device, the decode plan sharing the prefill plan's device weights, and binds the
 * weights once (borrowed from the mapping, never copied for streamed weights; weights the plans
 * cannot share, streamed or replicated for CPU fallback, are bound to each plan). Replaces plans
 * compiled before. options may be NULL. */
vnrt_status ds_model_compile(ds_model *model, vnrt_device *device, int64_t prefill_len,
                             const ds_model_options *options);

/* Starts a new sequence with exactly prefill_len tokens: resets every state, runs the prefill
 * plan, hands its states (KV caches, histories) to the decode plan. logits (may be NULL)
 * receives [prefill_len, V] floats. */
vnrt_status ds_model_prefill(ds_model *model, const int32_t *ids, float *logits);
/* Appends one token and returns its logits [V] (may be NULL). Fails when the KV cache
 * (max_position_embeddings rows) is full. */
vnrt_status ds_model_decode(ds_model *model, int32_t id, float *logits);

/* Tokens of the current sequence (prefill plus decode steps). */
int64_t ds_model_position(const ds_model *model);
/* The message of the last failure of a ds_model_* call. */
const char *ds_model_error(const ds_model *model);
const ds_config *ds_model_config(const ds_model *model);
/* Plan statistics of the compiled plans (either pointer may be NULL). */
vnrt_status ds_model_plan_info(const ds_model *model, vnrt_plan_info *prefill,
                               vnrt_plan_info *decode);
/* Seconds spent compiling each plan and running each (summed over runs). */
typedef struct ds_timing {
  double compile_prefill_s, compile_decode_s, bind_s;
  double prefill_s, decode_s;
  int64_t prefill_runs, decode_runs;
} ds_timing;
void ds_model_timing(const ds_model *model, ds_timing *out);

/* The runtime's per-run statistics (vnrt_plan_get_run_stats), summed over the prefill runs and
 * over the decode runs since the last compile; overlap and hit rate are recomputed from the
 * sums (overlap: mean over runs). Either pointer may be NULL. */
void ds_model_run_stats(const ds_model *model, vnrt_run_stats *prefill, vnrt_run_stats *decode);

/* Index of the largest value (ties: the lowest index). */
int32_t ds_argmax(const float *values, int64_t n);

#endif /* DS_MODEL_H_ */
