/* The DeepSeek-V4 checkpoint loader (models/checkpoint.h) on checkpoints written by
 * vnrt-make-checkpoint (argv[1]): a generated checkpoint opens, its bytes by kind equal the
 * memory plan's, tid2eid and the packed experts hold the stored values; the quantized weights
 * decode (plain C, double) to the nearest representable value of the f32 master weights with
 * the minimal power-of-two scale; and every kind of damage (a tensor missing, extra, of the
 * wrong shape or dtype, a shard cut short or missing, a wrong total_size, a bad index, a bad
 * tid2eid id) fails with a message naming it. */
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "models/v4_plan.h"
#include "test_util.h"
#include "vnrt/io.h"

static const char *g_tool;
static char g_base[64]; /* the tiny checkpoint, generated once */
static char g_dir[64];  /* this test's copy */

static const char *kMasters[] = {"layers.0.attn.wq_a.weight", "layers.1.attn.wq_b.weight",
                                 "layers.3.attn.wo_a.weight", "layers.2.ffn.experts.5.w2.weight",
                                 "layers.0.ffn.experts.0.w1.weight"};

static const char *config_path(const char *name) {
  static char path[1024];
  const char *root = getenv("VNRT_TEST_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/models/configs/%s", root ? root : ".", name);
  return path;
}

static const char *in_dir(const char *dir, const char *name) {
  static char paths[4][256];
  static int k;
  char *p = paths[k++ % 4];
  snprintf(p, sizeof paths[0], "%s/%s", dir, name);
  return p;
}

/* Runs a shell command; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int st = system(cmd);
  if (st == -1 || !WIFEXITED(st)) ck_abort_msg("could not run: %s", cmd);
  return WEXITSTATUS(st);
}

static void make_checkpoint(const char *config, const char *dir, const char *extra) {
  int rc = sh("'%s' --config '%s' --out '%s' %s > '%s.log' 2>&1", g_tool, config, dir, extra, dir);
  if (rc != 0) {
    sh("cat '%s.log' >&2", dir);
    ck_abort_msg("vnrt-make-checkpoint failed for %s", config);
  }
}

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/vnrt_ckpt_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
  ck_assert_int_eq(sh("cp -r '%s'/. '%s'", g_base, g_dir), 0);
}

static void teardown(void) { sh("rm -rf '%s' '%s.log'", g_dir, g_dir); }

/* Opens g_dir; returns the status, the message in err. */
static vnrt_status try_open(vnrt_context *ctx, vn_checkpoint **ck, char *err, size_t n) {
  return vn_checkpoint_open(ctx, g_dir, ck, err, n);
}

static void expect_open_fails(vnrt_status want, const char *fragment, const char *fragment2) {
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck = (vn_checkpoint *)1;
  char err[1024] = "";
  vnrt_status s = try_open(ctx, &ck, err, sizeof err);
  if (s != want) ck_abort_msg("status %d, expected %d: %s", (int)s, (int)want, err);
  if (ck != NULL) ck_abort_msg("*out not cleared");
  if (!strstr(err, fragment)) ck_abort_msg("message '%s' lacks '%s'", err, fragment);
  if (fragment2 && !strstr(err, fragment2)) ck_abort_msg("message '%s' lacks '%s'", err, fragment2);
  vnrt_context_destroy(ctx);
}

/* ---- editing a checkpoint -------------------------------------------------------------- */

typedef struct st_item {
  char name[160];
  char dtype[16];
  int32_t rank;
  int64_t dims[VNRT_MAX_DIMS];
  uint8_t *data;
  size_t bytes;
} st_item;

/* An edit of one shard: called on every tensor; returns false to drop it. May change the
 * item (dtype, dims, data, bytes); *add may receive one new tensor (appended). */
typedef bool (*edit_fn)(st_item *it, void *user);

