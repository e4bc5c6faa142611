/* Reference kernels of the DeepSeek-V4 attention ops (docs/ops.md, "DeepSeek-V4 attention"). */
#include "cpu_kernels.h"

static vnrt_status not_yet(const cpu_kernel_args *a) {
  return a->host->error(a->host->core, VNRT_ERROR_UNSUPPORTED, "%s '%s': not implemented yet",
                        vnrt_op_name(a->node->op), a->node->name);
}

vnrt_status cpu_ref_kv_compress(const cpu_kernel_args *a) { return not_yet(a); }
vnrt_status cpu_ref_kv_scatter(const cpu_kernel_args *a) { return not_yet(a); }
vnrt_status cpu_ref_index_scores(const cpu_kernel_args *a) { return not_yet(a); }
vnrt_status cpu_ref_sparse_attention(const cpu_kernel_args *a) { return not_yet(a); }
vnrt_status cpu_ref_grouped_linear(const cpu_kernel_args *a) { return not_yet(a); }
