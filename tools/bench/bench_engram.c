/* vnrt-bench's memory-manager cases (docs/executor.md): Engram gather bandwidth against the
 * machine's memory bandwidth, and a decode-style loop with the Engram tables resident on the
 * device, offloaded with DualPath, and offloaded with the copies serialised. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "vnrt/memory.h"

/* A file-backed f16 table of rows x dim, written once (zeros are fine: we time bytes). */
static const char *make_table_file(int64_t rows, int64_t dim) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/vnrt-bench-engram-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0 || ftruncate(fd, (off_t)(rows * dim * 2)) != 0) {
    die("cannot create %s: %s", path, strerror(errno));
  }
  /* Touch every page so that the measurement reads memory, not page faults of a sparse file. */
  char *buf = calloc(1, 1 << 20);
  for (int64_t off = 0; off < rows * dim * 2; off += 1 << 20) {
    if (pwrite(fd, buf, 1 << 20, (off_t)off) < 0) break;
  }
  free(buf);
  close(fd);
  return path;
}

/* The peer of the store's gather: random rows copied by a plain loop over a mapping of the same
 * file — no checks, no statistics — with the same prefetch distance. What the store
 * adds on top of this is its bookkeeping. */
typedef struct plain_table {
  const uint8_t *data;
  size_t bytes;
} plain_table;

static plain_table plain_map(const char *path, size_t bytes) {
  int fd = open(path, O_RDONLY);
  void *m = fd < 0 ? MAP_FAILED : mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  if (fd >= 0) close(fd);
  if (m == MAP_FAILED) die("cannot map %s: %s", path, strerror(errno));
  madvise(m, bytes, MADV_RANDOM);
  volatile uint8_t sink = 0;
  for (size_t off = 0; off < bytes; off += 4096) sink += ((const uint8_t *)m)[off];
  return (plain_table){m, bytes};
}

/* Host memory the way the store keeps a copy of a large table: anonymous, huge pages asked. */
static plain_table plain_host(size_t bytes) {
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die("cannot map %zu bytes: %s", bytes, strerror(errno));
  madvise(m, bytes, MADV_HUGEPAGE);
  memset(m, 1, bytes);
  return (plain_table){m, bytes};
}

static void plain_gather(const plain_table *t, const int32_t *idx, int tokens, int heads,
                         const int32_t *offs, int64_t *rows, size_t rb, uint8_t *out) {
  enum { AHEAD = 32 };
  for (int i = 0; i < tokens; ++i) {
    for (int h = 0; h < heads; ++h) rows[i * heads + h] = offs[h] + idx[i * heads + h];
  }
  const int n = tokens * heads;
  for (int k = 0; k < n; ++k) {
    if (k + AHEAD < n) {
      const uint8_t *p = t->data + (size_t)rows[k + AHEAD] * rb;
      for (size_t off = 0; off < rb; off += 64) __builtin_prefetch(p + off, 0, 0);
    }
    memcpy(out + (size_t)k * rb, t->data + (size_t)rows[k] * rb, rb);
  }
}

/* 1. Engram gather with the cache off (every row is fetched) against the triad and a plain
 * loop, from a file-backed table or (host) from the store's own copy of a table in host memory.
 * All are measured in alternation, best of each, so that load from other processes hits them
 * alike. `label` names the table in the figures. */
