/* Engram stores: the table in host memory or a read-only file mapping, the checked row copy
 * path, and the host lookup that runs through a row cache. */
#include "engram_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sized.h"
#include "vnrt/io.h"

struct vnrt_engram_store {
  vnrt_context *ctx;
  int64_t rows, dim;
  vnrt_dtype dtype;
  uint64_t row_bytes, table_bytes;
  vn_tier tier;
  const uint8_t *data; /* row 0 of the table, wherever it lives */

  void *owned;          /* copy of host_data */
  size_t owned_map_len; /* > 0: owned is an anonymous mapping of this length, not vn_malloc's */
  void *map;            /* raw file mapping (page-aligned start) */
  size_t map_len;
  vnrt_safetensors *st; /* safetensors file that data points into */
  char *path;           /* file name for messages, or NULL */

  vn_row_cache *cache;
  uint8_t *slot_data; /* the host lookup's slots: cache_slots x row_bytes, made on first use */

  /* Scratch of the host lookup, grown to the largest lookup seen. */
  int64_t *scratch_rows;
  int32_t *scratch_slots;
  vn_row_fetch *scratch_fetch;
  int64_t scratch_cap;

  _Atomic uint64_t lookups, requested, unique, hits, misses, evictions, bytes;
};

/* ---- creation -------------------------------------------------------------------------- */

static const char *table_name(const vnrt_engram_store *s) {
  return s->path ? s->path : "(host memory)";
}

static vnrt_status map_raw_file(vnrt_engram_store *s, const char *path, uint64_t offset) {
  vnrt_context *ctx = s->ctx;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return vn_error(ctx, err == ENOENT ? VNRT_ERROR_NOT_FOUND : VNRT_ERROR_IO,
                    "Engram table file %s: cannot open: %s", path, strerror(err));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return vn_error(ctx, VNRT_ERROR_IO, "Engram table file %s is not a regular file", path);
  }
  const uint64_t size = (uint64_t)st.st_size;
  if (offset > UINT64_MAX - s->table_bytes || size < offset + s->table_bytes) {
    close(fd);
    return vn_error(
        ctx, VNRT_ERROR_IO,
        "Engram table file %s is truncated: %lld x %lld %s rows at offset %llu need "
        "%llu bytes in all, but the file has %llu",
        path, (long long)s->rows, (long long)s->dim, vnrt_dtype_name(s->dtype),
        (unsigned long long)offset,
        (unsigned long long)(offset > UINT64_MAX - s->table_bytes ? UINT64_MAX
                                                                  : offset + s->table_bytes),
        (unsigned long long)size);
  }
  /* Map only the table's pages: nothing is read until a row is asked for. */
  long page = sysconf(_SC_PAGESIZE);
  uint64_t base = page > 0 ? offset / (uint64_t)page * (uint64_t)page : 0;
  uint64_t len = offset - base + s->table_bytes;
  if (len > SIZE_MAX || base > (uint64_t)INT64_MAX) {
    close(fd);
    return vn_error(ctx, VNRT_ERROR_IO, "Engram table file %s: %llu bytes are too many to map",
                    path, (unsigned long long)len);
  }
  void *map = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, (off_t)base);
  int err = errno;
  close(fd); /* the mapping keeps the file */
  if (map == MAP_FAILED) {
    return vn_error(ctx, VNRT_ERROR_IO, "Engram table file %s: mmap of %llu bytes failed: %s", path,
                    (unsigned long long)len, strerror(err));
  }
  /* Lookups hit rows at random; read-ahead would only pull in rows nobody asked for. */
  madvise(map, (size_t)len, MADV_RANDOM);
  s->map = map;
  s->map_len = (size_t)len;
  s->data = (const uint8_t *)map + (offset - base);
  return VNRT_OK;
}

