/* Device calls: every call the runtime makes into a backend for a device's memory and work goes
 * through these wrappers, which count the calls and can fail them on purpose (fault injection,
 * docs/robustness.md). Counting is always on (one relaxed atomic add per call); a fault is
 * armed with vn_fault_set (tests) or $VNRT_FAULT_INJECT (read when the context is created).
 *
 * A fault fails the Nth later call of one point on one device, once, with
 * VNRT_ERROR_OUT_OF_MEMORY (alloc) or VNRT_ERROR_DEVICE (the rest), and a message naming the
 * device and the operation. A "lost" fault makes the device lost from that call on: every
 * later call of every point fails with VNRT_ERROR_DEVICE until vn_fault_clear. Frees and
 * destroys always reach the backend (a plan on a lost device can still be destroyed), and a
 * failed map is a NULL host pointer, which callers take as "not host-visible". */
#ifndef VNRT_RUNTIME_FAULT_H_
#define VNRT_RUNTIME_FAULT_H_

#include <stdatomic.h>

#include "core.h"

typedef enum vn_fault_point {
  VN_FAULT_OPEN,    /* device_open */
  VN_FAULT_ALLOC,   /* buffer_alloc */
  VN_FAULT_WRITE,   /* buffer_write (bindings, transfers, states, the copy stream's jobs) */
  VN_FAULT_READ,    /* buffer_read (outputs, states, transfers, shadows) */
  VN_FAULT_MAP,     /* buffer_host_ptr */
  VN_FAULT_COMPILE, /* compile */
  VN_FAULT_RUN,     /* run (a submit of a range of nodes) */
  VN_FAULT_POINTS
} vn_fault_point;

/* Per device: call counts and the armed fault. */
typedef struct vn_fault_state {
  _Atomic int64_t calls[VN_FAULT_POINTS];
  _Atomic int64_t fail_at[VN_FAULT_POINTS]; /* the call number that fails; 0: none */
  _Atomic bool lose[VN_FAULT_POINTS];       /* that call makes the device lost */
  _Atomic bool lost;
  _Atomic int64_t live_buffers, live_execs; /* allocated and not freed, through these calls */
} vn_fault_state;

/* "alloc", "write", ...; NULL for a point out of range. */
const char *vn_fault_point_name(vn_fault_point point);

/* Arms a fault on device: the nth call of point from now (n >= 1) fails, and when lose is
 * true the device is lost from that call on. Replaces a fault armed on that point. */
vnrt_status vn_fault_set(vnrt_device *device, vn_fault_point point, int64_t nth, bool lose);
/* Disarms every fault of device and ends its loss. Counts are kept. */
void vn_fault_clear(vnrt_device *device);
/* Calls of point made on device so far (failed ones included). */
int64_t vn_fault_calls(const vnrt_device *device, vn_fault_point point);
/* Buffers and execs made through these calls and not yet freed. */
void vn_fault_live(const vnrt_device *device, int64_t *out_buffers, int64_t *out_execs);

/* Arms the faults $VNRT_FAULT_INJECT lists (docs/robustness.md); called once the registry lists
 * its devices. A malformed value is VNRT_ERROR_INVALID_ARGUMENT; a device not present is
 * logged and skipped. */
vnrt_status vn_fault_from_env(vnrt_context *ctx);

/* The wrappers. */
vnrt_status vn_dev_open(vnrt_device *device, vnrt_backend_device **out);
vnrt_status vn_dev_alloc(vnrt_device *device, uint64_t bytes, vnrt_backend_buffer **out);
void vn_dev_free(vnrt_device *device, vnrt_backend_buffer *buffer);
void *vn_dev_map(vnrt_device *device, vnrt_backend_buffer *buffer);
vnrt_status vn_dev_write(vnrt_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                         const void *src, uint64_t bytes);
/* The optional async slots (backend.h, API 3): faults as buffer_write and run. */
vnrt_status vn_dev_write_async(vnrt_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                               const void *src, uint64_t bytes, const vnrt_backend_sync *sync);
vnrt_status vn_dev_run_async(vnrt_device *device, vnrt_backend_exec *exec, int32_t first,
                             int32_t count, const vnrt_backend_sync *sync);
vnrt_status vn_dev_read(vnrt_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                        void *dst, uint64_t bytes);
vnrt_status vn_dev_compile(vnrt_device *device, const vnrt_backend_graph *graph,
                           vnrt_backend_exec **out);
vnrt_status vn_dev_run(vnrt_device *device, vnrt_backend_exec *exec, int32_t first, int32_t count);
/* Needs the backend's run_timed slot (vn_inspect_timed_slot). */
vnrt_status vn_dev_run_timed(vnrt_device *device, vnrt_backend_exec *exec, int32_t first,
                             int32_t count, uint64_t *out_ns);
void vn_dev_exec_destroy(vnrt_device *device, vnrt_backend_exec *exec);

#endif /* VNRT_RUNTIME_FAULT_H_ */