static void bench_gather(const char *label, int64_t rows, int64_t dim, bool host) {
  const size_t table_bytes = (size_t)(rows * dim * 2);
  const char *table = host ? NULL : make_table_file(rows, dim);
  vnrt_engram_store_desc sd = {0};
  sd.rows = rows, sd.dim = dim, sd.dtype = VNRT_F16;
  void *host_src = NULL;
  if (host) {
    host_src = xmalloc(table_bytes);
    memset(host_src, 1, table_bytes);
    sd.host_data = host_src, sd.copy_host_data = 1; /* the store's copy: huge pages */
  } else {
    sd.file_path = table;
  }
  vnrt_engram_store *store = NULL;
  check(vnrt_engram_store_create(ctx, &sd, &store), "vnrt_engram_store_create");
  free(host_src);
  enum { TOK = 256, HEADS = 32, LOOKUPS = 4 };
  const int rounds = opt.quick ? 2 : 7;
  const size_t rb = (size_t)dim * 2;
  int32_t *idx = xmalloc(sizeof(int32_t) * TOK * HEADS), offs[HEADS];
  int64_t *plain_rows = xmalloc(sizeof(int64_t) * TOK * HEADS);
  size_t out_bytes = (size_t)TOK * HEADS * rb;
  void *out = xmalloc(out_bytes);
  int64_t per_head = rows / HEADS;
  for (int h = 0; h < HEADS; ++h) offs[h] = (int32_t)(h * per_head);
  /* Every page of the mapping once, so that the gather reads memory, not first-touch faults. */
  for (int64_t r = 0; r < per_head; r += 4096 / (dim * 2)) {
    int32_t rep[HEADS];
    for (int h = 0; h < HEADS; ++h) rep[h] = (int32_t)r;
    check(vnrt_engram_store_lookup(store, rep, 1, HEADS, offs, out, (size_t)HEADS * rb),
          "vnrt_engram_store_lookup");
  }
  plain_table plain = host ? plain_host(table_bytes) : plain_map(table, table_bytes);
  double best = 1e30, best_plain = 1e30, best_triad = 1e30, best_triad1 = 1e30;
  for (int r = 0; r < rounds; ++r) {
    double t0 = now_s();
    triad_baseline(NULL);
    double tt = now_s() - t0;
    if (tt < best_triad) best_triad = tt;
    t0 = now_s();
    triad_baseline_one_thread(NULL);
    tt = now_s() - t0;
    if (tt < best_triad1) best_triad1 = tt;
    /* The store and the peer take turns going first, on fresh rows each time (so that neither
     * finds the other's rows in the cache). */
    for (int l = 0; l < 2 * LOOKUPS; ++l) {
      for (int i = 0; i < TOK * HEADS; ++i) idx[i] = (int32_t)(rng_uniform() * (double)per_head);
      const bool run_store = (l + r) % 2 == 0;
      t0 = now_s();
      if (run_store) {
        check(vnrt_engram_store_lookup(store, idx, TOK, HEADS, offs, out, out_bytes),
              "vnrt_engram_store_lookup");
      } else {
        plain_gather(&plain, idx, TOK, HEADS, offs, plain_rows, rb, out);
      }
      double dt = now_s() - t0;
      double *b = run_store ? &best : &best_plain;
      if (dt < *b) *b = dt;
    }
  }
  munmap((void *)plain.data, plain.bytes);
  double bw = triad_gbps(best_triad), bw1 = triad_gbps(best_triad1);
  /* A gather reads each row once and writes it once: count both, as the triad counts 3. */
  double gbs = 2 * (double)out_bytes / best / 1e9,
         plain_gbs = 2 * (double)out_bytes / best_plain / 1e9;
  char name[96], note[128];
  printf("\n");
  snprintf(note, sizeof note, "%d random rows of %lld f16 per lookup, %.0f MiB %s table",
           TOK * HEADS, (long long)dim, (double)table_bytes / 1048576.0,
           host ? "host-memory" : "file-mapped");
  snprintf(name, sizeof name, "engram gather %s: rows per second", label);
  add_figure(name, (double)TOK * HEADS / best / 1e6, "Mrows/s", note);
  snprintf(name, sizeof name, "engram gather %s: read + write", label);
  add_figure(name, gbs, "GB/s", "best of the lookups");
  snprintf(name, sizeof name, "engram gather %s: plain loop", label);
  add_figure(name, plain_gbs, "GB/s", "a plain loop, no checks or statistics: the peer");
  snprintf(name, sizeof name, "engram gather %s: triad beside it", label);
  add_figure(name, bw, "GB/s", "best of the passes between lookups");
  snprintf(name, sizeof name, "engram gather %s: one-thread triad", label);
  add_figure(name, bw1, "GB/s", "what the one thread a lookup runs on can stream");
  snprintf(name, sizeof name, "engram gather %s / triad", label);
  add_figure(name, gbs / bw, "x", "the machine's bandwidth; target >= 0.5");
  snprintf(name, sizeof name, "engram gather %s / one-thread triad", label);
  add_figure(name, gbs / bw1, "x", "the same thread count as the gather");
  snprintf(name, sizeof name, "engram gather %s / plain loop", label);
  add_figure(name, gbs / plain_gbs, "x", "what the store's bookkeeping costs");
  free(idx);
  free(plain_rows);
  free(out);
  vnrt_engram_store_destroy(store);
  if (table) unlink(table);
}

