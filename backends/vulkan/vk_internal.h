/* Private to the Vulkan backend: the objects every file of backends/vulkan shares (instance
 * state, physical device capabilities, logical device, buffers, compiled execs) and the
 * functions each file offers the others. */
#ifndef VNRT_BACKENDS_VULKAN_INTERNAL_H_
#define VNRT_BACKENDS_VULKAN_INTERNAL_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <vulkan/vulkan.h>

#include "vnrt/backend.h"
#include "vnrt/backend_util.h"

/* ---- Binding layout shared with shaders/vulkan/common.glsl ---------------------------- */
enum {
  VK_SLOT_IN0 = 0,     /* inputs: slots 0..4 */
  VK_SLOT_OUT0 = 5,    /* outputs: slots 5..7 */
  VK_SLOT_SCRATCH = 8, /* per-exec scratch */
  VK_SLOT_ERR = 9,     /* the node's error record */
  VK_SLOT_CONST = 10,  /* host-prepared constants */
  VK_NUM_SLOTS = 11,
};
/* Bindings VK_TEXEL_BINDING + 0, 1, 2, 3, after the storage buffers: uniform texel buffers over
 * slot 3's range (uvec4 texels, R32G32B32A32_UINT), slot 4's (bytes, R8_UINT), and two other
 * slots' (uvec4), for the dispatches that ask for them (texel3, texel4, texel_x, texel_y). On
 * llvmpipe a texel fetch is a branch-free gather, where a storage-buffer load is a loop over the
 * lanes with a bounds-check branch each (gemv.comp). */
#define VK_TEXEL_BINDING VK_NUM_SLOTS
#define VK_NUM_TEXEL 4
#define VK_TEXEL_BYTES 16
#define VK_NUM_SPEC 12    /* specialization constants 0..11 (common.glsl) */
#define VK_PUSH_BYTES 128 /* the push constant range every pipeline declares */
#define VK_ERR_RECORD_WORDS 8

/* Variant bits: which optional features a compiled shader uses (backends/vulkan/meson.build
 * compiles every shader for the combinations that matter to it). */
enum {
  VK_VARIANT_S16 = 1, /* 16-bit storage */
  VK_VARIANT_SG = 2,  /* subgroup arithmetic */
  VK_VARIANT_I64 = 4, /* shaderInt64 */
};

/* The shaders of shaders/vulkan, by file name: VK_SHADER_<NAME> and VK_SHADER_COUNT, generated
 * from the one shader list in backends/vulkan/meson.build. */
#include "vk_shader_ids.h" /* generated from backends/vulkan/meson.build */

typedef struct vk_spirv {
  vk_shader_id shader;
  uint32_t variant;
  const uint32_t *code;
  size_t bytes;
} vk_spirv;

/* ---- Instance and physical devices (vk_instance.c) ------------------------------------ */

typedef struct vk_phys {
  VkPhysicalDevice pd;
  VkPhysicalDeviceProperties props;
  VkPhysicalDeviceMemoryProperties mem;
  uint32_t queue_family;   /* a family with compute */
  uint32_t queue_count;    /* queues in that family */
  uint32_t timestamp_bits; /* that family's timestampValidBits: 0 = no timestamps */
  uint32_t copy_family;    /* a transfer-only family, UINT32_MAX if none */
  bool has_copy_queue;     /* a transfer-only family exists */
  /* Features, as probed. */
  bool storage16, float16, int8, int64, subgroup_arith, timeline;
  bool timeline_core;      /* timeline semaphores are core (1.2), not VK_KHR_timeline_semaphore */
  bool portability_subset; /* VK_KHR_portability_subset must be enabled */
  uint32_t subgroup_size;
  uint32_t device_type_rank; /* for ordering: higher first */
  uint64_t device_local_bytes;
  vnrt_backend_device_info info;
} vk_phys;

/* VNRT_VK_COPY_QUEUE: the copy stream's queue by capability (unset), none ("0"), or the
 * compute queue itself ("shared": how a one-queue device exercises the copy-queue path). */
typedef enum vk_copy_pref {
  VK_COPY_PREF_AUTO,
  VK_COPY_PREF_OFF,
  VK_COPY_PREF_SHARED,
} vk_copy_pref;

