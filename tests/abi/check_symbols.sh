#!/bin/sh
# Only vnrt_* names are visible from libvnrt (docs/api.md, "ABI and growth"): every global
# symbol that libvnrt.a or libvnrt.so defines starts with vnrt_ (the shared library's version
# nodes VNRT_<n> aside), the functions whose structs grew in VNRT_1 keep their VNRT_0 version,
# and the SONAME is libvnrt.so.<SOVERSION>.
# Usage: check_symbols.sh LIBVNRT_A LIBVNRT_SO SOVERSION
set -eu
a=$1
so=$2
soversion=$3
nm=${NM:-nm}
status=0

# nm -g --defined-only prints "VALUE TYPE NAME" (names of archive members on their own lines).
bad=$("$nm" -g --defined-only "$a" | awk 'NF == 3 && $3 !~ /^vnrt_/ {print $3}' | sort -u)
count_a=$("$nm" -g --defined-only "$a" | awk 'NF == 3 {print $3}' | sort -u | wc -l)
if [ -n "$bad" ]; then
  echo "FAIL: $a defines global symbols without the vnrt_ prefix:" >&2
  echo "$bad" | head -n 40 >&2
  status=1
fi

bad=$("$nm" -D --defined-only "$so" | awk '$2 != "A" && $3 !~ /^vnrt_/ {print $3}' | sort -u)
count_so=$("$nm" -D --defined-only "$so" | awk '$2 != "A"' | wc -l)
if [ -n "$bad" ]; then
  echo "FAIL: $so exports symbols without the vnrt_ prefix:" >&2
  echo "$bad" | head -n 40 >&2
  status=1
fi
for f in vnrt_context_create vnrt_device_get_info vnrt_plan_create vnrt_plan_create_shared \
  vnrt_plan_get_info vnrt_plan_get_run_stats vnrt_engram_store_create vnrt_engram_store_stats; do
  for v in "$f@VNRT_0" "$f@@VNRT_1"; do
    if ! "$nm" -D --defined-only "$so" | awk '{print $3}' | grep -qx "$v"; then
      echo "FAIL: $so does not define $v" >&2
      status=1
    fi
  done
done
if ! "$nm" -D --defined-only "$so" | awk '{print $3}' | grep -qx 'vnrt_version@@VNRT_0'; then
  echo "FAIL: $so: vnrt_version is not in version VNRT_0" >&2
  status=1
fi
# A function added after 0.1.0 is in VNRT_1, not in 0.1.0's node.
if ! "$nm" -D --defined-only "$so" | awk '{print $3}' | grep -qx 'vnrt_plan_get_node@@VNRT_1'; then
  echo "FAIL: $so: vnrt_plan_get_node (new since 0.1.0) is not in version VNRT_1" >&2
  status=1
fi

soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" != "libvnrt.so.$soversion" ]; then
  echo "FAIL: $so has SONAME '$soname', expected libvnrt.so.$soversion" >&2
  status=1
fi
echo "libvnrt.a: $count_a global symbols; libvnrt.so: $count_so exported (SONAME $soname)"
exit $status
