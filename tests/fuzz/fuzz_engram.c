/* Engram store files: the first 16 bytes of an input choose the table (rows, dim, dtype, raw
 * or safetensors, file offset, cache size, eviction) and the lookups; the rest is the file. A
 * store that opens must answer lookups of in-range rows identically with and without its cache,
 * and refuse out-of-range rows. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "vnrt/io.h"
#include "vnrt/memory.h"

#define HEAD 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < HEAD || size > (1u << 20)) return 0;
  vnrt_context *ctx = fuzz_context();
  int fd;
  char path[64];
  if (!fuzz_file(data + HEAD, size - HEAD, &fd, path, sizeof path)) return 0;
  const vnrt_dtype dtypes[4] = {VNRT_F32, VNRT_F16, VNRT_BF16, VNRT_I32};
  const bool st = data[0] & 1;
  vnrt_engram_store_desc d = {
      .rows = st && (data[0] & 2) ? 0 : (int64_t)(data[1] | (data[2] << 8)) - 8,
      .dim = st && (data[0] & 2) ? 0 : (int64_t)data[3] - 4,
      .dtype = dtypes[data[4] & 3],
      .file_path = path,
      .file_offset = st ? 0 : (uint64_t)data[5],
      .tensor_name = st ? "table" : NULL,
      .cache_slots = (int64_t)data[6] - 2,
      .eviction = (vnrt_eviction)(data[7] % 3),
  };
  vnrt_engram_store *store = NULL;
  vnrt_engram_store *plain = NULL;
  if (vnrt_engram_store_create(ctx, &d, &store) == VNRT_OK) {
    d.cache_slots = 0;
    FUZZ_CHECK(vnrt_engram_store_create(ctx, &d, &plain) == VNRT_OK,
               "a store that opens with a cache opens without one");
    vnrt_engram_stats s = {.struct_size = sizeof s};
    FUZZ_CHECK(vnrt_engram_store_stats(store, &s) == VNRT_OK, "stats");
    int32_t idx[8];
    const int32_t offsets[2] = {0, 1};
    for (int i = 0; i < 8; ++i) idx[i] = (int32_t)(int8_t)data[8 + i];
    /* the table's row width and dtype: the desc's, or the safetensors tensor's */
    int64_t dim = d.dim;
    vnrt_dtype dt = d.dtype;
    if (st) {
      vnrt_safetensors *f = NULL;
      vnrt_tensor_type t = {0};
      if (vnrt_safetensors_open(ctx, path, &f) == VNRT_OK &&
          vnrt_safetensors_find(f, "table", &t, NULL, NULL) == VNRT_OK && t.rank == 2) {
        dim = t.dims[1];
        dt = t.dtype;
      }
      vnrt_safetensors_close(f);
    }
    const size_t bytes = dim > 0 && dim <= 4096 ? (size_t)(8 * dim) * vnrt_dtype_size(dt) : 0;
    uint8_t *a = bytes ? calloc(1, bytes) : NULL, *b = bytes ? calloc(1, bytes) : NULL;
    if (a && b) {
      vnrt_status sa = vnrt_engram_store_lookup(store, idx, 4, 2, offsets, a, bytes);
      vnrt_status sb = vnrt_engram_store_lookup(plain, idx, 4, 2, offsets, b, bytes);
      FUZZ_CHECK(sa == sb, "a cache does not change a lookup's outcome");
      if (sa == VNRT_OK) FUZZ_CHECK(memcmp(a, b, bytes) == 0, "a cache does not change rows");
      /* again, now that the cache holds the rows */
      sa = vnrt_engram_store_lookup(store, idx, 4, 2, offsets, a, bytes);
      FUZZ_CHECK(sa == sb, "a warm cache does not change a lookup's outcome");
      if (sa == VNRT_OK) FUZZ_CHECK(memcmp(a, b, bytes) == 0, "a warm cache does not change rows");
    }
    free(a);
    free(b);
    vnrt_engram_store_destroy(plain);
    vnrt_engram_store_destroy(store);
  }
  fuzz_close_file(fd);
  return 0;
}
