/* The tokenizer's private state, shared by tokenizer.c (loading, the public calls, chat) and
 * tokenizer_bpe.c (pre-tokenization, byte-level BPE, added-token matching). */
#ifndef VNRT_MODELS_TOKENIZER_INTERNAL_H_
#define VNRT_MODELS_TOKENIZER_INTERNAL_H_

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "vnrt/tokenizer.h"

/* A growable array of ids. */
typedef struct tk_ids {
  int32_t *data;
  size_t count, cap;
} tk_ids;

/* One step of the pre-tokenizer (tokenizer.json "pre_tokenizer"): a regex split. The
 * ByteLevel step's byte alphabet is applied by the BPE itself; with use_regex it adds a split
 * on GPT-2's pattern, which is a step here too. */
typedef enum tk_split_behavior { TK_SPLIT_ISOLATED, TK_SPLIT_REMOVED } tk_split_behavior;
typedef struct tk_split {
  pcre2_code *code;
  tk_split_behavior behavior;
} tk_split;

/* A byte trie of the added tokens' contents (leftmost-longest matching). */
typedef struct tk_trie_node {
  int32_t token;        /* the added token ending here, or -1 */
  uint32_t first_child; /* 0: none (node 0 is the root, never a child) */
  uint32_t next_sibling;
  uint8_t byte;
} tk_trie_node;

/* A direct-mapped cache of short pieces' ids: prose repeats its words. */
enum { TK_CACHE_SLOTS = 4096, TK_CACHE_BYTES = 24, TK_CACHE_IDS = 12 };
typedef struct tk_cache_entry {
  uint8_t len; /* 0: empty */
  uint8_t count;
  char bytes[TK_CACHE_BYTES];
  int32_t ids[TK_CACHE_IDS];
} tk_cache_entry;

struct vnrt_tokenizer {
  char error[512];

  /* ids -> pieces; pieces[i] NULL for a gap */
  uint32_t vocab_size;
  char **pieces;
  uint32_t *piece_lens;
  uint8_t *flags; /* TK_ID_* per id */

  /* piece -> id: open addressing over ids, keys read from pieces[] */
  int32_t *piece_slots;
  uint32_t piece_mask;

  /* BPE merges: (left id, right id) -> rank and merged id */
  uint64_t *merge_keys; /* UINT64_MAX = empty */
  uint32_t *merge_ranks;
  int32_t *merge_ids;
  uint32_t merge_mask;

  int32_t byte_ids[256];     /* the id of each byte's one-character piece */
  uint8_t char_to_byte[512]; /* byte-level alphabet back to bytes (code points < 512) */
  uint8_t char_is_byte[512];

  tk_split *splits;
  size_t split_count;
  pcre2_match_data *match;
  pcre2_match_context *match_ctx;
  pcre2_jit_stack *jit_stack;

  tk_trie_node *trie;
  uint32_t trie_count, trie_cap;

  int32_t bos_id, eos_id;

  tk_ids scratch;        /* encode's output before it is copied out */
  tk_cache_entry *cache; /* TK_CACHE_SLOTS entries */
  /* the BPE's per-word working arrays */
  struct tk_sym *syms;
  size_t syms_cap;
  struct tk_heap_item *heap;
  size_t heap_cap;
};

enum { TK_ID_ADDED = 1, TK_ID_SPECIAL = 2, TK_ID_VOCAB = 4 };

/* Sets tok->error and returns status. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
vnrt_status
tk_fail(vnrt_tokenizer *tok, vnrt_status status, const char *fmt, ...);

vnrt_status tk_ids_push(vnrt_tokenizer *tok, tk_ids *v, int32_t id);

uint32_t tk_hash_bytes(const char *s, size_t n);
int32_t tk_piece_lookup(const vnrt_tokenizer *tok, const char *s, size_t n);
/* Byte b's code point in GPT-2's byte-level alphabet. */
uint32_t tk_byte_to_char(uint8_t b);
/* Writes code point cp as UTF-8 into out[4]; returns its length. */
size_t tk_utf8_put(uint32_t cp, char *out);
/* The length of the valid UTF-8 character at s[0..n), or 0 when it is not one. */
size_t tk_utf8_valid_char(const uint8_t *s, size_t n);

/* Encodes text[len] into tok->scratch (appending): added tokens matched when `special`. */
vnrt_status tk_encode_append(vnrt_tokenizer *tok, const char *text, size_t len, int special);

#endif /* VNRT_MODELS_TOKENIZER_INTERNAL_H_ */
