/* Plans under a device's largest-buffer limit (VNRT_DEVICE_MAX_BUFFER lowers it): inputs, params,
 * states and intermediates spread over several device buffers, with results bit-identical to
 * one-buffer plans — KV cache updated in place, streamed params, Engram rows — on every device;
 * a tensor no buffer can hold fails at compile time naming it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "test_util.h"
#include "vnrt/memory.h"

#define LIMIT "64K"
enum { LIMIT_BYTES = 64 << 10 };

static void set_limit(const char *text) {
  if (text) {
    setenv(VN_MAX_BUFFER_ENV, text, 1);
  } else {
    unsetenv(VN_MAX_BUFFER_ENV);
  }
}

static vnrt_value node1(vnrt_context *ctx, vnrt_graph *g, vnrt_op op, const vnrt_value *in,
                        int32_t n_in, const vnrt_attr *attrs, int32_t n_attrs, const char *name) {
  vnrt_value out = -1;
  const char *names[1] = {name};
  TU_OK(ctx, vnrt_graph_add_node(g, op, in, n_in, attrs, n_attrs, names, &out, 1));
  return out;
}

/* Every buffer of every device of p within limit (0: none), every tensor inside its buffer, no
 * two slots of inputs, params or states overlapping (a state's in-place update shares its slot)
 * and the target's buffers reserved in its budget; returns the target's io and arena buffer
 * counts. */
static void check_layout(const vnrt_plan *p, uint64_t limit, int32_t *n_io, int32_t *n_arena) {
  for (int32_t d = 0; d < p->n_devs; ++d) {
    const vn_plan_device *pd = &p->devs[d];
    bool *is_io = calloc((size_t)pd->n_tensors + 1, sizeof *is_io);
    ck_assert_ptr_nonnull(is_io);
    for (int32_t v = 0; v < p->graph->n_values; ++v) {
      /* (A streamed param's device copy lives in the arena, packed by liveness.) */
      if (p->vals[v].local[d] >= 0) {
        is_io[p->vals[v].local[d]] =
            p->graph->values[v].kind != VN_VALUE_NODE && !(d == 0 && p->vals[v].streamed);
      }
    }
    for (int32_t b = 0; b < pd->layout.n_bufs; ++b) {
      if (limit) ck_assert_uint_le(pd->layout.buf_bytes[b], limit);
      ck_assert_ptr_nonnull(pd->bufs[b]);
    }
    for (int32_t t = 0; t < pd->n_tensors; ++t) {
      const vnrt_backend_tensor *bt = &pd->tensors[t];
      int32_t b = pd->slots[t].buffer;
      ck_assert_int_ge(b, 0);
      ck_assert_int_lt(b, pd->layout.n_bufs);
      ck_assert_ptr_eq(bt->buffer, pd->bufs[b]);
      ck_assert_uint_le(bt->offset + vnrt_tensor_type_bytes(&bt->type), pd->layout.buf_bytes[b]);
      if (is_io[t]) ck_assert_int_lt(b, pd->layout.n_io_bufs);
      for (int32_t u = 0; u < t && is_io[t]; ++u) {
        const vnrt_backend_tensor *bu = &pd->tensors[u];
        if (!is_io[u] || pd->slots[u].buffer != b || vnrt_tensor_type_bytes(&bu->type) == 0 ||
            vnrt_tensor_type_bytes(&bt->type) == 0) {
          continue;
        }
        bool apart = bu->offset + vnrt_tensor_type_bytes(&bu->type) <= bt->offset ||
                     bt->offset + vnrt_tensor_type_bytes(&bt->type) <= bu->offset;
        ck_assert_msg(apart, "io slots '%s' and '%s' overlap", bu->name, bt->name);
      }
    }
    free(is_io);
  }
  /* The target's buffers are what its budget holds, within the limit. */
  const vn_layout *tl = &p->devs[0].layout;
  const uint64_t reserved = vn_budget_used(&p->budget, VN_TIER_DEVICE);
  ck_assert_uint_eq(reserved, tl->io_bytes + tl->arena_bytes);
  if (p->budget.limit) ck_assert_uint_le(reserved, p->budget.limit);
  *n_io = p->devs[0].layout.n_io_bufs;
  *n_arena = p->devs[0].layout.n_bufs - p->devs[0].layout.n_io_bufs;
}

