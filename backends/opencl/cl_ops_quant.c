/* OpenCL lowering of the quantization ops (docs/ops.md): hadamard, fake_quant, and the products
 * and gathers of quantized weights (linear, matmul, embedding, moe_ffn; with act_quant), all by
 * vnrt's own kernels in shaders quant.cl. */
#include <math.h>
#include <string.h>

#include "cl_ops.h"

/* The largest row hadamard takes: its f32 copy lives in local memory. */
#define HADAMARD_MAX_D 65536

int cl_hadamard_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                         const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (!cl_is_float(x->dtype) || o->dtype != x->dtype || x->rank < 1 ||
      vnrt_numel(o) != vnrt_numel(x)) {
    return 0;
  }
  int64_t D = x->dims[x->rank - 1];
  return D >= 1 && (D & (D - 1)) == 0 && D <= HADAMARD_MAX_D &&
         (uint64_t)D * sizeof(float) <= dev->desc->local_mem;
}

vnrt_status cl_hadamard_lower(cl_lower *L) {
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t D = x->dims[x->rank - 1];
  int64_t rows = vnrt_numel(x) / D;
  if (rows == 0) return VNRT_OK;
  cl_launch k;
  cl_launch_begin(L, "hadamard", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  /* The CPU reference's scale: 1/sqrt(D) in double, rounded once to f32. */
  cl_arg_f32(&k, (float)(1.0 / sqrt((double)D)));
  cl_arg_local(&k, sizeof(float) * (size_t)D);
  /* A fixed work-group size, as the reductions use: PoCL compiles a kernel per local size. */
  size_t wg = cl_launch_wg(&k, CL_REDUCE_WG);
  size_t items = (size_t)rows * wg;
  return cl_launch_end(&k, 1, &items, &wg);
}

/* ---- fake_quant and quantized weights ------------------------------------------------- */

/* The kernels take dtypes as vnrt_dtype's values (common.cl's DT_*). */
_Static_assert(VNRT_F32 == 1 && VNRT_F16 == 2 && VNRT_BF16 == 3 && VNRT_E4M3 == 5 &&
                   VNRT_E8M0 == 6 && VNRT_E2M1 == 7,
               "common.cl's DT_* codes are vnrt_dtype's values");

/* The weight kernels decode scales of 2^-127 and products below 2^-126 as subnormals, and
 * fake_quant's e2m1 scales reach 2^-126 (its quotients lower): a device that flushes
 * subnormals would round them to zero, so it leaves these nodes to the CPU. */
static int keeps_subnormals(const vnrt_backend_device *dev) { return dev->desc->denormals; }

static int is_codes(vnrt_dtype dt) { return dt == VNRT_E4M3 || dt == VNRT_E2M1; }

/* A weight operand the kernels take: float, or e4m3/e2m1 codes (rank >= 2, logical dims)
 * whose e8m0 scale input graph building checked against the block. */
static int weight_ok(const vnrt_backend_graph *g, const vnrt_backend_node *node, int32_t input,
                     const vnrt_quant_weight *q) {
  const vnrt_tensor_type *w = cl_q_in(g, node, input);
  if (!is_codes(w->dtype)) return cl_is_float(w->dtype) && q->scale_input < 0;
  if (q->codes != w->dtype || q->block[0] < 1 || q->block[1] < 1 || q->scale_input < 0 ||
      q->scale_input >= node->n_inputs || w->rank < 2) {
    return 0;
  }
  const vnrt_tensor_type *s = cl_q_in(g, node, q->scale_input);
  int64_t R = w->dims[w->rank - 2], C = w->dims[w->rank - 1];
  int64_t lead = R * C > 0 ? vnrt_numel(w) / (R * C) : 0;
  /* e2m1 rows are whole bytes (C even), so element i's byte is i / 2 in any row. */
  if (s->dtype != VNRT_E8M0 || (w->dtype == VNRT_E2M1 && C % 2 != 0)) return 0;
  return vnrt_numel(s) ==
         lead * ((R + q->block[0] - 1) / q->block[0]) * ((C + q->block[1] - 1) / q->block[1]);
}

/* Adds a QWEIGHT argument (quant.cl): input `input` with its scale and block. */
static void arg_qweight(cl_launch *k, int32_t input, const vnrt_quant_weight *q) {
  const vnrt_tensor_type *w = cl_in_type(k->L, input);
  cl_arg_in(k, input);
  cl_arg_i32(k, (int32_t)w->dtype);
  cl_arg_opt_in(k, is_codes(w->dtype) ? q->scale_input : INT32_MAX);
  cl_arg_i32(k, is_codes(w->dtype) ? q->block[0] : 1);
  cl_arg_i32(k, is_codes(w->dtype) ? q->block[1] : 1);
}

/* Whether the lane-summed kernels (qrow_dot_lanes, quant.cl) take rows of K codes of dt whose
 * scale blocks span b1 columns: whole 16-code vectors for e4m3, 32-code pairs for e2m1. */
static int lanes_ok(vnrt_dtype dt, int32_t b1, int64_t K) {
  if (dt == VNRT_E4M3) return K % 16 == 0 && b1 % 16 == 0;
  if (dt == VNRT_E2M1) return K % 32 == 0 && b1 % 32 == 0;
  return 0;
}

/* The fewest work-groups a CPU driver's kernel that quantizes x in each group should get:
 * four per core (compute unit), at least 8, so that a core another process takes for a while
 * leaves little of the launch waiting on it. */
static int64_t cpu_min_groups(const cl_lower *L) {
  int64_t g = 4 * (int64_t)L->dev->desc->info.compute_units;
  return g > 8 ? g : 8;
}

/* A 2-D launch of (n0, n1) items for the lane-summed kernels: each item reads whole rows, so
 * a CPU driver (PoCL runs a work-group's items in one thread) gets small work-groups, enough of
 * them to keep every core busy; other devices the usual 64. */
static vnrt_status launch_lanes(cl_launch *k, int64_t n0, int64_t n1) {
  int cpu = k->L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE;
  return cl_launch_2d_wg(k, n0, n1, cpu ? 16 : 64);
}

/* launch_lanes for the moe_ffn passes whose work-groups each quantize (or widen) x into local
 * memory first (moe_ffn_up_e2m1x4 / _down_e2m1x4 and the _aq kernels): on a CPU driver the
 * largest work-groups, up to 64 items, that still leave cpu_min_groups of them, so fewer
 * groups repeat that work (a decode's up pass on 2 cores: 12 groups instead of 48, each
 * quantizing the token's 1024 channels; the down pass 8 instead of 16). Same items, same
 * sums. */
static vnrt_status launch_lanes_x(cl_launch *k, int64_t n0, int64_t n1) {
  if (k->L->dev->desc->info.type != VNRT_DEVICE_TYPE_SOFTWARE) return launch_lanes(k, n0, n1);
  int64_t want = 64, min_groups = cpu_min_groups(k->L);
  while (want > 16 && ((n0 + want - 1) / want) * (n1 > 0 ? n1 : 0) < min_groups) want /= 2;
  return cl_launch_2d_wg(k, n0, n1, (size_t)want);
}

/* Whether the fused kernels (qgemv_lanes_aq, moe_ffn_up_aq/_down_aq: quant.cl) can take x rows
 * of K channels for weights of dt: the work-group keeps the row as f32 in local memory,
 * fake-quantized per aq channels (aq 0: only widened). */
static int lanes_aq_ok(const cl_lower *L, vnrt_dtype dt, int64_t K, int32_t aq) {
  const int64_t unit = dt == VNRT_E2M1 ? 32 : 16; /* e2m1: x stored 32 channels at a time */
  return K % unit == 0 && aq % unit == 0 && (uint64_t)K * 4 <= L->dev->desc->local_mem / 2;
}

/* The product of x's rows (input 0, in its own dtype) with weight input 1 in one launch,
 * act_quant done on x by each work-group as it loads it (qgemv_lanes_aq): a decode step's
 * linears are one launch each instead of a fake_quant (or widening) launch and the product. */
static vnrt_status launch_lanes_aq(cl_lower *L, const vnrt_quant_weight *q, int32_t aq, int64_t M,
                                   int64_t N, int64_t K, int64_t G) {
  /* e4m3 rows four per work-item (qgemv4_e4m3_aq): each load of x serves four rows. */
  const int x4 = cl_in_type(L, 1)->dtype == VNRT_E4M3;
  cl_launch k;
  cl_launch_begin(L, x4 ? "qgemv4_e4m3_aq" : "qgemv_lanes_aq", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_i32(&k, aq);
  arg_qweight(&k, 1, q);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, M);
  cl_arg_i64(&k, N);
  cl_arg_i64(&k, K);
  cl_arg_i64(&k, G);
  cl_arg_local(&k, (size_t)K * sizeof(float));
  /* Each work-group quantizes its x row once for all its rows of w: on a CPU driver groups of
   * up to 128 rows that leave cpu_min_groups groups (the M rows of x counted), at least 16
   * rows (on 2 cores: wq_b [4096, 512] 32 groups instead of 64, the shared expert's
   * [256, 1024] 8 of 32 rows instead of 16 of 16). */
  int cpu = L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE;
  size_t rows = 64, per_item = x4 ? 4 : 1;
  if (cpu) {
    const int64_t min_groups = cpu_min_groups(L);
    rows = 128;
    while (rows > 16 && ((N + (int64_t)rows - 1) / (int64_t)rows) * M < min_groups) rows /= 2;
  }
  return cl_launch_2d_wg(&k, (N + (int64_t)per_item - 1) / (int64_t)per_item, M,
                         x4 && !cpu ? 64 : rows / per_item);
}

/* Appends fake_quant over x[rows, D] (x: input x_input, or f32 scratch at x_scratch when
 * x_input < 0) into f32 scratch at o_scratch (o_scratch == UINT64_MAX: output 0), channels
 * [start, start + nb·block), rows first multiplied by input mul_input when >= 0. */
static vnrt_status launch_fake_quant(cl_lower *L, int32_t x_input, uint64_t x_scratch,
                                     int32_t mul_input, uint64_t o_scratch, int64_t rows, int64_t D,
                                     int64_t start, int64_t nb, int32_t block, vnrt_dtype fmt) {
  if (rows == 0 || D == 0) return VNRT_OK;
  cl_launch k;
  cl_launch_begin(L, "fake_quant", &k);
  if (x_input >= 0) {
    cl_arg_in_dt(&k, x_input);
  } else {
    cl_arg_scratch(&k, x_scratch);
    cl_arg_i32(&k, VNRT_F32);
  }
  if (mul_input >= 0) {
    cl_arg_in_dt(&k, mul_input);
  } else {
    cl_arg_opt_in_dt(&k, INT32_MAX);
  }
  cl_arg_i32(&k, mul_input >= 0);
  if (o_scratch == UINT64_MAX) {
    cl_arg_out_dt(&k, 0);
  } else {
    cl_arg_scratch(&k, o_scratch);
    cl_arg_i32(&k, VNRT_F32);
  }
  cl_arg_i64(&k, rows);
  cl_arg_i64(&k, D);
  cl_arg_i64(&k, start);
  cl_arg_i64(&k, nb);
  cl_arg_i32(&k, block);
  cl_arg_i32(&k, (int32_t)fmt);
  /* An item quantizes a whole block, serially: on a CPU driver (which runs a work-group in
   * one thread) one item per work-group spreads a row's few blocks over the cores. */
  if (L->dev->desc->info.type == VNRT_DEVICE_TYPE_SOFTWARE) {
    size_t items[2] = {(size_t)(nb + 1), (size_t)rows}, lws[2] = {1, 1};
    return cl_launch_end(&k, 2, items, lws);
  }
  return cl_launch_2d(&k, nb + 1, rows);
}

int cl_fake_quant_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                           const vnrt_backend_node *node) {
  const vnrt_fake_quant_params *p = &node->params->fake_quant;
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *o = cl_q_out(g, node, 0);
  if (!keeps_subnormals(dev) || !cl_is_float(x->dtype) || !cl_is_float(o->dtype) || x->rank < 1 ||
      vnrt_numel(o) != vnrt_numel(x) || (p->fmt != VNRT_E4M3 && p->fmt != VNRT_E2M1)) {
    return 0;
  }
  int64_t D = x->dims[x->rank - 1];
  return p->block >= 1 && p->start >= 0 && p->len >= 0 && p->start + p->len <= D &&
         p->len % p->block == 0;
}

