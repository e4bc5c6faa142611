/* The tokenizer API (include/vnrt/tokenizer.h): exact ids on a small synthetic tokenizer.json,
 * every load error named, buffers that are too small, out-of-range ids, invalid UTF-8, long
 * runs, the chat format's plain-text contents, and lookups on the real DeepSeek tokenizer
 * (argv[1]: the folder third_party/install-deps.sh installs). */
#include <check.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vnrt/tokenizer.h"

static const char *g_real_dir;
static vnrt_tokenizer *g_real; /* opened once in main; forked tests inherit it */

/* ---- a synthetic byte-level tokenizer ------------------------------------------------------ */

/* GPT-2's byte alphabet, restated: printable Latin-1 bytes are themselves, the rest 256+. */
static void byte_piece(int b, char *out) {
  int n = 0, cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
    for (int c = 0; c < b; c++) {
      n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174);
    }
    cp = 256 + n;
  }
  if (cp < 0x80) {
    out[0] = (char)cp, out[1] = 0;
  } else {
    out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
  }
}

enum { ID_HE = 256, ID_LL, ID_HELL, ID_GW, ID_BOS, ID_EOS, ID_USER, ID_ASSISTANT, ID_COUNT };
#define USER_TOKEN "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"

/* The tokenizer.json: vocab ids 0..255 are the bytes, then the merges' results. */
static json_object *synthetic(int merges_as_arrays) {
  json_object *root = json_object_new_object(), *model = json_object_new_object();
  json_object *vocab = json_object_new_object(), *merges = json_object_new_array();
  for (int b = 0; b < 256; b++) {
    char p[4];
    byte_piece(b, p);
    json_object_object_add(vocab, p, json_object_new_int(b));
  }
  const char *pairs[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"\xC4\xA0", "w"}};
  for (int i = 0; i < 4; i++) {
    char joined[16], line[16];
    snprintf(joined, sizeof joined, "%s%s", pairs[i][0], pairs[i][1]);
    json_object_object_add(vocab, joined, json_object_new_int(256 + i));
    if (merges_as_arrays) {
      json_object *a = json_object_new_array();
      json_object_array_add(a, json_object_new_string(pairs[i][0]));
      json_object_array_add(a, json_object_new_string(pairs[i][1]));
      json_object_array_add(merges, a);
    } else {
      snprintf(line, sizeof line, "%s %s", pairs[i][0], pairs[i][1]);
      json_object_array_add(merges, json_object_new_string(line));
    }
  }
  json_object_object_add(model, "type", json_object_new_string("BPE"));
  json_object_object_add(model, "vocab", vocab);
  json_object_object_add(model, "merges", merges);
  json_object_object_add(root, "model", model);
  json_object *added = json_object_new_array();
  const char *names[] = {"<s>", "</s>", USER_TOKEN,
                         "<\xEF\xBD\x9C"
                         "Assistant\xEF\xBD\x9C>"};
  for (int i = 0; i < 4; i++) {
    json_object *t = json_object_new_object();
    json_object_object_add(t, "id", json_object_new_int(ID_BOS + i));
    json_object_object_add(t, "content", json_object_new_string(names[i]));
    json_object_object_add(t, "special", json_object_new_boolean(i < 2));
    json_object_array_add(added, t);
  }
  json_object_object_add(root, "added_tokens", added);
  json_object *pt = json_object_new_object(), *list = json_object_new_array();
  json_object *split = json_object_new_object(), *pat = json_object_new_object();
  json_object_object_add(pat, "Regex", json_object_new_string("\\p{N}{1,3}"));
  json_object_object_add(split, "type", json_object_new_string("Split"));
  json_object_object_add(split, "pattern", pat);
  json_object_object_add(split, "behavior", json_object_new_string("Isolated"));
  json_object_object_add(split, "invert", json_object_new_boolean(0));
  json_object_array_add(list, split);
  json_object *bl = json_object_new_object();
  json_object_object_add(bl, "type", json_object_new_string("ByteLevel"));
  json_object_object_add(bl, "add_prefix_space", json_object_new_boolean(0));
  json_object_object_add(bl, "use_regex", json_object_new_boolean(1));
  json_object_array_add(list, bl);
  json_object_object_add(pt, "type", json_object_new_string("Sequence"));
  json_object_object_add(pt, "pretokenizers", list);
  json_object_object_add(root, "pre_tokenizer", pt);
  json_object *dec = json_object_new_object();
  json_object_object_add(dec, "type", json_object_new_string("ByteLevel"));
  json_object_object_add(root, "decoder", dec);
  return root;
}

