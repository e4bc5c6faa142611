/* safetensors weight files: the memory-mapped reader (open, validation, lookup). Its strict
 * header parser is safetensors_header.c, the writer safetensors_write.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors_internal.h"

/* ---- validation ------------------------------------------------------------------------ */

static int cmp_by_name(const void *a, const void *b) {
  return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Checks sizes, bounds, names and coverage of the data buffer; builds the name index. */
static vnrt_status validate(vnrt_safetensors *f) {
  for (int32_t i = 0; i < f->count; i++) {
    st_tensor *t = &f->tensors[i];
    uint64_t esize = 0;
    for (size_t k = 0; k < VN_ARRAY_SIZE(kDtypes); k++) {
      if (strcmp(kDtypes[k].name, t->dtype_name) == 0) {
        esize = kDtypes[k].size;
        t->dtype = kDtypes[k].dtype;
      }
    }
    if (t->numel_overflow || t->numel > UINT64_MAX / esize)
      return vn_error(f->ctx, VNRT_ERROR_IO,
                      "%s: tensor '%s': shape is too large (its size "
                      "overflows)",
                      f->path, t->name);
    uint64_t bytes = t->numel * esize;
    if (t->end < t->begin)
      return vn_error(f->ctx, VNRT_ERROR_IO,
                      "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] end before they "
                      "begin",
                      f->path, t->name, t->begin, t->end);
    if (t->end > f->data_size)
      return vn_error(f->ctx, VNRT_ERROR_IO,
                      "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                      "] go beyond the end "
                      "of the file (the data buffer is %" PRIu64 " bytes)",
                      f->path, t->name, t->begin, t->end, f->data_size);
    if (t->end - t->begin != bytes)
      return vn_error(f->ctx, VNRT_ERROR_IO,
                      "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                      " bytes but its shape and dtype %s need %" PRIu64 " bytes",
                      f->path, t->name, t->begin, t->end, t->end - t->begin, t->dtype_name, bytes);
  }
  f->by_name = vn_malloc(f->ctx, sizeof(st_tensor *) * (size_t)(f->count ? f->count : 1));
  if (!f->by_name) return vn_error(f->ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", f->path);
  for (int32_t i = 0; i < f->count; i++) f->by_name[i] = &f->tensors[i];

  /* Coverage: sorted by offset, each tensor must start where the previous one ended and the
   * last must end at the end of the file (the format allows no holes and no overlaps). */
  qsort(f->by_name, (size_t)f->count, sizeof(st_tensor *), cmp_by_offset);
  uint64_t at = 0;
  const char *prev = NULL;
  for (int32_t i = 0; i < f->count; i++) {
    const st_tensor *t = f->by_name[i];
    if (t->begin < at)
      return vn_error(f->ctx, VNRT_ERROR_IO,
                      "%s: tensor '%s' overlaps tensor '%s' in the data "
                      "buffer",
                      f->path, t->name, prev);
    if (t->begin > at)
      return vn_error(f->ctx, VNRT_ERROR_IO,
                      "%s: %" PRIu64
                      " bytes before tensor '%s' belong "
                      "to no tensor (the data buffer must have no holes)",
                      f->path, t->begin - at, t->name);
    at = t->end;
    prev = t->name;
  }
  if (at != f->data_size)
    return vn_error(f->ctx, VNRT_ERROR_IO,
                    "%s: the last %" PRIu64
                    " bytes of the file belong to "
                    "no tensor",
                    f->path, f->data_size - at);

  qsort(f->by_name, (size_t)f->count, sizeof(st_tensor *), cmp_by_name);
  for (int32_t i = 1; i < f->count; i++)
    if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
      return vn_error(f->ctx, VNRT_ERROR_IO, "%s: duplicate tensor name '%s'", f->path,
                      f->by_name[i]->name);
  return VNRT_OK;
}

/* ---- public API ------------------------------------------------------------------------ */

void vnrt_safetensors_close(vnrt_safetensors *f) {
  if (!f) return;
  vnrt_context *ctx = f->ctx;
  for (int32_t i = 0; i < f->count; i++) vn_free(ctx, f->tensors[i].name);
  for (int32_t i = 0; i < f->meta_count; i++) vn_free(ctx, f->meta[i]);
  vn_free(ctx, f->tensors);
  vn_free(ctx, f->meta);
  vn_free(ctx, f->by_name);
  if (f->map) munmap((void *)f->map, f->map_size);
  vn_free(ctx, f->path);
  vn_free(ctx, f);
}

vnrt_status vnrt_safetensors_open(vnrt_context *ctx, const char *path,
                                  vnrt_safetensors **out_file) {
  if (out_file) *out_file = NULL;
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path || !out_file)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_open: path and out_file are required");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vn_error(ctx, errno == ENOENT ? VNRT_ERROR_NOT_FOUND : VNRT_ERROR_IO,
                    "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    vnrt_status s = vn_error(ctx, VNRT_ERROR_IO, "%s: not a regular file", path);
    close(fd);
    return s;
  }
  uint64_t size = (uint64_t)st.st_size;
  if (size < 8) {
    close(fd);
    return vn_error(ctx, VNRT_ERROR_IO,
                    "%s: truncated safetensors file: %" PRIu64
                    " bytes, "
                    "less than the 8-byte header length",
                    path, size);
  }
  if (size > SIZE_MAX) {
    close(fd);
    return vn_error(ctx, VNRT_ERROR_IO, "%s: file too large to map", path);
  }
  void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  close(fd); /* the mapping keeps the file */
  if (map == MAP_FAILED)
    return vn_error(ctx, VNRT_ERROR_IO, "%s: mmap failed: %s", path, strerror(map_errno));

  vnrt_safetensors *f = vn_calloc(ctx, 1, sizeof *f);
  char *path_copy = vn_strdup(ctx, path);
  if (!f || !path_copy) {
    vn_free(ctx, f);
    vn_free(ctx, path_copy);
    munmap(map, (size_t)size);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  f->ctx = ctx;
  f->path = path_copy;
  f->map = map;
  f->map_size = (size_t)size;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i];
  vnrt_status s = VNRT_OK;
  if (hlen > size - 8) {
    s = vn_error(ctx, VNRT_ERROR_IO,
                 "%s: safetensors header length %" PRIu64
                 " goes beyond "
                 "the end of the file (%" PRIu64 " bytes)",
                 path, hlen, size);
  } else {
    f->data = f->map + 8 + hlen;
    f->data_size = size - 8 - hlen;
    s = vn_st_parse_header(f, (const char *)f->map + 8, (size_t)hlen);
    if (s == VNRT_OK) s = validate(f);
  }
  if (s != VNRT_OK) {
    vnrt_safetensors_close(f);
    return s;
  }
  *out_file = f;
  return VNRT_OK;
}

