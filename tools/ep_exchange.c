/* The expert-parallel MoE exchange (ep_exchange.h). Every rank runs the same tokens through
 * attention (replicated); token t of a run at pos0 has its home on rank (pos0 + t) mod N, which
 * sends the token's row once to each rank owning any of its experts (counts first, then the
 * records), gets each pair's weighted output back and sums them in slot order, as moe_ffn
 * does; the homes then share their rows with every rank (the attention that follows is
 * replicated too, where data-parallel attention would not need this). Over MPI every step is
 * non-blocking and polled against a deadline, so a rank that hangs ends every rank. */
#define _POSIX_C_SOURCE 200809L
#include "ep_exchange.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The rank owning global row g of an R-row table over N ranks: R·r/N <= g < R·(r+1)/N. */
static int32_t row_owner(int64_t R, int32_t N, int64_t g) {
  int32_t r = (int32_t)(g * N / R);
  while (r > 0 && R * r / N > g) --r;
  while (r + 1 < N && R * (r + 1) / N <= g) ++r;
  return r;
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
  for (int32_t i = 0; i < ex->n_epend; ++i) { /* started, never finished (a failed run) */
    free(ex->epend[i].counts);
    free(ex->epend[i].req);
    free(ex->epend[i].got);
    free(ex->epend[i].mine);
  }
  for (int32_t i = 0; i < ex->n_etab; ++i) {
    for (int32_t r = 0; ex->etab[i].slice && r < ex->ranks; ++r) free(ex->etab[i].slice[r]);
    free(ex->etab[i].slice);
  }
  if (ex->mpend.active) { /* started, never finished (a failed run) */
    free(ex->mpend.cnt);
    free(ex->mpend.req);
  }
  free(ex->pair_out);
  for (int i = 0; i < 6; ++i) free(ex->buf[i]);
  memset(ex, 0, sizeof *ex);
}

/* A dispatched record: a token's row goes once to each rank owning any of its experts
 * (DeepEP's deduplication): the token and its n pairs on that rank, k slots of which the
 * first n are used, then the row. */
typedef struct rec_head {
  int32_t t, n;
} rec_head;
typedef struct rec_pair {
  int32_t slot, expert;
  float weight;
} rec_pair;

static size_t head_bytes(const ep_exchange *ex) {
  return sizeof(rec_head) + (size_t)ex->k * sizeof(rec_pair);
}

size_t ep_record_bytes(const ep_exchange *ex) {
  const size_t C = (size_t)ex->hidden;
  return head_bytes(ex) + (ex->wire == EP_WIRE_FP8 ? C + C / 128 : C * sizeof(float));
}

/* A row as it travels: C f32, or C e4m3 codes then C/128 e8m0 scales, quantized per 128
 * channels as act_quant does (docs/ops.md): s = 2^⌈log2(max(amax, 1e-4)/448)⌉, enc(x/s). */
static void put_row(const ep_exchange *ex, char *dst, const float *x) {
  const int64_t C = ex->hidden;
  if (ex->wire != EP_WIRE_FP8) {
    memcpy(dst, x, (size_t)C * sizeof(float));
    return;
  }
  for (int64_t b = 0; b < C / 128; ++b) {
    const float *xb = x + b * 128;
    float amax = 0.0f;
    for (int c = 0; c < 128; ++c) amax = fabsf(xb[c]) > amax ? fabsf(xb[c]) : amax;
    const uint8_t code = vnrt_quant_block_scale(VNRT_E4M3, amax);
    const float s = vnrt_e8m0_to_f32(code);
    for (int c = 0; c < 128; ++c) dst[b * 128 + c] = (char)vnrt_f32_to_e4m3(xb[c] / s);
    dst[C + b] = (char)code;
  }
}

