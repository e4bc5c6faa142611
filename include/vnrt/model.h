/* vnrt/model.h: the DeepSeek-V4 model library — open a checkpoint directory in DeepSeek's own
 * layout, run prompts through it on any device, read logits and sample tokens.
 *
 * The forward pass, the two numerics and the checkpoint layout are specified in
 * docs/deepseek-v4.md; this header is its "Model API" section in code.
 *
 * Conventions are those of vnrt.h (statuses, out_* params cleared on entry, descs whose zero
 * means "default"), with one difference: the model layer keeps its own error message. When a
 * vnrt_model_* / vnrt_session_* call fails, vnrt_model_last_error() returns a message that names
 * the problem (the file, the tensor, the token id and the bound...). The message is kept per
 * thread, so it is valid until the next failing model call on the same thread.
 *
 * A model and its sessions are used from one thread at a time; the context must outlive them.
 */
#ifndef VNRT_MODEL_H_
#define VNRT_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vnrt_model vnrt_model;     /* an opened checkpoint: config and weights */
typedef struct vnrt_session vnrt_session; /* one sequence: compiled plans and KV states */

/* The numerics of the forward pass (docs/deepseek-v4.md, "Forward pass"). */
typedef enum vnrt_numerics {
  /* DeepSeek's reference: bf16 activations between ops (R()), e4m3 activation quantization
   * before every FP8/FP4 linear, FP8/FP4 round trips of the KV and indexer entries. */
  VNRT_NUMERICS_REF = 0,
  /* Everything in f32 on the same (dequantized) weights: R(), Lq's activation quantization,
   * FQ8 and FQ4 are the identity. */
  VNRT_NUMERICS_F32 = 1,
} vnrt_numerics;

/* The message of the last failed vnrt_model_* / vnrt_session_* / vnrt_sample call on this
 * thread ("" if none). Never NULL. */
VNRT_API const char *vnrt_model_last_error(void);

typedef struct vnrt_model_desc {
  size_t size; /* sizeof(vnrt_model_desc), or 0 (vnrt.h: sized structs) */
  /* The device: `device` when not NULL (borrowed from the context), else `device_spec` as
   * vnrt_device_select takes it ("cpu", "vulkan:0", "opencl:0"; NULL or "" = "auto"). */
  vnrt_device *device;
  const char *device_spec;
  vnrt_numerics numerics; /* 0 = VNRT_NUMERICS_REF */
  /* Device memory each plan may use (vnrt_plan_desc.device_memory_limit): over it, weights stay
   * in the mapped checkpoint files and are streamed to the device before the nodes that read
   * them. 0: $VNRT_DEVICE_MEMORY_LIMIT if set, else no limit. */
  uint64_t memory_limit;
  int no_fallback; /* nonzero: an op the device cannot run fails instead of running on the CPU */
  /* CPU worker threads are the context's (vnrt_context_desc.num_threads). */
  /* Nonzero: a model with Engram layers (docs/deepseek-v4.md, "Engram") serves each Engram
   * table from an Engram store (vnrt/memory.h) over the mapped checkpoint instead of holding it
   * in device memory; engram_cache_rows is the rows of each store's device row cache (0: no
   * cache). No effect on a model without Engram. */
  int engram_store;
  int64_t engram_cache_rows;
  /* Several devices in one process (docs/scale-out.md, "Several devices"): a comma-separated
   * list of specs ("cpu,vulkan:0,opencl:0") over which the layers are split in order (a
   * pipeline), each device taking a share of the weights in proportion to its memory budget
   * (its memory, or memory_limit when smaller); each layer's routed experts run on its
   * layer's device. Values pass between the devices' plans on their copy streams, what is
   * known early (ids, Engram rows, hash-routed ids) staged when a run starts
   * (vnrt_session_get_move_stats). With Engram layers the hash runs on the first device and
   * the rows come from the mapped checkpoint. NULL or "": `device` / `device_spec` alone. */
  const char *devices;
  /* With `devices`: nonzero splits the routed experts of every layer over the devices
   * instead (expert parallel in one process): the dense part on the first device, each
   * device a contiguous slice of the experts in proportion to its budget left; a token's
   * pairs run on their experts' devices and are summed in slot order. */
  int split_experts;
} vnrt_model_desc;

