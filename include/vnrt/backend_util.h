/* Shape helpers every backend needs, written once (installed beside vnrt/backend.h).
 *
 * Header-only and static inline, so a plugin uses them without linking anything from vnrt.
 * Shapes are outermost-first and row-major (docs/vnir.md); broadcasting is numpy's: dims are
 * aligned on the right and an extent-1 or missing dim repeats (stride 0).
 */
#ifndef VNRT_BACKEND_UTIL_H_
#define VNRT_BACKEND_UTIL_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "vnrt/backend.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Transparent huge pages (Linux THP) for host memory that kernels stream: a decode step reads
 * every weight once, and in 4 KiB pages each 4 KiB costs a TLB miss (a two-level page walk under
 * a hypervisor). Buffers of VNRT_HUGE_MIN_BYTES and more are worth it (the CPU backend's and
 * the OpenCL backend's SVM buffers on CPU drivers, option cpu_huge_pages). */
#define VNRT_HUGE_PAGE_BYTES ((uint64_t)2 << 20)
#define VNRT_HUGE_MIN_BYTES ((uint64_t)8 << 20)

/* Advises MADV_HUGEPAGE over the whole huge pages inside [p, p + bytes), before they are first
 * touched. Advice only: nothing where THP is off or the system has no madvise. */
static inline void vnrt_advise_huge_pages(void *p, uint64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t m = (uintptr_t)VNRT_HUGE_PAGE_BYTES - 1;
  const uintptr_t a = ((uintptr_t)p + m) & ~m, e = ((uintptr_t)p + (uintptr_t)bytes) & ~m;
  if (e > a) (void)madvise((void *)a, (size_t)(e - a), MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

/* The context option key through host->option, or NULL where the core has no such slot. */
static inline const char *vnrt_host_option(const vnrt_backend_host *host, const char *key) {
  if (!host || host->struct_size < offsetof(vnrt_backend_host, option) + sizeof host->option ||
      !host->option) {
    return NULL;
  }
  return host->option(host->core, key);
}

/* A context option read as a switch: `dflt` when unset or empty, off when "0", on otherwise
 * (the rule every backend's on/off options follow, docs/api.md). */
static inline int vnrt_host_option_flag(const vnrt_backend_host *host, const char *key, int dflt) {
  const char *v = vnrt_host_option(host, key);
  if (!v || !v[0]) return dflt;
  return !(v[0] == '0' && v[1] == '\0');
}

/* A context option read as a whole number in [0, max]: `dflt` when unset or empty; when not
 * such a number (decimal digits only: an environment value reaches the backend unchecked), a
 * warning through host->log and `dflt`. */
static inline int64_t vnrt_host_option_uint(const vnrt_backend_host *host, const char *key,
                                            int64_t dflt, int64_t max) {
  const char *v = vnrt_host_option(host, key);
  if (!v || !v[0]) return dflt;
  int64_t n = 0;
  for (const char *c = v; *c; ++c) {
    const int d = *c - '0';
    if (d < 0 || d > 9 || d > max || n > (max - d) / 10) {
      host->log(host->core, VNRT_LOG_WARN,
                "option %s=\"%s\" is not a whole number in [0, %lld]: using %lld", key, v,
                (long long)max, (long long)dflt);
      return dflt;
    }
    n = n * 10 + d;
  }
  return n;
}

/* Element count of t (1 for a scalar). */
static inline int64_t vnrt_numel(const vnrt_tensor_type *t) {
  int64_t n = 1;
  for (int32_t d = 0; d < t->rank; ++d) n *= t->dims[d];
  return n;
}

/* Product of dims [first, last) of t: vnrt_dims_product(t, 0, t->rank - 1) is the row count
 * of a row op over the last axis. */
static inline int64_t vnrt_dims_product(const vnrt_tensor_type *t, int32_t first, int32_t last) {
  int64_t n = 1;
  for (int32_t d = first; d < last; ++d) n *= t->dims[d];
  return n;
}

/* Row-major element strides of t: strides[d] for d in [0, rank). */
static inline void vnrt_strides(const vnrt_tensor_type *t, int64_t *strides) {
  int64_t s = 1;
  for (int32_t d = t->rank - 1; d >= 0; --d) {
    strides[d] = s;
    s *= t->dims[d];
  }
}

/* Element strides of `in` as seen from a result of rank `rank` (numpy broadcasting): strides
 * has rank entries; dims of `in` that are missing or of extent 1 get stride 0. */
static inline void vnrt_broadcast_strides(const vnrt_tensor_type *in, int32_t rank,
                                          int64_t *strides) {
  int64_t s = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    int32_t id = d - (rank - in->rank);
    if (id < 0) {
      strides[d] = 0;
      continue;
    }
    strides[d] = in->dims[id] == 1 ? 0 : s;
    s *= in->dims[id];
  }
}

/* The batch strides of a matmul operand t ([..., R, C]) as seen from a result with nb batch
 * dims (nb <= 2): out[2] is right-aligned and padded on the left with 0; an extent-1 or
 * missing batch dim broadcasts (stride 0). Strides count elements of t. */
static inline void vnrt_matmul_batch_strides(const vnrt_tensor_type *t, int32_t nb,
                                             int64_t out[2]) {
  int32_t tb = t->rank - 2;
  int64_t s = t->dims[t->rank - 2] * t->dims[t->rank - 1];
  out[0] = out[1] = 0;
  for (int32_t d = nb - 1; d >= 0; --d) {
    int32_t td = d - (nb - tb);
    if (td < 0) break;
    out[2 - nb + d] = t->dims[td] == 1 ? 0 : s;
    s *= t->dims[td];
  }
}

/* Dims and row-major strides of t right-aligned into 4 slots (leading dims 1, strides 0), the
 * form GPU kernels take as push constants. */
static inline void vnrt_dims4(const vnrt_tensor_type *t, int64_t out[4]) {
  for (int32_t i = 0; i < 4; ++i) out[i] = 1;
  for (int32_t d = 0; d < t->rank; ++d) out[4 - t->rank + d] = t->dims[d];
}
static inline void vnrt_strides4(const vnrt_tensor_type *t, int64_t out[4]) {
  int64_t s = 1;
  for (int32_t i = 0; i < 4; ++i) out[i] = 0;
  for (int32_t d = t->rank - 1; d >= 0; --d) {
    out[4 - t->rank + d] = s;
    s *= t->dims[d];
  }
}

/* The tensor of a node's i-th input or output. */
static inline const vnrt_backend_tensor *vnrt_node_input(const vnrt_backend_graph *g,
                                                         const vnrt_backend_node *node, int32_t i) {
  return &g->tensors[node->inputs[i]];
}
static inline const vnrt_backend_tensor *vnrt_node_output(const vnrt_backend_graph *g,
                                                          const vnrt_backend_node *node,
                                                          int32_t i) {
  return &g->tensors[node->outputs[i]];
}

/* The bounds [low, high] of YaRN's ramp over rope's pairs (vnrt_rope_freq); p->yarn_factor set. */
static inline void vnrt_rope_yarn_ramp(const vnrt_rope_params *p, double *low, double *high) {
  const double dims = (double)p->dims;
  const double two_pi = 6.283185307179586476925286766559;
  const double l = (double)p->yarn_orig_ctx, lt = 2.0 * log(p->theta);
  double lo = floor(dims * log(l / (p->beta_fast * two_pi)) / lt);
  double hi = ceil(dims * log(l / (p->beta_slow * two_pi)) / lt);
  if (lo < 0.0) lo = 0.0;
  if (hi > dims - 1.0) hi = dims - 1.0;
  if (lo == hi) hi += 0.001;
  *low = lo;
  *high = hi;
}

/* vnrt_rope_freq of pair i given the ramp's bounds from vnrt_rope_yarn_ramp (ignored without
 * YaRN): a backend forming many pairs takes the ramp's logarithms once, bit for bit the same. */
static inline double vnrt_rope_freq_in(const vnrt_rope_params *p, int64_t i, double low,
                                       double high) {
  const double f = pow(p->theta, -2.0 * (double)i / (double)p->dims);
  if (!(p->yarn_factor > 0.0)) return f;
  double ramp = ((double)i - low) / (high - low);
  ramp = ramp < 0.0 ? 0.0 : (ramp > 1.0 ? 1.0 : ramp);
  return f * (1.0 - ramp) + f / p->yarn_factor * ramp;
}

/* rope's frequency of pair i (0 <= i < dims/2), in double (docs/ops.md, rope and "DeepSeek-V4
 * attention"): theta^(-2i/dims), blended towards theta^(-2i/dims) / yarn_factor over YaRN's
 * ramp when yarn_factor is set. A backend forms the angle pos * freq from it. */
static inline double vnrt_rope_freq(const vnrt_rope_params *p, int64_t i) {
  double low = 0.0, high = 0.0;
  if (p->yarn_factor > 0.0) vnrt_rope_yarn_ramp(p, &low, &high);
  return vnrt_rope_freq_in(p, i, low, high);
}

#ifdef __cplusplus
}
#endif
#endif /* VNRT_BACKEND_UTIL_H_ */