vnrt_status cl_fake_quant_lower(cl_lower *L) {
  const vnrt_fake_quant_params *p = &L->node->params->fake_quant;
  const vnrt_tensor_type *x = cl_in_type(L, 0);
  int64_t D = x->dims[x->rank - 1];
  int64_t rows = D > 0 ? vnrt_numel(x) / D : 0;
  return launch_fake_quant(L, 0, 0, -1, UINT64_MAX, rows, D, p->start, p->len / p->block, p->block,
                           p->fmt);
}

int cl_q_gemv_node(const vnrt_backend_node *node) {
  if (node->op == VNRT_OP_LINEAR) {
    return node->params->linear.act_quant != 0 || is_codes(node->params->linear.w.codes);
  }
  return node->op == VNRT_OP_MATMUL && is_codes(node->params->matmul.b.codes);
}

int cl_q_gemv_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                       const vnrt_backend_node *node) {
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *w = cl_q_in(g, node, 1);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  int linear = node->op == VNRT_OP_LINEAR;
  const vnrt_quant_weight *q = linear ? &node->params->linear.w : &node->params->matmul.b;
  int32_t aq = linear ? node->params->linear.act_quant : 0;
  if (!keeps_subnormals(dev) || !cl_is_float(x->dtype) || !cl_is_float(o->dtype) ||
      x->rank < (linear ? 1 : 2) || w->rank != 2 || !weight_ok(g, node, 1, q) ||
      (aq != 0 && aq != 128)) {
    return 0;
  }
  int64_t K = linear ? w->dims[1] : w->dims[0], N = linear ? w->dims[0] : w->dims[1];
  int64_t rows = K > 0 ? vnrt_numel(x) / K : 0;
  /* matmul: a rank-2 b has no batch dims, so o's rows are a's (batches included). */
  return x->dims[x->rank - 1] == K && (aq == 0 || K % aq == 0) && vnrt_numel(o) == rows * N &&
         (K > 0 || vnrt_numel(o) == 0);
}

