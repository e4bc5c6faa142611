/* The context: the core services (core/context.c) and the device registry it owns. */
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "options.h"
#include "registry.h"
#include "sized.h"

vnrt_status vnrt_context_create(const vnrt_context_desc *desc, vnrt_context **out_ctx) {
  if (!out_ctx) return VNRT_ERROR_INVALID_ARGUMENT;
  *out_ctx = NULL;
  vnrt_context_desc d;
  vnrt_context probe;
  if (vn_sized_read(&probe, &vn_sized_context_desc, desc, &d) != VNRT_OK) {
    /* The desc's own log callback cannot be trusted when its size is not: the default logger
     * reports it. */
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", probe.last_error);
    const vnrt_context_desc defaults = {0};
    if (vn_context_init_core(&probe, &defaults) == VNRT_OK) {
      vn_log(&probe, VNRT_LOG_ERROR, "vnrt_context_create: %s", msg);
    }
    return VNRT_ERROR_INVALID_ARGUMENT;
  }
  /* The context lives in the caller's allocator when there is one; the core checks it. */
  VN_RETURN_IF_ERROR(vn_context_init_core(&probe, &d));
  vnrt_context *ctx = probe.alloc.malloc_fn(probe.alloc.user, sizeof *ctx);
  if (!ctx) {
    vn_log(&probe, VNRT_LOG_ERROR, "vnrt_context_create: out of memory allocating the context");
    return VNRT_ERROR_OUT_OF_MEMORY;
  }
  *ctx = probe;
  ctx->host.core = ctx;
  vnrt_status s = vn_options_create(ctx, &d);
  if (s == VNRT_OK) s = vn_registry_create(ctx, &d, &ctx->registry);
  if (s != VNRT_OK) {
    /* The context is unusable; report the message through the log since no handle exists. */
    vn_log(ctx, VNRT_LOG_ERROR, "vnrt_context_create: %s", ctx->last_error);
    vn_options_destroy(ctx);
    vnrt_allocator a = ctx->alloc;
    a.free_fn(a.user, ctx);
    return s;
  }
  *out_ctx = ctx;
  return VNRT_OK;
}

void vnrt_context_destroy(vnrt_context *ctx) {
  if (!ctx) return;
  vn_registry_destroy(ctx, ctx->registry);
  vn_options_destroy(ctx);
  vnrt_allocator a = ctx->alloc;
  a.free_fn(a.user, ctx);
}

const char *vnrt_context_option(vnrt_context *ctx, const char *key) {
  return ctx && key ? vn_option(ctx, key) : NULL;
}
