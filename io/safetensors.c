/* safetensors weight files: a memory-mapped reader with a strict header parser, and a writer. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "vnrt/io.h"

/* Every dtype the safetensors format defines, with its element size, so that a file holding
 * tensors vnrt cannot compute with (an I64 position table, say) still opens and is fully
 * bounds-checked. vnrt maps the four it computes with. */
static const struct {
  const char *name;
  uint32_t size;
  vnrt_dtype dtype;
} kDtypes[] = {
    {"F32", 4, VNRT_F32},
    {"F16", 2, VNRT_F16},
    {"BF16", 2, VNRT_BF16},
    {"I32", 4, VNRT_I32},
    {"F64", 8, VNRT_DTYPE_INVALID},
    {"I64", 8, VNRT_DTYPE_INVALID},
    {"I16", 2, VNRT_DTYPE_INVALID},
    {"I8", 1, VNRT_DTYPE_INVALID},
    {"U64", 8, VNRT_DTYPE_INVALID},
    {"U32", 4, VNRT_DTYPE_INVALID},
    {"U16", 2, VNRT_DTYPE_INVALID},
    {"U8", 1, VNRT_DTYPE_INVALID},
    {"BOOL", 1, VNRT_DTYPE_INVALID},
    {"F8_E4M3", 1, VNRT_DTYPE_INVALID},
    {"F8_E5M2", 1, VNRT_DTYPE_INVALID},
};

typedef struct st_tensor {
  char *name;
  char dtype_name[12];
  vnrt_dtype dtype; /* VNRT_DTYPE_INVALID for a dtype vnrt does not compute with */
  int32_t rank;     /* may exceed VNRT_MAX_DIMS; then only the first dims are kept */
  int64_t dims[VNRT_MAX_DIMS];
  uint64_t numel; /* over all dims */
  bool numel_overflow;
  uint64_t begin, end; /* data_offsets, relative to the data buffer */
} st_tensor;

struct vnrt_safetensors {
  vnrt_context *ctx;
  char *path;
  const uint8_t *map;
  size_t map_size;
  const uint8_t *data; /* the data buffer, after the header */
  uint64_t data_size;
  st_tensor *tensors; /* in header order */
  int32_t count, cap;
  st_tensor **by_name;          /* sorted by name, for lookup and duplicate detection */
  char **meta;                  /* key, value, key, value, ... */
  int32_t meta_count, meta_cap; /* in strings */
};

/* ---- header parser --------------------------------------------------------------------- */

/* A strict JSON parser for exactly the safetensors header schema:
 *   { "NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
 *     "__metadata__": {"key": "value", ...} }
 * Strings are full JSON strings (escapes, \u with surrogate pairs); numbers are JSON
 * non-negative integers. Anything else is rejected with its byte offset in the file. */
typedef struct st_parser {
  vnrt_safetensors *f;
  const char *begin, *p, *end;
} st_parser;

static vnrt_status json_error(st_parser *ps, const char *what) {
  return vn_error(ps->f->ctx, VNRT_ERROR_IO,
                  "%s: invalid JSON in the safetensors header at byte "
                  "%" PRIu64 ": %s",
                  ps->f->path, (uint64_t)(8 + (ps->p - ps->begin)), what);
}

