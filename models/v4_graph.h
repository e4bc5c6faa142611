/* The DeepSeek-V4 forward graph (docs/deepseek-v4.md, "Forward pass"), built on the public graph
 * API for T tokens at positions pos0 … pos0+T−1 of one sequence. */
#ifndef VNRT_MODELS_V4_GRAPH_H_
#define VNRT_MODELS_V4_GRAPH_H_

#include <stddef.h>
#include <stdint.h>

#include "v4_config.h"
#include "vnrt/vnrt.h"

/* Names of the run-time inputs: ids [T] i32, pos [T] i32 (pos0 + t), pos0 [1] i32. The output
 * is "logits" [1, vocab] f32: the logits of the last token. */
#define VN_V4_IN_IDS "ids"
#define VN_V4_IN_POS "pos"
#define VN_V4_IN_POS0 "pos0"
#define VN_V4_OUT_LOGITS "logits"

/* Params that are not checkpoint tensors but made from them by the loader: per layer,
 * "layers.N.ffn.experts.gate_up" (+ ".scale"), "layers.N.ffn.experts.down" (+ ".scale")
 * (vn_checkpoint_pack_experts) and "layers.N.ffn.gate.tid2eid" as i32 (vn_checkpoint_tid2eid).
 * Every other param is named and typed as its checkpoint tensor. */
#define VN_V4_EXPERTS_GATE_UP "ffn.experts.gate_up"
#define VN_V4_EXPERTS_DOWN "ffn.experts.down"

/* Engram (cfg->engram.n_layers > 0): the state holding the last N - 1 token ids (i32 [N - 1];
 * a new sequence's is engram_pad_id, which the session sets), and the param of an Engram
 * layer's table row offsets ("layers.N.engram.offsets", i32 [heads], cfg->engram.offsets). */
#define VN_V4_ENGRAM_HIST "engram.ngram_hist"
#define VN_V4_ENGRAM_OFFSETS "engram.offsets"

typedef struct vn_v4_graph_options {
  int64_t tokens;      /* T >= 1 */
  int64_t max_context; /* positions the states hold; >= 1 */
  int f32_numerics;    /* nonzero: VNRT_NUMERICS_F32 (no R(), act_quant, FQ8, FQ4) */
  /* Nonzero: every layer's routed experts [T, k] i32 are outputs too, named
   * vn_v4_route_output_name(layer) (the expert-parallel bookkeeping reads them). */
  int route_outputs;
  /* Nonzero, for vn_v4_graph_build_segments: each layer's shared expert is a piece of its own
   * (see there), so that it can run while the exchange is in flight. */
  int shared_apart;
} vn_v4_graph_options;

/* The name of layer's route output ("lN.ffn.route.1") into buf[size]. */
void vn_v4_route_output_name(int32_t layer, char *buf, size_t size);

/* Builds the graph. States (all f32, zero for a new sequence): per layer "layers.N.attn.ring"
 * [sliding_window, D]; with ratio != 0 "layers.N.attn.comp" [max(1, max_context / ratio), D]
 * and "layers.N.attn.cstate_a/_z" [c·ratio, c·D]; with ratio 4 "layers.N.attn.icomp"
 * [max(1, max_context / 4), Di] and "layers.N.attn.istate_a/_z" [8, 2·Di]; with Engram
 * VN_V4_ENGRAM_HIST and per Engram layer "layers.N.engram.conv_state" [(K-1)·dilation, n, C].
 * Every state takes
 * its new value after a run. On failure err names the node. */
vnrt_status vn_v4_graph_build(vnrt_context *ctx, const vn_v4_config *cfg,
                              const vn_v4_graph_options *opt, vnrt_graph **out_graph, char *err,
                              size_t err_size);

