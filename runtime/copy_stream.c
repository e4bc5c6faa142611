/* The DualPath copy stream: one worker thread, a job ring, and two timelines; waiters help. */
#include "copy_stream.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct vn_copy_stream {
  vnrt_context *ctx;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* waiters: a job done, a failure, a cancel */
  pthread_cond_t work; /* the copy thread: a job it should take may start, or stop */
  vn_copy_job *jobs;   /* queued jobs; job i has copy timeline value base + i + 1 */
  int32_t n_jobs, cap_jobs, next_job;
  uint64_t base;    /* timeline value of the job before jobs[0] */
  uint64_t done;    /* copy timeline: jobs finished */
  uint64_t compute; /* compute timeline */
  vnrt_status failed;
  char message[VN_ERROR_MAX + 16];
  bool stop;
  bool in_flight;  /* the thread is running jobs[next_job] */
  int32_t waiters; /* threads blocked on cv */
  uint64_t delay_ns;
  vn_copy_stats stats;
};

uint64_t vn_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Whether the next job may start now (lock held). */
static bool next_ready(const vn_copy_stream *cs) {
  return !cs->in_flight && cs->failed == VNRT_OK && cs->next_job < cs->n_jobs &&
         cs->jobs[cs->next_job].after <= cs->compute;
}

/* Whether the copy thread should run the next job: it may start, and it is not a small job
 * left to its consumer — unless a larger job queued behind it would otherwise wait for it. */
static bool thread_ready(const vn_copy_stream *cs) {
  if (!next_ready(cs)) return false;
  for (int32_t i = cs->next_job; i < cs->n_jobs; ++i) {
    if (!cs->jobs[i].lazy) return true;
  }
  return false;
}

/* Runs jobs[next_job] with the lock released (the caller holds it and has checked that the job
 * may start and that no other is in flight), then records its end. */
static void run_next_locked(vn_copy_stream *cs) {
  vn_copy_job job = cs->jobs[cs->next_job];
  uint64_t delay = cs->delay_ns;
  cs->in_flight = true;
  pthread_mutex_unlock(&cs->mu);
  if (delay) {
    struct timespec d = {(time_t)(delay / 1000000000ull), (long)(delay % 1000000000ull)};
    nanosleep(&d, NULL);
  }
  uint64_t t0 = vn_now_ns();
  vnrt_status s = job.fn(job.user, &job);
  uint64_t t1 = vn_now_ns();
  pthread_mutex_lock(&cs->mu);
  cs->in_flight = false;
  cs->stats.busy_ns += t1 - t0;
  if (s != VNRT_OK) {
    cs->failed = s;
    snprintf(cs->message, sizeof cs->message, "copy stream: %.*s", VN_ERROR_MAX - 1,
             job.error && job.error[0] ? job.error : cs->ctx->last_error);
  } else {
    cs->stats.jobs++;
    cs->stats.bytes += job.bytes;
    cs->next_job++;
    cs->done++;
  }
  if (cs->waiters) pthread_cond_broadcast(&cs->cv);
  if (thread_ready(cs)) pthread_cond_signal(&cs->work);
}

static void *copy_main(void *arg) {
  vn_copy_stream *cs = arg;
  pthread_mutex_lock(&cs->mu);
  for (;;) {
    while (!cs->stop && !thread_ready(cs)) pthread_cond_wait(&cs->work, &cs->mu);
    if (cs->stop) break;
    run_next_locked(cs);
  }
  pthread_mutex_unlock(&cs->mu);
  return NULL;
}

vnrt_status vn_copy_stream_create(vnrt_context *ctx, vn_copy_stream **out) {
  *out = NULL;
  vn_copy_stream *cs = vn_calloc(ctx, 1, sizeof *cs);
  if (!cs) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory for the copy stream");
  cs->ctx = ctx;
  pthread_mutex_init(&cs->mu, NULL);
  pthread_cond_init(&cs->cv, NULL);
  pthread_cond_init(&cs->work, NULL);
  if (pthread_create(&cs->thread, NULL, copy_main, cs) != 0) {
    pthread_cond_destroy(&cs->cv);
    pthread_cond_destroy(&cs->work);
    pthread_mutex_destroy(&cs->mu);
    vn_free(ctx, cs);
    return vn_error(ctx, VNRT_ERROR_DEVICE, "cannot start the copy stream's thread");
  }
  *out = cs;
  return VNRT_OK;
}

void vn_copy_stream_destroy(vn_copy_stream *cs) {
  if (!cs) return;
  pthread_mutex_lock(&cs->mu);
  cs->stop = true;
  pthread_cond_signal(&cs->work);
  pthread_mutex_unlock(&cs->mu);
  pthread_join(cs->thread, NULL);
  pthread_cond_destroy(&cs->cv);
  pthread_cond_destroy(&cs->work);
  pthread_mutex_destroy(&cs->mu);
  vn_free(cs->ctx, cs->jobs);
  vn_free(cs->ctx, cs);
}