/* Opens the checkpoint in dir (config.json, model.safetensors.index.json and its shards; every
 * tensor is checked against the config before this returns, mtp.* is skipped) and keeps its
 * shards memory-mapped. desc may be NULL (REF numerics, the "auto" device, no limit). On failure
 * *out_model is NULL; the status says what kind of problem (VNRT_ERROR_IO for files,
 * VNRT_ERROR_INVALID_ARGUMENT for content or a bad desc, VNRT_ERROR_NOT_FOUND for a device)
 * and vnrt_model_last_error() names it. */
VNRT_API vnrt_status vnrt_model_open(vnrt_context *ctx, const char *dir,
                                     const vnrt_model_desc *desc, vnrt_model **out_model);
/* Closes the model. Its sessions must be destroyed first. NULL is a no-op. */
VNRT_API void vnrt_model_close(vnrt_model *model);

/* A summary of the config. */
typedef struct vnrt_model_info {
  size_t size;                 /* set by the caller: sizeof(vnrt_model_info), or 0 */
  int64_t vocab_size;          /* logits per position */
  int64_t hidden_size;         /* C */
  int32_t num_layers;          /* decoder layers (MTP excluded) */
  int32_t num_heads;           /* H */
  int64_t head_dim;            /* D */
  int32_t n_routed_experts;    /* E */
  int32_t num_experts_per_tok; /* k */
  int32_t num_hash_layers;     /* layers routed by token id */
  int64_t sliding_window;      /* W */
  int64_t max_position_embeddings;
  int32_t n_csa_layers;               /* layers with compress ratio 4 (compressor + indexer) */
  int32_t n_hca_layers;               /* layers with compress ratio 128 */
  int64_t bos_token_id, eos_token_id; /* -1 when the config names none */
  uint64_t weight_bytes; /* stored bytes of the tensors the model reads (MTP excluded) */
  vnrt_numerics numerics;
  char device[32]; /* the device's spec, e.g. "vulkan:0" */
  /* Since the second release (the first's size, 144 on LP64, gets the fields above): 1 for
   * DeepSeek's FP8/FP4 weights, 0 for a dequantized (BF16) checkpoint, whose linears and experts
   * take no activation quantization (docs/deepseek-v4.md, "Dequantized checkpoints"). 64-bit
   * so that it starts at the first release's sizeof, not in its tail padding. */
  int64_t quantized;
  /* Since the third release (the second's size, 152 on LP64, gets the fields above): the bytes
   * of weights one decoded token reads at their stored size (one embedding row, k of E experts
   * per layer, every other weight once; vnrt_model_plan_text's "weights read per token"), the
   * numerator of the decode's memory roofline (docs/bench.md). */
  uint64_t decode_bytes_per_token;
} vnrt_model_info;

VNRT_API vnrt_status vnrt_model_get_info(const vnrt_model *model, vnrt_model_info *out_info);

/* The spec of the device that runs `layer` (its attention, router and experts; num_layers: the
 * head), or NULL for a layer out of range. Valid while the model is open. */
VNRT_API const char *vnrt_model_layer_device(const vnrt_model *model, int32_t layer);

/* With vnrt_model_desc.split_experts: the spec of the device holding routed expert `expert`
 * (of every layer); NULL otherwise or out of range. */
VNRT_API const char *vnrt_model_expert_device(const vnrt_model *model, int32_t expert);

/* Writes the memory plan of the checkpoint or config in dir (weights by kind, bytes read per
 * decoded token, per-sequence state at max_context tokens, prefill arena) as readable text into
 * buf[capacity] (NUL-terminated, cut short if it does not fit), without opening any weights:
 * dir needs only config.json. *out_length (may be NULL) receives the full length. max_context 0:
 * min(max_position_embeddings, 4096). */
VNRT_API vnrt_status vnrt_model_plan_text(const char *dir, int64_t max_context, char *buf,
                                          size_t capacity, size_t *out_length);

/* Which graph vnrt_model_graph_text writes. Zero-initialized: a decode step with the default
 * context and DeepSeek's reference numerics. Fields may be added at the end; `size` tells
 * which version the caller compiled against. */
