/* The supported and record functions of the op table (vk_ops.c) for the model-level ops:
 * attention, mHC (hc_pre, hc_post, hc_head, sinkhorn), MoE (moe_route, moe_hash_route,
 * moe_ffn) and Engram (ngram_hash, engram_lookup, engram_gate, short_conv). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define WG_ELEM 128u
#define WG_NGRAM 64u
#define WG_ATTN 64u /* WG of attention.comp */
#define MM_BM 32u
#define MM_BN 64u

/* Shader limits (the #defines of the same names in shaders/vulkan). */
#define ATTN_DMAX 1024
#define ATTN_DVMAX 512 /* WG * DVPER */
#define MHC_NMAX 16
#define ROUTE_EMAX 1024
#define ROUTE_GMAX 64
#define ROUTE_KMAX 64
#define FFN_NB 4   /* outputs per workgroup in moe_ffn.comp */
#define FFN_RB 8   /* outputs per invocation in moe_ffn.comp's CPU passes */
#define WG_FFN 64u /* WG of moe_ffn.comp */

#define WHY(...) (snprintf(why, why_size, __VA_ARGS__), 0)

/* moe_route.comp's score code (SC1): 1 sigmoid, 2 softmax, 3 sqrt_softplus. */
static uint32_t score_code(vnrt_score_fn score) { return (uint32_t)score + 1; }

VK_SUPPORTED_FN(vk_sup_attention) {
  const vnrt_attention_params *p = &node->params->attention;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *tk = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tv = vk_in_type(g, node, 2);
  if (t0->rank != 3 || tk->rank != 3 || tv->rank != 3 || p->kv_heads <= 0 ||
      p->q_heads % p->kv_heads != 0) {
    return WHY("attention needs q[T, Hq, D], k[S, Hkv, D], v[S, Hkv, Dv], Hkv | Hq");
  }
  if (p->head_dim > ATTN_DMAX || p->v_dim > ATTN_DVMAX) {
    return WHY("attention kernel handles D <= %d and Dv <= %d", ATTN_DMAX, ATTN_DVMAX);
  }
  if (node->n_inputs > 4) {
    const vnrt_tensor_type *tl = vk_in_type(g, node, 4);
    if (tl->dtype != VNRT_I32 || vnrt_numel(tl) != 1) return WHY("kv_len must be i32[1]");
  }
  return 1;
}

/* X[T, n, C] with n within the mHC kernels' limit. */
static int mhc_shape_ok(const vnrt_tensor_type *t0, char *why, size_t why_size) {
  if (t0->rank != 3) return WHY("mHC ops need X[T, n, C]");
  if (t0->dims[1] < 1 || t0->dims[1] > MHC_NMAX) {
    return WHY("mHC kernels handle 1 <= n <= %d", MHC_NMAX);
  }
  return 1;
}

/* The mixing GEMM of hc_pre/hc_head: T x rows f32 into scratch. */
static int mhc_mix_ok(const vnrt_backend_device *device, const vnrt_tensor_type *t0, uint64_t rows,
                      char *why, size_t why_size) {
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  if (!mhc_shape_ok(t0, why, why_size)) return 0;
  uint64_t mix = (uint64_t)t0->dims[0] * rows * 4;
  if (mix > lim->maxStorageBufferRange) return WHY("the mixing scratch is too large");
  if (vk_div_up(rows, MM_BN) > lim->maxComputeWorkGroupCount[0] ||
      vk_div_up((uint64_t)t0->dims[0], MM_BM) > lim->maxComputeWorkGroupCount[1]) {
    return WHY("the mixing grid exceeds maxComputeWorkGroupCount");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_hc_pre) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t n = t0->rank == 3 ? (uint64_t)t0->dims[1] : 0;
  return mhc_mix_ok(device, t0, (n + 2) * n, why, why_size);
}

VK_SUPPORTED_FN(vk_sup_hc_head) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  return mhc_mix_ok(device, t0, t0->rank == 3 ? (uint64_t)t0->dims[1] : 0, why, why_size);
}

VK_SUPPORTED_FN(vk_sup_hc_post) { return mhc_shape_ok(vk_in_type(g, node, 0), why, why_size); }

