/* Op dispatch for the model-level ops: attention, mHC (hc_pre, hc_post, hc_head, sinkhorn),
 * MoE (moe_route, moe_hash_route, moe_ffn) and Engram (ngram_hash, engram_lookup,
 * engram_gate, short_conv). */
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
#define FFN_NB 4 /* outputs per workgroup in moe_ffn.comp */
#define FFN_RB 8 /* outputs per invocation in moe_ffn.comp's CPU passes */
#define WG_FFN 64u /* WG of moe_ffn.comp */

static int64_t numel(const vnrt_tensor_type *t) { return vnrt_tensor_type_numel(t); }

#define WHY(...) (snprintf(why, why_size, __VA_ARGS__), 0)

static int score_code(const vnrt_backend_node *node) {
  const char *w = vnrt_node_attr_word(node, "score", "");
  if (strcmp(w, "sigmoid") == 0) return 1;
  if (strcmp(w, "softmax") == 0) return 2;
  if (strcmp(w, "sqrt_softplus") == 0) return 3;
  return 0;
}

int vk_ops_model_supported(const vnrt_backend_device *dev, const vnrt_backend_graph *g,
                           const vnrt_backend_node *node, char *why, size_t why_size) {
  const VkPhysicalDeviceLimits *lim = &dev->phys->props.limits;
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  switch (node->op) {
    case VNRT_OP_ATTENTION: {
      const vnrt_tensor_type *tk = vk_in_type(g, node, 1), *tv = vk_in_type(g, node, 2);
      if (t0->rank != 3 || tk->rank != 3 || tv->rank != 3 || tk->dims[1] <= 0 ||
          t0->dims[1] % tk->dims[1] != 0) {
        return WHY("attention needs q[T, Hq, D], k[S, Hkv, D], v[S, Hkv, Dv], Hkv | Hq");
      }
      if (t0->dims[2] > ATTN_DMAX || tv->dims[2] > ATTN_DVMAX) {
        return WHY("attention kernel handles D <= %d and Dv <= %d", ATTN_DMAX, ATTN_DVMAX);
      }
      if (node->n_inputs > 4) {
        const vnrt_tensor_type *tl = vk_in_type(g, node, 4);
        if (tl->dtype != VNRT_I32 || numel(tl) != 1) return WHY("kv_len must be i32[1]");
      }
      return 1;
    }
    case VNRT_OP_HC_PRE:
    case VNRT_OP_HC_HEAD:
    case VNRT_OP_HC_POST: {
      if (t0->rank != 3) return WHY("mHC ops need X[T, n, C]");
      int64_t n = t0->dims[1];
      if (n < 1 || n > MHC_NMAX) return WHY("mHC kernels handle 1 <= n <= %d", MHC_NMAX);
      if (node->op != VNRT_OP_HC_POST) {
        uint64_t rows = (uint64_t)(node->op == VNRT_OP_HC_PRE ? (n + 2) * n : n);
        uint64_t mix = (uint64_t)t0->dims[0] * rows * 4;
        if (mix > lim->maxStorageBufferRange) return WHY("the mixing scratch is too large");
        if (vk_div_up(rows, MM_BN) > lim->maxComputeWorkGroupCount[0] ||
            vk_div_up((uint64_t)t0->dims[0], MM_BM) > lim->maxComputeWorkGroupCount[1]) {
          return WHY("the mixing grid exceeds maxComputeWorkGroupCount");
        }
      }
      return 1;
    }
    case VNRT_OP_SINKHORN: {
      int64_t n = t0->rank >= 2 ? t0->dims[t0->rank - 1] : 0;
      if (n < 1 || n > MHC_NMAX) return WHY("sinkhorn kernel handles 1 <= n <= %d", MHC_NMAX);
      return 1;
    }
    case VNRT_OP_MOE_ROUTE:
    case VNRT_OP_MOE_HASH_ROUTE: {
      if (t0->rank < 1) return WHY("routing needs logits[T, E]");
      int64_t E = t0->dims[t0->rank - 1];
      if (!score_code(node)) return WHY("unknown score");
      if (E < 1 || E > ROUTE_EMAX) return WHY("routing kernel handles 1 <= E <= %d", ROUTE_EMAX);
      if (node->op == VNRT_OP_MOE_HASH_ROUTE) {
        const vnrt_tensor_type *tt = vk_in_type(g, node, 2);
        if (tt->rank != 2 || tt->dims[1] < 1 || tt->dims[1] > ROUTE_KMAX) {
          return WHY("moe_hash_route needs tid2eid[V, k] with 1 <= k <= %d", ROUTE_KMAX);
        }
        return 1;
      }
      int64_t k = vnrt_node_attr_i(node, "k", 1);
      int64_t n_group = vnrt_node_attr_i(node, "n_group", 1);
      int64_t topk_group = vnrt_node_attr_i(node, "topk_group", 1);
      if (k < 1 || k > ROUTE_KMAX) return WHY("routing kernel handles 1 <= k <= %d", ROUTE_KMAX);
      if (n_group > 1) {
        if (n_group > ROUTE_GMAX || E % n_group != 0 || topk_group < 1 || topk_group > n_group) {
          return WHY("groups must divide E, n_group <= %d, 1 <= topk_group <= n_group", ROUTE_GMAX);
        }
        if (k > topk_group * (E / n_group)) return WHY("k exceeds the eligible experts");
      } else if (k > E) {
        return WHY("k exceeds E");
      }
      return 1;
    }
    case VNRT_OP_MOE_FFN: {
      const vnrt_tensor_type *te = vk_in_type(g, node, 1), *tg = vk_in_type(g, node, 3);
      if (t0->rank < 1 || te->rank < 1 || tg->rank != 3 || tg->dims[0] < 1) {
        return WHY("moe_ffn needs x[T, C], experts[T, k], w_gate_up[E >= 1, 2F, C]");
      }
      uint64_t C = (uint64_t)t0->dims[t0->rank - 1];
      uint64_t T = C ? (uint64_t)numel(t0) / C : 0, k = (uint64_t)te->dims[te->rank - 1];
      uint64_t F = (uint64_t)tg->dims[1] / 2;
      if (T * k * F * 4 > lim->maxStorageBufferRange || T * k * F >= (1ull << 31)) {
        return WHY("the hidden activations exceed maxStorageBufferRange");
      }
      return 1;
    }
    case VNRT_OP_NGRAM_HASH: {
      const vnrt_attr *mult = vnrt_node_attr(node, "mult");
      const vnrt_attr *primes = vnrt_node_attr(node, "primes");
      if (!mult || !primes || mult->kind != VNRT_ATTR_INTS || primes->kind != VNRT_ATTR_INTS) {
        return WHY("ngram_hash needs mult and primes");
      }
      int64_t N = vnrt_node_attr_i(node, "max_n", mult->count);
      int64_t K = vnrt_node_attr_i(node, "heads", N > 1 ? primes->count / (N - 1) : 0);
      if (N < 2 || N > mult->count || K < 1 || (N - 1) * K > primes->count ||
          numel(vk_in_type(g, node, 1)) != N - 1) {
        return WHY("max_n/heads do not fit mult, primes and hist");
      }
      for (int64_t c = 0; c < (N - 1) * K; ++c) {
        if (primes->ints[c] < 1 || primes->ints[c] > INT32_MAX) return WHY("bad prime");
      }
      return 1;
    }
    case VNRT_OP_ENGRAM_LOOKUP: {
      const vnrt_tensor_type *ti = vk_in_type(g, node, 1);
      if (t0->rank != 2 || ti->rank < 1) return WHY("engram_lookup needs table[R, D], idx[T, H]");
      return 1;
    }
    case VNRT_OP_ENGRAM_GATE:
      return t0->rank == 3 ? 1 : WHY("engram_gate needs h[T, M, C]");
    case VNRT_OP_SHORT_CONV: {
      const vnrt_tensor_type *tw = vk_in_type(g, node, 3);
      if (t0->rank != 3 || tw->rank != 2 || tw->dims[1] < 1) {
        return WHY("short_conv needs u[T, M, C] and w[M*C, K]");
      }
      if (vnrt_node_attr_i(node, "dilation", 1) < 1) return WHY("dilation must be >= 1");
      if ((uint64_t)numel(t0) * 4 > lim->maxStorageBufferRange) {
        return WHY("the normalised activations exceed maxStorageBufferRange");
      }
      return 1;
    }
    default:
      return WHY("no kernel");
  }
}