typedef struct vnrt_model_graph_desc {
  size_t size;            /* set by the caller: sizeof(vnrt_model_graph_desc), or 0 */
  int64_t tokens;         /* tokens of one run: 1 (0 means 1) a decode step, more a prefill
                           * chunk; at most max_context */
  int64_t max_context;    /* positions the states hold: 0 = min(max_position_embeddings,
                           * 4096), else 1..max_position_embeddings */
  vnrt_numerics numerics; /* as vnrt_model_desc.numerics */
} vnrt_model_graph_desc;

/* Writes the graph the model runs (vnrt_session_decode / _prefill) for the run desc describes
 * (NULL: the zero-initialized one) as vnir text (docs/vnir.md) into buf[capacity]
 * (NUL-terminated, cut short if it does not fit); *out_length (may be NULL) receives the full
 * length. Needs only dir/config.json; ctx builds the graph; errors are described by
 * vnrt_model_last_error, as for every function here. The params carry the names, dtypes and shapes
 * the model binds (the checkpoint's tensors, and the experts and hash-routing tables the loader
 * packs: docs/deepseek-v4.md), so `vnrt-bench --graph` can time the model's own nodes on any device
 * (docs/bench.md). VNRT_ERROR_INVALID_ARGUMENT for a NULL ctx or dir, a NULL buf with a
 * capacity, a size of no version, unknown numerics, or tokens/max_context out of range. */
VNRT_API vnrt_status vnrt_model_graph_text(vnrt_context *ctx, const char *dir,
                                           const vnrt_model_graph_desc *desc, char *buf,
                                           size_t capacity, size_t *out_length);

/* Expert parallel (docs/scale-out.md): a session with vnrt_session_desc.moe_exchange runs the
 * model cut at every MoE layer and calls this in place of the layer's routed experts, with the
 * MoE input x [T, C], the router's experts and weights [T, k] (row-major) of the run's T tokens
 * at positions pos0 … pos0 + T − 1; it must write y [T, C], the routed experts' output (the
 * moe_ffn of docs/ops.md), e.g. by exchanging rows with the ranks that own the experts and
 * running vnrt_model_moe_experts there. A status other than VNRT_OK fails the run (the
 * session is reset). Called on the session's thread. */
typedef vnrt_status (*vnrt_moe_exchange_fn)(void *user, int32_t layer, int64_t T, int64_t pos0,
                                            const float *x, const int32_t *experts,
                                            const float *weights, float *y);

/* Engram under expert parallel (docs/scale-out.md, "Engram"): the tables can be sharded by row
 * across ranks. Before the segment holding Engram layer `layer`, the session asks for the rows
 * its n-gram hash picked: rows[t·heads + h] is the global row (the head's table offset added)
 * of token t (at position pos0 + t), head h, in [0, table_rows); the fetch writes
 * out[(t·heads + h)·head_dim …] (bf16, the table's row as stored). A status other than
 * VNRT_OK fails the run (the session is reset). Called on the session's thread.
 * With vnrt_session_desc.engram_fetch_early the session calls it twice per layer and run:
 * stage VNRT_ENGRAM_START for every Engram layer as soon as the rows are known (before layer
 * 0; out need not be written yet, and rows and out stay valid), then VNRT_ENGRAM_FINISH before
 * the layer's segment, after which out must hold the rows; otherwise once, VNRT_ENGRAM_NOW. */
enum { VNRT_ENGRAM_NOW = 0, VNRT_ENGRAM_START = 1, VNRT_ENGRAM_FINISH = 2 };

typedef struct vnrt_engram_fetch {
  size_t struct_size; /* sizeof(vnrt_engram_fetch), set by the session */
  int32_t layer;      /* the decoder layer */
  int32_t heads, head_dim;
  int64_t tokens, pos0; /* T and the first token's position */
  int64_t table_rows;   /* rows of the layer's table */
  const int32_t *rows;  /* [T, heads] */
  uint16_t *out;        /* [T, heads, head_dim] bf16 */
  int32_t stage;        /* VNRT_ENGRAM_NOW, _START or _FINISH */
} vnrt_engram_fetch;

typedef vnrt_status (*vnrt_engram_fetch_fn)(void *user, const vnrt_engram_fetch *fetch);

