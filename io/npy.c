/* numpy .npy reading and writing for host tensors (the vnrt-run interchange format). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#include "vnrt/io.h"

/* "\x93NUMPY", two version bytes, then a 2-byte (1.0) or 4-byte (2.0, 3.0) header length. */
static const char kMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
#define NPY_PRELUDE_V1 10
#define NPY_PRELUDE_V2 12
/* numpy pads the whole header to a multiple of this, so the data is aligned for any dtype. */
#define NPY_ALIGN 64
/* A sane upper bound: real headers are well under 1 KiB; this keeps a corrupt length from
 * making us allocate gigabytes before we notice that the file is shorter. */
#define NPY_MAX_HEADER (1u << 20)

/* Where a .npy image comes from: an open file or a memory buffer, of a known size. */
typedef struct npy_source {
  vnrt_context *ctx;
  const char *name; /* for messages */
  FILE *file;
  const uint8_t *mem;
  uint64_t size;
} npy_source;

static vnrt_status src_read(npy_source *src, uint64_t offset, void *dst, size_t n) {
  if (n == 0) return VNRT_OK;
  /* Callers check sizes first; this keeps any slip from reading out of bounds. */
  if (offset > src->size || n > src->size - offset)
    return vn_error(src->ctx, VNRT_ERROR_IO, "%s: unexpected end of file", src->name);
  if (src->mem) {
    memcpy(dst, src->mem + offset, n);
    return VNRT_OK;
  }
  if (fseeko(src->file, (off_t)offset, SEEK_SET) != 0 || fread(dst, 1, n, src->file) != n)
    return vn_error(src->ctx, VNRT_ERROR_IO, "%s: read failed: %s", src->name,
                    ferror(src->file) ? strerror(errno) : "unexpected end of file");
  return VNRT_OK;
}

/* ---- header dictionary ----------------------------------------------------------------- */

/* The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False,
 * 'shape': (2, 3), } padded with spaces and a newline. This parses exactly that grammar: the
 * three keys in any order, single- or double-quoted strings without escapes, True/False, and a
 * tuple of non-negative integers. */
typedef struct npy_parser {
  npy_source *src;
  const char *p;
  const char *end;
  const char *begin;
} npy_parser;

typedef struct npy_header {
  char descr[16];
  int fortran_order;
  int32_t rank;
  int64_t dims[VNRT_MAX_DIMS];
} npy_header;

static vnrt_status hdr_error(npy_parser *ps, const char *what) {
  return vn_error(ps->src->ctx, VNRT_ERROR_IO, "%s: malformed .npy header at offset %d: %s",
                  ps->src->name, (int)(ps->p - ps->begin), what);
}

static void hdr_skip_ws(npy_parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static bool hdr_accept(npy_parser *ps, char c) {
  hdr_skip_ws(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return true;
  }
  return false;
}

/* A quoted string into out (NUL-terminated); longer strings than out holds are an error. */
static vnrt_status hdr_string(npy_parser *ps, char *out, size_t cap, const char *what) {
  hdr_skip_ws(ps);
  if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"')) return hdr_error(ps, what);
  char quote = *ps->p++;
  size_t n = 0;
  while (ps->p < ps->end && *ps->p != quote) {
    if (*ps->p == '\\' || *ps->p == '\n' || *ps->p == '\0')
      return hdr_error(ps, "unsupported character in a string");
    if (n + 1 >= cap) return hdr_error(ps, "string too long");
    out[n++] = *ps->p++;
  }
  if (ps->p >= ps->end) return hdr_error(ps, "unterminated string");
  ps->p++;
  out[n] = '\0';
  return VNRT_OK;
}

static bool hdr_word(npy_parser *ps, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
    ps->p += n;
    return true;
  }
  return false;
}

