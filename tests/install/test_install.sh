#!/usr/bin/env bash
# Proves an installed vnrt is usable on its own: stages `meson install` of a build into a
# temporary DESTDIR, then (1) compiles every public header alone as C11 and C++, (2) builds and
# runs a consumer through pkg-config, shared and static, and the example of docs/api.md,
# (3) builds a plugin from the template against the installed headers, (4) builds and runs a
# consumer through CMake's find_package and checks the package version rules.
#
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
# Environment: CC, CXX (compilers), VNRT_VERSION (the version the build should install),
# VNRT_SANITIZE_FLAGS (-fsanitize=... of a sanitized build: the consumers that link libvnrt
# need the sanitizer runtimes too; docs/sanitizers.md).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
read -r -a cc <<<"${CC:-cc}"
read -r -a cxx <<<"${CXX:-c++}"
read -r -a san <<<"${VNRT_SANITIZE_FLAGS:-}"
MESON=${MESON:-meson}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vnrt-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stage=$tmp/stage

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }
# Runs a program built against the staged libvnrt.so.
run_staged() { LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }

step "meson install --destdir $stage"
"$MESON" install -C "$build" --destdir "$stage" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "meson install failed"; }

pc=$(find "$stage" -name vnrt.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n "$pc" ]] || fail "no vnrt.pc was installed"
PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# The .pc file names the final prefix; the sysroot maps its -I/-L flags into the stage.
PKG_CONFIG_SYSROOT_DIR="$stage"
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
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
version=$(pkg-config --modversion vnrt)
if [[ -n "${VNRT_VERSION:-}" && "$version" != "$VNRT_VERSION" ]]; then
  fail "vnrt.pc says version $version, the project is $VNRT_VERSION"
fi
[[ "$(pcvar plugindir)" == "$(pcvar libdir)/vnrt/plugins" ]] ||
  fail "vnrt.pc plugindir is $(pcvar plugindir), expected $(pcvar libdir)/vnrt/plugins"
plugindir=$stage$(pcvar plugindir)
[[ -d "$plugindir" ]] || fail "the plugin directory $plugindir was not created by meson install"
docdir=$(find "$stage" -type d -path '*/share/doc/vnrt' | head -n 1)
[[ -n "$docdir" && -f "$docdir/api.md" && -f "$docdir/backends.md" ]] ||
  fail "the docs were not installed into share/doc/vnrt"
read -r -a cflags <<<"$(pkg-config --cflags vnrt)"
read -r -a libs <<<"$(pkg-config --libs vnrt)"
[[ "${cflags[*]} ${libs[*]}" == *"$stage"* ]] ||
  fail "pkg-config flags do not point into the stage: ${cflags[*]} ${libs[*]}"

step "the installed headers are exactly include/vnrt/*.h"
diff <(cd "$src/include/vnrt" && ls -1 -- *.h) <(cd "$includedir/vnrt" && ls -1 -- *.h) ||
  fail "installed headers differ from include/vnrt (left: source, right: installed)"

step "every public header compiles on its own as C11 and as C++11"
c_compilers=("${cc[*]}")
command -v clang >/dev/null 2>&1 && c_compilers+=(clang)
cxx_compilers=()
if command -v "${cxx[0]}" >/dev/null 2>&1; then
  cxx_compilers+=("${cxx[*]}")
else
  echo "note: no C++ compiler (${cxx[*]}): g++ checks skipped"
