/* Running plans: bindings, the run loop with cross-device transfers, outputs and states. */
#include <stdio.h>
#include <string.h>

#include "copy_stream.h"
#include "plan.h"
#include "plan_inspect.h"
#include "sized.h"

/* ---- Bindings and running -------------------------------------------------------------- */

/* An input, param or state by name, or -1. */
static int32_t find_input(const vnrt_plan *p, const char *name) {
  int32_t v = name ? vnrt_graph_find(p->graph, name) : -1;
  return (v >= 0 && p->graph->values[v].kind != VN_VALUE_NODE) ? v : -1;
}

/* "a, b, c": the names of values ids[0, n), cut to fit buf. */
static const char *name_list(const vnrt_plan *p, const int32_t *ids, int32_t n, char *buf,
                             size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; i < n && used + 1 < size; ++i) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", p->graph->values[ids[i]].name);
    if (w < 0) break;
    used += (size_t)w;
  }
  return buf;
}

/* The byte count a caller passed for a value must be its type's: the error names the value,
 * its type and both sizes. */
static vnrt_status check_bytes(vnrt_plan *p, const char *role, const char *name,
                               const vnrt_tensor_type *t, size_t bytes, bool is_buffer) {
  size_t want = vnrt_tensor_type_bytes(t);
  if (bytes == want) return VNRT_OK;
  char tbuf[160];
  return vn_error(p->ctx, VNRT_ERROR_SHAPE_MISMATCH, "%s '%s' is %s (%zu bytes) but %s%zu bytes %s",
                  role, name, vn_type_str(t, tbuf, sizeof tbuf), want,
                  is_buffer ? "a buffer of " : "", bytes, is_buffer ? "was given" : "were given");
}

static vnrt_status no_input(vnrt_plan *p, const char *name) {
  char list[512];
  return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "no input or param named '%s' (the graph has: %s)",
                  name ? name : "(null)",
                  name_list(p, p->graph->inputs, p->graph->n_inputs, list, sizeof list));
}

vnrt_status vnrt_plan_input_type(const vnrt_plan *plan, const char *name,
                                 vnrt_tensor_type *out_type) {
  if (!plan || !out_type) return VNRT_ERROR_INVALID_ARGUMENT;
  memset(out_type, 0, sizeof *out_type);
  int32_t v = find_input(plan, name);
  if (v < 0) return no_input((vnrt_plan *)plan, name);
  *out_type = plan->graph->values[v].type;
  return VNRT_OK;
}

static const char *value_role(const vnrt_plan *p, int32_t v) {
  switch (p->graph->values[v].kind) {
    case VN_VALUE_PARAM:
      return "param";
    case VN_VALUE_STATE:
      return "state";
    default:
      return "input";
  }
}

/* Quantized codes are checked as they are bound (docs/ops.md, "Quantized weights"): a NaN e4m3
 * code (0x7F, 0xFF) or a NaN e8m0 scale (255) would make every product it touches NaN, so it
 * is a named error here rather than a wrong answer later. e2m1 has no NaN code. */
static vnrt_status check_codes(vnrt_plan *p, int32_t v, const vnrt_tensor_type *t, const void *data,
                               size_t bytes) {
  const uint8_t *b = data;
  size_t i = 0;
  if (t->dtype == VNRT_E4M3) {
    while (i < bytes && (b[i] & 0x7Fu) != 0x7Fu) ++i;
  } else if (t->dtype == VNRT_E8M0) {
    while (i < bytes && b[i] != 0xFFu) ++i;
  } else {
    return VNRT_OK;
  }
  if (i == bytes) return VNRT_OK;
  /* The flat index as a multi-index, outermost first. */
  char at[96];
  size_t used = (size_t)snprintf(at, sizeof at, "[");
  for (int32_t d = 0; d < t->rank && used < sizeof at; ++d) {
    uint64_t stride = 1;
    for (int32_t e = d + 1; e < t->rank; ++e) stride *= (uint64_t)t->dims[e];
    used += (size_t)snprintf(at + used, sizeof at - used, "%s%llu", d ? ", " : "",
                             (unsigned long long)((i / stride) % (uint64_t)t->dims[d]));
  }
  if (used < sizeof at) snprintf(at + used, sizeof at - used, "]");
  char tbuf[160];
  return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                  "%s '%s' (%s) holds a NaN %s at index %zu %s: byte 0x%02X%s", value_role(p, v),
                  p->graph->values[v].name, vn_type_str(t, tbuf, sizeof tbuf),
                  t->dtype == VNRT_E4M3 ? "e4m3 code" : "e8m0 scale", i, at, (unsigned)b[i],
                  t->dtype == VNRT_E4M3 ? " (0x7F and 0xFF are NaN)" : " (255 is NaN)");
}

