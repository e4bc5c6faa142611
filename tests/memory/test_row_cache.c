/* Tests of the row cache bookkeeping against a simulated device (a host array of slots):
 * gathers through the cache are bit-identical to direct gathers for every slot count, both
 * eviction policies and all dtypes, and every counter adds up. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "row_cache.h"
#include "test_util.h"

static uint64_t rng_next(uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unit(uint64_t *state) {
  return (double)(rng_next(state) >> 11) / 9007199254740992.0;
}

/* Zipf-like rows: rank k (0-based) has weight 1/(k+1)^1.1, ranks are a fixed permutation of
 * the table so that hot rows are scattered over it. */
typedef struct zipf {
  int64_t n;
  double *cdf;
  int64_t *perm;
} zipf;

static zipf zipf_new(int64_t n, uint64_t seed) {
  zipf z = {n, malloc((size_t)n * sizeof(double)), malloc((size_t)n * sizeof(int64_t))};
  double total = 0;
  for (int64_t k = 0; k < n; ++k) {
    total += 1.0 / pow((double)(k + 1), 1.1);
    z.cdf[k] = total;
    z.perm[k] = k;
  }
  for (int64_t k = 0; k < n; ++k) z.cdf[k] /= total;
  uint64_t st = seed;
  for (int64_t k = n - 1; k > 0; --k) {
    int64_t j = (int64_t)(rng_next(&st) % (uint64_t)(k + 1));
    int64_t t = z.perm[k];
    z.perm[k] = z.perm[j];
    z.perm[j] = t;
  }
  return z;
}

static int64_t zipf_draw(const zipf *z, uint64_t *st) {
  double u = rng_unit(st);
  int64_t lo = 0, hi = z->n - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    if (z->cdf[mid] < u)
      lo = mid + 1;
    else
      hi = mid;
  }
  return z->perm[lo];
}

static void zipf_free(zipf *z) {
  free(z->cdf);
  free(z->perm);
}

/* A simulated device: slot memory on the host, plus the test's own record of which row each
 * slot holds (updated only by the fetches the cache asked for). */
typedef struct sim {
  vn_row_cache *cache;
  int32_t slots;
  size_t row_bytes;
  const uint8_t *table;
  int64_t table_rows;
  uint8_t *slot_mem;
  int64_t *slot_row; /* -1: never fetched */
} sim;

static int64_t count_distinct(const int64_t *rows, int64_t a, int64_t b) {
  int64_t d = 0;
  for (int64_t i = a; i < b; ++i) {
    int64_t j = a;
    while (j < i && rows[j] != rows[i]) ++j;
    if (j == i) ++d;
  }
  return d;
}

static int in_range(const int64_t *rows, int64_t a, int64_t b, int64_t row) {
  for (int64_t i = a; i < b; ++i)
    if (rows[i] == row) return 1;
  return 0;
}

/* Check's ck_assert writes a checkpoint to a pipe on every call, which costs more than the
 * cache itself in these loops; these fail the same way but only do work when they fail. */
