/* vnrt-quantize end to end: it converts a generated safetensors file, and the output is read
 * back through the io API — names, order, dtypes, shapes, copies byte for byte, metadata, each
 * scale against an independent computation of 2^ceil(log2(amax/fmt_max)), and every
 * dequantized value within the format's rounding error of the input. Bad input fails with a
 * named error and leaves no output file. argv[1] is the tool. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "vnrt/io.h"

static const char *g_tool;
static char g_dir[64];

static const char *path_in_dir(const char *name) {
  static char paths[4][160];
  static int k;
  char *p = paths[k++ % 4];
  snprintf(p, sizeof paths[0], "%s/%s", g_dir, name);
  return p;
}

/* Runs the tool with args (a shell word list), stderr and stdout into log; returns the exit
 * status and leaves the log's text in *out_log (static). */
static int run_tool(const char *args, const char **out_log) {
  static char log[8192];
  char cmd[1024];
  const char *log_path = path_in_dir("log.txt");
  snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", g_tool, args, log_path);
  int st = system(cmd);
  ck_assert_msg(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
  FILE *f = fopen(log_path, "r");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(log, 1, sizeof log - 1, f);
  log[n] = '\0';
  fclose(f);
  if (out_log) *out_log = log;
  return WEXITSTATUS(st);
}

/* ---- the input file -------------------------------------------------------------------- */

enum { N_IN = 9 };
static const char *const kNames[N_IN] = {
    "a.weight",  "b.weight", "c.weight", "norm.weight",
    "emb",       "idx",      "z.weight", "experts.gate_up_proj",
    "odd.weight"};
static const vnrt_tensor_type kTypes[N_IN] = {
    {VNRT_F32, 2, {130, 256}}, /* fp8: 2x2 blocks, a tail of 2 rows; fp4: 8 groups a row */
    {VNRT_BF16, 2, {3, 64}},      {VNRT_F16, 2, {2, 40}}, /* fp4: a tail group of 8 */
    {VNRT_F32, 1, {64}},                                  /* matches, but 1-D */
    {VNRT_F32, 2, {4, 32}},                               /* not matched by default */
    {VNRT_I32, 1, {3}},           {VNRT_F32, 2, {1, 32}}, /* all zeros: the amax floor */
    {VNRT_BF16, 3, {3, 130, 48}}, /* packed experts [E, R, C]: a scale per expert matrix */
    {VNRT_F32, 2, {2, 33}},       /* fp4: an odd last dim cannot be packed */
};
static void *g_data[N_IN];

/* Input value i of tensor k as the file holds it (rounded to its dtype). */
static double in_value(int k, size_t i) {
  const vnrt_tensor_type *t = &kTypes[k];
  if (t->dtype == VNRT_F32) return ((const float *)g_data[k])[i];
  uint16_t h = ((const uint16_t *)g_data[k])[i];
  return t->dtype == VNRT_F16 ? vnrt_f16_to_f32(h) : vnrt_bf16_to_f32(h);
}

static void make_input(const char *path) {
  for (int k = 0; k < N_IN; k++) {
    const vnrt_tensor_type *t = &kTypes[k];
    size_t n = (size_t)vnrt_tensor_type_numel(t);
    g_data[k] = calloc(vnrt_tensor_type_bytes(t) + 1, 1);
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
    for (size_t i = 0; i < n; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      double u = (double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0;
      /* Magnitudes from 1e-6 to 1e3 by row, so that scales differ block to block and some
       * values fall in e4m3's subnormal range. */
      size_t row = t->rank >= 2 ? i / (size_t)t->dims[t->rank - 1] : 0; /* over all matrices */
      double v = u * pow(10.0, (double)(row % 10) - 6.0 + (k == 0 && i % 97 == 0 ? 3.0 : 0.0));
      if (k == 6) v = 0.0;
      if (t->dtype == VNRT_F32)
        ((float *)g_data[k])[i] = (float)v;
      else if (t->dtype == VNRT_F16)
        ((uint16_t *)g_data[k])[i] = vnrt_f32_to_f16((float)v);
      else if (t->dtype == VNRT_BF16)
        ((uint16_t *)g_data[k])[i] = vnrt_f32_to_bf16((float)v);
      else
        ((int32_t *)g_data[k])[i] = (int32_t)i * 7 - 3;
    }
  }
  vnrt_context *ctx = tu_context();
  vnrt_safetensors_writer *w;
  const char *meta[] = {"format", "pt", "source", "test_quantize"};
  TU_OK(ctx, vnrt_safetensors_writer_open(ctx, path, kNames, kTypes, N_IN, meta, 2, &w));
  for (int k = 0; k < N_IN; k++)
    TU_OK(ctx, vnrt_safetensors_writer_put(w, g_data[k], vnrt_tensor_type_bytes(&kTypes[k])));
  TU_OK(ctx, vnrt_safetensors_writer_close(w));
  vnrt_context_destroy(ctx);
}

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/vnrt_quant_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
  make_input(path_in_dir("in.safetensors"));
}

static void teardown(void) {
  for (int k = 0; k < N_IN; k++) free(g_data[k]);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  ck_assert_int_eq(system(cmd), 0);
}

/* ---- checks ---------------------------------------------------------------------------- */

/* The e8m0 code of 2^ceil(log2(max(amax, floor) / fmt_max)), computed in double. */
static int expected_scale(double amax, double floor_, double fmt_max) {
  double r = fmax(amax, floor_) / fmt_max;
  int k = ilogb(r);
  if (ldexp(1.0, k) < r) k++;
  return k + 127;
}

/* Checks tensor `name` of out as the quantized form of input tensor k. */
static void check_converted(vnrt_context *ctx, vnrt_safetensors *out, const char *name,
                            const char *scale_name, int k, int fp4) {
  const vnrt_tensor_type *in = &kTypes[k];
  const int32_t rank = in->rank;
  const int64_t R = in->dims[rank - 2], C = in->dims[rank - 1];
  int64_t lead = 1;
  for (int32_t d = 0; d < rank - 2; d++) lead *= in->dims[d];
  const int64_t bR = fp4 ? 1 : 128, bC = fp4 ? 32 : 128;
  vnrt_tensor_type ct, st;
  const uint8_t *codes, *scales;
  size_t cbytes, sbytes;
  TU_OK(ctx, vnrt_safetensors_find(out, name, &ct, (const void **)&codes, &cbytes));
  TU_OK(ctx, vnrt_safetensors_find(out, scale_name, &st, (const void **)&scales, &sbytes));
  ck_assert_int_eq(ct.dtype, fp4 ? VNRT_E2M1 : VNRT_E4M3);
  ck_assert_int_eq(ct.rank, rank);
  for (int32_t d = 0; d < rank; d++) ck_assert_int_eq(ct.dims[d], in->dims[d]);
  ck_assert_uint_eq(cbytes, (size_t)(fp4 ? lead * R * C / 2 : lead * R * C));
  ck_assert_int_eq(st.dtype, VNRT_E8M0);
  /* [leading dims..., ceil(R / bR), ceil(C / bC)] */
  ck_assert_int_eq(st.rank, rank);
  for (int32_t d = 0; d < rank - 2; d++) ck_assert_int_eq(st.dims[d], in->dims[d]);
  const int64_t nbr = (R + bR - 1) / bR, nbc = (C + bC - 1) / bC;
  ck_assert_int_eq(st.dims[rank - 2], nbr);
  ck_assert_int_eq(st.dims[rank - 1], nbc);
  ck_assert_uint_eq(sbytes, (size_t)(lead * nbr * nbc));
  const double fmt_max = fp4 ? 6.0 : 448.0, floor_ = fp4 ? 6.0 * ldexp(1.0, -126) : 1e-4;
  for (int64_t mat = 0; mat < lead; mat++) {
    const size_t base = (size_t)(mat * R * C); /* matrix mat of the leading dims */
    for (int64_t br = 0; br < nbr; br++) {
      for (int64_t bc = 0; bc < nbc; bc++) {
        double amax = 0.0;
        for (int64_t r = br * bR; r < R && r < (br + 1) * bR; r++)
          for (int64_t c = bc * bC; c < C && c < (bc + 1) * bC; c++)
            amax = fmax(amax, fabs(in_value(k, base + (size_t)(r * C + c))));
        int code = scales[(mat * nbr + br) * nbc + bc];
        ck_assert_msg(code == expected_scale(amax, floor_, fmt_max),
                      "%s matrix %lld block [%lld, %lld]: scale code %d, expected %d (amax %g)",
                      name, (long long)mat, (long long)br, (long long)bc, code,
                      expected_scale(amax, floor_, fmt_max), amax);
        const double s = ldexp(1.0, code - 127);
        for (int64_t r = br * bR; r < R && r < (br + 1) * bR; r++) {
          for (int64_t c = bc * bC; c < C && c < (bc + 1) * bC; c++) {
            size_t i = base + (size_t)(r * C + c);
            double w = in_value(k, i), q;
            if (fp4) {
              /* Independent e2m1 decode: the levels by index, bit 3 the sign. */
              static const double kLevels[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
              unsigned nib = (codes[i / 2] >> (4 * (i % 2))) & 15u;
              q = (nib & 8u ? -1.0 : 1.0) * kLevels[nib & 7u];
            } else {
              unsigned b = codes[i], e = (b >> 3) & 15u, m = b & 7u;
              ck_assert_msg((b & 0x7Fu) != 0x7Fu, "%s[%zu]: NaN code", name, i);
              q = (b & 0x80u ? -1.0 : 1.0) *
                  (e ? ldexp(1.0 + m / 8.0, (int)e - 7) : ldexp((double)m, -9));
            }
            /* Half a step of the format: relative 2^-4 (e4m3) or 2^-2 (e2m1), and below the
             * normal range half the smallest step (e4m3 2^-10, e2m1 0.25), times the scale. */
            double tol = fp4 ? fmax(fabs(w) * 0.25, 0.25 * s) : fmax(fabs(w) / 16.0, s / 1024.0);
            ck_assert_msg(fabs(q * s - w) <= tol, "%s[%lld][%lld, %lld]: %.9g dequantizes to %.9g",
                          name, (long long)mat, (long long)r, (long long)c, w, q * s);
          }
        }
      }
    }
  }
}

/* Checks that tensor `name` of out is input tensor k unchanged. */
static void check_copied(vnrt_context *ctx, vnrt_safetensors *out, const char *name, int k) {
  vnrt_tensor_type t;
  const void *data;
  size_t bytes;
  TU_OK(ctx, vnrt_safetensors_find(out, name, &t, &data, &bytes));
  ck_assert_int_eq(t.dtype, kTypes[k].dtype);
  ck_assert_int_eq(t.rank, kTypes[k].rank);
  for (int32_t d = 0; d < t.rank; d++) ck_assert_int_eq(t.dims[d], kTypes[k].dims[d]);
  ck_assert_uint_eq(bytes, vnrt_tensor_type_bytes(&kTypes[k]));
  ck_assert_int_eq(memcmp(data, g_data[k], bytes), 0);
}

static void check_names(vnrt_safetensors *out, const char *const *names, int n) {
  ck_assert_int_eq(vnrt_safetensors_count(out), n);
  for (int i = 0; i < n; i++) ck_assert_str_eq(vnrt_safetensors_name(out, i), names[i]);
  ck_assert_int_eq(vnrt_safetensors_metadata_count(out), 2);
  ck_assert_str_eq(vnrt_safetensors_metadata_key(out, 0), "format");
  ck_assert_str_eq(vnrt_safetensors_metadata(out, "format"), "pt");
  ck_assert_str_eq(vnrt_safetensors_metadata(out, "source"), "test_quantize");
}

START_TEST(fp8_default_match) {
  char args[512];
  const char *log;
  snprintf(args, sizeof args, "--format fp8 '%s' '%s'", path_in_dir("in.safetensors"),
           path_in_dir("out.safetensors"));
  ck_assert_msg(run_tool(args, &log) == 0, "%s", log);
  ck_assert_msg(strstr(log, "'norm.weight' matches but is f32[64]") != NULL, "%s", log);
  vnrt_context *ctx = tu_context();
  vnrt_safetensors *out;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path_in_dir("out.safetensors"), &out));
  const char *names[] = {"a.weight",   "a.scale",  "b.weight",    "b.scale",
                         "c.weight",   "c.scale",  "norm.weight", "emb",
                         "idx",        "z.weight", "z.scale",     "experts.gate_up_proj",
                         "odd.weight", "odd.scale"};
  check_names(out, names, 14);
  check_converted(ctx, out, "a.weight", "a.scale", 0, 0);
  check_converted(ctx, out, "b.weight", "b.scale", 1, 0);
  check_converted(ctx, out, "c.weight", "c.scale", 2, 0);
  check_converted(ctx, out, "z.weight", "z.scale", 6, 0);
  check_converted(ctx, out, "odd.weight", "odd.scale", 8, 0);
  check_copied(ctx, out, "experts.gate_up_proj", 7);
  check_copied(ctx, out, "norm.weight", 3);
  check_copied(ctx, out, "emb", 4);
  check_copied(ctx, out, "idx", 5);
  vnrt_safetensors_close(out);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(fp4_with_match) {
  char args[512];
  const char *log;
  snprintf(args, sizeof args,
           "--format fp4 --match '^(emb|[a-c]\\.weight|odd\\.weight)$' '%s' '%s'",
           path_in_dir("in.safetensors"), path_in_dir("out.safetensors"));
  ck_assert_msg(run_tool(args, &log) == 0, "%s", log);
  ck_assert_msg(strstr(log,
                       "'odd.weight' is f32[2, 33]: fp4 packs two codes per byte and needs "
                       "an even last dim") != NULL,
                "%s", log);
  vnrt_context *ctx = tu_context();
  vnrt_safetensors *out;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path_in_dir("out.safetensors"), &out));
  const char *names[] = {"a.weight",  "a.scale", "b.weight",    "b.scale",
                         "c.weight",  "c.scale", "norm.weight", "emb",
                         "emb.scale", "idx",     "z.weight",    "experts.gate_up_proj",
                         "odd.weight"};
  check_names(out, names, 13);
  check_converted(ctx, out, "a.weight", "a.scale", 0, 1);
  check_converted(ctx, out, "b.weight", "b.scale", 1, 1);
  check_converted(ctx, out, "c.weight", "c.scale", 2, 1); /* 40 columns: a tail group of 8 */
  check_converted(ctx, out, "emb", "emb.scale", 4, 1);
  check_copied(ctx, out, "odd.weight", 8);
  check_copied(ctx, out, "norm.weight", 3);
  check_copied(ctx, out, "idx", 5);
  check_copied(ctx, out, "z.weight", 6);
  /* FP4 is stored as I8 with the last dim halved, as DeepSeek's checkpoints hold it. */
  vnrt_safetensors_close(out);
  vnrt_context_destroy(ctx);
  FILE *f = fopen(path_in_dir("out.safetensors"), "rb");
  char head[2048] = {0};
  ck_assert_uint_gt(fread(head, 1, sizeof head - 1, f), 8);
  fclose(f);
  ck_assert_ptr_nonnull(strstr(head + 8, "\"a.weight\":{\"dtype\":\"I8\",\"shape\":[130,128]"));
  ck_assert_ptr_nonnull(strstr(head + 8, "\"a.scale\":{\"dtype\":\"F8_E8M0\",\"shape\":[130,8]"));
  ck_assert_ptr_nonnull(strstr(head + 8, "\"c.scale\":{\"dtype\":\"F8_E8M0\",\"shape\":[2,2]"));
}
END_TEST

