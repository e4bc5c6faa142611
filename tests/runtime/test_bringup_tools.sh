#!/usr/bin/env bash
# The bring-up tools end to end (docs/porting.md): vnrt-run --stats --nodes, --shadow and
# --reference; vnrt-validate's progress, coverage, "ran nothing" rows, --list filters, JSON and
# coverage matrix, on the built-in devices, the template plugin and a plugin with a wrong add
# kernel (tests/runtime/buggy). JSON is read with /usr/bin/python3 when it has json (stdlib).
# vnrt-bench --graph, its fallback marking, its --check (shadowed nodes) and its plot too.
# usage: test_bringup_tools.sh VNRT_RUN VNRT_VALIDATE TEMPLATE_DIR BUGGY_DIR VNRT_BENCH
set -u
RUN=${1:?usage}; VALIDATE=${2:?usage}; TEMPLATE=${3:?usage}; BUGGY=${4:?usage}; BENCH=${5:?usage}
case "$BENCH" in /*) ;; *) BENCH=$PWD/$BENCH ;; esac
case "$RUN" in /*) ;; *) RUN=$PWD/$RUN ;; esac
case "$VALIDATE" in /*) ;; *) VALIDATE=$PWD/$VALIDATE ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/vnrt_bringup.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
unset VNRT_DEVICE VNRT_SHADOW VNRT_PROFILE VNRT_BUGGY_OP VNRT_BUGGY_NODE VNRT_BUGGY_STEPS
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
PY=/usr/bin/python3

# A graph and its inputs: x, y f32[2, 4] (all 1.0 and 2.0), w f32[4, 4] identity.
cat >g.vnir <<'G'
vnir 1
input x: f32[2, 4]
input y: f32[2, 4]
param w: f32[4, 4]
h = add(x, y)
m = matmul(h, w)
t = add(m, h)
output t
G
npy() { # npy FILE SHAPE COUNT HEXFLOAT...: <f4 data, little-endian words given big-endian
  local file=$1 shape=$2 v
  shift 2
  local dict="{'descr': '<f4', 'fortran_order': False, 'shape': $shape, }"
  local total=$((10 + ${#dict} + 1)) pad hlen
  pad=$(((64 - total % 64) % 64)); hlen=$((${#dict} + 1 + pad))
  {
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
    printf '%s%*s\n' "$dict" "$pad" ""
    for v in "$@"; do printf "\\x${v:6:2}\\x${v:4:2}\\x${v:2:2}\\x${v:0:2}"; done
  } >"$file"
}
ONE=3f800000; TWO=40000000; ZERO=00000000
npy x.npy "(2, 4)" $ONE $ONE $ONE $ONE $ONE $ONE $ONE $ONE
npy y.npy "(2, 4)" $TWO $TWO $TWO $TWO $TWO $TWO $TWO $TWO
npy w.npy "(4, 4)" $ONE $ZERO $ZERO $ZERO $ZERO $ONE $ZERO $ZERO $ZERO $ZERO $ONE $ZERO \
  $ZERO $ZERO $ZERO $ONE
IN=(--input x=x.npy --input y=y.npy --input w=w.npy)
PLUG="$TEMPLATE:$BUGGY"

# ---- vnrt-run --stats --nodes on every device ---------------------------------------------
for dev in cpu vulkan:0 opencl:0 template:0 buggy:0; do
  VNRT_PLUGIN_PATH=$PLUG "$RUN" g.vnir --device "$dev" "${IN[@]}" --stats --nodes >out 2>err
  rc=$?
  if [ $rc -ne 0 ]; then
    grep -q "no device\|not found\|No device" err && continue # a backend not built here
    fail "--stats --nodes on $dev: exit $rc: $(cat err)"; continue
  fi
  grep -q "t: f32\[2, 4\] = \[6, 6, 6" out || fail "$dev: wrong result: $(cat out)"
  grep -Eq "^ +1  m +matmul +(cpu\*?|$dev) " err || fail "$dev: no node line for m: $(cat err)"
  grep -Eq "^add +2 " err || fail "$dev: no per-op row for add: $(cat err)"
  grep -q "share" err || fail "$dev: no per-op table"
  case $dev in
    template:0) grep -Eq "^ +0  h +add +cpu\* " err || fail "template: h not marked fallback" ;;
    buggy:0) grep -Eq "^ +0  h +add +buggy:0 " err || fail "buggy: h not on the plugin" ;;
  esac
  # Which clock timed each node: the device's own (run_timed) on the built-in backends and on
  # the cpu running a fallback node; the host clock on a plugin without the slot.
  case $dev in
    buggy:0) want=host ;;
    *) want=device ;;
  esac
  grep -Eq "^ +0  h +add +[^ ]+ +[0-9]+ +[0-9.]+ $want " err ||
    fail "$dev: h not timed by the $want clock: $(cat err)"
  grep -Eq "^ +1  m +matmul +[^ ]+ +[0-9]+ +[0-9.]+ device " err ||
    fail "$dev: m not timed by the device clock: $(cat err)"
done
"$RUN" g.vnir "${IN[@]}" --nodes >/dev/null 2>err && fail "--nodes without --stats accepted"

# ---- vnrt-run --reference: every node on the cpu reference kernels -------------------------
VNRT_PLUGIN_PATH=$PLUG VNRT_BUGGY_OP=add "$RUN" g.vnir --device buggy:0 --reference "${IN[@]}" \
  --stats --nodes >out 2>err || fail "--reference: $(cat err)"
grep -q "device buggy:0 is ignored" err || fail "--reference did not say it ignores --device"
grep -q "t: f32\[2, 4\] = \[6, 6, 6" out || fail "--reference ran the plugin's wrong add: $(cat out)"
grep -Eq "^ +0  h +add +cpu " err || fail "--reference: h not on the cpu: $(cat err)"

# ---- vnrt-run --shadow -------------------------------------------------------------------
VNRT_PLUGIN_PATH=$PLUG "$RUN" g.vnir --device buggy:0 "${IN[@]}" --shadow >out 2>err ||
  fail "--shadow on correct kernels: exit $?: $(cat err)"
grep -q "3 nodes compared with the cpu reference kernels, 0 out of tolerance" err ||
  fail "--shadow clean: $(cat err)"
VNRT_PLUGIN_PATH=$PLUG VNRT_BUGGY_NODE=t "$RUN" g.vnir --device buggy:0 "${IN[@]}" --shadow \
  --shadow-dir sd >out 2>err
[ $? -eq 1 ] || fail "--shadow with a wrong kernel: expected exit 1: $(cat err)"
grep -q "node 't' (add f32\[2, 4\], f32\[2, 4\] -> f32\[2, 4\]) at step 2 on buggy:0" err ||
  fail "--shadow did not name t: $(cat err)"
grep -q "shadow: FAIL step 2 't'" err || fail "--shadow summary: $(cat err)"
[ -s sd/t.vnir ] && [ -s sd/t.in0.npy ] && [ -s sd/t.in1.npy ] || fail "--shadow saved nothing"

# ---- vnrt-validate -----------------------------------------------------------------------
"$VALIDATE" --op add --list >out 2>err || fail "--list: $(cat err)"
[ "$(grep -cv ' add ' out)" -eq 0 ] || fail "--list --op add lists other ops: $(cat out)"
[ "$(wc -l <out)" -ge 3 ] || fail "--list --op add lists too little"
"$VALIDATE" --case 3 --list >out || fail "--case --list"
[ "$(wc -l <out)" -eq 1 ] && grep -q "^  3 " out || fail "--list --case 3: $(cat out)"
"$VALIDATE" --case 99999 --list >/dev/null 2>err && fail "--case out of range accepted"

"$VALIDATE" --plugin-path "$PLUG" --device cpu --device template:0 --op add --op silu \
  --json v.json --matrix m.md >out 2>err || fail "validate cpu+template: $(cat out err)"
grep -q "^vnrt-validate: cpu \[.*\] add .*passed" err || fail "no progress on stderr: $(cat err)"
grep -Eq "^add +template:0 +[0-9]+ +0 +0 +0 +[0-9]+ +0.0% +- +\(ran nothing\)" out ||
  fail "template rows do not say they ran nothing: $(cat out)"
grep -Eq "^  cpu +100.0%" out || fail "no cpu coverage line: $(cat out)"
grep -Eq "^  template:0 +0.0%: .* [0-9]+ unsupported; ops: 0 of 2 all pass, 2 ran nothing" out ||
  fail "no template coverage line: $(cat out)"
grep -q "^| op | dtype | cpu | template:0 |" m.md || fail "matrix header: $(cat m.md)"
grep -q "^| add | f32 | pass [0-9]*/[0-9]* | unsupported |" m.md || fail "matrix row: $(cat m.md)"
"$VALIDATE" --device cpu --op add --matrix m.html -q >/dev/null || fail "html matrix"
grep -q "<table>" m.html || fail "html matrix has no table"