/* The decode step: ids -> ngram_hash -> engram_lookup (2 layers) -> linear projections, plus
 * `mlp` linears of compute, 1 token per step. */
typedef struct decode_cfg {
  int64_t rows, dim, heads_k, hidden;
  int mlp;
} decode_cfg;

static vnrt_graph *decode_graph(const decode_cfg *c) {
  vnrt_graph *g = NULL;
  check(vnrt_graph_create(ctx, &g), "vnrt_graph_create");
  int64_t H = 2 * c->heads_k; /* 2- and 3-grams */
  vnrt_tensor_type tid = {VNRT_I32, 1, {1}}, th = {VNRT_I32, 1, {2}};
  vnrt_tensor_type ttab = {VNRT_F16, 2, {c->rows, c->dim}}, toff = {VNRT_I32, 1, {H}};
  vnrt_tensor_type tx = {VNRT_F32, 2, {1, c->hidden}};
  vnrt_tensor_type tw = {VNRT_F16, 2, {c->hidden, c->hidden}};
  vnrt_tensor_type tp = {VNRT_F16, 2, {c->hidden, H * c->dim}};
  vnrt_value ids, hist, off, x;
  check(vnrt_graph_add_input(g, "ids", &tid, 0, &ids), "vnrt_graph_add_input");
  check(vnrt_graph_add_state(g, "hist", &th, &hist), "vnrt_graph_add_state");
  check(vnrt_graph_add_input(g, "offsets", &toff, 1, &off), "vnrt_graph_add_input");
  check(vnrt_graph_add_input(g, "x", &tx, 0, &x), "vnrt_graph_add_input");
  int64_t mult[3] = {0x5bd1e995LL, 0x27d4eb2fLL, 0x165667b1LL};
  int64_t primes[64];
  int64_t p = c->rows / H - 1;
  for (int64_t i = 0; i < H; ++i) primes[i] = p - 2 * i; /* need not be prime to measure */
  vnrt_attr ha[2] = {
      {.key = "mult", .kind = VNRT_ATTR_INTS, .ints = mult, .count = 3},
      {.key = "primes", .kind = VNRT_ATTR_INTS, .ints = primes, .count = (int32_t)H}};
  vnrt_value h = x;
  for (int layer = 0; layer < 2; ++layer) {
    char n[64];
    vnrt_value tab, idx, e, proj, pw, y, hin[2] = {ids, hist};
    snprintf(n, sizeof n, "table%d", layer);
    check(vnrt_graph_add_input(g, n, &ttab, 1, &tab), "vnrt_graph_add_input");
    snprintf(n, sizeof n, "idx%d", layer);
    const char *nm[1] = {n};
    check(vnrt_graph_add_node(g, VNRT_OP_NGRAM_HASH, hin, 2, ha, 2, nm, &idx, 1),
          "vnrt_graph_add_node");
    vnrt_value lin[3] = {tab, idx, off};
    snprintf(n, sizeof n, "e%d", layer);
    check(vnrt_graph_add_node(g, VNRT_OP_ENGRAM_LOOKUP, lin, 3, NULL, 0, nm, &e, 1),
          "vnrt_graph_add_node");
    snprintf(n, sizeof n, "proj%d", layer);
    check(vnrt_graph_add_input(g, n, &tp, 1, &pw), "vnrt_graph_add_input");
    vnrt_value pin[2] = {e, pw};
    snprintf(n, sizeof n, "v%d", layer);
    check(vnrt_graph_add_node(g, VNRT_OP_LINEAR, pin, 2, NULL, 0, nm, &proj, 1),
          "vnrt_graph_add_node");
    vnrt_value ain[2] = {h, proj};
    snprintf(n, sizeof n, "h%d", layer);
    check(vnrt_graph_add_node(g, VNRT_OP_ADD, ain, 2, NULL, 0, nm, &y, 1), "vnrt_graph_add_node");
    h = y;
    for (int m = 0; m < c->mlp; ++m) {
      vnrt_value w, z;
      snprintf(n, sizeof n, "w%d_%d", layer, m);
      check(vnrt_graph_add_input(g, n, &tw, 1, &w), "vnrt_graph_add_input");
      vnrt_value win[2] = {h, w};
      snprintf(n, sizeof n, "m%d_%d", layer, m);
      check(vnrt_graph_add_node(g, VNRT_OP_LINEAR, win, 2, NULL, 0, nm, &z, 1),
            "vnrt_graph_add_node");
      h = z;
    }
  }
  /* The n-gram history: the last 2 ids. */
  vnrt_value cat, hist2, cin[2] = {hist, ids};
  vnrt_attr ax = {.key = "axis", .kind = VNRT_ATTR_INT, .i = 0};
  const char *cn[1] = {"cat"}, *hn[1] = {"hist2"};
  check(vnrt_graph_add_node(g, VNRT_OP_CONCAT, cin, 2, &ax, 1, cn, &cat, 1), "vnrt_graph_add_node");
  vnrt_attr sl[3] = {{.key = "axis", .kind = VNRT_ATTR_INT, .i = 0},
                     {.key = "start", .kind = VNRT_ATTR_INT, .i = 1},
                     {.key = "len", .kind = VNRT_ATTR_INT, .i = 2}};
  check(vnrt_graph_add_node(g, VNRT_OP_SLICE, &cat, 1, sl, 3, hn, &hist2, 1),
        "vnrt_graph_add_node");
  check(vnrt_graph_set_state_update(g, hist, hist2), "vnrt_graph_set_state_update");
  check(vnrt_graph_add_output(g, h), "vnrt_graph_add_output");
  return g;
}

