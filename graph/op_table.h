/* The per-op schema: attributes (with defaults) and shape/dtype inference, keyed by vnrt_op. */
#ifndef VNRT_GRAPH_OP_TABLE_H_
#define VNRT_GRAPH_OP_TABLE_H_

#include "core.h"

typedef struct vn_attr_schema {
  const char *key;
  vnrt_attr_kind kind;      /* FLOAT accepts an INT value (stored as FLOAT) */
  bool required;            /* no default: must be given */
  bool optional;            /* may be absent entirely (e.g. clamp's min/max): no default */
  int64_t default_i;        /* for INT */
  double default_f;         /* for FLOAT */
  const char *default_word; /* for WORD */
  const char *const *words; /* allowed WORD values, NULL-terminated; NULL = any (e.g. dtype) */
} vn_attr_schema;

/* Infers result types from input types and normalised attributes. On failure writes a message
 * (e.g. "matmul: inner dims differ: a is f32[4, 3], b is f32[5, 2]") into err. */
typedef vnrt_status (*vn_infer_fn)(const vnrt_tensor_type *in, int32_t n_in, const vnrt_attr *attrs,
                                   int32_t n_attrs, vnrt_tensor_type *out, char *err,
                                   size_t err_size);

typedef struct vn_op_info {
  const char *name;
  int32_t min_inputs, max_inputs, n_outputs;
  const vn_attr_schema *attrs;
  int32_t n_attrs;
  vn_infer_fn infer;
} vn_op_info;

/* Whether input `input` of op may hold quantized codes or scales (e4m3, e2m1, e8m0): the weight
 * operands of linear, matmul, embedding and moe_ffn and their scales; nothing else reads them. */
bool vn_op_quant_input(vnrt_op op, int32_t input);

/* The schema of op, or NULL if op is out of range. */
const vn_op_info *vn_op_info_get(vnrt_op op);

/* Normalises user attributes against op's schema into a newly allocated array (schema order,
 * defaults filled, optional ones that were not given left out; keys point at the schema's
 * static strings, lists and words are copied). Unknown keys, wrong kinds, bad words and
 * missing required attributes fail with a message in err. Free with vn_attrs_free. */
vnrt_status vn_attrs_normalize(vnrt_context *ctx, vnrt_op op, const vnrt_attr *attrs,
                               int32_t n_attrs, vnrt_attr **out_attrs, int32_t *out_n, char *err,
                               size_t err_size);
void vn_attrs_free(vnrt_context *ctx, vnrt_attr *attrs, int32_t n);

#endif /* VNRT_GRAPH_OP_TABLE_H_ */