# A plugin with a wrong add: failures carry NMSE, tolerance and message in the JSON.
VNRT_BUGGY_OP=add "$VALIDATE" --plugin-path "$PLUG" --device buggy:0 --op add --op silu \
  --json b.json -q >out 2>err
[ $? -eq 1 ] || fail "validate on the buggy plugin: expected exit 1: $(cat out)"
grep -q "^FAIL buggy:0 add" out || fail "no FAIL line: $(cat out)"
if $PY -c 'import json' 2>/dev/null; then
  $PY - v.json b.json <<'P' || fail "JSON checks"
import json, sys
v = json.load(open(sys.argv[1]))
assert v["vnrt_version"] and v["tool"] == "vnrt-validate", v.keys()
devs = {d["spec"]: d for d in v["devices"]}
assert devs["cpu"]["driver"] and devs["template:0"]["coverage"] == 0.0, devs
c = [x for x in v["cases"] if x["device"] == "cpu"][0]
assert c["status"] == "pass" and c["tolerance"] == 1e-7 and isinstance(c["nmse"], float), c
t = [x for x in v["cases"] if x["device"] == "template:0"][0]
assert t["status"] == "unsupported" and t["nmse"] is None and "cannot run" in t["message"], t
r = [x for x in v["results"] if x["device"] == "template:0"][0]
assert r["ran"] == 0 and r["worst_nmse"] is None, r
b = json.load(open(sys.argv[2]))
f = [x for x in b["failures"] if x["op"] == "add"]
assert f and all(x["status"] == "fail" and x["nmse"] > x["tolerance"] and "NMSE" in x["message"]
                 for x in f), f
