/* Tests of the safetensors reader and writer: round trips, the header schema, and each kind of
 * corrupt file failing with a message that names the problem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "vnrt/io.h"

static char g_dir[64];

static void make_dir(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/vnrt_st_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static const char *path_in_dir(const char *name) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  return path;
}

static void remove_dir(const char *path) {
  unlink(path);
  rmdir(g_dir);
}

/* Writes a raw safetensors file: 8-byte little-endian header length, header, data. */
static void write_raw(const char *path, uint64_t hlen, const char *header, const void *data,
                      size_t data_bytes) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen >> (8 * i));
  fwrite(len8, 1, 8, f);
  fwrite(header, 1, strlen(header), f);
  if (data_bytes) fwrite(data, 1, data_bytes, f);
  fclose(f);
}

static void write_header(const char *path, const char *header, size_t data_bytes) {
  static const unsigned char zeros[256];
  ck_assert_uint_le(data_bytes, sizeof zeros);
  write_raw(path, strlen(header), header, zeros, data_bytes);
}

/* Opens path expecting failure with status and every word (NULL-terminated) in the message. */
static void expect_open_error(const char *path, vnrt_status status, const char *const *words) {
  vnrt_context *ctx = tu_context();
  vnrt_safetensors *f = (vnrt_safetensors *)1;
  vnrt_status s = vnrt_safetensors_open(ctx, path, &f);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s == status, "expected %s, got %s: %s", vnrt_status_string(status),
                vnrt_status_string(s), msg);
  ck_assert_ptr_null(f);
  ck_assert_msg(strstr(msg, path) != NULL, "message lacks the file name: %s", msg);
  for (; *words; words++)
    ck_assert_msg(strstr(msg, *words) != NULL, "message lacks '%s': %s", *words, msg);
  vnrt_context_destroy(ctx);
}

#define EXPECT_OPEN_ERROR(path, status, ...)          \
  do {                                                \
    const char *const words_[] = {__VA_ARGS__, NULL}; \
    expect_open_error(path, status, words_);          \
  } while (0)

/* Header + error words for one corrupt file (data of data_bytes zero bytes follows). */
typedef struct bad_case {
  const char *header;
  size_t data_bytes;
  const char *word1, *word2;
} bad_case;

static void run_bad_cases(const bad_case *cases, size_t n) {
  make_dir();
  const char *path = path_in_dir("bad.safetensors");
  for (size_t i = 0; i < n; i++) {
    write_header(path, cases[i].header, cases[i].data_bytes);
    EXPECT_OPEN_ERROR(path, VNRT_ERROR_IO, cases[i].word1, cases[i].word2);
  }
  remove_dir(path);
}

/* ---- round trips ----------------------------------------------------------------------- */