int32_t vnrt_safetensors_count(const vnrt_safetensors *f) { return f ? f->count : 0; }

const char *vnrt_safetensors_name(const vnrt_safetensors *f, int32_t i) {
  return f && i >= 0 && i < f->count ? f->tensors[i].name : NULL;
}

int32_t vnrt_safetensors_metadata_count(const vnrt_safetensors *f) {
  return f ? f->meta_count / 2 : 0;
}

const char *vnrt_safetensors_metadata_key(const vnrt_safetensors *f, int32_t i) {
  return f && i >= 0 && i < f->meta_count / 2 ? f->meta[2 * i] : NULL;
}

const char *vnrt_safetensors_metadata(const vnrt_safetensors *f, const char *key) {
  if (!f || !key) return NULL;
  for (int32_t i = 0; i + 1 < f->meta_count; i += 2)
    if (strcmp(f->meta[i], key) == 0) return f->meta[i + 1];
  return NULL;
}

/* The tensor named name, by binary search over by_name; NULL when there is none. */
static const st_tensor *lookup(const vnrt_safetensors *f, const char *name) {
  int32_t lo = 0, hi = f->count;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->by_name[mid]->name, name);
    if (c == 0) return f->by_name[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

vnrt_status vnrt_safetensors_find(vnrt_safetensors *f, const char *name, vnrt_tensor_type *out_type,
                                  const void **out_data, size_t *out_bytes) {
  if (out_type) memset(out_type, 0, sizeof *out_type);
  if (out_data) *out_data = NULL;
  if (out_bytes) *out_bytes = 0;
  if (!f) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!name || !out_type)
    return vn_error(f->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_find: name and out_type are required");
  const st_tensor *t = lookup(f, name);
  if (!t) return vn_error(f->ctx, VNRT_ERROR_NOT_FOUND, "%s: no tensor named '%s'", f->path, name);
  if (t->dtype == VNRT_DTYPE_INVALID)
    return vn_error(f->ctx, VNRT_ERROR_UNSUPPORTED,
                    "%s: tensor '%s' has dtype %s, which is not supported (vnrt reads F32, F16, "
                    "BF16, I32, F8_E4M3, F8_E8M0%s)",
                    f->path, name, t->dtype_name,
                    VN_ST_I8_DTYPE == VNRT_E2M1 ? " and I8 as packed FP4" : "");
  if (t->rank > VNRT_MAX_DIMS)
    return vn_error(f->ctx, VNRT_ERROR_UNSUPPORTED,
                    "%s: tensor '%s' has %d dimensions, which is "
                    "not supported (vnrt tensors have at most %d)",
                    f->path, name, (int)t->rank, VNRT_MAX_DIMS);
  out_type->dtype = t->dtype;
  out_type->rank = t->rank;
  for (int32_t d = 0; d < t->rank; d++) out_type->dims[d] = t->dims[d];
  if (vnrt_dtype_bits(t->dtype) == 4) {
    /* Packed FP4 stored as bytes: each byte of the last dim holds two codes. */
    if (t->rank == 0 || t->dims[t->rank - 1] > INT64_MAX / 2) {
      memset(out_type, 0, sizeof *out_type);
      return vn_error(f->ctx, VNRT_ERROR_UNSUPPORTED,
                      "%s: tensor '%s' (%s) cannot hold packed FP4 codes: %s", f->path, name,
                      t->dtype_name,
                      t->rank == 0 ? "it is a scalar (two codes per byte need a last dimension)"
                                   : "its last dimension is too large");
    }
    out_type->dims[t->rank - 1] *= 2;
  }
  if (out_data) *out_data = f->data + t->begin;
  if (out_bytes) *out_bytes = (size_t)(t->end - t->begin);
  return VNRT_OK;
}

vnrt_status vnrt_safetensors_find_stored(vnrt_safetensors *f, const char *name,
                                         const char **out_dtype, int32_t *out_rank,
                                         int64_t *out_dims, const void **out_data,
                                         size_t *out_bytes) {
  if (out_dtype) *out_dtype = NULL;
  if (out_rank) *out_rank = 0;
  if (out_dims) memset(out_dims, 0, sizeof(int64_t) * VNRT_MAX_DIMS);
  if (out_data) *out_data = NULL;
  if (out_bytes) *out_bytes = 0;
  if (!f) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!name)
    return vn_error(f->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_find_stored: name is required");
  const st_tensor *t = lookup(f, name);
  if (!t) return vn_error(f->ctx, VNRT_ERROR_NOT_FOUND, "%s: no tensor named '%s'", f->path, name);
  if (t->rank > VNRT_MAX_DIMS)
    return vn_error(f->ctx, VNRT_ERROR_UNSUPPORTED,
                    "%s: tensor '%s' has %d dimensions, which is "
                    "not supported (vnrt tensors have at most %d)",
                    f->path, name, (int)t->rank, VNRT_MAX_DIMS);
  if (out_dtype) *out_dtype = t->dtype_name;
  if (out_rank) *out_rank = t->rank;
  if (out_dims)
    for (int32_t d = 0; d < t->rank; d++) out_dims[d] = t->dims[d];
  if (out_data) *out_data = f->data + t->begin;
  if (out_bytes) *out_bytes = (size_t)(t->end - t->begin);
  return VNRT_OK;
}
