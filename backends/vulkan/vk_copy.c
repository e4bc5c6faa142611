/* The copy stream's side of a device: the queue staged copies go on (a dedicated transfer
 * queue, a second compute queue, the compute queue itself, or none), double-buffered staging
 * chunks, and the copy and compute timeline semaphores that order copies and runs on the
 * device as well as on the host. */
#include <inttypes.h>
#include <string.h>

#include "vk_internal.h"

#define VK_STAGING_BYTES (8ull << 20)       /* one staging chunk; VK_COPY_SLOTS of them */
#define VK_WAIT_NS (600ull * 1000000000ull) /* a bounded wait: a hung device is an error */

/* An async slots' timeline (backend.h): a timeline semaphore. */
struct vnrt_backend_timeline {
  VkSemaphore sem;
};

static bool uses_timeline(const vnrt_backend_device *dev) { return dev->copy.mode != VK_COPY_NONE; }

/* ---- Choice and setup ------------------------------------------------------------------ */

void vk_copy_choose(vnrt_backend_device *dev) {
  const vk_phys *p = dev->phys;
  vk_copy *c = &dev->copy;
  c->mode = VK_COPY_NONE;
  c->family = p->queue_family;
  c->index = 0;
  c->why = "one queue";
  atomic_init(&c->copy_published, 0);
  atomic_init(&c->compute_published, 0);
  if (dev->state->copy_pref == VK_COPY_PREF_OFF) {
    c->why = "VNRT_VK_COPY_QUEUE=0";
  } else if (!p->timeline) {
    c->why = "no timeline semaphores";
  } else if (dev->state->copy_pref == VK_COPY_PREF_SHARED) {
    c->mode = VK_COPY_SHARED;
  } else if (p->copy_family != UINT32_MAX) {
    c->mode = VK_COPY_TRANSFER;
    c->family = p->copy_family;
  } else if (p->queue_count >= 2) {
    c->mode = VK_COPY_SECOND;
    c->index = 1;
  }
}

uint32_t vk_copy_queue_infos(const vnrt_backend_device *dev, VkDeviceQueueCreateInfo out[2],
                             float *priorities) {
  priorities[0] = priorities[1] = 1.0f;
  out[0] = (VkDeviceQueueCreateInfo){
      .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
      .queueFamilyIndex = dev->phys->queue_family,
      .queueCount = dev->copy.mode == VK_COPY_SECOND ? 2 : 1,
      .pQueuePriorities = priorities,
  };
  if (dev->copy.mode != VK_COPY_TRANSFER) return 1;
  out[1] = (VkDeviceQueueCreateInfo){
      .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
      .queueFamilyIndex = dev->copy.family,
      .queueCount = 1,
      .pQueuePriorities = priorities,
  };
  return 2;
}

uint32_t vk_copy_families(const vnrt_backend_device *dev, uint32_t out[2]) {
  out[0] = dev->phys->queue_family;
  out[1] = dev->copy.family;
  return dev->copy.mode == VK_COPY_TRANSFER ? 2 : 1;
}

static VkResult timeline_create(VkDevice device, VkSemaphore *out) {
  VkSemaphoreTypeCreateInfo ti = {
      .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
      .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
      .initialValue = 0,
  };
  VkSemaphoreCreateInfo si = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &ti};
  return vkCreateSemaphore(device, &si, NULL, out);
}

/* One info line naming the choice (tests and users read it). */
static void log_choice(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  const vk_copy *c = &dev->copy;
  const char *mapped = dev->mem.device_mapped
                           ? "; buffers are mapped, so the host thread writes and reads them"
                           : "";
  if (c->mode == VK_COPY_NONE) {
    host->log(
        host->core, VNRT_LOG_INFO, "vulkan: copy stream: host thread %s (%s)",
        dev->mem.device_mapped ? "writing mapped memory" : "staging through the compute queue",
        c->why);
    return;
  }
  const char *queue = c->mode == VK_COPY_TRANSFER ? "dedicated transfer queue"
                      : c->mode == VK_COPY_SECOND ? "second compute queue"
                                                  : "the compute queue itself";
  const char *which = c->mode == VK_COPY_TRANSFER ? ""
                      : c->mode == VK_COPY_SECOND ? ", queue 1"
                                                  : ", queue 0, VNRT_VK_COPY_QUEUE=shared";
  host->log(host->core, VNRT_LOG_INFO,
            "vulkan: copy stream: %s (family %" PRIu32 "%s), timeline semaphores%s", queue,
            c->family, which, mapped);
}

