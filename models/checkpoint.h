/* A DeepSeek-V4 checkpoint directory opened and checked against its config (docs/deepseek-v4.md,
 * "Checkpoint" and "Loading"): config.json, model.safetensors.index.json and its shards, each
 * shard memory-mapped once; tensor data is read in place from the mappings.
 *
 * Every fallible call returns a vnrt_status and writes a message naming the file, the tensor
 * and what is wrong into err[err_size] (err may be NULL). */
#ifndef VNRT_MODELS_CHECKPOINT_H_
#define VNRT_MODELS_CHECKPOINT_H_

#include <stddef.h>
#include <stdint.h>

#include "v4_config.h"
#include "vnrt/vnrt.h"

typedef struct vn_checkpoint vn_checkpoint;

/* Opens the checkpoint in dir and checks all of it before returning:
 *  - config.json parses (vn_v4_config_load);
 *  - model.safetensors.index.json has metadata.total_size (a non-negative integer) and
 *    weight_map (tensor name -> shard file name, a plain file name inside dir);
 *  - each shard named by weight_map opens (vnrt_safetensors_open: header, bounds, a file cut
 *    short) and holds exactly the tensors the map assigns to it, no more;
 *  - total_size equals the sum of every tensor's payload bytes (mtp.* included);
 *  - every tensor of the inventory (vn_v4_for_each_tensor with VN_V4_LIST_MODEL) is present
 *    with its dtype and exact shape; a tensor outside the inventory that does not start with
 *    "mtp." is an error; mtp.* tensors are not checked further.
 * ctx (borrowed) must outlive the checkpoint; it carries the io layer's messages. On failure
 * *out is NULL and the status is VNRT_ERROR_IO (files), VNRT_ERROR_INVALID_ARGUMENT (content)
 * or VNRT_ERROR_OUT_OF_MEMORY. */
vnrt_status vn_checkpoint_open(vnrt_context *ctx, const char *dir, vn_checkpoint **out, char *err,
                               size_t err_size);

/* Unmaps every shard; pointers handed out become invalid. NULL is a no-op. */
void vn_checkpoint_close(vn_checkpoint *ck);

/* The parsed config (borrowed until close). */
const vn_v4_config *vn_checkpoint_config(const vn_checkpoint *ck);

/* Looks a tensor up by its full name. *type is its vnrt type as the io layer reads it: BF16,
 * F32, VNRT_E4M3 codes, VNRT_E8M0 scales, or VNRT_E2M1 for an I8 tensor, whose logical dims
 * are [out, in] (two codes per stored byte). *data points into the read-only mapping (borrowed
 * until close; only byte-aligned: memcpy rather than dereference as float); *bytes is its
 * stored size. type, data and bytes may be NULL. Fails with VNRT_ERROR_NOT_FOUND naming the
 * tensor when there is none, VNRT_ERROR_UNSUPPORTED for I64 (use vn_checkpoint_tid2eid). */
vnrt_status vn_checkpoint_tensor(vn_checkpoint *ck, const char *name, vnrt_tensor_type *type,
                                 const void **data, size_t *bytes, char *err, size_t err_size);

/* vn_checkpoint_tensor of "layers.<layer>.<suffix>", e.g. suffix "attn.wq_a.weight". */
vnrt_status vn_checkpoint_layer_tensor(vn_checkpoint *ck, int32_t layer, const char *suffix,
                                       vnrt_tensor_type *type, const void **data, size_t *bytes,
                                       char *err, size_t err_size);

/* The hash-routing table of a hash layer (layer < num_hash_layers): layers.<layer>.ffn.gate.
 * tid2eid, stored I64 [vocab_size, num_experts_per_tok], converted to a new int32 array of
 * vocab_size * num_experts_per_tok entries, row-major (*out is taken by the caller, freed with
 * free()). Every id must lie in [0, n_routed_experts) and the ids of a row must be distinct;
 * otherwise VNRT_ERROR_INVALID_ARGUMENT naming the layer, row, column and value. */
vnrt_status vn_checkpoint_tid2eid(vn_checkpoint *ck, int32_t layer, int32_t **out, char *err,
                                  size_t err_size);

/* A layer's routed experts as moe_ffn takes them (docs/ops.md "moe_ffn"), at stored size:
 *   gate_up [E, 2F, C]: rows [0, F) of expert e are w1 (gate), rows [F, 2F) w3 (up);
 *   down    [E, C, F]: w2;
 * codes e2m1 (fp4: scales [E, 2F, C/32] and [E, C, F/32], block 1x32) or e4m3 (fp8: scales
 * [E, 2F/128, C/128] and [E, C/128, F/128], block 128x128), as expert_dtype says; a dequantized
 * checkpoint's are BF16 with no scales (NULL, 0 bytes, block {0, 0}). The buffers are malloc'd and
 * taken by the caller: free them with vn_v4_experts_free. */
typedef struct vn_v4_experts {
  vnrt_tensor_type gate_up_type, gate_up_scale_type, down_type, down_scale_type;
  void *gate_up, *gate_up_scale, *down, *down_scale;
  size_t gate_up_bytes, gate_up_scale_bytes, down_bytes, down_scale_bytes;
  int32_t block[2]; /* moe_ffn's `block` attribute: {1, 32} or {128, 128} */
} vn_v4_experts;
vnrt_status vn_checkpoint_pack_experts(vn_checkpoint *ck, int32_t layer, vn_v4_experts *out,
                                       char *err, size_t err_size);
/* Frees the buffers and zeroes *e. NULL is a no-op. */
void vn_v4_experts_free(vn_v4_experts *e);

/* Stored payload bytes of the checkpoint's tensors by kind (vn_v4_kind; mtp.* under
 * VN_V4_KIND_MTP), out[VN_V4_KIND_COUNT], as found in the files. */
void vn_checkpoint_bytes_by_kind(const vn_checkpoint *ck, uint64_t out[VN_V4_KIND_COUNT]);

#endif /* VNRT_MODELS_CHECKPOINT_H_ */
