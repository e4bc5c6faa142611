/* CPU reference kernels for the Engram ops (ngram_hash, engram_lookup, engram_gate,
 * short_conv): docs/ops.md "Engram", literally. */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"

/* ---- ngram_hash ------------------------------------------------------------------------ */

vnrt_status cpu_ref_ngram_hash(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_ngram_hash_params *p = &node->params->ngram_hash;
  if (!p->mult || !p->primes) {
    return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                          "ngram_hash %s: needs the INTS attributes mult and primes", node->name);
  }
  const int64_t N = p->max_n;
  const int64_t K = p->heads;
  const int64_t T = vnrt_tensor_type_numel(a->in_type[0]);
  const int64_t cols = (N - 1) * K;
  if (N < 2 || N > p->n_mult || K < 1 || cols > p->n_primes ||
      vnrt_tensor_type_numel(a->in_type[1]) != N - 1 ||
      vnrt_tensor_type_numel(a->out_type[0]) != T * cols) {
    return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                          "ngram_hash %s: max_n=%lld, heads=%lld do not fit mult (%d values), "
                          "primes (%d values), hist (%lld values) and ids (%lld values)",
                          node->name, (long long)N, (long long)K, p->n_mult, p->n_primes,
                          (long long)vnrt_tensor_type_numel(a->in_type[1]), (long long)T);
  }
  for (int64_t c = 0; c < cols; ++c) {
    /* The index is stored as i32, so a modulus beyond INT32_MAX could not be represented. */
    if (p->primes[c] <= 0 || p->primes[c] > INT32_MAX) {
      return a->host->error(a->host->core, VNRT_ERROR_INVALID_ARGUMENT,
                            "ngram_hash %s: primes[%lld]=%lld must be in [1, %d]", node->name,
                            (long long)c, (long long)p->primes[c], INT32_MAX);
    }
  }
  const int32_t *ids = (const int32_t *)a->in[0];
  const int32_t *hist = (const int32_t *)a->in[1];
  int32_t *idx = (int32_t *)a->out[0];

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
        int64_t r = smix % prime; /* C truncates toward zero; the spec wants the floor modulo */
        if (r < 0) r += prime;
        idx[t * cols + c] = (int32_t)r;
      }
    }
  }
  return VNRT_OK;
}

/* ---- engram_lookup --------------------------------------------------------------------- */

vnrt_status cpu_ref_engram_lookup(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_tensor_type *tt = a->in_type[0], *it = a->in_type[1], *ft = a->in_type[2];
  if (tt->rank != 2 || it->rank < 1) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "engram_lookup %s: expects table[R, D] and idx[T, H]", node->name);
  }
  const int64_t R = tt->dims[0], D = tt->dims[1];
  const int64_t H = it->dims[it->rank - 1];
  const int64_t rows = H > 0 ? vnrt_tensor_type_numel(it) / H : 0;
  if (vnrt_tensor_type_numel(ft) != H || vnrt_tensor_type_numel(a->out_type[0]) != rows * H * D) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "engram_lookup %s: expects offsets[H=%lld] and e[T, H*D]", node->name,
                          (long long)H);
  }
  const int32_t *idx = (const int32_t *)a->in[1];
  const int32_t *offsets = (const int32_t *)a->in[2];

  /* Every row is checked before anything is written, so a bad index leaves no half-written
   * output behind. */
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t row = (int64_t)offsets[h] + idx[t * H + h];
      if (row < 0 || row >= R) {
        return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_RANGE,
                              "engram_lookup %s: row %lld (offsets[%lld]=%d + idx[%lld, %lld]=%d) "
                              "is out of range [0, %lld) of the table",
                              node->name, (long long)row, (long long)h, offsets[h], (long long)t,
                              (long long)h, idx[t * H + h], (long long)R);
      }
    }
  }
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t row = (int64_t)offsets[h] + idx[t * H + h];
      for (int64_t d = 0; d < D; ++d) {
        /* Heads are concatenated along the feature axis, never summed. */
        cpu_store_f32(a->out[0], a->out_type[0]->dtype, (t * H + h) * D + d,
                      cpu_load_f32(a->in[0], tt->dtype, row * D + d));
      }
    }
  }
  return VNRT_OK;
}

/* ---- engram_gate ----------------------------------------------------------------------- */

/* 1/sqrt(mean(x^2) + eps) of the C values of x starting at element off. */
static float inv_rms(const void *x, vnrt_dtype dt, int64_t off, int64_t C, float eps) {
  float ss = 0.0f;
  for (int64_t c = 0; c < C; ++c) {
    const float v = cpu_load_f32(x, dt, off + c);
    ss += v * v;
  }
  return 1.0f / sqrtf(ss / (float)C + eps);
}