/* Engram layer `layer`'s table ("layers.N.engram.embedding.weight", bf16 [rows, head_dim]):
 * *out_rows and *out_head_dim (either may be NULL) and, with out non-NULL, a copy of rows
 * [first, first + count) into out (capacity in bytes, >= count·head_dim·2), read from the
 * mapped checkpoint. A rank that holds only its slice of the table copies that slice once.
 * VNRT_ERROR_INVALID_ARGUMENT for a layer without Engram or rows outside the table. */
VNRT_API vnrt_status vnrt_model_engram_rows(vnrt_model *model, int32_t layer, int64_t first,
                                            int64_t count, void *out, size_t capacity,
                                            int64_t *out_rows, int32_t *out_head_dim);

typedef struct vnrt_session_desc {
  size_t size; /* sizeof(vnrt_session_desc), or 0 (vnrt.h: sized structs) */
  /* Positions a sequence may have (prompt and generated tokens together); the states (window
   * ring, compressed caches, indexer caches) are sized from it. 0: min(max_position_embeddings,
   * 4096). Must lie in [1, max_position_embeddings]. */
  int64_t max_context;
  /* A prefill runs its tokens in chunks of at most this many (one compiled plan per chunk
   * length in use). 0: 256. */
  int64_t prefill_chunk;
  /* > 0: expert-parallel simulation (docs/scale-out.md): every run's routing (each layer's
   * experts [T, k]) is kept for vnrt_session_routes and tallied through the dispatch/combine
   * bookkeeping of this many ranks (vnrt_session_ep_text). At most min(4096, experts). */
  int32_t ep_simulate_ranks;
  /* Non-NULL: expert parallel; the session never binds the routed experts (see
   * vnrt_moe_exchange_fn), nor the Engram tables (see engram_fetch). */
  vnrt_moe_exchange_fn moe_exchange;
  void *moe_exchange_user;
  /* With moe_exchange and a model with Engram layers: fetches each Engram layer's rows (see
   * vnrt_engram_fetch_fn); NULL: from this process's checkpoint. Unused otherwise. */
  vnrt_engram_fetch_fn engram_fetch;
  void *engram_fetch_user;
  /* Non-zero, with engram_fetch: start every Engram layer's fetch right after the n-gram hash
   * (before layer 0) and finish each before its layer, so that the rows travel while the
   * layers before it compute (see vnrt_engram_fetch_fn's stages). */
  int32_t engram_fetch_early;
  /* Non-NULL, with moe_exchange: the exchange comes in two calls with the same arguments, so
   * that the layer's shared expert runs while it is in flight. moe_exchange then starts it
   * (e.g. posts the dispatch; y need not be written yet, and x, experts, weights and y stay
   * valid), the session runs the shared expert on its own, then calls this, which must write
   * y. After a start that returned VNRT_OK, this is called even when the shared expert failed
   * (the run then fails), so that an exchange between ranks can complete. */
  vnrt_moe_exchange_fn moe_exchange_finish;
} vnrt_session_desc;

/* Creates a session (one sequence at position 0) and compiles its decode plan for the model's
 * device. desc may be NULL. The session holds its plans and their states; the device weights
 * are the model's, bound once from the mapped checkpoint (with the first session) and shared by
 * the plans of every session. */
VNRT_API vnrt_status vnrt_session_create(vnrt_model *model, const vnrt_session_desc *desc,
                                         vnrt_session **out_session);
VNRT_API void vnrt_session_destroy(vnrt_session *session);

/* Starts the sequence over at position 0 (states back to zero). */
VNRT_API vnrt_status vnrt_session_reset(vnrt_session *session);

/* Runs n >= 1 tokens at the next positions of the sequence: from position 0 for a new (or
 * reset) session, else continuing where the sequence stands (a prompt may be fed in several
 * prefills). The tokens are run in chunks of prefill_chunk. Fails, without running anything,
 * with VNRT_ERROR_OUT_OF_RANGE for an id outside [0, vocab_size) or when the sequence would
 * exceed max_context, and VNRT_ERROR_INVALID_ARGUMENT for n < 1 or ids NULL. Afterwards
 * vnrt_session_logits gives the logits of the last of these tokens. */
VNRT_API vnrt_status vnrt_session_prefill(vnrt_session *session, const int32_t *ids, int64_t n);

/* Runs n >= 1 tokens one at a time on the one-token plan (each id at the next position); the
 * same checks as vnrt_session_prefill. The result equals a prefill of the same ids. */
