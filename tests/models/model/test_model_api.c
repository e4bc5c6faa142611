/* The model API (vnrt/model.h) on the tiny checkpoint: descs and errors, decode == prefill ==
 * prefill in pieces, the context bound, reset, statistics, the device weights the plans and
 * sessions share, weights streamed under a memory limit, and the sampler. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/inspect.h"
#include "vnrt/model.h"
#include "vnrt/vnrt.h"

#include "model_check.h"

static double rel_diff(const float *a, const float *b, int64_t n) {
  double d = 0, m = 0;
  for (int64_t i = 0; i < n; ++i) {
    d = fmax(d, fabs((double)a[i] - (double)b[i]));
    m = fmax(m, fabs((double)b[i]));
  }
  return m > 0 ? d / m : d;
}

static int contains(const char *s, const char *w) { return strstr(s, w) != NULL; }

static void test_sampler(void) {
  float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  int32_t id = -1;
  CHECK(vnrt_sample(logits, 6, NULL, NULL, &id) == VNRT_OK && id == 1, "greedy: lowest argmax");
  vnrt_sampler_desc d = {sizeof d, 1.0f, 0, 0.0f, 42};
  int counts[6] = {0};
  uint64_t st = 0;
  int32_t first[16];
  for (int i = 0; i < 600; ++i) {
    CHECK(vnrt_sample(logits, 6, &d, &st, &id) == VNRT_OK && id >= 0 && id < 6, "sampled id");
    if (id >= 0 && id < 6) counts[id]++;
    if (i < 16) first[i] = id;
  }
  CHECK(counts[1] > 100 && counts[3] > 100 && counts[2] < counts[1], "distribution follows p");
  st = 0;
  for (int i = 0; i < 16; ++i) {
    vnrt_sample(logits, 6, &d, &st, &id);
    CHECK(id == first[i], "the same seed gives the same draws (%d: %d vs %d)", i, id, first[i]);
  }
  d.top_k = 2; /* only ids 1 and 3 */
  st = 0;
  for (int i = 0; i < 50; ++i) {
    vnrt_sample(logits, 6, &d, &st, &id);
    CHECK(id == 1 || id == 3, "top_k 2 keeps the two largest (got %d)", id);
  }
  d.top_k = 0;
  d.top_p = 0.01f; /* the single most likely id (ties: lower id first) */
  st = 0;
  vnrt_sample(logits, 6, &d, &st, &id);
  CHECK(id == 1, "top_p 0.01 keeps the top id (got %d)", id);
  d.top_p = 2.0f;
  CHECK(vnrt_sample(logits, 6, &d, &st, &id) == VNRT_ERROR_INVALID_ARGUMENT &&
            contains(vnrt_model_last_error(), "top_p"),
        "top_p 2 is refused: %s", vnrt_model_last_error());
  float nan_logits[2] = {0.0f, NAN};
  CHECK(vnrt_sample(nan_logits, 2, NULL, NULL, &id) == VNRT_ERROR_INVALID_ARGUMENT, "NaN logit");
}

/* The Engram option (models/configs/v4-tiny-engram.json: Engram in layers 1 and 3, pad id 2):
 * its n-gram and conv histories carry over prefill chunks and decode steps and start again at
 * a reset (the n-gram history at the pad id), and a second session computes the same. */
