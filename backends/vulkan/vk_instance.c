/* Vulkan instance, validation messenger and physical devices: which devices exist, what each
 * can do (capability probing), and the vnrt_backend_device_info the core lists. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"
#include "vnrt/backend_util.h"

#define VK_VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

/* The smallest limits the binding layout and shaders need (common.glsl): one descriptor set
 * of VK_NUM_SLOTS storage buffers, VK_PUSH_BYTES of push constants, 128-invocation
 * workgroups and 16 KiB of shared memory (Vulkan's guaranteed minimum). */
#define VK_MIN_SHARED_BYTES 16384u
#define VK_MIN_WORKGROUP 128u

const char *vk_result_string(VkResult r) {
  switch (r) {
#define VK_RESULT_CASE_(x) \
  case x:                  \
    return #x;
    VK_RESULT_CASE_(VK_SUCCESS)
    VK_RESULT_CASE_(VK_NOT_READY)
    VK_RESULT_CASE_(VK_TIMEOUT)
    VK_RESULT_CASE_(VK_INCOMPLETE)
    VK_RESULT_CASE_(VK_ERROR_OUT_OF_HOST_MEMORY)
    VK_RESULT_CASE_(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    VK_RESULT_CASE_(VK_ERROR_INITIALIZATION_FAILED)
    VK_RESULT_CASE_(VK_ERROR_DEVICE_LOST)
    VK_RESULT_CASE_(VK_ERROR_MEMORY_MAP_FAILED)
    VK_RESULT_CASE_(VK_ERROR_LAYER_NOT_PRESENT)
    VK_RESULT_CASE_(VK_ERROR_EXTENSION_NOT_PRESENT)
    VK_RESULT_CASE_(VK_ERROR_FEATURE_NOT_PRESENT)
    VK_RESULT_CASE_(VK_ERROR_INCOMPATIBLE_DRIVER)
    VK_RESULT_CASE_(VK_ERROR_TOO_MANY_OBJECTS)
    VK_RESULT_CASE_(VK_ERROR_FORMAT_NOT_SUPPORTED)
    VK_RESULT_CASE_(VK_ERROR_FRAGMENTED_POOL)
    VK_RESULT_CASE_(VK_ERROR_OUT_OF_POOL_MEMORY)
    VK_RESULT_CASE_(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    VK_RESULT_CASE_(VK_ERROR_FRAGMENTATION)
    VK_RESULT_CASE_(VK_ERROR_UNKNOWN)
#undef VK_RESULT_CASE_
    default:
      return "VkResult(unknown)";
  }
}

vnrt_status vk_fail_(const vnrt_backend_host *host, vnrt_status status, VkResult r, const char *fmt,
                     ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
    status = VNRT_ERROR_OUT_OF_MEMORY;
  }
  return host->error(host->core, status, "vulkan: %s: %s (%d)", msg, vk_result_string(r), (int)r);
}

static VKAPI_ATTR VkBool32 VKAPI_CALL vk_debug_cb_(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                   VkDebugUtilsMessageTypeFlagsEXT types,
                                                   const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                   void *user) {
  (void)severity, (void)types;
  const vnrt_backend_host *host = user;
  host->log(host->core, VNRT_LOG_ERROR, "vulkan validation: %s",
            data && data->pMessage ? data->pMessage : "(no message)");
  return VK_FALSE;
}

static bool has_ext(const VkExtensionProperties *exts, uint32_t n, const char *name) {
  for (uint32_t i = 0; i < n; ++i) {
    if (strcmp(exts[i].extensionName, name) == 0) return true;
  }
  return false;
}

static bool has_layer(const vnrt_backend_host *host, const char *name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
  VkLayerProperties *layers = host->alloc(host->core, sizeof *layers * n);
  if (!layers) return false;
  bool found = false;
  if (vkEnumerateInstanceLayerProperties(&n, layers) == VK_SUCCESS) {
    for (uint32_t i = 0; i < n && !found; ++i) found = strcmp(layers[i].layerName, name) == 0;
  }
  host->free(host->core, layers);
  return found;
}

/* Reads the device-level extension list (host-allocated; *out may be NULL when n is 0). */
static VkResult device_exts(const vnrt_backend_host *host, VkPhysicalDevice pd,
                            VkExtensionProperties **out, uint32_t *out_n) {
  *out = NULL;
  *out_n = 0;
  uint32_t n = 0;
  VkResult r = vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL);
  if (r != VK_SUCCESS || n == 0) return r;
  VkExtensionProperties *e = host->alloc(host->core, sizeof *e * n);
  if (!e) return VK_ERROR_OUT_OF_HOST_MEMORY;
  r = vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    host->free(host->core, e);
    return r;
  }
  *out = e;
  *out_n = n;
  return VK_SUCCESS;
}