vnrt_status vk_copy_init(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  vk_copy *c = &dev->copy;
  if (c->mode == VK_COPY_TRANSFER || c->mode == VK_COPY_SECOND) {
    vkGetDeviceQueue(dev->device, c->family, c->index, &c->queue);
  } else {
    c->queue = dev->queue;
  }
  VkCommandPoolCreateInfo cpi = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
      .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
      .queueFamilyIndex = c->family,
  };
  VkResult r = vkCreateCommandPool(dev->device, &cpi, NULL, &c->pool);
  if (r != VK_SUCCESS) {
    c->pool = VK_NULL_HANDLE;
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r,
                   "copy stream: vkCreateCommandPool for queue family %" PRIu32, c->family);
  }
  VkCommandBuffer cmds[VK_COPY_SLOTS];
  VkCommandBufferAllocateInfo cai = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
      .commandPool = c->pool,
      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
      .commandBufferCount = VK_COPY_SLOTS,
  };
  r = vkAllocateCommandBuffers(dev->device, &cai, cmds);
  if (r != VK_SUCCESS) {
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "copy stream: vkAllocateCommandBuffers");
  }
  for (int i = 0; i < VK_COPY_SLOTS; ++i) c->slots[i].cmd = cmds[i];
  if (!uses_timeline(dev)) {
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (int i = 0; i < VK_COPY_SLOTS; ++i) {
      r = vkCreateFence(dev->device, &fci, NULL, &c->slots[i].fence);
      if (r != VK_SUCCESS) {
        c->slots[i].fence = VK_NULL_HANDLE;
        return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "copy stream: vkCreateFence");
      }
    }
  } else {
    r = timeline_create(dev->device, &c->copy_timeline);
    if (r != VK_SUCCESS) c->copy_timeline = VK_NULL_HANDLE;
    if (r == VK_SUCCESS) {
      r = timeline_create(dev->device, &c->compute_timeline);
      if (r != VK_SUCCESS) c->compute_timeline = VK_NULL_HANDLE;
    }
    if (r != VK_SUCCESS) {
      return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "copy stream: vkCreateSemaphore (timeline)");
    }
    const bool core = dev->phys->timeline_core;
    const char *name = core ? "vkWaitSemaphores" : "vkWaitSemaphoresKHR";
    c->wait_semaphores = (PFN_vkWaitSemaphores)vkGetDeviceProcAddr(dev->device, name);
    c->counter_value = (PFN_vkGetSemaphoreCounterValue)vkGetDeviceProcAddr(
        dev->device, core ? "vkGetSemaphoreCounterValue" : "vkGetSemaphoreCounterValueKHR");
    c->signal_semaphore = (PFN_vkSignalSemaphore)vkGetDeviceProcAddr(
        dev->device, core ? "vkSignalSemaphore" : "vkSignalSemaphoreKHR");
    if (!c->wait_semaphores || !c->counter_value || !c->signal_semaphore) {
      return host->error(host->core, VNRT_ERROR_DEVICE,
                         "vulkan: copy stream: vkGetDeviceProcAddr(\"%s\") returned NULL", name);
    }
  }
  log_choice(dev);
  return VNRT_OK;
}

