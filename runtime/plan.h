/* Private to the runtime: a compiled plan — per-device tensors, partitions and transfers —
 * shared by compilation (plan.c with plan_place.c, plan_memory.c, plan_share.c,
 * plan_experts.c, plan_engram.c) and execution (plan_run.c). */
#ifndef VNRT_RUNTIME_PLAN_H_
#define VNRT_RUNTIME_PLAN_H_

#include "budget.h"
#include "graph.h"
#include "layout.h"
#include "passes.h"
#include "registry.h"

#define VN_PLAN_MAX_DEVICES 2 /* the target, and the CPU for fallback */
#define VN_TENSOR_ALIGN 256
/* Lowers every device's largest buffer for the planner (testing and porting aid; never raises). */
#define VN_MAX_BUFFER_ENV "VNRT_DEVICE_MAX_BUFFER"

typedef struct vn_plan_device {
  vnrt_device *device;
  const vnrt_backend_i *iface;
  vnrt_backend_device *bdev;
  vnrt_backend_tensor *tensors;
  int32_t n_tensors;
  vnrt_backend_node *nodes;
  int32_t n_nodes;
  /* Device memory (plan_memory.c): buffers of at most max_buffer bytes each (a device's largest
   * buffer is limited, often far below its memory), laid out by memory/layout.h: the io
   * buffers first, then the arena's. A tensor larger than the device's own limit gets a buffer
   * of its own, which the backend may refuse (naming its limit) or accept (when no kernel binds
   * it here). */
  vn_slot *slots;   /* per tensor: its buffer (an index into bufs) and offset */
  vn_layout layout; /* the buffers' sizes, io and arena */
  vnrt_backend_buffer **bufs;
  uint64_t max_buffer;      /* the planner's limit per buffer; 0: none */
  bool max_buffer_lowered;  /* by VNRT_DEVICE_MAX_BUFFER, below the device's own */
  vnrt_backend_graph graph; /* what compile got: valid until exec_destroy, as backend.h says */
  vnrt_backend_exec *exec;
} vn_plan_device;

/* Everything a plan keeps per value of its graph: p->vals[v] for value id v. */
typedef struct vn_plan_value {
  int32_t local[VN_PLAN_MAX_DEVICES]; /* its tensor index on each device slot, or -1 */
  int32_t home;                       /* the device slot holding the real copy */
  int32_t alias;        /* the state whose storage this node result writes in place, or -1 */
  bool streamed;        /* a param streamed from host memory (plan_memory.c) */
  bool no_storage;      /* needs no device storage (a table an Engram store serves) */
  bool exportable;      /* a param another plan may share (plan_share.c) */
  const void *host_src; /* a streamed param's bytes in host memory */
  void *host_owned;     /* the plan's own copy of them, if it made one */
  void *shadow;         /* host copy of an input the prefetch plans read */
  uint64_t seen_gen;    /* the binding generation the shadow holds */
  /* A param shared with another plan (vnrt_plan_create_shared) has no io slot of its own: its
   * target tensor is buf at off, memory of the store p->stores[store] where it is value
   * `value`. store -1: not shared. */
  struct {
    int32_t store, value;
    vnrt_backend_buffer *buf;
    uint64_t off;
  } share;
} vn_plan_value;

/* What the run loop keeps per step (position in the plan's order), plus one past the end. */
typedef struct vn_plan_step {
  uint64_t need;   /* copy timeline value to wait for before it (0: none) */
  int32_t job;     /* the last copy job it needs, or -1 */
  int32_t dev_job; /* with the async slots: the last streamed job it needs, or -1 */
  bool signal;     /* the copy stream may be waiting for this step to start */
} vn_plan_step;

/* A value produced on one device and read on another: copied before a partition runs. */
typedef struct vn_transfer {
  int32_t value, src, dst;
} vn_transfer;

/* A run of consecutive nodes on one device, with the transfers it needs first. */
typedef struct vn_partition {
  int32_t dev, first, count; /* first: index into the device's node list */
  int32_t first_transfer, n_transfers;
  int32_t step; /* position of its first node in the plan's order */
} vn_partition;

/* A param kept in host memory and streamed to the target before the nodes that read it. Its
 * device copy lives in the arena from step `start` (once step start-1 is done the copy may
 * begin) to its last use; the compute stream waits for it before step `first`. */
typedef struct vn_streamed {
  int32_t value;
  int32_t first, start, last;
  /* Expert weights of a hash-routed moe_ffn (experts = tid2eid[ids], both bound by the user):
   * only the experts a run uses are streamed. -1 when not such a param. */
  int32_t hash_ids, hash_table;
  int64_t experts; /* E: the param is [E, ...], one slice per expert */
  uint8_t *used;   /* per expert, this run */
} vn_streamed;

