/* vnrt-validate's private interface: the case table (validate/cases.c), the seeded input
 * generators (validate/inputs.c) and the runner, comparison and reporting
 * (vnrt-validate.c). */
#ifndef VNRT_TOOLS_VALIDATE_H
#define VNRT_TOOLS_VALIDATE_H

#include <stdint.h>

#include "vnrt/vnrt.h"

/* ---- Cases ----------------------------------------------------------------------------- */

typedef enum gen_kind {
  GEN_UNIFORM,  /* uniform in [lo, hi) */
  GEN_INDEX,    /* i32 uniform in [0, hi) */
  GEN_DISTINCT, /* per last-dim row, a shuffled ramp lo, lo+step, ... (no near-ties) */
  GEN_ROWPERM,  /* i32 per row: distinct values in [0, hi) (expert ids) */
  GEN_ARANGE,   /* i32: lo + i * hi */
  GEN_E4M3,     /* e4m3 codes, random sign and mantissa, exponent field in [lo, hi], no NaN */
  GEN_E2M1,     /* e2m1 codes, any nibble */
  GEN_E8M0,     /* e8m0 scale codes in [lo, hi] */
  GEN_DYADIC,   /* an integer in [lo, hi] / 16: sums of products with the codes stay exact */
  GEN_MASKED,   /* GEN_DISTINCT, then in row r all but 2·(r mod 5) values are -inf (so that
                   topk picks -inf entries, ties among them included) */
  GEN_OPTINDEX, /* i32 uniform in [-1, hi): an index or -1 (none) */
  GEN_SCATTER,  /* i32: distinct cache rows k < hi, as positions k·lo + (k mod lo); every
                   fourth element -1 (kv_scatter's pos with div = lo) */
} gen_kind;

typedef struct input_spec {
  vnrt_tensor_type type;
  gen_kind gen;
  double lo, hi;
} input_spec;

#define MAX_IN 7
#define MAX_ATTRS 6
#define MAX_LIST 32

typedef struct vcase {
  vnrt_op op;
  char label[96];
  int32_t n_in, n_out;
  input_spec in[MAX_IN];
  int32_t n_attrs;
  vnrt_attr attrs[MAX_ATTRS];
  int64_t lists[MAX_ATTRS][MAX_LIST]; /* storage for INTS attributes */
} vcase;

/* The case table: build_cases() fills it once; case numbers are indices into it. */
extern vcase *cases;
extern int32_t n_cases;
void build_cases(void);

/* ---- Inputs ---------------------------------------------------------------------------- */

/* A fresh buffer holding s's input drawn from seed (NULL when out of memory). */
void *make_input(const input_spec *s, uint64_t seed);
/* Element i of data (of dtype dt) as a double; NAN for dtypes it does not read. */
double load(const void *data, vnrt_dtype dt, int64_t i);

#endif /* VNRT_TOOLS_VALIDATE_H */