/* Binds an input, param or state; a streamed param is kept on the host (copied, or borrowed
 * when `borrow`) instead of being written to the target. */
static vnrt_status set_input(vnrt_plan *p, const char *name, const void *data, size_t bytes,
                             bool borrow) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  int32_t v = find_input(p, name);
  if (v < 0) return no_input(p, name);
  VN_RETURN_IF_ERROR(vn_plan_moves_wait(p)); /* a staged write must not land after this one */
  vn_plan_value *pv = &p->vals[v];
  if (pv->no_storage) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "param '%s' is served by an Engram store: bind the store, not the table", name);
  }
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  VN_RETURN_IF_ERROR(check_bytes(p, value_role(p, v), name, t, bytes, false));
  if (!data && bytes) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s '%s': NULL data", value_role(p, v),
                    name);
  }
  VN_RETURN_IF_ERROR(check_codes(p, v, t, data, bytes));
  /* A param shared with another plan (vnrt_plan_create_shared) is bound for both. */
  bool *bound = vn_plan_bound(p, v);
  *bound = false;
  if (pv->streamed) {
    vn_free(p->ctx, pv->host_owned);
    pv->host_owned = NULL;
    pv->host_src = data;
    if (!borrow) {
      pv->host_owned = vn_malloc(p->ctx, bytes);
      if (!pv->host_owned) {
        return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY,
                        "out of memory keeping param '%s' (%zu "
                        "bytes) in host memory",
                        name, bytes);
      }
      memcpy(pv->host_owned, data, bytes);
      pv->host_src = pv->host_owned;
    }
  }
  uint64_t gen = ++*vn_plan_gen(p, v);
  if (pv->shadow) {
    if (bytes) memcpy(pv->shadow, data, bytes);
    pv->seen_gen = gen;
  }
  for (int32_t d = 0; d < p->n_devs; ++d) {
    int32_t t_idx = pv->local[d];
    if (t_idx < 0 || bytes == 0 || (d == 0 && pv->streamed)) continue;
    vn_plan_device *pd = &p->devs[d];
    const vnrt_backend_tensor *bt = &pd->tensors[t_idx];
    VN_RETURN_IF_ERROR(vn_dev_write(pd->device, bt->buffer, bt->offset, data, bytes));
  }
  *bound = true;
  return VNRT_OK;
}

/* Host shadows of values bound through another plan that shares them since this plan last
 * looked: read back from the shared device memory (a hash-routing table or Engram offsets —
 * small tensors). */
static vnrt_status refresh_shadows(vnrt_plan *p) {
  for (int32_t v = 0; v < p->graph->n_values; ++v) {
    vn_plan_value *pv = &p->vals[v];
    if (!pv->shadow || pv->local[0] < 0 || pv->streamed) continue;
    uint64_t gen = *vn_plan_gen(p, v);
    if (gen == pv->seen_gen) continue;
    const vnrt_backend_tensor *bt = &p->devs[0].tensors[pv->local[0]];
    uint64_t bytes = vnrt_tensor_type_bytes(&bt->type);
    if (bytes) {
      VN_RETURN_IF_ERROR(vn_dev_read(p->devs[0].device, bt->buffer, bt->offset, pv->shadow, bytes));
    }
    pv->seen_gen = gen;
  }
  return VNRT_OK;
}

vnrt_status vnrt_plan_set_input(vnrt_plan *p, const char *name, const void *data, size_t bytes) {
  return set_input(p, name, data, bytes, false);
}

vnrt_status vnrt_plan_set_input_ref(vnrt_plan *p, const char *name, const void *data,
                                    size_t bytes) {
  return set_input(p, name, data, bytes, true);
}