VK_SUPPORTED_FN(vk_sup_sinkhorn) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  int64_t n = t0->rank >= 2 ? t0->dims[t0->rank - 1] : 0;
  if (n < 1 || n > MHC_NMAX) return WHY("sinkhorn kernel handles 1 <= n <= %d", MHC_NMAX);
  return 1;
}

/* logits[T, E] with E within the routing kernel's limit. */
static int route_logits_ok(const vnrt_tensor_type *t0, char *why, size_t why_size) {
  if (t0->rank < 1) return WHY("routing needs logits[T, E]");
  int64_t E = t0->dims[t0->rank - 1];
  if (E < 1 || E > ROUTE_EMAX) return WHY("routing kernel handles 1 <= E <= %d", ROUTE_EMAX);
  return 1;
}

VK_SUPPORTED_FN(vk_sup_moe_route) {
  const vnrt_moe_route_params *p = &node->params->moe_route;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  if (!route_logits_ok(t0, why, why_size)) return 0;
  int64_t E = t0->dims[t0->rank - 1];
  if (p->k < 1 || p->k > ROUTE_KMAX) return WHY("routing kernel handles 1 <= k <= %d", ROUTE_KMAX);
  if (p->n_group > 1) {
    if (p->n_group > ROUTE_GMAX || E % p->n_group != 0 || p->topk_group < 1 ||
        p->topk_group > p->n_group) {
      return WHY("groups must divide E, n_group <= %d, 1 <= topk_group <= n_group", ROUTE_GMAX);
    }
    if (p->k > p->topk_group * (E / p->n_group)) return WHY("k exceeds the eligible experts");
  } else if (p->k > E) {
    return WHY("k exceeds E");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_moe_hash_route) {
  if (!route_logits_ok(vk_in_type(g, node, 0), why, why_size)) return 0;
  const vnrt_tensor_type *tt = vk_in_type(g, node, 2);
  if (tt->rank != 2 || tt->dims[1] < 1 || tt->dims[1] > ROUTE_KMAX) {
    return WHY("moe_hash_route needs tid2eid[V, k] with 1 <= k <= %d", ROUTE_KMAX);
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_moe_ffn) {
  if (vk_quant_moe_ffn(node)) return vk_sup_qmoe_ffn(device, g, node, why, why_size);
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *te = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tg = vk_in_type(g, node, 3);
  if (t0->rank < 1 || te->rank < 1 || tg->rank != 3 || tg->dims[0] < 1) {
    return WHY("moe_ffn needs x[T, C], experts[T, k], w_gate_up[E >= 1, 2F, C]");
  }
  uint64_t C = (uint64_t)t0->dims[t0->rank - 1];
  uint64_t T = C ? (uint64_t)vnrt_numel(t0) / C : 0, k = (uint64_t)te->dims[te->rank - 1];
  uint64_t F = (uint64_t)tg->dims[1] / 2;
  if (T * k * F * 4 > lim->maxStorageBufferRange || T * k * F >= (1ull << 31)) {
    return WHY("the hidden activations exceed maxStorageBufferRange");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_ngram_hash) {
  const vnrt_ngram_hash_params *p = &node->params->ngram_hash;
  int64_t N = p->max_n, K = p->heads;
  if (!p->mult || !p->primes) return WHY("ngram_hash needs mult and primes");
  if (N < 2 || N > p->n_mult || K < 1 || (N - 1) * K > p->n_primes ||
      vnrt_numel(vk_in_type(g, node, 1)) != N - 1) {
    return WHY("max_n/heads do not fit mult, primes and hist");
  }
  for (int64_t c = 0; c < (N - 1) * K; ++c) {
    if (p->primes[c] < 1 || p->primes[c] > INT32_MAX) return WHY("bad prime");
  }
  return 1;
}

VK_SUPPORTED_FN(vk_sup_engram_lookup) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *ti = vk_in_type(g, node, 1);
  if (t0->rank != 2 || ti->rank < 1) return WHY("engram_lookup needs table[R, D], idx[T, H]");
  return 1;
}

VK_SUPPORTED_FN(vk_sup_engram_gate) {
  return vk_in_type(g, node, 0)->rank == 3 ? 1 : WHY("engram_gate needs h[T, M, C]");
}

VK_SUPPORTED_FN(vk_sup_short_conv) {
  const VkPhysicalDeviceLimits *lim = &device->phys->props.limits;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *tw = vk_in_type(g, node, 3);
  if (t0->rank != 3 || tw->rank != 2 || tw->dims[1] < 1) {
    return WHY("short_conv needs u[T, M, C] and w[M*C, K]");
  }
  if (node->params->short_conv.dilation < 1) return WHY("dilation must be >= 1");
  if ((uint64_t)vnrt_numel(t0) * 4 > lim->maxStorageBufferRange) {
    return WHY("the normalised activations exceed maxStorageBufferRange");
  }
  return 1;
}

/* ---- Recording ------------------------------------------------------------------------- */

/* Whether the f32 scores and denominators of attention's CPU passes fit one scratch binding. */
static bool attention_cpu_fits(vk_builder *b, uint64_t T, uint64_t Hq, uint64_t S) {
  uint64_t words = T * Hq * (S + 1);
  return words < (1ull << 31) &&
         words * 4 <= vk_builder_device(b)->phys->props.limits.maxStorageBufferRange;
}

VK_RECORD_FN(vk_rec_attention) {
  const vnrt_attention_params *p = &node->params->attention;
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tk = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tv = vk_in_type(g, node, 2);
  uint64_t T = (uint64_t)tq->dims[0], Hq = (uint64_t)tq->dims[1], D = (uint64_t)tq->dims[2];
  uint64_t S = (uint64_t)tk->dims[0], Hkv = (uint64_t)tk->dims[1], Dv = (uint64_t)tv->dims[2];
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_ATTENTION);
  for (int i = 0; i < node->n_inputs; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[9] = p->has_sinks != 0;
  d.spec[10] = node->n_inputs > 4; /* kv_len */
  int64_t window = p->window;
  if (window < 0) window = 0;
  if ((uint64_t)window > S + T) window = (int64_t)(S + T); /* beyond that it masks nothing */
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, S), vk_push_u(&d, 2, Hq), vk_push_u(&d, 3, Hkv);
  vk_push_u(&d, 4, D), vk_push_u(&d, 5, Dv);
  vk_push_u(&d, 6, p->causal != 0);
  vk_push_u(&d, 7, (uint64_t)window);
  vk_push_f(&d, 8, (float)p->scale);
  if (vk_builder_cpu_kernels(b) && T * Hq > 0 && S > 0 && D % 4 == 0 && Dv % 4 == 0 && Dv > 0 &&
      attention_cpu_fits(b, T, Hq, S)) {
    uint64_t blocks = T * Hkv * vk_div_up(Hq / Hkv, 4); /* 4 heads of one kv group each */
    d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, T * Hq * (S + 1) * 4);
    d.spec[11] = tq->dtype == VNRT_F32 && tk->dtype == VNRT_F32 && tv->dtype == VNRT_F32;
    d.spec[8] = 1;
    vk_grid(b, vk_div_up(blocks * vk_div_up(S, 4), WG_ATTN), d.groups);
    VK_TRY(vk_emit(b, &d));
    d.spec[8] = 2;
    vk_grid(b, vk_div_up(T * Hq, WG_ATTN), d.groups);
    VK_TRY(vk_emit(b, &d));
    d.spec[8] = 3;
    vk_grid(b, vk_div_up(blocks * (Dv / 4), WG_ATTN), d.groups);
    return vk_emit(b, &d);
  }
  vk_grid(b, T * Hq, d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_hc_post) {
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0);
  uint64_t T = (uint64_t)tx->dims[0], n = (uint64_t)tx->dims[1], C = (uint64_t)tx->dims[2];
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MHC);
  for (int i = 0; i < 4; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 2;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, n), vk_push_u(&d, 2, C);
  vk_grid(b, vk_div_up(T * n * C, WG_ELEM), d.groups);
  return vk_emit(b, &d);
}