/* ---- Recording ------------------------------------------------------------------------- */

/* Whether the f32 scores and denominators of attention's CPU passes fit one scratch binding. */
static bool attention_cpu_fits(vk_builder *b, uint64_t T, uint64_t Hq, uint64_t S) {
  uint64_t words = T * Hq * (S + 1);
  return words < (1ull << 31) &&
         words * 4 <= vk_builder_device(b)->phys->props.limits.maxStorageBufferRange;
}

static vnrt_status record_attention(vk_builder *b, const vnrt_backend_graph *g,
                                    const vnrt_backend_node *node) {
  const vnrt_tensor_type *tq = vk_in_type(g, node, 0), *tk = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tv = vk_in_type(g, node, 2);
  uint64_t T = (uint64_t)tq->dims[0], Hq = (uint64_t)tq->dims[1], D = (uint64_t)tq->dims[2];
  uint64_t S = (uint64_t)tk->dims[0], Hkv = (uint64_t)tk->dims[1], Dv = (uint64_t)tv->dims[2];
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_ATTENTION);
  for (int i = 0; i < node->n_inputs; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[9] = node->n_inputs > 3;
  d.spec[10] = node->n_inputs > 4;
  int64_t window = vnrt_node_attr_i(node, "window", 0);
  if (window < 0) window = 0;
  if ((uint64_t)window > S + T) window = (int64_t)(S + T); /* beyond that it masks nothing */
  double scale = vnrt_node_attr_f(node, "scale", 1.0 / sqrt((double)(D > 0 ? D : 1)));
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, S), vk_push_u(&d, 2, Hq), vk_push_u(&d, 3, Hkv);
  vk_push_u(&d, 4, D), vk_push_u(&d, 5, Dv);
  vk_push_u(&d, 6, vnrt_node_attr_i(node, "causal", 1) != 0);
  vk_push_u(&d, 7, (uint64_t)window);
  vk_push_f(&d, 8, (float)scale);
  if (vk_builder_cpu_kernels(b) && T * Hq > 0 && S > 0 && D % 4 == 0 && Dv % 4 == 0 &&
      Dv > 0 && attention_cpu_fits(b, T, Hq, S)) {
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

/* mHC: the mixing GEMM (X[T, n*C] . fn^T into scratch), then the per-token tail. */
static vnrt_status record_mhc(vk_builder *b, const vnrt_backend_graph *g,
                              const vnrt_backend_node *node) {
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0);
  uint64_t n = (uint64_t)tx->dims[1], C = (uint64_t)tx->dims[2], T = (uint64_t)tx->dims[0];
  vk_dispatch_desc d;
  if (node->op == VNRT_OP_HC_POST) {
    vk_desc_init(&d, VK_SHADER_MHC);
    for (int i = 0; i < 4; ++i) vk_bind(b, &d, i, node->inputs[i]);
    vk_bind(b, &d, 5, node->outputs[0]);
    d.spec[8] = 2;
    vk_push_u(&d, 0, T), vk_push_u(&d, 1, n), vk_push_u(&d, 2, C);
    vk_grid(b, vk_div_up(T * n * C, WG_ELEM), d.groups);
    return vk_emit(b, &d);
  }
  bool pre = node->op == VNRT_OP_HC_PRE;
  uint64_t rows = pre ? (n + 2) * n : n, K = n * C;
  vk_view mix = vk_scratch_view(b, T * rows * 4);
  vk_desc_init(&d, VK_SHADER_MATMUL);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 1, node->inputs[1]);
  d.slots[5] = mix;
  d.spec[5] = VNRT_F32;
  d.spec[9] = 1, d.spec[10] = 0; /* fn is [rows, n*C]: linear layout */
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, rows), vk_push_u(&d, 2, K);
  vk_push_u(&d, 3, K), vk_push_u(&d, 4, 1), vk_push_u(&d, 5, 1), vk_push_u(&d, 6, K);
  vk_push_u(&d, 7, 1);
  VK_TRY(vk_emit_gemm(b, &d, T, rows, 1, true));

  vk_desc_init(&d, VK_SHADER_MHC);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 2, node->inputs[2]);
  vk_bind(b, &d, 3, node->inputs[3]);
  for (int i = 0; i < node->n_outputs; ++i) vk_bind(b, &d, 5 + i, node->outputs[i]);
  d.slots[VK_SLOT_SCRATCH] = mix;
  d.spec[8] = pre ? 0 : 1;
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, n), vk_push_u(&d, 2, C);
  vk_push_u(&d, 3, (uint64_t)vnrt_node_attr_i(node, "iters", 20));
  vk_push_f(&d, 4, vnrt_node_attr_f(node, "eps", 1e-6));
  vk_push_f(&d, 5, vnrt_node_attr_f(node, "norm_eps", 1e-6));
  vk_grid(b, T, d.groups);
  return vk_emit(b, &d);
}