/* Copies tensor ts of device slot src into tensor td of device slot dst (through the staging
 * buffer unless the source is host-visible). */
static vnrt_status copy_tensor(vnrt_plan *p, int32_t src_dev, const vnrt_backend_tensor *ts,
                               int32_t dst_dev, const vnrt_backend_tensor *td) {
  vn_plan_device *src = &p->devs[src_dev], *dst = &p->devs[dst_dev];
  uint64_t bytes = vnrt_tensor_type_bytes(&ts->type);
  if (bytes == 0) return VNRT_OK;
  void *src_ptr = vn_dev_map(src->device, ts->buffer);
  if (src_ptr) {
    return vn_dev_write(dst->device, td->buffer, td->offset, (const char *)src_ptr + ts->offset,
                        bytes);
  }
  VN_RETURN_IF_ERROR(vn_dev_read(src->device, ts->buffer, ts->offset, p->staging, bytes));
  return vn_dev_write(dst->device, td->buffer, td->offset, p->staging, bytes);
}

static vnrt_status run_transfer(vnrt_plan *p, const vn_transfer *tr) {
  p->stats.bytes_transfers += vnrt_tensor_type_bytes(&p->graph->values[tr->value].type);
  const vn_plan_value *pv = &p->vals[tr->value];
  return copy_tensor(p, tr->src, &p->devs[tr->src].tensors[pv->local[tr->src]], tr->dst,
                     &p->devs[tr->dst].tensors[pv->local[tr->dst]]);
}

/* After a run: every state takes its next value, in each device's replica. */
static vnrt_status update_states(vnrt_plan *p) {
  const vnrt_graph *g = p->graph;
  for (int32_t i = 0; i < g->n_states; ++i) {
    int32_t st = g->states[i], next = g->values[st].next;
    if (next < 0) continue;
    const vn_plan_value *pn = &p->vals[next], *ps = &p->vals[st];
    int32_t h = pn->home;
    const vnrt_backend_tensor *src = &p->devs[h].tensors[pn->local[h]];
    for (int32_t d = 0; d < p->n_devs; ++d) {
      if (ps->local[d] < 0 || (d == 0 && pn->alias == st)) continue;
      VN_RETURN_IF_ERROR(copy_tensor(p, h, src, d, &p->devs[d].tensors[ps->local[d]]));
    }
  }
  return VNRT_OK;
}

/* The copy job of a streamed param: its host bytes into its arena slot on the target — for
 * hash-routed expert weights, only the slices of the experts this run uses. */
static vnrt_status stream_job(void *user, const vn_copy_job *job) {
  vnrt_plan *p = user;
  const vn_streamed *sp = &p->stream[job->arg[2]];
  const vn_plan_value *pv = &p->vals[sp->value];
  const vnrt_backend_tensor *bt = &p->devs[0].tensors[pv->local[0]];
  uint64_t total = vnrt_tensor_type_bytes(&bt->type);
  if (!job->arg[3]) {
    return vn_dev_write(p->devs[0].device, bt->buffer, bt->offset, pv->host_src, total);
  }
  uint64_t slice = total / (uint64_t)sp->experts;
  for (int64_t e = 0; e < sp->experts;) {
    if (!sp->used[e]) {
      ++e;
      continue;
    }
    int64_t f = e + 1;
    while (f < sp->experts && sp->used[f]) ++f; /* neighbours in one write */
    VN_RETURN_IF_ERROR(vn_dev_write(p->devs[0].device, bt->buffer, bt->offset + (uint64_t)e * slice,
                                    (const char *)pv->host_src + (uint64_t)e * slice,
                                    (uint64_t)(f - e) * slice));
    e = f;
  }
  return VNRT_OK;
}

/* Builds this run's copies (Engram rows first: they may start at once; then streamed params by
 * the step after which they may start), records what each step waits for, and queues them on
 * the copy stream (or, serialised, leaves them to run inline). */