/* hc_pre (mhc.comp OP 0, rows = (n + 2) n) and hc_head (OP 1, rows = n): the mixing GEMM
 * (X[T, n*C] . fn^T into scratch), then the per-token tail. */
/* The mixing products fn . X[t] into mix[T, rows] with matmul.comp. */
static vnrt_status mix_gemm(vk_builder *b, const vnrt_backend_node *node, const vk_view *mix,
                            uint64_t T, uint64_t rows, uint64_t K) {
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MATMUL);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  d.slots[5] = *mix;
  d.spec[5] = VNRT_F32;
  d.spec[9] = 1, d.spec[10] = 0; /* fn is [rows, n*C]: linear layout */
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, rows), vk_push_u(&d, 2, K);
  vk_push_u(&d, 3, K), vk_push_u(&d, 4, 1), vk_push_u(&d, 5, 1), vk_push_u(&d, 6, K);
  vk_push_u(&d, 7, 1);
  return vk_emit_gemm(b, &d, T, rows, 1, true);
}

static vnrt_status record_mhc_mix(vk_builder *b, const vnrt_backend_graph *g,
                                  const vnrt_backend_node *node, uint32_t op, uint64_t rows,
                                  int32_t iters, double eps, double norm_eps) {
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0);
  uint64_t T = (uint64_t)tx->dims[0], n = (uint64_t)tx->dims[1], C = (uint64_t)tx->dims[2];
  uint64_t K = n * C;
  vk_view mix = vk_scratch_view(b, T * rows * 4);
  vk_dispatch_desc d;
  if (T <= VK_GEMV_MMAX && vk_gemv_ok(b, tx->dtype, node->inputs[1], NULL, K)) {
    /* Decode-sized on a CPU device: gemv.comp. */
    VK_TRY(vk_emit_gemv_linear(b, node, NULL, NULL, false, T, rows, K, 0, K, &mix));
  } else {
    VK_TRY(mix_gemm(b, node, &mix, T, rows, K));
  }
  vk_desc_init(&d, VK_SHADER_MHC);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_desc_init(&d, VK_SHADER_MHC);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 2, node->inputs[2]);
  vk_bind(b, &d, 3, node->inputs[3]);
  for (int i = 0; i < node->n_outputs; ++i) vk_bind(b, &d, 5 + i, node->outputs[i]);
  d.slots[VK_SLOT_SCRATCH] = mix;
  d.spec[8] = op;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, n), vk_push_u(&d, 2, C);
  vk_push_u(&d, 3, (uint64_t)iters);
  vk_push_f(&d, 4, eps);
  vk_push_f(&d, 5, norm_eps);
  vk_grid(b, T, d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_hc_pre) {
  const vnrt_hc_pre_params *p = &node->params->hc_pre;
  uint64_t n = (uint64_t)vk_in_type(g, node, 0)->dims[1];
  return record_mhc_mix(b, g, node, 0, (n + 2) * n, p->iters, p->eps, p->norm_eps);
}

