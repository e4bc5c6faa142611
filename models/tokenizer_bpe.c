/* The tokenizer's encoder (docs/tokenizer.md): added tokens matched first, then UTF-8
 * validation, the pre-tokenizer's regex splits (PCRE2) and byte-level BPE merges per piece. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

vnrt_status tk_fail(vnrt_tokenizer *tok, vnrt_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tok->error, sizeof tok->error, fmt, ap);
  va_end(ap);
  return status;
}

vnrt_status tk_ids_push(vnrt_tokenizer *tok, tk_ids *v, int32_t id) {
  if (v->count == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    int32_t *data = realloc(v->data, cap * sizeof *data);
    if (data == NULL) {
      return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory for %zu ids", cap);
    }
    v->data = data;
    v->cap = cap;
  }
  v->data[v->count++] = id;
  return VNRT_OK;
}

uint32_t tk_hash_bytes(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  }
  return h;
}

int32_t tk_piece_lookup(const vnrt_tokenizer *tok, const char *s, size_t n) {
  for (uint32_t i = tk_hash_bytes(s, n) & tok->piece_mask;; i = (i + 1) & tok->piece_mask) {
    int32_t id = tok->piece_slots[i];
    if (id < 0) {
      return -1;
    }
    if (tok->piece_lens[id] == n && memcmp(tok->pieces[id], s, n) == 0) {
      return id;
    }
  }
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others are
 * shifted to 256 and up in byte order. */
uint32_t tk_byte_to_char(uint8_t b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
    return b;
  }
  uint32_t n = 0;
  for (uint32_t c = 0; c < b; c++) {
    if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) {
      n++;
    }
  }
  return 256 + n;
}

size_t tk_utf8_put(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Strict UTF-8 (what PCRE2 accepts): no overlong forms, no surrogates, nothing past U+10FFFF. */
size_t tk_utf8_valid_char(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) {
    return 1;
  }
  size_t len;
  uint32_t min;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, min = 0x80, cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, min = 0x800, cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len) {
    return 0;
  }
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

/* ---- byte-level BPE on one piece --------------------------------------------------------- */

typedef struct tk_sym {
  int32_t id;
  int32_t prev, next; /* -1 at the ends */
  int alive;
} tk_sym;

typedef struct tk_heap_item {
  uint32_t rank;
  int32_t pos; /* the left symbol */
  int32_t left, right;
} tk_heap_item;

static int heap_less(const tk_heap_item *a, const tk_heap_item *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int merge_find(const vnrt_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                      int32_t *id) {
  uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
  for (uint32_t i = h & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
    if (tok->merge_keys[i] == UINT64_MAX) {
      return 0;
    }
    if (tok->merge_keys[i] == key) {
      *rank = tok->merge_ranks[i];
      *id = tok->merge_ids[i];
      return 1;
    }
  }
}

static void heap_push(tk_heap_item *heap, size_t *n, tk_heap_item item) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(&item, &heap[parent])) {
      break;
    }
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = item;
}

static tk_heap_item heap_pop(tk_heap_item *heap, size_t *n) {
  tk_heap_item top = heap[0];
  tk_heap_item last = heap[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= *n) {
      break;
    }
    if (child + 1 < *n && heap_less(&heap[child + 1], &heap[child])) {
      child++;
    }
    if (!heap_less(&heap[child], &last)) {
      break;
    }
    heap[i] = heap[child];
    i = child;
  }
  if (*n > 0) {
    heap[i] = last;
  }
  return top;
}

static void push_pair(const vnrt_tokenizer *tok, tk_heap_item *heap, size_t *n, int32_t pos) {
  const tk_sym *syms = tok->syms;
  int32_t next = syms[pos].next;
  if (next < 0) {
    return;
  }
  tk_heap_item item = {.pos = pos, .left = syms[pos].id, .right = syms[next].id};
  int32_t merged;
  if (merge_find(tok, item.left, item.right, &item.rank, &merged)) {
    heap_push(heap, n, item);
  }
}

static vnrt_status bpe_merge(vnrt_tokenizer *tok, const uint8_t *s, size_t n);

