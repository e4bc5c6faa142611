/* Context start-up under allocation failure (every allocation of vnrt_context_create failed in
 * turn), backends that fail to start, and the validation of every enum and count field of the
 * public descs (docs/api.md: a bad enum is VNRT_ERROR_INVALID_ARGUMENT). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "vnrt/memory.h"

/* Fails exactly the allocation numbered fail_at (1-based; 0 never fails) and counts live
 * blocks, so the code after a failed allocation still runs with a working allocator. */
typedef struct one_shot {
  long fail_at, calls, live, failed;
} one_shot;

static void *os_malloc(void *user, size_t size) {
  one_shot *a = user;
  if (++a->calls == a->fail_at) {
    ++a->failed;
    return NULL;
  }
  void *p = malloc(size);
  if (p) ++a->live;
  return p;
}

static void *os_realloc(void *user, void *ptr, size_t size) {
  one_shot *a = user;
  if (++a->calls == a->fail_at) {
    ++a->failed;
    return NULL;
  }
  void *p = realloc(ptr, size);
  if (p && !ptr) ++a->live;
  return p;
}

static void os_free(void *user, void *ptr) {
  one_shot *a = user;
  if (ptr) --a->live;
  free(ptr);
}

/* Everything logged at warning level or above, concatenated. */
static char warnings[8192];
static void capture_log(void *user, vnrt_log_level level, const char *msg) {
  (void)user;
  if (level < VNRT_LOG_WARN) return;
  size_t used = strlen(warnings);
  snprintf(warnings + used, sizeof warnings - used, "%s\n", msg);
}

static vnrt_context_desc faulty_desc(one_shot *a) {
  vnrt_context_desc d = {0};
  d.allocator = (vnrt_allocator){os_malloc, os_realloc, os_free, a};
  d.log_fn = capture_log;
  d.log_level = VNRT_LOG_WARN;
  d.no_plugins = 1;
  return d;
}

static int has_name(const char **names, uint32_t n, const char *name) {
  for (uint32_t i = 0; i < n; ++i) {
    if (strcmp(names[i], name) == 0) return 1;
  }
  return 0;
}

START_TEST(every_allocation_failure_in_context_create_is_out_of_memory_and_leak_free) {
  /* What a context has when nothing fails. */
  one_shot base = {0};
  vnrt_context_desc d = faulty_desc(&base);
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  const char *names[16];
  uint32_t n_base = vnrt_backend_names(ctx, names, 16);
  ck_assert_uint_ge(n_base, 1);
  ck_assert_uint_le(n_base, 16);
  char base_names[16][16];
  for (uint32_t i = 0; i < n_base; ++i) snprintf(base_names[i], 16, "%s", names[i]);
  long total = base.calls;
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(base.live, 0);
  ck_assert_int_gt(total, 2);

  int oom = 0, cpu_oom_named = 0, backend_failures = 0;
  for (long n = 1; n <= total + 1; ++n) {
    one_shot a = {.fail_at = n};
    d = faulty_desc(&a);
    warnings[0] = '\0';
    ctx = NULL;
    vnrt_status s = vnrt_context_create(&d, &ctx);
    ck_assert_msg(s == VNRT_OK || s == VNRT_ERROR_OUT_OF_MEMORY,
                  "allocation %ld failed: status %s (want OK or OUT_OF_MEMORY); log: %s", n,
                  vnrt_status_string(s), warnings);
    if (n > total) ck_assert_int_eq(a.failed, 0);
    if (s != VNRT_OK) {
      ck_assert_ptr_null(ctx);
      ck_assert_msg(a.live == 0, "allocation %ld failed: %ld blocks leaked", n, a.live);
      ck_assert_msg(strstr(warnings, "out of memory"), "allocation %ld: no message: %s", n,
                    warnings);
      cpu_oom_named += strstr(warnings, "cpu: out of memory") != NULL;
      ++oom;
      continue;
    }
    /* A context that came up without a backend it normally has: selecting it says why. */
    uint32_t n_now = vnrt_backend_names(ctx, names, 16);
    for (uint32_t i = 0; i < n_base; ++i) {
      if (has_name(names, n_now < 16 ? n_now : 16, base_names[i])) continue;
      ck_assert_str_ne(base_names[i], "cpu");
      vnrt_device *dev = (vnrt_device *)&d; /* must be overwritten with NULL */
      ck_assert_int_eq(vnrt_device_select(ctx, base_names[i], &dev), VNRT_ERROR_NOT_FOUND);
      ck_assert_ptr_null(dev);
      const char *msg = vnrt_context_last_error(ctx);
      char want[320];
      snprintf(want, sizeof want, "backend '%s' failed to start: ", base_names[i]);
      ck_assert_msg(strstr(msg, want) && strstr(msg, "VNRT_ERROR_OUT_OF_MEMORY"),
                    "allocation %ld: select '%s' said: %s", n, base_names[i], msg);
      ck_assert_msg(strstr(warnings, want), "allocation %ld: no warning naming %s: %s", n,
                    base_names[i], warnings);
      ++backend_failures;
    }
    vnrt_context_destroy(ctx);
    ck_assert_msg(a.live == 0, "allocation %ld failed: %ld blocks leaked", n, a.live);
  }
  ck_assert_int_gt(oom, 0);
  ck_assert_int_eq(cpu_oom_named, 1); /* the CPU backend's one allocation */
  if (n_base > 1) ck_assert_int_gt(backend_failures, 0);
}
END_TEST

