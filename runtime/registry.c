/* The device registry: registers built-in backends, loads plugins, lists and selects devices. */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin_backends.h"
#include "options.h"
#include "registry.h"
#include "sized.h"

#ifndef VNRT_PLUGIN_DIR
#define VNRT_PLUGIN_DIR ""
#endif

/* Driver start-up and tear-down, one at a time in the process (docs/api.md, "Threads"):
 * backend init and shutdown, device open and close. Drivers probe and set themselves up there
 * (clGetPlatformIDs, PoCL's device probe, vkCreateInstance), and not every driver survives two
 * threads doing it at once: four threads creating contexts crashed in PoCL's probe. Compiling
 * and running stay concurrent: they only touch objects of one context. */
static pthread_mutex_t g_driver_lock = PTHREAD_MUTEX_INITIALIZER;

/* The size of vnrt_backend_i as each API version defined it. */
static size_t iface_min_size(uint32_t api_version) {
  switch (api_version) {
    case 2:
      return offsetof(vnrt_backend_i, exec_destroy) + sizeof(void (*)(void));
    case 3:
      return offsetof(vnrt_backend_i, maturity) + sizeof(vnrt_backend_maturity);
    default:
      return 0;
  }
}

/* A backend's maturity; API 2 tables have none and are taken as experimental. */
static vnrt_backend_maturity iface_maturity(const vnrt_backend_i *b) {
  return b->api_version >= 3 && b->struct_size >= iface_min_size(3) ? b->maturity
                                                                    : VNRT_BACKEND_EXPERIMENTAL;
}

/* The installed plugin directory: <the directory of libvnrt.so>/vnrt/plugins, so a relocated
 * install finds its own plugins; the compiled-in VNRT_PLUGIN_DIR when vnrt is linked statically
 * (or the library's path is unknown). */
static const char *installed_plugin_dir(char *buf, size_t size) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)&vnrt_context_create, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    const char *base = slash ? slash + 1 : info.dli_fname;
    if (slash && strncmp(base, "libvnrt.so", 10) == 0) {
      int n =
          snprintf(buf, size, "%.*s/vnrt/plugins", (int)(slash - info.dli_fname), info.dli_fname);
      if (n > 0 && (size_t)n < size) return buf;
    }
  }
  return VNRT_PLUGIN_DIR;
}

/* Checks a backend's table before anything of it is called. Returns NULL if acceptable. */
static const char *iface_problem(const vnrt_backend_i *b, char *msg, size_t msg_size) {
  if (!b) return "the entry point returned no table";
  /* Version 1's nodes had no params member (a different array stride): not accepted. */
  if (b->api_version < VNRT_BACKEND_API_VERSION_MIN || b->api_version > VNRT_BACKEND_API_VERSION) {
    snprintf(msg, msg_size,
             "unsupported api_version %u (this vnrt serves backend API versions %d to %d: "
             "rebuild the plugin against its vnrt/backend.h)",
             (unsigned)b->api_version, VNRT_BACKEND_API_VERSION_MIN, VNRT_BACKEND_API_VERSION);
    return msg;
  }
  if (b->struct_size < iface_min_size(b->api_version)) return "struct_size too small";
  if (!b->name || !b->name[0] || strlen(b->name) >= 16) return "missing or too long name";
  for (const char *p = b->name; *p; ++p) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
      return "name must be lowercase letters, digits and '_'";
    }
  }
  if (!b->init || !b->shutdown || !b->device_count || !b->device_info || !b->device_open ||
      !b->device_close || !b->buffer_alloc || !b->buffer_free || !b->buffer_write ||
      !b->buffer_read || !b->supports_node || !b->compile || !b->run || !b->exec_destroy) {
    return "a required slot is NULL";
  }
  return NULL;
}

/* The public view of what a backend reported (members in the same order, plus struct_size). */
static void vn_device_info_from_backend(const vnrt_backend_device_info *b, vnrt_device_info *d) {
  memset(d, 0, sizeof *d);
  d->struct_size = sizeof *d;
  memcpy(d->backend, b->backend, sizeof d->backend);
  memcpy(d->name, b->name, sizeof d->name);
  memcpy(d->driver, b->driver, sizeof d->driver);
  memcpy(d->spec, b->spec, sizeof d->spec);
  d->backend[sizeof d->backend - 1] = d->name[sizeof d->name - 1] = '\0';
  d->driver[sizeof d->driver - 1] = d->spec[sizeof d->spec - 1] = '\0';
  d->type = b->type;
  d->index = b->index;
  d->memory_bytes = b->memory_bytes;
  d->max_buffer_bytes = b->max_buffer_bytes;
  d->caps = b->caps;
  d->compute_units = b->compute_units;
  d->subgroup_size = b->subgroup_size;
  d->max_workgroup_size = b->max_workgroup_size;
  d->shared_memory_bytes = b->shared_memory_bytes;
}

