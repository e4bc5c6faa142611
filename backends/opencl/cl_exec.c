/* Compiling a graph for an OpenCL device into steps (kernel launches with their arguments
 * bound, index checks, GEMM calls), and running ranges of nodes by enqueueing those steps on
 * the device's in-order queue. */
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include "cl_buffer.h"
#include "cl_exec.h"
#include "cl_ops.h"
#include "opencl_backend.h"

#define CL_ALIGN 256u

/* ---- Growing arrays -------------------------------------------------------------------- */

static int grow(const vnrt_backend_host *host, void **items, int32_t *cap, int32_t need,
                size_t elem) {
  if (need <= *cap) return 1;
  int32_t n = *cap ? *cap : 16;
  while (n < need) n *= 2;
  void *p = host->alloc(host->core, elem * (size_t)n);
  if (!p) return 0;
  if (*items) {
    memcpy(p, *items, elem * (size_t)*cap);
    host->free(host->core, *items);
  }
  memset((char *)p + elem * (size_t)*cap, 0, elem * (size_t)(n - *cap));
  *items = p;
  *cap = n;
  return 1;
}

static const char *node_op_name(const vnrt_backend_node *node) {
  const char *op = vnrt_op_name(node->op);
  return op ? op : "?";
}

/* ---- The launch builder ---------------------------------------------------------------- */

void cl_launch_begin(cl_lower *L, const char *kernel, cl_launch *k) {
  vnrt_backend_exec *exec = L->exec;
  vnrt_backend_device *dev = L->dev;
  memset(k, 0, sizeof *k);
  k->L = L;
  k->step = -1;
  if (!grow(dev->host, (void **)&exec->steps, &exec->cap_steps, exec->n_steps + 1,
            sizeof *exec->steps)) {
    k->status = cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
    return;
  }
  cl_int err = CL_SUCCESS;
  cl_kernel kern = clCreateKernel(dev->program, kernel, &err);
  if (!kern || err != CL_SUCCESS) {
    k->status = cl_fail(dev, VNRT_ERROR_DEVICE, "node '%s' (%s): clCreateKernel(%s): %d %s",
                        L->node->name, node_op_name(L->node), kernel, (int)err, cl_error_name(err));
    return;
  }
  k->step = exec->n_steps++;
  cl_step *st = &exec->steps[k->step];
  memset(st, 0, sizeof *st);
  st->kind = CL_STEP_KERNEL;
  st->node = L->node_index;
  st->kernel = kern;
  st->kernel_name = kernel;
}

static void set_arg(cl_launch *k, size_t size, const void *value) {
  if (k->status != VNRT_OK) return;
  cl_step *st = &k->L->exec->steps[k->step];
  cl_int err = clSetKernelArg(st->kernel, k->arg, size, value);
  if (err != CL_SUCCESS) {
    k->status =
        cl_fail(k->L->dev, VNRT_ERROR_INTERNAL, "node '%s': clSetKernelArg(%s, %u): %d %s",
                k->L->node->name, st->kernel_name, (unsigned)k->arg, (int)err, cl_error_name(err));
    return;
  }
  k->arg++;
}

static void arg_tensor(cl_launch *k, int32_t t, int with_dtype) {
  if (k->status != VNRT_OK) return;
  const vnrt_backend_tensor *bt = &k->L->graph->tensors[t];
  if (!bt->buffer) {
    k->status = cl_fail(k->L->dev, VNRT_ERROR_INTERNAL, "node '%s': tensor '%s' has no buffer",
                        k->L->node->name, bt->name);
    return;
  }
  uint64_t bytes = vnrt_tensor_type_bytes(&bt->type);
  if (bt->offset > bt->buffer->size || bytes > bt->buffer->size - bt->offset) {
    k->status = cl_fail(k->L->dev, VNRT_ERROR_INTERNAL,
                        "node '%s': tensor '%s' (%" PRIu64 " bytes at %" PRIu64
                        ") is past its buffer's %" PRIu64 " bytes",
                        k->L->node->name, bt->name, bytes, bt->offset, bt->buffer->size);
    return;
  }
  cl_mem mem = bt->buffer->mem;
  cl_ulong off = bt->offset;
  set_arg(k, sizeof mem, &mem);
  set_arg(k, sizeof off, &off);
  if (with_dtype) cl_arg_i32(k, (int32_t)bt->type.dtype);
}

