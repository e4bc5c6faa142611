#!/usr/bin/python3
"""vnrt-generate on a generated tiny DeepSeek-V4 checkpoint, against the numpy oracle.

usage: test_generate.py VNRT_GENERATE VNRT_MAKE_CHECKPOINT V4_REF.py CHECKPOINT CONFIG_DIR WORKDIR PART
CHECKPOINT is the tiny checkpoint (models/configs/v4-tiny.json, made by vnrt-make-checkpoint),
CONFIG_DIR models/configs (for v4-flash.json); WORKDIR is the part's own scratch folder.
PART: ref (logits vs tests/models/v4_ref.py), consistency (decode == prefill, chunking,
devices, --memory-limit), errors (bad checkpoints, prompts and arguments), text (--prompt TEXT
and --chat with a small tokenizer.json), variants (v4-tiny2's shapes, FP8 experts), engram
(v4-tiny-engram.json: the Engram option against the oracle, decode == prefill, devices),
dequantized (a BF16 checkpoint without quantization_config: weights, devices, oracle, errors).

Tolerances (docs/deepseek-v4.md, "Agreement with the reference"):
- f32 numerics: max |vnrt - ref| / max |ref| <= 1e-4 per row. Both compute the same f32
  pipeline; only summation order differs (observed ~5e-7).
- ref numerics, one-layer models (a ratio-4 hash layer; a ratio-128 top-k layer), the last row
  of 5 prompts (4 to 40 tokens; 64 to 150 for ratio 128): at least 2 of 5 within 1e-5 of
  max |logit| and all within 0.1. Few roundings lie between input and logits here, so rows
  mostly agree to f32 rounding, which pins every R(), Lq, FQ8 and FQ4 to its place (f32
  numerics would miss by ~2e-2 on every row); a row that differs had a value on a rounding
  midpoint (below), in its own computation or in a cached entry that later rows read too.
- ref numerics, the 4-layer tiny model: the roundings (bf16 R(), e4m3 activation quantization
  with 3 mantissa bits, FP4 indexer entries, top-k expert and entry selection) make the result
  discontinuous in its input: an f32-vs-f64 accumulation difference that moves one value
  across a rounding midpoint changes it by a whole e4m3 step (2^-3 relative) or switches an
  expert, and that spreads. The oracle itself moves by a median 2% and up to 11% of
  max |logit| when only its matmul accumulation is changed from f64 to f32 (vnrt: median 3%,
  up to 23%), so the bound is per row <= 0.5 and median over rows <= 0.06, and the greedy
  token must equal the oracle's wherever its top-2 margin exceeds twice the row's max |delta|.
"""
import os
import re
import random
import subprocess
import sys

import numpy as np

GEN, MAKE, REF, MODEL, CONFIGS, WORK, PART = sys.argv[1:8]
PY = "/usr/bin/python3"
FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)


def run(args, expect_rc=0, env=None):
    p = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=300,
                       env=dict(os.environ, **env) if env else None)
    if p.returncode != expect_rc:
        print("command:", " ".join(args)[:400])
        print(p.stdout[-2000:], p.stderr[-2000:])
        check(False, f"exit status {p.returncode}, expected {expect_rc}: {' '.join(args)[:200]}")
    return p


def generate(model, ids, tokens, numerics="ref", extra=(), name="v"):
    path = os.path.join(WORK, f"{name}.npy")
    p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens",
             str(tokens), "--numerics", numerics, "--device", "cpu", "--logits-out", path] +
            list(extra))
    line = [l for l in p.stdout.splitlines() if l.startswith("generated:")]
    check(len(line) == 1, "one 'generated:' line")
    gen = [int(t) for t in line[-1].split()[1:]] if line else []
    return gen, np.load(path)


def reference(model, ids, first, numerics):
    path = os.path.join(WORK, "r.npy")
    run([PY, REF, "--model", model, "--ids", " ".join(map(str, ids)), "--numerics", numerics,
         "--from", str(first), "--out", path])
    return np.load(path)


