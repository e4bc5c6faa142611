/* The model API's last-error message (vnrt_model_last_error), kept per thread. */
#ifndef VNRT_MODELS_MODEL_ERROR_H_
#define VNRT_MODELS_MODEL_ERROR_H_

#include "vnrt/vnrt.h"

/* Sets the message (printf-style) and returns st. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
vnrt_status
vn_model_error(vnrt_status st, const char *fmt, ...);

#endif /* VNRT_MODELS_MODEL_ERROR_H_ */