static vnrt_status open_safetensors(vnrt_engram_store *s, const vnrt_engram_store_desc *d) {
  vnrt_context *ctx = s->ctx;
  if (d->file_offset != 0) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "Engram table %s in %s: file_offset must be 0 with tensor_name (the header "
                    "says where the tensor is)",
                    d->tensor_name, d->file_path);
  }
  VN_RETURN_IF_ERROR(vnrt_safetensors_open(ctx, d->file_path, &s->st));
  vnrt_tensor_type type;
  const void *data;
  size_t bytes;
  VN_RETURN_IF_ERROR(vnrt_safetensors_find(s->st, d->tensor_name, &type, &data, &bytes));
  if (type.rank != 2 || (d->rows && d->rows != type.dims[0]) ||
      (d->dim && d->dim != type.dims[1]) || (d->dtype && d->dtype != type.dtype)) {
    return vn_error(ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "Engram table %s in %s is %s of rank %d [%lld, %lld]; expected a rank-2 "
                    "table of rows %lld, dim %lld, dtype %s (0 = any)",
                    d->tensor_name, d->file_path, vnrt_dtype_name(type.dtype), type.rank,
                    (long long)(type.rank > 0 ? type.dims[0] : 0),
                    (long long)(type.rank > 1 ? type.dims[1] : 0), (long long)d->rows,
                    (long long)d->dim, d->dtype ? vnrt_dtype_name(d->dtype) : "any");
  }
  if (type.dtype != VNRT_F32 && type.dtype != VNRT_F16 && type.dtype != VNRT_BF16) {
    return vn_error(ctx, VNRT_ERROR_UNSUPPORTED,
                    "Engram table %s in %s is %s; tables are f32, f16 or bf16", d->tensor_name,
                    d->file_path, vnrt_dtype_name(type.dtype));
  }
  s->rows = type.dims[0];
  s->dim = type.dims[1];
  s->dtype = type.dtype;
  s->data = data;
  return VNRT_OK;
}

/* rows x dim x elem in bytes, or 0 when it overflows (rows, dim > 0). */
static uint64_t table_size(int64_t rows, int64_t dim, size_t elem) {
  uint64_t r = (uint64_t)rows, d = (uint64_t)dim;
  if (d > UINT64_MAX / elem) return 0;
  uint64_t row = d * elem;
  if (r > UINT64_MAX / row) return 0;
  return r * row;
}

/* Rows are read at random, so on 4 KiB pages nearly every row costs a page walk (and, under a
 * hypervisor, often far more). A copy the store makes of a large table therefore goes into an
 * anonymous mapping that asks for transparent huge pages — but only when the caller left the
 * context's allocator to the C library: a caller's own allocator gets every byte. */
enum { kHugePage = 2u << 20 };

static void *alloc_table_copy(vnrt_engram_store *s, size_t bytes) {
  if (s->ctx->default_alloc && bytes >= kHugePage) {
    size_t len = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
#if defined(MADV_HUGEPAGE)
      madvise(m, len, MADV_HUGEPAGE); /* a hint: without THP the pages are simply 4 KiB */
#endif
      s->owned_map_len = len;
      return m;
    }
  }
  return vn_malloc(s->ctx, bytes);
}

static void free_table_copy(vnrt_engram_store *s) {
  if (s->owned_map_len) {
    munmap(s->owned, s->owned_map_len);
  } else {
    vn_free(s->ctx, s->owned);
  }
  s->owned = NULL;
  s->owned_map_len = 0;
}

