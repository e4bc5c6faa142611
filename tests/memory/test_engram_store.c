/* Tests of the Engram store: tables in host memory, raw files and safetensors files; lookups
 * equal to engram_lookup computed here for every cache size; truncated files, bad rows and bad
 * descriptions failing with messages that name the problem; a sparse file table far larger than
 * RAM and than a device budget. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "engram_store.h"
#include "test_util.h"
#include "vnrt/io.h"
#include "vnrt/memory.h"

static char g_dir[64];

static void make_dir(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/vnrt_engram_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static const char *path_in_dir(const char *name) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  return path;
}

static uint64_t rng_next(uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A table of R x D values of dtype: the values as doubles (what the test expects) and their
 * stored bytes. */
typedef struct table {
  int64_t R, D;
  vnrt_dtype dtype;
  size_t elem;
  double *values;
  uint8_t *bytes;
} table;

static table table_new(int64_t R, int64_t D, vnrt_dtype dtype, uint64_t seed) {
  table t = {R,
             D,
             dtype,
             vnrt_dtype_size(dtype),
             malloc((size_t)(R * D) * sizeof(double)),
             malloc((size_t)(R * D) * vnrt_dtype_size(dtype))};
  uint64_t st = seed;
  for (int64_t i = 0; i < R * D; ++i) {
    /* Multiples of 1/16 in [-8, 8): exact in f32, f16 and bf16 (<= 7 significant bits). */
    float v = (float)((int64_t)(rng_next(&st) % 256) - 128) / 16.0f;
    t.values[i] = v;
    if (dtype == VNRT_F32) {
      memcpy(t.bytes + i * 4, &v, 4);
    } else {
      uint16_t h = dtype == VNRT_F16 ? vnrt_f32_to_f16(v) : vnrt_f32_to_bf16(v);
      memcpy(t.bytes + i * 2, &h, 2);
    }
  }
  return t;
}

static void table_free(table *t) {
  free(t->values);
  free(t->bytes);
}

