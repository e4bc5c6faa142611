/* The tokenizer's public calls (include/vnrt/tokenizer.h): loading tokenizer.json with json-c,
 * decoding, and DeepSeek's chat format (docs/tokenizer.md). Encoding: tokenizer_bpe.c. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models.h"
#include "tokenizer_internal.h"

#define TK_BOS_DEFAULT \
  "<\xEF\xBD\x9C"      \
  "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
#define TK_EOS_DEFAULT \
  "<\xEF\xBD\x9C"      \
  "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
#define TK_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define TK_ASSISTANT \
  "<\xEF\xBD\x9C"    \
  "Assistant\xEF\xBD\x9C>"

enum { TK_MAX_VOCAB = 1 << 24 };

/* GPT-2's pre-tokenizer pattern: ByteLevel's split when its use_regex is true. */
static const char k_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- loading ------------------------------------------------------------------------------ */

typedef struct tk_loader {
  vnrt_tokenizer *tok;
  const char *file; /* for messages */
} tk_loader;

static const char *json_str(json_object *obj, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string)) {
    return NULL;
  }
  return json_object_get_string(v);
}

static int json_true(json_object *obj, const char *key) {
  json_object *v;
  return json_object_object_get_ex(obj, key, &v) && json_object_is_type(v, json_type_boolean) &&
         json_object_get_boolean(v);
}

static vnrt_status add_split(tk_loader *ld, const char *where, const char *pattern,
                             size_t pattern_len, uint32_t options, tk_split_behavior behavior) {
  vnrt_tokenizer *tok = ld->tok;
  int errcode;
  PCRE2_SIZE erroff;
  pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, pattern_len,
                                   PCRE2_UTF | PCRE2_UCP | options, &errcode, &erroff, NULL);
  if (code == NULL) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(errcode, msg, sizeof msg);
    return tk_fail(tok, VNRT_ERROR_UNSUPPORTED,
                   "%s: %s: pattern does not compile at offset %zu: %s", ld->file, where,
                   (size_t)erroff, (const char *)msg);
  }
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
  tk_split *splits = realloc(tok->splits, (tok->split_count + 1) * sizeof *splits);
  if (splits == NULL) {
    pcre2_code_free(code);
    return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", ld->file);
  }
  tok->splits = splits;
  tok->splits[tok->split_count++] = (tk_split){.code = code, .behavior = behavior};
  return VNRT_OK;
}

static vnrt_status load_pre_tokenizer(tk_loader *ld, json_object *pt, const char *where) {
  vnrt_tokenizer *tok = ld->tok;
  if (pt == NULL || json_object_is_type(pt, json_type_null)) {
    return VNRT_OK;
  }
  const char *type = json_str(pt, "type");
  if (type == NULL) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: %s.type missing", ld->file, where);
  }
  if (strcmp(type, "Sequence") == 0) {
    json_object *list;
    if (!json_object_object_get_ex(pt, "pretokenizers", &list) ||
        !json_object_is_type(list, json_type_array)) {
      return tk_fail(tok, VNRT_ERROR_IO, "%s: %s.pretokenizers missing or not an array", ld->file,
                     where);
    }
    for (size_t i = 0; i < json_object_array_length(list); i++) {
      char sub[256];
      snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", where, i);
      vnrt_status st = load_pre_tokenizer(ld, json_object_array_get_idx(list, i), sub);
      if (st != VNRT_OK) {
        return st;
      }
    }
    return VNRT_OK;
  }
  if (strcmp(type, "Split") == 0) {
    const char *behavior = json_str(pt, "behavior");
    tk_split_behavior b;
    if (behavior != NULL && strcmp(behavior, "Isolated") == 0) {
      b = TK_SPLIT_ISOLATED;
    } else if (behavior != NULL && strcmp(behavior, "Removed") == 0) {
      b = TK_SPLIT_REMOVED;
    } else {
      return tk_fail(tok, VNRT_ERROR_UNSUPPORTED,
                     "%s: %s.behavior '%s' is not supported (Isolated, Removed)", ld->file, where,
                     behavior ? behavior : "(missing)");
    }
    if (json_true(pt, "invert")) {
      return tk_fail(tok, VNRT_ERROR_UNSUPPORTED, "%s: %s.invert true is not supported", ld->file,
                     where);
    }
    json_object *pat;
    const char *re = NULL, *lit = NULL;
    if (json_object_object_get_ex(pt, "pattern", &pat)) {
      re = json_str(pat, "Regex");
      lit = json_str(pat, "String");
    }
    if (re == NULL && lit == NULL) {
      return tk_fail(tok, VNRT_ERROR_IO, "%s: %s.pattern has neither Regex nor String", ld->file,
                     where);
    }
    char sub[256];
    snprintf(sub, sizeof sub, "%s.pattern", where);
    return re != NULL ? add_split(ld, sub, re, strlen(re), 0, b)
                      : add_split(ld, sub, lit, strlen(lit), PCRE2_LITERAL, b);
  }
  if (strcmp(type, "ByteLevel") == 0) {
    if (json_true(pt, "add_prefix_space")) {
      return tk_fail(tok, VNRT_ERROR_UNSUPPORTED, "%s: %s.add_prefix_space true is not supported",
                     ld->file, where);
    }
    json_object *use_regex;
    int regex = !json_object_object_get_ex(pt, "use_regex", &use_regex) ||
                json_object_get_boolean(use_regex);
    /* the byte alphabet itself is the BPE's input mapping (tokenizer_bpe.c) */
    return regex ? add_split(ld, where, k_gpt2_pattern, sizeof k_gpt2_pattern - 1, 0,
                             TK_SPLIT_ISOLATED)
                 : VNRT_OK;
  }
  return tk_fail(tok, VNRT_ERROR_UNSUPPORTED,
                 "%s: %s.type '%s' is not supported (Sequence, Split, ByteLevel)", ld->file, where,
                 type);
}