static void rewrite_shard(const char *file, edit_fn fn, void *user, const st_item *add) {
  vnrt_context *ctx = tu_context();
  const char *path = in_dir(g_dir, file);
  vnrt_safetensors *st = NULL;
  ck_assert_int_eq(vnrt_safetensors_open(ctx, path, &st), VNRT_OK);
  int32_t n = vnrt_safetensors_count(st);
  st_item *items = calloc((size_t)n + 1, sizeof *items);
  int32_t m = 0;
  for (int32_t i = 0; i < n; i++) {
    st_item *it = &items[m];
    const char *dtype;
    const void *data;
    snprintf(it->name, sizeof it->name, "%s", vnrt_safetensors_name(st, i));
    ck_assert_int_eq(
        vnrt_safetensors_find_stored(st, it->name, &dtype, &it->rank, it->dims, &data, &it->bytes),
        VNRT_OK);
    snprintf(it->dtype, sizeof it->dtype, "%s", dtype);
    it->data = malloc(it->bytes + 1);
    memcpy(it->data, data, it->bytes);
    if (!fn || fn(it, user))
      m++;
    else
      free(it->data);
  }
  vnrt_safetensors_close(st);
  if (add) items[m++] = *add;
  const char **names = calloc((size_t)m, sizeof *names),
             **dtypes = calloc((size_t)m, sizeof *dtypes);
  int32_t *ranks = calloc((size_t)m, sizeof *ranks);
  const int64_t **dims = calloc((size_t)m, sizeof *dims);
  for (int32_t i = 0; i < m; i++) {
    names[i] = items[i].name;
    dtypes[i] = items[i].dtype;
    ranks[i] = items[i].rank;
    dims[i] = items[i].dims;
  }
  vnrt_safetensors_writer *w;
  ck_assert_int_eq(
      vnrt_safetensors_writer_open_stored(ctx, path, names, dtypes, ranks, dims, m, NULL, 0, &w),
      VNRT_OK);
  for (int32_t i = 0; i < m; i++)
    ck_assert_int_eq(vnrt_safetensors_writer_put(w, items[i].data, items[i].bytes), VNRT_OK);
  ck_assert_int_eq(vnrt_safetensors_writer_close(w), VNRT_OK);
  for (int32_t i = 0; i < m; i++)
    if (!add || i < m - 1) free(items[i].data);
  free(items);
  free(names);
  free(dtypes);
  free(ranks);
  free(dims);
  vnrt_context_destroy(ctx);
}

static json_object *index_load(void) {
  json_object *root = json_object_from_file(in_dir(g_dir, "model.safetensors.index.json"));
  ck_assert_ptr_nonnull(root);
  return root;
}

static void index_save(json_object *root) {
  ck_assert_int_eq(json_object_to_file(in_dir(g_dir, "model.safetensors.index.json"), root), 0);
  json_object_put(root);
}

/* Adds delta to metadata.total_size; maps name to file (NULL: removes name). */
static void index_edit(int64_t delta, const char *name, const char *file) {
  json_object *root = index_load(), *meta, *ts, *map;
  ck_assert(json_object_object_get_ex(root, "metadata", &meta));
  ck_assert(json_object_object_get_ex(meta, "total_size", &ts));
  json_object_object_add(meta, "total_size",
                         json_object_new_int64(json_object_get_int64(ts) + delta));
  ck_assert(json_object_object_get_ex(root, "weight_map", &map));
  if (name && file) json_object_object_add(map, name, json_object_new_string(file));
  if (name && !file) json_object_object_del(map, name);
  index_save(root);
}

static bool drop_named(st_item *it, void *user) { return strcmp(it->name, user) != 0; }

/* ---- tests ----------------------------------------------------------------------------- */