void vk_copy_destroy(vnrt_backend_device *dev) {
  vk_copy *c = &dev->copy;
  for (int i = 0; i < VK_COPY_SLOTS; ++i) {
    if (c->slots[i].staging) vk_buffer_free(dev, c->slots[i].staging);
    if (c->slots[i].fence) vkDestroyFence(dev->device, c->slots[i].fence, NULL);
    c->slots[i] = (vk_copy_slot){0};
  }
  if (c->pool) vkDestroyCommandPool(dev->device, c->pool, NULL); /* frees the slots' cmds */
  if (c->copy_timeline) vkDestroySemaphore(dev->device, c->copy_timeline, NULL);
  if (c->compute_timeline) vkDestroySemaphore(dev->device, c->compute_timeline, NULL);
  c->pool = VK_NULL_HANDLE;
  c->copy_timeline = c->compute_timeline = VK_NULL_HANDLE;
}

/* ---- Staged copies (staging_lock held) --------------------------------------------------- */

/* The staging chunks, created on first use (only devices whose buffers are not mapped need
 * them). */
static vnrt_status ensure_slots(vnrt_backend_device *dev) {
  for (int i = 0; i < VK_COPY_SLOTS; ++i) {
    vk_copy_slot *slot = &dev->copy.slots[i];
    if (slot->staging) continue;
    VK_TRY(vk_buffer_create(dev, VK_STAGING_BYTES, true, "staging", &slot->staging));
    if (!slot->staging->host) {
      return dev->host->error(dev->host->core, VNRT_ERROR_DEVICE,
                              "vulkan: the staging buffer is not host-visible");
    }
  }
  return VNRT_OK;
}

/* Waits until the slot's last copy is done, so that its staging memory is the host's again.
 * A failed wait leaves the slot pending: its next use waits again. */
static vnrt_status slot_wait(vnrt_backend_device *dev, vk_copy_slot *slot, const char *what) {
  if (!slot->pending) return VNRT_OK;
  vk_copy *c = &dev->copy;
  VkResult r;
  if (uses_timeline(dev)) {
    VkSemaphoreWaitInfo wi = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
        .semaphoreCount = 1,
        .pSemaphores = &c->copy_timeline,
        .pValues = &slot->value,
    };
    r = c->wait_semaphores(dev->device, &wi, VK_WAIT_NS);
    if (r != VK_SUCCESS) {
      return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r,
                     "%s: vkWaitSemaphores for copy timeline value %" PRIu64, what, slot->value);
    }
  } else {
    r = vkWaitForFences(dev->device, 1, &slot->fence, VK_TRUE, VK_WAIT_NS);
    if (r == VK_SUCCESS) r = vkResetFences(dev->device, 1, &slot->fence);
    if (r != VK_SUCCESS) {
      return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: vkWaitForFences for a staged copy",
                     what);
    }
  }
  slot->pending = false;
  return VNRT_OK;
}

/* Records the copy of `bytes` between the slot's staging memory and buf at offset. */
static vnrt_status slot_record(vnrt_backend_device *dev, vk_copy_slot *slot,
                               vnrt_backend_buffer *buf, uint64_t offset, uint64_t bytes,
                               bool to_device, const char *what) {
  VkCommandBuffer cmd = slot->cmd;
  VkCommandBufferBeginInfo bi = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
      .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
  };
  VkResult r = vkResetCommandBuffer(cmd, 0);
  if (r == VK_SUCCESS) r = vkBeginCommandBuffer(cmd, &bi);
  if (r != VK_SUCCESS) {
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: recording a staged copy", what);
  }
  VkBufferCopy region = {
      .srcOffset = to_device ? 0 : offset,
      .dstOffset = to_device ? offset : 0,
      .size = bytes,
  };
  VkBuffer src = to_device ? slot->staging->buffer : buf->buffer;
  VkBuffer dst = to_device ? buf->buffer : slot->staging->buffer;
  /* On a queue of the compute family (one queue, shared, second queue) the copy is also
   * ordered against compute work submitted before it on that queue; a transfer-only family
   * has no compute stage, and there the timeline semaphores alone order copies and runs. */
  const bool compute_family = dev->copy.family == dev->phys->queue_family;
  VkMemoryBarrier before = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask =
          VK_ACCESS_TRANSFER_WRITE_BIT | (compute_family ? VK_ACCESS_SHADER_WRITE_BIT : 0),
      .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
  };
  vkCmdPipelineBarrier(
      cmd,
      VK_PIPELINE_STAGE_TRANSFER_BIT | (compute_family ? VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT : 0),
      VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &before, 0, NULL, 0, NULL);
  if (bytes) vkCmdCopyBuffer(cmd, src, dst, 1, &region);
  /* The copy is visible to the host (a read) and to later work on this queue. */
  VkMemoryBarrier after = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
      .dstAccessMask =
          VK_ACCESS_HOST_READ_BIT |
          (compute_family ? VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT : 0),
  };
  vkCmdPipelineBarrier(
      cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
      VK_PIPELINE_STAGE_HOST_BIT | (compute_family ? VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT : 0), 0,
      1, &after, 0, NULL, 0, NULL);
  r = vkEndCommandBuffer(cmd);
  if (r != VK_SUCCESS) {
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: recording a staged copy", what);
  }
  return VNRT_OK;
}