START_TEST(write_then_read_every_dtype) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("w.safetensors");
  const char *names[] = {"layers.0.w1", "g", "scalar", "idx", "empty"};
  vnrt_tensor_type types[] = {
      {VNRT_F16, 2, {3, 5}},       {VNRT_F32, 1, {7}},    {VNRT_BF16, 0, {0}},
      {VNRT_I32, 4, {1, 2, 1, 3}}, {VNRT_F32, 2, {0, 4}},
  };
  void *datas[5];
  for (int i = 0; i < 5; i++) {
    size_t n = vnrt_tensor_type_bytes(&types[i]);
    unsigned char *p = malloc(n ? n : 1);
    for (size_t k = 0; k < n; k++) p[k] = (unsigned char)(k * 29 + 3 * (size_t)i + 1);
    datas[i] = p;
  }
  TU_OK(ctx, vnrt_safetensors_write(ctx, path, names, types, (const void *const *)datas, 5));

  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  ck_assert_int_eq(vnrt_safetensors_count(f), 5);
  for (int32_t i = 0; i < 5; i++) ck_assert_str_eq(vnrt_safetensors_name(f, i), names[i]);
  ck_assert_ptr_null(vnrt_safetensors_name(f, 5));
  ck_assert_ptr_null(vnrt_safetensors_name(f, -1));
  for (int i = 0; i < 5; i++) {
    vnrt_tensor_type got;
    const void *data;
    size_t bytes;
    TU_OK(ctx, vnrt_safetensors_find(f, names[i], &got, &data, &bytes));
    ck_assert_int_eq(got.dtype, types[i].dtype);
    ck_assert_int_eq(got.rank, types[i].rank);
    for (int32_t d = 0; d < got.rank; d++) ck_assert_int_eq(got.dims[d], types[i].dims[d]);
    ck_assert_uint_eq(bytes, vnrt_tensor_type_bytes(&types[i]));
    ck_assert_int_eq(memcmp(data, datas[i], bytes), 0);
  }
  /* The first tensor's data starts 8-aligned: the writer pads the header to 8 bytes. */
  const void *first;
  vnrt_tensor_type t0;
  TU_OK(ctx, vnrt_safetensors_find(f, names[0], &t0, &first, NULL));
  ck_assert_uint_eq((uintptr_t)first % 8, 0);
  vnrt_safetensors_close(f);

  /* The header is exactly the compact JSON the format describes. */
  FILE *fp = fopen(path, "rb");
  unsigned char len8[8];
  ck_assert_uint_eq(fread(len8, 1, 8, fp), 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  ck_assert_uint_eq(hlen % 8, 0);
  char header[1024] = {0};
  ck_assert_uint_lt(hlen, sizeof header);
  ck_assert_uint_eq(fread(header, 1, hlen, fp), hlen);
  fclose(fp);
  const char *expect =
      "{\"layers.0.w1\":{\"dtype\":\"F16\",\"shape\":[3,5],\"data_offsets\":[0,30]},"
      "\"g\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[30,58]},"
      "\"scalar\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[58,60]},"
      "\"idx\":{\"dtype\":\"I32\",\"shape\":[1,2,1,3],\"data_offsets\":[60,84]},"
      "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[84,84]}}";
  ck_assert_int_eq(strncmp(header, expect, strlen(expect)), 0);
  for (size_t k = strlen(expect); k < hlen; k++) ck_assert_int_eq(header[k], ' ');

  for (int i = 0; i < 5; i++) free(datas[i]);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Names with characters JSON must escape survive the writer's escaping and the reader's
 * decoding; lookups are by exact name. */
START_TEST(names_are_escaped_and_decoded) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("n.safetensors");
  const char *names[] = {"quote\"back\\slash", "tab\tnew\nline", "caf\xc3\xa9"};
  vnrt_tensor_type types[3] = {{VNRT_F32, 1, {1}}, {VNRT_F32, 1, {1}}, {VNRT_F32, 1, {1}}};
  const float v[3] = {1.5f, -2.0f, 3.0f};
  const void *datas[3] = {&v[0], &v[1], &v[2]};
  TU_OK(ctx, vnrt_safetensors_write(ctx, path, names, types, datas, 3));
  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  for (int i = 0; i < 3; i++) {
    vnrt_tensor_type got;
    const void *data;
    TU_OK(ctx, vnrt_safetensors_find(f, names[i], &got, &data, NULL));
    float x;
    memcpy(&x, data, 4);
    ck_assert_float_eq(x, v[i]);
  }
  vnrt_tensor_type got;
  ck_assert_int_eq(vnrt_safetensors_find(f, "quote", &got, NULL, NULL), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "no tensor named 'quote'"));
  vnrt_safetensors_close(f);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A hand-written header as other writers produce it: whitespace, any key order, \u escapes
 * (including a surrogate pair), __metadata__, and an empty file with no tensors. */
