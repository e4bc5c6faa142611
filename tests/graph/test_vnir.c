/* Tests of the vnir reader and printer: the good corpus parses and round-trips to a fixed
 * point, every bad file fails at the expected line:col with the expected words, and random
 * mutations and truncations never crash and always give a positioned error or a graph. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "graph.h"
#include "test_util.h"

/* ---- corpus files ----------------------------------------------------------------------- */

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The corpus directory: $VNRT_TEST_SOURCE_DIR/tests/graph/corpus if set, else next to this
 * file. meson compiles it as a path relative to the build dir (../tests/graph/test_vnir.c)
 * and may run the test from the build dir or a subdirectory, so parents are tried too. */
static const char *corpus_dir(void) {
  static char dir[4096];
  if (dir[0]) return dir;
  const char *src = getenv("VNRT_TEST_SOURCE_DIR");
  if (src && src[0]) {
    snprintf(dir, sizeof dir, "%s/tests/graph/corpus", src);
    return dir;
  }
  char here[2048];
  snprintf(here, sizeof here, "%s", __FILE__);
  char *slash = strrchr(here, '/');
  if (slash)
    *slash = '\0';
  else
    snprintf(here, sizeof here, ".");
  static const char *const prefixes[] = {"", "../", "../../", "../../../", "../../../../"};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; ++i) {
    char good[4200];
    snprintf(dir, sizeof dir, "%s%s/corpus", here[0] == '/' ? "" : prefixes[i], here);
    snprintf(good, sizeof good, "%s/good", dir);
    if (is_dir(good)) return dir;
  }
  ck_abort_msg("corpus not found from %s; set VNRT_TEST_SOURCE_DIR", __FILE__);
  return NULL;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted paths of the .vnir files in corpus/<sub>; returns the count. */
static int list_corpus(const char *sub, char ***out_paths) {
  char dirpath[4200];
  snprintf(dirpath, sizeof dirpath, "%s/%s", corpus_dir(), sub);
  DIR *d = opendir(dirpath);
  ck_assert_msg(d != NULL, "cannot open %s: %s", dirpath, strerror(errno));
  char **paths = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 5, ".vnir") != 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      paths = realloc(paths, (size_t)cap * sizeof *paths);
      ck_assert(paths != NULL);
    }
    paths[n] = malloc(strlen(dirpath) + len + 2);
    ck_assert(paths[n] != NULL);
    sprintf(paths[n], "%s/%s", dirpath, e->d_name);
    ++n;
  }
  closedir(d);
  qsort(paths, (size_t)n, sizeof *paths, cmp_str);
  *out_paths = paths;
  return n;
}

static void free_paths(char **paths, int n) {
  for (int i = 0; i < n; ++i) free(paths[i]);
  free(paths);
}

static char *read_all(const char *path, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len == cap) buf = realloc(buf, cap *= 2);
    ck_assert(buf != NULL);
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  *out_len = len;
  return buf;
}

/* An exact-size heap copy, so that a read past `len` is a heap overflow that valgrind or
 * ASan reports. */
static char *exact_copy(const char *text, size_t len) {
  char *p = malloc(len ? len : 1);
  ck_assert(p != NULL);
  memcpy(p, text, len);
  return p;
}

/* ---- graph comparison ------------------------------------------------------------------- */

/* Returns NULL if a and b are the same graph, else a description of the first difference.
 * Value ids may differ (the canonical form declares every input before the first node), so
 * values are matched by role: inputs by declaration position, results by node and slot. Then
 * kinds, types, ops, wiring, normalised attributes (floats bit for bit), outputs and, with
 * names == true, names must agree (false: generated names are respelled by the printer). */
static const char *graph_diff(const vnrt_graph *a, const vnrt_graph *b, bool names, char *buf,
                              size_t size) {
  if (a->n_values != b->n_values || a->n_nodes != b->n_nodes || a->n_inputs != b->n_inputs ||
      a->n_outputs != b->n_outputs || a->n_states != b->n_states) {
    snprintf(buf, size,
             "counts differ: values %d/%d nodes %d/%d inputs %d/%d outputs %d/%d states %d/%d",
             a->n_values, b->n_values, a->n_nodes, b->n_nodes, a->n_inputs, b->n_inputs,
             a->n_outputs, b->n_outputs, a->n_states, b->n_states);
    return buf;
  }
  int32_t *map = malloc((size_t)(a->n_values + 1) * sizeof *map);
  ck_assert(map != NULL);
  for (int32_t i = 0; i < a->n_values; ++i) map[i] = -1;
  for (int32_t i = 0; i < a->n_inputs; ++i) map[a->inputs[i]] = b->inputs[i];
  for (int32_t i = 0; i < a->n_states; ++i) map[a->states[i]] = b->states[i];
  for (int32_t n = 0; n < a->n_nodes; ++n)
    for (int32_t k = 0; k < a->nodes[n].n_outputs && k < b->nodes[n].n_outputs; ++k)
      map[a->nodes[n].outputs[k]] = b->nodes[n].outputs[k];
  const char *result = NULL;
  for (int32_t i = 0; i < a->n_values && !result; ++i) {
    if (map[i] < 0) {
      result = (snprintf(buf, size, "value %s has no counterpart", a->values[i].name), buf);
      break;
    }
    const vn_value *va = &a->values[i], *vb = &b->values[map[i]];
    bool same = va->kind == vb->kind && va->slot == vb->slot && va->type.dtype == vb->type.dtype &&
                va->type.rank == vb->type.rank && (!names || strcmp(va->name, vb->name) == 0);
    for (int32_t d = 0; same && d < va->type.rank; ++d) same = va->type.dims[d] == vb->type.dims[d];
    if (!same) result = (snprintf(buf, size, "value %s differs from %s", va->name, vb->name), buf);
  }
  for (int32_t n = 0; n < a->n_nodes && !result; ++n) {
    const vn_node *na = &a->nodes[n], *nb = &b->nodes[n];
    bool same = na->op == nb->op && na->n_inputs == nb->n_inputs &&
                na->n_outputs == nb->n_outputs && na->n_attrs == nb->n_attrs;
    for (int32_t k = 0; same && k < na->n_inputs; ++k) same = map[na->inputs[k]] == nb->inputs[k];
    for (int32_t k = 0; same && k < na->n_attrs; ++k) {
      const vnrt_attr *x = &na->attrs[k], *y = &nb->attrs[k];
      same = strcmp(x->key, y->key) == 0 && x->kind == y->kind && x->count == y->count;
      if (!same) break;
      switch (x->kind) {
        case VNRT_ATTR_INT:
          same = x->i == y->i;
          break;
        case VNRT_ATTR_FLOAT:
          same = memcmp(&x->f, &y->f, sizeof x->f) == 0;
          break;
        case VNRT_ATTR_INTS:
          for (int32_t j = 0; same && j < x->count; ++j) same = x->ints[j] == y->ints[j];
          break;
        case VNRT_ATTR_FLOATS:
          for (int32_t j = 0; same && j < x->count; ++j)
            same = memcmp(&x->floats[j], &y->floats[j], sizeof(double)) == 0;
          break;
        case VNRT_ATTR_WORD:
          same = strcmp(x->word, y->word) == 0;
          break;
      }
    }
    if (!same) result = (snprintf(buf, size, "node %d (%s) differs", n, vnrt_op_name(na->op)), buf);
  }
  for (int32_t i = 0; i < a->n_outputs && !result; ++i)
    if (map[a->outputs[i]] != b->outputs[i])
      result = (snprintf(buf, size, "output %d differs", i), buf);
  /* states: declaration order and the value each takes after a run */
  for (int32_t i = 0; i < a->n_states && !result; ++i) {
    int32_t na = a->values[a->states[i]].next, nb = b->values[b->states[i]].next;
    if ((na < 0) != (nb < 0) || (na >= 0 && map[na] != nb))
      result = (snprintf(buf, size, "the update of state %s differs", a->values[a->states[i]].name),
                buf);
  }
  free(map);
  return result;
}

