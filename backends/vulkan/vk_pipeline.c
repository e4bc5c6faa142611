/* Shaders and pipelines: the SPIR-V embedded at build time, the variant a device runs, the one
 * descriptor/pipeline layout, compute pipelines deduplicated per device, and the on-disk
 * VkPipelineCache ($VNRT_CACHE_DIR, else $XDG_CACHE_HOME/vnrt or ~/.cache/vnrt, keyed by the
 * driver's cache UUID). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vk_internal.h"
#include "vk_spirv_table.h" /* generated: vk_spirv_table[] */
#include "vnrt/backend_util.h"

#define VK_CACHE_MAX_BYTES (256u << 20)

uint32_t vk_shader_variants(vk_shader_id shader) {
  uint32_t v = 0;
  for (size_t i = 0; i < sizeof vk_spirv_table / sizeof vk_spirv_table[0]; ++i) {
    if (vk_spirv_table[i].shader == shader) v |= vk_spirv_table[i].variant;
  }
  return v;
}

/* The blob for shader on this device: the device's variant bits restricted to those the shader
 * was compiled with (the baseline, 0, always exists). */
static const vk_spirv *pick_spirv(const vnrt_backend_device *dev, vk_shader_id shader) {
  uint32_t want = dev->variant & vk_shader_variants(shader);
  const vk_spirv *base = NULL;
  for (size_t i = 0; i < sizeof vk_spirv_table / sizeof vk_spirv_table[0]; ++i) {
    const vk_spirv *s = &vk_spirv_table[i];
    if (s->shader != shader) continue;
    if (s->variant == want) return s;
    if (s->variant == 0) base = s;
  }
  return base;
}

/* ---- On-disk pipeline cache ------------------------------------------------------------ */

/* mkdir -p for the directories of path (not its last component). */
static int make_parents(char *path) {
  for (char *p = path + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(path, 0755);
    int err = errno;
    *p = '/';
    if (rc != 0 && err != EEXIST) return err;
  }
  return 0;
}

/* Decides the cache file and makes its directory; "" (with a warning) if that fails. */
static void cache_path_init(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  dev->cache_path[0] = '\0';
  /* The context's cache_dir option, as the OpenCL program cache (docs/api.md, "Options"). */
  const char *root = vnrt_host_option(host, "cache_dir");
  char dir[768];
  if (root && root[0] && strcmp(root, "none") != 0) {
    snprintf(dir, sizeof dir, "%s", root);
  } else {
    return; /* no disk cache: pipelines are simply compiled each time */
  }
  char uuid[2 * VK_UUID_SIZE + 1];
  for (uint32_t i = 0; i < VK_UUID_SIZE; ++i) {
    snprintf(uuid + 2 * i, 3, "%02x", dev->phys->props.pipelineCacheUUID[i]);
  }
  int n = snprintf(dev->cache_path, sizeof dev->cache_path, "%s/vulkan-%s.bin", dir, uuid);
  if (n < 0 || (size_t)n >= sizeof dev->cache_path) {
    dev->cache_path[0] = '\0';
    return;
  }
  int err = make_parents(dev->cache_path);
  if (err != 0) {
    host->log(host->core, VNRT_LOG_WARN,
              "vulkan: pipeline cache directory %s cannot be created (%s); pipelines will not be "
              "cached on disk",
              dir, strerror(err));
    dev->cache_path[0] = '\0';
  }
}

/* The cache file's contents if its header matches this device, else NULL. */
static void *cache_load(vnrt_backend_device *dev, size_t *out_size) {
  const vnrt_backend_host *host = dev->host;
  *out_size = 0;
  if (!dev->cache_path[0]) return NULL;
  FILE *f = fopen(dev->cache_path, "rb");
  if (!f) return NULL;
  void *data = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size >= 32 && (unsigned long)size <= VK_CACHE_MAX_BYTES && fseek(f, 0, SEEK_SET) == 0) {
    data = host->alloc(host->core, (size_t)size);
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
      host->free(host->core, data);
      data = NULL;
    }
  }
  fclose(f);
  if (!data) return NULL;
  /* VkPipelineCacheHeaderVersionOne: size, version, vendor, device, UUID. A driver must reject
   * a foreign cache itself; checking here as well keeps a corrupt file from reaching it. */
  uint32_t hdr[4];
  memcpy(hdr, data, sizeof hdr);
  const VkPhysicalDeviceProperties *pr = &dev->phys->props;
  if (hdr[0] < 32 || hdr[1] != VK_PIPELINE_CACHE_HEADER_VERSION_ONE || hdr[2] != pr->vendorID ||
      hdr[3] != pr->deviceID ||
      memcmp((const uint8_t *)data + 16, pr->pipelineCacheUUID, VK_UUID_SIZE) != 0) {
    host->log(host->core, VNRT_LOG_INFO, "vulkan: ignoring pipeline cache %s of another driver",
              dev->cache_path);
    host->free(host->core, data);
    return NULL;
  }
  *out_size = (size_t)size;
  return data;
}

