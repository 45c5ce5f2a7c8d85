#!/usr/bin/env bash
# Packs the self-contained build (libnsajit.so, the nsajit tool, the GPU tests)
# for the GPU machine, which has no LLVM: .carry/nsajit-gpu.tar.xz
#   scripts/pack-gpu-build.sh [BUILD_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/nsajit/bin" "$stage/nsajit/lib"
cp "$build/lib/libnsajit.so" "$stage/nsajit/lib/"
cp "$build/bin/nsajit" "$build/bin/gpu_tests" "$stage/nsajit/bin/"
strip --strip-unneeded "$stage/nsajit/lib/libnsajit.so" "$stage/nsajit/bin/"*
# The library must not need anything the GPU machine lacks.
if ldd "$stage/nsajit/lib/libnsajit.so" | grep -E "libLLVM|libMLIR|libz3|libzstd|libfmt|libstdc\+\+"; then
  echo "pack-gpu-build: libnsajit.so is not self-contained (see above)" >&2
  exit 1
fi
{
  echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%FT%TZ) on $(uname -m)"
} > "$stage/nsajit/BUILD_INFO"
mkdir -p "$root/.carry"
tar -C "$stage" -cJf "$root/.carry/nsajit-gpu.tar.xz" nsajit
ls -la "$root/.carry/nsajit-gpu.tar.xz"