/* Per-step figures of one mode: medians over the steps (load from other processes makes means
 * follow the outliers). */
typedef struct step_result {
  double step_ms;                                /* the step as the caller sees it */
  double wall_ms, compute_ms, copy_ms, stall_ms; /* from the run statistics */
  double ratio;                                  /* per step: wall / max(compute, copy) */
  double weights_mb;                             /* streamed params per step (run statistics), MB */
  double param_mb; /* every param the compute reads: resident and streamed (plan info), MB */
} step_result;

enum { N_FIGS = 7 };

/* The last two stream the linears' weights too (a device budget smaller than the weights): copy
 * work comparable to the compute, where overlap shows. */
enum { MODE_RESIDENT, MODE_DUALPATH, MODE_SERIAL, MODE_STREAM, MODE_STREAM_SERIAL, N_MODES };

/* The budget of the streaming modes: the arena and a few of the 2-4 MiB weights at a time. */
static const uint64_t kStreamBudget = 12u << 20;

/* One plan of the decode loop. mode RESIDENT: tables bound as params, on the device; DUALPATH:
 * the tables are Engram stores over a table in host memory, rows fetched on the copy stream;
 * SERIAL: the same stores with the copies inline. */
typedef struct decode_run {
  vnrt_plan *plan;
  vnrt_engram_store *stores[2];
  double *figs[N_FIGS]; /* per figure of step_result, per step */
} decode_run;

static void decode_open(vnrt_device *dev, vnrt_graph *g, const decode_cfg *c, int mode, int steps,
                        void *table_host, void *weights, decode_run *r) {
  memset(r, 0, sizeof *r);
  vnrt_engram_binding b[2];
  vnrt_plan_desc desc = {0};
  if (mode != MODE_RESIDENT) {
    for (int l = 0; l < 2; ++l) {
      vnrt_engram_store_desc sd = {0};
      sd.rows = c->rows, sd.dim = c->dim, sd.dtype = VNRT_F16, sd.host_data = table_host;
      sd.cache_slots = 0; /* every step fetches its rows: the worst case for the copy path */
      check(vnrt_engram_store_create(ctx, &sd, &r->stores[l]), "vnrt_engram_store_create");
      b[l].param = l ? "table1" : "table0";
      b[l].store = r->stores[l];
    }
    desc.engram = b, desc.n_engram = 2;
    desc.serialize_copies = mode == MODE_SERIAL || mode == MODE_STREAM_SERIAL;
    if (mode == MODE_STREAM || mode == MODE_STREAM_SERIAL) desc.device_memory_limit = kStreamBudget;
  }
  check(vnrt_plan_create(ctx, g, dev, &desc, &r->plan), "vnrt_plan_create");
  int64_t H = 2 * c->heads_k;
  int32_t offs[64];
  for (int64_t h = 0; h < H; ++h) offs[h] = (int32_t)(h * (c->rows / H));
  check(vnrt_plan_set_input(r->plan, "offsets", offs, sizeof(int32_t) * (size_t)H),
        "vnrt_plan_set_input");
  if (mode == MODE_RESIDENT) {
    size_t tb = (size_t)(c->rows * c->dim * 2);
    check(vnrt_plan_set_input(r->plan, "table0", table_host, tb), "vnrt_plan_set_input");
    check(vnrt_plan_set_input(r->plan, "table1", table_host, tb), "vnrt_plan_set_input");
  }
  size_t pb = (size_t)(c->hidden * H * c->dim * 2), wb = (size_t)(c->hidden * c->hidden * 2);
  for (int l = 0; l < 2; ++l) {
    char n[32];
    snprintf(n, sizeof n, "proj%d", l);
    check(vnrt_plan_set_input(r->plan, n, weights, pb), "vnrt_plan_set_input");
    for (int m = 0; m < c->mlp; ++m) {
      snprintf(n, sizeof n, "w%d_%d", l, m);
      check(vnrt_plan_set_input(r->plan, n, weights, wb), "vnrt_plan_set_input");
    }
  }
  float *x = calloc((size_t)c->hidden, sizeof *x);
  check(vnrt_plan_set_input(r->plan, "x", x, sizeof(float) * (size_t)c->hidden),
        "vnrt_plan_set_input");
  free(x);
  for (int f = 0; f < N_FIGS; ++f) r->figs[f] = calloc((size_t)steps, sizeof(double));
}

