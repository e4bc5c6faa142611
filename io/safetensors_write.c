/* safetensors writer: one file from a list of named tensors. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "safetensors_internal.h"

/* ---- writer ---------------------------------------------------------------------------- */

typedef struct st_buf {
  vnrt_context *ctx;
  char *p;
  size_t len, cap;
  bool oom;
} st_buf;

static void buf_put(st_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = vn_realloc(b->ctx, b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_printf(st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(st_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void buf_json_string(st_buf *b, const char *s) {
  buf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      buf_put(b, esc, 2);
    } else if (c < 0x20) {
      buf_printf(b, "\\u%04x", c);
    } else {
      buf_put(b, s, 1);
    }
  }
  buf_put(b, "\"", 1);
}

static const char *st_dtype_name(vnrt_dtype dtype) {
  for (size_t k = 0; k < VN_ARRAY_SIZE(kDtypes); k++)
    if (kDtypes[k].dtype == dtype && dtype != VNRT_DTYPE_INVALID) return kDtypes[k].name;
  return NULL;
}

struct vnrt_safetensors_writer {
  vnrt_context *ctx;
  char *path;
  FILE *fp;
  int32_t count, next;
  char **names;       /* copies, for messages */
  uint64_t *bytes;    /* of each tensor */
  vnrt_status failed; /* the first failure of a put; VNRT_OK while none */
};

static void writer_free(vnrt_safetensors_writer *w) {
  vnrt_context *ctx = w->ctx;
  if (w->names)
    for (int32_t i = 0; i < w->count; i++) vn_free(ctx, w->names[i]);
  vn_free(ctx, w->names);
  vn_free(ctx, w->bytes);
  vn_free(ctx, w->path);
  vn_free(ctx, w);
}

/* Checks the names and metadata a writer is opened with (nothing is created on failure). */
static vnrt_status check_names(vnrt_context *ctx, const char *const *names, int32_t count,
                               const char *const *meta, int32_t meta_count) {
  for (int32_t i = 0; i < count; i++) {
    if (!names[i] || !names[i][0])
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: tensor %d has an empty name", (int)i);
    if (strcmp(names[i], "__metadata__") == 0)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: '__metadata__' is reserved, not a tensor name");
    for (int32_t j = 0; j < i; j++)
      if (strcmp(names[i], names[j]) == 0)
        return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "vnrt_safetensors_write: duplicate tensor name '%s'", names[i]);
  }
  for (int32_t i = 0; i < meta_count; i++) {
    if (!meta[2 * i] || !meta[2 * i + 1])
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: metadata entry %d has a NULL key or value", (int)i);
    for (int32_t j = 0; j < i; j++)
      if (strcmp(meta[2 * i], meta[2 * j]) == 0)
        return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "vnrt_safetensors_write: duplicate metadata key '%s'", meta[2 * i]);
  }
  return VNRT_OK;
}

/* Checks the tensors and metadata a writer is opened with (nothing is created on failure). */
static vnrt_status check_entries(vnrt_context *ctx, const char *const *names,
                                 const vnrt_tensor_type *types, int32_t count,
                                 const char *const *meta, int32_t meta_count) {
  VN_RETURN_IF_ERROR(check_names(ctx, names, count, meta, meta_count));
  for (int32_t i = 0; i < count; i++) {
    const vnrt_tensor_type *t = &types[i];
    if (!st_dtype_name(t->dtype) || t->rank < 0 || t->rank > VNRT_MAX_DIMS)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: tensor '%s' has an invalid type", names[i]);
    for (int32_t d = 0; d < t->rank; d++)
      if (t->dims[d] < 0)
        return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "vnrt_safetensors_write: tensor '%s' has a negative dimension", names[i]);
    if (vnrt_dtype_bits(t->dtype) == 4 && (t->rank == 0 || t->dims[t->rank - 1] % 2 != 0))
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: e2m1 tensor '%s' needs an even last dimension "
                      "(two codes per byte)",
                      names[i]);
  }
  return VNRT_OK;
}

/* One tensor as the file stores it: what the header says and how many bytes a put takes. */
typedef struct st_entry {
  const char *dtype;
  int32_t rank;
  int64_t dims[VNRT_MAX_DIMS];
  uint64_t bytes;
} st_entry;

static vnrt_status writer_create(vnrt_context *ctx, const char *path, const char *const *names,
                                 const st_entry *entries, int32_t count, const char *const *meta,
                                 int32_t meta_count, vnrt_safetensors_writer **out_writer);

