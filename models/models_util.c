/* Small helpers of the model library (models.h). */
#include "models.h"

#include <stdio.h>

vnrt_status vn_model_fail(char *err, size_t err_size, vnrt_status status, const char *fmt, ...) {
  if (err != NULL && err_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return status;
}