static char g_dir[64];

static void make_dir(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/vnrt_tok_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_dir(void) {
  char p[128];
  snprintf(p, sizeof p, "%s/tokenizer.json", g_dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/tokenizer_config.json", g_dir);
  unlink(p);
  rmdir(g_dir);
}

/* Writes root (taken) as g_dir/tokenizer.json. */
static void write_json(json_object *root) {
  char p[128];
  snprintf(p, sizeof p, "%s/tokenizer.json", g_dir);
  ck_assert_int_eq(json_object_to_file_ext(p, root, JSON_C_TO_STRING_PLAIN), 0);
  json_object_put(root);
}

static void write_text(const char *name, const char *text) {
  char p[128];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static vnrt_tokenizer *open_dir(void) {
  char err[512];
  vnrt_tokenizer *tok = NULL;
  vnrt_status st = vnrt_tokenizer_open(NULL, g_dir, &tok, err, sizeof err);
  ck_assert_msg(st == VNRT_OK, "open: %s", err);
  return tok;
}

/* Opening root must fail with status and a message containing each of words. */
static void expect_open_error(json_object *root, vnrt_status status, const char *w1,
                              const char *w2) {
  make_dir();
  write_json(root);
  char err[512] = "";
  vnrt_tokenizer *tok = (vnrt_tokenizer *)1;
  vnrt_status st = vnrt_tokenizer_open(NULL, g_dir, &tok, err, sizeof err);
  remove_dir();
  ck_assert_msg(st == status, "status %s, want %s (%s)", vnrt_status_string(st),
                vnrt_status_string(status), err);
  ck_assert_ptr_null(tok);
  ck_assert_msg(strstr(err, w1) != NULL, "'%s' does not name '%s'", err, w1);
  ck_assert_msg(w2 == NULL || strstr(err, w2) != NULL, "'%s' does not name '%s'", err, w2);
}

static size_t encode(vnrt_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                     int32_t *ids, size_t cap) {
  size_t n = 0;
  vnrt_status st = vnrt_tokenizer_encode(tok, text, len, flags, ids, cap, &n);
  ck_assert_msg(st == VNRT_OK, "encode: %s", vnrt_tokenizer_last_error(tok));
  return n;
}

/* decode(ids) must be exactly text[len] */
static void expect_decode(vnrt_tokenizer *tok, const int32_t *ids, size_t n, const char *text,
                          size_t len) {
  char *buf = malloc(len + 1);
  size_t got = 0;
  vnrt_status st = vnrt_tokenizer_decode(tok, ids, n, 0, buf, len + 1, &got);
  ck_assert_msg(st == VNRT_OK, "decode: %s", vnrt_tokenizer_last_error(tok));
  if (got != len || memcmp(buf, text, len) != 0) {
    ck_abort_msg("decode gave %zu bytes, want %zu", got, len);
  }
  ck_assert_int_eq(buf[len], 0);
  free(buf);
}

START_TEST(synthetic_merges_by_rank) {
  for (int arrays = 0; arrays < 2; arrays++) {
    make_dir();
    write_json(synthetic(arrays));
    vnrt_tokenizer *tok = open_dir();
    remove_dir();
    ck_assert_uint_eq(vnrt_tokenizer_vocab_size(tok), ID_COUNT);
    /* "hello" -> he, ll -> hell + o; " world" -> Ġw + o r l d (GPT-2's split keeps the space);
     * "12345" -> 123 | 45 by the digit split, bytes each */
    const char *text = "hello world12345";
    int32_t ids[32];
    size_t n = encode(tok, text, strlen(text), 0, ids, 32);
    const int32_t want[] = {ID_HELL, 'o', ID_GW, 'o', 'r', 'l', 'd', '1', '2', '3', '4', '5'};
    ck_assert_uint_eq(n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n; i++) {
      ck_assert_int_eq(ids[i], want[i]);
    }
    expect_decode(tok, ids, n, text, strlen(text));
    /* "llhe": ll has rank 1, he rank 0; both merge, hell cannot (order ll, he) */
    n = encode(tok, "llhe", 4, 0, ids, 32);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], ID_LL);
    ck_assert_int_eq(ids[1], ID_HE);
    ck_assert_str_eq(vnrt_tokenizer_id_to_piece(tok, ID_GW), "\xC4\xA0w");
    ck_assert_int_eq(vnrt_tokenizer_piece_to_id(tok, "hell"), ID_HELL);
    ck_assert_int_eq(vnrt_tokenizer_piece_to_id(tok, "nothing"), -1);
    vnrt_tokenizer_destroy(tok);
  }
}
END_TEST

START_TEST(special_tokens_only_with_the_flag) {
  make_dir();
  write_json(synthetic(0));
  write_text("tokenizer_config.json",
             "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}");
  vnrt_tokenizer *tok = open_dir();
  remove_dir();
  ck_assert_int_eq(vnrt_tokenizer_bos_id(tok), ID_BOS);
  ck_assert_int_eq(vnrt_tokenizer_eos_id(tok), ID_EOS);
  ck_assert(vnrt_tokenizer_is_special(tok, ID_BOS));
  ck_assert(!vnrt_tokenizer_is_special(tok, ID_USER));
  const char *text = "<s>he" USER_TOKEN "</s>";
  int32_t ids[64];
  size_t n =
      encode(tok, text, strlen(text), VNRT_TOKENIZE_SPECIAL | VNRT_TOKENIZE_ADD_BOS, ids, 64);
  const int32_t want[] = {ID_BOS, ID_BOS, ID_HE, ID_USER, ID_EOS};
  ck_assert_uint_eq(n, 5);
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_eq(ids[i], want[i]);
  }
  expect_decode(tok, ids + 1, n - 1, text, strlen(text));
  char buf[64];
  size_t len = 0;
  ck_assert_int_eq(
      vnrt_tokenizer_decode(tok, ids, n, VNRT_DETOKENIZE_SKIP_SPECIAL, buf, sizeof buf, &len),
      VNRT_OK);
  ck_assert_str_eq(buf, "he" USER_TOKEN); /* User is an added token, not a special one */
  /* without the flag the same text is plain bytes: no added token among the ids */
  n = encode(tok, text, strlen(text), 0, ids, 64);
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_lt(ids[i], ID_BOS);
  }
  expect_decode(tok, ids, n, text, strlen(text));
  vnrt_tokenizer_destroy(tok);
}
END_TEST

