/* The vnir text reader: a hand-written lexer and parser that builds a graph through the
 * private builder, reporting the first error as "file:line:col: message". */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "op_table.h"

/* Limits that keep a hostile file from costing more than its size: names and numbers are
 * copied into bounded buffers, lists are capped, and a type may not describe more elements
 * than any machine could hold (so later size arithmetic cannot overflow). vnir_print.c
 * renames values whose names are longer than VNIR_NAME_MAX. */
#define VNIR_NAME_MAX 1024
#define VNIR_NUMBER_MAX 256
#define VNIR_LIST_MAX (1 << 20)
#define VNIR_NUMEL_MAX ((int64_t)1 << 48)
#define VNIR_ATTRS_MAX 16

typedef enum tok_kind {
  TK_EOF,
  TK_NEWLINE,
  TK_NAME,
  TK_INT,
  TK_FLOAT,
  TK_LPAREN,
  TK_RPAREN,
  TK_LBRACKET,
  TK_RBRACKET,
  TK_COMMA,
  TK_COLON,
  TK_EQUALS,
} tok_kind;

typedef struct token {
  tok_kind kind;
  size_t start, len; /* the token's bytes in the text */
  size_t line, col;  /* 1-based; col counts bytes (non-ASCII appears only in comments) */
  int64_t i;         /* TK_INT */
  double f;          /* TK_FLOAT */
} token;

/* Where a value was defined (for "first defined at" messages), whether it is an output, and
 * for a state where its update was given (update_line 0: not yet). */
typedef struct value_info {
  size_t line, col;
  size_t update_line, update_col;
  bool is_output;
} value_info;

typedef struct parser {
  vnrt_context *ctx;
  const char *text;
  size_t length;
  const char *filename;
  size_t pos, line, line_start; /* lexer state */
  token tok;                    /* the current token */
  vnrt_graph *graph;            /* names are looked up in the graph's own index */
  value_info *vinfo;            /* by value id */
  int32_t vinfo_cap;
  int32_t n_outputs, n_updates;
  /* the attributes of the statement being parsed; lists and words are owned here */
  vnrt_attr attrs[VNIR_ATTRS_MAX];
  int32_t n_attrs;
  char lhs[VNRT_MAX_NODE_OUTPUTS][VNIR_NAME_MAX + 1];
} parser;

/* Reserved words: never names. `state` and `update` also begin statements, but only where a
 * name follows them (`state h: f32[4]`, `update h = h2`); elsewhere, and before '=' or ','
 * (`state = relu(x)`), they are ordinary names, so files written before states existed that
 * use them as names keep their meaning. */
static const char *const kKeywords[] = {"vnir", "input", "param", "output"};

/* ---- errors ----------------------------------------------------------------------------- */

static vnrt_status perr_at(parser *p, vnrt_status status, size_t line, size_t col, const char *fmt,
                           ...) __attribute__((format(printf, 5, 6)));

static vnrt_status perr_at(parser *p, vnrt_status status, size_t line, size_t col, const char *fmt,
                           ...) {
  char msg[VN_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return vn_error(p->ctx, status, "%s:%zu:%zu: %s", p->filename, line, col, msg);
}

#define PERR(p, t, ...) perr_at((p), VNRT_ERROR_INVALID_GRAPH, (t)->line, (t)->col, __VA_ARGS__)

/* A short human description of a token for "expected X, got Y" messages. */
static const char *tok_describe(const parser *p, const token *t, char *buf, size_t size) {
  switch (t->kind) {
    case TK_EOF:
      return "end of file";
    case TK_NEWLINE:
      return "end of line";
    case TK_NAME:
    case TK_INT:
    case TK_FLOAT: {
      const char *what = t->kind == TK_NAME ? "name" : "number";
      int n = t->len > 40 ? 40 : (int)t->len;
      snprintf(buf, size, "%s '%.*s%s'", what, n, p->text + t->start, t->len > 40 ? "..." : "");
      return buf;
    }
    case TK_LPAREN:
      return "'('";
    case TK_RPAREN:
      return "')'";
    case TK_LBRACKET:
      return "'['";
    case TK_RBRACKET:
      return "']'";
    case TK_COMMA:
      return "','";
    case TK_COLON:
      return "':'";
    case TK_EQUALS:
      return "'='";
  }
  return "token";
}

/* "expected WHAT, got <current token>" at the current token. */
static vnrt_status expected(parser *p, const char *what) {
  char buf[96];
  return PERR(p, &p->tok, "expected %s, got %s", what, tok_describe(p, &p->tok, buf, sizeof buf));
}

/* ---- lexer ------------------------------------------------------------------------------ */

static bool is_name_start(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(unsigned char c) { return is_name_start(c) || is_digit(c) || c == '.'; }

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *out_cp) {
  uint32_t cp;
  size_t len;
  if (s[0] < 0x80) {
    *out_cp = s[0];
    return 1;
  } else if (s[0] >= 0xC2 && s[0] <= 0xDF) {
    len = 2, cp = s[0] & 0x1Fu;
  } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
    len = 3, cp = s[0] & 0x0Fu;
  } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
    len = 4, cp = s[0] & 0x07u;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[k] & 0x3Fu);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  *out_cp = cp;
  return len;
}