/* Prints g, re-parses the text, checks the same graph comes back and that printing it again
 * gives the same text (the canonical form is a fixed point). Returns the first text. */
static char *check_round_trip(vnrt_context *ctx, const vnrt_graph *g, bool names,
                              const char *what) {
  char *t1 = NULL, *t2 = NULL, diff[256];
  vnrt_graph *g2 = NULL;
  TU_OK(ctx, vnrt_graph_print(g, &t1));
  ck_assert_ptr_nonnull(t1);
  vnrt_status st = vnrt_graph_parse(ctx, t1, strlen(t1), "printed", &g2);
  ck_assert_msg(st == VNRT_OK, "%s: printed text does not parse: %s\n%s", what,
                vnrt_context_last_error(ctx), t1);
  const char *d = graph_diff(g, g2, names, diff, sizeof diff);
  ck_assert_msg(d == NULL, "%s: re-parsed graph differs: %s\n%s", what, d, t1);
  TU_OK(ctx, vnrt_graph_print(g2, &t2));
  ck_assert_msg(strcmp(t1, t2) == 0, "%s: print is not a fixed point:\n%s\n---\n%s", what, t1, t2);
  vnrt_free(ctx, t2);
  vnrt_graph_destroy(g2);
  return t1;
}

/* Whether msg is "<prefix>:LINE:COL: something" with LINE:COL inside text[0, len]. */
static bool positioned(const char *msg, const char *prefix, const char *text, size_t len) {
  size_t n = strlen(prefix);
  if (strncmp(msg, prefix, n) != 0 || msg[n] != ':') return false;
  char *end;
  unsigned long long line = strtoull(msg + n + 1, &end, 10);
  if (end == msg + n + 1 || *end != ':') return false;
  const char *colp = end + 1;
  unsigned long long col = strtoull(colp, &end, 10);
  if (end == colp || strncmp(end, ": ", 2) != 0 || end[2] == '\0') return false;
  if (line < 1 || col < 1) return false;
  /* find the start of that line; the column may point at most one past the line's end */
  size_t pos = 0;
  for (unsigned long long l = 1; l < line; ++l) {
    const char *nl = pos < len ? memchr(text + pos, '\n', len - pos) : NULL;
    if (!nl) return false;
    pos = (size_t)(nl - text) + 1;
  }
  return pos + col - 1 <= len;
}

static vnrt_value value_named(const vnrt_graph *g, const char *name) {
  vnrt_value v = vnrt_graph_find(g, name);
  ck_assert_msg(v >= 0, "no value named %s", name);
  return v;
}

static const vnrt_attr *attr_of(const vnrt_graph *g, const char *value, const char *key) {
  const vn_value *v = &g->values[value_named(g, value)];
  ck_assert_int_eq(v->kind, VN_VALUE_NODE);
  const vn_node *node = &g->nodes[v->producer];
  for (int32_t k = 0; k < node->n_attrs; ++k)
    if (strcmp(node->attrs[k].key, key) == 0) return &node->attrs[k];
  ck_abort_msg("%s has no attribute %s", value, key);
  return NULL;
}

static void assert_type(const vnrt_graph *g, const char *name, vnrt_dtype dtype, int32_t rank,
                        const int64_t *dims) {
  vnrt_tensor_type t;
  TU_OK(g->ctx, vnrt_graph_value_type(g, value_named(g, name), &t));
  ck_assert_msg(t.dtype == dtype && t.rank == rank, "%s: dtype %d rank %d", name, t.dtype, t.rank);
  for (int32_t d = 0; d < rank; ++d) ck_assert_int_eq(t.dims[d], dims[d]);
}

/* ---- the spec example and the canonical form -------------------------------------------- */

static const char kExample[] =
    "vnir 1\n"
    "input x: f32[4, 64]\n"
    "param w1: f16[128, 64]\n"
    "param g: f32[128]\n"
    "h = linear(x, w1)                 # [4,128]\n"
    "y = rms_norm(h, g, eps=1e-6)\n"
    "p = softmax(y)\n"
    "output y, p\n";