/* A context desc field out of range: INVALID_ARGUMENT, no context, a logged message naming the
 * field and the value. */
static void expect_bad_context(vnrt_context_desc d, const char *want) {
  tu_alloc counts = {.countdown = -1};
  if (!d.allocator.malloc_fn && !d.allocator.realloc_fn && !d.allocator.free_fn) {
    d.allocator = tu_allocator(&counts);
  }
  d.log_fn = capture_log;
  d.no_plugins = 1;
  warnings[0] = '\0';
  vnrt_context *ctx = (vnrt_context *)&d;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(warnings, want), "want '%s' in the log, got: %s", want, warnings);
  ck_assert_int_eq(counts.live, 0);
}

START_TEST(context_desc_enums_and_counts_are_checked) {
  vnrt_context_desc d = {0};
  d.log_level = (vnrt_log_level)77;
  expect_bad_context(d, "vnrt_context_desc.log_level=77");
  d.log_level = (vnrt_log_level)-1;
  expect_bad_context(d, "vnrt_context_desc.log_level=-1");
  d = (vnrt_context_desc){0};
  d.num_threads = -3;
  expect_bad_context(d, "vnrt_context_desc.num_threads=-3");
  d.num_threads = 1025;
  expect_bad_context(d, "vnrt_context_desc.num_threads=1025");
  d = (vnrt_context_desc){0};
  tu_alloc unused = {.countdown = -1};
  d.allocator.free_fn = tu_allocator(&unused).free_fn;
  expect_bad_context(d, "vnrt_context_desc.allocator");

  /* The edges are accepted. */
  d = (vnrt_context_desc){0};
  d.no_plugins = 1;
  d.log_level = VNRT_LOG_ERROR;
  d.num_threads = 1024;
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_context_destroy(ctx);
  d.log_level = VNRT_LOG_DEBUG;
  d.num_threads = 0;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_context_destroy(ctx);
}
END_TEST

static vnrt_graph *exp_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 2, {2, 3}};
  vnrt_value x, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_EXP, &x, 1, NULL, 0, NULL, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  return g;
}

static void expect_bad_plan(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev,
                            const vnrt_plan_desc *pd, const char *want) {
  vnrt_plan *plan = (vnrt_plan *)g;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, dev, pd, &plan), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(plan);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), want), "want '%s', got: %s", want,
                vnrt_context_last_error(ctx));
}

START_TEST(plan_desc_enums_and_counts_are_checked) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = exp_graph(ctx);
  vnrt_device *cpu = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_plan_desc pd = {0};
  pd.kernels = (vnrt_kernel_mode)9;
  expect_bad_plan(ctx, g, cpu, &pd, "vnrt_plan_desc.kernels=9");
  pd.kernels = (vnrt_kernel_mode)-1;
  expect_bad_plan(ctx, g, cpu, &pd, "vnrt_plan_desc.kernels=-1");
  pd = (vnrt_plan_desc){0};
  pd.prefetch_depth = -4;
  expect_bad_plan(ctx, g, cpu, &pd, "vnrt_plan_desc.prefetch_depth=-4");
  pd = (vnrt_plan_desc){0};
  pd.n_engram = -1;
  expect_bad_plan(ctx, g, cpu, &pd, "vnrt_plan_desc.n_engram=-1");

  /* The shared-plan entry point checks the same fields. */
  vnrt_plan *first = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, NULL, &first));
  pd = (vnrt_plan_desc){0};
  pd.kernels = (vnrt_kernel_mode)2;
  vnrt_plan *second = (vnrt_plan *)g;
  ck_assert_int_eq(vnrt_plan_create_shared(ctx, g, cpu, &pd, first, &second),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(second);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "vnrt_plan_desc.kernels=2"));

  /* Valid values still compile. */
  pd = (vnrt_plan_desc){0};
  pd.kernels = VNRT_KERNELS_REFERENCE;
  pd.prefetch_depth = 7;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu, &pd, &second));
  vnrt_plan_destroy(second);
  vnrt_plan_destroy(first);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(engram_store_desc_enums_and_counts_are_checked) {
  vnrt_context *ctx = tu_context();
  float table[4] = {1, 2, 3, 4};
  vnrt_engram_store_desc sd = {0};
  sd.rows = 2;
  sd.dim = 2;
  sd.host_data = table;
  vnrt_engram_store *st = NULL;
  sd.eviction = (vnrt_eviction)7;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &sd, &st), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "eviction policy 7"));
  sd.eviction = VNRT_EVICTION_LRU;
  sd.cache_slots = -1;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &sd, &st), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "cache_slots=-1"));
  sd.cache_slots = 0;
  sd.dtype = (vnrt_dtype)99;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &sd, &st), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "(99)"));
  sd.dtype = VNRT_F32;
  sd.rows = -2;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &sd, &st), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "rows=-2"));
  sd.rows = 2;
  TU_OK(ctx, vnrt_engram_store_create(ctx, &sd, &st));
  vnrt_engram_store_destroy(st);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("desc_faults");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, every_allocation_failure_in_context_create_is_out_of_memory_and_leak_free);
  tcase_add_test(tc, context_desc_enums_and_counts_are_checked);
  tcase_add_test(tc, plan_desc_enums_and_counts_are_checked);
  tcase_add_test(tc, engram_store_desc_enums_and_counts_are_checked);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