vnrt_status vnrt_engram_store_create(vnrt_context *ctx, const vnrt_engram_store_desc *desc,
                                     vnrt_engram_store **out_store) {
  if (!out_store) return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "out_store is NULL");
  *out_store = NULL;
  if (!ctx || !desc) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "engram store: ctx or desc is NULL");
  }
  /* The caller's desc as this library's full struct: members past its struct_size default. */
  vnrt_engram_store_desc full;
  if (vn_sized_read(ctx, &vn_sized_engram_store_desc, desc, &full) != VNRT_OK) {
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "engram store: %s", msg);
  }
  desc = &full;
  const vnrt_engram_store_desc *d = desc;
  if ((d->host_data != NULL) == (d->file_path != NULL)) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "engram store: set exactly one of host_data and file_path");
  }
  if (d->tensor_name && !d->file_path) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "engram store: tensor_name '%s' needs a file_path", d->tensor_name);
  }
  if (d->dtype != 0 && d->dtype != VNRT_F32 && d->dtype != VNRT_F16 && d->dtype != VNRT_BF16) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "engram store: dtype %s (%d) is not f32, f16 or bf16",
                    vnrt_dtype_name(d->dtype), (int)d->dtype);
  }
  const bool from_tensor = d->tensor_name != NULL;
  if (d->rows < 0 || d->dim < 0 || (!from_tensor && (d->rows == 0 || d->dim == 0))) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "engram store: rows=%lld and dim=%lld must be positive", (long long)d->rows,
                    (long long)d->dim);
  }
  if (d->cache_slots < 0) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "engram store: cache_slots=%lld is negative",
                    (long long)d->cache_slots);
  }
  if (d->eviction != VNRT_EVICTION_CLOCK && d->eviction != VNRT_EVICTION_LRU) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "engram store: unknown eviction policy %d",
                    (int)d->eviction);
  }

  vnrt_engram_store *s = vn_calloc(ctx, 1, sizeof *s);
  if (!s) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "engram store: out of memory");
  s->ctx = ctx;
  s->rows = d->rows;
  s->dim = d->dim;
  s->dtype = d->dtype ? d->dtype : VNRT_F32;
  vnrt_status st = VNRT_OK;
  if (d->file_path) {
    s->path = vn_strdup(ctx, d->file_path);
    if (!s->path) {
      st = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "engram store: out of memory");
      goto fail;
    }
  }
  if (from_tensor) {
    st = open_safetensors(s, d);
    if (st != VNRT_OK) goto fail;
  }
  if (s->rows <= 0 || s->dim <= 0) {
    st = vn_error(ctx, VNRT_ERROR_SHAPE_MISMATCH, "Engram table %s in %s is empty ([%lld, %lld])",
                  d->tensor_name, d->file_path, (long long)s->rows, (long long)s->dim);
    goto fail;
  }
  s->row_bytes = (uint64_t)s->dim * vnrt_dtype_size(s->dtype);
  s->table_bytes = table_size(s->rows, s->dim, vnrt_dtype_size(s->dtype));
  if (s->table_bytes == 0 || s->table_bytes > (uint64_t)INT64_MAX) {
    st = vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                  "engram store: %lld x %lld %s elements overflow a 63-bit byte count",
                  (long long)s->rows, (long long)s->dim, vnrt_dtype_name(s->dtype));
    goto fail;
  }
  if (d->host_data) {
    s->tier = VN_TIER_HOST;
    if (d->copy_host_data) {
      if (s->table_bytes > SIZE_MAX || !(s->owned = alloc_table_copy(s, (size_t)s->table_bytes))) {
        st = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY,
                      "engram store: out of host memory copying a %llu-byte table",
                      (unsigned long long)s->table_bytes);
        goto fail;
      }
      memcpy(s->owned, d->host_data, (size_t)s->table_bytes);
      s->data = s->owned;
    } else {
      s->data = d->host_data;
    }
  } else {
    s->tier = VN_TIER_FILE_MAPPED;
    if (!from_tensor) {
      st = map_raw_file(s, d->file_path, d->file_offset);
      if (st != VNRT_OK) goto fail;
    }
  }
  if (d->cache_slots > 0) {
    int64_t slots = d->cache_slots < s->rows ? d->cache_slots : s->rows;
    if (slots > INT32_MAX) slots = INT32_MAX;
    vn_eviction ev = d->eviction == VNRT_EVICTION_LRU ? VN_EVICT_LRU : VN_EVICT_CLOCK;
    st = vn_row_cache_create(ctx, slots, ev, s->row_bytes, &s->cache);
    if (st != VNRT_OK) goto fail;
  }
  *out_store = s;
  return VNRT_OK;
fail:
  vnrt_engram_store_destroy(s);
  return st;
}

