/* The exchange in two calls (vnrt_session_desc.moe_exchange_finish, docs/scale-out.md, "The
 * shared expert apart") on the tiny checkpoint and its Engram one: per layer the start comes
 * before the finish with the same arguments, x and the route stay valid in between, y is
 * written only by the finish, and the REF logits are those of one process bit for bit; a
 * failing finish fails the run naming the layer and resets the session, and a failing start
 * gets no finish. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vnrt/model.h"
#include "vnrt/vnrt.h"

#include "model_check.h"

enum { V = 1024, C = 256, E = 16, K = 4, MAX_T = 8 };

typedef struct two_calls {
  vnrt_model *m;
  int starts, finishes, fail_start_at, fail_finish_at, bad;
  int32_t layer; /* the layer started, -1: none */
  int64_t T, pos0;
  const float *x;
  float x_copy[MAX_T * C];
  int32_t experts[MAX_T * K];
} two_calls;

static vnrt_status start(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                         const int32_t *experts, const float *weights, float *y) {
  two_calls *tc = user;
  (void)weights;
  if (tc->layer != -1 || T > MAX_T) tc->bad++; /* a start before the last one's finish */
  if (tc->starts++ == tc->fail_start_at) return VNRT_ERROR_INTERNAL;
  tc->layer = layer;
  tc->T = T;
  tc->pos0 = pos0;
  tc->x = x;
  memcpy(tc->x_copy, x, (size_t)(T * C) * sizeof *x);
  memcpy(tc->experts, experts, (size_t)(T * K) * sizeof *experts);
  for (int64_t i = 0; i < T * C; ++i) y[i] = NAN; /* the session must not read y yet */
  return VNRT_OK;
}

static vnrt_status finish(void *user, int32_t layer, int64_t T, int64_t pos0, const float *x,
                          const int32_t *experts, const float *weights, float *y) {
  two_calls *tc = user;
  if (layer != tc->layer || T != tc->T || pos0 != tc->pos0 || x != tc->x ||
      memcmp(x, tc->x_copy, (size_t)(T * C) * sizeof *x) != 0 ||
      memcmp(experts, tc->experts, (size_t)(T * K) * sizeof *experts) != 0) {
    tc->bad++;
  }
  tc->layer = -1;
  if (tc->finishes++ == tc->fail_finish_at) return VNRT_ERROR_INTERNAL;
  return vnrt_model_moe_experts(tc->m, layer, 0, E, x, experts, weights, T, K, y);
}

static void run(vnrt_model *m, const char *what, two_calls *tc, const int32_t *ids, float *out) {
  vnrt_session_desc sd = {0};
  sd.size = sizeof sd;
  sd.prefill_chunk = 5;
  if (tc) {
    sd.moe_exchange = start;
    sd.moe_exchange_finish = finish;
    sd.moe_exchange_user = tc;
  }
  vnrt_session *s = NULL;
  CHECK(vnrt_session_create(m, &sd, &s) == VNRT_OK && vnrt_session_prefill(s, ids, 8) == VNRT_OK &&
            vnrt_session_decode(s, ids + 8, 1) == VNRT_OK &&
            vnrt_session_logits(s, out, V) == VNRT_OK,
        "%s: %s", what, vnrt_model_last_error());
  if (!tc || !s) {
    vnrt_session_destroy(s);
    return;
  }
  /* 4 layers, 3 runs (chunks of 5 and 3, then 1 token) */
  CHECK(tc->starts == 12 && tc->finishes == 12 && tc->bad == 0,
        "%s: %d starts, %d finishes, %d out of order", what, tc->starts, tc->finishes, tc->bad);
  tc->fail_finish_at = tc->finishes + 2; /* layer 2 of the next run */
  CHECK(vnrt_session_decode(s, ids, 1) == VNRT_ERROR_INTERNAL &&
            strstr(vnrt_model_last_error(), "exchange of layer 2") && vnrt_session_position(s) == 0,
        "%s: a failing finish fails the run and resets: %s", what, vnrt_model_last_error());
  const int finishes = tc->finishes;
  tc->fail_start_at = tc->starts + 1; /* layer 1 */
  tc->layer = -1;
  CHECK(vnrt_session_decode(s, ids, 1) == VNRT_ERROR_INTERNAL &&
            strstr(vnrt_model_last_error(), "exchange of layer 1") && tc->finishes == finishes + 1,
        "%s: a failing start gets no finish (%d finishes after %d): %s", what, tc->finishes,
        finishes, vnrt_model_last_error());
  vnrt_session_destroy(s);
}

static void test_model(vnrt_context *ctx, const char *dir) {
  vnrt_model_desc d = {0};
  d.device_spec = "cpu";
  vnrt_model *m = NULL;
  CHECK(vnrt_model_open(ctx, dir, &d, &m) == VNRT_OK, "%s: open: %s", dir, vnrt_model_last_error());
  if (!m) return;
  const int32_t ids[9] = {3, 14, 15, 92, 65, 35, 89, 79, 32};
  float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
  two_calls *tc = calloc(1, sizeof *tc);
  if (a && b && tc) {
    tc->m = m;
    tc->layer = -1;
    tc->fail_start_at = tc->fail_finish_at = -1;
    run(m, "one process", NULL, ids, a);
    run(m, "two calls", tc, ids, b);
    CHECK(memcmp(a, b, V * sizeof *a) == 0, "%s: the two-call exchange changes a bit", dir);
  }
  free(a);
  free(b);
  free(tc);
  vnrt_model_close(m);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_ep_api CHECKPOINT_DIR ENGRAM_CHECKPOINT_DIR\n");
    return 2;
  }
  vnrt_context *ctx = NULL;
  if (vnrt_context_create(NULL, &ctx) != VNRT_OK) return 1;
  test_model(ctx, argv[1]);
  test_model(ctx, argv[2]);
  vnrt_context_destroy(ctx);
  if (g_failures) fprintf(stderr, "%d failures\n", g_failures);
  return g_failures ? 1 : 0;
}