static vnrt_status hdr_shape(npy_parser *ps, npy_header *h) {
  if (!hdr_accept(ps, '(')) return hdr_error(ps, "expected '(' to start the shape tuple");
  int32_t rank = 0;
  for (;;) {
    if (hdr_accept(ps, ')')) break;
    hdr_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '-')
      return vn_error(ps->src->ctx, VNRT_ERROR_IO, "%s: .npy shape has a negative dimension",
                      ps->src->name);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
      return hdr_error(ps, "expected an integer dimension in the shape");
    int64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
      int d = *ps->p++ - '0';
      if (v > (INT64_MAX - d) / 10)
        return vn_error(ps->src->ctx, VNRT_ERROR_IO,
                        "%s: .npy shape dimension %d overflows a 64-bit integer", ps->src->name,
                        (int)rank);
      v = v * 10 + d;
    }
    if (ps->p < ps->end && *ps->p == 'L') ps->p++; /* Python 2 long, still in old files */
    if (rank >= VNRT_MAX_DIMS)
      return vn_error(ps->src->ctx, VNRT_ERROR_IO,
                      "%s: .npy shape has more than %d dimensions (vnrt tensors have at most %d)",
                      ps->src->name, VNRT_MAX_DIMS, VNRT_MAX_DIMS);
    h->dims[rank++] = v;
    if (hdr_accept(ps, ',')) continue;
    if (hdr_accept(ps, ')')) break;
    return hdr_error(ps, "expected ',' or ')' in the shape tuple");
  }
  /* Python spells a 1-tuple "(3,)"; "(3)" is just the integer 3, which numpy rejects too. */
  h->rank = rank;
  return VNRT_OK;
}

static vnrt_status hdr_parse(npy_source *src, const char *text, size_t len, npy_header *h) {
  npy_parser ps = {src, text, text + len, text};
  bool have_descr = false, have_fortran = false, have_shape = false;
  if (!hdr_accept(&ps, '{')) return hdr_error(&ps, "expected '{' (a Python dict literal)");
  for (;;) {
    if (hdr_accept(&ps, '}')) break;
    char key[32];
    VN_RETURN_IF_ERROR(hdr_string(&ps, key, sizeof key, "expected a quoted key"));
    if (!hdr_accept(&ps, ':')) return hdr_error(&ps, "expected ':' after a key");
    hdr_skip_ws(&ps);
    bool *seen;
    if (strcmp(key, "descr") == 0) {
      seen = &have_descr;
      if (ps.p < ps.end && (*ps.p == '[' || *ps.p == '('))
        return vn_error(src->ctx, VNRT_ERROR_IO,
                        "%s: unsupported dtype: structured arrays are not supported", src->name);
      VN_RETURN_IF_ERROR(
          hdr_string(&ps, h->descr, sizeof h->descr, "expected a quoted dtype string for 'descr'"));
    } else if (strcmp(key, "fortran_order") == 0) {
      seen = &have_fortran;
      if (hdr_word(&ps, "True"))
        h->fortran_order = 1;
      else if (hdr_word(&ps, "False"))
        h->fortran_order = 0;
      else
        return hdr_error(&ps, "expected True or False for 'fortran_order'");
    } else if (strcmp(key, "shape") == 0) {
      seen = &have_shape;
      VN_RETURN_IF_ERROR(hdr_shape(&ps, h));
    } else {
      return vn_error(src->ctx, VNRT_ERROR_IO, "%s: malformed .npy header: unexpected key '%s'",
                      src->name, key);
    }
    if (*seen)
      return vn_error(src->ctx, VNRT_ERROR_IO, "%s: malformed .npy header: duplicate key '%s'",
                      src->name, key);
    *seen = true;
    if (hdr_accept(&ps, ',')) continue;
    if (hdr_accept(&ps, '}')) break;
    return hdr_error(&ps, "expected ',' or '}' after a value");
  }
  hdr_skip_ws(&ps);
  if (ps.p != ps.end) return hdr_error(&ps, "unexpected text after the closing '}'");
  const char *missing = !have_descr     ? "descr"
                        : !have_fortran ? "fortran_order"
                        : !have_shape   ? "shape"
                                        : NULL;
  if (missing)
    return vn_error(src->ctx, VNRT_ERROR_IO, "%s: malformed .npy header: missing key '%s'",
                    src->name, missing);
  return VNRT_OK;
}