#define EXPECT(cond)                                                          \
  do {                                                                        \
    if (!(cond)) ck_abort_msg("%s:%d: %s failed", __FILE__, __LINE__, #cond); \
  } while (0)
#define EXPECT_OP(a, op, b)                                                                     \
  do {                                                                                          \
    long long x_ = (long long)(a), y_ = (long long)(b);                                         \
    if (!(x_ op y_))                                                                            \
      ck_abort_msg("%s:%d: %s %s %s failed: %lld vs %lld", __FILE__, __LINE__, #a, #op, #b, x_, \
                   y_);                                                                         \
  } while (0)
#define EXPECT_EQ(a, b) EXPECT_OP(a, ==, b)
#define EXPECT_NE(a, b) EXPECT_OP(a, !=, b)
#define EXPECT_LT(a, b) EXPECT_OP(a, <, b)
#define EXPECT_LE(a, b) EXPECT_OP(a, <=, b)
#define EXPECT_GT(a, b) EXPECT_OP(a, >, b)
#define EXPECT_GE(a, b) EXPECT_OP(a, >=, b)

/* Runs one lookup of n rows through the cache into out, checking every chunk's contract. */
static void sim_lookup(sim *s, const int64_t *rows, int64_t n, uint8_t *out) {
  int32_t *slots = malloc((size_t)(n ? n : 1) * sizeof *slots);
  int32_t *before = malloc((size_t)(n ? n : 1) * sizeof *before);
  vn_row_fetch *fetch = malloc((size_t)(n ? n : 1) * sizeof *fetch);
  int64_t start = 0, next = 0;
  do {
    for (int64_t i = start; i < n; ++i) before[i] = vn_row_cache_find(s->cache, rows[i]);
    int32_t resident_before = vn_row_cache_resident(s->cache);
    vn_row_cache_stats st0, st1;
    vn_row_cache_stats_get(s->cache, &st0);
    int64_t n_fetch = -1;
    for (int64_t i = 0; i < n; ++i) slots[i] = -7;
    EXPECT_EQ(vn_row_cache_plan(s->cache, rows, n, start, slots, fetch, &n_fetch, &next), VNRT_OK);
    vn_row_cache_stats_get(s->cache, &st1);
    if (n == start) {
      EXPECT_EQ(next, n);
      EXPECT_EQ(n_fetch, 0);
      break;
    }
    EXPECT_GT(next, start); /* progress */
    EXPECT_LE(next, n);
    const int64_t distinct = count_distinct(rows, start, next);
    EXPECT_LE(distinct, s->slots);
    /* The chunk is as long as the cache allows: it ends only where one more row would not fit. */
    if (next < n) {
      EXPECT_EQ(distinct, s->slots);
      EXPECT(!in_range(rows, start, next, rows[next]));
    }
    EXPECT_LE(n_fetch, s->slots);
    /* Fetch list: distinct rows, distinct slots, only rows of the chunk that were not resident. */
    for (int64_t k = 0; k < n_fetch; ++k) {
      EXPECT(in_range(rows, start, next, fetch[k].row));
      EXPECT_GE(fetch[k].slot, 0);
      EXPECT_LT(fetch[k].slot, s->slots);
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_NE(fetch[j].row, fetch[k].row);
        EXPECT_NE(fetch[j].slot, fetch[k].slot);
      }
    }
    int64_t expect_hits = 0;
    for (int64_t i = start; i < next; ++i) {
      EXPECT_GE(slots[i], 0);
      EXPECT_LT(slots[i], s->slots);
      int first = !in_range(rows, start, i, rows[i]);
      int fetched = 0;
      for (int64_t k = 0; k < n_fetch; ++k) fetched |= fetch[k].row == rows[i];
      if (before[i] >= 0) {
        /* Resident before: a hit, in the same slot, and never fetched again. */
        EXPECT_EQ(slots[i], before[i]);
        EXPECT(!fetched);
        expect_hits += first;
      } else {
        EXPECT(fetched);
      }
      /* One row per slot within the chunk: no slot of the chunk was reused by a later entry. */
      for (int64_t j = start; j < i; ++j) {
        EXPECT_EQ(rows[j] == rows[i], slots[j] == slots[i]);
      }
    }
    for (int64_t i = next; i < n; ++i) EXPECT_EQ(slots[i], -7); /* untouched */
    /* Counters. */
    const uint64_t misses = st1.misses - st0.misses, hits = st1.hits - st0.hits;
    const uint64_t evictions = st1.evictions - st0.evictions;
    EXPECT_EQ(st1.chunks - st0.chunks, 1);
    EXPECT_EQ(st1.entries - st0.entries, (uint64_t)(next - start));
    EXPECT_EQ(st1.unique - st0.unique, (uint64_t)distinct);
    EXPECT_EQ(hits + misses, (uint64_t)distinct);
    EXPECT_EQ(hits, (uint64_t)expect_hits);
    EXPECT_EQ(misses, (uint64_t)n_fetch);
    EXPECT_EQ(st1.bytes - st0.bytes, (uint64_t)n_fetch * s->row_bytes);
    const int64_t free_before = s->slots - resident_before;
    const int64_t expect_evictions = n_fetch > free_before ? n_fetch - free_before : 0;
    EXPECT_EQ(evictions, (uint64_t)expect_evictions);
    EXPECT_EQ(vn_row_cache_resident(s->cache), resident_before + n_fetch - expect_evictions);

    /* The device side: copy the misses into their slots, then gather the chunk from slots. */
    for (int64_t k = 0; k < n_fetch; ++k) {
      EXPECT_LT(fetch[k].row, s->table_rows);
      memcpy(s->slot_mem + (size_t)fetch[k].slot * s->row_bytes,
             s->table + (size_t)fetch[k].row * s->row_bytes, s->row_bytes);
      s->slot_row[fetch[k].slot] = fetch[k].row;
    }
    for (int64_t i = start; i < next; ++i) {
      EXPECT_EQ(s->slot_row[slots[i]], rows[i]); /* the slot really holds the row */
      memcpy(out + (size_t)i * s->row_bytes, s->slot_mem + (size_t)slots[i] * s->row_bytes,
             s->row_bytes);
    }
    /* The map agrees with what the device holds, for every slot (an eviction always hands
     * the slot to a fetched row, so the record is never stale). */
    int32_t held = 0;
    for (int32_t q = 0; q < s->slots; ++q) {
      if (s->slot_row[q] < 0) continue;
      EXPECT_EQ(vn_row_cache_find(s->cache, s->slot_row[q]), q);
      ++held;
    }
    EXPECT_EQ(held, vn_row_cache_resident(s->cache));
    start = next;
  } while (start < n);
  free(slots);
  free(before);
  free(fetch);
}