static void cache_save(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  if (!dev->cache_path[0] || !dev->pipeline_cache || dev->n_pipelines == 0) return;
  size_t size = 0;
  if (vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, NULL) != VK_SUCCESS ||
      size == 0 || size > VK_CACHE_MAX_BYTES) {
    return;
  }
  void *data = host->alloc(host->core, size);
  if (!data) return;
  if (vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, data) == VK_SUCCESS) {
    /* Write a private file, then rename: concurrent processes never see a torn cache. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%ld.%p.tmp", dev->cache_path, (long)getpid(), (void *)dev);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(data, 1, size, f) == size;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, dev->cache_path) != 0) ok = false;
    if (!ok) {
      host->log(host->core, VNRT_LOG_WARN, "vulkan: could not write pipeline cache %s: %s",
                dev->cache_path, strerror(errno));
      remove(tmp);
    }
  }
  host->free(host->core, data);
}

/* ---- Layouts, modules and pipelines ---------------------------------------------------- */

vnrt_status vk_pipelines_init(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  VkDescriptorSetLayoutBinding bindings[VK_NUM_SLOTS + VK_NUM_TEXEL];
  for (uint32_t i = 0; i < VK_NUM_SLOTS + VK_NUM_TEXEL; ++i) {
    bindings[i] = (VkDescriptorSetLayoutBinding){
        .binding = i,
        .descriptorType = i >= VK_TEXEL_BINDING ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                                : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = 1,
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    };
  }
  VkDescriptorSetLayoutCreateInfo dli = {
      .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
      .bindingCount = VK_NUM_SLOTS + VK_NUM_TEXEL,
      .pBindings = bindings,
  };
  VkResult r = vkCreateDescriptorSetLayout(dev->device, &dli, NULL, &dev->set_layout);
  if (r != VK_SUCCESS) return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreateDescriptorSetLayout");
  VkPushConstantRange push = {
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
      .offset = 0,
      .size = VK_PUSH_BYTES,
  };
  VkPipelineLayoutCreateInfo pli = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
      .setLayoutCount = 1,
      .pSetLayouts = &dev->set_layout,
      .pushConstantRangeCount = 1,
      .pPushConstantRanges = &push,
  };
  r = vkCreatePipelineLayout(dev->device, &pli, NULL, &dev->pipeline_layout);
  if (r != VK_SUCCESS) return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreatePipelineLayout");

  cache_path_init(dev);
  size_t size = 0;
  void *data = cache_load(dev, &size);
  VkPipelineCacheCreateInfo pci = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
      .initialDataSize = size,
      .pInitialData = data,
  };
  r = vkCreatePipelineCache(dev->device, &pci, NULL, &dev->pipeline_cache);
  if (r != VK_SUCCESS && data) {
    pci.initialDataSize = 0, pci.pInitialData = NULL; /* a cache the driver rejects: start empty */
    r = vkCreatePipelineCache(dev->device, &pci, NULL, &dev->pipeline_cache);
  }
  if (data) host->free(host->core, data);
  if (r != VK_SUCCESS) {
    dev->pipeline_cache = VK_NULL_HANDLE; /* pipelines still work without one */
    host->log(host->core, VNRT_LOG_WARN, "vulkan: vkCreatePipelineCache: %s", vk_result_string(r));
  }
  return VNRT_OK;
}