vnrt_status vn_copy_stream_submit(vn_copy_stream *cs, const vn_copy_job *jobs, int32_t n,
                                  uint64_t *out_last) {
  *out_last = 0;
  if (n <= 0) return VNRT_OK;
  pthread_mutex_lock(&cs->mu);
  vnrt_status s = cs->failed;
  if (s == VNRT_OK && cs->next_job == cs->n_jobs) {
    /* Everything queued so far is done: reuse the ring from its start. */
    cs->base += (uint64_t)cs->n_jobs;
    cs->n_jobs = cs->next_job = 0;
  }
  if (s == VNRT_OK &&
      !vn_grow(cs->ctx, (void **)&cs->jobs, &cs->cap_jobs, cs->n_jobs + n, sizeof *cs->jobs)) {
    s = vn_error(cs->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory queueing %d copies", n);
  }
  if (s == VNRT_OK) {
    memcpy(cs->jobs + cs->n_jobs, jobs, (size_t)n * sizeof *jobs);
    cs->n_jobs += n;
    *out_last = cs->base + (uint64_t)cs->n_jobs;
    if (thread_ready(cs)) pthread_cond_signal(&cs->work);
  } else if (cs->failed != VNRT_OK) {
    vn_error(cs->ctx, cs->failed, "%s", cs->message);
  }
  pthread_mutex_unlock(&cs->mu);
  return s;
}

vnrt_status vn_copy_stream_wait(vn_copy_stream *cs, uint64_t value) {
  pthread_mutex_lock(&cs->mu);
  uint64_t t0 = 0;
  while (cs->done < value && cs->failed == VNRT_OK) {
    if (!t0) t0 = vn_now_ns();
    if (next_ready(cs)) {
      run_next_locked(cs); /* rather than wake the copy thread and sleep until it is done */
    } else {
      cs->waiters++;
      pthread_cond_wait(&cs->cv, &cs->mu);
      cs->waiters--;
    }
  }
  if (t0) cs->stats.stall_ns += vn_now_ns() - t0;
  vnrt_status s = cs->failed;
  if (s != VNRT_OK) vn_error(cs->ctx, s, "%s", cs->message);
  pthread_mutex_unlock(&cs->mu);
  return s;
}

void vn_copy_stream_signal_compute(vn_copy_stream *cs, uint64_t value) {
  pthread_mutex_lock(&cs->mu);
  if (value > cs->compute) {
    cs->compute = value;
    /* Waking the copy thread for nothing would make it take the lock just when the caller
     * wants it back, and take a core from the compute stream. */
    if (thread_ready(cs)) pthread_cond_signal(&cs->work);
  }
  pthread_mutex_unlock(&cs->mu);
}

uint64_t vn_copy_stream_compute_value(const vn_copy_stream *cs) {
  pthread_mutex_lock((pthread_mutex_t *)&cs->mu);
  uint64_t v = cs->compute;
  pthread_mutex_unlock((pthread_mutex_t *)&cs->mu);
  return v;
}

vnrt_status vn_copy_stream_drain(vn_copy_stream *cs, vn_copy_stats *out_stats) {
  pthread_mutex_lock(&cs->mu);
  uint64_t target = cs->base + (uint64_t)cs->n_jobs;
  pthread_mutex_unlock(&cs->mu);
  vnrt_status s = vn_copy_stream_wait(cs, target);
  if (s != VNRT_OK) {
    vn_copy_stream_cancel(cs); /* the stream takes new work after the error */
    return s;
  }
  pthread_mutex_lock(&cs->mu);
  if (out_stats) *out_stats = cs->stats;
  memset(&cs->stats, 0, sizeof cs->stats);
  pthread_mutex_unlock(&cs->mu);
  return s;
}

void vn_copy_stream_cancel(vn_copy_stream *cs) {
  pthread_mutex_lock(&cs->mu);
  while (cs->in_flight) {
    cs->waiters++;
    pthread_cond_wait(&cs->cv, &cs->mu);
    cs->waiters--;
  }
  /* Jobs not started are dropped; their timeline values count as reached so no waiter hangs. */
  cs->base += (uint64_t)cs->n_jobs;
  cs->done = cs->base;
  cs->n_jobs = cs->next_job = 0;
  cs->failed = VNRT_OK;
  memset(&cs->stats, 0, sizeof cs->stats);
  pthread_cond_broadcast(&cs->cv);
  pthread_mutex_unlock(&cs->mu);
}

void vn_copy_stream_set_delay(vn_copy_stream *cs, uint64_t delay_ns) {
  pthread_mutex_lock(&cs->mu);
  cs->delay_ns = delay_ns;
  pthread_mutex_unlock(&cs->mu);
}
