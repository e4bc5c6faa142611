/* Per-device memory accounting: bytes in use per tier, and a limit on the device tier. */
#ifndef VNRT_MEMORY_BUDGET_H_
#define VNRT_MEMORY_BUDGET_H_

#include <stdatomic.h>
#include <stdint.h>

#include "core.h"

/* Where bytes live. Only VN_TIER_DEVICE counts against the limit: the other tiers are
 * recorded so that a run can report where its memory went (and so that a file-mapped table far
 * larger than the device is visibly not device memory). */
typedef enum vn_tier {
  VN_TIER_DEVICE = 0,       /* device-local memory */
  VN_TIER_HOST_VISIBLE = 1, /* staging: host memory the device can read/write (pinned, mapped) */
  VN_TIER_HOST = 2,         /* ordinary host memory */
  VN_TIER_FILE_MAPPED = 3,  /* read-only file mappings (weights, Engram tables) */
  VN_TIER_COUNT = 4,
} vn_tier;

/* A short lowercase name for a tier ("device", "host-visible", "host", "file-mapped"). */
const char *vn_tier_name(vn_tier tier);

/* The environment variable that limits device memory when the API sets no limit. */
#define VN_BUDGET_ENV "VNRT_DEVICE_MEMORY_LIMIT"

/* One device's accounting. Embed it (no allocation) and call vn_budget_init. The counters are
 * atomics: reserve/release/query may be called from several threads at once (the copy stream
 * allocates from its own thread); init and changing the limit may not race with them. The
 * status of a failed reservation is always exact, but its message goes to ctx's last-error
 * buffer, which (like all context state) is not synchronised: when two threads fail at once
 * the message may be either one's. */
typedef struct vn_budget {
  vnrt_context *ctx; /* borrowed; receives the messages of failed reservations */
  uint64_t limit;    /* device tier limit in bytes; 0 = unlimited */
  _Atomic uint64_t used[VN_TIER_COUNT];
  _Atomic uint64_t peak[VN_TIER_COUNT];
  _Atomic uint64_t failures; /* reservations refused for the limit */
} vn_budget;

/* Resets every counter and sets the limit (0 = unlimited). ctx may be NULL (no messages). */
void vn_budget_init(vn_budget *b, vnrt_context *ctx, uint64_t limit);

/* Parses a byte count: a decimal number with an optional fraction and an optional unit
 * K, M, G or T (powers of 1024, case-insensitive), optionally followed by "B" or "iB", with
 * optional spaces between the number and the unit: "1048576", "512K", "256M", "1.5G", "2 GiB",
 * "64kb". A fraction is rounded down to whole bytes. Garbage, a sign, an empty string and values
 * above UINT64_MAX fail with VNRT_ERROR_INVALID_ARGUMENT and a message quoting the text.
 * *out is set to 0 on failure. */
vnrt_status vn_budget_parse(vnrt_context *ctx, const char *text, uint64_t *out);

/* The device limit to use: api_limit if nonzero, else $VNRT_DEVICE_MEMORY_LIMIT if set and
 * non-empty, else 0 (unlimited). A malformed variable fails with VNRT_ERROR_INVALID_ARGUMENT
 * naming the variable and its text. */
vnrt_status vn_budget_limit_from_env(vnrt_context *ctx, uint64_t api_limit, uint64_t *out_limit);

/* Records `bytes` more in `tier`. For VN_TIER_DEVICE with a limit, fails with
 * VNRT_ERROR_BUDGET_EXCEEDED (nothing recorded) when used + bytes would exceed the limit; the
 * message names `what` (e.g. a tensor name; NULL: "an allocation") and gives the bytes needed,
 * in use and the limit. The check and the update are one atomic step, so concurrent reservers
 * can never together overshoot the limit. An unknown tier or a counter overflow fails with
 * VNRT_ERROR_INVALID_ARGUMENT. */
vnrt_status vn_budget_reserve(vn_budget *b, vn_tier tier, uint64_t bytes, const char *what);

/* Returns bytes reserved earlier in `tier`. Releasing more than is in use is a bug in the
 * caller: the counter is clamped at 0 and VNRT_ERROR_INTERNAL is returned. */
vnrt_status vn_budget_release(vn_budget *b, vn_tier tier, uint64_t bytes);

/* Bytes in use and the highest value ever in use (since init) in a tier; 0 for a bad tier. */
uint64_t vn_budget_used(const vn_budget *b, vn_tier tier);
uint64_t vn_budget_peak(const vn_budget *b, vn_tier tier);
/* Device bytes still available under the limit (UINT64_MAX when unlimited). */
uint64_t vn_budget_available(const vn_budget *b);
/* How many reservations were refused for the limit since init. */
uint64_t vn_budget_failures(const vn_budget *b);

#endif /* VNRT_MEMORY_BUDGET_H_ */
