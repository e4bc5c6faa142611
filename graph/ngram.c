/* The n-gram hash of docs/ops.md's ngram_hash, for the host: the runtime hashes token ids with
 * it to prefetch Engram rows before the device computes the same indices. */
#include "graph.h"

void vn_ngram_hash(const vnrt_ngram_hash_params *p, const int32_t *ids, int64_t T,
                   const int32_t *hist, int32_t *idx) {
  const int64_t N = p->max_n, K = p->heads;
  const int64_t cols = (N - 1) * K;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t n = 2; n <= N; ++n) {
      /* Wrapping 64-bit multiplies: done in uint64_t, where overflow is defined. */
      uint64_t mix = 0;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t tj = t - j;
        const int32_t tok = tj >= 0 ? ids[tj] : hist[N - 1 + tj];
        mix ^= (uint64_t)(int64_t)tok * (uint64_t)p->mult[j];
      }
      const int64_t smix = (int64_t)mix; /* two's complement reinterpretation */
      for (int64_t h = 0; h < K; ++h) {
        const int64_t c = (n - 2) * K + h;
        const int64_t prime = p->primes[c];
        int64_t r = smix % prime; /* C truncates toward zero; docs/ops.md wants the floor modulo */
        if (r < 0) r += prime;
        idx[t * cols + c] = (int32_t)r;
      }
    }
  }
}
