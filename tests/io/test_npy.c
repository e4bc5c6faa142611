/* Tests of the .npy reader and writer: exact round trips and a clear error for each corruption. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "vnrt/io.h"

/* A .npy image from parts, so a test can break exactly one thing. hlen_override >= 0 replaces
 * the header length field. */
typedef struct image {
  unsigned char bytes[4096];
  size_t size;
} image;

static image make_npy(int major, const char *dict, long hlen_override, const void *data,
                      size_t data_bytes) {
  image im;
  memset(&im, 0, sizeof im);
  size_t prelude = major == 1 ? 10 : 12;
  size_t hlen = strlen(dict);
  memcpy(im.bytes, "\x93NUMPY", 6);
  im.bytes[6] = (unsigned char)major;
  im.bytes[7] = 0;
  unsigned long field = hlen_override >= 0 ? (unsigned long)hlen_override : (unsigned long)hlen;
  for (size_t i = 0; i < prelude - 8; i++) im.bytes[8 + i] = (unsigned char)(field >> (8 * i));
  memcpy(im.bytes + prelude, dict, hlen);
  ck_assert_uint_le(prelude + hlen + data_bytes, sizeof im.bytes);
  if (data_bytes) memcpy(im.bytes + prelude + hlen, data, data_bytes);
  im.size = prelude + hlen + data_bytes;
  return im;
}

/* Reads im expecting failure with status and every word in words (NULL-terminated). */
static void expect_error(const image *im, vnrt_status status, const char *const *words) {
  vnrt_context *ctx = tu_context();
  vnrt_tensor_type type;
  void *data = (void *)1;
  vnrt_status s = vnrt_npy_read_memory(ctx, im->bytes, im->size, "bad.npy", &type, &data);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s == status, "expected %s, got %s: %s", vnrt_status_string(status),
                vnrt_status_string(s), msg);
  ck_assert_ptr_null(data);
  ck_assert_int_eq(type.dtype, VNRT_DTYPE_INVALID);
  ck_assert_msg(strstr(msg, "bad.npy") != NULL, "message lacks the file name: %s", msg);
  for (; *words; words++)
    ck_assert_msg(strstr(msg, *words) != NULL, "message lacks '%s': %s", *words, msg);
  vnrt_context_destroy(ctx);
}

#define EXPECT_ERROR(im, status, ...)                 \
  do {                                                \
    const char *const words_[] = {__VA_ARGS__, NULL}; \
    expect_error(&(im), status, words_);              \
  } while (0)

static const char *kF32x23 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";

/* The writer's header is numpy's own layout, byte for byte (numpy 1.x np.save of a C-order
 * float32 array of shape (2, 3)): the dict repr, space padding to 64 bytes, then '\n'. */
