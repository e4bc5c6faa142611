/* Compiled graphs: collecting each node's dispatches (pipelines, descriptor sets, scratch and
 * constants), recording command buffers once per run range with barriers only where one
 * dispatch depends on another, one submit per run, and the device-side error records that
 * turn an out-of-range index into VNRT_ERROR_OUT_OF_RANGE. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vk_internal.h"

/* Error kinds written by shaders (common.glsl VN_ERR_*; 7 and 8 are VN_ERR_ENTRY and
 * VN_ERR_POS0 of v4.comp and sparse_attention.comp, 9 copy.comp's VN_ERR_POS). */
static const char *const vk_err_words[] = {"index",    "id",   "row",    "expert id",
                                           "token id", "rows", "kv_len", "idx entry"};
enum { VK_ERR_ROWS = 5, VK_ERR_KV_LEN = 6, VK_ERR_POS0 = 8, VK_ERR_POS = 9 };

typedef struct vk_dispatch {
  VkPipeline pipeline; /* VK_NULL_HANDLE: a buffer copy (vk_emit_copy) */
  /* A dispatch with a clean variant (vk_dispatch_desc.clean_spec): its pipelines with and
   * without the NaN test (unchecked VK_NULL_HANDLE: none), and slot 3's buffer's clean.gen
   * when select_variants last looked. */
  VkPipeline checked, unchecked;
  uint64_t clean_gen;
  uint64_t copy_bytes;      /* a copy's length, from slot 0's view to slot 5's */
  bool texel[VK_NUM_TEXEL]; /* slots 3, 4, texel_x_slot and texel_y_slot also at
                               VK_TEXEL_BINDING + 0, 1, 2, 3 */
  int texel_x_slot, texel_y_slot;
  VkBufferView views[VK_NUM_TEXEL]; /* those texel views, made by finish() */
  VkDescriptorSet set;
  uint32_t push[VK_PUSH_BYTES / 4];
  uint32_t groups[3];
  vk_view slots[VK_NUM_SLOTS]; /* as described; resolved for hazards at record time */
} vk_dispatch;

/* A range of a backend buffer that a compiled graph's dispatches may write, and the buffer's
 * clean.add_gen when a run last removed it from the clean ranges (select_variants). */
typedef struct vk_write {
  vnrt_backend_buffer *buffer;
  uint64_t lo, hi, add_gen;
} vk_write;

typedef struct vk_cmd {
  int32_t first, count;
  bool timed; /* recorded with timestamps around each node (vk_run_timed) */
  VkCommandBuffer cmd;
} vk_cmd;

struct vnrt_backend_exec {
  vnrt_backend_device *dev;
  /* A copy: the core keeps the tensor and node arrays alive until exec_destroy, but the
   * vnrt_backend_graph struct it passes may be a temporary. */
  vnrt_backend_graph graph;
  int32_t n_nodes;
  int32_t *node_first; /* [n_nodes + 1]: each node's first dispatch */
  vk_dispatch *disp;
  int32_t n_disp, cap_disp;
  VkDescriptorPool pool;
  VkCommandPool cmd_pool;
  VkFence fence;
  vk_cmd *cmds;
  int32_t n_cmds, cap_cmds;
  vnrt_backend_buffer *scratch; /* NULL when no node needs scratch */
  vnrt_backend_buffer *aux;     /* error records [n_nodes], then constants */
  vnrt_backend_buffer *pads;    /* words for unused writable slots (pad_writable_slots) */
  uint64_t err_stride, consts_offset;
  int32_t pending_lo, pending_hi; /* nodes run by run_async whose records are not checked */
  /* Timed runs only (vk_run_timed), created on the first: timestamps 2n and 2n + 1 before and
   * after node n, and where they are read back. */
  VkQueryPool timer;
  uint64_t *ticks;  /* [2 * n_nodes] */
  vk_write *writes; /* what the dispatches may write in backend buffers */
  int32_t n_writes;
  int32_t n_clean_cand; /* dispatches with a clean variant */
  int32_t n_switches;   /* times select_variants changed a choice */
  bool readers;         /* the candidates are counted in their buffers' clean.readers */
  bool cmds_stale;      /* a choice changed and cmds are not yet dropped: never submit them */
};

struct vk_builder {
  vnrt_backend_device *dev;
  const vnrt_backend_graph *graph;
  vnrt_backend_exec *exec;
  int32_t node;
  uint64_t scratch_cursor, scratch_max;
  uint8_t *consts;
  uint64_t consts_bytes, consts_cap;
};

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- Builder (used by vk_ops_*.c) ------------------------------------------------------ */

const vnrt_backend_host *vk_builder_host(vk_builder *b) { return b->dev->host; }
vnrt_backend_device *vk_builder_device(vk_builder *b) { return b->dev; }
const vnrt_backend_graph *vk_builder_graph(vk_builder *b) { return b->graph; }

void vk_desc_init(vk_dispatch_desc *d, vk_shader_id shader) {
  memset(d, 0, sizeof *d);
  d->shader = shader;
  d->texel_x = -1;
  d->texel_y = -1;
  d->clean_spec = -1;
  for (int i = 0; i < 8; ++i) d->spec[i] = VNRT_F32;
}

vk_view vk_tensor_view(vk_builder *b, int32_t t) {
  vk_view v = {0};
  const vnrt_backend_tensor *bt = &b->graph->tensors[t];
  uint64_t bytes = vnrt_tensor_type_bytes(&bt->type);
  if (bytes == 0 || !bt->buffer) return v; /* empty: the dummy */
  v.kind = VK_VIEW_BUFFER;
  v.buffer = bt->buffer;
  v.offset = bt->offset;
  v.range = align_up(bytes, 4); /* 16-bit tensors are read as whole words in the baseline */
  return v;
}

void vk_bind(vk_builder *b, vk_dispatch_desc *d, int slot, int32_t t) {
  d->slots[slot] = vk_tensor_view(b, t);
  if (slot < 8) d->spec[slot] = (uint32_t)b->graph->tensors[t].type.dtype;
}

