/* Conformance: the quantization-support ops of docs/ops.md on every device, against references
 * written here in double precision.
 *
 * hadamard: each row x[D] (D a power of 2) becomes H_D·x·D^-1/2 with H_D the Sylvester-order
 * Walsh–Hadamard matrix. The reference is the direct O(D²) sum with H_D[i][j] =
 * (-1)^popcount(i & j), not a butterfly, so it shares no structure with the kernels it checks.
 *
 * Every built-in device (cpu, vulkan, opencl) runs hadamard with a kernel of its own: a node
 * sent to the CPU fallback fails the test. Only with VNRT_TEST_FALLBACK=1 (the plugin runs,
 * whose template backend has no kernel) does a fallback pass, with a note on stderr. Knobs
 * (VNRT_TEST_DEVICES, VNRT_PLUGIN_PATH, VNRT_TEST_FALLBACK): tests/conformance/meson.build. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define TOL_ELEM 1e-7

static const vnrt_dtype kFloatTypes[3] = {VNRT_F32, VNRT_F16, VNRT_BF16};

static int is_cpu(vnrt_device *dev) {
  vnrt_device_info info = {.struct_size = sizeof info};
  return vnrt_device_get_info(dev, &info) == VNRT_OK && info.type == VNRT_DEVICE_TYPE_CPU;
}

/* Says once per device and test (Check forks one process per test) that the device ran
 * hadamard on the CPU fallback. */
static void note_fallback(vnrt_device *dev) {
  static char noted[16][32];
  static int n_noted;
  const char *spec = tu_device_spec(dev);
  for (int i = 0; i < n_noted; ++i) {
    if (strcmp(noted[i], spec) == 0) return;
  }
  const char *allow = getenv("VNRT_TEST_FALLBACK");
  ck_assert_msg(allow && strcmp(allow, "1") == 0,
                "hadamard on %s ran on the CPU fallback: the device has no kernel of its own",
                spec);
  if (n_noted < 16) snprintf(noted[n_noted++], sizeof noted[0], "%s", spec);
  fprintf(stderr, "note: hadamard on %s ran on the CPU fallback (no kernel of its own)\n", spec);
}

/* ---- hadamard reference ----------------------------------------------------------------- */

/* out[r·D + i] = D^-1/2 · Σ_j (-1)^popcount(i & j) · x[r·D + j], every row, in double. */
static double *hadamard_expected(const tu_tensor *x) {
  const int64_t D = x->type.dims[x->type.rank - 1], n = tu_numel(x), rows = n / D;
  double *out = malloc(sizeof(double) * (size_t)n), *row = malloc(sizeof(double) * (size_t)D);
  ck_assert(out && row);
  const double scale = 1.0 / sqrt((double)D);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < D; ++j) row[j] = tu_get(x, r * D + j);
    for (int64_t i = 0; i < D; ++i) {
      double acc = 0.0;
      for (int64_t j = 0; j < D; ++j) {
        acc += __builtin_parityll((unsigned long long)(i & j)) ? -row[j] : row[j];
      }
      out[r * D + i] = acc * scale;
    }
  }
  free(row);
  return out;
}

/* Runs hadamard(x) on every device and compares with want (exact math, rounded here to the
 * result dtype) within tol. */
static void check_hadamard_want(vnrt_context *ctx, const char *what, const tu_tensor *x,
                                const double *want, double tol) {
  const int64_t n = tu_numel(x);
  double *rounded = malloc(sizeof(double) * (size_t)(n ? n : 1));
  ck_assert_ptr_nonnull(rounded);
  for (int64_t i = 0; i < n; ++i) rounded[i] = tu_round_to(x->type.dtype, want[i]);
  vnrt_graph *g = tu_op_graph(ctx, VNRT_OP_HADAMARD, x, 1, NULL, 0, 1);
  int32_t n_dev = tu_device_count(ctx);
  ck_assert_int_ge(n_dev, 1);
  for (int32_t d = 0; d < n_dev; ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    const char *spec = tu_device_spec(dev);
    tu_tensor out;
    int32_t fell_back = 0;
    vnrt_status s = tu_run_fallback(ctx, g, dev, x, 1, &out, 1, &fell_back);
    ck_assert_msg(s == VNRT_OK, "%s on %s: %s: %s", what, spec, vnrt_status_string(s),
                  vnrt_context_last_error(ctx));
    if (fell_back) {
      ck_assert_msg(!is_cpu(dev), "%s: the cpu sent hadamard to a fallback", what);
      note_fallback(dev);
    }
    ck_assert_msg(out.type.dtype == x->type.dtype && out.type.rank == x->type.rank,
                  "%s on %s: result is %s rank %d, want %s rank %d", what, spec,
                  vnrt_dtype_name(out.type.dtype), out.type.rank, vnrt_dtype_name(x->type.dtype),
                  x->type.rank);
    for (int32_t k = 0; k < x->type.rank; ++k) {
      ck_assert_msg(out.type.dims[k] == x->type.dims[k],
                    "%s on %s: result dim %d is %lld, want %lld", what, spec, k,
                    (long long)out.type.dims[k], (long long)x->type.dims[k]);
    }
    double err = tu_nmse(&out, rounded, n);
    ck_assert_msg(err <= tol, "%s on %s: NMSE %.3g > %.1g", what, spec, err, tol);
    tu_tensor_free(&out);
  }
  vnrt_graph_destroy(g);
  free(rounded);
}

