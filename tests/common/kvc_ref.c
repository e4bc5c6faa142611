/* kv_compress's states across runs against plain C (kvc_ref.h). */
#include "kvc_ref.h"

#include <math.h>
#include <string.h>

static vnrt_graph *kvc_graph(vnrt_context *ctx, int64_t t, int overlap) {
  const int64_t c = 1 + overlap, cd = c * KVC_D;
  vnrt_graph *g = NULL;
  TU_OK(ctx, vnrt_graph_create(ctx, &g));
  vnrt_tensor_type tx = {VNRT_F32, 2, {t, cd}}, te = {VNRT_F32, 2, {KVC_M, cd}};
  vnrt_tensor_type ts = {VNRT_F32, 2, {c * KVC_M, cd}}, tp = {VNRT_I32, 1, {1}};
  vnrt_value in[6], r[4];
  TU_OK(ctx, vnrt_graph_add_input(g, "a", &tx, 0, &in[0]));
  TU_OK(ctx, vnrt_graph_add_input(g, "z", &tx, 0, &in[1]));
  TU_OK(ctx, vnrt_graph_add_input(g, "ape", &te, 1, &in[2]));
  TU_OK(ctx, vnrt_graph_add_state(g, "sa", &ts, &in[3]));
  TU_OK(ctx, vnrt_graph_add_state(g, "sz", &ts, &in[4]));
  TU_OK(ctx, vnrt_graph_add_input(g, "pos0", &tp, 0, &in[5]));
  vnrt_attr at[2] = {tu_attr_i("ratio", KVC_M), tu_attr_i("overlap", overlap)};
  const char *names[4] = {"entries", "entry_pos", "sa2", "sz2"};
  TU_OK(ctx, vnrt_graph_add_node(g, VNRT_OP_KV_COMPRESS, in, 6, at, 2, names, r, 4));
  TU_OK(ctx, vnrt_graph_set_state_update(g, in[3], r[2]));
  TU_OK(ctx, vnrt_graph_set_state_update(g, in[4], r[3]));
  TU_OK(ctx, vnrt_graph_add_output(g, r[0]));
  TU_OK(ctx, vnrt_graph_add_output(g, r[1]));
  return g;
}

/* docs/ops.md kv_compress over positions 0 .. KVC_L-1 in plain C: the entries of the closed
 * windows, and the state rows after them (seen[row]: the row holds a position seen). */
static void kvc_reference(int c, const float *a, const float *z, const float *ape, double *entries,
                          float *sa, float *sz, int *seen) {
  const int cd = c * KVC_D;
  for (int w = 0; w < KVC_W; ++w) {
    for (int k = 0; k < KVC_D; ++k) {
      int pos[2 * KVC_M], ch[2 * KVC_M], n = 0;
      for (int p = (c == 2 && w >= 1 ? w - 1 : w) * KVC_M; p < (w + 1) * KVC_M; ++p) {
        pos[n] = p, ch[n++] = c == 2 && p >= w * KVC_M ? KVC_D + k : k;
      }
      double mx = -INFINITY, den = 0, num = 0;
      for (int i = 0; i < n; ++i) {
        mx = fmax(mx, (double)(z[pos[i] * cd + ch[i]] + ape[(pos[i] % KVC_M) * cd + ch[i]]));
      }
      for (int i = 0; i < n; ++i) {
        double e = exp((double)(z[pos[i] * cd + ch[i]] + ape[(pos[i] % KVC_M) * cd + ch[i]]) - mx);
        den += e, num += e * a[pos[i] * cd + ch[i]];
      }
      entries[w * KVC_D + k] = num / den;
    }
  }
  for (int row = 0; row < c * KVC_M; ++row) {
    const int p = (c == 2 && row < KVC_M ? KVC_W - 1 : KVC_W) * KVC_M + row % KVC_M;
    seen[row] = p >= 0 && p < KVC_L;
    for (int ch = 0; ch < cd && seen[row]; ++ch) {
      sa[row * cd + ch] = a[p * cd + ch];
      sz[row * cd + ch] = z[p * cd + ch] + ape[(p % KVC_M) * cd + ch];
    }
  }
}

