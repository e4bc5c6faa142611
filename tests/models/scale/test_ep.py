"""Expert parallel (docs/scale-out.md): vnrt-generate with the model cut at every MoE layer and
the routed experts served by N slices gives the one-process tokens — in process (--ep-local N,
bit-identical logits under the reference numerics) and, when built with MPI, under
`mpirun -np N --oversubscribe ... --expert-parallel`; a rank that cannot load ends every rank
with a message naming it, and so does a rank that stalls (the others time out, --ep-timeout);
the dispatched rows as FP8 (--ep-wire fp8) give bit-identical logits under the reference
numerics and about a quarter of the dispatch bytes. The shared expert runs as its own piece
while the dispatch is in flight (the exchange in two calls); --ep-shared-before, the shared
expert in the segment before a one-call exchange, gives the same bits.

Engram (the tiny Engram checkpoint, layers 1 and 3): the tables are sharded by row, rank r
holding rows [R·r/N, R·(r+1)/N); each rank fetches the rows it needs from their owners. The
logits are bit-identical to one process (the rows are copied), and every rank's Engram bytes
per token equal a count of the rows outside its slice, recomputed here from the rows the run
wrote (--ep-engram-out); a rank stalled in the Engram fetch is named by the others' timeout.

With `devices`: the layers split over cpu, vulkan:0 and opencl:0 in one process (--devices,
a pipeline by memory budget) give the one-device tokens (skipped, 77, without those devices);
so does the Engram model over cpu and vulkan:0 (the hash segment on the first device).

usage: test_ep.py local|mpi|devices VNRT_GENERATE CHECKPOINT ENGRAM_CHECKPOINT WORK_DIR [MPIRUN]
Exit 77 (skipped) for `mpi` when vnrt-generate was built without MPI or mpirun is missing.
"""
import os
import re
import subprocess
import sys

import numpy as np

part, gen, ckpt, engram, work = sys.argv[1:6]
mpirun = sys.argv[6] if len(sys.argv) > 6 else ""
os.makedirs(work, exist_ok=True)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(args, prefix=(), timeout=120):
    return subprocess.run(list(prefix) + [gen] + args, capture_output=True, text=True,
                          timeout=timeout)


def tokens(p):
    m = re.search(r"^generated:(.*)$", p.stdout, re.M)
    return m.group(1).split() if m else None


base = ["--model", ckpt, "--device", "cpu", "--prompt-ids", "3 14 15 92 65 35 89 79",
        "--tokens", "6", "--prefill-chunk", "5"]
one = run(base + ["--logits-out", os.path.join(work, "one.npy")])
check(one.returncode == 0 and tokens(one), f"one process: {one.stderr}")
ref_tokens = tokens(one)
ref_logits = np.load(os.path.join(work, "one.npy"))

ebase = [engram if a == ckpt else a for a in base]
ENGRAM_HEAD_DIM = 32  # models/configs/v4-tiny-engram.json: engram_head_dim
ENGRAM_HEADS = 8  # (engram_max_ngram_size - 1) * engram_n_head_per_ngram = 2 * 4
ENGRAM_LAYERS = (1, 3)  # engram_layer_ids
if part in ("local", "mpi"):
    eone = run(ebase + ["--logits-out", os.path.join(work, "engram-one.npy")])
    check(eone.returncode == 0 and tokens(eone), f"Engram, one process: {eone.stderr}")
    eref_tokens = tokens(eone)
    eref_logits = np.load(os.path.join(work, "engram-one.npy")) if eone.returncode == 0 else None