/* One decode step with token `id`; step i < 0 is a warm-up, not recorded. */
static void decode_step(decode_run *r, int i, int steps, int32_t id) {
  check(vnrt_plan_set_input(r->plan, "ids", &id, sizeof id), "vnrt_plan_set_input");
  double t0 = now_s();
  check(vnrt_plan_run(r->plan), "vnrt_plan_run");
  double t = now_s() - t0;
  if (i < 0) return;
  vnrt_run_stats st = {.struct_size = sizeof st};
  check(vnrt_plan_get_run_stats(r->plan, &st), "vnrt_plan_get_run_stats");
  double comp = 1e-6 * (double)st.compute_ns, copy = 1e-6 * (double)st.copy_ns;
  r->figs[0][i] = 1e3 * t;
  r->figs[1][i] = 1e-6 * (double)st.wall_ns;
  r->figs[2][i] = comp;
  r->figs[3][i] = copy;
  r->figs[4][i] = 1e-6 * (double)st.stall_ns;
  r->figs[5][i] = r->figs[1][i] / (comp > copy ? comp : copy);
  r->figs[6][i] = 1e-6 * (double)st.bytes_weights;
  (void)steps;
}

static step_result decode_close(decode_run *r, int steps) {
  double m[N_FIGS];
  for (int f = 0; f < N_FIGS; ++f) m[f] = median(r->figs[f], steps), free(r->figs[f]);
  vnrt_plan_info info = {.struct_size = sizeof info};
  check(vnrt_plan_get_info(r->plan, &info), "vnrt_plan_get_info");
  step_result res = {m[0], m[1], m[2], m[3],
                     m[4], m[5], m[6], 1e-6 * (double)(info.weight_bytes + info.streamed_bytes)};
  vnrt_plan_destroy(r->plan);
  for (int l = 0; l < 2; ++l) vnrt_engram_store_destroy(r->stores[l]);
  return res;
}

/* 2. The decode loop in every mode. The modes take turns step by step (in a rotating order),
 * so that load from other processes falls on all of them alike; each step feeds all modes the
 * same token. */
static void bench_decode(const decode_cfg *c, int steps, step_result out[N_MODES]) {
  void *table_host = malloc((size_t)(c->rows * c->dim * 2));
  void *weights = calloc((size_t)(c->hidden * 2 * c->heads_k * c->dim + c->hidden * c->hidden), 2);
  if (!table_host || !weights) die("out of memory");
  /* Written, not just allocated: every page is real memory, as a loaded table's would be. */
  memset(table_host, 0x11, (size_t)(c->rows * c->dim * 2));
  vnrt_graph *g = decode_graph(c);
  decode_run runs[N_MODES];
  for (int m = 0; m < N_MODES; ++m) {
    decode_open(device, g, c, m, steps, table_host, weights, &runs[m]);
  }
  enum { WARMUP = 5 };
  for (int i = -WARMUP; i < steps; ++i) {
    int32_t id = (int32_t)(rng_uniform() * 129280.0);
    for (int k = 0; k < N_MODES; ++k) {
      int m = ((i < 0 ? 0 : i) + k) % N_MODES;
      decode_step(&runs[m], i, steps, id);
    }
  }
  for (int m = 0; m < N_MODES; ++m) out[m] = decode_close(&runs[m], steps);
  vnrt_graph_destroy(g);
  free(table_host), free(weights);
}

