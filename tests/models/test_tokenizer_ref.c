/* The tokenizer against the reference DeepSeek tokenizer: every case of expected.json (made by
 * tokenizer_expected.mjs with the npm package) must encode to the same ids, decode back to the
 * same bytes, and the chat prompts must match string and ids.
 * usage: test_tokenizer_ref TOKENIZER_JSON EXPECTED_JSON (run by run_tokenizer_ref.py). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vnrt/tokenizer.h"

static int g_failures;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fail(const char *fmt, const char *what, size_t index, const char *detail) {
  if (++g_failures <= 20) {
    printf("FAIL %s %zu: ", what, index);
    printf(fmt, detail);
    printf("\n");
  }
}

/* Compares got[n_got] with the JSON array want; on a mismatch reports the first difference. */
static int ids_equal(const int32_t *got, size_t n_got, json_object *want, char *msg,
                     size_t msg_size) {
  size_t n_want = json_object_array_length(want);
  for (size_t i = 0; i < n_got || i < n_want; i++) {
    int32_t w = i < n_want ? json_object_get_int(json_object_array_get_idx(want, i)) : -1;
    int32_t g = i < n_got ? got[i] : -1;
    if (w != g) {
      snprintf(msg, msg_size, "%zu ids (reference %zu); first difference at %zu: %d, reference %d",
               n_got, n_want, i, g, w);
      return 0;
    }
  }
  return 1;
}

static int32_t *encode(vnrt_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                       size_t *count) {
  /* the size query first, then the call that fills: both paths of the API */
  if (vnrt_tokenizer_encode(tok, text, len, flags, NULL, 0, count) != VNRT_OK && *count == 0) {
    return NULL;
  }
  int32_t *ids = malloc((*count + 1) * sizeof *ids);
  if (ids && vnrt_tokenizer_encode(tok, text, len, flags, ids, *count, count) != VNRT_OK) {
    free(ids);
    return NULL;
  }
  return ids;
}

static void check_case(vnrt_tokenizer *tok, size_t index, json_object *c) {
  json_object *jt, *jids;
  json_object_object_get_ex(c, "text", &jt);
  json_object_object_get_ex(c, "ids", &jids);
  const char *text = json_object_get_string(jt);
  size_t len = (size_t)json_object_get_string_len(jt);
  char excerpt[64];
  snprintf(excerpt, sizeof excerpt, "%.40s", text);
  size_t count = 0;
  int32_t *ids = encode(tok, text, len, VNRT_TOKENIZE_SPECIAL, &count);
  if (ids == NULL) {
    fail("encode failed: %s", "case", index, vnrt_tokenizer_last_error(tok));
    return;
  }
  char msg[256];
  if (!ids_equal(ids, count, jids, msg, sizeof msg)) {
    char detail[400];
    snprintf(detail, sizeof detail, "'%s': %s", excerpt, msg);
    fail("%s", "case", index, detail);
  }
  /* decode(encode(x)) == x */
  char *back = malloc(len + 1);
  size_t back_len = 0;
  if (vnrt_tokenizer_decode(tok, ids, count, 0, back, len + 1, &back_len) != VNRT_OK ||
      back_len != len || memcmp(back, text, len) != 0) {
    fail("'%s': decode(encode(x)) != x", "case", index, excerpt);
  }
  free(ids);
  /* plain text (added tokens not matched) round-trips too */
  ids = encode(tok, text, len, 0, &count);
  if (ids == NULL ||
      vnrt_tokenizer_decode(tok, ids, count, 0, back, len + 1, &back_len) != VNRT_OK ||
      back_len != len || memcmp(back, text, len) != 0) {
    fail("'%s': plain decode(encode(x)) != x", "case", index, excerpt);
  }
  free(ids);
  free(back);
}

static void check_chat(vnrt_tokenizer *tok, size_t index, json_object *c) {
  json_object *jm, *jf, *jp, *jids;
  json_object_object_get_ex(c, "messages", &jm);
  json_object_object_get_ex(c, "flags", &jf);
  json_object_object_get_ex(c, "prompt", &jp);
  json_object_object_get_ex(c, "ids", &jids);
  size_t n = json_object_array_length(jm);
  vnrt_chat_message msgs[16];
  for (size_t i = 0; i < n && i < 16; i++) {
    json_object *m = json_object_array_get_idx(jm, i), *v;
    json_object_object_get_ex(m, "role", &v);
    msgs[i].role = json_object_get_string(v);
    json_object_object_get_ex(m, "content", &v);
    msgs[i].content = json_object_get_string(v);
  }
  uint32_t flags = (uint32_t)json_object_get_int(jf);
  char prompt[4096];
  size_t len = 0;
  if (vnrt_tokenizer_chat_prompt(tok, msgs, n, flags, prompt, sizeof prompt, &len) != VNRT_OK) {
    fail("chat_prompt failed: %s", "chat", index, vnrt_tokenizer_last_error(tok));
    return;
  }
  if (strcmp(prompt, json_object_get_string(jp)) != 0) {
    fail("prompt '%s' differs from the reference", "chat", index, prompt);
  }
  int32_t ids[1024];
  size_t count = 0;
  if (vnrt_tokenizer_chat_encode(tok, msgs, n, flags, ids, 1024, &count) != VNRT_OK) {
    fail("chat_encode failed: %s", "chat", index, vnrt_tokenizer_last_error(tok));
    return;
  }
  char msg[256];
  if (!ids_equal(ids, count, jids, msg, sizeof msg)) {
    fail("%s", "chat", index, msg);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_tokenizer_ref TOKENIZER_JSON EXPECTED_JSON\n");
    return 2;
  }
  char err[512];
  vnrt_tokenizer *tok = NULL;
  double t0 = now_s();
  if (vnrt_tokenizer_open(NULL, argv[1], &tok, err, sizeof err) != VNRT_OK) {
    printf("FAIL open: %s\n", err);
    return 1;
  }
  double t1 = now_s();
  json_object *expected = json_object_from_file(argv[2]);
  json_object *cases, *chats;
  if (expected == NULL || !json_object_object_get_ex(expected, "cases", &cases) ||
      !json_object_object_get_ex(expected, "chat", &chats)) {
    printf("FAIL %s: not the expected JSON (%s)\n", argv[2], json_util_get_last_err());
    return 1;
  }
  size_t n_cases = json_object_array_length(cases), n_chats = json_object_array_length(chats);
  size_t bytes = 0;
  for (size_t i = 0; i < n_cases; i++) {
    json_object *c = json_object_array_get_idx(cases, i), *jt;
    json_object_object_get_ex(c, "text", &jt);
    bytes += (size_t)json_object_get_string_len(jt);
    check_case(tok, i, c);
  }
  for (size_t i = 0; i < n_chats; i++) {
    check_chat(tok, i, json_object_array_get_idx(chats, i));
  }
  double t2 = now_s();
  printf(
      "tokenizer.json loaded in %.3f s; %zu cases (%zu bytes, each encoded twice and decoded "
      "twice) and %zu chats in %.3f s\n",
      t1 - t0, n_cases, bytes, n_chats, t2 - t1);
  printf("%s: %d failure(s)\n", g_failures ? "FAIL" : "OK", g_failures);
  json_object_put(expected);
  vnrt_tokenizer_destroy(tok);
  return g_failures ? 1 : 0;
}