/* Expert parallel (docs/scale-out.md): the graph cut at every MoE layer into num_layers + 1
 * segments, without the routed experts. Segment s (s < L) ends at layer s's router and shared
 * expert and outputs, under the names below, the streams X, the mHC post/comb of the ffn site,
 * the MoE input x [T, C] f32, the route weights [T, k] f32 and experts [T, k] i32 and the
 * shared expert's output ys [T, C]. Segment s > 0 takes X, post, comb, ys as inputs named
 * like them with VN_V4_SEG_IN appended, and the routed experts' output yr [T, C] f32
 * (VN_V4_SEG_YR), and goes on from ffn.sum; the last
 * one outputs the logits. Every segment has the inputs ids, pos, pos0 and its layer's states. */
#define VN_V4_SEG_X "ep.X"
#define VN_V4_SEG_POST "ep.post"
#define VN_V4_SEG_COMB "ep.comb"
#define VN_V4_SEG_HF "ep.x"
#define VN_V4_SEG_W "ep.weights"
#define VN_V4_SEG_E "ep.experts"
#define VN_V4_SEG_YS "ep.ys"
#define VN_V4_SEG_YR "ep.yr"
#define VN_V4_SEG_IN ".in"
#define VN_V4_SEG_VALUES 7 /* X, post, comb, x, weights, experts, ys */

/* With vn_v4_graph_options.shared_apart, segment s does not compute ys: layer i's shared
 * expert is the graph segs[vn_v4_segment_count(cfg) + i] (segs then holds that many + L),
 * whose input VN_V4_SEG_HF VN_V4_SEG_IN is the MoE input x and whose output is
 * VN_V4_SEG_YS, the ys that segment i + 1 takes as before (so ffn.sum adds yr + ys as in one
 * graph). */
typedef struct vn_v4_segment_types {
  vnrt_tensor_type t[VN_V4_SEG_VALUES]; /* in the order of VN_V4_SEG_VALUES */
} vn_v4_segment_types;

/* Engram under expert parallel: the tables are sharded by row across the ranks, so no segment
 * reads one. A model with Engram layers gets one more segment, segs[L + 1], run before
 * segment 0: the hash segment. It holds the n-gram history state (VN_V4_ENGRAM_HIST) and
 * outputs, for every Engram layer N, the hashed rows ngram_hash gives, "ep.engram.idx.N"
 * i32 [T, H] (per head, before the table offsets): they depend only on the token ids and the
 * history, so they are known before layer 0. Segment N (the one holding layer N's Engram
 * block) then takes the fetched rows as the input "ep.engram.rows.N" bf16 [T, H, Dh] in place
 * of engram_lookup (docs/scale-out.md, "Engram"). */
#define VN_V4_SEG_ENGRAM_IDX "ep.engram.idx"
#define VN_V4_SEG_ENGRAM_ROWS "ep.engram.rows"

/* The segments vn_v4_graph_build_segments builds: L + 1, and one more with Engram. */
int32_t vn_v4_segment_count(const vn_v4_config *cfg);

/* Builds the vn_v4_segment_count segments into segs (all or none on failure) and the types of
 * the values a segment hands on. */
vnrt_status vn_v4_graph_build_segments(vnrt_context *ctx, const vn_v4_config *cfg,
                                       const vn_v4_graph_options *opt, vnrt_graph **segs,
                                       vn_v4_segment_types *types, char *err, size_t err_size);

/* The routed experts of one layer alone, for the rows an expert-parallel rank serves: inputs
 * VN_V4_EXP_X [rows, C] f32, VN_V4_EXP_IDS [rows, k] i32 (in [0, n_experts)), VN_V4_EXP_W
 * [rows, k] f32; params named as the layer's packed experts but holding n_experts of them (a
 * contiguous slice of the packs); one output, "lN.ffn.routed" [rows, C] f32. */
#define VN_V4_EXP_X "x"
#define VN_V4_EXP_IDS "experts"
#define VN_V4_EXP_W "weights"
vnrt_status vn_v4_graph_build_experts(vnrt_context *ctx, const vn_v4_config *cfg, int32_t layer,
                                      int64_t rows, int32_t k, int32_t n_experts, int f32_numerics,
                                      vnrt_graph **out_graph, char *err, size_t err_size);

#endif /* VNRT_MODELS_V4_GRAPH_H_ */
