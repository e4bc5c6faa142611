/* Which bytes of a buffer are known to hold no e4m3 NaN code (0x7F or 0xFF), so that gemv.comp
 * may skip its NaN test on a weight read from them (docs/vulkan.md, "NaN-free weights").
 *
 * buffer_write and buffer_write_async take a write's range out of the buffer's clean ranges
 * before writing and, once the write succeeded, scan the bytes they were given: a write with no
 * byte whose low 7 bits are all set adds its range back, any other leaves it out (the whole
 * write: a 0x7F scale byte written with its codes keeps them out too). A run removes every range
 * its dispatches may write (vk_exec.c), and a buffer whose host address was handed out
 * (buffer_host_ptr) is never clean again: writes through that address are not seen, so a buffer
 * that compiled GEMVs may read without the test keeps its address (vk_clean_hand_out). What was
 * never written is not clean. The test is on bytes, whatever the tensor's dtype: bytes of other
 * dtypes only make their ranges unclean, which costs nothing but the test they would not have
 * skipped. */
#include <string.h>

#include "vk_internal.h"

bool vk_clean_scan(const void *src, uint64_t bytes) {
  const uint8_t *p = src;
  const uint64_t low7 = UINT64_C(0x7f7f7f7f7f7f7f7f), one = UINT64_C(0x0101010101010101);
  const uint64_t top = UINT64_C(0x8080808080808080);
  uint64_t i = 0;
  /* Eight bytes a word: adding 1 to each byte's low 7 bits carries into its bit 7 exactly when
   * they are all set, never into the next byte. Blocks of 4 KiB without a branch (vectorized),
   * stopping after the first block with a NaN code. */
  for (; i + 4096 <= bytes; i += 4096) {
    uint64_t acc = 0;
    for (uint64_t j = 0; j < 4096; j += 8) {
      uint64_t w;
      memcpy(&w, p + i + j, 8);
      acc |= (w & low7) + one;
    }
    if (acc & top) return false;
  }
  uint64_t acc = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    acc |= (w & low7) + one;
  }
  for (; i < bytes; ++i) acc |= (uint64_t)((p[i] & 0x7fu) + 1u);
  return (acc & top) == 0;
}

static vnrt_status grow(const vnrt_backend_host *host, vk_clean *c, int32_t need) {
  if (need <= c->cap) return VNRT_OK;
  int32_t cap = c->cap ? 2 * c->cap : 16;
  while (cap < need) cap *= 2;
  vk_span *r = host->alloc(host->core, sizeof *r * (size_t)cap);
  if (!r) return VNRT_ERROR_OUT_OF_MEMORY;
  if (c->r) {
    memcpy(r, c->r, sizeof *r * (size_t)c->n);
    host->free(host->core, c->r);
  }
  c->r = r;
  c->cap = cap;
  return VNRT_OK;
}