START_TEST(load_errors_are_named) {
  char err[512] = "";
  vnrt_tokenizer *tok = (vnrt_tokenizer *)1;
  ck_assert_int_eq(vnrt_tokenizer_open(NULL, "/nonexistent/tok.json", &tok, err, sizeof err),
                   VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(tok);
  ck_assert_ptr_nonnull(strstr(err, "/nonexistent/tok.json"));
  ck_assert_int_eq(vnrt_tokenizer_open(NULL, NULL, &tok, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  /* a folder without tokenizer.json */
  make_dir();
  ck_assert_int_eq(vnrt_tokenizer_open(NULL, g_dir, &tok, err, sizeof err), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(err, "tokenizer.json"));
  /* malformed JSON */
  write_text("tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 0,");
  ck_assert_int_eq(vnrt_tokenizer_open(NULL, g_dir, &tok, err, sizeof err), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(err, "not valid JSON"));
  /* a malformed tokenizer_config.json beside a good tokenizer.json */
  write_json(synthetic(0));
  write_text("tokenizer_config.json", "{bos");
  ck_assert_int_eq(vnrt_tokenizer_open(NULL, g_dir, &tok, err, sizeof err), VNRT_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(err, "tokenizer_config.json"));
  remove_dir();

  json_object *root = synthetic(0);
  json_object_object_del(root, "model");
  expect_open_error(root, VNRT_ERROR_IO, "'model' missing", NULL);
  json_object *model;
  root = synthetic(0);
  json_object_object_get_ex(root, "model", &model);
  json_object_object_del(model, "vocab");
  expect_open_error(root, VNRT_ERROR_IO, "model.vocab", NULL);
  root = synthetic(0);
  json_object_object_get_ex(root, "model", &model);
  json_object_object_del(model, "merges");
  expect_open_error(root, VNRT_ERROR_IO, "model.merges", NULL);
  root = synthetic(0);
  json_object_object_get_ex(root, "model", &model);
  json_object_object_add(model, "type", json_object_new_string("WordPiece"));
  expect_open_error(root, VNRT_ERROR_UNSUPPORTED, "WordPiece", NULL);
  /* a merge whose result is not in the vocabulary */
  root = synthetic(0);
  json_object *merges;
  json_object_object_get_ex(root, "model", &model);
  json_object_object_get_ex(model, "merges", &merges);
  json_object_array_add(merges, json_object_new_string("x y"));
  expect_open_error(root, VNRT_ERROR_IO, "model.merges[4]", "'xy'");
  root = synthetic(0);
  json_object_object_get_ex(root, "model", &model);
  json_object_object_get_ex(model, "merges", &merges);
  json_object_array_add(merges, json_object_new_string("abc"));
  expect_open_error(root, VNRT_ERROR_IO, "model.merges[4]", "not two pieces");
  /* the vocabulary lacks byte 0x41's piece "A" */
  root = synthetic(0);
  json_object *vocab;
  json_object_object_get_ex(root, "model", &model);
  json_object_object_get_ex(model, "vocab", &vocab);
  json_object_object_del(vocab, "A");
  expect_open_error(root, VNRT_ERROR_IO, "0x41", NULL);
  /* an unknown pre-tokenizer type, named with its JSON path */
  root = synthetic(0);
  json_object *pt, *list, *step;
  json_object_object_get_ex(root, "pre_tokenizer", &pt);
  json_object_object_get_ex(pt, "pretokenizers", &list);
  step = json_object_new_object();
  json_object_object_add(step, "type", json_object_new_string("Metaspace"));
  json_object_array_add(list, step);
  expect_open_error(root, VNRT_ERROR_UNSUPPORTED, "pre_tokenizer.pretokenizers[2].type",
                    "Metaspace");
  /* a pattern PCRE2 rejects */
  root = synthetic(0);
  json_object_object_get_ex(root, "pre_tokenizer", &pt);
  json_object_object_get_ex(pt, "pretokenizers", &list);
  step = json_object_array_get_idx(list, 0);
  json_object *pat = json_object_new_object();
  json_object_object_add(pat, "Regex", json_object_new_string("(unclosed"));
  json_object_object_add(step, "pattern", pat);
  expect_open_error(root, VNRT_ERROR_UNSUPPORTED, "pre_tokenizer.pretokenizers[0].pattern",
                    "does not compile");
  /* a split behaviour and a normalizer that are not supported */
  root = synthetic(0);
  json_object_object_get_ex(root, "pre_tokenizer", &pt);
  json_object_object_get_ex(pt, "pretokenizers", &list);
  json_object_object_add(json_object_array_get_idx(list, 0), "behavior",
                         json_object_new_string("Contiguous"));
  expect_open_error(root, VNRT_ERROR_UNSUPPORTED, "Contiguous", NULL);
  root = synthetic(0);
  json_object *norm = json_object_new_object();
  json_object_object_add(norm, "type", json_object_new_string("NFKC"));
  json_object_object_add(root, "normalizer", norm);
  expect_open_error(root, VNRT_ERROR_UNSUPPORTED, "normalizer", "NFKC");
  /* an added token that contradicts the vocabulary */
  root = synthetic(0);
  json_object *added, *t = json_object_new_object();
  json_object_object_get_ex(root, "added_tokens", &added);
  json_object_object_add(t, "id", json_object_new_int(65));
  json_object_object_add(t, "content", json_object_new_string("<B>"));
  json_object_array_add(added, t);
  expect_open_error(root, VNRT_ERROR_IO, "added_tokens[4]", "id 65");
  /* an id far beyond the others */
  root = synthetic(0);
  json_object_object_get_ex(root, "model", &model);
  json_object_object_get_ex(model, "vocab", &vocab);
  json_object_object_add(vocab, "huge", json_object_new_int(2000000000));
  expect_open_error(root, VNRT_ERROR_IO, "id 2000000000", NULL);
}
END_TEST

START_TEST(small_buffers_report_the_size_needed) {
  make_dir();
  write_json(synthetic(0));
  write_text("tokenizer_config.json", "{\"bos_token\": null, \"eos_token\": \"</s>\"}");
  vnrt_tokenizer *tok = open_dir();
  remove_dir();
  const char *text = "hello world";
  size_t n = 99;
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, text, strlen(text), 0, NULL, 0, &n),
                   VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_uint_eq(n, 7);
  ck_assert_ptr_nonnull(strstr(vnrt_tokenizer_last_error(tok), "capacity of 0"));
  int32_t ids[7] = {-7, -7, -7, -7, -7, -7, -7};
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, text, strlen(text), 0, ids, 6, &n),
                   VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_uint_eq(n, 7);
  ck_assert_int_eq(ids[0], -7); /* nothing written */
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, text, strlen(text), 0, ids, 7, &n), VNRT_OK);
  ck_assert_str_eq(vnrt_tokenizer_last_error(tok), "");
  char buf[12];
  size_t len = 0;
  ck_assert_int_eq(vnrt_tokenizer_decode(tok, ids, 7, 0, buf, 11, &len), VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_uint_eq(len, 11);
  ck_assert_int_eq(vnrt_tokenizer_decode(tok, ids, 7, 0, buf, 12, &len), VNRT_OK);
  ck_assert_str_eq(buf, text);
  vnrt_chat_message msg = {"user", "hi"};
  ck_assert_int_eq(vnrt_tokenizer_chat_prompt(tok, &msg, 1, 0, buf, 4, &len),
                   VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_uint_gt(len, 3);
  ck_assert_int_eq(vnrt_tokenizer_chat_encode(tok, &msg, 1, 0, NULL, 0, &n),
                   VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_uint_gt(n, 0);
  /* bad arguments */
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, NULL, 3, 0, ids, 7, &n), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, text, 3, 0x100, ids, 7, &n),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_tokenizer_last_error(tok), "0x100"));
  ck_assert_int_eq(vnrt_tokenizer_encode(NULL, text, 3, 0, ids, 7, &n),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_tokenizer_decode(tok, ids, 7, 0, buf, 12, NULL),
                   VNRT_ERROR_INVALID_ARGUMENT);
  /* the empty text: no ids, and a bos alone */
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, "", 0, 0, NULL, 0, &n), VNRT_OK);
  ck_assert_uint_eq(n, 0);
  ck_assert_int_eq(vnrt_tokenizer_encode(tok, "", 0, VNRT_TOKENIZE_ADD_BOS, ids, 7, &n),
                   VNRT_ERROR_NOT_FOUND); /* bos_token null */
  ck_assert_ptr_nonnull(strstr(vnrt_tokenizer_last_error(tok), "bos"));
  vnrt_tokenizer_destroy(tok);
}
END_TEST

