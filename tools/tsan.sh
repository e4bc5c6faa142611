#!/usr/bin/env bash
# The ThreadSanitizer check of start-up and concurrent contexts (docs/sanitizers.md,
# "ThreadSanitizer"): builds test_concurrency with -fsanitize=thread into BUILD_DIR and runs it
# (8 threads x create / compile / run / destroy) on the backends given, by default the CPU
# backend only: the Vulkan (lavapipe) and OpenCL (PoCL) drivers are not TSan-clean (their own
# threads and lock-free code are uninstrumented), so a report there says nothing about vnrt.
#
#   tools/tsan.sh [BUILD_DIR] [BACKENDS]      (defaults: build-tsan, cpu; "" = every backend)
#
# Exit status: the test's (non-zero on any data race report: halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-tsan}
backends=${2-cpu}
opts=(-Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized -Dwerror=true)
reconf=()
[[ -f $build/meson-private/coredata.dat ]] && reconf=(--reconfigure)
start=$SECONDS
meson setup "$build" "${opts[@]}" "${reconf[@]}" >/dev/null
ninja -C "$build" tests/runtime/test_concurrency
echo "tsan.sh: built in $((SECONDS - start)) s"
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0}
export VNRT_SANITIZED=1 VNRT_PLUGIN_PATH= CK_FORK=no
export VNRT_TEST_STRESS_BACKENDS=$backends VNRT_TEST_STRESS_ITERS=${VNRT_TEST_STRESS_ITERS:-2}
"$build/tests/runtime/test_concurrency"
