#!/usr/bin/env bash
# Session 5, run 3: the split dK/dV walk, state zeroed per launch, selected unsplit by default: backward matrices, then the 64k bench.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl \
  timeout 200 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -20 | cut -c1-220
timeout 400 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit selected random [main],nsajit selected local [main],nsajit cmp,nsajit window,nsajit nsa,sdpa-cudnn dense [paper]" --no-compile-test --no-png --max-minutes 6.3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$out/bench.log" | cut -c1-150
