/* The vnir text reader: a hand-written lexer (vnir_lex.c) and parser (statements here,
 * attributes in vnir_attr.c) that builds a graph through the private builder, reporting the
 * first error as "file:line:col: message". */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vnir_parse.h"

/* Reserved words: never names. `state` and `update` also begin statements, but only where a
 * name follows them (`state h: f32[4]`, `update h = h2`); elsewhere, and before '=' or ','
 * (`state = relu(x)`), they are ordinary names, so files written before states existed that
 * use them as names keep their meaning. */
static const char *const kKeywords[] = {"vnir", "input", "param", "output"};

static bool tok_is_keyword(const parser *p, const token *t) {
  for (size_t k = 0; k < VN_ARRAY_SIZE(kKeywords); ++k)
    if (tok_is(p, t, kKeywords[k])) return true;
  return false;
}

/* ---- names ------------------------------------------------------------------------------ */

/* Records that value id was defined at line:col. */
static vnrt_status note_defined(parser *p, int32_t id, size_t line, size_t col) {
  if (id >= p->vinfo_cap) {
    int32_t old_cap = p->vinfo_cap;
    if (!vn_grow(p->ctx, (void **)&p->vinfo, &p->vinfo_cap, id + 1, sizeof *p->vinfo))
      return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnir: out of memory");
    memset(p->vinfo + old_cap, 0, (size_t)(p->vinfo_cap - old_cap) * sizeof *p->vinfo);
  }
  memset(&p->vinfo[id], 0, sizeof p->vinfo[id]);
  p->vinfo[id].line = line;
  p->vinfo[id].col = col;
  return VNRT_OK;
}

/* Checks that the current token is a name that may be defined here (not a keyword, not
 * already defined) and copies it into buf. */
static vnrt_status expect_new_name(parser *p, char *buf) {
  if (p->tok.kind != TK_NAME) return vn_vnir_expected(p, "a name");
  if (tok_is_keyword(p, &p->tok)) {
    char tmp[16];
    tok_copy(p, &p->tok, tmp);
    return PERR(p, &p->tok, "keyword '%s' cannot be used as a name", tmp);
  }
  tok_copy(p, &p->tok, buf);
  int32_t id = vnrt_graph_find(p->graph, buf);
  if (id >= 0)
    return PERR(p, &p->tok,
                "redefinition of '%s' (first defined at %zu:%zu; names are defined "
                "once)",
                buf, p->vinfo[id].line, p->vinfo[id].col);
  return VNRT_OK;
}

/* Resolves the current token as a use of an earlier value. */
static vnrt_status expect_value(parser *p, const char *what, int32_t *out_id) {
  char name[VNIR_NAME_MAX + 1];
  if (p->tok.kind != TK_NAME) return vn_vnir_expected(p, what);
  tok_copy(p, &p->tok, name);
  if (tok_is_keyword(p, &p->tok))
    return PERR(p, &p->tok, "keyword '%s' cannot be used as a name", name);
  *out_id = vnrt_graph_find(p->graph, name);
  if (*out_id < 0)
    return PERR(p, &p->tok,
                "undefined name '%s' (not defined on an earlier line: "
                "use before definition, or a cycle)",
                name);
  return VNRT_OK;
}

/* ---- statements ------------------------------------------------------------------------- */

static vnrt_status expect_eol(parser *p, const char *after) {
  if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF) return VNRT_OK;
  char buf[96];
  return PERR(p, &p->tok, "expected end of line after %s, got %s", after,
              vn_vnir_tok_describe(p, &p->tok, buf, sizeof buf));
}