static bool is_code_dtype(vnrt_dtype dtype) {
  return dtype == VNRT_E4M3 || dtype == VNRT_E8M0 || dtype == VNRT_E2M1;
}

/* Maps a descr to a vnrt dtype and its bytes per stored element, or explains why it cannot. A
 * byte array (`|u1`, `|i1`; byte order means nothing for one byte) holds quantized codes: it
 * is read as `want` when that is e4m3, e8m0 or e2m1 (vnrt_npy_read_as), and rejected otherwise,
 * since its descr alone cannot say which. */
static vnrt_status descr_dtype(npy_source *src, const char *descr, vnrt_dtype want, vnrt_dtype *out,
                               size_t *out_elem) {
  static const struct {
    const char *descr;
    vnrt_dtype dtype;
  } kTable[] = {{"<f4", VNRT_F32}, {"<f2", VNRT_F16}, {"<i4", VNRT_I32}};
  for (size_t i = 0; i < VN_ARRAY_SIZE(kTable); i++) {
    if (strcmp(descr, kTable[i].descr) == 0) {
      *out = kTable[i].dtype;
      *out_elem = vnrt_dtype_size(kTable[i].dtype);
      return VNRT_OK;
    }
  }
  if (strlen(descr) == 3 && strchr("|<>=", descr[0]) && (descr[1] == 'u' || descr[1] == 'i') &&
      descr[2] == '1') {
    if (is_code_dtype(want)) {
      *out = want;
      *out_elem = 1;
      return VNRT_OK;
    }
    if (want == VNRT_DTYPE_INVALID)
      return vn_error(src->ctx, VNRT_ERROR_IO,
                      "%s: unsupported dtype '%s' here: a byte array holds quantized codes "
                      "whose dtype the file cannot name (read it with vnrt_npy_read_as as e4m3, "
                      "e8m0 or e2m1)",
                      src->name, descr);
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: byte array '%s' is read only as e4m3, e8m0 or e2m1 codes, not as %s",
                    src->name, descr, vnrt_dtype_name(want));
  }
  if (descr[0] == '>')
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: big-endian dtype '%s' is not supported (write it little-endian: "
                    "<f4, <f2 or <i4)",
                    src->name, descr);
  return vn_error(src->ctx, VNRT_ERROR_IO,
                  "%s: unsupported dtype '%s' (vnrt reads <f4, <f2, <i4 and |u1 codes)", src->name,
                  descr);
}

