/* DeepSeek-V4 memory plan (v4_plan.h). */
#include "v4_plan.h"

#include <string.h>

vnrt_status vn_v4_memory_plan(const vn_v4_config *cfg, int64_t max_ctx, vn_v4_memory *out) {
  (void)cfg, (void)max_ctx;
  if (out) memset(out, 0, sizeof *out);
  return VNRT_ERROR_UNSUPPORTED;
}

void vn_v4_memory_plan_print(FILE *fp, const vn_v4_config *cfg, const vn_v4_memory *m) {
  (void)fp, (void)cfg, (void)m;
}