/* Makes si wait for *wait on wait_sem (unless *wait is 0: nothing to wait for) and signal
 * *signal on signal_sem, through ti. Every pointer must outlive the submit. */
static void timeline_values(VkSubmitInfo *si, VkTimelineSemaphoreSubmitInfo *ti,
                            const VkSemaphore *wait_sem, const uint64_t *wait,
                            const VkPipelineStageFlags *wait_stage, const VkSemaphore *signal_sem,
                            const uint64_t *signal) {
  si->pNext = ti;
  if (*wait > 0) {
    si->waitSemaphoreCount = 1;
    si->pWaitSemaphores = wait_sem;
    si->pWaitDstStageMask = wait_stage;
    ti->waitSemaphoreValueCount = 1;
    ti->pWaitSemaphoreValues = wait;
  }
  si->signalSemaphoreCount = 1;
  si->pSignalSemaphores = signal_sem;
  ti->signalSemaphoreValueCount = 1;
  ti->pSignalSemaphoreValues = signal;
}

/* Submits the slot's copy on the copy queue. With timelines it signals the next copy value and,
 * for a copy that reads a device buffer (after_compute), waits for the last run submitted. An
 * async copy (user) waits for the user's timeline instead, and may signal it too. */
static vnrt_status slot_submit(vnrt_backend_device *dev, vk_copy_slot *slot, bool after_compute,
                               const vnrt_backend_sync *user, const char *what) {
  vk_copy *c = &dev->copy;
  const bool timeline = uses_timeline(dev);
  VkSubmitInfo si = {
      .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
      .commandBufferCount = 1,
      .pCommandBuffers = &slot->cmd,
  };
  VkTimelineSemaphoreSubmitInfo ti = {.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
  const VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
  uint64_t signal = c->copy_submitted + 1;
  uint64_t wait = after_compute ? atomic_load(&c->compute_published) : 0;
  if (timeline) {
    timeline_values(&si, &ti, &c->compute_timeline, &wait, &wait_stage, &c->copy_timeline, &signal);
  }
  VkSemaphore signal_sems[2] = {c->copy_timeline};
  uint64_t signal_values[2] = {signal};
  if (user) {
    si.waitSemaphoreCount = ti.waitSemaphoreValueCount = 0;
    if (user->wait) {
      si.waitSemaphoreCount = ti.waitSemaphoreValueCount = 1;
      si.pWaitSemaphores = &user->wait->sem;
      ti.pWaitSemaphoreValues = &user->wait_value;
      si.pWaitDstStageMask = &wait_stage;
    }
    if (user->signal) {
      signal_sems[1] = user->signal->sem, signal_values[1] = user->signal_value;
      si.signalSemaphoreCount = ti.signalSemaphoreValueCount = 2;
      si.pSignalSemaphores = signal_sems;
      ti.pSignalSemaphoreValues = signal_values;
    }
  }
  /* The compute queue is shared with run() on another thread; a copy queue of its own is only
   * used under staging_lock, which the caller holds. */
  const bool shared = c->queue == dev->queue;
  if (shared) pthread_mutex_lock(&dev->queue_lock);
  VkResult r = vkQueueSubmit(c->queue, 1, &si, timeline ? VK_NULL_HANDLE : slot->fence);
  if (shared) pthread_mutex_unlock(&dev->queue_lock);
  if (r != VK_SUCCESS) {
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: vkQueueSubmit of a staged copy", what);
  }
  slot->pending = true;
  if (timeline) {
    slot->value = signal;
    c->copy_submitted = signal;
    atomic_store(&c->copy_published, signal);
    if (!user) atomic_store(&c->sync_copy_published, signal);
  }
  return VNRT_OK;
}

vnrt_status vk_copy_write(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                          const void *src, uint64_t bytes) {
  vk_copy *c = &dev->copy;
  pthread_mutex_lock(&dev->staging_lock);
  vnrt_status s = ensure_slots(dev);
  const uint8_t *p = src;
  for (uint32_t k = 0; s == VNRT_OK && bytes > 0; ++k) {
    vk_copy_slot *slot = &c->slots[k % VK_COPY_SLOTS];
    uint64_t chunk = bytes < VK_STAGING_BYTES ? bytes : VK_STAGING_BYTES;
    /* The copy of chunk k - 2 read this staging memory; chunk k - 1 is copying meanwhile, so
     * this memcpy overlaps it. */
    s = slot_wait(dev, slot, "buffer_write");
    if (s != VNRT_OK) break;
    memcpy(slot->staging->host, p, (size_t)chunk);
    vk_buffer_flush(dev, slot->staging, 0, chunk);
    s = slot_record(dev, slot, buf, offset, chunk, true, "buffer_write");
    if (s == VNRT_OK) s = slot_submit(dev, slot, false, NULL, "buffer_write");
    p += chunk;
    offset += chunk;
    bytes -= chunk;
  }
  /* The data is in buf when this returns (the executor's job completion). After a failure the
   * slots still in flight are waited for on their next use instead, keeping the first error. */
  for (int i = 0; i < VK_COPY_SLOTS && s == VNRT_OK; ++i) {
    s = slot_wait(dev, &c->slots[i], "buffer_write");
  }
  pthread_mutex_unlock(&dev->staging_lock);
  return s;
}

/* Waits for a slot's copy to the host and hands its chunk to the caller's memory. */
static vnrt_status read_out(vnrt_backend_device *dev, vk_copy_slot *slot, uint8_t **out,
                            uint64_t *len) {
  VK_TRY(slot_wait(dev, slot, "buffer_read"));
  if (*len) {
    vk_buffer_invalidate(dev, slot->staging, 0, *len);
    memcpy(*out, slot->staging->host, (size_t)*len);
    *len = 0;
  }
  return VNRT_OK;
}

vnrt_status vk_copy_read(vnrt_backend_device *dev, vnrt_backend_buffer *buf, uint64_t offset,
                         void *dst, uint64_t bytes) {
  vk_copy *c = &dev->copy;
  pthread_mutex_lock(&dev->staging_lock);
  vnrt_status s = ensure_slots(dev);
  uint8_t *out[VK_COPY_SLOTS] = {0};
  uint64_t len[VK_COPY_SLOTS] = {0};
  uint8_t *p = dst;
  uint32_t k = 0;
  for (; s == VNRT_OK && bytes > 0; ++k) {
    uint32_t i = k % VK_COPY_SLOTS;
    /* Chunk k - 2 leaves this slot while chunk k - 1 copies. */
    s = read_out(dev, &c->slots[i], &out[i], &len[i]);
    if (s != VNRT_OK) break;
    uint64_t chunk = bytes < VK_STAGING_BYTES ? bytes : VK_STAGING_BYTES;
    s = slot_record(dev, &c->slots[i], buf, offset, chunk, false, "buffer_read");
    if (s == VNRT_OK) s = slot_submit(dev, &c->slots[i], true, NULL, "buffer_read");
    if (s == VNRT_OK) out[i] = p, len[i] = chunk;
    p += chunk;
    offset += chunk;
    bytes -= chunk;
  }
  for (uint32_t j = 0; j < VK_COPY_SLOTS && s == VNRT_OK; ++j) {
    uint32_t i = (k + j) % VK_COPY_SLOTS; /* the older chunk first */
    s = read_out(dev, &c->slots[i], &out[i], &len[i]);
  }
  pthread_mutex_unlock(&dev->staging_lock);
  return s;
}

/* ---- Async slots (backend.h, API 3) ---------------------------------------------------- */

vnrt_status vk_timeline_create(vnrt_backend_device *dev, vnrt_backend_timeline **out) {
  const vnrt_backend_host *host = dev->host;
  *out = NULL;
  if (!uses_timeline(dev)) {
    return host->error(host->core, VNRT_ERROR_UNSUPPORTED, "vulkan: no copy queue (%s)",
                       dev->copy.why);
  }
  vnrt_backend_timeline *tl = host->alloc(host->core, sizeof *tl);
  if (!tl) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  VkResult r = timeline_create(dev->device, &tl->sem);
  if (r != VK_SUCCESS) {
    host->free(host->core, tl);
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "timeline: vkCreateSemaphore");
  }
  *out = tl;
  return VNRT_OK;
}

