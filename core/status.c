/* Status names, the version query, and the context's error and log plumbing. */
#include <stdio.h>
#include <string.h>

#include "core.h"

const char *vnrt_version(int *out_major, int *out_minor, int *out_patch) {
  if (out_major) *out_major = VNRT_VERSION_MAJOR;
  if (out_minor) *out_minor = VNRT_VERSION_MINOR;
  if (out_patch) *out_patch = VNRT_VERSION_PATCH;
#define VN_STR2_(x) #x
#define VN_STR_(x) VN_STR2_(x)
  return VN_STR_(VNRT_VERSION_MAJOR) "." VN_STR_(VNRT_VERSION_MINOR) "." VN_STR_(
      VNRT_VERSION_PATCH);
}

const char *vnrt_status_string(vnrt_status status) {
  switch (status) {
    case VNRT_OK:
      return "VNRT_OK";
    case VNRT_ERROR_INVALID_ARGUMENT:
      return "VNRT_ERROR_INVALID_ARGUMENT";
    case VNRT_ERROR_INVALID_GRAPH:
      return "VNRT_ERROR_INVALID_GRAPH";
    case VNRT_ERROR_SHAPE_MISMATCH:
      return "VNRT_ERROR_SHAPE_MISMATCH";
    case VNRT_ERROR_NOT_FOUND:
      return "VNRT_ERROR_NOT_FOUND";
    case VNRT_ERROR_UNSUPPORTED:
      return "VNRT_ERROR_UNSUPPORTED";
    case VNRT_ERROR_OUT_OF_MEMORY:
      return "VNRT_ERROR_OUT_OF_MEMORY";
    case VNRT_ERROR_BUDGET_EXCEEDED:
      return "VNRT_ERROR_BUDGET_EXCEEDED";
    case VNRT_ERROR_OUT_OF_RANGE:
      return "VNRT_ERROR_OUT_OF_RANGE";
    case VNRT_ERROR_IO:
      return "VNRT_ERROR_IO";
    case VNRT_ERROR_DEVICE:
      return "VNRT_ERROR_DEVICE";
    case VNRT_ERROR_INTERNAL:
      return "VNRT_ERROR_INTERNAL";
  }
  return "VNRT_ERROR_UNKNOWN";
}

vnrt_status vn_verror(vnrt_context *ctx, vnrt_status status, const char *fmt, va_list ap) {
  if (!ctx) return status;
  vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
  return status;
}

vnrt_status vn_error(vnrt_context *ctx, vnrt_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vn_verror(ctx, status, fmt, ap);
  va_end(ap);
  return status;
}

void vn_clear_error(vnrt_context *ctx) {
  if (ctx) ctx->last_error[0] = '\0';
}

const char *vnrt_context_last_error(const vnrt_context *ctx) { return ctx ? ctx->last_error : ""; }

static void vn_vlog(vnrt_context *ctx, vnrt_log_level level, const char *fmt, va_list ap) {
  if (!ctx || level < ctx->log_level) return;
  char msg[VN_ERROR_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (ctx->log_fn) {
    ctx->log_fn(ctx->log_user, level, msg);
    return;
  }
  if (!ctx->log_stderr) return; /* a library writes nothing of its own (docs/api.md) */
  static const char *const names[] = {"debug", "info", "warning", "error"};
  fprintf(stderr, "vnrt: %s: %s\n", names[level < 0 || level > 3 ? 3 : level], msg);
}

void vn_log(vnrt_context *ctx, vnrt_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vn_vlog(ctx, level, fmt, ap);
  va_end(ap);
}

/* The vnrt_backend_host callbacks: backends get the context as an opaque `core`. */
void vn_host_log(void *core, vnrt_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vn_vlog((vnrt_context *)core, level, fmt, ap);
  va_end(ap);
}

vnrt_status vn_host_error(void *core, vnrt_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vn_verror((vnrt_context *)core, status, fmt, ap);
  va_end(ap);
  return status;
}