VNRT_API vnrt_status vnrt_session_decode(vnrt_session *session, const int32_t *ids, int64_t n);

/* Copies the logits of the last token run (f32[vocab_size]) into out; capacity is out's length
 * in floats and must be >= vocab_size. Fails when no token was run yet. */
VNRT_API vnrt_status vnrt_session_logits(const vnrt_session *session, float *out, size_t capacity);

/* Tokens in the sequence so far (the next token's position). */
VNRT_API int64_t vnrt_session_position(const vnrt_session *session);

typedef struct vnrt_session_stats {
  size_t size;              /* set by the caller: sizeof(vnrt_session_stats), or 0 */
  int64_t tokens_prefilled; /* by vnrt_session_prefill since the session was created */
  int64_t tokens_decoded;   /* by vnrt_session_decode */
  int64_t prefill_runs, decode_runs;
  double prefill_seconds, decode_seconds; /* in vnrt_plan_run, summed */
  double compile_seconds;                 /* compiling plans and binding weights */
  int32_t n_plans;                        /* plans compiled (decode + prefill chunk lengths) */
  /* Of the decode plan (vnrt_plan_info): */
  int32_t n_nodes;
  int32_t n_fallback_nodes; /* nodes run on the CPU because the device cannot */
  uint64_t device_bytes;    /* device memory: arena, resident weights, states */
  uint64_t weight_bytes;    /* params the plan reads */
  uint64_t state_bytes;
  int32_t n_streamed_params; /* params kept in host memory and streamed (memory_limit) */
  uint64_t streamed_bytes;
  /* Summed over every run (vnrt_run_stats): */
  uint64_t bytes_weights_streamed; /* host to device */
  uint64_t bytes_transfers;        /* between devices (CPU fallback) and state updates */
} vnrt_session_stats;

VNRT_API vnrt_status vnrt_session_get_stats(const vnrt_session *session,
                                            vnrt_session_stats *out_stats);

/* Moves between the devices of a placement (vnrt_model_desc.devices), summed over every run
 * since the session was created (docs/scale-out.md, "Several devices in one process"). Every
 * value handed from one plan to another is written on the consuming plan's copy stream and
 * read back on the producing plan's (vnrt_plan_stage_input / _output); data known before the
 * layers run (token ids and positions, Engram rows, hash-routed layers' expert ids) is staged
 * when the run starts. A session without several devices reports zeros. */
typedef struct vnrt_session_move_stats {
  size_t size;    /* set by the caller: sizeof(vnrt_session_move_stats), or 0 */
  int64_t runs;   /* runs (prefill chunks and decode steps) through the placement */
  int64_t tokens; /* tokens those runs computed */
  /* Bytes from one device to another: the activations handed across a segment boundary whose
   * two sides are on different devices (X, post, comb, ys and the routed experts' yr), and
   * with split experts the routed tokens (rows, expert ids, weights, padded as the expert plan
   * takes them) sent to a device other than the dense part's and their outputs back. */
  uint64_t bytes_boundaries;
  uint64_t bytes_routed;
  uint64_t bytes_engram; /* Engram rows, host to the device of their layer */
  /* Everything the copy streams moved for these runs, within a device too (the MoE inputs
   * and outputs of a layer's own device, ids, positions): vnrt_run_stats.bytes_staged summed */
  uint64_t bytes_moved;
  uint64_t bytes_early;      /* of bytes_moved, staged when the run started (known early) */
  double copy_seconds;       /* the moves' time on the copy streams (staged_ns summed) */
  double wait_seconds;       /* the session's thread waiting for them (staged_wait_ns) */
  double overlapped_seconds; /* per plan run max(0, copy - wait), summed: <= copy_seconds */
} vnrt_session_move_stats;

VNRT_API vnrt_status vnrt_session_get_move_stats(const vnrt_session *session,
                                                 vnrt_session_move_stats *out_stats);

/* The plans of the last run (the decode plan after a decode) as vnrt_plan_print_profile prints
 * them: `what` is VNRT_PROFILE_NODES and/or VNRT_PROFILE_OPS (vnrt/inspect.h). Times are those
 * of that run when the context profiles nodes (option profile=1 or VNRT_PROFILE=1), else only
 * the placement; an expert-parallel session prints each of its segments. Text into
 * buf[capacity] like vnrt_model_plan_text. Fails when no token was run yet. */
