/* Persistent state: zero-initialised, updated after each run, in place for kv_write, and a
 * KV-cached decode that equals attention over the whole prefix, on every device. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kvc_ref.h"
#include "test_util.h"

static vnrt_value node1(vnrt_context *ctx, vnrt_graph *g, vnrt_op op, const vnrt_value *in,
                        int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, const char *name) {
  vnrt_value out = -1;
  const char *names[1] = {name};
  TU_OK(ctx, vnrt_graph_add_node(g, op, in, n_in, attrs, n_attrs, names, &out, 1));
  return out;
}

START_TEST(a_state_accumulates_across_runs_and_resets) {
  vnrt_context *ctx = tu_context();
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    vnrt_graph *g = NULL;
    TU_OK(ctx, vnrt_graph_create(ctx, &g));
    vnrt_tensor_type t = {VNRT_F32, 1, {5}};
    vnrt_value c, x;
    TU_OK(ctx, vnrt_graph_add_state(g, "c", &t, &c));
    TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
    vnrt_value in[2] = {c, x};
    vnrt_value c2 = node1(ctx, g, VNRT_OP_ADD, in, 2, NULL, 0, "c2");
    TU_OK(ctx, vnrt_graph_set_state_update(g, c, c2));
    TU_OK(ctx, vnrt_graph_add_output(g, c2));
    ck_assert_int_eq(vnrt_graph_state_count(g), 1);
    vnrt_value next = -1;
    ck_assert_int_eq(vnrt_graph_state(g, 0, &next), c);
    ck_assert_int_eq(next, c2);
    /* A second update of the same state, or one of another type, is refused. */
    ck_assert_int_eq(vnrt_graph_set_state_update(g, c, c2), VNRT_ERROR_INVALID_GRAPH);
    ck_assert_int_eq(vnrt_graph_set_state_update(g, x, c2), VNRT_ERROR_INVALID_GRAPH);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "not a state"));

    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
    float ones[5] = {1, 2, 3, 4, 5}, got[5];
    TU_OK(ctx, vnrt_plan_read_state(plan, "c", got, sizeof got));
    for (int i = 0; i < 5; ++i) ck_assert_float_eq(got[i], 0.0f); /* zero at creation */
    TU_OK(ctx, vnrt_plan_set_input(plan, "x", ones, sizeof ones));
    for (int r = 0; r < 3; ++r) TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_state(plan, "c", got, sizeof got));
    for (int i = 0; i < 5; ++i) ck_assert_float_eq(got[i], 3.0f * ones[i]);
    TU_OK(ctx, vnrt_plan_read_output(plan, "c2", got, sizeof got));
    for (int i = 0; i < 5; ++i) ck_assert_float_eq(got[i], 3.0f * ones[i]);
    /* Setting a state by name, and resetting every state to zero. */
    float seven[5] = {7, 7, 7, 7, 7};
    TU_OK(ctx, vnrt_plan_set_input(plan, "c", seven, sizeof seven));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_state(plan, "c", got, sizeof got));
    ck_assert_float_eq(got[2], 10.0f);
    TU_OK(ctx, vnrt_plan_reset_state(plan));
    TU_OK(ctx, vnrt_plan_read_state(plan, "c", got, sizeof got));
    ck_assert_float_eq(got[2], 0.0f);
    ck_assert_int_eq(vnrt_plan_read_state(plan, "x", got, sizeof got), VNRT_ERROR_NOT_FOUND);
    ck_assert_int_eq(vnrt_plan_read_state(plan, "c", got, 4), VNRT_ERROR_SHAPE_MISMATCH);
    vnrt_plan_destroy(plan);
    vnrt_graph_destroy(g);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* One decode step: write k/v of the new token at pos, attend over the first pos + 1 rows. */
enum { S = 8, H = 2, D = 4 };

