/* The CPU backend's thread pool: persistent pthread workers that split parallel_for ranges. */
#include "cpu_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* A job is published under `mutex` by bumping `generation`; workers that see a new generation
 * claim chunks through the atomic `next_chunk` until none are left, then report back. The
 * caller claims chunks too, so a pool of one thread (no workers) runs everything inline. */
struct cpu_pool {
  const vnrt_backend_host *host;
  int32_t n_threads; /* workers + the calling thread */
  int32_t n_workers; /* workers actually started */
  pthread_t *workers;

  pthread_mutex_t submit; /* serialises callers: one job at a time */
  pthread_mutex_t mutex;
  pthread_cond_t wake; /* workers wait here for a new generation or shutdown */
  pthread_cond_t done; /* the caller waits here for the last worker to finish */
  uint64_t generation;
  int shutdown;
  int32_t busy; /* workers still inside the current job */

  /* The current job; written under mutex before the generation is bumped. */
  cpu_range_fn fn;
  void *user;
  int64_t n, chunk, n_chunks;
  atomic_int_fast64_t next_chunk;
};

/* Set while a thread runs chunks of a job, so that a nested parallel_for from inside a chunk
 * runs inline instead of deadlocking on the pool it is already part of. */
static _Thread_local int cpu_pool_in_job_;

static void cpu_pool_run_chunks_(cpu_pool *pool) {
  cpu_pool_in_job_ = 1;
  for (;;) {
    int64_t c = atomic_fetch_add(&pool->next_chunk, 1);
    if (c >= pool->n_chunks) break;
    int64_t begin = c * pool->chunk;
    int64_t end = begin + pool->chunk < pool->n ? begin + pool->chunk : pool->n;
    pool->fn(pool->user, begin, end);
  }
  cpu_pool_in_job_ = 0;
}

static void *cpu_pool_worker_(void *arg) {
  cpu_pool *pool = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool->mutex);
  for (;;) {
    while (!pool->shutdown && pool->generation == seen)
      pthread_cond_wait(&pool->wake, &pool->mutex);
    if (pool->shutdown) break;
    seen = pool->generation;
    pthread_mutex_unlock(&pool->mutex);
    cpu_pool_run_chunks_(pool);
    pthread_mutex_lock(&pool->mutex);
    if (--pool->busy == 0) pthread_cond_signal(&pool->done);
  }
  pthread_mutex_unlock(&pool->mutex);
  return NULL;
}

vnrt_status cpu_pool_create(const vnrt_backend_host *host, int32_t num_threads,
                            cpu_pool **out_pool) {
  *out_pool = NULL;
  if (num_threads < 1) num_threads = 1;
  cpu_pool *pool = host->alloc(host->core, sizeof *pool);
  if (!pool) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "cpu pool: out of memory");
  memset(pool, 0, sizeof *pool);
  pool->host = host;
  pool->n_threads = num_threads;
  atomic_init(&pool->next_chunk, 0);
  pthread_mutex_init(&pool->submit, NULL);
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  if (num_threads > 1) {
    size_t bytes = sizeof(pthread_t) * (size_t)(num_threads - 1);
    pool->workers = host->alloc(host->core, bytes);
    if (!pool->workers) {
      cpu_pool_destroy(pool);
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                         "cpu pool: out of memory for %d threads", (int)num_threads);
    }
    for (int32_t i = 0; i < num_threads - 1; ++i) {
      int rc = pthread_create(&pool->workers[i], NULL, cpu_pool_worker_, pool);
      if (rc != 0) {
        cpu_pool_destroy(pool);
        return host->error(host->core, rc == EAGAIN ? VNRT_ERROR_OUT_OF_MEMORY : VNRT_ERROR_DEVICE,
                           "cpu pool: pthread_create failed for worker %d of %d: %s", (int)i,
                           (int)(num_threads - 1), strerror(rc));
      }
      pool->n_workers = i + 1;
    }
  }
  *out_pool = pool;
  return VNRT_OK;
}

void cpu_pool_destroy(cpu_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mutex);
  pool->shutdown = 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  for (int32_t i = 0; i < pool->n_workers; ++i) pthread_join(pool->workers[i], NULL);
  pthread_cond_destroy(&pool->done);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->mutex);
  pthread_mutex_destroy(&pool->submit);
  const vnrt_backend_host *host = pool->host;
  if (pool->workers) host->free(host->core, pool->workers);
  host->free(host->core, pool);
}

int32_t cpu_pool_threads(const cpu_pool *pool) { return pool ? pool->n_workers + 1 : 1; }

void cpu_pool_parallel_for(cpu_pool *pool, int64_t n, int64_t grain, cpu_range_fn fn, void *user) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int32_t threads = cpu_pool_threads(pool);
  /* As many chunks as threads (fewer when n is small), each at least grain long. */
  int64_t n_chunks = (n + grain - 1) / grain;
  if (n_chunks > threads) n_chunks = threads;
  if (n_chunks <= 1 || cpu_pool_in_job_) {
    fn(user, 0, n);
    return;
  }
  pthread_mutex_lock(&pool->submit);
  pthread_mutex_lock(&pool->mutex);
  pool->fn = fn;
  pool->user = user;
  pool->n = n;
  pool->chunk = (n + n_chunks - 1) / n_chunks;
  pool->n_chunks = (n + pool->chunk - 1) / pool->chunk;
  atomic_store(&pool->next_chunk, 0);
  pool->busy = pool->n_workers;
  pool->generation++;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);

  cpu_pool_run_chunks_(pool);

  /* Every worker must leave the job before the next one may overwrite its fields. */
  pthread_mutex_lock(&pool->mutex);
  while (pool->busy > 0) pthread_cond_wait(&pool->done, &pool->mutex);
  pthread_mutex_unlock(&pool->mutex);
  pthread_mutex_unlock(&pool->submit);
}