vnrt_status cl_q_gemv_lower(cl_lower *L) {
  const vnrt_backend_node *node = L->node;
  int linear = node->op == VNRT_OP_LINEAR;
  const vnrt_quant_weight *q = linear ? &node->params->linear.w : &node->params->matmul.b;
  int32_t aq = linear ? node->params->linear.act_quant : 0;
  const vnrt_tensor_type *x = cl_in_type(L, 0), *w = cl_in_type(L, 1);
  int64_t K = linear ? w->dims[1] : w->dims[0], N = linear ? w->dims[0] : w->dims[1];
  int64_t M = K > 0 ? vnrt_numel(x) / K : 0;
  if (M == 0 || N == 0) return VNRT_OK;
  if (linear && lanes_ok(w->dtype, q->block[1], K) && lanes_aq_ok(L, w->dtype, K, aq)) {
    return launch_lanes_aq(L, q, aq, M, N, K, 1);
  }
  /* x as an f32 copy, fake-quantized to e4m3 per row per 128 channels with act_quant (else
   * only widened: no block), so the product's inner loop loads f32. */
  uint64_t xq = cl_scratch(L, (uint64_t)(M * K) * 4);
  vnrt_status s =
      launch_fake_quant(L, 0, 0, -1, xq, M, K, 0, aq ? K / aq : 0, aq ? aq : 1, VNRT_E4M3);
  if (s != VNRT_OK) return s;
  cl_launch k;
  if (linear && lanes_ok(w->dtype, q->block[1], K)) {
    cl_launch_begin(L, "qgemv_lanes", &k);
    cl_arg_scratch(&k, xq);
    arg_qweight(&k, 1, q);
    cl_arg_out_dt(&k, 0);
    cl_arg_i64(&k, M);
    cl_arg_i64(&k, N);
    cl_arg_i64(&k, K);
    cl_arg_i64(&k, 1);
    return launch_lanes(&k, N, M);
  }
  const char *kernel = !linear                 ? "qgemv"
                       : w->dtype == VNRT_E4M3 ? "qgemv_e4m3"
                       : w->dtype == VNRT_E2M1 ? "qgemv_e2m1"
                                               : "qgemv";
  cl_launch_begin(L, kernel, &k);
  cl_arg_scratch(&k, xq);
  arg_qweight(&k, 1, q);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, M);
  cl_arg_i64(&k, N);
  cl_arg_i64(&k, K);
  cl_arg_i32(&k, linear);
  cl_arg_i64(&k, 1);
  /* qgemv_e4m3/_e2m1 compute four features per work-item. */
  return cl_launch_2d(&k, strcmp(kernel, "qgemv") == 0 ? N : (N + 3) / 4, M);
}

