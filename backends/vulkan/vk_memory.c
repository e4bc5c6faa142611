/* Device memory: a suballocator over a few large VkDeviceMemory blocks per memory type (with
 * the device's heap sizes and maxMemoryAllocationCount respected), the backend's buffers, and
 * host <-> device copies (zero-copy through a persistent mapping where device memory is
 * host-visible, else through the copy stream's staging chunks, vk_copy.c). */
#include <inttypes.h>
#include <string.h>

#include "vk_internal.h"

#define VK_BLOCK_BYTES (64ull << 20) /* a shared block; larger requests get their own */
#define VK_BUFFER_ALIGN 256ull       /* tensor offsets are multiples of 256 */

typedef struct vk_range {
  uint64_t offset, size;
} vk_range;

struct vk_block {
  VkDeviceMemory memory;
  uint64_t size;
  uint32_t type;
  uint8_t *map; /* persistent mapping of host-visible memory, else NULL */
  bool dedicated;
  uint32_t live;  /* suballocations in use */
  vk_range *free; /* free ranges sorted by offset */
  int32_t n_free, cap_free;
  vk_block *next;
};

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Buffers are used by the compute queue and the copy queue: where those are of two families,
 * both may access them concurrently (no ownership transfers). families must outlive bci. */
static void sharing_mode(const vnrt_backend_device *dev, VkBufferCreateInfo *bci,
                         uint32_t families[2]) {
  uint32_t n = vk_copy_families(dev, families);
  bci->sharingMode = n > 1 ? VK_SHARING_MODE_CONCURRENT : VK_SHARING_MODE_EXCLUSIVE;
  bci->queueFamilyIndexCount = n > 1 ? n : 0;
  bci->pQueueFamilyIndices = n > 1 ? families : NULL;
}

/* Picks the memory types for buffers and for host-visible staging, by capability. */
static void pick_types(vnrt_backend_device *dev, uint32_t allowed) {
  const VkPhysicalDeviceMemoryProperties *mp = &dev->phys->mem;
  vk_allocator *a = &dev->mem;
  a->device_type = a->host_type = UINT32_MAX;
  a->device_mapped = false;
  const VkMemoryPropertyFlags dl = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT;
  const VkMemoryPropertyFlags hc = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  uint64_t best_heap = 0;
  for (uint32_t t = 0; t < mp->memoryTypeCount; ++t) {
    if (!(allowed & (1u << t)) || !(mp->memoryTypes[t].propertyFlags & dl)) continue;
    uint64_t hs = mp->memoryHeaps[mp->memoryTypes[t].heapIndex].size;
    if (hs > best_heap) best_heap = hs;
  }
  /* Device buffers: on the largest device-local heap; a host-visible, coherent type there
   * (UMA, full-size BAR) is zero-copy; otherwise prefer a type without HOST_VISIBLE, which
   * on discrete GPUs is the full heap rather than a small BAR window. */
  int32_t best = -1, best_score = -1;
  for (uint32_t t = 0; t < mp->memoryTypeCount; ++t) {
    VkMemoryPropertyFlags f = mp->memoryTypes[t].propertyFlags;
    if (!(allowed & (1u << t)) || !(f & dl)) continue;
    if (mp->memoryHeaps[mp->memoryTypes[t].heapIndex].size != best_heap) continue;
    int32_t score = ((f & (hv | hc)) == (hv | hc)) ? 2 : ((f & hv) ? 0 : 1);
    if (score > best_score) best = (int32_t)t, best_score = score;
  }
  if (best < 0) {
    /* No device-local memory at all (some software drivers): any host-visible type. */
    for (uint32_t t = 0; t < mp->memoryTypeCount && best < 0; ++t) {
      if ((allowed & (1u << t)) && (mp->memoryTypes[t].propertyFlags & hv)) best = (int32_t)t;
    }
  }
  if (best >= 0) {
    a->device_type = (uint32_t)best;
    a->device_mapped = (mp->memoryTypes[best].propertyFlags & hv) && !dev->state->force_staging;
  }
  /* Staging and the per-exec aux buffer: host-visible, coherent (and cached) if possible. */
  best_score = -1;
  for (uint32_t t = 0; t < mp->memoryTypeCount; ++t) {
    VkMemoryPropertyFlags f = mp->memoryTypes[t].propertyFlags;
    if (!(allowed & (1u << t)) || !(f & hv)) continue;
    int32_t score = ((f & hc) ? 2 : 0) + ((f & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) ? 1 : 0);
    if (score > best_score) a->host_type = t, best_score = score;
  }
  uint64_t heap = best >= 0 ? mp->memoryHeaps[mp->memoryTypes[best].heapIndex].size : 0;
  a->block_bytes = VK_BLOCK_BYTES;
  if (heap && a->block_bytes > heap / 8) a->block_bytes = align_up(heap / 8, VK_BUFFER_ALIGN);
}