static vnrt_status queue_copies(vnrt_plan *p) {
  int32_t n = p->n_order;
  for (int32_t s = 0; s <= n; ++s) p->steps[s].need = 0, p->steps[s].job = p->steps[s].dev_job = -1;
  p->n_jobs = p->inline_done = 0;
  p->async_run = false;
  if (p->n_engram == 0 && p->n_stream == 0) return VNRT_OK;
  int32_t total = p->n_engram + p->n_stream;
  if (!vn_grow(p->ctx, (void **)&p->jobs, &p->cap_jobs, total, sizeof *p->jobs)) {
    return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory queueing copies");
  }
  if (!p->copy && !p->serial) {
    VN_RETURN_IF_ERROR(vn_copy_stream_create(p->ctx, &p->copy));
    vn_log(p->ctx, VNRT_LOG_INFO, "plan for %s: the copy stream is a host thread writing %s",
           p->devs[0].device->info.spec,
           p->devs[0].iface->buffer_host_ptr ? "mapped memory where the device exposes it"
                                             : "through the backend's buffer_write");
  }
  vn_copy_job *jp = p->jobs;
  int32_t k = 0;
  VN_RETURN_IF_ERROR(vn_plan_engram_prefetch(p, jp, &k));
  bool dev = vn_plan_async_use(p); /* streamed params on the device's copy stream */
  /* Streamed params, sorted by start (insertion sort: a handful per plan). */
  int32_t first_stream = k;
  for (int32_t j = 0; j < p->n_stream; ++j) {
    const vn_streamed *sp = &p->stream[j];
    if (!p->vals[sp->value].host_src) {
      return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "param '%s' is not bound",
                      p->graph->values[sp->value].name);
    }
    bool selective = false;
    uint64_t bytes = vn_plan_mark_experts(p, &p->stream[j], &selective);
    vn_copy_job job = {.after = p->compute_base + (uint64_t)sp->start,
                       .fn = stream_job,
                       .user = p,
                       .arg = {sp->value, sp->first, j, selective},
                       .bytes = bytes};
    int32_t at = k++;
    while (at > first_stream && jp[at - 1].after > job.after) {
      jp[at] = jp[at - 1];
      --at;
    }
    jp[at] = job;
    p->stats.bytes_weights += job.bytes;
  }
  for (int32_t i = first_stream; i < k; ++i) {
    int32_t f = (int32_t)jp[i].arg[1];
    int32_t *need = dev ? &p->steps[f].dev_job : &p->steps[f].job;
    if (*need < i) *need = i;
  }
  p->n_jobs = k;
  p->async_next = first_stream;
  if (p->serial) return VNRT_OK;
  uint64_t last = 0;
  int32_t host = dev ? first_stream : k; /* the jobs the host thread runs */
  /* The run has started: jobs that wait for nothing (Engram rows) may start at once. */
  vn_copy_stream_signal_compute(p->copy, p->compute_base);
  VN_RETURN_IF_ERROR(vn_copy_stream_submit(p->copy, jp, host, &last));
  for (int32_t s = 0; s < n; ++s) {
    if (p->steps[s].job >= 0) p->steps[s].need = last - (uint64_t)(host - 1 - p->steps[s].job);
  }
  /* With the device's copy stream, small (lazy) Engram jobs are done now, before any run is
   * queued: later, their synchronous writes would wait behind the queued runs and copies. */
  bool lazy = dev && host > 0;
  for (int32_t j = 0; j < host && lazy; ++j) lazy = jp[j].lazy;
  if (lazy) VN_RETURN_IF_ERROR(vn_copy_stream_wait(p->copy, last));
  return VNRT_OK;
}

/* Serialised copies: run, on this thread, every job up to the one step s needs. */
static vnrt_status run_inline(vnrt_plan *p, int32_t s, uint64_t *copy_ns) {
  uint64_t t0 = vn_now_ns();
  for (; p->inline_done <= p->steps[s].job; ++p->inline_done) {
    const vn_copy_job *job = &p->jobs[p->inline_done];
    vnrt_status st = job->fn(job->user, job);
    if (st != VNRT_OK) {
      if (job->error && job->error[0]) vn_error(p->ctx, st, "%s", job->error);
      return st;
    }
  }
  *copy_ns += vn_now_ns() - t0;
  return VNRT_OK;
}