START_TEST(write_matches_numpy_layout) {
  vnrt_context *ctx = tu_context();
  vnrt_tensor_type type = {VNRT_F32, 2, {2, 3}};
  float v[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 65504.0f};
  void *bytes;
  size_t size;
  TU_OK(ctx, vnrt_npy_write_memory(ctx, &type, v, &bytes, &size));
  char expect[128];
  memset(expect, ' ', sizeof expect);
  memcpy(expect, "\x93NUMPY\x01\x00\x76\x00", 10);
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  memcpy(expect + 10, dict, strlen(dict));
  expect[127] = '\n';
  ck_assert_uint_eq(size, 128 + sizeof v);
  ck_assert_int_eq(memcmp(bytes, expect, 128), 0);
  ck_assert_int_eq(memcmp((char *)bytes + 128, v, sizeof v), 0);
  vnrt_free(ctx, bytes);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Every dtype and rank 0..4 survives write + read with the same type and the same bytes. */
START_TEST(round_trip_all_dtypes_and_ranks) {
  vnrt_context *ctx = tu_context();
  const vnrt_dtype dtypes[] = {VNRT_F32, VNRT_F16, VNRT_I32};
  const int64_t dims[VNRT_MAX_DIMS] = {3, 1, 4, 2};
  const char *shapes[] = {"()", "(3,)", "(3, 1)", "(3, 1, 4)", "(3, 1, 4, 2)"};
  const char *descrs[] = {"'<f4'", "'<f2'", "'<i4'"};
  for (int di = 0; di < 3; di++) {
    for (int32_t rank = 0; rank <= VNRT_MAX_DIMS; rank++) {
      tu_tensor t = tu_tensor_new(dtypes[di], rank, dims);
      /* Bytes that are neither all zero nor symmetric, so a swap or offset would show. */
      unsigned char *p = t.data;
      size_t nbytes = vnrt_tensor_type_bytes(&t.type);
      for (size_t i = 0; i < nbytes; i++) p[i] = (unsigned char)(i * 37 + 11 + di);
      void *img;
      size_t size;
      TU_OK(ctx, vnrt_npy_write_memory(ctx, &t.type, t.data, &img, &size));
      ck_assert_uint_eq(size % 64, nbytes % 64); /* the header is padded to 64 bytes */
      ck_assert_ptr_nonnull(strstr((char *)img + 10, shapes[rank]));
      ck_assert_ptr_nonnull(strstr((char *)img + 10, descrs[di]));
      vnrt_tensor_type got;
      void *data;
      TU_OK(ctx, vnrt_npy_read_memory(ctx, img, size, "rt.npy", &got, &data));
      ck_assert_int_eq(got.dtype, dtypes[di]);
      ck_assert_int_eq(got.rank, rank);
      for (int32_t d = 0; d < rank; d++) ck_assert_int_eq(got.dims[d], dims[d]);
      ck_assert_int_eq(memcmp(data, t.data, nbytes), 0);
      vnrt_free(ctx, data);
      vnrt_free(ctx, img);
      tu_tensor_free(&t);
    }
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* The same through real files, including a zero-element tensor. */
START_TEST(round_trip_files) {
  vnrt_context *ctx = tu_context();
  char dir[] = "/tmp/vnrt_npy_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int32_t v[5] = {-7, 0, 1, 2147483647, -2147483647 - 1};
  vnrt_tensor_type type = {VNRT_I32, 1, {5}};
  TU_OK(ctx, vnrt_npy_write(ctx, path, &type, v));
  vnrt_tensor_type got;
  void *data;
  TU_OK(ctx, vnrt_npy_read(ctx, path, &got, &data));
  ck_assert_int_eq(got.dtype, VNRT_I32);
  ck_assert_int_eq(got.rank, 1);
  ck_assert_int_eq(got.dims[0], 5);
  ck_assert_int_eq(memcmp(data, v, sizeof v), 0);
  vnrt_free(ctx, data);

  vnrt_tensor_type empty = {VNRT_F32, 2, {0, 7}};
  TU_OK(ctx, vnrt_npy_write(ctx, path, &empty, NULL));
  TU_OK(ctx, vnrt_npy_read(ctx, path, &got, &data));
  ck_assert_ptr_nonnull(data);
  ck_assert_int_eq(got.rank, 2);
  ck_assert_int_eq(got.dims[0], 0);
  ck_assert_int_eq(got.dims[1], 7);
  vnrt_free(ctx, data);
  unlink(path);
  rmdir(dir);
  vnrt_context_destroy(ctx);
}
END_TEST

/* bf16 has no numpy dtype: it is written as <f4 holding exactly the same values. */
START_TEST(bf16_widens_to_f32) {
  vnrt_context *ctx = tu_context();
  const uint16_t bits[4] = {0x3F80, 0xC049, 0x7F80, 0x0001}; /* 1, -3.140625, inf, denormal */
  const double expect[4] = {1.0, -3.140625, INFINITY, 9.183549615799121e-41};
  vnrt_tensor_type type = {VNRT_BF16, 2, {2, 2}};
  void *img;
  size_t size;
  TU_OK(ctx, vnrt_npy_write_memory(ctx, &type, bits, &img, &size));
  vnrt_tensor_type got;
  void *data;
  TU_OK(ctx, vnrt_npy_read_memory(ctx, img, size, "bf.npy", &got, &data));
  ck_assert_int_eq(got.dtype, VNRT_F32);
  ck_assert_int_eq(got.rank, 2);
  const float *f = data;
  for (int i = 0; i < 4; i++) ck_assert_msg((double)f[i] == expect[i], "[%d] %g", i, f[i]);
  vnrt_free(ctx, data);
  vnrt_free(ctx, img);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Formats 2.0 and 3.0 (4-byte header length), any key order, double quotes, extra padding as
 * newer numpy writes, and Python 2 long suffixes are all read. */
START_TEST(reads_header_variants) {
  vnrt_context *ctx = tu_context();
  const float v[6] = {1, 2, 3, 4, 5, 6};
  struct {
    int major;
    const char *dict;
    int32_t rank;
  } cases[] = {
      {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 2},
      {3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 2},
      {1, "{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<f4\"}   \n", 1},
      {1, "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}", 2},
      {1,
       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 1, 3), }"
       "                     \n",
       4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    image im = make_npy(cases[i].major, cases[i].dict, -1, v, sizeof v);
    vnrt_tensor_type got;
    void *data;
    TU_OK(ctx, vnrt_npy_read_memory(ctx, im.bytes, im.size, "v.npy", &got, &data));
    ck_assert_int_eq(got.dtype, VNRT_F32);
    ck_assert_int_eq(got.rank, cases[i].rank);
    ck_assert_int_eq(vnrt_tensor_type_numel(&got), 6);
    ck_assert_int_eq(memcmp(data, v, sizeof v), 0);
    vnrt_free(ctx, data);
  }
  /* A scalar is shape (). */
  const int32_t one = 42;
  image im = make_npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }\n", -1, &one, 4);
  vnrt_tensor_type got;
  void *data;
  TU_OK(ctx, vnrt_npy_read_memory(ctx, im.bytes, im.size, "s.npy", &got, &data));
  ck_assert_int_eq(got.rank, 0);
  ck_assert_int_eq(*(int32_t *)data, 42);
  vnrt_free(ctx, data);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(error_bad_magic) {
  image im = make_npy(1, kF32x23, -1, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24);
  im.bytes[1] = 'n';
  EXPECT_ERROR(im, VNRT_ERROR_IO, "not a .npy file", "bad magic");
  image text;
  memset(&text, 0, sizeof text);
  memcpy(text.bytes, "hello", 5); /* short and not .npy: still "bad magic", not "truncated" */
  text.size = 5;
  EXPECT_ERROR(text, VNRT_ERROR_IO, "bad magic");
}
END_TEST

START_TEST(error_truncated_header) {
  image im = make_npy(1, kF32x23, -1, NULL, 0);
  im.size = 9; /* magic and version, half the length field */
  EXPECT_ERROR(im, VNRT_ERROR_IO, "truncated", "9 bytes");
  im.size = 0;
  EXPECT_ERROR(im, VNRT_ERROR_IO, "truncated");
  image v2 = make_npy(2, kF32x23, -1, NULL, 0);
  v2.size = 11; /* a 2.0 prelude is 12 bytes */
  EXPECT_ERROR(v2, VNRT_ERROR_IO, "truncated");
}
END_TEST

START_TEST(error_header_length_beyond_file) {
  image im = make_npy(1, kF32x23, 5000, NULL, 0);
  EXPECT_ERROR(im, VNRT_ERROR_IO, "header length 5000", "beyond the end");
  image v2 = make_npy(2, kF32x23, 0x7fffffffL, NULL, 0);
  EXPECT_ERROR(v2, VNRT_ERROR_IO, "header length 2147483647", "beyond the end");
}
END_TEST

START_TEST(error_unsupported_version) {
  image im = make_npy(1, kF32x23, -1, NULL, 0);
  im.bytes[6] = 4;
  EXPECT_ERROR(im, VNRT_ERROR_IO, "version 4.0");
}
END_TEST

START_TEST(error_malformed_dict) {
  struct {
    const char *dict;
    const char *word;
  } cases[] = {
      {"['descr', '<f4']\n", "expected '{'"},
      {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", "expected ':'"},
      {"{'descr': '<f4', 'fortran_order': False}\n", "missing key 'shape'"},
      {"{'descr': '<f4', 'shape': (2, 3)}\n", "missing key 'fortran_order'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}\n", "unexpected key 'x'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}\n",
       "duplicate key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } junk\n", "after the closing"},
      {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }\n", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }\n", "shape tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }\n", "in the shape tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), \n", "malformed"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3), }\n", "malformed"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3.5), }\n", "malformed"},
  };
  const float v[6] = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    image im = make_npy(1, cases[i].dict, -1, v, sizeof v);
    EXPECT_ERROR(im, VNRT_ERROR_IO, "malformed", cases[i].word);
  }
}
END_TEST

