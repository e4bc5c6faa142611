#!/usr/bin/env bash
# End-to-end tests of vnrt-run and vnrt-info: npy/safetensors binding, outputs, and that every
# user error exits non-zero with one clear line on stderr. Needs only bash (no numpy): the
# .npy and .safetensors inputs are written byte by byte with printf.
# vnrt-validate's argument errors are checked here too (its cases run in the tools suite).
# usage: test_tools.sh PATH/TO/vnrt-run PATH/TO/vnrt-info PATH/TO/vnrt-validate
set -u
RUN=${1:?usage: test_tools.sh VNRT_RUN VNRT_INFO VNRT_VALIDATE}
INFO=${2:?usage: test_tools.sh VNRT_RUN VNRT_INFO VNRT_VALIDATE}
VALIDATE=${3:?usage: test_tools.sh VNRT_RUN VNRT_INFO VNRT_VALIDATE}
case "$RUN" in /*) ;; *) RUN=$PWD/$RUN ;; esac
case "$INFO" in /*) ;; *) INFO=$PWD/$INFO ;; esac
case "$VALIDATE" in /*) ;; *) VALIDATE=$PWD/$VALIDATE ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/vnrt_tools.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
unset VNRT_DEVICE
FAILS=0

fail() {
  echo "FAIL: $*"
  FAILS=$((FAILS + 1))
}

# le HEX: the bytes of a big-endian hex number (8 or 4 digits) in little-endian order.
le() {
  local h=$1 i out=""
  for ((i = ${#h} - 2; i >= 0; i -= 2)); do out+="\\x${h:i:2}"; done
  printf "$out"
}

# npy FILE DESCR SHAPE HEX...: a format 1.0 .npy file laid out as numpy writes it.
npy() {
  local file=$1 descr=$2 shape=$3 v
  shift 3
  local dict="{'descr': '$descr', 'fortran_order': False, 'shape': $shape, }"
  local total=$((10 + ${#dict} + 1))
  local pad=$(((64 - total % 64) % 64))
  local hlen=$((${#dict} + 1 + pad))
  {
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
    printf '%s%*s\n' "$dict" "$pad" ""
    for v in "$@"; do le "$v"; done
  } >"$file"
}

# safetensors FILE HEADER-JSON HEX...: 8-byte little-endian length, the header, then data.
safetensors() {
  local file=$1 header=$2 v
  shift 2
  {
    le "$(printf %016x ${#header})"
    printf '%s' "$header"
    for v in "$@"; do le "$v"; done
  } >"$file"
}

# expect_ok NAME CMD...: the command succeeds; its stdout is in out.txt.
expect_ok() {
  local name=$1
  shift
  "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: exit $rc (stderr: $(cat err.txt))"
    return 1
  fi
  return 0
}

# expect_error NAME STATUS 'WORDS'... -- CMD...: the command exits with STATUS, prints exactly
# one line on stderr, and that line contains every WORDS (fixed strings).
expect_error() {
  local name=$1 want=$2 words=()
  shift 2
  while [ "$1" != "--" ]; do
    words+=("$1")
    shift
  done
  shift
  "$@" >out.txt 2>err.txt
  local rc=$?
  local msg
  msg=$(cat err.txt)
  if [ "$rc" -ne "$want" ]; then
    fail "$name: exit $rc, expected $want (stderr: $msg)"
    return
  fi
  if [ "$(wc -l <err.txt)" -ne 1 ]; then
    fail "$name: expected one line on stderr, got: $msg"
    return
  fi
  local w
  for w in "${words[@]}"; do
    case "$msg" in
    *"$w"*) ;;
    *) fail "$name: stderr lacks '$w': $msg" ;;
    esac
  done
}

# ---- fixtures -------------------------------------------------------------------------------
F1=3f800000 F2=40000000 F3=40400000 F4=40800000 F5=40a00000 F6=40c00000
cat >mul.vnir <<'EOF'
vnir 1
input x: f32[2, 3]
param w: f32[3]
y = mul(x, w)     # broadcast over rows
output y
EOF
npy x.npy '<f4' '(2, 3)' $F1 $F2 $F3 $F4 $F5 $F6
npy w.npy '<f4' '(3,)' $F1 $F2 $F3
# y = x * w = [[1, 4, 9], [4, 10, 18]], computed by hand
npy expect_y.npy '<f4' '(2, 3)' $F1 $F4 41100000 $F4 41200000 41900000

# ---- runs that succeed ----------------------------------------------------------------------
expect_ok "--help" "$RUN" --help && grep -q -- "--weights" out.txt ||
  fail "--help does not describe --weights"

if expect_ok "npy inputs, npy output" "$RUN" mul.vnir --device cpu --input x=x.npy \
  --input w=w.npy --output y=y.npy; then
  cmp -s y.npy expect_y.npy || fail "y.npy differs from the expected bytes: $(od -An -tx1 y.npy)"
fi

# The same bytes on every device vnrt-info lists (these products are exact in f32 anywhere).
SPECS=$("$INFO" --json | sed -n 's/.*"spec": "\([^"]*\)".*/\1/p')
[ -n "$SPECS" ] || fail "vnrt-info --json lists no device"
for spec in $SPECS; do
  if expect_ok "run on $spec" "$RUN" mul.vnir --device "$spec" --input x=x.npy \
    --input w=w.npy --output y=y_dev.npy; then
    cmp -s y_dev.npy expect_y.npy || fail "$spec: y differs: $(od -An -tx1 y_dev.npy)"
  fi
