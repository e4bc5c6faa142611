/* Device buffer layout: one device's tensors placed into buffers of at most a given size — io
 * slots packed in order, everything else packed by liveness through the arena planner. */
#ifndef VNRT_MEMORY_LAYOUT_H_
#define VNRT_MEMORY_LAYOUT_H_

#include "core.h"

/* How a tensor gets its storage. */
typedef enum vn_slot_kind {
  VN_SLOT_IO = 0,       /* a slot of its own for the whole plan (inputs, params, states) */
  VN_SLOT_ARENA = 1,    /* live over steps [first, last]: shares the arena by liveness */
  VN_SLOT_ALIAS = 2,    /* the storage of slot `alias` (an io or arena slot) */
  VN_SLOT_EXTERNAL = 3, /* memory the layout does not own (another plan's): offset is given */
} vn_slot_kind;

/* One tensor: kind and size in, buffer and offset out. */
typedef struct vn_slot {
  vn_slot_kind kind;
  uint64_t bytes;
  int32_t first, last; /* VN_SLOT_ARENA */
  int32_t alias;       /* VN_SLOT_ALIAS */
  int32_t buffer;      /* its buffer, an index into buf_bytes; -1 for VN_SLOT_EXTERNAL */
  uint64_t offset;     /* within that buffer (VN_SLOT_EXTERNAL: as given) */
} vn_slot;

/* A device's buffers: the io buffers come first (inputs, params and states, one slot each,
 * packed in slot order into the open buffer, a new one opened where it would pass the limit),
 * then the arena's (packed by liveness, in several buffers when one would pass the limit; no
 * tensor straddles two). A slot larger than the limit gets an arena buffer of its own. */
typedef struct vn_layout {
  uint64_t *buf_bytes; /* per buffer; owned */
  int32_t n_bufs, n_io_bufs;
  uint64_t io_bytes, arena_bytes; /* summed over the io and the arena buffers */
} vn_layout;

uint64_t vn_align_up(uint64_t x, uint64_t a);

/* Lays out slots[0, n) in buffers of at most cap bytes (0: no limit; a multiple of align), each
 * slot at a multiple of align (a power of two) and taking its size rounded up to it. Fills every
 * slot's buffer and offset and *out (whose previous buffers it frees first). */
vnrt_status vn_layout_plan(vnrt_context *ctx, vn_slot *slots, int32_t n, uint64_t cap,
                           uint64_t align, vn_layout *out);
void vn_layout_free(vnrt_context *ctx, vn_layout *layout);

#endif /* VNRT_MEMORY_LAYOUT_H_ */