void vk_memory_init(vnrt_backend_device *dev) {
  memset(&dev->mem, 0, sizeof dev->mem);
  /* Which memory types a storage buffer may use: ask with a small probe buffer. */
  uint32_t allowed = 0;
  VkBufferCreateInfo bci = {
      .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
      .size = VK_BUFFER_ALIGN,
      .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT,
  };
  uint32_t families[2];
  sharing_mode(dev, &bci, families);
  VkBuffer probe = VK_NULL_HANDLE;
  if (vkCreateBuffer(dev->device, &bci, NULL, &probe) == VK_SUCCESS) {
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev->device, probe, &req);
    allowed = req.memoryTypeBits;
    vkDestroyBuffer(dev->device, probe, NULL);
  }
  pick_types(dev, allowed);
}

static void block_free(vnrt_backend_device *dev, vk_block *b) {
  const vnrt_backend_host *host = dev->host;
  if (b->map) vkUnmapMemory(dev->device, b->memory);
  vkFreeMemory(dev->device, b->memory, NULL);
  dev->mem.n_allocations--;
  dev->mem.heap_used[dev->phys->mem.memoryTypes[b->type].heapIndex] -= b->size;
  if (b->free) host->free(host->core, b->free);
  host->free(host->core, b);
}

void vk_memory_destroy(vnrt_backend_device *dev) {
  vk_block *b = dev->mem.blocks;
  while (b) {
    vk_block *next = b->next;
    block_free(dev, b);
    b = next;
  }
  dev->mem.blocks = NULL;
}