static size_t col_of(const parser *p, size_t pos) { return pos - p->line_start + 1; }

static vnrt_status lex_error(parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vnrt_status lex_error(parser *p, size_t pos, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return perr_at(p, VNRT_ERROR_INVALID_GRAPH, p->line, col_of(p, pos), "%s", msg);
}

/* Rejects a byte that can start no token, saying what it is. */
static vnrt_status bad_byte(parser *p, size_t pos) {
  const unsigned char *s = (const unsigned char *)p->text + pos;
  uint32_t cp;
  if (s[0] == 0) return lex_error(p, pos, "NUL byte in text (vnir is UTF-8 text)");
  if (s[0] >= 0x80) {
    if (utf8_len(s, p->length - pos, &cp) == 0)
      return lex_error(p, pos, "invalid UTF-8 byte 0x%02X", s[0]);
    return lex_error(p, pos,
                     "unexpected character U+%04X (non-ASCII text is allowed only in "
                     "comments)",
                     (unsigned)cp);
  }
  if (s[0] < 0x20 || s[0] == 0x7F)
    return lex_error(p, pos, "unexpected control character 0x%02X", s[0]);
  return lex_error(p, pos, "unexpected character '%c'", s[0]);
}

/* Skips a comment from '#' to the end of the line, checking that it is UTF-8 text. */
static vnrt_status skip_comment(parser *p) {
  const unsigned char *s = (const unsigned char *)p->text;
  while (p->pos < p->length && s[p->pos] != '\n') {
    uint32_t cp;
    if (s[p->pos] == 0) return lex_error(p, p->pos, "NUL byte in comment (vnir is UTF-8 text)");
    size_t n = utf8_len(s + p->pos, p->length - p->pos, &cp);
    if (n == 0) return lex_error(p, p->pos, "invalid UTF-8 byte 0x%02X in comment", s[p->pos]);
    p->pos += n;
  }
  return VNRT_OK;
}

/* Lexes a number: -?[0-9]+(.[0-9]*)?([eE][+-]?[0-9]+)? ; integers must fit int64. */
static vnrt_status lex_number(parser *p, token *t) {
  const char *s = p->text;
  size_t pos = p->pos, end = p->length;
  bool neg = false, is_float = false;
  if (s[pos] == '-') {
    neg = true;
    ++pos;
    if (pos >= end || !is_digit((unsigned char)s[pos]))
      return lex_error(p, p->pos, "expected a digit after '-'");
  }
  size_t digits = pos;
  while (pos < end && is_digit((unsigned char)s[pos])) ++pos;
  size_t digits_end = pos;
  if (pos < end && s[pos] == '.') {
    is_float = true;
    ++pos;
    while (pos < end && is_digit((unsigned char)s[pos])) ++pos;
  }
  if (pos < end && (s[pos] == 'e' || s[pos] == 'E')) {
    is_float = true;
    ++pos;
    if (pos < end && (s[pos] == '+' || s[pos] == '-')) ++pos;
    if (pos >= end || !is_digit((unsigned char)s[pos]))
      return lex_error(p, p->pos, "malformed number '%.*s': expected digits in the exponent",
                       (int)(pos - p->pos > 40 ? 40 : pos - p->pos), s + p->pos);
    while (pos < end && is_digit((unsigned char)s[pos])) ++pos;
  }
  if (pos < end && is_name_char((unsigned char)s[pos])) {
    size_t bad = pos;
    while (bad < end && is_name_char((unsigned char)s[bad])) ++bad;
    return lex_error(p, p->pos, "malformed number '%.*s'",
                     (int)(bad - p->pos > 40 ? 40 : bad - p->pos), s + p->pos);
  }
  t->start = p->pos;
  t->len = pos - p->pos;
  if (!is_float) {
    uint64_t mag = 0;
    bool overflow = false;
    for (size_t k = digits; k < digits_end; ++k) {
      uint64_t d = (uint64_t)(s[k] - '0');
      if (mag > (UINT64_MAX - d) / 10) {
        overflow = true;
        break;
      }
      mag = mag * 10 + d;
    }
    if (overflow || mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
      return lex_error(p, p->pos, "integer overflow: '%.*s%s' does not fit int64",
                       (int)(t->len > 40 ? 40 : t->len), s + p->pos, t->len > 40 ? "..." : "");
    t->kind = TK_INT;
    t->i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
  } else {
    /* strtod needs a NUL-terminated string and honours the C locale's decimal point, so it
     * gets a bounded copy with '.' replaced by the locale's (single-byte) point. */
    char buf[VNIR_NUMBER_MAX + 1];
    if (t->len > VNIR_NUMBER_MAX)
      return lex_error(p, p->pos, "number longer than %d characters", VNIR_NUMBER_MAX);
    memcpy(buf, s + p->pos, t->len);
    buf[t->len] = '\0';
    const char *point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.' && point[1] == '\0') {
      char *dot = strchr(buf, '.');
      if (dot) *dot = point[0];
    }
    char *endp = NULL;
    double v = strtod(buf, &endp);
    if (endp != buf + t->len)
      return lex_error(p, p->pos, "malformed number '%.*s'", (int)(t->len > 40 ? 40 : t->len),
                       s + p->pos);
    if (!isfinite(v))
      return lex_error(p, p->pos, "float literal '%.*s' is out of range for a double",
                       (int)(t->len > 40 ? 40 : t->len), s + p->pos);
    t->kind = TK_FLOAT;
    t->f = v;
  }
  p->pos = pos;
  return VNRT_OK;
}

/* Reads the next token into p->tok. A newline is a token (statements are lines). */
static vnrt_status next(parser *p) {
  const unsigned char *s = (const unsigned char *)p->text;
  token *t = &p->tok;
  for (;;) {
    memset(t, 0, sizeof *t);
    t->line = p->line;
    t->col = col_of(p, p->pos);
    t->start = p->pos;
    if (p->pos >= p->length) {
      t->kind = TK_EOF;
      return VNRT_OK;
    }
    unsigned char c = s[p->pos];
    if (c == ' ' || c == '\t') {
      ++p->pos;
      continue;
    }
    if (c == '\r') {
      if (p->pos + 1 < p->length && s[p->pos + 1] == '\n') {
        ++p->pos;
        continue;
      }
      return lex_error(p, p->pos, "carriage return not followed by a line feed");
    }
    if (c == '#') {
      VN_RETURN_IF_ERROR(skip_comment(p));
      continue;
    }
    if (c == '\n') {
      t->kind = TK_NEWLINE;
      t->len = 1;
      ++p->pos;
      ++p->line;
      p->line_start = p->pos;
      return VNRT_OK;
    }
    if (is_name_start(c)) {
      size_t end = p->pos + 1;
      while (end < p->length && is_name_char(s[end])) ++end;
      if (end - p->pos > VNIR_NAME_MAX)
        return lex_error(p, p->pos, "name longer than %d bytes", VNIR_NAME_MAX);
      t->kind = TK_NAME;
      t->len = end - p->pos;
      p->pos = end;
      return VNRT_OK;
    }
    if (is_digit(c) || c == '-') return lex_number(p, t);
    switch (c) {
      case '(':
        t->kind = TK_LPAREN;
        break;
      case ')':
        t->kind = TK_RPAREN;
        break;
      case '[':
        t->kind = TK_LBRACKET;
        break;
      case ']':
        t->kind = TK_RBRACKET;
        break;
      case ',':
        t->kind = TK_COMMA;
        break;
      case ':':
        t->kind = TK_COLON;
        break;
      case '=':
        t->kind = TK_EQUALS;
        break;
      default:
        return bad_byte(p, p->pos);
    }
    t->len = 1;
    ++p->pos;
    return VNRT_OK;
  }
}

static bool tok_is(const parser *p, const token *t, const char *word) {
  size_t n = strlen(word);
  return t->kind == TK_NAME && t->len == n && memcmp(p->text + t->start, word, n) == 0;
}

static bool tok_is_keyword(const parser *p, const token *t) {
  for (size_t k = 0; k < VN_ARRAY_SIZE(kKeywords); ++k)
    if (tok_is(p, t, kKeywords[k])) return true;
  return false;
}

/* Copies a name token into buf (VNIR_NAME_MAX + 1 bytes). */
static void tok_copy(const parser *p, const token *t, char *buf) {
  memcpy(buf, p->text + t->start, t->len);
  buf[t->len] = '\0';
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
  if (p->tok.kind != TK_NAME) return expected(p, "a name");
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
  if (p->tok.kind != TK_NAME) return expected(p, what);
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
              tok_describe(p, &p->tok, buf, sizeof buf));
}