static vnrt_status check_normalizer(tk_loader *ld, json_object *n, const char *where) {
  if (n == NULL || json_object_is_type(n, json_type_null)) {
    return VNRT_OK;
  }
  const char *type = json_str(n, "type");
  json_object *list;
  if (type != NULL && strcmp(type, "Sequence") == 0) {
    if (!json_object_object_get_ex(n, "normalizers", &list) ||
        !json_object_is_type(list, json_type_array)) {
      return tk_fail(ld->tok, VNRT_ERROR_IO, "%s: %s.normalizers missing or not an array", ld->file,
                     where);
    }
    for (size_t i = 0; i < json_object_array_length(list); i++) {
      char sub[256];
      snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
      vnrt_status st = check_normalizer(ld, json_object_array_get_idx(list, i), sub);
      if (st != VNRT_OK) {
        return st;
      }
    }
    return VNRT_OK;
  }
  return tk_fail(ld->tok, VNRT_ERROR_UNSUPPORTED,
                 "%s: %s.type '%s' is not supported (only Sequences of nothing)", ld->file, where,
                 type ? type : "(missing)");
}

static vnrt_status set_piece(tk_loader *ld, int32_t id, const char *s, size_t n,
                             const char *where) {
  vnrt_tokenizer *tok = ld->tok;
  if (tok->pieces[id] != NULL) {
    if (tok->piece_lens[id] == n && memcmp(tok->pieces[id], s, n) == 0) {
      return VNRT_OK;
    }
    return tk_fail(tok, VNRT_ERROR_IO, "%s: %s: id %d is already the piece '%s'", ld->file, where,
                   id, tok->pieces[id]);
  }
  char *copy = malloc(n + 1);
  if (copy == NULL) {
    return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", ld->file);
  }
  memcpy(copy, s, n);
  copy[n] = '\0';
  tok->pieces[id] = copy;
  tok->piece_lens[id] = (uint32_t)n;
  return VNRT_OK;
}

static int get_id(json_object *v, int32_t *id) {
  if (!json_object_is_type(v, json_type_int)) {
    return 0;
  }
  int64_t x = json_object_get_int64(v);
  if (x < 0 || x >= INT32_MAX) {
    return 0;
  }
  *id = (int32_t)x;
  return 1;
}

static vnrt_status trie_add(vnrt_tokenizer *tok, const char *s, size_t n, int32_t id) {
  uint32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t byte = (uint8_t)s[i];
    uint32_t c = tok->trie[node].first_child;
    while (c != 0 && tok->trie[c].byte != byte) {
      c = tok->trie[c].next_sibling;
    }
    if (c == 0) {
      if (tok->trie_count == tok->trie_cap) {
        uint32_t cap = tok->trie_cap * 2;
        tk_trie_node *t = realloc(tok->trie, cap * sizeof *t);
        if (t == NULL) {
          return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory");
        }
        tok->trie = t;
        tok->trie_cap = cap;
      }
      c = tok->trie_count++;
      tok->trie[c] = (tk_trie_node){
          .token = -1, .first_child = 0, .next_sibling = tok->trie[node].first_child, .byte = byte};
      tok->trie[node].first_child = c;
    }
    node = c;
  }
  if (tok->trie[node].token < 0) {
    tok->trie[node].token = id;
  }
  return VNRT_OK;
}