done

if expect_ok "printed outputs" "$RUN" mul.vnir --input x=x.npy --input w=w.npy; then
  grep -qxF "y: f32[2, 3] = [1, 4, 9, 4, 10, 18]" out.txt || fail "printed output: $(cat out.txt)"
fi

safetensors w.safetensors '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}      ' \
  $F1 $F2 $F3
if expect_ok "param from --weights" "$RUN" mul.vnir --weights w.safetensors --input x=x.npy \
  --output y=y2.npy; then
  cmp -s y2.npy expect_y.npy || fail "--weights: y differs: $(od -An -tx1 y2.npy)"
fi

# A param given by --input overrides the weights file (w2 = 2·w, so y doubles).
npy w2.npy '<f4' '(3,)' $F2 $F4 $F6
npy expect_2y.npy '<f4' '(2, 3)' $F2 41000000 41900000 41000000 41a00000 42100000
if expect_ok "--input overrides --weights" "$RUN" mul.vnir --weights w.safetensors \
  --input x=x.npy --input w=w2.npy --output y=y3.npy; then
  cmp -s y3.npy expect_2y.npy || fail "--input override: y differs: $(od -An -tx1 y3.npy)"
fi

# <f4 data binds an f16 input (rounded to nearest even); an f16 output is written as <f2.
cat >sq16.vnir <<'EOF'
vnir 1
input x: f16[2, 3]
y = mul(x, x)
output y
EOF
npy expect_sq16.npy '<f2' '(2, 3)' 3c00 4400 4880 4c00 4e40 5080 # 1 4 9 16 25 36
if expect_ok "f32 npy binds f16" "$RUN" sq16.vnir --input x=x.npy --output y=sq16.npy; then
  cmp -s sq16.npy expect_sq16.npy || fail "f16 output differs: $(od -An -tx1 sq16.npy)"
fi
# 1 + 2^-11 is halfway between two f16 values and rounds to even (1.0); 1 + 3·2^-11 rounds up
# to 1 + 2^-9. Squared in f32 and rounded to f16: 1 and 1 + 2^-8 (0x3c04).
npy half.npy '<f4' '(2, 3)' 3f801000 3f803000 $F1 $F1 $F1 $F1
npy expect_half.npy '<f2' '(2, 3)' 3c00 3c04 3c00 3c00 3c00 3c00
if expect_ok "f32 -> f16 rounds to nearest even" "$RUN" sq16.vnir --input x=half.npy \
  --output y=half_out.npy; then
  cmp -s half_out.npy expect_half.npy || fail "f16 rounding: $(od -An -tx1 half_out.npy)"
fi

# A bf16 output is widened to <f4.
cat >neg16.vnir <<'EOF'
vnir 1
input x: bf16[2, 3]
y = neg(x)
output y
EOF
npy expect_neg.npy '<f4' '(2, 3)' bf800000 c0000000 c0400000 c0800000 c0a00000 c0c00000
if expect_ok "bf16 output widened to <f4" "$RUN" neg16.vnir --input x=x.npy --output y=neg.npy
then
  cmp -s neg.npy expect_neg.npy || fail "bf16 output differs: $(od -An -tx1 neg.npy)"
fi