typedef struct vk_state {
  const vnrt_backend_host *host;
  VkInstance instance;
  VkDebugUtilsMessengerEXT messenger;
  PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger;
  bool validation;    /* the Khronos validation layer is enabled */
  bool baseline;      /* VNRT_VK_BASELINE=1: no optional features */
  bool force_staging; /* VNRT_VK_FORCE_STAGING=1: never map device memory */
  vk_copy_pref copy_pref;
  uint32_t n_phys;
  vk_phys *phys;
} vk_state;

/* ---- Memory (vk_memory.c) -------------------------------------------------------------- */

typedef struct vk_block vk_block;

typedef struct vk_allocator {
  vk_block *blocks;
  uint32_t n_allocations; /* live VkDeviceMemory objects (maxMemoryAllocationCount) */
  uint64_t heap_used[VK_MAX_MEMORY_HEAPS];
  uint32_t device_type; /* memory type for buffers, UINT32_MAX if none */
  uint32_t host_type;   /* host-visible type for staging and the aux buffer */
  bool device_mapped;   /* buffers of device_type are mapped (zero-copy) */
  uint64_t block_bytes; /* size of a shared block */
} vk_allocator;

/* Byte ranges [lo, hi) of a buffer known to hold no e4m3 NaN code: no byte has its low 7 bits
 * all set (vk_clean.c). */
typedef struct vk_span {
  uint64_t lo, hi;
} vk_span;
typedef struct vk_clean {
  vk_span *r; /* sorted, disjoint, not touching */
  int32_t n, cap;
  uint64_t gen;     /* bumped whenever the ranges change */
  uint64_t add_gen; /* bumped whenever a range is added */
  bool untracked;   /* its host address was handed out: writes through it are not seen */
  /* Dispatches of live compiled graphs that may skip the NaN test reading its bytes: while
   * there are any, its host address is not handed out (vk_clean_hand_out). */
  int32_t readers;
} vk_clean;

struct vnrt_backend_buffer {
  VkBuffer buffer;
  vk_clean clean; /* under the device's clean_lock */
  vk_block *block;
  uint64_t mem_offset; /* within the block */
  uint64_t mem_bytes;  /* reserved in the block */
  uint64_t size;       /* bytes the caller asked for */
  uint64_t vk_size;    /* the VkBuffer's size: size rounded up to 256 */
  uint8_t *host;       /* mapped address, or NULL */
};

/* ---- Device (vk_device.c) -------------------------------------------------------------- */

typedef struct vk_pipeline_entry {
  vk_shader_id shader;
  uint32_t spec[VK_NUM_SPEC];
  VkPipeline pipeline;
} vk_pipeline_entry;

/* The copy stream's queue (vk_copy.c), chosen by capability when the device is opened. */
typedef enum vk_copy_mode {
  VK_COPY_NONE,     /* staged copies go on the compute queue, each waited for with a fence */
  VK_COPY_TRANSFER, /* a queue of a transfer-only family */
  VK_COPY_SECOND,   /* queue 1 of the compute family */
  VK_COPY_SHARED,   /* the compute queue itself (VNRT_VK_COPY_QUEUE=shared) */
} vk_copy_mode;

#define VK_COPY_SLOTS 2 /* staging chunks in flight: one is filled while the other copies */

/* One staging chunk and the command buffer that copies it. */
typedef struct vk_copy_slot {
  vnrt_backend_buffer *staging;
  VkCommandBuffer cmd;
  VkFence fence;  /* VK_COPY_NONE: signalled by the slot's submit */
  uint64_t value; /* else: the copy timeline value its last submit signals */
  bool pending;   /* submitted and not yet waited for: the staging memory is the device's */
} vk_copy_slot;

/* Timelines: every staged copy signals the next value of `copy_timeline`; every run signals
 * the next value of `compute_timeline`. A run waits for the last copy value submitted, a copy
 * that reads a device buffer for the last compute value submitted. The *_published values are
 * stored after the submit that signals them, so a wait never precedes its signal. */
