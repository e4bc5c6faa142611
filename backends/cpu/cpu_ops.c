/* What the CPU backend runs: one row per op of VNRT_OP_LIST, its reference kernel and its fast
 * kernel (or NULL).
 *
 * The fast kernels are listed by hand; an op without one runs its reference kernel in both
 * kernel modes. Every op's reference kernel comes from the X-macro, so an op without one is a
 * link error rather than a silent hole. All references are strong: they pull every kernel's
 * object out of the static library (libvnrt.a) into any program that links the backend. */
#include "cpu_kernels.h"

const cpu_op_kernels cpu_op_table[VNRT_OP_COUNT] = {
    /* matmul with a quantized b runs the reference kernel; linear's e4m3/e2m1 weights are
     * decoded in registers or in panels (fast_quant.c). embedding has no fast kernel. */
    [VNRT_OP_MATMUL].fast = cpu_fast_matmul,                     /* fast_linalg.c */
    [VNRT_OP_LINEAR].fast = cpu_fast_linear,                     /* fast_linalg.c, fast_quant.c */
    [VNRT_OP_ATTENTION].fast = cpu_fast_attention,               /* fast_attention.c */
    [VNRT_OP_HC_PRE].fast = cpu_fast_hc_pre,                     /* fast_mhc.c */
    [VNRT_OP_HC_POST].fast = cpu_fast_hc_post,                   /* fast_mhc.c */
    [VNRT_OP_HC_HEAD].fast = cpu_fast_hc_head,                   /* fast_mhc.c */
    [VNRT_OP_HC_EXPAND].fast = cpu_fast_hc_expand,               /* fast_mhc.c */
    [VNRT_OP_MOE_FFN].fast = cpu_fast_moe_ffn,                   /* fast_moe.c, fast_quant.c */
    [VNRT_OP_SHORT_CONV].fast = cpu_fast_short_conv,             /* fast_engram.c */
    [VNRT_OP_SPARSE_ATTENTION].fast = cpu_fast_sparse_attention, /* fast_attention.c */
    [VNRT_OP_INDEX_SCORES].fast = cpu_fast_index_scores,         /* fast_v4.c */
    [VNRT_OP_KV_COMPRESS].fast = cpu_fast_kv_compress,           /* fast_v4.c */
    [VNRT_OP_GROUPED_LINEAR].fast = cpu_fast_grouped_linear,     /* fast_v4.c, fast_quant.c */
    /* The memory-bound ops between the GEMMs (fast_rows.c). */
    [VNRT_OP_RMS_NORM].fast = cpu_fast_rms_norm,
    [VNRT_OP_SOFTMAX].fast = cpu_fast_softmax,
    [VNRT_OP_ADD].fast = cpu_fast_add,
    [VNRT_OP_SUB].fast = cpu_fast_sub,
    [VNRT_OP_MUL].fast = cpu_fast_mul,
    [VNRT_OP_DIV].fast = cpu_fast_div,
    [VNRT_OP_SWIGLU].fast = cpu_fast_swiglu,
    [VNRT_OP_SILU].fast = cpu_fast_silu,
    [VNRT_OP_SIGMOID].fast = cpu_fast_sigmoid,
    [VNRT_OP_EXP].fast = cpu_fast_exp,
    [VNRT_OP_SCALE].fast = cpu_fast_scale,
    [VNRT_OP_CAST].fast = cpu_fast_cast,
    [VNRT_OP_ROPE].fast = cpu_fast_rope,
    [VNRT_OP_HADAMARD].fast = cpu_fast_hadamard,
    [VNRT_OP_FAKE_QUANT].fast = cpu_fast_fake_quant,
#define CPU_REF_ROW_(ID, name, min_in, max_in, n_out) [VNRT_OP_##ID].ref = cpu_ref_##name,
    VNRT_OP_LIST(CPU_REF_ROW_)
#undef CPU_REF_ROW_
};

cpu_kernel_fn cpu_op_kernel(vnrt_op op, vnrt_kernel_mode mode) {
  if ((int)op < 0 || op >= VNRT_OP_COUNT) return NULL;
  const cpu_op_kernels *k = &cpu_op_table[op];
  return mode == VNRT_KERNELS_FAST && k->fast ? k->fast : k->ref;
}
