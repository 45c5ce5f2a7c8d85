#!/usr/bin/env bash
# Installs what nsajit needs on a fresh Debian 12 machine (as root or with sudo)
# and configures + builds it in build/.
#   scripts/setup.sh            install dependencies, then build
#   NSAJIT_SKIP_APT=1 ...       build only
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${NSAJIT_BUILD_DIR:-$root/build}"

packages=(cmake ninja-build g++ python3 llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
          libfmt-dev libgtest-dev libzstd-dev zlib1g-dev python3-torch python3-numpy python3-pytest)
if [ "${NSAJIT_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
  fi
fi

# cuda.h (Driver API declarations) is needed at build time only.
if [ ! -f "${CUDA_HOME:-/usr/local/cuda}/include/cuda.h" ] && [ ! -f /usr/include/cuda.h ]; then
  echo "setup: cuda.h not found (looked in \$CUDA_HOME/include, /usr/local/cuda/include, /usr/include)." >&2
  echo "       Install the CUDA toolkit headers or set CUDA_HOME." >&2
  exit 1
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
echo "setup: building in $build (this takes several minutes: the build links MLIR/LLVM statically)"
cmake --build "$build" -j "$(nproc)"
