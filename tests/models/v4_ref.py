#!/usr/bin/python3
"""An independent numpy oracle of the DeepSeek-V4 forward pass (docs/deepseek-v4.md).

Test tooling, not product code: written from docs/deepseek-v4.md and docs/ops.md only, so that
vnrt's model library can be compared with it. It reads a checkpoint in DeepSeek's own layout
with its own safetensors reader and format decoders, runs the whole token sequence in one
causal prefill pass (pos0 = 0, empty ring and states) and writes logits.

Numerics: tensors between ops are float32; inside an op the arithmetic is float64 (dot
products accumulate in float64) and the op's result is rounded once to float32, except where
docs/ops.md fixes an f32 algorithm bit for bit (hadamard's butterfly, fake_quant's scales).
"ref" numerics apply R() (bf16, round to nearest even) and the e4m3/e2m1 fake quantizations at
the points docs/deepseek-v4.md names; "f32" numerics make all of them the identity.

usage: v4_ref.py --model DIR --ids "0 5 7" --numerics ref|f32 [--from P] --out logits.npy
                 [--greedy N]
  writes float32 [L, vocab]: the logits of positions P-1 ... len(ids)-1 (default P = len(ids));
  with --greedy N it appends N argmax tokens one at a time (recomputing the whole pass),
  prints "generated: i j k" and writes one row per step (positions len(ids)-1 ...).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

F32 = np.float32
F64 = np.float64


class RefError(Exception):
    """A bad checkpoint or argument, reported as one clear line."""


# ---------------------------------------------------------------------------------------------
# Format decoders (docs/ops.md "Quantized weights", Dtypes)


def e4m3_table():
    """Values of all 256 e4m3fn codes: bias 7, exponent 0 subnormal m*2^-9, 0x7F/0xFF NaN."""
    out = np.empty(256, F64)
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        v = m * 2.0 ** -9 if e == 0 else (1.0 + m / 8.0) * 2.0 ** (e - 7)
        if e == 15 and m == 7:
            v = math.nan
        out[b] = -v if b & 0x80 else v
    return out


E2M1_LEVELS = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], F64)


def e2m1_table():
    """Values of the 16 e2m1 nibbles: bit 3 the sign, bits 0-2 index the levels."""
    return np.concatenate([E2M1_LEVELS, -E2M1_LEVELS])


E4M3 = e4m3_table()
E2M1 = e2m1_table()
E4M3_POS = E4M3[:127]  # codes 0..126: the non-negative finite values, ascending
E2M1_POS = E2M1_LEVELS


def e8m0_to_f64(e):
    """e8m0 scale codes -> 2^(e-127); 255 is NaN (docs/ops.md "Dtypes")."""
    e = np.asarray(e).astype(np.int64)
    v = np.ldexp(1.0, e - 127)
    return np.where(e == 255, math.nan, v)


def bf16_to_f32(u16):
    """bf16 bits -> f32: the bits are the upper half of an f32."""
    return (np.asarray(u16).astype(np.uint32) << 16).view(F32)


def round_bf16(x):
    """R(): round f32 to the nearest bf16 (ties to even) on the f32 bits; result is f32."""
    x = np.ascontiguousarray(x, dtype=F32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(F32)
    return np.where(np.isnan(x), x, r).astype(F32)


# ---------------------------------------------------------------------------------------------
# Safetensors reader (8-byte LE header length, JSON header, data section)

ST_DTYPES = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32, "F8_E4M3": np.uint8,
             "F8_E8M0": np.uint8, "I8": np.uint8, "I64": np.int64, "I32": np.int32}


def read_safetensors_header(path):
    """Returns (header dict without __metadata__, data section offset) of one shard."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise RefError(f"{path}: too short for a safetensors header")
        n = int.from_bytes(raw, "little")
        size = os.path.getsize(path)
        if n > size - 8:
            raise RefError(f"{path}: header length {n} exceeds the file size {size}")
        try:
            hdr = json.loads(f.read(n))
        except ValueError as e:
            raise RefError(f"{path}: bad JSON header: {e}")
    hdr.pop("__metadata__", None)
    return hdr, 8 + n