void kvc_check_runs(vnrt_context *ctx, vnrt_device *dev) {
  vnrt_device_info di = {.struct_size = sizeof di};
  TU_OK(ctx, vnrt_device_get_info(dev, &di));
  const int want_inplace = (di.caps & VNRT_CAP_STATE_INPLACE) ? 2 : 0;
  for (int overlap = 0; overlap <= 1; ++overlap) {
    const int c = 1 + overlap, cd = c * KVC_D;
    tu_tensor rnd = tu_tensor_new(VNRT_F32, 1, (int64_t[]){(2 * KVC_L + KVC_M) * cd});
    tu_fill_uniform(&rnd, 11 + (uint64_t)overlap, -2, 2);
    const float *a = rnd.data, *z = a + KVC_L * cd, *ape = z + KVC_L * cd;
    double want[KVC_W * KVC_D];
    float wa[2 * KVC_M * 2 * KVC_D], wz[2 * KVC_M * 2 * KVC_D];
    int seen[2 * KVC_M];
    kvc_reference(c, a, z, ape, want, wa, wz, seen);
    const int64_t runs[3] = {1, 3, 5};
    for (int k = 0; k < 3; ++k) {
      const int64_t t = runs[k], n = (t + KVC_M - 1) / KVC_M;
      vnrt_graph *g = kvc_graph(ctx, t, overlap);
      vnrt_plan *plan = NULL;
      TU_OK(ctx, vnrt_plan_create(ctx, g, dev, NULL, &plan));
      vnrt_plan_info info = {.struct_size = sizeof info};
      TU_OK(ctx, vnrt_plan_get_info(plan, &info));
      ck_assert_msg(info.n_fallback_nodes > 0 || info.n_inplace_updates == want_inplace,
                    "%s, overlap %d, runs of %d: %d in-place updates, want %d", tu_device_spec(dev),
                    overlap, (int)t, (int)info.n_inplace_updates, want_inplace);
      TU_OK(ctx, vnrt_plan_set_input(plan, "ape", ape, sizeof(float) * KVC_M * (size_t)cd));
      float got[KVC_W * KVC_D];
      for (int i = 0; i < KVC_W * KVC_D; ++i) got[i] = NAN;
      for (int32_t p0 = 0; p0 < KVC_L; p0 += (int32_t)t) {
        float e[2 * KVC_D];
        int32_t ep[2];
        const size_t xb = sizeof(float) * (size_t)(t * cd);
        TU_OK(ctx, vnrt_plan_set_input(plan, "a", a + p0 * cd, xb));
        TU_OK(ctx, vnrt_plan_set_input(plan, "z", z + p0 * cd, xb));
        TU_OK(ctx, vnrt_plan_set_input(plan, "pos0", &p0, sizeof p0));
        TU_OK(ctx, vnrt_plan_run(plan));
        TU_OK(ctx, vnrt_plan_read_output(plan, "entries", e, sizeof(float) * (size_t)(n * KVC_D)));
        TU_OK(ctx, vnrt_plan_read_output(plan, "entry_pos", ep, sizeof(int32_t) * (size_t)n));
        for (int64_t i = 0; i < n; ++i) {
          if (ep[i] >= 0) memcpy(got + ep[i] / KVC_M * KVC_D, e + i * KVC_D, sizeof(float) * KVC_D);
        }
      }
      for (int i = 0; i < KVC_W * KVC_D; ++i) {
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * (1 + fabs(want[i])),
                      "%s, overlap %d, runs of %d: entry value %d is %g, want %g",
                      tu_device_spec(dev), overlap, (int)t, i, (double)got[i], want[i]);
      }
      float ga[2 * KVC_M * 2 * KVC_D], gz[2 * KVC_M * 2 * KVC_D];
      const size_t sb = sizeof(float) * (size_t)(c * KVC_M * cd);
      TU_OK(ctx, vnrt_plan_read_state(plan, "sa", ga, sb));
      TU_OK(ctx, vnrt_plan_read_state(plan, "sz", gz, sb));
      for (int i = 0; i < c * KVC_M * cd; ++i) {
        ck_assert_msg(!seen[i / cd] || (ga[i] == wa[i] && gz[i] == wz[i]),
                      "%s, overlap %d, runs of %d: state element %d is %g/%g, want %g/%g",
                      tu_device_spec(dev), overlap, (int)t, i, (double)ga[i], (double)gz[i],
                      (double)wa[i], (double)wz[i]);
      }
      /* A bad position writes nothing (docs/executor.md), in place or not. */
      const int32_t bad = -2;
      TU_OK(ctx, vnrt_plan_set_input(plan, "pos0", &bad, sizeof bad));
      ck_assert_msg(vnrt_plan_run(plan) != VNRT_OK, "%s: a run at pos0 = -2 succeeded",
                    tu_device_spec(dev));
      float ba[2 * KVC_M * 2 * KVC_D], bz[2 * KVC_M * 2 * KVC_D];
      TU_OK(ctx, vnrt_plan_read_state(plan, "sa", ba, sb));
      TU_OK(ctx, vnrt_plan_read_state(plan, "sz", bz, sb));
      ck_assert_msg(memcmp(ba, ga, sb) == 0 && memcmp(bz, gz, sb) == 0,
                    "%s, overlap %d, runs of %d: a run at pos0 = -2 changed the states",
                    tu_device_spec(dev), overlap, (int)t);
      vnrt_plan_destroy(plan);
      vnrt_graph_destroy(g);
    }
    tu_tensor_free(&rnd);
  }
}
