/* The vnir attribute parser: KEY=VALUE arguments checked against the op's schema. */
#include <stdio.h>

#include "vnir_parse.h"

/* ---- attributes ------------------------------------------------------------------------- */

void vn_vnir_attrs_clear(parser *p) {
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
  VN_RETURN_IF_ERROR(vn_vnir_next(p));
  if (p->tok.kind == TK_RBRACKET) return vn_vnir_next(p);
  for (;;) {
    if (p->tok.kind != TK_INT && p->tok.kind != TK_FLOAT) {
      if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
        return vn_vnir_expected(p, "a number in the list (unterminated list)");
      return vn_vnir_expected(p, "a number in the list");
    }
    if (want_ints && p->tok.kind != TK_INT) {
      char buf[96];
      return PERR(p, &p->tok,
                  "bad value for attribute '%s' of %s: expected an integer in "
                  "the list, got %s",
                  se->key, info->name, vn_vnir_tok_describe(p, &p->tok, buf, sizeof buf));
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
    VN_RETURN_IF_ERROR(vn_vnir_next(p));
    if (p->tok.kind == TK_RBRACKET) return vn_vnir_next(p);
    if (p->tok.kind == TK_COMMA) {
      VN_RETURN_IF_ERROR(vn_vnir_next(p));
      continue;
    }
    if (p->tok.kind == TK_NEWLINE || p->tok.kind == TK_EOF)
      return vn_vnir_expected(p, "',' or ']' (unterminated list)");
    return vn_vnir_expected(p, "',' or ']' in the list");
  }
}

/* KEY=VALUE; the current token is the value, key_tok the key. Checks the key and the value's
 * kind against the op's schema so that the error points at the right column. */
vnrt_status vn_vnir_parse_attr(parser *p, const vn_op_info *info, const token *key_tok) {
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
      return vn_vnir_next(p);
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
                      info->name, list, vn_vnir_tok_describe(p, &v, buf, sizeof buf));
      }
      {
        char *word = vn_malloc(p->ctx, v.len + 1);
        if (!word) return vn_error(p->ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnir: out of memory");
        tok_copy(p, &v, word);
        a->word = word;
      }
      return vn_vnir_next(p);
    case TK_NEWLINE:
    case TK_EOF:
    case TK_LPAREN:
    case TK_RPAREN:
    case TK_RBRACKET:
    case TK_COMMA:
    case TK_COLON:
    case TK_EQUALS:
      return vn_vnir_expected(p, "an attribute value (a number, a list or a word) after '='");
  }
  return PERR(p, &v, "bad value for attribute '%s' of %s: expected %s, got %s%s", key, info->name,
              kind_text(se->kind),
              v.kind == TK_LBRACKET ? "a list" : vn_vnir_tok_describe(p, &v, buf, sizeof buf),
              (se->kind == VNRT_ATTR_INTS && v.kind == TK_INT) ? " (write a one-element list "
                                                                 "as [N])"
                                                               : "");
}