static double element(const void *data, vnrt_dtype dtype, int64_t i) {
  if (dtype == VNRT_F32) {
    float f;
    memcpy(&f, (const uint8_t *)data + i * 4, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, (const uint8_t *)data + i * 2, 2);
  return dtype == VNRT_F16 ? vnrt_f16_to_f32(h) : vnrt_bf16_to_f32(h);
}

/* Asserts out == engram_lookup(table, idx, offsets) element by element, from the spec:
 * e[t, h·D + d] = table[offsets[h] + idx[t, h], d]. */
static void check_lookup(const table *t, const int32_t *idx, int64_t T, int32_t H,
                         const int32_t *offsets, const void *out, const char *what) {
  for (int64_t tt = 0; tt < T; ++tt) {
    for (int32_t h = 0; h < H; ++h) {
      const int64_t row = (int64_t)offsets[h] + idx[tt * H + h];
      for (int64_t d = 0; d < t->D; ++d) {
        double want = t->values[row * t->D + d];
        double got = element(out, t->dtype, (tt * H + h) * t->D + d);
        if (got != want) { /* (ck_assert costs a pipe write per call: only fail here) */
          ck_abort_msg("%s: e[%lld, %d*D+%lld] = %g, expected %g (row %lld)", what, (long long)tt,
                       h, (long long)d, got, want, (long long)row);
        }
      }
    }
  }
}

/* Random idx[T, H] within each head's range [0, per_head), with a Zipf-ish skew (squares of
 * uniforms) so that rows repeat within and across lookups. */
static void random_idx(int32_t *idx, int64_t T, int32_t H, int32_t per_head, uint64_t *st) {
  for (int64_t i = 0; i < T * H; ++i) {
    double u = (double)(rng_next(st) >> 11) / 9007199254740992.0;
    idx[i] = (int32_t)(u * u * u * per_head);
  }
}

static vnrt_engram_store *make_store(vnrt_context *ctx, const vnrt_engram_store_desc *d) {
  vnrt_engram_store *s = NULL;
  TU_OK(ctx, vnrt_engram_store_create(ctx, d, &s));
  ck_assert_ptr_nonnull(s);
  return s;
}

/* Every dtype x cache size (off, 1, 2, 7, 64, R + 5) x policy, over a host table of 4 heads:
 * each lookup equals the spec, and the counters add up. */
START_TEST(host_lookups_match_the_spec_for_every_cache) {
  vnrt_context *ctx = tu_context();
  const int32_t H = 4, per_head = 29;
  const int64_t R = H * per_head, D = 3;
  const int32_t offsets[4] = {0, 29, 58, 87};
  const vnrt_dtype dtypes[] = {VNRT_F32, VNRT_F16, VNRT_BF16};
  const int64_t caches[] = {0, 1, 2, 7, 64, R + 5};
  for (int di = 0; di < 3; ++di) {
    table t = table_new(R, D, dtypes[di], 11 + (uint64_t)di);
    for (int ci = 0; ci < 6; ++ci) {
      for (int pol = 0; pol < 2; ++pol) {
        if (caches[ci] == 0 && pol == 1) continue;
        vnrt_engram_store_desc desc = {0};
        desc.rows = R;
        desc.dim = D;
        desc.dtype = dtypes[di];
        desc.host_data = t.bytes;
        desc.cache_slots = caches[ci];
        desc.eviction = pol ? VNRT_EVICTION_LRU : VNRT_EVICTION_CLOCK;
        vnrt_engram_store *s = make_store(ctx, &desc);
        uint64_t st = 3 + (uint64_t)ci;
        uint64_t requested = 0;
        for (int call = 0; call < 6; ++call) {
          const int64_t T = 1 + (int64_t)(rng_next(&st) % 24);
          int32_t *idx = malloc((size_t)(T * H) * sizeof *idx);
          random_idx(idx, T, H, per_head, &st);
          const size_t bytes = (size_t)(T * H * D) * t.elem;
          void *out = malloc(bytes);
          TU_OK(ctx, vnrt_engram_store_lookup(s, idx, T, H, offsets, out, bytes));
          char what[96];
          snprintf(what, sizeof what, "%s, cache %lld, policy %d, call %d",
                   vnrt_dtype_name(dtypes[di]), (long long)caches[ci], pol, call);
          check_lookup(&t, idx, T, H, offsets, out, what);
          requested += (uint64_t)(T * H);
          free(idx);
          free(out);
        }
        vnrt_engram_stats stats = {.struct_size = sizeof stats};
        TU_OK(ctx, vnrt_engram_store_stats(s, &stats));
        ck_assert_uint_eq(stats.lookups, 6);
        ck_assert_uint_eq(stats.rows_requested, requested);
        ck_assert_uint_eq(stats.hits + stats.misses, stats.unique_rows);
        ck_assert_uint_eq(stats.bytes_fetched, stats.misses * (uint64_t)(D * (int64_t)t.elem));
        if (caches[ci] == 0) {
          ck_assert_uint_eq(stats.misses, requested);
          ck_assert_uint_eq(stats.unique_rows, requested);
          ck_assert_uint_eq(stats.hits, 0);
          ck_assert_int_eq(stats.cache_slots, 0);
          ck_assert_int_eq(stats.resident_rows, 0);
        } else {
          ck_assert_int_eq(stats.cache_slots, caches[ci] < R ? caches[ci] : R); /* clamped */
          ck_assert_uint_le(stats.unique_rows, requested);
          if (caches[ci] >= 7) ck_assert_uint_lt(stats.misses, requested); /* repeats hit */
          ck_assert_int_eq(stats.resident_rows, (int64_t)(stats.misses - stats.evictions));
        }
        if (caches[ci] >= R) ck_assert_uint_eq(stats.evictions, 0);
        vnrt_engram_store_destroy(s);
      }
    }
    table_free(&t);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* Rows of whole cache lines (D = 64 f16, 32 and 64 f32, 96 bf16) and of odd sizes (40 f16,
 * 33 f32), in lookups far longer than the gather's prefetch distance, with the cache off (rows
 * copied straight to the output), tiny and large: every row, the table's last ones too, equals
 * the spec. */
START_TEST(wide_rows_in_long_lookups_match_the_spec) {
  vnrt_context *ctx = tu_context();
  const struct {
    vnrt_dtype dtype;
    int64_t D;
  } shapes[] = {{VNRT_F16, 64},  {VNRT_F32, 32}, {VNRT_F32, 64},
                {VNRT_BF16, 96}, {VNRT_F16, 40}, {VNRT_F32, 33}};
  const int32_t H = 4, per_head = 97;
  const int64_t R = H * per_head;
  const int32_t offsets[4] = {0, 97, 194, 291};
  const int64_t caches[] = {0, 1, 64, R + 5};
  for (size_t si = 0; si < VN_ARRAY_SIZE(shapes); ++si) {
    table t = table_new(R, shapes[si].D, shapes[si].dtype, 101 + si);
    for (size_t ci = 0; ci < VN_ARRAY_SIZE(caches); ++ci) {
      vnrt_engram_store_desc desc = {0};
      desc.rows = R;
      desc.dim = t.D;
      desc.dtype = t.dtype;
      desc.host_data = t.bytes;
      desc.cache_slots = caches[ci];
      vnrt_engram_store *s = make_store(ctx, &desc);
      uint64_t st = 9 + si * 16 + ci;
      const int64_t T = 300;
      int32_t *idx = malloc((size_t)(T * H) * sizeof *idx);
      for (int call = 0; call < 3; ++call) {
        random_idx(idx, T, H, per_head, &st);
        /* The last rows of the table and of each head, near the end of the lookup too. */
        for (int32_t h = 0; h < H; ++h) idx[(T - 1) * H + h] = per_head - 1;
        idx[0] = per_head - 1;
        const size_t bytes = (size_t)(T * H * t.D) * t.elem;
        void *out = malloc(bytes);
        TU_OK(ctx, vnrt_engram_store_lookup(s, idx, T, H, offsets, out, bytes));
        char what[96];
        snprintf(what, sizeof what, "%s D=%lld, cache %lld, call %d", vnrt_dtype_name(t.dtype),
                 (long long)t.D, (long long)caches[ci], call);
        check_lookup(&t, idx, T, H, offsets, out, what);
        free(out);
      }
      free(idx);
      vnrt_engram_store_destroy(s);
    }
    table_free(&t);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(host_data_is_borrowed_or_copied) {
  vnrt_context *ctx = tu_context();
  table t = table_new(10, 4, VNRT_F32, 5);
  vnrt_engram_store_desc desc = {0}; /* dtype 0 = f32 */
  desc.rows = 10;
  desc.dim = 4;
  desc.host_data = t.bytes;
  vnrt_engram_store *borrowed = make_store(ctx, &desc);
  desc.copy_host_data = 1;
  vnrt_engram_store *copied = make_store(ctx, &desc);
  ck_assert_int_eq(vn_engram_store_tier(copied), VN_TIER_HOST);
  ck_assert_int_eq(vn_engram_store_dtype(copied), VNRT_F32);
  const float changed = 123.5f;
  memcpy(t.bytes + (6 * 4 + 2) * 4, &changed, 4); /* row 6, column 2 */
  const int32_t idx[1] = {6}, off[1] = {0};
  float a[4], b[4];
  TU_OK(ctx, vnrt_engram_store_lookup(borrowed, idx, 1, 1, off, a, sizeof a));
  TU_OK(ctx, vnrt_engram_store_lookup(copied, idx, 1, 1, off, b, sizeof b));
  ck_assert_float_eq(a[2], 123.5f);
  ck_assert_float_eq(b[2], (float)t.values[6 * 4 + 2]);
  ck_assert_float_eq(a[0], b[0]);
  vnrt_engram_store_destroy(borrowed);
  vnrt_engram_store_destroy(copied);
  table_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

static void write_file(const char *path, const void *data, size_t bytes, size_t pad_before,
                       size_t pad_after) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  for (size_t i = 0; i < pad_before; ++i) fputc((int)(0xa5 ^ i), f);
  ck_assert_uint_eq(fwrite(data, 1, bytes, f), bytes);
  for (size_t i = 0; i < pad_after; ++i) fputc(0x5a, f);
  ck_assert_int_eq(fclose(f), 0);
}

/* Raw files at offsets inside the first page, past it, and on a page boundary. */
/* A copy of a large table (>= 2 MiB) is the store's own: with the C library's allocator it is
 * an anonymous mapping that asks for huge pages, with a caller's allocator it is one more block
 * of that allocator. Either way lookups read the copy, not the caller's (changed) bytes. */
START_TEST(large_copies_use_the_callers_allocator_or_huge_pages) {
  const int64_t R = 8192, D = 64; /* 2 MiB of f32 */
  table t = table_new(R, D, VNRT_F32, 21);
  tu_alloc fa = {.countdown = -1};
  for (int custom = 0; custom < 2; ++custom) {
    vnrt_context *ctx = NULL;
    vnrt_context_desc cd = {0};
    if (custom) cd.allocator = tu_allocator(&fa);
    TU_OK(ctx, vnrt_context_create(&cd, &ctx));
    vnrt_engram_store_desc desc = {0};
    desc.rows = R;
    desc.dim = D;
    desc.host_data = t.bytes;
    long live0 = fa.live;
    vnrt_engram_store *borrowed = make_store(ctx, &desc);
    long live_borrowed = fa.live - live0;
    desc.copy_host_data = 1;
    live0 = fa.live;
    vnrt_engram_store *copied = make_store(ctx, &desc);
    if (custom) ck_assert_int_eq(fa.live - live0, live_borrowed + 1); /* + the table copy */
    float *src = (float *)t.bytes;
    const float saved = src[(R - 1) * D + 5];
    src[(R - 1) * D + 5] = 1234.5f; /* the caller changes its table after the copy */
    int32_t idx[4] = {0, (int32_t)(R - 1), 4097, (int32_t)(R - 1)}, off[1] = {0};
    float *out = malloc(4 * D * sizeof *out);
    TU_OK(ctx, vnrt_engram_store_lookup(copied, idx, 4, 1, off, out, 4 * D * sizeof *out));
    check_lookup(&t, idx, 4, 1, off, out, custom ? "copy, caller's allocator" : "copy, mapped");
    TU_OK(ctx, vnrt_engram_store_lookup(borrowed, idx, 4, 1, off, out, 4 * D * sizeof *out));
    ck_assert_float_eq(out[D + 5], 1234.5f);
    src[(R - 1) * D + 5] = saved;
    free(out);
    vnrt_engram_store_destroy(copied);
    vnrt_engram_store_destroy(borrowed);
    vnrt_context_destroy(ctx);
  }
  ck_assert_int_eq(fa.live, 0);
  table_free(&t);
}
END_TEST

START_TEST(raw_file_tables_at_any_offset) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const int64_t R = 50, D = 7;
  const uint64_t offsets_in_file[] = {0, 13, 5000, 8192};
  for (int di = 0; di < 3; ++di) {
    const vnrt_dtype dt = di == 0 ? VNRT_F32 : di == 1 ? VNRT_F16 : VNRT_BF16;
    table t = table_new(R, D, dt, 77 + (uint64_t)di);
    for (int oi = 0; oi < 4; ++oi) {
      const char *path = path_in_dir("table.bin");
      write_file(path, t.bytes, (size_t)(R * D) * t.elem, offsets_in_file[oi], 3);
      vnrt_engram_store_desc desc = {0};
      desc.rows = R;
      desc.dim = D;
      desc.dtype = dt;
      desc.file_path = path;
      desc.file_offset = offsets_in_file[oi];
      desc.cache_slots = oi; /* 0 (off), 1, 2, 3 */
      vnrt_engram_store *s = make_store(ctx, &desc);
      unlink(path); /* the mapping keeps the data */
      ck_assert_int_eq(vn_engram_store_tier(s), VN_TIER_FILE_MAPPED);
      ck_assert_uint_eq(vn_engram_store_table_bytes(s), (uint64_t)(R * D) * t.elem);
      const int32_t H = 2, off[2] = {0, 25};
      int32_t idx[2 * 9];
      uint64_t st = (uint64_t)oi;
      random_idx(idx, 9, H, 25, &st);
      idx[0] = 0;          /* the first row */
      idx[2 * 9 - 1] = 24; /* the last row: 25 + 24 = 49 */
      uint8_t out[2 * 9 * 7 * 4];
      const size_t bytes = (size_t)(9 * H * D) * t.elem;
      TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 9, H, off, out, bytes));
      check_lookup(&t, idx, 9, H, off, out, "raw file");
      /* The private copy path gives the same rows. */
      const int64_t rows[3] = {49, 0, 17};
      uint8_t g[3 * 7 * 4];
      TU_OK(ctx, vn_engram_store_gather_rows(s, rows, 3, g));
      for (int k = 0; k < 3; ++k) {
        for (int64_t d = 0; d < D; ++d) {
          ck_assert(element(g, dt, k * D + d) == t.values[rows[k] * D + d]);
        }
      }
      vnrt_engram_store_destroy(s);
    }
    table_free(&t);
  }
  rmdir(g_dir);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(truncated_and_missing_files_fail_with_the_sizes) {
  vnrt_context *ctx = tu_context();
  make_dir();
  table t = table_new(20, 8, VNRT_BF16, 9);
  const char *path = path_in_dir("short.bin");
  /* 20 x 8 bf16 = 320 bytes at offset 100 need 420; the file has 419. */
  write_file(path, t.bytes, 319, 100, 0);
  vnrt_engram_store_desc desc = {0};
  desc.rows = 20;
  desc.dim = 8;
  desc.dtype = VNRT_BF16;
  desc.file_path = path;
  desc.file_offset = 100;
  vnrt_engram_store *s = (vnrt_engram_store *)1;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_IO);
  ck_assert_ptr_null(s);
  char want[512];
  snprintf(want, sizeof want,
           "Engram table file %s is truncated: 20 x 8 bf16 rows at offset 100 need 420 bytes in "
           "all, but the file has 419",
           path);
  ck_assert_str_eq(vnrt_context_last_error(ctx), want);
  /* One byte more is enough. */
  write_file(path, t.bytes, 320, 100, 0);
  s = make_store(ctx, &desc);
  vnrt_engram_store_destroy(s);
  /* An offset past the end. */
  desc.file_offset = 1u << 20;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "the file has 420"));
  /* An offset so large the sum overflows. */
  desc.file_offset = UINT64_MAX - 10;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "truncated"));
  unlink(path);
  desc.file_offset = 0;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), path));
  desc.file_path = g_dir; /* a directory */
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "not a regular file"));
  rmdir(g_dir);
  table_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(safetensors_tensor_as_table) {
  vnrt_context *ctx = tu_context();
  make_dir();
  table t = table_new(31, 6, VNRT_F16, 21);
  const float other[3] = {1, 2, 3};
  const char *names[2] = {"bias", "engram.table"};
  const vnrt_tensor_type types[2] = {{VNRT_F32, 1, {3}}, {VNRT_F16, 2, {31, 6}}};
  const void *datas[2] = {other, t.bytes};
  const char *path = path_in_dir("w.safetensors");
  TU_OK(ctx, vnrt_safetensors_write(ctx, path, names, types, datas, 2));

  vnrt_engram_store_desc desc = {0}; /* rows, dim, dtype from the tensor */
  desc.file_path = path;
  desc.tensor_name = "engram.table";
  desc.cache_slots = 4;
  vnrt_engram_store *s = make_store(ctx, &desc);
  ck_assert_int_eq(vn_engram_store_rows(s), 31);
  ck_assert_int_eq(vn_engram_store_dim(s), 6);
  ck_assert_int_eq(vn_engram_store_dtype(s), VNRT_F16);
  const int32_t idx[6] = {30, 0, 7, 7, 30, 12}, off[2] = {0, 0};
  uint16_t out[6 * 6];
  TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 3, 2, off, out, sizeof out));
  check_lookup(&t, idx, 3, 2, off, out, "safetensors");
  vnrt_engram_stats st = {.struct_size = sizeof st};
  TU_OK(ctx, vnrt_engram_store_stats(s, &st));
  ck_assert_uint_eq(st.unique_rows, 4);
  ck_assert_uint_eq(st.misses, 4);
  ck_assert_uint_eq(st.bytes_fetched, 4 * 12);
  vnrt_engram_store_destroy(s);

  desc.rows = 31; /* matching values are fine */
  desc.dtype = VNRT_F16;
  s = make_store(ctx, &desc);
  vnrt_engram_store_destroy(s);
  desc.dim = 5;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_SHAPE_MISMATCH);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "[31, 6]"));
  desc.dim = 0;
  desc.dtype = VNRT_BF16;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_SHAPE_MISMATCH);
  desc.dtype = 0;
  desc.tensor_name = "bias"; /* rank 1 */
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_SHAPE_MISMATCH);
  desc.tensor_name = "nope";
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_NOT_FOUND);
  desc.tensor_name = "engram.table";
  desc.file_offset = 8;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &desc, &s), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(s);
  unlink(path);
  rmdir(g_dir);
  table_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(out_of_range_rows_fail_before_writing) {
  vnrt_context *ctx = tu_context();
  table t = table_new(12, 2, VNRT_F32, 1);
  for (int cache = 0; cache < 2; ++cache) {
    vnrt_engram_store_desc desc = {0};
    desc.rows = 12;
    desc.dim = 2;
    desc.host_data = t.bytes;
    desc.cache_slots = cache ? 3 : 0;
    vnrt_engram_store *s = make_store(ctx, &desc);
    const int32_t off[2] = {0, 6};
    const int32_t idx[6] = {1, 2, 3, 4, 5, 6}; /* t=2, h=1: 6 + 6 = 12 = R */
    float out[12];
    memset(out, 0xab, sizeof out);
    float sentinel[12];
    memcpy(sentinel, out, sizeof out);
    ck_assert_int_eq(vnrt_engram_store_lookup(s, idx, 3, 2, off, out, sizeof out),
                     VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_str_eq(vnrt_context_last_error(ctx),
                     "engram lookup in table (host memory): row 12 (offsets[1]=6 + idx[2, 1]=6) "
                     "is out of range [0, 12)");
    ck_assert_mem_eq(out, sentinel, sizeof out);
    const int32_t neg_off[2] = {-2, 0};
    ck_assert_int_eq(vnrt_engram_store_lookup(s, idx, 3, 2, neg_off, out, sizeof out),
                     VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "row -1 (offsets[0]=-2"));
    ck_assert_mem_eq(out, sentinel, sizeof out);

    /* The copy path checks every row first, too. */
    const int64_t rows[3] = {0, 11, 12};
    ck_assert_int_eq(vn_engram_store_gather_rows(s, rows, 3, out), VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_str_eq(vnrt_context_last_error(ctx),
                     "Engram table (host memory): row 12 (entry 2) is out of range [0, 12)");
    ck_assert_mem_eq(out, sentinel, sizeof out);
    const vn_row_fetch bad_fetch[2] = {{3, 0}, {-1, 1}};
    ck_assert_int_eq(vn_engram_store_fetch_to_slots(s, bad_fetch, 2, out, 8),
                     VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_mem_eq(out, sentinel, sizeof out);

    /* Wrong output size. */
    const int32_t ok_idx[2] = {0, 0};
    ck_assert_int_eq(vnrt_engram_store_lookup(s, ok_idx, 1, 2, off, out, 15),
                     VNRT_ERROR_SHAPE_MISMATCH);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "out has 15 bytes"));
    vnrt_engram_stats st = {.struct_size = sizeof st};
    TU_OK(ctx, vnrt_engram_store_stats(s, &st));
    ck_assert_uint_eq(st.lookups, 0); /* failed lookups count nothing */
    ck_assert_uint_eq(st.bytes_fetched, 0);
    /* An empty lookup is fine. */
    TU_OK(ctx, vnrt_engram_store_lookup(s, NULL, 0, 2, off, NULL, 0));
    vnrt_engram_store_destroy(s);
  }
  table_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(bad_descriptions_are_rejected) {
  vnrt_context *ctx = tu_context();
  float data[8] = {0};
  vnrt_engram_store *s = (vnrt_engram_store *)1;
  vnrt_engram_store_desc d = {0};
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(s);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "exactly one"));
  d.host_data = data;
  d.file_path = "/tmp/x";
  d.rows = 2;
  d.dim = 4;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.file_path = NULL;
  d.rows = 0;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.rows = 2;
  d.dim = -4;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.dim = 4;
  d.dtype = VNRT_I32;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.dtype = VNRT_F32;
  d.cache_slots = -1;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.cache_slots = 0;
  d.eviction = (vnrt_eviction)5;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.eviction = VNRT_EVICTION_LRU;
  d.tensor_name = "t";
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  d.tensor_name = NULL;
  d.rows = INT64_MAX / 2;
  d.dim = 8;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "overflow"));
  ck_assert_int_eq(vnrt_engram_store_create(NULL, &d, &s), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_engram_store_create(ctx, NULL, &s), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(s);
  vnrt_engram_stats st = {.struct_size = sizeof st};
  ck_assert_int_eq(vnrt_engram_store_stats(NULL, &st), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_engram_store_destroy(NULL);
  vnrt_engram_store_reset_stats(NULL);
  vnrt_engram_store_clear_cache(NULL);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(stats_reset_and_cache_clear) {
  vnrt_context *ctx = tu_context();
  table t = table_new(40, 2, VNRT_F32, 2);
  vnrt_engram_store_desc desc = {0};
  desc.rows = 40;
  desc.dim = 2;
  desc.host_data = t.bytes;
  desc.cache_slots = 8;
  vnrt_engram_store *s = make_store(ctx, &desc);
  const int32_t idx[4] = {1, 2, 1, 3}, off[1] = {0};
  float out[8];
  TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 4, 1, off, out, sizeof out));
  TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 4, 1, off, out, sizeof out));
  vnrt_engram_stats st = {.struct_size = sizeof st};
  TU_OK(ctx, vnrt_engram_store_stats(s, &st));
  ck_assert_uint_eq(st.lookups, 2);
  ck_assert_uint_eq(st.rows_requested, 8);
  ck_assert_uint_eq(st.unique_rows, 6);
  ck_assert_uint_eq(st.misses, 3);
  ck_assert_uint_eq(st.hits, 3);
  ck_assert_uint_eq(st.evictions, 0);
  ck_assert_uint_eq(st.bytes_fetched, 3 * 8);
  ck_assert_int_eq(st.resident_rows, 3);
  vnrt_engram_store_reset_stats(s);
  TU_OK(ctx, vnrt_engram_store_stats(s, &st));
  ck_assert_uint_eq(st.lookups + st.rows_requested + st.misses + st.hits + st.bytes_fetched, 0);
  ck_assert_int_eq(st.resident_rows, 3); /* rows kept */
  TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 4, 1, off, out, sizeof out));
  TU_OK(ctx, vnrt_engram_store_stats(s, &st));
  ck_assert_uint_eq(st.hits, 3);
  ck_assert_uint_eq(st.misses, 0);
  vnrt_engram_store_clear_cache(s);
  TU_OK(ctx, vnrt_engram_store_stats(s, &st));
  ck_assert_int_eq(st.resident_rows, 0);
  TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 4, 1, off, out, sizeof out));
  TU_OK(ctx, vnrt_engram_store_stats(s, &st));
  ck_assert_uint_eq(st.misses, 3);
  check_lookup(&t, idx, 4, 1, off, out, "after clear");

  /* An executor with its own device cache records its lookups in the same counters. */
  vnrt_engram_stats delta = {.lookups = 1,
                             .rows_requested = 10,
                             .unique_rows = 4,
                             .hits = 1,
                             .misses = 3,
                             .evictions = 2,
                             .bytes_fetched = 999};
  vn_engram_store_record(s, &delta);
  vnrt_engram_stats st2 = {.struct_size = sizeof st2};
  TU_OK(ctx, vnrt_engram_store_stats(s, &st2));
  ck_assert_uint_eq(st2.lookups, st.lookups + 1);
  ck_assert_uint_eq(st2.rows_requested, st.rows_requested + 10);
  ck_assert_uint_eq(st2.misses, st.misses + 3);
  ck_assert_uint_eq(st2.evictions, st.evictions + 2);
  ck_assert_uint_eq(st2.bytes_fetched, st.bytes_fetched); /* counted by the copy path only */
  vnrt_engram_store_destroy(s);
  table_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A file-backed table larger than a device budget: the table is accounted as file-mapped, only
 * the cache is device memory, and lookups work. */
