/* Row cache bookkeeping: an open-addressing map row -> slot, CLOCK or LRU eviction, and the
 * per-lookup planner that deduplicates rows and pins the slots of a chunk. */
#include "row_cache.h"

#include <string.h>

#define EMPTY_KEY (-1)
#define NO_SLOT (-1)

struct vn_row_cache {
  vnrt_context *ctx;
  vn_eviction eviction;
  int32_t slots;
  uint64_t row_bytes;

  /* Linear-probing map, load factor <= 1/2, deleted by backward shift (no tombstones, so the
   * probe length does not degrade however long the cache runs). */
  int64_t *keys; /* row, or EMPTY_KEY */
  int32_t *vals; /* slot; during a plan, -1 - k for the k-th row to fetch */
  uint64_t mask; /* capacity - 1 */

  int64_t *slot_row; /* row held by each slot, or EMPTY_KEY */
  int32_t *free_slots;
  int32_t n_free;

  /* A slot is pinned while its pin equals the current epoch: one epoch per plan call, so
   * pinning a chunk costs nothing to undo. */
  uint64_t *pin;
  uint64_t epoch;

  uint8_t *ref; /* CLOCK reference bits */
  int32_t hand;

  int32_t *prev, *next; /* LRU list, most recent at head */
  int32_t head, tail;

  vn_row_cache_stats stats;
};

/* splitmix64's finaliser: rows from hashed n-grams are already spread, but plain ranges of
 * row ids (and multiples of a table's stride) must not cluster in the map either. */