/* A new VkDeviceMemory of `size` bytes of `type`, checked against the device's limits. */
static vnrt_status block_create(vnrt_backend_device *dev, uint32_t type, uint64_t size,
                                bool dedicated, const char *what, vk_block **out) {
  const vnrt_backend_host *host = dev->host;
  const VkPhysicalDeviceMemoryProperties *mp = &dev->phys->mem;
  const VkPhysicalDeviceLimits *lim = &dev->phys->props.limits;
  *out = NULL;
  uint32_t heap = mp->memoryTypes[type].heapIndex;
  uint64_t heap_size = mp->memoryHeaps[heap].size;
  if (dev->mem.n_allocations >= lim->maxMemoryAllocationCount) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "vulkan %s: %" PRIu64
                       " more bytes would need another device memory "
                       "allocation, beyond the device's maxMemoryAllocationCount (%" PRIu32 ")",
                       what, size, lim->maxMemoryAllocationCount);
  }
  if (size > heap_size - dev->mem.heap_used[heap] || dev->mem.heap_used[heap] > heap_size) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "vulkan %s: %" PRIu64 " bytes do not fit in memory heap %" PRIu32
                       " (heap size %" PRIu64 " bytes, %" PRIu64 " in use)",
                       what, size, heap, heap_size, dev->mem.heap_used[heap]);
  }
  vk_block *b = host->alloc(host->core, sizeof *b);
  if (!b) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  memset(b, 0, sizeof *b);
  b->size = size;
  b->type = type;
  b->dedicated = dedicated;
  VkMemoryAllocateInfo mai = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
      .allocationSize = size,
      .memoryTypeIndex = type,
  };
  VkResult r = vkAllocateMemory(dev->device, &mai, NULL, &b->memory);
  if (r != VK_SUCCESS) {
    host->free(host->core, b);
    return VK_FAIL(host, VNRT_ERROR_OUT_OF_MEMORY, r,
                   "%s: vkAllocateMemory of %" PRIu64 " bytes in heap %" PRIu32
                   " (heap size %" PRIu64 " bytes, %" PRIu64 " in use)",
                   what, size, heap, heap_size, dev->mem.heap_used[heap]);
  }
  if (mp->memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
    void *p = NULL;
    r = vkMapMemory(dev->device, b->memory, 0, VK_WHOLE_SIZE, 0, &p);
    if (r != VK_SUCCESS) {
      vkFreeMemory(dev->device, b->memory, NULL);
      host->free(host->core, b);
      return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "%s: vkMapMemory", what);
    }
    b->map = p;
  }
  b->cap_free = 8;
  b->free = host->alloc(host->core, sizeof *b->free * (size_t)b->cap_free);
  if (!b->free) {
    if (b->map) vkUnmapMemory(dev->device, b->memory);
    vkFreeMemory(dev->device, b->memory, NULL);
    host->free(host->core, b);
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  }
  b->free[0] = (vk_range){0, size};
  b->n_free = 1;
  dev->mem.n_allocations++;
  dev->mem.heap_used[heap] += size;
  b->next = dev->mem.blocks;
  dev->mem.blocks = b;
  *out = b;
  return VNRT_OK;
}

/* First fit of `size` bytes aligned to `align` in b; UINT64_MAX if none. */
static uint64_t block_take(vk_block *b, uint64_t size, uint64_t align) {
  for (int32_t i = 0; i < b->n_free; ++i) {
    vk_range *f = &b->free[i];
    uint64_t start = align_up(f->offset, align);
    if (start < f->offset || start - f->offset > f->size || f->size - (start - f->offset) < size) {
      continue;
    }
    uint64_t head = start - f->offset, tail = f->size - head - size;
    /* Alignment padding at the head stays free; only the aligned range is taken. */
    if (head == 0) {
      f->offset += size;
      f->size = tail;
    } else {
      f->size = head;
      if (tail > 0) {
        /* Split: block_reserve_range made room for one more range. */
        memmove(&b->free[i + 2], &b->free[i + 1], sizeof *b->free * (size_t)(b->n_free - i - 1));
        b->free[i + 1] = (vk_range){start + size, tail};
        b->n_free++;
      }
    }
    if (b->free[i].size == 0) {
      memmove(&b->free[i], &b->free[i + 1], sizeof *b->free * (size_t)(b->n_free - i - 1));
      b->n_free--;
    }
    b->live++;
    return start;
  }
  return UINT64_MAX;
}

/* Makes room in b's free list for the next take and the gives that follow: the list never
 * holds more than live + 1 ranges (free and used ranges alternate). */
static bool block_reserve_range(vnrt_backend_device *dev, vk_block *b) {
  int32_t need = (int32_t)b->live + 4;
  if (need < b->n_free + 2) need = b->n_free + 2;
  if (need <= b->cap_free) return true;
  int32_t cap = b->cap_free * 2 > need ? b->cap_free * 2 : need;
  vk_range *n = dev->host->alloc(dev->host->core, sizeof *n * (size_t)cap);
  if (!n) return false;
  memcpy(n, b->free, sizeof *n * (size_t)b->n_free);
  dev->host->free(dev->host->core, b->free);
  b->free = n;
  b->cap_free = cap;
  return true;
}