START_TEST(decode_rejects_ids_out_of_range) {
  make_dir();
  write_json(synthetic(0));
  vnrt_tokenizer *tok = open_dir();
  remove_dir();
  char buf[64], want[64];
  size_t len;
  const int32_t bad[][3] = {{104, ID_COUNT, 105}, {104, -5, 105}, {104, 105, 1 << 30}};
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(vnrt_tokenizer_decode(tok, bad[i], 3, 0, buf, sizeof buf, &len),
                     VNRT_ERROR_OUT_OF_RANGE);
    int at = bad[i][1] == 105 ? 2 : 1;
    snprintf(want, sizeof want, "ids[%d] = %d", at, bad[i][at]);
    ck_assert_msg(strstr(vnrt_tokenizer_last_error(tok), want) != NULL, "'%s' lacks '%s'",
                  vnrt_tokenizer_last_error(tok), want);
    snprintf(want, sizeof want, "vocab size %d", ID_COUNT);
    ck_assert_ptr_nonnull(strstr(vnrt_tokenizer_last_error(tok), want));
  }
  ck_assert_ptr_null(vnrt_tokenizer_id_to_piece(tok, ID_COUNT));
  ck_assert_ptr_null(vnrt_tokenizer_id_to_piece(tok, -1));
  vnrt_tokenizer_destroy(tok);
}
END_TEST