# ---- states: --state, --runs, --save-state ----------------------------------------------------
cat >counter.vnir <<'EOF'
vnir 1
input x: f32[3]
state c: f32[3]
c2 = add(c, x)
update c = c2
output c2
EOF
npy x3.npy '<f4' '(3,)' $F1 $F2 $F3
npy expect_c1.npy '<f4' '(3,)' $F1 $F2 $F3                  # one run from zero: c = x
npy expect_c3.npy '<f4' '(3,)' $F3 $F6 41100000             # three runs: c = 3x = 3 6 9
npy c0.npy '<f4' '(3,)' 41200000 41a00000 41f00000          # 10 20 30
npy expect_c0_3.npy '<f4' '(3,)' 41500000 41d00000 421c0000 # 10+3 20+6 30+9
if expect_ok "one run, state saved" "$RUN" counter.vnir --input x=x3.npy --save-state c=c1.npy; then
  cmp -s c1.npy expect_c1.npy || fail "--save-state after one run: $(od -An -tx1 c1.npy)"
fi
for spec in $SPECS; do
  if expect_ok "--runs 3 on $spec" "$RUN" counter.vnir --device "$spec" --input x=x3.npy \
    --runs 3 --save-state c=c3.npy --output c2=c2_3.npy; then
    cmp -s c3.npy expect_c3.npy || fail "$spec: state after 3 runs: $(od -An -tx1 c3.npy)"
    cmp -s c2_3.npy expect_c3.npy || fail "$spec: output of run 3: $(od -An -tx1 c2_3.npy)"
  fi
done
if expect_ok "--state sets the initial value" "$RUN" counter.vnir --input x=x3.npy \
  --state c=c0.npy --runs 3 --save-state c=c0_3.npy; then
  cmp -s c0_3.npy expect_c0_3.npy || fail "--state then 3 runs: $(od -An -tx1 c0_3.npy)"
fi
if expect_ok "printed outputs and states" "$RUN" counter.vnir --input x=x3.npy --runs 3; then
  grep -qxF "c2: f32[3] = [3, 6, 9]" out.txt || fail "printed output: $(cat out.txt)"
  grep -qxF "state c: f32[3] = [3, 6, 9]" out.txt || fail "printed state: $(cat out.txt)"
fi
if expect_ok "--stats" "$RUN" counter.vnir --input x=x3.npy --runs 2 --stats; then
  grep -q "^plan: 1 nodes in 1 partitions, 0 on the cpu as fallback" err.txt ||
    fail "--stats plan line: $(cat err.txt)"
  grep -q "^last run: wall [0-9.]* ms, compute" err.txt || fail "--stats run line: $(cat err.txt)"
fi
# A graph without outputs that fills a two-row cache at a position it keeps in a state.
cat >fill.vnir <<'EOF'
vnir 1
input row: f32[1, 3]
input one: f32[1]
state cache: f32[2, 3]
state posf: f32[1]
pos = cast(posf, dtype=i32)
c2 = kv_write(cache, row, pos)
p2 = add(posf, one)
update cache = c2
update posf = p2
EOF
npy row.npy '<f4' '(1, 3)' $F4 $F5 $F6
npy one.npy '<f4' '(1,)' $F1
if expect_ok "a graph that only updates states" "$RUN" fill.vnir --input row=row.npy \
  --input one=one.npy --runs 2; then
  grep -qxF "state cache: f32[2, 3] = [4, 5, 6, 4, 5, 6]" out.txt || fail "fill: $(cat out.txt)"
  grep -qxF "state posf: f32[1] = [2]" out.txt || fail "fill: $(cat out.txt)"
fi
expect_error "run-time error in a later run" 1 "run 3 of 3" "kv_write" "[2, 3)" -- \
  "$RUN" fill.vnir --input row=row.npy --input one=one.npy --runs 3

# ---- user errors: non-zero exit, one line naming the problem ---------------------------------
expect_error "no graph" 2 "no graph given" -- "$RUN"
expect_error "unknown option" 2 "unknown option '--bogus'" -- "$RUN" mul.vnir --bogus
expect_error "bad --input syntax" 2 "expected NAME=FILE.npy" -- "$RUN" mul.vnir --input x.npy
expect_error "unknown --input name" 2 "no input or param named 'z'" "x, w" -- \
  "$RUN" mul.vnir --input z=x.npy