/* Returns [offset, offset + size) to b's free list, merging with its neighbours. */
static void block_give(vk_block *b, uint64_t offset, uint64_t size) {
  int32_t i = 0;
  while (i < b->n_free && b->free[i].offset < offset) ++i;
  bool merge_prev = i > 0 && b->free[i - 1].offset + b->free[i - 1].size == offset;
  bool merge_next = i < b->n_free && offset + size == b->free[i].offset;
  if (merge_prev && merge_next) {
    b->free[i - 1].size += size + b->free[i].size;
    memmove(&b->free[i], &b->free[i + 1], sizeof *b->free * (size_t)(b->n_free - i - 1));
    b->n_free--;
  } else if (merge_prev) {
    b->free[i - 1].size += size;
  } else if (merge_next) {
    b->free[i].offset = offset;
    b->free[i].size += size;
  } else {
    /* block_reserve_range keeps room for this: the list never outgrows live + 1. */
    memmove(&b->free[i + 1], &b->free[i], sizeof *b->free * (size_t)(b->n_free - i));
    b->free[i] = (vk_range){offset, size};
    b->n_free++;
  }
  b->live--;
}

/* Suballocates `size` bytes aligned to `align` from memory type `type`. */
static vnrt_status suballoc(vnrt_backend_device *dev, uint32_t type, uint64_t size, uint64_t align,
                            const char *what, vk_block **out_block, uint64_t *out_offset) {
  vk_allocator *a = &dev->mem;
  if (size > a->block_bytes / 2) {
    VK_TRY(block_create(dev, type, size, true, what, out_block));
    (*out_block)->n_free = 0;
    (*out_block)->live = 1;
    *out_offset = 0;
    return VNRT_OK;
  }
  for (vk_block *b = a->blocks; b; b = b->next) {
    if (b->type != type || b->dedicated) continue;
    if (!block_reserve_range(dev, b)) {
      return dev->host->error(dev->host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
    }
    uint64_t off = block_take(b, size, align);
    if (off != UINT64_MAX) {
      *out_block = b;
      *out_offset = off;
      return VNRT_OK;
    }
  }
  vk_block *b = NULL;
  VK_TRY(block_create(dev, type, a->block_bytes, false, what, &b));
  uint64_t off = block_reserve_range(dev, b) ? block_take(b, size, align) : UINT64_MAX;
  if (off == UINT64_MAX) {
    return dev->host->error(dev->host->core, VNRT_ERROR_INTERNAL,
                            "vulkan %s: a fresh block of %" PRIu64 " bytes cannot hold %" PRIu64,
                            what, b->size, size);
  }
  *out_block = b;
  *out_offset = off;
  return VNRT_OK;
}

static void release(vnrt_backend_device *dev, vk_block *b, uint64_t offset, uint64_t size) {
  if (b->dedicated) {
    b->live = 0;
  } else {
    block_give(b, offset, size);
  }
  if (b->live > 0) return;
  /* Keep one empty shared block per type so that plan after plan does not churn memory. */
  if (!b->dedicated) {
    int32_t empty = 0;
    for (vk_block *o = dev->mem.blocks; o; o = o->next) {
      empty += (o != b && o->type == b->type && !o->dedicated && o->live == 0);
    }
    if (empty == 0) return;
  }
  vk_block **pp = &dev->mem.blocks;
  while (*pp && *pp != b) pp = &(*pp)->next;
  if (*pp) *pp = b->next;
  block_free(dev, b);
}

static vnrt_status buffer_create_locked(vnrt_backend_device *dev, uint64_t bytes, bool host_visible,
                                        const char *what, vnrt_backend_buffer **out_buffer) {
  const vnrt_backend_host *host = dev->host;
  *out_buffer = NULL;
  uint32_t type = host_visible ? dev->mem.host_type : dev->mem.device_type;
  if (type == UINT32_MAX) {
    return host->error(host->core, VNRT_ERROR_DEVICE,
                       "vulkan %s: the device offers no %s memory type for storage buffers", what,
                       host_visible ? "host-visible" : "device");
  }
  if (bytes > UINT64_MAX - VK_BUFFER_ALIGN) bytes = UINT64_MAX - VK_BUFFER_ALIGN;
  uint64_t vk_size = align_up(bytes ? bytes : 1, VK_BUFFER_ALIGN);
  /* Check the heap before asking the driver, so that the message names the limit. */
  const VkPhysicalDeviceMemoryProperties *mp = &dev->phys->mem;
  uint32_t heap = mp->memoryTypes[type].heapIndex;
  if (vk_size > mp->memoryHeaps[heap].size) {
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "vulkan %s: %" PRIu64 " bytes exceed memory heap %" PRIu32
                       " of '%s' (heap size %" PRIu64 " bytes)",
                       what, bytes, heap, dev->phys->props.deviceName, mp->memoryHeaps[heap].size);
  }
  vnrt_backend_buffer *buf = host->alloc(host->core, sizeof *buf);
  if (!buf) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  memset(buf, 0, sizeof *buf);
  buf->size = bytes;
  buf->vk_size = vk_size;
  VkBufferCreateInfo bci = {
      .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
      .size = vk_size,
      .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT,
  };
  uint32_t families[2];
  sharing_mode(dev, &bci, families);
  VkResult r = vkCreateBuffer(dev->device, &bci, NULL, &buf->buffer);
  if (r != VK_SUCCESS) {
    host->free(host->core, buf);
    return VK_FAIL(host, VNRT_ERROR_OUT_OF_MEMORY, r, "%s: vkCreateBuffer of %" PRIu64 " bytes",
                   what, vk_size);
  }
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(dev->device, buf->buffer, &req);
  if (!(req.memoryTypeBits & (1u << type))) {
    vkDestroyBuffer(dev->device, buf->buffer, NULL);
    host->free(host->core, buf);
    return host->error(host->core, VNRT_ERROR_DEVICE,
                       "vulkan %s: memory type %" PRIu32 " is not allowed for this buffer", what,
                       type);
  }
  uint64_t align = req.alignment > VK_BUFFER_ALIGN ? req.alignment : VK_BUFFER_ALIGN;
  buf->mem_bytes = align_up(req.size, VK_BUFFER_ALIGN);
  vnrt_status s = suballoc(dev, type, buf->mem_bytes, align, what, &buf->block, &buf->mem_offset);
  if (s != VNRT_OK) {
    vkDestroyBuffer(dev->device, buf->buffer, NULL);
    host->free(host->core, buf);
    return s;
  }
  r = vkBindBufferMemory(dev->device, buf->buffer, buf->block->memory, buf->mem_offset);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(dev->device, buf->buffer, NULL);
    release(dev, buf->block, buf->mem_offset, buf->mem_bytes);
    host->free(host->core, buf);
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "%s: vkBindBufferMemory", what);
  }
  if (buf->block->map && (host_visible || dev->mem.device_mapped)) {
    buf->host = buf->block->map + buf->mem_offset;
  }
  *out_buffer = buf;
  return VNRT_OK;
}