/* ---- hadamard tests --------------------------------------------------------------------- */

START_TEST(test_hadamard_dtypes_sizes_rows) {
  /* D = 1 (the identity), 2, 64 and 4096, over one row (rank 1), 3 rows and 2·5 rows (rank 3;
   * D = 4096 only up to 3 rows, the O(D²) reference being the slow part). */
  const int64_t sizes[4] = {1, 2, 64, 4096};
  vnrt_context *ctx = tu_conformance_context(0);
  for (int di = 0; di < 3; ++di) {
    for (int si = 0; si < 4; ++si) {
      const int64_t D = sizes[si];
      const struct {
        int32_t rank;
        int64_t dims[3];
      } shapes[3] = {{1, {D}}, {2, {3, D}}, {3, {2, 5, D}}};
      for (int sh = 0; sh < (D > 64 ? 2 : 3); ++sh) {
        tu_tensor x = tu_tensor_new(kFloatTypes[di], shapes[sh].rank, shapes[sh].dims);
        tu_fill_uniform(&x, (uint64_t)(100 * di + 10 * si + sh), -2.0f, 2.0f);
        double *want = hadamard_expected(&x);
        char what[96];
        snprintf(what, sizeof what, "hadamard %s D=%lld rows %lld",
                 vnrt_dtype_name(kFloatTypes[di]), (long long)D, (long long)(tu_numel(&x) / D));
        check_hadamard_want(ctx, what, &x, want, TOL_ELEM);
        free(want);
        tu_tensor_free(&x);
      }
    }
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_hadamard_known_values) {
  /* Written out by hand, so that a transposed or sequency-ordered (Walsh) matrix, a missing or
   * doubled scale cannot agree with a reference that shares the mistake. */
  vnrt_context *ctx = tu_conformance_context(0);
  /* D = 2: ((a + b), (a - b)) / sqrt 2. */
  const int64_t d2[1] = {2};
  tu_tensor x2 = tu_tensor_new(VNRT_F32, 1, d2);
  tu_set(&x2, 0, 3.0);
  tu_set(&x2, 1, 1.0);
  const double w2[2] = {4.0 / sqrt(2.0), 2.0 / sqrt(2.0)};
  check_hadamard_want(ctx, "hadamard D=2 known", &x2, w2, 1e-12);
  /* D = 4, x = [1, 2, 3, 4]: H_4 = [[1,1,1,1], [1,-1,1,-1], [1,1,-1,-1], [1,-1,-1,1]], so
   * H_4·x = [10, -2, -4, 0] and the result is half that. */
  const int64_t d4[1] = {4};
  tu_tensor x4 = tu_tensor_new(VNRT_F32, 1, d4);
  for (int i = 0; i < 4; ++i) tu_set(&x4, i, i + 1.0);
  const double w4[4] = {5.0, -1.0, -2.0, 0.0};
  check_hadamard_want(ctx, "hadamard D=4 known", &x4, w4, 1e-12);
  /* D = 8, x = e_3 in row 0 and e_6 in row 1: the columns 3 and 6 of H_8, i.e. signs
   * (-1)^popcount(i & 3) and (-1)^popcount(i & 6), over sqrt 8. */
  const int64_t d8[2] = {2, 8};
  tu_tensor x8 = tu_tensor_new(VNRT_BF16, 2, d8);
  tu_set(&x8, 3, 1.0);
  tu_set(&x8, 8 + 6, 1.0);
  const double s8 = 1.0 / sqrt(8.0);
  const double c3[8] = {1, -1, -1, 1, 1, -1, -1, 1}, c6[8] = {1, 1, -1, -1, -1, -1, 1, 1};
  double w8[16];
  for (int i = 0; i < 8; ++i) w8[i] = c3[i] * s8, w8[8 + i] = c6[i] * s8;
  check_hadamard_want(ctx, "hadamard D=8 bf16 columns", &x8, w8, 1e-12);
  tu_tensor_free(&x2);
  tu_tensor_free(&x4);
  tu_tensor_free(&x8);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(test_hadamard_twice_is_identity) {
  /* H_D·H_D = D·I, so with the D^-1/2 scale two hadamards give x back. */
  vnrt_context *ctx = tu_conformance_context(0);
  const int64_t dims[2] = {3, 64};
  tu_tensor x = tu_tensor_new(VNRT_F32, 2, dims);
  tu_fill_uniform(&x, 7, -1.0f, 1.0f);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_value in, mid, out;
  TU_OK(ctx, vnrt_graph_add_input(g, "in0", &x.type, 0, &in));
  const char *mid_name = "mid", *out_name = "out0";
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_HADAMARD, &in, 1, NULL, 0, &mid_name, &mid, 1));
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_HADAMARD, &mid, 1, NULL, 0, &out_name, &out, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, out));
  double want[192];
  for (int i = 0; i < 192; ++i) want[i] = tu_get(&x, i);
  for (int32_t d = 0; d < tu_device_count(ctx); ++d) {
    vnrt_device *dev = tu_device(ctx, d);
    tu_tensor got;
    int32_t fell_back = 0;
    vnrt_status s = tu_run_fallback(ctx, g, dev, &x, 1, &got, 1, &fell_back);
    ck_assert_msg(s == VNRT_OK, "on %s: %s: %s", tu_device_spec(dev), vnrt_status_string(s),
                  vnrt_context_last_error(ctx));
    if (fell_back) note_fallback(dev);
    double err = tu_nmse(&got, want, 192);
    ck_assert_msg(err <= 1e-10, "hadamard twice on %s: NMSE %.3g", tu_device_spec(dev), err);
    tu_tensor_free(&got);
  }
  vnrt_graph_destroy(g);
  tu_tensor_free(&x);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Adding hadamard on an input of type t must fail with status, and the context's last error
 * must name every string of needles (NULL-terminated). */