static void json_ws(st_parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static bool json_accept(st_parser *ps, char c) {
  json_ws(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return true;
  }
  return false;
}

static vnrt_status json_expect(st_parser *ps, char c, const char *what) {
  return json_accept(ps, c) ? VNRT_OK : json_error(ps, what);
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool json_hex4(st_parser *ps, uint32_t *out) {
  if (ps->end - ps->p < 4) return false;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex_value(ps->p[i]);
    if (h < 0) return false;
    v = v << 4 | (uint32_t)h;
  }
  ps->p += 4;
  *out = v;
  return true;
}

static size_t utf8_encode(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The length of the valid UTF-8 sequence (2 to 4 bytes) starting at p, or 0: no overlong
 * forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_sequence(const char *p, const char *end) {
  const unsigned char *u = (const unsigned char *)p;
  size_t avail = (size_t)(end - p);
  size_t len;
  uint32_t cp;
  if (u[0] >= 0xC2 && u[0] <= 0xDF) {
    len = 2;
    cp = u[0] & 0x1Fu;
  } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
    len = 3;
    cp = u[0] & 0x0Fu;
  } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
    len = 4;
    cp = u[0] & 0x07u;
  } else {
    return 0;
  }
  if (avail < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((u[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (u[i] & 0x3Fu);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/* Decodes a JSON string into a new NUL-terminated string. The decoded text is never longer
 * than the quoted source, which sizes the allocation. */
static vnrt_status json_string(st_parser *ps, char **out, const char *what) {
  *out = NULL;
  json_ws(ps);
  if (ps->p >= ps->end || *ps->p != '"') return json_error(ps, what);
  ps->p++;
  const char *q = ps->p;
  while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
  if (q >= ps->end) return json_error(ps, "unterminated string");
  char *s = vn_malloc(ps->f->ctx, (size_t)(q - ps->p) + 1);
  if (!s) return vn_error(ps->f->ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", ps->f->path);
  size_t n = 0;
  vnrt_status st = VNRT_OK;
  while (*ps->p != '"') {
    unsigned char c = (unsigned char)*ps->p;
    if (c < 0x20) {
      st = json_error(ps, "control character in a string");
      break;
    }
    if (c >= 0x80) {
      size_t len = utf8_sequence(ps->p, q);
      if (!len) {
        st = json_error(ps, "invalid UTF-8 in a string");
        break;
      }
      memcpy(s + n, ps->p, len);
      n += len;
      ps->p += len;
      continue;
    }
    if (c != '\\') {
      s[n++] = (char)c;
      ps->p++;
      continue;
    }
    ps->p++;
    char e = *ps->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e != '\0' && simple) {
      static const char kOut[] = "\"\\/\b\f\n\r\t";
      s[n++] = kOut[simple - "\"\\/bfnrt"];
      continue;
    }
    if (e != 'u') {
      ps->p--;
      st = json_error(ps, "invalid escape in a string");
      break;
    }
    uint32_t cp;
    if (!json_hex4(ps, &cp)) {
      st = json_error(ps, "invalid \\u escape");
      break;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t lo;
      if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
          (ps->p += 2, !json_hex4(ps, &lo)) || lo < 0xDC00 || lo > 0xDFFF) {
        st = json_error(ps, "unpaired surrogate in a \\u escape");
        break;
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      st = json_error(ps, "unpaired surrogate in a \\u escape");
      break;
    } else if (cp == 0) {
      st = json_error(ps, "a NUL character (\\u0000) in a string is not supported");
      break;
    }
    n += utf8_encode(cp, s + n);
  }
  if (st != VNRT_OK) {
    vn_free(ps->f->ctx, s);
    return st;
  }
  ps->p++; /* the closing quote */
  s[n] = '\0';
  *out = s;
  return VNRT_OK;
}

/* A JSON non-negative integer that fits in int64 (shapes and offsets). */
static vnrt_status json_uint(st_parser *ps, uint64_t *out, const char *what) {
  json_ws(ps);
  if (ps->p < ps->end && *ps->p == '-')
    return json_error(ps,
                      "negative number where a size or "
                      "offset was expected");
  if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return json_error(ps, what);
  if (*ps->p == '0' && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9')
    return json_error(ps, "leading zero in a number");
  uint64_t v = 0;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
    unsigned d = (unsigned)(*ps->p - '0');
    if (v > ((uint64_t)INT64_MAX - d) / 10) return json_error(ps, "number too large");
    v = v * 10 + d;
    ps->p++;
  }
  if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
    return json_error(ps, "expected an integer, not a fraction");
  *out = v;
  return VNRT_OK;
}

static vnrt_status parse_metadata(st_parser *ps) {
  vnrt_safetensors *f = ps->f;
  VN_RETURN_IF_ERROR(json_expect(ps, '{', "expected an object for __metadata__"));
  if (json_accept(ps, '}')) return VNRT_OK;
  for (;;) {
    if (!vn_grow(f->ctx, (void **)&f->meta, &f->meta_cap, f->meta_count + 2, sizeof(char *)))
      return vn_error(f->ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", f->path);
    char *key;
    VN_RETURN_IF_ERROR(json_string(ps, &key, "expected a string key in __metadata__"));
    f->meta[f->meta_count++] = key;
    for (int32_t i = 0; i + 2 < f->meta_count; i += 2)
      if (strcmp(f->meta[i], key) == 0)
        return vn_error(f->ctx, VNRT_ERROR_IO, "%s: duplicate __metadata__ key '%s'", f->path, key);
    VN_RETURN_IF_ERROR(json_expect(ps, ':', "expected ':'"));
    char *value;
    VN_RETURN_IF_ERROR(json_string(ps, &value, "expected a string value in __metadata__"));
    f->meta[f->meta_count++] = value;
    if (json_accept(ps, ',')) continue;
    return json_expect(ps, '}', "expected ',' or '}' in __metadata__");
  }
}

/* Parses one tensor entry into t (whose name is already set). */
static vnrt_status parse_tensor(st_parser *ps, st_tensor *t) {
  vnrt_safetensors *f = ps->f;
  bool have_dtype = false, have_shape = false, have_offsets = false;
  VN_RETURN_IF_ERROR(json_expect(ps, '{', "expected an object for a tensor"));
  if (!json_accept(ps, '}')) {
    for (;;) {
      char *key;
      VN_RETURN_IF_ERROR(json_string(ps, &key, "expected a string key in a tensor entry"));
      int which = strcmp(key, "dtype") == 0          ? 0
                  : strcmp(key, "shape") == 0        ? 1
                  : strcmp(key, "data_offsets") == 0 ? 2
                                                     : -1;
      bool *seen = which == 0 ? &have_dtype : which == 1 ? &have_shape : &have_offsets;
      vnrt_status st = VNRT_OK;
      if (which < 0)
        st = vn_error(f->ctx, VNRT_ERROR_IO, "%s: tensor '%s': unexpected key '%s'", f->path,
                      t->name, key);
      else if (*seen)
        st = vn_error(f->ctx, VNRT_ERROR_IO, "%s: tensor '%s': duplicate key '%s'", f->path,
                      t->name, key);
      vn_free(f->ctx, key);
      VN_RETURN_IF_ERROR(st);
      *seen = true;
      VN_RETURN_IF_ERROR(json_expect(ps, ':', "expected ':'"));
      if (which == 0) {
        char *dtype;
        VN_RETURN_IF_ERROR(json_string(ps, &dtype, "expected a string for dtype"));
        size_t i = 0;
        while (i < VN_ARRAY_SIZE(kDtypes) && strcmp(kDtypes[i].name, dtype) != 0) i++;
        if (i == VN_ARRAY_SIZE(kDtypes))
          st = vn_error(f->ctx, VNRT_ERROR_IO, "%s: tensor '%s' has unknown dtype '%.32s'", f->path,
                        t->name, dtype);
        else
          snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dtype);
        vn_free(f->ctx, dtype);
        VN_RETURN_IF_ERROR(st);
      } else if (which == 1) {
        VN_RETURN_IF_ERROR(json_expect(ps, '[', "expected '[' for shape"));
        if (!json_accept(ps, ']')) {
          for (;;) {
            uint64_t d;
            VN_RETURN_IF_ERROR(json_uint(ps, &d, "expected an integer in shape"));
            if (t->rank < VNRT_MAX_DIMS) t->dims[t->rank] = (int64_t)d;
            if (t->rank == INT32_MAX) return json_error(ps, "shape too long");
            t->rank++;
            if (d && t->numel > UINT64_MAX / d) t->numel_overflow = true;
            t->numel *= d;
            if (json_accept(ps, ',')) continue;
            VN_RETURN_IF_ERROR(json_expect(ps, ']', "expected ',' or ']' in shape"));
            break;
          }
        }
      } else {
        VN_RETURN_IF_ERROR(json_expect(ps, '[', "expected '[' for data_offsets"));
        VN_RETURN_IF_ERROR(json_uint(ps, &t->begin, "expected an integer in data_offsets"));
        VN_RETURN_IF_ERROR(json_expect(ps, ',', "data_offsets must be [begin, end]"));
        VN_RETURN_IF_ERROR(json_uint(ps, &t->end, "expected an integer in data_offsets"));
        VN_RETURN_IF_ERROR(json_expect(ps, ']', "data_offsets must be [begin, end]"));
      }
      if (json_accept(ps, ',')) continue;
      VN_RETURN_IF_ERROR(json_expect(ps, '}', "expected ',' or '}' in a tensor entry"));
      break;
    }
  }
  const char *missing = !have_dtype     ? "dtype"
                        : !have_shape   ? "shape"
                        : !have_offsets ? "data_offsets"
                                        : NULL;
  if (missing)
    return vn_error(f->ctx, VNRT_ERROR_IO, "%s: tensor '%s' has no '%s'", f->path, t->name,
                    missing);
  return VNRT_OK;
}

static vnrt_status parse_header(vnrt_safetensors *f, const char *text, size_t len) {
  st_parser ps = {f, text, text, text + len};
  /* Like the reference implementation, the header must start with '{' exactly. */
  if (len == 0 || text[0] != '{') return json_error(&ps, "the header must start with '{'");
  ps.p++;
  bool have_meta = false;
  if (!json_accept(&ps, '}')) {
    for (;;) {
      char *name;
      VN_RETURN_IF_ERROR(json_string(&ps, &name, "expected a tensor name (a string)"));
      vnrt_status st = json_expect(&ps, ':', "expected ':'");
      if (st != VNRT_OK) {
        vn_free(f->ctx, name);
        return st;
      }
      if (strcmp(name, "__metadata__") == 0) {
        vn_free(f->ctx, name);
        if (have_meta)
          return vn_error(f->ctx, VNRT_ERROR_IO, "%s: duplicate __metadata__", f->path);
        have_meta = true;
        VN_RETURN_IF_ERROR(parse_metadata(&ps));
      } else {
        if (!vn_grow(f->ctx, (void **)&f->tensors, &f->cap, f->count + 1, sizeof(st_tensor))) {
          vn_free(f->ctx, name);
          return vn_error(f->ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", f->path);
        }
        st_tensor *t = &f->tensors[f->count++];
        memset(t, 0, sizeof *t);
        t->name = name;
        t->numel = 1;
        VN_RETURN_IF_ERROR(parse_tensor(&ps, t));
      }
      if (json_accept(&ps, ',')) continue;
      VN_RETURN_IF_ERROR(json_expect(&ps, '}', "expected ',' or '}' after a tensor entry"));
      break;
    }
  }
  json_ws(&ps);
  if (ps.p != ps.end) return json_error(&ps, "unexpected text after the header object");
  return VNRT_OK;
}

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
    s = parse_header(f, (const char *)f->map + 8, (size_t)hlen);
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

const char *vnrt_safetensors_metadata(const vnrt_safetensors *f, const char *key) {
  if (!f || !key) return NULL;
  for (int32_t i = 0; i + 1 < f->meta_count; i += 2)
    if (strcmp(f->meta[i], key) == 0) return f->meta[i + 1];
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
  int32_t lo = 0, hi = f->count;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->by_name[mid]->name, name);
    if (c == 0) {
      lo = mid;
      break;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo >= f->count || strcmp(f->by_name[lo]->name, name) != 0)
    return vn_error(f->ctx, VNRT_ERROR_NOT_FOUND, "%s: no tensor named '%s'", f->path, name);
  const st_tensor *t = f->by_name[lo];
  if (t->dtype == VNRT_DTYPE_INVALID)
    return vn_error(f->ctx, VNRT_ERROR_UNSUPPORTED,
                    "%s: tensor '%s' has dtype %s, which is not "
                    "supported (vnrt reads F32, F16, BF16 and I32)",
                    f->path, name, t->dtype_name);
  if (t->rank > VNRT_MAX_DIMS)
    return vn_error(f->ctx, VNRT_ERROR_UNSUPPORTED,
                    "%s: tensor '%s' has %d dimensions, which is "
                    "not supported (vnrt tensors have at most %d)",
                    f->path, name, (int)t->rank, VNRT_MAX_DIMS);
  out_type->dtype = t->dtype;
  out_type->rank = t->rank;
  for (int32_t d = 0; d < t->rank; d++) out_type->dims[d] = t->dims[d];
  if (out_data) *out_data = f->data + t->begin;
  if (out_bytes) *out_bytes = (size_t)(t->end - t->begin);
  return VNRT_OK;
}

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