START_TEST(file_table_larger_than_the_device_budget) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const int64_t R = 4096, D = 64; /* 1 MiB of f32 */
  table t = table_new(R, D, VNRT_F32, 8);
  const char *path = path_in_dir("big.bin");
  write_file(path, t.bytes, (size_t)(R * D) * 4, 0, 0);
  vn_budget budget;
  vn_budget_init(&budget, ctx, 64 * 1024); /* 64 KiB of "device" */
  vnrt_engram_store_desc desc = {0};
  desc.rows = R;
  desc.dim = D;
  desc.file_path = path;
  desc.cache_slots = 32; /* 32 x 256 B = 8 KiB */
  vnrt_engram_store *s = make_store(ctx, &desc);
  const uint64_t table_bytes = vn_engram_store_table_bytes(s);
  ck_assert_uint_eq(table_bytes, 1u << 20);
  ck_assert_int_eq(vn_budget_reserve(&budget, VN_TIER_DEVICE, table_bytes, "engram.table"),
                   VNRT_ERROR_BUDGET_EXCEEDED); /* it could never be placed on the device */
  TU_OK(ctx, vn_budget_reserve(&budget, vn_engram_store_tier(s), table_bytes, "engram.table"));
  TU_OK(ctx, vn_budget_reserve(&budget, VN_TIER_DEVICE,
                               (uint64_t)desc.cache_slots * vn_engram_store_row_bytes(s),
                               "engram.cache"));
  ck_assert_uint_eq(vn_budget_used(&budget, VN_TIER_DEVICE), 8192);
  ck_assert_uint_eq(vn_budget_used(&budget, VN_TIER_FILE_MAPPED), 1u << 20);
  uint64_t st = 4;
  const int32_t H = 8, per_head = (int32_t)(R / 8);
  int32_t off[8];
  for (int h = 0; h < H; ++h) off[h] = h * per_head;
  for (int call = 0; call < 5; ++call) {
    int32_t idx[16 * 8];
    random_idx(idx, 16, H, per_head, &st);
    float *out = malloc(16 * 8 * 64 * sizeof(float));
    TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 16, H, off, out, 16 * 8 * 64 * sizeof(float)));
    check_lookup(&t, idx, 16, H, off, out, "file > budget");
    free(out);
  }
  vnrt_engram_stats stats = {.struct_size = sizeof stats};
  TU_OK(ctx, vnrt_engram_store_stats(s, &stats));
  ck_assert_uint_lt(stats.bytes_fetched, table_bytes); /* only asked-for rows were read */
  vnrt_engram_store_destroy(s);
  unlink(path);
  rmdir(g_dir);
  table_free(&t);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A sparse 32 GiB file (larger than the RAM of most CI machines): creating the store and looking up
 * rows at both ends reads only those rows' pages. */
