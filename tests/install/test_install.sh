#!/usr/bin/env bash
# Proves an installed vnrt is usable on its own: stages `meson install` of a build into a
# temporary DESTDIR, then (1) compiles every public header alone as C11 and C++, (2) builds and
# runs a consumer through pkg-config, shared and static, and the example of docs/api.md,
# (3) builds a plugin from the template against the installed headers, (4) builds and runs a
# consumer through CMake's find_package and checks the package version rules.
#
# Usage: test_install.sh BUILD_DIR SOURCE_DIR   (meson test passes both; CC may be set)
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
CC=${CC:-cc}
CXX=${CXX:-c++}
MESON=${MESON:-meson}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vnrt-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stage=$tmp/stage

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }

step "meson install --destdir $stage"
"$MESON" install -C "$build" --destdir "$stage" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "meson install failed"; }

pc=$(find "$stage" -name vnrt.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n "$pc" ]] || fail "no vnrt.pc was installed"
export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# The .pc file names the final prefix; the sysroot maps its -I/-L flags into the stage.
export PKG_CONFIG_SYSROOT_DIR="$stage"
# A variable of vnrt.pc as the final path: pkgconf prefixes the sysroot, pkg-config does not.
pcvar() {
  local v
  v=$(pkg-config --variable="$1" vnrt)
  echo "${v#"$stage"}"
}
prefix=$(pcvar prefix)
libdir=$stage$(pcvar libdir)
includedir=$stage$(pcvar includedir)
[[ -f "$libdir/libvnrt.so" && -f "$libdir/libvnrt.a" ]] ||
  fail "libvnrt.so / libvnrt.a missing from $libdir"
[[ "$(pkg-config --modversion vnrt)" == "$(sed -n "s/^ *version: '\([^']*\)'.*/\1/p" "$src/meson.build" | head -n 1)" ]] ||
  fail "vnrt.pc version $(pkg-config --modversion vnrt) differs from meson.build's"
[[ "$(pcvar plugindir)" == "$(pcvar libdir)/vnrt/plugins" ]] ||
  fail "vnrt.pc plugindir is $(pcvar plugindir), expected $(pcvar libdir)/vnrt/plugins"
cflags=$(pkg-config --cflags vnrt)
libs=$(pkg-config --libs vnrt)
[[ "$cflags $libs" == *"$stage"* ]] || fail "pkg-config flags do not point into the stage: $cflags $libs"

step "the installed headers are exactly runtime/include/vnrt/*.h"
diff <(cd "$src/runtime/include/vnrt" && ls -1 *.h) <(cd "$includedir/vnrt" && ls -1 *.h) ||
  fail "installed headers differ from runtime/include/vnrt (left: source, right: installed)"