static void format_shape(char *buf, size_t cap, int32_t rank, const int64_t *dims) {
  size_t n = (size_t)snprintf(buf, cap, "(");
  for (int32_t i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", dims[i]);
  if (n < cap) snprintf(buf + n, cap - n, rank == 1 ? ",)" : ")");
}

/* Parses prelude and header, checks the data size against the source size, and reads the
 * data into a new buffer. */
static vnrt_status npy_load(npy_source *src, vnrt_dtype want, vnrt_tensor_type *out_type,
                            void **out_data) {
  uint8_t pre[NPY_PRELUDE_V2];
  /* A short file that starts like a .npy file is truncated; anything else is not .npy. */
  size_t first = src->size < NPY_PRELUDE_V1 ? (size_t)src->size : NPY_PRELUDE_V1;
  VN_RETURN_IF_ERROR(src_read(src, 0, pre, first));
  if (memcmp(pre, kMagic, first < sizeof kMagic ? first : sizeof kMagic) != 0)
    return vn_error(src->ctx, VNRT_ERROR_IO, "%s: not a .npy file (bad magic)", src->name);
  if (first < NPY_PRELUDE_V1)
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: truncated .npy header: the file is only %" PRIu64 " bytes", src->name,
                    src->size);
  int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: unsupported .npy format version %d.%d (vnrt reads 1.0, 2.0 and 3.0)",
                    src->name, major, minor);
  size_t prelude = major == 1 ? NPY_PRELUDE_V1 : NPY_PRELUDE_V2;
  if (src->size < prelude)
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: truncated .npy header: the file is only %" PRIu64 " bytes", src->name,
                    src->size);
  VN_RETURN_IF_ERROR(src_read(src, NPY_PRELUDE_V1, pre + NPY_PRELUDE_V1, prelude - NPY_PRELUDE_V1));
  uint64_t hlen = major == 1 ? (uint64_t)pre[8] | (uint64_t)pre[9] << 8
                             : (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
                                   (uint64_t)pre[11] << 24;
  if (hlen > src->size - prelude)
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: .npy header length %" PRIu64 " goes beyond the end of the file (%" PRIu64
                    " bytes)",
                    src->name, hlen, src->size);
  if (hlen > NPY_MAX_HEADER)
    return vn_error(src->ctx, VNRT_ERROR_IO, "%s: .npy header length %" PRIu64 " is too large",
                    src->name, hlen);
  char *text = vn_malloc(src->ctx, hlen ? (size_t)hlen : 1);
  if (!text) return vn_error(src->ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", src->name);
  npy_header h = {{0}, 0, 0, {0}};
  vnrt_status s = src_read(src, prelude, text, (size_t)hlen);
  if (s == VNRT_OK) s = hdr_parse(src, text, (size_t)hlen, &h);
  vn_free(src->ctx, text);
  VN_RETURN_IF_ERROR(s);

  vnrt_tensor_type type = {VNRT_DTYPE_INVALID, h.rank, {0}};
  size_t elem = 0;
  VN_RETURN_IF_ERROR(descr_dtype(src, h.descr, want, &type.dtype, &elem));
  if (h.fortran_order)
    return vn_error(src->ctx, VNRT_ERROR_IO,
                    "%s: fortran_order is True; vnrt reads only C-order arrays "
                    "(save np.ascontiguousarray(a))",
                    src->name);
  /* Element count and byte size with overflow checks: the dims come from the file. */
  uint64_t bytes = elem;
  bool overflow = false;
  for (int32_t i = 0; i < h.rank; i++) {
    type.dims[i] = h.dims[i];
    uint64_t d = (uint64_t)h.dims[i];
    if (d != 0 && bytes > UINT64_MAX / d) overflow = true;
    bytes *= d;
  }
  char shape[128];
  format_shape(shape, sizeof shape, h.rank, h.dims);
  if (overflow || bytes > SIZE_MAX)
    return vn_error(src->ctx, VNRT_ERROR_IO, "%s: .npy shape %s is too large (size overflows)",
                    src->name, shape);
  if (type.dtype == VNRT_E2M1) {
    /* Two codes per byte along the last dim: the tensor is twice as wide as the array. */
    if (h.rank == 0 || h.dims[h.rank - 1] > INT64_MAX / 2)
      return vn_error(src->ctx, VNRT_ERROR_IO,
                      "%s: .npy shape %s cannot hold packed e2m1 codes (%s)", src->name, shape,
                      h.rank == 0 ? "a scalar has no last dimension to pack along"
                                  : "its last dimension is too large");
    type.dims[h.rank - 1] *= 2;
  }
  uint64_t offset = prelude + hlen;
  uint64_t have = src->size - offset;
  if (have != bytes)
    return vn_error(
        src->ctx, VNRT_ERROR_IO,
        "%s: .npy data is %" PRIu64 " bytes but shape %s of %s needs %" PRIu64 " bytes (%s)",
        src->name, have, shape, h.descr, bytes, have < bytes ? "truncated" : "trailing bytes");
  void *data = vn_malloc(src->ctx, bytes ? (size_t)bytes : 1);
  if (!data)
    return vn_error(src->ctx, VNRT_ERROR_OUT_OF_MEMORY,
                    "%s: out of memory for %" PRIu64 " bytes of data", src->name, bytes);
  s = src_read(src, offset, data, (size_t)bytes);
  if (s != VNRT_OK) {
    vn_free(src->ctx, data);
    return s;
  }
  *out_type = type;
  *out_data = data;
  return VNRT_OK;
}

static vnrt_status clear_outs(vnrt_context *ctx, vnrt_tensor_type *out_type, void **out_data) {
  if (out_data) *out_data = NULL;
  if (out_type) memset(out_type, 0, sizeof *out_type);
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!out_type || !out_data)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "npy: out_type and out_data are required");
  return VNRT_OK;
}