void vk_timeline_destroy(vnrt_backend_device *dev, vnrt_backend_timeline *tl) {
  if (!tl) return;
  vkDestroySemaphore(dev->device, tl->sem, NULL);
  dev->host->free(dev->host->core, tl);
}

vnrt_status vk_timeline_query(vnrt_backend_device *dev, vnrt_backend_timeline *tl,
                              uint64_t *out_value) {
  *out_value = 0;
  VkResult r = dev->copy.counter_value(dev->device, tl->sem, out_value);
  if (r != VK_SUCCESS) return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "timeline: query");
  return VNRT_OK;
}

vnrt_status vk_timeline_wait(vnrt_backend_device *dev, vnrt_backend_timeline *tl, uint64_t value,
                             uint64_t timeout_ns) {
  if (value == 0) return VNRT_OK;
  VkSemaphoreWaitInfo wi = {
      .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
      .semaphoreCount = 1,
      .pSemaphores = &tl->sem,
      .pValues = &value,
  };
  VkResult r = dev->copy.wait_semaphores(dev->device, &wi, timeout_ns);
  if (r != VK_SUCCESS) {
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "timeline: waiting for value %" PRIu64, value);
  }
  return VNRT_OK;
}

vnrt_status vk_timeline_signal(vnrt_backend_device *dev, vnrt_backend_timeline *tl,
                               uint64_t value) {
  VkSemaphoreSignalInfo si = {
      .sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO,
      .semaphore = tl->sem,
      .value = value,
  };
  VkResult r = dev->copy.signal_semaphore(dev->device, &si);
  if (r != VK_SUCCESS) {
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "timeline: signalling value %" PRIu64, value);
  }
  return VNRT_OK;
}