typedef struct vn_engram_use vn_engram_use; /* plan_engram.c */
typedef struct vn_inspect vn_inspect;       /* plan_inspect.h */

/* A plan's io buffers on its target (inputs, params and states) with their bound flags,
 * refcounted: a plan that shares params with this one (vnrt_plan_create_shared) holds a
 * reference, so either may be destroyed first. Plans sharing params are used from one thread
 * at a time, as their context is. */
typedef struct vn_io_store {
  int32_t refs;
  vnrt_context *ctx;
  const vnrt_backend_i *iface;
  vnrt_backend_device *bdev; /* the context's device: lives as long as the context */
  vnrt_device *device;       /* the same, for the device calls (fault.h) */
  vnrt_backend_buffer **bufs;
  int32_t n_bufs;
  bool *bound;   /* per value of the owning plan's graph: bound, through any plan */
  uint64_t *gen; /* per value: bumped by every binding, so host shadows know to refresh */
} vn_io_store;

vn_io_store *vn_io_store_new(vnrt_context *ctx, int32_t n_values);
void vn_io_store_release(vn_io_store *s);

struct vnrt_plan {
  vnrt_context *ctx;
  vnrt_graph *graph; /* the plan's own copy: names and attributes live here */
  int32_t *order;
  int32_t n_order;
  int32_t *node_dev; /* per graph node: device slot, -1 if dead (plan_place.c) */
  vn_plan_device devs[VN_PLAN_MAX_DEVICES];
  int32_t n_devs;
  vn_plan_value *vals; /* per value */
  vn_plan_step *steps; /* per step, n_order + 1 */
  vn_partition *parts;
  int32_t n_parts;
  vn_transfer *transfers;
  int32_t n_transfers;
  void *staging;
  uint64_t staging_bytes;
  bool ran;
  vnrt_plan_info info;

  /* The target's memory budget and streamed params (plan_memory.c, plan_run.c). */
  vn_budget budget;        /* its device tier limits the target; streamed params count as host */
  uint64_t max_buffer_env; /* VNRT_DEVICE_MAX_BUFFER, 0 when unset */
  int32_t prefetch_depth;
  vn_streamed *stream; /* streamed params by first use */
  int32_t n_stream;

  /* Params shared with other plans (plan_share.c). */
  vn_io_store *io;      /* this plan's own io buffers and bound flags */
  vn_io_store **stores; /* the stores this plan's shared params live in (referenced) */
  int32_t n_stores;
  const vnrt_plan *share_src; /* during creation only: the plan to share with, or NULL */
  int32_t n_shared;
  uint64_t shared_bytes;

  /* Engram stores (plan_engram.c). */
  vn_engram_use *engram;
  int32_t n_engram;

  /* DualPath (plan_run.c). */
  struct vn_copy_stream *copy;
  bool serial;              /* copies run inline before their consumers */
  struct vn_copy_job *jobs; /* this run's copies, in queue order */
  int32_t n_jobs, cap_jobs;
  int32_t inline_done;   /* serial mode: jobs already run */
  uint64_t compute_base; /* compute timeline value at the start of the current run */
  vnrt_run_stats stats;

  /* Bring-up (plan_inspect.h): per-node times and shadow comparison; NULL when both are off,
   * else the run loop submits one node at a time, or runs of nodes the device times. */
  vn_inspect *inspect;

  /* DualPath on the target backend's async slots (plan_async.c): streamed params go to the
   * device's copy stream, runs are queued without waiting. */
  int8_t async_mode; /* 0: not decided yet, 1: the device provides them, -1: it does not */
  bool async_off;    /* testing: keep the host thread (vn_plan_set_async) */
  bool async_run;    /* the current run uses them */
  struct vnrt_backend_timeline *tl_copy, *tl_compute;
  uint64_t copy_value, compute_value; /* the last values queued on each */
  uint64_t *job_value;                /* per job of this run: its copy timeline value */
  int32_t cap_job_value;
  int32_t async_next; /* the next streamed job to queue */
  /* Moves between plans (vnrt_plan_stage_input / _output, plan_move.c). */
  uint64_t staged_in; /* copy timeline value of the last staged input write; 0: none pending */
  struct vn_staged_read {
    int32_t value;
    void *dst;
    uint64_t bytes;
  } * reads; /* outputs the next run copies back on the copy stream */
  int32_t n_reads, cap_reads;
  uint64_t mv_bytes, mv_ns; /* added by the move jobs (on the copy thread) since the last run */
  uint64_t mv_wait_ns;      /* this run's waits for them on the caller's thread */
};

