#!/usr/bin/env bash
# The DeepSeek example's FP8/FP4 weights made by vnrt-quantize from the bf16 file: FP8 for the
# attention projections and the shared expert, FP4 for the packed routed experts (rank 3, the
# scale leading with E), in one run. The converted file must be byte for byte the one
# `gen_weights --quant fp8fp4` writes (the same recipe from the same bf16 masters), and it must
# give the same greedy tokens on every built device as the example's built-in `--quant fp8fp4`.
# usage: test_quantize_weights.sh GEN_WEIGHTS VNRT_QUANTIZE DEEPSEEK CONFIG DEVICE...
set -u
GEN=${1:?usage: test_quantize_weights.sh GEN_WEIGHTS VNRT_QUANTIZE DEEPSEEK CONFIG DEVICE...}
QUANT=${2:?}
DS=${3:?}
CONFIG=${4:?}
shift 4
[ $# -gt 0 ] || { echo "usage: no DEVICE given"; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vnrt_dsq.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
unset VNRT_DEVICE
FAILS=0
fail() {
  echo "FAIL: $*"
  FAILS=$((FAILS + 1))
}

"$GEN" --config "$CONFIG" --out "$T/bf16.safetensors" --quant none || exit 1
"$GEN" --config "$CONFIG" --out "$T/builtin.safetensors" --quant fp8fp4 || exit 1
# The groups of the example's fp8fp4 (examples/deepseek/README.md, "Quantized weights").
"$QUANT" --format fp8 --match 'self_attn\.[qkvo]_proj\.weight$' \
  --format fp8 --match 'shared_experts\.(gate|up|down)_proj\.weight$' \
  --format fp4 --match 'mlp\.experts\.(gate_up|down)_proj$' \
  "$T/bf16.safetensors" "$T/converted.safetensors" >"$T/quant.log" 2>&1 ||
  { cat "$T/quant.log"; exit 1; }
cat "$T/quant.log"
# Every matched tensor converted: no "copied unchanged" notes.
grep -q "note:" "$T/quant.log" && fail "vnrt-quantize left a matched tensor unconverted"
# The packed experts' scales lead with E (a rank-3 tensor quantized per expert matrix).
head -c 65536 "$T/converted.safetensors" | grep -aq '"model.layers.0.mlp.experts.gate_up_proj.scale":{"dtype":"F8_E8M0","shape":\[[0-9]*,[0-9]*,[0-9]*\]' ||
  fail "no rank-3 scale for model.layers.0.mlp.experts.gate_up_proj"
cmp "$T/builtin.safetensors" "$T/converted.safetensors" ||
  fail "vnrt-quantize's file differs from gen_weights --quant fp8fp4"

# The same greedy tokens: the built-in run (weights generated quantized) on the CPU, and the
# converted file on every device; the prompt and length give no near-tie here.
tokens() { "$DS" --config "$CONFIG" --tokens 16 --prompt "1 2 3 4" "$@" | grep '^generated'; }
ref=$(tokens --quant fp8fp4 --device cpu)
echo "built-in fp8fp4, cpu: $ref"
[ -n "$ref" ] || fail "the built-in fp8fp4 run generated nothing"
for dev in "$@"; do
  got=$(tokens --weights "$T/converted.safetensors" --device "$dev")
  echo "converted, $dev: $got"
  [ "$got" = "$ref" ] || fail "$dev: the converted weights give other tokens than the built-in fp8fp4"
done
# And not the unquantized model's tokens: the converted weights are in use.
plain=$(tokens --weights "$T/bf16.safetensors" --device cpu)
echo "bf16, cpu: $plain"
[ "$plain" != "$ref" ] || fail "the quantized weights give the bf16 model's tokens"

[ "$FAILS" -eq 0 ] || { echo "$FAILS check(s) failed"; exit 1; }
echo "ok"