/* TYPE: DTYPE[d0, d1, ...] */
static vnrt_status parse_type(parser *p, vnrt_tensor_type *type) {
  static const struct {
    const char *name;
    vnrt_dtype dtype;
  } dtypes[] = {{"f32", VNRT_F32}, {"f16", VNRT_F16}, {"bf16", VNRT_BF16}, {"i32", VNRT_I32}};
  memset(type, 0, sizeof *type);
  token dt = p->tok;
  if (dt.kind != TK_NAME) return expected(p, "a type such as f32[4, 64]");
  for (size_t k = 0; k < VN_ARRAY_SIZE(dtypes); ++k)
    if (tok_is(p, &dt, dtypes[k].name)) type->dtype = dtypes[k].dtype;
  if (type->dtype == VNRT_DTYPE_INVALID) {
    char buf[96];
    return PERR(p, &dt, "unknown dtype: expected f32, f16, bf16 or i32, got %s",
                tok_describe(p, &dt, buf, sizeof buf));
  }
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind != TK_LBRACKET) return expected(p, "'[' and the dimensions after the dtype");
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind != TK_RBRACKET) {
    for (;;) {
      if (p->tok.kind != TK_INT) return expected(p, "a dimension (a non-negative integer)");
      if (p->tok.i < 0)
        return PERR(p, &p->tok, "negative dimension %lld: expected a non-negative integer",
                    (long long)p->tok.i);
      if (type->rank == VNRT_MAX_DIMS)
        return PERR(p, &p->tok, "too many dimensions: a type has at most %d", VNRT_MAX_DIMS);
      type->dims[type->rank++] = p->tok.i;
      VN_RETURN_IF_ERROR(next(p));
      if (p->tok.kind == TK_RBRACKET) break;
      if (p->tok.kind != TK_COMMA) return expected(p, "',' or ']' in the dimension list");
      VN_RETURN_IF_ERROR(next(p));
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
  return next(p);
}

/* input NAME: TYPE  /  param NAME: TYPE  /  state NAME: TYPE  (the keyword has been consumed) */
static vnrt_status parse_decl(parser *p, vn_value_kind kind) {
  char name[VNIR_NAME_MAX + 1];
  VN_RETURN_IF_ERROR(expect_new_name(p, name));
  token name_tok = p->tok;
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind != TK_COLON) return expected(p, "':' and a type after the name");
  VN_RETURN_IF_ERROR(next(p));
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
    return perr_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH, name_tok.line,
                   name_tok.col, "%s", err[0] ? err : "declaration rejected");
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
      return perr_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH, t.line,
                     t.col, "%s", err[0] ? err : "output rejected");
    p->vinfo[id].is_output = true;
    ++p->n_outputs;
    VN_RETURN_IF_ERROR(next(p));
    if (p->tok.kind != TK_COMMA) break;
    VN_RETURN_IF_ERROR(next(p));
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
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind != TK_EQUALS) return expected(p, "'=' and a value after the state name");
  VN_RETURN_IF_ERROR(next(p));
  token value_tok = p->tok;
  VN_RETURN_IF_ERROR(expect_value(p, "the name of the value the state takes", &value));
  VN_RETURN_IF_ERROR(next(p));
  VN_RETURN_IF_ERROR(expect_eol(p, "the value"));
  char err[VN_ERROR_MAX];
  err[0] = '\0';
  vnrt_status st = vn_graph_set_state_update(p->graph, state, value, err, sizeof err);
  if (st != VNRT_OK)
    return perr_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH,
                   value_tok.line, value_tok.col, "%s", err[0] ? err : "update rejected");
  p->vinfo[state].update_line = state_tok.line;
  p->vinfo[state].update_col = state_tok.col;
  ++p->n_updates;
  return VNRT_OK;
}

