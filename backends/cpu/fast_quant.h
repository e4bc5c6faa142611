/* The CPU fast kernels' products with quantized weights (docs/ops.md, "Quantized weights"):
 * c = x·Wᵀ where W is e4m3 or e2m1 codes with e8m0 block scales, decoded in registers for a
 * few x rows (AVX2: e4m3 through f16 bit placement and F16C, e2m1 through a table permute) or
 * widened block by block into L2-resident f32 panels that the blocked GEMM core multiplies. A
 * float W goes straight to the GEMM core. linear and moe_ffn build on it. */
#ifndef VNRT_BACKENDS_CPU_FAST_QUANT_H_
#define VNRT_BACKENDS_CPU_FAST_QUANT_H_

#include <stdint.h>

#include "fast_gemm.h"

/* Floats of per-thread scratch cpu_qgemm_nt_block needs for up to m x rows against w. */
int64_t cpu_qgemm_ws_floats(cpu_isa isa, int64_t m, const cpu_weight *w);

/* c[i·ldc + j] = Σ_kk x[i·ldx + kk]·W[mat][row0 + j][kk] for i < m, j < n, kk < w->cols, summed
 * in f32 (c overwritten). x is f32. ws holds cpu_qgemm_ws_floats(isa, m, w) floats (may be NULL
 * when that is 0). Each c element's summation order depends only on the shapes and isa, never
 * on threads. Single-threaded: callers split the work. */
void cpu_qgemm_nt_block(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const cpu_weight *w,
                        int64_t mat, int64_t row0, int64_t n, float *c, int64_t ldc, float *ws);

/* out[i·ldo + j] (stored as odt) = Σ_kk x[i·ldx + kk]·W[0][j][kk] for i < m, j < w->rows, split
 * into tiles across the kernel's pool. Reports scratch allocation failures. */
vnrt_status cpu_qgemm_nt(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                         const cpu_weight *w, void *out, vnrt_dtype odt, int64_t ldo);

/* cpu_qgemm_nt over rows [row0, row0 + n) of W only: out[i·ldo + j] = Σ_kk x[i·ldx + kk]·
 * W[0][row0 + j][kk] for j < n (grouped_linear's groups; row0 need not be block aligned, the
 * scales are looked up by absolute row). */
vnrt_status cpu_qgemm_nt_rows(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                              const cpu_weight *w, int64_t row0, int64_t n, void *out,
                              vnrt_dtype odt, int64_t ldo);

/* cpu_qgemm_nt of groups independent products in one dispatch (grouped_linear): group g
 * multiplies x's columns [g·K, (g + 1)·K) (K = w->cols) by W's rows [g·N, (g + 1)·N)
 * (N = w->rows / groups) into out's columns [g·N, (g + 1)·N). */
vnrt_status cpu_qgemm_nt_groups(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                                const cpu_weight *w, int64_t groups, void *out, vnrt_dtype odt,
                                int64_t ldo);

/* Fake-quantizes each of rows rows of x[rows, k] (ldx apart) to e4m3 in blocks of act_quant
 * channels in place: act_quant's rounding, exactly the reference's (cpu_fake_quant_block). */
void cpu_fast_act_quant(cpu_isa isa, float *x, int64_t ldx, int64_t rows, int64_t k,
                        int32_t act_quant);

/* One x row against FP4 weights (e2m1, 1x32 blocks, K = w->cols a multiple of 128 and at most
 * 4096) with x permuted once by the caller, for callers that run many blocks of rows on the
 * same row (moe_ffn's experts): whether isa and w take it; xp[k] from x[k] (k a multiple of
 * 128; a 128-aligned part of a row permutes on its own); and c[j] = Σ_kk x[kk]·W[mat][row0 +
 * j][kk] for j < n, exactly cpu_qgemm_nt_block's one-row results. x is the row unpermuted (for
 * the rare rows redone through panels); next (may be NULL) the bytes the caller reads next,
 * prefetched while the last rows run; ws holds cpu_qgemm_ws_floats(isa, 1, w) floats. */
int cpu_qgemv_e2m1p_ok(cpu_isa isa, const cpu_weight *w);
void cpu_qgemv_e2m1p_perm(const float *x, int64_t k, float *xp);
void cpu_qgemv_e2m1p(cpu_isa isa, const float *xp, const float *x, const cpu_weight *w, int64_t mat,
                     int64_t row0, int64_t n, float *c, const uint8_t *next, float *ws);

#endif /* VNRT_BACKENDS_CPU_FAST_QUANT_H_ */