/* TYPE: DTYPE[d0, d1, ...] */
static vnrt_status parse_type(parser *p, vnrt_tensor_type *type) {
  static const struct {
    const char *name;
    vnrt_dtype dtype;
  } dtypes[] = {{"f32", VNRT_F32},   {"f16", VNRT_F16},   {"bf16", VNRT_BF16}, {"i32", VNRT_I32},
                {"e4m3", VNRT_E4M3}, {"e8m0", VNRT_E8M0}, {"e2m1", VNRT_E2M1}};
  memset(type, 0, sizeof *type);
  token dt = p->tok;
  if (dt.kind != TK_NAME) return vn_vnir_expected(p, "a type such as f32[4, 64]");
  for (size_t k = 0; k < VN_ARRAY_SIZE(dtypes); ++k)
    if (tok_is(p, &dt, dtypes[k].name)) type->dtype = dtypes[k].dtype;
  if (type->dtype == VNRT_DTYPE_INVALID) {
    char buf[96];
    return PERR(p, &dt, "unknown dtype: expected f32, f16, bf16, i32, e4m3, e8m0 or e2m1, got %s",
                vn_vnir_tok_describe(p, &dt, buf, sizeof buf));
  }
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind != TK_LBRACKET)
    return vn_vnir_expected(p, "'[' and the dimensions after the dtype");
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind != TK_RBRACKET) {
    for (;;) {
      if (p->tok.kind != TK_INT) return vn_vnir_expected(p, "a dimension (a non-negative integer)");
      if (p->tok.i < 0)
        return PERR(p, &p->tok, "negative dimension %lld: expected a non-negative integer",
                    (long long)p->tok.i);
      if (type->rank == VNRT_MAX_DIMS)
        return PERR(p, &p->tok, "too many dimensions: a type has at most %d", VNRT_MAX_DIMS);
      type->dims[type->rank++] = p->tok.i;
      VN_RETURN_IF_ERROR(vn_vnir_next(p));
      if (p->tok.kind == TK_RBRACKET) break;
      if (p->tok.kind != TK_COMMA) return vn_vnir_expected(p, "',' or ']' in the dimension list");
      VN_RETURN_IF_ERROR(vn_vnir_next(p));
    }
  }
  /* The element count bound keeps every later byte-size product far from overflow. */
  int64_t numel = 1;
  bool huge = false;
  for (int32_t d = 0; d < type->rank; ++d) {
    int64_t dim = type->dims[d];
    if (dim > VNIR_NUMEL_MAX || (dim != 0 && numel > VNIR_NUMEL_MAX / dim))
      huge = true;
    else
      numel *= dim;
  }
  if (huge) {
    char buf[160];
    return PERR(p, &dt, "type %s has too many elements (at most 2^48 = %lld)",
                vn_type_str(type, buf, sizeof buf), (long long)VNIR_NUMEL_MAX);
  }
  return vn_vnir_next(p);
}

/* input NAME: TYPE  /  param NAME: TYPE  /  state NAME: TYPE  (the keyword has been consumed) */
static vnrt_status parse_decl(parser *p, vn_value_kind kind) {
  char name[VNIR_NAME_MAX + 1];
  VN_RETURN_IF_ERROR(expect_new_name(p, name));
  token name_tok = p->tok;
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind != TK_COLON) return vn_vnir_expected(p, "':' and a type after the name");
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  vnrt_tensor_type type;
  VN_RETURN_IF_ERROR(parse_type(p, &type));
  VN_RETURN_IF_ERROR(expect_eol(p, "the type"));
  char err[VN_ERROR_MAX];
  err[0] = '\0';
  int32_t id = -1;
  vnrt_status st =
      kind == VN_VALUE_STATE
          ? vn_graph_add_state(p->graph, name, &type, &id, err, sizeof err)
          : vn_graph_add_input(p->graph, name, &type, kind == VN_VALUE_PARAM, &id, err, sizeof err);
  if (st != VNRT_OK)
    return vn_vnir_error_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH,
                            name_tok.line, name_tok.col, "%s",
                            err[0] ? err : "declaration rejected");
  return note_defined(p, id, name_tok.line, name_tok.col);
}

