/* Issue 6's executor: device memory budgets with streamed params, the DualPath copy stream
 * (late copies block, never read stale data), and Engram stores served through a device row
 * cache, bit-identical whatever the cache size — on every device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy_stream.h"
#include "plan.h"
#include "test_util.h"
#include "vnrt/memory.h"

enum { LAYERS = 6, C = 64 };

static float weights[LAYERS][C * C], xin[4 * C];

/* The test context; VNRT_TEST_HOST_COPIES=1 keeps DualPath on its host thread where the
 * backend offers async copy slots (the _hostcopy test variants run both paths). */
static vnrt_context *offload_context(void) {
  vnrt_context *ctx = tu_context();
  const char *v = getenv("VNRT_TEST_HOST_COPIES");
  ctx->no_async_copies = v && strcmp(v, "0") != 0;
  return ctx;
}

static void init_data(void) {
  tu_tensor t = tu_tensor_new(VNRT_F32, 1, (int64_t[]){LAYERS * C * C + 4 * C});
  tu_fill_uniform(&t, 7, -0.3f, 0.3f);
  memcpy(weights, t.data, sizeof weights);
  memcpy(xin, (float *)t.data + LAYERS * C * C, sizeof xin);
  tu_tensor_free(&t);
}

static vnrt_status run_mlp(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev,
                           const vnrt_plan_desc *desc, float *out, vnrt_plan_info *info,
                           vnrt_run_stats *stats, uint64_t delay_ns, int borrow) {
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_plan_create(ctx, g, dev, desc, &plan);
  if (s != VNRT_OK) return s;
  if (delay_ns) TU_OK(ctx, vn_plan_set_copy_delay(plan, delay_ns));
  TU_OK(ctx, vnrt_plan_set_input(plan, "x", xin, sizeof xin));
  for (int l = 0; l < LAYERS; ++l) {
    char wn[16];
    snprintf(wn, sizeof wn, "w%d", l);
    if (borrow)
      TU_OK(ctx, vnrt_plan_set_input_ref(plan, wn, weights[l], sizeof weights[l]));
    else
      TU_OK(ctx, vnrt_plan_set_input(plan, wn, weights[l], sizeof weights[l]));
  }
  for (int r = 0; r < 2; ++r) TU_OK(ctx, vnrt_plan_run(plan)); /* streamed again every run */
  char name[16];
  snprintf(name, sizeof name, "r%d", LAYERS - 1);
  TU_OK(ctx, vnrt_plan_read_output(plan, name, out, 4 * C * sizeof(float)));
  if (info) TU_OK(ctx, vnrt_plan_get_info(plan, info));
  if (stats) TU_OK(ctx, vnrt_plan_get_run_stats(plan, stats));
  vnrt_plan_destroy(plan);
  return VNRT_OK;
}

