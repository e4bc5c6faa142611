/* The optional async slots (backend.h, API 3) on the copy queue and the compute queue: a
 * timeline is a ring of (value, event) pairs, one per signal queued; a wait on value v is an
 * event wait on the first pair at or past v (signals on a timeline are queued in increasing
 * order on one in-order queue, so it completes only once every smaller value has). Offered
 * only where buffers are not shared virtual memory: on SVM the host thread writes buffers in
 * place, which needs no queue at all (docs/opencl.md). */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "cl_buffer.h"
#include "opencl_backend.h"

#define CL_ASYNC_TRY(expr)        \
  do {                            \
    vnrt_status s_ = (expr);      \
    if (s_ != VNRT_OK) return s_; \
  } while (0)

#define CL_TIMELINE_EVENTS 64 /* signals in flight per timeline; the oldest is waited for */

struct vnrt_backend_timeline {
  pthread_mutex_t lock;
  uint64_t reached; /* the largest value known reached */
  int32_t head, n;  /* ring[head] is the oldest pending signal */
  struct {
    uint64_t value;
    cl_event ev;
  } ring[CL_TIMELINE_EVENTS];
};

vnrt_status cl_timeline_create(vnrt_backend_device *dev, vnrt_backend_timeline **out) {
  *out = NULL;
  if (dev->svm) {
    return cl_fail(dev, VNRT_ERROR_UNSUPPORTED,
                   "buffers are shared virtual memory: the host writes them in place");
  }
  vnrt_backend_timeline *tl = dev->host->alloc(dev->host->core, sizeof *tl);
  if (!tl) return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory for a timeline");
  memset(tl, 0, sizeof *tl);
  pthread_mutex_init(&tl->lock, NULL);
  *out = tl;
  return VNRT_OK;
}

/* Drops the oldest pair (lock held), recording its value as reached. */
static void pop_oldest(vnrt_backend_timeline *tl) {
  if (tl->ring[tl->head].value > tl->reached) tl->reached = tl->ring[tl->head].value;
  clReleaseEvent(tl->ring[tl->head].ev);
  tl->head = (tl->head + 1) % CL_TIMELINE_EVENTS;
  tl->n--;
}

/* Drops the pairs whose events are complete, oldest first (lock held). */
static void prune(vnrt_backend_timeline *tl) {
  while (tl->n > 0) {
    cl_int st = CL_QUEUED;
    clGetEventInfo(tl->ring[tl->head].ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
    if (st != CL_COMPLETE) break;
    pop_oldest(tl);
  }
}

void cl_timeline_destroy(vnrt_backend_device *dev, vnrt_backend_timeline *tl) {
  if (!tl) return;
  while (tl->n > 0) {
    clWaitForEvents(1, &tl->ring[tl->head].ev);
    pop_oldest(tl);
  }
  pthread_mutex_destroy(&tl->lock);
  dev->host->free(dev->host->core, tl);
}

vnrt_status cl_timeline_query(vnrt_backend_device *dev, vnrt_backend_timeline *tl,
                              uint64_t *out_value) {
  (void)dev;
  pthread_mutex_lock(&tl->lock);
  prune(tl);
  *out_value = tl->reached;
  pthread_mutex_unlock(&tl->lock);
  return VNRT_OK;
}

/* The event to wait for to reach value (retained; NULL when reached). */
static vnrt_status event_for(vnrt_backend_device *dev, vnrt_backend_timeline *tl, uint64_t value,
                             cl_event *out) {
  *out = NULL;
  pthread_mutex_lock(&tl->lock);
  vnrt_status s = VNRT_OK;
  if (value > tl->reached) {
    int32_t i = 0;
    while (i < tl->n && tl->ring[(tl->head + i) % CL_TIMELINE_EVENTS].value < value) ++i;
    if (i < tl->n) {
      *out = tl->ring[(tl->head + i) % CL_TIMELINE_EVENTS].ev;
      clRetainEvent(*out);
    } else {
      s = cl_fail(dev, VNRT_ERROR_INVALID_ARGUMENT,
                  "timeline value %" PRIu64 " is not reached (at %" PRIu64
                  ") and no queued operation signals it",
                  value, tl->reached);
    }
  }
  pthread_mutex_unlock(&tl->lock);
  return s;
}

vnrt_status cl_timeline_wait(vnrt_backend_device *dev, vnrt_backend_timeline *tl, uint64_t value,
                             uint64_t timeout_ns) {
  (void)timeout_ns; /* OpenCL has no bounded event wait */
  cl_event ev = NULL;
  vnrt_status s = event_for(dev, tl, value, &ev);
  if (s != VNRT_OK || !ev) return s;
  cl_int err = clWaitForEvents(1, &ev);
  clReleaseEvent(ev);
  pthread_mutex_lock(&tl->lock);
  prune(tl);
  pthread_mutex_unlock(&tl->lock);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE, "waiting for timeline value %" PRIu64 ": %d %s", value,
                   (int)err, cl_error_name(err));
  }
  return VNRT_OK;
}

