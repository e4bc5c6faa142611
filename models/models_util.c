/* Small helpers of the model library (models.h). */
#include "models.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vnrt_status vn_model_fail(char *err, size_t err_size, vnrt_status status, const char *fmt, ...) {
  if (err != NULL && err_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return status;
}

vnrt_status vn_model_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                               char *err, size_t err_size) {
  *out = NULL;
  *out_len = 0;
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    return vn_model_fail(err, err_size, VNRT_ERROR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  bool too_big = false;
  while (buf) {
    len += fread(buf + len, 1, cap - len, fp);
    if (len < cap) break;
    if (cap >= max_bytes) {
      too_big = true; /* a file of exactly max_bytes is refused too: simpler than a probe */
      break;
    }
    char *nb = realloc(buf, cap * 2 + 1);
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  const bool read_err = ferror(fp) != 0;
  fclose(fp);
  if (!buf)
    return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
  if (read_err || too_big) {
    free(buf);
    return vn_model_fail(err, err_size, VNRT_ERROR_IO, "%s: %s", path,
                         read_err ? "read error" : "too large");
  }
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return VNRT_OK;
}