static vnrt_status load_model(tk_loader *ld, json_object *root) {
  vnrt_tokenizer *tok = ld->tok;
  json_object *model, *vocab, *merges, *added = NULL;
  if (!json_object_object_get_ex(root, "model", &model) ||
      !json_object_is_type(model, json_type_object)) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: 'model' missing or not an object", ld->file);
  }
  const char *type = json_str(model, "type");
  if (type != NULL && strcmp(type, "BPE") != 0) {
    return tk_fail(tok, VNRT_ERROR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE)",
                   ld->file, type);
  }
  if (json_true(model, "byte_fallback") || json_true(model, "ignore_merges")) {
    return tk_fail(tok, VNRT_ERROR_UNSUPPORTED,
                   "%s: model.byte_fallback / model.ignore_merges true is not supported", ld->file);
  }
  const char *affix[2] = {json_str(model, "continuing_subword_prefix"),
                          json_str(model, "end_of_word_suffix")};
  if ((affix[0] && affix[0][0]) || (affix[1] && affix[1][0])) {
    return tk_fail(tok, VNRT_ERROR_UNSUPPORTED,
                   "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported",
                   ld->file);
  }
  if (!json_object_object_get_ex(model, "vocab", &vocab) ||
      !json_object_is_type(vocab, json_type_object)) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: model.vocab missing or not an object", ld->file);
  }
  if (!json_object_object_get_ex(model, "merges", &merges) ||
      !json_object_is_type(merges, json_type_array)) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: model.merges missing or not an array", ld->file);
  }
  if (json_object_object_get_ex(root, "added_tokens", &added) &&
      !json_object_is_type(added, json_type_array)) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: added_tokens is not an array", ld->file);
  }
  size_t added_n = added ? json_object_array_length(added) : 0;

  /* the id range: the vocabulary and the added tokens together */
  int32_t max_id = -1;
  json_object_object_foreach(vocab, key, val) {
    int32_t id;
    if (!get_id(val, &id)) {
      return tk_fail(tok, VNRT_ERROR_IO, "%s: model.vocab['%s'] is not an id (0..2^31-2)", ld->file,
                     key);
    }
    max_id = id > max_id ? id : max_id;
  }
  for (size_t i = 0; i < added_n; i++) {
    json_object *t = json_object_array_get_idx(added, i), *v;
    int32_t id;
    if (!json_object_object_get_ex(t, "id", &v) || !get_id(v, &id) ||
        json_str(t, "content") == NULL || json_str(t, "content")[0] == '\0') {
      return tk_fail(tok, VNRT_ERROR_IO, "%s: added_tokens[%zu] needs an id and a content",
                     ld->file, i);
    }
    max_id = id > max_id ? id : max_id;
  }
  if (max_id < 0) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: model.vocab is empty", ld->file);
  }
  /* ids index arrays, so a stray huge id must not size them */
  if (max_id >= TK_MAX_VOCAB) {
    return tk_fail(tok, VNRT_ERROR_IO, "%s: id %d is beyond the %d ids a tokenizer may have",
                   ld->file, max_id, TK_MAX_VOCAB);
  }
  tok->vocab_size = (uint32_t)max_id + 1;
  tok->pieces = calloc(tok->vocab_size, sizeof *tok->pieces);
  tok->piece_lens = calloc(tok->vocab_size, sizeof *tok->piece_lens);
  tok->flags = calloc(tok->vocab_size, 1);
  uint32_t slots = 1;
  while (slots < 2 * tok->vocab_size) {
    slots *= 2;
  }
  tok->piece_slots = malloc(slots * sizeof *tok->piece_slots);
  tok->piece_mask = slots - 1;
  if (!tok->pieces || !tok->piece_lens || !tok->flags || !tok->piece_slots) {
    return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory for %u ids", ld->file,
                   tok->vocab_size);
  }
  memset(tok->piece_slots, 0xFF, slots * sizeof *tok->piece_slots);

  json_object_object_foreach(vocab, key2, val2) {
    int32_t id = (int32_t)json_object_get_int64(val2);
    char where[64];
    snprintf(where, sizeof where, "model.vocab (id %d)", id);
    vnrt_status st = set_piece(ld, id, key2, strlen(key2), where);
    if (st != VNRT_OK) {
      return st;
    }
    tok->flags[id] |= TK_ID_VOCAB;
  }
  tok->trie_cap = 1024;
  tok->trie = malloc(tok->trie_cap * sizeof *tok->trie);
  if (tok->trie == NULL) {
    return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", ld->file);
  }
  tok->trie[0] = (tk_trie_node){.token = -1};
  tok->trie_count = 1;
  for (size_t i = 0; i < added_n; i++) {
    json_object *t = json_object_array_get_idx(added, i), *v;
    json_object_object_get_ex(t, "id", &v);
    int32_t id = (int32_t)json_object_get_int64(v);
    const char *content = json_str(t, "content");
    if (json_true(t, "lstrip") || json_true(t, "rstrip") || json_true(t, "single_word")) {
      return tk_fail(tok, VNRT_ERROR_UNSUPPORTED,
                     "%s: added_tokens[%zu] '%s': lstrip/rstrip/single_word are not supported",
                     ld->file, i, content);
    }
    char where[64];
    snprintf(where, sizeof where, "added_tokens[%zu]", i);
    vnrt_status st = set_piece(ld, id, content, strlen(content), where);
    if (st == VNRT_OK) {
      st = trie_add(tok, content, strlen(content), id);
    }
    if (st != VNRT_OK) {
      return st;
    }
    tok->flags[id] |= TK_ID_ADDED | (json_true(t, "special") ? TK_ID_SPECIAL : 0);
  }
  /* piece -> id: vocabulary entries first, so they win over a same-spelled added token */
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t id = 0; id < tok->vocab_size; id++) {
      if (tok->pieces[id] == NULL || ((tok->flags[id] & TK_ID_VOCAB) != 0) != (pass == 0)) {
        continue;
      }
      if (tk_piece_lookup(tok, tok->pieces[id], tok->piece_lens[id]) >= 0) {
        continue;
      }
      uint32_t i = tk_hash_bytes(tok->pieces[id], tok->piece_lens[id]) & tok->piece_mask;
      while (tok->piece_slots[i] >= 0) {
        i = (i + 1) & tok->piece_mask;
      }
      tok->piece_slots[i] = (int32_t)id;
    }
  }

  /* the byte alphabet */
  for (int b = 0; b < 256; b++) {
    char piece[4];
    uint32_t cp = tk_byte_to_char((uint8_t)b);
    size_t n = tk_utf8_put(cp, piece);
    tok->byte_ids[b] = tk_piece_lookup(tok, piece, n);
    if (tok->byte_ids[b] < 0 || !(tok->flags[tok->byte_ids[b]] & TK_ID_VOCAB)) {
      return tk_fail(tok, VNRT_ERROR_IO,
                     "%s: model.vocab lacks the byte-level piece of byte 0x%02X (U+%04X)", ld->file,
                     b, cp);
    }
    tok->char_to_byte[cp] = (uint8_t)b;
    tok->char_is_byte[cp] = 1;
  }

  /* merges: rank = position in the list */
  size_t merge_n = json_object_array_length(merges);
  uint32_t mslots = 1;
  while (mslots < 2 * merge_n + 2) {
    mslots *= 2;
  }
  tok->merge_keys = malloc(mslots * sizeof *tok->merge_keys);
  tok->merge_ranks = malloc(mslots * sizeof *tok->merge_ranks);
  tok->merge_ids = malloc(mslots * sizeof *tok->merge_ids);
  if (!tok->merge_keys || !tok->merge_ranks || !tok->merge_ids) {
    return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory for %zu merges", ld->file,
                   merge_n);
  }
  tok->merge_mask = mslots - 1;
  memset(tok->merge_keys, 0xFF, mslots * sizeof *tok->merge_keys);
  char *joined = NULL;
  size_t joined_cap = 0;
  vnrt_status st = VNRT_OK;
  for (size_t r = 0; r < merge_n && st == VNRT_OK; r++) {
    json_object *m = json_object_array_get_idx(merges, r);
    const char *a, *b;
    size_t an, bn;
    if (json_object_is_type(m, json_type_string)) {
      a = json_object_get_string(m);
      const char *sp = strchr(a, ' ');
      if (sp == NULL || strchr(sp + 1, ' ') != NULL) {
        st = tk_fail(tok, VNRT_ERROR_IO, "%s: model.merges[%zu] '%s' is not two pieces", ld->file,
                     r, a);
        break;
      }
      an = (size_t)(sp - a);
      b = sp + 1;
      bn = strlen(b);
    } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2 &&
               json_object_is_type(json_object_array_get_idx(m, 0), json_type_string) &&
               json_object_is_type(json_object_array_get_idx(m, 1), json_type_string)) {
      a = json_object_get_string(json_object_array_get_idx(m, 0));
      b = json_object_get_string(json_object_array_get_idx(m, 1));
      an = strlen(a);
      bn = strlen(b);
    } else {
      st = tk_fail(tok, VNRT_ERROR_IO, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]",
                   ld->file, r);
      break;
    }
    if (an + bn + 1 > joined_cap) {
      joined_cap = 2 * (an + bn + 1);
      char *j = realloc(joined, joined_cap);
      if (j == NULL) {
        st = tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", ld->file);
        break;
      }
      joined = j;
    }
    memcpy(joined, a, an);
    memcpy(joined + an, b, bn);
    int32_t ia = tk_piece_lookup(tok, a, an), ib = tk_piece_lookup(tok, b, bn);
    int32_t im = tk_piece_lookup(tok, joined, an + bn);
    if (ia < 0 || ib < 0 || im < 0) {
      st = tk_fail(tok, VNRT_ERROR_IO, "%s: model.merges[%zu]: '%.*s' is not in model.vocab",
                   ld->file, r,
                   (int)(ia < 0   ? an
                         : ib < 0 ? bn
                                  : an + bn),
                   ia < 0   ? a
                   : ib < 0 ? b
                            : joined);
      break;
    }
    uint64_t pair = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    uint32_t i = (uint32_t)((pair * 0x9E3779B97F4A7C15ull) >> 32) & tok->merge_mask;
    while (tok->merge_keys[i] != UINT64_MAX && tok->merge_keys[i] != pair) {
      i = (i + 1) & tok->merge_mask;
    }
    if (tok->merge_keys[i] == UINT64_MAX) { /* a repeated pair keeps its first rank */
      tok->merge_keys[i] = pair;
      tok->merge_ranks[i] = (uint32_t)r;
      tok->merge_ids[i] = im;
    }
  }
  free(joined);
  return st;
}

