/* Sized structs (docs/api.md, "ABI and growth"): a caller whose struct ends earlier (an older,
 * smaller version) gets defaults for the members past its struct_size and has nothing written
 * past it; struct_size 0 is the first sized release's size; a size no version had, or one
 * larger than this library knows, fails with VNRT_ERROR_INVALID_ARGUMENT and says so. */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"
#include "vnrt/memory.h"
#include "vnrt/vnrt.h"

/* The struct_size of a version of T that ended with member m. */
#define SIZE_UP_TO(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))

static vnrt_context *context(void) {
  vnrt_context_desc d = {.struct_size = sizeof d, .num_threads = 1, .no_plugins = 1};
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  return ctx;
}

/* y = x + x: one node, enough for info and stats. */
static vnrt_graph *add_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 1, {4, 0, 0, 0}};
  vnrt_value x, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  vnrt_value xx[2] = {x, x};
  const char *name = "y";
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ADD, xx, 2, NULL, 0, &name, &y, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  return g;
}

static vnrt_device *cpu(vnrt_context *ctx) {
  vnrt_device *d = NULL;
  TU_OK(ctx, vnrt_device_select(ctx, "cpu", &d));
  return d;
}

/* Whether bytes [from, to) of p all equal v. */
static int untouched(const void *p, size_t from, size_t to, unsigned char v) {
  for (size_t i = from; i < to; ++i) {
    if (((const unsigned char *)p)[i] != v) return 0;
  }
  return 1;
}

START_TEST(context_desc_members_past_struct_size_are_defaults) {
  /* num_threads = -5 is invalid, and rejected when the desc covers it ... */
  vnrt_context_desc d = {.struct_size = sizeof d, .num_threads = -5, .no_plugins = 1};
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ctx);
  /* ... but ignored (the default: all cores) by a version that ended before it. */
  d.struct_size = SIZE_UP_TO(vnrt_context_desc, no_plugins);
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  vnrt_device_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_device_get_info(cpu(ctx), &info));
  ck_assert_msg(strstr(info.driver, "-5") == NULL, "driver '%s'", info.driver);
  vnrt_context_destroy(ctx);
  /* The same with num_threads = 2 covered: the CPU reports 2 threads. */
  d.struct_size = 0; /* the first sized release's size: every member of this release */
  d.num_threads = 2;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  TU_OK(ctx, vnrt_device_get_info(cpu(ctx), &info));
  ck_assert_msg(strstr(info.driver, "2 threads") != NULL, "driver '%s'", info.driver);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(context_desc_bad_sizes_are_refused) {
  const size_t bad[] = {1,
                        3,
                        offsetof(vnrt_context_desc, log_fn) + 1,
                        sizeof(vnrt_context_desc) + 8,
                        (size_t)1 << 40,
                        (size_t)-1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    vnrt_context_desc d = {.struct_size = bad[i]};
    vnrt_context *ctx = (vnrt_context *)&d; /* cleared on failure */
    vnrt_status s = vnrt_context_create(&d, &ctx);
    if (s != VNRT_ERROR_INVALID_ARGUMENT || ctx != NULL) {
      ck_abort_msg("struct_size %zu: %s", bad[i], vnrt_status_string(s));
    }
  }
}
END_TEST