vnrt_status vnrt_npy_read_memory_as(vnrt_context *ctx, const void *bytes, size_t size,
                                    const char *name, vnrt_dtype dtype, vnrt_tensor_type *out_type,
                                    void **out_data) {
  VN_RETURN_IF_ERROR(clear_outs(ctx, out_type, out_data));
  if (!bytes && size)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_read_memory: bytes is NULL");
  static const uint8_t kEmpty[1] = {0};
  npy_source src = {ctx, name ? name : "<memory>", NULL, bytes ? bytes : kEmpty, size};
  return npy_load(&src, dtype, out_type, out_data);
}

vnrt_status vnrt_npy_read_memory(vnrt_context *ctx, const void *bytes, size_t size,
                                 const char *name, vnrt_tensor_type *out_type, void **out_data) {
  return vnrt_npy_read_memory_as(ctx, bytes, size, name, VNRT_DTYPE_INVALID, out_type, out_data);
}

vnrt_status vnrt_npy_read(vnrt_context *ctx, const char *path, vnrt_tensor_type *out_type,
                          void **out_data) {
  return vnrt_npy_read_as(ctx, path, VNRT_DTYPE_INVALID, out_type, out_data);
}

vnrt_status vnrt_npy_read_as(vnrt_context *ctx, const char *path, vnrt_dtype dtype,
                             vnrt_tensor_type *out_type, void **out_data) {
  VN_RETURN_IF_ERROR(clear_outs(ctx, out_type, out_data));
  if (!path) return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_read: path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f)
    return vn_error(ctx, errno == ENOENT ? VNRT_ERROR_NOT_FOUND : VNRT_ERROR_IO,
                    "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  vnrt_status s;
  if (fstat(fileno(f), &st) != 0) {
    s = vn_error(ctx, VNRT_ERROR_IO, "%s: cannot stat: %s", path, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    s = vn_error(ctx, VNRT_ERROR_IO, "%s: not a regular file", path);
  } else {
    npy_source src = {ctx, path, f, NULL, (uint64_t)st.st_size};
    s = npy_load(&src, dtype, out_type, out_data);
  }
  fclose(f);
  return s;
}

/* ---- writing --------------------------------------------------------------------------- */

vnrt_status vnrt_npy_write_memory(vnrt_context *ctx, const vnrt_tensor_type *type, const void *data,
                                  void **out_bytes, size_t *out_size) {
  if (out_bytes) *out_bytes = NULL;
  if (out_size) *out_size = 0;
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!type || !out_bytes || !out_size)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_npy_write: type, out_bytes and out_size are required");
  const char *descr;
  size_t out_elem;
  switch (type->dtype) {
    case VNRT_F32:
      descr = "<f4";
      out_elem = 4;
      break;
    case VNRT_BF16:
      descr = "<f4";
      out_elem = 4;
      break; /* numpy has no bf16 */
    case VNRT_F16:
      descr = "<f2";
      out_elem = 2;
      break;
    case VNRT_I32:
      descr = "<i4";
      out_elem = 4;
      break;
    case VNRT_E4M3:
    case VNRT_E8M0:
    case VNRT_E2M1:
      descr = "|u1"; /* the codes' bytes; vnrt_npy_read_as names their dtype */
      out_elem = 1;
      break;
    default:
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_write: invalid dtype %d",
                      (int)type->dtype);
  }
  if (type->rank < 0 || type->rank > VNRT_MAX_DIMS)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_write: invalid rank %d",
                    (int)type->rank);
  uint64_t numel = 1;
  for (int32_t i = 0; i < type->rank; i++) {
    if (type->dims[i] < 0)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_npy_write: negative dimension %" PRId64, type->dims[i]);
    uint64_t d = (uint64_t)type->dims[i];
    if (d != 0 && numel > (SIZE_MAX / 8) / d)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_write: shape too large");
    numel *= d;
  }
  /* e2m1 is stored as its bytes: the last dim counts bytes of two codes each. */
  int64_t dims[VNRT_MAX_DIMS];
  for (int32_t i = 0; i < type->rank; i++) dims[i] = type->dims[i];
  if (type->dtype == VNRT_E2M1) {
    if (type->rank == 0 || dims[type->rank - 1] % 2 != 0)
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_npy_write: an e2m1 tensor needs an even last dimension (two codes "
                      "per byte)");
    dims[type->rank - 1] /= 2;
    numel /= 2;
  }
  if (!data && numel)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_write: data is NULL");

  /* numpy's own layout: the dict repr, spaces, '\n', total prelude + header a multiple of 64. */
  char shape[128];
  format_shape(shape, sizeof shape, type->rank, dims);
  char dict[256];
  int dlen = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
  size_t hlen = (size_t)dlen + 1;
  size_t total_head = NPY_PRELUDE_V1 + hlen;
  size_t pad = (NPY_ALIGN - total_head % NPY_ALIGN) % NPY_ALIGN;
  hlen += pad;
  size_t data_bytes = (size_t)numel * out_elem;
  size_t size = NPY_PRELUDE_V1 + hlen + data_bytes;
  uint8_t *buf = vn_malloc(ctx, size);
  if (!buf) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_npy_write: out of memory");
  memcpy(buf, kMagic, sizeof kMagic);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (uint8_t)(hlen & 0xff);
  buf[9] = (uint8_t)(hlen >> 8);
  memcpy(buf + NPY_PRELUDE_V1, dict, (size_t)dlen);
  memset(buf + NPY_PRELUDE_V1 + dlen, ' ', pad);
  buf[NPY_PRELUDE_V1 + hlen - 1] = '\n';
  uint8_t *dst = buf + NPY_PRELUDE_V1 + hlen;
  if (type->dtype == VNRT_BF16) {
    /* Exact widening: a bf16 is the top half of an f32. */
    const uint8_t *src = data;
    for (size_t i = 0; i < (size_t)numel; i++) {
      uint16_t b;
      memcpy(&b, src + 2 * i, 2);
      float f = vnrt_bf16_to_f32(b);
      memcpy(dst + 4 * i, &f, 4);
    }
  } else if (data_bytes) {
    memcpy(dst, data, data_bytes);
  }
  *out_bytes = buf;
  *out_size = size;
  return VNRT_OK;
}

vnrt_status vnrt_npy_write(vnrt_context *ctx, const char *path, const vnrt_tensor_type *type,
                           const void *data) {
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path) return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_npy_write: path is NULL");
  void *bytes;
  size_t size;
  VN_RETURN_IF_ERROR(vnrt_npy_write_memory(ctx, type, data, &bytes, &size));
  vnrt_status s = VNRT_OK;
  FILE *f = fopen(path, "wb");
  if (!f) {
    s = vn_error(ctx, VNRT_ERROR_IO, "%s: cannot create: %s", path, strerror(errno));
  } else {
    bool ok = fwrite(bytes, 1, size, f) == size;
    int err = errno;
    if (fclose(f) != 0 && ok) {
      ok = false;
      err = errno;
    }
    if (!ok) {
      s = vn_error(ctx, VNRT_ERROR_IO, "%s: write failed: %s", path, strerror(err));
      remove(path);
    }
  }
  vn_free(ctx, bytes);
  return s;
}
