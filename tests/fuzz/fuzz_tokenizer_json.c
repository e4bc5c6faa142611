/* tokenizer.json files: open (json-c parse, model/vocab/merges, added tokens, pre-tokenizer
 * and decoder sections), then encode and decode a fixed text. Nothing may crash or leak. */
#include "fuzz.h"
#include "vnrt/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (256u << 10)) return 0;
  int fd;
  char path[64];
  if (!fuzz_file(data, size, &fd, path, sizeof path)) return 0;
  vnrt_tokenizer *tok = NULL;
  char err[256];
  if (vnrt_tokenizer_open(fuzz_context(), path, &tok, err, sizeof err) == VNRT_OK) {
    static const char text[] = "Hello, 世界! 12345 \xf0\x9f\x98\x80  \t\nx\xff<｜User｜>";
    int32_t ids[256];
    size_t n = 0;
    if (vnrt_tokenizer_encode(tok, text, sizeof text - 1, VNRT_TOKENIZE_SPECIAL, ids, 256, &n) ==
        VNRT_OK) {
      char out[1024];
      size_t len = 0;
      (void)vnrt_tokenizer_decode(tok, ids, n, 0, out, sizeof out, &len);
    }
    vnrt_tokenizer_destroy(tok);
  }
  fuzz_close_file(fd);
  return 0;
}
