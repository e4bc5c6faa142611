/* The vnir reader's private parts, shared by its lexer (vnir_lex.c), its attribute parser
 * (vnir_attr.c) and its statement parser (vnir_parse.c): limits, tokens, the parser state and
 * the functions one of them lends the others. */
#ifndef VN_VNIR_PARSE_H_
#define VN_VNIR_PARSE_H_

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

/* ---- errors (vnir_lex.c) --------------------------------------------------------------- */

/* Reports "file:line:col: message" through the context and returns status. */
vnrt_status vn_vnir_error_at(parser *p, vnrt_status status, size_t line, size_t col,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define PERR(p, t, ...) \
  vn_vnir_error_at((p), VNRT_ERROR_INVALID_GRAPH, (t)->line, (t)->col, __VA_ARGS__)

/* A short human description of a token for "expected X, got Y" messages. */
const char *vn_vnir_tok_describe(const parser *p, const token *t, char *buf, size_t size);

/* "expected WHAT, got <current token>" at the current token. */
vnrt_status vn_vnir_expected(parser *p, const char *what);

/* ---- lexer (vnir_lex.c) ---------------------------------------------------------------- */

/* Reads the next token into p->tok. A newline is a token (statements are lines). */
vnrt_status vn_vnir_next(parser *p);

/* Whether t is the name `word`. */
static inline bool tok_is(const parser *p, const token *t, const char *word) {
  size_t n = strlen(word);
  return t->kind == TK_NAME && t->len == n && memcmp(p->text + t->start, word, n) == 0;
}

/* Copies a name token into buf (VNIR_NAME_MAX + 1 bytes). */
static inline void tok_copy(const parser *p, const token *t, char *buf) {
  memcpy(buf, p->text + t->start, t->len);
  buf[t->len] = '\0';
}

/* ---- attributes (vnir_attr.c) ---------------------------------------------------------- */

/* Frees the attributes of the statement being parsed and empties the list. */
void vn_vnir_attrs_clear(parser *p);

/* KEY=VALUE; the current token is the value, key_tok the key. Checks the key and the value's
 * kind against the op's schema so that the error points at the right column. */
vnrt_status vn_vnir_parse_attr(parser *p, const vn_op_info *info, const token *key_tok);

#endif /* VN_VNIR_PARSE_H_ */