static void attrs_clear(parser *p) {
  for (int32_t k = 0; k < p->n_attrs; ++k) {
    vn_free(p->ctx, (void *)p->attrs[k].ints);
    vn_free(p->ctx, (void *)p->attrs[k].floats);
    vn_free(p->ctx, (void *)p->attrs[k].word);
  }
  memset(p->attrs, 0, (size_t)p->n_attrs * sizeof p->attrs[0]); /* the rest are still zero */
  p->n_attrs = 0;
}

static const char *kind_text(vnrt_attr_kind kind) {
  switch (kind) {
    case VNRT_ATTR_INT:
      return "an integer";
    case VNRT_ATTR_FLOAT:
      return "a number";
    case VNRT_ATTR_INTS:
      return "a list of integers such as [1, 0]";
    case VNRT_ATTR_FLOATS:
      return "a list of numbers such as [0.5, 1]";
    case VNRT_ATTR_WORD:
      return "a word";
  }
  return "a value";
}

/* "[" number, ... "]" for an INTS or FLOATS attribute; the current token is '['. */
static vnrt_status parse_list(parser *p, const vn_op_info *info, const vn_attr_schema *se,
                              vnrt_attr *a) {
  bool want_ints = se->kind == VNRT_ATTR_INTS;
  int32_t cap = 0;
  void *items = NULL;
  a->kind = se->kind;
  /* the attribute owns items from the first allocation on, so errors free it */
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind == TK_RBRACKET) return next(p);
  for (;;) {
    if (p->tok.kind != TK_INT && p->tok.kind != TK_FLOAT) {
      if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
        return expected(p, "a number in the list (unterminated list)");
      return expected(p, "a number in the list");
    }
    if (want_ints && p->tok.kind != TK_INT) {
      char buf[96];
      return PERR(p, &p->tok,
                  "bad value for attribute '%s' of %s: expected an integer in "
                  "the list, got %s",
                  se->key, info->name, tok_describe(p, &p->tok, buf, sizeof buf));
    }
    if (a->count == VNIR_LIST_MAX)
      return PERR(p, &p->tok, "list too long (at most %d values)", VNIR_LIST_MAX);
    if (a->count == cap) {
      size_t elem = want_ints ? sizeof(int64_t) : sizeof(double);
      if (!vn_grow(p->ctx, &items, &cap, a->count + 1, elem))
        return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnir: out of memory");
      if (want_ints)
        a->ints = items;
      else
        a->floats = items;
    }
    if (want_ints)
      ((int64_t *)items)[a->count] = p->tok.i;
    else
      ((double *)items)[a->count] = p->tok.kind == TK_INT ? (double)p->tok.i : p->tok.f;
    ++a->count;
    VN_RETURN_IF_ERROR(next(p));
    if (p->tok.kind == TK_RBRACKET) return next(p);
    if (p->tok.kind == TK_COMMA) {
      VN_RETURN_IF_ERROR(next(p));
      continue;
    }
    if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
      return expected(p, "',' or ']' (unterminated list)");
    return expected(p, "',' or ']' in the list");
  }
}