static vnrt_graph *decode_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tc = {VNRT_F32, 3, {S, 1, D}}, tq = {VNRT_F32, 3, {1, H, D}};
  vnrt_tensor_type tn = {VNRT_F32, 3, {1, 1, D}}, tp = {VNRT_I32, 1, {1}};
  vnrt_tensor_type ts = {VNRT_F32, 1, {H}};
  vnrt_value kc, vc, q, kn, vn, pos, len, sinks;
  TU_OK(ctx, vnrt_graph_add_state(g, "k_cache", &tc, &kc));
  TU_OK(ctx, vnrt_graph_add_state(g, "v_cache", &tc, &vc));
  TU_OK(ctx, vnrt_graph_add_input(g, "q", &tq, 0, &q));
  TU_OK(ctx, vnrt_graph_add_input(g, "k_new", &tn, 0, &kn));
  TU_OK(ctx, vnrt_graph_add_input(g, "v_new", &tn, 0, &vn));
  TU_OK(ctx, vnrt_graph_add_input(g, "pos", &tp, 0, &pos));
  TU_OK(ctx, vnrt_graph_add_input(g, "kv_len", &tp, 0, &len));
  TU_OK(ctx, vnrt_graph_add_input(g, "sinks", &ts, 1, &sinks));
  vnrt_value kin[3] = {kc, kn, pos}, vin[3] = {vc, vn, pos};
  vnrt_value k2 = node1(ctx, g, VNRT_OP_KV_WRITE, kin, 3, NULL, 0, "k2");
  vnrt_value v2 = node1(ctx, g, VNRT_OP_KV_WRITE, vin, 3, NULL, 0, "v2");
  vnrt_value ain[5] = {q, k2, v2, sinks, len};
  vnrt_value y = node1(ctx, g, VNRT_OP_ATTENTION, ain, 5, NULL, 0, "y");
  TU_OK(ctx, vnrt_graph_set_state_update(g, kc, k2));
  TU_OK(ctx, vnrt_graph_set_state_update(g, vc, v2));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  return g;
}

START_TEST(kv_cached_decode_equals_attention_over_the_prefix_in_place) {
  vnrt_context *ctx = tu_context();
  float kall[S][D], vall[S][D], qall[S][H][D], sinks[H] = {0.3f, -0.7f};
  tu_tensor r = tu_tensor_new(VNRT_F32, 1, (int64_t[]){S * D * (2 + H)});
  tu_fill_uniform(&r, 42, -1, 1);
  const float *rf = r.data;
  memcpy(kall, rf, sizeof kall);
  memcpy(vall, rf + S * D, sizeof vall);
  memcpy(qall, rf + 2 * S * D, sizeof qall);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    vnrt_graph *g = decode_graph(ctx);
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
    vnrt_plan_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_plan_get_info(plan, &info));
    ck_assert_uint_eq(info.state_bytes, 2 * S * D * sizeof(float));
    if (info.n_fallback_nodes == 0) {
      ck_assert_int_eq(info.n_inplace_updates, 2); /* no copy of the caches per step */
    }
    TU_OK(ctx, vnrt_plan_set_input(plan, "sinks", sinks, sizeof sinks));
    for (int32_t t = 0; t < S; ++t) {
      int32_t pos = t, len = t + 1;
      TU_OK(ctx, vnrt_plan_set_input(plan, "q", qall[t], sizeof qall[t]));
      TU_OK(ctx, vnrt_plan_set_input(plan, "k_new", kall[t], sizeof kall[t]));
      TU_OK(ctx, vnrt_plan_set_input(plan, "v_new", vall[t], sizeof vall[t]));
      TU_OK(ctx, vnrt_plan_set_input(plan, "pos", &pos, sizeof pos));
      TU_OK(ctx, vnrt_plan_set_input(plan, "kv_len", &len, sizeof len));
      TU_OK(ctx, vnrt_plan_run(plan));
      float y[H][D];
      TU_OK(ctx, vnrt_plan_read_output(plan, "y", y, sizeof y));
      /* Independent double-precision attention of token t over keys 0..t, with sinks. */
      for (int h = 0; h < H; ++h) {
        double sc[S], m = sinks[h], den = 0.0;
        for (int s = 0; s <= t; ++s) {
          double dot = 0.0;
          for (int d = 0; d < D; ++d) dot += (double)qall[t][h][d] * kall[s][d];
          sc[s] = dot / sqrt((double)D);
          if (sc[s] > m) m = sc[s];
        }
        den = exp(sinks[h] - m);
        for (int s = 0; s <= t; ++s) den += exp(sc[s] - m);
        for (int d = 0; d < D; ++d) {
          double acc = 0.0;
          for (int s = 0; s <= t; ++s) acc += exp(sc[s] - m) / den * vall[s][d];
          ck_assert_msg(fabs(acc - y[h][d]) < 1e-5, "%s step %d head %d: %g vs %g",
                        tu_device_spec(dev), t, h, y[h][d], acc);
        }
      }
    }
    float kc[S][1][D];
    TU_OK(ctx, vnrt_plan_read_state(plan, "k_cache", kc, sizeof kc));
    for (int s = 0; s < S; ++s) {
      for (int d = 0; d < D; ++d) ck_assert_float_eq(kc[s][0][d], kall[s][d]);
    }
    /* A full cache is an error naming the rows, not a write past its end. */
    int32_t pos = S, len = S;
    TU_OK(ctx, vnrt_plan_set_input(plan, "pos", &pos, sizeof pos));
    TU_OK(ctx, vnrt_plan_set_input(plan, "kv_len", &len, sizeof len));
    ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "kv_write"));
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "[8, 9)"));
    pos = 0, len = S + 1;
    TU_OK(ctx, vnrt_plan_set_input(plan, "pos", &pos, sizeof pos));
    TU_OK(ctx, vnrt_plan_set_input(plan, "kv_len", &len, sizeof len));
    ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "kv_len 9"));
    vnrt_plan_destroy(plan);
    vnrt_graph_destroy(g);
  }
  tu_tensor_free(&r);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(kv_write_on_a_plain_value_copies_instead_of_clobbering) {
  /* cache is an input, read again after the write: the write must not alter it. */
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tc = {VNRT_F32, 2, {4, 2}}, tn = {VNRT_F32, 2, {2, 2}}, tp = {VNRT_I32, 1, {1}};
  vnrt_value c, n, p;
  TU_OK(ctx, vnrt_graph_add_input(g, "c", &tc, 0, &c));
  TU_OK(ctx, vnrt_graph_add_input(g, "n", &tn, 0, &n));
  TU_OK(ctx, vnrt_graph_add_input(g, "p", &tp, 0, &p));
  vnrt_value in[3] = {c, n, p};
  vnrt_value w = node1(ctx, g, VNRT_OP_KV_WRITE, in, 3, NULL, 0, "w");
  vnrt_value in2[2] = {w, c};
  vnrt_value d = node1(ctx, g, VNRT_OP_SUB, in2, 2, NULL, 0, "d");
  TU_OK(ctx, vnrt_graph_add_output(g, d));
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, tu_device(ctx, di), NULL, &plan));
    float cv[8] = {1, 1, 1, 1, 1, 1, 1, 1}, nv[4] = {5, 6, 7, 8}, out[8];
    int32_t pv = 1;
    TU_OK(ctx, vnrt_plan_set_input(plan, "c", cv, sizeof cv));
    TU_OK(ctx, vnrt_plan_set_input(plan, "n", nv, sizeof nv));
    TU_OK(ctx, vnrt_plan_set_input(plan, "p", &pv, sizeof pv));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "d", out, sizeof out));
    const float want[8] = {0, 0, 4, 5, 6, 7, 0, 0};
    for (int i = 0; i < 8; ++i) ck_assert_float_eq(out[i], want[i]);
    vnrt_plan_destroy(plan);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* A state read by another node as well as by its kv_write update (the sliding-window ring of
 * DeepSeek-V4: attention reads the old rows, then the new row is written). y = 2·c reads the
 * state; c' = kv_write(c, n, p) is its update. With y first in the order the write is in place
 * (the reader runs before it); with d = c' − c, a reader after the writer, the cache is copied.
 * Either way every run sees the state of the run before. */