expect_error "unknown --output name" 2 "no output named 'q'" -- \
  "$RUN" mul.vnir --input x=x.npy --input w=w.npy --output q=q.npy
expect_error "missing graph file" 1 "nosuch.vnir" -- "$RUN" nosuch.vnir
printf 'vnir 1\ninput x: f32[2]\ny = frobnicate(x)\noutput y\n' >bad.vnir
expect_error "graph syntax error" 1 "bad.vnir:3:" "frobnicate" -- "$RUN" bad.vnir
expect_error "unknown device" 1 "nosuchdevice" -- \
  "$RUN" mul.vnir --device nosuchdevice --input x=x.npy --input w=w.npy

expect_error "missing input" 1 "missing binding for input 'x'" "f32[2, 3]" -- \
  "$RUN" mul.vnir --input w=w.npy
expect_error "missing param" 1 "missing binding for param 'w'" "--weights" -- \
  "$RUN" mul.vnir --input x=x.npy
safetensors other.safetensors '{"v":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}      ' \
  $F1 $F2 $F3
expect_error "param not in weights" 1 "missing binding for param 'w'" "other.safetensors" -- \
  "$RUN" mul.vnir --weights other.safetensors --input x=x.npy

npy x32.npy '<f4' '(3, 2)' $F1 $F2 $F3 $F4 $F5 $F6
expect_error "shape mismatch" 1 "input 'x'" "x32.npy" "f32[3, 2]" "f32[2, 3]" -- \
  "$RUN" mul.vnir --input x=x32.npy --input w=w.npy
npy xi.npy '<i4' '(2, 3)' 00000001 00000002 00000003 00000004 00000005 00000006
expect_error "dtype mismatch" 1 "input 'x'" "i32[2, 3]" "f32[2, 3]" -- \
  "$RUN" mul.vnir --input x=xi.npy --input w=w.npy
npy xh.npy '<f2' '(2, 3)' 3c00 3c00 3c00 3c00 3c00 3c00
expect_error "f16 npy does not bind bf16" 1 "input 'x'" "f16[2, 3]" "bf16[2, 3]" -- \
  "$RUN" neg16.vnir --input x=xh.npy
safetensors w16.safetensors '{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}}' \
  3c00 3c00 3c00
expect_error "param dtype mismatch" 1 "param 'w'" "f16[3]" "f32[3]" -- \
  "$RUN" mul.vnir --weights w16.safetensors --input x=x.npy

head -c 140 x.npy >trunc.npy
expect_error "truncated npy" 1 "trunc.npy" "needs 24 bytes" -- \
  "$RUN" mul.vnir --input x=trunc.npy --input w=w.npy
printf 'not numpy at all' >junk.npy
expect_error "not an npy file" 1 "junk.npy" "bad magic" -- \
  "$RUN" mul.vnir --input x=junk.npy --input w=w.npy
expect_error "missing npy file" 1 "nofile.npy" -- \
  "$RUN" mul.vnir --input x=nofile.npy --input w=w.npy
head -c 40 w.safetensors >trunc.safetensors
expect_error "truncated safetensors" 1 "trunc.safetensors" "beyond the end" -- \
  "$RUN" mul.vnir --weights trunc.safetensors --input x=x.npy
expect_error "output to an unwritable path" 1 "output 'y'" "cannot create" -- \
  "$RUN" mul.vnir --input x=x.npy --input w=w.npy --output y=/nonexistent/dir/y.npy

expect_error "bad --state syntax" 2 "--state c.npy: expected NAME=FILE.npy" -- \
  "$RUN" counter.vnir --state c.npy
expect_error "bad --save-state syntax" 2 "--save-state c: expected NAME=FILE.npy" -- \
  "$RUN" counter.vnir --save-state c
expect_error "--state given twice" 2 "'c' is given twice" -- \
  "$RUN" counter.vnir --state c=c0.npy --state c=c0.npy
expect_error "unknown --state name" 2 "no state named 'z'" "its states: c" -- \
  "$RUN" counter.vnir --input x=x3.npy --state z=c0.npy
expect_error "unknown --save-state name" 2 "no state named 'x'" "its states: c" -- \
  "$RUN" counter.vnir --input x=x3.npy --save-state x=x_out.npy
expect_error "--state on a graph without states" 2 "no state named 'w'" "its states: none" -- \
  "$RUN" mul.vnir --state w=w.npy