/* Every invalid byte is its own token (its byte-level piece); the valid text around it is
 * encoded as usual, and decode gives the bytes back. */
START_TEST(invalid_utf8_round_trips) {
  make_dir();
  write_json(synthetic(0));
  vnrt_tokenizer *tok = open_dir();
  remove_dir();
  int32_t ids[256];
  const char *text = "he\xFFll\xC0\x80o";
  size_t n = encode(tok, text, strlen(text), 0, ids, 256);
  const int32_t want[] = {ID_HE, 0xFF, ID_LL, 0xC0, 0x80, 'o'};
  ck_assert_uint_eq(n, 6);
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_eq(ids[i], want[i]);
  }
  const char *cases[] = {"\xE4\xBD",
                         "\xED\xA0\x80 surrogate",
                         "\xF4\x90\x80\x80 too big",
                         "\xF0\x9F\x98",
                         "tail \xC3",
                         "\x80\x80\x80",
                         "a\0b"};
  const size_t lens[] = {2, 13, 12, 3, 6, 3, 3};
  for (int i = 0; i < 7; i++) {
    n = encode(tok, cases[i], lens[i], VNRT_TOKENIZE_SPECIAL, ids, 256);
    expect_decode(tok, ids, n, cases[i], lens[i]);
  }
  /* random bytes, mostly from UTF-8's lead and continuation ranges */
  uint64_t state = 0x9E3779B97F4A7C15ull;
  char buf[200];
  for (int iter = 0; iter < 3000; iter++) {
    size_t len = (size_t)(iter % 64);
    for (size_t i = 0; i < len; i++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      uint32_t r = (uint32_t)(state >> 33);
      buf[i] = (char)((r & 3) == 0   ? 0x80 + (r >> 8) % 64
                      : (r & 3) == 1 ? 0xC0 + (r >> 8) % 64
                                     : (r >> 8) % 256);
    }
    n = encode(tok, buf, len, VNRT_TOKENIZE_SPECIAL, ids, 256);
    expect_decode(tok, ids, n, buf, len);
  }
  vnrt_tokenizer_destroy(tok);
}
END_TEST