/* bos/eos: tokenizer_config.json's bos_token / eos_token (a string or {"content": ...}) when
 * the file is there, else DeepSeek's names. */
static vnrt_status load_config(tk_loader *ld, const char *config_path) {
  vnrt_tokenizer *tok = ld->tok;
  const char *bos = TK_BOS_DEFAULT, *eos = TK_EOS_DEFAULT;
  json_object *config = NULL;
  struct stat sb;
  if (stat(config_path, &sb) == 0) {
    config = json_object_from_file(config_path);
    if (config == NULL) {
      return tk_fail(tok, VNRT_ERROR_IO, "%s: not valid JSON: %s", config_path,
                     json_util_get_last_err());
    }
    const char *names[2] = {"bos_token", "eos_token"};
    const char **outs[2] = {&bos, &eos};
    for (int k = 0; k < 2; k++) {
      json_object *v;
      if (!json_object_object_get_ex(config, names[k], &v)) {
        continue;
      }
      if (json_object_is_type(v, json_type_string)) {
        *outs[k] = json_object_get_string(v);
      } else if (json_object_is_type(v, json_type_object) && json_str(v, "content") != NULL) {
        *outs[k] = json_str(v, "content");
      } else if (json_object_is_type(v, json_type_null)) {
        *outs[k] = NULL;
      } else {
        json_object_put(config);
        return tk_fail(tok, VNRT_ERROR_IO, "%s: %s is neither a string nor {\"content\": ...}",
                       config_path, names[k]);
      }
    }
  }
  tok->bos_id = bos ? tk_piece_lookup(tok, bos, strlen(bos)) : -1;
  tok->eos_id = eos ? tk_piece_lookup(tok, eos, strlen(eos)) : -1;
  json_object_put(config);
  return VNRT_OK;
}