expect_error "a state bound with --input" 2 "no input or param named 'c'" "use --state" -- \
  "$RUN" counter.vnir --input c=c0.npy
expect_error "a state written with --output" 2 "no output named 'c'" "use --save-state" -- \
  "$RUN" counter.vnir --input x=x3.npy --output c=c.npy
expect_error "--runs 0" 2 "--runs needs a whole number" "'0'" -- "$RUN" counter.vnir --runs 0
expect_error "--runs not a number" 2 "--runs needs a whole number" "'3x'" -- \
  "$RUN" counter.vnir --runs 3x
expect_error "--runs without a value" 2 "--runs needs a whole number" -- "$RUN" counter.vnir --runs
expect_error "--state shape mismatch" 1 "state 'c'" "x32.npy" "f32[3, 2]" "f32[3]" -- \
  "$RUN" counter.vnir --input x=x3.npy --state c=x32.npy
expect_error "--state file missing" 1 "state 'c'" "nofile.npy" -- \
  "$RUN" counter.vnir --input x=x3.npy --state c=nofile.npy
expect_error "--save-state to an unwritable path" 1 "state 'c'" "cannot create" -- \
  "$RUN" counter.vnir --input x=x3.npy --save-state c=/nonexistent/dir/c.npy

# ---- quantized params: bound at their stored size, NaN codes named --------------------------
cat >quant.vnir <<'VNIR'
vnir 1
input x: f32[1, 4]
param w: e4m3[2, 4]
param w_scale: e8m0[1, 1]
param e: e2m1[2, 32]
param e_scale: e8m0[2, 1]
y = linear(x, w, w_scale)
output y
VNIR
npy xq.npy '<f4' '(1, 4)' 3f800000 3f800000 3f800000 3f800000
# w as F8_E4M3 (0x38 = 1.0), e as I8 [2, 16] (packed FP4), e_scale as F8_E8M0.
E_BYTES=()
for ((i = 0; i < 32; i++)); do E_BYTES+=(ff); done
safetensors q.safetensors '{"w":{"dtype":"F8_E4M3","shape":[2,4],"data_offsets":[0,8]},"e":{"dtype":"I8","shape":[2,16],"data_offsets":[8,40]},"e_scale":{"dtype":"F8_E8M0","shape":[2,1],"data_offsets":[40,42]}}' \
  38 38 38 38 38 38 38 38 "${E_BYTES[@]}" 7f 7f
safetensors qnan.safetensors '{"w":{"dtype":"F8_E4M3","shape":[2,4],"data_offsets":[0,8]}}' \
  38 38 38 38 38 7f 38 38
npy scale_ok.npy '|u1' '(1, 1)' 7f
npy scale_nan.npy '|u1' '(1, 1)' ff
npy w_f32.npy '<f4' '(2, 4)' 00000000 00000000 00000000 00000000 00000000 00000000 00000000 \
  00000000
npy e_wide.npy '|u1' '(2, 32)' "${E_BYTES[@]}" "${E_BYTES[@]}"
expect_error "NaN e4m3 code in safetensors" 1 "param 'w'" "NaN e4m3 code" "index 5 [1, 1]" -- \
  "$RUN" quant.vnir --weights qnan.safetensors --input x=xq.npy
expect_error "NaN e8m0 scale in npy" 1 "param 'w_scale'" "NaN e8m0 scale" "index 0 [0, 0]" -- \
  "$RUN" quant.vnir --weights q.safetensors --input x=xq.npy --input w_scale=scale_nan.npy
expect_error "f32 data for e4m3 param" 1 "shape/dtype mismatch for param 'w'" "f32[2, 4]" \
  "e4m3[2, 4]" -- "$RUN" quant.vnir --weights q.safetensors --input x=xq.npy --input w=w_f32.npy
expect_error "unpacked FP4 npy" 1 "shape/dtype mismatch for param 'e'" "e2m1[2, 64]" \
  "e2m1[2, 32]" -- "$RUN" quant.vnir --weights q.safetensors --input x=xq.npy \
  --input w_scale=scale_ok.npy --input e=e_wide.npy

# ---- outputs appear completely or not at all ------------------------------------------------
cat >two.vnir <<'EOF2'
vnir 1
input x: f32[2, 3]
param w: f32[3]
y = mul(x, w)
z = add(x, x)
output y
output z
EOF2
expect_error "second --output unwritable" 1 "output 'z'" "nodir/z.npy" -- \
  "$RUN" two.vnir --input x=x.npy --input w=w.npy --output y=first.npy --output z=nodir/z.npy
