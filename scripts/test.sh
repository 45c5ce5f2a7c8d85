#!/usr/bin/env bash
# The test command: install + build (scripts/setup.sh), then every test through
# ctest: gtest unit tests, the lit/FileCheck suite, PTX assembly of the
# configuration matrix with ptxas (sm_80 and sm_90a), the exported-symbol check
# and the GPU tests (which skip with "no CUDA device" where there is no GPU).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${NSAJIT_BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
NSAJIT_LIBRARY="$build/lib/libnsajit.so" "${NSAJIT_PYTHON:-/usr/bin/python3}" -m pytest -q "$root/python/tests"  # Python package (python/README.md)