/* grouped_linear (docs/ops.md, "DeepSeek-V4 attention"): x[..., G·K] seen as rows [M·G, K]
 * and y[..., G·N] as [M·G, N]; row r takes w's rows [(r % G)·N, (r % G + 1)·N). On x widened
 * to f32: the qgemv kernels with G groups for codes, gemv_float4 for f32/f16/bf16 weights. */
int cl_grouped_linear_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                               const vnrt_backend_node *node) {
  const vnrt_grouped_linear_params *p = &node->params->grouped_linear;
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *w = cl_q_in(g, node, 1);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  if (!cl_is_float(x->dtype) || !cl_is_float(o->dtype) || x->rank < 1 || w->rank != 2 ||
      p->groups < 1 || !weight_ok(g, node, 1, &p->w) ||
      (is_codes(w->dtype) && !keeps_subnormals(dev))) {
    return 0;
  }
  int64_t G = p->groups, K = w->dims[1], GK = x->dims[x->rank - 1];
  if (w->dims[0] % G != 0 || GK != G * K) return 0;
  int64_t M = GK > 0 ? vnrt_numel(x) / GK : 0;
  return vnrt_numel(o) == M * w->dims[0];
}

vnrt_status cl_grouped_linear_lower(cl_lower *L) {
  const vnrt_grouped_linear_params *p = &L->node->params->grouped_linear;
  const vnrt_tensor_type *x = cl_in_type(L, 0), *w = cl_in_type(L, 1);
  int64_t G = p->groups, K = w->dims[1], N = w->dims[0] / G;
  int64_t rows = K > 0 ? vnrt_numel(x) / K : vnrt_numel(cl_out_type(L, 0)) / (N > 0 ? N : 1);
  if (rows == 0 || N == 0) return VNRT_OK;
  if (lanes_ok(w->dtype, p->w.block[1], K) && lanes_aq_ok(L, w->dtype, K, 0)) {
    return launch_lanes_aq(L, &p->w, 0, rows, N, K, G);
  }
  uint64_t xq = cl_scratch(L, (uint64_t)(rows * K) * 4 + 4);
  vnrt_status s = launch_fake_quant(L, 0, 0, -1, xq, rows, K, 0, 0, 1, VNRT_E4M3);
  if (s != VNRT_OK) return s;
  cl_launch k;
  if (lanes_ok(w->dtype, p->w.block[1], K)) {
    cl_launch_begin(L, "qgemv_lanes", &k);
    cl_arg_scratch(&k, xq);
    arg_qweight(&k, 1, &p->w);
    cl_arg_out_dt(&k, 0);
    cl_arg_i64(&k, rows);
    cl_arg_i64(&k, N);
    cl_arg_i64(&k, K);
    cl_arg_i64(&k, G);
    return launch_lanes(&k, N, rows);
  }
  /* Whole chunks of 16 codes in every block: the kernels that sum in vector lanes. */
  const int lanes = K % 16 == 0 && p->w.block[1] % 16 == 0;
  const char *kernel = w->dtype == VNRT_E4M3   ? (lanes ? "qgemv_e4m3_v" : "qgemv_e4m3")
                       : w->dtype == VNRT_E2M1 ? (lanes ? "qgemv_e2m1_v" : "qgemv_e2m1")
                                               : "gemv_float4";
  cl_launch_begin(L, kernel, &k);
  cl_arg_scratch(&k, xq);
  if (is_codes(w->dtype)) {
    arg_qweight(&k, 1, &p->w);
  } else {
    cl_arg_in_dt(&k, 1);
  }
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, rows);
  cl_arg_i64(&k, N);
  cl_arg_i64(&k, K);
  if (is_codes(w->dtype) && !lanes) cl_arg_i32(&k, 1);
  cl_arg_i64(&k, G);
  /* Every kernel here computes four features per work-item. */
  return cl_launch_2d(&k, (N + 3) / 4, rows);
}