def compare(v, r, numerics, what):
    check(v.shape == r.shape, f"{what}: shapes {v.shape} vs {r.shape}")
    if v.shape != r.shape:
        return
    rel = np.abs(v - r).max(1) / np.abs(r).max(1)
    if numerics == "f32":
        check(rel.max() <= 1e-4, f"{what} (f32): max rel {rel.max():.3g} > 1e-4")
    else:
        check(rel.max() <= 0.5, f"{what} (ref): max rel {rel.max():.3g} > 0.5")
        check(np.median(rel) <= 0.06, f"{what} (ref): median rel {np.median(rel):.3g} > 0.06")
    for i in range(len(r)):
        top = np.sort(r[i])
        margin, diff = top[-1] - top[-2], np.abs(v[i] - r[i]).max()
        if margin > 2 * diff:
            check(v[i].argmax() == r[i].argmax(),
                  f"{what}: row {i}: greedy {v[i].argmax()} vs {r[i].argmax()} (margin {margin})")
    print(f"{what} ({numerics}): {len(r)} rows, max rel {rel.max():.3g}, median "
          f"{np.median(rel):.3g}")


def prompt(n, seed):
    r = random.Random(seed)
    return [r.randrange(1024) for _ in range(n)]


def variant(name, base, **changes):
    """A checkpoint of models/configs/<base> with some fields changed, made in WORK."""
    import json
    with open(os.path.join(CONFIGS, base)) as f:
        c = json.load(f)
    c.update(changes)
    os.makedirs(WORK, exist_ok=True)
    cfg, out = os.path.join(WORK, name + ".json"), os.path.join(WORK, name)
    with open(cfg, "w") as f:
        json.dump(c, f)
    run([MAKE, "--config", cfg, "--out", out, "--seed", "1"])
    return out


def part_variants(model):
    """Other shapes (v4-tiny2: C 384, D 128, 8 heads in 4 groups, 8 experts, 1 hash layer) and
    FP8 routed experts, under f32 numerics."""
    for m, n_prompt in ((variant("tiny2", "v4-tiny2.json"), 150),
                        (variant("fp8-experts", "v4-tiny.json", expert_dtype="fp8"), 20)):
        ids = prompt(n_prompt, 11)
        gen, v = generate(m, ids, 3, "f32", ["--max-context", "512"])
        compare(v, reference(m, ids + gen[:-1], n_prompt, "f32"), "f32", os.path.basename(m))