vk_view vk_scratch_view(vk_builder *b, uint64_t bytes) {
  vk_view v = {.kind = VK_VIEW_SCRATCH};
  v.offset = b->scratch_cursor;
  v.range = align_up(bytes ? bytes : 4, 4);
  b->scratch_cursor = align_up(v.offset + v.range, b->dev->min_offset_align);
  if (b->scratch_cursor > b->scratch_max) b->scratch_max = b->scratch_cursor;
  return v;
}

vnrt_status vk_const_view(vk_builder *b, const void *data, uint64_t bytes, vk_view *out) {
  const vnrt_backend_host *host = b->dev->host;
  uint64_t off = align_up(b->consts_bytes, b->dev->min_offset_align);
  uint64_t need = off + align_up(bytes ? bytes : 4, 4);
  if (need > b->consts_cap) {
    uint64_t cap = b->consts_cap ? 2 * b->consts_cap : 4096;
    while (cap < need) cap *= 2;
    uint8_t *p = host->alloc(host->core, (size_t)cap);
    if (!p) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
    memset(p, 0, (size_t)cap);
    if (b->consts) {
      memcpy(p, b->consts, (size_t)b->consts_bytes);
      host->free(host->core, b->consts);
    }
    b->consts = p;
    b->consts_cap = cap;
  }
  if (bytes) memcpy(b->consts + off, data, (size_t)bytes);
  b->consts_bytes = need;
  *out = (vk_view){.kind = VK_VIEW_CONST, .offset = off, .range = need - off};
  return VNRT_OK;
}

bool vk_texel_view_ok(vk_builder *b, const vk_view *v, uint64_t bytes) {
  const VkPhysicalDeviceLimits *lim = &b->dev->phys->props.limits;
  uint64_t align = lim->minTexelBufferOffsetAlignment;
  return (v->kind == VK_VIEW_BUFFER || v->kind == VK_VIEW_SCRATCH) && align > 0 &&
         v->offset % align == 0 && v->offset % bytes == 0 && v->range >= bytes &&
         v->range / bytes <= lim->maxTexelBufferElements;
}

bool vk_texel_ok(vk_builder *b, int32_t t, uint64_t bytes) {
  vk_view v = vk_tensor_view(b, t);
  return vk_texel_view_ok(b, &v, bytes);
}

void vk_grid(vk_builder *b, uint64_t groups, uint32_t out[3]) {
  const VkPhysicalDeviceLimits *lim = &b->dev->phys->props.limits;
  uint64_t max_x = lim->maxComputeWorkGroupCount[0];
  out[2] = 1;
  if (groups <= max_x) {
    out[0] = (uint32_t)groups;
    out[1] = groups ? 1 : 0;
  } else {
    out[0] = (uint32_t)max_x;
    out[1] = (uint32_t)((groups + max_x - 1) / max_x);
  }
}

/* Appends a dispatch slot to the exec (grown as needed), zeroed. */
static vnrt_status next_dispatch(vk_builder *b, vk_dispatch **out) {
  const vnrt_backend_host *host = b->dev->host;
  vnrt_backend_exec *e = b->exec;
  if (e->n_disp == e->cap_disp) {
    int32_t cap = e->cap_disp ? 2 * e->cap_disp : 64;
    vk_dispatch *d = host->alloc(host->core, sizeof *d * (size_t)cap);
    if (!d) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
    if (e->disp) {
      memcpy(d, e->disp, sizeof *d * (size_t)e->n_disp);
      host->free(host->core, e->disp);
    }
    e->disp = d;
    e->cap_disp = cap;
  }
  *out = &e->disp[e->n_disp];
  memset(*out, 0, sizeof **out);
  return VNRT_OK;
}

vnrt_status vk_emit(vk_builder *b, const vk_dispatch_desc *desc) {
  const vnrt_backend_host *host = b->dev->host;
  if (desc->groups[0] == 0 || desc->groups[1] == 0 || desc->groups[2] == 0) return VNRT_OK;
  const VkPhysicalDeviceLimits *lim = &b->dev->phys->props.limits;
  static const char axes[3] = {'x', 'y', 'z'};
  for (int i = 0; i < 3; ++i) {
    if (desc->groups[i] > lim->maxComputeWorkGroupCount[i]) {
      return host->error(host->core, VNRT_ERROR_UNSUPPORTED,
                         "vulkan: node '%s' needs %u workgroups along %c, beyond the device's "
                         "maxComputeWorkGroupCount (%u)",
                         b->graph->nodes[b->node].name, desc->groups[i], axes[i],
                         lim->maxComputeWorkGroupCount[i]);
    }
  }
  vnrt_backend_exec *e = b->exec;
  vk_dispatch *d = NULL;
  VK_TRY(next_dispatch(b, &d));
  VK_TRY(vk_pipeline_get(b->dev, desc->shader, desc->spec, &d->pipeline));
  memcpy(d->push, desc->push, sizeof d->push);
  memcpy(d->groups, desc->groups, sizeof d->groups);
  memcpy(d->slots, desc->slots, sizeof d->slots);
  d->texel[0] = desc->texel3;
  d->texel[1] = desc->texel4;
  d->texel[2] = desc->texel_x >= 0;
  d->texel_x_slot = desc->texel_x >= 0 ? desc->texel_x : 0;
  d->texel[3] = desc->texel_y >= 0;
  d->texel_y_slot = desc->texel_y >= 0 ? desc->texel_y : 0;
  if (desc->clean_spec >= 0 && desc->clean_spec < VK_NUM_SPEC &&
      desc->slots[3].kind == VK_VIEW_BUFFER) {
    uint32_t spec[VK_NUM_SPEC];
    memcpy(spec, desc->spec, sizeof spec);
    spec[desc->clean_spec] |= desc->clean_bits;
    d->checked = d->pipeline;
    d->clean_gen = UINT64_MAX; /* looked at on the first run */
    VK_TRY(vk_pipeline_get(b->dev, desc->shader, spec, &d->unchecked));
  }
  e->n_disp++;
  return VNRT_OK;
}

vnrt_status vk_emit_copy(vk_builder *b, int32_t src, int32_t dst, uint64_t bytes) {
  if (bytes == 0) return VNRT_OK;
  vk_dispatch *d = NULL;
  VK_TRY(next_dispatch(b, &d));
  d->copy_bytes = bytes;
  d->slots[0] = vk_tensor_view(b, src);
  d->slots[VK_SLOT_OUT0] = vk_tensor_view(b, dst);
  b->exec->n_disp++;
  return VNRT_OK;
}