START_TEST(test_spec_example_parses_and_prints_canonically) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, kExample, strlen(kExample), NULL, &g));
  ck_assert_int_eq(vnrt_graph_input_count(g), 3);
  int is_param = -1;
  ck_assert_str_eq(vnrt_graph_value_name(g, vnrt_graph_input(g, 0, &is_param)), "x");
  ck_assert_int_eq(is_param, 0);
  ck_assert_str_eq(vnrt_graph_value_name(g, vnrt_graph_input(g, 1, &is_param)), "w1");
  ck_assert_int_eq(is_param, 1);
  ck_assert_int_eq(g->n_nodes, 3);
  ck_assert_int_eq(g->nodes[0].op, VNRT_OP_LINEAR);
  ck_assert_int_eq(g->nodes[1].op, VNRT_OP_RMS_NORM);
  ck_assert_int_eq(g->nodes[2].op, VNRT_OP_SOFTMAX);
  /* linear: [4, 64] x [128, 64]^T = [4, 128]; the rest keep that shape */
  const int64_t d4x128[] = {4, 128}, d128_64[] = {128, 64};
  assert_type(g, "w1", VNRT_F16, 2, d128_64);
  assert_type(g, "h", VNRT_F32, 2, d4x128);
  assert_type(g, "y", VNRT_F32, 2, d4x128);
  assert_type(g, "p", VNRT_F32, 2, d4x128);
  ck_assert(attr_of(g, "y", "eps")->f == 1e-6);
  ck_assert_int_eq(attr_of(g, "p", "axis")->i, -1); /* the default, filled by normalisation */
  ck_assert_int_eq(vnrt_graph_output_count(g), 2);
  ck_assert_str_eq(vnrt_graph_value_name(g, vnrt_graph_output(g, 0)), "y");
  ck_assert_str_eq(vnrt_graph_value_name(g, vnrt_graph_output(g, 1)), "p");

  char *text = check_round_trip(ctx, g, true, "example");
  ck_assert_str_eq(text,
                   "vnir 1\n"
                   "input x: f32[4, 64]\n"
                   "param w1: f16[128, 64]\n"
                   "param g: f32[128]\n"
                   "h = linear(x, w1)  # f32[4, 128]\n"
                   "y = rms_norm(h, g, eps=1e-6)  # f32[4, 128]\n"
                   "p = softmax(y, axis=-1)  # f32[4, 128]\n"
                   "output y, p\n");
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_multi_result_and_attribute_forms) {
  static const char src[] =
      "vnir 1\n"
      "input x: f32[3, 5]\n"
      "vals, idx = topk(x, k=2)\n"
      "r = reshape(x, shape=[5, -1])\n"
      "c = cast(x, dtype=bf16)\n"
      "s = scale(x, s=3)\n"
      "e = transpose(x, perm=[1, 0])\n"
      "output idx, vals, r, c, s, e\n";
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, src, strlen(src), "m.vnir", &g));
  const int64_t d3x2[] = {3, 2}, d5x3[] = {5, 3};
  assert_type(g, "vals", VNRT_F32, 2, d3x2);
  assert_type(g, "idx", VNRT_I32, 2, d3x2);
  assert_type(g, "r", VNRT_F32, 2, d5x3);
  assert_type(g, "e", VNRT_F32, 2, d5x3);
  assert_type(g, "c", VNRT_BF16, 2, (const int64_t[]){3, 5});
  ck_assert_int_eq(attr_of(g, "vals", "k")->kind, VNRT_ATTR_INT);
  ck_assert_int_eq(attr_of(g, "vals", "k")->i, 2);
  const vnrt_attr *shape = attr_of(g, "r", "shape");
  ck_assert_int_eq(shape->kind, VNRT_ATTR_INTS);
  ck_assert_int_eq(shape->count, 2);
  ck_assert_int_eq(shape->ints[0], 5);
  ck_assert_int_eq(shape->ints[1], -1);
  ck_assert_str_eq(attr_of(g, "c", "dtype")->word, "bf16");
  /* an integer literal for a FLOAT attribute is stored, and printed, as a float */
  ck_assert_int_eq(attr_of(g, "s", "s")->kind, VNRT_ATTR_FLOAT);
  ck_assert(attr_of(g, "s", "s")->f == 3.0);
  ck_assert_str_eq(vnrt_graph_value_name(g, vnrt_graph_output(g, 0)), "idx");
  char *text = check_round_trip(ctx, g, true, "forms");
  ck_assert_ptr_nonnull(strstr(text, "vals, idx = topk(x, k=2)  # f32[3, 2], i32[3, 2]\n"));
  ck_assert_ptr_nonnull(strstr(text, "r = reshape(x, shape=[5, -1])"));
  ck_assert_ptr_nonnull(strstr(text, "s = scale(x, s=3.0)"));
  ck_assert_ptr_nonnull(strstr(text, "c = cast(x, dtype=bf16)"));
  ck_assert_ptr_nonnull(strstr(text, "\noutput idx, vals, r, c, s, e\n"));
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- the good corpus -------------------------------------------------------------------- */

START_TEST(test_good_corpus_round_trips) {
  vnrt_context *ctx = tu_context();
  char **paths;
  int n = list_corpus("good", &paths);
  ck_assert_int_ge(n, 8);
  for (int i = 0; i < n; ++i) {
    vnrt_graph *g = NULL;
    vnrt_status st = vnrt_graph_parse_file(ctx, paths[i], &g);
    ck_assert_msg(st == VNRT_OK, "%s: %s", paths[i], vnrt_context_last_error(ctx));
    ck_assert_int_gt(g->n_nodes, 0);
    char *text = check_round_trip(ctx, g, true, paths[i]);
    /* the same bytes from memory (not NUL-terminated) give the same graph */
    size_t len;
    char *raw = read_all(paths[i], &len);
    char *copy = exact_copy(raw, len);
    vnrt_graph *g3 = NULL;
    TU_OK(ctx, vnrt_graph_parse(ctx, copy, len, NULL, &g3));
    char diff[256];
    const char *d = graph_diff(g, g3, true, diff, sizeof diff);
    ck_assert_msg(d == NULL, "%s from memory: %s", paths[i], d);
    vnrt_graph_destroy(g3);
    free(copy);
    free(raw);
    vnrt_free(ctx, text);
    vnrt_graph_destroy(g);
  }
  free_paths(paths, n);
  vnrt_context_destroy(ctx);
}
END_TEST

/* formatting.vnir spells numbers in unusual ways; their values are checked against doubles
 * written in C here, bit for bit. */