/* The model: x[Tn, C] through LAYERS of a_l = tanh(linear(a_{l-1}, w_l)), all kept to the end
 * where sum = Σ a_l; acc += sum (a state, copied); k2 = kv_write(kc, a_last, pos) (a state
 * updated in place); y = linear(k2, w0). */
enum { LAYERS = 6, C = 64, TN = 64, S = 192, RUNS = 3 };

static vnrt_graph *model_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {TN, C}}, tw = {VNRT_F32, 2, {C, C}};
  vnrt_tensor_type tk = {VNRT_F32, 2, {S, C}}, tp = {VNRT_I32, 1, {1}};
  vnrt_value x, pos, kc, acc, w[LAYERS], a[LAYERS];
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "pos", &tp, 0, &pos));
  for (int l = 0; l < LAYERS; ++l) {
    char name[16];
    snprintf(name, sizeof name, "w%d", l);
    TU_OK(ctx, vnrt_graph_add_input(g, name, &tw, 1, &w[l]));
  }
  TU_OK(ctx, vnrt_graph_add_state(g, "kc", &tk, &kc));
  TU_OK(ctx, vnrt_graph_add_state(g, "acc", &tx, &acc));
  vnrt_value h = x;
  for (int l = 0; l < LAYERS; ++l) {
    char ln[16], an[16];
    snprintf(ln, sizeof ln, "lin%d", l), snprintf(an, sizeof an, "a%d", l);
    vnrt_value in[2] = {h, w[l]};
    vnrt_value lin = node1(ctx, g, VNRT_OP_LINEAR, in, 2, NULL, 0, ln);
    a[l] = h = node1(ctx, g, VNRT_OP_TANH, &lin, 1, NULL, 0, an);
  }
  vnrt_value sum = a[0];
  for (int l = 1; l < LAYERS; ++l) {
    char sn[16];
    snprintf(sn, sizeof sn, l == LAYERS - 1 ? "sum" : "sum%d", l);
    vnrt_value in[2] = {sum, a[l]};
    sum = node1(ctx, g, VNRT_OP_ADD, in, 2, NULL, 0, sn);
  }
  vnrt_value ain[2] = {acc, sum};
  vnrt_value acc2 = node1(ctx, g, VNRT_OP_ADD, ain, 2, NULL, 0, "acc2");
  vnrt_value kin[3] = {kc, a[LAYERS - 1], pos};
  vnrt_value k2 = node1(ctx, g, VNRT_OP_KV_WRITE, kin, 3, NULL, 0, "k2");
  vnrt_value yin[2] = {k2, w[0]};
  vnrt_value y = node1(ctx, g, VNRT_OP_LINEAR, yin, 2, NULL, 0, "y");
  TU_OK(ctx, vnrt_graph_set_state_update(g, acc, acc2));
  TU_OK(ctx, vnrt_graph_set_state_update(g, kc, k2));
  TU_OK(ctx, vnrt_graph_add_output(g, sum));
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  return g;
}

static float wdata[LAYERS][C * C], xdata[RUNS][TN * C];

static void model_data(void) {
  tu_tensor t = tu_tensor_new(VNRT_F32, 1, (int64_t[]){LAYERS * C * C + RUNS * TN * C});
  tu_fill_uniform(&t, 11, -0.25f, 0.25f);
  memcpy(wdata, t.data, sizeof wdata);
  const float *xs = (const float *)t.data + LAYERS * C * C;
  for (int r = 0; r < RUNS; ++r) {
    for (int i = 0; i < TN * C; ++i) xdata[r][i] = xs[r * TN * C + i] * 8.0f; /* in [-2, 2) */
  }
  tu_tensor_free(&t);
}

/* What a plan gives over RUNS runs: outputs and states after each. */
typedef struct model_out {
  float sum[RUNS][TN * C], y[RUNS][S * C], kc[RUNS][S * C], acc[RUNS][TN * C];
} model_out;

