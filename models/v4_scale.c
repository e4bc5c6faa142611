/* Expert-parallel scale-out bookkeeping and model (v4_scale.h, docs/scale-out.md). */
#include "v4_scale.h"

#include <stdlib.h>
#include <string.h>

#include "v4_plan.h"

int32_t vn_ep_owner(int32_t e, int32_t experts, int32_t ranks) {
  /* the largest r with E·r/N <= e */
  int32_t r = (int32_t)(((int64_t)e * ranks + ranks - 1) / experts);
  while (r > 0 && (int64_t)experts * r / ranks > e) --r;
  while (r + 1 < ranks && (int64_t)experts * (r + 1) / ranks <= e) ++r;
  return r;
}

vnrt_status vn_ep_tally_init(vn_ep_tally *t, int32_t ranks, int32_t experts, int32_t k,
                             int64_t hidden) {
  memset(t, 0, sizeof *t);
  if (ranks < 1 || ranks > VN_EP_MAX_RANKS || experts < 1 || k < 1 || hidden < 1) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  t->ranks = ranks;
  t->experts = experts;
  t->k = k;
  t->hidden = hidden;
  t->dispatch_sent = calloc((size_t)ranks, sizeof *t->dispatch_sent);
  t->combine_sent = calloc((size_t)ranks, sizeof *t->combine_sent);
  t->home_tokens = calloc((size_t)ranks, sizeof *t->home_tokens);
  t->owner = calloc((size_t)experts, sizeof *t->owner);
  if (!t->dispatch_sent || !t->combine_sent || !t->home_tokens || !t->owner) {
    vn_ep_tally_free(t);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  for (int32_t e = 0; e < experts; ++e) t->owner[e] = vn_ep_owner(e, experts, ranks);
  return VNRT_OK;
}

void vn_ep_tally_free(vn_ep_tally *t) {
  free(t->dispatch_sent);
  free(t->combine_sent);
  free(t->home_tokens);
  free(t->owner);
  memset(t, 0, sizeof *t);
}

static uint64_t row_bytes(int64_t C) { return (uint64_t)C + (uint64_t)((C + 127) / 128); }

void vn_ep_tally_add(vn_ep_tally *t, const int32_t *experts, int64_t T, int64_t pos0) {
  enum { MAX_K = 64 };
  for (int64_t i = 0; i < T; ++i) {
    const int32_t home = (int32_t)((pos0 + i) % t->ranks);
    int32_t dest[MAX_K], pairs[MAX_K], n_dest = 0;
    for (int32_t j = 0; j < t->k && j < MAX_K; ++j) {
      const int32_t e = experts[i * t->k + j];
      if (e < 0 || e >= t->experts) continue;
      const int32_t r = t->owner[e];
      if (r == home) {
        t->pairs_local++;
        continue;
      }
      t->pairs_remote++;
      int32_t d = 0;
      while (d < n_dest && dest[d] != r) ++d;
      if (d == n_dest) {
        dest[n_dest] = r;
        pairs[n_dest++] = 0;
      }
      pairs[d]++;
    }
    for (int32_t d = 0; d < n_dest; ++d) {
      t->dispatch_sent[home] += row_bytes(t->hidden) + (uint64_t)pairs[d] * VN_EP_PAIR_META_BYTES;
      t->combine_sent[dest[d]] += 2 * (uint64_t)t->hidden;
    }
    t->rows_remote += n_dest;
    t->home_tokens[home]++;
    t->token_layers++;
  }
}

void vn_ep_tally_print(FILE *fp, const vn_ep_tally *t) {
  const double tl = t->token_layers > 0 ? (double)t->token_layers : 1.0;
  uint64_t total = 0;
  for (int32_t r = 0; r < t->ranks; ++r) total += t->dispatch_sent[r] + t->combine_sent[r];
  fprintf(fp,
          "ep: %d ranks, %lld token-layers, pairs local %lld remote %lld, rows dispatched %lld "
          "(%.3f remote ranks per token-layer)\n",
          (int)t->ranks, (long long)t->token_layers, (long long)t->pairs_local,
          (long long)t->pairs_remote, (long long)t->rows_remote, (double)t->rows_remote / tl);
  fprintf(fp, "ep: bytes sent per token-layer, all ranks: %.1f (dispatch + combine)\n",
          (double)total / tl);
  for (int32_t r = 0; r < t->ranks && r < 64; ++r) {
    fprintf(fp, "ep rank %d: home %llu token-layers, sent dispatch %llu combine %llu bytes\n",
            (int)r, (unsigned long long)t->home_tokens[r], (unsigned long long)t->dispatch_sent[r],
            (unsigned long long)t->combine_sent[r]);
  }
  if (t->ranks > 64) fprintf(fp, "ep: (ranks 64 and up not listed)\n");
}

double vn_ep_expected_remote_ranks(int32_t experts, int32_t k, int32_t ranks) {
  /* Rank r (slice of s experts) is missed by all k distinct picks with probability
   * Π_{i<k} (E − s − i)/(E − i); a token's home is a uniformly chosen rank. */
  double sum_hit = 0;
  for (int32_t r = 0; r < ranks; ++r) {
    const int64_t s = (int64_t)experts * (r + 1) / ranks - (int64_t)experts * r / ranks;
    double miss = 1.0;
    for (int32_t i = 0; i < k; ++i) {
      miss *= (double)(experts - s - i) / (double)(experts - i);
      if (miss <= 0) {
        miss = 0;
        break;
      }
    }
    sum_hit += 1.0 - miss;
  }
  /* Σ over remote ranks = Σ_r P(hit r) − P(hit home), home uniform over the ranks. */
  return sum_hit - sum_hit / (double)ranks;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Multiply-adds of one token through one layer's linears (attention, compressor, indexer,
 * router, shared and k routed experts); the attention core is left out (it grows with the
 * context, docs/scale-out.md). */
static double layer_macs(const vn_v4_config *c, int32_t layer) {
  const double C = (double)c->hidden_size, Rq = (double)c->q_lora_rank;
  const double H = (double)c->num_attention_heads, D = (double)c->head_dim;
  const double G = (double)c->o_groups, Ro = (double)c->o_lora_rank;
  const double F = (double)c->moe_intermediate_size, E = (double)c->n_routed_experts;
  const double k = (double)c->num_experts_per_tok;
  const double Hi = (double)c->index_n_heads, Di = (double)c->index_head_dim;
  double m = C * Rq + Rq * H * D + C * D + Ro * H * D + G * Ro * C;
  const int32_t ratio = vn_v4_layer_ratio(c, layer);
  if (ratio != 0) m += 2 * (ratio == 4 ? 2 : 1) * D * C;
  if (ratio == 4) m += Rq * Hi * Di + C * Hi + 2 * 2 * Di * C;
  m += E * C + (k + 1) * 3 * C * F;
  return m;
}

vnrt_status vn_v4_scale_print(FILE *fp, const vn_v4_config *c, int32_t N, int64_t tokens,
                              uint64_t seed) {
  if (!fp || !c || N < 1 || N > VN_EP_MAX_RANKS || tokens < 1 || tokens > (1 << 24)) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  const int32_t E = c->n_routed_experts, k = c->num_experts_per_tok, L = c->num_hidden_layers;
  const int64_t C = c->hidden_size;
  if (N > E) {
    fprintf(fp, "scale-out: %d ranks for %d experts: at most one rank per expert\n", (int)N,
            (int)E);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  vn_v4_memory mem;
  const int64_t ctx = c->max_position_embeddings < 65536 ? c->max_position_embeddings : 65536;
  vnrt_status st = vn_v4_memory_plan(c, ctx, &mem);
  if (st != VNRT_OK) return st;
  const uint64_t routed = mem.weight_bytes[VN_V4_KIND_ROUTED_EXPERTS];
  const uint64_t replicated = mem.weights_total - routed;
  const int64_t slice = ((int64_t)E + N - 1) / N; /* the largest slice */
  const uint64_t routed_dev = routed / (uint64_t)E * (uint64_t)slice;
  fprintf(fp, "scale-out of %d layers, hidden %lld, %d experts (top %d) over %d ranks\n", (int)L,
          (long long)C, (int)E, (int)k, (int)N);
  fprintf(fp,
          "weights per device: replicated %.3f GB + routed experts %.3f GB (%lld of %d) = "
          "%.3f GB (one device: %.3f GB)\n",
          (double)replicated / 1e9, (double)routed_dev / 1e9, (long long)slice, (int)E,
          (double)(replicated + routed_dev) / 1e9, (double)mem.weights_total / 1e9);
  fprintf(fp, "state per sequence at %lld tokens (replicated with attention): %.3f GB\n",
          (long long)ctx, (double)mem.state_bytes_at_max_ctx / 1e9);
  const double R = vn_ep_expected_remote_ranks(E, k, N);
  const double pairs = (double)k * (double)(N - 1) / (double)N;
  const double disp = R * (double)row_bytes(C) + pairs * VN_EP_PAIR_META_BYTES;
  const double comb = R * 2.0 * (double)C;
  fprintf(fp,
          "formula (uniform routing), per token per MoE layer: %.4f remote ranks, %.4f remote "
          "pairs, dispatch %.1f bytes, combine %.1f bytes, total %.1f bytes\n",
          R, pairs, disp, comb, disp + comb);
  double macs = 0;
  for (int32_t i = 0; i < L; ++i) macs += layer_macs(c, i);
  const double flops_layer = 2.0 * macs / (double)L;
  const double rate = 1e15; /* FLOP/s a device sustains: docs/scale-out.md, "Assumptions" */
  const double t_layer = flops_layer / rate;
  fprintf(fp,
          "per token per layer: %.1f MFLOP (linears), %.3f us at %.0f TFLOP/s; all-to-all bytes "
          "per token per model %.1f KB\n",
          flops_layer / 1e6, t_layer * 1e6, rate / 1e12, (disp + comb) * L / 1e3);
  fprintf(fp,
          "link bandwidth to hide the exchange behind compute (per device, each way): %.1f GB/s "
          "(dispatch %.1f, combine %.1f)\n",
          (disp + comb) / t_layer / 1e9, disp / t_layer / 1e9, comb / t_layer / 1e9);
  /* The same bookkeeping as a real run, on synthetic uniform routing. */
  vn_ep_tally t;
  st = vn_ep_tally_init(&t, N, E, k, C);
  if (st != VNRT_OK) return st;
  int32_t *ex = malloc((size_t)k * sizeof *ex);
  if (!ex) {
    vn_ep_tally_free(&t);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  uint64_t s = seed ? seed : 1;
  for (int64_t tok = 0; tok < tokens; ++tok) {
    for (int32_t j = 0; j < k; ++j) {
      int dup;
      do {
        ex[j] = (int32_t)(splitmix(&s) % (uint64_t)E);
        dup = 0;
        for (int32_t i = 0; i < j; ++i) dup |= ex[i] == ex[j];
      } while (dup);
    }
    vn_ep_tally_add(&t, ex, 1, tok);
  }
  uint64_t total = 0;
  for (int32_t r = 0; r < N; ++r) total += t.dispatch_sent[r] + t.combine_sent[r];
  fprintf(fp,
          "simulated (%lld tokens, uniform routing, seed %llu): %.4f remote ranks, total %.1f "
          "bytes per token per MoE layer (formula %.1f)\n",
          (long long)tokens, (unsigned long long)(seed ? seed : 1),
          (double)t.rows_remote / (double)tokens, (double)total / (double)tokens, disp + comb);
  vn_ep_tally_print(fp, &t);
  free(ex);
  vn_ep_tally_free(&t);
  return VNRT_OK;
}
