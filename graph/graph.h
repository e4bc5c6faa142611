/* Private graph IR shared by the builder, verifier, vnir parser/printer, passes and executor. */
#ifndef VNRT_GRAPH_GRAPH_H_
#define VNRT_GRAPH_GRAPH_H_

#include "core.h"

typedef enum vn_value_kind {
  VN_VALUE_INPUT = 0, /* bound at run time */
  VN_VALUE_PARAM = 1, /* a weight */
  VN_VALUE_NODE = 2,  /* a result of a node */
  VN_VALUE_STATE = 3, /* persistent across runs: zero at plan creation, then `next` */
} vn_value_kind;

typedef struct vn_value {
  char *name; /* owned; unique in the graph */
  vnrt_tensor_type type;
  vn_value_kind kind;
  int32_t producer; /* node index for VN_VALUE_NODE, else -1 */
  int32_t slot;     /* which result of the producer */
  int32_t next;     /* for VN_VALUE_STATE: the value it takes after each run, or -1 */
} vn_value;

typedef struct vn_node {
  vnrt_op op;
  int32_t n_inputs;
  int32_t inputs[VNRT_MAX_NODE_INPUTS]; /* value ids */
  int32_t n_outputs;
  int32_t outputs[VNRT_MAX_NODE_OUTPUTS]; /* value ids */
  int32_t n_attrs;
  vnrt_attr *attrs; /* owned, normalised: schema order, defaults filled (see op_table.h) */
  vnrt_op_params
      params; /* resolved from attrs and input types (params.c); lists point into attrs */
} vn_node;

struct vnrt_graph {
  vnrt_context *ctx;
  vn_value *values;
  int32_t n_values, cap_values;
  vn_node *nodes; /* in insertion order, which is a topological order (SSA) */
  int32_t n_nodes, cap_nodes;
  int32_t *inputs; /* value ids of inputs and params, declaration order */
  int32_t n_inputs, cap_inputs;
  int32_t *outputs; /* value ids, marking order (a value may be marked once) */
  int32_t n_outputs, cap_outputs;
  int32_t *states; /* value ids of states, declaration order */
  int32_t n_states, cap_states;
  /* Lookup aids kept by graph.c so that building and parsing are linear. All zero (a graph
   * copied field by field) means "not built yet": the next addition builds them, lookups scan
   * what they do not cover, and vnrt_graph_destroy frees them. */
  int32_t *name_index;   /* open addressing on value names: value ids, -1 = empty slot */
  size_t name_index_cap; /* a power of two, at least twice the indexed values (or 0) */
  int32_t n_indexed;     /* the index holds values [0, n_indexed) */
  uint8_t *output_mark;  /* output_mark[v] != 0: value v is an output; v < cap_output_mark */
  int32_t cap_output_mark;
};

/* Adds a node like vnrt_graph_add_node, but reports a failure as text in err (without node
 * naming prefix) and does not touch ctx's last error; the graph is unchanged on failure.
 * Used by the parser to prefix file:line:col. */
vnrt_status vn_graph_add_node(vnrt_graph *graph, vnrt_op op, const int32_t *inputs,
                              int32_t n_inputs, const vnrt_attr *attrs, int32_t n_attrs,
                              const char *const *out_names, int32_t *out_values, int32_t n_outputs,
                              char *err, size_t err_size);
vnrt_status vn_graph_add_input(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                               int is_param, int32_t *out_value, char *err, size_t err_size);
vnrt_status vn_graph_add_output(vnrt_graph *graph, int32_t value, char *err, size_t err_size);
vnrt_status vn_graph_add_state(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                               int32_t *out_value, char *err, size_t err_size);
vnrt_status vn_graph_set_state_update(vnrt_graph *graph, int32_t state, int32_t next, char *err,
                                      size_t err_size);

/* The block a quantized weight of codes dtype `codes` has when the `block` attribute is left
 * out (docs/ops.md, "Quantized weights"): 128 x 128 for e4m3, 1 x 32 for e2m1; and the channels
 * per scale of fake_quant and act_quant for format `fmt`: 128 (e4m3), 32 (e2m1). */
static inline void vn_quant_default_block(vnrt_dtype codes, int64_t block[2]) {
  block[0] = codes == VNRT_E2M1 ? 1 : 128;
  block[1] = codes == VNRT_E2M1 ? 32 : 128;
}
static inline int64_t vn_fake_quant_default_block(vnrt_dtype fmt) {
  return fmt == VNRT_E2M1 ? 32 : 128;
}

/* Fills nd->params from nd's normalised attributes and the types of its inputs and results in
 * g (which must already be checked by inference). Call again after copying attrs: list members
 * point into them. */
void vn_node_resolve_params(const vnrt_graph *g, vn_node *nd);

/* A deep copy of src owned by ctx: its own names, attributes and resolved params, so src may be
 * destroyed; its lookup index is built lazily, as for any graph (graph_clone.c). NULL when out of
 * memory. Free with vnrt_graph_destroy. */
vnrt_graph *vn_graph_clone(vnrt_context *ctx, const vnrt_graph *src);

/* docs/ops.md's ngram_hash on the host (ngram.c): idx[T, (max_n-1)*heads] from ids[T] and
 * hist[max_n-1], with the wrapping 64-bit multiplies and the floor modulo. p is a node's resolved
 * params, which inference has checked (max_n = mult's count >= 2, primes in [1, INT32_MAX]). */
void vn_ngram_hash(const vnrt_ngram_hash_params *p, const int32_t *ids, int64_t T,
                   const int32_t *hist, int32_t *idx);

/* Formats a type as vnir writes it: "f32[4, 64]"; returns buf. */
const char *vn_type_str(const vnrt_tensor_type *type, char *buf, size_t size);
/* Whether a name matches [A-Za-z_][A-Za-z0-9_.]* and is not a keyword. */
bool vn_name_valid(const char *name);

#endif /* VNRT_GRAPH_GRAPH_H_ */
