/* The fuzz harnesses of vnrt (docs/fuzzing.md). Each fuzz_<target>.c defines libFuzzer's entry
 * point; replay.c runs it over files and folders (the seed corpora, in normal CI), and a
 * libFuzzer build (tools/fuzz.sh) links it with -fsanitize=fuzzer instead. */
#ifndef VNRT_TESTS_FUZZ_H_
#define VNRT_TESTS_FUZZ_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One context for the whole fuzzing process (creating one per input would spend the time on
 * backend start-up), with one CPU worker thread and errors kept out of the log. */
vnrt_context *fuzz_context(void);

/* Writes data to an anonymous in-memory file and returns a path that opens it
 * ("/proc/self/fd/N"); *fd is closed with fuzz_close_file. NULL if that fails. */
const char *fuzz_file(const uint8_t *data, size_t size, int *fd, char *path, size_t path_size);
void fuzz_close_file(int fd);

/* Aborts with the message when cond is false: a property a harness checks beyond "no crash". */
#define FUZZ_CHECK(cond, msg)                        \
  do {                                               \
    if (!(cond)) fuzz_fail(__FILE__, __LINE__, msg); \
  } while (0)
void fuzz_fail(const char *file, int line, const char *msg);

#endif /* VNRT_TESTS_FUZZ_H_ */