vnrt_status vnrt_tokenizer_open(vnrt_context *ctx, const char *path, vnrt_tokenizer **out_tok,
                                char *err, size_t err_size) {
  (void)ctx;
  if (out_tok == NULL || path == NULL) {
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vnrt_tokenizer_open: path and out_tok must not be NULL");
  }
  *out_tok = NULL;
  struct stat sb;
  if (stat(path, &sb) != 0) {
    return vn_model_fail(err, err_size, VNRT_ERROR_NOT_FOUND, "tokenizer: cannot open '%s': %s",
                         path, strerror(errno));
  }
  size_t plen = strlen(path);
  char *file = malloc(plen + 32), *config = malloc(plen + 32);
  vnrt_tokenizer *tok = calloc(1, sizeof *tok);
  if (file == NULL || config == NULL || tok == NULL) {
    free(file);
    free(config);
    free(tok);
    return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory");
  }
  /* the folder the files are in: path itself, or path's parent */
  if (S_ISDIR(sb.st_mode)) {
    snprintf(file, plen + 32, "%s/tokenizer.json", path);
    snprintf(config, plen + 32, "%s/tokenizer_config.json", path);
  } else {
    snprintf(file, plen + 32, "%s", path);
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
      snprintf(config, plen + 32, "tokenizer_config.json");
    } else {
      snprintf(config, plen + 32, "%.*s/tokenizer_config.json", (int)(slash - path), path);
    }
  }
  tk_loader ld = {.tok = tok, .file = file};
  vnrt_status st = VNRT_OK;
  json_object *root = NULL;
  if (stat(file, &sb) != 0) {
    st = tk_fail(tok, VNRT_ERROR_NOT_FOUND, "tokenizer: cannot open '%s': %s", file,
                 strerror(errno));
  } else if ((root = json_object_from_file(file)) == NULL) {
    st = tk_fail(tok, VNRT_ERROR_IO, "%s: not valid JSON: %s", file, json_util_get_last_err());
  } else if (!json_object_is_type(root, json_type_object)) {
    st = tk_fail(tok, VNRT_ERROR_IO, "%s: the top level is not an object", file);
  }
  if (st == VNRT_OK) {
    st = load_model(&ld, root);
  }
  json_object *part;
  if (st == VNRT_OK) {
    st = check_normalizer(&ld, json_object_object_get_ex(root, "normalizer", &part) ? part : NULL,
                          "normalizer");
  }
  if (st == VNRT_OK) {
    st = load_pre_tokenizer(&ld,
                            json_object_object_get_ex(root, "pre_tokenizer", &part) ? part : NULL,
                            "pre_tokenizer");
  }
  if (st == VNRT_OK && json_object_object_get_ex(root, "decoder", &part) &&
      !json_object_is_type(part, json_type_null)) {
    const char *type = json_str(part, "type");
    if (type == NULL || strcmp(type, "ByteLevel") != 0) {
      st =
          tk_fail(tok, VNRT_ERROR_UNSUPPORTED, "%s: decoder.type '%s' is not supported (ByteLevel)",
                  file, type ? type : "(missing)");
    }
  }
  if (st == VNRT_OK) {
    st = load_config(&ld, config);
  }
  if (st == VNRT_OK) {
    tok->match = pcre2_match_data_create(1, NULL);
    tok->match_ctx = pcre2_match_context_create(NULL);
    tok->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    tok->cache = calloc(TK_CACHE_SLOTS, sizeof *tok->cache);
    if (tok->match == NULL || tok->match_ctx == NULL || tok->jit_stack == NULL ||
        tok->cache == NULL) {
      st = tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory");
    } else {
      pcre2_jit_stack_assign(tok->match_ctx, NULL, tok->jit_stack);
    }
  }
  json_object_put(root);
  free(config);
  free(file);
  if (st != VNRT_OK) {
    vn_model_fail(err, err_size, st, "%s", tok->error);
    vnrt_tokenizer_destroy(tok);
    return st;
  }
  *out_tok = tok;
  return VNRT_OK;
}