typedef struct vk_copy {
  vk_copy_mode mode;
  const char *why; /* VK_COPY_NONE: the reason, for the log line */
  uint32_t family; /* the copy queue's family */
  uint32_t index;  /* the copy queue's index in it */
  VkQueue queue;   /* == the device's compute queue for NONE and SHARED */
  VkCommandPool pool;
  vk_copy_slot slots[VK_COPY_SLOTS];
  uint32_t next_slot; /* async writes: the slot the next chunk takes (under staging_lock) */
  VkSemaphore copy_timeline, compute_timeline; /* NULL for VK_COPY_NONE */
  uint64_t copy_submitted;                     /* under staging_lock */
  uint64_t compute_submitted;                  /* under queue_lock */
  _Atomic uint64_t copy_published, compute_published;
  /* The last copy value of a synchronous write or read: async runs wait for it (they do not wait
   * for async copies beyond the one they name, which may be prefetches for later runs). */
  _Atomic uint64_t sync_copy_published;
  PFN_vkWaitSemaphores wait_semaphores; /* core or KHR entry points */
  PFN_vkGetSemaphoreCounterValue counter_value;
  PFN_vkSignalSemaphore signal_semaphore;
} vk_copy;

/* Threads: the executor's copy stream calls buffer_write/buffer_read on a host thread while
 * run() submits on the calling thread, so the queue, the staging path and the allocator each
 * have a lock. Lock order: staging_lock, then queue_lock, then mem_lock. */
struct vnrt_backend_device {
  pthread_mutex_t queue_lock;   /* vkQueueSubmit on `queue` (externally synchronized) */
  pthread_mutex_t staging_lock; /* the copy slots, and submits on a copy queue of its own */
  pthread_mutex_t mem_lock;     /* the suballocator */
  pthread_mutex_t clean_lock;   /* every buffer's clean ranges (taken alone, never nested) */
  int n_locks;                  /* how many of the four above are initialised (vk_device.c) */
  vk_state *state;
  const vnrt_backend_host *host;
  const vk_phys *phys;
  VkDevice device;
  VkQueue queue; /* the compute queue */
  vk_copy copy;
  uint32_t variant; /* VK_VARIANT_* bits this device runs */
  vk_allocator mem;
  vnrt_backend_buffer *dummy;             /* bound to slots a dispatch does not use */
  VkBufferView dummy_views[VK_NUM_TEXEL]; /* texel views of it, for the texel bindings */
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout pipeline_layout;
  VkPipelineCache pipeline_cache;
  char cache_path[1024]; /* "" when the on-disk cache is off */
  VkShaderModule modules[VK_SHADER_COUNT];
  vk_pipeline_entry *pipelines;
  int32_t n_pipelines, cap_pipelines;
  uint64_t min_offset_align; /* minStorageBufferOffsetAlignment, at least 4 */
};

/* ---- Compiled graphs (vk_exec.c) ------------------------------------------------------- */

typedef enum vk_view_kind {
  VK_VIEW_NONE = 0, /* unused slot: the dummy buffer */
  VK_VIEW_BUFFER,   /* a tensor or any backend buffer range */
  VK_VIEW_SCRATCH,  /* offset within the exec's scratch */
  VK_VIEW_CONST,    /* offset within the exec's constants */
} vk_view_kind;

typedef struct vk_view {
  vk_view_kind kind;
  vnrt_backend_buffer *buffer; /* VK_VIEW_BUFFER */
  uint64_t offset, range;
} vk_view;

/* What an op asks for: one compute dispatch. */
typedef struct vk_dispatch_desc {
  vk_shader_id shader;
  uint32_t spec[VK_NUM_SPEC];
  vk_view slots[VK_NUM_SLOTS];
  uint32_t push[VK_PUSH_BYTES / 4];
  uint32_t groups[3];
  bool texel3;    /* slot 3 also as the texel buffer at VK_TEXEL_BINDING (vk_texel_ok) */
  bool texel4;    /* slot 4 also as the byte texel buffer at VK_TEXEL_BINDING + 1 */
  int8_t texel_x; /* a slot (0 or VK_SLOT_SCRATCH for x) also at VK_TEXEL_BINDING + 2; -1 none */
  int8_t texel_y; /* a slot also at VK_TEXEL_BINDING + 3 (uvec4 texels); -1 none */
  /* >= 0: a second pipeline, with clean_bits set in spec[clean_spec], is run instead while
   * slot 3's range is known to hold no e4m3 NaN code (vk_clean.c; gemv.comp's SC0 bit 6) and
   * no dispatch of the same graph writes it; -1 (vk_desc_init): none. */
  int8_t clean_spec;
  uint32_t clean_bits;
} vk_dispatch_desc;