void cl_arg_in(cl_launch *k, int32_t i) { arg_tensor(k, k->L->node->inputs[i], 0); }
void cl_arg_in_dt(cl_launch *k, int32_t i) { arg_tensor(k, k->L->node->inputs[i], 1); }
void cl_arg_out(cl_launch *k, int32_t i) { arg_tensor(k, k->L->node->outputs[i], 0); }
void cl_arg_out_dt(cl_launch *k, int32_t i) { arg_tensor(k, k->L->node->outputs[i], 1); }

void cl_arg_opt_in_dt(cl_launch *k, int32_t i) {
  if (i < k->L->node->n_inputs)
    arg_tensor(k, k->L->node->inputs[i], 1);
  else
    arg_tensor(k, k->L->node->outputs[0], 1);
}

void cl_arg_opt_in(cl_launch *k, int32_t i) {
  if (i < k->L->node->n_inputs)
    arg_tensor(k, k->L->node->inputs[i], 0);
  else
    arg_tensor(k, k->L->node->outputs[0], 0);
}

void cl_arg_i32(cl_launch *k, int32_t v) {
  cl_int x = v;
  set_arg(k, sizeof x, &x);
}

void cl_arg_i64(cl_launch *k, int64_t v) {
  cl_long x = v;
  set_arg(k, sizeof x, &x);
}

void cl_arg_f32(cl_launch *k, float v) {
  cl_float x = v;
  set_arg(k, sizeof x, &x);
}

void cl_arg_long4(cl_launch *k, const int64_t v[4]) {
  cl_long4 x;
  for (int i = 0; i < 4; ++i) x.s[i] = v[i];
  set_arg(k, sizeof x, &x);
}

void cl_arg_local(cl_launch *k, size_t bytes) {
  if (k->status != VNRT_OK) return;
  if (bytes > k->L->dev->desc->local_mem) {
    k->status =
        cl_fail(k->L->dev, VNRT_ERROR_UNSUPPORTED,
                "node '%s' (%s) needs %zu bytes of local memory; the device has %" PRIu64,
                k->L->node->name, node_op_name(k->L->node), bytes, k->L->dev->desc->local_mem);
    return;
  }
  set_arg(k, bytes ? bytes : 4, NULL);
}