/* Through the staging chunks on the copy queue: src is copied into a chunk before this
 * returns (so the caller may reuse it at once); the chunk's copy waits for sync's value and the
 * last one signals it. A chunk still in use from an earlier copy is waited for first (its wait
 * value was queued before, so that wait ends). */
vnrt_status vk_buffer_write_async(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                  uint64_t offset, const void *src, uint64_t bytes,
                                  const vnrt_backend_sync *sync) {
  VK_TRY(vk_buffer_check(dev, buf, offset, bytes, "write_async"));
  /* Out of the clean ranges from here; back in once every chunk is queued (the bytes are src's
   * for every later run, which waits for sync's signal). A failed write keeps them out. */
  const uint64_t offset0 = offset, bytes0 = bytes;
  vk_clean_begin_write(dev, buf, offset0, bytes0);
  vk_copy *c = &dev->copy;
  const vnrt_backend_sync none = {0};
  if (!sync) sync = &none;
  pthread_mutex_lock(&dev->staging_lock);
  vnrt_status s = ensure_slots(dev);
  const uint8_t *p = src;
  for (uint32_t k = 0; s == VNRT_OK && (bytes > 0 || k == 0); ++k) {
    vk_copy_slot *slot = &c->slots[c->next_slot];
    c->next_slot = (c->next_slot + 1) % VK_COPY_SLOTS;
    uint64_t chunk = bytes < VK_STAGING_BYTES ? bytes : VK_STAGING_BYTES;
    s = slot_wait(dev, slot, "write_async");
    if (s != VNRT_OK) break;
    if (chunk) {
      memcpy(slot->staging->host, p, (size_t)chunk);
      vk_buffer_flush(dev, slot->staging, 0, chunk);
    }
    /* An empty write still waits and signals (a copy of nothing is recorded as no copy). */
    s = slot_record(dev, slot, buf, offset, chunk, true, "write_async");
    vnrt_backend_sync one = *sync;
    if (bytes > chunk) one.signal = NULL; /* only the last chunk signals */
    if (s == VNRT_OK) s = slot_submit(dev, slot, false, &one, "write_async");
    p += chunk;
    offset += chunk;
    bytes -= chunk;
  }
  pthread_mutex_unlock(&dev->staging_lock);
  if (s == VNRT_OK) vk_clean_note_write(dev, buf, offset0, src, bytes0);
  return s;
}

