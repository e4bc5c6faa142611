/* The expert-parallel MoE exchange (ep_exchange.h). Every rank runs the same tokens through
 * attention (replicated); token t of a run at pos0 has its home on rank (pos0 + t) mod N, which
 * sends each of its (token, expert) pairs to the expert's owner (counts first, then the
 * payload), gets the pair's weighted output back and sums them in slot order, as moe_ffn does;
 * the homes then share their rows with every rank (the attention that follows is replicated
 * too, where data-parallel attention would not need this). */
#define _POSIX_C_SOURCE 200809L
#include "ep_exchange.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef VNRT_HAVE_MPI
#include <mpi.h>
#endif

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ep_slice(int32_t experts, int32_t ranks, int32_t r, int32_t *first, int32_t *count) {
  const int64_t a = (int64_t)experts * r / ranks, b = (int64_t)experts * (r + 1) / ranks;
  *first = (int32_t)a;
  *count = (int32_t)(b - a);
}

static int grow(ep_exchange *ex, int i, size_t bytes) {
  if (bytes <= ex->buf_cap[i]) return 0;
  char *p = realloc(ex->buf[i], bytes);
  if (!p) return -1;
  ex->buf[i] = p;
  ex->buf_cap[i] = bytes;
  return 0;
}

void ep_exchange_free(ep_exchange *ex) {
  free(ex->pair_out);
  for (int i = 0; i < 4; ++i) free(ex->buf[i]);
  memset(ex, 0, sizeof *ex);
}

/* A dispatched pair: token, slot, expert, weight, then the token's row (C floats). */
typedef struct pair_head {
  int32_t t, slot, expert;
  float weight;
} pair_head;

/* y[t] = Σ_i pair_out[t, i] in slot order (moe_ffn's sum; the weights are in the pairs). */
static void sum_slots(const ep_exchange *ex, int64_t t, float *y) {
  const int64_t C = ex->hidden;
  float *dst = y + t * C;
  for (int64_t c = 0; c < C; ++c) dst[c] = 0.0f;
  for (int32_t i = 0; i < ex->k; ++i) {
    const float *row = ex->pair_out + (t * ex->k + i) * C;
    for (int64_t c = 0; c < C; ++c) dst[c] += row[c];
  }
}

