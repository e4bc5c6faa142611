/* The Engram store's private side: what the executor needs to prefetch rows on a copy stream
 * and to keep a device row cache in step with vnrt/memory.h's host lookup. */
#ifndef VNRT_MEMORY_ENGRAM_STORE_H_
#define VNRT_MEMORY_ENGRAM_STORE_H_

#include <stdint.h>

#include "budget.h"
#include "core.h"
#include "row_cache.h"
#include "vnrt/memory.h"

/* Shape of the table. */
int64_t vn_engram_store_rows(const vnrt_engram_store *store);
int64_t vn_engram_store_dim(const vnrt_engram_store *store);
vnrt_dtype vn_engram_store_dtype(const vnrt_engram_store *store);
uint64_t vn_engram_store_row_bytes(const vnrt_engram_store *store);
uint64_t vn_engram_store_table_bytes(const vnrt_engram_store *store);
/* Where the table lives: VN_TIER_HOST (host_data, borrowed or copied) or VN_TIER_FILE_MAPPED,
 * so the executor can account it in the device's budget. */
vn_tier vn_engram_store_tier(const vnrt_engram_store *store);

/* The store's row cache (NULL when cache_slots is 0). The host lookup keeps its slot data in
 * host memory; a device that holds the slots itself creates its own vn_row_cache instead of
 * sharing this one, since the bookkeeping must match the memory it describes. */
vn_row_cache *vn_engram_store_cache(vnrt_engram_store *store);

/* engram_lookup's row ids: rows[t·heads + h] = offsets[h] + idx[t·heads + h], all checked
 * against [0, R) first (VNRT_ERROR_OUT_OF_RANGE naming t, h, the row and R; rows is then
 * untouched). Runs as soon as ngram_hash's output is known, ahead of the consuming layer. */
vnrt_status vn_engram_store_lookup_rows(vnrt_engram_store *store, const int32_t *idx,
                                        int64_t tokens, int32_t heads, const int32_t *offsets,
                                        int64_t *rows);

/* The copy path: copies rows rows[0..n) of the table, back to back, into dst (n x row_bytes
 * bytes). Every row is checked first: one outside [0, R) fails with VNRT_ERROR_OUT_OF_RANGE
 * naming its position, the row and R, and nothing is written. Reads only the table (mapped
 * pages fault in on demand) and an atomic byte counter, so it may run on a copy thread while
 * the owner thread plans the next lookup. */
vnrt_status vn_engram_store_gather_rows(vnrt_engram_store *store, const int64_t *rows, int64_t n,
                                        void *dst);

/* The same copy path for a cache's misses: row fetch[k].row goes to
 * slot_base + fetch[k].slot x slot_stride (slot_stride >= row_bytes), e.g. mapped device memory
 * on a UMA device. Checked like gather_rows. */
vnrt_status vn_engram_store_fetch_to_slots(vnrt_engram_store *store, const vn_row_fetch *fetch,
                                           int64_t n, void *slot_base, uint64_t slot_stride);

/* Adds delta's lookups, rows_requested, unique_rows, hits, misses and evictions to the store's
 * statistics (its other fields are ignored: bytes_fetched is counted by the copy functions
 * above). The host lookup does this itself; an executor that runs lookups through its own
 * device row cache records each lookup here, so that vnrt_engram_store_stats covers both. */
void vn_engram_store_record(vnrt_engram_store *store, const vnrt_engram_stats *delta);

#endif /* VNRT_MEMORY_ENGRAM_STORE_H_ */