int cl_q_embedding_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                            const vnrt_backend_node *node) {
  const vnrt_tensor_type *t = cl_q_in(g, node, 0), *ids = cl_q_in(g, node, 1);
  const vnrt_tensor_type *o = cl_q_out(g, node, 0);
  return keeps_subnormals(dev) && t->rank == 2 && ids->dtype == VNRT_I32 && cl_is_float(o->dtype) &&
         weight_ok(g, node, 0, &node->params->embedding.table) &&
         vnrt_numel(o) == vnrt_numel(ids) * t->dims[1];
}

/* Appends the gather with the table's scale; ids are clamped (their check is read after the
 * run, cl_ops_index.c). */
vnrt_status cl_q_embedding_gather(cl_lower *L) {
  const vnrt_tensor_type *t = cl_in_type(L, 0), *ids = cl_in_type(L, 1);
  int64_t D = t->dims[1], n = vnrt_numel(ids);
  cl_launch k;
  cl_launch_begin(L, "qembedding", &k);
  arg_qweight(&k, 0, &L->node->params->embedding.table);
  cl_arg_in(&k, 1);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, D);
  cl_arg_i64(&k, n);
  cl_arg_i64(&k, t->dims[0]);
  return cl_launch_2d(&k, D, n);
}

int cl_q_moe_ffn_node(const vnrt_backend_node *node) {
  const vnrt_moe_ffn_params *p = &node->params->moe_ffn;
  return p->act_quant != 0 || is_codes(p->w_gate_up.codes) || is_codes(p->w_down.codes);
}