VK_RECORD_FN(vk_rec_hc_head) {
  const vnrt_hc_head_params *p = &node->params->hc_head;
  uint64_t n = (uint64_t)vk_in_type(g, node, 0)->dims[1];
  return record_mhc_mix(b, g, node, 1, n, 0, p->eps, p->norm_eps); /* no sinkhorn: no iters */
}

VK_RECORD_FN(vk_rec_sinkhorn) {
  const vnrt_sinkhorn_params *p = &node->params->sinkhorn;
  const vnrt_tensor_type *tl = vk_in_type(g, node, 0);
  uint64_t n = (uint64_t)tl->dims[tl->rank - 1];
  uint64_t batch = (uint64_t)vnrt_numel(tl) / (n * n);
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MHC);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 3;
  vk_push_u(&d, 0, batch), vk_push_u(&d, 1, n), vk_push_u(&d, 2, 1);
  vk_push_u(&d, 3, (uint64_t)(p->iters > 0 ? p->iters : 0));
  vk_push_f(&d, 4, p->eps);
  vk_grid(b, batch, d.groups);
  return vk_emit(b, &d);
}

/* moe_route.comp: OP 0 moe_route (k, groups and the optional bias from the params), OP 1
 * moe_hash_route (k and the experts from tid2eid[V, k]). */