START_TEST(over_budget_params_are_streamed_with_identical_results) {
  vnrt_context *ctx = offload_context();
  init_data();
  vnrt_graph *g = tu_mlp_graph(ctx, LAYERS, C);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    float ref[4 * C], got[4 * C];
    vnrt_plan_info full = {.struct_size = sizeof full}, tight = {.struct_size = sizeof tight};
    TU_OK(ctx, run_mlp(ctx, g, dev, NULL, ref, &full, NULL, 0, 0));
    ck_assert_int_eq(full.n_streamed_params, 0);
    ck_assert_uint_ge(full.device_bytes, LAYERS * C * C * sizeof(float));
    /* Room for about two layers' weights plus the activations. */
    vnrt_plan_desc desc = {0};
    desc.device_memory_limit = full.device_bytes - 3 * C * C * sizeof(float);
    vnrt_run_stats st = {.struct_size = sizeof st};
    for (int borrow = 0; borrow < 2; ++borrow) {
      TU_OK(ctx, run_mlp(ctx, g, dev, &desc, got, &tight, &st, 0, borrow));
      ck_assert_int_ge(tight.n_streamed_params, 3);
      ck_assert_uint_le(tight.device_bytes, desc.device_memory_limit);
      ck_assert_uint_eq(tight.device_limit, desc.device_memory_limit);
      ck_assert_uint_eq(st.bytes_weights, tight.streamed_bytes);
      ck_assert_mem_eq(got, ref, sizeof ref); /* the same kernels on the same data */
    }
    /* Serialised: the same copies on the compute stream, nothing hidden, same results. */
    desc.serialize_copies = 1;
    TU_OK(ctx, run_mlp(ctx, g, dev, &desc, got, &tight, &st, 0, 0));
    ck_assert_mem_eq(got, ref, sizeof ref);
    ck_assert_uint_eq(st.stall_ns, 0);
    ck_assert_uint_gt(st.copy_ns, 0);
    ck_assert_uint_eq(st.bytes_weights, tight.streamed_bytes);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* No streamed param's copy may overlap memory that a step still reads: for every streamed
 * param (copy may begin once steps [0, start) are done, and the copy lives until its last
 * reader), every other arena tensor sharing any of its bytes must be dead before start (last
 * use < start) or born after the param's last reader; and the queued job waits for exactly
 * that compute timeline value. Under the tightest budgets the plan compiles with (weights
 * sharing slots), with prefetch depths 1 and 2, results equal the unlimited plan's on every
 * device, with and without a slow copy path. */
static void check_stream_windows(const vnrt_plan *p, const char *spec) {
  const vn_plan_device *pd = &p->devs[0];
  for (int32_t j = 0; j < p->n_stream; ++j) {
    const vn_streamed *sp = &p->stream[j];
    ck_assert_int_le(sp->start, sp->first);
    const int32_t t = p->vals[sp->value].local[0];
    ck_assert_int_ge(t, 0);
    const vn_slot *st = &pd->slots[t];
    for (int32_t u = 0; u < pd->n_tensors; ++u) {
      const vn_slot *su = &pd->slots[u];
      if (u == t || su->kind != VN_SLOT_ARENA || su->buffer != st->buffer) continue;
      const uint64_t bt = vnrt_tensor_type_bytes(&pd->tensors[t].type);
      const uint64_t bu = vnrt_tensor_type_bytes(&pd->tensors[u].type);
      if (!bt || !bu || su->offset + bu <= st->offset || st->offset + bt <= su->offset) continue;
      int32_t uf = su->first, ul = su->last;
      for (int32_t k = 0; k < p->n_stream; ++k) {
        if (p->vals[p->stream[k].value].local[0] == u)
          uf = p->stream[k].start, ul = p->stream[k].last;
      }
      if (!(ul < sp->start || uf > sp->last)) {
        ck_abort_msg(
            "%s: streamed '%s' (copy from step %d, read until %d) shares memory with "
            "'%s' (live %d..%d)",
            spec, pd->tensors[t].name, sp->start, sp->last, pd->tensors[u].name, uf, ul);
      }
    }
  }
  /* The jobs of the last run (no Engram rows here: every job is a streamed param's). */
  ck_assert_int_eq(p->n_jobs, p->n_stream);
  const uint64_t base = p->compute_base - (uint64_t)p->n_order - 1;
  for (int32_t i = 0; i < p->n_jobs; ++i) {
    const vn_streamed *sp = &p->stream[p->jobs[i].arg[2]];
    if (p->jobs[i].after != base + (uint64_t)sp->start) {
      ck_abort_msg("%s: the copy of '%s' waits for compute value %llu, not base + start %d", spec,
                   p->graph->values[sp->value].name, (unsigned long long)(p->jobs[i].after - base),
                   sp->start);
    }
  }
}

START_TEST(streamed_copies_never_overlap_a_live_reader) {
  vnrt_context *ctx = offload_context();
  init_data();
  vnrt_graph *g = tu_mlp_graph(ctx, LAYERS, C);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    const char *spec = tu_device_spec(dev);
    float ref[4 * C], got[4 * C];
    vnrt_plan_info full = {.struct_size = sizeof full};
    TU_OK(ctx, run_mlp(ctx, g, dev, NULL, ref, &full, NULL, 0, 0));
    int checked = 0;
    for (int32_t depth = 1; depth <= 2; ++depth) {
      /* The tightest budget (in steps of one weight) that still compiles. */
      for (int short_by = LAYERS; short_by >= 2; --short_by) {
        vnrt_plan_desc desc = {0};
        desc.prefetch_depth = depth;
        desc.device_memory_limit = full.device_bytes - (uint64_t)short_by * C * C * sizeof(float);
        vnrt_plan *plan = NULL;
        if (vnrt_plan_create(ctx, g, dev, &desc, &plan) != VNRT_OK) continue;
        for (int slow = 0; slow < 2; ++slow) {
          if (slow) TU_OK(ctx, vn_plan_set_copy_delay(plan, 2 * 1000 * 1000));
          TU_OK(ctx, vnrt_plan_set_input(plan, "x", xin, sizeof xin));
          for (int l = 0; l < LAYERS; ++l) {
            char wn[16];
            snprintf(wn, sizeof wn, "w%d", l);
            TU_OK(ctx, vnrt_plan_set_input(plan, wn, weights[l], sizeof weights[l]));
          }
          char name[16];
          snprintf(name, sizeof name, "r%d", LAYERS - 1);
          for (int r = 0; r < 2; ++r) {
            TU_OK(ctx, vnrt_plan_run(plan));
            TU_OK(ctx, vnrt_plan_read_output(plan, name, got, sizeof got));
            ck_assert_msg(memcmp(got, ref, sizeof ref) == 0,
                          "%s: depth %d, %d weights short, run %d: results differ", spec, depth,
                          short_by, r);
            check_stream_windows(plan, spec);
          }
        }
        ck_assert_int_ge(plan->n_stream, LAYERS - 2);
        vnrt_plan_destroy(plan);
        ++checked;
        break;
      }
    }
    ck_assert_msg(checked == 2, "%s: no tight budget compiled", spec);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(a_plan_that_cannot_fit_fails_at_compile_time_with_the_numbers) {
  vnrt_context *ctx = offload_context();
  vnrt_graph *g = tu_mlp_graph(ctx, LAYERS, C);
  vnrt_plan_desc desc = {0};
  desc.device_memory_limit = 1024; /* less than one activation */
  vnrt_plan *plan = NULL;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, tu_device(ctx, 0), &desc, &plan),
                   VNRT_ERROR_BUDGET_EXCEEDED);
  ck_assert_ptr_null(plan);
  const char *msg = vnrt_context_last_error(ctx);
  ck_assert_ptr_nonnull(strstr(msg, "needs"));
  ck_assert_ptr_nonnull(strstr(msg, "but 1024 are available"));
  ck_assert_ptr_nonnull(strstr(msg, "largest tensor"));
  /* The environment sets the budget when the API does not; a malformed value is named. */
  setenv("VNRT_DEVICE_MEMORY_LIMIT", "1K", 1);
  ck_assert_int_eq(vnrt_plan_create(ctx, g, tu_device(ctx, 0), NULL, &plan),
                   VNRT_ERROR_BUDGET_EXCEEDED);
  setenv("VNRT_DEVICE_MEMORY_LIMIT", "lots", 1);
  ck_assert_int_eq(vnrt_plan_create(ctx, g, tu_device(ctx, 0), NULL, &plan),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "VNRT_DEVICE_MEMORY_LIMIT"));
  unsetenv("VNRT_DEVICE_MEMORY_LIMIT");
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(a_slow_copy_path_blocks_the_consumer_and_never_gives_stale_data) {
  vnrt_context *ctx = offload_context();
  init_data();
  vnrt_graph *g = tu_mlp_graph(ctx, LAYERS, C);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    float ref[4 * C], got[4 * C];
    vnrt_plan_info full = {.struct_size = sizeof full};
    TU_OK(ctx, run_mlp(ctx, g, dev, NULL, ref, &full, NULL, 0, 0));
    vnrt_plan_desc desc = {0};
    desc.device_memory_limit = full.device_bytes - 3 * C * C * sizeof(float);
    desc.prefetch_depth = 1; /* one slot: each copy must wait for the previous reader */
    vnrt_run_stats st = {.struct_size = sizeof st};
    TU_OK(ctx, run_mlp(ctx, g, dev, &desc, got, NULL, &st, 20 * 1000 * 1000, 0));
    ck_assert_mem_eq(got, ref, sizeof ref);
    ck_assert_uint_gt(st.stall_ns, 10 * 1000 * 1000); /* the compute stream really waited */
    ck_assert_uint_ge(st.copy_ns, 1);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* Engram: e = engram_lookup(table, ngram_hash(ids, hist), offsets), hist a state. */
enum { R = 4000, D = 16, T = 5, K = 4, N = 3, H = (N - 1) * K };

static vnrt_graph *engram_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tids = {VNRT_I32, 1, {T}}, thist = {VNRT_I32, 1, {N - 1}};
  vnrt_tensor_type ttab = {VNRT_F32, 2, {R, D}}, toff = {VNRT_I32, 1, {H}};
  vnrt_value ids, hist, table, offs, idx, e, cat, hist2;
  TU_OK(ctx, vnrt_graph_add_input(g, "ids", &tids, 0, &ids));
  TU_OK(ctx, vnrt_graph_add_state(g, "hist", &thist, &hist));
  TU_OK(ctx, vnrt_graph_add_input(g, "table", &ttab, 1, &table));
  TU_OK(ctx, vnrt_graph_add_input(g, "offsets", &toff, 1, &offs));
  const int64_t mult[N] = {0x5bd1e995LL, -7046029254386353131LL, 0x27d4eb2fLL};
  const int64_t primes[H] = {499, 491, 487, 479, 467, 463, 461, 457};
  vnrt_attr ha[2] = {tu_attr_ints("mult", mult, N), tu_attr_ints("primes", primes, H)};
  vnrt_value hin[2] = {ids, hist};
  const char *in_[1] = {"idx"}, *en[1] = {"e"}, *cn[1] = {"cat"}, *sn[1] = {"hist2"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_NGRAM_HASH, hin, 2, ha, 2, in_, &idx, 1));
  vnrt_value lin[3] = {table, idx, offs};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ENGRAM_LOOKUP, lin, 3, NULL, 0, en, &e, 1));
  vnrt_value cin[2] = {hist, ids};
  vnrt_attr ax = tu_attr_i("axis", 0);
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_CONCAT, cin, 2, &ax, 1, cn, &cat, 1));
  vnrt_attr sl[3] = {tu_attr_i("axis", 0), tu_attr_i("start", T), tu_attr_i("len", N - 1)};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SLICE, &cat, 1, sl, 3, sn, &hist2, 1));
  TU_OK(ctx, vnrt_graph_set_state_update(g, hist, hist2));
  TU_OK(ctx, vnrt_graph_add_output(g, e));
  return g;
}