/* ---- supports_node --------------------------------------------------------------------- */

int vk_supports_node(vnrt_backend_device *dev, const vnrt_backend_graph *graph, int32_t n) {
  if (!dev || !graph || n < 0 || n >= graph->n_nodes) return 0;
  const vnrt_backend_node *node = &graph->nodes[n];
  const uint64_t range = dev->phys->props.limits.maxStorageBufferRange;
  char why[256] = "";
  int ok = node->n_inputs <= VNRT_MAX_NODE_INPUTS && node->n_outputs <= VNRT_MAX_NODE_OUTPUTS;
  for (int32_t i = 0; ok && i < node->n_inputs + node->n_outputs; ++i) {
    int32_t t = i < node->n_inputs ? node->inputs[i] : node->outputs[i - node->n_inputs];
    if (t < 0 || t >= graph->n_tensors) return 0;
    const vnrt_tensor_type *ty = &graph->tensors[t].type;
    uint64_t bytes = vnrt_tensor_type_bytes(ty);
    int64_t numel = vnrt_tensor_type_numel(ty);
    if (bytes > range) {
      snprintf(why, sizeof why,
               "tensor '%s' is %" PRIu64
               " bytes, beyond the device's maxStorageBufferRange "
               "(%" PRIu64 " bytes)",
               graph->tensors[t].name, bytes, range);
      ok = 0;
    } else if (numel >= (int64_t)1 << 31) {
      snprintf(why, sizeof why, "tensor '%s' has %" PRId64 " elements (kernels index with 31 bits)",
               graph->tensors[t].name, numel);
      ok = 0;
    }
  }
  if (ok) ok = vk_op_supported(dev, graph, node, why, sizeof why);
  if (!ok) {
    const char *op = vnrt_op_name(node->op);
    dev->host->log(dev->host->core, VNRT_LOG_INFO, "vulkan: node '%s' (%s) is not run here: %s",
                   node->name, op ? op : "?", why[0] ? why : "unsupported");
  }
  return ok;
}

/* ---- Compilation ----------------------------------------------------------------------- */

void vk_exec_destroy(vnrt_backend_exec *e) {
  if (!e) return;
  vnrt_backend_device *dev = e->dev;
  const vnrt_backend_host *host = dev->host;
  if (e->fence) vkDestroyFence(dev->device, e->fence, NULL);
  if (e->timer) vkDestroyQueryPool(dev->device, e->timer, NULL);
  if (e->ticks) host->free(host->core, e->ticks);
  if (e->cmd_pool) vkDestroyCommandPool(dev->device, e->cmd_pool, NULL); /* frees the cmds */
  if (e->pool) vkDestroyDescriptorPool(dev->device, e->pool, NULL);
  if (e->scratch) vk_buffer_free(dev, e->scratch);
  if (e->aux) vk_buffer_free(dev, e->aux);
  if (e->pads) vk_buffer_free(dev, e->pads);
  if (e->cmds) host->free(host->core, e->cmds);
  for (int32_t i = 0; i < e->n_disp; ++i) {
    if (e->readers && e->disp[i].unchecked) {
      vk_clean_add_readers(dev, e->disp[i].slots[3].buffer, -1);
    }
    for (int v = 0; v < VK_NUM_TEXEL; ++v) {
      if (e->disp[i].views[v]) vkDestroyBufferView(dev->device, e->disp[i].views[v], NULL);
    }
  }
  if (e->disp) host->free(host->core, e->disp);
  if (e->writes) host->free(host->core, e->writes);
  if (e->node_first) host->free(host->core, e->node_first);
  host->free(host->core, e);
}

/* Checks that every tensor a node touches lies inside its buffer. A node may have more inputs
 * than a dispatch has input slots (moe_ffn with both scales has 7), or more outputs than it has
 * output slots (kv_compress has 4): its record function binds the ones each dispatch uses. */
static vnrt_status check_tensors(vnrt_backend_device *dev, const vnrt_backend_graph *g) {
  const vnrt_backend_host *host = dev->host;
  for (int32_t n = 0; n < g->n_nodes; ++n) {
    const vnrt_backend_node *node = &g->nodes[n];
    if (node->n_inputs > VNRT_MAX_NODE_INPUTS || node->n_outputs > VNRT_MAX_NODE_OUTPUTS) {
      return host->error(host->core, VNRT_ERROR_INTERNAL,
                         "vulkan compile: node '%s' has %d inputs and %d outputs", node->name,
                         (int)node->n_inputs, (int)node->n_outputs);
    }
    for (int32_t i = 0; i < node->n_inputs + node->n_outputs; ++i) {
      int32_t t = i < node->n_inputs ? node->inputs[i] : node->outputs[i - node->n_inputs];
      if (t < 0 || t >= g->n_tensors) {
        return host->error(host->core, VNRT_ERROR_INTERNAL,
                           "vulkan compile: node '%s' refers to tensor %d of %d", node->name,
                           (int)t, (int)g->n_tensors);
      }
      const vnrt_backend_tensor *bt = &g->tensors[t];
      uint64_t bytes = vnrt_tensor_type_bytes(&bt->type);
      if (bytes == 0) continue;
      if (!bt->buffer || bt->offset > bt->buffer->size || bytes > bt->buffer->size - bt->offset ||
          bt->offset % 4 != 0) {
        return host->error(host->core, VNRT_ERROR_INTERNAL,
                           "vulkan compile: tensor '%s' of node '%s' (%" PRIu64
                           " bytes at offset %" PRIu64 ") does not lie in its buffer",
                           bt->name, node->name, bytes, bt->offset);
      }
    }
  }
  return VNRT_OK;
}