static vnrt_status record_route(vk_builder *b, const vnrt_backend_graph *g,
                                const vnrt_backend_node *node, bool hash, vnrt_score_fn score,
                                uint64_t k, uint64_t n_group, uint64_t topk_group, int32_t norm,
                                double scale, bool has_bias) {
  const vnrt_tensor_type *tl = vk_in_type(g, node, 0);
  uint64_t E = (uint64_t)tl->dims[tl->rank - 1], T = (uint64_t)vnrt_numel(tl) / E;
  uint64_t V = hash ? (uint64_t)vk_in_type(g, node, 2)->dims[0] : 0;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MOE_ROUTE);
  for (int i = 0; i < node->n_inputs; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  vk_bind(b, &d, 6, node->outputs[1]);
  d.spec[8] = hash ? 1 : 0;
  d.spec[9] = score_code(score);
  d.spec[10] = has_bias;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, E), vk_push_u(&d, 2, k);
  vk_push_u(&d, 3, n_group), vk_push_u(&d, 4, topk_group);
  vk_push_u(&d, 5, norm != 0);
  vk_push_u(&d, 6, V);
  vk_push_f(&d, 7, scale);
  vk_grid(b, T, d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_moe_route) {
  const vnrt_moe_route_params *p = &node->params->moe_route;
  uint64_t n_group = p->n_group > 1 ? (uint64_t)p->n_group : 1; /* <= 1: no grouping */
  return record_route(b, g, node, false, p->score, (uint64_t)p->k, n_group, (uint64_t)p->topk_group,
                      p->norm, p->scale, p->has_bias != 0);
}

VK_RECORD_FN(vk_rec_moe_hash_route) {
  const vnrt_moe_hash_route_params *p = &node->params->moe_hash_route;
  /* One group, so topk_group is never read. */
  return record_route(b, g, node, true, p->score, (uint64_t)p->k, 1, 1, p->norm, p->scale, false);
}

VK_RECORD_FN(vk_rec_moe_ffn) {
  if (vk_quant_moe_ffn(node)) return vk_rec_qmoe_ffn(b, g, node, code);
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0), *te = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tg = vk_in_type(g, node, 3);
  uint64_t C = (uint64_t)tx->dims[tx->rank - 1];
  uint64_t k = (uint64_t)te->dims[te->rank - 1];
  uint64_t T = C ? (uint64_t)vnrt_numel(tx) / C : (k ? (uint64_t)vnrt_numel(te) / k : 0);
  uint64_t F = (uint64_t)tg->dims[1] / 2, E = (uint64_t)tg->dims[0];
  if (T == 0 || C == 0) return VNRT_OK;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MOE_FFN);
  for (int i = 0; i < 5; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, T * k * F * 4);
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, C), vk_push_u(&d, 2, F), vk_push_u(&d, 3, k);
  vk_push_u(&d, 4, E);
  vk_push_f(&d, 5, node->params->moe_ffn.limit);
  if (vk_builder_cpu_kernels(b)) {
    /* Barrier-free passes, RB outputs per invocation (moe_ffn.comp); eight-wide loads when
     * every row starts on a multiple of 8 elements. */
    d.spec[11] = C % 8 == 0 && F % 8 == 0;
    d.spec[8] = 2;
    vk_grid(b, vk_div_up(T * k * vk_div_up(F, FFN_RB), WG_FFN), d.groups);
    VK_TRY(vk_emit(b, &d));
    d.spec[8] = 3;
    vk_grid(b, vk_div_up(T * vk_div_up(C, FFN_RB), WG_FFN), d.groups);
    return vk_emit(b, &d);
  }
  d.spec[8] = 0;
  vk_grid(b, T * k * vk_div_up(F, FFN_NB), d.groups);
  VK_TRY(vk_emit(b, &d));
  d.spec[8] = 1;
  vk_grid(b, T * vk_div_up(C, FFN_NB), d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_ngram_hash) {
  const vnrt_ngram_hash_params *p = &node->params->ngram_hash;
  const vnrt_backend_host *host = vk_builder_host(b);
  int64_t N = p->max_n, K = p->heads;
  uint64_t cols = (uint64_t)((N - 1) * K), T = (uint64_t)vnrt_numel(vk_in_type(g, node, 0));
  size_t words = 2 * (size_t)N + (size_t)cols;
  uint32_t *c = host->alloc(host->core, sizeof *c * words);
  if (!c) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  for (int64_t j = 0; j < N; ++j) {
    uint64_t m = (uint64_t)p->mult[j]; /* the two's complement bits of the int64 */
    c[2 * j] = (uint32_t)m;
    c[2 * j + 1] = (uint32_t)(m >> 32);
  }
  for (uint64_t i = 0; i < cols; ++i) c[2 * N + (int64_t)i] = (uint32_t)p->primes[i];
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_NGRAM);
  vnrt_status s = vk_const_view(b, c, sizeof *c * words, &d.slots[VK_SLOT_CONST]);
  host->free(host->core, c);
  VK_TRY(s);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  vk_bind(b, &d, 5, node->outputs[0]);
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, (uint64_t)N), vk_push_u(&d, 2, (uint64_t)K);
  vk_push_u(&d, 3, cols);
  vk_grid(b, vk_div_up(T, WG_NGRAM), d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_engram_lookup) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0), *ti = vk_in_type(g, node, 1);
  uint64_t D = (uint64_t)t0->dims[1], H = (uint64_t)ti->dims[ti->rank - 1];
  uint64_t n = (uint64_t)vnrt_numel(ti) * D;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_GATHER);
  for (int i = 0; i < 3; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 1;
  vk_push_u(&d, 0, n), vk_push_u(&d, 1, D), vk_push_u(&d, 2, H);
  vk_push_u(&d, 3, (uint64_t)t0->dims[0]);
  vk_grid(b, vk_div_up(n, WG_ELEM), d.groups);
  return vk_emit(b, &d);
}

