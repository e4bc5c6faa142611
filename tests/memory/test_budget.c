/* Tests of device memory budgets: byte-count parsing, the environment limit, exact messages of
 * refused reservations, and counters that stay exact under concurrent reservers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "test_util.h"

static void expect_parse(vnrt_context *ctx, const char *text, uint64_t expected) {
  uint64_t v = 12345;
  vnrt_status s = vn_budget_parse(ctx, text, &v);
  ck_assert_msg(s == VNRT_OK, "\"%s\": %s: %s", text, vnrt_status_string(s),
                vnrt_context_last_error(ctx));
  ck_assert_msg(v == expected, "\"%s\" parsed as %llu, expected %llu", text, (unsigned long long)v,
                (unsigned long long)expected);
}

static void expect_parse_error(vnrt_context *ctx, const char *text) {
  uint64_t v = 12345;
  vnrt_status s = vn_budget_parse(ctx, text, &v);
  ck_assert_msg(s == VNRT_ERROR_INVALID_ARGUMENT, "\"%s\" gave %s (value %llu)", text,
                vnrt_status_string(s), (unsigned long long)v);
  ck_assert_uint_eq(v, 0);
  char quoted[128];
  snprintf(quoted, sizeof quoted, "\"%s\"", text);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), quoted) != NULL,
                "message does not quote %s: %s", quoted, vnrt_context_last_error(ctx));
}

START_TEST(parse_accepts_plain_and_suffixed_sizes) {
  vnrt_context *ctx = tu_context();
  expect_parse(ctx, "0", 0);
  expect_parse(ctx, "1048576", 1048576ull);
  expect_parse(ctx, "512K", 512ull * 1024);
  expect_parse(ctx, "512k", 512ull * 1024);
  expect_parse(ctx, "256M", 256ull * 1024 * 1024);
  expect_parse(ctx, "1G", 1024ull * 1024 * 1024);
  expect_parse(ctx, "1g", 1024ull * 1024 * 1024);
  expect_parse(ctx, "2T", 2ull << 40);
  expect_parse(ctx, "1.5G", 1610612736ull); /* 1.5 * 2^30 */
  expect_parse(ctx, "0.5K", 512);
  expect_parse(ctx, "1.1K", 1126);          /* 1126.4 rounded down */
  expect_parse(ctx, "1.0009765625K", 1025); /* exactly 1024 + 1 */
  expect_parse(ctx, "2GiB", 2ull << 30);
  expect_parse(ctx, "2gib", 2ull << 30);
  expect_parse(ctx, "64kb", 64ull * 1024);
  expect_parse(ctx, "64KB", 64ull * 1024);
  expect_parse(ctx, "1024B", 1024);
  expect_parse(ctx, "1024b", 1024);
  expect_parse(ctx, " 3 M ", 3ull << 20);
  expect_parse(ctx, "7", 7);
  expect_parse(ctx, "1.9", 1); /* bytes without a unit: the fraction is dropped */
  expect_parse(ctx, "18446744073709551615", UINT64_MAX);
  expect_parse(ctx, "16777215T", 16777215ull << 40);
  expect_parse(ctx, "15.99999999999999999999T", (16ull << 40) - 1); /* digits past 18 ignored */
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(parse_rejects_garbage_signs_and_overflow) {
  const char *bad[] = {"",
                       " ",
                       "abc",
                       "-1",
                       "+5",
                       "1.5.5G",
                       "1X",
                       "1GG",
                       "G",
                       ".5G",
                       "1.",
                       "1.G",
                       "1 G x",
                       "1iB",
                       "1 K iB",
                       "1KiBB",
                       "0x10",
                       "1e9",
                       "1,5G",
                       "5 5",
                       "18446744073709551616",
                       "16777216T",
                       "17179869184G",
                       "99999999999999999999999"};
  vnrt_context *ctx = tu_context();
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) expect_parse_error(ctx, bad[i]);

  uint64_t v = 1;
  ck_assert_int_eq(vn_budget_parse(ctx, NULL, &v), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_uint_eq(v, 0);
  /* Overflow says so, rather than calling the text garbage. */
  ck_assert_int_eq(vn_budget_parse(ctx, "16777216T", &v), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "64 bits"));
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(limit_comes_from_api_then_environment) {
  vnrt_context *ctx = tu_context();
  uint64_t limit = 99;
  unsetenv(VN_BUDGET_ENV);
  TU_OK(ctx, vn_budget_limit_from_env(ctx, 0, &limit));
  ck_assert_uint_eq(limit, 0);

  setenv(VN_BUDGET_ENV, "64M", 1);
  TU_OK(ctx, vn_budget_limit_from_env(ctx, 0, &limit));
  ck_assert_uint_eq(limit, 64ull << 20);
  TU_OK(ctx, vn_budget_limit_from_env(ctx, 4096, &limit)); /* the API wins */
  ck_assert_uint_eq(limit, 4096);

  setenv(VN_BUDGET_ENV, "", 1);
  TU_OK(ctx, vn_budget_limit_from_env(ctx, 0, &limit));
  ck_assert_uint_eq(limit, 0);

  setenv(VN_BUDGET_ENV, "lots", 1);
  ck_assert_int_eq(vn_budget_limit_from_env(ctx, 0, &limit), VNRT_ERROR_INVALID_ARGUMENT);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(strstr(msg, "VNRT_DEVICE_MEMORY_LIMIT=\"lots\"") != NULL, "%s", msg);
  unsetenv(VN_BUDGET_ENV);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(reserve_refuses_past_the_limit_with_the_numbers) {
  vnrt_context *ctx = tu_context();
  vn_budget b;
  vn_budget_init(&b, ctx, 1000);
  TU_OK(ctx, vn_budget_reserve(&b, VN_TIER_DEVICE, 600, "weights"));
  TU_OK(ctx, vn_budget_reserve(&b, VN_TIER_DEVICE, 400, "arena")); /* exactly at the limit */
  ck_assert_uint_eq(vn_budget_available(&b), 0);
  TU_OK(ctx, vn_budget_release(&b, VN_TIER_DEVICE, 400));
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_DEVICE), 600);
  ck_assert_uint_eq(vn_budget_available(&b), 400);

  ck_assert_int_eq(vn_budget_reserve(&b, VN_TIER_DEVICE, 500, "kv_cache.layer3"),
                   VNRT_ERROR_BUDGET_EXCEEDED);
  ck_assert_str_eq(vnrt_context_last_error(ctx),
                   "kv_cache.layer3 needs 500 bytes of device memory, but 600 of the 1000-byte "
                   "limit are in use (400 available; the limit is set by the API or "
                   "VNRT_DEVICE_MEMORY_LIMIT)");
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_DEVICE), 600); /* nothing recorded */
  ck_assert_uint_eq(vn_budget_failures(&b), 1);
  ck_assert_int_eq(vn_budget_reserve(&b, VN_TIER_DEVICE, 401, NULL), VNRT_ERROR_BUDGET_EXCEEDED);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "an allocation needs 401 bytes"));
  ck_assert_int_eq(vn_budget_reserve(&b, VN_TIER_DEVICE, UINT64_MAX, "huge"),
                   VNRT_ERROR_BUDGET_EXCEEDED);

  /* Other tiers are recorded but never limited. */
  TU_OK(ctx, vn_budget_reserve(&b, VN_TIER_FILE_MAPPED, 10ull << 30, "engram.table"));
  TU_OK(ctx, vn_budget_reserve(&b, VN_TIER_HOST, 5000, "staging"));
  TU_OK(ctx, vn_budget_reserve(&b, VN_TIER_HOST_VISIBLE, 7000, "ring"));
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_FILE_MAPPED), 10ull << 30);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_HOST), 5000);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_HOST_VISIBLE), 7000);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_DEVICE), 600);
  ck_assert_uint_eq(vn_budget_peak(&b, VN_TIER_DEVICE), 1000);

  /* Counter overflow in an unlimited tier is an error, not a wrap. */
  ck_assert_int_eq(vn_budget_reserve(&b, VN_TIER_FILE_MAPPED, UINT64_MAX, "x"),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_FILE_MAPPED), 10ull << 30);

  /* Releasing more than is in use is reported and clamps at zero. */
  ck_assert_int_eq(vn_budget_release(&b, VN_TIER_HOST, 6000), VNRT_ERROR_INTERNAL);
  ck_assert_str_eq(vnrt_context_last_error(ctx),
                   "released 6000 bytes of host memory but only 5000 were in use");
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_HOST), 0);
  ck_assert_int_eq(vn_budget_reserve(&b, (vn_tier)7, 1, "x"), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(vn_budget_release(&b, (vn_tier)-1, 1), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_str_eq(vn_tier_name(VN_TIER_HOST_VISIBLE), "host-visible");
  ck_assert_str_eq(vn_tier_name(VN_TIER_FILE_MAPPED), "file-mapped");
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(unlimited_budget_takes_everything) {
  vn_budget b;
  vn_budget_init(&b, NULL, 0);
  ck_assert_int_eq(vn_budget_reserve(&b, VN_TIER_DEVICE, 1ull << 62, "big"), VNRT_OK);
  ck_assert_uint_eq(vn_budget_available(&b), UINT64_MAX);
  ck_assert_int_eq(vn_budget_release(&b, VN_TIER_DEVICE, 1ull << 62), VNRT_OK);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_DEVICE), 0);
  ck_assert_uint_eq(vn_budget_peak(&b, VN_TIER_DEVICE), 1ull << 62);
}
END_TEST

