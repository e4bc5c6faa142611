/* DeepSeek-V4 memory plan (v4_plan.h): the tensor inventory summed by kind, the decode
 * roofline and the per-sequence state, from the config alone. */
#include "v4_plan.h"

#include <string.h>

typedef struct plan_sum {
  vn_v4_memory *m;
  uint64_t routed_per_layer_expert; /* bytes of one expert of one decoder layer */
  bool overflow;
} plan_sum;

static int add_tensor(void *user, const vn_v4_tensor_spec *t) {
  plan_sum *s = user;
  vn_v4_memory *m = s->m;
  if (m->weight_bytes[t->kind] > UINT64_MAX - t->bytes) s->overflow = true;
  m->weight_bytes[t->kind] += t->bytes;
  m->tensor_count_with_mtp++;
  if (t->kind != VN_V4_KIND_MTP) m->tensor_count++;
  if (t->kind == VN_V4_KIND_ROUTED_EXPERTS && t->layer == 0 &&
      strncmp(t->name, "layers.0.ffn.experts.0.", 23) == 0)
    s->routed_per_layer_expert += t->bytes;
  return 0;
}

vnrt_status vn_v4_memory_plan(const vn_v4_config *cfg, int64_t max_ctx, vn_v4_memory *out) {
  if (out) memset(out, 0, sizeof *out);
  if (!cfg || !out || max_ctx < 1 || max_ctx > ((int64_t)1 << 40))
    return VNRT_ERROR_INVALID_ARGUMENT;
  plan_sum s = {.m = out};
  vn_v4_for_each_tensor(cfg, VN_V4_LIST_MODEL | VN_V4_LIST_MTP, add_tensor, &s);
  for (int k = 0; k < VN_V4_KIND_COUNT; k++) {
    if (out->weights_with_mtp > UINT64_MAX - out->weight_bytes[k]) s.overflow = true;
    out->weights_with_mtp += out->weight_bytes[k];
    if (k != VN_V4_KIND_MTP) out->weights_total += out->weight_bytes[k];
  }

  const uint64_t C = (uint64_t)cfg->hidden_size, L = (uint64_t)cfg->num_hidden_layers;
  const uint64_t E = (uint64_t)cfg->n_routed_experts, k = (uint64_t)cfg->num_experts_per_tok;
  /* Decode roofline: one embedding row, k of E experts per layer, everything else once. */
  out->decode_bytes_per_token = out->weights_total - out->weight_bytes[VN_V4_KIND_EMBED] + C * 2 -
                                out->weight_bytes[VN_V4_KIND_ROUTED_EXPERTS] +
                                L * k * s.routed_per_layer_expert;
  (void)E;
  /* Engram: a layer's table is read H rows per token, its other tensors once. */
  const vn_v4_engram *eg = &cfg->engram;
  for (int32_t i = 0; i < eg->n_layers; i++) {
    const uint64_t row_bytes = (uint64_t)eg->head_dim * 2; /* BF16 */
    out->decode_bytes_per_token -= (uint64_t)eg->table_rows[i] * row_bytes;
    out->decode_bytes_per_token += (uint64_t)eg->heads * row_bytes;
  }

  /* State per sequence, f32 (docs/deepseek-v4.md, "Forward pass": the states). */
  const uint64_t D = (uint64_t)cfg->head_dim, Di = (uint64_t)cfg->index_head_dim;
  const uint64_t W = (uint64_t)cfg->sliding_window, ctx = (uint64_t)max_ctx;
  uint64_t fixed = 0, grow_at_ctx = 0;
  double per_tok = 0;
  for (uint64_t i = 0; i < L; i++) {
    const uint64_t m = (uint64_t)cfg->compress_ratios[i];
    fixed += W * D * 4; /* window ring */
    if (m != 0) {
      const uint64_t c = m == 4 ? 2 : 1;
      fixed += 2 * (c * m) * (c * D) * 4; /* compressor state_a, state_z */
      grow_at_ctx += ctx / m * D * 4;     /* compressed cache */
      per_tok += (double)D * 4 / (double)m;
    }
    if (m == 4) {
      fixed += 2 * 8 * (2 * Di) * 4; /* indexer compressor states */
      grow_at_ctx += ctx / 4 * Di * 4;
      per_tok += (double)Di * 4 / 4;
    }
  }
  if (eg->n_layers > 0) { /* n-gram history (i32) and each Engram layer's conv history */
    fixed += (uint64_t)(eg->max_n - 1) * 4;
    fixed += (uint64_t)eg->n_layers * (uint64_t)(eg->kernel_size - 1) * (uint64_t)eg->dilation *
             (uint64_t)cfg->hc_mult * C * 4;
  }
  out->state_fixed_bytes = fixed;
  out->state_bytes_per_token = per_tok;
  out->max_ctx = max_ctx;
  out->state_bytes_at_max_ctx = fixed + grow_at_ctx;

  out->prefill_tokens = max_ctx < 4096 ? max_ctx : 4096;
  out->prefill_arena_bytes = vn_v4_prefill_arena_bytes(cfg, out->prefill_tokens);
  return s.overflow ? VNRT_ERROR_INVALID_ARGUMENT : VNRT_OK;
}