static uint64_t hash_row(int64_t row) {
  uint64_t x = (uint64_t)row;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/* Position of row in the map, or of the empty bucket where it would go. */
static uint64_t map_probe(const vn_row_cache *c, int64_t row) {
  uint64_t i = hash_row(row) & c->mask;
  while (c->keys[i] != EMPTY_KEY && c->keys[i] != row) i = (i + 1) & c->mask;
  return i;
}

static void map_remove(vn_row_cache *c, int64_t row) {
  uint64_t i = map_probe(c, row);
  if (c->keys[i] == EMPTY_KEY) return;
  /* Backward shift: move later members of the cluster into the hole when their home bucket
   * does not lie cyclically in (hole, j]. */
  uint64_t j = i;
  for (;;) {
    j = (j + 1) & c->mask;
    if (c->keys[j] == EMPTY_KEY) break;
    uint64_t home = hash_row(c->keys[j]) & c->mask;
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    c->keys[i] = c->keys[j];
    c->vals[i] = c->vals[j];
    i = j;
  }
  c->keys[i] = EMPTY_KEY;
}

static void lru_unlink(vn_row_cache *c, int32_t s) {
  if (c->prev[s] != NO_SLOT)
    c->next[c->prev[s]] = c->next[s];
  else
    c->head = c->next[s];
  if (c->next[s] != NO_SLOT)
    c->prev[c->next[s]] = c->prev[s];
  else
    c->tail = c->prev[s];
  c->prev[s] = c->next[s] = NO_SLOT;
}

static void lru_push_front(vn_row_cache *c, int32_t s) {
  c->prev[s] = NO_SLOT;
  c->next[s] = c->head;
  if (c->head != NO_SLOT) c->prev[c->head] = s;
  c->head = s;
  if (c->tail == NO_SLOT) c->tail = s;
}

/* Marks slot s as just used. */
static void touch(vn_row_cache *c, int32_t s) {
  if (c->eviction == VN_EVICT_LRU) {
    lru_unlink(c, s);
    lru_push_front(c, s);
  } else {
    c->ref[s] = 1;
  }
}

/* An unpinned slot to evict; the caller guarantees one exists and no slot is free. */
static int32_t pick_victim(vn_row_cache *c) {
  if (c->eviction == VN_EVICT_LRU) {
    /* This call's slots were all moved to the front, so the tail is unpinned unless nearly
     * every slot is pinned. */
    int32_t s = c->tail;
    while (c->pin[s] == c->epoch) s = c->prev[s];
    return s;
  }
  for (;;) {
    int32_t s = c->hand;
    c->hand = c->hand + 1 == c->slots ? 0 : c->hand + 1;
    if (c->pin[s] == c->epoch) continue;
    if (c->ref[s]) {
      c->ref[s] = 0; /* second chance */
      continue;
    }
    return s;
  }
}

static void reset_slots(vn_row_cache *c) {
  memset(c->keys, 0xff, (size_t)(c->mask + 1) * sizeof *c->keys); /* all EMPTY_KEY (-1) */
  c->n_free = c->slots;
  for (int32_t s = 0; s < c->slots; ++s) {
    c->slot_row[s] = EMPTY_KEY;
    c->free_slots[s] = c->slots - 1 - s; /* popped from the end: slot 0 first */
    c->pin[s] = 0;
    if (c->ref) c->ref[s] = 0;
    if (c->prev) c->prev[s] = c->next[s] = NO_SLOT;
  }
  c->epoch = 0;
  c->hand = 0;
  c->head = c->tail = NO_SLOT;
}

vnrt_status vn_row_cache_create(vnrt_context *ctx, int64_t slots, vn_eviction eviction,
                                uint64_t row_bytes, vn_row_cache **out_cache) {
  *out_cache = NULL;
  if (slots < 1 || slots > INT32_MAX) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "row cache: %lld slots is outside [1, %d]",
                    (long long)slots, INT32_MAX);
  }
  if (eviction != VN_EVICT_CLOCK && eviction != VN_EVICT_LRU) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "row cache: unknown eviction policy %d",
                    (int)eviction);
  }
  uint64_t cap = 4;
  while (cap < 4 * (uint64_t)slots) cap *= 2; /* resident + pending rows, half full */
  vn_row_cache *c = vn_calloc(ctx, 1, sizeof *c);
  if (!c) goto oom;
  c->ctx = ctx;
  c->eviction = eviction;
  c->slots = (int32_t)slots;
  c->row_bytes = row_bytes;
  c->mask = cap - 1;
  c->keys = vn_calloc(ctx, (size_t)cap, sizeof *c->keys);
  c->vals = vn_calloc(ctx, (size_t)cap, sizeof *c->vals);
  c->slot_row = vn_calloc(ctx, (size_t)slots, sizeof *c->slot_row);
  c->free_slots = vn_calloc(ctx, (size_t)slots, sizeof *c->free_slots);
  c->pin = vn_calloc(ctx, (size_t)slots, sizeof *c->pin);
  if (!c->keys || !c->vals || !c->slot_row || !c->free_slots || !c->pin) goto oom;
  if (eviction == VN_EVICT_CLOCK) {
    c->ref = vn_calloc(ctx, (size_t)slots, sizeof *c->ref);
    if (!c->ref) goto oom;
  } else {
    c->prev = vn_calloc(ctx, (size_t)slots, sizeof *c->prev);
    c->next = vn_calloc(ctx, (size_t)slots, sizeof *c->next);
    if (!c->prev || !c->next) goto oom;
  }
  reset_slots(c);
  *out_cache = c;
  return VNRT_OK;
oom:
  vn_row_cache_destroy(c);
  return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "row cache: out of host memory for %lld slots",
                  (long long)slots);
}

void vn_row_cache_destroy(vn_row_cache *c) {
  if (!c) return;
  vnrt_context *ctx = c->ctx;
  vn_free(ctx, c->keys);
  vn_free(ctx, c->vals);
  vn_free(ctx, c->slot_row);
  vn_free(ctx, c->free_slots);
  vn_free(ctx, c->pin);
  vn_free(ctx, c->ref);
  vn_free(ctx, c->prev);
  vn_free(ctx, c->next);
  vn_free(ctx, c);
}

/* Drops the rows a failed call had marked pending (k < n_pending). */
static void undo_pending(vn_row_cache *c, const vn_row_fetch *fetch, int64_t n_pending) {
  for (int64_t k = 0; k < n_pending; ++k) map_remove(c, fetch[k].row);
}

