/* Context options: every setting that is not a desc field of its own, in one table (key,
 * environment variable, accepted values), set through vnrt_context_desc and its "key=value"
 * list, with the environment as the default. The only place the library reads the
 * environment (docs/api.md, "Options"). */
#ifndef VNRT_RUNTIME_OPTIONS_H_
#define VNRT_RUNTIME_OPTIONS_H_

#include <stdbool.h>

#include "core.h"

/* Parses desc's options (its fields, then its "key=value" list, which wins) into ctx->options
 * and installs ctx->host.option. Fails with VNRT_ERROR_INVALID_ARGUMENT naming an unknown key,
 * a pair without '=', or a value outside the key's accepted ones. */
vnrt_status vn_options_create(vnrt_context *ctx, const vnrt_context_desc *desc);
void vn_options_destroy(vnrt_context *ctx);

/* An option's value: the one the desc set, else its environment variable's (read now, so a
 * changed environment counts from the next call that looks), else NULL. An unknown key is
 * NULL. "cache_dir" resolves the default: $VNRT_CACHE_DIR, else $XDG_CACHE_HOME/vnrt, else
 * $HOME/.cache/vnrt; "none" (or no home) means no disk cache. The pointer is valid until the
 * next lookup on ctx. */
const char *vn_option(vnrt_context *ctx, const char *key);
/* Whether the desc set key (messages then name the option rather than the variable). */
bool vn_option_is_set(const vnrt_context *ctx, const char *key);
/* The environment variable behind key ("VNRT_DEVICE"), or key itself if it has none. */
const char *vn_option_env(const char *key);

#endif /* VNRT_RUNTIME_OPTIONS_H_ */