vnrt_status vnrt_safetensors_writer_open(vnrt_context *ctx, const char *path,
                                         const char *const *names, const vnrt_tensor_type *types,
                                         int32_t count, const char *const *meta, int32_t meta_count,
                                         vnrt_safetensors_writer **out_writer) {
  if (out_writer) *out_writer = NULL;
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path || !out_writer || count < 0 || meta_count < 0 || (count > 0 && (!names || !types)) ||
      (meta_count > 0 && !meta))
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_writer_open: path, names, types and out_writer are required");
  VN_RETURN_IF_ERROR(check_entries(ctx, names, types, count, meta, meta_count));
  st_entry *entries = vn_calloc(ctx, (size_t)(count ? count : 1), sizeof *entries);
  if (!entries)
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_safetensors_write: out of memory");
  for (int32_t i = 0; i < count; i++) {
    const vnrt_tensor_type *t = &types[i];
    entries[i].dtype = st_dtype_name(t->dtype);
    entries[i].rank = t->rank;
    /* Packed FP4 is stored as bytes: the last dim counts bytes, two codes each. */
    for (int32_t d = 0; d < t->rank; d++)
      entries[i].dims[d] =
          t->dims[d] / (d == t->rank - 1 && vnrt_dtype_bits(t->dtype) == 4 ? 2 : 1);
    entries[i].bytes = vnrt_tensor_type_bytes(t);
  }
  vnrt_status s = writer_create(ctx, path, names, entries, count, meta, meta_count, out_writer);
  vn_free(ctx, entries);
  return s;
}

vnrt_status vnrt_safetensors_writer_open_stored(vnrt_context *ctx, const char *path,
                                                const char *const *names, const char *const *dtypes,
                                                const int32_t *ranks, const int64_t *const *dims,
                                                int32_t count, const char *const *meta,
                                                int32_t meta_count,
                                                vnrt_safetensors_writer **out_writer) {
  if (out_writer) *out_writer = NULL;
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path || !out_writer || count < 0 || meta_count < 0 ||
      (count > 0 && (!names || !dtypes || !ranks || !dims)) || (meta_count > 0 && !meta))
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_writer_open_stored: path, names, dtypes, ranks, dims and "
                    "out_writer are required");
  VN_RETURN_IF_ERROR(check_names(ctx, names, count, meta, meta_count));
  st_entry *entries = vn_calloc(ctx, (size_t)(count ? count : 1), sizeof *entries);
  if (!entries)
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_safetensors_write: out of memory");
  vnrt_status s = VNRT_OK;
  for (int32_t i = 0; i < count && s == VNRT_OK; i++) {
    st_entry *e = &entries[i];
    for (size_t k = 0; k < VN_ARRAY_SIZE(kDtypes) && dtypes[i]; k++)
      if (strcmp(kDtypes[k].name, dtypes[i]) == 0) {
        e->dtype = kDtypes[k].name;
        e->bytes = kDtypes[k].size;
      }
    if (!e->dtype || ranks[i] < 0 || ranks[i] > VNRT_MAX_DIMS || (ranks[i] > 0 && !dims[i])) {
      s = vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                   "vnrt_safetensors_write: tensor '%s' has an invalid dtype '%s' or rank %d",
                   names[i], dtypes[i] ? dtypes[i] : "(null)", (int)ranks[i]);
      break;
    }
    e->rank = ranks[i];
    for (int32_t d = 0; d < e->rank && s == VNRT_OK; d++) {
      e->dims[d] = dims[i][d];
      if (dims[i][d] < 0 || (dims[i][d] > 0 && e->bytes > (UINT64_MAX >> 2) / (uint64_t)dims[i][d]))
        s = vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                     "vnrt_safetensors_write: tensor '%s' has a negative or too large dimension",
                     names[i]);
      else
        e->bytes *= (uint64_t)dims[i][d];
    }
  }
  if (s == VNRT_OK)
    s = writer_create(ctx, path, names, entries, count, meta, meta_count, out_writer);
  vn_free(ctx, entries);
  return s;
}