void vnrt_engram_store_destroy(vnrt_engram_store *s) {
  if (!s) return;
  vnrt_context *ctx = s->ctx;
  if (s->map) munmap(s->map, s->map_len);
  vnrt_safetensors_close(s->st);
  vn_row_cache_destroy(s->cache);
  free_table_copy(s);
  vn_free(ctx, s->path);
  vn_free(ctx, s->slot_data);
  vn_free(ctx, s->scratch_rows);
  vn_free(ctx, s->scratch_slots);
  vn_free(ctx, s->scratch_fetch);
  vn_free(ctx, s);
}

/* ---- accessors ------------------------------------------------------------------------- */

int64_t vn_engram_store_rows(const vnrt_engram_store *s) { return s->rows; }
int64_t vn_engram_store_dim(const vnrt_engram_store *s) { return s->dim; }
vnrt_dtype vn_engram_store_dtype(const vnrt_engram_store *s) { return s->dtype; }
uint64_t vn_engram_store_row_bytes(const vnrt_engram_store *s) { return s->row_bytes; }
uint64_t vn_engram_store_table_bytes(const vnrt_engram_store *s) { return s->table_bytes; }
vn_tier vn_engram_store_tier(const vnrt_engram_store *s) { return s->tier; }
vn_row_cache *vn_engram_store_cache(vnrt_engram_store *s) { return s->cache; }

/* ---- the copy path --------------------------------------------------------------------- */

static vnrt_status row_out_of_range(const vnrt_engram_store *s, int64_t k, int64_t row) {
  return vn_error(s->ctx, VNRT_ERROR_OUT_OF_RANGE,
                  "Engram table %s: row %lld (entry %lld) is out of range [0, %lld)", table_name(s),
                  (long long)row, (long long)k, (long long)s->rows);
}

/* Rows are scattered over the table, so a gather is bound by memory latency, not bandwidth,
 * unless many rows are in flight at once: each copy first asks for the row this far ahead.
 * 32 rows (64 cache lines of 128-byte rows) measured best here, against 16 and 64
 * (docs/memory.md). */
enum { kGatherAhead = 32 };

/* Rows checked to be in range, copied to dst: entry k is row rows[k] to dst + k·stride, or
 * (fetch) row fetch[k].row to dst + fetch[k].slot·stride. */
typedef struct copy_job {
  const vnrt_engram_store *s;
  const int64_t *rows;
  const vn_row_fetch *fetch;
  uint8_t *dst;
  uint64_t stride;
} copy_job;

/* Copies entries [lo, hi): each first prefetches the row kGatherAhead entries on (every cache
 * line of it). The prefetch sits in the loop itself: GCC 12 finds a function that only
 * prefetches free of side effects and deletes calls to it (a prefetch_row() helper here compiled
 * to nothing). A row outside the table — rows are checked only before the copy starts — is
 * prefetched as row 0: a prefetch must never touch past the table. Everything the loop reads
 * through j and s is in locals, since the copies could alias it as far as the compiler knows. */
static void copy_range(const copy_job *j, int64_t lo, int64_t hi) {
  const uint8_t *const data = j->s->data;
  const int64_t R = j->s->rows;
  const size_t rb = (size_t)j->s->row_bytes, stride = (size_t)j->stride;
  const int64_t *const rows = j->rows;
  const vn_row_fetch *const fetch = j->fetch;
  uint8_t *const dst = j->dst;
  for (int64_t k = lo; k < hi; ++k) {
    if (k + kGatherAhead < hi) {
      const int64_t ahead = rows ? rows[k + kGatherAhead] : fetch[k + kGatherAhead].row;
      const uint8_t *p = data + (ahead >= 0 && ahead < R ? (size_t)ahead * rb : 0);
      for (size_t off = 0; off < rb; off += 64) __builtin_prefetch(p + off, 0, 0);
    }
    const int64_t row = rows ? rows[k] : fetch[k].row;
    const size_t at = rows ? (size_t)k : (size_t)fetch[k].slot;
    memcpy(dst + at * stride, data + (size_t)row * rb, rb);
  }
}

