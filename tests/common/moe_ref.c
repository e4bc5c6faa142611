/* The MoE inputs and double-precision references shared by the conformance suite and the
 * backends' tests (moe_ref.h). */
#include "moe_ref.h"

#include <math.h>
#include <stdlib.h>

const char *const score_words[3] = {"sigmoid", "softmax", "sqrt_softplus"};

static tu_tensor tensor(vnrt_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2) {
  int64_t dims[4] = {d0, d1, d2, 0};
  return tu_tensor_new(dt, rank, dims);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

void make_hash_inputs(const hash_case *c, uint64_t seed, tu_tensor in[3]) {
  uint64_t s = seed;
  in[0] = tensor(VNRT_F32, 2, c->T, c->E, 0);
  in[1] = tensor(VNRT_I32, 1, c->T, 0, 0);
  in[2] = tensor(VNRT_I32, 2, c->V, c->k, 0);
  tu_fill_uniform(&in[0], seed, -3.0f, 3.0f);
  for (int64_t t = 0; t < c->T; ++t) tu_set(&in[1], t, (double)(rng_next(&s) % (uint64_t)c->V));
  for (int64_t v = 0; v < c->V; ++v) {
    /* k distinct experts per token id, like a real frozen table. */
    int64_t start = (int64_t)(rng_next(&s) % (uint64_t)c->E);
    for (int64_t i = 0; i < c->k; ++i) {
      tu_set(&in[2], v * c->k + i, (double)((start + 3 * i) % c->E));
    }
  }
}

static vnrt_attr hash_attrs_[3];
const vnrt_attr *hash_attrs(const hash_case *c) {
  hash_attrs_[0] = tu_attr_word("score", score_words[c->kind]);
  hash_attrs_[1] = tu_attr_i("norm", c->norm);
  hash_attrs_[2] = tu_attr_f("scale", c->scale);
  return hash_attrs_;
}

void ffn_d(int64_t T, int64_t C, int64_t F, int64_t k, double limit, const double *x,
           const double *ex, const double *w, const double *wgu, const double *wd, double *y) {
  double *h = calloc((size_t)(F > 0 ? F : 1), sizeof *h);
  ck_assert_ptr_nonnull(h);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < C; ++c) y[t * C + c] = 0.0;
    for (int64_t i = 0; i < k; ++i) {
      int64_t e = (int64_t)ex[t * k + i];
      for (int64_t f = 0; f < F; ++f) {
        double g = 0.0, u = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          g += wgu[(e * 2 * F + f) * C + c] * x[t * C + c];
          u += wgu[(e * 2 * F + F + f) * C + c] * x[t * C + c];
        }
        if (limit > 0.0) {
          g = fmin(g, limit);
          u = fmax(-limit, fmin(u, limit));
        }
        h[f] = g * sigm(g) * u;
      }
      for (int64_t c = 0; c < C; ++c) {
        double d = 0.0;
        for (int64_t f = 0; f < F; ++f) d += wd[(e * C + c) * F + f] * h[f];
        y[t * C + c] += w[t * k + i] * d;
      }
    }
  }
  free(h);
}

void make_ffn_inputs(const ffn_case *c, uint64_t seed, tu_tensor in[5]) {
  uint64_t s = seed;
  in[0] = tensor(c->xdt, 2, c->T, c->C, 0);
  in[1] = tensor(VNRT_I32, 2, c->T, c->k, 0);
  in[2] = tensor(c->wdt, 2, c->T, c->k, 0);
  in[3] = tensor(c->gdt, 3, c->E, 2 * c->F, c->C);
  in[4] = tensor(c->ddt, 3, c->E, c->C, c->F);
  tu_fill_uniform(&in[0], seed, -1.5f, 1.5f);
  for (int64_t i = 0; i < c->T * c->k; ++i) {
    tu_set(&in[1], i, (double)(rng_next(&s) % (uint64_t)c->E));
  }
  tu_fill_uniform(&in[2], seed + 1, 0.1f, 1.0f);
  tu_fill_uniform(&in[3], seed + 2, -0.5f, 0.5f);
  tu_fill_uniform(&in[4], seed + 3, -0.5f, 0.5f);
}

void make_ffn_q_inputs(const ffn_case *c, const int32_t *ex, uint64_t seed, tu_tensor in[7]) {
  in[0] = tensor(c->xdt, 2, c->T, c->C, 0);
  in[1] = tensor(VNRT_I32, 2, c->T, c->k, 0);
  in[2] = tensor(c->wdt, 2, c->T, c->k, 0);
  in[3] = tensor(c->gdt, 3, c->E, 2 * c->F, c->C);
  in[4] = tensor(c->ddt, 3, c->E, c->C, c->F);
  in[5] = tensor(VNRT_E8M0, 3, c->E, 2 * c->F, (c->C + 31) / 32);
  in[6] = tensor(VNRT_E8M0, 3, c->E, c->C, (c->F + 31) / 32);
  tu_fill_uniform(&in[0], seed, -1.0f, 1.0f);
  for (int64_t i = 0; i < c->T * c->k; ++i) tu_set(&in[1], i, ex[i]);
  tu_fill_uniform(&in[2], seed + 1, 0.1f, 1.0f);
}