/* The first range whose hi is at or past x (c->n if none). */
static int32_t first_reaching(const vk_clean *c, uint64_t x) {
  int32_t lo = 0, hi = c->n;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (c->r[mid].hi < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

void vk_clean_sub_locked(const vnrt_backend_host *host, vk_clean *c, uint64_t lo, uint64_t hi) {
  if (lo >= hi || c->n == 0) return;
  int32_t i = first_reaching(c, lo + 1); /* ranges ending at lo or before stay */
  if (i == c->n || c->r[i].lo >= hi) return;
  vk_span head = c->r[i];
  int32_t j = i;
  while (j < c->n && c->r[j].lo < hi) ++j; /* ranges i .. j - 1 overlap [lo, hi) */
  vk_span tail = c->r[j - 1];
  vk_span keep[2];
  int32_t k = 0;
  if (head.lo < lo) keep[k++] = (vk_span){head.lo, lo};
  if (tail.hi > hi) keep[k++] = (vk_span){hi, tail.hi};
  /* j - i >= 1 ranges become k <= 2: only one range split in two grows the list; without
   * memory for it the range is dropped whole (unclean is always safe). */
  if (k == 2 && j - i == 1 && grow(host, c, c->n + 1) != VNRT_OK) k = 0;
  memmove(c->r + i + k, c->r + j, sizeof *c->r * (size_t)(c->n - j));
  for (int32_t m = 0; m < k; ++m) c->r[i + m] = keep[m];
  c->n += k - (j - i);
  c->gen++;
}

/* Adds [lo, hi), merged with the ranges it touches. */
static void add_locked(const vnrt_backend_host *host, vk_clean *c, uint64_t lo, uint64_t hi) {
  if (lo >= hi) return;
  int32_t i = first_reaching(c, lo); /* the first range that ends at lo or later */
  int32_t j = i;
  while (j < c->n && c->r[j].lo <= hi) ++j; /* ranges i .. j - 1 touch [lo, hi) */
  if (j > i) {
    if (c->r[i].lo < lo) lo = c->r[i].lo;
    if (c->r[j - 1].hi > hi) hi = c->r[j - 1].hi;
  } else if (grow(host, c, c->n + 1) != VNRT_OK) {
    return; /* not recorded: stays unclean */
  }
  int32_t k = j > i ? j - i : 0;
  memmove(c->r + i + 1, c->r + i + k, sizeof *c->r * (size_t)(c->n - i - k));
  c->r[i] = (vk_span){lo, hi};
  c->n += 1 - k;
  c->gen++;
  c->add_gen++;
}

bool vk_clean_covers_locked(const vk_clean *c, uint64_t lo, uint64_t hi) {
  if (lo >= hi) return true;
  int32_t i = first_reaching(c, lo + 1);
  return i < c->n && c->r[i].lo <= lo && c->r[i].hi >= hi;
}

bool vk_clean_tracked(const vnrt_backend_device *dev) {
  /* Only gemv.comp, which runs on CPU devices (vk_builder_cpu_kernels), reads the ranges:
   * elsewhere they are never added, and no write is scanned. */
  return dev->phys->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

void vk_clean_begin_write(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                          uint64_t bytes) {
  if (bytes == 0 || !vk_clean_tracked(dev)) return;
  pthread_mutex_lock(&dev->clean_lock);
  if (!buf->clean.untracked) vk_clean_sub_locked(dev->host, &buf->clean, offset, offset + bytes);
  pthread_mutex_unlock(&dev->clean_lock);
}

void vk_clean_note_write(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                         const void *src, uint64_t bytes) {
  if (bytes == 0 || !vk_clean_tracked(dev)) return;
  bool clean = vk_clean_scan(src, bytes);
  pthread_mutex_lock(&dev->clean_lock);
  if (!buf->clean.untracked) {
    if (clean) {
      add_locked(dev->host, &buf->clean, offset, offset + bytes);
    } else {
      vk_clean_sub_locked(dev->host, &buf->clean, offset, offset + bytes);
    }
  }
  pthread_mutex_unlock(&dev->clean_lock);
}

void vk_clean_add_readers(vnrt_backend_device *dev, vnrt_backend_buffer *buf, int32_t delta) {
  pthread_mutex_lock(&dev->clean_lock);
  buf->clean.readers += delta;
  pthread_mutex_unlock(&dev->clean_lock);
}

/* A buffer whose address is out is never clean again: writes through it are not seen. One that
 * compiled GEMVs may read without the NaN test keeps its address (the caller copies through
 * buffer_read and buffer_write instead, which keep the ranges): the executor maps a buffer to
 * copy a value out of it, for a CPU node or a state's replica, and the buffer holding a
 * plan's inputs, states and params would lose every weight's state with the first such copy
 * (docs/vulkan.md, "NaN-free weights"). */
bool vk_clean_hand_out(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  pthread_mutex_lock(&dev->clean_lock);
  bool out = buf->clean.untracked || buf->clean.readers == 0;
  if (out && !buf->clean.untracked) {
    buf->clean.untracked = true;
    buf->clean.n = 0;
    buf->clean.gen++;
  }
  pthread_mutex_unlock(&dev->clean_lock);
  return out;
}

void vk_clean_free(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  if (buf->clean.r) dev->host->free(dev->host->core, buf->clean.r);
  buf->clean = (vk_clean){0};
}