def check_engram(p, n, rows_file, what):
    """The run's tokens and logits against one process, and every rank's Engram statistics
    against the rows it wrote: rank r fetches each row outside [R·r/N, R·(r+1)/N)."""
    check(p.returncode == 0, f"{what}: exit {p.returncode}: {p.stderr}")
    check(tokens(p) == eref_tokens, f"{what}: tokens {tokens(p)} vs {eref_tokens}")
    out = os.path.join(work, "engram-run.npy")
    if p.returncode == 0 and eref_logits is not None:
        got = np.load(out)
        check(np.array_equal(got, eref_logits),
              f"{what}: logits differ by {np.abs(got - eref_logits).max()}")
    fetches = []
    with open(rows_file) as f:
        for line in f:
            w = line.split()
            check(w[0] == "layer" and w[2] == "table_rows" and w[8] == "rows", f"{what}: {line}")
            layer, R, T = int(w[1]), int(w[3]), int(w[7])
            rows = [int(v) for v in w[9:]]
            check(len(rows) == T * ENGRAM_HEADS and all(0 <= g < R for g in rows),
                  f"{what}: rows of layer {layer}: {line}")
            fetches.append((layer, R, T, rows))
    tok = 13  # 8 prompt tokens and 5 generated ones run through the model
    for layer in ENGRAM_LAYERS:
        check(sum(T for l, _, T, _ in fetches if l == layer) == tok,
              f"{what}: layer {layer} fetched for {tok} tokens: {fetches}")
    ranks = range(n) if "--expert-parallel" in p.args else (0,)
    for r in ranks:
        remote = sum(sum(1 for g in rows if not R * r // n <= g < R * (r + 1) // n)
                     for _, R, _, rows in fetches)
        local = sum(len(rows) for *_, rows in fetches) - remote
        m = re.search(rf"ep rank {r} of {n}: engram: 2 tables, rows held (\d+) of (\d+) bytes; "
                      r"rows local (\d+) remote (\d+); fetched per token (\d+) bytes "
                      r"\(requests (\d+) bytes\)", p.stderr)
        check(m is not None, f"{what}: rank {r}'s Engram statistics: {p.stderr}")
        if not m:
            continue
        want = remote * ENGRAM_HEAD_DIM * 2 / tok
        check((int(m.group(3)), int(m.group(4))) == (local, remote),
              f"{what}: rank {r}: rows local/remote {m.group(3)}/{m.group(4)} vs {local}/{remote}")
        check(abs(int(m.group(5)) - want) <= 0.5,
              f"{what}: rank {r}: {m.group(5)} bytes per token vs {want:.1f} from the rows")
        # requests: 4 bytes per remote row; none when fetched early (every rank knows them)
        early = "--ep-engram-early" in p.args and "--expert-parallel" in p.args
        check(abs(int(m.group(6)) - (0 if early else remote * 4 / tok)) <= 0.5,
              f"{what}: rank {r}: requests {m.group(6)}")
        if early:
            e = re.search(rf"ep rank {r} of {n}: engram fetched early: in flight ([\d.]+) s, "
                          r"waiting ([\d.]+) s, overlapped ([\d.]+) s", p.stderr)
            check(e is not None, f"{what}: rank {r}: the early fetch's line: {p.stderr}")
            if e:
                flight, wait, hidden = (float(e.group(i)) for i in (1, 2, 3))
                check(wait <= flight + 0.002 and abs(flight - wait - hidden) <= 0.002,
                      f"{what}: rank {r}: flight {flight}, wait {wait}, overlapped {hidden}")
        tables = {l: R for l, R, _, _ in fetches}
        want_held = sum((R * (r + 1) // n - R * r // n) * ENGRAM_HEAD_DIM * 2
                        for R in tables.values())
        check(int(m.group(1)) == want_held and
              int(m.group(2)) == sum(R * ENGRAM_HEAD_DIM * 2 for R in tables.values()),
              f"{what}: rank {r} holds {m.group(1)} of {m.group(2)} bytes, expected {want_held}")
        # the formula: T x heads x head_dim x 2 x (N - 1)/N per Engram layer, for rows spread
        # evenly over the slices (each head's rows are a contiguous range, so within ~1/N)
        formula = len(ENGRAM_LAYERS) * ENGRAM_HEADS * ENGRAM_HEAD_DIM * 2 * (n - 1) / n
        check(abs(want - formula) <= 0.35 * formula + 1, f"{what}: rank {r}: {want} vs {formula}")
        print(f"{what}: rank {r}: Engram {want:.0f} bytes per token (formula {formula:.0f})")

if part == "local":
    for n in (1, 2, 3, 16):
        out = os.path.join(work, f"local{n}.npy")
        p = run(base + ["--ep-local", str(n), "--logits-out", out])
        check(p.returncode == 0, f"--ep-local {n}: exit {p.returncode}: {p.stderr}")
        check(tokens(p) == ref_tokens, f"--ep-local {n}: tokens {tokens(p)} vs {ref_tokens}")
        if p.returncode == 0:
            got = np.load(out)
            check(np.array_equal(got, ref_logits),
                  f"--ep-local {n}: logits differ by {np.abs(got - ref_logits).max()}")
        check(f"ep rank 0 of {n}: experts [0, {16 // n if n != 3 else 5})" in p.stderr,
              f"--ep-local {n}: statistics line: {p.stderr}")
        check(re.search(r"overlapped [\d.]+ s \([\d.]+%\), of which the shared expert [\d.]+ s",
                        p.stderr) is not None, f"--ep-local {n}: the shared expert: {p.stderr}")
    # the shared expert in the segment before the exchange (the exchange in one call): the
    # same bits as apart (its own piece, between the exchange's start and finish)
    out = os.path.join(work, "local2-before.npy")
    p = run(base + ["--ep-local", "2", "--ep-shared-before", "--logits-out", out])
    check(p.returncode == 0 and tokens(p) == ref_tokens, f"--ep-shared-before: {p.stderr}")
    check("shared expert" not in p.stderr, f"--ep-shared-before: no shared figure: {p.stderr}")
    if p.returncode == 0:
        got = np.load(out)
        check(np.array_equal(got, ref_logits),
              f"--ep-shared-before: logits differ by {np.abs(got - ref_logits).max()}")
    # FP8 rows: the experts quantize their input to e4m3 per 128 channels under REF anyway,
    # so the rows sent as e4m3 + e8m0 scales change no bit; a record (a token's row to a rank,
    # with a head of 8 + 12k bytes) shrinks from 8 + 12k + 4C to 8 + 12k + C + C/128 bytes
    for n in (2, 3):
        f32 = run(base + ["--ep-local", str(n)])
        out = os.path.join(work, f"local{n}-fp8.npy")
        p = run(base + ["--ep-local", str(n), "--ep-wire", "fp8", "--logits-out", out])
        check(p.returncode == 0 and tokens(p) == ref_tokens, f"fp8 --ep-local {n}: {p.stderr}")
        if p.returncode == 0:
            got = np.load(out)
            check(np.array_equal(got, ref_logits),
                  f"fp8 --ep-local {n}: logits differ by {np.abs(got - ref_logits).max()}")
        d32 = [float(v) for v in re.findall(r"dispatch (\d+),", f32.stderr)]
        d8 = [float(v) for v in re.findall(r"dispatch (\d+),", p.stderr)]
        check(len(d8) == 1 and len(d32) == 1 and "fp8 rows" in p.stderr,
              f"fp8 --ep-local {n}: statistics: {p.stderr}")
        for a, b in zip(d32, d8):
            check(abs(b - a * (56 + 256 + 2) / (56 + 1024)) <= 1,
                  f"fp8 --ep-local {n}: dispatch {b} bytes per token vs f32 {a}")
    p = run(base + ["--ep-local", "2", "--ep-wire", "fp8", "--numerics", "f32"])
    check(p.returncode == 2 and "--numerics ref" in p.stderr, f"fp8 under f32: {p.stderr}")
    p = run(base + ["--ep-local", "2", "--ep-wire", "bf16"])
    check(p.returncode == 2 and "f32 or fp8" in p.stderr, f"--ep-wire bf16: {p.stderr}")
    for bad in ("1", "1:", "a:2", "1:2x", "x:load", "1:loads"):
        p = run(base + ["--ep-local", "2", "--ep-stall", bad])
        check(p.returncode == 2 and "RANK:LAYER" in p.stderr, f"--ep-stall {bad}: {p.stderr}")
    p = run(base + ["--ep-local", "2", "--ep-timeout", "0"])
    check(p.returncode == 2 and "--ep-timeout" in p.stderr, f"--ep-timeout 0: {p.stderr}")
    p = run(base + ["--ep-local", "2", "--ep-waves", "0"])
    check(p.returncode == 2 and "--ep-waves" in p.stderr, f"--ep-waves 0: {p.stderr}")
    # f32 numerics: the slot sum is outside moe_ffn (an FMA may differ), the tokens are not
    f1 = run(base + ["--numerics", "f32"])
    f3 = run(base + ["--numerics", "f32", "--ep-local", "3"])
    check(f3.returncode == 0 and tokens(f3) == tokens(f1), f"f32 --ep-local 3: {f3.stderr}")
    # with the simulation on top, the routes are those of the one-process run
    p = run(base + ["--ep-local", "2", "--simulate-ranks", "2"])
    q = run(base + ["--simulate-ranks", "2"])
    tally = lambda s: [l for l in s.splitlines() if l.startswith("ep rank") and "home" in l]
    check(p.returncode == 0 and tally(p.stderr) == tally(q.stderr) and tally(q.stderr),
          f"simulation under --ep-local: {tally(p.stderr)} vs {tally(q.stderr)}")
    # Engram: tables sharded by row over N slices in this process
    for n in (1, 2, 3):
        rows_file = os.path.join(work, f"engram-rows-{n}.txt")
        p = run(ebase + ["--ep-local", str(n), "--logits-out", os.path.join(work, "engram-run.npy"),
                         "--ep-engram-out", rows_file])
        check_engram(p, n, rows_file, f"Engram --ep-local {n}")
    # f32 numerics: the tokens (the MoE slot sum may round differently, the rows do not)
    f1 = run(ebase + ["--numerics", "f32"])
    f2 = run(ebase + ["--numerics", "f32", "--ep-local", "2"])
    check(f2.returncode == 0 and tokens(f2) == tokens(f1) and tokens(f1),
          f"Engram f32 --ep-local 2: {tokens(f2)} vs {tokens(f1)}: {f2.stderr}")
    p = run(ebase + ["--ep-engram-out", os.path.join(work, "x.txt")])
    check(p.returncode == 2 and "--ep-engram-out needs" in p.stderr, f"--ep-engram-out: {p.stderr}")
    # errors
    p = run(base + ["--ep-local", "17"])
    check(p.returncode == 1 and "17 ranks for 16 experts" in p.stderr, f"17 ranks: {p.stderr}")
elif part == "devices":
    HC, C = 4, 256  # models/configs/v4-tiny*.json: hc_mult, hidden_size (both checkpoints)

    def boundary_bytes(x_bytes):
        # what one token hands across a segment boundary: X [hc, C] (f32 under --numerics f32,
        # bf16 under the reference numerics), post [hc] and comb [hc, hc] f32, ys and yr [C] f32
        return HC * C * x_bytes + 4 * HC + 4 * HC * HC + 2 * 4 * C

    def crossings(p):
        # segment boundaries whose two sides are on different devices, from the placement line
        m = re.search(r"^placement: (layers .*)$", p.stderr, re.M)
        return max(len(re.findall(r"layers \d+-\d+", m.group(1))) - 1, 0) if m else None

    def moves(p, what):
        """The --stats lines of the moves between devices, checked for consistency."""
        m = re.search(r"^moves: (\d+) steps, (\d+) tokens; between devices (\d+) bytes "
                      r"\(boundaries (\d+), routed (\d+)\), Engram rows (\d+) bytes; on the "
                      r"copy streams (\d+) bytes \((\d+) staged at the step's start\)$",
                      p.stderr, re.M)
        q = re.search(r"^moves per step: between devices (\d+) bytes, copy streams ([\d.]+) s, "
                      r"waited ([\d.]+) s, overlapped ([\d.]+) s \(([\d.]+)%\)$", p.stderr, re.M)
        check(m is not None and q is not None, f"{what}: no moves lines: {p.stderr}")
        if m is None or q is None:
            return None
        v = dict(zip(("steps", "tokens", "between", "boundaries", "routed", "engram", "moved",
                      "early"), map(int, m.groups())))
        per_step, copy, waited, over, share = map(float, q.groups())
        check(abs(per_step * v["steps"] - v["between"]) <= v["steps"],
              f"{what}: per step {per_step} vs {v['between']} / {v['steps']}")
        check(v["tokens"] == 14 if "f32" in what else v["tokens"] == 13, f"{what}: tokens {v}")
        check(v["between"] == v["boundaries"] + v["routed"], f"{what}: {v}")
        check(v["moved"] >= v["between"] + v["early"] and v["early"] >= v["engram"],
              f"{what}: the copy streams moved less than the sums: {v}")
        check(0 <= over <= copy + 1e-6 and 0 <= share <= 100.0, f"{what}: overlap {q.group(0)}")
        check(copy > 0, f"{what}: no time on the copy streams: {q.group(0)}")
        print(what, m.group(0), q.group(0), sep="\n  ")
        return v

    # Under f32 numerics: the reference numerics round activations to e4m3 before the linears,
    # which turns the devices' summation orders into logit differences of 0.1-0.5 on this
    # random model, and its near ties (a top-2 gap of 0.07 at step 5) then go either way;
    # in f32 the devices agree to ~1e-6 and the placements must give the same tokens.
    short = base[:base.index("--tokens")] + ["--tokens", "7", "--numerics", "f32"]
    singles = {}
    for d in ("cpu", "vulkan:0", "opencl:0"):
        p = run([a if a != "cpu" else d for a in short])
        if p.returncode != 0 and d != "cpu":
            print(f"skipped: no {d}: {p.stderr}")
            sys.exit(77)
        singles[d] = tokens(p)
    check(len({tuple(t or []) for t in singles.values()}) == 1, f"one device each: {singles}")
    # 5 MiB each: the 9.5 MB of weights need all three devices
    p = run(short + ["--devices", "cpu,vulkan:0,opencl:0", "--memory-limit", "5M", "--stats"])
    check(p.returncode == 0, f"three devices: exit {p.returncode}: {p.stderr}")
    check(tokens(p) == singles["cpu"], f"three devices: {tokens(p)} vs {singles['cpu']}")
    m = re.search(r"^placement:(.*)$", p.stderr, re.M)
    check(m is not None and all(d in m.group(1) for d in ("cpu", "vulkan:0", "opencl:0")),
          f"placement over the three devices: {p.stderr}")
    print(m and m.group(0))
    check("device cpu,vulkan:0,opencl:0" in p.stderr, f"info.device: {p.stderr}")
    # the activations of every boundary between two devices, for every token run (8 of the
    # prompt in chunks of 5 and 3, then 6 decoded), and nothing routed elsewhere
    v = moves(p, "three devices, f32")
    if v:
        want = v["tokens"] * crossings(p) * boundary_bytes(4)
        check(crossings(p) == 2 and v["boundaries"] == want and v["routed"] == 0 and
              v["engram"] == 0,
              f"three devices: boundaries {v['boundaries']} vs {want} ({crossings(p)} crossings)")
    # the experts of every layer split over the three instead (the dense part on the cpu)
    p = run(short + ["--devices", "cpu,vulkan:0,opencl:0", "--split", "experts",
                     "--memory-limit", "8M", "--stats"])
    check(p.returncode == 0 and tokens(p) == singles["cpu"],
          f"split experts: {tokens(p)} vs {singles['cpu']}: {p.stderr}")
    # no boundary between devices; each pair sent to vulkan:0 or opencl:0 moves its row out and
    # back (f32 [C] each way), its expert id and weight, in padded plans of 8, 16... rows
    v = moves(p, "split experts, f32")
    if v:
        check(v["boundaries"] == 0 and v["routed"] > 0 and v["routed"] % (8 * C + 8) == 0 and
              v["routed"] // (8 * C + 8) % 8 == 0, f"split experts: routed {v}")
    m = re.search(r"^placement: dense part on cpu; experts of every layer:(.*)$", p.stderr, re.M)
    check(m is not None and all(f"on {d};" in m.group(1) for d in ("cpu", "vulkan:0", "opencl:0")),
          f"expert placement over the three devices: {p.stderr}")
    print(m and m.group(0))
    p = run(short + ["--devices", "cpu,opencl:0", "--split", "rows"])
    check(p.returncode == 2 and "--split" in p.stderr, f"--split rows: {p.stderr}")
    # no limit: by their memory (vulkan:0 reports less), still the same tokens
    p = run(short + ["--devices", "opencl:0,cpu"])
    check(p.returncode == 0 and tokens(p) == singles["cpu"], f"opencl:0,cpu: {p.stderr}")
    for bad, why in ((["--devices", "cpu,cpu"], "named twice"),
                     (["--devices", "cpu,nope:1"], "nope:1"),
                     (["--devices", "cpu,opencl:0", "--memory-limit", "2M"], "over its budget"),
                     (["--devices", "cpu,,opencl:0"], "comma-separated")):
        p = run(short + bad)
        check(p.returncode == 1 and why in p.stderr, f"{bad}: {p.returncode} {p.stderr}")
    # Engram (layers 1 and 3): the hash segment on the first device, the rows copied from the
    # mapped checkpoint; 8 MiB each puts layer 1 on one device and layer 3 on the other, in
    # both orders (so the hash segment runs on each), and the experts split with the dense
    # part (and the Engram blocks) on the first. OpenCL is left out: on it alone this model
    # gives other tokens (not a matter of the split).
    eone = run(ebase)
    check(eone.returncode == 0 and tokens(eone), f"Engram, one process: {eone.stderr}")
    for devs, extra, want in (
            ("cpu,vulkan:0", [], "layers 0-1 on cpu; layers 2-3 + head on vulkan:0"),
            ("vulkan:0,cpu", [], "layers 0-1 on vulkan:0; layers 2-3 + head on cpu"),
            ("cpu,vulkan:0", ["--split", "experts"], "dense part on cpu")):
        p = run(ebase + ["--devices", devs, "--memory-limit", "8M", "--stats"] + extra)
        check(p.returncode == 0 and tokens(p) == tokens(eone),
              f"Engram over {devs} {extra}: {tokens(p)} vs {tokens(eone)}: {p.stderr}")
        check(f"placement: {want}" in p.stderr, f"Engram over {devs} {extra}: {p.stderr}")
        # every Engram layer's rows (T x H x Dh bf16) go to their layer's device, staged at the
        # step's start; the split boundary hands bf16 X under the reference numerics
        v = moves(p, f"Engram over {devs} {extra}")
        if v:
            rows = v["tokens"] * ENGRAM_HEADS * ENGRAM_HEAD_DIM * 2 * len(ENGRAM_LAYERS)
            check(v["engram"] == rows and v["early"] >= rows,
                  f"Engram over {devs}: rows {v['engram']} vs {rows}, early {v['early']}")
            if not extra:
                want = v["tokens"] * crossings(p) * boundary_bytes(2)
                check(crossings(p) == 1 and v["boundaries"] == want,
                      f"Engram over {devs}: boundaries {v['boundaries']} vs {want}")

else:
    help_text = run(["--help"]).stdout
    if "--expert-parallel" not in help_text or not mpirun:
        print("skipped: no MPI")
        sys.exit(77)
    probe = run(base + ["--expert-parallel", "--tokens", "1"])
    if "built without MPI" in probe.stderr:
        print("skipped: vnrt-generate was built without MPI")
        sys.exit(77)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    if os.environ.get("VNRT_SANITIZED"):
        # The sanitizer leg: Open MPI's runtime leaks at MPI_Finalize (hundreds of blocks in
        # libmpi, libopen-pal, hwloc and its unloaded components); the exchange code itself
        # runs in one process, leak-checked, in ep_local.
        env["LSAN_OPTIONS"] = env.get("LSAN_OPTIONS", "") + ":detect_leaks=0"
    os.environ.update(env)
    for n in (2, 3):
        mp = [mpirun, "-np", str(n), "--oversubscribe"]
        out = os.path.join(work, f"mpi{n}.npy")
        p = run(base + ["--expert-parallel", "--logits-out", out], prefix=mp)
        check(p.returncode == 0, f"-np {n}: exit {p.returncode}: {p.stdout} {p.stderr}")
        check(tokens(p) == ref_tokens, f"-np {n}: tokens {tokens(p)} vs {ref_tokens}")
        check(p.stdout.count("generated:") == 1, f"-np {n}: only rank 0 prints: {p.stdout}")
        if p.returncode == 0:
            got = np.load(out)
            check(np.array_equal(got, ref_logits),
                  f"-np {n}: logits differ by {np.abs(got - ref_logits).max()}")
        for r in range(n):
            m = re.search(rf"ep rank {r} of {n}: experts \[\d+, \d+\) of 16; (\d+) tokens.*"
                          r"dispatch (\d+), combine (\d+), gather (\d+) bytes; waiting on the "
                          r"exchange ([\d.]+) s.*; f32 rows; exchange in flight ([\d.]+) s, "
                          r"overlapped ([\d.]+) s \(([\d.]+)%\), of which the shared expert "
                          r"([\d.]+) s", p.stderr)
            check(m is not None and m.group(1) == "13", f"-np {n} rank {r}: {p.stderr}")
            if m:  # waiting is part of the flight; the rest overlapped this rank's own work,
                # the shared expert (run while the dispatch flew) among it
                wait, flight, hidden = float(m.group(5)), float(m.group(6)), float(m.group(7))
                shared = float(m.group(9))
                check(wait <= flight + 0.002 and abs(flight - wait - hidden) <= 0.002,
                      f"-np {n} rank {r}: wait {wait}, flight {flight}, overlapped {hidden}")
                check(0 <= shared <= hidden + 0.002,
                      f"-np {n} rank {r}: shared expert {shared} s, overlapped {hidden}")
        print(p.stderr)
    # Engram over MPI: every rank holds its slice and fetches the rest
    for n in (2, 3):
        rows_file = os.path.join(work, f"engram-mpi-rows-{n}.txt")
        p = run(ebase + ["--expert-parallel", "--logits-out", os.path.join(work, "engram-run.npy"),
                         "--ep-engram-out", rows_file],
                prefix=[mpirun, "-np", str(n), "--oversubscribe"])
        check_engram(p, n, rows_file, f"Engram -np {n}")
        # every layer's fetch started before layer 0 (one allgather each), finished before it
        p = run(ebase + ["--expert-parallel", "--ep-engram-early", "--logits-out",
                         os.path.join(work, "engram-run.npy"), "--ep-engram-out", rows_file],
                prefix=[mpirun, "-np", str(n), "--oversubscribe"])
        check_engram(p, n, rows_file, f"Engram -np {n} early")
        print("\n".join(l for l in p.stderr.splitlines() if "engram" in l))
    # a rank stalled in layer 1's Engram fetch (before its MoE exchange): named, both end
    p = run(ebase + ["--expert-parallel", "--ep-stall", "1:1", "--ep-timeout", "1.5"],
            prefix=[mpirun, "-np", "2", "--oversubscribe"], timeout=60)
    check(p.returncode != 0, "a rank stalled in the Engram fetch: exit 0")
    check("rank 0 of 2: exchange timed out after 1.5 s in layer 1 (waiting for the Engram counts "
          "of rank 1)" in p.stderr, f"a rank stalled in the Engram fetch: {p.stderr}")
    # FP8 rows over MPI: the same logits, a quarter of the dispatch bytes; and the pairs run
    # in 1 or 3 waves instead of 2 (the default): the same logits
    for extra in (["--ep-wire", "fp8", "--ep-waves", "3"], ["--ep-waves", "1"],
                  ["--ep-shared-before"]):
        out = os.path.join(work, "mpi2-extra.npy")
        p = run(base + ["--expert-parallel", "--logits-out", out] + extra,
                prefix=[mpirun, "-np", "2", "--oversubscribe"])
        check(p.returncode == 0 and tokens(p) == ref_tokens, f"-np 2 {extra}: {p.stderr}")
        if p.returncode == 0:
            got = np.load(out)
            check(np.array_equal(got, ref_logits),
                  f"-np 2 {extra}: logits differ by {np.abs(got - ref_logits).max()}")
        wire = "fp8" if "fp8" in extra else "f32"
        check(p.stderr.count(f"{wire} rows") == 2, f"-np 2 {extra}: statistics: {p.stderr}")
    # a rank that stalls without failing: the other times out, names the layer and the rank
    # it waits for, and ends both (the subprocess timeout is only a backstop)
    p = run(base + ["--expert-parallel", "--ep-stall", "1:2", "--ep-timeout", "1.5"],
            prefix=[mpirun, "-np", "2", "--oversubscribe"], timeout=60)
    check(p.returncode != 0, "a stalled rank: exit 0")
    check("rank 0 of 2: exchange timed out after 1.5 s in layer 2 (waiting for the counts of "
          "rank 1)" in p.stderr, f"a stalled rank: the message: {p.stderr}")
    check("rank 1 of 2: stalling in layer 2" in p.stderr, f"a stalled rank: {p.stderr}")
    # one that never finishes loading: the others wait 10 x --ep-timeout for it
    p = run(base + ["--expert-parallel", "--ep-stall", "0:load", "--ep-timeout", "0.2"],
            prefix=[mpirun, "-np", "2", "--oversubscribe"], timeout=60)
    check(p.returncode != 0, "a rank stalled after the load: exit 0")
    check("rank 1 of 2: exchange timed out after 2 s before the first layer (waiting for the "
          "other ranks to load the model)" in p.stderr, f"a rank stalled after the load: {p.stderr}")
    # a rank that cannot load ends them all, naming itself and the cause
    p = run(base + ["--expert-parallel", "--ep-fail-rank", "1"],
            prefix=[mpirun, "-np", "2", "--oversubscribe"], timeout=60)
    check(p.returncode != 0, "a failing rank: exit 0")
    check("rank 1 of 2" in p.stderr and "no-such-checkpoint" in p.stderr,
          f"a failing rank: the message: {p.stderr}")
if failures:
    sys.exit(f"{len(failures)} failures")
print("ok")