static vnrt_device_type map_type(VkPhysicalDeviceType t, uint32_t *rank) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      *rank = 5;
      return VNRT_DEVICE_TYPE_GPU_DISCRETE;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      *rank = 4;
      return VNRT_DEVICE_TYPE_GPU_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      *rank = 3;
      return VNRT_DEVICE_TYPE_GPU_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      *rank = 1;
      return VNRT_DEVICE_TYPE_SOFTWARE;
    default:
      *rank = 4;
      return VNRT_DEVICE_TYPE_ACCELERATOR; /* NPUs report OTHER */
  }
}

/* Probes one physical device. Returns false (with a logged reason) if vnrt cannot use it, and
 * sets *oom when that was for want of host memory (then vk_init fails). */
static bool probe_device(vk_state *st, VkPhysicalDevice pd, uint32_t instance_api, vk_phys *p,
                         bool *oom) {
  const vnrt_backend_host *host = st->host;
  memset(p, 0, sizeof *p);
  p->pd = pd;
  vkGetPhysicalDeviceProperties(pd, &p->props);
  vkGetPhysicalDeviceMemoryProperties(pd, &p->mem);
  const VkPhysicalDeviceLimits *lim = &p->props.limits;
  const char *name = p->props.deviceName;
  uint32_t api = p->props.apiVersion < instance_api ? p->props.apiVersion : instance_api;
  if (api < VK_API_VERSION_1_1) {
    host->log(host->core, VNRT_LOG_INFO, "vulkan: '%s' skipped: Vulkan %u.%u < 1.1", name,
              VK_API_VERSION_MAJOR(api), VK_API_VERSION_MINOR(api));
    return false;
  }
  if (lim->maxPerStageDescriptorStorageBuffers < VK_NUM_SLOTS ||
      lim->maxDescriptorSetStorageBuffers < VK_NUM_SLOTS ||
      lim->maxPushConstantsSize < VK_PUSH_BYTES ||
      lim->maxComputeWorkGroupInvocations < VK_MIN_WORKGROUP ||
      lim->maxComputeSharedMemorySize < VK_MIN_SHARED_BYTES) {
    host->log(host->core, VNRT_LOG_INFO,
              "vulkan: '%s' skipped: needs %d storage buffers per stage (has %u), %d bytes of "
              "push constants (has %u), %u-invocation workgroups (has %u) and %u bytes of shared "
              "memory (has %u)",
              name, VK_NUM_SLOTS, lim->maxPerStageDescriptorStorageBuffers, VK_PUSH_BYTES,
              lim->maxPushConstantsSize, VK_MIN_WORKGROUP, lim->maxComputeWorkGroupInvocations,
              VK_MIN_SHARED_BYTES, lim->maxComputeSharedMemorySize);
    return false;
  }

  /* Queues: any family with compute (and how many queues it has, for a second one as the copy
   * queue); the first transfer-only family, for the copy stream (vk_copy.c). */
  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
  VkQueueFamilyProperties *qf = nq ? host->alloc(host->core, sizeof *qf * nq) : NULL;
  if (nq && !qf) {
    *oom = true;
    return false;
  }
  if (qf) vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
  bool found = false;
  p->copy_family = UINT32_MAX;
  for (uint32_t i = 0; i < nq; ++i) {
    VkQueueFlags f = qf[i].queueFlags;
    if (!found && (f & VK_QUEUE_COMPUTE_BIT) && qf[i].queueCount > 0) {
      p->queue_family = i;
      p->queue_count = qf[i].queueCount;
      p->timestamp_bits = qf[i].timestampValidBits;
      found = true;
    }
    if ((f & VK_QUEUE_TRANSFER_BIT) && !(f & (VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT)) &&
        qf[i].queueCount > 0) {
      if (!p->has_copy_queue) p->copy_family = i;
      p->has_copy_queue = true;
    }
  }
  if (qf) host->free(host->core, qf);
  if (!found) {
    host->log(host->core, VNRT_LOG_INFO, "vulkan: '%s' skipped: no compute queue", name);
    return false;
  }

  VkExtensionProperties *exts = NULL;
  uint32_t n_exts = 0;
  VkResult er = device_exts(host, pd, &exts, &n_exts);
  if (er != VK_SUCCESS) {
    *oom = er == VK_ERROR_OUT_OF_HOST_MEMORY;
    host->log(host->core, VNRT_LOG_INFO, "vulkan: '%s' skipped: %s listing its extensions", name,
              vk_result_string(er));
    return false;
  }
  bool v12 = api >= VK_API_VERSION_1_2;
  bool has_f16i8 = v12 || has_ext(exts, n_exts, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
  bool has_s8 = v12 || has_ext(exts, n_exts, VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
  bool has_tl = v12 || has_ext(exts, n_exts, VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME);
  bool has_drv = v12 || has_ext(exts, n_exts, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
  p->portability_subset = has_ext(exts, n_exts, "VK_KHR_portability_subset");
  if (exts) host->free(host->core, exts);

  /* Features: only structures the device knows go into the chain. */
  VkPhysicalDevice16BitStorageFeatures s16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16i8 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR};
  VkPhysicalDevice8BitStorageFeaturesKHR s8 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR};
  VkPhysicalDeviceTimelineSemaphoreFeaturesKHR tl = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES_KHR};
  VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                  .pNext = &s16};
  void **tail = &s16.pNext;
  if (has_f16i8) *tail = &f16i8, tail = &f16i8.pNext;
  if (has_s8) *tail = &s8, tail = &s8.pNext;
  if (has_tl) *tail = &tl, tail = &tl.pNext;
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  p->storage16 = s16.storageBuffer16BitAccess;
  p->float16 = has_f16i8 && f16i8.shaderFloat16;
  p->int8 = has_f16i8 && has_s8 && f16i8.shaderInt8 && s8.storageBuffer8BitAccess;
  p->int64 = f2.features.shaderInt64;
  p->timeline = has_tl && tl.timelineSemaphore;
  p->timeline_core = v12;

  VkPhysicalDeviceSubgroupProperties sg = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceDriverPropertiesKHR drv = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES_KHR};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                    .pNext = &sg};
  if (has_drv) sg.pNext = &drv;
  vkGetPhysicalDeviceProperties2(pd, &p2);
  const VkSubgroupFeatureFlags need =
      VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
  p->subgroup_size = sg.subgroupSize;
  p->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                      (sg.supportedOperations & need) == need && sg.subgroupSize > 0;

  for (uint32_t h = 0; h < p->mem.memoryHeapCount; ++h) {
    if (p->mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) {
      p->device_local_bytes += p->mem.memoryHeaps[h].size;
    }
  }

  /* The device info the core lists. */
  vnrt_backend_device_info *info = &p->info;
  memset(info, 0, sizeof *info);
  snprintf(info->backend, sizeof info->backend, "vulkan");
  snprintf(info->name, sizeof info->name, "%.127s", name);
  if (has_drv && drv.driverName[0]) {
    snprintf(info->driver, sizeof info->driver, "%.40s %.60s (Vulkan %u.%u.%u)", drv.driverName,
             drv.driverInfo, VK_API_VERSION_MAJOR(p->props.apiVersion),
             VK_API_VERSION_MINOR(p->props.apiVersion), VK_API_VERSION_PATCH(p->props.apiVersion));
  } else {
    snprintf(info->driver, sizeof info->driver, "driver 0x%" PRIx32 " (Vulkan %u.%u.%u)",
             p->props.driverVersion, VK_API_VERSION_MAJOR(p->props.apiVersion),
             VK_API_VERSION_MINOR(p->props.apiVersion), VK_API_VERSION_PATCH(p->props.apiVersion));
  }
  info->type = map_type(p->props.deviceType, &p->device_type_rank);
  info->memory_bytes = p->device_local_bytes;
  /* The largest tensor a kernel can bind: every tensor is one storage-buffer descriptor. */
  info->max_buffer_bytes = lim->maxStorageBufferRange;
  uint32_t caps = 0;
  if (p->float16) caps |= VNRT_CAP_F16;
  if (p->storage16) caps |= VNRT_CAP_F16_STORAGE;
  if (p->int8) caps |= VNRT_CAP_INT8;
  if (p->subgroup_arith) caps |= VNRT_CAP_SUBGROUPS;
  if (p->timeline) caps |= VNRT_CAP_TIMELINE;
  if (p->has_copy_queue) caps |= VNRT_CAP_COPY_QUEUE;
  caps |= VNRT_CAP_RESHAPE_VIEW; /* vk_copy_same records nothing for a reshape onto itself */
  /* vk_rec_kv_compress: each state row is written by the invocation that reads the rows it
   * comes from, so state_a'/state_z' may share state_a/state_z's memory (in place) */
  caps |= VNRT_CAP_STATE_INPLACE;
  /* VNRT_CAP_FP8 / VNRT_CAP_FP4 stay clear: the kernels decode e4m3/e2m1 codes to f32
   * (shaders/vulkan/quant.comp), whatever FP8 support a device might report. */
  /* Unified: a host-visible, coherent type on the largest device-local heap (what the
   * allocator then uses for zero-copy buffers). */
  uint64_t best_heap = 0;
  for (uint32_t t = 0; t < p->mem.memoryTypeCount; ++t) {
    VkMemoryPropertyFlags f = p->mem.memoryTypes[t].propertyFlags;
    uint64_t hs = p->mem.memoryHeaps[p->mem.memoryTypes[t].heapIndex].size;
    if ((f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && hs > best_heap) best_heap = hs;
  }
  for (uint32_t t = 0; t < p->mem.memoryTypeCount; ++t) {
    VkMemoryPropertyFlags f = p->mem.memoryTypes[t].propertyFlags;
    const VkMemoryPropertyFlags uma = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                      VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if ((f & uma) == uma && p->mem.memoryHeaps[p->mem.memoryTypes[t].heapIndex].size == best_heap) {
      caps |= VNRT_CAP_UNIFIED_MEMORY;
    }
  }
  info->caps = caps;
  info->compute_units = 0; /* Vulkan has no portable core count */
  info->subgroup_size = p->subgroup_size;
  info->max_workgroup_size = lim->maxComputeWorkGroupInvocations;
  info->shared_memory_bytes = lim->maxComputeSharedMemorySize;
  return true;
}

