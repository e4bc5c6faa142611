/* Expert-parallel scale-out of DeepSeek-V4 (docs/scale-out.md): the dispatch/combine
 * bookkeeping of N ranks over a run's real (or synthetic) routing, and the analytic model of
 * weights and all-to-all bytes per device, from the config alone. */
#ifndef VNRT_MODELS_V4_SCALE_H_
#define VNRT_MODELS_V4_SCALE_H_

#include <stdint.h>
#include <stdio.h>

#include "v4_config.h"

#define VN_EP_MAX_RANKS 4096

/* The bytes of the all-to-all exchange (docs/scale-out.md, "Bytes"): a token goes once to each
 * remote rank that owns at least one of its k experts, as C e4m3 bytes, ceil(C / 128) ue8m0
 * scales and, per expert it meets there, an i32 id and an f32 weight; that rank sends back one
 * bf16 row (2C bytes), the weighted sum of its experts' outputs. */
#define VN_EP_PAIR_META_BYTES 8

typedef struct vn_ep_tally {
  int32_t ranks;
  int32_t experts, k;
  int64_t hidden;
  int64_t token_layers; /* (token, MoE layer) pairs tallied */
  int64_t pairs_local, pairs_remote;
  int64_t rows_remote; /* (token, remote rank) rows dispatched */
  /* Per rank: bytes sent in dispatch (token rows to expert owners) and in combine (results
   * back to the tokens' home ranks), and (token, layer) pairs whose home it is. */
  uint64_t *dispatch_sent, *combine_sent, *home_tokens;
  int32_t *owner; /* [experts]: the rank owning each expert */
} vn_ep_tally;

/* The rank that owns expert e of E over N ranks: contiguous slices [E·r/N, E·(r+1)/N). */
int32_t vn_ep_owner(int32_t e, int32_t experts, int32_t ranks);

/* Sets up *t for ranks in [1, VN_EP_MAX_RANKS] (VNRT_ERROR_INVALID_ARGUMENT otherwise). */
vnrt_status vn_ep_tally_init(vn_ep_tally *t, int32_t ranks, int32_t experts, int32_t k,
                             int64_t hidden);
void vn_ep_tally_free(vn_ep_tally *t);

/* Tallies one MoE layer of a run of T tokens whose experts are experts[T, k]; token t's home
 * rank is (pos0 + t) mod N (tokens spread over the ranks as data-parallel attention would).
 * An id outside [0, E) is skipped. */
void vn_ep_tally_add(vn_ep_tally *t, const int32_t *experts, int64_t T, int64_t pos0);

/* Prints the per-rank figures (bytes per token per layer and totals). */
void vn_ep_tally_print(FILE *fp, const vn_ep_tally *t);

/* Expected remote ranks a token is dispatched to under uniform routing (k distinct experts of
 * E, balanced slices): (N − 1)·(1 − C(E − E/N, k)/C(E, k)), computed per rank for unequal
 * slices. */
double vn_ep_expected_remote_ranks(int32_t experts, int32_t k, int32_t ranks);

/* The scale-out model of cfg over `ranks` devices, with a synthetic uniform-routing run of
 * `tokens` tokens (seeded) through the bookkeeping, as text. */
vnrt_status vn_v4_scale_print(FILE *fp, const vn_v4_config *cfg, int32_t ranks, int64_t tokens,
                              uint64_t seed);

#endif /* VNRT_MODELS_V4_SCALE_H_ */
