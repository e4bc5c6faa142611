/* The expert-parallel MoE exchange of vnrt-generate (docs/scale-out.md): a
 * vnrt_moe_exchange_fn that serves each layer's routed experts from the ranks owning them,
 * either N slices in this process (--ep-local N) or the ranks of MPI_COMM_WORLD
 * (--expert-parallel, built with MPI). */
#ifndef VNRT_TOOLS_EP_EXCHANGE_H_
#define VNRT_TOOLS_EP_EXCHANGE_H_

#include <stdint.h>
#include <stdio.h>

#include "vnrt/model.h"

enum { EP_WIRE_F32 = 0, EP_WIRE_FP8 = 1, EP_STALL_LOAD = -2 };

typedef struct ep_exchange {
  vnrt_model *model;
  int32_t ranks, rank; /* rank: this process's (MPI), or -1 for N slices in this process */
  int32_t experts, k;
  int64_t hidden;
  int mpi;
  /* The rows of the dispatch: f32 (EP_WIRE_F32), or e4m3 with an e8m0 scale per 128 channels
   * (EP_WIRE_FP8: exact under the reference numerics, whose moe_ffn quantizes its input so). */
  int wire;
  /* MPI: a step of the exchange that waits longer than this ends every rank (no hang). */
  double timeout_s;
  /* MPI: the pairs each rank receives are run and returned in this many waves, so that one
   * wave's results travel while the next runs (0: 1). */
  int32_t waves;
  /* A test aid (MPI): rank stall_rank stops for good in layer stall_layer's exchange, or
   * before ep_all_ready with EP_STALL_LOAD. */
  int32_t stall_rank, stall_layer;
  /* Statistics of this rank. */
  int64_t calls, token_layers;
  uint64_t pairs_remote, pairs_local;
  uint64_t dispatch_bytes, combine_bytes, gather_bytes; /* sent to other ranks */
  double wait_seconds;   /* blocked until an exchange step completed */
  double flight_seconds; /* while at least one posted step had not completed */
  int32_t in_flight;
  double flight_since;
  double expert_seconds; /* in vnrt_model_moe_experts */
  /* The shared expert apart (ep_exchange_start/finish): the time the session spent between
   * the two, running the shared expert (over MPI, with the dispatch in flight). */
  int shared_apart;
  double shared_seconds, shared_since;
  /* MPI: the exchange posted by ep_exchange_start, until ep_exchange_finish. */
  struct ep_moe_pending {
    int active;
    int32_t layer;
    int64_t T, pos0, n_local, n_send, n_recv;
    int *cnt;  /* the counts and wave arrays */
    void *req; /* MPI_Request [] */
  } mpend;
  /* Engram (docs/scale-out.md, "Engram"): every table is sharded by row, rank r holding rows
   * [R·r/N, R·(r+1)/N) (ep_slice over rows), copied once from the mapped checkpoint; with N
   * slices in this process, every slice. The statistics are this rank's (rank 0's for N
   * slices): rows it needed from other ranks and from itself, bytes it received (rows) and
   * sent (requests). engram_log, when set (rank 0 or N slices), gets each fetch's rows. */
  struct ep_engram_table {
    int32_t layer, head_dim;
    int64_t rows;
    uint16_t **slice; /* [ranks]; NULL where this process does not hold it */
  } etab[16];
  int32_t n_etab;
  uint64_t engram_held_bytes, engram_table_bytes;
  uint64_t engram_rows_remote, engram_rows_local, engram_bytes, engram_req_bytes;
  int64_t engram_calls;
  FILE *engram_log;
  /* Fetches started early (VNRT_ENGRAM_START, MPI): one allgather per layer in flight until
   * its VNRT_ENGRAM_FINISH; the time from post to completion and the time waited for it. */
  struct ep_engram_pending {
    int32_t layer;
    void *req;        /* MPI_Request */
    char *got, *mine; /* the rows received, and this rank's own sent */
    int *counts;      /* [2·ranks]: bytes and displacements */
    double since;
  } epend[16];
  int32_t n_epend;
  double engram_flight_seconds, engram_wait_seconds;
  /* Scratch. */
  float *pair_out;
  size_t pair_cap;
  char *buf[6];
  size_t buf_cap[6];
} ep_exchange;

/* The first expert and the count of rank r's slice: [E·r/N, E·(r+1)/N). */
void ep_slice(int32_t experts, int32_t ranks, int32_t r, int32_t *first, int32_t *count);

/* The vnrt_moe_exchange_fn (user: an ep_exchange). */
vnrt_status ep_exchange_run(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                            const int32_t *experts, const float *weights, float *y);

/* The same exchange in two calls (vnrt_session_desc.moe_exchange and moe_exchange_finish):
 * the start posts the counts and the dispatch, the finish runs the experts, the combine and the
 * gather and writes y. With N slices in this process the finish does everything. */
vnrt_status ep_exchange_start(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                              const int32_t *experts, const float *weights, float *y);
vnrt_status ep_exchange_finish(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                               const int32_t *experts, const float *weights, float *y);

/* The vnrt_engram_fetch_fn (user: an ep_exchange): each row from the rank owning it, over
 * MPI counts first, then the requests and the rows (non-blocking, polled against the timeout);
 * with N slices in this process, from the owner's slice. */
vnrt_status ep_engram_fetch(void *user, const vnrt_engram_fetch *fetch);

void ep_exchange_free(ep_exchange *ex);

/* The bytes of one dispatched record on the wire (one token's row to one rank): a head of
 * 8 + 12·k bytes (the token, its pairs on that rank) and the row. */
size_t ep_record_bytes(const ep_exchange *ex);

/* MPI: returns when every rank has called it (after loading the model); a rank that does not
 * come within 10 × ex->timeout_s ends every rank (loads may differ by more than a step). */
void ep_all_ready(ep_exchange *ex);

/* MPI: 1 when every rank passed the same value (an allreduce with ex->timeout_s). */
int ep_same_on_all_ranks(ep_exchange *ex, uint64_t value);

/* One line of this rank's statistics per token (tokens: run through the model). */
void ep_exchange_print(FILE *fp, const ep_exchange *ex, int64_t tokens, double seconds);

#endif /* VNRT_TOOLS_EP_EXCHANGE_H_ */