static float table_data[R * D];
static const int32_t offsets_data[H] = {0, 500, 1000, 1500, 2000, 2500, 3000, 3500};

/* Runs `steps` steps of token ids through a plan and concatenates the outputs. */
static void engram_run(vnrt_context *ctx, vnrt_graph *g, vnrt_device *dev,
                       const vnrt_plan_desc *desc, int steps, float *out, vnrt_run_stats *last,
                       int bind_table) {
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, desc, &plan));
  if (bind_table) TU_OK(ctx, vnrt_plan_set_input(plan, "table", table_data, sizeof table_data));
  TU_OK(ctx, vnrt_plan_set_input(plan, "offsets", offsets_data, sizeof offsets_data));
  for (int s = 0; s < steps; ++s) {
    int32_t ids[T];
    for (int t = 0; t < T; ++t) ids[t] = (s * 7 + t * 3) % 11; /* repeats: cache hits */
    TU_OK(ctx, vnrt_plan_set_input(plan, "ids", ids, sizeof ids));
    TU_OK(ctx, vnrt_plan_run(plan));
    TU_OK(ctx,
          vnrt_plan_read_output(plan, "e", out + (size_t)s * T * H * D, sizeof(float) * T * H * D));
  }
  if (last) TU_OK(ctx, vnrt_plan_get_run_stats(plan, last));
  vnrt_plan_destroy(plan);
}