void vnrt_tokenizer_destroy(vnrt_tokenizer *tok) {
  if (tok == NULL) {
    return;
  }
  if (tok->pieces != NULL) {
    for (uint32_t i = 0; i < tok->vocab_size; i++) {
      free(tok->pieces[i]);
    }
  }
  free(tok->pieces);
  free(tok->piece_lens);
  free(tok->flags);
  free(tok->piece_slots);
  free(tok->merge_keys);
  free(tok->merge_ranks);
  free(tok->merge_ids);
  for (size_t i = 0; i < tok->split_count; i++) {
    pcre2_code_free(tok->splits[i].code);
  }
  free(tok->splits);
  pcre2_match_data_free(tok->match);
  pcre2_match_context_free(tok->match_ctx);
  pcre2_jit_stack_free(tok->jit_stack);
  free(tok->trie);
  free(tok->scratch.data);
  free(tok->cache);
  free(tok->syms);
  free(tok->heap);
  free(tok);
}

/* ---- lookups -------------------------------------------------------------------------------- */

const char *vnrt_tokenizer_last_error(const vnrt_tokenizer *tok) {
  return tok ? tok->error : "vnrt_tokenizer_last_error: tok is NULL";
}

uint32_t vnrt_tokenizer_vocab_size(const vnrt_tokenizer *tok) { return tok ? tok->vocab_size : 0; }
int32_t vnrt_tokenizer_bos_id(const vnrt_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t vnrt_tokenizer_eos_id(const vnrt_tokenizer *tok) { return tok ? tok->eos_id : -1; }

const char *vnrt_tokenizer_id_to_piece(const vnrt_tokenizer *tok, int32_t id) {
  if (tok == NULL || id < 0 || (uint32_t)id >= tok->vocab_size) {
    return NULL;
  }
  return tok->pieces[id];
}

int32_t vnrt_tokenizer_piece_to_id(const vnrt_tokenizer *tok, const char *piece) {
  return tok && piece ? tk_piece_lookup(tok, piece, strlen(piece)) : -1;
}

int vnrt_tokenizer_is_special(const vnrt_tokenizer *tok, int32_t id) {
  return tok && id >= 0 && (uint32_t)id < tok->vocab_size && (tok->flags[id] & TK_ID_SPECIAL);
}

/* ---- encode / decode ------------------------------------------------------------------------ */

static vnrt_status copy_ids(vnrt_tokenizer *tok, const char *what, int32_t *ids, size_t capacity,
                            size_t *out_count) {
  *out_count = tok->scratch.count;
  if (tok->scratch.count > capacity) {
    return tk_fail(tok, VNRT_ERROR_OUT_OF_RANGE, "%s: %zu ids do not fit in a capacity of %zu",
                   what, tok->scratch.count, capacity);
  }
  if (tok->scratch.count > 0) {
    memcpy(ids, tok->scratch.data, tok->scratch.count * sizeof *ids);
  }
  return VNRT_OK;
}

vnrt_status vnrt_tokenizer_encode(vnrt_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                                  int32_t *ids, size_t capacity, size_t *out_count) {
  if (tok == NULL) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  tok->error[0] = '\0';
  if (out_count == NULL || (text == NULL && len > 0) || (ids == NULL && capacity > 0)) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT,
                   "vnrt_tokenizer_encode: out_count, text (len > 0) or ids (capacity > 0) NULL");
  }
  *out_count = 0;
  if (flags & ~(VNRT_TOKENIZE_ADD_BOS | VNRT_TOKENIZE_SPECIAL)) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_tokenizer_encode: unknown flags 0x%x",
                   flags);
  }
  tok->scratch.count = 0;
  vnrt_status st = VNRT_OK;
  if (flags & VNRT_TOKENIZE_ADD_BOS) {
    if (tok->bos_id < 0) {
      return tk_fail(tok, VNRT_ERROR_NOT_FOUND,
                     "vnrt_tokenizer_encode: ADD_BOS, but the tokenizer has no bos token");
    }
    st = tk_ids_push(tok, &tok->scratch, tok->bos_id);
  }
  if (st == VNRT_OK && len > 0) {
    st = tk_encode_append(tok, text, len, (flags & VNRT_TOKENIZE_SPECIAL) != 0);
  }
  return st != VNRT_OK ? st : copy_ids(tok, "vnrt_tokenizer_encode", ids, capacity, out_count);
}