START_TEST(plan_desc_members_past_struct_size_are_defaults) {
  vnrt_context *ctx = context();
  vnrt_graph *g = add_graph(ctx);
  vnrt_plan *plan = NULL;
  /* max_work = 1 is far below one run: refused when covered ... */
  vnrt_plan_desc d = {.struct_size = sizeof d, .max_work = 1};
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu(ctx), &d, &plan), VNRT_ERROR_BUDGET_EXCEEDED);
  /* ... the default limit for a version that ended at n_engram. */
  d.struct_size = SIZE_UP_TO(vnrt_plan_desc, n_engram);
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu(ctx), &d, &plan));
  vnrt_plan_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  ck_assert_uint_gt(info.work_limit, 1);
  vnrt_plan_destroy(plan);
  /* A size inside a member, or past this library's struct, is refused with a message. */
  d.struct_size = SIZE_UP_TO(vnrt_plan_desc, n_engram) + 1;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, cpu(ctx), &d, &plan), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), "vnrt_plan_desc.struct_size"), "%s",
                vnrt_context_last_error(ctx));
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), "ends inside a member"), "%s",
                vnrt_context_last_error(ctx));
  d.struct_size = sizeof d + 64;
  ck_assert_int_eq(vnrt_plan_create_shared(ctx, g, cpu(ctx), &d, NULL, &plan),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), "larger than this library's"), "%s",
                vnrt_context_last_error(ctx));
  ck_assert_ptr_null(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(out_structs_are_written_up_to_struct_size) {
  vnrt_context *ctx = context();
  vnrt_graph *g = add_graph(ctx);
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, cpu(ctx), NULL, &plan));
  float x[4] = {1, 2, 3, 4};
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", x, sizeof x));
  TU_OK(ctx, vnrt_plan_run(plan));

  vnrt_plan_info info;
  memset(&info, 0xab, sizeof info);
  const size_t ip = SIZE_UP_TO(vnrt_plan_info, n_partitions);
  info.struct_size = ip;
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  ck_assert_uint_eq(info.struct_size, ip);
  ck_assert_int_eq(info.n_nodes, 1);
  ck_assert_int_eq(info.n_partitions, 1);
  ck_assert_msg(untouched(&info, ip, sizeof info, 0xab), "vnrt_plan_get_info wrote past %zu", ip);
  info.struct_size = 0; /* the first sized release's: all of this release's members */
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  ck_assert_uint_eq(info.struct_size, sizeof info);
  ck_assert_uint_eq(info.weight_bytes, 0);

  vnrt_run_stats st;
  memset(&st, 0xab, sizeof st);
  const size_t sp = SIZE_UP_TO(vnrt_run_stats, compute_ns);
  st.struct_size = sp;
  TU_OK(ctx, vnrt_plan_get_run_stats(plan, &st));
  ck_assert_msg(untouched(&st, sp, sizeof st, 0xab), "vnrt_plan_get_run_stats wrote past %zu", sp);
  ck_assert_uint_eq(st.struct_size, sp);

  vnrt_device_info di;
  memset(&di, 0xab, sizeof di);
  const size_t dp = SIZE_UP_TO(vnrt_device_info, name);
  di.struct_size = dp;
  TU_OK(ctx, vnrt_device_get_info(cpu(ctx), &di));
  ck_assert_str_eq(di.backend, "cpu");
  ck_assert_msg(untouched(&di, dp, sizeof di, 0xab), "vnrt_device_get_info wrote past %zu", dp);

  /* Garbage sizes write nothing and say why. */
  const size_t bad[] = {5, SIZE_UP_TO(vnrt_plan_info, n_nodes) + 2, sizeof info + 8,
                        (size_t)1 << 40};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    memset(&info, 0xab, sizeof info);
    info.struct_size = bad[i];
    vnrt_status s = vnrt_plan_get_info(plan, &info);
    if (s != VNRT_ERROR_INVALID_ARGUMENT ||
        !untouched(&info, sizeof info.struct_size, sizeof info, 0xab) ||
        !strstr(vnrt_context_last_error(ctx), "vnrt_plan_info.struct_size")) {
      ck_abort_msg("struct_size %zu: %s: %s", bad[i], vnrt_status_string(s),
                   vnrt_context_last_error(ctx));
    }
  }
  memset(&st, 0, sizeof st);
  st.struct_size = 7;
  ck_assert_int_eq(vnrt_plan_get_run_stats(plan, &st), VNRT_ERROR_INVALID_ARGUMENT);
  memset(&di, 0, sizeof di);
  di.struct_size = sizeof di + 1;
  ck_assert_int_eq(vnrt_device_get_info(cpu(ctx), &di), VNRT_ERROR_INVALID_ARGUMENT);

  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(engram_store_desc_and_stats_are_sized) {
  vnrt_context *ctx = context();
  float table[3 * 2] = {0, 1, 2, 3, 4, 5};
  /* eviction = 7 is no vnrt_eviction: refused when covered, the default (CLOCK) when not. */
  vnrt_engram_store_desc d = {.struct_size = sizeof d,
                              .rows = 3,
                              .dim = 2,
                              .host_data = table,
                              .cache_slots = 2,
                              .eviction = (vnrt_eviction)7};
  vnrt_engram_store *store = NULL;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &store), VNRT_ERROR_INVALID_ARGUMENT);
  d.struct_size = SIZE_UP_TO(vnrt_engram_store_desc, tensor_name); /* cache_slots defaults too */
  TU_OK(ctx, vnrt_engram_store_create(ctx, &d, &store));
  vnrt_engram_stats es;
  memset(&es, 0xab, sizeof es);
  es.struct_size = 0;
  TU_OK(ctx, vnrt_engram_store_stats(store, &es));
  ck_assert_int_eq(es.cache_slots, 0); /* not 2: cache_slots was past struct_size */
  ck_assert_uint_eq(es.lookups, 0);
  memset(&es, 0xab, sizeof es);
  const size_t sp = SIZE_UP_TO(vnrt_engram_stats, lookups);
  es.struct_size = sp;
  TU_OK(ctx, vnrt_engram_store_stats(store, &es));
  ck_assert_uint_eq(es.lookups, 0);
  ck_assert_msg(untouched(&es, sp, sizeof es, 0xab), "vnrt_engram_store_stats wrote past %zu", sp);
  es.struct_size = sizeof es * 2;
  ck_assert_int_eq(vnrt_engram_store_stats(store, &es), VNRT_ERROR_INVALID_ARGUMENT);
  vnrt_engram_store_destroy(store);
  d.struct_size = 12;
  store = NULL;
  ck_assert_int_eq(vnrt_engram_store_create(ctx, &d, &store), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(vnrt_context_last_error(ctx), "vnrt_engram_store_desc.struct_size is 12"),
                "%s", vnrt_context_last_error(ctx));
  ck_assert_ptr_null(store);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("sized");
  TCase *tc = tcase_create("sized");
  tcase_add_test(tc, context_desc_members_past_struct_size_are_defaults);
  tcase_add_test(tc, context_desc_bad_sizes_are_refused);
  tcase_add_test(tc, plan_desc_members_past_struct_size_are_defaults);
  tcase_add_test(tc, out_structs_are_written_up_to_struct_size);
  tcase_add_test(tc, engram_store_desc_and_stats_are_sized);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
