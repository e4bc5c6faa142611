/* The MoE inputs and double-precision references that the conformance suite
 * (tests/conformance/test_conformance_mhc_moe.c) and the backends' own tests (tests/backends/)
 * use: moe_hash_route and moe_ffn of docs/ops.md. */
#ifndef VNRT_TESTS_MOE_REF_H_
#define VNRT_TESTS_MOE_REF_H_

#include <stdint.h>

#include "test_util.h"

/* The router score functions, in the order of the `score` words. */
enum { SCORE_SIGMOID, SCORE_SOFTMAX, SCORE_SQRT_SOFTPLUS };
extern const char *const score_words[3];

typedef struct hash_case {
  int64_t T, E, V, k;
  int kind, norm;
  double scale;
} hash_case;

/* logits[T, E] f32, ids[T] i32 in [0, V), tid2eid[V, k] i32 (k distinct experts per id). */
void make_hash_inputs(const hash_case *c, uint64_t seed, tu_tensor in[3]);
/* The score, norm and scale attributes of c (static storage, overwritten by the next call). */
const vnrt_attr *hash_attrs(const hash_case *c);

typedef struct ffn_case {
  int64_t T, C, F, E, k;
  double limit;
  vnrt_dtype xdt, wdt, gdt, ddt;
} ffn_case;

/* x[T, C], experts[T, k] i32, weights[T, k], w_gate_up[E, 2F, C], w_down[E, C, F]. */
void make_ffn_inputs(const ffn_case *c, uint64_t seed, tu_tensor in[5]);
/* moe_ffn's seven inputs with block-quantized experts (1 x 32 blocks over the last dim):
 * x[T, C] of xdt uniform in [-1, 1) from seed, experts[T, k] i32 copied from ex,
 * weights[T, k] of wdt uniform in [0.1, 1) from seed + 1, w_gate_up[E, 2F, C] of gdt,
 * w_down[E, C, F] of ddt, and their e8m0 scales [E, 2F, C / 32] and [E, C, F / 32] (rounded
 * up). The codes and scales are zero: each test writes the ones it is about. (c->limit is not
 * used: it is the test's attribute.) */
void make_ffn_q_inputs(const ffn_case *c, const int32_t *ex, uint64_t seed, tu_tensor in[7]);
/* moe_ffn in double: y[T, C] from the inputs' values (ex holds expert ids as doubles). */
void ffn_d(int64_t T, int64_t C, int64_t F, int64_t k, double limit, const double *x,
           const double *ex, const double *w, const double *wgu, const double *wd, double *y);

#endif /* VNRT_TESTS_MOE_REF_H_ */