def part_dequantized(model):
    """A dequantized checkpoint (config.json without quantization_config: BF16 weights where
    DeepSeek's layout has FP8/FP4, no .scale tensors), made by vnrt-make-checkpoint from the same
    seed as MODEL: its weights are MODEL's, dequantized. Checks the weights against the oracle's
    own dequantization of MODEL's, the f32-numerics logits against MODEL's on every device, the
    ref numerics (no activation quantization in front of BF16 weights) against the oracle, and
    that each layout's config refuses the other's tensors by name."""
    import json
    import shutil
    sys.path.insert(0, os.path.dirname(REF))
    import v4_ref
    with open(os.path.join(CONFIGS, "v4-tiny.json")) as f:
        c = json.load(f)
    del c["quantization_config"]
    cfg, deq = os.path.join(WORK, "bf16.json"), os.path.join(WORK, "bf16")
    with open(cfg, "w") as f:
        json.dump(c, f)
    run([MAKE, "--config", cfg, "--out", deq])
    q, b = v4_ref.Checkpoint(model), v4_ref.Checkpoint(deq)
    n = 0
    for name in sorted(q.weight_map):
        if not name.endswith(".scale") or name.startswith("mtp."):
            continue
        base = name[:-len(".scale")]
        dt, _ = b.raw(base + ".weight")
        check(dt == "BF16", f"{base}.weight is {dt} in the dequantized checkpoint")
        check(not b.has(name), f"the dequantized checkpoint holds {name}")
        if dt == "BF16":
            same = np.array_equal(b.weight(base), q.weight(base))
            check(same, f"{base}: BF16 values differ from the FP8/FP4 tensor's dequantization")
        n += 1
    check(n > 100, f"only {n} quantized weights compared")
    print(f"{n} dequantized weights equal the oracle's dequantization")
    ids = prompt(20, 5)
    # The devices vnrt-info lists (as part_consistency): a failure on one of them is a failure.
    info = subprocess.run([os.path.join(os.path.dirname(GEN), "vnrt-info")], capture_output=True,
                          text=True).stdout
    for dev in ("cpu", "vulkan:0", "opencl:0"):
        if dev != "cpu" and dev not in info:
            print(f"{dev}: not present, skipped")
            continue
        outs = []
        for m in (model, deq):
            path = os.path.join(WORK, f"dq-{dev}.npy")
            r = run([GEN, "--model", m, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "4",
                     "--numerics", "f32", "--device", dev, "--logits-out", path])
            outs.append((r.stdout.splitlines()[-1:], np.load(path)))
        rel = np.abs(outs[0][1] - outs[1][1]).max() / np.abs(outs[0][1]).max()
        check(rel <= 1e-5, f"{dev}: f32 logits of the dequantized checkpoint differ by {rel:.3g}")
        check(outs[0][0] == outs[1][0], f"{dev}: tokens {outs[0][0]} vs {outs[1][0]}")
        print(f"{dev}: f32 logits equal to {rel:.3g} of max |logit|, tokens {outs[1][0]}")
    gen, v = generate(deq, ids, 4, "ref")
    r = reference(deq, ids + gen[:-1], len(ids), "ref")
    compare(v, r, "ref", "dequantized")
    # Without activation quantization only bf16 R() and the KV/indexer round trips remain, so
    # the rows stay much closer than the quantized model's 0.5 / 0.06 (observed 0.007).
    if v.shape == r.shape:
        rel = np.abs(v - r).max() / np.abs(r).max()
        check(rel <= 0.05, f"dequantized (ref): max rel {rel:.3g} > 0.05")
    p = run([GEN, "--model", deq, "--prompt-ids", "1 2", "--tokens", "1", "--ep-local", "2",
             "--ep-wire", "fp8"], expect_rc=1)
    check("--ep-wire fp8 needs FP8/FP4 experts" in p.stderr, f"--ep-wire fp8: {p.stderr[-300:]}")
    # Each layout's config over the other's shards: the first mismatching tensor is named.
    for src, conf, want in ((model, c, "has dtype F8_E4M3, expected BF16"),
                            (deq, None, "has dtype BF16, expected F8_E4M3")):
        mixed = os.path.join(WORK, "mixed")
        shutil.rmtree(mixed, ignore_errors=True)
        shutil.copytree(src, mixed)
        if conf is not None:
            with open(os.path.join(mixed, "config.json"), "w") as f:
                json.dump(conf, f)
        else:
            shutil.copy(os.path.join(model, "config.json"), os.path.join(mixed, "config.json"))
        p = run([GEN, "--model", mixed, "--prompt-ids", "1", "--tokens", "1"], expect_rc=1)
        check(want in p.stderr and "attn.wq_a.weight" in p.stderr,
              f"mixed layout: stderr lacks '{want}': {p.stderr[-300:]}")


def one_layer(name, ratio, hash_layers):
    return variant(name, "v4-tiny.json", num_hidden_layers=1, num_hash_layers=hash_layers,
                   compress_ratios=[ratio, 0])