static void test_engram(vnrt_context *ctx, const char *dir) {
  vnrt_model_desc d = {0};
  d.device_spec = "cpu";
  d.numerics = VNRT_NUMERICS_F32;
  vnrt_model *m = NULL;
  vnrt_status st = vnrt_model_open(ctx, dir, &d, &m);
  CHECK(st == VNRT_OK, "engram: open: %s", vnrt_model_last_error());
  if (st != VNRT_OK) return;
  enum { V = 1024, N = 40 };
  vnrt_session *s = NULL, *s2 = NULL;
  vnrt_session_desc sd = {0};
  sd.max_context = 64;
  sd.prefill_chunk = 16;
  st = vnrt_session_create(m, &sd, &s);
  CHECK(st == VNRT_OK, "engram: session: %s", vnrt_model_last_error());
  float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
  int32_t ids[N];
  for (int i = 0; i < N; ++i) ids[i] = (i * 53 + 7) % V;
  if (st == VNRT_OK && a && b) {
    CHECK(vnrt_session_prefill(s, ids, N) == VNRT_OK, "engram: prefill: %s",
          vnrt_model_last_error());
    vnrt_session_logits(s, a, V);
    vnrt_session_reset(s);
    CHECK(vnrt_session_prefill(s, ids, 5) == VNRT_OK &&
              vnrt_session_prefill(s, ids + 5, 1) == VNRT_OK &&
              vnrt_session_decode(s, ids + 6, N - 6) == VNRT_OK,
          "engram: prefill 5, 1, decode 34: %s", vnrt_model_last_error());
    vnrt_session_logits(s, b, V);
    CHECK(rel_diff(b, a, V) <= 1e-5, "engram: pieces vs one prefill: rel %g", rel_diff(b, a, V));
    vnrt_session_reset(s);
    CHECK(vnrt_session_decode(s, ids, N) == VNRT_OK, "engram: decode: %s", vnrt_model_last_error());
    vnrt_session_logits(s, b, V);
    CHECK(rel_diff(b, a, V) <= 1e-5, "engram: decode after reset vs prefill: rel %g",
          rel_diff(b, a, V));
    /* A different first token changes the n-gram rows of the next ones: the logits move. */
    vnrt_session_reset(s);
    int32_t other[N];
    memcpy(other, ids, sizeof other);
    other[0] = (ids[0] + 1) % V;
    CHECK(vnrt_session_prefill(s, other, N) == VNRT_OK, "engram: other prefill");
    vnrt_session_logits(s, b, V);
    CHECK(rel_diff(b, a, V) > 1e-6, "engram: another history gives other logits");
    CHECK(vnrt_session_create(m, &sd, &s2) == VNRT_OK, "engram: second session: %s",
          vnrt_model_last_error());
    if (s2) {
      CHECK(vnrt_session_prefill(s2, ids, N) == VNRT_OK, "engram: second session's prefill");
      vnrt_session_logits(s2, b, V);
      CHECK(rel_diff(b, a, V) <= 1e-6, "engram: second session vs first: rel %g",
            rel_diff(b, a, V));
    }
  }
  /* The Engram tables served from Engram stores (with and without a row cache): the same. */
  for (int cache = 0; cache < 2 && a && b; ++cache) {
    vnrt_model_desc ds = d;
    ds.engram_store = 1;
    ds.engram_cache_rows = cache ? 64 : 0;
    vnrt_model *ms = NULL;
    vnrt_session *ss = NULL;
    st = vnrt_model_open(ctx, dir, &ds, &ms);
    CHECK(st == VNRT_OK, "engram store: open: %s", vnrt_model_last_error());
    if (st == VNRT_OK) st = vnrt_session_create(ms, &sd, &ss);
    CHECK(st == VNRT_OK, "engram store: session: %s", vnrt_model_last_error());
    if (st == VNRT_OK) {
      CHECK(vnrt_session_prefill(ss, ids, 5) == VNRT_OK &&
                vnrt_session_decode(ss, ids + 5, N - 5) == VNRT_OK,
            "engram store: prefill, decode: %s", vnrt_model_last_error());
      vnrt_session_logits(ss, b, V);
      CHECK(rel_diff(b, a, V) <= 1e-5, "engram store (cache %d): rel %g", cache * 64,
            rel_diff(b, a, V));
      vnrt_session_stats st2 = {0}, st1 = {0};
      vnrt_session_get_stats(ss, &st2);
      vnrt_session_get_stats(s, &st1);
      CHECK(st2.weight_bytes < st1.weight_bytes,
            "engram store: the plan holds fewer weights (%llu vs %llu bytes)",
            (unsigned long long)st2.weight_bytes, (unsigned long long)st1.weight_bytes);
    }
    vnrt_session_destroy(ss);
    vnrt_model_close(ms);
  }
  free(a);
  free(b);
  vnrt_session_destroy(s);
  vnrt_session_destroy(s2);
  vnrt_model_close(m);
}

/* A prefill of 40 tokens and 10 decode steps on a model opened with desc d; the last logits
 * into out[V] and the session's statistics into *st. */
static vnrt_status run_short(vnrt_context *ctx, const char *dir, const vnrt_model_desc *d,
                             const int32_t *ids, float *out, int64_t V, vnrt_session_stats *st) {
  vnrt_model *m = NULL;
  vnrt_session *s = NULL;
  vnrt_session_desc sd = {0};
  sd.max_context = 64;
  sd.prefill_chunk = 64;
  vnrt_status r = vnrt_model_open(ctx, dir, d, &m);
  if (r == VNRT_OK) r = vnrt_session_create(m, &sd, &s);
  if (r == VNRT_OK) r = vnrt_session_prefill(s, ids, 40);
  if (r == VNRT_OK) r = vnrt_session_decode(s, ids + 40, 10);
  if (r == VNRT_OK) r = vnrt_session_logits(s, out, (size_t)V);
  if (r == VNRT_OK) r = vnrt_session_get_stats(s, st);
  vnrt_session_destroy(s);
  vnrt_model_close(m);
  return r;
}

/* Half the weights over the device budget (memory_limit): they stay in the mapped checkpoint
 * and stream to the device before the nodes that read them; the plan stays within the budget
 * and the logits are bit-identical to those with every weight resident (the same kernels read
 * the same bytes). */