int cl_q_moe_ffn_supports(vnrt_backend_device *dev, const vnrt_backend_graph *g,
                          const vnrt_backend_node *node) {
  const vnrt_moe_ffn_params *p = &node->params->moe_ffn;
  const vnrt_tensor_type *x = cl_q_in(g, node, 0), *ex = cl_q_in(g, node, 1);
  const vnrt_tensor_type *w = cl_q_in(g, node, 2), *gu = cl_q_in(g, node, 3);
  const vnrt_tensor_type *wd = cl_q_in(g, node, 4), *o = cl_q_out(g, node, 0);
  if (!keeps_subnormals(dev) || !cl_is_float(x->dtype) || x->rank != 2 || ex->dtype != VNRT_I32 ||
      ex->rank != 2 || !cl_is_float(w->dtype) || gu->rank != 3 || wd->rank != 3 ||
      !cl_is_float(o->dtype) || !weight_ok(g, node, 3, &p->w_gate_up) ||
      !weight_ok(g, node, 4, &p->w_down) || (p->act_quant != 0 && p->act_quant != 128)) {
    return 0;
  }
  int64_t T = x->dims[0], C = x->dims[1], kk = ex->dims[1], E = gu->dims[0], F = gu->dims[1] / 2;
  if (ex->dims[0] != T || vnrt_numel(w) != T * kk || gu->dims[1] != 2 * F || gu->dims[2] != C ||
      wd->dims[0] != E || wd->dims[1] != C || wd->dims[2] != F || vnrt_numel(o) != T * C) {
    return 0;
  }
  return p->act_quant == 0 || (C % p->act_quant == 0 && F % p->act_quant == 0);
}