assert all(x["op"] == "add" for x in b["failures"]), b["failures"]
P
fi

# ---- vnrt-bench: --graph, fallback marked and excluded, the plot --------------------------
VNRT_PLUGIN_PATH=$PLUG "$BENCH" --graph g.vnir --device buggy:0 --quick --json gb.json >out 2>err ||
  fail "bench --graph: $(cat out err)"
grep -Eq "^ +1  m +matmul +cpu\* " out || fail "bench --graph: m not marked as fallback: $(cat out)"
grep -Eq "^ +0  h +add +buggy:0 " out || fail "bench --graph: no line for h: $(cat out)"
grep -q "excluded from the device's time" out || fail "bench --graph: no fallback note"
grep -q '"fallback": true' gb.json || fail "bench --graph JSON: $(cat gb.json)"
# caches evicted before each timed run unless --hot, the triad beside the whole run
grep -q "cold caches); memory bandwidth (triad) [0-9.]* GB/s" out || fail "bench --graph: $(cat out)"
grep -Eq '"cold_caches": true, "bandwidth_gbps": [0-9]' gb.json || fail "bench --graph JSON: $(cat gb.json)"
VNRT_PLUGIN_PATH=$PLUG "$BENCH" --graph g.vnir --device buggy:0 --quick --hot >out 2>err ||
  fail "bench --graph --hot: $(cat out err)"