static void fill_table(uint8_t *table, vnrt_dtype dtype, int64_t count, uint64_t seed) {
  uint64_t st = seed;
  for (int64_t i = 0; i < count; ++i) {
    float v = (float)(rng_unit(&st) * 8.0 - 4.0);
    if (dtype == VNRT_F32) {
      memcpy(table + (size_t)i * 4, &v, 4);
    } else {
      uint16_t h = dtype == VNRT_F16 ? vnrt_f32_to_f16(v) : vnrt_f32_to_bf16(v);
      memcpy(table + (size_t)i * 2, &h, 2);
    }
  }
}

/* Random tables of each dtype, Zipf rows with repeats, several lookups per cache (hits across
 * calls), slot counts 1, 2, 7, 64 and R + 5, both policies: each lookup through the cache is
 * byte-for-byte the direct gather. */
START_TEST(cache_gathers_equal_direct_gathers) {
  const int64_t R = 97, D = 5, H = 4;
  const vnrt_dtype dtypes[] = {VNRT_F32, VNRT_F16, VNRT_BF16};
  const int64_t slot_counts[] = {1, 2, 7, 64, R + 5};
  const vn_eviction policies[] = {VN_EVICT_CLOCK, VN_EVICT_LRU};
  vnrt_context *ctx = tu_context();
  zipf z = zipf_new(R, 42);
  for (size_t di = 0; di < 3; ++di) {
    const size_t elem = vnrt_dtype_size(dtypes[di]);
    const size_t rb = (size_t)D * elem;
    uint8_t *table = malloc((size_t)R * rb);
    fill_table(table, dtypes[di], R * D, 100 + di);
    for (size_t si = 0; si < 5; ++si) {
      for (size_t pi = 0; pi < 2; ++pi) {
        sim s = {
            .slots = (int32_t)slot_counts[si], .row_bytes = rb, .table = table, .table_rows = R};
        TU_OK(ctx, vn_row_cache_create(ctx, slot_counts[si], policies[pi], rb, &s.cache));
        s.slot_mem = malloc((size_t)s.slots * rb);
        memset(s.slot_mem, 0xcd, (size_t)s.slots * rb);
        s.slot_row = malloc((size_t)s.slots * sizeof *s.slot_row);
        for (int32_t q = 0; q < s.slots; ++q) s.slot_row[q] = -1;
        uint64_t st = 7 + 31 * di + 5 * si + pi;
        uint64_t total_entries = 0;
        for (int call = 0; call < 8; ++call) {
          const int64_t T = 1 + (int64_t)(rng_next(&st) % 40);
          const int64_t n = T * H;
          int64_t *rows = malloc((size_t)n * sizeof *rows);
          for (int64_t i = 0; i < n; ++i) rows[i] = zipf_draw(&z, &st);
          if (call == 3) rows[n - 1] = rows[0]; /* a repeat at both ends of a call */
          uint8_t *got = malloc((size_t)n * rb), *want = malloc((size_t)n * rb);
          memset(got, 0, (size_t)n * rb);
          for (int64_t i = 0; i < n; ++i) {
            for (size_t b = 0; b < rb; ++b)
              want[(size_t)i * rb + b] = table[(size_t)rows[i] * rb + b];
          }
          sim_lookup(&s, rows, n, got);
          ck_assert_msg(memcmp(got, want, (size_t)n * rb) == 0,
                        "%s, %d slots, policy %d, call %d: cached gather differs",
                        vnrt_dtype_name(dtypes[di]), s.slots, (int)policies[pi], call);
          total_entries += (uint64_t)n;
          free(rows);
          free(got);
          free(want);
        }
        vn_row_cache_stats stats;
        vn_row_cache_stats_get(s.cache, &stats);
        ck_assert_uint_eq(stats.entries, total_entries);
        ck_assert_uint_eq(stats.hits + stats.misses, stats.unique);
        if (s.slots >= R) {
          /* A cache as large as the table never evicts, and fetches each row at most once. */
          ck_assert_uint_eq(stats.evictions, 0);
          ck_assert_uint_le(stats.misses, (uint64_t)R);
          ck_assert_uint_eq(stats.misses, (uint64_t)vn_row_cache_resident(s.cache));
        }
        if (s.slots >= 7) ck_assert_uint_gt(stats.hits, 0); /* Zipf rows repeat across calls */
        vn_row_cache_destroy(s.cache);
        free(s.slot_mem);
        free(s.slot_row);
      }
    }
    free(table);
  }
  zipf_free(&z);
  vnrt_context_destroy(ctx);
}
END_TEST

