/* Logical devices: the queues, the features a device's shader variants need, and the objects
 * every plan on it shares (memory, the copy stream, pipelines). */
#include <string.h>

#include "vk_internal.h"

#define VK_DEVICE_LOCKS 4

/* The device's locks, in the order vk_device_open makes them (vk_device_close destroys the
 * first n_locks). */
static pthread_mutex_t *device_lock(vnrt_backend_device *dev, int i) {
  pthread_mutex_t *const locks[VK_DEVICE_LOCKS] = {&dev->queue_lock, &dev->staging_lock,
                                                   &dev->mem_lock, &dev->clean_lock};
  return locks[i];
}

void vk_device_close(vnrt_backend_device *dev) {
  if (!dev) return;
  const vnrt_backend_host *host = dev->host;
  if (dev->device) {
    vkDeviceWaitIdle(dev->device);
    vk_pipelines_destroy(dev);
    vk_copy_destroy(dev);
    for (int v = 0; v < VK_NUM_TEXEL; ++v) {
      if (dev->dummy_views[v]) vkDestroyBufferView(dev->device, dev->dummy_views[v], NULL);
    }
    if (dev->dummy) vk_buffer_free(dev, dev->dummy);
    vk_memory_destroy(dev);
    vkDestroyDevice(dev->device, NULL);
  }
  while (dev->n_locks > 0) pthread_mutex_destroy(device_lock(dev, --dev->n_locks));
  host->free(host->core, dev);
}

vnrt_status vk_device_open(void *state, uint32_t index, vnrt_backend_device **out_device) {
  vk_state *st = state;
  const vnrt_backend_host *host = st->host;
  *out_device = NULL;
  if (index >= st->n_phys) {
    return host->error(host->core, VNRT_ERROR_NOT_FOUND, "vulkan: no device %u (%u devices)", index,
                       st->n_phys);
  }
  vnrt_backend_device *dev = host->alloc(host->core, sizeof *dev);
  if (!dev) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  memset(dev, 0, sizeof *dev);
  dev->state = st;
  dev->host = host;
  dev->phys = &st->phys[index];
  const vk_phys *p = dev->phys;
  for (; dev->n_locks < VK_DEVICE_LOCKS; ++dev->n_locks) {
    if (pthread_mutex_init(device_lock(dev, dev->n_locks), NULL) != 0) {
      vk_device_close(dev); /* destroys the n_locks made so far, frees dev */
      return host->error(host->core, VNRT_ERROR_INTERNAL, "vulkan: pthread_mutex_init failed");
    }
  }

  /* The variant: every optional feature the device has, unless the baseline is forced. Only
   * the features a variant uses are enabled, so the baseline runs on a device with none. */
  if (!st->baseline) {
    if (p->storage16) dev->variant |= VK_VARIANT_S16;
    if (p->subgroup_arith) dev->variant |= VK_VARIANT_SG;
    if (p->int64) dev->variant |= VK_VARIANT_I64;
  }
  VkPhysicalDevice16BitStorageFeatures s16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
      .storageBuffer16BitAccess = (dev->variant & VK_VARIANT_S16) ? VK_TRUE : VK_FALSE,
  };
  VkPhysicalDeviceFeatures2 features = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
      .pNext = &s16,
  };
  features.features.shaderInt64 = (dev->variant & VK_VARIANT_I64) ? VK_TRUE : VK_FALSE;
  /* The copy stream's queue is chosen before the device exists: it may need a second queue
   * and timeline semaphores. */
  vk_copy_choose(dev);
  VkPhysicalDeviceTimelineSemaphoreFeaturesKHR tl = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES_KHR,
      .timelineSemaphore = VK_TRUE,
  };
  const char *exts[2];
  uint32_t n_exts = 0;
  if (dev->copy.mode != VK_COPY_NONE) {
    s16.pNext = &tl;
    if (!p->timeline_core) exts[n_exts++] = VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME;
  }
  if (p->portability_subset) exts[n_exts++] = "VK_KHR_portability_subset";
  float priorities[2];
  VkDeviceQueueCreateInfo qci[2];
  uint32_t n_qci = vk_copy_queue_infos(dev, qci, priorities);
  VkDeviceCreateInfo dci = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
      .pNext = &features,
      .queueCreateInfoCount = n_qci,
      .pQueueCreateInfos = qci,
      .enabledExtensionCount = n_exts,
      .ppEnabledExtensionNames = exts,
  };
  VkResult r = vkCreateDevice(p->pd, &dci, NULL, &dev->device);
  if (r != VK_SUCCESS) {
    dev->device = VK_NULL_HANDLE;
    vk_device_close(dev);
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreateDevice for '%s'", p->props.deviceName);
  }
  vkGetDeviceQueue(dev->device, p->queue_family, 0, &dev->queue);
  dev->min_offset_align = p->props.limits.minStorageBufferOffsetAlignment;
  if (dev->min_offset_align < 4) dev->min_offset_align = 4;
  vk_memory_init(dev);
  vnrt_status s = vk_copy_init(dev);
  if (s == VNRT_OK) s = vk_buffer_create(dev, 256, false, "dummy buffer", &dev->dummy);
  for (int v = 0; v < VK_NUM_TEXEL && s == VNRT_OK; ++v) {
    /* The texel bindings of dispatches that do not read texels there. */
    VkBufferViewCreateInfo vi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
        .buffer = dev->dummy->buffer,
        .format = v == 1 ? VK_FORMAT_R8_UINT : VK_FORMAT_R32G32B32A32_UINT,
        .offset = 0,
        .range = 256,
    };
    VkResult vr = vkCreateBufferView(dev->device, &vi, NULL, &dev->dummy_views[v]);
    if (vr != VK_SUCCESS) {
      dev->dummy_views[v] = VK_NULL_HANDLE;
      s = VK_FAIL(host, VNRT_ERROR_DEVICE, vr, "vkCreateBufferView (dummy)");
    }
  }
  if (s == VNRT_OK) s = vk_pipelines_init(dev);
  if (s != VNRT_OK) {
    vk_device_close(dev);
    return s;
  }
  host->log(host->core, VNRT_LOG_DEBUG, "vulkan: opened '%s' (shader variant:%s%s%s%s, buffers %s)",
            p->props.deviceName, dev->variant ? "" : " baseline",
            (dev->variant & VK_VARIANT_S16) ? " 16-bit-storage" : "",
            (dev->variant & VK_VARIANT_SG) ? " subgroups" : "",
            (dev->variant & VK_VARIANT_I64) ? " int64" : "",
            dev->mem.device_mapped ? "mapped (zero-copy)" : "staged");
  *out_device = dev;
  return VNRT_OK;
}
