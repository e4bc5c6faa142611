/* DualPath on a backend's async slots (backend.h, API 3; docs/executor.md): the streamed
 * params go to the device's own copy stream, ordered against the runs by two device timelines
 * instead of the host copy thread and its host timelines.
 *
 * The compute timeline takes the same values as the host one (compute_base + steps done): each
 * run of steps [s, e) is queued to signal compute_base + e, and a streamed param that may start
 * once step `start` is reached is queued, waiting for compute_base + start, only when the host
 * has queued the run that signals it (backend.h: no wait-before-signal). The copy timeline
 * counts the copies queued; a run waits for the value of the last copy its first step needs.
 * Engram rows stay on the host copy thread (they are hashed and gathered on the host). */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "copy_stream.h"
#include "plan.h"

#define VN_ASYNC_WAIT_NS (600ull * 1000000000ull) /* a bounded wait: a hung device is an error */

/* Whether a table built against this header's struct has every async slot filled. */
static bool has_slots(const vnrt_backend_i *i) {
  return i->struct_size >= offsetof(vnrt_backend_i, run_async) + sizeof i->run_async &&
         i->timeline_create && i->timeline_destroy && i->timeline_query && i->timeline_wait &&
         i->timeline_signal && i->buffer_write_async && i->buffer_read_async && i->run_async;
}

/* Decides once per plan whether its target takes the slots (creating the two timelines). */
static void decide(vnrt_plan *p) {
  vn_plan_device *pd = &p->devs[0];
  const vnrt_backend_i *i = pd->iface;
  p->async_mode = -1;
  if (!has_slots(i)) return;
  vnrt_status s = i->timeline_create(pd->bdev, &p->tl_copy);
  if (s == VNRT_OK) s = i->timeline_create(pd->bdev, &p->tl_compute);
  if (s != VNRT_OK) {
    if (s != VNRT_ERROR_UNSUPPORTED) {
      vn_log(p->ctx, VNRT_LOG_WARN, "plan for %s: no async copies (%s); using the host thread",
             pd->device->info.spec, p->ctx->last_error);
    } else {
      vn_log(p->ctx, VNRT_LOG_INFO, "plan for %s: the device declines async copies (%s)",
             pd->device->info.spec, p->ctx->last_error);
    }
    vn_clear_error(p->ctx);
    vn_plan_async_destroy(p);
    return;
  }
  p->async_mode = 1;
  vn_log(p->ctx, VNRT_LOG_INFO,
         "plan for %s: streamed params go on the device's copy stream (the backend's async "
         "slots)",
         pd->device->info.spec);
}

bool vn_plan_async_use(vnrt_plan *p) {
  p->async_run = false;
  /* One partition on the target, no transfers: the host never touches the target's memory
   * while its runs are queued (states and outputs are handled after the final wait). */
  /* Profiled and shadowed runs (plan_inspect.h) run one node at a time and read inputs back:
   * they keep the host thread. */
  if (p->async_off || p->inspect || p->ctx->no_async_copies || p->serial || p->n_stream == 0 ||
      p->n_parts != 1 || p->parts[0].dev != 0 || p->n_transfers != 0) {
    return false;
  }
  if (p->async_mode == 0) decide(p);
  if (p->async_mode < 0) return false;
  if (!vn_grow(p->ctx, (void **)&p->job_value, &p->cap_job_value, p->n_engram + p->n_stream,
               sizeof *p->job_value)) {
    return false; /* the host thread needs no more memory */
  }
  p->async_run = true;
  return true;
}

/* The next range [*e, *f) of slices to write from *e on: all of [0, n) when not selective,
 * else the next run of used experts. False when none is left. */
static bool next_range(const vn_streamed *sp, bool selective, int64_t n, int64_t *e, int64_t *f) {
  if (selective) {
    while (*e < n && !sp->used[*e]) ++*e;
  }
  if (*e >= n) return false;
  *f = *e + 1;
  while (*f < n && selective && sp->used[*f]) ++*f;
  return true;
}

/* Queues job j (a streamed param, or the used slices of hash-routed expert weights) on the
 * device's copy stream; its last write signals the next copy value. */