START_TEST(test_number_spellings) {
  vnrt_context *ctx = tu_context();
  char path[4300];
  snprintf(path, sizeof path, "%s/good/formatting.vnir", corpus_dir());
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse_file(ctx, path, &g));
  ck_assert(attr_of(g, "s", "s")->f == -2.0);
  double neg_zero = attr_of(g, "n", "s")->f;
  ck_assert(neg_zero == 0.0 && signbit(neg_zero));
  ck_assert(attr_of(g, "q", "s")->f == (double)123456789012345678LL);
  ck_assert(attr_of(g, "r", "s")->f == 0.1);
  ck_assert(attr_of(g, "t", "s")->f == 1e-300);
  ck_assert(attr_of(g, "u", "s")->f == 4.9e-324);
  ck_assert(attr_of(g, "v", "s")->f == 1.7976931348623157e308);
  ck_assert_int_eq(attr_of(g, "z", "k")->i, 1);
  ck_assert_int_eq(vnrt_graph_output_count(g), 9); /* two output lines */
  char *text = check_round_trip(ctx, g, true, "formatting");
  ck_assert_ptr_nonnull(strstr(text, "s = scale(x, s=-2.0)"));
  ck_assert_ptr_nonnull(strstr(text, "n = scale(x, s=-0.0)"));
  ck_assert_ptr_nonnull(strstr(text, "q = scale(x, s=1.2345678901234568e17)"));
  ck_assert_ptr_nonnull(strstr(text, "r = scale(x, s=0.1)"));
  ck_assert_ptr_nonnull(strstr(text, "t = scale(x, s=1e-300)"));
  ck_assert_ptr_nonnull(strstr(text, "u = scale(x, s=4.94065645841247e-324)"));
  ck_assert_ptr_nonnull(strstr(text, "v = scale(x, s=1.7976931348623157e308)"));
  ck_assert_ptr_nonnull(strstr(text, "\noutput z, w, s, n, q, r, t, u, v\n"));
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- the bad corpus --------------------------------------------------------------------- */

/* Each bad file starts with "# expect: LINE:COL: words" naming where the error must point
 * and words the message must contain. */
START_TEST(test_bad_corpus_is_rejected_with_positions) {
  vnrt_context *ctx = tu_context();
  char **paths;
  int n = list_corpus("bad", &paths), failures = 0;
  ck_assert_int_ge(n, 30);
  for (int i = 0; i < n; ++i) {
    size_t len;
    char *text = read_all(paths[i], &len);
    static const char tag[] = "# expect: ";
    ck_assert_msg(len > sizeof tag && memcmp(text, tag, sizeof tag - 1) == 0,
                  "%s: no '# expect:' line", paths[i]);
    const char *nl = memchr(text, '\n', len);
    ck_assert_msg(nl != NULL, "%s: no newline after the expect line", paths[i]);
    char expect[512];
    size_t elen = (size_t)(nl - text) - (sizeof tag - 1);
    ck_assert(elen < sizeof expect);
    memcpy(expect, text + sizeof tag - 1, elen);
    expect[elen] = '\0';
    unsigned line = 0, col = 0;
    int used = 0;
    ck_assert_msg(sscanf(expect, "%u:%u: %n", &line, &col, &used) == 2 && used > 0,
                  "%s: bad expect line '%s'", paths[i], expect);
    const char *words = expect + used;

    vnrt_graph *g = (vnrt_graph *)&g; /* must be reset to NULL */
    vnrt_status st = vnrt_graph_parse_file(ctx, paths[i], &g);
    const char *msg = vnrt_context_last_error(ctx);
    char want[4400];
    snprintf(want, sizeof want, "%s:%u:%u: ", paths[i], line, col);
    if (st != VNRT_ERROR_INVALID_GRAPH || g != NULL || strncmp(msg, want, strlen(want)) != 0 ||
        strstr(msg + strlen(want), words) == NULL) {
      fprintf(stderr, "%s: status %s, got '%.300s', expected '%s%s'\n", paths[i],
              vnrt_status_string(st), msg, want, words);
      ++failures;
    }
    /* from memory (exact-size copy): the same error with the "<string>" file name */
    char *copy = exact_copy(text, len);
    st = vnrt_graph_parse(ctx, copy, len, NULL, &g);
    msg = vnrt_context_last_error(ctx);
    snprintf(want, sizeof want, "<string>:%u:%u: ", line, col);
    if (st != VNRT_ERROR_INVALID_GRAPH || g != NULL || strncmp(msg, want, strlen(want)) != 0 ||
        strstr(msg + strlen(want), words) == NULL) {
      fprintf(stderr, "%s from memory: got '%.300s'\n", paths[i], msg);
      ++failures;
    }
    free(copy);
    free(text);
  }
  ck_assert_msg(failures == 0, "%d of %d bad files were not rejected as expected (see above)",
                failures, n);
  free_paths(paths, n);
  vnrt_context_destroy(ctx);
}
END_TEST

static void expect_error(vnrt_context *ctx, const char *text, size_t len, const char *prefix,
                         const char *words) {
  vnrt_graph *g = NULL;
  char *copy = exact_copy(text, len);
  vnrt_status st = vnrt_graph_parse(ctx, copy, len, NULL, &g);
  free(copy);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(st == VNRT_ERROR_INVALID_GRAPH, "status %s for %.60s", vnrt_status_string(st),
                text);
  ck_assert_ptr_null(g);
  ck_assert_msg(strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, words),
                "got '%s', expected '%s...%s'", msg, prefix, words);
}

