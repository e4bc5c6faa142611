/* Internal helpers shared by the model library (models/): the DeepSeek-V4 loader, graph builder,
 * sessions and the tokenizer. The model library is built only on the public headers
 * (include/vnrt/); nothing below it includes this folder. */
#ifndef VNRT_MODELS_MODELS_H_
#define VNRT_MODELS_MODELS_H_

#include <stdarg.h>
#include <stddef.h>

#include "vnrt/vnrt.h"

/* Writes a printf-style message into err[err_size] (when err is not NULL) and returns status:
 * `return vn_model_fail(err, n, VNRT_ERROR_INVALID_ARGUMENT, "config.json: %s missing", k);` */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
vnrt_status
vn_model_fail(char *err, size_t err_size, vnrt_status status, const char *fmt, ...);

/* Reads the whole file at path into *out (malloc'd, NUL-terminated; free() it) and its length
 * into *out_len. A file larger than about max_bytes fails with VNRT_ERROR_IO ("too large")
 * instead of being read in part; the messages start with path. */
vnrt_status vn_model_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                               char *err, size_t err_size);

#endif /* VNRT_MODELS_MODELS_H_ */