static vnrt_status record_sinkhorn(vk_builder *b, const vnrt_backend_graph *g,
                                   const vnrt_backend_node *node) {
  const vnrt_tensor_type *tl = vk_in_type(g, node, 0);
  uint64_t n = (uint64_t)tl->dims[tl->rank - 1];
  uint64_t batch = (uint64_t)numel(tl) / (n * n);
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MHC);
  vk_bind(b, &d, 0, node->inputs[0]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.spec[8] = 3;
  int64_t iters = vnrt_node_attr_i(node, "iters", 20);
  vk_push_u(&d, 0, batch), vk_push_u(&d, 1, n), vk_push_u(&d, 2, 1);
  vk_push_u(&d, 3, (uint64_t)(iters > 0 ? iters : 0));
  vk_push_f(&d, 4, vnrt_node_attr_f(node, "eps", 1e-6));
  vk_grid(b, batch, d.groups);
  return vk_emit(b, &d);
}

static vnrt_status record_route(vk_builder *b, const vnrt_backend_graph *g,
                                const vnrt_backend_node *node) {
  const vnrt_tensor_type *tl = vk_in_type(g, node, 0);
  uint64_t E = (uint64_t)tl->dims[tl->rank - 1], T = (uint64_t)numel(tl) / E;
  bool hash = node->op == VNRT_OP_MOE_HASH_ROUTE;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MOE_ROUTE);
  for (int i = 0; i < node->n_inputs; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  vk_bind(b, &d, 6, node->outputs[1]);
  d.spec[8] = hash ? 1 : 0;
  d.spec[9] = (uint32_t)score_code(node);
  d.spec[10] = !hash && node->n_inputs > 1;
  uint64_t k, V = 0;
  if (hash) {
    const vnrt_tensor_type *tt = vk_in_type(g, node, 2);
    V = (uint64_t)tt->dims[0];
    k = (uint64_t)tt->dims[1];
  } else {
    k = (uint64_t)vnrt_node_attr_i(node, "k", 1);
  }
  int64_t n_group = hash ? 1 : vnrt_node_attr_i(node, "n_group", 1);
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, E), vk_push_u(&d, 2, k);
  vk_push_u(&d, 3, (uint64_t)(n_group > 1 ? n_group : 1));
  vk_push_u(&d, 4, (uint64_t)vnrt_node_attr_i(node, "topk_group", 1));
  vk_push_u(&d, 5, vnrt_node_attr_i(node, "norm", 1) != 0);
  vk_push_u(&d, 6, V);
  vk_push_f(&d, 7, vnrt_node_attr_f(node, "scale", 1.0));
  vk_grid(b, T, d.groups);
  return vk_emit(b, &d);
}

