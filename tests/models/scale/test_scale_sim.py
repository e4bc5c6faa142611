"""The expert-parallel simulation (docs/scale-out.md): vnrt-generate --simulate-ranks N over a
tiny checkpoint's real routing reports, per rank, the bytes recomputed here from the routes it
wrote; --scale-out N on the V4-Flash config agrees with the formula, recomputed here.

usage: test_scale_sim.py VNRT_GENERATE CHECKPOINT_DIR CONFIGS_DIR WORK_DIR
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys

gen, ckpt, configs, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(args):
    p = subprocess.run([gen] + args, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit(f"vnrt-generate {' '.join(args)} exited {p.returncode}")
    return p.stdout, p.stderr


def owner(e, E, N):
    return max(r for r in range(N) if E * r // N <= e)


cfg = json.load(open(os.path.join(ckpt, "config.json")))
E, k, C = cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["hidden_size"]
base = ["--model", ckpt, "--device", "cpu", "--prompt-ids", "3 14 15 92 65 35 89 79",
        "--tokens", "5"]
ref_out, _ = run(base)
for N in (1, 2, 3, 5):
    routes = os.path.join(work, f"routes{N}.txt")
    out, err = run(base + ["--simulate-ranks", str(N), "--routes-out", routes])
    check(out == ref_out, f"N={N}: the simulation changed the tokens: {out!r} vs {ref_out!r}")
    disp, comb, home = [0] * N, [0] * N, [0] * N
    rows = pairs_remote = 0
    lines = open(routes).read().split("\n")
    for line in filter(None, lines):
        f = [int(x) for x in line.split()]
        pos0, layer, t, ex = f[0], f[1], f[2], f[3:]
        check(len(ex) == k and all(0 <= e < E for e in ex), f"route line {line!r}")
        h = (pos0 + t) % N
        home[h] += 1
        dests = {}
        for e in ex:
            r = owner(e, E, N)
            if r != h:
                dests[r] = dests.get(r, 0) + 1
                pairs_remote += 1
        for r, n in dests.items():
            disp[h] += C + (C + 127) // 128 + 8 * n
            comb[r] += 2 * C
        rows += len(dests)
    # every (position, layer) once: 8 prompt + 4 decoded tokens, 4 layers
    check(sum(home) == 12 * cfg["num_hidden_layers"], f"N={N}: {sum(home)} token-layers")
    got = {}
    for m in re.finditer(r"ep rank (\d+): home (\d+) token-layers, sent dispatch (\d+) combine (\d+)",
                         err):
        got[int(m.group(1))] = tuple(int(m.group(i)) for i in (2, 3, 4))
    for r in range(N):
        check(got.get(r) == (home[r], disp[r], comb[r]),
              f"N={N} rank {r}: tool {got.get(r)} vs recomputed {(home[r], disp[r], comb[r])}")
    m = re.search(r"pairs local (\d+) remote (\d+), rows dispatched (\d+)", err)
    check(m and int(m.group(2)) == pairs_remote and int(m.group(3)) == rows,
          f"N={N}: pair/row counts {m and m.groups()} vs {pairs_remote}, {rows}")
    if N == 1:
        check(sum(disp) + sum(comb) == 0, "one rank sends nothing")

# The analytic model on V4-Flash's config (no weights needed).
flash = os.path.join(work, "flash")
os.makedirs(flash, exist_ok=True)
shutil.copy(os.path.join(configs, "v4-flash.json"), os.path.join(flash, "config.json"))
fc = json.load(open(os.path.join(flash, "config.json")))
E, k, C = fc["n_routed_experts"], fc["num_experts_per_tok"], fc["hidden_size"]
plan, _ = run(["--model", flash, "--plan"])
routed = int(re.search(r"routed experts\s+(\d+)", plan).group(1))
total = int(re.search(r"total \(loaded\)\s+(\d+)", plan).group(1))
for N in (8, 64):
    out, _ = run(["--model", flash, "--scale-out", str(N), "--sim-tokens", "20000"])
    s = E // N
    miss = math.comb(E - s, k) / math.comb(E, k)
    R = (N - 1) * (1 - miss)
    disp = R * (C + (C + 127) // 128) + 8 * k * (N - 1) / N
    comb = R * 2 * C
    m = re.search(r"formula \(uniform routing\), per token per MoE layer: ([\d.]+) remote ranks, "
                  r"([\d.]+) remote pairs, dispatch ([\d.]+) bytes, combine ([\d.]+) bytes", out)
    check(m is not None, f"N={N}: no formula line in {out!r}")
    if m:
        check(abs(float(m.group(1)) - R) < 1e-3, f"N={N}: remote ranks {m.group(1)} vs {R}")
        check(abs(float(m.group(3)) - disp) < 0.1 and abs(float(m.group(4)) - comb) < 0.1,
              f"N={N}: dispatch/combine {m.group(3)}/{m.group(4)} vs {disp}/{comb}")
    m = re.search(r"simulated .*: ([\d.]+) remote ranks, total ([\d.]+) bytes", out)
    check(m is not None and abs(float(m.group(2)) / (disp + comb) - 1) < 0.02,
          f"N={N}: simulated {m and m.group(2)} vs formula {disp + comb} (2%)")
    m = re.search(r"replicated ([\d.]+) GB \+ routed experts ([\d.]+) GB \((\d+) of", out)
    check(m is not None and int(m.group(3)) == s and
          abs(float(m.group(1)) - (total - routed) / 1e9) < 1e-3 and
          abs(float(m.group(2)) - routed / E * s / 1e9) < 1e-3,
          f"N={N}: weights per device {m and m.groups()}")
    print(out.splitlines()[1])
    print(out.splitlines()[3])

p = subprocess.run([gen, "--model", flash, "--scale-out", "300"], capture_output=True, text=True)
check(p.returncode == 1 and "300 ranks" in p.stderr, f"300 ranks of 256 experts: {p.stderr!r}")
p = subprocess.run([gen, "--model", ckpt, "--prompt-ids", "1", "--routes-out", "x"],
                   capture_output=True, text=True)
check(p.returncode == 2 and "--simulate-ranks" in p.stderr, f"--routes-out alone: {p.stderr!r}")
if failures:
    sys.exit(f"{len(failures)} failures")
print("ok")