/* KEY=VALUE; the current token is the value, key_tok the key. Checks the key and the value's
 * kind against the op's schema so that the error points at the right column. */
static vnrt_status parse_attr(parser *p, const vn_op_info *info, const token *key_tok) {
  char key[VNIR_NAME_MAX + 1];
  tok_copy(p, key_tok, key);
  const vn_attr_schema *se = NULL;
  for (int32_t k = 0; k < info->n_attrs; ++k)
    if (strcmp(info->attrs[k].key, key) == 0) se = &info->attrs[k];
  if (!se) {
    char list[512] = "";
    size_t used = 0;
    for (int32_t k = 0; k < info->n_attrs && used < sizeof list; ++k)
      used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "",
                               info->attrs[k].key);
    if (info->n_attrs == 0)
      return PERR(p, key_tok, "unknown attribute '%s': op '%s' takes no attributes", key,
                  info->name);
    return PERR(p, key_tok, "unknown attribute '%s' for op '%s' (expected one of: %s)", key,
                info->name, list);
  }
  for (int32_t k = 0; k < p->n_attrs; ++k)
    if (p->attrs[k].key == se->key) return PERR(p, key_tok, "duplicate attribute '%s'", key);
  if (p->n_attrs == VNIR_ATTRS_MAX) return PERR(p, key_tok, "too many attributes");
  vnrt_attr *a = &p->attrs[p->n_attrs++];
  memset(a, 0, sizeof *a);
  a->key = se->key;
  a->kind = se->kind;
  char buf[96];
  token v = p->tok;
  switch (v.kind) {
    case TK_INT:
    case TK_FLOAT:
      if (se->kind == VNRT_ATTR_INT && v.kind == TK_INT) {
        a->i = v.i;
      } else if (se->kind == VNRT_ATTR_FLOAT) {
        a->f = v.kind == TK_INT ? (double)v.i : v.f;
      } else {
        break;
      }
      return next(p);
    case TK_LBRACKET:
      if (se->kind != VNRT_ATTR_INTS && se->kind != VNRT_ATTR_FLOATS) break;
      return parse_list(p, info, se, a);
    case TK_NAME:
      if (se->kind != VNRT_ATTR_WORD) break;
      if (se->words) {
        bool ok = false;
        char list[256] = "";
        size_t used = 0;
        for (int32_t k = 0; se->words[k]; ++k) {
          if (tok_is(p, &v, se->words[k])) ok = true;
          if (used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "",
                                     se->words[k]);
        }
        if (!ok)
          return PERR(p, &v, "bad value for attribute '%s' of %s: expected one of %s, got %s", key,
                      info->name, list, tok_describe(p, &v, buf, sizeof buf));
      }
      {
        char *word = vn_malloc(p->ctx, v.len + 1);
        if (!word) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnir: out of memory");
        tok_copy(p, &v, word);
        a->word = word;
      }
      return next(p);
    case TK_NEWLINE:
    case TK_EOF:
    case TK_LPAREN:
    case TK_RPAREN:
    case TK_RBRACKET:
    case TK_COMMA:
    case TK_COLON:
    case TK_EQUALS:
      return expected(p, "an attribute value (a number, a list or a word) after '='");
  }
  return PERR(p, &v, "bad value for attribute '%s' of %s: expected %s, got %s%s", key, info->name,
              kind_text(se->kind),
              v.kind == TK_LBRACKET ? "a list" : tok_describe(p, &v, buf, sizeof buf),
              (se->kind == VNRT_ATTR_INTS && v.kind == TK_INT) ? " (write a one-element list "
                                                                 "as [N])"
                                                               : "");
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
    VN_RETURN_IF_ERROR(next(p));
    if (p->tok.kind == TK_EQUALS) break;
    if (p->tok.kind != TK_COMMA) {
      if (n_lhs == 1) return expected(p, "'=' and an op (or a statement keyword)");
      return expected(p, "',' or '=' after a result name");
    }
    VN_RETURN_IF_ERROR(next(p));
  }
  VN_RETURN_IF_ERROR(next(p));
  token op_tok = p->tok;
  if (op_tok.kind != TK_NAME) return expected(p, "an op name after '='");
  char op_name[VNIR_NAME_MAX + 1];
  tok_copy(p, &op_tok, op_name);
  vnrt_op op = vnrt_op_from_name(op_name);
  const vn_op_info *info = op == VNRT_OP_INVALID ? NULL : vn_op_info_get(op);
  if (!info) return PERR(p, &op_tok, "unknown op '%s'", op_name);
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind != TK_LPAREN) return expected(p, "'(' after the op name");
  VN_RETURN_IF_ERROR(next(p));

  int32_t inputs[VNRT_MAX_NODE_INPUTS];
  int64_t n_args = 0;
  token extra_arg = {0}; /* the first argument beyond the op's maximum */
  attrs_clear(p);
  if (p->tok.kind != TK_RPAREN) {
    for (;;) {
      if (p->tok.kind != TK_NAME) {
        if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
          return expected(p, "an argument (unterminated argument list)");
        return expected(p, "an argument (a value name or KEY=VALUE)");
      }
      token name_tok = p->tok;
      VN_RETURN_IF_ERROR(next(p));
      if (p->tok.kind == TK_EQUALS) {
        VN_RETURN_IF_ERROR(next(p));
        VN_RETURN_IF_ERROR(parse_attr(p, info, &name_tok));
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
          return expected(p, "',' or ')' (unterminated argument list)");
        return expected(p, "',' or ')' after an argument");
      }
      VN_RETURN_IF_ERROR(next(p));
    }
  }
  token close = p->tok;
  VN_RETURN_IF_ERROR(next(p));
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
  attrs_clear(p);
  if (st != VNRT_OK)
    return perr_at(p, st == VNRT_ERROR_OUT_OF_MEMORY ? st : VNRT_ERROR_INVALID_GRAPH, op_tok.line,
                   op_tok.col, "%s", err[0] ? err : "op rejected");
  for (int32_t k = 0; k < n_lhs; ++k)
    VN_RETURN_IF_ERROR(note_defined(p, out_values[k], lhs_tok[k].line, lhs_tok[k].col));
  return VNRT_OK;
}

