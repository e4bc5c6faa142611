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

vnrt_status vnrt_safetensors_write(vnrt_context *ctx, const char *path, const char *const *names,
                                   const vnrt_tensor_type *types, const void *const *datas,
                                   int32_t count) {
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path || count < 0 || (count > 0 && (!names || !types || !datas)))
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_safetensors_write: path, names, types and datas are required");
  for (int32_t i = 0; i < count; i++) {
    const vnrt_tensor_type *t = &types[i];
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
    if (!st_dtype_name(t->dtype) || t->rank < 0 || t->rank > VNRT_MAX_DIMS)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: tensor '%s' has an invalid type", names[i]);
    for (int32_t d = 0; d < t->rank; d++)
      if (t->dims[d] < 0)
        return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "vnrt_safetensors_write: tensor '%s' has a negative dimension", names[i]);
    if (!datas[i] && vnrt_tensor_type_bytes(t) > 0)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_safetensors_write: tensor '%s' has no data", names[i]);
  }

  st_buf b = {ctx, NULL, 0, 0, false};
  buf_put(&b, "{", 1);
  uint64_t offset = 0;
  for (int32_t i = 0; i < count; i++) {
    const vnrt_tensor_type *t = &types[i];
    uint64_t bytes = vnrt_tensor_type_bytes(t);
    if (i) buf_put(&b, ",", 1);
    buf_json_string(&b, names[i]);
    buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
    for (int32_t d = 0; d < t->rank; d++) buf_printf(&b, "%s%" PRId64, d ? "," : "", t->dims[d]);
    buf_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + bytes);
    offset += bytes;
  }
  buf_put(&b, "}", 1);
  while (!b.oom && b.len % 8) buf_put(&b, " ", 1); /* so the data buffer starts 8-aligned */
  if (b.oom) {
    vn_free(ctx, b.p);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_safetensors_write: out of memory");
  }

  vnrt_status s = VNRT_OK;
  FILE *fp = fopen(path, "wb");
  if (!fp) {
    s = vn_error(ctx, VNRT_ERROR_IO, "%s: cannot create: %s", path, strerror(errno));
  } else {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)b.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(b.p, 1, b.len, fp) == b.len;
    for (int32_t i = 0; ok && i < count; i++) {
      size_t bytes = vnrt_tensor_type_bytes(&types[i]);
      ok = bytes == 0 || fwrite(datas[i], 1, bytes, fp) == bytes;
    }
    int err = errno;
    if (fclose(fp) != 0 && ok) {
      ok = false;
      err = errno;
    }
    if (!ok) {
      s = vn_error(ctx, VNRT_ERROR_IO, "%s: write failed: %s", path, strerror(err));
      remove(path);
    }
  }
  vn_free(ctx, b.p);
  return s;
}
