/* vnrt-tokenize: text on stdin to token ids on stdout with a tokenizer.json, or back. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/tokenizer.h"

static const char kUsage[] =
    "usage: vnrt-tokenize --model DIR|tokenizer.json [--decode] [--special] [--bos]\n"
    "                     [--skip-special]\n"
    "Reads text on stdin and prints its token ids separated by spaces. With --decode it reads\n"
    "ids (separated by white space) and prints their text.\n"
    "  --special       match added tokens such as <\xEF\xBD\x9CUser\xEF\xBD\x9C> in the text\n"
    "  --bos           put the bos id first\n"
    "  --skip-special  (--decode) leave special tokens out\n";

/* Reads all of stdin; NULL on failure (message printed). */
static char *read_stdin(size_t *out_len) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  while (buf != NULL) {
    size_t got = fread(buf + len, 1, cap - len, stdin);
    len += got;
    if (got == 0) {
      if (ferror(stdin)) {
        fprintf(stderr, "vnrt-tokenize: reading stdin: %s\n", strerror(errno));
        free(buf);
        return NULL;
      }
      *out_len = len;
      return buf;
    }
    if (len == cap) {
      char *grown = realloc(buf, cap * 2);
      if (grown == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
  }
  fprintf(stderr, "vnrt-tokenize: out of memory reading stdin\n");
  return NULL;
}

static int encode(vnrt_tokenizer *tok, const char *text, size_t len, uint32_t flags) {
  size_t count = 0;
  vnrt_status st = vnrt_tokenizer_encode(tok, text, len, flags, NULL, 0, &count);
  if (st != VNRT_OK && st != VNRT_ERROR_OUT_OF_RANGE) {
    fprintf(stderr, "vnrt-tokenize: %s\n", vnrt_tokenizer_last_error(tok));
    return 1;
  }
  int32_t *ids = malloc((count ? count : 1) * sizeof *ids);
  if (ids == NULL) {
    fprintf(stderr, "vnrt-tokenize: out of memory for %zu ids\n", count);
    return 1;
  }
  st = vnrt_tokenizer_encode(tok, text, len, flags, ids, count, &count);
  if (st != VNRT_OK) {
    fprintf(stderr, "vnrt-tokenize: %s\n", vnrt_tokenizer_last_error(tok));
    free(ids);
    return 1;
  }
  for (size_t i = 0; i < count; i++) {
    printf(i ? " %d" : "%d", ids[i]);
  }
  printf("\n");
  free(ids);
  return 0;
}

/* The ids in text (white space between them); NULL after a message on error. */
static int32_t *parse_ids(const char *text, size_t len, size_t *out_n) {
  if (memchr(text, '\0', len) != NULL) {
    fprintf(stderr, "vnrt-tokenize: --decode: NUL in input\n");
    return NULL;
  }
  size_t n = 0, cap = 256;
  int32_t *ids = malloc(cap * sizeof *ids);
  const char *p = text;
  while (ids != NULL) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
      p++;
    }
    if (*p == '\0') {
      *out_n = n;
      return ids;
    }
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno != 0 || v < INT32_MIN || v > INT32_MAX ||
        (*end != '\0' && *end != ' ' && *end != '\n' && *end != '\t' && *end != '\r')) {
      fprintf(stderr, "vnrt-tokenize: --decode: '%.20s' is not an id\n", p);
      free(ids);
      return NULL;
    }
    if (n == cap) {
      int32_t *grown = realloc(ids, 2 * cap * sizeof *ids);
      if (grown == NULL) {
        break;
      }
      ids = grown;
      cap *= 2;
    }
    ids[n++] = (int32_t)v;
    p = end;
  }
  free(ids);
  fprintf(stderr, "vnrt-tokenize: out of memory\n");
  return NULL;
}

static int decode(vnrt_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags) {
  /* a one-byte buffer: an id error leaves len 0, a size error asks for more */
  size_t len = 0;
  char probe[1];
  vnrt_status st = vnrt_tokenizer_decode(tok, ids, n, flags, probe, sizeof probe, &len);
  if (st != VNRT_OK && !(st == VNRT_ERROR_OUT_OF_RANGE && len + 1 > sizeof probe)) {
    fprintf(stderr, "vnrt-tokenize: %s\n", vnrt_tokenizer_last_error(tok));
    return 1;
  }
  char *out = malloc(len + 1);
  if (out == NULL) {
    fprintf(stderr, "vnrt-tokenize: out of memory for %zu bytes\n", len);
    return 1;
  }
  st = vnrt_tokenizer_decode(tok, ids, n, flags, out, len + 1, &len);
  if (st != VNRT_OK) {
    fprintf(stderr, "vnrt-tokenize: %s\n", vnrt_tokenizer_last_error(tok));
  } else {
    fwrite(out, 1, len, stdout);
  }
  free(out);
  return st != VNRT_OK;
}

int main(int argc, char **argv) {
  const char *model = NULL;
  int do_decode = 0;
  uint32_t enc_flags = 0, dec_flags = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
      model = argv[++i];
    } else if (strcmp(argv[i], "--decode") == 0) {
      do_decode = 1;
    } else if (strcmp(argv[i], "--special") == 0) {
      enc_flags |= VNRT_TOKENIZE_SPECIAL;
    } else if (strcmp(argv[i], "--bos") == 0) {
      enc_flags |= VNRT_TOKENIZE_ADD_BOS;
    } else if (strcmp(argv[i], "--skip-special") == 0) {
      dec_flags |= VNRT_DETOKENIZE_SKIP_SPECIAL;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fprintf(stderr, "vnrt-tokenize: unknown or incomplete argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (model == NULL) {
    fprintf(stderr, "vnrt-tokenize: --model DIR|tokenizer.json is required\n%s", kUsage);
    return 2;
  }
  /* the input first: a bad id list fails before the tokenizer is loaded */
  size_t len = 0, n = 0;
  char *text = read_stdin(&len);
  if (text == NULL) {
    return 1;
  }
  text[len] = '\0'; /* read_stdin leaves room */
  int32_t *ids = NULL;
  if (do_decode && (ids = parse_ids(text, len, &n)) == NULL) {
    free(text);
    return 1;
  }
  char err[512];
  vnrt_tokenizer *tok = NULL;
  int rc = 1;
  if (vnrt_tokenizer_open(NULL, model, &tok, err, sizeof err) != VNRT_OK) {
    fprintf(stderr, "vnrt-tokenize: %s\n", err);
  } else {
    rc = do_decode ? decode(tok, ids, n, dec_flags) : encode(tok, text, len, enc_flags);
  }
  free(ids);
  free(text);
  vnrt_tokenizer_destroy(tok);
  return rc;
}