/* output NAME[, NAME ...]  (the keyword has been consumed) */
static vnrt_status parse_output(parser *p) {
  for (;;) {
    int32_t id;
    token t = p->tok;
    VN_RETURN_IF_ERROR(expect_value(p, "the name of a value to output", &id));
    if (p->vinfo[id].is_output) {
      char name[VNIR_NAME_MAX + 1];
      tok_copy(p, &t, name);
      return PERR(p, &t, "'%s' is already an output (a value is output once)", name);
    }
    char err[VN_ERROR_MAX];
    err[0] = '\0';
    vnrt_status st = vn_graph_add_output(p->graph, id, err, sizeof err);
    if (st != VNRT_OK)
      return vn_vnir_error_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH,
                              t.line, t.col, "%s", err[0] ? err : "output rejected");
    p->vinfo[id].is_output = true;
    ++p->n_outputs;
    VN_RETURN_IF_ERROR(vn_vnir_next(p));
    if (p->tok.kind != TK_COMMA) break;
    VN_RETURN_IF_ERROR(vn_vnir_next(p));
  }
  return expect_eol(p, "the output names");
}

static const char *kind_name(vn_value_kind kind) {
  switch (kind) {
    case VN_VALUE_INPUT:
      return "an input";
    case VN_VALUE_PARAM:
      return "a param";
    case VN_VALUE_NODE:
      return "a node's result";
    case VN_VALUE_STATE:
      return "a state";
  }
  return "a value";
}

/* update NAME = VALUE  (the keyword has been consumed): the state NAME takes VALUE after each
 * run. VALUE must already be defined, like any argument. */
static vnrt_status parse_update(parser *p) {
  token state_tok = p->tok;
  int32_t state = -1, value = -1;
  char name[VNIR_NAME_MAX + 1];
  VN_RETURN_IF_ERROR(expect_value(p, "the name of a state to update", &state));
  tok_copy(p, &state_tok, name);
  const vn_value *sv = &p->graph->values[state];
  if (sv->kind != VN_VALUE_STATE)
    return PERR(p, &state_tok,
                "'%s' is not a state (it is %s, defined at %zu:%zu); declare it "
                "with 'state %s: TYPE' to update it",
                name, kind_name(sv->kind), p->vinfo[state].line, p->vinfo[state].col, name);
  if (p->vinfo[state].update_line > 0)
    return PERR(p, &state_tok,
                "state '%s' is already updated (first at %zu:%zu; a state takes "
                "one value after each run)",
                name, p->vinfo[state].update_line, p->vinfo[state].update_col);
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind != TK_EQUALS) return vn_vnir_expected(p, "'=' and a value after the state name");
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  token value_tok = p->tok;
  VN_RETURN_IF_ERROR(expect_value(p, "the name of the value the state takes", &value));
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  VN_RETURN_IF_ERROR(expect_eol(p, "the value"));
  char err[VN_ERROR_MAX];
  err[0] = '\0';
  vnrt_status st = vn_graph_set_state_update(p->graph, state, value, err, sizeof err);
  if (st != VNRT_OK)
    return vn_vnir_error_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH,
                            value_tok.line, value_tok.col, "%s", err[0] ? err : "update rejected");
  p->vinfo[state].update_line = state_tok.line;
  p->vinfo[state].update_col = state_tok.col;
  ++p->n_updates;
  return VNRT_OK;
}

static const char *plural(int64_t n, const char *one, const char *many) {
  return n == 1 ? one : many;
}