START_TEST(test_empty_and_bounded_text) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  /* empty text, with and without a pointer */
  ck_assert_int_eq(vnrt_graph_parse(ctx, NULL, 0, NULL, &g), VNRT_ERROR_INVALID_GRAPH);
  ck_assert_ptr_null(g);
  ck_assert_str_eq(vnrt_context_last_error(ctx),
                   "<string>:1:1: expected 'vnir 1' as the first statement (missing header), "
                   "got end of file");
  expect_error(ctx, "", 0, "<string>:1:1: ", "expected 'vnir 1'");
  expect_error(ctx, "\n\n# c\n", 6, "<string>:4:1: ", "expected 'vnir 1'");
  expect_error(ctx, "vnir 1\n", 7, "<string>:2:1: ", "no outputs");
  ck_assert_int_eq(vnrt_graph_parse(ctx, NULL, 3, NULL, &g), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vnrt_graph_parse(ctx, "vnir 1", 6, NULL, NULL), VNRT_ERROR_INVALID_ARGUMENT);

  /* the parser stops at `length`: what follows in memory is never looked at */
  static const char full[] = "vnir 1\ninput x: f32[2]\ny = scale(x, s=1e5)\noutput y\n!garbage";
  size_t good_len = strlen(full) - strlen("!garbage");
  TU_OK(ctx, vnrt_graph_parse(ctx, full, good_len, NULL, &g));
  vnrt_graph_destroy(g);
  /* cut inside "1e5": the '5' beyond the end must not be read */
  size_t cut = (size_t)(strstr(full, "e5") - full) + 1;
  expect_error(ctx, full, cut, "<string>:3:16: ", "malformed number '1e'");
  /* cut after "output y" with no newline */
  TU_OK(ctx, vnrt_graph_parse(ctx, full, good_len - 1, NULL, &g));
  vnrt_graph_destroy(g);
  /* cut inside "output": "outp" is an unknown name used as a statement */
  expect_error(ctx, full, good_len - 5, "<string>:4:5: ", "expected '='");
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_generated_limits) {
  vnrt_context *ctx = tu_context();
  /* a list one longer than the limit */
  size_t n = ((size_t)1 << 20) + 1, cap = n * 3 + 200, len = 0;
  char *text = malloc(cap);
  ck_assert(text != NULL);
  len += (size_t)sprintf(text, "vnir 1\ninput x: f32[2]\ny = reshape(x, shape=[");
  for (size_t i = 0; i < n; ++i) len += (size_t)sprintf(text + len, i ? ",1" : "1");
  len += (size_t)sprintf(text + len, "])\noutput y\n");
  expect_error(ctx, text, len, "<string>:3:", "list too long");
  free(text);

  /* INT64_MIN is a valid literal; one below is not */
  static const char min_ok[] =
      "vnir 1\ninput x: f32[2]\ny = softmax(x, axis=-9223372036854775808)\n";
  static const char min_bad[] =
      "vnir 1\ninput x: f32[2]\ny = softmax(x, axis=-9223372036854775809)\n";
  /* the first reaches shape inference, which rejects the axis and prints the value read */
  expect_error(ctx, min_ok, strlen(min_ok), "<string>:3:5: ", "-9223372036854775808");
  expect_error(ctx, min_bad, strlen(min_bad), "<string>:3:21: ", "integer overflow");
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_parse_file_errors) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = (vnrt_graph *)&g;
  ck_assert_int_eq(vnrt_graph_parse_file(ctx, "/nonexistent/dir/x.vnir", &g), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(g);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "/nonexistent/dir/x.vnir"));
  g = (vnrt_graph *)&g;
  vnrt_status st = vnrt_graph_parse_file(ctx, corpus_dir(), &g); /* a directory */
  ck_assert_int_eq(st, VNRT_ERROR_IO);
  ck_assert_ptr_null(g);
  ck_assert_int_eq(vnrt_graph_parse_file(ctx, NULL, &g), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- states ----------------------------------------------------------------------------- */

/* States declared before and after nodes, updates anywhere after their value. */
static const char kStateExample[] =
    "vnir 1\n"
    "input x: f32[2, 3]\n"
    "state h: f32[2, 3]\n"
    "a = add(h, x)\n"
    "update h = a        # h takes a after each run\n"
    "state n: f32[]\n"
    "param one: f32[]\n"
    "n2 = add(n, one)\n"
    "state spare: i32[4]\n"
    "update n = n2\n"
    "y = tanh(a)\n"
    "output y\n";

START_TEST(test_states_parse_and_print_canonically) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, kStateExample, strlen(kStateExample), "s.vnir", &g));
  ck_assert_int_eq(vnrt_graph_input_count(g), 2); /* x and one: states are not inputs */
  ck_assert_int_eq(vnrt_graph_state_count(g), 3);
  vnrt_value next = 99;
  vnrt_value h = vnrt_graph_state(g, 0, &next);
  ck_assert_str_eq(vnrt_graph_value_name(g, h), "h");
  ck_assert_int_eq(g->values[h].kind, VN_VALUE_STATE);
  ck_assert_int_eq(next, value_named(g, "a"));
  vnrt_value n = vnrt_graph_state(g, 1, &next);
  ck_assert_str_eq(vnrt_graph_value_name(g, n), "n");
  ck_assert_int_eq(next, value_named(g, "n2"));
  assert_type(g, "n", VNRT_F32, 0, NULL);
  vnrt_value spare = vnrt_graph_state(g, 2, &next);
  ck_assert_str_eq(vnrt_graph_value_name(g, spare), "spare");
  ck_assert_int_eq(next, -1); /* a state need not be updated */
  assert_type(g, "spare", VNRT_I32, 1, (const int64_t[]){4});
  ck_assert_int_eq(g->nodes[0].inputs[0], h); /* a state is read like any value */

  char *text = check_round_trip(ctx, g, true, "states");
  ck_assert_str_eq(text,
                   "vnir 1\n"
                   "input x: f32[2, 3]\n"
                   "param one: f32[]\n"
                   "state h: f32[2, 3]\n"
                   "state n: f32[]\n"
                   "state spare: i32[4]\n"
                   "a = add(h, x)  # f32[2, 3]\n"
                   "n2 = add(n, one)  # f32[]\n"
                   "y = tanh(a)  # f32[2, 3]\n"
                   "update h = a\n"
                   "update n = n2\n"
                   "output y\n");
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A graph built through the API with states, updates and no outputs prints, parses back to
 * the same graph, and prints the same text again. */
