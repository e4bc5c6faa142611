/* The vnir lexer: tokens from UTF-8 text, and the reader's error messages. */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "vnir_parse.h"

/* ---- errors ----------------------------------------------------------------------------- */

vnrt_status vn_vnir_error_at(parser *p, vnrt_status status, size_t line, size_t col,
                             const char *fmt, ...) {
  char msg[VN_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return vn_error(p->ctx, status, "%s:%zu:%zu: %s", p->filename, line, col, msg);
}

/* A short human description of a token for "expected X, got Y" messages. */
const char *vn_vnir_tok_describe(const parser *p, const token *t, char *buf, size_t size) {
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
vnrt_status vn_vnir_expected(parser *p, const char *what) {
  char buf[96];
  return PERR(p, &p->tok, "expected %s, got %s", what,
              vn_vnir_tok_describe(p, &p->tok, buf, sizeof buf));
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
  return vn_vnir_error_at(p, VNRT_ERROR_INVALID_GRAPH, p->line, col_of(p, pos), "%s", msg);
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
vnrt_status vn_vnir_next(parser *p) {
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