static void run_model(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev,
                      const vnrt_plan_desc *desc, const char *limit, model_out *out,
                      vnrt_plan_info *info, int32_t *n_io, int32_t *n_arena) {
  set_limit(limit);
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_plan_create(ctx, g, dev, desc, &plan);
  set_limit(NULL);
  TU_OK(ctx, s);
  check_layout(plan, limit ? LIMIT_BYTES : 0, n_io, n_arena);
  TU_OK(ctx, vnrt_plan_get_info(plan, info));
  for (int l = 0; l < LAYERS; ++l) {
    char name[16];
    snprintf(name, sizeof name, "w%d", l);
    TU_OK(ctx, vnrt_plan_set_input(plan, name, wdata[l], sizeof wdata[l]));
  }
  for (int r = 0; r < RUNS; ++r) {
    int32_t pos = r * TN;
    TU_OK(ctx, vnrt_plan_set_input(plan, "x", xdata[r], sizeof xdata[r]));
    TU_OK(ctx, vnrt_plan_set_input(plan, "pos", &pos, sizeof pos));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "sum", out->sum[r], sizeof out->sum[r]));
    TU_OK(ctx, vnrt_plan_read_output(plan, "y", out->y[r], sizeof out->y[r]));
    TU_OK(ctx, vnrt_plan_read_state(plan, "kc", out->kc[r], sizeof out->kc[r]));
    TU_OK(ctx, vnrt_plan_read_state(plan, "acc", out->acc[r], sizeof out->acc[r]));
  }
  vnrt_plan_destroy(plan);
}

/* The model in double precision, independently of any plan. */
typedef struct model_ref {
  double sum[RUNS][TN * C], y[RUNS][S * C], kc[RUNS][S * C], acc[RUNS][TN * C];
} model_ref;

static void reference(model_ref *ref) {
  static double h[TN * C], nh[TN * C], kc[S * C], acc[TN * C];
  memset(kc, 0, sizeof kc);
  memset(acc, 0, sizeof acc);
  for (int r = 0; r < RUNS; ++r) {
    double sum[TN * C] = {0};
    for (int i = 0; i < TN * C; ++i) h[i] = xdata[r][i];
    for (int l = 0; l < LAYERS; ++l) {
      for (int t = 0; t < TN; ++t) {
        for (int n = 0; n < C; ++n) {
          double z = 0;
          for (int k = 0; k < C; ++k) z += h[t * C + k] * wdata[l][n * C + k];
          nh[t * C + n] = tanh(z);
        }
      }
      memcpy(h, nh, sizeof h);
      for (int i = 0; i < TN * C; ++i) sum[i] += h[i];
    }
    for (int i = 0; i < TN * C; ++i) acc[i] += sum[i];
    memcpy(&kc[r * TN * C], h, sizeof h);
    for (int s = 0; s < S; ++s) {
      for (int n = 0; n < C; ++n) {
        double z = 0;
        for (int k = 0; k < C; ++k) z += kc[s * C + k] * wdata[0][n * C + k];
        ref->y[r][s * C + n] = z;
      }
    }
    memcpy(ref->sum[r], sum, sizeof sum);
    memcpy(ref->kc[r], kc, sizeof kc);
    memcpy(ref->acc[r], acc, sizeof acc);
  }
}

static void expect_close(const float *got, const double *want, int64_t n, const char *what,
                         const char *dev) {
  tu_tensor t = {{VNRT_F32, 1, {n}}, (void *)got};
  double e = tu_nmse(&t, want, n);
  ck_assert_msg(e < 1e-9, "%s on %s: nmse %g against the double reference", what, dev, e);
}

