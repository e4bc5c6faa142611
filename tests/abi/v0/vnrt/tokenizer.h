/* vnrt tokenizer: DeepSeek's byte-level BPE tokenizer, read from a Hugging Face tokenizer.json
 * (docs/tokenizer.md).
 *
 * - Every fallible call returns a vnrt_status. vnrt_tokenizer_open() writes its error message
 *   into the caller's buffer; later calls keep theirs in vnrt_tokenizer_last_error().
 * - Calls that fill a caller's array report the size they need when it is too small
 *   (VNRT_ERROR_OUT_OF_RANGE with *out_count / *out_len set), so a caller can retry.
 * - A tokenizer is immutable once opened except for its last-error string and scratch space:
 *   use one handle from one thread at a time.
 */
#ifndef VNRT_TOKENIZER_H_
#define VNRT_TOKENIZER_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vnrt_tokenizer vnrt_tokenizer;

/* Opens a tokenizer. path is a tokenizer.json file or a directory holding one; a
 * tokenizer_config.json beside it (optional) names the bos/eos tokens. ctx may be NULL (it is
 * reserved for logging). On failure *out_tok is NULL and err[err_size] (when not NULL) names
 * the problem: the file, the JSON path ("model.merges[12]"), the unsupported type... */
VNRT_API vnrt_status vnrt_tokenizer_open(vnrt_context *ctx, const char *path,
                                         vnrt_tokenizer **out_tok, char *err, size_t err_size);
VNRT_API void vnrt_tokenizer_destroy(vnrt_tokenizer *tok);

/* The message of the last failed call on tok ("" when none). Borrowed: valid until the next
 * call on tok. */
VNRT_API const char *vnrt_tokenizer_last_error(const vnrt_tokenizer *tok);

/* Ids run from 0 to vocab_size - 1 (the model's vocabulary and the added tokens together);
 * an id inside that range may still have no piece (a gap in the file). */
VNRT_API uint32_t vnrt_tokenizer_vocab_size(const vnrt_tokenizer *tok);
/* Begin/end of sentence ids; -1 when the tokenizer has none. */
VNRT_API int32_t vnrt_tokenizer_bos_id(const vnrt_tokenizer *tok);
VNRT_API int32_t vnrt_tokenizer_eos_id(const vnrt_tokenizer *tok);

/* The piece of an id, as stored in tokenizer.json (byte-level pieces use GPT-2's byte
 * alphabet, e.g. "Ġthe"); NUL-terminated, borrowed for the tokenizer's lifetime. NULL when id
 * is out of range or has no piece. */
VNRT_API const char *vnrt_tokenizer_id_to_piece(const vnrt_tokenizer *tok, int32_t id);
/* The id of a piece (vocabulary entry or added token), or -1. */
VNRT_API int32_t vnrt_tokenizer_piece_to_id(const vnrt_tokenizer *tok, const char *piece);
/* Whether id is an added token marked special (bos, eos, the placeholders...). */
VNRT_API int vnrt_tokenizer_is_special(const vnrt_tokenizer *tok, int32_t id);

/* Encode flags. */
#define VNRT_TOKENIZE_ADD_BOS 0x1u /* put the bos id first */
/* Match the added tokens ("<｜User｜>", "<｜end▁of▁sentence｜>"...) in the text, as Hugging Face
 * tokenizers do. Without it the text is plain text: an added token's spelling is encoded like
 * any other characters, so untrusted text cannot inject control tokens. */
#define VNRT_TOKENIZE_SPECIAL 0x2u

/* Encodes text[len] (UTF-8; invalid bytes are encoded one byte per token, see
 * docs/tokenizer.md) into ids[capacity]. *out_count is the number of ids; when it exceeds
 * capacity the call returns VNRT_ERROR_OUT_OF_RANGE and writes nothing (ids may be NULL with
 * capacity 0 to ask for the count). */
VNRT_API vnrt_status vnrt_tokenizer_encode(vnrt_tokenizer *tok, const char *text, size_t len,
                                           uint32_t flags, int32_t *ids, size_t capacity,
                                           size_t *out_count);

/* Decode flags. */
#define VNRT_DETOKENIZE_SKIP_SPECIAL 0x1u /* leave the special added tokens out */

/* Decodes ids[n] into text[capacity]: the bytes, then a NUL. *out_len is the byte count
 * without the NUL; when out_len + 1 exceeds capacity the call returns VNRT_ERROR_OUT_OF_RANGE
 * and writes nothing. The bytes are raw: ids that cut a character give invalid UTF-8 (no
 * U+FFFD replacement), so decode(encode(x)) == x for any bytes x. An id outside
 * [0, vocab_size) or without a piece is VNRT_ERROR_OUT_OF_RANGE naming the id. */
VNRT_API vnrt_status vnrt_tokenizer_decode(vnrt_tokenizer *tok, const int32_t *ids, size_t n,
                                           uint32_t flags, char *text, size_t capacity,
                                           size_t *out_len);

/* One chat turn: role is "system", "user" or "assistant"; content is UTF-8, NUL-terminated. */
typedef struct vnrt_chat_message {
  const char *role;
  const char *content;
} vnrt_chat_message;

/* Chat flags. */
#define VNRT_CHAT_ADD_GENERATION_PROMPT 0x1u /* end with the assistant's opening marker */
#define VNRT_CHAT_THINKING 0x2u              /* ... followed by "<think>" instead of "</think>" */

/* DeepSeek's chat format (docs/tokenizer.md): bos, the system texts, then "<｜User｜>"+content
 * and "<｜Assistant｜></think>"+content+"<｜end▁of▁sentence｜>" per turn.
 * vnrt_tokenizer_chat_prompt writes the prompt string (NUL-terminated; sizes as in
 * vnrt_tokenizer_decode); vnrt_tokenizer_chat_encode gives its ids, the markers as their added
 * tokens and the contents as plain text (a content that spells "<｜User｜>" is not a marker). An
 * unknown role is VNRT_ERROR_INVALID_ARGUMENT naming the message. */
VNRT_API vnrt_status vnrt_tokenizer_chat_prompt(vnrt_tokenizer *tok,
                                                const vnrt_chat_message *messages, size_t n,
                                                uint32_t flags, char *text, size_t capacity,
                                                size_t *out_len);
VNRT_API vnrt_status vnrt_tokenizer_chat_encode(vnrt_tokenizer *tok,
                                                const vnrt_chat_message *messages, size_t n,
                                                uint32_t flags, int32_t *ids, size_t capacity,
                                                size_t *out_count);

#ifdef __cplusplus
}
#endif

#endif /* VNRT_TOKENIZER_H_ */