/* The kind of the token after the current one, without consuming anything. */
static vnrt_status peek_kind(parser *p, tok_kind *out_kind) {
  size_t pos = p->pos, line = p->line, line_start = p->line_start;
  token saved = p->tok;
  vnrt_status st = next(p);
  *out_kind = p->tok.kind;
  p->pos = pos, p->line = line, p->line_start = line_start;
  p->tok = saved;
  return st;
}

static vnrt_status skip_newlines(parser *p) {
  while (p->tok.kind == TK_NEWLINE) VN_RETURN_IF_ERROR(next(p));
  return VNRT_OK;
}

static vnrt_status parse_all(parser *p) {
  /* A UTF-8 byte order mark is tolerated at the very start (some editors write one). */
  if (p->length >= 3 && memcmp(p->text, "\xEF\xBB\xBF", 3) == 0) p->pos = p->line_start = 3;
  VN_RETURN_IF_ERROR(next(p));
  VN_RETURN_IF_ERROR(skip_newlines(p));
  if (!tok_is(p, &p->tok, "vnir"))
    return expected(p, "'vnir 1' as the first statement (missing header)");
  VN_RETURN_IF_ERROR(next(p));
  if (p->tok.kind != TK_INT) return expected(p, "the format version after 'vnir' ('vnir 1')");
  if (p->tok.i != 1)
    return PERR(p, &p->tok, "unsupported vnir version %lld: expected 'vnir 1'",
                (long long)p->tok.i);
  VN_RETURN_IF_ERROR(next(p));
  VN_RETURN_IF_ERROR(expect_eol(p, "'vnir 1'"));
  for (;;) {
    VN_RETURN_IF_ERROR(skip_newlines(p));
    token t = p->tok;
    if (t.kind == TK_EOF) break;
    if (t.kind != TK_NAME)
      return expected(p, "a statement (input, param, state, output, update or NAME = op(...))");
    bool is_state = tok_is(p, &t, "state"), is_update = tok_is(p, &t, "update");
    if (is_state || is_update) {
      tok_kind after;
      VN_RETURN_IF_ERROR(peek_kind(p, &after));
      if (after == TK_EQUALS || after == TK_COMMA) {
        VN_RETURN_IF_ERROR(parse_node(p)); /* a value named `state` or `update` */
        continue;
      }
      VN_RETURN_IF_ERROR(next(p));
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
    VN_RETURN_IF_ERROR(next(p));
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
  attrs_clear(p);
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
