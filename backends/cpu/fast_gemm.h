/* The GEMM core of the CPU fast kernels: c = x·wᵀ with f32 x and f32/f16/bf16 w rows (the
 * `linear` layout) or c = x·b with b[K, N] (the `matmul` layout), register-blocked AVX2/FMA
 * micro-kernels (AVX-512 ones for x·wᵀ with more than 4 x rows: fast_gemm_avx512.c) or a
 * portable fallback. linear, matmul, moe_ffn and hc_pre build on it. */
#ifndef VNRT_BACKENDS_CPU_FAST_GEMM_H_
#define VNRT_BACKENDS_CPU_FAST_GEMM_H_

#include <stdint.h>

#include "fast_util.h"

/* K is processed in blocks of this many (a 4-row x panel of one block stays in L1). */
#define CPU_GEMM_KC 512
/* w rows and x rows packed (widened) to contiguous f32 per K block, when x has more than a
 * few rows. */
#define CPU_GEMM_NB 96
#define CPU_GEMM_MB 96
/* Floats of scratch one block call needs (its own, not shared with another thread). */
#define CPU_GEMM_WS_FLOATS ((CPU_GEMM_MB + CPU_GEMM_NB) * CPU_GEMM_KC)

/* c[i·ldc + j] = Σ_kk x[i·ldx + kk] · w[j·ldw + kk] for i < m, j < n, kk < k, summed in f32.
 * x is f32; w has dtype wdt (f32, f16 or bf16), rows ldw elements apart; c is f32 and is
 * overwritten. ws holds CPU_GEMM_WS_FLOATS floats of scratch; it may be NULL when m <= 4 and w
 * is f32 (a GEMV streams w in place and packs nothing). Each c element's summation order
 * depends only on k and isa, never on threads. Single-threaded: callers split the work. */
void cpu_gemm_nt_block(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *w,
                       vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c, int64_t ldc,
                       float *ws);

/* cpu_gemm_nt_block that also sets x_sumsq[i] = Σ_kk x[i·ldx + kk]² for i < m, taken while
 * the rows pass through L1 for the GEMM (one pass over x instead of two). */
void cpu_gemm_nt_block_sumsq(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *w,
                             vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c,
                             int64_t ldc, float *ws, float *x_sumsq);

/* cpu_gemm_nt_block_sumsq's AVX-512 path for m > 4 rows (fast_gemm_avx512.c; x86 only): needs
 * no workspace; ss (may be NULL) receives each x row's sum of squares. */
void cpu_gemm_nt_block_avx512(const float *x, int64_t ldx, int64_t m, const void *w, vnrt_dtype wdt,
                              int64_t ldw, int64_t n, int64_t k, float *c, int64_t ldc, float *ss);

/* Fills dst[r·ld + c] (f32, dst 64-byte aligned, ld a multiple of 16) with row row0 + r, column
 * k0 + c of some [N, K] operand for r < nr, c < kc (nr <= 16, kc <= 1024). */
typedef void (*cpu_gemm_rows_fn)(void *user, int64_t row0, int64_t nr, int64_t k0, int64_t kc,
                                 float *dst, int64_t ld);

/* cpu_gemm_nt_block_avx512 for an operand whose rows dec produces (decoded quantized weights):
 * each group of rows of each K block is decoded once into L1-resident rows that every x panel
 * then reads, with no other packing pass. Same summation order as for f32 w. */
void cpu_gemm_nt_block_avx512_dec(const float *x, int64_t ldx, int64_t m, cpu_gemm_rows_fn dec,
                                  void *user, int64_t n, int64_t k, float *c, int64_t ldc);

/* x rows from which AVX-512 callers take the packed blocks below (their packing of w is then
 * amortised over enough rows). */
#define CPU_GEMM_PACKED_MIN_M 128

/* cpu_gemm_nt_block_avx512 (ss NULL) for many x rows through w packed per K block and an
 * outer-product register tile (x elements broadcast against 48 packed w rows), which leaves no
 * reduction per tile: faster where K is small. ws: ws_floats floats of scratch. Returns 0, and
 * does nothing, where ws is NULL or smaller than CPU_GEMM_WS_FLOATS. Each c element is summed
 * along k in order within blocks of 512, and the blocks in order. */
int cpu_gemm_nt_block_avx512_packed(const float *x, int64_t ldx, int64_t m, const void *w,
                                    vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, float *c,
                                    int64_t ldc, float *ws, int64_t ws_floats);

/* cpu_gemm_nt_block_avx512_packed for an operand whose rows dec produces, 16 at a time. */
int cpu_gemm_nt_block_avx512_packed_dec(const float *x, int64_t ldx, int64_t m,
                                        cpu_gemm_rows_fn dec, void *user, int64_t n, int64_t k,
                                        float *c, int64_t ldc, float *ws, int64_t ws_floats);

/* Σ f[i]² over n floats (vectorised; the order depends only on n and isa). */
float cpu_fast_sumsq(cpu_isa isa, const float *f, int64_t n);

/* y[i] += a·x[i] for n floats. */
void cpu_fast_axpy(cpu_isa isa, float a, const float *x, float *y, int64_t n);

/* The same for b in the [K, N] layout of matmul:
 * c[i·ldc + j] = Σ_kk x[i·ldx + kk]·b[kk·ldb + j]. ws holds CPU_GEMM_WS_FLOATS floats. */
void cpu_gemm_nn_block(cpu_isa isa, const float *x, int64_t ldx, int64_t m, const void *b,
                       vnrt_dtype bdt, int64_t ldb, int64_t n, int64_t k, float *c, int64_t ldc,
                       float *ws);

/* out[i·ldo + j] (stored as odt) = Σ_kk x[i·ldx + kk]·w[j·ldw + kk] for the whole [m, n],
 * split into tiles across the kernel's pool. Reports scratch allocation failures. */
vnrt_status cpu_gemm_nt(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                        const void *w, vnrt_dtype wdt, int64_t ldw, int64_t n, int64_t k, void *out,
                        vnrt_dtype odt, int64_t ldo);

/* cpu_gemm_nt for b in the [K, N] layout (ldb elements between rows of b). */
vnrt_status cpu_gemm_nn(const cpu_kernel_args *a, const float *x, int64_t ldx, int64_t m,
                        const void *b, vnrt_dtype bdt, int64_t ldb, int64_t n, int64_t k, void *out,
                        vnrt_dtype odt, int64_t ldo);

/* dst[i] = src[i] widened to f32, for n elements of dtype dt. */
void cpu_fast_to_f32(cpu_isa isa, const void *src, vnrt_dtype dt, int64_t n, float *dst);

/* dst[i] = src[i] stored as dtype dt (f32, f16 or bf16; any other as cpu_store_f32), rounded to
 * nearest even bit for bit as cpu_store_f32 rounds, for n elements: the one rounding of a
 * kernel's f32 results into an f16/bf16 result, eight at a time (cpu_store_f32 per element
 * costs a call to the public codec, several µs for a decode step's [4, 1024] bf16 row). */
void cpu_fast_from_f32(cpu_isa isa, const float *src, int64_t n, void *dst, vnrt_dtype dt);

#endif /* VNRT_BACKENDS_CPU_FAST_GEMM_H_ */
