#!/usr/bin/env python3
"""Mutation check of the test suite (docs/mutation.md): run by hand, never in CI.

Each mutation is a one-line change to the sources (a kernel, the parser, a reader, the planner,
the row cache) that a test should notice. For each one the script copies the tree into a
scratch directory (tracked and untracked, not ignored, files; kept between runs so builds are
incremental), applies the change there, builds only the executables of the mutation's tests,
runs them, records which fail (kill the mutation), and restores the file. The working tree is
never modified.

Tests are meson test names (as `meson test --list` prints them) or `validate:DEVICE` (vnrt-validate
--device DEVICE, every case). A test that already fails without any mutation is reported and
does not count as a kill.

  tools/mutate.py                     # every mutation
  tools/mutate.py --only gemm-tail,npy-fortran
  tools/mutate.py --list
  tools/mutate.py --scratch /tmp/vnrt-mut --jobs 2 --output table.md
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

# id, file, the text to find (a literal on one line, or re:REGEX), which occurrence (1-based; None:
# it must be unique), its replacement, the tests expected to kill it, and what it models.
MUTATIONS = [
    dict(id="vk-rms-eps-outside-sqrt",
         file="shaders/vulkan/rownorm.comp",
         find="float inv = 1.0 / sqrt(ss / float(pc.len) + pc.eps);", nth=1,
         repl="float inv = 1.0 / (sqrt(ss / float(pc.len)) + pc.eps);",
         tests=["test_conformance_ops", "test_vulkan", "validate:vulkan:0"],
         what="Vulkan rms_norm, one invocation per row: eps outside the square root"),
    dict(id="ref-hc-pre-post-sigma",
         file="backends/cpu/ref_mhc.c",
         find="float post = 2.0f * sigmoid_f32(", nth=None,
         repl="float post = 1.0f * sigmoid_f32(",
         tests=["test_conformance_mhc_moe_reference", "validate:cpu"],
         what="CPU reference hc_pre: post = sigma instead of 2 sigma"),
    dict(id="ref-attention-sink-dropped",
         file="backends/cpu/ref_attention.c",
         find="float denom = j->has_sinks ? expf(sink - m) : 0.0f;", nth=None,
         repl="float denom = 0.0f;",
         tests=["test_conformance_attn_engram_reference", "validate:cpu"],
         what="CPU reference attention: the sink left out of the denominator"),
    dict(id="ref-linear-skips-last-k",
         file="backends/cpu/ref_linalg.c",
         find="for (int64_t kk = 0; kk < j->k; ++kk) {", nth=3,
         repl="for (int64_t kk = 0; kk + 1 < j->k; ++kk) {",
         tests=["test_conformance_ops_reference", "validate:cpu"],
         what="CPU reference linear: the last K term dropped"),
    dict(id="ref-matmul-skips-last-k",
         file="backends/cpu/ref_linalg.c",
         find="for (int64_t kk = 0; kk < j->k; ++kk) {", nth=2,
         repl="for (int64_t kk = 0; kk + 1 < j->k; ++kk) {",
         tests=["test_conformance_ops_reference", "validate:cpu"],
         what="CPU reference matmul: the last K term dropped"),
    dict(id="cl-sinkhorn-iters",
         file="shaders/opencl/mhc.cl",
         find="for (int it = 0; it < (iters > 1 ? iters : 1); ++it) {", nth=None,
         repl="for (int it = 0; it < (iters > 2 ? iters - 1 : 1); ++it) {",
         tests=["test_opencl"],
         what="OpenCL Sinkhorn: one normalisation round too few"),
    dict(id="cl-rope-pair-order",
         file="shaders/opencl/attention.cl",
         find="long i1 = base + first + (interleaved ? 2 * i : i);", nth=None,
         repl="long i1 = base + first + (interleaved ? i : 2 * i);",
         tests=["test_opencl"],
         what="OpenCL rope: the pairing of interleaved and half-split channels swapped"),
    dict(id="cl-ngram-modulo",
         file="shaders/opencl/engram.cl",
         find="if (r < 0) r += p;", nth=None,
         repl="(void)0;",
         tests=["test_opencl"],
         what="OpenCL ngram_hash: truncating instead of floor modulo"),
    dict(id="cpu-gemm-tail-skip",
         file="backends/cpu/fast_gemm.c",
         find="for (int64_t j0 = 0; j0 < n; j0 += CPU_GEMM_NB) {", nth=None,
         repl="for (int64_t j0 = 0; j0 + CPU_GEMM_NB <= n; j0 += CPU_GEMM_NB) {",
         tests=["test_cpu_backend", "vnrt-validate-cpu-generic"],
         what="CPU portable GEMM: the last partial column block skipped"),
    dict(id="cpu-gemm-avx512-k-tail",
         file="backends/cpu/fast_gemm_avx512.c",
         find="if (kk < kc) Z_STEP_((__mmask16)((1u << (kc - kk)) - 1))", nth=None,
         repl="(void)0;",
         tests=["test_cpu_backend", "test_conformance_ops"],
         what="CPU AVX-512 GEMM: the last K elements past the 16-wide steps dropped"),
    dict(id="cpu-gemm-avx512-reduce8-pairs",
         file="backends/cpu/fast_gemm_avx512.c",
         find="_mm512_shuffle_ps(c, c, 0xB1)", nth=None,
         repl="_mm512_shuffle_ps(c, c, 0x4E)",
         tests=["test_cpu_backend", "test_conformance_ops"],
         what="CPU AVX-512 GEMM: the 8-sum reduction adds the wrong partial-sum pairs"),
    dict(id="cpu-rms-norm-tail-unweighted",
         file="backends/cpu/fast_rows.c",
         find="if (j->w) v *= cpu_load_f32(j->w, j->dw, i);", nth=None,
         repl="(void)0;",
         tests=["test_cpu_backend", "test_conformance_ops"],
         what="CPU fast rms_norm: the elements past the vectors (and the portable path) not times w"),
    dict(id="cpu-softmax-online-no-rescale",
         file="backends/cpu/fast_rows.c",
         find="s = _mm256_mul_ps(s, rescale);", nth=None,
         repl="(void)rescale;",
         tests=["test_cpu_backend", "test_conformance_ops"],
         what="CPU fast softmax, long rows: the running sums not rescaled when the max grows"),
    dict(id="cpu-binary-column-as-scalar",
         file="backends/cpu/fast_rows.c",
         find="o->row_step = 1, o->step = 0;", nth=None,
         repl="o->row_step = 0, o->step = 0;",
         tests=["test_cpu_backend", "test_conformance_ops"],
         what="CPU fast binaries: a column operand read as one scalar for every row"),
    dict(id="cpu-hadamard-stage-2-lanes",
         file="backends/cpu/fast_rows.c",
         find="_mm256_sub_ps(sw, v), 0xCC);", nth=None,
         repl="_mm256_sub_ps(sw, v), 0x33);",
         tests=["test_cpu_backend", "test_conformance_quant"],
         what="CPU fast hadamard (AVX2): the h = 2 stage's sums and differences in swapped lanes"),
    # The AVX-512 one-row GEMVs (fast_quant.c): killed only on a machine with AVX-512.
    dict(id="cpu-qgemv-e4m3-nan-unseen",
         file="backends/cpu/fast_quant.c",
         find="return !big && !_mm512_cmpeq_epi8_mask(seen, m7f);", nth=None,
         repl="return !big;",
         tests=["test_cpu_backend"],
         what="CPU FP8 GEMV (AVX-512): a NaN code decoded as 480 instead of sending the rows to the panels"),
    dict(id="cpu-qgemv-e4m3-big-scale",
         file="backends/cpu/fast_quant.c",
         find="big |= sc > 246;", nth=None,
         repl="big |= sc > 247;",
         tests=["test_conformance_qweights"],
         what="CPU FP8 GEMV (AVX-512): scale 2^120, whose 2^8-biased f32 bits are Inf, kept in registers"),
    dict(id="cpu-qgemv-e2m1-zero-scale",
         file="backends/cpu/fast_quant.c",
         find="bad |= _mm_mask_cmpgt_epu8_mask(m, _mm_sub_epi8(sb, one), top);", nth=None,
         repl="bad |= _mm_mask_cmpgt_epu8_mask(m, sb, top);",
         tests=["test_conformance_qweights"],
         what="CPU FP4 GEMV (AVX-512): scale code 0 (2^-127) taken as the f32 bits 0"),
    dict(id="cpu-qgemv-e2m1-nibble-order",
         file="backends/cpu/fast_quant.c",
         find="_mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), table), t1);", nth=None,
         repl="_mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), table), t1);",
         tests=["test_conformance_qweights"],
         what="CPU FP4 GEMV (AVX-512): nibble 3 of each dword read as nibble 2"),
    dict(id="cpu-qpanel-e4m3-nan-finite",
         file="backends/cpu/fast_quant.c",
         find="h = _mm512_mask_mov_epi16(h, _mm256_cmpeq_epi8_mask(_mm256_and_si256(c, m7f), m7f), fnan);",
         nth=None,
         repl="h = h;",
         tests=["test_cpu_backend"],
         what="CPU FP8 panels (AVX-512 dequant): NaN codes decoded as 480 instead of NaN"),
    dict(id="cpu-qgemv-e4m3-chunk-x",
         file="backends/cpu/fast_quant.c",
         find="exact = e8eo    ? avx512_qkern_e4m3_eo_(xp + k0, wr, pfp, sr, kc, bc, s)", nth=None,
         repl="exact = e8eo    ? avx512_qkern_e4m3_eo_(xp, wr, pfp, sr, kc, bc, s)",
         tests=["test_conformance_qweights"],
         what="CPU FP8 GEMV (AVX-512), K past 4096: every chunk of codes meets x's first chunk"),
    dict(id="cpu-qgemv-avx2-e4m3-nan-sign",
         file="backends/cpu/fast_quant.c",
         find="seen = _mm256_max_epu8(seen, _mm256_and_si256(w, m7f));", nth=None,
         repl="seen = _mm256_max_epu8(seen, w);",
         tests=["test_cpu_backend"],
         what="CPU FP8 GEMV (AVX2, 32-code steps): the NaN check misses the negative NaN code 0xFF"),
    dict(id="cpu-qgemv-avx2-e2m1-lane-scale",
         file="backends/cpu/fast_quant.c",
         find="_mm256_set_m128(_mm_broadcast_ss(sf[j] + kk / 32 + 1), _mm_broadcast_ss(sf[j] + kk / 32));",
         nth=None,
         repl="_mm256_set_m128(_mm_broadcast_ss(sf[j] + kk / 32), _mm_broadcast_ss(sf[j] + kk / 32));",
         tests=["test_conformance_qweights_avx2"],
         what="CPU FP4 GEMV (AVX2, 64-code steps): the second block of a step takes the first block's scale"),
    dict(id="cpu-moe-clamp-small",
         file="backends/cpu/fast_moe.c",
         find="uv = uv < -limit ? -limit : (uv > limit ? limit : uv);", nth=2,
         repl="uv = uv > limit ? limit : uv;",
         tests=["test_conformance_mhc_moe", "test_cpu_backend", "vnrt-validate-cpu"],
         what="CPU moe_ffn few-token path: up not clamped below at -limit"),
    dict(id="cpu-moe-clamp-fused",
         file="backends/cpu/fast_moe.c",
         find="uv = uv < -limit ? -limit : (uv > limit ? limit : uv);", nth=3,
         repl="uv = uv > limit ? limit : uv;",
         tests=["test_conformance_mhc_moe", "test_cpu_backend", "vnrt-validate-cpu"],
         what="CPU moe_ffn fused path: up not clamped below at -limit"),
    dict(id="safetensors-header-length",
         file="io/safetensors.c",
         find="if (hlen > size - 8) {", nth=None,
         repl="if (hlen > size) {",
         tests=["test_safetensors"],
         what="safetensors: header length checked against the file size, not size - 8"),
    dict(id="stream-slot-from-first-use",
         file="runtime/plan_memory.c",
         find="sl->first = p->stream[k].start, sl->last = p->stream[k].last;", nth=None,
         repl="sl->first = p->stream[k].first, sl->last = p->stream[k].last;",
         tests=["test_offload", "test_buffers"],
         what="planner: a streamed param's arena slot reserved from its first reader, not from "
              "when its copy starts (the copy overwrites a live tensor)"),
    dict(id="reshape-view-short-life",
         file="runtime/plan_memory.c",
         find="if (sl->last > root->last) root->last = sl->last;", nth=None,
         repl="if (0 && sl->last > root->last) root->last = sl->last;",
         tests=["test_state"],
         what="planner: a reshape's view does not stretch its root's live range (a later result "
              "overwrites the view's bytes before its last reader)"),
    dict(id="stream-copy-starts-at-once",
         file="runtime/plan_run.c",
         find="vn_copy_job job = {.after = p->compute_base + (uint64_t)sp->start,", nth=None,
         repl="vn_copy_job job = {.after = p->compute_base,",
         tests=["test_offload", "test_buffers"],
         what="copy stream: a streamed param's copy does not wait for its slot's last reader"),
    dict(id="vnir-negative-dim",
         file="graph/vnir_parse.c",
         find="if (p->tok.i < 0)", nth=None,
         repl="if (p->tok.i < -1)",
         tests=["test_vnir"],
         what="vnir parser: a dimension of -1 accepted"),
    dict(id="npy-fortran-order",
         file="io/npy.c",
         find="if (h.fortran_order)", nth=None,
         repl="if (0)",
         tests=["test_npy"],
         what="npy reader: Fortran-order arrays read as C order"),
    dict(id="row-cache-evicts-pinned",
         file="memory/row_cache.c",
         find="if (c->pin[s] == c->epoch) continue;", nth=None,
         repl="if (0) continue;",
         tests=["test_row_cache", "test_offload"],
         what="row cache (CLOCK): a row pinned by this call may be evicted"),
    dict(id="ref-short-conv-dilation",
         file="backends/cpu/ref_engram.c",
         find="const int64_t r = P + t - (K - 1 - i) * dil;", nth=None,
         repl="const int64_t r = P + t - (K - 1 - i);",
         tests=["test_conformance_attn_engram_reference", "validate:cpu"],
         what="CPU reference short_conv: dilation ignored"),
    dict(id="ref-hc-post-transposed",
         file="backends/cpu/ref_mhc.c",
         find="acc += cpu_load_f32(a->in[3], cdt, (t * n + j) * n + k) *", nth=None,
         repl="acc += cpu_load_f32(a->in[3], cdt, (t * n + k) * n + j) *",
         tests=["test_conformance_mhc_moe_reference", "validate:cpu"],
         what="CPU reference hc_post: comb read transposed"),
    # DeepSeek-V4 ops.
    dict(id="v4-kv-compress-overlap-slot",
         file="backends/cpu/fast_v4.c",
         find="const int64_t row = (p / j->m == j->w0 ? j->m * j->overlap : 0) + p % j->m;",
         nth=None,
         repl="const int64_t row = (p / j->m == j->w0 ? 0 : j->m * j->overlap) + p % j->m;",
         tests=["test_conformance_v4", "vnrt-validate-cpu"],
         what="kv_compress: the open window's state read from the overlap slot"),
    dict(id="v4-sparse-attention-window",
         file="backends/cpu/fast_attention.c",
         find="const int64_t lo = p - j->W + 1 > 0 ? p - j->W + 1 : 0, nwin = p - lo + 1;",
         nth=None,
         repl="const int64_t lo = p - j->W > 0 ? p - j->W : 0, nwin = p - lo + 1;",
         tests=["test_conformance_v4", "vnrt-validate-cpu"],
         what="sparse_attention: the window one key too wide"),
    dict(id="v4-index-scores-visibility",
         file="backends/cpu/fast_v4.c",
         find="const int64_t vis = pos < 0 ? 0 : (pos + 1) / j->ratio;", nth=None,
         repl="const int64_t vis = pos < 0 ? 0 : (pos + j->ratio) / j->ratio;",
         tests=["test_conformance_v4", "vnrt-validate-cpu"],
         what="index_scores: the still-open window's entry visible"),
    dict(id="v4-topk-fill",
         file="backends/cpu/ref_index.c",
         find="if (args->node->params->topk.has_fill && v == -INFINITY) {", nth=None,
         repl="if (0) {",
         tests=["test_conformance_v4", "test_conformance_ops"],
         what="topk: fill not applied to -inf entries"),
]


def sh(cmd, cwd=None, timeout=None, env=None):
    """Runs cmd (a list); returns (exit code, combined output). A timeout counts as exit 124."""
    try:
        r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
        return r.returncode, r.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode("utf-8", "replace") if e.stdout else ""
        return 124, out + "\n(timed out)"


def sync_tree(src, dst):
    """Copies src's tracked and untracked (not ignored) files into dst, only those whose
    contents differ (so an unchanged file keeps its time stamp and the build stays warm)."""
    rc, out = sh(["git", "-C", src, "ls-files", "-co", "--exclude-standard", "-z"])
    if rc != 0:
        sys.exit("git ls-files failed: " + out)
    files = [f for f in out.split("\0") if f]
    os.makedirs(dst, exist_ok=True)
    copied = 0
    for f in files:
        s, d = os.path.join(src, f), os.path.join(dst, f)
        if not os.path.isfile(s) or os.path.islink(s):
            continue
        with open(s, "rb") as fh:
            data = fh.read()
        if os.path.isfile(d):
            with open(d, "rb") as fh:
                if fh.read() == data:
                    continue
        os.makedirs(os.path.dirname(d), exist_ok=True)
        with open(d, "wb") as fh:
            fh.write(data)
        shutil.copymode(s, d)
        copied += 1
    return copied


def find_line(text, m):
    """The (start, end) span of the occurrence of m's pattern the mutation names."""
    pat = m["find"]
    rx = re.compile(pat[3:]) if pat.startswith("re:") else re.compile(re.escape(pat))
    hits = [h for h in rx.finditer(text)]
    if not hits:
        raise ValueError("%s: pattern not found in %s" % (m["id"], m["file"]))
    if m["nth"] is None:
        if len(hits) != 1:
            raise ValueError("%s: pattern occurs %d times in %s (name nth)" %
                             (m["id"], len(hits), m["file"]))
        return hits[0]
    if m["nth"] > len(hits):
        raise ValueError("%s: occurrence %d of %d" % (m["id"], m["nth"], len(hits)))
    return hits[m["nth"] - 1]