START_TEST(reads_foreign_headers_and_metadata) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("m.safetensors");
  const char *header =
      "{ \"__metadata__\" : {\"format\": \"pt\", \"note\": \"a\\\"b\\u00e9\\ud83d\\ude00\"},\n"
      "  \"b\\u002ew\": {\"data_offsets\": [8, 12], \"shape\": [2], \"dtype\": \"F16\"},\n"
      "  \"a\": {\"shape\": [2, 1], \"dtype\": \"I32\", \"data_offsets\": [0, 8]} }   ";
  const int32_t a[2] = {-5, 9};
  const uint16_t b[2] = {0x3C00, 0xC000};
  unsigned char data[12];
  memcpy(data, a, 8);
  memcpy(data + 8, b, 4);
  write_raw(path, strlen(header), header, data, sizeof data);
  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  ck_assert_int_eq(vnrt_safetensors_count(f), 2);
  ck_assert_str_eq(vnrt_safetensors_name(f, 0), "b.w");
  ck_assert_str_eq(vnrt_safetensors_name(f, 1), "a");
  ck_assert_str_eq(vnrt_safetensors_metadata(f, "format"), "pt");
  ck_assert_str_eq(vnrt_safetensors_metadata(f, "note"), "a\"b\xc3\xa9\xf0\x9f\x98\x80");
  ck_assert_ptr_null(vnrt_safetensors_metadata(f, "missing"));
  vnrt_tensor_type t;
  const void *p;
  size_t bytes;
  TU_OK(ctx, vnrt_safetensors_find(f, "a", &t, &p, &bytes));
  ck_assert_int_eq(t.dtype, VNRT_I32);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_int_eq(t.dims[0], 2);
  ck_assert_int_eq(t.dims[1], 1);
  ck_assert_int_eq(memcmp(p, a, 8), 0);
  TU_OK(ctx, vnrt_safetensors_find(f, "b.w", &t, &p, &bytes));
  ck_assert_int_eq(t.dtype, VNRT_F16);
  uint16_t h[2];
  memcpy(h, p, 4);
  ck_assert_double_eq(vnrt_f16_to_f32(h[0]), 1.0);
  ck_assert_double_eq(vnrt_f16_to_f32(h[1]), -2.0);
  vnrt_safetensors_close(f);

  write_raw(path, 2, "{}", NULL, 0);
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  ck_assert_int_eq(vnrt_safetensors_count(f), 0);
  vnrt_safetensors_close(f);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A dtype safetensors defines but vnrt does not compute with, or a rank above 4, still lets
 * the file open (so its other tensors are usable) and fails the lookup by name. */
START_TEST(unsupported_dtype_and_rank_fail_lookup) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("u.safetensors");
  write_header(path,
               "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
               "\"r\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[16,24]},"
               "\"ok\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}",
               32);
  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  vnrt_tensor_type t;
  ck_assert_int_eq(vnrt_safetensors_find(f, "d", &t, NULL, NULL), VNRT_ERROR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "F64"));
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "not supported"));
  ck_assert_int_eq(t.dtype, VNRT_DTYPE_INVALID);
  ck_assert_int_eq(vnrt_safetensors_find(f, "r", &t, NULL, NULL), VNRT_ERROR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "5 dimensions"));
  TU_OK(ctx, vnrt_safetensors_find(f, "ok", &t, NULL, NULL));
  ck_assert_int_eq(t.dtype, VNRT_BF16);
  vnrt_safetensors_close(f);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- corrupt files --------------------------------------------------------------------- */

START_TEST(error_missing_and_truncated_files) {
  EXPECT_OPEN_ERROR("/nonexistent/w.safetensors", VNRT_ERROR_NOT_FOUND, "cannot open");
  make_dir();
  const char *path = path_in_dir("t.safetensors");
  FILE *f = fopen(path, "wb");
  fwrite("\x10\0\0", 1, 3, f);
  fclose(f);
  EXPECT_OPEN_ERROR(path, VNRT_ERROR_IO, "truncated", "3 bytes");
  write_raw(path, 1000, "{}", NULL, 0);
  EXPECT_OPEN_ERROR(path, VNRT_ERROR_IO, "header length 1000", "beyond the end");
  write_raw(path, UINT64_MAX, "{}", NULL, 0);
  EXPECT_OPEN_ERROR(path, VNRT_ERROR_IO, "header length 18446744073709551615", "beyond");
  remove_dir(path);
}
END_TEST

/* The header length against the file size, at the boundary and where 8 + length wraps: a
 * length that fits exactly opens (every byte after the 8-byte prefix is header, no data); one
 * to eight bytes more, the file size, and lengths near 2^64 fail with VNRT_ERROR_IO and no
 * file, before the header parser reads a byte (so the error is the length's, not the JSON's:
 * a parser run past the mapping would read beyond the file). */