/* Whether a run of nodes must be split before step s: a copy may wait for it to start, or it
 * waits for a copy. */
static bool breaks_at(const vnrt_plan *p, int32_t s) {
  return p->steps[s].job >= 0 || p->steps[s].signal || p->steps[s].dev_job >= 0;
}

static vnrt_status run_steps(vnrt_plan *p, uint64_t *compute_ns, uint64_t *inline_copy_ns) {
  for (int32_t pi = 0; pi < p->n_parts; ++pi) {
    const vn_partition *part = &p->parts[pi];
    uint64_t t0 = vn_now_ns();
    for (int32_t t = 0; t < part->n_transfers; ++t) {
      VN_RETURN_IF_ERROR(run_transfer(p, &p->transfers[part->first_transfer + t]));
    }
    vn_plan_device *pd = &p->devs[part->dev];
    int32_t end = part->step + part->count;
    /* Inspected: node by node on the host clock, or runs of nodes the device times itself. */
    bool timed = vn_inspect_device_timed(p, part->dev);
    for (int32_t s = part->step; s < end;) {
      int32_t e = s + 1;
      while (e < end && (!p->inspect || timed) && !breaks_at(p, e)) ++e;
      if (p->serial && p->steps[s].job >= 0) {
        *compute_ns += vn_now_ns() - t0;
        VN_RETURN_IF_ERROR(run_inline(p, s, inline_copy_ns));
        t0 = vn_now_ns();
      } else if (p->copy) {
        /* Steps before s are done: copies waiting for that may start (only streamed params
         * wait; telling the copy thread needlessly costs a lock it may hold); then wait for
         * ours. */
        if (p->steps[s].signal) {
          vn_copy_stream_signal_compute(p->copy, p->compute_base + (uint64_t)s);
        }
        if (p->steps[s].need) {
          *compute_ns += vn_now_ns() - t0;
          VN_RETURN_IF_ERROR(vn_copy_stream_wait(p->copy, p->steps[s].need));
          t0 = vn_now_ns();
        }
      }
      if (p->async_run) {
        VN_RETURN_IF_ERROR(vn_plan_async_run(p, part->first + (s - part->step), s, e));
      } else if (!p->inspect) {
        VN_RETURN_IF_ERROR(vn_dev_run(pd->device, pd->exec, part->first + (s - part->step), e - s));
      } else {
        vnrt_status ts = VNRT_ERROR_UNSUPPORTED;
        if (timed) ts = vn_inspect_run_timed(p, part->dev, part->first + (s - part->step), s, e);
        if (ts != VNRT_OK && ts != VNRT_ERROR_UNSUPPORTED) return ts;
        timed = timed && ts == VNRT_OK;
        for (int32_t k = s; ts == VNRT_ERROR_UNSUPPORTED && k < e; ++k) {
          VN_RETURN_IF_ERROR(vn_inspect_before(p, k));
          uint64_t tn = vn_now_ns();
          VN_RETURN_IF_ERROR(vn_dev_run(pd->device, pd->exec, part->first + (k - part->step), 1));
          VN_RETURN_IF_ERROR(vn_inspect_after(p, k, vn_now_ns() - tn));
        }
      }
      s = e;
    }
    *compute_ns += vn_now_ns() - t0;
  }
  uint64_t t0 = vn_now_ns();
  vnrt_status st = vn_plan_async_wait(p, true); /* the queued copies and runs */
  *compute_ns += vn_now_ns() - t0;
  return st;
}