/* NAME[, NAME ...] = OP(ARG, ..., KEY=VALUE, ...)  (the current token is the first name) */
static vnrt_status parse_node(parser *p) {
  token lhs_tok[VNRT_MAX_NODE_OUTPUTS];
  int32_t n_lhs = 0;
  for (;;) {
    if (n_lhs == VNRT_MAX_NODE_OUTPUTS)
      return PERR(p, &p->tok, "too many result names (an op has at most %d results)",
                  VNRT_MAX_NODE_OUTPUTS);
    VN_RETURN_IF_ERROR(expect_new_name(p, p->lhs[n_lhs]));
    for (int32_t k = 0; k < n_lhs; ++k)
      if (strcmp(p->lhs[k], p->lhs[n_lhs]) == 0)
        return PERR(p, &p->tok,
                    "redefinition of '%s' (first defined at %zu:%zu; names are "
                    "defined once)",
                    p->lhs[k], lhs_tok[k].line, lhs_tok[k].col);
    lhs_tok[n_lhs++] = p->tok;
    VN_RETURN_IF_ERROR(vn_vnir_next(p));
    if (p->tok.kind == TK_EQUALS) break;
    if (p->tok.kind != TK_COMMA) {
      if (n_lhs == 1) return vn_vnir_expected(p, "'=' and an op (or a statement keyword)");
      return vn_vnir_expected(p, "',' or '=' after a result name");
    }
    VN_RETURN_IF_ERROR(vn_vnir_next(p));
  }
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  token op_tok = p->tok;
  if (op_tok.kind != TK_NAME) return vn_vnir_expected(p, "an op name after '='");
  char op_name[VNIR_NAME_MAX + 1];
  tok_copy(p, &op_tok, op_name);
  vnrt_op op = vnrt_op_from_name(op_name);
  const vn_op_info *info = op == VNRT_OP_INVALID ? NULL : vn_op_info_get(op);
  if (!info) return PERR(p, &op_tok, "unknown op '%s'", op_name);
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind != TK_LPAREN) return vn_vnir_expected(p, "'(' after the op name");
  VN_RETURN_IF_ERROR(vn_vnir_next(p));

  int32_t inputs[VNRT_MAX_NODE_INPUTS];
  int64_t n_args = 0;
  token extra_arg = {0}; /* the first argument beyond the op's maximum */
  vn_vnir_attrs_clear(p);
  if (p->tok.kind != TK_RPAREN) {
    for (;;) {
      if (p->tok.kind != TK_NAME) {
        if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
          return vn_vnir_expected(p, "an argument (unterminated argument list)");
        return vn_vnir_expected(p, "an argument (a value name or KEY=VALUE)");
      }
      token name_tok = p->tok;
      VN_RETURN_IF_ERROR(vn_vnir_next(p));
      if (p->tok.kind == TK_EQUALS) {
        VN_RETURN_IF_ERROR(vn_vnir_next(p));
        VN_RETURN_IF_ERROR(vn_vnir_parse_attr(p, info, &name_tok));
      } else {
        if (p->n_attrs > 0)
          return PERR(p, &name_tok,
                      "positional argument after attributes: expected "
                      "KEY=VALUE (arguments come first)");
        int32_t id = -1;
        token after = p->tok;
        p->tok = name_tok; /* resolve with the name as the current token for positions */
        vnrt_status st = expect_value(p, "a value name", &id);
        p->tok = after;
        VN_RETURN_IF_ERROR(st);
        if (n_args < info->max_inputs)
          inputs[n_args] = id;
        else if (n_args == info->max_inputs)
          extra_arg = name_tok;
        ++n_args;
      }
      if (p->tok.kind == TK_RPAREN) break;
      if (p->tok.kind != TK_COMMA) {
        if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
          return vn_vnir_expected(p, "',' or ')' (unterminated argument list)");
        return vn_vnir_expected(p, "',' or ')' after an argument");
      }
      VN_RETURN_IF_ERROR(vn_vnir_next(p));
    }
  }
  token close = p->tok;
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  VN_RETURN_IF_ERROR(expect_eol(p, "')'"));

  if (n_args < info->min_inputs || n_args > info->max_inputs) {
    char want[64];
    if (info->min_inputs == info->max_inputs)
      snprintf(want, sizeof want, "%d %s", info->min_inputs,
               plural(info->min_inputs, "input", "inputs"));
    else
      snprintf(want, sizeof want, "%d to %d inputs", info->min_inputs, info->max_inputs);
    const token *at = n_args > info->max_inputs ? &extra_arg : &close;
    return PERR(p, at, "wrong arity: op '%s' takes %s, got %lld", info->name, want,
                (long long)n_args);
  }
  if (n_lhs != info->n_outputs)
    return PERR(p, &lhs_tok[0], "wrong number of results: op '%s' has %d %s, but %d %s given",
                info->name, info->n_outputs, plural(info->n_outputs, "result", "results"), n_lhs,
                plural(n_lhs, "name is", "names are"));
  for (int32_t k = 0; k < info->n_attrs; ++k) {
    if (!info->attrs[k].required) continue;
    bool given = false;
    for (int32_t j = 0; j < p->n_attrs; ++j) given |= p->attrs[j].key == info->attrs[k].key;
    if (!given)
      return PERR(p, &op_tok, "missing required attribute '%s' for op '%s'", info->attrs[k].key,
                  info->name);
  }

  const char *out_names[VNRT_MAX_NODE_OUTPUTS];
  int32_t out_values[VNRT_MAX_NODE_OUTPUTS];
  for (int32_t k = 0; k < n_lhs; ++k) out_names[k] = p->lhs[k];
  char err[VN_ERROR_MAX];
  err[0] = '\0';
  vnrt_status st = vn_graph_add_node(p->graph, op, inputs, (int32_t)n_args, p->attrs, p->n_attrs,
                                     out_names, out_values, n_lhs, err, sizeof err);
  vn_vnir_attrs_clear(p);
  if (st != VNRT_OK)
    return vn_vnir_error_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH,
                            op_tok.line, op_tok.col, "%s", err[0] ? err : "op rejected");
  for (int32_t k = 0; k < n_lhs; ++k)
    VN_RETURN_IF_ERROR(note_defined(p, out_values[k], lhs_tok[k].line, lhs_tok[k].col));
  return VNRT_OK;
}