static void test_streamed(vnrt_context *ctx, const char *dir, const int32_t *ids, int64_t V) {
  vnrt_model_desc d = {0};
  d.device_spec = "cpu";
  d.numerics = VNRT_NUMERICS_F32;
  float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
  vnrt_session_stats sa = {0}, sb = {0};
  vnrt_status st = a && b ? run_short(ctx, dir, &d, ids, a, V, &sa) : VNRT_ERROR_OUT_OF_MEMORY;
  CHECK(st == VNRT_OK, "resident weights: %s", vnrt_model_last_error());
  if (st == VNRT_OK) {
    CHECK(sa.n_streamed_params == 0 && sa.bytes_weights_streamed == 0,
          "no limit, nothing streamed: %d params", (int)sa.n_streamed_params);
    d.memory_limit = sa.weight_bytes / 2;
    st = run_short(ctx, dir, &d, ids, b, V, &sb);
    CHECK(st == VNRT_OK, "memory_limit %llu: %s", (unsigned long long)d.memory_limit,
          vnrt_model_last_error());
  }
  if (st == VNRT_OK) {
    CHECK(sb.n_streamed_params > 0 && sb.streamed_bytes > 0 && sb.bytes_weights_streamed > 0,
          "streamed: %d params, %llu bytes, %llu bytes moved", (int)sb.n_streamed_params,
          (unsigned long long)sb.streamed_bytes, (unsigned long long)sb.bytes_weights_streamed);
    CHECK(sb.weight_bytes + sb.streamed_bytes == sa.weight_bytes,
          "resident %llu + streamed %llu bytes are the weights (%llu)",
          (unsigned long long)sb.weight_bytes, (unsigned long long)sb.streamed_bytes,
          (unsigned long long)sa.weight_bytes);
    CHECK(sb.device_bytes <= d.memory_limit, "decode plan within the limit: %llu > %llu",
          (unsigned long long)sb.device_bytes, (unsigned long long)d.memory_limit);
    CHECK(memcmp(a, b, (size_t)V * sizeof *a) == 0, "streamed weights give other logits: rel %g",
          rel_diff(b, a, V));
  }
  free(a);
  free(b);
}

/* Expert parallel (docs/scale-out.md): an exchange that runs all the experts gives the plain
 * session's logits bit for bit (REF numerics); slices bind the right experts; errors. */
typedef struct full_exchange {
  vnrt_model *m;
  int calls, fail_at;
} full_exchange;

static vnrt_status run_full(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                            const int32_t *experts, const float *weights, float *y) {
  full_exchange *fx = user;
  (void)pos0;
  if (fx->calls++ == fx->fail_at) return VNRT_ERROR_INTERNAL;
  return vnrt_model_moe_experts(fx->m, layer, 0, 16, x, experts, weights, T, 4, y);
}

/* Engram under expert parallel: a fetch that copies each row with vnrt_model_engram_rows gives
 * the one-process logits bit for bit (the rows are copied), now or started early; a failing
 * fetch fails the run naming the layer; vnrt_model_engram_rows refuses a layer without Engram
 * and rows outside the table. */
typedef struct row_fetch {
  vnrt_model *m;
  int calls, starts, finishes, fail_at, bad;
} row_fetch;

static vnrt_status fetch_rows(void *user, const vnrt_engram_fetch *f) {
  row_fetch *rf = user;
  if (f->struct_size < sizeof *f || f->heads != 8 || f->head_dim != 32 ||
      (f->layer != 1 && f->layer != 3)) {
    rf->bad++;
  }
  if (f->stage == VNRT_ENGRAM_FINISH) { /* copied at the start */
    rf->finishes++;
    return VNRT_OK;
  }
  rf->starts += f->stage == VNRT_ENGRAM_START;
  if (rf->calls++ == rf->fail_at) return VNRT_ERROR_INTERNAL;
  for (int64_t q = 0; q < f->tokens * f->heads; ++q) {
    if (f->rows[q] < 0 || f->rows[q] >= f->table_rows) rf->bad++;
    vnrt_status st =
        vnrt_model_engram_rows(rf->m, f->layer, f->rows[q], 1, f->out + q * f->head_dim,
                               (size_t)f->head_dim * 2, NULL, NULL);
    if (st != VNRT_OK) return st;
  }
  return VNRT_OK;
}