static void expect_graph_error(vnrt_dtype dt, int32_t rank, const int64_t *dims, vnrt_status status,
                               const char *const *needles) {
  vnrt_context *ctx = tu_conformance_context(0);
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  for (int32_t i = 0; i < rank; ++i) t.dims[i] = dims[i];
  vnrt_value in, out;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &in));
  const char *name = "h";
  vnrt_status s = vnrt_graph_add_node(g, VNRT_OP_HADAMARD, &in, 1, NULL, 0, &name, &out, 1);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_msg(s == status, "hadamard on %s rank %d: got %s (%s), want %s", vnrt_dtype_name(dt),
                rank, vnrt_status_string(s), msg, vnrt_status_string(status));
  for (const char *const *p = needles; *p; ++p) {
    ck_assert_msg(strstr(msg, *p) != NULL, "hadamard: message '%s' lacks '%s'", msg, *p);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}

START_TEST(test_hadamard_graph_errors) {
  const int64_t d3[2] = {2, 3}, d6[3] = {4, 1, 6}, d4095[1] = {4095}, d96[2] = {5, 96};
  const char *const n3[] = {"hadamard", "f32[2, 3]", "D = 3", "power of 2", NULL};
  expect_graph_error(VNRT_F32, 2, d3, VNRT_ERROR_SHAPE_MISMATCH, n3);
  const char *const n6[] = {"hadamard", "bf16[4, 1, 6]", "D = 6", "power of 2", NULL};
  expect_graph_error(VNRT_BF16, 3, d6, VNRT_ERROR_SHAPE_MISMATCH, n6);
  const char *const n4095[] = {"hadamard", "D = 4095", "power of 2", NULL};
  expect_graph_error(VNRT_F16, 1, d4095, VNRT_ERROR_SHAPE_MISMATCH, n4095);
  const char *const n96[] = {"hadamard", "D = 96", "power of 2", NULL};
  expect_graph_error(VNRT_F32, 2, d96, VNRT_ERROR_SHAPE_MISMATCH, n96);
  /* An integer input, even with a power-of-2 D. */
  const int64_t di[2] = {4, 8};
  const char *const ni[] = {"hadamard", "i32[4, 8]", "float", NULL};
  expect_graph_error(VNRT_I32, 2, di, VNRT_ERROR_SHAPE_MISMATCH, ni);
  /* A scalar has no rows. */
  const char *const n0[] = {"hadamard", "rank", NULL};
  expect_graph_error(VNRT_F32, 0, NULL, VNRT_ERROR_SHAPE_MISMATCH, n0);
}
END_TEST

static Suite *quant_suite(void) {
  Suite *s = suite_create("conformance_quant");
  TCase *h = tcase_create("hadamard");
  tcase_add_test(h, test_hadamard_dtypes_sizes_rows);
  tcase_add_test(h, test_hadamard_known_values);
  tcase_add_test(h, test_hadamard_twice_is_identity);
  tcase_add_test(h, test_hadamard_graph_errors);
  suite_add_tcase(s, h);
  return s;
}

int main(void) { return tu_run_suite(quant_suite()); }