START_TEST(header_length_bounds) {
  make_dir();
  const char *path = path_in_dir("h.safetensors");
  const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}  ";
  const uint64_t n = strlen(hdr), size = 8 + n;
  vnrt_context *ctx = tu_context();
  write_raw(path, n, hdr, NULL, 0);
  vnrt_safetensors *f = NULL;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  ck_assert_int_eq(vnrt_safetensors_count(f), 1);
  ck_assert_str_eq(vnrt_safetensors_name(f, 0), "x");
  vnrt_safetensors_close(f);
  const uint64_t bad[] = {n + 1,          n + 2,       n + 7,          n + 8,
                          size,           size + 4096, UINT64_MAX - 7, UINT64_MAX - 6,
                          UINT64_MAX - 1, UINT64_MAX,  1ull << 63,     (1ull << 63) - 1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    write_raw(path, bad[i], hdr, NULL, 0);
    f = (vnrt_safetensors *)1;
    vnrt_status s = vnrt_safetensors_open(ctx, path, &f);
    ck_assert_msg(s == VNRT_ERROR_IO, "header length %llu of %llu bytes: %s",
                  (unsigned long long)bad[i], (unsigned long long)size, vnrt_status_string(s));
    ck_assert_ptr_null(f);
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "invalid JSON") == NULL,
                  "header length %llu reached the JSON parser: %s", (unsigned long long)bad[i],
                  msg);
  }
  /* A shorter length is a header cut short: the parser's error. */
  write_raw(path, n - 3, hdr, NULL, 0);
  ck_assert_int_eq(vnrt_safetensors_open(ctx, path, &f), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "invalid JSON"));
  vnrt_context_destroy(ctx);
  remove_dir(path);
}
END_TEST