START_TEST(error_fortran_order) {
  const float v[6] = {0};
  image im =
      make_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", -1, v, sizeof v);
  EXPECT_ERROR(im, VNRT_ERROR_IO, "fortran_order", "C-order");
}
END_TEST

START_TEST(error_unsupported_dtypes) {
  const char v[48] = {0};
  struct {
    const char *dict;
    const char *word;
  } cases[] = {
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }\n", "unsupported dtype '<f8'"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (6,), }\n", "unsupported dtype '|u1'"},
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }\n", "unsupported dtype '<i8'"},
      {"{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }\n", "big-endian dtype '>f4'"},
      {"{'descr': '>i4', 'fortran_order': False, 'shape': (6,), }\n", "big-endian dtype '>i4'"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }\n", "structured"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    image im = make_npy(1, cases[i].dict, -1, v, 24);
    EXPECT_ERROR(im, VNRT_ERROR_IO, cases[i].word);
  }
}
END_TEST

START_TEST(error_bad_shapes) {
  const float v[6] = {0};
  image five = make_npy(1,
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2, 1, 3), }"
                        "\n",
                        -1, v, sizeof v);
  EXPECT_ERROR(five, VNRT_ERROR_IO, "more than 4 dimensions");
  image neg = make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }\n", -1, v,
                       sizeof v);
  EXPECT_ERROR(neg, VNRT_ERROR_IO, "negative dimension");
  image big = make_npy(1,
                       "{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (99999999999999999999, 1), }\n",
                       -1, v, sizeof v);
  EXPECT_ERROR(big, VNRT_ERROR_IO, "overflows");
  /* Each dim fits, the product of dims and element size does not. */
  image prod = make_npy(1,
                        "{'descr': '<f4', 'fortran_order': False, "
                        "'shape': (4294967296, 4294967296), }\n",
                        -1, v, sizeof v);
  EXPECT_ERROR(prod, VNRT_ERROR_IO, "too large");
}
END_TEST