vnrt_status vnrt_plan_run(vnrt_plan *p) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  p->ran = false;
  for (int32_t i = 0; i < p->graph->n_inputs; ++i) {
    int32_t v = p->graph->inputs[i];
    if (!*vn_plan_bound(p, v)) {
      return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "%s '%s' is not bound: call vnrt_plan_set_input first",
                      p->graph->values[v].kind == VN_VALUE_PARAM ? "param" : "input",
                      p->graph->values[v].name);
    }
  }
  uint64_t start = vn_now_ns(), compute_ns = 0, inline_copy_ns = 0;
  memset(&p->stats, 0, sizeof p->stats);
  vn_inspect_begin_run(p);
  vnrt_status s = vn_plan_moves_wait(p); /* the staged inputs */
  if (s == VNRT_OK) s = refresh_shadows(p);
  if (s == VNRT_OK) s = queue_copies(p);
  if (s == VNRT_OK) s = vn_plan_moves_queue(p); /* the staged outputs */
  if (s == VNRT_OK) s = run_steps(p, &compute_ns, &inline_copy_ns);
  if (s != VNRT_OK) vn_plan_async_wait(p, false); /* nothing queued may outlive the run */
  if (s == VNRT_OK) {
    uint64_t t0 = vn_now_ns();
    s = update_states(p);
    compute_ns += vn_now_ns() - t0;
  }
  vn_copy_stats cs = {0};
  if (p->copy) {
    if (s == VNRT_OK) {
      vn_copy_stream_signal_compute(p->copy, p->compute_base + (uint64_t)p->n_order);
      uint64_t t0 = vn_now_ns();
      s = vn_copy_stream_drain(p->copy, &cs);
      if (p->n_reads > 0) p->mv_wait_ns += vn_now_ns() - t0; /* the staged outputs' tail */
    } else {
      char msg[VN_ERROR_MAX];
      snprintf(msg, sizeof msg, "%s", p->ctx->last_error);
      vn_copy_stream_cancel(p->copy); /* jobs waiting for steps that will not run */
      snprintf(p->ctx->last_error, sizeof p->ctx->last_error, "%s", msg);
    }
  }
  /* Timeline values only grow: the next run starts past every step of this one. */
  p->compute_base += (uint64_t)p->n_order + 1;
  s = vn_plan_moves_finish(p, s);
  if (s != VNRT_OK) return s;
  vn_plan_engram_collect(p);
  vn_inspect_end_run(p);
  vnrt_run_stats *st = &p->stats;
  st->wall_ns = vn_now_ns() - start;
  st->compute_ns = compute_ns;
  /* The staged moves are reported apart (staged_ns, staged_wait_ns). */
  st->copy_ns = cs.busy_ns + inline_copy_ns;
  if (p->copy) st->copy_ns -= st->staged_ns < st->copy_ns ? st->staged_ns : st->copy_ns;
  st->stall_ns = cs.stall_ns;
  st->stall_ns -= st->staged_wait_ns < st->stall_ns ? st->staged_wait_ns : st->stall_ns;
  uint64_t shorter = st->compute_ns < st->copy_ns ? st->compute_ns : st->copy_ns;
  if (shorter > 0) {
    double hidden = (double)st->compute_ns + (double)st->copy_ns - (double)st->wall_ns;
    st->overlap = hidden <= 0 ? 0.0 : hidden >= (double)shorter ? 1.0 : hidden / (double)shorter;
  }
  st->engram_hit_rate = st->engram_rows ? (double)st->engram_hits / (double)st->engram_rows : 0.0;
  p->ran = true;
  return VNRT_OK;
}

vnrt_status vnrt_plan_get_run_stats(const vnrt_plan *plan, vnrt_run_stats *out_stats) {
  if (!plan || !out_stats) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_run_stats stats = plan->stats;
  stats.struct_size = sizeof stats;
  return vn_sized_write(plan->ctx, &vn_sized_run_stats, &stats, out_stats);
}

static int32_t find_output(const vnrt_plan *p, const char *name) {
  for (int32_t o = 0; name && o < p->graph->n_outputs; ++o) {
    if (strcmp(p->graph->values[p->graph->outputs[o]].name, name) == 0) return p->graph->outputs[o];
  }
  return -1;
}

static vnrt_status no_output(vnrt_plan *p, const char *name) {
  char list[512];
  return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "no output named '%s' (the graph has: %s)",
                  name ? name : "(null)",
                  name_list(p, p->graph->outputs, p->graph->n_outputs, list, sizeof list));
}

int32_t vnrt_plan_output_count(const vnrt_plan *plan) { return plan ? plan->graph->n_outputs : 0; }

const char *vnrt_plan_output_name(const vnrt_plan *plan, int32_t i) {
  if (!plan || i < 0 || i >= plan->graph->n_outputs) return NULL;
  return plan->graph->values[plan->graph->outputs[i]].name;
}