void vk_shutdown(void *state) {
  vk_state *st = state;
  if (!st) return;
  const vnrt_backend_host *host = st->host;
  if (st->messenger && st->destroy_messenger) {
    st->destroy_messenger(st->instance, st->messenger, NULL);
  }
  if (st->instance) vkDestroyInstance(st->instance, NULL);
  if (st->phys) host->free(host->core, st->phys);
  host->free(host->core, st);
}

vnrt_status vk_init(const vnrt_backend_host *host, void **out_state) {
  *out_state = NULL;
  /* vkEnumerateInstanceVersion exists from loader 1.1 on; without it there is no 1.1. */
  PFN_vkEnumerateInstanceVersion enum_version =
      (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
  uint32_t loader_api = VK_API_VERSION_1_0;
  if (enum_version && enum_version(&loader_api) != VK_SUCCESS) loader_api = VK_API_VERSION_1_0;
  if (loader_api < VK_API_VERSION_1_1) {
    return host->error(host->core, VNRT_ERROR_DEVICE,
                       "vulkan: the Vulkan loader supports only Vulkan 1.0; vnrt needs 1.1");
  }
  vk_state *st = host->alloc(host->core, sizeof *st);
  if (!st) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  memset(st, 0, sizeof *st);
  st->host = host;
  st->baseline = vnrt_host_option_flag(host, "vk_baseline", 0);
  st->force_staging = vnrt_host_option_flag(host, "vk_force_staging", 0);
  const char *cq = vnrt_host_option(host, "vk_copy_queue");
  if (cq && strcmp(cq, "0") == 0) {
    st->copy_pref = VK_COPY_PREF_OFF;
  } else if (cq && strcmp(cq, "shared") == 0) {
    st->copy_pref = VK_COPY_PREF_SHARED;
  } else if (cq && cq[0] && strcmp(cq, "1") != 0 && strcmp(cq, "auto") != 0) {
    host->log(host->core, VNRT_LOG_WARN,
              "vulkan: VNRT_VK_COPY_QUEUE='%s' is not 0, 1, auto or shared; choosing by "
              "capability",
              cq);
  }
  bool want_validation = vnrt_host_option_flag(host, "vk_validation", 0);
  /* VNRT_VK_VALIDATION=sync also turns on synchronization validation (missing barriers). */
  const char *vv = vnrt_host_option(host, "vk_validation");
  bool want_sync = want_validation && vv && strcmp(vv, "sync") == 0;

  uint32_t n_iext = 0;
  VkExtensionProperties *iext = NULL;
  if (vkEnumerateInstanceExtensionProperties(NULL, &n_iext, NULL) == VK_SUCCESS && n_iext) {
    iext = host->alloc(host->core, sizeof *iext * n_iext);
    if (!iext) {
      host->free(host->core, st);
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                         "vulkan: out of memory listing instance extensions");
    }
    if (vkEnumerateInstanceExtensionProperties(NULL, &n_iext, iext) != VK_SUCCESS) n_iext = 0;
  }
  const char *ext_names[5];
  uint32_t n_ext = 0;
  VkInstanceCreateFlags flags = 0;
  if (has_ext(iext, n_iext, "VK_KHR_portability_enumeration")) {
    ext_names[n_ext++] = "VK_KHR_portability_enumeration";
    flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  const char *layers[1];
  uint32_t n_layers = 0;
  bool debug_utils = false;
  if (want_validation) {
    if (has_layer(host, VK_VALIDATION_LAYER)) {
      layers[n_layers++] = VK_VALIDATION_LAYER;
      st->validation = true;
    } else {
      host->log(host->core, VNRT_LOG_WARN,
                "vulkan: VNRT_VK_VALIDATION is set but %s is not installed; running without it",
                VK_VALIDATION_LAYER);
    }
    /* The layer provides VK_EXT_debug_utils even where the loader alone does not list it. */
    if (st->validation || has_ext(iext, n_iext, VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
      ext_names[n_ext++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
      debug_utils = true;
    }
    if (st->validation && want_sync) ext_names[n_ext++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
  }
  if (iext) host->free(host->core, iext);

  uint32_t api = loader_api < VK_API_VERSION_1_3 ? loader_api : VK_API_VERSION_1_3;
  VkApplicationInfo app = {
      .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
      .pApplicationName = "vnrt",
      .pEngineName = "vnrt",
      .engineVersion =
          VK_MAKE_API_VERSION(0, VNRT_VERSION_MAJOR, VNRT_VERSION_MINOR, VNRT_VERSION_PATCH),
      .apiVersion = api,
  };
  VkDebugUtilsMessengerCreateInfoEXT dbg = {
      .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
      .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
      .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
      .pfnUserCallback = vk_debug_cb_,
      .pUserData = (void *)host,
  };
  VkValidationFeatureEnableEXT sync_feature =
      VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT features = {
      .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
      .enabledValidationFeatureCount = 1,
      .pEnabledValidationFeatures = &sync_feature,
  };
  if (st->validation && want_sync) dbg.pNext = &features;
  VkInstanceCreateInfo ici = {
      .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
      .pNext = debug_utils ? &dbg : NULL, /* also reports create/destroy of the instance */
      .flags = flags,
      .pApplicationInfo = &app,
      .enabledLayerCount = n_layers,
      .ppEnabledLayerNames = layers,
      .enabledExtensionCount = n_ext,
      .ppEnabledExtensionNames = ext_names,
  };
  VkResult r = vkCreateInstance(&ici, NULL, &st->instance);
  if (r != VK_SUCCESS) {
    st->instance = VK_NULL_HANDLE;
    vk_shutdown(st);
    /* No driver at all is "not found" (logged as info), not a failing one. */
    return VK_FAIL(host,
                   r == VK_ERROR_INCOMPATIBLE_DRIVER ? VNRT_ERROR_NOT_FOUND : VNRT_ERROR_DEVICE, r,
                   "vkCreateInstance%s",
                   r == VK_ERROR_INCOMPATIBLE_DRIVER ? " (no Vulkan driver is installed?)" : "");
  }
  if (debug_utils) {
    PFN_vkCreateDebugUtilsMessengerEXT create =
        (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(st->instance,
                                                                  "vkCreateDebugUtilsMessengerEXT");
    st->destroy_messenger = (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
        st->instance, "vkDestroyDebugUtilsMessengerEXT");
    if (create && st->destroy_messenger) {
      dbg.pNext = NULL; /* the validation features belong to the instance only */
      r = create(st->instance, &dbg, NULL, &st->messenger);
      if (r != VK_SUCCESS) st->messenger = VK_NULL_HANDLE;
    }
    if (!st->messenger) {
      host->log(host->core, VNRT_LOG_WARN, "vulkan: could not create a debug messenger");
    }
  }
  if (st->validation) {
    host->log(host->core, VNRT_LOG_INFO, "vulkan: validation layer enabled%s",
              want_sync ? " (with synchronization validation)" : "");
  }

  uint32_t n = 0;
  r = vkEnumeratePhysicalDevices(st->instance, &n, NULL);
  VkPhysicalDevice *pds = NULL;
  if (r == VK_SUCCESS && n > 0) {
    pds = host->alloc(host->core, sizeof *pds * n);
    st->phys = host->alloc(host->core, sizeof *st->phys * n);
    if (!pds || !st->phys) {
      if (pds) host->free(host->core, pds);
      vk_shutdown(st);
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
    }
    r = vkEnumeratePhysicalDevices(st->instance, &n, pds);
    if (r == VK_INCOMPLETE) r = VK_SUCCESS;
  }
  if (r != VK_SUCCESS) {
    if (pds) host->free(host->core, pds);
    vk_shutdown(st);
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkEnumeratePhysicalDevices");
  }
  bool oom = false;
  for (uint32_t i = 0; i < n && !oom; ++i) {
    if (probe_device(st, pds[i], api, &st->phys[st->n_phys], &oom)) st->n_phys++;
  }
  if (pds) host->free(host->core, pds);
  if (oom) {
    vk_shutdown(st);
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY,
                       "vulkan: out of memory probing the physical devices");
  }
  /* Order by capability: device type, then device-local memory; stable otherwise. Never by
   * vendor or name. */
  for (uint32_t i = 1; i < st->n_phys; ++i) {
    vk_phys cur = st->phys[i];
    uint32_t j = i;
    while (j > 0 && (st->phys[j - 1].device_type_rank < cur.device_type_rank ||
                     (st->phys[j - 1].device_type_rank == cur.device_type_rank &&
                      st->phys[j - 1].device_local_bytes < cur.device_local_bytes))) {
      st->phys[j] = st->phys[j - 1];
      --j;
    }
    st->phys[j] = cur;
  }
  if (st->n_phys == 0) {
    vk_shutdown(st);
    return host->error(host->core, VNRT_ERROR_NOT_FOUND,
                       "vulkan: no usable device (%u found, none with Vulkan 1.1 compute and "
                       "the limits vnrt needs)",
                       n);
  }
  *out_state = st;
  return VNRT_OK;
}

uint32_t vk_device_count(void *state) { return state ? ((vk_state *)state)->n_phys : 0; }

vnrt_status vk_device_info(void *state, uint32_t index, vnrt_backend_device_info *out_info) {
  vk_state *st = state;
  memset(out_info, 0, sizeof *out_info);
  if (index >= st->n_phys) {
    return st->host->error(st->host->core, VNRT_ERROR_NOT_FOUND,
                           "vulkan: no device %u (%u devices)", index, st->n_phys);
  }
  *out_info = st->phys[index].info;
  return VNRT_OK;
}