/* The Engram table: uniform values in [-1, 1) from seed. */
static void fill_table(uint64_t seed) {
  tu_tensor t = tu_tensor_new(VNRT_F32, 1, (int64_t[]){R * D});
  tu_fill_uniform(&t, seed, -1, 1);
  memcpy(table_data, t.data, sizeof table_data);
  tu_tensor_free(&t);
}

START_TEST(engram_store_lookups_are_bit_identical_for_every_cache_size) {
  vnrt_context *ctx = offload_context();
  fill_table(3);
  vnrt_graph *g = engram_graph(ctx);
  enum { STEPS = 6 };
  static float ref[STEPS * T * H * D], got[STEPS * T * H * D];
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    engram_run(ctx, g, dev, NULL, STEPS, ref, NULL, 1);
    const int64_t slot_counts[] = {0, 1, 7, 64, 100000};
    for (size_t c = 0; c < sizeof slot_counts / sizeof slot_counts[0]; ++c) {
      vnrt_engram_store_desc sd = {0};
      sd.rows = R, sd.dim = D, sd.dtype = VNRT_F32, sd.host_data = table_data;
      sd.cache_slots = slot_counts[c];
      vnrt_engram_store *store = NULL;
      TU_OK(ctx, vnrt_engram_store_create(ctx, &sd, &store));
      vnrt_engram_binding b = {"table", store};
      vnrt_plan_desc desc = {0};
      desc.engram = &b, desc.n_engram = 1;
      vnrt_run_stats st = {.struct_size = sizeof st};
      memset(got, 0, sizeof got);
      engram_run(ctx, g, dev, &desc, STEPS, got, &st, 0);
      ck_assert_msg(memcmp(got, ref, sizeof ref) == 0, "%s: %lld slots differ", tu_device_spec(dev),
                    (long long)slot_counts[c]);
      ck_assert_uint_gt(st.bytes_engram + st.engram_hits, 0);
      vnrt_engram_stats es = {.struct_size = sizeof es};
      TU_OK(ctx, vnrt_engram_store_stats(store, &es));
      ck_assert_uint_eq(es.lookups, STEPS);
      if (slot_counts[c] >= 64) {
        ck_assert_uint_gt(es.hits, 0); /* ids repeat across steps */
        ck_assert_double_gt(st.engram_hit_rate, 0.0);
      }
      if (c == 2) {
        desc.serialize_copies = 1; /* the same lookups with the copies inline */
        memset(got, 0, sizeof got);
        engram_run(ctx, g, dev, &desc, STEPS, got, &st, 0);
        ck_assert_mem_eq(got, ref, sizeof ref);
      }
      vnrt_engram_store_destroy(store);
    }
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(a_file_backed_table_larger_than_the_device_budget_is_served) {
  vnrt_context *ctx = offload_context();
  char path[] = "/tmp/vnrt-engram-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, table_data, sizeof table_data), (ssize_t)sizeof table_data);
  close(fd);
  vnrt_graph *g = engram_graph(ctx);
  enum { STEPS = 3 };
  static float ref[STEPS * T * H * D], got[STEPS * T * H * D];
  vnrt_device *dev = tu_device(ctx, tu_device_count(ctx) - 1);
  engram_run(ctx, g, dev, NULL, STEPS, ref, NULL, 1);
  vnrt_engram_store_desc sd = {0};
  sd.rows = R, sd.dim = D, sd.dtype = VNRT_F32, sd.file_path = path, sd.cache_slots = 32;
  vnrt_engram_store *store = NULL;
  TU_OK(ctx, vnrt_engram_store_create(ctx, &sd, &store));
  vnrt_engram_binding b = {"table", store};
  vnrt_plan_desc desc = {0};
  desc.engram = &b, desc.n_engram = 1;
  desc.device_memory_limit = sizeof table_data / 4; /* the table could never fit */
  engram_run(ctx, g, dev, &desc, STEPS, got, NULL, 0);
  ck_assert_mem_eq(got, ref, sizeof ref);
  /* The table param is the store's now: binding it is an error that says so. */
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &desc, &plan));
  ck_assert_int_eq(vnrt_plan_set_input(plan, "table", table_data, sizeof table_data),
                   VNRT_ERROR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "Engram store"));
  vnrt_plan_info info = {.struct_size = sizeof info};
  TU_OK(ctx, vnrt_plan_get_info(plan, &info));
  ck_assert_int_eq(info.n_engram_lookups, 1);
  ck_assert_uint_lt(info.device_bytes, sizeof table_data);
  vnrt_plan_destroy(plan);
  vnrt_engram_store_destroy(store);
  vnrt_graph_destroy(g);
  unlink(path);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(out_of_range_engram_rows_fail_the_run_naming_the_row) {
  vnrt_context *ctx = offload_context();
  vnrt_graph *g = engram_graph(ctx);
  vnrt_engram_store_desc sd = {0};
  sd.rows = R, sd.dim = D, sd.dtype = VNRT_F32, sd.host_data = table_data, sd.cache_slots = 8;
  vnrt_engram_store *store = NULL;
  TU_OK(ctx, vnrt_engram_store_create(ctx, &sd, &store));
  vnrt_engram_binding b = {"table", store};
  vnrt_plan_desc desc = {0};
  desc.engram = &b, desc.n_engram = 1;
  vnrt_plan *plan = NULL;
  TU_OK(ctx, vnrt_plan_create(ctx, g, tu_device(ctx, 0), &desc, &plan));
  int32_t bad[H];
  memcpy(bad, offsets_data, sizeof bad);
  bad[H - 1] = R; /* every row of the last head is past the table */
  int32_t ids[T] = {1, 2, 3, 4, 5};
  TU_OK(ctx, vnrt_plan_set_input(plan, "offsets", bad, sizeof bad));
  TU_OK(ctx, vnrt_plan_set_input(plan, "ids", ids, sizeof ids));
  ck_assert_int_eq(vnrt_plan_run(plan), VNRT_ERROR_OUT_OF_RANGE);
  ck_assert_ptr_nonnull(strstr(vnrt_context_last_error(ctx), "engram_lookup 'e'"));
  /* The plan recovers: a good run after a bad one works. */
  TU_OK(ctx, vnrt_plan_set_input(plan, "offsets", offsets_data, sizeof offsets_data));
  TU_OK(ctx, vnrt_plan_run(plan));
  vnrt_plan_destroy(plan);
  /* A binding to a param that is not a table of the store's shape is refused at compile. */
  vnrt_engram_binding wrong = {"offsets", store};
  desc.engram = &wrong;
  ck_assert_int_eq(vnrt_plan_create(ctx, g, tu_device(ctx, 0), &desc, &plan),
                   VNRT_ERROR_SHAPE_MISMATCH);
  vnrt_engram_store_destroy(store);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

/* ids[T + 1] -> slice -> ngram_hash: idx is not a hash of plan inputs, so the executor computes
 * it with a CPU plan at run start instead of hashing in the copy job. */
static vnrt_graph *sliced_engram_graph(vnrt_context *ctx) {
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tids = {VNRT_I32, 1, {T + 1}}, thist = {VNRT_I32, 1, {N - 1}};
  vnrt_tensor_type ttab = {VNRT_F32, 2, {R, D}}, toff = {VNRT_I32, 1, {H}};
  vnrt_value ids_all, ids, hist, table, offs, idx, e;
  TU_OK(ctx, vnrt_graph_add_input(g, "ids", &tids, 0, &ids_all));
  TU_OK(ctx, vnrt_graph_add_state(g, "hist", &thist, &hist));
  TU_OK(ctx, vnrt_graph_add_input(g, "table", &ttab, 1, &table));
  TU_OK(ctx, vnrt_graph_add_input(g, "offsets", &toff, 1, &offs));
  vnrt_attr sl[3] = {tu_attr_i("axis", 0), tu_attr_i("start", 1), tu_attr_i("len", T)};
  const char *sn[1] = {"ids_s"}, *in_[1] = {"idx"}, *en[1] = {"e"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_SLICE, &ids_all, 1, sl, 3, sn, &ids, 1));
  const int64_t mult[N] = {0x5bd1e995LL, -7046029254386353131LL, 0x27d4eb2fLL};
  const int64_t primes[H] = {499, 491, 487, 479, 467, 463, 461, 457};
  vnrt_attr ha[2] = {tu_attr_ints("mult", mult, N), tu_attr_ints("primes", primes, H)};
  vnrt_value hin[2] = {ids, hist};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_NGRAM_HASH, hin, 2, ha, 2, in_, &idx, 1));
  vnrt_value lin[3] = {table, idx, offs};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_ENGRAM_LOOKUP, lin, 3, NULL, 0, en, &e, 1));
  TU_OK(ctx, vnrt_graph_add_output(g, e));
  return g;
}

