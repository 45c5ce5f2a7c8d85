#!/usr/bin/env bash
# Session 5, run 1: the split dK/dV walk: backward matrices (automatic and forced splits), then a short bench.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl \
  timeout 300 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -20 | cut -c1-220
timeout 240 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit cmp64+top16 [main],nsajit nsa fused,nsajit selected local [main]" --no-compile-test --no-png --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; tail -30 "$out/bench.log" | cut -c1-200