vnrt_status vnrt_plan_output_type(const vnrt_plan *plan, const char *name,
                                  vnrt_tensor_type *out_type) {
  if (!plan || !out_type) return VNRT_ERROR_INVALID_ARGUMENT;
  memset(out_type, 0, sizeof *out_type);
  int32_t v = find_output(plan, name);
  if (v < 0) return no_output((vnrt_plan *)plan, name);
  *out_type = plan->graph->values[v].type;
  return VNRT_OK;
}

vnrt_status vnrt_plan_read_output(vnrt_plan *p, const char *name, void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  int32_t v = find_output(p, name);
  if (v < 0) return no_output(p, name);
  if (!p->ran) {
    return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "output '%s': the plan has no successful run to read from", name);
  }
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  VN_RETURN_IF_ERROR(check_bytes(p, "output", name, t, bytes, true));
  if (bytes == 0) return VNRT_OK;
  if (!data) return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "output '%s': NULL data", name);
  int32_t d = p->vals[v].home;
  vn_plan_device *pd = &p->devs[d];
  const vnrt_backend_tensor *bt = &pd->tensors[p->vals[v].local[d]];
  return vn_dev_read(pd->device, bt->buffer, bt->offset, data, bytes);
}

static int32_t find_state(const vnrt_plan *p, const char *name) {
  int32_t v = name ? vnrt_graph_find(p->graph, name) : -1;
  return (v >= 0 && p->graph->values[v].kind == VN_VALUE_STATE) ? v : -1;
}

vnrt_status vnrt_plan_read_state(vnrt_plan *p, const char *name, void *data, size_t bytes) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  vn_clear_error(p->ctx);
  int32_t v = find_state(p, name);
  if (v < 0) {
    return vn_error(p->ctx, VNRT_ERROR_NOT_FOUND, "no state named '%s'", name ? name : "(null)");
  }
  const vnrt_tensor_type *t = &p->graph->values[v].type;
  VN_RETURN_IF_ERROR(check_bytes(p, "state", name, t, bytes, true));
  if (bytes == 0) return VNRT_OK;
  if (!data) return vn_error(p->ctx, VNRT_ERROR_INVALID_ARGUMENT, "state '%s': NULL data", name);
  vn_plan_device *pd = &p->devs[0];
  const vnrt_backend_tensor *bt = &pd->tensors[p->vals[v].local[0]];
  return vn_dev_read(pd->device, bt->buffer, bt->offset, data, bytes);
}

vnrt_status vnrt_plan_reset_state(vnrt_plan *p) {
  if (!p) return VNRT_ERROR_INVALID_ARGUMENT;
  const vnrt_graph *g = p->graph;
  uint64_t largest = 0;
  for (int32_t i = 0; i < g->n_states; ++i) {
    uint64_t bytes = vnrt_tensor_type_bytes(&g->values[g->states[i]].type);
    if (bytes > largest) largest = bytes;
  }
  if (largest == 0) return VNRT_OK;
  void *zeros = vn_calloc(p->ctx, 1, (size_t)largest);
  if (!zeros) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory zeroing states");
  vnrt_status status = VNRT_OK;
  for (int32_t i = 0; i < g->n_states && status == VNRT_OK; ++i) {
    int32_t v = g->states[i];
    uint64_t bytes = vnrt_tensor_type_bytes(&g->values[v].type);
    for (int32_t d = 0; d < p->n_devs && status == VNRT_OK && bytes; ++d) {
      if (p->vals[v].local[d] < 0) continue;
      const vnrt_backend_tensor *bt = &p->devs[d].tensors[p->vals[v].local[d]];
      status = vn_dev_write(p->devs[d].device, bt->buffer, bt->offset, zeros, bytes);
    }
  }
  vn_free(p->ctx, zeros);
  return status;
}

vnrt_status vn_plan_set_copy_delay(vnrt_plan *p, uint64_t delay_ns) {
  p->async_off = true; /* the delay is the host thread's */
  if (!p->copy) VN_RETURN_IF_ERROR(vn_copy_stream_create(p->ctx, &p->copy));
  vn_copy_stream_set_delay(p->copy, delay_ns);
  return VNRT_OK;
}
