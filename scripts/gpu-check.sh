#!/usr/bin/env bash
# Runs on the GPU machine: unpacks the self-contained build made by
# scripts/pack-gpu-build.sh, runs the GPU tests and the CLI checks, and writes
# logs and JSON into OUT_DIR.
#   scripts/gpu-check.sh OUT_DIR [TARBALL]
set -uo pipefail
out="${1:?usage: gpu-check.sh OUT_DIR [TARBALL]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tarball="${2:-$root/.carry/nsajit-gpu.tar.xz}"
mkdir -p "$out"
work="$(mktemp -d)"
tar -C "$work" -xJf "$tarball"
bin="$work/nsajit/bin"
export NSAJIT_CACHE_DIR="$work/cache"
status=0

{
  echo "== date: $(date -u +%FT%TZ)"
  cat "$work/nsajit/BUILD_INFO" 2>/dev/null
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$bin/nsajit" info
} 2>&1 | tee "$out/info.log"

echo "== GPU tests (matrix against the float64 reference)"
NSAJIT_GPU_TEST_JSON="$out/gpu-cases.jsonl" NSAJIT_GPU_TEST_JSON_BWD="$out/gpu-bwd-cases.jsonl" NSAJIT_GPU_TEST_JSON_TOPN="$out/gpu-topn-cases.jsonl" "$bin/gpu_tests" --gtest_color=no --gtest_filter="${NSAJIT_GPU_FILTER:-*}" 2>&1 | tee "$out/gpu-tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== Python package (nsajit.torch against nsajit.reference on the GPU)"
if python3 -c "import torch, pytest" 2>/dev/null; then
  NSAJIT_LIBRARY="$work/nsajit/lib/libnsajit.so" PYTHONDONTWRITEBYTECODE=1 \
    python3 -m pytest "$root/python/tests" -q -rs -p no:cacheprovider > "$out/python-tests.log" 2>&1 || status=1
  tail -5 "$out/python-tests.log"
else
  echo "python3 with torch and pytest not found: Python GPU tests not run" | tee "$out/python-tests.log"
fi

[ "${NSAJIT_GPU_SKIP_CLI:-0}" = 1 ] && { echo "== gpu-check status: $status" | tee -a "$out/info.log"; exit $status; }
echo "== nsajit compile and check (paper configuration)"
run() { echo "\$ nsajit $*"; "$bin/nsajit" "$@" || status=1; }
{
  run compile
  run check --T 1000 --heads 1
  run check --T 777 --dtype fp16 --dk 192 --dv 128 --group 4 --l 64 --d 64 --lsel 32 --n 8 --w 100
  # Again: the kernels now come from the caches.
  run compile --branch selected
} > "$out/cli.log" 2>&1
cat "$out/cli.log"

echo "== gpu-check status: $status" | tee -a "$out/info.log"
exit $status
