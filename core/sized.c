/* Sized public structs: the member tables of every public desc, info and stats struct, and the
 * one place that reads a caller's struct_size (core/sized.h). */
#include "sized.h"

#include <string.h>

#include "vnrt/inspect.h"
#include "vnrt/memory.h"

/* VNRT_1 is the first release whose structs carry struct_size, so struct_size 0 is sizeof in
 * this release. A later release that adds members pins v1_size to the VNRT_1 size (the end of
 * the last member that release had) and appends the new members to the tables. */
#define SIZED(T, NAME, ENDS) \
  const vn_sized_type NAME = {#T, sizeof(T), sizeof(T), ENDS, sizeof(ENDS) / sizeof(ENDS[0])}

#define E(m) VN_MEMBER_END(vnrt_context_desc, m)
static const size_t k_context_desc[] = {
    E(allocator),   E(log_fn),   E(log_user), E(log_level), E(plugin_path),        E(no_plugins),
    E(num_threads), E(backends), E(options),  E(cache_dir), E(device_memory_limit)};
#undef E
SIZED(vnrt_context_desc, vn_sized_context_desc, k_context_desc);

#define E(m) VN_MEMBER_END(vnrt_device_info, m)
static const size_t k_device_info[] = {E(backend),
                                       E(name),
                                       E(driver),
                                       E(spec),
                                       E(type),
                                       E(index),
                                       E(memory_bytes),
                                       E(max_buffer_bytes),
                                       E(caps),
                                       E(compute_units),
                                       E(subgroup_size),
                                       E(max_workgroup_size),
                                       E(shared_memory_bytes)};
#undef E
SIZED(vnrt_device_info, vn_sized_device_info, k_device_info);

#define E(m) VN_MEMBER_END(vnrt_plan_desc, m)
static const size_t k_plan_desc[] = {E(no_fallback),    E(kernels),          E(device_memory_limit),
                                     E(prefetch_depth), E(serialize_copies), E(engram),
                                     E(n_engram),       E(max_work),         E(profile_nodes),
                                     E(shadow),         E(shadow_dir)};
#undef E
SIZED(vnrt_plan_desc, vn_sized_plan_desc, k_plan_desc);

#define E(m) VN_MEMBER_END(vnrt_plan_info, m)
static const size_t k_plan_info[] = {
    E(n_nodes),          E(n_partitions),       E(n_fallback_nodes),
    E(arena_bytes),      E(naive_bytes),        E(weight_bytes),
    E(state_bytes),      E(n_inplace_updates),  E(device_bytes),
    E(device_limit),     E(n_streamed_params),  E(streamed_bytes),
    E(n_engram_lookups), E(engram_cache_bytes), E(work),
    E(work_limit)};
#undef E
SIZED(vnrt_plan_info, vn_sized_plan_info, k_plan_info);

#define E(m) VN_MEMBER_END(vnrt_run_stats, m)
static const size_t k_run_stats[] = {
    E(wall_ns),         E(compute_ns),   E(copy_ns),         E(stall_ns),      E(overlap),
    E(bytes_weights),   E(bytes_engram), E(bytes_transfers), E(engram_rows),   E(engram_hits),
    E(engram_hit_rate), E(bytes_staged), E(staged_ns),       E(staged_wait_ns)};
#undef E
SIZED(vnrt_run_stats, vn_sized_run_stats, k_run_stats);

#define E(m) VN_MEMBER_END(vnrt_engram_store_desc, m)
static const size_t k_engram_store_desc[] = {
    E(rows),      E(dim),         E(dtype),       E(host_data),   E(copy_host_data),
    E(file_path), E(file_offset), E(tensor_name), E(cache_slots), E(eviction)};
#undef E
SIZED(vnrt_engram_store_desc, vn_sized_engram_store_desc, k_engram_store_desc);

#define E(m) VN_MEMBER_END(vnrt_engram_stats, m)
static const size_t k_engram_stats[] = {E(lookups),       E(rows_requested), E(unique_rows),
                                        E(hits),          E(misses),         E(evictions),
                                        E(bytes_fetched), E(cache_slots),    E(resident_rows)};
#undef E
SIZED(vnrt_engram_stats, vn_sized_engram_stats, k_engram_stats);

#define E(m) VN_MEMBER_END(vnrt_node_info, m)
static const size_t k_node_info[] = {
    E(step),      E(op),          E(name),           E(n_outputs),     E(inputs),
    E(outputs),   E(device),      E(partition),      E(fallback),      E(runs),
    E(last_ns),   E(total_ns),    E(shadow_checked), E(shadow_failed), E(shadow_error),
    E(tolerance), E(shadow_note), E(clock)};
#undef E
SIZED(vnrt_node_info, vn_sized_node_info, k_node_info);

#define E(m) VN_MEMBER_END(vnrt_shadow_report, m)
static const size_t k_shadow_report[] = {E(enabled),     E(n_checked),    E(n_failed),
                                         E(n_unchecked), E(first_failed), E(saved)};
#undef E
SIZED(vnrt_shadow_report, vn_sized_shadow_report, k_shadow_report);

vnrt_status vn_sized_check(vnrt_context *ctx, const vn_sized_type *type, size_t struct_size,
                           size_t *out_bytes) {
  *out_bytes = 0;
  if (struct_size == 0) {
    *out_bytes = type->v1_size;
    return VNRT_OK;
  }
  if (struct_size > type->size) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s.struct_size is %zu, larger than this library's %zu (vnrt %s): the caller "
                    "was built against a newer vnrt header (or did not set struct_size); run it "
                    "with a libvnrt at least as new, or set struct_size = sizeof(%s)",
                    type->name, struct_size, type->size, vnrt_version(NULL, NULL, NULL),
                    type->name);
  }
  bool known = struct_size == type->size;
  for (size_t i = 0; i < type->n_ends && !known; ++i) known = type->ends[i] == struct_size;
  if (!known) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s.struct_size is %zu, which ends inside a member: no version of %s had "
                    "that size (set struct_size = sizeof(%s), or 0 for the first release's %zu)",
                    type->name, struct_size, type->name, type->name, type->v1_size);
  }
  *out_bytes = struct_size;
  return VNRT_OK;
}

vnrt_status vn_sized_read(vnrt_context *ctx, const vn_sized_type *type, const void *src,
                          void *dst) {
  memset(dst, 0, type->size);
  size_t bytes = 0;
  if (src) {
    size_t struct_size;
    memcpy(&struct_size, src, sizeof struct_size);
    VN_RETURN_IF_ERROR(vn_sized_check(ctx, type, struct_size, &bytes));
    memcpy(dst, src, bytes);
  }
  size_t full = type->size;
  memcpy(dst, &full, sizeof full);
  return VNRT_OK;
}

vnrt_status vn_sized_write(vnrt_context *ctx, const vn_sized_type *type, const void *src,
                           void *dst) {
  size_t struct_size, bytes;
  memcpy(&struct_size, dst, sizeof struct_size);
  VN_RETURN_IF_ERROR(vn_sized_check(ctx, type, struct_size, &bytes));
  memcpy(dst, src, bytes);
  memcpy(dst, &bytes, sizeof bytes);
  return VNRT_OK;
}
