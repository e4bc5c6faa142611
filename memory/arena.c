/* Greedy best-offset arena packing of intermediates by liveness (largest first). */
#include <string.h>

#include "arena.h"

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

vnrt_status vn_arena_plan(vnrt_context *ctx, const vn_arena_request *req, int32_t n,
                          uint64_t alignment, uint64_t *offsets, uint64_t *out_total) {
  *out_total = 0;
  if (n <= 0) return VNRT_OK;
  if (alignment == 0 || (alignment & (alignment - 1))) {
    return vn_error(ctx, VNRT_ERROR_INTERNAL, "arena alignment %llu is not a power of two",
                    (unsigned long long)alignment);
  }
  int32_t *by_size = vn_calloc(ctx, (size_t)n, sizeof *by_size);
  int32_t *placed = vn_calloc(ctx, (size_t)n, sizeof *placed);
  if (!by_size || !placed) {
    vn_free(ctx, by_size), vn_free(ctx, placed);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning %d tensors", n);
  }
  for (int32_t i = 0; i < n; ++i) by_size[i] = i;
  /* Insertion sort by size descending, then by first use: stable and fine for plan sizes. */
  for (int32_t i = 1; i < n; ++i) {
    int32_t x = by_size[i], j = i;
    while (j > 0 &&
           (req[by_size[j - 1]].size < req[x].size || (req[by_size[j - 1]].size == req[x].size &&
                                                       req[by_size[j - 1]].first > req[x].first))) {
      by_size[j] = by_size[j - 1];
      --j;
    }
    by_size[j] = x;
  }
  int32_t n_placed = 0;
  uint64_t total = 0;
  for (int32_t k = 0; k < n; ++k) {
    int32_t i = by_size[k];
    uint64_t size = align_up(req[i].size, alignment);
    offsets[i] = 0;
    if (size == 0) continue;
    /* Try offset 0 and the end of every time-overlapping placed block; keep the lowest that
     * collides with none of them. */
    uint64_t best = UINT64_MAX;
    for (int32_t c = -1; c < n_placed; ++c) {
      uint64_t cand = 0;
      if (c >= 0) {
        int32_t p = placed[c];
        if (req[p].last < req[i].first || req[i].last < req[p].first) continue;
        cand = offsets[p] + align_up(req[p].size, alignment);
      }
      if (cand >= best) continue;
      bool ok = true;
      for (int32_t q = 0; q < n_placed && ok; ++q) {
        int32_t p = placed[q];
        if (req[p].last < req[i].first || req[i].last < req[p].first) continue;
        uint64_t ps = offsets[p], pe = ps + align_up(req[p].size, alignment);
        if (cand < pe && ps < cand + size) ok = false;
      }
      if (ok) best = cand;
    }
    offsets[i] = best;
    placed[n_placed++] = i;
    if (best + size > total) total = best + size;
  }
  vn_free(ctx, by_size);
  vn_free(ctx, placed);
  *out_total = total;
  return VNRT_OK;
}
