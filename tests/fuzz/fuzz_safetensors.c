/* safetensors files: open (header, offsets, dtypes), list, look every tensor up and read its
 * metadata; a file that opens must describe tensors that lie inside it. */
#include "fuzz.h"
#include "vnrt/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vnrt_context *ctx = fuzz_context();
  int fd;
  char path[64];
  if (!fuzz_file(data, size, &fd, path, sizeof path)) return 0;
  vnrt_safetensors *f = NULL;
  if (vnrt_safetensors_open(ctx, path, &f) == VNRT_OK) {
    for (int32_t i = 0; i < vnrt_safetensors_count(f); ++i) {
      const char *name = vnrt_safetensors_name(f, i);
      FUZZ_CHECK(name != NULL, "every listed tensor has a name");
      vnrt_tensor_type t;
      const void *bytes = NULL;
      size_t n = 0;
      vnrt_status st = vnrt_safetensors_find(f, name, &t, &bytes, &n);
      /* a dtype or rank vnrt cannot hold is reported at lookup, not at open */
      FUZZ_CHECK(st == VNRT_OK || st == VNRT_ERROR_UNSUPPORTED, "every listed tensor is found");
      if (st != VNRT_OK) continue;
      FUZZ_CHECK(n == vnrt_tensor_type_bytes(&t), "a tensor's bytes match its type");
      volatile uint8_t sum = 0;
      for (size_t k = 0; k < n; k += 4096) sum ^= ((const uint8_t *)bytes)[k];
      if (n) sum ^= ((const uint8_t *)bytes)[n - 1];
      (void)sum;
    }
    for (int32_t i = 0; i < vnrt_safetensors_metadata_count(f); ++i) {
      const char *key = vnrt_safetensors_metadata_key(f, i);
      FUZZ_CHECK(key && vnrt_safetensors_metadata(f, key), "metadata keys have values");
    }
    vnrt_safetensors_close(f);
  }
  fuzz_close_file(fd);
  return 0;
}
