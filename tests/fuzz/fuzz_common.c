/* Helpers shared by the fuzz harnesses (fuzz.h). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

static void quiet_log(void *user, vnrt_log_level level, const char *message) {
  (void)user;
  (void)level;
  (void)message;
}

vnrt_context *fuzz_context(void) {
  static vnrt_context *ctx;
  if (!ctx) {
    vnrt_context_desc desc = {.log_fn = quiet_log, .no_plugins = 1, .num_threads = 1};
    if (vnrt_context_create(&desc, &ctx) != VNRT_OK) {
      fprintf(stderr, "fuzz: cannot create a vnrt context\n");
      abort();
    }
  }
  return ctx;
}

const char *fuzz_file(const uint8_t *data, size_t size, int *fd, char *path, size_t path_size) {
  *fd = memfd_create("vnrt-fuzz", 0);
  if (*fd < 0) return NULL;
  size_t done = 0;
  while (done < size) {
    ssize_t w = write(*fd, data + done, size - done);
    if (w <= 0) {
      close(*fd);
      return NULL;
    }
    done += (size_t)w;
  }
  snprintf(path, path_size, "/proc/self/fd/%d", *fd);
  return path;
}

void fuzz_close_file(int fd) { close(fd); }

void fuzz_fail(const char *file, int line, const char *msg) {
  fprintf(stderr, "%s:%d: fuzz property failed: %s\n", file, line, msg);
  abort();
}
