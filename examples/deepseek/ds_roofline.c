/* ds_roofline: bytes per decode step from the model's tensor list, and a STREAM-like triad. */
#include "ds_roofline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_weights.h"

static int has(const char *name, const char *part) { return strstr(name, part) != NULL; }

int ds_decode_bytes_at(const ds_config *cfg, int64_t kv_len, ds_decode_bytes *out) {
  memset(out, 0, sizeof *out);
  ds_tensor_spec *specs = NULL;
  int32_t n_specs = 0;
  if (ds_tensor_specs(cfg, &specs, &n_specs)) return -1;
  for (int32_t i = 0; i < n_specs; ++i) {
    const ds_tensor_spec *s = &specs[i];
    const char *nm = s->name;
    const uint64_t bytes = vnrt_tensor_type_bytes(&s->type);
    const uint64_t row = s->type.dims[0] > 0 ? bytes / (uint64_t)s->type.dims[0] : 0;
    if (has(nm, "embed_tokens")) {
      out->embed_head += row; /* one token's row */
    } else if (has(nm, "lm_head")) {
      out->embed_head += bytes;
    } else if (has(nm, ".engram.")) {
      if (has(nm, "embedding.weight")) {
        /* H hashed rows of Dh: row = one row of the table. */
        out->engram += (uint64_t)cfg->engram_heads_total * row;
      } else {
        out->engram += bytes; /* projections, norms, conv weights, the offsets */
      }
    } else if (has(nm, "mlp.experts.")) {
      /* [E, ...]: k of the E experts. */
      out->routed += (uint64_t)cfg->top_k * row;
    } else if (has(nm, "mlp.shared_experts.")) {
      out->shared += bytes;
    } else if (has(nm, "tid2eid")) {
      out->router += row; /* [V, k]: the token's row */
    } else if (has(nm, "mlp.gate.")) {
      out->router += bytes;
    } else if (has(nm, "self_attn.")) {
      out->attention += bytes;
    } else if (has(nm, "_hc.") || has(nm, "hc_head.")) {
      out->mhc += bytes;
    } else {
      out->norms += bytes; /* input/post-attention layernorms, the final norm */
    }
  }
  free(specs);
  /* Keys the query at position kv_len - 1 sees (docs/ops.md: s > pos - window). */
  int64_t visible = kv_len;
  if (cfg->window > 0 && visible > cfg->window) visible = cfg->window;
  out->kv_cache =
      (uint64_t)cfg->layers * 2u * (uint64_t)visible * (uint64_t)cfg->head_dim * sizeof(float);
  /* Each Engram layer's short-conv history: (kernel - 1)·N rows of n·C f32. */
  out->engram += (uint64_t)cfg->n_engram * (uint64_t)((cfg->conv_kernel - 1) * cfg->ngram) *
                 (uint64_t)(cfg->hc_mult * cfg->hidden) * sizeof(float);
  out->total = out->attention + out->kv_cache + out->routed + out->shared + out->router + out->mhc +
               out->engram + out->norms + out->embed_head;
  return 0;
}

/* ---- the triad ---------------------------------------------------------------------------- */

#define DS_TRIAD_MAX_THREADS 256

struct ds_triad {
  float *a, *b, *c;
  size_t n;
  int threads;
  int init; /* first touch instead of the triad */
};

typedef struct triad_arg {
  const ds_triad *job;
  int tid;
} triad_arg;

static void *triad_slice(void *p) {
  const triad_arg *t = p;
  const ds_triad *j = t->job;
  const size_t lo = j->n * (size_t)t->tid / (size_t)j->threads;
  const size_t hi = j->n * (size_t)(t->tid + 1) / (size_t)j->threads;
  float *restrict a = j->a;
  const float *restrict b = j->b, *restrict c = j->c;
  if (j->init) {
    for (size_t i = lo; i < hi; ++i) a[i] = 0.0f, j->b[i] = 1.0f, j->c[i] = 2.0f;
  } else {
    for (size_t i = lo; i < hi; ++i) a[i] = b[i] + 0.5f * c[i];
  }
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ds_triad_pass(ds_triad *job) {
  pthread_t th[DS_TRIAD_MAX_THREADS];
  triad_arg args[DS_TRIAD_MAX_THREADS];
  const double t0 = now_s();
  int started = 0, failed = 0;
  for (int i = 1; i < job->threads; ++i) {
    args[i] = (triad_arg){job, i};
    if (pthread_create(&th[i], NULL, triad_slice, &args[i]) != 0) {
      failed = 1;
      break;
    }
    started = i;
  }
  args[0] = (triad_arg){job, 0};
  if (!failed) triad_slice(&args[0]);
  for (int i = 1; i <= started; ++i) pthread_join(th[i], NULL);
  return failed ? -1.0 : now_s() - t0;
}

uint64_t ds_triad_bytes(const ds_triad *triad) { return 3u * (uint64_t)triad->n * sizeof(float); }

void ds_triad_destroy(ds_triad *triad) {
  if (!triad) return;
  free(triad->a);
  free(triad->b);
  free(triad->c);
  free(triad);
}

int ds_triad_create(int threads, uint64_t total_bytes, ds_triad **out, char *err, size_t err_size) {
  *out = NULL;
  if (threads < 1) threads = 1;
  if (threads > DS_TRIAD_MAX_THREADS) threads = DS_TRIAD_MAX_THREADS;
  ds_triad *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, err_size, "triad: out of memory");
    return -1;
  }
  t->threads = threads;
  t->n = (size_t)(total_bytes / 3 / sizeof(float));
  if (t->n < (size_t)threads) t->n = (size_t)threads;
  t->a = malloc(t->n * sizeof(float));
  t->b = malloc(t->n * sizeof(float));
  t->c = malloc(t->n * sizeof(float));
  if (!t->a || !t->b || !t->c) {
    snprintf(err, err_size, "triad: cannot allocate 3 x %zu bytes", t->n * sizeof(float));
    ds_triad_destroy(t);
    return -1;
  }
  t->init = 1;
  const double s = ds_triad_pass(t);
  t->init = 0;
  if (s < 0) {
    snprintf(err, err_size, "triad: cannot start %d threads", threads);
    ds_triad_destroy(t);
    return -1;
  }
  *out = t;
  return 0;
}