START_TEST(computed_ids_and_a_slow_copy_path_give_bit_identical_engram_rows) {
  vnrt_context *ctx = offload_context();
  fill_table(5);
  vnrt_graph *g = sliced_engram_graph(ctx);
  const int32_t hist0[N - 1] = {9, 4}; /* a non-zero history: the state reaches the hash */
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    float ref[T * H * D], got[T * H * D];
    for (int served = 0; served < 2; ++served) {
      vnrt_engram_store *store = NULL;
      vnrt_engram_binding b = {"table", NULL};
      vnrt_plan_desc desc = {0};
      if (served) {
        vnrt_engram_store_desc sd = {0};
        sd.rows = R, sd.dim = D, sd.dtype = VNRT_F32, sd.host_data = table_data;
        sd.cache_slots = 7;
        TU_OK(ctx, vnrt_engram_store_create(ctx, &sd, &store));
        b.store = store;
        desc.engram = &b, desc.n_engram = 1;
      }
      vnrt_plan *plan = NULL;
      TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &desc, &plan));
      /* A slow copy path: the lookup must wait for its rows, never read the slots early. */
      if (served) TU_OK(ctx, vn_plan_set_copy_delay(plan, 20 * 1000 * 1000));
      if (!served) TU_OK(ctx, vnrt_plan_set_input(plan, "table", table_data, sizeof table_data));
      TU_OK(ctx, vnrt_plan_set_input(plan, "offsets", offsets_data, sizeof offsets_data));
      TU_OK(ctx, vnrt_plan_set_input(plan, "hist", hist0, sizeof hist0));
      int32_t ids[T + 1] = {5, 1, 2, 3, 4, 5};
      TU_OK(ctx, vnrt_plan_set_input(plan, "ids", ids, sizeof ids));
      TU_OK(ctx, vnrt_plan_run(plan));
      TU_OK(ctx, vnrt_plan_read_output(plan, "e", served ? got : ref, sizeof got));
      if (served) {
        vnrt_run_stats st = {.struct_size = sizeof st};
        TU_OK(ctx, vnrt_plan_get_run_stats(plan, &st));
        ck_assert_uint_gt(st.stall_ns, 10 * 1000 * 1000);
        ck_assert_uint_gt(st.bytes_engram, 0);
      }
      vnrt_plan_destroy(plan);
      vnrt_engram_store_destroy(store);
    }
    ck_assert_msg(memcmp(got, ref, sizeof ref) == 0, "%s: rows differ", tu_device_spec(dev));
    /* Independently: entry (t=0, column 0) is order 2 of tokens ids[1] and hist[1]. */
    uint64_t mix = (uint64_t)(int64_t)1 * (uint64_t)0x5bd1e995LL ^
                   (uint64_t)(int64_t)4 * (uint64_t)(-7046029254386353131LL);
    int64_t r = (int64_t)mix % 499;
    if (r < 0) r += 499;
    ck_assert_float_eq(got[0], table_data[(size_t)r * D]);
  }
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

