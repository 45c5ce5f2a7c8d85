#!/usr/bin/env bash
# Session 5, run 8: the unmasked full dK/dV steps: tests, then the split length on the compressed backward.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl \
  timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -12 | cut -c1-220
for split in 0 512 2048 8192; do
  timeout 100 python3 bench/bench_nsa.py --quick --T 64k --profile --backward-split $split --only "nsajit cmp32/16+top16 [paper],nsajit cmp64+top16 [main],nsajit selected random [paper]" --no-compile-test --no-png --max-minutes 1.6 --out "$out/split-$split.json" > "$out/split-$split.log" 2>&1
  echo "split $split rc=$?"; grep -E "fwdbwd|bwd_dkdv" "$out/split-$split.log" | grep -E "^\[|kernels" | cut -c1-160
done
