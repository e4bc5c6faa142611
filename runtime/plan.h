/* Private to the runtime: a compiled plan — per-device tensors, partitions and transfers —
 * shared by compilation (plan.c) and execution (plan_run.c). */
#ifndef VNRT_RUNTIME_PLAN_H_
#define VNRT_RUNTIME_PLAN_H_

#include "graph.h"
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
  /* Device memory: buffers of at most max_buffer bytes each (a device's largest buffer is
   * limited, often far below its memory). The io buffers come first: inputs, params and states,
   * one slot each, packed in value order. Then the arena's: intermediates (and streamed params'
   * device copies) packed by liveness, in several buffers when one would exceed max_buffer; no
   * tensor straddles two. A tensor larger than the device's own limit gets a buffer of its own,
   * which the backend may refuse (naming its limit) or accept (when no kernel binds it here). */
  vnrt_backend_buffer **bufs;
  uint64_t *buf_bytes;
  int32_t n_bufs, n_io_bufs;
  int32_t *buf_of;                /* per tensor: its buffer, an index into bufs */
  uint64_t arena_bytes, io_bytes; /* summed over the arena's and the io buffers */
  uint64_t max_buffer;            /* the planner's limit per buffer; 0: none */
  bool max_buffer_lowered;        /* by VNRT_DEVICE_MAX_BUFFER, below the device's own */
  vnrt_backend_graph graph; /* what compile got: valid until exec_destroy, as backend.h says */
  vnrt_backend_exec *exec;
} vn_plan_device;

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
  int64_t experts;      /* E: the param is [E, ...], one slice per expert */
  uint8_t *used;        /* per expert, this run */
} vn_streamed;

typedef struct vn_engram_use vn_engram_use; /* plan_engram.c */

/* A plan's io buffers on its target (inputs, params and states) with their bound flags,
 * refcounted: a plan that shares params with this one (vnrt_plan_create_shared) holds a
 * reference, so either may be destroyed first. Plans sharing params are used from one thread
 * at a time, as their context is. */
typedef struct vn_io_store {
  int32_t refs;
  vnrt_context *ctx;
  const vnrt_backend_i *iface;
  vnrt_backend_device *bdev; /* the context's device: lives as long as the context */
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
  int32_t *node_dev; /* per graph node: device slot, -1 if dead */
  vn_plan_device devs[VN_PLAN_MAX_DEVICES];
  int32_t n_devs;
  int32_t (*local)[VN_PLAN_MAX_DEVICES]; /* per value: tensor index on each device, or -1 */
  int32_t *home;                          /* per value: device slot holding the real copy */
  int32_t *alias;  /* per value: the state whose storage a node result writes in place, or -1 */
  bool *bound; /* per value: an input or param that was set (io->bound; see vn_plan_bound) */
  vn_partition *parts;
  int32_t n_parts;
  vn_transfer *transfers;
  int32_t n_transfers;
  void *staging;
  uint64_t staging_bytes;
  bool ran;
  vnrt_plan_info info;

  /* Budget and streamed params (plan.c, plan_run.c). */
  uint64_t device_limit;
  uint64_t max_buffer_env; /* VNRT_DEVICE_MAX_BUFFER, 0 when unset */
  int32_t prefetch_depth;
  bool *streamed;        /* per value: a param streamed from host memory */
  bool *no_storage;      /* per value: needs no device storage (a table an Engram store serves) */
  const void **host_src; /* per value: a streamed param's bytes in host memory */
  void **host_owned;     /* per value: the plan's own copy of them, if it made one */
  void **shadow;         /* per value: host copy of an input the prefetch plans read */
  vn_streamed *stream;   /* streamed params by first use */
  int32_t n_stream;

  /* Params shared with other plans (vnrt_plan_create_shared). A shared value has no io slot of
   * its own: its target tensor is share_buf[v] at share_off[v], memory of the store
   * stores[share_store[v]] where it is value share_value[v]. */
  vn_io_store *io;              /* this plan's own io buffers and bound flags */
  vn_io_store **stores;         /* the stores this plan's shared params live in (referenced) */
  int32_t n_stores;
  int32_t *share_store, *share_value; /* per value; share_store -1: not shared */
  vnrt_backend_buffer **share_buf;
  uint64_t *share_off;
  uint64_t *seen_gen;   /* per value: the binding generation its host shadow holds */
  bool *exportable;     /* per value: a param another plan may share (see plan.c) */
  const vnrt_plan *share_src; /* during creation only: the plan to share with, or NULL */
  int32_t n_shared;
  uint64_t shared_bytes;

  /* Engram stores (plan_engram.c). */
  vn_engram_use *engram;
  int32_t n_engram;

  /* DualPath (plan_run.c). */
  struct vn_copy_stream *copy;
  bool serial;                 /* copies run inline before their consumers */
  struct vn_copy_job *jobs;    /* this run's copies, in queue order */
  int32_t n_jobs, cap_jobs;
  int32_t *job_for_step;       /* per step: the last job index it needs, or -1 */
  int32_t inline_done;         /* serial mode: jobs already run */
  uint64_t compute_base; /* compute timeline value at the start of the current run */
  uint64_t *need;        /* per step: copy timeline value to wait for before it */
  bool *signal_at;       /* per step: the copy stream may be waiting for this step to start */
  vnrt_run_stats stats;
};

/* The bound flag and binding generation of value v, wherever its storage lives. */
static inline bool *vn_plan_bound(vnrt_plan *p, int32_t v) {
  return p->share_store[v] >= 0 ? &p->stores[p->share_store[v]]->bound[p->share_value[v]]
                                : &p->bound[v];
}
static inline uint64_t *vn_plan_gen(vnrt_plan *p, int32_t v) {
  return p->share_store[v] >= 0 ? &p->stores[p->share_store[v]]->gen[p->share_value[v]]
                                : &p->io->gen[v];
}

/* Compilation helpers used by running too. */
uint64_t vn_align_up(uint64_t x, uint64_t a);

/* Engram stores (plan_engram.c): rewrites store-served engram_lookup nodes of the plan's graph
 * copy to read a device row cache (before ordering); sets up their prefetch plans once the
 * plan's memory exists; at run start computes their rows and queues the fetches. */
struct vn_copy_job;
vnrt_status vn_plan_engram_rewrite(vnrt_plan *p, const vnrt_plan_desc *desc);
void vn_plan_engram_mark(vnrt_plan *p);
vnrt_status vn_plan_engram_prepare(vnrt_plan *p);
/* Appends one copy job per lookup to jobs (room for p->n_engram more) and records, for the
 * lookup's step, the index of the job it waits for. */
vnrt_status vn_plan_engram_prefetch(vnrt_plan *p, struct vn_copy_job *jobs, int32_t *n_jobs,
                                    int32_t *job_for_step);
/* After the run's copies are done: adds the lookups' rows, hits and bytes to p->stats (their
 * jobs counted them on the copy thread). */
void vn_plan_engram_collect(vnrt_plan *p);
void vn_plan_engram_destroy(vnrt_plan *p);

/* Testing: makes every copy job of p sleep delay_ns first (a slow copy path). */
vnrt_status vn_plan_set_copy_delay(vnrt_plan *p, uint64_t delay_ns);

/* Lays out every device of p, streaming params while the target is over its budget. */
vnrt_status vn_plan_choose_streamed(vnrt_plan *p, vn_live_range (*range)[VN_PLAN_MAX_DEVICES]);

#endif /* VNRT_RUNTIME_PLAN_H_ */