vnrt_status vk_buffer_create(vnrt_backend_device *dev, uint64_t bytes, bool host_visible,
                             const char *what, vnrt_backend_buffer **out_buffer) {
  pthread_mutex_lock(&dev->mem_lock);
  vnrt_status s = buffer_create_locked(dev, bytes, host_visible, what, out_buffer);
  pthread_mutex_unlock(&dev->mem_lock);
  return s;
}

vnrt_status vk_buffer_alloc(vnrt_backend_device *dev, uint64_t bytes,
                            vnrt_backend_buffer **out_buffer) {
  return vk_buffer_create(dev, bytes, false, "buffer_alloc", out_buffer);
}

void vk_buffer_free(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  if (!buf) return;
  pthread_mutex_lock(&dev->mem_lock);
  vkDestroyBuffer(dev->device, buf->buffer, NULL);
  release(dev, buf->block, buf->mem_offset, buf->mem_bytes);
  pthread_mutex_unlock(&dev->mem_lock);
  vk_clean_free(dev, buf);
  dev->host->free(dev->host->core, buf);
}

void *vk_buffer_host_ptr(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  if (!buf || !buf->host) return NULL;
  /* Writes through it are not seen: not for a buffer whose weights GEMVs may read without the
   * NaN test (vk_clean.c); the caller copies instead. */
  return vk_clean_hand_out(dev, buf) ? buf->host : NULL;
}