/* Writes id's bytes to out (when not NULL); returns their count. */
static size_t decode_one(const vnrt_tokenizer *tok, int32_t id, char *out) {
  const char *p = tok->pieces[id];
  size_t n = tok->piece_lens[id];
  if (!(tok->flags[id] & TK_ID_ADDED)) {
    /* each character of the byte-level alphabet is one byte; a piece with any other character
     * is emitted as it is, as Hugging Face's ByteLevel decoder does */
    size_t count = 0;
    for (size_t i = 0; i < n;) {
      size_t len = tk_utf8_valid_char((const uint8_t *)p + i, n - i);
      uint32_t cp = 0;
      if (len == 2) {
        cp = ((uint32_t)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
      } else if (len == 1) {
        cp = (uint8_t)p[i];
      }
      if (len == 0 || len > 2 || cp >= 512 || !tok->char_is_byte[cp]) {
        count = SIZE_MAX;
        break;
      }
      if (out != NULL) {
        out[count] = (char)tok->char_to_byte[cp];
      }
      count++;
      i += len;
    }
    if (count != SIZE_MAX) {
      return count;
    }
  }
  if (out != NULL) {
    memcpy(out, p, n);
  }
  return n;
}

vnrt_status vnrt_tokenizer_decode(vnrt_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags,
                                  char *text, size_t capacity, size_t *out_len) {
  if (tok == NULL) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  tok->error[0] = '\0';
  if (out_len == NULL || (ids == NULL && n > 0) || (text == NULL && capacity > 0)) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT,
                   "vnrt_tokenizer_decode: out_len, ids (n > 0) or text (capacity > 0) NULL");
  }
  *out_len = 0;
  if (flags & ~VNRT_DETOKENIZE_SKIP_SPECIAL) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_tokenizer_decode: unknown flags 0x%x",
                   flags);
  }
  int skip = (flags & VNRT_DETOKENIZE_SKIP_SPECIAL) != 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || (uint32_t)id >= tok->vocab_size || tok->pieces[id] == NULL) {
      return tk_fail(tok, VNRT_ERROR_OUT_OF_RANGE,
                     "vnrt_tokenizer_decode: ids[%zu] = %d is not a token (vocab size %u%s)", i, id,
                     tok->vocab_size,
                     id >= 0 && (uint32_t)id < tok->vocab_size ? ", a gap without a piece" : "");
    }
    if (!(skip && (tok->flags[id] & TK_ID_SPECIAL))) {
      total += decode_one(tok, id, NULL);
    }
  }
  *out_len = total;
  if (total + 1 > capacity) {
    return tk_fail(tok, VNRT_ERROR_OUT_OF_RANGE,
                   "vnrt_tokenizer_decode: %zu bytes and a NUL do not fit in a capacity of %zu",
                   total, capacity);
  }
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(skip && (tok->flags[ids[i]] & TK_ID_SPECIAL))) {
      at += decode_one(tok, ids[i], text + at);
    }
  }
  text[at] = '\0';
  return VNRT_OK;
}

/* ---- chat ----------------------------------------------------------------------------------- */

/* The prompt as one string, and where its markers are. */
typedef struct tk_chat {
  char *buf;
  size_t len, cap;
  struct {
    size_t start, len;
  } * marks;
  size_t mark_count, mark_cap;
} tk_chat;

static vnrt_status chat_put(vnrt_tokenizer *tok, tk_chat *c, const char *s, int marker) {
  size_t n = strlen(s);
  if (c->len + n + 1 > c->cap) {
    size_t cap = 2 * (c->len + n + 1) + 256;
    char *buf = realloc(c->buf, cap);
    if (buf == NULL) {
      return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory for the prompt");
    }
    c->buf = buf;
    c->cap = cap;
  }
  if (marker) {
    if (c->mark_count == c->mark_cap) {
      size_t cap = c->mark_cap ? 2 * c->mark_cap : 16;
      void *marks = realloc(c->marks, cap * sizeof *c->marks);
      if (marks == NULL) {
        return tk_fail(tok, VNRT_ERROR_OUT_OF_MEMORY, "tokenizer: out of memory for the prompt");
      }
      c->marks = marks;
      c->mark_cap = cap;
    }
    c->marks[c->mark_count].start = c->len;
    c->marks[c->mark_count++].len = n;
  }
  memcpy(c->buf + c->len, s, n + 1);
  c->len += n;
  return VNRT_OK;
}

/* DeepSeek-V3.2's chat encoding (docs/tokenizer.md): bos, the system texts joined by blank
 * lines, then per turn "<｜User｜>"+content or "<｜Assistant｜></think>"+content+eos; the
 * generation prompt opens the assistant turn with "<think>" (thinking) or "</think>". */
