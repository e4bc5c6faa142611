/* The VNRT_0 entry points: the calls whose structs gained struct_size in VNRT_1, kept with the
 * layouts of vnrt 0.1.0 so that programs built against it keep running (docs/api.md, "ABI and
 * growth"). Each converts to the current struct and calls the current function. The shared
 * library exports them as NAME@VNRT_0 (the version the dynamic linker gives an unversioned
 * reference) beside the current NAME@@VNRT_1 (runtime/vnrt.map). */
#include <string.h>

#include "core.h"
#include "vnrt/memory.h"

#if defined(__ELF__) && !defined(VNRT_NO_SYMVER)

#define V0_API __attribute__((visibility("default")))
#define V0_SYMVER(impl, name) __asm__(".symver " #impl ", " #name "@VNRT_0")

/* ---- The 0.1.0 layouts ------------------------------------------------------------------ */

typedef struct v0_context_desc {
  vnrt_allocator allocator;
  vnrt_log_fn log_fn;
  void *log_user;
  vnrt_log_level log_level;
  const char *plugin_path;
  int no_plugins;
  int num_threads;
} v0_context_desc;

/* 0.1.0's vnrt_device_info is, member for member, vnrt_backend_device_info. */
typedef vnrt_backend_device_info v0_device_info;

typedef struct v0_plan_desc {
  int no_fallback;
  vnrt_kernel_mode kernels;
  uint64_t device_memory_limit;
  int32_t prefetch_depth;
  int serialize_copies;
  const vnrt_engram_binding *engram;
  int32_t n_engram;
  uint64_t max_work;
} v0_plan_desc;

typedef struct v0_plan_info {
  int32_t n_nodes;
  int32_t n_partitions;
  int32_t n_fallback_nodes;
  uint64_t arena_bytes;
  uint64_t naive_bytes;
  uint64_t weight_bytes;
  uint64_t state_bytes;
  int32_t n_inplace_updates;
  uint64_t device_bytes;
  uint64_t device_limit;
  int32_t n_streamed_params;
  uint64_t streamed_bytes;
  int32_t n_engram_lookups;
  uint64_t engram_cache_bytes;
  uint64_t work;
  uint64_t work_limit;
} v0_plan_info;

typedef struct v0_run_stats {
  uint64_t wall_ns;
  uint64_t compute_ns;
  uint64_t copy_ns;
  uint64_t stall_ns;
  double overlap;
  uint64_t bytes_weights;
  uint64_t bytes_engram;
  uint64_t bytes_transfers;
  uint64_t engram_rows;
  uint64_t engram_hits;
  double engram_hit_rate;
} v0_run_stats;

typedef struct v0_engram_store_desc {
  int64_t rows;
  int64_t dim;
  vnrt_dtype dtype;
  const void *host_data;
  int copy_host_data;
  const char *file_path;
  uint64_t file_offset;
  const char *tensor_name;
  int64_t cache_slots;
  vnrt_eviction eviction;
} v0_engram_store_desc;

typedef struct v0_engram_stats {
  uint64_t lookups;
  uint64_t rows_requested;
  uint64_t unique_rows;
  uint64_t hits;
  uint64_t misses;
  uint64_t evictions;
  uint64_t bytes_fetched;
  int64_t cache_slots;
  int64_t resident_rows;
} v0_engram_stats;

/* ---- Entry points ----------------------------------------------------------------------- */

V0_API vnrt_status vn_v0_context_create(const v0_context_desc *desc, vnrt_context **out_ctx);
V0_SYMVER(vn_v0_context_create, vnrt_context_create);
vnrt_status vn_v0_context_create(const v0_context_desc *desc, vnrt_context **out_ctx) {
  if (!desc) return vnrt_context_create(NULL, out_ctx);
  vnrt_context_desc d;
  memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.allocator = desc->allocator;
  d.log_fn = desc->log_fn;
  d.log_user = desc->log_user;
  d.log_level = desc->log_level;
  d.plugin_path = desc->plugin_path;
  d.no_plugins = desc->no_plugins;
  d.num_threads = desc->num_threads;
  return vnrt_context_create(&d, out_ctx);
}

V0_API vnrt_status vn_v0_device_get_info(const vnrt_device *device, v0_device_info *out_info);
V0_SYMVER(vn_v0_device_get_info, vnrt_device_get_info);
vnrt_status vn_v0_device_get_info(const vnrt_device *device, v0_device_info *out_info) {
  if (!out_info) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_device_info i = {.struct_size = sizeof i};
  VN_RETURN_IF_ERROR(vnrt_device_get_info(device, &i));
  memset(out_info, 0, sizeof *out_info);
  memcpy(out_info->backend, i.backend, sizeof out_info->backend);
  memcpy(out_info->name, i.name, sizeof out_info->name);
  memcpy(out_info->driver, i.driver, sizeof out_info->driver);
  memcpy(out_info->spec, i.spec, sizeof out_info->spec);
  out_info->type = i.type;
  out_info->index = i.index;
  out_info->memory_bytes = i.memory_bytes;
  out_info->max_buffer_bytes = i.max_buffer_bytes;
  out_info->caps = i.caps;
  out_info->compute_units = i.compute_units;
  out_info->subgroup_size = i.subgroup_size;
  out_info->max_workgroup_size = i.max_workgroup_size;
  out_info->shared_memory_bytes = i.shared_memory_bytes;
  return VNRT_OK;
}

