/* Shared helpers for the Check suites: contexts, one-op graphs, and running a graph on every
 * available device so that one test body covers all backends. */
#ifndef VNRT_TESTS_TEST_UTIL_H_
#define VNRT_TESTS_TEST_UTIL_H_

#include <check.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

/* A context with logging quietened (errors only) and no plugins. Fails the test on error. */
vnrt_context *tu_context(void);

/* The conformance suite's context (tests/conformance/): like tu_context, with `threads` CPU
 * threads (0: the default), and with the plugins of $VNRT_PLUGIN_PATH when that is set and not
 * empty (tests/meson.build empties it for every test; the plugin conformance runs point it at
 * the template plugin). Every entry of $VNRT_TEST_DEVICES must name one of its devices. */
vnrt_context *tu_conformance_context(int32_t threads);

/* Devices a graph test runs on: every device of every built-in backend (cpu always first);
 * $VNRT_TEST_DEVICES (comma-separated specs) narrows the list. */
int32_t tu_device_count(vnrt_context *ctx);
vnrt_device *tu_device(vnrt_context *ctx, int32_t i);
const char *tu_device_spec(vnrt_device *device); /* static storage per device */

/* A host tensor for tests: type plus data, data owned (malloc). */
typedef struct tu_tensor {
  vnrt_tensor_type type;
  void *data;
} tu_tensor;

tu_tensor tu_tensor_new(vnrt_dtype dtype, int32_t rank, const int64_t *dims);
void tu_tensor_free(tu_tensor *t);
/* Fills with uniform values in [lo, hi) from a deterministic generator (seeded per call). */
void tu_fill_uniform(tu_tensor *t, uint64_t seed, float lo, float hi);
/* Element i widened to double (any dtype). */
double tu_get(const tu_tensor *t, int64_t i);
void tu_set(tu_tensor *t, int64_t i, double v); /* rounds for f16/bf16, truncates for i32 */
int64_t tu_numel(const tu_tensor *t);

/* Builds a graph with one node of op: inputs named in0, in1, ... (all is_param = 0), results
 * named out0, out1, ...; all outputs marked. Returns NULL (and fails the test) on error. */
vnrt_graph *tu_op_graph(vnrt_context *ctx, vnrt_op op, const tu_tensor *inputs, int32_t n_in,
                        const vnrt_attr *attrs, int32_t n_attrs, int32_t n_out);

/* x [4, c] -> linear(w0) -> tanh -> linear(w1) -> tanh ... for `layers` layers: input "x",
 * params "w0".."w<layers-1>" (f32 [c, c]), results "l<i>" / "r<i>", the last r marked. The
 * streaming tests' model: each weight a separate param to stream. */
vnrt_graph *tu_mlp_graph(vnrt_context *ctx, int layers, int64_t c);

/* Whether $VNRT_TEST_FALLBACK is "1": tu_run then lets a device send the nodes it cannot run
 * to the CPU (the plugin conformance runs: the template plugin runs no op itself). Otherwise
 * every node must run on the device itself. */
int tu_fallback_allowed(void);

/* The kernel mode tu_run and tu_run_fallback plan with: VNRT_KERNELS_REFERENCE when
 * $VNRT_TEST_KERNELS is "reference" (the conformance suite's *_reference runs, CPU only, so that
 * the CPU reference kernels of ops with a fast kernel meet the tests' double references too),
 * VNRT_KERNELS_FAST otherwise. */
vnrt_kernel_mode tu_kernel_mode(void);

/* Compiles graph for device (no fallback unless tu_fallback_allowed()), binds inputs in0..
 * (or by graph input order), runs, and reads every output into outs[i] (allocated). Returns
 * the status of the first failing step, leaving vnrt_context_last_error for the test to
 * check. */
vnrt_status tu_run(vnrt_context *ctx, vnrt_graph *graph, vnrt_device *device,
                   const tu_tensor *inputs, int32_t n_in, tu_tensor *outs, int32_t n_out);
/* The same with CPU fallback always allowed; *out_fallback_nodes (may be NULL) receives how
 * many nodes the plan sent to the CPU (vnrt_plan_info.n_fallback_nodes). */
vnrt_status tu_run_fallback(vnrt_context *ctx, vnrt_graph *graph, vnrt_device *device,
                            const tu_tensor *inputs, int32_t n_in, tu_tensor *outs, int32_t n_out,
                            int32_t *out_fallback_nodes);

/* The same with the plan desc given (kernel mode, fallback, limits): what tu_run and
 * tu_run_fallback call. */
vnrt_status tu_run_desc(vnrt_context *ctx, const vnrt_graph *graph, vnrt_device *device,
                        const vnrt_plan_desc *desc, const tu_tensor *inputs, int32_t n_in,
                        tu_tensor *outs, int32_t n_out, int32_t *out_fallback_nodes);

/* Normalised mean squared error Σ(a−r)²/Σr² of got against expected doubles. NaN/Inf in got
 * where expected is finite gives INFINITY. */
double tu_nmse(const tu_tensor *got, const double *expected, int64_t n);

/* Σ(a−r)²/Σr² of two double arrays (Σ(a−r)² when r is all zero). */
double tu_nmse_d(const double *a, const double *ref, int64_t n);

/* v as dtype dt would store it (round to nearest even, through f32 as a kernel's f32 result
 * is), widened back to double; other dtypes return v. */
double tu_round_to(vnrt_dtype dt, double v);

/* A tensor's values as stored (f16/bf16 rounding included), as a malloc'd double array. */
double *tu_values(const tu_tensor *t);
/* A zeroed malloc'd array of n doubles (at least one). */
double *tu_dalloc(int64_t n);

/* Attribute constructors. */
vnrt_attr tu_attr_i(const char *key, int64_t v);
vnrt_attr tu_attr_f(const char *key, double v);
vnrt_attr tu_attr_ints(const char *key, const int64_t *v, int32_t count);
vnrt_attr tu_attr_word(const char *key, const char *word);

/* Asserts status == VNRT_OK, printing the context's last error otherwise. */
#define TU_OK(ctx, expr)                                                                   \
  do {                                                                                     \
    vnrt_status tu_s_ = (expr);                                                            \
    ck_assert_msg(tu_s_ == VNRT_OK, "%s failed: %s: %s", #expr, vnrt_status_string(tu_s_), \
                  vnrt_context_last_error(ctx));                                           \
  } while (0)

/* A host allocator for tests: counts live and total blocks, and fails every allocation once
 * `countdown` reaches 0 (a negative countdown never fails). tu_allocator(a) wraps it. */
typedef struct tu_alloc {
  long countdown;
  long live, total;
} tu_alloc;
vnrt_allocator tu_allocator(tu_alloc *a);

/* Runs a Check suite and returns the process exit code. */
int tu_run_suite(Suite *suite);

#endif /* VNRT_TESTS_TEST_UTIL_H_ */