/* One piece's ids: from the cache, or merged and remembered. */
static vnrt_status bpe_piece(vnrt_tokenizer *tok, const uint8_t *s, size_t n) {
  if (n == 1) {
    return tk_ids_push(tok, &tok->scratch, tok->byte_ids[s[0]]);
  }
  if (n > TK_CACHE_BYTES) {
    return bpe_merge(tok, s, n);
  }
  tk_cache_entry *e = &tok->cache[tk_hash_bytes((const char *)s, n) % TK_CACHE_SLOTS];
  vnrt_status st = VNRT_OK;
  if (e->len == n && memcmp(e->bytes, s, n) == 0) {
    for (size_t i = 0; i < e->count && st == VNRT_OK; i++) {
      st = tk_ids_push(tok, &tok->scratch, e->ids[i]);
    }
    return st;
  }
  size_t first = tok->scratch.count;
  if ((st = bpe_merge(tok, s, n)) != VNRT_OK) {
    return st;
  }
  size_t count = tok->scratch.count - first;
  if (count <= TK_CACHE_IDS) {
    e->len = (uint8_t)n;
    e->count = (uint8_t)count;
    memcpy(e->bytes, s, n);
    memcpy(e->ids, tok->scratch.data + first, count * sizeof *e->ids);
  }
  return VNRT_OK;
}

/* The lowest-ranked adjacent pair is merged first, the leftmost among equal ranks, as in
 * Hugging Face's BPE; a heap keeps this O(n log n) in the piece's length. */
static vnrt_status bpe_merge(vnrt_tokenizer *tok, const uint8_t *s, size_t n) {
  if (n > tok->syms_cap) {
    size_t cap = n < 64 ? 64 : n;
    tk_sym *syms = realloc(tok->syms, cap * sizeof *syms);
    if (syms == NULL) {
      return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory for a %zu-byte piece",
                     n);
    }
    tok->syms = syms;
    tok->syms_cap = cap;
  }
  /* at most n - 1 live pairs plus two pushes per merge */
  size_t heap_need = 3 * n;
  if (heap_need > tok->heap_cap) {
    tk_heap_item *heap = realloc(tok->heap, heap_need * sizeof *heap);
    if (heap == NULL) {
      return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory for a %zu-byte piece",
                     n);
    }
    tok->heap = heap;
    tok->heap_cap = heap_need;
  }
  tk_sym *syms = tok->syms;
  for (size_t i = 0; i < n; i++) {
    syms[i] = (tk_sym){.id = tok->byte_ids[s[i]],
                       .prev = (int32_t)i - 1,
                       .next = i + 1 < n ? (int32_t)i + 1 : -1,
                       .alive = 1};
  }
  tk_heap_item *heap = tok->heap;
  size_t heap_n = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    push_pair(tok, heap, &heap_n, (int32_t)i);
  }
  while (heap_n > 0) {
    tk_heap_item item = heap_pop(heap, &heap_n);
    tk_sym *left = &syms[item.pos];
    if (!left->alive || left->next < 0 || left->id != item.left ||
        syms[left->next].id != item.right) {
      continue; /* stale: one side was merged since */
    }
    uint32_t rank = 0;
    int32_t merged = -1;
    merge_find(tok, item.left, item.right, &rank, &merged);
    tk_sym *right = &syms[left->next];
    left->id = merged;
    right->alive = 0;
    left->next = right->next;
    if (right->next >= 0) {
      syms[right->next].prev = item.pos;
    }
    if (left->prev >= 0) {
      push_pair(tok, heap, &heap_n, left->prev);
    }
    push_pair(tok, heap, &heap_n, item.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    vnrt_status st = tk_ids_push(tok, &tok->scratch, syms[i].id);
    if (st != VNRT_OK) {
      return st;
    }
  }
  return VNRT_OK;
}

/* ---- pre-tokenization ------------------------------------------------------------------- */

typedef struct tk_span {
  size_t start, len;
} tk_span;

typedef struct tk_spans {
  tk_span *data;
  size_t count, cap;
} tk_spans;

static vnrt_status spans_push(vnrt_tokenizer *tok, tk_spans *v, size_t start, size_t len) {
  if (v->count == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    tk_span *data = realloc(v->data, cap * sizeof *data);
    if (data == NULL) {
      return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory for %zu pieces", cap);
    }
    v->data = data;
    v->cap = cap;
  }
  v->data[v->count++] = (tk_span){start, len};
  return VNRT_OK;
}