vnrt_status vn_engram_store_gather_rows(vnrt_engram_store *s, const int64_t *rows, int64_t n,
                                        void *dst) {
  if (n < 0 || (n > 0 && (!rows || !dst))) {
    return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT, "gather_rows: bad arguments (n=%lld)",
                    (long long)n);
  }
  for (int64_t k = 0; k < n; ++k) {
    if (rows[k] < 0 || rows[k] >= s->rows) return row_out_of_range(s, k, rows[k]);
  }
  copy_job job = {.s = s, .rows = rows, .dst = dst, .stride = s->row_bytes};
  copy_range(&job, 0, n);
  atomic_fetch_add_explicit(&s->bytes, (uint64_t)n * s->row_bytes, memory_order_relaxed);
  return VNRT_OK;
}

vnrt_status vn_engram_store_fetch_to_slots(vnrt_engram_store *s, const vn_row_fetch *fetch,
                                           int64_t n, void *slot_base, uint64_t slot_stride) {
  if (n < 0 || (n > 0 && (!fetch || !slot_base)) || slot_stride < s->row_bytes) {
    return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "fetch_to_slots: bad arguments (n=%lld, slot_stride=%llu, row_bytes=%llu)",
                    (long long)n, (unsigned long long)slot_stride,
                    (unsigned long long)s->row_bytes);
  }
  for (int64_t k = 0; k < n; ++k) {
    if (fetch[k].row < 0 || fetch[k].row >= s->rows) return row_out_of_range(s, k, fetch[k].row);
    if (fetch[k].slot < 0) {
      return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT, "fetch_to_slots: entry %lld: slot %d",
                      (long long)k, fetch[k].slot);
    }
  }
  copy_job job = {.s = s, .fetch = fetch, .dst = slot_base, .stride = slot_stride};
  copy_range(&job, 0, n);
  atomic_fetch_add_explicit(&s->bytes, (uint64_t)n * s->row_bytes, memory_order_relaxed);
  return VNRT_OK;
}

/* ---- lookups --------------------------------------------------------------------------- */

static vnrt_status lookup_row_error(const vnrt_engram_store *s, const int32_t *idx, int64_t t,
                                    int32_t h, int32_t heads, const int32_t *offsets) {
  return vn_error(s->ctx, VNRT_ERROR_OUT_OF_RANGE,
                  "engram lookup in table %s: row %lld (offsets[%d]=%d + idx[%lld, %d]=%d) is out "
                  "of range [0, %lld)",
                  table_name(s), (long long)offsets[h] + idx[t * heads + h], h, offsets[h],
                  (long long)t, h, idx[t * heads + h], (long long)s->rows);
}

/* rows[t·heads + h] = offsets[h] + idx[t·heads + h] in one pass, failing at the first row
 * outside [0, R) (rows is then partly written: for the store's own scratch). */
static vnrt_status make_rows(const vnrt_engram_store *s, const int32_t *idx, int64_t tokens,
                             int32_t heads, const int32_t *offsets, int64_t *rows) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t h = 0; h < heads; ++h) {
      const int64_t row = (int64_t)offsets[h] + idx[t * heads + h];
      rows[t * heads + h] = row;
      if (row < 0 || row >= s->rows) return lookup_row_error(s, idx, t, h, heads, offsets);
    }
  }
  return VNRT_OK;
}

vnrt_status vn_engram_store_lookup_rows(vnrt_engram_store *s, const int32_t *idx, int64_t tokens,
                                        int32_t heads, const int32_t *offsets, int64_t *rows) {
  if (tokens < 0 || heads < 0 || (tokens > 0 && heads > 0 && (!idx || !offsets || !rows))) {
    return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "engram lookup: bad arguments (tokens=%lld, heads=%d)", (long long)tokens,
                    heads);
  }
  /* Checked first, so that rows stays untouched on failure (its contract). */
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t h = 0; h < heads; ++h) {
      const int64_t row = (int64_t)offsets[h] + idx[t * heads + h];
      if (row < 0 || row >= s->rows) return lookup_row_error(s, idx, t, h, heads, offsets);
    }
  }
  return make_rows(s, idx, tokens, heads, offsets, rows);
}