vnrt_status cpu_ref_engram_gate(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_tensor_type *ht = a->in_type[0];
  if (ht->rank != 3) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "engram_gate %s: expects h[T, M, C]", node->name);
  }
  const int64_t T = ht->dims[0], M = ht->dims[1], C = ht->dims[2];
  if (vnrt_tensor_type_numel(a->in_type[1]) != T * M * C ||
      vnrt_tensor_type_numel(a->in_type[2]) != T * C ||
      vnrt_tensor_type_numel(a->in_type[3]) != M * C ||
      vnrt_tensor_type_numel(a->in_type[4]) != M * C) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "engram_gate %s: expects k[T, M, C], v[T, C], wh[M, C], wk[M, C]",
                          node->name);
  }
  const float eps = (float)node->params->engram_gate.eps;
  const int sqrt_gate = node->params->engram_gate.sqrt_gate != 0;
  const vnrt_dtype hd = ht->dtype, kd = a->in_type[1]->dtype, vd = a->in_type[2]->dtype;
  const vnrt_dtype whd = a->in_type[3]->dtype, wkd = a->in_type[4]->dtype;
  const vnrt_dtype od = a->out_type[0]->dtype;
  const float inv_sqrt_c = 1.0f / sqrtf((float)C);

  for (int64_t t = 0; t < T; ++t) {
    for (int64_t m = 0; m < M; ++m) {
      const int64_t off = (t * M + m) * C;
      const float rh = inv_rms(a->in[0], hd, off, C, eps);
      const float rk = inv_rms(a->in[1], kd, off, C, eps);
      float g = 0.0f;
      for (int64_t c = 0; c < C; ++c) {
        const float hn =
            cpu_load_f32(a->in[0], hd, off + c) * rh * cpu_load_f32(a->in[3], whd, m * C + c);
        const float kn =
            cpu_load_f32(a->in[1], kd, off + c) * rk * cpu_load_f32(a->in[4], wkd, m * C + c);
        g += hn * kn;
      }
      g *= inv_sqrt_c;
      if (sqrt_gate) {
        /* The Engram demo's signed square root (its 1e-6 floor is docs/ops.md's constant,
         * not eps); sign(0) = 0 keeps g = 0. */
        const float sgn = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f);
        g = sgn * sqrtf(fmaxf(fabsf(g), 1e-6f));
      }
      const float alpha = 1.0f / (1.0f + expf(-g));
      for (int64_t c = 0; c < C; ++c) {
        cpu_store_f32(a->out[0], od, off + c, alpha * cpu_load_f32(a->in[2], vd, t * C + c));
      }
    }
  }
  return VNRT_OK;
}

/* ---- short_conv ------------------------------------------------------------------------ */

vnrt_status cpu_ref_short_conv(const cpu_kernel_args *a) {
  const vnrt_backend_node *node = a->node;
  const vnrt_tensor_type *ut = a->in_type[0], *ht = a->in_type[1], *wt = a->in_type[3];
  const int64_t dil = node->params->short_conv.dilation;
  if (ut->rank != 3 || wt->rank != 2 || dil < 1) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "short_conv %s: expects u[T, M, C], w[M*C, K] and dilation >= 1",
                          node->name);
  }
  const int64_t T = ut->dims[0], M = ut->dims[1], C = ut->dims[2], K = wt->dims[1];
  const int64_t P = (K - 1) * dil;
  if (K < 1 || wt->dims[0] != M * C || vnrt_tensor_type_numel(ht) != P * M * C ||
      ht->dtype != ut->dtype || vnrt_tensor_type_numel(a->in_type[2]) != M * C ||
      vnrt_tensor_type_numel(a->out_type[0]) != T * M * C ||
      vnrt_tensor_type_numel(a->out_type[1]) != P * M * C) {
    return a->host->error(a->host->core, VNRT_ERROR_SHAPE_MISMATCH,
                          "short_conv %s: expects hist[P=%lld, M, C] of u's dtype, wn[M, C], "
                          "w[M*C, K] for u[T, M, C]",
                          node->name, (long long)P);
  }
  const float eps = (float)node->params->short_conv.eps;
  const vnrt_dtype ud = ut->dtype, nd = a->in_type[2]->dtype, wd = wt->dtype;
  const vnrt_dtype yd = a->out_type[0]->dtype, hd = a->out_type[1]->dtype;
  const int64_t MC = M * C;

  /* One rms scale per (t, m): z = u * scale * wn is formed on the fly from it. */
  float *scale = NULL;
  if (T * M > 0) {
    scale = (float *)a->host->alloc(a->host->core, (size_t)(T * M) * sizeof(float));
    if (!scale) {
      return a->host->error(a->host->core, VNRT_ERROR_OUT_OF_MEMORY,
                            "short_conv %s: no memory for %lld norm scales", node->name,
                            (long long)(T * M));
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t m = 0; m < M; ++m) {
      scale[t * M + m] = inv_rms(a->in[0], ud, (t * M + m) * C, C, eps);
    }
  }
/* Z[r, m, c] for r in [0, P + T): hist for r < P, else rms_norm(u[r - P, m], wn[m]). */
#define SC_Z(r, m, c)                                                                            \
  ((r) < P ? cpu_load_f32(a->in[1], ud, (r)*MC + (m)*C + (c))                                    \
           : cpu_load_f32(a->in[0], ud, ((r)-P) * MC + (m)*C + (c)) * scale[((r)-P) * M + (m)] * \
                 cpu_load_f32(a->in[2], nd, (m)*C + (c)))

  for (int64_t t = 0; t < T; ++t) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t q = m * C + c;
        float acc = 0.0f;
        for (int64_t i = 0; i < K; ++i) {
          const int64_t r = P + t - (K - 1 - i) * dil;
          acc += cpu_load_f32(a->in[3], wd, q * K + i) * SC_Z(r, m, c);
        }
        const float silu = acc / (1.0f + expf(-acc));
        cpu_store_f32(a->out[0], yd, t * MC + q, silu + cpu_load_f32(a->in[0], ud, t * MC + q));
      }
    }
  }
  /* hist_out is the last P rows of Z; when T < P the first of them still come from hist. */
  for (int64_t r = 0; r < P; ++r) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t c = 0; c < C; ++c) {
        cpu_store_f32(a->out[1], hd, r * MC + m * C + c, SC_Z(T + r, m, c));
      }
    }
  }
#undef SC_Z
  if (scale) a->host->free(a->host->core, scale);
  return VNRT_OK;
}
