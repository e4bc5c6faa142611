/* vnrt_sample: greedy or seeded temperature / top-k / top-p sampling of one token, exactly as
 * vnrt/model.h documents it (so that a seed reproduces a run anywhere). */
#include <math.h>
#include <stdlib.h>

#include "model_error.h"
#include "vnrt/model.h"

typedef struct cand {
  double p;
  int32_t id;
} cand;

/* Descending probability, ties: the lower id first. */
static int by_p(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? 1 : -1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* splitmix64: one step of the state, a uniform double in [0, 1). */
static double next_uniform(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

vnrt_status vnrt_sample(const float *logits, int64_t vocab, const vnrt_sampler_desc *desc,
                        uint64_t *state, int32_t *out_id) {
  if (out_id) *out_id = -1;
  if (!logits || !out_id || vocab < 1 || vocab > INT32_MAX) {
    return vn_model_error(VNRT_ERROR_INVALID_ARGUMENT,
                          "vnrt_sample: logits and out_id are needed and vocab must be in "
                          "[1, 2^31)");
  }
  vnrt_sampler_desc d = {0};
  if (desc) {
    if (desc->size != 0 && desc->size != sizeof d) {
      return vn_model_error(
          VNRT_ERROR_INVALID_ARGUMENT,
          "vnrt_sampler_desc.size is %zu: no version of vnrt_sampler_desc had that size (0 or %zu)",
          desc->size, sizeof d);
    }
    d = *desc;
  }
  if (!(d.temperature >= 0) || d.top_k < 0 || !(d.top_p >= 0 && d.top_p <= 1)) {
    return vn_model_error(VNRT_ERROR_INVALID_ARGUMENT,
                          "vnrt_sample: temperature %g, top_k %d, top_p %g: need temperature "
                          ">= 0, top_k >= 0, top_p in [0, 1]",
                          (double)d.temperature, (int)d.top_k, (double)d.top_p);
  }
  int64_t best = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (isnan(logits[i])) {
      return vn_model_error(VNRT_ERROR_INVALID_ARGUMENT, "vnrt_sample: logit %lld is NaN",
                            (long long)i);
    }
    if (logits[i] > logits[best]) best = i;
  }
  if (isinf(logits[best])) {
    return vn_model_error(VNRT_ERROR_INVALID_ARGUMENT,
                          "vnrt_sample: the largest logit is %g (no finite maximum)",
                          (double)logits[best]);
  }
  if (d.temperature == 0) {
    *out_id = (int32_t)best;
    return VNRT_OK;
  }
  if (!state) {
    return vn_model_error(VNRT_ERROR_INVALID_ARGUMENT,
                          "vnrt_sample: a state is needed when temperature > 0");
  }
  cand *c = malloc((size_t)vocab * sizeof *c);
  if (!c) return vn_model_error(VNRT_ERROR_OUT_OF_MEMORY, "vnrt_sample: out of memory");
  const double mx = logits[best];
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    c[i].p = exp(((double)logits[i] - mx) / (double)d.temperature);
    c[i].id = (int32_t)i;
    sum += c[i].p;
  }
  for (int64_t i = 0; i < vocab; ++i) c[i].p /= sum;
  qsort(c, (size_t)vocab, sizeof *c, by_p);
  int64_t n = vocab;
  if (d.top_k > 0 && d.top_k < n) n = d.top_k;
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += c[i].p;
  if (d.top_p > 0 && d.top_p < 1) {
    double acc = 0;
    int64_t keep = 0;
    while (keep < n) {
      acc += c[keep++].p;
      if (acc >= (double)d.top_p * total) break;
    }
    n = keep;
    total = acc;
  }
  if (*state == 0) *state = d.seed ? d.seed : 1;
  const double u = next_uniform(state) * total;
  double acc = 0;
  int32_t id = c[n - 1].id;
  for (int64_t i = 0; i < n; ++i) {
    acc += c[i].p;
    if (acc > u) {
      id = c[i].id;
      break;
    }
  }
  free(c);
  *out_id = id;
  return VNRT_OK;
}