/* The kind of the token after the current one, without consuming anything. */
static vnrt_status peek_kind(parser *p, tok_kind *out_kind) {
  size_t pos = p->pos, line = p->line, line_start = p->line_start;
  token saved = p->tok;
  vnrt_status st = vn_vnir_next(p);
  *out_kind = p->tok.kind;
  p->pos = pos, p->line = line, p->line_start = line_start;
  p->tok = saved;
  return st;
}

static vnrt_status skip_newlines(parser *p) {
  while (p->tok.kind == TK_NEWLINE) VN_RETURN_IF_ERROR(vn_vnir_next(p));
  return VNRT_OK;
}

static vnrt_status parse_all(parser *p) {
  /* A UTF-8 byte order mark is tolerated at the very start (some editors write one). */
  if (p->length >= 3 && memcmp(p->text, "\xEF\xBB\xBF", 3) == 0) p->pos = p->line_start = 3;
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  VN_RETURN_IF_ERROR(skip_newlines(p));
  if (!tok_is(p, &p->tok, "vnir"))
    return vn_vnir_expected(p, "'vnir 1' as the first statement (missing header)");
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind != TK_INT)
    return vn_vnir_expected(p, "the format version after 'vnir' ('vnir 1')");
  if (p->tok.i != 1)
    return PERR(p, &p->tok, "unsupported vnir version %lld: expected 'vnir 1'",
                (long long)p->tok.i);
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  VN_RETURN_IF_ERROR(expect_eol(p, "'vnir 1'"));
  for (;;) {
    VN_RETURN_IF_ERROR(skip_newlines(p));
    token t = p->tok;
    if (t.kind == TK_EOF) break;
    if (t.kind != TK_NAME)
      return vn_vnir_expected(
          p, "a statement (input, param, state, output, update or NAME = op(...))");
    bool is_state = tok_is(p, &t, "state"), is_update = tok_is(p, &t, "update");
    if (is_state || is_update) {
      tok_kind after;
      VN_RETURN_IF_ERROR(peek_kind(p, &after));
      if (after == TK_EQUALS || after == TK_COMMA) {
        VN_RETURN_IF_ERROR(parse_node(p)); /* a value named `state` or `update` */
        continue;
      }
      VN_RETURN_IF_ERROR(vn_vnir_next(p));
      if (is_state)
        VN_RETURN_IF_ERROR(parse_decl(p, VN_VALUE_STATE));
      else
        VN_RETURN_IF_ERROR(parse_update(p));
      continue;
    }
    if (!tok_is_keyword(p, &t)) {
      VN_RETURN_IF_ERROR(parse_node(p));
      continue;
    }
    char kw[16];
    tok_copy(p, &t, kw);
    VN_RETURN_IF_ERROR(vn_vnir_next(p));
    /* `input = relu(x)` or `output, y = topk(...)`: a keyword where a result name goes */
    if (p->tok.kind == TK_EQUALS || p->tok.kind == TK_COMMA)
      return PERR(p, &t, "keyword '%s' cannot be used as a name", kw);
    if (strcmp(kw, "vnir") == 0)
      return PERR(p, &t, "duplicate header: expected 'vnir 1' only as the first statement");
    if (strcmp(kw, "output") == 0)
      VN_RETURN_IF_ERROR(parse_output(p));
    else
      VN_RETURN_IF_ERROR(parse_decl(p, strcmp(kw, "param") == 0 ? VN_VALUE_PARAM : VN_VALUE_INPUT));
  }
  /* A graph that computes nothing is almost always a truncated file; one that only carries
   * state forward (a cache being filled) has effects through its updates. */
  if (p->n_outputs == 0 && p->n_updates == 0)
    return PERR(p, &p->tok,
                "no outputs: expected at least one 'output NAME' or 'update NAME = VALUE' "
                "statement");
  return VNRT_OK;
}