/* ---- concurrency ----------------------------------------------------------------------- */

enum { N_THREADS = 4, N_TRIES = 100000 };

typedef struct worker {
  vn_budget *b;
  pthread_barrier_t *start;
  uint64_t granted; /* 1-byte reservations this thread obtained */
  int errors;       /* statuses other than OK and BUDGET_EXCEEDED */
} worker;

static void *grab(void *arg) {
  worker *w = arg;
  pthread_barrier_wait(w->start);
  for (int i = 0; i < N_TRIES; ++i) {
    vnrt_status s = vn_budget_reserve(w->b, VN_TIER_DEVICE, 1, "one byte");
    if (s == VNRT_OK)
      ++w->granted;
    else if (s != VNRT_ERROR_BUDGET_EXCEEDED)
      ++w->errors;
  }
  return NULL;
}

static void *churn(void *arg) {
  worker *w = arg;
  pthread_barrier_wait(w->start);
  for (int i = 0; i < N_TRIES; ++i) {
    vnrt_status s = vn_budget_reserve(w->b, VN_TIER_HOST_VISIBLE, 64, "staging");
    if (s != VNRT_OK) ++w->errors;
    if (vn_budget_release(w->b, VN_TIER_HOST_VISIBLE, 64) != VNRT_OK) ++w->errors;
  }
  return NULL;
}