START_TEST(test_api_state_graph_round_trips) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tc = {VNRT_F16, 3, {8, 2, 4}}, tn = {VNRT_F16, 3, {1, 2, 4}};
  vnrt_tensor_type tp = {VNRT_I32, 1, {1}};
  vnrt_value cache, rows, pos, w;
  TU_OK(ctx, vnrt_graph_add_state(g, "cache", &tc, &cache));
  TU_OK(ctx, vnrt_graph_add_input(g, "rows", &tn, 0, &rows));
  TU_OK(ctx, vnrt_graph_add_input(g, "pos", &tp, 0, &pos));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_KV_WRITE, (vnrt_value[]){cache, rows, pos}, 3, NULL, 0,
                                 NULL, &w, 1)); /* a generated name, respelled as v3 */
  TU_OK(ctx, vnrt_graph_set_state_update(g, cache, w));
  char *text = check_round_trip(ctx, g, false, "api states");
  ck_assert_str_eq(text,
                   "vnir 1\n"
                   "input rows: f16[1, 2, 4]\n"
                   "input pos: i32[1]\n"
                   "state cache: f16[8, 2, 4]\n"
                   "v3 = kv_write(cache, rows, pos)  # f16[8, 2, 4]\n"
                   "update cache = v3\n");
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* `state` and `update` stay usable as names, in files and through the API. */
START_TEST(test_state_words_remain_names) {
  static const char src[] =
      "vnir 1\n"
      "state state: f32[2]\n"
      "input update: f32[2]\n"
      "state, update.i = topk(update, k=2)\n"
      "update state = state\n"
      "output update.i\n";
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  /* `state` is both the state and, redefined, a result: the second is an error */
  expect_error(ctx, src, strlen(src), "<string>:4:1: ", "redefinition of 'state'");
  static const char ok[] =
      "vnir 1\n"
      "state state: f32[2]\n"
      "input update: f32[2]\n"
      "s2 = add(state, update)\n"
      "update state = s2\n"
      "update.i, update.v = topk(s2, k=1)\n"
      "update = relu(update.i)\n";
  expect_error(ctx, ok, strlen(ok), "<string>:7:1: ", "redefinition of 'update'");
  static const char good[] =
      "vnir 1\n"
      "state state: f32[2]\n"
      "input x: f32[2]\n"
      "update = add(state, x)\n"
      "update state = update\n"
      "output update\n";
  TU_OK(ctx, vnrt_graph_parse(ctx, good, strlen(good), NULL, &g));
  vnrt_value next = -1;
  ck_assert_int_eq(vnrt_graph_state(g, 0, &next), value_named(g, "state"));
  ck_assert_int_eq(next, value_named(g, "update"));
  char *text = check_round_trip(ctx, g, true, "state words");
  ck_assert_str_eq(text,
                   "vnir 1\n"
                   "input x: f32[2]\n"
                   "state state: f32[2]\n"
                   "update = add(state, x)  # f32[2]\n"
                   "update state = update\n"
                   "output update\n");
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  ck_assert(vn_name_valid("state") && vn_name_valid("update"));
  vnrt_context_destroy(ctx);
}
END_TEST

/* A parsed state graph runs: the accumulator of the good corpus, three runs on every device,
 * sums and running maxima computed here. */
START_TEST(test_parsed_states_carry_across_runs) {
  vnrt_context *ctx = tu_context();
  char path[4300];
  snprintf(path, sizeof path, "%s/good/accumulator.vnir", corpus_dir());
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse_file(ctx, path, &g));
  ck_assert_int_eq(vnrt_graph_output_count(g), 0);
  const float xs[3][3] = {{1.0f, -2.0f, 0.5f}, {3.0f, -1.0f, 0.25f}, {-4.0f, 5.0f, 0.125f}};
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, tu_device(ctx, di), NULL, &plan));
    double sum[3] = {0, 0, 0}, peak[3] = {0, 0, 0}; /* states start at zero */
    for (int r = 0; r < 3; ++r) {
      TU_OK(ctx, vnrt_plan_set_input(plan, "x", xs[r], sizeof xs[r]));
      TU_OK(ctx, vnrt_plan_run(plan));
      for (int i = 0; i < 3; ++i) {
        sum[i] += xs[r][i];
        peak[i] = fmax(peak[i], xs[r][i]);
      }
    }
    float got_sum[3], got_peak[3];
    TU_OK(ctx, vnrt_plan_read_state(plan, "sum", got_sum, sizeof got_sum));
    TU_OK(ctx, vnrt_plan_read_state(plan, "peak", got_peak, sizeof got_peak));
    for (int i = 0; i < 3; ++i) {
      ck_assert_msg(got_sum[i] == (float)sum[i], "%s: sum[%d] = %g, want %g",
                    tu_device_spec(tu_device(ctx, di)), i, got_sum[i], sum[i]);
      ck_assert_msg(got_peak[i] == (float)peak[i], "%s: peak[%d] = %g, want %g",
                    tu_device_spec(tu_device(ctx, di)), i, got_peak[i], peak[i]);
    }
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);

  /* The KV-cache file's caches are written in place: each kv_write's cache is a state that
   * nothing else reads and whose update is that kv_write's result. */
  snprintf(path, sizeof path, "%s/good/kv_cache_decode.vnir", corpus_dir());
  TU_OK(ctx, vnrt_graph_parse_file(ctx, path, &g));
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, tu_device(ctx, di), NULL, &plan));
    vnrt_plan_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    ck_assert_uint_eq(info.state_bytes, 2 * 128 * 2 * 16 * sizeof(float));
    if (info.n_fallback_nodes == 0) ck_assert_int_eq(info.n_inplace_updates, 2);
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- robustness ------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Parses text[0, len) from an exact-size copy: either a graph that round-trips, or an
 * INVALID_GRAPH error positioned inside the text. */
static vnrt_status parse_or_positioned_error(vnrt_context *ctx, const char *text, size_t len,
                                             const char *what) {
  char *copy = exact_copy(text, len);
  vnrt_graph *g = NULL;
  vnrt_status st = vnrt_graph_parse(ctx, copy, len, NULL, &g);
  if (st == VNRT_OK) {
    ck_assert_ptr_nonnull(g);
    char *printed = check_round_trip(ctx, g, true, what);
    vnrt_free(ctx, printed);
    vnrt_graph_destroy(g);
  } else {
    const char *msg = vnrt_context_last_error(ctx);
    ck_assert_msg(st == VNRT_ERROR_INVALID_GRAPH, "%s: status %s: %s", what, vnrt_status_string(st),
                  msg);
    ck_assert_ptr_null(g);
    ck_assert_msg(positioned(msg, "<string>", copy, len), "%s: unpositioned error '%s'", what, msg);
  }
  free(copy);
  return st;
}

