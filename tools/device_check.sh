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
# Paths given relative to where the script was called from, before it moves to the repository.
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
OUT=$(abs "${OUT:-device-check}")
BUILD=$(abs "${1:-build}")
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$OUT"
REPORT=$OUT/report.txt
: >"$REPORT"
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
# The whole check ends within BUDGET seconds (default 540: a lent machine's command limit is
# 600 s): each command gets at most the time left, and none starts with less than 20 s left.
BUDGET=${BUDGET:-540}
END=$((SECONDS + BUDGET))

say() { echo "== $*" | tee -a "$REPORT"; }
have() { command -v "$1" >/dev/null 2>&1; }
if ! have timeout; then
  say "no timeout(1) on this machine: nothing run (every command here must be bounded)"
  exit 0
fi
# run SECONDS CMD...: CMD's output into the report, bounded by SECONDS and by the time left
# (killed 10 s after the polite signal), its exit status noted.
run() {
  local limit=$1 left=$((END - SECONDS))
  shift
  if [ "$left" -lt 20 ]; then
    echo "(skipped, out of time: $*)" >>"$REPORT"
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "\$ $*" >>"$REPORT"
  timeout -k 10 "$limit" "$@" >>"$REPORT" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || echo "(exit $rc$([ $rc -eq 124 ] && echo ": over ${limit}s"))" >>"$REPORT"
  return 0
}
# Whether the tools in $1 run here (a bounded probe).
tools_run() { timeout -k 5 60 "$1/vnrt-info" >/dev/null 2>&1; }

say "machine: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) cores"
run 10 sh -c 'grep -m1 "model name" /proc/cpuinfo; free -g | head -2'
have nvidia-smi && run 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.mem --format=csv
have vulkaninfo && run 30 vulkaninfo --summary
have clinfo && run 30 clinfo -l

# The tools: the given build if its binaries run here, else a fresh build of the four tools.
TOOLS=$BUILD/tools
if ! tools_run "$TOOLS"; then
  if have meson && have ninja; then
    say "building the tools in build-device-check"
    if [ -d build-device-check ]; then
      run 60 meson setup --reconfigure build-device-check
    else
      run 60 meson setup build-device-check
    fi
    run 400 ninja -C build-device-check tools/vnrt-info tools/vnrt-bench tools/vnrt-generate \
      tools/vnrt-make-checkpoint
    TOOLS=$PWD/build-device-check/tools
  fi
fi
if ! tools_run "$TOOLS"; then
  say "no runnable vnrt tools (missing libraries or meson/ninja): stopping here"
  exit 0
fi
run 60 "$TOOLS/vnrt-info"
# Device lines read "vulkan:0" or, for the default device (on a GPU machine usually the GPU),
# "vulkan:0 (default)".
DEVICES=$(timeout -k 5 60 "$TOOLS/vnrt-info" 2>/dev/null |
  sed -nE 's/^((vulkan|opencl):[0-9]+)( \(default\))?$/\1/p')
LIST=${DEVICES:-none besides the cpu}
say "devices to check: ${LIST//$'\n'/ }"

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
