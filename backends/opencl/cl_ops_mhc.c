/* OpenCL lowering of the mHC ops: hc_expand (a strided copy), hc_pre and hc_head (the mix
 * projection as a GEMM plus a row norm, or on CPU drivers hc_pre_mix's slices with their sums
 * of squares; per-token finish with Sinkhorn, weighted collapse),
 * hc_post and sinkhorn (shaders mhc.cl, gemm.cl, engram.cl, elementwise.cl). */
#include "cl_ops.h"

/* Every operand and result of the mHC ops is float. */
static int all_float(const vnrt_backend_graph *g, const vnrt_backend_node *node) {
  for (int32_t i = 0; i < node->n_inputs; ++i) {
    if (!cl_is_float(cl_q_in(g, node, i)->dtype)) return 0;
  }
  for (int32_t i = 0; i < node->n_outputs; ++i) {
    if (!cl_is_float(cl_q_out(g, node, i)->dtype)) return 0;
  }
  return 1;
}

int cl_hc_expand_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                          const vnrt_backend_node *node) {
  const vnrt_tensor_type *X = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  return all_float(g, node) && X->rank >= 1 && o->rank >= 2 && X->dtype == o->dtype &&
         o->dims[o->rank - 1] == X->dims[X->rank - 1];
}

int cl_sinkhorn_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                         const vnrt_backend_node *node) {
  const vnrt_tensor_type *X = cl_q_in(g, node, 0);
  return all_float(g, node) && X->rank >= 2 && X->dims[X->rank - 1] == X->dims[X->rank - 2];
}

int cl_hc_post_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                        const vnrt_backend_node *node) {
  return all_float(g, node) && cl_q_in(g, node, 0)->rank >= 2;
}

/* hc_pre and hc_head: X[..., n, C], the mix weights fn[rows, n·C], base (at least n_base
 * values) and scale (at least rows). */
static int mix_supports(const vnrt_backend_graph *g, const vnrt_backend_node *node, int pre) {
  const vnrt_tensor_type *X = cl_q_in(g, node, 0);
  if (!all_float(g, node) || X->rank < 2) return 0;
  int64_t n = X->dims[X->rank - 2], C = X->dims[X->rank - 1];
  int64_t rows = pre ? (n + 2) * n : n;
  return vnrt_numel(cl_q_in(g, node, 1)) == rows * n * C &&
         vnrt_numel(cl_q_in(g, node, 2)) >= (pre ? 3 : 1) &&
         vnrt_numel(cl_q_in(g, node, 3)) >= rows;
}

int cl_hc_pre_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  return mix_supports(g, node, 1);
}

int cl_hc_head_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                        const vnrt_backend_node *node) {
  return mix_supports(g, node, 0);
}

vnrt_status cl_hc_expand_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0), *o = cl_out_type(L, 0);
  int64_t C = x->dims[x->rank - 1], n = o->dims[o->rank - 2];
  int64_t T = C > 0 ? vnrt_numel(x) / C : 0;
  int64_t dims[4] = {1, T, n, C}, ss[4] = {0, C, 0, 1}, ds[4] = {0, n * C, C, 1};
  int64_t total = T * n * C;
  cl_launch k;
  cl_launch_begin(L, "copy_strided", &k);
  cl_arg_in(&k, 0);
  cl_arg_out(&k, 0);
  cl_arg_i32(&k, (int32_t)vnrt_dtype_size(o->dtype));
  cl_arg_i64(&k, total);
  cl_arg_long4(&k, dims);
  cl_arg_long4(&k, ss);
  cl_arg_i64(&k, 0);
  cl_arg_long4(&k, ds);
  cl_arg_i64(&k, 0);
  return cl_launch_1d(&k, total);
}