static vnrt_graph *ring_graph(vnrt_context *ctx, bool reader_after) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tc = {VNRT_F32, 2, {4, 2}}, tn = {VNRT_F32, 2, {1, 2}}, tp = {VNRT_I32, 1, {1}};
  vnrt_value c, n, p;
  TU_OK(ctx, vnrt_graph_add_state(g, "c", &tc, &c));
  TU_OK(ctx, vnrt_graph_add_input(g, "n", &tn, 0, &n));
  TU_OK(ctx, vnrt_graph_add_input(g, "p", &tp, 0, &p));
  vnrt_attr two = {.key = "s", .kind = VNRT_ATTR_FLOAT, .f = 2.0};
  vnrt_value y = node1(ctx, g, VNRT_OP_SCALE, &c, 1, &two, 1, "y");
  vnrt_value in[3] = {c, n, p};
  vnrt_value w = node1(ctx, g, VNRT_OP_KV_WRITE, in, 3, NULL, 0, "w");
  TU_OK(ctx, vnrt_graph_set_state_update(g, c, w));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  if (reader_after) {
    vnrt_value in2[2] = {w, c};
    TU_OK(ctx, vnrt_graph_add_output(g, node1(ctx, g, VNRT_OP_SUB, in2, 2, NULL, 0, "d")));
  }
  return g;
}