START_TEST(hash_routed_expert_weights_stream_only_the_experts_used) {
  /* Two hash-routed MoE layers; over budget, their expert weights are streamed one layer at a
   * time, and only the experts the tokens' ids route to are copied. */
  enum { TT = 4, CC = 32, E = 16, F = 16, V = 20, KK = 2 };
  vnrt_context *ctx = offload_context();
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {TT, CC}}, tl = {VNRT_F32, 2, {TT, E}};
  vnrt_tensor_type ti = {VNRT_I32, 1, {TT}}, tt = {VNRT_I32, 2, {V, KK}};
  vnrt_tensor_type tgu = {VNRT_F32, 3, {E, 2 * F, CC}}, tdn = {VNRT_F32, 3, {E, CC, F}};
  vnrt_value x, lg, ids, t2e, rw[2];
  TU_OK(ctx, vnrt_graph_add_input(g, "x", &tx, 0, &x));
  TU_OK(ctx, vnrt_graph_add_input(g, "logits", &tl, 0, &lg));
  TU_OK(ctx, vnrt_graph_add_input(g, "ids", &ti, 0, &ids));
  TU_OK(ctx, vnrt_graph_add_input(g, "tid2eid", &tt, 1, &t2e));
  vnrt_attr sc = tu_attr_word("score", "sqrt_softplus");
  vnrt_value rin[3] = {lg, ids, t2e};
  const char *rn[2] = {"rw", "re"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_MOE_HASH_ROUTE, rin, 3, &sc, 1, rn, rw, 2));
  vnrt_value h = x;
  for (int l = 0; l < 2; ++l) {
    char gn[16], dnm[16], yn[8];
    snprintf(gn, sizeof gn, "gu%d", l), snprintf(dnm, sizeof dnm, "dn%d", l);
    snprintf(yn, sizeof yn, "y%d", l);
    vnrt_value wgu, wdn, y;
    TU_OK(ctx, vnrt_graph_add_input(g, gn, &tgu, 1, &wgu));
    TU_OK(ctx, vnrt_graph_add_input(g, dnm, &tdn, 1, &wdn));
    vnrt_value fin[5] = {h, rw[1], rw[0], wgu, wdn};
    const char *names[1] = {yn};
    TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_MOE_FFN, fin, 5, NULL, 0, names, &y, 1));
    h = y;
  }
  TU_OK(ctx, vnrt_graph_add_output(g, h));

  tu_tensor in = tu_tensor_new(VNRT_F32, 1, (int64_t[]){TT * CC + TT * E});
  tu_fill_uniform(&in, 11, -1, 1);
  tu_tensor w = tu_tensor_new(VNRT_F32, 1, (int64_t[]){2 * E * 3 * F * CC});
  tu_fill_uniform(&w, 12, -0.2f, 0.2f);
  int32_t table[V * KK], idv[TT] = {3, 7, 3, 11};
  for (int i = 0; i < V; ++i) table[i * KK] = i % 4, table[i * KK + 1] = 4 + i % 3;
  size_t gub = vnrt_tensor_type_bytes(&tgu), dnb = vnrt_tensor_type_bytes(&tdn);
  for (int32_t di = 0; di < tu_device_count(ctx); ++di) {
    vnrt_device *dev = tu_device(ctx, di);
    float out[2][TT * CC];
    vnrt_run_stats st = {.struct_size = sizeof st};
    vnrt_plan_info info = {.struct_size = sizeof info};
    for (int limited = 0; limited < 2; ++limited) {
      vnrt_plan_desc desc = {0};
      desc.prefetch_depth = 1;
      if (limited) desc.device_memory_limit = gub + dnb + 16 * 1024; /* one layer's experts */
      vnrt_plan *plan = NULL;
      TU_OK(ctx, vnrt_plan_create(ctx, g, dev, &desc, &plan));
      TU_OK(ctx, vnrt_plan_set_input(plan, "x", in.data, sizeof(float) * TT * CC));
      TU_OK(ctx, vnrt_plan_set_input(plan, "logits", (float *)in.data + TT * CC,
                                     sizeof(float) * TT * E));
      TU_OK(ctx, vnrt_plan_set_input(plan, "ids", idv, sizeof idv));
      TU_OK(ctx, vnrt_plan_set_input(plan, "tid2eid", table, sizeof table));
      for (int l = 0; l < 2; ++l) {
        char gn[16], dnm[16];
        snprintf(gn, sizeof gn, "gu%d", l), snprintf(dnm, sizeof dnm, "dn%d", l);
        const char *base = (const char *)w.data + (size_t)l * (gub + dnb);
        TU_OK(ctx, vnrt_plan_set_input(plan, gn, base, gub));
        TU_OK(ctx, vnrt_plan_set_input(plan, dnm, base + gub, dnb));
      }
      TU_OK(ctx, vnrt_plan_run(plan));
      TU_OK(ctx, vnrt_plan_read_output(plan, "y1", out[limited], sizeof out[limited]));
      TU_OK(ctx, vnrt_plan_get_run_stats(plan, &st));
      TU_OK(ctx, vnrt_plan_get_info(plan, &info));
      vnrt_plan_destroy(plan);
    }
    ck_assert_mem_eq(out[1], out[0], sizeof out[0]);
    ck_assert_int_eq(info.n_streamed_params, 4);
    /* ids 3, 7, 11 route to experts {3, 7 % 4 = 3, 11 % 4 = 3} and {4 + 0, 4 + 1, 4 + 2}:
     * 4 of 16 experts in each layer. */
    ck_assert_uint_eq(st.bytes_weights, 2 * 4 * (gub + dnb) / E);
    ck_assert_uint_lt(st.bytes_weights, info.streamed_bytes);
  }
  tu_tensor_free(&in), tu_tensor_free(&w);
  vnrt_graph_destroy(g);
  vnrt_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("offload");
  TCase *tc = tcase_create("offload");
  tcase_set_timeout(tc, 240);
  tcase_add_test(tc, over_budget_params_are_streamed_with_identical_results);
  tcase_add_test(tc, streamed_copies_never_overlap_a_live_reader);
  tcase_add_test(tc, a_plan_that_cannot_fit_fails_at_compile_time_with_the_numbers);
  tcase_add_test(tc, a_slow_copy_path_blocks_the_consumer_and_never_gives_stale_data);
  tcase_add_test(tc, engram_store_lookups_are_bit_identical_for_every_cache_size);
  tcase_add_test(tc, a_file_backed_table_larger_than_the_device_budget_is_served);
  tcase_add_test(tc, out_of_range_engram_rows_fail_the_run_naming_the_row);
  tcase_add_test(tc, computed_ids_and_a_slow_copy_path_give_bit_identical_engram_rows);
  tcase_add_test(tc, hash_routed_expert_weights_stream_only_the_experts_used);
  suite_add_tcase(s, tc);
  return tu_run_suite(s);
}