static vnrt_status grow_scratch(vnrt_engram_store *s, int64_t n) {
  if (n <= s->scratch_cap) return VNRT_OK;
  int64_t *r = vn_realloc(s->ctx, s->scratch_rows, (size_t)n * sizeof *r);
  if (r) s->scratch_rows = r;
  int32_t *sl = vn_realloc(s->ctx, s->scratch_slots, (size_t)n * sizeof *sl);
  if (sl) s->scratch_slots = sl;
  vn_row_fetch *f = vn_realloc(s->ctx, s->scratch_fetch, (size_t)n * sizeof *f);
  if (f) s->scratch_fetch = f;
  if (!r || !sl || !f) {
    return vn_error(s->ctx, VNRT_ERROR_OUT_OF_MEMORY,
                    "engram lookup: out of host memory for %lld entries", (long long)n);
  }
  s->scratch_cap = n;
  return VNRT_OK;
}

void vn_engram_store_record(vnrt_engram_store *s, const vnrt_engram_stats *d) {
  atomic_fetch_add_explicit(&s->lookups, d->lookups, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->requested, d->rows_requested, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->unique, d->unique_rows, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->hits, d->hits, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->misses, d->misses, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->evictions, d->evictions, memory_order_relaxed);
}

vnrt_status vnrt_engram_store_lookup(vnrt_engram_store *s, const int32_t *idx, int64_t tokens,
                                     int32_t heads, const int32_t *offsets, void *out,
                                     size_t out_bytes) {
  if (!s) return VNRT_ERROR_INVALID_ARGUMENT;
  if (tokens < 0 || heads < 0 || (heads > 0 && tokens > INT64_MAX / heads)) {
    return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "engram lookup: tokens=%lld and heads=%d must be >= 0", (long long)tokens,
                    heads);
  }
  const int64_t n = tokens * heads;
  if (n > 0 &&
      ((uint64_t)n > UINT64_MAX / s->row_bytes || (uint64_t)n * s->row_bytes != out_bytes)) {
    return vn_error(s->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                    "engram lookup: out has %zu bytes; %lld tokens x %d heads x %lld %s need "
                    "%llu",
                    out_bytes, (long long)tokens, heads, (long long)s->dim,
                    vnrt_dtype_name(s->dtype), (unsigned long long)((uint64_t)n * s->row_bytes));
  }
  if (n == 0) {
    if (out_bytes != 0) {
      return vn_error(s->ctx, VNRT_ERROR_SHAPE_MISMATCH,
                      "engram lookup: out has %zu bytes for an empty lookup", out_bytes);
    }
    vnrt_engram_stats one = {.lookups = 1};
    vn_engram_store_record(s, &one);
    return VNRT_OK;
  }
  if (!out) return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT, "engram lookup: out is NULL");
  VN_RETURN_IF_ERROR(grow_scratch(s, n));
  int64_t *rows = s->scratch_rows;
  /* rows is the store's scratch: one pass that checks as it goes (nothing is copied unless
   * every row is in range). */
  if (!idx || !offsets) {
    return vn_error(s->ctx, VNRT_ERROR_INVALID_ARGUMENT, "engram lookup: idx or offsets is NULL");
  }
  VN_RETURN_IF_ERROR(make_rows(s, idx, tokens, heads, offsets, rows));

  vnrt_engram_stats delta = {.lookups = 1, .rows_requested = (uint64_t)n};
  if (!s->cache) {
    /* No cache: every entry is a fetch straight into the output (rows checked above). */
    copy_job job = {.s = s, .rows = rows, .dst = out, .stride = s->row_bytes};
    copy_range(&job, 0, n);
    atomic_fetch_add_explicit(&s->bytes, (uint64_t)n * s->row_bytes, memory_order_relaxed);
    delta.unique_rows = delta.misses = (uint64_t)n;
    vn_engram_store_record(s, &delta);
    return VNRT_OK;
  }

  const int32_t slots = vn_row_cache_slots(s->cache);
  const size_t rb = (size_t)s->row_bytes;
  if (!s->slot_data) {
    /* slots <= R, so this is at most the table's size. */
    if ((uint64_t)slots * rb <= SIZE_MAX) s->slot_data = vn_malloc(s->ctx, (size_t)slots * rb);
    if (!s->slot_data) {
      return vn_error(s->ctx, VNRT_ERROR_OUT_OF_MEMORY,
                      "engram lookup: out of host memory for %d cache slots of %zu bytes", slots,
                      rb);
    }
  }
  vn_row_cache_stats before, after;
  vn_row_cache_stats_get(s->cache, &before);
  uint8_t *dst = out;
  for (int64_t start = 0, next = 0; start < n; start = next) {
    int64_t n_fetch = 0;
    vnrt_status st = vn_row_cache_plan(s->cache, rows, n, start, s->scratch_slots, s->scratch_fetch,
                                       &n_fetch, &next);
    if (st == VNRT_OK)
      st = vn_engram_store_fetch_to_slots(s, s->scratch_fetch, n_fetch, s->slot_data, rb);
    if (st != VNRT_OK) {
      /* Rows were checked, so this is a bug; drop the cache rather than trust its slots. */
      vn_row_cache_clear(s->cache);
      return st;
    }
    for (int64_t i = start; i < next; ++i) {
      memcpy(dst + (size_t)i * rb, s->slot_data + (size_t)s->scratch_slots[i] * rb, rb);
    }
  }
  vn_row_cache_stats_get(s->cache, &after);
  delta.unique_rows = after.unique - before.unique;
  delta.hits = after.hits - before.hits;
  delta.misses = after.misses - before.misses;
  delta.evictions = after.evictions - before.evictions;
  vn_engram_store_record(s, &delta);
  return VNRT_OK;
}

