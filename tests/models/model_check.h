/* CHECK for the model library's C tests: a failed condition is printed with its place and
 * counted in g_failures (the test exits non-zero when any failed), and the test goes on. */
#ifndef VNRT_TESTS_MODEL_CHECK_H_
#define VNRT_TESTS_MODEL_CHECK_H_

#include <stdio.h>

static int g_failures;

#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (!(cond)) {                                          \
      fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                         \
      fprintf(stderr, "\n");                                \
      ++g_failures;                                         \
    }                                                       \
  } while (0)

#endif /* VNRT_TESTS_MODEL_CHECK_H_ */