def part_ref(model):
    full = prompt(150, 150)
    for name, ratio, hash_layers, lengths in (("csa-hash", 4, 1, (4, 9, 17, 26, 40)),
                                               ("hca-topk", 128, 0, (64, 128, 129, 140, 150))):
        m = one_layer(name, ratio, hash_layers)
        rel = []
        for n in lengths:
            _, v = generate(m, full[:n], 0, "ref", ["--max-context", "256"])
            r = reference(m, full[:n], n, "ref")
            rel.append(np.abs(v - r).max() / np.abs(r).max())
        f = reference(m, full[:n], n, "f32")
        miss = np.abs(f - r).max() / np.abs(r).max()
        rel = np.array(rel)
        print(f"one layer, ratio {ratio} (ref): rel per prompt length",
              " ".join(f"{x:.2g}" for x in rel), f"; f32 numerics would miss by {miss:.2g}")
        check((rel <= 1e-5).sum() >= 2, f"{name}: 2 of 5 prompts agree to 1e-5: {rel}")
        check(rel.max() <= 0.1, f"{name}: every prompt within 0.1: {rel}")
        check(miss > 1e-3, f"{name}: the test tells the numerics apart: {miss}")
    for numerics in ("f32", "ref"):
        for n_prompt, n_gen, what in ((3, 3, "3-token prompt"), (128, 6, "128-token prompt"),
                                      (200, 70, "prefill 200 + decode 70")):
            ids = prompt(n_prompt, n_prompt)
            gen, v = generate(model, ids, n_gen, numerics, ["--max-context", "512"])
            check(len(gen) == n_gen and v.shape[0] == n_gen, f"{what}: {n_gen} tokens and rows")
            # The oracle's rows for the same tokens (teacher-forced on vnrt's choices).
            r = reference(model, ids + gen[:-1], n_prompt, numerics)
            compare(v, r, numerics, what)