static vnrt_status record_moe_ffn(vk_builder *b, const vnrt_backend_graph *g,
                                  const vnrt_backend_node *node) {
  const vnrt_tensor_type *tx = vk_in_type(g, node, 0), *te = vk_in_type(g, node, 1);
  const vnrt_tensor_type *tg = vk_in_type(g, node, 3);
  uint64_t C = (uint64_t)tx->dims[tx->rank - 1];
  uint64_t k = (uint64_t)te->dims[te->rank - 1];
  uint64_t T = C ? (uint64_t)numel(tx) / C : (k ? (uint64_t)numel(te) / k : 0);
  uint64_t F = (uint64_t)tg->dims[1] / 2, E = (uint64_t)tg->dims[0];
  if (T == 0 || C == 0) return VNRT_OK;
  vk_dispatch_desc d;
  vk_desc_init(&d, VK_SHADER_MOE_FFN);
  for (int i = 0; i < 5; ++i) vk_bind(b, &d, i, node->inputs[i]);
  vk_bind(b, &d, 5, node->outputs[0]);
  d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, T * k * F * 4);
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, C), vk_push_u(&d, 2, F), vk_push_u(&d, 3, k);
  vk_push_u(&d, 4, E);
  vk_push_f(&d, 5, vnrt_node_attr_f(node, "limit", 0.0));
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

