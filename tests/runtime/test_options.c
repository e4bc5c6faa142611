/* Context options (docs/api.md, "Options"): the desc's fields and "key=value" list over the
 * environment, unknown keys and bad values refused by name, the backends a context starts, no
 * disk cache with cache_dir=none, and output only through the log callback (the CPU profile
 * included; nothing on stderr by default). Each test runs in its own process (Check's fork), so
 * changing the environment here stays here. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

typedef struct log_buf {
  char text[16384];
  size_t used;
  int n_error;
} log_buf;

static void log_into(void *user, vnrt_log_level level, const char *message) {
  log_buf *b = user;
  if (level == VNRT_LOG_ERROR) b->n_error++;
  int w = snprintf(b->text + b->used, sizeof b->text - b->used, "%s\n", message);
  if (w > 0 && b->used + (size_t)w < sizeof b->text) b->used += (size_t)w;
}

static vnrt_status create(const char *options, log_buf *log, vnrt_context **out) {
  vnrt_context_desc d = {.num_threads = 1, .options = options, .no_plugins = 1};
  if (log) d.log_fn = log_into, d.log_user = log, d.log_level = VNRT_LOG_DEBUG;
  return vnrt_context_create(&d, out);
}

START_TEST(option_list_parses_and_reads_back) {
  unsetenv("VNRT_CPU_ISA");
  unsetenv("VNRT_CL_GEMM");
  vnrt_context *ctx = NULL;
  /* Spaces around keys and values, ';' and newlines, empty items, and the last of a key wins. */
  ck_assert_int_eq(
      create(" cpu_isa = generic ;\n\ncl_gemm=tiled; cpu_spin_us=5;cl_gemm = rows;", NULL, &ctx),
      VNRT_OK);
  ck_assert_str_eq(vnrt_context_option(ctx, "cpu_isa"), "generic");
  ck_assert_str_eq(vnrt_context_option(ctx, "cl_gemm"), "rows");
  ck_assert_str_eq(vnrt_context_option(ctx, "cpu_spin_us"), "5");
  ck_assert_ptr_null(vnrt_context_option(ctx, "vk_validation")); /* unset, no environment */
  ck_assert_ptr_null(vnrt_context_option(ctx, "no_such_key"));
  ck_assert_ptr_null(vnrt_context_option(NULL, "cpu_isa"));
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(unknown_key_and_bad_values_fail_by_name) {
  static const struct {
    const char *options;
    const char *words[2]; /* the message names these */
  } bad[] = {
      {"cpu_isa=generic;colour=blue", {"\"colour\" is unknown", "cpu_isa"}},
      {"cpu_isa=avx1024", {"cpu_isa=\"avx1024\"", "auto|generic|avx2|avx512"}},
      {"device_memory_limit=lots", {"device_memory_limit", "\"lots\""}},
      {"max_buffer=12Q", {"max_buffer", "12Q"}},
      {"cpu_spin_us=-3", {"cpu_spin_us=\"-3\"", "[0, 1000000]"}},
      {"cpu_profile", {"\"cpu_profile\" is not key=value", "options"}},
      {"=1", {"\"\" is unknown", "options"}},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    log_buf log = {0};
    vnrt_context *ctx = (vnrt_context *)&log; /* must come back NULL */
    ck_assert_int_eq(create(bad[i].options, &log, &ctx), VNRT_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(log.n_error, 1);
    for (int w = 0; w < 2; ++w) {
      ck_assert_msg(strstr(log.text, bad[i].words[w]) != NULL, "%s: '%s' not in: %s",
                    bad[i].options, bad[i].words[w], log.text);
    }
  }
}
END_TEST

/* The plan's memory limit: env, then the desc field, then the option list, each overriding. */
static uint64_t planned_limit(const vnrt_context_desc *d) {
  vnrt_context *ctx = NULL;
  ck_assert_int_eq(vnrt_context_create(d, &ctx), VNRT_OK);
  static const char text[] = "vnir 1\ninput x: f32[4]\ny = add(x, x)\noutput y\n";
  vnrt_graph *g = NULL;
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, text, strlen(text), "limit", &g));
  TU_OK(ctx, vnrt_plan_create(ctx, g, tu_device(ctx, 0), NULL, &plan));
  vnrt_plan_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
  return info.device_limit;
}

START_TEST(options_override_the_environment) {
  setenv("VNRT_DEVICE_MEMORY_LIMIT", "1M", 1);
  setenv("VNRT_CPU_ISA", "generic", 1);
  vnrt_context_desc d = {.num_threads = 1, .no_plugins = 1};
  ck_assert_uint_eq(planned_limit(&d), 1u << 20);
  d.device_memory_limit = 32u << 20;
  ck_assert_uint_eq(planned_limit(&d), 32u << 20);
  d.options = "device_memory_limit=64M";
  ck_assert_uint_eq(planned_limit(&d), 64u << 20);

  vnrt_context *ctx = NULL;
  ck_assert_int_eq(create(NULL, NULL, &ctx), VNRT_OK);
  ck_assert_str_eq(vnrt_context_option(ctx, "cpu_isa"), "generic"); /* the default */
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(create("cpu_isa=auto", NULL, &ctx), VNRT_OK);
  ck_assert_str_eq(vnrt_context_option(ctx, "cpu_isa"), "auto");
  vnrt_context_destroy(ctx);
  unsetenv("VNRT_DEVICE_MEMORY_LIMIT");
  unsetenv("VNRT_CPU_ISA");
}
END_TEST