START_TEST(error_invalid_json) {
  static const bad_case cases[] = {
      {"", 0, "invalid JSON", "start with '{'"},
      {" {}", 0, "invalid JSON", "start with '{'"},
      {"{", 0, "invalid JSON", "tensor name"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "invalid JSON",
       "tensor name"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "invalid JSON",
       "after the header"},
      {"{\"a\" {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "expected ':'"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "integer in shape"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "leading zero"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "fraction"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "negative"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
       "invalid JSON", "too large"},
      {"{\"a\\x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "invalid escape"},
      {"{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "surrogate"},
      {"{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "NUL"},
      {"{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "control character"},
      {"{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "UTF-8"},
      {"{\"a\xc0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
       "invalid JSON", "UTF-8"},
      {"{\"a:{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON", ""},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "invalid JSON",
       "[begin, end]"},
      {"{\"a\":{\"dtype\":F32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid JSON",
       "string for dtype"},
      {"{\"a\":[1,2]}", 0, "invalid JSON", "object for a tensor"},
      {"{\"__metadata__\":{\"k\":1}}", 0, "invalid JSON", "string value in __metadata__"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "invalid JSON",
       "expected ',' or '}'"},
  };
  run_bad_cases(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

START_TEST(error_schema) {
  static const bad_case cases[] = {
      {"{\"a\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F99'",
       "'a'"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, "tensor 'a' has no 'data_offsets'", ""},
      {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no 'dtype'", ""},
      {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no 'shape'", ""},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4,
       "unexpected key 'extra'", "'a'"},
      {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
       "duplicate key 'dtype'", ""},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, "duplicate tensor name 'a'", ""},
      {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__", ""},
      {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate __metadata__ key 'k'", ""},
  };
  run_bad_cases(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

START_TEST(error_offsets) {
  static const bad_case cases[] = {
      /* end beyond the data buffer */
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
       "[0, 16] go beyond the end of the file", "12 bytes"},
      /* span disagrees with shape x dtype */
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, "span 12 bytes",
       "need 16 bytes"},
      {"{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, "need 6 bytes",
       "F16"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
       "end before they begin", ""},
      /* overlap, hole, unused tail */
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
       12, "tensor 'b' overlaps tensor 'a'", ""},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
       12, "4 bytes before tensor 'b'", "holes"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 10, "last 6 bytes",
       "no tensor"},
      /* a shape whose byte size overflows 64 bits */
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
       "shape is too large", ""},
  };
  run_bad_cases(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* Every truncation of a valid file fails cleanly (valgrind/ASan would catch any overread of
 * the mapping, whose size is exactly the file's). */
START_TEST(every_truncation_is_an_error) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *full = path_in_dir("full.safetensors");
  const char *names[] = {"x", "y"};
  vnrt_tensor_type types[] = {{VNRT_F32, 1, {3}}, {VNRT_I32, 2, {1, 2}}};
  const float x[3] = {1, 2, 3};
  const int32_t y[2] = {4, 5};
  const void *datas[] = {x, y};
  TU_OK(ctx, vnrt_safetensors_write(ctx, full, names, types, datas, 2));
  FILE *fp = fopen(full, "rb");
  unsigned char bytes[512];
  size_t size = fread(bytes, 1, sizeof bytes, fp);
  fclose(fp);
  unlink(full);
  const char *cut = path_in_dir("cut.safetensors");
  for (size_t n = 0; n < size; n++) {
    fp = fopen(cut, "wb");
    fwrite(bytes, 1, n, fp);
    fclose(fp);
    vnrt_safetensors *f;
    vnrt_status s = vnrt_safetensors_open(ctx, cut, &f);
    ck_assert_msg(s == VNRT_ERROR_IO, "prefix %zu: %s", n, vnrt_status_string(s));
    ck_assert_ptr_null(f);
  }
  remove_dir(cut);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(writer_rejects_bad_arguments) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("bad.safetensors");
  const float v[2] = {0};
  const void *datas[] = {v, v};
  vnrt_tensor_type types[] = {{VNRT_F32, 1, {2}}, {VNRT_F32, 1, {2}}};
  const char *dup[] = {"w", "w"};
  ck_assert_int_eq(vnrt_safetensors_write(ctx, path, dup, types, datas, 2),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "duplicate tensor name 'w'"));
  const char *empty[] = {""};
  ck_assert_int_eq(vnrt_safetensors_write(ctx, path, empty, types, datas, 1),
                   VNRT_ERROR_INVALID_ARGUMENT);
  const char *meta[] = {"__metadata__"};
  ck_assert_int_eq(vnrt_safetensors_write(ctx, path, meta, types, datas, 1),
                   VNRT_ERROR_INVALID_ARGUMENT);
  const char *one[] = {"a"};
  vnrt_tensor_type bad[] = {{VNRT_DTYPE_INVALID, 1, {2}}};
  ck_assert_int_eq(vnrt_safetensors_write(ctx, path, one, bad, datas, 1),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(
      vnrt_safetensors_write(ctx, "/nonexistent/dir/w.safetensors", one, types, datas, 1),
      VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "cannot create"));
  ck_assert_int_ne(access(path, F_OK), 0); /* nothing was written for a rejected call */
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- quantized dtypes ------------------------------------------------------------------ */

/* e4m3 and e8m0 are F8_E4M3 and F8_E8M0 of the same dims; e2m1 is I8 with the last dim halved
 * (two codes per byte), read back as the e2m1 tensor of the original dims. */
START_TEST(quantized_round_trip) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("q.safetensors");
  const char *names[] = {"w.weight", "w.scale", "e.weight"};
  vnrt_tensor_type types[] = {
      {VNRT_E4M3, 2, {3, 5}}, {VNRT_E8M0, 2, {1, 2}}, {VNRT_E2M1, 2, {2, 6}}};
  uint8_t codes[15], scales[2] = {127, 0}, packed[6];
  for (int i = 0; i < 15; i++) codes[i] = (uint8_t)(i * 17);
  for (int i = 0; i < 6; i++) packed[i] = (uint8_t)(0x10 * i + 15 - i);
  const void *datas[] = {codes, scales, packed};
  TU_OK(ctx, vnrt_safetensors_write(ctx, path, names, types, datas, 3));

  FILE *fp = fopen(path, "rb");
  unsigned char len8[8];
  ck_assert_uint_eq(fread(len8, 1, 8, fp), 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  char header[512] = {0};
  ck_assert_uint_lt(hlen, sizeof header);
  ck_assert_uint_eq(fread(header, 1, hlen, fp), hlen);
  fclose(fp);
  const char *expect =
      "{\"w.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[3,5],\"data_offsets\":[0,15]},"
      "\"w.scale\":{\"dtype\":\"F8_E8M0\",\"shape\":[1,2],\"data_offsets\":[15,17]},"
      "\"e.weight\":{\"dtype\":\"I8\",\"shape\":[2,3],\"data_offsets\":[17,23]}}";
  ck_assert_int_eq(strncmp(header, expect, strlen(expect)), 0);
  for (size_t k = strlen(expect); k < hlen; k++) ck_assert_int_eq(header[k], ' ');

  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  for (int i = 0; i < 3; i++) {
    vnrt_tensor_type got;
    const void *data;
    size_t bytes;
    TU_OK(ctx, vnrt_safetensors_find(f, names[i], &got, &data, &bytes));
    ck_assert_int_eq(got.dtype, types[i].dtype);
    ck_assert_int_eq(got.rank, 2);
    ck_assert_int_eq(got.dims[0], types[i].dims[0]);
    ck_assert_int_eq(got.dims[1], types[i].dims[1]);
    ck_assert_uint_eq(bytes, vnrt_tensor_type_bytes(&types[i]));
    ck_assert_int_eq(memcmp(data, datas[i], bytes), 0);
  }
  ck_assert_uint_eq(vnrt_tensor_type_bytes(&types[2]), 6);
  vnrt_safetensors_close(f);

  /* An e2m1 tensor needs an even last dim (and a dim at all) to be written as bytes. */
  vnrt_tensor_type odd[] = {{VNRT_E2M1, 2, {2, 5}}};
  ck_assert_int_eq(vnrt_safetensors_write(ctx, path, names, odd, datas, 1),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "'w.weight' needs an even last"));
  vnrt_tensor_type scalar[] = {{VNRT_E2M1, 0, {0}}};
  ck_assert_int_eq(vnrt_safetensors_write(ctx, path, names, scalar, datas, 1),
                   VNRT_ERROR_INVALID_ARGUMENT);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* DeepSeek's layout written by hand: I8 [out, in/2] is e2m1 [out, in]; an I8 scalar cannot
 * hold packed codes; F8_E5M2 is still a dtype vnrt does not hold. */
START_TEST(quantized_foreign_headers) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("ds.safetensors");
  write_header(
      path,
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"experts.0.w1.weight\":{\"dtype\":\"I8\",\"shape\":[4,16],\"data_offsets\":[0,64]},"
      "\"experts.0.w1.scale\":{\"dtype\":\"F8_E8M0\",\"shape\":[4,1],"
      "\"data_offsets\":[64,68]},"
      "\"wq.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,3],\"data_offsets\":[68,74]},"
      "\"i8s\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[74,75]},"
      "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[75,76]}}",
      76);
  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  vnrt_tensor_type t;
  size_t bytes;
  TU_OK(ctx, vnrt_safetensors_find(f, "experts.0.w1.weight", &t, NULL, &bytes));
  ck_assert_int_eq(t.dtype, VNRT_E2M1);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_int_eq(t.dims[0], 4);
  ck_assert_int_eq(t.dims[1], 32);
  ck_assert_uint_eq(bytes, 64);
  ck_assert_uint_eq(vnrt_tensor_type_bytes(&t), 64);
  TU_OK(ctx, vnrt_safetensors_find(f, "experts.0.w1.scale", &t, NULL, &bytes));
  ck_assert_int_eq(t.dtype, VNRT_E8M0);
  ck_assert_int_eq(t.dims[1], 1);
  TU_OK(ctx, vnrt_safetensors_find(f, "wq.weight", &t, NULL, &bytes));
  ck_assert_int_eq(t.dtype, VNRT_E4M3);
  ck_assert_uint_eq(bytes, 6);
  ck_assert_int_eq(vnrt_safetensors_find(f, "i8s", &t, NULL, NULL), VNRT_ERROR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "'i8s' (I8) cannot hold packed FP4"));
  ck_assert_int_eq(t.dtype, VNRT_DTYPE_INVALID);
  ck_assert_int_eq(vnrt_safetensors_find(f, "e5", &t, NULL, NULL), VNRT_ERROR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "F8_E5M2"));
  ck_assert_int_eq(vnrt_safetensors_metadata_count(f), 1);
  ck_assert_str_eq(vnrt_safetensors_metadata_key(f, 0), "format");
  ck_assert_ptr_null(vnrt_safetensors_metadata_key(f, 1));
  vnrt_safetensors_close(f);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A quantized tensor whose offsets disagree with its shape, or that runs past the end of a
 * truncated file, is named in the error. */
START_TEST(quantized_mis_sized) {
  static const bad_case cases[] = {
      {"{\"w.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[4,4],\"data_offsets\":[0,15]}}", 15,
       "tensor 'w.weight'", "need 16 bytes"},
      {"{\"w.scale\":{\"dtype\":\"F8_E8M0\",\"shape\":[2],\"data_offsets\":[0,3]}}", 3,
       "tensor 'w.scale'", "need 2 bytes"},
      {"{\"e.weight\":{\"dtype\":\"I8\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12,
       "tensor 'e.weight'", "need 6 bytes"},
      {"{\"e.weight\":{\"dtype\":\"I8\",\"shape\":[2,8],\"data_offsets\":[0,16]}}", 10,
       "tensor 'e.weight'", "beyond the end"},
  };
  run_bad_cases(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* The streaming writer: metadata, puts in order, wrong sizes and early closes. */
START_TEST(streaming_writer) {
  vnrt_context *ctx = tu_context();
  make_dir();
  const char *path = path_in_dir("s.safetensors");
  const char *names[] = {"a", "b"};
  vnrt_tensor_type types[] = {{VNRT_F32, 1, {2}}, {VNRT_E4M3, 1, {3}}};
  const float a[2] = {1.5f, -2.0f};
  const uint8_t b[3] = {1, 2, 3};
  const char *meta[] = {"format", "pt", "quote\"d", "v"};
  vnrt_safetensors_writer *w;
  TU_OK(ctx, vnrt_safetensors_writer_open(ctx, path, names, types, 2, meta, 2, &w));
  TU_OK(ctx, vnrt_safetensors_writer_put(w, a, sizeof a));
  TU_OK(ctx, vnrt_safetensors_writer_put(w, b, sizeof b));
  ck_assert_int_eq(vnrt_safetensors_writer_put(w, b, sizeof b), VNRT_ERROR_INVALID_ARGUMENT);
  TU_OK(ctx, vnrt_safetensors_writer_close(w));
  vnrt_safetensors *f;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path, &f));
  ck_assert_int_eq(vnrt_safetensors_metadata_count(f), 2);
  ck_assert_str_eq(vnrt_safetensors_metadata_key(f, 1), "quote\"d");
  ck_assert_str_eq(vnrt_safetensors_metadata(f, "format"), "pt");
  const void *data;
  vnrt_tensor_type t;
  TU_OK(ctx, vnrt_safetensors_find(f, "b", &t, &data, NULL));
  ck_assert_int_eq(memcmp(data, b, 3), 0);
  vnrt_safetensors_close(f);

  /* A wrong size names the tensor; the file is removed at close. */
  TU_OK(ctx, vnrt_safetensors_writer_open(ctx, path, names, types, 2, NULL, 0, &w));
  ck_assert_int_eq(vnrt_safetensors_writer_put(w, a, 4), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "tensor 'a' is 8 bytes"));
  ck_assert_int_eq(vnrt_safetensors_writer_close(w), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_ne(access(path, F_OK), 0);
  /* Closed early: incomplete, removed. */
  TU_OK(ctx, vnrt_safetensors_writer_open(ctx, path, names, types, 2, NULL, 0, &w));
  TU_OK(ctx, vnrt_safetensors_writer_put(w, a, sizeof a));
  ck_assert_int_eq(vnrt_safetensors_writer_close(w), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "closed after 1 of its 2 tensors"));
  ck_assert_int_ne(access(path, F_OK), 0);
  /* Duplicate metadata keys are rejected before anything is created. */
  const char *dup[] = {"k", "1", "k", "2"};
  ck_assert_int_eq(vnrt_safetensors_writer_open(ctx, path, names, types, 2, dup, 2, &w),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(w);
  ck_assert_int_ne(access(path, F_OK), 0);
  vnrt_safetensors_writer_close(NULL);
  remove_dir(path);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("safetensors");
  tcase_add_test(tc, write_then_read_every_dtype);
  tcase_add_test(tc, names_are_escaped_and_decoded);
  tcase_add_test(tc, reads_foreign_headers_and_metadata);
  tcase_add_test(tc, unsupported_dtype_and_rank_fail_lookup);
  tcase_add_test(tc, error_missing_and_truncated_files);
  tcase_add_test(tc, header_length_bounds);
  tcase_add_test(tc, error_invalid_json);
  tcase_add_test(tc, error_schema);
  tcase_add_test(tc, error_offsets);
  tcase_add_test(tc, every_truncation_is_an_error);
  tcase_add_test(tc, writer_rejects_bad_arguments);
  tcase_add_test(tc, quantized_round_trip);
  tcase_add_test(tc, quantized_foreign_headers);
  tcase_add_test(tc, quantized_mis_sized);
  tcase_add_test(tc, streaming_writer);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