static vnrt_status writer_create(vnrt_context *ctx, const char *path, const char *const *names,
                                 const st_entry *entries, int32_t count, const char *const *meta,
                                 int32_t meta_count, vnrt_safetensors_writer **out_writer) {
  st_buf b = {ctx, NULL, 0, 0, false};
  buf_put(&b, "{", 1);
  if (meta_count > 0) {
    buf_put(&b, "\"__metadata__\":{", 16);
    for (int32_t i = 0; i < meta_count; i++) {
      if (i) buf_put(&b, ",", 1);
      buf_json_string(&b, meta[2 * i]);
      buf_put(&b, ":", 1);
      buf_json_string(&b, meta[2 * i + 1]);
    }
    buf_put(&b, "}", 1);
  }
  uint64_t offset = 0;
  for (int32_t i = 0; i < count; i++) {
    const st_entry *e = &entries[i];
    if (i || meta_count > 0) buf_put(&b, ",", 1);
    buf_json_string(&b, names[i]);
    buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", e->dtype);
    for (int32_t d = 0; d < e->rank; d++) buf_printf(&b, "%s%" PRId64, d ? "," : "", e->dims[d]);
    buf_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + e->bytes);
    offset += e->bytes;
  }
  buf_put(&b, "}", 1);
  while (!b.oom && b.len % 8) buf_put(&b, " ", 1); /* so the data buffer starts 8-aligned */

  vnrt_safetensors_writer *w = vn_calloc(ctx, 1, sizeof *w);
  if (w) {
    w->ctx = ctx;
    w->path = vn_strdup(ctx, path);
    w->names = vn_calloc(ctx, (size_t)(count ? count : 1), sizeof(char *));
    w->bytes = vn_calloc(ctx, (size_t)(count ? count : 1), sizeof(uint64_t));
    if (w->names) w->count = count;
  }
  bool oom = b.oom || !w || !w->path || !w->names || !w->bytes;
  for (int32_t i = 0; !oom && i < count; i++) {
    w->names[i] = vn_strdup(ctx, names[i]);
    w->bytes[i] = entries[i].bytes;
    oom = !w->names[i];
  }
  if (oom) {
    vn_free(ctx, b.p);
    if (w) writer_free(w);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_safetensors_write: out of memory");
  }

  vnrt_status s = VNRT_OK;
  w->fp = fopen(path, "wb");
  if (!w->fp) {
    s = vn_error(ctx, VNRT_ERROR_IO, "%s: cannot create: %s", path, strerror(errno));
  } else {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)b.len >> (8 * i));
    if (fwrite(len8, 1, 8, w->fp) != 8 || fwrite(b.p, 1, b.len, w->fp) != b.len) {
      s = vn_error(ctx, VNRT_ERROR_IO, "%s: write failed: %s", path, strerror(errno));
      fclose(w->fp);
      remove(path);
    }
  }
  vn_free(ctx, b.p);
  if (s != VNRT_OK) {
    writer_free(w);
    return s;
  }
  *out_writer = w;
  return VNRT_OK;
}

vnrt_status vnrt_safetensors_writer_put(vnrt_safetensors_writer *w, const void *data,
                                        size_t bytes) {
  if (!w) return VNRT_ERROR_INVALID_ARGUMENT;
  if (w->failed != VNRT_OK)
    return vn_error(w->ctx, w->failed, "%s: an earlier write failed", w->path);
  if (w->next >= w->count)
    return vn_error(w->ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s: all %d tensors are already written",
                    w->path, (int)w->count);
  const char *name = w->names[w->next];
  if (bytes != w->bytes[w->next]) {
    w->failed = VNRT_ERROR_INVALID_ARGUMENT;
    return vn_error(w->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "%s: tensor '%s' is %" PRIu64 " bytes but %zu bytes were given", w->path, name,
                    w->bytes[w->next], bytes);
  }
  if (!data && bytes) {
    w->failed = VNRT_ERROR_INVALID_ARGUMENT;
    return vn_error(w->ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s: tensor '%s' has no data", w->path,
                    name);
  }
  if (bytes && fwrite(data, 1, bytes, w->fp) != bytes) {
    w->failed = VNRT_ERROR_IO;
    return vn_error(w->ctx, VNRT_ERROR_IO, "%s: write failed (tensor '%s'): %s", w->path, name,
                    strerror(errno));
  }
  w->next++;
  return VNRT_OK;
}

vnrt_status vnrt_safetensors_writer_close(vnrt_safetensors_writer *w) {
  if (!w) return VNRT_OK;
  vnrt_status s = w->failed;
  int err = 0;
  if (fclose(w->fp) != 0 && s == VNRT_OK) {
    err = errno;
    s = vn_error(w->ctx, VNRT_ERROR_IO, "%s: write failed: %s", w->path, strerror(err));
  }
  if (s == VNRT_OK && w->next < w->count)
    s = vn_error(w->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                 "%s: closed after %d of its %d tensors; the incomplete file is removed", w->path,
                 (int)w->next, (int)w->count);
  if (s != VNRT_OK) remove(w->path);
  writer_free(w);
  return s;
}

vnrt_status vnrt_safetensors_write(vnrt_context *ctx, const char *path, const char *const *names,
                                   const vnrt_tensor_type *types, const void *const *datas,
                                   int32_t count) {
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path || count < 0 || (count > 0 && (!names || !types || !datas)))
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_write: path, names, types and datas are required");
  VN_RETURN_IF_ERROR(check_entries(ctx, names, types, count, NULL, 0));
  for (int32_t i = 0; i < count; i++)
    if (!datas[i] && vnrt_tensor_type_bytes(&types[i]) > 0)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: tensor '%s' has no data", names[i]);
  vnrt_safetensors_writer *w;
  VN_RETURN_IF_ERROR(vnrt_safetensors_writer_open(ctx, path, names, types, count, NULL, 0, &w));
  for (int32_t i = 0; i < count; i++) {
    vnrt_status s = vnrt_safetensors_writer_put(w, datas[i], vnrt_tensor_type_bytes(&types[i]));
    if (s != VNRT_OK) {
      vnrt_safetensors_writer_close(w);
      return s;
    }
  }
  return vnrt_safetensors_writer_close(w);
}