[ -e first.npy ] && fail "a failed later --output left the first output written"
expect_error "--save-state unwritable after an output" 1 "state 'c'" "nodir/c.npy" -- \
  "$RUN" counter.vnir --input x=x3.npy --output c2=first_c2.npy --save-state c=nodir/c.npy
[ -e first_c2.npy ] && fail "a failed --save-state left the output written"
ls ./*.tmp >/dev/null 2>&1 && fail "temporary files left behind: $(ls ./*.tmp)"
if expect_ok "two outputs" "$RUN" two.vnir --input x=x.npy --input w=w.npy --output y=two_y.npy \
  --output z=two_z.npy; then
  cmp -s two_y.npy expect_y.npy || fail "two outputs: y differs: $(od -An -tx1 two_y.npy)"
  [ -s two_z.npy ] || fail "two outputs: z not written"
  ls ./*.tmp >/dev/null 2>&1 && fail "temporary files left after success: $(ls ./*.tmp)"
fi

# ---- vnrt-info ------------------------------------------------------------------------------
if expect_ok "vnrt-info" "$INFO"; then
  grep -q '^vnrt [0-9]*\.[0-9]*\.[0-9]*$' out.txt || fail "vnrt-info: no version line"
  grep -q '^backends:.* cpu' out.txt || fail "vnrt-info: cpu backend not listed"
  grep -q '^cpu' out.txt || fail "vnrt-info: cpu device not listed"
  grep -q 'capabilities:' out.txt || fail "vnrt-info: no capabilities"
fi
if expect_ok "vnrt-info --json" "$INFO" --json; then
  grep -q '"spec": "cpu"' out.txt || fail "vnrt-info --json: no cpu device: $(cat out.txt)"
  grep -q '"memory_bytes": [1-9]' out.txt || fail "vnrt-info --json: no memory size"
fi
expect_error "vnrt-info bad argument" 2 "unknown argument" -- "$INFO" --bogus

# ---- vnrt-validate argument errors -----------------------------------------------------------
expect_error "vnrt-validate: --json unwritable" 2 "cannot write nodir/x.json" -- \
  "$VALIDATE" --device cpu --op add --json nodir/x.json
# Under valgrind when it is installed: the early exit frees the context and the case table.
# Not on a sanitized build (VNRT_SANITIZED, tools/ci_sanitize.sh): valgrind cannot run an ASan
# binary, and LeakSanitizer checks the same exit there.
if [ -z "${VNRT_SANITIZED:-}" ] && command -v valgrind >/dev/null 2>&1; then
  # Only the leak summary is judged: the dynamic loader's reads while the Vulkan and OpenCL
  # drivers are opened show up as valgrind errors of their own on some systems.
  valgrind --leak-check=full "$VALIDATE" --device cpu --op add --json nodir/x.json \
    >out.txt 2>err.txt
  rc=$?
  lost=$(grep -m1 "definitely lost:" err.txt | sed 's/.*definitely lost: *\([0-9,]*\) bytes.*/\1/')
  [ "$rc" -eq 2 ] || fail "vnrt-validate --json unwritable under valgrind: exit $rc"
  [ -z "$lost" ] || [ "$lost" = "0" ] ||
    fail "vnrt-validate --json unwritable under valgrind: definitely lost $lost bytes"
fi
expect_error "vnrt-validate: --seed out of range" 2 "--seed" "99999999999999999999999" -- \
  "$VALIDATE" --seed 99999999999999999999999 --list
expect_error "vnrt-validate: negative --seed" 2 "--seed" "'-1'" -- "$VALIDATE" --seed -1 --list
expect_error "vnrt-validate: --seed with trailing text" 2 "--seed" "'12x'" -- \
  "$VALIDATE" --seed 12x --list
expect_error "vnrt-validate: bad --case" 2 "--case" "'3x'" -- "$VALIDATE" --case 3x --list
if expect_ok "vnrt-validate: largest --seed" "$VALIDATE" --seed 18446744073709551615 --list; then
  grep -q "add" out.txt || fail "vnrt-validate --list: no add case: $(cat out.txt)"
fi

if [ "$FAILS" -ne 0 ]; then
  echo "$FAILS check(s) failed"
  exit 1
fi
echo "all vnrt-run / vnrt-info checks passed"