/* N slices in this process: each slice's pairs run on its own expert plan. */
static vnrt_status run_local(ep_exchange *ex, int32_t layer, int64_t T, int64_t pos0,
                             const float *x, const int32_t *experts, const float *weights,
                             float *y) {
  const int64_t C = ex->hidden, k = ex->k, n = T * k;
  if (grow(ex, 0, (size_t)n * (size_t)C * sizeof(float)) ||
      grow(ex, 1, (size_t)n * (sizeof(int32_t) + sizeof(float) + sizeof(int64_t)))) {
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  float *xs = (float *)ex->buf[0];
  int32_t *ids = (int32_t *)ex->buf[1];
  float *ws = (float *)(ids + n);
  int64_t *where = (int64_t *)(ws + n);
  for (int32_t r = 0; r < ex->ranks; ++r) {
    int32_t first, count;
    ep_slice(ex->experts, ex->ranks, r, &first, &count);
    int64_t P = 0;
    for (int64_t s = 0; s < n; ++s) {
      const int32_t e = experts[s];
      if (e < first || e >= first + count) continue;
      const int64_t t = s / k;
      if (r == (int32_t)((pos0 + t) % ex->ranks)) {
        ex->pairs_local++;
      } else {
        ex->pairs_remote++;
        ex->dispatch_bytes += sizeof(pair_head) + (uint64_t)C * sizeof(float);
        ex->combine_bytes += (uint64_t)C * sizeof(float);
      }
      memcpy(xs + P * C, x + t * C, (size_t)C * sizeof *xs);
      ids[P] = e;
      ws[P] = weights[s];
      where[P++] = s;
    }
    double t0 = now_s();
    vnrt_status st = vnrt_model_moe_experts(ex->model, layer, first, count, xs, ids, ws, P, 1, xs);
    ex->expert_seconds += now_s() - t0;
    if (st != VNRT_OK) return st;
    for (int64_t p = 0; p < P; ++p) {
      memcpy(ex->pair_out + where[p] * C, xs + p * C, (size_t)C * sizeof *xs);
    }
  }
  for (int64_t t = 0; t < T; ++t) sum_slots(ex, t, y);
  return VNRT_OK;
}

#ifdef VNRT_HAVE_MPI
static int32_t owner_of(const ep_exchange *ex, int32_t e) {
  int32_t r = (int32_t)((int64_t)e * ex->ranks / ex->experts);
  while (r > 0 && (int64_t)ex->experts * r / ex->ranks > e) --r;
  while (r + 1 < ex->ranks && (int64_t)ex->experts * (r + 1) / ex->ranks <= e) ++r;
  return r;
}

static vnrt_status run_mpi(ep_exchange *ex, int32_t layer, int64_t T, int64_t pos0, const float *x,
                           const int32_t *experts, const float *weights, float *y) {
  const int32_t N = ex->ranks, me = ex->rank;
  const int64_t C = ex->hidden, k = ex->k;
  const size_t rec = sizeof(pair_head) + (size_t)C * sizeof(float);
  int *cnt = calloc((size_t)N * 8, sizeof *cnt);
  if (!cnt) return VNRT_ERROR_OUT_OF_MEMORY;
  int *scount = cnt, *rcount = cnt + N, *sdispl = cnt + 2 * N, *rdispl = cnt + 3 * N;
  int *sbytes = cnt + 4 * N, *rbytes = cnt + 5 * N, *sbd = cnt + 6 * N, *rbd = cnt + 7 * N;
  vnrt_status st = VNRT_OK;
  /* 1. My home tokens' pairs, by owner. */
  for (int64_t t = 0; t < T; ++t) {
    if ((pos0 + t) % N != me) continue;
    for (int64_t i = 0; i < k; ++i) scount[owner_of(ex, experts[t * k + i])]++;
  }
  int64_t n_send = 0;
  for (int32_t r = 0; r < N; ++r) {
    sdispl[r] = (int)n_send;
    n_send += scount[r];
  }
  double t0 = now_s();
  MPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, MPI_COMM_WORLD);
  ex->wait_seconds += now_s() - t0;
  int64_t n_recv = 0;
  for (int32_t r = 0; r < N; ++r) {
    rdispl[r] = (int)n_recv;
    n_recv += rcount[r];
  }
  if (grow(ex, 0, (size_t)(n_send > 0 ? n_send : 1) * rec) ||
      grow(ex, 1, (size_t)(n_recv > 0 ? n_recv : 1) * rec + (size_t)n_send * (size_t)C * 4) ||
      grow(ex, 2,
           (size_t)(n_recv > 0 ? n_recv : 1) * ((size_t)C + 2) * sizeof(float) +
               (size_t)(n_recv > 0 ? n_recv : 1) * sizeof(int32_t)) ||
      grow(ex, 3, (size_t)T * (size_t)C * sizeof(float))) {
    free(cnt);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  /* Pack in owner order (the order the results come back in). */
  int *fill = rbd; /* scratch for now */
  for (int32_t r = 0; r < N; ++r) fill[r] = sdispl[r];
  for (int64_t t = 0; t < T; ++t) {
    if ((pos0 + t) % N != me) continue;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t e = experts[t * k + i], r = owner_of(ex, e);
      char *p = ex->buf[0] + (size_t)fill[r]++ * rec;
      pair_head h = {(int32_t)t, (int32_t)i, e, weights[t * k + i]};
      memcpy(p, &h, sizeof h);
      memcpy(p + sizeof h, x + t * C, (size_t)C * sizeof(float));
      if (r == me) {
        ex->pairs_local++;
      } else {
        ex->pairs_remote++;
        ex->dispatch_bytes += rec;
      }
    }
  }
  for (int32_t r = 0; r < N; ++r) {
    sbytes[r] = scount[r] * (int)rec;
    sbd[r] = sdispl[r] * (int)rec;
    rbytes[r] = rcount[r] * (int)rec;
    rbd[r] = rdispl[r] * (int)rec;
  }
  /* 2. Dispatch. */
  t0 = now_s();
  MPI_Alltoallv(ex->buf[0], sbytes, sbd, MPI_BYTE, ex->buf[1], rbytes, rbd, MPI_BYTE,
                MPI_COMM_WORLD);
  ex->wait_seconds += now_s() - t0;
  /* 3. My experts on every pair I received. */
  float *xs = (float *)ex->buf[2];
  float *ws = xs + n_recv * C;
  int32_t *ids = (int32_t *)(ws + n_recv);
  for (int64_t p = 0; p < n_recv; ++p) {
    pair_head h;
    memcpy(&h, ex->buf[1] + (size_t)p * rec, sizeof h);
    memcpy(xs + p * C, ex->buf[1] + (size_t)p * rec + sizeof h, (size_t)C * sizeof(float));
    ids[p] = h.expert;
    ws[p] = h.weight;
  }
  int32_t first, count;
  ep_slice(ex->experts, N, me, &first, &count);
  t0 = now_s();
  st = vnrt_model_moe_experts(ex->model, layer, first, count, xs, ids, ws, n_recv, 1, xs);
  ex->expert_seconds += now_s() - t0;
  /* A failing rank must not leave the others waiting in the collective. */
  int bad = st != VNRT_OK, any_bad = 0;
  t0 = now_s();
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
  ex->wait_seconds += now_s() - t0;
  if (any_bad) {
    free(cnt);
    return st != VNRT_OK ? st : VNRT_ERROR_INTERNAL;
  }
  /* 4. Combine: each result back to its pair's home, in the order it came. */
  for (int32_t r = 0; r < N; ++r) {
    rbytes[r] = rcount[r] * (int)C * (int)sizeof(float);
    rbd[r] = rdispl[r] * (int)C * (int)sizeof(float);
    sbytes[r] = scount[r] * (int)C * (int)sizeof(float);
    sbd[r] = sdispl[r] * (int)C * (int)sizeof(float);
    if (r != me) ex->combine_bytes += (uint64_t)rbytes[r];
  }
  char *back = ex->buf[1]; /* the received pairs are no longer needed */
  t0 = now_s();
  MPI_Alltoallv(xs, rbytes, rbd, MPI_BYTE, back, sbytes, sbd, MPI_BYTE, MPI_COMM_WORLD);
  ex->wait_seconds += now_s() - t0;
  for (int64_t p = 0; p < n_send; ++p) {
    pair_head h;
    memcpy(&h, ex->buf[0] + (size_t)p * rec, sizeof h);
    memcpy(ex->pair_out + ((int64_t)h.t * k + h.slot) * C, back + (size_t)p * (size_t)C * 4,
           (size_t)C * sizeof(float));
  }
  /* 5. The homes' rows to every rank. */
  float *mine = (float *)ex->buf[3];
  int64_t n_mine = 0;
  for (int64_t t = 0; t < T; ++t) {
    if ((pos0 + t) % N != me) continue;
    sum_slots(ex, t, y);
    memcpy(mine + n_mine * C, y + t * C, (size_t)C * sizeof(float));
    n_mine++;
  }
  int64_t off = 0;
  for (int32_t r = 0; r < N; ++r) {
    int64_t rows = 0;
    for (int64_t t = 0; t < T; ++t) rows += (pos0 + t) % N == r;
    rbytes[r] = (int)(rows * C * (int64_t)sizeof(float));
    rbd[r] = (int)(off * C * (int64_t)sizeof(float));
    off += rows;
  }
  ex->gather_bytes += (uint64_t)n_mine * (uint64_t)C * sizeof(float) * (uint64_t)(N - 1);
  float *all = (float *)ex->buf[2]; /* T rows, by home rank */
  if (grow(ex, 2, (size_t)T * (size_t)C * sizeof(float))) {
    free(cnt);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  all = (float *)ex->buf[2];
  t0 = now_s();
  MPI_Allgatherv(mine, (int)(n_mine * C * (int64_t)sizeof(float)), MPI_BYTE, all, rbytes, rbd,
                 MPI_BYTE, MPI_COMM_WORLD);
  ex->wait_seconds += now_s() - t0;
  for (int32_t r = 0; r < N; ++r) {
    int64_t j = rbd[r] / (int64_t)(C * (int64_t)sizeof(float));
    for (int64_t t = 0; t < T; ++t) {
      if ((pos0 + t) % N != r) continue;
      memcpy(y + t * C, all + j * C, (size_t)C * sizeof(float));
      ++j;
    }
  }
  free(cnt);
  return VNRT_OK;
}
#endif

vnrt_status ep_exchange_run(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                            const int32_t *experts, const float *weights, float *y) {
  ep_exchange *ex = user;
  const size_t need = (size_t)T * (size_t)ex->k * (size_t)ex->hidden;
  if (need > ex->pair_cap) {
    float *p = realloc(ex->pair_out, need * sizeof *p);
    if (!p) return VNRT_ERROR_OUT_OF_MEMORY;
    ex->pair_out = p;
    ex->pair_cap = need;
  }
  ex->calls++;
  ex->token_layers += T;
#ifdef VNRT_HAVE_MPI
  if (ex->mpi) return run_mpi(ex, layer, T, pos0, x, experts, weights, y);
#endif
  return run_local(ex, layer, T, pos0, x, experts, weights, y);
}

void ep_exchange_print(FILE *fp, const ep_exchange *ex, int64_t tokens, double seconds) {
  const double tok = tokens > 0 ? (double)tokens : 1.0;
  int32_t first, count;
  ep_slice(ex->experts, ex->ranks, ex->rank >= 0 ? ex->rank : 0, &first, &count);
  fprintf(fp,
          "ep rank %d of %d: experts [%d, %d) of %d; %lld tokens in %.3f s (%.1f tokens/s); "
          "pairs local %llu remote %llu; sent per token: dispatch %.0f, combine %.0f, gather "
          "%.0f bytes; waiting on the exchange %.3f s (%.1f%%), own experts %.3f s\n",
          (int)(ex->rank >= 0 ? ex->rank : 0), (int)ex->ranks, (int)first, (int)(first + count),
          (int)ex->experts, (long long)tokens, seconds, seconds > 0 ? tok / seconds : 0.0,
          (unsigned long long)ex->pairs_local, (unsigned long long)ex->pairs_remote,
          (double)ex->dispatch_bytes / tok, (double)ex->combine_bytes / tok,
          (double)ex->gather_bytes / tok, ex->wait_seconds,
          seconds > 0 ? 100.0 * ex->wait_seconds / seconds : 0.0, ex->expert_seconds);
}