START_TEST(test_every_truncation_of_good_files) {
  vnrt_context *ctx = tu_context();
  char **paths;
  int n = list_corpus("good", &paths);
  for (int i = 0; i < n; ++i) {
    size_t len;
    char *text = read_all(paths[i], &len);
    for (size_t cut = 0; cut <= len; ++cut) parse_or_positioned_error(ctx, text, cut, paths[i]);
    free(text);
  }
  free_paths(paths, n);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_random_mutations_never_crash) {
  static const char *const tokens[] = {"[",           "]",
                                       "(",           ")",
                                       ",",           ":",
                                       "=",           "-",
                                       ".",           "#",
                                       "\n",          "\r",
                                       "\t",          " ",
                                       "\0",          "\xff",
                                       "\xc3",        "\xe2\x80\x94",
                                       "0",           "-1",
                                       "1e999",       "9223372036854775808",
                                       "99999999999", "1.5",
                                       "input ",      "param ",
                                       "output ",     "vnir ",
                                       "state ",      "update ",
                                       "update x = ", "x",
                                       "add",         "topk",
                                       "k=",          "f32[",
                                       "[[[[",        "axis=",
                                       "=relu(",      "shape=[1, -1]"};
  vnrt_context *ctx = tu_context();
  char **paths;
  int n = list_corpus("good", &paths);
  char *texts[64];
  size_t lens[64];
  ck_assert_int_le(n, 64);
  for (int i = 0; i < n; ++i) texts[i] = read_all(paths[i], &lens[i]);
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    int f = (int)(rng_next(&seed) % (uint64_t)n);
    size_t cap = lens[f] * 2 + 256, len = lens[f];
    char *buf = malloc(cap);
    ck_assert(buf != NULL);
    memcpy(buf, texts[f], len);
    int n_mut = 1 + (int)(rng_next(&seed) % 3);
    for (int m = 0; m < n_mut && len > 0; ++m) {
      size_t at = (size_t)(rng_next(&seed) % len);
      switch (rng_next(&seed) % 5) {
        case 0:
          buf[at] = (char)(rng_next(&seed) & 0xFF);
          break; /* byte flip */
        case 1:
          len = at;
          break;  /* truncate */
        case 2: { /* delete a span */
          size_t span = 1 + (size_t)(rng_next(&seed) % 16);
          if (span > len - at) span = len - at;
          memmove(buf + at, buf + at + span, len - at - span);
          len -= span;
          break;
        }
        case 3: { /* insert a token */
          const char *tok = tokens[rng_next(&seed) % (sizeof tokens / sizeof tokens[0])];
          size_t tl = tok[0] ? strlen(tok) : 1;
          if (len + tl > cap) break;
          memmove(buf + at + tl, buf + at, len - at);
          memcpy(buf + at, tok, tl);
          len += tl;
          break;
        }
        default: { /* duplicate a span */
          size_t span = 1 + (size_t)(rng_next(&seed) % 32);
          if (span > len - at) span = len - at;
          if (len + span > cap) break;
          memmove(buf + at + span, buf + at, len - at);
          len += span;
          break;
        }
      }
    }
    if (parse_or_positioned_error(ctx, buf, len, paths[f]) == VNRT_OK)
      ++parsed;
    else
      ++rejected;
    free(buf);
  }
  /* both outcomes happen, so the mutations exercise the parser and are not all fatal */
  ck_assert_int_gt(parsed, 50);
  ck_assert_int_gt(rejected, 1000);
  for (int i = 0; i < n; ++i) free(texts[i]);
  free_paths(paths, n);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_allocation_failures_leak_nothing) {
  tu_alloc fa = {.countdown = -1};
  vnrt_context_desc desc = {0};
  desc.allocator = tu_allocator(&fa);
  desc.no_plugins = 1;
  desc.log_level = VNRT_LOG_ERROR;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&desc, &ctx), VNRT_OK);
  long base = fa.live;
  const char *const sources[] = {kExample, kStateExample};
  for (size_t src = 0; src < VN_ARRAY_SIZE(sources); ++src) {
    bool succeeded = false;
    for (long budget = 0; budget < 100000 && !succeeded; ++budget) {
      vnrt_graph *g = NULL;
      char *text = NULL;
      fa.countdown = budget;
      vnrt_status st = vnrt_graph_parse(ctx, sources[src], strlen(sources[src]), NULL, &g);
      if (st == VNRT_OK) {
        st = vnrt_graph_print(g, &text);
        if (st == VNRT_OK) {
          succeeded = true;
          vnrt_free(ctx, text);
        } else {
          ck_assert_int_eq(st, VNRT_ERROR_OUT_OF_MEMORY);
          ck_assert_ptr_null(text);
        }
        vnrt_graph_destroy(g);
      } else {
        ck_assert_msg(st == VNRT_ERROR_OUT_OF_MEMORY, "budget %ld: %s: %s", budget,
                      vnrt_status_string(st), vnrt_context_last_error(ctx));
        ck_assert_ptr_null(g);
      }
      fa.countdown = -1;
      ck_assert_msg(fa.live == base, "budget %ld: %ld blocks leaked", budget, fa.live - base);
    }
    ck_assert(succeeded);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* A 200,000-node chain (with a state at its end) parses to the right graph. Names are hashed
 * in the graph and outputs marked in O(1), so this takes well under a second; only
 * correctness is asserted here (the tcase timeout catches a return to quadratic time). */
START_TEST(test_200000_node_chain) {
  vnrt_context *ctx = tu_context();
  const int n = 200000;
  size_t cap = (size_t)n * 48 + 256, len = 0;
  char *text = malloc(cap);
  ck_assert(text != NULL);
  len += (size_t)sprintf(text, "vnir 1\ninput v0: f32[4]\nstate acc: f32[4]\n");
  for (int i = 1; i <= n; ++i)
    len += (size_t)sprintf(text + len, "v%d = %s(v%d)\n", i, i % 2 ? "relu" : "neg", i - 1);
  len += (size_t)sprintf(text + len, "acc2 = add(acc, v%d)\nupdate acc = acc2\noutput v%d\n", n, n);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, text, len, "big", &g));
  ck_assert_int_eq(g->n_nodes, n + 1);
  /* One assertion for the loop: Check records every passing assertion with a write. */
  int bad = 0, first_bad = -1;
  for (int i = 1; i <= n; ++i) {
    const vn_node *node = &g->nodes[i - 1];
    /* v0 is value 0, acc value 1, v<i> value i + 1 */
    if (node->op != (i % 2 ? VNRT_OP_RELU : VNRT_OP_NEG) || node->n_inputs != 1 ||
        node->inputs[0] != (i == 1 ? 0 : i) || node->outputs[0] != i + 1) {
      if (bad++ == 0) first_bad = i;
    }
  }
  ck_assert_msg(bad == 0, "%d nodes wrong, the first v%d", bad, first_bad);
  ck_assert_int_eq(vnrt_graph_find(g, "v123456"), 123457);
  ck_assert_int_eq(vnrt_graph_output(g, 0), n + 1);
  vnrt_value next = -1;
  ck_assert_int_eq(vnrt_graph_state(g, 0, &next), 1);
  ck_assert_int_eq(next, vnrt_graph_find(g, "acc2"));
  char *printed = NULL;
  TU_OK(ctx, vnrt_graph_print(g, &printed));
  ck_assert_ptr_nonnull(
      strstr(printed, "vnir 1\ninput v0: f32[4]\nstate acc: f32[4]\nv1 = relu(v0)"));
  ck_assert_ptr_nonnull(strstr(printed,
                               "v200000 = neg(v199999)  # f32[4]\n"
                               "acc2 = add(acc, v200000)  # f32[4]\n"
                               "update acc = acc2\noutput v200000\n"));
  vnrt_free(ctx, printed);
  vnrt_graph_destroy(g);
  free(text);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- printing graphs built through the API ---------------------------------------------- */