static int has_backend(vnrt_context *ctx, const char *name) {
  const char *names[16];
  uint32_t n = vnrt_backend_names(ctx, names, 16);
  for (uint32_t i = 0; i < n && i < 16; ++i) {
    if (strcmp(names[i], name) == 0) return 1;
  }
  return 0;
}

START_TEST(backends_field_chooses_what_starts) {
  unsetenv("VNRT_BACKENDS");
  vnrt_context *all = NULL, *ctx = NULL;
  ck_assert_int_eq(create(NULL, NULL, &all), VNRT_OK);
  const char *names[16];
  uint32_t n_all = vnrt_backend_names(all, names, 16);

  vnrt_context_desc d = {.num_threads = 1, .no_plugins = 1, .backends = "cpu"};
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  ck_assert_uint_eq(vnrt_backend_names(ctx, NULL, 0), 1);
  ck_assert_uint_eq(vnrt_device_count(ctx), 1);
  vnrt_context_destroy(ctx);

  /* Every backend the full context started, one at a time: that one and the CPU. */
  for (uint32_t i = 1; i < n_all && i < 16; ++i) {
    d.backends = names[i];
    ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
    ck_assert_uint_eq(vnrt_backend_names(ctx, NULL, 0), 2);
    ck_assert(has_backend(ctx, "cpu") && has_backend(ctx, names[i]));
    vnrt_context_destroy(ctx);
  }
  /* The same list through the option list and through the environment. */
  ck_assert_int_eq(create("backends=cpu", NULL, &ctx), VNRT_OK);
  ck_assert_uint_eq(vnrt_backend_names(ctx, NULL, 0), 1);
  vnrt_context_destroy(ctx);
  setenv("VNRT_BACKENDS", "cpu", 1);
  ck_assert_int_eq(create(NULL, NULL, &ctx), VNRT_OK);
  ck_assert_uint_eq(vnrt_backend_names(ctx, NULL, 0), 1);
  vnrt_context_destroy(ctx);
  unsetenv("VNRT_BACKENDS");

  /* An unknown name fails, naming it and what exists; a malformed one likewise. */
  log_buf log = {0};
  d.backends = "cpu, nosuch";
  d.log_fn = log_into, d.log_user = &log;
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_ERROR_NOT_FOUND);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(log.text, "backend 'nosuch'") && strstr(log.text, "backends: cpu"), "%s",
                log.text);
  log = (log_buf){0};
  d.backends = "cpu,Vulkan!";
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(log.text, "\"Vulkan!\" is not a backend name"), "%s", log.text);
  vnrt_context_destroy(all);
}
END_TEST

/* Runs a small graph on every device of ctx. */
static void run_everywhere(vnrt_context *ctx) {
  static const char text[] =
      "vnir 1\ninput x: f32[4, 16]\nparam w: f32[8, 16]\ny = linear(x, w)\noutput y\n";
  float x[64], w[128], y[32];
  for (int i = 0; i < 64; ++i) x[i] = (float)(i % 5) * 0.25f;
  for (int i = 0; i < 128; ++i) w[i] = (float)(i % 3) * 0.5f;
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_parse(ctx, text, strlen(text), "run", &g));
  for (uint32_t i = 0; i < vnrt_device_count(ctx); ++i) {
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, tu_device(ctx, (int32_t)i), NULL, &plan));
    TU_OK(ctx, vnrt_plan_set_input(plan, "x", x, sizeof x));
    TU_OK(ctx, vnrt_plan_set_input(plan, "w", w, sizeof w));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "y", y, sizeof y));
    double want = 0;
    for (int k = 0; k < 16; ++k) want += (double)x[k] * (double)w[k];
    ck_assert_msg(y[0] == (float)want, "device %u: y[0] = %g, want %g", i, (double)y[0], want);
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Entries under dir, recursively (directories counted too). */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
    n += 1 + count_entries(sub);
  }
  closedir(d);
  return n;
}

