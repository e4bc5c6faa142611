/* The device registry: built-in backends and plugins, their devices, and selection by spec. */
#ifndef VNRT_RUNTIME_REGISTRY_H_
#define VNRT_RUNTIME_REGISTRY_H_

#include "core.h"
#include "fault.h"

typedef struct vn_backend {
  const vnrt_backend_i *iface;
  void *state;
  void *dl_handle; /* non-NULL for plugins */
  char path[512];  /* plugin file, "" for built-ins */
} vn_backend;

struct vnrt_device {
  vnrt_context *ctx;
  vn_backend *backend;
  uint32_t index; /* within its backend */
  vnrt_device_info info;
  vnrt_backend_device *opened; /* opened on first use, closed with the context */
  vn_fault_state fault;        /* call counts and injected faults (fault.h) */
};

/* A backend whose init failed: kept (without allocating) so that selecting one of its devices
 * says why it is missing. */
#define VN_MAX_FAILED_BACKENDS 8
typedef struct vn_failed_backend {
  char name[16];
  vnrt_status status;
  char reason[512];
} vn_failed_backend;

/* The backends the context's "backends" option names (none: every one). */
#define VN_MAX_WANTED_BACKENDS 16

struct vn_registry {
  char wanted[VN_MAX_WANTED_BACKENDS][16];
  int32_t n_wanted;
  vn_failed_backend failed[VN_MAX_FAILED_BACKENDS];
  int32_t n_failed;
  vn_backend *backends;
  int32_t n_backends, cap_backends;
  vnrt_device *devices;
  int32_t n_devices;
};

vnrt_status vn_registry_create(vnrt_context *ctx, const vnrt_context_desc *desc,
                               vn_registry **out_registry);
void vn_registry_destroy(vnrt_context *ctx, vn_registry *registry);

/* Opens the backend device behind device if it is not open yet. */
vnrt_status vn_device_open(vnrt_device *device, vnrt_backend_device **out);

/* The CPU device (always present, index 0 of the registry). */
vnrt_device *vn_cpu_device(vnrt_context *ctx);

#endif /* VNRT_RUNTIME_REGISTRY_H_ */