START_TEST(a_state_read_before_its_kv_write_is_updated_in_place) {
  vnrt_context *ctx = tu_context();
  for (int reader_after = 0; reader_after < 2; ++reader_after) {
    vnrt_graph *g = ring_graph(ctx, reader_after);
    for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
      vnrt_device *dev = tu_device(ctx, di);
      vnrt_plan *plan = NULL;
      TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
      vnrt_plan_info info = {.struct_size = sizeof info};
      TU_OK(ctx, vnrt_plan_get_info(plan, &info));
      if (info.n_fallback_nodes == 0 && info.n_inplace_updates != (reader_after ? 0 : 1)) {
        ck_abort_msg("%s, reader after the write %d: %d in-place updates", tu_device_spec(dev),
                     reader_after, (int)info.n_inplace_updates);
      }
      float ref[4][2] = {{0}};
      for (int32_t r = 0; r < 6; ++r) {
        float nv[2] = {(float)(r + 1), (float)(10 * r + 3)}, y[4][2], d[4][2];
        int32_t pv = (r * 3) % 4;
        TU_OK(ctx, vnrt_plan_set_input(plan, "n", nv, sizeof nv));
        TU_OK(ctx, vnrt_plan_set_input(plan, "p", &pv, sizeof pv));
        TU_OK(ctx, vnrt_plan_run(plan));
        TU_OK(ctx, vnrt_plan_read_output(plan, "y", y, sizeof y));
        if (reader_after) TU_OK(ctx, vnrt_plan_read_output(plan, "d", d, sizeof d));
        for (int i = 0; i < 4; ++i) {
          for (int j = 0; j < 2; ++j) {
            const float next = i == pv ? nv[j] : ref[i][j];
            if (y[i][j] != 2.0f * ref[i][j]) {
              ck_abort_msg("%s run %d: y[%d][%d] = %g, want %g", tu_device_spec(dev), (int)r, i, j,
                           (double)y[i][j], 2.0 * ref[i][j]);
            }
            if (reader_after && d[i][j] != next - ref[i][j]) {
              ck_abort_msg("%s run %d: d[%d][%d] = %g, want %g", tu_device_spec(dev), (int)r, i, j,
                           (double)d[i][j], (double)(next - ref[i][j]));
            }
          }
        }
        for (int j = 0; j < 2; ++j) ref[pv][j] = nv[j];
      }
      float got[4][2];
      TU_OK(ctx, vnrt_plan_read_state(plan, "c", got, sizeof got));
      if (memcmp(got, ref, sizeof got) != 0) ck_abort_msg("%s: final state", tu_device_spec(dev));
      vnrt_plan_destroy(plan);
    }
    vnrt_graph_destroy(g);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

/* kv_compress's states updated in place where the device allows it (VNRT_CAP_STATE_INPLACE):
 * with and without overlap, the sequence in runs of 1 (decode), 3 and 5 (chunks across one
 * window and two) gives plain C's entries and state rows, on every device (kvc_ref.h). */
START_TEST(kv_compress_states_in_place_across_runs) {
  vnrt_context *ctx = tu_context();
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) kvc_check_runs(ctx, tu_device(ctx, di));
  vnrt_context_destroy(ctx);
}
END_TEST

/* Reshapes as views (docs/executor.md): a reshape of a node's result shares its memory where
 * the device allows it, and that memory must then live until the view's last reader — here
 * after several later results that the arena could otherwise put there — including a view that
 * is an output, a chain of views, and a view that is a state's update (copied after the run).
 * Reshapes of an input and of a state keep copies. Every run against plain C. */
static vnrt_value reshape1(vnrt_context *ctx, vnrt_graph *g, vnrt_value x, const int64_t *dims,
                           int32_t rank, const char *name) {
  vnrt_attr a = tu_attr_ints("shape", dims, rank);
  return node1(ctx, g, VNRT_OP_RESHAPE, &x, 1, &a, 1, name);
}