void vk_pipelines_destroy(vnrt_backend_device *dev) {
  const vnrt_backend_host *host = dev->host;
  cache_save(dev);
  for (int32_t i = 0; i < dev->n_pipelines; ++i) {
    vkDestroyPipeline(dev->device, dev->pipelines[i].pipeline, NULL);
  }
  if (dev->pipelines) host->free(host->core, dev->pipelines);
  dev->pipelines = NULL;
  dev->n_pipelines = dev->cap_pipelines = 0;
  for (int i = 0; i < VK_SHADER_COUNT; ++i) {
    if (dev->modules[i]) vkDestroyShaderModule(dev->device, dev->modules[i], NULL);
    dev->modules[i] = VK_NULL_HANDLE;
  }
  if (dev->pipeline_cache) vkDestroyPipelineCache(dev->device, dev->pipeline_cache, NULL);
  if (dev->pipeline_layout) vkDestroyPipelineLayout(dev->device, dev->pipeline_layout, NULL);
  if (dev->set_layout) vkDestroyDescriptorSetLayout(dev->device, dev->set_layout, NULL);
  dev->pipeline_cache = VK_NULL_HANDLE;
  dev->pipeline_layout = VK_NULL_HANDLE;
  dev->set_layout = VK_NULL_HANDLE;
}

static vnrt_status get_module(vnrt_backend_device *dev, vk_shader_id shader, VkShaderModule *out) {
  if (dev->modules[shader]) {
    *out = dev->modules[shader];
    return VNRT_OK;
  }
  const vk_spirv *spv = pick_spirv(dev, shader);
  if (!spv) {
    return dev->host->error(dev->host->core, VNRT_ERROR_INTERNAL,
                            "vulkan: shader %d is not embedded", (int)shader);
  }
  VkShaderModuleCreateInfo smi = {
      .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
      .codeSize = spv->bytes,
      .pCode = spv->code,
  };
  VkResult r = vkCreateShaderModule(dev->device, &smi, NULL, &dev->modules[shader]);
  if (r != VK_SUCCESS) {
    dev->modules[shader] = VK_NULL_HANDLE;
    return VK_FAIL(dev->host, VNRT_ERROR_DEVICE, r, "vkCreateShaderModule (shader %d, variant %u)",
                   (int)shader, spv->variant);
  }
  *out = dev->modules[shader];
  return VNRT_OK;
}

vnrt_status vk_pipeline_get(vnrt_backend_device *dev, vk_shader_id shader,
                            const uint32_t spec[VK_NUM_SPEC], VkPipeline *out_pipeline) {
  const vnrt_backend_host *host = dev->host;
  for (int32_t i = 0; i < dev->n_pipelines; ++i) {
    const vk_pipeline_entry *e = &dev->pipelines[i];
    if (e->shader == shader && memcmp(e->spec, spec, sizeof e->spec) == 0) {
      *out_pipeline = e->pipeline;
      return VNRT_OK;
    }
  }
  VkShaderModule module = VK_NULL_HANDLE;
  VK_TRY(get_module(dev, shader, &module));
  if (dev->n_pipelines == dev->cap_pipelines) {
    int32_t cap = dev->cap_pipelines ? 2 * dev->cap_pipelines : 32;
    vk_pipeline_entry *p = host->alloc(host->core, sizeof *p * (size_t)cap);
    if (!p) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
    if (dev->pipelines) {
      memcpy(p, dev->pipelines, sizeof *p * (size_t)dev->n_pipelines);
      host->free(host->core, dev->pipelines);
    }
    dev->pipelines = p;
    dev->cap_pipelines = cap;
  }
  VkSpecializationMapEntry map[VK_NUM_SPEC];
  for (uint32_t i = 0; i < VK_NUM_SPEC; ++i) {
    map[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
  }
  VkSpecializationInfo si = {
      .mapEntryCount = VK_NUM_SPEC,
      .pMapEntries = map,
      .dataSize = sizeof(uint32_t) * VK_NUM_SPEC,
      .pData = spec,
  };
  VkComputePipelineCreateInfo cpi = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage =
          {
              .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
              .stage = VK_SHADER_STAGE_COMPUTE_BIT,
              .module = module,
              .pName = "main",
              .pSpecializationInfo = &si,
          },
      .layout = dev->pipeline_layout,
  };
  vk_pipeline_entry *e = &dev->pipelines[dev->n_pipelines];
  VkResult r =
      vkCreateComputePipelines(dev->device, dev->pipeline_cache, 1, &cpi, NULL, &e->pipeline);
  if (r != VK_SUCCESS) {
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreateComputePipelines (shader %d)", (int)shader);
  }
  e->shader = shader;
  memcpy(e->spec, spec, sizeof e->spec);
  dev->n_pipelines++;
  *out_pipeline = e->pipeline;
  return VNRT_OK;
}