def part_consistency(model):
    ids = prompt(40, 7)
    gen, v = generate(model, ids, 12, "f32", ["--max-context", "256"])
    # Row k of a decode run = row 0 of a prefill of the prompt and the first k tokens.
    for k in (1, 5, 11):
        _, p = generate(model, ids + gen[:k], 0, "f32", ["--max-context", "256"], name="p")
        rel = np.abs(p[0] - v[k]).max() / np.abs(v[k]).max()
        check(rel <= 1e-5, f"decode step {k} vs prefill: rel {rel:.3g}")
    # Chunked prefill (the decode plan, plans of 7 and of the remainder, states handed over).
    for chunk in ("1", "7"):
        _, p = generate(model, ids, 0, "f32", ["--max-context", "256", "--prefill-chunk", chunk],
                        name="p")
        rel = np.abs(p[0] - v[0]).max() / np.abs(v[0]).max()
        check(rel <= 1e-5, f"prefill in chunks of {chunk} vs one run: rel {rel:.3g}")
    # The same under the reference numerics: decode and prefill run the same roundings.
    gen_r, vr = generate(model, ids, 6, "ref", ["--max-context", "256"])
    _, pr = generate(model, ids + gen_r[:5], 0, "ref", ["--max-context", "256"], name="p")
    rel = np.abs(pr[0] - vr[5]).max() / np.abs(vr[5]).max()
    check(rel <= 1e-3, f"ref numerics: decode step 5 vs prefill: rel {rel:.3g}")
    # Devices (whatever falls back to the CPU) and weights streamed under a memory limit.
    info = subprocess.run([os.path.join(os.path.dirname(GEN), "vnrt-info")], capture_output=True,
                          text=True).stdout
    devices = [["--device", "cpu", "--memory-limit", "3M"]]
    for d in ("vulkan:0", "opencl:0"):
        if d in info:
            devices.append(["--device", d])
    # The CPU's opt-in background prefetch of the next weights (a small budget, so that posts
    # are cut short) and small pages must not change a token.
    cpu_knobs = {"VNRT_CPU_PREFETCH_KIB": "96", "VNRT_CPU_HUGE_PAGES": "0"}
    devices.insert(0, ["--device", "cpu"])
    for dev in devices:
        knobs = cpu_knobs if dev == ["--device", "cpu"] else None
        p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "12",
                 "--numerics", "f32", "--max-context", "256", "--stats"] + dev, env=knobs)
        line = [l for l in p.stdout.splitlines() if l.startswith("generated:")]
        got = [int(t) for t in line[-1].split()[1:]] if line else []
        check(got == gen, f"{' '.join(dev)}: generated {got}, cpu {gen}")
        if "--memory-limit" in dev:
            check("0 params streamed" not in p.stderr, "--memory-limit 3M streams weights")
        print(" ".join(dev), knobs or "", "->", got)
    # --profile: the last run's per-op table, every node of the decode plan counted once.
    p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "3",
             "--numerics", "f32", "--max-context", "256", "--stats", "--profile"] + devices[-1][:2])
    table = p.stderr.split("last run, per op:\n")[-1].splitlines()
    rows = {l.split()[0]: l.split() for l in table[1:] if l.strip()}
    plan = [l for l in p.stderr.splitlines() if l.startswith("decode plan:")]
    check("linear" in rows and "total" in rows and plan, f"--profile prints a table: {p.stderr[-400:]}")
    if "total" in rows and plan:
        counted = sum(int(r[1]) for k, r in rows.items() if k != "total")
        check(counted == int(rows["total"][1]) == int(plan[0].split()[2]),
              f"--profile counts {counted} nodes, total {rows['total'][1]}, plan {plan[0]}")
        check(float(rows["total"][3]) > 0, f"--profile times the nodes: {rows['total']}")
    # --profile-nodes: one line per node of the decode plan (a step number first), then the table.
    p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "3",
             "--numerics", "f32", "--max-context", "256", "--stats", "--profile-nodes"] + devices[-1][:2])
    text = p.stderr.split("last run, per node and per op:\n")[-1]
    steps = [l for l in text.splitlines() if l.split() and l.split()[0].isdigit()]
    plan = [l for l in p.stderr.splitlines() if l.startswith("decode plan:")]
    check(plan and len(steps) == int(plan[0].split()[2]) and "total" in text,
          f"--profile-nodes prints every node and the table: {len(steps)} node lines, {plan}")
    # --roofline: the plan's bytes per token over a triad run right before and right after the
    # decode (5 passes each, none between its steps); the tokens are the run's own, and the
    # fraction is tokens/s over the bound it prints.
    plan_text = run([GEN, "--model", model, "--plan"]).stdout
    want_bytes = int(re.search(r"weights read per token:\s+(\d+)\s", plan_text).group(1))
    p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "4",
             "--numerics", "f32", "--max-context", "256", "--device", "cpu", "--roofline",
             "--stats"])
    line = [l for l in p.stdout.splitlines() if l.startswith("generated:")]
    check(line and [int(t) for t in line[-1].split()[1:]] == gen[:4],
          f"--roofline keeps the tokens: {line}")
    m1 = re.search(r"roofline: [0-9.]+ GB \((\d+) bytes\) of weights per token .* triad ([0-9.]+) "
                   r"GB/s \(median of 10 passes, half before and half after the decode.* at most ([0-9.]+) "
                   r"tokens/s", p.stderr)
    m2 = re.search(r"roofline: decode ([0-9.]+) tokens/s = ([0-9.]+) of the roofline", p.stderr)
    m3 = re.search(r"^decode: 3 tokens in [0-9.]+ s \(([0-9.]+) tokens/s\)", p.stderr, re.M)
    check(m1 and m2 and m3, f"--roofline prints the bound and the fraction: {p.stderr[-400:]}")
    if m1 and m2 and m3:
        nbytes, bw, bound = int(m1.group(1)), float(m1.group(2)), float(m1.group(3))
        tps, frac = (float(g) for g in m2.groups())
        check(nbytes == want_bytes and bw > 0 and abs(bound - bw * 1e9 / nbytes) <= 0.1 + 2e-3 * bound,
              f"--roofline: {nbytes} bytes (plan {want_bytes}), {bw} GB/s, bound {bound}")
        # the decode rate is --stats' own (decode steps only, the triad passes not timed)
        check(abs(tps - float(m3.group(1))) <= 0.05 + 1e-3 * tps,
              f"--roofline's decode {tps} tokens/s is --stats' {m3.group(1)}")
        check(abs(frac - tps / bound) <= 2e-3 + 1e-3 * frac, f"--roofline: {tps} / {bound} = {frac}?")
    p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "1",
             "--numerics", "f32", "--max-context", "256", "--device", "cpu", "--roofline"])
    check("roofline: no decode step ran" in p.stderr, f"--roofline with one token: {p.stderr[-300:]}")


