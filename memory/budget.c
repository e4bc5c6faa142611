/* Device memory budgets: byte-count parsing, the environment limit, and atomic per-tier
 * accounting whose limit check cannot be raced past. */
#include "budget.h"

#include <stdlib.h>
#include <string.h>

const char *vn_tier_name(vn_tier tier) {
  switch (tier) {
    case VN_TIER_DEVICE:
      return "device";
    case VN_TIER_HOST_VISIBLE:
      return "host-visible";
    case VN_TIER_HOST:
      return "host";
    case VN_TIER_FILE_MAPPED:
      return "file-mapped";
    default:
      return "invalid";
  }
}

void vn_budget_init(vn_budget *b, vnrt_context *ctx, uint64_t limit) {
  b->ctx = ctx;
  b->limit = limit;
  for (int i = 0; i < VN_TIER_COUNT; ++i) {
    atomic_init(&b->used[i], 0);
    atomic_init(&b->peak[i], 0);
  }
  atomic_init(&b->failures, 0);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* floor(num * mult / den) for num < den; the product needs more than 64 bits. */
static uint64_t frac_bytes(uint64_t num, uint64_t den, uint64_t mult) {
#ifdef __SIZEOF_INT128__
  return (uint64_t)((unsigned __int128)num * mult / den);
#else
  return (uint64_t)((long double)num * (long double)mult / (long double)den);
#endif
}

vnrt_status vn_budget_parse(vnrt_context *ctx, const char *text, uint64_t *out) {
  *out = 0;
  if (!text) return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "memory size is NULL");
  const char *p = text;
  while (is_space(*p)) ++p;
  if (!is_digit(*p)) goto bad;

  uint64_t whole = 0;
  for (; is_digit(*p); ++p) {
    uint64_t d = (uint64_t)(*p - '0');
    if (whole > (UINT64_MAX - d) / 10) goto overflow;
    whole = whole * 10 + d;
  }
  /* The fraction is kept as num/den with at most 18 digits: later digits cannot change a
   * result that is rounded down to whole bytes of a unit at most 2^40. */
  uint64_t num = 0, den = 1;
  if (*p == '.') {
    ++p;
    if (!is_digit(*p)) goto bad;
    for (int n = 0; is_digit(*p); ++p, ++n) {
      if (n < 18) num = num * 10 + (uint64_t)(*p - '0'), den *= 10;
    }
  }
  while (is_space(*p)) ++p;

  uint64_t mult = 1;
  switch (lower(*p)) {
    case 'k':
      mult = 1ull << 10;
      break;
    case 'm':
      mult = 1ull << 20;
      break;
    case 'g':
      mult = 1ull << 30;
      break;
    case 't':
      mult = 1ull << 40;
      break;
    default:
      break;
  }
  if (mult != 1) {
    ++p;
    if (lower(p[0]) == 'i' && lower(p[1]) == 'b') {
      p += 2;
    } else if (lower(*p) == 'b') {
      ++p;
    }
  } else if (lower(*p) == 'b') {
    ++p;
  }
  while (is_space(*p)) ++p;
  if (*p != '\0') goto bad;

  if (whole > UINT64_MAX / mult) goto overflow;
  uint64_t bytes = whole * mult;
  uint64_t extra = frac_bytes(num, den, mult);
  if (bytes > UINT64_MAX - extra) goto overflow;
  *out = bytes + extra;
  return VNRT_OK;

bad:
  return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                  "memory size \"%s\" is not a byte count such as 1048576, 512K, 256M, 1.5G "
                  "or 2GiB",
                  text);
overflow:
  return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                  "memory size \"%s\" does not fit in 64 bits (at most 18446744073709551615 bytes)",
                  text);
}

vnrt_status vn_budget_limit_from_env(vnrt_context *ctx, uint64_t api_limit, uint64_t *out_limit) {
  *out_limit = api_limit;
  if (api_limit != 0) return VNRT_OK;
  /* The context's device_memory_limit option, whose default is $VNRT_DEVICE_MEMORY_LIMIT
   * (runtime/options.c reads the environment). */
  const char *env = ctx && ctx->host.option ? ctx->host.option(ctx, "device_memory_limit") : NULL;
  if (!env || !*env) return VNRT_OK;
  vnrt_status s = vn_budget_parse(ctx, env, out_limit);
  if (s != VNRT_OK) {
    return vn_error(ctx, s,
                    "%s=\"%s\" (or the device_memory_limit option) is not a byte count such as "
                    "1048576, 512K, 256M or 1.5G",
                    VN_BUDGET_ENV, env);
  }
  return VNRT_OK;
}