START_TEST(error_data_size) {
  const float v[7] = {0};
  image shorter = make_npy(1, kF32x23, -1, v, 20);
  EXPECT_ERROR(shorter, VNRT_ERROR_IO, "20 bytes", "needs 24 bytes", "truncated", "(2, 3)");
  image longer = make_npy(1, kF32x23, -1, v, 28);
  EXPECT_ERROR(longer, VNRT_ERROR_IO, "28 bytes", "needs 24 bytes", "trailing");
  image none = make_npy(1, kF32x23, -1, NULL, 0);
  EXPECT_ERROR(none, VNRT_ERROR_IO, "0 bytes", "needs 24");
}
END_TEST

/* Every prefix of a valid image is rejected cleanly (run under valgrind/ASan, this also proves
 * that no prefix makes the reader look past the end). */
START_TEST(every_truncation_is_an_error) {
  vnrt_context *ctx = tu_context();
  const float v[6] = {1, 2, 3, 4, 5, 6};
  image im = make_npy(1, kF32x23, -1, v, sizeof v);
  for (size_t n = 0; n < im.size; n++) {
    unsigned char *copy = malloc(n ? n : 1); /* exact size, so an overread is detectable */
    memcpy(copy, im.bytes, n);
    vnrt_tensor_type got;
    void *data;
    vnrt_status s = vnrt_npy_read_memory(ctx, copy, n, "cut.npy", &got, &data);
    ck_assert_msg(s == VNRT_ERROR_IO, "prefix %zu: %s", n, vnrt_status_string(s));
    ck_assert_ptr_null(data);
    free(copy);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(error_files) {
  vnrt_context *ctx = tu_context();
  vnrt_tensor_type got;
  void *data;
  vnrt_status s = vnrt_npy_read(ctx, "/nonexistent/dir/x.npy", &got, &data);
  ck_assert_int_eq(s, VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "/nonexistent/dir/x.npy"));
  s = vnrt_npy_read(ctx, "/tmp", &got, &data);
  ck_assert_int_eq(s, VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "not a regular file"));
  /* A corrupt file on disk names its path. */
  char dir[] = "/tmp/vnrt_npy_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/short.npy", dir);
  const float v[6] = {0};
  image im = make_npy(1, kF32x23, -1, v, 12);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fwrite(im.bytes, 1, im.size, f);
  fclose(f);
  s = vnrt_npy_read(ctx, path, &got, &data);
  ck_assert_int_eq(s, VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), path));
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "needs 24 bytes"));
  vnrt_tensor_type type = {VNRT_F32, 1, {1}};
  s = vnrt_npy_write(ctx, "/nonexistent/dir/y.npy", &type, v);
  ck_assert_int_eq(s, VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "cannot create"));
  unlink(path);
  rmdir(dir);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(write_rejects_bad_arguments) {
  vnrt_context *ctx = tu_context();
  void *img;
  size_t size;
  vnrt_tensor_type bad_dtype = {VNRT_DTYPE_INVALID, 1, {2}};
  const float v[2] = {0};
  ck_assert_int_eq(vnrt_npy_write_memory(ctx, &bad_dtype, v, &img, &size),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(img);
  vnrt_tensor_type neg = {VNRT_F32, 1, {-2}};
  ck_assert_int_eq(vnrt_npy_write_memory(ctx, &neg, v, &img, &size), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_tensor_type ok = {VNRT_F32, 1, {2}};
  ck_assert_int_eq(vnrt_npy_write_memory(ctx, &ok, NULL, &img, &size), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- quantized codes ------------------------------------------------------------------- */

/* e4m3 and e8m0 codes are |u1 arrays of the same dims, e2m1 a |u1 array of its bytes (last dim
 * halved); vnrt_npy_read_as reads them back as the dtype asked for, never widened. */
START_TEST(quantized_codes_round_trip) {
  vnrt_context *ctx = tu_context();
  const vnrt_dtype dtypes[] = {VNRT_E4M3, VNRT_E8M0, VNRT_E2M1};
  const char *shapes[] = {"'shape': (2, 6), ", "'shape': (2, 6), ", "'shape': (2, 3), "};
  const size_t sizes[] = {12, 12, 6};
  unsigned char codes[12];
  for (int i = 0; i < 12; i++) codes[i] = (unsigned char)(i * 21 + 5);
  for (int di = 0; di < 3; di++) {
    vnrt_tensor_type type = {dtypes[di], 2, {2, 6}};
    ck_assert_uint_eq(vnrt_tensor_type_bytes(&type), sizes[di]);
    void *img;
    size_t size;
    TU_OK(ctx, vnrt_npy_write_memory(ctx, &type, codes, &img, &size));
    ck_assert_uint_eq(size, 128 + sizes[di]);
    ck_assert_ptr_nonnull(strstr((char *)img + 10, "'descr': '|u1'"));
    ck_assert_ptr_nonnull(strstr((char *)img + 10, shapes[di]));
    ck_assert_int_eq(memcmp((char *)img + 128, codes, sizes[di]), 0);
    vnrt_tensor_type got;
    void *data;
    TU_OK(ctx, vnrt_npy_read_memory_as(ctx, img, size, "q.npy", dtypes[di], &got, &data));
    ck_assert_int_eq(got.dtype, dtypes[di]);
    ck_assert_int_eq(got.rank, 2);
    ck_assert_int_eq(got.dims[0], 2);
    ck_assert_int_eq(got.dims[1], 6);
    ck_assert_int_eq(memcmp(data, codes, sizes[di]), 0);
    vnrt_free(ctx, data);
    /* Without a dtype, or as a dtype that is not codes, a byte array is an error. */
    ck_assert_int_eq(vnrt_npy_read_memory(ctx, img, size, "q.npy", &got, &data), VNRT_ERROR_IO);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "vnrt_npy_read_as"));
    ck_assert_ptr_null(data);
    ck_assert_int_eq(vnrt_npy_read_memory_as(ctx, img, size, "q.npy", VNRT_F32, &got, &data),
                     VNRT_ERROR_IO);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "not as f32"));
    vnrt_free(ctx, img);
  }
  /* Any other descr reads as vnrt_npy_read does, whatever dtype is asked: the caller compares. */
  float v[6] = {1, 2, 3, 4, 5, 6};
  image im = make_npy(1, kF32x23, -1, v, sizeof v);
  vnrt_tensor_type got;
  void *data;
  TU_OK(ctx, vnrt_npy_read_memory_as(ctx, im.bytes, im.size, "f.npy", VNRT_E4M3, &got, &data));
  ck_assert_int_eq(got.dtype, VNRT_F32);
  vnrt_free(ctx, data);
  /* An odd e2m1 last dim cannot be written as bytes. */
  vnrt_tensor_type odd = {VNRT_E2M1, 1, {5}};
  void *img;
  size_t size;
  ck_assert_int_eq(vnrt_npy_write_memory(ctx, &odd, codes, &img, &size),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "even last dimension"));
  vnrt_context_destroy(ctx);
}
END_TEST

