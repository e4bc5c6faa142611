/* ds_roofline: the memory-bandwidth roofline of decoding — the bytes one decode step must read
 * (from the model's tensor list, at their stored dtypes) and a STREAM-like triad that measures
 * the bandwidth they are read at. */
#ifndef DS_ROOFLINE_H_
#define DS_ROOFLINE_H_

#include <stddef.h>
#include <stdint.h>

#include "ds_config.h"

/* Bytes one decode step (T = 1) must read, by part of the model. Every weight the step
 * touches counts once at its stored dtype; the one assumption is that a token's k routed
 * experts per MoE layer are distinct (top-k picks distinct experts; tid2eid rows hold k
 * distinct ones), so k/E of each packed expert tensor is read. Activations (a few KiB that
 * stay in cache) and writes (the KV row, the histories) are not counted. */
typedef struct ds_decode_bytes {
  uint64_t attention;  /* q/k/v/o projections, sinks */
  uint64_t kv_cache;   /* the K and V rows the query sees (window) at this step, f32 */
  uint64_t routed;     /* k of E experts' gate_up and down per layer */
  uint64_t shared;     /* the shared experts */
  uint64_t router;     /* router weights, score bias, the token's tid2eid row */
  uint64_t mhc;        /* attn_hc/ffn_hc fn, base, scale; hc_head */
  uint64_t engram;     /* value/key projections, norms, conv weights, the H hashed table
                          rows, the short-conv history */
  uint64_t norms;      /* RMSNorm weights */
  uint64_t embed_head; /* the embedding row and the LM head */
  uint64_t total;
} ds_decode_bytes;

/* Bytes the decode step that ends with kv_len tokens in the cache reads. Returns 0, or -1 if
 * out of memory. */
int ds_decode_bytes_at(const ds_config *cfg, int64_t kv_len, ds_decode_bytes *out);

/* A STREAM-like triad a[i] = b[i] + 0.5·c[i] over three f32 arrays, split over a number of
 * threads (each first-touches the slice it streams). Bytes are counted as STREAM does: two
 * arrays read and one written per pass. */
typedef struct ds_triad ds_triad;

/* Allocates and first-touches arrays of total_bytes in all. Returns 0, or -1 (message in err)
 * if the memory or the threads cannot be had. */
int ds_triad_create(int threads, uint64_t total_bytes, ds_triad **out, char *err, size_t err_size);
void ds_triad_destroy(ds_triad *triad);
/* Runs one pass; its seconds, or a negative value if a thread could not be started. */
double ds_triad_pass(ds_triad *triad);
/* Bytes one pass counts (3 arrays). */
uint64_t ds_triad_bytes(const ds_triad *triad);

#endif /* DS_ROOFLINE_H_ */