def part_errors(model):
    def err(args, rc, words):
        p = run([GEN] + args, expect_rc=rc)
        for w in words:
            check(w in p.stderr, f"{args}: stderr names '{w}': {p.stderr.strip()[:300]}")

    ids = "1 2 3"
    err(["--model", model, "--prompt-ids", "1 2 5000"], 1, ["5000", "vocabulary"])
    err(["--model", model, "--prompt-ids", "-1"], 1, ["-1", "vocabulary"])
    err(["--model", model, "--prompt-ids", ""], 1, ["empty"])
    err(["--model", model, "--prompt-ids", "1 2 3 4 5", "--max-context", "4"], 1, ["context"])
    err(["--model", model, "--prompt-ids", ids, "--tokens", "8", "--max-context", "8"], 1,
        ["context"])
    err(["--model", model, "--prompt", "hello"], 1, ["tokenizer.json"])
    err(["--model", model, "--prompt-ids", "1 x"], 2, ["prompt-ids"])
    err(["--model", model], 2, ["prompt"])
    err(["--prompt-ids", ids], 2, ["--model"])
    err(["--model", model, "--prompt-ids", ids, "--numerics", "f16"], 2, ["numerics"])
    err(["--model", model, "--prompt-ids", ids, "--top-p", "2"], 2, ["top-p"])
    err(["--model", model, "--prompt-ids", ids, "--bogus", "1"], 2, ["bogus"])
    err(["--model", model, "--prompt-ids", ids, "--device", "nosuch:3"], 1, ["nosuch"])
    err(["--model", os.path.join(WORK, "missing"), "--prompt-ids", ids], 1, ["missing"])
    # Damaged copies of the checkpoint.
    import shutil
    bad = os.path.join(WORK, "bad")
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(model, bad)
    shard = sorted(f for f in os.listdir(bad) if f.endswith(".safetensors"))[1]
    with open(os.path.join(bad, shard), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(bad, shard)) // 2)
    err(["--model", bad, "--prompt-ids", ids], 1, [shard])
    os.remove(os.path.join(bad, shard))
    err(["--model", bad, "--prompt-ids", ids], 1, [shard])
    shutil.rmtree(bad)
    shutil.copytree(model, bad)
    with open(os.path.join(bad, "config.json")) as f:
        text = f.read()
    with open(os.path.join(bad, "config.json"), "w") as f:
        f.write(text.replace('"hidden_size": 256', '"hidden_size": 250'))
    err(["--model", bad, "--prompt-ids", ids], 1, ["hidden_size"])
    shutil.rmtree(bad)
    # --plan needs only config.json, and works on the real V4-Flash config.
    flash = os.path.join(WORK, "flash")
    os.makedirs(flash, exist_ok=True)
    shutil.copy(os.path.join(CONFIGS, "v4-flash.json"),
                os.path.join(flash, "config.json"))
    p = run([GEN, "--model", flash, "--plan"])
    check("routed experts" in p.stdout, f"--plan prints the plan: {p.stdout[:300]}")
    # --graph-out too: V4-Flash's decode step and a 4-token prefill chunk as vnir.
    gpath = os.path.join(WORK, "flash.vnir")
    run([GEN, "--model", flash, "--graph-out", gpath])
    with open(gpath) as f:
        g = f.read()
    check(g.startswith("vnir 1\n") and "input ids: i32[1]" in g and
          "param layers.42.ffn.experts.gate_up: e2m1[256, 4096, 4096]" in g,
          f"--graph-out writes the decode graph: {g[:300]}")
    run([GEN, "--model", flash, "--graph-out", gpath, "--graph-tokens", "4"])
    with open(gpath) as f:
        check("input ids: i32[4]" in f.read(), "--graph-tokens 4: a 4-token graph")
    err(["--model", flash, "--graph-out", gpath, "--graph-tokens", "5000"], 1,
        ["tokens 5000", "max_context = 4096"])
    err(["--model", flash, "--graph-out", os.path.join(WORK, "no", "dir.vnir")], 1,
        ["cannot write"])
    err(["--model", flash, "--graph-tokens", "4"], 2, ["--graph-tokens N needs --graph-out"])
    err(["--model", flash, "--graph-out", gpath, "--plan"], 2, ["pick one"])
    # Sampling is reproducible for a seed and differs between seeds.
    outs = []
    for seed in ("3", "3", "4"):
        p = run([GEN, "--model", model, "--prompt-ids", ids, "--tokens", "8", "--numerics", "f32",
                 "--temperature", "1.5", "--top-k", "50", "--top-p", "0.95", "--seed", seed])
        outs.append(p.stdout.strip().splitlines()[-1])
    check(outs[0] == outs[1], f"same seed, same tokens: {outs[0]} / {outs[1]}")
    check(outs[0] != outs[2], f"another seed, other tokens: {outs[0]} / {outs[2]}")