/* The same through a file, and the errors a byte array of codes can have. */
START_TEST(quantized_codes_files_and_errors) {
  vnrt_context *ctx = tu_context();
  char dir[] = "/tmp/vnrt_npy_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char path[64];
  snprintf(path, sizeof path, "%s/e2m1.npy", dir);
  vnrt_tensor_type type = {VNRT_E2M1, 3, {2, 1, 4}};
  unsigned char codes[4] = {0x21, 0x43, 0x65, 0x87};
  TU_OK(ctx, vnrt_npy_write(ctx, path, &type, codes));
  vnrt_tensor_type got;
  void *data;
  TU_OK(ctx, vnrt_npy_read_as(ctx, path, VNRT_E2M1, &got, &data));
  ck_assert_int_eq(got.dtype, VNRT_E2M1);
  ck_assert_int_eq(got.rank, 3);
  ck_assert_int_eq(got.dims[2], 4);
  ck_assert_int_eq(memcmp(data, codes, 4), 0);
  vnrt_free(ctx, data);
  /* Read as e4m3 instead, the same bytes are [2, 1, 2] codes: the caller's dtype decides. */
  TU_OK(ctx, vnrt_npy_read_as(ctx, path, VNRT_E4M3, &got, &data));
  ck_assert_int_eq(got.dims[2], 2);
  vnrt_free(ctx, data);
  ck_assert_int_eq(vnrt_npy_read(ctx, path, &got, &data), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), path));
  unlink(path);
  rmdir(dir);

  const unsigned char bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  image scalar =
      make_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }\n", -1, bytes, 1);
  ck_assert_int_eq(
      vnrt_npy_read_memory_as(ctx, scalar.bytes, scalar.size, "s.npy", VNRT_E2M1, &got, &data),
      VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "cannot hold packed e2m1 codes"));
  TU_OK(ctx,
        vnrt_npy_read_memory_as(ctx, scalar.bytes, scalar.size, "s.npy", VNRT_E8M0, &got, &data));
  ck_assert_int_eq(got.rank, 0);
  vnrt_free(ctx, data);
  image trunc =
      make_npy(1, "{'descr': '|i1', 'fortran_order': False, 'shape': (3, 3), }\n", -1, bytes, 8);
  ck_assert_int_eq(
      vnrt_npy_read_memory_as(ctx, trunc.bytes, trunc.size, "t.npy", VNRT_E4M3, &got, &data),
      VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "needs 9 bytes (truncated)"));
  ck_assert_ptr_null(data);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("npy");
  TCase *tc = tcase_create("npy");
  tcase_add_test(tc, write_matches_numpy_layout);
  tcase_add_test(tc, round_trip_all_dtypes_and_ranks);
  tcase_add_test(tc, round_trip_files);
  tcase_add_test(tc, bf16_widens_to_f32);
  tcase_add_test(tc, reads_header_variants);
  tcase_add_test(tc, error_bad_magic);
  tcase_add_test(tc, error_truncated_header);
  tcase_add_test(tc, error_header_length_beyond_file);
  tcase_add_test(tc, error_unsupported_version);
  tcase_add_test(tc, error_malformed_dict);
  tcase_add_test(tc, error_fortran_order);
  tcase_add_test(tc, error_unsupported_dtypes);
  tcase_add_test(tc, error_bad_shapes);
  tcase_add_test(tc, error_data_size);
  tcase_add_test(tc, every_truncation_is_an_error);
  tcase_add_test(tc, error_files);
  tcase_add_test(tc, write_rejects_bad_arguments);
  tcase_add_test(tc, quantized_codes_round_trip);
  tcase_add_test(tc, quantized_codes_files_and_errors);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