/* dot[t, r] = fn[r]·X[t] (a GEMM into scratch) and inv[t] = rsqrt(mean(X[t]^2) + norm_eps). */
static vnrt_status launch_mix(cl_lower *L, int64_t T, int64_t nc, int64_t rows, uint64_t dot,
                              uint64_t inv, double norm_eps) {
  vnrt_status s = cl_lower_gemm_nt_to_scratch(L, 0, 1, T, rows, nc, dot);
  if (s != VNRT_OK) return s;
  cl_launch k;
  cl_launch_begin(L, "short_conv_scale", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, inv);
  cl_arg_i64(&k, nc);
  cl_arg_f32(&k, (float)norm_eps);
  return cl_launch_rows(&k, T, CL_REDUCE_WG);
}

/* hc_pre_mix (mhc.cl): part[t, s, :] = the partial dots of fn's rows with X[t] and X[t]'s
 * partial sum of squares over the s-th of S slices of the nc inputs. Work-groups of up to 4
 * items, at least 8 groups where there are items for them, so that a CPU driver's threads
 * share the rows evenly (and one descheduled thread leaves a small tail). */
static vnrt_status launch_mix_split(cl_lower *L, int64_t T, int64_t nc, int64_t rows, int32_t S,
                                    uint64_t part) {
  cl_launch k;
  cl_launch_begin(L, "hc_pre_mix", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_in_dt(&k, 1);
  cl_arg_scratch(&k, part);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)rows);
  cl_arg_i64(&k, nc);
  cl_arg_i32(&k, S);
  const int64_t n0 = (rows + 3) / 4 * S;
  size_t want = 4;
  while (want > 1 && (size_t)(n0 * T) < 8 * want) want /= 2;
  return cl_launch_2d_wg(&k, n0, T, want);
}

static vnrt_status launch_collapse(cl_lower *L, int64_t T, int64_t n, int64_t C, uint64_t w_off) {
  cl_launch k;
  cl_launch_begin(L, "hc_collapse", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, w_off);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_i64(&k, C);
  return cl_launch_2d(&k, C, T);
}

/* hc_pre (pre = 1: also the post and comb outputs) and hc_head. */
static vnrt_status lower_pre_head(cl_lower *L, int pre) {
  const vnrt_op_params *p = L->node->params;
  const vnrt_tensor_type *X = cl_in_type(L, 0);
  int64_t n = X->dims[X->rank - 2], C = X->dims[X->rank - 1];
  int64_t T = n * C > 0 ? vnrt_numel(X) / (n * C) : 0;
  if (T == 0) return VNRT_OK;
  int64_t rows = pre ? (n + 2) * n : n;
  float eps = (float)(pre ? p->hc_pre.eps : p->hc_head.eps);
  double norm_eps = pre ? p->hc_pre.norm_eps : p->hc_head.norm_eps;
  /* On CPU drivers, where X's rows are whole 16-lane vectors, hc_pre's projection and sum of
   * squares are hc_pre_mix's S partial sums a token (hc_pre_collapse adds them): on PoCL it
   * beat the GEMM (vec) plus the row reduction at every T timed, 4 to 128 (V4, C = 1024).
   * S = 8 slices for up to 16 tokens, fewer for more (T·S <= 128: the items are there
   * anyway, and the partials' scratch stays small). "CPU driver" as for the work-group sizes
   * (device type software), and not under VNRT_CL_LOCAL_MEM=dedicated, which asks for the GPU
   * kernels: GPUs (even those whose local memory is global) take the GEMM and the row
   * reduction. */
  int32_t S = 0; /* 0: not split */
  if (pre && (n * C) % 16 == 0 && L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE &&
      !L->dev->desc->local_mem_dedicated) {
    S = 8;
    while (S > 1 && ((n * C) % (16 * S) != 0 || T * S > 128)) S /= 2;
  }
  uint64_t mix = cl_scratch(L, (uint64_t)(T * (S > 0 ? S * (rows + 1) : rows)) * 4);
  uint64_t inv = cl_scratch(L, (uint64_t)T * 4);
  vnrt_status s = S > 0 ? launch_mix_split(L, T, n * C, rows, S, mix)
                        : launch_mix(L, T, n * C, rows, mix, inv, norm_eps);
  if (s != VNRT_OK) return s;
  cl_launch k;
  if (pre) {
    /* The finish and the collapse in one launch (hc_pre_collapse). */
    uint64_t lt = cl_scratch(L, (uint64_t)(T * n * n) * 4);
    cl_launch_begin(L, "hc_pre_collapse", &k);
    cl_arg_scratch(&k, mix);
    cl_arg_scratch(&k, inv);
    cl_arg_in_dt(&k, 2);
    cl_arg_in_dt(&k, 3);
    cl_arg_out_dt(&k, 1);
    cl_arg_out_dt(&k, 2);
    cl_arg_scratch(&k, lt);
    cl_arg_in_dt(&k, 0);
    cl_arg_out_dt(&k, 0);
    cl_arg_i64(&k, T);
    cl_arg_i32(&k, (int32_t)n);
    cl_arg_i32(&k, p->hc_pre.iters);
    cl_arg_f32(&k, eps);
    cl_arg_i64(&k, C);
    cl_arg_i32(&k, S);
    cl_arg_f32(&k, (float)norm_eps);
    /* On CPU drivers 16 channels an item where C allows, in groups of up to 8 (V4's C = 1024:
     * 8 groups a token, each working out the pre weights once). */
    const int v16 = S > 0 && C % 16 == 0;
    cl_arg_i32(&k, v16);
    cl_arg_local(&k, (size_t)n * sizeof(float));
    return cl_launch_2d_wg(&k, v16 ? C / 16 : C, T, v16 ? 8 : 64);
  }
  uint64_t w = cl_scratch(L, (uint64_t)(T * n) * 4); /* hc_head's weights of the n streams */
  cl_launch_begin(L, "hc_head_finish", &k);
  cl_arg_scratch(&k, mix);
  cl_arg_scratch(&k, inv);
  cl_arg_in_dt(&k, 2);
  cl_arg_in_dt(&k, 3);
  cl_arg_scratch(&k, w);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_f32(&k, eps);
  s = cl_launch_1d(&k, T);
  if (s != VNRT_OK) return s;
  return launch_collapse(L, T, n, C, w);
}

