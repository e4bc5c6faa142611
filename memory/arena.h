/* The arena planner: packs tensors with known live ranges into one buffer. */
#ifndef VNRT_MEMORY_ARENA_H_
#define VNRT_MEMORY_ARENA_H_

#include "core.h"

typedef struct vn_arena_request {
  uint64_t size;       /* bytes; 0 takes no space */
  int32_t first, last; /* live over steps [first, last], inclusive */
} vn_arena_request;

/* Assigns offsets (multiples of alignment, a power of two) such that no two requests whose
 * live ranges intersect overlap in memory, and returns the arena's total size. Greedy: the
 * largest tensors are placed first, each at the lowest offset that fits. */
vnrt_status vn_arena_plan(vnrt_context *ctx, const vn_arena_request *requests, int32_t n,
                          uint64_t alignment, uint64_t *offsets, uint64_t *out_total);

#endif /* VNRT_MEMORY_ARENA_H_ */
