/* npy files: read from memory, as their own dtype and as every quantized code dtype; a file
 * that reads must write back and read again to the same type and bytes. */
#include <string.h>

#include "fuzz.h"
#include "vnrt/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vnrt_context *ctx = fuzz_context();
  vnrt_tensor_type t;
  void *values = NULL;
  if (vnrt_npy_read_memory(ctx, data, size, "fuzz.npy", &t, &values) == VNRT_OK) {
    void *bytes = NULL;
    size_t n = 0;
    if (vnrt_npy_write_memory(ctx, &t, values, &bytes, &n) == VNRT_OK) {
      vnrt_tensor_type t2;
      void *values2 = NULL;
      FUZZ_CHECK(vnrt_npy_read_memory(ctx, bytes, n, "again.npy", &t2, &values2) == VNRT_OK,
                 "a written npy must read again");
      FUZZ_CHECK(t2.dtype == t.dtype && t2.rank == t.rank, "the type must survive a round trip");
      FUZZ_CHECK(memcmp(values, values2, vnrt_tensor_type_bytes(&t)) == 0,
                 "the values must survive a round trip");
      vnrt_free(ctx, values2);
      vnrt_free(ctx, bytes);
    }
    vnrt_free(ctx, values);
  }
  const vnrt_dtype codes[] = {VNRT_E4M3, VNRT_E8M0, VNRT_E2M1};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; ++i) {
    void *v = NULL;
    if (vnrt_npy_read_memory_as(ctx, data, size, "fuzz.npy", codes[i], &t, &v) == VNRT_OK) {
      vnrt_free(ctx, v);
    }
  }
  return 0;
}