static const vnrt_plan_desc *plan_desc_from_v0(const v0_plan_desc *desc, vnrt_plan_desc *d) {
  if (!desc) return NULL;
  memset(d, 0, sizeof *d);
  d->struct_size = sizeof *d;
  d->no_fallback = desc->no_fallback;
  d->kernels = desc->kernels;
  d->device_memory_limit = desc->device_memory_limit;
  d->prefetch_depth = desc->prefetch_depth;
  d->serialize_copies = desc->serialize_copies;
  d->engram = desc->engram;
  d->n_engram = desc->n_engram;
  d->max_work = desc->max_work;
  return d;
}

V0_API vnrt_status vn_v0_plan_create(vnrt_context *ctx, const vnrt_graph *graph,
                                     vnrt_device *device, const v0_plan_desc *desc,
                                     vnrt_plan **out_plan);
V0_SYMVER(vn_v0_plan_create, vnrt_plan_create);
vnrt_status vn_v0_plan_create(vnrt_context *ctx, const vnrt_graph *graph, vnrt_device *device,
                              const v0_plan_desc *desc, vnrt_plan **out_plan) {
  vnrt_plan_desc d;
  return vnrt_plan_create(ctx, graph, device, plan_desc_from_v0(desc, &d), out_plan);
}

V0_API vnrt_status vn_v0_plan_create_shared(vnrt_context *ctx, const vnrt_graph *graph,
                                            vnrt_device *device, const v0_plan_desc *desc,
                                            vnrt_plan *share_params_with, vnrt_plan **out_plan);
V0_SYMVER(vn_v0_plan_create_shared, vnrt_plan_create_shared);
vnrt_status vn_v0_plan_create_shared(vnrt_context *ctx, const vnrt_graph *graph,
                                     vnrt_device *device, const v0_plan_desc *desc,
                                     vnrt_plan *share_params_with, vnrt_plan **out_plan) {
  vnrt_plan_desc d;
  return vnrt_plan_create_shared(ctx, graph, device, plan_desc_from_v0(desc, &d), share_params_with,
                                 out_plan);
}

V0_API vnrt_status vn_v0_plan_get_info(const vnrt_plan *plan, v0_plan_info *out_info);
V0_SYMVER(vn_v0_plan_get_info, vnrt_plan_get_info);
vnrt_status vn_v0_plan_get_info(const vnrt_plan *plan, v0_plan_info *out_info) {
  if (!out_info) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_plan_info i = {.struct_size = sizeof i};
  VN_RETURN_IF_ERROR(vnrt_plan_get_info(plan, &i));
  *out_info = (v0_plan_info){i.n_nodes,          i.n_partitions,       i.n_fallback_nodes,
                             i.arena_bytes,      i.naive_bytes,        i.weight_bytes,
                             i.state_bytes,      i.n_inplace_updates,  i.device_bytes,
                             i.device_limit,     i.n_streamed_params,  i.streamed_bytes,
                             i.n_engram_lookups, i.engram_cache_bytes, i.work,
                             i.work_limit};
  return VNRT_OK;
}

V0_API vnrt_status vn_v0_plan_get_run_stats(const vnrt_plan *plan, v0_run_stats *out_stats);
V0_SYMVER(vn_v0_plan_get_run_stats, vnrt_plan_get_run_stats);
vnrt_status vn_v0_plan_get_run_stats(const vnrt_plan *plan, v0_run_stats *out_stats) {
  if (!out_stats) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_run_stats s = {.struct_size = sizeof s};
  VN_RETURN_IF_ERROR(vnrt_plan_get_run_stats(plan, &s));
  *out_stats = (v0_run_stats){s.wall_ns,     s.compute_ns,    s.copy_ns,        s.stall_ns,
                              s.overlap,     s.bytes_weights, s.bytes_engram,   s.bytes_transfers,
                              s.engram_rows, s.engram_hits,   s.engram_hit_rate};
  return VNRT_OK;
}

V0_API vnrt_status vn_v0_engram_store_create(vnrt_context *ctx, const v0_engram_store_desc *desc,
                                             vnrt_engram_store **out_store);
V0_SYMVER(vn_v0_engram_store_create, vnrt_engram_store_create);
vnrt_status vn_v0_engram_store_create(vnrt_context *ctx, const v0_engram_store_desc *desc,
                                      vnrt_engram_store **out_store) {
  if (!desc) return vnrt_engram_store_create(ctx, NULL, out_store);
  vnrt_engram_store_desc d;
  memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.rows = desc->rows;
  d.dim = desc->dim;
  d.dtype = desc->dtype;
  d.host_data = desc->host_data;
  d.copy_host_data = desc->copy_host_data;
  d.file_path = desc->file_path;
  d.file_offset = desc->file_offset;
  d.tensor_name = desc->tensor_name;
  d.cache_slots = desc->cache_slots;
  d.eviction = desc->eviction;
  return vnrt_engram_store_create(ctx, &d, out_store);
}

V0_API vnrt_status vn_v0_engram_store_stats(const vnrt_engram_store *store,
                                            v0_engram_stats *out_stats);
V0_SYMVER(vn_v0_engram_store_stats, vnrt_engram_store_stats);
vnrt_status vn_v0_engram_store_stats(const vnrt_engram_store *store, v0_engram_stats *out_stats) {
  if (!out_stats) return VNRT_ERROR_INVALID_ARGUMENT;
  memset(out_stats, 0, sizeof *out_stats);
  vnrt_engram_stats s = {.struct_size = sizeof s};
  VN_RETURN_IF_ERROR(vnrt_engram_store_stats(store, &s));
  *out_stats =
      (v0_engram_stats){s.lookups,   s.rows_requested, s.unique_rows, s.hits,         s.misses,
                        s.evictions, s.bytes_fetched,  s.cache_slots, s.resident_rows};
  return VNRT_OK;
}

#endif /* __ELF__ */