typedef struct vk_builder vk_builder; /* vk_exec.c: collects the dispatches of a graph */

/* For op code: the device, the graph, and helpers to describe dispatches. */
const vnrt_backend_host *vk_builder_host(vk_builder *b);
vnrt_backend_device *vk_builder_device(vk_builder *b);
const vnrt_backend_graph *vk_builder_graph(vk_builder *b);
/* Whether to record the kernels written for CPU devices (lavapipe: invocations are SIMD lanes
 * of a host thread, every buffer load a per-lane loop, a barrier a coroutine switch) rather
 * than those written for GPUs: by device type; VNRT_VK_CPU_KERNELS=0 forces the GPU kernels,
 * so that tests cover them on lavapipe (vk_ops_basic.c). */
bool vk_builder_cpu_kernels(vk_builder *b);
/* A view of tensor t of the graph (the dummy for an empty tensor). */
vk_view vk_tensor_view(vk_builder *b, int32_t t);
/* A fresh scratch range of `bytes` for the current node (freed when the node ends). */
vk_view vk_scratch_view(vk_builder *b, uint64_t bytes);
/* Constants for the current node: copied now, uploaded at the end of compilation. */
vnrt_status vk_const_view(vk_builder *b, const void *data, uint64_t bytes, vk_view *out);
/* Binds tensor t to slot (0..7) of d and sets the slot's dtype specialization constant. */
void vk_bind(vk_builder *b, vk_dispatch_desc *d, int slot, int32_t t);
/* Appends a dispatch to the current node; groups of zero add nothing. */
vnrt_status vk_emit(vk_builder *b, const vk_dispatch_desc *desc);
/* Appends a copy of `bytes` from tensor src to tensor dst (vkCmdCopyBuffer: on lavapipe a
 * memcpy on the queue's thread, where a dispatch wakes the driver's thread pool). */
vnrt_status vk_emit_copy(vk_builder *b, int32_t src, int32_t dst, uint64_t bytes);
/* A dense tensor copied to another of the same dtype and size as a buffer copy (dst's bytes);
 * nothing when the executor put both in the same place. */
vnrt_status vk_copy_same(vk_builder *b, int32_t src, int32_t dst);
/* Whether tensor t can be read as texels of `bytes` (16 at VK_TEXEL_BINDING, 1 at the next):
 * its offset a multiple of the device's texel buffer alignment and of `bytes`, and few enough
 * texels. */
bool vk_texel_ok(vk_builder *b, int32_t t, uint64_t bytes);
/* Splits `groups` workgroups into an x*y grid within the device's maxComputeWorkGroupCount. */
void vk_grid(vk_builder *b, uint64_t groups, uint32_t out[3]);

/* An empty dispatch of shader: every slot unused, slot dtypes f32 (vk_bind sets the real
 * ones), no push constants, no grid. */
void vk_desc_init(vk_dispatch_desc *d, vk_shader_id shader);
/* Whether a view (a tensor's or the scratch's) can be read as 16-byte texels. */
bool vk_texel_view_ok(vk_builder *b, const vk_view *v, uint64_t bytes);

/* ---- Ops (vk_ops_*.c) ------------------------------------------------------------------ */