class Checkpoint:
    """Tensors of a checkpoint directory by bare name, read lazily through the index."""

    def __init__(self, path):
        self.dir = path
        try:
            with open(os.path.join(path, "config.json")) as f:
                self.cfg = json.load(f)
            with open(os.path.join(path, "model.safetensors.index.json")) as f:
                self.weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise RefError(f"{path}: cannot read config.json / index: {e}")
        self.headers = {}

    def _shard(self, fname):
        if fname not in self.headers:
            p = os.path.join(self.dir, fname)
            self.headers[fname] = (p,) + read_safetensors_header(p)
        return self.headers[fname]

    def has(self, name):
        return name in self.weight_map

    def raw(self, name):
        """(dtype string, numpy array of the stored elements) of tensor `name`."""
        if name not in self.weight_map:
            raise RefError(f"tensor {name} is missing from the checkpoint")
        path, hdr, base = self._shard(self.weight_map[name])
        if name not in hdr:
            raise RefError(f"tensor {name} is not in shard {path}")
        ent = hdr[name]
        dt = ent["dtype"]
        if dt not in ST_DTYPES:
            raise RefError(f"tensor {name}: unsupported dtype {dt}")
        shape = tuple(ent["shape"])
        b, e = ent["data_offsets"]
        npdt = np.dtype(ST_DTYPES[dt]).newbyteorder("<")
        if e - b != int(np.prod(shape, dtype=np.int64)) * npdt.itemsize:
            raise RefError(f"tensor {name}: {e - b} bytes do not fit {dt}{list(shape)}")
        arr = np.memmap(path, dtype=npdt, mode="r", offset=base + b, shape=shape) \
            if e > b else np.zeros(shape, npdt)
        return dt, np.array(arr)

    def float(self, name):
        """A BF16/F32 tensor widened exactly to f32."""
        dt, a = self.raw(name)
        if dt == "BF16":
            return bf16_to_f32(a)
        if dt in ("F32", "F16"):
            return a.astype(F32)
        raise RefError(f"tensor {name}: expected BF16 or F32, found {dt}")

    def weight(self, name):
        """A linear weight dequantized exactly to f32 (docs/ops.md "The weight operand")."""
        dt, a = self.raw(name + ".weight")
        if dt in ("BF16", "F32", "F16"):
            return self.float(name + ".weight")
        sdt, s = self.raw(name + ".scale")
        if sdt != "F8_E8M0":
            raise RefError(f"tensor {name}.scale: expected F8_E8M0, found {sdt}")
        if dt == "F8_E4M3":
            return dequant_fp8(a, s, name)
        if dt == "I8":
            return dequant_fp4(a, s, name)
        raise RefError(f"tensor {name}.weight: unsupported weight dtype {dt}")