/* Synchronous, as backend.h allows: the staged chunks must be copied out by the host. Waits for
 * sync's value and for the earlier signals queued on the signal timeline (a host signal must
 * come after them), reads, then signals from the host. */
vnrt_status vk_buffer_read_async(vnrt_backend_device *dev, vnrt_backend_buffer *buf,
                                 uint64_t offset, void *dst, uint64_t bytes,
                                 const vnrt_backend_sync *sync) {
  VK_TRY(vk_buffer_check(dev, buf, offset, bytes, "read_async"));
  if (sync && sync->wait) {
    VK_TRY(vk_timeline_wait(dev, sync->wait, sync->wait_value, VK_WAIT_NS));
  }
  if (sync && sync->signal) {
    VK_TRY(vk_timeline_wait(dev, sync->signal, sync->signal_value - 1, VK_WAIT_NS));
  }
  if (bytes) VK_TRY(vk_buffer_read(dev, buf, offset, dst, bytes));
  if (sync && sync->signal) VK_TRY(vk_timeline_signal(dev, sync->signal, sync->signal_value));
  return VNRT_OK;
}

vnrt_status vk_submit_compute_async(vnrt_backend_device *dev, VkCommandBuffer cmd,
                                    const vnrt_backend_sync *sync) {
  vk_copy *c = &dev->copy;
  VkSubmitInfo si = {
      .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
      .commandBufferCount = cmd ? 1 : 0,
      .pCommandBuffers = cmd ? &cmd : NULL,
  };
  VkTimelineSemaphoreSubmitInfo ti = {.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
  const VkPipelineStageFlags stages[2] = {
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT};
  VkSemaphore wait_sems[2], signal_sems[2];
  uint64_t wait_values[2], signal_values[2];
  uint32_t n_wait = 0, n_signal = 0;
  pthread_mutex_lock(&dev->queue_lock);
  uint64_t sync_copy = atomic_load(&c->sync_copy_published);
  if (sync_copy) wait_sems[n_wait] = c->copy_timeline, wait_values[n_wait++] = sync_copy;
  if (sync && sync->wait && sync->wait_value) {
    wait_sems[n_wait] = sync->wait->sem, wait_values[n_wait++] = sync->wait_value;
  }
  uint64_t signal = c->compute_submitted + 1;
  signal_sems[n_signal] = c->compute_timeline, signal_values[n_signal++] = signal;
  if (sync && sync->signal) {
    signal_sems[n_signal] = sync->signal->sem, signal_values[n_signal++] = sync->signal_value;
  }
  si.pNext = &ti;
  si.waitSemaphoreCount = ti.waitSemaphoreValueCount = n_wait;
  si.pWaitSemaphores = wait_sems;
  si.pWaitDstStageMask = stages;
  ti.pWaitSemaphoreValues = wait_values;
  si.signalSemaphoreCount = ti.signalSemaphoreValueCount = n_signal;
  si.pSignalSemaphores = signal_sems;
  ti.pSignalSemaphoreValues = signal_values;
  VkResult r = vkQueueSubmit(dev->queue, 1, &si, VK_NULL_HANDLE);
  if (r == VK_SUCCESS) {
    c->compute_submitted = signal;
    atomic_store(&c->compute_published, signal);
  }
  pthread_mutex_unlock(&dev->queue_lock);
  if (r != VK_SUCCESS) return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "run_async: vkQueueSubmit");
  return VNRT_OK;
}

