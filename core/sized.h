/* Sized public structs (docs/api.md, "ABI and growth"): every public desc, info and stats struct
 * starts with `size_t struct_size`, the sizeof the caller was built with (0: the first sized
 * release's). The library reads or writes only that prefix, so a struct can grow at its end
 * without breaking a caller built against an older, smaller header. */
#ifndef VNRT_CORE_SIZED_H_
#define VNRT_CORE_SIZED_H_

#include <stddef.h>

#include "core.h"

/* The byte just past member m of T. */
#define VN_MEMBER_END(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))

/* What the library knows of one sized struct. */
typedef struct vn_sized_type {
  const char *name;   /* "vnrt_plan_desc", for messages */
  size_t size;        /* sizeof as this library was built */
  size_t v1_size;     /* what struct_size 0 stands for: the size in the first sized release */
  const size_t *ends; /* where each member ends: the sizes an older version may have had */
  size_t n_ends;
} vn_sized_type;

extern const vn_sized_type vn_sized_context_desc;
extern const vn_sized_type vn_sized_device_info;
extern const vn_sized_type vn_sized_plan_desc;
extern const vn_sized_type vn_sized_plan_info;
extern const vn_sized_type vn_sized_run_stats;
extern const vn_sized_type vn_sized_engram_store_desc;
extern const vn_sized_type vn_sized_engram_stats;
extern const vn_sized_type vn_sized_node_info;
extern const vn_sized_type vn_sized_shadow_report;

/* The bytes of a caller's struct the library may touch, from its struct_size: 0 gives
 * type->v1_size; a size that is no member's end (one no version of the struct had) or is larger
 * than type->size fails with VNRT_ERROR_INVALID_ARGUMENT and a message naming the struct, the
 * size and what this library accepts (recorded on ctx, which may be NULL). */
vnrt_status vn_sized_check(vnrt_context *ctx, const vn_sized_type *type, size_t struct_size,
                           size_t *out_bytes);

/* Reads a caller's in-struct src (NULL: all defaults) into dst[type->size]: the members its
 * struct_size covers, zero (the default) for the rest; dst's struct_size is set to type->size. */
vnrt_status vn_sized_read(vnrt_context *ctx, const vn_sized_type *type, const void *src, void *dst);

/* Writes the library's full struct src[type->size] into a caller's out-struct dst: only the
 * prefix dst's struct_size covers; dst->struct_size is left as the bytes written. */
vnrt_status vn_sized_write(vnrt_context *ctx, const vn_sized_type *type, const void *src,
                           void *dst);

#endif /* VNRT_CORE_SIZED_H_ */
