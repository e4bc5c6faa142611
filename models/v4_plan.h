/* DeepSeek-V4 memory plan: what a config costs in weights, per decode step and in per-sequence
 * state, computed from the config alone (docs/deepseek-v4.md, "Memory plan"). */
#ifndef VNRT_MODELS_V4_PLAN_H_
#define VNRT_MODELS_V4_PLAN_H_

#include <stdint.h>
#include <stdio.h>

#include "v4_config.h"

typedef struct vn_v4_memory {
  /* Stored payload bytes of the model's tensors by kind (VN_V4_KIND_MTP: the mtp.* tensors),
   * and their totals with and without MTP. */
  uint64_t weight_bytes[VN_V4_KIND_COUNT];
  uint64_t weights_total;    /* without MTP: what the loader maps */
  uint64_t weights_with_mtp; /* every tensor of the checkpoint (index.json total_size) */
  uint64_t tensor_count;     /* without MTP */
  uint64_t tensor_count_with_mtp;
  /* Bytes of weights one decode step reads (roofline): everything except embed (one row of
   * it) and the routed experts, of which num_experts_per_tok of n_routed_experts per layer. */
  uint64_t decode_bytes_per_token;
  /* f32 state of one sequence: the fixed part (window rings and compressor states, whatever
   * the length), the growth per token (compressed and indexer caches), and both at max_ctx. */
  uint64_t state_fixed_bytes;
  double state_bytes_per_token;
  int64_t max_ctx;
  uint64_t state_bytes_at_max_ctx;
  /* Rough f32 activation arena of a prefill of prefill_tokens tokens (see the formula in
   * docs/deepseek-v4.md, "Memory plan"). */
  int64_t prefill_tokens;
  uint64_t prefill_arena_bytes;
} vn_v4_memory;

/* Fills *out for cfg (validated by vn_v4_config_parse) and a context of max_ctx tokens, with
 * the prefill arena for min(max_ctx, 4096) tokens. Returns VNRT_ERROR_INVALID_ARGUMENT when
 * max_ctx < 1 or a total overflows 64 bits. */
vnrt_status vn_v4_memory_plan(const vn_v4_config *cfg, int64_t max_ctx, vn_v4_memory *out);

/* The rough f32 activation arena of a prefill of prefill_tokens tokens (>= 1), the formula of
 * docs/deepseek-v4.md, "Memory plan"; 0 when prefill_tokens < 1 or the result overflows. */
uint64_t vn_v4_prefill_arena_bytes(const vn_v4_config *cfg, int64_t prefill_tokens);

/* Prints the plan as a readable table. */
void vn_v4_memory_plan_print(FILE *fp, const vn_v4_config *cfg, const vn_v4_memory *m);

#endif /* VNRT_MODELS_V4_PLAN_H_ */
