/* The graph builder: declares inputs and params, adds nodes that are verified (names, arity,
 * attributes, inferred types) as they arrive, and answers queries about values. */
#include "graph.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "op_table.h"

/* The largest tensor the runtime accepts: far beyond any device, yet small enough that byte
 * offsets and element counts never overflow in kernels (2^48 bytes = 256 TiB). */
#define VN_MAX_TENSOR_BYTES (UINT64_C(1) << 48)

/* Message buffers: room for a full detail message plus the prefix naming the node. */
#define VN_MSG 1024

/* ---- Ops and names --------------------------------------------------------------------- */

const char *vnrt_op_name(vnrt_op op) {
  const vn_op_info *info = vn_op_info_get(op);
  return info ? info->name : NULL;
}

vnrt_op vnrt_op_from_name(const char *name) {
  if (!name) return VNRT_OP_INVALID;
  for (int32_t i = 0; i < VNRT_OP_COUNT; ++i) {
    if (strcmp(vn_op_info_get((vnrt_op)i)->name, name) == 0) return (vnrt_op)i;
  }
  return VNRT_OP_INVALID;
}

const char *vn_type_str(const vnrt_tensor_type *type, char *buf, size_t size) {
  if (!buf || size == 0) return "";
  if (!type) {
    snprintf(buf, size, "(no type)");
    return buf;
  }
  if (type->rank < 0 || type->rank > VNRT_MAX_DIMS) {
    snprintf(buf, size, "%s[<rank %d>]", vnrt_dtype_name(type->dtype), (int)type->rank);
    return buf;
  }
  int w = snprintf(buf, size, "%s[", vnrt_dtype_name(type->dtype));
  size_t used = w > 0 ? (size_t)w : 0;
  for (int32_t i = 0; i < type->rank && used < size; ++i) {
    w = snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", type->dims[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

bool vn_name_valid(const char *name) {
  static const char *const k_keywords[] = {"vnir", "input", "param", "output"};
  if (!name || !name[0]) return false;
  char c0 = name[0];
  if (!((c0 >= 'A' && c0 <= 'Z') || (c0 >= 'a' && c0 <= 'z') || c0 == '_')) return false;
  for (const char *p = name + 1; *p; ++p) {
    char c = *p;
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.';
    if (!ok) return false;
  }
  for (size_t i = 0; i < VN_ARRAY_SIZE(k_keywords); ++i) {
    if (strcmp(name, k_keywords[i]) == 0) return false;
  }
  return true;
}

static void put_err(char *err, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_err(char *err, size_t size, const char *fmt, ...) {
  if (!err || size == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, size, fmt, ap);
  va_end(ap);
}

/* "input 'x'" or "result 1": what a type message is about. Formatted only on an error, since
 * check_type runs for every value of every graph. */
static const char *role_str(char *buf, size_t size, const char *what, const char *name, int index) {
  if (name) {
    snprintf(buf, size, "%s '%s'", what, name);
  } else {
    snprintf(buf, size, "%s %d", what, index);
  }
  return buf;
}

/* Checks a tensor type: a known dtype, rank 0..4, dims >= 0, and a byte size that neither
 * overflows nor exceeds VN_MAX_TENSOR_BYTES. The message names it as role_str(what, name,
 * index) does. */
static vnrt_status check_type(const vnrt_tensor_type *t, const char *what, const char *name,
                              int index, char *err, size_t size) {
  char s[160], r[160];
#define ROLE role_str(r, sizeof r, what, name, index)
  if (t->dtype < VNRT_F32 || t->dtype > VNRT_E2M1 || vnrt_dtype_bits(t->dtype) == 0) {
    put_err(err, size, "%s has an invalid dtype (%d)", ROLE, (int)t->dtype);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  const size_t esize = vnrt_dtype_size(t->dtype) ? vnrt_dtype_size(t->dtype) : 1;
  if (t->rank < 0 || t->rank > VNRT_MAX_DIMS) {
    put_err(err, size, "%s has rank %d; ranks 0 to %d are supported", ROLE, (int)t->rank,
            VNRT_MAX_DIMS);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  /* e2m1 packs two codes a byte along the last dim: rows must be whole bytes. */
  if (t->dtype == VNRT_E2M1 && (t->rank < 1 || t->dims[t->rank - 1] % 2 != 0)) {
    put_err(err, size, "%s is %s: e2m1 codes need rank >= 1 and an even last dim (two a byte)",
            ROLE, vn_type_str(t, s, sizeof s));
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  /* A dim above the limit is rejected even when another dim is 0: strides would overflow. */
  bool too_big = false, empty = false;
  for (int32_t i = 0; i < t->rank; ++i) {
    if (t->dims[i] < 0) {
      put_err(err, size, "%s is %s: dim %d is negative", ROLE, vn_type_str(t, s, sizeof s), (int)i);
      return VNRT_ERROR_INVALID_ARGUMENT;
    }
    too_big = too_big || (uint64_t)t->dims[i] > VN_MAX_TENSOR_BYTES;
    empty = empty || t->dims[i] == 0;
  }
  uint64_t bytes = esize;
  for (int32_t i = 0; i < t->rank && !too_big && !empty; ++i) {
    uint64_t d = (uint64_t)t->dims[i];
    if (bytes > VN_MAX_TENSOR_BYTES / d) {
      too_big = true;
    } else {
      bytes *= d;
    }
  }
  if (too_big) {
    put_err(err, size, "%s is %s: huge dims: the tensor exceeds the 2^48-byte limit", ROLE,
            vn_type_str(t, s, sizeof s));
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  return VNRT_OK;
#undef ROLE
}

/* ---- Name index ------------------------------------------------------------------------ */

/* FNV-1a, with the high half folded in because the table masks the low bits. */
static size_t hash_name(const char *s) {
  uint64_t h = UINT64_C(1469598103934665603);
  for (; *s; ++s) h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
  return (size_t)(h ^ (h >> 32));
}

/* Puts value id into the index, which has room (the caller reserved it). */
static void index_put(vnrt_graph *graph, int32_t id) {
  size_t mask = graph->name_index_cap - 1;
  size_t k = hash_name(graph->values[id].name) & mask;
  while (graph->name_index[k] >= 0) k = (k + 1) & mask;
  graph->name_index[k] = id;
}

/* Makes the index cover every value, with room for `extra` more at a load of at most 1/2.
 * Returns false when out of memory; the graph is then as it was (the old index stays). */
static bool index_reserve(vnrt_graph *graph, int32_t extra) {
  size_t need = 2 * ((size_t)graph->n_values + (size_t)extra);
  if (graph->n_indexed == graph->n_values && graph->name_index_cap >= need) return true;
  size_t cap = graph->name_index_cap ? graph->name_index_cap : 64;
  while (cap < need) {
    if (cap > SIZE_MAX / 2 / sizeof *graph->name_index) return false;
    cap *= 2;
  }
  if (cap != graph->name_index_cap) {
    int32_t *table = vn_malloc(graph->ctx, cap * sizeof *table);
    if (!table) return false;
    memset(table, 0xFF, cap * sizeof *table); /* every slot -1 */
    vn_free(graph->ctx, graph->name_index);
    graph->name_index = table;
    graph->name_index_cap = cap;
    graph->n_indexed = 0;
  }
  /* A table that has not grown only catches up with values added behind its back. */
  for (int32_t i = graph->n_indexed; i < graph->n_values; ++i) index_put(graph, i);
  graph->n_indexed = graph->n_values;
  return true;
}

/* Indexes the values appended since the last call; index_reserve made room for them. */
static void index_commit(vnrt_graph *graph) {
  for (int32_t i = graph->n_indexed; i < graph->n_values; ++i) index_put(graph, i);
  graph->n_indexed = graph->n_values;
}

static int32_t find_value(const vnrt_graph *graph, const char *name) {
  if (graph->name_index_cap > 0) {
    size_t mask = graph->name_index_cap - 1;
    for (size_t k = hash_name(name) & mask;; k = (k + 1) & mask) {
      int32_t id = graph->name_index[k];
      if (id < 0) break;
      if (strcmp(graph->values[id].name, name) == 0) return id;
    }
  }
  /* Values the index does not hold yet (none, once the graph has been added to). */
  for (int32_t i = graph->n_indexed; i < graph->n_values; ++i) {
    if (strcmp(graph->values[i].name, name) == 0) return i;
  }
  return -1;
}

/* ---- Graph lifetime -------------------------------------------------------------------- */

vnrt_status vnrt_graph_create(vnrt_context *ctx, vnrt_graph **out_graph) {
  if (out_graph) *out_graph = NULL;
  if (!ctx || !out_graph) {
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_graph_create: %s is NULL",
                    ctx ? "out_graph" : "ctx");
  }
  vnrt_graph *g = vn_calloc(ctx, 1, sizeof *g);
  if (!g) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_graph_create: out of memory");
  g->ctx = ctx;
  *out_graph = g;
  return VNRT_OK;
}

void vnrt_graph_destroy(vnrt_graph *graph) {
  if (!graph) return;
  vnrt_context *ctx = graph->ctx;
  for (int32_t i = 0; i < graph->n_values; ++i) vn_free(ctx, graph->values[i].name);
  for (int32_t i = 0; i < graph->n_nodes; ++i) {
    vn_attrs_free(ctx, graph->nodes[i].attrs, graph->nodes[i].n_attrs);
  }
  vn_free(ctx, graph->values);
  vn_free(ctx, graph->nodes);
  vn_free(ctx, graph->inputs);
  vn_free(ctx, graph->outputs);
  vn_free(ctx, graph->states);
  vn_free(ctx, graph->name_index);
  vn_free(ctx, graph->output_mark);
  vn_free(ctx, graph);
}

/* ---- Inputs and params ----------------------------------------------------------------- */

/* Declares an input, param or state: checked name and type, appended to its list. */
static vnrt_status declare_value(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                                 vn_value_kind kind, int32_t *out_value, char *err,
                                 size_t err_size) {
  if (out_value) *out_value = -1;
  const char *what = kind == VN_VALUE_PARAM ? "param" : kind == VN_VALUE_STATE ? "state" : "input";
  bool is_state = kind == VN_VALUE_STATE;
  if (!graph || !type) {
    put_err(err, err_size, "%s: %s is NULL", what, graph ? "type" : "graph");
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (!vn_name_valid(name)) {
    put_err(err, err_size,
            "%s name '%s' is not valid (expected [A-Za-z_][A-Za-z0-9_.]*, not a keyword)", what,
            name ? name : "(null)");
    return VNRT_ERROR_INVALID_GRAPH;
  }
  if (find_value(graph, name) >= 0) {
    put_err(err, err_size, "redefinition: '%s' is already defined", name);
    return VNRT_ERROR_INVALID_GRAPH;
  }
  VN_RETURN_IF_ERROR(check_type(type, what, name, 0, err, err_size));
  vnrt_context *ctx = graph->ctx;
  if (graph->n_values >= INT32_MAX - VNRT_MAX_NODE_OUTPUTS ||
      !vn_grow(ctx, (void **)&graph->values, &graph->cap_values, graph->n_values + 1,
               sizeof *graph->values) ||
      (!is_state && !vn_grow(ctx, (void **)&graph->inputs, &graph->cap_inputs, graph->n_inputs + 1,
                             sizeof *graph->inputs)) ||
      (is_state && !vn_grow(ctx, (void **)&graph->states, &graph->cap_states, graph->n_states + 1,
                            sizeof *graph->states)) ||
      !index_reserve(graph, 1)) {
    put_err(err, err_size, "%s '%s': out of memory", what, name);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  char *copy = vn_strdup(ctx, name);
  if (!copy) {
    put_err(err, err_size, "%s '%s': out of memory", what, name);
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  int32_t id = graph->n_values++;
  vn_value *v = &graph->values[id];
  memset(v, 0, sizeof *v);
  v->name = copy;
  v->type = *type;
  for (int32_t i = type->rank; i < VNRT_MAX_DIMS; ++i) v->type.dims[i] = 0;
  v->kind = kind;
  v->producer = -1;
  v->slot = 0;
  v->next = -1;
  if (is_state)
    graph->states[graph->n_states++] = id;
  else
    graph->inputs[graph->n_inputs++] = id;
  index_commit(graph);
  if (out_value) *out_value = id;
  return VNRT_OK;
}

vnrt_status vn_graph_add_input(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                               int is_param, int32_t *out_value, char *err, size_t err_size) {
  return declare_value(graph, name, type, is_param ? VN_VALUE_PARAM : VN_VALUE_INPUT, out_value,
                       err, err_size);
}

vnrt_status vn_graph_add_state(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                               int32_t *out_value, char *err, size_t err_size) {
  return declare_value(graph, name, type, VN_VALUE_STATE, out_value, err, err_size);
}

vnrt_status vnrt_graph_add_state(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                                 vnrt_value *out_value) {
  if (out_value) *out_value = -1;
  if (!graph) return vn_error(NULL, VNRT_ERROR_INVALID_ARGUMENT, "graph is NULL");
  char err[VN_MSG];
  vnrt_status st = vn_graph_add_state(graph, name, type, out_value, err, sizeof err);
  if (st != VNRT_OK) return vn_error(graph->ctx, st, "%s", err);
  return VNRT_OK;
}

vnrt_status vn_graph_set_state_update(vnrt_graph *graph, int32_t state, int32_t next, char *err,
                                      size_t err_size) {
  if (!graph || state < 0 || state >= graph->n_values || next < 0 || next >= graph->n_values) {
    put_err(err, err_size, "state update: not a value of this graph");
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  vn_value *s = &graph->values[state];
  const vn_value *n = &graph->values[next];
  if (s->kind != VN_VALUE_STATE) {
    put_err(err, err_size, "state update: '%s' is not a state", s->name);
    return VNRT_ERROR_INVALID_GRAPH;
  }
  if (s->next >= 0) {
    put_err(err, err_size, "state update: '%s' already takes '%s' after a run", s->name,
            graph->values[s->next].name);
    return VNRT_ERROR_INVALID_GRAPH;
  }
  if (n->kind != VN_VALUE_NODE) {
    put_err(err, err_size, "state update: '%s' must be computed by a node", n->name);
    return VNRT_ERROR_INVALID_GRAPH;
  }
  char ts[160], tn[160];
  if (n->type.dtype != s->type.dtype || n->type.rank != s->type.rank ||
      memcmp(n->type.dims, s->type.dims, sizeof(int64_t) * (size_t)s->type.rank) != 0) {
    put_err(err, err_size, "state update: state '%s' is %s but '%s' is %s", s->name,
            vn_type_str(&s->type, ts, sizeof ts), n->name, vn_type_str(&n->type, tn, sizeof tn));
    return VNRT_ERROR_SHAPE_MISMATCH;
  }
  s->next = next;
  return VNRT_OK;
}

vnrt_status vnrt_graph_set_state_update(vnrt_graph *graph, vnrt_value state, vnrt_value next) {
  if (!graph) return vn_error(NULL, VNRT_ERROR_INVALID_ARGUMENT, "graph is NULL");
  char err[VN_MSG];
  vnrt_status st = vn_graph_set_state_update(graph, state, next, err, sizeof err);
  if (st != VNRT_OK) return vn_error(graph->ctx, st, "%s", err);
  return VNRT_OK;
}

int32_t vnrt_graph_state_count(const vnrt_graph *graph) { return graph ? graph->n_states : 0; }

vnrt_value vnrt_graph_state(const vnrt_graph *graph, int32_t i, vnrt_value *out_next) {
  if (out_next) *out_next = -1;
  if (!graph || i < 0 || i >= graph->n_states) return -1;
  if (out_next) *out_next = graph->values[graph->states[i]].next;
  return graph->states[i];
}

vnrt_status vnrt_graph_add_input(vnrt_graph *graph, const char *name, const vnrt_tensor_type *type,
                                 int is_param, vnrt_value *out_value) {
  if (out_value) *out_value = -1;
  if (!graph) return vn_error(NULL, VNRT_ERROR_INVALID_ARGUMENT, "graph is NULL");
  char err[VN_MSG];
  vnrt_status st = vn_graph_add_input(graph, name, type, is_param, out_value, err, sizeof err);
  if (st != VNRT_OK) return vn_error(graph->ctx, st, "%s", err);
  return VNRT_OK;
}

/* ---- Nodes ----------------------------------------------------------------------------- */

/* Verifies and appends a node; on failure writes the reason (without any prefix) to err and
 * leaves the graph as it was. */
static vnrt_status add_node(vnrt_graph *graph, vnrt_op op, const int32_t *inputs, int32_t n_inputs,
                            const vnrt_attr *attrs, int32_t n_attrs, const char *const *out_names,
                            int32_t *out_values, int32_t n_outputs, char *err, size_t err_size) {
  const vn_op_info *info = vn_op_info_get(op);
  if (!info) {
    put_err(err, err_size, "unknown op %d", (int)op);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (n_inputs < info->min_inputs || n_inputs > info->max_inputs) {
    if (info->min_inputs == info->max_inputs) {
      put_err(err, err_size, "takes %d inputs, got %d", (int)info->min_inputs, (int)n_inputs);
    } else {
      put_err(err, err_size, "takes %d to %d inputs, got %d", (int)info->min_inputs,
              (int)info->max_inputs, (int)n_inputs);
    }
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (n_outputs != info->n_outputs) {
    put_err(err, err_size, "has %d result%s, but %d were requested", (int)info->n_outputs,
            info->n_outputs == 1 ? "" : "s", (int)n_outputs);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (!inputs) {
    put_err(err, err_size, "inputs is NULL");
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  vnrt_tensor_type in_types[VNRT_MAX_NODE_INPUTS];
  for (int32_t i = 0; i < n_inputs; ++i) {
    if (inputs[i] < 0 || inputs[i] >= graph->n_values) {
      put_err(err, err_size, "input %d is value %d, which is not a value of this graph", (int)i,
              (int)inputs[i]);
      return VNRT_ERROR_INVALID_ARGUMENT;
    }
    in_types[i] = graph->values[inputs[i]].type;
    const vnrt_dtype dt = in_types[i].dtype;
    if ((dt == VNRT_E4M3 || dt == VNRT_E2M1 || dt == VNRT_E8M0) && !vn_op_quant_input(op, i)) {
      char ts[160];
      put_err(err, err_size,
              "input %d is %s: quantized codes and scales are read only as the weight operand "
              "of linear, matmul, embedding or moe_ffn and its scale",
              (int)i, vn_type_str(&in_types[i], ts, sizeof ts));
      return VNRT_ERROR_INVALID_ARGUMENT;
    }
  }
  for (int32_t i = 0; out_names && i < n_outputs; ++i) {
    const char *name = out_names[i];
    if (!name) continue;
    if (!vn_name_valid(name)) {
      put_err(err, err_size,
              "result name '%s' is not valid (expected [A-Za-z_][A-Za-z0-9_.]*, not a keyword)",
              name);
      return VNRT_ERROR_INVALID_GRAPH;
    }
    bool dup = find_value(graph, name) >= 0;
    for (int32_t j = 0; j < i && !dup; ++j) dup = out_names[j] && strcmp(out_names[j], name) == 0;
    if (dup) {
      put_err(err, err_size, "redefinition: '%s' is already defined", name);
      return VNRT_ERROR_INVALID_GRAPH;
    }
  }

  vnrt_context *ctx = graph->ctx;
  vnrt_attr *norm = NULL;
  int32_t n_norm = 0;
  VN_RETURN_IF_ERROR(vn_attrs_normalize(ctx, op, attrs, n_attrs, &norm, &n_norm, err, err_size));

  vnrt_tensor_type out_types[VNRT_MAX_NODE_OUTPUTS];
  memset(out_types, 0, sizeof out_types);
  char msg[VN_MSG];
  msg[0] = '\0';
  vnrt_status st = info->infer(in_types, n_inputs, norm, n_norm, out_types, msg, sizeof msg);
  if (st != VNRT_OK) {
    put_err(err, err_size, "%s", msg[0] ? msg : "shape inference failed");
    vn_attrs_free(ctx, norm, n_norm);
    return st;
  }
  for (int32_t i = 0; i < n_outputs; ++i) {
    st = check_type(&out_types[i], "result", NULL, (int)i, err, err_size);
    if (st != VNRT_OK) {
      vn_attrs_free(ctx, norm, n_norm);
      return st;
    }
  }

  /* Reserve everything first so that nothing below can fail half-way. */
  char *names[VNRT_MAX_NODE_OUTPUTS] = {NULL};
  bool ok = graph->n_values < INT32_MAX - VNRT_MAX_NODE_OUTPUTS &&
            vn_grow(ctx, (void **)&graph->values, &graph->cap_values, graph->n_values + n_outputs,
                    sizeof *graph->values) &&
            vn_grow(ctx, (void **)&graph->nodes, &graph->cap_nodes, graph->n_nodes + 1,
                    sizeof *graph->nodes) &&
            index_reserve(graph, n_outputs);
  for (int32_t i = 0; ok && i < n_outputs; ++i) {
    if (out_names && out_names[i]) {
      names[i] = vn_strdup(ctx, out_names[i]);
    } else {
      /* '%' cannot start a user name, so generated names never collide with them. */
      char gen[24];
      snprintf(gen, sizeof gen, "%%%d", (int)(graph->n_values + i));
      names[i] = vn_strdup(ctx, gen);
    }
    ok = names[i] != NULL;
  }
  if (!ok) {
    for (int32_t i = 0; i < n_outputs; ++i) vn_free(ctx, names[i]);
    vn_attrs_free(ctx, norm, n_norm);
    put_err(err, err_size, "out of memory");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }

  int32_t node_id = graph->n_nodes++;
  vn_node *node = &graph->nodes[node_id];
  memset(node, 0, sizeof *node);
  node->op = op;
  node->n_inputs = n_inputs;
  for (int32_t i = 0; i < n_inputs; ++i) node->inputs[i] = inputs[i];
  node->n_outputs = n_outputs;
  node->n_attrs = n_norm;
  node->attrs = norm;
  for (int32_t i = 0; i < n_outputs; ++i) {
    int32_t id = graph->n_values++;
    vn_value *v = &graph->values[id];
    memset(v, 0, sizeof *v);
    v->name = names[i];
    v->type = out_types[i];
    v->kind = VN_VALUE_NODE;
    v->producer = node_id;
    v->slot = i;
    node->outputs[i] = id;
    if (out_values) out_values[i] = id;
  }
  vn_node_resolve_params(graph, node);
  index_commit(graph);
  return VNRT_OK;
}

vnrt_status vn_graph_add_node(vnrt_graph *graph, vnrt_op op, const int32_t *inputs,
                              int32_t n_inputs, const vnrt_attr *attrs, int32_t n_attrs,
                              const char *const *out_names, int32_t *out_values, int32_t n_outputs,
                              char *err, size_t err_size) {
  for (int32_t i = 0; out_values && i < n_outputs && i < VNRT_MAX_NODE_OUTPUTS; ++i) {
    out_values[i] = -1;
  }
  const char *op_name = vnrt_op_name(op);
  if (!graph) {
    put_err(err, err_size, "%s: graph is NULL", op_name ? op_name : "?");
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  char msg[VN_MSG];
  msg[0] = '\0';
  vnrt_status st = add_node(graph, op, inputs, n_inputs, attrs, n_attrs, out_names, out_values,
                            n_outputs, msg, sizeof msg);
  if (st != VNRT_OK) {
    if (op_name) {
      put_err(err, err_size, "%s: %s", op_name, msg);
    } else {
      put_err(err, err_size, "%s", msg);
    }
  }
  return st;
}

vnrt_status vnrt_graph_add_node(vnrt_graph *graph, vnrt_op op, const vnrt_value *inputs,
                                int32_t n_inputs, const vnrt_attr *attrs, int32_t n_attrs,
                                const char *const *out_names, vnrt_value *out_values,
                                int32_t n_outputs) {
  for (int32_t i = 0; out_values && i < n_outputs && i < VNRT_MAX_NODE_OUTPUTS; ++i) {
    out_values[i] = -1;
  }
  if (!graph) return vn_error(NULL, VNRT_ERROR_INVALID_ARGUMENT, "graph is NULL");
  /* The node is known by its first result, as a reader of the vnir text would name it. */
  char node_name[32];
  const char *name = out_names && n_outputs > 0 ? out_names[0] : NULL;
  if (!name) {
    snprintf(node_name, sizeof node_name, "%%%d", (int)graph->n_values);
    name = node_name;
  }
  const char *op_name = vnrt_op_name(op);
  char msg[VN_MSG];
  msg[0] = '\0';
  vnrt_status st = add_node(graph, op, inputs, n_inputs, attrs, n_attrs, out_names, out_values,
                            n_outputs, msg, sizeof msg);
  if (st != VNRT_OK) {
    return vn_error(graph->ctx, st, "node '%.200s' (%s): %s", name, op_name ? op_name : "?", msg);
  }
  return VNRT_OK;
}

/* ---- Outputs --------------------------------------------------------------------------- */

/* Makes output_mark cover every value. It is rebuilt from the output list when it grows
 * (to twice the values, so rebuilds are rare) and when it was never built. Returns false
 * when out of memory, leaving the old marks. */
static bool marks_reserve(vnrt_graph *graph) {
  if (graph->output_mark && graph->cap_output_mark >= graph->n_values) return true;
  int32_t cap = graph->n_values < INT32_MAX / 2 ? 2 * graph->n_values : INT32_MAX;
  if (cap < 64) cap = 64;
  uint8_t *marks = vn_malloc(graph->ctx, (size_t)cap);
  if (!marks) return false;
  memset(marks, 0, (size_t)cap);
  for (int32_t i = 0; i < graph->n_outputs; ++i) marks[graph->outputs[i]] = 1;
  vn_free(graph->ctx, graph->output_mark);
  graph->output_mark = marks;
  graph->cap_output_mark = cap;
  return true;
}

vnrt_status vn_graph_add_output(vnrt_graph *graph, int32_t value, char *err, size_t err_size) {
  if (!graph) {
    put_err(err, err_size, "output: graph is NULL");
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (value < 0 || value >= graph->n_values) {
    put_err(err, err_size, "output: %d is not a value of this graph", (int)value);
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  if (!marks_reserve(graph)) {
    put_err(err, err_size, "output: out of memory");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  if (graph->output_mark[value]) {
    put_err(err, err_size, "output: '%s' is already marked as an output",
            graph->values[value].name);
    return VNRT_ERROR_INVALID_GRAPH;
  }
  if (!vn_grow(graph->ctx, (void **)&graph->outputs, &graph->cap_outputs, graph->n_outputs + 1,
               sizeof *graph->outputs)) {
    put_err(err, err_size, "output: out of memory");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  graph->outputs[graph->n_outputs++] = value;
  graph->output_mark[value] = 1;
  return VNRT_OK;
}

vnrt_status vnrt_graph_add_output(vnrt_graph *graph, vnrt_value value) {
  if (!graph) return vn_error(NULL, VNRT_ERROR_INVALID_ARGUMENT, "graph is NULL");
  char err[VN_MSG];
  vnrt_status st = vn_graph_add_output(graph, value, err, sizeof err);
  if (st != VNRT_OK) return vn_error(graph->ctx, st, "%s", err);
  return VNRT_OK;
}

/* ---- Queries --------------------------------------------------------------------------- */

vnrt_status vnrt_graph_value_type(const vnrt_graph *graph, vnrt_value value,
                                  vnrt_tensor_type *out_type) {
  if (out_type) memset(out_type, 0, sizeof *out_type);
  if (!graph || !out_type) {
    return vn_error(graph ? graph->ctx : NULL, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_graph_value_type: %s is NULL", graph ? "out_type" : "graph");
  }
  if (value < 0 || value >= graph->n_values) {
    return vn_error(graph->ctx, VNRT_ERROR_NOT_FOUND,
                    "vnrt_graph_value_type: %d is not a value of this graph", (int)value);
  }
  *out_type = graph->values[value].type;
  return VNRT_OK;
}

const char *vnrt_graph_value_name(const vnrt_graph *graph, vnrt_value value) {
  if (!graph || value < 0 || value >= graph->n_values) return NULL;
  return graph->values[value].name;
}

vnrt_value vnrt_graph_find(const vnrt_graph *graph, const char *name) {
  if (!graph || !name) return -1;
  return find_value(graph, name);
}

int32_t vnrt_graph_input_count(const vnrt_graph *graph) { return graph ? graph->n_inputs : 0; }

vnrt_value vnrt_graph_input(const vnrt_graph *graph, int32_t i, int *out_is_param) {
  if (out_is_param) *out_is_param = 0;
  if (!graph || i < 0 || i >= graph->n_inputs) return -1;
  int32_t id = graph->inputs[i];
  if (out_is_param) *out_is_param = graph->values[id].kind == VN_VALUE_PARAM;
  return id;
}

int32_t vnrt_graph_output_count(const vnrt_graph *graph) { return graph ? graph->n_outputs : 0; }

vnrt_value vnrt_graph_output(const vnrt_graph *graph, int32_t i) {
  if (!graph || i < 0 || i >= graph->n_outputs) return -1;
  return graph->outputs[i];
}