/* Resolves a view to the buffer range a descriptor (and the hazard tracker) uses. */
static VkDescriptorBufferInfo resolve(const vnrt_backend_exec *e, const vk_view *v, int slot,
                                      int32_t node) {
  VkDescriptorBufferInfo bi = {.buffer = e->dev->dummy->buffer, .offset = 0, .range = 256};
  if (slot == VK_SLOT_ERR) {
    bi.buffer = e->aux->buffer;
    bi.offset = (uint64_t)node * e->err_stride;
    bi.range = VK_ERR_RECORD_WORDS * 4;
    return bi;
  }
  switch (v->kind) {
    case VK_VIEW_BUFFER:
      bi.buffer = v->buffer->buffer, bi.offset = v->offset, bi.range = v->range;
      break;
    case VK_VIEW_SCRATCH:
      bi.buffer = e->scratch->buffer, bi.offset = v->offset, bi.range = v->range;
      break;
    case VK_VIEW_CONST:
      bi.buffer = e->aux->buffer, bi.offset = e->consts_offset + v->offset, bi.range = v->range;
      break;
    default:
      break;
  }
  return bi;
}

/* A shader's SPIR-V declares its writable bindings (output slots 5..7, the scratch) whether or
 * not the dispatch's mode writes them, and synchronization validation counts every declared
 * binding as accessed: left on the device's shared dummy buffer, which other dispatches read
 * at their unused input slots, such a slot reads as a write-after-read hazard with no barrier
 * (it is never written). Each gets words of its own instead, which no other dispatch touches,
 * so the hazard tracking of record() needs no barrier for them either. */
static vnrt_status pad_writable_slots(vnrt_backend_exec *e) {
  static const int writable[] = {VK_SLOT_OUT0, VK_SLOT_OUT0 + 1, VK_SLOT_OUT0 + 2, VK_SLOT_SCRATCH};
  const int n_writable = (int)(sizeof writable / sizeof writable[0]);
  uint64_t stride = align_up(16, e->dev->min_offset_align), n = 0;
  for (int32_t i = 0; i < e->n_disp; ++i) {
    for (int w = 0; w < n_writable && e->disp[i].pipeline; ++w) {
      n += e->disp[i].slots[writable[w]].kind == VK_VIEW_NONE;
    }
  }
  if (n == 0) return VNRT_OK;
  VK_TRY(vk_buffer_create(e->dev, n * stride, false, "unused output slots", &e->pads));
  uint64_t at = 0;
  for (int32_t i = 0; i < e->n_disp; ++i) {
    for (int w = 0; w < n_writable && e->disp[i].pipeline; ++w) {
      vk_view *v = &e->disp[i].slots[writable[w]];
      if (v->kind != VK_VIEW_NONE) continue;
      *v = (vk_view){.kind = VK_VIEW_BUFFER, .buffer = e->pads, .offset = at, .range = 16};
      at += stride;
    }
  }
  return VNRT_OK;
}

/* Creates scratch, the aux buffer (error records and constants) and every descriptor set. */
static vnrt_status finish(vnrt_backend_exec *e, vk_builder *b) {
  vnrt_backend_device *dev = e->dev;
  const vnrt_backend_host *host = dev->host;
  VK_TRY(pad_writable_slots(e));
  if (b->scratch_max > 0) {
    if (b->scratch_max > dev->phys->props.limits.maxStorageBufferRange) {
      return host->error(host->core, VNRT_ERROR_UNSUPPORTED,
                         "vulkan compile: %" PRIu64
                         " bytes of scratch exceed the device's "
                         "maxStorageBufferRange (%" PRIu32 ")",
                         b->scratch_max, dev->phys->props.limits.maxStorageBufferRange);
    }
    VK_TRY(vk_buffer_create(dev, b->scratch_max, false, "scratch", &e->scratch));
  }
  e->err_stride = align_up(VK_ERR_RECORD_WORDS * 4, dev->min_offset_align);
  e->consts_offset = align_up((uint64_t)e->n_nodes * e->err_stride, dev->min_offset_align);
  VK_TRY(vk_buffer_create(dev, e->consts_offset + b->consts_bytes, true, "error records", &e->aux));
  if (!e->aux->host) {
    return host->error(host->core, VNRT_ERROR_DEVICE, "vulkan: the aux buffer is not mapped");
  }
  memset(e->aux->host, 0, (size_t)e->consts_offset);
  if (b->consts_bytes) memcpy(e->aux->host + e->consts_offset, b->consts, (size_t)b->consts_bytes);
  vk_buffer_flush(dev, e->aux, 0, e->consts_offset + b->consts_bytes);
  if (e->n_disp == 0) return VNRT_OK;

  VkDescriptorPoolSize ps[2] = {
      {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
       .descriptorCount = (uint32_t)e->n_disp * VK_NUM_SLOTS},
      {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
       .descriptorCount = (uint32_t)e->n_disp * VK_NUM_TEXEL},
  };
  VkDescriptorPoolCreateInfo dpi = {
      .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
      .maxSets = (uint32_t)e->n_disp,
      .poolSizeCount = 2,
      .pPoolSizes = ps,
  };
  VkResult r = vkCreateDescriptorPool(dev->device, &dpi, NULL, &e->pool);
  if (r != VK_SUCCESS) return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreateDescriptorPool");
  for (int32_t n = 0; n < e->n_nodes; ++n) {
    for (int32_t i = e->node_first[n]; i < e->node_first[n + 1]; ++i) {
      vk_dispatch *d = &e->disp[i];
      if (!d->pipeline) continue; /* a buffer copy: no descriptors */
      VkDescriptorSetAllocateInfo ai = {
          .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
          .descriptorPool = e->pool,
          .descriptorSetCount = 1,
          .pSetLayouts = &dev->set_layout,
      };
      r = vkAllocateDescriptorSets(dev->device, &ai, &d->set);
      if (r != VK_SUCCESS) return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkAllocateDescriptorSets");
      VkDescriptorBufferInfo infos[VK_NUM_SLOTS];
      VkWriteDescriptorSet writes[VK_NUM_SLOTS + VK_NUM_TEXEL];
      for (int s = 0; s < VK_NUM_SLOTS; ++s) {
        infos[s] = resolve(e, &d->slots[s], s, n);
        writes[s] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = d->set,
            .dstBinding = (uint32_t)s,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &infos[s],
        };
      }
      uint32_t n_writes = VK_NUM_SLOTS;
      for (int v = 0; v < VK_NUM_TEXEL; ++v) {
        if (!d->texel[v]) {
          /* A shader may declare a texel binding that this dispatch's mode does not read
           * (gemv.comp declares them all, topk.comp one for its OP 1): the dummy's view. */
          writes[n_writes++] = (VkWriteDescriptorSet){
              .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
              .dstSet = d->set,
              .dstBinding = VK_TEXEL_BINDING + (uint32_t)v,
              .descriptorCount = 1,
              .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
              .pTexelBufferView = &dev->dummy_views[v],
          };
          continue;
        }
        /* The texels of the slot's range (vk_texel_ok checked its offset and size). */
        uint64_t tb = v == 1 ? 1 : VK_TEXEL_BYTES;
        int slot = v == 0 ? 3 : v == 1 ? 4 : v == 2 ? d->texel_x_slot : d->texel_y_slot;
        VkBufferViewCreateInfo vi = {
            .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
            .buffer = infos[slot].buffer,
            .format = v == 1 ? VK_FORMAT_R8_UINT : VK_FORMAT_R32G32B32A32_UINT,
            .offset = infos[slot].offset,
            .range = infos[slot].range / tb * tb,
        };
        r = vkCreateBufferView(dev->device, &vi, NULL, &d->views[v]);
        if (r != VK_SUCCESS) {
          d->views[v] = VK_NULL_HANDLE;
          return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreateBufferView");
        }
        writes[n_writes++] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = d->set,
            .dstBinding = VK_TEXEL_BINDING + (uint32_t)v,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
            .pTexelBufferView = &d->views[v],
        };
      }
      vkUpdateDescriptorSets(dev->device, n_writes, writes, 0, NULL);
    }
  }
  return VNRT_OK;
}

