/* The cost model of docs/ops.md ("Attribute limits and empty tensors"): per-node estimates of
 * the work of one run, from types and resolved params, in saturating 64-bit arithmetic. */
#include "cost.h"

uint64_t vn_type_numel_sat(const vnrt_tensor_type *type) {
  if (!type || type->rank < 0 || type->rank > VNRT_MAX_DIMS) return 0;
  uint64_t n = 1;
  for (int32_t i = 0; i < type->rank; ++i) {
    if (type->dims[i] <= 0) return 0;
  }
  for (int32_t i = 0; i < type->rank; ++i) n = vn_sat_mul(n, (uint64_t)type->dims[i]);
  return n;
}

/* A product of up to six factors, saturating. */
static uint64_t prod(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, uint64_t f) {
  return vn_sat_mul(vn_sat_mul(vn_sat_mul(a, b), vn_sat_mul(c, d)), vn_sat_mul(e, f));
}

static uint64_t dim(const vnrt_tensor_type *t, int32_t i) {
  if (i < 0) i += t->rank;
  return i >= 0 && i < t->rank && t->dims[i] > 0 ? (uint64_t)t->dims[i] : 0;
}

/* ceil(log2(x)) for x >= 1, at least 1. */
static uint64_t log2_ceil(uint64_t x) {
  uint64_t l = 1;
  while (l < 63 && (1ull << l) < x) ++l;
  return l;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* The elements of a gather table input of which one run reads at most `reads` rows. */
static uint64_t table_rows(const vnrt_tensor_type *table, uint64_t reads) {
  uint64_t rows = dim(table, 0), numel = vn_type_numel_sat(table);
  if (rows == 0) return 0;
  return vn_sat_mul(min_u64(rows, reads), numel / rows);
}

vn_cost vn_node_cost(const vnrt_graph *g, const vn_node *nd) {
  vn_cost c = {0, 0};
  const vnrt_tensor_type *in[VNRT_MAX_NODE_INPUTS] = {0};
  const vnrt_tensor_type *out[VNRT_MAX_NODE_OUTPUTS] = {0};
  uint64_t in_n[VNRT_MAX_NODE_INPUTS] = {0};
  uint64_t out_total = 0;
  for (int32_t i = 0; i < nd->n_inputs && i < VNRT_MAX_NODE_INPUTS; ++i) {
    in[i] = &g->values[nd->inputs[i]].type;
    in_n[i] = vn_type_numel_sat(in[i]);
  }
  for (int32_t i = 0; i < nd->n_outputs && i < VNRT_MAX_NODE_OUTPUTS; ++i) {
    out[i] = &g->values[nd->outputs[i]].type;
    out_total = vn_sat_add(out_total, vn_type_numel_sat(out[i]));
  }
  /* docs/ops.md: an op whose results have no elements costs nothing. */
  if (out_total == 0 || nd->n_inputs < 1 || nd->n_outputs < 1) return c;
  const uint64_t on = vn_type_numel_sat(out[0]);
  const vnrt_op_params *pr = &nd->params;

  switch (nd->op) {
    case VNRT_OP_MATMUL:
    case VNRT_OP_LINEAR:
      c.flops = prod(2, on, dim(in[0], -1), 1, 1, 1);
      if (nd->op == VNRT_OP_LINEAR && pr->linear.act_quant) {
        c.flops = vn_sat_add(c.flops, vn_sat_mul(4, in_n[0]));
      }
      break;
    case VNRT_OP_GROUPED_LINEAR:
      c.flops = prod(2, on, dim(in[1], -1), 1, 1, 1);
      break;
    case VNRT_OP_ATTENTION: {
      uint64_t T = dim(in[0], 0), H = dim(in[0], 1), D = dim(in[0], 2);
      uint64_t S = dim(in[1], 0), Dv = dim(in[2], 2);
      uint64_t keys = pr->attention.window > 0 ? min_u64(S, (uint64_t)pr->attention.window) : S;
      c.flops = prod(2, T, H, keys, vn_sat_add(vn_sat_add(D, Dv), 2), 1);
      break;
    }
    case VNRT_OP_SPARSE_ATTENTION: {
      uint64_t T = dim(in[0], 0), H = dim(in[0], 1), D = dim(in[0], 2);
      uint64_t keys = dim(in[2], 0); /* the window: W positions at most */
      if (pr->sparse_attention.has_idx && nd->n_inputs > 6) {
        keys = vn_sat_add(keys, dim(in[6], 1));
      } else if (pr->sparse_attention.has_comp && nd->n_inputs > 5) {
        keys = vn_sat_add(keys, dim(in[5], 0));
      }
      c.flops = prod(4, T, H, keys, vn_sat_add(D, 1), 1);
      break;
    }
    case VNRT_OP_INDEX_SCORES: {
      uint64_t T = dim(in[0], 0), Hi = dim(in[0], 1), Di = dim(in[0], 2), S = dim(in[1], 0);
      c.flops = prod(2, T, S, Hi, vn_sat_add(Di, 2), 1);
      break;
    }
    case VNRT_OP_MOE_FFN: {
      /* Per (token, chosen expert): gate and up (2F x C), down (C x F), swiglu, the weighted sum.
       */
      uint64_t T = dim(in[0], 0), C = dim(in[0], 1), k = dim(in[1], 1), F = dim(in[4], 2);
      uint64_t per = vn_sat_add(prod(6, F, C, 1, 1, 1), vn_sat_add(prod(4, F, 1, 1, 1, 1), 2 * C));
      c.flops = prod(T, k, per, 1, 1, 1);
      if (pr->moe_ffn.act_quant)
        c.flops = vn_sat_add(c.flops, prod(4, T, k, vn_sat_add(C, F), 1, 1));
      /* Only the experts a run chooses are read: min(E, T*k) of them. */
      uint64_t reads = vn_sat_mul(T, k);
      in_n[3] = table_rows(in[3], reads);
      in_n[4] = table_rows(in[4], reads);
      break;
    }
    case VNRT_OP_EMBEDDING:
      c.flops = on;
      in_n[0] = table_rows(in[0], in_n[1]);
      break;
    case VNRT_OP_ENGRAM_LOOKUP:
      c.flops = on;
      in_n[0] = table_rows(in[0], in_n[1]);
      break;
    case VNRT_OP_TOPK: { /* a heap of k over each row of E */
      uint64_t k = pr->topk.k > 0 ? (uint64_t)pr->topk.k : 1;
      c.flops = vn_sat_mul(in_n[0], vn_sat_add(log2_ceil(k + 1), 1));
      break;
    }
    case VNRT_OP_MOE_ROUTE: {
      uint64_t k = pr->moe_route.k > 0 ? (uint64_t)pr->moe_route.k : 1;
      c.flops = vn_sat_mul(in_n[0], vn_sat_add(log2_ceil(k + 1), 8));
      break;
    }
    case VNRT_OP_MOE_HASH_ROUTE:
      c.flops = vn_sat_add(vn_sat_mul(in_n[0], 4), vn_sat_mul(on, 8));
      in_n[2] = table_rows(in[2], in_n[1]);
      break;
    case VNRT_OP_HC_PRE: {
      /* Per token: the (n+2)n x nC mix, the norm and pre-weighted sum over nC, the sinkhorn
       * iterations over n x n. */
      uint64_t T = dim(in[0], 0), n = dim(in[0], 1), C = dim(in[0], 2);
      uint64_t iters = pr->hc_pre.iters > 0 ? (uint64_t)pr->hc_pre.iters : 1;
      uint64_t per = prod(2, n + 2, n, n, C, 1);
      per = vn_sat_add(per, prod(4, n, C, 1, 1, 1));
      per = vn_sat_add(per, prod(4, iters + 1, n, n, 1, 1));
      c.flops = vn_sat_mul(T, vn_sat_add(per, prod(8, n + 2, n, 1, 1, 1)));
      break;
    }
    case VNRT_OP_HC_POST: {
      uint64_t T = dim(in[0], 0), n = dim(in[0], 1), C = dim(in[0], 2);
      c.flops = prod(T, n, C, vn_sat_add(vn_sat_mul(2, n), 2), 1, 1);
      break;
    }
    case VNRT_OP_HC_HEAD: {
      uint64_t T = dim(in[0], 0), n = dim(in[0], 1), C = dim(in[0], 2);
      c.flops = prod(T, n, C, vn_sat_add(vn_sat_mul(2, n), 4), 1, 1);
      break;
    }
    case VNRT_OP_SINKHORN: {
      uint64_t iters = pr->sinkhorn.iters > 0 ? (uint64_t)pr->sinkhorn.iters : 1;
      c.flops = prod(in_n[0], 4, iters + 1, 1, 1, 1);
      break;
    }
    case VNRT_OP_NGRAM_HASH: {
      /* Per token and order n <= N: n multiplies and XORs, then one modulo per head. */
      uint64_t T = dim(in[0], 0), N = pr->ngram_hash.max_n > 0 ? (uint64_t)pr->ngram_hash.max_n : 1;
      c.flops = vn_sat_add(prod(2, T, N, N, 1, 1), vn_sat_mul(2, on));
      break;
    }
    case VNRT_OP_ENGRAM_GATE:
      c.flops = vn_sat_mul(10, on);
      break;
    case VNRT_OP_SHORT_CONV: {
      uint64_t K = dim(in[3], 1);
      c.flops = vn_sat_add(vn_sat_mul(on, vn_sat_add(vn_sat_mul(2, K), 8)), in_n[1]);
      break;
    }
    case VNRT_OP_KV_COMPRESS: {
      /* Per entry: a softmax and weighted sum over c*m slots of d channels; per position: ape. */
      uint64_t N = dim(out[0], 0), d = dim(out[0], 1), m = dim(in[2], 0);
      uint64_t cs = pr->kv_compress.overlap ? 2 : 1;
      c.flops = vn_sat_add(prod(6, N, cs, m, d, 1), vn_sat_mul(2, in_n[0]));
      break;
    }
    case VNRT_OP_KV_WRITE:
    case VNRT_OP_KV_SCATTER:
      c.flops = in_n[1];
      break;
    case VNRT_OP_RMS_NORM:
    case VNRT_OP_SOFTMAX:
    case VNRT_OP_SWIGLU:
    case VNRT_OP_FAKE_QUANT:
    case VNRT_OP_ROPE:
      c.flops = vn_sat_mul(4, on);
      break;
    case VNRT_OP_HADAMARD:
      c.flops = vn_sat_mul(on, vn_sat_add(log2_ceil(dim(in[0], -1)), 1));
      break;
    default: /* elementwise, shape and copies: one operation per result element */
      c.flops = out_total;
      break;
  }
  for (int32_t i = 0; i < nd->n_inputs && i < VNRT_MAX_NODE_INPUTS; ++i) {
    c.elements = vn_sat_add(c.elements, in_n[i]);
  }
  c.elements = vn_sat_add(c.elements, out_total);
  return c;
}
