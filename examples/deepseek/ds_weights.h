/* ds_weights: the model's tensors — one list of names, types and initialisations that the
 * generator writes, the loader checks and the graph declares — and the deterministic generator
 * of a .safetensors weights file. */
#ifndef DS_WEIGHTS_H_
#define DS_WEIGHTS_H_

#include <stddef.h>
#include <stdint.h>

#include "ds_config.h"
#include "vnrt/vnrt.h"

#define DS_NAME_SIZE 96

/* How the generator fills a tensor. */
typedef enum ds_init {
  DS_INIT_UNIFORM = 0,     /* uniform in [lo, hi) */
  DS_INIT_HC_BASE = 1,     /* mHC biases: pre/post uniform in [lo, hi), comb favouring identity */
  DS_INIT_TID2EID = 2,     /* hash routing: k distinct experts per token id */
  DS_INIT_OFFSETS = 3,     /* Engram row offsets of each head (derived from the config) */
  DS_INIT_QUANT_SCALE = 4, /* the scale of the quantized matrix before it (ds_tensor_fill_quant) */
} ds_init;

/* The name of a quantized weight's scale: "X.weight" -> "X.scale", any other name "X" ->
 * "X.scale" (the packed experts), as vnrt-quantize writes them. */
void ds_scale_name(const char *weight_name, char *out, size_t size);

/* The block of a code dtype: 128 x 128 for e4m3, 1 x 32 for e2m1 (the ops' defaults). */
void ds_quant_block(vnrt_dtype codes, int64_t block[2]);

typedef struct ds_tensor_spec {
  char name[DS_NAME_SIZE];
  vnrt_tensor_type type;
  ds_init init;
  float lo, hi;
  int derived;   /* nonzero: computed from the config and bound by the loader, not in the file */
  int32_t layer; /* the layer it belongs to, or -1 */
  /* A quantized matrix is two specs, its codes (e4m3 or e2m1, with the matrix's logical dims)
   * and right after them its e8m0 scale (DS_INIT_QUANT_SCALE): each one's quant_pair is the
   * other's index in the list; -1 for every other tensor. */
  int32_t quant_pair;
  vnrt_dtype master; /* codes: the dtype the master values are rounded to before quantizing */
} ds_tensor_spec;

/* Every tensor of the model for cfg, in a fixed order: file tensors first by layer, derived
 * ones marked. *out_specs is malloc'ed; the caller frees it. Returns 0, or -1 if out of
 * memory. */
int ds_tensor_specs(const ds_config *cfg, ds_tensor_spec **out_specs, int32_t *out_count);

/* The spec named name, or NULL. */
const ds_tensor_spec *ds_tensor_spec_find(const ds_tensor_spec *specs, int32_t count,
                                          const char *name);

/* Fills data (vnrt_tensor_type_bytes(&spec->type) bytes) with spec's deterministic values:
 * the same config and name give the same bytes on every machine. Not for the specs of a
 * quantized matrix: see ds_tensor_fill_quant. */
void ds_tensor_fill(const ds_config *cfg, const ds_tensor_spec *spec, void *data);

/* Fills a quantized matrix: its master values are drawn as ds_tensor_fill draws an unquantized
 * one of the same name, rounded to spec->master (weight_dtype), then quantized with
 * vnrt-quantize's recipe (README.md, "Quantized weights"): per block, scale =
 * vnrt_quant_block_scale(fmt, amax), code = encode(w / 2^(scale - 127)). So the result equals what
 * vnrt-quantize makes of the unquantized file. codes_spec is the codes' spec; scale_data receives
 * its scale (either data pointer may be NULL). Returns 0, or -1 if out of memory. */
int ds_tensor_fill_quant(const ds_config *cfg, const ds_tensor_spec *codes_spec, void *codes_data,
                         void *scale_data);

/* Writes every file tensor of cfg to a new safetensors file at path. Returns VNRT_OK, or a
 * status with a message in err. */
vnrt_status ds_weights_generate(vnrt_context *ctx, const ds_config *cfg, const char *path,
                                char *err, size_t err_size);

/* Total bytes of the file tensors (the size of the weights, at their stored dtypes: codes
 * and scales for quantized matrices). */
uint64_t ds_weights_bytes(const ds_config *cfg);

#endif /* DS_WEIGHTS_H_ */