/* The backend-buffer ranges the dispatches may write (output slots, copy destinations), before
 * finish() gives unused output slots words of their own; and the clean variants dropped where
 * a dispatch of this graph writes slot 3's range (a computed weight is never taken as clean). */
static vnrt_status collect_writes(vnrt_backend_exec *e) {
  /* Untracked devices never choose a variant (select_variants): nothing to collect. */
  if (!vk_clean_tracked(e->dev)) return VNRT_OK;
  const vnrt_backend_host *host = e->dev->host;
  int32_t n = 0;
  for (int32_t i = 0; i < e->n_disp; ++i) {
    for (int s = VK_SLOT_OUT0; s < VK_SLOT_OUT0 + 3; ++s)
      n += e->disp[i].slots[s].kind == VK_VIEW_BUFFER;
  }
  if (n == 0) return VNRT_OK;
  e->writes = host->alloc(host->core, sizeof *e->writes * (size_t)n);
  if (!e->writes) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  for (int32_t i = 0; i < e->n_disp; ++i) {
    for (int s = VK_SLOT_OUT0; s < VK_SLOT_OUT0 + 3; ++s) {
      const vk_view *v = &e->disp[i].slots[s];
      if (v->kind != VK_VIEW_BUFFER) continue;
      uint64_t len = e->disp[i].pipeline ? v->range : e->disp[i].copy_bytes;
      e->writes[e->n_writes++] = (vk_write){v->buffer, v->offset, v->offset + len, 0};
    }
  }
  for (int32_t i = 0; i < e->n_disp; ++i) {
    vk_dispatch *d = &e->disp[i];
    if (!d->unchecked) continue;
    const vk_view *w = &d->slots[3];
    for (int32_t j = 0; j < e->n_writes && d->unchecked; ++j) {
      const vk_write *o = &e->writes[j];
      if (o->buffer == w->buffer && o->lo < w->offset + w->range && w->offset < o->hi) {
        d->unchecked = VK_NULL_HANDLE;
      }
    }
    e->n_clean_cand += d->unchecked != VK_NULL_HANDLE;
  }
  /* Their buffers keep their host addresses while this graph lives (vk_clean_hand_out). */
  if (e->n_clean_cand > 0) {
    for (int32_t i = 0; i < e->n_disp; ++i) {
      if (e->disp[i].unchecked) vk_clean_add_readers(e->dev, e->disp[i].slots[3].buffer, 1);
    }
    e->readers = true;
  }
  return VNRT_OK;
}

vnrt_status vk_compile(vnrt_backend_device *dev, const vnrt_backend_graph *graph,
                       vnrt_backend_exec **out_exec) {
  const vnrt_backend_host *host = dev->host;
  *out_exec = NULL;
  VK_TRY(check_tensors(dev, graph));
  vnrt_backend_exec *e = host->alloc(host->core, sizeof *e);
  if (!e) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  memset(e, 0, sizeof *e);
  e->dev = dev;
  e->graph = *graph;
  e->n_nodes = graph->n_nodes;
  e->node_first = host->alloc(host->core, sizeof *e->node_first * (size_t)(graph->n_nodes + 1));
  if (!e->node_first) {
    vk_exec_destroy(e);
    return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  }
  vk_builder b = {.dev = dev, .graph = graph, .exec = e};
  vnrt_status s = VNRT_OK;
  for (int32_t n = 0; n < graph->n_nodes && s == VNRT_OK; ++n) {
    e->node_first[n] = e->n_disp;
    b.node = n;
    b.scratch_cursor = 0; /* nodes run one after another: scratch is reused */
    s = vk_op_record(&b, graph, &graph->nodes[n]);
  }
  e->node_first[graph->n_nodes] = e->n_disp;
  if (s == VNRT_OK) s = collect_writes(e);
  if (s == VNRT_OK) s = finish(e, &b);
  if (b.consts) host->free(host->core, b.consts);
  if (s == VNRT_OK) {
    VkCommandPoolCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .queueFamilyIndex = dev->phys->queue_family,
    };
    VkResult r = vkCreateCommandPool(dev->device, &cpi, NULL, &e->cmd_pool);
    if (r == VK_SUCCESS) {
      VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
      r = vkCreateFence(dev->device, &fci, NULL, &e->fence);
    }
    if (r != VK_SUCCESS) s = VK_FAIL(host, VNRT_ERROR_DEVICE, r, "creating a command pool");
  }
  if (s != VNRT_OK) {
    vk_exec_destroy(e);
    return s;
  }
  *out_exec = e;
  return VNRT_OK;
}

/* ---- Recording and running ------------------------------------------------------------- */

typedef struct vk_access {
  VkBuffer buffer;
  uint64_t lo, hi;
  bool write;
} vk_access;