/* Splits s[piece] by split's pattern into out (offsets relative to s). s is valid UTF-8. */
static vnrt_status split_piece(vnrt_tokenizer *tok, size_t step, const uint8_t *s, tk_span piece,
                               tk_spans *out) {
  const tk_split *split = &tok->splits[step];
  const uint8_t *p = s + piece.start;
  size_t n = piece.len, off = 0, last = 0;
  vnrt_status st = VNRT_OK;
  while (off <= n) {
    int rc = pcre2_match(split->code, p, n, off, PCRE2_NO_UTF_CHECK, tok->match, tok->match_ctx);
    if (rc == PCRE2_ERROR_NOMATCH) {
      break;
    }
    if (rc < 0) {
      PCRE2_UCHAR msg[160];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return tk_fail(tok, VNRT_ERROR_INTERNAL,
                     "tokenizer: pre_tokenizer step %zu failed on a %zu-byte piece: %s", step, n,
                     (const char *)msg);
    }
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->match);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) { /* an empty match splits nothing: step over one character */
      if (ms >= n) {
        break;
      }
      off = ms + tk_utf8_valid_char(p + ms, n - ms);
      continue;
    }
    if (ms > last && (st = spans_push(tok, out, piece.start + last, ms - last)) != VNRT_OK) {
      return st;
    }
    if (split->behavior == TK_SPLIT_ISOLATED &&
        (st = spans_push(tok, out, piece.start + ms, me - ms)) != VNRT_OK) {
      return st;
    }
    last = off = me;
  }
  if (last < n) {
    st = spans_push(tok, out, piece.start + last, n - last);
  }
  return st;
}

/* Pre-tokenizes and encodes s[n], valid UTF-8. */
static vnrt_status encode_valid(vnrt_tokenizer *tok, const uint8_t *s, size_t n) {
  tk_spans a = {0}, b = {0};
  vnrt_status st = spans_push(tok, &a, 0, n);
  for (size_t step = 0; st == VNRT_OK && step < tok->split_count; step++) {
    b.count = 0;
    for (size_t i = 0; st == VNRT_OK && i < a.count; i++) {
      st = split_piece(tok, step, s, a.data[i], &b);
    }
    tk_spans t = a;
    a = b;
    b = t;
  }
  for (size_t i = 0; st == VNRT_OK && i < a.count; i++) {
    st = bpe_piece(tok, s + a.data[i].start, a.data[i].len);
  }
  free(a.data);
  free(b.data);
  return st;
}

/* Text without added tokens: valid UTF-8 runs go through the pre-tokenizer; each invalid byte
 * is a piece of its own, encoded with the byte-level alphabet (docs/tokenizer.md). */
static vnrt_status encode_plain(vnrt_tokenizer *tok, const uint8_t *s, size_t n) {
  size_t i = 0, run = 0;
  while (i < n) {
    size_t len = tk_utf8_valid_char(s + i, n - i);
    if (len > 0) {
      i += len;
      continue;
    }
    vnrt_status st = VNRT_OK;
    if (i > run && (st = encode_valid(tok, s + run, i - run)) != VNRT_OK) {
      return st;
    }
    if ((st = tk_ids_push(tok, &tok->scratch, tok->byte_ids[s[i]])) != VNRT_OK) {
      return st;
    }
    run = ++i;
  }
  return n > run ? encode_valid(tok, s + run, n - run) : VNRT_OK;
}

/* The longest added token starting at s[0..n), or -1; *len its length. */
static int32_t trie_match(const vnrt_tokenizer *tok, const uint8_t *s, size_t n, size_t *len) {
  int32_t best = -1;
  uint32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = tok->trie[node].first_child;
    while (c != 0 && tok->trie[c].byte != s[i]) {
      c = tok->trie[c].next_sibling;
    }
    if (c == 0) {
      break;
    }
    node = c;
    if (tok->trie[node].token >= 0) {
      best = tok->trie[node].token;
      *len = i + 1;
    }
  }
  return best;
}

vnrt_status tk_encode_append(vnrt_tokenizer *tok, const char *text, size_t len, int special) {
  const uint8_t *s = (const uint8_t *)text;
  if (!special || tok->trie_count <= 1) {
    return encode_plain(tok, s, len);
  }
  size_t plain = 0;
  for (size_t i = 0; i < len;) {
    size_t match_len = 0;
    int32_t id = trie_match(tok, s + i, len - i, &match_len);
    if (id < 0) {
      i++;
      continue;
    }
    vnrt_status st = VNRT_OK;
    if (i > plain && (st = encode_plain(tok, s + plain, i - plain)) != VNRT_OK) {
      return st;
    }
    if ((st = tk_ids_push(tok, &tok->scratch, id)) != VNRT_OK) {
      return st;
    }
    i += match_len;
    plain = i;
  }
  return len > plain ? encode_plain(tok, s + plain, len - plain) : VNRT_OK;
}