START_TEST(opens_and_matches_plan) {
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  vnrt_status s = try_open(ctx, &ck, err, sizeof err);
  ck_assert_msg(s == VNRT_OK, "%s", err);
  const vn_v4_config *c = vn_checkpoint_config(ck);
  ck_assert_int_eq(c->hidden_size, 256);
  /* Bytes found in the files, by kind, equal the plan computed from the config alone. */
  vn_v4_memory m;
  ck_assert_int_eq(vn_v4_memory_plan(c, 4096, &m), VNRT_OK);
  uint64_t got[VN_V4_KIND_COUNT];
  vn_checkpoint_bytes_by_kind(ck, got);
  for (int k = 0; k < VN_V4_KIND_COUNT; k++)
    if (got[k] != m.weight_bytes[k])
      ck_abort_msg("%s: %llu bytes in the files, %llu planned", vn_v4_kind_name((vn_v4_kind)k),
                   (unsigned long long)got[k], (unsigned long long)m.weight_bytes[k]);
  ck_assert_uint_gt(got[VN_V4_KIND_MTP], 0);

  /* Lookups: an FP4 expert reads as e2m1 with logical dims, FP8 as e4m3, scales e8m0. */
  vnrt_tensor_type t;
  const void *data;
  size_t bytes;
  ck_assert_int_eq(vn_checkpoint_tensor(ck, "layers.0.ffn.experts.3.w2.weight", &t, &data, &bytes,
                                        err, sizeof err),
                   VNRT_OK);
  ck_assert(t.dtype == VNRT_E2M1 && t.rank == 2 && t.dims[0] == 256 && t.dims[1] == 128);
  ck_assert_uint_eq(bytes, 256 * 64);
  ck_assert_int_eq(
      vn_checkpoint_layer_tensor(ck, 2, "attn.wq_b.scale", &t, NULL, &bytes, err, sizeof err),
      VNRT_OK);
  ck_assert(t.dtype == VNRT_E8M0 && t.dims[0] == 8 && t.dims[1] == 1);
  ck_assert_int_eq(vn_checkpoint_tensor(ck, "norm.weight", &t, &data, NULL, err, sizeof err),
                   VNRT_OK);
  ck_assert(t.dtype == VNRT_BF16 && t.dims[0] == 256);
  /* Norm weights are near 1. */
  for (int i = 0; i < 256; i++) {
    uint16_t h;
    memcpy(&h, (const uint8_t *)data + 2 * i, 2);
    float v = vnrt_bf16_to_f32(h);
    if (!(v > 0.3f && v < 1.7f)) ck_abort_msg("norm.weight[%d] = %g", i, v);
  }
  ck_assert_int_eq(vn_checkpoint_tensor(ck, "layers.9.nope", &t, &data, &bytes, err, sizeof err),
                   VNRT_ERROR_NOT_FOUND);
  ck_assert_msg(strstr(err, "no tensor named 'layers.9.nope'"), "%s", err);
  ck_assert_int_eq(
      vn_checkpoint_tensor(ck, "layers.0.ffn.gate.tid2eid", &t, &data, &bytes, err, sizeof err),
      VNRT_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(err, "I64") && strstr(err, "vn_checkpoint_tid2eid"), "%s", err);
  ck_assert_int_eq(vn_checkpoint_tensor(ck, "mtp.0.e_proj.weight", &t, NULL, NULL, err, sizeof err),
                   VNRT_OK); /* skipped by the checks, still readable */

  /* tid2eid: layers 0 and 1 hash; rows of distinct ids in [0, 16). */
  int32_t *ids = NULL;
  ck_assert_int_eq(vn_checkpoint_tid2eid(ck, 1, &ids, err, sizeof err), VNRT_OK);
  int hist[16] = {0};
  for (int r = 0; r < 1024; r++)
    for (int j = 0; j < 4; j++) {
      int32_t e = ids[r * 4 + j];
      if (e < 0 || e >= 16) ck_abort_msg("row %d: %d", r, e);
      for (int q = 0; q < j; q++)
        if (ids[r * 4 + q] == e) ck_abort_msg("row %d repeats %d", r, e);
      hist[e]++;
    }
  for (int e = 0; e < 16; e++) ck_assert_int_gt(hist[e], 150); /* 256 expected: spread */
  free(ids);
  ck_assert_int_eq(vn_checkpoint_tid2eid(ck, 2, &ids, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ids);
  ck_assert_msg(strstr(err, "layer 2 is not a hash-routed layer"), "%s", err);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(pack_experts_fp4) {
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  ck_assert_msg(try_open(ctx, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  vn_v4_experts e;
  ck_assert_int_eq(vn_checkpoint_pack_experts(ck, 2, &e, err, sizeof err), VNRT_OK);
  const int64_t E = 16, F = 128, C = 256;
  ck_assert(e.gate_up_type.dtype == VNRT_E2M1 && e.gate_up_type.rank == 3 &&
            e.gate_up_type.dims[0] == E && e.gate_up_type.dims[1] == 2 * F &&
            e.gate_up_type.dims[2] == C);
  ck_assert(e.gate_up_scale_type.dtype == VNRT_E8M0 && e.gate_up_scale_type.dims[1] == 2 * F &&
            e.gate_up_scale_type.dims[2] == C / 32);
  ck_assert(e.down_type.dims[1] == C && e.down_type.dims[2] == F);
  ck_assert(e.down_scale_type.dims[1] == C && e.down_scale_type.dims[2] == F / 32);
  ck_assert(e.block[0] == 1 && e.block[1] == 32);
  ck_assert_uint_eq(e.gate_up_bytes, (size_t)(E * 2 * F * C / 2));
  /* Expert 7: rows [0, F) are w1, [F, 2F) w3, byte for byte; w2 and the scales likewise. */
  const char *parts[] = {"w1.weight", "w3.weight", "w1.scale", "w3.scale", "w2.weight", "w2.scale"};
  for (int p = 0; p < 6; p++) {
    char name[96];
    snprintf(name, sizeof name, "ffn.experts.7.%s", parts[p]);
    const void *data;
    size_t bytes;
    ck_assert_int_eq(vn_checkpoint_layer_tensor(ck, 2, name, NULL, &data, &bytes, err, sizeof err),
                     VNRT_OK);
    const uint8_t *packed;
    if (p < 2)
      packed = (const uint8_t *)e.gate_up + 7 * e.gate_up_bytes / E + (size_t)p * bytes;
    else if (p < 4)
      packed = (const uint8_t *)e.gate_up_scale + 7 * e.gate_up_scale_bytes / E +
               (size_t)(p - 2) * bytes;
    else if (p == 4)
      packed = (const uint8_t *)e.down + 7 * e.down_bytes / E;
    else
      packed = (const uint8_t *)e.down_scale + 7 * e.down_scale_bytes / E;
    if (memcmp(packed, data, bytes) != 0) ck_abort_msg("expert 7 %s differs when packed", name);
  }
  vn_v4_experts_free(&e);
  ck_assert_ptr_null(e.gate_up);
  ck_assert_int_eq(vn_checkpoint_pack_experts(ck, 4, &e, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "layer 4 is outside [0, 4)"), "%s", err);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ---- the quantization recipes, checked in double --------------------------------------- */

static double dec_e4m3(uint8_t c) {
  int sign = c >> 7, e = (c >> 3) & 15, m = c & 7;
  double v = e == 0 ? m * ldexp(1.0, -9) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
  return sign ? -v : v;
}

static double dec_e2m1(uint8_t nib) {
  static const double kLevels[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (nib & 8 ? -1 : 1) * kLevels[nib & 7];
}

/* The e8m0 code DeepSeek's recipe gives a block of absolute maximum amax. */
static int want_scale(double amax, double floor_, double fmt_max) {
  double x = fmax(amax, floor_) / fmt_max;
  int e = (int)ceil(log2(x));
  return e + 127;
}

/* Whether deq is a nearest representable value (levels * s) to w. */
static bool is_nearest(double w, double deq, double s, bool fp4) {
  static double e4m3[256], e2m1[16];
  static bool ready;
  if (!ready) {
    for (int c = 0; c < 256; c++) /* NaN codes 0x7F/0xFF: never nearest */
      e4m3[c] = (c & 0x7F) == 0x7F ? INFINITY : dec_e4m3((uint8_t)c);
    for (int c = 0; c < 16; c++) e2m1[c] = dec_e2m1((uint8_t)c);
    ready = true;
  }
  const double *lv = fp4 ? e2m1 : e4m3, x = w / s; /* s is a power of two: exact */
  double best = INFINITY;
  for (int c = 0; c < (fp4 ? 16 : 256); c++) best = fmin(best, fabs(lv[c] - x));
  return fabs(deq / s - x) <= best;
}

static void check_master(vn_checkpoint *ck, const char *name) {
  vnrt_context *ctx = tu_context();
  char err[1024], path[512];
  snprintf(path, sizeof path, "%s/master/%s.npy", g_dir, name);
  vnrt_tensor_type mt;
  void *mdata;
  ck_assert_int_eq(vnrt_npy_read(ctx, path, &mt, &mdata), VNRT_OK);
  const float *w = mdata;
  const int64_t out = mt.dims[0], in = mt.dims[1];
  vnrt_tensor_type ct, sct;
  const uint8_t *codes, *scales;
  char sname[160];
  snprintf(sname, sizeof sname, "%.*s.scale", (int)(strlen(name) - 7), name);
  ck_assert_int_eq(
      vn_checkpoint_tensor(ck, name, &ct, (const void **)&codes, NULL, err, sizeof err), VNRT_OK);
  ck_assert_int_eq(
      vn_checkpoint_tensor(ck, sname, &sct, (const void **)&scales, NULL, err, sizeof err),
      VNRT_OK);
  const bool fp4 = ct.dtype == VNRT_E2M1;
  ck_assert(ct.dims[0] == out && ct.dims[1] == in);
  const int64_t b0 = fp4 ? 1 : 128, b1 = fp4 ? 32 : 128, bc = (in + b1 - 1) / b1;
  const double fmt_max = fp4 ? 6 : 448, floor_ = fp4 ? 6 * ldexp(1, -126) : 1e-4;
  double err2 = 0, ref2 = 0;
  for (int64_t bi = 0; bi < (out + b0 - 1) / b0; bi++)
    for (int64_t bj = 0; bj < bc; bj++) {
      double amax = 0;
      for (int64_t r = bi * b0; r < (bi + 1) * b0 && r < out; r++)
        for (int64_t c = bj * b1; c < (bj + 1) * b1 && c < in; c++)
          amax = fmax(amax, fabs(w[r * in + c]));
      int sc = scales[bi * bc + bj];
      if (sc != want_scale(amax, floor_, fmt_max))
        ck_abort_msg("%s block (%lld, %lld): scale code %d, recipe gives %d (amax %g)", name,
                     (long long)bi, (long long)bj, sc, want_scale(amax, floor_, fmt_max), amax);
      const double s = ldexp(1.0, sc - 127);
      for (int64_t r = bi * b0; r < (bi + 1) * b0 && r < out; r++)
        for (int64_t c = bj * b1; c < (bj + 1) * b1 && c < in; c++) {
          double deq;
          if (fp4) {
            uint8_t byte = codes[r * (in / 2) + c / 2];
            deq = dec_e2m1(c % 2 ? byte >> 4 : byte & 15) * s; /* even column: low nibble */
          } else {
            deq = dec_e4m3(codes[r * in + c]) * s;
          }
          double x = w[r * in + c];
          if (!is_nearest(x, deq, s, fp4))
            ck_abort_msg("%s[%lld][%lld] = %.9g decodes to %.9g, not a nearest %s value", name,
                         (long long)r, (long long)c, x, deq, fp4 ? "e2m1" : "e4m3");
          err2 += (deq - x) * (deq - x);
          ref2 += x * x;
        }
    }
  /* Relative error energy: e4m3 about 2^-9 (3 mantissa bits), e2m1 about 2^-5 or so. */
  double rel = err2 / ref2;
  if (!(rel < (fp4 ? 0.02 : 1e-3) && rel > 0))
    ck_abort_msg("%s: relative squared error %g", name, rel);
  vnrt_free(ctx, mdata);
  vnrt_context_destroy(ctx);
}

START_TEST(quantization_recipes) {
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  ck_assert_msg(try_open(ctx, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  for (size_t i = 0; i < sizeof kMasters / sizeof kMasters[0]; i++) check_master(ck, kMasters[i]);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(fp8_experts_and_tiny2) {
  /* expert_dtype fp8: experts F8_E4M3 with 128x128 scales; then tiny2, deterministic. */
  char cfg_path[128], dir[128];
  snprintf(cfg_path, sizeof cfg_path, "%s/fp8.json", g_dir);
  json_object *root = json_object_from_file(config_path("v4-tiny.json"));
  json_object_object_add(root, "expert_dtype", json_object_new_string("fp8"));
  ck_assert_int_eq(json_object_to_file(cfg_path, root), 0);
  json_object_put(root);
  snprintf(dir, sizeof dir, "%s/fp8", g_dir);
  make_checkpoint(cfg_path, dir, "--seed 7");
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  ck_assert_msg(vn_checkpoint_open(ctx, dir, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  vn_v4_experts e;
  ck_assert_int_eq(vn_checkpoint_pack_experts(ck, 0, &e, err, sizeof err), VNRT_OK);
  ck_assert(e.gate_up_type.dtype == VNRT_E4M3 && e.block[0] == 128 && e.block[1] == 128);
  ck_assert(e.gate_up_scale_type.dims[0] == 16 && e.gate_up_scale_type.dims[1] == 2 &&
            e.gate_up_scale_type.dims[2] == 2);
  ck_assert(e.down_scale_type.dims[1] == 2 && e.down_scale_type.dims[2] == 1);
  vn_v4_experts_free(&e);
  vn_checkpoint_close(ck);
  /* The fp4 files under a config that says fp8: the dtype error names the switch. */
  ck_assert_int_eq(sh("cp '%s' '%s/config.json'", cfg_path, g_dir), 0);
  vnrt_context_destroy(ctx);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT,
                    "tensor 'layers.0.ffn.experts.0.w1.weight' has dtype I8, expected F8_E4M3",
                    "expert_dtype");

  /* tiny2 twice with one seed: the same bytes; it opens. */
  char d1[128], d2[128];
  snprintf(d1, sizeof d1, "%s/t2a", g_dir);
  snprintf(d2, sizeof d2, "%s/t2b", g_dir);
  make_checkpoint(config_path("v4-tiny2.json"), d1, "--seed 3");
  make_checkpoint(config_path("v4-tiny2.json"), d2, "--seed 3");
  ck_assert_int_eq(sh("cmp -s '%s/model-00003-of-00006.safetensors' "
                      "'%s/model-00003-of-00006.safetensors'",
                      d1, d2),
                   0);
  ctx = tu_context();
  ck_assert_msg(vn_checkpoint_open(ctx, d1, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  ck_assert_int_eq(vn_checkpoint_config(ck)->hidden_size, 384);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(tool_errors) {
  ck_assert_int_eq(sh("'%s' > /dev/null 2>&1", g_tool), 2);
  ck_assert_int_eq(sh("'%s' --config x.json > /dev/null 2>&1", g_tool), 2);
  ck_assert_int_eq(sh("'%s' --config '%s' --out '%s/x' --seed -1 > /dev/null 2>&1", g_tool,
                      config_path("v4-tiny.json"), g_dir),
                   2);
  ck_assert_int_eq(sh("'%s' --config '%s' --out '%s/x' --master nope > /dev/null 2>&1", g_tool,
                      config_path("v4-tiny.json"), g_dir),
                   2);
  /* A bad config: exit 1 with the loader's message. */
  FILE *f = fopen(in_dir(g_dir, "bad.json"), "w");
  fputs("{\"model_type\": \"llama\"}", f);
  fclose(f);
  ck_assert_int_eq(sh("'%s' --config '%s/bad.json' --out '%s/x' 2> '%s/log' && exit 9;"
                      " grep -q 'model_type is \"llama\"' '%s/log'",
                      g_tool, g_dir, g_dir, g_dir, g_dir),
                   0);
}
END_TEST

/* ---- damage ---------------------------------------------------------------------------- */

#define SHARD(k) "model-0000" #k "-of-00007.safetensors"

START_TEST(missing_tensor) {
  rewrite_shard(SHARD(2), drop_named, "layers.0.attn.q_norm.weight", NULL);
  index_edit(-128 * 2, "layers.0.attn.q_norm.weight", NULL);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "tensor 'layers.0.attn.q_norm.weight' is missing",
                    "1 tensor missing");
}
END_TEST

START_TEST(index_names_absent_tensor) {
  rewrite_shard(SHARD(2), drop_named, "layers.0.attn.q_norm.weight", NULL);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, SHARD(2),
                    "maps tensor 'layers.0.attn.q_norm.weight' to this shard, which does not hold");
}
END_TEST

START_TEST(extra_tensor) {
  float v[4] = {1, 2, 3, 4};
  st_item add = {.name = "layers.1.attn.extra", .dtype = "F32", .rank = 1, .dims = {4}};
  add.data = (uint8_t *)v;
  add.bytes = 16;
  rewrite_shard(SHARD(3), NULL, NULL, &add);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "holds tensor 'layers.1.attn.extra'",
                    "does not list");
  index_edit(16, "layers.1.attn.extra", SHARD(3));
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT,
                    "tensor 'layers.1.attn.extra' is not part of the model", SHARD(3));
}
END_TEST

START_TEST(extra_mtp_tensor_is_skipped) {
  float v[4] = {1, 2, 3, 4};
  st_item add = {.name = "mtp.0.something_new", .dtype = "F32", .rank = 1, .dims = {4}};
  add.data = (uint8_t *)v;
  add.bytes = 16;
  rewrite_shard(SHARD(7), NULL, NULL, &add);
  index_edit(16, "mtp.0.something_new", SHARD(7));
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  ck_assert_msg(try_open(ctx, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(truncated_shard) {
  ck_assert_int_eq(truncate(in_dir(g_dir, SHARD(4)), 1000000), 0);
  expect_open_fails(VNRT_ERROR_IO, SHARD(4), "model.safetensors.index.json");
}
END_TEST

static bool grow_sink(st_item *it, void *user) {
  (void)user;
  if (strcmp(it->name, "layers.0.attn.attn_sink") == 0) {
    it->dims[0] = 5;
    it->data = realloc(it->data, 20);
    it->bytes = 20;
  }
  return true;
}

START_TEST(wrong_shape) {
  rewrite_shard(SHARD(2), grow_sink, NULL, NULL);
  index_edit(4, NULL, NULL);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT,
                    "tensor 'layers.0.attn.attn_sink' (F32) has shape [5], expected [4]", SHARD(2));
}
END_TEST

static bool norm_to_f32(st_item *it, void *user) {
  (void)user;
  if (strcmp(it->name, "layers.1.ffn_norm.weight") == 0) {
    snprintf(it->dtype, sizeof it->dtype, "F32");
    it->data = realloc(it->data, it->bytes * 2);
    it->bytes *= 2;
  }
  return true;
}

START_TEST(wrong_dtype) {
  rewrite_shard(SHARD(3), norm_to_f32, NULL, NULL);
  index_edit(512, NULL, NULL);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT,
                    "tensor 'layers.1.ffn_norm.weight' has dtype F32, expected BF16", NULL);
}
END_TEST

START_TEST(wrong_total_size) {
  index_edit(1, NULL, NULL);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "metadata.total_size is 11241761",
                    "hold 11241760 bytes");
}
END_TEST

static bool poke_tid2eid(st_item *it, void *user) {
  const int64_t *edit = user; /* row, column, value */
  if (strcmp(it->name, "layers.1.ffn.gate.tid2eid") == 0) {
    uint64_t v = (uint64_t)edit[2];
    for (int b = 0; b < 8; b++) it->data[(edit[0] * 4 + edit[1]) * 8 + b] = (uint8_t)(v >> (8 * b));
  }
  return true;
}

static void expect_tid2eid_fails(const int64_t edit[3], const char *fragment) {
  rewrite_shard(SHARD(3), poke_tid2eid, (void *)edit, NULL);
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  ck_assert_msg(try_open(ctx, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  int32_t *ids = (int32_t *)1;
  ck_assert_int_eq(vn_checkpoint_tid2eid(ck, 1, &ids, err, sizeof err),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ids);
  ck_assert_msg(strstr(err, fragment), "'%s' lacks '%s'", err, fragment);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
}

START_TEST(tid2eid_out_of_range) {
  const int64_t e1[3] = {5, 2, 16};
  expect_tid2eid_fails(e1, "layer 1, row 5 (token id), column 2: expert id 16 is outside");
  const int64_t e2[3] = {3, 0, -1};
  expect_tid2eid_fails(e2, "row 3 (token id), column 0: expert id -1 is outside");
}
END_TEST

START_TEST(tid2eid_repeated) {
  /* Row 9: make column 3 equal to column 0. */
  vnrt_context *ctx = tu_context();
  vn_checkpoint *ck;
  char err[1024];
  ck_assert_msg(try_open(ctx, &ck, err, sizeof err) == VNRT_OK, "%s", err);
  int32_t *ids;
  ck_assert_int_eq(vn_checkpoint_tid2eid(ck, 1, &ids, err, sizeof err), VNRT_OK);
  int64_t edit[3] = {9, 3, ids[9 * 4]};
  free(ids);
  vn_checkpoint_close(ck);
  vnrt_context_destroy(ctx);
  char want[128];
  snprintf(want, sizeof want, "row 9 (token id), column 3: expert id %lld is repeated",
           (long long)edit[2]);
  expect_tid2eid_fails(edit, want);
}
END_TEST

START_TEST(missing_shard) {
  ck_assert_int_eq(unlink(in_dir(g_dir, SHARD(3))), 0);
  expect_open_fails(VNRT_ERROR_IO, "shard " SHARD(3) " named by model.safetensors.index.json",
                    NULL);
}
END_TEST

START_TEST(bad_index) {
  FILE *f = fopen(in_dir(g_dir, "model.safetensors.index.json"), "w");
  fputs("{\"metadata\": {\"total_size\": 5}, \"weight_map\": {", f);
  fclose(f);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "model.safetensors.index.json: not valid JSON",
                    NULL);
  f = fopen(in_dir(g_dir, "model.safetensors.index.json"), "w");
  fputs("{\"metadata\": {\"total_size\": 5}}", f);
  fclose(f);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "weight_map is missing", NULL);
  f = fopen(in_dir(g_dir, "model.safetensors.index.json"), "w");
  fputs("{\"metadata\": {\"total_size\": \"5\"}, \"weight_map\": {}}", f);
  fclose(f);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "metadata.total_size is missing or not", NULL);
  f = fopen(in_dir(g_dir, "model.safetensors.index.json"), "w");
  fputs("{\"metadata\": {\"total_size\": 5}, \"weight_map\": {\"a\": \"../x\"}}", f);
  fclose(f);
  expect_open_fails(VNRT_ERROR_INVALID_ARGUMENT, "weight_map[\"a\"] must be a shard file name",
                    NULL);
  unlink(in_dir(g_dir, "model.safetensors.index.json"));
  expect_open_fails(VNRT_ERROR_IO, "model.safetensors.index.json: cannot open", NULL);
  unlink(in_dir(g_dir, "config.json"));
  expect_open_fails(VNRT_ERROR_IO, "config.json: cannot open", NULL);
}
END_TEST

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_checkpoint PATH/TO/vnrt-make-checkpoint\n");
    return 2;
  }
  g_tool = argv[1];
  snprintf(g_base, sizeof g_base, "/tmp/vnrt_ckbase_XXXXXX");
  if (!mkdtemp(g_base)) return 1;
  char extra[1024] = "--seed 11";
  for (size_t i = 0; i < sizeof kMasters / sizeof kMasters[0]; i++) {
    strcat(extra, " --master ");
    strcat(extra, kMasters[i]);
  }
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s' --config '%s' --out '%s' %s", g_tool, config_path("v4-tiny.json"),
           g_base, extra);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_checkpoint: could not generate the checkpoint: %s\n", cmd);
    return 1;
  }
  Suite *s = suite_create("checkpoint");
  TCase *tc = tcase_create("checkpoint");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, opens_and_matches_plan);
  tcase_add_test(tc, pack_experts_fp4);
  tcase_add_test(tc, quantization_recipes);
  tcase_add_test(tc, fp8_experts_and_tiny2);
  tcase_add_test(tc, tool_errors);
  tcase_add_test(tc, missing_tensor);
  tcase_add_test(tc, index_names_absent_tensor);
  tcase_add_test(tc, extra_tensor);
  tcase_add_test(tc, extra_mtp_tensor_is_skipped);
  tcase_add_test(tc, truncated_shard);
  tcase_add_test(tc, wrong_shape);
  tcase_add_test(tc, wrong_dtype);
  tcase_add_test(tc, wrong_total_size);
  tcase_add_test(tc, tid2eid_out_of_range);
  tcase_add_test(tc, tid2eid_repeated);
  tcase_add_test(tc, missing_shard);
  tcase_add_test(tc, bad_index);
  suite_add_tcase(s, tc);
  int rc = tu_run_suite(s);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_base);
  if (system(cmd) != 0) return 1;
  return rc;
}
