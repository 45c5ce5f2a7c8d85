#!/usr/bin/env bash
# Session 9, run 5 (H100): correctness of the final kernels (commit in BUILD_INFO): the full GPU
# forward matrix, the backward matrix (automatic and forced split), the top-n and compression
# suites.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 360 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-full.log" 2>&1
echo "gpu fwd full rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-full.log" | head -6 | cut -c1-200
timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*:GpuTopN.*:GpuCompress.*' > "$out/gpu-bwd-topn-compress.log" 2>&1
echo "gpu bwd/topn/compress rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd-topn-compress.log" | head -8 | cut -c1-200
