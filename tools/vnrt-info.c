/* vnrt-info: prints the library version, the registered backends and every device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/vnrt.h"

static const char kUsage[] =
    "usage: vnrt-info [--json] [--help]\n"
    "Prints the vnrt version, the backends (built-in and plugins from $VNRT_PLUGIN_PATH) and\n"
    "each device with its spec for --device / $VNRT_DEVICE. The device marked 'default' is the\n"
    "one `--device auto` selects.\n";

static const struct {
  unsigned bit;
  const char *word;
} kCaps[] = {
    {VNRT_CAP_F16, "f16"},
    {VNRT_CAP_F16_STORAGE, "f16-storage"},
    {VNRT_CAP_INT8, "int8"},
    {VNRT_CAP_SUBGROUPS, "subgroups"},
    {VNRT_CAP_TIMELINE, "timeline"},
    {VNRT_CAP_UNIFIED_MEMORY, "unified-memory"},
    {VNRT_CAP_COPY_QUEUE, "copy-queue"},
    {VNRT_CAP_FP8, "fp8"},
    {VNRT_CAP_FP4, "fp4"},
    {VNRT_CAP_STATE_INPLACE, "state-inplace"},
    {VNRT_CAP_RESHAPE_VIEW, "reshape-view"},
};

static const char *type_word(vnrt_device_type t) {
  switch (t) {
    case VNRT_DEVICE_TYPE_CPU:
      return "cpu";
    case VNRT_DEVICE_TYPE_GPU_DISCRETE:
      return "discrete-gpu";
    case VNRT_DEVICE_TYPE_GPU_INTEGRATED:
      return "integrated-gpu";
    case VNRT_DEVICE_TYPE_ACCELERATOR:
      return "accelerator";
    case VNRT_DEVICE_TYPE_SOFTWARE:
      return "software";
  }
  return "unknown";
}

/* "12.0 GiB" style, for people; the JSON form carries exact bytes. */
static void human_bytes(char *buf, size_t cap, uint64_t bytes) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
  else
    snprintf(buf, cap, "%.1f %s", v, units[u]);
}

static void caps_words(char *buf, size_t cap, uint32_t caps, const char *sep) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof kCaps / sizeof kCaps[0] && n < cap; i++)
    if (caps & kCaps[i].bit)
      n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? sep : "", kCaps[i].word);
}

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

int main(int argc, char **argv) {
  /* A command-line tool shows the library's warnings (the library is silent by default:
   * docs/api.md, "Options"); VNRT_LOG set by the user wins. */
  setenv("VNRT_LOG", "warn", 0);
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fprintf(stderr, "vnrt-info: unknown argument '%s' (see vnrt-info --help)\n", argv[i]);
      return 2;
    }
  }

  vnrt_context *ctx = NULL;
  vnrt_status s = vnrt_context_create(NULL, &ctx);
  if (s != VNRT_OK) {
    fprintf(stderr, "vnrt-info: cannot create a context: %s\n", vnrt_status_string(s));
    return 1;
  }
  vnrt_device *def = NULL;
  if (vnrt_device_select(ctx, NULL, &def) != VNRT_OK) {
    /* A bad $VNRT_DEVICE should not hide the device list; say why there is no default. */
    fprintf(stderr, "vnrt-info: warning: no default device: %s\n", vnrt_context_last_error(ctx));
    def = NULL;
  }

  const char *backends[32];
  uint32_t nb = vnrt_backend_names(ctx, backends, 32);
  if (nb > 32) nb = 32;
  uint32_t nd = vnrt_device_count(ctx);

  if (json) {
    printf("{\n  \"version\": ");
    json_string(vnrt_version(NULL, NULL, NULL));
    printf(",\n  \"backends\": [");
    for (uint32_t i = 0; i < nb; i++) {
      printf("%s", i ? ", " : "");
      json_string(backends[i]);
    }
    printf("],\n  \"devices\": [");
  } else {
    printf("vnrt %s\n", vnrt_version(NULL, NULL, NULL));
    printf("backends:");
    for (uint32_t i = 0; i < nb; i++) printf(" %s", backends[i]);
    printf("\ndevices: %u\n", nd);
  }

  int rc = 0;
  for (uint32_t i = 0; i < nd; i++) {
    vnrt_device *d = NULL;
    vnrt_device_info info = {.struct_size = sizeof info};
    if (vnrt_device_get(ctx, i, &d) != VNRT_OK || vnrt_device_get_info(d, &info) != VNRT_OK) {
      fprintf(stderr, "vnrt-info: device %u: %s\n", i, vnrt_context_last_error(ctx));
      rc = 1;
      continue;
    }
    char caps[160], mem[32], maxbuf[32], shared[32];
    if (json) {
      caps_words(caps, sizeof caps, info.caps, "\", \"");
      printf("%s\n    {\"spec\": ", i ? "," : "");
      json_string(info.spec);
      printf(", \"default\": %s, \"backend\": ", d == def ? "true" : "false");
      json_string(info.backend);
      printf(", \"name\": ");
      json_string(info.name);
      printf(", \"type\": \"%s\", \"driver\": ", type_word(info.type));
      json_string(info.driver);
      printf(
          ",\n     \"memory_bytes\": %llu, \"max_buffer_bytes\": %llu, "
          "\"shared_memory_bytes\": %llu,\n     \"compute_units\": %u, "
          "\"subgroup_size\": %u, \"max_workgroup_size\": %u, \"capabilities\": [%s%s%s]}",
          (unsigned long long)info.memory_bytes, (unsigned long long)info.max_buffer_bytes,
          (unsigned long long)info.shared_memory_bytes, info.compute_units, info.subgroup_size,
          info.max_workgroup_size, caps[0] ? "\"" : "", caps, caps[0] ? "\"" : "");
      continue;
    }
    caps_words(caps, sizeof caps, info.caps, " ");
    human_bytes(mem, sizeof mem, info.memory_bytes);
    human_bytes(maxbuf, sizeof maxbuf, info.max_buffer_bytes);
    human_bytes(shared, sizeof shared, info.shared_memory_bytes);
    printf("\n%s%s\n", info.spec, d == def ? " (default)" : "");
    printf("  name:           %s\n", info.name);
    printf("  type:           %s\n", type_word(info.type));
    printf("  backend:        %s\n", info.backend);
    printf("  driver:         %s\n", info.driver[0] ? info.driver : "-");
    printf("  memory:         %s\n", mem);
    printf("  max buffer:     %s\n", maxbuf);
    printf("  shared memory:  %s\n", shared);
    printf("  compute units:  %u\n", info.compute_units);
    if (info.subgroup_size)
      printf("  subgroup size:  %u\n", info.subgroup_size);
    else
      printf("  subgroup size:  unknown\n");
    printf("  max workgroup:  %u\n", info.max_workgroup_size);
    printf("  capabilities:   %s\n", caps[0] ? caps : "none");
  }
  if (json) printf("%s]\n}\n", nd ? "\n  " : "");
  vnrt_context_destroy(ctx);
  return rc;
}
