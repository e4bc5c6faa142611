#!/usr/bin/python3
"""Writes a small random DeepSeek-V4 checkpoint in DeepSeek's real layout (docs/deepseek-v4.md
"Checkpoint"), for testing tests/models/v4_ref.py: config.json, model.safetensors.index.json
and shards with bare names, FP8 (F8_E4M3 + 128x128 F8_E8M0 scales), packed FP4 experts (I8 +
1x32 F8_E8M0 scales), BF16, F32 and I64 tid2eid, plus a few mtp.* tensors a loader must skip.

usage: make_tiny_ckpt.py --out DIR [--seed N]
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import v4_ref  # noqa: E402  (the codecs' value tables and exact pow2 scales)

CONFIG = {
    "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
    "vocab_size": 1024, "bos_token_id": 0, "eos_token_id": 1,
    "hidden_size": 256, "num_hidden_layers": 4, "compress_ratios": [0, 4, 128, 4, 0],
    "num_hash_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "qk_rope_head_dim": 64, "q_lora_rank": 128,
    "o_groups": 2, "o_lora_rank": 128, "sliding_window": 128,
    "rope_theta": 10000, "compress_rope_theta": 160000,
    "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536,
                     "beta_fast": 32, "beta_slow": 1},
    "max_position_embeddings": 1048576,
    "index_n_heads": 4, "index_head_dim": 128, "index_topk": 8,
    "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1,
    "moe_intermediate_size": 128, "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc",
    "norm_topk_prob": True, "routed_scaling_factor": 1.5, "swiglu_limit": 10.0,
    "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "rms_norm_eps": 1e-6,
    "num_nextn_predict_layers": 1, "expert_dtype": "fp4", "hidden_act": "silu",
    "tie_word_embeddings": False, "attention_bias": False, "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
}


def to_bf16_bits(x):
    """f32 -> bf16 bits, round to nearest even."""
    return (v4_ref.round_bf16(np.asarray(x, np.float32)).view(np.uint32) >> 16).astype(np.uint16)


def quant_codes(y, table, sign_bit):
    """Codes of y (already divided by its scale): nearest level, ties to the even code."""
    code = v4_ref.encode_nearest(np.minimum(np.abs(y), table[-1]), table)
    return (code | np.where(y < 0, sign_bit, 0)).astype(np.uint8)


def quant_fp8(w):
    """Per 128x128 block: s = 2^ceil(log2(max(amax,1e-4)/448)), codes e4m3(W/s)."""
    R, C = w.shape
    br, bc = (R + 127) // 128, (C + 127) // 128
    codes = np.zeros((R, C), np.uint8)
    scale = np.zeros((br, bc), np.uint8)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].astype(np.float64)
            s = v4_ref.pow2_scale(np.abs(blk).max(), 1e-4, 448.0)
            codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = \
                quant_codes(blk / s, v4_ref.E4M3_POS, 0x80)
            scale[i, j] = int(np.log2(s)) + 127
    return codes, scale


def quant_fp4(w):
    """Per 1x32 group: s = 2^ceil(log2(max(amax,6*2^-126)/6)); two e2m1 codes a byte, the even
    column in the low nibble."""
    R, C = w.shape
    g = w.astype(np.float64).reshape(R, C // 32, 32)
    s = v4_ref.pow2_scale(np.abs(g).max(-1, keepdims=True), 6.0 * 2.0 ** -126, 6.0)
    codes = quant_codes(g / s, v4_ref.E2M1_POS, 8).reshape(R, C)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, (np.log2(s[..., 0]).astype(np.int64) + 127).astype(np.uint8)


class Writer:
    """Collects tensors per shard, then writes shards and the index."""

    def __init__(self):
        self.shards = []

    def new_shard(self):
        self.shards.append([])

    def add(self, name, dtype, arr):
        self.shards[-1].append((name, dtype, np.ascontiguousarray(arr)))

    def bf16(self, name, x):
        self.add(name, "BF16", to_bf16_bits(x))

    def f32(self, name, x):
        self.add(name, "F32", np.asarray(x, np.float32))

    def fp8(self, name, w):
        c, s = quant_fp8(w)
        self.add(name + ".weight", "F8_E4M3", c)
        self.add(name + ".scale", "F8_E8M0", s)

    def fp4(self, name, w):
        c, s = quant_fp4(w)
        self.add(name + ".weight", "I8", c)
        self.add(name + ".scale", "F8_E8M0", s)

    def write(self, out):
        os.makedirs(out, exist_ok=True)
        n = len(self.shards)
        wmap, total = {}, 0
        for k, shard in enumerate(self.shards):
            fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
            hdr, off = {"__metadata__": {"format": "pt"}}, 0
            for name, dt, a in shard:
                hdr[name] = {"dtype": dt, "shape": list(a.shape),
                             "data_offsets": [off, off + a.nbytes]}
                off += a.nbytes
                wmap[name] = fname
            total += off
            hb = json.dumps(hdr).encode()
            hb += b" " * (-len(hb) % 8)
            with open(os.path.join(out, fname), "wb") as f:
                f.write(len(hb).to_bytes(8, "little"))
                f.write(hb)
                for _, _, a in shard:
                    f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=1)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(CONFIG, f, indent=1)


def make(out, seed=1):
    """Draws master weights and writes them in the real formats."""
    c = CONFIG
    rng = np.random.default_rng(seed)
    C, H, D = c["hidden_size"], c["num_attention_heads"], c["head_dim"]
    n, V, E, k = c["hc_mult"], c["vocab_size"], c["n_routed_experts"], c["num_experts_per_tok"]
    Rq, G, Ro = c["q_lora_rank"], c["o_groups"], c["o_lora_rank"]
    Hi, Di, F = c["index_n_heads"], c["index_head_dim"], c["moe_intermediate_size"]
    lin = lambda o, i: rng.normal(0, i ** -0.5, (o, i))
    normw = lambda d: 1 + rng.normal(0, 0.1, d)
    w = Writer()

    def hc(name, rows):
        w.f32(name + "_fn", rng.normal(0, 0.5 * (n * C) ** -0.5, (rows, n * C)))
        w.f32(name + "_base", rng.normal(0, 0.5, rows))
        w.f32(name + "_scale", rng.uniform(0.5, 1.5, 3 if rows > n else 1))

    def compressor(p, ratio, d):
        co = 2 if ratio == 4 else 1
        w.bf16(p + "wkv.weight", lin(co * d, C))
        w.bf16(p + "wgate.weight", lin(co * d, C))
        w.f32(p + "ape", rng.normal(0, 0.5, (ratio, co * d)))
        w.bf16(p + "norm.weight", normw(d))

    w.new_shard()
    w.bf16("embed.weight", rng.normal(0, 1, (V, C)))
    for i in range(c["num_hidden_layers"]):
        w.new_shard()
        p, ratio = f"layers.{i}.", c["compress_ratios"][i]
        hc(p + "hc_attn", (n + 2) * n)
        hc(p + "hc_ffn", (n + 2) * n)
        w.bf16(p + "attn_norm.weight", normw(C))
        w.bf16(p + "ffn_norm.weight", normw(C))
        w.fp8(p + "attn.wq_a", lin(Rq, C))
        w.bf16(p + "attn.q_norm.weight", normw(Rq))
        w.fp8(p + "attn.wq_b", lin(H * D, Rq))
        w.fp8(p + "attn.wkv", lin(D, C))
        w.bf16(p + "attn.kv_norm.weight", normw(D))
        w.f32(p + "attn.attn_sink", rng.normal(0, 1, H))
        w.fp8(p + "attn.wo_a", lin(G * Ro, H * D // G))
        w.fp8(p + "attn.wo_b", lin(C, G * Ro))
        if ratio:
            compressor(p + "attn.compressor.", ratio, D)
        if ratio == 4:
            w.fp8(p + "attn.indexer.wq_b", lin(Hi * Di, Rq))
            w.bf16(p + "attn.indexer.weights_proj.weight", lin(Hi, C))
            compressor(p + "attn.indexer.compressor.", 4, Di)
        w.bf16(p + "ffn.gate.weight", lin(E, C))
        if i < c["num_hash_layers"]:
            t2e = np.stack([rng.permutation(E)[:k] for _ in range(V)]).astype(np.int64)
            w.add(p + "ffn.gate.tid2eid", "I64", t2e)
        else:
            w.f32(p + "ffn.gate.bias", rng.normal(0, 0.1, E))
        for e in range(E):
            w.fp4(p + f"ffn.experts.{e}.w1", lin(F, C))
            w.fp4(p + f"ffn.experts.{e}.w3", lin(F, C))
            w.fp4(p + f"ffn.experts.{e}.w2", lin(C, F))
        w.fp8(p + "ffn.shared_experts.w1", lin(F, C))
        w.fp8(p + "ffn.shared_experts.w3", lin(F, C))
        w.fp8(p + "ffn.shared_experts.w2", lin(C, F))
    w.new_shard()
    w.bf16("head.weight", lin(V, C))
    w.bf16("norm.weight", normw(C))
    hc("hc_head", n)
    w.new_shard()  # MTP: present in real checkpoints, ignored by the forward pass
    w.fp8("mtp.0.e_proj", lin(C, C))
    w.fp8("mtp.0.h_proj", lin(C, C))
    w.bf16("mtp.0.enorm.weight", normw(C))
    w.bf16("mtp.0.hnorm.weight", normw(C))
    w.bf16("mtp.0.norm.weight", normw(C))
    w.write(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    make(a.out, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