START_TEST(reshape_views_live_as_long_as_their_readers) {
  enum { N = 64 };
  const int64_t flat[1] = {N}, square[2] = {8, 8};
  vnrt_context *ctx = tu_context();
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    vnrt_graph *g = NULL;
    TU_OK(ctx, vnrt_graph_create(ctx, &g));
    vnrt_tensor_type t = {VNRT_F32, 1, {N}};
    vnrt_value x, st;
    TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
    TU_OK(ctx, vnrt_graph_add_state(g, "s", &t, &st));
    vnrt_value xx[2] = {x, x};
    vnrt_value a = node1(ctx, g, VNRT_OP_ADD, xx, 2, NULL, 0, "a"); /* 2x */
    vnrt_value r1 = reshape1(ctx, g, a, square, 2, "r1");
    vnrt_value r2 = reshape1(ctx, g, r1, flat, 1, "r2");
    /* Later results, each live while the next is made: the arena would reuse a's bytes. */
    vnrt_value b = node1(ctx, g, VNRT_OP_MUL, xx, 2, NULL, 0, "b"); /* x^2 */
    vnrt_value bx[2] = {b, x};
    vnrt_value c = node1(ctx, g, VNRT_OP_ADD, bx, 2, NULL, 0, "c"); /* x^2 + x */
    vnrt_value cc[2] = {c, c};
    vnrt_value d = node1(ctx, g, VNRT_OP_MUL, cc, 2, NULL, 0, "d"); /* (x^2 + x)^2 */
    vnrt_value dr[2] = {d, r2};
    vnrt_value e = node1(ctx, g, VNRT_OP_ADD, dr, 2, NULL, 0, "e"); /* d + 2x */
    /* The state: s' = reshape(reshape(s + x)), and a reshape of s itself and of the input. */
    vnrt_value sx[2] = {st, x};
    vnrt_value sum = node1(ctx, g, VNRT_OP_ADD, sx, 2, NULL, 0, "sum");
    vnrt_value snext = reshape1(ctx, g, reshape1(ctx, g, sum, square, 2, "sq"), flat, 1, "snext");
    TU_OK(ctx, vnrt_graph_set_state_update(g, st, snext));
    vnrt_value rs = reshape1(ctx, g, st, square, 2, "rs");
    vnrt_value rx = reshape1(ctx, g, x, square, 2, "rx");
    vnrt_value rr[2] = {rs, rx};
    vnrt_value f = node1(ctx, g, VNRT_OP_SUB, rr, 2, NULL, 0, "f"); /* s - x, [8, 8] */
    TU_OK(ctx, vnrt_graph_add_output(g, e));
    TU_OK(ctx, vnrt_graph_add_output(g, r1));
    TU_OK(ctx, vnrt_graph_add_output(g, f));
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
    float xv[N], got[N], sref[N] = {0};
    for (int run = 0; run < 3; ++run) {
      for (int i = 0; i < N; ++i) xv[i] = (float)((i * 7 + run * 3) % 11) - 5.0f;
      TU_OK(ctx, vnrt_plan_set_input(plan, "x", xv, sizeof xv));
      TU_OK(ctx, vnrt_plan_run(plan));
      TU_OK(ctx, vnrt_plan_read_output(plan, "e", got, sizeof got));
      for (int i = 0; i < N; ++i) {
        double q = (double)xv[i] * xv[i] + xv[i], want = q * q + 2.0 * xv[i];
        if (fabs(got[i] - want) > 1e-5 * (1 + fabs(want))) {
          ck_abort_msg("%s run %d: e[%d] = %g, want %g", tu_device_spec(dev), run, i,
                       (double)got[i], want);
        }
      }
      TU_OK(ctx, vnrt_plan_read_output(plan, "r1", got, sizeof got));
      for (int i = 0; i < N; ++i) {
        if (got[i] != 2.0f * xv[i]) {
          ck_abort_msg("%s run %d: r1[%d] = %g, want %g", tu_device_spec(dev), run, i,
                       (double)got[i], 2.0 * xv[i]);
        }
      }
      TU_OK(ctx, vnrt_plan_read_output(plan, "f", got, sizeof got));
      for (int i = 0; i < N; ++i) {
        if (got[i] != sref[i] - xv[i]) {
          ck_abort_msg("%s run %d: f[%d] = %g, want %g", tu_device_spec(dev), run, i,
                       (double)got[i], (double)(sref[i] - xv[i]));
        }
      }
      for (int i = 0; i < N; ++i) sref[i] += xv[i];
      TU_OK(ctx, vnrt_plan_read_state(plan, "s", got, sizeof got));
      for (int i = 0; i < N; ++i) {
        if (got[i] != sref[i]) {
          ck_abort_msg("%s run %d: s[%d] = %g, want %g", tu_device_spec(dev), run, i,
                       (double)got[i], (double)sref[i]);
        }
      }
    }
    vnrt_plan_destroy(plan);
    vnrt_graph_destroy(g);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("state");
  TCase *tc = tcase_create("state");
  tcase_add_test(tc, a_state_accumulates_across_runs_and_resets);
  tcase_add_test(tc, kv_cached_decode_equals_attention_over_the_prefix_in_place);
  tcase_add_test(tc, kv_write_on_a_plain_value_copies_instead_of_clobbering);
  tcase_add_test(tc, a_state_read_before_its_kv_write_is_updated_in_place);
  tcase_add_test(tc, kv_compress_states_in_place_across_runs);
  tcase_add_test(tc, reshape_views_live_as_long_as_their_readers);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