vnrt_status vk_wait_compute(vnrt_backend_device *dev, const char *what) {
  if (!uses_timeline(dev)) return VNRT_OK;
  uint64_t value = atomic_load(&dev->copy.compute_published);
  VkSemaphoreWaitInfo wi = {
      .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
      .semaphoreCount = 1,
      .pSemaphores = &dev->copy.compute_timeline,
      .pValues = &value,
  };
  VkResult r = dev->copy.wait_semaphores(dev->device, &wi, VK_WAIT_NS);
  if (r != VK_SUCCESS)
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: waiting for runs", what);
  return VNRT_OK;
}

/* ---- Runs ------------------------------------------------------------------------------ */

vnrt_status vk_submit_compute(vnrt_backend_device *dev, VkCommandBuffer cmd, VkFence fence,
                              const char *what) {
  vk_copy *c = &dev->copy;
  const bool timeline = uses_timeline(dev);
  VkSubmitInfo si = {
      .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
      .commandBufferCount = 1,
      .pCommandBuffers = &cmd,
  };
  VkTimelineSemaphoreSubmitInfo ti = {.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
  const VkPipelineStageFlags wait_stage =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  uint64_t wait = 0, signal = 0;
  pthread_mutex_lock(&dev->queue_lock);
  if (timeline) {
    /* Every copy submitted so far lands before this run reads anything: the executor orders
     * them on the host already, and this keeps the device's order right on its own. */
    wait = atomic_load(&c->copy_published);
    signal = c->compute_submitted + 1;
    timeline_values(&si, &ti, &c->copy_timeline, &wait, &wait_stage, &c->compute_timeline, &signal);
  }
  VkResult r = vkQueueSubmit(dev->queue, 1, &si, fence);
  if (r == VK_SUCCESS && timeline) {
    c->compute_submitted = signal;
    atomic_store(&c->compute_published, signal);
  }
  pthread_mutex_unlock(&dev->queue_lock);
  if (r != VK_SUCCESS) return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: vkQueueSubmit", what);
  r = vkWaitForFences(dev->device, 1, &fence, VK_TRUE, VK_WAIT_NS);
  if (r != VK_SUCCESS) {
    /* The fence may still signal later; wait for the queue so that nothing is in flight. */
    if (r == VK_TIMEOUT) {
      pthread_mutex_lock(&dev->queue_lock);
      vkQueueWaitIdle(dev->queue);
      pthread_mutex_unlock(&dev->queue_lock);
    }
    vkResetFences(dev->device, 1, &fence);
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "%s: vkWaitForFences for the run", what);
  }
  vkResetFences(dev->device, 1, &fence);
  return VNRT_OK;
}