def dequant_fp8(codes, scale, name="w"):
    """W[r][c] = e4m3(code) * 2^(scale[r/128][c/128] - 127) (docs/ops.md, block 128x128)."""
    R, C = codes.shape
    need = ((R + 127) // 128, (C + 127) // 128)
    if scale.shape != need:
        raise RefError(f"{name}.scale has dims {list(scale.shape)}, needs {list(need)}")
    s = np.repeat(np.repeat(e8m0_to_f64(scale), 128, 0), 128, 1)[:R, :C]
    return (E4M3[codes] * s).astype(F32)


def dequant_fp4(packed, scale, name="w"):
    """Packed e2m1 [R, C/2] (even column in the low nibble) times 2^(scale[r][c/32]-127)."""
    R, half = packed.shape
    C = 2 * half
    if scale.shape != (R, (C + 31) // 32):
        raise RefError(f"{name}.scale has dims {list(scale.shape)}, needs {[R, (C + 31) // 32]}")
    codes = np.empty((R, C), np.uint8)
    codes[:, 0::2] = packed & 0xF
    codes[:, 1::2] = packed >> 4
    s = np.repeat(e8m0_to_f64(scale), 32, 1)[:, :C]
    return (E2M1[codes] * s).astype(F32)


# ---------------------------------------------------------------------------------------------
# Quantization ops (docs/ops.md "Quantization support", "Quantized weights")


def encode_nearest(v, table):
    """Indices into the ascending non-negative `table` nearest to v >= 0 (v <= table max);
    ties go to the even index (= the even code, RNE)."""
    hi = np.searchsorted(table, v, side="left")
    lo = np.maximum(hi - 1, 0)
    dlo, dhi = v - table[lo], table[hi] - v
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    return np.where(pick_hi, hi, lo)


def pow2_scale(amax, floor, fmt_max):
    """s = 2^ceil(log2(max(amax, floor) / fmt_max)), exactly (the smallest power of two with
    m / s <= fmt_max)."""
    m = np.maximum(amax.astype(F64), floor)
    k = np.ceil(np.log2(m / fmt_max))
    k = np.where(m > fmt_max * np.exp2(k), k + 1, k)
    k = np.where(m <= fmt_max * np.exp2(k - 1), k - 1, k)
    return np.exp2(k)


def fake_quant(x, fmt, block, start=0, length=0):
    """docs/ops.md fake_quant: per row, channels [start, start+len) in blocks; each value
    becomes dec(enc(x/s))*s, RNE, saturating; other channels pass through."""
    x = np.asarray(x, F32)
    D = x.shape[-1]
    length = length or D - start
    if start < 0 or start + length > D or length % block:
        raise RefError(f"fake_quant: range [{start}, {start + length}) / block {block} "
                       f"does not fit {D} channels")
    table, floor, fmax = (E4M3_POS, 1e-4, 448.0) if fmt == "e4m3" else \
        (E2M1_POS, 6.0 * 2.0 ** -126, 6.0)
    seg = x[..., start:start + length].astype(F64).reshape(x.shape[:-1] + (length // block, block))
    s = pow2_scale(np.abs(seg).max(-1, keepdims=True), floor, fmax)
    y = seg / s
    code = encode_nearest(np.minimum(np.abs(y), fmax), table)
    q = np.copysign(table[code], y) * s
    out = x.copy()
    out[..., start:start + length] = q.reshape(x.shape[:-1] + (length,)).astype(F32)
    return out


def hadamard(x):
    """docs/ops.md hadamard: in-place butterfly u,v -> u+v, u-v with stride 1, 2, ..., D/2 in
    f32, then one scale by D^-1/2."""
    x = np.array(x, F32)
    D = x.shape[-1]
    if D & (D - 1):
        raise RefError(f"hadamard: D = {D} is not a power of 2")
    h = 1
    while h < D:
        y = x.reshape(x.shape[:-1] + (D // (2 * h), 2, h))
        u, v = y[..., 0, :].copy(), y[..., 1, :].copy()
        y[..., 0, :] = u + v
        y[..., 1, :] = u - v
        x = y.reshape(x.shape)
        h *= 2
    return (x * F32(D ** -0.5)).astype(F32)


# ---------------------------------------------------------------------------------------------
# Float ops (docs/ops.md)


def matmul_t(x, w):
    """x[..., K] . w[N, K]^T accumulated in float64, rounded to f32 (docs/ops.md linear)."""
    return np.matmul(np.asarray(x, F64), np.asarray(w, F64).T).astype(F32)


def rms_norm(x, w=None, eps=1e-6):
    """docs/ops.md rms_norm: x * rsqrt(mean(x^2) + eps) * w (no w: unweighted)."""
    x64 = np.asarray(x, F64)
    y = x64 / np.sqrt(np.mean(x64 * x64, -1, keepdims=True) + eps)
    if w is not None:
        y = y * np.asarray(w, F64)
    return y.astype(F32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    """docs/ops.md softplus: x if x>20, e^x if x<-20, else log(1+e^x)."""
    x = np.asarray(x, F64)
    mid = np.log1p(np.exp(np.clip(x, -20, 20)))
    return np.where(x > 20, x, np.where(x < -20, np.exp(np.minimum(x, 0)), mid))


def swiglu(g, u, limit):
    """docs/ops.md swiglu: silu(min(g, limit)) * clamp(u, -limit, limit); limit 0 = no clamp."""
    g, u = np.asarray(g, F64), np.asarray(u, F64)
    if limit:
        g, u = np.minimum(g, limit), np.clip(u, -limit, limit)
    return (g * sigmoid(g) * u).astype(F32)


def yarn_range(theta, dims, orig_ctx, beta_fast=32.0, beta_slow=1.0):
    """YaRN's ramp ends (docs/ops.md rope, extended): corr(b) = dims*ln(L/(b*2pi))/(2 ln theta),
    low = max(floor(corr(beta_fast)), 0), high = min(ceil(corr(beta_slow)), dims-1)."""
    corr = lambda b: dims * math.log(orig_ctx / (b * 2 * math.pi)) / (2 * math.log(theta))
    low = max(math.floor(corr(beta_fast)), 0)
    high = min(math.ceil(corr(beta_slow)), dims - 1)
    return low, (high + 0.001 if low == high else high)


def yarn_freqs(theta, dims, factor=None, orig_ctx=None, beta_fast=32.0, beta_slow=1.0):
    """Per-pair frequencies of docs/ops.md rope (extended): f_i = theta^(-2i/dims), blended to
    f_i/factor over the YaRN ramp [low, high]; no magnitude factor."""
    i = np.arange(dims // 2, dtype=F64)
    f = theta ** (-2.0 * i / dims)
    if factor is None:
        return f
    low, high = yarn_range(theta, dims, orig_ctx, beta_fast, beta_slow)
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
    return f * (1 - ramp) + (f / factor) * ramp


def rope(x, pos, freqs, inverse=False):
    """docs/ops.md rope: rotate the trailing 2*len(freqs) channels of x[T, H, D], interleaved
    pairs (2i, 2i+1), angle pos*f_i (negated when inverse)."""
    x = np.array(x, F32)
    r = 2 * len(freqs)
    a = np.asarray(pos, F64)[:, None] * freqs[None, :]
    if inverse:
        a = -a
    c, s = np.cos(a)[:, None, :], np.sin(a)[:, None, :]
    x1 = x[..., x.shape[-1] - r::2].astype(F64)
    x2 = x[..., x.shape[-1] - r + 1::2].astype(F64)
    x[..., x.shape[-1] - r::2] = (x1 * c - x2 * s).astype(F32)
    x[..., x.shape[-1] - r + 1::2] = (x1 * s + x2 * c).astype(F32)
    return x


# ---------------------------------------------------------------------------------------------
# mHC (docs/ops.md "mHC")


def sinkhorn(L, iters, eps):
    """Row softmax + eps, divide by column sums (+eps), then iters-1 x (rows, columns)."""
    L = np.asarray(L, F64)
    M = np.exp(L - L.max(-1, keepdims=True))
    M = M / M.sum(-1, keepdims=True) + eps
    M = M / (M.sum(-2, keepdims=True) + eps)
    for _ in range(iters - 1):
        M = M / (M.sum(-1, keepdims=True) + eps)
        M = M / (M.sum(-2, keepdims=True) + eps)
    return M.astype(F32)


def hc_mix(X, fn, norm_eps):
    """(fn . f) * rsqrt(mean(f^2) + norm_eps) with f = X[t] flattened to n*C values."""
    f = np.asarray(X, F64).reshape(X.shape[0], -1)
    return (f @ np.asarray(fn, F64).T) / np.sqrt(np.mean(f * f, -1, keepdims=True) + norm_eps)


def hc_pre(X, fn, scale, base, iters, eps, norm_eps):
    """docs/ops.md hc_pre: returns x[T, C], post[T, n], comb[T, n, n]."""
    n = X.shape[1]
    mix = hc_mix(X, fn, norm_eps)
    sc, b = np.asarray(scale, F64), np.asarray(base, F64)
    pre = sigmoid(mix[:, :n] * sc[0] + b[:n]) + eps
    post = 2 * sigmoid(mix[:, n:2 * n] * sc[1] + b[n:2 * n])
    L = (mix[:, 2 * n:] * sc[2] + b[2 * n:]).reshape(-1, n, n)
    comb = sinkhorn(L, iters, eps)
    x = np.matmul(pre[:, None, :], np.asarray(X, F64))[:, 0]
    return x.astype(F32), post.astype(F32), comb


def hc_post(X, y, post, comb):
    """docs/ops.md hc_post: X'[t,k] = post[t,k]*y[t] + sum_j comb[t,j,k]*X[t,j] (transposed)."""
    out = np.asarray(post, F64)[:, :, None] * np.asarray(y, F64)[:, None, :] + \
        np.matmul(np.asarray(comb, F64).transpose(0, 2, 1), np.asarray(X, F64))
    return out.astype(F32)


def hc_head(X, fn, scale, base, eps, norm_eps):
    """docs/ops.md hc_head: w_j = sigmoid(mix_j*scale[0] + base[j]) + eps, x = sum_j w_j X[t,j]."""
    mix = hc_mix(X, fn, norm_eps)
    w = sigmoid(mix * F64(scale[0]) + np.asarray(base, F64)) + eps
    return np.matmul(w[:, None, :], np.asarray(X, F64))[:, 0].astype(F32)


# ---------------------------------------------------------------------------------------------
# DeepSeek-V4 attention ops (docs/ops.md "DeepSeek-V4 attention")


def kv_compress(a, z, ape, ratio, overlap):
    """docs/ops.md kv_compress for one run from pos0 = 0 with a zero state: one entry per
    window closed in [0, T), at entry_pos w*m. Returns (entries[Nc, d], entry_pos[Nc])."""
    a, z = np.asarray(a, F64), np.asarray(z, F64)
    T, m = a.shape[0], ratio
    zp = z + np.asarray(ape, F64)[np.arange(T) % m]
    nc = T // m
    d = a.shape[1] // (1 + overlap)
    out = np.zeros((nc, d), F64)
    for w in range(nc):
        if overlap:
            sa, sz = a[w * m:w * m + m, d:], zp[w * m:w * m + m, d:]
            if w > 0:
                sa = np.concatenate([a[w * m - m:w * m, :d], sa])
                sz = np.concatenate([zp[w * m - m:w * m, :d], sz])
        else:
            sa, sz = a[w * m:w * m + m], zp[w * m:w * m + m]
        p = np.exp(sz - sz.max(0))
        out[w] = (p * sa).sum(0) / p.sum(0)
    return out.astype(F32), np.arange(nc, dtype=np.int64) * m


def index_scores(q, k, w, pos, ratio):
    """docs/ops.md index_scores: s[t,j] = sum_h w[t,h] relu(q[t,h].k[j]) for j < (pos+1) div
    ratio, -inf for the others."""
    dots = np.matmul(np.asarray(q, F64), np.asarray(k, F64).T)  # [T, Hi, S]
    s = np.matmul(np.asarray(w, F64)[:, None, :], np.maximum(dots, 0))[:, 0].astype(F32)
    vis = np.arange(k.shape[0])[None, :] < ((np.asarray(pos) + 1) // ratio)[:, None]
    return np.where(vis, s, F32(-np.inf))


def topk_fill(x, k, fill=-1):
    """docs/ops.md topk (extended): the k largest, descending, ties to the lower index; indices
    of -inf values become `fill`."""
    order = np.argsort(-np.asarray(x, F64), axis=-1, kind="stable")[..., :k]
    vals = np.take_along_axis(x, order, -1)
    return np.where(np.isneginf(vals), fill, order)


def sparse_attention(q, kv, sinks, window, comp=None, comp_mask=None):
    """docs/ops.md sparse_attention for a run from pos0 = 0: query t sees kv[j] for
    max(0, t-W+1) <= j <= t, and comp[w] where comp_mask[t, w]; K = V, sink in the
    denominator, scale 1/sqrt(D)."""
    T, H, D = q.shape
    t = np.arange(T)
    keys = np.asarray(kv, F64)
    mask = (t[None, :] <= t[:, None]) & (t[None, :] > t[:, None] - window)
    if comp is not None and comp.shape[0]:
        keys = np.concatenate([keys, np.asarray(comp, F64)])
        mask = np.concatenate([mask, comp_mask], 1)
    l = np.matmul(np.asarray(q, F64).transpose(1, 0, 2), keys.T) / math.sqrt(D)  # [H, T, S]
    l = np.where(mask[None], l, -np.inf)
    sk = np.asarray(sinks, F64)[:, None, None]
    M = np.maximum(l.max(-1, keepdims=True), sk)
    p = np.exp(l - M)
    den = p.sum(-1, keepdims=True) + np.exp(sk - M)
    o = np.matmul(p / den, keys).transpose(1, 0, 2)
    return o.astype(F32)


def grouped_linear(x, w, groups):
    """docs/ops.md grouped_linear: group g of x's channels times rows [gN, (g+1)N) of w."""
    K, N = x.shape[-1] // groups, w.shape[0] // groups
    return np.concatenate([matmul_t(x[..., g * K:(g + 1) * K], w[g * N:(g + 1) * N])
                           for g in range(groups)], -1)


# ---------------------------------------------------------------------------------------------
# MoE (docs/ops.md "MoE")


def route_weights(s, experts, scale):
    """w = s[experts]; w /= (sum w + 1e-20); w *= scale (norm = 1)."""
    w = np.take_along_axis(s, experts, -1)
    return (w / (w.sum(-1, keepdims=True) + 1e-20) * scale).astype(F32)


def moe_route(logits, bias, k, scale):
    """docs/ops.md moe_route with sqrt_softplus: select by s + bias, weigh by unbiased s."""
    s = np.sqrt(softplus(logits))
    sel = s + np.asarray(bias, F64)
    experts = np.argsort(-sel, axis=-1, kind="stable")[:, :k]
    return route_weights(s, experts, scale), experts


def moe_hash_route(logits, ids, tid2eid, scale):
    """docs/ops.md moe_hash_route: experts = tid2eid[ids], weights from sqrt_softplus scores."""
    s = np.sqrt(softplus(logits))
    experts = tid2eid[np.asarray(ids)]
    return route_weights(s, experts, scale), experts


def moe_ffn(x, experts, weights, w_gate_up, w_down, limit, act_quant):
    """docs/ops.md moe_ffn; with act_quant (Quantized weights): x and the routing weight times
    the swiglu output are fake-quantized to e4m3 per 128 before their products."""
    T, C = x.shape
    y = np.zeros((T, C), F64)
    xq = fake_quant(x, "e4m3", 128) if act_quant else x
    for e in np.unique(experts):
        tok, slot = np.nonzero(experts == e)
        F = w_gate_up[e].shape[0] // 2
        gu = matmul_t(xq[tok], w_gate_up[e])
        h = swiglu(gu[:, :F], gu[:, F:], limit)
        wt = weights[tok, slot][:, None]
        if act_quant:
            y_e = matmul_t(fake_quant((wt * h).astype(F32), "e4m3", 128), w_down[e])
        else:
            y_e = np.asarray(wt, F64) * matmul_t(h, w_down[e])
        np.add.at(y, tok, np.asarray(y_e, F64))
    return y.astype(F32)


# ---------------------------------------------------------------------------------------------
# Engram (docs/ops.md "Engram", docs/deepseek-v4.md "Engram")

M64 = (1 << 64) - 1


def splitmix64(state):
    """One splitmix64 step: (new state, value), 64-bit unsigned ints."""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def is_prime(v):
    if v < 2:
        return False
    d = 2
    while d * d <= v:
        if v % d == 0:
            return False
        d += 1
    return True


def engram_hash_params(layer_ids, max_n, heads, vocab_size, seed):
    """Per Engram layer: N odd multipliers and one distinct prime table size per head, the
    primes searched upward from engram_vocab_size across the layers in list order."""
    out, cand = [], vocab_size
    for layer in layer_ids:
        st = (seed + 10007 * layer) & M64
        mult = []
        for _ in range(max_n):
            st, v = splitmix64(st)
            mult.append((v >> 25) | 1)
        primes = []
        for _ in range(heads):
            while not is_prime(cand):
                cand += 1
            primes.append(cand)
            cand += 1
        out.append((mult, primes))
    return out


def ngram_hash(ids, hist, mult, primes, max_n, k):
    """idx[T, (N-1)K]: per order n and head h, XOR of tok(t-j) * mult[j] (wrapping int64),
    floor modulo primes[(n-2)K + h]; tok before ids[0] comes from hist."""
    toks = [int(x) for x in hist] + [int(x) for x in ids]
    T, base = len(ids), len(hist)
    idx = np.zeros((T, (max_n - 1) * k), np.int64)
    for t in range(T):
        for n in range(2, max_n + 1):
            mix = 0
            for j in range(n):
                mix ^= (toks[base + t - j] * mult[j]) & M64
            if mix >= 1 << 63:
                mix -= 1 << 64
            for h in range(k):
                c = (n - 2) * k + h
                idx[t, c] = mix % primes[c]
    return idx


def engram_gate(h, k, v, wh, wk, eps, sqrt_gate=True):
    """u[t, m] = sigmoid(g) v[t], g = <rms_norm(h[t,m], wh[m]), rms_norm(k[t,m], wk[m])> / sqrt(C)
    (signed square root when sqrt_gate)."""
    C = h.shape[-1]
    a = np.asarray(rms_norm(h, wh, eps), F64)
    b = np.asarray(rms_norm(k, wk, eps), F64)
    g = np.sum(a * b, -1) / math.sqrt(C)
    if sqrt_gate:
        g = np.sign(g) * np.sqrt(np.maximum(np.abs(g), 1e-6))
    return (sigmoid(g)[..., None] * np.asarray(v, F64)[:, None, :]).astype(F32)


def short_conv(u, w, wn, kernel, dilation, eps):
    """y = silu(causal dilated conv of rms_norm(u, wn) over an all-zero history) + u."""
    T, M, C = u.shape
    P = (kernel - 1) * dilation
    z = np.asarray(rms_norm(u, wn, eps), F64)
    Z = np.concatenate([np.zeros((P, M, C)), z], 0)
    wq = np.asarray(w, F64).reshape(M, C, kernel)
    acc = np.zeros((T, M, C))
    for i in range(kernel):
        s = P - (kernel - 1 - i) * dilation
        acc += wq[None, :, :, i] * Z[s:s + T]
    return (acc * sigmoid(acc) + np.asarray(u, F64)).astype(F32)


# ---------------------------------------------------------------------------------------------
# The model (docs/deepseek-v4.md "Forward pass")


class Model:
    """Config and dequantized weights of one checkpoint, and its forward pass."""

    def __init__(self, path, numerics):
        if numerics not in ("ref", "f32"):
            raise RefError(f"numerics must be ref or f32, not {numerics}")
        self.ref = numerics == "ref"
        self.ck = Checkpoint(path)
        c = self.ck.cfg
        # A checkpoint without quantization_config is a dequantized one (BF16 weights where the
        # quantized layout has FP8/FP4): the reference quantizes activations only in front of
        # FP8/FP4 weights, so act_quant is off there (docs/deepseek-v4.md "Loading").
        self.aq = self.ref and c.get("quantization_config") is not None
        try:
            self.C, self.nl = c["hidden_size"], c["num_hidden_layers"]
            self.H, self.D, self.r = c["num_attention_heads"], c["head_dim"], c["qk_rope_head_dim"]
            self.V, self.W = c["vocab_size"], c["sliding_window"]
            self.ratios = c["compress_ratios"]
            self.E, self.k = c["n_routed_experts"], c["num_experts_per_tok"]
            self.n_hash = c.get("num_hash_layers", 0)
            self.groups = c["o_groups"]
            self.n, self.hc_iters, self.hc_eps = c["hc_mult"], c["hc_sinkhorn_iters"], c["hc_eps"]
            self.eps = c["rms_norm_eps"]
            self.route_scale = c["routed_scaling_factor"]
            self.limit = c.get("swiglu_limit", 0.0) or 0.0
            self.Hi, self.Di, self.topk = c["index_n_heads"], c["index_head_dim"], c["index_topk"]
            self.theta, self.ctheta = c["rope_theta"], c["compress_rope_theta"]
        except KeyError as e:
            raise RefError(f"config.json: missing field {e}")
        if c.get("scoring_func", "sqrtsoftplus") != "sqrtsoftplus":
            raise RefError(f"config.json: scoring_func {c['scoring_func']} is not sqrtsoftplus")
        if len(self.ratios) < self.nl or any(x not in (0, 4, 128) for x in self.ratios[:self.nl]):
            raise RefError(f"config.json: compress_ratios {self.ratios} does not cover "
                           f"{self.nl} layers with ratios in {{0, 4, 128}}")
        ys = c.get("rope_scaling")
        self.freqs0 = yarn_freqs(self.theta, self.r)
        if ys:
            self.freqsc = yarn_freqs(self.ctheta, self.r, ys["factor"],
                                     ys["original_max_position_embeddings"],
                                     ys.get("beta_fast", 32), ys.get("beta_slow", 1))
        else:
            self.freqsc = yarn_freqs(self.ctheta, self.r)
        self.engram = {}
        lids = c.get("engram_layer_ids")
        if lids:
            self.e_n = c.get("engram_max_ngram_size", 3)
            self.e_k = c.get("engram_n_head_per_ngram", 8)
            self.e_kernel = c.get("engram_kernel_size", 4)
            self.e_dil = c.get("engram_dilation", self.e_n)
            self.e_pad = c.get("engram_pad_id", 0)
            hp = engram_hash_params(lids, self.e_n, (self.e_n - 1) * self.e_k,
                                    c.get("engram_vocab_size", 1009), c.get("engram_seed", 0))
            self.engram = dict(zip(lids, hp))
        self.cache = {}

    # weights, dequantized once (kept as float64 holding the exact f32 values)
    def w(self, name):
        if name not in self.cache:
            self.cache[name] = self.ck.weight(name).astype(F64)
        return self.cache[name]

    def f(self, name):
        if name not in self.cache:
            self.cache[name] = self.ck.float(name)
        return self.cache[name]

    def experts(self, i):
        """Layer i's routed experts as moe_ffn's w_gate_up[e] = [w1; w3] and w_down[e] = w2."""
        key = f"layers.{i}.experts"
        if key not in self.cache:
            p = f"layers.{i}.ffn.experts."
            gu = [np.concatenate([self.w(p + f"{e}.w1"), self.w(p + f"{e}.w3")]) for e in
                  range(self.E)]
            dn = [self.w(p + f"{e}.w2") for e in range(self.E)]
            for e in range(self.E):
                for s in ("w1", "w2", "w3"):
                    self.cache.pop(p + f"{e}.{s}", None)
            self.cache[key] = (gu, dn)
        return self.cache[key]

    def tid2eid(self, i):
        """Layer i's hash-routing table, I64 [vocab, k], range-checked."""
        key = f"layers.{i}.ffn.gate.tid2eid"
        if key not in self.cache:
            dt, t = self.ck.raw(key)
            if dt not in ("I64", "I32") or t.shape != (self.V, self.k):
                raise RefError(f"{key}: expected I64[{self.V}, {self.k}], "
                               f"found {dt}{list(t.shape)}")
            if t.min() < 0 or t.max() >= self.E:
                raise RefError(f"{key}: expert id outside [0, {self.E})")
            self.cache[key] = t.astype(np.int64)
        return self.cache[key]

    # the numerics' rounding points (docs/deepseek-v4.md)
    def R(self, x):
        """R(): bf16 round to nearest even under ref numerics, the identity under f32."""
        return round_bf16(x) if self.ref else np.asarray(x, F32)

    def L(self, name, x):
        """L(w, x): a linear without activation quantization (docs/ops.md linear)."""
        w = self.w(name)
        if w.ndim != 2 or w.shape[1] != x.shape[-1]:
            raise RefError(f"{name}.weight has dims {list(w.shape)}, the input has "
                           f"{x.shape[-1]} channels")
        return matmul_t(x, w)

    def Lq(self, name, x):
        """Lq(w, x): act_quant=128 on x (e4m3 per token per 128 channels) under ref numerics,
        then the linear (docs/deepseek-v4.md "Forward pass")."""
        return self.L(name, fake_quant(x, "e4m3", 128) if self.aq else x)

    def FQ8(self, x):
        """FQ8: e4m3 in blocks of 64 over the non-RoPE channels [0, D-r)."""
        return fake_quant(x, "e4m3", 64, 0, x.shape[-1] - self.r) if self.ref else x

    def FQ4(self, x):
        """FQ4: e2m1 in blocks of 32 over all channels."""
        return fake_quant(x, "e2m1", 32) if self.ref else x

    def compressor(self, p, h, ratio, overlap, freqs, tail):
        """kv_compress, then R(rms_norm(R(e), norm)), rope at entry_pos, and `tail` (QAT)."""
        R = self.R
        a, z = self.L(p + "wkv", h), self.L(p + "wgate", h)
        e, epos = kv_compress(a, z, self.f(p + "ape"), ratio, overlap)
        e = R(rms_norm(R(e), self.f(p + "norm.weight"), self.eps))
        return tail(R(rope(e[:, None, :], epos, freqs)[:, 0, :]))

    def attention(self, i, X, ids, pos):
        """The attention half of layer i (docs/deepseek-v4.md "Forward pass"), X[T, n, C]."""
        R, T, H, D = self.R, X.shape[0], self.H, self.D
        p = f"layers.{i}."
        ratio = self.ratios[i]
        freqs = self.freqsc if ratio else self.freqs0
        x, post, comb = hc_pre(X, self.f(p + "hc_attn_fn"), self.f(p + "hc_attn_scale"),
                               self.f(p + "hc_attn_base"), self.hc_iters, self.hc_eps, self.eps)
        h = R(rms_norm(R(x), self.f(p + "attn_norm.weight"), self.eps))
        qr = R(rms_norm(R(self.Lq(p + "attn.wq_a", h)), self.f(p + "attn.q_norm.weight"),
                        self.eps))
        q = R(self.Lq(p + "attn.wq_b", qr)).reshape(T, H, D)
        q = R(rope(R(rms_norm(q, None, self.eps)), pos, freqs))
        kv = R(rms_norm(R(self.Lq(p + "attn.wkv", h)), self.f(p + "attn.kv_norm.weight"),
                        self.eps))
        kv = self.FQ8(R(rope(kv[:, None, :], pos, freqs)[:, 0, :]))
        comp = mask = None
        if ratio:
            comp = self.compressor(p + "attn.compressor.", h, ratio, ratio == 4, freqs, self.FQ8)
            mask = np.arange(comp.shape[0])[None, :] < ((pos + 1) // ratio)[:, None]
        if ratio == 4:
            pi = p + "attn.indexer."
            qI = R(self.Lq(pi + "wq_b", qr)).reshape(T, self.Hi, self.Di)
            qI = self.FQ4(hadamard(R(rope(qI, pos, freqs))))
            icomp = self.compressor(pi + "compressor.", h, 4, 1, freqs,
                                    lambda v: self.FQ4(hadamard(v)))
            wI = R(self.L(pi + "weights_proj", h)) * F32(self.Di ** -0.5) * F32(self.Hi ** -0.5)
            idx = topk_fill(index_scores(qI, icomp, wI, pos, 4), min(self.topk, icomp.shape[0]))
            mask = np.zeros((T, comp.shape[0]), bool)
            rows = np.repeat(np.arange(T), idx.shape[1])
            keep = idx.reshape(-1) >= 0
            mask[rows[keep], idx.reshape(-1)[keep]] = True
        o = R(sparse_attention(q, kv, self.f(p + "attn.attn_sink"), self.W, comp, mask))
        o = R(rope(o, pos, freqs, inverse=True))
        y = R(grouped_linear(o.reshape(T, H * D), self.w(p + "attn.wo_a"), self.groups))
        y = R(self.Lq(p + "attn.wo_b", y))
        return R(hc_post(X, y, post, comb))

    def ffn(self, i, X, ids):
        """The feed-forward half of layer i: hash or top-k routing, experts, shared expert."""
        R = self.R
        p = f"layers.{i}."
        x, post, comb = hc_pre(X, self.f(p + "hc_ffn_fn"), self.f(p + "hc_ffn_scale"),
                               self.f(p + "hc_ffn_base"), self.hc_iters, self.hc_eps, self.eps)
        h = R(rms_norm(R(x), self.f(p + "ffn_norm.weight"), self.eps))
        g = self.L(p + "ffn.gate", h)
        if i < self.n_hash:
            wts, ex = moe_hash_route(g, ids, self.tid2eid(i), self.route_scale)
        else:
            wts, ex = moe_route(g, self.f(p + "ffn.gate.bias"), self.k, self.route_scale)
        gu, dn = self.experts(i)
        yr = moe_ffn(h, ex, wts, gu, dn, self.limit, self.aq)
        ps = p + "ffn.shared_experts."
        ys = self.Lq(ps + "w2", R(swiglu(self.Lq(ps + "w1", h), self.Lq(ps + "w3", h),
                                         self.limit)))
        return R(hc_post(X, R(yr + ys), post, comb))

    def engram_block(self, i, X, ids):
        """Layer i's Engram: hashed n-gram rows of its table (heads concatenated), gated per
        stream by the streams, short conv, added into every stream; R() of the sum."""
        mult, primes = self.engram[i]
        p = f"layers.{i}.engram."
        idx = ngram_hash(ids, [self.e_pad] * (self.e_n - 1), mult, primes, self.e_n, self.e_k)
        table = self.f(p + "embedding.weight")
        offs = np.concatenate([[0], np.cumsum(primes)[:-1]]).astype(np.int64)
        T = len(ids)
        e = table[offs[None, :] + idx].reshape(T, -1)  # [T, H * D]
        v = self.L(p + "value_proj", e)
        k = self.L(p + "key_proj", e).reshape(T, self.n, self.C)
        u = engram_gate(X, k, v, self.f(p + "h_norm.weight"), self.f(p + "k_norm.weight"),
                        self.eps)
        y = short_conv(u, self.f(p + "conv.weight"), self.f(p + "conv_norm.weight"),
                       self.e_kernel, self.e_dil, self.eps)
        return self.R(np.asarray(X, F64) + y)

    def forward(self, ids, first_row):
        """Logits [T - first_row, V] of positions first_row ... T-1 of one causal pass."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= self.V:
            raise RefError(f"token ids must be non-empty and in [0, {self.V})")
        pos = np.arange(len(ids))
        X = np.repeat(self.f("embed.weight")[ids][:, None, :], self.n, 1)  # hc_expand
        for i in range(self.nl):
            if i in self.engram:
                X = self.engram_block(i, X, ids)
            X = self.attention(i, X, ids, pos)
            X = self.ffn(i, X, ids)
        X = X[first_row:]
        x = hc_head(X, self.f("hc_head_fn"), self.f("hc_head_scale"), self.f("hc_head_base"),
                    self.hc_eps, self.eps)
        return self.L("head", rms_norm(x, self.f("norm.weight"), self.eps))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="token ids separated by spaces")
    ap.add_argument("--numerics", required=True, choices=["ref", "f32"])
    ap.add_argument("--from", dest="first", type=int, default=None,
                    help="write logits of positions P-1 ... len(ids)-1 (default P = len(ids))")
    ap.add_argument("--out", required=True)
    ap.add_argument("--greedy", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        ids = [int(t) for t in a.ids.replace(",", " ").split()]
        if not ids:
            raise RefError("--ids is empty")
        m = Model(a.model, a.numerics)
        if a.greedy > 0:
            rows, gen = [], []
            for _ in range(a.greedy):
                lg = m.forward(ids + gen, len(ids) + len(gen) - 1)[-1]
                rows.append(lg)
                gen.append(int(np.argmax(lg)))
            print("generated: " + " ".join(map(str, gen)))
            out = np.stack(rows)
        else:
            P = len(ids) if a.first is None else a.first
            if not 1 <= P <= len(ids):
                raise RefError(f"--from {P} is outside [1, {len(ids)}]")
            out = m.forward(ids, P - 1)
    except (RefError, ValueError) as e:
        print(f"v4_ref: error: {e}", file=sys.stderr)
        return 1
    np.save(a.out, out.astype(F32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