int cl_q_moe_ffn_fused(cl_lower *L) {
  const vnrt_moe_ffn_params *p = &L->node->params->moe_ffn;
  const vnrt_tensor_type *x = cl_in_type(L, 0), *ex = cl_in_type(L, 1), *gu = cl_in_type(L, 3);
  const vnrt_tensor_type *wd = cl_in_type(L, 4);
  int64_t T = x->dims[0], C = x->dims[1], kk = ex->dims[1], F = gu->dims[1] / 2;
  return T * kk > 0 && F > 0 && lanes_ok(gu->dtype, p->w_gate_up.block[1], C) &&
         lanes_ok(wd->dtype, p->w_down.block[1], F) && lanes_aq_ok(L, gu->dtype, C, p->act_quant) &&
         lanes_aq_ok(L, wd->dtype, kk * F, p->act_quant);
}

/* moe_ffn's quantized passes in two launches (moe_ffn_up_aq, moe_ffn_down_aq): each
 * work-group fake-quantizes (act_quant) or widens its token's x, and its token's rows of h,
 * into local memory as it loads them, instead of fake_quant launches around the up pass; the
 * up pass also writes the expert ids' check into error slots slot and slot + 1. e2m1 weights
 * take four rows per work-item (moe_ffn_up_e2m1x4 / moe_ffn_down_e2m1x4). */
vnrt_status cl_q_moe_ffn_fused_up(cl_lower *L, int32_t slot, uint64_t *out_h) {
  const vnrt_moe_ffn_params *p = &L->node->params->moe_ffn;
  const vnrt_tensor_type *x = cl_in_type(L, 0), *ex = cl_in_type(L, 1), *gu = cl_in_type(L, 3);
  int64_t T = x->dims[0], C = x->dims[1], kk = ex->dims[1], F = gu->dims[1] / 2;
  *out_h = cl_scratch(L, (uint64_t)(T * kk * F) * 4);
  const int x4 = gu->dtype == VNRT_E2M1;
  cl_launch k;
  cl_launch_begin(L, x4 ? "moe_ffn_up_e2m1x4" : "moe_ffn_up_aq", &k);
  cl_arg_in_dt(&k, 0);
  cl_arg_i32(&k, p->act_quant);
  cl_arg_in(&k, 1);
  arg_qweight(&k, 3, &p->w_gate_up);
  cl_arg_scratch(&k, *out_h);
  cl_arg_i64(&k, T * kk);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)C);
  cl_arg_i32(&k, (int32_t)F);
  cl_arg_f32(&k, (float)p->limit);
  cl_arg_i32(&k, (int32_t)gu->dims[0]);
  cl_arg_local(&k, (size_t)C * sizeof(float));
  cl_arg_err(&k, slot);
  cl_arg_i32(&k, slot);
  return launch_lanes_x(&k, x4 ? (F + 1) / 2 : F, T * kk);
}

vnrt_status cl_q_moe_ffn_fused_down(cl_lower *L, uint64_t h) {
  const vnrt_moe_ffn_params *p = &L->node->params->moe_ffn;
  const vnrt_tensor_type *x = cl_in_type(L, 0), *ex = cl_in_type(L, 1), *gu = cl_in_type(L, 3);
  int64_t T = x->dims[0], C = x->dims[1], kk = ex->dims[1], F = gu->dims[1] / 2;
  const int x4 = cl_in_type(L, 4)->dtype == VNRT_E2M1;
  cl_launch k;
  cl_launch_begin(L, x4 ? "moe_ffn_down_e2m1x4" : "moe_ffn_down_aq", &k);
  cl_arg_in(&k, 1);
  cl_arg_in_dt(&k, 2);
  cl_arg_i32(&k, p->act_quant);
  arg_qweight(&k, 4, &p->w_down);
  cl_arg_scratch(&k, h);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)C);
  cl_arg_i32(&k, (int32_t)F);
  cl_arg_i32(&k, (int32_t)gu->dims[0]);
  cl_arg_local(&k, (size_t)(kk * F) * sizeof(float));
  return launch_lanes_x(&k, x4 ? (C + 3) / 4 : C, T);
}