uint64_t vn_v4_prefill_arena_bytes(const vn_v4_config *cfg, int64_t prefill_tokens) {
  if (!cfg || prefill_tokens < 1 || prefill_tokens > ((int64_t)1 << 24)) return 0;
  /* The live tensors of one layer (buffers are reused from layer to layer), plus the last
   * position's logits. Every term is <= 2^33 for a validated config, P <= 2^24. */
  const uint64_t P = (uint64_t)prefill_tokens, C = (uint64_t)cfg->hidden_size;
  const uint64_t n = (uint64_t)cfg->hc_mult, H = (uint64_t)cfg->num_attention_heads;
  const uint64_t D = (uint64_t)cfg->head_dim, Di = (uint64_t)cfg->index_head_dim;
  const uint64_t Rq = (uint64_t)cfg->q_lora_rank, Hi = (uint64_t)cfg->index_n_heads;
  const uint64_t G = (uint64_t)cfg->o_groups, R = (uint64_t)cfg->o_lora_rank;
  const uint64_t F = (uint64_t)cfg->moe_intermediate_size, V = (uint64_t)cfg->vocab_size;
  const uint64_t E = (uint64_t)cfg->n_routed_experts, k = (uint64_t)cfg->num_experts_per_tok;
  const uint64_t W = (uint64_t)cfg->sliding_window, topk = (uint64_t)cfg->index_topk;
  uint64_t per_token = 2 * n * C + (2 + n) * n + C + Rq + 2 * H * D + D + 4 * D + Hi * Di + 4 * Di +
                       G * R + P / 4 + H * (W + topk) + E + k * 2 * F + 2 * F + C;
  if (per_token > UINT64_MAX / 8 / P) return 0;
  return 4 * (P * per_token + V);
}

static void row(FILE *fp, const char *what, uint64_t bytes, uint64_t total) {
  fprintf(fp, "  %-30s %20llu  %10.3f GB  %6.2f%%\n", what, (unsigned long long)bytes,
          (double)bytes / 1e9, total ? 100.0 * (double)bytes / (double)total : 0.0);
}

void vn_v4_memory_plan_print(FILE *fp, const vn_v4_config *cfg, const vn_v4_memory *m) {
  if (!fp || !cfg || !m) return;
  fprintf(fp, "DeepSeek-V4 memory plan: %d layers, hidden %lld, %d experts (top %d, %s)\n",
          cfg->num_hidden_layers, (long long)cfg->hidden_size, cfg->n_routed_experts,
          cfg->num_experts_per_tok,
          !cfg->quantized                         ? "bf16, dequantized"
          : cfg->expert_dtype == VN_V4_EXPERT_FP4 ? "fp4"
                                                  : "fp8");
  fprintf(fp, "weights at stored size (%llu tensors without MTP, %llu with):\n",
          (unsigned long long)m->tensor_count, (unsigned long long)m->tensor_count_with_mtp);
  for (int k = 0; k < VN_V4_KIND_COUNT; k++)
    if (k != VN_V4_KIND_MTP && (k != VN_V4_KIND_ENGRAM || m->weight_bytes[k] != 0))
      row(fp, vn_v4_kind_name((vn_v4_kind)k), m->weight_bytes[k], m->weights_total);
  row(fp, "total (loaded)", m->weights_total, m->weights_total);
  row(fp, "MTP (skipped)", m->weight_bytes[VN_V4_KIND_MTP], m->weights_total);
  row(fp, "checkpoint total_size", m->weights_with_mtp, m->weights_total);
  fprintf(fp, "decode, weights read per token:  %20llu  %10.3f GB\n",
          (unsigned long long)m->decode_bytes_per_token, (double)m->decode_bytes_per_token / 1e9);
  fprintf(fp, "state per sequence (f32): fixed %llu bytes, %.1f bytes per token\n",
          (unsigned long long)m->state_fixed_bytes, m->state_bytes_per_token);
  fprintf(fp, "state at max_ctx %lld:          %20llu  %10.3f GB\n", (long long)m->max_ctx,
          (unsigned long long)m->state_bytes_at_max_ctx, (double)m->state_bytes_at_max_ctx / 1e9);
  fprintf(fp, "prefill arena, %lld tokens:      %20llu  %10.3f GB\n", (long long)m->prefill_tokens,
          (unsigned long long)m->prefill_arena_bytes, (double)m->prefill_arena_bytes / 1e9);
}