static vn_row_cache *make_cache(vnrt_context *ctx, int64_t slots, vn_eviction ev) {
  vn_row_cache *c = NULL;
  TU_OK(ctx, vn_row_cache_create(ctx, slots, ev, 16, &c));
  return c;
}

/* Plans a whole lookup that must fit in one chunk; returns the number of fetches. */
static int64_t plan_all(vnrt_context *ctx, vn_row_cache *c, const int64_t *rows, int64_t n,
                        int32_t *slots) {
  vn_row_fetch fetch[64];
  int64_t n_fetch = 0, next = 0;
  TU_OK(ctx, vn_row_cache_plan(c, rows, n, 0, slots, fetch, &n_fetch, &next));
  ck_assert_int_eq(next, n);
  return n_fetch;
}

START_TEST(one_slot_cache_works_in_chunks) {
  vnrt_context *ctx = tu_context();
  vn_row_cache *c = make_cache(ctx, 1, VN_EVICT_CLOCK);
  const int64_t rows[] = {5, 5, 6, 5, 5, 5};
  int32_t slots[6];
  vn_row_fetch fetch[1];
  int64_t n_fetch, next;
  const int64_t expect_next[] = {2, 3, 6};
  const int64_t expect_row[] = {5, 6, 5};
  int64_t start = 0;
  for (int k = 0; k < 3; ++k) {
    TU_OK(ctx, vn_row_cache_plan(c, rows, 6, start, slots, fetch, &n_fetch, &next));
    ck_assert_int_eq(next, expect_next[k]);
    ck_assert_int_eq(n_fetch, 1);
    ck_assert_int_eq(fetch[0].row, expect_row[k]);
    ck_assert_int_eq(fetch[0].slot, 0);
    for (int64_t i = start; i < next; ++i) ck_assert_int_eq(slots[i], 0);
    start = next;
  }
  /* Done: a plan at the end is a no-op. */
  TU_OK(ctx, vn_row_cache_plan(c, rows, 6, 6, slots, fetch, &n_fetch, &next));
  ck_assert_int_eq(next, 6);
  ck_assert_int_eq(n_fetch, 0);
  vn_row_cache_stats st;
  vn_row_cache_stats_get(c, &st);
  ck_assert_uint_eq(st.chunks, 3);
  ck_assert_uint_eq(st.entries, 6);
  ck_assert_uint_eq(st.unique, 3);
  ck_assert_uint_eq(st.misses, 3);
  ck_assert_uint_eq(st.hits, 0);
  ck_assert_uint_eq(st.evictions, 2);
  ck_assert_uint_eq(st.bytes, 3 * 16);
  /* Row 5 is still there: the next lookup of it is a hit. */
  const int64_t again[] = {5};
  ck_assert_int_eq(plan_all(ctx, c, again, 1, slots), 0);
  vn_row_cache_stats_get(c, &st);
  ck_assert_uint_eq(st.hits, 1);
  vn_row_cache_destroy(c);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(lru_evicts_the_least_recently_used_row) {
  vnrt_context *ctx = tu_context();
  vn_row_cache *c = make_cache(ctx, 3, VN_EVICT_LRU);
  int32_t slots[8];
  const int64_t a[] = {1, 2, 3}, b[] = {1}, d[] = {4}, e[] = {3, 5};
  ck_assert_int_eq(plan_all(ctx, c, a, 3, slots), 3);
  const int32_t slot2 = vn_row_cache_find(c, 2);
  ck_assert_int_eq(plan_all(ctx, c, b, 1, slots), 0); /* 1 becomes most recent */
  ck_assert_int_eq(plan_all(ctx, c, d, 1, slots), 1);
  ck_assert_int_eq(slots[0], slot2); /* 4 took 2's slot: 2 was least recent */
  ck_assert_int_eq(vn_row_cache_find(c, 2), -1);
  ck_assert_int_ge(vn_row_cache_find(c, 1), 0);
  ck_assert_int_ge(vn_row_cache_find(c, 3), 0);
  /* Order now (old to new): 3, 1, 4. Using 3 and fetching 5 must evict 1, not 3. */
  ck_assert_int_eq(plan_all(ctx, c, e, 2, slots), 1);
  ck_assert_int_eq(vn_row_cache_find(c, 1), -1);
  ck_assert_int_ge(vn_row_cache_find(c, 3), 0);
  ck_assert_int_ge(vn_row_cache_find(c, 4), 0);
  ck_assert_int_ge(vn_row_cache_find(c, 5), 0);
  ck_assert_int_eq(vn_row_cache_eviction(c), VN_EVICT_LRU);
  vn_row_cache_destroy(c);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(clock_gives_referenced_rows_a_second_chance) {
  vnrt_context *ctx = tu_context();
  vn_row_cache *c = make_cache(ctx, 3, VN_EVICT_CLOCK);
  int32_t slots[8];
  const int64_t a[] = {1, 2, 3}, d[] = {4}, b[] = {2}, e[] = {5};
  ck_assert_int_eq(plan_all(ctx, c, a, 3, slots), 3);
  /* Every bit is set: the hand clears all three and comes back to slot 0 (row 1). */
  ck_assert_int_eq(plan_all(ctx, c, d, 1, slots), 1);
  ck_assert_int_eq(vn_row_cache_find(c, 1), -1);
  ck_assert_int_eq(vn_row_cache_find(c, 4), 0);
  /* Touching 2 sets its bit; the hand (at slot 1 = row 2) skips it and takes row 3. */
  ck_assert_int_eq(plan_all(ctx, c, b, 1, slots), 0);
  ck_assert_int_eq(plan_all(ctx, c, e, 1, slots), 1);
  ck_assert_int_eq(vn_row_cache_find(c, 3), -1);
  ck_assert_int_eq(vn_row_cache_find(c, 2), 1);
  ck_assert_int_eq(vn_row_cache_find(c, 5), 2);
  vn_row_cache_destroy(c);
  vnrt_context_destroy(ctx);
}
END_TEST

/* New rows early in a lookup never displace resident rows used later in the same lookup. */
START_TEST(resident_rows_are_hits_wherever_they_appear) {
  vnrt_context *ctx = tu_context();
  for (int pol = 0; pol < 2; ++pol) {
    vn_row_cache *c = make_cache(ctx, 4, (vn_eviction)pol);
    int32_t slots[8];
    const int64_t warm[] = {1, 2};
    ck_assert_int_eq(plan_all(ctx, c, warm, 2, slots), 2);
    const int32_t s1 = vn_row_cache_find(c, 1), s2 = vn_row_cache_find(c, 2);
    const int64_t fill[] = {3, 4};
    ck_assert_int_eq(plan_all(ctx, c, fill, 2, slots), 2); /* now full: 1 and 2 are oldest */
    const int64_t late[] = {7, 8, 1, 2};
    ck_assert_int_eq(plan_all(ctx, c, late, 4, slots), 2);
    ck_assert_int_eq(slots[2], s1);
    ck_assert_int_eq(slots[3], s2);
    ck_assert_int_eq(vn_row_cache_find(c, 3), -1);
    ck_assert_int_eq(vn_row_cache_find(c, 4), -1);
    vn_row_cache_stats st;
    vn_row_cache_stats_get(c, &st);
    ck_assert_uint_eq(st.hits, 2);
    ck_assert_uint_eq(st.evictions, 2);
    vn_row_cache_destroy(c);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* An independent LRU model (last-use times) predicts the resident set after every call of a
 * long random run with chunking. */
START_TEST(lru_matches_a_timestamp_model) {
  vnrt_context *ctx = tu_context();
  const int32_t S = 5;
  vn_row_cache *c = make_cache(ctx, S, VN_EVICT_LRU);
  int64_t model_row[5], model_time[5];
  for (int q = 0; q < S; ++q) model_row[q] = -1, model_time[q] = -1;
  uint64_t st = 99;
  int64_t clock = 0;
  for (int call = 0; call < 300; ++call) {
    int64_t rows[12];
    const int64_t n = 1 + (int64_t)(rng_next(&st) % 12);
    for (int64_t i = 0; i < n; ++i) rows[i] = (int64_t)(rng_next(&st) % 9);
    int32_t slots[12];
    vn_row_fetch fetch[5];
    int64_t n_fetch, next;
    for (int64_t start = 0; start < n; start = next) {
      TU_OK(ctx, vn_row_cache_plan(c, rows, n, start, slots, fetch, &n_fetch, &next));
      /* Model, as specified: rows resident at the start of the chunk are hits and become most
       * recent in order of use; then each new row, in order of first use, takes a free slot or
       * the least recently used slot not used by this chunk, and becomes most recent. */
      const int64_t chunk_start_time = clock;
      int64_t new_rows[12];
      int n_new = 0;
      for (int64_t i = start; i < next; ++i) {
        int q = 0;
        while (q < S && model_row[q] != rows[i]) ++q;
        if (q < S) {
          if (model_time[q] < chunk_start_time) model_time[q] = clock++;
        } else {
          int seen = 0;
          for (int k = 0; k < n_new; ++k) seen |= new_rows[k] == rows[i];
          if (!seen) new_rows[n_new++] = rows[i];
        }
      }
      ck_assert_int_eq(n_new, n_fetch);
      for (int k = 0; k < n_new; ++k) {
        ck_assert_int_eq(fetch[k].row, new_rows[k]);
        int victim = -1;
        for (int r = 0; r < S; ++r) {
          if (model_row[r] < 0) {
            victim = r;
            break;
          }
        }
        if (victim < 0) {
          for (int r = 0; r < S; ++r) {
            if (model_time[r] >= chunk_start_time) continue; /* pinned */
            if (victim < 0 || model_time[r] < model_time[victim]) victim = r;
          }
        }
        ck_assert_int_ge(victim, 0);
        model_row[victim] = new_rows[k];
        model_time[victim] = clock++;
      }
      for (int r = 0; r < 9; ++r) {
        int q = 0;
        while (q < S && model_row[q] != r) ++q;
        ck_assert_msg((vn_row_cache_find(c, r) >= 0) == (q < S),
                      "call %d: row %d resident in the cache: %d, in the model: %d", call, r,
                      vn_row_cache_find(c, r) >= 0, q < S);
      }
    }
  }
  vn_row_cache_destroy(c);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(negative_row_fails_and_undoes_the_call) {
  vnrt_context *ctx = tu_context();
  for (int pol = 0; pol < 2; ++pol) {
    vn_row_cache *c = make_cache(ctx, 4, (vn_eviction)pol);
    int32_t slots[8];
    vn_row_fetch fetch[4];
    int64_t n_fetch = 9, next = 9;
    const int64_t warm[] = {1, 2, 3, 4};
    ck_assert_int_eq(plan_all(ctx, c, warm, 4, slots), 4);
    vn_row_cache_stats st0, st1;
    vn_row_cache_stats_get(c, &st0);
    const int64_t bad[] = {1, 7, 8, -3, 9};
    ck_assert_int_eq(vn_row_cache_plan(c, bad, 5, 0, slots, fetch, &n_fetch, &next),
                     VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_str_eq(vnrt_context_last_error(ctx),
                     "row cache plan: entry 3 asks for row -3; rows are >= 0");
    ck_assert_int_eq(n_fetch, 0);
    ck_assert_int_eq(vn_row_cache_find(c, 7), -1);
    ck_assert_int_eq(vn_row_cache_find(c, 8), -1);
    for (int64_t r = 1; r <= 4; ++r) ck_assert_int_ge(vn_row_cache_find(c, r), 0); /* kept */
    ck_assert_int_eq(vn_row_cache_resident(c), 4);
    vn_row_cache_stats_get(c, &st1);
    ck_assert_mem_eq(&st0, &st1, sizeof st0);
    /* The cache still works. */
    const int64_t more[] = {10, 11, 1};
    ck_assert_int_eq(plan_all(ctx, c, more, 3, slots), 2);
    vn_row_cache_stats_get(c, &st1);
    ck_assert_uint_eq(st1.evictions, st0.evictions + 2);
    ck_assert_uint_eq(st1.hits, st0.hits + 1);
    ck_assert_int_eq(vn_row_cache_resident(c), 4);
    vn_row_cache_destroy(c);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(clear_and_reset_and_bad_arguments) {
  vnrt_context *ctx = tu_context();
  vn_row_cache *c = NULL;
  ck_assert_int_eq(vn_row_cache_create(ctx, 0, VN_EVICT_CLOCK, 4, &c), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(c);
  ck_assert_int_eq(vn_row_cache_create(ctx, (int64_t)INT32_MAX + 1, VN_EVICT_CLOCK, 4, &c),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vn_row_cache_create(ctx, 4, (vn_eviction)9, 4, &c), VNRT_ERROR_INVALID_ARGUMENT);
  c = make_cache(ctx, 8, VN_EVICT_CLOCK);
  int32_t slots[4];
  vn_row_fetch fetch[4];
  int64_t n_fetch, next;
  const int64_t rows[] = {3, 1, 4, 1};
  ck_assert_int_eq(plan_all(ctx, c, rows, 4, slots), 3);
  ck_assert_int_eq(vn_row_cache_resident(c), 3);
  ck_assert_int_eq(vn_row_cache_slots(c), 8);
  ck_assert_int_eq(vn_row_cache_plan(c, rows, 4, 5, slots, fetch, &n_fetch, &next),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vn_row_cache_plan(c, rows, 4, -1, slots, fetch, &n_fetch, &next),
                   VNRT_ERROR_INVALID_ARGUMENT);
  vn_row_cache_clear(c);
  ck_assert_int_eq(vn_row_cache_resident(c), 0);
  ck_assert_int_eq(vn_row_cache_find(c, 3), -1);
  ck_assert_int_eq(plan_all(ctx, c, rows, 4, slots), 3); /* all misses again */
  vn_row_cache_stats st;
  vn_row_cache_stats_get(c, &st);
  ck_assert_uint_eq(st.misses, 6);
  vn_row_cache_reset_stats(c);
  vn_row_cache_stats_get(c, &st);
  ck_assert_uint_eq(st.misses + st.hits + st.chunks + st.entries + st.bytes, 0);
  ck_assert_int_eq(vn_row_cache_resident(c), 3); /* reset keeps the rows */
  vn_row_cache_destroy(c);
  vn_row_cache_destroy(NULL);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Long churn over a wide range of rows (many evictions and backward-shift deletions): the map
 * stays exact — checked by sim_lookup after every chunk — with large row ids too. */
START_TEST(map_stays_exact_under_heavy_churn) {
  vnrt_context *ctx = tu_context();
  const int64_t R = 5000;
  const size_t rb = 8;
  uint8_t *table = malloc((size_t)R * rb);
  fill_table(table, VNRT_F32, R * 2, 5);
  for (int pol = 0; pol < 2; ++pol) {
    sim s = {.slots = 33, .row_bytes = rb, .table = table, .table_rows = R};
    TU_OK(ctx, vn_row_cache_create(ctx, s.slots, (vn_eviction)pol, rb, &s.cache));
    s.slot_mem = calloc((size_t)s.slots, rb);
    s.slot_row = malloc((size_t)s.slots * sizeof *s.slot_row);
    for (int32_t q = 0; q < s.slots; ++q) s.slot_row[q] = -1;
    uint64_t st = 1234 + (uint64_t)pol;
    for (int call = 0; call < 200; ++call) {
      int64_t rows[48];
      uint8_t got[48 * 8];
      for (int i = 0; i < 48; ++i) {
        /* Half the rows from a small hot set, half uniform: hits and evictions together. */
        rows[i] = (rng_next(&st) & 1) ? (int64_t)(rng_next(&st) % 20) * 128
                                      : (int64_t)(rng_next(&st) % (uint64_t)R);
      }
      sim_lookup(&s, rows, 48, got);
      for (int i = 0; i < 48; ++i) EXPECT(memcmp(got + i * rb, table + rows[i] * rb, rb) == 0);
    }
    vn_row_cache_destroy(s.cache);
    free(s.slot_mem);
    free(s.slot_row);
  }
  /* Row ids far beyond any table still hash and compare correctly. */
  vn_row_cache *c = make_cache(ctx, 4, VN_EVICT_LRU);
  int32_t slots[4];
  const int64_t big[] = {INT64_MAX, INT64_MAX - 1, 1ll << 40, INT64_MAX};
  ck_assert_int_eq(plan_all(ctx, c, big, 4, slots), 3);
  ck_assert_int_eq(slots[0], slots[3]);
  ck_assert_int_eq(vn_row_cache_find(c, INT64_MAX - 1), slots[1]);
  vn_row_cache_destroy(c);
  free(table);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("row_cache");
  TCase *tc = tcase_create("row_cache");
  tcase_add_test(tc, cache_gathers_equal_direct_gathers);
  tcase_add_test(tc, one_slot_cache_works_in_chunks);
  tcase_add_test(tc, lru_evicts_the_least_recently_used_row);
  tcase_add_test(tc, clock_gives_referenced_rows_a_second_chance);
  tcase_add_test(tc, resident_rows_are_hits_wherever_they_appear);
  tcase_add_test(tc, lru_matches_a_timestamp_model);
  tcase_add_test(tc, negative_row_fails_and_undoes_the_call);
  tcase_add_test(tc, clear_and_reset_and_bad_arguments);
  tcase_add_test(tc, map_stays_exact_under_heavy_churn);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