START_TEST(a_split_plan_matches_one_buffer_bit_for_bit_with_an_in_place_kv_cache) {
  vnrt_context *ctx = tu_context();
  model_data();
  static model_ref ref;
  reference(&ref);
  vnrt_graph *g = model_graph(ctx);
  static model_out one, split;
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    const char *spec = tu_device_spec(dev);
    vnrt_plan_info i1 = {.struct_size = sizeof i1}, i2 = {.struct_size = sizeof i2};
    int32_t io1, ar1, io2, ar2;
    run_model(ctx, g, dev, NULL, NULL, &one, &i1, &io1, &ar1);
    run_model(ctx, g, dev, NULL, LIMIT, &split, &i2, &io2, &ar2);
    /* Without the limit: one io buffer and one arena; with it, several of each. */
    ck_assert_int_eq(io1, 1);
    ck_assert_int_eq(ar1, 1);
    ck_assert_int_ge(io2, 3); /* 96 KiB of weights, 48 KiB of cache, 32 KiB more */
    ck_assert_int_ge(ar2, 2);
    ck_assert_uint_gt(i1.arena_bytes, LIMIT_BYTES);
    ck_assert_int_eq(i2.n_inplace_updates, i1.n_inplace_updates);
    if (i1.n_fallback_nodes == 0) ck_assert_int_eq(i2.n_inplace_updates, 1);
    ck_assert_mem_eq(split.sum, one.sum, sizeof one.sum);
    ck_assert_mem_eq(split.y, one.y, sizeof one.y);
    ck_assert_mem_eq(split.kc, one.kc, sizeof one.kc);
    ck_assert_mem_eq(split.acc, one.acc, sizeof one.acc);
    for (int r = 0; r < RUNS; ++r) {
      expect_close(split.sum[r], ref.sum[r], TN * C, "sum", spec);
      expect_close(split.y[r], ref.y[r], S * C, "y", spec);
      expect_close(split.kc[r], ref.kc[r], S * C, "kc", spec);
      expect_close(split.acc[r], ref.acc[r], TN * C, "acc", spec);
    }
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(streamed_params_under_a_memory_budget_and_the_buffer_limit_match) {
  vnrt_context *ctx = tu_context();
  model_data();
  vnrt_graph *g = model_graph(ctx);
  static model_out one, both;
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    vnrt_plan_info i1 = {.struct_size = sizeof i1}, i2 = {.struct_size = sizeof i2},
                   i3 = {.struct_size = sizeof i3};
    int32_t io, ar;
    run_model(ctx, g, dev, NULL, NULL, &one, &i1, &io, &ar);
    run_model(ctx, g, dev, NULL, LIMIT, &both, &i2, &io, &ar);
    /* A budget two weights short of the split plan's needs: params are streamed into arena
     * buffers under the limit. */
    vnrt_plan_desc desc = {0};
    desc.device_memory_limit = i2.device_bytes - 2 * C * C * sizeof(float);
    for (int serial = 0; serial < 2; ++serial) {
      desc.serialize_copies = serial;
      memset(&both, 0, sizeof both);
      run_model(ctx, g, dev, &desc, LIMIT, &both, &i3, &io, &ar);
      ck_assert_int_ge(i3.n_streamed_params, 2);
      ck_assert_uint_le(i3.device_bytes, desc.device_memory_limit);
      ck_assert_int_ge(ar, 2);
      ck_assert_mem_eq(both.sum, one.sum, sizeof one.sum);
      ck_assert_mem_eq(both.y, one.y, sizeof one.y);
      ck_assert_mem_eq(both.kc, one.kc, sizeof one.kc);
      ck_assert_mem_eq(both.acc, one.acc, sizeof one.acc);
    }
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Engram: e = engram_lookup(table, ngram_hash(ids, hist), offsets), hist a state, and unread
 * pad params in front so that the row cache lands past the first io buffer. */
enum { R = 4000, ED = 16, ET = 5, K = 4, N = 3, EH = (N - 1) * K, PADS = 4, STEPS = 6 };
static const int64_t mult[N] = {0x5bd1e995LL, -7046029254386353131LL, 0x27d4eb2fLL};
static const int64_t primes[EH] = {499, 491, 487, 479, 467, 463, 461, 457};
static const int32_t offsets_data[EH] = {0, 500, 1000, 1500, 2000, 2500, 3000, 3500};
static float table_data[R * ED], pad_data[4096];

static vnrt_graph *engram_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tids = {VNRT_I32, 1, {ET}}, thist = {VNRT_I32, 1, {N - 1}};
  vnrt_tensor_type ttab = {VNRT_F32, 2, {R, ED}}, toff = {VNRT_I32, 1, {EH}};
  vnrt_tensor_type tpad = {VNRT_F32, 1, {4096}};
  vnrt_value ids, hist, table, offs, pad;
  TU_OK(ctx, vnrt_graph_add_input(g, "ids", &tids, 0, &ids));
  TU_OK(ctx, vnrt_graph_add_state(g, "hist", &thist, &hist));
  for (int i = 0; i < PADS; ++i) {
    char name[16];
    snprintf(name, sizeof name, "pad%d", i);
    TU_OK(ctx, vnrt_graph_add_input(g, name, &tpad, 1, &pad));
  }
  TU_OK(ctx, vnrt_graph_add_input(g, "table", &ttab, 1, &table));
  TU_OK(ctx, vnrt_graph_add_input(g, "offsets", &toff, 1, &offs));
  vnrt_attr ha[2] = {tu_attr_ints("mult", mult, N), tu_attr_ints("primes", primes, EH)};
  vnrt_value hin[2] = {ids, hist};
  vnrt_value idx = node1(ctx, g, VNRT_OP_NGRAM_HASH, hin, 2, ha, 2, "idx");
  vnrt_value lin[3] = {table, idx, offs};
  vnrt_value e = node1(ctx, g, VNRT_OP_ENGRAM_LOOKUP, lin, 3, NULL, 0, "e");
  vnrt_value cin[2] = {hist, ids};
  vnrt_attr ax = tu_attr_i("axis", 0);
  vnrt_value cat = node1(ctx, g, VNRT_OP_CONCAT, cin, 2, &ax, 1, "cat");
  vnrt_attr sl[3] = {tu_attr_i("axis", 0), tu_attr_i("start", ET), tu_attr_i("len", N - 1)};
  vnrt_value hist2 = node1(ctx, g, VNRT_OP_SLICE, &cat, 1, sl, 3, "hist2");
  TU_OK(ctx, vnrt_graph_set_state_update(g, hist, hist2));
  TU_OK(ctx, vnrt_graph_add_output(g, e));
  return g;
}

static void step_ids(int s, int32_t *ids) {
  for (int t = 0; t < ET; ++t) ids[t] = (s * 7 + t * 3) % 11; /* repeats: cache hits */
}

/* Runs STEPS steps; with a store, also checks where the row cache was placed. */
static void engram_run(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev,
                       const vnrt_plan_desc *desc, const char *limit, float *out) {
  set_limit(limit);
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_plan_create(ctx, g, dev, desc, &plan);
  set_limit(NULL);
  TU_OK(ctx, s);
  int32_t n_io, n_arena;
  check_layout(plan, limit ? LIMIT_BYTES : 0, &n_io, &n_arena);
  if (limit) {
    ck_assert_int_ge(n_io, 2);
    int32_t cache = vnrt_graph_find(plan->graph, "_engram0.cache");
    ck_assert_int_ge(cache, 0);
    ck_assert_int_gt(plan->devs[0].slots[plan->vals[cache].local[0]].buffer, 0);
  }
  if (!desc) TU_OK(ctx, vnrt_plan_set_input(plan, "table", table_data, sizeof table_data));
  TU_OK(ctx, vnrt_plan_set_input(plan, "offsets", offsets_data, sizeof offsets_data));
  for (int i = 0; i < PADS; ++i) {
    char name[16];
    snprintf(name, sizeof name, "pad%d", i);
    TU_OK(ctx, vnrt_plan_set_input(plan, name, pad_data, sizeof pad_data));
  }
  for (int st = 0; st < STEPS; ++st) {
    int32_t ids[ET];
    step_ids(st, ids);
    TU_OK(ctx, vnrt_plan_set_input(plan, "ids", ids, sizeof ids));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx, vnrt_plan_read_output(plan, "e", out + (size_t)st * ET * EH * ED,
                                     sizeof(float) * ET * EH * ED));
  }
  vnrt_plan_destroy(plan);
}

