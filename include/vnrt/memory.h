/* vnrt/memory.h: Engram stores — hashed n-gram embedding tables kept in host memory or a
 * read-only mapped file, with a row cache in front of the device.
 *
 * An Engram table has R rows of D elements (f32, f16 or bf16). It may be far larger than device
 * memory, even than RAM: a file-backed table is memory-mapped and only the rows a lookup asks
 * for are ever read. The device keeps a cache of `cache_slots` rows; a lookup deduplicates its
 * rows, reads hits from the cache and fetches only the misses. Results are bit-identical whatever
 * the cache size, and with the cache off (docs/memory.md).
 *
 * Conventions are those of vnrt.h: every fallible call returns a vnrt_status, out_* params are
 * cleared on entry, and the details of a failure are in vnrt_context_last_error(ctx). A store
 * keeps its context (borrowed) and must be destroyed before it. A store is not thread-safe: use
 * it from one thread at a time.
 */
#ifndef VNRT_MEMORY_H_
#define VNRT_MEMORY_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vnrt_engram_store vnrt_engram_store;

typedef enum vnrt_eviction {
  VNRT_EVICTION_CLOCK = 0, /* second chance (reference bits): the default, O(1) per access */
  VNRT_EVICTION_LRU = 1,   /* least recently used */
} vnrt_eviction;

/* Describes a table. Zero-initialise it and set what you need; exactly one of host_data and
 * file_path must be set. */
typedef struct vnrt_engram_store_desc {
  size_t struct_size; /* sizeof(vnrt_engram_store_desc), or 0 (vnrt.h: sized structs) */
  int64_t rows;       /* R; 0 only with tensor_name (then taken from the tensor) */
  int64_t dim;        /* D; 0 only with tensor_name */
  vnrt_dtype dtype;   /* VNRT_F32, VNRT_F16 or VNRT_BF16; 0: f32, or the tensor's dtype */

  /* Host table: R x D elements, row-major. Borrowed (must outlive the store and not change)
   * unless copy_host_data is nonzero, in which case the store keeps its own copy. */
  const void *host_data;
  int copy_host_data;

  /* File table, mapped read-only. Without tensor_name the file is raw: the table is R x D
   * elements, row-major, little-endian, starting at byte file_offset. With tensor_name the file
   * is a safetensors file and the table is that rank-2 tensor (file_offset must be 0); rows,
   * dim and dtype, when set, must match it. */
  const char *file_path;
  uint64_t file_offset;
  const char *tensor_name;

  int64_t cache_slots;    /* rows the cache holds; 0: no cache (every lookup fetches its rows);
                             more than R is the same as R */
  vnrt_eviction eviction; /* which row a full cache gives up; 0: CLOCK */
} vnrt_engram_store_desc;

/* Creates a store. A file that is shorter than file_offset + R x D x element size fails with
 * VNRT_ERROR_IO naming the file, the bytes expected and the bytes it has; a missing file with
 * VNRT_ERROR_NOT_FOUND. On failure *out_store is NULL. */
VNRT_API vnrt_status vnrt_engram_store_create(vnrt_context *ctx, const vnrt_engram_store_desc *desc,
                                              vnrt_engram_store **out_store);
/* Unmaps or frees the table (a borrowed host_data is left alone). NULL is a no-op. */
VNRT_API void vnrt_engram_store_destroy(vnrt_engram_store *store);

/* engram_lookup on the host (docs/ops.md): for t < tokens and h < heads,
 *   out[t, h·D + d] = table[offsets[h] + idx[t·heads + h], d]
 * — the heads' rows concatenated, in the table's dtype; out_bytes must be
 * tokens x heads x D x element size. The rows go through the store's cache. A row outside
 * [0, R) fails with VNRT_ERROR_OUT_OF_RANGE naming t, h, the row and R, before anything is
 * written to out. */
VNRT_API vnrt_status vnrt_engram_store_lookup(vnrt_engram_store *store, const int32_t *idx,
                                              int64_t tokens, int32_t heads, const int32_t *offsets,
                                              void *out, size_t out_bytes);

/* Counters since creation or the last reset. */
typedef struct vnrt_engram_stats {
  size_t struct_size;      /* set by the caller: sizeof(vnrt_engram_stats), or 0 */
  uint64_t lookups;        /* lookup calls */
  uint64_t rows_requested; /* entries asked for (tokens x heads per lookup), repeats included */
  uint64_t unique_rows;    /* distinct rows per cache pass, summed: hits + misses. With the cache
                              off rows are not deduplicated and this equals rows_requested */
  uint64_t hits;           /* distinct rows found in the cache */
  uint64_t misses;         /* rows fetched from the table */
  uint64_t evictions;      /* cached rows displaced to make room */
  uint64_t bytes_fetched;  /* bytes read from the table (host memory or file) */
  int64_t cache_slots;     /* the cache's size in rows (0: no cache) */
  int64_t resident_rows;   /* rows now in the cache */
} vnrt_engram_stats;

VNRT_API vnrt_status vnrt_engram_store_stats(const vnrt_engram_store *store,
                                             vnrt_engram_stats *out_stats);
/* Zeroes the counters; the cache keeps its rows. */
VNRT_API void vnrt_engram_store_reset_stats(vnrt_engram_store *store);
/* Empties the cache (the next lookups start cold); counters are kept. */
VNRT_API void vnrt_engram_store_clear_cache(vnrt_engram_store *store);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_MEMORY_H_ */
