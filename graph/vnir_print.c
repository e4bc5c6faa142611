/* The vnir text writer: prints a graph in canonical vnir (docs/vnir.md, "Canonical form"),
 * which the parser reads back to the same graph. */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "op_table.h"

/* Names longer than this are rejected by the parser (VNIR_NAME_MAX in vnir_parse.h). */
#define VNIR_NAME_MAX 1024

typedef struct out_buf {
  vnrt_context *ctx;
  char *data;
  size_t len, cap;
  bool oom;
} out_buf;

static void out_printf(out_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(out_buf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = true;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len <= (size_t)n) {
      if (cap > SIZE_MAX / 2) {
        b->oom = true;
        return;
      }
      cap *= 2;
    }
    char *data = vn_realloc(b->ctx, b->data, cap);
    if (!data) {
      b->oom = true;
      return;
    }
    b->data = data;
    b->cap = cap;
  }
}

/* Writes v as the shortest of %.15g/%.16g/%.17g that reads back to the same double, with '.'
 * as the decimal point whatever the C locale, a compact exponent ("1e-6", not "1e-06"), and
 * always a '.' or an 'e' so that the lexer sees a float, not an integer. */
static void format_double(double v, char *buf, size_t size) {
  char raw[64];
  for (int prec = 15; prec <= 17; ++prec) {
    snprintf(raw, sizeof raw, "%.*g", prec, v);
    if (strtod(raw, NULL) == v) break;
  }
  const char *point = localeconv()->decimal_point;
  size_t point_len = point && point[0] ? strlen(point) : 1;
  size_t o = 0;
  bool has_point = false, has_exp = false;
  for (size_t k = 0; raw[k] && o + 1 < size;) {
    if (point && point[0] && strncmp(raw + k, point, point_len) == 0 && !has_exp) {
      buf[o++] = '.';
      has_point = true;
      k += point_len;
    } else if (raw[k] == 'e') {
      has_exp = true;
      buf[o++] = raw[k++];
      if (raw[k] == '+')
        ++k;
      else if (raw[k] == '-' && o + 1 < size)
        buf[o++] = raw[k++];
      while (raw[k] == '0' && raw[k + 1] != '\0') ++k;
    } else {
      buf[o++] = raw[k++];
    }
  }
  buf[o] = '\0';
  if (!has_point && !has_exp && o + 2 < size) strcat(buf, ".0");
}

/* Whether s lexes as a vnir name (or word): [A-Za-z_][A-Za-z0-9_.]* within the length bound. */
static bool is_word(const char *s) {
  size_t n = 0;
  if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return false;
  for (; s[n]; ++n) {
    char c = s[n];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.'))
      return false;
  }
  return n <= VNIR_NAME_MAX;
}

/* ---- printable names -------------------------------------------------------------------- */

/* A set of strings (open addressing, power-of-two capacity) to keep generated names unique. */
typedef struct name_set {
  const char **slots;
  size_t cap;
} name_set;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; ++s) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static bool set_has(const name_set *set, const char *s) {
  for (size_t k = hash_str(s) & (set->cap - 1);; k = (k + 1) & (set->cap - 1)) {
    if (!set->slots[k]) return false;
    if (strcmp(set->slots[k], s) == 0) return true;
  }
}

static void set_add(name_set *set, const char *s) {
  size_t k = hash_str(s) & (set->cap - 1);
  while (set->slots[k]) k = (k + 1) & (set->cap - 1);
  set->slots[k] = s;
}

/* names[i] is what value i is printed as: its own name when vnir can spell it, otherwise
 * (e.g. the builder's generated "%3") a fresh "v3", "v3_", ... that no other value uses.
 * Generated names are owned by *owned (freed by the caller); the rest are borrowed. */
static vnrt_status make_names(const vnrt_graph *g, const char ***out_names, char ***out_owned) {
  vnrt_context *ctx = g->ctx;
  int32_t n = g->n_values;
  const char **names = vn_calloc(ctx, n ? (size_t)n : 1, sizeof *names);
  char **owned = vn_calloc(ctx, n ? (size_t)n : 1, sizeof *owned);
  name_set set = {0};
  bool need = false;
  vnrt_status st = VNRT_OK;
  if (!names || !owned) goto oom;
  for (int32_t i = 0; i < n; ++i) {
    if (vn_name_valid(g->values[i].name) && is_word(g->values[i].name))
      names[i] = g->values[i].name;
    else
      need = true;
  }
  if (need) {
    set.cap = 16;
    while (set.cap < 2 * (size_t)n + 2) set.cap *= 2;
    set.slots = vn_calloc(ctx, set.cap, sizeof *set.slots);
    if (!set.slots) goto oom;
    for (int32_t i = 0; i < n; ++i)
      if (names[i]) set_add(&set, names[i]);
    for (int32_t i = 0; i < n; ++i) {
      if (names[i]) continue;
      char base[32];
      int len = snprintf(base, sizeof base, "v%d", i);
      /* appending '_' always terminates: the set is finite */
      char *name = vn_malloc(ctx, (size_t)len + 1 + (size_t)n + 1);
      if (!name) goto oom;
      memcpy(name, base, (size_t)len + 1);
      while (set_has(&set, name)) strcat(name, "_");
      owned[i] = name;
      names[i] = name;
      set_add(&set, name);
    }
  }
  vn_free(ctx, set.slots);
  *out_names = names;
  *out_owned = owned;
  return st;
oom:
  vn_free(ctx, set.slots);
  if (owned)
    for (int32_t i = 0; i < n; ++i) vn_free(ctx, owned[i]);
  vn_free(ctx, owned);
  vn_free(ctx, names);
  return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_graph_print: out of memory");
}

