#!/usr/bin/env bash
# The ThreadSanitizer check of start-up and concurrent contexts (docs/sanitizers.md,
# "ThreadSanitizer"): builds test_concurrency with -fsanitize=thread into BUILD_DIR and runs it
# (8 threads x create / compile / run / destroy on every device, twice) on the backends given.
# By default every backend, with tools/sanitize/tsan.supp silencing the one report inside the
# drivers' LLVM (not vnrt's code); "cpu" runs the CPU backend alone, which needs no suppression.
#
#   tools/tsan.sh [BUILD_DIR] [BACKENDS]      (defaults: build-tsan, "" = every backend)
#
# Exit status: the test's (non-zero on any data race report: halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-tsan}
backends=${2-}
opts=(-Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized -Dwerror=true)
reconf=()
[[ -f $build/meson-private/coredata.dat ]] && reconf=(--reconfigure)
start=$SECONDS
meson setup "$build" "${opts[@]}" "${reconf[@]}" >/dev/null
ninja -C "$build" tests/runtime/test_concurrency
echo "tsan.sh: built in $((SECONDS - start)) s"
supp=
[[ $backends != cpu ]] && supp=:suppressions=$root/tools/sanitize/tsan.supp
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:report_signal_unsafe=0$supp}
export VNRT_SANITIZED=1 VNRT_PLUGIN_PATH= CK_FORK=no
export VNRT_TEST_STRESS_BACKENDS=$backends VNRT_TEST_STRESS_ITERS=${VNRT_TEST_STRESS_ITERS:-2}
start=$SECONDS
rc=0
"$build/tests/runtime/test_concurrency" || rc=$?
echo "tsan.sh: ran in $((SECONDS - start)) s (exit $rc)"
exit $rc