static void test_engram_ep(vnrt_context *ctx, const char *dir) {
  vnrt_model_desc d = {0};
  d.device_spec = "cpu";
  vnrt_model *m = NULL;
  CHECK(vnrt_model_open(ctx, dir, &d, &m) == VNRT_OK, "engram ep: open: %s",
        vnrt_model_last_error());
  if (!m) return;
  int64_t rows = 0;
  int32_t dim = 0;
  uint16_t row[32];
  CHECK(
      vnrt_model_engram_rows(m, 1, 0, 0, NULL, 0, &rows, &dim) == VNRT_OK && rows > 0 && dim == 32,
      "engram rows: the table's size: %s", vnrt_model_last_error());
  CHECK(vnrt_model_engram_rows(m, 0, 0, 1, row, sizeof row, NULL, NULL) ==
                VNRT_ERROR_INVALID_ARGUMENT &&
            contains(vnrt_model_last_error(), "layer 0 has no Engram"),
        "engram rows: layer 0: %s", vnrt_model_last_error());
  CHECK(vnrt_model_engram_rows(m, 1, rows - 1, 2, row, sizeof row, NULL, NULL) ==
                VNRT_ERROR_INVALID_ARGUMENT &&
            vnrt_model_engram_rows(m, 1, 0, 2, row, sizeof row, NULL, NULL) ==
                VNRT_ERROR_INVALID_ARGUMENT &&
            vnrt_model_engram_rows(m, 1, rows - 1, 1, row, sizeof row, NULL, NULL) == VNRT_OK,
        "engram rows: past the table, past the buffer, the last row");
  int32_t ids[9] = {3, 14, 15, 92, 65, 35, 89, 79, 32};
  float *a = malloc(1024 * sizeof *a), *b = malloc(1024 * sizeof *b);
  vnrt_session_desc sd = {0};
  sd.size = sizeof sd;
  vnrt_session *s = NULL;
  CHECK(a && b && vnrt_session_create(m, &sd, &s) == VNRT_OK &&
            vnrt_session_prefill(s, ids, 8) == VNRT_OK &&
            vnrt_session_decode(s, ids + 8, 1) == VNRT_OK &&
            vnrt_session_logits(s, a, 1024) == VNRT_OK,
        "engram ep: one process: %s", vnrt_model_last_error());
  vnrt_session_destroy(s);
  full_exchange fx = {m, 0, -1};
  sd.moe_exchange = run_full;
  sd.moe_exchange_user = &fx;
  for (int early = 0; early < 2 && a && b; ++early) {
    row_fetch rf = {m, 0, 0, 0, -1, 0};
    sd.engram_fetch = fetch_rows;
    sd.engram_fetch_user = &rf;
    sd.engram_fetch_early = early;
    s = NULL;
    CHECK(vnrt_session_create(m, &sd, &s) == VNRT_OK &&
              vnrt_session_prefill(s, ids, 8) == VNRT_OK &&
              vnrt_session_decode(s, ids + 8, 1) == VNRT_OK &&
              vnrt_session_logits(s, b, 1024) == VNRT_OK,
          "engram ep (early %d): %s", early, vnrt_model_last_error());
    CHECK(memcmp(a, b, 1024 * sizeof *a) == 0, "engram ep (early %d): rel %g", early,
          rel_diff(b, a, 1024));
    CHECK(rf.calls == 4 && rf.bad == 0 && rf.starts == (early ? 4 : 0) &&
              rf.finishes == (early ? 4 : 0),
          "engram ep (early %d): %d calls, %d starts, %d finishes, %d bad", early, rf.calls,
          rf.starts, rf.finishes, rf.bad);
    rf.fail_at = rf.calls + 1; /* layer 3 of the next run */
    CHECK(vnrt_session_decode(s, ids, 1) == VNRT_ERROR_INTERNAL &&
              contains(vnrt_model_last_error(), "Engram fetch of layer 3") &&
              vnrt_session_position(s) == 0,
          "engram ep (early %d): a failing fetch: %s", early, vnrt_model_last_error());
    vnrt_session_destroy(s);
  }
  /* without a fetch of the caller's: the rows from the session's own checkpoint */
  sd.engram_fetch = NULL;
  sd.engram_fetch_early = 0;
  s = NULL;
  CHECK(a && b && vnrt_session_create(m, &sd, &s) == VNRT_OK &&
            vnrt_session_prefill(s, ids, 8) == VNRT_OK &&
            vnrt_session_decode(s, ids + 8, 1) == VNRT_OK &&
            vnrt_session_logits(s, b, 1024) == VNRT_OK && memcmp(a, b, 1024 * sizeof *a) == 0,
        "engram ep, the built-in fetch: %s", vnrt_model_last_error());
  vnrt_session_destroy(s);
  free(a);
  free(b);
  vnrt_model_close(m);
}