START_TEST(cache_dir_none_writes_nothing) {
  char home[] = "/tmp/vnrt_opt_homeXXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(home));
  /* Drivers keep their own caches under the home too (PoCL, Mesa); they stay where they were,
   * so this checks vnrt's alone and the kernels need not be rebuilt from scratch. */
  const char *xdg0 = getenv("XDG_CACHE_HOME"), *home0 = getenv("HOME");
  char pocl[1024];
  if (!getenv("POCL_CACHE_DIR") && (xdg0 || home0)) {
    snprintf(pocl, sizeof pocl, xdg0 ? "%s/pocl/kcache" : "%s/.cache/pocl/kcache",
             xdg0 ? xdg0 : home0);
    setenv("POCL_CACHE_DIR", pocl, 1);
  }
  setenv("MESA_SHADER_CACHE_DISABLE", "true", 1);
  unsetenv("VNRT_CACHE_DIR");
  setenv("HOME", home, 1);
  char xdg[128], vnrt_dir[160], home_vnrt[160];
  snprintf(xdg, sizeof xdg, "%s/xdg", home);
  ck_assert_int_eq(mkdir(xdg, 0700), 0);
  setenv("XDG_CACHE_HOME", xdg, 1);
  snprintf(vnrt_dir, sizeof vnrt_dir, "%s/vnrt", xdg);
  snprintf(home_vnrt, sizeof home_vnrt, "%s/.cache/vnrt", home);
  char cwd[1024];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(home), 0); /* a relative path would land here too */

  vnrt_context *ctx = NULL;
  vnrt_context_desc d = {.num_threads = 1, .no_plugins = 1, .cache_dir = "none"};
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  ck_assert_str_eq(vnrt_context_option(ctx, "cache_dir"), "none");
  run_everywhere(ctx);
  vnrt_context_destroy(ctx);
  /* Nothing at all: the home holds the empty xdg folder only. */
  ck_assert_msg(count_entries(home) == 1, "%d files appeared under %s", count_entries(home) - 1,
                home);
  /* The option list says the same. */
  ck_assert_int_eq(create("cache_dir=none", NULL, &ctx), VNRT_OK);
  run_everywhere(ctx);
  int n_dev = (int)vnrt_device_count(ctx);
  vnrt_context_destroy(ctx);
  ck_assert_int_eq(count_entries(home), 1);

  /* The default is $XDG_CACHE_HOME/vnrt, which the GPU backends do write: the check above can
   * fail. */
  ck_assert_int_eq(create(NULL, NULL, &ctx), VNRT_OK);
  ck_assert_str_eq(vnrt_context_option(ctx, "cache_dir"), vnrt_dir);
  run_everywhere(ctx);
  vnrt_context_destroy(ctx);
  if (n_dev > 1) ck_assert_msg(exists(vnrt_dir), "no cache in %s", vnrt_dir);
  ck_assert(!exists(home_vnrt));
  ck_assert_int_eq(chdir(cwd), 0);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(profile_goes_to_the_log_and_nothing_to_stderr) {
  /* stderr into a file for the whole test: the library must leave it empty by default. */
  char path[] = "/tmp/vnrt_opt_stderrXXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
  unsetenv("VNRT_LOG");

  log_buf log = {0};
  vnrt_context *ctx = NULL;
  vnrt_context_desc d = {.num_threads = 1,
                         .no_plugins = 1,
                         .backends = "cpu",
                         .options = "cpu_profile=1",
                         .log_fn = log_into,
                         .log_user = &log,
                         .log_level = VNRT_LOG_INFO};
  ck_assert_int_eq(vnrt_context_create(&d, &ctx), VNRT_OK);
  run_everywhere(ctx);
  vnrt_context_destroy(ctx); /* the profile is reported when the device closes */
  /* No log callback: a bad desc and a profile are both silent. (The CPU backend only: GPU
   * drivers may print on their own, lavapipe's conformance warning for one.) */
  ck_assert_int_eq(create("backends=cpu;cpu_profile=1;colour=blue", NULL, &ctx),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(create("backends=cpu;cpu_profile=1", NULL, &ctx), VNRT_OK);
  run_everywhere(ctx);
  vnrt_context_destroy(ctx);
  fflush(stderr);
  off_t quiet = lseek(fd, 0, SEEK_END);
  /* log=stderr opts in. */
  ck_assert_int_eq(create("log=stderr;colour=blue", NULL, &ctx), VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_int_eq(create("backends=cpu;log=stderr;cpu_profile=1", NULL, &ctx), VNRT_OK);
  vnrt_context_destroy(ctx);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  char text[4096] = {0};
  ck_assert_int_ge(pread(fd, text, sizeof text - 1, 0), 0);
  close(fd);
  unlink(path);

  ck_assert_msg(strstr(log.text, "cpu profile (1 threads)") && strstr(log.text, "linear"),
                "no profile in the log: %s", log.text);
  ck_assert_msg(quiet == 0, "the library wrote to stderr: %s", text);
  ck_assert_msg(strstr(text, "vnrt: error:") && strstr(text, "colour"), "log=stderr: %s", text);
}
END_TEST

int main(void) {
  Suite *s = suite_create("options");
  TCase *tc = tcase_create("options");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, option_list_parses_and_reads_back);
  tcase_add_test(tc, unknown_key_and_bad_values_fail_by_name);
  tcase_add_test(tc, options_override_the_environment);
  tcase_add_test(tc, backends_field_chooses_what_starts);
  tcase_add_test(tc, cache_dir_none_writes_nothing);
  tcase_add_test(tc, profile_goes_to_the_log_and_nothing_to_stderr);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