def mutated(text, m):
    hit = find_line(text, m)
    return text[:hit.start()] + m["repl"] + text[hit.end():]


class Tests:
    """The build's meson tests: name -> (ninja target of its executable, how to run it)."""

    def __init__(self, build):
        import json
        rc, out = sh(["meson", "introspect", build, "--tests"])
        if rc != 0:
            sys.exit("meson introspect failed: " + out)
        self.build = build
        self.by_name = {}
        for t in json.loads(out):
            exe = t["cmd"][0]
            target = os.path.relpath(exe, build) if exe.startswith(build) else None
            deps = [os.path.relpath(d, build) for d in t.get("depends", []) if d.startswith(build)]
            self.by_name.setdefault(t["name"], (target, deps))

    def targets(self, names):
        out = set()
        for n in names:
            if n.startswith("validate:"):
                out.add("tools/vnrt-validate")
                continue
            if n not in self.by_name:
                sys.exit("unknown test %s (see meson test -C BUILD --list)" % n)
            tgt, _ = self.by_name[n]
            if tgt:
                out.add(tgt)
        return sorted(out)

    def run(self, name, timeout):
        if name.startswith("validate:"):
            exe = os.path.join(self.build, "tools", "vnrt-validate")
            return sh([exe, "--device", name.split(":", 1)[1]], timeout=timeout)
        return sh(["meson", "test", "-C", self.build, "--no-rebuild", "--print-errorlogs", name],
                  timeout=timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--scratch", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                      "vnrt-mutate-" + str(os.getuid())))
    ap.add_argument("--only", default="", help="comma-separated mutation ids")
    ap.add_argument("--jobs", type=int, default=2, help="ninja -j")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test run")
    ap.add_argument("--output", help="also write the result table (markdown) here")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    todo = MUTATIONS
    if args.only:
        ids = args.only.split(",")
        unknown = [i for i in ids if i not in {m["id"] for m in MUTATIONS}]
        if unknown:
            sys.exit("unknown mutation ids: " + ", ".join(unknown))
        todo = [m for m in MUTATIONS if m["id"] in ids]
    if args.list:
        for m in todo:
            print("%-30s %-32s %s" % (m["id"], m["file"], m["what"]))
        return 0

    src = os.path.join(args.scratch, "src")
    build = os.path.join(args.scratch, "build")
    n = sync_tree(args.source, src)
    print("scratch tree %s: %d files updated" % (src, n), flush=True)
    # Every mutation applies to the clean source (fail early on a stale pattern).
    for m in todo:
        with open(os.path.join(src, m["file"])) as fh:
            mutated(fh.read(), m)
    if not os.path.isdir(os.path.join(build, "meson-info")):
        rc, out = sh(["meson", "setup", build, src])
        if rc != 0:
            sys.exit("meson setup failed:\n" + out)
    tests = Tests(build)

    all_tests = sorted({t for m in todo for t in m["tests"]})
    print("building %d test executables" % len(tests.targets(all_tests)), flush=True)
    rc, out = sh(["ninja", "-C", build, "-j", str(args.jobs)] + tests.targets(all_tests))
    if rc != 0:
        sys.exit("the unmutated tree does not build:\n" + out[-4000:])
    baseline_fail = set()
    for t in all_tests:
        rc, out = tests.run(t, args.timeout)
        if rc != 0:
            baseline_fail.add(t)
            print("baseline: %s FAILS without a mutation (not counted)" % t, flush=True)

    rows = []
    for m in todo:
        path = os.path.join(src, m["file"])
        with open(path) as fh:
            orig = fh.read()
        t0 = time.time()
        try:
            with open(path, "w") as fh:
                fh.write(mutated(orig, m))
            rc, out = sh(["ninja", "-C", build, "-j", str(args.jobs)] + tests.targets(m["tests"]))
            if rc != 0:
                rows.append((m, "build fails", [], [], time.time() - t0))
                print("%s: the mutated tree does not build" % m["id"], flush=True)
                continue
            killed, survived = [], []
            for t in m["tests"]:
                if t in baseline_fail:
                    continue
                rc, out = tests.run(t, args.timeout)
                (killed if rc != 0 else survived).append(t)
            verdict = "killed" if killed else "SURVIVED"
            rows.append((m, verdict, killed, survived, time.time() - t0))
            print("%s: %s (killed by: %s; passed: %s) %.0fs" %
                  (m["id"], verdict, ", ".join(killed) or "-", ", ".join(survived) or "-",
                   time.time() - t0), flush=True)
        finally:
            with open(path, "w") as fh:  # a new time stamp: the next build recompiles it
                fh.write(orig)

    lines = ["| mutation | file | what | killed by | not killed by |",
             "|---|---|---|---|---|"]
    for m, verdict, killed, survived, _ in rows:
        kb = ", ".join("`%s`" % t for t in killed) if killed else "**%s**" % verdict
        lines.append("| `%s` | `%s` | %s | %s | %s |" %
                     (m["id"], m["file"], m["what"], kb,
                      ", ".join("`%s`" % t for t in survived) or "-"))
    if baseline_fail:
        lines.append("")
        lines.append("Failing without a mutation (not counted): " +
                     ", ".join("`%s`" % t for t in sorted(baseline_fail)))
    table = "\n".join(lines)
    print()
    print("Mutation results, %s:" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(table)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(table + "\n")
    return 1 if any(v != "killed" for _, v, _, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