static void get_row(const ep_exchange *ex, const char *src, float *x) {
  const int64_t C = ex->hidden;
  if (ex->wire != EP_WIRE_FP8) {
    memcpy(x, src, (size_t)C * sizeof(float));
    return;
  }
  for (int64_t b = 0; b < C / 128; ++b) {
    const float s = vnrt_e8m0_to_f32((uint8_t)src[C + b]);
    for (int c = 0; c < 128; ++c) x[b * 128 + c] = vnrt_e4m3_to_f32((uint8_t)src[b * 128 + c]) * s;
  }
}

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
  const size_t rec = ep_record_bytes(ex);
  if (grow(ex, 0, (size_t)n * (size_t)C * sizeof(float)) ||
      grow(ex, 1, (size_t)n * (sizeof(int32_t) + sizeof(float) + sizeof(int64_t))) ||
      grow(ex, 2, rec)) {
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  float *xs = (float *)ex->buf[0];
  int32_t *ids = (int32_t *)ex->buf[1];
  float *ws = (float *)(ids + n);
  int64_t *where = (int64_t *)(ws + n);
  for (int32_t r = 0; r < ex->ranks; ++r) {
    int32_t first, count;
    ep_slice(ex->experts, ex->ranks, r, &first, &count);
    int64_t P = 0, last_t = -1;
    for (int64_t s = 0; s < n; ++s) {
      const int32_t e = experts[s];
      if (e < first || e >= first + count) continue;
      const int64_t t = s / k;
      if (r == (int32_t)((pos0 + t) % ex->ranks)) {
        ex->pairs_local++;
        memcpy(xs + P * C, x + t * C, (size_t)C * sizeof *xs);
      } else { /* the row as the owner would receive it, once per token */
        ex->pairs_remote++;
        if (t != last_t) ex->dispatch_bytes += rec;
        last_t = t;
        ex->combine_bytes += (uint64_t)C * sizeof(float);
        put_row(ex, ex->buf[2], x + t * C);
        get_row(ex, ex->buf[2], xs + P * C);
      }
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

enum { TAG_COUNTS = 19, EP_AT_START = -1, EP_AT_END = -2 };

static size_t at_least_one(int64_t n) { return n > 0 ? (size_t)n : 1; }

/* The first of n items in wave w of W: wave w holds [lo(w), lo(w + 1)). */
static int wave_lo(int n, int w, int W) { return (int)((int64_t)n * w / W); }

/* Past the deadline: names the step (and, for the counts, the ranks that have not sent
 * theirs), then ends every rank through MPI. A rank that hangs without failing would
 * otherwise hold the others in the exchange forever. */
static void timed_out(const ep_exchange *ex, double waited, int32_t layer, const char *what,
                      MPI_Request *req, int n, const int *peer) {
  char at[64];
  if (layer >= 0) {
    snprintf(at, sizeof at, "in layer %d", (int)layer);
  } else {
    snprintf(at, sizeof at, "%s",
             layer == EP_AT_START ? "before the first layer" : "after the run");
  }
  char who[256] = "";
  size_t len = 0;
  int late = 0;
  for (int i = 0; peer && i < n; ++i) {
    int done = 1;
    if (peer[i] >= 0) MPI_Test(&req[i], &done, MPI_STATUS_IGNORE);
    if (done || len + 16 >= sizeof who) continue;
    len += (size_t)snprintf(who + len, sizeof who - len, "%s%d", late++ ? ", " : "", peer[i]);
  }
  fprintf(stderr,
          "vnrt-generate: rank %d of %d: exchange timed out after %g s %s (waiting for "
          "%s%s%s%s); aborting every rank\n",
          (int)ex->rank, (int)ex->ranks, waited, at, what, late ? " of rank" : "",
          late > 1 ? "s " : (late ? " " : ""), who);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  abort(); /* MPI_Abort does not return */
}

/* The exchange is "in flight" while at least one posted step has not completed: the wall
 * time of that union, so that steps in flight together count once. */
static void posted(ep_exchange *ex) {
  if (ex->in_flight++ == 0) ex->flight_since = now_s();
}

/* --ep-stall: this rank stops for good (until Open MPI ends it), as a hung rank would. */
static void stall(const ep_exchange *ex, int32_t layer) {
  if (layer >= 0) {
    fprintf(stderr, "vnrt-generate: rank %d of %d: stalling in layer %d (--ep-stall, a test aid)\n",
            (int)ex->rank, (int)ex->ranks, (int)layer);
  } else {
    fprintf(stderr,
            "vnrt-generate: rank %d of %d: stalling after the load (--ep-stall, a test "
            "aid)\n",
            (int)ex->rank, (int)ex->ranks);
  }
  fflush(stderr);
  for (;;) pause();
}

static double timeout_of(const ep_exchange *ex) { return ex->timeout_s > 0 ? ex->timeout_s : 60.0; }

/* Completes req[0..n) of one posted step, polling with MPI_Testall (a short sleep between
 * tries leaves the core to a rank that shares it); a wait past `limit` seconds ends every
 * rank. peer[i]: the rank request i receives from, -1 for a send (NULL: a collective).
 * Only the steps of a layer (layer >= 0) count in the statistics. */
static void wait_all(ep_exchange *ex, MPI_Request *req, int n, const int *peer, int32_t layer,
                     const char *what, double limit) {
  const double t0 = now_s();
  for (long tries = 0;; ++tries) {
    int done = 0;
    MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
    if (done) break;
    if (now_s() - t0 > limit) timed_out(ex, limit, layer, what, req, n, peer);
    if (tries > 64) {
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
    }
  }
  if (layer < 0) return;
  const double t1 = now_s();
  ex->wait_seconds += t1 - t0;
  if (--ex->in_flight == 0) ex->flight_seconds += t1 - ex->flight_since;
}

void ep_all_ready(ep_exchange *ex) {
  if (ex->rank == ex->stall_rank && ex->stall_layer == EP_STALL_LOAD) stall(ex, EP_STALL_LOAD);
  MPI_Request req;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  wait_all(ex, &req, 1, NULL, EP_AT_START, "the other ranks to load the model",
           10 * timeout_of(ex));
}

int ep_same_on_all_ranks(ep_exchange *ex, uint64_t value) {
  unsigned long long v = value, lo = 0, hi = 0;
  MPI_Request req[2];
  MPI_Iallreduce(&v, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD, &req[0]);
  MPI_Iallreduce(&v, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD, &req[1]);
  wait_all(ex, req, 2, NULL, EP_AT_END, "the other ranks' tokens", timeout_of(ex));
  return lo == hi;
}

/* One layer's exchange, as a pipeline of non-blocking MPI steps (every rank posts them in the
 * same order: counts, dispatch waves 0..W-1, combine waves, then the gather with the status):
 *   - while the dispatch flies, this rank's experts run its home pairs that stay local;
 *   - the records from each rank are cut into W waves; wave w's combine flies while the
 *     experts run wave w + 1.
 * Layouts: the home keeps its records owner-major, and the rows that come back follow them
 * pair by pair; the owner keeps what it receives wave-major, expanded to one row per pair
 * (the rows of a wave are contiguous for vnrt_model_moe_experts). Open MPI moves data only
 * inside MPI calls, so a large message in flight may still wait for the MPI_Testall that
 * completes it. */
static vnrt_status mpi_start(ep_exchange *ex, int32_t layer, int64_t T, int64_t pos0,
                             const float *x, const int32_t *experts, const float *weights) {
  const int32_t N = ex->ranks, me = ex->rank;
  const int W = ex->waves > 0 ? ex->waves : 1;
  const int64_t C = ex->hidden, k = ex->k;
  const size_t rec = ep_record_bytes(ex), head = head_bytes(ex), row = (size_t)C * sizeof(float);
  if (me == ex->stall_rank && layer == ex->stall_layer) stall(ex, layer);
  /* per rank: counts, displacements, peers; per wave and rank: dispatch and combine arrays */
  int *cnt = calloc((size_t)N * (5 + 8 * (size_t)W) + (size_t)W + 1, sizeof *cnt);
  MPI_Request *req = calloc((size_t)N * 2 + 2 * (size_t)W + 2, sizeof *req);
  if (!cnt || !req) {
    free(cnt);
    free(req);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  int *scount = cnt, *rcount = cnt + N, *sdispl = cnt + 2 * N, *peer = cnt + 3 * N;
  int *fill = cnt + 4 * N, *wstart = cnt + 5 * N; /* wstart[w]: the first record of wave w */
  int *wv = wstart + W + 1;                       /* 8 arrays of N per wave */
#define WAVE(w, i) (wv + ((size_t)(w)*8 + (i)) * (size_t)N)
  MPI_Request *dreq = req + 2 * N;
  /* 1. My home tokens: a record per remote rank owning any of their experts; local pairs. */
  int64_t n_local = 0;
  for (int64_t t = 0; t < T; ++t) {
    if ((pos0 + t) % N != me) continue;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t r = owner_of(ex, experts[t * k + i]);
      int seen = 0;
      for (int64_t j = 0; j < i; ++j) seen |= owner_of(ex, experts[t * k + j]) == r;
      if (r == me) {
        n_local++;
      } else if (!seen) {
        scount[r]++;
      }
    }
  }
  /* The counts go point to point, so that a timeout can name the ranks that did not send. */
  int n_req = 0;
  posted(ex);
  for (int32_t r = 0; r < N; ++r) {
    if (r == me) continue;
    MPI_Irecv(&rcount[r], 1, MPI_INT, r, TAG_COUNTS, MPI_COMM_WORLD, &req[n_req]);
    peer[n_req++] = r;
    MPI_Isend(&scount[r], 1, MPI_INT, r, TAG_COUNTS, MPI_COMM_WORLD, &req[n_req]);
    peer[n_req++] = -1;
  }
  wait_all(ex, req, n_req, peer, layer, "the counts", timeout_of(ex));
  int64_t n_send = 0, n_recv = 0;
  for (int32_t r = 0; r < N; ++r) {
    sdispl[r] = (int)n_send;
    n_send += scount[r];
    n_recv += rcount[r];
  }
  const size_t loc_idx = (at_least_one(n_local) * (row + 2 * sizeof(float)) + 7) & ~(size_t)7;
  if (grow(ex, 0, at_least_one(n_send) * rec) ||
      grow(ex, 1, at_least_one(n_recv) * rec + at_least_one(n_send * k) * row) ||
      grow(ex, 2, at_least_one(n_recv * k) * (row + 2 * sizeof(float)) + (size_t)T * row) ||
      grow(ex, 3, (size_t)T * row) ||
      grow(ex, 4, loc_idx + at_least_one(n_local) * sizeof(int64_t)) ||
      grow(ex, 5, (size_t)(n_send + 1) * sizeof(int64_t))) {
    /* The others expect this rank's rows now: the cause, and every rank ends. */
    fprintf(stderr,
            "vnrt-generate: rank %d of %d: out of memory for the exchange of layer %d (%lld "
            "records to send, %lld received); aborting every rank\n",
            (int)me, (int)N, (int)layer, (long long)n_send, (long long)n_recv);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  /* Pack the records owner-major (a token's slots in order within each), the local pairs
   * into their own batch. */
  float *xl = (float *)ex->buf[4];
  float *wl = xl + n_local * C;
  int32_t *idl = (int32_t *)(wl + n_local);
  int64_t *where = (int64_t *)(ex->buf[4] + loc_idx);
  int64_t *pfx = (int64_t *)ex->buf[5]; /* pfx[q]: the pairs in the records before q */
  for (int32_t r = 0; r < N; ++r) fill[r] = sdispl[r];
  int64_t p_local = 0;
  for (int64_t t = 0; t < T; ++t) {
    if ((pos0 + t) % N != me) continue;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t e = experts[t * k + i], r = owner_of(ex, e);
      if (r == me) {
        memcpy(xl + p_local * C, x + t * C, row);
        wl[p_local] = weights[t * k + i];
        idl[p_local] = e;
        where[p_local++] = t * k + i;
        ex->pairs_local++;
        continue;
      }
      int64_t j = 0;
      while (j < i && owner_of(ex, experts[t * k + j]) != r) ++j;
      if (j == i) { /* the token's first pair on r: a new record with the row */
        char *p = ex->buf[0] + (size_t)fill[r]++ * rec;
        rec_head h = {(int32_t)t, 0};
        memcpy(p, &h, sizeof h);
        put_row(ex, p + head, x + t * C);
        ex->dispatch_bytes += rec;
      }
      char *p = ex->buf[0] + (size_t)(fill[r] - 1) * rec;
      rec_head h;
      memcpy(&h, p, sizeof h);
      rec_pair q = {(int32_t)i, e, weights[t * k + i]};
      memcpy(p + sizeof h + (size_t)h.n * sizeof q, &q, sizeof q);
      h.n++;
      memcpy(p, &h, sizeof h);
      ex->pairs_remote++;
    }
  }
  pfx[0] = 0;
  for (int64_t q = 0; q < n_send; ++q) {
    rec_head h;
    memcpy(&h, ex->buf[0] + (size_t)q * rec, sizeof h);
    pfx[q + 1] = pfx[q] + h.n;
  }
  /* Each wave's arrays: dispatch (bytes of records) 0-3, combine (bytes of rows) 4-7; the
   * combine's send side (4, 5) is known when the wave's records have arrived. */
  wstart[0] = 0;
  for (int w = 0; w < W; ++w) {
    int *sb = WAVE(w, 0), *sd = WAVE(w, 1), *rb = WAVE(w, 2), *rd = WAVE(w, 3);
    int *crb = WAVE(w, 6), *crd = WAVE(w, 7);
    int at = wstart[w];
    for (int32_t r = 0; r < N; ++r) {
      const int s0 = sdispl[r] + wave_lo(scount[r], w, W);
      const int sn = wave_lo(scount[r], w + 1, W) - wave_lo(scount[r], w, W);
      const int rn = wave_lo(rcount[r], w + 1, W) - wave_lo(rcount[r], w, W);
      sb[r] = sn * (int)rec;
      sd[r] = s0 * (int)rec;
      rb[r] = rn * (int)rec;
      rd[r] = at * (int)rec;
      crb[r] = (int)((pfx[s0 + sn] - pfx[s0]) * (int64_t)row);
      crd[r] = (int)(pfx[s0] * (int64_t)row);
      at += rn;
    }
    wstart[w + 1] = at;
  }
  /* 2. Dispatch, every wave at once; the shared expert (between start and finish) and my
   * experts on my local pairs run meanwhile. */
  for (int w = 0; w < W; ++w) {
    posted(ex);
    MPI_Ialltoallv(ex->buf[0], WAVE(w, 0), WAVE(w, 1), MPI_BYTE, ex->buf[1], WAVE(w, 2), WAVE(w, 3),
                   MPI_BYTE, MPI_COMM_WORLD, &dreq[w]);
  }
  struct ep_moe_pending pd = {1, layer, T, pos0, n_local, n_send, n_recv, cnt, req};
  ex->mpend = pd;
#undef WAVE
  return VNRT_OK;
}

/* The rest of the exchange that mpi_start posted: my local pairs, the waves, the combine, the
 * gather; writes y. */
static vnrt_status mpi_finish(ep_exchange *ex, float *y) {
  const struct ep_moe_pending pd = ex->mpend;
  ex->mpend.active = 0;
  const int32_t N = ex->ranks, me = ex->rank, layer = pd.layer;
  const int W = ex->waves > 0 ? ex->waves : 1;
  const int64_t C = ex->hidden, k = ex->k, T = pd.T, pos0 = pd.pos0;
  const int64_t n_local = pd.n_local, n_send = pd.n_send, n_recv = pd.n_recv;
  const size_t rec = ep_record_bytes(ex), head = head_bytes(ex), row = (size_t)C * sizeof(float);
  int *cnt = pd.cnt;
  MPI_Request *req = pd.req;
  int *rcount = cnt + N;
  int *wstart = cnt + 5 * N;
  int *wv = wstart + W + 1;
#define WAVE(w, i) (wv + ((size_t)(w)*8 + (i)) * (size_t)N)
  MPI_Request *dreq = req + 2 * N, *creq = dreq + W, *greq = creq + W;
  vnrt_status st = VNRT_OK;
  const size_t loc_idx = (at_least_one(n_local) * (row + 2 * sizeof(float)) + 7) & ~(size_t)7;
  float *xl = (float *)ex->buf[4];
  float *wl = xl + n_local * C;
  int32_t *idl = (int32_t *)(wl + n_local);
  int64_t *where = (int64_t *)(ex->buf[4] + loc_idx);
  int64_t *pfx = (int64_t *)ex->buf[5];
  int32_t first, count;
  ep_slice(ex->experts, N, me, &first, &count);
  double t0 = now_s();
  if (n_local > 0) {
    st = vnrt_model_moe_experts(ex->model, layer, first, count, xl, idl, wl, n_local, 1, xl);
    for (int64_t p = 0; st == VNRT_OK && p < n_local; ++p) {
      memcpy(ex->pair_out + where[p] * C, xl + p * C, row);
    }
  }
  ex->expert_seconds += now_s() - t0;
  /* 3. Wave by wave: my experts on the pairs received, then their results back to the homes
   * (the combine), in flight while the next wave runs. A rank whose experts failed still
   * posts every step, so that no rank waits for it; the status travels with the gather. */
  float *xs = (float *)ex->buf[2];
  float *ws = xs + n_recv * k * C;
  int32_t *ids = (int32_t *)(ws + n_recv * k);
  char *back = ex->buf[1] + at_least_one(n_recv) * rec;
  int64_t P = 0; /* pairs received so far */
  for (int w = 0; w < W; ++w) {
    wait_all(ex, &dreq[w], 1, NULL, layer, "the dispatch (every rank's rows)", timeout_of(ex));
    const int64_t P0 = P;
    int *csb = WAVE(w, 4), *csd = WAVE(w, 5);
    int64_t q = wstart[w];
    for (int32_t r = 0; r < N; ++r) {
      const int64_t from = P;
      const int rn = wave_lo(rcount[r], w + 1, W) - wave_lo(rcount[r], w, W);
      for (int i = 0; i < rn; ++i, ++q) {
        const char *src = ex->buf[1] + (size_t)q * rec;
        rec_head h;
        memcpy(&h, src, sizeof h);
        get_row(ex, src + head, xs + P * C);
        for (int32_t j = 0; j < h.n && j < k; ++j) {
          rec_pair pr;
          memcpy(&pr, src + sizeof h + (size_t)j * sizeof pr, sizeof pr);
          if (j > 0) memcpy(xs + P * C, xs + (P - 1) * C, row);
          ids[P] = pr.expert;
          ws[P++] = pr.weight;
        }
      }
      csb[r] = (int)((P - from) * (int64_t)row);
      csd[r] = (int)(from * (int64_t)row);
    }
    t0 = now_s();
    if (st == VNRT_OK && P > P0) {
      st = vnrt_model_moe_experts(ex->model, layer, first, count, xs + P0 * C, ids + P0, ws + P0,
                                  P - P0, 1, xs + P0 * C);
    }
    ex->expert_seconds += now_s() - t0;
    for (int32_t r = 0; r < N; ++r) ex->combine_bytes += (uint64_t)csb[r];
    posted(ex);
    MPI_Ialltoallv(xs, csb, csd, MPI_BYTE, back, WAVE(w, 6), WAVE(w, 7), MPI_BYTE, MPI_COMM_WORLD,
                   &creq[w]);
  }
  for (int w = 0; w < W; ++w) {
    wait_all(ex, &creq[w], 1, NULL, layer, "the combine (the results of my pairs)", timeout_of(ex));
  }
  for (int64_t q = 0; q < n_send; ++q) {
    const char *src = ex->buf[0] + (size_t)q * rec;
    rec_head h;
    memcpy(&h, src, sizeof h);
    for (int32_t j = 0; j < h.n; ++j) {
      rec_pair pr;
      memcpy(&pr, src + sizeof h + (size_t)j * sizeof pr, sizeof pr);
      memcpy(ex->pair_out + ((int64_t)h.t * k + pr.slot) * C, back + (size_t)(pfx[q] + j) * row,
             row);
    }
  }
  /* 4. The homes' rows to every rank, and whether any rank's experts failed. */
  float *mine = (float *)ex->buf[3];
  int64_t n_mine = 0;
  for (int64_t t = 0; t < T; ++t) {
    if ((pos0 + t) % N != me) continue;
    sum_slots(ex, t, y);
    memcpy(mine + n_mine * C, y + t * C, row);
    n_mine++;
  }
  int *gb = WAVE(0, 0), *gd = WAVE(0, 1); /* the dispatch's arrays are free again */
  int64_t off = 0;
  for (int32_t r = 0; r < N; ++r) {
    int64_t rows = 0;
    for (int64_t t = 0; t < T; ++t) rows += (pos0 + t) % N == r;
    gb[r] = (int)(rows * (int64_t)row);
    gd[r] = (int)(off * (int64_t)row);
    off += rows;
  }
  ex->gather_bytes += (uint64_t)n_mine * (uint64_t)row * (uint64_t)(N - 1);
  float *all = (float *)(ex->buf[2] + at_least_one(n_recv * k) * (row + 2 * sizeof(float)));
  int bad = st != VNRT_OK, any_bad = 0;
  posted(ex);
  MPI_Iallgatherv(mine, (int)(n_mine * (int64_t)row), MPI_BYTE, all, gb, gd, MPI_BYTE,
                  MPI_COMM_WORLD, &greq[0]);
  MPI_Iallreduce(&bad, &any_bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD, &greq[1]);
  wait_all(ex, greq, 2, NULL, layer, "the gather (every home's rows)", timeout_of(ex));
  if (any_bad) {
    free(cnt);
    free(req);
    return st != VNRT_OK ? st : VNRT_ERROR_INTERNAL;
  }
  for (int32_t r = 0; r < N; ++r) {
    int64_t j = gd[r] / (int64_t)row;
    for (int64_t t = 0; t < T; ++t) {
      if ((pos0 + t) % N != r) continue;
      memcpy(y + t * C, all + j * C, row);
      ++j;
    }
  }
#undef WAVE
  free(cnt);
  free(req);
  return VNRT_OK;
}

enum { TAG_ENGRAM = 20 };

/* One Engram layer's fetch over MPI: every rank needs every row (the Engram block runs in the
 * replicated part), so it asks each owner for the rows of its slice (counts first, point to
 * point, then an MPI_Ialltoallv of the row ids) and gets them back (an MPI_Ialltoallv of the
 * rows); its own rows are copied while the requests fly. A request outside the owner's slice
 * (a bug) travels as a status with the rows, so every rank posts every step. */
static vnrt_status engram_mpi(ep_exchange *ex, const struct ep_engram_table *tb,
                              const vnrt_engram_fetch *f) {
  const int32_t N = ex->ranks, me = ex->rank, layer = f->layer;
  const int64_t n = f->tokens * f->heads, D = f->head_dim, R = tb->rows;
  const size_t row = (size_t)D * sizeof(uint16_t);
  if (me == ex->stall_rank && layer == ex->stall_layer) stall(ex, layer);
  int *cnt = calloc((size_t)N * 8, sizeof *cnt);
  MPI_Request *req = calloc((size_t)N * 2 + 2, sizeof *req);
  if (!cnt || !req) {
    free(cnt);
    free(req);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  int *scount = cnt, *rcount = cnt + N, *sdispl = cnt + 2 * N, *rdispl = cnt + 3 * N;
  int *peer = cnt + 4 * N, *fill = cnt + 5 * N, *bcount = cnt + 6 * N, *bdispl = cnt + 7 * N;
  for (int64_t q = 0; q < n; ++q) {
    const int32_t o = row_owner(R, N, f->rows[q]);
    if (o != me) scount[o]++;
  }
  int n_req = 0;
  posted(ex);
  for (int32_t r = 0; r < N; ++r) {
    if (r == me) continue;
    MPI_Irecv(&rcount[r], 1, MPI_INT, r, TAG_ENGRAM, MPI_COMM_WORLD, &req[n_req]);
    peer[n_req++] = r;
    MPI_Isend(&scount[r], 1, MPI_INT, r, TAG_ENGRAM, MPI_COMM_WORLD, &req[n_req]);
    peer[n_req++] = -1;
  }
  wait_all(ex, req, n_req, peer, layer, "the Engram counts", timeout_of(ex));
  int64_t n_send = 0, n_recv = 0;
  for (int32_t r = 0; r < N; ++r) {
    sdispl[r] = (int)n_send;
    rdispl[r] = (int)n_recv;
    n_send += scount[r];
    n_recv += rcount[r];
  }
  if (grow(ex, 0, at_least_one(n_send) * sizeof(int32_t)) ||
      grow(ex, 1, at_least_one(n_recv) * sizeof(int32_t)) ||
      grow(ex, 2, at_least_one(n_recv) * row) || grow(ex, 3, at_least_one(n_send) * row) ||
      grow(ex, 4, at_least_one(n_send) * sizeof(int64_t))) {
    fprintf(stderr,
            "vnrt-generate: rank %d of %d: out of memory for the Engram fetch of layer %d "
            "(%lld rows asked for, %lld to serve); aborting every rank\n",
            (int)me, (int)N, (int)layer, (long long)n_send, (long long)n_recv);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int32_t *ask = (int32_t *)ex->buf[0], *asked = (int32_t *)ex->buf[1];
  char *serve = ex->buf[2], *got = ex->buf[3];
  int64_t *where = (int64_t *)ex->buf[4];
  for (int32_t r = 0; r < N; ++r) fill[r] = sdispl[r];
  for (int64_t q = 0; q < n; ++q) {
    const int32_t o = row_owner(R, N, f->rows[q]);
    if (o == me) continue;
    where[fill[o]] = q;
    ask[fill[o]++] = f->rows[q];
  }
  ex->engram_req_bytes += (uint64_t)n_send * sizeof(int32_t);
  posted(ex);
  MPI_Ialltoallv(ask, scount, sdispl, MPI_INT, asked, rcount, rdispl, MPI_INT, MPI_COMM_WORLD,
                 &req[0]);
  /* My own rows meanwhile. */
  const int64_t first = R * me / N, last = R * (me + 1) / N;
  for (int64_t q = 0; q < n; ++q) {
    const int64_t g = f->rows[q];
    if (g < first || g >= last) continue;
    memcpy(f->out + q * D, tb->slice[me] + (g - first) * D, row);
    ex->engram_rows_local++;
  }
  wait_all(ex, req, 1, NULL, layer, "the Engram requests", timeout_of(ex));
  int bad = 0, any_bad = 0;
  for (int64_t q = 0; q < n_recv; ++q) {
    const int64_t g = asked[q];
    if (g < first || g >= last) {
      bad = 1;
      memset(serve + (size_t)q * row, 0, row);
      continue;
    }
    memcpy(serve + (size_t)q * row, tb->slice[me] + (g - first) * D, row);
  }
  for (int32_t r = 0; r < N; ++r) { /* the rows back: what r asked of me, what I asked of r */
    rcount[r] *= (int)row;
    rdispl[r] *= (int)row;
    bcount[r] = scount[r] * (int)row;
    bdispl[r] = sdispl[r] * (int)row;
  }
  posted(ex);
  MPI_Ialltoallv(serve, rcount, rdispl, MPI_BYTE, got, bcount, bdispl, MPI_BYTE, MPI_COMM_WORLD,
                 &req[0]);
  MPI_Iallreduce(&bad, &any_bad, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD, &req[1]);
  wait_all(ex, req, 2, NULL, layer, "the Engram rows", timeout_of(ex));
  for (int64_t q = 0; q < n_send; ++q) memcpy(f->out + where[q] * D, got + (size_t)q * row, row);
  ex->engram_rows_remote += (uint64_t)n_send;
  ex->engram_bytes += (uint64_t)n_send * row;
  free(cnt);
  free(req);
  return any_bad ? VNRT_ERROR_INTERNAL : VNRT_OK;
}

/* VNRT_ENGRAM_START over MPI: every rank needs the same rows (the attention is replicated),
 * so each knows, without asking, which rows every owner will send: owner o contributes the
 * rows of its slice in the list's order, and one MPI_Iallgatherv, posted now, brings every
 * rank all of them while the layers before this one compute. */
static vnrt_status engram_mpi_start(ep_exchange *ex, const struct ep_engram_table *tb,
                                    const vnrt_engram_fetch *f) {
  const int32_t N = ex->ranks, me = ex->rank;
  const int64_t n = f->tokens * f->heads, D = f->head_dim, R = tb->rows;
  const size_t row = (size_t)D * sizeof(uint16_t);
  if (me == ex->stall_rank && f->layer == ex->stall_layer) stall(ex, f->layer);
  if (ex->n_epend == (int32_t)(sizeof ex->epend / sizeof ex->epend[0])) {
    return VNRT_ERROR_INTERNAL;
  }
  struct ep_engram_pending *pd = &ex->epend[ex->n_epend];
  pd->counts = calloc((size_t)N * 2, sizeof *pd->counts);
  pd->req = malloc(sizeof(MPI_Request));
  pd->got = malloc(at_least_one(n) * row);
  char *mine = malloc(at_least_one(n) * row);
  if (!pd->counts || !pd->req || !pd->got || !mine) {
    fprintf(stderr,
            "vnrt-generate: rank %d of %d: out of memory for the Engram fetch of layer %d; "
            "aborting every rank\n",
            (int)me, (int)N, (int)f->layer);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  ex->n_epend++;
  pd->layer = f->layer;
  int *bytes = pd->counts, *displ = pd->counts + N;
  const int64_t first = R * me / N, last = R * (me + 1) / N;
  int64_t n_mine = 0;
  for (int64_t q = 0; q < n; ++q) {
    const int64_t g = f->rows[q];
    bytes[row_owner(R, N, g)] += (int)row;
    if (g < first || g >= last) continue;
    memcpy(mine + (size_t)n_mine++ * row, tb->slice[me] + (g - first) * D, row);
  }
  for (int32_t r = 0, at = 0; r < N; ++r) {
    displ[r] = at;
    at += bytes[r];
  }
  ex->engram_rows_local += (uint64_t)n_mine;
  ex->engram_rows_remote += (uint64_t)(n - n_mine);
  ex->engram_bytes += (uint64_t)(n - n_mine) * row;
  posted(ex);
  pd->since = now_s();
  MPI_Iallgatherv(mine, (int)(n_mine * (int64_t)row), MPI_BYTE, pd->got, bytes, displ, MPI_BYTE,
                  MPI_COMM_WORLD, (MPI_Request *)pd->req);
  pd->mine = mine; /* the send buffer stays until the collective completes */
  return VNRT_OK;
}

/* VNRT_ENGRAM_FINISH over MPI: completes layer f->layer's allgather and puts every row at its
 * place: owner o's rows arrived in the list's order. */
static vnrt_status engram_mpi_finish(ep_exchange *ex, const struct ep_engram_table *tb,
                                     const vnrt_engram_fetch *f) {
  const int32_t N = ex->ranks;
  const int64_t n = f->tokens * f->heads, D = f->head_dim, R = tb->rows;
  const size_t row = (size_t)D * sizeof(uint16_t);
  int32_t i = 0;
  while (i < ex->n_epend && ex->epend[i].layer != f->layer) ++i;
  if (i == ex->n_epend) return VNRT_ERROR_INTERNAL; /* finished without a start */
  struct ep_engram_pending *pd = &ex->epend[i];
  const double t0 = now_s();
  wait_all(ex, (MPI_Request *)pd->req, 1, NULL, f->layer, "the Engram rows (fetched early)",
           timeout_of(ex));
  const double t1 = now_s();
  ex->engram_wait_seconds += t1 - t0;
  ex->engram_flight_seconds += t1 - pd->since;
  int *at = calloc((size_t)N, sizeof *at);
  if (!at) return VNRT_ERROR_OUT_OF_MEMORY;
  for (int32_t r = 0; r < N; ++r) at[r] = pd->counts[N + r];
  for (int64_t q = 0; q < n; ++q) {
    const int32_t o = row_owner(R, N, f->rows[q]);
    memcpy(f->out + q * D, pd->got + at[o], row);
    at[o] += (int)row;
  }
  free(at);
  free(pd->counts);
  free(pd->req);
  free(pd->got);
  free(pd->mine);
  ex->epend[i] = ex->epend[--ex->n_epend];
  return VNRT_OK;
}
#else
void ep_all_ready(ep_exchange *ex) { (void)ex; }

int ep_same_on_all_ranks(ep_exchange *ex, uint64_t value) {
  (void)ex;
  (void)value;
  return 1;
}
#endif

/* The table of f's layer: this process's slices, copied from the mapped checkpoint at the
 * layer's first fetch (rank me's over MPI, every slice otherwise). */
static vnrt_status engram_table(ep_exchange *ex, const vnrt_engram_fetch *f,
                                struct ep_engram_table **out) {
  for (int32_t i = 0; i < ex->n_etab; ++i) {
    if (ex->etab[i].layer == f->layer) {
      *out = &ex->etab[i];
      return VNRT_OK;
    }
  }
  if (ex->n_etab == (int32_t)(sizeof ex->etab / sizeof ex->etab[0])) return VNRT_ERROR_INTERNAL;
  struct ep_engram_table *t = &ex->etab[ex->n_etab];
  t->slice = calloc((size_t)ex->ranks, sizeof *t->slice);
  if (!t->slice) return VNRT_ERROR_OUT_OF_MEMORY;
  ex->n_etab++;
  t->layer = f->layer;
  t->rows = f->table_rows;
  t->head_dim = f->head_dim;
  const size_t row = (size_t)f->head_dim * sizeof(uint16_t);
  const int32_t me = ex->rank >= 0 ? ex->rank : 0;
  for (int32_t r = 0; r < ex->ranks; ++r) {
    if (ex->mpi && r != me) continue;
    const int64_t first = t->rows * r / ex->ranks, count = t->rows * (r + 1) / ex->ranks - first;
    t->slice[r] = malloc(count > 0 ? (size_t)count * row : 1);
    if (!t->slice[r]) return VNRT_ERROR_OUT_OF_MEMORY;
    vnrt_status st = vnrt_model_engram_rows(ex->model, f->layer, first, count, t->slice[r],
                                            (size_t)count * row, NULL, NULL);
    if (st != VNRT_OK) return st;
    if (r == me) ex->engram_held_bytes += (uint64_t)count * row;
  }
  ex->engram_table_bytes += (uint64_t)t->rows * row;
  *out = t;
  return VNRT_OK;
}

vnrt_status ep_engram_fetch(void *user, const vnrt_engram_fetch *f) {
  ep_exchange *ex = user;
  struct ep_engram_table *tb = NULL;
  vnrt_status st = engram_table(ex, f, &tb);
  if (st != VNRT_OK) return st;
  const int64_t n = f->tokens * f->heads, D = f->head_dim, R = tb->rows;
  for (int64_t q = 0; q < n; ++q) {
    if (f->rows[q] < 0 || f->rows[q] >= R) return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (f->stage == VNRT_ENGRAM_FINISH) {
#ifdef VNRT_HAVE_MPI
    if (ex->mpi) return engram_mpi_finish(ex, tb, f);
#endif
    return VNRT_OK; /* N slices in this process: the rows were copied at the start */
  }
  ex->engram_calls++;
  if (ex->engram_log) {
    fprintf(ex->engram_log, "layer %d table_rows %lld pos0 %lld tokens %lld rows", (int)f->layer,
            (long long)R, (long long)f->pos0, (long long)f->tokens);
    for (int64_t q = 0; q < n; ++q) fprintf(ex->engram_log, " %d", (int)f->rows[q]);
    fprintf(ex->engram_log, "\n");
  }
#ifdef VNRT_HAVE_MPI
  if (ex->mpi) {
    return f->stage == VNRT_ENGRAM_START ? engram_mpi_start(ex, tb, f) : engram_mpi(ex, tb, f);
  }
#endif
  /* N slices in this process: each row from its owner's slice; the statistics are rank 0's. */
  const size_t row = (size_t)D * sizeof(uint16_t);
  for (int64_t q = 0; q < n; ++q) {
    const int64_t g = f->rows[q];
    const int32_t o = row_owner(R, ex->ranks, g);
    memcpy(f->out + q * D, tb->slice[o] + (g - R * o / ex->ranks) * D, row);
    if (o == 0) {
      ex->engram_rows_local++;
    } else {
      ex->engram_rows_remote++;
      ex->engram_bytes += row;
      ex->engram_req_bytes += sizeof(int32_t);
    }
  }
  return VNRT_OK;
}

/* The per-pair scratch every exchange sums from; counts the call. */
static vnrt_status exchange_begin(ep_exchange *ex, int64_t T) {
  const size_t need = (size_t)T * (size_t)ex->k * (size_t)ex->hidden;
  if (need > ex->pair_cap) {
    float *p = realloc(ex->pair_out, need * sizeof *p);
    if (!p) return VNRT_ERROR_OUT_OF_MEMORY;
    ex->pair_out = p;
    ex->pair_cap = need;
  }
  ex->calls++;
  ex->token_layers += T;
  return VNRT_OK;
}

vnrt_status ep_exchange_run(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                            const int32_t *experts, const float *weights, float *y) {
  ep_exchange *ex = user;
  vnrt_status st = exchange_begin(ex, T);
  if (st != VNRT_OK) return st;
#ifdef VNRT_HAVE_MPI
  if (ex->mpi) {
    st = mpi_start(ex, layer, T, pos0, x, experts, weights);
    return st == VNRT_OK ? mpi_finish(ex, y) : st;
  }
#endif
  return run_local(ex, layer, T, pos0, x, experts, weights, y);
}

vnrt_status ep_exchange_start(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                              const int32_t *experts, const float *weights, float *y) {
  (void)y;
  ep_exchange *ex = user;
  vnrt_status st = exchange_begin(ex, T);
  if (st != VNRT_OK) return st;
#ifdef VNRT_HAVE_MPI
  if (ex->mpi) st = mpi_start(ex, layer, T, pos0, x, experts, weights);
#else
  (void)layer, (void)pos0, (void)x, (void)experts, (void)weights;
#endif
  ex->shared_since = now_s(); /* the session runs the shared expert from here */
  return st;
}

vnrt_status ep_exchange_finish(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                               const int32_t *experts, const float *weights, float *y) {
  ep_exchange *ex = user;
  ex->shared_seconds += now_s() - ex->shared_since;
#ifdef VNRT_HAVE_MPI
  if (ex->mpi) return mpi_finish(ex, y);
#endif
  /* N slices in this process: nothing flies, so the slices run here. */
  return run_local(ex, layer, T, pos0, x, experts, weights, y);
}

void ep_exchange_print(FILE *fp, const ep_exchange *ex, int64_t tokens, double seconds) {
  const double tok = tokens > 0 ? (double)tokens : 1.0;
  int32_t first, count;
  ep_slice(ex->experts, ex->ranks, ex->rank >= 0 ? ex->rank : 0, &first, &count);
  /* overlap: the share of the time the exchange was in flight that this rank spent working */
  const double hidden =
      ex->flight_seconds > ex->wait_seconds ? ex->flight_seconds - ex->wait_seconds : 0.0;
  char shared[96] = "";
  if (ex->shared_apart) {
    snprintf(shared, sizeof shared, ", of which the shared expert %.3f s", ex->shared_seconds);
  }
  fprintf(fp,
          "ep rank %d of %d: experts [%d, %d) of %d; %lld tokens in %.3f s (%.1f tokens/s); "
          "pairs local %llu remote %llu; sent per token: dispatch %.0f, combine %.0f, gather "
          "%.0f bytes; waiting on the exchange %.3f s (%.1f%%), own experts %.3f s; "
          "%s rows; exchange in flight %.3f s, overlapped %.3f s (%.1f%%)%s\n",
          (int)(ex->rank >= 0 ? ex->rank : 0), (int)ex->ranks, (int)first, (int)(first + count),
          (int)ex->experts, (long long)tokens, seconds, seconds > 0 ? tok / seconds : 0.0,
          (unsigned long long)ex->pairs_local, (unsigned long long)ex->pairs_remote,
          (double)ex->dispatch_bytes / tok, (double)ex->combine_bytes / tok,
          (double)ex->gather_bytes / tok, ex->wait_seconds,
          seconds > 0 ? 100.0 * ex->wait_seconds / seconds : 0.0, ex->expert_seconds,
          ex->wire == EP_WIRE_FP8 ? "fp8" : "f32", ex->flight_seconds, hidden,
          ex->flight_seconds > 0 ? 100.0 * hidden / ex->flight_seconds : 0.0, shared);
  if (ex->engram_calls > 0) {
    fprintf(fp,
            "ep rank %d of %d: engram: %d tables, rows held %llu of %llu bytes; rows local %llu "
            "remote %llu; fetched per token %.0f bytes (requests %.0f bytes)\n",
            (int)(ex->rank >= 0 ? ex->rank : 0), (int)ex->ranks, (int)ex->n_etab,
            (unsigned long long)ex->engram_held_bytes, (unsigned long long)ex->engram_table_bytes,
            (unsigned long long)ex->engram_rows_local, (unsigned long long)ex->engram_rows_remote,
            (double)ex->engram_bytes / tok, (double)ex->engram_req_bytes / tok);
  }
  if (ex->engram_flight_seconds > 0) {
    const double ov = ex->engram_flight_seconds > ex->engram_wait_seconds
                          ? ex->engram_flight_seconds - ex->engram_wait_seconds
                          : 0.0;
    fprintf(fp,
            "ep rank %d of %d: engram fetched early: in flight %.3f s, waiting %.3f s, "
            "overlapped %.3f s (%.1f%%)\n",
            (int)(ex->rank >= 0 ? ex->rank : 0), (int)ex->ranks, ex->engram_flight_seconds,
            ex->engram_wait_seconds, ov, 100.0 * ov / ex->engram_flight_seconds);
  }
}
