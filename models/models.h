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

#endif /* VNRT_MODELS_MODELS_H_ */