/* Parses the "backends" option ("cpu,vulkan") into r->wanted. */
static vnrt_status parse_wanted(vnrt_context *ctx, vn_registry *r, const char *list) {
  const char *src =
      vn_option_is_set(ctx, "backends") ? "vnrt_context_desc.backends" : "VNRT_BACKENDS";
  for (const char *p = list; p && *p;) {
    size_t len = strcspn(p, ",");
    const char *b = p, *e = p + len;
    p = *e ? e + 1 : e;
    while (b < e && (*b == ' ' || *b == '\t')) ++b;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) --e;
    if (b == e) continue;
    bool ok = (size_t)(e - b) < sizeof r->wanted[0];
    for (const char *c = b; c < e && ok; ++c) {
      ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    }
    if (!ok) {
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "%s=\"%s\": \"%.*s\" is not a backend name (lowercase letters, digits, "
                      "'_'; at most 15)",
                      src, list, (int)(e - b < 64 ? e - b : 64), b);
    }
    if (r->n_wanted >= VN_MAX_WANTED_BACKENDS) {
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "%s=\"%s\": more than %d backends", src,
                      list, VN_MAX_WANTED_BACKENDS);
    }
    memcpy(r->wanted[r->n_wanted], b, (size_t)(e - b));
    r->wanted[r->n_wanted][e - b] = '\0';
    r->n_wanted++;
  }
  return VNRT_OK;
}

/* Whether the context starts backend name: every one without a list; the CPU always. */
static bool is_wanted(const vn_registry *r, const char *name) {
  if (r->n_wanted == 0 || !name || strcmp(name, "cpu") == 0) return true;
  for (int32_t i = 0; i < r->n_wanted; ++i) {
    if (strcmp(r->wanted[i], name) == 0) return true;
  }
  return false;
}

/* Fails on a listed backend that is neither built in nor among the plugins found. */
static vnrt_status check_wanted(vnrt_context *ctx, const vn_registry *r) {
  for (int32_t i = 0; i < r->n_wanted; ++i) {
    bool found = strcmp(r->wanted[i], "cpu") == 0;
    for (int32_t b = 0; b < r->n_backends && !found; ++b) {
      found = strcmp(r->backends[b].iface->name, r->wanted[i]) == 0;
    }
    for (int32_t f = 0; f < r->n_failed && !found; ++f) {
      found = strcmp(r->failed[f].name, r->wanted[i]) == 0;
    }
    if (found) continue;
    char known[256];
    size_t used = 0;
    known[0] = '\0';
    for (size_t k = 0; vn_builtin_backends[k] && used + 1 < sizeof known; ++k) {
      const vnrt_backend_i *bi = vn_builtin_backends[k]();
      int w = snprintf(known + used, sizeof known - used, "%s%s", k ? ", " : "",
                       bi && bi->name ? bi->name : "?");
      if (w < 0) break;
      used += (size_t)w;
    }
    for (int32_t b = 0; b < r->n_backends && used + 1 < sizeof known; ++b) {
      if (!r->backends[b].dl_handle) continue;
      int w =
          snprintf(known + used, sizeof known - used, ", %s (plugin)", r->backends[b].iface->name);
      if (w < 0) break;
      used += (size_t)w;
    }
    return vn_error(
        ctx, VNRT_ERROR_NOT_FOUND,
        "%s names backend '%s', which is neither built in nor a plugin found "
        "(backends: %s)",
        vn_option_is_set(ctx, "backends") ? "vnrt_context_desc.backends" : "VNRT_BACKENDS",
        r->wanted[i], known);
  }
  return VNRT_OK;
}

/* Remembers why a backend did not start (the first VN_MAX_FAILED_BACKENDS of them). */
static void note_failed(vn_registry *r, const char *name, vnrt_status status, const char *reason) {
  if (r->n_failed >= VN_MAX_FAILED_BACKENDS) return;
  vn_failed_backend *f = &r->failed[r->n_failed++];
  snprintf(f->name, sizeof f->name, "%s", name);
  f->status = status;
  snprintf(f->reason, sizeof f->reason, "%s", reason);
}