def byte_alphabet():
    """GPT-2's byte-level alphabet: byte b -> the character that stands for it in pieces."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def part_text(model):
    """--prompt TEXT and --chat with a small byte-level tokenizer.json beside the weights."""
    import json
    import shutil
    d = os.path.join(WORK, "with-tokenizer")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(model, d)
    chars = byte_alphabet()
    vocab = {chars[b]: b for b in range(256)}
    merges = [["h", "e"], ["l", "l"], ["he", "ll"]]
    for i, (a, b) in enumerate(merges):
        vocab[a + b] = 256 + i
    added = [{"id": 300 + i, "content": c, "special": True}
             for i, c in enumerate(["<s>", "</s>", "<\uff5cUser\uff5c>".encode().decode(
                 "unicode_escape"), "<\uff5cAssistant\uff5c>".encode().decode("unicode_escape")])]
    tok = {"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": added,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "decoder": {"type": "ByteLevel"}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f)
    p = run([GEN, "--model", d, "--prompt", "hello, world", "--tokens", "6", "--numerics", "f32"])
    check(p.stdout.startswith("<s>hello, world") or p.stdout.startswith("hello, world"),
          f"the prompt's text is streamed first: {p.stdout[:80]!r}")
    lines = p.stdout.strip().splitlines()
    check(lines[-1].startswith("generated:") and len(lines[-1].split()) == 7,
          f"6 generated ids: {lines[-1]!r}")
    p = run([GEN, "--model", d, "--prompt", "hello", "--chat", "--tokens", "3", "--numerics",
             "f32"])
    check("hello" in p.stdout and "User" in p.stdout, f"--chat wraps the prompt: {p.stdout[:80]!r}")
    shutil.rmtree(d)


def plan_nodes(model, ids):
    """The decode plan's node count from --stats."""
    p = run([GEN, "--model", model, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "2",
             "--numerics", "f32", "--device", "cpu", "--max-context", "64", "--stats"])
    line = [l for l in p.stderr.splitlines() if l.startswith("decode plan:")]
    check(len(line) == 1, f"--stats prints the decode plan: {p.stderr[-300:]}")
    return int(line[0].split()[2]) if line else 0