vnrt_status vnrt_graph_parse(vnrt_context *ctx, const char *text, size_t length,
                             const char *filename, vnrt_graph **out_graph) {
  if (out_graph) *out_graph = NULL;
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!out_graph || (!text && length > 0))
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_graph_parse: out_graph is NULL or text is NULL with length %zu", length);
  parser *p = vn_calloc(ctx, 1, sizeof *p);
  if (!p) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_graph_parse: out of memory");
  p->ctx = ctx;
  p->text = text ? text : "";
  p->length = length;
  p->filename = filename ? filename : "<string>";
  p->line = 1;
  vnrt_status st = vnrt_graph_create(ctx, &p->graph);
  if (st == VNRT_OK) st = parse_all(p);
  vn_vnir_attrs_clear(p);
  if (st == VNRT_OK) {
    *out_graph = p->graph;
  } else {
    vnrt_graph_destroy(p->graph);
  }
  vn_free(ctx, p->vinfo);
  vn_free(ctx, p);
  return st;
}

vnrt_status vnrt_graph_parse_file(vnrt_context *ctx, const char *path, vnrt_graph **out_graph) {
  if (out_graph) *out_graph = NULL;
  if (!ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  if (!path || !out_graph)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "vnrt_graph_parse_file: path or out_graph is NULL");
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    return vn_error(ctx, e == ENOENT ? VNRT_ERROR_NOT_FOUND : VNRT_ERROR_IO, "%s: cannot open: %s",
                    path, strerror(e));
  }
  /* Read in growing chunks rather than trusting a seek-reported size (pipes, /proc). */
  size_t cap = 1 << 16, len = 0;
  char *buf = vn_malloc(ctx, cap);
  vnrt_status st = VNRT_OK;
  if (!buf) st = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
  while (st == VNRT_OK) {
    if (len == cap) {
      char *grown = cap <= SIZE_MAX / 2 ? vn_realloc(ctx, buf, cap * 2) : NULL;
      if (!grown) {
        st = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory reading the file", path);
        break;
      }
      buf = grown;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) {
      if (ferror(f)) st = vn_error(ctx, VNRT_ERROR_IO, "%s: read error: %s", path, strerror(errno));
      break;
    }
  }
  fclose(f);
  if (st == VNRT_OK) st = vnrt_graph_parse(ctx, buf, len, path, out_graph);
  vn_free(ctx, buf);
  return st;
}
