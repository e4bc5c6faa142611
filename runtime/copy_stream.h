/* The copy stream of DualPath: a worker thread that moves data while the compute stream runs.
 *
 * Two timelines order the streams. The compute timeline counts the steps the compute stream
 * has finished; a job starts only once it reaches the job's `after` value (so it never
 * overwrites memory a running step still reads). The copy timeline counts finished jobs; a
 * consumer waits for its job's value before it reads (so it never reads stale data). Values only
 * grow, across runs too. */
#ifndef VNRT_RUNTIME_COPY_STREAM_H_
#define VNRT_RUNTIME_COPY_STREAM_H_

#include "core.h"

typedef struct vn_copy_stream vn_copy_stream;

/* Jobs that move fewer bytes than this are lazy (below): a thread hand-off costs tens of
 * microseconds on an idle machine and far more on a loaded one, while 256 KiB copy in about as
 * long. */
#define VN_COPY_LAZY_BYTES (256u << 10)

/* Whether small jobs should be lazy: only when the compute stream's threads take every core
 * (else a free core runs the copy thread, and waking it costs the compute stream nothing). */
static inline bool vn_copy_small_is_lazy(const vnrt_context *ctx) {
  return ctx->num_threads >= ctx->cores;
}

/* A unit of copy work. fn runs on the copy thread, or on a thread waiting for it (below); a
 * failure stops the stream: waits return the status and fn's message — from `error` when fn
 * wrote one there, else the context's last error. */
typedef struct vn_copy_job {
  uint64_t after; /* compute timeline value to wait for before starting */
  vnrt_status (*fn)(void *user, const struct vn_copy_job *job);
  void *user;
  int64_t arg[4]; /* for fn's use */
  uint64_t bytes; /* bytes the job moves, for statistics */
  /* Optional, VN_ERROR_MAX bytes: where fn writes its failure message. The context's last
   * error is not thread-safe, so a job that can fail on its own should use this. */
  const char *error;
  /* Too small to be worth waking the copy thread for (on a machine whose cores the compute
   * stream uses, the wake-up costs more than the copy): the copy thread leaves it to the
   * thread that waits for it, unless a job queued behind it is not lazy. */
  bool lazy;
} vn_copy_job;

typedef struct vn_copy_stats {
  uint64_t jobs, bytes;
  uint64_t busy_ns;  /* time the copy thread spent in jobs */
  uint64_t stall_ns; /* time consumers spent waiting for copies */
} vn_copy_stats;

vnrt_status vn_copy_stream_create(vnrt_context *ctx, vn_copy_stream **out);
void vn_copy_stream_destroy(vn_copy_stream *cs);

/* Queues jobs in order; returns the copy timeline value of the last one (0 if n == 0). */
vnrt_status vn_copy_stream_submit(vn_copy_stream *cs, const vn_copy_job *jobs, int32_t n,
                                  uint64_t *out_last);
/* Blocks until the copy timeline reaches value (time spent counts as stall). A waiter does not
 * idle while the job it needs has not started: when the copy thread is not running a job and
 * the next one may start, the waiter runs it itself (its time counts as copy time too), so a
 * consumer right behind its copy pays no thread hand-off. Jobs still run one at a time, in
 * order. */
vnrt_status vn_copy_stream_wait(vn_copy_stream *cs, uint64_t value);
/* Advances the compute timeline to value (never backwards) and wakes the copy thread. */
void vn_copy_stream_signal_compute(vn_copy_stream *cs, uint64_t value);
uint64_t vn_copy_stream_compute_value(const vn_copy_stream *cs);
/* Waits for every queued job, then returns and clears the statistics. */
vnrt_status vn_copy_stream_drain(vn_copy_stream *cs, vn_copy_stats *out_stats);
/* Drops the jobs not yet started (after a failed run) and clears a failure. */
void vn_copy_stream_cancel(vn_copy_stream *cs);
/* Testing: every job sleeps this long first, to prove that consumers wait for late copies. */
void vn_copy_stream_set_delay(vn_copy_stream *cs, uint64_t delay_ns);

uint64_t vn_now_ns(void);

#endif /* VNRT_RUNTIME_COPY_STREAM_H_ */