static void test_scale_api(vnrt_context *ctx, const char *dir) {
  vnrt_model_desc d = {0};
  d.device_spec = "cpu";
  d.size = offsetof(vnrt_model_desc, devices); /* the first sized release's */
  vnrt_model *m = NULL;
  CHECK(vnrt_model_open(ctx, dir, &d, &m) == VNRT_OK, "the previous model desc size: %s",
        vnrt_model_last_error());
  if (!m) return;
  d.size = offsetof(vnrt_model_desc, devices) + 4;
  vnrt_model *m2 = NULL;
  CHECK(vnrt_model_open(ctx, dir, &d, &m2) == VNRT_ERROR_INVALID_ARGUMENT && !m2,
        "a model desc size no version had");
  CHECK(vnrt_model_layer_device(m, 0) && !strcmp(vnrt_model_layer_device(m, 0), "cpu") &&
            vnrt_model_layer_device(m, 4) && !vnrt_model_layer_device(m, 5) &&
            !vnrt_model_layer_device(m, -1) && !vnrt_model_expert_device(m, 0),
        "vnrt_model_layer_device, vnrt_model_expert_device");
  int32_t ids[9] = {3, 14, 15, 92, 65, 35, 89, 79, 32};
  float *a = malloc(1024 * sizeof *a), *b = malloc(1024 * sizeof *b);
  vnrt_session_desc sd = {0};
  sd.size = offsetof(vnrt_session_desc, ep_simulate_ranks);
  vnrt_session *s = NULL;
  CHECK(vnrt_session_create(m, &sd, &s) == VNRT_OK, "the previous session desc size: %s",
        vnrt_model_last_error());
  int32_t routes[64];
  int64_t T = -1;
  CHECK(s && vnrt_session_prefill(s, ids, 8) == VNRT_OK &&
            vnrt_session_decode(s, ids + 8, 1) == VNRT_OK &&
            vnrt_session_logits(s, a, 1024) == VNRT_OK,
        "plain run: %s", vnrt_model_last_error());
  CHECK(vnrt_session_routes(s, 0, routes, 64, &T) == VNRT_ERROR_INVALID_ARGUMENT && T == 0,
        "no routes without ep_simulate_ranks");
  vnrt_session_destroy(s);
  s = NULL;
  sd.size = sizeof sd;
  sd.ep_simulate_ranks = 17;
  CHECK(vnrt_session_create(m, &sd, &s) == VNRT_ERROR_INVALID_ARGUMENT &&
            contains(vnrt_model_last_error(), "ep_simulate_ranks"),
        "17 simulated ranks of 16 experts: %s", vnrt_model_last_error());
  /* the exchange: every expert through vnrt_model_moe_experts, and the simulation on top */
  full_exchange fx = {m, 0, -1};
  sd.ep_simulate_ranks = 2;
  sd.moe_exchange = run_full;
  sd.moe_exchange_user = &fx;
  CHECK(vnrt_session_create(m, &sd, &s) == VNRT_OK, "exchange session: %s",
        vnrt_model_last_error());
  CHECK(s && vnrt_session_prefill(s, ids, 8) == VNRT_OK &&
            vnrt_session_decode(s, ids + 8, 1) == VNRT_OK &&
            vnrt_session_logits(s, b, 1024) == VNRT_OK,
        "exchange run: %s", vnrt_model_last_error());
  CHECK(memcmp(a, b, 1024 * sizeof *a) == 0, "the exchange changes no bit: rel %g",
        rel_diff(b, a, 1024));
  CHECK(fx.calls == 8, "the exchange is called once per layer and run (%d)", fx.calls);
  CHECK(vnrt_session_routes(s, 3, routes, 64, &T) == VNRT_OK && T == 1 && routes[0] >= 0 &&
            routes[0] < 16 &&
            vnrt_session_routes(s, 4, routes, 64, &T) == VNRT_ERROR_OUT_OF_RANGE &&
            vnrt_session_routes(s, 0, routes, 3, &T) == VNRT_ERROR_INVALID_ARGUMENT,
        "routes of the last run: %s", vnrt_model_last_error());
  char text[2048];
  size_t len = 0;
  CHECK(vnrt_session_ep_text(s, text, sizeof text, &len) == VNRT_OK &&
            contains(text, "ep rank 1: home") && len == strlen(text),
        "ep text: %s", text);
  fx.fail_at = fx.calls + 2; /* layer 2 of the next run */
  CHECK(vnrt_session_decode(s, ids, 1) == VNRT_ERROR_INTERNAL &&
            contains(vnrt_model_last_error(), "exchange of layer 2") &&
            vnrt_session_position(s) == 0,
        "a failing exchange fails the run and resets: %s", vnrt_model_last_error());
  vnrt_session_destroy(s);
  /* slices: the same rows through the whole layer and through its slice agree bit for bit */
  float x[4 * 256], y1[4 * 256], y2[4 * 256], w[4] = {0.5f, 1.0f, 0.25f, 2.0f};
  for (int i = 0; i < 4 * 256; ++i) x[i] = (float)((i * 7919) % 200 - 100) / 50.0f;
  int32_t lo[4] = {1, 0, 3, 2}, hi[4] = {9, 8, 15, 10};
  for (int half = 0; half < 2; ++half) {
    const int32_t *e = half ? hi : lo;
    CHECK(vnrt_model_moe_experts(m, 1, 0, 16, x, e, w, 4, 1, y1) == VNRT_OK &&
              vnrt_model_moe_experts(m, 1, half * 8, 8, x, e, w, 4, 1, y2) == VNRT_OK &&
              memcmp(y1, y2, sizeof y1) == 0,
          "slice %d: %s", half, vnrt_model_last_error());
  }
  CHECK(vnrt_model_moe_experts(m, 1, 0, 8, x, hi, w, 4, 1, y2) == VNRT_ERROR_OUT_OF_RANGE &&
            contains(vnrt_model_last_error(), "expert 9"),
        "an expert outside the slice: %s", vnrt_model_last_error());
  CHECK(vnrt_model_moe_experts(m, 4, 0, 8, x, lo, w, 4, 1, y2) == VNRT_ERROR_INVALID_ARGUMENT &&
            vnrt_model_moe_experts(m, 0, 8, 9, x, lo, w, 4, 1, y2) == VNRT_ERROR_INVALID_ARGUMENT &&
            vnrt_model_moe_experts(m, 0, 0, 8, x, lo, w, 0, 1, y2) == VNRT_OK,
        "bad layer / slice, zero rows");
  free(a);
  free(b);
  vnrt_model_close(m);
}

