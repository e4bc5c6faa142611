/* Moves between plans on the copy stream (vnrt_plan_stage_input, vnrt_plan_stage_output):
 * what a model placed over several devices uses to hand activations from one plan to the next
 * (docs/scale-out.md, "Several devices in one process").
 *
 * A staged input is a copy job queued on the plan's copy stream at once (it waits for no
 * compute step: the plan is not running), so it runs on the copy thread while the caller runs
 * other plans; the plan's next run waits for it before its first step. A staged output is a
 * copy job of the next run that waits for the step after the one computing the value, so it
 * reads the value back while the later steps run; the run drains it before returning. Both
 * count in p->mv_bytes and p->mv_ns on the copy thread, and the caller's waits for them in
 * p->mv_wait_ns; vn_plan_moves_finish moves the three into the run's statistics. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "copy_stream.h"
#include "plan.h"

/* The copy job of a move: arg[0] the value, arg[1] the host pointer, arg[2] 1 for a read. */
static vnrt_status move_job(void *user, const vn_copy_job *job) {
  vnrt_plan *p = user;
  const uint64_t t0 = vn_now_ns();
  const vn_plan_value *pv = &p->vals[job->arg[0]];
  void *host = (void *)(intptr_t)job->arg[1];
  vnrt_status s = VNRT_OK;
  if (job->arg[2]) {
    const int32_t d = pv->home;
    const vnrt_backend_tensor *bt = &p->devs[d].tensors[pv->local[d]];
    s = vn_dev_read(p->devs[d].device, bt->buffer, bt->offset, host, job->bytes);
  } else {
    for (int32_t d = 0; d < p->n_devs && s == VNRT_OK; ++d) {
      if (pv->local[d] < 0) continue;
      const vnrt_backend_tensor *bt = &p->devs[d].tensors[pv->local[d]];
      s = vn_dev_write(p->devs[d].device, bt->buffer, bt->offset, host, job->bytes);
    }
  }
  p->mv_ns += vn_now_ns() - t0;
  if (s == VNRT_OK) p->mv_bytes += job->bytes;
  return s;
}

static vnrt_status need_stream(vnrt_plan *p) {
  if (p->copy) return VNRT_OK;
  VN_RETURN_IF_ERROR(vn_copy_stream_create(p->ctx, &p->copy));
  vn_log(p->ctx, VNRT_LOG_INFO, "plan for %s: staged moves go on its copy stream (a host thread)",
         p->devs[0].device->info.spec);
  return VNRT_OK;
}

static int32_t find_value(const vnrt_plan *p, const char *name, bool output) {
  const int32_t n = output ? p->graph->n_outputs : p->graph->n_inputs;
  const int32_t *ids = output ? p->graph->outputs : p->graph->inputs;
  for (int32_t i = 0; name && i < n; ++i) {
    if (strcmp(p->graph->values[ids[i]].name, name) == 0) return ids[i];
  }
  return -1;
}

vnrt_status vnrt_plan_stage_input(vnrt_plan *p, const char *name, const void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  const int32_t v = find_value(p, name, false);
  if (v < 0 || p->graph->values[v].kind != VN_VALUE_INPUT) {
    return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND,
                    "vnrt_plan_stage_input: no run-time input named '%s' (params and states are "
                    "bound with vnrt_plan_set_input)",
                    name ? name : "(null)");
  }
  vn_plan_value *pv = &p->vals[v];
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  if (bytes != vnrt_tensor_type_bytes(t)) {
    return vn_error(p->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "vnrt_plan_stage_input: input '%s' holds %zu bytes, got %zu", name,
                    (size_t)vnrt_tensor_type_bytes(t), bytes);
  }
  /* A plan without a copy stream (serialize_copies), an input read on the host too (a shadow)
   * or checked code by code: the synchronous bind, which checks and keeps everything. */
  if (p->serial || pv->shadow || t->dtype == VNRT_E4M3 || t->dtype == VNRT_E8M0 || bytes == 0) {
    return vnrt_plan_set_input(p, name, data, bytes);
  }
  if (!data) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_plan_stage_input: input '%s': NULL "
                    "data",
                    name);
  }
  VN_RETURN_IF_ERROR(need_stream(p));
  vn_copy_job job = {
      .fn = move_job, .user = p, .arg = {v, (int64_t)(intptr_t)data, 0, 0}, .bytes = bytes};
  uint64_t last = 0;
  VN_RETURN_IF_ERROR(vn_copy_stream_submit(p->copy, &job, 1, &last));
  p->staged_in = last;
  ++*vn_plan_gen(p, v);
  *vn_plan_bound(p, v) = true;
  return VNRT_OK;
}

