/* safetensors header parsing: the strict JSON parser for the header of a safetensors file. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "safetensors_internal.h"

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

vnrt_status vn_st_parse_header(vnrt_safetensors *f, const char *text, size_t len) {
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
