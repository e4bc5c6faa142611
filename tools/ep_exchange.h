/* The expert-parallel MoE exchange of vnrt-generate (docs/scale-out.md): a
 * vnrt_moe_exchange_fn that serves each layer's routed experts from the ranks owning them,
 * either N slices in this process (--ep-local N) or the ranks of MPI_COMM_WORLD
 * (--expert-parallel, built with MPI). */
#ifndef VNRT_TOOLS_EP_EXCHANGE_H_
#define VNRT_TOOLS_EP_EXCHANGE_H_

#include <stdint.h>
#include <stdio.h>

#include "vnrt/model.h"

typedef struct ep_exchange {
  vnrt_model *model;
  int32_t ranks, rank; /* rank: this process's (MPI), or -1 for N slices in this process */
  int32_t experts, k;
  int64_t hidden;
  int mpi;
  /* Statistics of this rank. */
  int64_t calls, token_layers;
  uint64_t pairs_remote, pairs_local;
  uint64_t dispatch_bytes, combine_bytes, gather_bytes; /* sent to other ranks */
  double wait_seconds;                                  /* in MPI calls */
  double expert_seconds;                                /* in vnrt_model_moe_experts */
  /* Scratch. */
  float *pair_out;
  size_t pair_cap;
  char *buf[4];
  size_t buf_cap[4];
} ep_exchange;

/* The first expert and the count of rank r's slice: [E·r/N, E·(r+1)/N). */
void ep_slice(int32_t experts, int32_t ranks, int32_t r, int32_t *first, int32_t *count);

/* The vnrt_moe_exchange_fn (user: an ep_exchange). */
vnrt_status ep_exchange_run(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                            const int32_t *experts, const float *weights, float *y);

void ep_exchange_free(ep_exchange *ex);

/* One line of this rank's statistics per token (tokens: run through the model). */
void ep_exchange_print(FILE *fp, const ep_exchange *ex, int64_t tokens, double seconds);

#endif /* VNRT_TOOLS_EP_EXCHANGE_H_ */
