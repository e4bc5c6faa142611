/* A program built against vnrt 0.1.0: compiled with its headers (tests/abi/v0, frozen copies)
 * and linked against a stand-in for its libvnrt.so.0 (v0_stub.c), then run against the current
 * library. Every call whose struct gained struct_size must still read and write 0.1.0's
 * layouts: context and plan descs with members set past where struct_size now sits, device and
 * plan info, run stats, and an Engram store's desc and stats (docs/api.md, "ABI and growth"). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vnrt/memory.h"
#include "vnrt/vnrt.h"

static int failures = 0;

#define CHECK(ctx, expr)                                                                 \
  do {                                                                                   \
    vnrt_status s_ = (expr);                                                             \
    if (s_ != VNRT_OK) {                                                                 \
      fprintf(stderr, "v0_consumer: %s failed: %s: %s\n", #expr, vnrt_status_string(s_), \
              (ctx) ? vnrt_context_last_error(ctx) : "");                                \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

#define EXPECT(cond, ...)                          \
  do {                                             \
    if (!(cond)) {                                 \
      fprintf(stderr, "v0_consumer: %s: ", #cond); \
      fprintf(stderr, __VA_ARGS__);                \
      fprintf(stderr, "\n");                       \
      ++failures;                                  \
    }                                              \
  } while (0)

static int logged_lines = 0;
static void count_log(void *user, vnrt_log_level level, const char *message) {
  (void)level;
  (void)message;
  ++*(int *)user;
}

int main(void) {
  printf("v0_consumer: running against vnrt %s\n", vnrt_version(NULL, NULL, NULL));

  /* 0.1.0's desc: log_fn is its second member. A library reading the new layout would take the
   * allocator's first pointer as struct_size and fail, or call the wrong member. */
  vnrt_context_desc desc = {0};
  desc.log_fn = count_log;
  desc.log_user = &logged_lines;
  desc.log_level = VNRT_LOG_DEBUG;
  desc.no_plugins = 1;
  desc.num_threads = 3;
  vnrt_context *ctx = NULL;
  /* A bad num_threads (0.1.0's last member) is refused, through 0.1.0's log callback. */
  desc.num_threads = -1;
  vnrt_status bad = vnrt_context_create(&desc, &ctx);
  EXPECT(bad == VNRT_ERROR_INVALID_ARGUMENT && ctx == NULL, "num_threads = -1 gave %s",
         vnrt_status_string(bad));
  EXPECT(logged_lines > 0, "the log callback of a 0.1.0 desc was not called for its error");
  desc.num_threads = 3;
  CHECK(ctx, vnrt_context_create(&desc, &ctx));

  vnrt_device *cpu = NULL;
  CHECK(ctx, vnrt_device_select(ctx, "cpu", &cpu));
  vnrt_device_info dinfo;
  memset(&dinfo, 0x5a, sizeof dinfo);
  CHECK(ctx, vnrt_device_get_info(cpu, &dinfo));
  EXPECT(strcmp(dinfo.backend, "cpu") == 0, "backend is '%.16s'", dinfo.backend);
  EXPECT(strcmp(dinfo.spec, "cpu") == 0, "spec is '%.32s'", dinfo.spec);
  EXPECT(dinfo.type == VNRT_DEVICE_TYPE_CPU, "type %d", (int)dinfo.type);
  EXPECT(strstr(dinfo.driver, "3 threads") != NULL, "driver '%.128s' (num_threads = 3)",
         dinfo.driver);
  EXPECT(dinfo.memory_bytes > 0 && dinfo.max_buffer_bytes > 0, "memory %llu, max buffer %llu",
         (unsigned long long)dinfo.memory_bytes, (unsigned long long)dinfo.max_buffer_bytes);
  EXPECT(dinfo.compute_units >= 1 && dinfo.max_workgroup_size == 1,
         "compute units %u, workgroup %u", dinfo.compute_units, dinfo.max_workgroup_size);

  /* y = (a + b) @ w^T: linear's weight is a param. */
  vnrt_graph *graph = NULL;
  CHECK(ctx, vnrt_graph_create(ctx, &graph));
  vnrt_tensor_type xt = {VNRT_F32, 2, {2, 3, 0, 0}};
  vnrt_tensor_type wt = {VNRT_F32, 2, {2, 3, 0, 0}};
  vnrt_value a, b, w, h, y;
  CHECK(ctx, vnrt_graph_add_input(graph, "a", &xt, 0, &a));
  CHECK(ctx, vnrt_graph_add_input(graph, "b", &xt, 0, &b));
  CHECK(ctx, vnrt_graph_add_input(graph, "w", &wt, 1, &w));
  vnrt_value ab[2] = {a, b}, hw[2];
  const char *h_name = "h", *y_name = "y";
  CHECK(ctx, vnrt_graph_add_node(graph, VNRT_OP_ADD, ab, 2, NULL, 0, &h_name, &h, 1));
  hw[0] = h;
  hw[1] = w;
  CHECK(ctx, vnrt_graph_add_node(graph, VNRT_OP_LINEAR, hw, 2, NULL, 0, &y_name, &y, 1));
  CHECK(ctx, vnrt_graph_add_output(graph, y));

  /* max_work is 0.1.0's last member: one unit of work is far too little, so the plan must
   * fail with BUDGET_EXCEEDED if the library reads it where 0.1.0 put it. */
  vnrt_plan_desc pd = {0};
  pd.kernels = VNRT_KERNELS_REFERENCE;
  pd.max_work = 1;
  vnrt_plan *plan = NULL;
  vnrt_status s = vnrt_plan_create(ctx, graph, cpu, &pd, &plan);
  EXPECT(s == VNRT_ERROR_BUDGET_EXCEEDED, "max_work = 1 gave %s, expected BUDGET_EXCEEDED",
         vnrt_status_string(s));
  vnrt_plan_destroy(plan);
  pd.max_work = 0;
  plan = NULL;
  CHECK(ctx, vnrt_plan_create(ctx, graph, cpu, &pd, &plan));
  vnrt_plan *shared = NULL;
  CHECK(ctx, vnrt_plan_create_shared(ctx, graph, cpu, &pd, plan, &shared));

  float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {0.5f, -1, 10, 0, -4, 100};
  float wv[6] = {1, 0, -1, 0.25f, 2, 0}, yv[4] = {0};
  CHECK(ctx, vnrt_plan_set_input(plan, "a", av, sizeof av));
  CHECK(ctx, vnrt_plan_set_input(plan, "b", bv, sizeof bv));
  CHECK(ctx, vnrt_plan_set_input(plan, "w", wv, sizeof wv));
  CHECK(ctx, vnrt_plan_run(plan));
  CHECK(ctx, vnrt_plan_read_output(plan, "y", yv, sizeof yv));
  for (int t = 0; t < 2; ++t) {
    for (int n = 0; n < 2; ++n) {
      double want = 0;
      for (int k = 0; k < 3; ++k) want += (double)(av[t * 3 + k] + bv[t * 3 + k]) * wv[n * 3 + k];
      EXPECT(fabs(yv[t * 2 + n] - want) <= 1e-5 * (1 + fabs(want)), "y[%d][%d] = %g, expected %g",
             t, n, yv[t * 2 + n], want);
    }
  }

  vnrt_plan_info info;
  memset(&info, 0x5a, sizeof info);
  CHECK(ctx, vnrt_plan_get_info(plan, &info));
  EXPECT(info.n_nodes == 2, "n_nodes %d", info.n_nodes);
  EXPECT(info.n_partitions == 1, "n_partitions %d", info.n_partitions);
  EXPECT(info.n_fallback_nodes == 0, "n_fallback_nodes %d", info.n_fallback_nodes);
  EXPECT(info.weight_bytes == sizeof wv, "weight_bytes %llu",
         (unsigned long long)info.weight_bytes);
  EXPECT(info.state_bytes == 0 && info.n_streamed_params == 0 && info.n_engram_lookups == 0,
         "state %llu, streamed %d, engram %d", (unsigned long long)info.state_bytes,
         info.n_streamed_params, info.n_engram_lookups);
  EXPECT(info.work > 0 && info.work_limit >= info.work, "work %llu, limit %llu",
         (unsigned long long)info.work, (unsigned long long)info.work_limit);

  vnrt_run_stats st;
  memset(&st, 0x5a, sizeof st);
  CHECK(ctx, vnrt_plan_get_run_stats(plan, &st));
  EXPECT(st.bytes_weights == 0 && st.bytes_engram == 0 && st.engram_rows == 0 &&
             st.engram_hits == 0 && st.engram_hit_rate == 0.0,
         "a CPU run moved weights %llu, engram %llu, rows %llu",
         (unsigned long long)st.bytes_weights, (unsigned long long)st.bytes_engram,
         (unsigned long long)st.engram_rows);
  EXPECT(st.overlap >= 0.0 && st.overlap <= 1.0, "overlap %g", st.overlap);
  EXPECT(st.wall_ns >= st.compute_ns || st.compute_ns < 1000000000ull, "wall %llu compute %llu",
         (unsigned long long)st.wall_ns, (unsigned long long)st.compute_ns);

  vnrt_plan_info sinfo;
  memset(&sinfo, 0x5a, sizeof sinfo);
  CHECK(ctx, vnrt_plan_get_info(shared, &sinfo));
  EXPECT(sinfo.n_nodes == 2 && sinfo.weight_bytes == sizeof wv,
         "shared plan: nodes %d, weights %llu", sinfo.n_nodes,
         (unsigned long long)sinfo.weight_bytes);
  vnrt_plan_destroy(shared);
  vnrt_plan_destroy(plan);
  vnrt_graph_destroy(graph);

  /* An Engram store from 0.1.0's desc: rows and dim are its first members, cache_slots and
   * eviction its last. */
  float table[4 * 2] = {0, 1, 10, 11, 20, 21, 30, 31};
  vnrt_engram_store_desc ed = {0};
  ed.rows = 4;
  ed.dim = 2;
  ed.dtype = VNRT_F32;
  ed.host_data = table;
  ed.cache_slots = 2;
  ed.eviction = VNRT_EVICTION_LRU;
  vnrt_engram_store *store = NULL;
  CHECK(ctx, vnrt_engram_store_create(ctx, &ed, &store));
  int32_t idx[2] = {3, 1}, offsets[1] = {0};
  float out[4] = {0};
  CHECK(ctx, vnrt_engram_store_lookup(store, idx, 2, 1, offsets, out, sizeof out));
  EXPECT(out[0] == 30 && out[1] == 31 && out[2] == 10 && out[3] == 11, "lookup %g %g %g %g", out[0],
         out[1], out[2], out[3]);
  vnrt_engram_stats es;
  memset(&es, 0x5a, sizeof es);
  CHECK(ctx, vnrt_engram_store_stats(store, &es));
  EXPECT(es.lookups == 1 && es.rows_requested == 2 && es.misses == 2 && es.hits == 0,
         "lookups %llu, requested %llu, misses %llu, hits %llu", (unsigned long long)es.lookups,
         (unsigned long long)es.rows_requested, (unsigned long long)es.misses,
         (unsigned long long)es.hits);
  EXPECT(es.cache_slots == 2 && es.resident_rows == 2, "cache_slots %lld, resident %lld",
         (long long)es.cache_slots, (long long)es.resident_rows);
  vnrt_engram_store_destroy(store);

  vnrt_context_destroy(ctx);
  if (failures) {
    fprintf(stderr, "v0_consumer: %d check(s) failed\n", failures);
    return 1;
  }
  printf("v0_consumer: passed\n");
  return 0;
}