/* The range [offset, offset+bytes) of a mapped buffer, widened to nonCoherentAtomSize. */
static VkMappedMemoryRange mapped_range(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                        uint64_t offset, uint64_t bytes) {
  uint64_t atom = dev->phys->props.limits.nonCoherentAtomSize;
  if (atom == 0) atom = 1;
  uint64_t start = buf->mem_offset + offset, end = start + bytes;
  start = start / atom * atom;
  end = align_up(end, atom);
  if (end > buf->block->size) end = buf->block->size;
  VkMappedMemoryRange r = {
      .sType = VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE,
      .memory = buf->block->memory,
      .offset = start,
      .size = end - start,
  };
  return r;
}

static bool coherent(vnrt_backend_device *dev, vnrt_backend_buffer *buf) {
  return dev->phys->mem.memoryTypes[buf->block->type].propertyFlags &
         VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
}

void vk_buffer_flush(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                     uint64_t bytes) {
  if (!buf->block->map || coherent(dev, buf) || bytes == 0) return;
  VkMappedMemoryRange r = mapped_range(dev, buf, offset, bytes);
  vkFlushMappedMemoryRanges(dev->device, 1, &r);
}

void vk_buffer_invalidate(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                          uint64_t bytes) {
  if (!buf->block->map || coherent(dev, buf) || bytes == 0) return;
  VkMappedMemoryRange r = mapped_range(dev, buf, offset, bytes);
  vkInvalidateMappedMemoryRanges(dev->device, 1, &r);
}

static vnrt_status check_range(vnrt_backend_device *dev, vnrt_backend_buffer *buf, const char *what,
                               uint64_t offset, uint64_t bytes) {
  if (!buf || offset > buf->size || bytes > buf->size - offset) {
    return dev->host->error(dev->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                            "vulkan buffer_%s: offset %" PRIu64 " + %" PRIu64
                            " bytes is past the buffer's size of %" PRIu64 " bytes",
                            what, offset, bytes, buf ? buf->size : 0);
  }
  return VNRT_OK;
}

vnrt_status vk_buffer_check(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                            uint64_t bytes, const char *what) {
  return check_range(dev, buf, what, offset, bytes);
}

vnrt_status vk_buffer_write(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                            const void *src, uint64_t bytes) {
  VK_TRY(check_range(dev, buf, "write", offset, bytes));
  if (bytes == 0) return VNRT_OK;
  /* Out of the clean ranges while the bytes change; back in once they are written (a failed
   * write may leave any bytes there). */
  vk_clean_begin_write(dev, buf, offset, bytes);
  vnrt_status s = VNRT_OK;
  if (buf->host) {
    memcpy(buf->host + offset, src, (size_t)bytes);
    vk_buffer_flush(dev, buf, offset, bytes);
  } else {
    s = vk_copy_write(dev, buf, offset, src, bytes);
  }
  if (s == VNRT_OK) vk_clean_note_write(dev, buf, offset, src, bytes);
  return s;
}

vnrt_status vk_buffer_read(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                           void *dst, uint64_t bytes) {
  VK_TRY(check_range(dev, buf, "read", offset, bytes));
  if (bytes == 0) return VNRT_OK;
  if (buf->host) {
    vk_buffer_invalidate(dev, buf, offset, bytes);
    memcpy(dst, buf->host + offset, (size_t)bytes);
    return VNRT_OK;
  }
  return vk_copy_read(dev, buf, offset, dst, bytes);
}