vnrt_status cl_hc_pre_lower(cl_lower *L) { return lower_pre_head(L, 1); }

vnrt_status cl_hc_head_lower(cl_lower *L) { return lower_pre_head(L, 0); }

vnrt_status cl_hc_post_lower(cl_lower *L) {
  const vnrt_tensor_type *X = cl_in_type(L, 0);
  int64_t n = X->dims[X->rank - 2], C = X->dims[X->rank - 1];
  int64_t T = n * C > 0 ? vnrt_numel(X) / (n * C) : 0;
  /* Whole vectors of 16 channels: the kernel that loads and stores them at once. */
  const int v16 = C % 16 == 0;
  cl_launch k;
  cl_launch_begin(L, v16 ? "hc_post16" : "hc_post", &k);
  for (int32_t i = 0; i < 4; ++i) cl_arg_in_dt(&k, i);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_i64(&k, C);
  return cl_launch_2d(&k, v16 ? C / 16 : C, T * n);
}

vnrt_status cl_sinkhorn_lower(cl_lower *L) {
  const vnrt_sinkhorn_params *p = &L->node->params->sinkhorn;
  const vnrt_tensor_type *Lt = cl_in_type(L, 0);
  int64_t n = Lt->dims[Lt->rank - 1];
  int64_t batch = n > 0 ? vnrt_numel(Lt) / (n * n) : 0;
  if (batch == 0) return VNRT_OK;
  uint64_t work = cl_scratch(L, (uint64_t)(batch * n * n) * 4);
  cl_launch k;
  cl_launch_begin(L, "sinkhorn", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_scratch(&k, work);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, batch);
  cl_arg_i32(&k, (int32_t)n);
  cl_arg_i32(&k, p->iters);
  cl_arg_f32(&k, (float)p->eps);
  return cl_launch_1d(&k, batch);
}
