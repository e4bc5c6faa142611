#!/bin/sh
# Makes the installed libvnrt.a from the full static library: every object merged into one
# relocatable object (ld -r) in which only vnrt_* names stay global (objcopy), so a program that
# links vnrt statically cannot clash with vnrt's internal names (vn_*, vk_*, cl_*, cpu_*).
# Usage: localize_static.sh INPUT.a OUTPUT.a "CC [ARGS]"
set -eu
in=$1
out=$2
cc=${3:-cc}
objcopy=${OBJCOPY:-objcopy}
ar=${AR:-ar}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vnrt-localize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086 # CC may carry arguments
$cc -r -nostdlib -Wl,--whole-archive "$in" -Wl,--no-whole-archive -o "$tmp/vnrt.o"
"$objcopy" --wildcard --keep-global-symbol='vnrt_*' "$tmp/vnrt.o"
rm -f "$out"
"$ar" rcs "$out" "$tmp/vnrt.o"