VNRT_API vnrt_status vnrt_session_profile_text(const vnrt_session *session, uint32_t what,
                                               char *buf, size_t capacity, size_t *out_length);

/* ---- Scale-out (docs/scale-out.md) ------------------------------------------------------ */

/* With vnrt_session_desc.ep_simulate_ranks: the routed experts of `layer` in the last run,
 * i32 [T, k] row-major into out[capacity] (capacity in ints, >= T·k); *out_tokens = T. Fails
 * when the session does not keep routes or no token was run yet. */
VNRT_API vnrt_status vnrt_session_routes(const vnrt_session *session, int32_t layer, int32_t *out,
                                         size_t capacity, int64_t *out_tokens);

/* With vnrt_session_desc.ep_simulate_ranks: the expert-parallel bookkeeping over every run so
 * far (per rank: bytes it would send in dispatch and combine) as text into buf[capacity], like
 * vnrt_model_plan_text. */
VNRT_API vnrt_status vnrt_session_ep_text(const vnrt_session *session, char *buf, size_t capacity,
                                          size_t *out_length);

/* The scale-out model of the config in dir over `ranks` devices (weights per device, all-to-all
 * bytes per token per layer by the formula, the link bandwidth to hide them) and a synthetic
 * uniform-routing run of `tokens` tokens (0: 4096) through the same bookkeeping, as text, like
 * vnrt_model_plan_text (dir needs only config.json). */
VNRT_API vnrt_status vnrt_model_scale_text(const char *dir, int32_t ranks, int64_t tokens,
                                           char *buf, size_t capacity, size_t *out_length);

/* Runs the routed experts [first, first + count) of `layer` on `rows` rows: y[r] = Σ_i
 * weights[r, i] · expert_{experts[r, i]}(x[r]) as moe_ffn computes it (in the model's
 * numerics), where every id lies in [first, first + count) (global ids). Only that slice of the
 * layer's experts is bound to the device (a plan per layer, row count and slice, cached). x and
 * y are [rows, C] f32, experts and weights [rows, k]. rows 0 is a no-op. */
VNRT_API vnrt_status vnrt_model_moe_experts(vnrt_model *model, int32_t layer, int32_t first,
                                            int32_t count, const float *x, const int32_t *experts,
                                            const float *weights, int64_t rows, int32_t k,
                                            float *y);

/* ---- Sampling -------------------------------------------------------------------------- */

typedef struct vnrt_sampler_desc {
  size_t size;       /* sizeof(vnrt_sampler_desc), or 0 (vnrt.h: sized structs) */
  float temperature; /* 0: greedy (the largest logit; ties: the lowest id) */
  int32_t top_k;     /* keep the k most likely ids; 0: all */
  float top_p;       /* keep the smallest most-likely set whose mass reaches top_p; 0 or 1: all */
  uint64_t seed;     /* seeds *state when *state is 0 */
} vnrt_sampler_desc;

/* Picks the next token from logits[vocab]. Greedy when temperature is 0 (no state needed;
 * state may be NULL). Otherwise, in this order:
 *   1. p_i = softmax(logits / temperature) (max-subtracted, in double);
 *   2. top-k: keep the top_k largest p_i (ties: lower id first), when top_k > 0;
 *   3. top-p: of those, sorted by p descending, keep the shortest prefix whose renormalised
 *      mass is >= top_p (at least one id), when 0 < top_p < 1;
 *   4. renormalise and draw u in [0, 1) from *state, take the first id whose cumulative mass
 *      exceeds u·total (in the sorted order).
 * The PRNG is splitmix64 on the 64-bit *state: state += 0x9E3779B97F4A7C15, then the splitmix64
 * finaliser; u = (z >> 11) · 2^-53. A *state of 0 is first set to seed (or 1 if seed is 0), so
 * the same seed gives the same tokens. A NaN logit, an infinite largest logit, vocab < 1, a
 * negative top_k or temperature, or top_p outside [0, 1] fails with
 * VNRT_ERROR_INVALID_ARGUMENT. */
VNRT_API vnrt_status vnrt_sample(const float *logits, int64_t vocab, const vnrt_sampler_desc *desc,
                                 uint64_t *state, int32_t *out_id);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_MODEL_H_ */
