/* The ground floor (core/): the context's core state, the error sink, logging, the host
 * allocator and small containers. Every layer above (io, graph, memory, runtime) includes this;
 * it includes nothing but the public headers. */
#ifndef VNRT_CORE_CORE_H_
#define VNRT_CORE_CORE_H_

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vnrt/backend.h"
#include "vnrt/vnrt.h"

#define VN_ERROR_MAX 2048
/* The most CPU worker threads vnrt_context_desc.num_threads may ask for (docs/api.md). */
#define VN_MAX_THREADS 1024

typedef struct vn_registry vn_registry; /* opaque here: the runtime owns it (runtime/registry.c) */

struct vnrt_context {
  vnrt_allocator alloc;
  bool default_alloc; /* alloc is the C library's (the caller gave none) */
  vnrt_log_fn log_fn;
  void *log_user;
  vnrt_log_level log_level;
  int32_t num_threads;
  int32_t cores;        /* online CPU cores when the context was created */
  bool no_async_copies; /* testing: plans keep DualPath's host thread (runtime/plan_async.c) */
  char last_error[VN_ERROR_MAX];
  vnrt_backend_host host; /* what backends get; host.core == this context */
  vn_registry *registry;
  struct vn_options *options; /* runtime/options.c: what the desc set */
  bool log_stderr;            /* no log_fn: log to stderr (the "log" option), else nothing */
};

/* Records a detail message for ctx (printf-style) and returns status. ctx may be NULL. */
vnrt_status vn_error(vnrt_context *ctx, vnrt_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
vnrt_status vn_verror(vnrt_context *ctx, vnrt_status status, const char *fmt, va_list ap);
void vn_clear_error(vnrt_context *ctx);
void vn_log(vnrt_context *ctx, vnrt_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void *vn_malloc(vnrt_context *ctx, size_t size);
void *vn_calloc(vnrt_context *ctx, size_t count, size_t size); /* overflow-checked */
void *vn_realloc(vnrt_context *ctx, void *ptr, size_t size);
void vn_free(vnrt_context *ctx, void *ptr);
char *vn_strdup(vnrt_context *ctx, const char *s);

/* Fills a context's core state from desc (allocator, logging, threads, the backend host
 * services); the registry is left NULL. Fails with VNRT_ERROR_INVALID_ARGUMENT (the reason
 * logged through desc's log callback) on an allocator with some but not all of its functions,
 * a log_level that is not a vnrt_log_level, or num_threads outside [0, VN_MAX_THREADS]. */
vnrt_status vn_context_init_core(vnrt_context *ctx, const vnrt_context_desc *desc);
/* The backend host services on a context (host.core is the context). */
void vn_host_log(void *core, vnrt_log_level level, const char *fmt, ...);
vnrt_status vn_host_error(void *core, vnrt_status status, const char *fmt, ...);
void *vn_host_alloc(void *core, size_t size);
void vn_host_free(void *core, void *ptr);

/* Grows *items (of elem_size bytes) so that it holds at least need elements. */
bool vn_grow(vnrt_context *ctx, void **items, int32_t *capacity, int32_t need, size_t elem_size);

#define VN_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    vnrt_status vn_status_ = (expr);              \
    if (vn_status_ != VNRT_OK) return vn_status_; \
  } while (0)

#define VN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif /* VNRT_CORE_CORE_H_ */