static inline void vk_push_u(vk_dispatch_desc *d, int i, uint64_t v) { d->push[i] = (uint32_t)v; }
static inline void vk_push_f(vk_dispatch_desc *d, int i, double v) {
  float f = (float)v;
  memcpy(&d->push[i], &f, sizeof f);
}
static inline const vnrt_tensor_type *vk_in_type(const vnrt_backend_graph *g,
                                                 const vnrt_backend_node *n, int i) {
  return &g->tensors[n->inputs[i]].type;
}
static inline const vnrt_tensor_type *vk_out_type(const vnrt_backend_graph *g,
                                                  const vnrt_backend_node *n, int i) {
  return &g->tensors[n->outputs[i]].type;
}
static inline uint64_t vk_div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* Whether the device runs node as typed (docs/ops.md exactly, within the device's limits).
 * Writes why not into why (for a log line) when it returns 0. From the op table (vk_ops.c). */
int vk_op_supported(const vnrt_backend_device *device, const vnrt_backend_graph *graph,
                    const vnrt_backend_node *node, char *why, size_t why_size);
/* Describes node's dispatches through the builder (the op table's record function). */
vnrt_status vk_op_record(vk_builder *b, const vnrt_backend_graph *graph,
                         const vnrt_backend_node *node);

/* The two functions of an op in the op table (vk_ops.c): whether the device runs a node (0
 * with the reason in why), and the recording of its dispatches. `code` is the table's third
 * column: the OP specialization constant of a shader several ops share (unary.comp,
 * binary.comp), else 0. */
typedef int (*vk_supported_fn)(const vnrt_backend_device *device, const vnrt_backend_graph *g,
                               const vnrt_backend_node *node, char *why, size_t why_size);
typedef vnrt_status (*vk_record_fn)(vk_builder *b, const vnrt_backend_graph *g,
                                    const vnrt_backend_node *node, uint32_t code);
#define VK_SUPPORTED_FN(name)                                              \
  int name(const vnrt_backend_device *device, const vnrt_backend_graph *g, \
           const vnrt_backend_node *node, char *why, size_t why_size)
#define VK_RECORD_FN(name)                                                                    \
  vnrt_status name(vk_builder *b, const vnrt_backend_graph *g, const vnrt_backend_node *node, \
                   uint32_t code)

/* vk_ops_basic.c: elementwise, shape, linear algebra, norms, indexing, rope, hadamard. */
VK_SUPPORTED_FN(vk_sup_always);
VK_SUPPORTED_FN(vk_sup_elementwise);
VK_SUPPORTED_FN(vk_sup_transpose);
VK_SUPPORTED_FN(vk_sup_slice);
VK_SUPPORTED_FN(vk_sup_concat);
VK_SUPPORTED_FN(vk_sup_matmul);
VK_SUPPORTED_FN(vk_sup_linear);
VK_SUPPORTED_FN(vk_sup_rms_norm);
VK_SUPPORTED_FN(vk_sup_softmax);
VK_SUPPORTED_FN(vk_sup_rope);
VK_SUPPORTED_FN(vk_sup_embedding);
VK_SUPPORTED_FN(vk_sup_topk);
VK_SUPPORTED_FN(vk_sup_hc_expand);
VK_SUPPORTED_FN(vk_sup_kv_write);
VK_SUPPORTED_FN(vk_sup_hadamard);
VK_RECORD_FN(vk_rec_unary);
VK_RECORD_FN(vk_rec_binary);
VK_RECORD_FN(vk_rec_flat_copy);
VK_RECORD_FN(vk_rec_transpose);
VK_RECORD_FN(vk_rec_slice);
VK_RECORD_FN(vk_rec_concat);
VK_RECORD_FN(vk_rec_matmul);
VK_RECORD_FN(vk_rec_linear);
VK_RECORD_FN(vk_rec_rms_norm);
VK_RECORD_FN(vk_rec_softmax);
VK_RECORD_FN(vk_rec_rope);
VK_RECORD_FN(vk_rec_embedding);
VK_RECORD_FN(vk_rec_topk);
VK_RECORD_FN(vk_rec_hc_expand);
VK_RECORD_FN(vk_rec_kv_write);
VK_RECORD_FN(vk_rec_hadamard);

/* vk_ops_model.c: attention, mHC, MoE, Engram. */
VK_SUPPORTED_FN(vk_sup_attention);
VK_SUPPORTED_FN(vk_sup_hc_pre);
VK_SUPPORTED_FN(vk_sup_hc_head);
VK_SUPPORTED_FN(vk_sup_hc_post);
VK_SUPPORTED_FN(vk_sup_sinkhorn);
VK_SUPPORTED_FN(vk_sup_moe_route);
VK_SUPPORTED_FN(vk_sup_moe_hash_route);
VK_SUPPORTED_FN(vk_sup_moe_ffn);
VK_SUPPORTED_FN(vk_sup_ngram_hash);
VK_SUPPORTED_FN(vk_sup_engram_lookup);
VK_SUPPORTED_FN(vk_sup_engram_gate);
VK_SUPPORTED_FN(vk_sup_short_conv);
VK_RECORD_FN(vk_rec_attention);
VK_RECORD_FN(vk_rec_hc_pre);
VK_RECORD_FN(vk_rec_hc_head);
VK_RECORD_FN(vk_rec_hc_post);
VK_RECORD_FN(vk_rec_sinkhorn);
VK_RECORD_FN(vk_rec_moe_route);
VK_RECORD_FN(vk_rec_moe_hash_route);
VK_RECORD_FN(vk_rec_moe_ffn);
VK_RECORD_FN(vk_rec_ngram_hash);
VK_RECORD_FN(vk_rec_engram_lookup);
VK_RECORD_FN(vk_rec_engram_gate);
VK_RECORD_FN(vk_rec_short_conv);

/* vk_ops_v4.c: the DeepSeek-V4 attention ops. */
VK_SUPPORTED_FN(vk_sup_kv_compress);
VK_SUPPORTED_FN(vk_sup_kv_scatter);
VK_SUPPORTED_FN(vk_sup_index_scores);
VK_SUPPORTED_FN(vk_sup_sparse_attention);
VK_SUPPORTED_FN(vk_sup_grouped_linear);
VK_RECORD_FN(vk_rec_kv_compress);
VK_RECORD_FN(vk_rec_kv_scatter);
VK_RECORD_FN(vk_rec_index_scores);
VK_RECORD_FN(vk_rec_sparse_attention);
VK_RECORD_FN(vk_rec_grouped_linear);

/* vk_ops_quant.c: fake_quant, and the kernels of linear, matmul, embedding and moe_ffn with
 * quantized weights or act_quant (vk_quant_* say which nodes need them; the sup/rec functions
 * of those ops hand such nodes to the q* functions). */
VK_SUPPORTED_FN(vk_sup_fake_quant);
VK_RECORD_FN(vk_rec_fake_quant);
bool vk_quant_linear(const vnrt_backend_node *node);
bool vk_quant_matmul(const vnrt_backend_node *node);
bool vk_quant_embedding(const vnrt_backend_node *node);
bool vk_quant_moe_ffn(const vnrt_backend_node *node);
VK_SUPPORTED_FN(vk_sup_qlinear);
VK_SUPPORTED_FN(vk_sup_qmatmul);
VK_SUPPORTED_FN(vk_sup_qembedding);
VK_SUPPORTED_FN(vk_sup_qmoe_ffn);
VK_RECORD_FN(vk_rec_qlinear);
VK_RECORD_FN(vk_rec_qmatmul);
VK_RECORD_FN(vk_rec_qembedding);
VK_RECORD_FN(vk_rec_qmoe_ffn);

/* gemv.comp (vk_ops_quant.c), decode-sized products on CPU devices: whether it runs rows of L
 * values of weight tensor w_tensor (q: its quantization, NULL or plain for a float weight; read
 * as texels, vk_texel_ok) against x of dtype x; and linear's dispatch: y[M, N]
 * (M <= VK_GEMV_MMAX) = x W^T from input 0 (or x_scratch when not NULL: f32, or bf16 when
 * x_bf16, only if the scratch has texels), W input 1 [N, K]; grouped_linear: row n reads x
 * at (n / gn) K, rows of x xs apart (gn = 0: no groups, xs = K; gn a multiple of 16); y into
 * output 0, or into out (f32) when not NULL. */
#define VK_GEMV_MMAX 4u
bool vk_gemv_ok(vk_builder *b, vnrt_dtype x, int32_t w_tensor, const vnrt_quant_weight *q,
                uint64_t L);
vnrt_status vk_emit_gemv_linear(vk_builder *b, const vnrt_backend_node *node,
                                const vnrt_quant_weight *q, const vk_view *x_scratch, bool x_bf16,
                                uint64_t M, uint64_t N, uint64_t K, uint64_t gn, uint64_t xs,
                                const vk_view *out);

/* Finishes a GEMM dispatch whose slots, dtypes and matmul.comp push constants are set: picks
 * matvec.comp for a few rows of A against a B contiguous along k, else the tiled matmul.comp,
 * and sets the grid. */
vnrt_status vk_emit_gemm(vk_builder *b, vk_dispatch_desc *d, uint64_t M, uint64_t N, uint64_t batch,
                         bool b_k_contiguous);

/* ---- Functions each file offers -------------------------------------------------------- */

/* vk_instance.c */
vnrt_status vk_init(const vnrt_backend_host *host, void **out_state);
void vk_shutdown(void *state);
uint32_t vk_device_count(void *state);
vnrt_status vk_device_info(void *state, uint32_t index, vnrt_backend_device_info *out_info);
const char *vk_result_string(VkResult r);

/* vk_device.c */
vnrt_status vk_device_open(void *state, uint32_t index, vnrt_backend_device **out_device);
void vk_device_close(vnrt_backend_device *device);

/* vk_memory.c */
void vk_memory_init(vnrt_backend_device *device);
void vk_memory_destroy(vnrt_backend_device *device);
vnrt_status vk_buffer_create(vnrt_backend_device *device, uint64_t bytes, bool host_visible,
                             const char *what, vnrt_backend_buffer **out_buffer);
vnrt_status vk_buffer_alloc(vnrt_backend_device *device, uint64_t bytes,
                            vnrt_backend_buffer **out_buffer);
void vk_buffer_free(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
void *vk_buffer_host_ptr(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
vnrt_status vk_buffer_write(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                            uint64_t offset, const void *src, uint64_t bytes);
/* vk_clean.c: the ranges of a buffer known to hold no e4m3 NaN code. vk_clean_tracked: whether
 * the device keeps them (CPU devices, where gemv.comp runs); vk_clean_scan: whether bytes holds
 * none; begin_write: a write is about to change [offset, offset + bytes), which leaves the clean
 * ranges until note_write, after the write succeeded, scans src and adds the range back (or
 * keeps it out); add_readers: compiled dispatches that may skip the NaN test on the buffer's
 * bytes come (delta > 0) or go; hand_out: whether the buffer's host address may be handed out
 * (not while it has readers and is tracked), and if so the buffer is never clean again; the
 * _locked ones under device->clean_lock. */
bool vk_clean_tracked(const vnrt_backend_device *device);
bool vk_clean_scan(const void *src, uint64_t bytes);
void vk_clean_begin_write(vnrt_backend_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                          uint64_t bytes);
void vk_clean_note_write(vnrt_backend_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                         const void *src, uint64_t bytes);
void vk_clean_add_readers(vnrt_backend_device *device, vnrt_backend_buffer *buffer, int32_t delta);
bool vk_clean_hand_out(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
void vk_clean_free(vnrt_backend_device *device, vnrt_backend_buffer *buffer);
void vk_clean_sub_locked(const vnrt_backend_host *host, vk_clean *clean, uint64_t lo, uint64_t hi);
bool vk_clean_covers_locked(const vk_clean *clean, uint64_t lo, uint64_t hi);
vnrt_status vk_buffer_read(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                           uint64_t offset, void *dst, uint64_t bytes);
/* Makes host writes to a mapped buffer range visible to the device, and device writes visible
 * to the host (no-ops on coherent memory). */
void vk_buffer_flush(vnrt_backend_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                     uint64_t bytes);
void vk_buffer_invalidate(vnrt_backend_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                          uint64_t bytes);

/* vk_copy.c */
/* Picks the copy queue by capability and VNRT_VK_COPY_QUEUE (before the VkDevice exists). */
void vk_copy_choose(vnrt_backend_device *device);
/* The queue create infos for the compute queue and the chosen copy queue: returns how many
 * (1 or 2); priorities must hold 2 floats and outlive the infos. */
uint32_t vk_copy_queue_infos(const vnrt_backend_device *device, VkDeviceQueueCreateInfo out[2],
                             float *priorities);
/* Gets the queues, creates the copy pool, command buffers and timelines, and logs the choice. */
vnrt_status vk_copy_init(vnrt_backend_device *device);
void vk_copy_destroy(vnrt_backend_device *device);
/* Queue families that use buffers: 2 when the copy queue has its own family (buffers are then
 * created VK_SHARING_MODE_CONCURRENT over both), else 1. */
uint32_t vk_copy_families(const vnrt_backend_device *device, uint32_t out[2]);
/* Staged copies between host memory and a buffer that is not mapped. */
vnrt_status vk_copy_write(vnrt_backend_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                          const void *src, uint64_t bytes);
vnrt_status vk_copy_read(vnrt_backend_device *device, vnrt_backend_buffer *buffer, uint64_t offset,
                         void *dst, uint64_t bytes);
/* The buffer range check of buffer_write/read ("vulkan buffer_WHAT: ..."). */
vnrt_status vk_buffer_check(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                            uint64_t offset, uint64_t bytes, const char *what);

/* The optional async slots (backend.h, API 3), where the device has a copy queue (any mode but
 * VK_COPY_NONE): a timeline is a timeline semaphore. */
vnrt_status vk_timeline_create(vnrt_backend_device *device, vnrt_backend_timeline **out_timeline);
void vk_timeline_destroy(vnrt_backend_device *device, vnrt_backend_timeline *timeline);
vnrt_status vk_timeline_query(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                              uint64_t *out_value);
vnrt_status vk_timeline_wait(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                             uint64_t value, uint64_t timeout_ns);
vnrt_status vk_timeline_signal(vnrt_backend_device *device, vnrt_backend_timeline *timeline,
                               uint64_t value);
vnrt_status vk_buffer_write_async(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                  uint64_t offset, const void *src, uint64_t bytes,
                                  const vnrt_backend_sync *sync);
vnrt_status vk_buffer_read_async(vnrt_backend_device *device, vnrt_backend_buffer *buffer,
                                 uint64_t offset, void *dst, uint64_t bytes,
                                 const vnrt_backend_sync *sync);
/* Submits cmd (VK_NULL_HANDLE: none, a signal only) on the compute queue after sync's wait and
 * the last synchronous copy, signalling sync's value and the compute timeline; no fence. */
vnrt_status vk_submit_compute_async(vnrt_backend_device *device, VkCommandBuffer cmd,
                                    const vnrt_backend_sync *sync);
/* Waits for every run submitted (the compute timeline's last value). */
vnrt_status vk_wait_compute(vnrt_backend_device *device, const char *what);

/* Submits a run's cmd on the compute queue (waiting for the copy timeline, signalling the
 * compute timeline) and waits for fence. */
vnrt_status vk_submit_compute(vnrt_backend_device *device, VkCommandBuffer cmd, VkFence fence,
                              const char *what);

/* vk_pipeline.c */
vnrt_status vk_pipelines_init(vnrt_backend_device *device);
void vk_pipelines_destroy(vnrt_backend_device *device);
vnrt_status vk_pipeline_get(vnrt_backend_device *device, vk_shader_id shader,
                            const uint32_t spec[VK_NUM_SPEC], VkPipeline *out_pipeline);
/* The variant bits a shader is compiled for (from the embedded table). */
uint32_t vk_shader_variants(vk_shader_id shader);

/* vk_exec.c */
int vk_supports_node(vnrt_backend_device *device, const vnrt_backend_graph *graph, int32_t node);
vnrt_status vk_compile(vnrt_backend_device *device, const vnrt_backend_graph *graph,
                       vnrt_backend_exec **out_exec);
vnrt_status vk_run(vnrt_backend_exec *exec, int32_t first, int32_t count);
vnrt_status vk_run_timed(vnrt_backend_exec *exec, int32_t first, int32_t count, uint64_t *out_ns);
vnrt_status vk_run_async(vnrt_backend_exec *exec, int32_t first, int32_t count,
                         const vnrt_backend_sync *sync);
void vk_exec_destroy(vnrt_backend_exec *exec);

/* Returns from the calling function when expr fails (the detail is already recorded). */
#define VK_TRY(expr)                        \
  do {                                      \
    vnrt_status vk_try_ = (expr);           \
    if (vk_try_ != VNRT_OK) return vk_try_; \
  } while (0)

/* Records a Vulkan failure with the VkResult's name; out-of-memory results become
 * VNRT_ERROR_OUT_OF_MEMORY whatever status is passed. */
#define VK_FAIL(host, status, r, ...) vk_fail_((host), (status), (r), __VA_ARGS__)
vnrt_status vk_fail_(const vnrt_backend_host *host, vnrt_status status, VkResult r, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

#endif /* VNRT_BACKENDS_VULKAN_INTERNAL_H_ */
