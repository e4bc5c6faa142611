#!/usr/bin/env bash
# The deepseek example's command line: --memory-limit takes the grammar of
# $VNRT_DEVICE_MEMORY_LIMIT (docs/executor.md) and refuses anything else with exit 2 and one
# line naming the text, before any model work (each case ends with --help, which exits 0 only
# when every option before it parsed).
# usage: test_deepseek_args.sh PATH/TO/deepseek
set -u
DS=${1:?usage: test_deepseek_args.sh DEEPSEEK}
FAILS=0
ERR=$(mktemp "${TMPDIR:-/tmp}/vnrt_ds_args.XXXXXX") || exit 1
trap 'rm -f "$ERR"' EXIT

fail() {
  echo "FAIL: $*"
  FAILS=$((FAILS + 1))
}

# Refused: not a byte count (nan, inf, an exponent, a sign, an unknown unit, trailing text).
for v in nan inf NaN -inf 1e30 -1 +5 12Q 64MX 1.5.2 "" " " .5M; do
  "$DS" --memory-limit "$v" --help >/dev/null 2>"$ERR"
  rc=$?
  [ "$rc" -eq 2 ] || fail "--memory-limit '$v': exit $rc, want 2"
  [ "$(wc -l <"$ERR")" -eq 1 ] || fail "--memory-limit '$v': want one line on stderr: $(cat "$ERR")"
  grep -qF -- "--memory-limit wants a byte count" "$ERR" && grep -qF -- "'$v'" "$ERR" ||
    fail "--memory-limit '$v': unclear message: $(cat "$ERR")"
done
# Refused: above 2^64 - 1 bytes.
for v in 18446744073709551616 99999999999999999999 16777216T 17179869184G; do
  "$DS" --memory-limit "$v" --help >/dev/null 2>"$ERR"
  rc=$?
  [ "$rc" -eq 2 ] || fail "--memory-limit '$v': exit $rc, want 2"
  grep -qF "does not fit in 64 bits" "$ERR" || fail "--memory-limit '$v': $(cat "$ERR")"
done
# Accepted.
for v in 0 4096 64M 1G 1g 1.5G "2 GiB" 64kb 18446744073709551615 16777215T; do
  "$DS" --memory-limit "$v" --help >/dev/null 2>"$ERR"
  rc=$?
  [ "$rc" -eq 0 ] || fail "--memory-limit '$v': exit $rc: $(cat "$ERR")"
done

if [ "$FAILS" -ne 0 ]; then
  echo "$FAILS check(s) failed"
  exit 1
fi
echo "all deepseek argument checks passed"
