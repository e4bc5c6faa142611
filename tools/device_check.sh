#!/bin/bash
# One short, bounded check of a machine's Vulkan and OpenCL devices (docs/bench.md, "On another
# machine: tools/device_check.sh"): what the machine has, then the memory-bound kernel cases and
# the V4 bench model's decode against its roofline on every Vulkan and OpenCL device vnrt lists,
# beside the CPU backend's. Everything goes to $OUT/report.txt (default ./device-check); each
# command has a time limit, and a missing tool or device is reported, never fatal.
#
#   tools/device_check.sh [BUILD_DIR]     # default: build; built here with meson when absent
#
# Nothing in the project depends on it: it is for a machine lent for one short run (a GPU with
# vendor drivers), whose figures then go into docs/bench.md by hand.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$PWD/device-check}
mkdir -p "$OUT"
REPORT=$OUT/report.txt
: >"$REPORT"
BUILD=${1:-build}
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT

say() { echo "== $*" | tee -a "$REPORT"; }
# run SECONDS CMD...: CMD's output into the report, bounded, its exit status noted.
run() {
  local limit=$1
  shift
  echo "\$ $*" >>"$REPORT"
  timeout "$limit" "$@" >>"$REPORT" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || echo "(exit $rc$([ $rc -eq 124 ] && echo ": over ${limit}s"))" >>"$REPORT"
  return 0
}
have() { command -v "$1" >/dev/null 2>&1; }

say "machine: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) cores"
run 10 sh -c 'grep -m1 "model name" /proc/cpuinfo; free -g | head -2'
have nvidia-smi && run 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.mem --format=csv
have vulkaninfo && run 30 vulkaninfo --summary
have clinfo && run 30 clinfo -l

# The tools: the given build if its binaries run here, else a fresh build of the four tools.
TOOLS=$BUILD/tools
if ! "$TOOLS/vnrt-info" >/dev/null 2>&1; then
  if have meson && have ninja; then
    say "building the tools in build-device-check"
    run 60 meson setup build-device-check
    run 500 ninja -C build-device-check tools/vnrt-info tools/vnrt-bench tools/vnrt-generate \
      tools/vnrt-make-checkpoint
    TOOLS=build-device-check/tools
  fi
fi
if ! "$TOOLS/vnrt-info" >/dev/null 2>&1; then
  say "no runnable vnrt tools (missing libraries or meson/ninja): stopping here"
  exit 0
fi
run 60 "$TOOLS/vnrt-info"
DEVICES=$("$TOOLS/vnrt-info" 2>/dev/null | grep -E '^(vulkan|opencl):[0-9]+$')
say "devices to check: $(echo ${DEVICES:-none besides the cpu})"

# The bench model, FP8/FP4 and BF16 (models/configs; ~0.15 and ~0.28 GB of weights a token).
for cfg in v4-bench v4-bench-bf16; do
  run 120 "$TOOLS/vnrt-make-checkpoint" --config "models/configs/$cfg.json" --out "$TMPD/$cfg"
done
decode() { # DEVICE MODEL TOKENS
  run 240 "$TOOLS/vnrt-generate" --model "$TMPD/$2" --prompt-ids "0 5 7 9 11 13 17 19" \
    --tokens "$3" --device "$1" --stats --roofline
}

say "cpu: the triad and the decode (the roofline's reference)"
run 120 "$TOOLS/vnrt-bench" --device cpu --op rms_norm --min --reps 5
decode cpu v4-bench 64
decode cpu v4-bench-bf16 32
for d in $DEVICES; do
  say "$d: memory-bound kernels and the decode GEMVs (the CPU backend beside each case)"
  run 300 "$TOOLS/vnrt-bench" --device "$d" --op rms_norm --op softmax --op v4_linear \
    --op moe_ffn --min --reps 5
  say "$d: decode of the bench model, FP8/FP4 then BF16"
  decode "$d" v4-bench 64
  decode "$d" v4-bench-bf16 32
done
say "done: $(date -u '+%H:%M UTC')"