/* ---- printing --------------------------------------------------------------------------- */

static vnrt_status print_attr(out_buf *b, const vnrt_graph *g, int32_t node, const vnrt_attr *a,
                              bool first) {
  char num[64];
  out_printf(b, "%s%s=", first ? "" : ", ", a->key);
  switch (a->kind) {
    case VNRT_ATTR_INT:
      out_printf(b, "%lld", (long long)a->i);
      break;
    case VNRT_ATTR_FLOAT:
      if (!isfinite(a->f))
        return vn_error(g->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "vnrt_graph_print: attribute '%s' of node %d is %g, which vnir cannot "
                        "spell (only finite numbers)",
                        a->key, node, a->f);
      format_double(a->f, num, sizeof num);
      out_printf(b, "%s", num);
      break;
    case VNRT_ATTR_INTS:
    case VNRT_ATTR_FLOATS:
      out_printf(b, "[");
      for (int32_t k = 0; k < a->count; ++k) {
        if (a->kind == VNRT_ATTR_INTS) {
          out_printf(b, "%s%lld", k ? ", " : "", (long long)a->ints[k]);
        } else {
          if (!isfinite(a->floats[k]))
            return vn_error(g->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                            "vnrt_graph_print: attribute '%s' of node %d holds %g, which vnir "
                            "cannot spell (only finite numbers)",
                            a->key, node, a->floats[k]);
          format_double(a->floats[k], num, sizeof num);
          out_printf(b, "%s%s", k ? ", " : "", num);
        }
      }
      out_printf(b, "]");
      break;
    case VNRT_ATTR_WORD:
      if (!is_word(a->word))
        return vn_error(g->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                        "vnrt_graph_print: attribute '%s' of node %d is not a vnir word", a->key,
                        node);
      out_printf(b, "%s", a->word);
      break;
    default:
      return vn_error(g->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_graph_print: attribute '%s' of node %d has unknown kind %d", a->key,
                      node, (int)a->kind);
  }
  return VNRT_OK;
}

static vnrt_status print_graph(out_buf *b, const vnrt_graph *g, const char **names) {
  char type[160];
  out_printf(b, "vnir 1\n");
  for (int32_t i = 0; i < g->n_inputs; ++i) {
    const vn_value *v = &g->values[g->inputs[i]];
    out_printf(b, "%s %s: %s\n", v->kind == VN_VALUE_PARAM ? "param" : "input", names[g->inputs[i]],
               vn_type_str(&v->type, type, sizeof type));
  }
  for (int32_t i = 0; i < g->n_states; ++i) {
    const vn_value *v = &g->values[g->states[i]];
    out_printf(b, "state %s: %s\n", names[g->states[i]], vn_type_str(&v->type, type, sizeof type));
  }
  for (int32_t n = 0; n < g->n_nodes; ++n) {
    const vn_node *node = &g->nodes[n];
    const char *op = vnrt_op_name(node->op);
    if (!op)
      return vn_error(g->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_graph_print: node %d has unknown op %d", n, (int)node->op);
    for (int32_t k = 0; k < node->n_outputs; ++k)
      out_printf(b, "%s%s", k ? ", " : "", names[node->outputs[k]]);
    out_printf(b, " = %s(", op);
    for (int32_t k = 0; k < node->n_inputs; ++k)
      out_printf(b, "%s%s", k ? ", " : "", names[node->inputs[k]]);
    for (int32_t k = 0; k < node->n_attrs; ++k)
      VN_RETURN_IF_ERROR(print_attr(b, g, n, &node->attrs[k], node->n_inputs + k == 0));
    /* The inferred result types, as a comment, help a reader and do not affect parsing. */
    out_printf(b, ")  #");
    for (int32_t k = 0; k < node->n_outputs; ++k)
      out_printf(b, "%s %s", k ? "," : "",
                 vn_type_str(&g->values[node->outputs[k]].type, type, sizeof type));
    out_printf(b, "\n");
  }
  /* Updates come after every node, so the value each one names is already defined. */
  for (int32_t i = 0; i < g->n_states; ++i) {
    int32_t next = g->values[g->states[i]].next;
    if (next < 0) continue;
    if (next >= g->n_values)
      return vn_error(g->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "vnrt_graph_print: state %d takes value %d, which is not in the graph", i,
                      (int)next);
    out_printf(b, "update %s = %s\n", names[g->states[i]], names[next]);
  }
  if (g->n_outputs > 0) {
    out_printf(b, "output ");
    for (int32_t i = 0; i < g->n_outputs; ++i)
      out_printf(b, "%s%s", i ? ", " : "", names[g->outputs[i]]);
    out_printf(b, "\n");
  }
  return VNRT_OK;
}

vnrt_status vnrt_graph_print(const vnrt_graph *graph, char **out_text) {
  if (out_text) *out_text = NULL;
  if (!graph) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_context *ctx = graph->ctx;
  if (!out_text)
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_graph_print: out_text is NULL");
  const char **names = NULL;
  char **owned = NULL;
  VN_RETURN_IF_ERROR(make_names(graph, &names, &owned));
  out_buf b = {.ctx = ctx};
  vnrt_status st = print_graph(&b, graph, names);
  if (st == VNRT_OK && b.oom)
    st = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "vnrt_graph_print: out of memory");
  for (int32_t i = 0; i < graph->n_values; ++i) vn_free(ctx, owned[i]);
  vn_free(ctx, owned);
  vn_free(ctx, names);
  if (st != VNRT_OK) {
    vn_free(ctx, b.data);
    return st;
  }
  *out_text = b.data;
  return VNRT_OK;
}