/* The buffer ranges a dispatch reads and writes (error records and constants excluded: the
 * records are only ever claimed by one atomic compare-and-swap, the constants never written). */
static int32_t accesses(const vnrt_backend_exec *e, const vk_dispatch *d, int32_t node,
                        vk_access out[VK_NUM_SLOTS]) {
  int32_t n = 0;
  for (int s = 0; s < VK_NUM_SLOTS; ++s) {
    if (s == VK_SLOT_ERR || s == VK_SLOT_CONST || d->slots[s].kind == VK_VIEW_NONE) continue;
    if (d->slots[s].kind == VK_VIEW_CONST) continue;
    VkDescriptorBufferInfo bi = resolve(e, &d->slots[s], s, node);
    out[n++] = (vk_access){bi.buffer, bi.offset, bi.offset + bi.range, s >= VK_SLOT_OUT0};
  }
  return n;
}

/* Records nodes [first, first + count) into a new command buffer. timed: each node waits for
 * the one before (a barrier) and is bracketed by timestamps 2n and 2n + 1 in e->timer, both
 * written once everything before them is done, so their difference is that node alone. */
static vnrt_status record(vnrt_backend_exec *e, int32_t first, int32_t count, bool timed,
                          VkCommandBuffer *out_cmd) {
  vnrt_backend_device *dev = e->dev;
  const vnrt_backend_host *host = dev->host;
  VkCommandBufferAllocateInfo cai = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
      .commandPool = e->cmd_pool,
      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
      .commandBufferCount = 1,
  };
  VkCommandBuffer cmd;
  VkResult r = vkAllocateCommandBuffers(dev->device, &cai, &cmd);
  if (r != VK_SUCCESS) return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkAllocateCommandBuffers");
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  r = vkBeginCommandBuffer(cmd, &bi);
  if (r != VK_SUCCESS) {
    vkFreeCommandBuffers(dev->device, e->cmd_pool, 1, &cmd);
    return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkBeginCommandBuffer");
  }
  /* Inputs written by the host or copied in before this submit, and results of earlier runs,
   * are visible to the first dispatch. */
  const VkAccessFlags rw = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                           VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags work =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  VkMemoryBarrier start = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask =
          VK_ACCESS_HOST_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT,
      .dstAccessMask = rw,
  };
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_HOST_BIT | work, work, 0, 1, &start, 0, NULL, 0,
                       NULL);
  if (timed) vkCmdResetQueryPool(cmd, e->timer, 2 * (uint32_t)first, 2 * (uint32_t)count);
  /* Accesses since the last barrier: a dispatch that reads or writes what one of them wrote,
   * or writes what one of them read, waits for them. */
  int32_t n_pending = 0, cap_pending = 0;
  vk_access *pending = NULL;
  VkPipeline bound = VK_NULL_HANDLE;
  vnrt_status s = VNRT_OK;
  for (int32_t n = first; n < first + count && s == VNRT_OK; ++n) {
    if (timed) {
      vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->timer, 2 * (uint32_t)n);
    }
    for (int32_t i = e->node_first[n]; i < e->node_first[n + 1]; ++i) {
      const vk_dispatch *d = &e->disp[i];
      vk_access acc[VK_NUM_SLOTS];
      int32_t na = accesses(e, d, n, acc);
      bool hazard = timed && i == e->node_first[n] && n > first; /* nodes one after another */
      for (int32_t a = 0; a < na && !hazard; ++a) {
        for (int32_t p = 0; p < n_pending && !hazard; ++p) {
          hazard = pending[p].buffer == acc[a].buffer && pending[p].lo < acc[a].hi &&
                   acc[a].lo < pending[p].hi && (pending[p].write || acc[a].write);
        }
      }
      if (hazard) {
        /* Dispatches and buffer copies (vk_emit_copy) alike. */
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = rw,
            .dstAccessMask = rw,
        };
        vkCmdPipelineBarrier(cmd, work, work, 0, 1, &mb, 0, NULL, 0, NULL);
        n_pending = 0;
      }
      if (n_pending + na > cap_pending) {
        int32_t cap = cap_pending ? 2 * cap_pending : 64;
        while (cap < n_pending + na) cap *= 2;
        vk_access *np = host->alloc(host->core, sizeof *np * (size_t)cap);
        if (!np) {
          s = host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
          break;
        }
        if (pending) {
          memcpy(np, pending, sizeof *np * (size_t)n_pending);
          host->free(host->core, pending);
        }
        pending = np;
        cap_pending = cap;
      }
      memcpy(pending + n_pending, acc, sizeof *acc * (size_t)na);
      n_pending += na;
      if (!d->pipeline) {
        VkDescriptorBufferInfo from = resolve(e, &d->slots[0], 0, n);
        VkDescriptorBufferInfo to = resolve(e, &d->slots[VK_SLOT_OUT0], VK_SLOT_OUT0, n);
        VkBufferCopy region = {
            .srcOffset = from.offset, .dstOffset = to.offset, .size = d->copy_bytes};
        vkCmdCopyBuffer(cmd, from.buffer, to.buffer, 1, &region);
        continue;
      }
      if (d->pipeline != bound) {
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->pipeline);
        bound = d->pipeline;
      }
      vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, dev->pipeline_layout, 0, 1,
                              &d->set, 0, NULL);
      vkCmdPushConstants(cmd, dev->pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, VK_PUSH_BYTES,
                         d->push);
      vkCmdDispatch(cmd, d->groups[0], d->groups[1], d->groups[2]);
    }
    if (timed) {
      vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->timer, 2 * (uint32_t)n + 1);
    }
  }
  if (pending) host->free(host->core, pending);
  /* Results (and error records) are visible to the host and to copies after the submit. */
  VkMemoryBarrier end = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
      .dstAccessMask =
          VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
  };
  vkCmdPipelineBarrier(cmd, work, VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1,
                       &end, 0, NULL, 0, NULL);
  r = vkEndCommandBuffer(cmd);
  if (s == VNRT_OK && r != VK_SUCCESS)
    s = VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkEndCommandBuffer");
  if (s != VNRT_OK) {
    vkFreeCommandBuffers(dev->device, e->cmd_pool, 1, &cmd);
    return s;
  }
  *out_cmd = cmd;
  return VNRT_OK;
}