static vnrt_status record_ngram(vk_builder *b, const vnrt_backend_graph *g,
                                const vnrt_backend_node *node) {
  const vnrt_backend_host *host = vk_builder_host(b);
  const vnrt_attr *mult = vnrt_node_attr(node, "mult");
  const vnrt_attr *primes = vnrt_node_attr(node, "primes");
  int64_t N = vnrt_node_attr_i(node, "max_n", mult->count);
  int64_t K = vnrt_node_attr_i(node, "heads", primes->count / (N - 1));
  uint64_t cols = (uint64_t)((N - 1) * K), T = (uint64_t)numel(vk_in_type(g, node, 0));
  size_t words = 2 * (size_t)N + (size_t)cols;
  uint32_t *c = host->alloc(host->core, sizeof *c * words);
  if (!c) return host->error(host->core, VNRT_ERROR_OUT_OF_MEMORY, "vulkan: out of memory");
  for (int64_t j = 0; j < N; ++j) {
    uint64_t m = (uint64_t)mult->ints[j]; /* the two's complement bits of the int64 */
    c[2 * j] = (uint32_t)m;
    c[2 * j + 1] = (uint32_t)(m >> 32);
  }
  for (uint64_t i = 0; i < cols; ++i) c[2 * N + (int64_t)i] = (uint32_t)primes->ints[i];
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

static vnrt_status record_engram(vk_builder *b, const vnrt_backend_graph *g,
                                 const vnrt_backend_node *node) {
  const vnrt_tensor_type *t0 = vk_in_type(g, node, 0);
  vk_dispatch_desc d;
  if (node->op == VNRT_OP_ENGRAM_LOOKUP) {
    const vnrt_tensor_type *ti = vk_in_type(g, node, 1);
    uint64_t D = (uint64_t)t0->dims[1], H = (uint64_t)ti->dims[ti->rank - 1];
    uint64_t n = (uint64_t)numel(ti) * D;
    vk_desc_init(&d, VK_SHADER_GATHER);
    for (int i = 0; i < 3; ++i) vk_bind(b, &d, i, node->inputs[i]);
    vk_bind(b, &d, 5, node->outputs[0]);
    d.spec[8] = 1;
    vk_push_u(&d, 0, n), vk_push_u(&d, 1, D), vk_push_u(&d, 2, H);
    vk_push_u(&d, 3, (uint64_t)t0->dims[0]);
    vk_grid(b, vk_div_up(n, WG_ELEM), d.groups);
    return vk_emit(b, &d);
  }
  uint64_t T = (uint64_t)t0->dims[0], M = (uint64_t)t0->dims[1], C = (uint64_t)t0->dims[2];
  vk_desc_init(&d, VK_SHADER_ENGRAM);
  for (int i = 0; i < node->n_inputs; ++i) vk_bind(b, &d, i, node->inputs[i]);
  for (int i = 0; i < node->n_outputs; ++i) vk_bind(b, &d, 5 + i, node->outputs[i]);
  vk_push_u(&d, 0, T), vk_push_u(&d, 1, M), vk_push_u(&d, 2, C);
  vk_push_f(&d, 6, vnrt_node_attr_f(node, "eps", 1e-6));
  if (node->op == VNRT_OP_ENGRAM_GATE) {
    d.spec[8] = 0;
    d.spec[9] = vnrt_node_attr_i(node, "sqrt_gate", 1) != 0;
    vk_grid(b, T * M, d.groups);
    return vk_emit(b, &d);
  }
  uint64_t K = (uint64_t)vk_in_type(g, node, 3)->dims[1];
  uint64_t dil = (uint64_t)vnrt_node_attr_i(node, "dilation", 1), P = (K - 1) * dil;
  vk_push_u(&d, 3, K), vk_push_u(&d, 4, P), vk_push_u(&d, 5, dil);
  d.slots[VK_SLOT_SCRATCH] = vk_scratch_view(b, T * M * C * 4);
  d.spec[8] = 1;
  vk_grid(b, T * M, d.groups);
  VK_TRY(vk_emit(b, &d));
  d.spec[8] = 2;
  vk_grid(b, vk_div_up((T + P) * M * C, WG_ELEM), d.groups);
  return vk_emit(b, &d);
}

vnrt_status vk_ops_model_record(vk_builder *b, const vnrt_backend_graph *g,
                                const vnrt_backend_node *node) {
  switch (node->op) {
    case VNRT_OP_ATTENTION:
      return record_attention(b, g, node);
    case VNRT_OP_HC_PRE:
    case VNRT_OP_HC_HEAD:
    case VNRT_OP_HC_POST:
      return record_mhc(b, g, node);
    case VNRT_OP_SINKHORN:
      return record_sinkhorn(b, g, node);
    case VNRT_OP_MOE_ROUTE:
    case VNRT_OP_MOE_HASH_ROUTE:
      return record_route(b, g, node);
    case VNRT_OP_MOE_FFN:
      return record_moe_ffn(b, g, node);
    case VNRT_OP_NGRAM_HASH:
      return record_ngram(b, g, node);
    case VNRT_OP_ENGRAM_LOOKUP:
    case VNRT_OP_ENGRAM_GATE:
    case VNRT_OP_SHORT_CONV:
      return record_engram(b, g, node);
    default:
      return vk_builder_host(b)->error(vk_builder_host(b)->core, VNRT_ERROR_INTERNAL,
                                       "vulkan: no recorder for op %s", vnrt_op_name(node->op));
  }
}