/* engram.comp over h/u[T, M, C]: every input and output bound, T M C and eps pushed. */
static void engram_desc(vk_builder *b, const vnrt_backend_graph *g, const vnrt_backend_node *node,
                        double eps, vk_dispatch_desc *d) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  vk_desc_init(d, VK_SHADER_ENGRAM);
  for (int i = 0; i < node->n_inputs; ++i) vk_bind(b, d, i, node->inputs[i]);
  for (int i = 0; i < node->n_outputs; ++i) vk_bind(b, d, 5 + i, node->outputs[i]);
  vk_push_u(d, 0, (uint64_t)t0->dims[0]), vk_push_u(d, 1, (uint64_t)t0->dims[1]);
  vk_push_u(d, 2, (uint64_t)t0->dims[2]);
  vk_push_f(d, 6, eps);
}

VK_RECORD_FN(vk_rec_engram_gate) {
  const vnrt_engram_gate_params *p = &node->params->engram_gate;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  vk_dispatch_desc d;
  engram_desc(b, g, node, p->eps, &d);
  d.spec[8] = 0;
  d.spec[9] = p->sqrt_gate != 0;
  vk_grid(b, (uint64_t)t0->dims[0] * (uint64_t)t0->dims[1], d.groups);
  return vk_emit(b, &d);
}

VK_RECORD_FN(vk_rec_short_conv) {
  const vnrt_short_conv_params *p = &node->params->short_conv;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  uint64_t T = (uint64_t)t0->dims[0], M = (uint64_t)t0->dims[1], C = (uint64_t)t0->dims[2];
  uint64_t K = (uint64_t)vk_in_type(g, node, 3)->dims[1];
  uint64_t dil = (uint64_t)p->dilation, P = (K - 1) * dil;
  vk_dispatch_desc d;
  engram_desc(b, g, node, p->eps, &d);
  vk_push_u(&d, 3, K), vk_push_u(&d, 4, P), vk_push_u(&d, 5, dil);
  d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, T * M * C * 4);
  d.spec[8] = 1;
  vk_grid(b, T * M, d.groups);
  VK_TRY(vk_emit(b, &d));
  d.spec[8] = 2;
  vk_grid(b, vk_div_up((T + P) * M * C, WG_ELEM), d.groups);
  return vk_emit(b, &d);
}