START_TEST(store_served_engram_rows_match_under_the_limit) {
  vnrt_context *ctx = tu_context();
  tu_tensor t = tu_tensor_new(VNRT_F32, 1, (int64_t[]){R * ED});
  tu_fill_uniform(&t, 3, -1, 1);
  memcpy(table_data, t.data, sizeof table_data);
  tu_tensor_free(&t);
  /* The rows every step must read, from the spec's ngram_hash (wrapping 64-bit products, floor
   * modulo), with hist the N-1 ids before (zeros at first). */
  static float want[STEPS * ET * EH * ED];
  int32_t hist[N - 1] = {0};
  for (int st = 0; st < STEPS; ++st) {
    int32_t ids[ET];
    step_ids(st, ids);
    for (int tt = 0; tt < ET; ++tt) {
      for (int n = 2; n <= N; ++n) {
        uint64_t mix = 0;
        for (int j = 0; j < n; ++j) {
          int32_t tok = tt - j >= 0 ? ids[tt - j] : hist[N - 1 + (tt - j)];
          mix ^= (uint64_t)(int64_t)tok * (uint64_t)mult[j];
        }
        for (int h = 0; h < K; ++h) {
          int c = (n - 2) * K + h;
          int64_t m = (int64_t)mix % primes[c];
          if (m < 0) m += primes[c];
          int64_t row = offsets_data[c] + m;
          memcpy(&want[((size_t)st * ET + tt) * EH * ED + (size_t)c * ED], &table_data[row * ED],
                 sizeof(float) * ED);
        }
      }
    }
    for (int i = 0; i < N - 1; ++i) hist[i] = ids[ET - (N - 1) + i];
  }
  vnrt_graph *g = engram_graph(ctx);
  static float ref[STEPS * ET * EH * ED], got[STEPS * ET * EH * ED];
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    engram_run(ctx, g, dev, NULL, NULL, ref); /* the table (250 KiB) on the device */
    ck_assert_mem_eq(ref, want, sizeof want);
    const int64_t slot_counts[] = {0, 7, 100};
    for (size_t c = 0; c < sizeof slot_counts / sizeof slot_counts[0]; ++c) {
      vnrt_engram_store_desc sd = {0};
      sd.rows = R, sd.dim = ED, sd.dtype = VNRT_F32, sd.host_data = table_data;
      sd.cache_slots = slot_counts[c];
      vnrt_engram_store *store = NULL;
      TU_OK(ctx, vnrt_engram_store_create(ctx, &sd, &store));
      vnrt_engram_binding b = {"table", store};
      vnrt_plan_desc desc = {0};
      desc.engram = &b, desc.n_engram = 1;
      memset(got, 0, sizeof got);
      engram_run(ctx, g, dev, &desc, LIMIT, got);
      ck_assert_msg(memcmp(got, ref, sizeof ref) == 0, "%s: %lld slots differ", tu_device_spec(dev),
                    (long long)slot_counts[c]);
      vnrt_engram_store_destroy(store);
    }
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Compiling g for dev under LIMIT fails with OUT_OF_MEMORY naming the tensor, its bytes and
 * the limit. */
static void expect_too_large(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev, const char *name,
                             uint64_t bytes) {
  set_limit(LIMIT);
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_plan_create(ctx, g, dev, NULL, &plan);
  set_limit(NULL);
  ck_assert_int_eq(s, VNRT_ERROR_OUT_OF_MEMORY);
  ck_assert_ptr_null(plan);
  const char *msg = vnrt_context_last_error(ctx);
  char quoted[64], nbytes[32], nlimit[32];
  snprintf(quoted, sizeof quoted, "'%s'", name);
  snprintf(nbytes, sizeof nbytes, "%llu bytes", (unsigned long long)bytes);
  snprintf(nlimit, sizeof nlimit, "%d bytes", LIMIT_BYTES);
  ck_assert_msg(strstr(msg, quoted) && strstr(msg, nbytes) && strstr(msg, nlimit) &&
                    strstr(msg, "VNRT_DEVICE_MAX_BUFFER") && strstr(msg, tu_device_spec(dev)),
                "%s: the message does not name %s, %s and the limit %s: %s", tu_device_spec(dev),
                quoted, nbytes, nlimit, msg);
}

START_TEST(a_tensor_larger_than_the_limit_fails_at_compile_time_naming_it) {
  vnrt_context *ctx = tu_context();
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    /* A param of 80000 bytes. */
    vnrt_graph *g = NULL;
    TU_OK(ctx, vnrt_graph_create(ctx, &g));
    vnrt_tensor_type big = {VNRT_F32, 1, {20000}}, small = {VNRT_F32, 1, {1000}};
    vnrt_value w, x, y;
    TU_OK(ctx, vnrt_graph_add_input(g, "huge", &big, 1, &w));
    y = node1(ctx, g, VNRT_OP_NEG, &w, 1, NULL, 0, "y");
    TU_OK(ctx, vnrt_graph_add_output(g, y));
    expect_too_large(ctx, g, dev, "huge", 80000);
    vnrt_graph_destroy(g);
    /* An intermediate of 128000 bytes made of a small input. */
    TU_OK(ctx, vnrt_graph_create(ctx, &g));
    TU_OK(ctx, vnrt_graph_add_input(g, "x", &small, 0, &x));
    vnrt_attr ax = tu_attr_i("axis", 0);
    vnrt_value c = x;
    for (int i = 0; i < 5; ++i) {
      vnrt_value in[2] = {c, c};
      c = node1(ctx, g, VNRT_OP_CONCAT, in, 2, &ax, 1, i == 4 ? "wide" : NULL);
    }
    vnrt_attr sl[3] = {tu_attr_i("axis", 0), tu_attr_i("start", 0), tu_attr_i("len", 8)};
    y = node1(ctx, g, VNRT_OP_SLICE, &c, 1, sl, 3, "head");
    TU_OK(ctx, vnrt_graph_add_output(g, y));
    expect_too_large(ctx, g, dev, "wide", 128000);
    /* Without the limit it compiles. */
    vnrt_plan *plan = NULL;
    TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
    vnrt_plan_destroy(plan);
    vnrt_graph_destroy(g);
  }
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(the_override_only_lowers_and_must_be_a_byte_count) {
  vnrt_context *ctx = tu_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type t = {VNRT_F32, 1, {16}};
  vnrt_value x, y;
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &t, 0, &x));
  y = node1(ctx, g, VNRT_OP_NEG, &x, 1, NULL, 0, "y");
  TU_OK(ctx, vnrt_graph_add_output(g, y));
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    vnrt_device_info info = {.struct_size = sizeof info};
    TU_OK(ctx, vnrt_device_get_info(dev, &info));
    const uint64_t own = info.max_buffer_bytes / VN_TENSOR_ALIGN * VN_TENSOR_ALIGN;
    struct {
      const char *text;
      uint64_t want;
      bool lowered;
    } cases[] = {{NULL, own, false},
                 {"1T", own, false},
                 {"64K", 65536, true},
                 {"1000", 768, true},
                 {"10", 256, true}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
      set_limit(cases[c].text);
      vnrt_plan *plan = NULL;
      vnrt_status s = vnrt_plan_create(ctx, g, dev, NULL, &plan);
      set_limit(NULL);
      TU_OK(ctx, s);
      ck_assert_uint_eq(plan->devs[0].max_buffer, cases[c].want);
      ck_assert_int_eq(plan->devs[0].max_buffer_lowered, cases[c].lowered);
      float in[16], out[16];
      for (int i = 0; i < 16; ++i) in[i] = (float)i - 7.5f;
      TU_OK(ctx, vnrt_plan_set_input(plan, "x", in, sizeof in));
      TU_OK(ctx, vnrt_plan_run(plan));
      TU_OK(ctx, vnrt_plan_read_output(plan, "y", out, sizeof out));
      for (int i = 0; i < 16; ++i) ck_assert_float_eq(out[i], 7.5f - (float)i);
      vnrt_plan_destroy(plan);
    }
    set_limit("64Q");
    vnrt_plan *plan = NULL;
    vnrt_status s = vnrt_plan_create(ctx, g, dev, NULL, &plan);
    set_limit(NULL);
    ck_assert_int_eq(s, VNRT_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_null(plan);
    ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "VNRT_DEVICE_MAX_BUFFER=\"64Q\""));
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("buffers");
  TCase *tc = tcase_create("max_buffer");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, a_split_plan_matches_one_buffer_bit_for_bit_with_an_in_place_kv_cache);
  tcase_add_test(tc, streamed_params_under_a_memory_budget_and_the_buffer_limit_match);
  tcase_add_test(tc, store_served_engram_rows_match_under_the_limit);
  tcase_add_test(tc, a_tensor_larger_than_the_limit_fails_at_compile_time_naming_it);
  tcase_add_test(tc, the_override_only_lowers_and_must_be_a_byte_count);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