grep -q "hot caches)" out || fail "bench --graph --hot: $(cat out)"
# quantized params (random codes and scales, as a checkpoint has them) bind and run
cat >q.vnir <<'G'
vnir 1
input x: f32[2, 256]
param w8: e4m3[200, 256]
param w8_scale: e8m0[2, 2]
param w4: e2m1[64, 256]
param w4_scale: e8m0[64, 8]
y8 = linear(x, w8, w8_scale, act_quant=128)
y4 = linear(x, w4, w4_scale)
output y8, y4
G
# (--check: every node also beside its reference kernel, against docs/ops.md's tolerances)
"$BENCH" --graph q.vnir --device cpu --quick --check >out 2>err ||
  fail "bench --graph --check (FP8/FP4): $(cat out err)"
grep -Eq "^ +1  y4 +linear +cpu .*e2m1\[64, 256\]" out || fail "bench --graph (FP8/FP4): $(cat out)"
grep -q "^check (.*): 2 nodes compared, 0 over tolerance, 0 not compared; worst NMSE" out ||
  fail "bench --graph --check (FP8/FP4): $(cat out)"
VNRT_PLUGIN_PATH=$PLUG VNRT_BUGGY_NODE=t "$BENCH" --graph g.vnir --device buggy:0 --quick --check \
  --json gc.json >out 2>err && fail "bench --graph --check: a wrong node passed: $(cat out)"
grep -q "^CHECK FAIL step 2  t (add on buggy:0): NMSE" out || fail "bench --graph --check: $(cat out)"
grep -q "3 nodes compared, 1 over tolerance" out || fail "bench --graph --check: $(cat out)"
grep -q '"name": "h".*"nmse": 0}' gc.json || fail "bench --graph --check JSON: $(cat gc.json)"
# A bf16 result is held to vnrt_result_tolerance: one rounding the other way in 1% of the
# elements is what two correct kernels may differ by; one in every other element (a truncating
# kernel) or a wrong element is not.
cat >b.vnir <<'G'
vnir 1
input a: bf16[4, 1024]
input b: bf16[4, 1024]
s = add(a, b)
output s
G
for steps in 100 2 0; do
  VNRT_PLUGIN_PATH=$PLUG VNRT_BUGGY_NODE=s VNRT_BUGGY_STEPS=$steps "$BENCH" --graph b.vnir \
    --device buggy:0 --quick --check >out 2>err
  rc=$?
  if [ $steps = 100 ]; then
    [ $rc -eq 0 ] && grep -q "1 nodes compared, 0 over tolerance" out ||
      fail "bench --check: bf16 roundings in 1% of s failed: $(cat out err)"
  else
    [ $rc -eq 1 ] && grep -q "^CHECK FAIL step 0  s (add on buggy:0): NMSE .* over the tolerance 2.57e-06" out ||
      fail "bench --check: bf16 bug (steps $steps) passed: $(cat out err)"
  fi
done
VNRT_PLUGIN_PATH=$PLUG "$BENCH" --device template:0 --op rms_norm --quick --no-cpu --json fb.json \
  --plot fb.svg >out 2>err || fail "bench on the template: $(cat out err)"
[ "$(grep -c "FALLBACK: the cpu ran 1 of 1 nodes; not template:0's time, excluded" out)" -eq 3 ] ||
  fail "bench: fallback results not marked: $(cat out)"
grep -q '"excluded": true, "fallback_time_ms": [0-9.e+-]*, "time_ms": null' fb.json ||
  fail "bench JSON keeps a fallback time as the device's: $(cat fb.json)"
grep -q "<rect" fb.svg && fail "bench plot shows fallback results"
"$BENCH" --device cpu --op softmax --quick --plot cpu.svg >out 2>err || fail "bench plot on cpu"
[ "$(grep -c "<rect" cpu.svg)" -eq 3 ] || fail "bench plot: expected 3 bars vs the triad"
grep -q "vs triad" cpu.svg || fail "bench plot: no triad label"

[ $FAILS -eq 0 ] && echo "all bring-up tool checks passed"
exit $((FAILS > 0))