/* The cached command buffer for [first, first + count), timed or not, recorded on first use. */
static vnrt_status command_for(vnrt_backend_exec *e, int32_t first, int32_t count, bool timed,
                               VkCommandBuffer *out) {
  const vnrt_backend_host *host = e->dev->host;
  for (int32_t i = 0; i < e->n_cmds; ++i) {
    if (e->cmds[i].first == first && e->cmds[i].count == count && e->cmds[i].timed == timed) {
      *out = e->cmds[i].cmd;
      return VNRT_OK;
    }
  }
  if (e->n_cmds == e->cap_cmds) {
    int32_t cap = e->cap_cmds ? 2 * e->cap_cmds : 4;
    vk_cmd *c = host->alloc(host->core, sizeof *c * (size_t)cap);
    if (!c) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
    if (e->cmds) {
      memcpy(c, e->cmds, sizeof *c * (size_t)e->n_cmds);
      host->free(host->core, e->cmds);
    }
    e->cmds = c;
    e->cap_cmds = cap;
  }
  VK_TRY(record(e, first, count, timed, out));
  e->cmds[e->n_cmds++] = (vk_cmd){first, count, timed, *out};
  return VNRT_OK;
}

/* Clears the error records of nodes [first, first + count) before a submit. */
static void clear_records(vnrt_backend_exec *e, int32_t first, int32_t count) {
  uint64_t err_lo = (uint64_t)first * e->err_stride, err_bytes = (uint64_t)count * e->err_stride;
  memset(e->aux->host + err_lo, 0, (size_t)err_bytes);
  vk_buffer_flush(e->dev, e->aux, err_lo, err_bytes);
}

/* Reports the first error a node of [first, first + count) recorded (its run is done). */
static vnrt_status check_records(vnrt_backend_exec *e, int32_t first, int32_t count) {
  vnrt_backend_device *dev = e->dev;
  const vnrt_backend_host *host = dev->host;
  uint64_t err_lo = (uint64_t)first * e->err_stride, err_bytes = (uint64_t)count * e->err_stride;
  vk_buffer_invalidate(dev, e->aux, err_lo, err_bytes);
  for (int32_t n = first; n < first + count; ++n) {
    const uint32_t *rec = (const uint32_t *)(e->aux->host + (uint64_t)n * e->err_stride);
    if (rec[0] == 0) continue;
    const vnrt_backend_node *node = &e->graph.nodes[n];
    const char *op = vnrt_op_name(node->op);
    if (rec[1] == VK_ERR_ROWS) {
      return host->error(host->core, VNRT_ERROR_OUT_OF_RANGE,
                         "%s '%s': rows [%d, %lld) out of range [0, %" PRIu32
                         ") (the cache is "
                         "full or pos is negative)",
                         op ? op : "?", node->name, (int32_t)rec[2],
                         (long long)(int32_t)rec[2] + (long long)rec[4], rec[3]);
    }
    if (rec[1] == VK_ERR_KV_LEN) {
      return host->error(host->core, VNRT_ERROR_OUT_OF_RANGE,
                         "%s '%s': kv_len %d out of range [0, %" PRIu32 "] (the cache's rows)",
                         op ? op : "?", node->name, (int32_t)rec[2], rec[3]);
    }
    if (rec[1] == VK_ERR_POS0 || rec[1] == VK_ERR_POS) {
      return host->error(host->core, VNRT_ERROR_OUT_OF_RANGE, "%s '%s': %s %d is negative",
                         op ? op : "?", node->name, rec[1] == VK_ERR_POS ? "pos" : "pos0",
                         (int32_t)rec[2]);
    }
    uint32_t kind = rec[1] < sizeof vk_err_words / sizeof vk_err_words[0] ? rec[1] : 0;
    return host->error(host->core, VNRT_ERROR_OUT_OF_RANGE,
                       "%s '%s': %s %d at position %" PRIu32 " is out of range [0, %" PRIu32 ")",
                       op ? op : "?", node->name, vk_err_words[kind], (int32_t)rec[2], rec[4],
                       rec[3]);
  }
  return VNRT_OK;
}

/* Checks the records of the async runs since the last check, once they are done. */
static vnrt_status check_pending(vnrt_backend_exec *e) {
  if (e->pending_hi <= e->pending_lo) return VNRT_OK;
  int32_t lo = e->pending_lo, hi = e->pending_hi;
  e->pending_lo = e->pending_hi = 0;
  VK_TRY(vk_wait_compute(e->dev, "run"));
  return check_records(e, lo, hi - lo);
}

static vnrt_status check_nodes(vnrt_backend_exec *e, int32_t first, int32_t count) {
  if (first < 0 || count < 0 || first > e->n_nodes || count > e->n_nodes - first) {
    return e->dev->host->error(e->dev->host->core, VNRT_ERROR_INTERNAL,
                               "vulkan run: nodes [%d, %d) outside the compiled %d nodes",
                               (int)first, (int)(first + count), (int)e->n_nodes);
  }
  return VNRT_OK;
}

/* Before a run: the ranges this graph writes leave the clean ranges (vk_clean.c), and each
 * dispatch with a clean variant takes the pipeline without the NaN test exactly while its
 * weight's range is clean. When a choice changes, the recorded command buffers are dropped
 * (after the runs using them) and recorded again on use. A graph whose choices changed
 * VK_MAX_SWITCHES times keeps the tested pipelines from then on. */