START_TEST(sparse_table_larger_than_ram) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("sparse.bin");
  const int64_t D = 256;                 /* f32: 1 KiB per row */
  const int64_t R = (32ll << 30) / 1024; /* 32 Mi rows */
  const uint64_t offset = 4096;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, (off_t)(offset + (uint64_t)R * 1024)), 0);
  const int64_t marked[3] = {0, R / 2 + 3, R - 1};
  float row[256];
  for (int k = 0; k < 3; ++k) {
    for (int d = 0; d < D; ++d) row[d] = (float)((k + 1) * 1000 + d);
    ck_assert_int_eq(pwrite(fd, row, sizeof row, (off_t)(offset + (uint64_t)marked[k] * 1024)),
                     (ssize_t)sizeof row);
  }
  close(fd);
  vnrt_engram_store_desc desc = {0};
  desc.rows = R;
  desc.dim = D;
  desc.file_path = path;
  desc.file_offset = offset;
  desc.cache_slots = 2;
  vnrt_engram_store *s = make_store(ctx, &desc);
  /* Two heads over the whole table: offsets 0 and R/2. */
  const int32_t off[2] = {0, (int32_t)(R / 2)};
  const int32_t idx[6] = {0, 3, (int32_t)(R / 2 - 1), (int32_t)(R / 2 - 1), 5, 3};
  float *out = malloc(6 * 1024);
  TU_OK(ctx, vnrt_engram_store_lookup(s, idx, 3, 2, off, out, 6 * 1024));
  /* Expected rows: 0 (marked 1), R/2+3 (marked 2), R/2-1 (zero), R-1 (marked 3), 5 (zero),
   * R/2+3 (marked 2). */
  const int expect_mark[6] = {1, 2, 0, 3, 0, 2};
  for (int e = 0; e < 6; ++e) {
    for (int d = 0; d < D; ++d) {
      double want = expect_mark[e] ? expect_mark[e] * 1000.0 + d : 0.0;
      if (out[e * 256 + d] != want) {
        ck_abort_msg("entry %d, d %d: %g vs %g", e, d, (double)out[e * 256 + d], want);
      }
    }
  }
  vnrt_engram_stats stats = {.struct_size = sizeof stats};
  TU_OK(ctx, vnrt_engram_store_stats(s, &stats));
  ck_assert_uint_eq(stats.bytes_fetched, stats.misses * 1024);
  ck_assert_uint_le(stats.bytes_fetched, 6 * 1024);
  free(out);
  vnrt_engram_store_destroy(s);
  unlink(path);
  rmdir(g_dir);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("engram_store");
  TCase *tc = tcase_create("engram_store");
  tcase_add_test(tc, host_lookups_match_the_spec_for_every_cache);
  tcase_add_test(tc, wide_rows_in_long_lookups_match_the_spec);
  tcase_add_test(tc, host_data_is_borrowed_or_copied);
  tcase_add_test(tc, large_copies_use_the_callers_allocator_or_huge_pages);
  tcase_add_test(tc, raw_file_tables_at_any_offset);
  tcase_add_test(tc, truncated_and_missing_files_fail_with_the_sizes);
  tcase_add_test(tc, safetensors_tensor_as_table);
  tcase_add_test(tc, out_of_range_rows_fail_before_writing);
  tcase_add_test(tc, bad_descriptions_are_rejected);
  tcase_add_test(tc, stats_reset_and_cache_clear);
  tcase_add_test(tc, file_table_larger_than_the_device_budget);
  tcase_add_test(tc, sparse_table_larger_than_ram);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
