/* DeepSeek-V4 config.json (models/v4_config.c): parse with every check; a config that parses
 * must give a memory plan, an inventory and an arena estimate without overflow or crash. */
#include <string.h>

#include "fuzz.h"
#include "v4_config.h"
#include "v4_plan.h"

static int count_tensor(void *user, const vn_v4_tensor_spec *t) {
  (void)t;
  ++*(int64_t *)user;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (64u << 10)) return 0;
  vn_v4_config cfg;
  char err[512];
  if (vn_v4_config_parse((const char *)data, size, &cfg, err, sizeof err) != VNRT_OK) {
    FUZZ_CHECK(strlen(err) > 0, "a refused config says why");
    return 0;
  }
  vn_v4_memory m;
  vn_v4_memory_plan(&cfg, 4096, &m);
  (void)vn_v4_prefill_arena_bytes(&cfg, 512);
  int64_t n = 0;
  vn_v4_for_each_tensor(&cfg, VN_V4_LIST_MODEL | VN_V4_LIST_MTP, count_tensor, &n);
  FUZZ_CHECK(n > 0, "a valid config lists tensors");
  return 0;
}