#define VK_MAX_SWITCHES 8
static vnrt_status select_variants(vnrt_backend_exec *e) {
  vnrt_backend_device *dev = e->dev;
  if (!vk_clean_tracked(dev) || (e->n_writes == 0 && e->n_clean_cand == 0)) return VNRT_OK;
  bool changed = false;
  int32_t n_unchecked = 0;
  pthread_mutex_lock(&dev->clean_lock);
  for (int32_t j = 0; j < e->n_writes; ++j) {
    vk_write *w = &e->writes[j];
    vk_clean *c = &w->buffer->clean;
    if (c->add_gen == w->add_gen) continue; /* nothing added since it was removed */
    vk_clean_sub_locked(dev->host, c, w->lo, w->hi);
    w->add_gen = c->add_gen;
  }
  for (int32_t i = 0; i < e->n_disp && e->n_clean_cand > 0; ++i) {
    vk_dispatch *d = &e->disp[i];
    if (!d->unchecked) continue;
    const vk_view *v = &d->slots[3];
    const vk_clean *c = &v->buffer->clean;
    if (c->gen != d->clean_gen) {
      d->clean_gen = c->gen;
      bool clean = e->n_switches < VK_MAX_SWITCHES &&
                   vk_clean_covers_locked(c, v->offset, v->offset + v->range);
      VkPipeline p = clean ? d->unchecked : d->checked;
      changed |= p != d->pipeline;
      d->pipeline = p;
    }
    n_unchecked += d->pipeline == d->unchecked;
  }
  pthread_mutex_unlock(&dev->clean_lock);
  if (changed) {
    e->n_switches++;
    e->cmds_stale = true;
    dev->host->log(dev->host->core, VNRT_LOG_INFO,
                   "vulkan: %d of %d e4m3 GEMVs run without the NaN test (weights known NaN-free)",
                   (int)n_unchecked, (int)e->n_clean_cand);
  }
  /* Recorded with the old choices: dropped before any run, also when an earlier wait failed. */
  if (!e->cmds_stale) return VNRT_OK;
  if (e->n_cmds > 0) {
    VK_TRY(vk_wait_compute(dev, "run")); /* async runs may still use the command buffers */
    for (int32_t i = 0; i < e->n_cmds; ++i) {
      vkFreeCommandBuffers(dev->device, e->cmd_pool, 1, &e->cmds[i].cmd);
    }
    e->n_cmds = 0;
  }
  e->cmds_stale = false;
  return VNRT_OK;
}

vnrt_status vk_run(vnrt_backend_exec *e, int32_t first, int32_t count) {
  vnrt_backend_device *dev = e->dev;
  VK_TRY(check_nodes(e, first, count));
  /* Errors of async runs come first (backend.h: the next synchronous run reports them). */
  VK_TRY(check_pending(e));
  if (count == 0 || e->node_first[first] == e->node_first[first + count]) return VNRT_OK;
  VK_TRY(select_variants(e));
  VkCommandBuffer cmd;
  VK_TRY(command_for(e, first, count, false, &cmd));
  clear_records(e, first, count);
  VK_TRY(vk_submit_compute(dev, cmd, e->fence, "run"));
  return check_records(e, first, count);
}

/* Like vk_run, through command buffers of its own with timestamps around each node (record):
 * ordinary runs keep theirs, uninstrumented. */
vnrt_status vk_run_timed(vnrt_backend_exec *e, int32_t first, int32_t count, uint64_t *out_ns) {
  vnrt_backend_device *dev = e->dev;
  const vnrt_backend_host *host = dev->host;
  VK_TRY(check_nodes(e, first, count));
  const vk_phys *ph = dev->phys;
  double period = (double)ph->props.limits.timestampPeriod; /* ns per tick */
  if (ph->timestamp_bits == 0 || !(period > 0.0)) {
    return host->error(host->core, VNRT_ERROR_UNSUPPORTED,
                       "vulkan: the compute queue family writes no timestamps "
                       "(timestampValidBits %u, timestampPeriod %g)",
                       (unsigned)ph->timestamp_bits, period);
  }
  VK_TRY(check_pending(e));
  for (int32_t i = 0; i < count; ++i) out_ns[i] = 0;
  if (count == 0 || e->node_first[first] == e->node_first[first + count]) return VNRT_OK;
  if (!e->timer) {
    VkQueryPoolCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = 2 * (uint32_t)e->n_nodes,
    };
    VkResult r = vkCreateQueryPool(dev->device, &qi, NULL, &e->timer);
    if (r != VK_SUCCESS) {
      e->timer = VK_NULL_HANDLE;
      return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkCreateQueryPool (timestamps)");
    }
  }
  if (!e->ticks) {
    e->ticks = host->alloc(host->core, sizeof *e->ticks * 2 * (size_t)e->n_nodes);
    if (!e->ticks)
      return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  }
  VK_TRY(select_variants(e));
  VkCommandBuffer cmd;
  VK_TRY(command_for(e, first, count, true, &cmd));
  clear_records(e, first, count);
  VK_TRY(vk_submit_compute(dev, cmd, e->fence, "run"));
  VK_TRY(check_records(e, first, count));
  VkResult r =
      vkGetQueryPoolResults(dev->device, e->timer, 2 * (uint32_t)first, 2 * (uint32_t)count,
                            sizeof *e->ticks * 2 * (size_t)count, e->ticks, sizeof *e->ticks,
                            VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
  if (r != VK_SUCCESS) return VK_FAIL(host, VNRT_ERROR_DEVICE, r, "vkGetQueryPoolResults");
  uint64_t mask = ph->timestamp_bits >= 64 ? UINT64_MAX : (UINT64_C(1) << ph->timestamp_bits) - 1;
  for (int32_t i = 0; i < count; ++i) {
    uint64_t ticks = (e->ticks[2 * i + 1] - e->ticks[2 * i]) & mask; /* wraps within the bits */
    out_ns[i] = (uint64_t)((double)ticks * period + 0.5);
  }
  return VNRT_OK;
}

/* Submitted without a fence; the records are checked by the next vk_run. Ranges of one
 * executor run are disjoint, and it waits for them before the next. */
vnrt_status vk_run_async(vnrt_backend_exec *e, int32_t first, int32_t count,
                         const vnrt_backend_sync *sync) {
  VK_TRY(check_nodes(e, first, count));
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  if (count > 0 && e->node_first[first] != e->node_first[first + count]) {
    VK_TRY(select_variants(e));
    VK_TRY(command_for(e, first, count, false, &cmd));
    clear_records(e, first, count);
    if (e->pending_hi <= e->pending_lo) {
      e->pending_lo = first, e->pending_hi = first + count;
    } else {
      if (first < e->pending_lo) e->pending_lo = first;
      if (first + count > e->pending_hi) e->pending_hi = first + count;
    }
  }
  return vk_submit_compute_async(e->dev, cmd, sync); /* no work: a signal only */
}
