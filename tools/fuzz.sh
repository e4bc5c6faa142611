#!/usr/bin/env bash
# Fuzzes every harness of tests/fuzz for a bounded time under ASan and UBSan (docs/fuzzing.md).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s, every target)
#
# Builds a CPU-only clang build with libFuzzer into build-fuzz/ (the library instrumented with
# -fsanitize=fuzzer-no-link, the harnesses linked with -fsanitize=fuzzer), then runs each target
# from a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/), so the tree is left as
# it was. A crash stops with the input's path; add that input to the corpus as a regression
# test once it is fixed. Prints executions and time per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=($(sed -n "s/^fuzz_targets = \[\(.*\)\]/\1/p" tests/fuzz/meson.build | tr -d "',"))
fi
build=build-fuzz
if [[ ! -d $build ]]; then
  CC=clang meson setup "$build" -Dfuzzing=true -Dvulkan=disabled -Dopencl=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
    -Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined" >/dev/null
fi
ninja -C "$build" $(for t in "${targets[@]}"; do echo "tests/fuzz/fuzz_$t"; done) >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp -r "tests/fuzz/corpus/$t/." "$work/$t/"
  log="$work/$t.log"
  start=$SECONDS
  if ! "$build/tests/fuzz/fuzz_$t" "$work/$t" -max_total_time="$secs" -max_len=65536 \
      -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 -artifact_prefix="$work/$t-" >"$log" 2>&1; then
    tail -40 "$log"
    crash=$(ls "$work/$t-"* 2>/dev/null | head -1 || true)
    if [[ -n $crash ]]; then
      mkdir -p fuzz-crashes && cp "$crash" fuzz-crashes/
      echo "fuzz.sh: $t failed; the input is fuzz-crashes/$(basename "$crash")" >&2
    fi
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  if [[ -z $execs ]]; then
    execs=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
  fi
  echo "fuzz.sh: $t: ${execs:-?} executions in $((SECONDS - start)) s, no failure"
done
