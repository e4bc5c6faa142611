/* Tests of device buffer layout: io slots packed in order under the buffer limit, the arena by
 * liveness (in several buffers when one would pass the limit), aliases and external memory. */
#include "layout.h"
#include "test_util.h"

enum { ALIGN = 256 };

/* Every slot inside its buffer; slots in one buffer apart unless their lives never meet. */
static void check_apart(const vn_slot *s, int32_t n, const vn_layout *l) {
  for (int32_t i = 0; i < n; ++i) {
    if (s[i].kind == VN_SLOT_EXTERNAL) {
      ck_assert_int_eq(s[i].buffer, -1);
      continue;
    }
    ck_assert_int_ge(s[i].buffer, 0);
    ck_assert_int_lt(s[i].buffer, l->n_bufs);
    ck_assert_uint_eq(s[i].offset % ALIGN, 0);
    ck_assert_uint_le(s[i].offset + s[i].bytes, l->buf_bytes[s[i].buffer]);
    for (int32_t j = 0; j < i; ++j) {
      if (s[j].buffer != s[i].buffer || s[i].kind == VN_SLOT_ALIAS || s[j].kind == VN_SLOT_ALIAS) {
        continue;
      }
      bool io = s[i].kind == VN_SLOT_IO || s[j].kind == VN_SLOT_IO;
      bool meet = io || !(s[i].last < s[j].first || s[j].last < s[i].first);
      bool apart =
          s[i].offset + s[i].bytes <= s[j].offset || s[j].offset + s[j].bytes <= s[i].offset;
      ck_assert_msg(!meet || apart, "slots %d and %d overlap", (int)j, (int)i);
    }
  }
}

START_TEST(io_slots_pack_in_order_and_the_arena_by_liveness) {
  vnrt_context *ctx = tu_context();
  vn_slot s[] = {
      {.kind = VN_SLOT_IO, .bytes = 100},
      {.kind = VN_SLOT_ARENA, .bytes = 1000, .first = 0, .last = 1},
      {.kind = VN_SLOT_IO, .bytes = 300},
      {.kind = VN_SLOT_ARENA, .bytes = 1000, .first = 2, .last = 3}, /* reuses slot 1's bytes */
      {.kind = VN_SLOT_ALIAS, .alias = 2},
      {.kind = VN_SLOT_EXTERNAL, .bytes = 64, .offset = 4096},
  };
  vn_layout l = {0};
  TU_OK(ctx, vn_layout_plan(ctx, s, 6, 0, ALIGN, &l));
  ck_assert_int_eq(l.n_io_bufs, 1);
  ck_assert_int_eq(l.n_bufs, 2);
  ck_assert_uint_eq(l.io_bytes, 256 + 512);
  ck_assert_uint_eq(l.buf_bytes[0], 256 + 512);
  ck_assert_uint_eq(s[0].offset, 0);
  ck_assert_uint_eq(s[2].offset, 256);
  ck_assert_int_eq(s[1].buffer, 1);
  ck_assert_int_eq(s[3].buffer, 1);
  ck_assert_uint_eq(s[1].offset, s[3].offset);
  ck_assert_uint_eq(l.arena_bytes, 1024);
  ck_assert_int_eq(s[4].buffer, s[2].buffer);
  ck_assert_uint_eq(s[4].offset, s[2].offset);
  ck_assert_uint_eq(s[5].offset, 4096);
  check_apart(s, 6, &l);
  vn_layout_free(ctx, &l);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(a_limit_splits_io_and_arena_buffers) {
  vnrt_context *ctx = tu_context();
  enum { N = 12 };
  vn_slot s[N];
  for (int32_t i = 0; i < N; ++i) {
    /* Six io slots of 512 bytes, six arena slots of 768 bytes all alive at once. */
    s[i] = i % 2 ? (vn_slot){.kind = VN_SLOT_ARENA, .bytes = 700, .first = 0, .last = 5}
                 : (vn_slot){.kind = VN_SLOT_IO, .bytes = 512};
  }
  vn_layout l = {0};
  TU_OK(ctx, vn_layout_plan(ctx, s, N, 1024, ALIGN, &l));
  ck_assert_int_eq(l.n_io_bufs, 3);
  ck_assert_int_eq(l.n_bufs - l.n_io_bufs, 6);
  for (int32_t b = 0; b < l.n_bufs; ++b) ck_assert_uint_le(l.buf_bytes[b], 1024);
  ck_assert_uint_eq(l.io_bytes, 6 * 512);
  ck_assert_uint_eq(l.arena_bytes, 6 * 768);
  for (int32_t i = 0; i < N; i += 2) ck_assert_int_lt(s[i].buffer, l.n_io_bufs);
  check_apart(s, N, &l);
  /* Planning again replaces the previous buffers. */
  TU_OK(ctx, vn_layout_plan(ctx, s, N, 0, ALIGN, &l));
  ck_assert_int_eq(l.n_bufs, 2);
  check_apart(s, N, &l);
  vn_layout_free(ctx, &l);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(a_slot_over_the_limit_gets_an_arena_buffer_of_its_own) {
  vnrt_context *ctx = tu_context();
  vn_slot s[] = {
      {.kind = VN_SLOT_ARENA, .bytes = 5000, .first = 0, .last = 0},
      {.kind = VN_SLOT_ARENA, .bytes = 100, .first = 0, .last = 0},
  };
  vn_layout l = {0};
  TU_OK(ctx, vn_layout_plan(ctx, s, 2, 1024, ALIGN, &l));
  ck_assert_int_eq(l.n_io_bufs, 0);
  ck_assert_int_eq(l.n_bufs, 2);
  ck_assert_int_ne(s[0].buffer, s[1].buffer);
  ck_assert_uint_eq(l.buf_bytes[s[0].buffer], 5120);
  check_apart(s, 2, &l);
  vn_layout_free(ctx, &l);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layout");
  TCase *tc = tcase_create("layout");
  tcase_add_test(tc, io_slots_pack_in_order_and_the_arena_by_liveness);
  tcase_add_test(tc, a_limit_splits_io_and_arena_buffers);
  tcase_add_test(tc, a_slot_over_the_limit_gets_an_arena_buffer_of_its_own);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