vnrt_status vn_row_cache_plan(vn_row_cache *c, const int64_t *rows, int64_t n, int64_t start,
                              int32_t *out_slots, vn_row_fetch *out_fetch, int64_t *out_n_fetch,
                              int64_t *out_next) {
  *out_n_fetch = 0;
  *out_next = start;
  if (n < 0 || start < 0 || start > n || (n > start && (!rows || !out_slots || !out_fetch))) {
    return vn_error(c->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "row cache plan: bad arguments (n=%lld, start=%lld)", (long long)n,
                    (long long)start);
  }
  ++c->epoch;
  /* Pass 1 decides the chunk without evicting anything: rows already resident are pinned (hits),
   * new rows are entered in the map as pending (value -1 - k for the k-th new row), and the
   * chunk ends where one more distinct row would need more slots than the cache has. Evicting
   * only afterwards means a resident row used late in the chunk is never displaced by a new row
   * used early in it. */
  int64_t pinned = 0, n_new = 0;
  uint64_t hits = 0;
  int64_t i = start;
  for (; i < n; ++i) {
    const int64_t row = rows[i];
    if (row < 0) {
      undo_pending(c, out_fetch, n_new);
      return vn_error(c->ctx, VNRT_ERROR_OUT_OF_RANGE,
                      "row cache plan: entry %lld asks for row %lld; rows are >= 0", (long long)i,
                      (long long)row);
    }
    const uint64_t pos = map_probe(c, row);
    const bool found = c->keys[pos] == row;
    const int32_t v = found ? c->vals[pos] : 0;
    if (found && (v < 0 || c->pin[v] == c->epoch)) { /* a repeat within the chunk */
      out_slots[i] = v;
      continue;
    }
    if (pinned + n_new == c->slots) break; /* every slot is spoken for: the chunk ends here */
    if (found) {
      c->pin[v] = c->epoch;
      ++pinned;
      ++hits;
      touch(c, v);
      out_slots[i] = v;
    } else {
      c->keys[pos] = row;
      c->vals[pos] = (int32_t)(-1 - n_new);
      out_fetch[n_new].row = row;
      out_fetch[n_new].slot = -1;
      out_slots[i] = (int32_t)(-1 - n_new);
      ++n_new;
    }
  }
  /* Pass 2 gives each new row a free slot or an unpinned victim's. */
  uint64_t evictions = 0;
  for (int64_t k = 0; k < n_new; ++k) {
    int32_t s;
    if (c->n_free > 0) {
      s = c->free_slots[--c->n_free];
    } else {
      s = pick_victim(c);
      map_remove(c, c->slot_row[s]);
      ++evictions;
    }
    const int64_t row = out_fetch[k].row;
    c->vals[map_probe(c, row)] = s; /* probe again: a removal may have shifted the entry */
    c->slot_row[s] = row;
    c->pin[s] = c->epoch;
    if (c->eviction == VN_EVICT_LRU) {
      if (c->prev[s] != NO_SLOT || c->head == s) lru_unlink(c, s);
      lru_push_front(c, s);
    } else {
      c->ref[s] = 1;
    }
    out_fetch[k].slot = s;
  }
  /* Pass 3 resolves the entries of new rows to their slots. */
  for (int64_t e = start; e < i; ++e) {
    if (out_slots[e] < 0) out_slots[e] = out_fetch[-1 - (int64_t)out_slots[e]].slot;
  }
  if (i > start) {
    c->stats.chunks += 1;
    c->stats.entries += (uint64_t)(i - start);
    c->stats.unique += (uint64_t)(pinned + n_new);
    c->stats.hits += hits;
    c->stats.misses += (uint64_t)n_new;
    c->stats.evictions += evictions;
    c->stats.bytes += (uint64_t)n_new * c->row_bytes;
  }
  *out_n_fetch = n_new;
  *out_next = i;
  return VNRT_OK;
}

int32_t vn_row_cache_find(const vn_row_cache *c, int64_t row) {
  if (!c || row < 0) return -1;
  uint64_t pos = map_probe(c, row);
  return c->keys[pos] == row ? c->vals[pos] : -1;
}

void vn_row_cache_clear(vn_row_cache *c) {
  if (c) reset_slots(c);
}

int32_t vn_row_cache_slots(const vn_row_cache *c) { return c ? c->slots : 0; }
int32_t vn_row_cache_resident(const vn_row_cache *c) { return c ? c->slots - c->n_free : 0; }
vn_eviction vn_row_cache_eviction(const vn_row_cache *c) {
  return c ? c->eviction : VN_EVICT_CLOCK;
}

void vn_row_cache_stats_get(const vn_row_cache *c, vn_row_cache_stats *out) {
  memset(out, 0, sizeof *out);
  if (c) *out = c->stats;
}

void vn_row_cache_reset_stats(vn_row_cache *c) {
  if (c) memset(&c->stats, 0, sizeof c->stats);
}