/* The bound flag and binding generation of value v, wherever its storage lives. */
static inline bool *vn_plan_bound(vnrt_plan *p, int32_t v) {
  const vn_plan_value *pv = &p->vals[v];
  return pv->share.store >= 0 ? &p->stores[pv->share.store]->bound[pv->share.value]
                              : &p->io->bound[v];
}
static inline uint64_t *vn_plan_gen(vnrt_plan *p, int32_t v) {
  const vn_plan_value *pv = &p->vals[v];
  return pv->share.store >= 0 ? &p->stores[pv->share.store]->gen[pv->share.value] : &p->io->gen[v];
}

/* Placement (plan_place.c): the backend node of graph node `node`, with value ids as tensor
 * indices; which device runs each live node (p->node_dev), the target if it can, else the CPU. */
void vn_plan_fill_node(const vnrt_graph *g, int32_t node, vnrt_backend_node *out);
vnrt_status vn_plan_place(vnrt_plan *p, const vnrt_plan_desc *desc);

/* Memory (plan_memory.c): lays out every device of p, streaming params while the target is over
 * its budget, and records the result in the budget and p->info; then allocates the buffers of
 * device slot d and points every tensor at its own. */
vnrt_status vn_plan_choose_streamed(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]);
vnrt_status vn_plan_alloc_buffers(vnrt_plan *p, int32_t d);

/* Shared params (plan_share.c): before layout, points p's params at p->share_src's memory
 * where it may share them; once p is built, marks which of its params another plan may share. */
void vn_plan_choose_shared(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]);
void vn_plan_mark_exportable(vnrt_plan *p);

/* Hash-routed experts (plan_experts.c): whether streamed param sp is a hash-routed moe_ffn's
 * expert weights (then sets sp's hash fields and the shadows it reads); at run start, marks
 * the experts this run uses and returns the bytes to stream (*selective: only those). */
vnrt_status vn_plan_find_hash_routed(vnrt_plan *p, vn_streamed *sp);
uint64_t vn_plan_mark_experts(vnrt_plan *p, vn_streamed *sp, bool *selective);

/* Engram stores (plan_engram.c): rewrites store-served engram_lookup nodes of the plan's graph
 * copy to read a device row cache (before ordering); sets up their prefetch plans once the
 * plan's memory exists; at run start computes their rows and queues the fetches. */
struct vn_copy_job;
vnrt_status vn_plan_engram_rewrite(vnrt_plan *p, const vnrt_plan_desc *desc);
void vn_plan_engram_mark(vnrt_plan *p);
vnrt_status vn_plan_engram_prepare(vnrt_plan *p);
/* Appends one copy job per lookup to jobs (room for p->n_engram more) and records, in the
 * lookup's step, the index of the job it waits for. */
vnrt_status vn_plan_engram_prefetch(vnrt_plan *p, struct vn_copy_job *jobs, int32_t *n_jobs);
/* After the run's copies are done: adds the lookups' rows, hits and bytes to p->stats (their
 * jobs counted them on the copy thread). */
void vn_plan_engram_collect(vnrt_plan *p);
void vn_plan_engram_destroy(vnrt_plan *p);

/* DualPath on the backend's async slots (plan_async.c). Whether this run uses them (only a
 * plan that streams params and runs on its target alone, when the backend provides all the
 * slots and the device takes a timeline); queues the streamed jobs that may start before step
 * s and runs nodes [first, first + e - s) of device 0 without waiting; waits for everything
 * queued (report: return the first error; else only wait, after a failure); frees the
 * timelines. */
bool vn_plan_async_use(vnrt_plan *p);
vnrt_status vn_plan_async_run(vnrt_plan *p, int32_t first, int32_t s, int32_t e);
vnrt_status vn_plan_async_wait(vnrt_plan *p, bool report);
void vn_plan_async_destroy(vnrt_plan *p);
/* Testing: whether plans may use the async slots (default true): false forces the host
 * thread, so tests run both paths on one device. */
void vn_plan_set_async(vnrt_plan *p, bool on);

/* Moves (plan_move.c): waits for the staged input writes (before a synchronous write or a
 * run; the wait counts in mv_wait_ns); queues this run's staged output reads on the copy stream,
 * each after the step computing its value (serial plans: none, vn_plan_moves_finish reads
 * them); after the run's copies are drained, reads what was left and moves the figures into
 * p->stats. */
vnrt_status vn_plan_moves_wait(vnrt_plan *p);
vnrt_status vn_plan_moves_queue(vnrt_plan *p);
vnrt_status vn_plan_moves_finish(vnrt_plan *p, vnrt_status run_status);
/* Testing: makes every copy job of p sleep delay_ns first (a slow copy path). */
vnrt_status vn_plan_set_copy_delay(vnrt_plan *p, uint64_t delay_ns);

#endif /* VNRT_RUNTIME_PLAN_H_ */