/* 2 x 32 MiB tables of 16 heads x 2 orders, D = 64, and two 1024 x 1024 f16 linears per layer
 * as the compute of comparable duration. */
static const decode_cfg kDecode = {1 << 18, 64, 16, 1024, 2};

void bench_engram(void) {
  /* The decode loop's table, 32 MiB in a file; and 1 GiB in host memory, beyond any last-level
   * cache (this machine's reports hundreds of MiB), so that rows come from DRAM. --quick skips
   * the large one. */
  bench_gather("32M file", kDecode.rows, kDecode.dim, false);
  if (!opt.quick) bench_gather("1G host", 8 * 1024 * 1024, kDecode.dim, true);
}

void bench_dualpath(void) {
  int steps = opt.quick ? 20 : 20 * opt.reps;
  step_result r[N_MODES];
  bench_decode(&kDecode, steps, r);
  const step_result *res = &r[MODE_RESIDENT], *dual = &r[MODE_DUALPATH], *ser = &r[MODE_SERIAL];
  char note[128];
  printf("\n");
  snprintf(note, sizeof note,
           "1 token/step, 2 Engram layers x 16 heads x 2 orders, D=64 f16, %d linears "
           "[1024 x 1024] per layer; median of %d",
           kDecode.mlp, steps);
  add_figure("decode step, tables resident on the device", res->step_ms, "ms", note);
  snprintf(note, sizeof note, "run wall %.3f ms: compute %.3f ms, copy %.3f ms, stall %.3f ms",
           dual->wall_ms, dual->compute_ms, dual->copy_ms, dual->stall_ms);
  add_figure("decode step, Engram stores, DualPath", dual->step_ms, "ms", note);
  snprintf(note, sizeof note, "run wall %.3f ms, copies %.3f ms", ser->wall_ms, ser->copy_ms);
  add_figure("decode step, Engram stores, serialised", ser->step_ms, "ms", note);
  add_figure("DualPath wall / max(compute, copy)", dual->ratio, "x", "target <= 1.15");
  add_figure("serialised / DualPath", ser->step_ms / dual->step_ms, "x", "what DualPath hides");
  add_figure("offloaded vs resident, share of the step",
             100.0 * (dual->step_ms - res->step_ms) / res->step_ms, "%",
             "host-memory tables, cache off; target <= 5");
  const step_result *st = &r[MODE_STREAM], *sts = &r[MODE_STREAM_SERIAL];
  snprintf(note, sizeof note,
           "weights streamed under a %llu MiB budget: compute %.3f ms, copy %.3f ms, stall %.3f ms",
           (unsigned long long)(kStreamBudget >> 20), st->compute_ms, st->copy_ms, st->stall_ms);
  add_figure("decode step, streamed weights, DualPath", st->step_ms, "ms", note);
  snprintf(note, sizeof note, "run wall %.3f ms, copies %.3f ms", sts->wall_ms, sts->copy_ms);
  add_figure("decode step, streamed weights, serialised", sts->step_ms, "ms", note);
  add_figure("streamed: DualPath wall / max(compute, copy)", st->ratio, "x",
             "copy comparable to compute; target <= 1.15");
  add_figure("streamed: serialised / DualPath", sts->step_ms / st->step_ms, "x",
             "what DualPath hides");
  /* Where the device computes from host DRAM (the CPU device; lavapipe and PoCL here too), the
   * copy (read + write of each streamed byte) and the compute (which reads every weight) share
   * one memory bandwidth, so no overlap can beat their traffic at the triad's speed. */
  double traffic_mb = 2 * st->weights_mb + st->param_mb;
  double bound_ms = traffic_mb / bandwidth_gbps; /* MB / (GB/s) = ms */
  snprintf(note, sizeof note,
           "%.1f MB streamed x 2 + %.1f MB of weights read, at the %.1f GB/s triad: %.3f ms",
           st->weights_mb, st->param_mb, bandwidth_gbps, bound_ms);
  add_figure("streamed: DualPath wall / shared-DRAM bound",
             st->wall_ms / (bound_ms > 0 ? bound_ms : 1e-9), "x", note);
}