/* Per-tensor formats in one run, the first matching rule deciding (the first rule's --match
 * given before its --format, as the single-format CLI allows), and packed experts [E, R, C]
 * quantized matrix by matrix with a scale [E, ...]: FP4 here, FP8 in a second run. */
START_TEST(per_tensor_formats) {
  char args[1024];
  const char *log;
  snprintf(
      args, sizeof args,
      "--match '^[ab]\\.weight$' --format fp8 --format fp4 --match 'experts|^[a-cz]\\.weight$' "
      "--format fp8 --match odd '%s' '%s'",
      path_in_dir("in.safetensors"), path_in_dir("out.safetensors"));
  ck_assert_msg(run_tool(args, &log) == 0, "%s", log);
  ck_assert_msg(strstr(log, "3 tensors to fp8, 3 to fp4") != NULL, "%s", log);
  vnrt_context *ctx = tu_context();
  vnrt_safetensors *out;
  TU_OK(ctx, vnrt_safetensors_open(ctx, path_in_dir("out.safetensors"), &out));
  const char *names[] = {"a.weight",
                         "a.scale",
                         "b.weight",
                         "b.scale",
                         "c.weight",
                         "c.scale",
                         "norm.weight",
                         "emb",
                         "idx",
                         "z.weight",
                         "z.scale",
                         "experts.gate_up_proj",
                         "experts.gate_up_proj.scale",
                         "odd.weight",
                         "odd.scale"};
  check_names(out, names, 15);
  check_converted(ctx, out, "a.weight", "a.scale", 0, 0);
  check_converted(ctx, out, "b.weight", "b.scale", 1, 0);
  check_converted(ctx, out, "c.weight", "c.scale", 2, 1);
  check_converted(ctx, out, "z.weight", "z.scale", 6, 1);
  check_converted(ctx, out, "experts.gate_up_proj", "experts.gate_up_proj.scale", 7, 1);
  check_converted(ctx, out, "odd.weight", "odd.scale", 8, 0);
  check_copied(ctx, out, "norm.weight", 3);
  check_copied(ctx, out, "emb", 4);
  check_copied(ctx, out, "idx", 5);
  vnrt_safetensors_close(out);

  snprintf(args, sizeof args, "--format fp8 --match experts '%s' '%s'",
           path_in_dir("in.safetensors"), path_in_dir("out8.safetensors"));
  ck_assert_msg(run_tool(args, &log) == 0, "%s", log);
  TU_OK(ctx, vnrt_safetensors_open(ctx, path_in_dir("out8.safetensors"), &out));
  /* [3, 130, 48] in 128 x 128 blocks: scale [3, 2, 1], a tail of 2 rows in each matrix */
  check_converted(ctx, out, "experts.gate_up_proj", "experts.gate_up_proj.scale", 7, 0);
  check_copied(ctx, out, "a.weight", 0);
  vnrt_safetensors_close(out);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Each bad invocation: exit status and a word of the message; no output file is left. */
START_TEST(errors) {
  char in[160], out[160]; /* copies: path_in_dir reuses its buffers */
  snprintf(in, sizeof in, "%s", path_in_dir("in.safetensors"));
  snprintf(out, sizeof out, "%s", path_in_dir("o.safetensors"));
  static const struct {
    const char *args; /* %1$s: IN, %2$s: OUT */
    int status;
    const char *word;
  } kCases[] = {
      {"--format fp8 --match 'nothing_matches' '%s' '%s'", 1, "no tensor name matches"},
      {"--format fp8 --match '^idx$' '%s' '%s'", 1, "none can be converted"},
      {"--format fp8 --match '(' '%s' '%s'", 2, "bad regular expression"},
      /* the second rule only matches what the first took */
      {"--format fp8 --match '^a' --format fp4 --match '^a\\.weight$' '%s' '%s'", 1,
       "less those an earlier --match took"},
      {"--format fp8 --match a --match b '%s' '%s'", 2, "has no --format of its own"},
      {"--format fp16 '%s' '%s'", 2, "expected fp8 or fp4"},
      {"'%s' '%s'", 2, "--format fp8|fp4 is required"},
      {"--format fp8 '%s'/missing '%s'", 1, "cannot open"},
  };
  for (size_t i = 0; i < sizeof kCases / sizeof kCases[0]; i++) {
    char args[512];
    const char *log;
    snprintf(args, sizeof args, kCases[i].args, in, out);
    int st = run_tool(args, &log);
    ck_assert_msg(st == kCases[i].status, "%s: exit %d: %s", args, st, log);
    ck_assert_msg(strstr(log, kCases[i].word) != NULL, "%s: %s", args, log);
    ck_assert_int_ne(access(out, F_OK), 0);
  }
  /* OUT the same file as IN. */
  char args[512];
  const char *log;
  snprintf(args, sizeof args, "--format fp8 '%s' '%s'", in, in);
  ck_assert_int_eq(run_tool(args, &log), 1);
  ck_assert_msg(strstr(log, "OUT is the input file") != NULL, "%s", log);
  /* A file that is not safetensors. */
  FILE *f = fopen(path_in_dir("junk.safetensors"), "wb");
  fputs("this is not a safetensors file", f);
  fclose(f);
  snprintf(args, sizeof args, "--format fp4 '%s' '%s'", path_in_dir("junk.safetensors"), out);
  ck_assert_int_eq(run_tool(args, &log), 1);
  ck_assert_msg(strstr(log, "junk.safetensors") != NULL, "%s", log);
  ck_assert_int_ne(access(out, F_OK), 0);
  /* A weight holding infinity: named, and the half-written output is removed. */
  vnrt_context *ctx = tu_context();
  float w[64], w2[64];
  for (int i = 0; i < 64; i++) w[i] = w2[i] = (float)i;
  w2[37] = INFINITY;
  const char *names[] = {"ok.weight", "bad.weight"};
  vnrt_tensor_type types[] = {{VNRT_F32, 2, {2, 32}}, {VNRT_F32, 2, {2, 32}}};
  const void *datas[] = {w, w2};
  TU_OK(ctx, vnrt_safetensors_write(ctx, path_in_dir("inf.safetensors"), names, types, datas, 2));
  /* A scale name already taken (a file quantized before, say). */
  const char *taken[] = {"x.weight", "x.scale"};
  TU_OK(ctx, vnrt_safetensors_write(ctx, path_in_dir("taken.safetensors"), taken, types, datas, 2));
  vnrt_context_destroy(ctx);
  snprintf(args, sizeof args, "--format fp8 '%s' '%s'", path_in_dir("taken.safetensors"), out);
  ck_assert_int_eq(run_tool(args, &log), 1);
  ck_assert_msg(strstr(log, "the scale of 'x.weight' would be named 'x.scale'") != NULL, "%s", log);
  ck_assert_int_ne(access(out, F_OK), 0);
  snprintf(args, sizeof args, "--format fp4 '%s' '%s'", path_in_dir("inf.safetensors"), out);
  ck_assert_int_eq(run_tool(args, &log), 1);
  ck_assert_msg(strstr(log, "'bad.weight' has a non-finite value (inf) at [1, 5]") != NULL, "%s",
                log);
  ck_assert_int_ne(access(out, F_OK), 0);
}
END_TEST

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_quantize PATH/TO/vnrt-quantize\n");
    return 2;
  }
  g_tool = argv[1];
  Suite *s = suite_create("quantize");
  TCase *tc = tcase_create("quantize");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, fp8_default_match);
  tcase_add_test(tc, fp4_with_match);
  tcase_add_test(tc, per_tensor_formats);
  tcase_add_test(tc, errors);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