START_TEST(real_lookups) {
  ck_assert_uint_eq(vnrt_tokenizer_vocab_size(g_real), 128815);
  ck_assert_int_eq(vnrt_tokenizer_bos_id(g_real), 0);
  ck_assert_int_eq(vnrt_tokenizer_eos_id(g_real), 1);
  ck_assert_int_eq(vnrt_tokenizer_piece_to_id(g_real, USER_TOKEN), 128803);
  ck_assert_str_eq(vnrt_tokenizer_id_to_piece(g_real, 128803), USER_TOKEN);
  ck_assert(vnrt_tokenizer_is_special(g_real, 0));
  ck_assert(!vnrt_tokenizer_is_special(g_real, 128803));
  ck_assert(!vnrt_tokenizer_is_special(g_real, 19923));
  ck_assert_str_eq(vnrt_tokenizer_id_to_piece(g_real, 19923), "Hello");
  /* the same folder opened through its tokenizer.json path */
  char path[1024], err[512];
  snprintf(path, sizeof path, "%s/tokenizer.json", g_real_dir);
  vnrt_tokenizer *tok = NULL;
  ck_assert_int_eq(vnrt_tokenizer_open(NULL, path, &tok, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(vnrt_tokenizer_bos_id(tok), 0);
  vnrt_tokenizer_destroy(tok);
}
END_TEST

/* 100 KB runs (spaces, newlines, one long word, random bytes) encode and decode back; the
 * test's timeout bounds the time. */
START_TEST(real_long_runs) {
  size_t len = 100 * 1024;
  char *text = malloc(len);
  int32_t *ids = malloc((len + 1) * sizeof *ids);
  const char fill[] = {' ', '\n', 'a', '\t', 0};
  for (int k = 0; k < 5; k++) {
    uint64_t state = 12345;
    for (size_t i = 0; i < len; i++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      text[i] = fill[k] ? fill[k] : (char)(state >> 56);
    }
    if (fill[k] == '\t') { /* alternate tabs and spaces */
      for (size_t i = 0; i < len; i += 2) {
        text[i] = ' ';
      }
    }
    size_t n = encode(g_real, text, len, VNRT_TOKENIZE_SPECIAL, ids, len + 1);
    if (n == 0 || n > len) {
      ck_abort_msg("run %d: %zu ids for %zu bytes", k, n, len);
    }
    expect_decode(g_real, ids, n, text, len);
  }
  free(text);
  free(ids);
}
END_TEST

START_TEST(real_chat_contents_are_plain_text) {
  vnrt_chat_message msgs[] = {
      {"system", "Be brief."},
      {"user", "say " USER_TOKEN " please"},
      {"assistant", "ok"},
      {"user", "again"},
  };
  int32_t ids[256];
  size_t n = 0;
  ck_assert_int_eq(
      vnrt_tokenizer_chat_encode(g_real, msgs, 4, VNRT_CHAT_ADD_GENERATION_PROMPT, ids, 256, &n),
      VNRT_OK);
  int users = 0, assistants = 0, eos = 0;
  for (size_t i = 0; i < n; i++) {
    users += ids[i] == 128803;
    assistants += ids[i] == 128804;
    eos += ids[i] == 1;
  }
  ck_assert_int_eq(ids[0], 0);
  ck_assert_int_eq(users, 2); /* the content's spelling of the marker is text */
  ck_assert_int_eq(assistants, 2);
  ck_assert_int_eq(eos, 1);
  /* the prompt string spells it, and with the special flag it becomes the token */
  char prompt[512];
  size_t len = 0;
  ck_assert_int_eq(vnrt_tokenizer_chat_prompt(g_real, msgs, 4, VNRT_CHAT_ADD_GENERATION_PROMPT,
                                              prompt, sizeof prompt, &len),
                   VNRT_OK);
  ck_assert_str_eq(prompt,
                   "<\xEF\xBD\x9C"
                   "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>Be brief." USER_TOKEN
                   "say " USER_TOKEN
                   " please<\xEF\xBD\x9C"
                   "Assistant\xEF\xBD\x9C></think>ok<\xEF\xBD\x9C"
                   "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>" USER_TOKEN
                   "again<\xEF\xBD\x9C"
                   "Assistant\xEF\xBD\x9C></think>");
  ck_assert_uint_eq(len, strlen(prompt));
  /* an unknown role is named */
  vnrt_chat_message bad[] = {{"user", "x"}, {"tool", "y"}};
  ck_assert_int_eq(vnrt_tokenizer_chat_encode(g_real, bad, 2, 0, ids, 256, &n),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_tokenizer_last_error(g_real), "messages[1]"));
  ck_assert_ptr_nonnull(strstr(vnrt_tokenizer_last_error(g_real), "'tool'"));
}
END_TEST

int main(int argc, char **argv) {
  g_real_dir = argc > 1 ? argv[1] : "";
  char err[512];
  if (vnrt_tokenizer_open(NULL, g_real_dir, &g_real, err, sizeof err) != VNRT_OK) {
    printf("FAIL: the DeepSeek tokenizer is needed (%s); run third_party/install-deps.sh\n", err);
    return 1;
  }
  Suite *s = suite_create("tokenizer");
  TCase *tc = tcase_create("tokenizer");
  tcase_add_test(tc, synthetic_merges_by_rank);
  tcase_add_test(tc, special_tokens_only_with_the_flag);
  tcase_add_test(tc, load_errors_are_named);
  tcase_add_test(tc, small_buffers_report_the_size_needed);
  tcase_add_test(tc, decode_rejects_ids_out_of_range);
  tcase_add_test(tc, invalid_utf8_round_trips);
  tcase_add_test(tc, real_lookups);
  tcase_add_test(tc, real_long_runs);
  tcase_add_test(tc, real_chat_contents_are_plain_text);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  vnrt_tokenizer_destroy(g_real);
  return failed ? 1 : 0;
}