static vnrt_status queue_job(vnrt_plan *p, int32_t j) {
  const vn_copy_job *job = &p->jobs[j];
  vn_plan_device *pd = &p->devs[0];
  const vn_streamed *sp = &p->stream[job->arg[2]];
  const vn_plan_value *pv = &p->vals[sp->value];
  const vnrt_backend_tensor *bt = &pd->tensors[pv->local[0]];
  uint64_t total = vnrt_tensor_type_bytes(&bt->type);
  /* Step `start` reached: the arena bytes are free (nothing to wait for in a run's step 0:
   * the previous run was waited for). */
  vnrt_backend_sync sync = {0};
  if (job->after > p->compute_base) sync.wait = p->tl_compute, sync.wait_value = job->after;
  /* The ranges to write: the whole param, or runs of neighbouring used experts; the last one
   * signals. */
  bool selective = job->arg[3] != 0;
  int64_t n = selective ? sp->experts : 1;
  uint64_t slice = selective ? total / (uint64_t)sp->experts : total;
  int32_t ranges = 0, k = 0;
  for (int64_t e = 0, f; next_range(sp, selective, n, &e, &f); e = f) ++ranges;
  for (int64_t e = 0, f; total && next_range(sp, selective, n, &e, &f); e = f, ++k) {
    vnrt_backend_sync one = sync;
    if (k == ranges - 1) one.signal = p->tl_copy, one.signal_value = p->copy_value + 1;
    VN_RETURN_IF_ERROR(vn_dev_write_async(pd->device, bt->buffer, bt->offset + (uint64_t)e * slice,
                                          (const char *)pv->host_src + (uint64_t)e * slice,
                                          (uint64_t)(f - e) * slice, &one));
    if (one.signal) p->copy_value = one.signal_value;
  }
  /* Nothing written (no expert used): the job is done when the copies before it are. */
  p->job_value[j] = p->copy_value;
  return VNRT_OK;
}

/* Queues the streamed jobs up to index `upto` that may start once step s is reached. */
static vnrt_status queue_ready(vnrt_plan *p, int32_t s, int32_t upto) {
  while (p->async_next < p->n_jobs && p->async_next <= upto &&
         p->jobs[p->async_next].after <= p->compute_base + (uint64_t)s) {
    VN_RETURN_IF_ERROR(queue_job(p, p->async_next));
    p->async_next++;
  }
  return VNRT_OK;
}

vnrt_status vn_plan_async_run(vnrt_plan *p, int32_t first, int32_t s, int32_t e) {
  /* The copies this run needs (the run signalling what they wait for is queued), the run, then
   * the other copies that may start now: on a device whose copies and runs share one queue,
   * prefetches for later steps then do not delay this run. */
  int32_t j = p->steps[s].dev_job;
  VN_RETURN_IF_ERROR(queue_ready(p, s, j));
  vn_plan_device *pd = &p->devs[0];
  vnrt_backend_sync sync = {.signal = p->tl_compute, .signal_value = p->compute_base + (uint64_t)e};
  if (j >= 0 && p->job_value[j] > 0) sync.wait = p->tl_copy, sync.wait_value = p->job_value[j];
  VN_RETURN_IF_ERROR(vn_dev_run_async(pd->device, pd->exec, first, e - s, &sync));
  p->compute_value = sync.signal_value;
  return queue_ready(p, s, INT32_MAX);
}

vnrt_status vn_plan_async_wait(vnrt_plan *p, bool report) {
  if (!p->async_run) return VNRT_OK;
  p->async_run = false;
  vn_plan_device *pd = &p->devs[0];
  const vnrt_backend_i *i = pd->iface;
  vnrt_status s = VNRT_OK, t;
  char msg[VN_ERROR_MAX];
  snprintf(msg, sizeof msg, "%s", p->ctx->last_error);
  /* Both, whatever the first says: nothing may still use the memory once this returns. */
  t = i->timeline_wait(pd->bdev, p->tl_copy, p->copy_value, VN_ASYNC_WAIT_NS);
  if (s == VNRT_OK) s = t;
  t = i->timeline_wait(pd->bdev, p->tl_compute, p->compute_value, VN_ASYNC_WAIT_NS);
  if (s == VNRT_OK) s = t;
  /* Run-time errors the device found in the queued runs (backend.h, run_async). */
  t = vn_dev_run(pd->device, pd->exec, 0, 0);
  if (s == VNRT_OK) s = t;
  if (!report) {
    snprintf(p->ctx->last_error, sizeof p->ctx->last_error, "%s", msg);
    return VNRT_OK;
  }
  return s;
}

void vn_plan_async_destroy(vnrt_plan *p) {
  vn_plan_device *pd = &p->devs[0];
  if (p->tl_copy) pd->iface->timeline_destroy(pd->bdev, p->tl_copy);
  if (p->tl_compute) pd->iface->timeline_destroy(pd->bdev, p->tl_compute);
  p->tl_copy = p->tl_compute = NULL;
  vn_free(p->ctx, p->job_value);
  p->job_value = NULL;
  p->cap_job_value = 0;
}

void vn_plan_set_async(vnrt_plan *p, bool on) { p->async_off = !on; }
