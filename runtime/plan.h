/* Private to the runtime: a compiled plan — per-device tensors, partitions and transfers —
 * shared by compilation (plan.c) and execution (plan_run.c). */
#ifndef VNRT_RUNTIME_PLAN_H_
#define VNRT_RUNTIME_PLAN_H_

#include "graph.h"
#include "registry.h"

#define VN_PLAN_MAX_DEVICES 2 /* the target, and the CPU for fallback */
#define VN_TENSOR_ALIGN 256

typedef struct vn_plan_device {
  vnrt_device *device;
  const vnrt_backend_i *iface;
  vnrt_backend_device *bdev;
  vnrt_backend_tensor *tensors;
  int32_t n_tensors;
  vnrt_backend_node *nodes;
  int32_t n_nodes;
  vnrt_backend_buffer *arena; /* intermediates, packed by liveness */
  vnrt_backend_buffer *io;    /* inputs and params, one slot each */
  uint64_t arena_bytes, io_bytes;
  vnrt_backend_exec *exec;
} vn_plan_device;

/* A value produced on one device and read on another: copied before a partition runs. */
typedef struct vn_transfer {
  int32_t value, src, dst;
} vn_transfer;

/* A run of consecutive nodes on one device, with the transfers it needs first. */
typedef struct vn_partition {
  int32_t dev, first, count;
  int32_t first_transfer, n_transfers;
} vn_partition;

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
  bool *bound;                            /* per value: an input or param that was set */
  vn_partition *parts;
  int32_t n_parts;
  vn_transfer *transfers;
  int32_t n_transfers;
  void *staging;
  uint64_t staging_bytes;
  bool ran;
  vnrt_plan_info info;
};

/* Compilation helpers used by running too. */
uint64_t vn_align_up(uint64_t x, uint64_t a);

#endif /* VNRT_RUNTIME_PLAN_H_ */