/* ---- statistics ------------------------------------------------------------------------ */

vnrt_status vnrt_engram_store_stats(const vnrt_engram_store *s, vnrt_engram_stats *out) {
  if (!out) return VNRT_ERROR_INVALID_ARGUMENT;
  size_t bytes;
  if (vn_sized_check(s ? s->ctx : NULL, &vn_sized_engram_stats, out->struct_size, &bytes) !=
      VNRT_OK) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  memset(out, 0, bytes);
  out->struct_size = bytes;
  if (!s) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_engram_stats full = {.struct_size = sizeof full};
  vnrt_engram_stats *stats = &full;
  stats->lookups = atomic_load_explicit(&s->lookups, memory_order_relaxed);
  stats->rows_requested = atomic_load_explicit(&s->requested, memory_order_relaxed);
  stats->unique_rows = atomic_load_explicit(&s->unique, memory_order_relaxed);
  stats->hits = atomic_load_explicit(&s->hits, memory_order_relaxed);
  stats->misses = atomic_load_explicit(&s->misses, memory_order_relaxed);
  stats->evictions = atomic_load_explicit(&s->evictions, memory_order_relaxed);
  stats->bytes_fetched = atomic_load_explicit(&s->bytes, memory_order_relaxed);
  stats->cache_slots = vn_row_cache_slots(s->cache);
  stats->resident_rows = vn_row_cache_resident(s->cache);
  return vn_sized_write(s->ctx, &vn_sized_engram_stats, &full, out);
}

void vnrt_engram_store_reset_stats(vnrt_engram_store *s) {
  if (!s) return;
  atomic_store(&s->lookups, 0);
  atomic_store(&s->requested, 0);
  atomic_store(&s->unique, 0);
  atomic_store(&s->hits, 0);
  atomic_store(&s->misses, 0);
  atomic_store(&s->evictions, 0);
  atomic_store(&s->bytes, 0);
  vn_row_cache_reset_stats(s->cache);
}

void vnrt_engram_store_clear_cache(vnrt_engram_store *s) {
  if (s) vn_row_cache_clear(s->cache);
}