vnrt_status vnrt_plan_stage_output(vnrt_plan *p, const char *name, void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  const int32_t v = find_value(p, name, true);
  if (v < 0) {
    return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "vnrt_plan_stage_output: no output named '%s'",
                    name ? name : "(null)");
  }
  const uint64_t want = vnrt_tensor_type_bytes(&p->graph->values[v].type);
  if (bytes != want) {
    return vn_error(p->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "vnrt_plan_stage_output: output '%s' holds %llu bytes, got %zu", name,
                    (unsigned long long)want, bytes);
  }
  if (!data && bytes) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_plan_stage_output: output '%s': NULL data", name);
  }
  for (int32_t i = 0; i < p->n_reads; ++i) {
    if (p->reads[i].value == v) { /* asked again: the last destination wins */
      p->reads[i].dst = data;
      return VNRT_OK;
    }
  }
  if (!vn_grow(p->ctx, (void **)&p->reads, &p->cap_reads, p->n_reads + 1, sizeof *p->reads)) {
    return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory staging output '%s'", name);
  }
  p->reads[p->n_reads++] = (struct vn_staged_read){v, data, bytes};
  return VNRT_OK;
}

vnrt_status vn_plan_moves_wait(vnrt_plan *p) {
  if (!p->staged_in || !p->copy) return VNRT_OK;
  const uint64_t t0 = vn_now_ns();
  vnrt_status s = vn_copy_stream_wait(p->copy, p->staged_in);
  p->mv_wait_ns += vn_now_ns() - t0;
  p->staged_in = 0;
  if (s != VNRT_OK) {
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", p->ctx->last_error);
    vn_copy_stream_cancel(p->copy); /* the stream takes new work after the error */
    return vn_error(p->ctx, s, "a staged input: %s", msg);
  }
  return VNRT_OK;
}

/* The step after the one computing value v (0 for a value no node computes). */
static int32_t step_after(const vnrt_plan *p, int32_t v) {
  const int32_t prod = p->graph->values[v].producer;
  for (int32_t s = 0; prod >= 0 && s < p->n_order; ++s) {
    if (p->order[s] == prod) return s + 1;
  }
  return prod < 0 ? 0 : p->n_order;
}

vnrt_status vnrt_plan_wait_staged(vnrt_plan *p) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  return vn_plan_moves_wait(p);
}

vnrt_status vn_plan_moves_queue(vnrt_plan *p) {
  if (p->n_reads == 0 || p->serial) return VNRT_OK;
  VN_RETURN_IF_ERROR(need_stream(p));
  vn_copy_stream_signal_compute(p->copy, p->compute_base); /* the run has started */
  /* Where the reads may start. A read starting inside the run splits the run of nodes there
   * (a submit and a wait on a GPU), so only values computed before the last quarter of the
   * steps are read early, all at one point (the latest of theirs); the others once the last
   * step is done, while the run drains. With the backend's async slots the steps are only
   * queued, so every read waits for the end. */
  int32_t early = 0;
  for (int32_t i = 0; i < p->n_reads && !p->async_run; ++i) {
    const int32_t after = step_after(p, p->reads[i].value);
    if (after <= p->n_order - p->n_order / 4 && after > early) early = after;
  }
  if (early > 0 && early < p->n_order) p->steps[early].signal = true;
  for (int pass = 0; pass < 2; ++pass) { /* the early reads first: the stream runs in order */
    for (int32_t i = 0; i < p->n_reads; ++i) {
      const struct vn_staged_read *r = &p->reads[i];
      const int32_t after = step_after(p, r->value);
      const bool is_early = !p->async_run && after <= p->n_order - p->n_order / 4;
      if (is_early != (pass == 0)) continue;
      vn_copy_job job = {.after = p->compute_base + (uint64_t)(is_early ? early : p->n_order),
                         .fn = move_job,
                         .user = p,
                         .arg = {r->value, (int64_t)(intptr_t)r->dst, 1, 0},
                         .bytes = r->bytes};
      uint64_t last = 0;
      VN_RETURN_IF_ERROR(vn_copy_stream_submit(p->copy, &job, 1, &last));
    }
  }
  return VNRT_OK;
}

vnrt_status vn_plan_moves_finish(vnrt_plan *p, vnrt_status run_status) {
  vnrt_status s = run_status;
  for (int32_t i = 0; s == VNRT_OK && p->serial && i < p->n_reads; ++i) {
    const struct vn_staged_read *r = &p->reads[i];
    vn_copy_job job = {.arg = {r->value, (int64_t)(intptr_t)r->dst, 1, 0}, .bytes = r->bytes};
    const uint64_t t0 = vn_now_ns();
    s = move_job(p, &job);
    p->mv_wait_ns += vn_now_ns() - t0; /* on the caller's thread: all of it waited for */
  }
  p->n_reads = 0;
  p->stats.bytes_staged = p->mv_bytes;
  p->stats.staged_ns = p->mv_ns;
  p->stats.staged_wait_ns = p->mv_wait_ns;
  p->mv_bytes = p->mv_ns = p->mv_wait_ns = 0;
  return s;
}