/* Starts a backend and registers it. A backend that fails to start is logged (a warning, or
 * an info line when it merely found no driver or device) and remembered with its reason; the
 * status says why. */
static vnrt_status add_backend(vnrt_context *ctx, vn_registry *r, const vnrt_backend_i *iface,
                               void *dl_handle, const char *path) {
  char why[256];
  const char *problem = iface_problem(iface, why, sizeof why);
  if (problem) {
    vn_log(ctx, VNRT_LOG_WARN, "backend %s skipped: %s", path[0] ? path : "(built-in)", problem);
    return vn_error(ctx, VNRT_ERROR_UNSUPPORTED, "backend %s: %s", path[0] ? path : "(built-in)",
                    problem);
  }
  for (int32_t i = 0; i < r->n_backends; ++i) {
    if (strcmp(r->backends[i].iface->name, iface->name) == 0) {
      vn_log(ctx, VNRT_LOG_WARN, "backend '%s' from %s skipped: a backend of that name exists",
             iface->name, path[0] ? path : "(built-in)");
      return vn_error(ctx, VNRT_ERROR_UNSUPPORTED, "a backend named '%s' exists", iface->name);
    }
  }
  void *state = NULL;
  vn_clear_error(ctx);
  pthread_mutex_lock(&g_driver_lock);
  vnrt_status s = iface->init(&ctx->host, &state);
  pthread_mutex_unlock(&g_driver_lock);
  if (s == VNRT_OK && !vn_grow(ctx, (void **)&r->backends, &r->cap_backends, r->n_backends + 1,
                               sizeof *r->backends)) {
    pthread_mutex_lock(&g_driver_lock);
    iface->shutdown(state);
    pthread_mutex_unlock(&g_driver_lock);
    s = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory registering the backend");
  }
  if (s != VNRT_OK) {
    char reason[512];
    snprintf(reason, sizeof reason, "%s: %.400s", vnrt_status_string(s),
             ctx->last_error[0] ? ctx->last_error : "no message");
    note_failed(r, iface->name, s, reason);
    /* No driver or no device is a normal condition; anything else is worth a warning. */
    vn_log(ctx, s == VNRT_ERROR_NOT_FOUND ? VNRT_LOG_INFO : VNRT_LOG_WARN,
           "backend '%s' failed to start: %s", iface->name, reason);
    vn_error(ctx, s, "backend '%s' failed to start: %s", iface->name, reason);
    return s;
  }
  vn_backend *b = &r->backends[r->n_backends++];
  memset(b, 0, sizeof *b);
  b->iface = iface;
  b->state = state;
  b->dl_handle = dl_handle;
  snprintf(b->path, sizeof b->path, "%s", path);
  return VNRT_OK;
}

static void load_plugin_file(vnrt_context *ctx, vn_registry *r, const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    vn_log(ctx, VNRT_LOG_WARN, "plugin %s skipped: %s", path, dlerror());
    return;
  }
  vnrt_backend_entry_fn entry = NULL;
  void *sym = dlsym(h, VNRT_BACKEND_ENTRY_SYMBOL);
  memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, as POSIX allows */
  if (!entry) {
    vn_log(ctx, VNRT_LOG_WARN, "plugin %s skipped: no symbol %s", path, VNRT_BACKEND_ENTRY_SYMBOL);
    dlclose(h);
    return;
  }
  const vnrt_backend_i *iface = entry(VNRT_BACKEND_API_VERSION);
  if (iface && iface->name && !is_wanted(r, iface->name)) {
    vn_log(ctx, VNRT_LOG_DEBUG, "plugin %s ('%s') not started: not in the backends option", path,
           iface->name);
    dlclose(h);
    return;
  }
  if (add_backend(ctx, r, iface, h, path) != VNRT_OK) {
    dlclose(h);
    return;
  }
  vn_log(ctx, VNRT_LOG_INFO, "loaded plugin backend '%s' (API %u, %s) from %s", iface->name,
         (unsigned)iface->api_version,
         iface_maturity(iface) == VNRT_BACKEND_STABLE ? "stable"
                                                      : "experimental: \"auto\" never picks it",
         path);
}