vnrt_status cl_timeline_signal(vnrt_backend_device *dev, vnrt_backend_timeline *tl,
                               uint64_t value) {
  (void)dev;
  pthread_mutex_lock(&tl->lock);
  if (value > tl->reached) tl->reached = value;
  pthread_mutex_unlock(&tl->lock);
  return VNRT_OK;
}

/* Records ev (owned) as the signal of value; a full ring first waits for its oldest pair. */
static void push(vnrt_backend_timeline *tl, uint64_t value, cl_event ev) {
  pthread_mutex_lock(&tl->lock);
  if (tl->n == CL_TIMELINE_EVENTS) {
    clWaitForEvents(1, &tl->ring[tl->head].ev);
    pop_oldest(tl);
  }
  int32_t at = (tl->head + tl->n) % CL_TIMELINE_EVENTS;
  tl->ring[at].value = value;
  tl->ring[at].ev = ev;
  tl->n++;
  pthread_mutex_unlock(&tl->lock);
}

/* The wait list of sync (0 or 1 events, retained in *ev). */
static vnrt_status wait_list(vnrt_backend_device *dev, const vnrt_backend_sync *sync,
                             cl_event *ev) {
  *ev = NULL;
  if (!sync || !sync->wait) return VNRT_OK;
  return event_for(dev, sync->wait, sync->wait_value, ev);
}

/* After an enqueue that returned ev: signal with it, or drop it. */
static void finish_op(const vnrt_backend_sync *sync, cl_event ev) {
  if (!ev) return;
  if (sync && sync->signal) {
    push(sync->signal, sync->signal_value, ev);
  } else {
    clReleaseEvent(ev);
  }
}

/* A copy on the copy queue, waiting for sync's wait event and signalling with its own. */
static vnrt_status copy_async(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                              void *host, uint64_t bytes, bool write,
                              const vnrt_backend_sync *sync) {
  const char *what = write ? "write_async" : "read_async";
  CL_ASYNC_TRY(cl_buffer_check_range(dev, buf, what, offset, bytes));
  cl_event wait = NULL, ev = NULL;
  CL_ASYNC_TRY(wait_list(dev, sync, &wait));
  cl_int err;
  if (bytes == 0) {
    err = clEnqueueMarkerWithWaitList(dev->copy_queue, wait ? 1 : 0, wait ? &wait : NULL, &ev);
  } else if (write) {
    err = clEnqueueWriteBuffer(dev->copy_queue, buf->mem, CL_FALSE, (size_t)offset, (size_t)bytes,
                               host, wait ? 1 : 0, wait ? &wait : NULL, &ev);
  } else {
    err = clEnqueueReadBuffer(dev->copy_queue, buf->mem, CL_FALSE, (size_t)offset, (size_t)bytes,
                              host, wait ? 1 : 0, wait ? &wait : NULL, &ev);
  }
  if (wait) clReleaseEvent(wait);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE, "%s of %" PRIu64 " bytes at offset %" PRIu64 ": %d %s",
                   what, bytes, offset, (int)err, cl_error_name(err));
  }
  /* Sent to the device now, so that a wait on another queue does not stall on a batch. */
  clFlush(dev->copy_queue);
  finish_op(sync, ev);
  return VNRT_OK;
}

vnrt_status cl_backend_buffer_write_async(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                          uint64_t offset, const void *src, uint64_t bytes,
                                          const vnrt_backend_sync *sync) {
  return copy_async(dev, buf, offset, (void *)src, bytes, true, sync);
}

vnrt_status cl_backend_buffer_read_async(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                         uint64_t offset, void *dst, uint64_t bytes,
                                         const vnrt_backend_sync *sync) {
  return copy_async(dev, buf, offset, dst, bytes, false, sync);
}

vnrt_status cl_async_run_begin(vnrt_backend_device *dev, const vnrt_backend_sync *sync) {
  cl_event wait = NULL;
  CL_ASYNC_TRY(wait_list(dev, sync, &wait));
  if (!wait) return VNRT_OK;
  cl_int err = clEnqueueBarrierWithWaitList(dev->queue, 1, &wait, NULL);
  clReleaseEvent(wait);
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE, "run_async: waiting for a timeline: %d %s", (int)err,
                   cl_error_name(err));
  }
  return VNRT_OK;
}

vnrt_status cl_async_run_end(vnrt_backend_device *dev, const vnrt_backend_sync *sync) {
  cl_event ev = NULL;
  cl_int err = CL_SUCCESS;
  if (sync && sync->signal) err = clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, &ev);
  if (err == CL_SUCCESS) err = clFlush(dev->queue);
  if (err != CL_SUCCESS) {
    if (ev) clReleaseEvent(ev);
    return cl_fail(dev, VNRT_ERROR_DEVICE, "run_async: signalling a timeline: %d %s", (int)err,
                   cl_error_name(err));
  }
  finish_op(sync, ev);
  return VNRT_OK;
}
