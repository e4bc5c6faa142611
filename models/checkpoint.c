/* DeepSeek-V4 checkpoint directory: open, check against the config, look tensors up
 * (checkpoint.h). */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "models.h"

vnrt_status vn_checkpoint_open(vnrt_context *ctx, const char *dir, vn_checkpoint **out, char *err,
                               size_t err_size) {
  (void)ctx;
  if (out) *out = NULL;
  return vn_model_fail(err, err_size, VNRT_ERROR_UNSUPPORTED, "%s: not implemented yet",
                       dir ? dir : "(null)");
}

void vn_checkpoint_close(vn_checkpoint *ck) { (void)ck; }

const vn_v4_config *vn_checkpoint_config(const vn_checkpoint *ck) {
  (void)ck;
  return NULL;
}

vnrt_status vn_checkpoint_tensor(vn_checkpoint *ck, const char *name, vnrt_tensor_type *type,
                                 const void **data, size_t *bytes, char *err, size_t err_size) {
  (void)ck, (void)type, (void)data, (void)bytes;
  return vn_model_fail(err, err_size, VNRT_ERROR_UNSUPPORTED, "%s: not implemented yet", name);
}

vnrt_status vn_checkpoint_layer_tensor(vn_checkpoint *ck, int32_t layer, const char *suffix,
                                       vnrt_tensor_type *type, const void **data, size_t *bytes,
                                       char *err, size_t err_size) {
  (void)ck, (void)layer, (void)type, (void)data, (void)bytes;
  return vn_model_fail(err, err_size, VNRT_ERROR_UNSUPPORTED, "%s: not implemented yet", suffix);
}

vnrt_status vn_checkpoint_tid2eid(vn_checkpoint *ck, int32_t layer, int32_t **out, char *err,
                                  size_t err_size) {
  (void)ck, (void)layer;
  if (out) *out = NULL;
  return vn_model_fail(err, err_size, VNRT_ERROR_UNSUPPORTED, "not implemented yet");
}

vnrt_status vn_checkpoint_pack_experts(vn_checkpoint *ck, int32_t layer, vn_v4_experts *out,
                                       char *err, size_t err_size) {
  (void)ck, (void)layer;
  if (out) memset(out, 0, sizeof *out);
  return vn_model_fail(err, err_size, VNRT_ERROR_UNSUPPORTED, "not implemented yet");
}

void vn_v4_experts_free(vn_v4_experts *e) {
  if (!e) return;
  free(e->gate_up);
  free(e->gate_up_scale);
  free(e->down);
  free(e->down_scale);
  memset(e, 0, sizeof *e);
}

void vn_checkpoint_bytes_by_kind(const vn_checkpoint *ck, uint64_t out[VN_V4_KIND_COUNT]) {
  (void)ck;
  memset(out, 0, sizeof(uint64_t) * VN_V4_KIND_COUNT);
}