def part_engram(model):
    """models/configs/v4-tiny-engram.json (Engram before the attention of layers 1 and 3):
    logits against the oracle under both numerics, decode == prefill, chunked prefill, the same
    greedy tokens on every device, a non-zero pad id, and the Engram nodes in the plan."""
    m = variant("engram", "v4-tiny-engram.json")
    ids = prompt(40, 41)
    for numerics in ("f32", "ref"):
        gen, v = generate(m, ids, 8, numerics, ["--max-context", "128"])
        check(len(gen) == 8, f"engram ({numerics}): 8 tokens")
        compare(v, reference(m, ids + gen[:-1], len(ids), numerics), numerics,
                f"engram, prefill 40 + decode 8")
    gen, v = generate(m, ids, 8, "f32", ["--max-context", "128"])
    # Without its Engram layers the oracle is far away: the comparison above sees them.
    import importlib.util
    spec = importlib.util.spec_from_file_location("v4_ref", REF)
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    plain = ref_mod.Model(m, "f32")
    plain.engram = {}
    r0 = plain.forward(ids, len(ids) - 1)
    miss = np.abs(r0[0] - v[0]).max() / np.abs(v[0]).max()
    check(miss > 1e-2, f"engram: the oracle without Engram misses by {miss:.3g} only")
    print(f"engram: the oracle without its Engram layers would miss by {miss:.3g}")
    # Decode step k == prefill of the prompt and k tokens (the n-gram and conv histories).
    for k in (1, 4, 7):
        _, p = generate(m, ids + gen[:k], 0, "f32", ["--max-context", "128"], name="p")
        rel = np.abs(p[0] - v[k]).max() / np.abs(v[k]).max()
        check(rel <= 1e-5, f"engram: decode step {k} vs prefill: rel {rel:.3g}")
    for chunk in ("1", "2", "7"):
        _, p = generate(m, ids, 0, "f32", ["--max-context", "128", "--prefill-chunk", chunk],
                        name="p")
        rel = np.abs(p[0] - v[0]).max() / np.abs(v[0]).max()
        check(rel <= 1e-5, f"engram: prefill in chunks of {chunk} vs one run: rel {rel:.3g}")
    info = subprocess.run([os.path.join(os.path.dirname(GEN), "vnrt-info")], capture_output=True,
                          text=True).stdout
    devices = [["--device", "cpu", "--memory-limit", "3M"]]
    for d in ("vulkan:0", "opencl:0"):
        if d in info:
            devices.append(["--device", d])
    for dev in devices:
        p = run([GEN, "--model", m, "--prompt-ids", " ".join(map(str, ids)), "--tokens", "8",
                 "--numerics", "f32", "--max-context", "128"] + dev)
        line = [l for l in p.stdout.splitlines() if l.startswith("generated:")]
        got = [int(t) for t in line[-1].split()[1:]] if line else []
        check(got == gen, f"engram {' '.join(dev)}: generated {got}, cpu {gen}")
        print("engram", " ".join(dev), "->", got)
    # Per Engram layer at least ngram_hash, engram_lookup, 2 linears, engram_gate, short_conv
    # and the add run in the decode plan.
    extra = plan_nodes(m, ids[:5]) - plan_nodes(model, ids[:5])
    check(extra >= 2 * 7, f"engram: the decode plan has {extra} more nodes than v4-tiny's")
    # A checkpoint without the Engram tensors its config asks for, and a bad Engram field.
    import json
    import shutil
    bad = os.path.join(WORK, "engram-missing")
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(model, bad)
    for ids_field, words in (([1], ["layers.1.engram.embedding.weight", "missing"]),
                             ([1, 7], ["engram_layer_ids[1] is 7", "decoder layer"])):
        with open(os.path.join(bad, "config.json")) as f:
            c = json.load(f)
        c["engram_layer_ids"] = ids_field
        with open(os.path.join(bad, "config.json"), "w") as f:
            json.dump(c, f)
        p = run([GEN, "--model", bad, "--prompt-ids", "1 2", "--tokens", "1"], expect_rc=1)
        for w in words:
            check(w in p.stderr, f"engram: stderr names '{w}': {p.stderr.strip()[:300]}")
    # A non-zero pad id: the session starts the n-gram history with it.
    mp = variant("engram-pad", "v4-tiny-engram.json", engram_pad_id=7, engram_dilation=2,
                 engram_max_ngram_size=4, engram_n_head_per_ngram=3)
    short = ids[:3]
    gen, v = generate(mp, short, 3, "f32", ["--max-context", "64"])
    compare(v, reference(mp, short + gen[:-1], len(short), "f32"), "f32", "engram pad 7, N 4")


def main():
    os.makedirs(WORK, exist_ok=True)
    model = MODEL
    {"ref": part_ref, "consistency": part_consistency, "errors": part_errors,
     "text": part_text, "variants": part_variants, "engram": part_engram,
     "dequantized": part_dequantized}[PART](model)
    if FAILS:
        print(f"{len(FAILS)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
