/* Context options (docs/api.md, "Options"). */
#include <check.h>

#include "test_util.h"

START_TEST(placeholder) {}
END_TEST

int main(void) {
  Suite *s = suite_create("options");
  TCase *tc = tcase_create("options");
  tcase_add_test(tc, placeholder);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
