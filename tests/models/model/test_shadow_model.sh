#!/usr/bin/env bash
# Shadow mode on the DeepSeek-V4 model (docs/porting.md, "Shadow a model"): the tiny checkpoint
# runs on a test plugin whose add kernel is wrong on one node (tests/runtime/buggy); with
# VNRT_SHADOW=cpu every node of the model is compared with the CPU reference kernel, and the
# run must name exactly that node, save it, and the saved node must replay with vnrt-run.
# usage: test_shadow_model.sh VNRT_GENERATE VNRT_RUN CHECKPOINT_DIR BUGGY_PLUGIN_DIR
set -u
GEN=${1:?usage}; RUN=${2:?usage}; CKPT=${3:?usage}; PLUGINS=${4:?usage}
case "$RUN" in /*) ;; *) RUN=$PWD/$RUN ;; esac
case "$GEN" in /*) ;; *) GEN=$PWD/$GEN ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/vnrt_shadow_model.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
export VNRT_PLUGIN_PATH=$PLUGINS
unset VNRT_BUGGY_OP VNRT_BUGGY_NODE VNRT_PROFILE
gen() { "$GEN" --model "$CKPT" --prompt-ids "1 2 3" --tokens 2 --device buggy:0 --numerics f32; }

# Correct kernels: every node agrees, nothing is saved.
VNRT_SHADOW=cpu VNRT_SHADOW_DIR="$T/clean" gen >"$T/clean.out" 2>"$T/clean.err" ||
  fail "clean run failed: $(cat "$T/clean.err")"
grep -q "out of tolerance" "$T/clean.err" && fail "correct kernels reported: $(cat "$T/clean.err")"
[ -e "$T/clean" ] && fail "a clean run saved files"

# The injected bug: the plugin's add is wrong on node l0.ffn.sum only.
VNRT_SHADOW=cpu VNRT_SHADOW_DIR="$T/sh" VNRT_BUGGY_NODE=l0.ffn.sum gen >"$T/bug.out" \
  2>"$T/bug.err" || fail "buggy run failed: $(cat "$T/bug.err")"
cat "$T/bug.err" | grep -v "nodes run on the cpu instead"
grep -q "shadow: node 'l0.ffn.sum' (add f32\[3, 256\], f32\[3, 256\] -> f32\[3, 256\]) at step [0-9]* on buggy:0 differs" "$T/bug.err" ||
  fail "the wrong node was not named"
grep -q "1 of 190 nodes compared are out of tolerance" "$T/bug.err" ||
  fail "expected exactly one node of 190 out of tolerance"
for f in l0_ffn_sum.vnir l0_ffn_sum.in0.npy l0_ffn_sum.in1.npy l0_ffn_sum.out0.device.npy \
  l0_ffn_sum.out0.ref.npy; do
  [ -s "$T/sh/$f" ] || fail "$f was not saved"
done

# Replay: the saved node alone, shadowed on the plugin (the bug is on every add now).
cd "$T" || exit 1
VNRT_BUGGY_OP=add "$RUN" sh/l0_ffn_sum.vnir --device buggy:0 --input in0=sh/l0_ffn_sum.in0.npy \
  --input in1=sh/l0_ffn_sum.in1.npy --shadow --shadow-dir replay >replay.out 2>replay.err
rc=$?
[ $rc -eq 1 ] || fail "replay: expected exit 1 (out of tolerance), got $rc: $(cat replay.err)"
grep -q "shadow: FAIL step 0 'out0' (add on buggy:0)" replay.err || fail "replay: $(cat replay.err)"
# ... and on the reference kernels it gives the saved reference result.
"$RUN" sh/l0_ffn_sum.vnir --reference --input in0=sh/l0_ffn_sum.in0.npy \
  --input in1=sh/l0_ffn_sum.in1.npy --output out0=ref.npy 2>ref.err || fail "reference replay"
cmp -s ref.npy sh/l0_ffn_sum.out0.ref.npy || fail "the replayed reference result differs"

[ $FAILS -eq 0 ] && echo "all shadow model checks passed"
exit $((FAILS > 0))