/* Reserve, look, release, as fast as possible, against a limit of 3 bytes that 4 threads keep
 * hitting: a moment at which more than the limit is in use would show in the thread's own look
 * or in the peak. Races are caught only when threads really overlap; with a check-then-add
 * mutant this phase failed about every other run on a loaded 2-core machine. */
static void *hover(void *arg) {
  worker *w = arg;
  pthread_barrier_wait(w->start);
  for (int i = 0; i < 16 * N_TRIES; ++i) {
    vnrt_status s = vn_budget_reserve(w->b, VN_TIER_DEVICE, 1, "one byte");
    if (s == VNRT_ERROR_BUDGET_EXCEEDED) continue;
    if (s != VNRT_OK || vn_budget_used(w->b, VN_TIER_DEVICE) > 3) ++w->errors;
    ++w->granted;
    if (vn_budget_release(w->b, VN_TIER_DEVICE, 1) != VNRT_OK) ++w->errors;
  }
  return NULL;
}

/* N threads race for 1-byte reservations under a limit smaller than their total demand: a
 * check-then-add that could be interleaved would grant more than the limit. */
START_TEST(concurrent_reservers_never_overshoot) {
  const uint64_t limit = 250000;
  vn_budget b;
  vn_budget_init(&b, NULL, limit); /* no context: failures from threads write no message */
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, N_THREADS);
  worker w[N_THREADS];
  pthread_t th[N_THREADS];
  for (int i = 0; i < N_THREADS; ++i) {
    w[i] = (worker){.b = &b, .start = &start};
    ck_assert_int_eq(pthread_create(&th[i], NULL, grab, &w[i]), 0);
  }
  uint64_t granted = 0;
  for (int i = 0; i < N_THREADS; ++i) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(w[i].errors, 0);
    granted += w[i].granted;
  }
  ck_assert_uint_eq(granted, limit);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_DEVICE), limit);
  ck_assert_uint_eq(vn_budget_peak(&b, VN_TIER_DEVICE), limit);
  ck_assert_uint_eq(vn_budget_failures(&b), (uint64_t)N_THREADS * N_TRIES - limit);

  /* Reserve/release pairs from every thread leave exactly nothing in use. */
  for (int i = 0; i < N_THREADS; ++i) {
    w[i] = (worker){.b = &b, .start = &start};
    ck_assert_int_eq(pthread_create(&th[i], NULL, churn, &w[i]), 0);
  }
  for (int i = 0; i < N_THREADS; ++i) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(w[i].errors, 0);
  }
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_HOST_VISIBLE), 0);
  uint64_t peak = vn_budget_peak(&b, VN_TIER_HOST_VISIBLE);
  ck_assert_msg(peak >= 64 && peak <= 64 * N_THREADS, "peak %llu", (unsigned long long)peak);
  ck_assert_uint_eq(vn_budget_used(&b, VN_TIER_DEVICE), limit); /* other tiers untouched */

  vn_budget tight;
  vn_budget_init(&tight, NULL, 3);
  for (int i = 0; i < N_THREADS; ++i) {
    w[i] = (worker){.b = &tight, .start = &start};
    ck_assert_int_eq(pthread_create(&th[i], NULL, hover, &w[i]), 0);
  }
  granted = 0;
  for (int i = 0; i < N_THREADS; ++i) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(w[i].errors, 0);
    granted += w[i].granted;
  }
  ck_assert_uint_gt(granted, 0);
  ck_assert_uint_eq(vn_budget_used(&tight, VN_TIER_DEVICE), 0);
  ck_assert_uint_le(vn_budget_peak(&tight, VN_TIER_DEVICE), 3);
  pthread_barrier_destroy(&start);
}
END_TEST

int main(void) {
  Suite *s = suite_create("budget");
  TCase *tc = tcase_create("budget");
  tcase_add_test(tc, parse_accepts_plain_and_suffixed_sizes);
  tcase_add_test(tc, parse_rejects_garbage_signs_and_overflow);
  tcase_add_test(tc, limit_comes_from_api_then_environment);
  tcase_add_test(tc, reserve_refuses_past_the_limit_with_the_numbers);
  tcase_add_test(tc, unlimited_budget_takes_everything);
  tcase_add_test(tc, concurrent_reservers_never_overshoot);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