static void raise_peak(vn_budget *b, vn_tier tier, uint64_t value) {
  uint64_t peak = atomic_load_explicit(&b->peak[tier], memory_order_relaxed);
  while (peak < value &&
         !atomic_compare_exchange_weak_explicit(&b->peak[tier], &peak, value, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

vnrt_status vn_budget_reserve(vn_budget *b, vn_tier tier, uint64_t bytes, const char *what) {
  if (!b || (unsigned)tier >= VN_TIER_COUNT) {
    return vn_error(b ? b->ctx : NULL, VNRT_ERROR_INVALID_ARGUMENT,
                    "budget reserve: no budget or bad tier %d", (int)tier);
  }
  const uint64_t limit = tier == VN_TIER_DEVICE ? b->limit : 0;
  uint64_t used = atomic_load_explicit(&b->used[tier], memory_order_relaxed);
  uint64_t next;
  /* A compare-exchange loop makes "check against the limit, then add" one step. */
  do {
    if (limit != 0 && (used > limit || bytes > limit - used)) {
      atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
      return vn_error(b->ctx, VNRT_ERROR_BUDGET_EXCEEDED,
                      "%s needs %llu bytes of device memory, but %llu of the %llu-byte limit are "
                      "in use (%llu available; the limit is set by the API or %s)",
                      what ? what : "an allocation", (unsigned long long)bytes,
                      (unsigned long long)used, (unsigned long long)limit,
                      (unsigned long long)(limit > used ? limit - used : 0), VN_BUDGET_ENV);
    }
    if (bytes > UINT64_MAX - used) {
      return vn_error(b->ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "%s: %llu more bytes of %s memory overflow the counter (%llu in use)",
                      what ? what : "an allocation", (unsigned long long)bytes, vn_tier_name(tier),
                      (unsigned long long)used);
    }
    next = used + bytes;
  } while (!atomic_compare_exchange_weak_explicit(&b->used[tier], &used, next, memory_order_relaxed,
                                                  memory_order_relaxed));
  raise_peak(b, tier, next);
  return VNRT_OK;
}

vnrt_status vn_budget_release(vn_budget *b, vn_tier tier, uint64_t bytes) {
  if (!b || (unsigned)tier >= VN_TIER_COUNT) {
    return vn_error(b ? b->ctx : NULL, VNRT_ERROR_INVALID_ARGUMENT,
                    "budget release: no budget or bad tier %d", (int)tier);
  }
  uint64_t used = atomic_load_explicit(&b->used[tier], memory_order_relaxed);
  uint64_t next;
  do {
    next = bytes > used ? 0 : used - bytes;
  } while (!atomic_compare_exchange_weak_explicit(&b->used[tier], &used, next, memory_order_relaxed,
                                                  memory_order_relaxed));
  if (bytes > used) {
    return vn_error(b->ctx, VNRT_ERROR_INTERNAL,
                    "released %llu bytes of %s memory but only %llu were in use",
                    (unsigned long long)bytes, vn_tier_name(tier), (unsigned long long)used);
  }
  return VNRT_OK;
}

uint64_t vn_budget_used(const vn_budget *b, vn_tier tier) {
  if (!b || (unsigned)tier >= VN_TIER_COUNT) return 0;
  return atomic_load_explicit(&b->used[tier], memory_order_relaxed);
}

uint64_t vn_budget_peak(const vn_budget *b, vn_tier tier) {
  if (!b || (unsigned)tier >= VN_TIER_COUNT) return 0;
  return atomic_load_explicit(&b->peak[tier], memory_order_relaxed);
}

uint64_t vn_budget_available(const vn_budget *b) {
  if (!b) return 0;
  if (b->limit == 0) return UINT64_MAX;
  uint64_t used = vn_budget_used(b, VN_TIER_DEVICE);
  return used >= b->limit ? 0 : b->limit - used;
}

uint64_t vn_budget_failures(const vn_budget *b) {
  return b ? atomic_load_explicit(&b->failures, memory_order_relaxed) : 0;
}