static void load_plugin_dir(vnrt_context *ctx, vn_registry *r, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return; /* a listed directory that does not exist is not an error */
  /* Sort names so that the device order does not depend on the file system. */
  char **names = NULL;
  int32_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
    if (!vn_grow(ctx, (void **)&names, &cap, n + 1, sizeof *names) ||
        !(names[n] = vn_strdup(ctx, e->d_name))) {
      vn_log(ctx, VNRT_LOG_WARN, "plugins in %s skipped from %s on: out of memory", dir, e->d_name);
      break;
    }
    ++n;
  }
  closedir(d);
  for (int32_t i = 1; i < n; ++i) {
    for (int32_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; --j) {
      char *t = names[j];
      names[j] = names[j - 1];
      names[j - 1] = t;
    }
  }
  for (int32_t i = 0; i < n; ++i) {
    char path[1024];
    int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (len > 0 && (size_t)len < sizeof path) load_plugin_file(ctx, r, path);
    vn_free(ctx, names[i]);
  }
  vn_free(ctx, names);
}

static void load_plugin_path(vnrt_context *ctx, vn_registry *r, const char *list) {
  if (!list) return;
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > 0 && len < 1024) {
      char dir[1024];
      memcpy(dir, p, len);
      dir[len] = '\0';
      load_plugin_dir(ctx, r, dir);
    }
    p += len;
    if (*p == ':') ++p;
  }
}

