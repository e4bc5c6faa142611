/* Bookkeeping of a device row cache: which table row sits in which slot, what to evict, and
 * what a lookup must fetch. It stores no row data and knows no device: the slots themselves
 * live wherever the caller keeps them (device memory, mapped memory, a host array). */
#ifndef VNRT_MEMORY_ROW_CACHE_H_
#define VNRT_MEMORY_ROW_CACHE_H_

#include <stdint.h>

#include "core.h"

typedef enum vn_eviction {
  VN_EVICT_CLOCK = 0, /* second chance: a reference bit per slot and a sweeping hand */
  VN_EVICT_LRU = 1,   /* least recently used: an intrusive list over the slots */
} vn_eviction;

typedef struct vn_row_cache vn_row_cache;

/* One miss: copy table row `row` into slot `slot`. */
typedef struct vn_row_fetch {
  int64_t row;
  int32_t slot;
} vn_row_fetch;

typedef struct vn_row_cache_stats {
  uint64_t chunks;    /* vn_row_cache_plan calls that handled at least one entry */
  uint64_t entries;   /* entries handled (repeats included) */
  uint64_t unique;    /* distinct rows per chunk, summed; always hits + misses */
  uint64_t hits;      /* distinct rows of a chunk already resident */
  uint64_t misses;    /* distinct rows of a chunk that had to be fetched */
  uint64_t evictions; /* resident rows displaced by a miss */
  uint64_t bytes;     /* misses x row_bytes: what the fetches move */
} vn_row_cache_stats;

/* Creates a cache of `slots` slots (1 <= slots <= INT32_MAX) of row_bytes bytes each (only used
 * for the byte counter). All memory is allocated here: planning never allocates. ctx (borrowed)
 * receives error messages. */
vnrt_status vn_row_cache_create(vnrt_context *ctx, int64_t slots, vn_eviction eviction,
                                uint64_t row_bytes, vn_row_cache **out_cache);
void vn_row_cache_destroy(vn_row_cache *cache); /* NULL is a no-op */

/* Plans the next chunk of one lookup of n entries (rows[i] >= 0, repeats allowed), starting at
 * entry `start` (0 <= start <= n). It handles entries [start, *out_next): the longest run whose
 * distinct rows fit in the cache at once (all of them when they number <= slots), and at least
 * one entry when start < n. For each handled entry i it sets out_slots[i] (indexed from 0, like
 * rows) to the slot that will hold rows[i]; it lists in out_fetch[0, *out_n_fetch) the rows to
 * copy into their slots, in order of first use. No slot used by this chunk is evicted within
 * it, so after the fetches complete, entry i of the chunk is slot out_slots[i], for every i.
 * out_fetch must have room for min(slots, n - start) entries.
 *
 * The caller's loop:  for (start = 0; start < n; start = next) { plan; fetch; gather [start,
 * next) } — and it must finish reading a chunk's slots before fetching the next chunk's rows
 * (the next chunk, or the next lookup, may evict them).
 *
 * Rows resident when the call starts are hits: they keep their slots and are not fetched.
 *
 * A negative row fails with VNRT_ERROR_OUT_OF_RANGE naming the entry; nothing is fetched or
 * evicted and the counters are unchanged (only the recency of resident rows may have moved). */
vnrt_status vn_row_cache_plan(vn_row_cache *cache, const int64_t *rows, int64_t n, int64_t start,
                              int32_t *out_slots, vn_row_fetch *out_fetch, int64_t *out_n_fetch,
                              int64_t *out_next);

/* The slot holding row, or -1 if it is not resident. No side effects (no reference bit). */
int32_t vn_row_cache_find(const vn_row_cache *cache, int64_t row);

/* Forgets every resident row (e.g. after the table changed or the slots' memory was lost).
 * Counters are kept. */
void vn_row_cache_clear(vn_row_cache *cache);

int32_t vn_row_cache_slots(const vn_row_cache *cache);
int32_t vn_row_cache_resident(const vn_row_cache *cache); /* rows currently held */
vn_eviction vn_row_cache_eviction(const vn_row_cache *cache);

void vn_row_cache_stats_get(const vn_row_cache *cache, vn_row_cache_stats *out_stats);
void vn_row_cache_reset_stats(vn_row_cache *cache);

#endif /* VNRT_MEMORY_ROW_CACHE_H_ */