static void arg_fixup(cl_launch *k, cl_fixup_kind kind, uint64_t offset) {
  if (k->status != VNRT_OK) return;
  vnrt_backend_exec *exec = k->L->exec;
  if (!grow(k->L->dev->host, (void **)&exec->fixups, &exec->cap_fixups, exec->n_fixups + 1,
            sizeof *exec->fixups)) {
    k->status = cl_fail(k->L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
    return;
  }
  exec->fixups[exec->n_fixups++] = (cl_fixup){k->step, k->arg, kind, offset};
  k->arg += 2; /* (buffer, offset), set once the buffer exists */
}

void cl_arg_scratch(cl_launch *k, uint64_t offset) { arg_fixup(k, CL_FIX_SCRATCH, offset); }
void cl_arg_const(cl_launch *k, uint64_t offset) { arg_fixup(k, CL_FIX_CONST, offset); }
void cl_arg_err(cl_launch *k, int32_t slot) { arg_fixup(k, CL_FIX_ERR, (uint64_t)slot); }

size_t cl_launch_wg(cl_launch *k, size_t want) {
  size_t limit = k->L->dev->desc->max_wi[0];
  if (k->L->dev->desc->max_wg < limit) limit = k->L->dev->desc->max_wg;
  if (k->status == VNRT_OK) {
    size_t kmax = 0;
    cl_step *st = &k->L->exec->steps[k->step];
    if (clGetKernelWorkGroupInfo(st->kernel, k->L->dev->desc->id, CL_KERNEL_WORK_GROUP_SIZE,
                                 sizeof kmax, &kmax, NULL) == CL_SUCCESS &&
        kmax > 0 && kmax < limit) {
      limit = kmax;
    }
  }
  if (want > limit) want = limit;
  size_t p = 1;
  while (p * 2 <= want) p *= 2;
  return p;
}

vnrt_status cl_launch_end(cl_launch *k, cl_uint dim, const size_t *items, const size_t *lws) {
  if (k->status != VNRT_OK) return k->status;
  vnrt_backend_exec *exec = k->L->exec;
  cl_step *st = &exec->steps[k->step];
  int empty = 0;
  for (cl_uint d = 0; d < dim; ++d) empty |= items[d] == 0;
  if (empty) {
    /* Nothing to do: drop the step and any fixups recorded for it. */
    while (exec->n_fixups > 0 && exec->fixups[exec->n_fixups - 1].step == k->step) {
      exec->n_fixups--;
    }
    clReleaseKernel(st->kernel);
    exec->n_steps--;
    return VNRT_OK;
  }
  st->dim = dim;
  st->has_lws = lws != NULL;
  for (cl_uint d = 0; d < dim; ++d) {
    st->lws[d] = lws ? lws[d] : 0;
    st->gws[d] = lws ? cl_round_up(items[d], lws[d]) : items[d];
  }
  return VNRT_OK;
}

/* ---- Scratch, constants, checks, GEMM steps -------------------------------------------- */

uint64_t cl_scratch(cl_lower *L, uint64_t bytes) {
  uint64_t off = L->scratch_used;
  L->scratch_used += (bytes + CL_ALIGN - 1) / CL_ALIGN * CL_ALIGN;
  return off;
}

uint64_t cl_const(cl_lower *L, const void *data, uint64_t bytes) {
  vnrt_backend_exec *exec = L->exec;
  const vnrt_backend_host *host = L->dev->host;
  uint64_t off = (exec->const_bytes + CL_ALIGN - 1) / CL_ALIGN * CL_ALIGN;
  uint64_t need = off + bytes;
  if (need > exec->const_cap) {
    uint64_t cap = exec->const_cap ? exec->const_cap : 4096;
    while (cap < need) cap *= 2;
    unsigned char *p = host->alloc(host->core, (size_t)cap);
    if (!p) return UINT64_MAX;
    memset(p, 0, (size_t)cap);
    if (exec->consts) {
      memcpy(p, exec->consts, (size_t)exec->const_bytes);
      host->free(host->core, exec->consts);
    }
    exec->consts = p;
    exec->const_cap = cap;
  }
  memcpy(exec->consts + off, data, (size_t)bytes);
  exec->const_bytes = need;
  return off;
}

int32_t cl_err_slot(cl_lower *L) { return L->exec->n_err_slots++; }

vnrt_status cl_add_check(cl_lower *L, int32_t slot, cl_check_report_fn report, const int64_t *info,
                         int n_info) {
  vnrt_backend_exec *exec = L->exec;
  if (!grow(L->dev->host, (void **)&exec->steps, &exec->cap_steps, exec->n_steps + 1,
            sizeof *exec->steps)) {
    return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  }
  cl_step *st = &exec->steps[exec->n_steps++];
  memset(st, 0, sizeof *st);
  st->kind = CL_STEP_CHECK;
  st->node = L->node_index;
  st->err_slot = slot;
  st->report = report;
  for (int i = 0; i < n_info && i < 6; ++i) st->info[i] = info[i];
  return VNRT_OK;
}

vnrt_status cl_add_deferred_check(cl_lower *L, int32_t slot, cl_check_report_fn report,
                                  const int64_t *info, int n_info) {
  vnrt_status s = cl_add_check(L, slot, report, info, n_info);
  if (s == VNRT_OK) L->exec->steps[L->exec->n_steps - 1].deferred = 1;
  return s;
}

vnrt_status cl_check_value(vnrt_backend_exec *exec, const cl_step *st, int32_t j, int32_t *out) {
  *out = 0;
  if (exec->err_host_valid) {
    *out = exec->err_host[st->err_slot + j];
    return VNRT_OK;
  }
  cl_int v = 0;
  cl_int err = clEnqueueReadBuffer(exec->dev->queue, exec->scratch, CL_TRUE,
                                   (size_t)(st->err_slot + j) * 4, 4, &v, 0, NULL, NULL);
  *out = v;
  if (err != CL_SUCCESS) {
    return cl_fail(exec->dev, VNRT_ERROR_DEVICE, "reading an index check's value: %d %s", (int)err,
                   cl_error_name(err));
  }
  return VNRT_OK;
}

vnrt_status cl_add_gemm(cl_lower *L, cl_gemm_call *call, uint64_t scratch_bytes, int c_in_scratch,
                        uint64_t c_off) {
  vnrt_backend_exec *exec = L->exec;
  if (!grow(L->dev->host, (void **)&exec->steps, &exec->cap_steps, exec->n_steps + 1,
            sizeof *exec->steps)) {
    L->dev->host->free(L->dev->host->core, call);
    return cl_fail(L->dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  }
  cl_step *st = &exec->steps[exec->n_steps++];
  memset(st, 0, sizeof *st);
  st->kind = CL_STEP_GEMM;
  st->node = L->node_index;
  st->gemm = call;
  st->gemm_scratch = scratch_bytes ? cl_scratch(L, scratch_bytes) : 0;
  st->gemm_c_scratch = c_in_scratch;
  st->gemm_c_off = c_off;
  return VNRT_OK;
}

vnrt_status cl_read_i32(vnrt_backend_exec *exec, int32_t t, int64_t i, int32_t *out) {
  const vnrt_backend_tensor *bt = &exec->graph.tensors[t];
  *out = 0;
  if (i < 0 || i >= vnrt_tensor_type_numel(&bt->type)) {
    return cl_fail(exec->dev, VNRT_ERROR_INTERNAL,
                   "an index check reported position %lld of '%s', which has %lld elements",
                   (long long)i, bt->name, (long long)vnrt_tensor_type_numel(&bt->type));
  }
  cl_int v = 0;
  cl_int err = clEnqueueReadBuffer(exec->dev->queue, bt->buffer->mem, CL_TRUE,
                                   (size_t)(bt->offset + (uint64_t)i * 4), 4, &v, 0, NULL, NULL);
  *out = v;
  if (err != CL_SUCCESS) {
    return cl_fail(exec->dev, VNRT_ERROR_DEVICE, "reading an index of '%s': %d %s", bt->name,
                   (int)err, cl_error_name(err));
  }
  return VNRT_OK;
}

/* ---- The backend slots ----------------------------------------------------------------- */

int cl_backend_supports_node(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                             int32_t node) {
  if (!dev || !graph || node < 0 || node >= graph->n_nodes) return 0;
  const vnrt_backend_node *nd = &graph->nodes[node];
  if (nd->n_inputs < 0 || nd->n_inputs > VNRT_MAX_NODE_INPUTS || nd->n_outputs < 1 ||
      nd->n_outputs > VNRT_MAX_NODE_OUTPUTS) {
    return 0;
  }
  for (int32_t i = 0; i < nd->n_inputs + nd->n_outputs; ++i) {
    int32_t t = i < nd->n_inputs ? nd->inputs[i] : nd->outputs[i - nd->n_inputs];
    if (t < 0 || t >= graph->n_tensors) return 0;
    const vnrt_tensor_type *ty = &graph->tensors[t].type;
    if (ty->rank < 0 || ty->rank > VNRT_MAX_DIMS || vnrt_dtype_bits(ty->dtype) == 0) return 0;
    /* Index math in the kernels is 64-bit, but work sizes and error positions are not meant
     * for tensors beyond 2^31 elements. */
    if (vnrt_tensor_type_numel(ty) > INT32_MAX) return 0;
  }
  return cl_ops_supports(dev, graph, nd);
}

void cl_backend_exec_destroy(vnrt_backend_exec *exec) {
  if (!exec) return;
  vnrt_backend_device *dev = exec->dev;
  const vnrt_backend_host *host = dev->host;
  clFinish(dev->queue);
  for (int32_t i = 0; i < exec->n_steps; ++i) {
    cl_step *st = &exec->steps[i];
    if (st->kernel) clReleaseKernel(st->kernel);
    if (st->gemm) {
      cl_gemm_release(st->gemm);
      host->free(host->core, st->gemm);
    }
  }
  if (exec->scratch) cl_mem_put(dev, exec->scratch, exec->scratch_capacity);
  if (exec->const_mem) cl_mem_put(dev, exec->const_mem, exec->const_capacity);
  if (exec->steps) host->free(host->core, exec->steps);
  if (exec->node_first) host->free(host->core, exec->node_first);
  if (exec->fixups) host->free(host->core, exec->fixups);
  if (exec->consts) host->free(host->core, exec->consts);
  if (exec->events) host->free(host->core, exec->events);
  if (exec->err_host) host->free(host->core, exec->err_host);
  host->free(host->core, exec);
}

/* Creates the scratch and constant buffers and binds every argument that waited for them. */
static vnrt_status finalize(vnrt_backend_exec *exec) {
  vnrt_backend_device *dev = exec->dev;
  exec->scratch_err_bytes = ((uint64_t)exec->n_err_slots * 4 + CL_ALIGN - 1) / CL_ALIGN * CL_ALIGN;
  if (exec->n_err_slots > 0) {
    exec->err_host = dev->host->alloc(dev->host->core, sizeof(int32_t) * (size_t)exec->n_err_slots);
    if (!exec->err_host) return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory");
  }
  uint64_t scratch = exec->scratch_err_bytes + exec->scratch_node_bytes;
  if (scratch > 0) {
    vnrt_status s = cl_mem_get(dev, scratch, "the plan's scratch buffer", &exec->scratch,
                               &exec->scratch_capacity);
    if (s != VNRT_OK) return s;
  }
  if (exec->const_bytes > 0) {
    vnrt_status s = cl_mem_get(dev, exec->const_bytes, "the plan's constant tables",
                               &exec->const_mem, &exec->const_capacity);
    if (s != VNRT_OK) return s;
    cl_int err = clEnqueueWriteBuffer(dev->queue, exec->const_mem, CL_TRUE, 0,
                                      (size_t)exec->const_bytes, exec->consts, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
      return cl_fail(dev, VNRT_ERROR_DEVICE, "uploading constant tables: %d %s", (int)err,
                     cl_error_name(err));
    }
  }
  for (int32_t i = 0; i < exec->n_fixups; ++i) {
    const cl_fixup *f = &exec->fixups[i];
    cl_mem mem = f->kind == CL_FIX_CONST ? exec->const_mem : exec->scratch;
    /* Check kernels index the error slots themselves: they get the slots' base. */
    cl_ulong off = f->kind == CL_FIX_SCRATCH ? exec->scratch_err_bytes + f->offset
                   : f->kind == CL_FIX_ERR   ? 0
                                             : f->offset;
    cl_kernel kern = exec->steps[f->step].kernel;
    cl_int err = clSetKernelArg(kern, f->arg, sizeof mem, &mem);
    if (err == CL_SUCCESS) err = clSetKernelArg(kern, f->arg + 1, sizeof off, &off);
    if (err != CL_SUCCESS) {
      return cl_fail(dev, VNRT_ERROR_INTERNAL, "binding scratch of %s: %d %s",
                     exec->steps[f->step].kernel_name, (int)err, cl_error_name(err));
    }
  }
  for (int32_t i = 0; i < exec->n_steps; ++i) {
    cl_step *st = &exec->steps[i];
    if (st->kind != CL_STEP_GEMM) continue;
    st->gemm->scratch = exec->scratch;
    st->gemm->scratch_off = exec->scratch_err_bytes + st->gemm_scratch;
    if (st->gemm_c_scratch) {
      st->gemm->c = exec->scratch;
      st->gemm->c_off = exec->scratch_err_bytes + st->gemm_c_off;
    }
    vnrt_status s = cl_gemm_prepare(dev, st->gemm);
    if (s != VNRT_OK) return s;
  }
  return VNRT_OK;
}

vnrt_status cl_backend_compile(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                               vnrt_backend_exec **out_exec) {
  *out_exec = NULL;
  const vnrt_backend_host *host = dev->host;
  vnrt_backend_exec *exec = host->alloc(host->core, sizeof *exec);
  if (!exec) return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  memset(exec, 0, sizeof *exec);
  exec->dev = dev;
  exec->graph = *graph;
  exec->node_first = host->alloc(host->core, sizeof(int32_t) * ((size_t)graph->n_nodes + 1));
  if (!exec->node_first) {
    cl_backend_exec_destroy(exec);
    return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory compiling");
  }
  for (int32_t i = 0; i < graph->n_nodes; ++i) {
    const vnrt_backend_node *node = &graph->nodes[i];
    exec->node_first[i] = exec->n_steps;
    if (!cl_backend_supports_node(dev, graph, i)) {
      cl_backend_exec_destroy(exec);
      return cl_fail(dev, VNRT_ERROR_UNSUPPORTED, "cannot run node '%s' (%s) as typed", node->name,
                     node_op_name(node));
    }
    cl_lower L = {exec, dev, &exec->graph, node, i, 0};
    vnrt_status s = cl_ops_lower(&L);
    if (s != VNRT_OK) {
      cl_backend_exec_destroy(exec);
      return s;
    }
    if (L.scratch_used > exec->scratch_node_bytes) exec->scratch_node_bytes = L.scratch_used;
  }
  exec->node_first[graph->n_nodes] = exec->n_steps;
  vnrt_status s = finalize(exec);
  if (s != VNRT_OK) {
    cl_backend_exec_destroy(exec);
    return s;
  }
  *out_exec = exec;
  return VNRT_OK;
}

/* After a synchronous run that skipped deferred checks in steps [lo, hi) (the queue
 * finished): reads every error slot at once and reports the first failed check in step order. */
static vnrt_status report_deferred(vnrt_backend_exec *exec, int32_t lo, int32_t hi) {
  cl_int err = clEnqueueReadBuffer(exec->dev->queue, exec->scratch, CL_TRUE, 0,
                                   (size_t)exec->n_err_slots * 4, exec->err_host, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    return cl_fail(exec->dev, VNRT_ERROR_DEVICE, "reading the index checks: %d %s", (int)err,
                   cl_error_name(err));
  }
  exec->err_host_valid = 1;
  vnrt_status s = VNRT_OK;
  for (int32_t i = lo; i < hi; ++i) {
    const cl_step *st = &exec->steps[i];
    if (st->kind == CL_STEP_CHECK && st->deferred && exec->err_host[st->err_slot] >= 0) {
      s = st->report(exec, st, exec->err_host[st->err_slot]);
      break;
    }
  }
  exec->err_host_valid = 0;
  return s;
}

/* Enqueues nodes [first, first + count) on the compute queue, after sync's wait (async runs)
 * and the copy queue's last synchronous write. Timed runs pass ev, two zeroed events per step
 * from the first node's: a kernel's own in the second; a GEMM's as cl_gemm_enqueue returns. */
static vnrt_status enqueue_run(vnrt_backend_exec *exec, int32_t first, int32_t count,
                               const vnrt_backend_sync *sync, cl_event *ev, int defer,
                               int *out_deferred) {
  *out_deferred = 0;
  exec->err_host_valid = 0;
  vnrt_backend_device *dev = exec->dev;
  if (first < 0 || count < 0 || first > exec->graph.n_nodes ||
      count > exec->graph.n_nodes - first) {
    return cl_fail(dev, VNRT_ERROR_INTERNAL, "run: nodes [%d, %d) outside the compiled %d nodes",
                   (int)first, (int)(first + count), (int)exec->graph.n_nodes);
  }
  if (sync) {
    vnrt_status s = cl_async_run_begin(dev, sync);
    if (s != VNRT_OK) return s;
  }
  /* Writes on the copy queue (inputs, streamed weights, Engram rows) finished before this
   * call; the barrier makes them visible to this run's kernels (one queue to another). */
  cl_event copied = cl_take_copy_event(dev);
  if (copied) {
    cl_int err = clEnqueueBarrierWithWaitList(dev->queue, 1, &copied, NULL);
    clReleaseEvent(copied);
    if (err != CL_SUCCESS) {
      return cl_fail(dev, VNRT_ERROR_DEVICE, "running nodes [%d, %d): waiting for copies: %d %s",
                     (int)first, (int)(first + count), (int)err, cl_error_name(err));
    }
  }
  const int32_t lo = exec->node_first[first];
  for (int32_t i = lo; i < exec->node_first[first + count]; ++i) {
    const cl_step *st = &exec->steps[i];
    const vnrt_backend_node *node = &exec->graph.nodes[st->node];
    cl_event *step_ev = ev ? ev + 2 * (i - lo) : NULL;
    cl_int err = CL_SUCCESS;
    switch (st->kind) {
      case CL_STEP_KERNEL:
        err = clEnqueueNDRangeKernel(dev->queue, st->kernel, st->dim, NULL, st->gws,
                                     st->has_lws ? st->lws : NULL, 0, NULL,
                                     step_ev ? step_ev + 1 : NULL);
        if (err != CL_SUCCESS) {
          return cl_fail(dev, VNRT_ERROR_DEVICE, "node '%s' (%s): enqueueing %s: %d %s", node->name,
                         node_op_name(node), st->kernel_name, (int)err, cl_error_name(err));
        }
        break;
      case CL_STEP_CHECK: {
        if (st->deferred && defer) {
          *out_deferred = 1;
          break;
        }
        cl_int pos = -1;
        err = clEnqueueReadBuffer(dev->queue, exec->scratch, CL_TRUE, (size_t)st->err_slot * 4, 4,
                                  &pos, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
          return cl_fail(dev, VNRT_ERROR_DEVICE, "node '%s' (%s): reading the index check: %d %s",
                         node->name, node_op_name(node), (int)err, cl_error_name(err));
        }
        if (pos >= 0) {
          /* A deferred check before this one may have failed first (the queue is idle now:
           * the read above waited for it). */
          if (*out_deferred) {
            *out_deferred = 0;
            vnrt_status s = report_deferred(exec, lo, i);
            if (s != VNRT_OK) return s;
          }
          return st->report(exec, st, pos);
        }
        break;
      }
      case CL_STEP_GEMM: {
        vnrt_status s = cl_gemm_enqueue(dev, st->gemm, step_ev, step_ev ? step_ev + 1 : NULL);
        if (s != VNRT_OK) return s;
        break;
      }
    }
  }
  return VNRT_OK;
}

vnrt_status cl_backend_run(vnrt_backend_exec *exec, int32_t first, int32_t count) {
  vnrt_backend_device *dev = exec->dev;
  int deferred = 0;
  vnrt_status s = enqueue_run(exec, first, count, NULL, NULL, 1, &deferred);
  cl_int err = clFinish(dev->queue);
  if (s != VNRT_OK) return s;
  if (err != CL_SUCCESS) {
    return cl_fail(dev, VNRT_ERROR_DEVICE, "running nodes [%d, %d): clFinish: %d %s", (int)first,
                   (int)(first + count), (int)err, cl_error_name(err));
  }
  return deferred ? report_deferred(exec, exec->node_first[first], exec->node_first[first + count])
                  : VNRT_OK;
}

/* Like run without the clFinish: a marker after the kernels signals. A node with an index check
 * reads its result back in order, so such a run blocks until the device reaches it. */
vnrt_status cl_backend_run_async(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                 const vnrt_backend_sync *sync) {
  static const vnrt_backend_sync none = {0};
  int deferred = 0; /* every check waits here: the run's end is not observed by this backend */
  vnrt_status s = enqueue_run(exec, first, count, sync ? sync : &none, NULL, 0, &deferred);
  if (s != VNRT_OK) return s;
  return cl_async_run_end(exec->dev, sync);
}

/* A step's device time from its events (enqueue_run): END - START of one kernel, or the span
 * between two markers. 0 when it has none (an index check). */
static cl_int step_ns(const cl_event ev[2], uint64_t *out_ns) {
  *out_ns = 0;
  if (!ev[1]) return CL_SUCCESS;
  cl_ulong t0 = 0, t1 = 0;
  cl_int err =
      ev[0] ? clGetEventProfilingInfo(ev[0], CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL)
            : clGetEventProfilingInfo(ev[1], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
  if (err == CL_SUCCESS) {
    err = clGetEventProfilingInfo(ev[1], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
  }
  if (err == CL_SUCCESS && t1 > t0) *out_ns = (uint64_t)(t1 - t0);
  return err;
}

/* Like run, with a profiling event per kernel (the queue has CL_QUEUE_PROFILING_ENABLE); a
 * node's time is the sum of its kernels' (END - START). Ordinary runs request no events. */
vnrt_status cl_backend_run_timed(vnrt_backend_exec *exec, int32_t first, int32_t count,
                                 uint64_t *out_ns) {
  vnrt_backend_device *dev = exec->dev;
  const vnrt_backend_host *host = dev->host;
  if (!dev->profiling) {
    return cl_fail(dev, VNRT_ERROR_UNSUPPORTED,
                   "opencl: the compute queue has no profiling (CL_QUEUE_PROFILING_ENABLE was "
                   "refused)");
  }
  if (first < 0 || count < 0 || first > exec->graph.n_nodes ||
      count > exec->graph.n_nodes - first) {
    return cl_fail(dev, VNRT_ERROR_INTERNAL, "run: nodes [%d, %d) outside the compiled %d nodes",
                   (int)first, (int)(first + count), (int)exec->graph.n_nodes);
  }
  for (int32_t i = 0; i < count; ++i) out_ns[i] = 0;
  const int32_t lo = exec->node_first[first], n = exec->node_first[first + count] - lo;
  if (n > 0 && !exec->events) {
    exec->events = host->alloc(host->core, sizeof *exec->events * 2 * (size_t)exec->n_steps);
    if (!exec->events) return cl_fail(dev, VNRT_ERROR_OUT_OF_MEMORY, "out of host memory");
  }
  if (n > 0) memset(exec->events, 0, sizeof *exec->events * 2 * (size_t)n);
  int deferred = 0;
  vnrt_status s = enqueue_run(exec, first, count, NULL, n > 0 ? exec->events : NULL, 1, &deferred);
  cl_int err = clFinish(dev->queue);
  if (s == VNRT_OK && err != CL_SUCCESS) {
    s = cl_fail(dev, VNRT_ERROR_DEVICE, "running nodes [%d, %d): clFinish: %d %s", (int)first,
                (int)(first + count), (int)err, cl_error_name(err));
  }
  if (s == VNRT_OK && deferred) {
    s = report_deferred(exec, exec->node_first[first], exec->node_first[first + count]);
  }
  for (int32_t i = 0; i < n; ++i) {
    cl_event *ev = exec->events + 2 * i;
    uint64_t ns = 0;
    if (s == VNRT_OK) {
      err = step_ns(ev, &ns);
      if (err != CL_SUCCESS) {
        s = cl_fail(dev, VNRT_ERROR_DEVICE, "reading a kernel's profiling times: %d %s", (int)err,
                    cl_error_name(err));
      }
      out_ns[exec->steps[lo + i].node - first] += ns;
    }
    if (ev[0]) clReleaseEvent(ev[0]);
    if (ev[1]) clReleaseEvent(ev[1]);
  }
  return s;
}