static vnrt_status chat_build(vnrt_tokenizer *tok, const char *what,
                              const vnrt_chat_message *messages, size_t n, uint32_t flags,
                              tk_chat *c) {
  if (messages == NULL && n > 0) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT, "%s: messages is NULL", what);
  }
  if (flags & ~(VNRT_CHAT_ADD_GENERATION_PROMPT | VNRT_CHAT_THINKING)) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", what, flags);
  }
  if (tok->eos_id < 0) {
    return tk_fail(tok, VNRT_ERROR_NOT_FOUND, "%s: the tokenizer has no eos token", what);
  }
  for (size_t i = 0; i < n; i++) {
    const char *role = messages[i].role;
    if (role == NULL || messages[i].content == NULL ||
        (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
         strcmp(role, "assistant") != 0)) {
      return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT,
                     "%s: messages[%zu]: role '%s' (system, user, assistant) and a content needed",
                     what, i, role ? role : "(null)");
    }
  }
  vnrt_status st = tok->bos_id >= 0 ? chat_put(tok, c, tok->pieces[tok->bos_id], 1) : VNRT_OK;
  int first_system = 1;
  for (size_t i = 0; i < n && st == VNRT_OK; i++) {
    if (strcmp(messages[i].role, "system") == 0) {
      if (!first_system) {
        st = chat_put(tok, c, "\n\n", 0);
      }
      first_system = 0;
      if (st == VNRT_OK) {
        st = chat_put(tok, c, messages[i].content, 0);
      }
    }
  }
  for (size_t i = 0; i < n && st == VNRT_OK; i++) {
    if (strcmp(messages[i].role, "user") == 0) {
      if ((st = chat_put(tok, c, TK_USER, 1)) == VNRT_OK) {
        st = chat_put(tok, c, messages[i].content, 0);
      }
    } else if (strcmp(messages[i].role, "assistant") == 0) {
      if ((st = chat_put(tok, c, TK_ASSISTANT, 1)) == VNRT_OK &&
          (st = chat_put(tok, c, "</think>", 1)) == VNRT_OK &&
          (st = chat_put(tok, c, messages[i].content, 0)) == VNRT_OK) {
        st = chat_put(tok, c, tok->pieces[tok->eos_id], 1);
      }
    }
  }
  if (st == VNRT_OK && (flags & VNRT_CHAT_ADD_GENERATION_PROMPT)) {
    if ((st = chat_put(tok, c, TK_ASSISTANT, 1)) == VNRT_OK) {
      st = chat_put(tok, c, (flags & VNRT_CHAT_THINKING) ? "<think>" : "</think>", 1);
    }
  }
  return st;
}

static void chat_free(tk_chat *c) {
  free(c->buf);
  free(c->marks);
}

vnrt_status vnrt_tokenizer_chat_prompt(vnrt_tokenizer *tok, const vnrt_chat_message *messages,
                                       size_t n, uint32_t flags, char *text, size_t capacity,
                                       size_t *out_len) {
  if (tok == NULL) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  tok->error[0] = '\0';
  if (out_len == NULL || (text == NULL && capacity > 0)) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT,
                   "vnrt_tokenizer_chat_prompt: out_len or text (capacity > 0) NULL");
  }
  *out_len = 0;
  tk_chat c = {0};
  vnrt_status st = chat_build(tok, "vnrt_tokenizer_chat_prompt", messages, n, flags, &c);
  if (st == VNRT_OK) {
    *out_len = c.len;
    if (c.len + 1 > capacity) {
      st = tk_fail(tok, VNRT_ERROR_OUT_OF_RANGE,
                   "vnrt_tokenizer_chat_prompt: %zu bytes and a NUL do not fit in %zu", c.len,
                   capacity);
    } else {
      memcpy(text, c.buf ? c.buf : "", c.len);
      text[c.len] = '\0';
    }
  }
  chat_free(&c);
  return st;
}

vnrt_status vnrt_tokenizer_chat_encode(vnrt_tokenizer *tok, const vnrt_chat_message *messages,
                                       size_t n, uint32_t flags, int32_t *ids, size_t capacity,
                                       size_t *out_count) {
  if (tok == NULL) {
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  tok->error[0] = '\0';
  if (out_count == NULL || (ids == NULL && capacity > 0)) {
    return tk_fail(tok, VNRT_ERROR_INVALID_ARGUMENT,
                   "vnrt_tokenizer_chat_encode: out_count or ids (capacity > 0) NULL");
  }
  *out_count = 0;
  tk_chat c = {0};
  vnrt_status st = chat_build(tok, "vnrt_tokenizer_chat_encode", messages, n, flags, &c);
  tok->scratch.count = 0;
  /* markers that are added tokens become their ids; the text between them (contents, and
   * markers that are not tokens, like "</think>" in DeepSeek-V3's vocabulary) is plain text */
  size_t plain = 0;
  for (size_t m = 0; st == VNRT_OK && m <= c.mark_count; m++) {
    size_t start = m < c.mark_count ? c.marks[m].start : c.len;
    int32_t id = -1;
    if (m < c.mark_count) {
      id = tk_piece_lookup(tok, c.buf + start, c.marks[m].len);
      if (id >= 0 && !(tok->flags[id] & TK_ID_ADDED)) {
        id = -1;
      }
    }
    if (id < 0 && m < c.mark_count) {
      continue;
    }
    if (start > plain) {
      st = tk_encode_append(tok, c.buf + plain, start - plain, 0);
    }
    if (st == VNRT_OK && id >= 0) {
      st = tk_ids_push(tok, &tok->scratch, id);
      plain = start + c.marks[m].len;
    }
  }
  chat_free(&c);
  return st != VNRT_OK ? st : copy_ids(tok, "vnrt_tokenizer_chat_encode", ids, capacity, out_count);
}