vnrt_status vn_registry_create(vnrt_context *ctx, const vnrt_context_desc *desc,
                               vn_registry **out_registry) {
  *out_registry = NULL;
  vn_registry *r = vn_calloc(ctx, 1, sizeof *r);
  if (!r) return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory creating the registry");
  vnrt_status ws = parse_wanted(ctx, r, vn_option(ctx, "backends"));
  if (ws != VNRT_OK) {
    vn_free(ctx, r);
    return ws;
  }
  for (size_t i = 0; vn_builtin_backends[i]; ++i) {
    const vnrt_backend_i *bi = vn_builtin_backends[i]();
    if (i > 0 && bi && !is_wanted(r, bi->name)) continue;
    vnrt_status s = add_backend(ctx, r, bi, NULL, "");
    if (i == 0 && s != VNRT_OK) {
      /* The CPU backend comes first and must start; its status (out of memory) is kept. */
      char msg[VN_ERROR_MAX];
      snprintf(msg, sizeof msg, "%s", ctx->last_error);
      vn_registry_destroy(ctx, r);
      return vn_error(ctx, s, "%s", msg);
    }
  }
  if (r->n_backends == 0 || strcmp(r->backends[0].iface->name, "cpu") != 0) {
    vn_registry_destroy(ctx, r);
    return vn_error(ctx, VNRT_ERROR_INTERNAL, "the first built-in backend is not 'cpu'");
  }
  if (!desc->no_plugins) {
    load_plugin_path(ctx, r, desc->plugin_path);
    load_plugin_path(ctx, r, vn_option(ctx, "plugin_path"));
    char installed[1024];
    load_plugin_path(ctx, r, installed_plugin_dir(installed, sizeof installed));
  }
  vnrt_status cs = check_wanted(ctx, r);
  if (cs != VNRT_OK) {
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    vn_registry_destroy(ctx, r);
    return vn_error(ctx, cs, "%s", msg);
  }
  int32_t total = 0;
  for (int32_t b = 0; b < r->n_backends; ++b) {
    total += (int32_t)r->backends[b].iface->device_count(r->backends[b].state);
  }
  r->devices = vn_calloc(ctx, (size_t)(total ? total : 1), sizeof *r->devices);
  if (!r->devices) {
    vn_registry_destroy(ctx, r);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory listing devices");
  }
  for (int32_t b = 0; b < r->n_backends; ++b) {
    vn_backend *be = &r->backends[b];
    uint32_t count = be->iface->device_count(be->state);
    for (uint32_t i = 0; i < count && r->n_devices < total; ++i) {
      vnrt_device *d = &r->devices[r->n_devices];
      memset(d, 0, sizeof *d);
      d->ctx = ctx;
      d->backend = be;
      d->index = i;
      vnrt_backend_device_info bi;
      memset(&bi, 0, sizeof bi);
      if (be->iface->device_info(be->state, i, &bi) != VNRT_OK) {
        vn_log(ctx, VNRT_LOG_WARN, "device %s:%u skipped: %s", be->iface->name, i, ctx->last_error);
        continue;
      }
      vn_device_info_from_backend(&bi, &d->info);
      /* The core owns these fields, whatever the backend wrote. */
      snprintf(d->info.backend, sizeof d->info.backend, "%s", be->iface->name);
      d->info.index = i;
      if (strcmp(be->iface->name, "cpu") == 0) {
        snprintf(d->info.spec, sizeof d->info.spec, "cpu");
      } else {
        snprintf(d->info.spec, sizeof d->info.spec, "%s:%u", be->iface->name, i);
      }
      r->n_devices++;
    }
  }
  vn_clear_error(ctx);
  ctx->registry = r; /* for vn_fault_from_env, which finds devices by spec */
  vnrt_status s = vn_fault_from_env(ctx);
  ctx->registry = NULL;
  if (s != VNRT_OK) {
    char msg[VN_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", ctx->last_error);
    vn_registry_destroy(ctx, r);
    return vn_error(ctx, s, "%s", msg);
  }
  *out_registry = r;
  return VNRT_OK;
}

void vn_registry_destroy(vnrt_context *ctx, vn_registry *r) {
  if (!r) return;
  pthread_mutex_lock(&g_driver_lock);
  for (int32_t i = 0; i < r->n_devices; ++i) {
    if (r->devices[i].opened) r->devices[i].backend->iface->device_close(r->devices[i].opened);
  }
  for (int32_t b = r->n_backends - 1; b >= 0; --b) {
    r->backends[b].iface->shutdown(r->backends[b].state);
    if (r->backends[b].dl_handle) dlclose(r->backends[b].dl_handle);
  }
  pthread_mutex_unlock(&g_driver_lock);
  vn_free(ctx, r->devices);
  vn_free(ctx, r->backends);
  vn_free(ctx, r);
}

vnrt_status vn_device_open(vnrt_device *device, vnrt_backend_device **out) {
  if (!device->opened) {
    vn_backend *b = device->backend;
    pthread_mutex_lock(&g_driver_lock);
    vnrt_status s = vn_dev_open(device, &device->opened);
    pthread_mutex_unlock(&g_driver_lock);
    VN_RETURN_IF_ERROR(s);
    if (!device->opened) {
      return vn_error(device->ctx, VNRT_ERROR_INTERNAL, "backend '%s' opened no device",
                      b->iface->name);
    }
  }
  *out = device->opened;
  return VNRT_OK;
}

vnrt_device *vn_cpu_device(vnrt_context *ctx) { return &ctx->registry->devices[0]; }

uint32_t vnrt_device_count(vnrt_context *ctx) {
  return ctx ? (uint32_t)ctx->registry->n_devices : 0;
}

vnrt_status vnrt_device_get(vnrt_context *ctx, uint32_t i, vnrt_device **out_device) {
  if (out_device) *out_device = NULL;
  if (!ctx || !out_device) return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "NULL argument");
  if (i >= (uint32_t)ctx->registry->n_devices) {
    return vn_error(ctx, VNRT_ERROR_NOT_FOUND, "device index %u out of range: %d devices", i,
                    ctx->registry->n_devices);
  }
  *out_device = &ctx->registry->devices[i];
  return VNRT_OK;
}

vnrt_status vnrt_device_get_info(const vnrt_device *device, vnrt_device_info *out_info) {
  if (!device || !out_info) return VNRT_ERROR_INVALID_ARGUMENT;
  vnrt_device_info info = device->info;
  info.struct_size = sizeof info;
  return vn_sized_write(device->ctx, &vn_sized_device_info, &info, out_info);
}

uint32_t vnrt_backend_names(vnrt_context *ctx, const char **names, uint32_t capacity) {
  if (!ctx) return 0;
  uint32_t n = (uint32_t)ctx->registry->n_backends;
  for (uint32_t i = 0; names && i < n && i < capacity; ++i) {
    names[i] = ctx->registry->backends[i].iface->name;
  }
  return n;
}

/* Higher is better for automatic choice; software devices rank below the CPU backend. */
static int device_rank(const vnrt_device *d) {
  switch (d->info.type) {
    case VNRT_DEVICE_TYPE_GPU_DISCRETE:
      return 5;
    case VNRT_DEVICE_TYPE_ACCELERATOR:
      return 4;
    case VNRT_DEVICE_TYPE_GPU_INTEGRATED:
      return 3;
    case VNRT_DEVICE_TYPE_CPU:
      return 2;
    case VNRT_DEVICE_TYPE_SOFTWARE:
      return 1;
  }
  return 0;
}