/* After the expert ids were checked (cl_ops_moe.c): x (fake-quantized to an f32 copy with
 * act_quant), the up pass into h, with act_quant h·w fake-quantized in place, the down pass. */
vnrt_status cl_q_moe_ffn_passes(cl_lower *L) {
  const vnrt_moe_ffn_params *p = &L->node->params->moe_ffn;
  const vnrt_tensor_type *x = cl_in_type(L, 0), *ex = cl_in_type(L, 1), *gu = cl_in_type(L, 3);
  int64_t T = x->dims[0], C = x->dims[1], kk = ex->dims[1], F = gu->dims[1] / 2;
  int64_t pairs = T * kk;
  int32_t aq = p->act_quant;
  vnrt_status s = VNRT_OK;
  uint64_t h = cl_scratch(L, (uint64_t)(pairs * F) * 4);
  uint64_t xq = cl_scratch(L, (uint64_t)(T * C) * 4);
  /* x as an f32 copy, fake-quantized with act_quant. */
  s = launch_fake_quant(L, 0, 0, -1, xq, T, C, 0, aq ? C / aq : 0, aq ? aq : 1, VNRT_E4M3);
  if (s != VNRT_OK) return s;
  cl_launch k;
  if (pairs > 0 && F > 0) {
    const int up_lanes = lanes_ok(gu->dtype, p->w_gate_up.block[1], C);
    cl_launch_begin(L, up_lanes ? "moe_ffn_up_lanes" : "moe_ffn_up_q", &k);
    cl_arg_scratch(&k, xq);
    cl_arg_in(&k, 1);
    arg_qweight(&k, 3, &p->w_gate_up);
    cl_arg_scratch(&k, h);
    cl_arg_i64(&k, pairs);
    cl_arg_i32(&k, (int32_t)kk);
    cl_arg_i32(&k, (int32_t)C);
    cl_arg_i32(&k, (int32_t)F);
    cl_arg_f32(&k, (float)p->limit);
    cl_arg_i32(&k, (int32_t)gu->dims[0]);
    s = up_lanes ? launch_lanes(&k, F, pairs) : cl_launch_2d(&k, F, pairs);
    if (s != VNRT_OK) return s;
    if (aq) {
      /* The routing weight first, then e4m3 per 128 of F (DeepSeek's order). */
      s = launch_fake_quant(L, -1, h, 2, h, pairs, F, 0, F / aq, aq, VNRT_E4M3);
      if (s != VNRT_OK) return s;
    }
  }
  const vnrt_tensor_type *wd = cl_in_type(L, 4);
  const int down_lanes = lanes_ok(wd->dtype, p->w_down.block[1], F);
  cl_launch_begin(L, down_lanes ? "moe_ffn_down_lanes" : "moe_ffn_down_q", &k);
  cl_arg_in(&k, 1);
  cl_arg_in_dt(&k, 2);
  cl_arg_i32(&k, aq == 0);
  arg_qweight(&k, 4, &p->w_down);
  cl_arg_scratch(&k, h);
  cl_arg_out_dt(&k, 0);
  cl_arg_i64(&k, T);
  cl_arg_i32(&k, (int32_t)kk);
  cl_arg_i32(&k, (int32_t)C);
  cl_arg_i32(&k, (int32_t)F);
  cl_arg_i32(&k, (int32_t)gu->dims[0]);
  return down_lanes ? launch_lanes(&k, C, T) : cl_launch_2d(&k, C, T);
}