/* vnrt_model_graph_text: the vnir of a decode step parses back into the graph the model's own
 * decode plan runs (same node count once planned on the CPU; the states sized by max_context),
 * is cut to a short buffer, and bad arguments are named. */
static void test_graph_text(vnrt_context *ctx, vnrt_model *m, const char *dir) {
  vnrt_model_graph_desc gd = {.size = sizeof gd, .max_context = 160, .numerics = VNRT_NUMERICS_F32};
  size_t len = 0;
  CHECK(vnrt_model_graph_text(ctx, dir, &gd, NULL, 0, &len) == VNRT_OK && len > 1000,
        "graph text length %zu: %s", len, vnrt_model_last_error());
  char *text = malloc(len + 1);
  if (!text) return;
  CHECK(vnrt_model_graph_text(ctx, dir, &gd, text, len + 1, NULL) == VNRT_OK &&
            strlen(text) == len && !strncmp(text, "vnir 1\n", 7) &&
            contains(text, "param embed.weight: bf16[1024, ") &&
            contains(text, "input ids: i32[1]\n") &&
            contains(text, "attn.comp: f32[40, "), /* a ratio-4 layer's entries: 160 / 4 */
        "graph text: %.200s", text);
  vnrt_graph *g = NULL;
  vnrt_device *cpu = NULL;
  vnrt_plan *plan = NULL;
  vnrt_session *s = NULL;
  vnrt_session_desc sd = {0};
  sd.max_context = 160;
  vnrt_status st = vnrt_graph_parse(ctx, text, len, "graph_text", &g);
  CHECK(st == VNRT_OK, "graph text parses: %s", vnrt_context_last_error(ctx));
  if (st == VNRT_OK && vnrt_device_select(ctx, "cpu", &cpu) == VNRT_OK) {
    st = vnrt_plan_create(ctx, g, cpu, NULL, &plan);
    CHECK(st == VNRT_OK, "graph text plans: %s", vnrt_context_last_error(ctx));
  }
  const int32_t ids[2] = {3, 5};
  vnrt_session_stats ss = {0};
  if (plan && vnrt_session_create(m, &sd, &s) == VNRT_OK &&
      vnrt_session_prefill(s, ids, 1) == VNRT_OK && vnrt_session_decode(s, ids + 1, 1) == VNRT_OK &&
      vnrt_session_get_stats(s, &ss) == VNRT_OK) {
    CHECK(ss.n_nodes > 0 && vnrt_plan_node_count(plan) == ss.n_nodes,
          "graph text: %d nodes planned, the model's decode plan %d",
          (int)vnrt_plan_node_count(plan), (int)ss.n_nodes);
  } else {
    CHECK(0, "graph text: no decode plan to compare with: %s", vnrt_model_last_error());
  }
  vnrt_session_destroy(s);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(g);
  free(text);
  /* NULL desc: a decode step with the default context; a 3-token chunk. */
  char small[32];
  CHECK(vnrt_model_graph_text(ctx, dir, NULL, small, sizeof small, &len) == VNRT_OK &&
            len > sizeof small && strlen(small) == sizeof small - 1,
        "graph text is cut to the buffer and says its length");
  vnrt_model_graph_desc three = {.tokens = 3};
  char *t3 = malloc(len + 4096);
  CHECK(t3 && vnrt_model_graph_text(ctx, dir, &three, t3, len + 4096, NULL) == VNRT_OK &&
            contains(t3, "input ids: i32[3]\n"),
        "a 3-token graph: %s", vnrt_model_last_error());
  free(t3);
  const struct {
    vnrt_model_graph_desc d;
    const char *want;
  } bad[] = {
      {{.size = 12}, "vnrt_model_graph_desc.size is 12"},
      {{.tokens = -1}, "tokens -1"},
      {{.tokens = 161, .max_context = 160}, "max_context = 160"},
      {{.max_context = -5}, "max_context -5"},
      {{.max_context = 1 << 30}, "max_position_embeddings"},
      {{.numerics = (vnrt_numerics)9}, "numerics 9"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    CHECK(
        vnrt_model_graph_text(ctx, dir, &bad[i].d, NULL, 0, NULL) == VNRT_ERROR_INVALID_ARGUMENT &&
            contains(vnrt_model_last_error(), bad[i].want),
        "bad graph desc %zu named ('%s'): %s", i, bad[i].want, vnrt_model_last_error());
  }
  CHECK(vnrt_model_graph_text(NULL, dir, NULL, NULL, 0, NULL) == VNRT_ERROR_INVALID_ARGUMENT &&
            vnrt_model_graph_text(ctx, NULL, NULL, NULL, 0, NULL) == VNRT_ERROR_INVALID_ARGUMENT &&
            vnrt_model_graph_text(ctx, dir, NULL, NULL, 8, NULL) == VNRT_ERROR_INVALID_ARGUMENT &&
            contains(vnrt_model_last_error(), "NULL"),
        "NULL arguments named: %s", vnrt_model_last_error());
  CHECK(vnrt_model_graph_text(ctx, "/nonexistent/ckpt", NULL, NULL, 0, NULL) != VNRT_OK &&
            contains(vnrt_model_last_error(), "/nonexistent/ckpt"),
        "a missing config is named: %s", vnrt_model_last_error());
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: test_model_api CHECKPOINT_DIR [ENGRAM_CHECKPOINT_DIR]\n");
    return 2;
  }
  const char *dir = argv[1];
  test_sampler();

  vnrt_context *ctx = NULL;
  if (vnrt_context_create(NULL, &ctx) != VNRT_OK) return 1;
  test_scale_api(ctx, dir);
  vnrt_model *m = NULL;
  vnrt_model_desc d = {0};
  d.device_spec = "cpu";
  d.numerics = (vnrt_numerics)7;
  CHECK(vnrt_model_open(ctx, dir, &d, &m) == VNRT_ERROR_INVALID_ARGUMENT && !m &&
            contains(vnrt_model_last_error(), "numerics"),
        "a bad numerics is named: %s", vnrt_model_last_error());
  d.numerics = VNRT_NUMERICS_F32;
  CHECK(vnrt_model_open(ctx, "/nonexistent/ckpt", &d, &m) != VNRT_OK && !m &&
            contains(vnrt_model_last_error(), "/nonexistent/ckpt"),
        "a missing checkpoint is named: %s", vnrt_model_last_error());
  vnrt_status st = vnrt_model_open(ctx, dir, &d, &m);
  CHECK(st == VNRT_OK, "open: %s", vnrt_model_last_error());
  if (st != VNRT_OK) return 1;
  vnrt_model_info info = {0};
  CHECK(vnrt_model_get_info(m, &info) == VNRT_OK && info.vocab_size == 1024 &&
            info.num_layers == 4 && info.n_csa_layers == 2 && info.n_hca_layers == 1 &&
            info.num_hash_layers == 2 && !strcmp(info.device, "cpu"),
        "info: vocab %lld, layers %d, csa %d, hca %d, device %s", (long long)info.vocab_size,
        (int)info.num_layers, (int)info.n_csa_layers, (int)info.n_hca_layers, info.device);
  CHECK(info.size == sizeof info && info.quantized == 1, "info: size %zu, quantized %d", info.size,
        (int)info.quantized);
  {
    /* The decode's bytes per token: the plan's "weights read per token" line. */
    char plan[4096];
    CHECK(vnrt_model_plan_text(dir, 0, plan, sizeof plan, NULL) == VNRT_OK, "plan text");
    const char *line = strstr(plan, "weights read per token:");
    unsigned long long want = 0;
    CHECK(line && sscanf(line, "weights read per token: %llu", &want) == 1 && want > 0 &&
              info.decode_bytes_per_token == want,
          "info: decode bytes per token %llu, the plan's %llu",
          (unsigned long long)info.decode_bytes_per_token, want);
  }
  /* The earlier releases' sizes: their fields, and nothing written past them. */
  const size_t releases[2] = {offsetof(vnrt_model_info, quantized),
                              offsetof(vnrt_model_info, decode_bytes_per_token)};
  for (int r = 0; r < 2; r++) {
    struct {
      vnrt_model_info info;
      unsigned char guard[sizeof(vnrt_model_info)];
    } old;
    memset(&old, 0xA5, sizeof old);
    old.info.size = releases[r];
    const unsigned char *p = (const unsigned char *)&old + releases[r];
    int intact = 1;
    CHECK(vnrt_model_get_info(m, &old.info) == VNRT_OK && old.info.vocab_size == 1024 &&
              old.info.size == releases[r] && (r == 0 || old.info.quantized == 1),
          "info at release %d's size", r + 1);
    for (size_t i = 0; i < sizeof old - releases[r]; i++) intact &= p[i] == 0xA5;
    CHECK(intact, "vnrt_model_get_info wrote past the caller's size %zu", releases[r]);
  }
  {
    vnrt_model_info bad = {0};
    bad.size = 12;
    CHECK(vnrt_model_get_info(m, &bad) == VNRT_ERROR_INVALID_ARGUMENT &&
              contains(vnrt_model_last_error(), "vnrt_model_info.size is 12"),
          "a size of no release is named: %s", vnrt_model_last_error());
  }
  const int64_t V = info.vocab_size;

  vnrt_session *s = NULL;
  vnrt_session_desc sd = {0};
  sd.max_context = info.max_position_embeddings + 1;
  CHECK(vnrt_session_create(m, &sd, &s) == VNRT_ERROR_INVALID_ARGUMENT && !s &&
            contains(vnrt_model_last_error(), "max_context"),
        "max_context over the model's: %s", vnrt_model_last_error());
  sd.max_context = 160; /* beyond the window (128) and a compressed HCA entry (128) */
  sd.prefill_chunk = 64;
  st = vnrt_session_create(m, &sd, &s);
  CHECK(st == VNRT_OK, "session: %s", vnrt_model_last_error());
  if (st != VNRT_OK) return 1;
  float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
  CHECK(vnrt_session_logits(s, a, (size_t)V) == VNRT_ERROR_INVALID_ARGUMENT,
        "no logits before a run");
  int32_t ids[150];
  for (int i = 0; i < 150; ++i) ids[i] = (i * 37 + 11) % 1024;
  int32_t bad[3] = {1, 1024, 2};
  CHECK(vnrt_session_prefill(s, bad, 3) == VNRT_ERROR_OUT_OF_RANGE &&
            contains(vnrt_model_last_error(), "1024") && vnrt_session_position(s) == 0,
        "an id outside the vocabulary is named and nothing runs: %s", vnrt_model_last_error());
  CHECK(vnrt_session_prefill(s, ids, 0) == VNRT_ERROR_INVALID_ARGUMENT, "an empty prefill");

  /* One prefill of 150 tokens (chunks 64, 64, 22) == pieces == one token at a time. */
  CHECK(vnrt_session_prefill(s, ids, 150) == VNRT_OK, "prefill: %s", vnrt_model_last_error());
  CHECK(vnrt_session_position(s) == 150, "position 150");
  vnrt_session_logits(s, a, (size_t)V);
  vnrt_session_reset(s);
  CHECK(vnrt_session_prefill(s, ids, 100) == VNRT_OK &&
            vnrt_session_prefill(s, ids + 100, 3) == VNRT_OK &&
            vnrt_session_decode(s, ids + 103, 47) == VNRT_OK,
        "prefill 100, 3, decode 47: %s", vnrt_model_last_error());
  vnrt_session_logits(s, b, (size_t)V);
  CHECK(rel_diff(b, a, V) <= 1e-5, "pieces vs one prefill: rel %g", rel_diff(b, a, V));
  vnrt_session_reset(s);
  CHECK(vnrt_session_decode(s, ids, 150) == VNRT_OK, "decode 150: %s", vnrt_model_last_error());
  vnrt_session_logits(s, b, (size_t)V);
  CHECK(rel_diff(b, a, V) <= 1e-5, "decode vs prefill: rel %g", rel_diff(b, a, V));
  /* The context bound: 10 more tokens do not fit, and nothing runs. */
  CHECK(vnrt_session_prefill(s, ids, 11) == VNRT_ERROR_OUT_OF_RANGE &&
            contains(vnrt_model_last_error(), "context") && vnrt_session_position(s) == 150,
        "over max_context: %s", vnrt_model_last_error());
  CHECK(vnrt_session_decode(s, ids, 10) == VNRT_OK && vnrt_session_position(s) == 160 &&
            vnrt_session_decode(s, ids, 1) == VNRT_ERROR_OUT_OF_RANGE,
        "exactly max_context positions fit");
  vnrt_session_stats ss = {0};
  CHECK(vnrt_session_get_stats(s, &ss) == VNRT_OK && ss.tokens_prefilled == 253 &&
            ss.tokens_decoded == 207 && ss.n_plans >= 3 && ss.n_fallback_nodes == 0 &&
            ss.weight_bytes > 0,
        "stats: %lld prefilled, %lld decoded, %d plans", (long long)ss.tokens_prefilled,
        (long long)ss.tokens_decoded, (int)ss.n_plans);
  /* The session's plans (the decode plan and a prefill plan per chunk length) read the
   * model's device weights, bound once, instead of holding copies of their own. */
  CHECK(ss.device_bytes < ss.weight_bytes,
        "the decode plan holds no weights of its own: device %llu, weights %llu bytes",
        (unsigned long long)ss.device_bytes, (unsigned long long)ss.weight_bytes);
  /* A second session shares the model's device weights and computes the same logits. */
  vnrt_session *s2 = NULL;
  CHECK(vnrt_session_create(m, &sd, &s2) == VNRT_OK, "second session: %s", vnrt_model_last_error());
  if (s2) {
    CHECK(vnrt_session_prefill(s2, ids, 150) == VNRT_OK, "second session's prefill");
    vnrt_session_logits(s2, b, (size_t)V);
    CHECK(rel_diff(b, a, V) <= 1e-6, "second session vs first: rel %g", rel_diff(b, a, V));
    vnrt_session_stats s2s = {0};
    vnrt_session_get_stats(s2, &s2s);
    CHECK(s2s.device_bytes < s2s.weight_bytes,
          "the session's plan holds no weights of its own: device %llu, weights %llu bytes",
          (unsigned long long)s2s.device_bytes, (unsigned long long)s2s.weight_bytes);
  }
  vnrt_session_destroy(s);
  vnrt_session_destroy(s2);

  char buf[64];
  size_t len = 0;
  CHECK(vnrt_model_plan_text(dir, 1024, buf, sizeof buf, &len) == VNRT_OK && len > sizeof buf &&
            strlen(buf) == sizeof buf - 1,
        "plan text is cut to the buffer and says its length");
  free(a);
  free(b);
  test_graph_text(ctx, m, dir);
  vnrt_model_close(m);
  test_streamed(ctx, dir, ids, V);
  if (argc == 3) test_engram(ctx, argv[2]);
  if (argc == 3) test_engram_ep(ctx, argv[2]);
  vnrt_context_destroy(ctx);
  if (g_failures) fprintf(stderr, "%d failure(s)\n", g_failures);
  return g_failures ? 1 : 0;
}
