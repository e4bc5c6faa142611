/* The context's lower half: its host allocator, the small containers built on it, and the
 * services every layer reads from it (docs/api.md). The runtime's context.c creates the
 * context and its device registry on top of this. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static void *default_malloc(void *user, size_t size) {
  (void)user;
  return malloc(size);
}
static void *default_realloc(void *user, void *p, size_t size) {
  (void)user;
  return realloc(p, size);
}
static void default_free(void *user, void *p) {
  (void)user;
  free(p);
}

void *vn_malloc(vnrt_context *ctx, size_t size) {
  return ctx->alloc.malloc_fn(ctx->alloc.user, size ? size : 1);
}

void *vn_calloc(vnrt_context *ctx, size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  void *p = vn_malloc(ctx, count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *vn_realloc(vnrt_context *ctx, void *ptr, size_t size) {
  return ctx->alloc.realloc_fn(ctx->alloc.user, ptr, size ? size : 1);
}

void vn_free(vnrt_context *ctx, void *ptr) {
  if (ptr) ctx->alloc.free_fn(ctx->alloc.user, ptr);
}

char *vn_strdup(vnrt_context *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = vn_malloc(ctx, n);
  if (d) memcpy(d, s, n);
  return d;
}

bool vn_grow(vnrt_context *ctx, void **items, int32_t *capacity, int32_t need, size_t elem_size) {
  if (need <= *capacity) return true;
  if (need < 0 || need > INT32_MAX / 2) return false;
  int32_t cap = *capacity ? *capacity : 8;
  while (cap < need) cap *= 2;
  if ((size_t)cap > SIZE_MAX / elem_size) return false;
  void *p = vn_realloc(ctx, *items, (size_t)cap * elem_size);
  if (!p) return false;
  *items = p;
  *capacity = cap;
  return true;
}

void vnrt_free(vnrt_context *ctx, void *ptr) {
  if (ctx) vn_free(ctx, ptr);
}

void *vn_host_alloc(void *core, size_t size) { return vn_malloc((vnrt_context *)core, size); }
void vn_host_free(void *core, void *p) { vn_free((vnrt_context *)core, p); }

/* Reports a bad vnrt_context_desc: no context exists to hold the message, so it goes through
 * the desc's log callback (nowhere without one) at error level. */
static vnrt_status bad_desc(vnrt_context *ctx, const vnrt_context_desc *d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vnrt_status bad_desc(vnrt_context *ctx, const vnrt_context_desc *d, const char *fmt, ...) {
  memset(ctx, 0, sizeof *ctx);
  ctx->log_fn = d->log_fn;
  ctx->log_user = d->log_user;
  ctx->log_level = VNRT_LOG_ERROR;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  vn_log(ctx, VNRT_LOG_ERROR, "vnrt_context_create: %s", msg);
  return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "vnrt_context_create: %s", msg);
}

vnrt_status vn_context_init_core(vnrt_context *ctx, const vnrt_context_desc *d) {
  int have_alloc = d->allocator.malloc_fn && d->allocator.realloc_fn && d->allocator.free_fn;
  if (!have_alloc && (d->allocator.malloc_fn || d->allocator.realloc_fn || d->allocator.free_fn)) {
    return bad_desc(ctx, d,
                    "vnrt_context_desc.allocator: set malloc_fn, realloc_fn and free_fn, or none");
  }
  if ((int)d->log_level < VNRT_LOG_DEBUG || (int)d->log_level > VNRT_LOG_ERROR) {
    return bad_desc(ctx, d,
                    "vnrt_context_desc.log_level=%d is not a vnrt_log_level (0 DEBUG .. 3 ERROR)",
                    (int)d->log_level);
  }
  if (d->num_threads < 0 || d->num_threads > VN_MAX_THREADS) {
    return bad_desc(ctx, d, "vnrt_context_desc.num_threads=%d is outside [0, %d] (0: all cores)",
                    d->num_threads, VN_MAX_THREADS);
  }
  memset(ctx, 0, sizeof *ctx);
  ctx->alloc = d->allocator;
  if (!have_alloc)
    ctx->alloc = (vnrt_allocator){default_malloc, default_realloc, default_free, NULL};
  ctx->default_alloc = !have_alloc;
  ctx->log_fn = d->log_fn;
  ctx->log_user = d->log_user;
  ctx->log_level = d->log_level;
  if (!d->log_fn && ctx->log_level < VNRT_LOG_WARN) ctx->log_level = VNRT_LOG_WARN;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  ctx->cores = cores > 0 ? (int32_t)cores : 1;
  ctx->num_threads = d->num_threads > 0 ? d->num_threads : ctx->cores;
  ctx->host = (vnrt_backend_host){
      .struct_size = sizeof(vnrt_backend_host),
      .core = ctx,
      .log = vn_host_log,
      .error = vn_host_error,
      .alloc = vn_host_alloc,
      .free = vn_host_free,
      .num_threads = ctx->num_threads,
  };
  return VNRT_OK;
}