fi
command -v clang++ >/dev/null 2>&1 && cxx_compilers+=(clang++)
warn=(-Wall -Wextra -Werror -pedantic)
for h in "$includedir"/vnrt/*.h; do
  name=vnrt/$(basename "$h")
  # Included twice: the include guard must hold.
  printf '#include <%s>\n#include <%s>\nint vnrt_header_test_;\n' "$name" "$name" >"$tmp/h.c"
  cp "$tmp/h.c" "$tmp/h.cc"
  for c in "${c_compilers[@]}"; do
    read -r -a c_cmd <<<"$c"
    "${c_cmd[@]}" -std=c11 "${warn[@]}" -Wshadow -Wvla -Wstrict-prototypes -fsyntax-only \
      "${cflags[@]}" "$tmp/h.c" || fail "$name does not compile alone as C11 with $c"
  done
  for c in "${cxx_compilers[@]}"; do
    read -r -a c_cmd <<<"$c"
    "${c_cmd[@]}" -std=c++11 "${warn[@]}" -fsyntax-only "${cflags[@]}" "$tmp/h.cc" ||
      fail "$name does not compile alone as C++11 with $c"
  done
done

step "pkg-config consumer, linked against libvnrt.so"
consumer_c=$src/tests/install/consumer/consumer.c
"${cc[@]}" -std=c11 "${warn[@]}" "${san[@]}" "$consumer_c" "${cflags[@]}" "${libs[@]}" -lm \
  -o "$tmp/consumer_shared" || fail "the pkg-config consumer does not build"
# Without the staged libdir on the path the binary must not start: proves it links libvnrt.so.
if env -u LD_LIBRARY_PATH "$tmp/consumer_shared" >/dev/null 2>&1 &&
  ! ldconfig -p 2>/dev/null | grep -q 'libvnrt\.so'; then
  fail "consumer_shared ran without libvnrt.so on the library path"
fi
run_staged "$tmp/consumer_shared" || fail "the pkg-config consumer (shared) failed"

step "pkg-config --static consumer, linked against libvnrt.a"
read -r -a static_libs <<<"$(pkg-config --static --libs vnrt)"
for i in "${!static_libs[@]}"; do
  [[ "${static_libs[$i]}" == "-lvnrt" ]] && static_libs[i]=$libdir/libvnrt.a
done
"${cc[@]}" -std=c11 "${warn[@]}" "${san[@]}" "$consumer_c" "${cflags[@]}" "${static_libs[@]}" \
  -lm -o "$tmp/consumer_static" ||
  fail "linking libvnrt.a with 'pkg-config --static --libs vnrt' failed: Libs.private incomplete?"
env -u LD_LIBRARY_PATH "$tmp/consumer_static" || fail "the pkg-config consumer (static) failed"

step "the example in docs/api.md builds and runs"
# The first C block after "## Example": documentation that cannot rot silently.
awk '/^## Example/ {found = 1} found && /^```c/ {inblock = 1; next}
     inblock && /^```/ {exit} inblock {print}' "$src/docs/api.md" >"$tmp/api_example.c"
grep -q vnrt_plan_run "$tmp/api_example.c" || fail "no example found in docs/api.md"
"${cc[@]}" -std=c11 "${warn[@]}" "${san[@]}" "$tmp/api_example.c" "${cflags[@]}" "${libs[@]}" \
  -o "$tmp/api_example" || fail "the docs/api.md example does not compile"
VNRT_DEVICE=cpu run_staged "$tmp/api_example" || fail "the docs/api.md example failed"

step "the template plugin builds against the installed headers alone"
plugin=$tmp/libvnrt_backend_template.so
"${cc[@]}" -std=c11 "${warn[@]}" -shared -fPIC -fvisibility=hidden "${cflags[@]}" \
  "$src/backends/template/template_backend.c" -o "$plugin" ||
  fail "backends/template does not build against the installed headers"
exported=$(nm -D --defined-only "$plugin" | awk '$2 ~ /^[TDBR]$/ {print $3}')
[[ "$exported" == "vnrt_backend_entry_v1" ]] ||
  fail "the template plugin should export only vnrt_backend_entry_v1, exports: $exported"

step "the staged (moved) libvnrt.so loads plugins from its own plugin directory"
# The stage is not the configured prefix: the library must find the plugin directory beside
# itself, not at the compiled-in path.
cp "$plugin" "$plugindir/"
cat >"$tmp/list_backends.c" <<'EOF_C'
#include <stdio.h>
#include <string.h>
#include <vnrt/vnrt.h>
int main(void) {
  vnrt_context *ctx = NULL;
  if (vnrt_context_create(NULL, &ctx) != VNRT_OK) return 2;
  const char *names[32];
  uint32_t n = vnrt_backend_names(ctx, names, 32);
  int found = 0;
  for (uint32_t i = 0; i < n && i < 32; ++i) found |= strcmp(names[i], "template") == 0;
  vnrt_context_destroy(ctx);
  return found ? 0 : 1;
}
EOF_C
"${cc[@]}" -std=c11 "${warn[@]}" "${san[@]}" "$tmp/list_backends.c" "${cflags[@]}" "${libs[@]}" \
  -o "$tmp/list_backends" || fail "the backend lister does not build"
env -u VNRT_PLUGIN_PATH LD_LIBRARY_PATH="$libdir" "$tmp/list_backends" ||
  fail "the staged libvnrt.so did not load the template from $plugindir"
rm -f "$plugindir/$(basename "$plugin")"

if ! command -v cmake >/dev/null 2>&1; then
  echo "note: cmake not installed (third_party/install-deps.sh installs it): CMake checks skipped"
  exit 0
fi

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

step "CMake consumer through find_package(vnrt) and vnrt::vnrt"
cmake_san=()
[[ ${#san[@]} -gt 0 ]] && cmake_san=(-DCMAKE_C_FLAGS="${san[*]}")
cmake -S "$src/tests/install/consumer" -B "$tmp/cmake" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$stage$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  "${cmake_san[@]}" >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log" >&2; fail "cmake could not configure the find_package(vnrt) consumer"; }
vnrt_dir=$(sed -n 's/^vnrt_DIR:PATH=//p' "$tmp/cmake/CMakeCache.txt")
[[ "$vnrt_dir" == "$stage"/* ]] ||
  fail "find_package(vnrt) found a vnrt outside the stage: $vnrt_dir"
cmake --build "$tmp/cmake" >"$tmp/cmake-build.log" 2>&1 ||
  { cat "$tmp/cmake-build.log" >&2; fail "the CMake consumer did not build"; }
run_staged "$tmp/cmake/consumer" || fail "the CMake consumer failed"

step "vnrtConfigVersion.cmake accepts compatible requests and rejects others"
IFS=. read -r vmaj vmin _ <<<"$version"
# A project without languages has no CMAKE_LIBRARY_ARCHITECTURE, so it cannot search
# lib/<arch>/cmake; point it at the directory find_package found above.
check_version() { # WANT accept|reject
  local got=accept
  cmake -S "$src/tests/install/version_check" -B "$tmp/vc-$1" -DWANT="$1" \
    -Dvnrt_DIR="$vnrt_dir" >"$tmp/vc.log" 2>&1 || got=reject
  [[ "$got" == "$2" ]] || { cat "$tmp/vc.log" >&2; fail "find_package(vnrt $1): expected $2"; }
}
check_version "$version" accept
check_version "$vmaj.$vmin" accept
check_version "$((vmaj + 1))" reject
check_version "$vmaj.$((vmin + 1))" reject
if [[ $vmaj -eq 0 && $vmin -gt 0 ]]; then
  check_version "0.$((vmin - 1))" reject # before 1.0 a minor release may break the API
fi

echo "install test passed"