step "every public header compiles on its own as C11 and as C++11"
cxx_ok=1
command -v "$CXX" >/dev/null 2>&1 || { cxx_ok=0; echo "note: no C++ compiler ($CXX): C++ checks skipped"; }
compilers=("$CC")
command -v clang >/dev/null 2>&1 && compilers+=(clang)
for h in "$includedir"/vnrt/*.h; do
  name=vnrt/$(basename "$h")
  # Included twice: the include guard must hold.
  printf '#include <%s>\n#include <%s>\nint vnrt_header_test_;\n' "$name" "$name" >"$tmp/h.c"
  for c in "${compilers[@]}"; do
    $c -std=c11 -Wall -Wextra -Werror -pedantic -Wshadow -Wvla -Wstrict-prototypes \
      -fsyntax-only $cflags "$tmp/h.c" || fail "$name does not compile alone as C11 with $c"
  done
  if [[ $cxx_ok -eq 1 ]]; then
    cp "$tmp/h.c" "$tmp/h.cc"
    $CXX -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only $cflags "$tmp/h.cc" ||
      fail "$name does not compile alone as C++11 with $CXX"
    if command -v clang++ >/dev/null 2>&1; then
      clang++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only $cflags "$tmp/h.cc" ||
        fail "$name does not compile alone as C++11 with clang++"
    fi
  fi
done

step "pkg-config consumer, linked against libvnrt.so"
$CC -std=c11 -Wall -Wextra -Werror "$src/tests/install/consumer/consumer.c" $cflags $libs -lm \
  -o "$tmp/consumer_shared"
# Without the staged libdir on the path the binary must not start: proves it links libvnrt.so.
if env -u LD_LIBRARY_PATH "$tmp/consumer_shared" >/dev/null 2>&1 &&
   ! ldconfig -p 2>/dev/null | grep -q 'libvnrt\.so'; then
  fail "consumer_shared ran without libvnrt.so on the library path"
fi
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_shared" ||
  fail "the pkg-config consumer (shared) failed"

step "pkg-config --static consumer, linked against libvnrt.a"
static_libs=$(pkg-config --static --libs vnrt | sed "s|-lvnrt\b|$libdir/libvnrt.a|")
$CC -std=c11 -Wall -Wextra -Werror "$src/tests/install/consumer/consumer.c" $cflags \
  $static_libs -lm -o "$tmp/consumer_static" ||
  fail "linking libvnrt.a with 'pkg-config --static --libs vnrt' failed: Libs.private incomplete?"
env -u LD_LIBRARY_PATH "$tmp/consumer_static" || fail "the pkg-config consumer (static) failed"

step "the example in docs/api.md builds and runs"
# The first C block after "## Example": documentation that cannot rot silently.
awk '/^## Example/ {found = 1} found && /^```c/ {inblock = 1; next}
     inblock && /^```/ {exit} inblock {print}' "$src/docs/api.md" >"$tmp/api_example.c"
grep -q vnrt_plan_run "$tmp/api_example.c" || fail "no example found in docs/api.md"
$CC -std=c11 -Wall -Wextra -Werror -pedantic "$tmp/api_example.c" $cflags $libs \
  -o "$tmp/api_example" || fail "the docs/api.md example does not compile"
VNRT_DEVICE=cpu LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$tmp/api_example" || fail "the docs/api.md example failed"

step "the template plugin builds against the installed headers alone"
$CC -std=c11 -Wall -Wextra -Werror -pedantic -shared -fPIC -fvisibility=hidden $cflags \
  "$src/backends/template/template_backend.c" -o "$tmp/libvnrt_backend_template.so" ||
  fail "backends/template does not build against the installed headers"
exported=$(nm -D --defined-only "$tmp/libvnrt_backend_template.so" | awk '$2 ~ /^[TDBR]$/ {print $3}')
[[ "$exported" == "vnrt_backend_entry_v1" ]] ||
  fail "the template plugin should export only vnrt_backend_entry_v1, exports: $exported"

if ! command -v cmake >/dev/null 2>&1; then
  echo "note: cmake not installed (third_party/install-deps.sh installs it): CMake checks skipped"
  exit 0
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

step "CMake consumer through find_package(vnrt) and vnrt::vnrt"
cmake -S "$src/tests/install/consumer" -B "$tmp/cmake" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$stage$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log" >&2; fail "cmake could not configure the find_package(vnrt) consumer"; }
grep -q "^vnrt_DIR:PATH=$stage" "$tmp/cmake/CMakeCache.txt" ||
  fail "find_package(vnrt) found a vnrt outside the stage: $(grep '^vnrt_DIR' "$tmp/cmake/CMakeCache.txt")"
cmake --build "$tmp/cmake" >"$tmp/cmake-build.log" 2>&1 ||
  { cat "$tmp/cmake-build.log" >&2; fail "the CMake consumer did not build"; }
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/cmake/consumer" ||
  fail "the CMake consumer failed"

step "vnrtConfigVersion.cmake accepts compatible requests and rejects others"
version=$(pkg-config --modversion vnrt)
IFS=. read -r vmaj vmin vpat <<<"$version"
# A project without languages has no CMAKE_LIBRARY_ARCHITECTURE, so it cannot search
# lib/<arch>/cmake; point it at the directory find_package found above.
vnrt_dir=$(sed -n 's/^vnrt_DIR:PATH=//p' "$tmp/cmake/CMakeCache.txt")
check_version() { # WANT EXPECTED(0 accept, 1 reject)
  local rc=0
  cmake -S "$src/tests/install/version_check" -B "$tmp/vc-$1" -DWANT="$1" \
    -Dvnrt_DIR="$vnrt_dir" >"$tmp/vc.log" 2>&1 || rc=1
  [[ $rc -eq $2 ]] || { cat "$tmp/vc.log" >&2; fail "find_package(vnrt $1): expected $([[ $2 -eq 0 ]] && echo accept || echo reject)"; }
}
check_version "$version" 0
check_version "$vmaj.$vmin" 0
check_version "$((vmaj + 1))" 1
check_version "$vmaj.$((vmin + 1))" 1
if [[ $vmaj -eq 0 && $vmin -gt 0 ]]; then
  check_version "0.$((vmin - 1))" 1 # before 1.0 a minor release may break the API
fi
: "$vpat"

echo "install test passed"