static vnrt_status list_devices(vnrt_context *ctx, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; i < ctx->registry->n_devices && used + 1 < size; ++i) {
    int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                     ctx->registry->devices[i].info.spec);
    if (w < 0) break;
    used += (size_t)w;
  }
  return VNRT_OK;
}

vnrt_status vnrt_device_select(vnrt_context *ctx, const char *spec, vnrt_device **out_device) {
  if (out_device) *out_device = NULL;
  if (!ctx || !out_device) return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT, "NULL argument");
  vn_registry *r = ctx->registry;
  if (!spec || !spec[0] || strcmp(spec, "auto") == 0) {
    const char *env = vn_option(ctx, "device");
    if (env && env[0] && strcmp(env, "auto") != 0) {
      char spec_copy[128];
      snprintf(spec_copy, sizeof spec_copy, "%s", env); /* the lookup's storage is borrowed */
      vnrt_status s = vnrt_device_select(ctx, spec_copy, out_device);
      if (s != VNRT_OK) {
        char msg[VN_ERROR_MAX];
        snprintf(msg, sizeof msg, "%s", ctx->last_error);
        return vn_error(ctx, s, "%s=%s: %s",
                        vn_option_is_set(ctx, "device") ? "the device option" : "VNRT_DEVICE",
                        spec_copy, msg);
      }
      return s;
    }
    /* An experimental backend's devices are never the automatic choice (vnrt/backend.h). */
    vnrt_device *best = &r->devices[0];
    for (int32_t i = 1; i < r->n_devices; ++i) {
      if (iface_maturity(r->devices[i].backend->iface) != VNRT_BACKEND_STABLE) continue;
      if (device_rank(&r->devices[i]) > device_rank(best)) best = &r->devices[i];
    }
    *out_device = best;
    return VNRT_OK;
  }
  char name[64];
  const char *colon = strchr(spec, ':');
  size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
  char known[512];
  if (len == 0 || len >= sizeof name) {
    list_devices(ctx, known, sizeof known);
    return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                    "bad device spec '%s': expected BACKEND or BACKEND:INDEX (devices: %s)", spec,
                    known);
  }
  memcpy(name, spec, len);
  name[len] = '\0';
  long index = -1;
  if (colon) {
    char *end = NULL;
    index = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || index < 0 || index > 65535) {
      list_devices(ctx, known, sizeof known);
      return vn_error(ctx, VNRT_ERROR_INVALID_ARGUMENT,
                      "bad device spec '%s': the index must be a non-negative integer "
                      "(devices: %s)",
                      spec, known);
    }
  }
  vnrt_device *best = NULL;
  bool backend_known = false;
  for (int32_t i = 0; i < r->n_devices; ++i) {
    vnrt_device *d = &r->devices[i];
    if (strcmp(d->backend->iface->name, name) != 0) continue;
    backend_known = true;
    if (index >= 0) {
      if (d->index == (uint32_t)index) best = d;
    } else if (!best || device_rank(d) > device_rank(best)) {
      best = d; /* naming a backend alone picks its best device, software ones included */
    }
  }
  if (!best) {
    list_devices(ctx, known, sizeof known);
    for (int32_t b = 0; b < r->n_backends && !backend_known; ++b) {
      backend_known = strcmp(r->backends[b].iface->name, name) == 0;
    }
    for (int32_t f = 0; f < r->n_failed && !backend_known; ++f) {
      if (strcmp(r->failed[f].name, name) == 0) {
        return vn_error(ctx, VNRT_ERROR_NOT_FOUND,
                        "unknown device '%s': backend '%s' failed to start: %s (devices: %s)", spec,
                        name, r->failed[f].reason, known);
      }
    }
    if (!backend_known) {
      return vn_error(ctx, VNRT_ERROR_NOT_FOUND,
                      "unknown device '%s': no backend '%s' (devices: %s)", spec, name, known);
    }
    return vn_error(ctx, VNRT_ERROR_NOT_FOUND,
                    "unknown device '%s': backend '%s' has no %s (devices: %s)", spec, name,
                    index >= 0 ? "device with that index" : "devices", known);
  }
  *out_device = best;
  return VNRT_OK;
}