START_TEST(test_print_floats_shortest_round_trip) {
  static const struct {
    double v;
    const char *text;
  } cases[] = {
      {0.1, "0.1"},
      {1e-6, "1e-6"},
      {1.0 / 3.0, "0.3333333333333333"},
      {100.0, "100.0"},
      {-0.0, "-0.0"},
      {1e300, "1e300"},
      {5e-324, "4.94065645841247e-324"},
      {123456.0, "123456.0"},
      {1e21, "1e21"},
      {2.5e-5, "2.5e-5"},
      {0.30000000000000004, "0.30000000000000004"},
      {-1.5, "-1.5"},
      {1e15, "1e15"},
      {123456789012345.0, "123456789012345.0"},
  };
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {.dtype = VNRT_F32, .rank = 1, .dims = {2}};
  vnrt_value x;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  size_t n = sizeof cases / sizeof cases[0];
  for (size_t i = 0; i < n; ++i) {
    vnrt_attr a = tu_attr_f("s", cases[i].v);
    char name[16];
    snprintf(name, sizeof name, "s%zu", i);
    const char *names[] = {name};
    vnrt_value y;
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SCALE, &x, 1, &a, 1, names, &y, 1));
    TU_OK(ctx, vnrt_graph_add_output(g, y));
  }
  char *text = check_round_trip(ctx, g, true, "floats");
  for (size_t i = 0; i < n; ++i) {
    char want[96];
    snprintf(want, sizeof want, "s%zu = scale(x, s=%s)", i, cases[i].text);
    ck_assert_msg(strstr(text, want) != NULL, "missing '%s' in\n%s", want, text);
    /* and strtod reads the printed spelling back to the same bits */
    double back = strtod(cases[i].text, NULL);
    ck_assert(memcmp(&back, &cases[i].v, sizeof back) == 0);
  }
  vnrt_free(ctx, text);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_print_respells_generated_names) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {.dtype = VNRT_F16, .rank = 2, .dims = {2, 3}};
  vnrt_value x, a, b;
  TU_OK(ctx, vnrt_graph_add_input(g, "v1", &t, 1, &x)); /* the name a generated one would take */
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_RELU, &x, 1, NULL, 0, NULL, &a, 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_NEG, &a, 1, NULL, 0, NULL, &b, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, b));
  ck_assert_int_eq(a, 1);
  ck_assert_int_eq(b, 2);
  char *text = check_round_trip(ctx, g, false, "generated names");
  ck_assert_str_eq(text,
                   "vnir 1\n"
                   "param v1: f16[2, 3]\n"
                   "v1_ = relu(v1)  # f16[2, 3]\n"
                   "v2 = neg(v1_)  # f16[2, 3]\n"
                   "output v2\n");
  vnrt_free(ctx, text);

  /* a value that vnir cannot spell is refused, not printed as something else */
  vnrt_attr inf = tu_attr_f("s", INFINITY);
  vnrt_value c;
  if (vnrt_graph_add_node(g, VNRT_OP_SCALE, &b, 1, &inf, 1, NULL, &c, 1) == VNRT_OK) {
    char *bad = (char *)&bad;
    ck_assert_int_eq(vnrt_graph_print(g, &bad), VNRT_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "finite"));
  }
  ck_assert_int_eq(vnrt_graph_print(NULL, &text), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

static Suite *vnir_suite(void) {
  Suite *s = suite_create("vnir");
  TCase *parse = tcase_create("parse");
  tcase_add_test(parse, test_spec_example_parses_and_prints_canonically);
  tcase_add_test(parse, test_multi_result_and_attribute_forms);
  tcase_add_test(parse, test_empty_and_bounded_text);
  tcase_add_test(parse, test_generated_limits);
  tcase_add_test(parse, test_parse_file_errors);
  suite_add_tcase(s, parse);
  TCase *corpus = tcase_create("corpus");
  tcase_add_test(corpus, test_good_corpus_round_trips);
  tcase_add_test(corpus, test_number_spellings);
  tcase_add_test(corpus, test_bad_corpus_is_rejected_with_positions);
  suite_add_tcase(s, corpus);
  TCase *robust = tcase_create("robustness");
  tcase_set_timeout(robust, 300);
  tcase_add_test(robust, test_every_truncation_of_good_files);
  tcase_add_test(robust, test_random_mutations_never_crash);
  tcase_add_test(robust, test_allocation_failures_leak_nothing);
  tcase_add_test(robust, test_200000_node_chain);
  suite_add_tcase(s, robust);
  TCase *states = tcase_create("states");
  tcase_add_test(states, test_states_parse_and_print_canonically);
  tcase_add_test(states, test_api_state_graph_round_trips);
  tcase_add_test(states, test_state_words_remain_names);
  tcase_add_test(states, test_parsed_states_carry_across_runs);
  suite_add_tcase(s, states);
  TCase *print = tcase_create("print");
  tcase_add_test(print, test_print_floats_shortest_round_trip);
  tcase_add_test(print, test_print_respells_generated_names);
  suite_add_tcase(s, print);
  return s;
}

int main(void) { return tu_run_suite(vnir_suite()); }
